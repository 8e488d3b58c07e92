//! LongPort attacks on admission, sessions and memory, each written as a failing test before its
//! fix (the numbers in the comments are what the machines did before)
//!
//! * idle sockets from one source against legitimate logins (the simulator: real clients, an
//!   attacker holding 64 unauthenticated connections);
//! * a pre-auth packet announcing a large body;
//! * guessed and forged session ids against a live session;
//! * a client that pipelines requests and never reads;
//! * a status-6 refusal and the client's token loop.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;

use tether_net::longport::control::{
    AuthRequest, Body, Close, ErrorBody, Metadata, ReconnectRequest,
};
use tether_net::longport::deframe::DeframeError;
use tether_net::longport::wire::{Kind, Packet};
use tether_net::longport::{
    Client, ClientConfig, ClientEvent, ClientState, CloseCause, CloseCode, Credentials, Error,
    Grant, ProtocolError, QuotaPolicy, RequestId, Server, ServerApp, ServerConfig, ServerEvent,
    ServerState, SessionGrant, SessionId, Source, Status, Transport, DEFAULT_MAX_AUTH_BODY,
};
use tether_net::testing::{Fleet, LinkConfig, Rng};
use tether_net::{Duration, FrameKind, Instant};

const FAR: i64 = 4_000_000_000_000;

fn encode<'b, B: Body<'b>>(b: &B) -> Vec<u8> {
    let mut v = vec![0u8; b.encoded_len()];
    b.encode(&mut v).unwrap();
    v
}

fn packet(p: &Packet<'_>) -> Vec<u8> {
    let mut v = vec![0u8; p.buffer_len()];
    p.emit(&mut v).unwrap();
    v
}

fn auth_req(rid: u32, token: &str) -> Vec<u8> {
    packet(&Packet::request(
        2,
        RequestId(rid),
        5_000,
        &encode(&AuthRequest::new(token, Metadata::EMPTY)),
    ))
}

fn reconnect_req(rid: u32, sid: &str) -> Vec<u8> {
    packet(&Packet::request(
        3,
        RequestId(rid),
        5_000,
        &encode(&ReconnectRequest::new(sid, Metadata::EMPTY)),
    ))
}

/// 128 bits from a seeded generator (runs repeat; a real server uses the OS random source)
fn random_session(rng: &mut Rng) -> SessionId {
    let mut b = [0u8; 16];
    rng.fill(&mut b);
    SessionId::from_random(b)
}

/// Frames a server handed out: (to, kind, bytes)
type Frames = Vec<(u32, FrameKind, Vec<u8>)>;

/// Every frame and event the server has queued
fn drain<const P: usize, const S: usize>(
    s: &mut Server<u32, P, S>,
    now: Instant,
) -> (Frames, Vec<ServerEvent<u32>>) {
    let mut buf = vec![0u8; 4096];
    let mut frames = Vec::new();
    while let Some(t) = s.poll_transmit(now, &mut buf).unwrap() {
        frames.push((t.to, t.kind, buf[..t.len].to_vec()));
    }
    (frames, core::iter::from_fn(|| s.poll_event()).collect())
}

/// The Close push among `frames` for `to`, decoded
fn close_push(frames: &[(u32, FrameKind, Vec<u8>)], to: u32) -> Option<(CloseCode, String)> {
    frames.iter().filter(|f| f.0 == to).find_map(|(_, _, b)| {
        let (p, _) = Packet::parse(b, 1 << 20).ok()?;
        (p.header.kind == Kind::Push && p.header.cmd == 0).then(|| {
            let c = Close::decode(p.body).unwrap();
            (c.code, c.reason.to_string())
        })
    })
}

// =============================================================================================
// Idle sockets from one source against legitimate logins
// =============================================================================================

type Srv = Server<u32, 128, 64>;

/// Connection key of legitimate client `i` on its transport number `gen`
fn legit_conn(i: usize, gen: u32) -> u32 {
    (gen << 8) | i as u32
}

/// Connection keys of the attacker start here
const ATTACKER_BASE: u32 = 1 << 28;

/// What one attack run measured
#[derive(Debug, Default)]
struct Outcome {
    /// Per legitimate client: time from `connect` to `Connected`
    logins: Vec<Option<Duration>>,
    /// Connections the attacker opened
    opened: u64,
    /// Most unauthenticated connections the attacker held at once
    held_max: usize,
}

