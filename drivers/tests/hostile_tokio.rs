//! The tokio LongPort server driver against hostile clients on 127.0.0.1 (the socket-level
//! half of the attacks of issue 12): a client that pipelines requests and never reads, and
//! idle sockets held open from one host
#![cfg(feature = "tokio")]

#[path = "support/attack.rs"]
mod attack;
#[path = "support/lp.rs"]
mod lp;

use std::sync::atomic::Ordering;
use std::time::Duration;

use lp::{TestServer, CMD_ECHO, TOKEN};
use tether_net::longport::{ClientConfig, ServerConfig};
use tether_net_drivers::tokio::{
    ClientOptions, Listener, LongPortClient, ServerLimits, ServerOptions,
};
use tokio::time::timeout;

/// A legitimate client: login and one echo; the time both took
async fn login_and_request(url: &str) -> Result<Duration, String> {
    let started = std::time::Instant::now();
    let (client, _events) = timeout(
        Duration::from_secs(5),
        LongPortClient::connect(url, ClientConfig::tcp(), TOKEN, ClientOptions::default()),
    )
    .await
    .map_err(|_| "no login within 5 s".to_string())?
    .map_err(|e| e.to_string())?;
    let r = timeout(
        Duration::from_secs(5),
        client.request(CMD_ECHO, b"legit".to_vec()),
    )
    .await
    .map_err(|_| "no echo within 5 s".to_string())?
    .map_err(|e| e.to_string())?;
    if r.body != b"legit" {
        return Err("wrong echo".into());
    }
    let took = started.elapsed();
    let _ = client.close("bye").await;
    Ok(took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelining_client_that_never_reads_delays_nobody_and_memory_stays_bounded() {
    let limits = ServerLimits::default()
        .with_outbox(64 * 1024, 1024 * 1024)
        .with_stall_timeout(Duration::from_secs(2));
    let srv = TestServer::start(
        &[Listener::Tcp("127.0.0.1:0".parse().unwrap())],
        ServerConfig::new(),
        ServerOptions::default().with_limits(limits),
    )
    .await;
    let addr = srv.addrs[0];
    let url = format!("tcp://{addr}");
    let rss_before = attack::rss_kib();
    let attacker = tokio::task::spawn_blocking(move || {
        attack::Pipeliner::start(addr, TOKEN, 60 * 1024, Duration::from_secs(30))
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut delays = Vec::new();
    for _ in 0..5 {
        delays.push(
            login_and_request(&url)
                .await
                .expect("a legitimate client is served"),
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // the attacker's outbox stays full past the stall timeout (2 s): it is dropped
    let (attacker, dropped) = tokio::task::spawn_blocking(move || {
        let dropped = attacker.wait_dropped(Duration::from_secs(15));
        (attacker, dropped)
    })
    .await
    .unwrap();
    let written = attacker.written.load(Ordering::Relaxed);
    tokio::task::spawn_blocking(move || drop(attacker))
        .await
        .unwrap();
    let snap = srv.server.snapshot().await.unwrap();
    let rss_after = attack::rss_kib();
    let worst = delays.iter().max().copied().unwrap();
    eprintln!(
        "attacker wrote {} KiB; legit login+request took {delays:?}; driver {:?}; RSS {rss_before} -> {rss_after} KiB",
        written / 1024,
        snap.driver
    );
    assert!(
        worst < Duration::from_secs(1),
        "a legitimate client waited {worst:?}"
    );
    assert!(
        snap.driver.peak_outbox <= 1024 * 1024 + 64 * 1024,
        "{snap:?}"
    );
    assert!(snap.driver.peak_input <= (1 << 20) + 64, "{snap:?}");
    assert!(
        dropped,
        "the non-reading client is still connected: {snap:?}"
    );
    assert!(
        snap.driver.stalled >= 1,
        "the non-reading client was dropped: {snap:?}"
    );
    assert!(
        rss_after.saturating_sub(rss_before) < 64 * 1024,
        "RSS grew {rss_before} -> {rss_after} KiB"
    );
    srv.server.shutdown("done").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_idle_sockets_from_one_host_do_not_lock_logins_out() {
    let srv = TestServer::start(
        &[Listener::Tcp("127.0.0.1:0".parse().unwrap())],
        ServerConfig::new(),
        ServerOptions::default(),
    )
    .await;
    let addr = srv.addrs[0];
    let idle = tokio::task::spawn_blocking(move || attack::IdleSockets::hold(addr, 64))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let url = format!("tcp://{addr}");
    let mut ok = 0;
    for _ in 0..20 {
        let login = timeout(Duration::from_secs(2), login_and_request(&url)).await;
        if matches!(login, Ok(Ok(_))) {
            ok += 1;
        }
    }
    eprintln!(
        "{ok} of 20 logins within 2 s; idle sockets reopened {} times; {:?}",
        idle.reopened.load(Ordering::Relaxed),
        srv.server.snapshot().await
    );
    tokio::task::spawn_blocking(move || drop(idle))
        .await
        .unwrap();
    assert!(
        ok >= 18,
        "{ok} of 20 logins succeeded within 2 s while 64 idle sockets were open"
    );
}

/// Open a WebSocket to `addr` by hand (so that the test can then write raw frames)
async fn raw_websocket(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /v2?version=1&codec=1&platform=9 HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut b).await.unwrap(),
            1,
            "the upgrade response ended early"
        );
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

/// A WebSocket client announces one 8 MiB binary message (far over any body the machine
/// takes: 4 KiB before the login, 1 MiB after) and sends it slowly: the server refuses it at the
/// frame header and closes the connection, instead of buffering up to the WebSocket library's
/// default 64 MiB per connection until the message is complete
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_websocket_message_is_refused_at_its_header() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let srv = TestServer::on(Listener::Ws("127.0.0.1:0".parse().unwrap())).await;
    let mut s = raw_websocket(srv.addrs[0]).await;
    let len: u64 = 8 << 20;
    let mut frame = vec![0x82, 0x80 | 127];
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    frame.extend_from_slice(&[0u8; 4096]);
    s.write_all(&frame).await.unwrap();
    let started = std::time::Instant::now();
    // keep sending the body slowly; the server must end the connection well before its login
    // deadline (10 s) would
    let ended = timeout(Duration::from_secs(3), async {
        let mut buf = [0u8; 256];
        loop {
            tokio::select! {
                r = s.read(&mut buf) => match r {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {} // a close frame: wait for the end of the stream
                },
                () = tokio::time::sleep(Duration::from_millis(50)) => {
                    if s.write_all(&[0u8; 4096]).await.is_err() {
                        return;
                    }
                }
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the connection is still open {:?} after announcing an 8 MiB message",
        started.elapsed()
    );
    srv.server.shutdown("done").await.unwrap();
}

/// 300 sockets from one host open the `ws://` and the `wss://` listener and send nothing (the
/// upgrade, and the TLS handshake, never come: a slowloris the machine never sees, since it
/// meets a connection only once its handshakes are done). The driver holds as many
/// connections per source in that phase as the machine lets wait for their login (4 by
/// default), closing the source's oldest for each new one, so the sockets do not pile up until
/// their 5 s handshake timeout; a real client from the same host logs in right after
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_in_the_handshake_are_bounded_per_source() {
    use tokio::io::AsyncReadExt;
    let (tls, roots) = lp::self_signed();
    let srv = TestServer::start(
        &[
            Listener::Ws("127.0.0.1:0".parse().unwrap()),
            Listener::Wss("127.0.0.1:0".parse().unwrap(), tls),
        ],
        ServerConfig::new(),
        ServerOptions::default(),
    )
    .await;
    // a client logged in before the flood, from the same host: its handshake ended, so the
    // flood cannot close it
    let (early, _early_events) = timeout(
        Duration::from_secs(2),
        LongPortClient::connect(
            &format!("ws://{}/v2", srv.addrs[0]),
            ClientConfig::websocket(),
            TOKEN,
            ClientOptions::default(),
        ),
    )
    .await
    .expect("logged in within 2 s")
    .unwrap();
    for (i, addr) in srv.addrs.clone().into_iter().enumerate() {
        let mut idle = Vec::new();
        for _ in 0..300 {
            idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut open = 0;
        for s in &mut idle {
            let mut b = [0u8; 1];
            if timeout(Duration::from_millis(5), s.read(&mut b))
                .await
                .is_err()
            {
                open += 1;
            }
        }
        assert!(
            open <= 4,
            "listener {i}: {open} of 300 idle sockets still open"
        );
        let snap = srv.server.snapshot().await.unwrap();
        // (the first listener's last 4 may still be in their handshakes)
        assert!(
            (296 * (i as u64 + 1)..=300 * (i as u64 + 1)).contains(&snap.handshakes_evicted),
            "{snap:?}"
        );
        let (url, config, options) = if i == 0 {
            (
                format!("ws://{addr}/v2"),
                ClientConfig::websocket(),
                ClientOptions::default(),
            )
        } else {
            (
                format!("wss://localhost:{}/v2", addr.port()),
                ClientConfig::websocket(),
                ClientOptions::default().with_tls(
                    tether_net_drivers::tokio::client_config_with_roots(roots.clone()),
                ),
            )
        };
        let started = std::time::Instant::now();
        let (client, _events) = timeout(
            Duration::from_secs(2),
            LongPortClient::connect(&url, config, TOKEN, options),
        )
        .await
        .expect("logged in within 2 s")
        .unwrap();
        eprintln!(
            "listener {i}: {open} idle sockets left open, login in {:?}",
            started.elapsed()
        );
        client.close("bye").await.unwrap();
    }
    let r = timeout(
        Duration::from_secs(2),
        early.request(CMD_ECHO, b"still here".to_vec()),
    )
    .await
    .expect("the early client is still served")
    .unwrap();
    assert_eq!(r.body, b"still here");
    assert!(srv.connected_peers().len() >= 3);
    srv.server.shutdown("done").await.unwrap();
}

/// The same from 100 sources (127.0.0.2 to 127.0.0.101, 3 sockets each) against a bound of 64
/// handshakes in all: the oldest go first, so the last 64 opened stay and the first 236 are
/// closed
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_in_the_handshake_from_many_sources_are_bounded_in_all_oldest_first() {
    use tokio::io::AsyncReadExt;
    let srv = TestServer::start(
        &[Listener::Ws("127.0.0.1:0".parse().unwrap())],
        ServerConfig::new(),
        ServerOptions::default().with_limits(ServerLimits::default().with_handshakes(64, 8)),
    )
    .await;
    let mut idle = Vec::new();
    for round in 0..3 {
        for host in 2..102u8 {
            let s = tokio::net::TcpSocket::new_v4().unwrap();
            s.bind(std::net::SocketAddr::from(([127, 0, 0, host], 0)))
                .unwrap();
            idle.push((round, host, s.connect(srv.addrs[0]).await.unwrap()));
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut open = Vec::new();
    for (i, (_, _, s)) in idle.iter_mut().enumerate() {
        let mut b = [0u8; 1];
        if timeout(Duration::from_millis(5), s.read(&mut b))
            .await
            .is_err()
        {
            open.push(i);
        }
    }
    assert_eq!(open, (236..300).collect::<Vec<_>>());
    let snap = srv.server.snapshot().await.unwrap();
    assert_eq!(snap.handshakes_evicted, 236, "{snap:?}");
    srv.server.shutdown("done").await.unwrap();
}

/// The Auth of a WebSocket client, as the client machine writes it
fn ws_auth_message() -> Vec<u8> {
    use tether_net::longport::{Client, ClientEvent, Credentials};
    let mut c = Client::new(ClientConfig::websocket());
    c.connect(tether_net::Instant::ZERO, Credentials::new(TOKEN))
        .unwrap();
    let mut out = [0u8; 2048];
    let mut auth = Vec::new();
    tether_net::drain(
        &mut c,
        tether_net::Instant::ZERO,
        &mut out,
        |_, b| {
            auth = b.to_vec();
            Ok::<(), ()>(())
        },
        |c, ev| {
            if let ClientEvent::ConnectTransport { .. } = ev {
                c.handle_connected(tether_net::Instant::ZERO).unwrap();
            }
        },
    )
    .unwrap();
    assert!(!auth.is_empty() && auth.len() < 126);
    auth
}

/// A WebSocket client sends its Auth, which the application does not decide on, and then
/// millions of empty binary messages (6 bytes each on the wire, no payload): they wait behind
/// the Auth, and each counts against the connection's input bound like a message with a body,
/// so the server stops reading and memory stays bounded (counted by their payload alone they
/// were free: the queue grew by one entry per message, 48 MB for 1.9 million in 6.6 s, until
/// the login deadline)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_websocket_messages_behind_a_pending_auth_are_bounded() {
    use tether_net_drivers::tokio::{LongPortServer, ServerItem};
    use tokio::io::AsyncWriteExt;
    let (server, mut events) = LongPortServer::bind(
        &[Listener::Ws("127.0.0.1:0".parse().unwrap())],
        ServerConfig::new(),
        ServerOptions::default(),
    )
    .await
    .unwrap();
    // an application that never decides on a login
    tokio::spawn(async move { while let Some(ServerItem::Input(_) | _) = events.next().await {} });
    let rss_before = attack::rss_kib();
    let (mut r, mut s) = raw_websocket(server.local_addrs()[0]).await.into_split();
    // the attacker reads (and drops) whatever comes back
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut b = vec![0u8; 64 * 1024];
        while matches!(r.read(&mut b).await, Ok(n) if n > 0) {}
    });
    let auth = ws_auth_message();
    let mut frame = vec![0x82, 0x80 | auth.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(&auth);
    s.write_all(&frame).await.unwrap();
    let chunk: Vec<u8> = [0x82u8, 0x80, 0, 0, 0, 0].repeat(10_000);
    let mut sent = 0u64;
    let started = std::time::Instant::now();
    while sent < 4_000_000 && started.elapsed() < Duration::from_secs(6) {
        match timeout(Duration::from_secs(2), s.write_all(&chunk)).await {
            Ok(Ok(())) => sent += 10_000,
            _ => break,
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let snap = server.snapshot().await.unwrap();
    let rss_after = attack::rss_kib();
    eprintln!(
        "{sent} empty messages written in {:?}; RSS {rss_before} -> {rss_after} KiB; {snap:?}",
        started.elapsed(),
    );
    assert!(
        rss_after.saturating_sub(rss_before) < 32 * 1024,
        "RSS grew {rss_before} -> {rss_after} KiB with {sent} messages queued"
    );
    assert!(sent < 4_000_000, "the server read every message");
    // the queue stops at the connection's input bound (one packet of the machine's 1 MiB body
    // limit) plus at most the message read when the credit ran out
    assert!(snap.driver.peak_input <= (1 << 20) + 1024, "{snap:?}");
    server.shutdown("done").await.unwrap();
}

/// With a 4 KiB outbox mark, every echo of a 64 KiB heartbeat (the driver answers those
/// itself while feeding the connection) fills the outbox: the server stops feeding that
/// connection until the socket has taken the echo, then goes on by itself. A client that
/// pipelines 20 of them and reads as they come gets all 20 echoes, in order, without a stall
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_held_by_a_full_outbox_are_echoed_as_it_drains() {
    let limits = ServerLimits::default().with_outbox(4096, 1 << 20);
    let srv = TestServer::start(
        &[Listener::Tcp("127.0.0.1:0".parse().unwrap())],
        ServerConfig::new(),
        ServerOptions::default().with_limits(limits),
    )
    .await;
    let addr = srv.addrs[0];
    let started = std::time::Instant::now();
    let ids = tokio::task::spawn_blocking(move || {
        attack::pipelined_heartbeats(addr, TOKEN, 20, 64 * 1024)
    })
    .await
    .unwrap();
    let took = started.elapsed();
    let want: Vec<Option<u32>> = (100..120).map(Some).collect();
    assert_eq!(ids, want);
    let snap = srv.server.snapshot().await.unwrap();
    assert_eq!(snap.driver.stalled, 0, "{snap:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    srv.server.shutdown("done").await.unwrap();
}

/// A socket that connects and never logs in is closed by the machine's login deadline (here
/// 300 ms): the driver runs the machine's timers on its own clock
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_never_logs_in_is_closed_at_the_login_deadline() {
    use tokio::io::AsyncReadExt;
    let srv = TestServer::start(
        &[Listener::Tcp("127.0.0.1:0".parse().unwrap())],
        ServerConfig::new().with_auth_timeout(Duration::from_millis(300)),
        ServerOptions::default(),
    )
    .await;
    let mut s = tokio::net::TcpStream::connect(srv.addrs[0]).await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 256];
    let ended = timeout(Duration::from_secs(3), async {
        while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
    assert!(ended.is_ok(), "still open after {:?}", started.elapsed());
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    let snap = srv.server.snapshot().await.unwrap();
    assert_eq!(snap.stats.auth_timeouts, 1, "{snap:?}");
    srv.server.shutdown("done").await.unwrap();
}

/// Read raw WebSocket frames of the server (unmasked) until a Close frame; its payload, or
/// `None` when the stream ended first
async fn read_until_close(s: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    loop {
        let mut h = [0u8; 2];
        s.read_exact(&mut h).await.ok()?;
        let len = match h[1] & 0x7F {
            126 => {
                let mut l = [0u8; 2];
                s.read_exact(&mut l).await.ok()?;
                usize::from(u16::from_be_bytes(l))
            }
            127 => panic!("a frame over 64 KiB from the server"),
            n => usize::from(n),
        };
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).await.ok()?;
        if h[0] & 0x0F == 0x8 {
            return Some(payload);
        }
    }
}

/// A WebSocket connection the server closes (here: no login within 300 ms) gets a Close frame,
/// and the server then waits for the client's Close before it ends the TCP connection (RFC 6455
/// §7.1.1), but no longer than `ServerLimits::close_linger`: a client that answers after 400 ms
/// sees its socket end right after its answer, one that never answers (an attacker holding
/// closed connections open) sees it end at the linger
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_close_waits_for_the_clients_answer_but_no_longer_than_the_linger() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let linger = Duration::from_millis(1500);
    let srv = TestServer::start(
        &[Listener::Ws("127.0.0.1:0".parse().unwrap())],
        ServerConfig::new().with_auth_timeout(Duration::from_millis(300)),
        ServerOptions::default().with_limits(ServerLimits::default().with_close_linger(linger)),
    )
    .await;
    let (mut answers, mut silent) = (
        raw_websocket(srv.addrs[0]).await,
        raw_websocket(srv.addrs[0]).await,
    );
    let mut buf = [0u8; 64];

    // the client that answers late
    let close = timeout(Duration::from_secs(3), read_until_close(&mut answers))
        .await
        .expect("no Close frame within 3 s")
        .expect("the stream ended without a Close frame");
    let closed_at = std::time::Instant::now();
    assert!(close.len() >= 2, "a Close frame without a code: {close:?}");
    let held = timeout(Duration::from_millis(400), answers.read(&mut buf)).await;
    assert!(
        held.is_err(),
        "the server ended the connection before the client could answer its Close: {held:?}"
    );
    // a masked Close frame with code 1000
    let mask = [0x11, 0x22, 0x33, 0x44];
    let reply = [
        0x88,
        0x82,
        mask[0],
        mask[1],
        mask[2],
        mask[3],
        0x03 ^ mask[0],
        0xE8 ^ mask[1],
    ];
    answers.write_all(&reply).await.unwrap();
    let answered = std::time::Instant::now();
    let ended = timeout(Duration::from_secs(3), async {
        while matches!(answers.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
    assert!(ended.is_ok(), "still open 3 s after the client's Close");
    assert!(
        answered.elapsed() < Duration::from_secs(1),
        "the connection ended {:?} after the client's Close, not at once (linger {linger:?})",
        answered.elapsed()
    );

    // the client that never answers: its Close went out with the other's
    let close = timeout(Duration::from_secs(1), read_until_close(&mut silent))
        .await
        .expect("no Close frame")
        .expect("the stream ended without a Close frame");
    assert!(close.len() >= 2);
    let ended = timeout(Duration::from_secs(4), async {
        while matches!(silent.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
    assert!(
        ended.is_ok(),
        "a client that never answers the Close holds its socket"
    );
    let held = closed_at.elapsed();
    assert!(
        held > linger - Duration::from_millis(200) && held < linger + Duration::from_secs(1),
        "a silent client's connection ended {held:?} after the Close, linger {linger:?}"
    );
    let snap = srv.server.snapshot().await.unwrap();
    assert_eq!(snap.stats.auth_timeouts, 2, "{snap:?}");
    srv.server.shutdown("done").await.unwrap();
}
