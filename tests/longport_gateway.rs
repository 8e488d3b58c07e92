//! The LongPort server with the real gateway's limits on, against real clients in the
//! simulator: the per-account connection quota (status 6, `Error{403}`, a slot freed when a
//! connection closes), per-connection and per-command rate limits (status 3 / `Error{301606}`
//! answered by the machine), server heartbeats over TCP and their RTT, and the client's side of
//! it (quota policy, echoes of any size, heartbeats on demand, gzip'd requests)

use std::cell::RefCell;
use std::rc::Rc;

use tether_net::longport::{
    AccountId, Admission, Client, ClientApp, ClientConfig, ClientEvent, ClientState, CloseCause,
    Credentials, Grant, LoginKind, QuotaPolicy, RateLimit, RequestId, Server, ServerApp,
    ServerConfig, ServerEvent, SessionId, Source, Status, Transport,
};
use tether_net::testing::{Fleet, LinkConfig, Rng};
use tether_net::{Duration, FrameKind, Instant};

type Srv = Server<u32, 16, 16>;
type Sim = Fleet<Client, Srv>;

const FAR: i64 = 4_000_000_000_000;
const CMD_QUOTE: u8 = 11;
const CMD_DEPTH: u8 = 14;

/// What the server application saw and did
#[derive(Default)]
struct App {
    /// Client index and account of every login decided, with what `accept_*` said
    admissions: Vec<(usize, Admission)>,
    /// Business requests that reached the application: (client, cmd, id, gzip, body)
    requests: Vec<(usize, u8, RequestId, bool, Vec<u8>)>,
    /// Answers to send: (conn, kind, bytes)
    outbox: Vec<(u32, FrameKind, Vec<u8>)>,
    /// Current connection key per client
    conns: Vec<u32>,
    /// Account per client
    accounts: Vec<AccountId>,
    rng: Option<Rng>,
}

/// The simulation and its socket layer
struct World {
    sim: Sim,
    app: Rc<RefCell<App>>,
    gens: Vec<u32>,
    seen: Vec<usize>,
    seen_server: usize,
    fins: Vec<(Instant, usize, u32)>,
    /// Leave the server's side of a transport the client gave up open (a half-open connection)
    half_open: bool,
    /// What each client's inputs carried: (client, app summary)
    got: Rc<RefCell<Vec<(usize, String)>>>,
}

fn conn(i: usize, gen: u32) -> u32 {
    (gen << 8) | i as u32
}

impl World {
    /// `n` clients made by `client(i)`, accounts `account(i)`, a server with `config`
    fn new(
        n: usize,
        config: ServerConfig,
        client: impl FnMut(usize) -> Client,
        account: impl Fn(usize) -> AccountId,
    ) -> World {
        let link = LinkConfig::perfect()
            .with_latency(Duration::from_millis(20))
            .with_split_stream(true);
        let mut sim = Fleet::new(
            Srv::with_capacities(config),
            n,
            client,
            |i| conn(i, 0),
            link,
            11,
        );
        let app = Rc::new(RefCell::new(App {
            conns: (0..n).map(|i| conn(i, 0)).collect(),
            accounts: (0..n).map(account).collect(),
            rng: Some(Rng::new(5)),
            ..App::default()
        }));
        let a = app.clone();
        sim.answer_server_app(move |srv, now, i, req| {
            let mut app = a.borrow_mut();
            let c = app.conns[i];
            match *req {
                ServerApp::Auth { .. } | ServerApp::Reconnect { .. } => {
                    let mut random = [0u8; 16];
                    app.rng.as_mut().unwrap().fill(&mut random);
                    let grant = Grant::new(SessionId::from_random(random), FAR)
                        .with_account(app.accounts[i]);
                    let r = if matches!(req, ServerApp::Auth { .. }) {
                        srv.accept_auth(now, c, grant)
                    } else {
                        srv.accept_reconnect(now, c, grant)
                    };
                    app.admissions.push((i, r.unwrap()));
                }
                ServerApp::Request {
                    request_id,
                    cmd,
                    body,
                    gzip,
                    ..
                } => {
                    app.requests.push((i, cmd, request_id, gzip, body.to_vec()));
                    let mut out = vec![0u8; 64];
                    let t = srv
                        .respond(now, c, cmd, request_id, Status::Success, b"ok", &mut out)
                        .unwrap();
                    app.outbox.push((c, t.kind, out[..t.len].to_vec()));
                }
                _ => {}
            }
        });
        let got: Rc<RefCell<Vec<(usize, String)>>> = Rc::default();
        let g = got.clone();
        sim.on_client_app(move |i, a| {
            let summary = match a {
                ClientApp::Response { status, error, .. } => {
                    format!("response {status:?} {:?}", error.map(|e| e.code))
                }
                ClientApp::LoginError {
                    status,
                    code,
                    message,
                } => format!("login error {status:?} {code:?} {message}"),
                ClientApp::Close { code, reason } => format!("close {code:?} {reason}"),
                other => format!("{other:?}"),
            };
            g.borrow_mut().push((i, summary));
        });
        World {
            sim,
            app,
            gens: vec![0; n],
            seen: vec![0; n],
            seen_server: 0,
            fins: Vec::new(),
            half_open: false,
            got,
        }
    }

