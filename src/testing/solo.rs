//! [`Solo`]: one machine driven directly, for unit tests and fuzz targets

use std::boxed::Box;
use std::vec::Vec;

use super::sim::{
    check_deadline, check_transmit, deliver_to, grow, record, AppHook, ClosedHook, EventHook,
    Input, Outcome, DEFAULT_STALL_LIMIT, DRAIN_LIMIT, SCRATCH_LEN,
};
use super::{Fate, SideStats, VirtualClock};
use crate::io::FrameKind;
use crate::machine::Machine;
use crate::time::{Duration, Instant};

/// One frame a [`Solo`] machine transmitted
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent<P> {
    /// When it was transmitted
    pub at: Instant,
    /// Destination
    pub to: P,
    /// Transport framing
    pub kind: FrameKind,
    /// The bytes
    pub bytes: Vec<u8>,
}

#[cfg(feature = "defmt")]
impl<P: defmt::Format> defmt::Format for Sent<P> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "Sent {{ at: {}, to: {}, kind: {}, bytes: {=[u8]} }}",
            self.at,
            self.to,
            self.kind,
            self.bytes.as_slice()
        );
    }
}

/// One machine on its own: the test (or fuzz target) plays every peer
///
/// Inputs go in with [`Solo::input`] at the current virtual time; [`Solo::advance`] moves time
/// forward and fires the machine's timers in order on the way. After every call the machine is
/// drained: its transmits are kept in [`Solo::sent`], its events in [`Solo::events`]. Stream
/// bytes are buffered per peer and fed like a [`Fleet`](super::Fleet) feeds them. The same
/// invariant checks as in a [`Fleet`](super::Fleet) run, so a fuzz target that replays
/// `(delay, bytes)` pairs through `advance` and `input` checks the run-loop contract for free.
///
/// ```
/// # use tether_net::testing::Solo;
/// # use tether_net::{BufferTooSmall, Duration, FrameKind, Instant, Machine, Received, Transmit};
/// # struct Counter(u32, bool);
/// # impl Machine for Counter {
/// #     type Peer = u8; type Event = u32; type App<'a> = (); type Error = ();
/// #     fn handle_input<'a>(&mut self, _: Instant, _: u8, d: &'a [u8]) -> Result<Received<()>, ()> {
/// #         if d.is_empty() { return Err(()) } self.0 += 1; self.1 = true; Ok(Received::consumed(d.len()))
/// #     }
/// #     fn handle_timeout(&mut self, _: Instant) {}
/// #     fn poll_transmit(&mut self, _: Instant, buf: &mut [u8]) -> Result<Option<Transmit<u8>>, BufferTooSmall> {
/// #         if !std::mem::take(&mut self.1) { return Ok(None) }
/// #         buf[0] = self.0 as u8;
/// #         Ok(Some(Transmit { to: 9, len: 1, kind: FrameKind::Datagram }))
/// #     }
/// #     fn poll_event(&mut self) -> Option<u32> { None }
/// #     fn poll_timeout(&self) -> Option<Instant> { None }
/// # }
/// let mut solo = Solo::new(Counter(0, false));
/// solo.input(9, FrameKind::Datagram, b"hello");
/// solo.advance(Duration::from_millis(5));
/// assert_eq!(solo.input(9, FrameKind::Datagram, b""), tether_net::testing::Fate::Refused);
/// assert_eq!(solo.sent()[0].bytes, [1]);
/// assert_eq!(solo.stats().input_errors, 1);
/// ```
pub struct Solo<M: Machine> {
    machine: M,
    clock: VirtualClock,
    scratch: Vec<u8>,
    sent: Vec<Sent<M::Peer>>,
    keep_sent: bool,
    events: Vec<M::Event>,
    keep_events: bool,
    stats: SideStats,
    rx: Vec<(M::Peer, Vec<u8>)>,
    on_app: Option<AppHook<M>>,
    on_event: Option<EventHook<M::Event>>,
    closed: Option<ClosedHook<M>>,
    silent: bool,
    checks: bool,
    ws_close_closes: bool,
    stall_limit: u64,
}

impl<M: Machine> Solo<M> {
    /// Drive `machine`, starting at [`Instant::ZERO`]
    #[must_use]
    pub fn new(machine: M) -> Self {
        Solo {
            machine,
            clock: VirtualClock::new(Instant::ZERO),
            scratch: std::vec![0; SCRATCH_LEN],
            sent: Vec::new(),
            keep_sent: true,
            events: Vec::new(),
            keep_events: true,
            stats: SideStats::default(),
            rx: Vec::new(),
            on_app: None,
            on_event: None,
            closed: None,
            silent: false,
            checks: true,
            ws_close_closes: true,
            stall_limit: DEFAULT_STALL_LIMIT,
        }
    }

