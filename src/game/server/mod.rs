//! The game server: stateless DDNet token handshake, vanilla policy, keep-alive, timeout, close
//! and shutdown for up to `PEERS` peers
//!
//! The public description (admission, amplification, timers, memory) is on [`Server`]. Inside:
//! the peer table (`table`: index and dense slots), the per-peer state (`peer`) and the
//! timer heap (`timers`).

use core::hash::Hash;

use super::chunk::Chunk;
use super::connless::{ConnlessPacket, InfoContent, InfoRequest};
use super::error::Error;
use super::event::{CloseCause, ServerApp, ServerEvent};
use super::layer::{
    self, imp::Imp, ChunkConfig, ControlOnly, Dropped, Layer, Marks, Outcome, Pkt, Reliable,
    SMALL_LEN,
};
use super::token::{mint, table_key, TokenSecret};
use super::vital::VitalStats;
use super::wire::{
    self, Control, ControlId, ControlPacket, Flags, Packet, Reason, Token, TokenMode, Warnings,
    ACK_HIGH_MASK, ACK_MODULO, FLAG_COMPRESSION, FLAG_CONNLESS, FLAG_CONTROL, HEADER_LEN,
};

/// The id byte of a KEEP_ALIVE
const KEEP_ALIVE_ID: u8 = ControlId::KeepAlive as u8;
use super::{count, local_reason, LocalReason, MIN_DELAY};
use crate::config::{at_least_one, config_fmt, getters, setters};
use crate::io::{BufferTooSmall, FrameKind, PeerText, Received, Transmit};
use crate::time::{clamp_micros, duration_from_micros, Clock, Duration, Instant};
use peer::{next_frame, stamp, PeerCold, PeerHot, OUT_CHUNKS, OUT_CONNECT_ACCEPT, OUT_KEEP_ALIVE};
use queue::Queue;
use table::{PeerHashKey, Table};
use timers::{timer_at, TimerEntry, Timers};

mod peer;
mod queue;
mod table;
#[cfg(test)]
mod tests;
mod timers;

/// Capacity of the [`Server`]'s queue of stateless replies (CONNECT_ACCEPT, refusal CLOSE) to
/// addresses without a slot; requests beyond it are dropped and counted
pub const STATELESS_QUEUE_LEN: usize = 16;
/// Capacity of the [`Server`]'s queue of CLOSE frames for peers closed with [`Server::close`]
pub const CLOSE_QUEUE_LEN: usize = 4;
/// The reason sent to a token client whose ACCEPT arrives while the [`Server`]'s table is full
/// (DDNet's text)
pub const SERVER_FULL_REASON: &str = "This server is full";

/// What the [`Server`] does with a vanilla CONNECT (one without the DDNet `TKEN` extension)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
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
    /// [`ServerConfig::connect_accept_resend`], go online (event `Connected`) on the first chunk
    /// packet; a pending slot times out after [`ServerConfig::timeout`] without an event. The
    /// resends make one spoofed 4-byte CONNECT cost up to `timeout / resend` 4-byte replies.
    Pending,
}

/// Settings of a [`Server`]
///
/// There is no `Default`: the token secret must be given, and it **must come from a random
/// source** (the OS's random generator, a hardware RNG) at start-up. Tokens and the peer-table
/// hash key are derived from it; with a known or guessable secret anyone can compute valid
/// tokens for spoofed addresses offline. Every interval and timeout is clamped into
/// `[1 ms, 30 days]` ([`MAX_DELAY`]) and kept in whole microseconds, the unit of
/// [`Instant`](crate::Instant): a getter gives back what its setter took without the part below
/// a microsecond.
///
/// ```
/// use core::time::Duration;
/// use tether_net::game::{ServerConfig, TokenSecret, VanillaPolicy};
/// # let random_bytes = [9u8; 16];
/// let config = ServerConfig::new(TokenSecret(random_bytes))
///     .with_vanilla(VanillaPolicy::Admit)
///     .with_timeout(Duration::from_secs(30))
///     .with_max_peers(0); // clamped to 1
/// assert_eq!(config.max_peers(), 1);
/// ```
///
/// [`MAX_DELAY`]: crate::time::MAX_DELAY
#[derive(Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerConfig {
    secret: TokenSecret,
    vanilla: VanillaPolicy,
    // every delay in whole microseconds, at most MAX_DELAY (2.6e12 µs): the peer timers add them
    // to an `Instant` without a `Duration` conversion
    keep_alive: u64,
    timeout: u64,
    connect_accept_resend: u64,
    max_peers: usize,
    info_per_second: u32,
    info_replies_per_second: u32,
}

impl ServerConfig {
    /// The defaults with this `secret` (from a random source): vanilla CONNECTs rejected,
    /// keep-alive 1 s, timeout 10 s, pending CONNECT_ACCEPT resent every 500 ms, up to `PEERS`
    /// peers, server-info requests: 50 a second answered with the client list, 500 at all
    #[must_use]
    pub const fn new(secret: TokenSecret) -> Self {
        ServerConfig {
            secret,
            vanilla: VanillaPolicy::Reject,
            keep_alive: 1_000_000,
            timeout: 10_000_000,
            connect_accept_resend: 500_000,
            max_peers: usize::MAX,
            info_per_second: 50,
            info_replies_per_second: 500,
        }
    }

    setters! {
        /// Server-info requests per second (a window of 1 s) handed to the application as
        /// [`ServerApp::InfoRequest`] with the client list allowed; later ones in the window get the
        /// answer without the list, which is little larger than the request (DDNet 16.4's
        /// `sv_server_info_per_second`, default 50). Clamped to at most
        /// [`ServerConfig::info_replies_per_second`].
        fn with_info_per_second(n: u32) { info_per_second = n }

        /// Server-info requests per second answered at all; more are dropped and counted
        /// ([`ServerStats::dropped_info_flood`]). Default 500 (newer DDNet's
        /// `sv_server_info_replies_per_second`); 0 answers none.
        fn with_info_replies_per_second(n: u32) { info_replies_per_second = n }
    }

    /// Server-info requests per second answered with the client list
    #[must_use]
    pub const fn info_per_second(&self) -> u32 {
        if self.info_per_second > self.info_replies_per_second {
            self.info_replies_per_second
        } else {
            self.info_per_second
        }
    }

    /// Server-info requests per second answered at all
    #[must_use]
    pub const fn info_replies_per_second(&self) -> u32 {
        self.info_replies_per_second
    }

    setters! {
        /// Policy for vanilla CONNECTs. Default: [`VanillaPolicy::Reject`].
        fn with_vanilla(policy: VanillaPolicy) { vanilla = policy }

        /// Send a KEEP_ALIVE to an online peer when nothing was sent to it for this long, clamped
        /// into `[1 ms, 30 days]`. Default: 1 s, what DDNet and vanilla servers do.
        fn with_keep_alive(interval: Duration) { keep_alive = clamp_micros(interval, MIN_DELAY) }

        /// A peer times out ([`CloseCause::Timeout`], no CLOSE sent) when nothing valid arrived from
        /// it for this long, clamped into `[1 ms, 30 days]`. Default: 10 s (vanilla 0.6.4; DDNet's
        /// `conn_timeout` defaults to 100 s).
        fn with_timeout(timeout: Duration) { timeout = clamp_micros(timeout, MIN_DELAY) }

        /// CONNECT_ACCEPT resend interval for [`VanillaPolicy::Pending`] slots, clamped into
        /// `[1 ms, 30 days]`. Default: 500 ms.
        fn with_connect_accept_resend(interval: Duration) { connect_accept_resend = clamp_micros(interval, MIN_DELAY) }

        /// Admit at most this many peers (online and pending), at least 1; the server clamps it to
        /// its `PEERS` too. Default: `PEERS`. The peer table has `2 × PEERS` buckets, so it is at
        /// most half full whatever `max_peers` is: lookups stay short.
        fn with_max_peers(max_peers: usize) { max_peers = at_least_one(max_peers) }
    }

    /// The token secret
    #[must_use]
    pub const fn secret(&self) -> &TokenSecret {
        &self.secret
    }

    getters! {
        /// Policy for vanilla CONNECTs
        fn vanilla() -> VanillaPolicy;
        /// Keep-alive interval
        fn keep_alive() -> Duration = duration_from_micros;
        /// Peer timeout
        fn timeout() -> Duration = duration_from_micros;
        /// CONNECT_ACCEPT resend interval of pending vanilla slots
        fn connect_accept_resend() -> Duration = duration_from_micros;
        /// Most peers admitted; `usize::MAX` until a server clamped it to its `PEERS`
        /// ([`Server::config`] shows the clamped value)
        fn max_peers() -> usize;
    }
}

config_fmt!(ServerConfig, c => {
    secret: c.secret,
    vanilla: c.vanilla,
    keep_alive: c.keep_alive(),
    timeout: c.timeout(),
    connect_accept_resend: c.connect_accept_resend(),
    max_peers: c.max_peers,
    info_per_second: c.info_per_second,
    info_replies_per_second: c.info_replies_per_second,
});

