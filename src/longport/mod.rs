//! LongPort OpenAPI socket control plane: auth, heartbeat, reconnect, close, request correlation
//!
//! The LongPort (Longbridge) OpenAPI socket protocol carries protobuf bodies in small binary
//! packets (request, response, push) over TCP (after a 2-byte handshake) or WebSocket (one
//! packet per binary message). Commands 0..=3 are the control plane — Close push, Heartbeat,
//! Auth, Reconnect — and everything above is business traffic that this crate passes through
//! borrowed. The official SDKs are at <https://github.com/longportapp/openapi> (the Rust
//! `longport-wscli` client) and <https://github.com/longportapp/openapi-protocol> (Go).
//!
//! | item | what |
//! |---|---|
//! | [`Client`] | auth → session, heartbeat + RTT, reconnect with the session, per-code reaction to Close pushes and to quota refusals ([`QuotaPolicy`]), request/response correlation |
//! | [`Server`] | auth gate with bounded admission, session table (unguessable [`SessionId`]s), heartbeat echo, server heartbeats and RTT, Close pushes, account quota and rate limits, for many connections |
//! | [`ClientEvent`], [`ServerEvent`], [`CloseCause`], [`Error`] | what the machines report and refuse with, shared by both roles where the meaning is shared |
//! | [`wire`] | packet headers and packets: `parse`, `emit`, `buffer_len` |
//! | [`deframe`] | TCP handshake and stream deframer, WebSocket message decoding, upgrade query |
//! | [`control`] | borrowed protobuf codecs of the control bodies |
//! | `gzip` | (feature `gzip`) bounded inflate of gzip bodies |
//! | `pb` | (feature `alloc`) prost types generated from `proto/control.proto` |
//!
//! Both machines follow the crate's run-loop contract (see the crate docs and
//! [`drain`](crate::drain)); their commands, events and errors use the same words as the game
//! profile's.
//!
//! # Client quick start
//!
//! ```
//! use tether_net::longport::{Client, ClientConfig, ClientEvent, Credentials};
//! use tether_net::{FrameKind, Instant};
//!
//! let mut client = Client::new(ClientConfig::tcp());
//! let now = Instant::from_secs(1);
//! client.connect(now, Credentials::new("one-time-token")).unwrap();
//! assert_eq!(client.poll_event(), Some(ClientEvent::ConnectTransport { attempt: 0 }));
//! // ... the caller opens a TCP connection, then:
//! client.handle_connected(now).unwrap();
//! let mut buf = [0u8; 1024];
//! let t = client.poll_transmit(now, &mut buf).unwrap().unwrap();
//! assert_eq!(t.kind, FrameKind::Stream);
//! assert_eq!(&buf[..2], &[0x11, 0x09]); // handshake, then the Auth request
//! # let _ = Client::<1, 8, 32, 32, 32>::with_capacities(ClientConfig::websocket());
//! ```
//!
//! # Server quick start
//!
//! ```
//! use tether_net::longport::{Grant, Server, ServerApp, ServerConfig, ServerEvent, SessionId, Source, Transport};
//! use tether_net::Instant;
//!
//! let mut server = Server::new(ServerConfig::new());
//! let now = Instant::from_secs(1);
//! server.handle_connected(now, 7u32, Transport::WebSocket, Source::UNKNOWN).unwrap();
//! // one binary message: an Auth request (id 1) for the token "abc"
//! let msg = [0x01, 0x02, 0, 0, 0, 1, 0x13, 0x88, 0, 0, 5, 0x0a, 3, b'a', b'b', b'c'];
//! let r = server.handle_input(now, 7, &msg).unwrap();
//! assert!(matches!(r.app(), Some(ServerApp::Auth { token: "abc", .. })));
//! // the session id is a bearer secret: 16 bytes from the OS random source in real code
//! let grant = Grant::new(SessionId::from_random([0xa5; 16]), 1_700_086_400_000);
//! server.accept_auth(now, 7, grant).unwrap();
//! let mut out = [0u8; 256];
//! let t = server.poll_transmit(now, &mut out).unwrap().unwrap(); // the AuthResponse
//! assert_eq!((t.to, t.len), (7, 51));
//! assert!(matches!(server.poll_event(), Some(ServerEvent::Connected { peer: 7, .. })));
//! ```

mod client;
pub mod control;
pub mod deframe;
mod error;
mod event;
#[cfg(feature = "gzip")]
pub mod gzip;
#[cfg(feature = "alloc")]
pub mod pb;
mod server;
pub mod wire;

pub use client::{
    Client, ClientApp, ClientConfig, ClientState, ClientStats, Credentials, JitterFn, QuotaPolicy,
    MAX_METADATA_PAIRS,
};
pub use control::{CloseCode, ErrorBody, Metadata, SessionGrant};
pub use deframe::{Handshake, Transport};
pub use error::{Error, ProtocolError};
pub use event::{ClientEvent, CloseCause, LoginKind, RequestFailure, ServerEvent};
pub use server::{
    AccountId, Admission, Grant, RateLimit, Server, ServerApp, ServerConfig, ServerState,
    ServerStats, SessionId, Source, DEFAULT_MAX_AUTH_BODY, MAX_COMMAND_LIMITS, MAX_INFLATED_LOGIN,
    MAX_SESSION_ENTROPY, MAX_SESSION_ID_LEN, MIN_SESSION_ENTROPY,
};
pub use wire::{RequestId, Status};

