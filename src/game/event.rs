//! Events, close causes, errors and counters of the game [`Client`](super::client::Client) and
//! [`Server`](super::server::Server)
//!
//! Events are small owned values: a CLOSE reason received from the peer is copied (lossily, as
//! display text) into a [`ReasonText`]. Application data never becomes an event; it comes back
//! borrowed in [`Received::app`](crate::io::Received::app).

use core::fmt;

use super::wire::{Token, MAX_REASON_LEN};

/// A CLOSE reason as display text: at most [`MAX_REASON_LEN`] bytes of UTF-8
///
/// Received reasons are converted lossily (control characters become spaces, invalid UTF-8 becomes
/// U+FFFD, the text is cut on a character boundary), so the text is safe to print or log.
pub type ReasonText = heapless::String<MAX_REASON_LEN>;

/// Why a [`Client`](super::client::Client) connection ended
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ClientCloseCause {
    /// The application called [`Client::close`](super::client::Client::close) (a CLOSE was sent
    /// when the connect had started)
    Local,
    /// The server sent CLOSE with this reason (empty when it sent none); nothing was sent back
    Peer {
        /// The server's reason, lossily converted
        reason: ReasonText,
    },
    /// Nothing valid arrived from the server for [`ClientConfig::timeout`](super::client::ClientConfig::timeout);
    /// no CLOSE was sent
    Timeout,
    /// No CONNECT_ACCEPT within [`ClientConfig::connect_timeout`](super::client::ClientConfig::connect_timeout);
    /// no CLOSE was sent
    ConnectTimeout,
}

/// Control-plane events of the game [`Client`](super::client::Client)
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ClientEvent {
    /// The server accepted the connection; ACCEPT was queued and the client is online
    Connected {
        /// The DDNet security token the server minted, `None` when the server is vanilla
        /// (bare CONNECT_ACCEPT) or the client runs in vanilla mode
        token: Option<Token>,
    },
    /// The connection ended; emitted at most once, after it the client sends nothing
    Closed {
        /// Why
        cause: ClientCloseCause,
    },
}

/// Why a [`Server`](super::server::Server) peer is gone
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PeerCloseCause {
    /// The application called [`Server::kick`](super::server::Server::kick); a CLOSE was sent
    Kicked,
    /// The application called [`Server::shutdown`](super::server::Server::shutdown); a CLOSE was sent
    Shutdown,
    /// The peer sent CLOSE; nothing was sent back
    PeerClosed {
        /// The peer's reason, lossily converted (empty when it sent none)
        reason: ReasonText,
    },
    /// Nothing valid arrived from the peer for [`ServerConfig::timeout`](super::server::ServerConfig::timeout);
    /// no CLOSE was sent
    Timeout,
}

/// Control-plane events of the game [`Server`](super::server::Server), generic over the caller's
/// peer key `A`
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ServerEvent<A> {
    /// A peer was admitted: a DDNet client whose ACCEPT carried the right token, a vanilla client
    /// under [`VanillaPolicy::Admit`](super::server::VanillaPolicy::Admit), or a pending vanilla
    /// client that sent its first chunk packet under
    /// [`VanillaPolicy::Pending`](super::server::VanillaPolicy::Pending)
    PeerConnected {
        /// The peer's key
        peer: A,
        /// Its security token, `None` for vanilla peers
        token: Option<Token>,
    },
    /// An admitted peer is gone (never emitted for a peer without a `PeerConnected` before it)
    PeerClosed {
        /// The peer's key
        peer: A,
        /// Why
        cause: PeerCloseCause,
    },
    /// [`Server::shutdown`](super::server::Server::shutdown) finished: every peer got its CLOSE and
    /// its `PeerClosed` event; the server is stopped
    ShutdownComplete,
}

/// Why [`Machine::handle_input`](crate::Machine::handle_input) refused a datagram
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum InputError {
    /// The event queue is full: drain `poll_event` and feed the same datagram again (it was not
    /// consumed)
    EventQueueFull,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::EventQueueFull => f.write_str("event queue full: drain poll_event first"),
        }
    }
}

impl core::error::Error for InputError {}

/// Why [`Client::connect`](super::client::Client::connect) was refused
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ConnectError {
    /// `connect` was already called on this client (a client connects once; make a new one)
    AlreadyStarted,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::AlreadyStarted => f.write_str("connect already called on this client"),
        }
    }
}

impl core::error::Error for ConnectError {}

/// Why [`Client::close`](super::client::Client::close) was refused
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum CloseError {
    /// The connection is already closed
    AlreadyClosed,
    /// The event queue is full: drain `poll_event` and call again (nothing changed)
    EventQueueFull,
}

impl fmt::Display for CloseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseError::AlreadyClosed => f.write_str("connection already closed"),
            CloseError::EventQueueFull => f.write_str("event queue full: drain poll_event first"),
        }
    }
}

impl core::error::Error for CloseError {}

/// Why `send_chunks` wrote nothing
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SendError {
    /// The connection is not online (client: not yet connected or closed; server: unknown or
    /// still pending peer)
    NotOnline,
    /// The packet would be longer than [`MAX_PACKET_LEN`](super::wire::MAX_PACKET_LEN)
    TooLong {
        /// Length the packet would have
        len: usize,
    },
    /// The output buffer is too small; nothing was written and no state changed
    BufferTooSmall {
        /// Exact number of bytes the packet needs
        required: usize,
    },
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::NotOnline => f.write_str("connection not online"),
            SendError::TooLong { len } => write!(f, "packet too long ({len} bytes)"),
            SendError::BufferTooSmall { required } => {
                write!(f, "output buffer too small: {required} bytes required")
            }
        }
    }
}

impl core::error::Error for SendError {}

/// Why a [`Server`](super::server::Server) command (`kick`, `set_ack`, ...) was refused
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum CommandError {
    /// No peer with that key
    UnknownPeer,
    /// The queue of outgoing CLOSE frames with a reason is full: drain `poll_transmit` first
    CloseQueueFull,
    /// The event queue is full: drain `poll_event` first (nothing changed)
    EventQueueFull,
    /// The server is shutting down or stopped
    ShuttingDown,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CommandError::UnknownPeer => "no such peer",
            CommandError::CloseQueueFull => "close queue full: drain poll_transmit first",
            CommandError::EventQueueFull => "event queue full: drain poll_event first",
            CommandError::ShuttingDown => "server is shutting down",
        })
    }
}

impl core::error::Error for CommandError {}
