//! The datagram driver: any machine whose peer is `()` (a client on a connected socket) or a
//! `SocketAddr` (a server), over one blocking `std::net::UdpSocket`

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::Duration;
use std::vec::Vec;

use tether_net::time::Epoch;
use tether_net::{drain, Instant, Machine};

#[cfg(any(target_os = "linux", target_os = "android"))]
use super::mmsg::{MmsgHeaders, RecvBatch, SendBatch};
use super::Input;
#[cfg(any(target_os = "linux", target_os = "android"))]
pub use crate::datagram::BatchInput;
pub use crate::datagram::DatagramPeer;
use crate::QueueFull;

/// Largest datagram the driver receives (game packets are at most 1400 bytes)
const RECV_LEN: usize = 2048;

/// Datagrams per `recvmmsg` / `sendmmsg` call of [`UdpDriver::run_batched`] unless set with
/// [`UdpDriver::with_batch_size`]
pub const DEFAULT_BATCH: usize = 32;

/// Datagrams [`UdpDriver::run_batched`] hands to the machine's `handle_batch` at once: what the
/// game server looks up together; a longer `recvmmsg` batch is fed group after group from an
/// array on the stack
const FEED: usize = 32;

/// Datagram counters of a [`UdpDriver`]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UdpStats {
    /// Datagrams sent
    pub sent: u64,
    /// Sends that failed (UDP is lossy: the frame is dropped, the machine's timers recover)
    pub send_errors: u64,
    /// Datagrams received
    pub received: u64,
    /// Inputs the machine refused with `QueueFull` and that were fed again after a drain
    pub retried: u64,
    /// Batches read ([`UdpDriver::run_batched`]): receives that returned datagrams, each one
    /// `recvmmsg` (one per 64 datagrams above 64); `received / batches` is the mean batch
    pub batches: u64,
    /// `sendmmsg` calls ([`UdpDriver::run_batched`])
    pub send_calls: u64,
    /// Datagrams dropped unread because the machine's peer key cannot hold their source
    /// ([`DatagramPeer::from_addr`] gave `None`: an IPv6 sender of a server keyed by
    /// `SocketAddrV4`)
    pub unkeyed: u64,
}

/// A machine over one blocking UDP socket, with a monotonic clock started at creation
///
/// Serves the game [`Client`](tether_net::game::Client) (peer `()`, socket connected to the
/// server: [`UdpDriver::connect`]) and the game [`Server`](tether_net::game::Server) keyed by
/// `SocketAddr` ([`UdpDriver::bind`]; on an IPv4 socket `SocketAddrV4` keys take a quarter of
/// the key memory, see [`DatagramPeer`]) with the same loop. Commands go through
/// [`UdpDriver::command`]; [`UdpDriver::run`] runs the loop and hands every event and every
/// application value to your closure. [`UdpDriver::run_batched`] is the same loop with batched
/// syscalls (`recvmmsg` / `sendmmsg`, Linux) for machines that take a batch ([`BatchInput`]:
/// the game server).
pub struct UdpDriver<M: Machine> {
    sock: UdpSocket,
    machine: M,
    epoch: Epoch,
    out: Vec<u8>,
    inp: Vec<u8>,
    /// Events that arrived after the closure asked to stop, handed out by the next `run`
    backlog: VecDeque<M::Event>,
    stats: UdpStats,
    batch: usize,
    #[cfg(any(target_os = "linux", target_os = "android"))]
    io: Option<(RecvBatch, SendBatch)>,
}

impl<M: Machine> fmt::Debug for UdpDriver<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpDriver")
            .field("local", &self.sock.local_addr().ok())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<M> UdpDriver<M>
