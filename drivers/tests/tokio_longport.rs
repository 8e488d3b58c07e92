//! Our tokio LongPort client against our tokio LongPort server on 127.0.0.1: TCP, ws:// and
//! wss:// (a self-signed certificate generated here), a reconnect with the session after the
//! server drops the transport, and the failure cases: a peer that vanishes, a slow consumer,
//! a close and a shutdown with requests in flight, a cancelled request
#![cfg(feature = "tokio")]

#[path = "support/lp.rs"]
mod lp;

use std::sync::Arc;
use std::time::Duration;

use lp::{
    long_token, TestServer, CMD_ECHO, CMD_GZIP_ECHO, CMD_SILENT, LONG_TOKEN_LEN, STEP, TOKEN,
};
use tether_net::longport::{
    ClientConfig, ClientEvent, CloseCause, CloseCode, LoginKind, RequestFailure, ServerConfig,
    ServerEvent,
};
use tether_net_drivers::tokio::{
    client_config_with_roots, ClientConnectError, ClientItem, ClientOptions, Listener,
    LongPortClient, LongPortEvents, PendingResponse, RequestError, ServerEvents, ServerItem,
    ServerLimits, ServerOptions,
};
use tokio::time::timeout;

/// The next event item matching `f`, within `STEP`
async fn wait_for(
    events: &mut LongPortEvents,
    what: &str,
    f: impl Fn(&ClientItem) -> bool,
) -> ClientItem {
    let mut seen = Vec::new();
    let r = timeout(STEP, async {
        while let Some(item) = events.next().await {
            if f(&item) {
                return Some(item);
            }
            seen.push(item);
        }
        None
    })
    .await;
    match r {
        Ok(Some(item)) => item,
        _ => panic!("no {what} within {STEP:?}; saw {seen:#?}"),
    }
}

/// The next machine event matching `f`, within `STEP`
async fn wait_event(
    events: &mut LongPortEvents,
    what: &str,
    f: impl Fn(&ClientEvent) -> bool,
) -> ClientEvent {
    match wait_for(events, what, |i| matches!(i, ClientItem::Event(e) if f(e))).await {
        ClientItem::Event(e) => e,
        other => unreachable!("{other:?}"),
    }
}

/// The next `Connected` event, which must come `via` this login
async fn wait_connected(events: &mut LongPortEvents, via: LoginKind) {
    let e = wait_event(events, "Connected", |e| {
        matches!(e, ClientEvent::Connected { .. })
    })
    .await;
    assert!(
        matches!(e, ClientEvent::Connected { via: v, .. } if v == via),
        "{e:?}, not via {via:?}"
    );
}

/// A client logged in over TCP with the defaults
async fn tcp_client(url: &str) -> (LongPortClient, LongPortEvents) {
    LongPortClient::connect(url, ClientConfig::tcp(), TOKEN, ClientOptions::default())
        .await
        .unwrap()
}

/// A client logged in at `url` (within `STEP`)
async fn logged_in(
    url: &str,
    config: ClientConfig,
    options: ClientOptions,
) -> (LongPortClient, LongPortEvents) {
    timeout(STEP, LongPortClient::connect(url, config, TOKEN, options))
        .await
        .expect("logged in within the step")
        .unwrap()
}

