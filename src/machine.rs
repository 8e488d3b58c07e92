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

/// The next thing step 2 of the run loop must do: send a frame or handle an event
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Output<P, E> {
    /// Send the frame written into your buffer
    Transmit(Transmit<P>),
    /// Handle this event (commands issued while handling it are fine)
    Event(E),
}

/// Step 2 of the run loop, one item at a time: the next frame, else the next event
///
/// Frames always come first, so calling it until it returns `None` hands out everything, and a
/// command you issue while handling an [`Output::Event`] has its frames handed out by the next
/// call. This is the form for async code, where sending means `.await`:
///
/// ```
/// # use tether_net::game::{Client, ClientConfig, ClientEvent};
/// # use tether_net::{poll_output, Instant, Output};
/// # let mut client = Client::new(ClientConfig::new());
/// # let now = Instant::ZERO;
/// # client.connect(now).unwrap();
/// # let mut sent = 0;
/// let mut buf = [0u8; 1400];
/// while let Some(out) = poll_output(&mut client, now, &mut buf)? {
///     match out {
///         Output::Transmit(t) => sent += 1, // socket.send(&buf[..t.len]).await?
///         Output::Event(ClientEvent::Connected { .. }) => client.close(now, "bye")?,
///         Output::Event(_) => {}
///     }
/// }
/// # assert_eq!(sent, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`BufferTooSmall`] when `buf` cannot hold the next frame; it stays queued.
#[must_use = "an output must be sent or handled"]
#[allow(clippy::type_complexity)] // the machine's own associated types, spelled out for rustdoc
pub fn poll_output<M: Machine + ?Sized>(
    machine: &mut M,
    now: Instant,
    buf: &mut [u8],
) -> Result<Option<Output<M::Peer, M::Event>>, BufferTooSmall> {
    if let Some(t) = machine.poll_transmit(now, buf)? {
        return Ok(Some(Output::Transmit(t)));
    }
    Ok(machine.poll_event().map(Output::Event))
}