/// Counters of a [`Server`]; they only grow (saturating)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct ServerStats {
    /// Packets dropped because their token was wrong or missing (known peers and ACCEPTs)
    pub dropped_wrong_token: u64,
    /// Packets from known peers dropped because their ack was out of range
    /// ([`wire::ack_in_range`])
    pub dropped_bad_ack: u64,
    /// Datagrams that did not parse as a 0.6 packet
    pub dropped_malformed: u64,
    /// Requests from unknown addresses dropped because the stateless reply queue was full
    pub dropped_reply_queue_full: u64,
    /// Packets from unknown addresses that need no answer (KEEP_ALIVE, CLOSE, chunks, ...)
    pub ignored_unsolicited: u64,
    /// Datagrams fed during or after shutdown (ignored)
    pub ignored_stopped: u64,
    /// Accepted packets that carried decoder [`Warnings`](super::wire::Warnings)
    pub warnings: u64,
    /// CONNECT_ACCEPT packets sent (stateless, re-answers and pending resends)
    pub connect_accepts_sent: u64,
    /// KEEP_ALIVE packets sent
    pub keep_alives_sent: u64,
    /// KEEP_ALIVE packets received (and accepted)
    pub keep_alives_received: u64,
    /// Peers admitted ([`ServerEvent::Connected`] events)
    pub peers_admitted: u64,
    /// Admitted peers that timed out
    pub peers_timed_out: u64,
    /// Pending vanilla slots that timed out before their first chunk packet
    pub pending_timed_out: u64,
    /// Admissions refused because the table was full
    pub rejected_full: u64,
    /// Vanilla CONNECTs refused by [`VanillaPolicy::Reject`]
    pub rejected_vanilla: u64,
    /// Chunk packets written by [`Server::send_chunks`]
    pub chunk_packets_sent: u64,
    /// Chunk packets delivered as [`ServerApp::Chunks`] or [`ServerApp::ChunksReady`]
    pub chunk_packets_received: u64,
    /// Repeated ACCEPTs of online peers that reset their connection ([`ServerEvent::Rejoined`])
    pub rejoins: u64,
    /// Peers closed because their connection was too weak ([`CloseCause::TooWeak`])
    pub peers_too_weak: u64,
    /// Chunk packets whose chunks ran past the end of the packet (the rest was dropped)
    pub malformed_chunks: u64,
    /// Server-info requests received (connectionless)
    pub info_requests: u64,
    /// Server-info answers written by [`Server::answer_info`] with the client list
    pub info_answers_full: u64,
    /// Server-info answers written without the client list (rate limit)
    pub info_answers_short: u64,
    /// Server-info requests dropped: more than
    /// [`ServerConfig::info_replies_per_second`] in one second
    pub dropped_info_flood: u64,
    /// Other connectionless datagrams (not a server-info request), dropped
    pub dropped_connless: u64,
}

/// The [`Server`]'s own lifecycle
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ServerState {
    /// Accepting peers
    Running,
    /// [`Server::shutdown`] was called; CLOSEs and `Closed` events are being handed out
    ShuttingDown,
    /// Shutdown finished ([`ServerEvent::ShutdownComplete`] was emitted); all input is ignored
    Stopped,
}

type PeerTable<P, const PEERS: usize> = Table<P, PeerHot, PeerHashKey, PEERS>;

/// Where an input's sender is in the peer table: looked up already, or a slot that held its
/// key a moment ago (checked before use) or nothing, then probed
#[derive(Debug, Clone, Copy)]
enum Lookup {
    /// The result of a lookup done for this datagram
    Done(Option<usize>),
    /// Probe, unless the hinted slot holds the sender's key
    Hint(Option<usize>),
}

/// A reply to an address without state
#[derive(Debug, Clone, Copy)]
enum Reply<P> {
    /// CONNECT_ACCEPT (DDNet form when `token` is `Some`), ack 0
    ConnectAccept { to: P, token: Option<Token> },
    /// Bare CLOSE, ack 0
    Close { to: P },
    /// `CLOSE "This server is full"` + token, ack 0
    Full { to: P, token: Token },
}

/// A CLOSE with a reason for a peer already removed from the table
#[derive(Debug, Clone)]
struct CloseFrame<P> {
    to: P,
    token: Option<Token>,
    ack: u16,
    reason: LocalReason,
}

/// Progress of a shutdown over the peer table (slot numbers)
#[derive(Debug, Clone, Copy)]
struct Shutdown {
    /// Next slot to send CLOSE to
    tx: usize,
    /// Next slot to emit `Closed` for (always `<= tx`)
    ev: usize,
    /// One past the last slot handed out (no slot is added or freed while shutting down)
    end: usize,
}

/// A sans-IO Teeworlds 0.6 / DDNet game server for up to `PEERS` peers (default 64; a power of
/// two, at most 2^30, checked at compile time), with an event queue of `EVENTS` entries (default
/// 16); `P` is the caller's peer key (a socket address, an `(ip, port)` tuple, ...)
///
/// Drive it with the crate's run loop: one input ([`Server::handle_input`],
/// [`Server::handle_timeout`] or a command), then hand out every frame and event
/// ([`drain`](crate::drain) does it), then sleep until [`Server::poll_timeout`]. Tokens are
/// minted from the whole key `P`: pass the IP alone as part of the key's hash if all ports of a
/// host should share one (DDNet's choice), or the full address.
///
/// # Admission (DDNet flavour)
///
/// A token CONNECT (`01 "TKEN" FF FF FF FF`) from an unknown address is answered statelessly with
/// `CONNECT_ACCEPT | "TKEN" | token`, ack 0, where the token is a keyed hash (SipHash-2-4) of the
/// peer key under the [`ServerConfig`]'s secret ([`Server::token_for`]); nothing is stored. Only
/// an ACCEPT carrying that token creates a peer (event [`ServerEvent::Connected`]), so a peer
/// exists only for addresses that proved they receive our packets.
///
/// **Amplification.** Before admission no reply is larger than the request it answers: a token
/// CONNECT is at least 12 bytes and its CONNECT_ACCEPT 12 bytes; the vanilla replies (bare
/// CONNECT_ACCEPT, bare CLOSE) are 4 bytes for a request of at least 4. Pending stateless replies
/// wait in a bounded queue of [`STATELESS_QUEUE_LEN`]; when it is full the request is dropped and
/// counted ([`ServerStats::dropped_reply_queue_full`]). **The one exception**: when the table is
/// full, a valid token ACCEPT (8 bytes) is answered with `CLOSE "This server is full"` + token
/// (28 bytes), as DDNet does: the echoed token proves the sender owns its address, so the reply
/// cannot be aimed at a third party. A vanilla CONNECT to a full server gets a bare CLOSE.
///
/// # Vanilla clients
///
/// A CONNECT without `TKEN` is handled according to [`ServerConfig::vanilla`] ([`VanillaPolicy`]).
///
/// # Existing peers
///
/// A packet from a known peer is checked like DDNet checks it: its token (token peers: the last
/// 4 bytes; dropped and counted when wrong), then its ack ([`wire::ack_in_range`]; dropped and
/// counted when out of range), then dispatched. A CONNECT from a known peer is answered again
/// with its CONNECT_ACCEPT, the connection unchanged (DDNet does so for token CONNECTs; for
/// vanilla ones it stays silent, which strands a vanilla client whose CONNECT_ACCEPT was lost:
/// we answer). KEEP_ALIVE and every other accepted packet refresh the peer's liveness; CLOSE
/// removes the peer (its reason comes back as [`ServerApp::Close`], the event is `Closed` with
/// [`CloseCause::Peer`]; nothing is sent back); chunk packets come back borrowed as
/// [`ServerApp::Chunks`] (the peer is the `from` the caller passed).
///
/// Like the [`Client`](super::Client), the server does no vital-chunk sequencing: each peer's ack
/// is what the application reports with [`Server::set_ack`] (0 until then) and its sequence what
/// it reports with [`Server::set_sequence`].
///
/// A compressed packet has its token checked after decoding (in passing with [`ControlOnly`],
/// into the receive buffer with [`Reliable`]); a compressed control packet (vanilla 0.6.4)
/// is read on a token-less connection. Without the feature `control-huffman` (on by default)
/// the [`ControlOnly`] server drops compressed packets and both layers drop compressed control
/// packets ([`ServerStats::dropped_malformed`]).
///
/// # Timers and their cost
///
/// Per peer: KEEP_ALIVE when nothing was sent for [`ServerConfig::keep_alive`], timeout (no CLOSE
/// sent) when nothing valid arrived for [`ServerConfig::timeout`], and for
/// [`VanillaPolicy::Pending`] slots a CONNECT_ACCEPT resend every
/// [`ServerConfig::connect_accept_resend`]. Each peer has one entry in a bounded min-heap of
/// timer entries: [`Server::poll_timeout`] is O(1) (the heap's top) and
/// [`Server::handle_timeout`] pops only the due entries, O(log PEERS) each plus one table lookup;
/// no pass over all peers. Entries are never updated in place: a refresh only moves a peer's
/// deadlines later, so an entry may wake the caller early and is then re-filed; entries of
/// removed peers are recognised and dropped. If churn leaves more stale entries than the heap
/// holds, the heap is rebuilt from the table once (O(PEERS log PEERS)).
///
/// # Peer table
///
/// Peers live in `PEERS` dense slots found through an open-addressing index of `2 × PEERS` 32-bit
/// buckets: the load factor never exceeds 50 %, so a lookup is O(1) and short at any size, and
/// deletion shifts buckets back instead of leaving tombstones, so churn does not slow it down. A
/// bucket holds the slot number and a tag of the key's hash, so a datagram from a known peer
/// reads one bucket and one slot. The slot holds the key and the 12 bytes every datagram needs
/// (last receive time as a 32-bit millisecond stamp, token, ack, sequence, online flag); what
/// only timers and sends need (last send time, the ack we send, queued output, admission number)
/// sits in an array beside it. Receive times are kept at 1 ms resolution, rounded up: a timeout
/// fires up to 1 ms after the exact deadline (exactly on it for whole-millisecond times). The
/// index is placed by a cheap keyed hash (a folded multiply per word of `P`'s `Hash` stream)
/// whose key is derived from the secret, so that clients cannot pick colliding addresses;
/// SipHash is only used to mint tokens (stateless CONNECT and ACCEPT), never per datagram of a
/// known peer, whose token is compared with the one stored in its slot.
///
/// Memory grows linearly with `PEERS`. Per peer of capacity: two index buckets (8 bytes), one
/// slot (`P` and 12 bytes of state: 16 bytes for `u32`, 20 for `([u8; 4], u16)`), a free-list
/// entry (4), 12 bytes beside the table, a timer-heap entry (16) and a transmit-queue entry
/// (4), plus a fixed part: 60 bytes per peer for `u32`, 64 for `([u8; 4], u16)` (3.9 MB for
/// `Server<u32, 65536>`: build large servers in a `Box` or a `static`). With 65,536 peers the
/// index and the slots (all a KEEP_ALIVE touches) are 1.5 MiB.
///
/// Time comes from the caller and must be monotonic; a step back is taken as no time passing
/// (see [`time`](crate::time)).
///
/// ```
/// use tether_net::game::{Server, ServerConfig, TokenSecret};
/// use tether_net::Instant;
///
/// # let random_bytes = [9u8; 16];
/// // default capacities (64 peers, 16 events); the key type comes from use
/// let mut server = Server::new(ServerConfig::new(TokenSecret(random_bytes)));
/// let _ = server.handle_input(Instant::ZERO, 42u32, b"\x10\x00\x00\x01TKEN\xff\xff\xff\xff");
/// let mut buf = [0u8; 1400];
/// let t = server.poll_transmit(Instant::ZERO, &mut buf).unwrap().unwrap();
/// assert_eq!((t.to, &buf[..8]), (42, &b"\x10\x00\x00\x02TKEN"[..]));
/// // other capacities
/// let config = ServerConfig::new(TokenSecret(random_bytes));
/// let big: Box<Server<u32, 4096, 64>> = Box::new(Server::with_capacities(config));
/// # let _ = big;
/// ```
pub struct Server<P, const PEERS: usize = 64, const EVENTS: usize = 16, L: Layer = ControlOnly> {
    config: ServerConfig,
    clock: Clock,
    peers: PeerTable<P, PEERS>,
    /// Per-slot state beside the table (see [`PeerCold`])
    cold: [PeerCold; PEERS],
    /// Slots of peers with `out` bits set (each at most once while `queued`)
    dirty: Queue<u32, PEERS>,
    replies: Queue<Reply<P>, STATELESS_QUEUE_LEN>,
    closes: Queue<CloseFrame<P>, CLOSE_QUEUE_LEN>,
    events: Queue<ServerEvent<P>, EVENTS>,
    state: ServerState,
    shutdown: Shutdown,
    shutdown_reason: LocalReason,
    /// Per-slot timer entries (plus stale ones, see [`TimerEntry`])
    timers: Timers<PEERS>,
    /// Next admission number
    next_gen: u32,
    stats: ServerStats,
    /// Start of the current one-second window of server-info requests, and its request count
    info_window: Instant,
    info_count: u32,
    /// The server-info request of the last input, if it was one within the rate limit: (from,
    /// request, client list allowed); answered by `answer_info`
    info_pending: Option<(P, InfoRequest, bool)>,
    /// Per-slot chunk-layer state (nothing for [`ControlOnly`])
    layer_peers: [<L as Imp>::Peer; PEERS],
    /// Chunk-layer state shared by the peers (nothing for [`ControlOnly`])
    layer: <L as Imp>::Shared,
}

