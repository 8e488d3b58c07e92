//! The game client: CONNECT → CONNECT_ACCEPT → ACCEPT, keep-alive, timeout and CLOSE
//!
//! The public description (states, token mode, ack, timers) is on [`Client`].

use super::chunk::Chunk;
#[cfg(feature = "server-info")]
use super::connless::{InfoRequest, InfoRequestKind, ServerInfo};
use super::error::Error;
use super::event::{ClientApp, ClientEvent, CloseCause};
use super::layer::{
    self, imp::Imp, tail_token, ChunkConfig, ControlOnly, Dropped, Layer, Outcome, Pkt, Reliable,
    SMALL_LEN,
};
use super::vital::VitalStats;
use super::wire::{
    Control, ControlId, ControlPacket, Flags, Reason, Token, TokenMode, ACK_MODULO,
    FLAG_COMPRESSION, FLAG_CONNLESS, FLAG_CONTROL, HEADER_LEN,
};
use super::{count, MIN_DELAY};
use crate::config::{config_fmt, getters, setters};
use crate::io::{BufferTooSmall, FrameKind, PeerText, Received, Transmit};
use crate::time::{clamp_micros, duration_from_micros, earliest, Clock, Duration, Instant};

#[cfg(test)]
mod tests;

/// [`layer::parse`], out of line: the client calls it from two places, and inlined in both it
/// costs a Cortex-M firmware about 640 bytes of flash (the server inlines it into its hot path)
#[inline(never)]
fn parse(data: &[u8], mode: TokenMode) -> Result<Pkt<'_>, Dropped> {
    layer::parse(data, mode)
}

/// Settings of a [`Client`]
///
/// Build it with [`ClientConfig::new`] (or `default()`, the same) and the `with_*` setters;
/// every interval and timeout is clamped into `[1 ms, 30 days]` ([`MAX_DELAY`]) and kept in
/// whole microseconds, the unit of [`Instant`](crate::Instant) (so it takes 48 bytes, not the
/// 88 of five `Duration`s on 32-bit targets).
///
/// ```
/// use core::time::Duration;
/// use tether_net::game::ClientConfig;
/// let config = ClientConfig::new()
///     .with_keep_alive(Duration::from_secs(1))
///     .with_timeout(Duration::ZERO); // clamped to 1 ms
/// assert_eq!(config.keep_alive(), Duration::from_secs(1));
/// assert_eq!(config.timeout(), Duration::from_millis(1));
/// ```
///
/// [`MAX_DELAY`]: crate::time::MAX_DELAY
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ClientConfig {
    // every delay in microseconds, at most MAX_DELAY (2.6e12 µs)
    connect_resend: u64,
    connect_timeout: u64,
    keep_alive: u64,
    timeout: u64,
    /// 0: disabled (a set wait is at least 1 ms)
    accept_retry: u64,
    vanilla: bool,
}

/// A wait kept in microseconds (`0`: disabled) as a `Duration`
const fn micros_or_none(us: u64) -> Option<Duration> {
    match us {
        0 => None,
        us => Some(duration_from_micros(us)),
    }
}

config_fmt!(ClientConfig, c => {
    vanilla: c.vanilla,
    connect_resend: c.connect_resend(),
    connect_timeout: c.connect_timeout(),
    keep_alive: c.keep_alive(),
    timeout: c.timeout(),
    accept_retry: c.accept_retry(),
});

impl ClientConfig {
    /// The defaults: token mode, CONNECT resent every 500 ms, connect timeout 10 s, keep-alive
    /// 250 ms, timeout 10 s, lost-ACCEPT recovery after 2 s
    #[must_use]
    pub const fn new() -> Self {
        ClientConfig {
            connect_resend: 500_000,
            connect_timeout: 10_000_000,
            keep_alive: 250_000,
            timeout: 10_000_000,
            accept_retry: 2_000_000,
            vanilla: false,
        }
    }

    setters! {
        /// Send the bare vanilla CONNECT (`10 00 00 01`) instead of the DDNet token form
        /// `CONNECT | "TKEN" | FF FF FF FF`. Default: `false` (token form; a vanilla server's bare
        /// reply still works).
        fn with_vanilla(vanilla: bool) { vanilla = vanilla }

        /// Interval between CONNECT retransmissions while connecting, clamped into
        /// `[1 ms, 30 days]`. Default: 500 ms, as DDNet and vanilla 0.6.
        fn with_connect_resend(interval: Duration) { connect_resend = clamp_micros(interval, MIN_DELAY) }

        /// Give up connecting ([`CloseCause::ConnectTimeout`]) this long after `connect`, clamped
        /// into `[1 ms, 30 days]`. Default: 10 s. (DDNet's and vanilla's network layer has no connect
        /// timeout; their game layer gives up.)
        fn with_connect_timeout(timeout: Duration) { connect_timeout = clamp_micros(timeout, MIN_DELAY) }

        /// Send a KEEP_ALIVE when online and nothing was sent for this long, clamped into
        /// `[1 ms, 30 days]`. Default: 250 ms. DDNet and vanilla 0.6 send one after 1 s without
        /// sending, on both sides; set `Duration::from_secs(1)` to match them on the wire.
        fn with_keep_alive(interval: Duration) { keep_alive = clamp_micros(interval, MIN_DELAY) }

        /// The connection times out ([`CloseCause::Timeout`], no CLOSE sent) when nothing valid was
        /// received for this long, clamped into `[1 ms, 30 days]`. Default: 10 s (vanilla 0.6.4;
        /// DDNet's `conn_timeout` defaults to 100 s).
        fn with_timeout(timeout: Duration) { timeout = clamp_micros(timeout, MIN_DELAY) }

        /// Lost-ACCEPT recovery: when nothing but CONNECT_ACCEPT arrived for this long after the
        /// client sent ACCEPT, it starts the handshake over (see [`Client`]); `None` disables it.
        /// Clamped into `[1 ms, 30 days]`. Default: 2 s: a DDNet server creates the connection only
        /// on ACCEPT and never asks for it again, and it sends a keep-alive within about 1 s of
        /// admission. A repeated handshake on a server that did get the first ACCEPT is a harmless
        /// "rejoin" of a connection that has exchanged nothing yet.
        fn with_accept_retry(wait: Option<Duration>) {
            accept_retry = match wait {
                Some(d) => clamp_micros(d, MIN_DELAY),
                None => 0,
            }
        }
    }

    getters! {
        /// Whether the client sends the vanilla CONNECT
        fn vanilla() -> bool;
        /// CONNECT resend interval
        fn connect_resend() -> Duration = duration_from_micros;
        /// Connect timeout
        fn connect_timeout() -> Duration = duration_from_micros;
        /// Keep-alive interval
        fn keep_alive() -> Duration = duration_from_micros;
        /// Timeout of an online connection
        fn timeout() -> Duration = duration_from_micros;
        /// Lost-ACCEPT recovery wait, `None` when disabled
        fn accept_retry() -> Option<Duration> = micros_or_none;
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self::new()
    }
}

