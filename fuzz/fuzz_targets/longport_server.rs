//! LongPort server machine (4 connection slots, 3 sessions, 6 connection ids, TCP and
//! WebSocket): replays a stream of (time step, client bytes / valid client packets / WebSocket
//! frames, caller command) ops and checks the machine invariants after every step.
//!
//! Input (see `tether_fuzz::OpReader`): 7 config bytes, then ops; an op byte's low 5 bits pick
//! the op, bit 7 makes the drain after it start with a tiny buffer. Valid client packets reuse the
//! session ids the application granted, so Reconnect gets past the session table. The seventh
//! config byte turns on the gateway's limits: an account quota of 1 or 2 (bits 0-1), a
//! per-connection rate limit (bit 2), a rate limit on cmd 6 (bit 3), server heartbeats over TCP
//! every 2 s (bit 4), at most 2 unanswered requests (bit 5), one unauthenticated connection per
//! source (bit 6), a 64-byte body limit before authentication (bit 7). Ops 27-31 exercise them:
//! accepts with an account, gzip'd Reconnects, bursts of requests, answers to the server's own
//! heartbeats (a TCP response or a WebSocket pong), a pre-auth header announcing a large body.
//!
//! Invariants: no panic; `poll_timeout` is `None` or not before the latest `now`; no timer
//! livelock; early `handle_timeout` is a no-op; bounded frames and events per drain; per
//! connection lifetime at most one `Connected` and exactly one `Closed`, which for a close the
//! machine started comes only after the Close push (and on WebSocket the close frame) went out,
//! and whose transport causes (`TransportClosed`, `WsClosed`) only follow the caller's report;
//! after a full drain no connection is closing and the machine's table matches the event
//! history (`state(conn)` is `None` exactly for forgotten ids); no frame to an unknown,
//! forgotten or transport-gone connection, nothing after the WebSocket close frame, only the
//! close frame after the Close push, no pings/pongs once closing; frame kinds match the
//! transport; every packet frame is exactly one packet, never a request; control responses and
//! Close pushes decode; pings carry a `Heartbeat`, pongs echo the last ping; WS close codes are
//! the documented ones; `ServerApp` values match the connection state; `respond`/`push`/`send`
//! work only for authenticated connections; after `shutdown` and a drain no connection is left
//! and `ShutdownComplete` came once, last. Limits: one source never holds more unauthenticated
//! connections than its cap, nor all of them more than theirs; an account never has more live
//! connections than its quota, and `accept_*` says `OverQuota` exactly when the quota was
//! full; the machine sends requests only on TCP, only heartbeats, only when configured, and
//! answers refused requests only with status 3 / 301606 (rate limits) or status 6 / 403
//! (quota) when those are on; `TooManyInFlight` only at the pending-request cap; gzip'd logins
//! handed over inflate to what they claim.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_fuzz::{drain_events, drain_transmits, interval, is_spurious, step, OpReader};
use tether_net::longport::control::{
    AuthRequest, Body, Close, ErrorBody, Heartbeat, Metadata, ReconnectRequest, CMD_AUTH,
    CMD_CLOSE, CMD_HEARTBEAT, CMD_RECONNECT,
};
use tether_net::longport::wire::{Kind, Packet, Signature, DEFAULT_MAX_BODY};
use tether_net::longport::{
    AccountId, Admission, CloseCause, CloseCode, Error, Grant, Handshake, RateLimit, RequestId,
    Server, ServerApp as App, ServerConfig, ServerEvent, ServerState, SessionGrant, SessionId,
    Source, Status, Transport,
};
use tether_net::{Duration, FrameKind, Instant};

const PEERS: usize = 4;
const SESSIONS: usize = 3;
const IDS: usize = 6;
type S = Server<u8, PEERS, SESSIONS>;
const BUF: usize = 64 * 1024;
const MAX_FRAMES: usize = 6 * PEERS;
const MAX_EVENTS: usize = 3 * PEERS;

/// Longest request timeout a client may ask for
const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Default)]
struct ConnView {
    open: bool,
    tcp: bool,
    announced: bool,
    gone: bool,
    close_push_sent: bool,
    ws_close_sent: bool,
    last_ping: Option<Vec<u8>>,
    rx: Vec<u8>,
    /// The source it was registered with
    source: Source,
    /// The account its login was granted with
    account: Option<AccountId>,
    /// The last server heartbeat to it: a TCP request id, or a WebSocket ping payload
    server_hb: Option<(u32, Vec<u8>)>,
    /// The application refused its login (`reject_*`): any status may follow
    app_rejected: bool,
}

/// The gateway limits a run has on
#[derive(Debug, Clone, Copy, Default)]
struct Limits {
    quota: Option<u32>,
    rate: bool,
    cmd_rate: bool,
    tcp_heartbeats: bool,
    pending: usize,
    per_source: usize,
}

