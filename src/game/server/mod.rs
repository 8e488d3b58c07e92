//! The game server: stateless DDNet token handshake, vanilla policy, keep-alive, timeout, kick and
//! shutdown for up to `N` peers
//!
//! # Admission (DDNet flavour)
//!
//! A token CONNECT (`01 "TKEN" FF FF FF FF`) from an unknown address is answered statelessly with
//! `CONNECT_ACCEPT | "TKEN" | token`, ack 0, where the token is [`mint`]ed from the peer key and
//! [`ServerConfig::secret`]; nothing is stored. Only an ACCEPT carrying that token creates a peer
//! (event [`ServerEvent::PeerConnected`]), so a peer exists only for addresses that proved they
//! receive our packets.
//!
//! **Amplification.** Before admission no reply is larger than the request it answers: a token
//! CONNECT is at least 12 bytes and its CONNECT_ACCEPT 12 bytes; the vanilla replies (bare
//! CONNECT_ACCEPT, bare CLOSE) are 4 bytes for a request of at least 4. Pending stateless replies
//! wait in a bounded queue of [`STATELESS_QUEUE_LEN`]; when it is full the request is dropped and
//! counted ([`ServerStats::dropped_reply_queue_full`]). **The one exception**: when the table is
//! full, a valid token ACCEPT (8 bytes) is answered with `CLOSE "This server is full"` + token
//! (28 bytes), as DDNet does — the echoed token proves the sender owns its address, so the reply
//! cannot be aimed at a third party. A vanilla CONNECT to a full server gets a bare CLOSE.
//!
//! # Vanilla clients
//!
//! A CONNECT without `TKEN` is handled according to [`ServerConfig::vanilla`] ([`VanillaPolicy`]).
//!
//! # Existing peers
//!
//! Packets from a known peer go through the pre-filter of the spec (A.11): token (token peers:
//! last 4 bytes, dropped and counted when wrong), ack range (A.6, dropped and counted), then
//! dispatch. A CONNECT from a known peer is answered again with its CONNECT_ACCEPT, the
//! connection unchanged (DDNet does so for token CONNECTs; for vanilla ones it stays silent,
//! which strands a vanilla client whose CONNECT_ACCEPT was lost — we answer). KEEP_ALIVE and
//! every other accepted packet refresh the peer's liveness; CLOSE removes the peer ([`PeerCloseCause::PeerClosed`], nothing sent back); chunk packets come
//! back borrowed in [`Received::app`] (the peer is the `from` the caller passed).
//!
//! Like the [`Client`](super::client::Client), the server does no vital-chunk sequencing: each
//! peer's ack is what the application reports with [`Server::set_ack`] (0 until then) and its
//! sequence what it reports with [`Server::set_sequence`].
//!
//! # Timers and their cost
//!
//! Per peer: KEEP_ALIVE when nothing was sent for [`ServerConfig::keep_alive`], timeout (no CLOSE
//! sent) when nothing valid arrived for [`ServerConfig::timeout`], and for
//! [`VanillaPolicy::Pending`] slots a CONNECT_ACCEPT resend every
//! [`ServerConfig::connect_accept_resend`]. Each peer has one entry in a bounded min-heap of
//! timer entries: [`Server::poll_timeout`] is O(1) (the heap's top) and
//! [`Server::handle_timeout`] pops only the due entries, O(log N) each plus one table lookup —
//! no pass over all peers. Entries are never updated in place: a refresh only moves a peer's
//! deadlines later, so an entry may wake the caller early and is then re-filed; entries of
//! removed peers are recognised and dropped. If churn leaves more stale entries than the heap
//! holds, the heap is rebuilt from the table once (O(N log N)).
//!
//! # Peer table
//!
//! Peers live in `N` dense slots (`N` a power of two, at most 2^30, checked at compile time)
//! found through an open-addressing index of `2 × N` 32-bit buckets: the load factor never
//! exceeds 50 %, so a lookup is O(1) and short at any `N`, and deletion shifts buckets back
//! instead of leaving tombstones, so churn does not slow it down. A bucket holds the slot
//! number and a tag of the key's hash, so a datagram from a known peer reads one bucket and one
//! slot. The slot holds the key and the 12 bytes every datagram needs (last receive time as a
//! 32-bit millisecond stamp, token, ack, sequence, online flag); what only timers and sends
//! need (last send time, the ack we send, queued output, admission number) sits in an array
//! beside it. Receive times are kept at 1 ms resolution, rounded up: a timeout fires up to 1 ms
//! after the exact deadline (exactly on it for whole-millisecond times). The index is placed
//! by a cheap keyed hash (a folded multiply per word of `A`'s `Hash` stream) whose key is
//! derived from the secret, so that clients cannot pick colliding addresses; SipHash is only
//! used to mint tokens (stateless CONNECT and ACCEPT), never per datagram of a known peer,
//! whose token is compared with the one stored in its slot.
//!
//! Memory grows linearly with `N`. Per peer of capacity: two index buckets (8 bytes), one slot
//! (`A` and 12 bytes of state: 16 bytes for `A = u32`), a free-list entry (4), the state
//! beside the table (16), one timer-heap entry (16) and one transmit-queue entry (4), plus a
//! fixed part: 64 bytes per peer for `A = u32` (`Server<u32, 65536>` is about 4.2 MB: build
//! large servers in a `Box` or a `static`). With 65,536 peers the index and the slots — all a
//! KEEP_ALIVE touches — are 1.5 MiB.

use core::hash::Hash;
use core::num::NonZeroU32;

use heapless::binary_heap::{BinaryHeap, Min};
use heapless::Deque;

use super::event::{CommandError, InputError, PeerCloseCause, ReasonText, SendError, ServerEvent};
use super::token::{mint, KeyedBuildHasher, TokenSecret};
use super::wire::{
    self, ack_in_range, ChunkPacket, Control, ControlPacket, DecodeError, Flags, Packet, Reason,
    Token, TokenMode, ACK_MODULO,
};
use crate::io::{BufferTooSmall, FrameKind, Received, Transmit};
use crate::machine::Machine;
use crate::time::{Clock, Duration, Instant};
use table::{PeerHashKey, Table};

mod table;

