//! A bounded FIFO that keeps its length in a field of its own
//!
//! `heapless::Deque` answers `is_empty` from its two indices and its full flag (three loads and
//! two compares); the server asks its four queues whether they are empty after every datagram
//! (`poll_transmit`, `poll_event`), so each queue here carries its length and those questions
//! are one load each.

use heapless::Deque;

pub(super) struct Queue<T, const N: usize> {
    items: Deque<T, N>,
    /// `items.len()`, kept in step by every push and pop
    len: u32,
}

impl<T, const N: usize> Queue<T, N> {
    pub(super) const fn new() -> Self {
        Queue {
            items: Deque::new(),
            len: 0,
        }
    }

    /// How many items are queued, as the `u32` that several queues' counts are OR-ed in
    #[inline(always)]
    pub(super) fn count(&self) -> u32 {
        self.len
    }

    #[inline(always)]
    pub(super) fn is_full(&self) -> bool {
        self.items.is_full()
    }

    #[inline]
    pub(super) fn push_back(&mut self, item: T) -> Result<(), T> {
        self.items.push_back(item)?;
        self.len += 1;
        Ok(())
    }

    #[inline]
    pub(super) fn pop_front(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        self.items.pop_front()
    }

    #[inline]
    pub(super) fn front(&self) -> Option<&T> {
        if self.len == 0 {
            return None;
        }
        self.items.front()
    }

    pub(super) fn clear(&mut self) {
        self.items.clear();
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::Queue;

    /// The kept length is `Deque::len` after every operation, and nothing comes out that was not
    /// put in, in order
    #[test]
    fn the_count_follows_every_push_pop_and_clear() {
        let mut q: Queue<u32, 3> = Queue::new();
        assert_eq!(
            (q.count(), q.front().copied(), q.pop_front()),
            (0, None, None)
        );
        assert_eq!(
            q.count(),
            0,
            "a pop of an empty queue leaves the count at 0"
        );
        assert_eq!(q.push_back(7), Ok(()));
        assert_eq!((q.count(), q.front()), (1, Some(&7)));
        assert_eq!((q.push_back(8), q.push_back(9)), (Ok(()), Ok(())));
        assert!(q.is_full());
        assert_eq!(q.push_back(10), Err(10), "a full queue refuses");
        assert_eq!(q.count(), 3, "a refused push is not counted");
        assert_eq!(
            (q.pop_front(), q.count(), q.front().copied()),
            (Some(7), 2, Some(8))
        );
        assert!(!q.is_full());
        q.clear();
        assert_eq!(
            (q.count(), q.front().copied(), q.pop_front()),
            (0, None, None)
        );
        assert_eq!(q.push_back(11), Ok(()));
        assert_eq!(
            (q.pop_front(), q.pop_front(), q.count()),
            (Some(11), None, 0)
        );
    }

    /// Wrapping around the ring many times keeps the count and the order
    #[test]
    fn the_count_matches_the_ring_through_many_wraps() {
        let mut q: Queue<u32, 4> = Queue::new();
        let (mut next_in, mut next_out) = (0u32, 0u32);
        for round in 0..50u32 {
            for _ in 0..(round % 5) {
                if q.push_back(next_in).is_ok() {
                    next_in += 1;
                }
            }
            for _ in 0..(round % 3) {
                if let Some(x) = q.pop_front() {
                    assert_eq!(x, next_out);
                    next_out += 1;
                }
            }
            assert_eq!(q.count(), next_in - next_out);
            assert_eq!(q.count() as usize, q.items.len());
            assert_eq!(q.front().copied(), (q.count() > 0).then_some(next_out));
        }
    }
}
