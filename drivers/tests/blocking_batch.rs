//! The blocking driver's batched path (`run_batched`: `recvmmsg` → `Server::handle_batch` →
//! `sendmmsg`) against its one-at-a-time loop (`run`), on 127.0.0.1: the same events,
//! application values, replies and counters for the same datagrams; timers that run while
//! datagrams keep coming; a zero limit; events after the closure asked to stop.
#![cfg(target_os = "linux")]

#[path = "support/accept.rs"]
mod accept;

use std::fmt;
use std::hash::Hash;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant as WallClock};

use accept::token_of;
use tether_net::game::wire::{Control, Reason, Token};
use tether_net::game::{CloseCause, Server, ServerApp, ServerConfig, ServerEvent, TokenSecret};
use tether_net::testing::control_packet as control;
use tether_net_drivers::blocking::{DatagramPeer, Input, UdpDriver};

/// Clients in the differential test: more than a batch (32) and more than the server's queue of
/// stateless replies (16), so a CONNECT burst read in one batch would overflow that queue if
/// the driver drained only at the end of the batch
const CLIENTS: usize = 40;

fn config() -> ServerConfig {
    // a constant secret is for tests only; a real server draws it from a random source
    ServerConfig::new(TokenSecret([7; 16]))
        // no timer frames during the test: what the server sends depends on the datagrams only
        .with_keep_alive(Duration::from_secs(60))
        .with_timeout(Duration::from_secs(60))
}

fn connect() -> Vec<u8> {
    control(Control::Connect, Some(Token::UNKNOWN))
}

/// Give loopback delivery a moment (under heavy load the kernel may finish it in `ksoftirqd`
/// rather than inside `send`), for tests that read what was sent without waiting
fn settle() {
    std::thread::sleep(Duration::from_millis(50));
}

fn recv_one(sock: &UdpSocket) -> Vec<u8> {
    let mut b = [0u8; 2048];
    let n = sock
        .recv(&mut b)
        .expect("a reply within 5 s (a lost CONNECT_ACCEPT?)");
    b[..n].to_vec()
}

fn clients(n: usize, server: SocketAddr) -> Vec<UdpSocket> {
    (0..n)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").expect("client socket");
            s.connect(server).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s
        })
        .collect()
}

/// What one server run produced
#[derive(Debug, PartialEq)]
struct Outcome {
    /// Every event and application value handed to the closure, in order
    log: Vec<String>,
    /// Every datagram each client received, in order
    replies: Vec<Vec<Vec<u8>>>,
    stats: tether_net::game::ServerStats,
    received: u64,
    sent: u64,
}

