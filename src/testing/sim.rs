//! [`Fleet`] (one server, many clients) and [`Pair`] (one of each): the event-driven simulator

use core::cmp::{Ordering, Reverse};
use core::hash::Hash;
use std::boxed::Box;
use std::collections::{BinaryHeap, HashMap};
use std::vec::Vec;

use super::{
    Direction, Fate, Link, LinkConfig, Planned, Rng, SimError, TraceEntry, TraceRecord,
    VirtualClock,
};
use crate::io::{BufferTooSmall, FrameKind};
use crate::machine::Machine;
use crate::time::{Duration, Instant};

/// Initial size of the transmit scratch buffer (grown on [`BufferTooSmall`])
pub(super) const SCRATCH_LEN: usize = 64 * 1024;
/// A machine emitting more frames or events than this in one drain is considered broken
pub(super) const DRAIN_LIMIT: usize = 100_000;
/// Default number of steps allowed without virtual time advancing
pub(super) const DEFAULT_STALL_LIMIT: u64 = 200_000;

/// Counters for one side of a simulation (the server, or one client)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SideStats {
    /// Inputs handed to the machine: datagrams, messages, stream chunks, WebSocket control frames
    pub frames_in: u64,
    /// Bytes in those inputs
    pub bytes_in: u64,
    /// `handle_input` results that carried application data
    pub app_frames: u64,
    /// Bytes consumed by the inputs that carried application data
    pub app_bytes: u64,
    /// `handle_input` calls that returned `Err`
    pub input_errors: u64,
    /// Stream transports closed by the simulator because the receiver kept refusing the buffered
    /// bytes
    pub stream_resets: u64,
    /// Frames the machine transmitted
    pub transmits: u64,
    /// Bytes the machine transmitted
    pub bytes_out: u64,
    /// Transmits to a peer that is not in the simulation (servers only)
    pub unroutable: u64,
    /// `handle_timeout` calls made because the machine's deadline was reached
    pub timeouts: u64,
    /// Events the machine reported
    pub events: u64,
}

impl SideStats {
    fn add(&mut self, o: &SideStats) {
        self.frames_in += o.frames_in;
        self.bytes_in += o.bytes_in;
        self.app_frames += o.app_frames;
        self.app_bytes += o.app_bytes;
        self.input_errors += o.input_errors;
        self.stream_resets += o.stream_resets;
        self.transmits += o.transmits;
        self.bytes_out += o.bytes_out;
        self.unroutable += o.unroutable;
        self.timeouts += o.timeouts;
        self.events += o.events;
    }
}

/// A frame on its way, in the fleet-wide delivery queue
struct Flight {
    at: Instant,
    seq: u64,
    client: usize,
    dir: Direction,
    kind: FrameKind,
    bytes: Vec<u8>,
    fate: Fate,
    epoch: u64,
    sent_at: Instant,
}

impl PartialEq for Flight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Flight {}
impl Ord for Flight {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}
impl PartialOrd for Flight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// One client and everything the simulator keeps for its connection
struct Slot<C: Machine, A> {
    machine: C,
    addr: A,
    events: Vec<C::Event>,
    stats: SideStats,
    c2s: Link,
    s2c: Link,
    /// Transport generation: reliable frames of an older generation are dropped
    epoch: u64,
    rx_at_server: Vec<u8>,
    rx_at_client: Vec<u8>,
    timer_gen: u64,
    timer_at: Option<Instant>,
    silent: bool,
    dirty: bool,
}

/// App hook: gets the machine (to answer at once), the instant, the client index and the data
pub(super) type AppHook<M> =
    Box<dyn for<'a> FnMut(&mut M, Instant, usize, &<M as Machine>::App<'a>)>;
