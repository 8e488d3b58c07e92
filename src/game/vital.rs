//! Vital reliability: sequencing, acks, in-order delivery and resends of vital chunks
//!
//! Teeworlds 0.6 / DDNet make *vital* chunks reliable per connection, in both directions, with
//! the same rules on client and server (DDNet `src/engine/shared/network_conn.cpp`):
//!
//! * **Sequence.** Each side numbers its vital chunks 1, 2, … 1023, 0, 1, … (10 bits; the counter
//!   starts at 0 and is incremented before use). Every packet header carries `ack`, the last
//!   sequence received *in order* from the peer.
//! * **Receive.** A vital chunk with `seq == ack + 1` is delivered and becomes the ack. One in the
//!   *backroom* — the 513 values `ack - 512 ..= ack` — is a duplicate and dropped. Any other is out
//!   of order: the reference drops it and sets the RESEND flag (0x40) in the header of its next
//!   packet. Non-vital chunks are delivered as they come, never acked or resent.
//! * **Send.** A vital chunk is kept in a resend buffer until an ack covers it. A packet with the
//!   RESEND flag makes the peer re-send *every* unacked chunk (with the chunk flag R); independently
//!   the oldest unacked chunk is re-sent when its last send is more than 1 s old.
//! * **Give up.** The reference closes a connection whose oldest unacked chunk was first sent more
//!   than `conn_timeout` ago ("Too weak connection (not acked for 100 seconds)"; vanilla 0.6:
//!   10 s), and vanilla 0.6 also when the resend buffer overflows ("too weak connection (out of
//!   buffer)").
//!
//! [`Vital`] implements this for one connection, usable by either role. It is opt-in: a machine
//! that only needs the control layer does not hold one and keeps its memory. Its capacities are
//! const generics: `SEND_BYTES` / `SEND_CHUNKS` for the resend buffer (chunks are copied into a
//! fixed byte arena), `REORDER_BYTES` / `REORDER_CHUNKS` for the optional reorder buffer. Time
//! comes in as [`Instant`] arguments; the channel never reads a clock. The 10-bit sequence
//! arithmetic is in [`seq`]; the ack check is the codec's [`ack_in_range`].
//!
//! # Beyond the reference under loss ([`VitalConfig::fast`])
//!
//! Copying the reference timers gives about 4 map pieces per second through a link that loses
//! 30 % of the datagrams each way (a live DDNet 16.4 download fetched 564 of 1,209 pieces in
//! 150 s). The fast preset changes only what this side does, so every packet stays valid for
//! DDNet 16.4 and newer:
//!
//! * out-of-order chunks up to 255 ahead of the ack are kept in a reorder buffer and delivered
//!   when the gap is filled (the ack stays cumulative, duplicates are still recognised);
//! * the RESEND flag goes out at once after a gap, in a chunk-less packet when nothing else is
//!   queued, at most every 100 ms (newer DDNet versions ignore more than 10 a second), and is
//!   repeated every 200 ms while the reorder buffer shows the gap still open;
//! * 250 ms after the last send of the oldest unacked chunk, every unacked chunk is re-sent, not
//!   only the oldest: when the peer is idle it often holds the oldest already (its ack was lost)
//!   while a later one is missing, and an idle reference peer asks for nothing.
//!
//! In `tests/game_chunks_vital.rs` a 1,209-piece download from a server with 16.4's behaviour
//! (reference timers, 16 pieces in flight, one MAP_DATA per packet, every request answered)
//! through 30 % loss each way finishes in about 32–35 virtual seconds with the fast preset and not
//! within 300 s with the reference timers; without the all-chunk timer resend the client gives up
//! ("not acked") or needs about 60 s, without the repeated request about 60–75 s.
//!
//! Two further choices apply in both presets: a peer's RESEND request is answered at most every
//! 100 ms (newer DDNet versions do the same: it makes a resend storm from a hostile or broken peer
//! cost at most 10 buffer resends a second), and chunks acked by the packet that carries the
//! request are not re-sent (the reference processes the request first and re-sends them too).
//!
//! # How a machine drives it
//!
//! ```text
//! send:     queue(now, data, flush)            copy a vital chunk in, get its sequence
//!           poll_timeout() / handle_timeout(now)   timers: resend of the oldest, give-up check
//!           needs_packet(now)                 true: build a packet now
//!           fill(now, &mut ChunkWriter)        add resends and queued chunks; gives the header's
//!                                              resend flag and ack (poll_packet does both)
//!           note_sent(now)                     any other packet that carried ack() (keep-alive)
//! receive:  on_packet(now, &header)            every accepted packet, control ones too: ack check,
//!                                              trims the resend buffer, peer's RESEND flag
//!           on_chunk(now, &chunk)              each chunk in order: Deliver / Duplicate /
//!                                              Buffered / Gap; after each Deliver drain
//!           next_ready()                       chunks the reorder buffer can now deliver
//! ```
//!
//! ```
//! use tether_net::game::chunk::{payload_limit, ChunkWriter, Chunks};
//! use tether_net::game::vital::{Receive, Vital, VitalConfig};
//! use tether_net::game::wire::{Flags, Header};
//! use tether_net::Instant;
//!
//! let mut a: Vital<4096, 32> = Vital::new(VitalConfig::reference());
//! let mut b: Vital<4096, 32> = Vital::new(VitalConfig::reference());
//! let now = Instant::from_millis(10);
//!
//! assert_eq!(a.queue(now, b"\x27\x00", true), Ok(1)); // first vital sequence is 1
//! let mut buf = [0u8; 1400];
//! let mut w = ChunkWriter::new(&mut buf, payload_limit(true));
//! let f = a.poll_packet(now, &mut w).unwrap().expect("a flushed chunk is due");
//! let header = Header { flags: Flags { resend: f.resend_request, ..Flags::default() }, ack: f.ack, num_chunks: w.num_chunks() };
//!
//! // the peer
//! b.on_packet(now, &header).unwrap();
//! for chunk in Chunks::new(w.as_bytes(), header.num_chunks) {
//!     assert_eq!(b.on_chunk(now, &chunk.unwrap()), Receive::Deliver);
//! }
//! assert_eq!(b.ack(), 1);
//! // b's next packet (here: a keep-alive) carries ack 1 and releases the chunk at a
//! let ack = Header { flags: Flags::default(), ack: b.ack(), num_chunks: 0 };
//! a.on_packet(now, &ack).unwrap();
//! assert_eq!(a.unacked(), 0);
//! ```

use core::fmt;

use super::chunk::{copy_short, Chunk, ChunkFlags, ChunkWriter, MAX_CHUNK_SIZE};
use super::wire::{ack_in_range, Header};
use crate::config::{config_fmt, getters, setters};
use crate::time::{
    clamp_micros, clamp_micros_some, duration_from_micros, duration_from_micros_some, Duration,
    Instant,
};

/// 10-bit sequence and ack arithmetic (everything modulo 1024)
pub mod seq {
    /// Sequence numbers count modulo this (the same 10-bit space as the packet ack)
    pub const MODULO: u16 = crate::game::wire::ACK_MODULO;
    /// Size of the backroom window below an ack, the ack excluded
    pub const HALF: u16 = MODULO / 2;

    /// The sequence after `s`
    #[must_use]
    #[inline]
    pub const fn next(s: u16) -> u16 {
        (s % MODULO + 1) % MODULO
    }

    /// Steps forward from `from` to `to` (0..=1023)
    #[must_use]
    #[inline]
    pub const fn distance(from: u16, to: u16) -> u16 {
        (to % MODULO + MODULO - from % MODULO) % MODULO
    }

    /// True when `seq` is in the backroom of `ack`: one of the 513 values `ack - 512 ..= ack`,
    /// i.e. already received (DDNet `IsSeqInBackroom`)
    #[must_use]
    #[inline]
    pub const fn in_backroom(seq: u16, ack: u16) -> bool {
        distance(seq, ack) <= HALF
    }
}

/// Timers and options of a [`Vital`] channel
///
/// Build it from a preset ([`VitalConfig::reference`], also `new()` and `default()`, or
/// [`VitalConfig::fast`]) and the `with_*` setters, which clamp every value into the range their
/// docs give (at most 30 days, [`MAX_DELAY`]). Delays are kept in whole microseconds, the unit of
/// [`Instant`]: a getter gives back what its setter took without the part below a microsecond.
///
/// ```
/// use core::time::Duration;
/// use tether_net::game::vital::VitalConfig;
/// let c = VitalConfig::reference()
///     .with_unacked_timeout(Duration::from_secs(100)) // DDNet's conn_timeout
///     .with_resend_timeout(Duration::ZERO); // clamped to 1 ms
/// assert_eq!(c.unacked_timeout(), Duration::from_secs(100));
/// assert_eq!(c.resend_timeout(), Duration::from_millis(1));
/// ```
///
/// [`MAX_DELAY`]: crate::time::MAX_DELAY
#[derive(Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct VitalConfig {
    // every delay in whole microseconds, at most MAX_DELAY (2.6e12 µs): the timers add them to
    // instants as they are (a `Duration` would be converted at every use, a 64 × 64-bit multiply
    // on 32-bit targets)
    resend_timeout: u64,
    flush_timeout: u64,
    unacked_timeout: u64,
    request_delay: Option<u64>,
    request_interval: u64,
    answer_interval: u64,
    reorder_window: u16,
    ack_delay: Option<u64>,
    timer_resends_all: bool,
    gap_repeat: Option<u64>,
}

