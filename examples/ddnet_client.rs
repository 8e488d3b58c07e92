//! Connect tether's game client to a real Teeworlds 0.6 / DDNet server over UDP
//!
//! ```text
//! cargo run --example ddnet_client -- ADDR [--seconds N] [--vanilla]
//! ```
//! Prints one line per event (`connected ...`, `closed: <reason>`), closes after N seconds
//! (default 5) with the reason "bye" and exits 0. Exits 1 when the connection fails or the server
//! closes it.

#[path = "../tests/support/udp_driver.rs"]
mod udp_driver;

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use tether_net::game::{ClientCloseCause, ClientConfig, ClientEvent};
use udp_driver::UdpClient;

fn usage() -> ExitCode {
    eprintln!("usage: ddnet_client ADDR [--seconds N] [--vanilla]");
    ExitCode::from(2)
}

fn describe(ev: &ClientEvent) -> String {
    match ev {
        ClientEvent::Connected { token: Some(t) } => format!(
            "connected (DDNet token mode, token {:02x}{:02x}{:02x}{:02x})",
            t.0[0], t.0[1], t.0[2], t.0[3]
        ),
        ClientEvent::Connected { token: None } => "connected (vanilla mode, no token)".into(),
        ClientEvent::Closed { cause } => match cause {
            ClientCloseCause::Local => "closed: bye (by us)".into(),
            ClientCloseCause::Peer { reason } if reason.is_empty() => {
                "closed: (server gave no reason)".into()
            }
            ClientCloseCause::Peer { reason } => format!("closed: {reason}"),
            ClientCloseCause::Timeout => "closed: timeout (nothing received)".into(),
            ClientCloseCause::ConnectTimeout => "closed: connect timeout".into(),
        },
    }
}

#[derive(Default)]
struct Outcome {
    connected: bool,
    closed: bool,
    failed: bool,
}

impl Outcome {
    /// Print the event; always stop the current run so `main` decides what comes next
    fn on_event(&mut self, t: tether_net::Instant, ev: &ClientEvent) -> bool {
        println!("[{t}] {}", describe(ev));
        match ev {
            ClientEvent::Connected { .. } => self.connected = true,
            ClientEvent::Closed { cause } => {
                self.closed = true;
                self.failed |= !matches!(cause, ClientCloseCause::Local);
            }
        }
        true
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut addr: Option<SocketAddr> = None;
    let mut seconds = 5u64;
    let mut vanilla = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => match args.next().and_then(|s| s.parse().ok()) {
                Some(n) => seconds = n,
                None => return usage(),
            },
            "--vanilla" => vanilla = true,
            "-h" | "--help" => return usage(),
            other if addr.is_none() => {
                match other.to_socket_addrs().ok().and_then(|mut i| i.next()) {
                    Some(a) => addr = Some(a),
                    None => {
                        eprintln!("cannot resolve {other}");
                        return usage();
                    }
                }
            }
            _ => return usage(),
        }
    }
    let Some(addr) = addr else { return usage() };

    let config = ClientConfig {
        vanilla,
        ..ClientConfig::default()
    };
    let mut c = match UdpClient::new(addr, config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("socket: {e}");
            return ExitCode::FAILURE;
        }
    };
    let now = c.now();
    c.client().connect(now).expect("fresh client");
    println!(
        "connecting to {addr} ({} mode)",
        if vanilla { "vanilla" } else { "token" }
    );

    // Connect (the client gives up after its 10 s connect timeout), then stay for N seconds.
    let mut o = Outcome::default();
    if let Err(e) = c.run(Duration::from_secs(15), |t, ev| o.on_event(t, ev)) {
        eprintln!("io: {e}");
        return ExitCode::FAILURE;
    }
    if o.connected && !o.closed {
        if let Err(e) = c.run(Duration::from_secs(seconds), |t, ev| o.on_event(t, ev)) {
            eprintln!("io: {e}");
            return ExitCode::FAILURE;
        }
    }
    if o.connected && !o.closed {
        let now = c.now();
        let _ = c.client().close(now, "bye");
        let _ = c.run(Duration::from_millis(200), |t, ev| o.on_event(t, ev));
    }
    let stats = c.client().stats();
    println!(
        "datagrams sent {}, received {}, keep-alives received {}",
        c.sent, c.received, stats.keep_alives_received
    );
    if o.failed || !o.connected {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
