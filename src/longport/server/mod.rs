//! LongPort server machine: auth gate, session table, heartbeats, WS pings, Close pushes, and
//! the gateway's limits (documented on [`Server`])

mod admission;
mod peer;
mod rate;
mod ready;
mod session;
#[cfg(test)]
mod tests;

use heapless::Vec;

use crate::config::{at_least_one, at_most, config_fmt, getters, setters};
use crate::io::{BufferTooSmall, FrameKind, Received, Transmit};
use crate::longport::control::{
    AuthRequest, Body, CloseCode, Heartbeat, Metadata, ReconnectRequest, CMD_AUTH, CMD_CLOSE,
    CMD_HEARTBEAT, CMD_RECONNECT,
};
use crate::longport::deframe::{decode_message, Frame, Handshake, StreamDeframer, Transport};
use crate::longport::error::{Error, ProtocolError};
use crate::longport::event::{CloseCause, LoginKind, ServerEvent};
use crate::longport::wire::{
    Kind, Packet, RequestId, Signature, Status, DEFAULT_MAX_BODY, MAX_BODY_LEN,
};
use crate::longport::{bump, bump_by, truncated, Echo, Text, WallClock, MAX_WS_CONTROL_PAYLOAD};
use crate::time::{
    clamp_delay, clamp_micros, clamp_micros_some, duration_from_micros, duration_from_micros_some,
    Clock, Duration, Instant,
};

pub use admission::{AccountId, Admission, Grant, Source};
pub use rate::{RateLimit, MAX_COMMAND_LIMITS};
pub use session::{SessionId, MAX_SESSION_ENTROPY, MIN_SESSION_ENTROPY};

use peer::{CtlBody, CtlResponse, Login, Peer, Phase, Refusal};
use ready::{renumber, Ready};
use session::Sessions;

/// Longest session id the server grants, in bytes of text (the hex of
/// [`MAX_SESSION_ENTROPY`] random bytes)
pub const MAX_SESSION_ID_LEN: usize = 64;
/// Default of [`ServerConfig::with_max_auth_body`]: the largest body accepted before
/// authentication
pub const DEFAULT_MAX_AUTH_BODY: usize = 4096;
/// Largest inflated Auth/Reconnect body the server accepts (feature `gzip`), whatever
/// [`ServerConfig::max_auth_body`] says
pub const MAX_INFLATED_LOGIN: usize = 4096;
/// `Error.code` the machine puts in its status-6 answer when an account is over its quota
const ERROR_CODE_QUOTA: u64 = 403;
/// `Error.msg` of that answer (and the Close reason that follows), as the LongPort gateway
/// words it
const QUOTA_TEXT: &str = "connections limitation is hit";
/// Longest request timeout a client may ask for (the official clients' limit)
const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// `Error.code` the machine puts in its status-5 answers
const ERROR_CODE_UNAUTHENTICATED: u64 = 401;
/// `Error.code` the machine puts in its status-3 answers to stray control requests
const ERROR_CODE_BAD_REQUEST: u64 = 400;
/// Shortest WebSocket ping interval [`ServerConfig::with_ws_ping_interval`] accepts
const MIN_WS_PING_INTERVAL: Duration = Duration::from_secs(1);
/// Shortest timeout any setter accepts
const MIN_TIMEOUT: Duration = Duration::from_millis(1);

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

/// Timers and limits of a [`Server`]
///
/// Build with [`ServerConfig::new`] (or `Default`) and adjust with the `with_*` setters, which
/// clamp every value into the range they document (so [`Server::poll_timeout`] never lies more
/// than [`MAX_DELAY`](crate::time::MAX_DELAY) ahead). What the real LongPort gateway does where
/// its numbers are not public (account quota, rate limits, server heartbeats over TCP) is off by
/// default. The connection timers are kept in whole microseconds, the unit of [`Instant`]: their
/// getters give back what the setters took without the part below a microsecond.
#[derive(Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerConfig {
    // the timers in whole microseconds, at most MAX_DELAY (2.6e12 µs): they are added to an
    // `Instant` without a `Duration` conversion
    auth_timeout: u64,
    heartbeat_timeout: u64,
    ws_ping_interval: u64,
    tcp_heartbeat_interval: Option<u64>,
    max_unauthenticated: usize,
    max_unauthenticated_per_source: usize,
    max_body: usize,
    max_auth_body: usize,
    max_pending_requests: u16,
    // handed out in `ServerApp::Request` as it is, never added to an `Instant`
    default_request_timeout: Duration,
    account_quota: Option<u32>,
    rate_limit: Option<RateLimit>,
    command_limits: [Option<(u8, RateLimit)>; MAX_COMMAND_LIMITS],
}

impl ServerConfig {
    /// The defaults: auth timeout 10 s, heartbeat timeout 150 s, WebSocket pings every 20 s, no
    /// server heartbeats over TCP, 8 unauthenticated connections (4 per source), bodies up to
    /// 1 MiB (4 KiB before authentication), 32 unanswered requests per connection, default
    /// request timeout 30 s, no account quota, no rate limits
    #[must_use]
    pub const fn new() -> Self {
        ServerConfig {
            auth_timeout: 10_000_000,
            heartbeat_timeout: 150_000_000,
            ws_ping_interval: 20_000_000,
            tcp_heartbeat_interval: None,
            max_unauthenticated: 8,
            max_unauthenticated_per_source: 4,
            max_body: DEFAULT_MAX_BODY,
            max_auth_body: DEFAULT_MAX_AUTH_BODY,
            max_pending_requests: 32,
            default_request_timeout: Duration::from_secs(30),
            account_quota: None,
            rate_limit: None,
            command_limits: [None; MAX_COMMAND_LIMITS],
        }
    }

    setters! {
        /// Time from `handle_connected` until the connection must be authenticated (default 10 s;
        /// clamped to 1 ms ..= [`MAX_DELAY`](crate::time::MAX_DELAY))
        fn with_auth_timeout(timeout: Duration) { auth_timeout = clamp_micros(timeout, MIN_TIMEOUT) }

        /// Silence after which an authenticated connection is closed (default 150 s; clamped to
        /// 1 ms ..= [`MAX_DELAY`](crate::time::MAX_DELAY))
        fn with_heartbeat_timeout(timeout: Duration) { heartbeat_timeout = clamp_micros(timeout, MIN_TIMEOUT) }

        /// WebSocket Ping cadence (default 20 s; clamped to 1 s ..= [`MAX_DELAY`](crate::time::MAX_DELAY))
        fn with_ws_ping_interval(interval: Duration) {
            ws_ping_interval = clamp_micros(interval, MIN_WS_PING_INTERVAL)
        }

        /// Cadence of the server's own heartbeat requests (cmd 1) to authenticated TCP clients
        /// (default `None`: none; clamped to 1 s ..= [`MAX_DELAY`](crate::time::MAX_DELAY))
        ///
        /// Each answer gives [`ServerEvent::HeartbeatRtt`]. The official Go client echoes them;
        /// the official Rust client has no TCP transport.
        fn with_tcp_heartbeat_interval(interval: Option<Duration>) {
            tcp_heartbeat_interval = clamp_micros_some(interval, MIN_WS_PING_INTERVAL)
        }

        /// Most connections that may be unauthenticated at once (default 8; at least 1, and never
        /// more than the `PEERS` the table holds); a new connection beyond it evicts the oldest
        fn with_max_unauthenticated(max: usize) { max_unauthenticated = at_least_one(max) }

        /// Most unauthenticated connections one known [`Source`] may hold (default 4; at least 1);
        /// a new connection from that source beyond it evicts that source's oldest
        fn with_max_unauthenticated_per_source(max: usize) {
            max_unauthenticated_per_source = at_least_one(max)
        }

        /// Largest announced body accepted (default 1 MiB; at most [`MAX_BODY_LEN`], the most the
        /// 24-bit length field can announce)
        fn with_max_body(max_body: usize) { max_body = at_most(max_body, MAX_BODY_LEN) }

        /// Largest announced body accepted before authentication (default 4 KiB, ample for a
        /// token and its metadata; at most [`MAX_BODY_LEN`]; the smaller of this and
        /// [`ServerConfig::max_body`] applies)
        ///
        /// A packet header that announces more closes the connection at once with
        /// `Close{UnpackError}`, so the caller never buffers more than this for a connection
        /// nobody has authenticated.
        fn with_max_auth_body(max: usize) { max_auth_body = at_most(max, MAX_BODY_LEN) }
    }

    /// Most requests of one connection handed to the application and not answered yet
    /// (default 32; clamped to 1 ..= 65535)
    ///
    /// Beyond it `handle_input` refuses the next request with [`Error::TooManyInFlight`]
    /// without consuming it: stop reading from that peer until the application has answered.
    #[must_use]
    pub const fn with_max_pending_requests(mut self, max: usize) -> Self {
        self.max_pending_requests = if max == 0 {
            1
        } else if max > u16::MAX as usize {
            u16::MAX
        } else {
            max as u16
        };
        self
    }

    /// Timeout reported in [`ServerApp::Request`] when the client sent 0 (default 30 s;
    /// clamped to 1 ms ..= 60 s, the largest a client may ask for)
    #[must_use]
    pub const fn with_default_request_timeout(mut self, timeout: Duration) -> Self {
        let t = clamp_delay(timeout, MIN_TIMEOUT);
        self.default_request_timeout = if t.as_nanos() > MAX_REQUEST_TIMEOUT.as_nanos() {
            MAX_REQUEST_TIMEOUT
        } else {
            t
        };
        self
    }

    setters! {
        /// Most live connections per [`AccountId`] (default `None`: no quota; `Some(0)` is taken
        /// as 1)
        ///
        /// A login that would exceed it is refused by the machine as the LongPort gateway does:
        /// status 6 (PermissionDenied), `Error{403, "connections limitation is hit"}`, then
        /// `Close{AuthError}`. With a quota, `limit` and `online` in the response granting a login
        /// with an account are the quota and the account's live connections (this one included). A
        /// connection stops counting as soon as it closes. The account is the one the application
        /// names in [`Grant::with_account`] (a Reconnect without one keeps the session's); logins
        /// without an account are not counted and report the grant's own numbers.
        fn with_account_quota(quota: Option<u32>) {
            account_quota = match quota {
                Some(0) => Some(1),
                q => q,
            }
        }

        /// Rate limit of the business requests of each connection (default `None`)
        ///
        /// A request over it is answered by the machine with status 3 and `Error{301606}`; the
        /// application never sees it. Heartbeats and control requests are not limited.
        fn with_rate_limit(limit: Option<RateLimit>) { rate_limit = limit }
    }

    /// Rate limit of command `cmd` on each connection (in addition to
    /// [`ServerConfig::with_rate_limit`]); `None` removes it
    ///
    /// At most [`MAX_COMMAND_LIMITS`] commands have a limit: setting one more when the table is
    /// full replaces the last entry. Commands 0..=3 (control) are never limited and ignored
    /// here.
    #[must_use]
    pub const fn with_command_rate_limit(mut self, cmd: u8, limit: Option<RateLimit>) -> Self {
        if cmd <= CMD_RECONNECT {
            return self;
        }
        // the entry of `cmd`, else the first free one, else the last
        let mut slot = MAX_COMMAND_LIMITS;
        let mut free = MAX_COMMAND_LIMITS;
        let mut i = 0;
        while i < MAX_COMMAND_LIMITS {
            match self.command_limits[i] {
                Some((c, _)) if c == cmd => {
                    slot = i;
                }
                None if free == MAX_COMMAND_LIMITS => {
                    free = i;
                }
                _ => {}
            }
            i += 1;
        }
        if slot == MAX_COMMAND_LIMITS {
            if limit.is_none() {
                return self;
            }
            slot = if free < MAX_COMMAND_LIMITS {
                free
            } else {
                MAX_COMMAND_LIMITS - 1
            };
        }
        self.command_limits[slot] = match limit {
            Some(l) => Some((cmd, l)),
            None => None,
        };
        self
    }

