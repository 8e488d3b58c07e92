//! The blocking LongPort server driver against hostile clients on 127.0.0.1 (the socket-level
//! half of the attacks of issue 12): a client that pipelines requests and never reads, and
//! idle sockets held open from one host

#[path = "support/attack.rs"]
mod attack;
#[path = "support/echo.rs"]
mod echo;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tether_net::longport::{
    Client, ClientApp, ClientConfig, ClientEvent, Credentials, ServerConfig, Status,
};
use tether_net_drivers::blocking::{
    Input, ServerInput, ServerItem, ServerLimits, TcpClient, TcpServer,
};

const TOKEN: &str = "hostile-test";

/// A client logged in with `TOKEN` (within 5 s)
fn logged_in(addr: std::net::SocketAddr) -> Result<TcpClient, String> {
    let mut d = TcpClient::new(Client::new(ClientConfig::tcp()), addr).unwrap();
    d.command(|c, now| c.connect(now, Credentials::new(TOKEN)))
        .unwrap();
    let up = d
        .run(Duration::from_secs(5), |_, _, i| match i {
            Input::Event(ClientEvent::Connected { .. }) => Some(true),
            Input::Event(ClientEvent::Disconnected { .. } | ClientEvent::LoginFailed { .. }) => {
                Some(false)
            }
            _ => None,
        })
        .map_err(|e| e.to_string())?;
    if up != Some(true) {
        return Err(format!("no login: {up:?}"));
    }
    Ok(d)
}

/// A legitimate client: login and one echo; the time both took
fn login_and_request(addr: std::net::SocketAddr) -> Result<Duration, String> {
    let started = std::time::Instant::now();
    let mut d = logged_in(addr)?;
    d.request(4, Duration::from_secs(5), b"legit")
        .map_err(|e| e.to_string())?;
    let echoed = d
        .run(Duration::from_secs(5), |_, _, i| match i {
            Input::App(_, ClientApp::Response { body, .. }) => Some(body == b"legit"),
            _ => None,
        })
        .map_err(|e| e.to_string())?;
    if echoed != Some(true) {
        return Err("no echo".into());
    }
    let took = started.elapsed();
    let _ = d.command(|c, now| c.close(now, "bye"));
    Ok(took)
}

#[test]
fn a_pipelining_client_that_never_reads_delays_nobody_and_memory_stays_bounded() {
    let limits = ServerLimits::default()
        .with_outbox(64 * 1024, 1024 * 1024)
        .with_stall_timeout(Duration::from_secs(2));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server: TcpServer =
        TcpServer::with_capacities(listener, ServerConfig::new(), limits).unwrap();
    let running = echo::Running::start(server, TOKEN, echo::Refusals::Ignore);
    let rss_before = attack::rss_kib();

    let attacker = attack::Pipeliner::start(addr, TOKEN, 60 * 1024, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    let mut worst = Duration::ZERO;
    let delays = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..5 {
        let took = login_and_request(addr).expect("a legitimate client is served");
        delays.lock().unwrap().push(took);
        worst = worst.max(took);
        std::thread::sleep(Duration::from_millis(300));
    }
    // the attacker's outbox stays full past the stall timeout (2 s): it is dropped
    let dropped = attacker.wait_dropped(Duration::from_secs(15));
    let written = attacker.written.load(Ordering::Relaxed);
    drop(attacker);
    let (server, _) = running.stop();
    let stats = server.stats();
    let rss_after = attack::rss_kib();
    eprintln!(
        "attacker wrote {} KiB; legit login+request took {:?} (worst {worst:?}); driver {stats:?}; RSS {rss_before} -> {rss_after} KiB",
        written / 1024,
        delays.lock().unwrap()
    );
    assert!(
        worst < Duration::from_secs(1),
        "a legitimate client waited {worst:?}"
    );
    assert!(stats.peak_outbox <= 1024 * 1024 + 64 * 1024, "{stats:?}");
    assert!(stats.peak_input <= (1 << 20) + 64, "{stats:?}");
    assert!(
        dropped,
        "the non-reading client is still connected: {stats:?}"
    );
    assert!(
        stats.stalled >= 1,
        "the non-reading client was dropped: {stats:?}"
    );
    assert!(
        rss_after.saturating_sub(rss_before) < 64 * 1024,
        "RSS grew {rss_before} -> {rss_after} KiB"
    );
}

#[test]
fn sixty_four_idle_sockets_from_one_host_do_not_lock_logins_out() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server: TcpServer =
        TcpServer::with_capacities(listener, ServerConfig::new(), ServerLimits::default()).unwrap();
    let running = echo::Running::start(server, TOKEN, echo::Refusals::Ignore);
    let idle = attack::IdleSockets::hold(addr, 64);
    std::thread::sleep(Duration::from_millis(300));
    let mut ok = 0;
    for _ in 0..20 {
        if login_and_request(addr).is_ok_and(|t| t < Duration::from_secs(2)) {
            ok += 1;
        }
    }
    eprintln!(
        "{ok} of 20 logins within 2 s; idle sockets reopened {} times",
        idle.reopened.load(Ordering::Relaxed)
    );
    drop(idle);
    running.stop();
    assert!(
        ok >= 18,
        "{ok} of 20 logins succeeded within 2 s while 64 idle sockets were open"
    );
}