pub(super) type EventHook<E> = Box<dyn FnMut(usize, &E)>;
pub(super) type ClosedHook<M> = Box<dyn Fn(&M) -> bool>;
type Observer = Box<dyn FnMut(&TraceEntry<'_>)>;
type DropFilter = Box<dyn FnMut(usize, &[u8]) -> bool>;

#[derive(Default)]
struct Tracer {
    observer: Option<Observer>,
    transcript: Option<Vec<TraceRecord>>,
}

impl Tracer {
    fn emit(&mut self, e: &TraceEntry<'_>) {
        if let Some(o) = self.observer.as_mut() {
            o(e);
        }
        if let Some(t) = self.transcript.as_mut() {
            t.push(e.to_record());
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Deliver,
    Client(usize),
    Server,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Idle,
    Stalled,
    Limit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Accepted,
    Refused,
    Reset,
    WsClosed,
}

/// One server and many clients, each client on its own pair of [`Link`]s
///
/// Client `i` is seen by the server at address `addr_of(i)`; server transmits are routed by
/// address. Every client's two links share the fleet's [`LinkConfig`] but draw from independent
/// random streams derived from the seed, so a run is a pure function of (machines, config, seed,
/// commands).
///
/// # Scheduling and cost
///
/// All frames in flight sit in one binary heap ordered by (arrival, send order); client timers sit
/// in a second heap with lazy invalidation (each client's entry carries a generation number); the
/// server's deadline is kept apart. A step pops the earliest of the three (ties: deliveries, then
/// client timers, then the server), performs it, and then drains only the machines it touched
/// (`poll_transmit`, `poll_event`, `poll_timeout`). So one step costs
/// O(log F + log M) plus the machines' own work, where F is the number of frames in flight and M
/// the number of clients; nothing scans all clients per step. (Helpers named `total_*` are O(M).)
/// A `run_until` predicate runs after every step, so keep it O(1) for big fleets.
///
/// # Invariant checks
///
/// On by default ([`Fleet::set_checks`]); a violation panics with a message naming the machine:
/// * `poll_timeout` earlier than the `now` last given to that machine;
/// * a transmit after the machine was closed, when a closed-test was given
///   ([`Fleet::client_closed_when`], [`Fleet::server_closed_when`]);
/// * a datagram or WebSocket message not consumed whole, a stream input consuming more bytes
///   than it was given or consuming nothing without a `need` beyond the buffered bytes, `BufferTooSmall` asking for no more than was offered, a `Transmit` longer
///   than the buffer, or more than 100 000 frames/events in one drain.
pub struct Fleet<C: Machine<Peer = ()>, S: Machine>
where
    S::Peer: Hash,
{
    clock: VirtualClock,
    link_config: LinkConfig,
    seed: u64,
    server: S,
    server_events: Vec<S::Event>,
    server_stats: SideStats,
    server_closed: Option<ClosedHook<S>>,
    server_silent: bool,
    server_dirty: bool,
    server_deadline: Option<Instant>,
    /// Client whose frame or transport event the server handled since its last drain
    server_cause: usize,
    clients: Vec<Slot<C, S::Peer>>,
    client_closed: Option<ClosedHook<C>>,
    by_addr: HashMap<S::Peer, usize>,
    dirty: Vec<usize>,
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    flights: BinaryHeap<Reverse<Flight>>,
    seq: u64,
    scratch: Vec<u8>,
    plan: Vec<Planned>,
    on_client_app: Option<AppHook<C>>,
    on_server_app: Option<AppHook<S>>,
    on_client_event: Option<EventHook<C::Event>>,
    on_server_event: Option<EventHook<S::Event>>,
    keep_events: bool,
    tracer: Tracer,
    /// Test-chosen drops, client-to-server and server-to-client
    drop_c2s: Option<DropFilter>,
    drop_s2c: Option<DropFilter>,
    checks: bool,
    ws_close_closes: bool,
    stall_limit: u64,
    same_instant_steps: u64,
    steps: u64,
}

impl<C, S> Fleet<C, S>
where
    C: Machine<Peer = ()>,
    S: Machine,
    S::Peer: Hash,
{
    /// A fleet of `clients` clients made by `make_client(i)`, client `i` at address `addr_of(i)`
    ///
    /// Virtual time starts at [`Instant::ZERO`] (see [`Fleet::starting_at`]).
    ///
    /// # Panics
    /// If two clients get the same address, or `link` has a probability outside `0..=1`.
    #[must_use]
    pub fn new(
        server: S,
        clients: usize,
        mut make_client: impl FnMut(usize) -> C,
        mut addr_of: impl FnMut(usize) -> S::Peer,
        link: LinkConfig,
        seed: u64,
    ) -> Self {
        let mut fleet = Fleet {
            clock: VirtualClock::new(Instant::ZERO),
            link_config: link,
            seed,
            server,
            server_events: Vec::new(),
            server_stats: SideStats::default(),
            server_closed: None,
            server_silent: false,
            server_dirty: true,
            server_deadline: None,
            server_cause: usize::MAX,
            clients: Vec::with_capacity(clients),
            client_closed: None,
            by_addr: HashMap::with_capacity(clients),
            dirty: Vec::with_capacity(clients),
            timers: BinaryHeap::with_capacity(clients),
            flights: BinaryHeap::new(),
            seq: 0,
            scratch: std::vec![0; SCRATCH_LEN],
            plan: Vec::new(),
            on_client_app: None,
            on_server_app: None,
            on_client_event: None,
            on_server_event: None,
            keep_events: true,
            tracer: Tracer::default(),
            drop_c2s: None,
            drop_s2c: None,
            checks: true,
            ws_close_closes: true,
            stall_limit: DEFAULT_STALL_LIMIT,
            same_instant_steps: 0,
            steps: 0,
        };
        for i in 0..clients {
            let c = make_client(i);
            let a = addr_of(i);
            fleet.add_client(c, a);
        }
        fleet
    }

    /// Start virtual time at `start` instead of [`Instant::ZERO`]
    ///
    /// # Panics
    /// If the simulation already ran a step.
    #[must_use]
    pub fn starting_at(mut self, start: Instant) -> Self {
        assert!(
            self.steps == 0 && self.flights.is_empty(),
            "starting_at must be called before the first step"
        );
        self.clock = VirtualClock::new(start);
        self
    }

    /// Add a client at `addr`; returns its index
    ///
    /// # Panics
    /// If another client already has `addr`.
    pub fn add_client(&mut self, client: C, addr: S::Peer) -> usize {
        let i = self.clients.len();
        assert!(
            self.by_addr.insert(addr, i).is_none(),
            "client {i}: address already used by another client"
        );
        let stream = (i as u64).wrapping_mul(2);
        self.clients.push(Slot {
            machine: client,
            addr,
            events: Vec::new(),
            stats: SideStats::default(),
            c2s: Link::new(self.link_config, Rng::derived(self.seed, stream).next_u64()),
            s2c: Link::new(
                self.link_config,
                Rng::derived(self.seed, stream + 1).next_u64(),
            ),
            epoch: 0,
            rx_at_server: Vec::new(),
            rx_at_client: Vec::new(),
            timer_gen: 0,
            timer_at: None,
            silent: false,
            dirty: false,
        });
        self.mark_client(i);
        i
    }

    /// Number of clients
    #[must_use]
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// True when there are no clients
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// The current virtual instant
    #[must_use]
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// The virtual clock
    #[must_use]
    pub fn clock(&self) -> &VirtualClock {
        &self.clock
    }

    /// Virtual time since the start
    #[must_use]
    pub fn elapsed(&self) -> Duration {
        self.clock.elapsed()
    }

    /// Actions performed so far (deliveries and timer firings)
    #[must_use]
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The server
    #[must_use]
    pub fn server(&self) -> &S {
        &self.server
    }

    /// The server, to issue commands; it is drained on the next step
    pub fn server_mut(&mut self) -> &mut S {
        self.server_dirty = true;
        &mut self.server
    }

    /// Client `i`
    ///
    /// # Panics
    /// If `i` is out of range (also for every other method taking a client index).
    #[must_use]
    pub fn client(&self, i: usize) -> &C {
        &self.clients[i].machine
    }

    /// Client `i`, to issue commands; it is drained on the next step
    pub fn client_mut(&mut self, i: usize) -> &mut C {
        self.mark_client(i);
        &mut self.clients[i].machine
    }

    /// The address the server sees for client `i`
    #[must_use]
    pub fn client_addr(&self, i: usize) -> S::Peer {
        self.clients[i].addr
    }

    /// Give client `i` a new address (NAT rebinding, reconnect from elsewhere)
    ///
    /// Frames already in flight to the old address still reach client `i`.
    ///
    /// # Panics
    /// If another client has `addr`.
    pub fn set_client_addr(&mut self, i: usize, addr: S::Peer) {
        let old = self.clients[i].addr;
        if old == addr {
            return;
        }
        assert!(
            !self.by_addr.contains_key(&addr),
            "client {i}: address already used by another client"
        );
        self.by_addr.remove(&old);
        self.by_addr.insert(addr, i);
        self.clients[i].addr = addr;
    }

    /// Events the server reported so far (oldest first)
    #[must_use]
    pub fn server_events(&self) -> &[S::Event] {
        &self.server_events
    }

    /// Take the server's events out
    pub fn take_server_events(&mut self) -> Vec<S::Event> {
        core::mem::take(&mut self.server_events)
    }

    /// Events client `i` reported so far (oldest first)
    #[must_use]
    pub fn client_events(&self, i: usize) -> &[C::Event] {
        &self.clients[i].events
    }

    /// Take client `i`'s events out
    pub fn take_client_events(&mut self, i: usize) -> Vec<C::Event> {
        core::mem::take(&mut self.clients[i].events)
    }

    /// The server's counters
    #[must_use]
    pub fn server_stats(&self) -> &SideStats {
        &self.server_stats
    }

    /// Client `i`'s counters
    #[must_use]
    pub fn client_stats(&self, i: usize) -> &SideStats {
        &self.clients[i].stats
    }

    /// All clients' counters summed (O(M))
    #[must_use]
    pub fn total_client_stats(&self) -> SideStats {
        let mut t = SideStats::default();
        for c in &self.clients {
            t.add(&c.stats);
        }
        t
    }

    /// Call `f(client index, app data)` for every application payload a client receives
    ///
    /// Replaces a hook set with [`Fleet::answer_client_app`].
    pub fn on_client_app(&mut self, mut f: impl for<'a> FnMut(usize, &C::App<'a>) + 'static) {
        self.on_client_app = Some(Box::new(move |_, _, i, a: &C::App<'_>| f(i, a)));
    }

    /// Call `f(client index, app data)` for every application payload the server receives
    ///
    /// Replaces a hook set with [`Fleet::answer_server_app`].
    pub fn on_server_app(&mut self, mut f: impl for<'a> FnMut(usize, &S::App<'a>) + 'static) {
        self.on_server_app = Some(Box::new(move |_, _, i, a: &S::App<'_>| f(i, a)));
    }

    /// Call `f(client, now, client index, app data)` for every application payload a client
    /// receives, with the client itself so `f` can answer at once with commands
    ///
    /// See [`Fleet::answer_server_app`]. Replaces a hook set with [`Fleet::on_client_app`].
    pub fn answer_client_app(
        &mut self,
        f: impl for<'a> FnMut(&mut C, Instant, usize, &C::App<'a>) + 'static,
    ) {
        self.on_client_app = Some(Box::new(f));
    }

    /// Call `f(server, now, client index, app data)` for every application payload the server
    /// receives, with the server itself so `f` can answer at once with commands
    ///
    /// This is what a real application loop does: it reads one input, acts on its data (e.g.
    /// checks a LongPort Auth token and calls `accept_auth`), and only then feeds the next
    /// bytes. A machine that refuses further input until the application decided (an auth
    /// pending) therefore never sees its stream reset by the simulator, which closes a stream
    /// transport whose bytes are refused twice in a row. The command's frames and events are
    /// collected by the drain that follows the delivery. Replaces a hook set with
    /// [`Fleet::on_server_app`].
    pub fn answer_server_app(
        &mut self,
        f: impl for<'a> FnMut(&mut S, Instant, usize, &S::App<'a>) + 'static,
    ) {
        self.on_server_app = Some(Box::new(f));
    }

    /// Call `f(client index, event)` for every event a client reports, as it is reported
    pub fn on_client_event(&mut self, f: impl FnMut(usize, &C::Event) + 'static) {
        self.on_client_event = Some(Box::new(f));
    }

    /// Call `f(client index, event)` for every event the server reports; the index is the client
    /// whose frame (or transport close) the server had just handled, or `usize::MAX` when the
    /// event followed a server timer or command
    pub fn on_server_event(&mut self, f: impl FnMut(usize, &S::Event) + 'static) {
        self.on_server_event = Some(Box::new(f));
    }

    /// Keep events for [`Fleet::client_events`] / [`Fleet::server_events`] (default true)
    ///
    /// Long soak runs can turn this off and watch events through the hooks
    /// ([`Fleet::on_client_event`], [`Fleet::on_server_event`]) and [`SideStats::events`] instead.
    pub fn keep_events(&mut self, on: bool) {
        self.keep_events = on;
    }

    /// Report every frame's fate to `f` (see [`TraceEntry`])
    pub fn set_observer(&mut self, f: impl FnMut(&TraceEntry<'_>) + 'static) {
        self.tracer.observer = Some(Box::new(f));
    }

    /// Keep (or stop keeping) an owned transcript of every frame's fate
    pub fn record_transcript(&mut self, on: bool) {
        if on {
            self.tracer.transcript.get_or_insert_with(Vec::new);
        } else {
            self.tracer.transcript = None;
        }
    }

    /// The transcript kept so far (empty unless [`Fleet::record_transcript`] is on)
    #[must_use]
    pub fn transcript(&self) -> &[TraceRecord] {
        self.tracer.transcript.as_deref().unwrap_or(&[])
    }

    /// Take the transcript out (recording continues if it was on)
    pub fn take_transcript(&mut self) -> Vec<TraceRecord> {
        self.tracer
            .transcript
            .as_mut()
            .map(core::mem::take)
            .unwrap_or_default()
    }

    /// Tell the simulator when a client is closed, so it can check that a closed client stays
    /// silent
    ///
    /// `f` should return true only once the machine promises to send nothing more. A frame the
    /// machine queued while closing is fine: the check fires only when a machine that was closed
    /// at the end of one drain transmits in a later drain while still closed.
    pub fn client_closed_when(&mut self, f: impl Fn(&C) -> bool + 'static) {
        self.client_closed = Some(Box::new(f));
    }

    /// The server counterpart of [`Fleet::client_closed_when`]
    pub fn server_closed_when(&mut self, f: impl Fn(&S) -> bool + 'static) {
        self.server_closed = Some(Box::new(f));
    }

    /// Turn the built-in invariant checks on (default) or off
    pub fn set_checks(&mut self, on: bool) {
        self.checks = on;
    }

    /// Steps allowed without virtual time advancing before a run reports [`SimError::Stalled`]
    /// (default 200 000; never less than 100 per client)
    pub fn set_stall_limit(&mut self, steps: u64) {
        self.stall_limit = steps.max(1);
    }

    /// Whether delivering a WebSocket Close frame also closes the transport (default true: the
    /// caller closes the transport after a Close, see [`FrameKind::WsClose`])
    pub fn set_ws_close_closes_transport(&mut self, on: bool) {
        self.ws_close_closes = on;
    }

    /// Change how client `i`'s link in direction `dir` behaves from now on
    pub fn set_link_config(&mut self, i: usize, dir: Direction, config: LinkConfig) {
        self.link_mut(i, dir).set_config(config);
    }

    /// Client `i`'s link in direction `dir`
    #[must_use]
    pub fn link(&self, i: usize, dir: Direction) -> &Link {
        match dir {
            Direction::ClientToServer => &self.clients[i].c2s,
            Direction::ServerToClient => &self.clients[i].s2c,
        }
    }

    fn link_mut(&mut self, i: usize, dir: Direction) -> &mut Link {
        match dir {
            Direction::ClientToServer => &mut self.clients[i].c2s,
            Direction::ServerToClient => &mut self.clients[i].s2c,
        }
    }

    /// Cut or restore both of client `i`'s links; while cut, every frame (also one already in
    /// flight when it arrives) is dropped with [`Fate::LinkDown`]
    ///
    /// A stream transport does not survive a cut in reality: call [`Fleet::close_transport`] when
    /// the test means "the TCP connection died".
    pub fn set_link_up(&mut self, i: usize, up: bool) {
        self.clients[i].c2s.set_up(up);
        self.clients[i].s2c.set_up(up);
    }

    /// Drop chosen frames: every frame sent in direction `dir` is first shown to
    /// `f(client index, bytes)`, and when it returns true the frame is dropped with
    /// [`Fate::Filtered`] instead of going onto the link
    ///
    /// The filter runs before the link decides anything (so a filtered frame draws no random
    /// numbers), for every frame kind, and replaces an earlier filter for `dir`. Keep state in
    /// the closure to drop, say, exactly the first frame of some type.
    pub fn set_drop_filter(
        &mut self,
        dir: Direction,
        f: impl FnMut(usize, &[u8]) -> bool + 'static,
    ) {
        *self.drop_filter_mut(dir) = Some(Box::new(f));
    }

    /// Remove the drop filter of direction `dir` (see [`Fleet::set_drop_filter`])
    pub fn clear_drop_filter(&mut self, dir: Direction) {
        *self.drop_filter_mut(dir) = None;
    }

    fn drop_filter_mut(&mut self, dir: Direction) -> &mut Option<DropFilter> {
        match dir {
            Direction::ClientToServer => &mut self.drop_c2s,
            Direction::ServerToClient => &mut self.drop_s2c,
        }
    }

    /// Frames in flight, all clients
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.flights.len()
    }

    /// Close client `i`'s transport (TCP reset, WebSocket gone)
    ///
    /// Calls `handle_closed` on the client and on the server (with the client's address), drops
    /// stream/WebSocket frames still in flight and both stream receive buffers. The next stream
    /// frame either side sends starts a new transport. Datagrams are unaffected.
    pub fn close_transport(&mut self, i: usize) {
        self.close_transport_inner(i);
        self.drain();
    }

    fn close_transport_inner(&mut self, i: usize) {
        let now = self.clock.now();
        let slot = &mut self.clients[i];
        slot.epoch += 1;
        slot.rx_at_server.clear();
        slot.rx_at_client.clear();
        slot.c2s.reset_reliable();
        slot.s2c.reset_reliable();
        slot.machine.handle_closed(now, ());
        let addr = slot.addr;
        self.server.handle_closed(now, addr);
        self.mark_client(i);
        self.server_dirty = true;
        self.server_cause = i;
    }

    /// Hand `bytes` to the server now, as if client `i` had sent them (bypasses the link)
    ///
    /// Stream bytes join the stream receive buffer. The transcript shows [`Fate::Injected`].
    /// The machines are drained afterwards.
    pub fn inject_to_server(&mut self, i: usize, kind: FrameKind, bytes: &[u8]) {
        self.inject(i, Direction::ClientToServer, kind, bytes);
    }

    /// Hand `bytes` to client `i` now, as if the server had sent them (bypasses the link)
    pub fn inject_to_client(&mut self, i: usize, kind: FrameKind, bytes: &[u8]) {
        self.inject(i, Direction::ServerToClient, kind, bytes);
    }

    /// Send `bytes` from client `i` over its link, as if `poll_transmit` had returned them
    ///
    /// For frames a machine writes outside `poll_transmit` (a LongPort client's
    /// `send_request` writes into the caller's buffer and returns the `Transmit`): they take
    /// the link's latency, splitting and loss like any transmit and count in
    /// [`SideStats::transmits`].
    pub fn send_from_client(&mut self, i: usize, kind: FrameKind, bytes: &[u8]) {
        let st = &mut self.clients[i].stats;
        st.transmits += 1;
        st.bytes_out += bytes.len() as u64;
        self.send(i, Direction::ClientToServer, kind, bytes);
    }

    /// Send `bytes` from the server to the client at `to` over its link, as if `poll_transmit`
    /// had returned them (a LongPort server's `respond` / `push` write into the caller's buffer)
    ///
    /// An address that is no client of the fleet counts as [`SideStats::unroutable`].
    pub fn send_from_server(&mut self, to: S::Peer, kind: FrameKind, bytes: &[u8]) {
        self.server_stats.transmits += 1;
        self.server_stats.bytes_out += bytes.len() as u64;
        match self.by_addr.get(&to).copied() {
            Some(i) => self.send(i, Direction::ServerToClient, kind, bytes),
            None => {
                self.server_stats.unroutable += 1;
                let now = self.clock.now();
                self.tracer.emit(&TraceEntry {
                    at: now,
                    sent_at: now,
                    dir: Direction::ServerToClient,
                    client: None,
                    kind,
                    bytes,
                    fate: Fate::Unroutable,
                });
            }
        }
    }

    fn inject(&mut self, i: usize, dir: Direction, kind: FrameKind, bytes: &[u8]) {
        let now = self.clock.now();
        let f = Flight {
            at: now,
            seq: 0,
            client: i,
            dir,
            kind,
            bytes: bytes.to_vec(),
            fate: Fate::Injected,
            epoch: self.clients[i].epoch,
            sent_at: now,
        };
        self.deliver(f);
        self.drain();
    }

    /// Drain every machine touched since the last drain: send its frames, collect its events,
    /// reschedule its timer (steps do this themselves; useful right after a command)
    pub fn drain(&mut self) {
        while let Some(i) = self.dirty.pop() {
            self.clients[i].dirty = false;
            self.drain_client(i);
        }
        if self.server_dirty {
            self.server_dirty = false;
            self.drain_server();
        }
    }

    /// When the next delivery or timer is due (`None` when nothing is scheduled)
    pub fn next_event_at(&mut self) -> Option<Instant> {
        self.drain();
        self.next_action().map(|(t, _)| t)
    }

    /// Drain, perform the earliest delivery or timer (jumping virtual time to it), drain again
    ///
    /// Returns false when nothing is scheduled.
    ///
    /// # Panics
    /// On a livelock (see [`Fleet::set_stall_limit`]) and on invariant violations.
    pub fn step(&mut self) -> bool {
        match self.advance_one(None) {
            Ok(()) => true,
            Err(Stop::Idle | Stop::Limit) => false,
            Err(Stop::Stalled) => panic!("{}", self.stalled_error()),
        }
    }

    /// Step until `pred` holds, giving up after `budget` of virtual time
    ///
    /// `pred` is checked before the first step and after every step.
    ///
    /// # Errors
    /// [`SimError::Timeout`] when the budget ran out (the clock then stands at the end of the
    /// budget), [`SimError::Idle`] when nothing is scheduled any more, [`SimError::Stalled`] on a
    /// livelock.
    pub fn run_until(
        &mut self,
        mut pred: impl FnMut(&Self) -> bool,
        budget: Duration,
    ) -> Result<(), SimError> {
        let limit = self.clock.now() + budget;
        loop {
            self.drain();
            if pred(self) {
                return Ok(());
            }
            self.advance_one(Some(limit))
                .map_err(|s| self.stop_error(s, budget))?;
        }
    }

    /// [`Fleet::run_until`] with a closure that may also act: it gets the fleet mutably after
    /// every step, so it can answer events with commands (open a transport when a client asks for
    /// one, grant an auth request, ...); return true to stop
    ///
    /// # Errors
    /// As [`Fleet::run_until`].
    pub fn run_until_mut(
        &mut self,
        mut react: impl FnMut(&mut Self) -> bool,
        budget: Duration,
    ) -> Result<(), SimError> {
        let limit = self.clock.now() + budget;
        loop {
            self.drain();
            if react(self) {
                return Ok(());
            }
            self.advance_one(Some(limit))
                .map_err(|s| self.stop_error(s, budget))?;
        }
    }

    /// Run every delivery and timer due within `d`, then leave the clock at `now + d`
    ///
    /// Returns the number of steps taken.
    ///
    /// # Panics
    /// On a livelock and on invariant violations.
    pub fn run_for(&mut self, d: Duration) -> u64 {
        let limit = self.clock.now() + d;
        let before = self.steps;
        loop {
            match self.advance_one(Some(limit)) {
                Ok(()) => {}
                Err(Stop::Limit) => break,
                Err(Stop::Idle) => {
                    self.clock.jump_to(limit.max(self.clock.now()));
                    break;
                }
                Err(Stop::Stalled) => panic!("{}", self.stalled_error()),
            }
        }
        self.steps - before
    }

    fn stalled_error(&self) -> SimError {
        SimError::Stalled {
            at: self.clock.now(),
            steps: self.same_instant_steps,
        }
    }

    fn stop_error(&self, s: Stop, budget: Duration) -> SimError {
        match s {
            Stop::Idle => SimError::Idle {
                at: self.clock.now(),
            },
            Stop::Stalled => self.stalled_error(),
            Stop::Limit => SimError::Timeout {
                at: self.clock.now(),
                budget,
            },
        }
    }

    /// Drain; perform one action due no later than `limit` (else move the clock to `limit`)
    fn advance_one(&mut self, limit: Option<Instant>) -> Result<(), Stop> {
        self.drain();
        if self.same_instant_steps >= self.stall_limit.max(100 * self.clients.len() as u64) {
            return Err(Stop::Stalled);
        }
        let Some((at, action)) = self.next_action() else {
            return Err(Stop::Idle);
        };
        if let Some(limit) = limit {
            if at > limit {
                self.clock.jump_to(limit.max(self.clock.now()));
                return Err(Stop::Limit);
            }
        }
        if at > self.clock.now() {
            self.clock.jump_to(at);
            self.same_instant_steps = 0;
        } else {
            self.same_instant_steps += 1;
        }
        self.steps += 1;
        self.perform(action);
        self.drain();
        Ok(())
    }

    fn next_action(&mut self) -> Option<(Instant, Action)> {
        while let Some(&Reverse((_, i, gen))) = self.timers.peek() {
            if self.clients[i].timer_gen == gen {
                break;
            }
            self.timers.pop();
        }
        let mut best = self
            .flights
            .peek()
            .map(|Reverse(f)| (f.at, Action::Deliver));
        if let Some(&Reverse((t, i, _))) = self.timers.peek() {
            if best.is_none_or(|(b, _)| t < b) {
                best = Some((t, Action::Client(i)));
            }
        }
        if let Some(t) = self.server_deadline {
            if best.is_none_or(|(b, _)| t < b) {
                best = Some((t, Action::Server));
            }
        }
        best
    }

    fn perform(&mut self, action: Action) {
        let now = self.clock.now();
        match action {
            Action::Deliver => {
                if let Some(Reverse(f)) = self.flights.pop() {
                    self.deliver(f);
                }
            }
            Action::Client(i) => {
                self.timers.pop();
                let slot = &mut self.clients[i];
                slot.timer_gen += 1;
                slot.timer_at = None;
                slot.stats.timeouts += 1;
                slot.machine.handle_timeout(now);
                self.mark_client(i);
            }
            Action::Server => {
                self.server_deadline = None;
                self.server_stats.timeouts += 1;
                self.server.handle_timeout(now);
                self.server_dirty = true;
            }
        }
    }

    fn mark_client(&mut self, i: usize) {
        let slot = &mut self.clients[i];
        if !slot.dirty {
            slot.dirty = true;
            self.dirty.push(i);
        }
    }

    fn deliver(&mut self, f: Flight) {
        let now = self.clock.now();
        let i = f.client;
        let slot = &self.clients[i];
        if f.fate != Fate::Injected {
            let link = match f.dir {
                Direction::ClientToServer => &slot.c2s,
                Direction::ServerToClient => &slot.s2c,
            };
            let drop = if !link.is_up() {
                Some(Fate::LinkDown)
            } else if f.kind != FrameKind::Datagram && f.epoch != slot.epoch {
                Some(Fate::TransportClosed)
            } else {
                None
            };
            if let Some(fate) = drop {
                self.trace(&f, now, fate);
                return;
            }
        }
        let checks = self.checks;
        let Fleet {
            clients,
            server,
            server_events,
            server_stats,
            on_client_app,
            on_server_app,
            on_client_event,
            on_server_event,
            keep_events,
            ..
        } = self;
        let keep = *keep_events;
        let slot = &mut clients[i];
        let outcome = match f.dir {
            Direction::ClientToServer => {
                let mut hook = |m: &mut S, a: &S::App<'_>| {
                    if let Some(h) = on_server_app.as_mut() {
                        h(m, now, i, a);
                    }
                };
                let rx = &mut slot.rx_at_server;
                let mut sink = |e: S::Event| record(i, e, keep, server_events, on_server_event);
                let input = Input {
                    who: "server",
                    idx: i,
                    kind: f.kind,
                    bytes: &f.bytes,
                };
                deliver_to(
                    server,
                    input,
                    now,
                    slot.addr,
                    rx,
                    &mut sink,
                    server_stats,
                    &mut hook,
                    checks,
                )
            }
            Direction::ServerToClient => {
                let mut hook = |m: &mut C, a: &C::App<'_>| {
                    if let Some(h) = on_client_app.as_mut() {
                        h(m, now, i, a);
                    }
                };
                let rx = &mut slot.rx_at_client;
                let ev = &mut slot.events;
                let mut sink = |e: C::Event| record(i, e, keep, ev, on_client_event);
                let input = Input {
                    who: "client",
                    idx: i,
                    kind: f.kind,
                    bytes: &f.bytes,
                };
                deliver_to(
                    &mut slot.machine,
                    input,
                    now,
                    (),
                    rx,
                    &mut sink,
                    &mut slot.stats,
                    &mut hook,
                    checks,
                )
            }
        };
        match f.dir {
            Direction::ClientToServer => {
                self.server_dirty = true;
                self.server_cause = i;
            }
            Direction::ServerToClient => self.mark_client(i),
        }
        let fate = match (outcome, f.fate) {
            (_, Fate::Injected) => Fate::Injected,
            (Outcome::Refused | Outcome::Reset, _) => Fate::Refused,
            (Outcome::Accepted | Outcome::WsClosed, fate) => fate,
        };
        self.trace(&f, now, fate);
        match outcome {
            Outcome::Reset => {
                match f.dir {
                    Direction::ClientToServer => self.server_stats.stream_resets += 1,
                    Direction::ServerToClient => self.clients[i].stats.stream_resets += 1,
                }
                self.close_transport_inner(i);
            }
            Outcome::WsClosed if self.ws_close_closes => {
                // Let the receiver answer first (a Close reply): its frames leave on the old
                // transport and are dropped with it, as a WebSocket library that already replied
                // would drop them.
                self.drain();
                self.close_transport_inner(i);
            }
            _ => {}
        }
    }

    fn trace(&mut self, f: &Flight, at: Instant, fate: Fate) {
        self.tracer.emit(&TraceEntry {
            at,
            sent_at: f.sent_at,
            dir: f.dir,
            client: Some(f.client),
            kind: f.kind,
            bytes: &f.bytes,
            fate,
        });
    }

    fn send(&mut self, i: usize, dir: Direction, kind: FrameKind, bytes: &[u8]) {
        let now = self.clock.now();
        let mut plan = core::mem::take(&mut self.plan);
        let epoch = self.clients[i].epoch;
        let filtered = match self.drop_filter_mut(dir) {
            Some(f) => f(i, bytes),
            None => false,
        };
        let planned = if filtered {
            Err(Fate::Filtered)
        } else {
            self.link_mut(i, dir)
                .plan(now, kind, bytes.len(), &mut plan)
        };
        match planned {
            Err(fate) => self.tracer.emit(&TraceEntry {
                at: now,
                sent_at: now,
                dir,
                client: Some(i),
                kind,
                bytes,
                fate,
            }),
            Ok(()) => {
                for p in &plan {
                    self.seq += 1;
                    self.flights.push(Reverse(Flight {
                        at: p.at,
                        seq: self.seq,
                        client: i,
                        dir,
                        kind,
                        bytes: bytes[p.start..p.end].to_vec(),
                        fate: p.fate,
                        epoch,
                        sent_at: now,
                    }));
                }
            }
        }
        self.plan = plan;
    }

    fn drain_client(&mut self, i: usize) {
        let now = self.clock.now();
        let closed = |f: &Option<ClosedHook<C>>, m: &C| f.as_ref().is_some_and(|f| f(m));
        let silent = self.checks
            && self.clients[i].silent
            && closed(&self.client_closed, &self.clients[i].machine);
        let mut scratch = core::mem::take(&mut self.scratch);
        let mut count = 0;
        loop {
            match self.clients[i].machine.poll_transmit(now, &mut scratch) {
                Ok(None) => break,
                Ok(Some(t)) => {
                    count += 1;
                    check_transmit("client", i, t.len, scratch.len(), count, silent, t.kind);
                    let st = &mut self.clients[i].stats;
                    st.transmits += 1;
                    st.bytes_out += t.len as u64;
                    self.send(i, Direction::ClientToServer, t.kind, &scratch[..t.len]);
                }
                Err(e) => grow(&mut scratch, e, "client", i),
            }
        }
        self.scratch = scratch;
        let slot = &mut self.clients[i];
        let mut n = 0;
        while let Some(e) = slot.machine.poll_event() {
            record(
                i,
                e,
                self.keep_events,
                &mut slot.events,
                &mut self.on_client_event,
            );
            slot.stats.events += 1;
            n += 1;
            assert!(
                n <= DRAIN_LIMIT,
                "client {i} reported more than {DRAIN_LIMIT} events in one drain"
            );
        }
        slot.silent = closed(&self.client_closed, &slot.machine);
        // Reschedule the timer.
        let t = slot.machine.poll_timeout();
        if self.checks {
            check_deadline("client", i, t, now);
        }
        if t != slot.timer_at {
            slot.timer_gen += 1;
            slot.timer_at = t;
            if let Some(t) = t {
                self.timers.push(Reverse((t, i, slot.timer_gen)));
            }
        }
    }

    fn drain_server(&mut self) {
        let now = self.clock.now();
        let closed = |f: &Option<ClosedHook<S>>, m: &S| f.as_ref().is_some_and(|f| f(m));
        let silent = self.checks && self.server_silent && closed(&self.server_closed, &self.server);
        let mut scratch = core::mem::take(&mut self.scratch);
        let mut count = 0;
        loop {
            match self.server.poll_transmit(now, &mut scratch) {
                Ok(None) => break,
                Ok(Some(t)) => {
                    count += 1;
                    check_transmit("server", 0, t.len, scratch.len(), count, silent, t.kind);
                    self.server_stats.transmits += 1;
                    self.server_stats.bytes_out += t.len as u64;
                    match self.by_addr.get(&t.to).copied() {
                        Some(i) => {
                            self.send(i, Direction::ServerToClient, t.kind, &scratch[..t.len])
                        }
                        None => {
                            self.server_stats.unroutable += 1;
                            self.tracer.emit(&TraceEntry {
                                at: now,
                                sent_at: now,
                                dir: Direction::ServerToClient,
                                client: None,
                                kind: t.kind,
                                bytes: &scratch[..t.len],
                                fate: Fate::Unroutable,
                            });
                        }
                    }
                }
                Err(e) => grow(&mut scratch, e, "server", 0),
            }
        }
        self.scratch = scratch;
        let mut n = 0;
        while let Some(e) = self.server.poll_event() {
            record(
                self.server_cause,
                e,
                self.keep_events,
                &mut self.server_events,
                &mut self.on_server_event,
            );
            self.server_stats.events += 1;
            n += 1;
            assert!(
                n <= DRAIN_LIMIT,
                "server reported more than {DRAIN_LIMIT} events in one drain"
            );
        }
        self.server_cause = usize::MAX;
        self.server_silent = closed(&self.server_closed, &self.server);
        let t = self.server.poll_timeout();
        if self.checks {
            check_deadline("server", 0, t, now);
        }
        self.server_deadline = t;
    }
}

pub(super) fn record<E>(
    i: usize,
    e: E,
    keep: bool,
    store: &mut Vec<E>,
    hook: &mut Option<EventHook<E>>,
) {
    if let Some(h) = hook.as_mut() {
        h(i, &e);
    }
    if keep {
        store.push(e);
    }
}

pub(super) fn check_transmit(
    who: &str,
    i: usize,
    len: usize,
    buf: usize,
    count: usize,
    silent: bool,
    kind: FrameKind,
) {
    assert!(
        !silent,
        "invariant: {who} {i} transmitted a {kind:?} frame after it reported closed (closed-test was true after the previous drain)"
    );
    assert!(
        len <= buf,
        "invariant: {who} {i} returned Transmit {{ len: {len} }} for a {buf}-byte buffer"
    );
    assert!(
        count <= DRAIN_LIMIT,
        "invariant: {who} {i} emitted more than {DRAIN_LIMIT} transmits in one drain"
    );
}

pub(super) fn check_deadline(who: &str, i: usize, t: Option<Instant>, now: Instant) {
    if let Some(t) = t {
        assert!(t >= now, "invariant: {who} {i} poll_timeout() = {t} is earlier than the last now ({now}) it was given");
    }
}

pub(super) fn grow(scratch: &mut Vec<u8>, e: BufferTooSmall, who: &str, i: usize) {
    assert!(
        e.required > scratch.len(),
        "invariant: {who} {i} returned BufferTooSmall {{ required: {} }} for a {}-byte buffer",
        e.required,
        scratch.len()
    );
    scratch.resize(e.required, 0);
}

/// One frame (or stream chunk) on its way into a machine, named for invariant messages
#[derive(Clone, Copy)]
pub(super) struct Input<'b> {
    pub(super) who: &'static str,
    pub(super) idx: usize,
    pub(super) kind: FrameKind,
    pub(super) bytes: &'b [u8],
}

