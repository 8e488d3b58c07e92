//! Game client and server sessions in the simulator (deterministic seeds, virtual clock)
//!
//! Handshakes in token and vanilla mode, loss of each handshake packet, keep-alive cadence,
//! timeouts, close reasons, dropped forgeries, a full server, chunk packets both ways, and fleets
//! of clients on lossy, duplicating, reordering links.

#[path = "support/game_net.rs"]
mod game_net;

use std::cell::RefCell;
use std::rc::Rc;

use game_net::*;
use tether_net::game::{Client, Server};
use tether_net::game::{
    ClientConfig, ClientEvent, ClientState, CloseCause, ServerConfig, ServerEvent, TokenSecret,
    VanillaPolicy,
};
use tether_net::testing::{Direction, Fate, Fleet, LinkConfig, Pair, TraceRecord};
use tether_net::{Duration, FrameKind, Instant};

const SECRET: TokenSecret = TokenSecret([0x5a; 16]);
const ADDR: u32 = 7;
/// How late a timer may be handled: the simulator handles every timer at its deadline, so the
/// tolerance of "one poll" is the smallest step we allow for rounding
const POLL: Duration = Duration::from_millis(1);

type Srv = Server<u32, 16>;
type GamePair = Pair<Client, Srv>;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn at(v: u64) -> Instant {
    Instant::from_millis(v)
}

fn server_with(vanilla: VanillaPolicy) -> Srv {
    Server::with_capacities(ServerConfig::new(SECRET).with_vanilla(vanilla))
}

fn client_with(config: ClientConfig) -> Client {
    Client::new(config)
}

fn vanilla_config() -> ClientConfig {
    ClientConfig::new().with_vanilla(true)
}

/// A pair over `link` with the closed-checks on and the transcript recorded; nothing started
fn pair_with(client: Client, server: Srv, link: LinkConfig, seed: u64) -> GamePair {
    let mut p = Pair::new(client, server, ADDR, link, seed);
    p.fleet_mut().client_closed_when(client_closed);
    p.fleet_mut().server_closed_when(server_stopped);
    p.record_transcript(true);
    p
}

/// Default token client and Reject server over `link`, connect called at the start
fn connecting_pair(link: LinkConfig, seed: u64) -> GamePair {
    let mut p = pair_with(
        client_with(ClientConfig::default()),
        server_with(VanillaPolicy::Reject),
        link,
        seed,
    );
    let now = p.now();
    p.client_mut().connect(now).unwrap();
    p
}

fn both_online(p: &GamePair) -> bool {
    p.client().state() == ClientState::Online && p.server().is_online(ADDR)
}

/// Run until both sides are online (panics with the transcript when they are not within `budget`)
fn run_online(p: &mut GamePair, budget: Duration) {
    if let Err(e) = p.run_until(both_online, budget) {
        for r in p.transcript() {
            eprintln!("{r}");
        }
        panic!("not online on both sides: {e}");
    }
}

fn connected_events(events: &[ClientEvent]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, ClientEvent::Connected { .. }))
        .count()
}

fn closed_events(events: &[ClientEvent]) -> Vec<CloseCause> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Closed { cause } => Some(*cause),
            _ => None,
        })
        .collect()
}

fn peer_connected(events: &[ServerEvent<u32>], peer: u32) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, ServerEvent::Connected { peer: p, .. } if *p == peer))
        .count()
}

fn first(t: &[TraceRecord], dir: Direction, id: u8) -> &TraceRecord {
    frames(t, 0, dir, id)
        .next()
        .unwrap_or_else(|| panic!("no control {id} frame {dir}"))
}

// ---------------------------------------------------------------------------------------------
// Handshakes

#[test]
fn token_handshake_by_default() {
    let mut p = connecting_pair(LinkConfig::perfect(), 1);
    run_online(&mut p, Duration::from_secs(1));
    // CONNECT at 0 arrives at 10 ms, CONNECT_ACCEPT at 20 ms, ACCEPT at 30 ms
    assert_eq!(p.now(), at(30));
    let tok = p.server().token_for(ADDR);
    assert_eq!(p.client().token(), Some(tok));
    assert_eq!(p.server().peer_token(ADDR), Some(tok));
    assert_eq!(
        p.client_events(),
        [ClientEvent::Connected { token: Some(tok) }]
    );
    assert_eq!(
        p.server_events(),
        [ServerEvent::Connected {
            peer: ADDR,
            token: Some(tok)
        }]
    );
    let t = p.transcript();
    let bytes: Vec<&[u8]> = t.iter().map(|r| r.bytes.as_slice()).collect();
    let mut accept_ca = b"\x10\x00\x00\x02TKEN".to_vec();
    accept_ca.extend_from_slice(&tok.0);
    let mut accept = b"\x10\x00\x00\x03".to_vec();
    accept.extend_from_slice(&tok.0);
    assert_eq!(
        bytes,
        [
            b"\x10\x00\x00\x01TKEN\xff\xff\xff\xff".as_slice(),
            accept_ca.as_slice(),
            accept.as_slice()
        ]
    );
    assert!(t.iter().all(|r| r.fate == Fate::Delivered));
    // stays up: a minute of keep-alives without any retry or drop
    p.run_for(Duration::from_secs(60));
    assert!(both_online(&p));
    let c = p.client().stats();
    let s = p.server().stats();
    assert_eq!(c.accept_retries, 0);
    assert_eq!(c.connects_sent, 1);
    assert_eq!(c.dropped_wrong_token + c.dropped_bad_ack, 0);
    assert_eq!(s.dropped_wrong_token + s.dropped_bad_ack, 0);
    assert_eq!(s.peers_admitted, 1);
}

#[test]
fn vanilla_client_admitted_at_once_by_admit_policy() {
    let mut p = pair_with(
        client_with(vanilla_config()),
        server_with(VanillaPolicy::Admit),
        LinkConfig::perfect(),
        2,
    );
    p.client_mut().connect(Instant::ZERO).unwrap();
    // the server admits on the CONNECT itself (10 ms); the client is online at 20 ms
    run_online(&mut p, Duration::from_secs(1));
    assert_eq!(p.now(), at(20));
    assert_eq!(p.client_events(), [ClientEvent::Connected { token: None }]);
    assert_eq!(
        p.server_events(),
        [ServerEvent::Connected {
            peer: ADDR,
            token: None
        }]
    );
    let t = p.transcript();
    assert_eq!(t[0].bytes, [0x10, 0, 0, 1]);
    assert_eq!(t[1].bytes, [0x10, 0, 0, 2]);
    p.run_for(Duration::from_secs(30));
    assert!(both_online(&p));
    // every packet of the session is vanilla: 4-byte control packets, no token anywhere
    assert!(p.transcript().iter().all(|r| r.bytes.len() == 4));
    assert_eq!(p.client().token(), None);
    assert_eq!(p.server().peer_token(ADDR), None);
}