macro_rules! client_counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// Counters of a [`Client`]; they only grow (saturating)
        ///
        /// The client keeps them in 32 bits (saturating at 4,294,967,295: twelve hours of a
        /// 100,000-datagram-per-second flood) and widens them here. The chunk layer's own
        /// counters (resends, duplicates, reordered chunks) are [`Client::chunk_stats`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        #[non_exhaustive]
        pub struct ClientStats {
            $($(#[$doc])* pub $name: u64,)*
        }

        /// The counters as the client keeps them: 32 bits each (half the size)
        #[derive(Debug, Clone, Copy, Default)]
        struct Counters {
            $($name: u32,)*
        }

        impl Counters {
            /// As handed out by [`Client::stats`]
            fn widen(&self) -> ClientStats {
                ClientStats {
                    $($name: u64::from(self.$name),)*
                }
            }
        }
    };
}

client_counters! {
    /// Packets dropped because their token was wrong or missing
    dropped_wrong_token,
    /// Packets dropped because their ack was outside `peer_ack..=sequence`
    /// ([`wire::ack_in_range`](super::wire::ack_in_range))
    dropped_bad_ack,
    /// Datagrams that did not parse as a 0.6 packet
    dropped_malformed,
    /// Chunk packets received while not online (dropped)
    dropped_not_online,
    /// Datagrams fed before `connect` or after the connection closed (ignored)
    ignored_closed,
    /// Accepted packets that carried decoder [`Warnings`](super::wire::Warnings)
    warnings,
    /// CONNECT packets sent (first one and retransmissions)
    connects_sent,
    /// KEEP_ALIVE packets sent
    keep_alives_sent,
    /// KEEP_ALIVE packets received (and accepted)
    keep_alives_received,
    /// Chunk packets written by [`Client::send_chunks`]
    chunk_packets_sent,
    /// Chunk packets delivered as [`ClientApp::Chunks`]
    chunk_packets_received,
    /// Handshakes started over because nothing came back after ACCEPT
    /// ([`ClientConfig::with_accept_retry`]); the CONNECT resends of one such restart count once
    /// here (and each in [`ClientStats::connects_sent`])
    accept_retries,
    /// CONNECT_ACCEPTs dropped because their token was a sentinel (`FF FF FF FF` or
    /// `00 00 00 00`, which no server mints)
    dropped_sentinel_token,
    /// CONNECT_ACCEPTs with another token than the current one, answered with ACCEPT while the
    /// connection was not confirmed yet (see [`ClientEvent::Connected`])
    token_candidates,
    /// Server-info answers handed out ([`ClientApp::ServerInfo`])
    info_answers,
    /// Server-info requests sent
    info_requests_sent,
    /// Connectionless datagrams dropped (not an answer to our query, or malformed)
    dropped_connless,
    /// Chunk packets whose chunks ran past the end of the packet (the rest was dropped)
    malformed_chunks,
}

/// Where a [`Client`] is
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ClientState {
    /// Created; [`Client::connect`] not called yet
    Offline,
    /// CONNECT sent, waiting for CONNECT_ACCEPT
    Connecting,
    /// CONNECT_ACCEPT received, ACCEPT queued
    Online,
    /// The connection ended (see the [`ClientEvent::Closed`] event)
    Closed,
}

/// How many bytes of a CLOSE reason a game [`Client`] keeps: of its own, from
/// [`Client::close`] until the CLOSE is written, and of the server's, for
/// [`Client::peer_close_reason`]; longer texts are cut on a char boundary
///
/// A bound on the client's size (it fits in 256 bytes on 32-bit targets). Short reasons
/// ("Timeout", "Server shutdown", "This server is full") are kept whole; longer ones, such as
/// DDNet's 85-byte wrong-version wording or a ban with its free text, come out whole once, as
/// [`ClientApp::Close`] borrowed from the datagram. [`Client::close_static`] sends a constant
/// reason of any length (up to the 127 bytes DDNet reads) without keeping a copy.
pub const KEPT_REASON_LEN: usize = 30;

/// A CLOSE reason the client keeps
#[derive(Debug, Clone)]
enum KeptReason {
    /// A copy of the first [`KEPT_REASON_LEN`] bytes
    Copied(heapless::Vec<u8, KEPT_REASON_LEN, u8>),
    /// `close_static`'s text, cut when the CLOSE is written
    Static(&'static str),
}

impl KeptReason {
    /// The bytes a CLOSE carries
    fn as_bytes(&self) -> &[u8] {
        match self {
            KeptReason::Copied(kept) => kept,
            KeptReason::Static(text) => Reason::from_str(text).as_bytes(),
        }
    }
}

/// The events not handed out yet: a client's life has at most two, `Connected` then `Closed`
/// (always the last), so one slot each holds every state a queue of any capacity can be in
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Events {
    /// `Connected { token }` waiting
    connected: Option<Option<Token>>,
    /// `Closed { cause }` waiting
    closed: Option<CloseCause>,
}

impl Events {
    /// Events waiting
    fn len(&self) -> usize {
        usize::from(self.connected.is_some()) + usize::from(self.closed.is_some())
    }

    /// The oldest event
    fn pop(&mut self) -> Option<ClientEvent> {
        if let Some(token) = self.connected.take() {
            return Some(ClientEvent::Connected { token });
        }
        self.closed
            .take()
            .map(|cause| ClientEvent::Closed { cause })
    }
}

/// Control frames waiting for `poll_transmit`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Pending {
    connect: bool,
    accept: bool,
    keep_alive: bool,
    close: bool,
    #[cfg(feature = "server-info")]
    info: bool,
}

