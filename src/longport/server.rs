//! LongPort server machine: auth gate, session table, heartbeat echo, WS pings, Close pushes
//!
//! [`Server`] keeps the control plane of many client connections, over TCP and WebSocket, for
//! the caller's own gateway. The caller owns the sockets, the clock, the token check and the
//! session-id generator; the machine decides what goes on the wire and when.
//!
//! # Connection lifecycle
//!
//! ```text
//! handle_connected ─► AwaitHandshake (TCP only, 2 bytes) ─► AwaitAuth ─► AuthPending ─► Authenticated
//!                                                              │              │              │
//!                                                              └──────────────┴──────────────┴─► Closing ─► (Disconnect event, slot freed)
//! ```
//!
//! 1. [`Server::handle_connected`] registers a connection under the caller's id `C`. The table
//!    holds `PEERS` connections; at most [`ServerConfig::max_unauthenticated`] of them may be
//!    unauthenticated at once. Refusals are typed ([`ConnectError`]); the caller then closes the
//!    socket without sending anything.
//! 2. TCP connections first send the 2-byte handshake (spec 1.1). It is validated (version 1)
//!    and recorded ([`Server::handshake`]); a bad one is answered with `Close{UnpackError}` and a
//!    disconnect. The handshake and the first packet may arrive in the same read.
//! 3. The first packet must be an Auth (cmd 2) or Reconnect (cmd 3) request. Anything else —
//!    heartbeats included — is answered, if it is a request, with status 5 (Unauthenticated) and
//!    an `Error{401}` body, then `Close{AuthError}`, then a disconnect.
//! 4. Auth: [`Machine::handle_input`] returns [`App::Auth`] borrowing the token and metadata from
//!    the caller's buffer. The application checks the token and calls [`Server::accept_auth`]
//!    with a [`SessionGrant`] it chose (session id, expiry, quota numbers) or
//!    [`Server::reject_auth`] (status + `Error` response, `Close{AuthError}`, disconnect). No
//!    `AuthRequested` event is queued: the `App` value is the one signal, so the caller cannot
//!    miss the token.
//! 5. Reconnect: the session id is looked up in the machine's session table first. An unknown or
//!    expired id is rejected **automatically**, without involving the application: status 5,
//!    `Error{401, "session expired"}`, `Close{SessExpired}`, disconnect. A known id yields
//!    [`App::Reconnect`]; the application mints a fresh session id and calls
//!    [`Server::accept_reconnect`] (the old id is retired, spec 6.6) or
//!    [`Server::reject_reconnect`] (`Close{SessExpired}`).
//! 6. Until the application decides, further input from that connection is refused with
//!    [`InputError::AuthPending`] and left unconsumed (official clients wait for the auth
//!    response before sending anything else). The auth deadline ([`ServerConfig::auth_timeout`],
//!    10 s) covers the whole unauthenticated phase, including a decision that never comes:
//!    `Close{AuthError}` and a disconnect.
//! 7. Authenticated: business requests come back as [`App::Request`] (borrowed); the
//!    application answers with [`Server::respond`] and pushes with [`Server::push`], both
//!    writing straight into the caller's buffer.
//!
//! # Closing and the "close the transport now" signal
//!
//! Whenever the machine closes a connection it queues, in this order, any pending control
//! response (e.g. the status-5 answer), a `Close{code, reason}` push (cmd 0), and on WebSocket a
//! [`FrameKind::WsClose`] frame with a legal RFC 6455 code ([`ws_close_code`]: 1000 heartbeat
//! timeout, 1001 shutdown, 1002 unpack error, 1008 auth/session/duplicate, 1011 server error).
//! It reports [`ServerEvent::PeerClosed`] with the [`CloseReason`] and, **once every frame for
//! that connection has been handed out by `poll_transmit`**, [`ServerEvent::Disconnect`]: the
//! signal to close the socket (TCP) or to finish the WebSocket close (WS; the close frame was
//! the last transmit). After `Disconnect` the machine has forgotten the connection and the id
//! may be reused.
//!
//! When the caller reports the transport gone ([`Machine::handle_closed`], or a WebSocket Close
//! frame from the client via [`Machine::handle_frame`]), queued frames are dropped, the event
//! [`ServerEvent::PeerClosed`] follows (no `Disconnect`), and the slot is freed when that event
//! has been polled. The session survives ([`CloseReason::TransportClosed`] releases nothing but
//! the connection, spec 7.4).
//!
//! # Sessions
//!
//! Sessions live in a table of `SESSIONS` entries and outlive their connections until they
//! expire. `expires` is absolute Unix milliseconds (spec 6.7), compared against the caller's wall
//! clock: `now.as_millis() + wall_offset_ms` ([`ServerConfig::wall_offset_ms`],
//! [`Server::set_wall_clock`]). A session is usable while `wall_ms < expires`. Expired entries
//! are purged whenever the table is touched. When the table is full, the entry that expires
//! first among those **without** a live connection is evicted; if every entry has a live
//! connection, the one expiring first is evicted (its connection stays authenticated but can no
//! longer be resumed by Reconnect). Evictions are counted in [`ServerStats::sessions_evicted`].
//!
//! Session ids are compared in constant time over their bytes ([`ct_eq`]): no early exit on
//! content, and the whole table is scanned on every lookup. Ids of different lengths compare
//! unequal immediately, so the **length** of a valid id is not hidden.
//!
//! Duplicate sessions: when a session becomes live on a second connection (a Reconnect accepted
//! while the old connection is still open, or `accept_*` given an id that another live
//! connection holds), the **older** connection is closed with `Close{ConnectDuplicate}`. The new
//! connection is the one the client just proved it controls; the old one is typically half-dead
//! (NAT rebinding, a client that gave up on it).
//!
//! # Heartbeats and liveness
//!
//! * cmd-1 requests from authenticated peers are echoed (status 0, same request id, same body,
//!   same gzip flag), over TCP and over WebSocket (third-party clients send them there). Before
//!   authentication they are treated like any other non-auth first packet (rejected).
//! * Echo bodies up to [`MAX_ECHO_LEN`] bytes (64; official clients send at most 22) are copied
//!   into a per-connection slot and answered from `poll_transmit`. A larger body is not copied:
//!   it comes back as [`App::HeartbeatEcho`] and the caller must echo it with
//!   [`Server::respond`] (or [`Server::send`] to keep the gzip flag). A second small heartbeat
//!   arriving while the slot is still full is refused with [`InputError::Busy`] (unconsumed).
//! * On WebSocket the machine sends [`FrameKind::WsPing`] every
//!   [`ServerConfig::ws_ping_interval`] (20 s, from connection start; the official Rust client
//!   drops a connection that saw no Ping for 120 s). The ping payload is a `Heartbeat{timestamp =
//!   wall ms}` body. Client Pings are answered with [`FrameKind::WsPong`] echoing the payload
//!   (only the latest one, as RFC 6455 allows); a caller whose WebSocket library already answers
//!   pings may drop those transmits.
//! * Every complete inbound packet, Ping and Pong refreshes liveness. An authenticated
//!   connection without any for [`ServerConfig::heartbeat_timeout`] (default **150 s**: the Go
//!   client heartbeats every 60 s, so one lost heartbeat plus 30 s of slack is tolerated; the
//!   spec recommends 120-180 s) gets `Close{HeartbeatTimeout}` and a disconnect.
//!
//! Undecodable input — unknown packet type, announced body above [`ServerConfig::max_body`], a
//! truncated WebSocket message, a malformed or gzip-compressed Auth/Reconnect body — closes the
//! connection with `Close{UnpackError}`. Responses and pushes from the client with a control
//! cmd are ignored (counted in [`ServerStats::ignored_packets`]); with a business cmd they are
//! passed to the application ([`App::Response`], [`App::Push`]).
//!
//! # Buffers and copies
//!
//! Business bodies are never copied: inbound ones are borrowed in [`App`], outbound ones are
//! written by [`Server::respond`] / [`Server::push`] / [`Server::send`] straight into the
//! caller's buffer. The machine's own frames are produced at `poll_transmit` time from small
//! bounded per-connection state: the auth/reconnect/error response (session id up to
//! [`MAX_SESSION_ID_LEN`] bytes, error message up to [`MAX_TEXT_LEN`]), one heartbeat echo (up
//! to [`MAX_ECHO_LEN`]), one Pong payload (up to [`MAX_PING_PAYLOAD`]), one Close push. A
//! caller-supplied message or close reason longer than [`MAX_TEXT_LEN`] bytes is truncated on a
//! char boundary. `poll_transmit` with a too-small buffer returns [`BufferTooSmall`] with the
//! exact size and changes nothing.
//!
//! [`Server::respond`] and friends refuse to write while a machine-generated control response
//! for that connection still waits in `poll_transmit` ([`SendError::ControlPending`]), so an
//! application push cannot overtake the auth response. They never write a Request packet to a
//! WebSocket client ([`SendError::RequestOnWebSocket`]): the official Rust client treats one as
//! fatal. The machine itself never sends Request packets.
//!
//! # Cost
//!
//! Connections are found by a linear scan over `PEERS` (fine for the tens of connections a
//! `no_std` server holds; document-level choice). `poll_timeout` and `handle_timeout` are
//! `O(PEERS)`; `poll_transmit` and `poll_event` are `O(PEERS)` per returned item and `O(1)` when
//! nothing is pending (a dirty flag short-circuits the scan). Session lookups are
//! `O(SESSIONS)`. Sessions need no timer, so they do not appear in `poll_timeout`. Events are
//! derived from per-connection state, so there is no event queue that could overflow; their
//! order across connections follows the table, not time.
//!
//! # Driving it
//!
//! TCP, per readable socket (the caller keeps unconsumed bytes in its own buffer):
//!
//! ```
//! use tether::longport::deframe::Transport;
//! use tether::longport::server::{App, InputError, Server, ServerConfig, ServerEvent};
//! use tether::longport::control::SessionGrant;
//! use tether::{Instant, Machine};
//!
//! let mut server: Server<u32> = Server::new(ServerConfig::default());
//! let now = Instant::from_secs(1);
//! server.handle_connected(now, 7, Transport::Tcp).unwrap();
//! // handshake 11 09 and an auth request for token "abc", in one read
//! let mut inbuf = vec![0x11, 0x09, 0x01, 0x02, 0, 0, 0, 1, 0x13, 0x88, 0, 0, 5, 0x0a, 3, b'a', b'b', b'c'];
//! let mut auth = None;
//! while !inbuf.is_empty() {
//!     let r = match server.handle_input(now, 7, &inbuf) {
//!         Ok(r) => r,
//!         // auth decision pending / output slot full: keep the bytes, retry later
//!         Err(InputError::AuthPending | InputError::Busy) => break,
//!         Err(InputError::UnknownConn) => unreachable!("registered above"),
//!     };
//!     if let Some(App::Auth { token, .. }) = r.app() {
//!         auth = Some(*token == "abc"); // check the one-time password (here: trivially)
//!     }
//!     if r.needed().is_some() {
//!         break; // partial packet: read more from the socket
//!     }
//!     inbuf.drain(..r.bytes_consumed());
//! }
//! assert_eq!(auth, Some(true));
//! let grant = SessionGrant { session_id: "s1", expires: 1_700_086_400_000, limit: 0, online: 0 };
//! server.accept_auth(now, 7, grant).unwrap();
//! let mut out = [0u8; 256];
//! while let Some(t) = server.poll_transmit(now, &mut out).unwrap() {
//!     // write out[..t.len] to the socket of t.to
//!     assert_eq!(t.len, 21);
//! }
//! while let Some(ev) = server.poll_event() {
//!     assert!(matches!(ev, ServerEvent::PeerAuthenticated { conn: 7, .. }));
//! }
//! ```
//!
//! WebSocket: parse the `version/codec/platform` query with
//! [`WsParams::parse_query`](crate::longport::deframe::WsParams::parse_query) before upgrading,
//! call `handle_connected(now, id, Transport::WebSocket)`, feed each binary message whole to
//! `handle_input`, Ping/Pong/Close frames to [`Machine::handle_frame`], and send each
//! [`Transmit`] as the frame its [`FrameKind`] names (binary, ping, pong, close). In both cases
//! call `handle_timeout` at `poll_timeout`, and close the socket on [`ServerEvent::Disconnect`].

