//! Step 3 of the DDNet examples' hand-written loops over a blocking `UdpSocket`: how long to
//! wait for the next datagram, and which receive errors only mean that none came

use std::io;
use std::time::Duration;

use tether_net::time::Epoch;
use tether_net::Instant;

/// The socket's read timeout until `wake` (100 ms when nothing is due), kept within
/// `floor..=100 ms`
pub fn read_timeout(epoch: &Epoch, wake: Option<Instant>, floor: Duration) -> Duration {
    let wait = wake.map_or(Duration::from_millis(100), |w| {
        epoch
            .to_std(w)
            .saturating_duration_since(std::time::Instant::now())
    });
    wait.clamp(floor, Duration::from_millis(100))
}

/// No datagram this time: the read timed out or was interrupted, or an ICMP refusal of an
/// earlier datagram surfaced (the machine's timers decide what follows)
pub fn is_idle(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}
