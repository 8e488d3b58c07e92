//! Batched datagram I/O on Linux: `recvmmsg` into preallocated buffers, `sendmmsg` of queued
//! frames (through `nix`'s safe wrappers)
//!
//! [`RecvBatch`] and [`SendBatch`] hold the buffers and travel between threads with their
//! driver; the syscall headers ([`MmsgHeaders`]) hold raw pointers, so they are made on the
//! thread that uses them, once per [`UdpDriver::run_batched`](super::UdpDriver::run_batched)
//! call. The end-to-end bench's bare receive-and-reply loop uses these same types, so that it
//! makes exactly the driver's syscalls.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;
use std::vec::Vec;

use nix::sys::socket::{
    recvmmsg, sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage,
};

/// Largest batch (Linux's `UIO_MAXIOV`, the most messages one `recvmmsg`/`sendmmsg` takes; the
/// calls here take at most [`IOV_CHUNK`] each)
pub const MAX_BATCH: usize = 1024;

/// `iovec`s per `recvmmsg` / `sendmmsg` call, in an array on the stack (no allocation per
/// call): a batch of more datagrams takes one call per 64 (a receive stops at the first call
/// that does not fill its 64)
pub const IOV_CHUNK: usize = 64;

/// Bytes per receive slot (game packets are at most 1400 bytes; a longer datagram is cut here,
/// as the one-at-a-time loop cuts it)
pub const SLOT_LEN: usize = 2048;

/// What one [`SendBatch::send`] did
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SendCount {
    /// Datagrams the kernel took
    pub sent: u64,
    /// Datagrams dropped because their send failed (UDP is lossy: the machine's timers recover)
    pub errors: u64,
    /// `sendmmsg` calls made
    pub calls: u64,
}

/// The syscall headers of a [`RecvBatch`] or a [`SendBatch`]: one `mmsghdr` per slot, made on
/// the thread that uses them (`headers()`; they hold raw pointers, so they are not `Send`)
///
/// Each batch gets its own: `sendmmsg` points its headers at the send queue's addresses,
/// `recvmmsg` needs headers pointing at their own address slots.
#[derive(Debug)]
pub struct MmsgHeaders {
    inner: MultiHeaders<SockaddrStorage>,
    cap: usize,
    send: bool,
}

/// Receive buffers for batched input over one UDP socket: up to `capacity` datagrams per
/// `recvmmsg` call, each in a slot of [`SLOT_LEN`] bytes (`capacity × SLOT_LEN` bytes)
///
/// Nothing is copied: datagrams stay in their slots until the next [`RecvBatch::recv`] and are
/// read with [`RecvBatch::get`].
#[derive(Debug)]
pub struct RecvBatch {
    cap: usize,
    buf: Vec<u8>,
    /// Per received datagram: source, slot and length
    meta: Vec<(SocketAddr, usize, usize)>,
    /// Datagrams whose source was no IP address (not in `meta`)
    unnamed: u64,
    /// `recvmmsg` calls made
    calls: u64,
}

