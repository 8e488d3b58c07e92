//! LongPort client machine: auth → session, heartbeat + RTT, reconnect with the session, per-code
//! reaction to server Close pushes, request/response correlation (documented on [`Client`])

mod reconnect;
mod request;
#[cfg(test)]
mod tests;

use heapless::{Deque, String, Vec};

use crate::config::{at_most, config_fmt, getters, setters};
use crate::io::{BufferTooSmall, FrameKind, PeerText, Received, Transmit};
use crate::longport::control::{
    emit_packet, AuthRequest, Body, Close, CloseCode, ErrorBody, Heartbeat, Metadata,
    ReconnectRequest, SessionGrant, CMD_AUTH, CMD_CLOSE, CMD_HEARTBEAT, CMD_RECONNECT,
};
use crate::longport::deframe::{decode_message, Frame, Handshake, StreamDeframer, Transport};
use crate::longport::error::{Error, ProtocolError};
use crate::longport::event::{ClientEvent, CloseCause, LoginKind, RequestFailure};
use crate::longport::wire::{
    Header, Kind, Packet, RequestId, Status, DEFAULT_MAX_BODY, MAX_BODY_LEN, REQUEST_HEADER_LEN,
};
use crate::longport::{
    bump, bump_by, emit_raw, truncated, Echo, Text, WallClock, MAX_WS_CONTROL_PAYLOAD,
};
use crate::time::{
    clamp_micros, clamp_micros_some, div_rem_small, duration_from_micros,
    duration_from_micros_some, duration_micros, earliest, Clock, Duration, Instant, MAX_DELAY,
};
use crate::wire::Reader;

use reconnect::{backoff, After};
pub use reconnect::{JitterFn, QuotaPolicy};
use request::{IdCounter, Requests};

/// Most metadata pairs accepted in [`Credentials`]
pub const MAX_METADATA_PAIRS: usize = 8;
/// Largest value of the request header's timeout field, in milliseconds
const MAX_HEADER_TIMEOUT_MS: u16 = 60_000;
/// Free event slots an input needs before it is processed (the most events one input queues)
const EVENT_RESERVE: usize = 4;
/// WebSocket close code the client uses for normal closes
const WS_CLOSE_NORMAL: u16 = 1000;
/// WebSocket close code the client uses after undecodable peer bytes
const WS_CLOSE_PROTOCOL: u16 = 1002;
/// `expires` values below this are relative under [`ClientConfig::relative_expiry_heuristic`]
const RELATIVE_EXPIRY_LIMIT_MS: i64 = 100_000_000_000;
/// Largest inflated control body (auth/reconnect response, Close push) with the `gzip` feature
const CONTROL_INFLATE_LEN: usize = if cfg!(feature = "gzip") { 512 } else { 0 };
/// Server heartbeat echoes waiting for `poll_transmit`
const ECHO_SLOTS: usize = 4;
/// Shortest timeout any setter accepts
const MIN_TIMEOUT: Duration = Duration::from_millis(1);
/// Shortest heartbeat interval [`ClientConfig::with_heartbeat_interval`] accepts
const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// Client settings
///
/// Build with [`ClientConfig::new`] (or [`ClientConfig::tcp`] / [`ClientConfig::websocket`]) and
/// adjust with the `with_*` setters, which clamp every value into the range they document (so
/// [`Client::poll_timeout`] never lies more than [`MAX_DELAY`] ahead and nothing can make the
/// client spin). Delays are kept in whole microseconds, the unit of [`Instant`]: a getter gives
/// back what its setter took without the part below a microsecond.
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct ClientConfig {
    transport: Transport,
    handshake: Handshake,
    // every delay in whole microseconds, at most MAX_DELAY (2.6e12 µs): the timers add them to
    // an `Instant` without a `Duration` conversion
    connect_timeout: u64,
    auth_timeout: u64,
    heartbeat_interval: Option<u64>,
    heartbeat_timeout: u64,
    any_inbound_is_alive: bool,
    request_timeout: u64,
    reconnect_base: u64,
    reconnect_max: u64,
    max_reconnect_attempts: Option<u32>,
    jitter: Option<JitterFn>,
    expiry_margin: u64,
    relative_expiry_heuristic: bool,
    max_body: usize,
    first_request_id: u32,
    quota_policy: QuotaPolicy,
    gzip_requests: Option<usize>,
}

