//! Game client scenario on the blocking driver: connect, stay 5 s, close with a reason
//!
//! `cargo run --example blocking_game -- 127.0.0.1:8303`
use std::time::Duration;
use tether_net::game::{Client, ClientConfig, ClientEvent};
use tether_net_drivers::blocking::{Input, UdpDriver};

fn main() -> std::io::Result<()> {
    let server = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8303".into());
    let mut d = UdpDriver::connect(Client::new(ClientConfig::new()), server)?;
    d.command(|c, now| c.connect(now))
        .map_err(std::io::Error::other)?;
    let mut stay = Duration::from_secs(10); // at most 10 s to connect, then 5 s online
    loop {
        let event = d.run(stay, |_, _, input| match input {
            Input::Event(e) => Some(e),
            Input::App(..) => None,
        })?;
        match event {
            Some(ClientEvent::Connected { .. }) => {
                println!("connected");
                stay = Duration::from_secs(5);
            }
            Some(ClientEvent::Closed { cause }) => {
                println!("closed: {cause:?}");
                return Ok(());
            }
            None => d
                .command(|c, now| c.close(now, "bye"))
                .map_err(std::io::Error::other)?,
            Some(_) => {}
        }
    }
}
