#![cfg_attr(not(all(feature = "tokio", feature = "blocking")), allow(dead_code))]
//! The LongPort server core the blocking and tokio server drivers share: one machine, a bounded
//! receive buffer and a bounded outbox per connection, and the rules against clients that do not
//! read
//!
//! The hub does no I/O. A driver hands it bytes (TCP) or messages (WebSocket) of a connection
//! only while [`Hub::room`] allows, writes what it finds in each connection's [`Outbox`], closes
//! the sockets the hub lists in [`Hub::take_closing`] and [`Hub::take_killed`], and calls
//! [`Hub::tick`] at [`Hub::poll_timeout`].
//!
//! Rules (see [`ServerLimits`]):
//! * a connection is read only while its outbox holds less than `outbox_high` bytes and its
//!   receive buffer has room (at most `max_input` bytes);
//! * the machine counts the requests it handed to the application and that are not answered
//!   yet (`ServerConfig::with_max_pending_requests`): when it refuses the next one with
//!   `TooManyInFlight`, its bytes stay in the receive buffer and the connection is not read
//!   until the application's answers bring `Server::pending_requests` below the limit (unlike
//!   `QueueFull`, draining does not clear that refusal);
//! * an outbox above `outbox_high` for longer than `stall_timeout`, or one that would grow past
//!   `outbox_max`, ends the connection at once (the socket is dropped; the machine hears
//!   `handle_closed` and reports `Closed`);
//! * nothing waits on one connection: all work per call is bounded, so one stuck client never
//!   delays the others.

use std::collections::{HashMap, HashSet, VecDeque};
use std::string::{String, ToString};
use std::vec::Vec;

use tether_net::longport::wire::{Packet, RequestId};
use tether_net::longport::{
    Admission, CloseCode, Error, Grant, Server, ServerApp, ServerConfig, ServerEvent, Source,
    Status, Transport,
};
use tether_net::{drain, DrainError, Duration, FrameKind, Instant};

use crate::client::rx_capacity;
use crate::rx::{feed_one, Fed, RxBuf};

/// What one WebSocket message or control frame waiting in a connection's queue counts
/// against its input bound besides its payload (its queue entry): without it, empty messages
/// behind a pending auth decision were free and the queue grew without bound
pub(crate) const MESSAGE_COST: usize = 64;

/// A connection's key in the driver's server machine: a counter, never reused
pub type ConnId = u64;

/// Bounds a server driver keeps per connection against clients that do not read
///
/// Requests handed to the application and not answered yet are bounded by the machine
/// (`ServerConfig::with_max_pending_requests`, default 32): beyond it the connection is not
/// read until the application answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerLimits {
    /// Largest receive buffer of a connection, in bytes (TCP stream bytes not parsed yet, or
    /// WebSocket messages waiting for an auth decision); `None`: one packet of the machine's
    /// `max_body`
    pub max_input: Option<usize>,
    /// Outbox bytes (written by the machine, not yet taken by the socket) above which the
    /// connection is not read any more
    pub outbox_high: usize,
    /// Outbox bytes beyond which the connection is dropped at once
    pub outbox_max: usize,
    /// How long an outbox may stay above `outbox_high` before the connection is dropped
    pub stall_timeout: Duration,
    /// How long a closing WebSocket waits for the client's Close reply
    pub close_linger: Duration,
    /// Connections of all sources together in their TLS or WebSocket handshake, before the
    /// machine meets them (tokio `ws://` and `wss://` listeners); beyond it the oldest is
    /// closed. `None`: the machine's `ServerConfig::max_unauthenticated`
    pub max_handshakes: Option<usize>,
    /// Connections of one source (IP address) in their handshakes; beyond it that source's
    /// oldest is closed. `None`: the machine's
    /// `ServerConfig::max_unauthenticated_per_source`
    pub max_handshakes_per_source: Option<usize>,
}

impl Default for ServerLimits {
    /// 64 KiB outbox high-water mark, 4 MiB outbox at most, 5 s stall timeout, 2 s close
    /// linger, a receive buffer for one packet of the machine's `max_body`, as many connections
    /// in their handshakes (all, and per source) as the machine lets wait for their login
    fn default() -> Self {
        ServerLimits {
            max_input: None,
            outbox_high: 64 * 1024,
            outbox_max: 4 * 1024 * 1024,
            stall_timeout: Duration::from_secs(5),
            close_linger: Duration::from_secs(2),
            max_handshakes: None,
            max_handshakes_per_source: None,
        }
    }
}

impl ServerLimits {
    /// Set [`ServerLimits::max_input`]
    #[must_use]
    pub const fn with_max_input(mut self, bytes: usize) -> Self {
        self.max_input = Some(bytes);
        self
    }
    /// Set [`ServerLimits::outbox_high`] and [`ServerLimits::outbox_max`]
    #[must_use]
    pub const fn with_outbox(mut self, high: usize, max: usize) -> Self {
        self.outbox_high = high;
        self.outbox_max = if max > high { max } else { high };
        self
    }
    /// Set [`ServerLimits::stall_timeout`]
    #[must_use]
    pub const fn with_stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = timeout;
        self
    }
    /// Set [`ServerLimits::close_linger`]
    #[must_use]
    pub const fn with_close_linger(mut self, linger: Duration) -> Self {
        self.close_linger = linger;
        self
    }
    /// Set [`ServerLimits::max_handshakes`] and [`ServerLimits::max_handshakes_per_source`]
    /// (each at least 1)
    #[must_use]
    pub const fn with_handshakes(mut self, total: usize, per_source: usize) -> Self {
        self.max_handshakes = Some(if total > 1 { total } else { 1 });
        self.max_handshakes_per_source = Some(if per_source > 1 { per_source } else { 1 });
        self
    }
}

/// What a connection carried for the application (an owned [`ServerApp`])
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerInput {
    /// An Auth request: check `token`, then accept or reject (further input of this connection
    /// waits until you do, or until the machine's auth timeout closes it)
    ///
    /// With the feature `gzip`, a gzip-compressed Auth (`ServerApp::CompressedAuth`) arrives
    /// here too, inflated and decoded by the driver.
    Auth {
        /// The connection
        peer: ConnId,
        /// Request id
        request_id: RequestId,
        /// The one-time password
        token: String,
        /// Metadata pairs
        metadata: Vec<(String, String)>,
    },
    /// A Reconnect request for a session the machine knows: accept with a fresh session id,
    /// or reject
    ///
    /// With the feature `gzip`, a gzip-compressed Reconnect (`ServerApp::CompressedReconnect`)
    /// arrives here too, inflated and decoded by the driver.
    Reconnect {
        /// The connection
        peer: ConnId,
        /// Request id
        request_id: RequestId,
        /// The session presented
        session_id: String,
        /// Its expiry (Unix ms)
        expires: i64,
        /// Metadata pairs
        metadata: Vec<(String, String)>,
    },
    /// A business request: answer it (`respond`) exactly once, also for commands you do not
    /// serve (status 3): until answered it counts against the machine's
    /// `ServerConfig::with_max_pending_requests`, beyond which the connection is not read
    Request {
        /// The connection
        peer: ConnId,
        /// Request id to answer
        request_id: RequestId,
        /// Command code
        cmd: u8,
        /// The processing deadline the client asked for (clamped by the machine)
        timeout: Duration,
        /// Body as on the wire
        body: Vec<u8>,
        /// The body is a gzip member
        gzip: bool,
    },
    /// A response from the client (to a request sent with `send` on TCP)
    Response {
        /// The connection
        peer: ConnId,
        /// Request id
        request_id: RequestId,
        /// Command code
        cmd: u8,
        /// Status
        status: Status,
        /// Body
        body: Vec<u8>,
        /// The body is a gzip member
        gzip: bool,
    },
    /// A push from the client
    Push {
        /// The connection
        peer: ConnId,
        /// Command code
        cmd: u8,
        /// Body
        body: Vec<u8>,
        /// The body is a gzip member
        gzip: bool,
    },
}