impl Outcome {
    /// Legitimate clients connected within `limit`
    fn logins_within(&self, limit: Duration) -> usize {
        self.logins
            .iter()
            .filter(|l| l.is_some_and(|d| d <= limit))
            .count()
    }
}

/// `clients` legitimate TCP clients (each from its own source) log in at random moments while an
/// attacker tries to hold `held` idle TCP connections, opening a new one every `pace` whenever
/// it holds fewer; `attacker_sources` sources take turns (1: one host)
fn attack(clients: usize, held: usize, pace: Duration, attacker_sources: u8, seed: u64) -> Outcome {
    let link = LinkConfig::perfect()
        .with_latency(Duration::from_millis(20))
        .with_split_stream(true);
    let mut sim: Fleet<Client, Srv> = Fleet::new(
        Srv::with_capacities(ServerConfig::new()),
        clients,
        |_| Client::new(ClientConfig::tcp()),
        |i| legit_conn(i, 0),
        link,
        seed,
    );
    let rng = Rc::new(RefCell::new(Rng::new(seed)));
    // the application accepts every token: Auth requests are decided in the loop below
    let pending: Rc<RefCell<Vec<usize>>> = Rc::default();
    let p = pending.clone();
    sim.answer_server_app(move |_, _, i, app| {
        if let ServerApp::Auth { .. } = app {
            p.borrow_mut().push(i);
        }
    });
    let mut gens = vec![0u32; clients];
    let mut starts: Vec<(Instant, usize)> = (0..clients)
        .map(|i| {
            let ms = 1_000 + rng.borrow_mut().below(50_000);
            (Instant::from_millis(ms), i)
        })
        .collect();
    starts.sort();
    let mut started = vec![None; clients];
    let mut out = Outcome {
        logins: vec![None; clients],
        ..Outcome::default()
    };
    let mut attacker: HashSet<u32> = HashSet::new();
    let mut next_attacker = ATTACKER_BASE;
    let mut last_open = Instant::ZERO;
    let (mut seen_client, mut seen_server) = (vec![0usize; clients], 0usize);
    // closes the server asked for, done once its last frames had time to arrive
    let mut fins: Vec<(Instant, usize, u32)> = Vec::new();
    let end = Instant::from_secs(60);
    while sim.now() < end {
        sim.run_for(Duration::from_millis(5));
        let now = sim.now();
        // the application's decisions
        for i in pending.borrow_mut().drain(..) {
            let conn = legit_conn(i, gens[i]);
            let grant = Grant::new(random_session(&mut rng.borrow_mut()), FAR);
            let _ = sim.server_mut().accept_auth(now, conn, grant);
        }
        sim.drain();
        // legitimate clients start
        while starts.first().is_some_and(|&(t, _)| t <= now) {
            let (_, i) = starts.remove(0);
            started[i] = Some(now);
            sim.client_mut(i)
                .connect(now, Credentials::new("token"))
                .unwrap();
        }
        // the attacker tops up
        if now >= last_open + pace && attacker.len() < held {
            let key = next_attacker;
            next_attacker += 1;
            let source = Source::from_bytes([0xA0 + (key % u32::from(attacker_sources)) as u8; 16]);
            if sim
                .server_mut()
                .handle_connected(now, key, Transport::Tcp, source)
                .is_ok()
            {
                attacker.insert(key);
                out.opened += 1;
            }
            last_open = now;
            sim.drain();
        }
        let unauth_attacker = attacker
            .iter()
            .filter(|&&k| sim.server().state(k).is_some())
            .count();
        out.held_max = out.held_max.max(unauth_attacker);
        // the legitimate socket layer
        for i in 0..clients {
            while seen_client[i] < sim.client_events(i).len() {
                let e = sim.client_events(i)[seen_client[i]];
                seen_client[i] += 1;
                match e {
                    ClientEvent::ConnectTransport { .. } => {
                        gens[i] += 1;
                        let conn = legit_conn(i, gens[i]);
                        sim.set_client_addr(i, conn);
                        let source = Source::from_bytes([i as u8; 16]);
                        match sim
                            .server_mut()
                            .handle_connected(now, conn, Transport::Tcp, source)
                        {
                            Ok(()) => sim.client_mut(i).handle_connected(now).unwrap(),
                            Err(_) => sim.client_mut(i).handle_closed(now, ()),
                        }
                    }
                    ClientEvent::Connected { .. } if out.logins[i].is_none() => {
                        out.logins[i] = started[i].map(|t| now - t);
                    }
                    ClientEvent::Disconnected { .. } => sim.close_transport(i),
                    ClientEvent::TokenNeeded => {
                        sim.client_mut(i).provide_token(now, "token").unwrap();
                    }
                    _ => {}
                }
            }
        }
        while seen_server < sim.server_events().len() {
            let e = sim.server_events()[seen_server];
            seen_server += 1;
            if let ServerEvent::Closed { peer, cause } = e {
                if attacker.remove(&peer) {
                    continue;
                }
                if cause != CloseCause::TransportClosed {
                    let i = (peer & 0xff) as usize;
                    fins.push((now + Duration::from_millis(100), i, peer));
                }
            }
        }
        let due: Vec<_> = fins.iter().filter(|f| f.0 <= now).copied().collect();
        fins.retain(|f| f.0 > now);
        for (_, i, peer) in due {
            if sim.client_addr(i) == peer {
                sim.close_transport(i);
            }
        }
        sim.drain();
    }
    out
}

