extern crate std;

use std::vec;
use std::vec::Vec as StdVec;

use super::reconnect::After;
use super::*;
use crate::longport::wire::MAX_PACKET_LEN;
use crate::machine::Machine;

type C = Client<4, 16, 64, 32, 64>;
type Ev = ClientEvent;

const T0: Instant = Instant::from_secs(1_000);
/// Wall clock at T0 (Unix ms)
const WALL_T0: i64 = 1_700_000_000_000;
/// A session expiry one day after WALL_T0
const EXPIRES: i64 = 1_700_086_400_000;

fn at(ms: u64) -> Instant {
    T0 + Duration::from_millis(ms)
}

fn hex(s: &str) -> StdVec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

fn pkt(p: Packet<'_>) -> StdVec<u8> {
    let mut b = vec![0; p.buffer_len()];
    assert_eq!(p.emit(&mut b), Ok(b.len()));
    b
}

fn enc<'a>(body: &impl Body<'a>) -> StdVec<u8> {
    let mut b = vec![0; body.encoded_len()];
    assert_eq!(body.encode(&mut b), Ok(b.len()));
    b
}

fn grant(session: &str, expires: i64) -> StdVec<u8> {
    enc(&SessionGrant {
        session_id: session,
        expires,
        limit: 10,
        online: 1,
    })
}

fn cfg_tcp() -> ClientConfig {
    ClientConfig::tcp()
}

fn cfg_ws() -> ClientConfig {
    ClientConfig::websocket()
}

/// A client whose wall clock reads WALL_T0 at T0
fn client(cfg: ClientConfig) -> C {
    let mut c = C::with_capacities(cfg);
    c.set_wall_clock(T0, WALL_T0);
    c
}

/// The `Connected` event of a login with `grant(_, expires)`
fn connected(via: LoginKind, expires: i64, resumable: bool) -> Ev {
    Ev::Connected {
        via,
        expires,
        limit: 10,
        online: 1,
        resumable,
    }
}

fn events(c: &mut C) -> StdVec<Ev> {
    core::iter::from_fn(|| c.poll_event()).collect()
}

fn tx(c: &mut C, now: Instant) -> StdVec<(FrameKind, StdVec<u8>)> {
    let mut out = StdVec::new();
    let mut buf = [0u8; 512];
    while let Some(t) = c.poll_transmit(now, &mut buf).unwrap() {
        out.push((t.kind, buf[..t.len].to_vec()));
    }
    out
}

/// Feed a whole server byte sequence, returning the app data seen (as owned summaries: cmd and
/// body; a Close push as cmd 0 with its reason, a login error as cmd 255 with its message)
fn feed(c: &mut C, now: Instant, bytes: &[u8]) -> StdVec<(u8, StdVec<u8>)> {
    let mut apps = StdVec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let r = c.handle_input(now, (), rest).unwrap();
        if let Some(app) = r.app() {
            match app {
                ClientApp::Response { cmd, body, .. } | ClientApp::Push { cmd, body, .. } => {
                    apps.push((*cmd, body.to_vec()));
                }
                ClientApp::Close { reason, .. } => apps.push((0, reason.as_bytes().to_vec())),
                ClientApp::LoginError { message, .. } => {
                    apps.push((255, message.as_bytes().to_vec()));
                }
                ClientApp::HeartbeatEcho { body, .. } => apps.push((1, body.to_vec())),
            }
        }
        assert!(r.bytes_consumed() > 0, "whole packets are fed: {r:?}");
        rest = &rest[r.bytes_consumed()..];
    }
    apps
}

/// Parse a client request: (cmd, request id, timeout field, body)
fn request(bytes: &[u8]) -> (u8, RequestId, u16, StdVec<u8>) {
    let (p, n) = Packet::parse(bytes, MAX_BODY_LEN).unwrap();
    assert_eq!(n, bytes.len());
    match p.header.kind {
        Kind::Request {
            request_id,
            timeout_ms,
        } => (p.header.cmd, request_id, timeout_ms, p.body.to_vec()),
        k => panic!("not a request: {k:?}"),
    }
}

/// Connect (or continue after ConnectTransport) and return the login request
fn open_transport(c: &mut C, now: Instant) -> (u8, RequestId, u16, StdVec<u8>) {
    c.handle_connected(now).unwrap();
    let out = tx(c, now);
    assert_eq!(out.len(), 1, "{out:?}");
    let (kind, bytes) = &out[0];
    match c.config().transport() {
        Transport::Tcp => {
            assert_eq!(*kind, FrameKind::Stream);
            assert_eq!(&bytes[..2], &[0x11, 0x09], "handshake first");
            request(&bytes[2..])
        }
        Transport::WebSocket => {
            assert_eq!(*kind, FrameKind::WsBinary);
            request(bytes)
        }
    }
}

/// Connect at T0 with token "abc", open the transport and answer the Auth with a grant of
/// session "s1" expiring at `expires`
fn log_in(c: &mut C, expires: i64) {
    c.connect(T0, Credentials::new("abc")).unwrap();
    assert_eq!(events(c), [Ev::ConnectTransport { attempt: 0 }]);
    let (cmd, rid, _, _) = open_transport(c, T0);
    assert_eq!(cmd, CMD_AUTH);
    let resp = pkt(Packet::response(
        CMD_AUTH,
        rid,
        Status::Success,
        &grant("s1", expires),
    ));
    feed(c, T0, &resp);
}

fn ready_with(cfg: ClientConfig) -> C {
    let mut c = client(cfg);
    log_in(&mut c, EXPIRES);
    let ev = events(&mut c);
    assert!(matches!(ev.as_slice(), [Ev::Connected { .. }]), "{ev:?}");
    assert!(c.is_connected());
    c
}

fn ready_tcp() -> C {
    ready_with(cfg_tcp())
}

/// A TCP client that called `connect` with token "abc" and opened its transport (events
/// taken), and the id of its Auth request
fn auth_pending() -> (C, RequestId) {
    let mut c = client(cfg_tcp());
    c.connect(T0, Credentials::new("abc")).unwrap();
    let _ = events(&mut c);
    let (_, rid, _, _) = open_transport(&mut c, T0);
    (c, rid)
}

/// Lose the transport at 1 ms; the reconnect dial starts at 1.001 s (events taken)
fn redial(c: &mut C) {
    c.handle_closed(at(1), ());
    let _ = events(c);
    c.handle_timeout(at(1_001));
    let _ = events(c);
}

/// [`redial`], then open the transport at 1.001 s: the id of the Reconnect request
fn reconnect_request(c: &mut C) -> RequestId {
    redial(c);
    let (cmd, rid, _, _) = open_transport(c, at(1_001));
    assert_eq!(cmd, CMD_RECONNECT);
    rid
}

/// The refusal of login request `rid` (command `cmd`): `status` with `Error{code, msg}`
fn refusal(cmd: u8, rid: RequestId, status: Status, code: u64, msg: &str) -> StdVec<u8> {
    let err = enc(&ErrorBody::new(code, msg));
    pkt(Packet::response(cmd, rid, status, &err))
}

fn send(c: &mut C, now: Instant, cmd: u8, timeout: Duration, body: &[u8]) -> RequestId {
    let mut out = [0u8; 256];
    let (id, t) = c.send_request(now, cmd, timeout, body, &mut out).unwrap();
    let (rcmd, rid, _, rbody) = request(&out[..t.len]);
    assert_eq!((rcmd, rid, rbody.as_slice()), (cmd, id, body));
    id
}

#[test]
fn auth_ok_tcp_matches_the_vectors_and_reports_the_grant() {
    let mut c = client(cfg_tcp().with_auth_timeout(Duration::from_secs(5)));
    assert_eq!(c.state(), ClientState::Idle);
    assert_eq!(c.poll_timeout(), None);
    c.connect(T0, Credentials::new("abc")).unwrap();
    assert_eq!(events(&mut c), [Ev::ConnectTransport { attempt: 0 }]);
    assert_eq!(c.state(), ClientState::Connecting);
    assert_eq!(c.poll_timeout(), Some(at(10_000)), "connect timeout");
    c.handle_connected(T0).unwrap();
    assert_eq!(c.state(), ClientState::LoggingIn);
    assert_eq!(c.poll_timeout(), Some(at(5_000)), "auth timeout");
    // handshake and auth (token "abc") pipelined in one write, header timeout 5000 as the
    // official Rust client sends it
    let out = tx(&mut c, T0);
    assert_eq!(
        out,
        [(
            FrameKind::Stream,
            hex("11 09 01 02 00 00 00 01 13 88 00 00 05 0a 03 61 62 63")
        )]
    );
    // the auth response: session "s1", expires one day after WALL_T0, limit 10, online 1
    let resp = hex("02 02 00 00 00 01 00 00 00 0f 0a 02 73 31 10 80 88 af a8 bd 31 18 0a 20 01");
    let r = c.handle_input(T0, (), &resp).unwrap();
    assert_eq!((r.bytes_consumed(), r.app()), (resp.len(), None));
    assert_eq!(events(&mut c), [connected(LoginKind::Auth, EXPIRES, true)]);
    assert_eq!(c.state(), ClientState::Connected);
    assert_eq!(c.session_id(), Some("s1"));
    assert_eq!(c.session_expires(), Some(EXPIRES));
    assert!(!c.has_token(), "one-time token used up");
    assert_eq!(c.poll_timeout(), Some(at(60_000)), "first heartbeat");
}