impl<P: core::fmt::Debug, const PEERS: usize, const EVENTS: usize, L: Layer> core::fmt::Debug
    for Server<P, PEERS, EVENTS, L>
{
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
impl<P, const PEERS: usize, const EVENTS: usize, L: Layer> defmt::Format
    for Server<P, PEERS, EVENTS, L>
{
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "Server {{ state: {}, peers: {} }}",
            self.state,
            self.peers.len()
        );
    }
}

impl<P: Copy + Eq + Hash> Server<P> {
    /// A running control-only server without peers, with the default capacities: 64 peers, 16
    /// events
    ///
    /// For other capacities use [`Server::with_capacities`], for the chunk layer
    /// [`Server::with_chunks`].
    #[must_use]
    pub fn new(config: ServerConfig) -> Self {
        Self::with_capacities(config)
    }
}

impl<P: Copy + Eq + Hash, const PEERS: usize, const EVENTS: usize> Server<P, PEERS, EVENTS> {
    /// A running control-only server without peers for up to `PEERS` peers (a power of two, at
    /// least 2, at most 2^30) with an event queue of `EVENTS` entries (at least 1); both checked
    /// at compile time. `config`'s `max_peers` is clamped to `PEERS`.
    #[must_use]
    pub fn with_capacities(config: ServerConfig) -> Self {
        Self::build(config, ChunkConfig::new())
    }

    /// Report the ack sent to `peer` from now on (its last in-order vital sequence); mod 1024
    ///
    /// # Errors
    /// [`Error::UnknownPeer`].
    pub fn set_ack(&mut self, peer: P, ack: u16) -> Result<(), Error> {
        let slot = self.peers.find(&peer).ok_or(Error::UnknownPeer)?;
        Self::cold_mut(&mut self.cold, slot).ack = ack % ACK_MODULO;
        Ok(())
    }

    /// Report the server's own last vital sequence number towards `peer` (upper end of the
    /// accepted incoming ack range); mod 1024
    ///
    /// # Errors
    /// [`Error::UnknownPeer`].
    pub fn set_sequence(&mut self, peer: P, sequence: u16) -> Result<(), Error> {
        let hot = self.peers.lookup_mut(&peer).ok_or(Error::UnknownPeer)?;
        hot.set_sequence(sequence % ACK_MODULO);
        Ok(())
    }

