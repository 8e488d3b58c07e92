//! LongPort events ([`ClientEvent`], [`ServerEvent`]) and the small owned types both roles share
//! ([`CloseCause`], [`LoginKind`], [`RequestFailure`])
//!
//! Events are `Copy` and hold no text. Texts the peer sent (a Close push's reason, a refused
//! login's error message) come back borrowed, as [`PeerText`](crate::PeerText) inside the
//! application value of the input that carried them
//! ([`ClientApp::Close`](crate::longport::ClientApp::Close),
//! [`ClientApp::LoginError`](crate::longport::ClientApp::LoginError)).

use core::fmt;

use crate::longport::control::CloseCode;
use crate::longport::error::ProtocolError;
use crate::longport::wire::{RequestId, Status};
use crate::time::{Duration, Instant};

/// Which login request opens a connection
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LoginKind {
    /// cmd 2: a fresh one-time token
    Auth,
    /// cmd 3: the session id of an earlier connection
    Reconnect,
}

/// Why a connection ended (both roles)
///
/// The client reports it in [`ClientEvent::Disconnected`] (one transport ended) and
/// [`ClientEvent::Closed`] (the machine is finished), the server in [`ServerEvent::Closed`].
/// Which variants a role produces is said on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum CloseCause {
    /// This side's application closed: client `close`, server `close(peer, ..)`
    Local,
    /// Server: [`Server::shutdown`](crate::longport::Server::shutdown) (`Close{ServerShutdown}`)
    Shutdown,
    /// Client: the server pushed a Close packet (cmd 0) with this code
    ///
    /// What the client does next shows in the event that follows: codes 0..=3 and unknown codes
    /// reconnect with the session ([`ClientEvent::ReconnectScheduled`]); 4, 5 and 6
    /// (`ConnectDuplicate`: a newer connection took the session over) drop the session and the
    /// token ([`ClientEvent::TokenNeeded`], then `ReconnectScheduled`): a fresh Auth.
    Peer {
        /// The Close code
        code: CloseCode,
    },
    /// No sign of life within the heartbeat timeout (server: `Close{HeartbeatTimeout}`)
    Timeout,
    /// Client: the transport did not open within the connect timeout
    ConnectTimeout,
    /// Undecodable peer bytes (server: `Close{UnpackError}`)
    Protocol(ProtocolError),
    /// The peer sent a WebSocket Close frame with this status code; nothing was sent back
    WsClosed {
        /// The RFC 6455 status code
        code: u16,
    },
    /// The caller reported the transport gone (`handle_closed`), or the client's dial failed;
    /// nothing was sent
    TransportClosed,
    /// No login in time: client, no answer to the auth/reconnect request (or no token) within
    /// the auth timeout; server, not authenticated within its auth timeout
    /// (`Close{AuthError}`)
    LoginTimeout,
    /// The auth or reconnect request was refused with this non-zero status (client: the
    /// server's answer; server: the application's `reject_auth` (`Close{AuthError}`) or
    /// `reject_reconnect` (`Close{SessExpired}`))
    LoginRejected(Status),
    /// Server: the first packet was not an Auth or Reconnect request (`Close{AuthError}`)
    NotAuthenticated,
    /// Server: a Reconnect presented an unknown or expired session (`Close{SessExpired}`)
    SessionUnknown,
    /// Server: the session went live on a newer connection (`Close{ConnectDuplicate}`)
    Duplicate,
    /// Server: evicted while unauthenticated to admit a newer connection (too many
    /// unauthenticated connections, from its source or in all; `Close{ServerError}`)
    Evicted,
}

impl fmt::Display for CloseCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseCause::Local => f.write_str("closed locally"),
            CloseCause::Shutdown => f.write_str("server shutdown"),
            CloseCause::Peer { code } => write!(f, "closed by the server: {code}"),
            CloseCause::Timeout => f.write_str("heartbeat timeout"),
            CloseCause::ConnectTimeout => f.write_str("connect timeout"),
            CloseCause::Protocol(e) => write!(f, "protocol error: {e}"),
            CloseCause::WsClosed { code } => write!(f, "WebSocket closed with code {code}"),
            CloseCause::TransportClosed => f.write_str("transport closed"),
            CloseCause::LoginTimeout => f.write_str("login timeout"),
            CloseCause::LoginRejected(s) => write!(f, "login rejected: {s}"),
            CloseCause::NotAuthenticated => f.write_str("not authenticated"),
            CloseCause::SessionUnknown => f.write_str("unknown or expired session"),
            CloseCause::Duplicate => f.write_str("session connected twice"),
            CloseCause::Evicted => f.write_str("evicted: too many unauthenticated connections"),
        }
    }
}

/// Why a request in flight got no response
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RequestFailure {
    /// The connection it was sent on ended; it may or may not have been processed
    Disconnected,
    /// The machine was closed
    Closed,
}

impl fmt::Display for RequestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestFailure::Disconnected => f.write_str("connection lost"),
            RequestFailure::Closed => f.write_str("client closed"),
        }
    }
}

