//! The tokio game client driver against a real DDNet 16.4 server on 127.0.0.1: connect, stay
//! 5 s, close with a reason; the server's kick and shutdown seen with their reasons; the
//! `tokio_game` example doing its scenario
//!
//! `#[ignore]`d (they need Debian's `ddnet-server`); CI runs them with `--ignored` inside a
//! private network namespace. Each test starts its own server and stops it by PID.
#![cfg(feature = "tokio")]

#[path = "../../tests/support/ddnet.rs"]
mod ddnet;
#[path = "support/proc.rs"]
mod proc;

use std::time::Duration;

use ddnet::DdnetServer;
use tether_net::game::{ClientConfig, ClientEvent, CloseCause};
use tether_net_drivers::tokio::{GameClient, GameClientItem, GameEvents};
use tokio::time::timeout;

async fn server_close(events: &mut GameEvents) -> (String, CloseCause) {
    let mut reason = None;
    let cause = timeout(Duration::from_secs(5), async {
        while let Some(item) = events.next().await {
            match item {
                GameClientItem::Close { reason: r } => reason = Some(r),
                GameClientItem::Event(ClientEvent::Closed { cause }) => return cause,
                _ => {}
            }
        }
        panic!("the stream ended without Closed")
    })
    .await
    .expect("the server's CLOSE within 5 s");
    (reason.expect("a reason"), cause)
}

#[tokio::test]
#[ignore = "needs Debian's ddnet-server; run by .ci/run"]
async fn connect_stay_5_s_close_with_a_reason() {
    let server = DdnetServer::start("tokio-stay", "");
    let (client, mut events) = timeout(
        Duration::from_secs(5),
        GameClient::connect(server.addr(), ClientConfig::new()),
    )
    .await
    .expect("connected within 5 s")
    .expect("connected");
    assert!(matches!(
        events.next().await,
        Some(GameClientItem::Event(ClientEvent::Connected {
            token: Some(_)
        }))
    ));
    // nothing but keep-alives for 5 s
    assert!(
        timeout(Duration::from_secs(5), events.next())
            .await
            .is_err(),
        "no event while we stay"
    );
    client.close("drivers: tokio test done").await.unwrap();
    assert_eq!(
        events.next().await,
        Some(GameClientItem::Event(ClientEvent::Closed {
            cause: CloseCause::Local
        }))
    );
    assert_eq!(events.next().await, None, "Closed is the last item");
    // the cause, also once the driver task has ended
    assert_eq!(client.closed().await, Some(CloseCause::Local));
    drop(server);
}

#[tokio::test]
#[ignore = "needs Debian's ddnet-server; run by .ci/run"]
async fn kick_and_shutdown_arrive_with_their_reasons() {
    let mut server = DdnetServer::start("tokio-kick", "");
    let (_client, mut events) = GameClient::connect(server.addr(), ClientConfig::new())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for id in 0..4 {
        server.console(&format!("kick {id} drivers kick"));
    }
    assert_eq!(
        server_close(&mut events).await,
        ("Kicked (drivers kick)".to_string(), CloseCause::Peer)
    );

    let (client, mut events) = GameClient::connect(server.addr(), ClientConfig::new())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.interrupt();
    assert_eq!(
        server_close(&mut events).await,
        ("Server shutdown".to_string(), CloseCause::Peer)
    );
    assert_eq!(client.closed().await, Some(CloseCause::Peer));
    assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
#[ignore = "needs Debian's ddnet-server; run by .ci/run"]
fn the_tokio_game_example_runs_its_scenario() {
    let server = DdnetServer::start("tokio-example", "");
    let addr = server.addr().to_string();
    let mut p = proc::Proc::spawn("tokio_game", &[&addr]);
    p.expect_line("connected", Duration::from_secs(10));
    p.expect_line("closed", Duration::from_secs(10));
    assert_eq!(p.wait(Duration::from_secs(5)), Some(0));
    drop(server);
}