impl RecvBatch {
    /// Buffers for batches of `capacity` datagrams, clamped to `[1, MAX_BATCH]`
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        let cap = capacity.clamp(1, MAX_BATCH);
        RecvBatch {
            cap,
            buf: std::vec![0; cap * SLOT_LEN],
            meta: Vec::with_capacity(cap),
            unnamed: 0,
            calls: 0,
        }
    }

    /// Datagrams per batch
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// The `recvmmsg` headers for this batch (allocates: make them once per thread and loop)
    #[must_use]
    pub fn headers(&self) -> MmsgHeaders {
        MmsgHeaders {
            inner: MultiHeaders::preallocate(self.cap.min(IOV_CHUNK), None),
            cap: self.cap.min(IOV_CHUNK),
            send: false,
        }
    }

    /// Receive up to `capacity` datagrams with one `recvmmsg` call (one per [`IOV_CHUNK`], the
    /// later ones only while the earlier filled theirs); returns how many
    ///
    /// `wait: None` does not block (`MSG_DONTWAIT`): `Ok(0)` when nothing is queued. `Some(t)`
    /// sets the socket's read timeout to `t` and blocks until the first datagram, then takes
    /// what else is queued (`MSG_WAITFORONE`); `Ok(0)` when `t` passed. The socket must be in
    /// blocking mode. The previous batch's datagrams are gone afterwards.
    ///
    /// # Errors
    /// Socket errors other than "nothing there" (`WouldBlock`, `TimedOut`, `Interrupted`) and
    /// ICMP refusals on a connected socket, which count as nothing received.
    ///
    /// # Panics
    /// When `headers` are not receive headers of this batch's capacity or more.
    pub fn recv(
        &mut self,
        headers: &mut MmsgHeaders,
        sock: &UdpSocket,
        wait: Option<Duration>,
    ) -> io::Result<usize> {
        assert!(
            !headers.send && headers.cap >= self.cap.min(IOV_CHUNK),
            "headers of another batch"
        );
        self.meta.clear();
        let mut flags = MsgFlags::MSG_WAITFORONE;
        match wait {
            None => flags |= MsgFlags::MSG_DONTWAIT,
            Some(t) => sock.set_read_timeout(Some(t.max(Duration::from_micros(1))))?,
        }
        let RecvBatch {
            buf,
            meta,
            unnamed,
            calls,
            cap,
        } = self;
        let fd = sock.as_raw_fd();
        let mut slots = buf.chunks_exact_mut(SLOT_LEN);
        let mut first = 0;
        loop {
            let mut k = 0;
            let mut iovs: [[IoSliceMut<'_>; 1]; IOV_CHUNK] = core::array::from_fn(|_| {
                let slot = slots.next().map_or(&mut [][..], |b| {
                    k += 1;
                    b
                });
                [IoSliceMut::new(slot)]
            });
            *calls += 1;
            let got = recvmmsg(fd, &mut headers.inner, iovs[..k].iter_mut(), flags, None);
            let mut taken = 0;
            match got {
                Ok(msgs) => {
                    for (j, m) in msgs.enumerate() {
                        taken += 1;
                        match m.address.as_ref().and_then(to_std) {
                            Some(from) => meta.push((from, first + j, m.bytes.min(SLOT_LEN))),
                            None => *unnamed += 1,
                        }
                    }
                }
                Err(e) => {
                    let e = io::Error::from(e);
                    // after a first call that took datagrams, keep them: the error comes again
                    if first == 0
                        && !matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock
                                | io::ErrorKind::TimedOut
                                | io::ErrorKind::Interrupted
                                | io::ErrorKind::ConnectionRefused
                        )
                    {
                        return Err(e);
                    }
                }
            }
            first += k;
            // short of the chunk (all that was queued), or out of slots
            if taken < k || first >= *cap {
                break;
            }
            // the next call takes only what is queued
            flags |= MsgFlags::MSG_DONTWAIT;
        }
        Ok(self.meta.len())
    }

    /// Datagrams of the last [`RecvBatch::recv`]
    #[must_use]
    pub fn len(&self) -> usize {
        self.meta.len()
    }

    /// True when the last [`RecvBatch::recv`] got nothing
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }

    /// Datagram `i` of the last [`RecvBatch::recv`]: its source and bytes
    #[must_use]
    pub fn get(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
        let &(from, slot, n) = self.meta.get(i)?;
        Some((from, &self.buf[slot * SLOT_LEN..slot * SLOT_LEN + n]))
    }

    /// Datagrams received without an IP source address (dropped), since creation
    #[must_use]
    pub fn unnamed(&self) -> u64 {
        self.unnamed
    }

    /// `recvmmsg` calls made, since creation
    #[must_use]
    pub fn calls(&self) -> u64 {
        self.calls
    }
}