/// A control-plane event of the LongPort [`Client`](crate::longport::Client)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ClientEvent {
    /// Open a new transport (TCP socket or WebSocket) and call `handle_connected` when it is up
    ///
    /// If the dial fails, call `handle_closed`.
    ConnectTransport {
        /// Consecutive failed connection attempts before this one (0 on a first connect)
        attempt: u32,
    },
    /// The auth or reconnect request succeeded; business requests may be sent
    ///
    /// The session id granted is available from `Client::session_id` (empty if it did not fit
    /// the client's capacity: then it is not resumable).
    Connected {
        /// How the connection was opened: `Reconnect` means the old session was resumed
        via: LoginKind,
        /// `expires` as received: absolute Unix milliseconds in practice (the official Go
        /// client treats it so and the official Rust client's auth path too)
        expires: i64,
        /// Connection quota of the account (0 when absent)
        limit: u32,
        /// Connections currently open for the account (0 when absent)
        online: u32,
        /// Whether the session can be used for a later reconnect (non-zero, not yet expired by
        /// the wall clock, and fitting the capacity)
        resumable: bool,
    },
    /// The auth or reconnect request was answered with a non-zero status
    ///
    /// The transport is dropped ([`ClientEvent::Disconnected`] follows), the token and session
    /// are discarded, and [`ClientEvent::TokenNeeded`] follows — except for status 6
    /// (PermissionDenied, the account's connection quota), which follows the
    /// [`QuotaPolicy`](crate::longport::QuotaPolicy): stop (nothing follows), or
    /// `ReconnectScheduled` after a long delay. The error message came with the input, borrowed,
    /// as [`ClientApp::LoginError`](crate::longport::ClientApp::LoginError).
    LoginFailed {
        /// Which request was refused
        kind: LoginKind,
        /// The response status
        status: Status,
        /// `Error.code` of the body (`None` if the body did not decode)
        code: Option<u64>,
    },
    /// A fresh one-time token is needed: call `provide_token`
    TokenNeeded,
    /// Round-trip time of a heartbeat, from its send instant to its echo
    HeartbeatRtt {
        /// Measured round-trip time
        rtt: Duration,
    },
    /// The current transport is finished: close it if it is still open
    ///
    /// What follows depends on the cause: [`ClientEvent::ReconnectScheduled`],
    /// [`ClientEvent::TokenNeeded`], nothing (a status-6 refusal under
    /// [`QuotaPolicy::Stop`](crate::longport::QuotaPolicy::Stop): the client is stopped) or
    /// [`ClientEvent::Closed`].
    Disconnected {
        /// Why
        cause: CloseCause,
    },
    /// A new connection attempt will start at `at` ([`ClientEvent::ConnectTransport`])
    ReconnectScheduled {
        /// When the attempt starts, in the caller's clock
        at: Instant,
        /// Number of this attempt (1 for the first retry after a loss)
        attempt: u32,
    },
    /// No response to this request within its timeout; a late response is dropped
    RequestTimedOut {
        /// The request
        id: RequestId,
    },
    /// This request cannot be answered any more
    RequestFailed {
        /// The request
        id: RequestId,
        /// Why
        reason: RequestFailure,
    },
    /// The machine is finished; always the last event, emitted exactly once
    Closed {
        /// Why
        cause: CloseCause,
    },
}

/// A control-plane event of the LongPort [`Server`](crate::longport::Server); `P` is the
/// caller's peer key
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ServerEvent<P> {
    /// `accept_auth` or `accept_reconnect` took effect; the response is queued
    Connected {
        /// The connection
        peer: P,
        /// Which login it accepted
        via: LoginKind,
        /// Session expiry granted (Unix ms)
        expires: i64,
    },
    /// A server heartbeat was answered: round-trip time from the moment `poll_transmit` handed
    /// it out (a cmd-1 request on TCP, see
    /// [`ServerConfig::with_tcp_heartbeat_interval`](crate::longport::ServerConfig::with_tcp_heartbeat_interval);
    /// a WebSocket ping whose pong echoes its payload)
    HeartbeatRtt {
        /// The connection
        peer: P,
        /// Measured round-trip time
        rtt: Duration,
    },
    /// Close the transport now: the connection is over and every frame for it has been handed
    /// out by `poll_transmit`
    ///
    /// On TCP, close the socket. On WebSocket the last transmit was the close frame; finish the
    /// close handshake (or drop the socket). The machine has forgotten `peer`; the key may be
    /// reused.
    Closed {
        /// The connection
        peer: P,
        /// Why
        cause: CloseCause,
    },
    /// After `shutdown`: every connection has been closed and all its frames handed out
    ///
    /// Emitted once, after the last [`ServerEvent::Closed`].
    ShutdownComplete,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_mention_the_cause() {
        extern crate alloc;
        use alloc::string::ToString;
        let r = CloseCause::Peer {
            code: CloseCode::ConnectDuplicate,
        };
        assert!(r.to_string().contains("duplicate"));
        assert!(RequestId(7).to_string().contains('7'));
        assert!(CloseCause::LoginRejected(Status::Unauthenticated)
            .to_string()
            .contains('5'));
    }
}
