//! Floods: state before authentication stays bounded
//!
//! * Game: one million token CONNECTs from one million distinct addresses create no peer, every
//!   reply is no larger than its request, unanswered replies wait in a queue of
//!   [`STATELESS_QUEUE_LEN`] and the rest are dropped and counted; forged ACCEPTs create nothing
//!   either. The server's memory is its `size_of` (fixed by the const generics: it never
//!   allocates) — so "memory stays flat" means: no peer, no timer entry, no queued reply beyond
//!   the bounded queue. The `Debug` output exposes the timer-heap length, which is checked too.
//! * LongPort: waves of connections that never authenticate (silent, handshake only, pending auth
//!   decision, or a request before auth) from 16 sources never hold more than
//!   [`ServerConfig::max_unauthenticated`] slots in all, nor more than
//!   [`ServerConfig::max_unauthenticated_per_source`] per source: every further
//!   `handle_connected` is admitted and evicts the oldest (of its source, else of all), with a
//!   close that is counted; authenticated connections keep working and a legitimate client gets
//!   in at any time.
//!
//! A counting global allocator is not possible here: the crate's lint table forbids
//! `unsafe_code` in every target, tests included, and `GlobalAlloc` needs an `unsafe impl`.

use tether_net::game::wire::{self, Control, ControlPacket, Packet, Token, TokenMode};
use tether_net::game::{
    Server as GServer, ServerConfig as GServerConfig, TokenSecret, VanillaPolicy,
    SERVER_FULL_REASON, STATELESS_QUEUE_LEN,
};
use tether_net::longport::control::{AuthRequest, Body, Heartbeat, Metadata};
use tether_net::longport::wire::Packet as LPacket;
use tether_net::longport::{
    CloseCause, Error as LError, Grant, Handshake, RequestId, Server as LServer, ServerConfig,
    ServerEvent, ServerState, SessionId, Source, Transport,
};
use tether_net::{Duration, Instant};