/// The script: a burst of CONNECTs queued before the server runs, then ACCEPTs, KEEP_ALIVEs
/// (one with a wrong token), a CLOSE with a reason, and a CLOSE "end" on which the server shuts
/// down; every client still in the table reads the shutdown CLOSE
fn script<P>(
    batched: bool,
    batch: usize,
    clients_v: &[UdpSocket],
    server_sock: UdpSocket,
) -> Outcome
where
    P: DatagramPeer + Hash + fmt::Display + fmt::Debug + Send + 'static,
{
    let driver = UdpDriver::new(Server::<P>::new(config()), server_sock);
    let mut driver = driver.with_batch_size(batch);
    // queued before the server reads: its first recvmmsg takes up to a whole batch
    for c in clients_v {
        c.send(&connect()).unwrap();
    }
    let server = std::thread::spawn(move || {
        let mut log = Vec::new();
        let f = |srv: &mut Server<P>, now: tether_net::Instant, input: Input<'_, Server<P>>| {
            match input {
                Input::Event(e) => {
                    log.push(format!("{e:?}"));
                    if e == ServerEvent::ShutdownComplete {
                        return Some(());
                    }
                }
                Input::App(peer, app) => {
                    log.push(format!("app {peer} {app:?}"));
                    if let ServerApp::Close { reason } = app {
                        if reason.as_bytes() == b"end" {
                            srv.shutdown(now, "stop").unwrap();
                        }
                    }
                }
            }
            None
        };
        let done = if batched {
            driver.run_batched(Duration::from_secs(20), f)
        } else {
            driver.run(Duration::from_secs(20), f)
        };
        assert_eq!(done.unwrap(), Some(()), "no shutdown within 20 s");
        (log, driver)
    });
    let mut replies: Vec<Vec<Vec<u8>>> = vec![Vec::new(); clients_v.len()];
    let mut tokens = Vec::new();
    for (i, c) in clients_v.iter().enumerate() {
        let r = recv_one(c);
        tokens.push(token_of(&r));
        replies[i].push(r);
    }
    for (c, t) in clients_v.iter().zip(&tokens) {
        c.send(&control(Control::Accept, Some(*t))).unwrap();
    }
    for _ in 0..3 {
        for (c, t) in clients_v.iter().zip(&tokens) {
            c.send(&control(Control::KeepAlive, Some(*t))).unwrap();
        }
    }
    let wrong = Token([tokens[0].0[0] ^ 1, 2, 3, 4]);
    clients_v[0]
        .send(&control(Control::KeepAlive, Some(wrong)))
        .unwrap();
    let bye = Control::Close(Reason::from_bytes(b"bye"));
    clients_v[1].send(&control(bye, Some(tokens[1]))).unwrap();
    let end = Control::Close(Reason::from_bytes(b"end"));
    clients_v[2].send(&control(end, Some(tokens[2]))).unwrap();
    // the shutdown CLOSE for every client still in the table
    for (i, c) in clients_v.iter().enumerate() {
        if i != 1 && i != 2 {
            replies[i].push(recv_one(c));
        }
    }
    let (log, driver) = server.join().expect("server thread");
    Outcome {
        log,
        replies,
        stats: driver.machine().stats(),
        received: driver.stats().received,
        sent: driver.stats().sent,
    }
}

#[test]
fn batched_and_one_at_a_time_loops_agree_on_events_replies_and_counters() {
    // the same client sockets (hence the same addresses and tokens) against two servers
    let s1 = UdpSocket::bind("127.0.0.1:0").expect("server socket");
    let s2 = UdpSocket::bind("127.0.0.1:0").expect("server socket");
    let c1 = clients(CLIENTS, s1.local_addr().unwrap());
    let one = script::<SocketAddr>(false, 1, &c1, s1);
    for c in &c1 {
        c.connect(s2.local_addr().unwrap()).unwrap();
    }
    let batched = script::<SocketAddr>(true, 32, &c1, s2);
    // tokens depend on the client address only, so everything compares byte for byte
    assert_eq!(one, batched);
    // and the run did what the script says
    assert_eq!(one.stats.keep_alives_received, 3 * CLIENTS as u64);
    assert_eq!(one.stats.dropped_wrong_token, 1);
    let connected = one
        .log
        .iter()
        .filter(|l| l.starts_with("Connected"))
        .count();
    assert_eq!(connected, CLIENTS);
    let bye = format!("app {} ", c1[1].local_addr().unwrap());
    assert!(
        one.log
            .iter()
            .any(|l| l.starts_with(&bye) && l.contains("bye")),
        "{:?}",
        one.log
    );
    assert_eq!(one.log.last().map(String::as_str), Some("ShutdownComplete"));
    // CONNECTs + ACCEPTs + 3 KEEP_ALIVEs each + wrong token + 2 CLOSEs
    assert_eq!(one.received, 5 * CLIENTS as u64 + 3);
    // CONNECT_ACCEPT each + the shutdown CLOSE to the 38 left
    assert_eq!(one.sent, 2 * CLIENTS as u64 - 2);
}