/// A sans-IO Teeworlds 0.6 / DDNet game client, with an event queue of `EVENTS` entries (default
/// 4) and the chunk layer `L` ([`ControlOnly`], the default, or [`Reliable`])
///
/// Drive it with the crate's run loop: one input ([`Client::handle_input`],
/// [`Client::handle_timeout`] or a command), then hand out every frame and event
/// ([`drain`](crate::drain) does it), then sleep until [`Client::poll_timeout`].
///
/// * [`ControlOnly`] (`Client::new`): the control plane. Application (chunk) packets are written
///   by [`Client::send_chunks`] straight into the caller's buffer and come back borrowed from
///   `handle_input` as [`ClientApp::Chunks`].
/// * [`Reliable`] ([`Client::with_chunks`]): the chunk layer with vital reliability, compression
///   and a reorder buffer: [`Client::send_vital`], [`Client::send_non_vital`] and
///   [`Client::poll_chunk`] (see [`Reliable`] and the `layer` section below).
///
/// # States
///
/// `Offline` → [`Client::connect`] → `Connecting` → CONNECT_ACCEPT → `Online` → `Closed` (local
/// close, peer CLOSE, timeout, connect timeout, or with the chunk layer a too weak connection).
/// The client connects once; to reconnect, create a new one. Its whole life has at most two
/// events, `Connected` and `Closed`, so the default queue of 4 never fills (and the client keeps
/// two event slots whatever `EVENTS` is: `EVENTS = 1` only makes it wait until `Connected` was
/// polled before it takes more input).
///
/// # Token mode and vanilla mode
///
/// By default the client sends the DDNet form `CONNECT | "TKEN" | FF FF FF FF` and learns its
/// security token from the `CONNECT_ACCEPT | "TKEN" | token` reply; from then on every packet in
/// both directions ends with the token, and incoming packets with another token are dropped
/// ([`ClientStats::dropped_wrong_token`]). A server that answers with a bare CONNECT_ACCEPT is a
/// vanilla server: the connection then runs without token. [`ClientConfig::with_vanilla`] makes
/// the client send the bare vanilla CONNECT itself. A CONNECT_ACCEPT whose token is one of the
/// two sentinels (`FF FF FF FF`, `00 00 00 00`, never minted by a server) is dropped and counted
/// ([`ClientStats::dropped_sentinel_token`]), not taken as a vanilla server.
///
/// # Forged CONNECT_ACCEPTs and what `Connected` promises
///
/// 0.6 has no client nonce: anyone who knows the client's address can send it a CONNECT_ACCEPT
/// with a token of their own. So until the connection is *confirmed* — a packet other than
/// CONNECT_ACCEPT that carries the token arrived after the ACCEPT ([`Client::is_confirmed`]) —
/// the client keeps two candidate tokens: a CONNECT_ACCEPT with a new token becomes the current
/// one (answered with ACCEPT, counted in [`ClientStats::token_candidates`]), the previous one
/// stays the alternative, and whichever of the two the server's next packets carry wins. A forged
/// CONNECT_ACCEPT that arrives before (or after) the genuine one therefore only delays the
/// confirmation until the server's first packet (its keep-alive after about 1 s, or its answer to
/// the first vital chunk). [`ClientEvent::Connected`] is emitted once, at the first
/// CONNECT_ACCEPT; see its docs. A sender that also forges the server's later packets can still
/// impersonate it: the token protects the server from spoofed clients, not the client.
///
/// # Ack and sequence
///
/// With [`ControlOnly`] the client implements the control plane only, not vital-chunk
/// sequencing. Every packet it sends carries its `ack`, the value the application last reported
/// with [`Client::set_ack`] (0 until then). Incoming packets must pass [`wire::ack_in_range`](super::wire::ack_in_range):
/// `peer_ack <= ack <= sequence` (mod 1024), where `peer_ack` is the last ack the server reported
/// and `sequence` the client's own last vital sequence number, reported with
/// [`Client::set_sequence`] (0 until then). Packets outside that range are dropped and counted in
/// [`ClientStats::dropped_bad_ack`]; with both values 0 only ack 0 is accepted, as in DDNet. With
/// [`Reliable`] the vital channel keeps both numbers itself.
///
/// # Compressed packets
///
/// A packet with the compression flag is decompressed **before** its token and ack are checked
/// (DDNet puts the token inside the compressed data): a compressed datagram with a wrong token is
/// dropped like any other and does not count as a sign of life. [`ControlOnly`] decodes it in
/// passing without a buffer (only the length and the last four bytes are kept) and hands the
/// payload out still compressed; [`Reliable`] decompresses it into its receive buffer. A
/// compressed control packet (vanilla 0.6.4 peers compress CLOSE when that is shorter) is
/// understood on a token-less connection; DDNet never sends one, so on a token connection it is
/// dropped.
///
/// Both compressed cases need the feature `control-huffman` (on by default; about 1.7 KB of
/// flash on Cortex-M). Without it a [`ControlOnly`] client drops every compressed datagram
/// (counted in [`ClientStats::dropped_malformed`]): compressed chunk packets then neither reach
/// the application nor count as a sign of life, and a compressed CLOSE is missed (the client
/// times out instead). [`Reliable`] decompresses chunk packets either way.
///
/// # Timers
///
/// * CONNECT is resent every [`ClientConfig::connect_resend`] (500 ms) while connecting;
///   [`ClientConfig::connect_timeout`] (10 s) after `connect` the client gives up
///   ([`CloseCause::ConnectTimeout`]).
/// * Online, a KEEP_ALIVE is sent when nothing was sent for [`ClientConfig::keep_alive`].
/// * Online, until the server sends anything besides CONNECT_ACCEPT, the client watches for a
///   lost ACCEPT: a DDNet server creates the connection only on ACCEPT, so a lost one leaves the
///   server without the connection while the client believes it is online. When nothing but
///   CONNECT_ACCEPT arrived for [`ClientConfig::accept_retry`] (2 s) after the ACCEPT, the client
///   starts over: CONNECT every [`ClientConfig::connect_resend`] until a CONNECT_ACCEPT arrives,
///   then ACCEPT again and another `accept_retry` of waiting.
/// * Online, the connection times out ([`CloseCause::Timeout`], no CLOSE sent) when nothing valid
///   arrived for [`ClientConfig::timeout`]; the deadline itself counts as expired.
/// * With [`Reliable`]: resends, flushes and resend requests of the vital channel, and the too
///   weak connection ([`CloseCause::TooWeak`], no CLOSE sent).
///
/// Time comes from the caller and must be monotonic; a step back is taken as no time passing
/// (see [`time`](crate::time)).
///
/// # Server info
///
/// [`Client::request_info`] sends a server-info request (what a server browser sends), also
/// before or without `connect`; the answers with its token come back as
/// [`ClientApp::ServerInfo`], as does the unsolicited update (token −1) a DDNet server sends its
/// players. This needs the feature `server-info` (on by default; about 1.7 KB of flash on
/// Cortex-M); without it connectionless datagrams are dropped
/// ([`ClientStats::dropped_connless`]).
///
/// ```
/// use tether_net::game::{Client, ClientConfig, ClientEvent};
/// use tether_net::{drain, Instant};
///
/// let mut client = Client::new(ClientConfig::default()); // Client<4>, no annotation needed
/// let small: Client<2> = Client::with_capacities(ClientConfig::default());
/// client.connect(Instant::ZERO).unwrap();
/// let mut buf = [0u8; 1400];
/// drain(&mut client, Instant::ZERO, &mut buf, |_, bytes| {
///     assert_eq!(bytes, b"\x10\x00\x00\x01TKEN\xff\xff\xff\xff"); // socket.send(bytes)
///     Ok::<(), ()>(())
/// }, |_, _: ClientEvent| {})
/// .unwrap();
/// # let _ = small;
/// ```
#[derive(Debug)]
pub struct Client<const EVENTS: usize = 4, L: Layer = ControlOnly> {
    config: ClientConfig,
    clock: Clock,
    state: ClientState,
    token: Option<Token>,
    /// While not confirmed: the other candidate token (`Some(None)`: a bare CONNECT_ACCEPT)
    alt_token: Option<Option<Token>>,
    ack: u16,
    sequence: u16,
    peer_ack: u16,
    /// Connecting: when `connect` was called (the connect timeout runs from it); online: when
    /// the last ACCEPT (or, while `retry_connecting`, the last retry CONNECT) was queued
    phase_at: Instant,
    last_send: Instant,
    last_recv: Instant,
    pending: Pending,
    /// Online, but nothing except CONNECT_ACCEPT received since ACCEPT (see `accept_retry`):
    /// the connection is not confirmed
    awaiting_server: bool,
    /// Lost-ACCEPT recovery is resending CONNECT (waiting for CONNECT_ACCEPT)
    retry_connecting: bool,
    /// Our CLOSE's reason, or after the server's CLOSE its reason (`peer_closed`)
    close_reason: KeptReason,
    peer_closed: bool,
    /// `close` was called while online: the CLOSE carries the token (which no longer changes)
    close_online: bool,
    /// The server-info query of `request_info`
    #[cfg(feature = "server-info")]
    info: Option<InfoRequest>,
    events: Events,
    stats: Counters,
    /// The chunk layer's state (nothing for [`ControlOnly`])
    chunks: <L as Imp>::Conn,
}

