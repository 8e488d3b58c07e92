//! Drive a `tether_net::game::Client` over a blocking std `UdpSocket`: the run loop of the crate
//! docs, step 2 being exactly `tether_net::drain`
//!
//! Used by `tests/interop_ddnet.rs` (included with `#[path]`).
#![allow(dead_code)]

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use tether_net::game::connless::InfoKind;
use tether_net::game::wire::MAX_PACKET_LEN;
use tether_net::game::{Client, ClientApp, ClientConfig, ClientEvent};
use tether_net::time::Epoch;
use tether_net::{drain, DrainError, Instant};

/// A server-info answer as the driver keeps it
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoSeen {
    pub token: i32,
    pub name: String,
    pub map: String,
    pub version: String,
    /// Map CRC32 and size, in the extended answer
    pub map_crc_size: Option<(u32, i32)>,
    pub clients: usize,
}

/// A game client bound to one UDP socket, with a monotonic clock relative to its creation
pub struct UdpClient {
    sock: UdpSocket,
    client: Client,
    epoch: Epoch,
    /// Datagrams sent and received by this driver
    pub sent: u64,
    /// Datagrams received
    pub received: u64,
    /// When the latest datagram arrived
    pub last_received_at: Option<std::time::Instant>,
    /// The reason of the server's CLOSE, as printed, once one arrived
    pub close_reason: Option<String>,
    /// Server-info answers received
    pub info: Vec<InfoSeen>,
}

impl UdpClient {
    /// Bind an ephemeral port (loopback when the server is on loopback) and connect the socket
    pub fn new(server: SocketAddr, config: ClientConfig) -> io::Result<UdpClient> {
        let local: SocketAddr = if server.ip().is_loopback() {
            "127.0.0.1:0".parse().unwrap()
        } else if server.is_ipv4() {
            "0.0.0.0:0".parse().unwrap()
        } else {
            "[::]:0".parse().unwrap()
        };
        let sock = UdpSocket::bind(local)?;
        sock.connect(server)?;
        Ok(UdpClient {
            sock,
            client: Client::new(config),
            epoch: Epoch::new(std::time::Instant::now()),
            sent: 0,
            received: 0,
            last_received_at: None,
            close_reason: None,
            info: Vec::new(),
        })
    }

    /// Time since creation as a tether `Instant`
    pub fn now(&self) -> Instant {
        self.epoch.instant(std::time::Instant::now())
    }

    /// Our UDP port
    pub fn local_port(&self) -> u16 {
        self.sock.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The machine, for commands (`connect`, `close`) and getters
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Run the loop for at most `limit`; `on_event` returns true to stop early. Returns whether
    /// it stopped because `on_event` asked to.
    pub fn run(
        &mut self,
        limit: Duration,
        mut on_event: impl FnMut(Instant, &ClientEvent) -> bool,
    ) -> io::Result<bool> {
        let start = std::time::Instant::now();
        let mut out = [0u8; MAX_PACKET_LEN];
        let mut inp = [0u8; 2048];
        loop {
            // 2. hand out every frame and event
            let now = self.now();
            let mut stop = false;
            let (sock, sent) = (&self.sock, &mut self.sent);
            drain(
                &mut self.client,
                now,
                &mut out,
                |_, bytes| {
                    sock.send(bytes)?;
                    *sent += 1;
                    Ok::<(), io::Error>(())
                },
                |_, ev| stop |= on_event(now, &ev),
            )
            .map_err(|e| match e {
                DrainError::Send(e) => e,
                other => io::Error::other(other.to_string()),
            })?;
            if stop {
                return Ok(true);
            }
            let elapsed = start.elapsed();
            if elapsed >= limit {
                return Ok(false);
            }
            // 3. sleep until the next deadline or a datagram
            let remaining = limit - elapsed;
            let wait = match self.client.poll_timeout() {
                Some(t) => self
                    .epoch
                    .to_std(t)
                    .saturating_duration_since(std::time::Instant::now()),
                None => remaining,
            }
            .min(remaining)
            .max(Duration::from_millis(1));
            self.sock.set_read_timeout(Some(wait))?;
            // 1. exactly one input: a datagram or the timeout
            match self.sock.recv(&mut inp) {
                Ok(n) => {
                    self.received += 1;
                    self.last_received_at = Some(std::time::Instant::now());
                    let now = self.now();
                    let r = self
                        .client
                        .handle_input(now, (), &inp[..n])
                        .map_err(io::Error::other)?;
                    match r.into_app() {
                        Some(ClientApp::Close { reason }) => {
                            self.close_reason = Some(reason.to_string());
                        }
                        Some(ClientApp::ServerInfo(i)) => self.info.push(InfoSeen {
                            token: i.token,
                            name: i.name.to_text::<256>().to_string(),
                            map: i.map.to_text::<256>().to_string(),
                            version: i.version.to_text::<256>().to_string(),
                            map_crc_size: match i.kind {
                                InfoKind::Extended { map_crc, map_size } => {
                                    Some((map_crc, map_size))
                                }
                                _ => None,
                            },
                            clients: i.clients.len(),
                        }),
                        _ => {}
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::ConnectionRefused
                    ) =>
                {
                    self.client.handle_timeout(self.now());
                }
                Err(e) => return Err(e),
            }
        }
    }
}