config_fmt!(VitalConfig, c => {
    resend_timeout: c.resend_timeout(),
    flush_timeout: c.flush_timeout(),
    unacked_timeout: c.unacked_timeout(),
    request_delay: c.request_delay(),
    request_interval: c.request_interval(),
    answer_interval: c.answer_interval(),
    reorder_window: c.reorder_window,
    ack_delay: c.ack_delay(),
    timer_resends_all: c.timer_resends_all,
    gap_repeat: c.gap_repeat(),
});

/// Shortest resend, flush, unacked and repeat interval the setters accept
const MIN_TIMER: Duration = Duration::from_millis(1);

/// Shortest delay after an event and shortest rate limit: zero is "at once" / "no limit", never a
/// timer that could spin
const NO_MIN: Duration = Duration::ZERO;

impl VitalConfig {
    /// The reference (DDNet 16.4) timers: resend after 1 s, flush after 500 ms, resend request on
    /// the next packet, no reorder buffer; give up after 10 s unacked (vanilla; DDNet uses 100 s);
    /// peer requests answered at most every 100 ms
    #[must_use]
    pub const fn reference() -> Self {
        VitalConfig {
            resend_timeout: 1_000_000,
            flush_timeout: 500_000,
            unacked_timeout: 10_000_000,
            request_delay: None,
            request_interval: 0,
            answer_interval: 100_000,
            reorder_window: 0,
            ack_delay: None,
            timer_resends_all: false,
            gap_repeat: None,
        }
    }

    /// The same as [`VitalConfig::reference`]
    #[must_use]
    pub const fn new() -> Self {
        Self::reference()
    }

    /// Loss-tolerant timers (module docs): resend after 250 ms (every unacked chunk), resend request
    /// at once after a gap but at most every 100 ms and repeated every 200 ms while the gap stays
    /// open, reorder window 255
    #[must_use]
    pub const fn fast() -> Self {
        VitalConfig {
            resend_timeout: 250_000,
            flush_timeout: 500_000,
            unacked_timeout: 10_000_000,
            request_delay: Some(0),
            request_interval: 100_000,
            answer_interval: 100_000,
            reorder_window: 255,
            ack_delay: None,
            timer_resends_all: true,
            gap_repeat: Some(200_000),
        }
    }

    setters! {
        /// Re-send the oldest unacked chunk when its last send is this old, clamped into
        /// `[1 ms, 30 days]` (reference: 1 s)
        fn with_resend_timeout(d: Duration) { resend_timeout = clamp_micros(d, MIN_TIMER) }

        /// Queued chunks without `flush`, and a pending resend request in the reference mode, go out
        /// when the last send is this old; clamped into `[1 ms, 30 days]` (reference: 500 ms)
        fn with_flush_timeout(d: Duration) { flush_timeout = clamp_micros(d, MIN_TIMER) }

        /// Give up ([`TooWeak::NotAcked`]) when the oldest unacked chunk was first sent this long
        /// ago; clamped into `[1 ms, 30 days]` (vanilla 0.6: 10 s; DDNet: `conn_timeout`, 100 s)
        fn with_unacked_timeout(d: Duration) { unacked_timeout = clamp_micros(d, MIN_TIMER) }

        /// `None` (reference): a resend request rides on the next packet, at the latest after
        /// the flush timeout. `Some(d)`: a packet carrying it is due `d` after the gap was seen
        /// (`d` clamped into `[0, 30 days]`; 0 = at once)
        fn with_request_delay(d: Option<Duration>) { request_delay = clamp_micros_some(d, NO_MIN) }

        /// Least time between two resend requests sent, clamped into `[0, 30 days]` (reference: 0,
        /// no limit; a request is only ever sent after a gap, so 0 cannot spin)
        fn with_request_interval(d: Duration) { request_interval = clamp_micros(d, NO_MIN) }

        /// Least time between two peer resend requests answered, clamped into `[0, 30 days]`;
        /// requests in between are counted and ignored (DDNet 16.4 answers all: 0; newer versions at
        /// most 10 per second: 100 ms, the default)
        fn with_answer_interval(d: Duration) { answer_interval = clamp_micros(d, NO_MIN) }

        /// Keep out-of-order vital chunks up to this far ahead of the ack in the reorder buffer,
        /// clamped into `[0, 255]`; 0 = drop them like the reference (also when the reorder capacity
        /// is 0)
        fn with_reorder_window(window: u16) { reorder_window = if window > 255 { 255 } else { window } }

        /// `Some(d)`: report through [`Vital::needs_ack`] when a new ack has not been sent for `d`
        /// (clamped into `[0, 30 days]`; the machine then sends a keep-alive); `None`: acks only
        /// ride on packets sent anyway
        fn with_ack_delay(d: Option<Duration>) { ack_delay = clamp_micros_some(d, NO_MIN) }

        /// When the oldest unacked chunk's resend timer fires, re-send every unacked chunk instead of
        /// that one only (reference: that one). Helps when the peer is idle: it holds the oldest chunk
        /// already but its ack is lost, while a later chunk is missing and nothing makes it ask
        fn with_timer_resends_all(all: bool) { timer_resends_all = all }

        /// `Some(d)`: while the reorder buffer holds chunks (a gap is known), repeat the resend
        /// request `d` after the last one (still no more often than the request interval), also when
        /// nothing arrives; `d` clamped into `[1 ms, 30 days]`. `None`: only out-of-order arrivals
        /// ask (reference)
        fn with_gap_repeat(d: Option<Duration>) { gap_repeat = clamp_micros_some(d, MIN_TIMER) }
    }

    getters! {
        /// Resend timeout of the oldest unacked chunk
        fn resend_timeout() -> Duration = duration_from_micros;
        /// Flush timeout of queued chunks
        fn flush_timeout() -> Duration = duration_from_micros;
        /// Give-up timeout of the oldest unacked chunk
        fn unacked_timeout() -> Duration = duration_from_micros;
        /// Delay of a resend request after a gap (`None`: with the next packet)
        fn request_delay() -> Option<Duration> = duration_from_micros_some;
        /// Least time between two resend requests sent
        fn request_interval() -> Duration = duration_from_micros;
        /// Least time between two peer resend requests answered
        fn answer_interval() -> Duration = duration_from_micros;
        /// Reorder window (0: no reorder buffer)
        fn reorder_window() -> u16;
        /// Ack delay (`None`: acks only ride on packets sent anyway)
        fn ack_delay() -> Option<Duration> = duration_from_micros_some;
        /// Whether the resend timer re-sends every unacked chunk
        fn timer_resends_all() -> bool;
        /// Repeat interval of the resend request while a gap is open (`None`: no repeat)
        fn gap_repeat() -> Option<Duration> = duration_from_micros_some;
    }
}

impl Default for VitalConfig {
    fn default() -> Self {
        VitalConfig::reference()
    }
}

/// Why [`Vital::queue`] refused a chunk; nothing was queued
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum QueueError {
    /// More than 1023 bytes
    TooLarge {
        /// The data length
        size: usize,
    },
    /// The resend buffer has no room (bytes or chunk slots) until acks release some. Vanilla 0.6
    /// closes the connection here ("too weak connection (out of buffer)"); DDNet 16.4 sends the
    /// chunk once without keeping it. A caller may wait for acks or close ([`TooWeak::OutOfBuffer`]).
    BufferFull,
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::TooLarge { size } => {
                write!(f, "vital chunk of {size} bytes (max {MAX_CHUNK_SIZE})")
            }
            QueueError::BufferFull => f.write_str("resend buffer full"),
        }
    }
}

impl core::error::Error for QueueError {}

/// The "too weak connection" conditions: the connection should be closed
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum TooWeak {
    /// The oldest unacked chunk was first sent more than [`VitalConfig::unacked_timeout`] ago
    NotAcked {
        /// Its sequence
        seq: u16,
        /// The timeout in whole seconds (for the reason text; at most 30 days)
        secs: u32,
    },
    /// The resend buffer overflowed (what vanilla 0.6 does on [`QueueError::BufferFull`])
    OutOfBuffer,
}

impl fmt::Display for TooWeak {
    /// The reference's reason text
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TooWeak::NotAcked { secs, .. } => {
                write!(f, "Too weak connection (not acked for {secs} seconds)")
            }
            TooWeak::OutOfBuffer => f.write_str("too weak connection (out of buffer)"),
        }
    }
}

impl core::error::Error for TooWeak {}