#[test]
fn a_server_keyed_by_socket_addr_v4_behaves_as_one_keyed_by_socket_addr() {
    // `SocketAddrV4` keys (8 bytes instead of 32) on an IPv4 socket: the same script and clients
    // give the same events, replies and counters in both loops
    let socks: Vec<UdpSocket> = (0..3)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("server socket"))
        .collect();
    let addrs: Vec<SocketAddr> = socks.iter().map(|s| s.local_addr().unwrap()).collect();
    let c = clients(CLIENTS, addrs[0]);
    let mut socks = socks.into_iter();
    let wide = script::<SocketAddr>(true, 32, &c, socks.next().unwrap());
    let mut narrow = Vec::new();
    for (batched, addr) in [(true, addrs[1]), (false, addrs[2])] {
        for s in &c {
            s.connect(addr).unwrap();
        }
        let batch = if batched { 32 } else { 1 };
        narrow.push(script::<SocketAddrV4>(
            batched,
            batch,
            &c,
            socks.next().unwrap(),
        ));
    }
    assert_eq!(wide.stats.keep_alives_received, 3 * CLIENTS as u64);
    // both loops over `SocketAddrV4` keys: byte for byte the same
    assert_eq!(narrow[0], narrow[1]);
    // against `SocketAddr` keys: the tokens differ (a token is a keyed hash of the key's `Hash`
    // stream, and `SocketAddr`'s starts with its variant), everything else is the same
    let shape = |o: &Outcome| {
        let log: Vec<String> = o.log.iter().map(|l| without_token(l)).collect();
        let sizes: Vec<Vec<usize>> = o
            .replies
            .iter()
            .map(|r| r.iter().map(Vec::len).collect())
            .collect();
        (log, sizes, o.stats, o.received, o.sent)
    };
    assert_eq!(shape(&narrow[0]), shape(&wide));
    assert_ne!(narrow[0].replies, wide.replies, "the tokens should differ");
}

/// A log line with the token's bytes left out
fn without_token(line: &str) -> String {
    match line.split_once("Token([") {
        Some((head, tail)) => {
            let rest = tail.split_once("])").map_or("", |(_, r)| r);
            format!("{head}Token(..){rest}")
        }
        None => line.to_owned(),
    }
}

/// An IPv4 key holds IPv4 senders only: an IPv6 one (IPv4-mapped included, whose replies an
/// IPv4 key could not address on the IPv6 socket it came through) is not a peer
#[test]
fn socket_addr_v4_keys_hold_ipv4_senders_only() {
    let v4: SocketAddr = "10.1.2.3:8303".parse().unwrap();
    let key = SocketAddrV4::from_addr(v4).expect("an IPv4 sender");
    assert_eq!(key, "10.1.2.3:8303".parse::<SocketAddrV4>().unwrap());
    assert_eq!(key.to_addr(), Some(v4));
    for v6 in ["[::ffff:10.1.2.3]:8303", "[::1]:8303", "[2001:db8::1]:8303"] {
        assert_eq!(SocketAddrV4::from_addr(v6.parse().unwrap()), None, "{v6}");
    }
    // the other keys take every sender
    let v6: SocketAddr = "[2001:db8::1]:8303".parse().unwrap();
    assert_eq!(SocketAddr::from_addr(v6), Some(v6));
    assert_eq!(<() as DatagramPeer>::from_addr(v6), Some(()));
}

/// A key that refuses senders on odd ports: it stands in for a key type that cannot hold some
/// sources (`SocketAddrV4` and IPv6 senders, which a test on 127.0.0.1 cannot produce)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct EvenPort(SocketAddrV4);

impl DatagramPeer for EvenPort {
    fn from_addr(addr: SocketAddr) -> Option<Self> {
        match addr {
            SocketAddr::V4(a) if a.port().is_multiple_of(2) => Some(EvenPort(a)),
            _ => None,
        }
    }
    fn to_addr(self) -> Option<SocketAddr> {
        Some(SocketAddr::V4(self.0))
    }
}

/// `n` client sockets on 127.0.0.1 whose ports are even (`even`) or odd
fn clients_by_port(n: usize, even: bool, server: SocketAddr) -> Vec<UdpSocket> {
    let mut v = Vec::new();
    while v.len() < n {
        let s = UdpSocket::bind("127.0.0.1:0").expect("client socket");
        if s.local_addr().unwrap().port().is_multiple_of(2) == even {
            s.connect(server).expect("connect");
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            v.push(s);
        }
    }
    v
}