/// Why [`drain`] stopped early
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
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
/// [`poll_output`] is the same step one item at a time, for loops that must `.await` a send.
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
    while let Some(out) = poll_output(machine, now, buf).map_err(DrainError::BufferTooSmall)? {
        match out {
            Output::Transmit(t) => {
                let bytes = buf.get(..t.len).unwrap_or(buf);
                send(t, bytes).map_err(DrainError::Send)?;
            }
            Output::Event(event) => on_event(machine, event),
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    extern crate alloc;
    extern crate std;
    use alloc::boxed::Box;
    use alloc::string::{String, ToString};
    use alloc::vec::Vec;
    use core::convert::Infallible;

    use super::*;

    /// Records every call; `poll_transmit` sends queued frames (a frame of 3 bytes needs 3 bytes),
    /// `poll_event` pops queued events; event `1` issues the command "queue frame 9 and event 2"
    #[derive(Default)]
    struct Toy {
        calls: Vec<String>,
        frames: Vec<u8>,
        events: Vec<u8>,
    }

    impl Toy {
        fn command(&mut self) {
            self.frames.push(9);
            self.events.push(2);
        }
    }

    impl Machine for Toy {
        type Peer = u8;
        type Event = u8;
        type App<'a> = &'a [u8];
        type Error = ();

        fn handle_input<'a>(
            &mut self,
            now: Instant,
            from: u8,
            data: &'a [u8],
        ) -> Result<Received<&'a [u8]>, ()> {
            self.calls.push(std::format!("input {now} {from} {data:?}"));
            if data.is_empty() {
                return Err(());
            }
            Ok(Received::with_app(data.len(), data))
        }
        fn handle_frame(&mut self, now: Instant, from: u8, kind: FrameKind, payload: &[u8]) {
            self.calls
                .push(std::format!("frame {now} {from} {kind:?} {payload:?}"));
        }
        fn handle_closed(&mut self, now: Instant, from: u8) {
            self.calls.push(std::format!("closed {now} {from}"));
        }
        fn handle_timeout(&mut self, now: Instant) {
            self.calls.push(std::format!("timeout {now}"));
        }
        fn poll_transmit(
            &mut self,
            _now: Instant,
            buf: &mut [u8],
        ) -> Result<Option<Transmit<u8>>, BufferTooSmall> {
            let Some(&f) = self.frames.first() else {
                return Ok(None);
            };
            if buf.len() < 3 {
                return Err(BufferTooSmall { required: 3 });
            }
            self.frames.remove(0);
            buf[..3].fill(f);
            Ok(Some(Transmit {
                to: f,
                len: 3,
                kind: FrameKind::Datagram,
            }))
        }
        fn poll_event(&mut self) -> Option<u8> {
            (!self.events.is_empty()).then(|| self.events.remove(0))
        }
        fn poll_timeout(&self) -> Option<Instant> {
            Some(Instant::from_millis(self.calls.len() as u64))
        }
    }

    #[test]
    fn a_box_delegates_every_method() {
        let mut m: Box<Toy> = Box::default();
        let t = Instant::from_millis(5);
        let r = Machine::handle_input(&mut m, t, 1, b"ab").unwrap();
        assert_eq!((r.bytes_consumed(), r.into_app()), (2, Some(&b"ab"[..])));
        assert_eq!(Machine::handle_input(&mut m, t, 1, b""), Err(()));
        Machine::handle_frame(&mut m, t, 2, FrameKind::WsPing, b"p");
        Machine::handle_closed(&mut m, t, 3);
        Machine::handle_timeout(&mut m, t);
        assert_eq!(
            m.calls,
            [
                "input 0.005000s 1 [97, 98]",
                "input 0.005000s 1 []",
                "frame 0.005000s 2 WsPing [112]",
                "closed 0.005000s 3",
                "timeout 0.005000s",
            ]
        );
        assert_eq!(Machine::poll_timeout(&m), Some(Instant::from_millis(5)));
        m.frames.push(4);
        m.events.push(7);
        let mut buf = [0u8; 3];
        assert_eq!(
            Machine::poll_transmit(&mut m, t, &mut buf[..2]),
            Err(BufferTooSmall { required: 3 })
        );
        let tx = Machine::poll_transmit(&mut m, t, &mut buf)
            .unwrap()
            .unwrap();
        assert_eq!((tx.to, tx.len, buf), (4, 3, [4, 4, 4]));
        assert_eq!(Machine::poll_transmit(&mut m, t, &mut buf), Ok(None));
        assert_eq!(Machine::poll_event(&mut m), Some(7));
        assert_eq!(Machine::poll_event(&mut m), None);
    }

    #[test]
    fn drain_sends_what_a_command_in_an_event_handler_queues_before_the_next_event() {
        let mut m = Toy {
            frames: alloc::vec![5],
            events: alloc::vec![1, 3],
            ..Toy::default()
        };
        let log = core::cell::RefCell::new(Vec::new());
        let mut buf = [0u8; 8];
        drain(
            &mut m,
            Instant::ZERO,
            &mut buf,
            |t, bytes| {
                log.borrow_mut()
                    .push(std::format!("send {} {bytes:?}", t.to));
                Ok::<(), Infallible>(())
            },
            |m, e| {
                log.borrow_mut().push(std::format!("event {e}"));
                if e == 1 {
                    m.command();
                }
            },
        )
        .unwrap();
        assert_eq!(
            log.into_inner(),
            [
                "send 5 [5, 5, 5]",
                "event 1",
                "send 9 [9, 9, 9]",
                "event 3",
                "event 2"
            ]
        );
        assert!(m.frames.is_empty() && m.events.is_empty());
    }

    #[test]
    fn poll_output_hands_out_frames_before_events_and_then_the_command_frames() {
        let mut m = Toy {
            frames: alloc::vec![5],
            events: alloc::vec![1, 3],
            ..Toy::default()
        };
        let mut buf = [0u8; 8];
        let mut got = Vec::new();
        while let Some(out) = poll_output(&mut m, Instant::ZERO, &mut buf).unwrap() {
            if out == Output::Event(1) {
                m.command();
            }
            got.push(out);
        }
        let tx = |to| {
            Output::Transmit(Transmit {
                to,
                len: 3,
                kind: FrameKind::Datagram,
            })
        };
        assert_eq!(
            got,
            [
                tx(5),
                Output::Event(1),
                tx(9),
                Output::Event(3),
                Output::Event(2)
            ]
        );
        m.frames.push(4);
        assert_eq!(
            poll_output(&mut m, Instant::ZERO, &mut buf[..2]),
            Err(BufferTooSmall { required: 3 })
        );
        assert_eq!(m.frames, [4], "the frame stays queued");
    }

    #[test]
    fn drain_reports_a_small_buffer_and_a_failed_send() {
        let mut m = Toy {
            frames: alloc::vec![5, 6],
            ..Toy::default()
        };
        let mut small = [0u8; 2];
        let e = drain(
            &mut m,
            Instant::ZERO,
            &mut small,
            |_, _| Ok::<(), Infallible>(()),
            |_, _| {},
        )
        .unwrap_err();
        assert_eq!(
            e,
            DrainError::BufferTooSmall(BufferTooSmall { required: 3 })
        );
        assert_eq!(m.frames, [5, 6], "the frame stays queued");
        let mut buf = [0u8; 3];
        let e = drain(
            &mut m,
            Instant::ZERO,
            &mut buf,
            |_, _| Err("down"),
            |_, _| {},
        )
        .unwrap_err();
        assert_eq!(e, DrainError::Send("down"));
        assert_eq!(m.frames, [6], "the failed frame is gone, the next stays");
        assert_eq!(e.to_string(), "send failed: down");
        assert_eq!(
            DrainError::<&str>::BufferTooSmall(BufferTooSmall { required: 3 }).to_string(),
            "output buffer too small: 3 bytes required"
        );
    }
}