    /// Run for `d` of virtual time in 5 ms steps, playing the socket layer
    fn run(&mut self, d: Duration) {
        let end = self.sim.now() + d;
        while self.sim.now() < end {
            self.sim.run_for(Duration::from_millis(5));
            self.react();
        }
    }

    fn react(&mut self) {
        let now = self.sim.now();
        let out: Vec<_> = self.app.borrow_mut().outbox.drain(..).collect();
        for (c, kind, bytes) in out {
            self.sim.send_from_server(c, kind, &bytes);
        }
        for i in 0..self.sim.len() {
            while self.seen[i] < self.sim.client_events(i).len() {
                let e = self.sim.client_events(i)[self.seen[i]];
                self.seen[i] += 1;
                match e {
                    ClientEvent::ConnectTransport { .. } => {
                        self.gens[i] += 1;
                        let c = conn(i, self.gens[i]);
                        self.app.borrow_mut().conns[i] = c;
                        self.sim.set_client_addr(i, c);
                        let transport = self.sim.client(i).config().transport();
                        let source = Source::from_bytes([i as u8; 16]);
                        match self
                            .sim
                            .server_mut()
                            .handle_connected(now, c, transport, source)
                        {
                            Ok(()) => self.sim.client_mut(i).handle_connected(now).unwrap(),
                            Err(_) => self.sim.client_mut(i).handle_closed(now, ()),
                        }
                    }
                    ClientEvent::Disconnected { .. } | ClientEvent::Closed { .. }
                        if !self.half_open =>
                    {
                        self.fins
                            .push((now + Duration::from_millis(100), i, u32::MAX));
                    }
                    ClientEvent::TokenNeeded => {
                        self.sim.client_mut(i).provide_token(now, "token").unwrap();
                    }
                    _ => {}
                }
            }
        }
        while self.seen_server < self.sim.server_events().len() {
            let e = self.sim.server_events()[self.seen_server];
            self.seen_server += 1;
            if let ServerEvent::Closed { peer, cause } = e {
                if cause != CloseCause::TransportClosed {
                    let i = (peer & 0xff) as usize;
                    self.fins.push((now + Duration::from_millis(100), i, peer));
                }
            }
        }
        let due: Vec<_> = self.fins.iter().filter(|f| f.0 <= now).copied().collect();
        self.fins.retain(|f| f.0 > now);
        for (_, i, peer) in due {
            if peer == u32::MAX || self.sim.client_addr(i) == peer {
                self.sim.close_transport(i);
            }
        }
        self.sim.drain();
    }

    fn connect(&mut self, i: usize) {
        let now = self.sim.now();
        self.sim
            .client_mut(i)
            .connect(now, Credentials::new("token"))
            .unwrap();
    }

