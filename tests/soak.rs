//! Soak: fleets of real machines in virtual time, with loss, drops and restarts
//!
//! * `game_fleet_soak`: 1,000 game clients (750 DDNet token clients, 250 vanilla clients admitted
//!   by [`game::VanillaPolicy::Admit`]) on one [`game::Server`] (capacity 2,048, at most 1,024
//!   peers), 20% datagram loss each way, 30 ms ± 20 ms latency, and per client a random
//!   disturbance about every 10 minutes: a crash restart (a new `Client` at the same address,
//!   the server still holding the old peer), a graceful restart (CLOSE, then a new `Client`), or
//!   the link going down for 12-20 s so both sides time out and the client reconnects.
//! * `longport_fleet_soak`: 1,000 LongPort clients (500 over TCP, 500 over WebSocket with
//!   server Pings and client Ping heartbeats) on one [`longport::Server`]
//!   (1,024 connection slots, 2,048 sessions, at most 32 unauthenticated), 40 ms ± 20 ms
//!   latency, streams split into random chunks, and per client a random transport drop about
//!   every 10 minutes (the client reconnects with its session) plus a black-hole link cut of
//!   130-200 s about every two hours (heartbeat timeout, then dials that fail until the link is
//!   back), and at half time every open transport is reset at once (a reconnect storm against
//!   the unauthenticated cap of 32, which evicts the oldest unauthenticated connection for each
//!   new one; reconnects use a random jitter of up to 1 s per attempt). The gateway's limits
//!   are on: two clients per account with a quota of 4 connections per account (never hit: a
//!   client holds one connection and at most one stale one the server has not timed out yet),
//!   four clients per source (the per-source cap of 4 is never hit either), and rate limits of
//!   5 requests/s per connection and 1/s (bursts of 2) for the quote command: about every five
//!   minutes each client sends three quote requests at once, so the third is refused by the
//!   machine with status 3 / `Error{301606}` and the application never sees more than two
//!   within a second. The server also sends its own heartbeats to TCP clients every 60 s (and
//!   measures their round trips, as it does for its WebSocket pings). Loss is not modelled on
//!   TCP: a reliable stream either delivers or dies.
//!
//! Both end with a server shutdown under load: every peer is closed (game: CLOSE, lost ones time
//! out on the client; LongPort: `Close{ServerShutdown}`), and the game server stays silent.
//!
//! One LongPort server holds all 1,000 connections: its connection table is a linear scan
//! (`O(PEERS)` per input and per `poll_timeout`), about 990 KB for 1,024 slots and 2,048
//! sessions, which is still affordable here (the LongPort hour takes about 15 s in release on a
//! busy 2-core machine, about 5 s of it without the request bursts and server heartbeats, which
//! nearly double the frames), so no split into several servers was needed. Both servers are far too big for a test thread's stack by value: they are built on
//! a 64 MiB-stack thread and kept behind a `Box` (a boxed machine is a machine).
//!
//! Both run with the simulator's invariant checks on (deadlines never in the past, datagrams
//! consumed whole, stream progress, closed machines silent) and check the protocol-level
//! invariants below as events arrive. After the horizon the disturbances stop, links come back,
//! and after a settling period every client must be online and the server must hold exactly one
//! connection per client.
//!
//! Two harness details (not library behaviour): when the LongPort server says `Disconnect`, the
//! transport is closed 200 ms later, because the simulator's `close_transport` drops frames
//! still in flight while a real socket close delivers them first; and a client whose Reconnect
//! response was lost with its transport presents a session the server already retired (spec
//! 6.6), is refused with status 5 and re-authenticates with a fresh token (counted as
//! `sessions-lost`).
//!
//! Horizon: one virtual hour when built with optimisations (`cargo test --release --test soak`,
//! what CI runs; measured on a busy 2-core machine: about 15 s wall for the file, the two tests
//! run in parallel); 15 virtual minutes in debug builds so a plain `cargo test` stays quick
//! (about 35 s wall; `SOAK_SECS=3600 cargo test --test soak` runs the full hour in a debug
//! build).
//! `SOAK_SECS=<n>` overrides both.
//!
//! Each test prints one summary line, e.g. (run with `--nocapture`):
//! `soak game: 3600 s virtual, 1000 clients: connects=.. reconnects=.. timeouts=.. drops=.. frames=.. wall=..`

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet, VecDeque};
use std::rc::Rc;

use tether_net::game::{
    self, ClientEvent as GClientEvent, ClientState as GClientState, CloseCause as GCloseCause,
    ServerConfig as GServerConfig, ServerEvent as GServerEvent, TokenSecret,
};
use tether_net::longport::{
    AccountId, Admission, Client as LClientMachine, ClientApp as LClientApp,
    ClientConfig as LClientConfig, ClientEvent as LClientEvent, ClientState as LClientState,
    CloseCause, CloseCode, Credentials, Grant, LoginKind, RateLimit, Server as LServer,
    ServerApp as LApp, ServerConfig as LServerConfig, ServerEvent as LServerEvent, SessionId,
    Source, Status, Transport,
};
use tether_net::testing::{Fleet, LinkConfig, Rng, SimError};
use tether_net::{Duration, Instant, Machine};

const CLIENTS: usize = 1_000;

/// Virtual seconds to run: `SOAK_SECS`, else an hour in optimised builds and less in debug
fn horizon() -> Duration {
    if let Some(s) = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        return Duration::from_secs(s);
    }
    if cfg!(debug_assertions) {
        Duration::from_secs(DEBUG_SECS)
    } else {
        Duration::from_secs(3_600)
    }
}

/// Debug-build horizon (see the module docs)
const DEBUG_SECS: u64 = 900;

/// Run `f` on a thread with a big stack (servers with large tables are built by value first)
fn on_big_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(f)
        .expect("spawn soak thread")
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

/// A time-ordered queue of test actions
struct Agenda<A> {
    heap: BinaryHeap<Reverse<(Instant, u64, usize, A)>>,
    seq: u64,
}

