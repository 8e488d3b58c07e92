//! LongPort client scenario on the blocking driver: auth, one request, reconnect after the
//! transport drops, close
//!
//! `cargo run --example blocking_longport -- 127.0.0.1:7000 TOKEN`
use std::time::Duration;
use tether_net::longport::{Client, ClientApp, ClientConfig, ClientEvent, Credentials, LoginKind};
use tether_net_drivers::blocking::{Input, TcpClient};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let server = args.next().unwrap_or_else(|| "127.0.0.1:7000".into());
    let token = args.next().unwrap_or_else(|| "demo-token".into());
    let mut d = TcpClient::new(Client::new(ClientConfig::tcp()), server)?;
    d.command(|c, now| c.connect(now, Credentials::new(&token)))
        .map_err(std::io::Error::other)?;
    let wait = Duration::from_secs(60);
    loop {
        // the driver dials, logs in, and reconnects with the session when the transport drops
        let step = d.run(wait, |_, _, input| match input {
            Input::Event(ClientEvent::Connected { via, .. }) => Some(Some(via)),
            Input::Event(ClientEvent::Closed { .. }) => Some(None),
            Input::App(_, ClientApp::Response { body, .. }) => {
                println!("response: {}", String::from_utf8_lossy(body));
                None
            }
            _ => None,
        })?;
        match step {
            Some(Some(LoginKind::Auth)) => {
                d.request(4, Duration::from_secs(5), b"hello")
                    .map_err(std::io::Error::other)?;
            }
            Some(Some(_)) => println!("reconnected"),
            _ => return Err(std::io::Error::other("closed")),
        }
        if d.machine().stats().reconnects > 0 {
            break;
        }
    }
    d.command(|c, now| c.close(now, "bye"))
        .map_err(std::io::Error::other)?;
    d.run(Duration::from_secs(1), |_, _, _| None::<()>)?;
    println!("closed");
    Ok(())
}
