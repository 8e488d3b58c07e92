//! The blocking LongPort server driver's own contract, on 127.0.0.1: every `Ctl` command reaches
//! a real client over this driver (refused logins and reconnects, pushes, dropped transports,
//! shutdown), answers it cannot deliver are errors, a Close drains what was queued before it
//! (but a client that never reads is cut off after the linger), a reset is a closed transport,
//! and an idle loop sleeps
#![cfg(target_os = "linux")]

#[path = "support/attack.rs"]
mod attack;
#[path = "support/blocking_lp.rs"]
mod blocking_lp;
#[path = "support/echo.rs"]
mod echo;

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant as StdInstant};

use blocking_lp::{client, logged_in, server, unix_ms, until};

use tether_net::longport::wire::Packet;
use tether_net::longport::{
    ClientApp, ClientEvent, CloseCause, CloseCode, Error, LoginKind, ServerConfig, ServerEvent,
    Status,
};
use tether_net_drivers::blocking::{
    ConnId, Ctl, Input, ServerInput, ServerItem, ServerLimits, TcpServer,
};

const TOKEN: &str = "blocking-tcp-test";

/// Turn the server in 10 ms steps with `policy` until `client` finished (at most 15 s)
fn drive<T>(
    server: &mut TcpServer,
    client: &JoinHandle<T>,
    mut policy: impl FnMut(&mut Ctl<'_, 64, 256>, ServerItem),
) {
    let started = StdInstant::now();
    while !client.is_finished() && started.elapsed() < Duration::from_secs(15) {
        server
            .run(Duration::from_millis(10), |ctl, item| {
                policy(ctl, item);
                None::<()>
            })
            .unwrap();
    }
}

/// Three clients connect before the server's first turn: it accepts all three in that turn, and
/// an application that stops `run` at the first `Accepted` gets the other two from the next
/// calls
#[test]
fn connections_accepted_in_one_turn_are_each_handed_out_when_run_stops_early() {
    let (mut srv, addr) = server(ServerLimits::default());
    let socks: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut peers = Vec::new();
    for _ in 0..3 {
        let peer = srv
            .run(Duration::from_secs(5), |_, item| match item {
                ServerItem::Accepted { peer, remote, .. } => Some((peer, remote)),
                _ => None,
            })
            .unwrap();
        peers.extend(peer);
    }
    let mut want: Vec<SocketAddr> = socks.iter().map(|s| s.local_addr().unwrap()).collect();
    let mut got: Vec<SocketAddr> = peers.iter().map(|p| p.1).collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "{peers:?}");
    assert_eq!(srv.connections(), 3);
}

#[test]
fn a_refused_login_reaches_the_client_with_its_status_code_and_message() {
    let (mut srv, addr) = server(ServerLimits::default());
    let c = std::thread::spawn(move || {
        let mut d = client(addr, "not-the-token");
        let mut message = None;
        let failed = until(&mut d, |i| match i {
            Input::App(_, ClientApp::LoginError { message: m, .. }) => {
                message = Some(m.to_string());
                None
            }
            Input::Event(e @ ClientEvent::LoginFailed { .. }) => Some(e),
            Input::Event(e @ ClientEvent::Connected { .. }) => panic!("{e:?}"),
            _ => None,
        });
        (failed, message)
    });
    drive(&mut srv, &c, |ctl, item| {
        echo::answer(ctl, item, TOKEN, echo::Refusals::Panic);
    });
    let (failed, message) = c.join().unwrap();
    assert_eq!(
        failed,
        Some(ClientEvent::LoginFailed {
            kind: LoginKind::Auth,
            status: Status::Unauthenticated,
            code: Some(401),
        })
    );
    assert_eq!(message.as_deref(), Some("invalid token"));
}