#[test]
fn vanilla_client_pending_until_first_chunk_packet() {
    let mut p = pair_with(
        client_with(vanilla_config()),
        server_with(VanillaPolicy::Pending),
        LinkConfig::perfect(),
        3,
    );
    p.client_mut().connect(Instant::ZERO).unwrap();
    p.run_until(
        |p| p.client().state() == ClientState::Online,
        Duration::from_secs(1),
    )
    .unwrap();
    assert_eq!(p.client_events(), [ClientEvent::Connected { token: None }]);
    // a pending slot exists but is not online and produced no event
    p.run_for(Duration::from_secs(1));
    assert_eq!(p.server().peer_count(), 1);
    assert!(!p.server().is_online(ADDR));
    assert!(p.server_events().is_empty());
    // pending: the server resends CONNECT_ACCEPT every 500 ms
    let resends: Vec<Instant> =
        frames(p.transcript(), 0, Direction::ServerToClient, CONNECT_ACCEPT)
            .map(|r| r.sent_at)
            .collect();
    assert!(resends.len() >= 3, "{resends:?}");
    for w in resends.windows(2) {
        assert_eq!(w[1] - w[0], ms(500), "{resends:?}");
    }
    // the first chunk packet completes the connect
    client_send(p.fleet_mut(), 0, b"hello").unwrap();
    p.run_until(|p| p.server().is_online(ADDR), ms(100))
        .unwrap();
    assert_eq!(
        p.server_events(),
        [ServerEvent::Connected {
            peer: ADDR,
            token: None
        }]
    );
    p.run_for(Duration::from_secs(30));
    assert!(both_online(&p));
    assert_eq!(connected_events(p.client_events()), 1);
}

#[test]
fn vanilla_client_rejected_by_reject_policy() {
    let mut p = pair_with(
        client_with(vanilla_config()),
        server_with(VanillaPolicy::Reject),
        LinkConfig::perfect(),
        4,
    );
    p.client_mut().connect(Instant::ZERO).unwrap();
    let (reasons, _) = close_reasons(p.fleet_mut());
    p.run_until(
        |p| p.client().state() == ClientState::Closed,
        Duration::from_secs(1),
    )
    .unwrap();
    assert_eq!(p.now(), at(20));
    assert_eq!(closed_events(p.client_events()), [CloseCause::Peer]);
    assert_eq!(*reasons.borrow(), [(0, String::new())]);
    assert_eq!(connected_events(p.client_events()), 0);
    // a bare CLOSE, no larger than the CONNECT; nothing kept on the server
    assert_eq!(p.transcript()[1].bytes, [0x10, 0, 0, 4]);
    assert_eq!(p.server().peer_count(), 0);
    assert_eq!(p.server().stats().rejected_vanilla, 1);
    assert!(p.server_events().is_empty());
    // and the client stays silent afterwards (checked by the simulator's closed-test too)
    let n = p.transcript().len();
    p.run_for(Duration::from_secs(20));
    assert_eq!(p.transcript().len(), n);
}

// ---------------------------------------------------------------------------------------------
// Loss of each handshake packet

/// Drop exactly the first frame with control id `id` in direction `dir`
fn drop_first(p: &mut GamePair, dir: Direction, id: u8) {
    let mut done = false;
    p.set_drop_filter(dir, move |b| {
        if !done && control_id(b) == Some(id) {
            done = true;
            true
        } else {
            false
        }
    });
}

fn filtered(t: &[TraceRecord]) -> Vec<(Direction, Option<u8>)> {
    t.iter()
        .filter(|r| r.fate == Fate::Filtered)
        .map(|r| (r.dir, control_id(&r.bytes)))
        .collect()
}

/// After the handshake recovered: a minute online, one event per side, no more retries
fn settle(p: &mut GamePair, retries: u64) {
    let before = p.client().stats().accept_retries;
    assert_eq!(before, retries);
    p.run_for(Duration::from_secs(60));
    assert!(both_online(p));
    assert_eq!(p.client().stats().accept_retries, retries);
    assert_eq!(connected_events(p.client_events()), 1);
    assert_eq!(peer_connected(p.server_events(), ADDR), 1);
    assert_eq!(p.server_events().len(), 1);
}

#[test]
fn lost_connect_recovered_by_connect_resend() {
    let mut p = connecting_pair(LinkConfig::perfect(), 5);
    drop_first(&mut p, Direction::ClientToServer, CONNECT);
    run_online(&mut p, Duration::from_secs(2));
    // resent at 500 ms, then the handshake takes 30 ms
    assert_eq!(p.now(), at(530));
    let t = p.transcript();
    assert_eq!(filtered(t), [(Direction::ClientToServer, Some(CONNECT))]);
    let connects: Vec<Instant> = frames(t, 0, Direction::ClientToServer, CONNECT)
        .map(|r| r.sent_at)
        .collect();
    assert_eq!(connects, [at(0), at(500)]);
    settle(&mut p, 0);
}

#[test]
fn lost_connect_accept_recovered_by_connect_resend() {
    let mut p = connecting_pair(LinkConfig::perfect(), 6);
    drop_first(&mut p, Direction::ServerToClient, CONNECT_ACCEPT);
    run_online(&mut p, Duration::from_secs(2));
    assert_eq!(p.now(), at(530));
    assert_eq!(
        filtered(p.transcript()),
        [(Direction::ServerToClient, Some(CONNECT_ACCEPT))]
    );
    // stateless: the lost reply left nothing behind on the server
    assert_eq!(p.server().stats().connect_accepts_sent, 2);
    settle(&mut p, 0);
}

#[test]
fn lost_accept_recovered_by_accept_retry() {
    let mut p = connecting_pair(LinkConfig::perfect(), 7);
    drop_first(&mut p, Direction::ClientToServer, ACCEPT);
    // the client believes it is online at 20 ms, the server has no peer
    p.run_until(
        |p| p.client().state() == ClientState::Online,
        Duration::from_secs(1),
    )
    .unwrap();
    p.run_for(Duration::from_secs(1));
    assert_eq!(p.server().peer_count(), 0);
    assert!(
        p.server().stats().ignored_unsolicited >= 3,
        "keep-alives do not admit"
    );
    // 2 s after the ACCEPT the client repeats the handshake and the server admits it
    run_online(&mut p, Duration::from_secs(3));
    assert_eq!(p.now(), at(20 + 2_000 + 30));
    assert_eq!(
        filtered(p.transcript()),
        [(Direction::ClientToServer, Some(ACCEPT))]
    );
    settle(&mut p, 1);
}