/// Datagrams whose source the key cannot hold are dropped before the machine and counted, in
/// both loops; the datagrams around them in the same batch are handled, and application values
/// name their own senders (the batched loop hands the machine the kept datagrams only)
fn unkeyed_senders_are_dropped_and_counted(batched: bool) {
    let mut driver = UdpDriver::bind(Server::<EvenPort>::new(config()), "127.0.0.1:0")
        .expect("server socket")
        .with_batch_size(32);
    let server = driver.local_addr().unwrap();
    let odd = clients_by_port(3, false, server);
    let even = clients_by_port(3, true, server);
    let mut info = tether_net::game::connless::VANILLA_HEADER.to_vec();
    info.extend_from_slice(&tether_net::game::connless::TYPE_GETINFO);
    info.push(7);
    // queued before the server reads: odd and even senders alternate within one batch
    for (o, e) in odd.iter().zip(&even) {
        o.send(&connect()).unwrap();
        e.send(&info).unwrap();
        o.send(&info).unwrap();
        e.send(&connect()).unwrap();
    }
    settle();
    let mut asked = Vec::new();
    let f =
        |_: &mut Server<EvenPort>, _: tether_net::Instant, input: Input<'_, Server<EvenPort>>| {
            if let Input::App(peer, ServerApp::InfoRequest(_)) = input {
                asked.push(SocketAddr::V4(peer.0));
            }
            None::<()>
        };
    if batched {
        driver.run_batched(Duration::from_millis(200), f).unwrap();
    } else {
        driver.run(Duration::from_millis(200), f).unwrap();
    }
    let st = driver.stats();
    assert_eq!((st.received, st.unkeyed), (12, 6), "batched {batched}");
    let mut want: Vec<SocketAddr> = even.iter().map(|e| e.local_addr().unwrap()).collect();
    asked.sort();
    want.sort();
    assert_eq!(
        asked, want,
        "every even sender's request, named by its own address"
    );
    assert_eq!(driver.machine().stats().info_requests, 3);
    // the even senders' CONNECTs were answered, the odd ones' never reached the machine
    for e in &even {
        // (panics unless it is a token CONNECT_ACCEPT)
        token_of(&recv_one(e));
    }
    for o in &odd {
        let mut b = [0u8; 64];
        assert!(o.recv(&mut b).is_err(), "no reply to an unkeyed sender");
    }
}

#[test]
fn unkeyed_senders_are_dropped_and_counted_batched() {
    unkeyed_senders_are_dropped_and_counted(true);
}

#[test]
fn unkeyed_senders_are_dropped_and_counted_one_at_a_time() {
    unkeyed_senders_are_dropped_and_counted(false);
}

/// A peer's timeout passes while the server's socket holds 200 KEEP_ALIVEs of another peer:
/// the timeout must fire while they are being read, not once the socket is empty (a loop that
/// runs timers only when a read times out never runs them under steady load)
fn timeout_fires_with_datagrams_queued(batched: bool) {
    let config = ServerConfig::new(TokenSecret([8; 16]))
        .with_keep_alive(Duration::from_millis(100))
        .with_timeout(Duration::from_millis(200));
    let mut driver =
        UdpDriver::bind(Server::<SocketAddr>::new(config), "127.0.0.1:0").expect("server socket");
    let c = clients(2, driver.local_addr().unwrap());
    let run = |driver: &mut UdpDriver<Server<SocketAddr>>, limit, stop_on: Option<SocketAddr>| {
        let f = move |_: &mut Server<SocketAddr>,
                      _: tether_net::Instant,
                      input: Input<'_, Server<SocketAddr>>| match input {
            Input::Event(ServerEvent::Closed { peer, cause }) if Some(peer) == stop_on => {
                Some(cause)
            }
            _ => None,
        };
        if batched {
            driver.run_batched(limit, f).unwrap()
        } else {
            driver.run(limit, f).unwrap()
        }
    };
    for s in &c {
        s.send(&connect()).unwrap();
    }
    run(&mut driver, Duration::from_millis(50), None);
    let mut tokens = Vec::new();
    for s in &c {
        let t = token_of(&recv_one(s));
        s.send(&control(Control::Accept, Some(t))).unwrap();
        tokens.push(t);
    }
    run(&mut driver, Duration::from_millis(50), None);
    assert_eq!(driver.machine().peer_count(), 2);
    let ka = control(Control::KeepAlive, Some(tokens[0]));
    for _ in 0..200 {
        c[0].send(&ka).unwrap();
    }
    // past both peers' timeouts: the silent one's and the sender's, whose datagrams wait unread
    std::thread::sleep(Duration::from_millis(300));
    let before = driver.stats().received;
    let silent = c[1].local_addr().unwrap();
    let cause = run(&mut driver, Duration::from_secs(5), Some(silent));
    let read = driver.stats().received - before;
    assert_eq!(cause, Some(CloseCause::Timeout), "batched={batched}");
    assert!(
        read < 100,
        "batched={batched}: the timeout fired only after {read} of the 200 queued datagrams"
    );
}

