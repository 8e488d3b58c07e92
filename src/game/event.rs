//! Events, close causes and application values of the game [`Client`](super::Client) and
//! [`Server`](super::Server)
//!
//! Events are small `Copy` values without text. What a peer sends — chunk packets and the reason
//! of its CLOSE — comes back borrowed from the `handle_input` call that carried it, as a
//! [`ClientApp`] / [`ServerApp`] in [`Received::app`](crate::Received::app); nothing of it is
//! copied into the machine.

use super::wire::{ChunkPacket, Token};
use crate::io::PeerText;

/// Why a connection ended (client) or a peer is gone (server)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum CloseCause {
    /// This side's application closed it: [`Client::close`](super::Client::close) or
    /// [`Server::close`](super::Server::close); a CLOSE with the given reason was sent (a client
    /// that never called `connect` sends nothing)
    Local,
    /// [`Server::shutdown`](super::Server::shutdown): the peer got a CLOSE with the shutdown
    /// reason
    Shutdown,
    /// The peer sent CLOSE; nothing was sent back. Its reason came with the datagram, as
    /// [`ClientApp::Close`] / [`ServerApp::Close`]
    Peer,
    /// Nothing valid arrived from the peer for the configured timeout
    /// ([`ClientConfig::timeout`](super::ClientConfig::timeout),
    /// [`ServerConfig::timeout`](super::ServerConfig::timeout)); no CLOSE was sent
    Timeout,
    /// The client got no CONNECT_ACCEPT within
    /// [`ClientConfig::connect_timeout`](super::ClientConfig::connect_timeout); no CLOSE was sent
    ConnectTimeout,
}

/// Control-plane events of the game [`Client`](super::Client)
///
/// A client's whole life has at most two events: `Connected`, then `Closed` (always the last).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ClientEvent {
    /// The server accepted the connection; ACCEPT was queued and the client is online
    Connected {
        /// The DDNet security token the server minted, `None` when the server is vanilla (bare
        /// CONNECT_ACCEPT) or the client runs in vanilla mode
        token: Option<Token>,
    },
    /// The connection ended; emitted exactly once, as the last event; after it the client sends
    /// nothing
    Closed {
        /// Why
        cause: CloseCause,
    },
}

/// Control-plane events of the game [`Server`](super::Server), generic over the caller's peer
/// key `P`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ServerEvent<P> {
    /// A peer was admitted: a DDNet client whose ACCEPT carried the right token, a vanilla client
    /// under [`VanillaPolicy::Admit`](super::VanillaPolicy::Admit), or a pending vanilla client
    /// that sent its first chunk packet under
    /// [`VanillaPolicy::Pending`](super::VanillaPolicy::Pending)
    Connected {
        /// The peer's key
        peer: P,
        /// Its security token, `None` for vanilla peers
        token: Option<Token>,
    },
    /// An admitted peer is gone; the server has forgotten it (never emitted for a peer without a
    /// `Connected` before it)
    Closed {
        /// The peer's key
        peer: P,
        /// Why
        cause: CloseCause,
    },
    /// [`Server::shutdown`](super::Server::shutdown) finished: every peer got its CLOSE from
    /// `poll_transmit` and its `Closed` event; the server is stopped
    ShutdownComplete,
}

/// What the game [`Client`](super::Client) hands to the application from one datagram
///
/// Borrowed from the datagram given to `handle_input`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ClientApp<'a> {
    /// A chunk packet of the online connection (the machines do not look inside)
    Chunks(ChunkPacket<'a>),
    /// The server closed the connection with this reason (empty when it sent none); the
    /// [`ClientEvent::Closed`] event with [`CloseCause::Peer`] follows from `poll_event`
    Close {
        /// The reason as the server sent it (at most 127 bytes, without the NUL)
        reason: PeerText<'a>,
    },
}

/// What the game [`Server`](super::Server) hands to the application from one datagram
///
/// Borrowed from the datagram given to `handle_input`; the peer is the `from` of that call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ServerApp<'a> {
    /// A chunk packet of an online peer (the machines do not look inside)
    Chunks(ChunkPacket<'a>),
    /// An online peer closed its connection with this reason (empty when it sent none); the
    /// [`ServerEvent::Closed`] event with [`CloseCause::Peer`] follows from `poll_event`
    Close {
        /// The reason as the peer sent it (at most 127 bytes, without the NUL)
        reason: PeerText<'a>,
    },
}

impl<'a> ClientApp<'a> {
    /// The chunk packet, if this is one
    #[must_use]
    pub const fn chunks(&self) -> Option<ChunkPacket<'a>> {
        match self {
            ClientApp::Chunks(c) => Some(*c),
            ClientApp::Close { .. } => None,
        }
    }

    /// The server's CLOSE reason, if this is one
    #[must_use]
    pub const fn close_reason(&self) -> Option<PeerText<'a>> {
        match self {
            ClientApp::Close { reason } => Some(*reason),
            ClientApp::Chunks(_) => None,
        }
    }
}

impl<'a> ServerApp<'a> {
    /// The chunk packet, if this is one
    #[must_use]
    pub const fn chunks(&self) -> Option<ChunkPacket<'a>> {
        match self {
            ServerApp::Chunks(c) => Some(*c),
            ServerApp::Close { .. } => None,
        }
    }

    /// The peer's CLOSE reason, if this is one
    #[must_use]
    pub const fn close_reason(&self) -> Option<PeerText<'a>> {
        match self {
            ServerApp::Close { reason } => Some(*reason),
            ServerApp::Chunks(_) => None,
        }
    }
}
