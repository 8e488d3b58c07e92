//! Property tests of game sessions in the simulator: random links and seeds
//!
//! Case counts are small: each case simulates tens of seconds of protocol time.

#[path = "support/game_net.rs"]
mod game_net;

use game_net::*;
use proptest::prelude::*;
use tether_net::game::{
    Client, ClientConfig, ClientEvent, ClientState, CloseCause, Server, ServerConfig, ServerEvent,
    TokenSecret, VanillaPolicy,
};
use tether_net::testing::{Direction, Fate, LinkConfig, Pair, TraceRecord};
use tether_net::{Duration, Instant};

const ADDR: u32 = 9;
/// How late a timer may be reported: the simulator handles every timer at its deadline
const POLL: Duration = Duration::from_millis(1);

type GamePair = Pair<Client, Server<u32, 8>>;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// Loss 0..0.3, duplication, reordering, latency 0..200 ms, jitter
fn lossy_link() -> impl Strategy<Value = LinkConfig> {
    (
        0.0..0.3f64,
        0.0..0.2f64,
        0.0..0.2f64,
        0u64..100,
        0u64..=200,
        0u64..=50,
    )
        .prop_map(|(loss, dup, reorder, reorder_ms, latency, jitter)| {
            LinkConfig::perfect()
                .with_loss(loss)
                .with_duplicate(dup)
                .with_reorder(reorder, ms(reorder_ms))
                .with_latency(ms(latency))
                .with_jitter(ms(jitter))
        })
}

fn pair(client: ClientConfig, server: ServerConfig, link: LinkConfig, seed: u64) -> GamePair {
    let mut p = Pair::new(
        Client::new(client),
        Server::with_capacities(server),
        ADDR,
        link,
        seed,
    );
    p.fleet_mut().client_closed_when(client_closed);
    p.fleet_mut().server_closed_when(server_stopped);
    p.record_transcript(true);
    p
}

fn secret(seed: u64) -> ServerConfig {
    let mut s = [0u8; 16];
    s[..8].copy_from_slice(&seed.to_le_bytes());
    s[8] = 1;
    ServerConfig::new(TokenSecret(s))
}

fn both_online(p: &GamePair) -> bool {
    p.client().state() == ClientState::Online && p.server().is_online(ADDR)
}

fn count_closed(events: &[ClientEvent]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, ClientEvent::Closed { .. }))
        .count()
}

fn count_connected(events: &[ClientEvent]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, ClientEvent::Connected { .. }))
        .count()
}

/// Structural invariants of a finished run (the simulator checked the run-loop contract and the
/// silence of a closed client/server while it ran)
fn check_invariants(p: &GamePair) -> Result<(), TestCaseError> {
    let ce = p.client_events();
    prop_assert!(count_closed(ce) <= 1, "{ce:?}");
    prop_assert!(count_connected(ce) <= 1, "{ce:?}");
    // Connected comes before Closed, and nothing after Closed
    if let Some(i) = ce
        .iter()
        .position(|e| matches!(e, ClientEvent::Closed { .. }))
    {
        prop_assert_eq!(i, ce.len() - 1, "{:?}", ce);
    }
    // a peer is announced at most once per admission, and closed at most once after it
    let mut online = false;
    for e in p.server_events() {
        match e {
            ServerEvent::Connected { .. } => {
                prop_assert!(!online, "Connected twice: {:?}", p.server_events());
                online = true;
            }
            ServerEvent::Closed { .. } => {
                prop_assert!(online, "Closed without Connected");
                online = false;
            }
            _ => {}
        }
    }
    prop_assert_eq!(online, p.server().is_online(ADDR));
    let t = p.transcript();
    let longest = t.iter().map(|r| r.bytes.len()).max().unwrap_or(0);
    prop_assert!(longest <= 1400, "datagram of {} bytes", longest);
    prop_assert!(t.iter().all(|r| r.fate != Fate::Unroutable));
    // nothing forged is on this link, so nothing may be dropped as forged
    let c = p.client().stats();
    let s = p.server().stats();
    prop_assert_eq!(
        c.dropped_wrong_token + c.dropped_malformed + c.dropped_bad_ack,
        0
    );
    prop_assert_eq!(
        s.dropped_wrong_token + s.dropped_malformed + s.dropped_bad_ack,
        0
    );
    Ok(())
}

