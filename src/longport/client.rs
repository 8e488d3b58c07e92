//! LongPort client machine: auth → session, heartbeat + RTT, reconnect with the session, per-code
//! reaction to server Close pushes, request/response correlation
//!
//! [`Client`] is sans-IO: the caller owns the socket (TCP or WebSocket), the clock and the
//! source of one-time tokens. It implements [`Machine`] with `Peer = ()`; the same methods are
//! also inherent, so the trait need not be in scope.
//!
//! # Lifecycle
//!
//! 1. [`Client::connect`] with [`Credentials`] (one-time token from the HTTP socket-token API,
//!    optional metadata pairs). The client emits [`ClientEvent::ConnectTransport`].
//! 2. On every `ConnectTransport` the caller opens a **new** transport (TCP connection, or a
//!    WebSocket upgrade with the query `version=1&codec=1&platform=9`) and calls
//!    [`Client::handle_connected`] once it is open, or [`Client::handle_closed`] if the dial
//!    failed. A dial that takes longer than [`ClientConfig::connect_timeout`] is abandoned with
//!    [`ClientEvent::Disconnected`] (reason `ConnectTimeout`).
//! 3. The client queues the login: on TCP the 2-byte handshake `11 09` and the Auth request
//!    (cmd 2) in one [`FrameKind::Stream`] transmit; on WebSocket the Auth request as one
//!    [`FrameKind::WsBinary`]. With a still-valid session it sends Reconnect (cmd 3) instead.
//! 4. [`ClientEvent::Authenticated`] (within [`ClientConfig::auth_timeout`], else
//!    `Disconnected { LoginTimeout }`): business requests may now go out with
//!    [`Client::send_request`].
//! 5. Whenever the connection ends — the caller reports it ([`Client::handle_closed`], a
//!    WebSocket Close frame through [`Client::handle_frame`]), the heartbeat times out, the
//!    server pushes Close, the stream is undecodable — the client emits
//!    [`ClientEvent::Disconnected`] (close the transport if it is still open), fails the requests
//!    in flight ([`ClientEvent::RequestFailed`] with [`RequestFailure::Disconnected`]) and, per
//!    policy, schedules a reconnect ([`ClientEvent::ReconnectScheduled`], then at that instant
//!    `ConnectTransport` again), asks for a token ([`ClientEvent::TokenNeeded`] → call
//!    [`Client::provide_token`]) or stops (Close code 6 → call [`Client::reconnect_now`] or
//!    [`Client::connect`] when you want to continue).
//! 6. [`Client::close`] ends everything: on WebSocket a `WsClose(1000)` frame is queued, then
//!    exactly one final [`ClientEvent::Closed`] is emitted.
//!
//! # Driving a TCP connection
//!
//! ```text
//! keep a receive buffer `rx` (at least the largest packet you accept: 11 + max_body + 24)
//! after reading bytes into rx:
//!     loop {
//!         match client.handle_input(now, (), &rx[..filled]) {
//!             Err(InputError::Busy) => { drain poll_transmit / poll_event, retry }
//!             Ok(r) => {
//!                 if let Some(app) = r.app() { handle the response/push (borrowed from rx) }
//!                 if r.bytes_consumed() == 0 { break }   // r.needed(): total bytes the next packet needs
//!                 drop r.bytes_consumed() bytes from the front of rx
//!             }
//!         }
//!         drain poll_transmit (write every FrameKind::Stream transmit to the socket), drain poll_event
//!     }
//! ```
//!
//! # Driving a WebSocket connection
//!
//! * every binary message → `handle_input(now, (), msg)` (always consumed whole);
//! * Ping / Pong / Close frames → `handle_frame(now, (), FrameKind::WsPing | WsPong | WsClose(code), payload)`;
//!   text frames are not part of the protocol and are best dropped by the caller;
//! * transmits come as `WsBinary` (one message), `WsPing`/`WsPong` (control frames whose payload
//!   is the written bytes) and `WsClose(code)` (then close the socket).
//!
//! Let the WebSocket library answer pings itself *or* let the client do it, not both (the
//! client queues a `WsPong` echo for every `WsPing` it is given).
//!
//! # Heartbeat
//!
//! * TCP: every [`ClientConfig::heartbeat_interval`] (60 s) a cmd-1 request with body
//!   `Heartbeat { timestamp: wall-clock ms, heartbeat_id: request id as i32 }` (as the Go
//!   client does); the echo is matched by request id and [`ClientEvent::HeartbeatRtt`] reports
//!   the time since the request was handed out by `poll_transmit` (the body is not trusted).
//! * WebSocket: the same `Heartbeat` body is the payload of a `WsPing`; a `WsPong` payload is
//!   decoded as `Heartbeat` and matched by `heartbeat_id`. `heartbeat_interval: None` sends
//!   nothing and relies on the server's pings (the Rust SDK's behaviour).
//! * Server heartbeat requests (cmd-1 requests, TCP or WS binary) are echoed: response with the
//!   same id, status 0 and the same body (and gzip flag). Server `WsPing`s get a `WsPong` with
//!   the same payload.
//! * Liveness: heartbeat echoes, server heartbeat requests, pings and pongs always count; with
//!   [`ClientConfig::any_inbound_is_alive`] (default) every inbound packet counts too. No sign
//!   of life for [`ClientConfig::heartbeat_timeout`] (120 s) ends the connection.
//!
//! # Session expiry (spec 6.7)
//!
//! `expires` is taken as absolute Unix milliseconds. The client compares it with a wall clock
//! the caller provides ([`Client::set_wall_clock`] or [`ClientConfig::wall_offset_ms`]): a
//! session is resumable when `expires != 0` and `expires - expiry_margin` (10 s, like the Go
//! client) is still in the future. `expires <= 0` is never resumable. Without a wall clock only
//! the zero check applies and a stale session is found out by the server (status 5 → re-auth).
//! [`ClientConfig::relative_expiry_heuristic`] (off by default) reads values below `1e11` as
//! milliseconds relative to the moment the response arrived — the reading of one official
//! client's reconnect path; it is a heuristic, not protocol.
//!
//! # Requests
//!
//! [`Client::send_request`] writes the packet straight into the caller's buffer and returns
//! the [`Transmit`] describing it: **send it right away**, before the next `poll_transmit`
//! frame. Nothing of the body is copied or queued inside the client, so memory stays bounded
//! whatever the body size, and there is no second buffer to size. The request is then tracked
//! (at most `REQS` in flight) until its response ([`App::Response`], borrowed from the input),
//! its timeout ([`ClientEvent::RequestTimedOut`]) or the end of the connection
//! ([`ClientEvent::RequestFailed`]).
//!
//! Request ids start at [`ClientConfig::first_request_id`] (1), increase by one for every
//! request (business, heartbeat, login), wrap from `u32::MAX` to 1 (0 is skipped) and skip ids
//! still in use. The counter continues across reconnects (ids stay unique per connection).
//!
//! # Bounded work and memory
//!
//! Events sit in a queue of `EVENTS` entries. An input is refused with [`InputError::Busy`]
//! (nothing consumed) unless [`EVENT_RESERVE`] slots are free, and `handle_timeout` does
//! nothing until they are (its deadline stays due), so drain `poll_event` after every input.
//! Request outcomes (`RequestTimedOut`, `RequestFailed`) are kept in the request table and
//! reported by `poll_event` after the queued events, so a disconnect with many requests in
//! flight never overflows the queue; [`ClientEvent::Closed`] is always the very last event.
//! Server heartbeat echoes are copied (bodies up to [`MAX_ECHO_BODY`] bytes, at most 4
//! waiting; bigger ones are dropped and counted), pong payloads up to 125 bytes.

use core::fmt;

use heapless::{Deque, String, Vec};

use crate::io::{BufferTooSmall, FrameKind, Received, Transmit};
use crate::longport::control::{
    AuthRequest, Body, Close, CloseCode, ErrorBody, Heartbeat, Metadata, ReconnectRequest,
    SessionGrant, CMD_AUTH, CMD_CLOSE, CMD_HEARTBEAT, CMD_RECONNECT,
};
use crate::longport::deframe::{decode_message, Frame, Handshake, StreamDeframer, Transport};
use crate::longport::event::{
    truncated, ClientEvent, CloseAction, DisconnectReason, LoginKind, ProtocolError,
    RequestFailure, RequestId, Text, DEFAULT_SESSION_LEN,
};
use crate::longport::wire::{
    Header, Kind, Packet, Status, DEFAULT_MAX_BODY, MAX_BODY_LEN, REQUEST_HEADER_LEN,
};
use crate::time::{earliest, Clock, Duration, Instant};
use crate::wire::Reader;

/// Default number of business requests in flight
pub const DEFAULT_MAX_IN_FLIGHT: usize = 16;
/// Default event queue capacity
pub const DEFAULT_EVENT_CAPACITY: usize = 16;
/// Default one-time token capacity, in bytes
pub const DEFAULT_TOKEN_LEN: usize = 512;
/// Default capacity for the metadata pairs (stored as 2-byte length + text per key and value)
pub const DEFAULT_METADATA_LEN: usize = 256;
/// Most metadata pairs accepted in [`Credentials`]
pub const MAX_METADATA_PAIRS: usize = 8;
/// Largest server heartbeat body that is echoed (a `Heartbeat` needs at most 22)
pub const MAX_ECHO_BODY: usize = 64;
/// Largest WebSocket control-frame payload (RFC 6455)
pub const MAX_WS_CONTROL_PAYLOAD: usize = 125;
/// Largest value of the request header's timeout field, in milliseconds
pub const MAX_HEADER_TIMEOUT_MS: u16 = 60_000;
/// Free event slots an input needs before it is processed
pub const EVENT_RESERVE: usize = 4;
/// WebSocket close code the client uses for normal closes
pub const WS_CLOSE_NORMAL: u16 = 1000;
/// WebSocket close code the client uses after undecodable peer bytes
pub const WS_CLOSE_PROTOCOL: u16 = 1002;
/// `expires` values below this are relative under [`ClientConfig::relative_expiry_heuristic`]
pub const RELATIVE_EXPIRY_LIMIT_MS: i64 = 100_000_000_000;

/// Largest inflated control body (auth/reconnect response, Close push) with the `gzip` feature
pub const CONTROL_INFLATE_LEN: usize = if cfg!(feature = "gzip") { 512 } else { 0 };

const ECHO_SLOTS: usize = 4;

/// Extra reconnect delay for an attempt number, chosen by the caller (e.g. random jitter)
pub type JitterFn = fn(u32) -> Duration;

/// Client settings
///
/// Build with [`ClientConfig::new`] (or [`ClientConfig::tcp`] / [`ClientConfig::websocket`])
/// and adjust the public fields.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct ClientConfig {
    /// TCP (handshake + byte stream, cmd-1 heartbeats) or WebSocket (messages, ping/pong)
    pub transport: Transport,
    /// TCP handshake bytes sent first (default `11 09`: v1, protobuf, openapi)
    pub handshake: Handshake,
    /// How long a dial may take after [`ClientEvent::ConnectTransport`] (default 10 s)
    pub connect_timeout: Duration,
    /// How long the auth/reconnect response (or a needed token) may take (default 10 s); also
    /// the login request's header timeout field (at most 60000 ms)
    pub auth_timeout: Duration,
    /// Client heartbeat period (default 60 s); `None` sends none (relies on server pings)
    pub heartbeat_interval: Option<Duration>,
    /// Connection declared dead after this long without a sign of life (default 120 s)
    pub heartbeat_timeout: Duration,
    /// Count every inbound packet as a sign of life, not only heartbeats (default true)
    pub any_inbound_is_alive: bool,
    /// Timeout of a request sent with a zero timeout (default 30 s)
    pub request_timeout: Duration,
    /// First reconnect delay (default 1 s); doubles per failed attempt
    pub reconnect_base: Duration,
    /// Cap of the reconnect delay before jitter (default 30 s)
    pub reconnect_max: Duration,
    /// Give up (final [`ClientEvent::Closed`]) after this many consecutive failed attempts
    /// (default `None`: never)
    pub max_reconnect_attempts: Option<u32>,
    /// Extra delay per attempt added to the back-off (default `None`: no jitter)
    pub jitter: Option<JitterFn>,
    /// Unix time in ms minus `now` in ms, when known (heartbeat timestamps, session expiry)
    pub wall_offset_ms: Option<i64>,
    /// A session is not resumed within this margin before it expires (default 10 s)
    pub expiry_margin: Duration,
    /// Read `expires` below [`RELATIVE_EXPIRY_LIMIT_MS`] as relative milliseconds (heuristic,
    /// default false)
    pub relative_expiry_heuristic: bool,
    /// Largest accepted body (default [`DEFAULT_MAX_BODY`], 1 MiB)
    pub max_body: usize,
    /// First request id (default 1; 0 is taken as 1); for tests and fuzzing of the wrap
    pub first_request_id: u32,
}

impl ClientConfig {
    /// Defaults for `transport`
    #[must_use]
    pub const fn new(transport: Transport) -> Self {
        ClientConfig {
            transport,
            handshake: Handshake::OPENAPI,
            connect_timeout: Duration::from_secs(10),
            auth_timeout: Duration::from_secs(10),
            heartbeat_interval: Some(Duration::from_secs(60)),
            heartbeat_timeout: Duration::from_secs(120),
            any_inbound_is_alive: true,
            request_timeout: Duration::from_secs(30),
            reconnect_base: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(30),
            max_reconnect_attempts: None,
            jitter: None,
            wall_offset_ms: None,
            expiry_margin: Duration::from_secs(10),
            relative_expiry_heuristic: false,
            max_body: DEFAULT_MAX_BODY,
            first_request_id: 1,
        }
    }

    /// Defaults for TCP
    #[must_use]
    pub const fn tcp() -> Self {
        Self::new(Transport::Tcp)
    }

    /// Defaults for WebSocket
    #[must_use]
    pub const fn websocket() -> Self {
        Self::new(Transport::WebSocket)
    }

    /// Start request ids at `id` (0 is taken as 1)
    #[must_use]
    pub const fn with_first_request_id(mut self, id: u32) -> Self {
        self.first_request_id = id;
        self
    }

    /// Set the wall-clock offset (Unix ms minus `now` in ms)
    #[must_use]
    pub const fn with_wall_offset_ms(mut self, offset: i64) -> Self {
        self.wall_offset_ms = Some(offset);
        self
    }

    /// Add `jitter(attempt)` to every reconnect delay
    #[must_use]
    pub const fn with_jitter(mut self, jitter: JitterFn) -> Self {
        self.jitter = Some(jitter);
        self
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self::tcp()
    }
}