/// The attack of the report: idle sockets from one host, reopened as they are closed. Before the
/// fix the unauthenticated cap (8) was one global number without eviction: the attacker's
/// sockets held it and `handle_connected` refused every other connection (0 of 100 logins got
/// in). Now one source holds at most `max_unauthenticated_per_source` (4), each new one evicting
/// its own oldest, and everybody else's logins are untouched.
#[test]
fn idle_sockets_from_one_source_cannot_keep_logins_out() {
    for (seed, pace_ms) in [(1u64, 10u64), (2, 1), (3, 100)] {
        let clients = 40;
        let out = attack(clients, 64, Duration::from_millis(pace_ms), 1, seed);
        let quick = out.logins_within(Duration::from_secs(2));
        println!(
            "pace {pace_ms} ms: {quick} of {clients} logins within 2 s while the attacker opened \
             {} connections and held at most {} at once; logins {:?}",
            out.opened, out.held_max, out.logins
        );
        assert!(
            quick * 10 >= clients * 9,
            "{quick} of {clients} logins within 2 s"
        );
        assert!(out.held_max <= 4, "one source holds {}", out.held_max);
        assert!(out.opened > 500, "the attacker kept trying: {}", out.opened);
    }
}

/// The same with the attacker spread over 64 sources (a botnet): the per-source cap no longer
/// helps, the global cap (8) evicts the oldest unauthenticated connection for each new one. A
/// login takes two round trips (about 80 ms here), so an attacker opening 100 connections per
/// second (8 in 80 ms would be needed to push a login out) cannot keep logins out either.
#[test]
fn idle_sockets_from_many_sources_are_evicted_oldest_first() {
    let clients = 40;
    let out = attack(clients, 64, Duration::from_millis(10), 64, 4);
    let quick = out.logins_within(Duration::from_secs(2));
    println!(
        "64 sources: {quick} of {clients} logins within 2 s, {} attacker connections",
        out.opened
    );
    assert!(
        quick * 10 >= clients * 9,
        "{quick} of {clients} logins within 2 s"
    );
    assert!(out.held_max <= 8);
}

// =============================================================================================
// Pre-auth body limit
// =============================================================================================

