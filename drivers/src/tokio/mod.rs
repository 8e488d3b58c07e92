//! tokio drivers: a task per machine, a handle with async commands, a bounded stream of events
//!
//! * [`GameClient`] / [`GameServer`]: the game machines over `tokio::net::UdpSocket` (one
//!   datagram loop serves both).
//! * [`LongPortClient`]: the LongPort client over TCP (`tcp://`), WebSocket (`ws://`) and TLS
//!   WebSocket (`wss://`, rustls; trust roots configurable).
//! * [`LongPortServer`]: the LongPort server on TCP and WebSocket listeners (optionally TLS).
//!
//! Every driver spawns one task that owns the machine (machines are not `Sync`) and runs the
//! run loop; you hold a cloneable handle whose methods send commands to that task, and a stream
//! of events.
//!
//! # Game client: connect, stay, close with a reason
//!
//! `examples/tokio_game.rs` (8 lines of glue, see the crate README for the rule):
//!
#![doc = concat!("```no_run\n", include_str!("../../examples/tokio_game.rs"), "```")]
//!
//! # LongPort client: auth, one request, reconnect after the transport drops, close
//!
//! `examples/tokio_longport.rs` (9 lines of glue):
//!
#![doc = concat!("```no_run\n", include_str!("../../examples/tokio_longport.rs"), "```")]
//!
//! # LongPort server
//!
//! [`LongPortServer::bind`] on TCP, `ws://` and `wss://` listeners returns a handle and a
//! stream of [`ServerItem`]s (new connections, auth and business requests to answer, machine
//! events); answer with `accept_auth`/`reject_auth`/`respond`/`push`/`close` on the handle.
//! Each connection has a bounded receive buffer and a bounded outbox ([`ServerLimits`]): a
//! client whose answers cannot be written is not read any more, and one whose outbox stays
//! above the high-water mark past the stall timeout (or overflows) is dropped, so one stuck
//! client never delays the others. Before the machine meets a connection, its TLS and
//! WebSocket handshakes are bounded too (5 s; per source and in all, by default as many as the
//! machine lets wait for a login, the oldest closed first), and no WebSocket message or frame
//! longer than the machine's largest packet is buffered (the client applies the same bound to
//! its server). The work per input is independent of how many idle connections are open.
//!
//! # Backpressure and memory
//!
//! Commands travel on a bounded channel (a handle method waits when it is full). Events and
//! application data travel on a bounded channel of `events_capacity` items (default 64); when
//! the consumer falls behind, at most 64 more items wait in the task, the task **stops reading
//! its sockets** (TCP flow control then slows the peer; UDP datagrams are dropped by the kernel)
//! and keeps running timers and commands, so requests still time out and keep-alives still go
//! out. Only when those 64 are used up too does the task wait for the consumer. Memory is
//! therefore bounded by the two channel capacities, the backlog and the socket buffers; the
//! outcome of a consumer that never reads is a connection that times out (the peer stops
//! hearing from us, or we from it), never unbounded memory. Dropping the event stream means
//! "not interested": events are discarded from then on.
//!
//! # Cancellation and shutdown
//!
//! Every command future is cancel-safe: dropping `request(..)` before the request was written
//! means it is never sent; dropping it later means its response is discarded when it arrives
//! (the machine still tracks it until then, bounded by its request table). `close(reason)`
//! resolves every request in flight with an error before it returns; dropping every handle
//! closes the connection (client) or shuts the server down.

mod lp_client;
mod lp_server;
mod outlet;
mod tls;
mod udp;

pub use lp_client::{
    ClientConnectError, ClientItem, ClientOptions, LongPortClient, LongPortEvents, PendingResponse,
    RequestError, Response,
};
pub use lp_server::{
    Listener, LongPortServer, ServerEvents, ServerOptions, ServerSnapshot, UpgradeHook,
};
pub use tls::{client_config_with_roots, webpki_client_config};
pub use udp::{
    GameClient, GameClientItem, GameClientStats, GameConnectError, GameEvents, GameServer,
    GameServerEvents, GameServerInfo, GameServerInfoClient, GameServerItem, GameServerStats,
    SocketStats,
};

pub use crate::datagram::DatagramPeer;
pub use crate::hub::{ConnId, HubStats, ServerInput, ServerItem, ServerLimits};
pub use tether_net::longport::{Admission, Grant, SessionId, Source};