/// Login material: a one-time token and optional metadata pairs (e.g. `accept-language`)
///
/// The client copies both; the metadata is sent with every Auth and Reconnect request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Credentials<'a> {
    /// One-time password from the HTTP socket-token API
    pub token: &'a str,
    /// `(key, value)` pairs, at most [`MAX_METADATA_PAIRS`]
    pub metadata: &'a [(&'a str, &'a str)],
}

impl<'a> Credentials<'a> {
    /// A token without metadata
    #[must_use]
    pub const fn new(token: &'a str) -> Self {
        Credentials {
            token,
            metadata: &[],
        }
    }

    /// Add metadata pairs
    #[must_use]
    pub const fn with_metadata(mut self, metadata: &'a [(&'a str, &'a str)]) -> Self {
        self.metadata = metadata;
        self
    }
}

/// Business data borrowed out of one input
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum App<'a> {
    /// The response to a request sent with [`Client::send_request`]
    Response {
        /// Command code
        cmd: u8,
        /// The request it answers
        request_id: RequestId,
        /// Status byte
        status: Status,
        /// Body as on the wire (still compressed when `gzip`)
        body: &'a [u8],
        /// The body is a gzip member; inflate it (e.g. with the `gzip` feature's `gunzip`)
        gzip: bool,
        /// The `Error` body when `status` is not 0 and the body is uncompressed and decodes
        error: Option<ErrorBody<'a>>,
    },
    /// A server push (any cmd but 0)
    Push {
        /// Command code
        cmd: u8,
        /// Body as on the wire (still compressed when `gzip`)
        body: &'a [u8],
        /// The body is a gzip member
        gzip: bool,
    },
}

/// Where the client is, as seen by the caller
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ClientState {
    /// Created; [`Client::connect`] not called yet
    Idle,
    /// Waiting for the caller to open the transport ([`Client::handle_connected`])
    Connecting,
    /// Transport open, login (or a token for it) pending
    LoggingIn,
    /// Authenticated; requests may be sent
    Ready,
    /// Waiting for the reconnect back-off to elapse
    WaitingToReconnect,
    /// Waiting for [`Client::provide_token`]
    NeedToken,
    /// Stopped after Close code 6; resume with [`Client::reconnect_now`] or [`Client::connect`]
    Stopped,
    /// Finished
    Closed,
}

/// Counters of what the client has seen and done
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct ClientStats {
    /// Packets decoded from the current transports
    pub packets_received: u64,
    /// Packets and frames handed out (`poll_transmit` and `send_request`)
    pub packets_sent: u64,
    /// Responses delivered as [`App::Response`]
    pub responses: u64,
    /// Pushes delivered as [`App::Push`]
    pub pushes: u64,
    /// Responses matching no request in flight (dropped)
    pub unmatched_responses: u64,
    /// Undecodable packets, messages or bodies
    pub decode_errors: u64,
    /// WebSocket messages with bytes after their packet (ignored)
    pub trailing_bytes: u64,
    /// Inputs dropped: for no open transport, unexpected server requests and frames, echoes or
    /// pongs too big or with no room
    pub dropped: u64,
    /// Heartbeats sent (cmd-1 requests or pings)
    pub heartbeats_sent: u64,
    /// Heartbeat echoes matched (RTT measured)
    pub heartbeat_acks: u64,
    /// Server heartbeat requests and pings answered
    pub heartbeats_answered: u64,
    /// Reconnect attempts started (`ConnectTransport` after a loss)
    pub reconnects: u64,
    /// Connections ended (any reason)
    pub disconnects: u64,
    /// Requests that timed out
    pub requests_timed_out: u64,
    /// Requests failed by a disconnect or close
    pub requests_failed: u64,
    /// Events lost because the queue was full (only inputs that cannot be refused)
    pub events_dropped: u64,
}

/// Why an input was refused; nothing was consumed
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum InputError {
    /// The event queue (fewer than [`EVENT_RESERVE`] free slots) or the echo queue is full:
    /// drain `poll_event` and `poll_transmit`, then retry
    Busy,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::Busy => f.write_str("queues full: drain events and transmits first"),
        }
    }
}

impl core::error::Error for InputError {}

/// Why [`Client::connect`] or [`Client::reconnect_now`] was refused; nothing changed
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ConnectError {
    /// The client is closed
    Closed,
    /// A transport is being opened or is open
    AlreadyConnected,
    /// The event queue has fewer than [`EVENT_RESERVE`] free slots
    Busy,
    /// The token does not fit the client's token capacity
    TokenTooLong {
        /// The capacity in bytes
        max: usize,
    },
    /// Too many metadata pairs, or they do not fit the metadata capacity
    MetadataTooLarge,
    /// Neither a resumable session nor a token is available (reconnect_now)
    NoCredentials,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Closed => f.write_str("client closed"),
            ConnectError::AlreadyConnected => f.write_str("already connecting or connected"),
            ConnectError::Busy => f.write_str("event queue full"),
            ConnectError::TokenTooLong { max } => write!(f, "token longer than {max} bytes"),
            ConnectError::MetadataTooLarge => f.write_str("metadata too large"),
            ConnectError::NoCredentials => f.write_str("no session and no token"),
        }
    }
}

impl core::error::Error for ConnectError {}

/// Why [`Client::provide_token`] was refused; nothing changed
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum TokenError {
    /// The client is closed
    Closed,
    /// The event queue has fewer than [`EVENT_RESERVE`] free slots
    Busy,
    /// The token does not fit the client's token capacity
    TooLong {
        /// The capacity in bytes
        max: usize,
    },
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Closed => f.write_str("client closed"),
            TokenError::Busy => f.write_str("event queue full"),
            TokenError::TooLong { max } => write!(f, "token longer than {max} bytes"),
        }
    }
}

impl core::error::Error for TokenError {}

/// Why [`Client::handle_connected`] was refused
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ConnectedError {
    /// The client is closed
    Closed,
    /// No [`ClientEvent::ConnectTransport`] is outstanding (close this transport)
    NotConnecting,
}

impl fmt::Display for ConnectedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectedError::Closed => f.write_str("client closed"),
            ConnectedError::NotConnecting => f.write_str("no transport was requested"),
        }
    }
}

impl core::error::Error for ConnectedError {}

/// Why [`Client::send_request`] was refused; nothing was written and nothing changed
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SendError {
    /// The client is closed
    Closed,
    /// Not authenticated (yet, or any more)
    NotReady,
    /// Commands 0..=3 are the control plane's
    ControlCommand(u8),
    /// The body exceeds the 24-bit length field
    BodyTooLarge {
        /// Body length
        len: usize,
    },
    /// `REQS` requests are in flight (or their outcome events are not polled yet)
    TooManyInFlight,
    /// The output buffer cannot hold the packet
    BufferTooSmall {
        /// Exact packet length
        required: usize,
    },
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Closed => f.write_str("client closed"),
            SendError::NotReady => f.write_str("not authenticated"),
            SendError::ControlCommand(c) => write!(f, "command {c} is a control command"),
            SendError::BodyTooLarge { len } => write!(f, "body of {len} bytes is too large"),
            SendError::TooManyInFlight => f.write_str("too many requests in flight"),
            SendError::BufferTooSmall { required } => {
                write!(f, "output buffer too small: {required} bytes required")
            }
        }
    }
}

impl core::error::Error for SendError {}