impl ClientConfig {
    /// Defaults for `transport`
    #[must_use]
    pub const fn new(transport: Transport) -> Self {
        ClientConfig {
            transport,
            handshake: Handshake::OPENAPI,
            connect_timeout: 10_000_000,
            auth_timeout: 10_000_000,
            heartbeat_interval: Some(60_000_000),
            heartbeat_timeout: 120_000_000,
            any_inbound_is_alive: true,
            request_timeout: 30_000_000,
            reconnect_base: 1_000_000,
            reconnect_max: 30_000_000,
            max_reconnect_attempts: None,
            jitter: None,
            expiry_margin: 10_000_000,
            relative_expiry_heuristic: false,
            max_body: DEFAULT_MAX_BODY,
            first_request_id: 1,
            quota_policy: QuotaPolicy::Stop,
            gzip_requests: None,
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

    setters! {
        /// TCP handshake bytes sent first (default `11 09`: version 1, protobuf, OpenAPI)
        fn with_handshake(handshake: Handshake) { handshake = handshake }

        /// How long a dial may take after [`ClientEvent::ConnectTransport`] (default 10 s; clamped
        /// to 1 ms ..= [`MAX_DELAY`])
        fn with_connect_timeout(timeout: Duration) { connect_timeout = clamp_micros(timeout, MIN_TIMEOUT) }

        /// How long the auth/reconnect response (or a needed token) may take (default 10 s; clamped
        /// to 1 ms ..= [`MAX_DELAY`]); also the login request's header timeout field (at most
        /// 60 000 ms)
        fn with_auth_timeout(timeout: Duration) { auth_timeout = clamp_micros(timeout, MIN_TIMEOUT) }

        /// Client heartbeat period (default 60 s; clamped to 1 s ..= [`MAX_DELAY`]); `None` sends
        /// none and relies on the server's heartbeats or pings
        fn with_heartbeat_interval(interval: Option<Duration>) {
            heartbeat_interval = clamp_micros_some(interval, MIN_HEARTBEAT_INTERVAL)
        }

        /// The connection is declared dead after this long without a sign of life (default 120 s;
        /// clamped to 1 ms ..= [`MAX_DELAY`])
        fn with_heartbeat_timeout(timeout: Duration) { heartbeat_timeout = clamp_micros(timeout, MIN_TIMEOUT) }

        /// Count every inbound packet as a sign of life, not only heartbeats (default true)
        fn with_any_inbound_is_alive(any: bool) { any_inbound_is_alive = any }

        /// Timeout of a request sent with a zero timeout (default 30 s; clamped to
        /// 1 ms ..= [`MAX_DELAY`])
        fn with_request_timeout(timeout: Duration) { request_timeout = clamp_micros(timeout, MIN_TIMEOUT) }
    }

    /// Reconnect back-off: the first delay `base` (default 1 s), doubled per failed attempt up
    /// to `max` (default 30 s); both clamped to 1 ms ..= [`MAX_DELAY`]
    #[must_use]
    pub const fn with_reconnect_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.reconnect_base = clamp_micros(base, MIN_TIMEOUT);
        self.reconnect_max = clamp_micros(max, MIN_TIMEOUT);
        self
    }

    setters! {
        /// Give up (final [`ClientEvent::Closed`]) after this many consecutive failed attempts
        /// (default `None`: never)
        fn with_max_reconnect_attempts(attempts: Option<u32>) { max_reconnect_attempts = attempts }

        /// Add `jitter(attempt)` to every reconnect delay (the sum is clamped to [`MAX_DELAY`])
        fn with_jitter(jitter: JitterFn) { jitter = Some(jitter) }

        /// A session is not resumed within this margin before it expires (default 10 s; clamped to
        /// 0 ..= [`MAX_DELAY`])
        fn with_expiry_margin(margin: Duration) { expiry_margin = clamp_micros(margin, Duration::ZERO) }

        /// Read `expires` below `1e11` as milliseconds relative to the response (a heuristic,
        /// default false; see [`Client`], Session expiry)
        fn with_relative_expiry_heuristic(on: bool) { relative_expiry_heuristic = on }

        /// Largest accepted body (default 1 MiB; at most [`MAX_BODY_LEN`], the most the 24-bit
        /// length field can announce; 0 accepts only empty bodies)
        fn with_max_body(max_body: usize) { max_body = at_most(max_body, MAX_BODY_LEN) }

        /// Start request ids at `id` (default 1; 0 is taken as 1); for tests and fuzzing of the wrap
        fn with_first_request_id(id: u32) { first_request_id = if id == 0 { 1 } else { id } }

        /// What a login refused with status 6 (the account's connection quota) leads to (default
        /// [`QuotaPolicy::Stop`]; a `RetryAfter` delay is clamped to 1 s ..= [`MAX_DELAY`])
        fn with_quota_policy(policy: QuotaPolicy) { quota_policy = policy.clamped() }

        /// Send business request bodies of at least `threshold` bytes as gzip members (default
        /// `None`: never; feature `gzip`)
        ///
        /// The official Go client compresses bodies of 1024 bytes and more. This crate has no
        /// compressor: the member is made of stored (uncompressed) deflate blocks
        /// ([`gzip_stored`](crate::longport::gzip::gzip_stored)), 18 bytes plus 5 per 64 KiB larger
        /// than the body. It is the wire form servers must accept, not a saving; to really
        /// compress, deflate the body yourself and send it with [`Client::send_request_gzip`].
        #[cfg(feature = "gzip")]
        fn with_gzip_requests(threshold: Option<usize>) { gzip_requests = threshold }
    }

    getters! {
        /// TCP or WebSocket
        fn transport() -> Transport;
        /// The TCP handshake sent first
        fn handshake() -> Handshake;
        /// See [`ClientConfig::with_connect_timeout`]
        fn connect_timeout() -> Duration = duration_from_micros;
        /// See [`ClientConfig::with_auth_timeout`]
        fn auth_timeout() -> Duration = duration_from_micros;
        /// See [`ClientConfig::with_heartbeat_interval`]
        fn heartbeat_interval() -> Option<Duration> = duration_from_micros_some;
        /// See [`ClientConfig::with_heartbeat_timeout`]
        fn heartbeat_timeout() -> Duration = duration_from_micros;
        /// See [`ClientConfig::with_any_inbound_is_alive`]
        fn any_inbound_is_alive() -> bool;
        /// See [`ClientConfig::with_request_timeout`]
        fn request_timeout() -> Duration = duration_from_micros;
        /// First reconnect delay (see [`ClientConfig::with_reconnect_backoff`])
        fn reconnect_base() -> Duration = duration_from_micros;
        /// Cap of the reconnect delay before jitter (see [`ClientConfig::with_reconnect_backoff`])
        fn reconnect_max() -> Duration = duration_from_micros;
        /// See [`ClientConfig::with_max_reconnect_attempts`]
        fn max_reconnect_attempts() -> Option<u32>;
        /// See [`ClientConfig::with_jitter`]
        fn jitter() -> Option<JitterFn>;
        /// See [`ClientConfig::with_expiry_margin`]
        fn expiry_margin() -> Duration = duration_from_micros;
        /// See [`ClientConfig::with_relative_expiry_heuristic`]
        fn relative_expiry_heuristic() -> bool;
        /// See [`ClientConfig::with_max_body`]
        fn max_body() -> usize;
        /// See [`ClientConfig::with_first_request_id`]
        fn first_request_id() -> u32;
        /// See [`ClientConfig::with_quota_policy`]
        fn quota_policy() -> QuotaPolicy;
        /// See `ClientConfig::with_gzip_requests` (feature `gzip`; always `None` without it)
        fn gzip_requests() -> Option<usize>;
    }
}

config_fmt!(ClientConfig, c => {
    transport: c.transport,
    handshake: c.handshake,
    connect_timeout: c.connect_timeout(),
    auth_timeout: c.auth_timeout(),
    heartbeat_interval: c.heartbeat_interval(),
    heartbeat_timeout: c.heartbeat_timeout(),
    any_inbound_is_alive: c.any_inbound_is_alive,
    request_timeout: c.request_timeout(),
    reconnect_base: c.reconnect_base(),
    reconnect_max: c.reconnect_max(),
    max_reconnect_attempts: c.max_reconnect_attempts,
    jitter: c.jitter,
    expiry_margin: c.expiry_margin(),
    relative_expiry_heuristic: c.relative_expiry_heuristic,
    max_body: c.max_body,
    first_request_id: c.first_request_id,
    quota_policy: c.quota_policy,
    gzip_requests: c.gzip_requests,
});

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

/// What one input of the [`Client`] carried for the application, borrowed from that input
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ClientApp<'a> {
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
    /// The server pushed Close (cmd 0); [`ClientEvent::Disconnected`] with
    /// [`CloseCause::Peer`] follows
    Close {
        /// The Close code
        code: CloseCode,
        /// The reason text (empty when the body was gzip-compressed)
        reason: PeerText<'a>,
    },
    /// A heartbeat request of the server (cmd 1) the client does not echo by itself (body over
    /// [`MAX_ECHO_LEN`](crate::longport::MAX_ECHO_LEN) bytes, or 4 echoes already waiting):
    /// echo it with [`Client::echo_heartbeat`] (the official clients echo every body)
    HeartbeatEcho {
        /// The server's request id, to echo
        request_id: RequestId,
        /// Body to echo
        body: &'a [u8],
        /// True when `body` is a gzip member (the echo keeps the flag)
        gzip: bool,
    },
    /// The auth or reconnect request was refused; [`ClientEvent::LoginFailed`] follows
    LoginError {
        /// The response status (not 0)
        status: Status,
        /// `Error.code` of the body (`None` if the body did not decode)
        code: Option<u64>,
        /// `Error.msg` of the body (empty when it did not decode or was gzip-compressed)
        message: PeerText<'a>,
    },
}

/// Where the client is, as seen by the caller
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ClientState {
    /// Created; [`Client::connect`] not called yet
    Idle,
    /// Waiting for the caller to open the transport ([`Client::handle_connected`])
    Connecting,
    /// Transport open, login (or a token for it) pending
    LoggingIn,
    /// Authenticated; requests may be sent
    Connected,
    /// Waiting for the reconnect back-off to elapse
    WaitingToReconnect,
    /// Waiting for [`Client::provide_token`]
    NeedToken,
    /// Stopped after a login refused for the account's connection quota (status 6) under
    /// [`QuotaPolicy::Stop`]; resume with [`Client::connect`] and fresh credentials
    Stopped,
    /// Finished
    Closed,
}

/// Counters of what the client has seen and done (saturating)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct ClientStats {
    /// Packets decoded from the current transports
    pub packets_received: u64,
    /// Packets and frames handed out (`poll_transmit` and `send_request`)
    pub packets_sent: u64,
    /// Responses delivered as [`ClientApp::Response`]
    pub responses: u64,
    /// Pushes delivered as [`ClientApp::Push`]
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
        rid: RequestId,
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

#[derive(Debug, Clone)]
struct Session<const S: usize> {
    id: String<S>,
    expires: i64,
    relative_deadline: Option<Instant>,
}

