//! Hostile and broken input against the real machines, one test (or more) per row of the
//! bad-input catalogue in `tests/README.md`
//!
//! Every test drives a machine through its public API with the hostile input and checks the
//! documented behaviour: the typed error, the counter that moves, the Close code actually put on
//! the wire (decoded from the transmitted bytes), and that nothing else changed. Codec-level
//! proofs (exact byte layouts, every decode error variant) live in the vector and property test
//! files and are cited by the catalogue instead of repeated here.

use std::collections::VecDeque;

use tether_net::game::wire::{Control, ControlPacket, Reason, Token, MAX_REASON_LEN};
use tether_net::game::{
    self, ClientApp as GClientApp, ClientEvent as GEvent, ClientState as GState,
    CloseCause as GCloseCause, Error as GError, ServerApp as GServerApp,
    ServerEvent as GServerEvent, TokenSecret,
};
use tether_net::longport::control::{
    AuthRequest, Body, Close, ErrorBody, Heartbeat, Metadata, PbError, ReconnectRequest,
};
use tether_net::longport::deframe::DeframeError;
use tether_net::longport::wire::{DecodeError as LDecodeError, Kind, Packet, MAX_BODY_LEN};
use tether_net::longport::{
    ClientConfig, ClientEvent, CloseCause, CloseCode, Credentials, Error as LError, Grant,
    Handshake, ProtocolError, RequestId, ServerApp as SApp, ServerConfig, ServerEvent, ServerState,
    SessionGrant, SessionId, Source, Status, Transport,
};
use tether_net::testing::Rng;
use tether_net::{Duration, FrameKind, Instant};

// =============================================================================================
// Game profile helpers
// =============================================================================================

type GServer = game::Server<u32, 16>;
type GClient = game::Client;
const PEER: u32 = 7;
const SECRET: TokenSecret = TokenSecret(*b"hostile-secret!!");

fn ms(v: u64) -> Instant {
    Instant::from_millis(v)
}

fn ctl(ack: u16, control: Control<'_>, token: Option<Token>) -> Vec<u8> {
    let p = ControlPacket {
        ack,
        control,
        token,
    };
    let mut buf = vec![0u8; p.buffer_len()];
    let n = p.emit(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

fn s_out<const N: usize, const E: usize>(
    s: &mut game::Server<u32, N, E>,
    now: Instant,
) -> Vec<(u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1400];
    while let Some(t) = s.poll_transmit(now, &mut buf).unwrap() {
        out.push((t.to, buf[..t.len].to_vec()));
    }
    out
}

fn c_out<const E: usize>(c: &mut game::Client<E>, now: Instant) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1400];
    while let Some(t) = c.poll_transmit(now, &mut buf).unwrap() {
        out.push(buf[..t.len].to_vec());
    }
    out
}

/// A token client at address [`PEER`] online at a server; events drained
fn game_online<const E: usize>() -> (game::Server<u32, 16, E>, GClient, Token) {
    let mut s = game::Server::with_capacities(game::ServerConfig::new(SECRET));
    let mut c = GClient::new(game::ClientConfig::default());
    let now = ms(0);
    c.connect(now).unwrap();
    for _ in 0..3 {
        for d in c_out(&mut c, now) {
            let _ = s.handle_input(now, PEER, &d).unwrap();
        }
        for (_, d) in s_out(&mut s, now) {
            let _ = c.handle_input(now, (), &d).unwrap();
        }
    }
    assert!(s.is_online(PEER) && c.state() == GState::Online);
    while s.poll_event().is_some() {}
    while c.poll_event().is_some() {}
    let token = c.token().unwrap();
    (s, c, token)
}

/// Feed `bytes` to an online server peer and an online client; both must drop them silently:
/// no event, no reply, still online. Returns the changed server and client stats.
fn game_drop_both(bytes: &[u8]) -> (game::ServerStats, game::ClientStats) {
    let (mut s, mut c, _) = game_online::<8>();
    let now = ms(10);
    let (s0, c0) = (s.stats(), c.stats());
    let r = s.handle_input(now, PEER, bytes).unwrap();
    assert_eq!(
        r.bytes_consumed(),
        bytes.len(),
        "datagrams are consumed whole"
    );
    assert!(r.app().is_none());
    let r = c.handle_input(now, (), bytes).unwrap();
    assert_eq!(r.bytes_consumed(), bytes.len());
    assert!(r.app().is_none());
    assert!(s_out(&mut s, now).is_empty(), "no reply to {bytes:02x?}");
    assert!(c_out(&mut c, now).is_empty(), "no reply to {bytes:02x?}");
    assert!(s.poll_event().is_none() && c.poll_event().is_none());
    assert!(s.is_online(PEER) && c.state() == GState::Online);
    let (s1, c1) = (s.stats(), c.stats());
    assert_ne!(s0, s1, "the server counted {bytes:02x?}");
    assert_ne!(c0, c1, "the client counted {bytes:02x?}");
    (s1, c1)
}

/// Feed `bytes` from an unknown address: no peer, no reply
fn game_unknown_drop(bytes: &[u8]) -> game::ServerStats {
    let mut s = GServer::with_capacities(game::ServerConfig::new(SECRET));
    let now = ms(1);
    let r = s.handle_input(now, 99, bytes).unwrap();
    assert_eq!(r.bytes_consumed(), bytes.len());
    assert!(s_out(&mut s, now).is_empty());
    assert_eq!(s.peer_count(), 0);
    assert!(s.poll_event().is_none() && s.poll_timeout().is_none());
    s.stats()
}

// =============================================================================================
// Game: malformed datagrams
// =============================================================================================

#[test]
fn game_truncated_datagrams_are_dropped_and_counted() {
    for bytes in [&[][..], &[0x10], &[0x10, 0x00], &[0x10, 0x00, 0x00]] {
        let (s, c) = game_drop_both(bytes);
        assert_eq!(s.dropped_malformed, 1, "{bytes:02x?}");
        assert_eq!(c.dropped_malformed, 1, "{bytes:02x?}");
        assert_eq!(game_unknown_drop(bytes).dropped_malformed, 1);
    }
}

#[test]
fn game_oversized_datagram_is_dropped_and_counted() {
    let mut big = ctl(0, Control::KeepAlive, None);
    big.resize(1401, 0);
    let (s, c) = game_drop_both(&big);
    assert_eq!((s.dropped_malformed, c.dropped_malformed), (1, 1));
    assert_eq!(game_unknown_drop(&big).dropped_malformed, 1);
}

#[test]
fn game_unknown_control_ids_are_dropped_and_counted() {
    for id in [5u8, 6, 0x7F, 0xFF] {
        let bytes = [0x10, 0x00, 0x00, id];
        let (s, c) = game_drop_both(&bytes);
        assert_eq!(
            (s.dropped_malformed, c.dropped_malformed),
            (1, 1),
            "id {id}"
        );
        assert_eq!(game_unknown_drop(&bytes).dropped_malformed, 1);
    }
}

#[test]
fn game_reserved_bits_connless_and_compressed_control_are_dropped() {
    // reserved bits (0x04: 0.6.5 token flag, 0x08), compressed control (0x90) on a token
    // connection (DDNet never sends one; only vanilla 0.6.4 peers do, without token)
    for first in [0x14u8, 0x18, 0x1C, 0x90, 0xD0] {
        let bytes = [first, 0x00, 0x00, 0x00]; // "KEEP_ALIVE" with the odd header
        let (s, c) = game_drop_both(&bytes);
        assert_eq!(
            (s.dropped_malformed, c.dropped_malformed),
            (1, 1),
            "first byte {first:#04x}"
        );
        assert_eq!(game_unknown_drop(&bytes).dropped_malformed, 1);
    }
    // connless (0x20): not a connection packet, not a server-info request either
    let bytes = [0x30, 0x00, 0x00, 0x00];
    let (s, c) = game_drop_both(&bytes);
    assert_eq!((s.dropped_connless, c.dropped_connless), (1, 1));
    assert_eq!(game_unknown_drop(&bytes).dropped_connless, 1);
    // a token CONNECT with the compression flag is not answered
    let mut connect = ctl(0, Control::Connect, Some(Token::UNKNOWN));
    connect[0] |= 0x80;
    assert_eq!(game_unknown_drop(&connect).dropped_malformed, 1);
}

// =============================================================================================
// Game: CLOSE reasons
// =============================================================================================

/// A reason as the application gets it: the raw bytes, and the text as printed
type ReasonSeen = (Vec<u8>, String);