use core::fmt;

use heapless::{String, Vec};

use crate::io::{BufferTooSmall, FrameKind, Received, Transmit};
use crate::longport::control::{
    AuthRequest, Body, Close, CloseCode, ErrorBody, Heartbeat, Metadata, PbError, ReconnectRequest,
    SessionGrant, CMD_AUTH, CMD_CLOSE, CMD_HEARTBEAT, CMD_RECONNECT,
};
use crate::longport::deframe::{
    decode_message, DeframeError, Frame, Handshake, StreamDeframer, Transport,
};
use crate::longport::wire::{
    Header, Kind, Packet, Signature, Status, DEFAULT_MAX_BODY, MAX_BODY_LEN,
};
use crate::machine::Machine;
use crate::time::{Clock, Duration, Instant};

/// Longest session id [`Server::accept_auth`] / [`Server::accept_reconnect`] accept, in bytes
pub const MAX_SESSION_ID_LEN: usize = 64;
/// Longest stored error message or close reason, in bytes (longer text is truncated)
pub const MAX_TEXT_LEN: usize = 64;
/// Longest heartbeat body the machine echoes by itself (larger ones: [`App::HeartbeatEcho`])
pub const MAX_ECHO_LEN: usize = 64;
/// Longest WebSocket Ping payload answered with a Pong (the RFC 6455 control-frame limit)
pub const MAX_PING_PAYLOAD: usize = 125;
/// Longest request timeout a client may ask for, in milliseconds (spec 2.3)
pub const MAX_REQUEST_TIMEOUT_MS: u16 = 60_000;
/// `Error.code` the machine puts in its status-5 answers
pub const ERROR_CODE_UNAUTHENTICATED: u64 = 401;
/// `Error.code` the machine puts in its status-3 answers to stray control requests
pub const ERROR_CODE_BAD_REQUEST: u64 = 400;
/// Smallest WebSocket ping interval; shorter configured values are raised to it
pub const MIN_WS_PING_INTERVAL: Duration = Duration::from_secs(1);

/// The RFC 6455 close code sent after a `Close{code}` push on WebSocket
///
/// 1000 for heartbeat timeout and unknown codes, 1001 for shutdown, 1002 for unpack errors, 1008
/// for auth, session and duplicate cases, 1011 for server errors (spec 6.3 recommendation).
#[must_use]
pub const fn ws_close_code(code: CloseCode) -> u16 {
    match code {
        CloseCode::ServerShutdown => 1001,
        CloseCode::UnpackError => 1002,
        CloseCode::AuthError | CloseCode::SessExpired | CloseCode::ConnectDuplicate => 1008,
        CloseCode::ServerError => 1011,
        CloseCode::HeartbeatTimeout | CloseCode::Other(_) => 1000,
    }
}

/// Compare two byte strings without an early exit on their content
///
/// Different lengths return `false` at once (the length is not secret); equal lengths are
/// compared over every byte.
#[must_use]
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    core::hint::black_box(diff) == 0
}

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

/// Timers and limits of a [`Server`]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ServerConfig {
    /// Time from `handle_connected` until the connection must be authenticated (default 10 s)
    pub auth_timeout: Duration,
    /// Silence after which an authenticated connection is closed (default 150 s)
    pub heartbeat_timeout: Duration,
    /// WebSocket Ping cadence (default 20 s; at least [`MIN_WS_PING_INTERVAL`])
    pub ws_ping_interval: Duration,
    /// Most connections that may be unauthenticated at once (default 8)
    pub max_unauthenticated: usize,
    /// Largest announced body accepted (default [`DEFAULT_MAX_BODY`], 1 MiB)
    pub max_body: usize,
    /// Unix milliseconds minus `now.as_millis()`: turns the caller's [`Instant`] into wall time
    pub wall_offset_ms: i64,
    /// Timeout reported in [`App::Request`] when the client sent 0 (default 30 000 ms)
    pub default_request_timeout_ms: u16,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            auth_timeout: Duration::from_secs(10),
            heartbeat_timeout: Duration::from_secs(150),
            ws_ping_interval: Duration::from_secs(20),
            max_unauthenticated: 8,
            max_body: DEFAULT_MAX_BODY,
            wall_offset_ms: 0,
            default_request_timeout_ms: 30_000,
        }
    }
}

/// Where a connection is in its lifecycle
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PeerState {
    /// TCP: waiting for the 2-byte handshake
    AwaitHandshake,
    /// Waiting for the first packet (Auth or Reconnect)
    AwaitAuth,
    /// The application must call `accept_*` or `reject_*`
    AuthPending,
    /// Authenticated: business traffic flows
    Authenticated,
    /// A Close push is queued or sent; waiting for the frames to drain and the `Disconnect` event
    Closing,
    /// The transport is gone; the slot is freed when the `PeerClosed` event has been polled
    Gone,
}

/// Protocol violations that close a connection with `Close{UnpackError}`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ProtocolError {
    /// The TCP handshake announced an unsupported protocol version
    Handshake(u8),
    /// The packet type nibble is not 1, 2 or 3
    UnknownType(u8),
    /// The announced body exceeds the configured limit
    BodyTooLarge {
        /// Announced length
        len: usize,
        /// Configured limit
        max: usize,
    },
    /// A WebSocket message shorter than the packet it announces
    Truncated {
        /// Message length
        len: usize,
        /// Bytes the packet needs
        needed: usize,
    },
    /// An Auth or Reconnect body that is not valid protobuf
    BadControlBody(PbError),
    /// An Auth or Reconnect body with the gzip bit (not inflated by the machine)
    CompressedControl,
}