/// Capacity of the queue of stateless replies (CONNECT_ACCEPT, refusal CLOSE) to unknown addresses
pub const STATELESS_QUEUE_LEN: usize = 16;
/// Capacity of the queue of CLOSE frames with a reason for kicked peers
pub const CLOSE_QUEUE_LEN: usize = 4;
/// The reason sent to a token client whose ACCEPT arrives while the table is full
pub const SERVER_FULL_REASON: &str = "This server is full";

/// What the server does with a vanilla CONNECT (one without the DDNet `TKEN` extension)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum VanillaPolicy {
    /// Refuse: answer a bare CLOSE (`10 00 00 04`, no reason so the reply is no larger than the
    /// request) and keep nothing. The default: vanilla clients cannot prove their address.
    #[default]
    Reject,
    /// Like DDNet 16.x with `sv_vanilla_antispoof 0`: answer a bare CONNECT_ACCEPT and create an
    /// online token-less peer at once (state for an unverified address: a spoofed CONNECT can
    /// occupy a slot until it times out)
    Admit,
    /// Like vanilla 0.6.4: create a pending slot, resend CONNECT_ACCEPT every
    /// [`ServerConfig::connect_accept_resend`], go online (event `PeerConnected`) on the first
    /// chunk packet; a pending slot times out after [`ServerConfig::timeout`] without an event.
    /// The resends make one spoofed 4-byte CONNECT cost up to `timeout / resend` 4-byte replies.
    Pending,
}

/// Settings of a [`Server`]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ServerConfig {
    /// Secret the security tokens and the peer-table hash key are derived from; fill it from a
    /// random source at start. Default: all zeros — **replace it**: with a known secret anyone
    /// can compute tokens for spoofed addresses.
    pub secret: TokenSecret,
    /// Policy for vanilla CONNECTs. Default: [`VanillaPolicy::Reject`].
    pub vanilla: VanillaPolicy,
    /// Send a KEEP_ALIVE to an online peer when nothing was sent to it for this long. Default:
    /// 1 s, what DDNet and vanilla servers do (the project's seed text mentions 250 ms for
    /// clients only; that value comes from a stale source comment).
    pub keep_alive: Duration,
    /// A peer times out when nothing valid arrived from it for this long. Default: 10 s
    /// (vanilla 0.6.4; DDNet's `conn_timeout` defaults to 100 s).
    pub timeout: Duration,
    /// CONNECT_ACCEPT resend interval for [`VanillaPolicy::Pending`] slots. Default: 500 ms.
    pub connect_accept_resend: Duration,
    /// Admit at most this many peers (online and pending); the server's `N` caps it too.
    /// Default: `usize::MAX` (up to `N`). The peer table has `2 × N` buckets, so it is at most
    /// half full whatever `max_peers` is: lookups stay short up to `N` peers.
    pub max_peers: usize,
}

impl ServerConfig {
    /// The defaults with this `secret`
    #[must_use]
    pub fn new(secret: TokenSecret) -> Self {
        ServerConfig {
            secret,
            ..ServerConfig::default()
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            secret: TokenSecret([0; 16]),
            vanilla: VanillaPolicy::Reject,
            keep_alive: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            connect_accept_resend: Duration::from_millis(500),
            max_peers: usize::MAX,
        }
    }
}

/// Counters of a [`Server`]; they only grow (wrapping)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ServerStats {
    /// Packets dropped because their token was wrong or missing (known peers and ACCEPTs)
    pub dropped_wrong_token: u32,
    /// Packets from known peers dropped because their ack was out of range
    pub dropped_bad_ack: u32,
    /// Datagrams that did not parse as a 0.6 packet
    pub dropped_malformed: u32,
    /// Requests from unknown addresses dropped because the stateless reply queue was full
    pub dropped_reply_queue_full: u32,
    /// Packets from unknown addresses that need no answer (KEEP_ALIVE, CLOSE, chunks, ...)
    pub ignored_unsolicited: u32,
    /// Datagrams fed during or after shutdown (ignored)
    pub ignored_stopped: u32,
    /// Accepted packets that carried decoder [`Warnings`](super::wire::Warnings)
    pub warnings: u32,
    /// CONNECT_ACCEPT packets sent (stateless, re-answers and pending resends)
    pub connect_accepts_sent: u32,
    /// KEEP_ALIVE packets sent
    pub keep_alives_sent: u32,
    /// KEEP_ALIVE packets received (and accepted)
    pub keep_alives_received: u32,
    /// Peers admitted (`PeerConnected` events)
    pub peers_admitted: u32,
    /// Admitted peers that timed out
    pub peers_timed_out: u32,
    /// Pending vanilla slots that timed out before their first chunk packet
    pub pending_timed_out: u32,
    /// Admissions refused because the table was full
    pub rejected_full: u32,
    /// Vanilla CONNECTs refused by [`VanillaPolicy::Reject`]
    pub rejected_vanilla: u32,
    /// Chunk packets written by [`Server::send_chunks`]
    pub chunk_packets_sent: u32,
    /// Chunk packets delivered in [`Received::app`]
    pub chunk_packets_received: u32,
}

/// The server's own lifecycle
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ServerState {
    /// Accepting peers
    Running,
    /// [`Server::shutdown`] was called; CLOSEs and `PeerClosed` events are being drained
    ShuttingDown,
    /// Shutdown finished ([`ServerEvent::ShutdownComplete`] was emitted); all input is ignored
    Stopped,
}

/// Pending-output bit: CONNECT_ACCEPT to this peer
const OUT_CONNECT_ACCEPT: u8 = 1;
/// Pending-output bit: KEEP_ALIVE to this peer
const OUT_KEEP_ALIVE: u8 = 2;

/// [`PeerHot::bits`]: the peer's last ack (bits 0..10)
const ACK_MASK: u32 = 0x3FF;
/// [`PeerHot::bits`]: our own sequence towards the peer (bits 10..20)
const SEQUENCE_SHIFT: u32 = 10;
/// [`PeerHot::bits`]: admitted and announced (`PeerConnected`); a vanilla pending slot is not
const ONLINE_BIT: u32 = 1 << 30;
/// [`PeerHot::bits`]: always set, so the field is never zero and `Option<PeerHot>` needs no tag
const PRESENT: NonZeroU32 = match NonZeroU32::new(1 << 31) {
    Some(v) => v,
    None => panic!("1 << 31 is not zero"),
};

