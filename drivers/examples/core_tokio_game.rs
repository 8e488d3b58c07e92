//! Game client over tokio UDP with the core only (no driver): the run loop written by hand with
//! `tether_net::poll_output`, for comparison with `tokio_game.rs` (the same scenario on the driver)
//!
//! usage: cargo run --example core_tokio_game -- ADDR [SECONDS]
//!
//! Connects to a Teeworlds 0.6 / DDNet server, stays connected SECONDS (default 5) printing
//! events, then closes with a reason and exits once the CLOSE is sent. Exits early when the
//! server closes us, printing its reason.

use std::error::Error as StdError;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use tether_net::game::{Client, ClientApp, ClientConfig, ClientEvent};
use tether_net::time::Epoch;
use tether_net::{poll_output, Output};
use tokio::net::UdpSocket;
use tokio::time::Instant as TokioInstant;

const USAGE: &str = "usage: core_tokio_game ADDR [SECONDS]"; // scenario
const CLOSE_REASON: &str = "bye"; // scenario

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn StdError>> {
    let mut args = std::env::args().skip(1); // scenario
    let addr: SocketAddr = args.next().ok_or(USAGE)?.parse()?; // scenario
    let stay = Duration::from_secs(args.next().map_or(Ok(5), |s| s.parse())?); // scenario

    let socket = UdpSocket::bind("0.0.0.0:0").await?;
    socket.connect(addr).await?;
    let epoch = Epoch::new(std::time::Instant::now());
    let now = || epoch.instant(std::time::Instant::now());
    let mut client = Client::new(ClientConfig::new());
    client.connect(now())?;

    let mut buf = [0u8; 1400];
    let mut close_at: Option<TokioInstant> = None;
    loop {
        // 2. hand out every frame and every event
        while let Some(out) = poll_output(&mut client, now(), &mut buf)? {
            match out {
                Output::Transmit(t) => match socket.send(&buf[..t.len]).await {
                    Err(e) if e.kind() != ErrorKind::ConnectionRefused => return Err(e.into()),
                    _ => {} // sent, or refused by ICMP: a lost datagram
                },
                Output::Event(event) => {
                    println!("event: {event:?}"); // scenario
                    match event {
                        ClientEvent::Connected { .. } => {
                            close_at = Some(TokioInstant::now() + stay)
                        }
                        ClientEvent::Closed { .. } => return Ok(()), // our CLOSE went out above
                        _ => {}
                    }
                }
            }
        }
        // 3. sleep until a datagram, the machine's next deadline or our close time; 1. one input
        let deadline = client.poll_timeout().map(|t| epoch.to_std(t).into());
        tokio::select! {
            r = socket.recv(&mut buf) => match r {
                Ok(n) => {
                    if let Some(ClientApp::Close { reason }) = client.handle_input(now(), (), &buf[..n])?.app() {
                        println!("server closed us: {reason}"); // scenario
                    }
                }
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {} // not up yet: keep trying
                Err(e) => return Err(e.into()),
            },
            () = sleep_until(deadline) => client.handle_timeout(now()),
            () = sleep_until(close_at) => {
                close_at = None;
                client.close(now(), CLOSE_REASON)?;
            }
        }
    }
}

/// Sleep until `deadline`, or forever without one
async fn sleep_until(deadline: Option<TokioInstant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
