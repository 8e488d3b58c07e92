//! The one contract, on the LongPort machines: the run loop through exactly `tether_net::drain`
//! with commands issued while handling events, a caller clock stepping back one hour on either
//! side, clamped configurations and bounded `poll_timeout`, and the backpressure rule

use tether_net::longport::control::{AuthRequest, Body, Metadata};
use tether_net::longport::wire::{Kind, Packet};
use tether_net::longport::{
    Client, ClientConfig, ClientEvent, ClientState, CloseCause, CloseCode, Credentials, Error,
    Grant, LoginKind, RequestId, Server, ServerApp, ServerConfig, ServerEvent, ServerState,
    SessionGrant, SessionId, Source, Status, Transport,
};
use tether_net::time::MAX_DELAY;
use tether_net::{drain, Duration, FrameKind, Instant};

type Srv = Server<u32, 4, 8>;

const PEER: u32 = 7;
const FAR: i64 = 4_000_000_000_000;

/// An Auth request (id 1, token "t") as the client would send it
fn auth_request() -> Vec<u8> {
    let a = AuthRequest::new("t", Metadata::EMPTY);
    let mut body = vec![0u8; a.encoded_len()];
    a.encode(&mut body).unwrap();
    let p = Packet::request(2, RequestId(1), 0, &body);
    let mut out = vec![0u8; p.buffer_len()];
    p.emit(&mut out).unwrap();
    out
}

/// The status-0 answer to `login` (a request written by the client) granting session "s1"
fn login_response(login: &[u8]) -> Vec<u8> {
    let (p, _) = Packet::parse(login, 1 << 20).unwrap();
    let g = SessionGrant {
        session_id: "s1",
        expires: FAR,
        limit: 0,
        online: 0,
    };
    let mut body = vec![0u8; g.encoded_len()];
    g.encode(&mut body).unwrap();
    let r = Packet::response(
        2,
        p.header.kind.request_id().unwrap(),
        Status::Success,
        &body,
    );
    let mut out = vec![0u8; r.buffer_len()];
    r.emit(&mut out).unwrap();
    out
}

/// Session id number `n` (deterministic bytes: a real server draws them from the OS random
/// source)
fn session(n: u8) -> SessionId {
    SessionId::from_random([n; 16])
}

fn grant(n: u8) -> Grant {
    Grant::new(session(n), FAR)
}

// ---------------------------------------------------------------------------------------------
// The run loop through exactly `tether_net::drain`
// ---------------------------------------------------------------------------------------------

/// Client and server joined by in-memory TCP byte pipes; the "application" answers logins and
/// closes the connection as soon as it is up, from inside the event handlers
struct Loop {
    client: Client,
    server: Srv,
    now: Instant,
    c2s: Vec<u8>,
    s2c: Vec<u8>,
    transport_open: bool,
    /// tokens the server accepts
    valid: Vec<&'static str>,
    /// tokens handed out on `TokenNeeded`
    fresh: Vec<&'static str>,
    client_events: Vec<ClientEvent>,
    server_events: Vec<ServerEvent<u32>>,
    /// the server application closes a peer from its `Connected` handler
    close_on_connected: bool,
}

impl Loop {
    fn new() -> Self {
        Loop {
            client: Client::new(ClientConfig::tcp()),
            server: Srv::with_capacities(ServerConfig::new()),
            now: Instant::from_secs(100),
            c2s: Vec::new(),
            s2c: Vec::new(),
            transport_open: false,
            valid: Vec::new(),
            fresh: Vec::new(),
            client_events: Vec::new(),
            server_events: Vec::new(),
            close_on_connected: false,
        }
    }

    /// Step 2 of the run loop for both machines, each through `tether_net::drain`
    fn drain(&mut self) {
        let mut buf = [0u8; 1024];
        let now = self.now;
        let Loop {
            client,
            server,
            c2s,
            s2c,
            transport_open,
            fresh,
            client_events,
            server_events,
            close_on_connected,
            ..
        } = self;
        let mut reset = false;
        drain(
            client,
            now,
            &mut buf,
            |t, bytes| {
                assert_eq!(t.kind, FrameKind::Stream);
                c2s.extend_from_slice(bytes);
                Ok::<(), ()>(())
            },
            |client, e| {
                client_events.push(e);
                match e {
                    // open the transport at once (both ends learn of it) and say so
                    ClientEvent::ConnectTransport { .. } => {
                        server
                            .handle_connected(now, PEER, Transport::Tcp, Source::UNKNOWN)
                            .unwrap();
                        *transport_open = true;
                        client.handle_connected(now).unwrap();
                    }
                    ClientEvent::TokenNeeded => {
                        if let Some(t) = fresh.pop() {
                            client.provide_token(now, t).unwrap();
                        }
                    }
                    ClientEvent::Disconnected { .. } if *transport_open => {
                        *transport_open = false;
                        reset = true;
                        server.handle_closed(now, PEER);
                    }
                    _ => {}
                }
            },
        )
        .unwrap();
        if reset {
            // the transport is closed: what was in flight on it is gone
            c2s.clear();
            s2c.clear();
        }
        drain(
            server,
            now,
            &mut buf,
            |t, bytes| {
                assert_eq!((t.to, t.kind), (PEER, FrameKind::Stream));
                s2c.extend_from_slice(bytes);
                Ok::<(), ()>(())
            },
            |server, e| {
                server_events.push(e);
                if let ServerEvent::Connected { peer, .. } = e {
                    if *close_on_connected {
                        server
                            .close(now, peer, CloseCode::ServerError, "maintenance")
                            .unwrap();
                    }
                }
            },
        )
        .unwrap();
    }