/// A peer's last receive time as kept in its slot: milliseconds since the caller's epoch,
/// rounded up, low 32 bits (wraps every 49.7 days; see [`unstamp`])
#[inline]
fn stamp(t: Instant) -> u32 {
    t.as_micros().div_ceil(1_000) as u32
}

/// The instant of a [`stamp`]: the latest whole millisecond at or before `now` (rounded up)
/// whose low 32 bits are `stamp`
///
/// Exact while the stamp is younger than 2^32 ms (49.7 days). A peer is looked at by its timer
/// at least every keep-alive interval and removed after the timeout, so a stamp is that old
/// only if `handle_timeout` was not called for 49 days while the peer stayed silent; the peer
/// then looks younger than it is and times out one timeout later.
#[inline]
fn unstamp(stamp: u32, now: Instant) -> Instant {
    let now_ms = now.as_micros().div_ceil(1_000);
    let age = (now_ms as u32).wrapping_sub(stamp);
    Instant::from_millis(now_ms.saturating_sub(u64::from(age)))
}

/// The per-peer state every datagram from the peer reads or writes; 12 bytes, stored with the
/// key in the table's slot (16 bytes with a `u32` key)
#[derive(Debug, Clone, Copy)]
struct PeerHot {
    /// The peer's token; [`Token::UNSUPPORTED`] (00 00 00 00, never minted) for a vanilla peer
    token: Token,
    /// When the last accepted datagram arrived (a [`stamp`]: 1 ms resolution, so a timeout
    /// fires up to 1 ms after the exact deadline)
    last_recv: u32,
    /// The last ack the peer sent, our sequence towards it, [`ONLINE_BIT`], [`PRESENT`]
    bits: NonZeroU32,
}

impl PeerHot {
    fn new(now: Instant, token: Option<Token>, online: bool) -> Self {
        PeerHot {
            token: token.unwrap_or(Token::UNSUPPORTED),
            last_recv: stamp(now),
            bits: PRESENT | if online { ONLINE_BIT } else { 0 },
        }
    }

    #[inline]
    fn token(&self) -> Option<Token> {
        if self.token == Token::UNSUPPORTED {
            None
        } else {
            Some(self.token)
        }
    }

    #[inline]
    fn online(&self) -> bool {
        self.bits.get() & ONLINE_BIT != 0
    }

    fn set_online(&mut self) {
        self.bits |= ONLINE_BIT;
    }

    /// The last ack the peer sent (mod 1024)
    #[inline]
    fn peer_ack(&self) -> u16 {
        (self.bits.get() & ACK_MASK) as u16
    }

    #[inline]
    fn set_peer_ack(&mut self, ack: u16) {
        self.bits = PRESENT | (self.bits.get() & !ACK_MASK) | (u32::from(ack) & ACK_MASK);
    }

    /// Our own last vital sequence towards the peer (upper end of its accepted ack range)
    #[inline]
    fn sequence(&self) -> u16 {
        ((self.bits.get() >> SEQUENCE_SHIFT) & ACK_MASK) as u16
    }

    fn set_sequence(&mut self, sequence: u16) {
        let mask = ACK_MASK << SEQUENCE_SHIFT;
        self.bits = PRESENT
            | (self.bits.get() & !mask)
            | ((u32::from(sequence) & ACK_MASK) << SEQUENCE_SHIFT);
    }

    /// When the last accepted datagram arrived (1 ms resolution, judged at `now`)
    fn last_recv(&self, now: Instant) -> Instant {
        unstamp(self.last_recv, now)
    }

    /// Interval of the send timer: keep-alive when online, CONNECT_ACCEPT resend when pending
    /// (at least 1 µs, so a due timer always moves forward)
    fn send_interval(&self, config: &ServerConfig) -> Duration {
        let interval = if self.online() {
            config.keep_alive
        } else {
            config.connect_accept_resend
        };
        interval.max(Duration::from_micros(1))
    }
}

/// The per-peer state only timers, commands and sends touch; 16 bytes, in an array beside the
/// table indexed by the peer's slot
#[derive(Debug, Clone, Copy)]
struct PeerCold {
    last_send: Instant,
    /// Admission number: identifies this slot's entry in the timer heap
    gen: u32,
    /// The ack we send (the application's last in-order vital sequence), mod 1024
    ack: u16,
    /// `OUT_*` bits
    out: u8,
    /// In the transmit queue
    queued: bool,
}

impl PeerCold {
    const EMPTY: PeerCold = PeerCold {
        last_send: Instant::ZERO,
        gen: 0,
        ack: 0,
        out: 0,
        queued: false,
    };

    fn new(now: Instant, gen: u32) -> Self {
        PeerCold {
            last_send: now,
            gen,
            ..Self::EMPTY
        }
    }
}

/// The next frame a peer has queued, and its bit
fn next_frame(hot: &PeerHot, cold: &PeerCold) -> Option<(ControlPacket<'static>, u8)> {
    if cold.out & OUT_CONNECT_ACCEPT != 0 {
        // ack 0: the peer's ack check while connecting accepts only 0
        Some((
            ControlPacket {
                ack: 0,
                control: Control::ConnectAccept,
                token: hot.token(),
            },
            OUT_CONNECT_ACCEPT,
        ))
    } else if cold.out & OUT_KEEP_ALIVE != 0 {
        Some((
            ControlPacket {
                ack: cold.ack,
                control: Control::KeepAlive,
                token: hot.token(),
            },
            OUT_KEEP_ALIVE,
        ))
    } else {
        None
    }
}

/// When a peer's timer entry must fire, judged at `now`
///
/// Never later than the peer's real next deadline: the timeout, or the send timer. While a
/// frame is queued (`out != 0`) the send timer restarts when that frame goes out, which is not
/// before `now`, so `now + interval` is a safe lower bound.
fn timer_at(hot: &PeerHot, cold: &PeerCold, config: &ServerConfig, now: Instant) -> Instant {
    let timeout = hot.last_recv(now) + config.timeout;
    let interval = hot.send_interval(config);
    let send = if cold.out != 0 {
        now + interval
    } else {
        cold.last_send + interval
    };
    timeout.min(send)
}

