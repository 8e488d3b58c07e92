//! The official Rust SDK client (`longport-wscli` 4.3.7, crates.io) against our server machine
//!
//! Every server listens on 127.0.0.1 with a port the OS picks. Every await is bounded by a tokio
//! timeout and fails loudly. Bodies the server pushes are decoded with the official generated
//! protobuf types (`longport-proto`), not with tether's own codec.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use longport_proto::control::Close as PbClose;
use longport_wscli::{
    CodecType, Platform, ProtocolVersion, WsClient, WsClientError, WsCloseReason, WsEvent,
    WsResponseErrorDetail,
};
use prost::Message as _;
use tether_interop::{start, Config, Running};
use tether_net::longport::control::CloseCode;
use tokio::sync::mpsc;
use tokio::time::timeout;

const TOKEN: &str = "otp-7f3a9c";
/// Bound on every single step (connect, request, event)
const STEP: Duration = Duration::from_secs(10);

async fn server_with(ping_interval: Duration) -> Running {
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), TOKEN);
    config.ping_interval = ping_interval;
    config.verbose = true;
    let running = timeout(STEP, start(config))
        .await
        .expect("server start timed out")
        .expect("server failed to bind 127.0.0.1:0");
    assert!(running.local_addr().ip().is_loopback());
    running
}

async fn server() -> Running {
    server_with(Duration::from_secs(20)).await
}

/// Open an official client on `ws://ADDR/v2` (the SDK's default path)
async fn connect(addr: SocketAddr) -> (WsClient, mpsc::UnboundedReceiver<WsEvent>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let client = timeout(
        STEP,
        WsClient::open(
            format!("ws://{addr}/v2"),
            ProtocolVersion::Version1,
            CodecType::Protobuf,
            Platform::OpenAPI,
            tx,
            Vec::new(),
        ),
    )
    .await
    .expect("WsClient::open timed out")
    .expect("WsClient::open failed");
    (client, rx)
}

