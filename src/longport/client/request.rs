//! The client's request table: business requests in flight, their deadlines and outcomes, and
//! the request-id counter

use heapless::Vec;

use crate::longport::event::{ClientEvent, RequestFailure};
use crate::longport::wire::RequestId;
use crate::time::{earliest, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Waiting,
    TimedOut,
    Failed(RequestFailure),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    id: RequestId,
    deadline: Instant,
    outcome: Outcome,
}

/// Up to `N` requests, each waiting for its response or holding its outcome until it is polled
///
/// Outcomes stay in the table (not in the event queue), so a disconnect with many requests in
/// flight never overflows the queue.
#[derive(Debug, Clone)]
pub(super) struct Requests<const N: usize> {
    entries: Vec<Entry, N>,
}

impl<const N: usize> Requests<N> {
    pub(super) const fn new() -> Self {
        Requests {
            entries: Vec::new(),
        }
    }

    /// Requests in the table, outcomes not yet polled included
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn is_full(&self) -> bool {
        self.entries.is_full()
    }

    /// True when `id` is in the table (waiting or not yet polled)
    pub(super) fn contains(&self, id: RequestId) -> bool {
        self.entries.iter().any(|e| e.id == id)
    }

    /// Track a request sent at `now`; false when the table is full
    pub(super) fn insert(&mut self, id: RequestId, deadline: Instant) -> bool {
        self.entries
            .push(Entry {
                id,
                deadline,
                outcome: Outcome::Waiting,
            })
            .is_ok()
    }

    /// A response for `id` arrived: true (and forgotten) when it was waiting for one
    pub(super) fn answer(&mut self, id: RequestId) -> bool {
        let waiting = self
            .entries
            .iter()
            .position(|e| e.id == id && e.outcome == Outcome::Waiting);
        match waiting {
            Some(i) => {
                self.remove(i);
                true
            }
            None => false,
        }
    }

    /// Waiting requests whose deadline is at or before `now` time out; returns how many
    pub(super) fn expire(&mut self, now: Instant) -> usize {
        let mut n = 0;
        for e in &mut self.entries {
            if e.outcome == Outcome::Waiting && e.deadline <= now {
                e.outcome = Outcome::TimedOut;
                n += 1;
            }
        }
        n
    }

    /// Every waiting request fails with `reason`; returns how many
    pub(super) fn fail_all(&mut self, reason: RequestFailure) -> usize {
        let mut n = 0;
        for e in &mut self.entries {
            if e.outcome == Outcome::Waiting {
                e.outcome = Outcome::Failed(reason);
                n += 1;
            }
        }
        n
    }

    /// The oldest outcome not yet reported, as its event
    pub(super) fn take_outcome(&mut self) -> Option<ClientEvent> {
        let i = self
            .entries
            .iter()
            .position(|e| e.outcome != Outcome::Waiting)?;
        let e = self.remove(i)?;
        Some(match e.outcome {
            Outcome::TimedOut => ClientEvent::RequestTimedOut { id: e.id },
            Outcome::Failed(reason) => ClientEvent::RequestFailed { id: e.id, reason },
            // not selected by the search above
            Outcome::Waiting => ClientEvent::RequestFailed {
                id: e.id,
                reason: RequestFailure::Disconnected,
            },
        })
    }

    /// Remove entry `i` (if there is one) and keep the order of the others
    ///
    /// By swaps, not `Vec::remove`: that moves the tail with `memmove`, about 1.5 KB of flash
    /// on Cortex-M that nothing else in a client needs (the table holds a few entries).
    fn remove(&mut self, i: usize) -> Option<Entry> {
        let e = *self.entries.get(i)?;
        for j in i + 1..self.entries.len() {
            self.entries[j - 1] = self.entries[j];
        }
        self.entries.pop();
        Some(e)
    }

    /// The earliest deadline of a waiting request
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.entries
            .iter()
            .filter(|e| e.outcome == Outcome::Waiting)
            .fold(None, |t, e| earliest(t, Some(e.deadline)))
    }
}

/// Request ids: count up from the first id, wrap from `u32::MAX` to 1 (0 is skipped) and skip
/// ids still in use
#[derive(Debug, Clone, Copy)]
pub(super) struct IdCounter(pub(super) u32);

impl IdCounter {
    /// Starting at `first` (0 is taken as 1)
    pub(super) const fn new(first: u32) -> Self {
        IdCounter(if first == 0 { 1 } else { first })
    }

    /// The next id not `in_use`, trying at most `tries` ids (more than can be in use at once)
    #[inline]
    pub(super) fn next(&mut self, tries: usize, in_use: impl Fn(RequestId) -> bool) -> RequestId {
        let mut id = self.0;
        for _ in 0..tries {
            id = self.0;
            self.0 = id.checked_add(1).unwrap_or(1);
            if !in_use(RequestId(id)) {
                break;
            }
        }
        RequestId(id)
    }
}