/// An ack outside the acceptable range: the whole packet must be dropped
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BadAck {
    /// The ack received
    pub ack: u16,
    /// The last ack accepted from the peer
    pub peer_ack: u16,
    /// Our last sequence
    pub sequence: u16,
}

impl fmt::Display for BadAck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ack {} outside {}..={}",
            self.ack, self.peer_ack, self.sequence
        )
    }
}

impl core::error::Error for BadAck {}

/// What to do with a received chunk ([`Vital::on_chunk`])
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Receive {
    /// Hand the chunk's data to the application now (non-vital, or the next vital in order);
    /// then drain [`Vital::next_ready`]
    Deliver,
    /// Already received (sequence in the backroom, or already in the reorder buffer): drop
    Duplicate,
    /// Out of order, copied into the reorder buffer: [`Vital::next_ready`] delivers it once the
    /// gap is filled; a resend request is pending
    Buffered,
    /// Out of order and not kept (reference behaviour, window or reorder buffer full): drop; a
    /// resend request is pending
    Gap,
}

/// What [`Vital::fill`] put into a packet: the header fields it decides
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[must_use]
pub struct Filled {
    /// Set the header's RESEND flag (0x40)
    pub resend_request: bool,
    /// The header's ack
    pub ack: u16,
    /// Vital chunks written
    pub vital_chunks: usize,
    /// Queued chunks that did not fit: build another packet
    pub more: bool,
}

/// Counters of a [`Vital`] channel
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct VitalStats {
    /// Vital chunks queued
    pub queued: u64,
    /// Vital chunks sent for the first time
    pub sent: u64,
    /// Vital chunks re-sent (timer or peer request)
    pub resent: u64,
    /// Resends started by the timer (oldest unacked chunk)
    pub timer_resends: u64,
    /// Packets sent with the RESEND flag
    pub requests_sent: u64,
    /// Peer RESEND flags answered (whole buffer re-queued)
    pub requests_answered: u64,
    /// Peer RESEND flags ignored ([`VitalConfig::answer_interval`])
    pub requests_ignored: u64,
    /// Vital chunks delivered in order (directly or from the reorder buffer)
    pub delivered: u64,
    /// Vital chunks dropped as duplicates
    pub duplicates: u64,
    /// Vital chunks kept in the reorder buffer
    pub buffered: u64,
    /// Vital chunks dropped out of order
    pub gaps: u64,
    /// Packets refused by the ack check
    pub bad_acks: u64,
}

/// Where a record's data is in an arena
#[derive(Debug, Clone, Copy)]
struct Span {
    off: u32,
    len: u16,
}

/// Byte arena with bounded records: bump allocation, compaction when the end is reached
///
/// Records are kept in offset order (a new record goes to `top`, above every other; removals and
/// compaction keep the order), so compaction is one pass.
struct Arena<M, const B: usize, const N: usize> {
    data: [u8; B],
    recs: heapless::Vec<(M, Span), N>,
    top: usize,
    /// Bytes held by live records
    used: usize,
}

impl<M: Copy, const B: usize, const N: usize> Arena<M, B, N> {
    const fn new() -> Self {
        Arena {
            data: [0; B],
            recs: heapless::Vec::new(),
            top: 0,
            used: 0,
        }
    }

    fn len(&self) -> usize {
        self.recs.len()
    }

    fn bytes(&self, s: Span) -> &[u8] {
        let start = s.off as usize;
        self.data
            .get(start..start + usize::from(s.len))
            .unwrap_or(&[])
    }

    /// Room for one more record of `len` bytes (after a compaction if needed)?
    fn can_push(&self, len: usize) -> bool {
        self.recs.len() < N && self.used + len <= B
    }

    /// Append a record (copied); false when there is no room
    fn push(&mut self, meta: M, data: &[u8]) -> bool {
        if !self.can_push(data.len()) {
            return false;
        }
        if self.top + data.len() > B {
            self.compact();
        }
        let start = self.top;
        let Some(dst) = self.data.get_mut(start..start + data.len()) else {
            return false;
        };
        copy_short(dst, data);
        let span = Span {
            off: start as u32,
            len: data.len() as u16,
        };
        if self.recs.push((meta, span)).is_err() {
            return false;
        }
        self.top += data.len();
        self.used += data.len();
        true
    }

    fn remove(&mut self, i: usize) {
        if i < self.recs.len() {
            let (_, s) = self.recs.remove(i);
            self.used -= usize::from(s.len);
        }
        if self.recs.is_empty() {
            self.top = 0;
        }
    }

    /// Remove the first `n` records
    fn remove_front(&mut self, n: usize) {
        if n >= self.recs.len() {
            self.clear();
            return;
        }
        for (_, s) in self.recs.drain(..n) {
            self.used -= usize::from(s.len);
        }
        if self.recs.is_empty() {
            self.top = 0;
        }
    }

    fn clear(&mut self) {
        self.recs.clear();
        self.top = 0;
        self.used = 0;
    }

    /// Move every live record's data down to the start, in offset order (never overlapping a
    /// record not yet moved)
    fn compact(&mut self) {
        let mut dst = 0usize;
        for (_, s) in self.recs.iter_mut() {
            let (off, len) = (s.off as usize, usize::from(s.len));
            self.data.copy_within(off..off + len, dst);
            s.off = dst as u32;
            dst += len;
        }
        self.top = dst;
    }
}

/// Metadata of a chunk in the resend buffer
#[derive(Debug, Clone, Copy)]
struct Sent {
    seq: u16,
    /// Waiting to be written into a packet (new, or re-queued for a resend)
    pending: bool,
    /// First send, `None` while never sent
    first: Option<Instant>,
    /// Last send
    last: Instant,
}

/// One connection's vital channel (see the module docs)
///
/// Capacities: `SEND_BYTES` data bytes and `SEND_CHUNKS` chunks in the resend buffer (at most 511
/// chunks: the backroom test cannot tell older from newer beyond that); `REORDER_BYTES` /
/// `REORDER_CHUNKS` for the reorder buffer (0 disables it). A chunk takes its data length in the
/// arena; on a 64-bit target the records add 40 bytes per `SEND_CHUNKS` slot and 12 per
/// `REORDER_CHUNKS` slot to about 384 bytes of state (`Vital<16384, 64>`: 19,328 bytes).
/// The DDNet 16.4 map download keeps 16 MAP_DATA chunks of 906 bytes in flight: its receiver wants
/// `REORDER_BYTES ≥ 16 × 906`, its sender `SEND_BYTES` of the same order.
pub struct Vital<
    const SEND_BYTES: usize = 16384,
    const SEND_CHUNKS: usize = 64,
    const REORDER_BYTES: usize = 0,
    const REORDER_CHUNKS: usize = 0,
> {
    config: VitalConfig,
    /// Latest `now` seen (clamps time going backwards)
    clock: Instant,
    /// Last sequence queued
    seq: u16,
    /// Last sequence received in order
    ack: u16,
    /// Last ack received from the peer
    peer_ack: u16,
    send: Arena<Sent, SEND_BYTES, SEND_CHUNKS>,
    reorder: Arena<u16, REORDER_BYTES, REORDER_CHUNKS>,
    /// Sequence of the chunk [`Vital::next_ready`] returned last (freed on the next call)
    taken: Option<u16>,
    /// Number of records with `pending` and `first.is_some()`
    pending_resends: usize,
    /// Number of records with `pending` and `first.is_none()`
    pending_new: usize,
    /// `queue` asked for a flush
    flush: bool,
    /// Last packet sent (any kind the machine reported)
    last_send: Option<Instant>,
    /// Gap seen, resend request not sent yet: when the first gap was seen
    request_since: Option<Instant>,
    /// `request_since` was set by [`VitalConfig::gap_repeat`], not by an arrival
    repeat_pending: bool,
    /// Last resend request sent
    last_request: Option<Instant>,
    /// Last peer request answered
    last_answer: Option<Instant>,
    /// The ack changed and no packet carried it yet: since when
    ack_unsent_since: Option<Instant>,
    stats: VitalStats,
}

impl<const SB: usize, const SN: usize, const RB: usize, const RN: usize> fmt::Debug
    for Vital<SB, SN, RB, RN>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vital")
            .field("seq", &self.seq)
            .field("ack", &self.ack)
            .field("peer_ack", &self.peer_ack)
            .field("unacked", &self.send.len())
            .field("reordered", &self.reorder.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "defmt")]
impl<const SB: usize, const SN: usize, const RB: usize, const RN: usize> defmt::Format
    for Vital<SB, SN, RB, RN>
{
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "Vital {{ seq: {}, ack: {}, peer_ack: {}, unacked: {} }}",
            self.seq,
            self.ack,
            self.peer_ack,
            self.send.len()
        );
    }
}

impl<const SB: usize, const SN: usize, const RB: usize, const RN: usize> Vital<SB, SN, RB, RN> {
    const CAPACITY_OK: () = assert!(
        SN < seq::HALF as usize,
        "at most 511 unacked vital chunks: the backroom test breaks beyond"
    );

