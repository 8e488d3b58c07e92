//! The blocking LongPort client driver's own contract against our blocking server on 127.0.0.1:
//! `call` picks its own outcome among other requests' answers and timeouts (and keeps the
//! events it passes), a dropped connection ends a `call` instead of hanging it, the token source
//! answers a refused login, read timeouts are not losses, a closed client closes its socket, and
//! the counters count

#[path = "support/blocking_lp.rs"]
mod blocking_lp;
#[path = "support/echo.rs"]
mod echo;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant as StdInstant};

use tether_net::longport::{
    Client, ClientConfig, ClientEvent, CloseCause, Credentials, LoginKind, ServerEvent, Status,
};
use tether_net_drivers::blocking::{Ctl, Input, ServerInput, ServerItem, ServerLimits, TcpClient};

const TOKEN: &str = "blocking-tcp-client-test";

/// Our server on a thread: cmd 5 is answered 300 ms late, cmd 6 with status 7 (an internal error), cmd 7
/// drops the connection, cmd 9 is never answered, every other request is echoed; the server's
/// events are recorded
struct Server {
    addr: SocketAddr,
    events: Arc<Mutex<Vec<ServerEvent<u64>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

type Held = (
    u64,
    u8,
    tether_net::longport::RequestId,
    Vec<u8>,
    StdInstant,
);

fn policy(ctl: &mut Ctl<'_, 64, 256>, item: ServerItem, held: &mut Vec<Held>) {
    match item {
        ServerItem::Input(ServerInput::Request {
            peer,
            request_id,
            cmd,
            body,
            ..
        }) => match cmd {
            5 => held.push((peer, cmd, request_id, body, StdInstant::now())),
            6 => {
                let _ = ctl.respond(peer, cmd, request_id, Status::ServerInternalError, b"");
            }
            7 => ctl.drop_connection(peer),
            9 => {}
            _ => {
                let _ = ctl.respond(peer, cmd, request_id, Status::Success, &body);
            }
        },
        item => {
            echo::answer(ctl, item, TOKEN, echo::Refusals::Ignore);
        }
    }
}

impl Server {
    fn start() -> Server {
        let (mut srv, addr) = blocking_lp::server(ServerLimits::default());
        let events = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (e, s) = (events.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut held: Vec<Held> = Vec::new();
            while !s.load(Ordering::Relaxed) {
                srv.run(Duration::from_millis(10), |ctl, item| {
                    if let ServerItem::Event(ev) = item {
                        e.lock().unwrap().push(ev);
                    }
                    policy(ctl, item, &mut held);
                    None::<()>
                })
                .unwrap();
                srv.command(|ctl| {
                    held.retain(|(peer, cmd, id, body, at)| {
                        let due = at.elapsed() >= Duration::from_millis(300);
                        if due {
                            let _ = ctl.respond(*peer, *cmd, *id, Status::Success, body);
                        }
                        !due
                    });
                });
            }
        });
        Server {
            addr,
            events,
            stop,
            thread: Some(thread),
        }
    }

    fn events(&self) -> Vec<ServerEvent<u64>> {
        self.events.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A client logged in to `addr` with `TOKEN`
fn logged_in(addr: SocketAddr) -> TcpClient {
    let mut d = blocking_lp::client(addr, TOKEN);
    blocking_lp::logged_in(&mut d);
    d
}

#[test]
fn call_returns_its_own_outcome_and_keeps_the_events_it_passes() {
    let srv = Server::start();
    let mut d = logged_in(srv.addr);
    assert!(d.is_open());
    // the login was written through the drain and counted there
    assert!(d.stats().bytes_sent > TOKEN.len() as u64, "{:?}", d.stats());
    let unix_ms = blocking_lp::unix_ms();
    let wall = d.machine().wall_clock_ms(d.now()).unwrap();
    assert!(
        (wall - unix_ms).abs() < 2_000,
        "wall clock {wall} vs {unix_ms}"
    );

    // an answer to an earlier request arrives first: call waits for its own
    d.request(4, Duration::from_secs(5), b"first").unwrap();
    assert_eq!(
        d.call(5, Duration::from_secs(5), b"second").unwrap(),
        b"second"
    );
    // another request times out while call waits: call goes on, the event is kept
    let never = d.request(9, Duration::from_millis(100), b"never").unwrap();
    assert_eq!(d.call(5, Duration::from_secs(5), b"late").unwrap(), b"late");
    assert_eq!(
        d.next_event(Duration::from_secs(1)).unwrap(),
        Some(ClientEvent::RequestTimedOut { id: never })
    );
    // a request is counted as written at once: an 11-byte header and its body
    let before = d.stats().bytes_sent;
    d.request(4, Duration::from_secs(5), &[1; 100]).unwrap();
    assert_eq!(d.stats().bytes_sent - before, 111);
    // a body larger than the driver's first request buffer (1 KiB)
    let big = vec![0x5a; 8 * 1024];
    assert_eq!(d.call(4, Duration::from_secs(5), &big).unwrap(), big);
    // an error status
    let e = d.call(6, Duration::from_secs(5), b"fail").unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::Other);
    assert!(e.to_string().contains("status"), "{e}");
    // its own timeout
    let e = d
        .call(9, Duration::from_millis(100), b"silence")
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);

    let stats = d.stats();
    assert_eq!((stats.dials, stats.dial_errors), (1, 0), "{stats:?}");
    assert!(stats.bytes_sent > 8 * 1024, "{stats:?}");
    assert!(stats.bytes_received > 8 * 1024, "{stats:?}");
    let debug = format!("{d:?}");
    assert!(debug.starts_with("TcpClient {"), "{debug}");
    assert!(debug.contains("open: true"), "{debug}");
}