#[test]
fn slow_link_connect_resend_gives_exactly_one_accept() {
    // 300 ms each way: the CONNECT is resent at 500 ms before the first answer (600 ms) arrives;
    // the answer to the resend (1.1 s) must not bring a second ACCEPT (a DDNet server would take
    // it for a "rejoin" and reset the connection)
    let mut p = connecting_pair(LinkConfig::perfect().with_latency(ms(300)), 23);
    run_online(&mut p, Duration::from_secs(2));
    p.run_for(Duration::from_secs(20));
    let t = p.transcript();
    assert_eq!(frames(t, 0, Direction::ClientToServer, CONNECT).count(), 2);
    assert_eq!(
        frames(t, 0, Direction::ServerToClient, CONNECT_ACCEPT).count(),
        2
    );
    assert_eq!(frames(t, 0, Direction::ClientToServer, ACCEPT).count(), 1);
    settle(&mut p, 0);
}

#[test]
fn lost_accept_of_vanilla_client_is_harmless_under_admit() {
    let mut p = pair_with(
        client_with(vanilla_config()),
        server_with(VanillaPolicy::Admit),
        LinkConfig::perfect(),
        8,
    );
    p.client_mut().connect(Instant::ZERO).unwrap();
    drop_first(&mut p, Direction::ClientToServer, ACCEPT);
    run_online(&mut p, Duration::from_secs(1));
    settle(&mut p, 0);
}

// ---------------------------------------------------------------------------------------------
// Keep-alive cadence

/// Gaps between consecutive sends of one side; every send that is a KEEP_ALIVE must come after
/// `interval` (within one poll) of silence, and no gap may exceed it by more than one poll
fn check_cadence(sends: &[(Instant, Option<u8>)], interval: Duration, from: Instant) -> usize {
    let mut keep_alives = 0;
    for w in sends.windows(2) {
        let ((t0, _), (t1, id)) = (w[0], w[1]);
        if t0 < from {
            continue;
        }
        let gap = t1 - t0;
        assert!(
            gap <= interval + POLL,
            "silence of {gap:?} after {t0} (keep-alive is {interval:?})"
        );
        if id == Some(KEEP_ALIVE) {
            keep_alives += 1;
            assert!(
                gap >= interval,
                "KEEP_ALIVE at {t1} only {gap:?} after the previous send"
            );
        }
    }
    keep_alives
}

#[test]
fn keep_alive_cadence_when_idle() {
    let mut p = connecting_pair(LinkConfig::perfect(), 9);
    run_online(&mut p, Duration::from_secs(1));
    p.run_for(Duration::from_secs(20));
    let t = p.transcript();
    let client = sends(t, 0, Direction::ClientToServer);
    let server = sends(t, 0, Direction::ServerToClient);
    // client: default 250 ms; from its ACCEPT (20 ms) on
    let n = check_cadence(&client, ms(250), at(20));
    assert!(n >= 78, "{n} client keep-alives in 20 s");
    // server: default 1 s, counted from the admission (ACCEPT arrives at 30 ms); the stateless
    // CONNECT_ACCEPT at 10 ms does not start the peer's timer
    assert_eq!(server[1], (at(1_030), Some(KEEP_ALIVE)));
    let n = check_cadence(&server, Duration::from_secs(1), at(30));
    assert!(n >= 18, "{n} server keep-alives in 20 s");
    // the exact spacing: every gap equals the interval on an idle connection
    assert!(client
        .windows(2)
        .skip(2)
        .all(|w| w[1].0 - w[0].0 == ms(250)));
    assert!(server
        .windows(2)
        .skip(1)
        .all(|w| w[1].0 - w[0].0 == Duration::from_secs(1)));
}

#[test]
fn keep_alive_cadence_with_configured_values() {
    let client = client_with(ClientConfig::new().with_keep_alive(Duration::from_secs(1)));
    let server = Server::with_capacities(ServerConfig::new(SECRET).with_keep_alive(ms(300)));
    let mut p = pair_with(client, server, LinkConfig::perfect(), 10);
    p.client_mut().connect(Instant::ZERO).unwrap();
    run_online(&mut p, Duration::from_secs(1));
    p.run_for(Duration::from_secs(10));
    let t = p.transcript();
    let n = check_cadence(
        &sends(t, 0, Direction::ClientToServer),
        Duration::from_secs(1),
        at(20),
    );
    assert!(n >= 9, "{n}");
    let n = check_cadence(&sends(t, 0, Direction::ServerToClient), ms(300), at(30));
    assert!(n >= 32, "{n}");
}

#[test]
fn no_keep_alive_while_chunk_traffic_flows() {
    let mut p = connecting_pair(LinkConfig::perfect(), 11);
    run_online(&mut p, Duration::from_secs(1));
    p.run_for(Duration::from_secs(2));
    // 5 s of traffic: the client sends a chunk packet every 200 ms, the server one every 800 ms
    let start = p.now();
    for k in 0..25u64 {
        if k > 0 {
            p.run_for(ms(200));
        }
        let now = p.now();
        assert_eq!(now, start + ms(200 * k));
        client_send(p.fleet_mut(), 0, &[k as u8]).unwrap();
        if k % 4 == 0 {
            server_send(p.fleet_mut(), ADDR, &[0x80 | k as u8]).unwrap();
        }
    }
    let end = p.now();
    p.run_for(Duration::from_secs(3));
    let t = p.transcript();
    let in_window = |dir| {
        frames(t, 0, dir, KEEP_ALIVE)
            .filter(|r| r.sent_at > start && r.sent_at < end + ms(200))
            .count()
    };
    assert_eq!(in_window(Direction::ClientToServer), 0);
    assert_eq!(in_window(Direction::ServerToClient), 0);
    // idle again afterwards: keep-alives resume at the configured spacing after the last send
    let client = sends(t, 0, Direction::ClientToServer);
    assert!(check_cadence(&client, ms(250), end) >= 10);
    let server = sends(t, 0, Direction::ServerToClient);
    assert!(check_cadence(&server, Duration::from_secs(1), end) >= 2);
    assert_eq!(p.server().stats().chunk_packets_received, 25);
    assert_eq!(p.client().stats().chunk_packets_received, 7);
}

// ---------------------------------------------------------------------------------------------
// Timeouts

/// Last delivery in `dir` at or before `cut`
fn last_delivery(t: &[TraceRecord], dir: Direction, cut: Instant) -> Instant {
    t.iter()
        .filter(|r| r.dir == dir && r.fate == Fate::Delivered && r.at <= cut)
        .map(|r| r.at)
        .max()
        .unwrap()
}