    /// Client `i` sends a request of `cmd`; false when it is not connected
    fn request(&mut self, i: usize, cmd: u8, body: &[u8]) -> bool {
        let now = self.sim.now();
        let mut buf = vec![0u8; 64 + body.len() * 2];
        match self
            .sim
            .client_mut(i)
            .send_request(now, cmd, Duration::ZERO, body, &mut buf)
        {
            Ok((_, t)) => {
                self.sim.send_from_client(i, t.kind, &buf[..t.len]);
                true
            }
            Err(_) => false,
        }
    }

    fn events(&self, i: usize) -> &[ClientEvent] {
        self.sim.client_events(i)
    }

    fn got(&self, i: usize) -> Vec<String> {
        self.got
            .borrow()
            .iter()
            .filter(|(j, _)| *j == i)
            .map(|(_, s)| s.clone())
            .collect()
    }
}

fn connected(e: &ClientEvent) -> Option<(u32, u32)> {
    match e {
        ClientEvent::Connected { limit, online, .. } => Some((*limit, *online)),
        _ => None,
    }
}

/// Three clients of one account against a quota of 2: the third login is refused by the machine
/// with status 6 and `Error{403, "connections limitation is hit"}` followed by
/// `Close{AuthError}`, the client stops (the default policy); once one of the two closes, its
/// slot is free at once and the third gets in. `limit`/`online` in each `Connected` are the
/// quota and the account's connections.
#[test]
fn account_quota_refuses_with_status_6_and_frees_the_slot_on_close() {
    for transport in [Transport::Tcp, Transport::WebSocket] {
        let config = ServerConfig::new().with_account_quota(Some(2));
        let mut w = World::new(
            4,
            config,
            |_| Client::new(ClientConfig::new(transport)),
            |i| AccountId(if i < 3 { 7 } else { 8 }),
        );
        for i in 0..4 {
            w.connect(i);
            w.run(Duration::from_secs(1));
        }
        assert_eq!(w.events(0).iter().find_map(connected), Some((2, 1)));
        assert_eq!(w.events(1).iter().find_map(connected), Some((2, 2)));
        assert_eq!(
            w.events(3).iter().find_map(connected),
            Some((2, 1)),
            "another account"
        );
        // the third: refused, stopped, no token loop
        assert_eq!(
            w.got(2),
            ["login error PermissionDenied Some(403) connections limitation is hit"]
        );
        assert!(w.events(2).contains(&ClientEvent::LoginFailed {
            kind: LoginKind::Auth,
            status: Status::PermissionDenied,
            code: Some(403)
        }));
        assert_eq!(w.sim.client(2).state(), ClientState::Stopped);
        assert!(!w.events(2).contains(&ClientEvent::TokenNeeded));
        assert_eq!(
            w.app.borrow().admissions[2],
            (
                2,
                Admission::OverQuota {
                    limit: 2,
                    online: 2
                }
            )
        );
        assert!(w.sim.server_events().contains(&ServerEvent::Closed {
            peer: conn(2, 1),
            cause: CloseCause::LoginRejected(Status::PermissionDenied)
        }));
        assert_eq!(w.sim.server().online(AccountId(7)), 2);
        assert_eq!(w.sim.server().stats().quota_refusals, 1);
        // client 0 closes: the slot is free as soon as its transport closes
        let now = w.sim.now();
        w.sim.client_mut(0).close(now, "bye").unwrap();
        w.run(Duration::from_secs(1));
        assert_eq!(w.sim.server().online(AccountId(7)), 1);
        w.connect(2);
        w.run(Duration::from_secs(1));
        assert!(w.sim.client(2).is_connected(), "{transport:?}");
        assert_eq!(w.events(2).iter().rev().find_map(connected), Some((2, 2)));
    }
}

