//! Hostile clients against the `longport-gateway` binary on 127.0.0.1: idle sockets, a slow
//! reader, guessed sessions, oversized bodies before Auth; the gateway stays up and serves a
//! well-behaved client afterwards
//!
//! Raw sockets speak LongPort's TCP framing (`tether_net::longport::wire`) with
//! `longport-proto` bodies.

mod support;

use std::time::{Duration, Instant};

use longport::httpclient::{HttpClient, HttpClientConfig};
use longport_proto::control::ReconnectRequest;
use longport_proto::quote::{SubType, SubscribeRequest};
use prost::Message as _;
use support::{Gateway, ACCESS, KEY, SECRET};
use tether_net::longport::deframe::Handshake;
use tether_net::longport::wire::{Kind, Packet, RequestId};
use tether_net::longport::{ClientConfig, Status};
use tether_net_drivers::tokio::{ClientOptions, LongPortClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;

const STEP: Duration = Duration::from_secs(20);

async fn otp(g: &Gateway) -> String {
    let http =
        HttpClient::new(HttpClientConfig::from_apikey(KEY, SECRET, ACCESS).http_url(g.http_url()));
    timeout(STEP, http.get_otp()).await.unwrap().unwrap()
}

fn request(cmd: u8, id: u32, body: &[u8]) -> Vec<u8> {
    let p = Packet::request(cmd, RequestId(id), 10_000, body);
    let mut buf = vec![0; p.buffer_len()];
    let n = p.emit(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

/// A raw TCP connection to the quote socket with the handshake sent
async fn raw(g: &Gateway) -> TcpStream {
    let mut s = TcpStream::connect(g.quote_tcp).await.unwrap();
    s.write_all(&Handshake::OPENAPI.to_bytes()).await.unwrap();
    s
}

/// Read packets until `want` matches one (returned as cmd, kind, body) or the socket ends
/// (`None`)
async fn read_until(
    s: &mut TcpStream,
    mut want: impl FnMut(u8, &Kind) -> bool,
) -> Option<(u8, Kind, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Ok((p, used)) = Packet::parse(&buf, 1 << 24) {
            let found = want(p.header.cmd, &p.header.kind)
                .then(|| (p.header.cmd, p.header.kind, p.body.to_vec()));
            buf.drain(..used);
            if found.is_some() {
                return found;
            }
        }
        match timeout(STEP, s.read(&mut chunk))
            .await
            .expect("read timed out")
        {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Whether the peer closes the socket within `limit` (bytes before that are discarded)
async fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// A well-behaved client still gets served
async fn still_serves(g: &Gateway) {
    let token = otp(g).await;
    let (c, _e) = timeout(
        STEP,
        LongPortClient::connect(
            &format!("tcp://{}", g.quote_tcp),
            ClientConfig::tcp(),
            &token,
            ClientOptions::default(),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    let r = timeout(STEP, c.request(14, Vec::new()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status, Status::BadRequest);
}

/// A WebSocket to the gateway's quote endpoint, with the SDK's query parameters
async fn quote_ws(
    g: &Gateway,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let (ws, _) = timeout(
        STEP,
        tokio_tungstenite::connect_async(format!("{}?version=1&codec=1&platform=9", g.quote_url())),
    )
    .await
    .unwrap()
    .unwrap();
    ws
}

#[tokio::test]
async fn idle_sockets_are_closed() {
    let mut g = Gateway::start("", &["--auth-timeout", "1"]);
    // no WebSocket upgrade request at all
    let mut ws_idle = TcpStream::connect(g.quote).await.unwrap();
    // the TCP handshake, then nothing
    let mut tcp_idle = raw(&g).await;
    // not even the handshake
    let mut tcp_mute = TcpStream::connect(g.quote_tcp).await.unwrap();
    let t0 = Instant::now();
    assert!(closed_within(&mut tcp_idle, Duration::from_secs(10)).await);
    assert!(closed_within(&mut tcp_mute, Duration::from_secs(10)).await);
    assert!(closed_within(&mut ws_idle, Duration::from_secs(15)).await);
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "not before the auth timeout"
    );
    g.wait_for("closed: ", STEP);
    still_serves(&g).await;
}

#[tokio::test]
async fn guessed_sessions_are_refused() {
    let mut g = Gateway::start("", &[]);
    // a real session exists (someone is connected)
    still_serves(&g).await;
    for i in 0..20u32 {
        let mut s = raw(&g).await;
        let guess = format!("{:032x}", 0x5eed_0000_u128 + u128::from(i));
        let body = ReconnectRequest {
            session_id: guess,
            metadata: Default::default(),
        }
        .encode_to_vec();
        s.write_all(&request(3, 1, &body)).await.unwrap();
        let (cmd, kind, _) = read_until(&mut s, |_, k| matches!(k, Kind::Response { .. }))
            .await
            .expect("an answer to the Reconnect");
        assert_eq!(cmd, 3);
        match kind {
            Kind::Response { status, .. } => assert_ne!(status, Status::Success),
            other => panic!("{other:?}"),
        }
        assert!(closed_within(&mut s, Duration::from_secs(10)).await);
    }
    assert_eq!(g.count("reconnect ok"), 0);
    // business requests without Auth are refused too
    let mut s = raw(&g).await;
    s.write_all(&request(11, 1, b"")).await.unwrap();
    let (_, kind, _) = read_until(&mut s, |_, k| matches!(k, Kind::Response { .. }))
        .await
        .expect("an answer");
    assert!(matches!(kind, Kind::Response { status, .. } if status != Status::Success));
    still_serves(&g).await;
}

#[tokio::test]
async fn oversized_bodies_before_auth_close_the_connection_unread() {
    let g = Gateway::start("", &[]);
    // a header announcing 16 MiB - 1 (the 24-bit maximum) on cmd 2, then a trickle of body
    let mut s = raw(&g).await;
    let mut header = request(2, 1, b"");
    let n = header.len();
    header[n - 3..].copy_from_slice(&[0xff, 0xff, 0xff]);
    s.write_all(&header).await.unwrap();
    let _ = s.write_all(&[0u8; 64 * 1024]).await;
    assert!(closed_within(&mut s, Duration::from_secs(10)).await);

    // over WebSocket: one 2 MiB binary message before Auth
    use futures_util::SinkExt as _;
    use tokio_tungstenite::tungstenite::Message;
    let mut ws = quote_ws(&g).await;
    let mut big = request(2, 1, b"");
    big.resize(2 << 20, 0);
    let _ = ws.send(Message::Binary(big.into())).await;
    let ended = timeout(STEP, async {
        use futures_util::StreamExt as _;
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the oversized message ends the connection");
    still_serves(&g).await;
}

#[tokio::test]
async fn a_reader_that_stops_reading_is_dropped_and_others_are_served() {
    // 120 000 quote pushes at 1 s: about 10 MB for a subscriber that does not read
    let mut timeline = String::new();
    for i in 0..120_000u32 {
        timeline.push_str(&format!(
            "{{\"push_quote\": {{\"at\": \"1s\", \"symbol\": \"700.HK\", \"last_done\": \"{}.{}\"}}}}\n",
            300 + i % 100,
            i % 10
        ));
    }
    let mut g = Gateway::start(&timeline, &["--start-on-auth"]);
    let token = otp(&g).await;
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut s = sock.connect(g.quote_tcp).await.unwrap();
    s.write_all(&Handshake::OPENAPI.to_bytes()).await.unwrap();
    let auth = longport_proto::control::AuthRequest {
        token,
        metadata: Default::default(),
    }
    .encode_to_vec();
    s.write_all(&request(2, 1, &auth)).await.unwrap();
    read_until(&mut s, |cmd, k| {
        cmd == 2 && matches!(k, Kind::Response { .. })
    })
    .await
    .expect("auth answer");
    let sub = SubscribeRequest {
        symbol: vec!["700.HK".into()],
        sub_type: vec![SubType::Quote as i32],
        is_first_push: false,
    }
    .encode_to_vec();
    s.write_all(&request(6, 2, &sub)).await.unwrap();
    read_until(&mut s, |cmd, k| {
        cmd == 6 && matches!(k, Kind::Response { .. })
    })
    .await
    .expect("subscribe answer");
    // stop reading; the gateway's outbox for us stalls and the connection is dropped
    let line = g.next_matching("quote#1 closed", Duration::from_secs(90));
    let rss = support::rss_kib(g.pid());
    eprintln!("slow reader: {line}; gateway RSS {rss} KiB");
    assert!(rss < 200 * 1024, "gateway RSS {rss} KiB");
    still_serves(&g).await;
    drop(s);
}

#[tokio::test]
async fn websocket_pings_come_at_the_configured_cadence() {
    use futures_util::StreamExt as _;
    use tokio_tungstenite::tungstenite::Message;
    let g = Gateway::start("", &["--ping-interval", "1", "--auth-timeout", "30"]);
    // authenticated like the SDK (the machine pings authenticated connections)
    let token = otp(&g).await;
    let mut ws = quote_ws(&g).await;
    let auth = longport_proto::control::AuthRequest {
        token,
        metadata: Default::default(),
    }
    .encode_to_vec();
    use futures_util::SinkExt as _;
    ws.send(Message::Binary(request(2, 1, &auth).into()))
        .await
        .unwrap();
    let t0 = Instant::now();
    let mut pings = 0;
    while pings < 3 {
        match timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(Some(Ok(_))) => {}
            other => panic!("the socket ended or went silent: {other:?}"),
        }
    }
    let spent = t0.elapsed();
    assert!(spent >= Duration::from_millis(1500), "3 pings in {spent:?}");
    assert!(spent < Duration::from_secs(10), "3 pings in {spent:?}");
}