fn token_connect() -> Vec<u8> {
    let p = ControlPacket {
        ack: 0,
        control: Control::Connect,
        token: Some(Token::UNKNOWN),
    };
    let mut buf = vec![0u8; p.buffer_len()];
    let n = p.emit(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

fn game_timers<const N: usize>(s: &GServer<u32, N>) -> usize {
    let dbg = format!("{s:?}");
    let tail = dbg
        .split("timers: ")
        .nth(1)
        .expect("Debug shows the timer heap");
    tail.split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// One million token CONNECTs from distinct addresses: no state, replies <= requests, bounded
/// reply queue
#[test]
fn game_connect_flood_creates_no_state() {
    const FLOOD: u32 = 1_000_000;
    let size_before = std::mem::size_of::<GServer<u32, 64>>();
    let mut server: GServer<u32, 64> = GServer::new(GServerConfig::new(TokenSecret([9; 16])));
    let connect = token_connect();
    assert_eq!(
        connect.len(),
        12,
        "01 TKEN FF FF FF FF after a 3-byte header"
    );
    let mut buf = [0u8; 1400];
    let mut now = Instant::from_secs(1);
    let (mut replies, mut reply_bytes) = (0u64, 0u64);
    for addr in 0..FLOOD {
        let r = server.handle_input(now, addr, &connect).unwrap();
        assert_eq!(r.bytes_consumed(), connect.len());
        assert!(r.app().is_none());
        // drain after every 64 requests: 16 fit the queue, the rest are dropped and counted
        if addr % 64 == 63 {
            while let Some(t) = server.poll_transmit(now, &mut buf).unwrap() {
                assert!(t.len <= connect.len(), "reply larger than its request");
                let p = wire::parse(&buf[..t.len], TokenMode::Detect).unwrap();
                let Packet::Control(c) = p.packet else {
                    panic!("not a control reply")
                };
                assert_eq!(c.control, Control::ConnectAccept);
                assert_eq!(c.token, Some(server.token_for(t.to)));
                replies += 1;
                reply_bytes += t.len as u64;
            }
            assert_eq!(
                server.poll_timeout(),
                None,
                "no timer for stateless replies"
            );
            now += Duration::from_micros(1);
        }
        assert_eq!(server.peer_count(), 0);
    }
    let st = server.stats();
    assert_eq!(server.peer_count(), 0);
    assert_eq!(game_timers(&server), 0, "no timer entries");
    assert!(server.poll_event().is_none(), "no events");
    assert_eq!(st.connect_accepts_sent, replies);
    assert_eq!(
        st.connect_accepts_sent + st.dropped_reply_queue_full,
        u64::from(FLOOD),
        "every CONNECT is answered or counted"
    );
    assert_eq!(
        replies,
        u64::from(FLOOD) / 64 * STATELESS_QUEUE_LEN as u64,
        "the reply queue holds {STATELESS_QUEUE_LEN}"
    );
    assert!(reply_bytes <= u64::from(FLOOD) * connect.len() as u64);
    assert_eq!(std::mem::size_of::<GServer<u32, 64>>(), size_before);
    println!(
        "game flood: {FLOOD} CONNECTs, {replies} CONNECT_ACCEPTs ({reply_bytes} bytes), {} dropped \
         (queue full), peers 0, server size {size_before} bytes",
        st.dropped_reply_queue_full
    );
}

/// Forged ACCEPTs (wrong token) and vanilla CONNECTs under the default Reject policy: no state
#[test]
fn game_forged_accept_and_vanilla_flood_creates_no_state() {
    let mut server: GServer<u32, 64> = GServer::new(GServerConfig::new(TokenSecret([3; 16])));
    let now = Instant::from_secs(1);
    let mut buf = [0u8; 1400];
    let vanilla = [0x10, 0x00, 0x00, 0x01];
    let mut out = 0u32;
    for addr in 0..200_000u32 {
        // ACCEPT with a token that is not the one minted for this address
        let wrong = Token(server.token_for(addr).0.map(|b| b ^ 0xFF));
        let forged = ControlPacket {
            ack: 0,
            control: Control::Accept,
            token: Some(wrong),
        };
        let mut f = [0u8; 16];
        let n = forged.emit(&mut f).unwrap();
        let _ = server.handle_input(now, addr, &f[..n]).unwrap();
        let _ = server.handle_input(now, addr, &vanilla).unwrap();
        while let Some(t) = server.poll_transmit(now, &mut buf).unwrap() {
            assert!(t.len <= vanilla.len(), "bare CLOSE, no reason");
            assert_eq!(&buf[..t.len], &[0x10, 0, 0, 4]);
            out += 1;
        }
    }
    let st = server.stats();
    assert_eq!(server.peer_count(), 0);
    assert_eq!(game_timers(&server), 0);
    assert_eq!(st.dropped_wrong_token, 200_000);
    assert_eq!(st.rejected_vanilla, 200_000);
    assert_eq!(out, 200_000);
}

/// Vanilla CONNECT flood under the stateful policies: state exists but is capped by `max_peers`
/// (and `PEERS`); a full table answers bare CLOSEs; pending slots expire
#[test]
fn game_vanilla_flood_under_pending_policy_is_capped() {
    let mut server: GServer<u32, 64> = GServer::new(
        GServerConfig::new(TokenSecret([4; 16]))
            .with_vanilla(VanillaPolicy::Pending)
            .with_max_peers(32),
    );
    let mut now = Instant::from_secs(1);
    let mut buf = [0u8; 1400];
    let vanilla = [0x10, 0x00, 0x00, 0x01];
    for addr in 0..100_000u32 {
        let _ = server.handle_input(now, addr, &vanilla).unwrap();
        while let Some(t) = server.poll_transmit(now, &mut buf).unwrap() {
            assert!(t.len <= vanilla.len());
        }
        assert!(server.peer_count() <= 32);
        assert!(
            server.poll_event().is_none(),
            "pending slots are not announced"
        );
    }
    assert_eq!(server.peer_count(), 32);
    assert_eq!(server.stats().rejected_full, 100_000 - 32);
    // the pending slots time out (10 s) without an event
    for _ in 0..100 {
        now += Duration::from_millis(500);
        server.handle_timeout(now);
        while server.poll_transmit(now, &mut buf).unwrap().is_some() {}
    }
    assert_eq!(server.peer_count(), 0);
    assert_eq!(server.stats().pending_timed_out, 32);
    assert!(server.poll_event().is_none());
}

/// A valid ACCEPT to a full server: the one reply larger than its request, carrying the token
#[test]
fn game_full_server_answers_valid_accept_with_reasoned_close() {
    let mut server: GServer<u32, 4> =
        GServer::with_capacities(GServerConfig::new(TokenSecret([5; 16])).with_max_peers(1));
    let now = Instant::from_secs(1);
    let mut buf = [0u8; 1400];
    for addr in [1u32, 2] {
        let accept = ControlPacket {
            ack: 0,
            control: Control::Accept,
            token: Some(server.token_for(addr)),
        };
        let mut f = [0u8; 16];
        let n = accept.emit(&mut f).unwrap();
        let _ = server.handle_input(now, addr, &f[..n]).unwrap();
    }
    assert_eq!(server.peer_count(), 1);
    let t = server.poll_transmit(now, &mut buf).unwrap().unwrap();
    assert_eq!(t.to, 2);
    let p = wire::parse(&buf[..t.len], TokenMode::Detect).unwrap();
    let Packet::Control(c) = p.packet else {
        panic!()
    };
    let wire::Control::Close(reason) = c.control else {
        panic!("expected CLOSE, got {:?}", c.control)
    };
    assert_eq!(reason.as_str(), Some(SERVER_FULL_REASON));
    assert_eq!(server.stats().rejected_full, 1);
}

// ---------------------------------------------------------------------------------------------
// LongPort
// ---------------------------------------------------------------------------------------------

type Srv = LServer<u32, 64, 64>;

fn auth_request(rid: u32, token: &str) -> Vec<u8> {
    let body = AuthRequest::new(token, Metadata::EMPTY);
    let mut b = vec![0u8; body.encoded_len()];
    body.encode(&mut b).unwrap();
    let p = LPacket::request(2, RequestId(rid), 10_000, &b);
    let mut out = vec![0u8; p.buffer_len()];
    p.emit(&mut out).unwrap();
    out
}

fn heartbeat_request(rid: u32) -> Vec<u8> {
    let body = Heartbeat::new(1, None);
    let mut b = vec![0u8; body.encoded_len()];
    body.encode(&mut b).unwrap();
    let p = LPacket::request(1, RequestId(rid), 10_000, &b);
    let mut out = vec![0u8; p.buffer_len()];
    p.emit(&mut out).unwrap();
    out
}

/// Drain a server; returns the connections it told us to close, and why
fn drain(s: &mut Srv, now: Instant) -> Vec<(u32, CloseCause)> {
    let mut buf = [0u8; 4096];
    while s.poll_transmit(now, &mut buf).unwrap().is_some() {}
    let mut gone = Vec::new();
    while let Some(e) = s.poll_event() {
        if let ServerEvent::Closed { peer, cause } = e {
            gone.push((peer, cause));
        }
    }
    gone
}

/// Authenticate connection `conn` over TCP; returns how many (attacker) connections its
/// admission evicted
fn authenticate(s: &mut Srv, now: Instant, conn: u32) -> u64 {
    s.handle_connected(now, conn, Transport::Tcp, Source::UNKNOWN)
        .unwrap();
    let mut input = Handshake::OPENAPI.to_bytes().to_vec();
    input.extend(auth_request(1, "good"));
    let r = s.handle_input(now, conn, &input).unwrap();
    input.drain(..r.bytes_consumed());
    let r = s.handle_input(now, conn, &input).unwrap();
    assert_eq!(r.bytes_consumed(), input.len());
    // deterministic bytes (a real server draws them from the OS random source)
    let mut random = [0x5e; 16];
    random[..4].copy_from_slice(&conn.to_be_bytes());
    let grant = Grant::new(SessionId::from_random(random), i64::MAX);
    s.accept_auth(now, conn, grant).unwrap();
    // admitting it may have evicted an attacker's connection, nothing else
    let gone = drain(s, now);
    assert!(gone
        .iter()
        .all(|&(c, cause)| c >= 1_000 && cause == CloseCause::Evicted));
    assert_eq!(s.state(conn), Some(ServerState::Authenticated));
    gone.len() as u64
}

/// One million connection attempts from 16 sources in waves of four kinds of unauthenticated
/// clients: the table never holds more than `max_unauthenticated` of them (nor more than
/// `max_unauthenticated_per_source` of one source), every attempt is admitted and the excess is
/// evicted and counted, the authenticated connections stay up and a legitimate client gets in
/// in the middle of a wave
#[test]
fn longport_auth_flood_is_capped() {
    const CAP: usize = 8;
    const PER_SOURCE: usize = 4;
    const ATTEMPTS: u32 = 1_000_000;
    let config = ServerConfig::new()
        .with_max_unauthenticated(CAP)
        .with_max_unauthenticated_per_source(PER_SOURCE);
    let mut s: Srv = Srv::with_capacities(config);
    let mut now = Instant::from_secs(1);
    // three legitimate, authenticated connections
    for conn in 0..3 {
        authenticate(&mut s, now, conn);
    }
    let size = std::mem::size_of::<Srv>();
    let hb = heartbeat_request(7);
    let auth = auth_request(9, "attacker");
    let source = |conn: u32| Source::from_bytes([(conn % 16) as u8; 16]);
    let mut next_conn = 1_000u32;
    let (mut accepted, mut evicted, mut pending_refusals) = (0u64, 0u64, 0u64);
    let mut wave = 0u32;
    let closed = |gone: Vec<(u32, CloseCause)>, evicted: &mut u64| {
        for (conn, cause) in gone {
            assert!(conn >= 1_000, "a legitimate connection was disconnected");
            if cause == CloseCause::Evicted {
                *evicted += 1;
            }
        }
    };
    while next_conn - 1_000 < ATTEMPTS {
        wave += 1;
        for k in 0..100u32 {
            let conn = next_conn;
            next_conn += 1;
            s.handle_connected(now, conn, Transport::Tcp, source(conn))
                .expect("admitted: the oldest is evicted instead");
            accepted += 1;
            // what the connection does
            match (wave + k) % 4 {
                // silent: nothing at all (waits for the auth timeout or eviction)
                0 => {}
                // handshake only
                1 => {
                    let hs = Handshake::OPENAPI.to_bytes();
                    let r = s.handle_input(now, conn, &hs).unwrap();
                    assert_eq!(r.bytes_consumed(), 2);
                }
                // an auth request the application never decides on; more input is refused
                2 => {
                    let mut input = Handshake::OPENAPI.to_bytes().to_vec();
                    input.extend(&auth);
                    let r = s.handle_input(now, conn, &input).unwrap();
                    let rest = &input[r.bytes_consumed()..];
                    let r = s.handle_input(now, conn, rest).unwrap();
                    assert!(r.app().is_some(), "the Auth comes back to the application");
                    assert_eq!(
                        s.handle_input(now, conn, &hb),
                        Err(LError::AuthPending),
                        "input after a pending auth is refused, not consumed"
                    );
                    pending_refusals += 1;
                }
                // a request before auth: status 5, Close{AuthError}, disconnect
                _ => {
                    let mut input = Handshake::OPENAPI.to_bytes().to_vec();
                    input.extend(&hb);
                    let r = s.handle_input(now, conn, &input).unwrap();
                    let rest = &input[r.bytes_consumed()..];
                    let _ = s.handle_input(now, conn, rest).unwrap();
                }
            }
            closed(drain(&mut s, now), &mut evicted);
            assert!(s.unauthenticated() <= CAP);
            assert!(s.connections() <= CAP + 3);
            for k in (0..16).filter(|_| conn.is_multiple_of(7)) {
                let from = Source::from_bytes([k; 16]);
                let held = (1_000..next_conn)
                    .rev()
                    .take(CAP * 2)
                    .filter(|&c| {
                        source(c) == from
                            && matches!(
                                s.state(c),
                                Some(
                                    ServerState::AwaitHandshake
                                        | ServerState::AwaitAuth
                                        | ServerState::AuthPending
                                )
                            )
                    })
                    .count();
                assert!(held <= PER_SOURCE, "source {k} holds {held}");
            }
            if wave % 1_000 == 500 && k == 50 {
                // a legitimate login in the middle of a wave
                evicted += authenticate(&mut s, now, 900);
                s.close(
                    now,
                    900,
                    tether_net::longport::CloseCode::ServerShutdown,
                    "bye",
                )
                .unwrap();
                drain(&mut s, now);
            }
        }
        // the legitimate clients keep heart-beating (and get their echoes)
        for conn in 0..3 {
            let r = s.handle_input(now, conn, &hb).unwrap();
            assert_eq!(r.bytes_consumed(), hb.len());
        }
        closed(drain(&mut s, now), &mut evicted);
        assert!(s.unauthenticated() <= CAP);
        // let the auth deadline (10 s) pass so the wave is closed and the slots are free
        now += Duration::from_secs(11);
        s.handle_timeout(now);
        closed(drain(&mut s, now), &mut evicted);
        assert_eq!(
            s.unauthenticated(),
            0,
            "wave {wave} closed by the auth deadline"
        );
        assert_eq!(s.connections(), 3);
    }
    let st = s.stats();
    assert_eq!(st.connections_refused, 0);
    assert_eq!(st.connections_evicted, evicted);
    assert_eq!(accepted, u64::from(ATTEMPTS));
    assert!(st.auth_timeouts > 0 && st.sessions_evicted == 0);
    assert!(evicted > u64::from(ATTEMPTS) / 2, "{evicted} evicted");
    assert_eq!(st.heartbeats_echoed, u64::from(wave) * 3);
    for conn in 0..3 {
        assert_eq!(s.state(conn), Some(ServerState::Authenticated));
    }
    // a legitimate client still gets in
    authenticate(&mut s, now, 999);
    assert_eq!(std::mem::size_of::<Srv>(), size);
    println!(
        "longport auth flood: {ATTEMPTS} attempts in {wave} waves from 16 sources, {evicted} \
         evicted (cap {CAP}, {PER_SOURCE} per source), {pending_refusals} pending-auth inputs \
         refused, {} auth timeouts, server size {size} bytes",
        st.auth_timeouts
    );
}
