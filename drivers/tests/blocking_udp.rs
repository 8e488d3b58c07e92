//! The blocking datagram driver's own contract on 127.0.0.1, apart from the machines it drives:
//! sends that fail are counted and the loop goes on (UDP is lossy); a `QueueFull` refusal is fed
//! again after a drain and any other refusal ends the run; `next_event`; a new batch size takes
//! effect at the next `run_batched`.

use std::collections::VecDeque;
use std::fmt;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use tether_net::game::wire::{Control, Token};
use tether_net::game::{Client, ClientConfig, ClientEvent, Server, ServerConfig, TokenSecret};
use tether_net::testing::control_packet as control;
use tether_net::{BufferTooSmall, Instant, Machine, Received, Transmit};
use tether_net_drivers::blocking::{DatagramPeer, Input, UdpDriver};
use tether_net_drivers::QueueFull;

/// A key whose frames go to port 0 of its host, which no socket can send to (`sendto` fails with
/// `EINVAL` at once): every frame the server sends to it is a send error
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Unsendable(SocketAddrV4);

impl DatagramPeer for Unsendable {
    fn from_addr(addr: SocketAddr) -> Option<Self> {
        match addr {
            SocketAddr::V4(a) => Some(Unsendable(a)),
            SocketAddr::V6(_) => None,
        }
    }
    fn to_addr(self) -> Option<SocketAddr> {
        Some(SocketAddr::V4(SocketAddrV4::new(*self.0.ip(), 0)))
    }
}

fn config() -> ServerConfig {
    // a constant secret is for tests only; a real server draws it from a random source
    ServerConfig::new(TokenSecret([9; 16]))
}

/// Three clients send a CONNECT each before the server runs for `limit`: three
/// CONNECT_ACCEPTs that cannot be sent
fn failing_sends(batched: bool) -> tether_net_drivers::blocking::UdpStats {
    let mut d = UdpDriver::bind(Server::<Unsendable>::new(config()), "127.0.0.1:0").unwrap();
    let addr = d.local_addr().unwrap();
    let clients: Vec<UdpSocket> = (0..3)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("client socket"))
        .collect();
    for c in &clients {
        c.send_to(&control(Control::Connect, Some(Token::UNKNOWN)), addr)
            .unwrap();
    }
    let limit = Duration::from_millis(400);
    let stop: Option<()> = if batched {
        #[cfg(target_os = "linux")]
        {
            d.run_batched(limit, |_, _, _| None).unwrap()
        }
        #[cfg(not(target_os = "linux"))]
        unreachable!("run_batched is Linux only")
    } else {
        d.run(limit, |_, _, _| None).unwrap()
    };
    assert_eq!(stop, None);
    // the machine handed out a CONNECT_ACCEPT for each CONNECT (stateless: no peer, no event)
    assert_eq!(d.machine().stats().connect_accepts_sent, 3);
    d.stats()
}

#[test]
fn failed_sends_are_counted_and_the_loop_goes_on() {
    let s = failing_sends(false);
    assert_eq!((s.received, s.sent, s.send_errors), (3, 0, 3), "{s:?}");
}

#[cfg(target_os = "linux")]
#[test]
fn failed_sends_are_counted_and_the_loop_goes_on_batched() {
    let s = failing_sends(true);
    assert_eq!((s.received, s.sent, s.send_errors), (3, 0, 3), "{s:?}");
    // one `sendmmsg` per failed frame: a failure drops the first frame and sends the rest again
    assert!((1..=3).contains(&s.send_calls), "{s:?}");
}

#[test]
fn next_event_hands_out_the_next_event_and_none_after_the_limit() {
    // no keep-alives either way during the test, so every count below is exact however slowly
    // the threads run
    let quiet = config()
        .with_keep_alive(Duration::from_secs(60))
        .with_timeout(Duration::from_secs(60));
    let mut server = UdpDriver::bind(Server::<SocketAddr>::new(quiet), "127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let thread = std::thread::spawn(move || {
        // the server's own events, for 1.5 s
        let mut events = Vec::new();
        while let Some(e) = server.next_event(Duration::from_millis(1500)).unwrap() {
            events.push(e);
        }
        (events, server.stats())
    });
    let client = Client::new(ClientConfig::new().with_keep_alive(Duration::from_secs(60)));
    let mut c = UdpDriver::connect(client, addr).unwrap();
    c.try_command(|c, now| c.connect(now)).unwrap();
    let first = c.next_event(Duration::from_secs(5)).unwrap();
    assert!(
        matches!(first, Some(ClientEvent::Connected { .. })),
        "{first:?}"
    );
    // nothing else happens to a connected client in 100 ms
    assert_eq!(c.next_event(Duration::from_millis(100)).unwrap(), None);
    // CONNECT and ACCEPT sent, the CONNECT_ACCEPT received
    let s = c.stats();
    assert_eq!((s.sent, s.send_errors, s.received), (2, 0, 1), "{s:?}");
    let (events, ss) = thread.join().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        matches!(events[0], tether_net::game::ServerEvent::Connected { .. }),
        "{events:?}"
    );
    // the CONNECT_ACCEPT only; CONNECT and ACCEPT received
    assert_eq!((ss.sent, ss.send_errors, ss.received), (1, 0, 2), "{ss:?}");
    // the Debug form names the driver and its counters
    let shown = format!("{c:?}");
    assert!(
        shown.starts_with("UdpDriver") && shown.contains("sent: 2"),
        "{shown}"
    );
}

/// Why [`Picky`] refuses an input
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PickyError {
    QueueFull,
    Broken,
}

impl fmt::Display for PickyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PickyError::QueueFull => "queue full",
            PickyError::Broken => "broken input",
        })
    }
}