#[test]
fn link_cut_times_out_both_sides_at_the_deadline() {
    for (seed, cut_ms) in [(12, 5_000), (13, 5_137), (14, 7_901)] {
        let mut p = connecting_pair(LinkConfig::perfect().with_latency(ms(25)), seed);
        run_online(&mut p, Duration::from_secs(1));
        p.run_until(|p| p.now() >= at(cut_ms), Duration::from_secs(10))
            .unwrap();
        let cut = p.now();
        p.set_link_up(false);
        let t = p.transcript();
        let client_deadline = last_delivery(t, Direction::ServerToClient, cut) + ms(10_000);
        let server_deadline = last_delivery(t, Direction::ClientToServer, cut) + ms(10_000);

        let timed_out = |p: &GamePair| {
            p.server_events().iter().any(|e| {
                matches!(
                    e,
                    ServerEvent::Closed {
                        cause: CloseCause::Timeout,
                        ..
                    }
                )
            })
        };
        // step by step: the time of the step that closed each side
        let (mut closed_at, mut gone_at) = (None, None);
        while closed_at.is_none() || gone_at.is_none() {
            assert!(p.step(), "idle before both sides timed out");
            assert!(p.now() < cut + ms(20_000));
            if closed_at.is_none() && p.client().state() == ClientState::Closed {
                closed_at = Some(p.now());
            }
            if gone_at.is_none() && timed_out(&p) {
                gone_at = Some(p.now());
            }
        }
        let (closed_at, gone_at) = (closed_at.unwrap(), gone_at.unwrap());
        assert!(
            closed_at >= client_deadline && closed_at <= client_deadline + POLL,
            "client closed at {closed_at}, deadline {client_deadline}"
        );
        assert_eq!(closed_events(p.client_events()), [CloseCause::Timeout]);

        assert!(
            gone_at >= server_deadline && gone_at <= server_deadline + POLL,
            "server dropped the peer at {gone_at}, deadline {server_deadline}"
        );
        assert_eq!(p.server().peer_count(), 0);
        // no CLOSE on timeout, from either side
        let t = p.transcript();
        assert_eq!(frames(t, 0, Direction::ClientToServer, CLOSE).count(), 0);
        assert_eq!(frames(t, 0, Direction::ServerToClient, CLOSE).count(), 0);
        // nothing is sent after the client closed (the closed-check covers it; count too)
        assert!(t
            .iter()
            .filter(|r| r.dir == Direction::ClientToServer)
            .all(|r| r.sent_at <= closed_at));
    }
}

#[test]
fn connect_timeout_when_server_never_answers() {
    let mut p = connecting_pair(LinkConfig::perfect(), 15);
    p.set_link_up(false);
    p.run_until(
        |p| p.client().state() == ClientState::Closed,
        Duration::from_secs(20),
    )
    .unwrap();
    assert_eq!(p.now(), at(10_000));
    assert_eq!(
        closed_events(p.client_events()),
        [CloseCause::ConnectTimeout]
    );
    assert_eq!(p.client().stats().connects_sent, 20);
}

// ---------------------------------------------------------------------------------------------
// Close reasons

#[test]
fn client_close_reason_reaches_server() {
    let mut p = connecting_pair(LinkConfig::perfect(), 16);
    run_online(&mut p, Duration::from_secs(1));
    p.run_for(Duration::from_secs(1));
    let now = p.now();
    let (_, reasons) = close_reasons(p.fleet_mut());
    p.client_mut().close(now, "bye").unwrap();
    p.run_until(|p| p.server().peer_count() == 0, Duration::from_secs(1))
        .unwrap();
    assert_eq!(p.now(), now + ms(10));
    assert_eq!(closed_events(p.client_events()), [CloseCause::Local]);
    assert_eq!(
        p.server_events().last(),
        Some(&ServerEvent::Closed {
            peer: ADDR,
            cause: CloseCause::Peer
        })
    );
    assert_eq!(*reasons.borrow(), [(0, "bye".to_string())]);
    let close = first(p.transcript(), Direction::ClientToServer, CLOSE);
    let mut expect = b"\x10\x00\x00\x04bye\x00".to_vec();
    expect.extend_from_slice(&p.server().token_for(ADDR).0);
    assert_eq!(close.bytes, expect);
    // nothing sent back, nothing sent afterwards by either side
    let n = p.transcript().len();
    p.run_for(Duration::from_secs(15));
    assert_eq!(p.transcript().len(), n);
}

#[test]
fn server_close_reason_reaches_client() {
    let mut p = connecting_pair(LinkConfig::perfect(), 17);
    run_online(&mut p, Duration::from_secs(1));
    let now = p.now();
    let (reasons, _) = close_reasons(p.fleet_mut());
    p.server_mut().close(now, ADDR, "Kicked (test)").unwrap();
    p.run_until(
        |p| p.client().state() == ClientState::Closed,
        Duration::from_secs(1),
    )
    .unwrap();
    assert_eq!(closed_events(p.client_events()), [CloseCause::Peer]);
    assert_eq!(*reasons.borrow(), [(0, "Kicked (test)".to_string())]);
    assert_eq!(
        p.server_events().last(),
        Some(&ServerEvent::Closed {
            peer: ADDR,
            cause: CloseCause::Local
        })
    );
    assert_eq!(p.server().peer_count(), 0);
    let n = p.transcript().len();
    p.run_for(Duration::from_secs(15));
    assert_eq!(p.transcript().len(), n, "silence after the kick");
}

#[test]
fn shutdown_reason_reaches_every_client() {
    let mut f: GameFleet<16> = Fleet::new(
        server_with(VanillaPolicy::Admit),
        3,
        |i| client_with(ClientConfig::new().with_vanilla(i == 2)),
        |i| 100 + i as u32,
        LinkConfig::perfect(),
        18,
    );
    f.client_closed_when(client_closed);
    f.server_closed_when(server_stopped);
    for i in 0..3 {
        f.client_mut(i).connect(Instant::ZERO).unwrap();
    }
    f.run_until(|f| f.server().peer_count() == 3, Duration::from_secs(1))
        .unwrap();
    let now = f.now();
    let (reasons, _) = close_reasons(&mut f);
    f.server_mut().shutdown(now, "Server shutdown").unwrap();
    f.run_until(
        |f| (0..3).all(|i| f.client(i).state() == ClientState::Closed),
        Duration::from_secs(1),
    )
    .unwrap();
    for i in 0..3 {
        assert_eq!(
            closed_events(f.client_events(i)),
            [CloseCause::Peer],
            "client {i}"
        );
    }
    let mut got = reasons.borrow().clone();
    got.sort();
    assert_eq!(
        got,
        (0..3)
            .map(|i| (i, "Server shutdown".to_string()))
            .collect::<Vec<_>>()
    );
    let ev = f.server_events();
    let shut = ev
        .iter()
        .filter(|e| {
            matches!(
                e,
                ServerEvent::Closed {
                    cause: CloseCause::Shutdown,
                    ..
                }
            )
        })
        .count();
    assert_eq!(shut, 3);
    assert_eq!(ev.last(), Some(&ServerEvent::ShutdownComplete));
    // everyone is silent afterwards (the closed-checks would also panic on a transmit)
    let (c, s) = (f.total_client_stats().transmits, f.server_stats().transmits);
    f.run_for(Duration::from_secs(30));
    assert_eq!(f.total_client_stats().transmits, c);
    assert_eq!(f.server_stats().transmits, s);
    assert_eq!(f.server().state(), tether_net::game::ServerState::Stopped);
}