/// Hand one delivered frame (or stream chunk) to machine `m`
#[allow(clippy::too_many_arguments)]
pub(super) fn deliver_to<M: Machine>(
    m: &mut M,
    f: Input<'_>,
    now: Instant,
    from: M::Peer,
    rx: &mut Vec<u8>,
    events: &mut impl FnMut(M::Event),
    stats: &mut SideStats,
    app: &mut impl for<'a> FnMut(&mut M, &M::App<'a>),
    checks: bool,
) -> Outcome {
    let who = f.who;
    stats.frames_in += 1;
    stats.bytes_in += f.bytes.len() as u64;
    match f.kind {
        FrameKind::Datagram | FrameKind::WsBinary => match m.handle_input(now, from, f.bytes) {
            Ok(r) => {
                if checks {
                    assert!(
                        r.bytes_consumed() == f.bytes.len() && r.needed().is_none(),
                        "invariant: {who} {} consumed {} of a {}-byte {:?} (need {:?}); datagrams and messages are consumed whole",
                        f.idx,
                        r.bytes_consumed(),
                        f.bytes.len(),
                        f.kind,
                        r.needed()
                    );
                }
                if let Some(a) = r.app() {
                    app(m, a);
                    stats.app_frames += 1;
                    stats.app_bytes += f.bytes.len() as u64;
                }
                Outcome::Accepted
            }
            Err(_) => {
                stats.input_errors += 1;
                Outcome::Refused
            }
        },
        FrameKind::Stream => {
            rx.extend_from_slice(f.bytes);
            if feed_stream(m, who, f.idx, now, from, rx, events, stats, app, checks) {
                Outcome::Accepted
            } else {
                Outcome::Reset
            }
        }
        FrameKind::WsPing | FrameKind::WsPong => {
            m.handle_frame(now, from, f.kind, f.bytes);
            Outcome::Accepted
        }
        FrameKind::WsClose(_) => {
            m.handle_frame(now, from, f.kind, f.bytes);
            Outcome::WsClosed
        }
    }
}