#[test]
fn a_call_whose_connection_drops_ends_instead_of_hanging() {
    let srv = Server::start();
    let addr = srv.addr;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut d = logged_in(addr);
        let _ = tx.send(d.call(7, Duration::from_secs(30), b"drop me"));
    });
    let r = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("call returned");
    assert_eq!(
        r.map_err(|e| e.kind()),
        Err(io::ErrorKind::ConnectionAborted)
    );
}

#[test]
fn the_token_source_answers_a_refused_login() {
    let srv = Server::start();
    let mut d = TcpClient::new(Client::new(ClientConfig::tcp()), srv.addr)
        .unwrap()
        .with_token_source(|| Some(TOKEN.to_string()));
    d.command(|c, now| c.connect(now, Credentials::new("stale-token")))
        .unwrap();
    let mut seen = Vec::new();
    let up = d
        .run(Duration::from_secs(10), |_, _, i| match i {
            Input::Event(e @ ClientEvent::Connected { .. }) => Some(e),
            Input::Event(e) => {
                seen.push(e);
                None
            }
            _ => None,
        })
        .unwrap();
    assert!(
        matches!(
            up,
            Some(ClientEvent::Connected {
                via: LoginKind::Auth,
                ..
            })
        ),
        "{up:?} after {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|e| matches!(e, ClientEvent::LoginFailed { .. })),
        "{seen:?}"
    );
    assert_eq!(d.stats().dials, 2, "{:?}", d.stats());
}

/// A loop that waits for input past its read timeout has not lost its transport
#[test]
fn read_timeouts_of_an_idle_client_are_not_losses() {
    let srv = Server::start();
    let mut d = logged_in(srv.addr);
    for _ in 0..5 {
        let r = d
            .run(Duration::from_millis(100), |_, _, i| match i {
                Input::Event(e) => Some(e),
                _ => None,
            })
            .unwrap();
        assert_eq!(r, None);
    }
    assert!(d.is_open());
    assert_eq!(d.stats().dials, 1);
}

/// The client closes while the application keeps the driver: the socket is closed all the
/// same, and the server sees the connection end
#[test]
fn a_closed_client_closes_its_socket_while_the_driver_is_kept() {
    let srv = Server::start();
    let mut d = logged_in(srv.addr);
    d.command(|c, now| c.close(now, "bye")).unwrap();
    let closed = d
        .run(Duration::from_secs(5), |_, _, i| match i {
            Input::Event(e @ ClientEvent::Closed { .. }) => Some(e),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        closed,
        Some(ClientEvent::Closed {
            cause: CloseCause::Local
        })
    );
    assert!(!d.is_open());
    let started = StdInstant::now();
    while started.elapsed() < Duration::from_secs(5)
        && !srv
            .events()
            .iter()
            .any(|e| matches!(e, ServerEvent::Closed { .. }))
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        srv.events()
            .iter()
            .any(|e| matches!(e, ServerEvent::Closed { .. })),
        "{:?}",
        srv.events()
    );
    drop(d);
}

#[test]
fn failed_dials_are_counted() {
    // a port nobody listens on
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = ClientConfig::tcp()
        .with_reconnect_backoff(Duration::from_millis(10), Duration::from_millis(20));
    let mut d = TcpClient::new(Client::new(config), addr).unwrap();
    assert!(!d.is_open());
    d.command(|c, now| c.connect(now, Credentials::new(TOKEN)))
        .unwrap();
    let mut attempts = 0;
    d.run(Duration::from_secs(5), |_, _, i| {
        if let Input::Event(ClientEvent::ConnectTransport { .. }) = i {
            attempts += 1;
        }
        (attempts == 3).then_some(())
    })
    .unwrap();
    // the third attempt's dial is made in the next run
    d.run(Duration::from_millis(50), |_, _, _| None::<()>)
        .unwrap();
    let stats = d.stats();
    assert_eq!(attempts, 3);
    assert!(stats.dial_errors >= 3, "{stats:?}");
    assert_eq!(stats.dials, 0, "{stats:?}");
    assert!(!d.is_open());
}

#[test]
fn a_login_larger_than_the_frame_buffer_grows_it() {
    // 3,000 bytes of token: the login packet is larger than the driver's 1 KiB frame buffer, so
    // the drain reports `BufferTooSmall` and the driver grows the buffer (a machine with room
    // for such a token: the default one refuses it)
    let token: &'static str = Box::leak("t".repeat(3000).into_boxed_str());
    let (srv, addr) = blocking_lp::server(ServerLimits::default());
    let running = echo::Running::start(srv, token, echo::Refusals::Panic);
    let machine: Client<16, 16, 4096> = Client::with_capacities(ClientConfig::tcp());
    let mut d = TcpClient::new(machine, addr).unwrap();
    d.command(|c, now| c.connect(now, Credentials::new(token)))
        .unwrap();
    let up = d
        .run(Duration::from_secs(10), |_, _, i| match i {
            Input::Event(e @ ClientEvent::Connected { .. }) => Some(Ok(e)),
            Input::Event(
                e @ (ClientEvent::LoginFailed { .. } | ClientEvent::Disconnected { .. }),
            ) => Some(Err(e)),
            _ => None,
        })
        .unwrap();
    assert!(matches!(up, Some(Ok(_))), "no login: {up:?}");
    assert!(d.stats().bytes_sent > 3000, "{:?}", d.stats());
    running.stop();
}
