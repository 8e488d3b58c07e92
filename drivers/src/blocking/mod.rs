//! Blocking drivers: one thread, std sockets, no runtime
//!
//! * [`UdpDriver`]: any datagram machine over a `std::net::UdpSocket`: the game client (socket
//!   connected to the server) and the game server (keyed by `SocketAddr`);
//!   [`UdpDriver::run_batched`] (Linux) is the same loop with `recvmmsg` / `sendmmsg` for a
//!   machine that takes a batch ([`BatchInput`]: the game server).
//! * [`TcpClient`]: the LongPort client over TCP (dials on `ConnectTransport`, keeps the
//!   compacting receive buffer, answers `TokenNeeded` from a token source, retries on a full
//!   queue, runs the timers).
//! * [`TcpServer`]: the LongPort server over non-blocking TCP sockets, with bounded input and
//!   output per connection against clients that do not read.
//!
//! Each runs the run loop of `tether_net` (one input, [`tether_net::drain`], sleep until
//! `poll_timeout`) inside a `run(limit, f)` call that hands every event and application value
//! to your closure; commands go through `command(|machine, now| ...)` or, inside the closure,
//! straight on the machine it is given.
//!
//! # Game client: connect, stay, close with a reason
//!
//! `examples/blocking_game.rs` (11 lines of glue, see the crate README for the rule):
//!
#![doc = concat!("```no_run\n", include_str!("../../examples/blocking_game.rs"), "```")]
//!
//! # LongPort client: auth, one request, reconnect after the transport drops, close
//!
//! `examples/blocking_longport.rs` (10 lines of glue):
//!
#![doc = concat!("```no_run\n", include_str!("../../examples/blocking_longport.rs"), "```")]
//!
//! # LongPort server
//!
//! [`TcpServer::run`] hands the application every new connection, auth request, business
//! request and machine event ([`ServerItem`]) with a [`Ctl`] to decide and answer; see
//! `examples/longport_tcp_server.rs` of the `tether-net` repository for a complete server.

#[cfg(any(target_os = "linux", target_os = "android"))]
pub mod mmsg;
mod tcp_client;
mod tcp_server;
mod udp;

pub use crate::hub::{ConnId, ServerInput, ServerItem, ServerLimits};
pub use crate::Input;
pub use tcp_client::{TcpClient, TcpClientStats, TokenSource};
pub use tcp_server::{Ctl, TcpServer, TcpServerStats};
pub use tether_net::longport::{Admission, Grant, SessionId, Source};
#[cfg(any(target_os = "linux", target_os = "android"))]
pub use udp::BatchInput;
pub use udp::{DatagramPeer, UdpDriver, UdpStats, DEFAULT_BATCH};