#[test]
fn requests_beyond_the_pending_limit_wait_in_the_socket_and_none_is_lost() {
    const LIMIT: usize = 2;
    const SENT: usize = 6;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let config = ServerConfig::new().with_max_pending_requests(LIMIT);
    let mut server: TcpServer =
        TcpServer::with_capacities(listener, config, ServerLimits::default()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    // a slow application: it holds the requests it got for a few loop turns, then answers
    // them all at once; the most it ever held at once is returned
    let thread = std::thread::spawn(move || {
        let mut held: Vec<(u64, u8, tether_net::longport::RequestId, Vec<u8>)> = Vec::new();
        let (mut most, mut turns) = (0usize, 0u32);
        while !s.load(Ordering::Relaxed) {
            server
                .run(Duration::from_millis(20), |ctl, item| {
                    match item {
                        ServerItem::Input(ServerInput::Auth { peer, .. }) => {
                            let g = echo::grant(ctl);
                            let _ = ctl.accept_auth(peer, g);
                        }
                        ServerItem::Input(ServerInput::Request {
                            peer,
                            request_id,
                            cmd,
                            body,
                            ..
                        }) => held.push((peer, cmd, request_id, body)),
                        _ => {}
                    }
                    None::<()>
                })
                .unwrap();
            most = most.max(held.len());
            if !held.is_empty() {
                turns += 1;
            }
            if turns >= 5 {
                turns = 0;
                server.command(|ctl| {
                    for (peer, cmd, id, body) in held.drain(..) {
                        ctl.respond(peer, cmd, id, Status::Success, &body).unwrap();
                    }
                });
            }
        }
        (server, most)
    });

    let mut d = logged_in(addr).expect("login");
    for n in 0..SENT {
        d.request(4, Duration::from_secs(10), format!("req-{n}").as_bytes())
            .unwrap();
    }
    let mut got = Vec::new();
    let done = d
        .run(Duration::from_secs(10), |_, _, i| {
            match i {
                Input::App(_, ClientApp::Response { body, status, .. }) => {
                    assert_eq!(status, Status::Success);
                    got.push(String::from_utf8_lossy(body).into_owned());
                }
                Input::Event(
                    e @ (ClientEvent::Disconnected { .. }
                    | ClientEvent::RequestTimedOut { .. }
                    | ClientEvent::RequestFailed { .. }),
                ) => panic!("{e:?}"),
                _ => {}
            }
            (got.len() == SENT).then_some(())
        })
        .unwrap();
    let _ = d.command(|c, now| c.close(now, "bye"));
    stop.store(true, Ordering::Relaxed);
    let (server, most) = thread.join().unwrap();
    let stats = server.stats();
    eprintln!("answers {got:?}; most held {most}; driver {stats:?}");
    assert_eq!(done, Some(()), "all {SENT} answers arrived");
    let want: Vec<String> = (0..SENT).map(|n| format!("req-{n}")).collect();
    assert_eq!(got, want, "every request answered once, in order");
    assert_eq!(
        most, LIMIT,
        "the application never held more than the limit"
    );
    assert!(stats.in_flight_full >= 1, "{stats:?}");
}

/// A connection the application closes gets the Close packet, then its socket is shut: the
/// client reads the packet and then the end of the stream (a socket left open would hold the
/// descriptor until the client gave up), and the server forgets it
#[test]
fn a_connection_the_server_closes_gets_the_close_then_the_end_of_the_stream() {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut server: TcpServer =
        TcpServer::with_capacities(listener, ServerConfig::new(), ServerLimits::default()).unwrap();
    let client = std::thread::spawn(move || {
        let mut s = attack::raw_login(addr, TOKEN);
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return Ok(got),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => return Err(format!("{e} after {} bytes", got.len())),
            }
        }
    });
    let mut peer = None;
    let started = std::time::Instant::now();
    while !client.is_finished() && started.elapsed() < Duration::from_secs(8) {
        server
            .run(Duration::from_millis(10), |ctl, item| {
                if let ServerItem::Input(ServerInput::Auth { peer: p, .. }) = item {
                    let g = echo::grant(ctl);
                    let _ = ctl.accept_auth(p, g);
                    peer = Some(p);
                }
                None::<()>
            })
            .unwrap();
        if let Some(p) = peer.take() {
            // the login response goes out first
            server
                .run(Duration::from_millis(50), |_, _| None::<()>)
                .unwrap();
            server.command(|ctl| {
                ctl.close(
                    p,
                    tether_net::longport::CloseCode::ServerShutdown,
                    "maintenance",
                )
                .unwrap();
            });
        }
    }
    let got = client.join().unwrap().expect("the end of the stream");
    assert!(
        got.windows(b"maintenance".len())
            .any(|w| w == b"maintenance"),
        "the Close with its reason came first: {got:?}"
    );
    assert_eq!(server.connections(), 0);
}