struct H {
    /// ops left whose drain is skipped (queues fill up: refusal paths, capacity bounds)
    hold: u8,
    /// the previous op was held: timers refused meanwhile may be due
    was_held: bool,
    s: S,
    now: Instant,
    tiny: Option<usize>,
    conns: Vec<ConnView>,
    sessions: Vec<String>,
    shutdown: bool,
    shutdown_reported: bool,
    limits: Limits,
}

tether_fuzz::impl_harness!(H, s: S);

impl H {
    fn check_frame(&mut self, to: u8, kind: FrameKind, bytes: &[u8]) {
        let c = usize::from(to);
        assert!(c < IDS, "frame to unknown id {to}");
        let closing = matches!(
            self.s.state(to),
            Some(ServerState::Closing | ServerState::Gone)
        );
        let v = &mut self.conns[c];
        assert!(v.open, "{kind:?} frame to forgotten connection {to}");
        assert!(
            !v.gone,
            "{kind:?} frame to connection {to}, whose transport is gone"
        );
        assert!(
            !v.ws_close_sent,
            "{kind:?} frame after the WebSocket close frame"
        );
        if v.close_push_sent {
            assert!(
                matches!(kind, FrameKind::WsClose(_)),
                "{kind:?} frame after the Close push"
            );
        }
        match kind {
            FrameKind::Stream | FrameKind::WsBinary => {
                assert_eq!(
                    kind == FrameKind::Stream,
                    v.tcp,
                    "{kind:?} on the wrong transport"
                );
                let (p, n) = Packet::parse(bytes, DEFAULT_MAX_BODY).expect("server frame parses");
                assert_eq!(n, bytes.len(), "a frame holds exactly one packet");
                match (p.header.kind, p.header.cmd) {
                    (Kind::Request { request_id, .. }, CMD_HEARTBEAT) => {
                        // the server's own heartbeat: TCP, configured, authenticated
                        assert!(v.tcp, "a request to a WebSocket client");
                        assert!(self.limits.tcp_heartbeats, "heartbeat without the setting");
                        assert_eq!(
                            self.s.state(to),
                            Some(ServerState::Authenticated),
                            "heartbeat before authentication"
                        );
                        let hb = Heartbeat::decode(p.body).expect("heartbeat body");
                        assert_eq!(hb.heartbeat_id, Some(request_id.0 as i32));
                        v.server_hb = Some((request_id.0, p.body.to_vec()));
                    }
                    (Kind::Request { .. }, cmd) => {
                        panic!("poll_transmit produced a request with cmd {cmd}")
                    }
                    (Kind::Push, CMD_CLOSE) => {
                        Close::decode(p.body).expect("Close push body decodes");
                        v.close_push_sent = true;
                    }
                    (Kind::Push, cmd) => panic!("machine push with cmd {cmd}"),
                    (
                        Kind::Response {
                            status: Status::Success,
                            ..
                        },
                        CMD_HEARTBEAT,
                    ) => {}
                    (
                        Kind::Response {
                            status: Status::Success,
                            ..
                        },
                        CMD_AUTH | CMD_RECONNECT,
                    ) => {
                        let g = SessionGrant::decode(p.body).expect("grant decodes");
                        assert!(
                            !g.session_id.is_empty(),
                            "grant without session id: {:?} {bytes:02x?}",
                            p.header
                        );
                    }
                    (Kind::Response { status, .. }, cmd) => {
                        // (a non-auth first request is answered with status 5 and its own cmd)
                        assert!(!status.is_success(), "success response with cmd {cmd}");
                        let e = ErrorBody::decode(p.body).expect("error body decodes");
                        if e.code == 301_606 {
                            assert_eq!(status, Status::BadRequest);
                            assert!(self.limits.rate || self.limits.cmd_rate, "rate limited");
                            assert!(cmd > CMD_RECONNECT);
                        }
                        if status == Status::PermissionDenied && !v.app_rejected {
                            assert!(self.limits.quota.is_some(), "status 6 without a quota");
                            assert_eq!(e.code, 403);
                        }
                    }
                }
            }
            FrameKind::WsPing => {
                assert!(!v.tcp);
                // (poll_transmit changes no state: the state now is the state it saw)
                assert!(!closing, "ping to a closing connection");
                let hb = Heartbeat::decode(bytes).expect("ping payload is a Heartbeat");
                let id = hb.heartbeat_id.expect("ping carries its id") as u32;
                v.server_hb = Some((id, bytes.to_vec()));
            }
            FrameKind::WsPong => {
                assert!(!v.tcp);
                assert!(!closing, "pong to a closing connection");
                assert_eq!(Some(bytes), v.last_ping.as_deref(), "pong payload");
            }
            FrameKind::WsClose(code) => {
                assert!(!v.tcp, "WsClose on TCP");
                assert!(v.close_push_sent, "WsClose before the Close push");
                assert!(
                    matches!(code, 1000 | 1001 | 1002 | 1008 | 1011),
                    "close code {code}"
                );
                assert!(core::str::from_utf8(bytes).is_ok() && bytes.len() <= 64);
                v.ws_close_sent = true;
            }
            FrameKind::Datagram => panic!("datagram from the LongPort server"),
        }
    }