// The client's size on 32-bit targets (Cortex-M, wasm32), checked when the library is built
// for them (embedded/run.sh builds it for three Cortex-M targets): a field that grows it past
// the 256-byte budget of issue 14 fails here, not only in the footprint report. Its parts are
// listed in embedded/README.md (248 B with the default features, 240 B without).
#[cfg(target_pointer_width = "32")]
const _: () = assert!(core::mem::size_of::<Client>() <= 256);

impl Client {
    /// A control-only client in state `Offline` with the default event capacity (4: more than the
    /// two events of a client's life)
    ///
    /// For another capacity use [`Client::with_capacities`], for the chunk layer
    /// [`Client::with_chunks`].
    #[must_use]
    pub fn new(config: ClientConfig) -> Self {
        Self::with_capacities(config)
    }
}

impl<const EVENTS: usize> Client<EVENTS> {
    /// A control-only client in state `Offline` with an event queue of `EVENTS` entries (at least
    /// 1, checked at compile time)
    #[must_use]
    pub fn with_capacities(config: ClientConfig) -> Self {
        Self::build(config, ())
    }

    /// Report the client's current ack (last in-order vital sequence received), carried by every
    /// packet sent from now on; taken modulo 1024
    pub fn set_ack(&mut self, ack: u16) {
        self.ack = ack % ACK_MODULO;
    }

    /// Report the client's own last vital sequence number (upper end of the accepted incoming ack
    /// range); taken modulo 1024
    pub fn set_sequence(&mut self, sequence: u16) {
        self.sequence = sequence % ACK_MODULO;
    }

    /// Write one chunk packet straight into `out`: header (`flags`, the current ack,
    /// `num_chunks`), `payload`, then the token in token mode
    ///
    /// `flags.control` is ignored. When `flags.compression` is set the token is *not* appended:
    /// DDNet puts it inside the data before Huffman compression, so the caller appends
    /// [`Client::token`] before compressing. Sending counts as activity for the keep-alive timer.
    ///
    /// # Errors
    /// [`Error::NotOpen`] (not connected yet), [`Error::Closed`], [`Error::TooLong`] (over 1400
    /// bytes) or [`Error::BufferTooSmall`]; nothing was written and no state changed.
    pub fn send_chunks(
        &mut self,
        now: Instant,
        flags: Flags,
        num_chunks: u8,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<Transmit<()>, Error> {
        self.check_open()?;
        let len = super::write_chunks(flags, self.ack, num_chunks, payload, self.token, out)?;
        self.last_send = self.clock.update(now);
        self.pending.keep_alive = false;
        count(&mut self.stats.chunk_packets_sent);
        Ok(Transmit {
            to: (),
            len,
            kind: FrameKind::Datagram,
        })
    }
}

impl<const EVENTS: usize, const SB: usize, const SN: usize, const RB: usize, const RN: usize>
    Client<EVENTS, Reliable<SB, SN, RB, RN>>
{
    /// A client with the chunk layer in state `Offline`: vital channel, receive and construct
    /// buffers with the capacities of the type (see [`Reliable`])
    ///
    /// ```
    /// use tether_net::game::{ChunkConfig, Client, ClientConfig, Reliable};
    /// let client: Client<4, Reliable> = Client::with_chunks(ClientConfig::new(), ChunkConfig::fast());
    /// # let _ = client;
    /// ```
    #[must_use]
    pub fn with_chunks(config: ClientConfig, chunks: ChunkConfig) -> Self {
        Self::build(config, <Reliable<SB, SN, RB, RN> as Imp>::new_conn(chunks))
    }

    /// Queue a vital chunk: copied into the resend buffer with the next sequence number, which is
    /// returned; it goes out from `poll_transmit`, at once with `flush`, else with the next packet
    /// or after the flush timeout (DDNet flushes INFO, REQUEST_MAP_DATA, READY, ENTERGAME and
    /// game messages like Cl_StartInfo)
    ///
    /// # Errors
    /// [`Error::NotOpen`] (not online yet), [`Error::Closed`], [`Error::TooLong`] (more than 1023
    /// bytes), [`Error::TooManyInFlight`] (the resend buffer is full until the server acks);
    /// nothing was queued.
    pub fn send_vital(&mut self, now: Instant, data: &[u8], flush: bool) -> Result<u16, Error> {
        self.check_open()?;
        let now = self.clock.update(now);
        self.chunks
            .vital
            .queue(now, data, flush)
            .map_err(layer::queue_error)
    }

    /// Write a chunk packet into `out` now: this non-vital chunk (never acked or resent; DDNet
    /// sends INPUT this way), then every queued vital chunk that fits
    ///
    /// `out` must hold [`MAX_PACKET_LEN`](super::wire::MAX_PACKET_LEN) bytes.
    ///
    /// # Errors
    /// [`Error::NotOpen`], [`Error::Closed`], [`Error::TooLong`] (more than 1023 bytes),
    /// [`Error::BufferTooSmall`]; nothing was written and no state changed.
    pub fn send_non_vital(
        &mut self,
        now: Instant,
        data: &[u8],
        out: &mut [u8],
    ) -> Result<Transmit<()>, Error> {
        self.check_open()?;
        layer::check_non_vital(data, out)?;
        let now = self.clock.update(now);
        let c = &mut self.chunks;
        let (len, _) = layer::write_chunk_packet(
            &mut c.vital,
            &mut c.tx,
            now,
            self.token,
            c.config.compression(),
            Some(data),
            out,
        )?;
        self.sent_chunks(now);
        Ok(Transmit {
            to: (),
            len,
            kind: FrameKind::Datagram,
        })
    }

    /// The next chunk of the packet the last `handle_input` accepted
    /// ([`ClientApp::ChunksReady`]), borrowed from the client: non-vital chunks as they come,
    /// vital ones in sequence order exactly once (also those the reorder buffer releases); `None`
    /// when there is nothing more
    ///
    /// Read until `None` before the next input: the next chunk packet replaces this one, and
    /// vital chunks not read are not acknowledged (the server sends them again).
    #[must_use]
    pub fn poll_chunk(&mut self) -> Option<Chunk<'_>> {
        let now = self.clock.now();
        let c = &mut self.chunks;
        let next = layer::next_chunk(&mut c.rx, &mut c.vital, now);
        if let layer::Next::Done { malformed: true } = next {
            count(&mut self.stats.malformed_chunks);
        }
        let c = &self.chunks;
        layer::chunk_of(&c.rx, &c.vital, &next)
    }

    /// Counters of the vital channel (chunks sent, resent, delivered, duplicates, ...)
    #[must_use]
    pub fn chunk_stats(&self) -> VitalStats {
        *self.chunks.vital.stats()
    }

    /// Vital chunks sent or queued and not acknowledged yet
    #[must_use]
    pub fn unacked(&self) -> usize {
        self.chunks.vital.unacked()
    }
}