/// The blocking server with a 1 KiB outbox mark: every echo of a 4 KiB heartbeat fills the
/// outbox, so of the 16 or so heartbeats one socket read brings, one is fed and the others wait
/// in the receive buffer; the connection is fed again once the socket took the echo (the
/// driver asks for read credit every turn, and the credit's return wakes it). 200 pipelined
/// heartbeats, read as they come, are all echoed in order
#[test]
fn heartbeats_held_by_a_full_outbox_are_echoed_as_it_drains() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = ServerLimits::default().with_outbox(1024, 1 << 20);
    let mut server: TcpServer =
        TcpServer::with_capacities(listener, ServerConfig::new(), limits).unwrap();
    let client =
        std::thread::spawn(move || attack::pipelined_heartbeats(addr, TOKEN, 200, 4 * 1024));
    let started = std::time::Instant::now();
    while !client.is_finished() && started.elapsed() < Duration::from_secs(10) {
        server
            .run(Duration::from_millis(10), |ctl, item| {
                if let ServerItem::Input(ServerInput::Auth { peer, .. }) = item {
                    let g = echo::grant(ctl);
                    let _ = ctl.accept_auth(peer, g);
                }
                None::<()>
            })
            .unwrap();
    }
    let ids = client.join().unwrap();
    let want: Vec<Option<u32>> = (100..300).map(Some).collect();
    assert_eq!(ids, want);
    assert_eq!(server.stats().stalled, 0);
}