/// One entry of the timer heap: the peer in table slot `slot` (admission `gen`) wants a look at
/// `at`
///
/// Entries are never updated in place. Liveness refreshes only move a peer's deadlines later, so
/// an entry may fire early; it is then re-pushed with the peer's current deadline. Entries of
/// removed peers (or of an earlier occupant of the slot) are recognised by `gen` and dropped
/// when they reach the top.
#[derive(Debug, Clone, Copy)]
struct TimerEntry {
    at: Instant,
    gen: u32,
    slot: u32,
}

impl PartialEq for TimerEntry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.gen) == (other.at, other.gen)
    }
}

impl Eq for TimerEntry {}

impl PartialOrd for TimerEntry {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TimerEntry {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        (self.at, self.gen).cmp(&(other.at, other.gen))
    }
}

type PeerTable<A, const N: usize> = Table<A, PeerHot, PeerHashKey, N>;

/// A reply to an address without state
#[derive(Debug, Clone, Copy)]
enum Reply<A> {
    /// CONNECT_ACCEPT (DDNet form when `token` is `Some`), ack 0
    ConnectAccept { to: A, token: Option<Token> },
    /// Bare CLOSE, ack 0
    Close { to: A },
    /// `CLOSE "This server is full"` + token, ack 0
    Full { to: A, token: Token },
}

/// A CLOSE with a reason for a peer already removed from the table
#[derive(Debug, Clone)]
struct CloseFrame<A> {
    to: A,
    token: Option<Token>,
    ack: u16,
    reason: ReasonText,
}

/// Progress of a shutdown over the peer table (slot numbers)
#[derive(Debug, Clone, Copy)]
struct Shutdown {
    /// Next slot to send CLOSE to
    tx: usize,
    /// Next slot to emit `PeerClosed` for (always `<= tx`)
    ev: usize,
    /// One past the last slot handed out (no slot is added or freed while shutting down)
    end: usize,
}

/// A sans-IO Teeworlds 0.6 / DDNet game server for up to `N` peers (a power of two, at most
/// 2^30; the peer table has `2 × N` buckets, see the module docs on memory), with an event queue
/// of `E` entries (default 8); `A` is the caller's peer key (a socket address, an `(ip, port)`
/// tuple, ...)
///
/// Drive it with the [`Machine`] run loop. Tokens are minted from the whole key `A`: pass the IP
/// alone as part of the key's hash if all ports of a host should share one (DDNet's choice), or
/// the full address.
pub struct Server<A, const N: usize, const E: usize = 8> {
    config: ServerConfig,
    clock: Clock,
    peers: PeerTable<A, N>,
    /// Per-slot state beside the table (see [`PeerCold`])
    cold: [PeerCold; N],
    /// Slots of peers with `out` bits set (each at most once while `queued`)
    dirty: Deque<u32, N>,
    replies: Deque<Reply<A>, STATELESS_QUEUE_LEN>,
    closes: Deque<CloseFrame<A>, CLOSE_QUEUE_LEN>,
    events: Deque<ServerEvent<A>, E>,
    state: ServerState,
    shutdown: Shutdown,
    shutdown_reason: ReasonText,
    /// Min-heap of per-slot timer entries (plus stale ones, see [`TimerEntry`])
    timers: BinaryHeap<TimerEntry, Min, N>,
    /// A push into `timers` failed (too many stale entries): rebuild before the next use
    timers_lost: bool,
    /// Next admission number
    next_gen: u32,
    stats: ServerStats,
}

impl<A: core::fmt::Debug, const N: usize, const E: usize> core::fmt::Debug for Server<A, N, E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config)
            .field("state", &self.state)
            .field("peers", &self.peers.len())
            .field("timers", &self.timers.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "defmt")]
impl<A, const N: usize, const E: usize> defmt::Format for Server<A, N, E> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "Server {{ state: {}, peers: {} }}",
            self.state,
            self.peers.len()
        );
    }
}

impl<A: Copy + Eq + Hash, const N: usize, const E: usize> Server<A, N, E> {
    /// The next deadline in machine time (see `time::Clock`)
    fn next_deadline(&self) -> Option<Instant> {
        if self.state != ServerState::Running {
            return None;
        }
        if self.timers_lost {
            return Some(self.clock.now());
        }
        self.timers.peek().map(|e| e.at)
    }

    /// A running server without peers
    ///
    /// `N` must be a power of two greater than 1 (checked at compile time by the table).
    #[must_use]
    pub fn new(config: ServerConfig) -> Self {
        Server {
            peers: Table::new(PeerHashKey::new(
                KeyedBuildHasher::from_secret(&config.secret).key_bytes(),
            )),
            config,
            clock: Clock::new(),
            cold: [PeerCold::EMPTY; N],
            dirty: Deque::new(),
            replies: Deque::new(),
            closes: Deque::new(),
            events: Deque::new(),
            state: ServerState::Running,
            shutdown: Shutdown {
                tx: 0,
                ev: 0,
                end: 0,
            },
            shutdown_reason: ReasonText::new(),
            timers: BinaryHeap::new(),
            timers_lost: false,
            next_gen: 0,
            stats: ServerStats::default(),
        }
    }

    /// The state beside the table of slot `slot` (a slot number is always below `N`)
    #[inline]
    fn cold_mut(cold: &mut [PeerCold; N], slot: usize) -> &mut PeerCold {
        &mut cold[slot & (N - 1)]
    }

    /// The state beside the table of slot `slot`, read-only
    #[inline]
    fn cold(&self, slot: usize) -> &PeerCold {
        &self.cold[slot & (N - 1)]
    }

    /// Add a timer entry; on overflow the heap is rebuilt from the table on the next timer call
    fn push_timer(&mut self, entry: TimerEntry) {
        if self.timers.push(entry).is_err() {
            self.timers_lost = true;
        }
    }

