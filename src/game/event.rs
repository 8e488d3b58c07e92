//! Events, close causes and application values of the game [`Client`](super::Client) and
//! [`Server`](super::Server)
//!
//! Events are small `Copy` values without text. What a peer sends — chunk packets and the reason
//! of its CLOSE — comes back borrowed from the `handle_input` call that carried it, as a
//! [`ClientApp`] / [`ServerApp`] in [`Received::app`](crate::Received::app); nothing of it is
//! copied into the machine.

use super::connless::{InfoRequest, ServerInfo};
use super::vital::TooWeak;
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
    /// With the chunk layer ([`Reliable`](super::Reliable)): "too weak connection", the oldest
    /// vital chunk was not acknowledged within the unacked timeout; no CLOSE was sent (DDNet
    /// treats it like a timeout). Its `Display` is DDNet's text.
    TooWeak(TooWeak),
}

/// Control-plane events of the game [`Client`](super::Client)
///
/// A client's whole life has at most two events: `Connected`, then `Closed` (always the last).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ClientEvent {
    /// A CONNECT_ACCEPT arrived and ACCEPT was queued: the client is online at the network
    /// layer and may send
    ///
    /// What it promises: the handshake is complete *from the client's side*. It does not prove
    /// that the server created the connection: a lost ACCEPT, or a CONNECT_ACCEPT forged by a
    /// sender that does not see our traffic, look the same at this point. Until a packet carrying
    /// the token arrives after the ACCEPT ([`Client::is_confirmed`](super::Client::is_confirmed)),
    /// the client also answers a CONNECT_ACCEPT with another token and takes whichever token the
    /// server's later packets carry, so [`Client::token`](super::Client::token) may still change
    /// from the `token` here; it does not change after confirmation.
    Connected {
        /// The DDNet security token of that CONNECT_ACCEPT, `None` when the server is vanilla
        /// (bare CONNECT_ACCEPT) or the client runs in vanilla mode
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
    /// An online token peer re-handshook (a DDNet client reconnecting from the same port: CONNECT
    /// again, then ACCEPT): as DDNet does, its connection was reset — sequence and ack back to
    /// 0, the chunk layer's buffers emptied — and the game-level join starts over. An ACCEPT
    /// without a CONNECT before it (a duplicated or late copy of the first one) changes nothing;
    /// nor is the event raised while the connection has exchanged no vital chunk (the reset
    /// would change nothing)
    Rejoined {
        /// The peer's key
        peer: P,
    },
}

/// What the game [`Client`](super::Client) hands to the application from one datagram
///
/// Borrowed from the datagram given to `handle_input`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ClientApp<'a> {
    /// [`ControlOnly`](super::ControlOnly): a chunk packet of the online connection (the machine
    /// does not look inside; a compressed one had its token checked after decompressing it in
    /// passing, and its payload is still compressed)
    Chunks(ChunkPacket<'a>),
    /// [`Reliable`](super::Reliable): a chunk packet was accepted; read its chunks with
    /// [`Client::poll_chunk`](super::Client::poll_chunk) until it returns `None`, before the next
    /// input
    ChunksReady,
    /// A server-info answer (inf3, iext or dtsf) to the query of
    /// [`Client::request_info`](super::Client::request_info), or the unsolicited one (token −1)
    /// a DDNet server sends its players when its name or map changes
    ServerInfo(ServerInfo<'a>),
    /// The server closed the connection with this reason (empty when it sent none); the
    /// [`ClientEvent::Closed`] event with [`CloseCause::Peer`] follows from `poll_event`
    Close {
        /// The reason as the server sent it (at most 127 bytes, without the NUL). Empty for a
        /// Huffman-compressed CLOSE (vanilla 0.6.4 servers send them): its text is not in the
        /// datagram as such; read its first
        /// [`KEPT_REASON_LEN`](super::KEPT_REASON_LEN) bytes from
        /// [`Client::peer_close_reason`](super::Client::peer_close_reason)
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
    /// [`ControlOnly`](super::ControlOnly): a chunk packet of an online peer (the machine does not
    /// look inside; a compressed one had its token checked after decompressing it in passing, and
    /// its payload is still compressed)
    Chunks(ChunkPacket<'a>),
    /// [`Reliable`](super::Reliable): a chunk packet of this peer was accepted; read its chunks
    /// with [`Server::poll_chunk`](super::Server::poll_chunk) until it returns `None`, before the
    /// next input
    ChunksReady,
    /// A server-info request within the rate limit: answer it now with
    /// [`Server::answer_info`](super::Server::answer_info) (or ignore it: then nothing is sent)
    InfoRequest(InfoRequest),
    /// An online peer closed its connection with this reason (empty when it sent none); the
    /// [`ServerEvent::Closed`] event with [`CloseCause::Peer`] follows from `poll_event`
    Close {
        /// The reason as the peer sent it (at most 127 bytes, without the NUL; empty for a
        /// Huffman-compressed CLOSE, which only vanilla 0.6.4 peers send)
        reason: PeerText<'a>,
    },
}

impl<'a> ClientApp<'a> {
    /// The chunk packet, if this is one
    #[must_use]
    pub const fn chunks(&self) -> Option<ChunkPacket<'a>> {
        match self {
            ClientApp::Chunks(c) => Some(*c),
            _ => None,
        }
    }

    /// The server's CLOSE reason, if this is one
    #[must_use]
    pub const fn close_reason(&self) -> Option<PeerText<'a>> {
        match self {
            ClientApp::Close { reason } => Some(*reason),
            _ => None,
        }
    }
}

impl<'a> ServerApp<'a> {
    /// The chunk packet, if this is one
    #[must_use]
    pub const fn chunks(&self) -> Option<ChunkPacket<'a>> {
        match self {
            ServerApp::Chunks(c) => Some(*c),
            _ => None,
        }
    }

    /// The peer's CLOSE reason, if this is one
    #[must_use]
    pub const fn close_reason(&self) -> Option<PeerText<'a>> {
        match self {
            ServerApp::Close { reason } => Some(*reason),
            _ => None,
        }
    }
}