/// One item for the application of a LongPort server driver
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerItem {
    /// A connection was registered with the machine
    Accepted {
        /// Its key
        peer: ConnId,
        /// The client's address
        remote: std::net::SocketAddr,
        /// TCP or WebSocket
        transport: Transport,
    },
    /// What a connection carried: decide auths, answer requests
    Input(ServerInput),
    /// An event of the machine: `Connected`, `HeartbeatRtt` (the round trip of a server
    /// heartbeat: WebSocket pings, and TCP heartbeats with
    /// `ServerConfig::with_tcp_heartbeat_interval`), `Closed` (among the causes `Evicted`: an
    /// unauthenticated connection made room for a newer one), `ShutdownComplete`
    Event(ServerEvent<ConnId>),
}

/// A frame for a connection's socket
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutFrame {
    pub(crate) kind: FrameKind,
    pub(crate) bytes: Vec<u8>,
}

/// Where a connection's frames wait for its socket
pub(crate) trait Outbox {
    /// Bytes queued and not yet taken by the socket
    fn queued(&self) -> usize;
    /// Queue a frame
    fn push(&mut self, frame: OutFrame);
    /// No more frames will come: write what is queued, then close the transport
    fn finish(&mut self, linger: Duration);
}

/// A WebSocket input waiting for its turn (messages queue behind a pending auth decision)
#[derive(Debug)]
pub(crate) enum WsIn {
    Binary(Vec<u8>),
    Frame(FrameKind, Vec<u8>),
}

impl WsIn {
    /// What it counts against the connection's input bound: payload and [`MESSAGE_COST`]
    pub(crate) fn cost(&self) -> usize {
        match self {
            WsIn::Binary(b) | WsIn::Frame(_, b) => b.len() + MESSAGE_COST,
        }
    }
}

#[derive(Debug)]
enum Rx {
    Stream(RxBuf<Vec<u8>>),
    Messages(VecDeque<WsIn>, usize),
}

impl Rx {
    /// Bytes held
    fn len(&self) -> usize {
        match self {
            Rx::Stream(b) => b.len(),
            Rx::Messages(_, n) => *n,
        }
    }
}

struct Conn<O> {
    rx: Rx,
    outbox: O,
    over_high_since: Option<Instant>,
    /// The machine refused the next request with `TooManyInFlight`: not read, not fed, until
    /// its pending requests drop below the limit
    in_flight_full: bool,
    blocked: bool,
    /// Input bytes parsed since the driver last asked ([`Hub::take_consumed`])
    consumed: usize,
    /// In [`Hub::ready`]
    ready: bool,
    /// Feeding stopped at a full outbox or at the pending-request limit with input left: fed
    /// again once the driver reports the hold-up gone ([`Hub::drained`], read credit from
    /// [`Hub::room`], an answer)
    held: bool,
    /// In [`Hub::touched`]
    touched: bool,
}

/// Start a connection's stall clock (if not running) or stop it, keeping `over_high` in step
fn stall_clock<O>(
    c: &mut Conn<O>,
    over_high: &mut HashSet<ConnId>,
    id: ConnId,
    running: Option<Instant>,
) {
    match running {
        Some(now) => {
            c.over_high_since.get_or_insert(now);
            over_high.insert(id);
        }
        None => {
            if c.over_high_since.take().is_some() {
                over_high.remove(&id);
            }
        }
    }
}

/// Counters of the driver layer (the machine has its own: `ServerStats`)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubStats {
    /// Connections dropped because their outbox stayed full past the stall timeout or
    /// overflowed
    pub stalled: u64,
    /// Largest receive buffer any connection had, in bytes
    pub peak_input: u64,
    /// Largest outbox any connection had, in bytes
    pub peak_outbox: u64,
    /// Times reading a connection was paused (outbox full, buffer full, requests pending)
    pub paused: u64,
    /// Times the machine refused a connection's next request with `TooManyInFlight` (the
    /// application owed it `max_pending_requests` answers)
    pub in_flight_full: u64,
}

/// Why `respond`/`push`/`send` did not queue a packet
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendError {
    Machine(Error),
    /// The outbox overflowed: the connection was dropped
    Stalled,
}

pub(crate) struct Hub<O, const PEERS: usize, const SESSIONS: usize> {
    pub(crate) server: std::boxed::Box<Server<ConnId, PEERS, SESSIONS>>,
    conns: HashMap<ConnId, Conn<O>>,
    out: Vec<u8>,
    limits: ServerLimits,
    max_input: usize,
    events: VecDeque<ServerEvent<ConnId>>,
    inputs: VecDeque<ServerInput>,
    /// Connections whose `Closed` was reported: finish their outbox, then close
    closing: Vec<ConnId>,
    /// Connections dropped by the stall rules: close the socket now
    killed: Vec<ConnId>,
    /// Connections [`Hub::process`] must look at: input came, or what held them back (an
    /// auth decision, answers owed, a full outbox) may have changed. Only these are fed, so
    /// the work per input does not grow with the number of idle connections
    ready: Vec<ConnId>,
    /// Connections fed by the latest [`Hub::process`] call: their read credit and pause state
    /// may have changed (a driver that does not ask, [`Hub::take_touched`], loses nothing: the
    /// list starts afresh with each call)
    touched: Vec<ConnId>,
    /// Connections whose stall clock runs (outbox at or above `outbox_high`)
    over_high: HashSet<ConnId>,
    stats: HubStats,
}