    /// Replace the heap by one fresh entry per slot (drops stale entries); O(N log N)
    fn rebuild_timers(&mut self, now: Instant) {
        self.timers.clear();
        for (slot, _, hot) in self.peers.iter() {
            let cold = self.cold(slot);
            let entry = TimerEntry {
                at: timer_at(hot, cold, &self.config, now),
                gen: cold.gen,
                slot: slot as u32,
            };
            // capacity N >= number of slots: cannot fail
            let _ = self.timers.push(entry);
        }
        self.timers_lost = false;
    }

    /// Mark output bits on a slot and queue the peer for `poll_transmit`
    fn queue_out(dirty: &mut Deque<u32, N>, slot: usize, cold: &mut PeerCold, bits: u8) {
        cold.out |= bits;
        // A full queue only happens with stale entries of removed peers; the slot's next timer
        // entry re-queues it then.
        if !cold.queued && dirty.push_back(slot as u32).is_ok() {
            cold.queued = true;
        }
    }

    /// Kick a peer: remove it now, queue `CLOSE reason` (+ token, current ack) and emit
    /// [`PeerCloseCause::Kicked`] (only for an announced peer; a pending vanilla slot just goes)
    ///
    /// `reason` is cut to 127 bytes on a char boundary. DDNet sends e.g. `Kicked (<reason>)`.
    ///
    /// # Errors
    /// [`CommandError::UnknownPeer`], [`CommandError::CloseQueueFull`],
    /// [`CommandError::EventQueueFull`], [`CommandError::ShuttingDown`]; nothing changed.
    pub fn kick(&mut self, now: Instant, peer: A, reason: &str) -> Result<(), CommandError> {
        self.clock.update(now);
        if self.state != ServerState::Running {
            return Err(CommandError::ShuttingDown);
        }
        let slot = self.peers.find(&peer).ok_or(CommandError::UnknownPeer)?;
        let (_, &hot) = self.peers.get(slot).ok_or(CommandError::UnknownPeer)?;
        if self.closes.is_full() {
            return Err(CommandError::CloseQueueFull);
        }
        if hot.online() && self.events.is_full() {
            return Err(CommandError::EventQueueFull);
        }
        self.peers.remove(slot);
        let frame = CloseFrame {
            to: peer,
            token: hot.token(),
            ack: Self::cold_mut(&mut self.cold, slot).ack,
            reason: reason_text(reason),
        };
        // room checked above
        let _ = self.closes.push_back(frame);
        if hot.online() {
            let _ = self.events.push_back(ServerEvent::PeerClosed {
                peer,
                cause: PeerCloseCause::Kicked,
            });
        }
        Ok(())
    }

    /// Shut down: every peer gets `CLOSE reason` (+ token, its ack) from `poll_transmit`, then a
    /// [`PeerCloseCause::Shutdown`] event, then [`ServerEvent::ShutdownComplete`]
    ///
    /// Queued stateless replies and keep-alives are discarded; kick CLOSEs already queued are
    /// still sent. From now on all input is ignored and no timer runs. DDNet sends
    /// `Server shutdown`. Calling it again does nothing.
    pub fn shutdown(&mut self, now: Instant, reason: &str) {
        self.clock.update(now);
        if self.state != ServerState::Running {
            return;
        }
        self.state = ServerState::ShuttingDown;
        let end = self.peers.slot_limit();
        self.shutdown = Shutdown {
            tx: self.peers.next_live(0).unwrap_or(end),
            ev: 0,
            end,
        };
        self.shutdown_reason = reason_text(reason);
        self.replies.clear();
        self.dirty.clear();
        self.timers.clear();
        self.timers_lost = false;
    }

    /// Report the ack sent to `peer` from now on (its last in-order vital sequence); mod 1024
    ///
    /// # Errors
    /// [`CommandError::UnknownPeer`].
    pub fn set_ack(&mut self, peer: A, ack: u16) -> Result<(), CommandError> {
        let slot = self.peers.find(&peer).ok_or(CommandError::UnknownPeer)?;
        Self::cold_mut(&mut self.cold, slot).ack = ack % ACK_MODULO;
        Ok(())
    }

    /// Report the server's own last vital sequence number towards `peer` (upper end of the
    /// accepted incoming ack range); mod 1024
    ///
    /// # Errors
    /// [`CommandError::UnknownPeer`].
    pub fn set_sequence(&mut self, peer: A, sequence: u16) -> Result<(), CommandError> {
        let hot = self
            .peers
            .lookup_mut(&peer)
            .ok_or(CommandError::UnknownPeer)?;
        hot.set_sequence(sequence % ACK_MODULO);
        Ok(())
    }