    fn on_event(&mut self, e: ServerEvent<u8>) {
        if tether_fuzz::trace_enabled() {
            eprintln!("    event {e:?}");
        }
        assert!(!self.shutdown_reported, "{e:?} after ShutdownComplete");
        match e {
            ServerEvent::Connected { peer, .. } => {
                let v = &mut self.conns[usize::from(peer)];
                // (the transport may be reported gone after the accept while events were held)
                assert!(v.open, "{e:?} for a connection that is not open");
                assert!(!v.announced, "second Connected for {peer}");
                v.announced = true;
            }
            ServerEvent::Closed { peer, cause } => {
                let v = &mut self.conns[usize::from(peer)];
                assert!(v.open, "Closed for forgotten connection {peer} ({cause:?})");
                if matches!(
                    cause,
                    CloseCause::TransportClosed | CloseCause::WsClosed { .. }
                ) {
                    assert!(v.gone, "{cause:?} without the caller reporting it");
                }
                if !v.gone {
                    // a close the machine started: every frame of it went out first
                    assert!(v.close_push_sent, "Closed before the Close push went out");
                    if !v.tcp {
                        assert!(v.ws_close_sent, "Closed before the WebSocket close frame");
                    }
                }
                assert_eq!(self.s.state(peer), None, "Closed, yet still known");
                *v = ConnView::default();
            }
            ServerEvent::HeartbeatRtt { peer, rtt } => {
                let v = &self.conns[usize::from(peer)];
                assert!(v.open, "{e:?} for a connection that is not open");
                assert!(rtt <= Duration::from_secs(3_600 * 24 * 60), "{e:?}");
            }
            ServerEvent::ShutdownComplete => {
                assert!(self.shutdown, "ShutdownComplete without shutdown");
                assert!(self.conns.iter().all(|v| !v.open), "connections left");
                self.shutdown_reported = true;
            }
            other => panic!("unknown event {other:?}"),
        }
    }

    fn drain_once(&mut self) -> usize {
        let tiny = self.tiny.take();
        let mut frames: Vec<(u8, FrameKind, Vec<u8>)> = Vec::new();
        let n = drain_transmits(&mut self.s, self.now, BUF, tiny, MAX_FRAMES, |_, t, b| {
            assert_eq!(t.len, b.len());
            frames.push((t.to, t.kind, b.to_vec()));
        });
        for (to, kind, b) in frames {
            if tether_fuzz::trace_enabled() {
                eprintln!("    frame to {to} {kind:?} {:02x?}", &b[..b.len().min(24)]);
            }
            self.check_frame(to, kind, &b);
        }
        let mut events = Vec::new();
        let m = drain_events(&mut self.s, MAX_EVENTS, |_, e| events.push(e));
        for e in events {
            self.on_event(e);
        }
        n + m
    }

    fn drain(&mut self) {
        for _ in 0..4 {
            if self.drain_once() == 0 {
                break;
            }
        }
    }

    fn after_op(&mut self) {
        if !tether_fuzz::settle(self) {
            return;
        }
        let mut open = 0;
        for (c, v) in self.conns.iter().enumerate() {
            let state = self.s.state(c as u8);
            assert_eq!(
                state.is_some(),
                v.open,
                "conn {c}: machine state {state:?}, view {v:?}"
            );
            if v.open {
                open += 1;
                assert!(
                    !matches!(state, Some(ServerState::Closing | ServerState::Gone)),
                    "conn {c} still closing after a full drain (state {state:?})"
                );
            }
        }
        assert_eq!(self.s.connections(), open);
        assert!(self.s.connections() <= PEERS);
        assert!(self.s.sessions() <= SESSIONS);
        assert!(self.s.unauthenticated() <= self.s.config().max_unauthenticated().min(PEERS));
        // per source, and per account
        for k in 1..4u8 {
            let src = Source::from_bytes([k; 16]);
            let held = self
                .conns
                .iter()
                .enumerate()
                .filter(|(c, v)| {
                    v.open
                        && v.source == src
                        && matches!(
                            self.s.state(*c as u8),
                            Some(
                                ServerState::AwaitHandshake
                                    | ServerState::AwaitAuth
                                    | ServerState::AuthPending
                            )
                        )
                })
                .count();
            assert!(held <= self.limits.per_source, "source {k} holds {held}");
        }
        if let Some(q) = self.limits.quota {
            for a in 0..3 {
                assert!(
                    self.s.online(AccountId(a)) <= q as usize,
                    "account {a} over quota"
                );
            }
        }
        if self.shutdown {
            assert_eq!(self.s.connections(), 0, "connections left after shutdown");
            assert!(
                self.shutdown_reported,
                "no ShutdownComplete after a full drain"
            );
        }
        tether_fuzz::check_timeout(&self.s, self.now, "longport server");
    }

