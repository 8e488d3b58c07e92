//! The trait the four machines share, and [`drain`], step 2 of the run loop
//!
//! Every machine has the same methods as inherent methods (no import needed) and implements
//! [`Machine`] with them, so generic code (drivers, the simulator in `tether_net::testing`, fuzz
//! targets) drives any machine with one loop. See the crate docs for the run-loop contract.

use core::fmt;

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
    /// The machine's error type (its profile's `Error`); for `handle_input`, the only errors are
    /// the ones that leave the input unconsumed (e.g. `QueueFull`: drain, then feed it again)
    type Error;

    /// Feed one packet (datagram, WebSocket message) or the buffered bytes of a stream
    ///
    /// Parses at most one frame. On `Err` nothing was consumed by a stream transport; datagram and
    /// message transports report errors only for inputs they cannot take at all (queue full).
    fn handle_input<'a>(
        &mut self,
        now: Instant,
        from: Self::Peer,
        data: &'a [u8],
    ) -> Result<Received<Self::App<'a>>, Self::Error>;

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
    type Error = M::Error;

    fn handle_input<'a>(
        &mut self,
        now: Instant,
        from: Self::Peer,
        data: &'a [u8],
    ) -> Result<Received<Self::App<'a>>, Self::Error> {
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

/// Why [`drain`] stopped early
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DrainError<E> {
    /// `buf` cannot hold the next frame; it stays queued: call again with a buffer of at least
    /// `required` bytes
    BufferTooSmall(BufferTooSmall),
    /// Your `send` failed; the frame it was given is gone from the machine (UDP: a lost datagram;
    /// a stream transport is broken anyway: report it with `handle_closed`)
    Send(E),
}

impl<E: fmt::Display> fmt::Display for DrainError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DrainError::BufferTooSmall(e) => e.fmt(f),
            DrainError::Send(e) => write!(f, "send failed: {e}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for DrainError<E> {}

/// Step 2 of the run loop: hand out every queued frame and every event, losing nothing
///
/// Sends every frame [`Machine::poll_transmit`] writes into `buf` (through `send`), then takes
/// **one** event and gives it to `on_event` together with the machine, so the handler may issue
/// commands (`close`, `provide_token`, `handle_connected`, ...). Any frame such a command queues
/// is sent before the next event is taken, and the function returns only when both queues are
/// empty: then it is safe to sleep until [`Machine::poll_timeout`].
///
/// ```
/// use tether_net::game::{Client, ClientConfig, ClientEvent};
/// use tether_net::{drain, Instant};
///
/// let mut client = Client::new(ClientConfig::default());
/// client.connect(Instant::ZERO).unwrap();
/// let mut buf = [0u8; 1400];
/// let mut sent = Vec::new();
/// drain(&mut client, Instant::ZERO, &mut buf, |_t, bytes| {
///     sent.push(bytes.to_vec()); // socket.send(bytes)
///     Ok::<(), std::io::Error>(())
/// }, |_client, event: ClientEvent| println!("{event:?}"))
/// .unwrap();
/// assert_eq!(sent.len(), 1, "the CONNECT");
/// ```
///
/// # Errors
/// [`DrainError`]; what was handed out before the error stays handed out.
pub fn drain<M: Machine + ?Sized, E>(
    machine: &mut M,
    now: Instant,
    buf: &mut [u8],
    mut send: impl FnMut(Transmit<M::Peer>, &[u8]) -> Result<(), E>,
    mut on_event: impl FnMut(&mut M, M::Event),
) -> Result<(), DrainError<E>> {
    loop {
        while let Some(t) = machine
            .poll_transmit(now, buf)
            .map_err(DrainError::BufferTooSmall)?
        {
            let bytes = buf.get(..t.len).unwrap_or(buf);
            send(t, bytes).map_err(DrainError::Send)?;
        }
        match machine.poll_event() {
            Some(event) => on_event(machine, event),
            None => return Ok(()),
        }
    }
}

/// Implements [`Machine`] for a machine type by delegating to its inherent methods
///
/// `frames` also delegates `handle_frame` and `handle_closed` (message and stream transports).
macro_rules! impl_machine {
    (
        impl[$($gen:tt)*] for $ty:ty {
            Peer = $peer:ty,
            Event = $event:ty,
            App<$a:lifetime> = $app:ty,
            Error = $error:ty $(,)?
        }
        $(frames $frames:tt)?
    ) => {
        impl<$($gen)*> $crate::machine::Machine for $ty {
            type Peer = $peer;
            type Event = $event;
            type App<$a> = $app;
            type Error = $error;

            fn handle_input<$a>(
                &mut self,
                now: $crate::time::Instant,
                from: Self::Peer,
                data: &$a [u8],
            ) -> Result<$crate::io::Received<Self::App<$a>>, Self::Error> {
                Self::handle_input(self, now, from, data)
            }

            $crate::machine::impl_machine!(@frames $($frames)?);

            fn handle_timeout(&mut self, now: $crate::time::Instant) {
                Self::handle_timeout(self, now);
            }

            fn poll_transmit(
                &mut self,
                now: $crate::time::Instant,
                buf: &mut [u8],
            ) -> Result<Option<$crate::io::Transmit<Self::Peer>>, $crate::io::BufferTooSmall> {
                Self::poll_transmit(self, now, buf)
            }

            fn poll_event(&mut self) -> Option<Self::Event> {
                Self::poll_event(self)
            }

            fn poll_timeout(&self) -> Option<$crate::time::Instant> {
                Self::poll_timeout(self)
            }
        }
    };
    (@frames) => {};
    (@frames {}) => {
        fn handle_frame(
            &mut self,
            now: $crate::time::Instant,
            from: Self::Peer,
            kind: $crate::io::FrameKind,
            payload: &[u8],
        ) {
            Self::handle_frame(self, now, from, kind, payload);
        }

        fn handle_closed(&mut self, now: $crate::time::Instant, from: Self::Peer) {
            Self::handle_closed(self, now, from);
        }
    };
}
pub(crate) use impl_machine;