impl From<BufferTooSmall> for SendError {
    fn from(e: BufferTooSmall) -> Self {
        SendError::BufferTooSmall {
            required: e.required,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Dialing {
        deadline: Instant,
    },
    AwaitToken {
        deadline: Instant,
    },
    Login {
        kind: LoginKind,
        rid: u32,
        deadline: Instant,
    },
    Ready,
    Backoff {
        at: Instant,
    },
    NeedToken,
    Stopped,
    Closed,
}

impl Phase {
    const fn link_up(&self) -> bool {
        matches!(
            self,
            Phase::AwaitToken { .. } | Phase::Login { .. } | Phase::Ready
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Waiting,
    TimedOut,
    Failed(RequestFailure),
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    id: u32,
    deadline: Instant,
    outcome: Outcome,
}

#[derive(Debug, Clone)]
struct Echo {
    rid: u32,
    gzip: bool,
    body: Vec<u8, MAX_ECHO_BODY>,
}

#[derive(Debug, Clone)]
struct Session<const S: usize> {
    id: String<S>,
    expires: i64,
    relative_deadline: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    Reconnect,
    ReAuth,
    Stop,
}

/// The LongPort client state machine
///
/// Capacities: `REQS` business requests in flight, `EVENTS` queued events (at least 8),
/// `TOKEN` bytes of token, `SESSION` bytes of session id, `META` bytes of stored metadata.
/// [`DefaultClient`] uses the defaults.
#[derive(Debug)]
pub struct Client<
    const REQS: usize = DEFAULT_MAX_IN_FLIGHT,
    const EVENTS: usize = DEFAULT_EVENT_CAPACITY,
    const TOKEN: usize = DEFAULT_TOKEN_LEN,
    const SESSION: usize = DEFAULT_SESSION_LEN,
    const META: usize = DEFAULT_METADATA_LEN,
> {
    config: ClientConfig,
    clock: Clock,
    phase: Phase,
    attempt: u32,
    last_reason: DisconnectReason,
    wall_offset_ms: Option<i64>,
    next_id: u32,
    token: Option<String<TOKEN>>,
    token_requested: bool,
    meta: Vec<u8, META>,
    session: Option<Session<SESSION>>,
    deframer: StreamDeframer,
    next_heartbeat: Option<Instant>,
    last_alive: Instant,
    hb_outstanding: Option<(u32, Instant)>,
    tx_handshake: bool,
    tx_login: bool,
    tx_echo: Deque<Echo, ECHO_SLOTS>,
    tx_pong: Option<Vec<u8, MAX_WS_CONTROL_PAYLOAD>>,
    tx_heartbeat: Option<u32>,
    tx_ws_close: Option<u16>,
    pending: Vec<Pending, REQS>,
    events: Deque<ClientEvent<SESSION>, EVENTS>,
    closed_event: Option<DisconnectReason>,
    stats: ClientStats,
}

/// A [`Client`] with the default capacities
pub type DefaultClient = Client;

impl<
        const REQS: usize,
        const EVENTS: usize,
        const TOKEN: usize,
        const SESSION: usize,
        const META: usize,
    > Client<REQS, EVENTS, TOKEN, SESSION, META>
{
    const CAPACITY_CHECK: () = {
        assert!(EVENTS >= 2 * EVENT_RESERVE, "EVENTS must be at least 8");
        assert!(
            TOKEN + SESSION + META < MAX_BODY_LEN / 2,
            "login body capacities too large"
        );
    };

    /// A client in [`ClientState::Idle`]
    #[must_use]
    pub fn new(config: ClientConfig) -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::CAPACITY_CHECK;
        Client {
            config,
            clock: Clock::new(),
            phase: Phase::Idle,
            attempt: 0,
            last_reason: DisconnectReason::Local,
            wall_offset_ms: config.wall_offset_ms,
            next_id: config.first_request_id.max(1),
            token: None,
            token_requested: false,
            meta: Vec::new(),
            session: None,
            deframer: StreamDeframer::new(false, config.max_body),
            next_heartbeat: None,
            last_alive: Instant::ZERO,
            hb_outstanding: None,
            tx_handshake: false,
            tx_login: false,
            tx_echo: Deque::new(),
            tx_pong: None,
            tx_heartbeat: None,
            tx_ws_close: None,
            pending: Vec::new(),
            events: Deque::new(),
            closed_event: None,
            stats: ClientStats::default(),
        }
    }

    // ----------------------------------------------------------------------------------------
    // Getters
    // ----------------------------------------------------------------------------------------

    /// The configuration
    #[must_use]
    pub const fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Counters
    #[must_use]
    pub const fn stats(&self) -> ClientStats {
        self.stats
    }

    /// Where the client is
    #[must_use]
    pub const fn state(&self) -> ClientState {
        match self.phase {
            Phase::Idle => ClientState::Idle,
            Phase::Dialing { .. } => ClientState::Connecting,
            Phase::AwaitToken { .. } | Phase::Login { .. } => ClientState::LoggingIn,
            Phase::Ready => ClientState::Ready,
            Phase::Backoff { .. } => ClientState::WaitingToReconnect,
            Phase::NeedToken => ClientState::NeedToken,
            Phase::Stopped => ClientState::Stopped,
            Phase::Closed => ClientState::Closed,
        }
    }

    /// True when business requests may be sent
    #[must_use]
    pub const fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Ready)
    }

    /// The current session id, if any
    #[must_use]
    pub fn session_id(&self) -> Option<&str> {
        self.session.as_ref().map(|s| s.id.as_str())
    }

    /// `expires` of the current session as received, if any
    #[must_use]
    pub fn session_expires(&self) -> Option<i64> {
        self.session.as_ref().map(|s| s.expires)
    }

    /// Whether the current session would be resumed by a reconnect at `now` (see module docs)
    #[must_use]
    pub fn session_resumable(&self, now: Instant) -> bool {
        let now = now.max(self.clock.now());
        let Some(s) = &self.session else {
            return false;
        };
        if s.id.is_empty() {
            return false;
        }
        if let Some(deadline) = s.relative_deadline {
            return now.saturating_add(self.config.expiry_margin) < deadline;
        }
        if s.expires <= 0 {
            return false;
        }
        match self.wall_ms(now) {
            None => true,
            Some(wall) => {
                let margin =
                    i64::try_from(self.config.expiry_margin.as_millis()).unwrap_or(i64::MAX);
                s.expires.saturating_sub(margin) > wall
            }
        }
    }

    /// Wall-clock Unix milliseconds at `now`, when a wall clock was given
    #[must_use]
    pub fn wall_ms(&self, now: Instant) -> Option<i64> {
        let ms = i64::try_from(now.as_millis()).unwrap_or(i64::MAX);
        self.wall_offset_ms.map(|o| ms.saturating_add(o))
    }

    /// Business requests in flight (including outcomes not yet polled)
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// True when a one-time token is stored and unused
    #[must_use]
    pub const fn has_token(&self) -> bool {
        self.token.is_some()
    }

    // ----------------------------------------------------------------------------------------
    // Commands
    // ----------------------------------------------------------------------------------------

    /// Tell the client that Unix time is `unix_ms` at `now` (heartbeat timestamps, expiry)
    pub fn set_wall_clock(&mut self, now: Instant, unix_ms: i64) {
        let now = self.clock.update(now);
        let ms = i64::try_from(now.as_millis()).unwrap_or(i64::MAX);
        self.wall_offset_ms = Some(unix_ms.saturating_sub(ms));
    }

    /// Start (or restart) with fresh credentials: emits [`ClientEvent::ConnectTransport`]
    ///
    /// Allowed when idle, waiting to reconnect, waiting for a token or stopped. Any session is
    /// dropped: the next login is an Auth with `credentials.token`.
    ///
    /// # Errors
    /// [`ConnectError`]; nothing changed.
    pub fn connect(
        &mut self,
        now: Instant,
        credentials: Credentials<'_>,
    ) -> Result<(), ConnectError> {
        let now = self.clock.update(now);
        match self.phase {
            Phase::Closed => return Err(ConnectError::Closed),
            Phase::Dialing { .. }
            | Phase::AwaitToken { .. }
            | Phase::Login { .. }
            | Phase::Ready => return Err(ConnectError::AlreadyConnected),
            Phase::Idle | Phase::Backoff { .. } | Phase::NeedToken | Phase::Stopped => {}
        }
        if self.events_free() < EVENT_RESERVE {
            return Err(ConnectError::Busy);
        }
        let token = store_token::<TOKEN>(credentials.token)
            .ok_or(ConnectError::TokenTooLong { max: TOKEN })?;
        let meta =
            store_metadata::<META>(credentials.metadata).ok_or(ConnectError::MetadataTooLarge)?;
        self.token = Some(token);
        self.meta = meta;
        self.token_requested = false;
        self.session = None;
        self.attempt = 0;
        self.dial(now);
        Ok(())
    }

    /// Hand over a fresh one-time token (after [`ClientEvent::TokenNeeded`], or ahead of time)
    ///
    /// When the client waits for it, the login continues at once (a new `ConnectTransport`, or
    /// the Auth request on the open transport); otherwise it is kept for the next Auth.
    ///
    /// # Errors
    /// [`TokenError`]; nothing changed.
    pub fn provide_token(&mut self, now: Instant, token: &str) -> Result<(), TokenError> {
        let now = self.clock.update(now);
        if self.phase == Phase::Closed {
            return Err(TokenError::Closed);
        }
        if self.events_free() < EVENT_RESERVE {
            return Err(TokenError::Busy);
        }
        let token = store_token::<TOKEN>(token).ok_or(TokenError::TooLong { max: TOKEN })?;
        self.token = Some(token);
        self.token_requested = false;
        match self.phase {
            Phase::NeedToken => self.dial(now),
            Phase::AwaitToken { .. } => self.start_login(now, LoginKind::Auth),
            _ => {}
        }
        Ok(())
    }

    /// Reconnect now instead of waiting (back-off, or stopped after Close code 6)
    ///
    /// Uses the session while it is resumable, else the stored token. Only a stored token may
    /// start an idle client (as [`Client::connect`] would).
    ///
    /// # Errors
    /// [`ConnectError`]: `NoCredentials` when there is neither; nothing changed.
    pub fn reconnect_now(&mut self, now: Instant) -> Result<(), ConnectError> {
        let now = self.clock.update(now);
        match self.phase {
            Phase::Closed => return Err(ConnectError::Closed),
            Phase::Dialing { .. }
            | Phase::AwaitToken { .. }
            | Phase::Login { .. }
            | Phase::Ready => return Err(ConnectError::AlreadyConnected),
            Phase::Idle | Phase::Backoff { .. } | Phase::NeedToken | Phase::Stopped => {}
        }
        if self.events_free() < EVENT_RESERVE {
            return Err(ConnectError::Busy);
        }
        if !self.can_login(now) {
            return Err(ConnectError::NoCredentials);
        }
        self.dial(now);
        Ok(())
    }

    /// The transport requested by [`ClientEvent::ConnectTransport`] is open: queue the login
    ///
    /// On TCP the handshake goes first. With a resumable session the login is Reconnect, else
    /// Auth with the stored token; without a token [`ClientEvent::TokenNeeded`] is emitted and
    /// the login waits (within the auth timeout) for [`Client::provide_token`].
    ///
    /// # Errors
    /// [`ConnectedError`] when no transport was requested; close that transport.
    pub fn handle_connected(&mut self, now: Instant) -> Result<(), ConnectedError> {
        let now = self.clock.update(now);
        match self.phase {
            Phase::Closed => return Err(ConnectedError::Closed),
            Phase::Dialing { .. } => {}
            _ => return Err(ConnectedError::NotConnecting),
        }
        self.clear_link();
        self.tx_handshake = self.config.transport == Transport::Tcp;
        self.last_alive = now;
        if self.session_resumable(now) {
            self.start_login(now, LoginKind::Reconnect);
        } else {
            self.session = None;
            if self.token.is_some() {
                self.start_login(now, LoginKind::Auth);
            } else {
                self.request_token();
                self.phase = Phase::AwaitToken {
                    deadline: now.saturating_add(self.config.auth_timeout),
                };
            }
        }
        Ok(())
    }

    /// Write a business request into `out` and track it; send `out[..len]` right away
    ///
    /// `timeout` bounds the wait for the response ([`ClientEvent::RequestTimedOut`]); zero
    /// means [`ClientConfig::request_timeout`]. The header's timeout field carries
    /// `min(timeout in ms, 60000)`. The body is sent uncompressed, as given.
    ///
    /// # Errors
    /// [`SendError`]; nothing was written and nothing changed.
    pub fn send_request(
        &mut self,
        now: Instant,
        cmd: u8,
        timeout: Duration,
        body: &[u8],
        out: &mut [u8],
    ) -> Result<(RequestId, Transmit<()>), SendError> {
        let now = self.clock.update(now);
        match self.phase {
            Phase::Closed => return Err(SendError::Closed),
            Phase::Ready => {}
            _ => return Err(SendError::NotReady),
        }
        if cmd <= CMD_RECONNECT {
            return Err(SendError::ControlCommand(cmd));
        }
        if body.len() > MAX_BODY_LEN {
            return Err(SendError::BodyTooLarge { len: body.len() });
        }
        if self.pending.is_full() {
            return Err(SendError::TooManyInFlight);
        }
        let required = REQUEST_HEADER_LEN.saturating_add(body.len());
        if out.len() < required {
            return Err(SendError::BufferTooSmall { required });
        }
        let timeout = if timeout.is_zero() {
            self.config.request_timeout
        } else {
            timeout
        };
        let id = self.alloc_id();
        let len = Packet::request(cmd, id, header_timeout(timeout), body).emit(out)?;
        let pending = Pending {
            id,
            deadline: now.saturating_add(timeout),
            outcome: Outcome::Waiting,
        };
        if self.pending.push(pending).is_err() {
            // unreachable: checked above; keep the id unused rather than panic
            return Err(SendError::TooManyInFlight);
        }
        bump(&mut self.stats.packets_sent);
        Ok((
            RequestId(id),
            Transmit {
                to: (),
                len,
                kind: self.data_kind(),
            },
        ))
    }

    /// End everything: fail requests in flight, queue `WsClose(1000)` on an open WebSocket,
    /// then emit the final [`ClientEvent::Closed`]; later calls do nothing
    ///
    /// On TCP close the socket once the events are drained.
    pub fn close(&mut self, now: Instant) {
        let _ = self.clock.update(now);
        if self.phase == Phase::Closed {
            return;
        }
        let was_up = self.phase.link_up();
        self.clear_link();
        if was_up && self.config.transport == Transport::WebSocket {
            self.tx_ws_close = Some(WS_CLOSE_NORMAL);
        }
        self.finish(DisconnectReason::Local);
    }

    // ----------------------------------------------------------------------------------------
    // Machine inputs and outputs (also available through the `Machine` trait)
    // ----------------------------------------------------------------------------------------

    /// Feed the buffered bytes of the TCP stream, or one WebSocket binary message
    ///
    /// TCP: parses at most one packet; [`Received::bytes_consumed`] bytes may be dropped, or
    /// [`Received::needed`] tells how many bytes the next packet needs. WebSocket: the message is
    /// always consumed whole; an undecodable message is dropped and counted (the framing is
    /// intact, as the Go client does); on TCP an undecodable stream ends the connection. Input
    /// while no transport is open (before [`Client::handle_connected`], after a
    /// [`ClientEvent::Disconnected`]) is dropped and counted.
    ///
    /// # Errors
    /// [`InputError::Busy`] when the queues are full; nothing was consumed.
    pub fn handle_input<'a>(
        &mut self,
        now: Instant,
        _from: (),
        data: &'a [u8],
    ) -> Result<Received<App<'a>>, InputError> {
        let now = self.clock.update(now);
        if !self.phase.link_up() {
            if !data.is_empty() {
                bump(&mut self.stats.dropped);
            }
            return Ok(Received::consumed(data.len()));
        }
        if self.events_free() < EVENT_RESERVE || self.tx_echo.is_full() {
            return Err(InputError::Busy);
        }
        match self.config.transport {
            Transport::Tcp => {
                let mut deframer = self.deframer;
                match deframer.decode(data) {
                    Ok(Frame::Need(n)) => Ok(Received::need(n)),
                    Ok(Frame::Handshake(_, n)) => {
                        // cannot happen with expect_handshake = false
                        self.deframer = deframer;
                        Ok(Received::consumed(n))
                    }
                    Ok(Frame::Packet(p, n)) => {
                        self.deframer = deframer;
                        Ok(match self.on_packet(now, p) {
                            Some(app) => Received::with_app(n, app),
                            None => Received::consumed(n),
                        })
                    }
                    Err(e) => {
                        bump(&mut self.stats.decode_errors);
                        self.link_down(
                            now,
                            DisconnectReason::Protocol(ProtocolError::Framing(e)),
                            Some(WS_CLOSE_PROTOCOL),
                            After::Reconnect,
                        );
                        Ok(Received::consumed(data.len()))
                    }
                }
            }
            Transport::WebSocket => match decode_message(data, self.config.max_body) {
                Ok((p, trailing)) => {
                    if trailing > 0 {
                        bump(&mut self.stats.trailing_bytes);
                    }
                    Ok(match self.on_packet(now, p) {
                        Some(app) => Received::with_app(data.len(), app),
                        None => Received::consumed(data.len()),
                    })
                }
                Err(_) => {
                    bump(&mut self.stats.decode_errors);
                    Ok(Received::consumed(data.len()))
                }
            },
        }
    }

    /// Feed a WebSocket Ping, Pong or Close frame
    ///
    /// Ping: a `WsPong` with the same payload is queued (sign of life). Pong: sign of life;
    /// a `Heartbeat` payload matching the outstanding ping gives [`ClientEvent::HeartbeatRtt`].
    /// Close: the connection ended (`Disconnected { WsClose(code) }`); codes 4000..=4006 are read
    /// as `4000 + Close code` and get that code's policy, any other code reconnects. Ignored on
    /// TCP and while no transport is open.
    pub fn handle_frame(&mut self, now: Instant, _from: (), kind: FrameKind, payload: &[u8]) {
        let now = self.clock.update(now);
        if self.config.transport != Transport::WebSocket || !self.phase.link_up() {
            bump(&mut self.stats.dropped);
            return;
        }
        match kind {
            FrameKind::WsPing => {
                self.last_alive = now;
                match Vec::from_slice(payload) {
                    Ok(p) => {
                        self.tx_pong = Some(p);
                        bump(&mut self.stats.heartbeats_answered);
                    }
                    Err(_) => bump(&mut self.stats.dropped),
                }
            }
            FrameKind::WsPong => {
                self.last_alive = now;
                match Heartbeat::decode(payload) {
                    Ok(hb) => {
                        if let (Some(id), Some((rid, _))) = (hb.heartbeat_id, self.hb_outstanding) {
                            if id == heartbeat_id(rid) {
                                self.heartbeat_acked(now);
                            }
                        }
                    }
                    Err(_) => bump(&mut self.stats.decode_errors),
                }
            }
            FrameKind::WsClose(code) => {
                let action = match code.checked_sub(4000) {
                    Some(c @ 0..=6) => close_action(CloseCode::from_i32(i32::from(c))),
                    _ => CloseAction::Reconnect,
                };
                self.apply_close(now, DisconnectReason::WsClose(code), action, None);
            }
            FrameKind::Datagram | FrameKind::Stream | FrameKind::WsBinary => {
                bump(&mut self.stats.dropped)
            }
        }
    }

    /// The transport is gone (or the dial failed): reconnect per policy
    ///
    /// Ignored unless a transport is being opened or is open (so reporting the close of a
    /// transport the client already gave up is harmless).
    pub fn handle_closed(&mut self, now: Instant, _from: ()) {
        let now = self.clock.update(now);
        if self.phase.link_up() || matches!(self.phase, Phase::Dialing { .. }) {
            self.link_down(
                now,
                DisconnectReason::TransportClosed,
                None,
                After::Reconnect,
            );
        }
    }

    /// Let timers fire: dial, login and heartbeat timeouts, heartbeats, request timeouts,
    /// reconnect back-off
    ///
    /// Early calls do nothing. It also does nothing while fewer than [`EVENT_RESERVE`] event
    /// slots are free (the deadline stays due: drain `poll_event` and call again).
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock.update(now);
        if self.phase == Phase::Closed || self.events_free() < EVENT_RESERVE {
            return;
        }
        for p in &mut self.pending {
            if p.outcome == Outcome::Waiting && p.deadline <= now {
                p.outcome = Outcome::TimedOut;
                bump(&mut self.stats.requests_timed_out);
            }
        }
        match self.phase {
            Phase::Dialing { deadline } if now >= deadline => {
                self.link_down(
                    now,
                    DisconnectReason::ConnectTimeout,
                    None,
                    After::Reconnect,
                );
            }
            Phase::AwaitToken { deadline } | Phase::Login { deadline, .. } if now >= deadline => {
                self.link_down(
                    now,
                    DisconnectReason::LoginTimeout,
                    Some(WS_CLOSE_NORMAL),
                    After::Reconnect,
                );
            }
            Phase::Ready => {
                if now >= self.liveness_deadline() {
                    self.link_down(
                        now,
                        DisconnectReason::HeartbeatTimeout,
                        Some(WS_CLOSE_NORMAL),
                        After::Reconnect,
                    );
                } else if let Some(at) = self.next_heartbeat {
                    if now >= at {
                        self.queue_heartbeat(now);
                    }
                }
            }
            Phase::Backoff { at } if now >= at => self.backoff_elapsed(now),
            _ => {}
        }
    }

    /// Write the next frame into `buf`
    ///
    /// Order: WebSocket close, handshake + login, heartbeat echoes, pong, heartbeat.
    ///
    /// # Errors
    /// [`BufferTooSmall`] with the exact size; the frame stays queued and nothing changed.
    #[must_use = "a queued frame must be sent"]
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<Transmit<()>>, BufferTooSmall> {
        let now = self.clock.update(now);
        if let Some(code) = self.tx_ws_close {
            self.tx_ws_close = None;
            bump(&mut self.stats.packets_sent);
            return Ok(Some(transmit(0, FrameKind::WsClose(code))));
        }
        if self.tx_login && matches!(self.phase, Phase::Login { .. }) {
            let len = self.write_login(buf)?;
            self.tx_login = false;
            self.tx_handshake = false;
            bump(&mut self.stats.packets_sent);
            return Ok(Some(transmit(len, self.data_kind())));
        }
        if self.tx_handshake {
            let bytes = self.config.handshake.to_bytes();
            let out = buf.get_mut(..bytes.len()).ok_or(BufferTooSmall {
                required: bytes.len(),
            })?;
            out.copy_from_slice(&bytes);
            self.tx_handshake = false;
            return Ok(Some(transmit(bytes.len(), FrameKind::Stream)));
        }
        if let Some(echo) = self.tx_echo.front() {
            let len = Packet::response(CMD_HEARTBEAT, echo.rid, Status::Success, &echo.body)
                .with_gzip(echo.gzip)
                .emit(buf)?;
            self.tx_echo.pop_front();
            bump(&mut self.stats.packets_sent);
            return Ok(Some(transmit(len, self.data_kind())));
        }
        if let Some(payload) = &self.tx_pong {
            let out = buf.get_mut(..payload.len()).ok_or(BufferTooSmall {
                required: payload.len(),
            })?;
            out.copy_from_slice(payload);
            let len = payload.len();
            self.tx_pong = None;
            bump(&mut self.stats.packets_sent);
            return Ok(Some(transmit(len, FrameKind::WsPong)));
        }
        if let Some(rid) = self.tx_heartbeat {
            let body = Heartbeat::new(
                self.wall_ms(now).unwrap_or_else(|| millis(now)),
                Some(heartbeat_id(rid)),
            );
            let t = match self.config.transport {
                Transport::Tcp => {
                    let len = write_request(buf, &[], CMD_HEARTBEAT, rid, 0, &body)?;
                    transmit(len, FrameKind::Stream)
                }
                Transport::WebSocket => transmit(body.encode(buf)?, FrameKind::WsPing),
            };
            self.tx_heartbeat = None;
            self.hb_outstanding = Some((rid, now));
            bump(&mut self.stats.heartbeats_sent);
            bump(&mut self.stats.packets_sent);
            return Ok(Some(t));
        }
        Ok(None)
    }

    /// Next event: queued events first, then request outcomes, then the final `Closed`
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent<SESSION>> {
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        if let Some(i) = self
            .pending
            .iter()
            .position(|p| p.outcome != Outcome::Waiting)
        {
            let p = self.pending.remove(i);
            let id = RequestId(p.id);
            return Some(match p.outcome {
                Outcome::TimedOut => ClientEvent::RequestTimedOut { id },
                Outcome::Failed(reason) => ClientEvent::RequestFailed { id, reason },
                // not selected by the search above
                Outcome::Waiting => ClientEvent::RequestFailed {
                    id,
                    reason: RequestFailure::Disconnected,
                },
            });
        }
        self.closed_event
            .take()
            .map(|reason| ClientEvent::Closed { reason })
    }

    /// When [`Client::handle_timeout`] must be called next
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_deadline().map(|t| self.clock.to_caller(t))
    }

    /// The next deadline in machine time (see `time::Clock`)
    fn next_deadline(&self) -> Option<Instant> {
        let phase = match self.phase {
            Phase::Dialing { deadline }
            | Phase::AwaitToken { deadline }
            | Phase::Login { deadline, .. } => Some(deadline),
            Phase::Ready => earliest(self.next_heartbeat, Some(self.liveness_deadline())),
            Phase::Backoff { at } => Some(at),
            Phase::Idle | Phase::NeedToken | Phase::Stopped | Phase::Closed => None,
        };
        self.pending
            .iter()
            .filter(|p| p.outcome == Outcome::Waiting)
            .fold(phase, |t, p| earliest(t, Some(p.deadline)))
    }

    // ----------------------------------------------------------------------------------------
    // Internals
    // ----------------------------------------------------------------------------------------

    fn events_free(&self) -> usize {
        EVENTS.saturating_sub(self.events.len())
    }

    fn push_event(&mut self, e: ClientEvent<SESSION>) {
        if self.events.push_back(e).is_err() {
            bump(&mut self.stats.events_dropped);
        }
    }

    const fn data_kind(&self) -> FrameKind {
        match self.config.transport {
            Transport::Tcp => FrameKind::Stream,
            Transport::WebSocket => FrameKind::WsBinary,
        }
    }

    fn liveness_deadline(&self) -> Instant {
        self.last_alive
            .saturating_add(self.config.heartbeat_timeout)
    }

    fn can_login(&self, now: Instant) -> bool {
        self.token.is_some() || self.session_resumable(now)
    }

    fn request_token(&mut self) {
        if !self.token_requested {
            self.token_requested = true;
            self.push_event(ClientEvent::TokenNeeded);
        }
    }

    fn id_in_use(&self, id: u32) -> bool {
        matches!(self.phase, Phase::Login { rid, .. } if rid == id)
            || self.tx_heartbeat == Some(id)
            || matches!(self.hb_outstanding, Some((rid, _)) if rid == id)
            || self.pending.iter().any(|p| p.id == id)
    }

    /// Next free request id: skips 0 and ids in use (at most REQS + 3 are in use)
    fn alloc_id(&mut self) -> u32 {
        let mut id = self.next_id;
        for _ in 0..REQS.saturating_add(4) {
            id = self.next_id;
            self.next_id = id.checked_add(1).unwrap_or(1);
            if !self.id_in_use(id) {
                break;
            }
        }
        id
    }

    fn dial(&mut self, now: Instant) {
        if self.attempt > 0 {
            bump(&mut self.stats.reconnects);
        }
        self.phase = Phase::Dialing {
            deadline: now.saturating_add(self.config.connect_timeout),
        };
        self.push_event(ClientEvent::ConnectTransport {
            attempt: self.attempt,
        });
    }

    fn start_login(&mut self, now: Instant, kind: LoginKind) {
        let rid = self.alloc_id();
        self.tx_login = true;
        self.phase = Phase::Login {
            kind,
            rid,
            deadline: now.saturating_add(self.config.auth_timeout),
        };
    }

    /// Forget everything tied to the current transport
    fn clear_link(&mut self) {
        self.tx_handshake = false;
        self.tx_login = false;
        self.tx_echo.clear();
        self.tx_pong = None;
        self.tx_heartbeat = None;
        self.tx_ws_close = None;
        self.hb_outstanding = None;
        self.next_heartbeat = None;
        self.deframer = StreamDeframer::new(false, self.config.max_body);
    }

    fn fail_pending(&mut self, reason: RequestFailure) {
        for p in &mut self.pending {
            if p.outcome == Outcome::Waiting {
                p.outcome = Outcome::Failed(reason);
                bump(&mut self.stats.requests_failed);
            }
        }
    }

    /// The current transport is finished; `ws_close` is queued on an open WebSocket
    fn link_down(
        &mut self,
        now: Instant,
        reason: DisconnectReason,
        ws_close: Option<u16>,
        after: After,
    ) {
        let was_up = self.phase.link_up();
        self.clear_link();
        if was_up && self.config.transport == Transport::WebSocket {
            self.tx_ws_close = ws_close;
        }
        self.fail_pending(RequestFailure::Disconnected);
        self.last_reason = reason;
        bump(&mut self.stats.disconnects);
        self.push_event(ClientEvent::Disconnected { reason });
        match after {
            After::Reconnect => self.schedule_reconnect(now),
            After::ReAuth => {
                self.session = None;
                self.token = None;
                self.schedule_reconnect(now);
            }
            After::Stop => {
                // counts as a failed attempt: a later reconnect_now is a reconnect
                self.attempt = self.attempt.saturating_add(1);
                self.phase = Phase::Stopped;
            }
        }
    }

    fn apply_close(
        &mut self,
        now: Instant,
        reason: DisconnectReason,
        action: CloseAction,
        ws_close: Option<u16>,
    ) {
        let after = match action {
            CloseAction::Reconnect => After::Reconnect,
            CloseAction::ReAuth => After::ReAuth,
            CloseAction::Stop => After::Stop,
        };
        self.link_down(now, reason, ws_close, after);
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let shift = attempt.saturating_sub(1).min(31);
        let delay = self
            .config
            .reconnect_base
            .checked_mul(1u32 << shift)
            .unwrap_or(Duration::MAX)
            .min(self.config.reconnect_max);
        let jitter = self.config.jitter.map_or(Duration::ZERO, |j| j(attempt));
        delay.saturating_add(jitter)
    }

    fn schedule_reconnect(&mut self, now: Instant) {
        self.attempt = self.attempt.saturating_add(1);
        if let Some(max) = self.config.max_reconnect_attempts {
            if self.attempt > max {
                self.finish(self.last_reason);
                return;
            }
        }
        let at = now.saturating_add(self.backoff(self.attempt));
        self.phase = Phase::Backoff { at };
        if !self.can_login(now) {
            self.session = None;
            self.request_token();
        }
        self.push_event(ClientEvent::ReconnectScheduled {
            at,
            attempt: self.attempt,
        });
    }

    fn backoff_elapsed(&mut self, now: Instant) {
        if !self.session_resumable(now) {
            self.session = None;
        }
        if self.can_login(now) {
            self.dial(now);
        } else {
            self.request_token();
            self.phase = Phase::NeedToken;
        }
    }

    fn finish(&mut self, reason: DisconnectReason) {
        self.fail_pending(RequestFailure::Closed);
        self.phase = Phase::Closed;
        self.closed_event = Some(reason);
    }

    fn queue_heartbeat(&mut self, now: Instant) {
        self.next_heartbeat = self
            .config
            .heartbeat_interval
            .map(|i| now.saturating_add(i));
        if self.tx_heartbeat.is_none() {
            self.tx_heartbeat = Some(self.alloc_id());
        }
    }

    fn heartbeat_acked(&mut self, now: Instant) {
        if let Some((_, sent)) = self.hb_outstanding.take() {
            bump(&mut self.stats.heartbeat_acks);
            self.push_event(ClientEvent::HeartbeatRtt {
                rtt: now.saturating_duration_since(sent),
            });
        }
    }

    fn write_login(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let Phase::Login { kind, rid, .. } = self.phase else {
            return Ok(0);
        };
        let hs = self.config.handshake.to_bytes();
        let prefix: &[u8] = if self.tx_handshake { &hs } else { &[] };
        let timeout = header_timeout(self.config.auth_timeout);
        let mut pairs: Vec<(&str, &str), MAX_METADATA_PAIRS> = Vec::new();
        let mut r = Reader::new(&self.meta);
        while let (Some(k), Some(v)) = (read_str(&mut r), read_str(&mut r)) {
            if pairs.push((k, v)).is_err() {
                break;
            }
        }
        let metadata = Metadata::from_pairs(&pairs);
        match kind {
            LoginKind::Auth => {
                let token = self.token.as_ref().map_or("", |t| t.as_str());
                let body = AuthRequest::new(token, metadata);
                write_request(buf, prefix, CMD_AUTH, rid, timeout, &body)
            }
            LoginKind::Reconnect => {
                let session = self.session.as_ref().map_or("", |s| s.id.as_str());
                let body = ReconnectRequest::new(session, metadata);
                write_request(buf, prefix, CMD_RECONNECT, rid, timeout, &body)
            }
        }
    }

    fn queue_echo(&mut self, rid: u32, gzip: bool, body: &[u8]) {
        match Vec::from_slice(body) {
            Ok(body) => {
                if self.tx_echo.push_back(Echo { rid, gzip, body }).is_ok() {
                    bump(&mut self.stats.heartbeats_answered);
                } else {
                    bump(&mut self.stats.dropped);
                }
            }
            Err(_) => bump(&mut self.stats.dropped),
        }
    }

    fn on_packet<'a>(&mut self, now: Instant, p: Packet<'a>) -> Option<App<'a>> {
        bump(&mut self.stats.packets_received);
        if self.config.any_inbound_is_alive {
            self.last_alive = now;
        }
        let h = p.header;
        match h.kind {
            Kind::Request { request_id, .. } => {
                if h.cmd == CMD_HEARTBEAT {
                    self.last_alive = now;
                    self.queue_echo(request_id, h.gzip, p.body);
                } else {
                    bump(&mut self.stats.dropped);
                }
                None
            }
            Kind::Response { request_id, status } => {
                self.on_response(now, h, request_id, status, p.body)
            }
            Kind::Push if h.cmd == CMD_CLOSE => {
                self.on_close_push(now, h, p.body);
                None
            }
            Kind::Push => {
                bump(&mut self.stats.pushes);
                Some(App::Push {
                    cmd: h.cmd,
                    body: p.body,
                    gzip: h.gzip,
                })
            }
        }
    }

    fn on_response<'a>(
        &mut self,
        now: Instant,
        h: Header,
        request_id: u32,
        status: Status,
        body: &'a [u8],
    ) -> Option<App<'a>> {
        if let Phase::Login { kind, rid, .. } = self.phase {
            if rid == request_id {
                self.on_login_response(now, kind, h, status, body);
                return None;
            }
        }
        if matches!(self.hb_outstanding, Some((rid, _)) if rid == request_id) {
            self.last_alive = now;
            self.heartbeat_acked(now);
            return None;
        }
        let waiting = self
            .pending
            .iter()
            .position(|p| p.id == request_id && p.outcome == Outcome::Waiting);
        let Some(i) = waiting else {
            bump(&mut self.stats.unmatched_responses);
            return None;
        };
        self.pending.remove(i);
        bump(&mut self.stats.responses);
        let error = if status.is_success() || h.gzip {
            None
        } else {
            match ErrorBody::decode(body) {
                Ok(e) => Some(e),
                Err(_) => {
                    bump(&mut self.stats.decode_errors);
                    None
                }
            }
        };
        Some(App::Response {
            cmd: h.cmd,
            request_id: RequestId(request_id),
            status,
            body,
            gzip: h.gzip,
            error,
        })
    }

    fn protocol_error(&mut self, now: Instant, e: ProtocolError) {
        bump(&mut self.stats.decode_errors);
        self.link_down(
            now,
            DisconnectReason::Protocol(e),
            Some(WS_CLOSE_PROTOCOL),
            After::Reconnect,
        );
    }

    fn on_login_response(
        &mut self,
        now: Instant,
        kind: LoginKind,
        h: Header,
        status: Status,
        body: &[u8],
    ) {
        if kind == LoginKind::Auth {
            // one-time password: used up whatever the answer
            self.token = None;
        }
        let mut scratch = [0u8; CONTROL_INFLATE_LEN];
        let body = match control_body(&h, body, &mut scratch) {
            Ok(b) => b,
            Err(e) => return self.protocol_error(now, e),
        };
        if status.is_success() {
            match SessionGrant::decode(body) {
                Ok(grant) => self.on_granted(now, kind, &grant),
                Err(error) => {
                    self.protocol_error(now, ProtocolError::ControlBody { cmd: h.cmd, error });
                }
            }
            return;
        }
        let (code, message) = match ErrorBody::decode(body) {
            Ok(e) => (Some(e.code), truncated(e.msg)),
            Err(_) => {
                bump(&mut self.stats.decode_errors);
                (None, Text::new())
            }
        };
        self.push_event(ClientEvent::LoginFailed {
            kind,
            status,
            code,
            message,
        });
        self.link_down(
            now,
            DisconnectReason::LoginRejected(status),
            Some(WS_CLOSE_NORMAL),
            After::ReAuth,
        );
    }

    fn on_granted(&mut self, now: Instant, via: LoginKind, g: &SessionGrant<'_>) {
        let mut id: String<SESSION> = String::new();
        if id.push_str(g.session_id).is_err() {
            id.clear();
            bump(&mut self.stats.decode_errors);
        }
        let relative_deadline = if self.config.relative_expiry_heuristic
            && g.expires > 0
            && g.expires < RELATIVE_EXPIRY_LIMIT_MS
        {
            Some(now.saturating_add(Duration::from_millis(g.expires.unsigned_abs())))
        } else {
            None
        };
        self.session = Some(Session {
            id: id.clone(),
            expires: g.expires,
            relative_deadline,
        });
        let resumable = self.session_resumable(now);
        self.attempt = 0;
        self.token_requested = false;
        self.phase = Phase::Ready;
        self.last_alive = now;
        self.next_heartbeat = self
            .config
            .heartbeat_interval
            .map(|i| now.saturating_add(i));
        self.push_event(ClientEvent::Authenticated {
            session_id: id,
            expires: g.expires,
            limit: g.limit,
            online: g.online,
            via,
            resumable,
        });
    }

    fn on_close_push(&mut self, now: Instant, h: Header, body: &[u8]) {
        let mut scratch = [0u8; CONTROL_INFLATE_LEN];
        let body = match control_body(&h, body, &mut scratch) {
            Ok(b) => b,
            Err(e) => return self.protocol_error(now, e),
        };
        match Close::decode(body) {
            Ok(c) => {
                let action = close_action(c.code);
                self.push_event(ClientEvent::ServerClosed {
                    code: c.code,
                    reason: truncated(c.reason),
                    action,
                });
                self.apply_close(
                    now,
                    DisconnectReason::ServerClose(c.code),
                    action,
                    Some(WS_CLOSE_NORMAL),
                );
            }
            Err(error) => {
                self.protocol_error(now, ProtocolError::ControlBody { cmd: h.cmd, error })
            }
        }
    }
}