/// One request to the echo command; its answer is `body`
async fn echo(client: &LongPortClient, body: &[u8]) {
    let r = timeout(STEP, client.request(CMD_ECHO, body.to_vec()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.body, body);
}

/// `n` requests the server never answers, in flight
async fn silent_requests(client: &LongPortClient, n: u8) -> Vec<PendingResponse> {
    let mut pending = Vec::new();
    for i in 0..n {
        pending.push(
            client
                .send(CMD_SILENT, Duration::ZERO, vec![i])
                .await
                .unwrap(),
        );
    }
    pending
}

/// Close with "bye" (within `STEP`)
async fn bye(client: &LongPortClient) {
    timeout(STEP, client.close("bye")).await.unwrap().unwrap();
}

fn loopback() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// auth, one request, the server drops the transport, reconnect with the session, a request,
/// close with a reason
async fn scenario(
    url: &str,
    config: ClientConfig,
    options: ClientOptions,
    srv: &TestServer,
    ws: bool,
) {
    let (client, mut events) = timeout(STEP, LongPortClient::connect(url, config, TOKEN, options))
        .await
        .expect("connect in time")
        .expect("connected");
    wait_connected(&mut events, LoginKind::Auth).await;
    let first_session = client.session_id().await.expect("a session");
    assert_eq!(first_session.len(), 32);
    echo(&client, b"one").await;

    // the server drops the transport without a word
    let peer = *srv
        .connected_peers()
        .last()
        .expect("the server saw the login");
    srv.server.drop_connection(peer).await;
    wait_event(&mut events, "Disconnected", |e| {
        matches!(e, ClientEvent::Disconnected { .. })
    })
    .await;
    wait_connected(&mut events, LoginKind::Reconnect).await;
    let second_session = client.session_id().await.expect("a session");
    assert_ne!(
        first_session, second_session,
        "a reconnect grants a new session"
    );
    echo(&client, b"two").await;

    bye(&client).await;
    wait_event(&mut events, "Closed", |e| {
        matches!(
            e,
            ClientEvent::Closed {
                cause: CloseCause::Local
            }
        )
    })
    .await;
    assert!(
        timeout(STEP, events.next()).await.unwrap().is_none(),
        "Closed is the last item"
    );
    // the server saw the reconnect and the client's end of the second connection
    let second = *srv.connected_peers().last().unwrap();
    assert_ne!(second, peer);
    let ended = timeout(STEP, async {
        loop {
            let done = srv.saw(|i| {
                matches!(i, ServerItem::Event(ServerEvent::Closed { peer: p, cause })
                    if *p == second && (!ws || *cause == CloseCause::WsClosed { code: 1000 })
                        && (ws || *cause == CloseCause::TransportClosed))
            });
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "server side end of the second connection: {:#?}",
        srv.log.lock().unwrap()
    );
}

#[tokio::test]
async fn tcp_auth_request_reconnect_close() {
    let srv = TestServer::on(Listener::Tcp(loopback())).await;
    let url = format!("tcp://{}", srv.addrs[0]);
    scenario(
        &url,
        ClientConfig::tcp(),
        ClientOptions::default(),
        &srv,
        false,
    )
    .await;
    srv.shutdown().await;
}

#[tokio::test]
async fn ws_auth_request_reconnect_close() {
    let srv = TestServer::on(Listener::Ws(loopback())).await;
    let url = format!("ws://{}/v2", srv.addrs[0]);
    scenario(
        &url,
        ClientConfig::websocket(),
        ClientOptions::default(),
        &srv,
        true,
    )
    .await;
    srv.shutdown().await;
}

/// `ws://host:port` (no path) is the root path: the client logs in (it used to put the protocol
/// query straight after the authority, the handshake refused the URL and `connect` dialed
/// again and again without returning)
#[tokio::test]
async fn a_ws_url_without_a_path_logs_in() {
    let srv = TestServer::on(Listener::Ws(loopback())).await;
    let url = format!("ws://{}", srv.addrs[0]);
    let (client, _events) = timeout(
        STEP,
        LongPortClient::connect(
            &url,
            ClientConfig::websocket(),
            TOKEN,
            ClientOptions::default(),
        ),
    )
    .await
    .expect("logged in")
    .unwrap();
    echo(&client, b"root").await;
    client.close("bye").await.unwrap();
    // the cause, at once and also once the driver task has ended
    assert_eq!(client.closed().await, Some(CloseCause::Local));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(client.closed().await, Some(CloseCause::Local));
    srv.shutdown().await;
}

/// Nothing listens: `connect` dials per the reconnect policy and, with a bound on the
/// attempts, fails once they are used up instead of waiting for ever
#[tokio::test]
async fn connect_to_a_closed_port_fails_after_the_allowed_attempts() {
    // a port that was just free
    let port = std::net::TcpListener::bind(loopback())
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = ClientConfig::tcp().with_max_reconnect_attempts(Some(2));
    let r = timeout(
        STEP,
        LongPortClient::connect(
            &format!("tcp://127.0.0.1:{port}"),
            config,
            TOKEN,
            ClientOptions::default(),
        ),
    )
    .await
    .expect("gave up within 10 s");
    assert!(
        matches!(r, Err(ClientConnectError::Closed(_))),
        "{:?}",
        r.map(|_| ())
    );
}

#[tokio::test]
async fn wss_with_a_self_signed_certificate() {
    let (server_tls, roots) = lp::self_signed();
    let srv = TestServer::on(Listener::Wss(loopback(), server_tls)).await;
    let url = format!("wss://localhost:{}/v2", srv.addrs[0].port());
    let options = ClientOptions::default().with_tls(client_config_with_roots(roots));
    scenario(&url, ClientConfig::websocket(), options, &srv, true).await;

    // without the test root, the certificate is not trusted: the dial fails and the
    // client keeps retrying (no login)
    let untrusted = LongPortClient::connect(
        &url,
        ClientConfig::websocket().with_connect_timeout(Duration::from_millis(500)),
        TOKEN,
        ClientOptions::default(),
    );
    assert!(
        timeout(Duration::from_secs(2), untrusted).await.is_err(),
        "no login with an untrusted certificate"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn wrong_token_is_refused_with_the_servers_message() {
    let srv = TestServer::on(Listener::Ws(loopback())).await;
    let url = format!("ws://{}/v2", srv.addrs[0]);
    let err = timeout(
        STEP,
        LongPortClient::connect(
            &url,
            ClientConfig::websocket(),
            "wrong",
            ClientOptions::default(),
        ),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert!(err.to_string().contains("invalid token"), "{err}");
}

/// Copy `r` to `w` until frozen; then forward nothing and close nothing
async fn pipe(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [0u8; 4096];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 || frozen.load(std::sync::atomic::Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
        if w.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A TCP proxy that can be frozen: it then forwards nothing and closes nothing (the peer has
/// vanished, as behind a dead NAT)
async fn freezable_proxy(
    to: std::net::SocketAddr,
) -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicBool>) {
    let frozen = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(loopback()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let f = frozen.clone();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let outbound = tokio::net::TcpStream::connect(to).await.unwrap();
            let (ri, wi) = inbound.into_split();
            let (ro, wo) = outbound.into_split();
            tokio::spawn(pipe(ri, wo, f.clone()));
            tokio::spawn(pipe(ro, wi, f.clone()));
        }
    });
    (addr, frozen)
}

#[tokio::test]
async fn a_peer_that_vanishes_ends_in_a_timeout_not_a_hang() {
    let srv = TestServer::on(Listener::Tcp(loopback())).await;
    let (proxy, frozen) = freezable_proxy(srv.addrs[0]).await;
    let config = ClientConfig::tcp()
        .with_heartbeat_interval(Some(Duration::from_secs(1)))
        .with_heartbeat_timeout(Duration::from_millis(2500))
        .with_request_timeout(Duration::from_secs(30))
        .with_max_reconnect_attempts(Some(1))
        .with_reconnect_backoff(Duration::from_millis(100), Duration::from_millis(200))
        .with_connect_timeout(Duration::from_millis(500))
        .with_auth_timeout(Duration::from_millis(500));
    let (client, mut events) = LongPortClient::connect(
        &format!("tcp://{proxy}"),
        config,
        TOKEN,
        ClientOptions::default(),
    )
    .await
    .unwrap();
    frozen.store(true, std::sync::atomic::Ordering::Relaxed);
    let pending = client
        .send(CMD_ECHO, Duration::ZERO, b"lost".to_vec())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let item = wait_event(&mut events, "Disconnected", |e| {
        matches!(e, ClientEvent::Disconnected { .. })
    })
    .await;
    assert_eq!(
        item,
        ClientEvent::Disconnected {
            cause: CloseCause::Timeout
        }
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        timeout(STEP, pending).await.unwrap(),
        Err(RequestError::Failed(RequestFailure::Disconnected)),
        "the request in flight is resolved, not left hanging"
    );
    // the frozen proxy lets the reconnect dial in but answers nothing: the login times out,
    // the one retry allowed too, and the client ends
    wait_event(&mut events, "Closed", |e| {
        matches!(e, ClientEvent::Closed { .. })
    })
    .await;
    assert!(timeout(STEP, client.closed()).await.is_ok());
}

#[tokio::test]
async fn close_and_shutdown_resolve_every_request_in_flight() {
    let srv = TestServer::on(Listener::Tcp(loopback())).await;
    let url = format!("tcp://{}", srv.addrs[0]);
    // a local close with 8 requests in flight
    let (client, _events) = tcp_client(&url).await;
    let pending = silent_requests(&client, 8).await;
    assert_eq!(client.in_flight().await, Some((8, 8)));
    bye(&client).await;
    for p in pending {
        assert_eq!(
            timeout(STEP, p).await.unwrap(),
            Err(RequestError::Failed(RequestFailure::Closed))
        );
    }
    assert_eq!(client.in_flight().await, None, "the driver task has ended");
    assert_eq!(
        client.request(CMD_ECHO, b"late".to_vec()).await,
        Err(RequestError::Stopped)
    );

    // the server shuts down with 8 requests in flight
    let (client, mut events) = tcp_client(&url).await;
    let pending = silent_requests(&client, 8).await;
    timeout(STEP, srv.server.shutdown("maintenance"))
        .await
        .unwrap()
        .unwrap();
    for p in pending {
        assert_eq!(
            timeout(STEP, p).await.unwrap(),
            Err(RequestError::Failed(RequestFailure::Disconnected))
        );
    }
    let close = wait_for(&mut events, "ServerClose", |i| {
        matches!(i, ClientItem::ServerClose { .. })
    })
    .await;
    assert_eq!(
        close,
        ClientItem::ServerClose {
            code: CloseCode::ServerShutdown,
            reason: "maintenance".into()
        }
    );
    assert_eq!(
        client.in_flight().await.map(|(_, d)| d),
        Some(0),
        "no reply slot left behind"
    );
    bye(&client).await;
}

#[tokio::test]
async fn a_cancelled_request_leaves_nothing_behind() {
    let srv = TestServer::on(Listener::Tcp(loopback())).await;
    let url = format!("tcp://{}", srv.addrs[0]);
    let config = ClientConfig::tcp().with_request_timeout(Duration::from_millis(300));
    let (client, _events) = LongPortClient::connect(&url, config, TOKEN, ClientOptions::default())
        .await
        .unwrap();
    // dropped while waiting for its response
    assert!(timeout(
        Duration::from_millis(50),
        client.request(CMD_SILENT, b"x".to_vec())
    )
    .await
    .is_err());
    // the next request is not disturbed
    echo(&client, b"after").await;
    // once the machine's timeout passed, nothing of the cancelled request is left
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(client.in_flight().await, Some((0, 0)));
    bye(&client).await;
}

#[tokio::test]
async fn a_slow_consumer_gets_backpressure_not_unbounded_memory() {
    // the server pushes 20 000 pushes of 1 KiB to a client whose application reads no events
    let limits = ServerLimits::default()
        .with_outbox(64 * 1024, 1024 * 1024)
        .with_stall_timeout(Duration::from_secs(1));
    let srv = TestServer::start(
        &[Listener::Tcp(loopback())],
        ServerConfig::new(),
        ServerOptions::default().with_limits(limits),
    )
    .await;
    let url = format!("tcp://{}", srv.addrs[0]);
    let options = ClientOptions::default().with_events_capacity(16);
    let (client, mut events) = LongPortClient::connect(&url, ClientConfig::tcp(), TOKEN, options)
        .await
        .unwrap();
    let peer = *srv.connected_peers().last().unwrap();
    let body = vec![7u8; 1024];
    let mut pushed = 0usize;
    let started = std::time::Instant::now();
    for _ in 0..20_000 {
        match srv.server.push(peer, 101, body.clone()).await {
            Ok(()) => pushed += 1,
            Err(_) => break,
        }
    }
    // the server could not hand over more than the socket buffers and its outbox hold: the
    // client task stopped reading once its event channel and backlog were full
    let snap = srv.server.snapshot().await.unwrap();
    assert!(snap.driver.peak_outbox <= 1024 * 1024 + 2048, "{snap:?}");
    eprintln!(
        "pushed {pushed} before the server gave up, in {:?}; {snap:?}",
        started.elapsed()
    );
    // the stuck connection is dropped by the server's stall rule within about a second
    tokio::time::sleep(Duration::from_secs(2)).await;
    let snap = srv.server.snapshot().await.unwrap();
    assert_eq!(snap.driver.stalled, 1, "{snap:?}");
    assert!(
        pushed < 20_000,
        "the server could not queue everything: {pushed}"
    );
    // the consumer wakes up: it gets what was queued (bounded), then the disconnect
    let pushes = std::sync::atomic::AtomicUsize::new(0);
    wait_for(&mut events, "Disconnected", |i| {
        if matches!(i, ClientItem::Push { .. }) {
            pushes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        matches!(i, ClientItem::Event(ClientEvent::Disconnected { .. }))
    })
    .await;
    let pushes = pushes.into_inner();
    eprintln!("the consumer got {pushes} pushes, then the disconnect");
    assert!(pushes <= pushed);
    bye(&client).await;
}

/// A refused token is replaced from the token source without the caller's help: `connect`
/// returns logged in, the source was asked once, the server saw the refused and the fresh Auth
#[tokio::test]
async fn a_refused_token_is_replaced_from_the_token_source() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tether_net_drivers::tokio::ServerInput;

    let srv = TestServer::on(Listener::Tcp(loopback())).await;
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&asked);
    let options = ClientOptions::default().with_token_source(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        Some(TOKEN.to_string())
    });
    let (client, _events) = timeout(
        STEP,
        LongPortClient::connect(
            &format!("tcp://{}", srv.addrs[0]),
            ClientConfig::tcp(),
            "expired-token",
            options,
        ),
    )
    .await
    .expect("logged in with the fresh token")
    .unwrap();
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    echo(&client, b"t").await;
    let auths: Vec<String> = srv
        .log
        .lock()
        .unwrap()
        .iter()
        .filter_map(|i| match i {
            ServerItem::Input(ServerInput::Auth { token, .. }) => Some(token.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(auths, ["expired-token", TOKEN]);
    bye(&client).await;
    srv.shutdown().await;
}

/// Without a token source, a Close that drops the session (`SessExpired`) puts `TokenNeeded` in
/// the event stream; `provide_token` logs in again
#[tokio::test]
async fn token_needed_after_a_session_dropping_close_is_answered_with_provide_token() {
    let srv = TestServer::on(Listener::Tcp(loopback())).await;
    let (client, mut events) = timeout(STEP, tcp_client(&format!("tcp://{}", srv.addrs[0])))
        .await
        .unwrap();
    assert_eq!(
        srv.server
            .close_all(CloseCode::SessExpired, "expired")
            .await,
        1
    );
    // TokenNeeded (the Close, Disconnected and ReconnectScheduled come first)
    wait_event(&mut events, "TokenNeeded", |e| {
        matches!(e, ClientEvent::TokenNeeded)
    })
    .await;
    client.provide_token(TOKEN).await.unwrap();
    wait_connected(&mut events, LoginKind::Auth).await;
    assert_eq!(srv.connected_peers().len(), 2);
    echo(&client, b"again").await;
    bye(&client).await;
    srv.shutdown().await;
}

/// `drop_transport` drops the connection as a network would: the client reconnects with its
/// session (the server sees a Reconnect) and goes on
#[tokio::test]
async fn drop_transport_reconnects_with_the_session() {
    use tether_net_drivers::tokio::ServerInput;

    let srv = TestServer::on(Listener::Tcp(loopback())).await;
    let (client, mut events) = timeout(STEP, tcp_client(&format!("tcp://{}", srv.addrs[0])))
        .await
        .unwrap();
    // the first login's events come first
    wait_connected(&mut events, LoginKind::Auth).await;
    client.drop_transport().await;
    wait_event(&mut events, "Disconnected", |e| {
        matches!(e, ClientEvent::Disconnected { .. })
    })
    .await;
    wait_connected(&mut events, LoginKind::Reconnect).await;
    assert!(srv.saw(|i| matches!(i, ServerItem::Input(ServerInput::Reconnect { .. }))));
    echo(&client, b"back").await;
    bye(&client).await;
    srv.shutdown().await;
}

/// A request and its echo far larger than the driver's first buffers (1 KiB for writing
/// requests, 64 KiB for reading): both grow, over TCP and WebSocket
#[tokio::test]
async fn a_large_request_and_its_response_grow_the_buffers() {
    for (listener, scheme, config) in [
        (Listener::Tcp(loopback()), "tcp", ClientConfig::tcp()),
        (Listener::Ws(loopback()), "ws", ClientConfig::websocket()),
    ] {
        let srv = TestServer::on(listener).await;
        let url = match scheme {
            "tcp" => format!("tcp://{}", srv.addrs[0]),
            _ => format!("ws://{}/v2", srv.addrs[0]),
        };
        let (client, _events) = logged_in(&url, config, ClientOptions::default()).await;
        let body: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
        let r = timeout(STEP, client.request(CMD_ECHO, body.clone()))
            .await
            .expect("echoed in time")
            .unwrap();
        assert!(r.body == body, "{scheme}: {} bytes back", r.body.len());
        bye(&client).await;
        srv.shutdown().await;
    }
}

/// A request nobody answers ends with `TimedOut` (and says so); the handles print their type;
/// the event stream works as a `futures_core::Stream` (the login's first event first)
#[tokio::test]
async fn a_silent_request_times_out_and_the_handles_print_and_stream() {
    let srv = TestServer::on(Listener::Tcp(loopback())).await;
    let config = ClientConfig::tcp().with_request_timeout(Duration::from_millis(200));
    let options = ClientOptions::default();
    assert!(format!("{options:?}").contains("ClientOptions"));
    let (client, mut events) = logged_in(&format!("tcp://{}", srv.addrs[0]), config, options).await;
    assert!(format!("{client:?}").contains("LongPortClient"));
    let e = timeout(STEP, client.request(CMD_SILENT, b"x".to_vec()))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(e, RequestError::TimedOut), "{e:?}");
    assert_eq!(e.to_string(), "timed out");
    let first = std::future::poll_fn(|cx| {
        futures_core::Stream::poll_next(std::pin::Pin::new(&mut events), cx)
    })
    .await;
    assert!(
        matches!(
            first,
            Some(ClientItem::Event(ClientEvent::ConnectTransport { .. }))
        ),
        "{first:?}"
    );
    bye(&client).await;
    srv.shutdown().await;
}

/// A transport that stops taking bytes (a frozen proxy that reads nothing more) while the
/// client writes 16 MiB of requests: the write blocks, and after `with_write_timeout` the
/// transport counts as lost, well before the heartbeat would notice (with the default 10 s
/// write timeout this takes 10 s)
#[tokio::test]
async fn a_write_that_blocks_past_the_write_timeout_drops_the_transport() {
    let srv = TestServer::on(Listener::Tcp(loopback())).await;
    let (proxy, frozen) = freezable_proxy(srv.addrs[0]).await;
    let config = ClientConfig::tcp()
        .with_heartbeat_interval(Some(Duration::from_secs(30)))
        .with_heartbeat_timeout(Duration::from_secs(60))
        .with_request_timeout(Duration::from_secs(60));
    let options = ClientOptions::default().with_write_timeout(Duration::from_millis(300));
    let (client, mut events) = logged_in(&format!("tcp://{proxy}"), config, options).await;
    frozen.store(true, std::sync::atomic::Ordering::Relaxed);
    let started = std::time::Instant::now();
    // (kept: a dropped response handle would cancel its request before it is written)
    let mut pending = Vec::new();
    for _ in 0..32 {
        match client
            .send(CMD_ECHO, Duration::ZERO, vec![7u8; 512 * 1024])
            .await
        {
            Ok(p) => pending.push(p),
            Err(_) => break,
        }
    }
    let e = wait_event(&mut events, "Disconnected", |e| {
        matches!(e, ClientEvent::Disconnected { .. })
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{e:?} after {:?}",
        started.elapsed()
    );
    bye(&client).await;
}

/// On WebSocket the client's heartbeat is a WebSocket Ping: the driver writes it and the
/// server's Pong comes back as a round-trip time, again and again, with no disconnect
#[tokio::test]
async fn websocket_heartbeats_are_pings_whose_pongs_give_round_trip_times() {
    let srv = TestServer::on(Listener::Ws(loopback())).await;
    let config = ClientConfig::websocket()
        .with_heartbeat_interval(Some(Duration::from_secs(1)))
        .with_heartbeat_timeout(Duration::from_millis(1500));
    let (client, mut events) = logged_in(
        &format!("ws://{}/v2", srv.addrs[0]),
        config,
        ClientOptions::default(),
    )
    .await;
    for _ in 0..2 {
        let e = wait_event(&mut events, "HeartbeatRtt or Disconnected", |e| {
            matches!(
                e,
                ClientEvent::HeartbeatRtt { .. } | ClientEvent::Disconnected { .. }
            )
        })
        .await;
        let ClientEvent::HeartbeatRtt { rtt } = e else {
            panic!("{e:?}: the Ping was not answered");
        };
        assert!(rtt < Duration::from_secs(1), "{rtt:?}");
    }
    let snap = srv.server.snapshot().await.unwrap();
    assert!(snap.stats.ws_pings_received >= 2, "{snap:?}");
    bye(&client).await;
    srv.shutdown().await;
}

/// A TCP proxy that can be frozen (it forwards nothing more either way) and tells when the
/// client closes its side and how many connections it accepted
async fn watching_proxy(
    to: std::net::SocketAddr,
) -> (
    std::net::SocketAddr,
    Arc<std::sync::atomic::AtomicBool>,
    Arc<std::sync::atomic::AtomicUsize>,
    tokio::sync::mpsc::UnboundedReceiver<std::time::Instant>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let frozen = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (eof_tx, eof_rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind(loopback()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (f, a) = (frozen.clone(), accepted.clone());
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            a.fetch_add(1, Relaxed);
            let outbound = tokio::net::TcpStream::connect(to).await.unwrap();
            let (mut ri, wi) = inbound.into_split();
            let (ro, mut wo) = outbound.into_split();
            tokio::spawn(pipe(ro, wi, f.clone()));
            let (f, eof_tx) = (f.clone(), eof_tx.clone());
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    match ri.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) if !f.load(Relaxed) => {
                            let _ = wo.write_all(&buf[..n]).await;
                        }
                        Ok(_) => {}
                    }
                }
                let _ = eof_tx.send(std::time::Instant::now());
            });
        }
    });
    (addr, frozen, accepted, eof_rx)
}

/// When the machine declares the transport lost (here: no heartbeat answer), the driver closes
/// the socket at once, not only when the redial replaces it seconds later
#[tokio::test]
async fn a_lost_transport_is_closed_at_the_disconnect_not_at_the_redial() {
    let srv = TestServer::on(Listener::Tcp(loopback())).await;
    let (proxy, frozen, accepted, mut eofs) = watching_proxy(srv.addrs[0]).await;
    let config = ClientConfig::tcp()
        .with_heartbeat_interval(Some(Duration::from_secs(1)))
        .with_heartbeat_timeout(Duration::from_millis(1500))
        .with_reconnect_backoff(Duration::from_secs(4), Duration::from_secs(4));
    let (client, mut events) =
        logged_in(&format!("tcp://{proxy}"), config, ClientOptions::default()).await;
    frozen.store(true, std::sync::atomic::Ordering::Relaxed);
    let e = wait_event(&mut events, "Disconnected", |e| {
        matches!(e, ClientEvent::Disconnected { .. })
    })
    .await;
    let disconnected = std::time::Instant::now();
    assert_eq!(
        e,
        ClientEvent::Disconnected {
            cause: CloseCause::Timeout
        }
    );
    let eof = timeout(STEP, eofs.recv()).await.unwrap().unwrap();
    assert!(
        eof.saturating_duration_since(disconnected) < Duration::from_millis(1000),
        "the socket was closed {:?} after the disconnect",
        eof.saturating_duration_since(disconnected)
    );
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "closed before any redial"
    );
    bye(&client).await;
}