    fn check_app(&mut self, conn: u8, app: &App<'_>) {
        let state = self.s.state(conn);
        match app {
            App::Auth { .. } => assert_eq!(state, Some(ServerState::AuthPending)),
            App::Reconnect {
                session_id,
                expires,
                ..
            } => {
                assert_eq!(state, Some(ServerState::AuthPending));
                assert_eq!(
                    self.s.session_expires(session_id),
                    Some(*expires),
                    "reconnect to an unknown session"
                );
            }
            App::Request { cmd, timeout, .. } => {
                assert_eq!(state, Some(ServerState::Authenticated));
                assert!(
                    *cmd > CMD_RECONNECT,
                    "control request {cmd} handed to the app"
                );
                assert!(!timeout.is_zero() && *timeout <= MAX_REQUEST_TIMEOUT);
            }
            App::Response { cmd, .. } | App::Push { cmd, .. } => {
                assert_eq!(state, Some(ServerState::Authenticated));
                assert!(*cmd > CMD_RECONNECT);
            }
            App::HeartbeatEcho { .. } => assert_eq!(state, Some(ServerState::Authenticated)),
            App::CompressedAuth { body, .. } | App::CompressedReconnect { body, .. } => {
                assert_eq!(state, Some(ServerState::AuthPending));
                let plain = tether_fuzz::lp_gunzip_login(body);
                if let App::CompressedAuth { .. } = app {
                    AuthRequest::decode(&plain).expect("a checked AuthRequest");
                } else {
                    let req = ReconnectRequest::decode(&plain).expect("a checked Reconnect");
                    assert!(self.s.session_expires(req.session_id).is_some());
                }
            }
            other => panic!("unknown app value {other:?}"),
        }
    }

    fn input(&mut self, now: Instant, conn: u8, bytes: &[u8]) {
        let c = usize::from(conn);
        if !self.conns[c].tcp || !self.conns[c].open {
            match self.s.handle_input(now, conn, bytes) {
                Ok(r) => {
                    assert!(self.conns[c].open);
                    assert_eq!(
                        r.bytes_consumed(),
                        bytes.len(),
                        "WebSocket messages are consumed whole"
                    );
                    if let Some(app) = r.app() {
                        self.check_app(conn, app);
                    }
                }
                Err(Error::UnknownPeer) => assert!(!self.conns[c].open),
                Err(Error::AuthPending) => {
                    assert_eq!(self.s.state(conn), Some(ServerState::AuthPending));
                }
                Err(e) => self.refused(conn, e),
            }
            return;
        }
        self.conns[c].rx.extend_from_slice(bytes);
        for _ in 0..256 {
            let rx = std::mem::take(&mut self.conns[c].rx);
            if rx.is_empty() {
                return;
            }
            match self.s.handle_input(now, conn, &rx) {
                Err(Error::AuthPending) => {
                    assert_eq!(self.s.state(conn), Some(ServerState::AuthPending));
                    self.conns[c].rx = rx;
                    return;
                }
                Err(e) => {
                    self.refused(conn, e);
                    self.conns[c].rx = rx;
                    return;
                }
                Ok(r) => {
                    if let Some(app) = r.app() {
                        self.check_app(conn, app);
                    }
                    let used = r.bytes_consumed();
                    assert!(used <= rx.len());
                    if used == 0 {
                        if let Some(n) = r.needed() {
                            assert!(n > rx.len(), "needs {n} with {} buffered", rx.len());
                        }
                        self.conns[c].rx = rx;
                        return;
                    }
                    self.conns[c].rx = rx[used..].to_vec();
                }
            }
            if self.hold == 0 {
                self.drain();
            }
            if !self.conns[c].open {
                return;
            }
        }
    }

    /// `handle_input` refused a packet of an authenticated connection: at the pending-request cap
    /// or with the rate-limit refusals full (only while drains are held)
    fn refused(&self, conn: u8, e: Error) {
        assert_eq!(
            self.s.state(conn),
            Some(ServerState::Authenticated),
            "{e:?}"
        );
        match e {
            Error::TooManyInFlight => {
                assert_eq!(self.s.pending_requests(conn), Some(self.limits.pending));
            }
            Error::QueueFull => {
                assert!(self.limits.rate || self.limits.cmd_rate);
                assert!(self.s.has_pending_output(conn));
            }
            e => panic!("open connection {conn}: {e:?}"),
        }
    }

