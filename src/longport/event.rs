//! LongPort events and the small owned types both roles share
//!
//! [`ClientEvent`] is what [`crate::longport::client::Client`] reports through `poll_event`.
//! [`RequestId`], [`DisconnectReason`], [`ProtocolError`] and [`LoginKind`] are meant for the
//! server machine too. Events are owned and small; texts from the peer (close reasons, error
//! messages) are copied into fixed-capacity strings of [`MAX_TEXT_LEN`] bytes, truncated on a
//! character boundary.

use core::fmt;

use heapless::String;

use crate::longport::control::{CloseCode, PbError};
use crate::longport::deframe::DeframeError;
use crate::longport::wire::Status;
use crate::time::Instant;

/// Capacity of peer texts kept in events (close reasons, error messages), in bytes
pub const MAX_TEXT_LEN: usize = 128;

/// Default capacity of a session id, in bytes
pub const DEFAULT_SESSION_LEN: usize = 128;

/// A peer text (close reason, error message) truncated to [`MAX_TEXT_LEN`] bytes
pub type Text = String<MAX_TEXT_LEN>;

/// Copy `s` into a fixed-capacity string, truncated on a character boundary
#[must_use]
pub fn truncated<const N: usize>(s: &str) -> String<N> {
    let mut out = String::new();
    for c in s.chars() {
        if out.push(c).is_err() {
            break;
        }
    }
    out
}

/// Id of a request, unique among the requests in flight on one connection
///
/// Ids are allocated by the side that sends the request; a response copies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RequestId(pub u32);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Which login request opens a connection
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LoginKind {
    /// cmd 2: a fresh one-time token
    Auth,
    /// cmd 3: the session id of an earlier connection
    Reconnect,
}

/// Peer bytes a machine could not make sense of, fatal to the connection they arrived on
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ProtocolError {
    /// The TCP stream cannot be deframed (unknown packet type, oversized body)
    Framing(DeframeError),
    /// A control body (auth/reconnect response, close push) is not valid protobuf
    ControlBody {
        /// Command of the packet
        cmd: u8,
        /// What was wrong
        error: PbError,
    },
    /// A control packet carries a gzip body that cannot be inflated (no `gzip` feature, bad or
    /// oversized gzip member)
    CompressedControl {
        /// Command of the packet
        cmd: u8,
    },
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Framing(e) => write!(f, "framing error: {e}"),
            ProtocolError::ControlBody { cmd, error } => {
                write!(f, "bad body of control command {cmd}: {error}")
            }
            ProtocolError::CompressedControl { cmd } => {
                write!(f, "compressed control command {cmd} cannot be inflated")
            }
        }
    }
}

impl core::error::Error for ProtocolError {}

/// Why a connection (one transport) ended
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DisconnectReason {
    /// The caller reported the transport gone (`handle_closed`), or the dial failed
    TransportClosed,
    /// The transport did not open within the connect timeout
    ConnectTimeout,
    /// No answer to the auth/reconnect request (or no token) within the auth timeout
    LoginTimeout,
    /// No sign of life within the heartbeat timeout
    HeartbeatTimeout,
    /// The peer pushed a Close packet with this code
    ServerClose(CloseCode),
    /// The peer sent a WebSocket Close frame with this status code
    WsClose(u16),
    /// The auth or reconnect request was answered with this non-zero status
    LoginRejected(Status),
    /// Undecodable peer bytes
    Protocol(ProtocolError),
    /// The local application closed the machine
    Local,
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::TransportClosed => f.write_str("transport closed"),
            DisconnectReason::ConnectTimeout => f.write_str("connect timeout"),
            DisconnectReason::LoginTimeout => f.write_str("login timeout"),
            DisconnectReason::HeartbeatTimeout => f.write_str("heartbeat timeout"),
            DisconnectReason::ServerClose(c) => write!(f, "closed by server: {c}"),
            DisconnectReason::WsClose(c) => write!(f, "WebSocket closed with code {c}"),
            DisconnectReason::LoginRejected(s) => write!(f, "login rejected: {s}"),
            DisconnectReason::Protocol(e) => write!(f, "protocol error: {e}"),
            DisconnectReason::Local => f.write_str("closed locally"),
        }
    }
}