impl From<DeframeError> for ProtocolError {
    fn from(e: DeframeError) -> Self {
        match e {
            DeframeError::UnsupportedVersion(v) => ProtocolError::Handshake(v),
            DeframeError::UnknownType(t) => ProtocolError::UnknownType(t),
            DeframeError::BodyTooLarge { len, max } => ProtocolError::BodyTooLarge { len, max },
            DeframeError::Truncated { len, needed } => ProtocolError::Truncated { len, needed },
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Handshake(v) => write!(f, "handshake with unsupported version {v}"),
            ProtocolError::UnknownType(t) => write!(f, "unknown packet type {t}"),
            ProtocolError::BodyTooLarge { len, max } => {
                write!(f, "announced body of {len} bytes exceeds {max}")
            }
            ProtocolError::Truncated { len, needed } => {
                write!(f, "message of {len} bytes, packet needs {needed}")
            }
            ProtocolError::BadControlBody(e) => write!(f, "malformed control body: {e}"),
            ProtocolError::CompressedControl => f.write_str("compressed control body"),
        }
    }
}

impl core::error::Error for ProtocolError {}

/// Why a connection ended
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CloseReason {
    /// Not authenticated within [`ServerConfig::auth_timeout`] (`Close{AuthError}`)
    AuthTimeout,
    /// The first packet was not an Auth or Reconnect request (`Close{AuthError}`)
    NotAuthenticated,
    /// The application rejected the token with this status (`Close{AuthError}`)
    AuthRejected(Status),
    /// The application rejected the reconnect with this status (`Close{SessExpired}`)
    ReconnectRejected(Status),
    /// Reconnect with an unknown or expired session (`Close{SessExpired}`)
    SessionUnknown,
    /// The session went live on a newer connection (`Close{ConnectDuplicate}`)
    Duplicate,
    /// No packet, Ping or Pong for [`ServerConfig::heartbeat_timeout`] (`Close{HeartbeatTimeout}`)
    HeartbeatTimeout,
    /// Undecodable input (`Close{UnpackError}`)
    Protocol(ProtocolError),
    /// [`Server::shutdown`] (`Close{ServerShutdown}`)
    Shutdown,
    /// [`Server::close`] with this code
    Local(CloseCode),
    /// The caller reported the transport gone ([`Machine::handle_closed`]); nothing was sent
    TransportClosed,
    /// The client sent a WebSocket Close frame with this code; nothing was sent
    WsClosed(u16),
}

impl CloseReason {
    /// The code of the Close push the machine sent, if it sent one
    #[must_use]
    pub const fn close_code(self) -> Option<CloseCode> {
        Some(match self {
            CloseReason::AuthTimeout
            | CloseReason::NotAuthenticated
            | CloseReason::AuthRejected(_) => CloseCode::AuthError,
            CloseReason::ReconnectRejected(_) | CloseReason::SessionUnknown => {
                CloseCode::SessExpired
            }
            CloseReason::Duplicate => CloseCode::ConnectDuplicate,
            CloseReason::HeartbeatTimeout => CloseCode::HeartbeatTimeout,
            CloseReason::Protocol(_) => CloseCode::UnpackError,
            CloseReason::Shutdown => CloseCode::ServerShutdown,
            CloseReason::Local(c) => c,
            CloseReason::TransportClosed | CloseReason::WsClosed(_) => return None,
        })
    }

    const fn default_text(self) -> &'static str {
        match self {
            CloseReason::AuthTimeout => "authentication timeout",
            CloseReason::NotAuthenticated => "not authenticated",
            CloseReason::AuthRejected(_) => "authentication failed",
            CloseReason::ReconnectRejected(_) | CloseReason::SessionUnknown => "session expired",
            CloseReason::Duplicate => "connect duplicate",
            CloseReason::HeartbeatTimeout => "heartbeat timeout",
            CloseReason::Protocol(_) => "unpack error",
            CloseReason::Shutdown => "server shutdown",
            CloseReason::Local(_) | CloseReason::TransportClosed | CloseReason::WsClosed(_) => "",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::AuthRejected(s) => write!(f, "authentication rejected: {s}"),
            CloseReason::ReconnectRejected(s) => write!(f, "reconnect rejected: {s}"),
            CloseReason::Protocol(e) => write!(f, "protocol error: {e}"),
            CloseReason::Local(c) => write!(f, "closed by the application: {c}"),
            CloseReason::TransportClosed => f.write_str("transport closed"),
            CloseReason::WsClosed(c) => write!(f, "websocket closed by the client ({c})"),
            other => f.write_str(other.default_text()),
        }
    }
}

/// Control-plane events of a [`Server`]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ServerEvent<C> {
    /// [`Server::accept_auth`] took effect; the response is queued
    PeerAuthenticated {
        /// The connection
        conn: C,
        /// Session expiry granted (Unix ms)
        expires: i64,
    },
    /// [`Server::accept_reconnect`] took effect; the response is queued
    PeerReconnected {
        /// The connection
        conn: C,
        /// Session expiry granted (Unix ms)
        expires: i64,
    },
    /// The connection is closing or closed
    PeerClosed {
        /// The connection
        conn: C,
        /// Why
        reason: CloseReason,
    },
    /// Close the transport now: every frame for `conn` has been handed out by `poll_transmit`
    ///
    /// On TCP, close the socket. On WebSocket the last transmit was the close frame; finish the
    /// close handshake (or drop the socket). The machine has forgotten `conn`.
    Disconnect {
        /// The connection
        conn: C,
    },
}

/// Application data borrowed out of one input
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum App<'a> {
    /// An Auth request: check `token`, then call `accept_auth` or `reject_auth`
    Auth {
        /// Request id (echoed by the machine in its response)
        request_id: u32,
        /// The one-time password
        token: &'a str,
        /// Client metadata (`accept-language`, ...)
        metadata: Metadata<'a>,
    },
    /// A Reconnect request for a live session: call `accept_reconnect` or `reject_reconnect`
    Reconnect {
        /// Request id
        request_id: u32,
        /// The session presented (known to the table and not expired)
        session_id: &'a str,
        /// Its expiry (Unix ms)
        expires: i64,
        /// Client metadata
        metadata: Metadata<'a>,
    },
    /// A business request from an authenticated client: answer with [`Server::respond`]
    Request {
        /// Request id to echo
        request_id: u32,
        /// Command code (4 and up)
        cmd: u8,
        /// Processing deadline: the client's value clamped to 60 000, or the configured default for 0
        timeout_ms: u16,
        /// Body as on the wire
        body: &'a [u8],
        /// True when `body` is a gzip member
        gzip: bool,
        /// Nonce and signature, when the client signed the packet (never checked)
        signature: Option<Signature>,
    },
    /// A response from the client to a request the application sent with [`Server::send`] (TCP)
    Response {
        /// Request id
        request_id: u32,
        /// Command code
        cmd: u8,
        /// Status
        status: Status,
        /// Body as on the wire
        body: &'a [u8],
        /// True when `body` is a gzip member
        gzip: bool,
    },
    /// A push from the client (not used by official clients)
    Push {
        /// Command code
        cmd: u8,
        /// Body as on the wire
        body: &'a [u8],
        /// True when `body` is a gzip member
        gzip: bool,
    },
    /// A heartbeat request too large for the echo slot: echo `body` with [`Server::respond`]
    /// (status 0, cmd 1, same id; use [`Server::send`] with `with_gzip(gzip)` to keep the flag)
    HeartbeatEcho {
        /// Request id to echo
        request_id: u32,
        /// Body to echo
        body: &'a [u8],
        /// True when `body` is a gzip member
        gzip: bool,
    },
}

/// Counters of a [`Server`]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ServerStats {
    /// Connections registered
    pub connections_accepted: u64,
    /// Connections refused by `handle_connected`
    pub connections_refused: u64,
    /// Complete packets received
    pub packets_received: u64,
    /// Frames handed out by `poll_transmit` plus packets written by `respond`/`push`/`send`
    pub frames_sent: u64,
    /// Heartbeat requests echoed by the machine
    pub heartbeats_echoed: u64,
    /// WebSocket Pings sent
    pub ws_pings_sent: u64,
    /// WebSocket Pings received
    pub ws_pings_received: u64,
    /// WebSocket Pongs received
    pub ws_pongs_received: u64,
    /// Ping payloads over [`MAX_PING_PAYLOAD`] bytes (not answered)
    pub ws_pings_oversized: u64,
    /// Auths accepted
    pub auths_accepted: u64,
    /// Auths rejected by the application
    pub auths_rejected: u64,
    /// Reconnects accepted
    pub reconnects_accepted: u64,
    /// Reconnects rejected (by the application or for an unknown/expired session)
    pub reconnects_rejected: u64,
    /// Sessions dropped because they expired or the table was full
    pub sessions_evicted: u64,
    /// Connections closed for undecodable input
    pub protocol_errors: u64,
    /// Connections closed for missing heartbeats
    pub heartbeat_timeouts: u64,
    /// Connections closed for missing authentication
    pub auth_timeouts: u64,
    /// Connections closed as duplicates
    pub duplicates_closed: u64,
    /// Client responses/pushes with a control cmd, dropped
    pub ignored_packets: u64,
    /// WebSocket messages with bytes after the packet (ignored)
    pub trailing_bytes: u64,
}

