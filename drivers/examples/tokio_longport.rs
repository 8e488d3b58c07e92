//! LongPort client scenario on the tokio driver: auth, one request, reconnect after the
//! transport drops, close
//!
//! `cargo run --example tokio_longport --features tokio -- ws://127.0.0.1:8080/v2 TOKEN`
//! (`tcp://host:port`, `ws://...` or `wss://...`)
use tether_net::longport::{ClientConfig, ClientEvent, LoginKind};
use tether_net_drivers::tokio::{ClientItem, ClientOptions, LongPortClient};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "tcp://127.0.0.1:7000".into());
    let token = args.next().unwrap_or_else(|| "demo-token".into());
    let config = if url.starts_with("tcp:") {
        ClientConfig::tcp()
    } else {
        ClientConfig::websocket()
    };
    let (client, mut events) =
        LongPortClient::connect(&url, config, &token, ClientOptions::default()).await?;
    let response = client.request(4, b"hello".to_vec()).await?;
    println!("response: {}", String::from_utf8_lossy(&response.body));
    // when the transport drops, the driver reconnects with the session by itself
    while let Some(item) = events.next().await {
        if let ClientItem::Event(ClientEvent::Connected {
            via: LoginKind::Reconnect,
            ..
        }) = item
        {
            println!("reconnected");
            break;
        }
    }
    client.close("bye").await?;
    println!("closed");
    Ok(())
}
