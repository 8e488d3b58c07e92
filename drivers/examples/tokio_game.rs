//! Game client scenario on the tokio driver: connect, stay 5 s, close with a reason
//!
//! `cargo run --example tokio_game --features tokio -- 127.0.0.1:8303`
use std::time::Duration;
use tether_net::game::ClientConfig;
use tether_net_drivers::tokio::GameClient;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = std::env::args().nth(1).expect("ADDR");
    let (client, _events) = GameClient::connect(server, ClientConfig::new()).await?;
    println!("connected");
    tokio::time::sleep(Duration::from_secs(5)).await; // stay
    client.close("bye").await?; // fails with `Closed` if the server closed us meanwhile
    println!("closed");
    Ok(())
}