where
    M: Machine,
    M::Peer: DatagramPeer,
    M::Error: QueueFull + fmt::Display,
{
    /// Drive `machine` over `sock` (blocking mode; the driver sets its read timeout)
    pub fn new(machine: M, sock: UdpSocket) -> Self {
        UdpDriver {
            sock,
            machine,
            epoch: Epoch::new(std::time::Instant::now()),
            out: std::vec![0; RECV_LEN],
            inp: std::vec![0; RECV_LEN],
            backlog: VecDeque::new(),
            stats: UdpStats::default(),
            batch: DEFAULT_BATCH,
            #[cfg(any(target_os = "linux", target_os = "android"))]
            io: None,
        }
    }

    /// Datagrams per `recvmmsg` / `sendmmsg` call of [`UdpDriver::run_batched`] (default
    /// [`DEFAULT_BATCH`]), clamped to `[1, 1024]` (Linux's `UIO_MAXIOV`); the buffers take
    /// `2 × n × 2048` bytes. Above 64 ([`IOV_CHUNK`](super::mmsg::IOV_CHUNK)) a batch takes one
    /// call per 64 datagrams: the `iovec`s of a call are an array on the stack
    #[must_use]
    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch = n.clamp(1, 1024);
        self
    }

    /// Datagrams per syscall of [`UdpDriver::run_batched`]
    #[must_use]
    pub fn batch_size(&self) -> usize {
        self.batch
    }

    /// A server socket bound to `local`
    ///
    /// # Errors
    /// The bind error.
    pub fn bind(machine: M, local: impl ToSocketAddrs) -> io::Result<Self> {
        Ok(Self::new(machine, UdpSocket::bind(local)?))
    }

    /// A client socket on an ephemeral port, connected to `server` (loopback servers get a
    /// loopback socket)
    ///
    /// # Errors
    /// Resolution, bind or connect errors.
    pub fn connect(machine: M, server: impl ToSocketAddrs) -> io::Result<Self> {
        let server = server
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address"))?;
        let local: SocketAddr = match server {
            SocketAddr::V4(a) if a.ip().is_loopback() => ([127, 0, 0, 1], 0).into(),
            SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
            SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let sock = UdpSocket::bind(local)?;
        sock.connect(server)?;
        Ok(Self::new(machine, sock))
    }

    /// The driver's clock: time since it was created
    #[must_use]
    pub fn now(&self) -> Instant {
        self.epoch.instant(std::time::Instant::now())
    }

    /// The machine (getters)
    #[must_use]
    pub fn machine(&self) -> &M {
        &self.machine
    }

    /// The machine, mutably (prefer [`UdpDriver::command`], which passes the current time)
    pub fn machine_mut(&mut self) -> &mut M {
        &mut self.machine
    }

    /// The socket
    #[must_use]
    pub fn socket(&self) -> &UdpSocket {
        &self.sock
    }

    /// The socket's local address
    ///
    /// # Errors
    /// As [`UdpSocket::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    /// Counters
    #[must_use]
    pub fn stats(&self) -> UdpStats {
        self.stats
    }

    /// Issue a command (`connect`, `close`, `send_chunks`, ...) at the current time; what it
    /// queues goes out at the start of the next [`UdpDriver::run`]
    pub fn command<R>(&mut self, f: impl FnOnce(&mut M, Instant) -> R) -> R {
        let now = self.now();
        f(&mut self.machine, now)
    }

    /// [`UdpDriver::command`] for a command that returns the machine's `Result`, its error
    /// turned into an `io::Error`
    ///
    /// # Errors
    /// The machine's refusal.
    pub fn try_command<R, E: fmt::Display>(
        &mut self,
        f: impl FnOnce(&mut M, Instant) -> Result<R, E>,
    ) -> io::Result<R> {
        self.command(f).map_err(|e| io::Error::other(e.to_string()))
    }

    /// Run the loop until the next event (at most `limit`; `None` when none came), dropping
    /// application values
    ///
    /// # Errors
    /// As [`UdpDriver::run`].
    pub fn next_event(&mut self, limit: Duration) -> io::Result<Option<M::Event>> {
        self.run(limit, |_, _, input| input.into_event())
    }

    /// Run the loop for at most `limit`, handing every event and application value to `f`
    ///
    /// `f` may issue commands on the machine it is given; their frames are sent before the
    /// next event. Returns `Some(r)` as soon as `f` returns `Some(r)` (events that were already
    /// queued then are kept for the next call), `None` when `limit` elapsed.
    ///
    /// # Errors
    /// Socket errors other than timeouts and ICMP refusals, and machine errors other than
    /// `QueueFull` (which the loop handles by draining and feeding the datagram again).
    pub fn run<R>(
        &mut self,
        limit: Duration,
        mut f: impl for<'a> FnMut(&mut M, Instant, Input<'a, M>) -> Option<R>,
    ) -> io::Result<Option<R>> {
        let end = crate::deadline(limit);
        let mut result = None;
        if let Some(r) = super::replay(&mut self.backlog, &mut self.machine, &self.epoch, &mut f) {
            return Ok(Some(r));
        }
        loop {
            // 2. drain: every frame to its address, every event to `f`
            self.flush(&mut f, &mut result)?;
            if result.is_some() {
                return Ok(result);
            }
            // 3. sleep until the machine's deadline, the end of `limit` or a datagram
            let Some(wait) = super::sleep_for(&self.machine, &self.epoch, end) else {
                return Ok(None);
            };
            self.sock.set_read_timeout(Some(wait))?;
            // 1. one input: a datagram or a due timer
            match self.sock.recv_from(&mut self.inp) {
                Ok((n, from)) => {
                    self.stats.received += 1;
                    match M::Peer::from_addr(from) {
                        Some(peer) => self.feed(n, peer, &mut f, &mut result)?,
                        None => self.stats.unkeyed += 1,
                    }
                    // timers run even while datagrams keep coming
                    self.timers_if_due();
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::ConnectionRefused
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    let now = self.now();
                    self.machine.handle_timeout(now);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `handle_timeout` when the machine's deadline has passed
    fn timers_if_due(&mut self) {
        let now = self.now();
        if self.machine.poll_timeout().is_some_and(|t| t <= now) {
            self.machine.handle_timeout(now);
        }
    }

    /// Feed `inp[..n]`; on `QueueFull` drain and feed it again
    fn feed<R>(
        &mut self,
        n: usize,
        from: M::Peer,
        f: &mut impl for<'a> FnMut(&mut M, Instant, Input<'a, M>) -> Option<R>,
        result: &mut Option<R>,
    ) -> io::Result<()> {
        loop {
            let now = self.now();
            let refused = match self.machine.handle_input(now, from, &self.inp[..n]) {
                Ok(r) => {
                    if let Some(app) = r.into_app() {
                        if result.is_none() {
                            *result = f(&mut self.machine, now, Input::App(from, app));
                        }
                    }
                    return Ok(());
                }
                Err(e) => e,
            };
            if !refused.is_queue_full() {
                return Err(io::Error::other(refused.to_string()));
            }
            self.stats.retried += 1;
            self.flush(f, result)?;
        }
    }

    /// Step 2: [`drain`] into the socket and `f`
    fn flush<R>(
        &mut self,
        f: &mut impl for<'a> FnMut(&mut M, Instant, Input<'a, M>) -> Option<R>,
        result: &mut Option<R>,
    ) -> io::Result<()> {
        loop {
            let now = self.now();
            let UdpDriver {
                sock,
                machine,
                out,
                backlog,
                stats,
                ..
            } = self;
            let r = drain(
                machine,
                now,
                out,
                |t, bytes| {
                    send_now(sock, stats, t.to.to_addr(), bytes);
                    Ok::<(), io::Error>(())
                },
                |m, ev| {
                    super::hand_event(result, backlog, f, m, now, ev);
                },
            );
            if let Some(done) = super::drained(r, &mut self.out) {
                return done;
            }
        }
    }
}

/// Send one datagram now (`to` is `None` on a connected socket), counting it as sent or as a
/// send error
fn send_now(sock: &UdpSocket, stats: &mut UdpStats, to: Option<SocketAddr>, bytes: &[u8]) {
    let sent = match to {
        Some(addr) => sock.send_to(bytes, addr),
        None => sock.send(bytes),
    };
    match sent {
        Ok(_) => stats.sent += 1,
        Err(_) => stats.send_errors += 1,
    }
}

/// Where frames and events go while a batch is fed: the send queue (flushed with `sendmmsg`
/// when full) and the closure (or the backlog once it asked to stop)
#[cfg(any(target_os = "linux", target_os = "android"))]
struct Sink<'s, M: Machine, F, R> {
    sock: &'s UdpSocket,
    out: &'s mut Vec<u8>,
    tx: &'s mut SendBatch,
    txh: &'s mut MmsgHeaders,
    stats: &'s mut UdpStats,
    backlog: &'s mut VecDeque<M::Event>,
    f: &'s mut F,
    result: &'s mut Option<R>,
}

