//! End-to-end floor: the game server behind the blocking driver's batched loop
//! (`UdpDriver::run_batched`: `recvmmsg` → `Server::handle_batch` → `sendmmsg`) on real loopback
//! sockets, against a bare receive-and-reply loop making the same syscalls
//!
//! Run: `cargo bench --manifest-path benches/Cargo.toml --bench e2e` (about 30 s; Linux).
//! `E2E_SECONDS` (5), `E2E_REPS` (3), `E2E_BATCH` (32), `E2E_CLIENTS` (65536), `E2E_FILL`
//! (4096) and `E2E_KEEP_ALIVE_MS` (0 = the machine's KEEP_ALIVE timer off) change the defaults;
//! `E2E_KEY=v4` keys the server by `SocketAddrV4` (8 bytes) instead of `SocketAddr` (32).
//! Writes `benches/target/e2e.json` (`E2E_JSON` elsewhere); `python3 benches/report.py --e2e`
//! prints its table. Fails loudly when the sockets cannot be opened or the clients not admitted.
//!
//! # What is measured
//!
//! A load generator (the main thread) admits 65,536 token clients through CONNECT →
//! CONNECT_ACCEPT → ACCEPT, each from its own address `127.1.x.y` (one socket bound to
//! `0.0.0.0`, the source address of every datagram chosen with `IP_PKTINFO`, the client of
//! every reply told by its destination address); the server sees 65,536 distinct `SocketAddr`
//! keys. Then it sends token KEEP_ALIVEs (8 bytes), each from a uniformly random client.
//!
//! One generator core cannot keep one server core busy on loopback: the sender pays the whole
//! loopback path, the receiver only dequeues. So they alternate: the generator fills the server
//! socket with K = 4,096 KEEP_ALIVEs and a final server-info request (the end marker) while the
//! server thread waits; the server thread then drains them alone while the generator waits.
//! Each cycle is a pair: a machine drain, then a bare drain of another K, so both loops see the
//! same machine load at nearly the same time. The server threads share one core, the generator
//! has the other (`sched_setaffinity`).
//!
//! * machine loop: `UdpDriver::run_batched` over `Server<SocketAddr, 65536>` until the marker
//!   comes out as `ServerApp::InfoRequest` (left unanswered).
//! * bare loop: the same socket options and the driver's own `RecvBatch` / `SendBatch` (the
//!   same `recvmmsg` / `sendmmsg` calls, same batch size), no machine; it echoes 8 bytes to the
//!   senders of as many datagrams as the machine sent in the drain before (spread evenly).
//!
//! The machine answers no KEEP_ALIVE; it sends its own KEEP_ALIVE to a peer when it sent it
//! nothing for `keep_alive`. Its clock runs while its thread waits (fills, bare drains), so at
//! the default 1 s every drain sent one KEEP_ALIVE per peer (65,536 sends for 4,096 datagrams
//! received, drains slower than the second, and so on): a measurement of `sendmmsg` on loopback,
//! not of the receive path. By default the timer is off (`E2E_KEEP_ALIVE_MS=0`): neither loop
//! sends, and the quantity is the one the brief defines for a machine that does not answer
//! every KEEP_ALIVE: datagrams received per second by the server while it drains (median over
//! the drains of a repetition), the same for both loops; plus CPU per datagram (`getrusage` of
//! the server thread, user + system, over all drains of the repetition, / datagrams). Ratios
//! divide the machine's figure by the bare loop's of the same repetition; the summary is the
//! median over repetitions.

#![allow(missing_docs)]

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant as WallClock};

use tether_net::game::connless::{TYPE_GETINFO, VANILLA_HEADER};
use tether_net::game::wire::{self, Control, ControlPacket, Packet, Token, TokenMode};
use tether_net::game::{Server, ServerApp, ServerConfig, ServerEvent, TokenSecret};
use tether_net::testing::control_packet as control;
use tether_net_drivers::blocking::mmsg::{RecvBatch, SendBatch};
use tether_net_drivers::blocking::{DatagramPeer, Input, UdpDriver};

/// Capacity of the measured server (the most clients the bench can admit)
const PEERS: usize = 65_536;
/// First client address: client `i` is `127.1.0.0 + i`
const CLIENT_BASE: u32 = 0x7F01_0000;
/// Source address of the end-of-fill marker (the server-info request)
const MARKER_SRC: u32 = 0x7F02_0001;
/// KEEP_ALIVEs per fill (K). Small enough that the queued datagrams (≈ 832 bytes of kernel
/// memory each: 3.4 MB) stay in the caches as in a short steady-state queue; fills of 65,536
/// (54 MB) made every dequeue a cache miss and tripled the bare loop's cost per datagram.
const FILL: usize = 4096;
/// Messages per generator `sendmmsg` / `recvmmsg`
const GEN_BATCH: usize = 64;
/// Receive buffer asked for on the server and generator sockets (bytes)
const RCVBUF: i32 = 64 << 20;
/// Kernel memory one small datagram takes in a receive queue here (measured: 832 bytes), with a
/// margin
const SKB_BYTES: usize = 1024;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