/// The server gets `close` from its online peer; returns the reason handed to the application
/// (with the `Closed { cause: Peer }` event)
fn server_reason(close: &[u8]) -> (ReasonSeen, game::ServerStats) {
    let (mut s, _c, _) = game_online::<8>();
    let r = s.handle_input(ms(10), PEER, close).unwrap();
    let Some(GServerApp::Close { reason }) = r.into_app() else {
        panic!("expected the reason, got {:?}", r.into_app());
    };
    assert!(s_out(&mut s, ms(10)).is_empty(), "nothing is sent back");
    assert_eq!(s.peer_count(), 0);
    assert_eq!(
        s.poll_event(),
        Some(GServerEvent::Closed {
            peer: PEER,
            cause: GCloseCause::Peer
        })
    );
    ((reason.as_bytes().to_vec(), reason.to_string()), s.stats())
}

/// The client gets `close` from the server; returns the reason handed to the application (with
/// the `Closed { cause: Peer }` event)
fn client_reason(close: &[u8]) -> (ReasonSeen, game::ClientStats) {
    let (_s, mut c, _) = game_online::<8>();
    let r = c.handle_input(ms(10), (), close).unwrap();
    let Some(GClientApp::Close { reason }) = r.into_app() else {
        panic!("expected the reason, got {:?}", r.into_app());
    };
    assert!(c_out(&mut c, ms(10)).is_empty(), "nothing is sent back");
    assert_eq!(c.state(), GState::Closed);
    assert_eq!(
        c.poll_event(),
        Some(GEvent::Closed {
            cause: GCloseCause::Peer
        })
    );
    ((reason.as_bytes().to_vec(), reason.to_string()), c.stats())
}

/// CLOSE with a raw reason (no NUL added) and the token
fn raw_close(reason: &[u8], token: Token) -> Vec<u8> {
    let mut v = vec![0x10, 0x00, 0x00, 0x04];
    v.extend_from_slice(reason);
    v.extend_from_slice(&token.0);
    v
}

#[test]
fn game_close_reason_without_nul_is_read_to_the_token_and_flagged() {
    let (_, _, token) = game_online::<8>();
    let bytes = raw_close(b"bye", token);
    let ((raw, r), st) = server_reason(&bytes);
    assert_eq!((raw.as_slice(), r.as_str()), (&b"bye"[..], "bye"));
    assert_eq!(st.warnings, 1, "REASON_MISSING_NUL is counted");
    let ((raw, r), st) = client_reason(&bytes);
    assert_eq!((raw.as_slice(), r.as_str()), (&b"bye"[..], "bye"));
    assert_eq!(st.warnings, 1);
}

#[test]
fn game_close_reason_over_length_is_truncated_to_127_bytes() {
    let (_, _, token) = game_online::<8>();
    let mut reason = "é".repeat(150).into_bytes(); // 300 bytes, 2-byte chars
    reason.push(0);
    let bytes = raw_close(&reason, token);
    let ((raw, r), st) = server_reason(&bytes);
    assert!(r.len() <= MAX_REASON_LEN && r.len() >= MAX_REASON_LEN - 1);
    assert!(r.chars().all(|c| c == 'é'), "cut on a char boundary");
    assert_eq!(raw, r.as_bytes(), "the text is the bytes");
    assert_eq!(st.warnings, 1);
    let (r2, _) = client_reason(&bytes);
    assert_eq!((raw, r), r2);
}

#[test]
fn game_close_reason_invalid_utf8_and_control_chars_become_safe_text() {
    let (_, _, token) = game_online::<8>();
    let bytes = raw_close(b"a\xff\xfeb\n\x1b[31mc\0", token);
    let ((raw, r), _) = server_reason(&bytes);
    assert_eq!(raw, b"a\xff\xfeb\n\x1b[31mc", "the bytes as sent");
    assert!(!r.chars().any(char::is_control), "{r:?}");
    assert!(r.contains('\u{FFFD}') && r.starts_with('a') && r.ends_with('c'));
    let (r2, _) = client_reason(&bytes);
    assert_eq!((raw, r), r2);
}

// =============================================================================================
// Game: tokens, acks, state
// =============================================================================================

#[test]
fn game_wrong_and_missing_token_are_dropped_without_effect() {
    let (_, _, token) = game_online::<8>();
    let wrong = Token(token.0.map(|b| b ^ 0x5A));
    for bytes in [
        ctl(0, Control::KeepAlive, Some(wrong)),
        ctl(0, Control::Close(Reason::from_str("spoofed")), Some(wrong)),
        // a token-less CLOSE (3 bytes of reason cannot hold the 4-byte token)
        vec![0x10, 0x00, 0x00, 0x04, b'x', 0],
    ] {
        let (s, c) = game_drop_both(&bytes);
        assert_eq!(s.dropped_wrong_token, 1, "{bytes:02x?}");
        assert_eq!(c.dropped_wrong_token, 1, "{bytes:02x?}");
    }
    // a forged ACCEPT from an unknown address creates nothing
    assert_eq!(
        game_unknown_drop(&ctl(0, Control::Accept, Some(wrong))).dropped_wrong_token,
        1
    );
}

#[test]
fn game_acks_out_of_range_are_dropped_and_counted() {
    let (_, _, token) = game_online::<8>();
    for ack in [1u16, 5, 512, 1023] {
        let bytes = ctl(ack, Control::KeepAlive, Some(token));
        let (s, c) = game_drop_both(&bytes);
        assert_eq!((s.dropped_bad_ack, c.dropped_bad_ack), (1, 1), "ack {ack}");
    }
    // a chunk packet with a bad ack is not delivered either
    let mut chunk = vec![0x00, 0x09, 0x01, 0xAA];
    chunk.extend_from_slice(&token.0);
    let (s, c) = game_drop_both(&chunk);
    assert_eq!((s.dropped_bad_ack, c.dropped_bad_ack), (1, 1));
}

#[test]
fn game_chunks_before_online_are_not_delivered() {
    // client still connecting
    let mut c = GClient::new(game::ClientConfig::default());
    c.connect(ms(0)).unwrap();
    let _ = c_out(&mut c, ms(0));
    let chunk = [0x00, 0x00, 0x01, 0xAA, 0xBB];
    let r = c.handle_input(ms(1), (), &chunk).unwrap();
    assert!(r.app().is_none());
    assert_eq!(c.stats().dropped_not_online, 1);
    assert_eq!(c.state(), GState::Connecting);
    // server: chunks from an address without a peer are ignored
    assert_eq!(game_unknown_drop(&chunk).ignored_unsolicited, 1);
}

#[test]
fn game_duplicate_connect_and_accept_from_an_online_peer_keep_one_session() {
    let (mut s, _c, token) = game_online::<8>();
    let now = ms(20);
    // a repeated token CONNECT: answered again with the same token, no new peer, no event
    let connect = ctl(0, Control::Connect, Some(Token::UNKNOWN));
    let _ = s.handle_input(now, PEER, &connect).unwrap();
    let out = s_out(&mut s, now);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1, ctl(0, Control::ConnectAccept, Some(token)));
    assert!(out[0].1.len() <= connect.len());
    // a repeated ACCEPT: liveness only
    let _ = s
        .handle_input(now, PEER, &ctl(0, Control::Accept, Some(token)))
        .unwrap();
    assert!(s_out(&mut s, now).is_empty());
    assert!(s.poll_event().is_none(), "no second Connected");
    assert_eq!(s.peer_count(), 1);
    assert_eq!(s.stats().peers_admitted, 1);
}

#[test]
fn game_connect_flood_creates_no_peer_state() {
    // the big version (1,000,000 addresses) is flood::game_connect_flood_creates_no_state
    let mut s = GServer::with_capacities(game::ServerConfig::new(SECRET));
    let connect = ctl(0, Control::Connect, Some(Token::UNKNOWN));
    let now = ms(1);
    let mut replies = 0;
    let flood: u32 = if cfg!(miri) { 100 } else { 1_000 };
    for addr in 0..flood {
        let _ = s.handle_input(now, addr, &connect).unwrap();
        for (to, reply) in s_out(&mut s, now) {
            assert_eq!(to, addr);
            assert!(reply.len() <= connect.len(), "amplification");
            assert_eq!(
                reply,
                ctl(0, Control::ConnectAccept, Some(s.token_for(addr)))
            );
            replies += 1;
        }
        assert_eq!(s.peer_count(), 0);
        assert_eq!(s.poll_timeout(), None, "no timer");
        assert!(s.poll_event().is_none());
    }
    assert_eq!(replies, flood);
    // a short CONNECT (vanilla form) cannot buy a 12-byte token reply
    let _ = s.handle_input(now, 5_000, &[0x10, 0, 0, 1]).unwrap();
    let out = s_out(&mut s, now);
    assert_eq!(
        out,
        vec![(5_000, vec![0x10, 0, 0, 4])],
        "bare CLOSE (Reject policy)"
    );
}

