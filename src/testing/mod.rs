//! Deterministic simulator for driving machines without sockets or clocks (feature `testing`)
//!
//! Everything here is test-only, std-only code: it allocates, and it panics with a clear message
//! when a machine breaks the run-loop contract (an invariant check), because in a test a loud
//! failure at the point of the bug is what we want. Peer bytes never come from here unchecked:
//! the simulator only carries what the machines wrote.
//!
//! * [`VirtualClock`] — virtual time; nothing here reads a real clock.
//! * [`Rng`] — a small seeded PRNG (xorshift64*); the same seed always gives the same run.
//! * [`LinkConfig`] / [`Link`] — a one-way network link with loss, duplication, reordering,
//!   latency, jitter and MTU for datagrams, and a reliable ordered byte/message channel (optionally
//!   split into random chunks) for stream and WebSocket frames.
//! * [`Pair`] — one client and one server joined by two links; [`Fleet`] — one server and many
//!   clients. Both jump virtual time to the next event (delivery or timer), so an hour of protocol
//!   time runs in milliseconds.
//! * [`Solo`] — one machine driven directly (the test plays every peer): unit tests against
//!   hand-made bytes and fuzz targets that replay `(delay, bytes)` sequences.
//! * [`TraceEntry`] / [`TraceRecord`] — a transcript of every frame's fate.
//!
//! Playing the application: `on_*_app` hooks observe the data a machine returns;
//! [`Fleet::answer_server_app`] (and `answer_client_app`, [`Pair::answer_server_app`],
//! [`Solo::answer_app`]) also hand over the machine, so the hook can answer at once — e.g. check a
//! LongPort Auth token and call `accept_auth` — before the next buffered bytes are fed, as a real
//! loop would. Frames a machine writes outside `poll_transmit` (LongPort `send_request`,
//! `respond`, `push`) go over the link with [`Fleet::send_from_client`] /
//! [`Fleet::send_from_server`] (or the [`Pair`] equivalents).
//!
//! Value types here implement `defmt::Format` with the `defmt` feature like the rest of the crate;
//! the drivers ([`Link`], [`Pair`], [`Fleet`], [`Solo`]) hold queues and closures and do not.
//!
//! # Example
//!
//! A test owns the machines through the simulator, issues commands through
//! [`Pair::client_mut`] / [`Pair::server_mut`], and runs virtual time with
//! [`Pair::run_until`] (fails with a [`SimError`] instead of hanging) or [`Pair::run_for`].
//!
//! ```
//! use tether_net::testing::{Fate, Fleet, LinkConfig, Pair};
//! use tether_net::{BufferTooSmall, Duration, FrameKind, Instant, Machine, Received, Transmit};
//! # use std::collections::VecDeque;
//! # /// Echoes every datagram back to its sender
//! # #[derive(Default)]
//! # struct Echo(VecDeque<(u32, Vec<u8>)>);
//! # impl Machine for Echo {
//! #     type Peer = u32;
//! #     type Event = ();
//! #     type App<'a> = &'a [u8];
//! #     type Error = ();
//! #     fn handle_input<'a>(&mut self, _: Instant, from: u32, d: &'a [u8]) -> Result<Received<&'a [u8]>, ()> {
//! #         self.0.push_back((from, d.to_vec()));
//! #         Ok(Received::with_app(d.len(), d))
//! #     }
//! #     fn handle_timeout(&mut self, _: Instant) {}
//! #     fn poll_transmit(&mut self, _: Instant, buf: &mut [u8]) -> Result<Option<Transmit<u32>>, BufferTooSmall> {
//! #         let Some((to, d)) = self.0.pop_front() else { return Ok(None) };
//! #         buf[..d.len()].copy_from_slice(&d);
//! #         Ok(Some(Transmit { to, len: d.len(), kind: FrameKind::Datagram }))
//! #     }
//! #     fn poll_event(&mut self) -> Option<()> { None }
//! #     fn poll_timeout(&self) -> Option<Instant> { None }
//! # }
//! # /// Sends a ping every second and reports each echo as an event
//! # struct Pinger { next: Instant, ping: bool, echoes: VecDeque<Instant> }
//! # impl Pinger { fn new() -> Self { Pinger { next: Instant::ZERO, ping: false, echoes: VecDeque::new() } } }
//! # impl Machine for Pinger {
//! #     type Peer = ();
//! #     type Event = Instant;
//! #     type App<'a> = &'a [u8];
//! #     type Error = ();
//! #     fn handle_input<'a>(&mut self, now: Instant, _: (), d: &'a [u8]) -> Result<Received<&'a [u8]>, ()> {
//! #         self.echoes.push_back(now);
//! #         Ok(Received::with_app(d.len(), d))
//! #     }
//! #     fn handle_timeout(&mut self, now: Instant) {
//! #         if now >= self.next { self.ping = true; self.next = now + Duration::from_secs(1); }
//! #     }
//! #     fn poll_transmit(&mut self, _: Instant, buf: &mut [u8]) -> Result<Option<Transmit<()>>, BufferTooSmall> {
//! #         if !std::mem::take(&mut self.ping) { return Ok(None) }
//! #         buf[..4].copy_from_slice(b"ping");
//! #         Ok(Some(Transmit { to: (), len: 4, kind: FrameKind::Datagram }))
//! #     }
//! #     fn poll_event(&mut self) -> Option<Instant> { self.echoes.pop_front() }
//! #     fn poll_timeout(&self) -> Option<Instant> { Some(self.next) }
//! # }
//!
//! // One client and one server over a lossy link; the server sees the client at address 7.
//! let mut pair = Pair::new(Pinger::new(), Echo::default(), 7, LinkConfig::lossy(0.1), 42);
//! pair.record_transcript(true);
//! pair.run_until(|p| p.client_events().len() >= 5, Duration::from_secs(60))
//!     .expect("five echoes within a virtual minute");
//! assert!(pair.client_stats().transmits >= 5);
//! assert!(pair.transcript().iter().all(|r| r.fate != Fate::Duplicate));
//! for line in pair.transcript().iter().take(3) {
//!     println!("{line}"); // e.g. "0.010000s c->s[0] Datagram delivered 70 69 6e 67"
//! }
//!
//! // One server and 100 clients at addresses 0..100, one virtual minute on a perfect link
//! // (10 ms each way): pings at 0, 1, ..., 60 s; the echo of the last one is still in flight.
//! let mut fleet = Fleet::new(Echo::default(), 100, |_| Pinger::new(), |i| i as u32, LinkConfig::perfect(), 1);
//! fleet.run_for(Duration::from_secs(60));
//! assert_eq!(fleet.total_client_stats().transmits, 100 * 61);
//! assert_eq!(fleet.total_client_stats().app_frames, 100 * 60);
//! assert_eq!(fleet.client_events(3).len(), 60);
//! ```