async fn next_event(rx: &mut mpsc::UnboundedReceiver<WsEvent>, what: &str) -> WsEvent {
    timeout(STEP, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no event within {STEP:?} while waiting for {what}"))
        .unwrap_or_else(|| panic!("event channel closed while waiting for {what}"))
}

/// The SDK's `open` returns before its event loop runs; give it a moment to report anything
async fn assert_no_event(rx: &mut mpsc::UnboundedReceiver<WsEvent>, for_: Duration) {
    if let Ok(ev) = timeout(for_, rx.recv()).await {
        panic!("unexpected event: {ev:?}");
    }
}

/// Expect a cmd-0 push, decode it with the official types, then the WS close the SDK reports
async fn expect_close(
    rx: &mut mpsc::UnboundedReceiver<WsEvent>,
    code: CloseCode,
    reason: &str,
    ws_code: u16,
) {
    match next_event(rx, "the Close push").await {
        WsEvent::Push { command_code, body } => {
            assert_eq!(command_code, 0, "Close is cmd 0");
            let close = PbClose::decode(&*body).expect("official types decode the Close body");
            assert_eq!(close.code, i32::from(code), "Close.code");
            assert_eq!(close.reason, reason, "Close.reason");
        }
        other => panic!("expected Push{{command_code: 0}}, got {other:?}"),
    }
    match next_event(rx, "the WebSocket close").await {
        WsEvent::Error(WsClientError::ConnectionClosed {
            reason: Some(WsCloseReason { code, message }),
        }) => {
            assert_eq!(u16::from(code), ws_code, "WebSocket close code");
            assert_eq!(message, reason, "WebSocket close reason");
        }
        other => panic!("expected Error(ConnectionClosed{{Some(..)}}), got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_with_the_right_token_grants_a_session() {
    let srv = server().await;
    let (client, mut events) = connect(srv.local_addr()).await;
    let session = timeout(STEP, client.request_auth(TOKEN, HashMap::new()))
        .await
        .expect("request_auth timed out")
        .expect("request_auth failed");
    assert!(
        session.session_id.len() == 32
            && session
                .session_id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{}",
        session.session_id
    );
    // Auth path: deadline = now + (expires - now_ms); we grant one hour.
    let now = SystemTime::now();
    assert!(
        session.deadline > now + Duration::from_secs(3500),
        "{session:?}"
    );
    assert!(
        session.deadline < now + Duration::from_secs(3700),
        "{session:?}"
    );
    assert!(!session.is_expired());

    // What the SDK put on the wire: its query, exactly, in this order.
    assert_eq!(srv.upgrades(), ["/v2?version=1&codec=1&platform=9"]);
    assert_no_event(&mut events, Duration::from_millis(200)).await;
    let stats = srv.stats().await.expect("stats");
    assert_eq!(stats.auths_accepted, 1);
    assert_eq!(
        stats.packets_received, 1,
        "only the auth request: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_is_status_5_then_close_auth_error() {
    let srv = server().await;
    let (client, mut events) = connect(srv.local_addr()).await;
    let err = timeout(STEP, client.request_auth("not-the-token", HashMap::new()))
        .await
        .expect("request_auth timed out")
        .expect_err("a wrong token must fail");
    match err {
        WsClientError::ResponseError {
            status,
            detail: Some(WsResponseErrorDetail { code, msg }),
        } => {
            assert_eq!(status, 5, "Unauthenticated");
            assert_eq!(code, 401);
            assert_eq!(msg, "invalid token");
        }
        other => panic!("expected ResponseError with status 5 and a detail, got {other:?}"),
    }
    // Then the machine pushes Close{AuthError} and closes the WebSocket with 1008 (policy).
    expect_close(&mut events, CloseCode::AuthError, "invalid token", 1008).await;
    let stats = srv.stats().await.expect("stats");
    assert_eq!((stats.auths_accepted, stats.auths_rejected), (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_on_a_new_connection_gets_a_new_session() {
    let srv = server().await;
    let (first, mut first_events) = connect(srv.local_addr()).await;
    let s1 = timeout(STEP, first.request_auth(TOKEN, HashMap::new()))
        .await
        .expect("request_auth timed out")
        .expect("request_auth failed");

    let (second, mut second_events) = connect(srv.local_addr()).await;
    let s2 = timeout(
        STEP,
        second.request_reconnect(s1.session_id.clone(), HashMap::new()),
    )
    .await
    .expect("request_reconnect timed out")
    .expect("request_reconnect failed");
    assert!(!s2.session_id.is_empty());
    assert_ne!(
        s2.session_id, s1.session_id,
        "reconnect must mint a new session"
    );
    // Spec 6.7: the SDK reads `expires` as a *relative* duration on the reconnect path, so our
    // absolute Unix-ms expiry lands decades in the future. Observed, not a server bug.
    assert!(
        s2.deadline > SystemTime::now() + Duration::from_secs(10 * 365 * 24 * 3600),
        "{s2:?}"
    );

    // The first connection still held the session: it is closed as the duplicate.
    expect_close(
        &mut first_events,
        CloseCode::ConnectDuplicate,
        "connect duplicate",
        1008,
    )
    .await;

    // The new session works on the new connection...
    let echo = timeout(STEP, second.request_raw(4, Some(STEP), b"after".to_vec()))
        .await
        .expect("request timed out")
        .expect("request failed");
    assert_eq!(echo, b"after");
    assert_no_event(&mut second_events, Duration::from_millis(200)).await;

    // ...and the retired id is refused on a third connection: status 5, Close{SessExpired}.
    let (third, mut third_events) = connect(srv.local_addr()).await;
    let err = timeout(
        STEP,
        third.request_reconnect(s1.session_id.clone(), HashMap::new()),
    )
    .await
    .expect("request_reconnect timed out")
    .expect_err("a retired session must be refused");
    assert!(
        matches!(err, WsClientError::ResponseError { status: 5, .. }),
        "{err:?}"
    );
    expect_close(
        &mut third_events,
        CloseCode::SessExpired,
        "session expired",
        1008,
    )
    .await;
    let stats = srv.stats().await.expect("stats");
    assert_eq!(stats.reconnects_accepted, 1);
    assert_eq!(stats.reconnects_rejected, 1);
    assert_eq!(stats.duplicates_closed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_client_frees_its_slot_and_its_session_resumes_elsewhere() {
    let srv = server().await;
    let (first, _first_events) = connect(srv.local_addr()).await;
    let s1 = timeout(STEP, first.request_auth(TOKEN, HashMap::new()))
        .await
        .expect("request_auth timed out")
        .expect("request_auth failed");
    let snap = srv.snapshot().await.expect("snapshot");
    assert_eq!((snap.connections, snap.sessions), (1, 1), "{snap:?}");

    // Dropping the SDK client ends its task, which drops the socket without a Close frame.
    drop(first);
    let freed = timeout(STEP, async {
        loop {
            let snap = srv.snapshot().await.expect("snapshot");
            if snap.connections == 0 {
                return snap;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the machine never noticed the dropped connection");
    assert_eq!(freed.sessions, 1, "the session outlives its transport");

    let (second, mut second_events) = connect(srv.local_addr()).await;
    let s2 = timeout(
        STEP,
        second.request_reconnect(s1.session_id.clone(), HashMap::new()),
    )
    .await
    .expect("request_reconnect timed out")
    .expect("request_reconnect failed");
    assert_ne!(s2.session_id, s1.session_id);
    assert_no_event(&mut second_events, Duration::from_millis(200)).await;
    let snap = srv.snapshot().await.expect("snapshot");
    assert_eq!(snap.stats.duplicates_closed, 0, "{snap:?}");
    assert_eq!(
        (snap.connections, snap.sessions),
        (1, 1),
        "old id retired: {snap:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn business_requests_are_echoed_byte_for_byte() {
    let srv = server().await;
    let (client, mut events) = connect(srv.local_addr()).await;
    timeout(STEP, client.request_auth(TOKEN, HashMap::new()))
        .await
        .expect("request_auth timed out")
        .expect("request_auth failed");

    let small: Vec<u8> = vec![0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff, b'q'];
    let echo = timeout(STEP, client.request_raw(4, Some(STEP), small.clone()))
        .await
        .expect("request timed out")
        .expect("request failed");
    assert_eq!(echo, small);

    let empty = timeout(STEP, client.request_raw(6, None, Vec::new()))
        .await
        .expect("request timed out")
        .expect("request failed");
    assert!(empty.is_empty());

    // Larger than the harness's 64 KiB output buffer, so it must grow; still one WS message.
    let big: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(31) >> 3) as u8)
        .collect();
    let echo = timeout(STEP, client.request_raw(11, Some(STEP), big.clone()))
        .await
        .expect("request timed out")
        .expect("request failed");
    assert_eq!(echo.len(), big.len());
    assert!(echo == big, "large body differs");

    // Concurrent requests: each response finds its own request id.
    let bodies: Vec<Vec<u8>> = (0u8..8).map(|i| vec![i; usize::from(i) * 3 + 1]).collect();
    let replies = timeout(
        STEP,
        futures_util::future::join_all(
            bodies
                .iter()
                .map(|b| client.request_raw(20, Some(STEP), b.clone())),
        ),
    )
    .await
    .expect("concurrent requests timed out");
    for (b, r) in bodies.iter().zip(replies) {
        assert_eq!(&r.expect("request failed"), b);
    }
    assert_no_event(&mut events, Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_close_reaches_the_client_as_push_then_connection_closed() {
    let srv = server().await;
    let (client, mut events) = connect(srv.local_addr()).await;
    timeout(STEP, client.request_auth(TOKEN, HashMap::new()))
        .await
        .expect("request_auth timed out")
        .expect("request_auth failed");

    let n = timeout(
        STEP,
        srv.close_all(CloseCode::ServerShutdown, "maintenance"),
    )
    .await
    .expect("close_all timed out");
    assert_eq!(n, 1);
    // Observed: the SDK hands the cmd-0 push up as an ordinary Push, then reports the RFC 6455
    // close (1001 going away for ServerShutdown) as Error(ConnectionClosed{Some{code, reason}}).
    expect_close(&mut events, CloseCode::ServerShutdown, "maintenance", 1001).await;

    // The SDK's connection task has ended; a request now fails instead of hanging.
    let err = timeout(STEP, client.request_raw(4, Some(STEP), b"x".to_vec()))
        .await
        .expect("request after close timed out")
        .expect_err("request after close must fail");
    assert!(matches!(err, WsClientError::ClientClosed), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_answers_server_pings_and_sends_no_heartbeats() {
    // 1 s is the machine's minimum ping interval.
    let srv = server_with(Duration::from_secs(1)).await;
    let (client, mut events) = connect(srv.local_addr()).await;
    timeout(STEP, client.request_auth(TOKEN, HashMap::new()))
        .await
        .expect("request_auth timed out")
        .expect("request_auth failed");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let echo = timeout(
        STEP,
        client.request_raw(4, Some(STEP), b"still up".to_vec()),
    )
    .await
    .expect("request timed out")
    .expect("request failed: the pings broke the connection");
    assert_eq!(echo, b"still up");
    assert_no_event(&mut events, Duration::from_millis(200)).await;

    let stats = srv.stats().await.expect("stats");
    eprintln!("stats after 3.5 s with 1 s pings: {stats:?}");
    assert!(stats.ws_pings_sent >= 3, "{stats:?}");
    // Observed: exactly one Pong per Ping. The SDK sends its own Pong, and tungstenite 0.27 lets
    // a user Pong replace the automatic one it had queued, so no duplicates reach the server.
    // (Allow the Pong of the newest Ping to be still in flight.)
    assert!(stats.ws_pongs_received <= stats.ws_pings_sent, "{stats:?}");
    assert!(
        stats.ws_pongs_received + 1 >= stats.ws_pings_sent,
        "{stats:?}"
    );
    // The SDK sends no heartbeat of its own: no WS Pings, no cmd-1 packets.
    assert_eq!(stats.ws_pings_received, 0, "{stats:?}");
    assert_eq!(stats.heartbeats_echoed, 0, "{stats:?}");
    assert_eq!(stats.packets_received, 2, "auth + one request: {stats:?}");
}

/// Kills the server process when the test ends, however it ends
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_prints_its_address_and_serves_the_sdk() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_longport-ws-server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--token",
            TOKEN,
            "--ping-interval-ms",
            "1000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn longport-ws-server");
    let stdout = child.stdout.take().expect("stdout piped");
    let guard = ChildGuard(child);
    let line = timeout(
        STEP,
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        }),
    )
    .await
    .expect("no `listening on` line within 10 s")
    .expect("reader task panicked")
    .expect("reading stdout failed");
    let addr: SocketAddr = line
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .expect("the printed address parses");
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");

    let (client, _events) = connect(addr).await;
    let session = timeout(STEP, client.request_auth(TOKEN, HashMap::new()))
        .await
        .expect("request_auth timed out")
        .expect("request_auth failed");
    assert!(!session.session_id.is_empty());
    let echo = timeout(STEP, client.request_raw(4, Some(STEP), vec![9, 8, 7]))
        .await
        .expect("request timed out")
        .expect("request failed");
    assert_eq!(echo, [9, 8, 7]);

    let (bad, mut bad_events) = connect(addr).await;
    let err = timeout(STEP, bad.request_auth("wrong", HashMap::new()))
        .await
        .expect("request_auth timed out")
        .expect_err("wrong token must fail");
    assert!(
        matches!(err, WsClientError::ResponseError { status: 5, .. }),
        "{err:?}"
    );
    expect_close(&mut bad_events, CloseCode::AuthError, "invalid token", 1008).await;

    // `--ping-interval-ms 1000` reached the machine: a plain WebSocket sees a Ping within ~1 s.
    let url = format!("ws://{addr}/v2?version=1&codec=1&platform=9");
    let (mut raw, _) = timeout(STEP, tokio_tungstenite::connect_async(url))
        .await
        .expect("raw connect timed out")
        .expect("raw upgrade");
    let started = tokio::time::Instant::now();
    let first = timeout(STEP, futures_util::StreamExt::next(&mut raw))
        .await
        .expect("no frame within 10 s");
    assert!(
        matches!(
            first,
            Some(Ok(tokio_tungstenite::tungstenite::Message::Ping(_)))
        ),
        "{first:?}"
    );
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_millis(1800),
        "first Ping after {waited:?}"
    );
    drop(guard);
}