/// The push is queued in the turn that answers the login, so it reaches the client in the same
/// segment as the login response: the client's `run` that stops at `Connected` must keep it for
/// the next `run`, not drop it
#[test]
fn a_push_reaches_the_client_and_ctl_tells_the_time_and_the_wall_clock() {
    let (mut srv, addr) = server(ServerLimits::default());
    // the driver's clock starts at the bind: 50 ms later it is at least 50 ms
    std::thread::sleep(Duration::from_millis(50));
    let (tx, rx) = mpsc::channel::<()>();
    let c = std::thread::spawn(move || {
        let mut d = client(addr, TOKEN);
        logged_in(&mut d);
        let mut pushes = Vec::new();
        until(&mut d, |i| match i {
            Input::App(_, ClientApp::Push { cmd, body, gzip }) => {
                pushes.push((cmd, body.to_vec(), gzip));
                (pushes.len() == 2).then_some(())
            }
            _ => None,
        });
        // hold the connection until the server looked at it
        let _ = rx.recv_timeout(Duration::from_secs(10));
        pushes
    });
    let mut seen = Vec::new();
    let mut connections = 0;
    let mut debug = String::new();
    let started = StdInstant::now();
    while !c.is_finished() && started.elapsed() < Duration::from_secs(15) {
        srv.run(Duration::from_millis(10), |ctl, item| {
            if let ServerItem::Event(ServerEvent::Connected { peer, .. }) = item {
                let unix_ms = unix_ms();
                seen.push((ctl.now(), ctl.wall_clock_ms(), unix_ms, format!("{ctl:?}")));
                ctl.push(peer, 42, b"news").unwrap();
                ctl.push(peer, 43, b"more news").unwrap();
            } else {
                echo::answer(ctl, item, TOKEN, echo::Refusals::Panic);
            }
            None::<()>
        })
        .unwrap();
        if !seen.is_empty() && connections == 0 {
            // the push went out in that turn; the client is still connected
            connections = srv.connections();
            debug = format!("{srv:?}");
            let _ = tx.send(());
        }
    }
    let pushes = c.join().unwrap();
    assert_eq!(
        pushes,
        [
            (42, b"news".to_vec(), false),
            (43, b"more news".to_vec(), false)
        ]
    );
    assert_eq!(connections, 1);
    assert!(debug.starts_with("TcpServer {"), "{debug}");
    assert!(debug.contains("connections: 1"), "{debug}");
    let [(now, wall, unix_ms, ctl_debug)] = &seen[..] else {
        panic!("one login: {seen:?}")
    };
    assert!(
        *now >= tether_net::Instant::ZERO + Duration::from_millis(50),
        "{now:?}"
    );
    assert!(*now <= srv.now(), "{now:?}");
    assert!(
        (wall - unix_ms).abs() < 2_000,
        "wall clock {wall} vs {unix_ms}"
    );
    assert!(ctl_debug.starts_with("Ctl { now:"), "{ctl_debug}");
}

#[test]
fn a_dropped_connection_reconnects_and_a_refused_reconnect_reaches_the_client() {
    let (mut srv, addr) = server(ServerLimits::default());
    let c = std::thread::spawn(move || {
        let mut d = client(addr, TOKEN);
        logged_in(&mut d);
        d.request(4, Duration::from_secs(5), b"drop me").unwrap();
        let mut message = None;
        let mut events = Vec::new();
        until(&mut d, |i| match i {
            Input::App(_, ClientApp::LoginError { message: m, .. }) => {
                message = Some(m.to_string());
                None
            }
            Input::Event(e @ ClientEvent::LoginFailed { .. }) => {
                events.push(e);
                Some(())
            }
            Input::Event(
                e @ (ClientEvent::Disconnected { .. } | ClientEvent::Connected { .. }),
            ) => {
                events.push(e);
                None
            }
            _ => None,
        });
        (events, message)
    });
    let mut closed = Vec::new();
    let mut first = None;
    drive(&mut srv, &c, |ctl, item| match item {
        ServerItem::Input(ServerInput::Request { peer, .. }) => {
            first = Some(peer);
            ctl.drop_connection(peer);
        }
        ServerItem::Event(ServerEvent::Closed { peer, cause }) => closed.push((peer, cause)),
        ServerItem::Input(ServerInput::Reconnect { peer, .. }) => ctl
            .reject_reconnect(peer, Status::Unauthenticated, 403, "session revoked")
            .unwrap(),
        item => {
            echo::answer(ctl, item, TOKEN, echo::Refusals::Panic);
        }
    });
    let (events, message) = c.join().unwrap();
    assert!(
        matches!(
            events[..],
            [
                ClientEvent::Disconnected {
                    cause: CloseCause::TransportClosed
                },
                ClientEvent::LoginFailed {
                    kind: LoginKind::Reconnect,
                    status: Status::Unauthenticated,
                    code: Some(403),
                }
            ]
        ),
        "{events:?}"
    );
    assert_eq!(message.as_deref(), Some("session revoked"));
    assert_eq!(
        closed.first(),
        Some(&(first.unwrap(), CloseCause::TransportClosed)),
        "{closed:?}"
    );
}