impl<A: Ord + Copy> Agenda<A> {
    fn new() -> Self {
        Agenda {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
    fn at(&mut self, t: Instant, client: usize, a: A) {
        self.seq += 1;
        self.heap.push(Reverse((t, self.seq, client, a)));
    }
    fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, ..))| *t)
    }
    fn due(&mut self, now: Instant) -> Option<(usize, A)> {
        match self.heap.peek() {
            Some(Reverse((t, ..))) if *t <= now => {
                let Reverse((_, _, c, a)) = self.heap.pop()?;
                Some((c, a))
            }
            _ => None,
        }
    }
}

/// Exponentially distributed delay with the given mean (at least 1 ms)
fn exp_delay(rng: &mut Rng, mean: Duration) -> Duration {
    let u = rng.next_f64().max(1e-12);
    let secs = -u.ln() * mean.as_secs_f64();
    Duration::from_secs_f64(secs.clamp(0.001, 1e7))
}

fn uniform(rng: &mut Rng, lo: Duration, hi: Duration) -> Duration {
    lo + rng.duration_up_to(hi.saturating_sub(lo))
}

/// Run `fleet` until `end`, calling `react` after every step; `react` answers events, performs
/// due test actions and returns when the next test action is due
///
/// Virtual time jumps over idle stretches to the next test action.
fn drive<C, S>(
    fleet: &mut Fleet<C, S>,
    end: Instant,
    mut react: impl FnMut(&mut Fleet<C, S>) -> Option<Instant>,
) where
    C: Machine<Peer = ()>,
    S: Machine,
    S::Peer: std::hash::Hash,
{
    loop {
        let next = react(fleet).map_or(end, |t| t.min(end));
        let now = fleet.now();
        if now >= end {
            return;
        }
        if next <= now {
            continue;
        }
        let r = fleet.run_until_mut(
            |f| {
                let nx = react(f);
                nx.is_some_and(|t| t <= f.now())
            },
            next.saturating_duration_since(now),
        );
        if let Err(SimError::Idle { at }) = r {
            fleet.run_for(next.saturating_duration_since(at));
        }
    }
}

// =============================================================================================
// Game profile
// =============================================================================================

type GServer = game::Server<u32, 2048>;
type GClient = game::Client;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum GAction {
    /// Random disturbance (chosen when it fires)
    Chaos,
    /// Replace the client by a new one and connect
    Replace,
    /// Restore the link
    LinkUp,
}

/// Per-client bookkeeping of the current `Client` instance
#[derive(Debug, Default, Clone, Copy)]
struct GSlot {
    connected: bool,
    closed: bool,
    ever_connected: bool,
    replace_pending: bool,
    link_down: bool,
}

#[derive(Debug, Default)]
struct GCounts {
    connects: u64,
    reconnects: u64,
    client_timeouts: u64,
    connect_timeouts: u64,
    server_timeouts: u64,
    peer_closes: u64,
    crash_restarts: u64,
    graceful_restarts: u64,
    link_downs: u64,
}

/// Every fourth client speaks vanilla 0.6 (no token); the rest use the DDNet token form
fn game_vanilla(i: usize) -> bool {
    i % 4 == 3
}

fn game_client_config(i: usize) -> game::ClientConfig {
    game::ClientConfig::new()
        .with_vanilla(game_vanilla(i))
        // DDNet's real keep-alive interval (the crate's 250 ms default quadruples the traffic
        // without exercising anything new)
        .with_keep_alive(Duration::from_secs(1))
}

fn new_game_client(fleet: &mut Fleet<GClient, Box<GServer>>, i: usize, slots: &mut [GSlot]) {
    let now = fleet.now();
    *fleet.client_mut(i) = GClient::new(game_client_config(i));
    fleet
        .client_mut(i)
        .connect(now)
        .expect("a fresh client connects");
    let s = &mut slots[i];
    s.connected = false;
    s.closed = false;
    s.replace_pending = false;
}

#[test]
#[cfg_attr(
    target_os = "wasi",
    ignore = "needs a thread (64 MiB stack): no threads on WASI"
)]
fn game_fleet_soak() {
    on_big_stack(game_soak);
}

