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
//!   [`Server::respond`] (or [`Server::send`] to keep the gzip flag). A heartbeat that arrives
//!   while the slot still holds an unsent echo (two pipelined in one read) is handed over the
//!   same way, so input is never refused and no echo is lost.
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
//! passed to the application ([`App::Response`], [`App::Push`]). Close, Auth or Reconnect
//! *requests* on an authenticated connection are answered with status 3 (BadRequest) and
//! `Error{400, "unexpected control command"}`; the connection stays up (a further one arriving
//! before that answer was sent is dropped and counted). Gzip-compressed business bodies are
//! passed through with their flag; the machine never inflates.
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
//! Memory is fixed by the const generics: on x86_64 a connection slot takes about 540 bytes (the
//! bounded response, echo, pong and close slots above) and a session entry about 100, so
//! `Server<u32, 16, 64>` is about 15 KB.
//!
//! Connections are found by a linear scan over `PEERS` (fine for the tens of connections a
//! `no_std` server holds). `poll_timeout` and `handle_timeout` are
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
//! use tether_net::longport::deframe::Transport;
//! use tether_net::longport::server::{App, InputError, Server, ServerConfig, ServerEvent};
//! use tether_net::longport::control::SessionGrant;
//! use tether_net::{Instant, Machine};
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
//!         Err(InputError::AuthPending) => break,
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
    /// A heartbeat request the machine cannot echo itself (body over [`MAX_ECHO_LEN`], or the
    /// echo slot still holds an unsent echo): echo `body` with [`Server::respond`] (status 0,
    /// cmd 1, same id; use [`Server::send`] with `with_gzip(gzip)` to keep the flag)
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
///
/// For [`InputError::AuthPending`] the caller keeps the bytes (TCP: in its stream buffer;
/// WebSocket: the message) and feeds them again later. Nothing about the connection changed,
/// liveness included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum InputError {
    /// The connection id is not registered
    UnknownConn,
    /// An auth decision is pending for this connection; feed the input again after
    /// `accept_*`/`reject_*` (or after the auth deadline closed the connection)
    AuthPending,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InputError::UnknownConn => "unknown connection",
            InputError::AuthPending => "auth decision pending",
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
    /// A rejection must carry a non-success status (a status-0 reply would read as a login)
    SuccessStatus,
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
            CommandError::SuccessStatus => f.write_str("a rejection cannot use status 0 (success)"),
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
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
enum Pending {
    Auth { request_id: u32 },
    Reconnect { request_id: u32, generation: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
enum Phase {
    AwaitHandshake,
    AwaitAuth,
    Pending(Pending),
    Authenticated,
    Closing,
    Gone,
}

#[derive(Debug, Clone)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
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
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
struct CtlResponse {
    cmd: u8,
    request_id: u32,
    status: Status,
    body: CtlBody,
}

#[derive(Debug, Clone)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
struct Echo {
    request_id: u32,
    gzip: bool,
    body: Vec<u8, MAX_ECHO_LEN>,
}

#[derive(Debug, Clone)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
struct PendingClose {
    code: CloseCode,
    text: Text,
    push_pending: bool,
    ws_pending: bool,
}

#[derive(Debug, Clone)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
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
                .is_none_or(|c| !c.push_pending && !c.ws_pending)
    }

    fn packet_kind(&self) -> FrameKind {
        match self.transport {
            Transport::Tcp => FrameKind::Stream,
            Transport::WebSocket => FrameKind::WsBinary,
        }
    }
}