    getters! {
        /// See [`ServerConfig::with_auth_timeout`]
        fn auth_timeout() -> Duration = duration_from_micros;
        /// See [`ServerConfig::with_heartbeat_timeout`]
        fn heartbeat_timeout() -> Duration = duration_from_micros;
        /// See [`ServerConfig::with_ws_ping_interval`]
        fn ws_ping_interval() -> Duration = duration_from_micros;
        /// See [`ServerConfig::with_tcp_heartbeat_interval`]
        fn tcp_heartbeat_interval() -> Option<Duration> = duration_from_micros_some;
        /// See [`ServerConfig::with_max_unauthenticated`] (the value set, before the `PEERS` cap)
        fn max_unauthenticated() -> usize;
        /// See [`ServerConfig::with_max_unauthenticated_per_source`]
        fn max_unauthenticated_per_source() -> usize;
        /// See [`ServerConfig::with_max_body`]
        fn max_body() -> usize;
        /// See [`ServerConfig::with_max_auth_body`] (the value set, before the `max_body` cap)
        fn max_auth_body() -> usize;
    }

    /// See [`ServerConfig::with_max_pending_requests`]
    #[must_use]
    pub const fn max_pending_requests(&self) -> usize {
        self.max_pending_requests as usize
    }

    getters! {
        /// See [`ServerConfig::with_default_request_timeout`]
        fn default_request_timeout() -> Duration;
        /// See [`ServerConfig::with_account_quota`]
        fn account_quota() -> Option<u32>;
        /// See [`ServerConfig::with_rate_limit`]
        fn rate_limit() -> Option<RateLimit>;
    }

    /// The limit of command `cmd`, see [`ServerConfig::with_command_rate_limit`]
    #[must_use]
    pub const fn command_rate_limit(&self, cmd: u8) -> Option<RateLimit> {
        match self.command_limit(cmd) {
            Some((_, l)) => Some(l),
            None => None,
        }
    }

    /// The limit of `cmd` and its slot in the table
    const fn command_limit(&self, cmd: u8) -> Option<(usize, RateLimit)> {
        let mut i = 0;
        while i < MAX_COMMAND_LIMITS {
            if let Some((c, l)) = self.command_limits[i] {
                if c == cmd {
                    return Some((i, l));
                }
            }
            i += 1;
        }
        None
    }

    /// The body limit before authentication
    const fn auth_body_limit(&self) -> usize {
        if self.max_auth_body < self.max_body {
            self.max_auth_body
        } else {
            self.max_body
        }
    }
}

config_fmt!(ServerConfig, c => {
    auth_timeout: c.auth_timeout(),
    heartbeat_timeout: c.heartbeat_timeout(),
    ws_ping_interval: c.ws_ping_interval(),
    tcp_heartbeat_interval: c.tcp_heartbeat_interval(),
    max_unauthenticated: c.max_unauthenticated,
    max_unauthenticated_per_source: c.max_unauthenticated_per_source,
    max_body: c.max_body,
    max_auth_body: c.max_auth_body,
    max_pending_requests: c.max_pending_requests,
    default_request_timeout: c.default_request_timeout,
    account_quota: c.account_quota,
    rate_limit: c.rate_limit,
    command_limits: c.command_limits,
});

impl Default for ServerConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// Where a connection is in its lifecycle
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ServerState {
    /// TCP: waiting for the 2-byte handshake
    AwaitHandshake,
    /// Waiting for the first packet (Auth or Reconnect)
    AwaitAuth,
    /// The application must call `accept_*` or `reject_*`
    AuthPending,
    /// Authenticated: business traffic flows
    Authenticated,
    /// A Close push is queued or sent; waiting for the frames to drain and the `Closed` event
    Closing,
    /// The transport is gone; the slot is freed when the `Closed` event has been polled
    Gone,
}

/// What one input of the [`Server`] carried for the application, borrowed from that input
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ServerApp<'a> {
    /// An Auth request: check `token`, then call `accept_auth` or `reject_auth`
    Auth {
        /// Request id (echoed by the machine in its response)
        request_id: RequestId,
        /// The one-time password
        token: &'a str,
        /// Client metadata (`accept-language`, ...)
        metadata: Metadata<'a>,
    },
    /// A Reconnect request for a live session: call `accept_reconnect` or `reject_reconnect`
    Reconnect {
        /// Request id
        request_id: RequestId,
        /// The session presented (known to the table and not expired)
        session_id: &'a str,
        /// Its expiry (Unix ms)
        expires: i64,
        /// Client metadata
        metadata: Metadata<'a>,
    },
    /// An Auth request whose body is gzip-compressed (feature `gzip`; the official Go client
    /// compresses bodies of 1 KiB and more): inflate `body`, check the token, then call
    /// `accept_auth` or `reject_auth`
    ///
    /// The machine has inflated and decoded it already (within [`MAX_INFLATED_LOGIN`] bytes and
    /// [`ServerConfig::max_auth_body`]), so this cannot fail with a buffer that large:
    ///
    /// ```
    /// # #[cfg(feature = "gzip")] {
    /// use tether_net::longport::control::{AuthRequest, Body};
    /// use tether_net::longport::{gzip, MAX_INFLATED_LOGIN};
    /// # let mut member = [0u8; 64];
    /// # let n = gzip::gzip_stored(b"\x0a\x03abc", &mut member).unwrap();
    /// # let body = &member[..n];
    /// let mut plain = [0u8; MAX_INFLATED_LOGIN];
    /// let len = gzip::gunzip(body, &mut plain).unwrap();
    /// let auth = AuthRequest::decode(&plain[..len]).unwrap();
    /// assert_eq!(auth.token, "abc");
    /// # }
    /// ```
    CompressedAuth {
        /// Request id
        request_id: RequestId,
        /// The gzip member: an `AuthRequest` once inflated
        body: &'a [u8],
    },
    /// A Reconnect request with a gzip-compressed body for a live session (feature `gzip`):
    /// call `accept_reconnect` or `reject_reconnect` (the body inflates to a
    /// `ReconnectRequest` as for [`ServerApp::CompressedAuth`])
    CompressedReconnect {
        /// Request id
        request_id: RequestId,
        /// Expiry (Unix ms) of the session presented (known to the table and not expired)
        expires: i64,
        /// The gzip member
        body: &'a [u8],
    },
    /// A business request from an authenticated client: answer with [`Server::respond`]
    ///
    /// Answer every request exactly once (status 3 and an `Error` for commands you do not
    /// serve): until answered it counts against [`ServerConfig::max_pending_requests`].
    Request {
        /// Request id to echo
        request_id: RequestId,
        /// Command code (4 and up)
        cmd: u8,
        /// Processing deadline: the client's value clamped to 60 s, or the configured default
        /// for 0
        timeout: Duration,
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
        request_id: RequestId,
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
    /// A heartbeat request the machine cannot echo itself (body over
    /// [`MAX_ECHO_LEN`](crate::longport::MAX_ECHO_LEN), or the echo slot still holds an unsent
    /// echo): echo `body` with [`Server::respond`] (status 0, cmd 1, same id; use
    /// [`Server::send`] with `with_gzip(gzip)` to keep the flag); counts as a pending request
    /// until then
    HeartbeatEcho {
        /// Request id to echo
        request_id: RequestId,
        /// Body to echo
        body: &'a [u8],
        /// True when `body` is a gzip member
        gzip: bool,
    },
}

/// Counters of a [`Server`] (saturating)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
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
    /// Ping payloads over 125 bytes (not answered)
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
    /// Unauthenticated connections evicted to admit a new one (`Closed { cause: Evicted }`)
    pub connections_evicted: u64,
    /// Logins refused because the account held its quota of connections (status 6)
    pub quota_refusals: u64,
    /// Requests answered by the machine with status 3 / `Error{301606}` (rate limited)
    pub requests_rate_limited: u64,
    /// Server heartbeat requests sent over TCP (cmd 1)
    pub heartbeats_sent: u64,
    /// Server heartbeats answered (TCP responses and WebSocket pongs matching the
    /// outstanding one): round-trip times reported
    pub heartbeat_acks: u64,
    /// Gzip-compressed Auth/Reconnect requests inflated
    pub compressed_logins: u64,
}

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

/// Where [`Server::shutdown`] is
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
enum Shutdown {
    Running,
    Draining,
    Reported,
}

/// Keys compared at a time when a connection is looked up by key ([`Server::find`])
const KEY_BLOCK: usize = 16;