/// Before authentication a header announcing more than 4 KiB closes the connection at once
/// (before: the caller was told to buffer the announced 100 KiB, `needed() == Some(102411)`)
#[test]
fn pre_auth_body_announcement_closes_at_the_header() {
    let now = Instant::from_secs(1);
    // an Auth request header announcing 100 KiB (0x019000), nothing of the body yet
    let header = [0x01, 0x02, 0, 0, 0, 1, 0x13, 0x88, 0x01, 0x90, 0x00];
    let too_large = ProtocolError::Framing(DeframeError::BodyTooLarge {
        len: 0x19000,
        max: DEFAULT_MAX_AUTH_BODY,
    });
    for transport in [Transport::Tcp, Transport::WebSocket] {
        let mut s = Srv::with_capacities(ServerConfig::new());
        s.handle_connected(now, 1, transport, Source::UNKNOWN)
            .unwrap();
        if transport == Transport::Tcp {
            let _ = s.handle_input(now, 1, &[0x11, 0x09]).unwrap();
        }
        let r = s.handle_input(now, 1, &header).unwrap();
        assert_eq!(
            r.needed(),
            None,
            "{transport:?}: not asked to buffer the body"
        );
        assert_eq!(r.bytes_consumed(), header.len());
        assert_eq!(s.state(1), Some(ServerState::Closing));
        let (frames, events) = drain(&mut s, now);
        assert_eq!(close_push(&frames, 1).unwrap().0, CloseCode::UnpackError);
        assert_eq!(
            events,
            [ServerEvent::Closed {
                peer: 1,
                cause: CloseCause::Protocol(too_large)
            }]
        );
    }
    // exactly the limit is fine, and after authentication the general limit (1 MiB) applies
    let mut s = Srv::with_capacities(ServerConfig::new());
    s.handle_connected(now, 1, Transport::WebSocket, Source::UNKNOWN)
        .unwrap();
    let token = "t".repeat(DEFAULT_MAX_AUTH_BODY - 3);
    let auth = auth_req(1, &token);
    assert_eq!(auth.len(), 11 + DEFAULT_MAX_AUTH_BODY);
    let r = s.handle_input(now, 1, &auth).unwrap();
    assert!(matches!(r.app(), Some(ServerApp::Auth { .. })));
    s.accept_auth(now, 1, Grant::new(SessionId::from_random([1; 16]), FAR))
        .unwrap();
    drain(&mut s, now);
    let big = packet(&Packet::request(40, RequestId(2), 0, &vec![0u8; 100_000]));
    let r = s.handle_input(now, 1, &big).unwrap();
    assert!(matches!(r.app(), Some(ServerApp::Request { cmd: 40, .. })));
    // configurable
    let mut s = Srv::with_capacities(ServerConfig::new().with_max_auth_body(16));
    s.handle_connected(now, 1, Transport::WebSocket, Source::UNKNOWN)
        .unwrap();
    let _ = s
        .handle_input(now, 1, &auth_req(1, &"t".repeat(20)))
        .unwrap();
    assert_eq!(s.state(1), Some(ServerState::Closing));
}

// =============================================================================================
// Unguessable sessions
// =============================================================================================

/// Guessed and forged session ids are refused without disturbing the victim's connection (the
/// example server used to grant `s-1`, `s-2`, ...: the first guess got in and displaced the
/// victim). The victim's session is a `SessionId` of 128 random bits; the attacker tries the
/// old scheme, counters, the id with one character changed, with a byte cut or added, in other
/// cases, and empty: every one is answered with status 5, `Error{401}` and `Close{SessExpired}`,
/// the victim stays authenticated and can still resume its session afterwards.
#[test]
fn guessed_session_ids_are_refused_and_the_victim_keeps_its_session() {
    let now = Instant::from_secs(1);
    let mut s = Srv::with_capacities(ServerConfig::new().with_max_unauthenticated(64));
    let victim_id = SessionId::from_random([
        0x8e, 0x1f, 0x3a, 0x77, 0x02, 0xc4, 0x9b, 0x5d, 0xe0, 0x61, 0x2f, 0xa8, 0x13, 0x46, 0xdb,
        0x90,
    ]);
    let victim = victim_id.as_str().to_string();
    s.handle_connected(now, 1, Transport::WebSocket, Source::UNKNOWN)
        .unwrap();
    let _ = s.handle_input(now, 1, &auth_req(1, "tok")).unwrap();
    s.accept_auth(now, 1, Grant::new(victim_id, FAR)).unwrap();
    drain(&mut s, now);
    let mut guesses: Vec<String> = (1..=50).map(|n| format!("s-{n}")).collect();
    guesses.extend((0..50).map(|n| format!("{n:032x}")));
    for at in 0..victim.len() {
        let mut g = victim.clone().into_bytes();
        g[at] = if g[at] == b'0' { b'1' } else { b'0' };
        guesses.push(String::from_utf8(g).unwrap());
    }
    guesses.push(victim[..31].to_string());
    guesses.push(format!("{victim}0"));
    guesses.push(victim.to_uppercase());
    guesses.push(String::new());
    let mut conn = 100;
    for g in &guesses {
        conn += 1;
        s.handle_connected(now, conn, Transport::WebSocket, Source::UNKNOWN)
            .unwrap();
        let req = reconnect_req(1, g);
        let r = s.handle_input(now, conn, &req).unwrap();
        assert!(r.app().is_none(), "guess {g:?} reached the application");
        let (frames, events) = drain(&mut s, now);
        assert!(
            frames.iter().all(|f| f.0 == conn),
            "only the guesser hears back"
        );
        let (p, _) = Packet::parse(&frames[0].2, 1 << 20).unwrap();
        assert_eq!(
            p.header.kind,
            Kind::Response {
                request_id: RequestId(1),
                status: Status::Unauthenticated
            }
        );
        assert_eq!(ErrorBody::decode(p.body).unwrap().code, 401);
        assert_eq!(close_push(&frames, conn).unwrap().0, CloseCode::SessExpired);
        assert_eq!(
            events,
            [ServerEvent::Closed {
                peer: conn,
                cause: CloseCause::SessionUnknown
            }]
        );
    }
    assert_eq!(s.stats().reconnects_rejected, guesses.len() as u64);
    assert_eq!(s.state(1), Some(ServerState::Authenticated));
    assert_eq!(s.session_id(1), Some(victim.as_str()));
    assert_eq!(s.stats().duplicates_closed, 0);
    // the victim resumes its own session on a new transport, as usual
    s.handle_closed(now, 1);
    drain(&mut s, now);
    s.handle_connected(now, 2, Transport::WebSocket, Source::UNKNOWN)
        .unwrap();
    let req = reconnect_req(1, &victim);
    let r = s.handle_input(now, 2, &req).unwrap();
    assert!(matches!(r.app(), Some(ServerApp::Reconnect { .. })));
}

