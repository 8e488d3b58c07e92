//! Blocking drivers: one thread, std sockets, no runtime
//!
//! * [`UdpDriver`]: any datagram machine over a `std::net::UdpSocket`: the game client (socket
//!   connected to the server) and the game server (keyed by `SocketAddr`).
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
//! ```no_run
//! use std::time::Duration;
//! use tether_net::game::{Client, ClientConfig, ClientEvent};
//! use tether_net_drivers::blocking::{Input, UdpDriver};
//!
//! fn main() -> std::io::Result<()> {
//!     let mut d = UdpDriver::connect(Client::new(ClientConfig::new()), "127.0.0.1:8303")?;
//!     d.command(|c, now| c.connect(now)).map_err(std::io::Error::other)?;
//!     d.run(Duration::from_secs(5), |c, now, input| match input {
//!         Input::Event(ClientEvent::Connected { .. }) => c.close(now, "bye").ok(),
//!         Input::Event(ClientEvent::Closed { cause }) => panic!("closed: {cause:?}"),
//!         _ => None,
//!     })?; // (a stay of 5 s comes first in the real program below)
//!     Ok(())
//! }
//! ```
//!
//! The complete programs of the two scenarios are `drivers/examples/blocking_game.rs` and
//! `drivers/examples/blocking_longport.rs`.

mod tcp_client;
mod tcp_server;
mod udp;

pub use crate::hub::{ConnId, Grant, ServerInput, ServerItem, ServerLimits};
pub use crate::Input;
pub use tcp_client::{TcpClient, TcpClientStats, TokenSource};
pub use tcp_server::{Ctl, TcpServer, TcpServerStats};
pub use udp::{DatagramPeer, UdpDriver, UdpStats};