fn game_soak() {
    let wall = std::time::Instant::now();
    let horizon = horizon();
    let settle = Duration::from_secs(60);
    let server = GServer::with_capacities(
        GServerConfig::new(TokenSecret(*b"soak-game-secret"))
            .with_max_peers(1_024)
            // vanilla clients get a token-less peer at once (DDNet with sv_vanilla_antispoof 0)
            .with_vanilla(game::VanillaPolicy::Admit),
    );
    assert!(
        std::mem::size_of::<GServer>() > 64 * 1024,
        "the server is big: keep it boxed"
    );
    let link = LinkConfig::lossy(0.2)
        .with_latency(Duration::from_millis(30))
        .with_jitter(Duration::from_millis(20));
    let mut fleet: Fleet<GClient, Box<GServer>> = Fleet::new(
        Box::new(server),
        CLIENTS,
        |i| GClient::new(game_client_config(i)),
        |i| i as u32,
        link,
        0x5EED_6A3E,
    );
    fleet.keep_events(false);
    fleet.client_closed_when(|c| c.state() == GClientState::Closed);

    let client_events: Rc<RefCell<VecDeque<(usize, GClientEvent)>>> = Rc::default();
    let server_events: Rc<RefCell<VecDeque<GServerEvent<u32>>>> = Rc::default();
    // CLOSE reasons the clients received (the `Closed { cause: Peer }` event carries no text)
    let client_reasons: Rc<RefCell<Vec<(usize, String)>>> = Rc::default();
    {
        let q = client_events.clone();
        fleet.on_client_event(move |i, e| q.borrow_mut().push_back((i, *e)));
        let q = server_events.clone();
        fleet.on_server_event(move |_, e| q.borrow_mut().push_back(*e));
        let q = client_reasons.clone();
        fleet.on_client_app(move |i, app| {
            if let Some(reason) = app.close_reason() {
                q.borrow_mut().push((i, reason.to_string()));
            }
        });
    }

    let mut rng = Rng::new(0xC4A0_5000);
    let mut agenda = Agenda::new();
    let mut slots = vec![GSlot::default(); CLIENTS];
    let mut online_at_server: HashSet<u32> = HashSet::new();
    let mut n = GCounts::default();
    let chaos_mean = Duration::from_secs(600);

    // staggered start over the first 10 s, then chaos per client
    for (i, slot) in slots.iter_mut().enumerate() {
        let start = rng.duration_up_to(Duration::from_secs(10));
        agenda.at(Instant::ZERO + start, i, GAction::Replace);
        slot.replace_pending = true;
        agenda.at(
            Instant::ZERO + start + exp_delay(&mut rng, chaos_mean),
            i,
            GAction::Chaos,
        );
    }
    let end = Instant::ZERO + horizon;

    let mut react = |fleet: &mut Fleet<GClient, Box<GServer>>, chaos: bool| {
        let now = fleet.now();
        loop {
            let Some((i, e)) = client_events.borrow_mut().pop_front() else {
                break;
            };
            let s = &mut slots[i];
            match e {
                GClientEvent::Connected { token } => {
                    assert!(
                        !s.connected && !s.closed,
                        "client {i}: Connected twice or after Closed"
                    );
                    assert_eq!(
                        token.is_some(),
                        !game_vanilla(i),
                        "client {i}: tokens exactly for DDNet clients"
                    );
                    s.connected = true;
                    n.connects += 1;
                    if s.ever_connected {
                        n.reconnects += 1;
                    }
                    s.ever_connected = true;
                }
                GClientEvent::Closed { cause } => {
                    assert!(!s.closed, "client {i}: Closed twice");
                    s.closed = true;
                    s.connected = false;
                    match cause {
                        GCloseCause::Timeout => n.client_timeouts += 1,
                        GCloseCause::ConnectTimeout => n.connect_timeouts += 1,
                        GCloseCause::Local => {}
                        other => panic!(
                            "client {i}: the server closed it ({other:?}): {:?}",
                            client_reasons.borrow().last()
                        ),
                    }
                    if !s.replace_pending {
                        s.replace_pending = true;
                        let d = uniform(&mut rng, Duration::from_secs(1), Duration::from_secs(3));
                        agenda.at(now + d, i, GAction::Replace);
                    }
                }
                other => panic!("client {i}: unexpected event {other:?}"),
            }
        }
        loop {
            let Some(e) = server_events.borrow_mut().pop_front() else {
                break;
            };
            match e {
                GServerEvent::Connected { peer, token } => {
                    assert_eq!(token.is_some(), !game_vanilla(peer as usize));
                    assert!(
                        online_at_server.insert(peer),
                        "server: Connected for {peer}, which is already online"
                    );
                }
                GServerEvent::Closed { peer, cause } => {
                    assert!(
                        online_at_server.remove(&peer),
                        "server: Closed for {peer}, which was not online"
                    );
                    match cause {
                        GCloseCause::Timeout => n.server_timeouts += 1,
                        GCloseCause::Peer => n.peer_closes += 1,
                        other => panic!("server: unexpected close of {peer}: {other:?}"),
                    }
                }
                GServerEvent::ShutdownComplete => panic!("server: shutdown without a command"),
                other => panic!("server: unexpected event {other:?}"),
            }
        }
        while let Some((i, a)) = agenda.due(now) {
            match a {
                GAction::Replace => new_game_client(fleet, i, &mut slots),
                GAction::LinkUp => {
                    fleet.set_link_up(i, true);
                    slots[i].link_down = false;
                }
                GAction::Chaos if !chaos => {}
                GAction::Chaos => {
                    agenda.at(now + exp_delay(&mut rng, chaos_mean), i, GAction::Chaos);
                    if slots[i].replace_pending || slots[i].link_down {
                        continue;
                    }
                    match rng.below(10) {
                        0..=3 => {
                            n.crash_restarts += 1;
                            new_game_client(fleet, i, &mut slots);
                        }
                        4..=6 => {
                            n.graceful_restarts += 1;
                            // Closed{Local} follows and schedules the replacement
                            let _ = fleet.client_mut(i).close(now, "restart");
                        }
                        _ => {
                            n.link_downs += 1;
                            slots[i].link_down = true;
                            fleet.set_link_up(i, false);
                            let d =
                                uniform(&mut rng, Duration::from_secs(12), Duration::from_secs(20));
                            agenda.at(now + d, i, GAction::LinkUp);
                        }
                    }
                }
            }
        }
        agenda.next()
    };

    drive(&mut fleet, end, |f| react(f, true));
    // settle: no more chaos, pending link-ups and replacements still happen
    drive(&mut fleet, end + settle, |f| react(f, false));

    let server = &**fleet.server();
    let online = (0..CLIENTS)
        .filter(|&i| fleet.client(i).state() == GClientState::Online)
        .count();
    let cstats = fleet.total_client_stats();
    let sstats = fleet.server_stats();
    let frames = cstats.transmits + sstats.transmits;
    let drops = n.crash_restarts + n.graceful_restarts + n.link_downs;
    let timeouts = n.client_timeouts + n.connect_timeouts + n.server_timeouts;
    println!(
        "soak game: {} s virtual, {CLIENTS} clients (750 token + 250 vanilla), 20% loss: connects={} reconnects={} \
         timeouts={timeouts} (client {} + connect {} + server {}) drops={drops} (crash {} + \
         graceful {} + link-down {}) peer-closes={} frames={frames} steps={} wall={:.1?}",
        horizon.as_secs(),
        n.connects,
        n.reconnects,
        n.client_timeouts,
        n.connect_timeouts,
        n.server_timeouts,
        n.crash_restarts,
        n.graceful_restarts,
        n.link_downs,
        n.peer_closes,
        fleet.steps(),
        wall.elapsed(),
    );
    let st = server.stats();
    println!(
        "soak game: server stats {st:?}, size_of::<Server<u32, 2048>>() = {} bytes",
        std::mem::size_of::<GServer>()
    );

    assert_eq!(online, CLIENTS, "every client is online after settling");
    assert_eq!(server.peer_count(), CLIENTS, "one peer per client");
    assert_eq!(online_at_server.len(), CLIENTS, "events match the table");
    assert!(
        (0..CLIENTS).all(|i| server.is_online(i as u32)),
        "every client address is an online peer"
    );
    assert_eq!(st.dropped_malformed, 0, "the link never corrupts");
    assert_eq!(st.dropped_bad_ack, 0, "nobody reports acks");
    assert_eq!(st.rejected_full, 0, "1,000 clients fit 1,024 peers");
    for i in 0..CLIENTS {
        let c = fleet.client(i).stats();
        assert_eq!(c.dropped_malformed, 0, "client {i}");
        assert_eq!(c.dropped_bad_ack, 0, "client {i}");
    }
    assert!(n.connects >= CLIENTS as u64);
    assert!(
        drops > 0 && n.reconnects > 0 && timeouts > 0,
        "chaos happened"
    );
    assert_eq!(cstats.input_errors + sstats.input_errors, 0);

    // Finally a shutdown under the same 20% loss: the server sends every peer its CLOSE, reports
    // every peer closed, then ShutdownComplete, and stays silent (checked by the simulator).
    // Clients whose CLOSE was lost time out.
    fleet.server_closed_when(|s| s.state() == game::ServerState::Stopped);
    client_events.borrow_mut().clear();
    server_events.borrow_mut().clear();
    client_reasons.borrow_mut().clear();
    let now = fleet.now();
    fleet.server_mut().shutdown(now, "Server shutdown").unwrap();
    fleet.run_for(Duration::from_secs(15));
    let sev = server_events.borrow();
    let shut = sev
        .iter()
        .filter(|e| {
            matches!(
                e,
                GServerEvent::Closed {
                    cause: GCloseCause::Shutdown,
                    ..
                }
            )
        })
        .count();
    assert_eq!(shut, CLIENTS, "one Closed(Shutdown) per peer");
    assert_eq!(sev.len(), CLIENTS + 1);
    assert_eq!(sev.back(), Some(&GServerEvent::ShutdownComplete));
    assert_eq!(fleet.server().state(), game::ServerState::Stopped);
    assert_eq!(fleet.server().peer_count(), 0);
    let cev = client_events.borrow();
    let told = cev
        .iter()
        .filter(|(_, e)| {
            matches!(
                e,
                GClientEvent::Closed {
                    cause: GCloseCause::Peer
                }
            )
        })
        .count();
    // every one of them read the shutdown reason from the CLOSE it got
    let reasons = client_reasons.borrow();
    assert_eq!(reasons.len(), told);
    assert!(
        reasons.iter().all(|(_, r)| r == "Server shutdown"),
        "{reasons:?}"
    );
    let timed_out = cev
        .iter()
        .filter(|(_, e)| {
            matches!(
                e,
                GClientEvent::Closed {
                    cause: GCloseCause::Timeout
                }
            )
        })
        .count();
    assert_eq!(told + timed_out, CLIENTS, "{cev:?}");
    assert!(told >= CLIENTS * 7 / 10, "about 80% of the CLOSEs arrive");
    assert!((0..CLIENTS).all(|i| fleet.client(i).state() == GClientState::Closed));
    println!(
        "soak game: shutdown: {told} clients got the CLOSE, {timed_out} timed out (CLOSE lost)"
    );
}