/// Last arrival in `dir` at or before `cut` that the receiver counts as a sign of life
///
/// Everything delivered counts, except a CONNECT at the server: a CONNECT from a known peer is
/// answered but does not refresh the peer's liveness.
fn last_alive(t: &[TraceRecord], dir: Direction, cut: Instant) -> Option<Instant> {
    t.iter()
        .filter(|r| r.dir == dir && r.at <= cut)
        .filter(|r| matches!(r.fate, Fate::Delivered | Fate::Duplicate))
        .filter(|r| !(dir == Direction::ClientToServer && control_id(&r.bytes) == Some(CONNECT)))
        .map(|r| r.at)
        .max()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Random links, random commands: the invariants hold, and when the client stayed online
    /// the server has it too
    #[test]
    fn invariants_hold_on_random_links(
        link in lossy_link(),
        seed in any::<u64>(),
        vanilla in any::<bool>(),
        policy in 0u8..3,
        chunks in proptest::collection::vec((0u64..20_000, 0usize..1390, any::<bool>()), 0..8),
        end in prop_oneof![Just(0u8), Just(1), Just(2), Just(3)],
        end_at in 5_000u64..30_000,
    ) {
        let vanilla_policy = [VanillaPolicy::Reject, VanillaPolicy::Admit, VanillaPolicy::Pending]
            [usize::from(policy)];
        let mut p = pair(
            ClientConfig::new().with_vanilla(vanilla),
            secret(seed).with_vanilla(vanilla_policy),
            link,
            seed,
        );
        p.client_mut().connect(Instant::ZERO).unwrap();
        let mut chunks = chunks;
        chunks.sort_unstable();
        for (at_ms, len, from_client) in chunks {
            let target = Instant::from_millis(at_ms);
            if target > p.now() {
                p.run_for(target - p.now());
            }
            let payload = vec![0xA5u8; len];
            // refused when not online; that is fine here
            let _ = if from_client {
                client_send(p.fleet_mut(), 0, &payload)
            } else {
                server_send(p.fleet_mut(), ADDR, &payload)
            };
        }
        let target = Instant::from_millis(end_at);
        if target > p.now() {
            p.run_for(target - p.now());
        }
        let now = p.now();
        match end {
            0 => {}
            1 => { let _ = p.client_mut().close(now, "bye"); }
            2 => { let _ = p.server_mut().close(now, ADDR, "Kicked (prop)"); }
            _ => p.server_mut().shutdown(now, "Server shutdown").unwrap(),
        }
        p.run_for(Duration::from_secs(15));
        check_invariants(&p)?;
        if end == 0 && p.client().state() == ClientState::Online {
            // (the chance that every one of ~10 handshake restarts lost its ACCEPT is tiny)
            prop_assert!(
                p.server().is_online(ADDR) || p.server().peer_count() == 1,
                "client online, server without it: {:?}", p.server().stats()
            );
        }
        if end == 3 {
            prop_assert_eq!(p.server().state(), tether_net::game::ServerState::Stopped);
        }
    }

    /// A lossless link (any latency up to 200 ms, jitter, duplicates) connects both sides within
    /// two round trips (plus a poll)
    #[test]
    fn lossless_link_connects_within_two_round_trips(
        latency in 0u64..=200,
        jitter in 0u64..=50,
        dup in 0.0..0.5f64,
        seed in any::<u64>(),
        vanilla in any::<bool>(),
    ) {
        let link = LinkConfig::perfect()
            .with_latency(ms(latency))
            .with_jitter(ms(jitter))
            .with_duplicate(dup);
        let server = secret(seed).with_vanilla(VanillaPolicy::Admit);
        let mut p = pair(ClientConfig::new().with_vanilla(vanilla), server, link, seed);
        p.client_mut().connect(Instant::ZERO).unwrap();
        let rtt = ms(2 * (latency + jitter));
        p.run_until(both_online, 2 * rtt + POLL).map_err(|e| {
            TestCaseError::fail(format!("not online within 2 RTT = {:?}: {e}", 2 * rtt))
        })?;
        p.run_for(Duration::from_secs(5));
        prop_assert!(both_online(&p));
        prop_assert_eq!(count_connected(p.client_events()), 1);
        prop_assert_eq!(p.client().stats().accept_retries, 0);
        check_invariants(&p)?;
    }

    /// After the link is cut, each side reports its timeout no earlier than its configured
    /// timeout after the last sign of life, and no later than one poll after that
    #[test]
    fn timeout_reported_within_one_poll_of_the_deadline(
        link in lossy_link(),
        seed in any::<u64>(),
        client_timeout in 2_000u64..15_000,
        server_timeout in 2_000u64..15_000,
        cut_after in 0u64..20_000,
    ) {
        let client = ClientConfig::new().with_timeout(ms(client_timeout));
        let server = secret(seed).with_timeout(ms(server_timeout));
        let mut p = pair(client, server, link, seed);
        p.client_mut().connect(Instant::ZERO).unwrap();
        // both online first (almost always within seconds; a rare unlucky run is skipped)
        prop_assume!(p.run_until(both_online, Duration::from_secs(30)).is_ok());
        p.run_for(ms(cut_after));
        prop_assume!(both_online(&p));
        let cut = p.now();
        p.set_link_up(false);
        let (client_dl, server_dl) = {
            let t = p.transcript();
            (
                last_alive(t, Direction::ServerToClient, cut).unwrap() + ms(client_timeout),
                last_alive(t, Direction::ClientToServer, cut).unwrap() + ms(server_timeout),
            )
        };
        let timed_out = |p: &GamePair| {
            p.server_events().iter().any(|e| matches!(
                e,
                ServerEvent::Closed { cause: CloseCause::Timeout, .. }
            ))
        };
        let (mut client_at, mut server_at) = (None, None);
        while client_at.is_none() || server_at.is_none() {
            prop_assert!(p.step(), "idle before both timed out");
            prop_assert!(p.now() <= cut + ms(16_000), "no timeout by {}", p.now());
            if client_at.is_none() && p.client().state() == ClientState::Closed {
                client_at = Some(p.now());
            }
            if server_at.is_none() && timed_out(&p) {
                server_at = Some(p.now());
            }
        }
        let (client_at, server_at) = (client_at.unwrap(), server_at.unwrap());
        prop_assert!(
            client_at >= client_dl && client_at <= client_dl + POLL,
            "client timed out at {client_at}, deadline {client_dl}"
        );
        prop_assert!(
            server_at >= server_dl && server_at <= server_dl + POLL,
            "server timed out at {server_at}, deadline {server_dl}"
        );
        prop_assert_eq!(
            p.client_events().last(),
            Some(&ClientEvent::Closed { cause: CloseCause::Timeout })
        );
        prop_assert_eq!(p.server().peer_count(), 0);
        check_invariants(&p)?;
    }
}
