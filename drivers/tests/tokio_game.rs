//! The tokio game client against the tokio game server on 127.0.0.1: connect, the server closes
//! the peer with a reason, a second client, the server shuts down
#![cfg(feature = "tokio")]

use std::time::Duration;

use tether_net::game::{
    ClientConfig, ClientEvent, CloseCause, ServerConfig, ServerEvent, TokenSecret,
};
use tether_net_drivers::tokio::{GameClient, GameClientItem, GameServer, GameServerItem};
use tokio::time::timeout;

const STEP: Duration = Duration::from_secs(5);

#[tokio::test]
async fn client_and_server_over_loopback_udp() {
    // a constant secret is for this test only; a real server draws it from a random source
    let (server, mut sevents) =
        GameServer::bind("127.0.0.1:0", ServerConfig::new(TokenSecret([9; 16])))
            .await
            .unwrap();
    let (client, mut cevents) = timeout(
        STEP,
        GameClient::connect(server.local_addr(), ClientConfig::new()),
    )
    .await
    .unwrap()
    .unwrap();
    let peer = match timeout(STEP, sevents.next()).await.unwrap() {
        Some(GameServerItem::Event(ServerEvent::Connected {
            peer,
            token: Some(_),
        })) => peer,
        other => panic!("{other:?}"),
    };
    assert_eq!(peer, client.local_addr());
    server.close(peer, "kicked by the test").await.unwrap();
    assert!(matches!(
        cevents.next().await,
        Some(GameClientItem::Event(ClientEvent::Connected { .. }))
    ));
    assert_eq!(
        timeout(STEP, cevents.next()).await.unwrap(),
        Some(GameClientItem::Close {
            reason: "kicked by the test".into()
        })
    );
    assert_eq!(
        cevents.next().await,
        Some(GameClientItem::Event(ClientEvent::Closed {
            cause: CloseCause::Peer
        }))
    );
    assert_eq!(
        timeout(STEP, sevents.next()).await.unwrap(),
        Some(GameServerItem::Event(ServerEvent::Closed {
            peer,
            cause: CloseCause::Local
        }))
    );

    let (second, mut cevents) = GameClient::connect(server.local_addr(), ClientConfig::new())
        .await
        .unwrap();
    assert!(matches!(
        timeout(STEP, sevents.next()).await.unwrap(),
        Some(GameServerItem::Event(ServerEvent::Connected { .. }))
    ));
    timeout(STEP, server.shutdown("server shutdown"))
        .await
        .unwrap()
        .unwrap();
    let mut reason = None;
    while let Some(item) = timeout(STEP, cevents.next()).await.unwrap() {
        if let GameClientItem::Close { reason: r } = item {
            reason = Some(r);
        }
    }
    assert_eq!(reason.as_deref(), Some("server shutdown"));
    assert_eq!(second.closed().await, None, "the client's task has ended");
    let mut last = None;
    while let Some(item) = timeout(STEP, sevents.next()).await.unwrap() {
        last = Some(item);
    }
    assert_eq!(
        last,
        Some(GameServerItem::Event(ServerEvent::ShutdownComplete))
    );
}