mod link;
mod sim;
mod solo;

pub use link::{InFlight, Link, LinkConfig, Planned};
pub use sim::{Fleet, Pair, SideStats};
pub use solo::{Sent, Solo};

use core::fmt;
use std::vec::Vec;

use crate::game::msg::StartInfo;
use crate::game::packer::Str;
use crate::io::FrameKind;
use crate::time::{Duration, Instant};

/// Cl_StartInfo of a player called `name` with the default look: no clan, no country, the
/// `default` skin, no custom colours (what the tests', fuzz targets' and examples' players send)
///
/// ```
/// use tether_net::game::packer::Str;
///
/// let si = tether_net::testing::start_info(Str::new("tee"));
/// assert_eq!((si.country, si.skin), (-1, Str::new("default")));
/// ```
#[must_use]
pub fn start_info(name: Str<'_>) -> StartInfo<'_> {
    StartInfo {
        name,
        clan: Str::EMPTY,
        country: -1,
        skin: Str::new("default"),
        use_custom_color: 0,
        color_body: 0,
        color_feet: 0,
    }
}

/// Virtual time shared by everything in one simulation
///
/// It only moves forward, and only when told to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct VirtualClock {
    now: Instant,
    start: Instant,
}

impl VirtualClock {
    /// A clock standing at `start`
    #[must_use]
    pub const fn new(start: Instant) -> Self {
        VirtualClock { now: start, start }
    }

    /// The current virtual instant
    #[must_use]
    pub const fn now(&self) -> Instant {
        self.now
    }

    /// The instant the clock was created at
    #[must_use]
    pub const fn start(&self) -> Instant {
        self.start
    }

    /// Virtual time elapsed since [`VirtualClock::start`]
    #[must_use]
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Move forward by `d` (saturating) and return the new instant
    pub fn advance(&mut self, d: Duration) -> Instant {
        self.now = self.now.saturating_add(d);
        self.now
    }