// =============================================================================================
// A client that pipelines and never reads
// =============================================================================================

/// An authenticated TCP client pipelines 1,000 requests in one read and never reads (before:
/// all 1,000 were taken in and handed to the application, whose answers the caller had to
/// buffer). Now the machine takes 32 (`max_pending_requests`) and refuses the rest with
/// `Error::TooManyInFlight`, consuming nothing: the driver stops reading that socket (TCP flow
/// control pushes back on the client) and its outbox for the peer holds at most 32 answers. The
/// peer's timers keep running (its heartbeat timeout still fires) and another client's login
/// and request are answered at once.
#[test]
fn pipelining_client_that_never_reads_is_bounded() {
    let t0 = Instant::from_secs(1);
    let mut s = Srv::with_capacities(ServerConfig::new());
    let auth = |s: &mut Srv, conn: u32, now: Instant| {
        s.handle_connected(now, conn, Transport::Tcp, Source::UNKNOWN)
            .unwrap();
        let mut input = vec![0x11, 0x09];
        input.extend(auth_req(1, "tok"));
        let r = s.handle_input(now, conn, &input).unwrap();
        let r2 = s
            .handle_input(now, conn, &input[r.bytes_consumed()..])
            .unwrap();
        assert!(matches!(r2.app(), Some(ServerApp::Auth { .. })));
        s.accept_auth(
            now,
            conn,
            Grant::new(SessionId::from_random([conn as u8; 16]), FAR),
        )
        .unwrap();
        drain(s, now);
    };
    auth(&mut s, 1, t0);
    let mut stream = Vec::new();
    for i in 0..1_000u32 {
        stream.extend(packet(&Packet::request(11, RequestId(i + 2), 0, b"700.HK")));
    }
    let mut rx = &stream[..];
    let mut taken = Vec::new();
    let refused = loop {
        match s.handle_input(t0, 1, rx) {
            Ok(r) => {
                if let Some(ServerApp::Request { request_id, .. }) = r.app() {
                    taken.push(*request_id);
                }
                rx = &rx[r.bytes_consumed()..];
            }
            Err(e) => break e,
        }
    };
    assert_eq!(refused, Error::TooManyInFlight);
    assert_eq!(taken.len(), 32);
    assert_eq!(s.pending_requests(1), Some(32));
    assert_eq!(
        rx.len(),
        (1_000 - 32) * 17,
        "the rest stays in the caller's buffer"
    );
    // refused again, nothing consumed, until the application answers
    assert_eq!(s.handle_input(t0, 1, rx), Err(Error::TooManyInFlight));
    let mut out = [0u8; 64];
    let _ = s
        .respond(t0, 1, 11, taken[0], Status::Success, b"q", &mut out)
        .unwrap();
    assert_eq!(s.pending_requests(1), Some(31));
    let r = s.handle_input(t0, 1, rx).unwrap();
    assert!(matches!(r.app(), Some(ServerApp::Request { .. })));
    assert_eq!(
        s.handle_input(t0, 1, &rx[17..]),
        Err(Error::TooManyInFlight)
    );
    // meanwhile another client logs in and is answered in the same instant
    auth(&mut s, 2, t0);
    let req = packet(&Packet::request(11, RequestId(5), 0, b"x"));
    let r = s.handle_input(t0, 2, &req).unwrap();
    let Some(ServerApp::Request { request_id, .. }) = r.app().copied() else {
        panic!("request of the other client");
    };
    let _ = s
        .respond(t0, 2, 11, request_id, Status::Success, b"q", &mut out)
        .unwrap();
    // and the stuck one still times out (150 s without a complete packet taken in)
    let later = t0 + Duration::from_secs(150);
    s.handle_timeout(later);
    let (frames, events) = drain(&mut s, later);
    assert_eq!(
        close_push(&frames, 1).unwrap().0,
        CloseCode::HeartbeatTimeout
    );
    assert!(events.contains(&ServerEvent::Closed {
        peer: 1,
        cause: CloseCause::Timeout
    }));
    assert!(
        events.contains(&ServerEvent::Closed {
            peer: 2,
            cause: CloseCause::Timeout
        }),
        "2 is silent too"
    );
}

