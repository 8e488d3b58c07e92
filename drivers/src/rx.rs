//! A compacting receive buffer for stream transports, and the one-packet feed step
//!
//! A stream machine (LongPort over TCP) parses at most one packet per `handle_input` and says how
//! many bytes it consumed, or how many the next packet needs; partial packets stay in the
//! caller's buffer. [`RxBuf`] is that buffer: bytes are appended at the end, consumed from the
//! front, and moved back to the start only when the free tail is too small (so a long run of
//! small packets costs no copying). Its storage is any byte slice owner: a `Vec<u8>` (std) or
//! an array (no_std).

use tether_net::{Machine, Received};

/// A receive buffer: `buf[start..end]` holds the bytes not consumed yet
#[derive(Debug, Clone)]
pub struct RxBuf<B> {
    buf: B,
    start: usize,
    end: usize,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> RxBuf<B> {
    /// An empty buffer over `storage` (its length is the capacity)
    pub const fn new(storage: B) -> Self {
        RxBuf {
            buf: storage,
            start: 0,
            end: 0,
        }
    }

    /// The bytes not consumed yet
    #[must_use]
    pub fn data(&self) -> &[u8] {
        &self.buf.as_ref()[self.start..self.end]
    }

    /// Number of bytes not consumed yet
    #[must_use]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// True when every byte was consumed
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Total capacity
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.buf.as_ref().len()
    }

    /// Bytes that can still be appended (after compaction)
    #[must_use]
    pub fn free(&self) -> usize {
        self.capacity() - self.len()
    }

    /// Drop the first `n` bytes (all of them when `n` is larger)
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Forget everything (a new transport starts from an empty stream)
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// The free tail to read into, compacting first when fewer than `want` bytes are free at the
    /// end; call [`RxBuf::filled`] with the number of bytes written
    pub fn spare(&mut self, want: usize) -> &mut [u8] {
        let cap = self.capacity();
        if cap - self.end < want.max(1) && self.start > 0 {
            self.buf.as_mut().copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf.as_mut()[self.end..]
    }

    /// Record `n` bytes written into [`RxBuf::spare`]
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.capacity());
    }

    /// Append `data`, as much as fits; returns how many bytes were taken
    pub fn extend(&mut self, data: &[u8]) -> usize {
        let room = self.spare(data.len());
        let n = room.len().min(data.len());
        room[..n].copy_from_slice(&data[..n]);
        self.filled(n);
        n
    }
}

#[cfg(feature = "std")]
impl RxBuf<std::vec::Vec<u8>> {
    /// An empty buffer of `capacity` bytes on the heap
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Self {
        RxBuf::new(std::vec![0; capacity])
    }
}

/// What one [`feed_one`] call did
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fed {
    /// One frame was consumed; more may be buffered
    Frame,
    /// The buffer holds no whole frame: read more (`Some(n)`: the next frame needs `n` bytes in
    /// all, which may exceed the buffer's capacity)
    NeedMore(Option<usize>),
}

/// Step 1 of the run loop for a stream transport: feed the buffered bytes, let the machine parse
/// at most one frame, hand its application value to `on_app`, drop the consumed bytes
///
/// # Errors
/// The machine's error; nothing was consumed (for `QueueFull`: drain, then call again).
pub fn feed_one<M: Machine, B: AsRef<[u8]> + AsMut<[u8]>>(
    machine: &mut M,
    now: tether_net::Instant,
    from: M::Peer,
    rx: &mut RxBuf<B>,
    on_app: impl for<'a> FnOnce(&mut M, M::App<'a>),
) -> Result<Fed, M::Error> {
    if rx.is_empty() {
        return Ok(Fed::NeedMore(None));
    }
    let r: Received<M::App<'_>> = machine.handle_input(now, from, rx.data())?;
    let consumed = r.bytes_consumed();
    let need = r.needed();
    if let Some(app) = r.into_app() {
        on_app(machine, app);
    }
    rx.consume(consumed);
    if need.is_some() || consumed == 0 {
        Ok(Fed::NeedMore(need))
    } else {
        Ok(Fed::Frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "std")]
    /// A machine that consumes `take` bytes of each input without asking for more (0: a
    /// machine that cannot make progress on what it was given)
    struct Taker {
        take: usize,
    }

    #[cfg(feature = "std")]
    impl Machine for Taker {
        type Peer = ();
        type Event = ();
        type App<'a> = &'a [u8];
        type Error = ();

        fn handle_input<'a>(
            &mut self,
            _now: tether_net::Instant,
            _from: (),
            data: &'a [u8],
        ) -> Result<Received<&'a [u8]>, ()> {
            let n = self.take.min(data.len());
            Ok(Received::with_app(n, &data[..n]))
        }

        fn handle_timeout(&mut self, _now: tether_net::Instant) {}

        fn poll_transmit(
            &mut self,
            _now: tether_net::Instant,
            _buf: &mut [u8],
        ) -> Result<Option<tether_net::Transmit<()>>, tether_net::BufferTooSmall> {
            Ok(None)
        }

        fn poll_event(&mut self) -> Option<()> {
            None
        }

        fn poll_timeout(&self) -> Option<tether_net::Instant> {
            None
        }
    }

    #[cfg(feature = "std")]
    #[test]
    fn a_feed_that_consumes_nothing_asks_for_more_instead_of_looping() {
        use std::vec::Vec;
        let now = tether_net::Instant::from_millis(1);
        let mut rx = RxBuf::new([0u8; 16]);
        rx.extend(b"abcdef");
        let mut got = Vec::new();
        let mut m = Taker { take: 4 };
        let fed = feed_one(&mut m, now, (), &mut rx, |_, app| got.push(app.to_vec()));
        assert_eq!(fed, Ok(Fed::Frame));
        assert_eq!(rx.data(), b"ef");
        // nothing consumed and nothing needed: a driver must read more, not feed again
        let mut m = Taker { take: 0 };
        let fed = feed_one(&mut m, now, (), &mut rx, |_, app| got.push(app.to_vec()));
        assert_eq!(fed, Ok(Fed::NeedMore(None)));
        assert_eq!(rx.data(), b"ef");
        assert_eq!(got, [b"abcd".to_vec(), Vec::new()]);
        // an empty buffer is not fed at all
        rx.consume(2);
        let fed = feed_one(&mut m, now, (), &mut rx, |_, _| panic!("fed nothing"));
        assert_eq!(fed, Ok(Fed::NeedMore(None)));
    }

    #[test]
    fn compacts_only_when_the_tail_is_short() {
        let mut rx = RxBuf::new([0u8; 8]);
        assert_eq!(rx.extend(b"abcdef"), 6);
        rx.consume(4);
        assert_eq!(rx.data(), b"ef");
        assert_eq!(rx.spare(2).len(), 2, "two bytes free at the end: no move");
        assert_eq!(rx.spare(3).len(), 6, "three wanted: compacted");
        assert_eq!(rx.data(), b"ef");
        assert_eq!(rx.extend(b"0123456789"), 6);
        assert_eq!(rx.data(), b"ef012345");
        assert_eq!(rx.free(), 0);
        rx.consume(100);
        assert!(rx.is_empty());
        assert_eq!(rx.free(), 8);
    }
}