/// What a command of a tokio driver could not do
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DriverError {
    /// The machine refused the command (its profile's error)
    Game(tether_net::game::Error),
    /// The machine refused the command (its profile's error)
    LongPort(tether_net::longport::Error),
    /// The driver task has ended (the machine is closed)
    Stopped,
}

impl core::fmt::Display for DriverError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DriverError::Game(e) => e.fmt(f),
            DriverError::LongPort(e) => e.fmt(f),
            DriverError::Stopped => f.write_str("the driver has stopped"),
        }
    }
}

impl std::error::Error for DriverError {}

impl From<tether_net::game::Error> for DriverError {
    fn from(e: tether_net::game::Error) -> Self {
        DriverError::Game(e)
    }
}

impl From<tether_net::longport::Error> for DriverError {
    fn from(e: tether_net::longport::Error) -> Self {
        DriverError::LongPort(e)
    }
}

/// Default capacity of an event channel
pub(crate) const EVENTS: usize = 64;
/// Capacity of a command channel
pub(crate) const COMMANDS: usize = 64;

/// `t` in tokio's clock
pub(crate) fn tokio_at(
    epoch: &tether_net::time::Epoch,
    t: tether_net::Instant,
) -> tokio::time::Instant {
    tokio::time::Instant::from_std(epoch.to_std(t))
}

/// Sleep until `at`, or for ever
pub(crate) async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Unix milliseconds of the system clock
/// The WebSocket library's limits for a LongPort connection: one message is one packet, so
/// nothing longer than `max_packet` (the machine's largest header + body) is buffered; a frame
/// or message announcing more ends the connection at its header (the library's defaults would
/// buffer up to 64 MiB per connection first)
pub(crate) fn ws_config(
    max_packet: usize,
) -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(max_packet))
        .max_frame_size(Some(max_packet))
}

pub(crate) fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// How a client's connection ended: `ended` when the task has recorded it, else the task's
/// answer to the command `make` builds (it replies when the connection ends); `None` only when
/// the task went away without recording a cause
pub(crate) async fn ended<C, T: Copy>(
    ended: &std::sync::OnceLock<T>,
    commands: &tokio::sync::mpsc::Sender<C>,
    make: impl FnOnce(tokio::sync::oneshot::Sender<T>) -> C,
) -> Option<T> {
    if let Some(&cause) = ended.get() {
        return Some(cause);
    }
    // the task may have ended between the check and the command
    ask(commands, make)
        .await
        .ok()
        .or_else(|| ended.get().copied())
}

/// Send a command that carries a reply channel to the driver task and wait for the machine's
/// answer to it ([`DriverError::Stopped`] when the task has ended)
pub(crate) async fn call<C, T, E: Into<DriverError>>(
    commands: &tokio::sync::mpsc::Sender<C>,
    make: impl FnOnce(tokio::sync::oneshot::Sender<Result<T, E>>) -> C,
) -> Result<T, DriverError> {
    ask(commands, make).await?.map_err(Into::into)
}

/// Send a command that carries a reply channel to the driver task and wait for the reply
/// ([`DriverError::Stopped`] when the task has ended)
pub(crate) async fn ask<C, T>(
    commands: &tokio::sync::mpsc::Sender<C>,
    make: impl FnOnce(tokio::sync::oneshot::Sender<T>) -> C,
) -> Result<T, DriverError> {
    let (reply, rx) = tokio::sync::oneshot::channel();
    commands
        .send(make(reply))
        .await
        .map_err(|_| DriverError::Stopped)?;
    rx.await.map_err(|_| DriverError::Stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_errors_read_as_their_cause() {
        assert_eq!(DriverError::Stopped.to_string(), "the driver has stopped");
        let game = tether_net::game::Error::QueueFull;
        assert_eq!(DriverError::from(game).to_string(), game.to_string());
        let lp = tether_net::longport::Error::NotOpen;
        assert_eq!(DriverError::from(lp).to_string(), lp.to_string());
    }

    #[test]
    fn the_wall_clock_is_unix_milliseconds() {
        let ms = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
        };
        let before = ms(std::time::SystemTime::now());
        let t = unix_ms();
        let after = ms(std::time::SystemTime::now());
        assert!((before..=after).contains(&t), "{before} {t} {after}");
    }
}