    /// Start virtual time at `start`
    ///
    /// # Panics
    /// If time already moved.
    #[must_use]
    pub fn starting_at(mut self, start: Instant) -> Self {
        assert!(
            self.clock.now() == self.clock.start(),
            "starting_at must be called before time moves"
        );
        self.clock = VirtualClock::new(start);
        self
    }

    /// The current virtual instant
    #[must_use]
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// The machine
    #[must_use]
    pub fn machine(&self) -> &M {
        &self.machine
    }

    /// The machine, to issue commands; call [`Solo::drain`] (or any input) afterwards to
    /// collect what they produced
    pub fn machine_mut(&mut self) -> &mut M {
        &mut self.machine
    }

    /// Frames transmitted so far (oldest first)
    #[must_use]
    pub fn sent(&self) -> &[Sent<M::Peer>] {
        &self.sent
    }

    /// Take the transmitted frames out
    pub fn take_sent(&mut self) -> Vec<Sent<M::Peer>> {
        core::mem::take(&mut self.sent)
    }

    /// Keep transmitted frames (default true); fuzz targets may turn it off
    pub fn keep_sent(&mut self, on: bool) {
        self.keep_sent = on;
    }

    /// Events reported so far (oldest first)
    #[must_use]
    pub fn events(&self) -> &[M::Event] {
        &self.events
    }

    /// Take the events out
    pub fn take_events(&mut self) -> Vec<M::Event> {
        core::mem::take(&mut self.events)
    }

    /// Keep events (default true); the hook ([`Solo::on_event`]) sees them either way
    pub fn keep_events(&mut self, on: bool) {
        self.keep_events = on;
    }

    /// The machine's counters
    #[must_use]
    pub fn stats(&self) -> &SideStats {
        &self.stats
    }