    /// Jump forward to `to`
    ///
    /// # Panics
    /// If `to` is earlier than [`VirtualClock::now`]: virtual time never runs backwards.
    pub fn jump_to(&mut self, to: Instant) {
        assert!(
            to >= self.now,
            "VirtualClock::jump_to({to}) would move time backwards from {}",
            self.now
        );
        self.now = to;
    }
}

/// One step of the splitmix64 sequence; used to turn any seed into well-mixed state
#[must_use]
pub const fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Seeded xorshift64* pseudo-random generator
///
/// Not cryptographic; deterministic from its seed on every platform. Seed 0 is fine (the seed is
/// mixed through [`splitmix64`] first).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator seeded with `seed`
    #[must_use]
    pub const fn new(seed: u64) -> Self {
        let s = splitmix64(seed);
        Rng {
            state: if s == 0 { 0x2545_F491_4F6C_DD1D } else { s },
        }
    }

    /// A generator for sub-stream `stream` of `seed` (independent of other streams)
    #[must_use]
    pub const fn derived(seed: u64, stream: u64) -> Self {
        Rng::new(splitmix64(seed) ^ splitmix64(stream.wrapping_mul(0xD1B5_4A32_D192_ED03)))
    }

    /// Next 64 random bits
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[0, 1)`
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p` (`p <= 0` never, `p >= 1` always)
    pub fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        self.next_f64() < p
    }

    /// Uniform in `[0, n)`; 0 when `n` is 0
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[lo, hi]` (inclusive); `lo` when `hi < lo`
    pub fn range_inclusive(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        match (hi - lo).checked_add(1) {
            Some(span) => lo + self.below(span),
            None => self.next_u64(),
        }
    }

    /// Uniform duration in `[0, max]`, at microsecond resolution
    pub fn duration_up_to(&mut self, max: Duration) -> Duration {
        Duration::from_micros(self.range_inclusive(0, crate::time::duration_micros(max)))
    }

    /// Fill `buf` with random bytes
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let r = self.next_u64().to_le_bytes();
            let n = chunk.len();
            chunk.copy_from_slice(&r[..n]);
        }
    }
}

/// Which way a frame travels
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Direction {
    /// From a client to the server
    ClientToServer,
    /// From the server to a client
    ServerToClient,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::ClientToServer => "c->s",
            Direction::ServerToClient => "s->c",
        })
    }
}

/// What happened to one frame (or one chunk of a stream frame)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Fate {
    /// Handed to the receiving machine, which accepted it
    Delivered,
    /// An extra copy made by the link, handed to the receiver
    Duplicate,
    /// Handed to the receiver, which returned an error (counted in [`SideStats::input_errors`])
    Refused,
    /// Dropped by the link's random loss
    Lost,
    /// Dropped by the test's drop filter ([`Fleet::set_drop_filter`], [`Pair::set_drop_filter`])
    Filtered,
    /// A datagram larger than the link MTU, dropped
    Oversize,
    /// Dropped because the link was cut ([`Pair::set_link_up`])
    LinkDown,
    /// A stream/WebSocket frame still in flight when its transport was closed
    TransportClosed,
    /// A server transmit addressed to a peer that is not a client of this simulation
    Unroutable,
    /// Injected by the test ([`Pair::inject_to_server`]) and handed to the receiver
    Injected,
}

impl Fate {
    /// True when the frame reached the receiving machine
    #[must_use]
    pub const fn reached_receiver(self) -> bool {
        matches!(
            self,
            Fate::Delivered | Fate::Duplicate | Fate::Refused | Fate::Injected
        )
    }
}

impl fmt::Display for Fate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fate::Delivered => "delivered",
            Fate::Duplicate => "duplicate",
            Fate::Refused => "refused",
            Fate::Lost => "lost",
            Fate::Filtered => "filtered",
            Fate::Oversize => "oversize",
            Fate::LinkDown => "link-down",
            Fate::TransportClosed => "transport-closed",
            Fate::Unroutable => "unroutable",
            Fate::Injected => "injected",
        })
    }
}

/// One transcript line, borrowed: a frame's fate as it happens
///
/// Delivered frames are reported at delivery time; dropped frames when they are dropped (at send
/// time for loss, a drop filter, MTU and a cut link). With [`LinkConfig::split_stream`] each chunk of a stream
/// frame is its own entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TraceEntry<'a> {
    /// When the fate happened (virtual time)
    pub at: Instant,
    /// When the sender transmitted the frame
    pub sent_at: Instant,
    /// Which way it travelled
    pub dir: Direction,
    /// Index of the client end (always 0 in a [`Pair`]); `None` for an unroutable server transmit
    pub client: Option<usize>,
    /// Transport framing of the bytes
    pub kind: FrameKind,
    /// The bytes (one chunk of them for a split stream frame)
    pub bytes: &'a [u8],
    /// What happened
    pub fate: Fate,
}

impl TraceEntry<'_> {
    /// An owned copy
    #[must_use]
    pub fn to_record(&self) -> TraceRecord {
        TraceRecord {
            at: self.at,
            sent_at: self.sent_at,
            dir: self.dir,
            client: self.client,
            kind: self.kind,
            bytes: self.bytes.to_vec(),
            fate: self.fate,
        }
    }
}

impl fmt::Display for TraceEntry<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.at, self.dir)?;
        if let Some(c) = self.client {
            write!(f, "[{c}]")?;
        }
        write!(f, " {:?} {} {}", self.kind, self.fate, Hex(self.bytes))
    }
}

/// One transcript line, owned (see [`TraceEntry`])
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceRecord {
    /// When the fate happened (virtual time)
    pub at: Instant,
    /// When the sender transmitted the frame
    pub sent_at: Instant,
    /// Which way it travelled
    pub dir: Direction,
    /// Index of the client end; `None` for an unroutable server transmit
    pub client: Option<usize>,
    /// Transport framing of the bytes
    pub kind: FrameKind,
    /// The bytes
    pub bytes: Vec<u8>,
    /// What happened
    pub fate: Fate,
}

impl TraceRecord {
    /// A borrowed view
    #[must_use]
    pub fn as_entry(&self) -> TraceEntry<'_> {
        TraceEntry {
            at: self.at,
            sent_at: self.sent_at,
            dir: self.dir,
            client: self.client,
            kind: self.kind,
            bytes: &self.bytes,
            fate: self.fate,
        }
    }
}

impl fmt::Display for TraceRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_entry().fmt(f)
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for TraceRecord {
    fn format(&self, f: defmt::Formatter<'_>) {
        self.as_entry().format(f);
    }
}

/// Bytes shown as space-separated lowercase hex (`01 ab ff`)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Hex<'a>(pub &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The bytes of space-separated hex pairs, as [`Hex`] shows them (test vectors, captures)
///
/// # Panics
/// On anything but hex pairs separated by white space.
#[must_use]
pub fn from_hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).expect("hex pairs"))
        .collect()
}

/// The datagram of one game control packet (`ack` 0), as a client or a load generator sends it
#[must_use]
pub fn control_packet(
    control: crate::game::wire::Control<'_>,
    token: Option<crate::game::wire::Token>,
) -> Vec<u8> {
    let p = crate::game::wire::ControlPacket {
        ack: 0,
        control,
        token,
    };
    let mut b = std::vec![0; p.buffer_len()];
    let n = p.emit(&mut b).expect("sized by buffer_len");
    b.truncate(n);
    b
}

/// Why a simulation run stopped before its goal
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SimError {
    /// The predicate was still false when the virtual time budget ran out
    Timeout {
        /// Virtual time when the run gave up
        at: Instant,
        /// The budget that was given
        budget: Duration,
    },
    /// Nothing is scheduled any more (no timer, nothing in flight): the predicate can never turn true
    Idle {
        /// Virtual time when the simulation went idle
        at: Instant,
    },
    /// Too many steps without virtual time moving: a livelock (a timer that never advances, or
    /// frames bouncing at zero latency)
    Stalled {
        /// The instant time is stuck at
        at: Instant,
        /// Steps taken at that instant
        steps: u64,
    },
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::Timeout { at, budget } => {
                write!(f, "simulation timed out at {at}: condition not met within {budget:?} of virtual time")
            }
            SimError::Idle { at } => {
                write!(f, "simulation went idle at {at} (no timers, nothing in flight) before the condition held")
            }
            SimError::Stalled { at, steps } => {
                write!(
                    f,
                    "simulation livelocked at {at}: {steps} steps without virtual time advancing"
                )
            }
        }
    }
}

impl core::error::Error for SimError {}