/// What a driver needs to bound its outbox: the machine's own frames for a peer (control
/// answers, echoes, refusals, pings, the close) are bounded slots, `has_pending_output` says
/// whether any wait, and a peer whose outbox stays full is dropped with `handle_closed` (no
/// frame is queued for it any more, `Closed { TransportClosed }` follows at once)
#[test]
fn a_stuck_peer_is_dropped_with_handle_closed() {
    let now = Instant::from_secs(1);
    let mut s = Srv::with_capacities(
        ServerConfig::new()
            .with_rate_limit(Some(tether_net::longport::RateLimit::per_second(1, 1))),
    );
    s.handle_connected(now, 1, Transport::WebSocket, Source::UNKNOWN)
        .unwrap();
    let _ = s.handle_input(now, 1, &auth_req(1, "tok")).unwrap();
    s.accept_auth(now, 1, Grant::new(SessionId::from_random([1; 16]), FAR))
        .unwrap();
    assert!(s.has_pending_output(1), "the auth response waits");
    drain(&mut s, now);
    assert!(!s.has_pending_output(1));
    // a burst over the rate limit: the machine's refusals wait in at most 4 slots; one more
    // request is refused with QueueFull (drain, then retry) until they are handed out
    let req = |id| packet(&Packet::request(11, RequestId(id), 0, b"x"));
    assert!(s.handle_input(now, 1, &req(2)).unwrap().app().is_some());
    for id in 3..7 {
        assert!(s.handle_input(now, 1, &req(id)).unwrap().app().is_none());
    }
    assert_eq!(s.handle_input(now, 1, &req(7)), Err(Error::QueueFull));
    assert!(s.has_pending_output(1));
    // the driver cannot write them (the peer does not read): it gives up on the peer
    s.handle_closed(now, 1);
    assert!(!s.has_pending_output(1));
    let (frames, events) = drain(&mut s, now);
    assert!(frames.is_empty());
    assert_eq!(
        events,
        [ServerEvent::Closed {
            peer: 1,
            cause: CloseCause::TransportClosed
        }]
    );
}

// =============================================================================================
// Status 6 and the token loop
// =============================================================================================

/// Drive a WebSocket client whose every login is answered with status 6 `Error{403}` for an
/// hour, providing a token whenever it asks; returns (tokens asked for, final state)
fn refused_for_an_hour(config: ClientConfig) -> (u32, ClientState, Vec<ClientEvent>) {
    let mut c = Client::new(config);
    let mut now = Instant::from_secs(1);
    c.connect(now, Credentials::new("t")).unwrap();
    let refusal = encode(&ErrorBody::new(403, "connections limitation is hit"));
    let mut buf = [0u8; 1024];
    let (mut tokens, mut events) = (0, Vec::new());
    while now < Instant::from_secs(3_601) {
        while let Some(e) = c.poll_event() {
            events.push(e);
            match e {
                ClientEvent::ConnectTransport { .. } => c.handle_connected(now).unwrap(),
                ClientEvent::TokenNeeded => {
                    tokens += 1;
                    c.provide_token(now, "t").unwrap();
                }
                _ => {}
            }
        }
        let mut login = None;
        while let Some(t) = c.poll_transmit(now, &mut buf).unwrap() {
            if let Ok((p, _)) = Packet::parse(&buf[..t.len], 1 << 20) {
                login = p.header.kind.request_id();
            }
        }
        if let Some(rid) = login {
            let resp = packet(&Packet::response(
                2,
                rid,
                Status::PermissionDenied,
                &refusal,
            ));
            let _ = c.handle_input(now, (), &resp).unwrap();
            continue;
        }
        match c.poll_timeout() {
            Some(t) => now = t.max(now),
            None => break,
        }
        c.handle_timeout(now);
    }
    (tokens, c.state(), events)
}