    /// Write one chunk packet for `peer` straight into `out`: header (`flags`, the peer's ack,
    /// `num_chunks`), `payload`, then the peer's token (not when `flags.compression` is set: the
    /// caller puts the token inside the data before compressing)
    ///
    /// # Errors
    /// [`SendError::NotOnline`] (unknown or pending peer, or not running), [`SendError::TooLong`],
    /// [`SendError::BufferTooSmall`]; nothing written, no state changed.
    pub fn send_chunks(
        &mut self,
        now: Instant,
        peer: A,
        flags: Flags,
        num_chunks: u8,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<Transmit<A>, SendError> {
        let now = self.clock.update(now);
        if self.state != ServerState::Running {
            return Err(SendError::NotOnline);
        }
        let Some(slot) = self.peers.find(&peer) else {
            return Err(SendError::NotOnline);
        };
        let Some((_, &hot)) = self.peers.get(slot) else {
            return Err(SendError::NotOnline);
        };
        if !hot.online() {
            return Err(SendError::NotOnline);
        }
        let cold = Self::cold_mut(&mut self.cold, slot);
        let len = super::write_chunks(flags, cold.ack, num_chunks, payload, hot.token(), out)?;
        cold.last_send = now;
        cold.out &= !OUT_KEEP_ALIVE;
        self.stats.chunk_packets_sent = self.stats.chunk_packets_sent.wrapping_add(1);
        Ok(Transmit {
            to: peer,
            len,
            kind: FrameKind::Datagram,
        })
    }

    /// Where the server is
    #[must_use]
    pub fn state(&self) -> ServerState {
        self.state
    }

    /// Number of peers in the table (online and pending)
    #[must_use]
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// True when `peer` is in the table and online
    #[must_use]
    pub fn is_online(&self, peer: A) -> bool {
        self.peers.lookup(&peer).is_some_and(PeerHot::online)
    }

    /// The token of `peer`, if it is in the table and uses one
    #[must_use]
    pub fn peer_token(&self, peer: A) -> Option<Token> {
        self.peers.lookup(&peer).and_then(PeerHot::token)
    }

    /// The token this server mints for `peer` (what its CONNECT_ACCEPT carries)
    #[must_use]
    pub fn token_for(&self, peer: A) -> Token {
        mint(&self.config.secret, &peer)
    }

    /// The configuration
    #[must_use]
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Counters
    #[must_use]
    pub fn stats(&self) -> ServerStats {
        self.stats
    }

    fn queue_reply(&mut self, reply: Reply<A>) {
        if self.replies.push_back(reply).is_err() {
            self.stats.dropped_reply_queue_full =
                self.stats.dropped_reply_queue_full.wrapping_add(1);
        }
    }

    /// Admit `from` as a new slot; `false` when the table is full
    fn admit(
        &mut self,
        now: Instant,
        from: A,
        token: Option<Token>,
        online: bool,
        out: u8,
    ) -> bool {
        if self.peers.is_full() || self.peers.len() >= self.config.max_peers {
            self.stats.rejected_full = self.stats.rejected_full.wrapping_add(1);
            return false;
        }
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1);
        // a minted token is never a sentinel, so 00 00 00 00 can mean "vanilla" in the slot
        debug_assert!(
            token != Some(Token::UNSUPPORTED),
            "admitted with a sentinel token"
        );
        let hot = PeerHot::new(now, token, online);
        let Ok(slot) = self.peers.insert(from, hot) else {
            // not reachable (fullness checked above)
            self.stats.rejected_full = self.stats.rejected_full.wrapping_add(1);
            return false;
        };
        let cold = Self::cold_mut(&mut self.cold, slot);
        *cold = PeerCold::new(now, gen);
        if out != 0 {
            cold.out = out;
            if self.dirty.push_back(slot as u32).is_ok() {
                cold.queued = true;
            }
        }
        let at = timer_at(&hot, cold, &self.config, now);
        self.push_timer(TimerEntry {
            at,
            gen,
            slot: slot as u32,
        });
        if online {
            self.stats.peers_admitted = self.stats.peers_admitted.wrapping_add(1);
            // room was checked at the top of handle_input
            let _ = self
                .events
                .push_back(ServerEvent::PeerConnected { peer: from, token });
        }
        true
    }

    /// A datagram from an address without a slot: the stateless path
    fn handle_unknown(&mut self, now: Instant, from: A, data: &[u8]) {
        let parsed = match wire::parse(data, TokenMode::Detect) {
            Ok(p) => p,
            Err(_) => {
                self.stats.dropped_malformed = self.stats.dropped_malformed.wrapping_add(1);
                return;
            }
        };
        if !parsed.warnings.is_empty() {
            self.stats.warnings = self.stats.warnings.wrapping_add(1);
        }
        let Packet::Control(c) = parsed.packet else {
            self.stats.ignored_unsolicited = self.stats.ignored_unsolicited.wrapping_add(1);
            return;
        };
        match (c.control, c.token) {
            (Control::Connect, Some(_)) => {
                let token = mint(&self.config.secret, &from);
                let reply = ControlPacket {
                    ack: 0,
                    control: Control::ConnectAccept,
                    token: Some(token),
                };
                if reply.buffer_len() <= data.len() {
                    self.queue_reply(Reply::ConnectAccept {
                        to: from,
                        token: Some(token),
                    });
                }
            }
            (Control::Connect, None) => match self.config.vanilla {
                VanillaPolicy::Reject => {
                    self.stats.rejected_vanilla = self.stats.rejected_vanilla.wrapping_add(1);
                    self.queue_reply(Reply::Close { to: from });
                }
                policy => {
                    let online = policy == VanillaPolicy::Admit;
                    if !self.admit(now, from, None, online, OUT_CONNECT_ACCEPT) {
                        // a reason would amplify: the vanilla client proved nothing
                        self.queue_reply(Reply::Close { to: from });
                    }
                }
            },
            (Control::Accept, Some(token)) => {
                if token != mint(&self.config.secret, &from) {
                    self.stats.dropped_wrong_token = self.stats.dropped_wrong_token.wrapping_add(1);
                } else if !self.admit(now, from, Some(token), true, 0) {
                    // documented exception to amplification <= 1: the token proves the address
                    self.queue_reply(Reply::Full { to: from, token });
                }
            }
            _ => self.stats.ignored_unsolicited = self.stats.ignored_unsolicited.wrapping_add(1),
        }
    }

