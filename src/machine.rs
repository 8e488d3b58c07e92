//! The trait the four machines share
//!
//! Inherent methods on each machine are the primary API; this trait exists so generic code (the
//! simulator in `tether_net::testing`, runtime adapters, fuzz targets) can drive any machine with the
//! same loop. See the crate docs for the run-loop contract.

use crate::io::{BufferTooSmall, FrameKind, Received, Transmit};
use crate::time::Instant;

/// A sans-IO protocol state machine
pub trait Machine {
    /// Who frames go to and come from: `()` for a client, the caller's key for a server
    type Peer: Copy + Eq;
    /// Control-plane events (owned, small)
    type Event;
    /// Application data borrowed out of one input
    type App<'a>;
    /// Why one input was refused
    type InputError;

    /// Feed one packet (datagram, WebSocket message) or the buffered bytes of a stream
    ///
    /// Parses at most one frame. On `Err` nothing was consumed by a stream transport; datagram and
    /// message transports report errors only for inputs they cannot take at all (queue full).
    fn handle_input<'a>(
        &mut self,
        now: Instant,
        from: Self::Peer,
        data: &'a [u8],
    ) -> Result<Received<Self::App<'a>>, Self::InputError>;

    /// Feed a non-data frame of a message transport: a WebSocket Ping, Pong or Close
    ///
    /// Machines without such frames (datagram and stream transports) ignore it; that is the
    /// default. Binary messages go through [`Machine::handle_input`].
    fn handle_frame(&mut self, now: Instant, from: Self::Peer, kind: FrameKind, payload: &[u8]) {
        let _ = (now, from, kind, payload);
    }

    /// The caller's transport to `from` is gone (TCP reset, WebSocket closed)
    ///
    /// Connectionless machines (the game profile over UDP) ignore it; that is the default.
    fn handle_closed(&mut self, now: Instant, from: Self::Peer) {
        let _ = (now, from);
    }

    /// Let timers fire; a call before [`Machine::poll_timeout`] is a no-op
    fn handle_timeout(&mut self, now: Instant);

    /// Write the next frame to send into `buf`
    ///
    /// # Errors
    /// [`BufferTooSmall`] when `buf` cannot hold the frame; the frame stays queued.
    #[must_use = "a queued frame must be sent"]
    fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<Transmit<Self::Peer>>, BufferTooSmall>;

    /// Next control-plane event
    #[must_use]
    fn poll_event(&mut self) -> Option<Self::Event>;

    /// When [`Machine::handle_timeout`] must be called next; `None` when no timer runs
    #[must_use]
    fn poll_timeout(&self) -> Option<Instant>;
}

/// A boxed machine is a machine: lets a simulator or adapter keep large servers on the heap
#[cfg(feature = "alloc")]
impl<M: Machine + ?Sized> Machine for alloc::boxed::Box<M> {
    type Peer = M::Peer;
    type Event = M::Event;
    type App<'a> = M::App<'a>;
    type InputError = M::InputError;

    fn handle_input<'a>(
        &mut self,
        now: Instant,
        from: Self::Peer,
        data: &'a [u8],
    ) -> Result<Received<Self::App<'a>>, Self::InputError> {
        (**self).handle_input(now, from, data)
    }

    fn handle_frame(&mut self, now: Instant, from: Self::Peer, kind: FrameKind, payload: &[u8]) {
        (**self).handle_frame(now, from, kind, payload);
    }

    fn handle_closed(&mut self, now: Instant, from: Self::Peer) {
        (**self).handle_closed(now, from);
    }

    fn handle_timeout(&mut self, now: Instant) {
        (**self).handle_timeout(now);
    }

    fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<Transmit<Self::Peer>>, BufferTooSmall> {
        (**self).poll_transmit(now, buf)
    }

    fn poll_event(&mut self) -> Option<Self::Event> {
        (**self).poll_event()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        (**self).poll_timeout()
    }
}