use heapless::{String, Vec};

use crate::io::BufferTooSmall;
use crate::time::Instant;
use control::CMD_HEARTBEAT;
use wire::Packet;

/// Longest text a machine keeps for a frame of its own, in bytes: the server's error messages
/// and close reasons, the client's WebSocket close reason
///
/// Longer texts given to `close`, `shutdown` or `reject_*` are truncated on a character
/// boundary. Texts from the peer are never copied (they come back borrowed).
pub const MAX_TEXT_LEN: usize = 64;

/// Largest heartbeat body a machine echoes by itself, in bytes (the official clients send at
/// most 22)
pub const MAX_ECHO_LEN: usize = 64;

/// Largest WebSocket control-frame payload (RFC 6455): Pong echoes are limited to it
const MAX_WS_CONTROL_PAYLOAD: usize = 125;

/// A text the machine keeps for its own frames
type Text = String<MAX_TEXT_LEN>;

/// `s` truncated to [`MAX_TEXT_LEN`] bytes on a character boundary
fn truncated(s: &str) -> Text {
    let mut end = s.len().min(MAX_TEXT_LEN);
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut t = Text::new();
    // cannot fail: `end <= MAX_TEXT_LEN`
    let _ = t.push_str(s.get(..end).unwrap_or(""));
    t
}

/// Milliseconds since the caller's epoch, as the signed type wall clocks use
fn millis(t: Instant) -> i64 {
    i64::try_from(t.as_millis()).unwrap_or(i64::MAX)
}

/// Count one more (saturating)
fn bump(counter: &mut u64) {
    *counter = counter.saturating_add(1);
}

/// Count `n` more (saturating)
fn bump_by(counter: &mut u64, n: usize) {
    *counter = counter.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
}

/// Copy `src` to the start of `buf`, or report the size needed
fn emit_raw(src: &[u8], buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
    let out = buf.get_mut(..src.len()).ok_or(BufferTooSmall {
        required: src.len(),
    })?;
    out.copy_from_slice(src);
    Ok(src.len())
}

/// A heartbeat request's body kept for its echo (status 0, same id, same body, same gzip flag)
#[derive(Debug, Clone)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
struct Echo {
    id: RequestId,
    gzip: bool,
    body: Vec<u8, MAX_ECHO_LEN>,
}

impl Echo {
    /// A copy of `body`, or `None` when it is longer than [`MAX_ECHO_LEN`]
    fn new(id: RequestId, gzip: bool, body: &[u8]) -> Option<Self> {
        Some(Echo {
            id,
            gzip,
            body: Vec::from_slice(body).ok()?,
        })
    }

    /// Store a copy of `body` in `slot`, built in place; `false` (slot unchanged) when it is
    /// longer than [`MAX_ECHO_LEN`]
    #[inline]
    fn store(slot: &mut Option<Echo>, id: RequestId, gzip: bool, body: &[u8]) -> bool {
        if body.len() > MAX_ECHO_LEN {
            return false;
        }
        let echo = slot.insert(Echo {
            id,
            gzip,
            body: Vec::new(),
        });
        // cannot fail: the length was checked
        echo.body.extend_from_slice(body).is_ok()
    }

    /// Write the echo (a cmd-1 response) at the start of `buf`
    fn emit(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        Packet::response(CMD_HEARTBEAT, self.id, Status::Success, &self.body)
            .with_gzip(self.gzip)
            .emit(buf)
    }
}

/// Wall-clock offset: Unix milliseconds minus machine milliseconds, once the caller set it
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
struct WallClock(Option<i64>);

impl WallClock {
    /// Unix ms is `unix_ms` at machine time `now`
    fn set(&mut self, now: Instant, unix_ms: i64) {
        self.0 = Some(unix_ms.saturating_sub(millis(now)));
    }

    /// Unix ms at machine time `now`, when set
    fn at(self, now: Instant) -> Option<i64> {
        self.0.map(|o| millis(now).saturating_add(o))
    }

    /// Unix ms at `now`, or milliseconds since the caller's epoch when no wall clock was set
    fn or_epoch_ms(self, now: Instant) -> i64 {
        self.at(now).unwrap_or_else(|| millis(now))
    }
}

#[cfg(test)]
mod tests {
    extern crate alloc;

    use super::*;

    #[test]
    fn truncation_respects_char_boundaries() {
        let s = "é".repeat(40);
        let t = truncated(&s);
        assert_eq!(t.len(), 64, "32 two-byte characters fit");
        let t = truncated(&alloc::format!("a{s}"));
        assert_eq!(t.len(), 63, "the 33rd character would need bytes 64 and 65");
        assert_eq!(truncated("abc").as_str(), "abc");
    }

    #[test]
    fn wall_clock_offsets() {
        let mut w = WallClock::default();
        assert_eq!(w.at(Instant::from_secs(1)), None);
        assert_eq!(w.or_epoch_ms(Instant::from_secs(1)), 1_000);
        w.set(Instant::from_secs(1), 1_700_000_000_000);
        assert_eq!(w.at(Instant::from_secs(2)), Some(1_700_000_001_000));
    }
}