    /// Call `f` for every application payload the machine returns
    pub fn on_app(&mut self, mut f: impl for<'a> FnMut(&M::App<'a>) + 'static) {
        self.on_app = Some(Box::new(move |_, _, _, a: &M::App<'_>| f(a)));
    }

    /// Call `f(machine, now, app data)` for every application payload, with the machine itself
    /// so `f` can answer at once, before the next buffered bytes are fed (see
    /// [`Fleet::answer_server_app`](super::Fleet::answer_server_app)); replaces [`Solo::on_app`]
    pub fn answer_app(
        &mut self,
        mut f: impl for<'a> FnMut(&mut M, Instant, &M::App<'a>) + 'static,
    ) {
        self.on_app = Some(Box::new(move |m, now, _, a: &M::App<'_>| f(m, now, a)));
    }

    /// Call `f` for every event, as it is reported
    pub fn on_event(&mut self, mut f: impl FnMut(&M::Event) + 'static) {
        self.on_event = Some(Box::new(move |_, e: &M::Event| f(e)));
    }

    /// See [`Fleet::client_closed_when`](super::Fleet::client_closed_when)
    pub fn closed_when(&mut self, f: impl Fn(&M) -> bool + 'static) {
        self.closed = Some(Box::new(f));
    }

    /// Turn the invariant checks on (default) or off
    pub fn set_checks(&mut self, on: bool) {
        self.checks = on;
    }

    /// Timer firings allowed without time advancing before [`Solo::advance`] panics
    pub fn set_stall_limit(&mut self, steps: u64) {
        self.stall_limit = steps.max(1);
    }

    /// Whether a WebSocket Close frame given to [`Solo::input`] is followed by `handle_closed`
    /// (default true, as in a [`Fleet`](super::Fleet))
    pub fn set_ws_close_closes_transport(&mut self, on: bool) {
        self.ws_close_closes = on;
    }

    /// Hand the machine one frame from `from` now, then drain it
    ///
    /// Stream bytes join `from`'s receive buffer and are fed until the machine needs more; if it
    /// keeps refusing them, the buffer is dropped and `handle_closed(from)` is called, as a
    /// runtime would close the connection. Returns [`Fate::Refused`] when the machine returned
    /// an error, else [`Fate::Delivered`].
    pub fn input(&mut self, from: M::Peer, kind: FrameKind, bytes: &[u8]) -> Fate {
        let now = self.clock.now();
        let pos = match self.rx.iter().position(|(p, _)| *p == from) {
            Some(pos) => pos,
            None => {
                self.rx.push((from, Vec::new()));
                self.rx.len() - 1
            }
        };
        let Solo {
            machine,
            events,
            keep_events,
            stats,
            rx,
            on_app,
            on_event,
            checks,
            ..
        } = self;
        let keep = *keep_events;
        let mut hook = |m: &mut M, a: &M::App<'_>| {
            if let Some(h) = on_app.as_mut() {
                h(m, now, 0, a);
            }
        };
        let mut sink = |e: M::Event| record(0, e, keep, events, on_event);
        let input = Input {
            who: "machine",
            idx: 0,
            kind,
            bytes,
        };
        let buf = &mut rx[pos].1;
        let outcome = deliver_to(
            machine, input, now, from, buf, &mut sink, stats, &mut hook, *checks,
        );
        let fate = match outcome {
            Outcome::Accepted | Outcome::WsClosed => Fate::Delivered,
            Outcome::Refused | Outcome::Reset => Fate::Refused,
        };
        match outcome {
            Outcome::Reset => {
                self.stats.stream_resets += 1;
                self.close_transport(from);
            }
            Outcome::WsClosed if self.ws_close_closes => {
                self.drain();
                self.close_transport(from);
            }
            _ => {}
        }
        self.drain();
        fate
    }

    /// The transport to `from` is gone: drop its stream buffer, call `handle_closed`, drain
    pub fn close_transport(&mut self, from: M::Peer) {
        let now = self.clock.now();
        self.rx.retain(|(p, _)| *p != from);
        self.machine.handle_closed(now, from);
        self.drain();
    }

    /// Move time forward by `d`, firing due timers in order; returns how many fired
    ///
    /// # Panics
    /// On a timer livelock and on invariant violations.
    pub fn advance(&mut self, d: Duration) -> u64 {
        let to = self.clock.now() + d;
        self.advance_to(to)
    }

    /// Move time forward to `to` (no-op if it is not later), firing due timers in order
    ///
    /// # Panics
    /// On a timer livelock and on invariant violations.
    pub fn advance_to(&mut self, to: Instant) -> u64 {
        self.drain();
        let mut fired = 0;
        let mut same = 0;
        while let Some(t) = self.machine.poll_timeout() {
            if t > to {
                break;
            }
            let now = self.clock.now();
            if t > now {
                self.clock.jump_to(t);
                same = 0;
            } else {
                same += 1;
                assert!(
                    same < self.stall_limit,
                    "{}",
                    super::SimError::Stalled {
                        at: now,
                        steps: same
                    }
                );
            }
            self.machine.handle_timeout(self.clock.now());
            self.stats.timeouts += 1;
            fired += 1;
            self.drain();
        }
        // (to the time asked, or nowhere when the clock is already past it)
        self.clock.jump_to(to.max(self.clock.now()));
        fired
    }

    /// Collect the machine's transmits and events and check its deadline
    pub fn drain(&mut self) {
        let now = self.clock.now();
        let closed = |f: &Option<ClosedHook<M>>, m: &M| f.as_ref().is_some_and(|f| f(m));
        let silent = self.checks && self.silent && closed(&self.closed, &self.machine);
        let mut count = 0;
        loop {
            match self.machine.poll_transmit(now, &mut self.scratch) {
                Ok(None) => break,
                Ok(Some(t)) => {
                    count += 1;
                    check_transmit(
                        "machine",
                        0,
                        t.len,
                        self.scratch.len(),
                        count,
                        silent,
                        t.kind,
                    );
                    self.stats.transmits += 1;
                    self.stats.bytes_out += t.len as u64;
                    if self.keep_sent {
                        self.sent.push(Sent {
                            at: now,
                            to: t.to,
                            kind: t.kind,
                            bytes: self.scratch[..t.len].to_vec(),
                        });
                    }
                }
                Err(e) => grow(&mut self.scratch, e, "machine", 0),
            }
        }
        let mut n = 0;
        while let Some(e) = self.machine.poll_event() {
            record(0, e, self.keep_events, &mut self.events, &mut self.on_event);
            self.stats.events += 1;
            n += 1;
            assert!(
                n <= DRAIN_LIMIT,
                "machine reported more than {DRAIN_LIMIT} events in one drain"
            );
        }
        self.silent = closed(&self.closed, &self.machine);
        if self.checks {
            check_deadline("machine", 0, self.machine.poll_timeout(), now);
        }
    }
}