    /// A datagram from a peer in the table
    fn handle_known<'a>(
        &mut self,
        now: Instant,
        from: A,
        slot: usize,
        data: &'a [u8],
    ) -> Option<ChunkPacket<'a>> {
        let hot = self.peers.value_mut(slot)?;
        let mode = if hot.token != Token::UNSUPPORTED {
            TokenMode::Trailing
        } else {
            TokenMode::Vanilla
        };
        let parsed = match wire::parse(data, mode) {
            Ok(p) => p,
            Err(DecodeError::MissingToken) => {
                self.stats.dropped_wrong_token = self.stats.dropped_wrong_token.wrapping_add(1);
                return None;
            }
            Err(_) => {
                self.stats.dropped_malformed = self.stats.dropped_malformed.wrapping_add(1);
                return None;
            }
        };
        let (ack, token) = match &parsed.packet {
            Packet::Control(c) => (c.ack, c.token),
            // a compressed packet hides its token inside the data: passed through unverified
            Packet::Chunks(c) => (
                c.header.ack,
                if c.header.flags.compression {
                    hot.token()
                } else {
                    c.token
                },
            ),
        };
        if let Packet::Control(ControlPacket {
            control: Control::Connect,
            ..
        }) = parsed.packet
        {
            // CONNECT from an existing peer: answer CONNECT_ACCEPT again (DDNet form for token
            // peers), connection unchanged, no liveness refresh. DDNet does this for token
            // CONNECTs; for vanilla CONNECTs DDNet and 0.6.4 stay silent, which strands a
            // vanilla client whose first CONNECT_ACCEPT was lost, so we answer those too (4
            // bytes for 4 bytes). A token CONNECT ends with FF FF FF FF, not the token, so it is
            // recognised before the token check.
            let reply = ControlPacket {
                ack: 0,
                control: Control::ConnectAccept,
                token: hot.token(),
            };
            if reply.buffer_len() <= data.len() {
                let cold = Self::cold_mut(&mut self.cold, slot);
                Self::queue_out(&mut self.dirty, slot, cold, OUT_CONNECT_ACCEPT);
            }
            return None;
        }
        if token != hot.token() {
            self.stats.dropped_wrong_token = self.stats.dropped_wrong_token.wrapping_add(1);
            return None;
        }
        if !ack_in_range(ack, hot.peer_ack(), hot.sequence()) {
            self.stats.dropped_bad_ack = self.stats.dropped_bad_ack.wrapping_add(1);
            return None;
        }
        hot.set_peer_ack(ack);
        hot.last_recv = stamp(now);
        if !parsed.warnings.is_empty() {
            self.stats.warnings = self.stats.warnings.wrapping_add(1);
        }
        match parsed.packet {
            Packet::Control(c) => {
                match c.control {
                    Control::Close(reason) => {
                        let online = hot.online();
                        self.peers.remove(slot);
                        if online {
                            let cause = PeerCloseCause::PeerClosed {
                                reason: reason.to_text(),
                            };
                            // room was checked at the top of handle_input
                            let _ = self
                                .events
                                .push_back(ServerEvent::PeerClosed { peer: from, cause });
                        }
                    }
                    Control::KeepAlive => {
                        self.stats.keep_alives_received =
                            self.stats.keep_alives_received.wrapping_add(1);
                    }
                    // ACCEPT (also DDNet's "rejoin" form), CONNECT_ACCEPT: liveness only
                    _ => {}
                }
                None
            }
            Packet::Chunks(c) => {
                if !hot.online() {
                    // VanillaPolicy::Pending: the first chunk packet completes the connect
                    hot.set_online();
                    Self::cold_mut(&mut self.cold, slot).out &= !OUT_CONNECT_ACCEPT;
                    self.stats.peers_admitted = self.stats.peers_admitted.wrapping_add(1);
                    let _ = self.events.push_back(ServerEvent::PeerConnected {
                        peer: from,
                        token: None,
                    });
                    // The timer entry was set for the (shorter by default) resend interval, so it is
                    // not later than the first keep-alive deadline unless
                    // `connect_accept_resend > keep_alive` (then that keep-alive is late by at
                    // most the difference).
                }
                self.stats.chunk_packets_received =
                    self.stats.chunk_packets_received.wrapping_add(1);
                Some(c)
            }
        }
    }

    /// The next shutdown CLOSE, as (peer, frame)
    fn shutdown_frame(&self) -> Option<(A, ControlPacket<'_>)> {
        let (&peer, hot) = self.peers.get(self.shutdown.tx)?;
        let cold = self.cold(self.shutdown.tx);
        Some((
            peer,
            ControlPacket {
                ack: cold.ack,
                control: Control::Close(Reason::from_str(&self.shutdown_reason)),
                token: hot.token(),
            },
        ))
    }

    fn transmit_running(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<Transmit<A>>, BufferTooSmall> {
        if let Some(reply) = self.replies.front().copied() {
            let (to, packet) = match reply {
                Reply::ConnectAccept { to, token } => (
                    to,
                    ControlPacket {
                        ack: 0,
                        control: Control::ConnectAccept,
                        token,
                    },
                ),
                Reply::Close { to } => (
                    to,
                    ControlPacket {
                        ack: 0,
                        control: Control::Close(Reason::EMPTY),
                        token: None,
                    },
                ),
                Reply::Full { to, token } => (
                    to,
                    ControlPacket {
                        ack: 0,
                        control: Control::Close(Reason::from_str(SERVER_FULL_REASON)),
                        token: Some(token),
                    },
                ),
            };
            let len = packet.emit(buf)?;
            self.replies.pop_front();
            if let Reply::ConnectAccept { .. } = reply {
                self.stats.connect_accepts_sent = self.stats.connect_accepts_sent.wrapping_add(1);
            }
            return Ok(Some(Transmit {
                to,
                len,
                kind: FrameKind::Datagram,
            }));
        }
        // bounded: every iteration pops an entry or returns
        while let Some(&slot) = self.dirty.front() {
            let slot = slot as usize;
            let Some((&addr, hot)) = self.peers.get(slot) else {
                self.dirty.pop_front();
                continue;
            };
            let cold = Self::cold_mut(&mut self.cold, slot);
            let Some((packet, bit)) = next_frame(hot, cold) else {
                cold.queued = false;
                self.dirty.pop_front();
                continue;
            };
            let len = packet.emit(buf)?;
            cold.out &= !bit;
            cold.last_send = now;
            if cold.out == 0 {
                cold.queued = false;
                self.dirty.pop_front();
            }
            if bit == OUT_KEEP_ALIVE {
                self.stats.keep_alives_sent = self.stats.keep_alives_sent.wrapping_add(1);
            } else {
                self.stats.connect_accepts_sent = self.stats.connect_accepts_sent.wrapping_add(1);
            }
            return Ok(Some(Transmit {
                to: addr,
                len,
                kind: FrameKind::Datagram,
            }));
        }
        Ok(None)
    }
}

/// `reason` as owned text, cut to 127 bytes on a char boundary
fn reason_text(reason: &str) -> ReasonText {
    let mut text = ReasonText::new();
    // `Reason::from_str` cut it to MAX_REASON_LEN already, so it fits
    let _ = text.push_str(Reason::from_str(reason).as_str().unwrap_or(""));
    text
}

impl<A: Copy + Eq + Hash, const N: usize, const E: usize> Machine for Server<A, N, E> {
    type Peer = A;
    type Event = ServerEvent<A>;
    type App<'a> = ChunkPacket<'a>;
    type Error = InputError;