fn pairs(m: &tether_net::longport::Metadata<'_>) -> Vec<(String, String)> {
    m.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl<O: Outbox, const PEERS: usize, const SESSIONS: usize> Hub<O, PEERS, SESSIONS> {
    pub(crate) fn new(config: ServerConfig, limits: ServerLimits) -> Self {
        let max_input = limits
            .max_input
            .unwrap_or_else(|| rx_capacity(config.max_body()));
        Hub {
            server: std::boxed::Box::new(Server::with_capacities(config)),
            conns: HashMap::new(),
            out: std::vec![0; 4096],
            limits,
            max_input,
            events: VecDeque::new(),
            inputs: VecDeque::new(),
            closing: Vec::new(),
            killed: Vec::new(),
            ready: Vec::new(),
            touched: Vec::new(),
            over_high: HashSet::new(),
            stats: HubStats::default(),
        }
    }

    /// A held connection's hold-up is gone: feed it again
    fn release(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut(&id) {
            if std::mem::take(&mut c.held) {
                self.wake(id);
            }
        }
    }

    /// Have [`Hub::process`] look at this connection
    fn wake(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut(&id) {
            if !c.ready {
                c.ready = true;
                self.ready.push(id);
            }
        }
    }

    /// Connections fed by the latest [`Hub::process`] call (their read credit and pause state
    /// may have changed): what a driver re-checks instead of every connection
    pub(crate) fn take_touched(&mut self) -> Vec<ConnId> {
        for id in &self.touched {
            if let Some(c) = self.conns.get_mut(id) {
                c.touched = false;
            }
        }
        std::mem::take(&mut self.touched)
    }

    pub(crate) fn stats(&self) -> HubStats {
        self.stats
    }

    pub(crate) fn ids(&self) -> Vec<ConnId> {
        self.conns.keys().copied().collect()
    }

    /// Register a new transport from `source` (the remote address: the machine limits the
    /// unauthenticated connections of one source and evicts that source's oldest beyond it)
    pub(crate) fn connect(
        &mut self,
        now: Instant,
        id: ConnId,
        transport: Transport,
        source: Source,
        outbox: O,
    ) -> Result<(), Error> {
        self.server.handle_connected(now, id, transport, source)?;
        let rx = match transport {
            Transport::Tcp => Rx::Stream(RxBuf::with_capacity(4096.min(self.max_input))),
            _ => Rx::Messages(VecDeque::new(), 0),
        };
        self.conns.insert(
            id,
            Conn {
                rx,
                outbox,
                over_high_since: None,
                in_flight_full: false,
                blocked: false,
                consumed: 0,
                ready: false,
                touched: false,
                held: false,
            },
        );
        Ok(())
    }

    /// Start the stall clock of each of these outboxes above the high-water mark, stop it for
    /// the others
    fn note_outboxes(&mut self, now: Instant, ids: &[ConnId]) {
        let high = self.limits.outbox_high;
        for &id in ids {
            if let Some(c) = self.conns.get_mut(&id) {
                let running = (c.outbox.queued() >= high).then_some(now);
                stall_clock(c, &mut self.over_high, id, running);
            }
        }
    }

    /// The connection's outbox went below the high-water mark (its writer says so)
    pub(crate) fn drained(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut(&id) {
            if c.outbox.queued() < self.limits.outbox_high {
                stall_clock(c, &mut self.over_high, id, None);
                // input held back by the full outbox may go on
                self.release(id);
            }
        }
    }

    /// How many bytes the driver may read from this connection now (0: do not read); also
    /// starts or stops its stall clock
    pub(crate) fn room(&mut self, now: Instant, id: ConnId) -> usize {
        let (high, max_input) = (self.limits.outbox_high, self.max_input);
        let in_flight_full = self.requests_pending(id);
        let Some(c) = self.conns.get_mut(&id) else {
            return 0;
        };
        let running = (c.outbox.queued() >= high).then_some(now);
        stall_clock(c, &mut self.over_high, id, running);
        let used = match &c.rx {
            Rx::Stream(b) => b.len(),
            Rx::Messages(_, n) => *n,
        };
        let room = if c.outbox.queued() >= high || in_flight_full {
            0
        } else {
            max_input.saturating_sub(used)
        };
        if room == 0 && !c.blocked {
            c.blocked = true;
            self.stats.paused += 1;
        } else if room > 0 {
            c.blocked = false;
        }
        if room > 0 {
            // whatever held the connection back is gone: input already buffered may go on
            // (the outbox may have filled and drained between two calls)
            self.release(id);
        }
        room
    }

    /// Input bytes of a connection parsed since the last call (the driver's read credit)
    pub(crate) fn take_consumed(&mut self, id: ConnId) -> usize {
        self.conns
            .get_mut(&id)
            .map_or(0, |c| std::mem::take(&mut c.consumed))
    }

    /// True while the machine's refusal `TooManyInFlight` holds for this connection: the
    /// application owes it `max_pending_requests` answers (cleared once the answers bring the
    /// machine's count below the limit)
    pub(crate) fn requests_pending(&mut self, id: ConnId) -> bool {
        let max = self.server.config().max_pending_requests();
        let pending = self.server.pending_requests(id).unwrap_or(0);
        let Some(c) = self.conns.get_mut(&id) else {
            return false;
        };
        if c.in_flight_full && pending < max {
            c.in_flight_full = false;
        }
        c.in_flight_full
    }

    /// The largest receive buffer of a connection
    pub(crate) fn max_input(&self) -> usize {
        self.max_input
    }

    /// Bytes of a TCP stream; returns how many were taken (at most [`Hub::room`])
    pub(crate) fn input_stream(&mut self, id: ConnId, data: &[u8]) -> usize {
        let max_input = self.max_input;
        let Some(c) = self.conns.get_mut(&id) else {
            return data.len();
        };
        let Rx::Stream(b) = &mut c.rx else {
            return data.len();
        };
        let want = b.len() + data.len();
        if want > b.capacity() && b.capacity() < max_input {
            let mut bigger =
                RxBuf::with_capacity(want.min(max_input).max(b.capacity() * 2).min(max_input));
            bigger.extend(b.data());
            *b = bigger;
        }
        let n = b.extend(data);
        self.stats.peak_input = self.stats.peak_input.max(b.len() as u64);
        if n > 0 {
            self.wake(id);
        }
        n
    }

    /// One WebSocket input (binary message or control frame)
    pub(crate) fn input_message(&mut self, id: ConnId, msg: WsIn) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if let Rx::Messages(q, n) = &mut c.rx {
            *n += msg.cost();
            self.stats.peak_input = self.stats.peak_input.max(*n as u64);
            q.push_back(msg);
            self.wake(id);
        }
    }

    /// The transport is gone
    pub(crate) fn closed(&mut self, now: Instant, id: ConnId) {
        if self.conns.contains_key(&id) {
            self.server.handle_closed(now, id);
        }
    }

    /// Timers of the machine and the stall rules
    pub(crate) fn tick(&mut self, now: Instant) {
        self.server.handle_timeout(now);
        let (high, stall) = (self.limits.outbox_high, self.limits.stall_timeout);
        let mut stuck = Vec::new();
        // only outboxes that were at or above the mark can have stalled (an outbox grows only
        // by `flush` and `send`, which start the clock)
        let stalling: Vec<ConnId> = self.over_high.iter().copied().collect();
        for id in stalling {
            let Some(c) = self.conns.get_mut(&id) else {
                self.over_high.remove(&id);
                continue;
            };
            if c.outbox.queued() >= high {
                let since = *c.over_high_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= stall {
                    stuck.push(id);
                }
            } else {
                // drained without the driver saying so
                stall_clock(c, &mut self.over_high, id, None);
                self.release(id);
            }
        }
        for id in stuck {
            self.kill(now, id);
        }
    }

    /// Drop a connection (it cannot be written to, or the application asked): the socket
    /// closes now
    pub(crate) fn kill(&mut self, now: Instant, id: ConnId) {
        if self.conns.contains_key(&id) && !self.killed.contains(&id) {
            self.stats.stalled += 1;
            self.killed.push(id);
            self.server.handle_closed(now, id);
        }
    }

    /// The earliest of the machine's deadline and the stall deadlines
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let stall = self
            .over_high
            .iter()
            .filter_map(|id| self.conns.get(id)?.over_high_since)
            .min()
            .map(|t| t + self.limits.stall_timeout);
        match (self.server.poll_timeout(), stall) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, None) => a,
            (None, b) => b,
        }
    }

    /// Feed what the connections hold, one packet at a time with a drain after each, as long as
    /// each connection's bounds allow
    ///
    /// Only connections that got input, or whose hold-up may have ended, since the last call
    /// are looked at (see [`Hub::ready`]).
    pub(crate) fn process(&mut self, now: Instant) {
        // (what the previous call fed and nobody took: forgotten, so the list stays bounded)
        drop(self.take_touched());
        while !self.ready.is_empty() {
            let ids = std::mem::take(&mut self.ready);
            for id in ids {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.ready = false;
                    if !c.touched {
                        c.touched = true;
                        self.touched.push(id);
                    }
                }
                self.process_conn(now, id);
            }
        }
        self.flush(now);
    }

    fn process_conn(&mut self, now: Instant, id: ConnId) {
        let high = self.limits.outbox_high;
        loop {
            let pending = self.requests_pending(id);
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            if pending || c.outbox.queued() >= high {
                c.held = true;
                return;
            }
            // take the buffer out, so that the app value may borrow it while the hub works
            let mut rx = std::mem::replace(&mut c.rx, Rx::Messages(VecDeque::new(), 0));
            let before = rx.len();
            let mut got: Option<Owned> = None;
            let step = match &mut rx {
                Rx::Stream(b) => match feed_one(&mut *self.server, now, id, b, |_, app| {
                    got = owned(id, app);
                }) {
                    Ok(Fed::Frame) => Ok(true),
                    Ok(Fed::NeedMore(_)) => Ok(false),
                    Err(e) => Err(e),
                },
                Rx::Messages(q, n) => match q.pop_front() {
                    None => Ok(false),
                    Some(WsIn::Frame(kind, payload)) => {
                        *n -= payload.len() + MESSAGE_COST;
                        self.server.handle_frame(now, id, kind, &payload);
                        Ok(true)
                    }
                    Some(WsIn::Binary(msg)) => match self.server.handle_input(now, id, &msg) {
                        Ok(r) => {
                            *n -= msg.len() + MESSAGE_COST;
                            if let Some(app) = r.into_app() {
                                got = owned(id, app);
                            }
                            Ok(true)
                        }
                        Err(e) => {
                            q.push_front(WsIn::Binary(msg));
                            Err(e)
                        }
                    },
                },
            };
            if let Some(c) = self.conns.get_mut(&id) {
                c.consumed += before - rx.len();
                c.rx = rx;
            }
            match step {
                Ok(true) => {}
                Ok(false) => return,
                // an auth decision is pending: the bytes wait in the buffer
                Err(Error::AuthPending) => return,
                // the application owes this connection its answers: the bytes wait in the
                // buffer and the connection is not read until the answers come (draining
                // does not help here, unlike `QueueFull`)
                Err(Error::TooManyInFlight) => {
                    if let Some(c) = self.conns.get_mut(&id) {
                        c.in_flight_full = true;
                        c.held = true;
                        self.stats.in_flight_full += 1;
                    }
                    return;
                }
                // the machine's own answers (rate-limit refusals) wait in `poll_transmit`
                Err(Error::QueueFull) => {}
                // the connection is gone from the machine
                Err(_) => return,
            }
            match got {
                Some(Owned::Input(input)) => self.on_input(now, input),
                Some(Owned::UnreadableLogin { reconnect }) => {
                    let _ = self.server_reject_unreadable(now, id, reconnect);
                }
                None => {}
            }
            self.flush(now);
        }
    }

    /// A compressed login the driver cannot read (built without the feature `gzip` while the
    /// machine has it): refused with status 3
    fn server_reject_unreadable(
        &mut self,
        now: Instant,
        id: ConnId,
        reconnect: bool,
    ) -> Result<(), Error> {
        const MSG: &str = "compressed login not supported";
        if reconnect {
            self.server
                .reject_reconnect(now, id, Status::BadRequest, 400, MSG)
        } else {
            self.server
                .reject_auth(now, id, Status::BadRequest, 400, MSG)
        }
    }

    fn on_input(&mut self, now: Instant, input: ServerInput) {
        match input {
            ServerInput::Request {
                peer,
                request_id,
                cmd: tether_net::longport::control::CMD_HEARTBEAT,
                body,
                gzip,
                ..
            } => {
                // a heartbeat the machine could not echo itself: echo it here
                let packet = Packet::response(
                    tether_net::longport::control::CMD_HEARTBEAT,
                    request_id,
                    Status::Success,
                    &body,
                )
                .with_gzip(gzip);
                let _ = self.send(now, peer, &packet);
            }
            other => self.inputs.push_back(other),
        }
    }

    /// What the connections carried, for the application
    pub(crate) fn next_input(&mut self) -> Option<ServerInput> {
        self.inputs.pop_front()
    }

    /// The machine's events, for the application
    pub(crate) fn next_event(&mut self) -> Option<ServerEvent<ConnId>> {
        self.events.pop_front()
    }

    /// Connections whose `Closed` was reported since the last call: finish their outbox, then
    /// close the transport
    pub(crate) fn take_closing(&mut self) -> Vec<ConnId> {
        std::mem::take(&mut self.closing)
    }

    /// Connections dropped by the stall rules since the last call: close the socket now
    pub(crate) fn take_killed(&mut self) -> Vec<ConnId> {
        std::mem::take(&mut self.killed)
    }

    /// Step 2: the machine's frames to the outboxes, its events to the queue
    pub(crate) fn flush(&mut self, now: Instant) {
        loop {
            let Hub {
                server,
                conns,
                out,
                events,
                stats,
                ..
            } = self;
            let peak = &mut stats.peak_outbox;
            let mut overflow = Vec::new();
            let mut pushed = Vec::new();
            let max = self.limits.outbox_max;
            let r = drain(
                &mut **server,
                now,
                out,
                |t, bytes| {
                    if let Some(c) = conns.get_mut(&t.to) {
                        if c.outbox.queued() + bytes.len() > max {
                            overflow.push(t.to);
                        } else {
                            c.outbox.push(OutFrame {
                                kind: t.kind,
                                bytes: bytes.to_vec(),
                            });
                            *peak = (*peak).max(c.outbox.queued() as u64);
                            if pushed.last() != Some(&t.to) {
                                pushed.push(t.to);
                            }
                        }
                    }
                    Ok::<(), core::convert::Infallible>(())
                },
                |_, ev| events.push_back(ev),
            );
            for id in overflow {
                self.kill(now, id);
            }
            self.note_outboxes(now, &pushed);
            match r {
                Ok(()) => break,
                Err(DrainError::BufferTooSmall(e)) => self.out.resize(e.required, 0),
                Err(DrainError::Send(never)) => match never {},
                // a kind of refusal this driver does not know: nothing more to hand out
                Err(_) => break,
            }
        }
        // `Closed`: the machine has forgotten the connection; its outbox goes out, then the
        // transport closes
        let linger = self.limits.close_linger;
        let closed: Vec<ConnId> = self
            .events
            .iter()
            .filter_map(|e| match e {
                ServerEvent::Closed { peer, .. } => Some(*peer),
                _ => None,
            })
            .filter(|p| self.conns.contains_key(p))
            .collect();
        for id in closed {
            if let Some(mut c) = self.conns.remove(&id) {
                self.over_high.remove(&id);
                c.outbox.finish(linger);
                if !self.killed.contains(&id) {
                    self.closing.push(id);
                }
            }
        }
    }

    /// Write a packet through the machine into the connection's outbox
    pub(crate) fn send(
        &mut self,
        now: Instant,
        peer: ConnId,
        packet: &Packet<'_>,
    ) -> Result<(), SendError> {
        loop {
            match self.server.send(now, peer, packet, &mut self.out) {
                Ok(t) => {
                    let max = self.limits.outbox_max;
                    let Some(c) = self.conns.get_mut(&peer) else {
                        return Err(SendError::Machine(Error::UnknownPeer));
                    };
                    if c.outbox.queued() + t.len > max {
                        self.kill(now, peer);
                        self.flush(now);
                        return Err(SendError::Stalled);
                    }
                    c.outbox.push(OutFrame {
                        kind: t.kind,
                        bytes: self.out[..t.len].to_vec(),
                    });
                    self.stats.peak_outbox = self.stats.peak_outbox.max(c.outbox.queued() as u64);
                    if c.outbox.queued() >= self.limits.outbox_high {
                        stall_clock(c, &mut self.over_high, peer, Some(now));
                    }
                    if c.in_flight_full {
                        // an answer: the requests held back may go on
                        self.release(peer);
                    }
                    return Ok(());
                }
                Err(Error::QueueFull) => self.flush(now),
                Err(Error::BufferTooSmall { required }) => self.out.resize(required, 0),
                Err(e) => return Err(SendError::Machine(e)),
            }
        }
    }

    /// Answer a business request (`gzip`: the body is a gzip member); the machine counts it
    /// answered ([`Server::pending_requests`])
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn respond(
        &mut self,
        now: Instant,
        peer: ConnId,
        cmd: u8,
        request_id: RequestId,
        status: Status,
        body: &[u8],
        gzip: bool,
    ) -> Result<(), SendError> {
        let packet = Packet::response(cmd, request_id, status, body).with_gzip(gzip);
        self.send(now, peer, &packet)
    }

    pub(crate) fn accept(
        &mut self,
        now: Instant,
        peer: ConnId,
        reconnect: bool,
        grant: Grant,
    ) -> Result<Admission, Error> {
        let r = if reconnect {
            self.server.accept_reconnect(now, peer, grant)
        } else {
            self.server.accept_auth(now, peer, grant)
        };
        // the input that waited for the decision goes on
        self.wake(peer);
        self.flush(now);
        r
    }

    pub(crate) fn reject(
        &mut self,
        now: Instant,
        peer: ConnId,
        reconnect: bool,
        status: Status,
        code: u64,
        msg: &str,
    ) -> Result<(), Error> {
        let r = if reconnect {
            self.server.reject_reconnect(now, peer, status, code, msg)
        } else {
            self.server.reject_auth(now, peer, status, code, msg)
        };
        self.wake(peer);
        self.flush(now);
        r
    }

    pub(crate) fn close(
        &mut self,
        now: Instant,
        peer: ConnId,
        code: CloseCode,
        reason: &str,
    ) -> Result<(), Error> {
        let r = self.server.close(now, peer, code, reason);
        self.flush(now);
        r
    }

    pub(crate) fn shutdown(&mut self, now: Instant, reason: &str) -> Result<(), Error> {
        let r = self.server.shutdown(now, reason);
        self.flush(now);
        r
    }
}