// ---------------------------------------------------------------------------------------------
// Forged packets

#[test]
fn wrong_token_and_bad_ack_are_dropped_and_counted() {
    let mut p = connecting_pair(LinkConfig::perfect(), 19);
    run_online(&mut p, Duration::from_secs(1));
    let tok = p.server().token_for(ADDR).0;
    let wrong = [tok[0] ^ 0xff, tok[1], tok[2], tok[3]];
    let with = |head: &[u8], t: [u8; 4]| {
        let mut v = head.to_vec();
        v.extend_from_slice(&t);
        v
    };
    let c0 = p.client().stats();
    let s0 = p.server().stats();
    let s_events = p.server_events().len();

    // to the client: CLOSE and a chunk packet with the wrong token, CLOSE with ack 5
    p.inject_to_client(FrameKind::Datagram, &with(b"\x10\x00\x00\x04x\x00", wrong));
    p.inject_to_client(FrameKind::Datagram, &with(b"\x00\x00\x01\xaa", wrong));
    p.inject_to_client(FrameKind::Datagram, &with(b"\x10\x05\x00\x04y\x00", tok));
    // to the server: the same, plus an ACCEPT with the wrong token
    p.inject_to_server(FrameKind::Datagram, &with(b"\x10\x00\x00\x04x\x00", wrong));
    p.inject_to_server(FrameKind::Datagram, &with(b"\x00\x00\x01\xaa", wrong));
    p.inject_to_server(FrameKind::Datagram, &with(b"\x10\x05\x00\x04y\x00", tok));
    p.inject_to_server(FrameKind::Datagram, &with(b"\x10\x00\x00\x03", wrong));

    let c1 = p.client().stats();
    let s1 = p.server().stats();
    assert_eq!(c1.dropped_wrong_token - c0.dropped_wrong_token, 2);
    assert_eq!(c1.dropped_bad_ack - c0.dropped_bad_ack, 1);
    assert_eq!(c1.chunk_packets_received, c0.chunk_packets_received);
    assert_eq!(s1.dropped_wrong_token - s0.dropped_wrong_token, 3);
    assert_eq!(s1.dropped_bad_ack - s0.dropped_bad_ack, 1);
    assert_eq!(s1.chunk_packets_received, s0.chunk_packets_received);
    assert!(p.client_events().len() == 1 && p.server_events().len() == s_events);
    assert_eq!(p.fleet().client_stats(0).app_frames, 0);
    assert_eq!(p.fleet().server_stats().app_frames, 0);
    // the session is unaffected
    p.run_for(Duration::from_secs(30));
    assert!(both_online(&p));
    assert_eq!(p.client().token(), Some(tether_net::game::Token(tok)));
}

#[test]
fn forged_accept_from_unknown_address_creates_nothing() {
    let mut p = connecting_pair(LinkConfig::perfect(), 20);
    run_online(&mut p, Duration::from_secs(1));
    // the client moves to another address and replays its ACCEPT there: the token is minted per
    // address, so the replay is dropped
    p.set_client_addr(ADDR + 1);
    let mut accept = b"\x10\x00\x00\x03".to_vec();
    accept.extend_from_slice(&p.server().token_for(ADDR).0);
    let before = p.server().stats().dropped_wrong_token;
    p.inject_to_server(FrameKind::Datagram, &accept);
    assert_eq!(p.server().stats().dropped_wrong_token, before + 1);
    assert!(!p.server().is_online(ADDR + 1));
    assert_eq!(p.server().peer_count(), 1);
}

// ---------------------------------------------------------------------------------------------
// Server full

#[test]
fn third_client_of_a_two_slot_server_is_told_it_is_full() {
    let mut f: GameFleet<2> = Fleet::new(
        Server::with_capacities(ServerConfig::new(SECRET)),
        3,
        |_| client_with(ClientConfig::default()),
        |i| 200 + i as u32,
        LinkConfig::perfect(),
        21,
    );
    f.client_closed_when(client_closed);
    f.record_transcript(true);
    let (reasons, _) = close_reasons(&mut f);
    for i in 0..2 {
        f.client_mut(i).connect(Instant::ZERO).unwrap();
    }
    f.run_until(|f| f.server().peer_count() == 2, Duration::from_secs(1))
        .unwrap();
    let now = f.now();
    f.client_mut(2).connect(now).unwrap();
    f.run_until(
        |f| f.client(2).state() == ClientState::Closed,
        Duration::from_secs(1),
    )
    .unwrap();
    // it was accepted (CONNECT_ACCEPT is stateless), then refused on its ACCEPT
    assert!(matches!(
        f.client_events(2)[0],
        ClientEvent::Connected { token: Some(_) }
    ));
    assert_eq!(closed_events(f.client_events(2)), [CloseCause::Peer]);
    assert_eq!(*reasons.borrow(), [(2, "This server is full".to_string())]);
    assert_eq!(f.server().peer_count(), 2);
    assert_eq!(f.server().stats().rejected_full, 1);
    // the refusal carries the client's token
    let close = frames(f.transcript(), 2, Direction::ServerToClient, CLOSE)
        .next()
        .unwrap();
    assert!(close.bytes.ends_with(&f.server().token_for(202).0));
    f.run_for(Duration::from_secs(30));
    assert!((0..2).all(|i| f.client(i).state() == ClientState::Online));
    assert!(f.server().is_online(200) && f.server().is_online(201));
}

// ---------------------------------------------------------------------------------------------
// Chunk packets

/// Chunk packets a side received: (num_chunks, payload)
type Received = Rc<RefCell<Vec<(u8, Vec<u8>)>>>;