/// Why a request in flight got no response
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
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

/// What the client does after a Close push (spec 6.3, per-code policy)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CloseAction {
    /// Codes 0-3 and unknown codes: reconnect after back-off, with the session while it is valid
    Reconnect,
    /// Codes 4-5: session (and token) dropped; a fresh token is needed ([`ClientEvent::TokenNeeded`])
    ReAuth,
    /// Code 6: no automatic reconnect; the caller decides (`reconnect_now` or `connect`)
    Stop,
}

/// A control-plane event of the LongPort client
///
/// `S` is the session-id capacity of the client (see [`DEFAULT_SESSION_LEN`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ClientEvent<const S: usize = DEFAULT_SESSION_LEN> {
    /// Open a new transport (TCP socket or WebSocket) and call `handle_connected` when it is up
    ///
    /// If the dial fails, call `handle_closed`.
    ConnectTransport {
        /// Consecutive failed connection attempts before this one (0 on a first connect)
        attempt: u32,
    },
    /// The auth or reconnect request succeeded; business requests may be sent
    Authenticated {
        /// Session id granted by the server (empty if it did not fit the client's capacity)
        session_id: String<S>,
        /// `expires` as received: absolute Unix milliseconds in practice (spec 6.7)
        expires: i64,
        /// Connection quota of the account (0 when absent)
        limit: u32,
        /// Connections currently open for the account (0 when absent)
        online: u32,
        /// How the connection was opened: `Reconnect` means the old session was resumed
        via: LoginKind,
        /// Whether the session can be used for a later reconnect (non-zero, not yet expired by
        /// the wall clock, and fitting the capacity)
        resumable: bool,
    },
    /// The auth or reconnect request was answered with a non-zero status
    ///
    /// The transport is dropped ([`ClientEvent::Disconnected`] follows), the token and session
    /// are discarded, and [`ClientEvent::TokenNeeded`] follows.
    LoginFailed {
        /// Which request was refused
        kind: LoginKind,
        /// The response status
        status: Status,
        /// `Error.code` of the body (`None` if the body did not decode)
        code: Option<u64>,
        /// `Error.msg` of the body, truncated
        message: Text,
    },
    /// A fresh one-time token is needed: call `provide_token`
    TokenNeeded,
    /// Round-trip time of a heartbeat, from its send instant to its echo
    HeartbeatRtt {
        /// Measured round-trip time
        rtt: core::time::Duration,
    },
    /// The server pushed a Close packet (cmd 0)
    ServerClosed {
        /// Close code
        code: CloseCode,
        /// Reason text, truncated
        reason: Text,
        /// What the client does about it
        action: CloseAction,
    },
    /// The current transport is finished: close it if it is still open
    ///
    /// What follows depends on the cause: [`ClientEvent::ReconnectScheduled`],
    /// [`ClientEvent::TokenNeeded`], nothing (Close code 6: the client is stopped) or
    /// [`ClientEvent::Closed`].
    Disconnected {
        /// Why
        reason: DisconnectReason,
    },
    /// A new connection attempt will start at `at` ([`ClientEvent::ConnectTransport`])
    ReconnectScheduled {
        /// When the attempt starts
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
        reason: DisconnectReason,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_char_boundaries() {
        let s: String<5> = truncated("abcdé");
        assert_eq!(s.as_str(), "abcd", "é needs two bytes and does not fit");
        let s: String<5> = truncated("abc");
        assert_eq!(s.as_str(), "abc");
    }

    #[test]
    fn displays_mention_the_cause() {
        extern crate alloc;
        use alloc::string::ToString;
        let r = DisconnectReason::ServerClose(CloseCode::ConnectDuplicate);
        assert!(r.to_string().contains("duplicate"));
        assert!(RequestId(7).to_string().contains('7'));
        assert!(DisconnectReason::LoginRejected(Status::Unauthenticated)
            .to_string()
            .contains('5'));
    }
}