/// Feed a stream receive buffer to `m` until it needs more bytes; false when it kept refusing
///
/// On an `Err` the machine's events are drained (a full event queue is the usual cause) and the
/// input retried once; a second `Err` means the stream cannot make progress. With checks on, a
/// result that consumes nothing must carry a `need` larger than what is buffered.
#[allow(clippy::too_many_arguments)]
fn feed_stream<M: Machine>(
    m: &mut M,
    who: &str,
    i: usize,
    now: Instant,
    from: M::Peer,
    rx: &mut Vec<u8>,
    events: &mut impl FnMut(M::Event),
    stats: &mut SideStats,
    app: &mut impl for<'a> FnMut(&mut M, &M::App<'a>),
    checks: bool,
) -> bool {
    let mut retried = false;
    while !rx.is_empty() {
        let len = rx.len();
        let res = match m.handle_input(now, from, rx) {
            Ok(r) => {
                let consumed = r.bytes_consumed();
                assert!(
                    consumed <= len,
                    "invariant: {who} {i} consumed {consumed} bytes of a {len}-byte stream buffer"
                );
                if let Some(a) = r.app() {
                    app(m, a);
                    stats.app_frames += 1;
                    stats.app_bytes += consumed as u64;
                }
                Ok((consumed, r.needed()))
            }
            Err(_) => Err(()),
        };
        match res {
            Ok((consumed, need)) => {
                if checks && consumed == 0 {
                    match need {
                        None => panic!(
                            "invariant: {who} {i} consumed nothing of a {len}-byte stream buffer and \
                             did not say what it needs (use Received::need, or Err to refuse)"
                        ),
                        Some(n) => assert!(
                            n > len,
                            "invariant: {who} {i} needs {n} bytes but already has {len} buffered"
                        ),
                    }
                }
                rx.drain(..consumed);
                retried = false;
                if need.is_some() || consumed == 0 {
                    break;
                }
            }
            Err(()) => {
                stats.input_errors += 1;
                if retried {
                    return false;
                }
                retried = true;
                while let Some(e) = m.poll_event() {
                    events(e);
                    stats.events += 1;
                }
            }
        }
    }
    true
}