/// Why [`Server::handle_connected`] refused a connection; close the socket
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConnectError {
    /// All `PEERS` slots are in use
    TableFull,
    /// [`ServerConfig::max_unauthenticated`] connections are already unauthenticated
    TooManyUnauthenticated,
    /// This id is still registered (drain `poll_event` after it closed before reusing it)
    AlreadyConnected,
    /// [`Server::shutdown`] was called
    ShuttingDown,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnectError::TableFull => "connection table full",
            ConnectError::TooManyUnauthenticated => "too many unauthenticated connections",
            ConnectError::AlreadyConnected => "connection id already registered",
            ConnectError::ShuttingDown => "server is shutting down",
        })
    }
}

impl core::error::Error for ConnectError {}

/// Why one input was refused; nothing was consumed
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum InputError {
    /// The connection id is not registered
    UnknownConn,
    /// An auth decision is pending for this connection; retry after `accept_*`/`reject_*`
    AuthPending,
    /// A per-connection slot (heartbeat echo, control response) is full; drain `poll_transmit`
    /// and retry
    Busy,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InputError::UnknownConn => "unknown connection",
            InputError::AuthPending => "auth decision pending",
            InputError::Busy => "output slot full: drain poll_transmit first",
        })
    }
}

impl core::error::Error for InputError {}

/// Why an auth/reconnect decision or `close` was refused; nothing changed
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CommandError {
    /// The connection id is not registered
    UnknownConn,
    /// No auth (or reconnect, for `*_reconnect`) decision is pending on this connection
    NotPending,
    /// The connection is already closing
    Closing,
    /// The session id is empty
    EmptySessionId,
    /// The session id is longer than [`MAX_SESSION_ID_LEN`]
    SessionIdTooLong {
        /// Its length
        len: usize,
    },
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::UnknownConn => f.write_str("unknown connection"),
            CommandError::NotPending => f.write_str("no matching auth decision pending"),
            CommandError::Closing => f.write_str("connection is closing"),
            CommandError::EmptySessionId => f.write_str("empty session id"),
            CommandError::SessionIdTooLong { len } => {
                write!(f, "session id of {len} bytes exceeds {MAX_SESSION_ID_LEN}")
            }
        }
    }
}

impl core::error::Error for CommandError {}

/// Why `respond`/`push`/`send` wrote nothing
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SendError {
    /// The connection id is not registered
    UnknownConn,
    /// The connection is not authenticated yet
    NotAuthenticated,
    /// The connection is closing
    Closing,
    /// A machine-generated response waits in `poll_transmit`; drain it first
    ControlPending,
    /// Request packets are never sent to WebSocket clients
    RequestOnWebSocket,
    /// The body exceeds the 24-bit length field
    BodyTooLarge {
        /// Body length
        len: usize,
    },
    /// The output buffer is too small
    BufferTooSmall {
        /// Exact bytes the packet needs
        required: usize,
    },
}

impl From<BufferTooSmall> for SendError {
    fn from(e: BufferTooSmall) -> Self {
        SendError::BufferTooSmall {
            required: e.required,
        }
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::UnknownConn => f.write_str("unknown connection"),
            SendError::NotAuthenticated => f.write_str("connection not authenticated"),
            SendError::Closing => f.write_str("connection is closing"),
            SendError::ControlPending => {
                f.write_str("control response pending: drain poll_transmit")
            }
            SendError::RequestOnWebSocket => {
                f.write_str("request packets are not sent over WebSocket")
            }
            SendError::BodyTooLarge { len } => write!(f, "body of {len} bytes exceeds 16 MiB"),
            SendError::BufferTooSmall { required } => {
                write!(f, "output buffer too small: {required} bytes required")
            }
        }
    }
}

impl core::error::Error for SendError {}

// ---------------------------------------------------------------------------------------------
// Internal state
// ---------------------------------------------------------------------------------------------

type Text = String<MAX_TEXT_LEN>;