/// A send queue for batched output over one UDP socket: up to `capacity` frames, copied into
/// slots of [`SLOT_LEN`] bytes, sent with one `sendmmsg` call per [`IOV_CHUNK`] frames
/// ([`SendBatch::send`])
#[derive(Debug)]
pub struct SendBatch {
    cap: usize,
    buf: Vec<u8>,
    len: Vec<usize>,
    to: Vec<Option<SockaddrStorage>>,
}

impl SendBatch {
    /// A queue of `capacity` frames, clamped to `[1, MAX_BATCH]`
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        let cap = capacity.clamp(1, MAX_BATCH);
        SendBatch {
            cap,
            buf: std::vec![0; cap * SLOT_LEN],
            len: Vec::with_capacity(cap),
            to: Vec::with_capacity(cap),
        }
    }

    /// Frames per `sendmmsg` call
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// The `sendmmsg` headers for this queue (allocates: make them once per thread and loop)
    #[must_use]
    pub fn headers(&self) -> MmsgHeaders {
        MmsgHeaders {
            inner: MultiHeaders::preallocate(self.cap.min(IOV_CHUNK), None),
            cap: self.cap.min(IOV_CHUNK),
            send: true,
        }
    }

    /// Frames queued for the next [`SendBatch::send`]
    #[must_use]
    pub fn queued(&self) -> usize {
        self.len.len()
    }

    /// True when the queue holds `capacity` frames
    #[must_use]
    pub fn is_full(&self) -> bool {
        self.len.len() >= self.cap
    }

    /// Queue a copy of `bytes` for `to` (`None`: the address the socket is connected to);
    /// `false` when the queue is full (send it first) or the frame is longer than [`SLOT_LEN`]
    /// (send that one alone)
    pub fn queue(&mut self, to: Option<SocketAddr>, bytes: &[u8]) -> bool {
        let i = self.len.len();
        if i >= self.cap || bytes.len() > SLOT_LEN {
            return false;
        }
        self.buf[i * SLOT_LEN..i * SLOT_LEN + bytes.len()].copy_from_slice(bytes);
        self.len.push(bytes.len());
        self.to.push(to.map(SockaddrStorage::from));
        true
    }

    /// Send every queued frame with `sendmmsg` (one call per [`IOV_CHUNK`] frames, more when
    /// the kernel takes only part of them; a frame whose send fails is dropped and counted) and
    /// empty the queue
    ///
    /// # Panics
    /// When `headers` are not send headers of this queue's capacity or more.
    pub fn send(&mut self, headers: &mut MmsgHeaders, sock: &UdpSocket) -> SendCount {
        assert!(
            headers.send && headers.cap >= self.cap.min(IOV_CHUNK),
            "headers of another batch"
        );
        let mut count = SendCount::default();
        let n = self.len.len();
        let mut at = 0;
        while at < n {
            let end = n.min(at + IOV_CHUNK);
            let iovs: [[IoSlice<'_>; 1]; IOV_CHUNK] = core::array::from_fn(|j| {
                let i = at + j;
                [IoSlice::new(if i < end {
                    &self.buf[i * SLOT_LEN..i * SLOT_LEN + self.len[i]]
                } else {
                    &[]
                })]
            });
            let cmsgs: [ControlMessage<'_>; 0] = [];
            count.calls += 1;
            match sendmmsg(
                sock.as_raw_fd(),
                &mut headers.inner,
                iovs[..end - at].iter(),
                &self.to[at..end],
                cmsgs,
                MsgFlags::empty(),
            ) {
                Ok(r) => {
                    let sent = r.count();
                    count.sent += sent as u64;
                    if sent == 0 {
                        // nothing taken and no error: drop the first rather than spin
                        count.errors += 1;
                    }
                    at += sent.max(1);
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => {
                    // the first frame failed (refused, unreachable, no buffer): drop it, go on
                    count.errors += 1;
                    at += 1;
                }
            }
        }
        self.len.clear();
        self.to.clear();
        count
    }
}

/// The std form of a socket address (`None` for families other than IPv4 and IPv6)
fn to_std(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::from(*v4));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_round_trips_on_loopback() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (mut rx, mut tx) = (RecvBatch::new(4), SendBatch::new(4));
        let (mut rh, mut th) = (rx.headers(), tx.headers());
        assert_eq!(rx.recv(&mut rh, &b, None).unwrap(), 0, "nothing queued yet");
        for i in 0..6u8 {
            let to = Some(b.local_addr().unwrap());
            assert_eq!(tx.queue(to, &[i; 3]), i < 4, "a queue of 4");
        }
        assert!(tx.is_full());
        let c = tx.send(&mut th, &a);
        assert_eq!((c.sent, c.errors, c.calls, tx.queued()), (4, 0, 1, 0));
        assert!(!tx.is_full());
        let mut seen = Vec::new();
        while seen.len() < 4 {
            let n = rx.recv(&mut rh, &b, Some(Duration::from_secs(5))).unwrap();
            assert!(n >= 1, "timed out with {seen:?}");
            assert_eq!((rx.len(), rx.is_empty(), rx.unnamed()), (n, false, 0));
            for i in 0..n {
                let (from, bytes) = rx.get(i).unwrap();
                assert_eq!(from, a.local_addr().unwrap());
                seen.push(bytes.to_vec());
            }
        }
        assert_eq!(seen, (0..4u8).map(|i| std::vec![i; 3]).collect::<Vec<_>>());
        let n = rx
            .recv(&mut rh, &b, Some(Duration::from_millis(20)))
            .unwrap();
        assert_eq!(n, 0, "timeout");
        assert!(rx.get(0).is_none() && rx.is_empty());
    }

    #[test]
    fn capacities_are_clamped_to_one_and_max_batch() {
        for (asked, got) in [(0, 1), (1, 1), (5, 5), (MAX_BATCH + 1, MAX_BATCH)] {
            assert_eq!(RecvBatch::new(asked).capacity(), got);
            assert_eq!(SendBatch::new(asked).capacity(), got);
        }
        let mut tx = SendBatch::new(2);
        assert!(!tx.is_full() && tx.queue(None, b"x") && !tx.is_full());
        assert!(tx.queue(None, b"y") && tx.is_full());
    }

    #[test]
    fn a_frame_whose_send_fails_is_dropped_and_counted_and_the_rest_go_out() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut tx = SendBatch::new(4);
        let mut th = tx.headers();
        let to_b = Some(b.local_addr().unwrap());
        // port 0 is no destination: `sendto` fails with EINVAL
        let nowhere = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        for (to, bytes) in [(to_b, b"one"), (nowhere, b"two"), (to_b, b"six")] {
            assert!(tx.queue(to, bytes));
        }
        // the kernel takes "one" and stops at "two"; "two" fails alone and is dropped; "six"
        // goes in a third call
        let c = tx.send(&mut th, &a);
        assert_eq!((c.sent, c.errors, c.calls, tx.queued()), (2, 1, 3, 0));
        let mut buf = [0u8; 8];
        for want in [b"one", b"six"] {
            let n = b.recv(&mut buf).expect("a datagram within 5 s");
            assert_eq!(&buf[..n], want);
        }
    }

    /// Send `n` datagrams of 2 bytes (their index) from `a` to `b`, in `send_calls` calls
    fn queue_up(a: &UdpSocket, b: &UdpSocket, n: usize, send_calls: u64) {
        let mut tx = SendBatch::new(n);
        let mut th = tx.headers();
        for i in 0..n {
            assert!(tx.queue(Some(b.local_addr().unwrap()), &(i as u16).to_le_bytes()));
        }
        let c = tx.send(&mut th, a);
        assert_eq!((c.sent, c.errors, c.calls), (n as u64, 0, send_calls));
        std::thread::sleep(Duration::from_millis(50));
    }

    /// The datagrams of the last receive are `0..n` from `a`, in order
    fn check(rx: &RecvBatch, a: &UdpSocket, n: usize) {
        assert_eq!(rx.len(), n);
        for i in 0..n {
            let (from, bytes) = rx.get(i).unwrap();
            assert_eq!(
                (from, bytes),
                (a.local_addr().unwrap(), &(i as u16).to_le_bytes()[..])
            );
        }
        assert!(rx.get(n).is_none());
    }

    #[test]
    fn a_batch_over_one_iov_chunk_takes_one_call_per_chunk_and_keeps_its_order() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut rx = RecvBatch::new(150);
        let mut rh = rx.headers();
        // all queued: the first call fills its 64, the second takes the rest and stops the
        // receive (a third, or a second that waited for more, would be wrong)
        const N: usize = IOV_CHUNK + IOV_CHUNK / 2 + 4;
        queue_up(&a, &b, N, 2);
        let t = std::time::Instant::now();
        assert_eq!(
            rx.recv(&mut rh, &b, Some(Duration::from_secs(10))).unwrap(),
            N
        );
        assert!(t.elapsed() < Duration::from_secs(5), "waited for more");
        check(&rx, &a, N);
        assert_eq!(rx.calls(), 2);
        // fewer than a chunk: one call
        queue_up(&a, &b, 10, 1);
        assert_eq!(rx.recv(&mut rh, &b, None).unwrap(), 10);
        check(&rx, &a, 10);
        assert_eq!(rx.calls(), 3);
        // exactly one chunk: the second call finds nothing, which is no error
        queue_up(&a, &b, IOV_CHUNK, 1);
        assert_eq!(rx.recv(&mut rh, &b, None).unwrap(), IOV_CHUNK);
        check(&rx, &a, IOV_CHUNK);
        assert_eq!(rx.calls(), 5);
        assert_eq!(rx.recv(&mut rh, &b, None).unwrap(), 0);
        assert_eq!(rx.calls(), 6);
        // a capacity of one chunk, filled: no second call
        let mut rx = RecvBatch::new(IOV_CHUNK);
        let mut rh = rx.headers();
        queue_up(&a, &b, IOV_CHUNK + 3, 2);
        assert_eq!(rx.recv(&mut rh, &b, None).unwrap(), IOV_CHUNK);
        check(&rx, &a, IOV_CHUNK);
        assert_eq!(rx.calls(), 1);
    }

    #[test]
    fn a_socket_error_is_returned_and_non_ip_sources_are_counted_apart() {
        use std::os::fd::OwnedFd;
        use std::os::unix::net::UnixDatagram;
        // a listening TCP socket in a `UdpSocket`: recvmmsg fails (not "nothing there")
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let not_udp = UdpSocket::from(OwnedFd::from(l));
        let mut rx = RecvBatch::new(4);
        let mut rh = rx.headers();
        assert!(rx.recv(&mut rh, &not_udp, None).is_err());
        // datagrams from a Unix socket: received, but no IP source to hand out
        let (u1, u2) = UnixDatagram::pair().unwrap();
        for m in [&b"a"[..], b"b", b"c"] {
            u1.send(m).unwrap();
        }
        let unix = UdpSocket::from(OwnedFd::from(u2));
        assert_eq!(rx.recv(&mut rh, &unix, None).unwrap(), 0);
        assert_eq!((rx.unnamed(), rx.calls()), (3, 2));
    }

    #[test]
    fn a_frame_too_long_for_a_slot_is_not_queued() {
        let mut tx = SendBatch::new(2);
        assert!(!tx.queue(None, &[0; SLOT_LEN + 1]));
        assert!(tx.queue(None, &[0; SLOT_LEN]));
        assert_eq!(tx.queued(), 1);
    }
}
