//! LongPort client scenario on the blocking driver: auth, one request, reconnect after the
//! transport drops, close
//!
//! `cargo run --example blocking_longport -- 127.0.0.1:7000 TOKEN`
use std::time::Duration;
use tether_net::longport::{Client, ClientConfig, ClientEvent, Credentials, LoginKind};
use tether_net_drivers::blocking::TcpClient;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (server, token) = (args.next().expect("ADDR"), args.next().expect("TOKEN"));
    let mut d = TcpClient::new(Client::new(ClientConfig::tcp()), server)?;
    d.try_command(|c, now| c.connect(now, Credentials::new(&token)))?;
    let connected = |e: Option<ClientEvent>, how: LoginKind| matches!(e, Some(ClientEvent::Connected { via, .. }) if via == how);
    while !connected(d.next_event(Duration::from_secs(10))?, LoginKind::Auth) {}
    let body = d.call(4, Duration::from_secs(5), b"hello")?;
    println!("response: {}", String::from_utf8_lossy(&body));
    // when the transport drops, the driver reconnects with the session by itself
    while !connected(d.next_event(Duration::from_secs(60))?, LoginKind::Reconnect) {}
    println!("reconnected");
    d.try_command(|c, now| c.close(now, "bye"))?;
    println!("{:?}", d.next_event(Duration::from_secs(1))?);
    Ok(())
}