/// With an event channel of one item, pushes the application does not take stop the reading:
/// a response waits in the socket until the consumer catches up (with the default 64 it comes
/// at once)
#[tokio::test]
async fn a_one_item_event_channel_holds_back_reading_until_the_consumer_catches_up() {
    let srv = TestServer::on(Listener::Tcp(loopback())).await;
    let url = format!("tcp://{}", srv.addrs[0]);
    for capacity in [None, Some(1)] {
        let mut options = ClientOptions::default();
        if let Some(n) = capacity {
            options = options.with_events_capacity(n);
        }
        let (client, mut events) = logged_in(&url, ClientConfig::tcp(), options).await;
        let peer = *srv.connected_peers().last().unwrap();
        for i in 0..20u8 {
            srv.server.push(peer, 101, vec![i; 16]).await.unwrap();
        }
        // the pushes reach the client task before the request goes out
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut pending = client
            .send(CMD_ECHO, Duration::ZERO, b"behind the pushes".to_vec())
            .await
            .unwrap();
        let early = timeout(Duration::from_millis(500), &mut pending).await;
        match capacity {
            None => assert!(early.is_ok(), "the default channel holds 20 pushes"),
            Some(_) => assert!(
                early.is_err(),
                "the response was read while 19 pushes waited for the consumer"
            ),
        }
        let mut pushes = 0;
        while pushes < 20 {
            if let ClientItem::Push { .. } = wait_for(&mut events, "a push", |_| true).await {
                pushes += 1;
            }
        }
        if capacity.is_some() {
            let r = timeout(STEP, pending).await.unwrap().unwrap();
            assert_eq!(r.body, b"behind the pushes");
        }
        bye(&client).await;
    }
    srv.shutdown().await;
}

