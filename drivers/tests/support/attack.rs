//! Hostile LongPort clients on raw std sockets, and a memory probe
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use tether_net::longport::wire::{Packet, RequestId};
use tether_net::longport::{Client, ClientConfig, ClientEvent, Credentials};
use tether_net::{drain, Instant};

/// Log in over raw TCP with the client machine, return the socket (the login response read)
pub fn raw_login(addr: SocketAddr, token: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut c = Client::new(ClientConfig::tcp());
    c.connect(Instant::ZERO, Credentials::new(token)).unwrap();
    let mut out = [0u8; 2048];
    let mut up = false;
    // the login goes out in the same drain as the ConnectTransport it answers
    drain(
        &mut c,
        Instant::ZERO,
        &mut out,
        |_, b| s.write_all(b).map_err(drop),
        |c, ev| {
            if let ClientEvent::ConnectTransport { .. } = ev {
                c.handle_connected(Instant::ZERO).unwrap();
            }
        },
    )
    .unwrap();
    let mut rx = Vec::new();
    let mut buf = [0u8; 4096];
    while !up {
        let n = s.read(&mut buf).expect("the login response");
        assert!(n > 0, "the server closed during the login");
        rx.extend_from_slice(&buf[..n]);
        loop {
            let r = c.handle_input(Instant::ZERO, (), &rx).unwrap();
            let n = r.bytes_consumed();
            rx.drain(..n);
            if n == 0 {
                break;
            }
        }
        drain(
            &mut c,
            Instant::ZERO,
            &mut out,
            |_, _| Ok::<(), ()>(()),
            |_, ev| {
                if let ClientEvent::Connected { .. } = ev {
                    up = true;
                }
            },
        )
        .unwrap();
    }
    s
}

/// What a pipelining client managed to write
pub struct Pipeliner {
    pub written: Arc<AtomicU64>,
    /// Set when a write failed: the server closed the connection
    pub dropped: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Pipeliner {
    /// Log in, then write echo requests of `body_len` bytes back to back and never read, until
    /// stopped, dropped by the server or `limit` passed (writes time out after 100 ms so the
    /// thread can stop).
    ///
    /// The socket's receive buffer is pinned small (4 KiB, no autotuning), so the echoes it never
    /// reads back up into the server's outbox within milliseconds instead of first filling
    /// megabytes of loopback buffers: the server's stall rule is then reached on every run.
    pub fn start(addr: SocketAddr, token: &str, body_len: usize, limit: Duration) -> Pipeliner {
        let mut s = raw_login(addr, token);
        nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::RcvBuf, &4096)
            .expect("SO_RCVBUF");
        s.set_write_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let written = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicBool::new(false));
        let (w, st, dr) = (written.clone(), stop.clone(), dropped.clone());
        let thread = std::thread::spawn(move || {
            let body = vec![0x5a; body_len];
            let mut pkt = vec![0u8; body_len + 64];
            let end = StdInstant::now() + limit;
            let mut id = 100u32;
            while !st.load(Ordering::Relaxed) && StdInstant::now() < end {
                id += 1;
                let n = Packet::request(4, RequestId(id), 10_000, &body)
                    .emit(&mut pkt)
                    .unwrap();
                let mut sent = 0;
                while sent < n && !st.load(Ordering::Relaxed) && StdInstant::now() < end {
                    match s.write(&pkt[sent..n]) {
                        Ok(0) => return dr.store(true, Ordering::Relaxed),
                        Ok(k) => {
                            sent += k;
                            w.fetch_add(k as u64, Ordering::Relaxed);
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        // the server dropped us
                        Err(_) => return dr.store(true, Ordering::Relaxed),
                    }
                }
            }
        });
        Pipeliner {
            written,
            dropped,
            stop,
            thread: Some(thread),
        }
    }
}

impl Pipeliner {
    /// Wait until the server has dropped the connection, at most `limit`; whether it did
    pub fn wait_dropped(&self, limit: Duration) -> bool {
        let end = StdInstant::now() + limit;
        while !self.dropped.load(Ordering::Relaxed) && StdInstant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Pipeliner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Resident memory of this process, in KiB (Linux)
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// `n` silent TCP sockets from this host, reopened within 100 ms whenever the server closes
/// one, until dropped
pub struct IdleSockets {
    stop: Arc<AtomicBool>,
    pub reopened: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl IdleSockets {
    pub fn hold(addr: SocketAddr, n: usize) -> IdleSockets {
        let stop = Arc::new(AtomicBool::new(false));
        let reopened = Arc::new(AtomicU64::new(0));
        let (st, re) = (stop.clone(), reopened.clone());
        let open = move || {
            let s = TcpStream::connect(addr).ok()?;
            s.set_nonblocking(true).ok()?;
            Some(s)
        };
        let mut socks: Vec<Option<TcpStream>> = (0..n).map(|_| open()).collect();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !st.load(Ordering::Relaxed) {
                for s in socks.iter_mut() {
                    let closed = match s {
                        Some(sock) => match sock.read(&mut buf) {
                            Ok(0) => true,
                            Ok(_) => false,
                            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                        },
                        None => true,
                    };
                    if closed {
                        *s = open();
                        re.fetch_add(1, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        IdleSockets {
            stop,
            reopened,
            thread: Some(thread),
        }
    }
}

impl Drop for IdleSockets {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Log in over raw TCP, then pipeline `n` heartbeat requests (cmd 1, ids 100, 101, ...) of
/// `body_len` bytes from one thread while reading their echoes on this one; returns the request
/// ids of the echoes, in order of arrival, once `n` came or the stream ended
pub fn pipelined_heartbeats(
    addr: SocketAddr,
    token: &str,
    n: u32,
    body_len: usize,
) -> Vec<Option<u32>> {
    let s = raw_login(addr, token);
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let mut buf = vec![0u8; body_len + 64];
        for i in 0..n {
            let body = vec![i as u8; body_len];
            let len = Packet::request(1, RequestId(100 + i), 0, &body)
                .emit(&mut buf)
                .unwrap();
            w.write_all(&buf[..len]).unwrap();
        }
    });
    let mut r = s;
    let (mut rx, mut ids) = (Vec::new(), Vec::new());
    let mut buf = vec![0u8; 64 * 1024];
    while ids.len() < n as usize {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(got) => rx.extend_from_slice(&buf[..got]),
        }
        while let Ok((p, used)) = Packet::parse(&rx, 1 << 20) {
            assert_eq!(p.body.len(), body_len);
            ids.push(p.header.kind.request_id().map(|id| id.0));
            rx.drain(..used);
        }
    }
    writer.join().unwrap();
    ids
}