// =============================================================================================
// LongPort profile
// =============================================================================================

/// 1,024 connection slots (one per client plus room for reconnect overlap), 2,048 sessions
type LSrv = LServer<u32, 1024, 2048>;
type LClient = LClientMachine;

/// Connection ids: client index in the low 10 bits, transport generation above
const GEN_SHIFT: u32 = 10;

/// A session expiry far in the future (Unix ms)
const FAR_EXPIRY_MS: i64 = 10_000_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum LAction {
    /// Close the transport (TCP reset)
    Drop,
    /// Black-hole the link for a while (a dead NAT path: nothing arrives, nothing is reset)
    Cut,
    /// Restore the link
    Restore,
    /// Reset every open transport at once (a load balancer restart): a reconnect storm against
    /// the unauthenticated cap
    MassDrop,
    /// The server closed this connection after its last frames: the FIN reaches the client
    /// after the data (a TCP close delivers what was written before it)
    Fin(u32),
    /// Send three quote requests at once (the third is over the command's rate limit)
    Burst,
}

/// The command the soak's requests use (QuerySecurityQuote) and its rate limit
const CMD_QUOTE: u8 = 11;
const QUOTE_LIMIT: RateLimit = RateLimit::per_second(1, 2);
/// Connections one account may hold (two clients per account)
const QUOTA: u32 = 4;

#[derive(Debug, Default, Clone, Copy)]
struct LSlot {
    gen: u32,
    open: bool,
    cut: bool,
    ever_authenticated: bool,
    session_lost: bool,
}

#[derive(Debug, Default)]
struct LCounts {
    dials: u64,
    dials_refused: u64,
    auths: u64,
    reconnects: u64,
    heartbeat_timeouts: u64,
    login_timeouts: u64,
    connect_timeouts: u64,
    transport_closed: u64,
    server_heartbeat_timeouts: u64,
    server_auth_timeouts: u64,
    drops: u64,
    cuts: u64,
    decisions_late: u64,
    sessions_lost: u64,
    mass_dropped: u64,
    evicted: u64,
    server_rtts: u64,
    bursts: u64,
    requests: u64,
    requests_failed: u64,
}

#[derive(Debug, Clone, Copy)]
enum Login {
    Auth,
    Reconnect,
}

#[test]
#[cfg_attr(
    target_os = "wasi",
    ignore = "needs a thread (64 MiB stack): no threads on WASI"
)]
fn longport_fleet_soak() {
    on_big_stack(longport_soak);
}

static JITTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0x5EED);

