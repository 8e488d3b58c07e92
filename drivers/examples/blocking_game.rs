//! Game client scenario on the blocking driver: connect, stay 5 s, close with a reason
//!
//! `cargo run --example blocking_game -- 127.0.0.1:8303`
use std::time::Duration;
use tether_net::game::{Client, ClientConfig, ClientEvent};
use tether_net_drivers::blocking::UdpDriver;

fn main() -> std::io::Result<()> {
    let server = std::env::args().nth(1).expect("ADDR");
    let mut d = UdpDriver::connect(Client::new(ClientConfig::new()), server)?;
    d.try_command(|c, now| c.connect(now))?;
    if let Some(ClientEvent::Connected { .. }) = d.next_event(Duration::from_secs(10))? {
        println!("connected");
        // stay 5 s (an event here is the server closing us)
        if let Some(e) = d.next_event(Duration::from_secs(5))? {
            println!("{e:?}");
            return Ok(());
        }
        d.try_command(|c, now| c.close(now, "bye"))?;
    }
    println!("{:?}", d.next_event(Duration::from_secs(1))?);
    Ok(())
}