#[test]
fn the_largest_body_goes_out_in_a_buffer_of_exactly_its_size_and_one_byte_more_is_refused() {
    use crate::longport::wire::{MAX_BODY_LEN, REQUEST_HEADER_LEN};
    let mut c = ready_tcp();
    let big = vec![7u8; MAX_BODY_LEN];
    let bigger = vec![7u8; MAX_BODY_LEN + 1];
    let too_long = Error::TooLong {
        len: MAX_BODY_LEN + 1,
        max: MAX_BODY_LEN,
    };
    let mut out = vec![0u8; REQUEST_HEADER_LEN + MAX_BODY_LEN];
    let (_, t) = c
        .send_request(at(1), 11, Duration::ZERO, &big, &mut out)
        .unwrap();
    assert_eq!(t.len, out.len());
    let mut out = vec![0u8; REQUEST_HEADER_LEN + MAX_BODY_LEN + 1];
    assert_eq!(
        c.send_request(at(1), 11, Duration::ZERO, &bigger, &mut out)
            .err(),
        Some(too_long)
    );
    // the heartbeat echo has the same bound
    let mut out = vec![0u8; MAX_BODY_LEN + 64];
    assert!(c
        .echo_heartbeat(at(1), RequestId(9), &big, false, &mut out)
        .is_ok());
    assert_eq!(
        c.echo_heartbeat(at(1), RequestId(9), &bigger, false, &mut out)
            .err(),
        Some(too_long)
    );
}

#[test]
fn auth_carries_metadata() {
    let mut c = client(cfg_tcp());
    let meta = [("accept-language", "en")];
    c.connect(T0, Credentials::new("abc").with_metadata(&meta))
        .unwrap();
    let (_, _, timeout, body) = open_transport(&mut c, T0);
    assert_eq!(timeout, 10_000);
    assert_eq!(
        body,
        hex("0a 03 61 62 63 12 15 0a 0f 61 63 63 65 70 74 2d 6c 61 6e 67 75 61 67 65 12 02 65 6e")
    );
}

#[test]
fn early_timeouts_change_nothing_while_dialing_or_backing_off() {
    // dialing: the connect timeout has not passed
    let mut c = client(cfg_tcp());
    c.connect(T0, Credentials::new("abc")).unwrap();
    let _ = events(&mut c);
    let state = c.state();
    let deadline = c.poll_timeout().unwrap();
    c.handle_timeout(deadline - Duration::from_millis(1));
    assert_eq!(c.state(), state);
    assert!(events(&mut c).is_empty());
    // backing off after the link dropped: the reconnect waits for its time
    let mut c = ready_tcp();
    c.handle_closed(at(1), ());
    let at_reconnect = events(&mut c)
        .into_iter()
        .find_map(|e| match e {
            Ev::ReconnectScheduled { at, .. } => Some(at),
            _ => None,
        })
        .unwrap();
    let state = c.state();
    c.handle_timeout(at_reconnect - Duration::from_millis(1));
    assert_eq!(c.state(), state);
    assert!(events(&mut c).is_empty());
    c.handle_timeout(at_reconnect);
    assert_ne!(c.state(), state, "the reconnect starts at its time");
}

#[test]
fn credentials_too_large_are_refused_without_change() {
    let mut c = client(cfg_tcp());
    let long = "x".repeat(65);
    assert_eq!(
        c.connect(T0, Credentials::new(&long)),
        Err(Error::TooLong { len: 65, max: 64 })
    );
    let meta = [("k", "v"); MAX_METADATA_PAIRS + 1];
    assert_eq!(
        c.connect(T0, Credentials::new("abc").with_metadata(&meta)),
        Err(Error::TooLong {
            len: 9,
            max: MAX_METADATA_PAIRS
        })
    );
    assert_eq!(c.state(), ClientState::Idle);
    assert!(events(&mut c).is_empty());
}

#[test]
fn metadata_takes_exactly_its_pair_limit_and_reports_the_bytes_it_would_store() {
    let mut c = client(cfg_tcp());
    let meta = [("k", "v"); MAX_METADATA_PAIRS];
    c.connect(T0, Credentials::new("abc").with_metadata(&meta))
        .unwrap();
    // 4 length bytes + key + value per pair: 4 + 30 + 20 = 54 and 4 + 1 + 10 = 15, 69 bytes
    // in all for the 64-byte store of these tests' client
    let (k, v) = ("k".repeat(30), "v".repeat(20));
    let meta = [(k.as_str(), v.as_str()), ("a", &v[..10])];
    let mut c = client(cfg_tcp());
    assert_eq!(
        c.connect(T0, Credentials::new("abc").with_metadata(&meta)),
        Err(Error::TooLong { len: 69, max: 64 })
    );
    assert_eq!(c.state(), ClientState::Idle);
}

#[test]
fn auth_denied_reports_status_and_error_code_then_asks_for_a_token() {
    let (mut c, rid) = auth_pending();
    let resp = refusal(
        CMD_AUTH,
        rid,
        Status::Unauthenticated,
        403,
        "connections limitation is hit",
    );
    // the message comes back borrowed from the input
    let r = c.handle_input(at(5), (), &resp).unwrap();
    assert_eq!(
        r.into_app(),
        Some(ClientApp::LoginError {
            status: Status::Unauthenticated,
            code: Some(403),
            message: PeerText::new(b"connections limitation is hit"),
        })
    );
    assert_eq!(
        events(&mut c),
        [
            Ev::LoginFailed {
                kind: LoginKind::Auth,
                status: Status::Unauthenticated,
                code: Some(403),
            },
            Ev::Disconnected {
                cause: CloseCause::LoginRejected(Status::Unauthenticated)
            },
            Ev::TokenNeeded,
            Ev::ReconnectScheduled {
                at: at(1_005),
                attempt: 1
            },
        ]
    );
    assert!(!c.has_token());
    assert_eq!(c.session_id(), None);
    assert_eq!(c.session_expires(), None);
    // the back-off elapses without a token: wait for one, no second TokenNeeded
    c.handle_timeout(at(1_005));
    assert!(events(&mut c).is_empty());
    assert_eq!(c.state(), ClientState::NeedToken);
    assert_eq!(c.poll_timeout(), None);
    c.provide_token(at(2_000), "fresh").unwrap();
    assert_eq!(events(&mut c), [Ev::ConnectTransport { attempt: 1 }]);
    let (cmd, _, _, body) = open_transport(&mut c, at(2_000));
    assert_eq!(cmd, CMD_AUTH);
    assert_eq!(AuthRequest::decode(&body).unwrap().token, "fresh");
}

#[test]
fn tcp_input_byte_at_a_time() {
    let mut c = client(cfg_tcp());
    c.connect(T0, Credentials::new("abc")).unwrap();
    let (_, rid, _, _) = open_transport(&mut c, T0);
    let mut stream = pkt(Packet::response(
        CMD_AUTH,
        rid,
        Status::Success,
        &grant("s1", EXPIRES),
    ));
    stream.extend(pkt(Packet::push(101, &[7, 8, 9])));
    let first = stream.len() - 8;
    let mut buf = StdVec::new();
    let mut pushes = 0;
    for &b in &stream {
        buf.push(b);
        let r = c.handle_input(T0, (), &buf).unwrap();
        if r.bytes_consumed() == 0 {
            let need = r.needed().unwrap();
            assert!(need > buf.len(), "need {need} with {} buffered", buf.len());
            continue;
        }
        assert_eq!(r.needed(), None);
        if let Some(ClientApp::Push { cmd, body, gzip }) = r.app() {
            assert_eq!((*cmd, *body, *gzip), (101, &[7u8, 8, 9][..], false));
            pushes += 1;
        } else {
            assert_eq!(r.bytes_consumed(), first);
            assert!(c.is_connected());
        }
        let n = r.bytes_consumed();
        buf.drain(..n);
    }
    assert!(buf.is_empty());
    assert_eq!(pushes, 1);
    assert_eq!(c.stats().pushes, 1);
}