/// A token longer than the driver's first frame buffer (1 KiB), through `connect_with` and a
/// machine whose token capacity is 4 KiB (the default machine takes 512 bytes): the buffer
/// grows and the Auth goes out whole
#[tokio::test]
async fn a_token_longer_than_the_frame_buffer_logs_in() {
    let srv = TestServer::on(Listener::Tcp(loopback())).await;
    let token = long_token();
    let url = format!("tcp://{}", srv.addrs[0]);
    let refused =
        LongPortClient::connect(&url, ClientConfig::tcp(), &token, ClientOptions::default())
            .await
            .unwrap_err();
    assert!(
        matches!(
            refused,
            ClientConnectError::Refused(tether_net::longport::Error::TooLong {
                len: LONG_TOKEN_LEN,
                max: 512
            })
        ),
        "{refused:?}"
    );
    let machine =
        tether_net::longport::Client::<16, 16, 4096>::with_capacities(ClientConfig::tcp());
    let (client, _events) = timeout(
        STEP,
        LongPortClient::connect_with(&url, machine, &token, ClientOptions::default()),
    )
    .await
    .expect("logged in")
    .unwrap();
    assert!(srv.saw(|i| matches!(
        i,
        ServerItem::Input(tether_net_drivers::tokio::ServerInput::Auth { token, .. })
            if token.len() == LONG_TOKEN_LEN
    )));
    echo(&client, b"long").await;
    bye(&client).await;
    srv.shutdown().await;
}