/// Reconnect jitter: up to one second per attempt (at most 5 s)
///
/// `JitterFn` is a plain `fn(attempt)`, so per-client randomness has to come from global state:
/// a shared counter run through splitmix64 (deterministic as long as only this test uses it).
fn soak_jitter(attempt: u32) -> Duration {
    let x = JITTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let span = 1_000_000 * u64::from(attempt.clamp(1, 5));
    Duration::from_micros(tether_net::testing::splitmix64(x) % span)
}

/// Even clients use TCP, odd ones WebSocket
fn lp_transport(i: usize) -> Transport {
    if i.is_multiple_of(2) {
        Transport::Tcp
    } else {
        Transport::WebSocket
    }
}

fn conn_id(i: usize, gen: u32) -> u32 {
    (gen << GEN_SHIFT) | i as u32
}

/// Client `i`'s account: two clients per account
fn account(i: usize) -> AccountId {
    AccountId((i / 2) as u64)
}

/// Client `i`'s source (its host): four clients per source
fn source(i: usize) -> Source {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&((i / 4) as u64).to_be_bytes());
    Source::from_bytes(key)
}

/// The LongPort server as a gateway's socket layer runs it: once the server reported `Closed`
/// for a connection the socket is closed, and bytes from it are never read. The simulator
/// closes a transport 200 ms after the server's `Closed` (so the last frames arrive first); what
/// the client sent meanwhile is discarded here, as the closed socket would, and counted.
struct Gateway {
    server: Box<LSrv>,
    late: u64,
}

impl std::ops::Deref for Gateway {
    type Target = LSrv;
    fn deref(&self) -> &LSrv {
        &self.server
    }
}

impl std::ops::DerefMut for Gateway {
    fn deref_mut(&mut self) -> &mut LSrv {
        &mut self.server
    }
}

impl Machine for Gateway {
    type Peer = u32;
    type Event = LServerEvent<u32>;
    type App<'a> = LApp<'a>;
    type Error = tether_net::longport::Error;

    fn handle_input<'a>(
        &mut self,
        now: Instant,
        from: u32,
        data: &'a [u8],
    ) -> Result<tether_net::Received<LApp<'a>>, Self::Error> {
        if self.server.state(from).is_none() {
            self.late += 1;
            return Ok(tether_net::Received::consumed(data.len()));
        }
        self.server.handle_input(now, from, data)
    }
    fn handle_frame(&mut self, now: Instant, from: u32, kind: tether_net::FrameKind, p: &[u8]) {
        self.server.handle_frame(now, from, kind, p);
    }
    fn handle_closed(&mut self, now: Instant, from: u32) {
        self.server.handle_closed(now, from);
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.server.handle_timeout(now);
    }
    fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<tether_net::Transmit<u32>>, tether_net::BufferTooSmall> {
        self.server.poll_transmit(now, buf)
    }
    fn poll_event(&mut self) -> Option<LServerEvent<u32>> {
        self.server.poll_event()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.server.poll_timeout()
    }
}

fn close_lp(fleet: &mut Fleet<LClient, Gateway>, slots: &mut [LSlot], i: usize) {
    if slots[i].open {
        slots[i].open = false;
        fleet.close_transport(i);
    }
}