#[test]
fn undecodable_tcp_stream_ends_the_connection() {
    let mut c = ready_tcp();
    let r = c.handle_input(at(1), (), &[0xEC, 1, 2]).unwrap();
    assert_eq!(r.bytes_consumed(), 3);
    let ev = events(&mut c);
    assert_eq!(
        ev[0],
        Ev::Disconnected {
            cause: CloseCause::Protocol(ProtocolError::Framing(
                crate::longport::deframe::DeframeError::UnknownType(12)
            ))
        }
    );
    assert_eq!(c.state(), ClientState::WaitingToReconnect);
    assert_eq!(c.stats().decode_errors, 1);
    // later bytes of the dead transport are dropped
    let r = c.handle_input(at(2), (), &[1, 2, 3]).unwrap();
    assert_eq!(r.bytes_consumed(), 3);
    assert!(events(&mut c).is_empty());
}

#[test]
fn heartbeat_cadence_and_rtt_over_tcp() {
    let mut c = ready_tcp();
    assert_eq!(c.poll_timeout(), Some(at(60_000)));
    c.handle_timeout(at(59_999));
    assert!(tx(&mut c, at(59_999)).is_empty(), "early call is a no-op");
    c.handle_timeout(at(60_000));
    let out = tx(&mut c, at(60_000));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, FrameKind::Stream);
    let (cmd, rid, timeout, body) = request(&out[0].1);
    assert_eq!((cmd, rid, timeout), (CMD_HEARTBEAT, RequestId(2), 0));
    let hb = Heartbeat::decode(&body).unwrap();
    assert_eq!(hb, Heartbeat::new(WALL_T0 + 60_000, Some(2)));
    assert_eq!(c.poll_timeout(), Some(at(120_000)));
    // the echo is matched by id; the body is not trusted for timing
    let echo = pkt(Packet::response(CMD_HEARTBEAT, rid, Status::Success, &[]));
    feed(&mut c, at(60_250), &echo);
    assert_eq!(
        events(&mut c),
        [Ev::HeartbeatRtt {
            rtt: Duration::from_millis(250)
        }]
    );
    assert_eq!(c.stats().heartbeats_sent, 1);
    assert_eq!(c.stats().heartbeat_acks, 1);
    c.handle_timeout(at(120_000));
    let (cmd, rid2, _, _) = request(&tx(&mut c, at(120_000))[0].1);
    assert_eq!((cmd, rid2), (CMD_HEARTBEAT, RequestId(3)));
    // the heartbeat request vector: request id 1 carrying heartbeat_id 1
    let v5 = hex("01 01 00 00 00 01 00 00 00 00 09 08 80 d0 95 ff bc 31 10 01");
    let mut buf = [0u8; 64];
    let kind = Kind::Request {
        request_id: RequestId(1),
        timeout_ms: 0,
    };
    let hb = Heartbeat::new(WALL_T0, Some(heartbeat_id(RequestId(1))));
    let n = emit_packet(&mut buf, &[], kind, CMD_HEARTBEAT, &hb).unwrap();
    assert_eq!(&buf[..n], v5.as_slice());
}

#[test]
fn zero_heartbeat_interval_does_not_spin() {
    // before the setters clamped, this sent 1000 heartbeats at one instant (100% CPU)
    let cfg = cfg_tcp().with_heartbeat_interval(Some(Duration::ZERO));
    assert_eq!(cfg.heartbeat_interval(), Some(Duration::from_secs(1)));
    let mut c = ready_with(cfg);
    // a driver that sleeps until poll_timeout, fires the timers and sends what is queued
    let mut now = T0;
    let mut heartbeats = 0;
    for _ in 0..1_000 {
        let Some(t) = c.poll_timeout() else { break };
        if t > at(10_000) {
            break;
        }
        assert!(
            t > now || now == T0,
            "deadline {t} does not move past {now}"
        );
        now = t;
        c.handle_timeout(now);
        for (_, bytes) in tx(&mut c, now) {
            let (cmd, rid, _, _) = request(&bytes);
            assert_eq!(cmd, CMD_HEARTBEAT);
            heartbeats += 1;
            // the server echoes at once, so the connection stays alive
            let echo = pkt(Packet::response(CMD_HEARTBEAT, rid, Status::Success, &[]));
            feed(&mut c, now, &echo);
        }
        let _ = events(&mut c);
    }
    assert!(heartbeats <= 10, "{heartbeats} heartbeats in 10 s");
}

#[test]
fn heartbeat_timeout_ends_the_connection_and_fails_requests() {
    let mut c = ready_tcp();
    let id = send(&mut c, at(10_000), 11, Duration::from_secs(500), &[1]);
    c.handle_timeout(at(60_000));
    let _ = tx(&mut c, at(60_000));
    c.handle_timeout(at(119_999));
    assert!(events(&mut c).is_empty());
    assert_eq!(c.poll_timeout(), Some(at(120_000)));
    c.handle_timeout(at(120_000));
    assert_eq!(
        events(&mut c),
        [
            Ev::Disconnected {
                cause: CloseCause::Timeout
            },
            Ev::ReconnectScheduled {
                at: at(121_000),
                attempt: 1
            },
            Ev::RequestFailed {
                id,
                reason: RequestFailure::Disconnected
            },
        ]
    );
    assert!(
        tx(&mut c, at(120_000)).is_empty(),
        "TCP: nothing to send, caller closes"
    );
    assert_eq!(c.session_id(), Some("s1"), "session kept for reconnect");
}

#[test]
fn any_inbound_packet_counts_as_liveness_unless_disabled() {
    for any in [true, false] {
        let cfg = cfg_tcp()
            .with_any_inbound_is_alive(any)
            .with_heartbeat_interval(None);
        let mut c = ready_with(cfg);
        assert_eq!(c.poll_timeout(), Some(at(120_000)));
        feed(&mut c, at(100_000), &pkt(Packet::push(101, &[])));
        let expect = if any { at(220_000) } else { at(120_000) };
        assert_eq!(
            c.poll_timeout(),
            Some(expect),
            "any_inbound_is_alive = {any}"
        );
    }
}

#[test]
fn server_heartbeat_requests_are_echoed() {
    let mut c = ready_tcp();
    // a server heartbeat request (id 77, a timestamp body), echoed as a status-0 response
    let req = hex("01 01 00 00 00 4d 00 00 00 00 07 08 80 d0 95 ff bc 31");
    let apps = feed(&mut c, at(1), &req);
    assert!(apps.is_empty());
    assert_eq!(
        tx(&mut c, at(1)),
        [(
            FrameKind::Stream,
            hex("02 01 00 00 00 4d 00 00 00 07 08 80 d0 95 ff bc 31")
        )]
    );
    assert_eq!(c.stats().heartbeats_answered, 1);
    // a server request of another command is dropped
    feed(
        &mut c,
        at(2),
        &pkt(Packet::request(9, RequestId(5), 0, &[])),
    );
    assert!(tx(&mut c, at(2)).is_empty());
    assert_eq!(c.stats().dropped, 1);
    // after the link went down: bytes are dropped and counted, an empty read is not a drop
    c.handle_closed(at(3), ());
    let r = c.handle_input(at(3), (), &[]).unwrap();
    assert_eq!(r.bytes_consumed(), 0);
    assert_eq!(c.stats().dropped, 1);
    let r = c.handle_input(at(3), (), &[1, 2, 3]).unwrap();
    assert_eq!(r.bytes_consumed(), 3);
    assert_eq!(c.stats().dropped, 2);
}