/// The LongPort client state machine
///
/// Capacities: `REQUESTS` business requests in flight (default 16), `EVENTS` queued events
/// (default 16, at least 8), `TOKEN_LEN` bytes of token (512), `SESSION_LEN` bytes of session
/// id (128), `METADATA_LEN` bytes of stored metadata (256, two length bytes plus the text per
/// key and per value). [`Client::new`] builds one with the defaults,
/// [`Client::with_capacities`] with others.
///
/// [`Client`] is sans-IO: the caller owns the socket (TCP or WebSocket), the clock and the
/// source of one-time tokens. Its inputs and outputs are inherent methods, and it implements
/// [`Machine`](crate::Machine) with `Peer = ()` by delegating to them.
///
/// # Lifecycle
///
/// 1. [`Client::connect`] with [`Credentials`] (one-time token from the HTTP socket-token API,
///    optional metadata pairs). The client emits [`ClientEvent::ConnectTransport`].
/// 2. On every `ConnectTransport` the caller opens a **new** transport (TCP connection, or a
///    WebSocket upgrade with the query `version=1&codec=1&platform=9`) and calls
///    [`Client::handle_connected`] once it is open, or [`Client::handle_closed`] if the dial
///    failed. A dial that takes longer than [`ClientConfig::connect_timeout`] is abandoned with
///    [`ClientEvent::Disconnected`] (cause [`CloseCause::ConnectTimeout`]).
/// 3. The client queues the login: on TCP the 2-byte handshake `11 09` and the Auth request
///    (cmd 2) in one [`FrameKind::Stream`] transmit; on WebSocket the Auth request as one
///    [`FrameKind::WsBinary`]. With a still-valid session it sends Reconnect (cmd 3) instead.
/// 4. [`ClientEvent::Connected`] (within [`ClientConfig::auth_timeout`], else `Disconnected`
///    with [`CloseCause::LoginTimeout`]): business requests may now go out with
///    [`Client::send_request`]. The session id is [`Client::session_id`].
/// 5. Whenever the connection ends — the caller reports it ([`Client::handle_closed`], a
///    WebSocket Close frame through [`Client::handle_frame`]), the heartbeat times out, the
///    server pushes Close, the stream is undecodable — the client emits
///    [`ClientEvent::Disconnected`] (close the transport if it is still open), fails the requests
///    in flight ([`ClientEvent::RequestFailed`] with [`RequestFailure::Disconnected`]) and, per
///    policy, schedules a reconnect ([`ClientEvent::ReconnectScheduled`], then at that instant
///    `ConnectTransport` again) or asks for a token first ([`ClientEvent::TokenNeeded`] → call
///    [`Client::provide_token`]). [`CloseCause::Peer`] documents the per-code policy for Close
///    pushes: codes 4, 5 and 6 (`ConnectDuplicate`: the session was taken over) re-authenticate,
///    the others reconnect with the session.
/// 6. A login refused with status 6 (PermissionDenied: the account holds its quota of
///    connections, `Error{403, "connections limitation is hit"}`) is different: a new token
///    cannot help, so the client never loops asking for one. [`ClientConfig::with_quota_policy`]
///    decides: [`QuotaPolicy::Stop`] (default; [`ClientState::Stopped`] until you call
///    [`Client::connect`] again) or [`QuotaPolicy::RetryAfter`] (a long back-off, then one
///    `TokenNeeded`).
/// 7. [`Client::close`] ends everything: on WebSocket a `WsClose(1000)` frame carrying your
///    reason is queued (nothing extra on TCP), then exactly one final [`ClientEvent::Closed`] is
///    emitted.
///
/// # Driving it
///
/// The run loop of the crate docs: one input, then [`drain`](crate::drain) (or its two steps by
/// hand: send every transmit, take one event, repeat), then sleep until
/// [`Client::poll_timeout`]. Commands given while handling an event (`handle_connected` on
/// `ConnectTransport`, `provide_token` on `TokenNeeded`) queue output that the same drain sends.
///
/// TCP: keep a receive buffer (at least the largest packet you accept: 11 + max_body + 24) and
/// feed it whole after every read:
///
/// ```text
/// loop {
///     match client.handle_input(now, (), &rx[..filled]) {
///         Err(Error::QueueFull) => { drain, then retry }
///         Ok(r) => {
///             if let Some(app) = r.app() { handle the response/push (borrowed from rx) }
///             if r.bytes_consumed() == 0 { break }   // r.needed(): total bytes the next packet needs
///             drop r.bytes_consumed() bytes from the front of rx
///         }
///     }
///     drain (write every FrameKind::Stream transmit to the socket, handle the events)
/// }
/// ```
///
/// WebSocket:
///
/// * every binary message → `handle_input(now, (), msg)` (always consumed whole);
/// * Ping / Pong / Close frames → `handle_frame(now, (), FrameKind::WsPing | WsPong | WsClose(code), payload)`;
///   text frames are not part of the protocol and are best dropped by the caller;
/// * transmits come as `WsBinary` (one message), `WsPing`/`WsPong` (control frames whose payload
///   is the written bytes) and `WsClose(code)` (the written bytes are the reason; then close the
///   socket).
///
/// Let the WebSocket library answer pings itself *or* let the client do it, not both (the
/// client queues a `WsPong` echo for every `WsPing` it is given).
///
/// # Heartbeat
///
/// * TCP: every [`ClientConfig::heartbeat_interval`] (60 s) a cmd-1 request with body
///   `Heartbeat { timestamp: wall-clock ms, heartbeat_id: request id as i32 }` (as the official
///   Go client does); the echo is matched by request id and [`ClientEvent::HeartbeatRtt`]
///   reports the time since the request was handed out by `poll_transmit` (the body is not
///   trusted).
/// * WebSocket: the same `Heartbeat` body is the payload of a `WsPing`; a `WsPong` payload is
///   decoded as `Heartbeat` and matched by `heartbeat_id`. No heartbeat interval sends nothing
///   and relies on the server's pings (the official Rust client's behaviour).
/// * Server heartbeat requests (cmd-1 requests, TCP or WS binary) are echoed: response with the
///   same id, status 0 and the same body (and gzip flag). Bodies up to
///   [`MAX_ECHO_LEN`](crate::longport::MAX_ECHO_LEN) bytes are echoed by the client itself (at
///   most 4 waiting); a bigger one (any size up to the body limit), or one more while 4 wait,
///   comes back as [`ClientApp::HeartbeatEcho`] for you to echo with
///   [`Client::echo_heartbeat`]. Server `WsPing`s get a `WsPong` with the same payload (up to
///   125 bytes).
/// * [`Client::send_heartbeat`] sends one now (e.g. to check a quiet connection before a
///   burst of requests); its echo gives `HeartbeatRtt` like the periodic ones.
/// * Liveness: heartbeat echoes, server heartbeat requests, pings and pongs always count; with
///   [`ClientConfig::any_inbound_is_alive`] (default) every inbound packet counts too. No sign
///   of life for [`ClientConfig::heartbeat_timeout`] (120 s) ends the connection
///   ([`CloseCause::Timeout`]).
///
/// # Session expiry
///
/// `expires` is taken as absolute Unix milliseconds, as the official Go client does
/// (`isAuthExpired` in <https://github.com/longportapp/openapi-protocol>). The client compares
/// it with a wall clock the caller provides ([`Client::set_wall_clock`]): a session is
/// resumable when `expires != 0` and `expires - expiry_margin` (10 s, like the Go client) is
/// still in the future. `expires <= 0` is never resumable. Without a wall clock only the zero
/// check applies and a stale session is found out by the server (status 5 → re-auth).
/// [`ClientConfig::relative_expiry_heuristic`] (off by default) reads values below `1e11` as
/// milliseconds relative to the moment the response arrived — the reading of the official Rust
/// client's reconnect path; it is a heuristic, not protocol.
///
/// # Requests
///
/// [`Client::send_request`] writes the packet straight into the caller's buffer and returns
/// the [`Transmit`] describing it: **send it right away**, before the next `poll_transmit`
/// frame. Nothing of the body is copied or queued inside the client, so memory stays bounded
/// whatever the body size, and there is no second buffer to size. Bodies go out as given;
/// `ClientConfig::with_gzip_requests` (feature `gzip`) wraps those from a threshold up in a
/// gzip member of stored blocks (the form the official Go client uses for bodies of 1 KiB and
/// more, without the compression: this crate has no compressor), and
/// [`Client::send_request_gzip`] sends a body you compressed yourself. The request is then tracked
/// (at most `REQUESTS` in flight) until its response ([`ClientApp::Response`], borrowed from the
/// input), its timeout ([`ClientEvent::RequestTimedOut`]) or the end of the connection
/// ([`ClientEvent::RequestFailed`]).
///
/// Request ids start at [`ClientConfig::first_request_id`] (1), increase by one for every
/// request (business, heartbeat, login), wrap from `u32::MAX` to 1 (0 is skipped) and skip ids
/// still in use. The counter continues across reconnects (ids stay unique per connection).
///
/// # Bounded work and memory
///
/// Events sit in a queue of `EVENTS` entries (at least 8). An input or command that could queue
/// events is refused with [`Error::QueueFull`] (nothing consumed or changed) unless 4 slots are
/// free, and `handle_timeout` does nothing until they are (its deadline stays due): after a
/// complete drain of `poll_transmit` and `poll_event` the next input is always accepted.
/// Request outcomes (`RequestTimedOut`, `RequestFailed`) are kept in the request table and
/// reported by `poll_event` after the queued events, so a disconnect with many requests in
/// flight never overflows the queue; [`ClientEvent::Closed`] is always the very last event.
#[derive(Debug)]
pub struct Client<
    const REQUESTS: usize = 16,
    const EVENTS: usize = 16,
    const TOKEN_LEN: usize = 512,
    const SESSION_LEN: usize = 128,
    const METADATA_LEN: usize = 256,