/// The per-code reaction to a Close push (spec 6.3, recommendation)
#[must_use]
pub const fn close_action(code: CloseCode) -> CloseAction {
    match code {
        CloseCode::AuthError | CloseCode::SessExpired => CloseAction::ReAuth,
        CloseCode::ConnectDuplicate => CloseAction::Stop,
        CloseCode::HeartbeatTimeout
        | CloseCode::ServerError
        | CloseCode::ServerShutdown
        | CloseCode::UnpackError
        | CloseCode::Other(_) => CloseAction::Reconnect,
    }
}

crate::machine::impl_machine! {
    impl[
        const REQS: usize,
        const EVENTS: usize,
        const TOKEN: usize,
        const SESSION: usize,
        const META: usize,
    ] for Client<REQS, EVENTS, TOKEN, SESSION, META> {
        Peer = (),
        Event = ClientEvent<SESSION>,
        App<'a> = App<'a>,
        Error = InputError,
    }
    frames {}
}

/// The uncompressed body of a control packet: as is, or inflated into `scratch`
fn control_body<'b>(
    h: &Header,
    body: &'b [u8],
    scratch: &'b mut [u8],
) -> Result<&'b [u8], ProtocolError> {
    if !h.gzip {
        return Ok(body);
    }
    let bad = ProtocolError::CompressedControl { cmd: h.cmd };
    #[cfg(feature = "gzip")]
    {
        let n = crate::longport::gzip::gunzip(body, scratch).map_err(|_| bad)?;
        scratch.get(..n).ok_or(bad)
    }
    #[cfg(not(feature = "gzip"))]
    {
        let _ = scratch;
        Err(bad)
    }
}