#[test]
fn websocket_login_heartbeat_and_ping_pong() {
    let mut c = ready_with(cfg_ws());
    // client heartbeat: a ping carrying the Heartbeat body
    c.handle_timeout(at(60_000));
    let out = tx(&mut c, at(60_000));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, FrameKind::WsPing);
    let hb = Heartbeat::decode(&out[0].1).unwrap();
    assert_eq!(hb, Heartbeat::new(WALL_T0 + 60_000, Some(2)));
    // a pong for another id is only a sign of life
    let other = enc(&Heartbeat::new(1, Some(99)));
    c.handle_frame(at(60_050), (), FrameKind::WsPong, &other);
    assert!(events(&mut c).is_empty());
    c.handle_frame(at(60_100), (), FrameKind::WsPong, &out[0].1);
    assert_eq!(
        events(&mut c),
        [Ev::HeartbeatRtt {
            rtt: Duration::from_millis(100)
        }]
    );
    // server ping: pong with the same payload, and liveness
    c.handle_frame(at(100_000), (), FrameKind::WsPing, b"ping!");
    assert_eq!(
        tx(&mut c, at(100_000)),
        [(FrameKind::WsPong, b"ping!".to_vec())]
    );
    assert_eq!(c.poll_timeout(), Some(at(120_000)), "next heartbeat");
    c.handle_timeout(at(120_000));
    let _ = tx(&mut c, at(120_000));
    assert_eq!(c.poll_timeout(), Some(at(180_000)));
    c.handle_timeout(at(180_000));
    let _ = tx(&mut c, at(180_000));
    assert_eq!(
        c.poll_timeout(),
        Some(at(220_000)),
        "liveness from the ping at 100 s"
    );
    // an oversized ping payload is not answered
    c.handle_frame(at(180_001), (), FrameKind::WsPing, &[0; 126]);
    assert!(tx(&mut c, at(180_001)).is_empty());
    // server cmd-1 request over a binary message is echoed as a binary message
    let req = pkt(Packet::request(CMD_HEARTBEAT, RequestId(5), 0, b"hb"));
    feed(&mut c, at(180_002), &req);
    let out = tx(&mut c, at(180_002));
    assert_eq!(
        out,
        [(
            FrameKind::WsBinary,
            pkt(Packet::response(
                CMD_HEARTBEAT,
                RequestId(5),
                Status::Success,
                b"hb"
            ))
        )]
    );
}

#[test]
fn websocket_messages_are_consumed_whole_and_bad_ones_dropped() {
    let mut c = ready_with(cfg_ws());
    // a whole message: nothing trailing
    let clean = pkt(Packet::push(101, &[1]));
    let r = c.handle_input(at(1), (), &clean).unwrap();
    assert_eq!(r.bytes_consumed(), clean.len());
    assert_eq!(c.stats().trailing_bytes, 0);
    let mut msg = pkt(Packet::push(101, &[1]));
    msg.extend([0xAA, 0xBB]);
    let r = c.handle_input(at(1), (), &msg).unwrap();
    assert_eq!(r.bytes_consumed(), msg.len());
    assert!(matches!(r.app(), Some(ClientApp::Push { cmd: 101, .. })));
    assert_eq!(c.stats().trailing_bytes, 1);
    let r = c.handle_input(at(2), (), &[0x03, 0x65, 0x00]).unwrap();
    assert_eq!((r.bytes_consumed(), r.app()), (3, None));
    assert_eq!(c.stats().decode_errors, 1);
    assert!(c.is_connected(), "framing intact: connection kept");
}

fn close_push(code: i32, reason: &str) -> StdVec<u8> {
    pkt(Packet::push(
        CMD_CLOSE,
        &enc(&Close::new(CloseCode::from_i32(code), reason)),
    ))
}

#[test]
fn close_codes_follow_the_per_code_policy() {
    for code in 0..=7 {
        let mut c = ready_tcp();
        let close_code = CloseCode::from_i32(code);
        // the code and the reason come back borrowed from the input
        let push = close_push(code, "bye");
        let r = c.handle_input(at(1), (), &push).unwrap();
        assert_eq!(
            r.into_app(),
            Some(ClientApp::Close {
                code: close_code,
                reason: PeerText::new(b"bye"),
            })
        );
        let action = match code {
            4..=6 => After::ReAuth,
            _ => After::Reconnect,
        };
        assert_eq!(After::close_push(close_code), action);
        let ev = events(&mut c);
        assert_eq!(
            ev[..1],
            [Ev::Disconnected {
                cause: CloseCause::Peer { code: close_code }
            }],
            "code {code}"
        );
        let scheduled = Ev::ReconnectScheduled {
            at: at(1_001),
            attempt: 1,
        };
        match action {
            After::Reconnect => {
                assert_eq!(ev[1..], [scheduled], "code {code}");
                assert_eq!(c.session_id(), Some("s1"));
                c.handle_timeout(at(1_001));
                assert_eq!(events(&mut c), [Ev::ConnectTransport { attempt: 1 }]);
                let (cmd, _, _, body) = open_transport(&mut c, at(1_100));
                assert_eq!(cmd, CMD_RECONNECT, "code {code}");
                assert_eq!(ReconnectRequest::decode(&body).unwrap().session_id, "s1");
            }
            After::ReAuth => {
                assert_eq!(ev[1..], [Ev::TokenNeeded, scheduled], "code {code}");
                assert_eq!(c.session_id(), None);
                c.handle_timeout(at(1_001));
                assert!(events(&mut c).is_empty());
                assert_eq!(c.state(), ClientState::NeedToken);
                c.provide_token(at(3_000), "t2").unwrap();
                assert_eq!(events(&mut c), [Ev::ConnectTransport { attempt: 1 }]);
                let (cmd, _, _, _) = open_transport(&mut c, at(3_000));
                assert_eq!(cmd, CMD_AUTH);
            }
            After::Quota => unreachable!("not a Close push reaction"),
        }
    }
}

#[test]
fn empty_close_body_means_code_zero_and_ws_gets_a_close_frame() {
    let mut c = ready_with(cfg_ws());
    let apps = feed(&mut c, at(1), &hex("03 00 00 00 00"));
    assert_eq!(apps, [(0, vec![])], "an empty reason");
    let ev = events(&mut c);
    assert_eq!(
        ev[0],
        Ev::Disconnected {
            cause: CloseCause::Peer {
                code: CloseCode::HeartbeatTimeout
            }
        }
    );
    assert!(matches!(ev[1], Ev::ReconnectScheduled { .. }), "{ev:?}");
    assert_eq!(tx(&mut c, at(1)), [(FrameKind::WsClose(1000), vec![])]);
}

#[test]
fn websocket_close_frames_end_the_connection() {
    let mut c = ready_with(cfg_ws());
    c.handle_frame(at(1), (), FrameKind::WsClose(1001), b"going away");
    assert_eq!(
        events(&mut c),
        [
            Ev::Disconnected {
                cause: CloseCause::WsClosed { code: 1001 }
            },
            Ev::ReconnectScheduled {
                at: at(1_001),
                attempt: 1
            }
        ]
    );
    assert!(
        tx(&mut c, at(1)).is_empty(),
        "the WebSocket library answers the close"
    );
    let mut c = ready_with(cfg_ws());
    c.handle_frame(at(1), (), FrameKind::WsClose(4006), b"");
    assert_eq!(
        events(&mut c)[1..],
        [
            Ev::TokenNeeded,
            Ev::ReconnectScheduled {
                at: at(1_001),
                attempt: 1
            }
        ],
        "4000 + ConnectDuplicate: re-authenticate"
    );
    assert_eq!(c.session_id(), None);
}

#[test]
fn reconnect_with_session_replaces_it_and_backs_off_exponentially() {
    fn jitter(attempt: u32) -> Duration {
        Duration::from_millis(u64::from(attempt))
    }
    let cfg = cfg_tcp()
        .with_jitter(jitter)
        .with_reconnect_backoff(Duration::from_secs(1), Duration::from_secs(5));
    let mut c = ready_with(cfg);
    let mut now = at(1);
    let mut expected = StdVec::new();
    for (attempt, delay_ms) in [
        (1u32, 1_000u64),
        (2, 2_000),
        (3, 4_000),
        (4, 5_000),
        (5, 5_000),
    ] {
        c.handle_closed(now, ());
        let ev = events(&mut c);
        let at_ = now + Duration::from_millis(delay_ms + u64::from(attempt));
        assert_eq!(
            ev,
            [
                Ev::Disconnected {
                    cause: CloseCause::TransportClosed
                },
                Ev::ReconnectScheduled { at: at_, attempt }
            ]
        );
        assert_eq!(c.poll_timeout(), Some(at_));
        c.handle_timeout(at_);
        assert_eq!(events(&mut c), [Ev::ConnectTransport { attempt }]);
        expected.push(attempt);
        now = at_;
    }
    assert_eq!(c.stats().reconnects, 5);
    // the dial works this time: Reconnect with the session (body: session_id "s1")
    let (cmd, rid, timeout, body) = open_transport(&mut c, now);
    assert_eq!((cmd, timeout), (CMD_RECONNECT, 10_000));
    assert_eq!(body, hex("0a 02 73 31"));
    let resp = pkt(Packet::response(
        CMD_RECONNECT,
        rid,
        Status::Success,
        &grant("s2", EXPIRES + 1),
    ));
    feed(&mut c, now, &resp);
    assert_eq!(
        events(&mut c),
        [connected(LoginKind::Reconnect, EXPIRES + 1, true)]
    );
    assert_eq!(c.session_id(), Some("s2"));
    // attempts start over after a success
    c.handle_closed(now, ());
    assert!(events(&mut c).contains(&Ev::ReconnectScheduled {
        at: now + Duration::from_millis(1_001),
        attempt: 1
    }));
    assert_eq!(expected.len(), 5);
}

