//! A FIFO of connection indices: the connections with a frame for `poll_transmit`, or an event
//! for `poll_event`, so that neither walks every connection
//!
//! Each connection is in a queue at most once (its own flag, kept by the server, says whether
//! it is); the queue therefore never holds more than `N` live entries. Popped entries stay in
//! the storage before `head` until a push needs the room, then the live ones move to the front.

use heapless::Vec;

#[derive(Debug, Clone)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(super) struct Ready<const N: usize> {
    slots: Vec<usize, N>,
    head: usize,
}

impl<const N: usize> Ready<N> {
    pub(super) const fn new() -> Self {
        Ready {
            slots: Vec::new(),
            head: 0,
        }
    }

    /// The oldest entry
    #[inline]
    pub(super) fn front(&self) -> Option<usize> {
        self.slots.get(self.head).copied()
    }

    /// Drop the oldest entry (there is one: `front` gave it)
    #[inline]
    pub(super) fn pop(&mut self) {
        debug_assert!(self.head < self.slots.len());
        self.head += 1;
        if self.head == self.slots.len() {
            self.slots.clear();
            self.head = 0;
        }
    }

    /// Append `idx`; the caller queues each connection at most once, so there is always room
    /// once the popped entries are gone
    #[inline]
    pub(super) fn push(&mut self, idx: usize) {
        if self.slots.is_full() {
            self.compact();
        }
        // cannot fail: at most N connections, each queued at most once
        let _ = self.slots.push(idx);
    }

    /// Queue `idx` unless its flag says it is queued already; sets the flag
    #[inline]
    pub(super) fn mark(&mut self, idx: usize, queued: &mut bool) {
        if !*queued {
            *queued = true;
            self.push(idx);
        }
    }

    /// Connection `gone` was removed and the last one, `moved`, took its index
    /// (`swap_remove`): forget `gone`'s entry and rename `moved`'s
    pub(super) fn removed(&mut self, gone: usize, moved: usize) {
        self.compact();
        renumber(&mut self.slots, gone, moved);
    }

    /// Move the live entries to the front of the storage
    fn compact(&mut self) {
        let live = self.slots.len() - self.head;
        self.slots.copy_within(self.head.., 0);
        self.slots.truncate(live);
        self.head = 0;
    }

    /// The live entries, oldest first
    #[cfg(all(debug_assertions, any(test, feature = "testing")))]
    pub(super) fn live(&self) -> &[usize] {
        &self.slots[self.head..]
    }
}

/// Connection `gone` was removed and `moved` took its index: drop `gone` from `list`, rename
/// `moved`
pub(super) fn renumber<const N: usize>(list: &mut Vec<usize, N>, gone: usize, moved: usize) {
    list.retain(|&i| i != gone);
    for i in list {
        if *i == moved {
            *i = gone;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Ready;

    fn live<const N: usize>(r: &Ready<N>) -> std::vec::Vec<usize> {
        r.live().to_vec()
    }

    #[test]
    fn entries_come_out_in_the_order_they_went_in() {
        let mut r = Ready::<4>::new();
        assert_eq!(r.front(), None);
        r.push(2);
        r.push(0);
        r.push(3);
        assert_eq!(r.front(), Some(2));
        r.pop();
        assert_eq!(r.front(), Some(0));
        r.pop();
        assert_eq!(r.front(), Some(3));
        r.pop();
        assert_eq!(r.front(), None);
        r.push(1);
        assert_eq!(live(&r), [1]);
    }

    #[test]
    fn a_full_storage_with_popped_entries_makes_room() {
        let mut r = Ready::<3>::new();
        r.push(0);
        r.push(1);
        r.push(2);
        r.pop();
        // storage full, one popped: the push moves 1 and 2 to the front
        r.push(0);
        assert_eq!(live(&r), [1, 2, 0]);
        r.pop();
        r.pop();
        r.push(1);
        r.push(2);
        assert_eq!(live(&r), [0, 1, 2]);
        assert_eq!(r.front(), Some(0));
    }

    #[test]
    fn a_removed_connection_leaves_and_the_moved_one_is_renamed() {
        let mut r = Ready::<8>::new();
        r.push(7);
        r.push(5);
        r.push(2);
        r.push(3);
        r.pop();
        // 2 removed, 3 (the last) moved to index 2: 5 stays, 3 becomes 2, the popped 7 is gone
        r.removed(2, 3);
        assert_eq!(live(&r), [5, 2]);
        // the last connection removed: it leaves, nothing is renamed
        r.removed(2, 2);
        assert_eq!(live(&r), [5]);
        // a connection not queued: only the rename
        r.push(4);
        r.removed(1, 4);
        assert_eq!(live(&r), [5, 1]);
    }
}