    /// Nothing is left queued: it is safe to sleep until `poll_timeout`
    fn assert_quiet(&mut self) {
        let mut buf = [0u8; 1024];
        assert_eq!(self.client.poll_transmit(self.now, &mut buf), Ok(None));
        assert_eq!(self.client.poll_event(), None);
        assert_eq!(self.server.poll_transmit(self.now, &mut buf), Ok(None));
        assert_eq!(self.server.poll_event(), None);
    }

    /// Step 1 for the bytes in flight: feed each side what the other sent (whole packets)
    fn deliver(&mut self) -> usize {
        let mut moved = 0;
        while !self.c2s.is_empty() {
            let r = match self.server.handle_input(self.now, PEER, &self.c2s) {
                Ok(r) => r,
                Err(Error::AuthPending) => break,
                Err(e) => panic!("server input: {e}"),
            };
            match r.app() {
                Some(ServerApp::Auth { token, .. }) => {
                    if let Some(i) = self.valid.iter().position(|v| v == token) {
                        self.valid.remove(i);
                        self.server.accept_auth(self.now, PEER, grant(1)).unwrap();
                    } else {
                        self.server
                            .reject_auth(self.now, PEER, Status::Unauthenticated, 401, "no")
                            .unwrap();
                    }
                }
                Some(other) => panic!("unexpected {other:?}"),
                None => {}
            }
            let n = r.bytes_consumed();
            if n == 0 {
                break;
            }
            moved += n;
            self.c2s.drain(..n);
        }
        while !self.s2c.is_empty() {
            let r = self.client.handle_input(self.now, (), &self.s2c).unwrap();
            let n = r.bytes_consumed();
            if n == 0 {
                break;
            }
            moved += n;
            self.s2c.drain(..n);
        }
        moved
    }

    /// The run loop until `done`: one input, `drain`, check quiet, then "sleep" to the next
    /// deadline when nothing is in flight
    fn run(&mut self, rounds: usize, done: impl Fn(&Loop) -> bool) {
        for _ in 0..rounds {
            if done(self) {
                return;
            }
            if self.deliver() == 0 {
                let next = [self.client.poll_timeout(), self.server.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min()
                    .expect("a timer runs");
                self.now = self.now.max(next);
                self.client.handle_timeout(self.now);
                self.server.handle_timeout(self.now);
            }
            self.drain();
            self.assert_quiet();
        }
        panic!(
            "not done after {rounds} rounds: {:?} / {:?}",
            self.client_events, self.server_events
        );
    }
}

/// `handle_connected` on `ConnectTransport` and `provide_token` on `TokenNeeded` are commands
/// given while draining; their frames go out in the same drain, before the loop sleeps. (With
/// "drain the transmits, then drain the events" the login would wait for the next input.)
#[test]
fn client_commands_issued_while_draining_go_out_before_sleeping() {
    let mut l = Loop::new();
    l.valid.push("fresh");
    l.fresh.push("fresh");
    let now = l.now;
    l.client.connect(now, Credentials::new("stale")).unwrap();
    // one input (the command), one drain: ConnectTransport → handle_connected → the login
    l.drain();
    assert!(l.transport_open);
    assert_eq!(
        &l.c2s[..2],
        &[0x11, 0x09],
        "handshake and Auth sent in the same drain"
    );
    let (p, n) = Packet::parse(&l.c2s[2..], 1 << 20).unwrap();
    assert_eq!((p.header.cmd, n + 2), (2, l.c2s.len()));
    l.assert_quiet();
    // the server refuses the stale token: TokenNeeded → provide_token while draining, and the
    // retry after the back-off logs in with it
    l.run(50, |l| l.client.is_connected());
    assert!(l.client_events.contains(&ClientEvent::TokenNeeded));
    assert!(l.client_events.contains(&ClientEvent::LoginFailed {
        kind: LoginKind::Auth,
        status: Status::Unauthenticated,
        code: Some(401)
    }));
    assert_eq!(
        l.client_events
            .iter()
            .filter(|e| matches!(e, ClientEvent::ConnectTransport { .. }))
            .count(),
        2
    );
    assert_eq!(l.client.session_id(), Some(session(1).as_str()));
}

/// `close(peer)` given while handling `Connected`: the Close push goes out and `Closed` (close
/// the transport now) comes in the same drain
#[test]
fn server_close_issued_while_draining_goes_out_before_sleeping() {
    let mut l = Loop::new();
    l.valid.push("tok");
    l.close_on_connected = true;
    let now = l.now;
    l.client.connect(now, Credentials::new("tok")).unwrap();
    l.drain();
    assert!(l.deliver() > 0, "the login reached the server");
    // one drain: the AuthResponse, then Connected → close → Close push → Closed
    l.drain();
    assert_eq!(
        l.server_events,
        [
            ServerEvent::Connected {
                peer: PEER,
                via: LoginKind::Auth,
                expires: FAR
            },
            ServerEvent::Closed {
                peer: PEER,
                cause: CloseCause::Local
            }
        ]
    );
    let (resp, n) = Packet::parse(&l.s2c, 1 << 20).unwrap();
    assert_eq!(resp.header.cmd, 2, "the AuthResponse first");
    let (close, m) = Packet::parse(&l.s2c[n..], 1 << 20).unwrap();
    assert_eq!((close.header.kind, close.header.cmd), (Kind::Push, 0));
    assert_eq!(n + m, l.s2c.len());
    assert_eq!(
        l.server.state(PEER),
        None,
        "forgotten: close the transport now"
    );
    l.assert_quiet();
}

// ---------------------------------------------------------------------------------------------
// The caller's clock steps back one hour
// ---------------------------------------------------------------------------------------------

const HOUR: Duration = Duration::from_secs(3600);
/// Real time where both runs start (large enough to step back an hour)
const START: Instant = Instant::from_secs(10 * 3600);

/// A client and a server with their own caller clocks, joined by in-memory pipes (TCP bytes or
/// WebSocket frames) with no delay; one of the clocks steps back one hour at `step_at`
struct Clocks {
    client: Client,
    server: Srv,
    /// real time
    t: Instant,
    /// the real instant of the step; the machines see both clocks at that instant (first the
    /// old one, then the stepped one), so no real time passes unseen across the step
    step_at: Instant,
    stepped: bool,
    client_steps: bool,
    to_server: Vec<(FrameKind, Vec<u8>)>,
    to_client: Vec<(FrameKind, Vec<u8>)>,
    client_events: Vec<(Instant, ClientEvent)>,
    server_events: Vec<(Instant, ServerEvent<u32>)>,
    /// real times of the client's heartbeats and of the server's pings
    heartbeats: Vec<Instant>,
    pings: Vec<Instant>,
}

impl Clocks {
    fn client_now(&self) -> Instant {
        self.caller_now(self.client_steps)
    }