impl<const EVENTS: usize, L: Layer> Client<EVENTS, L> {
    fn build(config: ClientConfig, chunks: <L as Imp>::Conn) -> Self {
        const {
            assert!(
                EVENTS >= 1,
                "a game Client needs room for at least one event"
            )
        };
        Client {
            config,
            clock: Clock::new(),
            state: ClientState::Offline,
            token: None,
            alt_token: None,
            ack: 0,
            sequence: 0,
            peer_ack: 0,
            phase_at: Instant::ZERO,
            last_send: Instant::ZERO,
            last_recv: Instant::ZERO,
            pending: Pending::default(),
            awaiting_server: false,
            retry_connecting: false,
            close_reason: KeptReason::Copied(heapless::Vec::new()),
            peer_closed: false,
            close_online: false,
            #[cfg(feature = "server-info")]
            info: None,
            events: Events::default(),
            stats: Counters::default(),
            chunks,
        }
    }

    /// Feed one datagram from the server
    ///
    /// Always consumes the whole datagram, also when it is dropped (counted in
    /// [`Client::stats`]). A chunk packet of the online connection comes back as
    /// [`ClientApp::Chunks`] ([`ControlOnly`]) or [`ClientApp::ChunksReady`] ([`Reliable`]: read
    /// it with [`Client::poll_chunk`]); the server's CLOSE as [`ClientApp::Close`] with its reason
    /// (the `Closed` event follows from `poll_event`); a server-info answer to
    /// [`Client::request_info`] as [`ClientApp::ServerInfo`].
    ///
    /// # Errors
    /// [`Error::QueueFull`]: nothing was consumed or changed; drain `poll_event` and feed the
    /// same datagram again.
    pub fn handle_input<'a>(
        &mut self,
        now: Instant,
        _from: (),
        data: &'a [u8],
    ) -> Result<Received<ClientApp<'a>>, Error> {
        let n = data.len();
        if data.first().is_some_and(|&b| b & FLAG_CONNLESS != 0) {
            self.clock.update(now);
            return Ok(Received::maybe(n, self.handle_connless(data)));
        }
        match self.state {
            ClientState::Offline | ClientState::Closed => {
                self.clock.update(now);
                count(&mut self.stats.ignored_closed);
                return Ok(Received::consumed(n));
            }
            ClientState::Connecting | ClientState::Online => {}
        }
        if self.events_full() {
            return Err(Error::QueueFull);
        }
        let now = self.clock.update(now);
        let handled = self.handle_datagram(now, data);
        let app = layer::counted(
            handled,
            &mut self.stats.dropped_malformed,
            &mut self.stats.dropped_wrong_token,
        );
        Ok(Received::maybe(n, app))
    }

    /// Let timers fire: CONNECT resend, connect timeout, keep-alive, lost-ACCEPT recovery,
    /// timeout, and the chunk layer's resends and too-weak check; a call before
    /// [`Client::poll_timeout`] does nothing
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock.update(now);
        match self.state {
            ClientState::Connecting => {
                if now >= self.phase_at.add_micros(self.config.connect_timeout) {
                    if !self.events_full() {
                        self.finish(CloseCause::ConnectTimeout);
                    }
                } else if !self.pending.connect
                    && now >= self.last_send.add_micros(self.config.connect_resend)
                {
                    self.pending.connect = true;
                }
            }
            ClientState::Online => {
                if now >= self.last_recv.add_micros(self.config.timeout) {
                    if !self.events_full() {
                        self.finish(CloseCause::Timeout);
                    }
                    return;
                }
                let mut wants_ack = false;
                if let Some(p) = L::conn(&mut self.chunks) {
                    if let Err(weak) = p.vital.handle_timeout(now) {
                        if !self.events_full() {
                            self.finish(CloseCause::TooWeak(weak));
                        }
                        return;
                    }
                    wants_ack = p.vital.needs_ack(now);
                }
                if let Some(at) = self.accept_retry_at() {
                    if now >= at {
                        self.pending.connect = true;
                        self.phase_at = now;
                        if !self.retry_connecting {
                            self.retry_connecting = true;
                            count(&mut self.stats.accept_retries);
                        }
                    }
                }
                if !self.has_pending()
                    && (wants_ack || now >= self.last_send.add_micros(self.config.keep_alive))
                {
                    self.pending.keep_alive = true;
                }
            }
            ClientState::Offline | ClientState::Closed => {}
        }
    }

    /// Write the next frame into `buf`: a server-info request, then CLOSE, CONNECT, ACCEPT, then
    /// (chunk layer) a due chunk packet, then KEEP_ALIVE
    ///
    /// # Errors
    /// [`BufferTooSmall`] with the exact size when `buf` cannot hold the frame; it stays queued.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<Transmit<()>>, BufferTooSmall> {
        let now = self.clock.update(now);
        let sent = |len| {
            Ok(Some(Transmit {
                to: (),
                len,
                kind: FrameKind::Datagram,
            }))
        };
        #[cfg(feature = "server-info")]
        if self.pending.info && self.state != ClientState::Closed {
            if let Some(q) = self.info {
                let len = q.emit(buf)?;
                self.pending.info = false;
                count(&mut self.stats.info_requests_sent);
                return sent(len);
            }
        }
        if let Some((packet, which)) = self.next_frame(false) {
            let len = packet.emit(buf)?;
            self.frame_sent(now, which);
            return sent(len);
        }
        if self.state == ClientState::Online {
            let mut built = false;
            if let Some(p) = L::conn(&mut self.chunks) {
                if p.out.is_empty() && p.vital.needs_packet(now) {
                    let compress = p.config.compression();
                    // the writer stays within the payload limit: no error is reachable
                    if let Ok((len, _)) = layer::write_chunk_packet(
                        p.vital,
                        p.tx,
                        now,
                        self.token,
                        compress,
                        None,
                        p.out.buf(),
                    ) {
                        p.out.set(len);
                        built = true;
                    }
                }
            }
            if built {
                self.sent_chunks(now);
            }
            if let Some(p) = L::conn(&mut self.chunks) {
                if !p.out.is_empty() {
                    let len = p.out.take_into(buf)?;
                    return sent(len);
                }
            }
        }
        if let Some((packet, which)) = self.next_frame(true) {
            let len = packet.emit(buf)?;
            self.frame_sent(now, which);
            return sent(len);
        }
        Ok(None)
    }

    /// The next event: `Connected`, then `Closed` (always the last)
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop()
    }

    /// When [`Client::handle_timeout`] must be called next, in the caller's clock: CONNECT resend
    /// or connect timeout while connecting, keep-alive, lost-ACCEPT recovery, timeout and the
    /// chunk layer's timers while online; `None` when offline or closed
    ///
    /// Never more than 30 days ([`MAX_DELAY`](crate::time::MAX_DELAY)) after the latest `now`.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_deadline().map(|t| self.clock.to_caller(t))
    }

    /// Start connecting: queue the first CONNECT
    ///
    /// # Errors
    /// [`Error::AlreadyStarted`] when `connect` was called before, [`Error::Closed`] when the
    /// client is closed; nothing changed.
    pub fn connect(&mut self, now: Instant) -> Result<(), Error> {
        match self.state {
            ClientState::Offline => {}
            ClientState::Closed => return Err(Error::Closed),
            ClientState::Connecting | ClientState::Online => return Err(Error::AlreadyStarted),
        }
        let now = self.clock.update(now);
        self.state = ClientState::Connecting;
        self.phase_at = now;
        self.last_send = now;
        self.pending.connect = true;
        Ok(())
    }

    /// Close the connection: queue CLOSE with `reason` and end in `Closed` with
    /// [`CloseCause::Local`]
    ///
    /// `reason` may be empty; it is cut at a NUL, and the client keeps its first
    /// [`KEPT_REASON_LEN`] bytes (cut on a char boundary) until the CLOSE is written: that is
    /// what the CLOSE carries. [`Client::close_static`] sends a longer constant text whole. The
    /// CLOSE carries the current ack and, in token mode while online, the token; while connecting
    /// no token is known yet, so it is the bare form. When `connect` was never called nothing is
    /// sent. The `Closed` event is queued at once; the CLOSE comes from the next `poll_transmit`.
    ///
    /// # Errors
    /// [`Error::Closed`] when already closed, [`Error::QueueFull`]; nothing changed.
    pub fn close(&mut self, now: Instant, reason: &str) -> Result<(), Error> {
        self.check_may_close()?;
        self.keep_reason(Reason::from_str(reason));
        self.close_with(now);
        Ok(())
    }

    /// [`Client::close`] with a reason that lives as long as the program: nothing is copied, and
    /// the CLOSE carries up to 127 bytes of it (cut at a NUL, then on a char boundary: what DDNet
    /// reads at most)
    ///
    /// # Errors
    /// [`Error::Closed`] when already closed, [`Error::QueueFull`]; nothing changed.
    pub fn close_static(&mut self, now: Instant, reason: &'static str) -> Result<(), Error> {
        self.check_may_close()?;
        self.close_reason = KeptReason::Static(reason);
        self.close_with(now);
        Ok(())
    }

    /// `close` may go ahead: not closed yet, and room for the `Closed` event
    fn check_may_close(&self) -> Result<(), Error> {
        if self.state == ClientState::Closed {
            return Err(Error::Closed);
        }
        if self.events_full() {
            return Err(Error::QueueFull);
        }
        Ok(())
    }

    /// The rest of `close`, once the reason is kept
    fn close_with(&mut self, now: Instant) {
        self.clock.update(now);
        let send = self.state != ClientState::Offline;
        self.close_online = self.state == ClientState::Online;
        self.finish(CloseCause::Local);
        self.pending.close = send;
    }

    /// Send a server-info request (`gie3`, what a server browser or status bot sends) with
    /// `token`; `extended` uses DDNet's "xe" header (24-bit token, answered with `iext`)
    ///
    /// Works in any state but `Closed`, also before `connect`. Answers carrying the request's
    /// token (8 bits, or 24 with `extended`) come back from `handle_input` as
    /// [`ClientApp::ServerInfo`]; a later call replaces the query. There is no retry timer: a
    /// lost request or answer is the caller's to repeat (servers rate-limit answers).
    ///
    /// Feature `server-info` (on by default).
    ///
    /// # Errors
    /// [`Error::Closed`].
    #[cfg(feature = "server-info")]
    pub fn request_info(&mut self, now: Instant, token: u32, extended: bool) -> Result<(), Error> {
        if self.state == ClientState::Closed {
            return Err(Error::Closed);
        }
        self.clock.update(now);
        self.info = Some(InfoRequest {
            kind: InfoRequestKind::Info,
            extended,
            token: token & if extended { 0xFF_FFFF } else { 0xFF },
        });
        self.pending.info = true;
        Ok(())
    }

    /// Where the client is
    #[must_use]
    pub fn state(&self) -> ClientState {
        self.state
    }

    /// The current security token (`None` in vanilla mode); see [`ClientEvent::Connected`] for
    /// when it may still change
    #[must_use]
    pub fn token(&self) -> Option<Token> {
        self.token
    }

    /// True once a packet other than CONNECT_ACCEPT carrying the token arrived after the ACCEPT:
    /// the server has the connection and the token is final (see [`ClientEvent::Connected`])
    #[must_use]
    pub fn is_confirmed(&self) -> bool {
        self.state == ClientState::Online && !self.awaiting_server
    }

    /// The ack the client sends (see [`Client::set_ack`]; with the chunk layer, the vital
    /// channel's)
    #[must_use]
    pub fn ack(&self) -> u16 {
        L::conn_channel(&self.chunks).map_or(self.ack, |v| v.ack())
    }

    /// The last ack the server reported
    #[must_use]
    pub fn peer_ack(&self) -> u16 {
        L::conn_channel(&self.chunks).map_or(self.peer_ack, |v| v.peer_ack())
    }

    /// The reason of the server's CLOSE, once the client closed because of one: its first
    /// [`KEPT_REASON_LEN`] bytes, cut on a char boundary (the whole text came out of
    /// `handle_input` as [`ClientApp::Close`]; the kept part is the only text of a
    /// Huffman-compressed CLOSE, which `ClientApp::Close` cannot carry)
    #[must_use]
    pub fn peer_close_reason(&self) -> Option<PeerText<'_>> {
        self.peer_closed
            .then(|| PeerText::new(self.close_reason.as_bytes()))
    }

    /// The configuration
    #[must_use]
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Counters
    #[must_use]
    pub fn stats(&self) -> ClientStats {
        self.stats.widen()
    }

    /// Online: `Err(NotOpen)` before, `Err(Closed)` after
    fn check_open(&self) -> Result<(), Error> {
        match self.state {
            ClientState::Online => Ok(()),
            ClientState::Closed => Err(Error::Closed),
            ClientState::Offline | ClientState::Connecting => Err(Error::NotOpen),
        }
    }

    /// A chunk packet went out at `now`
    fn sent_chunks(&mut self, now: Instant) {
        self.last_send = now;
        self.pending.keep_alive = false;
        count(&mut self.stats.chunk_packets_sent);
    }

    /// A control frame went out at `now`
    fn frame_sent(&mut self, now: Instant, which: Which) {
        match which {
            Which::Close => self.pending.close = false,
            Which::Connect => {
                self.pending.connect = false;
                count(&mut self.stats.connects_sent);
            }
            Which::Accept => self.pending.accept = false,
            Which::KeepAlive => {
                self.pending.keep_alive = false;
                count(&mut self.stats.keep_alives_sent);
                if let Some(p) = L::conn(&mut self.chunks) {
                    p.vital.note_sent(now);
                }
            }
        }
        self.last_send = now;
    }

    /// The next deadline in machine time (see `time::Clock`)
    fn next_deadline(&self) -> Option<Instant> {
        match self.state {
            ClientState::Connecting => {
                let give_up = self.phase_at.add_micros(self.config.connect_timeout);
                let resend = (!self.pending.connect)
                    .then(|| self.last_send.add_micros(self.config.connect_resend));
                earliest(Some(give_up), resend)
            }
            ClientState::Online => {
                let timeout = self.last_recv.add_micros(self.config.timeout);
                let keep_alive = (!self.has_pending())
                    .then(|| self.last_send.add_micros(self.config.keep_alive));
                // a vital deadline that passed (the oldest chunk changed when an ack released
                // the one before it) is due now
                let vital = L::conn_channel(&self.chunks)
                    .and_then(|v| v.poll_timeout())
                    .map(|t| t.max(self.clock.now()));
                earliest(
                    earliest(earliest(Some(timeout), keep_alive), self.accept_retry_at()),
                    vital,
                )
            }
            ClientState::Offline | ClientState::Closed => None,
        }
    }

    /// Enter `Closed` and queue the one `Closed` event (caller checked there is room)
    fn finish(&mut self, cause: CloseCause) {
        self.state = ClientState::Closed;
        self.pending = Pending::default();
        if let Some(p) = L::conn(&mut self.chunks) {
            // a packet left in `out` is never handed out: `Closed` is final
            p.rx.clear();
        }
        // Room was checked by every caller; a full queue cannot happen here.
        self.events.closed = Some(cause);
    }

    /// Something besides CONNECT_ACCEPT came from the server with the token: it has the
    /// connection, the token is final
    fn heard_server(&mut self) {
        self.awaiting_server = false;
        self.retry_connecting = false;
        self.alt_token = None;
    }

    /// When the next lost-ACCEPT retry (or retry CONNECT resend) is due, if one is armed
    fn accept_retry_at(&self) -> Option<Instant> {
        let retry = self.config.accept_retry;
        let armed = retry != 0
            && self.state == ClientState::Online
            && self.awaiting_server
            && !self.pending.connect
            && !self.pending.accept;
        let wait = if self.retry_connecting {
            self.config.connect_resend
        } else {
            retry
        };
        armed.then(|| self.phase_at.add_micros(wait))
    }

    /// The event queue holds `EVENTS` events: an input that may queue one must wait
    fn events_full(&self) -> bool {
        self.events.len() >= EVENTS
    }

    fn has_pending(&self) -> bool {
        let p = &self.pending;
        p.connect || p.accept || p.keep_alive || p.close
    }

    /// A connectionless datagram: a server-info answer to our query (or the unsolicited update,
    /// token −1, while online), anything else dropped
    #[cfg(feature = "server-info")]
    fn handle_connless<'a>(&mut self, data: &'a [u8]) -> Option<ClientApp<'a>> {
        let wanted = match ServerInfo::parse(data) {
            Ok(info) if self.state != ClientState::Closed => {
                let ours = self.info.is_some_and(|q| info.token == q.answer_token());
                let update = info.token == -1 && self.state == ClientState::Online;
                (ours || update).then_some(info)
            }
            _ => None,
        };
        match wanted {
            Some(info) => {
                count(&mut self.stats.info_answers);
                Some(ClientApp::ServerInfo(info))
            }
            None => {
                count(&mut self.stats.dropped_connless);
                None
            }
        }
    }

    /// Without the `server-info` feature every connectionless datagram is dropped
    #[cfg(not(feature = "server-info"))]
    fn handle_connless<'a>(&mut self, _: &'a [u8]) -> Option<ClientApp<'a>> {
        count(&mut self.stats.dropped_connless);
        None
    }

    /// How to read a packet whose last four (decompressed) bytes are `tail` and whose control id
    /// is `id` (`None`: a chunk packet): the token mode, and whether the alternative candidate
    /// token is the one (see "Forged CONNECT_ACCEPTs" on [`Client`])
    fn read_mode(&self, id: Option<u8>, tail: Option<Token>) -> Option<(TokenMode, bool)> {
        if self.state == ClientState::Connecting {
            return Some((TokenMode::Detect, false));
        }
        if self.awaiting_server && !self.config.vanilla {
            if id == Some(ControlId::ConnectAccept as u8) {
                return Some((TokenMode::Detect, false));
            }
            if self.token.is_some() && tail == self.token {
                return Some((TokenMode::Trailing, false));
            }
            if let Some(Some(alt)) = self.alt_token {
                if tail == Some(alt) {
                    return Some((TokenMode::Trailing, true));
                }
            }
            if self.token.is_none() {
                return Some((TokenMode::Vanilla, false));
            }
            if self.alt_token == Some(None) {
                return Some((TokenMode::Vanilla, true));
            }
            // no candidate fits: read it with the current token, which drops it (wrong token,
            // or malformed when it is not even a packet)
            return Some((TokenMode::Trailing, false));
        }
        Some(match self.token {
            Some(_) => (TokenMode::Trailing, false),
            None => (TokenMode::Vanilla, false),
        })
    }

    /// A datagram while connecting or online (the event queue has room)
    fn handle_datagram<'a>(
        &mut self,
        now: Instant,
        data: &'a [u8],
    ) -> Result<Option<ClientApp<'a>>, Dropped> {
        let b0 = layer::first_byte(data)?;
        if b0 & FLAG_COMPRESSION != 0 {
            return self.handle_compressed(now, b0, data);
        }
        let id = (b0 & FLAG_CONTROL != 0).then(|| data.get(HEADER_LEN).copied().unwrap_or(0xff));
        let (mode, swap) = self
            .read_mode(id, tail_token(data))
            .ok_or(Dropped::Silent)?;
        let pkt = parse(data, mode)?;
        let outcome = self.process(now, mode, swap, pkt);
        Ok(self.app_of(outcome))
    }

    /// A datagram with the compression flag: decompressed (into the receive buffer, or in passing
    /// without a buffer) before anything else is looked at
    fn handle_compressed<'a>(
        &mut self,
        now: Instant,
        b0: u8,
        data: &'a [u8],
    ) -> Result<Option<ClientApp<'a>>, Dropped> {
        if b0 & FLAG_CONTROL != 0 {
            // decoded into a small buffer: only vanilla 0.6.4 peers send these, without token
            let mut small = layer::Small::new();
            let small = &mut small.0;
            let total = layer::decompress_control(data, small)?;
            let len = (HEADER_LEN + total).min(SMALL_LEN);
            let id = small.get(HEADER_LEN).copied();
            let (mode, swap) = self.read_mode(id, None).ok_or(Dropped::Silent)?;
            if mode == TokenMode::Trailing || total + HEADER_LEN > SMALL_LEN {
                // DDNet never compresses control packets; on a token connection drop them
                return Err(Dropped::Malformed);
            }
            let pkt = parse(&small[..len], mode)?;
            return Ok(match self.process(now, mode, swap, pkt) {
                Outcome::Close(reason) => {
                    self.keep_peer_reason(reason);
                    Some(ClientApp::Close {
                        reason: PeerText::new(&[]),
                    })
                }
                _ => None,
            });
        }
        let rx = L::conn(&mut self.chunks).map(|p| p.rx);
        let packet = layer::decompress_chunks(rx, data)?;
        let (mode, swap) = self.read_mode(None, packet.tail).ok_or(Dropped::Silent)?;
        let pkt = packet.packet(mode)?;
        let outcome = self.process(now, mode, swap, pkt);
        Ok(self.app_of(outcome))
    }

    /// What an accepted packet gives the application
    fn app_of<'a>(&mut self, outcome: Outcome<'a>) -> Option<ClientApp<'a>> {
        match outcome {
            Outcome::Nothing => None,
            Outcome::Close(reason) => {
                self.keep_peer_reason(reason);
                Some(ClientApp::Close {
                    reason: reason.text(),
                })
            }
            Outcome::Chunks(chunks) => {
                let rx = L::conn(&mut self.chunks).map(|p| p.rx);
                layer::deliver(rx, chunks, ClientApp::Chunks, ClientApp::ChunksReady)
            }
        }
    }

    /// The token, ack and state checks of a decoded packet, then what it does (out of line: three
    /// callers, one copy in a firmware)
    #[inline(never)]
    fn process<'p>(
        &mut self,
        now: Instant,
        mode: TokenMode,
        swap: bool,
        pkt: Pkt<'p>,
    ) -> Outcome<'p> {
        // the token the packet must carry
        let expect = if swap {
            self.alt_token.flatten()
        } else {
            self.token
        };
        let marks = pkt.marks();
        if mode == TokenMode::Trailing && marks.token != expect {
            count(&mut self.stats.dropped_wrong_token);
            return Outcome::Nothing;
        }
        let vital = L::conn(&mut self.chunks).map(|p| p.vital);
        if !layer::ack_ok(vital, now, &marks, self.peer_ack, self.sequence) {
            count(&mut self.stats.dropped_bad_ack);
            return Outcome::Nothing;
        }
        self.peer_ack = marks.ack;
        if swap {
            let old = self.token;
            self.token = expect;
            self.alt_token = Some(old);
        }
        if !marks.warnings.is_empty() {
            count(&mut self.stats.warnings);
        }
        match pkt {
            Pkt::Control { c, .. } => self.handle_control(now, c),
            Pkt::Chunks(chunks) => {
                if self.state != ClientState::Online {
                    count(&mut self.stats.dropped_not_online);
                    return Outcome::Nothing;
                }
                self.last_recv = now;
                self.heard_server();
                count(&mut self.stats.chunk_packets_received);
                Outcome::Chunks(chunks)
            }
        }
    }

    fn handle_control<'p>(&mut self, now: Instant, c: ControlPacket<'p>) -> Outcome<'p> {
        match (self.state, c.control) {
            (_, Control::Close(reason)) => {
                self.finish(CloseCause::Peer);
                return Outcome::Close(reason);
            }
            (ClientState::Connecting, Control::ConnectAccept) => {
                // In vanilla mode a TKEN reply is still answered without token: we promised the
                // server nothing, and a DDNet server treats our bare CONNECT as vanilla anyway.
                let token = if self.config.vanilla { None } else { c.token };
                if token.is_some_and(|t| t.is_sentinel()) {
                    count(&mut self.stats.dropped_sentinel_token);
                    return Outcome::Nothing;
                }
                self.token = token;
                self.alt_token = None;
                self.state = ClientState::Online;
                self.pending.connect = false;
                self.pending.accept = true;
                self.awaiting_server = true;
                self.phase_at = now;
                self.last_recv = now;
                // Room was checked at the top of handle_input.
                self.events.connected = Some(self.token);
            }
            (ClientState::Online, Control::ConnectAccept) => {
                let token = if self.config.vanilla { None } else { c.token };
                if token.is_some_and(|t| t.is_sentinel()) {
                    count(&mut self.stats.dropped_sentinel_token);
                    return Outcome::Nothing;
                }
                if token == self.token {
                    self.last_recv = now;
                    // Only the answer to a retry CONNECT gets another ACCEPT. A late or duplicated
                    // answer to an earlier CONNECT does not: a DDNet server takes an ACCEPT on an
                    // existing connection as a "rejoin" and resets that connection.
                    if self.awaiting_server && self.retry_connecting {
                        self.pending.connect = false;
                        self.pending.accept = true;
                        self.retry_connecting = false;
                        self.phase_at = now;
                    }
                } else if self.awaiting_server && self.alt_token != Some(token) {
                    // another candidate (see "Forged CONNECT_ACCEPTs"): it becomes the current
                    // token and is answered; the previous one stays the alternative
                    self.alt_token = Some(self.token);
                    self.token = token;
                    self.pending.connect = false;
                    self.pending.accept = true;
                    self.retry_connecting = false;
                    self.phase_at = now;
                    count(&mut self.stats.token_candidates);
                }
            }
            (ClientState::Online, Control::KeepAlive) => {
                self.last_recv = now;
                self.heard_server();
                count(&mut self.stats.keep_alives_received);
            }
            (ClientState::Online, _) => {
                self.last_recv = now;
                self.heard_server();
            }
            // Connecting: KEEP_ALIVE, CONNECT, ACCEPT are ignored
            _ => {}
        }
        Outcome::Nothing
    }

    /// Keep the server's CLOSE reason (for [`Client::peer_close_reason`])
    fn keep_peer_reason(&mut self, reason: Reason<'_>) {
        self.keep_reason(reason);
        self.peer_closed = true;
    }

    /// Keep `reason` (ours until its CLOSE is written, or the server's): its first
    /// [`KEPT_REASON_LEN`] bytes
    fn keep_reason(&mut self, reason: Reason<'_>) {
        let bytes = reason.as_bytes();
        let mut end = bytes.len().min(KEPT_REASON_LEN);
        // back to the start of a UTF-8 sequence (a continuation byte is 10xxxxxx), at most three
        // bytes (a sequence is at most four long): a peer's text need not be UTF-8
        let least = end.saturating_sub(3);
        while end > least && bytes.get(end).is_some_and(|b| b & 0xc0 == 0x80) {
            end -= 1;
        }
        let mut kept = heapless::Vec::new();
        // at most KEPT_REASON_LEN bytes: fits
        let _ = kept.extend_from_slice(&bytes[..end]);
        self.close_reason = KeptReason::Copied(kept);
    }

    /// The next control frame to send, if any, and which pending flag it clears; the
    /// KEEP_ALIVE only when `keep_alive` (it comes after a chunk packet)
    fn next_frame(&self, keep_alive: bool) -> Option<(ControlPacket<'_>, Which)> {
        let p = &self.pending;
        let (control, token, which) = if p.close {
            (
                Control::Close(Reason::from_bytes(self.close_reason.as_bytes())),
                if self.close_online { self.token } else { None },
                Which::Close,
            )
        } else if p.connect {
            let token = if self.config.vanilla {
                None
            } else {
                Some(Token::UNKNOWN)
            };
            (Control::Connect, token, Which::Connect)
        } else if p.accept {
            (Control::Accept, self.token, Which::Accept)
        } else if p.keep_alive && keep_alive {
            (Control::KeepAlive, self.token, Which::KeepAlive)
        } else {
            return None;
        };
        Some((
            ControlPacket {
                ack: self.ack(),
                control,
                token,
            },
            which,
        ))
    }
}

/// Which pending flag a frame came from
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Connect,
    Accept,
    KeepAlive,
    Close,
}

#[cfg(feature = "defmt")]
impl<const EVENTS: usize, L: Layer> defmt::Format for Client<EVENTS, L> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "Client {{ state: {}, token: {}, ack: {}, peer_ack: {} }}",
            self.state,
            self.token,
            self.ack(),
            self.peer_ack()
        );
    }
}

crate::machine::impl_machine! {
    impl[const EVENTS: usize, L: Layer] for Client<EVENTS, L> {
        Peer = (),
        Event = ClientEvent,
        App<'a> = ClientApp<'a>,
        Error = Error,
    }
}