#[test]
fn timers_run_while_datagrams_keep_coming_batched() {
    timeout_fires_with_datagrams_queued(true);
}

#[test]
fn timers_run_while_datagrams_keep_coming_one_at_a_time() {
    timeout_fires_with_datagrams_queued(false);
}

#[test]
fn a_zero_limit_handles_one_batch_without_waiting() {
    let mut driver = UdpDriver::bind(Server::<SocketAddr>::new(config()), "127.0.0.1:0")
        .expect("server socket")
        .with_batch_size(4);
    assert_eq!(driver.batch_size(), 4);
    let c = clients(6, driver.local_addr().unwrap());
    for s in &c {
        s.send(&connect()).unwrap();
    }
    settle();
    let t = WallClock::now();
    let none = driver
        .run_batched(Duration::ZERO, |_, _, _| Some(()))
        .unwrap();
    assert_eq!(none, None, "CONNECTs make no event");
    assert_eq!(driver.stats().received, 4, "one batch of 4");
    assert_eq!(driver.stats().batches, 1);
    assert_eq!(driver.stats().sent, 4, "their CONNECT_ACCEPTs went out");
    driver
        .run_batched(Duration::ZERO, |_, _, _| Some(()))
        .unwrap();
    assert_eq!(driver.stats().received, 6);
    driver
        .run_batched(Duration::ZERO, |_, _, _| Some(()))
        .unwrap();
    assert_eq!(driver.stats().received, 6, "nothing left");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    for s in &c {
        token_of(&recv_one(s));
    }
}

#[test]
fn events_after_the_closure_stopped_come_with_the_next_call() {
    let mut driver =
        UdpDriver::bind(Server::<SocketAddr>::new(config()), "127.0.0.1:0").expect("server socket");
    let c = clients(3, driver.local_addr().unwrap());
    for s in &c {
        s.send(&connect()).unwrap();
    }
    settle();
    driver
        .run_batched(Duration::ZERO, |_, _, _| Some(()))
        .unwrap();
    for s in &c {
        let t = token_of(&recv_one(s));
        s.send(&control(Control::Accept, Some(t))).unwrap();
    }
    settle();
    // the three ACCEPTs are queued: one batch feeds them all, the closure stops at the first
    // `Connected`, the other two wait in the backlog
    let mut peers = Vec::new();
    let connected = |_: &mut Server<SocketAddr>,
                     _: tether_net::Instant,
                     input: Input<'_, Server<SocketAddr>>| match input {
        Input::Event(ServerEvent::Connected { peer, .. }) => Some(peer),
        _ => None,
    };
    peers.push(driver.run_batched(Duration::ZERO, connected).unwrap());
    assert_eq!(driver.stats().received, 6, "all three ACCEPTs in one batch");
    peers.push(driver.run_batched(Duration::ZERO, connected).unwrap());
    peers.push(driver.run_batched(Duration::ZERO, connected).unwrap());
    assert_eq!(
        driver.stats().received,
        6,
        "from the backlog, no new datagram"
    );
    let mut want: Vec<_> = c.iter().map(|s| Some(s.local_addr().unwrap())).collect();
    want.sort();
    peers.sort();
    assert_eq!(peers, want);
    assert_eq!(driver.machine().peer_count(), 3);
}
