//! The server's session table: sessions outlive their connections until they expire
//!
//! Lookups compare ids in constant time over their bytes ([`ct_eq`]) and scan the whole table.
//! Eviction when full: the entry that expires first among those **without** a live connection,
//! else the one that expires first.

use heapless::{String, Vec};

use crate::longport::server::MAX_SESSION_ID_LEN;

#[derive(Debug, Clone)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
struct Entry<P> {
    id: String<MAX_SESSION_ID_LEN>,
    expires: i64,
    /// The live connection holding it, if any
    peer: Option<P>,
    /// Distinguishes this entry from a later one with the same id
    generation: u32,
}

/// A session a Reconnect presented
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Found {
    pub(super) generation: u32,
    pub(super) expires: i64,
}

/// What [`Sessions::bind`] did besides storing the session
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Bound<P> {
    /// Entries dropped: expired, or evicted for room
    pub(super) evicted: usize,
    /// Another live connection held the same id: it must be closed as a duplicate
    pub(super) displaced: Option<P>,
}

/// Up to `N` sessions
#[derive(Debug, Clone)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(super) struct Sessions<P, const N: usize> {
    entries: Vec<Entry<P>, N>,
    next_generation: u32,
}

impl<P: Copy + Eq, const N: usize> Sessions<P, N> {
    pub(super) const fn new() -> Self {
        Sessions {
            entries: Vec::new(),
            next_generation: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Index of the entry with this id; scans the whole table, constant-time compares
    fn lookup(&self, id: &str) -> Option<usize> {
        let mut found = None;
        for (i, s) in self.entries.iter().enumerate() {
            let hit = ct_eq(s.id.as_bytes(), id.as_bytes());
            if hit && found.is_none() {
                found = Some(i);
            }
        }
        found
    }

    /// The session with this id, expired or not
    pub(super) fn find(&self, id: &str) -> Option<Found> {
        self.lookup(id).map(|i| Found {
            generation: self.entries[i].generation,
            expires: self.entries[i].expires,
        })
    }

    /// The session bound to a live connection
    pub(super) fn id_of(&self, peer: P) -> Option<&str> {
        self.entries
            .iter()
            .find(|s| s.peer == Some(peer))
            .map(|s| s.id.as_str())
    }

    /// Forget a session; true when it was there
    pub(super) fn revoke(&mut self, id: &str) -> bool {
        match self.lookup(id) {
            Some(i) => {
                self.entries.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// Drop the sessions that expired at wall-clock `wall_ms`; returns how many
    pub(super) fn purge_expired(&mut self, wall_ms: i64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|s| s.expires > wall_ms);
        before - self.entries.len()
    }

    /// The session of `peer` (if any) loses its live connection but stays until it expires
    pub(super) fn detach(&mut self, peer: P) {
        for s in self.entries.iter_mut() {
            if s.peer == Some(peer) {
                s.peer = None;
            }
        }
    }

    /// Remove the entry of this generation (a session retired by a Reconnect); returns the live
    /// connection that held it, if any
    pub(super) fn retire(&mut self, generation: u32) -> Option<P> {
        let i = self
            .entries
            .iter()
            .position(|s| s.generation == generation)?;
        self.entries.swap_remove(i).peer
    }

    /// Store `id` bound to `peer` (after purging what expired at `wall_ms`), evicting for room
    /// as the module docs say; an older holder of the same id is reported as displaced
    pub(super) fn bind(
        &mut self,
        peer: P,
        id: String<MAX_SESSION_ID_LEN>,
        expires: i64,
        wall_ms: i64,
    ) -> Bound<P> {
        let mut evicted = self.purge_expired(wall_ms);
        // one session per connection
        self.detach(peer);
        let displaced = self
            .lookup(&id)
            .and_then(|i| self.entries.swap_remove(i).peer);
        if self.entries.is_full() {
            let victim = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| (s.peer.is_some(), s.expires))
                .map(|(i, _)| i);
            if let Some(i) = victim {
                self.entries.swap_remove(i);
                evicted += 1;
            }
        }
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        // cannot fail: a slot was freed above when the table was full (N == 0 stores nothing)
        let _ = self.entries.push(Entry {
            id,
            expires,
            peer: Some(peer),
            generation,
        });
        Bound { evicted, displaced }
    }
}

/// Compare two byte strings without an early exit on their content
///
/// Different lengths return `false` at once (the length is not secret); equal lengths are
/// compared over every byte.
#[must_use]
pub(super) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    core::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ct_eq_compares_contents_and_lengths() {
        assert!(ct_eq(b"s1", b"s1"));
        assert!(!ct_eq(b"s1", b"s2"));
        assert!(!ct_eq(b"s1", b"s12"));
        assert!(ct_eq(b"", b""));
    }
}
