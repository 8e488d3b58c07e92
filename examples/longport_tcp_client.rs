//! LongPort OpenAPI socket client over std TCP: auth, one echoed business request, one
//! heartbeat RTT, close
//!
//! ```text
//! cargo run --example longport_tcp_server -- --listen 127.0.0.1:7000
//! cargo run --example longport_tcp_client -- 127.0.0.1:7000 [--token T]
//! ```
//! Prints one line per event; exits 0 once the echo and the RTT are in, 1 on failure. The socket
//! work (dialing on `ConnectTransport`, the receive buffer, timers) is
//! `tether_net_drivers::blocking::TcpClient`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use tether_net::longport::{Client, ClientApp, ClientConfig, ClientEvent, Credentials};
use tether_net_drivers::blocking::{Input, TcpClient};

/// Business command sent and echoed (QueryUserQuoteProfile's number)
const CMD_ECHO: u8 = 4;

fn main() {
    let mut addr: Option<SocketAddr> = None;
    let mut token = "demo-token".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--token" {
            token = args.next().unwrap_or_default();
        } else if addr.is_none() {
            addr = a.to_socket_addrs().ok().and_then(|mut i| i.next());
        }
    }
    let Some(addr) = addr else {
        eprintln!("usage: longport_tcp_client ADDR [--token T]");
        std::process::exit(2);
    };
    let config = ClientConfig::tcp().with_heartbeat_interval(Some(Duration::from_secs(1)));
    let mut d = TcpClient::new(Client::new(config), addr).expect("a TCP address");
    d.command(|c, now| c.connect(now, Credentials::new(&token)))
        .expect("a fresh client");
    let (mut echo, mut rtt, mut refusal) = (None, None, None);
    let mut sent = false;
    let done = loop {
        let step = d.run(Duration::from_secs(10), |_, _, input| {
            match input {
                Input::Event(e) => {
                    println!("event: {e:?}");
                    match e {
                        ClientEvent::Connected { .. } => return Some(false),
                        ClientEvent::HeartbeatRtt { rtt: r } => rtt = rtt.or(Some(r)),
                        ClientEvent::LoginFailed { .. } | ClientEvent::Closed { .. } => {
                            return Some(true)
                        }
                        _ => {}
                    }
                }
                Input::App(
                    _,
                    ClientApp::Response {
                        request_id, body, ..
                    },
                ) => {
                    println!("echo: {request_id} {:?}", String::from_utf8_lossy(body));
                    echo = Some(body.to_vec());
                }
                Input::App(_, ClientApp::LoginError { message, .. }) => {
                    refusal = Some(message.to_string())
                }
                _ => {}
            }
            (echo.is_some() && rtt.is_some()).then_some(false)
        });
        match step {
            Ok(Some(true)) => break false,
            Ok(Some(false)) if echo.is_some() && rtt.is_some() => break true,
            Ok(Some(false)) if !sent => {
                sent = true;
                let body = b"hello from tether";
                match d.request(CMD_ECHO, Duration::from_secs(5), body) {
                    Ok(id) => println!("request: {id} cmd {CMD_ECHO}, {} bytes", body.len()),
                    Err(e) => {
                        eprintln!("request refused: {e}");
                        break false;
                    }
                }
            }
            Ok(Some(false)) => {}
            Ok(None) => {
                eprintln!("failed: no echo and RTT within 10 s");
                break false;
            }
            Err(e) => {
                eprintln!("failed: {e}");
                break false;
            }
        }
    };
    if !done {
        if let Some(m) = refusal {
            eprintln!("failed: login refused: {m}");
        }
        std::process::exit(1);
    }
    let session = d.machine().session_id().unwrap_or("").to_string();
    d.command(|c, now| c.close(now, "done")).expect("open");
    let _ = d.run(Duration::from_secs(1), |_, _, input| match input {
        Input::Event(e @ ClientEvent::Closed { .. }) => {
            println!("event: {e:?}");
            Some(())
        }
        _ => None,
    });
    println!(
        "done: session {session}, echo {:?}, heartbeat rtt {:?}",
        String::from_utf8_lossy(&echo.unwrap_or_default()),
        rtt.unwrap_or_default()
    );
}
