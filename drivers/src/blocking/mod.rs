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

use std::collections::VecDeque;
use std::io;
use std::string::ToString;
use std::time::Duration;
use std::vec::Vec;

use tether_net::time::Epoch;
use tether_net::{DrainError, Instant, Machine};

pub use crate::hub::{ConnId, ServerInput, ServerItem, ServerLimits};
pub use crate::Input;
pub use tcp_client::{TcpClient, TcpClientStats, TokenSource};
pub use tcp_server::{Ctl, TcpServer, TcpServerStats};
pub use tether_net::longport::{Admission, Grant, SessionId, Source};
#[cfg(any(target_os = "linux", target_os = "android"))]
pub use udp::BatchInput;
pub use udp::{DatagramPeer, UdpDriver, UdpStats, DEFAULT_BATCH};

/// Start of `run`: hand the events kept from an earlier call to `f`, oldest first; `Some` as
/// soon as `f` returns it
fn replay<M: Machine, R>(
    backlog: &mut VecDeque<M::Event>,
    machine: &mut M,
    epoch: &Epoch,
    f: &mut impl for<'a> FnMut(&mut M, Instant, Input<'a, M>) -> Option<R>,
) -> Option<R> {
    while let Some(ev) = backlog.pop_front() {
        let now = epoch.instant(std::time::Instant::now());
        if let Some(r) = f(machine, now, Input::Event(ev)) {
            return Some(r);
        }
    }
    None
}

/// Step 3: how long to wait for input, until the machine's deadline or `end` and at least
/// 1 ms; `None` once `end` has passed
fn sleep_for<M: Machine>(machine: &M, epoch: &Epoch, end: std::time::Instant) -> Option<Duration> {
    let wall = std::time::Instant::now();
    if wall >= end {
        return None;
    }
    let wake = machine
        .poll_timeout()
        .map_or(end, |t| epoch.to_std(t).min(end));
    Some(
        wake.saturating_duration_since(wall)
            .max(Duration::from_millis(1)),
    )
}

/// An event drained in a `flush`: to `f` while it has not asked to stop, else kept for the next
/// call
fn hand_event<M: Machine, R>(
    result: &mut Option<R>,
    backlog: &mut VecDeque<M::Event>,
    f: &mut impl for<'a> FnMut(&mut M, Instant, Input<'a, M>) -> Option<R>,
    machine: &mut M,
    now: Instant,
    ev: M::Event,
) {
    if result.is_some() {
        backlog.push_back(ev);
    } else {
        *result = f(machine, now, Input::Event(ev));
    }
}

/// End of one [`tether_net::drain`] in a `flush`: `Some` is the flush's result, `None` means
/// `out` grew to hold the next frame and the drain goes on
fn drained(r: Result<(), DrainError<io::Error>>, out: &mut Vec<u8>) -> Option<io::Result<()>> {
    match r {
        Ok(()) => Some(Ok(())),
        Err(DrainError::BufferTooSmall(e)) => {
            out.resize(e.required, 0);
            None
        }
        Err(DrainError::Send(e)) => Some(Err(e)),
        Err(e) => Some(Err(io::Error::other(e.to_string()))),
    }
}
