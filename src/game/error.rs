//! The one error type of the game [`Client`](super::Client) and [`Server`](super::Server)

use core::fmt;

/// Why an input or a command of a game machine was refused; nothing was changed
///
/// Each method lists the variants it returns. Decode errors of the codec are
/// [`wire::DecodeError`](super::wire::DecodeError); the machines count undecodable datagrams in
/// their stats instead of returning them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// The event queue (or the server's queue of CLOSE frames) is full: nothing was consumed or
    /// changed. Drain `poll_transmit` and `poll_event` completely, then retry the same input or
    /// command; after a complete drain it is never refused with `QueueFull`.
    QueueFull,
    /// No peer with that key in the server's table
    UnknownPeer,
    /// The connection is not up: the client is not connected (yet or any more), or the server's
    /// peer is still a pending vanilla slot
    NotOpen,
    /// The client is closed, or the server is shutting down or stopped
    Closed,
    /// The output buffer is too small; nothing was written
    BufferTooSmall {
        /// Exact number of bytes the packet needs
        required: usize,
    },
    /// The packet would be longer than a datagram may be
    TooLong {
        /// Length the packet would have
        len: usize,
        /// Largest length allowed ([`MAX_PACKET_LEN`](super::wire::MAX_PACKET_LEN))
        max: usize,
    },
    /// [`Client::connect`](super::Client::connect) was already called (a client connects once;
    /// make a new one to reconnect)
    AlreadyStarted,
    /// The connection's resend buffer has no room for another vital chunk: the peer has not
    /// acknowledged enough of the chunks sent. Draining does not help; wait for its acks (the
    /// next `handle_input`), or close (vanilla 0.6 closes with "too weak connection (out of
    /// buffer)"). Nothing was queued.
    TooManyInFlight,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::QueueFull => f.write_str("queue full: drain poll_transmit and poll_event first"),
            Error::UnknownPeer => f.write_str("no such peer"),
            Error::NotOpen => f.write_str("connection not open"),
            Error::Closed => f.write_str("closed"),
            Error::BufferTooSmall { required } => {
                write!(f, "output buffer too small: {required} bytes required")
            }
            Error::TooLong { len, max } => {
                write!(f, "packet too long: {len} bytes, at most {max}")
            }
            Error::AlreadyStarted => f.write_str("connect already called on this client"),
            Error::TooManyInFlight => {
                f.write_str("resend buffer full: too many vital chunks not acknowledged yet")
            }
        }
    }
}

impl core::error::Error for Error {}

impl From<crate::io::BufferTooSmall> for Error {
    fn from(e: crate::io::BufferTooSmall) -> Self {
        Error::BufferTooSmall {
            required: e.required,
        }
    }
}