/// Sans-IO LongPort server for up to `PEERS` connections (default 16) and `SESSIONS` sessions
/// (default 64)
///
/// `P` is the caller's connection key (a socket handle, a slab index, ...).
/// [`Server::new`] builds one with the default capacities, [`Server::with_capacities`] with
/// others. The sections below give the lifecycle, the close signal, every policy choice and how
/// to drive it.
///
/// [`Server`] keeps the control plane of many client connections, over TCP and WebSocket, for
/// the caller's own gateway. The caller owns the sockets, the clock, the token check and the
/// random source for session ids; the machine decides what goes on the wire and when. Its inputs
/// and outputs are inherent methods, and it implements [`Machine`](crate::Machine) with
/// `Peer = P` (the caller's connection key) by delegating to them.
///
/// # Connection lifecycle
///
/// ```text
/// handle_connected ─► AwaitHandshake (TCP only, 2 bytes) ─► AwaitAuth ─► AuthPending ─► Authenticated
///                                                              │              │              │
///                                                              └──────────────┴──────────────┴─► Closing ─► (Closed event, slot freed)
/// ```
///
/// 1. [`Server::handle_connected`] registers a connection under the caller's key `P`, with the
///    [`Source`] it comes from (its IP address, or [`Source::UNKNOWN`]). The table holds
///    `PEERS` connections. Unauthenticated ones are bounded without letting idle sockets lock
///    anybody out: one source holds at most
///    [`ServerConfig::max_unauthenticated_per_source`] (4) of them, all sources together
///    [`ServerConfig::max_unauthenticated`] (8), and a new connection beyond either cap
///    **evicts the oldest** unauthenticated connection (of its source, else of all; those whose
///    login waits for the application go last) with `Close{ServerError, "too many
///    unauthenticated connections"}` ([`CloseCause::Evicted`]). So an attacker's idle sockets
///    only push out each other, and a login, which takes two round trips, is pushed out only by
///    `max_unauthenticated` newer connections arriving meanwhile. Refusals are typed
///    ([`Error`]); the caller then closes the socket without sending anything.
/// 2. TCP connections first send the 2-byte handshake. It is validated (version 1) and
///    recorded ([`Server::handshake`]); a bad one is answered with `Close{UnpackError}`. The
///    handshake and the first packet may arrive in the same read.
/// 3. Before authentication a packet may announce at most [`ServerConfig::max_auth_body`]
///    bytes of body (4 KiB): a header announcing more closes the connection at once with
///    `Close{UnpackError}`, so nobody has to buffer more for an unauthenticated peer. The first
///    packet must be an Auth (cmd 2) or Reconnect (cmd 3) request. Anything else — heartbeats
///    included — is answered, if it is a request, with status 5 (Unauthenticated) and an
///    `Error{401}` body, then `Close{AuthError}`.
/// 4. Auth: [`Server::handle_input`] returns [`ServerApp::Auth`] borrowing the token and
///    metadata from the caller's buffer. The application checks the token and calls
///    [`Server::accept_auth`] with a [`Grant`] (a [`SessionId`] it drew from its random
///    source, the expiry, optionally the [`AccountId`]) or [`Server::reject_auth`] (status +
///    `Error` response, `Close{AuthError}`). No event is queued for the request: the
///    `ServerApp` value is the one signal, so the caller cannot miss the token. With the `gzip`
///    feature a gzip-compressed Auth (the official Go client compresses bodies of 1 KiB and
///    more) is inflated within the same limit (at most [`MAX_INFLATED_LOGIN`]), checked, and
///    handed over as [`ServerApp::CompressedAuth`] (inflate it again to read the token);
///    without the feature it is closed with `Close{UnpackError}`.
/// 5. Reconnect: the session id is looked up in the machine's session table first. An unknown or
///    expired id is rejected **automatically**, without involving the application: status 5,
///    `Error{401, "session expired"}`, `Close{SessExpired}`. A known id yields
///    [`ServerApp::Reconnect`] (or [`ServerApp::CompressedReconnect`]); the application mints
///    a fresh session id and calls [`Server::accept_reconnect`] (the old id is retired: the
///    protocol issues a new session on every reconnect) or [`Server::reject_reconnect`]
///    (`Close{SessExpired}`).
/// 6. Until the application decides, further input from that connection is refused with
///    [`Error::AuthPending`] and left unconsumed (official clients wait for the auth response
///    before sending anything else). The auth deadline ([`ServerConfig::auth_timeout`], 10 s)
///    covers the whole unauthenticated phase, including a decision that never comes:
///    `Close{AuthError}`.
/// 7. Authenticated: [`ServerEvent::Connected`]. Business requests come back as
///    [`ServerApp::Request`] (borrowed); the application answers each with [`Server::respond`]
///    and pushes with [`Server::push`], both writing straight into the caller's buffer.
///
/// # Closing and the "close the transport now" signal
///
/// Whenever the machine closes a connection it queues, in this order, any pending control
/// response (e.g. the status-5 answer), a `Close{code, reason}` push (cmd 0), and on WebSocket a
/// [`FrameKind::WsClose`] frame with a legal RFC 6455 code ([`CloseCode::ws_close_code`]: 1000
/// heartbeat timeout, 1001 shutdown, 1002 unpack error, 1008 auth/session/duplicate, 1011 server
/// error) whose payload is the reason. **Once every frame for that connection has been handed
/// out by `poll_transmit`**, it reports [`ServerEvent::Closed`] with the [`CloseCause`]: the
/// signal to close the socket (TCP) or to finish the WebSocket close (WS; the close frame was
/// the last transmit). After `Closed` the machine has forgotten the connection and the key may
/// be reused.
///
/// When the caller reports the transport gone ([`Server::handle_closed`], or a WebSocket Close
/// frame from the client via [`Server::handle_frame`]), queued frames are dropped and `Closed`
/// follows at once (with the cause of a close already under way, else
/// [`CloseCause::TransportClosed`] / [`CloseCause::WsClosed`]). The session survives: a
/// closed transport releases nothing but the connection (and its place in the account quota).
///
/// [`Server::shutdown`] closes every connection with `Close{ServerShutdown}` and refuses new
/// ones; [`ServerEvent::ShutdownComplete`] follows the last `Closed`.
///
/// # Sessions
///
/// **A session id is a bearer secret**: whoever presents it in a Reconnect resumes the session,
/// nothing else is checked. So the server only grants [`SessionId`]s, built from at least 128
/// bits the caller draws from a cryptographically secure random source (the machine has no
/// randomness of its own), sent as lowercase hex; guesses of the old `s-1` kind are hopeless,
/// and a failed guess changes nothing for the session's holder (the guesser gets status 5 and
/// `Close{SessExpired}`). Reconnect requests may present any text: it is looked up as it is.
///
/// Sessions live in a table of `SESSIONS` entries and outlive their connections until they
/// expire. `expires` is absolute Unix milliseconds (as the official clients read it), compared
/// against the caller's wall clock ([`Server::set_wall_clock`]; without one, against
/// milliseconds since the caller's epoch). A session is usable while `wall_ms < expires`.
/// Expired entries are purged whenever the table is touched. When the table is full, the entry
/// that expires first among those **without** a live connection is evicted; if every entry has
/// a live connection, the one expiring first is evicted (its connection stays authenticated but
/// can no longer be resumed by Reconnect). Evictions are counted in
/// [`ServerStats::sessions_evicted`].
///
/// Session ids are compared in constant time over their bytes: no early exit on content, and
/// the whole table is scanned on every lookup. Ids of different lengths compare unequal
/// immediately, so the **length** of a valid id is not hidden (it is 32 characters for 16
/// bytes anyway).
///
/// Duplicate sessions: when a session becomes live on a second connection (a Reconnect accepted
/// while the old connection is still open, or `accept_*` given an id that another live
/// connection holds), the **older** connection is closed with `Close{ConnectDuplicate}`
/// ([`CloseCause::Duplicate`]). The new connection is the one that proved it holds the secret
/// now; the old one is typically half-dead (NAT rebinding, a client that gave up on it). What
/// the LongPort gateway does here is not public. The new connection gets a new session id (every
/// Reconnect does), so the displaced client cannot flip it back; this crate's
/// [`Client`](crate::longport::Client) answers `ConnectDuplicate` with a fresh Auth (a session
/// of its own), never by stopping for good.
///
/// # Heartbeats and liveness
///
/// * cmd-1 requests from authenticated peers are echoed (status 0, same request id, same body,
///   same gzip flag), over TCP and over WebSocket (third-party clients send them there). Before
///   authentication they are treated like any other non-auth first packet (rejected).
/// * Echo bodies up to [`MAX_ECHO_LEN`](crate::longport::MAX_ECHO_LEN) bytes (64; official
///   clients send at most 22) are copied into a per-connection slot and answered from
///   `poll_transmit`. A larger body is not copied: it comes back as [`ServerApp::HeartbeatEcho`]
///   and the caller must echo it with [`Server::respond`] (or [`Server::send`] to keep the gzip
///   flag). A heartbeat that arrives while the slot still holds an unsent echo (two pipelined in
///   one read) is handed over the same way, so no echo is lost.
/// * On WebSocket the machine sends [`FrameKind::WsPing`] every
///   [`ServerConfig::ws_ping_interval`] (20 s, from connection start; the official Rust client
///   drops a connection that saw no Ping for 120 s). On TCP it sends its own cmd-1 heartbeat
///   requests to authenticated clients every [`ServerConfig::tcp_heartbeat_interval`] (off by
///   default; the official Go client echoes them). Both carry a `Heartbeat{timestamp = wall ms,
///   heartbeat_id}` body; the answer (the cmd-1 response with the same id, or a Pong echoing
///   the payload) gives [`ServerEvent::HeartbeatRtt`]. Client Pings are answered with
///   [`FrameKind::WsPong`] echoing the payload (only the latest one, as RFC 6455 allows); a
///   caller whose WebSocket library already answers pings may drop those transmits.
/// * Every complete inbound packet, Ping and Pong refreshes liveness. An authenticated
///   connection without any for [`ServerConfig::heartbeat_timeout`] (default **150 s**: the Go
///   client heartbeats every 60 s, so one lost heartbeat plus 30 s of slack is tolerated) gets
///   `Close{HeartbeatTimeout}` ([`CloseCause::Timeout`]).
///
/// # The gateway's limits (off by default)
///
/// * **Account quota** ([`ServerConfig::with_account_quota`]): the live connections of one
///   [`AccountId`] (named by the application in [`Grant::with_account`]) are counted; a login
///   beyond the quota is refused by the machine as the LongPort gateway does — status 6
///   (PermissionDenied), `Error{403, "connections limitation is hit"}`, `Close{AuthError}` —
///   and `accept_*` returns [`Admission::OverQuota`]. A connection stops counting as soon as it
///   closes (the users of the official SDKs report slots that linger after a crash: here the
///   transport closing frees the slot). With a quota, `limit` and `online` in every granted
///   response are the quota and the account's connections.
/// * **Rate limits** ([`ServerConfig::with_rate_limit`] per connection,
///   [`ServerConfig::with_command_rate_limit`] per command; token buckets on the caller's
///   clock): a business request over a limit is answered by the machine with status 3
///   (BadRequest) and `Error{301606}`, the code the LongPort documentation lists for rate
///   limiting, and never reaches the application. Up to 4 such answers wait per connection;
///   one more request is refused with [`Error::QueueFull`] until they are handed out.
///
/// Undecodable input — unknown packet type, announced body above the limit, a truncated
/// WebSocket message, a malformed Auth/Reconnect body, a gzip-compressed one that does not
/// inflate within the limit — closes the connection with `Close{UnpackError}`
/// ([`CloseCause::Protocol`]). Responses and pushes from the client with a control cmd are
/// ignored (counted in [`ServerStats::ignored_packets`]); with a business cmd they are passed
/// to the application ([`ServerApp::Response`], [`ServerApp::Push`]). Close, Auth or Reconnect
/// *requests* on an authenticated connection are answered with status 3 (BadRequest) and
/// `Error{400, "unexpected control command"}`; the connection stays up (a further one arriving
/// before that answer was sent is dropped and counted). Gzip-compressed business bodies are
/// passed through with their flag; the machine never inflates them.
///
/// # Buffers and copies
///
/// Business bodies are never copied: inbound ones are borrowed in [`ServerApp`], outbound ones
/// are written by [`Server::respond`] / [`Server::push`] / [`Server::send`] straight into the
/// caller's buffer. The machine's own frames are produced at `poll_transmit` time from small
/// bounded per-connection state: the auth/reconnect/error response (session id up to
/// [`MAX_SESSION_ID_LEN`] bytes, error message up to
/// [`MAX_TEXT_LEN`](crate::longport::MAX_TEXT_LEN)), one heartbeat echo, up to 4 rate-limit
/// refusals, one Pong payload (up to 125 bytes), one server heartbeat, one Close push. A
/// caller-supplied message or close reason longer than `MAX_TEXT_LEN` bytes is truncated on a
/// char boundary. `poll_transmit` with a too-small buffer returns [`BufferTooSmall`] with the
/// exact size and changes nothing.
///
/// [`Server::respond`] and friends refuse to write while a machine-generated control response
/// for that connection still waits in `poll_transmit` ([`Error::QueueFull`]: drain, retry), so
/// an application push cannot overtake the auth response. They never write a Request packet to
/// a WebSocket client ([`Error::RequestOnWebSocket`]): the official Rust client treats one as
/// fatal. The only Request packets the machine sends itself are its TCP heartbeats.
///
/// # Cost
///
/// Memory is fixed by the const generics: on x86_64 a connection takes about 760 bytes (its slot:
/// the bounded response, echo, refusal, pong and close slots above and the rate-limit buckets;
/// its key and its places in the queues) and a session entry about 110, so
/// `Server<u32, 16, 64>` is about 20 KB.
///
/// Connections are found by a scan of a key array (`PEERS` keys side by side, a few bytes each,
/// not the connection slots), 16 keys compared at a time once there are 16 or more.
/// `poll_transmit` and `poll_event` take connections from two queues of those with a frame or
/// an event, `O(1)` per item; a connection with several frames hands out one and waits for the
/// others' turn. `poll_timeout` is `O(1)`, and `handle_timeout`
/// returns at once before the earliest deadline and is `O(PEERS)` when one is due. A new
/// connection and a login (the unauthenticated counts, the account quota) are `O(PEERS)`, a
/// `Closed` is `O(PEERS)` at most (the queues are renumbered); session lookups `O(SESSIONS)`,
/// and so is the end of a logged-in connection (its session lets go of it); a connection that
/// never logged in ends without touching the session table.
/// (A heartbeat from a random one of 1,024 connections, with the drain and `poll_timeout` after
/// it: 120–155 ns, against 8 µs when every call walked every connection; a connection in and
/// out beside 1,023 others about 250–290 ns; `benches/machines.rs`, `lp_server_heartbeat` and
/// `lp_server_churn`.) Sessions need no timer, so they do not appear in `poll_timeout`.
/// Events are derived from per-connection state, so there is no event queue that could
/// overflow (each connection is queued at most once); their order across connections is the
/// order in which they became due.
///
/// # Driving it
///
/// The run loop of the crate docs: one input, then [`drain`](crate::drain), then sleep until
/// [`Server::poll_timeout`]. TCP, per readable socket (the caller keeps unconsumed bytes in its
/// own buffer):
///
/// ```
/// use tether_net::longport::{Error, Grant, Server, ServerApp, ServerConfig, ServerEvent, SessionId, Source, Transport};
/// use tether_net::Instant;
///
/// let mut server: Server<u32> = Server::new(ServerConfig::new());
/// let now = Instant::from_secs(1);
/// let peer_ip = std::net::Ipv4Addr::new(192, 0, 2, 1);
/// server.handle_connected(now, 7, Transport::Tcp, Source::from(peer_ip)).unwrap();
/// // handshake 11 09 and an auth request for token "abc", in one read
/// let mut inbuf = vec![0x11, 0x09, 0x01, 0x02, 0, 0, 0, 1, 0x13, 0x88, 0, 0, 5, 0x0a, 3, b'a', b'b', b'c'];
/// let mut auth = None;
/// while !inbuf.is_empty() {
///     let r = match server.handle_input(now, 7, &inbuf) {
///         Ok(r) => r,
///         // auth decision pending: keep the bytes, feed them again after deciding
///         Err(Error::AuthPending) => break,
///         Err(e) => unreachable!("{e}"),
///     };
///     if let Some(ServerApp::Auth { token, .. }) = r.app() {
///         auth = Some(*token == "abc"); // check the one-time password (here: trivially)
///     }
///     if r.needed().is_some() {
///         break; // partial packet: read more from the socket
///     }
///     inbuf.drain(..r.bytes_consumed());
/// }
/// assert_eq!(auth, Some(true));
/// // 16 bytes from the OS random source in real code (getrandom::fill, /dev/urandom)
/// let random = [0x3c; 16];
/// let grant = Grant::new(SessionId::from_random(random), 1_700_086_400_000);
/// server.accept_auth(now, 7, grant).unwrap();
/// let mut out = [0u8; 256];
/// let mut sent = Vec::new();
/// tether_net::drain(&mut server, now, &mut out, |t, bytes| {
///     sent.push((t.to, bytes.to_vec())); // write to the socket of t.to
///     Ok::<(), std::io::Error>(())
/// }, |_server, ev| assert!(matches!(ev, ServerEvent::Connected { peer: 7, .. })))
/// .unwrap();
/// assert_eq!(sent.len(), 1);
/// assert_eq!(sent[0].1.len(), 51); // the AuthResponse with a 32-character session id
/// ```
///
/// WebSocket: parse the `version/codec/platform` query with
/// [`WsParams::parse_query`](crate::longport::deframe::WsParams::parse_query) before upgrading,
/// call `handle_connected(now, key, Transport::WebSocket, source)`, feed each binary message
/// whole to `handle_input`, Ping/Pong/Close frames to [`Server::handle_frame`], and send each
/// [`Transmit`] as the frame its [`FrameKind`] names (binary, ping, pong, close). In both cases
/// call `handle_timeout` at `poll_timeout`, and close the socket on [`ServerEvent::Closed`].
///
/// ## Bounded input and output per connection
///
/// One peer must never stall the others or grow the server's memory. The machine bounds what it
/// holds itself; the driver bounds the rest:
///
/// * **Input.** Read from a socket only into a bounded buffer: the largest packet it can hold
///   is 11 + [`ServerConfig::max_body`] + 24 bytes after authentication, 11 +
///   [`ServerConfig::max_auth_body`] + 24 before (a larger announcement closes the
///   connection at the header). A request the application has not answered yet counts against
///   [`ServerConfig::max_pending_requests`] (32): beyond it `handle_input` refuses the next
///   request with [`Error::TooManyInFlight`] and consumes nothing. Then **stop reading from that
///   socket** (keep its bytes; TCP flow control pushes back on the client) until the
///   application has answered, and feed the same bytes again. Answer every request once
///   (status 3 for commands you do not serve) so the count comes down.
/// * **Output.** Keep a bounded outbox per connection (the frames `poll_transmit` and
///   `respond`/`push` gave you that the socket did not take yet). Its worst case is
///   `max_pending_requests` answers plus a handful of machine frames
///   ([`Server::has_pending_output`] tells whether the machine still holds any for a peer)
///   plus your pushes. **Stop reading from a peer whose answers cannot be written** — its
///   outbox is full — so it cannot make you produce more; and stop pushing to it.
/// * **A peer that does not read.** Give each outbox a deadline: a peer whose outbox stays full
///   past it (a few seconds; longer than a slow but live link needs to drain it) is not coming
///   back. Drop its socket and call [`Server::handle_closed`]: its frames are dropped and
///   `Closed { cause: TransportClosed }` follows at once (a graceful [`Server::close`] would
///   queue a Close push that cannot be written either). Never block on one socket: write with
///   non-blocking sockets (or one task per connection), so timers — auth deadlines, heartbeat
///   timeouts, pings — keep running for everyone.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Server<P, const PEERS: usize = 16, const SESSIONS: usize = 64> {
    config: ServerConfig,
    clock: Clock,
    wall: WallClock,
    peers: Vec<Peer<P>, PEERS>,
    /// `peers[i].key` at `i`: what a lookup scans (a few bytes per connection, not a `Peer`)
    keys: Vec<P, PEERS>,
    sessions: Sessions<P, SESSIONS>,
    /// Connections with a frame for `poll_transmit`, in turn
    tx_ready: Ready<PEERS>,
    /// Connections with an event for `poll_event`
    ev_ready: Ready<PEERS>,
    /// The connections not logged in yet (handshake, login, or a login pending), in no order
    unauth: Vec<usize, PEERS>,
    /// No deadline of any connection is earlier (machine time); `None`: no connection has one
    wake: Option<Instant>,
    shutdown: Shutdown,
    stats: ServerStats,
}

