//! The LongPort server over non-blocking `std::net` TCP sockets, one thread

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use std::vec::Vec;

use tether_net::longport::wire::RequestId;
use tether_net::longport::{
    Admission, CloseCode, Error, Grant, Server, ServerConfig, Source, Status, Transport,
};
use tether_net::time::Epoch;
use tether_net::Instant;

use crate::hub::{ConnId, Hub, HubStats, OutFrame, Outbox, SendError, ServerItem, ServerLimits};

/// Largest read from one socket per loop turn
const READ_CHUNK: usize = 16 * 1024;

/// A connection's outbox: bytes the socket has not taken yet
#[derive(Debug, Default)]
struct ByteQueue {
    buf: Vec<u8>,
    head: usize,
    finish_by: Option<std::time::Instant>,
}

#[derive(Debug, Clone, Default)]
struct SharedQueue(Arc<Mutex<ByteQueue>>);

impl SharedQueue {
    fn lock(&self) -> MutexGuard<'_, ByteQueue> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Outbox for SharedQueue {
    fn queued(&self) -> usize {
        let q = self.lock();
        q.buf.len() - q.head
    }
    fn push(&mut self, frame: OutFrame) {
        self.lock().buf.extend_from_slice(&frame.bytes);
    }
    fn finish(&mut self, linger: Duration) {
        self.lock().finish_by = Some(std::time::Instant::now() + linger);
    }
}

struct Sock {
    stream: TcpStream,
    out: SharedQueue,
    /// The machine was told the transport is gone; waiting for its `Closed`
    eof: bool,
}

/// Counters of a [`TcpServer`]'s driver layer
pub type TcpServerStats = HubStats;

/// Commands the application gives while handling a [`ServerItem`]
pub struct Ctl<'s, const PEERS: usize, const SESSIONS: usize> {
    hub: &'s mut Hub<SharedQueue, PEERS, SESSIONS>,
    now: Instant,
}

impl<const PEERS: usize, const SESSIONS: usize> fmt::Debug for Ctl<'_, PEERS, SESSIONS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctl").field("now", &self.now).finish()
    }
}

fn answer(r: Result<(), SendError>) -> Result<(), Error> {
    match r {
        Ok(()) => Ok(()),
        Err(SendError::Machine(e)) => Err(e),
        Err(SendError::Stalled) => Err(Error::Closed),
    }
}