/// A Reconnect over the quota is refused the same way; a Reconnect that displaces the account's
/// own live connection is not counted twice (its old connection is closed as a duplicate)
#[test]
fn quota_counts_a_displaced_connection_out() {
    let config = ServerConfig::new().with_account_quota(Some(1));
    let mut w = World::new(
        1,
        config,
        |_| Client::new(ClientConfig::tcp()),
        |_| AccountId(1),
    );
    w.connect(0);
    w.run(Duration::from_secs(1));
    assert!(w.sim.client(0).is_connected());
    // the transport dies on the client side only (the server still holds the connection), and
    // the client reconnects with its session: the quota of 1 is not exceeded
    w.half_open = true;
    let now = w.sim.now();
    let old = w.sim.client_addr(0);
    w.sim.client_mut(0).handle_closed(now, ());
    w.run(Duration::from_secs(3));
    assert!(w.sim.client(0).is_connected());
    assert_eq!(
        w.events(0)
            .iter()
            .filter(|e| matches!(
                e,
                ClientEvent::Connected {
                    via: LoginKind::Reconnect,
                    limit: 1,
                    online: 1,
                    ..
                }
            ))
            .count(),
        1
    );
    assert!(w.sim.server_events().contains(&ServerEvent::Closed {
        peer: old,
        cause: CloseCause::Duplicate
    }));
    assert_eq!(w.sim.server().stats().quota_refusals, 0);
}

/// A burst over the rate limits: the machine answers the excess with status 3 and
/// `Error{301606}`, the application sees only what conforms; the per-command limit applies to
/// its command only
#[test]
fn rate_limits_are_answered_by_the_machine() {
    let config = ServerConfig::new()
        .with_rate_limit(Some(RateLimit::per_second(10, 5)))
        .with_command_rate_limit(CMD_DEPTH, Some(RateLimit::per_second(1, 2)));
    let mut w = World::new(
        1,
        config,
        |_| Client::new(ClientConfig::websocket()),
        |_| AccountId(1),
    );
    w.connect(0);
    w.run(Duration::from_secs(1));
    // 4 depth requests at once: 2 pass the command limit
    for _ in 0..4 {
        assert!(w.request(0, CMD_DEPTH, b"700.HK"));
    }
    w.run(Duration::from_secs(1));
    // (the machine's refusals may arrive before the application's answers: responses are
    // matched by request id)
    let limited = "response BadRequest Some(301606)".to_string();
    let ok = "response Success None".to_string();
    let got = w.got(0);
    assert_eq!(got.iter().filter(|g| **g == ok).count(), 2);
    assert_eq!(got.iter().filter(|g| **g == limited).count(), 2);
    // 8 quote requests at once: the connection's burst of 5 (refilled by the quiet second)
    for _ in 0..8 {
        assert!(w.request(0, CMD_QUOTE, b"700.HK"));
    }
    w.run(Duration::from_secs(1));
    let got = w.got(0);
    assert_eq!(got[4..].iter().filter(|g| **g == ok).count(), 5);
    assert_eq!(got[4..].iter().filter(|g| **g == limited).count(), 3);
    let app = w.app.borrow();
    assert_eq!(
        app.requests.len(),
        2 + 5,
        "the refused ones never reach the application"
    );
    assert_eq!(w.sim.server().stats().requests_rate_limited, 5);
    assert!(w.sim.client(0).is_connected());
}

/// The server's own heartbeats over TCP: the client echoes them, the server reports each round
/// trip (two link latencies here); WebSocket pings give RTT events the same way
#[test]
fn server_heartbeats_measure_the_round_trip() {
    for transport in [Transport::Tcp, Transport::WebSocket] {
        let config = ServerConfig::new()
            .with_tcp_heartbeat_interval(Some(Duration::from_secs(10)))
            .with_ws_ping_interval(Duration::from_secs(10));
        // the client sends no heartbeats of its own: the server's keep the connection alive
        let mut w = World::new(
            1,
            config,
            |_| Client::new(ClientConfig::new(transport).with_heartbeat_interval(None)),
            |_| AccountId(1),
        );
        w.connect(0);
        w.run(Duration::from_secs(65));
        let rtts: Vec<Duration> = w
            .sim
            .server_events()
            .iter()
            .filter_map(|e| match e {
                ServerEvent::HeartbeatRtt { rtt, .. } => Some(*rtt),
                _ => None,
            })
            .collect();
        assert!(rtts.len() >= 6, "{transport:?}: {rtts:?}");
        // two link latencies, plus the random split of the TCP stream
        assert!(
            rtts.iter()
                .all(|&r| r >= Duration::from_millis(40) && r < Duration::from_millis(50)),
            "{transport:?}: {rtts:?}"
        );
        assert!(w.sim.client(0).is_connected());
        let st = w.sim.server().stats();
        assert_eq!(st.heartbeat_acks, rtts.len() as u64);
        if transport == Transport::Tcp {
            assert_eq!(st.heartbeats_sent, rtts.len() as u64);
            assert_eq!(
                w.sim.client(0).stats().heartbeats_answered,
                rtts.len() as u64
            );
        }
    }
}