    fn server_now(&self) -> Instant {
        self.caller_now(!self.client_steps)
    }

    fn caller_now(&self, steps: bool) -> Instant {
        if steps && self.stepped {
            self.t - HOUR
        } else {
            self.t
        }
    }

    /// A deadline in a caller's clock, as real time
    fn real(&self, deadline: Instant, steps: bool) -> Instant {
        if steps && self.stepped {
            deadline + HOUR
        } else {
            deadline
        }
    }

    fn pump(&mut self) {
        loop {
            let (cn, sn) = (self.client_now(), self.server_now());
            let mut buf = [0u8; 512];
            let (tx, hb, ev) = (
                &mut self.to_server,
                &mut self.heartbeats,
                &mut self.client_events,
            );
            let t = self.t;
            drain(
                &mut self.client,
                cn,
                &mut buf,
                |x, b| {
                    if x.kind == FrameKind::WsPing
                        || (x.kind == FrameKind::Stream && b.get(1) == Some(&1))
                    {
                        hb.push(t);
                    }
                    tx.push((x.kind, b.to_vec()));
                    Ok::<(), ()>(())
                },
                |_, e| ev.push((t, e)),
            )
            .unwrap();
            let (tx, pings, ev) = (
                &mut self.to_client,
                &mut self.pings,
                &mut self.server_events,
            );
            drain(
                &mut self.server,
                sn,
                &mut buf,
                |x, b| {
                    if x.kind == FrameKind::WsPing {
                        pings.push(t);
                    }
                    tx.push((x.kind, b.to_vec()));
                    Ok::<(), ()>(())
                },
                |_, e| ev.push((t, e)),
            )
            .unwrap();
            if self.to_server.is_empty() && self.to_client.is_empty() {
                return;
            }
            for (kind, bytes) in std::mem::take(&mut self.to_server) {
                match kind {
                    FrameKind::Stream | FrameKind::WsBinary => {
                        let mut rest = &bytes[..];
                        while !rest.is_empty() {
                            let r = self.server.handle_input(sn, PEER, rest).unwrap();
                            if let Some(ServerApp::Auth { .. }) = r.app() {
                                self.server.accept_auth(sn, PEER, grant(1)).unwrap();
                            }
                            rest = &rest[r.bytes_consumed()..];
                        }
                    }
                    k => self.server.handle_frame(sn, PEER, k, &bytes),
                }
            }
            for (kind, bytes) in std::mem::take(&mut self.to_client) {
                match kind {
                    FrameKind::Stream | FrameKind::WsBinary => {
                        let r = self.client.handle_input(cn, (), &bytes).unwrap();
                        assert_eq!(r.bytes_consumed(), bytes.len());
                    }
                    k => self.client.handle_frame(cn, (), k, &bytes),
                }
            }
        }
    }

    fn new(transport: Transport, client: ClientConfig, client_steps: bool) -> Self {
        let mut c = Clocks {
            client: Client::new(client),
            server: Srv::with_capacities(ServerConfig::new()),
            t: START,
            step_at: START + Duration::from_secs(90),
            stepped: false,
            client_steps,
            to_server: Vec::new(),
            to_client: Vec::new(),
            client_events: Vec::new(),
            server_events: Vec::new(),
            heartbeats: Vec::new(),
            pings: Vec::new(),
        };
        c.client.connect(START, Credentials::new("tok")).unwrap();
        c.server
            .handle_connected(START, PEER, transport, Source::UNKNOWN)
            .unwrap();
        c.client.handle_connected(START).unwrap();
        c.pump();
        assert!(c.client.is_connected());
        assert_eq!(c.server.state(PEER), Some(ServerState::Authenticated));
        c
    }

