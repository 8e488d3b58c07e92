//! embassy drivers (`no_std`, no allocator): the game client over `embassy_net::udp` and the
//! LongPort client over `embassy_net::tcp`
//!
//! Both own their socket, the machine and fixed buffers, read time from `embassy_time`, and run
//! the run loop inside `run(limit, f)`, which hands every event and application value to your
//! closure (the same shape as the blocking drivers). Frames go out with the socket's async
//! send, one at a time, before the next event is taken: the run loop's step 2, awaited.
//!
//! [`UdpDriver`] serves any datagram machine whose peer is `()` (a client: frames go to the
//! server endpoint) or an `IpEndpoint` (a server). [`TcpClient`] serves the LongPort client: it
//! dials on `ConnectTransport`, keeps a compacting receive buffer of `RX` bytes, retries on a
//! full queue and runs the timers.
//!
//! # Both scenarios, on Linux over a TAP interface
//!
//! `examples/embassy_tap.rs`: `game` (connect, stay, close with a reason; 15 lines of glue with
//! its imports) and `longport` (auth, one request, reconnect after the transport drops, close;
//! 14 lines of glue with its imports) run on the embassy executor; `main` is the platform
//! setup (TAP device, IP stack, executor) that any `embassy-net` program has, on a
//! microcontroller the board's:
//!
#![doc = concat!("```no_run\n", include_str!("../../examples/embassy_tap.rs"), "```")]

mod tcp;
mod udp;

pub use tcp::{CallError, TcpBuffers, TcpClient};
pub use udp::{EmbassyPeer, UdpBuffers, UdpDriver};

use tether_net::{Instant, Machine};

/// Now, from `embassy_time` (a monotonic clock), as a tether `Instant`
#[must_use]
pub fn now() -> Instant {
    Instant::from_micros(embassy_time::Instant::now().as_micros())
}

/// A tether `Instant` in `embassy_time`'s clock
#[must_use]
pub fn to_embassy(t: Instant) -> embassy_time::Instant {
    embassy_time::Instant::from_micros(t.as_micros())
}

/// Step 3: when to wake up, at the machine's deadline or at `end`; `None` once `end` has passed
fn wake_at<M: Machine>(machine: &M, end: embassy_time::Instant) -> Option<embassy_time::Instant> {
    if embassy_time::Instant::now() >= end {
        return None;
    }
    Some(
        machine
            .poll_timeout()
            .map_or(end, |t| to_embassy(t).min(end)),
    )
}