#[test]
fn reconnect_now_skips_the_back_off_and_connect_starts_over() {
    let mut c = ready_tcp();
    c.handle_closed(at(1), ());
    let _ = events(&mut c);
    assert_eq!(c.state(), ClientState::WaitingToReconnect);
    c.reconnect_now(at(2)).unwrap();
    assert_eq!(events(&mut c), [Ev::ConnectTransport { attempt: 1 }]);
    assert_eq!(c.reconnect_now(at(3)), Err(Error::AlreadyConnected));
    c.handle_closed(at(4), ());
    let _ = events(&mut c);
    // connect with fresh credentials drops the session: Auth, attempts from 0
    c.connect(at(5), Credentials::new("new")).unwrap();
    assert_eq!(events(&mut c), [Ev::ConnectTransport { attempt: 0 }]);
    assert_eq!(c.session_id(), None);
    let (cmd, _, _, body) = open_transport(&mut c, at(6));
    assert_eq!(cmd, CMD_AUTH);
    assert_eq!(AuthRequest::decode(&body).unwrap().token, "new");
}

#[test]
fn dial_and_login_timeouts_retry() {
    let mut c = ready_tcp();
    c.handle_closed(at(0), ());
    let _ = events(&mut c);
    c.handle_timeout(at(1_000));
    assert_eq!(events(&mut c), [Ev::ConnectTransport { attempt: 1 }]);
    c.handle_timeout(at(11_000));
    assert_eq!(
        events(&mut c),
        [
            Ev::Disconnected {
                cause: CloseCause::ConnectTimeout
            },
            Ev::ReconnectScheduled {
                at: at(13_000),
                attempt: 2
            }
        ]
    );
    c.handle_timeout(at(13_000));
    let _ = events(&mut c);
    let _ = open_transport(&mut c, at(13_000));
    c.handle_timeout(at(23_000));
    assert_eq!(
        events(&mut c)[0],
        Ev::Disconnected {
            cause: CloseCause::LoginTimeout
        }
    );
}

#[test]
fn expired_session_falls_back_to_auth_with_a_fresh_token() {
    let mut c = ready_tcp();
    feed(&mut c, at(1), &close_push(2, "shutdown"));
    let _ = events(&mut c);
    // the outage lasts past the session's expiry (minus the 10 s margin)
    let late = at(86_400_000 - 10_000);
    assert!(c.session_resumable(late - Duration::from_millis(1)));
    assert!(!c.session_resumable(late));
    c.handle_timeout(late);
    assert_eq!(events(&mut c), [Ev::TokenNeeded]);
    assert_eq!(c.state(), ClientState::NeedToken);
    assert_eq!(c.session_id(), None);
    c.provide_token(late, "otp2").unwrap();
    assert_eq!(events(&mut c), [Ev::ConnectTransport { attempt: 1 }]);
    let (cmd, _, _, body) = open_transport(&mut c, late);
    assert_eq!(cmd, CMD_AUTH);
    assert_eq!(AuthRequest::decode(&body).unwrap().token, "otp2");
}

#[test]
fn zero_or_past_expires_is_not_resumable() {
    for expires in [0, -5, WALL_T0 - 1] {
        let mut c = client(cfg_tcp());
        log_in(&mut c, expires);
        let ev = events(&mut c);
        assert!(
            matches!(
                ev[0],
                Ev::Connected {
                    resumable: false,
                    ..
                }
            ),
            "{expires}: {ev:?}"
        );
        c.handle_closed(at(1), ());
        let ev = events(&mut c);
        assert!(ev.contains(&Ev::TokenNeeded), "{expires}: {ev:?}");
    }
}

#[test]
fn without_a_wall_clock_only_zero_is_checked_and_the_heuristic_reads_relative_ms() {
    let mut c = C::with_capacities(ClientConfig::tcp());
    log_in(&mut c, 5);
    assert!(
        c.session_resumable(at(1_000_000)),
        "no wall clock: server decides"
    );
    let cfg = ClientConfig::tcp().with_relative_expiry_heuristic(true);
    let mut c = C::with_capacities(cfg);
    log_in(&mut c, 60_000);
    assert!(c.session_resumable(at(49_999)));
    assert!(
        !c.session_resumable(at(50_000)),
        "60 s relative minus 10 s margin"
    );
    // set_wall_clock gives the offset used by heartbeats
    c.set_wall_clock(T0, WALL_T0);
    assert_eq!(c.wall_clock_ms(at(1)), Some(WALL_T0 + 1));
}

#[test]
fn the_heuristic_reads_1e11_and_above_as_an_absolute_time() {
    let cfg = ClientConfig::tcp().with_relative_expiry_heuristic(true);
    // 1e11 ms after the epoch (1973) is long past at WALL_T0: not resumable
    let mut c = C::with_capacities(cfg);
    c.set_wall_clock(T0, WALL_T0);
    log_in(&mut c, 100_000_000_000);
    assert!(!c.session_resumable(at(1)));
    // one less is relative: about three years from now
    let mut c = C::with_capacities(cfg);
    c.set_wall_clock(T0, WALL_T0);
    log_in(&mut c, 99_999_999_999);
    assert!(c.session_resumable(at(1)));
}

#[test]
fn rejected_reconnect_drops_the_session_and_asks_for_a_token() {
    let mut c = ready_tcp();
    let rid = reconnect_request(&mut c);
    let resp = refusal(
        CMD_RECONNECT,
        rid,
        Status::Unauthenticated,
        401,
        "session expired",
    );
    feed(&mut c, at(1_002), &resp);
    let ev = events(&mut c);
    assert!(matches!(
        ev[0],
        Ev::LoginFailed {
            kind: LoginKind::Reconnect,
            status: Status::Unauthenticated,
            code: Some(401),
            ..
        }
    ));
    assert_eq!(
        ev[1..],
        [
            Ev::Disconnected {
                cause: CloseCause::LoginRejected(Status::Unauthenticated)
            },
            Ev::TokenNeeded,
            Ev::ReconnectScheduled {
                at: at(3_002),
                attempt: 2
            }
        ]
    );
    assert_eq!(c.session_id(), None);
    // the token arrives during the back-off: dial at its end
    c.provide_token(at(2_000), "otp3").unwrap();
    assert!(events(&mut c).is_empty());
    c.handle_timeout(at(3_002));
    assert_eq!(events(&mut c), [Ev::ConnectTransport { attempt: 2 }]);
    assert_eq!(open_transport(&mut c, at(3_002)).0, CMD_AUTH);
}

#[test]
fn token_needed_on_an_open_transport_waits_for_provide_token() {
    let mut c = ready_tcp();
    redial(&mut c);
    // the session is given up while dialing (e.g. it expired)
    c.session = None;
    c.handle_connected(at(1_002)).unwrap();
    assert_eq!(events(&mut c), [Ev::TokenNeeded]);
    assert_eq!(
        tx(&mut c, at(1_002)),
        [(FrameKind::Stream, vec![0x11, 0x09])]
    );
    assert_eq!(c.poll_timeout(), Some(at(11_002)));
    c.provide_token(at(1_500), "late").unwrap();
    let out = tx(&mut c, at(1_500));
    assert_eq!(request(&out[0].1).0, CMD_AUTH, "no second handshake");
}

#[test]
fn responses_are_correlated_borrowed_and_errors_decoded() {
    let mut c = ready_tcp();
    let a = send(&mut c, at(1), 11, Duration::ZERO, b"q1");
    let b = send(&mut c, at(1), 6, Duration::ZERO, b"q2");
    assert_eq!((a, b), (RequestId(2), RequestId(3)));
    assert_eq!(c.in_flight(), 2);
    assert_eq!(
        c.poll_timeout(),
        Some(at(30_001)),
        "default request timeout"
    );
    // the error-body vector (code 301600, "invalid request") with this request's id
    let err = hex("08 a0 b4 12 12 0f 69 6e 76 61 6c 69 64 20 72 65 71 75 65 73 74");
    let resp = pkt(Packet::response(6, b, Status::BadRequest, &err));
    let r = c.handle_input(at(2), (), &resp).unwrap();
    assert_eq!(
        r.into_app(),
        Some(ClientApp::Response {
            cmd: 6,
            request_id: b,
            status: Status::BadRequest,
            body: &resp[10..],
            gzip: false,
            error: Some(ErrorBody::new(301_600, "invalid request")),
        })
    );
    let resp = pkt(Packet::response(11, a, Status::Success, b"answer")).into_iter();
    let resp: StdVec<u8> = resp.collect();
    let r = c.handle_input(at(3), (), &resp).unwrap();
    assert!(matches!(
        r.app(),
        Some(ClientApp::Response { request_id, status: Status::Success, body: b"answer", error: None, .. }) if *request_id == a
    ));
    assert_eq!(c.in_flight(), 0);
    assert_eq!(c.stats().responses, 2);
    // gzip-flagged data passes through for the caller to inflate
    let push = hex("23 65 00 00 01 99");
    let r = c.handle_input(at(4), (), &push).unwrap();
    assert_eq!(
        r.into_app(),
        Some(ClientApp::Push {
            cmd: 101,
            body: &[0x99],
            gzip: true
        })
    );
}