impl QueueFull for PickyError {
    fn is_queue_full(&self) -> bool {
        *self == PickyError::QueueFull
    }
}

/// A machine that refuses every datagram once with `QueueFull`, as a machine whose queue is full
/// does, and takes it when it is fed again (its bytes are the application value); `broken` is
/// refused with another error
#[derive(Default)]
struct Picky {
    refused: bool,
    refusals: u32,
    events: VecDeque<()>,
}

impl Machine for Picky {
    type Peer = SocketAddr;
    type Event = ();
    type App<'a> = &'a [u8];
    type Error = PickyError;

    fn handle_input<'a>(
        &mut self,
        _now: Instant,
        _from: SocketAddr,
        data: &'a [u8],
    ) -> Result<Received<&'a [u8]>, PickyError> {
        if data == b"broken" {
            return Err(PickyError::Broken);
        }
        if !self.refused {
            self.refused = true;
            self.refusals += 1;
            return Err(PickyError::QueueFull);
        }
        self.refused = false;
        Ok(Received::with_app(data.len(), data))
    }

    fn handle_timeout(&mut self, _now: Instant) {}

    fn poll_transmit(
        &mut self,
        _now: Instant,
        _buf: &mut [u8],
    ) -> Result<Option<Transmit<SocketAddr>>, BufferTooSmall> {
        Ok(None)
    }

    fn poll_event(&mut self) -> Option<()> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

#[test]
fn a_queue_full_refusal_is_fed_again_and_any_other_refusal_ends_the_run() {
    let mut d = UdpDriver::bind(Picky::default(), "127.0.0.1:0").unwrap();
    let addr = d.local_addr().unwrap();
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    for m in [&b"one"[..], b"two", b"three"] {
        c.send_to(m, addr).unwrap();
    }
    let mut apps = Vec::new();
    let r = d
        .run(Duration::from_millis(300), |_, _, input| {
            if let Input::App(from, app) = input {
                apps.push((from, app.to_vec()));
            }
            None::<()>
        })
        .unwrap();
    assert_eq!(r, None);
    // each once, in order, from its sender, after one refusal each
    let from = c.local_addr().unwrap();
    assert_eq!(
        apps,
        [
            (from, b"one".to_vec()),
            (from, b"two".to_vec()),
            (from, b"three".to_vec())
        ]
    );
    assert_eq!(d.machine().refusals, 3);
    assert_eq!((d.stats().received, d.stats().retried), (3, 3));
    // a refusal that draining cannot cure ends the run with the machine's error
    c.send_to(b"broken", addr).unwrap();
    let e = d
        .run(Duration::from_secs(2), |_, _, _| None::<()>)
        .expect_err("the machine refused the datagram");
    assert_eq!(e.to_string(), "broken input");
    assert_eq!((d.stats().received, d.stats().retried), (4, 3));
}

#[cfg(target_os = "linux")]
#[test]
fn a_new_batch_size_takes_effect_at_the_next_run_batched() {
    let mut d = UdpDriver::bind(Server::<SocketAddr>::new(config()), "127.0.0.1:0").unwrap();
    let addr = d.local_addr().unwrap();
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    // ten datagrams the server drops as malformed (no reply), queued before each run
    let burst = || {
        for _ in 0..10 {
            c.send_to(&[0x10, 0, 0], addr).unwrap();
        }
        // loopback delivery may finish in softirq context after `send_to` returned
        std::thread::sleep(Duration::from_millis(50));
    };
    burst();
    assert_eq!(
        d.run_batched(Duration::ZERO, |_, _, _| None::<()>).unwrap(),
        None
    );
    // the default batch (32) took all ten in one `recvmmsg`
    assert_eq!((d.stats().received, d.stats().batches), (10, 1));
    let mut d = d.with_batch_size(1);
    assert_eq!(d.batch_size(), 1);
    burst();
    assert_eq!(
        d.run_batched(Duration::from_millis(200), |_, _, _| None::<()>)
            .unwrap(),
        None
    );
    // now one at a time: ten more `recvmmsg` calls that returned datagrams
    assert_eq!((d.stats().received, d.stats().batches), (20, 11));
    assert_eq!(d.machine().stats().dropped_malformed, 20);
}

/// [`Picky`] takes batches too: each datagram as one input; the batch stops at the first
/// refusal, which the driver must drain and feed again
#[cfg(target_os = "linux")]
impl tether_net_drivers::blocking::BatchInput for Picky {
    fn handle_batch<'a>(
        &mut self,
        now: Instant,
        batch: &[(SocketAddr, &'a [u8])],
        mut on_each: impl FnMut(&mut Self, usize, Received<&'a [u8]>),
    ) -> usize {
        for (i, (from, data)) in batch.iter().enumerate() {
            match self.handle_input(now, *from, data) {
                Ok(r) => on_each(self, i, r),
                Err(_) => return i,
            }
        }
        batch.len()
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_batch_cut_short_by_queue_full_is_fed_on_after_a_drain() {
    let mut d = UdpDriver::bind(Picky::default(), "127.0.0.1:0").unwrap();
    let addr = d.local_addr().unwrap();
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sent: Vec<Vec<u8>> = (0..5u8).map(|i| vec![b'a' + i; 3]).collect();
    for m in &sent {
        c.send_to(m, addr).unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    let mut apps = Vec::new();
    let r = d
        .run_batched(Duration::from_millis(300), |_, _, input| {
            if let Input::App(_, app) = input {
                apps.push(app.to_vec());
            }
            None::<()>
        })
        .unwrap();
    assert_eq!(r, None);
    // every datagram once, in order, each after one refusal (one per feed of the batch's rest)
    assert_eq!(apps, sent);
    assert_eq!(d.machine().refusals, 5);
    let s = d.stats();
    assert_eq!((s.received, s.retried), (5, 5), "{s:?}");
}