/// What the hub makes of an application value
enum Owned {
    /// Its owned copy
    Input(ServerInput),
    /// A compressed Auth/Reconnect that does not inflate or decode here
    UnreadableLogin { reconnect: bool },
}

/// A compressed login body inflated (the machine checked it inflates within
/// `MAX_INFLATED_LOGIN` bytes)
#[cfg(feature = "gzip")]
fn inflate_login(body: &[u8]) -> Option<Vec<u8>> {
    let mut plain = std::vec![0u8; tether_net::longport::MAX_INFLATED_LOGIN];
    let n = tether_net::longport::gzip::gunzip(body, &mut plain).ok()?;
    plain.truncate(n);
    Some(plain)
}

/// A compressed Auth as the plain one
#[cfg(feature = "gzip")]
fn compressed_auth(peer: ConnId, request_id: RequestId, body: &[u8]) -> Option<ServerInput> {
    use tether_net::longport::control::{AuthRequest, Body};
    let plain = inflate_login(body)?;
    let auth = AuthRequest::decode(&plain).ok()?;
    Some(ServerInput::Auth {
        peer,
        request_id,
        token: auth.token.to_string(),
        metadata: pairs(&auth.metadata),
    })
}

/// A compressed Reconnect as the plain one
#[cfg(feature = "gzip")]
fn compressed_reconnect(
    peer: ConnId,
    request_id: RequestId,
    expires: i64,
    body: &[u8],
) -> Option<ServerInput> {
    use tether_net::longport::control::{Body, ReconnectRequest};
    let plain = inflate_login(body)?;
    let r = ReconnectRequest::decode(&plain).ok()?;
    Some(ServerInput::Reconnect {
        peer,
        request_id,
        session_id: r.session_id.to_string(),
        expires,
        metadata: pairs(&r.metadata),
    })
}