#[test]
fn shutdown_closes_every_connection_with_its_reason_and_refuses_new_ones() {
    let (mut srv, addr) = server(ServerLimits::default());
    let clients: Vec<JoinHandle<_>> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                let mut d = client(addr, TOKEN);
                logged_in(&mut d);
                let mut close = None;
                let ended = until(&mut d, |i| match i {
                    Input::App(_, ClientApp::Close { code, reason }) => {
                        close = Some((code, reason.to_string()));
                        None
                    }
                    Input::Event(e @ ClientEvent::Disconnected { .. }) => Some(e),
                    _ => None,
                });
                (close, ended)
            })
        })
        .collect();
    let mut logins = 0;
    let mut complete = 0;
    let mut closed = 0;
    let started = StdInstant::now();
    while clients.iter().any(|c| !c.is_finished()) && started.elapsed() < Duration::from_secs(15) {
        srv.run(Duration::from_millis(10), |ctl, item| {
            match item {
                ServerItem::Event(ServerEvent::Connected { .. }) => {
                    logins += 1;
                    if logins == 2 {
                        ctl.shutdown("maintenance").unwrap();
                    }
                }
                ServerItem::Event(ServerEvent::Closed { .. }) => closed += 1,
                ServerItem::Event(ServerEvent::ShutdownComplete) => complete += 1,
                item => {
                    echo::answer(ctl, item, TOKEN, echo::Refusals::Panic);
                }
            }
            None::<()>
        })
        .unwrap();
    }
    for c in clients {
        let (close, ended) = c.join().unwrap();
        assert_eq!(
            close,
            Some((CloseCode::ServerShutdown, "maintenance".to_string()))
        );
        assert!(
            matches!(
                ended,
                Some(ClientEvent::Disconnected {
                    cause: CloseCause::Peer { .. }
                })
            ),
            "{ended:?}"
        );
    }
    // a late connection is accepted by the kernel and closed unanswered by the driver
    let mut late = TcpStream::connect(addr).unwrap();
    late.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let reader = std::thread::spawn(move || late.read(&mut [0u8; 64]).map_err(|e| e.kind()));
    let started = StdInstant::now();
    while !reader.is_finished() && started.elapsed() < Duration::from_secs(6) {
        srv.run(Duration::from_millis(10), |_, item| {
            if let ServerItem::Event(ServerEvent::ShutdownComplete) = item {
                complete += 1;
            }
            None::<()>
        })
        .unwrap();
    }
    assert_eq!(
        reader.join().unwrap(),
        Ok(0),
        "the late connection was closed"
    );
    assert_eq!((closed, complete), (2, 1));
    assert_eq!(srv.connections(), 0);
}

#[test]
fn answers_the_driver_cannot_deliver_are_errors() {
    // an outbox of 4 KiB at most: an 8 KiB push cannot be queued
    let (mut srv, addr) = server(ServerLimits::default().with_outbox(1024, 4096));
    let c = std::thread::spawn(move || {
        let mut d = client(addr, TOKEN);
        logged_in(&mut d);
        d.request(4, Duration::from_secs(5), b"answer me").unwrap();
        until(&mut d, |i| match i {
            Input::Event(e @ ClientEvent::Disconnected { .. }) => Some(e),
            Input::App(_, ClientApp::Push { .. }) => panic!("the oversized push was sent"),
            _ => None,
        })
    });
    let mut answers = Vec::new();
    drive(&mut srv, &c, |ctl, item| match item {
        ServerItem::Input(ServerInput::Request { peer, .. }) => {
            let stranger: ConnId = peer + 1000;
            answers.push(ctl.push(stranger, 42, b"who?"));
            answers.push(ctl.respond(
                stranger,
                4,
                tether_net::longport::RequestId(7),
                Status::Success,
                b"who?",
            ));
            answers.push(ctl.push(peer, 42, &[7u8; 8192]));
        }
        item => {
            echo::answer(ctl, item, TOKEN, echo::Refusals::Panic);
        }
    });
    let ended = c.join().unwrap();
    assert!(
        matches!(
            ended,
            Some(ClientEvent::Disconnected {
                cause: CloseCause::TransportClosed
            })
        ),
        "{ended:?}"
    );
    assert!(
        matches!(
            answers[..],
            [
                Err(Error::UnknownPeer),
                Err(Error::UnknownPeer),
                Err(Error::Closed)
            ]
        ),
        "{answers:?}"
    );
    assert_eq!(srv.stats().stalled, 1, "{:?}", srv.stats());
}