/// One client and one server joined by a link each way
///
/// A thin wrapper over a one-client [`Fleet`] (client index 0) with the index dropped from every
/// method; [`Pair::fleet`] / [`Pair::fleet_mut`] reach the rest. See the
/// [module example](crate::testing#example).
pub struct Pair<C: Machine<Peer = ()>, S: Machine>
where
    S::Peer: Hash,
{
    fleet: Fleet<C, S>,
}

impl<C, S> Pair<C, S>
where
    C: Machine<Peer = ()>,
    S: Machine,
    S::Peer: Hash,
{
    /// A pair whose client the server sees at `client_addr`; both links use `link`
    ///
    /// Virtual time starts at [`Instant::ZERO`] (see [`Pair::starting_at`]).
    ///
    /// # Panics
    /// If `link` has a probability outside `0..=1`.
    #[must_use]
    pub fn new(client: C, server: S, client_addr: S::Peer, link: LinkConfig, seed: u64) -> Self {
        let mut fleet = Fleet::new(
            server,
            0,
            |_| unreachable!(),
            |_| unreachable!(),
            link,
            seed,
        );
        fleet.add_client(client, client_addr);
        Pair { fleet }
    }

    /// Start virtual time at `start` instead of [`Instant::ZERO`]
    ///
    /// # Panics
    /// If the simulation already ran a step.
    #[must_use]
    pub fn starting_at(self, start: Instant) -> Self {
        Pair {
            fleet: self.fleet.starting_at(start),
        }
    }

    /// The underlying one-client fleet
    #[must_use]
    pub fn fleet(&self) -> &Fleet<C, S> {
        &self.fleet
    }

    /// The underlying one-client fleet, mutably
    pub fn fleet_mut(&mut self) -> &mut Fleet<C, S> {
        &mut self.fleet
    }

    /// The current virtual instant
    #[must_use]
    pub fn now(&self) -> Instant {
        self.fleet.now()
    }

    /// Virtual time since the start
    #[must_use]
    pub fn elapsed(&self) -> Duration {
        self.fleet.elapsed()
    }

    /// Actions performed so far (deliveries and timer firings)
    #[must_use]
    pub fn steps(&self) -> u64 {
        self.fleet.steps()
    }

    /// The client
    #[must_use]
    pub fn client(&self) -> &C {
        self.fleet.client(0)
    }

    /// The client, to issue commands; it is drained on the next step
    pub fn client_mut(&mut self) -> &mut C {
        self.fleet.client_mut(0)
    }

    /// The server
    #[must_use]
    pub fn server(&self) -> &S {
        self.fleet.server()
    }

    /// The server, to issue commands; it is drained on the next step
    pub fn server_mut(&mut self) -> &mut S {
        self.fleet.server_mut()
    }

    /// The address the server sees for the client
    #[must_use]
    pub fn client_addr(&self) -> S::Peer {
        self.fleet.client_addr(0)
    }

    /// Give the client a new address (NAT rebinding); server frames to the old one become
    /// [`Fate::Unroutable`]
    pub fn set_client_addr(&mut self, addr: S::Peer) {
        self.fleet.set_client_addr(0, addr);
    }

    /// Events the client reported so far (oldest first)
    #[must_use]
    pub fn client_events(&self) -> &[C::Event] {
        self.fleet.client_events(0)
    }

    /// Take the client's events out
    pub fn take_client_events(&mut self) -> Vec<C::Event> {
        self.fleet.take_client_events(0)
    }

    /// Events the server reported so far (oldest first)
    #[must_use]
    pub fn server_events(&self) -> &[S::Event] {
        self.fleet.server_events()
    }

    /// Take the server's events out
    pub fn take_server_events(&mut self) -> Vec<S::Event> {
        self.fleet.take_server_events()
    }

    /// The client's counters
    #[must_use]
    pub fn client_stats(&self) -> &SideStats {
        self.fleet.client_stats(0)
    }

    /// The server's counters
    #[must_use]
    pub fn server_stats(&self) -> &SideStats {
        self.fleet.server_stats()
    }

    /// Send `bytes` from the client over the link (see [`Fleet::send_from_client`])
    pub fn send_from_client(&mut self, kind: FrameKind, bytes: &[u8]) {
        self.fleet.send_from_client(0, kind, bytes);
    }

    /// Send `bytes` from the server to the client over the link (see [`Fleet::send_from_server`])
    pub fn send_from_server(&mut self, kind: FrameKind, bytes: &[u8]) {
        let to = self.fleet.client_addr(0);
        self.fleet.send_from_server(to, kind, bytes);
    }

    /// Call `f` for every application payload the client receives
    pub fn on_client_app(&mut self, mut f: impl for<'a> FnMut(&C::App<'a>) + 'static) {
        self.fleet.on_client_app(move |_, a: &C::App<'_>| f(a));
    }

    /// Call `f` for every application payload the server receives
    pub fn on_server_app(&mut self, mut f: impl for<'a> FnMut(&S::App<'a>) + 'static) {
        self.fleet.on_server_app(move |_, a: &S::App<'_>| f(a));
    }

    /// Call `f(client, now, app data)` for every application payload the client receives, with
    /// the client itself so `f` can answer at once (see [`Fleet::answer_server_app`])
    pub fn answer_client_app(
        &mut self,
        mut f: impl for<'a> FnMut(&mut C, Instant, &C::App<'a>) + 'static,
    ) {
        self.fleet
            .answer_client_app(move |m, now, _, a: &C::App<'_>| f(m, now, a));
    }

    /// Call `f(server, now, app data)` for every application payload the server receives, with
    /// the server itself so `f` can answer at once: e.g. check a LongPort Auth token and call
    /// `accept_auth` before the next bytes are fed (see [`Fleet::answer_server_app`])
    pub fn answer_server_app(
        &mut self,
        mut f: impl for<'a> FnMut(&mut S, Instant, &S::App<'a>) + 'static,
    ) {
        self.fleet
            .answer_server_app(move |m, now, _, a: &S::App<'_>| f(m, now, a));
    }

    /// Call `f` for every event the client reports, as it is reported
    pub fn on_client_event(&mut self, mut f: impl FnMut(&C::Event) + 'static) {
        self.fleet.on_client_event(move |_, e| f(e));
    }

    /// Call `f` for every event the server reports, as it is reported
    pub fn on_server_event(&mut self, mut f: impl FnMut(&S::Event) + 'static) {
        self.fleet.on_server_event(move |_, e| f(e));
    }

    /// See [`Fleet::keep_events`]
    pub fn keep_events(&mut self, on: bool) {
        self.fleet.keep_events(on);
    }

    /// Report every frame's fate to `f` (see [`TraceEntry`])
    pub fn set_observer(&mut self, f: impl FnMut(&TraceEntry<'_>) + 'static) {
        self.fleet.set_observer(f);
    }

    /// Keep (or stop keeping) an owned transcript of every frame's fate
    pub fn record_transcript(&mut self, on: bool) {
        self.fleet.record_transcript(on);
    }

    /// The transcript kept so far
    #[must_use]
    pub fn transcript(&self) -> &[TraceRecord] {
        self.fleet.transcript()
    }

    /// Take the transcript out (recording continues if it was on)
    pub fn take_transcript(&mut self) -> Vec<TraceRecord> {
        self.fleet.take_transcript()
    }

    /// See [`Fleet::client_closed_when`]
    pub fn client_closed_when(&mut self, f: impl Fn(&C) -> bool + 'static) {
        self.fleet.client_closed_when(f);
    }

    /// See [`Fleet::server_closed_when`]
    pub fn server_closed_when(&mut self, f: impl Fn(&S) -> bool + 'static) {
        self.fleet.server_closed_when(f);
    }

    /// Turn the built-in invariant checks on (default) or off
    pub fn set_checks(&mut self, on: bool) {
        self.fleet.set_checks(on);
    }

    /// See [`Fleet::set_stall_limit`]
    pub fn set_stall_limit(&mut self, steps: u64) {
        self.fleet.set_stall_limit(steps);
    }

    /// See [`Fleet::set_ws_close_closes_transport`]
    pub fn set_ws_close_closes_transport(&mut self, on: bool) {
        self.fleet.set_ws_close_closes_transport(on);
    }

    /// Change how the link in direction `dir` behaves from now on
    pub fn set_link_config(&mut self, dir: Direction, config: LinkConfig) {
        self.fleet.set_link_config(0, dir, config);
    }

    /// The link in direction `dir`
    #[must_use]
    pub fn link(&self, dir: Direction) -> &Link {
        self.fleet.link(0, dir)
    }

    /// Cut or restore both links (see [`Fleet::set_link_up`])
    pub fn set_link_up(&mut self, up: bool) {
        self.fleet.set_link_up(0, up);
    }

    /// Drop the frames in direction `dir` for which `f(bytes)` returns true (see
    /// [`Fleet::set_drop_filter`]); they show as [`Fate::Filtered`]
    pub fn set_drop_filter(&mut self, dir: Direction, mut f: impl FnMut(&[u8]) -> bool + 'static) {
        self.fleet.set_drop_filter(dir, move |_, b| f(b));
    }

    /// Remove the drop filter of direction `dir`
    pub fn clear_drop_filter(&mut self, dir: Direction) {
        self.fleet.clear_drop_filter(dir);
    }

    /// Frames in flight
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.fleet.in_flight()
    }

    /// Close the transport: `handle_closed` on both sides (see [`Fleet::close_transport`])
    pub fn close_transport(&mut self) {
        self.fleet.close_transport(0);
    }

    /// Hand `bytes` to the server now, as if the client had sent them (bypasses the link)
    pub fn inject_to_server(&mut self, kind: FrameKind, bytes: &[u8]) {
        self.fleet.inject_to_server(0, kind, bytes);
    }

    /// Hand `bytes` to the client now, as if the server had sent them (bypasses the link)
    pub fn inject_to_client(&mut self, kind: FrameKind, bytes: &[u8]) {
        self.fleet.inject_to_client(0, kind, bytes);
    }

    /// See [`Fleet::drain`]
    pub fn drain(&mut self) {
        self.fleet.drain();
    }

    /// When the next delivery or timer is due
    pub fn next_event_at(&mut self) -> Option<Instant> {
        self.fleet.next_event_at()
    }

    /// See [`Fleet::step`]
    ///
    /// # Panics
    /// On a livelock and on invariant violations.
    pub fn step(&mut self) -> bool {
        self.fleet.step()
    }

    /// Step until `pred` holds, giving up after `budget` of virtual time
    ///
    /// # Errors
    /// See [`Fleet::run_until`].
    pub fn run_until(
        &mut self,
        mut pred: impl FnMut(&Self) -> bool,
        budget: Duration,
    ) -> Result<(), SimError> {
        let limit = self.fleet.clock.now() + budget;
        loop {
            self.fleet.drain();
            if pred(self) {
                return Ok(());
            }
            self.fleet
                .advance_one(Some(limit))
                .map_err(|s| self.fleet.stop_error(s, budget))?;
        }
    }

    /// [`Pair::run_until`] with a closure that may also act on the pair (see
    /// [`Fleet::run_until_mut`]); return true to stop
    ///
    /// # Errors
    /// See [`Fleet::run_until`].
    pub fn run_until_mut(
        &mut self,
        mut react: impl FnMut(&mut Self) -> bool,
        budget: Duration,
    ) -> Result<(), SimError> {
        let limit = self.fleet.clock.now() + budget;
        loop {
            self.fleet.drain();
            if react(self) {
                return Ok(());
            }
            self.fleet
                .advance_one(Some(limit))
                .map_err(|s| self.fleet.stop_error(s, budget))?;
        }
    }

    /// See [`Fleet::run_for`]
    ///
    /// # Panics
    /// On a livelock and on invariant violations.
    pub fn run_for(&mut self, d: Duration) -> u64 {
        self.fleet.run_for(d)
    }
}
