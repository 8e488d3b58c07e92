//! [`Error`], what a LongPort command or input refuses with, and [`ProtocolError`], peer bytes
//! that end a connection

use core::fmt;

use crate::io::BufferTooSmall;
use crate::longport::control::PbError;
use crate::longport::deframe::DeframeError;

/// Why a command or an input of a LongPort machine was refused; nothing was consumed or changed
///
/// Both roles use this one type; each method's docs list the variants it can return. The first
/// six are the names every machine of this crate uses for the same meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// A queue is full: drain `poll_transmit` and `poll_event` completely, then retry the same
    /// input or command (after a complete drain it is accepted)
    QueueFull,
    /// No such peer: the server does not know this key (never registered, or already reported
    /// `Closed`)
    UnknownPeer,
    /// The connection is not up (not yet, or not any more): not authenticated
    NotOpen,
    /// The machine or that peer is closed, closing, stopped or shutting down
    Closed,
    /// The output buffer cannot hold the packet; nothing was written
    BufferTooSmall {
        /// Exact number of bytes the packet needs
        required: usize,
    },
    /// A value is longer than the protocol or a capacity can represent (body, token, session
    /// id, metadata, random bytes of a session id)
    TooLong {
        /// Its length in bytes (for metadata: as stored, or the number of pairs when there are
        /// too many)
        len: usize,
        /// The largest length accepted
        max: usize,
    },
    /// A value is too short: a session id needs at least 16 random bytes (128 bits)
    TooShort {
        /// Its length in bytes
        len: usize,
        /// The shortest length accepted
        min: usize,
    },
    /// Server: an auth or reconnect decision is pending on this connection; feed the input
    /// again after `accept_*`/`reject_*` (or after the auth deadline closed the connection)
    AuthPending,
    /// The step this command answers is not pending: server `accept_*`/`reject_*` without that
    /// login waiting for a decision; client `handle_connected` without an outstanding
    /// `ConnectTransport` (close that transport)
    NotPending,
    /// Client `connect`/`reconnect_now`: a transport is being opened or is open; server
    /// `handle_connected`: this peer key is still registered
    AlreadyConnected,
    /// Commands 0..=3 belong to the control plane and cannot be sent as business requests
    ControlCommand(u8),
    /// Client: `REQUESTS` requests are in flight (or their outcome events are not polled yet).
    /// Server `handle_input`: this connection has
    /// [`ServerConfig::max_pending_requests`](crate::longport::ServerConfig::max_pending_requests)
    /// requests the application has not answered; nothing was consumed: stop reading from this
    /// peer, answer (`respond`), then feed the same bytes again
    TooManyInFlight,
    /// Client `reconnect_now`: neither a resumable session nor a token is available
    NoCredentials,
    /// Server `reject_*`: a rejection must carry a non-success status (a status-0 answer would
    /// read as a login)
    SuccessStatus,
    /// Server: Request packets are never sent to WebSocket clients (the official Rust client
    /// treats one as fatal)
    RequestOnWebSocket,
    /// Server `handle_connected`: all `PEERS` slots are in use
    TableFull,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::QueueFull => f.write_str("queues full: drain transmits and events, then retry"),
            Error::UnknownPeer => f.write_str("unknown peer"),
            Error::NotOpen => f.write_str("connection not open (not authenticated)"),
            Error::Closed => f.write_str("closed"),
            Error::BufferTooSmall { required } => {
                write!(f, "output buffer too small: {required} bytes required")
            }
            Error::TooLong { len, max } => write!(f, "{len} bytes long, at most {max} accepted"),
            Error::TooShort { len, min } => write!(f, "{len} bytes long, at least {min} needed"),
            Error::AuthPending => f.write_str("auth decision pending"),
            Error::NotPending => f.write_str("nothing of the kind is pending"),
            Error::AlreadyConnected => f.write_str("already connecting or connected"),
            Error::ControlCommand(c) => write!(f, "command {c} is a control command"),
            Error::TooManyInFlight => f.write_str("too many requests in flight"),
            Error::NoCredentials => f.write_str("no session and no token"),
            Error::SuccessStatus => f.write_str("a rejection cannot use status 0 (success)"),
            Error::RequestOnWebSocket => f.write_str("request packets are not sent over WebSocket"),
            Error::TableFull => f.write_str("connection table full"),
        }
    }
}

impl core::error::Error for Error {}

impl From<BufferTooSmall> for Error {
    fn from(e: BufferTooSmall) -> Self {
        Error::BufferTooSmall {
            required: e.required,
        }
    }
}

/// Peer bytes a machine could not make sense of, fatal to the connection they arrived on
///
/// The client reports it as [`CloseCause::Protocol`](crate::longport::CloseCause::Protocol) and
/// reconnects; the server answers with `Close{UnpackError}` and closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ProtocolError {
    /// The stream or message cannot be deframed: bad TCP handshake, unknown packet type, body
    /// above the configured limit, WebSocket message shorter than its packet
    Framing(DeframeError),
    /// A control body (auth/reconnect request or response, Close push) is not valid protobuf
    ControlBody {
        /// Command of the packet
        cmd: u8,
        /// What was wrong
        error: PbError,
    },
    /// A control packet carries a gzip body the machine does not inflate (the server never
    /// does; the client without the `gzip` feature, or for a bad or oversized gzip member)
    CompressedControl {
        /// Command of the packet
        cmd: u8,
    },
}

impl From<DeframeError> for ProtocolError {
    fn from(e: DeframeError) -> Self {
        ProtocolError::Framing(e)
    }
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