/// A login refused for the account's connection quota (status 6) ends in a distinct outcome:
/// with the default `QuotaPolicy::Stop` the client stops (before: a new token every ≤ 30 s for
/// ever, 124 in an hour); with `RetryAfter(10 min)` it asks for a token once per 10 minutes
#[test]
fn status_6_refusal_stops_instead_of_looping_for_tokens() {
    let (tokens, state, events) = refused_for_an_hour(ClientConfig::websocket());
    assert_eq!(tokens, 0);
    assert_eq!(state, ClientState::Stopped);
    assert_eq!(
        events[1..],
        [
            ClientEvent::LoginFailed {
                kind: tether_net::longport::LoginKind::Auth,
                status: Status::PermissionDenied,
                code: Some(403)
            },
            ClientEvent::Disconnected {
                cause: CloseCause::LoginRejected(Status::PermissionDenied)
            }
        ]
    );
    let config = ClientConfig::websocket()
        .with_quota_policy(QuotaPolicy::RetryAfter(Duration::from_secs(600)));
    let (tokens, state, events) = refused_for_an_hour(config);
    assert_eq!(
        tokens, 5,
        "one per 10 minutes after the first refusal (at 601 s, ..., 3001 s)"
    );
    assert_ne!(state, ClientState::Stopped);
    let scheduled: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::ReconnectScheduled { at, .. } => Some(*at),
            _ => None,
        })
        .collect();
    assert_eq!(scheduled.len(), 6);
    assert_eq!(scheduled[1] - scheduled[0], Duration::from_secs(600));
}

/// The forged-Reconnect attack of the report end to end with the old session scheme: the
/// attacker had the victim's session (`s-1` then) and displaced it, and the victim's client
/// stopped for good on `ConnectDuplicate`. Now the displaced client re-authenticates with a
/// fresh token and gets a session of its own; the holder of the old one keeps it.
#[test]
fn a_displaced_client_is_not_stopped_for_good() {
    let mut rng = Rng::new(9);
    let now = Instant::from_secs(1);
    let mut c = Client::new(ClientConfig::websocket());
    c.connect(now, Credentials::new("t1")).unwrap();
    while c.poll_event().is_some() {}
    c.handle_connected(now).unwrap();
    let mut buf = [0u8; 512];
    while c.poll_transmit(now, &mut buf).unwrap().is_some() {}
    let sid = random_session(&mut rng);
    let grant = encode(&SessionGrant {
        session_id: sid.as_str(),
        expires: FAR,
        limit: 0,
        online: 0,
    });
    let resp = packet(&Packet::response(2, RequestId(1), Status::Success, &grant));
    let _ = c.handle_input(now, (), &resp).unwrap();
    assert!(c.is_connected());
    let dup = encode(&Close::new(
        CloseCode::ConnectDuplicate,
        "connect duplicate",
    ));
    let push = packet(&Packet::push(0, &dup));
    let _ = c.handle_input(now, (), &push).unwrap();
    let events: Vec<_> = core::iter::from_fn(|| c.poll_event()).collect();
    assert_eq!(
        events[1..3],
        [
            ClientEvent::Disconnected {
                cause: CloseCause::Peer {
                    code: CloseCode::ConnectDuplicate
                }
            },
            ClientEvent::TokenNeeded
        ]
    );
    assert_ne!(c.state(), ClientState::Stopped);
    c.provide_token(now, "t2").unwrap();
    let at = now + Duration::from_secs(2);
    c.handle_timeout(at);
    assert_eq!(
        c.poll_event(),
        Some(ClientEvent::ConnectTransport { attempt: 1 })
    );
    c.handle_connected(at).unwrap();
    let t = c.poll_transmit(at, &mut buf).unwrap().unwrap();
    let (p, _) = Packet::parse(&buf[..t.len], 1 << 20).unwrap();
    assert_eq!(p.header.cmd, 2, "a fresh Auth, not the displaced session");
}