impl<const PEERS: usize, const SESSIONS: usize> Ctl<'_, PEERS, SESSIONS> {
    /// The time of this loop turn
    #[must_use]
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The machine (getters: `connections`, `sessions`, `stats`, `wall_clock_ms`, ...)
    #[must_use]
    pub fn server(&self) -> &Server<ConnId, PEERS, SESSIONS> {
        &self.hub.server
    }

    /// Unix milliseconds now (the machine's wall clock, set from the system clock at start)
    #[must_use]
    pub fn wall_clock_ms(&self) -> i64 {
        self.hub.server.wall_clock_ms(self.now).unwrap_or(0)
    }

    /// Accept a pending Auth with this session (answer: the machine's [`Admission`], `OverQuota`
    /// when the grant's account already holds its quota: the machine refused the login instead)
    ///
    /// # Errors
    /// As `Server::accept_auth`.
    pub fn accept_auth(&mut self, peer: ConnId, grant: Grant) -> Result<Admission, Error> {
        self.hub.accept(self.now, peer, false, grant)
    }

    /// Accept a pending Reconnect with a fresh session (answer: the machine's [`Admission`])
    ///
    /// # Errors
    /// As `Server::accept_reconnect`.
    pub fn accept_reconnect(&mut self, peer: ConnId, grant: Grant) -> Result<Admission, Error> {
        self.hub.accept(self.now, peer, true, grant)
    }

    /// Reject a pending Auth (`status` not 0, `Error{code, msg}`)
    ///
    /// # Errors
    /// As `Server::reject_auth`.
    pub fn reject_auth(
        &mut self,
        peer: ConnId,
        status: Status,
        code: u64,
        msg: &str,
    ) -> Result<(), Error> {
        self.hub.reject(self.now, peer, false, status, code, msg)
    }

    /// Reject a pending Reconnect
    ///
    /// # Errors
    /// As `Server::reject_reconnect`.
    pub fn reject_reconnect(
        &mut self,
        peer: ConnId,
        status: Status,
        code: u64,
        msg: &str,
    ) -> Result<(), Error> {
        self.hub.reject(self.now, peer, true, status, code, msg)
    }

    /// Answer a business request
    ///
    /// # Errors
    /// As `Server::respond`; `Closed` also when the answer would overflow the connection's
    /// outbox (the connection is dropped).
    pub fn respond(
        &mut self,
        peer: ConnId,
        cmd: u8,
        request_id: RequestId,
        status: Status,
        body: &[u8],
    ) -> Result<(), Error> {
        answer(
            self.hub
                .respond(self.now, peer, cmd, request_id, status, body, false),
        )
    }

    /// Push a packet to an authenticated connection
    ///
    /// # Errors
    /// As [`Ctl::respond`].
    pub fn push(&mut self, peer: ConnId, cmd: u8, body: &[u8]) -> Result<(), Error> {
        let packet = tether_net::longport::wire::Packet::push(cmd, body);
        answer(self.hub.send(self.now, peer, &packet))
    }

    /// Close a connection with `Close{code, reason}`
    ///
    /// # Errors
    /// As `Server::close`.
    pub fn close(&mut self, peer: ConnId, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.hub.close(self.now, peer, code, reason)
    }

    /// Drop a connection's transport without a word (as a network failure would): the socket
    /// closes now, the machine reports `Closed` with `TransportClosed`, the session stays
    /// resumable
    pub fn drop_connection(&mut self, peer: ConnId) {
        self.hub.kill(self.now, peer);
    }

    /// Close every connection with `Close{ServerShutdown, reason}`, refuse new ones;
    /// `ShutdownComplete` follows
    ///
    /// # Errors
    /// As `Server::shutdown`.
    pub fn shutdown(&mut self, reason: &str) -> Result<(), Error> {
        self.hub.shutdown(self.now, reason)
    }
}

/// A LongPort server on a TCP listener: accepts, reads, writes and closes every connection
/// without blocking on any of them
///
/// [`TcpServer::run`] hands your closure every new connection, every auth and business request
/// (owned copies) and every machine event, with a [`Ctl`] to answer them. Each connection has a
/// bounded receive buffer and a bounded outbox ([`ServerLimits`]): a client that does not read
/// its answers is not read either, and is dropped when its outbox stays full past the stall
/// timeout, so it never delays the others.
pub struct TcpServer<const PEERS: usize = 64, const SESSIONS: usize = 256> {
    listener: TcpListener,
    hub: Hub<SharedQueue, PEERS, SESSIONS>,
    socks: HashMap<ConnId, Sock>,
    /// Sockets whose connection the machine closed: their outbox drains, then they close
    finishing: Vec<Sock>,
    /// `Accepted` items not handed out yet (a `run` that stopped early keeps them)
    accepted: VecDeque<ServerItem>,
    epoch: Epoch,
    next_id: ConnId,
    chunk: Vec<u8>,
}

impl<const PEERS: usize, const SESSIONS: usize> fmt::Debug for TcpServer<PEERS, SESSIONS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpServer")
            .field("local", &self.listener.local_addr().ok())
            .field("connections", &self.socks.len())
            .finish_non_exhaustive()
    }
}

impl TcpServer {
    /// Listen on `addr` with the default capacities (64 connections, 256 sessions)
    ///
    /// # Errors
    /// The bind error.
    pub fn bind(addr: impl ToSocketAddrs, config: ServerConfig) -> io::Result<Self> {
        Self::with_capacities(TcpListener::bind(addr)?, config, ServerLimits::default())
    }
}