/// Metadata pairs of the options (what the official SDKs send: `accept-language`) reach the
/// server's application with the Auth and again with the Reconnect, over TCP and WebSocket;
/// more pairs than the machine takes are refused before anything is dialed
#[tokio::test]
async fn metadata_goes_with_the_auth_and_the_reconnect() {
    use tether_net_drivers::tokio::ServerInput;

    let pairs = vec![
        ("accept-language".to_string(), "en".to_string()),
        ("client".to_string(), "tether".to_string()),
    ];
    for (listener, scheme, config) in [
        (Listener::Tcp(loopback()), "tcp", ClientConfig::tcp()),
        (Listener::Ws(loopback()), "ws", ClientConfig::websocket()),
    ] {
        let srv = TestServer::on(listener).await;
        let url = match scheme {
            "tcp" => format!("tcp://{}", srv.addrs[0]),
            _ => format!("ws://{}/v2", srv.addrs[0]),
        };
        let options = ClientOptions::default()
            .with_metadata([("accept-language", "en"), ("client", "tether")]);
        let (client, mut events) = logged_in(&url, config, options).await;
        assert!(
            srv.saw(|i| matches!(i, ServerItem::Input(ServerInput::Auth { metadata, .. }) if *metadata == pairs)),
            "{scheme}: {:#?}",
            srv.log.lock().unwrap()
        );
        wait_connected(&mut events, LoginKind::Auth).await;
        client.drop_transport().await;
        wait_connected(&mut events, LoginKind::Reconnect).await;
        assert!(
            srv.saw(|i| matches!(i, ServerItem::Input(ServerInput::Reconnect { metadata, .. }) if *metadata == pairs)),
            "{scheme}: {:#?}",
            srv.log.lock().unwrap()
        );
        bye(&client).await;
        srv.shutdown().await;
    }
    let nine = (0..9).map(|i| (format!("k{i}"), "v"));
    let refused = LongPortClient::connect(
        "tcp://127.0.0.1:9",
        ClientConfig::tcp(),
        TOKEN,
        ClientOptions::default().with_metadata(nine),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            refused,
            ClientConnectError::Refused(tether_net::longport::Error::TooLong { len: 9, max: 8 })
        ),
        "{refused:?}"
    );
}