    /// Check what `accept_*` said against the quota
    fn admitted(
        &mut self,
        c: u8,
        state: Option<ServerState>,
        res: Result<Admission, Error>,
        id: &SessionId,
        account: Option<AccountId>,
    ) {
        match res {
            Ok(Admission::Granted { limit, online }) => {
                assert_eq!(state, Some(ServerState::AuthPending));
                let text = id.as_str().to_string();
                if !self.sessions.contains(&text) {
                    self.sessions.push(text);
                }
                let account = account.or(self.s.account(c));
                self.conns[usize::from(c)].account = account;
                if let (Some(q), Some(a)) = (self.limits.quota, account) {
                    assert_eq!(limit, q);
                    assert!(online >= 1 && online <= q);
                    assert_eq!(self.s.online(a), online as usize);
                }
            }
            Ok(Admission::OverQuota { limit, online }) => {
                assert_eq!(state, Some(ServerState::AuthPending));
                assert_eq!(Some(limit), self.limits.quota, "OverQuota without a quota");
                assert!(online >= limit);
                assert_eq!(self.s.state(c), Some(ServerState::Closing));
            }
            Ok(other) => panic!("accept: {other:?}"),
            Err(Error::UnknownPeer) => assert_eq!(state, None),
            Err(Error::Closed) => {
                assert!(matches!(
                    state,
                    Some(ServerState::Closing | ServerState::Gone)
                ))
            }
            // an Auth is pending but this is accept_reconnect (or the reverse), or nothing is
            Err(Error::NotPending) => assert!(matches!(
                state,
                Some(
                    ServerState::AwaitHandshake
                        | ServerState::AwaitAuth
                        | ServerState::Authenticated
                        | ServerState::AuthPending
                )
            )),
            Err(e) => panic!("accept: {e:?}"),
        }
    }

    fn session(&self, r: &mut OpReader<'_>) -> String {
        match r.u8() % 5 {
            0 | 1 => {
                let i = usize::from(r.u8());
                if self.sessions.is_empty() {
                    "s1".into()
                } else {
                    self.sessions[i % self.sessions.len()].clone()
                }
            }
            2 => format!("s{}", r.u8() % 5),
            3 => "x".repeat(70),
            _ => r.text(),
        }
    }
}

fn expires(r: &mut OpReader<'_>) -> i64 {
    match r.u8() % 6 {
        0 => 0,
        1 => -1,
        2 => 1_700_086_400_000,
        3 => 10_000,
        4 => i64::MAX,
        _ => i64::from_le_bytes([
            r.u8(),
            r.u8(),
            r.u8(),
            r.u8(),
            r.u8(),
            r.u8(),
            r.u8(),
            r.u8(),
        ]),
    }
}

/// The session id the application grants for `text`: a session id the harness granted before
/// (hex text) is granted again (duplicates), anything else becomes 16 bytes derived from it
fn session_id(text: &str) -> SessionId {
    if text.len() == 32 && text.is_ascii() {
        if let Ok(b) = (0..16)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
        {
            return SessionId::from_random_bytes(&b).expect("16 bytes");
        }
    }
    let mut b = [0u8; 16];
    for (i, x) in text.bytes().enumerate() {
        b[i % 16] = b[i % 16].wrapping_mul(31).wrapping_add(x);
    }
    SessionId::from_random(b)
}

fn conn(r: &mut OpReader<'_>) -> u8 {
    r.u8() % IDS as u8
}