#[derive(Debug, Clone)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
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
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
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
    /// The next deadline in machine time (see `time::Clock`)
    fn next_deadline(&self) -> Option<Instant> {
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
        } else if self.peers.is_full() {
            Some(ConnectError::TableFull)
        } else if self.unauthenticated() >= self.config.max_unauthenticated {
            Some(ConnectError::TooManyUnauthenticated)
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
        let now = self.clock.now();
        self.finish_accept(now, conn, CMD_AUTH, request_id, id, grant);
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
        let now = self.clock.now();
        self.finish_accept(now, conn, CMD_RECONNECT, request_id, id, grant);
        self.stats.reconnects_accepted = self.stats.reconnects_accepted.saturating_add(1);
        Ok(())
    }

    /// Answer an accepted Auth/Reconnect; liveness starts now
    ///
    /// Input is refused while the application decides (`InputError::AuthPending`), so the peer
    /// could not prove liveness meanwhile: the heartbeat deadline counts from the decision, not
    /// from the Auth packet (found by the `longport_server` fuzz target: a decision slower than
    /// `heartbeat_timeout` left the deadline in the past and closed the new session at once).
    fn finish_accept(
        &mut self,
        now: Instant,
        conn: C,
        cmd: u8,
        request_id: u32,
        session_id: String<MAX_SESSION_ID_LEN>,
        grant: SessionGrant<'_>,
    ) {
        let Some(idx) = self.find(conn) else { return };
        let p = &mut self.peers[idx];
        p.last_rx = p.last_rx.max(now);
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
        if status.is_success() {
            return Err(CommandError::SuccessStatus);
        }
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
                CMD_HEARTBEAT if body.len() <= MAX_ECHO_LEN && self.peers[idx].echo.is_none() => {
                    let p = &mut self.peers[idx];
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
                        // a stray control request while the previous answer is unsent: dropped
                        self.stats.ignored_packets = self.stats.ignored_packets.saturating_add(1);
                        self.mark_rx(idx, now);
                        return Ok(Received::consumed(consumed));
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
    type Error = InputError;

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
        self.next_deadline().map(|t| self.clock.to_caller(t))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::vec::Vec as StdVec;

    type S = Server<u32, 4, 4>;
    type Out = StdVec<(u32, FrameKind, StdVec<u8>)>;

    const FAR: i64 = 4_000_000_000_000;

    fn ms(v: u64) -> Instant {
        Instant::from_millis(v)
    }

    fn hex(s: &str) -> StdVec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    fn server() -> S {
        S::new(ServerConfig::default())
    }

    fn encode<'b, B: Body<'b>>(b: &B) -> StdVec<u8> {
        let mut v = std::vec![0u8; b.encoded_len()];
        let n = b.encode(&mut v).unwrap();
        assert_eq!(n, v.len());
        v
    }

    fn packet(p: &Packet<'_>) -> StdVec<u8> {
        let mut v = std::vec![0u8; p.buffer_len()];
        let n = p.emit(&mut v).unwrap();
        assert_eq!(n, v.len());
        v
    }

    fn auth_req(rid: u32, token: &str) -> StdVec<u8> {
        let body = encode(&AuthRequest::new(token, Metadata::EMPTY));
        packet(&Packet::request(CMD_AUTH, rid, 5000, &body))
    }

    fn reconnect_req(rid: u32, sid: &str) -> StdVec<u8> {
        let body = encode(&ReconnectRequest::new(sid, Metadata::EMPTY));
        packet(&Packet::request(CMD_RECONNECT, rid, 5000, &body))
    }

    fn close_push(code: CloseCode, reason: &str) -> StdVec<u8> {
        let body = encode(&Close::new(code, reason));
        packet(&Packet::push(CMD_CLOSE, &body))
    }

    fn error_resp(cmd: u8, rid: u32, status: Status, code: u64, msg: &str) -> StdVec<u8> {
        let body = encode(&ErrorBody::new(code, msg));
        packet(&Packet::response(cmd, rid, status, &body))
    }

    fn grant(sid: &str, expires: i64) -> SessionGrant<'_> {
        SessionGrant {
            session_id: sid,
            expires,
            limit: 0,
            online: 0,
        }
    }

    fn drain(s: &mut S, now: Instant) -> Out {
        let mut out = StdVec::new();
        let mut buf = [0u8; 512];
        while let Some(t) = s.poll_transmit(now, &mut buf).unwrap() {
            out.push((t.to, t.kind, buf[..t.len].to_vec()));
        }
        out
    }

    fn events(s: &mut S) -> StdVec<ServerEvent<u32>> {
        core::iter::from_fn(|| s.poll_event()).collect()
    }

    /// Connected (TCP: handshake sent) and authenticated as `sid`, output and events drained
    fn authed(s: &mut S, now: Instant, conn: u32, transport: Transport, sid: &str) {
        s.handle_connected(now, conn, transport).unwrap();
        if transport == Transport::Tcp {
            let r = s.handle_input(now, conn, &[0x11, 0x09]).unwrap();
            assert_eq!(r.bytes_consumed(), 2);
        }
        let req = auth_req(1, "tok");
        let r = s.handle_input(now, conn, &req).unwrap();
        assert!(matches!(r.app(), Some(App::Auth { token: "tok", .. })));
        s.accept_auth(now, conn, grant(sid, FAR)).unwrap();
        let out = drain(s, now);
        assert_eq!(out.len(), 1);
        assert_eq!(
            events(s),
            [ServerEvent::PeerAuthenticated { conn, expires: FAR }]
        );
    }

    fn kind_of(t: Transport) -> FrameKind {
        match t {
            Transport::Tcp => FrameKind::Stream,
            Transport::WebSocket => FrameKind::WsBinary,
        }
    }

    #[test]
    fn ct_eq_compares_contents_and_lengths() {
        assert!(ct_eq(b"s1", b"s1"));
        assert!(!ct_eq(b"s1", b"s2"));
        assert!(!ct_eq(b"s1", b"s12"));
        assert!(ct_eq(b"", b""));
    }

    #[test]
    fn tcp_handshake_and_pipelined_auth_in_one_read() {
        let mut s = server();
        s.handle_connected(ms(0), 1, Transport::Tcp).unwrap();
        assert_eq!(s.state(1), Some(PeerState::AwaitHandshake));
        // spec V6, pipelined form
        let buf = hex("11 09 01 02 00 00 00 01 13 88 00 00 05 0a 03 61 62 63");
        let r = s.handle_input(ms(1), 1, &buf).unwrap();
        assert_eq!((r.bytes_consumed(), r.needed(), r.app()), (2, None, None));
        assert_eq!(s.handshake(1), Some(Handshake::OPENAPI));
        let r = s.handle_input(ms(1), 1, &buf[2..]).unwrap();
        assert_eq!(r.bytes_consumed(), 16);
        match r.into_app() {
            Some(App::Auth {
                request_id,
                token,
                metadata,
            }) => {
                assert_eq!((request_id, token, metadata.len()), (1, "abc", 0));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(s.state(1), Some(PeerState::AuthPending));
        // nothing is sent before the application decides
        assert!(drain(&mut s, ms(1)).is_empty());
        assert!(events(&mut s).is_empty());
        // further input waits for the decision, unconsumed
        assert_eq!(
            s.handle_input(ms(1), 1, &hex("01 01 00")),
            Err(InputError::AuthPending)
        );
    }

    #[test]
    fn tcp_byte_at_a_time() {
        let mut s = server();
        s.handle_connected(ms(0), 1, Transport::Tcp).unwrap();
        let stream = hex("11 09 01 02 00 00 00 01 13 88 00 00 05 0a 03 61 62 63");
        let mut buf: StdVec<u8> = StdVec::new();
        let mut needs = StdVec::new();
        let mut token = None;
        for &b in &stream {
            buf.push(b);
            loop {
                let r = s.handle_input(ms(0), 1, &buf).unwrap();
                if let Some(n) = r.needed() {
                    assert_eq!(r.bytes_consumed(), 0);
                    needs.push(n);
                    break;
                }
                if let Some(App::Auth { token: t, .. }) = r.app() {
                    token = Some(std::string::String::from(*t));
                }
                buf.drain(..r.bytes_consumed());
                if buf.is_empty() {
                    break;
                }
            }
        }
        assert_eq!(token.as_deref(), Some("abc"));
        assert!(buf.is_empty());
        // handshake needs 2; the packet needs 1 byte for its type, 11 for the header, 16 in all
        assert_eq!(needs[0], 2);
        assert!(needs[1..11].iter().all(|&n| n == 11));
        assert!(needs[11..].iter().all(|&n| n == 16));
        assert_eq!(needs.len(), 1 + 15);
    }

    #[test]
    fn bad_handshake_closes_with_unpack_error() {
        let mut s = server();
        s.handle_connected(ms(0), 1, Transport::Tcp).unwrap();
        let bad = hex("12 09 01 02");
        let r = s.handle_input(ms(0), 1, &bad).unwrap();
        assert_eq!(r.bytes_consumed(), 4);
        let out = drain(&mut s, ms(0));
        assert_eq!(
            out,
            [(
                1,
                FrameKind::Stream,
                close_push(CloseCode::UnpackError, "unpack error")
            )]
        );
        assert_eq!(
            events(&mut s),
            [
                ServerEvent::PeerClosed {
                    conn: 1,
                    reason: CloseReason::Protocol(ProtocolError::Handshake(2))
                },
                ServerEvent::Disconnect { conn: 1 }
            ]
        );
        assert_eq!(s.connections(), 0);
        assert_eq!(s.stats().protocol_errors, 1);
    }

    #[test]
    fn non_auth_first_packet_gets_status_5_and_auth_error_close() {
        for transport in [Transport::Tcp, Transport::WebSocket] {
            let mut s = server();
            s.handle_connected(ms(0), 1, transport).unwrap();
            if transport == Transport::Tcp {
                let _ = s.handle_input(ms(0), 1, &[0x11, 0x09]).unwrap();
            }
            // spec V3: a heartbeat request as first packet
            let v3 = hex("01 01 00 00 00 01 00 00 00 00 07 08 80 d0 95 ff bc 31");
            let r = s.handle_input(ms(0), 1, &v3).unwrap();
            assert_eq!((r.bytes_consumed(), r.app()), (18, None));
            // later input is swallowed
            let r = s.handle_input(ms(0), 1, &v3).unwrap();
            assert_eq!(r.bytes_consumed(), 18);
            let out = drain(&mut s, ms(0));
            let k = kind_of(transport);
            let mut want = std::vec![
                (
                    1,
                    k,
                    error_resp(1, 1, Status::Unauthenticated, 401, "not authenticated")
                ),
                (1, k, close_push(CloseCode::AuthError, "not authenticated")),
            ];
            if transport == Transport::WebSocket {
                want.push((1, FrameKind::WsClose(1008), b"not authenticated".to_vec()));
            }
            assert_eq!(out, want);
            assert_eq!(out[0].2[6], 5, "status byte");
            assert_eq!(
                events(&mut s),
                [
                    ServerEvent::PeerClosed {
                        conn: 1,
                        reason: CloseReason::NotAuthenticated
                    },
                    ServerEvent::Disconnect { conn: 1 }
                ]
            );
        }
    }

    #[test]
    fn non_request_first_packet_is_closed_without_response() {
        let mut s = server();
        s.handle_connected(ms(0), 1, Transport::WebSocket).unwrap();
        let _ = s.handle_input(ms(0), 1, &hex("03 65 00 00 00")).unwrap();
        let out = drain(&mut s, ms(0));
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0].2,
            close_push(CloseCode::AuthError, "not authenticated")
        );
        assert_eq!(out[1].1, FrameKind::WsClose(1008));
    }

    #[test]
    fn auth_accept_response_bytes_match_v7() {
        let mut s = server();
        s.handle_connected(ms(0), 1, Transport::Tcp).unwrap();
        let _ = s.handle_input(ms(0), 1, &[0x11, 0x09]).unwrap();
        let _ = s.handle_input(ms(0), 1, &auth_req(1, "abc")).unwrap();
        s.accept_auth(ms(5), 1, grant("s1", 1_700_086_400_000))
            .unwrap();
        let out = drain(&mut s, ms(5));
        assert_eq!(
            out,
            [(
                1,
                FrameKind::Stream,
                hex("02 02 00 00 00 01 00 00 00 0b 0a 02 73 31 10 80 88 af a8 bd 31")
            )]
        );
        assert_eq!(s.state(1), Some(PeerState::Authenticated));
        assert_eq!(s.session_id(1), Some("s1"));
        assert_eq!(s.stats().auths_accepted, 1);

        // limit/online variant (25 bytes)
        let mut s = server();
        s.handle_connected(ms(0), 2, Transport::WebSocket).unwrap();
        let _ = s.handle_input(ms(0), 2, &auth_req(1, "abc")).unwrap();
        let g = SessionGrant {
            session_id: "s1",
            expires: 1_700_086_400_000,
            limit: 10,
            online: 1,
        };
        s.accept_auth(ms(0), 2, g).unwrap();
        assert_eq!(
            drain(&mut s, ms(0)),
            [(
                2,
                FrameKind::WsBinary,
                hex("02 02 00 00 00 01 00 00 00 0f 0a 02 73 31 10 80 88 af a8 bd 31 18 0a 20 01")
            )]
        );
        // a second decision is refused
        assert_eq!(s.accept_auth(ms(0), 2, g), Err(CommandError::NotPending));
    }

    #[test]
    fn accept_validates_session_id() {
        let mut s = server();
        s.handle_connected(ms(0), 1, Transport::WebSocket).unwrap();
        let _ = s.handle_input(ms(0), 1, &auth_req(1, "abc")).unwrap();
        assert_eq!(
            s.accept_auth(ms(0), 1, grant("", FAR)),
            Err(CommandError::EmptySessionId)
        );
        let long = "x".repeat(MAX_SESSION_ID_LEN + 1);
        assert_eq!(
            s.accept_auth(ms(0), 1, grant(&long, FAR)),
            Err(CommandError::SessionIdTooLong { len: 65 })
        );
        assert_eq!(s.state(1), Some(PeerState::AuthPending));
        assert_eq!(
            s.accept_auth(ms(0), 9, grant("s", FAR)),
            Err(CommandError::UnknownConn)
        );
        assert_eq!(
            s.accept_reconnect(ms(0), 1, grant("s", FAR)),
            Err(CommandError::NotPending)
        );
        assert_eq!(
            s.reject_reconnect(ms(0), 1, Status::Unauthenticated, 401, "no"),
            Err(CommandError::NotPending)
        );
        assert_eq!(s.state(1), Some(PeerState::AuthPending));
    }

    #[test]
    fn auth_reject_sends_error_then_close() {
        let mut s = server();
        s.handle_connected(ms(0), 1, Transport::WebSocket).unwrap();
        let _ = s.handle_input(ms(0), 1, &auth_req(1, "abc")).unwrap();
        s.reject_auth(
            ms(0),
            1,
            Status::PermissionDenied,
            403,
            "connections limitation is hit",
        )
        .unwrap();
        let out = drain(&mut s, ms(0));
        // spec V10, quota rejection (44 bytes)
        let v10 = hex(
            "02 02 00 00 00 01 06 00 00 22 08 93 03 12 1d 63 6f 6e 6e 65 63 74 69 6f 6e 73 20 \
             6c 69 6d 69 74 61 74 69 6f 6e 20 69 73 20 68 69 74",
        );
        assert_eq!(
            out,
            [
                (1, FrameKind::WsBinary, v10),
                (
                    1,
                    FrameKind::WsBinary,
                    close_push(CloseCode::AuthError, "connections limitation is hit")
                ),
                (
                    1,
                    FrameKind::WsClose(1008),
                    b"connections limitation is hit".to_vec()
                ),
            ]
        );
        assert_eq!(
            events(&mut s),
            [
                ServerEvent::PeerClosed {
                    conn: 1,
                    reason: CloseReason::AuthRejected(Status::PermissionDenied)
                },
                ServerEvent::Disconnect { conn: 1 }
            ]
        );
        assert_eq!(s.stats().auths_rejected, 1);
        assert_eq!(s.sessions(), 0);
    }

    #[test]
    fn reconnect_issues_new_session_id() {
        let mut s = server();
        authed(&mut s, ms(0), 1, Transport::Tcp, "s1");
        s.handle_closed(ms(10), 1);
        assert_eq!(
            events(&mut s),
            [ServerEvent::PeerClosed {
                conn: 1,
                reason: CloseReason::TransportClosed
            }]
        );
        assert_eq!(s.connections(), 0);
        assert_eq!(s.session_expires("s1"), Some(FAR));

        s.handle_connected(ms(20), 2, Transport::WebSocket).unwrap();
        // spec V8 request
        let v8 = hex("01 03 00 00 00 01 13 88 00 00 04 0a 02 73 31");
        let r = s.handle_input(ms(20), 2, &v8).unwrap();
        assert_eq!(
            r.into_app(),
            Some(App::Reconnect {
                request_id: 1,
                session_id: "s1",
                expires: FAR,
                metadata: Metadata::EMPTY
            })
        );
        s.accept_reconnect(ms(21), 2, grant("s2", 1_700_172_800_000))
            .unwrap();
        assert_eq!(
            drain(&mut s, ms(21)),
            [(
                2,
                FrameKind::WsBinary,
                hex("02 03 00 00 00 01 00 00 00 0b 0a 02 73 32 10 80 c0 c8 d1 bd 31")
            )]
        );
        assert_eq!(
            events(&mut s),
            [ServerEvent::PeerReconnected {
                conn: 2,
                expires: 1_700_172_800_000
            }]
        );
        assert_eq!(s.session_id(2), Some("s2"));
        assert_eq!(s.session_expires("s1"), None, "old session retired");
        assert_eq!(s.stats().reconnects_accepted, 1);
    }

    fn assert_sess_expired(s: &mut S, conn: u32, reason: CloseReason) {
        let out = drain(s, ms(0));
        assert_eq!(
            out,
            [
                (
                    conn,
                    FrameKind::Stream,
                    error_resp(3, 1, Status::Unauthenticated, 401, "session expired")
                ),
                (
                    conn,
                    FrameKind::Stream,
                    close_push(CloseCode::SessExpired, "session expired")
                ),
            ]
        );
        assert_eq!(
            events(s),
            [
                ServerEvent::PeerClosed { conn, reason },
                ServerEvent::Disconnect { conn }
            ]
        );
    }

    #[test]
    fn reconnect_with_unknown_or_expired_session_is_rejected() {
        let mut s = server();
        s.handle_connected(ms(0), 1, Transport::Tcp).unwrap();
        let _ = s.handle_input(ms(0), 1, &[0x11, 0x09]).unwrap();
        let req = reconnect_req(1, "nope");
        let r = s.handle_input(ms(0), 1, &req).unwrap();
        assert_eq!(r.app(), None, "the application is not involved");
        assert_sess_expired(&mut s, 1, CloseReason::SessionUnknown);

        // expired: wall clock says 2023-11-15, the session ended a second before
        let mut s = server();
        s.set_wall_clock(ms(0), 1_700_000_000_000);
        s.handle_connected(ms(0), 1, Transport::Tcp).unwrap();
        let _ = s.handle_input(ms(0), 1, &[0x11, 0x09]).unwrap();
        let _ = s.handle_input(ms(0), 1, &auth_req(1, "t")).unwrap();
        s.accept_auth(ms(0), 1, grant("s1", 1_700_000_060_000))
            .unwrap();
        let _ = drain(&mut s, ms(0));
        s.handle_closed(ms(0), 1);
        let _ = events(&mut s);
        // 61 s later the session has expired
        s.handle_connected(ms(61_000), 2, Transport::Tcp).unwrap();
        let _ = s.handle_input(ms(61_000), 2, &[0x11, 0x09]).unwrap();
        let req = reconnect_req(1, "s1");
        let r = s.handle_input(ms(61_000), 2, &req).unwrap();
        assert_eq!(r.app(), None);
        assert_sess_expired(&mut s, 2, CloseReason::SessionUnknown);
        assert_eq!(s.sessions(), 0, "expired session purged");
        assert_eq!(s.stats().reconnects_rejected, 1);
    }

    #[test]
    fn reconnect_rejected_by_application() {
        let mut s = server();
        authed(&mut s, ms(0), 1, Transport::Tcp, "s1");
        s.handle_closed(ms(0), 1);
        let _ = events(&mut s);
        s.handle_connected(ms(0), 2, Transport::Tcp).unwrap();
        let _ = s.handle_input(ms(0), 2, &[0x11, 0x09]).unwrap();
        let _ = s.handle_input(ms(0), 2, &reconnect_req(1, "s1")).unwrap();
        assert_eq!(
            s.reject_auth(ms(0), 2, Status::Unauthenticated, 401, "session expired"),
            Ok(())
        );
        assert_sess_expired(
            &mut s,
            2,
            CloseReason::ReconnectRejected(Status::Unauthenticated),
        );
        assert_eq!(s.session_expires("s1"), Some(FAR), "kept until it expires");
    }

    #[test]
    fn duplicate_session_closes_the_older_connection() {
        let mut s = server();
        authed(&mut s, ms(0), 1, Transport::WebSocket, "s1");
        s.handle_connected(ms(5), 2, Transport::Tcp).unwrap();
        let _ = s.handle_input(ms(5), 2, &[0x11, 0x09]).unwrap();
        let _ = s.handle_input(ms(5), 2, &reconnect_req(9, "s1")).unwrap();
        s.accept_reconnect(ms(6), 2, grant("s2", FAR)).unwrap();
        let out = drain(&mut s, ms(6));
        let mut to1: StdVec<_> = out.iter().filter(|t| t.0 == 1).cloned().collect();
        let to2: StdVec<_> = out.iter().filter(|t| t.0 == 2).collect();
        assert_eq!(to2.len(), 1);
        assert_eq!(
            to2[0].2[0], 0x02,
            "reconnect response to the new connection"
        );
        assert_eq!(
            to1.remove(0),
            (
                1,
                FrameKind::WsBinary,
                close_push(CloseCode::ConnectDuplicate, "connect duplicate")
            )
        );
        assert_eq!(
            to1,
            [(1, FrameKind::WsClose(1008), b"connect duplicate".to_vec())]
        );
        let evs = events(&mut s);
        assert!(evs.contains(&ServerEvent::PeerClosed {
            conn: 1,
            reason: CloseReason::Duplicate
        }));
        assert!(evs.contains(&ServerEvent::Disconnect { conn: 1 }));
        assert!(evs.contains(&ServerEvent::PeerReconnected {
            conn: 2,
            expires: FAR
        }));
        assert_eq!(s.state(2), Some(PeerState::Authenticated));
        assert_eq!(s.state(1), None);
        assert_eq!(s.stats().duplicates_closed, 1);
    }

    #[test]
    fn same_session_id_granted_twice_closes_older() {
        let mut s = server();
        authed(&mut s, ms(0), 1, Transport::Tcp, "dup");
        s.handle_connected(ms(0), 2, Transport::WebSocket).unwrap();
        let _ = s.handle_input(ms(0), 2, &auth_req(1, "t")).unwrap();
        s.accept_auth(ms(0), 2, grant("dup", FAR)).unwrap();
        let out = drain(&mut s, ms(0));
        assert!(out.contains(&(
            1,
            FrameKind::Stream,
            close_push(CloseCode::ConnectDuplicate, "connect duplicate")
        )));
        assert_eq!(s.session_id(2), Some("dup"));
        assert_eq!(s.sessions(), 1);
    }

    #[test]
    fn heartbeat_echo_matches_v3_v4() {
        let mut s = server();
        authed(&mut s, ms(0), 1, Transport::Tcp, "s1");
        let v3 = hex("01 01 00 00 00 01 00 00 00 00 07 08 80 d0 95 ff bc 31");
        let v4 = hex("02 01 00 00 00 01 00 00 00 07 08 80 d0 95 ff bc 31");
        let r = s.handle_input(ms(1), 1, &v3).unwrap();
        assert_eq!((r.bytes_consumed(), r.app()), (18, None));
        // the slot holds one echo: a second pipelined heartbeat goes to the application
        let v3b = hex("01 01 00 00 00 02 00 00 00 00 07 08 80 d0 95 ff bc 31");
        assert_eq!(
            s.handle_input(ms(1), 1, &v3b).unwrap().into_app(),
            Some(App::HeartbeatEcho {
                request_id: 2,
                body: &v3b[11..],
                gzip: false
            })
        );
        assert_eq!(drain(&mut s, ms(1)), [(1, FrameKind::Stream, v4.clone())]);
        let r = s.handle_input(ms(2), 1, &v3).unwrap();
        assert_eq!(r.bytes_consumed(), 18);
        assert_eq!(drain(&mut s, ms(2)), [(1, FrameKind::Stream, v4)]);
        assert_eq!(s.stats().heartbeats_echoed, 2);

        // gzip flag echoed (spec V12)
        let v12_body = hex(
            "1f 8b 08 00 00 00 00 00 00 ff 01 07 00 f8 ff 08 80 d0 95 ff bc 31 6d 3e 6e 14 07 00 00 00",
        );
        let req = packet(&Packet::request(CMD_HEARTBEAT, 1, 0, &v12_body).with_gzip(true));
        let _ = s.handle_input(ms(3), 1, &req).unwrap();
        let v12 = hex(
            "22 01 00 00 00 01 00 00 00 1e 1f 8b 08 00 00 00 00 00 00 ff 01 07 00 f8 ff 08 80 d0 \
             95 ff bc 31 6d 3e 6e 14 07 00 00 00",
        );
        assert_eq!(drain(&mut s, ms(3)), [(1, FrameKind::Stream, v12)]);
    }

    #[test]
    fn pipelined_stream_is_held_while_auth_pending_then_parsed_in_order() {
        let mut s = server();
        s.handle_connected(ms(0), 1, Transport::Tcp).unwrap();
        // handshake, auth, a business request and a heartbeat all in one read
        let mut stream = hex("11 09");
        stream.extend(auth_req(1, "abc"));
        stream.extend(packet(&Packet::request(11, 2, 1000, b"q")));
        stream.extend(hex("01 01 00 00 00 03 00 00 00 00 07 08 80 d0 95 ff bc 31"));
        let mut seen = StdVec::new();
        let mut feed = |s: &mut S, buf: &mut StdVec<u8>| -> Result<(), InputError> {
            while !buf.is_empty() {
                let r = s.handle_input(ms(1), 1, buf)?;
                match r.app() {
                    Some(App::Auth { request_id, .. }) => seen.push(("auth", *request_id)),
                    Some(App::Request { request_id, .. }) => seen.push(("req", *request_id)),
                    Some(other) => panic!("unexpected {other:?}"),
                    None => {}
                }
                if r.needed().is_some() {
                    break;
                }
                let n = r.bytes_consumed();
                buf.drain(..n);
            }
            Ok(())
        };
        assert_eq!(feed(&mut s, &mut stream), Err(InputError::AuthPending));
        assert_eq!(stream.len(), 12 + 18, "request and heartbeat held back");
        s.accept_auth(ms(1), 1, grant("s1", FAR)).unwrap();
        assert_eq!(feed(&mut s, &mut stream), Ok(()));
        assert!(stream.is_empty());
        assert_eq!(seen, [("auth", 1), ("req", 2)]);
        let out = drain(&mut s, ms(1));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].2[..2], [0x02, CMD_AUTH]);
        assert_eq!(
            out[1].2,
            hex("02 01 00 00 00 03 00 00 00 07 08 80 d0 95 ff bc 31")
        );
    }

    #[test]
    fn oversized_heartbeat_goes_to_the_application() {
        let mut s = server();
        authed(&mut s, ms(0), 1, Transport::Tcp, "s1");
        let body = [7u8; MAX_ECHO_LEN + 1];
        let req = packet(&Packet::request(CMD_HEARTBEAT, 42, 0, &body));
        let r = s.handle_input(ms(1), 1, &req).unwrap();
        assert_eq!(
            r.into_app(),
            Some(App::HeartbeatEcho {
                request_id: 42,
                body: &body,
                gzip: false
            })
        );
        let mut out = [0u8; 128];
        let t = s
            .respond(
                ms(1),
                1,
                42,
                CMD_HEARTBEAT,
                Status::Success,
                &body,
                &mut out,
            )
            .unwrap();
        assert_eq!(
            out[..t.len].to_vec(),
            packet(&Packet::response(CMD_HEARTBEAT, 42, Status::Success, &body))
        );
    }

    #[test]
    fn ws_ping_cadence_and_pong_liveness() {
        let mut s = server();
        s.set_wall_clock(ms(0), 1_700_000_000_000);
        authed(&mut s, ms(0), 1, Transport::WebSocket, "s1");
        assert_eq!(s.poll_timeout(), Some(ms(20_000)));
        s.handle_timeout(ms(19_999));
        assert!(drain(&mut s, ms(19_999)).is_empty());
        let mut pings = StdVec::new();
        let mut now = 20_000;
        while now <= 400_000 {
            assert_eq!(s.poll_timeout(), Some(ms(now)));
            s.handle_timeout(ms(now));
            for (to, kind, payload) in drain(&mut s, ms(now)) {
                assert_eq!((to, kind), (1, FrameKind::WsPing));
                let hb = Heartbeat::decode(&payload).unwrap();
                assert_eq!(hb.timestamp, 1_700_000_000_000 + now as i64);
                pings.push(now);
            }
            // the client answers with a Pong: liveness refreshed
            s.handle_frame(ms(now), 1, FrameKind::WsPong, &[]);
            now += 20_000;
        }
        let want: StdVec<u64> = (1..=20).map(|k| k * 20_000).collect();
        assert_eq!(pings, want);
        // 400 s > heartbeat timeout: the pongs kept the connection alive
        assert_eq!(s.state(1), Some(PeerState::Authenticated));
        assert_eq!(s.stats().ws_pings_sent, 20);
        assert_eq!(s.stats().ws_pongs_received, 20);
        // the client goes silent: pings continue until 150 s after the last pong
        let mut now = 420_000;
        loop {
            let next = s.poll_timeout().unwrap();
            assert_eq!(next, ms(now).min(ms(550_000)));
            s.handle_timeout(next);
            let out = drain(&mut s, next);
            if next == ms(550_000) {
                assert_eq!(
                    out,
                    [
                        (
                            1,
                            FrameKind::WsBinary,
                            close_push(CloseCode::HeartbeatTimeout, "heartbeat timeout")
                        ),
                        (1, FrameKind::WsClose(1000), b"heartbeat timeout".to_vec()),
                    ]
                );
                break;
            }
            assert_eq!(out.len(), 1);
            now += 20_000;
        }
        assert_eq!(s.stats().heartbeat_timeouts, 1);
    }

    #[test]
    fn ws_pings_start_before_auth_and_client_pings_get_pongs() {
        let mut s = server();
        let cfg = ServerConfig {
            auth_timeout: Duration::from_secs(60),
            ..ServerConfig::default()
        };
        s.config = cfg;
        s.handle_connected(ms(0), 1, Transport::WebSocket).unwrap();
        assert_eq!(s.poll_timeout(), Some(ms(20_000)));
        s.handle_timeout(ms(20_000));
        let out = drain(&mut s, ms(20_000));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1, FrameKind::WsPing);

        s.handle_frame(ms(20_001), 1, FrameKind::WsPing, b"one");
        s.handle_frame(ms(20_002), 1, FrameKind::WsPing, b"two");
        s.handle_frame(ms(20_003), 1, FrameKind::WsPing, &[0u8; 126]);
        assert_eq!(
            drain(&mut s, ms(20_003)),
            [(1, FrameKind::WsPong, b"two".to_vec())]
        );
        assert_eq!(s.stats().ws_pings_oversized, 1);
    }

    #[test]
    fn ws_close_from_client_ends_the_connection() {
        let mut s = server();
        authed(&mut s, ms(0), 1, Transport::WebSocket, "s1");
        s.handle_frame(ms(1), 1, FrameKind::WsClose(1000), b"bye");
        assert!(drain(&mut s, ms(1)).is_empty());
        assert_eq!(
            events(&mut s),
            [ServerEvent::PeerClosed {
                conn: 1,
                reason: CloseReason::WsClosed(1000)
            }]
        );
        assert_eq!(s.connections(), 0);
        assert_eq!(s.session_expires("s1"), Some(FAR));
        assert_eq!(
            s.handle_input(ms(2), 1, &[0x01]),
            Err(InputError::UnknownConn)
        );
    }

    #[test]
    fn heartbeat_timeout_closes() {
        let mut s = server();
        authed(&mut s, ms(0), 1, Transport::Tcp, "s1");
        let v3 = hex("01 01 00 00 00 01 00 00 00 00 07 08 80 d0 95 ff bc 31");
        let _ = s.handle_input(ms(60_000), 1, &v3).unwrap();
        let _ = drain(&mut s, ms(60_000));
        assert_eq!(s.poll_timeout(), Some(ms(210_000)));
        s.handle_timeout(ms(209_999));
        assert!(drain(&mut s, ms(209_999)).is_empty());
        s.handle_timeout(ms(210_000));
        let out = drain(&mut s, ms(210_000));
        // code 0 is omitted: body = reason only
        let want = close_push(CloseCode::HeartbeatTimeout, "heartbeat timeout");
        assert_eq!(want[..5], hex("03 00 00 00 13")[..]);
        assert_eq!(out, [(1, FrameKind::Stream, want)]);
        assert_eq!(
            events(&mut s),
            [
                ServerEvent::PeerClosed {
                    conn: 1,
                    reason: CloseReason::HeartbeatTimeout
                },
                ServerEvent::Disconnect { conn: 1 }
            ]
        );
        assert_eq!(s.poll_timeout(), None);
        assert_eq!(s.stats().heartbeat_timeouts, 1);
    }

    #[test]
    fn heartbeat_deadline_counts_from_the_auth_decision() {
        // fuzz regression longport_server/stale-heartbeat-deadline-after-accept: the app takes
        // longer to decide than heartbeat_timeout; input is refused meanwhile, so the new session
        // must not be closed for silence the moment it is accepted.
        let mut s = S::new(ServerConfig {
            heartbeat_timeout: Duration::from_millis(500),
            auth_timeout: Duration::from_secs(3),
            ..ServerConfig::default()
        });
        s.handle_connected(ms(1_000), 1, Transport::Tcp).unwrap();
        let _ = s.handle_input(ms(1_000), 1, &[0x11, 0x09]).unwrap();
        let _ = s.handle_input(ms(1_000), 1, &auth_req(1, "tok")).unwrap();
        s.accept_auth(ms(2_000), 1, grant("s1", FAR)).unwrap();
        assert_eq!(
            s.poll_timeout(),
            Some(ms(2_500)),
            "deadline = decision + timeout"
        );
        assert!(
            s.poll_timeout().unwrap() >= ms(2_000),
            "never before the last now"
        );
        let _ = drain(&mut s, ms(2_000));
        s.handle_timeout(ms(2_000));
        assert_eq!(s.state(1), Some(PeerState::Authenticated));
        s.handle_timeout(ms(2_500));
        let _ = drain(&mut s, ms(2_500));
        assert_eq!(
            s.stats().heartbeat_timeouts,
            1,
            "silence after the decision still counts"
        );
    }

    #[test]
    fn reject_with_success_status_is_refused() {
        // found by the longport_server fuzz target: a status-0 rejection with an empty Error body
        // reads as a successful login with an empty session id
        let mut s = server();
        s.handle_connected(ms(0), 1, Transport::WebSocket).unwrap();
        let _ = s.handle_input(ms(0), 1, &auth_req(1, "tok")).unwrap();
        assert_eq!(
            s.reject_auth(ms(1), 1, Status::Success, 0, ""),
            Err(CommandError::SuccessStatus)
        );
        assert_eq!(
            s.reject_auth(ms(1), 1, Status::Other(0), 0, ""),
            Err(CommandError::SuccessStatus)
        );
        assert!(
            drain(&mut s, ms(1)).is_empty(),
            "nothing sent, decision still pending"
        );
        s.reject_auth(ms(1), 1, Status::Unauthenticated, 401, "no")
            .unwrap();
        assert!(!drain(&mut s, ms(1)).is_empty());
    }

    #[test]
    fn auth_deadline_closes_unauthenticated_connections() {
        let mut s = server();
        s.handle_connected(ms(0), 1, Transport::Tcp).unwrap();
        s.handle_connected(ms(0), 2, Transport::WebSocket).unwrap();
        let _ = s.handle_input(ms(0), 2, &auth_req(1, "t")).unwrap(); // decision never comes
        assert_eq!(s.poll_timeout(), Some(ms(10_000)));
        s.handle_timeout(ms(10_000));
        let out = drain(&mut s, ms(10_000));
        let push = close_push(CloseCode::AuthError, "authentication timeout");
        assert!(out.contains(&(1, FrameKind::Stream, push.clone())));
        assert!(out.contains(&(2, FrameKind::WsBinary, push)));
        assert!(out.contains(&(
            2,
            FrameKind::WsClose(1008),
            b"authentication timeout".to_vec()
        )));
        assert_eq!(events(&mut s).len(), 4);
        assert_eq!(s.stats().auth_timeouts, 2);
        assert_eq!(
            s.accept_auth(ms(10_000), 2, grant("x", FAR)),
            Err(CommandError::UnknownConn)
        );
    }

    #[test]
    fn shutdown_closes_everyone() {
        let mut s = server();
        authed(&mut s, ms(0), 1, Transport::Tcp, "s1");
        authed(&mut s, ms(0), 2, Transport::WebSocket, "s2");
        s.handle_connected(ms(0), 3, Transport::Tcp).unwrap();
        s.shutdown(ms(1));
        assert!(s.is_shutting_down());
        let out = drain(&mut s, ms(1));
        let push = close_push(CloseCode::ServerShutdown, "server shutdown");
        for conn in [1, 3] {
            assert!(out.contains(&(conn, FrameKind::Stream, push.clone())));
        }
        assert!(out.contains(&(2, FrameKind::WsBinary, push)));
        assert!(out.contains(&(2, FrameKind::WsClose(1001), b"server shutdown".to_vec())));
        assert_eq!(out.len(), 4);
        let evs = events(&mut s);
        for conn in [1, 2, 3] {
            assert!(evs.contains(&ServerEvent::Disconnect { conn }));
        }
        assert_eq!(s.connections(), 0);
        assert_eq!(
            s.handle_connected(ms(2), 4, Transport::Tcp),
            Err(ConnectError::ShuttingDown)
        );
    }

    #[test]
    fn unauthenticated_cap_and_table_full() {
        let mut s = S::new(ServerConfig {
            max_unauthenticated: 2,
            ..ServerConfig::default()
        });
        s.handle_connected(ms(0), 1, Transport::Tcp).unwrap();
        s.handle_connected(ms(0), 2, Transport::WebSocket).unwrap();
        assert_eq!(
            s.handle_connected(ms(0), 3, Transport::Tcp),
            Err(ConnectError::TooManyUnauthenticated)
        );
        assert_eq!(
            s.handle_connected(ms(0), 2, Transport::Tcp),
            Err(ConnectError::AlreadyConnected)
        );
        let _ = s.handle_input(ms(0), 2, &auth_req(1, "t")).unwrap();
        s.accept_auth(ms(0), 2, grant("s2", FAR)).unwrap();
        s.handle_connected(ms(0), 3, Transport::Tcp).unwrap();
        assert_eq!(s.unauthenticated(), 2);
        let _ = s.handle_input(ms(0), 3, &[0x11, 0x09]).unwrap();
        let _ = s.handle_input(ms(0), 3, &auth_req(1, "t")).unwrap();
        s.accept_auth(ms(0), 3, grant("s3", FAR)).unwrap();
        s.handle_connected(ms(0), 4, Transport::Tcp).unwrap();
        assert_eq!(
            s.handle_connected(ms(0), 5, Transport::Tcp),
            Err(ConnectError::TableFull)
        );
        assert_eq!(s.stats().connections_refused, 3);
    }

    #[test]
    fn business_request_respond_and_push() {
        let mut s = server();
        authed(&mut s, ms(0), 1, Transport::Tcp, "s1");
        let req = packet(&Packet::request(6, 7, 0, b"\x0a\x01x"));
        let r = s.handle_input(ms(1), 1, &req).unwrap();
        assert_eq!(r.bytes_consumed(), req.len());
        assert_eq!(
            r.into_app(),
            Some(App::Request {
                request_id: 7,
                cmd: 6,
                timeout_ms: 30_000,
                body: b"\x0a\x01x",
                gzip: false,
                signature: None
            })
        );
        let req = packet(&Packet::request(6, 8, 65_000, b""));
        match s.handle_input(ms(1), 1, &req).unwrap().into_app() {
            Some(App::Request { timeout_ms, .. }) => assert_eq!(timeout_ms, 60_000),
            other => panic!("unexpected {other:?}"),
        }
        let mut out = [0u8; 64];
        let err = encode(&ErrorBody::new(301_600, "invalid request"));
        let t = s
            .respond(ms(1), 1, 7, 6, Status::BadRequest, &err, &mut out)
            .unwrap();
        assert_eq!((t.to, t.kind), (1, FrameKind::Stream));
        // spec V10
        assert_eq!(
            out[..t.len].to_vec(),
            hex(
                "02 06 00 00 00 07 03 00 00 15 08 a0 b4 12 12 0f 69 6e 76 61 6c 69 64 20 72 65 71 \
                 75 65 73 74"
            )
        );
        let t = s.push(ms(1), 1, 101, &[], &mut out).unwrap();
        assert_eq!(out[..t.len].to_vec(), hex("03 65 00 00 00"));
        // server request over TCP is allowed; the client's response comes back
        let t = s
            .send(ms(1), 1, &Packet::request(50, 3, 0, b""), &mut out)
            .unwrap();
        assert_eq!(t.len, 11);
        let resp = packet(&Packet::response(50, 3, Status::Success, b"ok"));
        assert_eq!(
            s.handle_input(ms(2), 1, &resp).unwrap().into_app(),
            Some(App::Response {
                request_id: 3,
                cmd: 50,
                status: Status::Success,
                body: b"ok",
                gzip: false
            })
        );
        assert_eq!(s.stats().frames_sent, 1 + 3);
    }

    #[test]
    fn stray_control_packets_after_auth() {
        let mut s = server();
        authed(&mut s, ms(0), 1, Transport::WebSocket, "s1");
        let _ = s.handle_input(ms(1), 1, &auth_req(5, "again")).unwrap();
        let again = auth_req(6, "again");
        let r = s.handle_input(ms(1), 1, &again).unwrap();
        assert_eq!(r.app(), None, "dropped: the first answer is still unsent");
        assert_eq!(
            drain(&mut s, ms(1)),
            [(
                1,
                FrameKind::WsBinary,
                error_resp(2, 5, Status::BadRequest, 400, "unexpected control command")
            )]
        );
        let _ = s.handle_input(ms(1), 1, &hex("03 00 00 00 00")).unwrap();
        let _ = s
            .handle_input(ms(1), 1, &hex("02 01 00 00 00 01 00 00 00 00"))
            .unwrap();
        let _ = s
            .handle_input(ms(1), 1, &hex("02 02 00 00 00 01 00 00 00 00"))
            .unwrap();
        assert_eq!(s.stats().ignored_packets, 3);
        assert!(drain(&mut s, ms(1)).is_empty());
    }

    #[test]
    fn send_guards() {
        let mut s = server();
        let mut out = [0u8; 64];
        assert_eq!(
            s.push(ms(0), 1, 101, b"", &mut out),
            Err(SendError::UnknownConn)
        );
        s.handle_connected(ms(0), 1, Transport::WebSocket).unwrap();
        assert_eq!(
            s.push(ms(0), 1, 101, b"", &mut out),
            Err(SendError::NotAuthenticated)
        );
        let _ = s.handle_input(ms(0), 1, &auth_req(1, "t")).unwrap();
        s.accept_auth(ms(0), 1, grant("s1", FAR)).unwrap();
        let _ = events(&mut s);
        // the auth response must go first
        assert_eq!(
            s.push(ms(0), 1, 101, b"", &mut out),
            Err(SendError::ControlPending)
        );
        let _ = drain(&mut s, ms(0));
        assert_eq!(
            s.send(ms(0), 1, &Packet::request(1, 1, 0, b""), &mut out),
            Err(SendError::RequestOnWebSocket)
        );
        assert_eq!(
            s.push(ms(0), 1, 101, &[0u8; 100], &mut out),
            Err(SendError::BufferTooSmall { required: 105 })
        );
        assert_eq!(s.stats().frames_sent, 1);
        s.close(ms(0), 1, CloseCode::ServerError, "maintenance")
            .unwrap();
        assert_eq!(
            s.push(ms(0), 1, 101, b"", &mut out),
            Err(SendError::Closing)
        );
        assert_eq!(
            s.close(ms(0), 1, CloseCode::ServerError, "again"),
            Err(CommandError::Closing)
        );
        assert_eq!(
            drain(&mut s, ms(0)),
            [
                (
                    1,
                    FrameKind::WsBinary,
                    close_push(CloseCode::ServerError, "maintenance")
                ),
                (1, FrameKind::WsClose(1011), b"maintenance".to_vec()),
            ]
        );
        assert_eq!(
            events(&mut s),
            [
                ServerEvent::PeerClosed {
                    conn: 1,
                    reason: CloseReason::Local(CloseCode::ServerError)
                },
                ServerEvent::Disconnect { conn: 1 }
            ]
        );
    }

    #[test]
    fn buffer_too_small_keeps_the_frame() {
        let mut s = server();
        s.handle_connected(ms(0), 1, Transport::WebSocket).unwrap();
        let _ = s.handle_input(ms(0), 1, &auth_req(1, "abc")).unwrap();
        s.accept_auth(ms(0), 1, grant("s1", 1_700_086_400_000))
            .unwrap();
        s.close(ms(0), 1, CloseCode::AuthError, "bad token")
            .unwrap();
        let mut small = [0u8; 20];
        for _ in 0..2 {
            assert_eq!(
                s.poll_transmit(ms(0), &mut small),
                Err(BufferTooSmall { required: 21 })
            );
        }
        let mut buf = [0u8; 21];
        let t = s.poll_transmit(ms(0), &mut buf).unwrap().unwrap();
        assert_eq!(
            buf[..t.len].to_vec(),
            hex("02 02 00 00 00 01 00 00 00 0b 0a 02 73 31 10 80 88 af a8 bd 31")
        );
        // spec V9 close push, 18 bytes
        let mut small = [0u8; 17];
        assert_eq!(
            s.poll_transmit(ms(0), &mut small),
            Err(BufferTooSmall { required: 18 })
        );
        let mut small = [0u8; 8];
        let t = s.poll_transmit(ms(0), &mut buf).unwrap().unwrap();
        assert_eq!(
            buf[..t.len].to_vec(),
            hex("03 00 00 00 0d 08 04 12 09 62 61 64 20 74 6f 6b 65 6e")
        );
        assert_eq!(
            s.poll_transmit(ms(0), &mut small),
            Err(BufferTooSmall { required: 9 })
        );
        // the disconnect waits for the close frame
        let evs = events(&mut s);
        assert!(!evs.contains(&ServerEvent::Disconnect { conn: 1 }));
        let t = s.poll_transmit(ms(0), &mut buf).unwrap().unwrap();
        assert_eq!(t.kind, FrameKind::WsClose(1008));
        assert_eq!(events(&mut s), [ServerEvent::Disconnect { conn: 1 }]);
    }

    #[test]
    fn backwards_time_shifts_the_timeline() {
        let mut s = server();
        authed(&mut s, ms(100_000), 1, Transport::Tcp, "s1");
        let v3 = hex("01 01 00 00 00 01 00 00 00 00 07 08 80 d0 95 ff bc 31");
        // the caller's clock steps back to 5 ms: no time passes, and the heartbeat deadline
        // (150 s after this packet) is reported in the caller's clock
        let _ = s.handle_input(ms(5), 1, &v3).unwrap();
        let _ = drain(&mut s, ms(5));
        assert_eq!(s.poll_timeout(), Some(ms(150_005)));
        s.handle_timeout(ms(150_004));
        // a second step back: still no time passes, the deadline moves with it
        s.handle_timeout(ms(4));
        assert_eq!(s.state(1), Some(PeerState::Authenticated));
        assert_eq!(s.poll_timeout(), Some(ms(5)));
        s.handle_timeout(ms(5));
        assert_eq!(s.state(1), Some(PeerState::Closing));
        // machine time ran 150 s past the 100 s it had seen
        assert_eq!(s.wall_clock_ms(), 250_000);
    }

    #[test]
    fn undecodable_input_closes_with_unpack_error() {
        // unknown type (spec V13 invalid first byte), oversized body, truncated WS message,
        // malformed and compressed auth bodies
        let cases: [(Transport, StdVec<u8>, ProtocolError); 5] = [
            (
                Transport::Tcp,
                hex("ec 01 00 00 07"),
                ProtocolError::UnknownType(12),
            ),
            (
                Transport::WebSocket,
                hex("03 65 00 01 00"),
                ProtocolError::BodyTooLarge { len: 256, max: 128 },
            ),
            (
                Transport::WebSocket,
                hex("01 02 00 00 00 01 13 88 00 00 05 0a 03"),
                ProtocolError::Truncated {
                    len: 13,
                    needed: 16,
                },
            ),
            (
                Transport::Tcp,
                hex("01 02 00 00 00 01 13 88 00 00 02 0a 05"),
                ProtocolError::BadControlBody(AuthRequest::decode(&[0x0a, 0x05]).unwrap_err()),
            ),
            (
                Transport::WebSocket,
                hex("21 02 00 00 00 01 13 88 00 00 05 0a 03 61 62 63"),
                ProtocolError::CompressedControl,
            ),
        ];
        for (transport, bytes, err) in cases {
            let mut s = S::new(ServerConfig {
                max_body: 128,
                ..ServerConfig::default()
            });
            s.handle_connected(ms(0), 1, transport).unwrap();
            if transport == Transport::Tcp {
                let _ = s.handle_input(ms(0), 1, &[0x11, 0x09]).unwrap();
            }
            let r = s.handle_input(ms(0), 1, &bytes).unwrap();
            assert_eq!(r.bytes_consumed(), bytes.len());
            let out = drain(&mut s, ms(0));
            assert_eq!(out[0].2, close_push(CloseCode::UnpackError, "unpack error"));
            if transport == Transport::WebSocket {
                assert_eq!(out[1].1, FrameKind::WsClose(1002));
            }
            assert_eq!(
                events(&mut s)[0],
                ServerEvent::PeerClosed {
                    conn: 1,
                    reason: CloseReason::Protocol(err)
                }
            );
        }
    }

    #[test]
    fn ws_trailing_bytes_are_counted_and_ignored() {
        let mut s = server();
        s.handle_connected(ms(0), 1, Transport::WebSocket).unwrap();
        let mut msg = auth_req(1, "abc");
        msg.extend_from_slice(b"junk");
        let r = s.handle_input(ms(0), 1, &msg).unwrap();
        assert_eq!(r.bytes_consumed(), msg.len());
        assert!(matches!(r.app(), Some(App::Auth { token: "abc", .. })));
        assert_eq!(s.stats().trailing_bytes, 1);
    }

    #[test]
    fn closed_transport_while_closing_skips_disconnect() {
        let mut s = server();
        authed(&mut s, ms(0), 1, Transport::Tcp, "s1");
        s.close(ms(0), 1, CloseCode::ServerError, "x").unwrap();
        s.handle_closed(ms(0), 1);
        assert!(drain(&mut s, ms(0)).is_empty());
        assert_eq!(
            events(&mut s),
            [ServerEvent::PeerClosed {
                conn: 1,
                reason: CloseReason::Local(CloseCode::ServerError)
            }]
        );
        assert_eq!(s.connections(), 0);
        s.handle_connected(ms(0), 1, Transport::Tcp).unwrap();
    }

    #[test]
    fn session_table_evicts_expired_then_oldest_detached() {
        let mut s = server(); // 4 sessions
        s.set_wall_clock(ms(0), 1_000_000);
        for (conn, exp) in [
            (1u32, 2_000_000i64),
            (2, 1_500_000),
            (3, 3_000_000),
            (4, 1_200_000),
        ] {
            s.handle_connected(ms(0), conn, Transport::WebSocket)
                .unwrap();
            let _ = s.handle_input(ms(0), conn, &auth_req(1, "t")).unwrap();
            let id = std::format!("s{conn}");
            s.accept_auth(ms(0), conn, grant(&id, exp)).unwrap();
        }
        let _ = drain(&mut s, ms(0));
        let _ = events(&mut s);
        // detach 2 and 3; 4 (earliest) stays live
        s.handle_closed(ms(0), 2);
        s.handle_closed(ms(0), 3);
        let _ = events(&mut s);
        s.handle_connected(ms(0), 5, Transport::WebSocket).unwrap();
        let _ = s.handle_input(ms(0), 5, &auth_req(1, "t")).unwrap();
        s.accept_auth(ms(0), 5, grant("s5", 5_000_000)).unwrap();
        // the earliest-expiring *detached* session (s2) went
        assert_eq!(s.session_expires("s2"), None);
        for id in ["s1", "s3", "s4", "s5"] {
            assert!(s.session_expires(id).is_some(), "{id}");
        }
        assert_eq!(s.stats().sessions_evicted, 1);
        // time passes: s4 (1_200_000) expires and is purged on the next touch
        let _ = drain(&mut s, ms(0));
        let _ = events(&mut s);
        s.handle_closed(ms(300_000), 5);
        let _ = events(&mut s);
        s.handle_connected(ms(300_000), 6, Transport::WebSocket)
            .unwrap();
        let _ = s
            .handle_input(ms(300_000), 6, &reconnect_req(1, "s5"))
            .unwrap();
        assert_eq!(s.session_expires("s4"), None);
        assert_eq!(s.stats().sessions_evicted, 2);
        assert!(s.revoke_session("s3"));
        assert!(!s.revoke_session("s3"));
    }

    #[test]
    fn arbitrary_input_never_panics() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..300u32 {
            let mut s = S::new(ServerConfig {
                max_body: 64,
                ..ServerConfig::default()
            });
            let transport = if round % 2 == 0 {
                Transport::Tcp
            } else {
                Transport::WebSocket
            };
            let mut now = 0u64;
            for conn in 0..3u32 {
                let _ = s.handle_connected(ms(now), conn, transport);
            }
            for _ in 0..40 {
                let r = next();
                let conn = (r % 4) as u32;
                now = now.wrapping_add(r >> 50);
                let len = (r >> 8) as usize % 40;
                let mut data: StdVec<u8> = (0..len).map(|_| next() as u8).collect();
                if r % 5 == 0 && !data.is_empty() {
                    data[0] = [0x01, 0x02, 0x03, 0x11][(r >> 20) as usize % 4];
                }
                match (r >> 4) % 8 {
                    0 => s.handle_timeout(ms(now)),
                    1 => s.handle_frame(ms(now), conn, FrameKind::WsPing, &data),
                    2 => {
                        let _ = s.accept_auth(ms(now), conn, grant("g", FAR));
                    }
                    3 => {
                        let _ = s.accept_reconnect(ms(now), conn, grant("h", FAR));
                    }
                    4 => s.handle_closed(ms(now), conn),
                    _ => {
                        if let Ok(r) = s.handle_input(ms(now), conn, &data) {
                            assert!(r.bytes_consumed() <= data.len());
                            if r.needed().is_some() {
                                assert_eq!(r.bytes_consumed(), 0);
                                assert!(r.needed() > Some(data.len()));
                            }
                        }
                    }
                }
                let mut buf = [0u8; 256];
                while let Ok(Some(t)) = s.poll_transmit(ms(now), &mut buf) {
                    if t.kind == FrameKind::WsBinary {
                        assert_ne!(buf[0] & 0x0F, 1, "no binary Request over WS");
                    }
                }
                while s.poll_event().is_some() {}
                // no livelock: once timers ran, the next deadline lies in the future
                s.handle_timeout(ms(now));
                if let Some(t) = s.poll_timeout() {
                    assert!(t > ms(now), "{t} <= {now} ms");
                }
            }
        }
    }
}