impl<const PEERS: usize, const SESSIONS: usize> TcpServer<PEERS, SESSIONS> {
    /// Serve `listener` with a machine of these capacities and these per-connection limits;
    /// the machine's wall clock is set from the system clock
    ///
    /// # Errors
    /// Setting the listener non-blocking failed.
    pub fn with_capacities(
        listener: TcpListener,
        config: ServerConfig,
        limits: ServerLimits,
    ) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let mut hub = Hub::new(config, limits);
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        hub.server.set_wall_clock(Instant::ZERO, unix_ms);
        Ok(TcpServer {
            listener,
            hub,
            socks: HashMap::new(),
            finishing: Vec::new(),
            accepted: VecDeque::new(),
            epoch: Epoch::new(std::time::Instant::now()),
            next_id: 1,
            chunk: std::vec![0; READ_CHUNK],
        })
    }

    /// The listener's address
    ///
    /// # Errors
    /// As [`TcpListener::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The driver's clock
    #[must_use]
    pub fn now(&self) -> Instant {
        self.epoch.instant(std::time::Instant::now())
    }

    /// The machine (getters)
    #[must_use]
    pub fn server(&self) -> &Server<ConnId, PEERS, SESSIONS> {
        &self.hub.server
    }

    /// Counters of the driver layer (stalled connections, peak buffer sizes)
    #[must_use]
    pub fn stats(&self) -> TcpServerStats {
        self.hub.stats()
    }

    /// Open connections
    #[must_use]
    pub fn connections(&self) -> usize {
        self.socks.len()
    }

    /// Issue commands outside of [`TcpServer::run`] (e.g. `shutdown` from a signal)
    pub fn command<R>(&mut self, f: impl FnOnce(&mut Ctl<'_, PEERS, SESSIONS>) -> R) -> R {
        let now = self.now();
        f(&mut Ctl {
            hub: &mut self.hub,
            now,
        })
    }

    /// Run the loop for at most `limit`, handing every item to `f`
    ///
    /// Returns `Some(r)` as soon as `f` returns `Some(r)` (items not handed out yet stay queued
    /// for the next call), `None` when `limit` elapsed.
    ///
    /// # Errors
    /// Accept errors other than `WouldBlock` (e.g. out of file descriptors).
    pub fn run<R>(
        &mut self,
        limit: Duration,
        mut f: impl FnMut(&mut Ctl<'_, PEERS, SESSIONS>, ServerItem) -> Option<R>,
    ) -> io::Result<Option<R>> {
        let end = crate::deadline(limit);
        loop {
            let now = self.now();
            let mut busy = false;
            // 1. inputs: new connections, bytes, ended streams, timers
            loop {
                match self.listener.accept() {
                    Ok((stream, remote)) => {
                        busy = true;
                        let id = self.next_id;
                        self.next_id += 1;
                        if stream.set_nonblocking(true).is_err() {
                            continue;
                        }
                        let _ = stream.set_nodelay(true);
                        let out = SharedQueue::default();
                        match self.hub.connect(
                            now,
                            id,
                            Transport::Tcp,
                            Source::from(remote.ip()),
                            out.clone(),
                        ) {
                            Ok(()) => {
                                self.socks.insert(
                                    id,
                                    Sock {
                                        stream,
                                        out,
                                        eof: false,
                                    },
                                );
                                self.accepted.push_back(ServerItem::Accepted {
                                    peer: id,
                                    remote,
                                    transport: Transport::Tcp,
                                });
                            }
                            // refused by the machine (full, shutting down): close unanswered
                            Err(_) => drop(stream),
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if is_transient_accept_error(&e) => break,
                    Err(e) => return Err(e),
                }
            }
            let ids: Vec<ConnId> = self.socks.keys().copied().collect();
            for id in ids {
                busy |= self.pump(now, id);
            }
            if self.hub.poll_timeout().is_some_and(|t| t <= now) {
                self.hub.tick(now);
            }
            // 2. the machine's work, then the application's
            self.hub.process(now);
            let mut result = None;
            while result.is_none() {
                let item = match self.accepted.pop_front() {
                    Some(a) => a,
                    None => match self.hub.next_input() {
                        Some(i) => ServerItem::Input(i),
                        None => match self.hub.next_event() {
                            Some(e) => ServerItem::Event(e),
                            None => break,
                        },
                    },
                };
                busy = true;
                result = f(
                    &mut Ctl {
                        hub: &mut self.hub,
                        now,
                    },
                    item,
                );
                self.hub.process(now);
            }
            for id in self.hub.take_killed() {
                if let Some(s) = self.socks.remove(&id) {
                    let _ = s.stream.shutdown(Shutdown::Both);
                }
            }
            for id in self.hub.take_closing() {
                if let Some(s) = self.socks.remove(&id) {
                    self.finishing.push(s);
                }
            }
            busy |= self.finish_closing();
            if result.is_some() {
                return Ok(result);
            }
            if std::time::Instant::now() >= end {
                return Ok(None);
            }
            // 3. nothing happened: sleep a little (or until the next deadline)
            if !busy {
                let nap = self
                    .hub
                    .poll_timeout()
                    .map_or(Duration::from_millis(1), |t| {
                        self.epoch
                            .to_std(t)
                            .saturating_duration_since(std::time::Instant::now())
                    })
                    .min(Duration::from_millis(1));
                std::thread::sleep(nap);
            }
        }
    }

    /// Write what the outbox holds, read what the hub has room for; true when bytes moved
    fn pump(&mut self, now: Instant, id: ConnId) -> bool {
        let Some(s) = self.socks.get_mut(&id) else {
            return false;
        };
        if s.eof {
            return false;
        }
        let mut moved = match write_some(&mut s.stream, &s.out) {
            Ok(m) => m,
            Err(_) => {
                s.eof = true;
                self.hub.closed(now, id);
                return false;
            }
        };
        let room = self.hub.room(now, id).min(self.chunk.len());
        if room == 0 {
            return moved;
        }
        match s.stream.read(&mut self.chunk[..room]) {
            Ok(0) => {
                s.eof = true;
                self.hub.closed(now, id);
            }
            Ok(n) => {
                moved = true;
                self.hub.input_stream(id, &self.chunk[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                s.eof = true;
                self.hub.closed(now, id);
            }
        }
        moved
    }

    /// Drain the outboxes of closed connections, then close their sockets
    fn finish_closing(&mut self) -> bool {
        let mut moved = false;
        let wall = std::time::Instant::now();
        self.finishing.retain_mut(|s| {
            moved |= write_some(&mut s.stream, &s.out).unwrap_or(false);
            let q = s.out.lock();
            let done = q.buf.len() == q.head || q.finish_by.is_none_or(|t| wall >= t);
            if done {
                let _ = s.stream.shutdown(Shutdown::Both);
            }
            !done
        });
        moved
    }
}

fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    ) || e.raw_os_error() == Some(24) // EMFILE: try again next turn
}

/// Write as much of the queue as the socket takes without blocking; true when bytes moved
fn write_some(stream: &mut TcpStream, out: &SharedQueue) -> io::Result<bool> {
    let mut q = out.lock();
    let mut moved = false;
    while q.head < q.buf.len() {
        let head = q.head;
        match stream.write(&q.buf[head..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                q.head += n;
                moved = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if q.head == q.buf.len() {
        q.buf.clear();
        q.head = 0;
    } else if q.head > 64 * 1024 && q.head * 2 > q.buf.len() {
        let head = q.head;
        q.buf.drain(..head);
        q.head = 0;
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_net::FrameKind;

    const K: usize = 1024;

    /// A connected pair on loopback, the first end non-blocking; with `fill`, written until its
    /// send buffer and the peer's receive buffer are full (a write now would block)
    fn pair(fill: bool) -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        a.set_nonblocking(true).unwrap();
        let junk = std::vec![0u8; 64 * K];
        if fill {
            loop {
                match (&a).write(&junk) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        (a, b)
    }

    fn queue(len: usize, head: usize) -> SharedQueue {
        let q = SharedQueue::default();
        {
            let mut b = q.lock();
            b.buf = (0..len).map(|i| (i / K) as u8).collect();
            b.head = head;
        }
        q
    }

    #[test]
    fn queued_counts_the_bytes_the_socket_has_not_taken() {
        let mut q = queue(10, 4);
        assert_eq!(q.queued(), 6);
        q.push(OutFrame {
            kind: FrameKind::Stream,
            bytes: std::vec![9; 5],
        });
        assert_eq!(q.queued(), 11);
        assert_eq!(q.lock().buf[10..], [9; 5]);
    }

    #[test]
    fn finish_sets_the_linger_deadline_from_now() {
        let mut q = SharedQueue::default();
        assert_eq!(q.lock().finish_by, None);
        let before = std::time::Instant::now();
        q.finish(Duration::from_secs(5));
        let after = std::time::Instant::now();
        let by = q.lock().finish_by.unwrap();
        assert!(by >= before + Duration::from_secs(5) && by <= after + Duration::from_secs(5));
    }

    /// A socket that takes nothing: the queue is kept, and compacted only once more than 64 KiB
    /// were taken and they are more than half of it
    #[test]
    fn a_blocked_write_keeps_the_queue_and_compacts_a_long_taken_head() {
        let (mut a, _b) = pair(true);
        for (len, head, compacted) in [
            (150 * K, 100 * K, true),
            (100 * K, 64 * K, false),
            (3000, 2000, false),
            (200 * K, 100 * K, false),
            (250 * K, 100 * K, false),
        ] {
            let q = queue(len, head);
            assert!(!write_some(&mut a, &q).unwrap(), "nothing moved");
            let b = q.lock();
            let (want_len, want_head) = if compacted {
                (len - head, 0)
            } else {
                (len, head)
            };
            assert_eq!((b.buf.len(), b.head), (want_len, want_head), "{len} {head}");
            assert_eq!(
                b.buf[b.head],
                (head / K) as u8,
                "{len} {head}: the first byte kept"
            );
        }
    }

    #[test]
    fn a_write_the_socket_takes_empties_the_queue() {
        let (mut a, mut b) = pair(false);
        b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let q = queue(3000, 1000);
        assert!(write_some(&mut a, &q).unwrap());
        let left = q.lock();
        assert_eq!((left.buf.len(), left.head), (0, 0));
        let mut got = std::vec![0u8; 2000];
        b.read_exact(&mut got).unwrap();
        assert_eq!(got, queue(3000, 1000).lock().buf[1000..]);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_write_to_a_reset_connection_is_an_error() {
        let (mut a, b) = pair(false);
        // the peer resets: SO_LINGER 0, then close
        let zero = nix::libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        nix::sys::socket::setsockopt(&b, nix::sys::socket::sockopt::Linger, &zero).unwrap();
        drop(b);
        std::thread::sleep(Duration::from_millis(50));
        let mut err = None;
        // a first write may still be taken by the kernel; a later one fails
        for _ in 0..3 {
            if let Err(e) = write_some(&mut a, &queue(3000, 0)) {
                err = Some(e.kind());
                break;
            }
        }
        assert!(
            matches!(
                err,
                Some(io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe)
            ),
            "{err:?}"
        );
    }

    #[test]
    fn accept_errors_worth_retrying_are_told_apart() {
        for (e, transient) in [
            (io::Error::from_raw_os_error(24), true), // EMFILE
            (io::ErrorKind::ConnectionAborted.into(), true),
            (io::ErrorKind::ConnectionReset.into(), true),
            (io::Error::from_raw_os_error(22), false), // EINVAL: the listener is unusable
            (io::Error::from_raw_os_error(9), false),  // EBADF
        ] {
            assert_eq!(is_transient_accept_error(&e), transient, "{e}");
        }
    }
}