    /// A fresh channel: sequence 0 (the first vital chunk gets 1), ack 0
    #[must_use]
    pub const fn new(config: VitalConfig) -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::CAPACITY_OK;
        Vital {
            config,
            clock: Instant::ZERO,
            seq: 0,
            ack: 0,
            peer_ack: 0,
            send: Arena::new(),
            reorder: Arena::new(),
            taken: None,
            pending_resends: 0,
            pending_new: 0,
            flush: false,
            last_send: None,
            request_since: None,
            repeat_pending: false,
            last_request: None,
            last_answer: None,
            ack_unsent_since: None,
            stats: VitalStats {
                queued: 0,
                sent: 0,
                resent: 0,
                timer_resends: 0,
                requests_sent: 0,
                requests_answered: 0,
                requests_ignored: 0,
                delivered: 0,
                duplicates: 0,
                buffered: 0,
                gaps: 0,
                bad_acks: 0,
            },
        }
    }

    /// Forget everything (new connection, DDNet "rejoin"): sequence and ack back to 0, buffers
    /// emptied; configuration and counters kept
    pub fn reset(&mut self) {
        self.seq = 0;
        self.ack = 0;
        self.peer_ack = 0;
        self.send.clear();
        self.reorder.clear();
        self.taken = None;
        self.pending_resends = 0;
        self.pending_new = 0;
        self.flush = false;
        self.last_send = None;
        self.request_since = None;
        self.repeat_pending = false;
        self.last_request = None;
        self.last_answer = None;
        self.ack_unsent_since = None;
    }

    /// Set the last sequence used (the next vital chunk gets `seq + 1`); only for peers that
    /// start elsewhere than 0, e.g. after DDNet's vanilla anti-spoof admission (the server's own
    /// sequence is then 6)
    pub fn set_sequence(&mut self, seq: u16) {
        self.seq = seq % seq::MODULO;
    }

    /// Set the ack (the next vital chunk expected is `ack + 1`)
    pub fn set_ack(&mut self, ack: u16) {
        self.ack = ack % seq::MODULO;
        self.reorder.clear();
        self.taken = None;
    }

    /// The configuration
    #[must_use]
    pub const fn config(&self) -> &VitalConfig {
        &self.config
    }

    /// Last sequence queued
    #[must_use]
    pub const fn sequence(&self) -> u16 {
        self.seq
    }

    /// Last sequence received in order: the ack every outgoing packet carries
    #[must_use]
    pub const fn ack(&self) -> u16 {
        self.ack
    }

    /// Last ack accepted from the peer
    #[must_use]
    pub const fn peer_ack(&self) -> u16 {
        self.peer_ack
    }

    /// Vital chunks in the resend buffer (queued or sent, not acked)
    #[must_use]
    pub fn unacked(&self) -> usize {
        self.send.len()
    }

    /// Chunks held in the reorder buffer
    #[must_use]
    pub fn reordered(&self) -> usize {
        self.reorder.len()
    }

    /// Counters
    #[must_use]
    pub const fn stats(&self) -> &VitalStats {
        &self.stats
    }

    fn tick(&mut self, now: Instant) -> Instant {
        if now > self.clock {
            self.clock = now;
        }
        self.clock
    }

    /// True when [`Vital::queue`] would accept `len` bytes now
    #[must_use]
    pub fn can_queue(&self, len: usize) -> bool {
        len <= MAX_CHUNK_SIZE && self.send.can_push(len)
    }

    /// Copy a vital chunk into the resend buffer and give it the next sequence; returns it
    ///
    /// With `flush` the chunk is due at once ([`Vital::needs_packet`]); without, it waits for the
    /// next packet or [`VitalConfig::flush_timeout`] after the last send (the reference's
    /// MSGFLAG_FLUSH; DDNet flushes INFO, REQUEST_MAP_DATA, READY, ENTERGAME, MAP_DATA, CON_READY).
    ///
    /// # Errors
    /// [`QueueError::TooLarge`], [`QueueError::BufferFull`]; nothing is queued.
    pub fn queue(&mut self, now: Instant, data: &[u8], flush: bool) -> Result<u16, QueueError> {
        let now = self.tick(now);
        if data.len() > MAX_CHUNK_SIZE {
            return Err(QueueError::TooLarge { size: data.len() });
        }
        let seq = seq::next(self.seq);
        let meta = Sent {
            seq,
            pending: true,
            first: None,
            last: now,
        };
        if !self.send.push(meta, data) {
            return Err(QueueError::BufferFull);
        }
        self.seq = seq;
        self.pending_new += 1;
        self.flush |= flush;
        self.stats.queued += 1;
        Ok(seq)
    }

    /// The deadline of the next timer: a due packet (then a time ≤ the latest `now`), the resend of
    /// the oldest chunk, the give-up check, the flush of queued chunks, a resend request, an ack
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut at = |x: Instant| t = Some(t.map_or(x, |t| t.min(x)));
        if self.pending_resends > 0 || (self.pending_new > 0 && self.flush) {
            at(self.clock);
        }
        if self.pending_new > 0 {
            at(self.flush_deadline());
        }
        if let Some(r) = self.request_deadline() {
            at(r);
        }
        if let Some(a) = self.ack_deadline() {
            at(a);
        }
        if let Some((s, _)) = self.send.recs.first() {
            if let Some(first) = s.first {
                at(first.add_micros(self.config.unacked_timeout));
                if !s.pending {
                    at(s.last.add_micros(self.config.resend_timeout));
                }
            }
        }
        t
    }

    fn flush_deadline(&self) -> Instant {
        self.last_send
            .map_or(Instant::ZERO, |l| l.add_micros(self.config.flush_timeout))
    }

    fn request_deadline(&self) -> Option<Instant> {
        let since = self.request_since?;
        let due = match self.config.request_delay {
            Some(d) => since.add_micros(d),
            None => self.flush_deadline(),
        };
        let allowed = self.last_request.map_or(Instant::ZERO, |l| {
            l.add_micros(self.config.request_interval)
        });
        Some(due.max(allowed))
    }

    fn ack_deadline(&self) -> Option<Instant> {
        Some(self.ack_unsent_since?.add_micros(self.config.ack_delay?))
    }

    /// Run the timers: re-queue the oldest unacked chunk when [`VitalConfig::resend_timeout`]
    /// passed since its last send; report [`TooWeak::NotAcked`] when it was first sent more than
    /// [`VitalConfig::unacked_timeout`] ago (the machine should then close without a CLOSE, as
    /// DDNet does). Early calls do nothing.
    ///
    /// # Errors
    /// [`TooWeak::NotAcked`] (again on every later call until the chunk is acked).
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), TooWeak> {
        let now = self.tick(now);
        let resend_timeout = self.config.resend_timeout;
        let unacked_timeout = self.config.unacked_timeout;
        let Some((s, _)) = self.send.recs.first_mut() else {
            return Ok(());
        };
        let Some(first) = s.first else {
            return Ok(());
        };
        if now >= first.add_micros(unacked_timeout) {
            return Err(TooWeak::NotAcked {
                seq: s.seq,
                secs: u32::try_from(duration_from_micros(unacked_timeout).as_secs())
                    .unwrap_or(u32::MAX),
            });
        }
        if !s.pending && now >= s.last.add_micros(resend_timeout) {
            let all = self.config.timer_resends_all;
            for (s, _) in self.send.recs.iter_mut() {
                if s.first.is_some() && !s.pending {
                    s.pending = true;
                    self.pending_resends += 1;
                    self.stats.timer_resends += 1;
                }
                if !all {
                    break;
                }
            }
        }
        Ok(())
    }

    /// True when a chunk packet should be sent now: a resend is pending, flushed chunks are
    /// queued, queued chunks waited [`VitalConfig::flush_timeout`], or a resend request is due
    #[must_use]
    pub fn needs_packet(&self, now: Instant) -> bool {
        let now = now.max(self.clock);
        self.pending_resends > 0
            || (self.pending_new > 0 && (self.flush || now >= self.flush_deadline()))
            || self.request_deadline().is_some_and(|d| now >= d)
    }

    /// True when the ack changed and no packet carried it for [`VitalConfig::ack_delay`]: send a
    /// packet (a keep-alive does) and report it with [`Vital::note_sent`]
    #[must_use]
    pub fn needs_ack(&self, now: Instant) -> bool {
        self.ack_deadline()
            .is_some_and(|d| now.max(self.clock) >= d)
    }

    /// Write every pending chunk (re-sends first, in sequence order with the R flag, then new ones)
    /// that fits into `w`, and decide the header's resend flag and ack
    ///
    /// Call it for every chunk packet the connection sends (the machine may add non-vital chunks
    /// to `w` before or after). The packet must then be sent with [`Filled::ack`] and, when
    /// [`Filled::resend_request`] is set, the RESEND flag. [`Filled::more`]: pending chunks did
    /// not fit; build another packet.
    pub fn fill(&mut self, now: Instant, w: &mut ChunkWriter<'_>) -> Filled {
        let now = self.tick(now);
        let mut written = 0;
        let mut more = false;
        for (s, span) in self.send.recs.iter_mut() {
            if !s.pending {
                continue;
            }
            let flags = ChunkFlags {
                vital: true,
                resend: s.first.is_some(),
            };
            let start = span.off as usize;
            let data = self
                .send
                .data
                .get(start..start + usize::from(span.len))
                .unwrap_or(&[]);
            if w.push(&Chunk {
                flags,
                seq: s.seq,
                data,
            })
            .is_err()
            {
                more = true;
                break;
            }
            s.pending = false;
            s.last = now;
            if s.first.is_none() {
                s.first = Some(now);
                self.pending_new -= 1;
                self.stats.sent += 1;
            } else {
                self.pending_resends -= 1;
                self.stats.resent += 1;
            }
            written += 1;
        }
        if self.pending_new == 0 {
            self.flush = false;
        }
        let allowed = self
            .last_request
            .is_none_or(|l| now >= l.add_micros(self.config.request_interval));
        let resend_request = self.request_since.is_some() && allowed;
        if resend_request {
            self.request_since = None;
            self.repeat_pending = false;
            self.last_request = Some(now);
            self.stats.requests_sent += 1;
        }
        self.repeat_request(now);
        self.note_sent(now);
        Filled {
            resend_request,
            ack: self.ack,
            vital_chunks: written,
            more,
        }
    }

    /// With [`VitalConfig::gap_repeat`]: a gap is still open after a request went out, so the next
    /// request is pending (due `gap_repeat` after this one)
    fn repeat_request(&mut self, now: Instant) {
        if let Some(d) = self.config.gap_repeat {
            if self.request_since.is_none() && self.reorder.len() > 0 {
                if let Some(last) = self.last_request {
                    // `request_since + request_delay` is when it becomes due
                    let delay = self.config.request_delay.unwrap_or(0);
                    self.request_since = Some(last.add_micros(d).sub_micros(delay).max(now));
                    self.repeat_pending = true;
                }
            }
        }
    }

    /// Run the timers and, when a packet is due, [`Vital::fill`] `w`; `Ok(None)` when nothing is
    /// due
    ///
    /// # Errors
    /// [`TooWeak`] from [`Vital::handle_timeout`]; nothing is written then.
    pub fn poll_packet(
        &mut self,
        now: Instant,
        w: &mut ChunkWriter<'_>,
    ) -> Result<Option<Filled>, TooWeak> {
        self.handle_timeout(now)?;
        if self.needs_packet(now) {
            Ok(Some(self.fill(now, w)))
        } else {
            Ok(None)
        }
    }

    /// Report a packet sent without [`Vital::fill`] (a keep-alive or other control packet) that
    /// carried [`Vital::ack`]: it counts for the flush timer and sends the ack
    pub fn note_sent(&mut self, now: Instant) {
        let now = self.tick(now);
        self.last_send = Some(now);
        self.ack_unsent_since = None;
    }

    /// Process the header of an accepted packet (control packets too; after the token check)
    ///
    /// Checks the ack against the reference's range (the packet must be dropped on error), drops
    /// the acked chunks from the resend buffer (only chunks that were sent), then answers a RESEND
    /// flag by re-queueing every unacked chunk (at most once per
    /// [`VitalConfig::answer_interval`]).
    ///
    /// # Errors
    /// [`BadAck`]: nothing changed, drop the whole packet.
    pub fn on_packet(&mut self, now: Instant, header: &Header) -> Result<(), BadAck> {
        let now = self.tick(now);
        let ack = header.ack % seq::MODULO;
        if !ack_in_range(ack, self.peer_ack, self.seq) {
            self.stats.bad_acks += 1;
            return Err(BadAck {
                ack,
                peer_ack: self.peer_ack,
                sequence: self.seq,
            });
        }
        self.peer_ack = ack;
        let mut n = 0;
        for (s, _) in self.send.recs.iter() {
            if s.first.is_none() || !seq::in_backroom(s.seq, ack) {
                break;
            }
            if s.pending {
                self.pending_resends -= 1;
            }
            n += 1;
        }
        self.send.remove_front(n);
        if header.flags.resend {
            if self
                .last_answer
                .is_none_or(|l| now >= l.add_micros(self.config.answer_interval))
            {
                self.last_answer = Some(now);
                self.stats.requests_answered += 1;
                for (s, _) in self.send.recs.iter_mut() {
                    if s.first.is_some() && !s.pending {
                        s.pending = true;
                        self.pending_resends += 1;
                    }
                }
            } else {
                self.stats.requests_ignored += 1;
            }
        }
        Ok(())
    }

    /// Decide about one received chunk (call in packet order, after [`Vital::on_packet`])
    ///
    /// [`Receive::Deliver`]: give `chunk.data` to the application, then drain
    /// [`Vital::next_ready`]. Out-of-order vital chunks make a resend request pending; with a
    /// reorder window and room they are copied into the reorder buffer ([`Receive::Buffered`]).
    pub fn on_chunk(&mut self, now: Instant, chunk: &Chunk<'_>) -> Receive {
        let now = self.tick(now);
        if !chunk.flags.vital {
            return Receive::Deliver;
        }
        let s = chunk.seq % seq::MODULO;
        if s == seq::next(self.ack) {
            self.advance_ack(now, s);
            return Receive::Deliver;
        }
        if seq::in_backroom(s, self.ack) {
            self.stats.duplicates += 1;
            return Receive::Duplicate;
        }
        // out of order: ask for a resend
        if self.request_since.is_none() || self.repeat_pending {
            self.request_since = Some(now);
            self.repeat_pending = false;
        }
        if self.reorder.recs.iter().any(|(q, _)| *q == s) {
            self.stats.duplicates += 1;
            return Receive::Duplicate;
        }
        let window = self.config.reorder_window.min(255);
        if RN > 0 && seq::distance(self.ack, s) <= window && self.reorder.push(s, chunk.data) {
            self.stats.buffered += 1;
            return Receive::Buffered;
        }
        self.stats.gaps += 1;
        Receive::Gap
    }

    fn advance_ack(&mut self, now: Instant, s: u16) {
        self.ack = s;
        self.stats.delivered += 1;
        if self.ack_unsent_since.is_none() {
            self.ack_unsent_since = Some(now);
        }
    }

    /// The next chunk the reorder buffer can deliver in order (the ack advances), or `None`
    ///
    /// Call it after every [`Receive::Deliver`] of a vital chunk until it returns `None`. The data
    /// stays valid until the next call on the channel.
    pub fn next_ready(&mut self) -> Option<&[u8]> {
        self.advance_ready()?;
        self.taken_data()
    }

    /// [`Vital::next_ready`] without the data: the sequence now delivered (its data is
    /// [`Vital::taken_data`] until the next call)
    fn advance_ready(&mut self) -> Option<u16> {
        if let Some(t) = self.taken.take() {
            if let Some(i) = self.reorder.recs.iter().position(|(q, _)| *q == t) {
                self.reorder.remove(i);
            }
        }
        // drop copies of chunks delivered directly in the meantime
        while let Some(i) = self
            .reorder
            .recs
            .iter()
            .position(|(q, _)| seq::in_backroom(*q, self.ack))
        {
            self.reorder.remove(i);
        }
        if self.reorder.len() == 0 && self.repeat_pending {
            // the gap is closed: no repeated request
            self.request_since = None;
            self.repeat_pending = false;
        }
        let want = seq::next(self.ack);
        self.reorder.recs.iter().find(|(q, _)| *q == want)?;
        let now = self.clock;
        self.advance_ack(now, want);
        self.taken = Some(want);
        Some(want)
    }

    /// The data of the chunk [`Vital::next_ready`] delivered last, until the next call
    fn taken_data(&self) -> Option<&[u8]> {
        let t = self.taken?;
        let span = self.reorder.recs.iter().find(|(q, _)| *q == t)?.1;
        Some(self.reorder.bytes(span))
    }
}