#[test]
fn game_full_event_queues_refuse_input_without_consuming_it() {
    // server with a one-entry event queue: Connected is still queued
    let mut s: game::Server<u32, 16, 1> =
        game::Server::with_capacities(game::ServerConfig::new(SECRET));
    let now = ms(0);
    let token = s.token_for(PEER);
    let _ = s
        .handle_input(now, PEER, &ctl(0, Control::Accept, Some(token)))
        .unwrap();
    let close = ctl(0, Control::Close(Reason::from_str("bye")), Some(token));
    let before = s.stats();
    assert_eq!(s.handle_input(now, PEER, &close), Err(GError::QueueFull));
    assert_eq!(s.stats(), before, "nothing counted");
    assert!(s.is_online(PEER), "nothing changed");
    assert!(matches!(
        s.poll_event(),
        Some(GServerEvent::Connected { .. })
    ));
    // the same datagram, fed again, now takes effect
    let r = s.handle_input(now, PEER, &close).unwrap();
    assert_eq!(r.bytes_consumed(), close.len());
    assert!(matches!(s.poll_event(), Some(GServerEvent::Closed { .. })));

    // client with a one-entry event queue: Connected is still queued
    let mut srv = GServer::with_capacities(game::ServerConfig::new(SECRET));
    let mut c: game::Client<1> = game::Client::with_capacities(game::ClientConfig::default());
    c.connect(now).unwrap();
    for _ in 0..2 {
        for d in c_out(&mut c, now) {
            let _ = srv.handle_input(now, PEER, &d).unwrap();
        }
        for (_, d) in s_out(&mut srv, now) {
            let _ = c.handle_input(now, (), &d).unwrap();
        }
    }
    let token = c.token().unwrap();
    let close = ctl(0, Control::Close(Reason::from_str("kick")), Some(token));
    assert_eq!(c.handle_input(now, (), &close), Err(GError::QueueFull));
    assert_eq!(c.state(), GState::Online, "nothing changed");
    assert!(matches!(c.poll_event(), Some(GEvent::Connected { .. })));
    let _ = c.handle_input(now, (), &close).unwrap();
    assert_eq!(c.state(), GState::Closed);
}

// =============================================================================================
// Time going backwards (all four machines)
// =============================================================================================

/// Seeds of the wobbly-clock tests (fewer under Miri, which is about 100 times slower)
const SEEDS: u64 = if cfg!(miri) { 2 } else { 20 };
/// Steps per wobbly-clock run
const STEPS: usize = if cfg!(miri) { 150 } else { 400 };

/// A `now` that mostly moves forward but often jumps back by up to 5 s
fn wobbly(rng: &mut Rng, t: &mut u64) -> Instant {
    *t += rng.below(300_000);
    let back = if rng.chance(0.3) {
        rng.below(5_000_000)
    } else {
        0
    };
    Instant::from_micros(t.saturating_sub(back))
}

/// After `handle_timeout(now)` nothing is due: the next deadline, in the caller's clock (which
/// may have stepped back), is not before that `now`
fn check_deadline(who: &str, deadline: Option<Instant>, last_now: Instant) {
    if let Some(d) = deadline {
        assert!(
            d >= last_now,
            "{who}: poll_timeout {d} is before the now {last_now} of the last handle_timeout"
        );
    }
}

#[test]
fn game_time_going_backwards_shifts_the_timeline_on_both_machines() {
    for seed in 0..SEEDS {
        let mut rng = Rng::new(seed);
        let mut s = GServer::with_capacities(game::ServerConfig::new(SECRET));
        let mut c = GClient::new(game::ClientConfig::default());
        let mut t = 0u64;
        let mut buf = [0u8; 1400];
        c.connect(Instant::ZERO).unwrap();
        let mut connected = false;
        for _ in 0..STEPS {
            let now = wobbly(&mut rng, &mut t);
            c.handle_timeout(now);
            while let Some(x) = c.poll_transmit(now, &mut buf).unwrap() {
                let now = wobbly(&mut rng, &mut t);
                if !rng.chance(0.1) {
                    let _ = s.handle_input(now, PEER, &buf[..x.len]).unwrap();
                }
            }
            while let Some(e) = c.poll_event() {
                connected |= matches!(e, GEvent::Connected { .. });
            }
            check_deadline("game client", c.poll_timeout(), now);
            let now = wobbly(&mut rng, &mut t);
            s.handle_timeout(now);
            let mut out = Vec::new();
            while let Some(x) = s.poll_transmit(now, &mut buf).unwrap() {
                out.push(buf[..x.len].to_vec());
            }
            while s.poll_event().is_some() {}
            check_deadline("game server", s.poll_timeout(), now);
            for d in out {
                let now = wobbly(&mut rng, &mut t);
                let _ = c.handle_input(now, (), &d).unwrap();
            }
        }
        assert!(
            connected,
            "seed {seed}: the handshake works on a wobbly clock"
        );
    }
}

// =============================================================================================
// LongPort helpers
// =============================================================================================

type LServer = tether_net::longport::Server<u32, 8, 8>;

/// Session id number `n` (deterministic bytes; a real server draws them from the OS random
/// source)
fn lp_session(n: u8) -> SessionId {
    SessionId::from_random([n; 16])
}

/// A grant of session `n`, valid for ever
fn lp_grant(n: u8) -> Grant {
    Grant::new(lp_session(n), FAR)
}
type LClient = tether_net::longport::Client;
const CONN: u32 = 1;
const FAR: i64 = 10_000_000_000_000;

fn encode<'a, B: Body<'a>>(b: &B) -> Vec<u8> {
    let mut v = vec![0u8; b.encoded_len()];
    let n = b.encode(&mut v).unwrap();
    v.truncate(n);
    v
}

fn packet(p: &Packet<'_>) -> Vec<u8> {
    let mut v = vec![0u8; p.buffer_len()];
    let n = p.emit(&mut v).unwrap();
    v.truncate(n);
    v
}

fn auth_req(rid: u32, token: &str) -> Vec<u8> {
    packet(&Packet::request(
        2,
        RequestId(rid),
        10_000,
        &encode(&AuthRequest::new(token, Metadata::EMPTY)),
    ))
}

fn heartbeat_req(rid: u32) -> Vec<u8> {
    packet(&Packet::request(
        1,
        RequestId(rid),
        10_000,
        &encode(&Heartbeat::new(5, Some(rid as i32))),
    ))
}

/// One frame the server sent
#[derive(Debug)]
struct Out {
    to: u32,
    kind: FrameKind,
    bytes: Vec<u8>,
}

fn srv_out(s: &mut LServer, now: Instant) -> Vec<Out> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Some(t) = s.poll_transmit(now, &mut buf).unwrap() {
        out.push(Out {
            to: t.to,
            kind: t.kind,
            bytes: buf[..t.len].to_vec(),
        });
    }
    out
}

fn srv_events(s: &mut LServer) -> Vec<ServerEvent<u32>> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// The Close code pushed in `frames` (cmd 0 push), decoded from the bytes
fn pushed_close(frames: &[Out]) -> Option<CloseCode> {
    frames.iter().find_map(|f| {
        if !matches!(f.kind, FrameKind::Stream | FrameKind::WsBinary) {
            return None;
        }
        let (p, _) = Packet::parse(&f.bytes, MAX_BODY_LEN).ok()?;
        (p.header.kind == Kind::Push && p.header.cmd == 0)
            .then(|| Close::decode(p.body).unwrap().code)
    })
}

/// The responses in `frames`: (cmd, request id, status, Error body code)
fn responses(frames: &[Out]) -> Vec<(u8, u32, Status, Option<u64>)> {
    frames
        .iter()
        .filter_map(|f| {
            let (p, _) = Packet::parse(&f.bytes, MAX_BODY_LEN).ok()?;
            let Kind::Response { request_id, status } = p.header.kind else {
                return None;
            };
            let code = (!status.is_success())
                .then(|| ErrorBody::decode(p.body).ok().map(|e| e.code))
                .flatten();
            Some((p.header.cmd, request_id.0, status, code))
        })
        .collect()
}

/// Feed a TCP connection's bytes until consumed or the server needs more; returns whether the
/// Auth came back to the application
fn feed_tcp(s: &mut LServer, now: Instant, conn: u32, mut data: &[u8]) -> bool {
    let mut auth = false;
    while !data.is_empty() {
        let r = s.handle_input(now, conn, data).unwrap();
        auth |= matches!(r.app(), Some(SApp::Auth { .. }));
        if r.needed().is_some() || r.bytes_consumed() == 0 {
            break;
        }
        data = &data[r.bytes_consumed()..];
    }
    auth
}