> {
    config: ClientConfig,
    clock: Clock,
    wall: WallClock,
    phase: Phase,
    attempt: u32,
    last_cause: CloseCause,
    ids: IdCounter,
    token: Option<String<TOKEN_LEN>>,
    token_requested: bool,
    meta: Vec<u8, METADATA_LEN>,
    session: Option<Session<SESSION_LEN>>,
    deframer: StreamDeframer,
    next_heartbeat: Option<Instant>,
    last_alive: Instant,
    hb_outstanding: Option<(RequestId, Instant)>,
    tx_handshake: bool,
    tx_login: bool,
    tx_echo: Deque<Echo, ECHO_SLOTS>,
    tx_pong: Option<Vec<u8, MAX_WS_CONTROL_PAYLOAD>>,
    tx_heartbeat: Option<RequestId>,
    tx_ws_close: Option<u16>,
    ws_close_reason: Text,
    requests: Requests<REQUESTS>,
    events: Deque<ClientEvent, EVENTS>,
    closed_event: Option<CloseCause>,
    stats: ClientStats,
}

impl Client {
    /// A client with the default capacities, in [`ClientState::Idle`]
    #[must_use]
    pub fn new(config: ClientConfig) -> Self {
        Self::with_capacities(config)
    }
}

impl<
        const REQUESTS: usize,
        const EVENTS: usize,
        const TOKEN_LEN: usize,
        const SESSION_LEN: usize,
        const METADATA_LEN: usize,
    > Client<REQUESTS, EVENTS, TOKEN_LEN, SESSION_LEN, METADATA_LEN>
{
    const CAPACITY_CHECK: () = {
        assert!(EVENTS >= 2 * EVENT_RESERVE, "EVENTS must be at least 8");
        assert!(
            TOKEN_LEN + SESSION_LEN + METADATA_LEN < MAX_BODY_LEN / 2,
            "login body capacities too large"
        );
    };

    /// A client with these capacities (`Client::<4>::with_capacities(cfg)`), in
    /// [`ClientState::Idle`]
    ///
    /// # Panics
    /// At compile time when `EVENTS < 8` or the three text capacities add up to 8 MiB or more.
    #[must_use]
    pub fn with_capacities(config: ClientConfig) -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::CAPACITY_CHECK;
        Client {
            config,
            clock: Clock::new(),
            wall: WallClock::default(),
            phase: Phase::Idle,
            attempt: 0,
            last_cause: CloseCause::Local,
            ids: IdCounter::new(config.first_request_id),
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
            ws_close_reason: Text::new(),
            requests: Requests::new(),
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
            Phase::Ready => ClientState::Connected,
            Phase::Backoff { .. } => ClientState::WaitingToReconnect,
            Phase::NeedToken => ClientState::NeedToken,
            Phase::Stopped => ClientState::Stopped,
            Phase::Closed => ClientState::Closed,
        }
    }

    /// True when authenticated: business requests may be sent
    #[must_use]
    pub const fn is_connected(&self) -> bool {
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

    /// Whether the current session would be resumed by a reconnect at `now` (see the module
    /// docs)
    #[must_use]
    pub fn session_resumable(&self, now: Instant) -> bool {
        self.resumable_at(self.clock.peek(now))
    }

    /// Unix milliseconds at `now`, once [`Client::set_wall_clock`] was called
    #[must_use]
    pub fn wall_clock_ms(&self, now: Instant) -> Option<i64> {
        self.wall.at(self.clock.peek(now))
    }

    /// Business requests in flight (including outcomes not yet polled)
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.requests.len()
    }

    /// True when a one-time token is stored and unused
    #[must_use]
    pub const fn has_token(&self) -> bool {
        self.token.is_some()
    }

    // ----------------------------------------------------------------------------------------
    // Commands
    // ----------------------------------------------------------------------------------------

    /// Tell the client that Unix time is `unix_ms` at `now` (heartbeat timestamps, session
    /// expiry); the wall clock then runs with `now`
    pub fn set_wall_clock(&mut self, now: Instant, unix_ms: i64) {
        let now = self.clock.update(now);
        self.wall.set(now, unix_ms);
    }

    /// Start (or restart) with fresh credentials: emits [`ClientEvent::ConnectTransport`]
    ///
    /// Allowed when idle, waiting to reconnect, waiting for a token or stopped. Any session is
    /// dropped: the next login is an Auth with `credentials.token`.
    ///
    /// # Errors
    /// Nothing changed on error:
    /// * [`Error::Closed`] — the client is closed;
    /// * [`Error::AlreadyConnected`] — a transport is being opened or is open;
    /// * [`Error::QueueFull`] — drain the events first;
    /// * [`Error::TooLong`] — the token does not fit `TOKEN_LEN`, or the metadata has more than
    ///   [`MAX_METADATA_PAIRS`] pairs or does not fit `METADATA_LEN`.
    pub fn connect(&mut self, now: Instant, credentials: Credentials<'_>) -> Result<(), Error> {
        let now = self.clock.update(now);
        self.check_may_dial()?;
        let token = store_token::<TOKEN_LEN>(credentials.token)?;
        let meta = store_metadata::<METADATA_LEN>(credentials.metadata)?;
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
    /// Nothing changed on error: [`Error::Closed`], [`Error::QueueFull`], [`Error::TooLong`]
    /// (the token does not fit `TOKEN_LEN`).
    pub fn provide_token(&mut self, now: Instant, token: &str) -> Result<(), Error> {
        let now = self.clock.update(now);
        if self.phase == Phase::Closed {
            return Err(Error::Closed);
        }
        if self.events_free() < EVENT_RESERVE {
            return Err(Error::QueueFull);
        }
        let token = store_token::<TOKEN_LEN>(token)?;
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
    /// Nothing changed on error: [`Error::Closed`], [`Error::AlreadyConnected`],
    /// [`Error::QueueFull`], [`Error::NoCredentials`] (neither a resumable session nor a token).
    pub fn reconnect_now(&mut self, now: Instant) -> Result<(), Error> {
        let now = self.clock.update(now);
        self.check_may_dial()?;
        if !self.can_login(now) {
            return Err(Error::NoCredentials);
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
    /// [`Error::Closed`], or [`Error::NotPending`] when no transport was requested: close that
    /// transport.
    pub fn handle_connected(&mut self, now: Instant) -> Result<(), Error> {
        let now = self.clock.update(now);
        match self.phase {
            Phase::Closed => return Err(Error::Closed),
            Phase::Dialing { .. } => {}
            _ => return Err(Error::NotPending),
        }
        self.clear_link();
        self.tx_handshake = self.config.transport == Transport::Tcp;
        self.last_alive = now;
        if self.resumable_at(now) {
            self.start_login(now, LoginKind::Reconnect);
        } else {
            self.session = None;
            if self.token.is_some() {
                self.start_login(now, LoginKind::Auth);
            } else {
                self.request_token();
                self.phase = Phase::AwaitToken {
                    deadline: now.add_micros(self.config.auth_timeout),
                };
            }
        }
        Ok(())
    }

    /// Write a business request into `out` and track it; send `out[..len]` right away
    ///
    /// `timeout` bounds the wait for the response ([`ClientEvent::RequestTimedOut`]); zero
    /// means [`ClientConfig::request_timeout`], and it is clamped to [`MAX_DELAY`]. The header's
    /// timeout field carries `min(timeout in ms, 60000)`. The body is sent as given, unless
    /// `ClientConfig::with_gzip_requests` (feature `gzip`) wraps bodies from its threshold up
    /// in a gzip member.
    ///
    /// # Errors
    /// Nothing was written and nothing changed on error:
    /// * [`Error::Closed`] — the client is closed;
    /// * [`Error::NotOpen`] — not authenticated (yet, or any more);
    /// * [`Error::ControlCommand`] — `cmd` is 0..=3;
    /// * [`Error::TooLong`] — the body (as sent) exceeds the 24-bit length field;
    /// * [`Error::TooManyInFlight`] — `REQUESTS` requests are in flight (or their outcome
    ///   events are not polled yet);
    /// * [`Error::BufferTooSmall`] — `out` cannot hold the packet.
    pub fn send_request(
        &mut self,
        now: Instant,
        cmd: u8,
        timeout: Duration,
        body: &[u8],
        out: &mut [u8],
    ) -> Result<(RequestId, Transmit<()>), Error> {
        let wrap = self.config.gzip_requests.is_some_and(|t| body.len() >= t);
        let form = if wrap {
            BodyForm::Stored
        } else {
            BodyForm::Plain
        };
        self.write_request(now, cmd, timeout, body, form, out)
    }

    /// [`Client::send_request`] with a body you compressed yourself: `member` is one gzip
    /// member (RFC 1952) and goes out as it is, with the packet's gzip flag set
    ///
    /// # Errors
    /// As [`Client::send_request`].
    pub fn send_request_gzip(
        &mut self,
        now: Instant,
        cmd: u8,
        timeout: Duration,
        member: &[u8],
        out: &mut [u8],
    ) -> Result<(RequestId, Transmit<()>), Error> {
        self.write_request(now, cmd, timeout, member, BodyForm::Member, out)
    }

    fn write_request(
        &mut self,
        now: Instant,
        cmd: u8,
        timeout: Duration,
        body: &[u8],
        form: BodyForm,
        out: &mut [u8],
    ) -> Result<(RequestId, Transmit<()>), Error> {
        let now = self.clock.update(now);
        match self.phase {
            Phase::Closed => return Err(Error::Closed),
            Phase::Ready => {}
            _ => return Err(Error::NotOpen),
        }
        if cmd <= CMD_RECONNECT {
            return Err(Error::ControlCommand(cmd));
        }
        let wire_len = form.wire_len(body.len());
        if wire_len > MAX_BODY_LEN {
            return Err(Error::TooLong {
                len: wire_len,
                max: MAX_BODY_LEN,
            });
        }
        if self.requests.is_full() {
            return Err(Error::TooManyInFlight);
        }
        let required = REQUEST_HEADER_LEN.saturating_add(wire_len);
        if out.len() < required {
            return Err(Error::BufferTooSmall { required });
        }
        // in microseconds, at most MAX_DELAY
        let timeout = if timeout.is_zero() {
            self.config.request_timeout
        } else {
            duration_micros(timeout.min(MAX_DELAY))
        };
        let id = self.alloc_id();
        let header = Header {
            kind: Kind::Request {
                request_id: id,
                timeout_ms: header_timeout(timeout),
            },
            cmd,
            gzip: !matches!(form, BodyForm::Plain),
            verify: false,
            reserve: 0,
            // checked above: at most MAX_BODY_LEN
            body_len: u32::try_from(wire_len).unwrap_or(u32::MAX),
        };
        let hlen = header.emit(out)?;
        let rest = out.get_mut(hlen..).unwrap_or_default();
        let blen = form.write(body, rest)?;
        if !self.requests.insert(id, now.add_micros(timeout)) {
            // unreachable: checked above; keep the id unused rather than panic
            return Err(Error::TooManyInFlight);
        }
        bump(&mut self.stats.packets_sent);
        Ok((
            id,
            Transmit {
                to: (),
                len: hlen + blen,
                kind: self.data_kind(),
            },
        ))
    }

    /// Queue a heartbeat now (as if its interval had elapsed; the next one follows an interval
    /// later): a cmd-1 request on TCP, a `WsPing` on WebSocket; its echo gives
    /// [`ClientEvent::HeartbeatRtt`]
    ///
    /// A heartbeat already queued is sent once; one still unanswered is superseded (its echo
    /// no longer measures anything).
    ///
    /// # Errors
    /// [`Error::Closed`] (the client is closed) or [`Error::NotOpen`] (not authenticated);
    /// nothing changed.
    pub fn send_heartbeat(&mut self, now: Instant) -> Result<(), Error> {
        let now = self.clock.update(now);
        match self.phase {
            Phase::Closed => Err(Error::Closed),
            Phase::Ready => {
                self.queue_heartbeat(now);
                Ok(())
            }
            _ => Err(Error::NotOpen),
        }
    }

    /// Write the echo of a server heartbeat handed over as [`ClientApp::HeartbeatEcho`] into
    /// `out` (status 0, cmd 1, the server's request id, the same body and gzip flag); send
    /// `out[..len]` right away
    ///
    /// # Errors
    /// Nothing was written on error: [`Error::Closed`], [`Error::NotOpen`] (no transport is
    /// open), [`Error::TooLong`] (body over the 24-bit length field),
    /// [`Error::BufferTooSmall`].
    pub fn echo_heartbeat(
        &mut self,
        now: Instant,
        request_id: RequestId,
        body: &[u8],
        gzip: bool,
        out: &mut [u8],
    ) -> Result<Transmit<()>, Error> {
        let _ = self.clock.update(now);
        if self.phase == Phase::Closed {
            return Err(Error::Closed);
        }
        if !self.phase.link_up() {
            return Err(Error::NotOpen);
        }
        if body.len() > MAX_BODY_LEN {
            return Err(Error::TooLong {
                len: body.len(),
                max: MAX_BODY_LEN,
            });
        }
        let len = Packet::response(CMD_HEARTBEAT, request_id, Status::Success, body)
            .with_gzip(gzip)
            .emit(out)?;
        bump(&mut self.stats.heartbeats_answered);
        bump(&mut self.stats.packets_sent);
        Ok(transmit(len, self.data_kind()))
    }

    /// End everything: fail requests in flight, queue `WsClose(1000)` with `reason` (truncated
    /// to [`MAX_TEXT_LEN`](crate::longport::MAX_TEXT_LEN) bytes) on an open WebSocket, then
    /// emit the final [`ClientEvent::Closed`] with [`CloseCause::Local`]
    ///
    /// On TCP nothing is sent: close the socket once the events are drained.
    ///
    /// # Errors
    /// [`Error::Closed`] when the client is already closed; nothing changed.
    pub fn close(&mut self, now: Instant, reason: &str) -> Result<(), Error> {
        let _ = self.clock.update(now);
        if self.phase == Phase::Closed {
            return Err(Error::Closed);
        }
        let was_up = self.phase.link_up();
        self.clear_link();
        if was_up && self.config.transport == Transport::WebSocket {
            self.tx_ws_close = Some(WS_CLOSE_NORMAL);
            self.ws_close_reason = truncated(reason);
        }
        self.finish(CloseCause::Local);
        Ok(())
    }

    // ----------------------------------------------------------------------------------------
    // Machine inputs and outputs (also available through the `Machine` trait)
    // ----------------------------------------------------------------------------------------

    /// Feed the buffered bytes of the TCP stream, or one WebSocket binary message
    ///
    /// TCP: parses at most one packet; [`Received::bytes_consumed`] bytes may be dropped, or
    /// [`Received::needed`] tells how many bytes the next packet needs. WebSocket: the message is
    /// always consumed whole; an undecodable message is dropped and counted (the framing is
    /// intact, as the official Go client does); on TCP an undecodable stream ends the
    /// connection. Input while no transport is open (before [`Client::handle_connected`], after
    /// a [`ClientEvent::Disconnected`]) is dropped and counted.
    ///
    /// # Errors
    /// [`Error::QueueFull`] when the event queue is full; nothing was consumed.
    pub fn handle_input<'a>(
        &mut self,
        now: Instant,
        _from: (),
        data: &'a [u8],
    ) -> Result<Received<ClientApp<'a>>, Error> {
        let now = self.clock.update(now);
        if !self.phase.link_up() {
            if !data.is_empty() {
                bump(&mut self.stats.dropped);
            }
            return Ok(Received::consumed(data.len()));
        }
        if self.events_free() < EVENT_RESERVE {
            return Err(Error::QueueFull);
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
                        Ok(Received::maybe(n, self.on_packet(now, p)))
                    }
                    Err(e) => {
                        self.protocol_error(now, e.into());
                        Ok(Received::consumed(data.len()))
                    }
                }
            }
            Transport::WebSocket => match decode_message(data, self.config.max_body) {
                Ok((p, trailing)) => {
                    if trailing > 0 {
                        bump(&mut self.stats.trailing_bytes);
                    }
                    Ok(Received::maybe(data.len(), self.on_packet(now, p)))
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
    /// Close: the connection ended (`Disconnected` with [`CloseCause::WsClosed`]); codes
    /// 4000..=4006 are read as `4000 + Close code` and get that code's policy, any other code
    /// reconnects. Ignored on TCP and while no transport is open.
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
                self.link_down(
                    now,
                    CloseCause::WsClosed { code },
                    None,
                    After::ws_close(code),
                );
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
            self.link_down(now, CloseCause::TransportClosed, None, After::Reconnect);
        }
    }

    /// Let timers fire: dial, login and heartbeat timeouts, heartbeats, request timeouts,
    /// reconnect back-off
    ///
    /// Early calls do nothing. It also does nothing while fewer than 4 event slots are free
    /// (the deadline stays due: drain `poll_event` and call again).
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock.update(now);
        if self.phase == Phase::Closed || self.events_free() < EVENT_RESERVE {
            return;
        }
        let timed_out = self.requests.expire(now);
        bump_by(&mut self.stats.requests_timed_out, timed_out);
        match self.phase {
            Phase::Dialing { deadline } if now >= deadline => {
                self.link_down(now, CloseCause::ConnectTimeout, None, After::Reconnect);
            }
            Phase::AwaitToken { deadline } | Phase::Login { deadline, .. } if now >= deadline => {
                self.link_down(
                    now,
                    CloseCause::LoginTimeout,
                    Some(WS_CLOSE_NORMAL),
                    After::Reconnect,
                );
            }
            Phase::Ready => {
                if now >= self.liveness_deadline() {
                    self.link_down(
                        now,
                        CloseCause::Timeout,
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
            let len = emit_raw(self.ws_close_reason.as_bytes(), buf)?;
            self.tx_ws_close = None;
            self.ws_close_reason.clear();
            bump(&mut self.stats.packets_sent);
            return Ok(Some(transmit(len, FrameKind::WsClose(code))));
        }
        if self.tx_login && matches!(self.phase, Phase::Login { .. }) {
            let len = self.write_login(buf)?;
            self.tx_login = false;
            self.tx_handshake = false;
            bump(&mut self.stats.packets_sent);
            return Ok(Some(transmit(len, self.data_kind())));
        }
        if self.tx_handshake {
            let len = emit_raw(&self.config.handshake.to_bytes(), buf)?;
            self.tx_handshake = false;
            return Ok(Some(transmit(len, FrameKind::Stream)));
        }
        if let Some(echo) = self.tx_echo.front() {
            let len = echo.emit(buf)?;
            self.tx_echo.pop_front();
            bump(&mut self.stats.packets_sent);
            return Ok(Some(transmit(len, self.data_kind())));
        }
        if let Some(payload) = &self.tx_pong {
            let len = emit_raw(payload, buf)?;
            self.tx_pong = None;
            bump(&mut self.stats.packets_sent);
            return Ok(Some(transmit(len, FrameKind::WsPong)));
        }
        if let Some(rid) = self.tx_heartbeat {
            let body = Heartbeat::new(self.wall.or_epoch_ms(now), Some(heartbeat_id(rid)));
            let t = match self.config.transport {
                Transport::Tcp => {
                    let kind = Kind::Request {
                        request_id: rid,
                        timeout_ms: 0,
                    };
                    let len = emit_packet(buf, &[], kind, CMD_HEARTBEAT, &body)?;
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
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        if let Some(e) = self.requests.take_outcome() {
            return Some(e);
        }
        self.closed_event
            .take()
            .map(|cause| ClientEvent::Closed { cause })
    }

    /// When [`Client::handle_timeout`] must be called next, in the caller's clock
    ///
    /// Never more than [`MAX_DELAY`] after the latest `now` given to the client.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_deadline().map(|t| self.clock.to_caller(t))
    }

    // ----------------------------------------------------------------------------------------
    // Internals
    // ----------------------------------------------------------------------------------------

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
        earliest(phase, self.requests.next_deadline())
    }

    /// `connect` and `reconnect_now` may start a dial
    fn check_may_dial(&self) -> Result<(), Error> {
        match self.phase {
            Phase::Closed => return Err(Error::Closed),
            Phase::Dialing { .. }
            | Phase::AwaitToken { .. }
            | Phase::Login { .. }
            | Phase::Ready => return Err(Error::AlreadyConnected),
            Phase::Idle | Phase::Backoff { .. } | Phase::NeedToken | Phase::Stopped => {}
        }
        if self.events_free() < EVENT_RESERVE {
            return Err(Error::QueueFull);
        }
        Ok(())
    }

    /// Whether the session is resumable at machine time `now`
    fn resumable_at(&self, now: Instant) -> bool {
        let Some(s) = &self.session else {
            return false;
        };
        if s.id.is_empty() {
            return false;
        }
        if let Some(deadline) = s.relative_deadline {
            return now.add_micros(self.config.expiry_margin) < deadline;
        }
        if s.expires <= 0 {
            return false;
        }
        match self.wall.at(now) {
            None => true,
            Some(wall) => {
                // at most MAX_DELAY in milliseconds (2.6e9): the cast is exact
                let margin = div_rem_small(self.config.expiry_margin, 1_000).0 as i64;
                s.expires.saturating_sub(margin) > wall
            }
        }
    }

    fn events_free(&self) -> usize {
        EVENTS.saturating_sub(self.events.len())
    }

    fn push_event(&mut self, e: ClientEvent) {
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
        self.last_alive.add_micros(self.config.heartbeat_timeout)
    }

    fn can_login(&self, now: Instant) -> bool {
        self.token.is_some() || self.resumable_at(now)
    }

    fn request_token(&mut self) {
        if !self.token_requested {
            self.token_requested = true;
            self.push_event(ClientEvent::TokenNeeded);
        }
    }

    fn id_in_use(&self, id: RequestId) -> bool {
        matches!(self.phase, Phase::Login { rid, .. } if rid == id)
            || self.tx_heartbeat == Some(id)
            || matches!(self.hb_outstanding, Some((rid, _)) if rid == id)
            || self.requests.contains(id)
    }

    /// Next free request id: skips 0 and ids in use (at most `REQUESTS` + 3 are in use)
    fn alloc_id(&mut self) -> RequestId {
        let mut ids = self.ids;
        let id = ids.next(REQUESTS.saturating_add(4), |id| self.id_in_use(id));
        self.ids = ids;
        id
    }

    fn dial(&mut self, now: Instant) {
        if self.attempt > 0 {
            bump(&mut self.stats.reconnects);
        }
        self.phase = Phase::Dialing {
            deadline: now.add_micros(self.config.connect_timeout),
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
            deadline: now.add_micros(self.config.auth_timeout),
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
        self.ws_close_reason.clear();
        self.hb_outstanding = None;
        self.next_heartbeat = None;
        self.deframer = StreamDeframer::new(false, self.config.max_body);
    }

    fn fail_requests(&mut self, reason: RequestFailure) {
        let n = self.requests.fail_all(reason);
        bump_by(&mut self.stats.requests_failed, n);
    }

    /// The current transport is finished; `ws_close` is queued on an open WebSocket
    fn link_down(&mut self, now: Instant, cause: CloseCause, ws_close: Option<u16>, after: After) {
        let was_up = self.phase.link_up();
        self.clear_link();
        if was_up && self.config.transport == Transport::WebSocket {
            self.tx_ws_close = ws_close;
        }
        self.fail_requests(RequestFailure::Disconnected);
        self.last_cause = cause;
        bump(&mut self.stats.disconnects);
        self.push_event(ClientEvent::Disconnected { cause });
        match after {
            After::Reconnect => self.schedule_reconnect(now, None),
            After::ReAuth => {
                self.session = None;
                self.token = None;
                self.schedule_reconnect(now, None);
            }
            After::Quota => {
                self.session = None;
                self.token = None;
                match self.config.quota_policy {
                    QuotaPolicy::RetryAfter(delay) => self.schedule_reconnect(now, Some(delay)),
                    _ => {
                        // counts as a failed attempt: a later connect starts over anyway
                        self.attempt = self.attempt.saturating_add(1);
                        self.phase = Phase::Stopped;
                    }
                }
            }
        }
    }

    /// Back off before the next attempt: the exponential back-off, or `fixed` (a quota
    /// refusal: the token is asked for only when it elapses)
    fn schedule_reconnect(&mut self, now: Instant, fixed: Option<Duration>) {
        self.attempt = self.attempt.saturating_add(1);
        if let Some(max) = self.config.max_reconnect_attempts {
            if self.attempt > max {
                self.finish(self.last_cause);
                return;
            }
        }
        let delay = match fixed {
            Some(d) => duration_micros(d),
            None => backoff(
                self.config.reconnect_base,
                self.config.reconnect_max,
                self.config.jitter,
                self.attempt,
            ),
        };
        let at = now.add_micros(delay);
        self.phase = Phase::Backoff { at };
        if fixed.is_none() && !self.can_login(now) {
            self.session = None;
            self.request_token();
        }
        self.push_event(ClientEvent::ReconnectScheduled {
            at: self.clock.to_caller(at),
            attempt: self.attempt,
        });
    }

    fn backoff_elapsed(&mut self, now: Instant) {
        if !self.resumable_at(now) {
            self.session = None;
        }
        if self.can_login(now) {
            self.dial(now);
        } else {
            self.request_token();
            self.phase = Phase::NeedToken;
        }
    }

    fn finish(&mut self, cause: CloseCause) {
        self.fail_requests(RequestFailure::Closed);
        self.phase = Phase::Closed;
        self.closed_event = Some(cause);
    }

    fn queue_heartbeat(&mut self, now: Instant) {
        self.next_heartbeat = self.config.heartbeat_interval.map(|i| now.add_micros(i));
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
        let header = Kind::Request {
            request_id: rid,
            timeout_ms: header_timeout(self.config.auth_timeout),
        };
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
                emit_packet(buf, prefix, header, CMD_AUTH, &body)
            }
            LoginKind::Reconnect => {
                let session = self.session.as_ref().map_or("", |s| s.id.as_str());
                let body = ReconnectRequest::new(session, metadata);
                emit_packet(buf, prefix, header, CMD_RECONNECT, &body)
            }
        }
    }

    /// Queue the echo of a server heartbeat; false when it is too big or the slots are full
    fn queue_echo(&mut self, id: RequestId, gzip: bool, body: &[u8]) -> bool {
        let queued = Echo::new(id, gzip, body).is_some_and(|e| self.tx_echo.push_back(e).is_ok());
        if queued {
            bump(&mut self.stats.heartbeats_answered);
        }
        queued
    }

    fn on_packet<'a>(&mut self, now: Instant, p: Packet<'a>) -> Option<ClientApp<'a>> {
        bump(&mut self.stats.packets_received);
        if self.config.any_inbound_is_alive {
            self.last_alive = now;
        }
        let h = p.header;
        match h.kind {
            Kind::Request { request_id, .. } => {
                if h.cmd != CMD_HEARTBEAT {
                    bump(&mut self.stats.dropped);
                    return None;
                }
                self.last_alive = now;
                if self.queue_echo(request_id, h.gzip, p.body) {
                    None
                } else {
                    Some(ClientApp::HeartbeatEcho {
                        request_id,
                        body: p.body,
                        gzip: h.gzip,
                    })
                }
            }
            Kind::Response { request_id, status } => {
                self.on_response(now, h, request_id, status, p.body)
            }
            Kind::Push if h.cmd == CMD_CLOSE => self.on_close_push(now, h, p.body),
            Kind::Push => {
                bump(&mut self.stats.pushes);
                Some(ClientApp::Push {
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
        request_id: RequestId,
        status: Status,
        body: &'a [u8],
    ) -> Option<ClientApp<'a>> {
        if let Phase::Login { kind, rid, .. } = self.phase {
            if rid == request_id {
                return self.on_login_response(now, kind, h, status, body);
            }
        }
        if matches!(self.hb_outstanding, Some((rid, _)) if rid == request_id) {
            self.last_alive = now;
            self.heartbeat_acked(now);
            return None;
        }
        if !self.requests.answer(request_id) {
            bump(&mut self.stats.unmatched_responses);
            return None;
        }
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
        Some(ClientApp::Response {
            cmd: h.cmd,
            request_id,
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
            CloseCause::Protocol(e),
            Some(WS_CLOSE_PROTOCOL),
            After::Reconnect,
        );
    }

    fn on_login_response<'a>(
        &mut self,
        now: Instant,
        kind: LoginKind,
        h: Header,
        status: Status,
        body: &'a [u8],
    ) -> Option<ClientApp<'a>> {
        if kind == LoginKind::Auth {
            // one-time password: used up whatever the answer
            self.token = None;
        }
        let mut scratch = [0u8; CONTROL_INFLATE_LEN];
        let plain = control_body(&h, body, &mut scratch)
            .map_err(|e| self.protocol_error(now, e))
            .ok()?;
        if status.is_success() {
            match SessionGrant::decode(plain) {
                Ok(grant) => self.on_granted(now, kind, &grant),
                Err(error) => {
                    self.protocol_error(now, ProtocolError::ControlBody { cmd: h.cmd, error });
                }
            }
            return None;
        }
        let code = match ErrorBody::decode(plain) {
            Ok(e) => Some(e.code),
            Err(_) => {
                bump(&mut self.stats.decode_errors);
                None
            }
        };
        self.push_event(ClientEvent::LoginFailed { kind, status, code });
        let after = if status == Status::PermissionDenied {
            After::Quota
        } else {
            After::ReAuth
        };
        self.link_down(
            now,
            CloseCause::LoginRejected(status),
            Some(WS_CLOSE_NORMAL),
            after,
        );
        Some(ClientApp::LoginError {
            status,
            code,
            message: peer_text(&h, body, |e: ErrorBody<'a>| e.msg),
        })
    }

    fn on_granted(&mut self, now: Instant, via: LoginKind, g: &SessionGrant<'_>) {
        let mut id: String<SESSION_LEN> = String::new();
        if id.push_str(g.session_id).is_err() {
            id.clear();
            bump(&mut self.stats.decode_errors);
        }
        let relative_deadline = if self.config.relative_expiry_heuristic
            && g.expires > 0
            && g.expires < RELATIVE_EXPIRY_LIMIT_MS
        {
            Some(now.add_micros(g.expires.unsigned_abs().saturating_mul(1_000)))
        } else {
            None
        };
        self.session = Some(Session {
            id,
            expires: g.expires,
            relative_deadline,
        });
        let resumable = self.resumable_at(now);
        self.attempt = 0;
        self.token_requested = false;
        self.phase = Phase::Ready;
        self.last_alive = now;
        self.next_heartbeat = self.config.heartbeat_interval.map(|i| now.add_micros(i));
        self.push_event(ClientEvent::Connected {
            via,
            expires: g.expires,
            limit: g.limit,
            online: g.online,
            resumable,
        });
    }

    fn on_close_push<'a>(
        &mut self,
        now: Instant,
        h: Header,
        body: &'a [u8],
    ) -> Option<ClientApp<'a>> {
        let mut scratch = [0u8; CONTROL_INFLATE_LEN];
        let plain = control_body(&h, body, &mut scratch)
            .map_err(|e| self.protocol_error(now, e))
            .ok()?;
        match Close::decode(plain) {
            Ok(c) => {
                self.link_down(
                    now,
                    CloseCause::Peer { code: c.code },
                    Some(WS_CLOSE_NORMAL),
                    After::close_push(c.code),
                );
                Some(ClientApp::Close {
                    code: c.code,
                    reason: peer_text(&h, body, |c: Close<'a>| c.reason),
                })
            }
            Err(error) => {
                self.protocol_error(now, ProtocolError::ControlBody { cmd: h.cmd, error });
                None
            }
        }
    }
}

crate::machine::impl_machine! {
    impl[
        const REQUESTS: usize,
        const EVENTS: usize,
        const TOKEN_LEN: usize,
        const SESSION_LEN: usize,
        const METADATA_LEN: usize,
    ] for Client<REQUESTS, EVENTS, TOKEN_LEN, SESSION_LEN, METADATA_LEN> {
        Peer = (),
        Event = ClientEvent,
        App<'a> = ClientApp<'a>,
        Error = Error,
    }
    frames {}
}

/// The text `text_of` finds in an uncompressed control body, borrowed from `body`; empty when
/// the body is gzip-compressed (it was inflated into a scratch buffer that is gone) or does not
/// decode
fn peer_text<'a, B: Body<'a>>(
    h: &Header,
    body: &'a [u8],
    text_of: fn(B) -> &'a str,
) -> PeerText<'a> {
    if h.gzip {
        return PeerText::default();
    }
    B::decode(body).map_or(PeerText::default(), |b| {
        PeerText::new(text_of(b).as_bytes())
    })
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

/// How a request body goes on the wire
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyForm {
    /// As given, gzip flag clear
    Plain,
    /// Already a gzip member: as given, gzip flag set
    Member,
    /// Wrapped in a gzip member of stored blocks (only chosen with the `gzip` feature)
    Stored,
}

impl BodyForm {
    /// Length on the wire of a body of `len` bytes
    const fn wire_len(self, len: usize) -> usize {
        match self {
            BodyForm::Plain | BodyForm::Member => len,
            #[cfg(feature = "gzip")]
            BodyForm::Stored => crate::longport::gzip::stored_len(len),
            #[cfg(not(feature = "gzip"))]
            BodyForm::Stored => len,
        }
    }

    /// Write `body` in this form at the start of `out`
    fn write(self, body: &[u8], out: &mut [u8]) -> Result<usize, BufferTooSmall> {
        match self {
            #[cfg(feature = "gzip")]
            BodyForm::Stored => crate::longport::gzip::gzip_stored(body, out),
            _ => emit_raw(body, out),
        }
    }
}

const fn transmit(len: usize, kind: FrameKind) -> Transmit<()> {
    Transmit { to: (), len, kind }
}

/// The request header's timeout field for a timeout of `us` microseconds: `min(ms, 60000)`
fn header_timeout(us: u64) -> u16 {
    u16::try_from(div_rem_small(us, 1_000).0)
        .unwrap_or(MAX_HEADER_TIMEOUT_MS)
        .min(MAX_HEADER_TIMEOUT_MS)
}

/// `heartbeat_id` for a request id: the id as i32, as the official Go client casts it
const fn heartbeat_id(rid: RequestId) -> i32 {
    i32::from_ne_bytes(rid.0.to_ne_bytes())
}

fn store_token<const N: usize>(token: &str) -> Result<String<N>, Error> {
    let mut s = String::new();
    s.push_str(token).map_err(|_| Error::TooLong {
        len: token.len(),
        max: N,
    })?;
    Ok(s)
}

/// Metadata stored as `u16 len, key, u16 len, value` per pair
fn store_metadata<const N: usize>(pairs: &[(&str, &str)]) -> Result<Vec<u8, N>, Error> {
    if pairs.len() > MAX_METADATA_PAIRS {
        return Err(Error::TooLong {
            len: pairs.len(),
            max: MAX_METADATA_PAIRS,
        });
    }
    let stored: usize = pairs.iter().map(|(k, v)| 4 + k.len() + v.len()).sum();
    let too_long = Error::TooLong {
        len: stored,
        max: N,
    };
    let mut out = Vec::new();
    for (k, v) in pairs {
        for s in [k, v] {
            let len = u16::try_from(s.len()).map_err(|_| too_long)?;
            out.extend_from_slice(&len.to_be_bytes())
                .map_err(|_| too_long)?;
            out.extend_from_slice(s.as_bytes()).map_err(|_| too_long)?;
        }
    }
    Ok(out)
}

fn read_str<'a>(r: &mut Reader<'a>) -> Option<&'a str> {
    let len = r.u16()?;
    core::str::from_utf8(r.bytes(usize::from(len))?).ok()
}