fuzz_target!(|data: &[u8]| {
    let mut r = OpReader::new(data);
    // (the setters clamp: a zero max_unauthenticated becomes 1, a zero default request timeout
    // 1 ms and 65 s becomes 60 s; the ping interval is at least 1 s)
    let mut config = ServerConfig::new()
        .with_auth_timeout(interval(r.u8()))
        .with_heartbeat_timeout(interval(r.u8()))
        .with_ws_ping_interval(interval(r.u8()))
        .with_max_unauthenticated(match r.u8() % 6 {
            5 => usize::MAX,
            n => usize::from(n),
        });
    let flags = r.u8();
    if flags & 1 != 0 {
        config = config.with_max_body(64);
    }
    config = config.with_default_request_timeout(Duration::from_millis(match r.u8() % 3 {
        0 => 30_000,
        1 => 0,
        _ => 65_000,
    }));
    // the gateway's limits (this byte was reserved: old seeds have them off)
    let extra = r.u8();
    let mut limits = Limits {
        quota: match extra & 3 {
            1 => Some(1),
            2 => Some(2),
            _ => None,
        },
        rate: extra & 4 != 0,
        cmd_rate: extra & 8 != 0,
        tcp_heartbeats: extra & 16 != 0,
        pending: if extra & 32 != 0 { 2 } else { 32 },
        per_source: if extra & 64 != 0 { 1 } else { 4 },
    };
    config = config
        .with_account_quota(limits.quota)
        .with_max_pending_requests(limits.pending)
        .with_max_unauthenticated_per_source(limits.per_source);
    if limits.rate {
        config = config.with_rate_limit(Some(RateLimit::per_second(2, 3)));
    }
    if limits.cmd_rate {
        config = config.with_command_rate_limit(6, Some(RateLimit::per_second(1, 1)));
    }
    if limits.tcp_heartbeats {
        config = config.with_tcp_heartbeat_interval(Some(Duration::from_secs(2)));
    }
    if extra & 128 != 0 {
        config = config.with_max_auth_body(64);
    }
    limits.per_source = config.max_unauthenticated_per_source();
    let mut h = H {
        hold: 0,
        was_held: false,
        s: S::with_capacities(config),
        now: Instant::from_millis(1_000),
        tiny: None,
        conns: vec![ConnView::default(); IDS],
        sessions: Vec::new(),
        shutdown: false,
        shutdown_reported: false,
        limits,
    };
    if flags & 2 != 0 {
        // Unix ms 1.7e12 at the caller's epoch
        h.s.set_wall_clock(Instant::ZERO, 1_700_000_000_000);
    }
    tether_fuzz::start(&mut h);
    let mut ops = 0;
    while let Some(op) = tether_fuzz::next_op(&mut r, &mut ops, 31, h.now) {
        if op & 0x80 != 0 {
            h.tiny = Some(usize::from((op >> 5) & 3) * 5);
        }
        let now = h.now;
        match op & 31 {
            0..=2 => {
                let d = step(&mut r, op & 31);
                tether_fuzz::advance(&mut h, d);
                continue;
            }
            3 => {
                let c = conn(&mut r);
                let bytes = r.blob().to_vec();
                h.input(now, c, &bytes);
            }
            4 => {
                let c = conn(&mut r);
                let hs = if r.u8() & 1 == 0 {
                    Handshake::OPENAPI.to_bytes()
                } else {
                    [r.u8(), r.u8()]
                };
                h.input(now, c, &hs);
            }
            5 => {
                // Auth request
                let c = conn(&mut r);
                let rid = u32::from(r.u16());
                let token = r.text();
                let pairs: &[(&str, &str)] = if r.u8() & 1 == 0 {
                    &[]
                } else {
                    &[("accept-language", "en")]
                };
                let gz = r.u8() & 3 == 3;
                let body = tether_fuzz::lp_maybe_gzip(
                    gz,
                    tether_fuzz::lp_encode(&AuthRequest::new(&token, Metadata::from_pairs(pairs))),
                );
                h.input(
                    now,
                    c,
                    &tether_fuzz::lp_emit(
                        &Packet::request(CMD_AUTH, RequestId(rid), 5_000, &body).with_gzip(gz),
                    ),
                );
            }
            6 => {
                // Reconnect request
                let c = conn(&mut r);
                let rid = u32::from(r.u16());
                let sid = h.session(&mut r);
                let body = tether_fuzz::lp_encode(&ReconnectRequest::new(&sid, Metadata::EMPTY));
                h.input(
                    now,
                    c,
                    &tether_fuzz::lp_emit(&Packet::request(
                        CMD_RECONNECT,
                        RequestId(rid),
                        5_000,
                        &body,
                    )),
                );
            }
            7 => {
                // heartbeat request
                let c = conn(&mut r);
                let rid = u32::from(r.u16());
                let sel = r.u8();
                let body = match sel % 3 {
                    0 => {
                        tether_fuzz::lp_encode(&Heartbeat::new(1_700_000_000_000, Some(rid as i32)))
                    }
                    1 => vec![7u8; 100],
                    _ => r.blob().to_vec(),
                };
                let gz = sel & 4 != 0;
                let body = tether_fuzz::lp_maybe_gzip(gz, body);
                h.input(
                    now,
                    c,
                    &tether_fuzz::lp_emit(
                        &Packet::request(CMD_HEARTBEAT, RequestId(rid), 0, &body).with_gzip(gz),
                    ),
                );
            }
            8 => {
                // any request (business or control cmd), maybe signed
                let c = conn(&mut r);
                let cmd = r.u8();
                let rid = u32::from_le_bytes(r.array4());
                let timeout = r.u16();
                let signed = r.u8() & 1 != 0;
                let body = r.blob().to_vec();
                let sig = signed.then_some(Signature {
                    nonce: [1; 8],
                    signature: [0xAA; 16],
                });
                h.input(
                    now,
                    c,
                    &tether_fuzz::lp_emit(
                        &Packet::request(cmd, RequestId(rid), timeout, &body).with_signature(sig),
                    ),
                );
            }
            9 => {
                // response or push from the client
                let c = conn(&mut r);
                let cmd = r.u8();
                let rid = u32::from(r.u16());
                let body = r.blob().to_vec();
                let p = if cmd & 0x80 != 0 {
                    Packet::push(cmd & 0x7f, &body)
                } else {
                    Packet::response(cmd, RequestId(rid), Status::Success, &body)
                };
                h.input(now, c, &tether_fuzz::lp_emit(&p));
            }
            10 => {
                let c = conn(&mut r);
                let payload = r.blob().to_vec();
                let v = &mut h.conns[usize::from(c)];
                let live =
                    v.open && !v.gone && !v.tcp && h.s.state(c) != Some(ServerState::Closing);
                if live && payload.len() <= 125 {
                    v.last_ping = Some(payload.clone());
                }
                h.s.handle_frame(now, c, FrameKind::WsPing, &payload);
            }
            11 => {
                let c = conn(&mut r);
                let payload = r.blob().to_vec();
                h.s.handle_frame(now, c, FrameKind::WsPong, &payload);
            }
            12 => {
                let c = conn(&mut r);
                let code = r.u16();
                let v = &mut h.conns[usize::from(c)];
                if v.open && !v.tcp {
                    v.gone = true;
                }
                h.s.handle_frame(now, c, FrameKind::WsClose(code), &[]);
            }
            13 => {
                let c = conn(&mut r);
                let sel = r.u8();
                let tcp = sel & 1 == 0;
                let source = match (sel >> 1) & 3 {
                    0 => Source::UNKNOWN,
                    k => Source::from_bytes([k; 16]),
                };
                let transport = if tcp {
                    Transport::Tcp
                } else {
                    Transport::WebSocket
                };
                let open = h.conns[usize::from(c)].open;
                let connections = h.s.connections();
                match h.s.handle_connected(now, c, transport, source) {
                    Ok(()) => {
                        assert!(!open, "handle_connected accepted live id {c}");
                        assert!(!h.shutdown);
                        h.conns[usize::from(c)] = ConnView {
                            open: true,
                            tcp,
                            source,
                            ..ConnView::default()
                        };
                    }
                    Err(Error::AlreadyConnected) => assert!(open),
                    Err(Error::TableFull) => assert_eq!(connections, PEERS),
                    Err(Error::Closed) => assert!(h.shutdown),
                    Err(e) => panic!("handle_connected: {e:?}"),
                }
            }
            14 => {
                let c = conn(&mut r);
                let v = &mut h.conns[usize::from(c)];
                if v.open {
                    v.gone = true;
                    v.rx.clear();
                }
                h.s.handle_closed(now, c);
            }
            15 | 16 => {
                // accept auth / reconnect
                let c = conn(&mut r);
                let sid = h.session(&mut r);
                let id = session_id(&sid);
                let grant = Grant::new(id.clone(), expires(&mut r)).with_limit_online(10, 1);
                let state = h.s.state(c);
                let res = if op & 31 == 15 {
                    h.s.accept_auth(now, c, grant)
                } else {
                    h.s.accept_reconnect(now, c, grant)
                };
                h.admitted(c, state, res, &id, None);
            }
            17 | 18 => {
                let c = conn(&mut r);
                // a "rejection" with status 0 would read as a successful login with an empty
                // session on the client: the API refuses it with Error::SuccessStatus
                let st = Status::from(r.u8() % 10);
                let code = u64::from(r.u16());
                let msg = r.text();
                let state = h.s.state(c);
                let res = if op & 31 == 17 {
                    h.s.reject_auth(now, c, st, code, &msg)
                } else {
                    h.s.reject_reconnect(now, c, st, code, &msg)
                };
                if st.is_success() {
                    assert_eq!(res, Err(Error::SuccessStatus));
                } else if res.is_ok() {
                    assert_eq!(state, Some(ServerState::AuthPending));
                    h.conns[usize::from(c)].app_rejected = true;
                }
            }
            19 => {
                let c = conn(&mut r);
                let code = CloseCode::from_i32(i32::from(r.u8() as i8));
                let reason = r.text();
                let state = h.s.state(c);
                match h.s.close(now, c, code, &reason) {
                    Ok(()) => assert!(!matches!(
                        state,
                        None | Some(ServerState::Closing | ServerState::Gone)
                    )),
                    Err(Error::UnknownPeer) => assert_eq!(state, None),
                    Err(Error::Closed) => {
                        assert!(matches!(
                            state,
                            Some(ServerState::Closing | ServerState::Gone)
                        ))
                    }
                    Err(e) => panic!("close: {e:?}"),
                }
            }
            20 => {
                // (reads no op bytes, as before the reason existed: seeds keep their meaning)
                let res = h.s.shutdown(now, "server shutdown");
                assert_eq!(res.is_err(), h.shutdown, "shutdown twice: {res:?}");
                h.shutdown = true;
            }
            21 => {
                // respond / push / send a request (TCP)
                let c = conn(&mut r);
                let which = r.u8() % 3;
                let cmd = r.u8();
                let rid = u32::from(r.u16());
                let body = r.blob().to_vec();
                let mut out = vec![0u8; BUF];
                let state = h.s.state(c);
                let res = match which {
                    0 => h.s.respond(
                        now,
                        c,
                        cmd,
                        RequestId(rid),
                        Status::Success,
                        &body,
                        &mut out,
                    ),
                    1 => h.s.push(now, c, cmd, &body, &mut out),
                    _ => h.s.send(
                        now,
                        c,
                        &Packet::request(cmd, RequestId(rid), 0, &body),
                        &mut out,
                    ),
                };
                match res {
                    Ok(t) => {
                        assert_eq!(state, Some(ServerState::Authenticated));
                        assert_eq!(t.to, c);
                        let v = &h.conns[usize::from(c)];
                        assert!(v.open && !v.gone);
                        assert_eq!(
                            t.kind,
                            if v.tcp {
                                FrameKind::Stream
                            } else {
                                FrameKind::WsBinary
                            }
                        );
                        let (p, n) = Packet::parse(&out[..t.len], DEFAULT_MAX_BODY)
                            .expect("written packet parses");
                        assert_eq!(n, t.len);
                        assert_eq!(p.body, &body[..]);
                        if !v.tcp {
                            assert!(
                                !matches!(p.header.kind, Kind::Request { .. }),
                                "request to a WebSocket client"
                            );
                        }
                    }
                    Err(Error::UnknownPeer) => assert_eq!(state, None),
                    Err(Error::NotOpen) => assert!(matches!(
                        state,
                        Some(
                            ServerState::AwaitHandshake
                                | ServerState::AwaitAuth
                                | ServerState::AuthPending
                        )
                    )),
                    Err(Error::Closed) => {
                        assert!(matches!(
                            state,
                            Some(ServerState::Closing | ServerState::Gone)
                        ))
                    }
                    Err(Error::RequestOnWebSocket) => assert_eq!(which, 2),
                    Err(Error::QueueFull) => {}
                    Err(e) => panic!("send: {e:?}"),
                }
            }
            22 => {
                let sid = h.session(&mut r);
                let _ = h.s.revoke_session(&sid);
            }
            23 => {
                let ms = expires(&mut r);
                h.s.set_wall_clock(now, ms);
            }
            24 => {
                if h.hold == 0 && !h.was_held && is_spurious(&h.s, now) {
                    let before = h.s.poll_timeout();
                    h.s.handle_timeout(now);
                    assert_eq!(
                        h.s.poll_timeout(),
                        before,
                        "spurious handle_timeout moved the timer"
                    );
                    assert_eq!(h.drain_once(), 0, "spurious handle_timeout produced output");
                }
            }
            25 => {
                let back = Duration::from_millis(u64::from(r.u16()));
                let c = conn(&mut r);
                let bytes = r.blob().to_vec();
                // the caller's clock steps back: the machine shifts its timeline and reports
                // deadlines in the stepped clock, which the target then continues from
                let at = now - back;
                h.now = at;
                h.input(at, c, &bytes);
            }
            26 => {
                // skip the drains of the next 1..=4 ops
                h.hold = r.u8() % 4 + 1;
                continue;
            }
            27 => {
                // accept with an account (the quota counts it)
                let c = conn(&mut r);
                let sel = r.u8();
                let account = AccountId(u64::from(sel % 3));
                let sid = h.session(&mut r);
                let id = session_id(&sid);
                let grant = Grant::new(id.clone(), expires(&mut r)).with_account(account);
                let state = h.s.state(c);
                let res = if sel & 0x80 == 0 {
                    h.s.accept_auth(now, c, grant)
                } else {
                    h.s.accept_reconnect(now, c, grant)
                };
                h.admitted(c, state, res, &id, Some(account));
            }
            28 => {
                // a gzip'd Reconnect request
                let c = conn(&mut r);
                let rid = u32::from(r.u16());
                let sid = h.session(&mut r);
                let body = tether_fuzz::lp_maybe_gzip(
                    true,
                    tether_fuzz::lp_encode(&ReconnectRequest::new(&sid, Metadata::EMPTY)),
                );
                h.input(
                    now,
                    c,
                    &tether_fuzz::lp_emit(
                        &Packet::request(CMD_RECONNECT, RequestId(rid), 5_000, &body)
                            .with_gzip(true),
                    ),
                );
            }
            29 => {
                // a burst of business requests (one read on TCP, one message each on WebSocket)
                let c = conn(&mut r);
                let cmd = if r.u8() & 1 == 0 { 6 } else { 11 };
                let n = r.u8() % 8 + 1;
                let rid = u32::from(r.u16());
                let reqs: Vec<Vec<u8>> = (0..u32::from(n))
                    .map(|k| {
                        tether_fuzz::lp_emit(&Packet::request(cmd, RequestId(rid + k), 0, b"x"))
                    })
                    .collect();
                if h.conns[usize::from(c)].tcp {
                    h.input(now, c, &reqs.concat());
                } else {
                    for q in reqs {
                        h.input(now, c, &q);
                    }
                }
            }
            30 => {
                // the client answers the server's last heartbeat (or a wrong id)
                let c = conn(&mut r);
                let wrong = r.u8() & 1 != 0;
                let v = &h.conns[usize::from(c)];
                let (id, body) = v.server_hb.clone().unwrap_or((7, vec![8, 1]));
                let id = if wrong { id.wrapping_add(1) } else { id };
                if v.tcp {
                    let resp = tether_fuzz::lp_emit(&Packet::response(
                        CMD_HEARTBEAT,
                        RequestId(id),
                        Status::Success,
                        &body,
                    ));
                    h.input(now, c, &resp);
                } else {
                    let mut payload = body;
                    if wrong {
                        payload.push(0);
                    }
                    h.s.handle_frame(now, c, FrameKind::WsPong, &payload);
                }
            }
            31 => {
                // a header announcing a large body (an Auth before authentication, a business
                // request after), nothing of the body
                let c = conn(&mut r);
                let len = u32::from(r.u16()) * 64;
                let cmd = if h.s.state(c) == Some(ServerState::Authenticated) {
                    6
                } else {
                    CMD_AUTH
                };
                let mut header = vec![0x01, cmd, 0, 0, 0, 1, 0, 0];
                header.extend_from_slice(&len.to_be_bytes()[1..]);
                h.input(now, c, &header);
            }
            _ => {}
        }
        h.after_op();
    }
});