#[test]
fn gzip_control_bodies_need_the_gzip_feature() {
    let (mut c, rid) = auth_pending();
    let plain = grant("s1", EXPIRES);
    let mut gz = [0u8; 128];
    let n = crate::longport::gzip::gzip_stored(&plain, &mut gz).unwrap();
    let resp = pkt(Packet::response(CMD_AUTH, rid, Status::Success, &gz[..n]).with_gzip(true));
    feed(&mut c, T0, &resp);
    let ev = events(&mut c);
    if cfg!(feature = "gzip") {
        assert!(matches!(&ev[0], Ev::Connected { .. }), "{ev:?}");
        assert_eq!(c.session_id(), Some("s1"));
    } else {
        assert_eq!(
            ev[0],
            Ev::Disconnected {
                cause: CloseCause::Protocol(ProtocolError::CompressedControl { cmd: CMD_AUTH })
            }
        );
    }
    // a gzip heartbeat echo (a stored gzip member of the timestamp body) is matched by id
    // without inflating
    let mut c = ready_tcp();
    c.ids.0 = 1;
    c.handle_timeout(at(60_000));
    let _ = tx(&mut c, at(60_000));
    let v12 = hex("22 01 00 00 00 01 00 00 00 1e 1f 8b 08 00 00 00 00 00 00 ff 01 07 00 f8 ff 08 80 d0 95 ff bc 31 6d 3e 6e 14 07 00 00 00");
    feed(&mut c, at(60_010), &v12);
    assert_eq!(
        events(&mut c),
        [Ev::HeartbeatRtt {
            rtt: Duration::from_millis(10)
        }]
    );
}

#[test]
fn unmatched_responses_are_dropped_and_counted() {
    let mut c = ready_tcp();
    let resp = pkt(Packet::response(11, RequestId(4242), Status::Success, b"?"));
    let r = c.handle_input(at(1), (), &resp).unwrap();
    assert_eq!((r.bytes_consumed(), r.app()), (resp.len(), None));
    assert_eq!(c.stats().unmatched_responses, 1);
    assert!(events(&mut c).is_empty());
}

#[test]
fn request_timeout_and_late_response() {
    let mut c = ready_tcp();
    let mut out = [0u8; 64];
    let (id, t) = c
        .send_request(at(0), 11, Duration::from_secs(100), b"x", &mut out)
        .unwrap();
    let (_, _, header_timeout, _) = request(&out[..t.len]);
    assert_eq!(header_timeout, 60_000, "header field clamped to 60000");
    let (id2, t) = c
        .send_request(at(0), 11, Duration::from_millis(1_500), b"x", &mut out)
        .unwrap();
    assert_eq!(request(&out[..t.len]).2, 1_500);
    assert_eq!(c.poll_timeout(), Some(at(1_500)));
    c.handle_timeout(at(1_500));
    assert_eq!(events(&mut c), [Ev::RequestTimedOut { id: id2 }]);
    assert_eq!(c.in_flight(), 1);
    feed(
        &mut c,
        at(1_600),
        &pkt(Packet::response(11, id2, Status::Success, b"")),
    );
    assert_eq!(c.stats().unmatched_responses, 1, "late response dropped");
    assert_eq!(c.stats().requests_timed_out, 1);
    let _ = id;
}

#[test]
fn request_ids_wrap_past_u32_max_to_one_and_skip_ids_in_flight() {
    let mut c = ready_with(cfg_tcp().with_first_request_id(u32::MAX - 1));
    let ids: StdVec<u32> = (0..3)
        .map(|_| send(&mut c, at(1), 11, Duration::ZERO, b"").0)
        .collect();
    assert_eq!(ids, [u32::MAX, 1, 2], "auth took MAX - 1; 0 is skipped");
    // pretend the counter came round to ids still in flight
    c.ids.0 = u32::MAX;
    assert_eq!(send(&mut c, at(1), 11, Duration::ZERO, b"").0, 3);
    assert_eq!(c.in_flight(), 4);
    let mut out = [0u8; 64];
    assert_eq!(
        c.send_request(at(1), 11, Duration::ZERO, b"", &mut out),
        Err(Error::TooManyInFlight)
    );
    // the heartbeat id avoids them too
    c.ids.0 = 1;
    c.handle_timeout(at(60_000));
    let (_, rid, _, _) = request(&tx(&mut c, at(60_000))[0].1);
    assert_eq!(rid, RequestId(4));
    assert_eq!(heartbeat_id(RequestId(u32::MAX)), -1, "Go-style cast");
}

#[test]
fn send_request_refusals_change_nothing() {
    let mut c = client(cfg_tcp());
    let mut out = [0u8; 64];
    assert_eq!(
        c.send_request(T0, 11, Duration::ZERO, b"", &mut out),
        Err(Error::NotOpen)
    );
    let mut c = ready_tcp();
    assert_eq!(
        c.send_request(at(1), CMD_RECONNECT, Duration::ZERO, b"", &mut out),
        Err(Error::ControlCommand(3))
    );
    let mut small = [0u8; 12];
    assert_eq!(
        c.send_request(at(1), 11, Duration::ZERO, b"ab", &mut small),
        Err(Error::BufferTooSmall { required: 13 })
    );
    assert_eq!(c.in_flight(), 0);
    assert_eq!(c.poll_timeout(), Some(at(60_000)));
    assert_eq!(
        send(&mut c, at(1), 11, Duration::ZERO, b"ab"),
        RequestId(2),
        "no id used up"
    );
}

#[test]
fn buffer_too_small_leaves_the_frame_queued() {
    let mut c = client(cfg_tcp());
    c.connect(T0, Credentials::new("abc")).unwrap();
    c.handle_connected(T0).unwrap();
    let mut small = [0u8; 17];
    assert_eq!(
        c.poll_transmit(T0, &mut small),
        Err(BufferTooSmall { required: 18 })
    );
    assert_eq!(small, [0u8; 17], "nothing written");
    let out = tx(&mut c, T0);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1.len(), 18);
    // echo and pong frames too
    let mut c = ready_with(cfg_ws());
    c.handle_frame(at(1), (), FrameKind::WsPing, b"12345");
    assert_eq!(
        c.poll_transmit(at(1), &mut [0u8; 4]),
        Err(BufferTooSmall { required: 5 })
    );
    assert_eq!(tx(&mut c, at(1)), [(FrameKind::WsPong, b"12345".to_vec())]);
    feed(
        &mut c,
        at(2),
        &pkt(Packet::request(CMD_HEARTBEAT, RequestId(9), 0, b"abc")),
    );
    assert_eq!(
        c.poll_transmit(at(2), &mut [0u8; 12]),
        Err(BufferTooSmall { required: 13 })
    );
    assert_eq!(tx(&mut c, at(2)).len(), 1);
    c.handle_timeout(at(60_000));
    let mut tiny = [0u8; 2];
    assert!(c.poll_transmit(at(60_000), &mut tiny).is_err());
    assert_eq!(tx(&mut c, at(60_000))[0].0, FrameKind::WsPing);
}

#[test]
fn close_fails_requests_sends_ws_close_and_emits_one_closed() {
    let mut c = ready_with(cfg_ws());
    let id = send(&mut c, at(1), 11, Duration::ZERO, b"");
    c.close(at(2), "bye now").unwrap();
    assert_eq!(
        tx(&mut c, at(2)),
        [(FrameKind::WsClose(1000), b"bye now".to_vec())],
        "the reason is the close frame's payload"
    );
    assert_eq!(
        events(&mut c),
        [
            Ev::RequestFailed {
                id,
                reason: RequestFailure::Closed
            },
            Ev::Closed {
                cause: CloseCause::Local
            }
        ]
    );
    assert_eq!(c.close(at(3), ""), Err(Error::Closed));
    c.handle_closed(at(3), ());
    c.handle_timeout(at(1_000_000));
    assert!(events(&mut c).is_empty());
    assert_eq!(c.poll_timeout(), None);
    // over TCP there is no close frame: closing the link is the caller's
    let mut c = ready_tcp();
    c.close(at(2), "bye now").unwrap();
    assert_eq!(tx(&mut c, at(2)), []);
    // nor on a WebSocket that is not up yet
    let mut c = client(cfg_ws());
    c.connect(T0, Credentials::new("abc")).unwrap();
    c.close(T0, "bye now").unwrap();
    assert_eq!(tx(&mut c, T0), []);
    assert_eq!(c.state(), ClientState::Closed);
    let mut out = [0u8; 64];
    assert_eq!(
        c.send_request(at(4), 11, Duration::ZERO, b"", &mut out),
        Err(Error::Closed)
    );
    assert_eq!(c.connect(at(4), Credentials::new("x")), Err(Error::Closed));
    assert_eq!(c.provide_token(at(4), "x"), Err(Error::Closed));
    assert_eq!(c.handle_connected(at(4)), Err(Error::Closed));
    let r = c.handle_input(at(4), (), b"\x03\x65\x00\x00\x00").unwrap();
    assert_eq!((r.bytes_consumed(), r.app()), (5, None));
}