/// A raw client the server pushed to and closed: it reads when told (`go`) and returns the
/// bytes it got
struct Closing {
    client: JoinHandle<Vec<u8>>,
    go: mpsc::Sender<()>,
}

/// Log a raw client in, push it `chunks` pushes of `len` bytes (cmd 42, each filled with its
/// index) while it does not read, then close it with "the end"
fn login_push_close(
    srv: &mut TcpServer,
    addr: SocketAddr,
    chunks: usize,
    len: usize,
) -> Result<Closing, String> {
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let client = std::thread::spawn(move || {
        // a client that does not read: its receive buffer stays at its initial size, the
        // server's send buffer at most `tcp_wmem`'s maximum; the rest waits in the outbox
        let mut s = attack::raw_login(addr, TOKEN);
        let _ = go_rx.recv_timeout(Duration::from_secs(20));
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return got,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    });
    let mut peer = None;
    let started = StdInstant::now();
    while peer.is_none() && started.elapsed() < Duration::from_secs(10) {
        srv.run(Duration::from_millis(10), |ctl, item| {
            if let ServerItem::Event(ServerEvent::Connected { peer: p, .. }) = item {
                peer = Some(p);
            } else {
                echo::answer(ctl, item, TOKEN, echo::Refusals::Panic);
            }
            None::<()>
        })
        .unwrap();
    }
    let peer = peer.ok_or("no login")?;
    // let the login response and the client's SO_RCVBUF settle
    srv.run(Duration::from_millis(100), |_, _| None::<()>)
        .unwrap();
    srv.command(|ctl| {
        for i in 0..chunks {
            ctl.push(peer, 42, &vec![i as u8; len])
                .map_err(|e| format!("push {i}: {e}"))?;
        }
        ctl.close(peer, CloseCode::ServerShutdown, "the end")
            .map_err(|e| e.to_string())
    })?;
    Ok(Closing { client, go: go_tx })
}

/// The pushes (cmd 42) in `bytes`, as (index byte, length), and the Close reason if one came
fn packets(bytes: &[u8]) -> (Vec<(u8, usize)>, Option<String>) {
    let (mut pushes, mut close) = (Vec::new(), None);
    let mut at = 0;
    while let Ok((p, used)) = Packet::parse(&bytes[at..], 1 << 20) {
        match p.header.cmd {
            42 => pushes.push((p.body.first().copied().unwrap_or(0), p.body.len())),
            0 => close = Some(String::from_utf8_lossy(p.body).into_owned()),
            _ => {}
        }
        at += used;
    }
    (pushes, close)
}

const CHUNK: usize = 64 * 1024;

/// How many pushes of `CHUNK` bytes the closing tests queue: 12 MiB, or three times the most a
/// socket's send buffer may grow to (`tcp_wmem`'s maximum, 4 MiB by default), so that most of it
/// is still in the driver's outbox when the connection closes
fn chunks() -> usize {
    let wmem_max = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse::<usize>().ok())
        .unwrap_or(4 << 20);
    (3 * wmem_max / CHUNK).max(192)
}

/// Queue `chunks()` pushes to a client that does not read, close it, run the server for `wait`,
/// then let the client read: the bytes it got before the end of the stream, the pushes among
/// them and the Close reason if one came
fn close_with_linger(
    linger: Duration,
    wait: Duration,
) -> (usize, Vec<(u8, usize)>, Option<String>) {
    let limits = ServerLimits::default()
        .with_outbox(64 * 1024, 16 << 20)
        .with_stall_timeout(Duration::from_secs(60))
        .with_close_linger(linger);
    let (mut srv, addr) = server(limits);
    let closing = login_push_close(&mut srv, addr, chunks(), CHUNK).unwrap();
    // the connection is closed for the machine; its socket lingers with the outbox
    srv.run(wait, |_, _| None::<()>).unwrap();
    assert_eq!(srv.connections(), 0);
    closing.go.send(()).unwrap();
    let started = StdInstant::now();
    while !closing.client.is_finished() && started.elapsed() < Duration::from_secs(20) {
        srv.run(Duration::from_millis(10), |_, _| None::<()>)
            .unwrap();
    }
    let got = closing.client.join().unwrap();
    let (pushes, close) = packets(&got);
    (got.len(), pushes, close)
}