/// `send_heartbeat` on demand: one heartbeat now, its RTT reported
#[test]
fn send_heartbeat_on_demand() {
    let mut w = World::new(
        1,
        ServerConfig::new(),
        |_| Client::new(ClientConfig::tcp()),
        |_| AccountId(1),
    );
    w.connect(0);
    w.run(Duration::from_secs(1));
    let now = w.sim.now();
    w.sim.client_mut(0).send_heartbeat(now).unwrap();
    w.sim.drain();
    w.run(Duration::from_millis(100));
    assert!(w.events(0).iter().any(|e| matches!(
        e,
        ClientEvent::HeartbeatRtt { rtt } if *rtt >= Duration::from_millis(40)
    )));
    assert_eq!(w.sim.client(0).stats().heartbeats_sent, 1);
}

/// With `with_gzip_requests(Some(1024))` bodies of 1 KiB and more go out as gzip members (the
/// Go SDK's threshold), smaller ones as they are; the server passes them through flagged, and
/// they inflate to the original
#[test]
fn gzip_requests_from_a_threshold() {
    let mut w = World::new(
        1,
        ServerConfig::new(),
        |_| Client::new(ClientConfig::tcp().with_gzip_requests(Some(1024))),
        |_| AccountId(1),
    );
    w.connect(0);
    w.run(Duration::from_secs(1));
    let big: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    assert!(w.request(0, CMD_QUOTE, &big));
    assert!(w.request(0, CMD_QUOTE, b"small"));
    w.run(Duration::from_secs(1));
    let app = w.app.borrow();
    let (_, _, _, gzip, body) = &app.requests[0];
    assert!(*gzip);
    let mut plain = vec![0u8; 4096];
    let n = tether_net::longport::gzip::gunzip(body, &mut plain).unwrap();
    assert_eq!(plain[..n], big[..]);
    assert!(!app.requests[1].3);
    assert_eq!(app.requests[1].4, b"small");
    assert_eq!(w.got(0).len(), 2);
}

/// A client with `QuotaPolicy::RetryAfter` comes back by itself once the quota has room again
#[test]
fn retry_after_a_quota_refusal_gets_in_when_a_slot_frees() {
    let config = ServerConfig::new().with_account_quota(Some(1));
    let mut w = World::new(
        2,
        config,
        |_| {
            Client::new(
                ClientConfig::websocket()
                    .with_quota_policy(QuotaPolicy::RetryAfter(Duration::from_secs(30))),
            )
        },
        |_| AccountId(3),
    );
    w.connect(0);
    w.run(Duration::from_secs(1));
    w.connect(1);
    w.run(Duration::from_secs(1));
    assert_eq!(w.sim.client(1).state(), ClientState::WaitingToReconnect);
    assert!(matches!(
        w.events(1).last(),
        Some(ClientEvent::ReconnectScheduled { .. })
    ));
    let now = w.sim.now();
    w.sim.client_mut(0).close(now, "done").unwrap();
    w.run(Duration::from_secs(31));
    assert!(w.sim.client(1).is_connected());
    let tokens = w
        .events(1)
        .iter()
        .filter(|e| **e == ClientEvent::TokenNeeded)
        .count();
    assert_eq!(tokens, 1, "one token, when the delay was over");
}