/// The owned copy of an application value
fn owned(peer: ConnId, app: ServerApp<'_>) -> Option<Owned> {
    Some(Owned::Input(match app {
        ServerApp::Auth {
            request_id,
            token,
            metadata,
        } => ServerInput::Auth {
            peer,
            request_id,
            token: token.to_string(),
            metadata: pairs(&metadata),
        },
        ServerApp::Reconnect {
            request_id,
            session_id,
            expires,
            metadata,
        } => ServerInput::Reconnect {
            peer,
            request_id,
            session_id: session_id.to_string(),
            expires,
            metadata: pairs(&metadata),
        },
        ServerApp::Request {
            request_id,
            cmd,
            timeout,
            body,
            gzip,
            ..
        } => ServerInput::Request {
            peer,
            request_id,
            cmd,
            timeout,
            body: body.to_vec(),
            gzip,
        },
        ServerApp::HeartbeatEcho {
            request_id,
            body,
            gzip,
        } => ServerInput::Request {
            peer,
            request_id,
            cmd: tether_net::longport::control::CMD_HEARTBEAT,
            timeout: Duration::ZERO,
            body: body.to_vec(),
            gzip,
        },
        ServerApp::Response {
            request_id,
            cmd,
            status,
            body,
            gzip,
        } => ServerInput::Response {
            peer,
            request_id,
            cmd,
            status,
            body: body.to_vec(),
            gzip,
        },
        ServerApp::Push { cmd, body, gzip } => ServerInput::Push {
            peer,
            cmd,
            body: body.to_vec(),
            gzip,
        },
        #[cfg(feature = "gzip")]
        ServerApp::CompressedAuth { request_id, body } => {
            return Some(
                compressed_auth(peer, request_id, body)
                    .map_or(Owned::UnreadableLogin { reconnect: false }, Owned::Input),
            )
        }
        #[cfg(feature = "gzip")]
        ServerApp::CompressedReconnect {
            request_id,
            expires,
            body,
        } => {
            return Some(
                compressed_reconnect(peer, request_id, expires, body)
                    .map_or(Owned::UnreadableLogin { reconnect: true }, Owned::Input),
            )
        }
        #[cfg(not(feature = "gzip"))]
        ServerApp::CompressedAuth { .. } => {
            return Some(Owned::UnreadableLogin { reconnect: false })
        }
        #[cfg(not(feature = "gzip"))]
        ServerApp::CompressedReconnect { .. } => {
            return Some(Owned::UnreadableLogin { reconnect: true })
        }
        _ => return None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;
    use tether_net::Duration;

    /// An outbox whose fill level the test sets
    struct Level(Rc<Cell<usize>>);

    impl Outbox for Level {
        fn queued(&self) -> usize {
            self.0.get()
        }
        fn push(&mut self, frame: OutFrame) {
            self.0.set(self.0.get() + frame.bytes.len());
        }
        fn finish(&mut self, _linger: Duration) {}
    }

    const STALL: Duration = Duration::from_secs(5);
    const HIGH: usize = 1000;

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    /// A hub with one TCP connection (id 1) connected at 0 ms, and its outbox level
    fn hub() -> (Hub<Level, 4, 4>, Rc<Cell<usize>>) {
        let limits = ServerLimits::default()
            .with_outbox(HIGH, 10 * HIGH)
            .with_stall_timeout(STALL);
        hub_with(ServerConfig::new(), limits)
    }

    /// The same with this machine configuration and these limits
    fn hub_with(config: ServerConfig, limits: ServerLimits) -> (Hub<Level, 4, 4>, Rc<Cell<usize>>) {
        let mut hub = Hub::new(config, limits);
        let level = another(&mut hub, at(0), 1);
        (hub, level)
    }

    #[test]
    fn the_outbox_limit_is_never_below_the_high_water_mark() {
        let l = ServerLimits::default().with_outbox(10, 100);
        assert_eq!((l.outbox_high, l.outbox_max), (10, 100));
        let l = ServerLimits::default().with_outbox(100, 10);
        assert_eq!((l.outbox_high, l.outbox_max), (100, 100));
        let l = ServerLimits::default().with_outbox(50, 50);
        assert_eq!((l.outbox_high, l.outbox_max), (50, 50));
    }

    /// The Auth a TCP client machine writes (with the stream's handshake in front)
    fn auth_bytes() -> Vec<u8> {
        auth_for(tether_net::longport::ClientConfig::tcp())
    }

    /// The Auth a client machine of `config` writes
    fn auth_for(config: tether_net::longport::ClientConfig) -> Vec<u8> {
        use tether_net::longport::{Client, ClientEvent, Credentials};
        let mut c = Client::new(config);
        c.connect(at(0), Credentials::new("token")).unwrap();
        let mut out = [0u8; 1024];
        let mut auth = Vec::new();
        drain(
            &mut c,
            at(0),
            &mut out,
            |_, b| {
                auth.extend_from_slice(b);
                Ok::<(), ()>(())
            },
            |c, ev| {
                if let ClientEvent::ConnectTransport { .. } = ev {
                    c.handle_connected(at(0)).unwrap();
                }
            },
        )
        .unwrap();
        auth
    }

    /// Connection 1 logs in at `now`: its Auth is fed and accepted, and the response goes to
    /// its outbox (the machine's output, handed out by a flush)
    fn log_in(hub: &mut Hub<Level, 4, 4>, now: Instant) {
        let auth = auth_bytes();
        assert_eq!(hub.input_stream(1, &auth), auth.len());
        hub.process(now);
        assert!(matches!(
            hub.next_input(),
            Some(ServerInput::Auth { peer: 1, .. })
        ));
        let grant = Grant::new(crate::random_session_id(), 4_000_000_000_000);
        hub.accept(now, 1, false, grant).unwrap();
    }

    /// An outbox the machine's output took above the high-water mark starts the stall clock at
    /// once: the hub's deadline is then the stall deadline (5 s), not the machine's
    #[test]
    fn an_outbox_over_the_mark_after_a_flush_sets_the_stall_deadline() {
        let (mut hub, level) = hub();
        assert_eq!(hub.poll_timeout(), Some(at(10_000)));
        level.set(HIGH - 1);
        log_in(&mut hub, at(100));
        assert!(level.get() > HIGH, "the login response was queued");
        assert_eq!(hub.poll_timeout(), Some(at(100) + STALL));
        hub.tick(at(100) + STALL - Duration::from_millis(1));
        assert!(hub.take_killed().is_empty());
        hub.tick(at(100) + STALL);
        assert_eq!(hub.take_killed(), [1]);
    }

    /// A frame the application sends that takes the outbox to the high-water mark starts the
    /// stall clock right there, at the send's time (not at the next flush or tick, which may
    /// come much later for a connection that sends nothing more); one that leaves it below the
    /// mark does not
    #[test]
    fn an_application_send_that_reaches_the_mark_starts_the_stall_clock_at_once() {
        let push = Packet::push(7, b"pushed body");
        let (mut hub, level) = hub();
        log_in(&mut hub, at(1));
        let machine_deadline = hub.poll_timeout();
        let len = {
            let before = level.get();
            hub.send(at(2), 1, &push).unwrap();
            level.get() - before
        };
        assert_eq!(
            hub.poll_timeout(),
            machine_deadline,
            "below the mark: no stall clock"
        );
        // the next frame ends exactly at the mark
        level.set(HIGH - len);
        hub.send(at(3_000), 1, &push).unwrap();
        assert_eq!(level.get(), HIGH);
        assert_eq!(hub.poll_timeout(), Some(at(3_000) + STALL));
        hub.tick(at(3_000) + STALL - Duration::from_millis(1));
        assert!(hub.take_killed().is_empty());
        hub.tick(at(3_000) + STALL);
        assert_eq!(hub.take_killed(), [1]);
    }

    /// An outbox the socket drained below the mark stops the stall clock: a client that reads
    /// slowly but keeps reading is timed from its latest stall, not its first
    #[test]
    fn a_drained_outbox_restarts_the_stall_clock() {
        let (mut hub, level) = hub();
        level.set(HIGH);
        assert_eq!(hub.room(at(0), 1), 0);
        level.set(HIGH - 1);
        hub.drained(1);
        log_in(&mut hub, at(4_000));
        hub.tick(at(5_000));
        assert!(hub.take_killed().is_empty(), "killed for a stall of 1 s");
        assert_eq!(hub.poll_timeout(), Some(at(4_000) + STALL));
        hub.tick(at(9_000));
        assert_eq!(hub.take_killed(), [1]);
    }

    /// A writer that took bytes but left the outbox at the mark has not drained it: the clock
    /// keeps running from the first stall
    #[test]
    fn an_outbox_still_at_the_mark_keeps_the_stall_clock() {
        let (mut hub, level) = hub();
        level.set(HIGH);
        assert_eq!(hub.room(at(0), 1), 0);
        hub.drained(1);
        hub.process(at(4_000));
        hub.tick(at(5_000));
        assert_eq!(hub.take_killed(), [1]);
    }

    /// The read credit: the receive buffer's free room while the outbox is below the mark,
    /// none at or above it; each change from reading to not reading counts once in `paused`
    #[test]
    fn room_is_the_free_input_while_the_outbox_is_below_the_mark() {
        let (mut hub, level) = hub();
        let max = hub.max_input();
        assert_eq!(hub.room(at(0), 1), max);
        assert_eq!(hub.input_stream(1, b"\x00\x00"), 2);
        assert_eq!(hub.room(at(0), 1), max - 2);
        level.set(HIGH - 1);
        assert_eq!(hub.room(at(0), 1), max - 2);
        assert_eq!(hub.stats().paused, 0);
        level.set(HIGH);
        assert_eq!(hub.room(at(0), 1), 0);
        assert_eq!(hub.room(at(1), 1), 0);
        assert_eq!(hub.room(at(1), 1), 0);
        assert_eq!(
            hub.stats().paused,
            1,
            "one pause, however often it is asked"
        );
        level.set(0);
        assert_eq!(hub.room(at(2), 1), max - 2);
        level.set(HIGH);
        assert_eq!(hub.room(at(3), 1), 0);
        assert_eq!(hub.stats().paused, 2);
        assert_eq!(hub.room(at(3), 7), 0, "an unknown connection is not read");
    }

    /// Business requests as a TCP client writes them (cmd 4, ids `first..first + n`)
    fn requests(first: u32, n: u32) -> Vec<u8> {
        let mut bytes = Vec::new();
        for id in first..first + n {
            let mut buf = [0u8; 64];
            let len = Packet::request(4, RequestId(id), 0, b"req")
                .emit(&mut buf)
                .unwrap();
            bytes.extend_from_slice(&buf[..len]);
        }
        bytes
    }

    fn request_ids(hub: &mut Hub<Level, 4, 4>) -> Vec<u32> {
        let mut ids = Vec::new();
        while let Some(i) = hub.next_input() {
            if let ServerInput::Request { request_id, .. } = i {
                ids.push(request_id.0);
            }
        }
        ids
    }

    /// Only connections with something new are fed, so every hold-up's end must bring its
    /// connection back: requests pipelined behind the Auth go on when the login is accepted,
    /// without more input
    #[test]
    fn input_behind_an_auth_decision_goes_on_when_it_is_decided() {
        let (mut hub, _level) = hub();
        let mut bytes = auth_bytes();
        bytes.extend_from_slice(&requests(10, 2));
        assert_eq!(hub.input_stream(1, &bytes), bytes.len());
        hub.process(at(1));
        assert!(matches!(
            hub.next_input(),
            Some(ServerInput::Auth { peer: 1, .. })
        ));
        hub.process(at(2));
        assert_eq!(
            request_ids(&mut hub),
            [] as [u32; 0],
            "behind the pending login"
        );
        let grant = Grant::new(crate::random_session_id(), 4_000_000_000_000);
        hub.accept(at(3), 1, false, grant).unwrap();
        hub.process(at(3));
        assert_eq!(request_ids(&mut hub), [10, 11]);
        assert_eq!(hub.take_touched(), [1]);
        assert_eq!(hub.take_touched(), [] as [ConnId; 0]);
        // what a call fed and nobody took is forgotten by the next call
        let more = requests(12, 1);
        assert_eq!(hub.input_stream(1, &more), more.len());
        hub.process(at(4));
        hub.process(at(5));
        assert_eq!(hub.take_touched(), [] as [ConnId; 0]);
        assert_eq!(request_ids(&mut hub), [12]);
    }

    /// Requests over the pending limit wait in the buffer; an answer brings the next one out,
    /// without more input
    #[test]
    fn input_held_by_the_pending_limit_goes_on_with_an_answer() {
        let limits = ServerLimits::default().with_outbox(HIGH, 10 * HIGH);
        let (mut hub, _level) = hub_with(ServerConfig::new().with_max_pending_requests(1), limits);
        log_in(&mut hub, at(1));
        let bytes = requests(20, 3);
        assert_eq!(hub.input_stream(1, &bytes), bytes.len());
        hub.process(at(2));
        assert_eq!(request_ids(&mut hub), [20]);
        assert!(hub.requests_pending(1));
        hub.process(at(3));
        assert_eq!(request_ids(&mut hub), [] as [u32; 0]);
        hub.respond(at(4), 1, 4, RequestId(20), Status::Success, b"", false)
            .unwrap();
        hub.process(at(4));
        assert_eq!(request_ids(&mut hub), [21]);
    }

    /// Input held back by a full outbox goes on once the writer reports it drained
    #[test]
    fn input_held_by_a_full_outbox_goes_on_when_it_drains() {
        let (mut hub, level) = hub();
        log_in(&mut hub, at(1));
        level.set(HIGH);
        let bytes = requests(30, 1);
        assert_eq!(hub.input_stream(1, &bytes), bytes.len());
        hub.process(at(2));
        assert_eq!(request_ids(&mut hub), [] as [u32; 0]);
        level.set(0);
        hub.drained(1);
        hub.process(at(3));
        assert_eq!(request_ids(&mut hub), [30]);
    }

    /// The same when the driver only asks for the read credit (the blocking driver's way: it
    /// never reports drains): the first credit after the pause brings the held input out
    #[test]
    fn input_held_by_a_full_outbox_goes_on_at_the_next_credit() {
        let (mut hub, level) = hub();
        log_in(&mut hub, at(1));
        level.set(HIGH);
        let bytes = requests(40, 1);
        assert_eq!(hub.input_stream(1, &bytes), bytes.len());
        hub.process(at(2));
        assert_eq!(hub.room(at(2), 1), 0);
        assert_eq!(request_ids(&mut hub), [] as [u32; 0]);
        level.set(0);
        assert!(hub.room(at(3), 1) > 0);
        hub.process(at(3));
        assert_eq!(request_ids(&mut hub), [40]);
    }

    /// A WebSocket message counts its payload and `MESSAGE_COST` against the read credit until
    /// the machine has taken it; then that much credit comes back (a request behind the pending
    /// login keeps holding its share)
    #[test]
    fn websocket_messages_hold_credit_until_they_are_fed() {
        let (mut hub, _level) = hub();
        let source = Source::from(std::net::IpAddr::from([127, 0, 0, 2]));
        let level = Rc::new(Cell::new(0));
        hub.connect(at(0), 2, Transport::WebSocket, source, Level(level))
            .unwrap();
        let max = hub.max_input();
        assert_eq!(hub.room(at(0), 2), max);
        let auth = auth_for(tether_net::longport::ClientConfig::websocket());
        let request = requests(50, 1);
        hub.input_message(2, WsIn::Frame(FrameKind::WsPing, vec![7; 10]));
        hub.input_message(2, WsIn::Binary(auth.clone()));
        hub.input_message(2, WsIn::Binary(request.clone()));
        let held = 10 + auth.len() + request.len() + 3 * MESSAGE_COST;
        assert_eq!(hub.room(at(0), 2), max - held);
        hub.process(at(1));
        assert!(matches!(
            hub.next_input(),
            Some(ServerInput::Auth { peer: 2, .. })
        ));
        assert_eq!(hub.take_consumed(2), 10 + auth.len() + 2 * MESSAGE_COST);
        assert_eq!(hub.take_consumed(2), 0);
        assert_eq!(hub.room(at(1), 2), max - request.len() - MESSAGE_COST);
    }

    /// The outbox hard limit (`outbox_max`, 10,000 B here) for frames the application writes
    /// (`send`): a frame that fills the outbox exactly to the limit goes in; one byte more and
    /// the connection is dropped at once, without waiting for the stall timeout
    #[test]
    fn a_sent_frame_may_fill_the_outbox_to_the_limit_and_not_one_byte_more() {
        let max = 10 * HIGH;
        let push = Packet::push(7, b"pushed body");
        let len = {
            let (mut h, level) = hub();
            log_in(&mut h, at(1));
            let before = level.get();
            h.send(at(2), 1, &push).unwrap();
            level.get() - before
        };
        assert!(len > 1);

        let (mut h, level) = hub();
        log_in(&mut h, at(1));
        level.set(max - len);
        assert!(h.send(at(2), 1, &push).is_ok());
        assert_eq!(level.get(), max, "filled to the limit");
        assert!(
            h.take_killed().is_empty(),
            "exactly at the limit is allowed"
        );
        assert_eq!(h.stats().peak_outbox, max as u64);

        let (mut h, level) = hub();
        log_in(&mut h, at(1));
        level.set(max - len + 1);
        assert!(matches!(h.send(at(2), 1, &push), Err(SendError::Stalled)));
        assert_eq!(level.get(), max - len + 1, "the frame was not queued");
        assert_eq!(h.take_killed(), [1]);
        assert_eq!(h.stats().stalled, 1);

        // an empty outbox takes no frame longer than the limit either
        let limits = ServerLimits::default()
            .with_outbox(1, 1)
            .with_stall_timeout(STALL);
        let (mut small, level) = hub_with(ServerConfig::new(), limits);
        // the login response itself is longer than one byte: the flush drops the connection
        log_in(&mut small, at(1));
        assert_eq!(level.get(), 0, "nothing over the limit was queued");
        assert_eq!(small.take_killed(), [1]);
    }

    /// The same limit for the machine's own frames (handed out by a flush): the Close push of
    /// `close` may fill the outbox exactly; one byte more drops the connection
    #[test]
    fn a_flushed_frame_may_fill_the_outbox_to_the_limit_and_not_one_byte_more() {
        let max = 10 * HIGH;
        let close =
            |h: &mut Hub<Level, 4, 4>| h.close(at(2), 1, CloseCode::ServerShutdown, "maintenance");
        let len = {
            let (mut h, level) = hub();
            log_in(&mut h, at(1));
            let before = level.get();
            close(&mut h).unwrap();
            level.get() - before
        };
        assert!(len > 1, "the Close push went through the flush");

        let (mut h, level) = hub();
        log_in(&mut h, at(1));
        level.set(max - len);
        close(&mut h).unwrap();
        assert_eq!(level.get(), max);
        assert!(
            h.take_killed().is_empty(),
            "exactly at the limit is allowed"
        );
        assert_eq!(h.stats().stalled, 0);

        let (mut h, level) = hub();
        log_in(&mut h, at(1));
        level.set(max - len + 1);
        let _ = close(&mut h);
        assert_eq!(level.get(), max - len + 1, "the Close push was not queued");
        assert_eq!(h.take_killed(), [1]);
        assert_eq!(h.stats().stalled, 1);
    }

    /// The login packet of `cmd` whose body is `body` encoded and compressed (a stored gzip
    /// member, as the official Go client flags bodies of 1 KiB and more), behind the TCP
    /// handshake
    fn gzip_login<'b, B: tether_net::longport::control::Body<'b>>(cmd: u8, body: &B) -> Vec<u8> {
        let mut plain = vec![0u8; body.encoded_len()];
        body.encode(&mut plain).unwrap();
        let mut gz = vec![0u8; plain.len() + 64];
        let n = tether_net::longport::gzip::gzip_stored(&plain, &mut gz).unwrap();
        let mut buf = vec![0u8; n + 64];
        let len = Packet::request(cmd, RequestId(1), 0, &gz[..n])
            .with_gzip(true)
            .emit(&mut buf)
            .unwrap();
        let mut bytes = auth_bytes()[..2].to_vec();
        bytes.extend_from_slice(&buf[..len]);
        bytes
    }

    /// Another TCP connection `id`, from 127.0.0.`id`, connected at `now`; its outbox level
    fn another(h: &mut Hub<Level, 4, 4>, now: Instant, id: u8) -> Rc<Cell<usize>> {
        let level = Rc::new(Cell::new(0));
        let source = Source::from(std::net::IpAddr::from([127, 0, 0, id]));
        h.connect(
            now,
            ConnId::from(id),
            Transport::Tcp,
            source,
            Level(level.clone()),
        )
        .unwrap();
        level
    }

    /// With the feature `gzip`, compressed logins reach the application as ordinary ones: the
    /// token, the session id, the session's expiry and the metadata, inflated
    #[cfg(feature = "gzip")]
    #[test]
    fn compressed_logins_are_handed_over_inflated() {
        use tether_net::longport::control::{
            AuthRequest, Metadata, ReconnectRequest, CMD_AUTH, CMD_RECONNECT,
        };
        let pairs = [("accept-language", "en"), ("client", "gz")];
        let (mut h, _level) = hub();
        let auth = AuthRequest::new("gz-token", Metadata::from_pairs(&pairs));
        let bytes = gzip_login(CMD_AUTH, &auth);
        assert_eq!(h.input_stream(1, &bytes), bytes.len());
        h.process(at(1));
        let expected_pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(
            h.next_input(),
            Some(ServerInput::Auth {
                peer: 1,
                request_id: RequestId(1),
                token: "gz-token".to_string(),
                metadata: expected_pairs.clone(),
            })
        );
        let session = crate::random_session_id();
        let expires = 4_000_000_000_000;
        h.accept(at(2), 1, false, Grant::new(session.clone(), expires))
            .unwrap();
        assert_eq!(h.server.stats().auths_accepted, 1);

        // a second connection resumes that session with a compressed Reconnect
        another(&mut h, at(3), 2);
        let reconnect = ReconnectRequest::new(session.as_str(), Metadata::from_pairs(&pairs[..1]));
        let bytes = gzip_login(CMD_RECONNECT, &reconnect);
        assert_eq!(h.input_stream(2, &bytes), bytes.len());
        h.process(at(4));
        assert_eq!(
            h.next_input(),
            Some(ServerInput::Reconnect {
                peer: 2,
                request_id: RequestId(1),
                session_id: session.as_str().to_string(),
                expires,
                metadata: expected_pairs[..1].to_vec(),
            })
        );
        assert_eq!(h.server.stats().compressed_logins, 2);
        assert_eq!(h.server.stats().auths_rejected, 0);
        assert_eq!(h.server.stats().reconnects_rejected, 0);
    }

    /// Without the feature `gzip` (while the machine has it: another crate of the build turned it
    /// on), compressed logins are refused for the client with status 3 and code 400, and never
    /// reach the application
    #[cfg(not(feature = "gzip"))]
    #[test]
    fn compressed_logins_the_driver_cannot_read_are_refused() {
        use tether_net::longport::control::{
            AuthRequest, Metadata, ReconnectRequest, CMD_AUTH, CMD_RECONNECT,
        };
        // feeds a compressed login to connection `id`: refused, nothing for the application
        let refused = |h: &mut Hub<Level, 4, 4>, level: &Cell<usize>, id, bytes: Vec<u8>| {
            assert_eq!(h.input_stream(id, &bytes), bytes.len());
            h.process(at(4));
            assert_eq!(h.next_input(), None);
            assert!(level.get() > 0, "the refusal was queued for the client");
        };
        let (mut h, level) = hub();
        let auth = AuthRequest::new("gz-token", Metadata::EMPTY);
        refused(&mut h, &level, 1, gzip_login(CMD_AUTH, &auth));
        assert_eq!(h.server.stats().auths_rejected, 1);

        // a Reconnect of a live session, compressed: refused the same way
        let session = crate::random_session_id();
        another(&mut h, at(2), 2);
        let plain = auth_bytes();
        assert_eq!(h.input_stream(2, &plain), plain.len());
        h.process(at(2));
        assert!(matches!(
            h.next_input(),
            Some(ServerInput::Auth { peer: 2, .. })
        ));
        h.accept(
            at(2),
            2,
            false,
            Grant::new(session.clone(), 4_000_000_000_000),
        )
        .unwrap();
        let level3 = another(&mut h, at(3), 3);
        let reconnect = ReconnectRequest::new(session.as_str(), Metadata::EMPTY);
        refused(&mut h, &level3, 3, gzip_login(CMD_RECONNECT, &reconnect));
        assert_eq!(h.server.stats().reconnects_rejected, 1);
        assert_eq!(h.server.stats().compressed_logins, 2);
    }

    /// A logged-in client's own Response (to a request the application sent) and Push packets
    /// reach the application whole: command, request id, status, body and gzip flag
    #[test]
    fn a_clients_response_and_push_reach_the_application() {
        let (mut h, _level) = hub();
        log_in(&mut h, at(1));
        let mut bytes = Vec::new();
        let mut buf = [0u8; 64];
        let n = Packet::response(20, RequestId(77), Status::BadRequest, b"answer")
            .emit(&mut buf)
            .unwrap();
        bytes.extend_from_slice(&buf[..n]);
        let n = Packet::push(21, b"pushed")
            .with_gzip(true)
            .emit(&mut buf)
            .unwrap();
        bytes.extend_from_slice(&buf[..n]);
        assert_eq!(h.input_stream(1, &bytes), bytes.len());
        h.process(at(2));
        assert_eq!(
            h.next_input(),
            Some(ServerInput::Response {
                peer: 1,
                request_id: RequestId(77),
                cmd: 20,
                status: Status::BadRequest,
                body: b"answer".to_vec(),
                gzip: false,
            })
        );
        assert_eq!(
            h.next_input(),
            Some(ServerInput::Push {
                peer: 1,
                cmd: 21,
                body: b"pushed".to_vec(),
                gzip: true,
            })
        );
        assert_eq!(h.next_input(), None);
    }

    /// A heartbeat too long for the machine to echo by itself (over `MAX_ECHO_LEN`) is echoed
    /// by the hub, body and request id unchanged, and never reaches the application
    #[test]
    fn a_heartbeat_too_long_for_the_machine_is_echoed_by_the_hub() {
        use tether_net::longport::control::CMD_HEARTBEAT;
        use tether_net::longport::MAX_ECHO_LEN;
        let (mut h, level) = hub();
        log_in(&mut h, at(1));
        let before = level.get();
        let body = vec![7u8; MAX_ECHO_LEN + 1];
        let mut buf = vec![0u8; 256];
        let n = Packet::request(CMD_HEARTBEAT, RequestId(42), 0, &body)
            .emit(&mut buf)
            .unwrap();
        assert_eq!(h.input_stream(1, &buf[..n]), n);
        h.process(at(2));
        assert_eq!(h.next_input(), None, "not for the application");
        let echo = Packet::response(CMD_HEARTBEAT, RequestId(42), Status::Success, &body)
            .emit(&mut buf)
            .unwrap();
        assert_eq!(level.get() - before, echo, "the echo went to the outbox");
    }

    /// A connection is dropped once: a second kill, or a kill of a connection the hub does not
    /// hold, changes nothing
    #[test]
    fn a_connection_is_killed_once() {
        let (mut hub, _level) = hub();
        hub.kill(at(1), 1);
        hub.kill(at(2), 1);
        hub.kill(at(2), 99);
        assert_eq!(hub.stats().stalled, 1);
        assert_eq!(hub.take_killed(), [1]);
    }
}