/// A hostile WebSocket server that answers the login with the header of an 8 MiB message and
/// trickles its body: the client drops that transport at the header (its largest packet is the
/// machine's body limit) instead of buffering up to the WebSocket library's 64 MiB and waiting
/// for its login deadline
#[tokio::test]
async fn an_oversized_websocket_message_from_the_server_drops_the_transport_at_its_header() {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind(loopback()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let a = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            a.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let s = ws.get_mut();
                let mut header = vec![0x82, 127];
                header.extend_from_slice(&(8u64 << 20).to_be_bytes());
                if s.write_all(&header).await.is_err() {
                    return;
                }
                while s.write_all(&[0u8; 4096]).await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            });
        }
    });
    let config = ClientConfig::websocket()
        .with_auth_timeout(Duration::from_secs(5))
        .with_max_reconnect_attempts(Some(1))
        .with_reconnect_backoff(Duration::from_millis(100), Duration::from_millis(100));
    let started = std::time::Instant::now();
    let r = timeout(
        STEP,
        LongPortClient::connect(
            &format!("ws://{addr}/v2"),
            config,
            TOKEN,
            ClientOptions::default(),
        ),
    )
    .await
    .expect("gave up within 10 s");
    assert!(
        matches!(r, Err(ClientConnectError::Closed(_))),
        "{:?}",
        r.map(|_| ())
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "two transports took {:?}: each waited for its login deadline",
        started.elapsed()
    );
    assert_eq!(accepted.load(std::sync::atomic::Ordering::Relaxed), 2);
}