/// A server with connection [`CONN`] over `transport`, authenticated (drained)
fn lp_authenticated(transport: Transport) -> LServer {
    let mut s = LServer::with_capacities(ServerConfig::new());
    let now = Instant::from_secs(1);
    s.handle_connected(now, CONN, transport, Source::UNKNOWN)
        .unwrap();
    let auth = auth_req(1, "good");
    match transport {
        Transport::Tcp => {
            let mut input = Handshake::OPENAPI.to_bytes().to_vec();
            input.extend(&auth);
            assert!(feed_tcp(&mut s, now, CONN, &input));
        }
        Transport::WebSocket => {
            let r = s.handle_input(now, CONN, &auth).unwrap();
            assert!(matches!(r.app(), Some(SApp::Auth { .. })));
        }
    }
    s.accept_auth(now, CONN, lp_grant(1)).unwrap();
    let _ = srv_out(&mut s, now);
    let _ = srv_events(&mut s);
    assert_eq!(s.state(CONN), Some(ServerState::Authenticated));
    s
}

/// The server closed [`CONN`] with `code` for `cause`: Close push on the wire, WsClose on WS,
/// then `Closed`, slot freed
fn assert_server_closed(
    s: &mut LServer,
    now: Instant,
    transport: Transport,
    code: CloseCode,
    cause: CloseCause,
) -> Vec<Out> {
    let out = srv_out(s, now);
    assert_eq!(pushed_close(&out), Some(code), "Close push in {out:?}");
    assert!(out.iter().all(|o| o.to == CONN));
    if transport == Transport::WebSocket {
        let last = out.last().unwrap();
        assert_eq!(last.kind, FrameKind::WsClose(code.ws_close_code()));
    }
    let ev = srv_events(s);
    assert_eq!(ev, vec![ServerEvent::Closed { peer: CONN, cause }]);
    assert_eq!(s.connections(), 0, "slot freed");
    out
}

/// A TCP client authenticated with session "s1" (events drained); returns the client
fn lp_client_ready(config: ClientConfig) -> LClient {
    let mut c = LClient::new(config);
    let now = Instant::from_secs(1);
    c.connect(now, Credentials::new("tok")).unwrap();
    c.handle_connected(now).unwrap();
    let rid = login_rid(&mut c, now);
    let grant = encode(&SessionGrant {
        session_id: "s1",
        expires: FAR,
        limit: 0,
        online: 0,
    });
    feed_client(
        &mut c,
        now,
        &packet(&Packet::response(2, rid, Status::Success, &grant)),
    );
    assert!(c.is_connected());
    while c.poll_event().is_some() {}
    c
}

/// The request id of the login the client just queued (TCP: after the handshake)
fn login_rid(c: &mut LClient, now: Instant) -> RequestId {
    let mut buf = [0u8; 2048];
    let t = c.poll_transmit(now, &mut buf).unwrap().unwrap();
    let start = if t.kind == FrameKind::Stream { 2 } else { 0 };
    let (p, _) = Packet::parse(&buf[start..t.len], MAX_BODY_LEN).unwrap();
    p.header.kind.request_id().unwrap()
}

fn feed_client(c: &mut LClient, now: Instant, mut data: &[u8]) {
    while !data.is_empty() {
        let r = c.handle_input(now, (), data).unwrap();
        if r.needed().is_some() || r.bytes_consumed() == 0 {
            break;
        }
        data = &data[r.bytes_consumed()..];
    }
}

fn client_events(c: &mut LClient) -> Vec<ClientEvent> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn client_frames(c: &mut LClient, now: Instant) -> Vec<(FrameKind, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while let Some(t) = c.poll_transmit(now, &mut buf).unwrap() {
        out.push((t.kind, buf[..t.len].to_vec()));
    }
    out
}

/// The client's events contain `Disconnected { cause }`
fn assert_disconnected(c: &mut LClient, cause: CloseCause) {
    let ev = client_events(c);
    assert!(
        ev.contains(&ClientEvent::Disconnected { cause }),
        "expected Disconnected({cause:?}) in {ev:?}"
    );
    assert!(!c.is_connected());
}

// =============================================================================================
// LongPort: framing
// =============================================================================================

#[test]
fn lp_truncated_tcp_packet_waits_for_more_and_consumes_nothing() {
    let mut s = lp_authenticated(Transport::Tcp);
    let now = Instant::from_secs(2);
    let hb = heartbeat_req(9);
    for cut in 0..hb.len() {
        let r = s.handle_input(now, CONN, &hb[..cut]).unwrap();
        assert_eq!(r.bytes_consumed(), 0, "prefix of {cut}");
        if cut > 0 {
            assert!(r.needed().unwrap() > cut);
        }
    }
    assert!(srv_out(&mut s, now).is_empty());
    assert_eq!(s.state(CONN), Some(ServerState::Authenticated));
    // client side: the same for a response prefix
    let mut c = lp_client_ready(ClientConfig::tcp());
    let push = packet(&Packet::push(100, b"quote"));
    let r = c.handle_input(now, (), &push[..push.len() - 1]).unwrap();
    assert_eq!((r.bytes_consumed(), r.needed()), (0, Some(push.len())));
    assert!(c.is_connected());
}

#[test]
fn lp_truncated_websocket_message_closes_with_unpack_error() {
    let mut s = lp_authenticated(Transport::WebSocket);
    let now = Instant::from_secs(2);
    let hb = heartbeat_req(9);
    let r = s.handle_input(now, CONN, &hb[..hb.len() - 1]).unwrap();
    assert_eq!(
        r.bytes_consumed(),
        hb.len() - 1,
        "messages are consumed whole"
    );
    assert_server_closed(
        &mut s,
        now,
        Transport::WebSocket,
        CloseCode::UnpackError,
        CloseCause::Protocol(ProtocolError::Framing(DeframeError::Truncated {
            len: hb.len() - 1,
            needed: hb.len(),
        })),
    );
    // client side: a truncated WS message is dropped and counted, the connection stays
    let mut c = lp_client_ready(ClientConfig::websocket());
    let push = packet(&Packet::push(100, b"quote"));
    let r = c.handle_input(now, (), &push[..push.len() - 1]).unwrap();
    assert_eq!(r.bytes_consumed(), push.len() - 1);
    assert_eq!(c.stats().decode_errors, 1);
    assert!(c.is_connected());
}

#[test]
fn lp_body_length_beyond_max_body_closes_before_the_body_arrives() {
    for transport in [Transport::Tcp, Transport::WebSocket] {
        let mut s = lp_authenticated(transport);
        let now = Instant::from_secs(2);
        // a request header announcing 16 MiB - 1 (max_body is 1 MiB); only the header is sent
        let header = [0x01, 0x01, 0, 0, 0, 9, 0x27, 0x10, 0xFF, 0xFF, 0xFF];
        let r = s.handle_input(now, CONN, &header).unwrap();
        assert_eq!(r.needed(), None, "no need for 16 MiB: refused at once");
        assert_server_closed(
            &mut s,
            now,
            transport,
            CloseCode::UnpackError,
            CloseCause::Protocol(ProtocolError::Framing(DeframeError::BodyTooLarge {
                len: 0xFF_FFFF,
                max: 1 << 20,
            })),
        );
    }
    // client: a push announcing more than its max_body ends the connection
    let mut c = lp_client_ready(ClientConfig::tcp());
    let now = Instant::from_secs(2);
    let _ = c
        .handle_input(now, (), &[0x03, 100, 0x10, 0x00, 0x01])
        .unwrap();
    assert_disconnected(
        &mut c,
        CloseCause::Protocol(ProtocolError::Framing(DeframeError::BodyTooLarge {
            len: 0x10_0001,
            max: 1 << 20,
        })),
    );
}

#[test]
fn lp_unknown_packet_types_close_with_unpack_error() {
    for t in [0u8, 4, 7, 15] {
        let mut s = lp_authenticated(Transport::Tcp);
        let now = Instant::from_secs(2);
        let mut hb = heartbeat_req(9);
        hb[0] = (hb[0] & 0xF0) | t;
        let _ = s.handle_input(now, CONN, &hb).unwrap();
        assert_server_closed(
            &mut s,
            now,
            Transport::Tcp,
            CloseCode::UnpackError,
            CloseCause::Protocol(ProtocolError::Framing(DeframeError::UnknownType(t))),
        );
        let mut c = lp_client_ready(ClientConfig::tcp());
        let _ = c.handle_input(now, (), &hb).unwrap();
        assert_disconnected(
            &mut c,
            CloseCause::Protocol(ProtocolError::Framing(DeframeError::UnknownType(t))),
        );
        // the codec error underneath
        assert_eq!(
            Packet::parse(&hb, MAX_BODY_LEN).unwrap_err(),
            LDecodeError::UnknownType(t)
        );
    }
}