#[cfg(any(target_os = "linux", target_os = "android"))]
impl<M, F, R> Sink<'_, M, F, R>
where
    M: Machine,
    M::Peer: DatagramPeer,
    F: for<'a> FnMut(&mut M, Instant, Input<'a, M>) -> Option<R>,
{
    /// Step 2 of the run loop into the send queue: every frame queued (the queue sent when
    /// full), every event to the closure
    fn drain(&mut self, machine: &mut M, now: Instant) -> io::Result<()> {
        loop {
            let Sink {
                sock,
                out,
                tx,
                txh,
                stats,
                backlog,
                f,
                result,
            } = self;
            let r = drain(
                machine,
                now,
                out,
                |t, bytes| {
                    let to = t.to.to_addr();
                    if tx.is_full() {
                        Self::count(stats, tx.send(txh, sock));
                    }
                    if !tx.queue(to, bytes) {
                        // longer than a slot: alone, now
                        send_now(sock, stats, to, bytes);
                    }
                    Ok::<(), io::Error>(())
                },
                |m, ev| {
                    super::hand_event(result, backlog, f, m, now, ev);
                },
            );
            if let Some(done) = super::drained(r, self.out) {
                return done;
            }
        }
    }

    /// Send what is queued
    fn send(&mut self) {
        if self.tx.queued() > 0 {
            Self::count(self.stats, self.tx.send(self.txh, self.sock));
        }
    }

    fn count(stats: &mut UdpStats, c: super::mmsg::SendCount) {
        stats.sent += c.sent;
        stats.send_errors += c.errors;
        stats.send_calls += c.calls;
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
impl<M> UdpDriver<M>
where
    M: BatchInput,
    M::Peer: DatagramPeer,
    M::Error: QueueFull + fmt::Display,
{
    /// [`UdpDriver::run`] with batched syscalls: each `recvmmsg` takes up to
    /// [`UdpDriver::batch_size`] datagrams, the machine gets them in one
    /// [`BatchInput::handle_batch`], and the frames it hands out go out with `sendmmsg`
    ///
    /// Same events, application values and frames as [`UdpDriver::run`] (frames and events are
    /// drained after every datagram, as after a single input; only the sends are gathered),
    /// and the same timers: they run when due, also while datagrams keep coming. Frames are
    /// sent at the end of each batch, when the send queue is full, and before the loop sleeps.
    ///
    /// A `limit` of zero handles what is ready (one batch at most) without waiting. Each call
    /// allocates the syscall headers once (they hold raw pointers and stay on this thread):
    /// prefer long calls to many short ones.
    ///
    /// When `f` returns `Some(r)`, the call returns after the batch being fed: the datagrams of
    /// that batch that follow are still fed (they were read from the socket), their application
    /// values still go to `f` (whose results after the first `Some` are ignored) and their
    /// events wait for the next call.
    ///
    /// # Errors
    /// As [`UdpDriver::run`].
    pub fn run_batched<R>(
        &mut self,
        limit: Duration,
        mut f: impl for<'a> FnMut(&mut M, Instant, Input<'a, M>) -> Option<R>,
    ) -> io::Result<Option<R>> {
        let end = crate::deadline(limit);
        if let Some(r) = super::replay(&mut self.backlog, &mut self.machine, &self.epoch, &mut f) {
            return Ok(Some(r));
        }
        let (mut rx, mut tx) = match self.io.take() {
            Some(io) if io.0.capacity() == self.batch => io,
            _ => (RecvBatch::new(self.batch), SendBatch::new(self.batch)),
        };
        let (mut rxh, mut txh) = (rx.headers(), tx.headers());
        let r = self.batched_loop(end, &mut rx, &mut rxh, &mut tx, &mut txh, &mut f);
        self.io = Some((rx, tx));
        r
    }

    fn batched_loop<R, F>(
        &mut self,
        end: std::time::Instant,
        rx: &mut RecvBatch,
        rxh: &mut MmsgHeaders,
        tx: &mut SendBatch,
        txh: &mut MmsgHeaders,
        f: &mut F,
    ) -> io::Result<Option<R>>
    where
        F: for<'a> FnMut(&mut M, Instant, Input<'a, M>) -> Option<R>,
    {
        let mut result = None;
        let UdpDriver {
            sock,
            machine,
            epoch,
            out,
            backlog,
            stats,
            ..
        } = self;
        let mut sink = Sink {
            sock,
            out,
            tx,
            txh,
            stats,
            backlog,
            f,
            result: &mut result,
        };
        loop {
            // 2. drain: every frame queued and sent, every event to `f`
            let now = epoch.instant(std::time::Instant::now());
            sink.drain(machine, now)?;
            // timers run when due, also while datagrams keep coming
            if sink.result.is_none() && machine.poll_timeout().is_some_and(|t| t <= now) {
                machine.handle_timeout(now);
                sink.drain(machine, now)?;
            }
            sink.send();
            if sink.result.is_some() {
                break;
            }
            // 1. input: what is queued, else sleep until the deadline, `end` or a datagram
            let mut n = rx.recv(rxh, sink.sock, None)?;
            if n == 0 {
                let Some(wait) = super::sleep_for(machine, epoch, end) else {
                    break;
                };
                n = rx.recv(rxh, sink.sock, Some(wait))?;
                if n == 0 {
                    let now = epoch.instant(std::time::Instant::now());
                    machine.handle_timeout(now);
                    continue;
                }
            }
            sink.stats.received += n as u64;
            sink.stats.batches += 1;
            let now = epoch.instant(std::time::Instant::now());
            // fed group after group from an array on the stack: no allocation per batch
            let unkeyed = (0..n)
                .filter_map(|i| rx.get(i))
                .filter(|&(from, _)| M::Peer::from_addr(from).is_none())
                .count();
            sink.stats.unkeyed += unkeyed as u64;
            let mut keyed = (0..n)
                .filter_map(|i| rx.get(i))
                .filter_map(|(from, bytes)| Some((M::Peer::from_addr(from)?, bytes)));
            while let Some(first) = keyed.next() {
                let mut group = [first; FEED];
                let mut len = 1;
                // `zip` asks `group` first: no datagram is taken from `keyed` without a slot
                for (slot, item) in group[1..].iter_mut().zip(&mut keyed) {
                    *slot = item;
                    len += 1;
                }
                let items = &group[..len];
                let mut at = 0;
                while at < items.len() {
                    let rest = &items[at..];
                    let mut failed = None;
                    let done = machine.handle_batch(now, rest, |m, i, received| {
                        if failed.is_some() {
                            return;
                        }
                        if let Some(app) = received.into_app() {
                            let r = (sink.f)(m, now, Input::App(rest[i].0, app));
                            if sink.result.is_none() {
                                *sink.result = r;
                            }
                        }
                        if let Err(e) = sink.drain(m, now) {
                            failed = Some(e);
                        }
                    });
                    if let Some(e) = failed {
                        return Err(e);
                    }
                    at += done;
                    if at < items.len() {
                        // `QueueFull`: drain, feed the rest again
                        sink.stats.retried += 1;
                        sink.drain(machine, now)?;
                    }
                }
            }
            if std::time::Instant::now() >= end {
                sink.drain(machine, now)?;
                sink.send();
                break;
            }
        }
        Ok(result)
    }
}