/// `s` truncated to `MAX_TEXT_LEN` bytes on a char boundary
fn text(s: &str) -> Text {
    let mut end = s.len().min(MAX_TEXT_LEN);
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut t = Text::new();
    // cannot fail: `end <= MAX_TEXT_LEN`
    let _ = t.push_str(s.get(..end).unwrap_or(""));
    t
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Auth { request_id: u32 },
    Reconnect { request_id: u32, generation: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitHandshake,
    AwaitAuth,
    Pending(Pending),
    Authenticated,
    Closing,
    Gone,
}

#[derive(Debug, Clone)]
enum CtlBody {
    Grant {
        session_id: String<MAX_SESSION_ID_LEN>,
        expires: i64,
        limit: u32,
        online: u32,
    },
    Error {
        code: u64,
        msg: Text,
    },
}

#[derive(Debug, Clone)]
struct CtlResponse {
    cmd: u8,
    request_id: u32,
    status: Status,
    body: CtlBody,
}

#[derive(Debug, Clone)]
struct Echo {
    request_id: u32,
    gzip: bool,
    body: Vec<u8, MAX_ECHO_LEN>,
}

#[derive(Debug, Clone)]
struct PendingClose {
    code: CloseCode,
    text: Text,
    push_pending: bool,
    ws_pending: bool,
}

#[derive(Debug, Clone)]
struct Peer<C> {
    conn: C,
    transport: Transport,
    phase: Phase,
    deframer: StreamDeframer,
    handshake: Option<Handshake>,
    auth_deadline: Instant,
    last_rx: Instant,
    next_ping: Instant,
    resp: Option<CtlResponse>,
    echo: Option<Echo>,
    pong: Option<Vec<u8, MAX_PING_PAYLOAD>>,
    ping_due: bool,
    close: Option<PendingClose>,
    announce: Option<ServerEvent<C>>,
    reason: Option<CloseReason>,
    reason_reported: bool,
}

impl<C> Peer<C> {
    fn is_unauthenticated(&self) -> bool {
        matches!(
            self.phase,
            Phase::AwaitHandshake | Phase::AwaitAuth | Phase::Pending(_)
        )
    }

    fn flushed(&self) -> bool {
        self.resp.is_none()
            && self.echo.is_none()
            && self.pong.is_none()
            && !self.ping_due
            && self
                .close
                .as_ref()
                .map_or(true, |c| !c.push_pending && !c.ws_pending)
    }

    fn packet_kind(&self) -> FrameKind {
        match self.transport {
            Transport::Tcp => FrameKind::Stream,
            Transport::WebSocket => FrameKind::WsBinary,
        }
    }
}

#[derive(Debug, Clone)]
struct SessionEntry<C> {
    id: String<MAX_SESSION_ID_LEN>,
    expires: i64,
    conn: Option<C>,
    generation: u32,
}

/// Write a control packet (header + protobuf body) at the start of `buf`; nothing on error
fn emit_control<'b, B: Body<'b>>(
    kind: Kind,
    cmd: u8,
    body: &B,
    buf: &mut [u8],
) -> Result<usize, BufferTooSmall> {
    let body_len = body.encoded_len();
    let header = Header {
        kind,
        cmd,
        gzip: false,
        verify: false,
        reserve: 0,
        body_len: u32::try_from(body_len).unwrap_or(u32::MAX),
    };
    let total = header.len().saturating_add(body_len);
    if buf.len() < total {
        return Err(BufferTooSmall { required: total });
    }
    let hlen = header.emit(buf)?;
    let rest = buf.get_mut(hlen..).unwrap_or_default();
    let n = body.encode(rest)?;
    Ok(hlen + n)
}

impl CtlResponse {
    fn emit(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let kind = Kind::Response {
            request_id: self.request_id,
            status: self.status,
        };
        match &self.body {
            CtlBody::Grant {
                session_id,
                expires,
                limit,
                online,
            } => {
                let grant = SessionGrant {
                    session_id,
                    expires: *expires,
                    limit: *limit,
                    online: *online,
                };
                emit_control(kind, self.cmd, &grant, buf)
            }
            CtlBody::Error { code, msg } => {
                emit_control(kind, self.cmd, &ErrorBody::new(*code, msg), buf)
            }
        }
    }
}

/// Copy `src` into `buf`, or report the size needed
fn emit_raw(src: &[u8], buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
    match buf.get_mut(..src.len()) {
        Some(dst) => {
            dst.copy_from_slice(src);
            Ok(src.len())
        }
        None => Err(BufferTooSmall {
            required: src.len(),
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

/// Sans-IO LongPort server for up to `PEERS` connections and `SESSIONS` sessions
///
/// `C` is the caller's connection id (a socket handle, a slab index, ...). See the
/// [module docs](self) for the lifecycle, the close signal and every policy choice.
#[derive(Debug, Clone)]
pub struct Server<C: Copy + Eq, const PEERS: usize = 16, const SESSIONS: usize = 64> {
    config: ServerConfig,
    clock: Clock,
    peers: Vec<Peer<C>, PEERS>,
    sessions: Vec<SessionEntry<C>, SESSIONS>,
    next_generation: u32,
    tx_cursor: usize,
    tx_dirty: bool,
    ev_dirty: bool,
    shutting_down: bool,
    stats: ServerStats,
}

/// A [`Server`] with the default capacities: 16 connections, 64 sessions
pub type DefaultServer<C> = Server<C, 16, 64>;

impl<C: Copy + Eq, const PEERS: usize, const SESSIONS: usize> Server<C, PEERS, SESSIONS> {
    /// A server with no connections
    #[must_use]
    pub fn new(config: ServerConfig) -> Self {
        Server {
            config,
            clock: Clock::new(),
            peers: Vec::new(),
            sessions: Vec::new(),
            next_generation: 0,
            tx_cursor: 0,
            tx_dirty: false,
            ev_dirty: false,
            shutting_down: false,
            stats: ServerStats::default(),
        }
    }

    /// The configuration
    #[must_use]
    pub const fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The counters
    #[must_use]
    pub const fn stats(&self) -> ServerStats {
        self.stats
    }

    /// Tell the machine that `now` corresponds to `unix_ms` on the wall clock
    ///
    /// Sets [`ServerConfig::wall_offset_ms`]; session expiry and WS ping timestamps use it.
    pub fn set_wall_clock(&mut self, now: Instant, unix_ms: i64) {
        let now = self.clock.update(now);
        self.config.wall_offset_ms = unix_ms.saturating_sub(millis_i64(now));
    }

    /// Wall-clock Unix milliseconds at the latest `now` seen
    #[must_use]
    pub fn wall_clock_ms(&self) -> i64 {
        millis_i64(self.clock.now()).saturating_add(self.config.wall_offset_ms)
    }

    /// Registered connections (any state)
    #[must_use]
    pub fn connections(&self) -> usize {
        self.peers.len()
    }

    /// Registered connections not authenticated yet
    #[must_use]
    pub fn unauthenticated(&self) -> usize {
        self.peers.iter().filter(|p| p.is_unauthenticated()).count()
    }

    /// Sessions in the table (expired ones included until the table is next touched)
    #[must_use]
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// State of a connection
    #[must_use]
    pub fn state(&self, conn: C) -> Option<PeerState> {
        self.find(conn).map(|i| match self.peers[i].phase {
            Phase::AwaitHandshake => PeerState::AwaitHandshake,
            Phase::AwaitAuth => PeerState::AwaitAuth,
            Phase::Pending(_) => PeerState::AuthPending,
            Phase::Authenticated => PeerState::Authenticated,
            Phase::Closing => PeerState::Closing,
            Phase::Gone => PeerState::Gone,
        })
    }

    /// The TCP handshake a connection sent
    #[must_use]
    pub fn handshake(&self, conn: C) -> Option<Handshake> {
        self.find(conn).and_then(|i| self.peers[i].handshake)
    }

    /// The session currently bound to a live connection
    #[must_use]
    pub fn session_id(&self, conn: C) -> Option<&str> {
        self.sessions
            .iter()
            .find(|s| s.conn == Some(conn))
            .map(|s| s.id.as_str())
    }

    /// Expiry (Unix ms) of a session in the table, expired or not
    #[must_use]
    pub fn session_expires(&self, session_id: &str) -> Option<i64> {
        self.lookup_session(session_id)
            .map(|i| self.sessions[i].expires)
    }

    /// Forget a session (e.g. the account logged out); its connection, if any, stays open
    pub fn revoke_session(&mut self, session_id: &str) -> bool {
        match self.lookup_session(session_id) {
            Some(i) => {
                self.sessions.swap_remove(i);
                true
            }
            None => false,
        }
    }

    fn find(&self, conn: C) -> Option<usize> {
        self.peers.iter().position(|p| p.conn == conn)
    }

    /// Index of the session with this id; scans the whole table, constant-time compares
    fn lookup_session(&self, session_id: &str) -> Option<usize> {
        let mut found = None;
        for (i, s) in self.sessions.iter().enumerate() {
            let hit = ct_eq(s.id.as_bytes(), session_id.as_bytes());
            if hit && found.is_none() {
                found = Some(i);
            }
        }
        found
    }

    fn purge_expired(&mut self) {
        let wall = self.wall_clock_ms();
        let before = self.sessions.len();
        self.sessions.retain(|s| s.expires > wall);
        let evicted = before - self.sessions.len();
        self.stats.sessions_evicted = self.stats.sessions_evicted.saturating_add(evicted as u64);
    }

    // -----------------------------------------------------------------------------------------
    // Commands
    // -----------------------------------------------------------------------------------------

    /// Register a new transport connection
    ///
    /// TCP connections start by waiting for the 2-byte handshake, WebSocket ones for the first
    /// packet. The auth deadline and the WS ping timer start now.
    ///
    /// # Errors
    /// [`ConnectError`]; the caller should close the socket without sending anything.
    pub fn handle_connected(
        &mut self,
        now: Instant,
        conn: C,
        transport: Transport,
    ) -> Result<(), ConnectError> {
        let now = self.clock.update(now);
        let refused = if self.shutting_down {
            Some(ConnectError::ShuttingDown)
        } else if self.find(conn).is_some() {
            Some(ConnectError::AlreadyConnected)
        } else if self.unauthenticated() >= self.config.max_unauthenticated {
            Some(ConnectError::TooManyUnauthenticated)
        } else if self.peers.is_full() {
            Some(ConnectError::TableFull)
        } else {
            None
        };
        if let Some(e) = refused {
            self.stats.connections_refused = self.stats.connections_refused.saturating_add(1);
            return Err(e);
        }
        let tcp = transport == Transport::Tcp;
        let peer = Peer {
            conn,
            transport,
            phase: if tcp {
                Phase::AwaitHandshake
            } else {
                Phase::AwaitAuth
            },
            deframer: StreamDeframer::new(tcp, self.config.max_body),
            handshake: None,
            auth_deadline: now + self.config.auth_timeout,
            last_rx: now,
            next_ping: now + self.ping_interval(),
            resp: None,
            echo: None,
            pong: None,
            ping_due: false,
            close: None,
            announce: None,
            reason: None,
            reason_reported: false,
        };
        if self.peers.push(peer).is_err() {
            self.stats.connections_refused = self.stats.connections_refused.saturating_add(1);
            return Err(ConnectError::TableFull);
        }
        self.stats.connections_accepted = self.stats.connections_accepted.saturating_add(1);
        Ok(())
    }

    fn ping_interval(&self) -> Duration {
        self.config.ws_ping_interval.max(MIN_WS_PING_INTERVAL)
    }

    /// Accept a pending Auth: queue the status-0 `AuthResponse{grant}` and bind the session
    ///
    /// The session is stored (see the module docs for eviction); if another live connection
    /// holds the same id, that older connection is closed with `Close{ConnectDuplicate}`.
    ///
    /// # Errors
    /// [`CommandError`]; nothing changed.
    pub fn accept_auth(
        &mut self,
        now: Instant,
        conn: C,
        grant: SessionGrant<'_>,
    ) -> Result<(), CommandError> {
        self.clock.update(now);
        let idx = self.find(conn).ok_or(CommandError::UnknownConn)?;
        let request_id = match self.peers[idx].phase {
            Phase::Pending(Pending::Auth { request_id }) => request_id,
            Phase::Closing | Phase::Gone => return Err(CommandError::Closing),
            _ => return Err(CommandError::NotPending),
        };
        let id = session_string(grant.session_id)?;
        self.bind_session(conn, id.clone(), grant.expires);
        self.finish_accept(conn, CMD_AUTH, request_id, id, grant);
        self.stats.auths_accepted = self.stats.auths_accepted.saturating_add(1);
        Ok(())
    }

    /// Accept a pending Reconnect with a freshly minted session (`grant.session_id`)
    ///
    /// The presented session is retired; if it was still live on another (older) connection,
    /// that connection is closed with `Close{ConnectDuplicate}`.
    ///
    /// # Errors
    /// [`CommandError`]; nothing changed.
    pub fn accept_reconnect(
        &mut self,
        now: Instant,
        conn: C,
        grant: SessionGrant<'_>,
    ) -> Result<(), CommandError> {
        self.clock.update(now);
        let idx = self.find(conn).ok_or(CommandError::UnknownConn)?;
        let (request_id, generation) = match self.peers[idx].phase {
            Phase::Pending(Pending::Reconnect {
                request_id,
                generation,
            }) => (request_id, generation),
            Phase::Closing | Phase::Gone => return Err(CommandError::Closing),
            _ => return Err(CommandError::NotPending),
        };
        let id = session_string(grant.session_id)?;
        if let Some(pos) = self
            .sessions
            .iter()
            .position(|s| s.generation == generation)
        {
            let old = self.sessions.swap_remove(pos);
            if let Some(other) = old.conn.filter(|&c| c != conn) {
                self.close_duplicate(other);
            }
        }
        self.bind_session(conn, id.clone(), grant.expires);
        self.finish_accept(conn, CMD_RECONNECT, request_id, id, grant);
        self.stats.reconnects_accepted = self.stats.reconnects_accepted.saturating_add(1);
        Ok(())
    }

    fn finish_accept(
        &mut self,
        conn: C,
        cmd: u8,
        request_id: u32,
        session_id: String<MAX_SESSION_ID_LEN>,
        grant: SessionGrant<'_>,
    ) {
        let Some(idx) = self.find(conn) else { return };
        let p = &mut self.peers[idx];
        p.resp = Some(CtlResponse {
            cmd,
            request_id,
            status: Status::Success,
            body: CtlBody::Grant {
                session_id,
                expires: grant.expires,
                limit: grant.limit,
                online: grant.online,
            },
        });
        p.phase = Phase::Authenticated;
        p.announce = Some(if cmd == CMD_AUTH {
            ServerEvent::PeerAuthenticated {
                conn,
                expires: grant.expires,
            }
        } else {
            ServerEvent::PeerReconnected {
                conn,
                expires: grant.expires,
            }
        });
        self.tx_dirty = true;
        self.ev_dirty = true;
    }

    /// Store `id` bound to `conn`; evicts as documented, closes an older holder of the same id
    fn bind_session(&mut self, conn: C, id: String<MAX_SESSION_ID_LEN>, expires: i64) {
        self.purge_expired();
        // one session per connection
        for s in self.sessions.iter_mut() {
            if s.conn == Some(conn) {
                s.conn = None;
            }
        }
        if let Some(i) = self.lookup_session(&id) {
            let old = self.sessions.swap_remove(i);
            if let Some(other) = old.conn {
                self.close_duplicate(other);
            }
        }
        if self.sessions.is_full() {
            let victim = self
                .sessions
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| (s.conn.is_some(), s.expires))
                .map(|(i, _)| i);
            if let Some(i) = victim {
                self.sessions.swap_remove(i);
                self.stats.sessions_evicted = self.stats.sessions_evicted.saturating_add(1);
            }
        }
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        // cannot fail: a slot was freed above when the table was full (SESSIONS == 0 stores nothing)
        let _ = self.sessions.push(SessionEntry {
            id,
            expires,
            conn: Some(conn),
            generation,
        });
    }

    fn close_duplicate(&mut self, other: C) {
        if let Some(i) = self.find(other) {
            if self.begin_close(i, CloseReason::Duplicate, None) {
                self.stats.duplicates_closed = self.stats.duplicates_closed.saturating_add(1);
            }
        }
    }

    /// Reject a pending Auth: status + `Error{code, msg}` response, `Close{AuthError}`, disconnect
    ///
    /// `msg` (truncated to [`MAX_TEXT_LEN`] bytes) is also the Close reason. A reconnect pending
    /// on the connection is rejected the same way but with [`Server::reject_reconnect`]'s close
    /// code; use that for clarity.
    ///
    /// # Errors
    /// [`CommandError`]; nothing changed.
    pub fn reject_auth(
        &mut self,
        now: Instant,
        conn: C,
        status: Status,
        code: u64,
        msg: &str,
    ) -> Result<(), CommandError> {
        self.reject(now, conn, status, code, msg, false)
    }

    /// Reject a pending Reconnect: status + `Error{code, msg}`, `Close{SessExpired}`, disconnect
    ///
    /// The presented session stays in the table until it expires.
    ///
    /// # Errors
    /// [`CommandError`] ([`CommandError::NotPending`] if an Auth, not a Reconnect, is pending).
    pub fn reject_reconnect(
        &mut self,
        now: Instant,
        conn: C,
        status: Status,
        code: u64,
        msg: &str,
    ) -> Result<(), CommandError> {
        self.reject(now, conn, status, code, msg, true)
    }

    fn reject(
        &mut self,
        now: Instant,
        conn: C,
        status: Status,
        code: u64,
        msg: &str,
        reconnect_only: bool,
    ) -> Result<(), CommandError> {
        self.clock.update(now);
        let idx = self.find(conn).ok_or(CommandError::UnknownConn)?;
        let (cmd, request_id, reason) = match self.peers[idx].phase {
            Phase::Pending(Pending::Auth { request_id }) if !reconnect_only => {
                (CMD_AUTH, request_id, CloseReason::AuthRejected(status))
            }
            Phase::Pending(Pending::Reconnect { request_id, .. }) => (
                CMD_RECONNECT,
                request_id,
                CloseReason::ReconnectRejected(status),
            ),
            Phase::Closing | Phase::Gone => return Err(CommandError::Closing),
            _ => return Err(CommandError::NotPending),
        };
        let msg = text(msg);
        self.peers[idx].resp = Some(CtlResponse {
            cmd,
            request_id,
            status,
            body: CtlBody::Error {
                code,
                msg: msg.clone(),
            },
        });
        self.begin_close(idx, reason, Some(msg));
        if cmd == CMD_AUTH {
            self.stats.auths_rejected = self.stats.auths_rejected.saturating_add(1);
        } else {
            self.stats.reconnects_rejected = self.stats.reconnects_rejected.saturating_add(1);
        }
        Ok(())
    }

    /// Close a connection: `Close{code, reason}` push (+ WS close frame), then `Disconnect`
    ///
    /// `reason` is truncated to [`MAX_TEXT_LEN`] bytes.
    ///
    /// # Errors
    /// [`CommandError::UnknownConn`], or [`CommandError::Closing`] when it already closes.
    pub fn close(
        &mut self,
        now: Instant,
        conn: C,
        code: CloseCode,
        reason: &str,
    ) -> Result<(), CommandError> {
        self.clock.update(now);
        let idx = self.find(conn).ok_or(CommandError::UnknownConn)?;
        if self.begin_close(idx, CloseReason::Local(code), Some(text(reason))) {
            Ok(())
        } else {
            Err(CommandError::Closing)
        }
    }

    /// Close every connection with `Close{ServerShutdown}` (+ WS close 1001) and refuse new ones
    pub fn shutdown(&mut self, now: Instant) {
        self.clock.update(now);
        self.shutting_down = true;
        for i in 0..self.peers.len() {
            self.begin_close(i, CloseReason::Shutdown, None);
        }
    }

    /// True once [`Server::shutdown`] was called
    #[must_use]
    pub const fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// Write a response packet into `out` (business bodies are never copied into the machine)
    ///
    /// # Errors
    /// [`SendError`]; nothing was written and nothing changed.
    #[allow(clippy::too_many_arguments)]
    pub fn respond(
        &mut self,
        now: Instant,
        conn: C,
        request_id: u32,
        cmd: u8,
        status: Status,
        body: &[u8],
        out: &mut [u8],
    ) -> Result<Transmit<C>, SendError> {
        self.send(
            now,
            conn,
            &Packet::response(cmd, request_id, status, body),
            out,
        )
    }

    /// Write a push packet into `out`
    ///
    /// # Errors
    /// [`SendError`]; nothing was written and nothing changed.
    pub fn push(
        &mut self,
        now: Instant,
        conn: C,
        cmd: u8,
        body: &[u8],
        out: &mut [u8],
    ) -> Result<Transmit<C>, SendError> {
        self.send(now, conn, &Packet::push(cmd, body), out)
    }

    /// Write any packet (gzip flag, signature trailer as given) into `out`
    ///
    /// Request packets are refused on WebSocket ([`SendError::RequestOnWebSocket`]); on TCP
    /// they are allowed, and the client's responses come back as [`App::Response`] (cmd-1
    /// responses count as liveness only).
    ///
    /// # Errors
    /// [`SendError`]; nothing was written and nothing changed.
    pub fn send(
        &mut self,
        now: Instant,
        conn: C,
        packet: &Packet<'_>,
        out: &mut [u8],
    ) -> Result<Transmit<C>, SendError> {
        self.clock.update(now);
        let idx = self.find(conn).ok_or(SendError::UnknownConn)?;
        let p = &self.peers[idx];
        match p.phase {
            Phase::Authenticated => {}
            Phase::Closing | Phase::Gone => return Err(SendError::Closing),
            _ => return Err(SendError::NotAuthenticated),
        }
        if p.resp.is_some() {
            return Err(SendError::ControlPending);
        }
        if p.transport == Transport::WebSocket && matches!(packet.header.kind, Kind::Request { .. })
        {
            return Err(SendError::RequestOnWebSocket);
        }
        if packet.body.len() > MAX_BODY_LEN {
            return Err(SendError::BodyTooLarge {
                len: packet.body.len(),
            });
        }
        let kind = p.packet_kind();
        let len = packet.emit(out)?;
        self.stats.frames_sent = self.stats.frames_sent.saturating_add(1);
        Ok(Transmit {
            to: conn,
            len,
            kind,
        })
    }

    // -----------------------------------------------------------------------------------------
    // Closing
    // -----------------------------------------------------------------------------------------

    /// Queue `Close{reason.close_code()}` (+ WS close) for peer `idx`; false if it already closes
    fn begin_close(&mut self, idx: usize, reason: CloseReason, msg: Option<Text>) -> bool {
        let Some(p) = self.peers.get_mut(idx) else {
            return false;
        };
        if matches!(p.phase, Phase::Closing | Phase::Gone) {
            return false;
        }
        let code = reason.close_code().unwrap_or(CloseCode::ServerError);
        let text = msg.unwrap_or_else(|| text(reason.default_text()));
        p.phase = Phase::Closing;
        p.ping_due = false;
        p.pong = None;
        p.close = Some(PendingClose {
            code,
            text,
            push_pending: true,
            ws_pending: p.transport == Transport::WebSocket,
        });
        p.reason = Some(reason);
        p.reason_reported = false;
        let conn = p.conn;
        self.detach(conn);
        match reason {
            CloseReason::Protocol(_) => {
                self.stats.protocol_errors = self.stats.protocol_errors.saturating_add(1);
            }
            CloseReason::HeartbeatTimeout => {
                self.stats.heartbeat_timeouts = self.stats.heartbeat_timeouts.saturating_add(1);
            }
            CloseReason::AuthTimeout => {
                self.stats.auth_timeouts = self.stats.auth_timeouts.saturating_add(1);
            }
            _ => {}
        }
        self.tx_dirty = true;
        self.ev_dirty = true;
        true
    }

    /// The session of `conn` (if any) loses its live connection but stays until it expires
    fn detach(&mut self, conn: C) {
        for s in self.sessions.iter_mut() {
            if s.conn == Some(conn) {
                s.conn = None;
            }
        }
    }

    /// The transport of peer `idx` is gone: drop its frames, report `reason` unless a close
    /// reason was already set
    fn transport_gone(&mut self, idx: usize, reason: CloseReason) {
        let Some(p) = self.peers.get_mut(idx) else {
            return;
        };
        if p.phase == Phase::Gone {
            return;
        }
        if p.phase != Phase::Closing {
            p.reason = Some(reason);
            p.reason_reported = false;
        }
        p.phase = Phase::Gone;
        p.resp = None;
        p.echo = None;
        p.pong = None;
        p.ping_due = false;
        p.close = None;
        let conn = p.conn;
        self.detach(conn);
        self.ev_dirty = true;
    }

    fn protocol_error(&mut self, idx: usize, e: ProtocolError) {
        self.begin_close(idx, CloseReason::Protocol(e), None);
    }

    // -----------------------------------------------------------------------------------------
    // Input dispatch
    // -----------------------------------------------------------------------------------------

    fn dispatch<'a>(
        &mut self,
        idx: usize,
        now: Instant,
        packet: Packet<'a>,
        consumed: usize,
    ) -> Result<Received<App<'a>>, InputError> {
        match self.peers[idx].phase {
            Phase::AwaitHandshake | Phase::AwaitAuth => {
                Ok(self.first_packet(idx, now, packet, consumed))
            }
            Phase::Authenticated => self.authenticated_packet(idx, now, packet, consumed),
            Phase::Pending(_) => Err(InputError::AuthPending),
            Phase::Closing | Phase::Gone => Ok(Received::consumed(consumed)),
        }
    }

    fn mark_rx(&mut self, idx: usize, now: Instant) {
        self.peers[idx].last_rx = now;
        self.stats.packets_received = self.stats.packets_received.saturating_add(1);
    }

    fn first_packet<'a>(
        &mut self,
        idx: usize,
        now: Instant,
        packet: Packet<'a>,
        consumed: usize,
    ) -> Received<App<'a>> {
        self.mark_rx(idx, now);
        let h = packet.header;
        let Kind::Request { request_id, .. } = h.kind else {
            self.begin_close(idx, CloseReason::NotAuthenticated, None);
            return Received::consumed(consumed);
        };
        match h.cmd {
            CMD_AUTH | CMD_RECONNECT if h.gzip => {
                self.protocol_error(idx, ProtocolError::CompressedControl);
                Received::consumed(consumed)
            }
            CMD_AUTH => match AuthRequest::decode(packet.body) {
                Ok(req) => {
                    self.peers[idx].phase = Phase::Pending(Pending::Auth { request_id });
                    Received::with_app(
                        consumed,
                        App::Auth {
                            request_id,
                            token: req.token,
                            metadata: req.metadata,
                        },
                    )
                }
                Err(e) => {
                    self.protocol_error(idx, ProtocolError::BadControlBody(e));
                    Received::consumed(consumed)
                }
            },
            CMD_RECONNECT => match ReconnectRequest::decode(packet.body) {
                Ok(req) => {
                    self.purge_expired();
                    match self.lookup_session(req.session_id) {
                        Some(i) => {
                            let s = &self.sessions[i];
                            let (generation, expires) = (s.generation, s.expires);
                            self.peers[idx].phase = Phase::Pending(Pending::Reconnect {
                                request_id,
                                generation,
                            });
                            Received::with_app(
                                consumed,
                                App::Reconnect {
                                    request_id,
                                    session_id: req.session_id,
                                    expires,
                                    metadata: req.metadata,
                                },
                            )
                        }
                        None => {
                            self.stats.reconnects_rejected =
                                self.stats.reconnects_rejected.saturating_add(1);
                            self.reject_first(
                                idx,
                                CMD_RECONNECT,
                                request_id,
                                CloseReason::SessionUnknown,
                            );
                            Received::consumed(consumed)
                        }
                    }
                }
                Err(e) => {
                    self.protocol_error(idx, ProtocolError::BadControlBody(e));
                    Received::consumed(consumed)
                }
            },
            cmd => {
                self.reject_first(idx, cmd, request_id, CloseReason::NotAuthenticated);
                Received::consumed(consumed)
            }
        }
    }

    /// Status 5 + `Error{401}` response, then close with `reason`
    fn reject_first(&mut self, idx: usize, cmd: u8, request_id: u32, reason: CloseReason) {
        self.peers[idx].resp = Some(CtlResponse {
            cmd,
            request_id,
            status: Status::Unauthenticated,
            body: CtlBody::Error {
                code: ERROR_CODE_UNAUTHENTICATED,
                msg: text(reason.default_text()),
            },
        });
        self.begin_close(idx, reason, None);
    }

    fn authenticated_packet<'a>(
        &mut self,
        idx: usize,
        now: Instant,
        packet: Packet<'a>,
        consumed: usize,
    ) -> Result<Received<App<'a>>, InputError> {
        let h = packet.header;
        let body = packet.body;
        let app = match h.kind {
            Kind::Request {
                request_id,
                timeout_ms,
            } => match h.cmd {
                CMD_HEARTBEAT if body.len() <= MAX_ECHO_LEN => {
                    let p = &mut self.peers[idx];
                    if p.echo.is_some() {
                        return Err(InputError::Busy);
                    }
                    let mut copy = Vec::new();
                    // cannot fail: body.len() <= MAX_ECHO_LEN
                    let _ = copy.extend_from_slice(body);
                    p.echo = Some(Echo {
                        request_id,
                        gzip: h.gzip,
                        body: copy,
                    });
                    self.tx_dirty = true;
                    self.stats.heartbeats_echoed = self.stats.heartbeats_echoed.saturating_add(1);
                    None
                }
                CMD_HEARTBEAT => Some(App::HeartbeatEcho {
                    request_id,
                    body,
                    gzip: h.gzip,
                }),
                CMD_CLOSE | CMD_AUTH | CMD_RECONNECT => {
                    let p = &mut self.peers[idx];
                    if p.resp.is_some() {
                        return Err(InputError::Busy);
                    }
                    p.resp = Some(CtlResponse {
                        cmd: h.cmd,
                        request_id,
                        status: Status::BadRequest,
                        body: CtlBody::Error {
                            code: ERROR_CODE_BAD_REQUEST,
                            msg: text("unexpected control command"),
                        },
                    });
                    self.tx_dirty = true;
                    None
                }
                cmd => Some(App::Request {
                    request_id,
                    cmd,
                    timeout_ms: self.effective_timeout(timeout_ms),
                    body,
                    gzip: h.gzip,
                    signature: packet.signature,
                }),
            },
            Kind::Response { request_id, status } if h.cmd > CMD_RECONNECT => Some(App::Response {
                request_id,
                cmd: h.cmd,
                status,
                body,
                gzip: h.gzip,
            }),
            Kind::Push if h.cmd > CMD_RECONNECT => Some(App::Push {
                cmd: h.cmd,
                body,
                gzip: h.gzip,
            }),
            Kind::Response { .. } if h.cmd == CMD_HEARTBEAT => None,
            Kind::Response { .. } | Kind::Push => {
                self.stats.ignored_packets = self.stats.ignored_packets.saturating_add(1);
                None
            }
        };
        self.mark_rx(idx, now);
        Ok(match app {
            Some(app) => Received::with_app(consumed, app),
            None => Received::consumed(consumed),
        })
    }

    fn effective_timeout(&self, timeout_ms: u16) -> u16 {
        match timeout_ms {
            0 => self.config.default_request_timeout_ms,
            t => t.min(MAX_REQUEST_TIMEOUT_MS),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Output
    // -----------------------------------------------------------------------------------------

    /// Next frame of peer `idx`, written into `buf`; the slot is cleared only on success
    fn emit_peer(
        &mut self,
        idx: usize,
        buf: &mut [u8],
    ) -> Result<Option<Transmit<C>>, BufferTooSmall> {
        let wall = self.wall_clock_ms();
        let p = &mut self.peers[idx];
        let to = p.conn;
        let packet_kind = p.packet_kind();
        let (len, kind) = if let Some(r) = &p.resp {
            let len = r.emit(buf)?;
            p.resp = None;
            (len, packet_kind)
        } else if let Some(e) = &p.echo {
            let len = Packet::response(CMD_HEARTBEAT, e.request_id, Status::Success, &e.body)
                .with_gzip(e.gzip)
                .emit(buf)?;
            p.echo = None;
            (len, packet_kind)
        } else if let Some(payload) = &p.pong {
            let len = emit_raw(payload, buf)?;
            p.pong = None;
            (len, FrameKind::WsPong)
        } else if p.ping_due {
            let len = Heartbeat::new(wall, None).encode(buf)?;
            p.ping_due = false;
            self.stats.ws_pings_sent = self.stats.ws_pings_sent.saturating_add(1);
            (len, FrameKind::WsPing)
        } else if let Some(c) = &mut p.close {
            if c.push_pending {
                let len = emit_control(Kind::Push, CMD_CLOSE, &Close::new(c.code, &c.text), buf)?;
                c.push_pending = false;
                (len, packet_kind)
            } else if c.ws_pending {
                let len = emit_raw(c.text.as_bytes(), buf)?;
                c.ws_pending = false;
                (len, FrameKind::WsClose(ws_close_code(c.code)))
            } else {
                return Ok(None);
            }
        } else {
            return Ok(None);
        };
        if p.phase == Phase::Closing {
            self.ev_dirty = true;
        }
        self.stats.frames_sent = self.stats.frames_sent.saturating_add(1);
        Ok(Some(Transmit { to, len, kind }))
    }
}

fn millis_i64(t: Instant) -> i64 {
    i64::try_from(t.as_millis()).unwrap_or(i64::MAX)
}

fn session_string(id: &str) -> Result<String<MAX_SESSION_ID_LEN>, CommandError> {
    if id.is_empty() {
        return Err(CommandError::EmptySessionId);
    }
    let mut s = String::new();
    s.push_str(id)
        .map_err(|_| CommandError::SessionIdTooLong { len: id.len() })?;
    Ok(s)
}

impl<C: Copy + Eq, const PEERS: usize, const SESSIONS: usize> Machine
    for Server<C, PEERS, SESSIONS>
{
    type Peer = C;
    type Event = ServerEvent<C>;
    type App<'a> = App<'a>;
    type InputError = InputError;

    /// Feed the buffered bytes of a TCP connection (one handshake or packet per call) or one
    /// whole WebSocket binary message
    ///
    /// TCP: partial frames are left in the caller's buffer ([`Received::needed`]). Input of a
    /// closing connection is consumed and ignored.
    fn handle_input<'a>(
        &mut self,
        now: Instant,
        from: C,
        data: &'a [u8],
    ) -> Result<Received<App<'a>>, InputError> {
        let now = self.clock.update(now);
        let idx = self.find(from).ok_or(InputError::UnknownConn)?;
        let p = &self.peers[idx];
        match p.phase {
            Phase::Closing | Phase::Gone => return Ok(Received::consumed(data.len())),
            Phase::Pending(_) => return Err(InputError::AuthPending),
            _ => {}
        }
        match p.transport {
            Transport::Tcp => {
                let mut deframer = p.deframer;
                match deframer.decode(data) {
                    Ok(Frame::Need(n)) => Ok(Received::need(n)),
                    Ok(Frame::Handshake(h, n)) => {
                        let p = &mut self.peers[idx];
                        p.deframer = deframer;
                        p.handshake = Some(h);
                        p.phase = Phase::AwaitAuth;
                        p.last_rx = now;
                        Ok(Received::consumed(n))
                    }
                    Ok(Frame::Packet(packet, n)) => self.dispatch(idx, now, packet, n),
                    Err(e) => {
                        self.protocol_error(idx, e.into());
                        Ok(Received::consumed(data.len()))
                    }
                }
            }
            Transport::WebSocket => match decode_message(data, self.config.max_body) {
                Ok((packet, trailing)) => {
                    let r = self.dispatch(idx, now, packet, data.len());
                    if trailing > 0 && r.is_ok() {
                        self.stats.trailing_bytes = self.stats.trailing_bytes.saturating_add(1);
                    }
                    r
                }
                Err(e) => {
                    self.protocol_error(idx, e.into());
                    Ok(Received::consumed(data.len()))
                }
            },
        }
    }

    /// WebSocket Ping (answered with a Pong, liveness), Pong (liveness), Close (transport gone)
    fn handle_frame(&mut self, now: Instant, from: C, kind: FrameKind, payload: &[u8]) {
        let now = self.clock.update(now);
        let Some(idx) = self.find(from) else { return };
        let p = &mut self.peers[idx];
        if p.transport != Transport::WebSocket || p.phase == Phase::Gone {
            return;
        }
        match kind {
            FrameKind::WsPing => {
                p.last_rx = now;
                self.stats.ws_pings_received = self.stats.ws_pings_received.saturating_add(1);
                if p.phase == Phase::Closing {
                    return;
                }
                match Vec::from_slice(payload) {
                    Ok(v) => {
                        p.pong = Some(v);
                        self.tx_dirty = true;
                    }
                    Err(_) => {
                        self.stats.ws_pings_oversized =
                            self.stats.ws_pings_oversized.saturating_add(1);
                    }
                }
            }
            FrameKind::WsPong => {
                p.last_rx = now;
                self.stats.ws_pongs_received = self.stats.ws_pongs_received.saturating_add(1);
            }
            FrameKind::WsClose(code) => self.transport_gone(idx, CloseReason::WsClosed(code)),
            FrameKind::Datagram | FrameKind::Stream | FrameKind::WsBinary => {}
        }
    }

    fn handle_closed(&mut self, now: Instant, from: C) {
        self.clock.update(now);
        if let Some(idx) = self.find(from) {
            self.transport_gone(idx, CloseReason::TransportClosed);
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock.update(now);
        let interval = self.ping_interval();
        let hb = self.config.heartbeat_timeout;
        for i in 0..self.peers.len() {
            let p = &self.peers[i];
            let expired = match p.phase {
                Phase::AwaitHandshake | Phase::AwaitAuth | Phase::Pending(_) => {
                    (now >= p.auth_deadline).then_some(CloseReason::AuthTimeout)
                }
                Phase::Authenticated => {
                    (now >= p.last_rx + hb).then_some(CloseReason::HeartbeatTimeout)
                }
                Phase::Closing | Phase::Gone => continue,
            };
            if let Some(reason) = expired {
                self.begin_close(i, reason, None);
                continue;
            }
            let p = &mut self.peers[i];
            if p.transport == Transport::WebSocket && now >= p.next_ping {
                p.ping_due = true;
                p.next_ping = now + interval;
                self.tx_dirty = true;
            }
        }
    }

    fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<Transmit<C>>, BufferTooSmall> {
        self.clock.update(now);
        if !self.tx_dirty {
            return Ok(None);
        }
        let n = self.peers.len();
        for k in 0..n {
            let i = (self.tx_cursor.wrapping_add(k)) % n;
            if let Some(t) = self.emit_peer(i, buf)? {
                self.tx_cursor = (i + 1) % n;
                return Ok(Some(t));
            }
        }
        self.tx_dirty = false;
        Ok(None)
    }

    fn poll_event(&mut self) -> Option<ServerEvent<C>> {
        if !self.ev_dirty {
            return None;
        }
        let mut i = 0;
        while let Some(p) = self.peers.get_mut(i) {
            if let Some(ev) = p.announce.take() {
                return Some(ev);
            }
            if let (Some(reason), false) = (p.reason, p.reason_reported) {
                p.reason_reported = true;
                return Some(ServerEvent::PeerClosed {
                    conn: p.conn,
                    reason,
                });
            }
            match p.phase {
                Phase::Closing if p.flushed() => {
                    let conn = p.conn;
                    self.peers.swap_remove(i);
                    return Some(ServerEvent::Disconnect { conn });
                }
                Phase::Gone => {
                    self.peers.swap_remove(i);
                }
                _ => i += 1,
            }
        }
        self.ev_dirty = false;
        None
    }

    /// Earliest auth deadline, heartbeat deadline or WS ping time over all connections (`O(PEERS)`)
    fn poll_timeout(&self) -> Option<Instant> {
        let hb = self.config.heartbeat_timeout;
        self.peers
            .iter()
            .filter_map(|p| {
                let d = match p.phase {
                    Phase::AwaitHandshake | Phase::AwaitAuth | Phase::Pending(_) => p.auth_deadline,
                    Phase::Authenticated => p.last_rx + hb,
                    Phase::Closing | Phase::Gone => return None,
                };
                Some(match p.transport {
                    Transport::WebSocket => d.min(p.next_ping),
                    Transport::Tcp => d,
                })
            })
            .min()
    }
}
