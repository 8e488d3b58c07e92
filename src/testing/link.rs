//! One-way network link: loss, duplication, reordering, latency, jitter, MTU, stream splitting

use core::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::vec::Vec;

use super::{Fate, Rng};
use crate::io::FrameKind;
use crate::time::{Duration, Instant};

/// How a [`Link`] treats frames
///
/// Loss, duplication, reordering and the MTU apply to datagrams ([`FrameKind::Datagram`]) only.
/// Stream and WebSocket frames model a reliable ordered transport (TCP): never lost, duplicated
/// or reordered, only delayed by latency and jitter with FIFO order kept; a stream frame may be
/// delivered split into random chunks ([`LinkConfig::split_stream`]).
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct LinkConfig {
    /// Probability in `0..=1` that a datagram is lost
    pub loss: f64,
    /// Probability in `0..=1` that a delivered datagram arrives a second time
    pub duplicate: f64,
    /// Probability in `0..=1` that a datagram gets extra delay (up to
    /// [`LinkConfig::reorder_delay`]) so later datagrams overtake it
    pub reorder: f64,
    /// Largest extra delay of a reordered datagram
    pub reorder_delay: Duration,
    /// One-way base delay of every frame
    pub latency: Duration,
    /// Extra uniform random delay in `[0, jitter]` added to every frame (datagrams may reorder
    /// because of it; reliable frames keep FIFO order)
    pub jitter: Duration,
    /// Datagrams longer than this are dropped ([`Fate::Oversize`]); `None` for no limit
    pub mtu: Option<usize>,
    /// Deliver each stream frame as one or more random chunks (exercises partial-frame handling)
    pub split_stream: bool,
}

impl LinkConfig {
    /// Lossless, in order, 10 ms one-way latency, no jitter, no MTU, no splitting
    #[must_use]
    pub const fn perfect() -> Self {
        LinkConfig {
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(20),
            latency: Duration::from_millis(10),
            jitter: Duration::ZERO,
            mtu: None,
            split_stream: false,
        }
    }

    /// [`LinkConfig::perfect`] with datagram loss probability `loss`
    #[must_use]
    pub const fn lossy(loss: f64) -> Self {
        LinkConfig {
            loss,
            ..LinkConfig::perfect()
        }
    }

    /// This config with another datagram loss probability
    #[must_use]
    pub const fn with_loss(self, loss: f64) -> Self {
        LinkConfig { loss, ..self }
    }

    /// This config with another duplication probability
    #[must_use]
    pub const fn with_duplicate(self, duplicate: f64) -> Self {
        LinkConfig { duplicate, ..self }
    }

    /// This config with another reorder probability and maximum extra delay
    #[must_use]
    pub const fn with_reorder(self, reorder: f64, reorder_delay: Duration) -> Self {
        LinkConfig {
            reorder,
            reorder_delay,
            ..self
        }
    }

    /// This config with another one-way latency
    #[must_use]
    pub const fn with_latency(self, latency: Duration) -> Self {
        LinkConfig { latency, ..self }
    }

    /// This config with another jitter
    #[must_use]
    pub const fn with_jitter(self, jitter: Duration) -> Self {
        LinkConfig { jitter, ..self }
    }

    /// This config with another datagram MTU
    #[must_use]
    pub const fn with_mtu(self, mtu: Option<usize>) -> Self {
        LinkConfig { mtu, ..self }
    }

    /// This config with stream splitting on or off
    #[must_use]
    pub const fn with_split_stream(self, split_stream: bool) -> Self {
        LinkConfig {
            split_stream,
            ..self
        }
    }

    /// # Panics
    /// If a probability is outside `0..=1` (or NaN).
    fn validate(&self) {
        for (name, p) in [
            ("loss", self.loss),
            ("duplicate", self.duplicate),
            ("reorder", self.reorder),
        ] {
            assert!(
                (0.0..=1.0).contains(&p),
                "LinkConfig::{name} must be in 0..=1, got {p}"
            );
        }
    }
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig::perfect()
    }
}

/// One delivery a [`Link`] scheduled: `bytes[start..end]` of the transmitted frame arrives at `at`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Planned {
    /// Arrival time
    pub at: Instant,
    /// First byte of the frame carried by this delivery
    pub start: usize,
    /// One past the last byte carried
    pub end: usize,
    /// [`Fate::Delivered`] for the original, [`Fate::Duplicate`] for a link-made copy
    pub fate: Fate,
}

/// A frame (or chunk) travelling on a [`Link`]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    /// When it arrives
    pub deliver_at: Instant,
    /// When it was sent
    pub sent_at: Instant,
    /// Transport framing
    pub kind: FrameKind,
    /// The bytes
    pub bytes: Vec<u8>,
    /// [`Fate::Delivered`] or [`Fate::Duplicate`]
    pub fate: Fate,
    seq: u64,
}

#[cfg(feature = "defmt")]
impl defmt::Format for InFlight {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "InFlight {{ deliver_at: {}, sent_at: {}, kind: {}, bytes: {=[u8]}, fate: {} }}",
            self.deliver_at,
            self.sent_at,
            self.kind,
            self.bytes.as_slice(),
            self.fate
        );
    }
}

impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.deliver_at, self.seq).cmp(&(other.deliver_at, other.seq))
    }
}

impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A one-way link: decides each frame's fate and arrival time, and can hold frames in flight
///
/// [`Link::plan`] only schedules (the [`Pair`](super::Pair) and [`Fleet`](super::Fleet) keep one
/// shared queue); [`Link::send`] / [`Link::poll_delivery`] use the link's own queue for a
/// hand-written driver loop.
#[derive(Debug, Clone)]
pub struct Link {
    config: LinkConfig,
    rng: Rng,
    up: bool,
    reliable_tail: Instant,
    queue: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    plan_buf: Vec<Planned>,
}