    /// Run real time up to `until`, jumping from deadline to deadline (in real time)
    fn run(&mut self, until: Instant) {
        while self.t < until {
            let steps = self.client_steps;
            let c = self.client.poll_timeout().map(|d| self.real(d, steps));
            let s = self.server.poll_timeout().map(|d| self.real(d, !steps));
            let mut next = [c, s].into_iter().flatten().min().unwrap_or(until);
            // the clock steps at `step_at`: stop there so the step happens while connected
            if self.t < self.step_at {
                next = next.min(self.step_at);
            }
            self.t = next.min(until).max(self.t);
            let (cn, sn) = (self.client_now(), self.server_now());
            // every caller deadline lies within MAX_DELAY of its latest now, and never at MAX
            for (d, now) in [
                (self.client.poll_timeout(), cn),
                (self.server.poll_timeout(), sn),
            ] {
                if let Some(d) = d {
                    assert!(d < Instant::MAX && d <= now + MAX_DELAY);
                }
            }
            self.client.handle_timeout(cn);
            self.server.handle_timeout(sn);
            self.pump();
            if self.t == self.step_at && !self.stepped {
                // the clock steps back now; the machines see it at once
                self.stepped = true;
                let (cn, sn) = (self.client_now(), self.server_now());
                self.client.handle_timeout(cn);
                self.server.handle_timeout(sn);
                self.pump();
            }
        }
    }
}

/// Run `c` (one side's clock steps back an hour at real 90 s) for 600 s of real time: the
/// stepping side's next deadline (real `next` s) moves into the stepped clock, its periodic
/// frames (heartbeats or pings) keep coming every `period` s of real time, and neither side
/// reports anything but the login
fn steps_back_an_hour_on_schedule(mut c: Clocks, next: u64, period: u64) {
    let stepping = |c: &Clocks| {
        if c.client_steps {
            c.client.poll_timeout()
        } else {
            c.server.poll_timeout()
        }
    };
    let next = START + Duration::from_secs(next);
    c.run(START + Duration::from_secs(89));
    assert_eq!(stepping(&c), Some(next), "before the step, in both clocks");
    c.run(START + Duration::from_secs(91));
    assert_eq!(
        stepping(&c),
        Some(next - HOUR),
        "the same deadline, in the stepped clock"
    );
    c.run(START + Duration::from_secs(600));
    let marks = if c.client_steps {
        &c.heartbeats
    } else {
        &c.pings
    };
    let want: Vec<Instant> = (1..=600 / period)
        .map(|k| START + Duration::from_secs(period * k))
        .collect();
    assert_eq!(*marks, want, "one every {period} s of real time");
    assert!(c.client.is_connected());
    assert_eq!(c.server.state(PEER), Some(ServerState::Authenticated));
    assert!(c.client_events.iter().all(|(_, e)| matches!(
        e,
        ClientEvent::HeartbeatRtt { .. }
            | ClientEvent::ConnectTransport { .. }
            | ClientEvent::Connected { .. }
    )));
    assert!(c.server_events.iter().all(|(_, e)| matches!(
        e,
        ServerEvent::Connected { .. } | ServerEvent::HeartbeatRtt { .. }
    )));
}

/// The client's caller clock steps back one hour while authenticated (TCP): its heartbeats go
/// on every 60 s of real time, `poll_timeout` is in the stepped clock, and the server, whose
/// clock did not step, never times the client out
#[test]
fn client_clock_stepping_back_an_hour_keeps_heartbeats_on_schedule() {
    let c = Clocks::new(Transport::Tcp, ClientConfig::tcp(), true);
    steps_back_an_hour_on_schedule(c, 120, 60);
}

/// The server's caller clock steps back one hour while a WebSocket client is authenticated: its
/// pings go on every 20 s of real time, and the client (which sends no heartbeats of its own and
/// relies on those pings, like the official Rust client) never times out
#[test]
fn server_clock_stepping_back_an_hour_keeps_pings_on_schedule() {
    let config = ClientConfig::websocket().with_heartbeat_interval(None);
    let c = Clocks::new(Transport::WebSocket, config, false);
    steps_back_an_hour_on_schedule(c, 100, 20);
}

// ---------------------------------------------------------------------------------------------
// Configurations are clamped; poll_timeout stays within MAX_DELAY of the latest now
// ---------------------------------------------------------------------------------------------

/// `config` with every interval, timeout and margin set to `d`
fn every_duration(config: ClientConfig, d: Duration) -> ClientConfig {
    config
        .with_connect_timeout(d)
        .with_auth_timeout(d)
        .with_heartbeat_interval(Some(d))
        .with_heartbeat_timeout(d)
        .with_request_timeout(d)
        .with_reconnect_backoff(d, d)
        .with_expiry_margin(d)
}

#[test]
fn client_config_setters_clamp_zero_and_huge_values() {
    let zero = every_duration(ClientConfig::tcp(), Duration::ZERO).with_first_request_id(0);
    let ms = Duration::from_millis(1);
    assert_eq!(zero.connect_timeout(), ms);
    assert_eq!(zero.auth_timeout(), ms);
    assert_eq!(zero.heartbeat_interval(), Some(Duration::from_secs(1)));
    assert_eq!(zero.heartbeat_timeout(), ms);
    assert_eq!(zero.request_timeout(), ms);
    assert_eq!((zero.reconnect_base(), zero.reconnect_max()), (ms, ms));
    assert_eq!(zero.expiry_margin(), Duration::ZERO);
    assert_eq!(zero.first_request_id(), 1);
    let huge = every_duration(ClientConfig::websocket(), Duration::MAX).with_max_body(usize::MAX);
    for d in [
        huge.connect_timeout(),
        huge.auth_timeout(),
        huge.heartbeat_interval().unwrap(),
        huge.heartbeat_timeout(),
        huge.request_timeout(),
        huge.reconnect_base(),
        huge.reconnect_max(),
        huge.expiry_margin(),
    ] {
        assert_eq!(d, MAX_DELAY);
    }
    assert_eq!(huge.max_body(), tether_net::longport::wire::MAX_BODY_LEN);
    assert_eq!(huge.transport(), Transport::WebSocket);
}

#[test]
fn client_config_keeps_its_delays_to_the_microsecond_and_debug_shows_durations() {
    // 12.345678999 s: the last 999 ns are dropped
    let c = every_duration(ClientConfig::tcp(), Duration::new(12, 345_678_999))
        .with_heartbeat_interval(None);
    let us = Duration::from_micros(12_345_678);
    for d in [
        c.connect_timeout(),
        c.auth_timeout(),
        c.heartbeat_timeout(),
        c.request_timeout(),
        c.reconnect_base(),
        c.reconnect_max(),
        c.expiry_margin(),
    ] {
        assert_eq!(d, us);
    }
    assert_eq!(c.heartbeat_interval(), None);
    let one_more = c.with_heartbeat_interval(Some(Duration::from_micros(1_000_001)));
    assert_eq!(
        one_more.heartbeat_interval(),
        Some(Duration::from_micros(1_000_001))
    );
    let text = format!("{c:?}");
    for part in [
        "ClientConfig { transport: Tcp, handshake: ",
        "connect_timeout: 12.345678s, auth_timeout: 12.345678s, heartbeat_interval: None, \
         heartbeat_timeout: 12.345678s, any_inbound_is_alive: true, request_timeout: 12.345678s, \
         reconnect_base: 12.345678s, reconnect_max: 12.345678s, max_reconnect_attempts: None, \
         jitter: None, expiry_margin: 12.345678s, relative_expiry_heuristic: false, \
         max_body: 1048576, first_request_id: 1, quota_policy: Stop, gzip_requests: None }",
    ] {
        assert!(text.contains(part), "{part} in {text}");
    }
    assert!(format!("{one_more:?}").contains("heartbeat_interval: Some(1.000001s)"));
}

#[test]
fn server_config_max_pending_requests_is_clamped_to_1_through_65535() {
    let with = |n| {
        ServerConfig::new()
            .with_max_pending_requests(n)
            .max_pending_requests()
    };
    assert_eq!(with(0), 1);
    assert_eq!(with(1), 1);
    assert_eq!(with(32), 32);
    assert_eq!(with(65_535), 65_535);
    // not reduced modulo 65,536 (70,000 would be 4,464)
    assert_eq!(with(70_000), 65_535);
    assert_eq!(with(usize::MAX), 65_535);
}

#[test]
fn server_config_setters_clamp_zero_and_huge_values() {
    let zero = ServerConfig::new()
        .with_auth_timeout(Duration::ZERO)
        .with_heartbeat_timeout(Duration::ZERO)
        .with_ws_ping_interval(Duration::ZERO)
        .with_max_unauthenticated(0)
        .with_default_request_timeout(Duration::ZERO);
    let ms = Duration::from_millis(1);
    assert_eq!(zero.auth_timeout(), ms);
    assert_eq!(zero.heartbeat_timeout(), ms);
    assert_eq!(zero.ws_ping_interval(), Duration::from_secs(1));
    assert_eq!(zero.max_unauthenticated(), 1);
    assert_eq!(zero.default_request_timeout(), ms);
    let huge = ServerConfig::default()
        .with_auth_timeout(Duration::MAX)
        .with_heartbeat_timeout(Duration::MAX)
        .with_ws_ping_interval(Duration::MAX)
        .with_max_body(usize::MAX)
        .with_default_request_timeout(Duration::MAX);
    assert_eq!(huge.auth_timeout(), MAX_DELAY);
    assert_eq!(huge.heartbeat_timeout(), MAX_DELAY);
    assert_eq!(huge.ws_ping_interval(), MAX_DELAY);
    assert_eq!(huge.max_body(), tether_net::longport::wire::MAX_BODY_LEN);
    assert_eq!(huge.default_request_timeout(), Duration::from_secs(60));
    assert_eq!(ServerConfig::default(), ServerConfig::new());
}

#[test]
fn server_config_keeps_its_timers_to_the_microsecond_and_debug_shows_durations() {
    let odd = Duration::new(3, 141_592_653); // 3.141592653 s: the last 653 ns are dropped
    let c = ServerConfig::new()
        .with_auth_timeout(odd)
        .with_heartbeat_timeout(odd)
        .with_ws_ping_interval(odd)
        .with_tcp_heartbeat_interval(Some(odd))
        .with_default_request_timeout(odd);
    let us = Duration::from_micros(3_141_592);
    assert_eq!(
        (
            c.auth_timeout(),
            c.heartbeat_timeout(),
            c.ws_ping_interval(),
            c.tcp_heartbeat_interval()
        ),
        (us, us, us, Some(us))
    );
    // the request timeout is handed out, not a timer: kept whole
    assert_eq!(c.default_request_timeout(), odd);
    assert_eq!(c, c.with_auth_timeout(us));
    assert_ne!(c, c.with_auth_timeout(us + Duration::from_micros(1)));
    assert_eq!(
        c.with_tcp_heartbeat_interval(None).tcp_heartbeat_interval(),
        None
    );
    let text = format!("{c:?}");
    assert!(
        text.starts_with(
            "ServerConfig { auth_timeout: 3.141592s, heartbeat_timeout: 3.141592s, \
             ws_ping_interval: 3.141592s, tcp_heartbeat_interval: Some(3.141592s), \
             max_unauthenticated: 8, max_unauthenticated_per_source: 4, max_body: 1048576, \
             max_auth_body: 4096, max_pending_requests: 32, \
             default_request_timeout: 3.141592653s, account_quota: None, rate_limit: None, \
             command_limits: [None"
        ),
        "{text}"
    );
}

/// Bound every deadline: `Some(t)` with `t` no later than `now + MAX_DELAY`, never `Instant::MAX`
fn bounded(t: Option<Instant>, now: Instant, what: &str) {
    if let Some(t) = t {
        assert!(t != Instant::MAX, "{what}: Instant::MAX");
        assert!(
            t <= now + MAX_DELAY,
            "{what}: {t} is beyond {now} + MAX_DELAY"
        );
    }
}

fn huge_jitter(_: u32) -> Duration {
    Duration::MAX
}

#[test]
fn client_deadlines_stay_within_max_delay_with_huge_configs_and_jitter() {
    let config = every_duration(ClientConfig::tcp(), Duration::MAX).with_jitter(huge_jitter);
    let mut c = Client::new(config);
    let mut now = Instant::from_secs(1);
    c.connect(now, Credentials::new("tok")).unwrap();
    bounded(c.poll_timeout(), now, "dialing");
    c.handle_connected(now).unwrap();
    bounded(c.poll_timeout(), now, "logging in");
    let mut buf = [0u8; 256];
    let t = c.poll_transmit(now, &mut buf).unwrap().unwrap();
    let _ = c
        .handle_input(now, (), &login_response(&buf[2..t.len]))
        .unwrap();
    assert!(c.is_connected());
    bounded(c.poll_timeout(), now, "connected");
    let mut out = [0u8; 64];
    let _ = c
        .send_request(now, 9, Duration::MAX, b"q", &mut out)
        .unwrap();
    bounded(c.poll_timeout(), now, "a request with Duration::MAX");
    // the transport drops: the back-off (MAX base, MAX jitter) is clamped too
    now += Duration::from_secs(5);
    c.handle_closed(now, ());
    bounded(c.poll_timeout(), now, "back-off");
    let at = std::iter::from_fn(|| c.poll_event())
        .find_map(|e| match e {
            ClientEvent::ReconnectScheduled { at, .. } => Some(at),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        at,
        now + MAX_DELAY,
        "the event's instant is clamped the same way"
    );
    assert_eq!(c.state(), ClientState::WaitingToReconnect);
}

#[test]
fn server_deadlines_stay_within_max_delay_with_huge_configs() {
    let config = ServerConfig::new()
        .with_auth_timeout(Duration::MAX)
        .with_heartbeat_timeout(Duration::MAX)
        .with_ws_ping_interval(Duration::MAX);
    let mut s = Srv::with_capacities(config);
    let now = Instant::from_secs(1);
    for (peer, transport) in [(1, Transport::Tcp), (2, Transport::WebSocket)] {
        s.handle_connected(now, peer, transport, Source::UNKNOWN)
            .unwrap();
        bounded(s.poll_timeout(), now, "unauthenticated");
    }
    let auth = auth_request();
    let _ = s.handle_input(now, 2, &auth).unwrap();
    s.accept_auth(now, 2, grant(2)).unwrap();
    bounded(s.poll_timeout(), now, "authenticated");
}

// ---------------------------------------------------------------------------------------------
// Backpressure: QueueFull changes nothing; after a complete drain the input is accepted
// ---------------------------------------------------------------------------------------------

#[test]
fn client_queue_full_changes_nothing_and_a_drain_makes_room() {
    // 8 event slots (the least a client may have): connect, then heartbeat RTTs fill the queue
    let mut c: Client<4, 8> = Client::with_capacities(ClientConfig::tcp());
    let mut now = Instant::from_secs(1);
    c.connect(now, Credentials::new("tok")).unwrap();
    c.handle_connected(now).unwrap();
    let mut buf = [0u8; 256];
    let t = c.poll_transmit(now, &mut buf).unwrap().unwrap();
    let _ = c
        .handle_input(now, (), &login_response(&buf[2..t.len]))
        .unwrap();
    let push = {
        let mut p = [0u8; 16];
        let n = Packet::push(101, b"x").emit(&mut p).unwrap();
        p[..n].to_vec()
    };
    let refused = loop {
        match c.handle_input(now, (), &push) {
            Ok(_) => {}
            Err(e) => break e,
        }
        // a heartbeat round trip adds one event and nothing is drained
        now = c.poll_timeout().unwrap();
        c.handle_timeout(now);
        let t = c.poll_transmit(now, &mut buf).unwrap().unwrap();
        let (p, _) = Packet::parse(&buf[..t.len], 1 << 20).unwrap();
        let echo = {
            let mut e = [0u8; 64];
            let n = Packet::response(
                1,
                p.header.kind.request_id().unwrap(),
                Status::Success,
                p.body,
            )
            .emit(&mut e)
            .unwrap();
            e[..n].to_vec()
        };
        let _ = c.handle_input(now, (), &echo).unwrap();
    };
    assert_eq!(refused, Error::QueueFull);
    // nothing changed: not the counters, not the state, not the timer
    let (stats, state, timer) = (c.stats(), c.state(), c.poll_timeout());
    assert_eq!(c.handle_input(now, (), &push), Err(Error::QueueFull));
    assert_eq!(c.provide_token(now, "t2"), Err(Error::QueueFull));
    assert!(!c.has_token(), "the token was not taken");
    assert_eq!(
        (c.stats(), c.state(), c.poll_timeout()),
        (stats, state, timer)
    );
    // a complete drain: the same input, and the command, are accepted
    drain(&mut c, now, &mut buf, |_, _| Ok::<(), ()>(()), |_, _| {}).unwrap();
    let r = c.handle_input(now, (), &push).unwrap();
    assert_eq!(r.bytes_consumed(), push.len());
    c.provide_token(now, "t2").unwrap();
    assert!(c.has_token());
}

#[test]
fn server_queue_full_changes_nothing_and_a_drain_makes_room() {
    let mut s = Srv::with_capacities(ServerConfig::new());
    let now = Instant::from_secs(1);
    s.handle_connected(now, PEER, Transport::WebSocket, Source::UNKNOWN)
        .unwrap();
    let auth = auth_request();
    let _ = s.handle_input(now, PEER, &auth).unwrap();
    s.accept_auth(now, PEER, grant(1)).unwrap();
    // the AuthResponse is queued: a push must not overtake it
    let mut out = [0u8; 64];
    let stats = s.stats();
    assert_eq!(
        s.push(now, PEER, 101, b"q", &mut out),
        Err(Error::QueueFull)
    );
    assert_eq!(out, [0u8; 64], "nothing written");
    assert_eq!(s.stats(), stats, "nothing counted");
    let mut buf = [0u8; 256];
    let mut frames = 0;
    drain(
        &mut s,
        now,
        &mut buf,
        |_, _| {
            frames += 1;
            Ok::<(), ()>(())
        },
        |_, _| {},
    )
    .unwrap();
    assert_eq!(frames, 1, "the AuthResponse");
    let t = s.push(now, PEER, 101, b"q", &mut out).unwrap();
    assert_eq!(t.kind, FrameKind::WsBinary);
}

#[test]
fn rate_limit_clamps_its_rate_and_keeps_its_burst() {
    use tether_net::longport::RateLimit;
    let l = RateLimit::per_second(4, 5);
    assert_eq!((l.interval(), l.burst()), (Duration::from_millis(250), 5));
    let l = RateLimit::per_second(0, 0);
    assert_eq!((l.interval(), l.burst()), (Duration::from_secs(1), 1));
    let l = RateLimit::per_second(u32::MAX, 7);
    assert_eq!((l.interval(), l.burst()), (Duration::from_micros(1), 7));
}

#[test]
fn error_and_failure_texts_are_what_a_log_shows() {
    use tether_net::longport::{ProtocolError, RequestFailure};
    let cases: [(Error, &str); 6] = [
        (
            Error::QueueFull,
            "queues full: drain transmits and events, then retry",
        ),
        (
            Error::BufferTooSmall { required: 18 },
            "output buffer too small: 18 bytes required",
        ),
        (
            Error::TooLong { len: 70, max: 64 },
            "70 bytes long, at most 64 accepted",
        ),
        (Error::ControlCommand(2), "command 2 is a control command"),
        (Error::TooManyInFlight, "too many requests in flight"),
        (Error::TableFull, "connection table full"),
    ];
    for (e, text) in cases {
        assert_eq!(e.to_string(), text, "{e:?}");
    }
    assert_eq!(
        ProtocolError::CompressedControl { cmd: 2 }.to_string(),
        "compressed control command 2 cannot be inflated"
    );
    assert_eq!(RequestFailure::Disconnected.to_string(), "connection lost");
    assert_eq!(RequestFailure::Closed.to_string(), "client closed");
}

/// The line-anchored exclusions of `.cargo/mutants.toml` must still point at the lines they
/// were written for (lines move when code above them changes). Reads the files at run time:
/// a packaged crate has no `.cargo/`, and a sandbox may have no file system; then it checks
/// nothing.
#[test]
fn line_anchored_mutants_exclusions_still_point_at_their_lines() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let Ok(config) = std::fs::read_to_string(root.join(".cargo/mutants.toml")) else {
        return;
    };
    // (path as written in the exclusion, text the anchored line must contain)
    let anchors = [
        ("game/sha256", "let ch = (e & f) ^ (!e & g);"),
        ("game/sha256", "let maj = (a & b) ^ (a & c) ^ (b & c);"),
        ("game/layer", "    Err(Dropped::Malformed)"),
        ("game/chunk", "n > 16 || dst.len() != n"),
        (
            "game/chunk",
            "(raw > SHORT_PAYLOAD || compresses(chunks, token_bytes))",
        ),
        ("game/huffman", "let mut node = (e >> SYM_SHIFT) as usize & 0xFFFF;"),
        (
            "game/huffman",
            "        ((node as u64) << SYM_SHIFT) | used | (1 << COUNT_SHIFT)",
        ),
        ("game/huffman", "    let limit = out.len();"),
        ("game/huffman", "        while q < p {"),
        (
            "game/client/mod",
            "} else if self.awaiting_server && self.alt_token != Some(token) {",
        ),
        (
            "game/client/mod",
            "    fn handle_connless<'a>(&mut self, _: &'a [u8]) -> Option<ClientApp<'a>> {",
        ),
        (
            "game/huffman",
            "            q += code_len(u16::from(b)) as usize;",
        ),
        ("game/huffman", "    while end > input_bits && o > 0 {"),
        ("game/huffman", "const INTERNAL: usize = SYMBOLS - 1;"),
        (
            "game/huffman",
            "((node as u64) << SYM_SHIFT) | (first << 24) | LOOKUP_BITS as u64 | LONG",
        ),
        ("game/huffman", "            if (node as usize) < SYMBOLS {"),
        ("game/huffman", "        while j < longs << rest {"),
        ("game/huffman", "    while bits.p < stop {"),
        ("game/huffman", "    const EOF: usize = 1 << 62;"),
        ("game/huffman", "        if bits.p > input_bits {"),
        ("game/huffman", "    if p > input_bits {"),
        (
            "game/huffman",
            "        if self.top.wrapping_sub(self.p) < MAX_CODE_LEN as usize {",
        ),
        ("game/huffman", "    [len / 3, len * 2 / 3]"),
        (
            "game/huffman",
            "row_b[ob.min(ROW - 32)..].first_chunk_mut::<32>(),",
        ),
        (
            "game/huffman",
            "let (end_a, end_b, end_c) = (sb - 64, sc - 64, input_bits - 64);",
        ),
        (
            "game/huffman",
            "while a.p <= end_a && b.p <= end_b && c.p <= end_c && ob + 32 <= limit",
        ),
        (
            "game/chunk",
            "let size = usize::from(b0 & 0x3F) << 4 | usize::from(b1 & 0x0F);",
        ),
        (
            "game/chunk",
            "let size = u16::from(b0 & 0x3F) << 4 | u16::from(b1 & 0x0F);",
        ),
        (
            "game/chunk",
            "let b0 = self.flags.bits() | (size >> 4) as u8;",
        ),
        (
            "game/chunk",
            "(size & 0x0F) as u8 | ((seq >> 2) & 0xF0) as u8,",
        ),
        (
            "game/server/peer",
            "| ((u32::from(sequence) & ACK_MASK) << SEQUENCE_SHIFT);",
        ),
        ("longport/client/mod", "|| self.tx_heartbeat == Some(id)"),
        (
            "game/server/mod",
            "if b0 & !ACK_HIGH_MASK == FLAG_CONTROL",
        ),
        ("game/server/mod", "if h.online() && h.token().is_some() {"),
        ("longport/gzip", "        if self.cnt < n {"),
        ("longport/gzip", "*slot = (sym << 4) | len as u16;"),
        ("longport/gzip", "if bits.cnt < MAX_BITS as u32 {"),
        ("longport/gzip", "let mut lengths = [0u8; 286 + 32];"),
        ("longport/gzip", "let n = distance.min(end - to);"),
        (
            "game/server/mod",
            "if cold.out & OUT_CONNECT_ACCEPT == 0 && cold.out & OUT_CHUNKS != 0 {",
        ),
        ("game/server/mod", "                                cold.out &= !OUT_CHUNKS;"),
        (
            "game/vital",
            "if RN > 0 && seq::distance(self.ack, s) <= window && self.reorder.push(s, chunk.data) {",
        ),
        (
            "game/vital",
            "if self.pending_resends > 0 || (self.pending_new > 0 && self.flush) {",
        ),
    ];
    for (path, text) in anchors {
        let src = std::fs::read_to_string(root.join(format!("src/{path}.rs"))).unwrap();
        let needle = format!("\"{}\\\\.rs:", path.replace('.', "\\\\."));
        // the line numbers after the path: `12:`, or alternatives `(12:3|45:6)` / `(12|45):`
        let lines: Vec<usize> = config
            .match_indices(&needle)
            .flat_map(|(i, m)| {
                let rest = &config[i + m.len()..];
                let rest = &rest[..rest.find('"').unwrap_or(rest.len())];
                rest.split(['(', '|', ')'])
                    .filter_map(|t| {
                        let digits =
                            t.len() - t.trim_start_matches(|c: char| c.is_ascii_digit()).len();
                        (digits > 0 && (digits == t.len() || t[digits..].starts_with(':')))
                            .then(|| t[..digits].parse().ok())
                            .flatten()
                    })
                    .collect::<Vec<usize>>()
            })
            .collect();
        assert!(!lines.is_empty(), "no line anchor for {path}");
        assert!(
            lines.iter().any(|&l| src
                .lines()
                .nth(l - 1)
                .is_some_and(|line| line.contains(text))),
            "src/{path}.rs: no anchor of {lines:?} is the line with `{text}`; it is at line {:?}: \
             update .cargo/mutants.toml",
            src.lines().position(|l| l.contains(text)).map(|i| i + 1)
        );
    }
}