fn longport_soak() {
    let wall = std::time::Instant::now();
    let horizon = horizon();
    let settle = Duration::from_secs(240);
    let server = LSrv::with_capacities(
        LServerConfig::new()
            .with_max_unauthenticated(32)
            .with_tcp_heartbeat_interval(Some(Duration::from_secs(60)))
            .with_account_quota(Some(QUOTA))
            .with_rate_limit(Some(RateLimit::per_second(5, 10)))
            .with_command_rate_limit(CMD_QUOTE, Some(QUOTE_LIMIT)),
    );
    assert!(
        std::mem::size_of::<LSrv>() > 256 * 1024,
        "the server is big: keep it boxed"
    );
    let link = LinkConfig::perfect()
        .with_latency(Duration::from_millis(40))
        .with_jitter(Duration::from_millis(20))
        .with_split_stream(true);
    let mut fleet: Fleet<LClient, Gateway> = Fleet::new(
        Gateway {
            server: Box::new(server),
            late: 0,
        },
        CLIENTS,
        |i| LClient::new(LClientConfig::new(lp_transport(i)).with_jitter(soak_jitter)),
        |i| conn_id(i, 0),
        link,
        0x5EED_10C6,
    );
    fleet.keep_events(false);
    fleet.client_closed_when(|c| c.state() == LClientState::Closed);

    let client_events: Rc<RefCell<VecDeque<(usize, LClientEvent)>>> = Rc::default();
    let server_events: Rc<RefCell<VecDeque<LServerEvent<u32>>>> = Rc::default();
    let logins: Rc<RefCell<VecDeque<(usize, Login)>>> = Rc::default();
    // the server application's answers to requests, to send over the link: (conn, kind, bytes)
    type Outbox = Vec<(u32, tether_net::FrameKind, Vec<u8>)>;
    let outbox: Rc<RefCell<Outbox>> = Rc::default();
    // the current connection id of each client
    let conns: Rc<RefCell<Vec<u32>>> =
        Rc::new(RefCell::new((0..CLIENTS).map(|i| conn_id(i, 0)).collect()));
    // the client-side outcome of requests: (answered, rate limited)
    let outcomes: Rc<RefCell<(u64, u64)>> = Rc::default();
    {
        let q = client_events.clone();
        fleet.on_client_event(move |i, e| q.borrow_mut().push_back((i, *e)));
        let q = server_events.clone();
        fleet.on_server_event(move |_, e| q.borrow_mut().push_back(*e));
        let q = logins.clone();
        let out = outbox.clone();
        let conns = conns.clone();
        // when the application saw quote requests, per client
        let mut seen: Vec<VecDeque<Instant>> = vec![VecDeque::new(); CLIENTS];
        fleet.answer_server_app(move |srv, now, i, a| match *a {
            LApp::Auth { .. } => q.borrow_mut().push_back((i, Login::Auth)),
            LApp::Reconnect { .. } => q.borrow_mut().push_back((i, Login::Reconnect)),
            LApp::Request {
                request_id, cmd, ..
            } => {
                assert_eq!(cmd, CMD_QUOTE);
                let conn = conns.borrow()[i];
                // the machine's rate limit: never more than the burst within one interval
                let times = &mut seen[i];
                times.retain(|&t| now - t < QUOTE_LIMIT.interval());
                times.push_back(now);
                assert!(
                    times.len() <= QUOTE_LIMIT.burst() as usize,
                    "client {i}: {} quote requests within a second reached the application",
                    times.len()
                );
                let mut buf = [0u8; 64];
                let t = srv
                    .respond(now, conn, cmd, request_id, Status::Success, b"q", &mut buf)
                    .expect("answer");
                out.borrow_mut().push((conn, t.kind, buf[..t.len].to_vec()));
            }
            ref other => panic!("client {i}: unexpected app data at the server: {other:?}"),
        });
        let got = outcomes.clone();
        fleet.on_client_app(move |i, a| match a {
            LClientApp::Response { status, error, .. } => {
                let mut got = got.borrow_mut();
                match status {
                    Status::Success => got.0 += 1,
                    Status::BadRequest => {
                        assert_eq!(error.map(|e| e.code), Some(301_606), "client {i}");
                        got.1 += 1;
                    }
                    other => panic!("client {i}: request answered with {other:?}"),
                }
            }
            // only the server's own timers close (a black-holed connection whose Close push got
            // through when the link came back), eviction in the reconnect storm, and the
            // shutdown at the end
            LClientApp::Close { code, reason } => {
                assert!(
                    matches!(
                        code,
                        CloseCode::HeartbeatTimeout
                            | CloseCode::AuthError
                            | CloseCode::ServerShutdown
                            | CloseCode::ServerError
                    ),
                    "client {i}: server closed with {code:?}"
                );
                if *code == CloseCode::ServerError {
                    assert_eq!(
                        reason.to_str(),
                        Some("too many unauthenticated connections")
                    );
                }
            }
            // a lost Reconnect response leaves the client with a retired session: refused
            // (see LoginFailed below)
            LClientApp::LoginError { status, .. } => assert_eq!(
                *status,
                tether_net::longport::Status::Unauthenticated,
                "client {i}"
            ),
            other => panic!("client {i}: unexpected app data: {other:?}"),
        });
    }

    let mut rng = Rng::new(0xC4A0_1000);
    let mut agenda = Agenda::new();
    let mut slots = vec![LSlot::default(); CLIENTS];
    let mut n = LCounts::default();
    let drop_mean = Duration::from_secs(600);
    let cut_mean = Duration::from_secs(7_200);
    let burst_mean = Duration::from_secs(300);

    // staggered start over the first 30 s
    let mut starts: Vec<(Duration, usize)> = (0..CLIENTS)
        .map(|i| (rng.duration_up_to(Duration::from_secs(30)), i))
        .collect();
    starts.sort();
    for i in 0..CLIENTS {
        agenda.at(
            Instant::ZERO + Duration::from_secs(30) + exp_delay(&mut rng, drop_mean),
            i,
            LAction::Drop,
        );
        agenda.at(
            Instant::ZERO + Duration::from_secs(30) + exp_delay(&mut rng, cut_mean),
            i,
            LAction::Cut,
        );
        agenda.at(
            Instant::ZERO + Duration::from_secs(40) + exp_delay(&mut rng, burst_mean),
            i,
            LAction::Burst,
        );
    }
    let end = Instant::ZERO + horizon;
    agenda.at(Instant::ZERO + horizon / 2, 0, LAction::MassDrop);

    let mut react = |fleet: &mut Fleet<LClient, Gateway>, chaos: bool| {
        let now = fleet.now();
        // staggered first connects
        while let Some(&(d, i)) = starts.first() {
            if Instant::ZERO + d > now {
                break;
            }
            starts.remove(0);
            fleet
                .client_mut(i)
                .connect(now, Credentials::new("one-time-token"))
                .expect("first connect");
        }
        // the application's auth decisions
        loop {
            let Some((i, login)) = logins.borrow_mut().pop_front() else {
                break;
            };
            let conn = fleet.client_addr(i);
            // 128 random bits (from the test's seeded generator, so runs repeat)
            let mut random = [0u8; 16];
            rng.fill(&mut random);
            let grant =
                Grant::new(SessionId::from_random(random), FAR_EXPIRY_MS).with_account(account(i));
            let server = &mut **fleet.server_mut();
            let r = match login {
                Login::Auth => server.accept_auth(now, conn, grant),
                Login::Reconnect => server.accept_reconnect(now, conn, grant),
            };
            match r {
                Ok(Admission::Granted { limit, online }) => {
                    assert_eq!(limit, QUOTA);
                    assert!((1..=QUOTA).contains(&online), "client {i}: online {online}");
                    assert_eq!(server.online(account(i)), online as usize);
                }
                Ok(other) => panic!("client {i}: {other:?}"),
                // the connection ended before the decision (a drop in the same instant)
                Err(_) => n.decisions_late += 1,
            }
        }
        // the application's answers go out
        let answers: Outbox = outbox.borrow_mut().drain(..).collect();
        for (conn, kind, bytes) in answers {
            fleet.send_from_server(conn, kind, &bytes);
        }
        loop {
            let Some((i, e)) = client_events.borrow_mut().pop_front() else {
                break;
            };
            match e {
                LClientEvent::ConnectTransport { .. } => {
                    assert!(
                        !slots[i].open,
                        "client {i}: ConnectTransport while its transport is open"
                    );
                    slots[i].gen += 1;
                    let conn = conn_id(i, slots[i].gen);
                    fleet.set_client_addr(i, conn);
                    conns.borrow_mut()[i] = conn;
                    n.dials += 1;
                    match fleet
                        .server_mut()
                        .handle_connected(now, conn, lp_transport(i), source(i))
                    {
                        Ok(()) => {
                            slots[i].open = true;
                            fleet
                                .client_mut(i)
                                .handle_connected(now)
                                .expect("a requested transport");
                        }
                        Err(_) => {
                            // refused (table full): the dial fails
                            n.dials_refused += 1;
                            fleet.client_mut(i).handle_closed(now, ());
                        }
                    }
                }
                LClientEvent::Connected { via, .. } => {
                    assert!(slots[i].open, "client {i}: authenticated without transport");
                    match via {
                        LoginKind::Auth => n.auths += 1,
                        LoginKind::Reconnect => n.reconnects += 1,
                    }
                    assert!(
                        via == LoginKind::Reconnect
                            || !slots[i].ever_authenticated
                            || slots[i].session_lost,
                        "client {i}: a fresh Auth although its session was resumable"
                    );
                    slots[i].ever_authenticated = true;
                    slots[i].session_lost = false;
                }
                LClientEvent::TokenNeeded => {
                    assert!(slots[i].session_lost, "client {i}: token needed");
                    fleet
                        .client_mut(i)
                        .provide_token(now, "fresh-token")
                        .expect("token accepted");
                }
                LClientEvent::LoginFailed { kind, status, .. } => {
                    // The server retires a session when it accepts a Reconnect. When
                    // the transport dies before the response arrives, the client still holds
                    // the retired id; its next Reconnect is refused and it re-authenticates.
                    assert_eq!(kind, LoginKind::Reconnect, "client {i}: auth refused");
                    assert_eq!(status, tether_net::longport::Status::Unauthenticated);
                    n.sessions_lost += 1;
                    slots[i].session_lost = true;
                }
                LClientEvent::Disconnected { cause } => {
                    match cause {
                        CloseCause::Timeout => n.heartbeat_timeouts += 1,
                        CloseCause::LoginTimeout => n.login_timeouts += 1,
                        CloseCause::ConnectTimeout => n.connect_timeouts += 1,
                        CloseCause::TransportClosed => n.transport_closed += 1,
                        // only the server's own timers may close (a black-holed connection
                        // whose Close push got through when the link came back), and eviction
                        // in the reconnect storm (ServerError)
                        CloseCause::Peer { code } => assert!(
                            matches!(
                                code,
                                CloseCode::HeartbeatTimeout
                                    | CloseCode::AuthError
                                    | CloseCode::ServerError
                            ),
                            "client {i}: server closed with {code:?}"
                        ),
                        CloseCause::LoginRejected(_) => {
                            assert!(slots[i].session_lost, "client {i}: login rejected")
                        }
                        other => panic!("client {i}: disconnected by {other:?}"),
                    }
                    close_lp(fleet, &mut slots, i);
                }
                LClientEvent::HeartbeatRtt { rtt } => {
                    assert!(rtt <= Duration::from_secs(1), "client {i}: rtt {rtt:?}");
                }
                LClientEvent::ReconnectScheduled { .. } => {}
                LClientEvent::RequestFailed { .. } | LClientEvent::RequestTimedOut { .. } => {
                    n.requests_failed += 1;
                }
                other => panic!("client {i}: unexpected event {other:?}"),
            }
        }
        loop {
            let Some(e) = server_events.borrow_mut().pop_front() else {
                break;
            };
            match e {
                LServerEvent::Closed { peer, cause } => {
                    match cause {
                        CloseCause::Timeout => n.server_heartbeat_timeouts += 1,
                        CloseCause::LoginTimeout => n.server_auth_timeouts += 1,
                        CloseCause::TransportClosed | CloseCause::SessionUnknown => {}
                        CloseCause::Evicted => n.evicted += 1,
                        other => panic!("server closed a connection: {other:?}"),
                    }
                    if cause != CloseCause::TransportClosed {
                        // the server closed it: `close_transport` would drop the frames still
                        // in flight; a real socket close delivers them first, so the close
                        // follows the data
                        let i = (peer & ((1 << GEN_SHIFT) - 1)) as usize;
                        agenda.at(now + Duration::from_millis(200), i, LAction::Fin(peer));
                    }
                }
                LServerEvent::Connected { .. } => {}
                LServerEvent::HeartbeatRtt { rtt, .. } => {
                    assert!(rtt <= Duration::from_secs(1), "server rtt {rtt:?}");
                    n.server_rtts += 1;
                }
                other => panic!("unexpected server event {other:?}"),
            }
        }
        while let Some((i, a)) = agenda.due(now) {
            match a {
                LAction::Restore => {
                    slots[i].cut = false;
                    fleet.set_link_up(i, true);
                }
                LAction::Fin(conn) => {
                    // through a black hole the FIN is lost too: the client finds out by timeout
                    if fleet.client_addr(i) == conn && !slots[i].cut {
                        close_lp(fleet, &mut slots, i);
                    }
                }
                _ if !chaos => {}
                LAction::Drop => {
                    agenda.at(now + exp_delay(&mut rng, drop_mean), i, LAction::Drop);
                    if slots[i].open && !slots[i].cut {
                        n.drops += 1;
                        close_lp(fleet, &mut slots, i);
                    }
                }
                LAction::MassDrop => {
                    for j in 0..CLIENTS {
                        if slots[j].open && !slots[j].cut {
                            n.mass_dropped += 1;
                            close_lp(fleet, &mut slots, j);
                        }
                    }
                }
                LAction::Burst => {
                    agenda.at(now + exp_delay(&mut rng, burst_mean), i, LAction::Burst);
                    if fleet.client(i).is_connected() {
                        n.bursts += 1;
                        for _ in 0..3 {
                            let mut buf = [0u8; 64];
                            let (_, t) = fleet
                                .client_mut(i)
                                .send_request(now, CMD_QUOTE, Duration::ZERO, b"700.HK", &mut buf)
                                .expect("request");
                            n.requests += 1;
                            fleet.send_from_client(i, t.kind, &buf[..t.len]);
                        }
                    }
                }
                LAction::Cut => {
                    agenda.at(now + exp_delay(&mut rng, cut_mean), i, LAction::Cut);
                    if !slots[i].cut {
                        n.cuts += 1;
                        slots[i].cut = true;
                        fleet.set_link_up(i, false);
                        let d =
                            uniform(&mut rng, Duration::from_secs(130), Duration::from_secs(200));
                        agenda.at(now + d, i, LAction::Restore);
                    }
                }
            }
        }
        let first = starts.first().map(|&(d, _)| Instant::ZERO + d);
        match (agenda.next(), first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    };

    drive(&mut fleet, end, |f| react(f, true));
    drive(&mut fleet, end + settle, |f| react(f, false));

    let server = &**fleet.server();
    let ready = (0..CLIENTS)
        .filter(|&i| fleet.client(i).is_connected())
        .count();
    let cstats = fleet.total_client_stats();
    let sstats = fleet.server_stats();
    let st = server.stats();
    let frames = cstats.transmits + sstats.transmits;
    let timeouts = n.heartbeat_timeouts
        + n.login_timeouts
        + n.connect_timeouts
        + n.server_heartbeat_timeouts
        + n.server_auth_timeouts;
    println!(
        "soak longport: {} s virtual, {CLIENTS} clients (TCP and WebSocket): connects={} (auth {} + reconnect \
         {}) reconnects={} timeouts={timeouts} (heartbeat {} + login {} + server heartbeat {} + \
         server auth {}) drops={} (resets {} + black-hole cuts {} + mass reset {}) dials={} \
         refused={} evicted={} late-input={} \
         sessions-lost={} requests={} (bursts {}: answered {} + rate-limited {} + failed {}) \
         frames={frames} steps={} wall={:.1?}",
        horizon.as_secs(),
        n.auths + n.reconnects,
        n.auths,
        n.reconnects,
        n.reconnects,
        n.heartbeat_timeouts,
        n.login_timeouts,
        n.server_heartbeat_timeouts,
        n.server_auth_timeouts,
        n.drops + n.cuts + n.mass_dropped,
        n.drops,
        n.cuts,
        n.mass_dropped,
        n.dials,
        n.dials_refused,
        n.evicted,
        fleet.server().late,
        n.sessions_lost,
        n.requests,
        n.bursts,
        outcomes.borrow().0,
        outcomes.borrow().1,
        n.requests_failed,
        fleet.steps(),
        wall.elapsed(),
    );
    println!(
        "soak longport: server stats {st:?}, size_of::<Server<u32, 1024, 2048>>() = {} bytes",
        std::mem::size_of::<LSrv>()
    );

    assert_eq!(
        ready, CLIENTS,
        "every client is authenticated after settling"
    );
    assert_eq!(server.connections(), CLIENTS, "one connection per client");
    assert_eq!(server.unauthenticated(), 0);
    assert_eq!(st.protocol_errors, 0, "the stream never desynchronises");
    assert_eq!(st.duplicates_closed, 0);
    assert_eq!(
        st.reconnects_rejected, n.sessions_lost,
        "sessions survive transport drops unless a Reconnect response was lost"
    );
    assert!(server.sessions() <= 2048);
    for i in 0..CLIENTS {
        let c = fleet.client(i).stats();
        assert_eq!(c.decode_errors, 0, "client {i}");
        assert_eq!(c.events_dropped, 0, "client {i}");
        assert!(server.session_id(fleet.client_addr(i)).is_some());
    }
    assert_eq!(cstats.input_errors + sstats.input_errors, 0);
    assert_eq!(cstats.stream_resets + sstats.stream_resets, 0);
    assert!(n.drops > 0 && n.reconnects > 0, "chaos happened");
    // every request has exactly one outcome; about one in three is over the rate limit
    let (answered, limited) = *outcomes.borrow();
    assert_eq!(answered + limited + n.requests_failed, n.requests);
    // (two bursts of one client within a second find the bucket not refilled: a few more)
    assert!(
        limited * 10 >= n.bursts * 9 && limited * 10 <= n.bursts * 11,
        "{limited} refused in {} bursts",
        n.bursts
    );
    assert!(st.requests_rate_limited >= limited);
    assert_eq!(st.quota_refusals, 0);
    assert_eq!(st.connections_evicted, n.evicted);
    assert!(n.server_rtts > 0 && st.heartbeat_acks == n.server_rtts);
    for i in 0..CLIENTS {
        assert!(
            server.online(account(i)) == 2,
            "both clients of account {i}/2 online"
        );
    }
    if horizon >= Duration::from_secs(3_600) {
        assert!(
            n.cuts > 0 && n.heartbeat_timeouts > 0,
            "black holes happened"
        );
    }

    // Finally a shutdown: every connection gets Close{ServerShutdown} (then WsClose(1001) on
    // WebSocket) and Closed(Shutdown), then ShutdownComplete; every client sees the Close push
    client_events.borrow_mut().clear();
    server_events.borrow_mut().clear();
    let now = fleet.now();
    fleet.server_mut().shutdown(now, "server shutdown").unwrap();
    fleet.run_for(Duration::from_secs(5));
    let sev = server_events.borrow();
    let shut = sev
        .iter()
        .filter(|e| {
            matches!(
                e,
                LServerEvent::Closed {
                    cause: CloseCause::Shutdown,
                    ..
                }
            )
        })
        .count();
    let closed = sev
        .iter()
        .filter(|e| matches!(e, LServerEvent::Closed { .. }))
        .count();
    assert_eq!((shut, closed), (CLIENTS, CLIENTS));
    assert_eq!(sev.back(), Some(&LServerEvent::ShutdownComplete));
    assert_eq!(fleet.server().connections(), 0);
    let cev = client_events.borrow();
    let told = cev
        .iter()
        .filter(|(_, e)| {
            matches!(
                e,
                LClientEvent::Disconnected {
                    cause: CloseCause::Peer {
                        code: CloseCode::ServerShutdown
                    }
                }
            )
        })
        .count();
    assert_eq!(told, CLIENTS, "every client got Close{{ServerShutdown}}");
    println!("soak longport: shutdown: {told} clients got Close{{ServerShutdown}}");
}