impl Link {
    /// A link that is up, seeded with `seed`
    ///
    /// # Panics
    /// If a probability in `config` is outside `0..=1`.
    #[must_use]
    pub fn new(config: LinkConfig, seed: u64) -> Self {
        config.validate();
        Link {
            config,
            rng: Rng::new(seed),
            up: true,
            reliable_tail: Instant::ZERO,
            queue: BinaryHeap::new(),
            seq: 0,
            plan_buf: Vec::new(),
        }
    }

    /// The current behaviour
    #[must_use]
    pub const fn config(&self) -> &LinkConfig {
        &self.config
    }

    /// Change the behaviour for frames sent from now on
    ///
    /// # Panics
    /// If a probability is outside `0..=1`.
    pub fn set_config(&mut self, config: LinkConfig) {
        config.validate();
        self.config = config;
    }

    /// Whether frames get through
    #[must_use]
    pub const fn is_up(&self) -> bool {
        self.up
    }

    /// Cut (`false`) or restore (`true`) the link; while cut every frame is dropped
    /// ([`Fate::LinkDown`]), including frames already in flight when they arrive
    pub fn set_up(&mut self, up: bool) {
        self.up = up;
    }

    /// The transport this link carries was closed: forget the FIFO position of reliable frames
    /// and drop reliable frames held in this link's own queue
    pub fn reset_reliable(&mut self) {
        self.reliable_tail = Instant::ZERO;
        self.queue
            .retain(|Reverse(f)| f.kind == FrameKind::Datagram);
    }

    /// Decide what happens to a `len`-byte frame of `kind` sent at `now`
    ///
    /// On success `out` is cleared and filled with one or more deliveries (duplicates, stream
    /// chunks). On `Err` the frame is dropped and the fate says why.
    ///
    /// # Errors
    /// [`Fate::LinkDown`], [`Fate::Oversize`] or [`Fate::Lost`].
    pub fn plan(
        &mut self,
        now: Instant,
        kind: FrameKind,
        len: usize,
        out: &mut Vec<Planned>,
    ) -> Result<(), Fate> {
        out.clear();
        if !self.up {
            return Err(Fate::LinkDown);
        }
        let cfg = self.config;
        if kind == FrameKind::Datagram {
            if cfg.mtu.is_some_and(|mtu| len > mtu) {
                return Err(Fate::Oversize);
            }
            if self.rng.chance(cfg.loss) {
                return Err(Fate::Lost);
            }
            let at = now + self.datagram_delay();
            out.push(Planned {
                at,
                start: 0,
                end: len,
                fate: Fate::Delivered,
            });
            if self.rng.chance(cfg.duplicate) {
                let at = now + self.datagram_delay();
                out.push(Planned {
                    at,
                    start: 0,
                    end: len,
                    fate: Fate::Duplicate,
                });
            }
            return Ok(());
        }
        // Reliable, ordered: never before an earlier reliable frame.
        let mut at =
            (now + cfg.latency + self.rng.duration_up_to(cfg.jitter)).max(self.reliable_tail);
        if kind == FrameKind::Stream && cfg.split_stream && len > 1 {
            let mut start = 0;
            while start < len {
                let rest = (len - start) as u64;
                let take = if self.rng.chance(0.6) {
                    1 + self.rng.below(rest)
                } else {
                    rest
                };
                let end = start + take as usize;
                out.push(Planned {
                    at,
                    start,
                    end,
                    fate: Fate::Delivered,
                });
                start = end;
                if start < len {
                    at += Duration::from_micros(self.rng.range_inclusive(1, 1_000));
                }
            }
        } else {
            out.push(Planned {
                at,
                start: 0,
                end: len,
                fate: Fate::Delivered,
            });
        }
        self.reliable_tail = at;
        Ok(())
    }

    fn datagram_delay(&mut self) -> Duration {
        let cfg = self.config;
        let mut d = cfg.latency + self.rng.duration_up_to(cfg.jitter);
        if self.rng.chance(cfg.reorder) {
            d += Duration::from_micros(1) + self.rng.duration_up_to(cfg.reorder_delay);
        }
        d
    }

    /// Send `bytes` into this link's own queue
    ///
    /// Returns how many deliveries were queued (more than one for a duplicate or a split stream
    /// frame).
    ///
    /// # Errors
    /// The frame was dropped; the fate says why.
    pub fn send(&mut self, now: Instant, kind: FrameKind, bytes: &[u8]) -> Result<usize, Fate> {
        let mut plan = core::mem::take(&mut self.plan_buf);
        let r = self.plan(now, kind, bytes.len(), &mut plan);
        if r.is_ok() {
            for p in &plan {
                self.seq += 1;
                self.queue.push(Reverse(InFlight {
                    deliver_at: p.at,
                    sent_at: now,
                    kind,
                    bytes: bytes[p.start..p.end].to_vec(),
                    fate: p.fate,
                    seq: self.seq,
                }));
            }
        }
        let n = plan.len();
        self.plan_buf = plan;
        r.map(|()| n)
    }

    /// Arrival time of the next frame in this link's own queue
    #[must_use]
    pub fn next_delivery(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse(f)| f.deliver_at)
    }

    /// The earliest frame due at or before `now`
    ///
    /// While the link is cut, due frames come back with fate [`Fate::LinkDown`]: the caller must
    /// drop them.
    pub fn poll_delivery(&mut self, now: Instant) -> Option<InFlight> {
        if self.next_delivery()? > now {
            return None;
        }
        let Reverse(mut f) = self.queue.pop()?;
        if !self.up {
            f.fate = Fate::LinkDown;
        }
        Some(f)
    }

    /// Frames in this link's own queue
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }
}