#[test]
fn lp_bad_tcp_handshake_closes_with_unpack_error() {
    let mut s = LServer::with_capacities(ServerConfig::new());
    let now = Instant::from_secs(1);
    s.handle_connected(now, CONN, Transport::Tcp, Source::UNKNOWN)
        .unwrap();
    // the version is the low nibble of the first byte: 0x12 is version 2
    let _ = s.handle_input(now, CONN, &[0x12, 0x09]).unwrap();
    assert_server_closed(
        &mut s,
        now,
        Transport::Tcp,
        CloseCode::UnpackError,
        CloseCause::Protocol(ProtocolError::Framing(DeframeError::UnsupportedVersion(2))),
    );
    s.handle_connected(now, CONN, Transport::Tcp, Source::UNKNOWN)
        .unwrap();
    let _ = s.handle_input(now, CONN, &[0x10, 0x09]).unwrap();
    assert_server_closed(
        &mut s,
        now,
        Transport::Tcp,
        CloseCode::UnpackError,
        CloseCause::Protocol(ProtocolError::Framing(DeframeError::UnsupportedVersion(0))),
    );
}

#[test]
fn lp_reserved_bits_are_ignored() {
    let mut s = lp_authenticated(Transport::Tcp);
    let now = Instant::from_secs(2);
    let body = encode(&Heartbeat::new(5, Some(9)));
    let hb = packet(&Packet::request(1, RequestId(9), 1_000, &body).with_reserve(0x3));
    let (parsed, _) = Packet::parse(&hb, MAX_BODY_LEN).unwrap();
    assert_eq!(parsed.header.reserve, 0x3);
    assert!(!feed_tcp(&mut s, now, CONN, &hb));
    let out = srv_out(&mut s, now);
    assert_eq!(responses(&out), vec![(1, 9, Status::Success, None)]);
    assert_eq!(s.state(CONN), Some(ServerState::Authenticated));
}

// =============================================================================================
// LongPort: commands and bodies
// =============================================================================================

#[test]
fn lp_unknown_commands_are_business_after_auth_and_refused_before() {
    // before auth: status 5 + Error{401}, Close{AuthError}
    let mut s = LServer::with_capacities(ServerConfig::new());
    let now = Instant::from_secs(1);
    s.handle_connected(now, CONN, Transport::WebSocket, Source::UNKNOWN)
        .unwrap();
    let req = packet(&Packet::request(200, RequestId(3), 1_000, b"?"));
    let _ = s.handle_input(now, CONN, &req).unwrap();
    let out = assert_server_closed(
        &mut s,
        now,
        Transport::WebSocket,
        CloseCode::AuthError,
        CloseCause::NotAuthenticated,
    );
    assert_eq!(
        responses(&out),
        vec![(200, 3, Status::Unauthenticated, Some(401))]
    );
    // after auth: an unknown command is business traffic for the application
    let mut s = lp_authenticated(Transport::WebSocket);
    let r = s.handle_input(now, CONN, &req).unwrap();
    assert!(matches!(
        r.app(),
        Some(SApp::Request {
            cmd: 200,
            request_id: RequestId(3),
            ..
        })
    ));
    // a control *request* after auth (Close/Auth/Reconnect): status 3 + Error{400}, stays up
    let close_req = packet(&Packet::request(0, RequestId(4), 1_000, &[]));
    let _ = s.handle_input(now, CONN, &close_req).unwrap();
    let out = srv_out(&mut s, now);
    assert_eq!(responses(&out), vec![(0, 4, Status::BadRequest, Some(400))]);
    assert_eq!(s.state(CONN), Some(ServerState::Authenticated));
    // a response with a control cmd: ignored and counted
    let resp = packet(&Packet::response(2, RequestId(77), Status::Success, &[]));
    let _ = s.handle_input(now, CONN, &resp).unwrap();
    assert_eq!(s.stats().ignored_packets, 1);
    assert!(srv_out(&mut s, now).is_empty());
    // client: a server request other than a heartbeat is dropped and counted
    let mut c = lp_client_ready(ClientConfig::tcp());
    let before = c.stats().dropped;
    feed_client(&mut c, now, &req);
    assert_eq!(c.stats().dropped, before + 1);
    assert!(c.is_connected() && client_frames(&mut c, now).is_empty());
}

/// Auth bodies that are not valid protobuf, each with the error the server must report
fn malformed_auth_bodies() -> Vec<(&'static str, Vec<u8>, PbError)> {
    vec![
        (
            "bad varint",
            vec![
                0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01,
            ],
            PbError::VarintOverflow,
        ),
        (
            "wrong wire type",
            vec![0x08, 0x01],
            PbError::WrongWireType { field: 1 },
        ),
        (
            "invalid UTF-8",
            vec![0x0A, 0x02, 0xC3, 0x28],
            PbError::InvalidUtf8 { field: 1 },
        ),
        ("truncated", vec![0x0A, 0x05, b'a'], PbError::Truncated),
    ]
}

#[test]
fn lp_malformed_protobuf_auth_body_closes_with_unpack_error() {
    for (what, body, err) in malformed_auth_bodies() {
        assert_eq!(AuthRequest::decode(&body).unwrap_err(), err, "{what}");
        let mut s = LServer::with_capacities(ServerConfig::new());
        let now = Instant::from_secs(1);
        s.handle_connected(now, CONN, Transport::WebSocket, Source::UNKNOWN)
            .unwrap();
        let p = packet(&Packet::request(2, RequestId(1), 1_000, &body));
        let r = s.handle_input(now, CONN, &p).unwrap();
        assert!(r.app().is_none(), "{what}: not handed to the application");
        assert_server_closed(
            &mut s,
            now,
            Transport::WebSocket,
            CloseCode::UnpackError,
            CloseCause::Protocol(ProtocolError::ControlBody { cmd: 2, error: err }),
        );
        // the same body inside a Reconnect
        assert!(ReconnectRequest::decode(&body).is_err());
    }
}