/// Home of [`Channel`]: a private module, so the trait is nameable by the crate only (the machines'
/// sealed [`Layer`](super::Layer) mentions it)
mod channel {
    use super::{
        BadAck, Chunk, ChunkWriter, Filled, Header, Instant, Receive, TooWeak, VitalStats,
    };

    /// The operations of a [`Vital`] channel without its capacities: what the machines call, so that
    /// their chunk-layer code exists once for every capacity
    pub trait Channel {
        fn reset(&mut self);
        fn ack(&self) -> u16;
        fn sequence(&self) -> u16;
        fn peer_ack(&self) -> u16;
        fn poll_timeout(&self) -> Option<Instant>;
        fn handle_timeout(&mut self, now: Instant) -> Result<(), TooWeak>;
        fn needs_packet(&self, now: Instant) -> bool;
        fn needs_ack(&self, now: Instant) -> bool;
        fn fill(&mut self, now: Instant, w: &mut ChunkWriter<'_>) -> Filled;
        fn note_sent(&mut self, now: Instant);
        fn on_packet(&mut self, now: Instant, header: &Header) -> Result<(), BadAck>;
        fn on_chunk(&mut self, now: Instant, chunk: &Chunk<'_>) -> Receive;
        fn advance_ready(&mut self) -> Option<u16>;
        fn taken_data(&self) -> Option<&[u8]>;
        fn stats(&self) -> &VitalStats;
    }
}
pub(crate) use channel::Channel;

impl<const SB: usize, const SN: usize, const RB: usize, const RN: usize> Channel
    for Vital<SB, SN, RB, RN>
{
    fn reset(&mut self) {
        Vital::reset(self);
    }
    fn ack(&self) -> u16 {
        self.ack
    }
    fn sequence(&self) -> u16 {
        self.seq
    }
    fn peer_ack(&self) -> u16 {
        self.peer_ack
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Vital::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Instant) -> Result<(), TooWeak> {
        Vital::handle_timeout(self, now)
    }
    fn needs_packet(&self, now: Instant) -> bool {
        Vital::needs_packet(self, now)
    }
    fn needs_ack(&self, now: Instant) -> bool {
        Vital::needs_ack(self, now)
    }
    fn fill(&mut self, now: Instant, w: &mut ChunkWriter<'_>) -> Filled {
        Vital::fill(self, now, w)
    }
    fn note_sent(&mut self, now: Instant) {
        Vital::note_sent(self, now);
    }
    fn on_packet(&mut self, now: Instant, header: &Header) -> Result<(), BadAck> {
        Vital::on_packet(self, now, header)
    }
    fn on_chunk(&mut self, now: Instant, chunk: &Chunk<'_>) -> Receive {
        Vital::on_chunk(self, now, chunk)
    }
    fn advance_ready(&mut self) -> Option<u16> {
        Vital::advance_ready(self)
    }
    fn taken_data(&self) -> Option<&[u8]> {
        Vital::taken_data(self)
    }
    fn stats(&self) -> &VitalStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::ToString;
    use std::vec;
    use std::vec::Vec;

    use super::*;
    use crate::game::chunk::Chunks;

    type V = Vital<4096, 16, 4096, 16>;

    fn header(ack: u16, resend: bool) -> Header {
        Header::ack_only(ack, resend)
    }

    fn ms(t: u64) -> Instant {
        Instant::from_millis(t)
    }

    /// Fill one packet and return its chunks as (seq, resend flag, data)
    fn packet(v: &mut V, now: Instant) -> (Filled, Vec<(u16, bool, Vec<u8>)>) {
        let mut buf = [0u8; 1400];
        let mut w = ChunkWriter::new(&mut buf, 1390);
        let f = v.fill(now, &mut w);
        let chunks = Chunks::new(w.as_bytes(), w.num_chunks())
            .map(|c| {
                let c = c.unwrap();
                (c.seq, c.flags.resend, c.data.to_vec())
            })
            .collect();
        (f, chunks)
    }

    #[test]
    fn config_keeps_every_delay_to_the_microsecond_and_clamps_it() {
        use crate::time::MAX_DELAY;
        let us = Duration::from_micros;
        let c = VitalConfig::reference()
            .with_resend_timeout(us(1_234_567))
            .with_flush_timeout(us(7_001))
            .with_unacked_timeout(us(99_000_001))
            .with_request_delay(Some(us(3)))
            .with_request_interval(us(1))
            .with_answer_interval(us(250_001))
            .with_ack_delay(Some(us(40_017)))
            .with_gap_repeat(Some(us(1_000_999)));
        assert_eq!(c.resend_timeout(), us(1_234_567));
        assert_eq!(c.flush_timeout(), us(7_001));
        assert_eq!(c.unacked_timeout(), us(99_000_001));
        assert_eq!(c.request_delay(), Some(us(3)));
        assert_eq!(c.request_interval(), us(1));
        assert_eq!(c.answer_interval(), us(250_001));
        assert_eq!(c.ack_delay(), Some(us(40_017)));
        assert_eq!(c.gap_repeat(), Some(us(1_000_999)));
        // sub-microsecond parts are dropped, the ends clamped
        let c = c
            .with_resend_timeout(Duration::new(2, 999))
            .with_flush_timeout(Duration::ZERO)
            .with_unacked_timeout(Duration::MAX)
            .with_request_delay(None)
            .with_request_interval(Duration::MAX)
            .with_answer_interval(Duration::ZERO)
            .with_ack_delay(Some(Duration::ZERO))
            .with_gap_repeat(Some(Duration::ZERO));
        assert_eq!(c.resend_timeout(), Duration::from_secs(2));
        assert_eq!(c.flush_timeout(), MIN_TIMER);
        assert_eq!(c.unacked_timeout(), MAX_DELAY);
        assert_eq!(c.request_delay(), None);
        assert_eq!(c.request_interval(), MAX_DELAY);
        assert_eq!(c.answer_interval(), Duration::ZERO);
        assert_eq!(c.ack_delay(), Some(Duration::ZERO));
        assert_eq!(c.gap_repeat(), Some(MIN_TIMER));
        assert_eq!(c.with_ack_delay(None).ack_delay(), None);
        assert_eq!(c.with_gap_repeat(None).gap_repeat(), None);
        // the presets as documented
        let f = VitalConfig::fast();
        assert_eq!(
            (f.resend_timeout(), f.flush_timeout(), f.unacked_timeout()),
            (
                Duration::from_millis(250),
                Duration::from_millis(500),
                Duration::from_secs(10)
            )
        );
        assert_eq!(f.request_delay(), Some(Duration::ZERO));
        assert_eq!(f.request_interval(), Duration::from_millis(100));
        assert_eq!(f.answer_interval(), Duration::from_millis(100));
        assert_eq!(f.gap_repeat(), Some(Duration::from_millis(200)));
        assert_eq!(
            (f.ack_delay(), f.reorder_window(), f.timer_resends_all()),
            (None, 255, true)
        );
        let r = VitalConfig::default();
        assert_eq!(
            (r.resend_timeout(), r.flush_timeout(), r.unacked_timeout()),
            (
                Duration::from_secs(1),
                Duration::from_millis(500),
                Duration::from_secs(10)
            )
        );
        assert_eq!(
            (r.request_delay(), r.request_interval()),
            (None, Duration::ZERO)
        );
        assert_eq!(r.answer_interval(), Duration::from_millis(100));
        assert_eq!((r.gap_repeat(), r.ack_delay()), (None, None));
        // Debug shows durations, not the stored microseconds
        let text = std::format!("{f:?}");
        assert!(text.contains("resend_timeout: 250ms"), "{text}");
        assert!(text.contains("gap_repeat: Some(200ms)"), "{text}");
        assert!(text.contains("reorder_window: 255"), "{text}");
    }

    #[test]
    fn seq_arithmetic() {
        assert_eq!(seq::next(1023), 0);
        assert_eq!(seq::next(0), 1);
        assert_eq!(seq::distance(1020, 3), 7);
        assert!(seq::in_backroom(5, 5));
        assert!(seq::in_backroom(1000, 488));
        assert!(seq::in_backroom(999, 487));
        assert!(!seq::in_backroom(998, 487));
        assert!(!seq::in_backroom(6, 5));
    }

    #[test]
    fn first_sequence_is_one_and_wraps() {
        let mut v = V::new(VitalConfig::reference());
        assert_eq!(v.queue(ms(0), b"a", false), Ok(1));
        v.set_sequence(1023);
        assert_eq!(v.queue(ms(0), b"b", false), Ok(0));
    }

    /// Fill one packet whose chunk payload may take at most `limit` bytes; the vital chunks'
    /// sequences
    fn packet_within(v: &mut V, now: Instant, limit: usize) -> Vec<u16> {
        let mut buf = [0u8; 1400];
        let mut w = ChunkWriter::new(&mut buf, limit);
        let _ = v.fill(now, &mut w);
        Chunks::new(w.as_bytes(), w.num_chunks())
            .map(|c| c.unwrap().seq)
            .collect()
    }

    #[test]
    fn a_chunk_of_the_largest_size_is_queued_and_one_byte_more_is_refused() {
        let mut v = V::new(VitalConfig::reference());
        assert_eq!(v.queue(ms(0), &[7; MAX_CHUNK_SIZE], false), Ok(1));
        assert_eq!(
            v.queue(ms(0), &[7; MAX_CHUNK_SIZE + 1], false),
            Err(QueueError::TooLarge {
                size: MAX_CHUNK_SIZE + 1
            })
        );
        assert_eq!(v.queue(ms(0), b"x", false), Ok(2));
        assert_eq!((v.stats().queued, v.unacked()), (2, 2));
        let (f, chunks) = packet(&mut v, ms(0));
        assert_eq!(f.vital_chunks, 2);
        assert_eq!(chunks[0].2.len(), MAX_CHUNK_SIZE);
    }

    #[test]
    fn poll_timeout_says_now_while_a_flushed_chunk_or_a_resend_waits() {
        let mut v = V::new(VitalConfig::reference());
        assert_eq!(v.poll_timeout(), None);
        v.note_sent(ms(1000));
        // a flushed chunk is due at once, not at the flush deadline (1,500 ms)
        v.queue(ms(1100), b"ready", true).unwrap();
        assert_eq!(v.poll_timeout(), Some(ms(1100)));
        let _ = packet(&mut v, ms(1100));
        // sent: the next deadline is its resend, 1 s after
        assert_eq!(v.poll_timeout(), Some(ms(2100)));
        // the resend timer runs late, at 2,300 ms: the resend is due then, until it is sent
        v.handle_timeout(ms(2300)).unwrap();
        assert_eq!(v.stats().timer_resends, 1);
        assert_eq!(v.poll_timeout(), Some(ms(2300)));
        let (_, chunks) = packet(&mut v, ms(2300));
        assert_eq!(chunks, vec![(1, true, b"ready".to_vec())]);
        assert_eq!(v.poll_timeout(), Some(ms(3300)));
    }

    #[test]
    fn the_resend_timer_waits_its_whole_timeout_after_the_last_send() {
        let mut v = V::new(VitalConfig::reference());
        v.queue(ms(0), b"x", true).unwrap();
        let _ = packet(&mut v, ms(0));
        for (t, resends) in [(999, 0), (1000, 1)] {
            v.handle_timeout(ms(t)).unwrap();
            assert_eq!(v.stats().timer_resends, resends, "at {t} ms");
            assert_eq!(v.needs_packet(ms(t)), resends == 1, "at {t} ms");
        }
        // resent at 1,000 ms: the next resend is 1 s after that send
        let _ = packet(&mut v, ms(1000));
        for (t, resends) in [(1999, 1), (2000, 2)] {
            v.handle_timeout(ms(t)).unwrap();
            assert_eq!(v.stats().timer_resends, resends, "at {t} ms");
        }
    }

    #[test]
    fn a_timer_resend_of_all_chunks_counts_each_chunk_once() {
        // every unacked chunk is re-sent when the timer fires (the fast preset)
        let mut v = V::new(VitalConfig::fast());
        v.queue(ms(0), b"aa", false).unwrap();
        v.queue(ms(0), b"bb", true).unwrap();
        assert_eq!(packet_within(&mut v, ms(0), 100), [1, 2]);
        // the peer asks for a resend: both are pending again; a packet with room for one re-sends 1
        v.on_packet(ms(100), &header(0, true)).unwrap();
        assert_eq!(packet_within(&mut v, ms(100), 5), [1]);
        assert!(v.needs_packet(ms(100)), "2 still waits");
        // chunk 1's resend timer (250 ms) fires: 1 is pending again, 2 already was
        v.handle_timeout(ms(350)).unwrap();
        assert_eq!(v.stats().timer_resends, 1);
        assert_eq!(packet_within(&mut v, ms(350), 100), [1, 2]);
        // both went out: nothing is due until the next resend timer
        assert!(!v.needs_packet(ms(350)));
        assert_eq!(v.poll_timeout(), Some(ms(600)));
    }

    #[test]
    fn a_delayed_resend_request_is_due_its_delay_after_the_gap() {
        let config = VitalConfig::reference().with_request_delay(Some(Duration::from_millis(50)));
        let mut v = V::new(config);
        // chunk 2 before chunk 1: a gap seen at 100 ms
        assert_eq!(v.on_chunk(ms(100), &Chunk::vital(2, b"two")), Receive::Gap);
        assert_eq!(v.poll_timeout(), Some(ms(150)));
        assert!(!v.needs_packet(ms(149)));
        assert!(v.needs_packet(ms(150)));
        let mut buf = [0u8; 1400];
        let mut w = ChunkWriter::new(&mut buf, 1390);
        assert!(v.fill(ms(150), &mut w).resend_request);
        assert_eq!(v.stats().requests_sent, 1);
    }

    #[test]
    fn an_ack_is_reported_due_only_its_delay_after_it_changed_and_until_it_is_sent() {
        // without an ack delay, acks only ride on packets sent anyway
        let mut plain = V::new(VitalConfig::reference());
        assert_eq!(
            plain.on_chunk(ms(0), &Chunk::vital(1, b"one")),
            Receive::Deliver
        );
        assert!(!plain.needs_ack(ms(60_000)));
        let config = VitalConfig::reference().with_ack_delay(Some(Duration::from_millis(50)));
        let mut v = V::new(config);
        assert!(!v.needs_ack(ms(0)), "nothing received");
        assert_eq!(
            v.on_chunk(ms(10), &Chunk::vital(1, b"one")),
            Receive::Deliver
        );
        assert!(!v.needs_ack(ms(59)));
        assert!(v.needs_ack(ms(60)));
        assert_eq!(v.poll_timeout(), Some(ms(60)));
        // a packet carried it
        v.note_sent(ms(60));
        assert!(!v.needs_ack(ms(10_000)));
    }

    #[test]
    fn sent_and_resent_chunks_are_counted_apart() {
        let mut v = V::new(VitalConfig::reference());
        v.queue(ms(0), b"a", false).unwrap();
        v.queue(ms(0), b"b", true).unwrap();
        let _ = packet(&mut v, ms(0));
        assert_eq!((v.stats().sent, v.stats().resent), (2, 0));
        v.handle_timeout(ms(1000)).unwrap();
        let _ = packet(&mut v, ms(1000));
        assert_eq!((v.stats().sent, v.stats().resent), (2, 1));
        v.queue(ms(1000), b"c", true).unwrap();
        let _ = packet(&mut v, ms(1000));
        assert_eq!((v.stats().sent, v.stats().resent), (3, 1));
    }

    /// Fill one packet (all that fits) and say whether it carries a resend request
    fn requests(v: &mut V, now: Instant) -> bool {
        let mut buf = [0u8; 1400];
        let mut w = ChunkWriter::new(&mut buf, 1390);
        v.fill(now, &mut w).resend_request
    }

    #[test]
    fn an_open_gap_repeats_its_request_every_gap_repeat_and_stops_once_filled() {
        // the fast preset: request at once, at most every 100 ms, repeated every 200 ms
        let mut v = V::new(VitalConfig::fast());
        assert_eq!(
            v.on_chunk(ms(0), &Chunk::vital(2, b"two")),
            Receive::Buffered
        );
        assert!(v.needs_packet(ms(0)));
        assert!(requests(&mut v, ms(0)));
        // chunk 1 is still missing: the next request is due 200 ms after the first
        assert_eq!(v.poll_timeout(), Some(ms(200)));
        assert!(!v.needs_packet(ms(199)));
        assert!(v.needs_packet(ms(200)));
        assert!(requests(&mut v, ms(200)));
        assert_eq!(v.stats().requests_sent, 2);
        // the gap fills: no request is pending any more, none is repeated
        assert_eq!(
            v.on_chunk(ms(250), &Chunk::vital(1, b"one")),
            Receive::Deliver
        );
        while v.next_ready().is_some() {}
        assert!(!requests(&mut v, ms(250)));
        assert_eq!(v.poll_timeout(), None);
        assert!(!v.needs_packet(ms(10_000)));
        assert_eq!(v.stats().requests_sent, 2);
    }

    #[test]
    fn a_repeated_request_stays_due_while_one_of_two_gaps_is_still_open() {
        let mut v = V::new(VitalConfig::fast());
        // 2 and 4 before 1 and 3: two gaps, one request at once
        assert_eq!(
            v.on_chunk(ms(0), &Chunk::vital(2, b"two")),
            Receive::Buffered
        );
        assert_eq!(
            v.on_chunk(ms(0), &Chunk::vital(4, b"four")),
            Receive::Buffered
        );
        assert!(requests(&mut v, ms(0)));
        assert_eq!(v.poll_timeout(), Some(ms(200)));
        // 1 fills the first gap (1 and 2 delivered); 3 is still missing: the repeat stays due
        assert_eq!(
            v.on_chunk(ms(100), &Chunk::vital(1, b"one")),
            Receive::Deliver
        );
        assert_eq!(v.next_ready(), Some(&b"two"[..]));
        assert_eq!(v.next_ready(), None);
        assert_eq!(v.ack(), 2);
        assert_eq!(v.poll_timeout(), Some(ms(200)));
        assert!(v.needs_packet(ms(200)));
        assert!(requests(&mut v, ms(200)));
    }

    #[test]
    fn a_new_gap_waits_for_the_request_interval() {
        let mut v = V::new(VitalConfig::fast());
        assert_eq!(
            v.on_chunk(ms(0), &Chunk::vital(3, b"three")),
            Receive::Buffered
        );
        assert!(requests(&mut v, ms(0)));
        // chunks 1 and 2 come at 50 ms, then 5 before 4: another gap, but the last request went
        // out 50 ms ago (at most one every 100 ms)
        assert_eq!(
            v.on_chunk(ms(50), &Chunk::vital(1, b"one")),
            Receive::Deliver
        );
        assert_eq!(
            v.on_chunk(ms(50), &Chunk::vital(2, b"two")),
            Receive::Deliver
        );
        while v.next_ready().is_some() {}
        assert_eq!(
            v.on_chunk(ms(50), &Chunk::vital(5, b"five")),
            Receive::Buffered
        );
        assert_eq!(v.poll_timeout(), Some(ms(100)));
        assert!(!v.needs_packet(ms(99)));
        assert!(!requests(&mut v, ms(60)));
        assert!(requests(&mut v, ms(100)));
    }

    #[test]
    fn flush_rules() {
        let mut v = V::new(VitalConfig::reference());
        v.note_sent(ms(1000));
        v.queue(ms(1000), b"chat", false).unwrap();
        assert!(!v.needs_packet(ms(1000)));
        assert_eq!(v.poll_timeout(), Some(ms(1500)));
        assert!(v.needs_packet(ms(1500)));
        v.queue(ms(1100), b"ready", true).unwrap();
        assert!(v.needs_packet(ms(1100)));
        let (f, chunks) = packet(&mut v, ms(1100));
        assert_eq!(f.vital_chunks, 2);
        assert_eq!(chunks[0], (1, false, b"chat".to_vec()));
        assert!(!v.needs_packet(ms(1100)));
        // resend timer of the oldest
        assert_eq!(v.poll_timeout(), Some(ms(2100)));
        v.handle_timeout(ms(2100)).unwrap();
        let (_, chunks) = packet(&mut v, ms(2100));
        assert_eq!(chunks, vec![(1, true, b"chat".to_vec())]);
        // acked: nothing left
        v.on_packet(ms(2200), &header(2, false)).unwrap();
        assert_eq!(v.unacked(), 0);
        assert_eq!(v.poll_timeout(), None);
    }

    #[test]
    fn gives_up_after_the_unacked_timeout() {
        let mut v = V::new(VitalConfig::reference());
        v.queue(ms(0), b"x", true).unwrap();
        let _ = packet(&mut v, ms(0));
        for t in (1000..10_000).step_by(1000) {
            assert_eq!(v.handle_timeout(ms(t)), Ok(()));
            let _ = packet(&mut v, ms(t));
        }
        let e = v.handle_timeout(ms(10_000)).unwrap_err();
        assert_eq!(e, TooWeak::NotAcked { seq: 1, secs: 10 });
        assert_eq!(
            e.to_string(),
            "Too weak connection (not acked for 10 seconds)"
        );
    }

    #[test]
    fn acks_do_not_release_unsent_chunks() {
        let mut v = V::new(VitalConfig::reference());
        v.queue(ms(0), b"a", true).unwrap();
        let _ = packet(&mut v, ms(0));
        v.queue(ms(0), b"b", false).unwrap();
        // the peer claims seq 2, which was never sent: in range (≤ sequence) but nothing is dropped
        v.on_packet(ms(1), &header(2, false)).unwrap();
        assert_eq!(v.unacked(), 1);
        let (_, chunks) = packet(&mut v, ms(2));
        assert_eq!(chunks, vec![(2, false, b"b".to_vec())]);
    }

    #[test]
    fn arena_against_a_model() {
        // random pushes, removals anywhere and from the front against a list of (meta, bytes):
        // same records, same bytes, same room (`used` counted, compaction in one pass)
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut arena: Arena<u16, 256, 8> = Arena::new();
        let mut model: Vec<(u16, Vec<u8>)> = Vec::new();
        let steps = if cfg!(miri) { 2_000 } else { 20_000 };
        for step in 0..steps {
            match next(4) {
                0 | 1 => {
                    let len = next(90) as usize;
                    let data: Vec<u8> = (0..len).map(|i| (i as u16 ^ step) as u8).collect();
                    let room = model.len() < 8
                        && model.iter().map(|(_, d)| d.len()).sum::<usize>() + len <= 256;
                    assert_eq!(arena.can_push(len), room);
                    assert_eq!(arena.push(step, &data), room);
                    if room {
                        model.push((step, data));
                    }
                }
                2 if !model.is_empty() => {
                    let i = next(model.len() as u64) as usize;
                    arena.remove(i);
                    model.remove(i);
                }
                _ => {
                    let n = next(model.len() as u64 + 2) as usize;
                    arena.remove_front(n);
                    model.drain(..n.min(model.len()));
                }
            }
            assert_eq!(arena.len(), model.len());
            for ((m, span), (mm, data)) in arena.recs.iter().zip(&model) {
                assert_eq!(m, mm);
                assert_eq!(arena.bytes(*span), &data[..]);
            }
        }
    }

    #[test]
    fn arena_compacts_when_a_record_would_pass_the_end_and_only_then() {
        let mut arena: Arena<u8, 8, 4> = Arena::new();
        assert!(arena.push(0, &[1; 4]));
        // ends exactly at the end of the buffer: fits without compaction
        assert!(arena.push(1, &[2; 4]));
        assert_eq!(arena.top, 8);
        arena.remove_front(1);
        // one byte more than the space above `top` (none): compacted first, then appended
        assert!(arena.push(2, &[3]));
        let recs: Vec<(u8, Vec<u8>)> = arena
            .recs
            .iter()
            .map(|&(m, s)| (m, arena.bytes(s).to_vec()))
            .collect();
        assert_eq!(recs, vec![(1, vec![2; 4]), (2, vec![3])]);
        assert_eq!(arena.top, 5);
    }

    #[test]
    fn arena_removal_past_the_end_changes_nothing() {
        let mut arena: Arena<u8, 8, 4> = Arena::new();
        assert!(arena.push(0, &[1; 3]));
        arena.remove(1);
        arena.remove(9);
        assert_eq!(arena.len(), 1);
        assert_eq!(arena.bytes(arena.recs[0].1), &[1; 3]);
        assert_eq!((arena.top, arena.used), (3, 3));
    }

    #[test]
    fn set_sequence_and_ack_take_any_u16_modulo_1024() {
        let mut v = V::new(VitalConfig::reference());
        for (set, want) in [(5, 5), (1023, 1023), (1024, 0), (1030, 6), (u16::MAX, 1023)] {
            v.set_sequence(set);
            assert_eq!(v.sequence(), want, "set_sequence({set})");
            v.set_ack(set);
            assert_eq!(v.ack(), want, "set_ack({set})");
        }
        // the next vital chunk follows the reduced sequence
        v.set_sequence(1030);
        v.queue(ms(0), b"x", true).unwrap();
        let (_, chunks) = packet(&mut v, ms(0));
        assert_eq!(chunks[0].0, 7);
    }

    #[test]
    fn out_of_order_and_reorder_buffer() {
        let mut v = V::new(VitalConfig::fast());
        let c = |s, d| Chunk::vital(s, d);
        assert_eq!(v.on_chunk(ms(0), &c(2, b"two")), Receive::Buffered);
        assert_eq!(v.on_chunk(ms(0), &c(2, b"two")), Receive::Duplicate);
        assert_eq!((v.stats().duplicates, v.stats().buffered), (1, 1));
        assert_eq!(v.on_chunk(ms(0), &c(3, b"three")), Receive::Buffered);
        assert!(v.needs_packet(ms(0)));
        assert_eq!(v.next_ready(), None);
        assert_eq!(v.on_chunk(ms(0), &c(1, b"one")), Receive::Deliver);
        assert_eq!(v.next_ready(), Some(&b"two"[..]));
        assert_eq!(v.next_ready(), Some(&b"three"[..]));
        assert_eq!(v.next_ready(), None);
        assert_eq!(v.ack(), 3);
        assert_eq!(v.reordered(), 0);
        assert_eq!(v.on_chunk(ms(0), &c(2, b"two")), Receive::Duplicate);
        assert_eq!(v.stats().duplicates, 2);
        let (f, _) = packet(&mut v, ms(0));
        assert!(f.resend_request);
        assert_eq!(f.ack, 3);
    }

    #[test]
    fn sequence_arithmetic_takes_any_u16_modulo_1024() {
        let reduce = |x: u16| u32::from(x) % 1024;
        let samples = (0..=u16::MAX)
            .step_by(61)
            .chain([1023, 1024, 1025, u16::MAX - 1, u16::MAX]);
        for s in samples {
            assert_eq!(u32::from(seq::next(s)), (reduce(s) + 1) % 1024, "next({s})");
            for t in [0, 1, 511, 1023, 1024, u16::MAX - 1, u16::MAX, s] {
                let want = (reduce(t) + 1024 - reduce(s)) % 1024;
                assert_eq!(u32::from(seq::distance(s, t)), want, "distance({s}, {t})");
            }
        }
    }

    #[test]
    fn error_texts_name_the_sizes_and_the_range() {
        assert_eq!(
            QueueError::TooLarge { size: 2000 }.to_string(),
            std::format!("vital chunk of 2000 bytes (max {MAX_CHUNK_SIZE})")
        );
        assert_eq!(QueueError::BufferFull.to_string(), "resend buffer full");
        let bad = BadAck {
            ack: 900,
            peer_ack: 10,
            sequence: 12,
        };
        assert_eq!(bad.to_string(), "ack 900 outside 10..=12");
    }
}
