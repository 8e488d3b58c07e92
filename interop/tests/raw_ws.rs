//! The harness server seen through a plain tokio-tungstenite client: pings, upgrade refusals,
//! the pre-auth gate
//!
//! Everything runs on 127.0.0.1 with an OS-chosen port; every await is bounded.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt as _, StreamExt as _};
use longport_proto::control::{Close as PbClose, Heartbeat as PbHeartbeat};
use prost::Message as _;
use tether_interop::{start, Config, Running};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const TOKEN: &str = "abc";
const STEP: Duration = Duration::from_secs(10);
/// The Auth request vector: rid 1, timeout 5000, token "abc"
const AUTH_ABC: [u8; 16] = [
    0x01, 0x02, 0x00, 0x00, 0x00, 0x01, 0x13, 0x88, 0x00, 0x00, 0x05, 0x0a, 0x03, b'a', b'b', b'c',
];

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn server(ping_interval: Duration) -> Running {
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), TOKEN);
    config.ping_interval = ping_interval;
    config.verbose = true;
    timeout(STEP, start(config))
        .await
        .expect("server start timed out")
        .expect("bind 127.0.0.1:0")
}

async fn open(srv: &Running, query: &str) -> Result<Ws, tungstenite::Error> {
    let url = format!("ws://{}/v2{query}", srv.local_addr());
    timeout(STEP, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect timed out")
        .map(|(ws, _)| ws)
}

async fn next(ws: &mut Ws) -> Message {
    timeout(STEP, ws.next())
        .await
        .expect("no frame within 10 s")
        .expect("stream ended")
        .expect("read error")
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sends_ws_pings_at_the_configured_interval() {
    let srv = server(Duration::from_secs(1)).await;
    let mut ws = open(&srv, "?version=1&codec=1&platform=9")
        .await
        .expect("upgrade");
    ws.send(Message::binary(AUTH_ABC.to_vec()))
        .await
        .expect("send auth");

    let started = Instant::now();
    let mut auth_response = None;
    let mut pings = Vec::new();
    while pings.len() < 3 {
        match next(&mut ws).await {
            Message::Binary(b) => {
                assert!(auth_response.is_none(), "one binary message only: {b:?}");
                auth_response = Some(b);
            }
            Message::Ping(payload) => pings.push((started.elapsed(), payload)),
            other => panic!("unexpected frame {other:?}"),
        }
    }
    let elapsed = started.elapsed();
    // Pings at ~1 s, ~2 s, ~3 s after the connection started.
    assert!(elapsed >= Duration::from_millis(2500), "{elapsed:?}");
    assert!(elapsed <= Duration::from_millis(4500), "{elapsed:?}");
    for pair in pings.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap >= Duration::from_millis(700) && gap <= Duration::from_millis(1500),
            "ping gap {gap:?}"
        );
    }
    // The payload is a Heartbeat{timestamp = wall ms}, readable with the official types.
    for (_, payload) in &pings {
        let hb = PbHeartbeat::decode(&payload[..]).expect("ping payload is a Heartbeat");
        assert!(
            (hb.timestamp - unix_ms()).abs() < 10_000,
            "timestamp {}",
            hb.timestamp
        );
    }
    // Status-0 auth response to request id 1.
    let resp = auth_response.expect("auth response");
    assert_eq!(&resp[..6], [0x02, 0x02, 0, 0, 0, 1]);
    assert_eq!(resp[6], 0, "status");

    let stats = srv.stats().await.expect("stats");
    assert!(stats.ws_pings_sent >= 3, "{stats:?}");
    // tungstenite answered every ping automatically (the last Pong is queued until the next
    // read or flush).
    timeout(STEP, ws.flush())
        .await
        .expect("flush timed out")
        .expect("flush");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stats = srv.stats().await.expect("stats");
    assert!(stats.ws_pongs_received >= 3, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_pings_are_answered_with_one_pong() {
    let srv = server(Duration::from_secs(20)).await;
    let mut ws = open(&srv, "?platform=9&codec=1&version=1")
        .await
        .expect("upgrade (Go order)");
    ws.send(Message::Ping(b"hello".to_vec().into()))
        .await
        .expect("send ping");
    ws.send(Message::binary(AUTH_ABC.to_vec()))
        .await
        .expect("send auth");
    let mut pongs = 0;
    let mut got_response = false;
    // The auth response follows the pong; after it, nothing more arrives for a while.
    while !got_response {
        match next(&mut ws).await {
            Message::Pong(p) => {
                assert_eq!(&p[..], b"hello");
                pongs += 1;
            }
            Message::Binary(b) => {
                assert_eq!(b[6], 0, "status 0");
                got_response = true;
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }
    if let Ok(Some(Ok(m))) = timeout(Duration::from_millis(300), ws.next()).await {
        panic!("unexpected extra frame {m:?}");
    }
    assert_eq!(
        pongs, 1,
        "the machine's own Pong is dropped: tungstenite already sent one"
    );
    let stats = srv.stats().await.expect("stats");
    assert_eq!(stats.ws_pings_received, 1, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_upgrade_queries_get_http_400() {
    let srv = server(Duration::from_secs(20)).await;
    for query in [
        "",
        "?version=2&codec=1&platform=9",
        "?version=1&codec=1",
        "?version=1&version=1&codec=1&platform=9",
        "?version=1&codec=x&platform=9",
    ] {
        match open(&srv, query).await {
            Err(tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 400, "query {query:?}");
                let body = resp.body().as_deref().unwrap_or_default();
                let body = String::from_utf8_lossy(body);
                assert!(body.starts_with("bad LongPort query"), "{body:?}");
            }
            Err(e) => panic!("query {query:?}: expected HTTP 400, got {e}"),
            Ok(_) => panic!("query {query:?}: upgrade should have been refused"),
        }
    }
    assert_eq!(srv.upgrades().len(), 5);
    // The machine never saw those connections.
    let stats = srv.stats().await.expect("stats");
    assert_eq!(stats.connections_accepted, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn business_request_before_auth_is_refused_and_closed() {
    let srv = server(Duration::from_secs(20)).await;
    let mut ws = open(&srv, "?version=1&codec=1&platform=9")
        .await
        .expect("upgrade");
    // cmd 4, rid 9, timeout 0, body 01 02
    ws.send(Message::binary(vec![1, 4, 0, 0, 0, 9, 0, 0, 0, 0, 2, 1, 2]))
        .await
        .expect("send");
    match next(&mut ws).await {
        Message::Binary(b) => {
            assert_eq!(
                &b[..7],
                [0x02, 4, 0, 0, 0, 9, 5],
                "status-5 response to rid 9"
            )
        }
        other => panic!("expected the status-5 response, got {other:?}"),
    }
    match next(&mut ws).await {
        Message::Binary(b) => {
            assert_eq!(&b[..2], [0x03, 0x00], "Close push");
            let close = PbClose::decode(&b[5..]).expect("Close body");
            assert_eq!(close.code, 4, "AuthError");
        }
        other => panic!("expected the Close push, got {other:?}"),
    }
    match next(&mut ws).await {
        Message::Close(Some(f)) => assert_eq!(u16::from(f.code), 1008),
        other => panic!("expected a Close frame, got {other:?}"),
    }
    // The server then ends the connection (after our automatic close reply).
    let end = timeout(STEP, ws.next()).await.expect("socket not closed");
    assert!(matches!(end, None | Some(Err(_))), "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connection_is_closed_at_the_auth_timeout() {
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), TOKEN);
    config.auth_timeout = Duration::from_millis(600);
    config.verbose = true;
    let srv = timeout(STEP, start(config))
        .await
        .expect("start timed out")
        .expect("bind");
    let started = Instant::now();
    let mut ws = open(&srv, "?version=1&codec=1&platform=9")
        .await
        .expect("upgrade");
    match next(&mut ws).await {
        Message::Binary(b) => {
            let close = PbClose::decode(&b[5..]).expect("Close body");
            assert_eq!((b[0], b[1], close.code), (0x03, 0x00, 4));
            assert_eq!(close.reason, "authentication timeout");
        }
        other => panic!("expected the Close push, got {other:?}"),
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert!(matches!(next(&mut ws).await, Message::Close(Some(_))));
    let stats = srv.stats().await.expect("stats");
    assert_eq!(stats.auth_timeouts, 1, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_never_answers_pings_hits_the_heartbeat_timeout() {
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), TOKEN);
    config.ping_interval = Duration::from_secs(1);
    config.heartbeat_timeout = Duration::from_millis(1500);
    config.verbose = true;
    let srv = timeout(STEP, start(config))
        .await
        .expect("start timed out")
        .expect("bind");
    let mut ws = open(&srv, "?version=1&codec=1&platform=9")
        .await
        .expect("upgrade");
    ws.send(Message::binary(AUTH_ABC.to_vec()))
        .await
        .expect("send auth");
    match next(&mut ws).await {
        Message::Binary(b) => assert_eq!(b[6], 0, "auth accepted"),
        other => panic!("expected the auth response, got {other:?}"),
    }
    // Do not read (so tungstenite sends no Pongs) until the server has given up.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut pings = 0;
    let close_push = loop {
        match next(&mut ws).await {
            Message::Ping(_) => pings += 1,
            Message::Binary(b) => break b,
            other => panic!("expected Pings then the Close push, got {other:?}"),
        }
    };
    assert!(pings >= 1, "a ping went unanswered first");
    assert_eq!(&close_push[..2], [0x03, 0x00], "Close push");
    let close = PbClose::decode(&close_push[5..]).expect("Close body");
    assert_eq!(
        (close.code, close.reason.as_str()),
        (0, "heartbeat timeout")
    );
    match next(&mut ws).await {
        Message::Close(Some(f)) => assert_eq!(u16::from(f.code), 1000),
        other => panic!("expected a Close frame, got {other:?}"),
    }
    let stats = srv.stats().await.expect("stats");
    assert_eq!(stats.heartbeat_timeouts, 1, "{stats:?}");
}
