//! Connect tether's game client to a real Teeworlds 0.6 / DDNet server over UDP
//!
//! ```text
//! cargo run --example ddnet_client -- ADDR [--seconds N] [--vanilla]
//! cargo run --example ddnet_client -- ADDR --join [--seconds N] [--name NAME] [--map-out FILE]
//! ```
//! Without `--join`: the control plane only. Prints one line per event (`connected ...`,
//! `closed: <reason>`), closes after N seconds (default 5) with the reason "bye" and exits 0.
//! Exits 1 when the connection fails or the server closes it.
//!
//! With `--join`: the chunk layer and the join (`tether_net::game::join`): token handshake, INFO,
//! MAP_CHANGE, the whole map through vital chunks (CRC32 checked; `--map-out` writes it to a file),
//! READY, start info, ENTERGAME, snapshots acked by INPUT for N seconds, then CLOSE. Prints
//! `map NAME: SIZE bytes, crc XXXXXXXX ok`, `entered game`, one line per second with the snapshots
//! received and the resends, and `closed: <reason>`. Exits 0 only when it entered the game and
//! closed the connection itself.
//!
//! The driver is `tether_net_drivers::blocking::UdpDriver`: the crate's run loop over a blocking
//! `std::net::UdpSocket` (one input, `tether_net::drain`, sleep until `poll_timeout` or the next
//! datagram). This program holds only what to do with the events.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::process::ExitCode;
use std::time::Duration;

use tether_net::game::{Client, ClientApp, ClientConfig, ClientEvent, CloseCause};
use tether_net_drivers::blocking::{Input, UdpDriver};

mod join;

fn usage() -> ExitCode {
    eprintln!("usage: ddnet_client ADDR [--seconds N] [--vanilla]");
    eprintln!("       ddnet_client ADDR --join [--seconds N] [--name NAME] [--map-out FILE]");
    ExitCode::from(2)
}

fn describe(ev: &ClientEvent, reason: Option<&str>) -> String {
    match ev {
        ClientEvent::Connected { token: Some(t) } => format!(
            "connected (DDNet token mode, token {:02x}{:02x}{:02x}{:02x})",
            t.0[0], t.0[1], t.0[2], t.0[3]
        ),
        ClientEvent::Connected { token: None } => "connected (vanilla mode, no token)".into(),
        ClientEvent::Closed { cause } => match (cause, reason) {
            (CloseCause::Local, _) => "closed: bye (by us)".into(),
            (CloseCause::Peer, None | Some("")) => "closed: (server gave no reason)".into(),
            (CloseCause::Peer, Some(r)) => format!("closed: {r}"),
            (CloseCause::Timeout, _) => "closed: timeout (nothing received)".into(),
            (CloseCause::ConnectTimeout, _) => "closed: connect timeout".into(),
            (other, _) => format!("closed: {other:?}"),
        },
        other => format!("{other:?}"),
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut addr: Option<SocketAddr> = None;
    let mut seconds = 5u64;
    let mut vanilla = false;
    let mut join = false;
    let mut name = String::from("tether");
    let mut map_out: Option<String> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => match args.next().and_then(|s| s.parse().ok()) {
                Some(n) => seconds = n,
                None => return usage(),
            },
            "--vanilla" => vanilla = true,
            "--join" => join = true,
            "--name" => match args.next() {
                Some(n) => name = n,
                None => return usage(),
            },
            "--map-out" => match args.next() {
                Some(f) => map_out = Some(f),
                None => return usage(),
            },
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
    if join {
        if vanilla {
            eprintln!("--join uses the token handshake; --vanilla is not supported with it");
            return usage();
        }
        println!("joining {addr}");
        return match run_join(addr, seconds, name, map_out) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("io: {e}");
                ExitCode::FAILURE
            }
        };
    }
    println!(
        "connecting to {addr} ({} mode)",
        if vanilla { "vanilla" } else { "token" }
    );
    match run(addr, vanilla, Duration::from_secs(seconds)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("io: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What the event handler tells the program
enum Step {
    Online,
    Closed { by_us: bool },
}

/// Connect, stay `stay` once connected, close; true when we were the ones who closed
fn run(addr: SocketAddr, vanilla: bool, stay: Duration) -> io::Result<bool> {
    let client = Client::new(ClientConfig::new().with_vanilla(vanilla));
    let mut d = UdpDriver::connect(client, addr)?;
    let mut reason: Option<String> = None;
    // the connect command; the client gives up after its 10 s connect timeout
    d.command(|c, now| c.connect(now))
        .map_err(io::Error::other)?;
    let mut stay_until: Option<std::time::Instant> = None;
    let by_us = loop {
        let limit = stay_until.map_or(Duration::from_secs(60), |at| {
            at.saturating_duration_since(std::time::Instant::now())
        });
        let step = d.run(limit, |_, now, input| match input {
            Input::App(_, ClientApp::Close { reason: r }) => {
                reason = Some(r.to_string());
                None
            }
            Input::Event(ev) => {
                println!("[{now}] {}", describe(&ev, reason.as_deref()));
                match ev {
                    ClientEvent::Connected { .. } => Some(Step::Online),
                    ClientEvent::Closed { cause } => Some(Step::Closed {
                        by_us: cause == CloseCause::Local,
                    }),
                    _ => None,
                }
            }
            _ => None,
        })?;
        match step {
            Some(Step::Online) => stay_until = Some(std::time::Instant::now() + stay),
            Some(Step::Closed { by_us }) => break by_us,
            // the stay is over: close with a reason; the loop then reports `Closed`
            None if stay_until.is_some() => {
                stay_until = None;
                d.command(|c, now| c.close(now, "bye"))
                    .map_err(io::Error::other)?;
            }
            None => {}
        }
    };
    println!(
        "datagrams sent {}, received {}, keep-alives received {}",
        d.stats().sent,
        d.stats().received,
        d.machine().stats().keep_alives_received
    );
    Ok(by_us)
}

/// `--join`: the whole join (see the module docs); true when it entered the game and closed
fn run_join(
    addr: SocketAddr,
    seconds: u64,
    name: String,
    map_out: Option<String>,
) -> io::Result<bool> {
    let local = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let sock = UdpSocket::bind(local)?;
    sock.connect(addr)?;
    let opts = join::Options {
        stay: Duration::from_secs(seconds),
        name,
        ..join::Options::default()
    };
    let report = join::run_join(&sock, &opts, |line| println!("{line}"))?;
    if let (Some(path), true) = (map_out, report.map_ok) {
        std::fs::write(&path, &report.map_bytes)?;
        println!("map written to {path}");
    }
    Ok(report.success())
}