    /// Feed one datagram from `from`
    ///
    /// Always consumes the whole datagram, also when it is dropped (counted in
    /// [`Server::stats`]); chunk packets of online peers come back in [`Received::app`].
    ///
    /// # Errors
    /// [`InputError::EventQueueFull`]: nothing was consumed or changed; drain `poll_event`.
    fn handle_input<'a>(
        &mut self,
        now: Instant,
        from: A,
        data: &'a [u8],
    ) -> Result<Received<ChunkPacket<'a>>, InputError> {
        let now = self.clock.update(now);
        let n = data.len();
        if self.state != ServerState::Running {
            self.stats.ignored_stopped = self.stats.ignored_stopped.wrapping_add(1);
            return Ok(Received::consumed(n));
        }
        if self.events.is_full() {
            return Err(InputError::EventQueueFull);
        }
        // one table lookup per datagram; the entry is then reached by its slot
        if let Some(slot) = self.peers.find(&from) {
            Ok(match self.handle_known(now, from, slot, data) {
                Some(app) => Received::with_app(n, app),
                None => Received::consumed(n),
            })
        } else {
            self.handle_unknown(now, from, data);
            Ok(Received::consumed(n))
        }
    }

    /// Let peer timers fire: keep-alives, pending CONNECT_ACCEPT resends and timeouts
    ///
    /// Pops the due entries of the timer heap: O(k log N) for k due entries (plus one table
    /// lookup each); a call before [`Server::poll_timeout`] does nothing.
    fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock.update(now);
        if self.state != ServerState::Running {
            return;
        }
        if self.timers_lost {
            self.rebuild_timers(now);
        }
        let config = self.config;
        // every entry is looked at most once per call: bounded work even for zero intervals
        let mut budget = self.timers.len();
        while budget > 0 {
            budget -= 1;
            match self.timers.peek() {
                Some(top) if top.at <= now => {}
                _ => break,
            }
            let Some(entry) = self.timers.pop() else {
                break;
            };
            let slot = entry.slot as usize;
            let Some((&addr, hot)) = self.peers.get_mut(slot) else {
                continue; // stale: the slot is free
            };
            let cold = Self::cold_mut(&mut self.cold, slot);
            if cold.gen != entry.gen {
                continue; // stale: an earlier occupant of the slot
            }
            if now >= hot.last_recv(now) + config.timeout {
                if hot.online() {
                    let event = ServerEvent::PeerClosed {
                        peer: addr,
                        cause: PeerCloseCause::Timeout,
                    };
                    if self.events.push_back(event).is_err() {
                        // event queue full: keep the peer and its overdue entry (just popped,
                        // so the push succeeds); the next call after poll_event retries
                        self.push_timer(entry);
                        break;
                    }
                    self.stats.peers_timed_out = self.stats.peers_timed_out.wrapping_add(1);
                } else {
                    self.stats.pending_timed_out = self.stats.pending_timed_out.wrapping_add(1);
                }
                self.peers.remove(slot);
                continue;
            }
            if cold.out == 0 {
                if now >= cold.last_send + hot.send_interval(&config) {
                    let bit = if hot.online() {
                        OUT_KEEP_ALIVE
                    } else {
                        OUT_CONNECT_ACCEPT
                    };
                    Self::queue_out(&mut self.dirty, slot, cold, bit);
                }
            } else if !cold.queued && self.dirty.push_back(entry.slot).is_ok() {
                // its earlier queueing failed (stale entries filled the queue): retry
                cold.queued = true;
            }
            let at = timer_at(hot, cold, &config, now);
            self.push_timer(TimerEntry { at, ..entry });
        }
    }

    /// Write the next frame into `buf`: stateless replies first, then kick CLOSEs, then per-peer
    /// frames (CONNECT_ACCEPT, KEEP_ALIVE); during shutdown the CLOSE to each peer
    fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<Transmit<A>>, BufferTooSmall> {
        let now = self.clock.update(now);
        if let Some(frame) = self.closes.front() {
            let packet = ControlPacket {
                ack: frame.ack,
                control: Control::Close(Reason::from_str(&frame.reason)),
                token: frame.token,
            };
            let to = frame.to;
            let len = packet.emit(buf)?;
            self.closes.pop_front();
            return Ok(Some(Transmit {
                to,
                len,
                kind: FrameKind::Datagram,
            }));
        }
        match self.state {
            ServerState::Running => self.transmit_running(now, buf),
            ServerState::ShuttingDown => {
                let Some((to, packet)) = self.shutdown_frame() else {
                    return Ok(None);
                };
                let len = packet.emit(buf)?;
                self.shutdown.tx = self
                    .peers
                    .next_live(self.shutdown.tx.saturating_add(1))
                    .unwrap_or(self.shutdown.end);
                Ok(Some(Transmit {
                    to,
                    len,
                    kind: FrameKind::Datagram,
                }))
            }
            ServerState::Stopped => Ok(None),
        }
    }

    fn poll_event(&mut self) -> Option<ServerEvent<A>> {
        if let Some(event) = self.events.pop_front() {
            return Some(event);
        }
        if self.state != ServerState::ShuttingDown {
            return None;
        }
        // Shutdown: one PeerClosed per announced peer whose CLOSE went out, then completion.
        while self.shutdown.ev < self.shutdown.tx {
            let entry = self.peers.get(self.shutdown.ev);
            self.shutdown.ev = self.shutdown.ev.saturating_add(1);
            if let Some((&peer, hot)) = entry {
                if hot.online() {
                    return Some(ServerEvent::PeerClosed {
                        peer,
                        cause: PeerCloseCause::Shutdown,
                    });
                }
            }
        }
        if self.shutdown.ev >= self.shutdown.end {
            self.peers.clear();
            self.state = ServerState::Stopped;
            return Some(ServerEvent::ShutdownComplete);
        }
        None
    }

    /// The earliest entry of the timer heap (O(1)); `None` without peers or when not running
    ///
    /// May be earlier than any real deadline (entries fire early after liveness refreshes and
    /// linger after a peer is removed); such a wake-up does no more than re-file the entry.
    fn poll_timeout(&self) -> Option<Instant> {
        self.next_deadline().map(|t| self.clock.to_caller(t))
    }
}

#[cfg(test)]
mod tests;