#[test]
fn chunk_packets_both_ways_arrive_borrowed_with_their_payloads() {
    let mut p = connecting_pair(LinkConfig::perfect(), 22);
    let to_server: Received = Rc::default();
    let to_client: Received = Rc::default();
    let (ts, tc) = (to_server.clone(), to_client.clone());
    p.fleet_mut().on_server_app(move |_, app| {
        let c = app.chunks().expect("chunks");
        ts.borrow_mut()
            .push((c.header.num_chunks, c.payload.to_vec()))
    });
    p.fleet_mut().on_client_app(move |_, app| {
        let c = app.chunks().expect("chunks");
        tc.borrow_mut()
            .push((c.header.num_chunks, c.payload.to_vec()))
    });
    // not online yet: refused without side effects
    assert!(client_send(p.fleet_mut(), 0, b"early").is_err());
    assert!(server_send(p.fleet_mut(), ADDR, b"early").is_err());
    run_online(&mut p, Duration::from_secs(1));
    client_send(p.fleet_mut(), 0, b"hello").unwrap();
    client_send(p.fleet_mut(), 0, &[0u8; 1000]).unwrap();
    server_send(p.fleet_mut(), ADDR, b"welcome").unwrap();
    server_send(p.fleet_mut(), ADDR, &[]).unwrap();
    p.run_for(Duration::from_secs(1));
    assert_eq!(
        *to_server.borrow(),
        [(1, b"hello".to_vec()), (1, vec![0u8; 1000])]
    );
    assert_eq!(*to_client.borrow(), [(1, b"welcome".to_vec()), (1, vec![])]);
    // the token travels at the end of every chunk packet and is stripped on arrival
    let tok = p.server().token_for(ADDR).0;
    let chunk = p
        .transcript()
        .iter()
        .find(|r| r.dir == Direction::ClientToServer && is_chunks(&r.bytes))
        .unwrap();
    assert_eq!(chunk.bytes, [&[0, 0, 1][..], b"hello", &tok].concat());
    // the largest packet the session produced stays within the protocol limit
    assert!(p.transcript().iter().all(|r| r.bytes.len() <= 1400));
    // a payload that would exceed 1400 bytes is refused
    assert!(client_send(p.fleet_mut(), 0, &[0u8; 1394]).is_err());
    assert!(client_send(p.fleet_mut(), 0, &[0u8; 1393]).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Bad links and fleets

#[test]
fn duplicated_and_reordered_datagrams_break_nothing() {
    let link = LinkConfig::perfect()
        .with_duplicate(0.3)
        .with_reorder(0.3, ms(80))
        .with_jitter(ms(30));
    for seed in 30..40 {
        let mut p = connecting_pair(link, seed);
        let got: Rc<RefCell<Vec<Vec<u8>>>> = Rc::default();
        let g = got.clone();
        p.fleet_mut().on_server_app(move |_, app| {
            if let Some(c) = app.chunks() {
                g.borrow_mut().push(c.payload.to_vec());
            }
        });
        run_online(&mut p, Duration::from_secs(3));
        for k in 0..20u8 {
            client_send(p.fleet_mut(), 0, &[k]).unwrap();
            p.run_for(ms(50));
        }
        p.run_for(Duration::from_secs(30));
        assert!(both_online(&p), "seed {seed}");
        assert_eq!(connected_events(p.client_events()), 1, "seed {seed}");
        assert_eq!(p.server_events().len(), 1, "seed {seed}");
        let c = p.client().stats();
        let s = p.server().stats();
        assert_eq!(
            c.dropped_wrong_token + c.dropped_bad_ack + c.dropped_malformed,
            0
        );
        assert_eq!(
            s.dropped_wrong_token + s.dropped_bad_ack + s.dropped_malformed,
            0
        );
        // every chunk arrived at least once (duplicates are the application's business)
        let mut seen: Vec<u8> = got.borrow().iter().map(|v| v[0]).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, (0..20).collect::<Vec<u8>>(), "seed {seed}");
        assert!(p.transcript().iter().any(|r| r.fate == Fate::Duplicate));
    }
}

/// A fleet of `n` default token clients at addresses `0..n`, all connecting at time 0
fn fleet<const N: usize>(n: usize, link: LinkConfig, seed: u64) -> GameFleet<N> {
    let server = Server::with_capacities(ServerConfig::new(SECRET).with_max_peers(n));
    let mut f = Fleet::new(
        server,
        n,
        |_| client_with(ClientConfig::default()),
        |i| i as u32,
        link,
        seed,
    );
    f.client_closed_when(client_closed);
    f.keep_events(false);
    for i in 0..n {
        f.client_mut(i).connect(Instant::ZERO).unwrap();
    }
    f
}

fn all_connected<const N: usize>(f: &GameFleet<N>) -> bool {
    f.server().peer_count() == f.len()
        && (0..f.len()).all(|i| f.client(i).state() == ClientState::Online)
}

fn fleet_report<const N: usize>(f: &GameFleet<N>) -> String {
    let online = (0..f.len())
        .filter(|&i| f.client(i).state() == ClientState::Online)
        .count();
    let stranded: Vec<usize> = (0..f.len())
        .filter(|&i| f.client(i).state() == ClientState::Online && !f.server().is_online(i as u32))
        .collect();
    let others: Vec<String> = (0..f.len())
        .filter(|&i| f.client(i).state() != ClientState::Online)
        .take(5)
        .map(|i| {
            format!(
                "client {i}: {:?} {:?}",
                f.client(i).state(),
                f.client(i).stats()
            )
        })
        .collect();
    format!(
        "at {}: {online} clients online, server has {} peers; online clients the server does not know: {stranded:?}; {others:?}; server {:?}",
        f.now(),
        f.server().peer_count(),
        f.server().stats()
    )
}

/// Every client connected (one `Connected` each) and admitted within `budget`, then 30 s of
/// virtual time with nobody lost
fn check_fleet<const N: usize>(f: &mut GameFleet<N>, budget: Duration) {
    let n = f.len();
    let closed = Rc::new(RefCell::new(0usize));
    let connected = Rc::new(RefCell::new(0usize));
    let (cl, co) = (closed.clone(), connected.clone());
    f.on_client_event(move |_, e| match e {
        ClientEvent::Connected { .. } => *co.borrow_mut() += 1,
        ClientEvent::Closed { .. } => *cl.borrow_mut() += 1,
        _ => {}
    });
    let lost = Rc::new(RefCell::new(0usize));
    let l = lost.clone();
    f.on_server_event(move |_, e| {
        if matches!(e, ServerEvent::Closed { .. }) {
            *l.borrow_mut() += 1;
        }
    });
    // cheap predicate first (O(1)), the full check only when the counts match
    let res = f.run_until(
        |f| f.server().peer_count() == n && *connected.borrow() >= n && all_connected(f),
        budget,
    );
    if let Err(e) = res {
        panic!("{e}: {}", fleet_report(f));
    }
    let t_connected = f.now();
    f.run_for(Duration::from_secs(30));
    assert!(all_connected(f), "after 30 s: {}", fleet_report(f));
    assert_eq!(*closed.borrow(), 0, "no client closed");
    assert_eq!(*lost.borrow(), 0, "no peer lost");
    assert_eq!(*connected.borrow(), n, "one Connected per client");
    assert_eq!(f.server().stats().peers_admitted as usize, n);
    assert!(
        (0..n).all(|i| f.server().is_online(i as u32)),
        "{}",
        fleet_report(f)
    );
    eprintln!("{n} clients connected at {t_connected}");
}

#[test]
fn hundred_clients_under_20_percent_loss_all_connect_and_stay() {
    for seed in [40, 41, 42] {
        let mut f = fleet::<256>(100, LinkConfig::lossy(0.2), seed);
        check_fleet(&mut f, Duration::from_secs(30));
    }
}

#[test]
fn thousand_clients_under_5_percent_loss_all_admitted() {
    let link = LinkConfig::lossy(0.05).with_jitter(ms(20));
    let mut f = fleet::<2048>(1000, link, 50);
    check_fleet(&mut f, Duration::from_secs(30));
}

#[test]
fn thousand_clients_under_20_percent_loss_all_admitted() {
    let link = LinkConfig::lossy(0.2)
        .with_jitter(ms(40))
        .with_duplicate(0.05)
        .with_reorder(0.05, ms(50));
    let mut f = fleet::<2048>(1000, link, 51);
    check_fleet(&mut f, Duration::from_secs(30));
}

#[test]
fn lost_accepts_under_loss_are_recovered_by_retries() {
    // drop the first ACCEPT of every client on top of random loss: none may stay stranded
    let mut f = fleet::<256>(100, LinkConfig::lossy(0.1), 60);
    let mut seen = std::collections::HashSet::new();
    f.set_drop_filter(Direction::ClientToServer, move |i, b| {
        control_id(b) == Some(ACCEPT) && seen.insert(i)
    });
    let retries = |f: &GameFleet<256>| {
        (0..f.len())
            .map(|i| f.client(i).stats().accept_retries)
            .sum::<u64>()
    };
    check_fleet(&mut f, Duration::from_secs(30));
    let r = retries(&f);
    assert!(r >= 100, "every client had to retry: {r}");
}

// ---------------------------------------------------------------------------------------------
// The simulator's drop filter (added for these tests)

#[test]
fn drop_filter_drops_only_the_chosen_frames_and_can_be_cleared() {
    let mut f: GameFleet<16> = Fleet::new(
        server_with(VanillaPolicy::Reject),
        2,
        |_| client_with(ClientConfig::default()),
        |i| 300 + i as u32,
        LinkConfig::perfect(),
        70,
    );
    f.record_transcript(true);
    // client 1's CONNECTs never reach the server; every server KEEP_ALIVE to client 0 is dropped
    f.set_drop_filter(Direction::ClientToServer, |i, b| {
        i == 1 && control_id(b) == Some(CONNECT)
    });
    f.set_drop_filter(Direction::ServerToClient, |i, b| {
        i == 0 && control_id(b) == Some(KEEP_ALIVE)
    });
    for i in 0..2 {
        f.client_mut(i).connect(Instant::ZERO).unwrap();
    }
    f.run_for(Duration::from_secs(4));
    assert_eq!(f.client(0).state(), ClientState::Online);
    assert_eq!(f.client(1).state(), ClientState::Connecting);
    let t = f.transcript();
    let dropped = |i: usize, dir: Direction, id: u8| {
        frames(t, i, dir, id)
            .filter(|r| r.fate == Fate::Filtered)
            .count()
    };
    // CONNECT at 0, 0.5, ..., 4.0 s: 9 filtered, none delivered
    assert_eq!(dropped(1, Direction::ClientToServer, CONNECT), 9);
    assert_eq!(
        frames(t, 1, Direction::ClientToServer, CONNECT).count(),
        9,
        "every CONNECT of client 1 was filtered"
    );
    assert_eq!(dropped(0, Direction::ClientToServer, CONNECT), 0);
    // the server's keep-alives to client 0 (at 1.03 and 3.03 s; client 0's lost-ACCEPT retry at
    // 2.02 s made the server answer CONNECT_ACCEPT at 2.03 s) were filtered; filtered frames are
    // reported at send time
    let ka: Vec<&TraceRecord> = frames(t, 0, Direction::ServerToClient, KEEP_ALIVE).collect();
    assert_eq!(ka.len(), 2);
    assert!(ka
        .iter()
        .all(|r| r.fate == Fate::Filtered && r.at == r.sent_at));
    assert_eq!(f.client(0).stats().keep_alives_received, 0);
    // cleared: client 1 connects on its next resend
    f.clear_drop_filter(Direction::ClientToServer);
    f.clear_drop_filter(Direction::ServerToClient);
    f.run_for(Duration::from_secs(2));
    assert_eq!(f.client(1).state(), ClientState::Online);
    assert!(f.server().is_online(301));
    assert!(f.client(0).stats().keep_alives_received >= 1);
    assert_eq!(Fate::Filtered.to_string(), "filtered");
    assert!(!Fate::Filtered.reached_receiver());
}

// ---------------------------------------------------------------------------------------------
// The run loop: step 2 is exactly `tether_net::drain`, with commands issued inside `on_event`

/// Hand out every frame and event of a machine with `tether_net::drain`, appending the frames to
/// `wire`; `on_event` may issue commands
fn drain_into<M: tether_net::Machine>(
    m: &mut M,
    now: Instant,
    wire: &mut Vec<Vec<u8>>,
    on_event: impl FnMut(&mut M, M::Event),
) {
    let mut buf = [0u8; 1400];
    tether_net::drain(
        m,
        now,
        &mut buf,
        |_, bytes| {
            wire.push(bytes.to_vec());
            Ok::<(), ()>(())
        },
        on_event,
    )
    .expect("buffer fits and sending works");
}

#[test]
fn drain_sends_the_close_a_client_issues_on_connected_before_the_loop_sleeps() {
    let mut c = Client::new(ClientConfig::default());
    let mut s = server_with(VanillaPolicy::Reject);
    let now = at(0);
    c.connect(now).unwrap();
    let (mut c2s, mut s2c) = (Vec::new(), Vec::new());
    let mut on_connected = 0;
    for _ in 0..3 {
        drain_into(&mut c, now, &mut c2s, |c, e| {
            if let ClientEvent::Connected { .. } = e {
                on_connected += 1;
                c.close(now, "bye").unwrap();
            }
        });
        // the loop would sleep now: whatever the handler queued went out in this drain
        assert_eq!(c.poll_transmit(now, &mut [0u8; 1400]), Ok(None));
        assert!(c.poll_event().is_none());
        for d in c2s.drain(..) {
            if control_id(&d) == Some(CLOSE) {
                assert_eq!(on_connected, 1, "the CLOSE follows the Connected event");
                let mut close = b"\x10\x00\x00\x04bye\x00".to_vec();
                close.extend_from_slice(&s.token_for(ADDR).0);
                assert_eq!(d, close);
            }
            let _ = s.handle_input(now, ADDR, &d).unwrap();
        }
        drain_into(&mut s, now, &mut s2c, |_, _| {});
        for d in s2c.drain(..) {
            let _ = c.handle_input(now, (), &d).unwrap();
        }
    }
    assert_eq!(on_connected, 1);
    assert_eq!(c.state(), ClientState::Closed);
    // the server got ACCEPT and then the CLOSE: admitted and gone again
    assert_eq!(s.stats().peers_admitted, 1);
    assert_eq!(s.peer_count(), 0);
}

#[test]
fn drain_sends_the_close_a_server_issues_on_connected_before_the_loop_sleeps() {
    let mut c = Client::new(ClientConfig::default());
    let mut s = server_with(VanillaPolicy::Reject);
    let now = at(0);
    c.connect(now).unwrap();
    let (mut c2s, mut s2c) = (Vec::new(), Vec::new());
    let mut closed_by_server = Vec::new();
    let mut client_events = Vec::new();
    for _ in 0..3 {
        drain_into(&mut c, now, &mut c2s, |_, e| client_events.push(e));
        for d in c2s.drain(..) {
            let _ = s.handle_input(now, ADDR, &d).unwrap();
        }
        drain_into(&mut s, now, &mut s2c, |s, e| {
            if let ServerEvent::Connected { peer, .. } = e {
                s.close(now, peer, "Kicked (welcome)").unwrap();
                closed_by_server.push(peer);
            }
        });
        // the loop would sleep now: the CLOSE went out in this drain
        assert_eq!(s.poll_transmit(now, &mut [0u8; 1400]), Ok(None));
        assert!(s.poll_event().is_none());
        for d in s2c.drain(..) {
            if control_id(&d) == Some(CLOSE) {
                assert_eq!(
                    closed_by_server,
                    [ADDR],
                    "the CLOSE follows the Connected event"
                );
            }
            let r = c.handle_input(now, (), &d).unwrap();
            if let Some(reason) = r.into_app().and_then(|a| a.close_reason()) {
                assert_eq!(reason, "Kicked (welcome)");
            }
        }
    }
    assert_eq!(closed_by_server, [ADDR]);
    assert_eq!(s.peer_count(), 0);
    assert_eq!(c.state(), ClientState::Closed);
    drain_into(&mut c, now, &mut c2s, |_, e| client_events.push(e));
    assert!(c2s.is_empty(), "nothing sent back to a CLOSE");
    assert_eq!(connected_events(&client_events), 1);
    assert_eq!(closed_events(&client_events), [CloseCause::Peer]);
}

#[test]
fn game_error_texts_are_what_a_log_shows() {
    use tether_net::game::Error;
    let cases: [(Error, &str); 4] = [
        (
            Error::QueueFull,
            "queue full: drain poll_transmit and poll_event first",
        ),
        (
            Error::BufferTooSmall { required: 9 },
            "output buffer too small: 9 bytes required",
        ),
        (
            Error::TooLong {
                len: 1401,
                max: 1400,
            },
            "packet too long: 1401 bytes, at most 1400",
        ),
        (
            Error::TooManyInFlight,
            "resend buffer full: too many vital chunks not acknowledged yet",
        ),
    ];
    for (e, text) in cases {
        assert_eq!(e.to_string(), text, "{e:?}");
    }
}

#[test]
fn game_codec_error_texts_are_what_a_log_shows() {
    use tether_net::game::connless::ConnlessError;
    use tether_net::game::huffman::{CompressError, DecompressError};
    use tether_net::game::msg::MsgError;
    use tether_net::game::packer::{MsgHeader, UnpackError};
    use tether_net::game::serve::{MapReadError, ServeError};
    use tether_net::game::vital::BadAck;
    let cases: Vec<(String, &str)> = vec![
        (UnpackError::Truncated.to_string(), "message truncated"),
        (
            UnpackError::MissingNul.to_string(),
            "string without NUL terminator",
        ),
        (
            UnpackError::NegativeLength(-3).to_string(),
            "negative length -3",
        ),
        (
            UnpackError::BadMsgId(-1).to_string(),
            "message id out of range (header -1)",
        ),
        (
            MsgError::Unpack(UnpackError::Truncated).to_string(),
            "message truncated",
        ),
        (
            MsgError::Unexpected(MsgHeader::game(8)).to_string(),
            "unexpected message MsgHeader { system: false, id: Ordinal(8) }",
        ),
        (MsgError::BadValue.to_string(), "field value out of range"),
        (
            ConnlessError::TooShort { len: 5 }.to_string(),
            "connless packet too short (5 bytes)",
        ),
        (
            ConnlessError::TooLong { len: 1401 }.to_string(),
            "connless packet too long (1401 bytes)",
        ),
        (
            ConnlessError::NotConnless.to_string(),
            "not a connectionless packet",
        ),
        (
            ConnlessError::SixUp.to_string(),
            "0.7 connectionless packet",
        ),
        (
            ConnlessError::Truncated.to_string(),
            "connless packet truncated",
        ),
        (
            ConnlessError::BadNumber.to_string(),
            "bad number in server info",
        ),
        (
            ConnlessError::UnexpectedType.to_string(),
            "unexpected connless packet type",
        ),
        (MapReadError.to_string(), "map bytes not readable"),
        (
            ServeError::Send(tether_net::game::Error::TooManyInFlight).to_string(),
            "cannot send: resend buffer full: too many vital chunks not acknowledged yet",
        ),
        (
            ServeError::Message(MsgError::BadValue).to_string(),
            "unreadable message: field value out of range",
        ),
        (
            ServeError::Map(MapReadError).to_string(),
            "map bytes not readable",
        ),
        (
            CompressError::OutputFull.to_string(),
            "huffman: compressed data does not fit",
        ),
        (
            DecompressError::OutputFull { limit: 1394 }.to_string(),
            "huffman: decoded data exceeds 1394 bytes",
        ),
        (
            DecompressError::Truncated { decoded: 7 }.to_string(),
            "huffman: input ends before EOF (after 7 bytes)",
        ),
        (
            BadAck {
                ack: 9,
                peer_ack: 2,
                sequence: 5,
            }
            .to_string(),
            "ack 9 outside 2..=5",
        ),
    ];
    for (got, want) in cases {
        assert_eq!(got, want);
    }
}