impl<P: Copy + Eq> Server<P> {
    /// A server with the default capacities and no connections
    #[must_use]
    pub fn new(config: ServerConfig) -> Self {
        Self::with_capacities(config)
    }
}

impl<P: Copy + Eq, const PEERS: usize, const SESSIONS: usize> Server<P, PEERS, SESSIONS> {
    /// A server with these capacities (`Server::<u32, 4, 8>::with_capacities(cfg)`) and no
    /// connections
    #[must_use]
    pub fn with_capacities(config: ServerConfig) -> Self {
        Server {
            config,
            clock: Clock::new(),
            wall: WallClock::default(),
            peers: Vec::new(),
            keys: Vec::new(),
            sessions: Sessions::new(),
            tx_ready: Ready::new(),
            ev_ready: Ready::new(),
            unauth: Vec::new(),
            wake: None,
            shutdown: Shutdown::Running,
            stats: ServerStats::default(),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Getters
    // -----------------------------------------------------------------------------------------

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

    /// Unix milliseconds at `now`, once [`Server::set_wall_clock`] was called
    #[must_use]
    pub fn wall_clock_ms(&self, now: Instant) -> Option<i64> {
        self.wall.at(self.clock.peek(now))
    }

    /// Registered connections (any state)
    #[must_use]
    pub fn connections(&self) -> usize {
        self.peers.len()
    }

    /// Registered connections not authenticated yet
    #[must_use]
    pub fn unauthenticated(&self) -> usize {
        self.unauth.len()
    }

    /// Sessions in the table (expired ones included until the table is next touched)
    #[must_use]
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// State of a connection
    #[must_use]
    pub fn state(&self, peer: P) -> Option<ServerState> {
        self.find(peer).map(|i| match self.peers[i].phase {
            Phase::AwaitHandshake => ServerState::AwaitHandshake,
            Phase::AwaitAuth => ServerState::AwaitAuth,
            Phase::Pending(_) => ServerState::AuthPending,
            Phase::Authenticated => ServerState::Authenticated,
            Phase::Closing => ServerState::Closing,
            Phase::Gone => ServerState::Gone,
        })
    }

    /// The TCP handshake a connection sent
    #[must_use]
    pub fn handshake(&self, peer: P) -> Option<Handshake> {
        self.find(peer).and_then(|i| self.peers[i].handshake)
    }

    /// The session currently bound to a live connection
    #[must_use]
    pub fn session_id(&self, peer: P) -> Option<&str> {
        self.sessions.id_of(peer)
    }

    /// Expiry (Unix ms) of a session in the table, expired or not
    #[must_use]
    pub fn session_expires(&self, session_id: &str) -> Option<i64> {
        self.sessions.find(session_id).map(|s| s.expires)
    }

    /// Live (authenticated, not closing) connections of `account`: what its quota counts
    #[must_use]
    pub fn online(&self, account: AccountId) -> usize {
        self.peers
            .iter()
            .filter(|p| p.is_live() && p.account == Some(account))
            .count()
    }

    /// The account of a connection, once its login was accepted with one
    #[must_use]
    pub fn account(&self, peer: P) -> Option<AccountId> {
        self.find(peer).and_then(|i| self.peers[i].account)
    }

    /// Requests of a connection handed to the application and not answered yet (see
    /// [`ServerConfig::with_max_pending_requests`])
    #[must_use]
    pub fn pending_requests(&self, peer: P) -> Option<usize> {
        self.find(peer)
            .map(|i| usize::from(self.peers[i].unanswered))
    }

    /// True while frames of the machine for this connection wait for `poll_transmit`
    #[must_use]
    pub fn has_pending_output(&self, peer: P) -> bool {
        self.find(peer).is_some_and(|i| !self.peers[i].flushed())
    }

    /// True once [`Server::shutdown`] was called
    #[must_use]
    pub const fn is_shutting_down(&self) -> bool {
        !matches!(self.shutdown, Shutdown::Running)
    }

    // -----------------------------------------------------------------------------------------
    // Commands
    // -----------------------------------------------------------------------------------------

    /// Tell the machine that Unix time is `unix_ms` at `now`; session expiry and WebSocket
    /// ping timestamps use it (without it: milliseconds since your epoch)
    pub fn set_wall_clock(&mut self, now: Instant, unix_ms: i64) {
        let now = self.clock.update(now);
        self.wall.set(now, unix_ms);
    }

    /// Forget a session (e.g. the account logged out); its connection, if any, stays open
    pub fn revoke_session(&mut self, session_id: &str) -> bool {
        self.sessions.revoke(session_id)
    }

    /// Register a new transport connection from `source`
    ///
    /// TCP connections start by waiting for the 2-byte handshake, WebSocket ones for the first
    /// packet. The auth deadline and the WS ping timer start now.
    ///
    /// Admission never refuses for lack of unauthenticated room: when `source` (unless
    /// [`Source::UNKNOWN`]) already holds
    /// [`ServerConfig::max_unauthenticated_per_source`] unauthenticated connections, its oldest
    /// one is evicted; when [`ServerConfig::max_unauthenticated`] connections are
    /// unauthenticated, the oldest of all is evicted. Eviction prefers connections that have not
    /// sent their login yet, and closes them like any other close: `Close{ServerError, "too
    /// many unauthenticated connections"}` (+ WebSocket close 1011), then
    /// [`ServerEvent::Closed`] with [`CloseCause::Evicted`]. So idle sockets can delay nobody's
    /// login by more than they delay their own.
    ///
    /// # Errors
    /// The caller should close the socket without sending anything:
    /// * [`Error::Closed`] — [`Server::shutdown`] was called;
    /// * [`Error::AlreadyConnected`] — this key is still registered (poll its `Closed` event
    ///   before reusing it);
    /// * [`Error::TableFull`] — all `PEERS` slots are in use (by authenticated, unauthenticated
    ///   and closing connections whose `Closed` has not been polled yet); nothing is evicted
    ///   then: size `PEERS` above `max_unauthenticated` plus the authenticated connections you
    ///   expect.
    pub fn handle_connected(
        &mut self,
        now: Instant,
        peer: P,
        transport: Transport,
        source: Source,
    ) -> Result<(), Error> {
        let now = self.clock.update(now);
        let refused = if self.is_shutting_down() {
            Some(Error::Closed)
        } else if self.find(peer).is_some() {
            Some(Error::AlreadyConnected)
        } else if self.peers.is_full() {
            Some(Error::TableFull)
        } else {
            None
        };
        if let Some(e) = refused {
            bump(&mut self.stats.connections_refused);
            return Err(e);
        }
        if source.is_known()
            && self.unauthenticated_from(source) >= self.config.max_unauthenticated_per_source
        {
            self.evict_oldest(Some(source));
        }
        if self.unauthenticated() >= self.config.max_unauthenticated.min(PEERS) {
            self.evict_oldest(None);
        }
        let p = Peer::new(
            peer,
            transport,
            source,
            now,
            self.config.auth_timeout,
            self.config.ws_ping_interval,
            self.config.auth_body_limit(),
        );
        // cannot fail: the table was not full above and eviction frees no slot yet
        let _ = self.peers.push(p);
        let _ = self.keys.push(peer);
        let idx = self.peers.len() - 1;
        let _ = self.unauth.push(idx);
        self.note_deadline(idx);
        bump(&mut self.stats.connections_accepted);
        Ok(())
    }

    /// Accept a pending Auth: queue the status-0 `AuthResponse` and bind the session `grant`
    /// names
    ///
    /// The session is stored (see [`Server`], Sessions, for eviction); if another live connection
    /// holds the same id, that older connection is closed with `Close{ConnectDuplicate}`.
    /// [`ServerEvent::Connected`] follows.
    ///
    /// With an account quota ([`ServerConfig::with_account_quota`]) and an account in the
    /// grant, a login that would exceed the quota is refused by the machine instead:
    /// [`Admission::OverQuota`] (status 6, `Error{403}`, `Close{AuthError}`).
    ///
    /// # Errors
    /// Nothing changed on error: [`Error::UnknownPeer`], [`Error::Closed`] (the connection
    /// closes), [`Error::NotPending`] (no Auth waits for a decision).
    pub fn accept_auth(&mut self, now: Instant, peer: P, grant: Grant) -> Result<Admission, Error> {
        self.accept(now, peer, LoginKind::Auth, grant)
    }

    /// Accept a pending Reconnect with a freshly minted session (`grant.session_id()`)
    ///
    /// The presented session is retired; if it was still live on another (older) connection,
    /// that connection is closed with `Close{ConnectDuplicate}` (the connection that presents
    /// the bearer secret now wins: the older one is typically half-dead). The account is the
    /// grant's, else the presented session's; the quota counts the retiring connection out.
    /// [`ServerEvent::Connected`] follows.
    ///
    /// # Errors
    /// As [`Server::accept_auth`] ([`Error::NotPending`] when no Reconnect waits).
    pub fn accept_reconnect(
        &mut self,
        now: Instant,
        peer: P,
        grant: Grant,
    ) -> Result<Admission, Error> {
        self.accept(now, peer, LoginKind::Reconnect, grant)
    }

    /// `accept_auth` / `accept_reconnect`: the login of kind `via` must be pending
    fn accept(
        &mut self,
        now: Instant,
        peer: P,
        via: LoginKind,
        grant: Grant,
    ) -> Result<Admission, Error> {
        let now = self.clock.update(now);
        let idx = self.find(peer).ok_or(Error::UnknownPeer)?;
        let (request_id, retired) = match (self.peers[idx].phase, via) {
            (Phase::Pending(Login::Auth { request_id }), LoginKind::Auth) => (request_id, None),
            (
                Phase::Pending(Login::Reconnect {
                    request_id,
                    generation,
                }),
                LoginKind::Reconnect,
            ) => (request_id, Some(generation)),
            (Phase::Closing | Phase::Gone, _) => return Err(Error::Closed),
            _ => return Err(Error::NotPending),
        };
        // what expired goes first: an expired session displaces nobody (found by the
        // `longport_server` fuzz target: a holder counted out of the quota stayed live)
        let wall = self.wall_ms();
        let purged = self.sessions.purge_expired(wall);
        bump_by(&mut self.stats.sessions_evicted, purged);
        let presented = retired.and_then(|g| self.sessions.by_generation(g));
        let account = grant.account.or(presented.and_then(|f| f.account));
        // the live connections this login displaces: the presented session's (a Reconnect
        // retires it) and the granted session id's holder (binding takes it over); neither
        // counts for the quota (a Reconnect granted another live session id displaces both:
        // found by the `longport_server` fuzz target)
        let retiring = presented
            .and_then(|found| found.peer)
            .filter(|&o| o != peer);
        let holder = self
            .sessions
            .holder(grant.session_id.as_str())
            .filter(|&o| o != peer);
        let (limit, online) = match (self.config.account_quota, account) {
            (Some(quota), Some(a)) => {
                let others = self
                    .peers
                    .iter()
                    .filter(|p| {
                        p.is_live()
                            && p.account == Some(a)
                            && p.key != peer
                            && Some(p.key) != retiring
                            && Some(p.key) != holder
                    })
                    .count();
                let others = u32::try_from(others).unwrap_or(u32::MAX);
                if others >= quota {
                    self.refuse_over_quota(idx, via, request_id);
                    return Ok(Admission::OverQuota {
                        limit: quota,
                        online: others,
                    });
                }
                (quota, others.saturating_add(1))
            }
            _ => (grant.limit, grant.online),
        };
        if let Some(generation) = retired {
            if let Some(other) = self.sessions.retire(generation).filter(|&o| o != peer) {
                self.close_duplicate(other);
            }
        }
        self.bind_session(peer, grant.session_id.clone(), grant.expires, account);
        self.finish_accept(now, peer, via, request_id, grant, account, limit, online);
        match via {
            LoginKind::Auth => bump(&mut self.stats.auths_accepted),
            LoginKind::Reconnect => bump(&mut self.stats.reconnects_accepted),
        }
        Ok(Admission::Granted { limit, online })
    }

    /// Status 6 + `Error{403, "connections limitation is hit"}`, then `Close{AuthError}`
    fn refuse_over_quota(&mut self, idx: usize, via: LoginKind, request_id: RequestId) {
        let status = Status::PermissionDenied;
        self.peers[idx].resp = Some(CtlResponse {
            cmd: match via {
                LoginKind::Auth => CMD_AUTH,
                LoginKind::Reconnect => CMD_RECONNECT,
            },
            request_id,
            status,
            body: CtlBody::Error {
                code: ERROR_CODE_QUOTA,
                msg: truncated(QUOTA_TEXT),
            },
        });
        self.begin_close(
            idx,
            CloseCause::LoginRejected(status),
            CloseCode::AuthError,
            truncated(QUOTA_TEXT),
        );
        bump(&mut self.stats.quota_refusals);
    }

    /// Reject a pending Auth: status + `Error{code, msg}` response, `Close{AuthError}`, then
    /// [`ServerEvent::Closed`] with [`CloseCause::LoginRejected`]
    ///
    /// `msg` (truncated to [`MAX_TEXT_LEN`](crate::longport::MAX_TEXT_LEN) bytes) is also the
    /// Close reason. A reconnect pending on the connection is rejected the same way but with
    /// [`Server::reject_reconnect`]'s close code; use that for clarity.
    ///
    /// # Errors
    /// Nothing changed on error: [`Error::SuccessStatus`], [`Error::UnknownPeer`],
    /// [`Error::Closed`], [`Error::NotPending`].
    pub fn reject_auth(
        &mut self,
        now: Instant,
        peer: P,
        status: Status,
        code: u64,
        msg: &str,
    ) -> Result<(), Error> {
        self.reject(now, peer, status, code, msg, false)
    }

    /// Reject a pending Reconnect: status + `Error{code, msg}`, `Close{SessExpired}`, then
    /// [`ServerEvent::Closed`] with [`CloseCause::LoginRejected`]
    ///
    /// The presented session stays in the table until it expires.
    ///
    /// # Errors
    /// As [`Server::reject_auth`] ([`Error::NotPending`] if an Auth, not a Reconnect, is
    /// pending).
    pub fn reject_reconnect(
        &mut self,
        now: Instant,
        peer: P,
        status: Status,
        code: u64,
        msg: &str,
    ) -> Result<(), Error> {
        self.reject(now, peer, status, code, msg, true)
    }

    /// Close a connection: `Close{code, reason}` push (+ WebSocket close frame with `reason`),
    /// then [`ServerEvent::Closed`] with [`CloseCause::Local`]
    ///
    /// `reason` is truncated to [`MAX_TEXT_LEN`](crate::longport::MAX_TEXT_LEN) bytes.
    ///
    /// # Errors
    /// [`Error::UnknownPeer`], or [`Error::Closed`] when it already closes; nothing changed.
    pub fn close(
        &mut self,
        now: Instant,
        peer: P,
        code: CloseCode,
        reason: &str,
    ) -> Result<(), Error> {
        self.clock.update(now);
        let idx = self.find(peer).ok_or(Error::UnknownPeer)?;
        if self.begin_close(idx, CloseCause::Local, code, truncated(reason)) {
            Ok(())
        } else {
            Err(Error::Closed)
        }
    }

    /// Close every connection with `Close{ServerShutdown, reason}` (+ WebSocket close 1001) and
    /// refuse new ones; [`ServerEvent::ShutdownComplete`] follows the last
    /// [`ServerEvent::Closed`]
    ///
    /// `reason` is truncated to [`MAX_TEXT_LEN`](crate::longport::MAX_TEXT_LEN) bytes.
    ///
    /// # Errors
    /// [`Error::Closed`] when the server is already shutting down; nothing changed.
    pub fn shutdown(&mut self, now: Instant, reason: &str) -> Result<(), Error> {
        self.clock.update(now);
        if self.is_shutting_down() {
            return Err(Error::Closed);
        }
        self.shutdown = Shutdown::Draining;
        let text = truncated(reason);
        for i in 0..self.peers.len() {
            self.begin_close(
                i,
                CloseCause::Shutdown,
                CloseCode::ServerShutdown,
                text.clone(),
            );
        }
        Ok(())
    }

    /// Write a response packet into `out` (business bodies are never copied into the machine)
    ///
    /// # Errors
    /// As [`Server::send`].
    #[allow(clippy::too_many_arguments)]
    pub fn respond(
        &mut self,
        now: Instant,
        peer: P,
        cmd: u8,
        request_id: RequestId,
        status: Status,
        body: &[u8],
        out: &mut [u8],
    ) -> Result<Transmit<P>, Error> {
        self.send(
            now,
            peer,
            &Packet::response(cmd, request_id, status, body),
            out,
        )
    }

    /// Write a push packet into `out`
    ///
    /// # Errors
    /// As [`Server::send`].
    pub fn push(
        &mut self,
        now: Instant,
        peer: P,
        cmd: u8,
        body: &[u8],
        out: &mut [u8],
    ) -> Result<Transmit<P>, Error> {
        self.send(now, peer, &Packet::push(cmd, body), out)
    }

    /// Write any packet (gzip flag, signature trailer as given) into `out`
    ///
    /// Request packets are refused on WebSocket; on TCP they are allowed, and the client's
    /// responses come back as [`ServerApp::Response`] (cmd-1 responses count as liveness only:
    /// heartbeat ids belong to the machine when it sends its own). Every Response packet
    /// counts as the answer to one pending request ([`Server::pending_requests`]).
    ///
    /// # Errors
    /// Nothing was written and nothing changed on error:
    /// * [`Error::UnknownPeer`] — the key is not registered;
    /// * [`Error::NotOpen`] — the connection is not authenticated yet;
    /// * [`Error::Closed`] — the connection is closing;
    /// * [`Error::QueueFull`] — a machine-generated response waits in `poll_transmit`: drain it
    ///   first, so that nothing overtakes it;
    /// * [`Error::RequestOnWebSocket`] — a Request packet for a WebSocket client;
    /// * [`Error::TooLong`] — the body exceeds the 24-bit length field;
    /// * [`Error::BufferTooSmall`] — `out` cannot hold the packet.
    pub fn send(
        &mut self,
        now: Instant,
        peer: P,
        packet: &Packet<'_>,
        out: &mut [u8],
    ) -> Result<Transmit<P>, Error> {
        self.clock.update(now);
        let idx = self.find(peer).ok_or(Error::UnknownPeer)?;
        let p = &self.peers[idx];
        match p.phase {
            Phase::Authenticated => {}
            Phase::Closing | Phase::Gone => return Err(Error::Closed),
            _ => return Err(Error::NotOpen),
        }
        if p.resp.is_some() {
            return Err(Error::QueueFull);
        }
        if p.transport == Transport::WebSocket && matches!(packet.header.kind, Kind::Request { .. })
        {
            return Err(Error::RequestOnWebSocket);
        }
        if packet.body.len() > MAX_BODY_LEN {
            return Err(Error::TooLong {
                len: packet.body.len(),
                max: MAX_BODY_LEN,
            });
        }
        let kind = p.packet_kind();
        let len = packet.emit(out)?;
        if matches!(packet.header.kind, Kind::Response { .. }) {
            let p = &mut self.peers[idx];
            p.unanswered = p.unanswered.saturating_sub(1);
        }
        bump(&mut self.stats.frames_sent);
        Ok(Transmit {
            to: peer,
            len,
            kind,
        })
    }

    // -----------------------------------------------------------------------------------------
    // Inputs and outputs (also available through the `Machine` trait)
    // -----------------------------------------------------------------------------------------

    /// Feed the buffered bytes of a TCP connection (one handshake or packet per call) or one
    /// whole WebSocket binary message
    ///
    /// TCP: partial frames are left in the caller's buffer ([`Received::needed`]). Input of a
    /// closing connection is consumed and ignored.
    ///
    /// # Errors
    /// Nothing was consumed and nothing changed (liveness included) on error:
    /// * [`Error::UnknownPeer`] — the key is not registered;
    /// * [`Error::AuthPending`] — an auth decision is pending on this connection: keep the
    ///   bytes (TCP: in your stream buffer; WebSocket: the message) and feed them again after
    ///   `accept_*`/`reject_*`;
    /// * [`Error::TooManyInFlight`] — the next packet is a request and this connection already
    ///   has [`ServerConfig::max_pending_requests`] unanswered ones: keep the bytes, stop
    ///   reading from this peer, and feed them again once the application has answered;
    /// * [`Error::QueueFull`] — the next packet is a request over a rate limit and the
    ///   connection's refusals (4) still wait in `poll_transmit`: drain, then retry.
    pub fn handle_input<'a>(
        &mut self,
        now: Instant,
        from: P,
        data: &'a [u8],
    ) -> Result<Received<ServerApp<'a>>, Error> {
        let now = self.clock.update(now);
        let idx = self.find(from).ok_or(Error::UnknownPeer)?;
        let p = &self.peers[idx];
        match p.phase {
            Phase::Closing | Phase::Gone => return Ok(Received::consumed(data.len())),
            Phase::Pending(_) => return Err(Error::AuthPending),
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
                    // a packet leaves the deframer's state as it was
                    Ok(Frame::Packet(packet, n)) => self.dispatch(idx, now, packet, n),
                    Err(e) => {
                        self.protocol_error(idx, e.into());
                        Ok(Received::consumed(data.len()))
                    }
                }
            }
            Transport::WebSocket => match decode_message(data, self.body_limit(idx)) {
                Ok((packet, trailing)) => {
                    let r = self.dispatch(idx, now, packet, data.len());
                    if trailing > 0 && r.is_ok() {
                        bump(&mut self.stats.trailing_bytes);
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

    /// Feed a WebSocket Ping (answered with a Pong, liveness), Pong (liveness) or Close
    /// (the transport is gone: [`ServerEvent::Closed`] follows)
    pub fn handle_frame(&mut self, now: Instant, from: P, kind: FrameKind, payload: &[u8]) {
        let now = self.clock.update(now);
        let Some(idx) = self.find(from) else { return };
        let p = &mut self.peers[idx];
        if p.transport != Transport::WebSocket || p.phase == Phase::Gone {
            return;
        }
        match kind {
            FrameKind::WsPing => {
                p.last_rx = now;
                bump(&mut self.stats.ws_pings_received);
                if p.phase == Phase::Closing {
                    return;
                }
                if payload.len() <= MAX_WS_CONTROL_PAYLOAD {
                    // built in place (no copy of the whole slot)
                    let pong = p.pong.insert(Vec::new());
                    // cannot fail: the length was checked
                    let _ = pong.extend_from_slice(payload);
                    self.mark_tx(idx);
                } else {
                    bump(&mut self.stats.ws_pings_oversized);
                }
            }
            FrameKind::WsPong => {
                p.last_rx = now;
                bump(&mut self.stats.ws_pongs_received);
                if let Ok(Heartbeat {
                    heartbeat_id: Some(id),
                    ..
                }) = Heartbeat::decode(payload)
                {
                    if p.heartbeat_answered(u32::from_ne_bytes(id.to_ne_bytes()), now) {
                        bump(&mut self.stats.heartbeat_acks);
                        self.mark_ev(idx);
                    }
                }
            }
            FrameKind::WsClose(code) => self.transport_gone(idx, CloseCause::WsClosed { code }),
            FrameKind::Datagram | FrameKind::Stream | FrameKind::WsBinary => {}
        }
    }

    /// The caller's transport to `from` is gone: its queued frames are dropped and
    /// [`ServerEvent::Closed`] follows; unknown keys are ignored
    pub fn handle_closed(&mut self, now: Instant, from: P) {
        self.clock.update(now);
        if let Some(idx) = self.find(from) {
            self.transport_gone(idx, CloseCause::TransportClosed);
        }
    }

    /// Let timers fire: auth deadlines, heartbeat timeouts, WebSocket pings, server heartbeats
    /// over TCP; early calls do nothing
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock.update(now);
        if self.wake.is_none_or(|at| now < at) {
            return;
        }
        let hb = self.config.heartbeat_timeout;
        let mut wake: Option<Instant> = None;
        for i in 0..self.peers.len() {
            let p = &self.peers[i];
            let expired = match p.phase {
                Phase::AwaitHandshake | Phase::AwaitAuth | Phase::Pending(_) => {
                    (now >= p.auth_deadline).then_some(CloseCause::LoginTimeout)
                }
                Phase::Authenticated => {
                    (now >= p.last_rx.add_micros(hb)).then_some(CloseCause::Timeout)
                }
                Phase::Closing | Phase::Gone => continue,
            };
            if let Some(cause) = expired {
                self.close_for(i, cause);
                continue;
            }
            let interval = self.heartbeat_interval(self.peers[i].transport);
            let p = &mut self.peers[i];
            if let (Some(at), Some(interval)) = (p.next_ping, interval) {
                if now >= at {
                    p.ping_due = true;
                    p.next_ping = Some(now.add_micros(interval));
                    self.mark_tx(i);
                }
            }
            if let Some(d) = self.peers[i].deadline(hb) {
                wake = Some(wake.map_or(d, |w| w.min(d)));
            }
        }
        self.wake = wake;
    }

    /// Write the next frame into `buf` (connections take turns)
    ///
    /// # Errors
    /// [`BufferTooSmall`] with the exact size; the frame stays queued and nothing changed.
    #[must_use = "a queued frame must be sent"]
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<Transmit<P>>, BufferTooSmall> {
        let now = self.clock.update(now);
        let wall = self.wall;
        while let Some(i) = self.tx_ready.front() {
            let p = &mut self.peers[i];
            let ping = p.ping_due;
            let Some((len, kind)) = p.next_frame(buf, now, wall)? else {
                p.tx_queued = false;
                self.tx_ready.pop();
                continue;
            };
            let flushed = p.flushed();
            let closing = p.phase == Phase::Closing;
            let to = p.key;
            if kind == FrameKind::WsPing {
                bump(&mut self.stats.ws_pings_sent);
            } else if ping && !p.ping_due {
                bump(&mut self.stats.heartbeats_sent);
            }
            bump(&mut self.stats.frames_sent);
            // its next frame, if any, waits for the others' turn
            self.tx_ready.pop();
            if !flushed {
                self.tx_ready.push(i);
            } else {
                self.peers[i].tx_queued = false;
                if closing {
                    // its last frame is out: `Closed` is due
                    self.mark_ev(i);
                }
            }
            return Ok(Some(Transmit { to, len, kind }));
        }
        #[cfg(all(debug_assertions, any(test, feature = "testing")))]
        self.check_queues();
        Ok(None)
    }

    /// Next event: `Connected` as soon as a login is accepted, `HeartbeatRtt` when a server
    /// heartbeat is answered, `Closed` once a closing connection's frames are all handed out,
    /// then `ShutdownComplete`
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ServerEvent<P>> {
        while let Some(i) = self.ev_ready.front() {
            let p = &mut self.peers[i];
            if let Some(ev) = p.announce.take() {
                return Some(ev);
            }
            if let Some(rtt) = p.rtt.take() {
                return Some(ServerEvent::HeartbeatRtt { peer: p.key, rtt });
            }
            let done = match p.phase {
                Phase::Closing => p.flushed(),
                Phase::Gone => true,
                _ => false,
            };
            p.ev_queued = false;
            self.ev_ready.pop();
            if done {
                let ev = ServerEvent::Closed {
                    peer: p.key,
                    cause: p.cause.unwrap_or(CloseCause::TransportClosed),
                };
                self.remove(i);
                return Some(ev);
            }
        }
        #[cfg(all(debug_assertions, any(test, feature = "testing")))]
        self.check_queues();
        if self.shutdown == Shutdown::Draining && self.peers.is_empty() {
            self.shutdown = Shutdown::Reported;
            return Some(ServerEvent::ShutdownComplete);
        }
        None
    }

    /// When [`Server::handle_timeout`] must be called next, in the caller's clock: the earliest
    /// auth deadline, heartbeat deadline or WebSocket ping time over all connections (O(1))
    ///
    /// May be earlier than any real deadline: input moves a connection's heartbeat deadline
    /// later without a search for the new earliest one, and a closed connection's deadline
    /// lingers; such a wake-up finds nothing due and computes the earliest deadline afresh.
    /// Never more than [`MAX_DELAY`](crate::time::MAX_DELAY) after the latest `now` given to the
    /// server.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        #[cfg(all(debug_assertions, any(test, feature = "testing")))]
        self.check_wake();
        self.wake.map(|t| self.clock.to_caller(t))
    }

    // -----------------------------------------------------------------------------------------
    // Internals
    // -----------------------------------------------------------------------------------------

    /// Index of the connection with key `peer` (inlined: the small-table scan it was before
    /// tables of a block or more got their own search)
    #[inline(always)]
    fn find(&self, peer: P) -> Option<usize> {
        if self.keys.len() < KEY_BLOCK {
            self.keys.iter().position(|k| *k == peer)
        } else {
            self.find_in_blocks(peer)
        }
    }

    /// [`Server::find`] in a table of a block of keys or more: 16 keys at a time, each block
    /// compared whole without an early exit (for small keys such as `u32` the compiler uses
    /// vector instructions); the position is then looked for in the one block that holds the key
    fn find_in_blocks(&self, peer: P) -> Option<usize> {
        let keys = &self.keys[..];
        let mut start = 0;
        loop {
            let Some(block) = keys.get(start..start + KEY_BLOCK) else {
                return keys[start..]
                    .iter()
                    .position(|k| *k == peer)
                    .map(|i| start + i);
            };
            if block.iter().fold(false, |hit, k| hit | (*k == peer)) {
                return block.iter().position(|k| *k == peer).map(|i| start + i);
            }
            start += KEY_BLOCK;
        }
    }

    /// Queue peer `idx` for `poll_transmit` (once)
    #[inline]
    fn mark_tx(&mut self, idx: usize) {
        self.tx_ready.mark(idx, &mut self.peers[idx].tx_queued);
    }

    /// Queue peer `idx` for `poll_event` (once)
    #[inline]
    fn mark_ev(&mut self, idx: usize) {
        self.ev_ready.mark(idx, &mut self.peers[idx].ev_queued);
    }

    /// Peer `idx`'s deadline may have moved earlier: keep `wake` a lower bound of all of them
    #[inline]
    fn note_deadline(&mut self, idx: usize) {
        if let Some(d) = self.peers[idx].deadline(self.config.heartbeat_timeout) {
            self.wake = Some(self.wake.map_or(d, |w| w.min(d)));
        }
    }

    /// Peer `idx` left the login phases (logged in, closing or gone)
    fn logged_in_or_gone(&mut self, idx: usize) {
        if let Some(pos) = self.unauth.iter().position(|&i| i == idx) {
            self.unauth.swap_remove(pos);
        }
    }

    /// The earliest deadline of all connections, exactly (`O(PEERS)`)
    fn earliest_deadline(&self) -> Option<Instant> {
        let hb = self.config.heartbeat_timeout;
        self.peers.iter().filter_map(|p| p.deadline(hb)).min()
    }

    /// Make `wake` the earliest deadline exactly
    fn recompute_wake(&mut self) {
        self.wake = self.earliest_deadline();
    }

    /// Forget peer `idx` (reported closed); the last peer takes its index
    fn remove(&mut self, idx: usize) {
        let last = self.peers.len() - 1;
        self.peers.swap_remove(idx);
        self.keys.swap_remove(idx);
        self.tx_ready.removed(idx, last);
        self.ev_ready.removed(idx, last);
        renumber(&mut self.unauth, idx, last);
        if self.peers.is_empty() {
            self.wake = None;
        }
    }

    /// Test builds: every frame and event of every connection is queued when a drain ends
    #[cfg(all(debug_assertions, any(test, feature = "testing")))]
    fn check_queues(&self) {
        for (i, p) in self.peers.iter().enumerate() {
            assert!(self.keys[i] == p.key, "key {i} out of step");
            assert_eq!(
                p.tx_queued,
                self.tx_ready.live().contains(&i),
                "tx flag {i}"
            );
            assert_eq!(
                p.ev_queued,
                self.ev_ready.live().contains(&i),
                "ev flag {i}"
            );
            assert!(p.tx_queued || p.flushed(), "peer {i} has a frame unqueued");
            let event = p.announce.is_some()
                || p.rtt.is_some()
                || p.phase == Phase::Gone
                || (p.phase == Phase::Closing && p.flushed());
            assert!(p.ev_queued || !event, "peer {i} has an event unqueued");
        }
        assert_eq!(self.keys.len(), self.peers.len());
        // the unauthenticated list holds each connection in the login phases, once
        let listed = |i: usize| self.unauth.iter().filter(|&&u| u == i).count();
        for (i, p) in self.peers.iter().enumerate() {
            assert_eq!(
                listed(i),
                usize::from(p.is_unauthenticated()),
                "login list {i}"
            );
        }
        assert!(self.unauth.iter().all(|&u| u < self.peers.len()));
        // a session is held only by a live connection whose login was accepted
        for holder in self.sessions.holders() {
            assert!(
                self.peers
                    .iter()
                    .any(|p| p.key == holder && p.phase == Phase::Authenticated),
                "a session held by a connection without a login"
            );
        }
    }

    /// Test builds: `wake` is no later than any connection's deadline
    #[cfg(all(debug_assertions, any(test, feature = "testing")))]
    fn check_wake(&self) {
        if let Some(d) = self.earliest_deadline() {
            assert!(self.wake.is_some_and(|w| w <= d), "wake after a deadline");
        }
    }

    /// The wall clock at the latest `now` (milliseconds since the epoch when not set)
    fn wall_ms(&self) -> i64 {
        self.wall.or_epoch_ms(self.clock.now())
    }

    /// Unauthenticated connections from `source`
    fn unauthenticated_from(&self, source: Source) -> usize {
        self.unauth
            .iter()
            .filter(|&&i| self.peers[i].source == source)
            .count()
    }

    /// Close the oldest unauthenticated connection (of `source`, if given): those that have
    /// not sent a login first
    fn evict_oldest(&mut self, source: Option<Source>) {
        let victim = self
            .unauth
            .iter()
            .map(|&i| (i, &self.peers[i]))
            .filter(|(_, p)| source.is_none_or(|s| p.source == s))
            .min_by_key(|(_, p)| (matches!(p.phase, Phase::Pending(_)), p.since))
            .map(|(i, _)| i);
        if let Some(i) = victim {
            if self.close_for(i, CloseCause::Evicted) {
                bump(&mut self.stats.connections_evicted);
            }
        }
    }

    /// The server heartbeat cadence on `transport` in microseconds, if any
    fn heartbeat_interval(&self, transport: Transport) -> Option<u64> {
        match transport {
            Transport::WebSocket => Some(self.config.ws_ping_interval),
            Transport::Tcp => self.config.tcp_heartbeat_interval,
        }
    }

    /// The body limit of peer `idx` in its phase
    fn body_limit(&self, idx: usize) -> usize {
        if self.peers[idx].is_unauthenticated() {
            self.config.auth_body_limit()
        } else {
            self.config.max_body
        }
    }

    /// Answer an accepted Auth/Reconnect; liveness starts now
    ///
    /// Input is refused while the application decides (`Error::AuthPending`), so the peer
    /// could not prove liveness meanwhile: the heartbeat deadline counts from the decision, not
    /// from the Auth packet (found by the `longport_server` fuzz target: a decision slower than
    /// `heartbeat_timeout` left the deadline in the past and closed the new session at once).
    #[allow(clippy::too_many_arguments)]
    fn finish_accept(
        &mut self,
        now: Instant,
        peer: P,
        via: LoginKind,
        request_id: RequestId,
        grant: Grant,
        account: Option<AccountId>,
        limit: u32,
        online: u32,
    ) {
        let Some(idx) = self.find(peer) else { return };
        let tcp_interval = self.config.tcp_heartbeat_interval;
        let max_body = self.config.max_body;
        let login_deadline = self.peers[idx].deadline(self.config.heartbeat_timeout);
        let p = &mut self.peers[idx];
        p.last_rx = p.last_rx.max(now);
        p.resp = Some(CtlResponse {
            cmd: match via {
                LoginKind::Auth => CMD_AUTH,
                LoginKind::Reconnect => CMD_RECONNECT,
            },
            request_id,
            status: Status::Success,
            body: CtlBody::Grant {
                session_id: grant.session_id,
                expires: grant.expires,
                limit,
                online,
            },
        });
        p.phase = Phase::Authenticated;
        p.account = account;
        self.logged_in_or_gone(idx);
        let p = &mut self.peers[idx];
        if p.transport == Transport::Tcp {
            // the handshake is behind us: only the body limit changes
            p.deframer = StreamDeframer::new(false, max_body);
            p.next_ping = tcp_interval.map(|i| now.add_micros(i));
        }
        p.announce = Some(ServerEvent::Connected {
            peer,
            via,
            expires: grant.expires,
        });
        self.mark_tx(idx);
        self.mark_ev(idx);
        if login_deadline == self.wake {
            // the login deadline was the earliest: find the next one (once per login)
            self.recompute_wake();
        } else {
            self.note_deadline(idx);
        }
    }

    /// Store `id` bound to `peer`; evicts as documented, closes an older holder of the same id
    fn bind_session(&mut self, peer: P, id: SessionId, expires: i64, account: Option<AccountId>) {
        let wall = self.wall_ms();
        let bound = self.sessions.bind(peer, id, expires, account, wall);
        bump_by(&mut self.stats.sessions_evicted, bound.evicted);
        if let Some(other) = bound.displaced {
            self.close_duplicate(other);
        }
    }

    fn close_duplicate(&mut self, other: P) {
        if let Some(i) = self.find(other) {
            if self.close_for(i, CloseCause::Duplicate) {
                bump(&mut self.stats.duplicates_closed);
            }
        }
    }

    fn reject(
        &mut self,
        now: Instant,
        peer: P,
        status: Status,
        code: u64,
        msg: &str,
        reconnect_only: bool,
    ) -> Result<(), Error> {
        self.clock.update(now);
        if status.is_success() {
            return Err(Error::SuccessStatus);
        }
        let idx = self.find(peer).ok_or(Error::UnknownPeer)?;
        let (cmd, request_id, close_code) = match self.peers[idx].phase {
            Phase::Pending(Login::Auth { request_id }) if !reconnect_only => {
                (CMD_AUTH, request_id, CloseCode::AuthError)
            }
            Phase::Pending(Login::Reconnect { request_id, .. }) => {
                (CMD_RECONNECT, request_id, CloseCode::SessExpired)
            }
            Phase::Closing | Phase::Gone => return Err(Error::Closed),
            _ => return Err(Error::NotPending),
        };
        let msg = truncated(msg);
        self.peers[idx].resp = Some(CtlResponse {
            cmd,
            request_id,
            status,
            body: CtlBody::Error {
                code,
                msg: msg.clone(),
            },
        });
        self.begin_close(idx, CloseCause::LoginRejected(status), close_code, msg);
        if cmd == CMD_AUTH {
            bump(&mut self.stats.auths_rejected);
        } else {
            bump(&mut self.stats.reconnects_rejected);
        }
        Ok(())
    }

    /// Close peer `idx` for a cause the machine found, with that cause's code and text
    fn close_for(&mut self, idx: usize, cause: CloseCause) -> bool {
        let (code, text) = match cause {
            CloseCause::LoginTimeout => (CloseCode::AuthError, "authentication timeout"),
            CloseCause::NotAuthenticated => (CloseCode::AuthError, "not authenticated"),
            CloseCause::SessionUnknown => (CloseCode::SessExpired, "session expired"),
            CloseCause::Duplicate => (CloseCode::ConnectDuplicate, "connect duplicate"),
            CloseCause::Timeout => (CloseCode::HeartbeatTimeout, "heartbeat timeout"),
            CloseCause::Protocol(_) => (CloseCode::UnpackError, "unpack error"),
            CloseCause::Evicted => (
                CloseCode::ServerError,
                "too many unauthenticated connections",
            ),
            _ => (CloseCode::ServerError, ""),
        };
        self.begin_close(idx, cause, code, truncated(text))
    }

    /// Queue `Close{code, text}` (+ WebSocket close) for peer `idx`; false if it already closes
    fn begin_close(&mut self, idx: usize, cause: CloseCause, code: CloseCode, text: Text) -> bool {
        let Some(p) = self.peers.get_mut(idx) else {
            return false;
        };
        let logged_in = p.phase == Phase::Authenticated;
        if !p.begin_close(cause, code, text) {
            return false;
        }
        self.logged_in_or_gone(idx);
        if logged_in {
            self.detach_session(idx);
        }
        match cause {
            CloseCause::Protocol(_) => bump(&mut self.stats.protocol_errors),
            CloseCause::Timeout => bump(&mut self.stats.heartbeat_timeouts),
            CloseCause::LoginTimeout => bump(&mut self.stats.auth_timeouts),
            _ => {}
        }
        self.mark_tx(idx);
        self.mark_ev(idx);
        true
    }

    /// The session of logged-in peer `idx` loses its live connection (called as it leaves the
    /// authenticated phase: a connection that never logged in holds no session, so its end
    /// does not search the session table)
    fn detach_session(&mut self, idx: usize) {
        let key = self.peers[idx].key;
        self.sessions.detach(key);
    }

    /// The transport of peer `idx` is gone: drop its frames, report `cause` unless a close was
    /// under way
    fn transport_gone(&mut self, idx: usize, cause: CloseCause) {
        let Some(p) = self.peers.get_mut(idx) else {
            return;
        };
        let logged_in = p.phase == Phase::Authenticated;
        if p.transport_gone(cause) {
            self.logged_in_or_gone(idx);
            if logged_in {
                self.detach_session(idx);
            }
            self.mark_ev(idx);
        }
    }

    fn protocol_error(&mut self, idx: usize, e: ProtocolError) {
        self.close_for(idx, CloseCause::Protocol(e));
    }

    fn dispatch<'a>(
        &mut self,
        idx: usize,
        now: Instant,
        packet: Packet<'a>,
        consumed: usize,
    ) -> Result<Received<ServerApp<'a>>, Error> {
        match self.peers[idx].phase {
            Phase::AwaitHandshake | Phase::AwaitAuth => {
                Ok(self.first_packet(idx, now, packet, consumed))
            }
            Phase::Authenticated => self.authenticated_packet(idx, now, packet, consumed),
            Phase::Pending(_) => Err(Error::AuthPending),
            Phase::Closing | Phase::Gone => Ok(Received::consumed(consumed)),
        }
    }

    fn mark_rx(&mut self, idx: usize, now: Instant) {
        self.peers[idx].last_rx = now;
        bump(&mut self.stats.packets_received);
    }

    fn first_packet<'a>(
        &mut self,
        idx: usize,
        now: Instant,
        packet: Packet<'a>,
        consumed: usize,
    ) -> Received<ServerApp<'a>> {
        self.mark_rx(idx, now);
        let h = packet.header;
        let Kind::Request { request_id, .. } = h.kind else {
            self.close_for(idx, CloseCause::NotAuthenticated);
            return Received::consumed(consumed);
        };
        let app = match h.cmd {
            #[cfg(feature = "gzip")]
            CMD_AUTH | CMD_RECONNECT if h.gzip => {
                self.compressed_login(idx, h.cmd, request_id, packet.body)
            }
            #[cfg(not(feature = "gzip"))]
            CMD_AUTH | CMD_RECONNECT if h.gzip => self.compressed_login_unsupported(idx, h.cmd),
            CMD_AUTH => match AuthRequest::decode(packet.body) {
                Ok(req) => {
                    self.peers[idx].phase = Phase::Pending(Login::Auth { request_id });
                    Some(ServerApp::Auth {
                        request_id,
                        token: req.token,
                        metadata: req.metadata,
                    })
                }
                Err(error) => {
                    self.protocol_error(idx, ProtocolError::ControlBody { cmd: h.cmd, error });
                    None
                }
            },
            CMD_RECONNECT => match ReconnectRequest::decode(packet.body) {
                Ok(req) => self
                    .reconnect_request(idx, request_id, req.session_id)
                    .map(|expires| ServerApp::Reconnect {
                        request_id,
                        session_id: req.session_id,
                        expires,
                        metadata: req.metadata,
                    }),
                Err(error) => {
                    self.protocol_error(idx, ProtocolError::ControlBody { cmd: h.cmd, error });
                    None
                }
            },
            cmd => {
                self.reject_first(idx, cmd, request_id, CloseCause::NotAuthenticated);
                None
            }
        };
        Received::maybe(consumed, app)
    }

    /// A gzip-compressed Auth or Reconnect: inflated (bounded) and decoded here to check it,
    /// handed over compressed (the inflated text cannot outlive this call)
    #[cfg(feature = "gzip")]
    fn compressed_login<'a>(
        &mut self,
        idx: usize,
        cmd: u8,
        request_id: RequestId,
        body: &'a [u8],
    ) -> Option<ServerApp<'a>> {
        let mut scratch = [0u8; MAX_INFLATED_LOGIN];
        let limit = self.config.auth_body_limit().min(MAX_INFLATED_LOGIN);
        let plain = match crate::longport::gzip::gunzip(body, &mut scratch[..limit]) {
            Ok(n) => &scratch[..n],
            Err(_) => {
                self.protocol_error(idx, ProtocolError::CompressedControl { cmd });
                return None;
            }
        };
        let decoded = if cmd == CMD_AUTH {
            AuthRequest::decode(plain).map(|_| None)
        } else {
            ReconnectRequest::decode(plain).map(|r| Some(r.session_id))
        };
        match decoded {
            Ok(None) => {
                bump(&mut self.stats.compressed_logins);
                self.peers[idx].phase = Phase::Pending(Login::Auth { request_id });
                Some(ServerApp::CompressedAuth { request_id, body })
            }
            Ok(Some(session_id)) => {
                bump(&mut self.stats.compressed_logins);
                self.reconnect_request(idx, request_id, session_id)
                    .map(|expires| ServerApp::CompressedReconnect {
                        request_id,
                        expires,
                        body,
                    })
            }
            Err(error) => {
                self.protocol_error(idx, ProtocolError::ControlBody { cmd, error });
                None
            }
        }
    }

    /// Without the `gzip` feature a compressed Auth or Reconnect closes with `UnpackError`
    #[cfg(not(feature = "gzip"))]
    fn compressed_login_unsupported<'a>(&mut self, idx: usize, cmd: u8) -> Option<ServerApp<'a>> {
        self.protocol_error(idx, ProtocolError::CompressedControl { cmd });
        None
    }

    /// A Reconnect as first packet: a known session waits for the application's decision (its
    /// expiry is returned), an unknown or expired one is refused at once
    fn reconnect_request(
        &mut self,
        idx: usize,
        request_id: RequestId,
        session_id: &str,
    ) -> Option<i64> {
        let wall = self.wall_ms();
        let purged = self.sessions.purge_expired(wall);
        bump_by(&mut self.stats.sessions_evicted, purged);
        match self.sessions.find(session_id) {
            Some(found) => {
                self.peers[idx].phase = Phase::Pending(Login::Reconnect {
                    request_id,
                    generation: found.generation,
                });
                Some(found.expires)
            }
            None => {
                bump(&mut self.stats.reconnects_rejected);
                self.reject_first(idx, CMD_RECONNECT, request_id, CloseCause::SessionUnknown);
                None
            }
        }
    }

    /// Status 5 + `Error{401}` response, then close with `cause`
    fn reject_first(&mut self, idx: usize, cmd: u8, request_id: RequestId, cause: CloseCause) {
        let msg = match cause {
            CloseCause::SessionUnknown => "session expired",
            _ => "not authenticated",
        };
        self.peers[idx].resp = Some(CtlResponse {
            cmd,
            request_id,
            status: Status::Unauthenticated,
            body: CtlBody::Error {
                code: ERROR_CODE_UNAUTHENTICATED,
                msg: truncated(msg),
            },
        });
        self.close_for(idx, cause);
    }

    /// A request for the application, unless over a rate limit (answered here) or over the
    /// pending-request cap (refused, nothing consumed)
    fn admit_request(
        &mut self,
        idx: usize,
        now: Instant,
        cmd: u8,
        request_id: RequestId,
        rate_limited: bool,
    ) -> Result<bool, Error> {
        let conn = if rate_limited {
            self.config.rate_limit
        } else {
            None
        };
        let per_cmd = if rate_limited {
            self.config.command_limit(cmd)
        } else {
            None
        };
        let cap = self.config.max_pending_requests;
        let p = &mut self.peers[idx];
        let mut buckets = p.buckets;
        if !buckets.admit(now, conn, per_cmd) {
            p.refusals
                .push(Refusal { cmd, request_id })
                .map_err(|_| Error::QueueFull)?;
            self.mark_tx(idx);
            bump(&mut self.stats.requests_rate_limited);
            return Ok(false);
        }
        if p.unanswered >= cap {
            return Err(Error::TooManyInFlight);
        }
        p.buckets = buckets;
        p.unanswered = p.unanswered.saturating_add(1);
        Ok(true)
    }

    fn authenticated_packet<'a>(
        &mut self,
        idx: usize,
        now: Instant,
        packet: Packet<'a>,
        consumed: usize,
    ) -> Result<Received<ServerApp<'a>>, Error> {
        let h = packet.header;
        let body = packet.body;
        let app = match h.kind {
            Kind::Request {
                request_id,
                timeout_ms,
            } => match h.cmd {
                CMD_HEARTBEAT
                    if self.peers[idx].echo.is_none()
                        && Echo::store(&mut self.peers[idx].echo, request_id, h.gzip, body) =>
                {
                    self.mark_tx(idx);
                    bump(&mut self.stats.heartbeats_echoed);
                    None
                }
                CMD_HEARTBEAT => {
                    self.admit_request(idx, now, h.cmd, request_id, false)?;
                    Some(ServerApp::HeartbeatEcho {
                        request_id,
                        body,
                        gzip: h.gzip,
                    })
                }
                CMD_CLOSE | CMD_AUTH | CMD_RECONNECT => {
                    let p = &mut self.peers[idx];
                    if p.resp.is_some() {
                        // a stray control request while the previous answer is unsent: dropped
                        bump(&mut self.stats.ignored_packets);
                        self.mark_rx(idx, now);
                        return Ok(Received::consumed(consumed));
                    }
                    p.resp = Some(CtlResponse {
                        cmd: h.cmd,
                        request_id,
                        status: Status::BadRequest,
                        body: CtlBody::Error {
                            code: ERROR_CODE_BAD_REQUEST,
                            msg: truncated("unexpected control command"),
                        },
                    });
                    self.mark_tx(idx);
                    None
                }
                cmd => {
                    if self.admit_request(idx, now, cmd, request_id, true)? {
                        Some(ServerApp::Request {
                            request_id,
                            cmd,
                            timeout: self.effective_timeout(timeout_ms),
                            body,
                            gzip: h.gzip,
                            signature: packet.signature,
                        })
                    } else {
                        None
                    }
                }
            },
            Kind::Response { request_id, status } if h.cmd > CMD_RECONNECT => {
                Some(ServerApp::Response {
                    request_id,
                    cmd: h.cmd,
                    status,
                    body,
                    gzip: h.gzip,
                })
            }
            Kind::Push if h.cmd > CMD_RECONNECT => Some(ServerApp::Push {
                cmd: h.cmd,
                body,
                gzip: h.gzip,
            }),
            Kind::Response { request_id, .. } if h.cmd == CMD_HEARTBEAT => {
                if self.peers[idx].heartbeat_answered(request_id.0, now) {
                    bump(&mut self.stats.heartbeat_acks);
                    self.mark_ev(idx);
                }
                None
            }
            Kind::Response { .. } | Kind::Push => {
                bump(&mut self.stats.ignored_packets);
                None
            }
        };
        self.mark_rx(idx, now);
        Ok(Received::maybe(consumed, app))
    }

    /// The processing deadline of a request: the client's, at most 60 s, or the default for 0
    fn effective_timeout(&self, timeout_ms: u16) -> Duration {
        match timeout_ms {
            0 => self.config.default_request_timeout,
            t => Duration::from_millis(u64::from(t)).min(MAX_REQUEST_TIMEOUT),
        }
    }
}

crate::machine::impl_machine! {
    impl[P: Copy + Eq, const PEERS: usize, const SESSIONS: usize] for Server<P, PEERS, SESSIONS> {
        Peer = P,
        Event = ServerEvent<P>,
        App<'a> = ServerApp<'a>,
        Error = Error,
    }
    frames {}
}