/// `respond_gzip` sets the packet's gzip flag: the client's response says so and carries the
/// member as it went over the wire, over TCP and WebSocket
#[tokio::test]
async fn a_gzip_response_arrives_flagged_with_its_member_unchanged() {
    // "hello, gzip" as a gzip member
    const MEMBER: [u8; 31] = [
        31, 139, 8, 0, 0, 0, 0, 0, 2, 255, 203, 72, 205, 201, 201, 215, 81, 72, 175, 202, 44, 0, 0,
        74, 155, 177, 92, 11, 0, 0, 0,
    ];
    for (listener, ws) in [
        (Listener::Tcp(loopback()), false),
        (Listener::Ws(loopback()), true),
    ] {
        let srv = TestServer::on(listener).await;
        let (client, _events) = if ws {
            let url = format!("ws://{}/v2", srv.addrs[0]);
            logged_in(&url, ClientConfig::websocket(), ClientOptions::default()).await
        } else {
            tcp_client(&format!("tcp://{}", srv.addrs[0])).await
        };
        let r = timeout(STEP, client.request(CMD_GZIP_ECHO, MEMBER.to_vec()))
            .await
            .unwrap()
            .unwrap();
        assert!(r.gzip, "ws {ws}: {r:?}");
        assert_eq!(r.body, MEMBER);
        let plain = timeout(STEP, client.request(CMD_ECHO, MEMBER.to_vec()))
            .await
            .unwrap()
            .unwrap();
        assert!(!plain.gzip);
        bye(&client).await;
        srv.shutdown().await;
    }
}

/// The upgrade hook sees every WebSocket upgrade request's target and whether its protocol
/// query parsed; a request without the query is refused with 400 and never reaches the machine
#[tokio::test]
async fn the_upgrade_hook_sees_each_upgrade_and_a_bad_query_is_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    let hook: tether_net_drivers::tokio::UpgradeHook = Arc::new(move |target: &str, ok: bool| {
        s.lock().unwrap().push((target.to_string(), ok));
    });
    let srv = TestServer::start(
        &[Listener::Ws(loopback())],
        ServerConfig::new(),
        ServerOptions::default().with_upgrade_hook(hook),
    )
    .await;
    let addr = srv.addrs[0];
    let (client, _events) = logged_in(
        &format!("ws://{addr}/v2"),
        ClientConfig::websocket(),
        ClientOptions::default(),
    )
    .await;
    bye(&client).await;
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /v2?codec=7 HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    raw.write_all(req.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    timeout(STEP, raw.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("bad LongPort query"), "{answer}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen[0].0.starts_with("/v2?") && seen[0].0.contains("version=1") && seen[0].1,
        "{seen:?}"
    );
    assert_eq!(seen[1], ("/v2?codec=7".to_string(), false));
    assert_eq!(
        srv.server
            .snapshot()
            .await
            .unwrap()
            .stats
            .connections_accepted,
        1,
        "the refused upgrade never reached the machine"
    );
    srv.shutdown().await;
}

/// `close` of one connection: its client gets the Close with the code (`ServerShutdown`: it
/// reconnects by its policy), the other connection goes on; the server's options and handle
/// print
#[tokio::test]
async fn the_server_closes_one_connection_with_a_code() {
    let options = ServerOptions::default().with_events_capacity(8);
    assert!(format!("{options:?}").contains("ServerOptions"));
    let srv = TestServer::start(&[Listener::Tcp(loopback())], ServerConfig::new(), options).await;
    assert!(format!("{:?}", srv.server).contains("LongPortServer"));
    let url = format!("tcp://{}", srv.addrs[0]);
    let (gone, mut gone_events) = tcp_client(&url).await;
    let (stays, _events) = tcp_client(&url).await;
    let peer = srv.connected_peers()[0];
    srv.server
        .close(peer, CloseCode::ServerShutdown, "maintenance")
        .await
        .unwrap();
    let e = wait_event(&mut gone_events, "Disconnected", |e| {
        matches!(e, ClientEvent::Disconnected { .. })
    })
    .await;
    assert_eq!(
        e,
        ClientEvent::Disconnected {
            cause: CloseCause::Peer {
                code: CloseCode::ServerShutdown
            }
        }
    );
    echo(&stays, b"still here").await;
    assert!(srv
        .server
        .close(peer, CloseCode::ServerShutdown, "again")
        .await
        .is_err());
    bye(&stays).await;
    bye(&gone).await;
    srv.shutdown().await;
}

/// The next item of the server's event stream, taken through `futures_core::Stream` (within
/// `STEP`)
async fn next_server_item(events: &mut ServerEvents) -> Option<ServerItem> {
    timeout(
        STEP,
        std::future::poll_fn(|cx| {
            futures_core::Stream::poll_next(std::pin::Pin::new(&mut *events), cx)
        }),
    )
    .await
    .expect("a server item within the step")
}