// ---------------------------------------------------------------------------------------------
// sockets (libc: receive buffer, IP_PKTINFO, per-message source addresses, thread CPU time)

fn setsockopt_int(sock: &UdpSocket, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: a valid fd and a pointer to an i32 of the size passed
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn rcvbuf(sock: &UdpSocket) -> usize {
    let mut v: i32 = 0;
    let mut len = size_of::<i32>() as libc::socklen_t;
    // SAFETY: a valid fd, an i32 and its size
    unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&mut v as *mut i32).cast(),
            &mut len,
        )
    };
    v.max(0) as usize
}

/// A large receive buffer: `SO_RCVBUFFORCE` (needs CAP_NET_ADMIN), else `SO_RCVBUF` (capped by
/// `net.core.rmem_max`); returns whether it was forced
fn big_rcvbuf(sock: &UdpSocket) -> bool {
    if setsockopt_int(sock, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RCVBUF).is_ok() {
        return true;
    }
    let _ = setsockopt_int(sock, libc::SOL_SOCKET, libc::SO_RCVBUF, RCVBUF);
    false
}

/// The server socket both loops get: 127.0.0.1, ephemeral port, large receive buffer
fn server_socket() -> (UdpSocket, bool) {
    let sock = UdpSocket::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("e2e: cannot bind a UDP socket on 127.0.0.1: {e}"));
    let forced = big_rcvbuf(&sock);
    (sock, forced)
}

/// CPUs online (not this thread's affinity mask, which `pin` narrows)
fn cores() -> usize {
    // SAFETY: sysconf has no preconditions
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    n.max(1) as usize
}

