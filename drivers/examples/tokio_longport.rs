//! LongPort client scenario on the tokio driver: auth, one request, reconnect after the
//! transport drops, close
//!
//! `cargo run --example tokio_longport --features tokio -- ws://127.0.0.1:8080/v2 TOKEN`
//! (`wss://` works the same; `tcp://` with `ClientConfig::tcp()`)
use tether_net::longport::{ClientConfig, ClientEvent, LoginKind};
use tether_net_drivers::tokio::{ClientItem, ClientOptions, LongPortClient};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (url, token) = (args.next().expect("URL"), args.next().expect("TOKEN"));
    let options = ClientOptions::default();
    let (client, mut events) =
        LongPortClient::connect(&url, ClientConfig::websocket(), &token, options).await?;
    let response = client.request(4, b"hello".to_vec()).await?;
    println!("response: {}", String::from_utf8_lossy(&response.body));
    // when the transport drops, the driver reconnects with the session by itself
    let reconnected = |i: &ClientItem| {
        matches!(
            i,
            ClientItem::Event(ClientEvent::Connected {
                via: LoginKind::Reconnect,
                ..
            })
        )
    };
    events
        .wait_for(reconnected)
        .await
        .ok_or("closed before reconnecting")?;
    println!("reconnected");
    client.close("bye").await?;
    println!("closed");
    Ok(())
}