    /// Write one chunk packet for `peer` straight into `out`: header (`flags`, the peer's ack,
    /// `num_chunks`), `payload`, then the peer's token (not when `flags.compression` is set: the
    /// caller puts the token inside the data before compressing)
    ///
    /// # Errors
    /// [`Error::Closed`] (shutting down or stopped), [`Error::UnknownPeer`], [`Error::NotOpen`]
    /// (a pending vanilla slot), [`Error::TooLong`], [`Error::BufferTooSmall`]; nothing written,
    /// no state changed.
    pub fn send_chunks(
        &mut self,
        now: Instant,
        peer: P,
        flags: Flags,
        num_chunks: u8,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<Transmit<P>, Error> {
        let (slot, hot) = self.open_peer(peer)?;
        let cold = Self::cold_mut(&mut self.cold, slot);
        let len = super::write_chunks(flags, cold.ack, num_chunks, payload, hot.token(), out)?;
        cold.sent(self.clock.update(now));
        cold.out &= !OUT_KEEP_ALIVE;
        count(&mut self.stats.chunk_packets_sent);
        Ok(Transmit {
            to: peer,
            len,
            kind: FrameKind::Datagram,
        })
    }
}

impl<
        P: Copy + Eq + Hash,
        const PEERS: usize,
        const EVENTS: usize,
        const SB: usize,
        const SN: usize,
        const RB: usize,
        const RN: usize,
    > Server<P, PEERS, EVENTS, Reliable<SB, SN, RB, RN>>
{
    /// A running server with the chunk layer, without peers: a vital channel per peer slot with
    /// the capacities of [`Reliable`], one receive and one construct buffer shared by all peers
    ///
    /// The peers' channels are part of the server (`PEERS × ` the channel's size): build a large
    /// one in a `Box` or a `static`.
    ///
    /// ```
    /// use tether_net::game::{ChunkConfig, Reliable, Server, ServerConfig, TokenSecret};
    /// # let random_bytes = [9u8; 16];
    /// let server: Box<Server<u32, 4, 16, Reliable<16384, 64, 2048, 16>>> =
    ///     Box::new(Server::with_chunks(ServerConfig::new(TokenSecret(random_bytes)), ChunkConfig::new()));
    /// # let _ = server;
    /// ```
    #[must_use]
    pub fn with_chunks(config: ServerConfig, chunks: ChunkConfig) -> Self {
        Self::build(config, chunks)
    }

    /// Queue a vital chunk for `peer`: copied into its resend buffer with its next sequence
    /// number, which is returned; it goes out from `poll_transmit`, at once with `flush`, else
    /// with the next packet to the peer or after the flush timeout (DDNet flushes MAP_CHANGE,
    /// MAP_DATA, CON_READY, Sv_ReadyToEnter and every snapshot)
    ///
    /// # Errors
    /// [`Error::Closed`] (shutting down or stopped), [`Error::UnknownPeer`], [`Error::NotOpen`]
    /// (a pending vanilla slot), [`Error::TooLong`] (more than 1023 bytes),
    /// [`Error::TooManyInFlight`] (its resend buffer is full until it acks); nothing was queued.
    pub fn send_vital(
        &mut self,
        now: Instant,
        peer: P,
        data: &[u8],
        flush: bool,
    ) -> Result<u16, Error> {
        let (slot, _) = self.open_peer(peer)?;
        let now = self.clock.update(now);
        let seq = self.layer_peers[slot & (PEERS - 1)]
            .vital
            .queue(now, data, flush)
            .map_err(layer::queue_error)?;
        self.reschedule(slot, now);
        Ok(seq)
    }

    /// Write a chunk packet for `peer` into `out` now: this non-vital chunk (never acked or
    /// resent; DDNet sends snapshots this way), then every vital chunk queued for the peer that
    /// fits
    ///
    /// `out` must hold [`MAX_PACKET_LEN`](super::wire::MAX_PACKET_LEN) bytes.
    ///
    /// # Errors
    /// [`Error::Closed`], [`Error::UnknownPeer`], [`Error::NotOpen`], [`Error::TooLong`] (more
    /// than 1023 bytes), [`Error::BufferTooSmall`]; nothing was written and no state changed.
    pub fn send_non_vital(
        &mut self,
        now: Instant,
        peer: P,
        data: &[u8],
        out: &mut [u8],
    ) -> Result<Transmit<P>, Error> {
        let (slot, hot) = self.open_peer(peer)?;
        layer::check_non_vital(data, out)?;
        let now = self.clock.update(now);
        let shared = &mut self.layer;
        let (len, _) = layer::write_chunk_packet(
            &mut self.layer_peers[slot & (PEERS - 1)].vital,
            &mut shared.tx,
            now,
            hot.token(),
            shared.config.compression(),
            Some(data),
            out,
        )?;
        let cold = Self::cold_mut(&mut self.cold, slot);
        cold.sent(now);
        cold.out &= !OUT_KEEP_ALIVE;
        count(&mut self.stats.chunk_packets_sent);
        self.reschedule(slot, now);
        Ok(Transmit {
            to: peer,
            len,
            kind: FrameKind::Datagram,
        })
    }

    /// The next chunk of the packet the last `handle_input` accepted
    /// ([`ServerApp::ChunksReady`]), with the peer it came from, borrowed from the server:
    /// non-vital chunks as they come, vital ones in sequence order exactly once (also those the
    /// peer's reorder buffer releases); `None` when there is nothing more
    ///
    /// Read until `None` before the next input: the next chunk packet (from any peer) replaces
    /// this one, and vital chunks not read are not acknowledged (the peer sends them again).
    #[must_use]
    pub fn poll_chunk(&mut self) -> Option<(P, Chunk<'_>)> {
        let (slot, gen) = self.layer.owner?;
        let live = self.peers.get(slot).map(|(&p, _)| p);
        let peer = match live {
            Some(p) if self.cold(slot).gen == gen => p,
            _ => {
                // the peer is gone (closed by the application in between)
                self.layer.rx.clear();
                self.layer.owner = None;
                return None;
            }
        };
        let now = self.clock.now();
        let vital = &mut self.layer_peers[slot & (PEERS - 1)].vital;
        let next = layer::next_chunk(&mut self.layer.rx, vital, now);
        if let layer::Next::Done { malformed } = next {
            if malformed {
                count(&mut self.stats.malformed_chunks);
            }
            self.layer.owner = None;
        }
        Self::cold_mut(&mut self.cold, slot).ack = self.layer_peers[slot & (PEERS - 1)].vital.ack();
        self.reschedule(slot, now);
        let v = &self.layer_peers[slot & (PEERS - 1)].vital;
        layer::chunk_of(&self.layer.rx, v, &next).map(|c| (peer, c))
    }

    /// Counters of `peer`'s vital channel (chunks sent, resent, delivered, duplicates, ...)
    ///
    /// # Errors
    /// [`Error::UnknownPeer`].
    pub fn chunk_stats(&self, peer: P) -> Result<VitalStats, Error> {
        let slot = self.peers.find(&peer).ok_or(Error::UnknownPeer)?;
        Ok(*self.layer_peers[slot & (PEERS - 1)].vital.stats())
    }
}

impl<P: Copy + Eq + Hash, const PEERS: usize, const EVENTS: usize, L: Layer>
    Server<P, PEERS, EVENTS, L>
{
    fn build(config: ServerConfig, chunks: ChunkConfig) -> Self {
        const {
            assert!(
                EVENTS >= 1,
                "a game Server needs room for at least one event"
            )
        };
        let config = ServerConfig {
            max_peers: if config.max_peers > PEERS {
                PEERS
            } else {
                config.max_peers
            },
            ..config
        };
        Server {
            peers: Table::new(PeerHashKey::new(table_key(&config.secret))),
            config,
            clock: Clock::new(),
            cold: [PeerCold::EMPTY; PEERS],
            dirty: Queue::new(),
            replies: Queue::new(),
            closes: Queue::new(),
            events: Queue::new(),
            state: ServerState::Running,
            shutdown: Shutdown {
                tx: 0,
                ev: 0,
                end: 0,
            },
            shutdown_reason: LocalReason::new(),
            timers: Timers::new(),
            next_gen: 0,
            stats: ServerStats::default(),
            info_window: Instant::ZERO,
            info_count: 0,
            info_pending: None,
            layer_peers: core::array::from_fn(|_| L::new_peer(chunks)),
            layer: L::new_shared(chunks),
        }
    }

    /// Feed one datagram from `from`
    ///
    /// Always consumes the whole datagram, also when it is dropped (counted in
    /// [`Server::stats`]). A chunk packet of an online peer comes back as [`ServerApp::Chunks`]
    /// ([`ControlOnly`]) or [`ServerApp::ChunksReady`] ([`Reliable`]: read it with
    /// [`Server::poll_chunk`]); the CLOSE of an online peer as [`ServerApp::Close`] with its
    /// reason (the `Closed` event follows from `poll_event`); a server-info request within the
    /// rate limit as [`ServerApp::InfoRequest`] (answer it with [`Server::answer_info`]).
    ///
    /// # Errors
    /// [`Error::QueueFull`]: nothing was consumed or changed; drain `poll_event` and feed the
    /// same datagram again.
    // always inlined: what is left here is the hash and the KEEP_ALIVE fast path (the general
    // path is a call), and a call of its own cost about 50 instructions per KEEP_ALIVE (the
    // prologue, and the 56-byte result written to memory and read back by the caller)
    #[inline(always)]
    pub fn handle_input<'a>(
        &mut self,
        now: Instant,
        from: P,
        data: &'a [u8],
    ) -> Result<Received<ServerApp<'a>>, Error> {
        let hash = self.peers.hash_of(&from);
        self.input_hashed(now, from, hash, None, data)
    }

    /// Feed a batch of datagrams, as `recvmmsg` hands them over: `batch[i]` is (sender, bytes)
    ///
    /// The same as calling [`Server::handle_input`] on each datagram in order, and `on_each`
    /// right after each one with the server, the index and what `handle_input` returned (so
    /// [`Server::answer_info`], [`Server::close`] or a drain of `poll_event` work as they do
    /// after a single input). The difference is speed: the peer table is looked up for a group
    /// of datagrams at once (all keys hashed, then their index buckets read, then their slots),
    /// so the cache misses of a large table overlap instead of coming one after the other.
    ///
    /// Returns how many datagrams were consumed. When that is less than `batch.len()`,
    /// `batch[returned]` was refused with [`Error::QueueFull`] (nothing of it consumed): drain
    /// `poll_transmit` and `poll_event` and feed the rest again.
    pub fn handle_batch<'a, F>(
        &mut self,
        now: Instant,
        batch: &[(P, &'a [u8])],
        mut on_each: F,
    ) -> usize
    where
        F: FnMut(&mut Self, usize, Received<ServerApp<'a>>),
    {
        // 32 (a `recvmmsg` of 32) looked up at once: 5 % faster per datagram at 65,536 peers than
        // two groups of 16 (more misses in flight), for 384 B more stack on 64-bit, 256 B on 32-bit
        const GROUP: usize = 32;
        let mut done = 0;
        for group in batch.chunks(GROUP) {
            let mut hashes = [0u32; GROUP];
            let mut words = [0u32; GROUP];
            let mut slots = [None; GROUP];
            for (h, (from, _)) in hashes.iter_mut().zip(group) {
                *h = self.peers.hash_of(from);
            }
            for (w, h) in words.iter_mut().zip(&hashes) {
                *w = self.peers.touch(*h);
            }
            // then the slot named by the first of the four buckets from home with the key's tag
            // (`slot_near`): each key's second dependent load, started for the whole group
            for (((s, word), h), (from, _)) in slots
                .iter_mut()
                .zip(words.iter().copied())
                .zip(&hashes)
                .zip(group)
            {
                *s = self.peers.slot_near(*h, word, from);
            }
            for ((h, s), (from, data)) in hashes.iter().zip(&slots).zip(group) {
                // a slot found above is used when it still holds the key (an earlier datagram of
                // the group may have removed or added peers); else the table is probed
                match self.input_hashed(now, *from, *h, *s, data) {
                    Ok(received) => on_each(self, done, received),
                    Err(_) => return done,
                }
                done += 1;
            }
        }
        done
    }

    /// [`Server::handle_input`] with the sender's placement hash already computed, and maybe
    /// the slot that held the sender's key a moment ago (`hint`, checked before use)
    ///
    /// The most frequent datagram, a token peer's plain KEEP_ALIVE (header with the control
    /// flag alone and 0 chunks, id 0, a token: 8 bytes), is handled here without the general
    /// parser: what `layer::parse` returns for these bytes in `Trailing` mode (a KEEP_ALIVE,
    /// that ack and token, no warnings) and what `process_known` then does with it. Everything
    /// else goes to [`Server::input_general`], out of line, so that this path keeps to a few
    /// registers.
    #[inline(always)]
    fn input_hashed<'a>(
        &mut self,
        now: Instant,
        from: P,
        hash: u32,
        hint: Option<usize>,
        data: &'a [u8],
    ) -> Result<Received<ServerApp<'a>>, Error> {
        if let [b0, b1, 0, KEEP_ALIVE_ID, t0, t1, t2, t3] = *data {
            if b0 & !ACK_HIGH_MASK == FLAG_CONTROL
                && self.state == ServerState::Running
                && !self.events.is_full()
            {
                let slot = self.lookup(Lookup::Hint(hint), hash, &from);
                if let Some((slot, hot)) = slot.and_then(|s| Some((s, *self.peers.get(s)?.1))) {
                    if hot.token().is_some() {
                        self.info_pending = None;
                        let now = self.clock.update(now);
                        if hot.token_is(Some(Token([t0, t1, t2, t3]))) {
                            let marks = Marks {
                                token: None,
                                ack: wire::ack(b0, b1),
                                resend: false,
                                warnings: Warnings::NONE,
                            };
                            if self.refresh_inline(now, slot, &marks) {
                                count(&mut self.stats.keep_alives_received);
                            }
                        } else {
                            count(&mut self.stats.dropped_wrong_token);
                        }
                        return Ok(Received::consumed(data.len()));
                    }
                }
                // the lookup is done: the general path takes its result
                return self.input_general(now, from, hash, Lookup::Done(slot), data);
            }
        }
        self.input_general(now, from, hash, Lookup::Hint(hint), data)
    }

    /// The slot of `from`: `lookup`'s if it was done, the hinted one if it still holds `from`,
    /// else the one the buckets near its home name (`Table::slot_near`), else a probe of the
    /// table
    #[inline(always)]
    fn lookup(&self, lookup: Lookup, hash: u32, from: &P) -> Option<usize> {
        match lookup {
            Lookup::Done(slot) => slot,
            Lookup::Hint(Some(slot)) if self.peers.holds(slot, from) => Some(slot),
            Lookup::Hint(_) => self
                .peers
                .slot_near(hash, self.peers.touch(hash), from)
                .or_else(|| self.peers.find_hashed(hash, from)),
        }
    }

    /// [`Server::input_hashed`] for every datagram but a token peer's plain KEEP_ALIVE
    #[inline(never)]
    fn input_general<'a>(
        &mut self,
        now: Instant,
        from: P,
        hash: u32,
        lookup: Lookup,
        data: &'a [u8],
    ) -> Result<Received<ServerApp<'a>>, Error> {
        let n = data.len();
        self.info_pending = None;
        if self.state != ServerState::Running {
            self.clock.update(now);
            count(&mut self.stats.ignored_stopped);
            return Ok(Received::consumed(n));
        }
        if data.first().is_some_and(|&b| b & FLAG_CONNLESS != 0) {
            let now = self.clock.update(now);
            return Ok(Received::maybe(n, self.handle_connless(now, from, data)));
        }
        if self.events.is_full() {
            return Err(Error::QueueFull);
        }
        let now = self.clock.update(now);
        // one table lookup per datagram; the entry is then reached by its slot
        let slot = self.lookup(lookup, hash, &from);
        if let Some(slot) = slot {
            let handled = self.handle_known(now, from, slot, data);
            let app = layer::counted(
                handled,
                &mut self.stats.dropped_malformed,
                &mut self.stats.dropped_wrong_token,
            );
            Ok(Received::maybe(n, app))
        } else {
            self.handle_unknown(now, from, data);
            Ok(Received::consumed(n))
        }
    }

    /// Let peer timers fire: keep-alives, pending CONNECT_ACCEPT resends, timeouts, and the chunk
    /// layer's resends, flushes and too-weak checks
    ///
    /// Pops the due entries of the timer heap: O(k log PEERS) for k due entries (plus one table
    /// lookup each); a call before [`Server::poll_timeout`] does nothing. When the event queue
    /// fills up, the remaining timeouts wait (the deadline stays due) until it was drained.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock.update(now);
        if self.state != ServerState::Running {
            return;
        }
        if self.timers.needs_rebuild() {
            self.rebuild_timers(now);
        }
        let config = self.config;
        // every entry is looked at most once per call: bounded work
        let mut budget = self.timers.len();
        while budget > 0 {
            budget -= 1;
            let Some(entry) = self.timers.pop_due(now) else {
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
            let chunks = L::peer(&mut self.layer_peers[slot & (PEERS - 1)]);
            if let Some((_, timer_at)) = &chunks {
                if entry.at != **timer_at {
                    // superseded by an earlier entry filed for a vital deadline: that one is
                    // the peer's live entry
                    continue;
                }
            }
            let timed_out = now >= hot.last_recv(now).add_micros(config.timeout);
            let too_weak = match chunks {
                Some((v, _)) if !timed_out => v.handle_timeout(now).err(),
                _ => None,
            };
            if timed_out || too_weak.is_some() {
                if hot.online() {
                    let cause = match too_weak {
                        Some(w) => CloseCause::TooWeak(w),
                        None => CloseCause::Timeout,
                    };
                    let event = ServerEvent::Closed { peer: addr, cause };
                    if self.events.push_back(event).is_err() {
                        // event queue full: keep the peer and its overdue entry (just popped,
                        // so the push succeeds); the next call after poll_event retries
                        self.timers.push(entry);
                        break;
                    }
                    if too_weak.is_some() {
                        count(&mut self.stats.peers_too_weak);
                    } else {
                        count(&mut self.stats.peers_timed_out);
                    }
                } else {
                    count(&mut self.stats.pending_timed_out);
                }
                self.peers.remove(slot);
                continue;
            }
            let mut bits = 0;
            if let Some((v, _)) = L::peer(&mut self.layer_peers[slot & (PEERS - 1)]) {
                if v.needs_packet(now) {
                    bits |= OUT_CHUNKS;
                }
                if v.needs_ack(now) && cold.out & OUT_CHUNKS == 0 {
                    bits |= OUT_KEEP_ALIVE;
                }
            }
            if cold.out == 0 && now >= cold.last_send(now).add_micros(hot.send_interval(&config)) {
                bits |= if hot.online() {
                    OUT_KEEP_ALIVE
                } else {
                    OUT_CONNECT_ACCEPT
                };
            }
            if bits != 0 {
                Self::queue_out(&mut self.dirty, slot, cold, bits);
            } else if cold.out != 0 && !cold.queued && self.dirty.push_back(entry.slot).is_ok() {
                // its earlier queueing failed (stale entries filled the queue): retry
                cold.queued = true;
            }
            let at = Self::entry_at(&config, hot, cold, &mut self.layer_peers, slot, now);
            self.timers.push(TimerEntry { at, ..entry });
        }
    }

    /// Write the next frame into `buf`: CLOSEs of closed peers first, then stateless replies,
    /// then per-peer frames (CONNECT_ACCEPT, with the chunk layer a due chunk packet,
    /// KEEP_ALIVE); during shutdown the CLOSE to each peer
    ///
    /// # Errors
    /// [`BufferTooSmall`] with the exact size when `buf` cannot hold the frame; it stays queued.
    #[inline]
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<Transmit<P>>, BufferTooSmall> {
        let now = self.clock.update(now);
        // the common case, kept small enough to inline: nothing queued (with the chunk layer a
        // packet may wait in the shared out buffer: always the full path)
        if !<L as Imp>::CHUNKS
            && self.state == ServerState::Running
            && self.closes.count() | self.replies.count() | self.dirty.count() == 0
        {
            return Ok(None);
        }
        self.transmit_queued(now, buf)
    }

    /// [`Server::poll_transmit`] when something may be queued (`now` already in machine time)
    fn transmit_queued(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<Transmit<P>>, BufferTooSmall> {
        if let Some(frame) = self.closes.front() {
            let packet = ControlPacket {
                ack: frame.ack,
                control: Control::Close(Reason::from_bytes(&frame.reason)),
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

    /// The next event
    ///
    /// During shutdown: one `Closed` with [`CloseCause::Shutdown`] per online peer whose CLOSE
    /// `poll_transmit` handed out, then [`ServerEvent::ShutdownComplete`] once every CLOSE went
    /// out.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ServerEvent<P>> {
        if let Some(event) = self.events.pop_front() {
            return Some(event);
        }
        if self.state != ServerState::ShuttingDown {
            return None;
        }
        while self.shutdown.ev < self.shutdown.tx {
            let entry = self.peers.get(self.shutdown.ev);
            self.shutdown.ev = self.shutdown.ev.saturating_add(1);
            if let Some((&peer, hot)) = entry {
                if hot.online() {
                    return Some(ServerEvent::Closed {
                        peer,
                        cause: CloseCause::Shutdown,
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

    /// When [`Server::handle_timeout`] must be called next, in the caller's clock: the earliest
    /// entry of the timer heap (O(1)); `None` without peers or when not running
    ///
    /// May be earlier than any real deadline (entries fire early after liveness refreshes and
    /// linger after a peer is removed); such a wake-up does no more than re-file the entry.
    /// Never more than 30 days ([`MAX_DELAY`](crate::time::MAX_DELAY)) after the latest `now`.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_deadline().map(|t| self.clock.to_caller(t))
    }

    /// Close a peer: remove it now, queue `CLOSE reason` (+ token, current ack) and emit
    /// `Closed` with [`CloseCause::Local`] (only for an online peer; a pending vanilla slot just
    /// goes)
    ///
    /// `reason` is cut at a NUL and to 127 bytes on a char boundary (what DDNet reads at most).
    /// DDNet sends e.g. `Kicked (<reason>)`. The CLOSE goes out before any other frame.
    ///
    /// # Errors
    /// [`Error::UnknownPeer`], [`Error::QueueFull`] (CLOSE or event queue full),
    /// [`Error::Closed`] (shutting down or stopped); nothing changed.
    pub fn close(&mut self, now: Instant, peer: P, reason: &str) -> Result<(), Error> {
        if self.state != ServerState::Running {
            return Err(Error::Closed);
        }
        let slot = self.peers.find(&peer).ok_or(Error::UnknownPeer)?;
        let (_, &hot) = self.peers.get(slot).ok_or(Error::UnknownPeer)?;
        if self.closes.is_full() || (hot.online() && self.events.is_full()) {
            return Err(Error::QueueFull);
        }
        self.clock.update(now);
        self.peers.remove(slot);
        let frame = CloseFrame {
            to: peer,
            token: hot.token(),
            ack: Self::cold_mut(&mut self.cold, slot).ack,
            reason: local_reason(reason),
        };
        // room checked above
        let _ = self.closes.push_back(frame);
        if hot.online() {
            let _ = self.events.push_back(ServerEvent::Closed {
                peer,
                cause: CloseCause::Local,
            });
        }
        Ok(())
    }

    /// Shut down: every peer gets `CLOSE reason` (+ token, its ack) from `poll_transmit`, then a
    /// `Closed` event with [`CloseCause::Shutdown`] (online peers), then
    /// [`ServerEvent::ShutdownComplete`]
    ///
    /// `reason` is cut like [`Server::close`]'s. Queued stateless replies and keep-alives are
    /// discarded; CLOSEs of [`Server::close`] already queued are still sent. From now on all
    /// input is ignored and no timer runs. DDNet sends `Server shutdown`.
    ///
    /// # Errors
    /// [`Error::Closed`] when already shutting down or stopped; nothing changed.
    pub fn shutdown(&mut self, now: Instant, reason: &str) -> Result<(), Error> {
        if self.state != ServerState::Running {
            return Err(Error::Closed);
        }
        self.clock.update(now);
        self.state = ServerState::ShuttingDown;
        let end = self.peers.slot_limit();
        self.shutdown = Shutdown {
            tx: self.peers.next_live(0).unwrap_or(end),
            ev: 0,
            end,
        };
        self.shutdown_reason = local_reason(reason);
        self.replies.clear();
        self.dirty.clear();
        // the timer heap stays as it is: a server that is not running never reads it again
        Ok(())
    }

    /// Write the answer to the server-info request the last `handle_input` handed out
    /// ([`ServerApp::InfoRequest`]) into `out`: `content` in the form the request asks for
    /// ([`InfoContent::answer`]), with the client list only while the request was within
    /// [`ServerConfig::info_per_second`]; `None` when the last input was no such request (each
    /// request is answered at most once)
    ///
    /// The answer goes to the request's source address unverified (connectionless packets have no
    /// token), which is why the machine bounds how many answers a second carry the client list
    /// and how many are sent at all: above the first limit an answer is the fixed part only
    /// (about 80 bytes for a 15-byte request, as in DDNet 16.4); above
    /// [`ServerConfig::info_replies_per_second`] requests are dropped.
    ///
    /// # Errors
    /// [`Error::BufferTooSmall`] with the exact size; the request stays answerable.
    pub fn answer_info(
        &mut self,
        now: Instant,
        content: &InfoContent<'_>,
        out: &mut [u8],
    ) -> Result<Option<Transmit<P>>, Error> {
        self.clock.update(now);
        let Some((to, request, full)) = self.info_pending else {
            return Ok(None);
        };
        let answer = content.answer(&request, full);
        let len = answer.emit(out)?;
        self.info_pending = None;
        if full {
            count(&mut self.stats.info_answers_full);
        } else {
            count(&mut self.stats.info_answers_short);
        }
        Ok(Some(Transmit {
            to,
            len,
            kind: FrameKind::Datagram,
        }))
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
    pub fn is_online(&self, peer: P) -> bool {
        self.peers.lookup(&peer).is_some_and(PeerHot::online)
    }

    /// The token of `peer`, if it is in the table and uses one
    #[must_use]
    pub fn peer_token(&self, peer: P) -> Option<Token> {
        self.peers.lookup(&peer).and_then(PeerHot::token)
    }

    /// The ack the server sends `peer` (its last in-order vital sequence: what `set_ack`
    /// reported, or with the chunk layer the vital channel's), if it is in the table
    #[must_use]
    pub fn ack(&self, peer: P) -> Option<u16> {
        let slot = self.peers.find(&peer)?;
        Some(self.cold(slot).ack)
    }

    /// The token this server mints for `peer` (what its CONNECT_ACCEPT carries): the high 4
    /// bytes of SipHash-2-4 of `peer` keyed by the secret, never one of the two sentinels
    #[must_use]
    pub fn token_for(&self, peer: P) -> Token {
        mint(&self.config.secret, &peer)
    }

    /// The configuration (`max_peers` clamped to `PEERS`)
    #[must_use]
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Counters
    #[must_use]
    pub fn stats(&self) -> ServerStats {
        self.stats
    }

    /// The slot and state of an online peer (for sends)
    fn open_peer(&self, peer: P) -> Result<(usize, PeerHot), Error> {
        if self.state != ServerState::Running {
            return Err(Error::Closed);
        }
        let slot = self.peers.find(&peer).ok_or(Error::UnknownPeer)?;
        let (_, &hot) = self.peers.get(slot).ok_or(Error::UnknownPeer)?;
        if !hot.online() {
            return Err(Error::NotOpen);
        }
        Ok((slot, hot))
    }

    /// The next deadline in machine time (see `time::Clock`)
    fn next_deadline(&self) -> Option<Instant> {
        if self.state != ServerState::Running {
            return None;
        }
        self.timers.next(self.clock.now())
    }

    /// The state beside the table of slot `slot` (a slot number is always below `PEERS`)
    #[inline]
    fn cold_mut(cold: &mut [PeerCold; PEERS], slot: usize) -> &mut PeerCold {
        &mut cold[slot & (PEERS - 1)]
    }

    /// The state beside the table of slot `slot`, read-only
    #[inline]
    fn cold(&self, slot: usize) -> &PeerCold {
        &self.cold[slot & (PEERS - 1)]
    }

    /// When slot `slot`'s timer entry must fire (the control timers and, with the chunk layer,
    /// the vital channel's), recorded as the peer's live entry
    fn entry_at(
        config: &ServerConfig,
        hot: &PeerHot,
        cold: &PeerCold,
        layer_peers: &mut [<L as Imp>::Peer; PEERS],
        slot: usize,
        now: Instant,
    ) -> Instant {
        let mut at = timer_at(hot, cold, config, now);
        if let Some((v, timer_at)) = L::peer(&mut layer_peers[slot & (PEERS - 1)]) {
            if let Some(t) = v.poll_timeout() {
                // a due vital deadline is handled by the transmit queue: no spinning entry
                at = at.min(t.max(now + MIN_DELAY));
            }
            *timer_at = at;
        }
        at
    }

    /// After the chunk layer of slot `slot` changed (a chunk queued, a packet or chunk
    /// received): queue a due packet, or file an earlier timer entry when its next deadline
    /// moved before the live one
    fn reschedule(&mut self, slot: usize, now: Instant) {
        let Some((v, timer_at)) = L::peer(&mut self.layer_peers[slot & (PEERS - 1)]) else {
            return;
        };
        let cold = Self::cold_mut(&mut self.cold, slot);
        if v.needs_packet(now) {
            Self::queue_out(&mut self.dirty, slot, cold, OUT_CHUNKS);
        }
        if let Some(t) = v.poll_timeout() {
            let t = t.max(now + MIN_DELAY);
            if t < *timer_at {
                *timer_at = t;
                self.timers.push(TimerEntry {
                    at: t,
                    gen: cold.gen,
                    slot: slot as u32,
                });
            }
        }
    }

    /// Replace the timer heap by one fresh entry per slot (drops stale entries)
    fn rebuild_timers(&mut self, now: Instant) {
        let config = &self.config;
        let cold = &self.cold;
        let layer_peers = &mut self.layer_peers;
        self.timers.rebuild(self.peers.iter().map(|(slot, _, hot)| {
            let c = &cold[slot & (PEERS - 1)];
            TimerEntry {
                at: Self::entry_at(config, hot, c, layer_peers, slot, now),
                gen: c.gen,
                slot: slot as u32,
            }
        }));
    }

    /// Mark output bits on a slot and queue the peer for `poll_transmit`
    fn queue_out(dirty: &mut Queue<u32, PEERS>, slot: usize, cold: &mut PeerCold, bits: u8) {
        cold.out |= bits;
        // A full queue only happens with stale entries of removed peers; the slot's next timer
        // entry re-queues it then.
        if !cold.queued && dirty.push_back(slot as u32).is_ok() {
            cold.queued = true;
        }
    }

    fn queue_reply(&mut self, reply: Reply<P>) {
        if self.replies.push_back(reply).is_err() {
            count(&mut self.stats.dropped_reply_queue_full);
        }
    }

    /// Admit `from` as a new slot; `false` when the table is full
    fn admit(
        &mut self,
        now: Instant,
        from: P,
        token: Option<Token>,
        online: bool,
        out: u8,
    ) -> bool {
        if self.peers.is_full() || self.peers.len() >= self.config.max_peers {
            count(&mut self.stats.rejected_full);
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
            count(&mut self.stats.rejected_full);
            return false;
        };
        if let Some((v, _)) = L::peer(&mut self.layer_peers[slot & (PEERS - 1)]) {
            v.reset();
        }
        let cold = Self::cold_mut(&mut self.cold, slot);
        *cold = PeerCold::new(now, gen);
        if out != 0 {
            cold.out = out;
            if self.dirty.push_back(slot as u32).is_ok() {
                cold.queued = true;
            }
        }
        let at = Self::entry_at(&self.config, &hot, cold, &mut self.layer_peers, slot, now);
        self.timers.push(TimerEntry {
            at,
            gen,
            slot: slot as u32,
        });
        if online {
            count(&mut self.stats.peers_admitted);
            // room was checked at the top of handle_input
            let _ = self
                .events
                .push_back(ServerEvent::Connected { peer: from, token });
        }
        true
    }

    /// A connectionless datagram: a server-info request within the rate limit is handed to the
    /// application; nothing else is answered
    fn handle_connless(
        &mut self,
        now: Instant,
        from: P,
        data: &[u8],
    ) -> Option<ServerApp<'static>> {
        let request = ConnlessPacket::parse(data)
            .ok()
            .and_then(|p| InfoRequest::from_packet(&p).ok());
        let Some(request) = request else {
            count(&mut self.stats.dropped_connless);
            return None;
        };
        count(&mut self.stats.info_requests);
        if now >= self.info_window + Duration::from_secs(1) {
            self.info_window = now;
            self.info_count = 0;
        }
        if self.info_count >= self.config.info_replies_per_second {
            count(&mut self.stats.dropped_info_flood);
            return None;
        }
        let full = self.info_count < self.config.info_per_second();
        self.info_count += 1;
        self.info_pending = Some((from, request, full));
        Some(ServerApp::InfoRequest(request))
    }

    /// A datagram from an address without a slot: the stateless path
    fn handle_unknown(&mut self, now: Instant, from: P, data: &[u8]) {
        let parsed = match wire::parse(data, TokenMode::Detect) {
            Ok(p) => p,
            Err(_) => {
                count(&mut self.stats.dropped_malformed);
                return;
            }
        };
        if !parsed.warnings.is_empty() {
            count(&mut self.stats.warnings);
        }
        let Packet::Control(c) = parsed.packet else {
            count(&mut self.stats.ignored_unsolicited);
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
                    count(&mut self.stats.rejected_vanilla);
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
                    count(&mut self.stats.dropped_wrong_token);
                } else if !self.admit(now, from, Some(token), true, 0) {
                    // documented exception to amplification <= 1: the token proves the address
                    self.queue_reply(Reply::Full { to: from, token });
                }
            }
            _ => count(&mut self.stats.ignored_unsolicited),
        }
    }

    /// A datagram from a peer in the table
    #[inline(always)]
    fn handle_known<'a>(
        &mut self,
        now: Instant,
        from: P,
        slot: usize,
        data: &'a [u8],
    ) -> Result<Option<ServerApp<'a>>, Dropped> {
        let (_, &hot) = self.peers.get(slot).ok_or(Dropped::Silent)?;
        // (a token peer's plain KEEP_ALIVE never gets here: `input_hashed` took it)
        let mode = if hot.token().is_some() {
            TokenMode::Trailing
        } else {
            TokenMode::Vanilla
        };
        let b0 = layer::first_byte(data)?;
        if b0 & FLAG_COMPRESSION != 0 {
            return self.handle_known_compressed(now, from, slot, mode, b0, data);
        }
        let pkt = layer::parse(data, mode)?;
        if let Pkt::Control { c, .. } = &pkt {
            if c.control == Control::Connect {
                // CONNECT from an existing peer: answer CONNECT_ACCEPT again (DDNet form for
                // token peers), connection unchanged, no liveness refresh. DDNet does this
                // for token CONNECTs; for vanilla CONNECTs DDNet and 0.6.4 stay silent, which
                // strands a vanilla client whose first CONNECT_ACCEPT was lost, so we answer
                // those too (4 bytes for 4 bytes). A token CONNECT ends with FF FF FF FF, not
                // the token, so it is recognised before the token check.
                let reply = ControlPacket {
                    ack: 0,
                    control: Control::ConnectAccept,
                    token: hot.token(),
                };
                if reply.buffer_len() <= data.len() {
                    let cold = Self::cold_mut(&mut self.cold, slot);
                    Self::queue_out(&mut self.dirty, slot, cold, OUT_CONNECT_ACCEPT);
                }
                // a token peer that is online re-handshakes: its next ACCEPT re-joins
                if let Some((_, h)) = self.peers.get_mut(slot) {
                    if h.online() && h.token().is_some() {
                        h.arm_rejoin();
                    }
                }
                return Ok(None);
            }
        }
        let outcome = self.process_known(now, from, slot, pkt);
        Ok(self.known_app(slot, outcome))
    }

    /// A datagram with the compression flag from a peer in the table: decompressed (into the
    /// shared receive buffer, or in passing without a buffer) before the token and ack checks
    fn handle_known_compressed<'a>(
        &mut self,
        now: Instant,
        from: P,
        slot: usize,
        mode: TokenMode,
        b0: u8,
        data: &'a [u8],
    ) -> Result<Option<ServerApp<'a>>, Dropped> {
        if b0 & wire::FLAG_CONTROL != 0 {
            // only vanilla 0.6.4 peers send these (without token); DDNet never does
            let mut small = layer::Small::new();
            let small = &mut small.0;
            let total = layer::decompress_control(data, small)?;
            if mode != TokenMode::Vanilla || HEADER_LEN + total > SMALL_LEN {
                return Err(Dropped::Malformed);
            }
            let pkt =
                layer::parse(&small[..HEADER_LEN + total], mode).map_err(|_| Dropped::Malformed)?;
            match &pkt {
                Pkt::Control { c, .. } if c.control != Control::Connect => {}
                _ => return Ok(None),
            }
            return Ok(match self.process_known(now, from, slot, pkt) {
                Outcome::Close(_) => Some(ServerApp::Close {
                    reason: PeerText::new(&[]),
                }),
                _ => None,
            });
        }
        let rx = L::shared(&mut self.layer).map(|sh| sh.rx);
        let pkt = layer::decompress_chunks(rx, data)?.packet(mode)?;
        let outcome = self.process_known(now, from, slot, pkt);
        Ok(self.known_app(slot, outcome))
    }

    /// What an accepted packet of the peer in `slot` gives the application
    fn known_app<'a>(&mut self, slot: usize, outcome: Outcome<'a>) -> Option<ServerApp<'a>> {
        match outcome {
            Outcome::Nothing => None,
            Outcome::Close(reason) => Some(ServerApp::Close {
                reason: reason.text(),
            }),
            Outcome::Chunks(chunks) => {
                let gen = self.cold(slot).gen;
                let rx = L::shared(&mut self.layer).map(|sh| {
                    // the packet in the receive buffer is this peer's now
                    *sh.owner = Some((slot, gen));
                    sh.rx
                });
                layer::deliver(rx, chunks, ServerApp::Chunks, ServerApp::ChunksReady)
            }
        }
    }

    /// The token, ack and state checks of a decoded packet of a known peer, then what it does
    fn process_known<'p>(
        &mut self,
        now: Instant,
        from: P,
        slot: usize,
        pkt: Pkt<'p>,
    ) -> Outcome<'p> {
        let Some((_, hot)) = self.peers.get_mut(slot) else {
            return Outcome::Nothing;
        };
        let marks = pkt.marks();
        if !hot.token_is(marks.token) {
            count(&mut self.stats.dropped_wrong_token);
            return Outcome::Nothing;
        }
        if matches!(pkt, Pkt::Chunks(_)) {
            // chunks after a CONNECT: the peer carries on with this connection (the CONNECT was
            // a late retry of its first handshake), so a later ACCEPT is no rejoin
            let _ = hot.take_rejoin();
        }
        if let Pkt::Control { c, warnings } = &pkt {
            if c.control == Control::Accept
                && hot.online()
                && hot.token().is_some()
                && !warnings.contains(Warnings::EXTRA_BYTES)
                && hot.take_rejoin()
                // (only read when a rejoin is armed: the state beside the table is another cache
                // line per datagram)
                && (hot.peer_ack() != 0
                    || hot.sequence() != 0
                    || self.cold[slot & (PEERS - 1)].ack != 0
                    || L::peer_channel(&self.layer_peers[slot & (PEERS - 1)])
                        .is_some_and(|v| v.sequence() != 0 || v.ack() != 0))
            {
                // DDNet's "rejoin": a second ACCEPT (exactly id + token) on a live connection
                // resets it before its ack is looked at, and the game-level join starts over.
                // Unlike DDNet 16.4, only after the peer re-handshook (a token CONNECT since it
                // went online): a duplicated or late copy of the first ACCEPT, which the network
                // may deliver at any time, does not wipe a live connection's reliable state.
                // (On a connection that has exchanged no vital chunk yet the reset would change
                // nothing: no event then.)
                hot.set_peer_ack(0);
                hot.set_sequence(0);
                Self::cold_mut(&mut self.cold, slot).ack = 0;
                if let Some((v, _)) = L::peer(&mut self.layer_peers[slot & (PEERS - 1)]) {
                    v.reset();
                }
                self.release_rx(slot);
                count(&mut self.stats.rejoins);
                // room was checked at the top of handle_input
                let _ = self.events.push_back(ServerEvent::Rejoined { peer: from });
            }
        }
        if !self.refresh(now, slot, &marks) {
            return Outcome::Nothing;
        }
        let Some((_, hot)) = self.peers.get_mut(slot) else {
            return Outcome::Nothing;
        };
        match pkt {
            Pkt::Control { c, .. } => match c.control {
                Control::Close(reason) => {
                    let online = hot.online();
                    self.peers.remove(slot);
                    self.release_rx(slot);
                    if online {
                        // room was checked at the top of handle_input
                        let _ = self.events.push_back(ServerEvent::Closed {
                            peer: from,
                            cause: CloseCause::Peer,
                        });
                        return Outcome::Close(reason);
                    }
                    Outcome::Nothing
                }
                Control::KeepAlive => {
                    count(&mut self.stats.keep_alives_received);
                    Outcome::Nothing
                }
                // ACCEPT (a rejoin was handled above), CONNECT_ACCEPT: liveness only
                _ => Outcome::Nothing,
            },
            Pkt::Chunks(chunks) => {
                if !hot.online() {
                    // VanillaPolicy::Pending: the first chunk packet completes the connect
                    hot.set_online();
                    Self::cold_mut(&mut self.cold, slot).out &= !OUT_CONNECT_ACCEPT;
                    count(&mut self.stats.peers_admitted);
                    let _ = self.events.push_back(ServerEvent::Connected {
                        peer: from,
                        token: None,
                    });
                    // The timer entry was set for the (shorter by default) resend interval, so it
                    // is not later than the first keep-alive deadline unless
                    // `connect_accept_resend > keep_alive` (then that keep-alive is late by at
                    // most the difference).
                }
                count(&mut self.stats.chunk_packets_received);
                Outcome::Chunks(chunks)
            }
        }
    }

    /// The ack check and liveness refresh of a packet from a known peer whose token passed;
    /// `false` when its ack is out of range (dropped and counted)
    #[inline]
    fn refresh(&mut self, now: Instant, slot: usize, marks: &Marks) -> bool {
        self.refresh_inline(now, slot, marks)
    }

    /// [`Server::refresh`], always inlined (the KEEP_ALIVE shortcut)
    #[inline(always)]
    fn refresh_inline(&mut self, now: Instant, slot: usize, marks: &Marks) -> bool {
        let Some((_, hot)) = self.peers.get_mut(slot) else {
            return false;
        };
        let vital = L::peer(&mut self.layer_peers[slot & (PEERS - 1)]).map(|(v, _)| v);
        if !layer::ack_ok(vital, now, marks, hot.peer_ack(), hot.sequence()) {
            count(&mut self.stats.dropped_bad_ack);
            return false;
        }
        hot.set_peer_ack(marks.ack);
        hot.last_recv = stamp(now);
        if !marks.warnings.is_empty() {
            count(&mut self.stats.warnings);
        }
        // a RESEND request or an ack may have made a packet due
        self.reschedule(slot, now);
        true
    }

    /// Forget the packet in the receive buffer if it belongs to slot `slot` (the peer is gone or
    /// reset)
    fn release_rx(&mut self, slot: usize) {
        if let Some(sh) = L::shared(&mut self.layer) {
            if sh.owner.is_some_and(|(s, _)| s == slot) {
                sh.rx.clear();
                *sh.owner = None;
            }
        }
    }

    /// The next shutdown CLOSE, as (peer, frame)
    fn shutdown_frame(&self) -> Option<(P, ControlPacket<'_>)> {
        let (&peer, hot) = self.peers.get(self.shutdown.tx)?;
        let cold = self.cold(self.shutdown.tx);
        Some((
            peer,
            ControlPacket {
                ack: cold.ack,
                control: Control::Close(Reason::from_bytes(&self.shutdown_reason)),
                token: hot.token(),
            },
        ))
    }

    /// Hand out the chunk packet waiting in the shared out buffer (dropped when its peer is gone)
    fn emit_out(&mut self, buf: &mut [u8]) -> Result<Option<Transmit<P>>, BufferTooSmall> {
        let Some(sh) = L::shared(&mut self.layer) else {
            return Ok(None);
        };
        let Some((slot, gen)) = *sh.out_to else {
            return Ok(None);
        };
        let to = match self.peers.get(slot) {
            Some((&to, _)) if self.cold[slot & (PEERS - 1)].gen == gen => to,
            _ => {
                // the packet stays in `out` unread: the next one is written over it
                *sh.out_to = None;
                return Ok(None);
            }
        };
        let len = sh.out.take_into(buf)?;
        *sh.out_to = None;
        Ok(Some(Transmit {
            to,
            len,
            kind: FrameKind::Datagram,
        }))
    }

    fn transmit_running(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<Transmit<P>>, BufferTooSmall> {
        if let Some(t) = self.emit_out(buf)? {
            return Ok(Some(t));
        }
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
                count(&mut self.stats.connect_accepts_sent);
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
            let hot = *hot;
            let cold = Self::cold_mut(&mut self.cold, slot);
            if cold.out & OUT_CONNECT_ACCEPT == 0 && cold.out & OUT_CHUNKS != 0 {
                let chunks = L::peer(&mut self.layer_peers[slot & (PEERS - 1)]);
                let shared = L::shared(&mut self.layer);
                if let (Some((v, _)), Some(sh)) = (chunks, shared) {
                    if v.needs_packet(now) {
                        let compress = sh.config.compression();
                        // the writer stays within the payload limit: no error is reachable
                        let written = layer::write_chunk_packet(
                            v,
                            sh.tx,
                            now,
                            hot.token(),
                            compress,
                            None,
                            sh.out.buf(),
                        );
                        if let Ok((len, _)) = written {
                            sh.out.set(len);
                            *sh.out_to = Some((slot, cold.gen));
                            cold.sent(now);
                            cold.out &= !OUT_KEEP_ALIVE;
                            if !v.needs_packet(now) {
                                cold.out &= !OUT_CHUNKS;
                            }
                            if cold.out == 0 {
                                cold.queued = false;
                                self.dirty.pop_front();
                            }
                            count(&mut self.stats.chunk_packets_sent);
                            return self.emit_out(buf);
                        }
                    }
                }
                cold.out &= !OUT_CHUNKS;
            }
            let Some((packet, bit)) = next_frame(&hot, cold) else {
                cold.queued = false;
                self.dirty.pop_front();
                continue;
            };
            let len = packet.emit(buf)?;
            cold.out &= !bit;
            cold.sent(now);
            if cold.out == 0 {
                cold.queued = false;
                self.dirty.pop_front();
            }
            if bit == OUT_KEEP_ALIVE {
                count(&mut self.stats.keep_alives_sent);
                if let Some((v, _)) = L::peer(&mut self.layer_peers[slot & (PEERS - 1)]) {
                    v.note_sent(now);
                }
            } else {
                count(&mut self.stats.connect_accepts_sent);
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

crate::machine::impl_machine! {
    impl[P: Copy + Eq + Hash, const PEERS: usize, const EVENTS: usize, L: Layer] for Server<P, PEERS, EVENTS, L> {
        Peer = P,
        Event = ServerEvent<P>,
        App<'a> = ServerApp<'a>,
        Error = Error,
    }
}