#[test]
fn lp_malformed_protobuf_auth_response_ends_the_client_connection() {
    for (what, body, err) in malformed_auth_bodies() {
        let mut c = LClient::new(ClientConfig::tcp());
        let now = Instant::from_secs(1);
        c.connect(now, Credentials::new("tok")).unwrap();
        c.handle_connected(now).unwrap();
        let rid = login_rid(&mut c, now);
        // session_id is field 1 and a string too, so each body is malformed as a grant as well
        let e = SessionGrant::decode(&body).expect_err(what);
        assert_eq!(e, err, "{what}");
        feed_client(
            &mut c,
            now,
            &packet(&Packet::response(2, rid, Status::Success, &body)),
        );
        assert_disconnected(
            &mut c,
            CloseCause::Protocol(ProtocolError::ControlBody { cmd: 2, error: e }),
        );
        assert!(c.session_id().is_none(), "{what} ({err:?}): no session");
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn lp_gzip_bomb_and_bad_crc_in_control_bodies_are_protocol_errors() {
    let now = Instant::from_secs(2);
    // a Close push whose gzip body inflates to 64 KiB (the client inflates at most 512 bytes)
    let mut bomb_src = encode(&Close::new(CloseCode::ServerError, "x"));
    // 64 KiB (4 KiB under Miri: still eight times the client's inflate limit)
    bomb_src.resize(if cfg!(miri) { 4 << 10 } else { 64 << 10 }, 0);
    let bomb = gzip(&bomb_src);
    assert!(bomb.len() < 2_000, "{} bytes", bomb.len());
    // a valid small Close push with a corrupted CRC32
    let mut bad_crc = gzip(&encode(&Close::new(CloseCode::ServerError, "x")));
    let n = bad_crc.len();
    bad_crc[n - 8] ^= 0xFF;
    for (what, body) in [("bomb", bomb), ("bad crc", bad_crc)] {
        let mut c = lp_client_ready(ClientConfig::tcp());
        feed_client(
            &mut c,
            now,
            &packet(&Packet::push(0, &body).with_gzip(true)),
        );
        assert_disconnected(
            &mut c,
            CloseCause::Protocol(ProtocolError::CompressedControl { cmd: 0 }),
        );
        assert!(c.stats().decode_errors >= 1, "{what}");
    }
    // a good gzip Close push is inflated and obeyed
    let mut c = lp_client_ready(ClientConfig::tcp());
    let good = gzip(&encode(&Close::new(CloseCode::ServerError, "maintenance")));
    feed_client(
        &mut c,
        now,
        &packet(&Packet::push(0, &good).with_gzip(true)),
    );
    assert_disconnected(
        &mut c,
        CloseCause::Peer {
            code: CloseCode::ServerError,
        },
    );
}

#[test]
fn lp_compressed_login_is_inflated_within_the_limits() {
    let now = Instant::from_secs(1);
    // a real gzip'd Auth (as the Go SDK sends bodies of 1 KiB and more) is accepted: checked
    // by the machine, handed over compressed
    let auth = encode(&AuthRequest::new("tok", Metadata::EMPTY));
    let mut s = LServer::with_capacities(ServerConfig::new());
    s.handle_connected(now, CONN, Transport::WebSocket, Source::UNKNOWN)
        .unwrap();
    let body = gzip(&auth);
    let p = packet(&Packet::request(2, RequestId(1), 1_000, &body).with_gzip(true));
    let r = s.handle_input(now, CONN, &p).unwrap();
    let Some(SApp::CompressedAuth { request_id, body }) = r.app() else {
        panic!("{:?}", r.app());
    };
    assert_eq!(*request_id, RequestId(1));
    let mut plain = [0u8; tether_net::longport::MAX_INFLATED_LOGIN];
    let n = tether_net::longport::gzip::gunzip(body, &mut plain).unwrap();
    assert_eq!(AuthRequest::decode(&plain[..n]).unwrap().token, "tok");
    s.accept_auth(now, CONN, lp_grant(1)).unwrap();
    assert_eq!(s.stats().compressed_logins, 1);
    // a bomb (inflates beyond the 4 KiB limit before authentication), a bad CRC, a body that
    // is not an AuthRequest: closed with UnpackError, the application never sees them
    let long_token = "t".repeat(5_000);
    let bomb = gzip(&encode(&AuthRequest::new(&long_token, Metadata::EMPTY)));
    let mut bad_crc = gzip(&auth);
    let at = bad_crc.len() - 8;
    bad_crc[at] ^= 0xff;
    let not_protobuf = gzip(&[0x0a, 0x05, 0x61]);
    for (body, cause) in [
        (bomb, ProtocolError::CompressedControl { cmd: 2 }),
        (bad_crc, ProtocolError::CompressedControl { cmd: 2 }),
        (
            not_protobuf,
            ProtocolError::ControlBody {
                cmd: 2,
                error: tether_net::longport::control::PbError::Truncated,
            },
        ),
    ] {
        let mut s = LServer::with_capacities(ServerConfig::new());
        s.handle_connected(now, CONN, Transport::WebSocket, Source::UNKNOWN)
            .unwrap();
        let p = packet(&Packet::request(2, RequestId(1), 1_000, &body).with_gzip(true));
        let r = s.handle_input(now, CONN, &p).unwrap();
        assert!(r.app().is_none());
        assert_server_closed(
            &mut s,
            now,
            Transport::WebSocket,
            CloseCode::UnpackError,
            CloseCause::Protocol(cause),
        );
    }
    // a gzip'd Reconnect with an unknown session is refused like a plain one
    let mut s = LServer::with_capacities(ServerConfig::new());
    s.handle_connected(now, CONN, Transport::WebSocket, Source::UNKNOWN)
        .unwrap();
    let body = gzip(&encode(&ReconnectRequest::new("guess", Metadata::EMPTY)));
    let p = packet(&Packet::request(3, RequestId(1), 1_000, &body).with_gzip(true));
    assert!(s.handle_input(now, CONN, &p).unwrap().app().is_none());
    assert_server_closed(
        &mut s,
        now,
        Transport::WebSocket,
        CloseCode::SessExpired,
        CloseCause::SessionUnknown,
    );
}

#[test]
fn lp_close_push_reason_over_length_is_borrowed_whole_and_invalid_utf8_is_an_error() {
    let now = Instant::from_secs(2);
    let long = "ü".repeat(500);
    let mut c = lp_client_ready(ClientConfig::tcp());
    let body = encode(&Close::new(CloseCode::ServerShutdown, &long));
    let push = packet(&Packet::push(0, &body));
    // the client copies no peer text: the 1000-byte reason comes back borrowed from the input
    let r = c.handle_input(now, (), &push).unwrap();
    let Some(tether_net::longport::ClientApp::Close { code, reason }) = r.into_app() else {
        panic!("no Close")
    };
    assert_eq!(code, CloseCode::ServerShutdown);
    assert_eq!(reason.to_str(), Some(long.as_str()));
    let (at, len) = (reason.as_bytes().as_ptr() as usize, reason.len());
    let input = push.as_ptr() as usize..push.as_ptr() as usize + push.len();
    assert!(input.contains(&at) && at + len <= input.end, "borrowed");
    let ev = client_events(&mut c);
    assert_eq!(
        ev.first(),
        Some(&ClientEvent::Disconnected {
            cause: CloseCause::Peer {
                code: CloseCode::ServerShutdown
            }
        })
    );
    // reason bytes that are not UTF-8: the body is undecodable
    let mut c = lp_client_ready(ClientConfig::tcp());
    let bad = [0x08, 0x02, 0x12, 0x02, 0xC3, 0x28];
    feed_client(&mut c, now, &packet(&Packet::push(0, &bad)));
    assert_disconnected(
        &mut c,
        CloseCause::Protocol(ProtocolError::ControlBody {
            cmd: 0,
            error: PbError::InvalidUtf8 { field: 2 },
        }),
    );
    // server side: a caller-supplied close reason is cut to 64 bytes on a char boundary
    let mut s = lp_authenticated(Transport::Tcp);
    s.close(now, CONN, CloseCode::ServerError, &long).unwrap();
    let out = srv_out(&mut s, now);
    let (p, _) = Packet::parse(&out[0].bytes, MAX_BODY_LEN).unwrap();
    let close = Close::decode(p.body).unwrap();
    assert!(close.reason.len() <= tether_net::longport::MAX_TEXT_LEN);
    assert!(close.reason.chars().all(|ch| ch == 'ü'));
}

// =============================================================================================
// LongPort: authentication
// =============================================================================================

#[test]
fn lp_wrong_token_is_rejected_with_status_and_auth_error_close() {
    let mut s = LServer::with_capacities(ServerConfig::new());
    let now = Instant::from_secs(1);
    s.handle_connected(now, CONN, Transport::WebSocket, Source::UNKNOWN)
        .unwrap();
    let req = auth_req(5, "wrong");
    let r = s.handle_input(now, CONN, &req).unwrap();
    assert!(matches!(r.app(), Some(SApp::Auth { token: "wrong", .. })));
    s.reject_auth(now, CONN, Status::Unauthenticated, 401, "bad token")
        .unwrap();
    let out = assert_server_closed(
        &mut s,
        now,
        Transport::WebSocket,
        CloseCode::AuthError,
        CloseCause::LoginRejected(Status::Unauthenticated),
    );
    assert_eq!(
        responses(&out),
        vec![(2, 5, Status::Unauthenticated, Some(401))]
    );
    assert_eq!(s.sessions(), 0, "no session for a rejected token");
}

#[test]
fn lp_reconnect_with_unknown_session_is_rejected_automatically() {
    let mut s = lp_authenticated(Transport::Tcp);
    let now = Instant::from_secs(2);
    s.handle_connected(now, 2, Transport::WebSocket, Source::UNKNOWN)
        .unwrap();
    let body = encode(&ReconnectRequest::new("sess-guess", Metadata::EMPTY));
    let req = packet(&Packet::request(3, RequestId(8), 1_000, &body));
    let r = s.handle_input(now, 2, &req).unwrap();
    assert!(r.app().is_none(), "the application is not asked");
    let out = srv_out(&mut s, now);
    assert!(out.iter().all(|o| o.to == 2));
    assert_eq!(pushed_close(&out), Some(CloseCode::SessExpired));
    assert_eq!(
        responses(&out),
        vec![(3, 8, Status::Unauthenticated, Some(401))]
    );
    assert_eq!(
        srv_events(&mut s),
        vec![ServerEvent::Closed {
            peer: 2,
            cause: CloseCause::SessionUnknown
        }]
    );
    assert_eq!(s.state(CONN), Some(ServerState::Authenticated), "untouched");
}

#[test]
fn lp_requests_before_auth_get_status_5_and_auth_error_close() {
    for transport in [Transport::Tcp, Transport::WebSocket] {
        let mut s = LServer::with_capacities(ServerConfig::new());
        let now = Instant::from_secs(1);
        s.handle_connected(now, CONN, transport, Source::UNKNOWN)
            .unwrap();
        let mut input = Vec::new();
        if transport == Transport::Tcp {
            input.extend(Handshake::OPENAPI.to_bytes());
        }
        input.extend(heartbeat_req(4));
        if transport == Transport::Tcp {
            feed_tcp(&mut s, now, CONN, &input);
        } else {
            let _ = s.handle_input(now, CONN, &input).unwrap();
        }
        let out = assert_server_closed(
            &mut s,
            now,
            transport,
            CloseCode::AuthError,
            CloseCause::NotAuthenticated,
        );
        assert_eq!(
            responses(&out),
            vec![(1, 4, Status::Unauthenticated, Some(401))]
        );
    }
}

#[test]
fn lp_auth_flood_hits_the_unauthenticated_cap() {
    let mut s = LServer::with_capacities(ServerConfig::new().with_max_unauthenticated(3));
    let now = Instant::from_secs(1);
    for conn in 0..3 {
        s.handle_connected(now, conn, Transport::WebSocket, Source::UNKNOWN)
            .unwrap();
        let req = auth_req(1, "x");
        let r = s.handle_input(now, conn, &req).unwrap();
        assert!(r.app().is_some());
    }
    // every further connection is admitted and evicts the oldest idle one (the logins waiting
    // for the application go last): never more than 3 unauthenticated
    for conn in 3..100 {
        s.handle_connected(now, conn, Transport::WebSocket, Source::UNKNOWN)
            .unwrap();
        assert_eq!(s.unauthenticated(), 3);
        let out = srv_out(&mut s, now);
        if conn > 3 {
            assert_eq!(pushed_close(&out), Some(CloseCode::ServerError));
            assert_eq!(
                srv_events(&mut s),
                vec![ServerEvent::Closed {
                    peer: conn - 1,
                    cause: CloseCause::Evicted
                }]
            );
        } else {
            assert_eq!(
                srv_events(&mut s),
                vec![ServerEvent::Closed {
                    peer: 0,
                    cause: CloseCause::Evicted
                }],
                "all three wait for a decision: the oldest goes"
            );
        }
    }
    assert_eq!(s.connections(), 3);
    assert_eq!(s.stats().connections_evicted, 97);
    assert_eq!(s.stats().connections_refused, 0);
    // deciding frees room: an authenticated connection does not count
    s.accept_auth(now, 1, lp_grant(0xa)).unwrap();
    s.handle_connected(now, 100, Transport::WebSocket, Source::UNKNOWN)
        .unwrap();
    assert_eq!(s.unauthenticated(), 3);
    assert_eq!(s.stats().connections_evicted, 97);
}

#[test]
fn lp_slow_partial_input_does_not_keep_a_connection_alive() {
    let t0 = Instant::from_secs(1);
    let hb = heartbeat_req(3);
    // before auth: WebSocket pings and a TCP auth packet trickled byte by byte; the auth deadline
    // (10 s after handle_connected) closes both
    let mut s = LServer::with_capacities(ServerConfig::new());
    s.handle_connected(t0, 1, Transport::WebSocket, Source::UNKNOWN)
        .unwrap();
    s.handle_connected(t0, 2, Transport::Tcp, Source::UNKNOWN)
        .unwrap();
    let mut tcp = Handshake::OPENAPI.to_bytes().to_vec();
    tcp.extend(auth_req(1, "tok"));
    let mut closed = Vec::new();
    for k in 1..=40u64 {
        let now = t0 + Duration::from_millis(250 * k);
        s.handle_frame(now, 1, FrameKind::WsPing, b"alive");
        // the caller keeps the stream bytes; one more of them arrives every 250 ms
        let n = (k as usize).min(tcp.len() - 1);
        let fed = if s.state(2) == Some(ServerState::AwaitHandshake) {
            &tcp[..n]
        } else {
            &tcp[2..n.max(2)]
        };
        let _ = s.handle_input(now, 2, fed);
        s.handle_timeout(now);
        let _ = srv_out(&mut s, now);
        for e in srv_events(&mut s) {
            if let ServerEvent::Closed { peer, cause } = e {
                closed.push((peer, cause, now));
            }
        }
    }
    let deadline = t0 + Duration::from_secs(10);
    assert_eq!(
        closed,
        vec![
            (1, CloseCause::LoginTimeout, deadline),
            (2, CloseCause::LoginTimeout, deadline)
        ]
    );
    assert_eq!(s.connections(), 0);
    // after auth: a packet that never completes is no sign of life; the heartbeat timeout
    // (150 s) closes the connection
    let mut s = lp_authenticated(Transport::Tcp);
    let mut now = t0;
    let mut closed_at = None;
    for k in 0..400u64 {
        now = t0 + Duration::from_secs(k);
        let n = 1 + (k as usize % (hb.len() - 1));
        if let Ok(r) = s.handle_input(now, CONN, &hb[..n]) {
            assert_eq!(r.bytes_consumed(), 0);
        }
        s.handle_timeout(now);
        let out = srv_out(&mut s, now);
        if pushed_close(&out) == Some(CloseCode::HeartbeatTimeout) {
            closed_at = Some(now);
            break;
        }
    }
    assert_eq!(closed_at, Some(t0 + Duration::from_secs(150)), "at {now}");
}

#[test]
fn lp_input_during_a_pending_auth_decision_is_refused_unconsumed() {
    let mut s = LServer::with_capacities(ServerConfig::new());
    let now = Instant::from_secs(1);
    s.handle_connected(now, CONN, Transport::Tcp, Source::UNKNOWN)
        .unwrap();
    let mut input = Handshake::OPENAPI.to_bytes().to_vec();
    input.extend(auth_req(1, "tok"));
    let hb = heartbeat_req(2);
    assert!(feed_tcp(&mut s, now, CONN, &input));
    assert_eq!(s.handle_input(now, CONN, &hb), Err(LError::AuthPending));
    assert_eq!(s.state(CONN), Some(ServerState::AuthPending));
    s.accept_auth(now, CONN, lp_grant(0xa)).unwrap();
    // the same bytes again, now parsed
    let r = s.handle_input(now, CONN, &hb).unwrap();
    assert_eq!(r.bytes_consumed(), hb.len());
    let out = srv_out(&mut s, now);
    assert_eq!(
        responses(&out),
        vec![(2, 1, Status::Success, None), (1, 2, Status::Success, None)]
    );
}

#[test]
fn lp_duplicate_session_closes_the_older_connection() {
    let mut s = lp_authenticated(Transport::Tcp);
    let now = Instant::from_secs(2);
    // a second connection presents the live session of CONN
    s.handle_connected(now, 2, Transport::WebSocket, Source::UNKNOWN)
        .unwrap();
    let victim = lp_session(1);
    let body = encode(&ReconnectRequest::new(victim.as_str(), Metadata::EMPTY));
    let req = packet(&Packet::request(3, RequestId(1), 1_000, &body));
    let r = s.handle_input(now, 2, &req).unwrap();
    assert!(matches!(
        r.app(),
        Some(SApp::Reconnect { session_id, .. }) if *session_id == victim.as_str()
    ));
    s.accept_reconnect(now, 2, lp_grant(2)).unwrap();
    let out = srv_out(&mut s, now);
    let old: Vec<Out> = out.into_iter().filter(|o| o.to == CONN).collect();
    assert_eq!(pushed_close(&old), Some(CloseCode::ConnectDuplicate));
    let ev = srv_events(&mut s);
    assert!(ev.contains(&ServerEvent::Closed {
        peer: CONN,
        cause: CloseCause::Duplicate
    }));
    assert_eq!(s.state(2), Some(ServerState::Authenticated));
    assert_eq!(s.stats().duplicates_closed, 1);
    // the client that receives ConnectDuplicate drops the session and re-authenticates (a
    // session of its own: no fight over the displaced one, and not stopped for good)
    let mut c = lp_client_ready(ClientConfig::tcp());
    let body = encode(&Close::new(CloseCode::ConnectDuplicate, "dup"));
    feed_client(&mut c, now, &packet(&Packet::push(0, &body)));
    let ev = client_events(&mut c);
    assert_eq!(
        ev[..2],
        [
            ClientEvent::Disconnected {
                cause: CloseCause::Peer {
                    code: CloseCode::ConnectDuplicate,
                },
            },
            ClientEvent::TokenNeeded
        ]
    );
    assert!(matches!(ev[2], ClientEvent::ReconnectScheduled { .. }));
    assert_eq!(c.session_id(), None);
}

// =============================================================================================
// LongPort: correlation, ids, queues, time
// =============================================================================================

#[test]
fn lp_responses_with_unknown_request_ids_are_dropped_and_counted() {
    let mut c = lp_client_ready(ClientConfig::tcp());
    let now = Instant::from_secs(2);
    let mut buf = [0u8; 256];
    let (id, _) = c
        .send_request(now, 10, Duration::from_secs(5), b"q", &mut buf)
        .unwrap();
    for rid in [0u32, id.0 + 1, u32::MAX] {
        feed_client(
            &mut c,
            now,
            &packet(&Packet::response(10, RequestId(rid), Status::Success, b"r")),
        );
    }
    assert_eq!(c.stats().unmatched_responses, 3);
    assert_eq!(c.in_flight(), 1, "the real request still waits");
    // a response after the timeout is dropped too
    c.handle_timeout(now + Duration::from_secs(5));
    assert!(client_events(&mut c).contains(&ClientEvent::RequestTimedOut { id }));
    feed_client(
        &mut c,
        now + Duration::from_secs(6),
        &packet(&Packet::response(10, id, Status::Success, b"late")),
    );
    assert_eq!(c.stats().unmatched_responses, 4);
}

#[test]
fn lp_request_ids_wrap_past_u32_max_skipping_zero_and_ids_in_flight() {
    let mut c = lp_client_ready(ClientConfig::tcp().with_first_request_id(u32::MAX - 3));
    let now = Instant::from_secs(2);
    let mut buf = [0u8; 256];
    let mut ids = Vec::new();
    for _ in 0..5 {
        let (id, t) = c
            .send_request(now, 10, Duration::from_secs(30), b"q", &mut buf)
            .unwrap();
        let (p, _) = Packet::parse(&buf[..t.len], MAX_BODY_LEN).unwrap();
        assert_eq!(
            p.header.kind.request_id(),
            Some(id),
            "the wire carries the id"
        );
        ids.push(id.0);
    }
    // the login used MAX - 3
    assert_eq!(ids, vec![u32::MAX - 2, u32::MAX - 1, u32::MAX, 1, 2]);
    assert!(!ids.contains(&0));
    // responses are matched across the wrap
    for rid in [u32::MAX, 1] {
        feed_client(
            &mut c,
            now,
            &packet(&Packet::response(10, RequestId(rid), Status::Success, b"")),
        );
    }
    assert_eq!(c.in_flight(), 3);
    assert_eq!(c.stats().responses, 2);
    // server side: extreme request ids are echoed unchanged
    let mut s = lp_authenticated(Transport::Tcp);
    for rid in [0u32, u32::MAX] {
        assert!(!feed_tcp(&mut s, now, CONN, &heartbeat_req(rid)));
        let out = srv_out(&mut s, now);
        assert_eq!(responses(&out), vec![(1, rid, Status::Success, None)]);
    }
}

#[test]
fn lp_full_event_queue_refuses_input_without_consuming_it() {
    let mut c = LClient::new(ClientConfig::tcp());
    let mut t = Instant::from_secs(1);
    c.connect(t, Credentials::new("tok")).unwrap(); // event 1: ConnectTransport
    c.handle_connected(t).unwrap();
    let rid = login_rid(&mut c, t);
    let grant = encode(&SessionGrant {
        session_id: "s1",
        expires: FAR,
        limit: 0,
        online: 0,
    });
    // event 2: Connected
    feed_client(
        &mut c,
        t,
        &packet(&Packet::response(2, rid, Status::Success, &grant)),
    );
    // heartbeat round trips add a HeartbeatRtt event each; nothing is drained
    let push = packet(&Packet::push(100, b"quote"));
    let mut buf = [0u8; 256];
    let mut rtts = 0;
    loop {
        match c.handle_input(t, (), &push) {
            Ok(r) => assert_eq!(r.bytes_consumed(), push.len()),
            Err(e) => {
                assert_eq!(e, LError::QueueFull);
                break;
            }
        }
        t += Duration::from_secs(60);
        c.handle_timeout(t);
        let Some(x) = c.poll_transmit(t, &mut buf).unwrap() else {
            panic!("no heartbeat although the queue has room")
        };
        let (p, _) = Packet::parse(&buf[..x.len], MAX_BODY_LEN).unwrap();
        let hb = p.header.kind.request_id().unwrap();
        let body = p.body.to_vec();
        feed_client(
            &mut c,
            t,
            &packet(&Packet::response(1, hb, Status::Success, &body)),
        );
        rtts += 1;
        assert!(rtts < 16, "the queue never filled");
    }
    let before = c.stats();
    assert_eq!(c.handle_input(t, (), &push), Err(LError::QueueFull));
    assert_eq!(c.stats(), before, "nothing consumed or counted");
    assert!(c.is_connected());
    // timers wait too: no heartbeat while the queue is full
    c.handle_timeout(t + Duration::from_secs(60));
    assert!(c.poll_transmit(t, &mut buf).unwrap().is_none());
    assert!(c.poll_timeout().unwrap() <= t + Duration::from_secs(60));
    // drain, then the same bytes are taken
    let ev = client_events(&mut c);
    assert_eq!(ev.len(), 2 + rtts);
    let r = c.handle_input(t, (), &push).unwrap();
    assert_eq!(r.bytes_consumed(), push.len());
    assert!(r.app().is_some());
}

/// A LongPort client and server over TCP driven by hand on a wobbly clock
#[test]
fn lp_time_going_backwards_shifts_the_timeline_on_both_machines() {
    for seed in 0..SEEDS {
        let mut rng = Rng::new(100 + seed);
        let mut s = LServer::with_capacities(ServerConfig::new());
        let mut c = LClient::new(ClientConfig::tcp());
        let mut t = 0u64;
        let mut buf = [0u8; 2048];
        let (mut to_s, mut to_c): (VecDeque<u8>, VecDeque<u8>) = Default::default();
        c.connect(Instant::ZERO, Credentials::new("tok")).unwrap();
        let mut authenticated = false;
        for _ in 0..STEPS {
            // client: events, timers, transmits
            let now = wobbly(&mut rng, &mut t);
            while let Some(e) = c.poll_event() {
                match e {
                    ClientEvent::ConnectTransport { .. } => {
                        to_s.clear();
                        to_c.clear();
                        s.handle_closed(now, CONN);
                        while s.poll_event().is_some() {}
                        if s.handle_connected(now, CONN, Transport::Tcp, Source::UNKNOWN)
                            .is_ok()
                        {
                            c.handle_connected(now).unwrap();
                        } else {
                            c.handle_closed(now, ());
                        }
                    }
                    ClientEvent::Connected { .. } => authenticated = true,
                    ClientEvent::TokenNeeded => c.provide_token(now, "tok").unwrap(),
                    _ => {}
                }
            }
            c.handle_timeout(now);
            while let Some(x) = c.poll_transmit(now, &mut buf).unwrap() {
                to_s.extend(&buf[..x.len]);
            }
            while c.poll_event().is_some() {}
            check_deadline("longport client", c.poll_timeout(), now);
            // server
            let now = wobbly(&mut rng, &mut t);
            let data: Vec<u8> = to_s.iter().copied().collect();
            let mut used = 0;
            let mut auth = false;
            while used < data.len() {
                match s.handle_input(now, CONN, &data[used..]) {
                    Ok(r) => {
                        auth |= matches!(r.app(), Some(SApp::Auth { .. }));
                        if r.bytes_consumed() == 0 {
                            break;
                        }
                        used += r.bytes_consumed();
                    }
                    Err(_) => break,
                }
            }
            to_s.drain(..used);
            if auth {
                let _ = s.accept_auth(now, CONN, lp_grant(7));
            }
            s.handle_timeout(now);
            while let Some(x) = s.poll_transmit(now, &mut buf).unwrap() {
                to_c.extend(&buf[..x.len]);
            }
            while s.poll_event().is_some() {}
            check_deadline("longport server", s.poll_timeout(), now);
            // back to the client
            let now = wobbly(&mut rng, &mut t);
            let data: Vec<u8> = to_c.iter().copied().collect();
            let mut used = 0;
            while used < data.len() {
                match c.handle_input(now, (), &data[used..]) {
                    Ok(r) if r.bytes_consumed() > 0 => used += r.bytes_consumed(),
                    Ok(_) => break,
                    Err(_) => while c.poll_event().is_some() {},
                }
            }
            to_c.drain(..used);
        }
        assert!(authenticated, "seed {seed}: login works on a wobbly clock");
    }
}

#[test]
fn lp_oversized_websocket_ping_is_counted_not_answered() {
    let mut s = lp_authenticated(Transport::WebSocket);
    let now = Instant::from_secs(2);
    s.handle_frame(now, CONN, FrameKind::WsPing, &[0u8; 126]);
    assert_eq!(s.stats().ws_pings_oversized, 1);
    assert!(srv_out(&mut s, now).is_empty());
    s.handle_frame(now, CONN, FrameKind::WsPing, &[1u8; 125]);
    let out = srv_out(&mut s, now);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].kind, FrameKind::WsPong);
    assert_eq!(out[0].bytes, vec![1u8; 125]);
}