/// Count one more (saturating)
fn bump(counter: &mut u64) {
    *counter = counter.saturating_add(1);
}

const fn transmit(len: usize, kind: FrameKind) -> Transmit<()> {
    Transmit { to: (), len, kind }
}

/// The request header's timeout field: `min(ms, 60000)`
fn header_timeout(d: Duration) -> u16 {
    u16::try_from(d.as_millis())
        .unwrap_or(MAX_HEADER_TIMEOUT_MS)
        .min(MAX_HEADER_TIMEOUT_MS)
}

/// `heartbeat_id` for a request id: the id as i32, as the Go client casts it
const fn heartbeat_id(rid: u32) -> i32 {
    i32::from_ne_bytes(rid.to_ne_bytes())
}

fn millis(now: Instant) -> i64 {
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// Write `prefix`, a request header and `body` at the start of `buf`; nothing on error
fn write_request<'b>(
    buf: &mut [u8],
    prefix: &[u8],
    cmd: u8,
    rid: u32,
    timeout_ms: u16,
    body: &impl Body<'b>,
) -> Result<usize, BufferTooSmall> {
    let body_len = body.encoded_len();
    let header = Header {
        kind: Kind::Request {
            request_id: rid,
            timeout_ms,
        },
        cmd,
        gzip: false,
        verify: false,
        reserve: 0,
        body_len: u32::try_from(body_len).unwrap_or(u32::MAX),
    };
    let required = prefix
        .len()
        .saturating_add(header.len())
        .saturating_add(body_len);
    if body_len > MAX_BODY_LEN {
        return Err(BufferTooSmall {
            required: usize::MAX,
        });
    }
    let out = buf.get_mut(..required).ok_or(BufferTooSmall { required })?;
    let (pre, rest) = out.split_at_mut(prefix.len());
    pre.copy_from_slice(prefix);
    let hlen = header.emit(rest)?;
    let body_out = rest.get_mut(hlen..).ok_or(BufferTooSmall { required })?;
    body.encode(body_out)?;
    Ok(required)
}

fn store_token<const N: usize>(token: &str) -> Option<String<N>> {
    let mut s = String::new();
    s.push_str(token).ok()?;
    Some(s)
}

/// Metadata stored as `u16 len, key, u16 len, value` per pair
fn store_metadata<const N: usize>(pairs: &[(&str, &str)]) -> Option<Vec<u8, N>> {
    if pairs.len() > MAX_METADATA_PAIRS {
        return None;
    }
    let mut out = Vec::new();
    for (k, v) in pairs {
        for s in [k, v] {
            let len = u16::try_from(s.len()).ok()?;
            out.extend_from_slice(&len.to_be_bytes()).ok()?;
            out.extend_from_slice(s.as_bytes()).ok()?;
        }
    }
    Some(out)
}