#[test]
fn giving_up_after_max_attempts_closes() {
    let mut c = ready_with(cfg_tcp().with_max_reconnect_attempts(Some(1)));
    redial(&mut c);
    c.handle_closed(at(1_002), ());
    assert_eq!(
        events(&mut c),
        [
            Ev::Disconnected {
                cause: CloseCause::TransportClosed
            },
            Ev::Closed {
                cause: CloseCause::TransportClosed
            }
        ]
    );
    assert_eq!(c.state(), ClientState::Closed);
}

#[test]
fn full_event_queue_refuses_input_and_defers_timers() {
    let mut c = ready_tcp();
    for _ in 0..13 {
        c.push_event(Ev::TokenNeeded);
    }
    let push = pkt(Packet::push(101, &[]));
    assert_eq!(c.handle_input(at(1), (), &push), Err(Error::QueueFull));
    c.handle_timeout(at(60_000));
    assert_eq!(c.poll_timeout(), Some(at(60_000)), "still due");
    assert_eq!(events(&mut c).len(), 13);
    c.handle_timeout(at(60_000));
    assert_eq!(
        tx(&mut c, at(60_000)).len(),
        1,
        "heartbeat sent once drained"
    );
    assert_eq!(
        c.connect(at(1), Credentials::new("x")),
        Err(Error::AlreadyConnected)
    );
}

#[test]
fn commands_go_ahead_with_exactly_the_event_reserve_free() {
    // 16 event slots, 4 kept for what a command may queue: with 12 waiting `connect`,
    // `reconnect_now` and `provide_token` go ahead, with 13 they are refused
    let mut c = client(cfg_tcp());
    for _ in 0..13 {
        c.push_event(Ev::TokenNeeded);
    }
    assert_eq!(c.provide_token(T0, "abc"), Err(Error::QueueFull));
    assert_eq!(
        c.connect(T0, Credentials::new("abc")),
        Err(Error::QueueFull)
    );
    assert_eq!(c.reconnect_now(T0), Err(Error::QueueFull));
    assert!(!c.has_token());
    assert!(c.poll_event().is_some());
    c.provide_token(T0, "abc").unwrap();
    assert!(c.has_token());
    c.reconnect_now(T0).unwrap();
    assert_eq!(c.state(), ClientState::Connecting);
}

#[test]
fn stale_and_unexpected_inputs_are_harmless() {
    let mut c = client(cfg_tcp());
    assert_eq!(c.handle_connected(T0), Err(Error::NotPending));
    c.handle_closed(T0, ());
    c.handle_frame(T0, (), FrameKind::WsPing, b"x");
    let r = c.handle_input(T0, (), b"\x01").unwrap();
    assert_eq!(r.bytes_consumed(), 1);
    assert!(events(&mut c).is_empty());
    assert!(tx(&mut c, T0).is_empty());
    assert_eq!(c.reconnect_now(T0), Err(Error::NoCredentials));
    // a step back of the caller's clock counts as no time passing
    let mut c = ready_tcp();
    c.handle_timeout(at(60_000));
    let _ = tx(&mut c, at(60_000));
    feed(
        &mut c,
        T0,
        &pkt(Packet::response(
            CMD_HEARTBEAT,
            RequestId(2),
            Status::Success,
            &[],
        )),
    );
    assert_eq!(
        events(&mut c),
        [Ev::HeartbeatRtt {
            rtt: Duration::ZERO
        }]
    );
}

#[test]
fn machine_trait_drives_the_client() {
    fn drive<M: Machine<Peer = ()>>(m: &mut M, now: Instant) -> usize {
        let mut buf = [0u8; 128];
        let mut n = 0;
        while let Ok(Some(_)) = m.poll_transmit(now, &mut buf) {
            n += 1;
        }
        while m.poll_event().is_some() {}
        n
    }
    let mut c = client(cfg_tcp());
    c.connect(T0, Credentials::new("abc")).unwrap();
    Machine::handle_closed(&mut c, T0, ());
    assert_eq!(drive(&mut c, T0), 0);
    assert_eq!(Machine::poll_timeout(&c), Some(at(1_000)));
    Machine::handle_timeout(&mut c, at(1_000));
    c.handle_connected(at(1_000)).unwrap();
    assert_eq!(drive(&mut c, at(1_000)), 1);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    #[test]
    fn no_panics_on_arbitrary_input(
        ws: bool,
        ops in proptest::collection::vec(
            (0u8..8, 0u64..200_000, proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)),
            0..40,
        ),
    ) {
        let mut c = if ws { ready_with(cfg_ws()) } else { ready_tcp() };
        let mut now = T0;
        let mut closed = 0;
        let mut buf = [0u8; 256];
        let valid = [
            close_push(0, "x"),
            pkt(Packet::request(CMD_HEARTBEAT, RequestId(3), 0, b"hb")),
            pkt(Packet::response(CMD_AUTH, RequestId(1), Status::Success, &grant("s9", EXPIRES))),
            pkt(Packet::response(CMD_RECONNECT, RequestId(1), Status::Unauthenticated, b"")),
            pkt(Packet::push(101, b"data")),
        ];
        for (op, dt, bytes) in ops {
            now += Duration::from_millis(dt);
            match op {
                0 => { let _ = c.handle_input(now, (), &bytes); }
                1 => {
                    let v = &valid[usize::from(bytes.first().copied().unwrap_or(0)) % valid.len()];
                    let _ = c.handle_input(now, (), v);
                }
                2 => c.handle_timeout(now),
                3 => {
                    let kind = [FrameKind::WsPing, FrameKind::WsPong, FrameKind::WsClose(4005), FrameKind::WsBinary];
                    c.handle_frame(now, (), kind[usize::from(bytes.len() as u8 % 4)], &bytes);
                }
                4 => c.handle_closed(now, ()),
                5 => { let _ = c.handle_connected(now); let _ = c.provide_token(now, "t"); }
                6 => { let _ = c.send_request(now, 11, Duration::from_millis(dt), &bytes, &mut buf); }
                _ => if bytes.len() == 39 { let _ = c.close(now, "x"); } else { let _ = c.reconnect_now(now); },
            }
            while let Ok(Some(t)) = c.poll_transmit(now, &mut buf) {
                proptest::prop_assert!(t.len <= buf.len());
            }
            while let Some(e) = c.poll_event() {
                proptest::prop_assert_eq!(closed, 0, "nothing after Closed");
                if matches!(e, Ev::Closed { .. }) {
                    closed += 1;
                }
            }
            if let Some(t) = c.poll_timeout() {
                if op == 2 {
                    proptest::prop_assert!(t > now, "timers fired: {:?} <= {:?}", t, now);
                }
            }
        }
        proptest::prop_assert!(closed <= 1);
        let _ = MAX_PACKET_LEN;
    }
}