/// An application that accepts every Auth and refuses every Reconnect (`reject_reconnect`):
/// the client hears the refusal with its status and code and the server counts it; the
/// application reads the server's items as a `futures_core::Stream`
#[tokio::test]
async fn a_refused_reconnect_reaches_the_client_with_its_status_and_code() {
    use tether_net::longport::Status;
    use tether_net_drivers::random_session_id;
    use tether_net_drivers::tokio::{Grant, LongPortServer, ServerInput};

    let (server, mut items) = LongPortServer::bind(
        &[Listener::Tcp(loopback())],
        ServerConfig::new(),
        ServerOptions::default(),
    )
    .await
    .unwrap();
    let url = format!("tcp://{}", server.local_addrs()[0]);
    let app = server.clone();
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(item) = next_server_item(&mut items).await {
            match &item {
                ServerItem::Input(ServerInput::Auth { peer, .. }) => {
                    let grant = Grant::new(random_session_id(), lp::unix_ms() + 3_600_000);
                    app.accept_auth(*peer, grant).await.unwrap();
                }
                ServerItem::Input(ServerInput::Reconnect { peer, .. }) => {
                    app.reject_reconnect(*peer, Status::Unauthenticated, 40_105, "session gone")
                        .await
                        .unwrap();
                }
                _ => {}
            }
            let _ = seen_tx.send(item);
        }
    });
    let (client, mut events) = logged_in(&url, ClientConfig::tcp(), ClientOptions::default()).await;
    wait_connected(&mut events, LoginKind::Auth).await;
    client.drop_transport().await;
    let e = wait_event(&mut events, "LoginFailed", |e| {
        matches!(e, ClientEvent::LoginFailed { .. })
    })
    .await;
    assert_eq!(
        e,
        ClientEvent::LoginFailed {
            kind: LoginKind::Reconnect,
            status: Status::Unauthenticated,
            code: Some(40_105),
        }
    );
    let stats = server.snapshot().await.unwrap().stats;
    assert_eq!(
        (stats.reconnects_rejected, stats.reconnects_accepted),
        (1, 0)
    );
    assert_eq!(stats.auths_accepted, 1);
    // the refused connection ends on the server with the refusal as its cause
    let closed = timeout(STEP, async {
        while let Some(item) = seen.recv().await {
            if let ServerItem::Event(ServerEvent::Closed { cause, .. }) = item {
                return Some(cause);
            }
        }
        None
    })
    .await
    .unwrap();
    assert!(closed.is_some(), "the refused connection was closed");
    drop(client);
    timeout(STEP, server.shutdown("done"))
        .await
        .unwrap()
        .unwrap();
}

/// The server's event channel bounds how far the machine reads ahead of an application that
/// does not take its items: with room for 2 items, 12 pipelined WebSocket requests stop after a
/// few (the rest wait in the connection's channel and socket); with the default 64 all 12 are
/// read. Nothing is lost: once the application reads again, all 12 come in order.
#[tokio::test]
async fn the_servers_event_channel_holds_the_machine_back_until_the_application_reads() {
    use tether_net_drivers::random_session_id;
    use tether_net_drivers::tokio::{Grant, LongPortServer, ServerInput};

    // the client machine keeps at most 16 requests in flight
    const N: u8 = 12;
    for capacity in [None, Some(2)] {
        let mut options = ServerOptions::default();
        if let Some(n) = capacity {
            options = options.with_events_capacity(n);
        }
        let (server, mut items) =
            LongPortServer::bind(&[Listener::Ws(loopback())], ServerConfig::new(), options)
                .await
                .unwrap();
        let url = format!("ws://{}/v2", server.local_addrs()[0]);
        // the application logs the client in, then stops reading
        let app = server.clone();
        let login = tokio::spawn(async move {
            loop {
                match next_server_item(&mut items).await {
                    Some(ServerItem::Input(ServerInput::Auth { peer, .. })) => {
                        let grant = Grant::new(random_session_id(), lp::unix_ms() + 3_600_000);
                        app.accept_auth(peer, grant).await.unwrap();
                    }
                    Some(ServerItem::Event(ServerEvent::Connected { .. })) => return items,
                    Some(_) => {}
                    None => panic!("the server stopped"),
                }
            }
        });
        let (client, _events) =
            logged_in(&url, ClientConfig::websocket(), ClientOptions::default()).await;
        let mut items = timeout(STEP, login).await.unwrap().unwrap();
        let base = server.snapshot().await.unwrap().stats.packets_received;
        let pending = silent_requests(&client, N).await;
        // give the machine time to read whatever it may
        tokio::time::sleep(Duration::from_millis(300)).await;
        let read = server.snapshot().await.unwrap().stats.packets_received - base;
        match capacity {
            None => assert_eq!(read, u64::from(N), "the default channel takes all {N}"),
            Some(n) => assert!(
                read <= n as u64 + 2,
                "{read} requests read with room for {n} items"
            ),
        }
        let mut bodies = Vec::new();
        while bodies.len() < usize::from(N) {
            if let Some(ServerItem::Input(ServerInput::Request { body, .. })) =
                next_server_item(&mut items).await
            {
                bodies.push(body[0]);
            }
        }
        assert_eq!(bodies, (0..N).collect::<Vec<u8>>(), "all {N}, in order");
        drop(pending);
        bye(&client).await;
        timeout(STEP, server.shutdown("done"))
            .await
            .unwrap()
            .unwrap();
    }
}

/// A connection whose read credit (`with_max_input`, here 256 bytes) ran out reads on as soon
/// as the machine has taken the bytes, even when the application answers nothing (no frame is
/// written to it, the one other thing that wakes its reader): 12 pipelined 100-byte requests
/// the server never answers all reach the application
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_out_of_credit_reads_on_when_the_machine_takes_its_bytes() {
    use tether_net_drivers::tokio::ServerInput;
    let limits = ServerLimits::default().with_max_input(256);
    let srv = TestServer::start(
        &[Listener::Tcp(loopback())],
        ServerConfig::new(),
        ServerOptions::default().with_limits(limits),
    )
    .await;
    let url = format!("tcp://{}", srv.addrs[0]);
    let (client, _events) = tcp_client(&url).await;
    let mut pending = Vec::new();
    for i in 0..12u8 {
        pending.push(
            client
                .send(CMD_SILENT, Duration::ZERO, vec![i; 100])
                .await
                .unwrap(),
        );
    }
    let silent = || {
        srv.log
            .lock()
            .unwrap()
            .iter()
            .filter(|item| {
                matches!(
                    item,
                    ServerItem::Input(ServerInput::Request {
                        cmd: CMD_SILENT,
                        ..
                    })
                )
            })
            .count()
    };
    let started = std::time::Instant::now();
    while silent() < 12 && started.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        silent(),
        12,
        "requests the application saw after {:?} (1,440 bytes behind 256 bytes of credit)",
        started.elapsed()
    );
    drop(pending);
    bye(&client).await;
    srv.shutdown().await;
}