/// Pin the calling thread to CPU `cpu` (when the machine has it): the server threads on one
/// core, the generator on another, so neither migrates and the server keeps its caches
fn pin(cpu: usize) {
    let n = cores();
    if n < 2 {
        return;
    }
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET sets one bit inside it
    unsafe {
        let mut set: libc::cpu_set_t = zeroed();
        libc::CPU_SET(cpu % n, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Server thread CPU time so far: (user, system)
fn thread_cpu() -> (Duration, Duration) {
    // SAFETY: getrusage writes the struct it is given
    let mut ru: libc::rusage = unsafe { zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

fn sockaddr_in(ip: u32, port: u16) -> libc::sockaddr_in {
    // SAFETY: all-zero is a valid sockaddr_in
    let mut a: libc::sockaddr_in = unsafe { zeroed() };
    a.sin_family = libc::AF_INET as libc::sa_family_t;
    a.sin_port = port.to_be();
    a.sin_addr.s_addr = ip.to_be();
    a
}

const CMSG_LEN: usize = 32; // CMSG_SPACE(sizeof(struct in_pktinfo)) on 64-bit Linux

/// The generator: one socket on 0.0.0.0 sending from any 127.x address (IP_PKTINFO) and
/// learning which client a reply is for (IP_PKTINFO on receive)
struct Generator {
    sock: UdpSocket,
    to: libc::sockaddr_in,
    // send side, GEN_BATCH slots
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    cmsgs: Vec<[u64; CMSG_LEN / 8]>,
    bufs: Vec<[u8; 16]>,
    // receive side
    rhdrs: Vec<libc::mmsghdr>,
    riovs: Vec<libc::iovec>,
    rcmsgs: Vec<[u64; 8]>,
    rbufs: Vec<[u8; 64]>,
    sent: u64,
}

impl Generator {
    fn new(server: SocketAddr) -> Generator {
        let sock = UdpSocket::bind("0.0.0.0:0")
            .unwrap_or_else(|e| panic!("e2e: cannot bind the generator socket: {e}"));
        big_rcvbuf(&sock);
        setsockopt_int(&sock, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)
            .unwrap_or_else(|e| panic!("e2e: IP_PKTINFO: {e}"));
        let SocketAddr::V4(server) = server else {
            panic!("IPv4 server")
        };
        Generator {
            sock,
            to: sockaddr_in(u32::from(*server.ip()), server.port()),
            // SAFETY: all-zero mmsghdr/iovec are valid (null pointers, zero lengths)
            hdrs: (0..GEN_BATCH).map(|_| unsafe { zeroed() }).collect(),
            iovs: (0..GEN_BATCH).map(|_| unsafe { zeroed() }).collect(),
            cmsgs: vec![[0; CMSG_LEN / 8]; GEN_BATCH],
            bufs: vec![[0; 16]; GEN_BATCH],
            rhdrs: (0..GEN_BATCH).map(|_| unsafe { zeroed() }).collect(),
            riovs: (0..GEN_BATCH).map(|_| unsafe { zeroed() }).collect(),
            rcmsgs: vec![[0; 8]; GEN_BATCH],
            rbufs: vec![[0; 64]; GEN_BATCH],
            sent: 0,
        }
    }

    /// Send `msgs` = (source IPv4, bytes ≤ 16) to the server, `sendmmsg` by `GEN_BATCH`
    fn send(&mut self, msgs: &[(u32, &[u8])]) {
        for group in msgs.chunks(GEN_BATCH) {
            for (i, (src, bytes)) in group.iter().enumerate() {
                self.bufs[i][..bytes.len()].copy_from_slice(bytes);
                self.iovs[i] = libc::iovec {
                    iov_base: self.bufs[i].as_mut_ptr().cast(),
                    iov_len: bytes.len(),
                };
                let c = self.cmsgs[i].as_mut_ptr().cast::<libc::cmsghdr>();
                let h = &mut self.hdrs[i].msg_hdr;
                h.msg_name = (&mut self.to as *mut libc::sockaddr_in).cast();
                h.msg_namelen = size_of::<libc::sockaddr_in>() as u32;
                h.msg_iov = &mut self.iovs[i];
                h.msg_iovlen = 1;
                h.msg_control = c.cast();
                h.msg_controllen = CMSG_LEN;
                // SAFETY: the control buffer is CMSG_LEN bytes, 8-aligned, enough for one
                // in_pktinfo; the header points at it
                unsafe {
                    (*c).cmsg_level = libc::IPPROTO_IP;
                    (*c).cmsg_type = libc::IP_PKTINFO;
                    (*c).cmsg_len = libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as usize;
                    let pi = libc::CMSG_DATA(c).cast::<libc::in_pktinfo>();
                    pi.write_unaligned(libc::in_pktinfo {
                        ipi_ifindex: 0,
                        ipi_spec_dst: libc::in_addr {
                            s_addr: src.to_be(),
                        },
                        ipi_addr: libc::in_addr { s_addr: 0 },
                    });
                }
            }
            let mut at = 0;
            while at < group.len() {
                // SAFETY: headers at..group.len() point at live buffers of this struct
                let r = unsafe {
                    libc::sendmmsg(
                        self.sock.as_raw_fd(),
                        self.hdrs[at..].as_mut_ptr(),
                        (group.len() - at) as u32,
                        0,
                    )
                };
                if r < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    panic!("e2e: generator sendmmsg: {e}");
                }
                at += r as usize;
            }
            self.sent += group.len() as u64;
        }
    }

    /// Receive what is queued (up to `GEN_BATCH`, no waiting, or up to `wait` for the first):
    /// (destination IPv4 = the client, bytes) to `each`; returns how many
    fn recv(&mut self, wait: Option<Duration>, mut each: impl FnMut(u32, &[u8])) -> usize {
        for i in 0..GEN_BATCH {
            self.riovs[i] = libc::iovec {
                iov_base: self.rbufs[i].as_mut_ptr().cast(),
                iov_len: 64,
            };
            let h = &mut self.rhdrs[i].msg_hdr;
            h.msg_name = std::ptr::null_mut();
            h.msg_namelen = 0;
            h.msg_iov = &mut self.riovs[i];
            h.msg_iovlen = 1;
            h.msg_control = self.rcmsgs[i].as_mut_ptr().cast();
            h.msg_controllen = 64;
            h.msg_flags = 0;
        }
        let flags = match wait {
            None => libc::MSG_DONTWAIT,
            Some(t) => {
                self.sock.set_read_timeout(Some(t)).unwrap();
                0
            }
        } | libc::MSG_WAITFORONE;
        // SAFETY: GEN_BATCH headers pointing at live buffers of this struct
        let n = unsafe {
            libc::recvmmsg(
                self.sock.as_raw_fd(),
                self.rhdrs.as_mut_ptr(),
                GEN_BATCH as u32,
                flags,
                std::ptr::null_mut(),
            )
        };
        if n <= 0 {
            return 0;
        }
        for i in 0..n as usize {
            let h = &self.rhdrs[i].msg_hdr;
            let mut dst = None;
            // SAFETY: the kernel filled msg_control up to msg_controllen
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(h);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::IPPROTO_IP && (*c).cmsg_type == libc::IP_PKTINFO {
                        let pi = libc::CMSG_DATA(c)
                            .cast::<libc::in_pktinfo>()
                            .read_unaligned();
                        dst = Some(u32::from_be(pi.ipi_addr.s_addr));
                    }
                    c = libc::CMSG_NXTHDR(h, c);
                }
            }
            let len = self.rhdrs[i].msg_len as usize;
            if let Some(d) = dst {
                each(d, &self.rbufs[i][..len.min(64)]);
            }
        }
        n as usize
    }

    /// Discard every queued reply
    fn drain_replies(&mut self) {
        while self.recv(None, |_, _| {}) > 0 {}
    }
}

// ---------------------------------------------------------------------------------------------
// game packets

/// The end-of-fill marker: a server-info request (`gie3`), which the machine hands out as
/// `ServerApp::InfoRequest`
fn marker() -> Vec<u8> {
    let mut m = VANILLA_HEADER.to_vec();
    m.extend_from_slice(&TYPE_GETINFO);
    m.push(1);
    m
}

fn is_marker(bytes: &[u8]) -> bool {
    bytes.len() == VANILLA_HEADER.len() + TYPE_GETINFO.len() + 1
        && bytes[..VANILLA_HEADER.len()] == VANILLA_HEADER
}

// ---------------------------------------------------------------------------------------------
// the two server threads

/// One drain of the server socket
#[derive(Debug, Clone, Copy, Default)]
struct Drain {
    /// Datagrams received (the marker included)
    received: u64,
    /// Datagrams sent
    sent: u64,
    /// `recvmmsg` calls that returned datagrams
    batches: u64,
    wall: Duration,
    user: Duration,
    sys: Duration,
    /// The marker arrived (else the drain stopped at its time limit: datagrams were dropped)
    complete: bool,
}

enum Cmd {
    /// Run the loop until `stop` is set (admission), counting `Connected` events
    Admit(Arc<AtomicBool>, Arc<AtomicUsize>),
    /// Drain up to the marker; the bare loop replies to a fraction `r` of the datagrams
    Drain(f64),
    /// Report the machine's counters and end
    Stop,
}

/// What the machine thread reports at the end
#[derive(Debug)]
struct MachineEnd {
    keep_alives: u64,
    wrong_token: u64,
    timed_out: u64,
    peers: usize,
}

fn machine_thread<P>(
    sock: UdpSocket,
    batch: usize,
    keep_alive: Duration,
    cmds: mpsc::Receiver<Cmd>,
    out: mpsc::Sender<Drain>,
) -> MachineEnd
where
    P: DatagramPeer + core::hash::Hash,
{
    pin(1);
    let mut secret = [0u8; 16];
    getrandom::fill(&mut secret).expect("OS random source");
    // the defaults (KEEP_ALIVE every second), but a timeout of 60 s: the machine thread waits
    // while the generator fills a socket and while the bare loop drains
    let config = ServerConfig::new(TokenSecret(secret))
        .with_keep_alive(keep_alive)
        .with_timeout(Duration::from_secs(60));
    let server: Server<P, PEERS> = Server::with_capacities(config);
    let mut driver = Box::new(UdpDriver::new(server, sock).with_batch_size(batch));
    while let Ok(cmd) = cmds.recv() {
        match cmd {
            Cmd::Admit(stop, connected) => {
                while !stop.load(Ordering::Relaxed) {
                    driver
                        .run_batched(Duration::from_millis(50), |_, _, input| {
                            if let Input::Event(ServerEvent::Connected { .. }) = input {
                                connected.fetch_add(1, Ordering::Relaxed);
                            }
                            None::<()>
                        })
                        .expect("driver");
                }
                // out of the loop: from now on datagrams wait for a drain
                out.send(Drain::default()).expect("generator");
            }
            Cmd::Drain(_) => {
                let (r0, s0, b0) = (
                    driver.stats().received,
                    driver.stats().sent,
                    driver.stats().batches,
                );
                let (u0, y0) = thread_cpu();
                let t0 = WallClock::now();
                let done = driver
                    .run_batched(Duration::from_secs(5), |_, _, input| match input {
                        Input::App(_, ServerApp::InfoRequest(_)) => Some(()),
                        _ => None,
                    })
                    .expect("driver");
                let wall = t0.elapsed();
                let (u1, y1) = thread_cpu();
                out.send(Drain {
                    received: driver.stats().received - r0,
                    sent: driver.stats().sent - s0,
                    batches: driver.stats().batches - b0,
                    wall,
                    user: u1 - u0,
                    sys: y1 - y0,
                    complete: done.is_some(),
                })
                .expect("generator");
            }
            Cmd::Stop => break,
        }
    }
    let st = driver.machine().stats();
    MachineEnd {
        keep_alives: st.keep_alives_received,
        wrong_token: st.dropped_wrong_token,
        timed_out: st.peers_timed_out,
        peers: driver.machine().peer_count(),
    }
}

fn bare_thread(sock: UdpSocket, batch: usize, cmds: mpsc::Receiver<Cmd>, out: mpsc::Sender<Drain>) {
    pin(1);
    let mut rx = RecvBatch::new(batch);
    let mut tx = SendBatch::new(batch);
    let (mut rh, mut th) = (rx.headers(), tx.headers());
    let mut credit = 0.0f64;
    while let Ok(cmd) = cmds.recv() {
        let Cmd::Drain(ratio) = cmd else { break };
        let mut d = Drain::default();
        let (u0, y0) = thread_cpu();
        let t0 = WallClock::now();
        let deadline = t0 + Duration::from_secs(5);
        loop {
            // as the driver: what is queued, else wait for the first datagram
            let mut n = rx.recv(&mut rh, &sock, None).expect("recvmmsg");
            if n == 0 {
                let left = deadline.saturating_duration_since(WallClock::now());
                if left.is_zero() {
                    break;
                }
                n = rx.recv(&mut rh, &sock, Some(left)).expect("recvmmsg");
                if n == 0 {
                    continue;
                }
            }
            d.received += n as u64;
            d.batches += 1;
            for i in 0..n {
                let (from, bytes) = rx.get(i).expect("received");
                if is_marker(bytes) {
                    d.complete = true;
                    continue;
                }
                credit += ratio;
                while credit >= 1.0 {
                    credit -= 1.0;
                    if tx.is_full() {
                        d.sent += tx.send(&mut th, &sock).sent;
                    }
                    tx.queue(Some(from), &bytes[..bytes.len().min(8)]);
                }
            }
            if tx.queued() > 0 {
                d.sent += tx.send(&mut th, &sock).sent;
            }
            if d.complete {
                break;
            }
        }
        d.wall = t0.elapsed();
        let (u1, y1) = thread_cpu();
        d.user = u1 - u0;
        d.sys = y1 - y0;
        out.send(d).expect("generator");
    }
}

// ---------------------------------------------------------------------------------------------
// the generator's side

/// Admit every client: CONNECT → CONNECT_ACCEPT (its token) → ACCEPT; returns the tokens
fn admit(gen: &mut Generator, clients: usize, connected: &AtomicUsize) -> Vec<[u8; 4]> {
    let connect = control(Control::Connect, Some(Token::UNKNOWN));
    let mut tokens: Vec<Option<[u8; 4]>> = vec![None; clients];
    let mut accepts: Vec<(u32, Vec<u8>)> = Vec::new();
    let t0 = WallClock::now();
    for round in 0..20 {
        let pending: Vec<usize> = (0..clients).filter(|&i| tokens[i].is_none()).collect();
        if pending.is_empty() {
            break;
        }
        assert!(
            round < 19,
            "e2e: {} clients got no CONNECT_ACCEPT",
            pending.len()
        );
        for window in pending.chunks(1024) {
            let msgs: Vec<(u32, &[u8])> = window
                .iter()
                .map(|&i| (CLIENT_BASE + i as u32, &connect[..]))
                .collect();
            gen.send(&msgs);
            let mut got = 0;
            let until = WallClock::now() + Duration::from_millis(500);
            while got < window.len() && WallClock::now() < until {
                gen.recv(Some(Duration::from_millis(20)), |dst, bytes| {
                    let Some(i) = dst.checked_sub(CLIENT_BASE).map(|i| i as usize) else {
                        return;
                    };
                    let Ok(p) = wire::parse(bytes, TokenMode::Detect) else {
                        return;
                    };
                    if let Packet::Control(ControlPacket {
                        control: Control::ConnectAccept,
                        token: Some(t),
                        ..
                    }) = p.packet
                    {
                        if i < clients && tokens[i].is_none() {
                            tokens[i] = Some(t.0);
                            got += 1;
                            accepts.push((dst, control(Control::Accept, Some(t))));
                        }
                    }
                });
            }
            let msgs: Vec<(u32, &[u8])> = accepts.iter().map(|(s, b)| (*s, &b[..])).collect();
            gen.send(&msgs);
            accepts.clear();
        }
    }
    let until = WallClock::now() + Duration::from_secs(10);
    while connected.load(Ordering::Relaxed) < clients && WallClock::now() < until {
        std::thread::sleep(Duration::from_millis(10));
        gen.drain_replies();
    }
    let n = connected.load(Ordering::Relaxed);
    assert_eq!(n, clients, "e2e: {n} of {clients} clients admitted");
    eprintln!(
        "e2e: {clients} clients admitted in {:.2} s",
        t0.elapsed().as_secs_f64()
    );
    tokens.into_iter().map(|t| t.expect("token")).collect()
}

/// xorshift64
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// What the generator sends: K KEEP_ALIVEs per fill from uniformly random clients
struct Load<'t> {
    k: usize,
    tokens: &'t [[u8; 4]],
    /// The first 4 bytes of a token KEEP_ALIVE (header, id); the token follows
    head: [u8; 4],
    rng: u64,
}

/// Fill the server socket with `k` KEEP_ALIVEs from uniformly random clients, then the marker
fn fill(gen: &mut Generator, load: &mut Load<'_>) {
    let n = load.tokens.len();
    let mut bufs = [[0u8; 8]; GEN_BATCH];
    let mut srcs = [0u32; GEN_BATCH];
    let mut left = load.k;
    while left > 0 {
        let g = left.min(GEN_BATCH);
        for (b, s) in bufs.iter_mut().zip(&mut srcs).take(g) {
            // uniform over n (rejection for non-powers of two)
            let c = loop {
                let c = (next(&mut load.rng) >> 16) as usize & (n.next_power_of_two() - 1);
                if c < n {
                    break c;
                }
            };
            b[..4].copy_from_slice(&load.head);
            b[4..].copy_from_slice(&load.tokens[c]);
            *s = CLIENT_BASE + c as u32;
        }
        let msgs: Vec<(u32, &[u8])> = srcs
            .iter()
            .zip(&bufs)
            .take(g)
            .map(|(s, b)| (*s, &b[..]))
            .collect();
        gen.send(&msgs);
        left -= g;
        // keep the generator's own receive queue short (the machine's KEEP_ALIVEs, the echoes)
        gen.recv(None, |_, _| {});
    }
    let m = marker();
    gen.send(&[(MARKER_SRC, &m[..])]);
}

/// The two servers and where their datagrams go
struct Servers {
    machine: (mpsc::Sender<Cmd>, mpsc::Receiver<Drain>, libc::sockaddr_in),
    bare: (mpsc::Sender<Cmd>, mpsc::Receiver<Drain>, libc::sockaddr_in),
}

/// Fill one server's socket, let it drain; `None` when datagrams were dropped (K is halved)
fn cycle(
    gen: &mut Generator,
    server: &(mpsc::Sender<Cmd>, mpsc::Receiver<Drain>, libc::sockaddr_in),
    reply_ratio: f64,
    load: &mut Load<'_>,
) -> Option<Drain> {
    gen.drain_replies();
    gen.to = server.2;
    fill(gen, load);
    server
        .0
        .send(Cmd::Drain(reply_ratio))
        .expect("server thread");
    let d = server.1.recv().expect("server thread");
    if !d.complete || d.received < load.k as u64 + 1 {
        eprintln!(
            "e2e: {} of {} datagrams arrived (receive buffer full): K {} -> {}",
            d.received,
            load.k + 1,
            load.k,
            load.k / 2
        );
        load.k /= 2;
        assert!(
            load.k >= 1024,
            "e2e: the server socket holds fewer than 1,024 datagrams"
        );
        // a late marker may still be queued: let the server take it now
        let _ = server.0.send(Cmd::Drain(0.0));
        let _ = server.1.recv();
        return None;
    }
    Some(d)
}

/// One repetition: `seconds` of cycle pairs, each a machine drain then a bare drain of the same
/// K, the bare loop sending as many 8-byte datagrams as the machine just sent (after one
/// discarded warm-up pair)
fn repetition(
    gen: &mut Generator,
    servers: &Servers,
    load: &mut Load<'_>,
    seconds: f64,
) -> (Vec<Drain>, Vec<Drain>) {
    let (mut m, mut b) = (Vec::new(), Vec::new());
    let t0 = WallClock::now();
    let mut warm = true;
    while warm || t0.elapsed().as_secs_f64() < seconds || m.len() < 3 {
        let Some(dm) = cycle(gen, &servers.machine, 0.0, load) else {
            continue;
        };
        let ratio = dm.sent as f64 / dm.received as f64;
        let Some(db) = cycle(gen, &servers.bare, ratio, load) else {
            continue;
        };
        if warm {
            warm = false;
            continue;
        }
        m.push(dm);
        b.push(db);
    }
    (m, b)
}

/// Summary of a phase
#[derive(Debug, Clone, Copy)]
struct Summary {
    /// Median over cycles of datagrams received / drain wall time
    rate: f64,
    /// Server thread CPU (user + system) per datagram, ns
    cpu_ns: f64,
    user_ns: f64,
    sys_ns: f64,
    /// Datagrams sent per datagram received
    sent_ratio: f64,
    /// Mean datagrams per recvmmsg
    mean_batch: f64,
    datagrams: u64,
    cycles: usize,
    /// Slowest and fastest cycle rate
    min_rate: f64,
    max_rate: f64,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn summarize(cycles: &[Drain]) -> Summary {
    let mut rates: Vec<f64> = cycles
        .iter()
        .map(|d| d.received as f64 / d.wall.as_secs_f64())
        .collect();
    let n: u64 = cycles.iter().map(|d| d.received).sum();
    let sent: u64 = cycles.iter().map(|d| d.sent).sum();
    let batches: u64 = cycles.iter().map(|d| d.batches).sum();
    let user: f64 = cycles.iter().map(|d| d.user.as_secs_f64()).sum();
    let sys: f64 = cycles.iter().map(|d| d.sys.as_secs_f64()).sum();
    let min_rate = rates.iter().cloned().fold(f64::INFINITY, f64::min);
    let max_rate = rates.iter().cloned().fold(0.0, f64::max);
    Summary {
        rate: median(&mut rates),
        cpu_ns: (user + sys) * 1e9 / n as f64,
        user_ns: user * 1e9 / n as f64,
        sys_ns: sys * 1e9 / n as f64,
        sent_ratio: sent as f64 / n as f64,
        mean_batch: n as f64 / batches.max(1) as f64,
        datagrams: n,
        cycles: cycles.len(),
        min_rate,
        max_rate,
    }
}

fn json_summary(s: &Summary) -> String {
    format!(
        "{{\"rate\": {:.0}, \"min_rate\": {:.0}, \"max_rate\": {:.0}, \"cpu_ns\": {:.1}, \"user_ns\": {:.1}, \"sys_ns\": {:.1}, \"sent_per_received\": {:.4}, \"mean_batch\": {:.2}, \"datagrams\": {}, \"cycles\": {}}}",
        s.rate, s.min_rate, s.max_rate, s.cpu_ns, s.user_ns, s.sys_ns, s.sent_ratio, s.mean_batch, s.datagrams, s.cycles
    )
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: do nothing then
    // (the bench takes half a minute and two cores)
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("e2e: run with `cargo bench --bench e2e`");
        return;
    }
    let seconds = env_or("E2E_SECONDS", 5) as f64;
    let reps = env_or("E2E_REPS", 3).max(1);
    let batch = env_or("E2E_BATCH", 32).clamp(1, 1024);
    let clients = env_or("E2E_CLIENTS", PEERS).clamp(1, PEERS);
    // 0: no KEEP_ALIVEs from the machine (30 days), so neither loop sends anything
    let keep_alive_ms = env_or("E2E_KEEP_ALIVE_MS", 0);
    // the server's peer key: `SocketAddr` (32 bytes), or with `E2E_KEY=v4` `SocketAddrV4` (8)
    let v4_keys = match std::env::var("E2E_KEY").as_deref() {
        Ok("v4") => true,
        Ok("addr") | Err(_) => false,
        Ok(other) => panic!("e2e: E2E_KEY is `v4` or `addr`, not `{other}`"),
    };
    let key_name = if v4_keys {
        "SocketAddrV4"
    } else {
        "SocketAddr"
    };
    let keep_alive = match keep_alive_ms {
        0 => Duration::from_secs(30 * 24 * 3600),
        ms => Duration::from_millis(ms as u64),
    };
    let load_start = loadavg();

    let (msock, forced) = server_socket();
    let (bsock, _) = server_socket();
    let buf = rcvbuf(&msock);
    let k = env_or("E2E_FILL", FILL).min(buf / SKB_BYTES);
    assert!(
        k >= 1024,
        "e2e: the server socket's receive buffer ({buf} B) is too small"
    );
    let maddr = msock.local_addr().expect("local addr");
    let baddr = bsock.local_addr().expect("local addr");
    eprintln!(
        "e2e: {clients} clients, batch {batch}, {reps} x {seconds} s per loop, receive buffer {buf} B ({}), K = {k} per fill, load {load_start}",
        if forced { "SO_RCVBUFFORCE" } else { "SO_RCVBUF, capped by rmem_max" }
    );

    let (mcmd, mcmd_rx) = mpsc::channel();
    let (mres_tx, mres) = mpsc::channel();
    let machine = std::thread::Builder::new()
        .name("e2e-machine".into())
        // the 65,536-peer server is built on this thread's stack before it moves into the driver
        .stack_size(256 << 20)
        .spawn(move || {
            if v4_keys {
                machine_thread::<SocketAddrV4>(msock, batch, keep_alive, mcmd_rx, mres_tx)
            } else {
                machine_thread::<SocketAddr>(msock, batch, keep_alive, mcmd_rx, mres_tx)
            }
        })
        .expect("spawn");
    let (bcmd, bcmd_rx) = mpsc::channel();
    let (bres_tx, bres) = mpsc::channel();
    let bare = std::thread::Builder::new()
        .name("e2e-bare".into())
        .spawn(move || bare_thread(bsock, batch, bcmd_rx, bres_tx))
        .expect("spawn");

    pin(0);
    let mut gen = Generator::new(maddr);
    let stop = Arc::new(AtomicBool::new(false));
    let connected = Arc::new(AtomicUsize::new(0));
    mcmd.send(Cmd::Admit(Arc::clone(&stop), Arc::clone(&connected)))
        .expect("machine thread");
    let tokens = admit(&mut gen, clients, &connected);
    stop.store(true, Ordering::Relaxed);
    mres.recv().expect("machine thread");
    let ka = control(Control::KeepAlive, Some(Token(tokens[0])));
    assert_eq!(ka.len(), 8, "token KEEP_ALIVE: header, id, token");
    let mut load = Load {
        k,
        tokens: &tokens,
        head: [ka[0], ka[1], ka[2], ka[3]],
        rng: 0x2545_F491_4F6C_DD1D_u64,
    };
    let servers = Servers {
        machine: (mcmd, mres, sockaddr_in(0x7F00_0001, maddr.port())),
        bare: (bcmd, bres, sockaddr_in(0x7F00_0001, baddr.port())),
    };

    let mut rows = Vec::new();
    for rep in 0..reps {
        let (mc, bc) = repetition(&mut gen, &servers, &mut load, seconds);
        let (m, b) = (summarize(&mc), summarize(&bc));
        eprintln!(
            "e2e rep {}: machine {:.3} M/s ({:.0} ns CPU/datagram = {:.0} user + {:.0} sys, {:.3} sent/received, batch {:.1}) | bare {:.3} M/s ({:.0} ns = {:.0} + {:.0}, {:.3} sent/received, batch {:.1}) | ratio {:.3} (CPU {:.3}, fastest drains {:.3}), {} cycle pairs",
            rep + 1,
            m.rate / 1e6,
            m.cpu_ns,
            m.user_ns,
            m.sys_ns,
            m.sent_ratio,
            m.mean_batch,
            b.rate / 1e6,
            b.cpu_ns,
            b.user_ns,
            b.sys_ns,
            b.sent_ratio,
            b.mean_batch,
            m.rate / b.rate,
            b.cpu_ns / m.cpu_ns,
            m.max_rate / b.max_rate,
            m.cycles
        );
        rows.push((m, b));
    }
    let k = load.k;
    let (mcmd, bcmd) = (servers.machine.0, servers.bare.0);
    mcmd.send(Cmd::Stop).expect("machine thread");
    drop(bcmd);
    let end = machine.join().expect("machine thread");
    bare.join().expect("bare thread");
    let load_end = loadavg();

    // the measured path did the real work
    assert_eq!(end.peers, clients, "e2e: peers lost: {end:?}");
    assert_eq!(end.timed_out, 0, "{end:?}");
    assert_eq!(end.wrong_token, 0, "{end:?}");
    let drained: u64 = rows.iter().map(|(m, _)| m.datagrams).sum();
    assert!(
        end.keep_alives >= drained - rows.iter().map(|(m, _)| m.cycles as u64).sum::<u64>(),
        "{end:?}"
    );

    let ratios: Vec<f64> = rows.iter().map(|(m, b)| m.rate / b.rate).collect();
    let cpu_ratios: Vec<f64> = rows.iter().map(|(m, b)| b.cpu_ns / m.cpu_ns).collect();
    let mut mrates: Vec<f64> = rows.iter().map(|(m, _)| m.rate).collect();
    let mut brates: Vec<f64> = rows.iter().map(|(_, b)| b.rate).collect();
    let mut mcpu: Vec<f64> = rows.iter().map(|(m, _)| m.cpu_ns).collect();
    let mut bcpu: Vec<f64> = rows.iter().map(|(_, b)| b.cpu_ns).collect();
    let ratio = median(&mut ratios.clone());
    let cpu_ratio = median(&mut cpu_ratios.clone());
    // the fastest drain of each loop: the one least disturbed by other processes
    let best_ratio = median(
        &mut rows
            .iter()
            .map(|(m, b)| m.max_rate / b.max_rate)
            .collect::<Vec<_>>(),
    );
    println!(
        "e2e: machine {:.3} M datagrams/s, bare {:.3} M/s: ratio {:.3} (target >= 0.85: {}); CPU per datagram {:.0} ns vs {:.0} ns (ratio {:.3}); fastest drains' ratio {best_ratio:.3}; batch {batch}; {clients} clients; load {load_start} -> {load_end}",
        median(&mut mrates) / 1e6,
        median(&mut brates) / 1e6,
        ratio,
        if ratio >= 0.85 { "met" } else { "missed" },
        median(&mut mcpu),
        median(&mut bcpu),
        cpu_ratio
    );

    let reps_json: Vec<String> = rows
        .iter()
        .map(|(m, b)| {
            format!(
                "{{\"machine\": {}, \"bare\": {}, \"ratio\": {:.4}, \"cpu_ratio\": {:.4}, \"best_ratio\": {:.4}}}",
                json_summary(m),
                json_summary(b),
                m.rate / b.rate,
                b.cpu_ns / m.cpu_ns,
                m.max_rate / b.max_rate
            )
        })
        .collect();
    let list = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{r:.4}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (ratio_list, cpu_ratio_list) = (list(&ratios), list(&cpu_ratios));
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_string())
        .unwrap_or_default();
    let cores = cores();
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let json = format!(
        "{{\n  \"unix_time\": {unix},\n  \"clients\": {clients},\n  \"batch\": {batch},\n  \"seconds\": {seconds},\n  \"per_fill\": {k},\n  \"keep_alive_ms\": {keep_alive_ms},\n  \"key\": \"{key_name}\",\n  \"cpu\": \"{cpu}\",\n  \"cores\": {cores},\n  \"kernel\": \"{kernel}\",\n  \"rcvbuf\": {buf},\n  \"rcvbuf_forced\": {forced},\n  \"load_start\": \"{load_start}\",\n  \"load_end\": \"{load_end}\",\n  \"machine_rate\": {:.0},\n  \"bare_rate\": {:.0},\n  \"machine_cpu_ns\": {:.1},\n  \"bare_cpu_ns\": {:.1},\n  \"ratio\": {ratio:.4},\n  \"cpu_ratio\": {cpu_ratio:.4},\n  \"best_ratio\": {best_ratio:.4},\n  \"ratios\": [{ratio_list}],\n  \"cpu_ratios\": [{cpu_ratio_list}],\n  \"mean_batch\": {:.2},\n  \"reps\": [\n    {}\n  ]\n}}\n",
        median(&mut mrates),
        median(&mut brates),
        median(&mut mcpu),
        median(&mut bcpu),
        rows.iter().map(|(m, _)| m.mean_batch).sum::<f64>() / rows.len() as f64,
        reps_json.join(",\n    ")
    );
    let path = std::env::var("E2E_JSON")
        .unwrap_or_else(|_| format!("{}/target/e2e.json", env!("CARGO_MANIFEST_DIR")));
    if let Some(dir) = std::path::Path::new(&path).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&path, json).unwrap_or_else(|e| panic!("e2e: writing {path}: {e}"));
    eprintln!("e2e: wrote {path}");
}