fn read_str<'a>(r: &mut Reader<'a>) -> Option<&'a str> {
    let len = r.u16()?;
    core::str::from_utf8(r.bytes(usize::from(len))?).ok()
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::vec;
    use std::vec::Vec as StdVec;

    use super::*;
    use crate::longport::wire::MAX_PACKET_LEN;
    use crate::machine::Machine;

    type C = Client<4, 16, 64, 32, 64>;
    type Ev = ClientEvent<32>;

    const T0: Instant = Instant::from_secs(1_000);
    /// Wall clock at T0 (spec vector V2's timestamp)
    const WALL_T0: i64 = 1_700_000_000_000;
    /// V7's expires: one day after WALL_T0
    const EXPIRES: i64 = 1_700_086_400_000;

    fn at(ms: u64) -> Instant {
        T0 + Duration::from_millis(ms)
    }

    fn hex(s: &str) -> StdVec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    fn pkt(p: Packet<'_>) -> StdVec<u8> {
        let mut b = vec![0; p.buffer_len()];
        assert_eq!(p.emit(&mut b), Ok(b.len()));
        b
    }

    fn enc<'a>(body: &impl Body<'a>) -> StdVec<u8> {
        let mut b = vec![0; body.encoded_len()];
        assert_eq!(body.encode(&mut b), Ok(b.len()));
        b
    }

    fn grant(session: &str, expires: i64) -> StdVec<u8> {
        enc(&SessionGrant {
            session_id: session,
            expires,
            limit: 10,
            online: 1,
        })
    }

    fn sid(s: &str) -> String<32> {
        String::try_from(s).unwrap()
    }

    fn cfg_tcp() -> ClientConfig {
        ClientConfig::tcp().with_wall_offset_ms(WALL_T0 - millis(T0))
    }

    fn cfg_ws() -> ClientConfig {
        ClientConfig::websocket().with_wall_offset_ms(WALL_T0 - millis(T0))
    }

    fn events(c: &mut C) -> StdVec<Ev> {
        core::iter::from_fn(|| c.poll_event()).collect()
    }

    fn tx(c: &mut C, now: Instant) -> StdVec<(FrameKind, StdVec<u8>)> {
        let mut out = StdVec::new();
        let mut buf = [0u8; 512];
        while let Some(t) = c.poll_transmit(now, &mut buf).unwrap() {
            out.push((t.kind, buf[..t.len].to_vec()));
        }
        out
    }

    /// Feed a whole server byte sequence, returning the app data seen (as owned summaries)
    fn feed(c: &mut C, now: Instant, bytes: &[u8]) -> StdVec<(u8, StdVec<u8>)> {
        let mut apps = StdVec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let r = c.handle_input(now, (), rest).unwrap();
            if let Some(app) = r.app() {
                match app {
                    App::Response { cmd, body, .. } | App::Push { cmd, body, .. } => {
                        apps.push((*cmd, body.to_vec()));
                    }
                }
            }
            assert!(r.bytes_consumed() > 0, "whole packets are fed: {r:?}");
            rest = &rest[r.bytes_consumed()..];
        }
        apps
    }

    /// Parse a client request: (cmd, request id, timeout field, body)
    fn request(bytes: &[u8]) -> (u8, u32, u16, StdVec<u8>) {
        let (p, n) = Packet::parse(bytes, MAX_BODY_LEN).unwrap();
        assert_eq!(n, bytes.len());
        match p.header.kind {
            Kind::Request {
                request_id,
                timeout_ms,
            } => (p.header.cmd, request_id, timeout_ms, p.body.to_vec()),
            k => panic!("not a request: {k:?}"),
        }
    }

    /// Connect (or continue after ConnectTransport) and return the login request
    fn open_transport(c: &mut C, now: Instant) -> (u8, u32, u16, StdVec<u8>) {
        c.handle_connected(now).unwrap();
        let out = tx(c, now);
        assert_eq!(out.len(), 1, "{out:?}");
        let (kind, bytes) = &out[0];
        match c.config().transport {
            Transport::Tcp => {
                assert_eq!(*kind, FrameKind::Stream);
                assert_eq!(&bytes[..2], &[0x11, 0x09], "handshake first");
                request(&bytes[2..])
            }
            Transport::WebSocket => {
                assert_eq!(*kind, FrameKind::WsBinary);
                request(bytes)
            }
        }
    }

    fn ready_with(cfg: ClientConfig) -> C {
        let mut c = C::new(cfg);
        c.connect(T0, Credentials::new("abc")).unwrap();
        assert_eq!(events(&mut c), [Ev::ConnectTransport { attempt: 0 }]);
        let (cmd, rid, _, _) = open_transport(&mut c, T0);
        assert_eq!(cmd, CMD_AUTH);
        let resp = pkt(Packet::response(
            CMD_AUTH,
            rid,
            Status::Success,
            &grant("s1", EXPIRES),
        ));
        feed(&mut c, T0, &resp);
        let ev = events(&mut c);
        assert!(
            matches!(ev.as_slice(), [Ev::Authenticated { .. }]),
            "{ev:?}"
        );
        assert!(c.is_ready());
        c
    }

    fn ready_tcp() -> C {
        ready_with(cfg_tcp())
    }

    fn send(c: &mut C, now: Instant, cmd: u8, timeout: Duration, body: &[u8]) -> RequestId {
        let mut out = [0u8; 256];
        let (id, t) = c.send_request(now, cmd, timeout, body, &mut out).unwrap();
        let (rcmd, rid, _, rbody) = request(&out[..t.len]);
        assert_eq!((rcmd, rid, rbody.as_slice()), (cmd, id.0, body));
        id
    }

    #[test]
    fn auth_ok_tcp_matches_spec_vectors_and_reports_the_grant() {
        let mut cfg = cfg_tcp();
        cfg.auth_timeout = Duration::from_secs(5);
        let mut c = C::new(cfg);
        assert_eq!(c.state(), ClientState::Idle);
        assert_eq!(c.poll_timeout(), None);
        c.connect(T0, Credentials::new("abc")).unwrap();
        assert_eq!(events(&mut c), [Ev::ConnectTransport { attempt: 0 }]);
        assert_eq!(c.state(), ClientState::Connecting);
        assert_eq!(c.poll_timeout(), Some(at(10_000)), "connect timeout");
        c.handle_connected(T0).unwrap();
        assert_eq!(c.state(), ClientState::LoggingIn);
        assert_eq!(c.poll_timeout(), Some(at(5_000)), "auth timeout");
        // V6: handshake and auth pipelined in one write, RS-style timeout 5000
        let out = tx(&mut c, T0);
        assert_eq!(
            out,
            [(
                FrameKind::Stream,
                hex("11 09 01 02 00 00 00 01 13 88 00 00 05 0a 03 61 62 63")
            )]
        );
        // V7 with limit/online
        let resp =
            hex("02 02 00 00 00 01 00 00 00 0f 0a 02 73 31 10 80 88 af a8 bd 31 18 0a 20 01");
        let r = c.handle_input(T0, (), &resp).unwrap();
        assert_eq!((r.bytes_consumed(), r.app()), (resp.len(), None));
        assert_eq!(
            events(&mut c),
            [Ev::Authenticated {
                session_id: sid("s1"),
                expires: EXPIRES,
                limit: 10,
                online: 1,
                via: LoginKind::Auth,
                resumable: true,
            }]
        );
        assert_eq!(c.state(), ClientState::Ready);
        assert_eq!(c.session_id(), Some("s1"));
        assert!(!c.has_token(), "one-time token used up");
        assert_eq!(c.poll_timeout(), Some(at(60_000)), "first heartbeat");
    }

    #[test]
    fn auth_carries_metadata() {
        let mut c = C::new(cfg_tcp());
        let meta = [("accept-language", "en")];
        c.connect(T0, Credentials::new("abc").with_metadata(&meta))
            .unwrap();
        let (_, _, timeout, body) = open_transport(&mut c, T0);
        assert_eq!(timeout, 10_000);
        assert_eq!(
            body,
            hex("0a 03 61 62 63 12 15 0a 0f 61 63 63 65 70 74 2d 6c 61 6e 67 75 61 67 65 12 02 65 6e")
        );
    }

    #[test]
    fn credentials_too_large_are_refused_without_change() {
        let mut c = C::new(cfg_tcp());
        let long = "x".repeat(65);
        assert_eq!(
            c.connect(T0, Credentials::new(&long)),
            Err(ConnectError::TokenTooLong { max: 64 })
        );
        let meta = [("k", "v"); MAX_METADATA_PAIRS + 1];
        assert_eq!(
            c.connect(T0, Credentials::new("abc").with_metadata(&meta)),
            Err(ConnectError::MetadataTooLarge)
        );
        assert_eq!(c.state(), ClientState::Idle);
        assert!(events(&mut c).is_empty());
    }

    #[test]
    fn auth_denied_reports_status_and_error_code_then_asks_for_a_token() {
        let mut c = C::new(cfg_tcp());
        c.connect(T0, Credentials::new("abc")).unwrap();
        let _ = events(&mut c);
        let (_, rid, _, _) = open_transport(&mut c, T0);
        let err = enc(&ErrorBody::new(403, "connections limitation is hit"));
        let resp = pkt(Packet::response(
            CMD_AUTH,
            rid,
            Status::Unauthenticated,
            &err,
        ));
        feed(&mut c, at(5), &resp);
        let mut message = Text::new();
        message.push_str("connections limitation is hit").unwrap();
        assert_eq!(
            events(&mut c),
            [
                Ev::LoginFailed {
                    kind: LoginKind::Auth,
                    status: Status::Unauthenticated,
                    code: Some(403),
                    message,
                },
                Ev::Disconnected {
                    reason: DisconnectReason::LoginRejected(Status::Unauthenticated)
                },
                Ev::TokenNeeded,
                Ev::ReconnectScheduled {
                    at: at(1_005),
                    attempt: 1
                },
            ]
        );
        assert!(!c.has_token());
        assert_eq!(c.session_id(), None);
        // the back-off elapses without a token: wait for one, no second TokenNeeded
        c.handle_timeout(at(1_005));
        assert!(events(&mut c).is_empty());
        assert_eq!(c.state(), ClientState::NeedToken);
        assert_eq!(c.poll_timeout(), None);
        c.provide_token(at(2_000), "fresh").unwrap();
        assert_eq!(events(&mut c), [Ev::ConnectTransport { attempt: 1 }]);
        let (cmd, _, _, body) = open_transport(&mut c, at(2_000));
        assert_eq!(cmd, CMD_AUTH);
        assert_eq!(AuthRequest::decode(&body).unwrap().token, "fresh");
    }

    #[test]
    fn tcp_input_byte_at_a_time() {
        let mut c = C::new(cfg_tcp());
        c.connect(T0, Credentials::new("abc")).unwrap();
        let (_, rid, _, _) = open_transport(&mut c, T0);
        let mut stream = pkt(Packet::response(
            CMD_AUTH,
            rid,
            Status::Success,
            &grant("s1", EXPIRES),
        ));
        stream.extend(pkt(Packet::push(101, &[7, 8, 9])));
        let first = stream.len() - 8;
        let mut buf = StdVec::new();
        let mut pushes = 0;
        for &b in &stream {
            buf.push(b);
            let r = c.handle_input(T0, (), &buf).unwrap();
            if r.bytes_consumed() == 0 {
                let need = r.needed().unwrap();
                assert!(need > buf.len(), "need {need} with {} buffered", buf.len());
                continue;
            }
            assert_eq!(r.needed(), None);
            if let Some(App::Push { cmd, body, gzip }) = r.app() {
                assert_eq!((*cmd, *body, *gzip), (101, &[7u8, 8, 9][..], false));
                pushes += 1;
            } else {
                assert_eq!(r.bytes_consumed(), first);
                assert!(c.is_ready());
            }
            let n = r.bytes_consumed();
            buf.drain(..n);
        }
        assert!(buf.is_empty());
        assert_eq!(pushes, 1);
        assert_eq!(c.stats().pushes, 1);
    }

    #[test]
    fn undecodable_tcp_stream_ends_the_connection() {
        let mut c = ready_tcp();
        let r = c.handle_input(at(1), (), &[0xEC, 1, 2]).unwrap();
        assert_eq!(r.bytes_consumed(), 3);
        let ev = events(&mut c);
        assert_eq!(
            ev[0],
            Ev::Disconnected {
                reason: DisconnectReason::Protocol(ProtocolError::Framing(
                    crate::longport::deframe::DeframeError::UnknownType(12)
                ))
            }
        );
        assert_eq!(c.state(), ClientState::WaitingToReconnect);
        assert_eq!(c.stats().decode_errors, 1);
        // later bytes of the dead transport are dropped
        let r = c.handle_input(at(2), (), &[1, 2, 3]).unwrap();
        assert_eq!(r.bytes_consumed(), 3);
        assert!(events(&mut c).is_empty());
    }

    #[test]
    fn heartbeat_cadence_and_rtt_over_tcp() {
        let mut c = ready_tcp();
        assert_eq!(c.poll_timeout(), Some(at(60_000)));
        c.handle_timeout(at(59_999));
        assert!(tx(&mut c, at(59_999)).is_empty(), "early call is a no-op");
        c.handle_timeout(at(60_000));
        let out = tx(&mut c, at(60_000));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, FrameKind::Stream);
        let (cmd, rid, timeout, body) = request(&out[0].1);
        assert_eq!((cmd, rid, timeout), (CMD_HEARTBEAT, 2, 0));
        let hb = Heartbeat::decode(&body).unwrap();
        assert_eq!(hb, Heartbeat::new(WALL_T0 + 60_000, Some(2)));
        assert_eq!(c.poll_timeout(), Some(at(120_000)));
        // the echo is matched by id; the body is not trusted for timing
        let echo = pkt(Packet::response(CMD_HEARTBEAT, rid, Status::Success, &[]));
        feed(&mut c, at(60_250), &echo);
        assert_eq!(
            events(&mut c),
            [Ev::HeartbeatRtt {
                rtt: Duration::from_millis(250)
            }]
        );
        assert_eq!(c.stats().heartbeats_sent, 1);
        assert_eq!(c.stats().heartbeat_acks, 1);
        c.handle_timeout(at(120_000));
        let (cmd, rid2, _, _) = request(&tx(&mut c, at(120_000))[0].1);
        assert_eq!((cmd, rid2), (CMD_HEARTBEAT, 3));
        // the spec's V5 shape: rid 1 with heartbeat_id 1
        let v5 = hex("01 01 00 00 00 01 00 00 00 00 09 08 80 d0 95 ff bc 31 10 01");
        let mut buf = [0u8; 64];
        let n = write_request(
            &mut buf,
            &[],
            CMD_HEARTBEAT,
            1,
            0,
            &Heartbeat::new(WALL_T0, Some(heartbeat_id(1))),
        )
        .unwrap();
        assert_eq!(&buf[..n], v5.as_slice());
    }

    #[test]
    fn heartbeat_timeout_ends_the_connection_and_fails_requests() {
        let mut c = ready_tcp();
        let id = send(&mut c, at(10_000), 11, Duration::from_secs(500), &[1]);
        c.handle_timeout(at(60_000));
        let _ = tx(&mut c, at(60_000));
        c.handle_timeout(at(119_999));
        assert!(events(&mut c).is_empty());
        assert_eq!(c.poll_timeout(), Some(at(120_000)));
        c.handle_timeout(at(120_000));
        assert_eq!(
            events(&mut c),
            [
                Ev::Disconnected {
                    reason: DisconnectReason::HeartbeatTimeout
                },
                Ev::ReconnectScheduled {
                    at: at(121_000),
                    attempt: 1
                },
                Ev::RequestFailed {
                    id,
                    reason: RequestFailure::Disconnected
                },
            ]
        );
        assert!(
            tx(&mut c, at(120_000)).is_empty(),
            "TCP: nothing to send, caller closes"
        );
        assert_eq!(c.session_id(), Some("s1"), "session kept for reconnect");
    }

    #[test]
    fn any_inbound_packet_counts_as_liveness_unless_disabled() {
        for any in [true, false] {
            let mut cfg = cfg_tcp();
            cfg.any_inbound_is_alive = any;
            cfg.heartbeat_interval = None;
            let mut c = ready_with(cfg);
            assert_eq!(c.poll_timeout(), Some(at(120_000)));
            feed(&mut c, at(100_000), &pkt(Packet::push(101, &[])));
            let expect = if any { at(220_000) } else { at(120_000) };
            assert_eq!(
                c.poll_timeout(),
                Some(expect),
                "any_inbound_is_alive = {any}"
            );
        }
    }

    #[test]
    fn server_heartbeat_requests_are_echoed() {
        let mut c = ready_tcp();
        // V3 with rid 77: echoed as V4 with rid 77
        let req = hex("01 01 00 00 00 4d 00 00 00 00 07 08 80 d0 95 ff bc 31");
        let apps = feed(&mut c, at(1), &req);
        assert!(apps.is_empty());
        assert_eq!(
            tx(&mut c, at(1)),
            [(
                FrameKind::Stream,
                hex("02 01 00 00 00 4d 00 00 00 07 08 80 d0 95 ff bc 31")
            )]
        );
        assert_eq!(c.stats().heartbeats_answered, 1);
        // a server request of another command is dropped
        feed(&mut c, at(2), &pkt(Packet::request(9, 5, 0, &[])));
        assert!(tx(&mut c, at(2)).is_empty());
        assert_eq!(c.stats().dropped, 1);
    }

    #[test]
    fn websocket_login_heartbeat_and_ping_pong() {
        let mut c = ready_with(cfg_ws());
        // client heartbeat: a ping carrying the Heartbeat body
        c.handle_timeout(at(60_000));
        let out = tx(&mut c, at(60_000));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, FrameKind::WsPing);
        let hb = Heartbeat::decode(&out[0].1).unwrap();
        assert_eq!(hb, Heartbeat::new(WALL_T0 + 60_000, Some(2)));
        // a pong for another id is only a sign of life
        let other = enc(&Heartbeat::new(1, Some(99)));
        c.handle_frame(at(60_050), (), FrameKind::WsPong, &other);
        assert!(events(&mut c).is_empty());
        c.handle_frame(at(60_100), (), FrameKind::WsPong, &out[0].1);
        assert_eq!(
            events(&mut c),
            [Ev::HeartbeatRtt {
                rtt: Duration::from_millis(100)
            }]
        );
        // server ping: pong with the same payload, and liveness
        c.handle_frame(at(100_000), (), FrameKind::WsPing, b"ping!");
        assert_eq!(
            tx(&mut c, at(100_000)),
            [(FrameKind::WsPong, b"ping!".to_vec())]
        );
        assert_eq!(c.poll_timeout(), Some(at(120_000)), "next heartbeat");
        c.handle_timeout(at(120_000));
        let _ = tx(&mut c, at(120_000));
        assert_eq!(c.poll_timeout(), Some(at(180_000)));
        c.handle_timeout(at(180_000));
        let _ = tx(&mut c, at(180_000));
        assert_eq!(
            c.poll_timeout(),
            Some(at(220_000)),
            "liveness from the ping at 100 s"
        );
        // an oversized ping payload is not answered
        c.handle_frame(at(180_001), (), FrameKind::WsPing, &[0; 126]);
        assert!(tx(&mut c, at(180_001)).is_empty());
        // server cmd-1 request over a binary message is echoed as a binary message
        let req = pkt(Packet::request(CMD_HEARTBEAT, 5, 0, b"hb"));
        feed(&mut c, at(180_002), &req);
        let out = tx(&mut c, at(180_002));
        assert_eq!(
            out,
            [(
                FrameKind::WsBinary,
                pkt(Packet::response(CMD_HEARTBEAT, 5, Status::Success, b"hb"))
            )]
        );
    }

    #[test]
    fn websocket_messages_are_consumed_whole_and_bad_ones_dropped() {
        let mut c = ready_with(cfg_ws());
        let mut msg = pkt(Packet::push(101, &[1]));
        msg.extend([0xAA, 0xBB]);
        let r = c.handle_input(at(1), (), &msg).unwrap();
        assert_eq!(r.bytes_consumed(), msg.len());
        assert!(matches!(r.app(), Some(App::Push { cmd: 101, .. })));
        assert_eq!(c.stats().trailing_bytes, 1);
        let r = c.handle_input(at(2), (), &[0x03, 0x65, 0x00]).unwrap();
        assert_eq!((r.bytes_consumed(), r.app()), (3, None));
        assert_eq!(c.stats().decode_errors, 1);
        assert!(c.is_ready(), "framing intact: connection kept");
    }

    fn close_push(code: i32, reason: &str) -> StdVec<u8> {
        pkt(Packet::push(
            CMD_CLOSE,
            &enc(&Close::new(CloseCode::from_i32(code), reason)),
        ))
    }

    #[test]
    fn close_codes_follow_the_per_code_policy() {
        for code in 0..=7 {
            let mut c = ready_tcp();
            let close_code = CloseCode::from_i32(code);
            feed(&mut c, at(1), &close_push(code, "bye"));
            let action = match code {
                4 | 5 => CloseAction::ReAuth,
                6 => CloseAction::Stop,
                _ => CloseAction::Reconnect,
            };
            let ev = events(&mut c);
            let mut reason = Text::new();
            reason.push_str("bye").unwrap();
            assert_eq!(
                ev[..2],
                [
                    Ev::ServerClosed {
                        code: close_code,
                        reason,
                        action
                    },
                    Ev::Disconnected {
                        reason: DisconnectReason::ServerClose(close_code)
                    },
                ],
                "code {code}"
            );
            let scheduled = Ev::ReconnectScheduled {
                at: at(1_001),
                attempt: 1,
            };
            match action {
                CloseAction::Reconnect => {
                    assert_eq!(ev[2..], [scheduled], "code {code}");
                    assert_eq!(c.session_id(), Some("s1"));
                    c.handle_timeout(at(1_001));
                    assert_eq!(events(&mut c), [Ev::ConnectTransport { attempt: 1 }]);
                    let (cmd, _, _, body) = open_transport(&mut c, at(1_100));
                    assert_eq!(cmd, CMD_RECONNECT, "code {code}");
                    assert_eq!(ReconnectRequest::decode(&body).unwrap().session_id, "s1");
                }
                CloseAction::ReAuth => {
                    assert_eq!(ev[2..], [Ev::TokenNeeded, scheduled], "code {code}");
                    assert_eq!(c.session_id(), None);
                    c.handle_timeout(at(1_001));
                    assert!(events(&mut c).is_empty());
                    assert_eq!(c.state(), ClientState::NeedToken);
                    c.provide_token(at(3_000), "t2").unwrap();
                    assert_eq!(events(&mut c), [Ev::ConnectTransport { attempt: 1 }]);
                    let (cmd, _, _, _) = open_transport(&mut c, at(3_000));
                    assert_eq!(cmd, CMD_AUTH);
                }
                CloseAction::Stop => {
                    assert_eq!(ev.len(), 2, "no automatic reconnect");
                    assert_eq!(c.state(), ClientState::Stopped);
                    assert_eq!(c.poll_timeout(), None);
                    c.reconnect_now(at(9_000)).unwrap();
                    assert_eq!(events(&mut c), [Ev::ConnectTransport { attempt: 1 }]);
                    let (cmd, _, _, _) = open_transport(&mut c, at(9_000));
                    assert_eq!(cmd, CMD_RECONNECT);
                }
            }
        }
    }

    #[test]
    fn empty_close_body_means_code_zero_and_ws_gets_a_close_frame() {
        let mut c = ready_with(cfg_ws());
        feed(&mut c, at(1), &hex("03 00 00 00 00"));
        let ev = events(&mut c);
        assert!(matches!(
            ev[0],
            Ev::ServerClosed {
                code: CloseCode::HeartbeatTimeout,
                action: CloseAction::Reconnect,
                ..
            }
        ));
        assert_eq!(tx(&mut c, at(1)), [(FrameKind::WsClose(1000), vec![])]);
    }

    #[test]
    fn websocket_close_frames_end_the_connection() {
        let mut c = ready_with(cfg_ws());
        c.handle_frame(at(1), (), FrameKind::WsClose(1001), b"going away");
        assert_eq!(
            events(&mut c),
            [
                Ev::Disconnected {
                    reason: DisconnectReason::WsClose(1001)
                },
                Ev::ReconnectScheduled {
                    at: at(1_001),
                    attempt: 1
                }
            ]
        );
        assert!(
            tx(&mut c, at(1)).is_empty(),
            "the WebSocket library answers the close"
        );
        let mut c = ready_with(cfg_ws());
        c.handle_frame(at(1), (), FrameKind::WsClose(4006), b"");
        assert_eq!(events(&mut c).len(), 1);
        assert_eq!(c.state(), ClientState::Stopped, "4000 + ConnectDuplicate");
    }

    #[test]
    fn reconnect_with_session_replaces_it_and_backs_off_exponentially() {
        fn jitter(attempt: u32) -> Duration {
            Duration::from_millis(u64::from(attempt))
        }
        let mut cfg = cfg_tcp().with_jitter(jitter);
        cfg.reconnect_max = Duration::from_secs(5);
        let mut c = ready_with(cfg);
        let mut now = at(1);
        let mut expected = StdVec::new();
        for (attempt, delay_ms) in [
            (1u32, 1_000u64),
            (2, 2_000),
            (3, 4_000),
            (4, 5_000),
            (5, 5_000),
        ] {
            c.handle_closed(now, ());
            let ev = events(&mut c);
            let at_ = now + Duration::from_millis(delay_ms + u64::from(attempt));
            assert_eq!(
                ev,
                [
                    Ev::Disconnected {
                        reason: DisconnectReason::TransportClosed
                    },
                    Ev::ReconnectScheduled { at: at_, attempt }
                ]
            );
            assert_eq!(c.poll_timeout(), Some(at_));
            c.handle_timeout(at_);
            assert_eq!(events(&mut c), [Ev::ConnectTransport { attempt }]);
            expected.push(attempt);
            now = at_;
        }
        assert_eq!(c.stats().reconnects, 5);
        // the dial works this time: Reconnect with the session (V8 shape)
        let (cmd, rid, timeout, body) = open_transport(&mut c, now);
        assert_eq!((cmd, timeout), (CMD_RECONNECT, 10_000));
        assert_eq!(body, hex("0a 02 73 31"));
        let resp = pkt(Packet::response(
            CMD_RECONNECT,
            rid,
            Status::Success,
            &grant("s2", EXPIRES + 1),
        ));
        feed(&mut c, now, &resp);
        assert_eq!(
            events(&mut c),
            [Ev::Authenticated {
                session_id: sid("s2"),
                expires: EXPIRES + 1,
                limit: 10,
                online: 1,
                via: LoginKind::Reconnect,
                resumable: true
            }]
        );
        assert_eq!(c.session_id(), Some("s2"));
        // attempts start over after a success
        c.handle_closed(now, ());
        assert!(events(&mut c).contains(&Ev::ReconnectScheduled {
            at: now + Duration::from_millis(1_001),
            attempt: 1
        }));
        assert_eq!(expected.len(), 5);
    }

    #[test]
    fn reconnect_now_skips_the_back_off_and_connect_starts_over() {
        let mut c = ready_tcp();
        c.handle_closed(at(1), ());
        let _ = events(&mut c);
        assert_eq!(c.state(), ClientState::WaitingToReconnect);
        c.reconnect_now(at(2)).unwrap();
        assert_eq!(events(&mut c), [Ev::ConnectTransport { attempt: 1 }]);
        assert_eq!(c.reconnect_now(at(3)), Err(ConnectError::AlreadyConnected));
        c.handle_closed(at(4), ());
        let _ = events(&mut c);
        // connect with fresh credentials drops the session: Auth, attempts from 0
        c.connect(at(5), Credentials::new("new")).unwrap();
        assert_eq!(events(&mut c), [Ev::ConnectTransport { attempt: 0 }]);
        assert_eq!(c.session_id(), None);
        let (cmd, _, _, body) = open_transport(&mut c, at(6));
        assert_eq!(cmd, CMD_AUTH);
        assert_eq!(AuthRequest::decode(&body).unwrap().token, "new");
    }

    #[test]
    fn dial_and_login_timeouts_retry() {
        let mut c = ready_tcp();
        c.handle_closed(at(0), ());
        let _ = events(&mut c);
        c.handle_timeout(at(1_000));
        assert_eq!(events(&mut c), [Ev::ConnectTransport { attempt: 1 }]);
        c.handle_timeout(at(11_000));
        assert_eq!(
            events(&mut c),
            [
                Ev::Disconnected {
                    reason: DisconnectReason::ConnectTimeout
                },
                Ev::ReconnectScheduled {
                    at: at(13_000),
                    attempt: 2
                }
            ]
        );
        c.handle_timeout(at(13_000));
        let _ = events(&mut c);
        let _ = open_transport(&mut c, at(13_000));
        c.handle_timeout(at(23_000));
        assert_eq!(
            events(&mut c)[0],
            Ev::Disconnected {
                reason: DisconnectReason::LoginTimeout
            }
        );
    }

    #[test]
    fn expired_session_falls_back_to_auth_with_a_fresh_token() {
        let mut c = ready_tcp();
        feed(&mut c, at(1), &close_push(2, "shutdown"));
        let _ = events(&mut c);
        // the outage lasts past the session's expiry (minus the 10 s margin)
        let late = at(86_400_000 - 10_000);
        assert!(c.session_resumable(late - Duration::from_millis(1)));
        assert!(!c.session_resumable(late));
        c.handle_timeout(late);
        assert_eq!(events(&mut c), [Ev::TokenNeeded]);
        assert_eq!(c.state(), ClientState::NeedToken);
        assert_eq!(c.session_id(), None);
        c.provide_token(late, "otp2").unwrap();
        assert_eq!(events(&mut c), [Ev::ConnectTransport { attempt: 1 }]);
        let (cmd, _, _, body) = open_transport(&mut c, late);
        assert_eq!(cmd, CMD_AUTH);
        assert_eq!(AuthRequest::decode(&body).unwrap().token, "otp2");
    }

    #[test]
    fn zero_or_past_expires_is_not_resumable() {
        for expires in [0, -5, WALL_T0 - 1] {
            let mut c = C::new(cfg_tcp());
            c.connect(T0, Credentials::new("abc")).unwrap();
            let _ = events(&mut c);
            let (_, rid, _, _) = open_transport(&mut c, T0);
            feed(
                &mut c,
                T0,
                &pkt(Packet::response(
                    CMD_AUTH,
                    rid,
                    Status::Success,
                    &grant("s1", expires),
                )),
            );
            let ev = events(&mut c);
            assert!(
                matches!(
                    ev[0],
                    Ev::Authenticated {
                        resumable: false,
                        ..
                    }
                ),
                "{expires}: {ev:?}"
            );
            c.handle_closed(at(1), ());
            let ev = events(&mut c);
            assert!(ev.contains(&Ev::TokenNeeded), "{expires}: {ev:?}");
        }
    }

    #[test]
    fn without_a_wall_clock_only_zero_is_checked_and_the_heuristic_reads_relative_ms() {
        let mut c = C::new(ClientConfig::tcp());
        c.connect(T0, Credentials::new("abc")).unwrap();
        let (_, rid, _, _) = open_transport(&mut c, T0);
        feed(
            &mut c,
            T0,
            &pkt(Packet::response(
                CMD_AUTH,
                rid,
                Status::Success,
                &grant("s1", 5),
            )),
        );
        assert!(
            c.session_resumable(at(1_000_000)),
            "no wall clock: server decides"
        );
        let mut cfg = ClientConfig::tcp();
        cfg.relative_expiry_heuristic = true;
        let mut c = C::new(cfg);
        c.connect(T0, Credentials::new("abc")).unwrap();
        let (_, rid, _, _) = open_transport(&mut c, T0);
        feed(
            &mut c,
            T0,
            &pkt(Packet::response(
                CMD_AUTH,
                rid,
                Status::Success,
                &grant("s1", 60_000),
            )),
        );
        assert!(c.session_resumable(at(49_999)));
        assert!(
            !c.session_resumable(at(50_000)),
            "60 s relative minus 10 s margin"
        );
        // set_wall_clock gives the offset used by heartbeats
        c.set_wall_clock(T0, WALL_T0);
        assert_eq!(c.wall_ms(at(1)), Some(WALL_T0 + 1));
    }

    #[test]
    fn rejected_reconnect_drops_the_session_and_asks_for_a_token() {
        let mut c = ready_tcp();
        c.handle_closed(at(1), ());
        let _ = events(&mut c);
        c.handle_timeout(at(1_001));
        let _ = events(&mut c);
        let (cmd, rid, _, _) = open_transport(&mut c, at(1_001));
        assert_eq!(cmd, CMD_RECONNECT);
        let err = enc(&ErrorBody::new(401, "session expired"));
        feed(
            &mut c,
            at(1_002),
            &pkt(Packet::response(
                CMD_RECONNECT,
                rid,
                Status::Unauthenticated,
                &err,
            )),
        );
        let ev = events(&mut c);
        assert!(matches!(
            ev[0],
            Ev::LoginFailed {
                kind: LoginKind::Reconnect,
                status: Status::Unauthenticated,
                code: Some(401),
                ..
            }
        ));
        assert_eq!(
            ev[1..],
            [
                Ev::Disconnected {
                    reason: DisconnectReason::LoginRejected(Status::Unauthenticated)
                },
                Ev::TokenNeeded,
                Ev::ReconnectScheduled {
                    at: at(3_002),
                    attempt: 2
                }
            ]
        );
        assert_eq!(c.session_id(), None);
        // the token arrives during the back-off: dial at its end
        c.provide_token(at(2_000), "otp3").unwrap();
        assert!(events(&mut c).is_empty());
        c.handle_timeout(at(3_002));
        assert_eq!(events(&mut c), [Ev::ConnectTransport { attempt: 2 }]);
        assert_eq!(open_transport(&mut c, at(3_002)).0, CMD_AUTH);
    }

    #[test]
    fn token_needed_on_an_open_transport_waits_for_provide_token() {
        let mut c = ready_tcp();
        c.handle_closed(at(1), ());
        let _ = events(&mut c);
        c.handle_timeout(at(1_001));
        let _ = events(&mut c);
        // the session is given up while dialing (e.g. it expired)
        c.session = None;
        c.handle_connected(at(1_002)).unwrap();
        assert_eq!(events(&mut c), [Ev::TokenNeeded]);
        assert_eq!(
            tx(&mut c, at(1_002)),
            [(FrameKind::Stream, vec![0x11, 0x09])]
        );
        assert_eq!(c.poll_timeout(), Some(at(11_002)));
        c.provide_token(at(1_500), "late").unwrap();
        let out = tx(&mut c, at(1_500));
        assert_eq!(request(&out[0].1).0, CMD_AUTH, "no second handshake");
    }

    #[test]
    fn responses_are_correlated_borrowed_and_errors_decoded() {
        let mut c = ready_tcp();
        let a = send(&mut c, at(1), 11, Duration::ZERO, b"q1");
        let b = send(&mut c, at(1), 6, Duration::ZERO, b"q2");
        assert_eq!((a, b), (RequestId(2), RequestId(3)));
        assert_eq!(c.in_flight(), 2);
        assert_eq!(
            c.poll_timeout(),
            Some(at(30_001)),
            "default request timeout"
        );
        // V10 with this request's id
        let err = hex("08 a0 b4 12 12 0f 69 6e 76 61 6c 69 64 20 72 65 71 75 65 73 74");
        let resp = pkt(Packet::response(6, b.0, Status::BadRequest, &err));
        let r = c.handle_input(at(2), (), &resp).unwrap();
        assert_eq!(
            r.into_app(),
            Some(App::Response {
                cmd: 6,
                request_id: b,
                status: Status::BadRequest,
                body: &resp[10..],
                gzip: false,
                error: Some(ErrorBody::new(301_600, "invalid request")),
            })
        );
        let resp = pkt(Packet::response(11, a.0, Status::Success, b"answer")).into_iter();
        let resp: StdVec<u8> = resp.collect();
        let r = c.handle_input(at(3), (), &resp).unwrap();
        assert!(matches!(
            r.app(),
            Some(App::Response { request_id, status: Status::Success, body: b"answer", error: None, .. }) if *request_id == a
        ));
        assert_eq!(c.in_flight(), 0);
        assert_eq!(c.stats().responses, 2);
        // gzip-flagged data passes through for the caller to inflate
        let push = hex("23 65 00 00 01 99");
        let r = c.handle_input(at(4), (), &push).unwrap();
        assert_eq!(
            r.into_app(),
            Some(App::Push {
                cmd: 101,
                body: &[0x99],
                gzip: true
            })
        );
    }

    #[test]
    fn gzip_control_bodies_need_the_gzip_feature() {
        let mut c = C::new(cfg_tcp());
        c.connect(T0, Credentials::new("abc")).unwrap();
        let _ = events(&mut c);
        let (_, rid, _, _) = open_transport(&mut c, T0);
        let plain = grant("s1", EXPIRES);
        let mut gz = [0u8; 128];
        let n = crate::longport::gzip::gzip_stored(&plain, &mut gz).unwrap();
        let resp = pkt(Packet::response(CMD_AUTH, rid, Status::Success, &gz[..n]).with_gzip(true));
        feed(&mut c, T0, &resp);
        let ev = events(&mut c);
        if cfg!(feature = "gzip") {
            assert!(
                matches!(&ev[0], Ev::Authenticated { session_id, .. } if session_id == "s1"),
                "{ev:?}"
            );
        } else {
            assert_eq!(
                ev[0],
                Ev::Disconnected {
                    reason: DisconnectReason::Protocol(ProtocolError::CompressedControl {
                        cmd: CMD_AUTH
                    })
                }
            );
        }
        // V12: a gzip heartbeat echo is matched by id without inflating
        let mut c = ready_tcp();
        c.next_id = 1;
        c.handle_timeout(at(60_000));
        let _ = tx(&mut c, at(60_000));
        let v12 = hex("22 01 00 00 00 01 00 00 00 1e 1f 8b 08 00 00 00 00 00 00 ff 01 07 00 f8 ff 08 80 d0 95 ff bc 31 6d 3e 6e 14 07 00 00 00");
        feed(&mut c, at(60_010), &v12);
        assert_eq!(
            events(&mut c),
            [Ev::HeartbeatRtt {
                rtt: Duration::from_millis(10)
            }]
        );
    }

    #[test]
    fn unmatched_responses_are_dropped_and_counted() {
        let mut c = ready_tcp();
        let resp = pkt(Packet::response(11, 4242, Status::Success, b"?"));
        let r = c.handle_input(at(1), (), &resp).unwrap();
        assert_eq!((r.bytes_consumed(), r.app()), (resp.len(), None));
        assert_eq!(c.stats().unmatched_responses, 1);
        assert!(events(&mut c).is_empty());
    }

    #[test]
    fn request_timeout_and_late_response() {
        let mut c = ready_tcp();
        let mut out = [0u8; 64];
        let (id, t) = c
            .send_request(at(0), 11, Duration::from_secs(100), b"x", &mut out)
            .unwrap();
        let (_, _, header_timeout, _) = request(&out[..t.len]);
        assert_eq!(header_timeout, 60_000, "header field clamped to 60000");
        let (id2, t) = c
            .send_request(at(0), 11, Duration::from_millis(1_500), b"x", &mut out)
            .unwrap();
        assert_eq!(request(&out[..t.len]).2, 1_500);
        assert_eq!(c.poll_timeout(), Some(at(1_500)));
        c.handle_timeout(at(1_500));
        assert_eq!(events(&mut c), [Ev::RequestTimedOut { id: id2 }]);
        assert_eq!(c.in_flight(), 1);
        feed(
            &mut c,
            at(1_600),
            &pkt(Packet::response(11, id2.0, Status::Success, b"")),
        );
        assert_eq!(c.stats().unmatched_responses, 1, "late response dropped");
        assert_eq!(c.stats().requests_timed_out, 1);
        let _ = id;
    }

    #[test]
    fn request_ids_wrap_past_u32_max_to_one_and_skip_ids_in_flight() {
        let mut c = ready_with(cfg_tcp().with_first_request_id(u32::MAX - 1));
        let ids: StdVec<u32> = (0..3)
            .map(|_| send(&mut c, at(1), 11, Duration::ZERO, b"").0)
            .collect();
        assert_eq!(ids, [u32::MAX, 1, 2], "auth took MAX - 1; 0 is skipped");
        // pretend the counter came round to ids still in flight
        c.next_id = u32::MAX;
        assert_eq!(send(&mut c, at(1), 11, Duration::ZERO, b"").0, 3);
        assert_eq!(c.in_flight(), 4);
        let mut out = [0u8; 64];
        assert_eq!(
            c.send_request(at(1), 11, Duration::ZERO, b"", &mut out),
            Err(SendError::TooManyInFlight)
        );
        // the heartbeat id avoids them too
        c.next_id = 1;
        c.handle_timeout(at(60_000));
        let (_, rid, _, _) = request(&tx(&mut c, at(60_000))[0].1);
        assert_eq!(rid, 4);
        assert_eq!(heartbeat_id(u32::MAX), -1, "Go-style cast");
    }

    #[test]
    fn send_request_refusals_change_nothing() {
        let mut c = C::new(cfg_tcp());
        let mut out = [0u8; 64];
        assert_eq!(
            c.send_request(T0, 11, Duration::ZERO, b"", &mut out),
            Err(SendError::NotReady)
        );
        let mut c = ready_tcp();
        assert_eq!(
            c.send_request(at(1), CMD_RECONNECT, Duration::ZERO, b"", &mut out),
            Err(SendError::ControlCommand(3))
        );
        let mut small = [0u8; 12];
        assert_eq!(
            c.send_request(at(1), 11, Duration::ZERO, b"ab", &mut small),
            Err(SendError::BufferTooSmall { required: 13 })
        );
        assert_eq!(c.in_flight(), 0);
        assert_eq!(c.poll_timeout(), Some(at(60_000)));
        assert_eq!(
            send(&mut c, at(1), 11, Duration::ZERO, b"ab"),
            RequestId(2),
            "no id used up"
        );
    }

    #[test]
    fn buffer_too_small_leaves_the_frame_queued() {
        let mut c = C::new(cfg_tcp());
        c.connect(T0, Credentials::new("abc")).unwrap();
        c.handle_connected(T0).unwrap();
        let mut small = [0u8; 17];
        assert_eq!(
            c.poll_transmit(T0, &mut small),
            Err(BufferTooSmall { required: 18 })
        );
        assert_eq!(small, [0u8; 17], "nothing written");
        let out = tx(&mut c, T0);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1.len(), 18);
        // echo and pong frames too
        let mut c = ready_with(cfg_ws());
        c.handle_frame(at(1), (), FrameKind::WsPing, b"12345");
        assert_eq!(
            c.poll_transmit(at(1), &mut [0u8; 4]),
            Err(BufferTooSmall { required: 5 })
        );
        assert_eq!(tx(&mut c, at(1)), [(FrameKind::WsPong, b"12345".to_vec())]);
        feed(
            &mut c,
            at(2),
            &pkt(Packet::request(CMD_HEARTBEAT, 9, 0, b"abc")),
        );
        assert_eq!(
            c.poll_transmit(at(2), &mut [0u8; 12]),
            Err(BufferTooSmall { required: 13 })
        );
        assert_eq!(tx(&mut c, at(2)).len(), 1);
        c.handle_timeout(at(60_000));
        let mut tiny = [0u8; 2];
        assert!(c.poll_transmit(at(60_000), &mut tiny).is_err());
        assert_eq!(tx(&mut c, at(60_000))[0].0, FrameKind::WsPing);
    }

    #[test]
    fn close_fails_requests_sends_ws_close_and_emits_one_closed() {
        let mut c = ready_with(cfg_ws());
        let id = send(&mut c, at(1), 11, Duration::ZERO, b"");
        c.close(at(2));
        assert_eq!(tx(&mut c, at(2)), [(FrameKind::WsClose(1000), vec![])]);
        assert_eq!(
            events(&mut c),
            [
                Ev::RequestFailed {
                    id,
                    reason: RequestFailure::Closed
                },
                Ev::Closed {
                    reason: DisconnectReason::Local
                }
            ]
        );
        c.close(at(3));
        c.handle_closed(at(3), ());
        c.handle_timeout(at(1_000_000));
        assert!(events(&mut c).is_empty());
        assert_eq!(c.poll_timeout(), None);
        assert_eq!(c.state(), ClientState::Closed);
        let mut out = [0u8; 64];
        assert_eq!(
            c.send_request(at(4), 11, Duration::ZERO, b"", &mut out),
            Err(SendError::Closed)
        );
        assert_eq!(
            c.connect(at(4), Credentials::new("x")),
            Err(ConnectError::Closed)
        );
        assert_eq!(c.provide_token(at(4), "x"), Err(TokenError::Closed));
        assert_eq!(c.handle_connected(at(4)), Err(ConnectedError::Closed));
        let r = c.handle_input(at(4), (), b"\x03\x65\x00\x00\x00").unwrap();
        assert_eq!((r.bytes_consumed(), r.app()), (5, None));
    }

    #[test]
    fn giving_up_after_max_attempts_closes() {
        let mut cfg = cfg_tcp();
        cfg.max_reconnect_attempts = Some(1);
        let mut c = ready_with(cfg);
        c.handle_closed(at(1), ());
        let _ = events(&mut c);
        c.handle_timeout(at(1_001));
        let _ = events(&mut c);
        c.handle_closed(at(1_002), ());
        assert_eq!(
            events(&mut c),
            [
                Ev::Disconnected {
                    reason: DisconnectReason::TransportClosed
                },
                Ev::Closed {
                    reason: DisconnectReason::TransportClosed
                }
            ]
        );
        assert_eq!(c.state(), ClientState::Closed);
    }

    #[test]
    fn full_event_queue_refuses_input_and_defers_timers() {
        let mut c = ready_tcp();
        for _ in 0..13 {
            c.push_event(Ev::TokenNeeded);
        }
        let push = pkt(Packet::push(101, &[]));
        assert_eq!(c.handle_input(at(1), (), &push), Err(InputError::Busy));
        c.handle_timeout(at(60_000));
        assert_eq!(c.poll_timeout(), Some(at(60_000)), "still due");
        assert_eq!(events(&mut c).len(), 13);
        c.handle_timeout(at(60_000));
        assert_eq!(
            tx(&mut c, at(60_000)).len(),
            1,
            "heartbeat sent once drained"
        );
        assert_eq!(
            c.connect(at(1), Credentials::new("x")),
            Err(ConnectError::AlreadyConnected)
        );
    }

    #[test]
    fn stale_and_unexpected_inputs_are_harmless() {
        let mut c = C::new(cfg_tcp());
        assert_eq!(c.handle_connected(T0), Err(ConnectedError::NotConnecting));
        c.handle_closed(T0, ());
        c.handle_frame(T0, (), FrameKind::WsPing, b"x");
        let r = c.handle_input(T0, (), b"\x01").unwrap();
        assert_eq!(r.bytes_consumed(), 1);
        assert!(events(&mut c).is_empty());
        assert!(tx(&mut c, T0).is_empty());
        assert_eq!(c.reconnect_now(T0), Err(ConnectError::NoCredentials));
        // time going backwards is clamped
        let mut c = ready_tcp();
        c.handle_timeout(at(60_000));
        let _ = tx(&mut c, at(60_000));
        feed(
            &mut c,
            T0,
            &pkt(Packet::response(CMD_HEARTBEAT, 2, Status::Success, &[])),
        );
        assert_eq!(
            events(&mut c),
            [Ev::HeartbeatRtt {
                rtt: Duration::ZERO
            }]
        );
    }

    #[test]
    fn machine_trait_drives_the_client() {
        fn drive<M: Machine<Peer = ()>>(m: &mut M, now: Instant) -> usize {
            let mut buf = [0u8; 128];
            let mut n = 0;
            while let Ok(Some(_)) = m.poll_transmit(now, &mut buf) {
                n += 1;
            }
            while m.poll_event().is_some() {}
            n
        }
        let mut c = C::new(cfg_tcp());
        c.connect(T0, Credentials::new("abc")).unwrap();
        Machine::handle_closed(&mut c, T0, ());
        assert_eq!(drive(&mut c, T0), 0);
        assert_eq!(Machine::poll_timeout(&c), Some(at(1_000)));
        Machine::handle_timeout(&mut c, at(1_000));
        c.handle_connected(at(1_000)).unwrap();
        assert_eq!(drive(&mut c, at(1_000)), 1);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn no_panics_on_arbitrary_input(
            ws: bool,
            ops in proptest::collection::vec(
                (0u8..8, 0u64..200_000, proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)),
                0..40,
            ),
        ) {
            let mut c = if ws { ready_with(cfg_ws()) } else { ready_tcp() };
            let mut now = T0;
            let mut closed = 0;
            let mut buf = [0u8; 256];
            let valid = [
                close_push(0, "x"),
                pkt(Packet::request(CMD_HEARTBEAT, 3, 0, b"hb")),
                pkt(Packet::response(CMD_AUTH, 1, Status::Success, &grant("s9", EXPIRES))),
                pkt(Packet::response(CMD_RECONNECT, 1, Status::Unauthenticated, b"")),
                pkt(Packet::push(101, b"data")),
            ];
            for (op, dt, bytes) in ops {
                now += Duration::from_millis(dt);
                match op {
                    0 => { let _ = c.handle_input(now, (), &bytes); }
                    1 => {
                        let v = &valid[usize::from(bytes.first().copied().unwrap_or(0)) % valid.len()];
                        let _ = c.handle_input(now, (), v);
                    }
                    2 => c.handle_timeout(now),
                    3 => {
                        let kind = [FrameKind::WsPing, FrameKind::WsPong, FrameKind::WsClose(4005), FrameKind::WsBinary];
                        c.handle_frame(now, (), kind[usize::from(bytes.len() as u8 % 4)], &bytes);
                    }
                    4 => c.handle_closed(now, ()),
                    5 => { let _ = c.handle_connected(now); let _ = c.provide_token(now, "t"); }
                    6 => { let _ = c.send_request(now, 11, Duration::from_millis(dt), &bytes, &mut buf); }
                    _ => if bytes.len() == 39 { c.close(now) } else { let _ = c.reconnect_now(now); },
                }
                while let Ok(Some(t)) = c.poll_transmit(now, &mut buf) {
                    proptest::prop_assert!(t.len <= buf.len());
                }
                while let Some(e) = c.poll_event() {
                    proptest::prop_assert_eq!(closed, 0, "nothing after Closed");
                    if matches!(e, Ev::Closed { .. }) {
                        closed += 1;
                    }
                }
                if let Some(t) = c.poll_timeout() {
                    if op == 2 {
                        proptest::prop_assert!(t > now, "timers fired: {:?} <= {:?}", t, now);
                    }
                }
            }
            proptest::prop_assert!(closed <= 1);
            let _ = MAX_PACKET_LEN;
        }
    }
}
