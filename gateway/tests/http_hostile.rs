//! Hostile HTTP clients against the gateway's HTTP side on 127.0.0.1: slow or silent clients
//! are cut off, a connection flood is capped, an oversized body is refused
//!
//! Raw TCP clients; every server binds 127.0.0.1 with an OS-chosen port; every wait is bounded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use longport_gateway::http::{bind_loopback, FixedQuota, HttpConfig, HttpGateway};
use longport_gateway::script::Script;
use longport_gateway::token::TokenStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const SCRIPT: &str = include_str!("../scripts/trading-day.jsonl");

async fn start(config: HttpConfig) -> std::net::SocketAddr {
    let script = Script::parse(SCRIPT).unwrap();
    let gw = HttpGateway::with_config(
        script.accounts,
        Arc::new(TokenStore::default()),
        Arc::new(FixedQuota::default()),
        config,
    );
    let listener = bind_loopback(0).await.expect("cannot bind 127.0.0.1:0");
    let addr = listener.local_addr().unwrap();
    tokio::spawn(gw.serve(listener));
    addr
}

/// Read until the server closes; returns what it sent and how long it took
async fn until_closed(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, Duration) {
    let t0 = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match timeout(limit.saturating_sub(t0.elapsed()), s.read(&mut buf)).await {
            Err(_) => panic!(
                "the server kept the connection open for {limit:?} (got {:?})",
                String::from_utf8_lossy(&got)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return (got, t0.elapsed()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

fn quick() -> HttpConfig {
    HttpConfig::default().header_read_timeout(Duration::from_millis(300))
}

#[tokio::test]
async fn a_client_that_stalls_in_its_headers_is_cut_off() {
    let addr = start(quick()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /v1/socket/token HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Api-Key: demo")
        .await
        .unwrap();
    let (_, took) = until_closed(&mut s, Duration::from_secs(3)).await;
    assert!(took >= Duration::from_millis(250), "closed after {took:?}");
}

#[tokio::test]
async fn a_silent_connection_is_cut_off() {
    let addr = start(quick()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    until_closed(&mut s, Duration::from_secs(3)).await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_cut_off() {
    let addr = start(quick()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let (got, _) = until_closed(&mut s, Duration::from_secs(3)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 404"), "{text}");
    assert!(text.contains("\"code\":404"), "{text}");
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once() {
    let config = HttpConfig::default()
        .max_connections(2)
        .header_read_timeout(Duration::from_secs(30));
    let addr = start(config).await;
    let a = TcpStream::connect(addr).await.unwrap();
    let _b = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    let (_, took) = until_closed(&mut c, Duration::from_secs(2)).await;
    assert!(took < Duration::from_secs(1), "{took:?}");

    // a slot frees when a connection ends
    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut d = TcpStream::connect(addr).await.unwrap();
    d.write_all(b"GET /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (got, _) = until_closed(&mut d, Duration::from_secs(3)).await;
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 404"));
}

#[tokio::test]
async fn an_oversized_body_is_refused() {
    let addr = start(HttpConfig::default().max_body(1024)).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let body = vec![b'x'; 4096];
    let head = format!(
        "POST /v1/socket/token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let _ = s.write_all(&body).await;
    let (got, _) = until_closed(&mut s, Duration::from_secs(3)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("\"code\":413"), "{text}");
}