#[test]
fn everything_queued_before_a_close_reaches_a_client_that_reads_late() {
    let (bytes, pushes, close) =
        close_with_linger(Duration::from_secs(20), Duration::from_millis(300));
    let want: Vec<(u8, usize)> = (0..chunks()).map(|i| (i as u8, CHUNK)).collect();
    assert_eq!(pushes.len(), chunks(), "{bytes} bytes");
    assert_eq!(pushes, want);
    let close = close.expect("the Close came after the pushes");
    assert!(close.contains("the end"), "{close:?}");
}

#[test]
fn a_client_that_never_reads_its_close_is_cut_off_after_the_linger() {
    // past the linger the socket is shut with most of the outbox unsent
    let (bytes, pushes, close) =
        close_with_linger(Duration::from_millis(500), Duration::from_millis(1500));
    eprintln!(
        "the client got {bytes} of {} bytes before the end of the stream",
        chunks() * CHUNK
    );
    assert!(
        pushes.len() < chunks() / 2,
        "{} pushes arrived",
        pushes.len()
    );
    assert_eq!(close, None);
}

#[test]
fn a_client_that_resets_its_connection_is_reported_closed() {
    let (mut srv, addr) = server(ServerLimits::default());
    let (tx, rx) = mpsc::channel::<()>();
    let c = std::thread::spawn(move || {
        let s = attack::raw_login(addr, TOKEN);
        let _ = rx.recv_timeout(Duration::from_secs(10));
        // SO_LINGER 0: close sends a RST
        nix::sys::socket::setsockopt(
            &s,
            nix::sys::socket::sockopt::Linger,
            &nix::libc::linger {
                l_onoff: 1,
                l_linger: 0,
            },
        )
        .unwrap();
        drop(s);
    });
    let mut events = Vec::new();
    let started = StdInstant::now();
    while started.elapsed() < Duration::from_secs(10)
        && !events
            .iter()
            .any(|e| matches!(e, ServerEvent::Closed { .. }))
    {
        srv.run(Duration::from_millis(10), |ctl, item| {
            match item {
                ServerItem::Event(e) => {
                    if let ServerEvent::Connected { .. } = e {
                        let _ = tx.send(());
                    }
                    events.push(e);
                }
                item => {
                    echo::answer(ctl, item, TOKEN, echo::Refusals::Panic);
                }
            }
            None::<()>
        })
        .unwrap();
    }
    c.join().unwrap();
    assert!(
        matches!(
            events[..],
            [
                ServerEvent::Connected { .. },
                ServerEvent::Closed {
                    cause: CloseCause::TransportClosed,
                    ..
                }
            ]
        ),
        "{events:?}"
    );
    assert_eq!(srv.connections(), 0);
}

fn thread_cpu() -> Duration {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).unwrap();
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

#[test]
fn an_idle_server_sleeps_and_its_run_lasts_the_limit() {
    let (mut srv, _) = server(ServerLimits::default());
    let (cpu, started) = (thread_cpu(), StdInstant::now());
    let r = srv
        .run(Duration::from_millis(500), |_, _| Some(()))
        .unwrap();
    let (cpu, took) = (thread_cpu() - cpu, started.elapsed());
    eprintln!("an idle run of 500 ms took {took:?} and {cpu:?} of CPU");
    assert_eq!(r, None);
    assert!(took >= Duration::from_millis(500), "{took:?}");
    // a loop that naps 1 ms per idle turn uses a few percent of a core, one that spins all of it
    assert!(cpu < took / 5, "{cpu:?} of CPU in {took:?}");
}

/// A listener that can no longer accept (shut for reading: `accept` fails with EINVAL) ends
/// `run` with that error instead of a loop that spins on it or drops it
#[test]
fn a_listener_that_fails_for_good_ends_run_with_its_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
    let mut srv: TcpServer =
        TcpServer::with_capacities(listener, ServerConfig::new(), ServerLimits::default()).unwrap();
    assert_eq!(
        srv.run(Duration::from_millis(10), |_, _| None::<()>)
            .unwrap(),
        None
    );
    nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Read).unwrap();
    let r = srv.run(Duration::from_secs(1), |_, _| None::<()>);
    assert_eq!(
        r.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::InvalidInput)
    );
}