#[test]
fn server_heartbeats_of_any_size_are_handed_over_to_echo() {
    let mut c = ready_tcp();
    // 200 bytes: too big for the client's own echo slots, handed over
    let body = [7u8; 200];
    let req = pkt(Packet::request(CMD_HEARTBEAT, RequestId(77), 0, &body).with_gzip(true));
    let r = c.handle_input(at(1), (), &req).unwrap();
    assert_eq!(
        r.into_app(),
        Some(ClientApp::HeartbeatEcho {
            request_id: RequestId(77),
            body: &body[..],
            gzip: true
        })
    );
    assert!(
        tx(&mut c, at(1)).is_empty(),
        "nothing echoed by the client itself"
    );
    let mut out = [0u8; 256];
    let t = c
        .echo_heartbeat(at(1), RequestId(77), &body, true, &mut out)
        .unwrap();
    assert_eq!(t.kind, FrameKind::Stream);
    assert_eq!(
        out[..t.len],
        pkt(Packet::response(CMD_HEARTBEAT, RequestId(77), Status::Success, &body).with_gzip(true))
    );
    assert_eq!(c.stats().heartbeats_answered, 1);
    assert_eq!(c.stats().dropped, 0);
    // five small ones in one read: four echoed by the client, the fifth handed over
    let mut handed = StdVec::new();
    for id in 1..=5u32 {
        let req = pkt(Packet::request(CMD_HEARTBEAT, RequestId(id), 0, b"hb"));
        if let Some(ClientApp::HeartbeatEcho { request_id, .. }) =
            c.handle_input(at(2), (), &req).unwrap().into_app()
        {
            handed.push(request_id);
        }
    }
    assert_eq!(handed, [RequestId(5)]);
    assert_eq!(tx(&mut c, at(2)).len(), 4);
    // up to the body limit; not without a transport
    let cfg = cfg_ws().with_max_body(100_000);
    let mut c = ready_with(cfg);
    let big = vec![1u8; 100_000];
    let req = pkt(Packet::request(CMD_HEARTBEAT, RequestId(9), 0, &big));
    assert!(matches!(
        c.handle_input(at(1), (), &req).unwrap().app(),
        Some(ClientApp::HeartbeatEcho { .. })
    ));
    let mut out = vec![0u8; 100_010];
    let t = c
        .echo_heartbeat(at(1), RequestId(9), &big, false, &mut out)
        .unwrap();
    assert_eq!((t.len, t.kind), (100_010, FrameKind::WsBinary));
    assert_eq!(
        c.echo_heartbeat(at(1), RequestId(9), &big, false, &mut out[..10]),
        Err(Error::BufferTooSmall { required: 100_010 })
    );
    c.handle_closed(at(2), ());
    assert_eq!(
        c.echo_heartbeat(at(2), RequestId(9), b"x", false, &mut out),
        Err(Error::NotOpen)
    );
    c.close(at(3), "bye").unwrap();
    assert_eq!(
        c.echo_heartbeat(at(3), RequestId(9), b"x", false, &mut out),
        Err(Error::Closed)
    );
}

#[test]
fn send_heartbeat_on_demand() {
    let mut c = client(cfg_tcp());
    assert_eq!(c.send_heartbeat(T0), Err(Error::NotOpen));
    log_in(&mut c, EXPIRES);
    let _ = events(&mut c);
    c.send_heartbeat(at(5)).unwrap();
    c.send_heartbeat(at(5)).unwrap();
    let out = tx(&mut c, at(5));
    assert_eq!(out.len(), 1, "one queued heartbeat goes out once");
    let (cmd, rid, _, body) = request(&out[0].1);
    assert_eq!(cmd, CMD_HEARTBEAT);
    assert_eq!(
        Heartbeat::decode(&body).unwrap().heartbeat_id,
        Some(heartbeat_id(rid))
    );
    feed(
        &mut c,
        at(25),
        &pkt(Packet::response(CMD_HEARTBEAT, rid, Status::Success, &body)),
    );
    assert_eq!(
        events(&mut c),
        [Ev::HeartbeatRtt {
            rtt: Duration::from_millis(20)
        }]
    );
    // the periodic one follows an interval after the one on demand
    assert_eq!(c.poll_timeout(), Some(at(60_005)));
    // WebSocket: a ping
    let mut c = ready_with(cfg_ws());
    c.send_heartbeat(at(1)).unwrap();
    let out = tx(&mut c, at(1));
    assert_eq!(out[0].0, FrameKind::WsPing);
    c.close(at(2), "").unwrap();
    assert_eq!(c.send_heartbeat(at(2)), Err(Error::Closed));
}

#[cfg(feature = "gzip")]
#[test]
fn request_bodies_from_the_threshold_are_gzip_members() {
    use crate::longport::gzip::{gunzip, stored_len};
    let mut c = ready_with(cfg_tcp().with_gzip_requests(Some(1024)));
    let mut out = vec![0u8; 4096];
    // below the threshold: as given
    let (_, t) = c
        .send_request(at(1), 6, Duration::ZERO, &[1u8; 1023], &mut out)
        .unwrap();
    let (p, _) = Packet::parse(&out[..t.len], MAX_BODY_LEN).unwrap();
    assert!(!p.header.gzip);
    assert_eq!(p.body, &[1u8; 1023][..]);
    // from it: a stored gzip member, flag set, exact size reported
    let body: StdVec<u8> = (0..1024u32).map(|i| i as u8).collect();
    let (_, t) = c
        .send_request(at(1), 6, Duration::ZERO, &body, &mut out)
        .unwrap();
    assert_eq!(t.len, REQUEST_HEADER_LEN + stored_len(1024));
    let (p, _) = Packet::parse(&out[..t.len], MAX_BODY_LEN).unwrap();
    assert!(p.header.gzip);
    let member = p.body.to_vec();
    let mut plain = [0u8; 2048];
    let n = gunzip(&member, &mut plain).unwrap();
    assert_eq!(plain[..n], body[..]);
    // a too-small buffer asks for the wrapped size and changes nothing
    let in_flight = c.in_flight();
    assert_eq!(
        c.send_request(at(1), 6, Duration::ZERO, &body, &mut out[..1050]),
        Err(Error::BufferTooSmall {
            required: REQUEST_HEADER_LEN + stored_len(1024)
        })
    );
    assert_eq!(c.in_flight(), in_flight);
    // a body compressed by the caller goes out as it is
    let (_, t) = c
        .send_request_gzip(at(1), 6, Duration::ZERO, &member, &mut out)
        .unwrap();
    let (q, _) = Packet::parse(&out[..t.len], MAX_BODY_LEN).unwrap();
    assert!(q.header.gzip);
    assert_eq!(q.body.len(), stored_len(1024));
}

#[test]
fn quota_refusal_of_a_reconnect_follows_the_policy() {
    for policy in [
        QuotaPolicy::Stop,
        QuotaPolicy::RetryAfter(Duration::from_secs(300)),
    ] {
        let mut c = ready_with(cfg_tcp().with_quota_policy(policy));
        let rid = reconnect_request(&mut c);
        let quota = "connections limitation is hit";
        let resp = refusal(CMD_RECONNECT, rid, Status::PermissionDenied, 403, quota);
        let apps = feed(&mut c, at(1_002), &resp);
        assert_eq!(apps, [(255, b"connections limitation is hit".to_vec())]);
        let ev = events(&mut c);
        assert_eq!(
            ev[..2],
            [
                Ev::LoginFailed {
                    kind: LoginKind::Reconnect,
                    status: Status::PermissionDenied,
                    code: Some(403)
                },
                Ev::Disconnected {
                    cause: CloseCause::LoginRejected(Status::PermissionDenied)
                }
            ]
        );
        assert_eq!(c.session_id(), None);
        assert!(!c.has_token());
        match policy {
            QuotaPolicy::Stop => {
                assert_eq!(ev.len(), 2);
                assert_eq!(c.state(), ClientState::Stopped);
                assert_eq!(c.poll_timeout(), None);
                assert_eq!(c.reconnect_now(at(2_000)), Err(Error::NoCredentials));
                c.connect(at(2_000), Credentials::new("fresh")).unwrap();
                assert_eq!(events(&mut c), [Ev::ConnectTransport { attempt: 0 }]);
            }
            _ => {
                assert_eq!(
                    ev[2..],
                    [Ev::ReconnectScheduled {
                        at: at(301_002),
                        attempt: 2
                    }]
                );
                c.handle_timeout(at(301_002));
                assert_eq!(events(&mut c), [Ev::TokenNeeded]);
                assert_eq!(c.state(), ClientState::NeedToken);
            }
        }
    }
}

#[test]
fn a_request_over_the_table_is_refused_before_anything_is_written_and_lost_ones_are_counted() {
    let mut c = ready_tcp();
    let ids: StdVec<RequestId> = (0..4)
        .map(|_| send(&mut c, at(1), 11, Duration::ZERO, b"x"))
        .collect();
    let sent = c.stats().packets_sent;
    let mut out = [0x5Au8; 64];
    assert_eq!(
        c.send_request(at(1), 11, Duration::ZERO, b"x", &mut out),
        Err(Error::TooManyInFlight)
    );
    assert_eq!(out, [0x5A; 64], "nothing written");
    assert_eq!(c.stats().packets_sent, sent);
    // the transport goes: the four waiting requests fail, each counted
    c.handle_closed(at(2), ());
    assert_eq!(c.stats().requests_failed, 4);
    let failed: StdVec<RequestId> = events(&mut c)
        .into_iter()
        .filter_map(|e| match e {
            Ev::RequestFailed { id, .. } => Some(id),
            _ => None,
        })
        .collect();
    assert_eq!(failed, ids);
}
