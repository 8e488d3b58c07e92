//! The game server's timers: one entry per peer in a bounded min-heap
//!
//! [`Timers::next`] is O(1) (the heap's top) and [`Timers::pop_due`] pops only the due entries,
//! O(log N) each: no pass over all peers. Entries are never updated in place: a liveness refresh
//! only moves a peer's deadlines later, so an entry may fire early and is then re-filed with the
//! peer's current deadline ([`timer_at`]); entries of removed peers are recognised by their
//! admission number and dropped. If churn leaves more stale entries than the heap holds, the heap
//! is rebuilt from the peer table once (O(N log N)).

use heapless::binary_heap::{BinaryHeap, Min};

use super::peer::{PeerCold, PeerHot};
use super::ServerConfig;
use crate::time::Instant;

/// When a peer's timer entry must fire, judged at `now`
///
/// Never later than the peer's real next deadline: the timeout, or the send timer. While a
/// frame is queued (`out != 0`) the send timer restarts when that frame goes out, which is not
/// before `now`, so `now + interval` is a safe lower bound.
pub(super) fn timer_at(
    hot: &PeerHot,
    cold: &PeerCold,
    config: &ServerConfig,
    now: Instant,
) -> Instant {
    let timeout = hot.last_recv(now).add_micros(config.timeout);
    let interval = hot.send_interval(config);
    let send = if cold.out != 0 {
        now.add_micros(interval)
    } else {
        cold.last_send(now).add_micros(interval)
    };
    timeout.min(send)
}

/// One entry of the timer heap: the peer in table slot `slot` (admission `gen`) wants a look at
/// `at`
///
/// Entries are never updated in place. Liveness refreshes only move a peer's deadlines later, so
/// an entry may fire early; it is then re-pushed with the peer's current deadline. Entries of
/// removed peers (or of an earlier occupant of the slot) are recognised by `gen` and dropped
/// when they reach the top.
#[derive(Debug, Clone, Copy)]
pub(super) struct TimerEntry {
    pub(super) at: Instant,
    pub(super) gen: u32,
    pub(super) slot: u32,
}

impl PartialEq for TimerEntry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.gen) == (other.at, other.gen)
    }
}

impl Eq for TimerEntry {}

impl PartialOrd for TimerEntry {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TimerEntry {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        (self.at, self.gen).cmp(&(other.at, other.gen))
    }
}

/// The timer heap of `N` entries, plus a flag for entries lost to overflow
pub(super) struct Timers<const N: usize> {
    heap: BinaryHeap<TimerEntry, Min, N>,
    /// A push failed (too many stale entries): rebuild before the next use
    lost: bool,
}

impl<const N: usize> Timers<N> {
    /// No entries
    pub(super) const fn new() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            lost: false,
        }
    }

    /// Number of entries (stale ones included)
    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }

    /// When the earliest entry fires; `now` when a rebuild is due
    pub(super) fn next(&self, now: Instant) -> Option<Instant> {
        if self.lost {
            return Some(now);
        }
        self.heap.peek().map(|e| e.at)
    }

    /// True when entries were lost and [`Timers::rebuild`] must run before the next pop
    pub(super) fn needs_rebuild(&self) -> bool {
        self.lost
    }

    /// Add an entry; on overflow the heap must be rebuilt from the table
    pub(super) fn push(&mut self, entry: TimerEntry) {
        if self.heap.push(entry).is_err() {
            self.lost = true;
        }
    }

    /// The earliest entry, removed, if it is due at `now`
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<TimerEntry> {
        match self.heap.peek() {
            Some(top) if top.at <= now => self.heap.pop(),
            _ => None,
        }
    }

    /// Replace every entry by `entries` (one per live slot, at most `N`); O(N log N)
    pub(super) fn rebuild(&mut self, entries: impl Iterator<Item = TimerEntry>) {
        self.heap.clear();
        for entry in entries {
            // at most N live slots: cannot fail
            let _ = self.heap.push(entry);
        }
        self.lost = false;
    }
}

#[cfg(test)]
mod tests {
    use super::TimerEntry;
    use crate::time::Instant;
    use core::cmp::Ordering;

    #[test]
    fn entry_comparisons_agree_with_the_heap_order() {
        // the heap orders by (at, gen); `==` and `partial_cmp` must say the same as `cmp` (the
        // contract of `Ord`), the slot takes no part
        let at = |us| Instant::from_micros(us);
        let entries = [
            TimerEntry {
                at: at(5),
                gen: 1,
                slot: 0,
            },
            TimerEntry {
                at: at(5),
                gen: 1,
                slot: 3,
            },
            TimerEntry {
                at: at(5),
                gen: 2,
                slot: 0,
            },
            TimerEntry {
                at: at(9),
                gen: 0,
                slot: 1,
            },
        ];
        for a in &entries {
            for b in &entries {
                let ord = a.cmp(b);
                assert_eq!(a.partial_cmp(b), Some(ord), "{a:?} {b:?}");
                assert_eq!(a == b, ord == Ordering::Equal, "{a:?} {b:?}");
            }
        }
        assert_eq!(entries[0], entries[1]);
        assert!(entries[0] < entries[2] && entries[2] < entries[3]);
    }
}
