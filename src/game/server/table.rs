//! The game server's peer table: a small open-addressing index in front of a dense slot array
//!
//! A `Table<K, V, S, N>` holds at most `N` entries (`N` a power of two, checked at compile time).
//! Entries live in a dense array of `N` slots and keep their slot number for as long as they
//! exist, so the caller can keep per-slot side arrays and refer to an entry by its slot number.
//! Keys are found through an index of `2 × N` 32-bit buckets (load factor ≤ 50 %, linear
//! probing, backward-shift deletion: no tombstones, so churn does not lengthen probes). A bucket
//! holds the slot number plus the high bits of the key's hash as a tag, so a probe reads the
//! key of a slot only when the tag matches: a lookup touches one index bucket and one slot.
//!
//! Why two arrays: with `N = 65 536` the index is 512 KiB and the server's slots (16 bytes with
//! a `u32` key) 1 MiB, so what a datagram touches stays near a core's L2 cache; buckets holding
//! the whole peer (the previous layout, 48 bytes each at 50 % load) made the table 7.6 MB and
//! each datagram a cache and TLB miss.
//!
//! The table hashes keys itself with its [`KeyHash`] (a keyed hash: clients must not be able to
//! pick colliding addresses). Even with every key in one bucket a probe visits at most
//! `len + 1` buckets, and `len <= N` (the server caps it further with `max_peers`).
//!
//! [`PeerHashKey`] is the keyed hash the server uses: a folded 64 × 64 → 128-bit multiply per
//! word of the key's `Hash` stream, keyed by 16 bytes derived from the server secret. It is not a
//! MAC (tokens still use SipHash-2-4), only a placement hash that an off-path client cannot
//! predict; a few nanoseconds per datagram instead of a SipHash.

use core::hash::{Hash, Hasher};

use heapless::Vec;

/// The 32-bit placement hash of a key
pub(crate) trait KeyHash<K: ?Sized> {
    /// Hash of `key`
    fn hash_key(&self, key: &K) -> u32;
}

/// One slot: the key and, while the slot is in use, the value
///
/// A free slot keeps its last key (never read again). With a value type that has a niche (the
/// server's has a `NonZeroU32`), `Option<V>` costs no extra byte.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot<K, V> {
    key: K,
    value: Option<V>,
}

/// Open-addressing index of `2 × N` buckets in front of `N` dense slots (see the module docs)
///
/// The index is stored as two halves of `N` buckets because `[T; 2 * N]` is not expressible on
/// stable Rust; a position `p` in `0..2N` lives at `index[p / N][p % N]`.
pub(crate) struct Table<K, V, S, const N: usize> {
    hasher: S,
    /// 0 = empty, else `tag | (slot + 1)` (see [`Table::word`])
    index: [[u32; N]; 2],
    /// Slots handed out so far (free ones included); never shrinks except in `clear`
    slots: Vec<Slot<K, V>, N>,
    /// Free slot numbers, reused last-freed first
    free: Vec<u32, N>,
    len: u32,
}

impl<K, V, S, const N: usize> Table<K, V, S, N> {
    /// Compile-time check of `N`
    const CHECK: () = assert!(
        N.is_power_of_two() && N >= 2 && N <= 1 << 30,
        "the peer table size N must be a power of two, at least 2 and at most 2^30"
    );
    /// Number of index buckets
    pub(crate) const BUCKETS: usize = 2 * N;
    /// Buckets from a key's home that [`Table::slot_near`] reads (at most `BUCKETS`, which is
    /// at least 4)
    const NEAR: usize = 4;
    /// Low bits of a hash: the home bucket; low bits of a bucket word: slot + 1 (1..=N < 2N)
    const POS_MASK: u32 = (2 * N - 1) as u32;

    /// An empty table placing keys with `hasher`
    pub(crate) const fn new(hasher: S) -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::CHECK;
        Table {
            hasher,
            index: [[0; N]; 2],
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    /// Number of entries
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    /// True when `N` entries are stored (an insert of a new key is refused)
    pub(crate) fn is_full(&self) -> bool {
        self.len as usize >= N
    }

    /// The bucket word of slot `slot` for a key hashed to `hash`: the hash bits above the
    /// position bits as a tag, and `slot + 1` (never 0, so 0 marks an empty bucket)
    #[inline]
    const fn word(hash: u32, slot: usize) -> u32 {
        (hash & !Self::POS_MASK) | (slot as u32 + 1)
    }

    /// The bucket word at position `pos` (taken modulo `2 × N`)
    #[inline]
    fn bucket(&self, pos: usize) -> u32 {
        // the two halves are contiguous: one index into 2N words, in bounds by the mask
        self.index.as_flattened()[pos & (Self::BUCKETS - 1)]
    }

    #[inline]
    fn bucket_mut(&mut self, pos: usize) -> &mut u32 {
        &mut self.index.as_flattened_mut()[pos & (Self::BUCKETS - 1)]
    }

    /// The key and value in `slot`, if that slot is in use
    pub(crate) fn get(&self, slot: usize) -> Option<(&K, &V)> {
        let s = self.slots.get(slot)?;
        Some((&s.key, s.value.as_ref()?))
    }

    /// The value in `slot`, if that slot is in use
    #[inline]
    pub(crate) fn value_mut(&mut self, slot: usize) -> Option<&mut V> {
        self.slots.get_mut(slot)?.value.as_mut()
    }

    /// The key and value in `slot`, if that slot is in use (the key stays read-only: it places
    /// the entry in the index)
    pub(crate) fn get_mut(&mut self, slot: usize) -> Option<(&K, &mut V)> {
        let s = self.slots.get_mut(slot)?;
        Some((&s.key, s.value.as_mut()?))
    }

    /// The first slot in use at or after `from`
    pub(crate) fn next_live(&self, from: usize) -> Option<usize> {
        let slots = self.slots.get(from..)?;
        slots
            .iter()
            .position(|s| s.value.is_some())
            .map(|i| from + i)
    }

    /// Upper bound of the slot numbers in use (`next_live` returns less)
    pub(crate) fn slot_limit(&self) -> usize {
        self.slots.len()
    }

    /// All entries with their slot numbers, in slot order
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &K, &V)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((i, &s.key, s.value.as_ref()?)))
    }

    /// Remove every entry; O(N)
    pub(crate) fn clear(&mut self) {
        for half in &mut self.index {
            half.fill(0);
        }
        self.slots.clear();
        self.free.clear();
        self.len = 0;
    }
}

/// Where a probe for a key ended
enum Probe {
    /// Found at bucket `pos`, in slot `slot`
    Found { pos: usize, slot: usize },
    /// Not present; `Some(pos)`: the empty bucket where it would go
    Missing(Option<usize>),
}

impl<K: Eq, V, S: KeyHash<K>, const N: usize> Table<K, V, S, N> {
    #[inline]
    fn probe(&self, hash: u32, key: &K) -> Probe {
        let tag = hash & !Self::POS_MASK;
        let mut pos = (hash & Self::POS_MASK) as usize;
        // at least one bucket is empty (len <= N < 2N): the loop ends; bounded anyway (by a
        // half-open range: `0..=len` keeps an "exhausted" flag, a few instructions per lookup)
        for _ in 0..self.len + 1 {
            let word = self.bucket(pos);
            if word == 0 {
                return Probe::Missing(Some(pos));
            }
            if word & !Self::POS_MASK == tag {
                let slot = (word & Self::POS_MASK) as usize - 1;
                if self.slots.get(slot).is_some_and(|s| s.key == *key) {
                    return Probe::Found { pos, slot };
                }
            }
            pos = (pos + 1) & (Self::BUCKETS - 1);
        }
        Probe::Missing(None)
    }

    /// Slot of `key`, if present
    #[inline]
    pub(crate) fn find(&self, key: &K) -> Option<usize> {
        match self.probe(self.hasher.hash_key(key), key) {
            Probe::Found { slot, .. } => Some(slot),
            Probe::Missing(_) => None,
        }
    }

    /// The placement hash of `key` (what [`Table::find_hashed`] and [`Table::touch`] take)
    #[inline]
    pub(crate) fn hash_of(&self, key: &K) -> u32 {
        self.hasher.hash_key(key)
    }

    /// Slot of `key`, whose placement hash is `hash` (from [`Table::hash_of`])
    #[inline]
    pub(crate) fn find_hashed(&self, hash: u32, key: &K) -> Option<usize> {
        match self.probe(hash, key) {
            Probe::Found { slot, .. } => Some(slot),
            Probe::Missing(_) => None,
        }
    }

    /// Read the home bucket of `hash` and return its word (a load the CPU can start early;
    /// batched input does this for many keys before it probes any of them)
    #[inline]
    pub(crate) fn touch(&self, hash: u32) -> u32 {
        self.bucket((hash & Self::POS_MASK) as usize)
    }

    /// The slot a bucket word (from [`Table::touch`]) points at, when that slot holds `key`
    /// (reads the slot: batched input does this for many keys before it handles any of them);
    /// `None` means "probe" (the key is further along or absent)
    #[inline]
    pub(crate) fn slot_of_word(&self, word: u32, key: &K) -> Option<usize> {
        // no early exits (`&`, not `&&`) and no tag test: whether a key sits in its home bucket
        // is random, so branches on it are mispredicted, and a live slot holding `key` was named
        // by `key`'s own word, tag and all (an empty word names slot `usize::MAX`, where `get`
        // finds nothing)
        let slot = (word & Self::POS_MASK).wrapping_sub(1) as usize;
        let held = self
            .slots
            .get(slot)
            .is_some_and(|s| s.value.is_some() & (s.key == *key));
        held.then_some(slot)
    }

    /// [`Table::slot_of_word`] for the first word among the [`NEAR`] buckets from `hash`'s home
    /// whose tag is `hash`'s (`home`: the home bucket's word, from [`Table::touch`]): a key sits
    /// in one of them unless its run is long (in a table at a load of one half, a quarter of the
    /// keys sit past home and about one in thirty four or more buckets past, by a simulation),
    /// and it is found with selects, without a branch on where it sits. A branch on that is
    /// mispredicted whenever the next datagram comes from a peer placed differently from the
    /// last one: a KEEP_ALIVE from one of 8 random peers took 12.3–12.6 ns with the probe loop
    /// alone, 8.3–8.5 ns with this first (AMD EPYC, `benches/RESULTS.md`). `None` means "probe":
    /// the key is further along, behind another key with the same tag, or absent.
    ///
    /// [`NEAR`]: Self::NEAR
    #[inline]
    pub(crate) fn slot_near(&self, hash: u32, home: u32, key: &K) -> Option<usize> {
        let tag = hash & !Self::POS_MASK;
        let pos = (hash & Self::POS_MASK) as usize;
        // the furthest bucket first, so that the nearest match is the one left standing
        let mut word = 0;
        for j in (1..Self::NEAR).rev() {
            let w = self.bucket(pos + j);
            if w & !Self::POS_MASK == tag {
                word = w;
            }
        }
        if home & !Self::POS_MASK == tag {
            word = home;
        }
        self.slot_of_word(word, key)
    }

    /// Whether `slot` is in use and holds `key` (then it is `key`'s slot: keys are unique)
    #[inline]
    pub(crate) fn holds(&self, slot: usize, key: &K) -> bool {
        self.slots
            .get(slot)
            .is_some_and(|s| s.value.is_some() && s.key == *key)
    }

    /// The value of `key`
    pub(crate) fn lookup(&self, key: &K) -> Option<&V> {
        let slot = self.find(key)?;
        self.get(slot).map(|(_, v)| v)
    }

    /// The value of `key`, mutably
    pub(crate) fn lookup_mut(&mut self, key: &K) -> Option<&mut V> {
        let slot = self.find(key)?;
        self.value_mut(slot)
    }

    /// Insert `key` → `value` (replacing the value of an existing `key`); `Err` when the table
    /// holds `N` entries already and `key` is new. Returns the slot.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Result<usize, (K, V)>
    where
        K: Copy,
        V: Copy,
    {
        let hash = self.hasher.hash_key(&key);
        let pos = match self.probe(hash, &key) {
            Probe::Found { slot, .. } => {
                if let Some(s) = self.slots.get_mut(slot) {
                    s.value = Some(value);
                }
                return Ok(slot);
            }
            // not reachable: len + 1 probes always meet an empty bucket
            Probe::Missing(None) => return Err((key, value)),
            Probe::Missing(Some(_)) if self.is_full() => return Err((key, value)),
            Probe::Missing(Some(pos)) => pos,
        };
        let entry = Slot {
            key,
            value: Some(value),
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                let slot = slot as usize;
                match self.slots.get_mut(slot) {
                    Some(s) => *s = entry,
                    // not reachable: only handed-out slots are freed
                    None => return Err((key, value)),
                }
                slot
            }
            None => {
                let slot = self.slots.len();
                if self.slots.push(entry).is_err() {
                    // not reachable: fewer than N entries and no free slot means < N handed out
                    return Err((key, value));
                }
                slot
            }
        };
        *self.bucket_mut(pos) = Self::word(hash, slot);
        self.len += 1;
        Ok(slot)
    }

    /// Remove the entry in `slot` (backward-shift deletion in the index); returns it
    pub(crate) fn remove(&mut self, slot: usize) -> Option<(K, V)>
    where
        K: Copy,
        V: Copy,
    {
        let (&key, &value) = self.get(slot)?;
        let hash = self.hasher.hash_key(&key);
        let Probe::Found { pos, .. } = self.probe(hash, &key) else {
            // not reachable: every live slot is indexed
            return None;
        };
        *self.bucket_mut(pos) = 0;
        let mask = Self::BUCKETS - 1;
        let mut hole = pos;
        let mut i = (pos + 1) & mask;
        // every iteration visits a new occupied bucket and an empty one ends the run: at most
        // len iterations
        for _ in 0..self.len {
            let word = self.bucket(i);
            if word == 0 {
                break;
            }
            let moved = (word & Self::POS_MASK) as usize - 1;
            let home = match self.slots.get(moved) {
                Some(s) => self.hasher.hash_key(&s.key) as usize & mask,
                None => i, // not reachable; leaves the bucket where it is
            };
            // the entry at `i` may move back to `hole` when `hole` lies on its probe path
            // [home, i] (cyclically): its distance from home is at least the hole's distance
            if (i.wrapping_sub(home) & mask) >= (i.wrapping_sub(hole) & mask) {
                *self.bucket_mut(hole) = word;
                *self.bucket_mut(i) = 0;
                hole = i;
            }
            i = (i + 1) & mask;
        }
        if let Some(s) = self.slots.get_mut(slot) {
            s.value = None;
        }
        // capacity N >= slots handed out: cannot fail
        let _ = self.free.push(slot as u32);
        self.len -= 1;
        Some((key, value))
    }
}

impl<K: Hash + ?Sized> KeyHash<K> for PeerHashKey {
    #[inline]
    fn hash_key(&self, key: &K) -> u32 {
        self.hash(key)
    }
}

/// `a × b` as 128 bits, folded to 64 by xor of the halves
#[inline]
const fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = (a as u128).wrapping_mul(b as u128);
    (full as u64) ^ ((full >> 64) as u64)
}

/// Keys of the placement hash (see the module docs)
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeerHashKey {
    k0: u64,
    k1: u64,
}

impl core::fmt::Debug for PeerHashKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("PeerHashKey(..)")
    }
}

impl PeerHashKey {
    /// Keys from 16 secret bytes
    pub(crate) fn new(key: [u8; 16]) -> Self {
        let [a0, a1, a2, a3, a4, a5, a6, a7, b0, b1, b2, b3, b4, b5, b6, b7] = key;
        PeerHashKey {
            k0: u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]),
            // odd and away from 0: a full-width multiplier
            k1: u64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7]) | 1 << 63 | 1,
        }
    }

    /// The 32-bit placement hash of `value`
    #[inline]
    pub(crate) fn hash<T: Hash + ?Sized>(&self, value: &T) -> u32 {
        let mut h = PeerHasher {
            acc: self.k0,
            k1: self.k1,
        };
        value.hash(&mut h);
        h.finish() as u32
    }
}

/// The hasher behind [`PeerHashKey::hash`]
struct PeerHasher {
    acc: u64,
    k1: u64,
}

impl PeerHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        self.acc = folded_multiply(self.acc ^ word, self.k1);
    }
}

impl Hasher for PeerHasher {
    #[inline]
    fn finish(&self) -> u64 {
        folded_multiply(
            self.acc ^ 0x9e37_79b9_7f4a_7c15,
            self.k1.rotate_left(23) | 1,
        )
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            // the chunk length in the top byte's place keeps "a" and "a\0" apart
            self.mix(u64::from_le_bytes(word) ^ ((chunk.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.mix(u64::from(i));
    }

    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.mix(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.mix(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.mix(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.mix(i as u64);
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::collections::HashMap;
    use std::vec::Vec;

    use super::*;

    /// Every key in one bucket: what an attacker who knew the hash key would aim for
    struct Fixed(u32);

    impl KeyHash<u32> for Fixed {
        fn hash_key(&self, _: &u32) -> u32 {
            self.0
        }
    }

    /// Deterministic xorshift for the churn test
    fn rng(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    fn check_invariants<S: KeyHash<u32>, const N: usize>(t: &Table<u32, u32, S, N>) {
        // every entry is reachable from its home without crossing an empty bucket, through a
        // bucket naming its slot
        // and `slot_near` names exactly the entries in the four buckets from home with no other
        // entry of their tag before them
        let near = Table::<u32, u32, S, N>::NEAR;
        let mask = Table::<u32, u32, S, N>::BUCKETS - 1;
        let pos_mask = Table::<u32, u32, S, N>::POS_MASK;
        let mut count = 0;
        for (slot, key, _) in t.iter() {
            count += 1;
            assert_eq!(t.find(key), Some(slot));
            let hash = t.hash_of(key);
            let home = (hash & pos_mask) as usize;
            let at = (0..=mask)
                .find(|d| t.bucket(home + d) == Table::<u32, u32, S, N>::word(hash, slot))
                .unwrap();
            let shadowed = (0..at).any(|d| t.bucket(home + d) & !pos_mask == hash & !pos_mask);
            let expect = (at < near && !shadowed).then_some(slot);
            assert_eq!(t.slot_near(hash, t.touch(hash), key), expect, "key {key}");
        }
        assert_eq!(count, t.len());
        // every non-empty bucket names a live slot, each slot at most once
        let mut named = Vec::new();
        for pos in 0..Table::<u32, u32, S, N>::BUCKETS {
            let word = t.bucket(pos);
            if word != 0 {
                let slot = (word & Table::<u32, u32, S, N>::POS_MASK) as usize - 1;
                assert!(t.get(slot).is_some(), "bucket {pos} names free slot {slot}");
                named.push(slot);
            }
        }
        named.sort_unstable();
        named.dedup();
        assert_eq!(named.len(), t.len());
        // free + live slots are exactly the slots handed out
        assert_eq!(t.free.len() + t.len(), t.slot_limit());
    }

    #[test]
    fn insert_lookup_remove() {
        let mut t: Table<u32, u32, _, 8> = Table::new(PeerHashKey::new([3; 16]));
        assert_eq!(t.len(), 0);
        for k in 0..8u32 {
            assert_eq!(t.insert(k, k * 10), Ok(k as usize), "dense slots in order");
        }
        assert!(t.is_full());
        check_invariants(&t);
        for k in 0..8u32 {
            assert_eq!(t.lookup(&k), Some(&(k * 10)));
        }
        assert_eq!(t.lookup(&99), None);
        // replacing an existing key works when full; a new key is refused
        assert_eq!(t.insert(3, 33), Ok(3));
        assert_eq!(t.lookup(&3), Some(&33));
        assert_eq!(t.insert(8, 80), Err((8, 80)));
        assert_eq!(t.len(), 8);
        assert_eq!(t.remove(3), Some((3, 33)));
        assert_eq!(t.remove(3), None);
        assert_eq!(t.get(3), None);
        assert_eq!(t.find(&3), None);
        check_invariants(&t);
        // the freed slot is reused; the other slots did not move
        assert_eq!(t.insert(8, 80), Ok(3));
        for k in [0u32, 1, 2, 4, 5, 6, 7, 8] {
            let slot = if k == 8 { 3 } else { k as usize };
            assert_eq!(t.find(&k), Some(slot));
        }
        *t.lookup_mut(&8).unwrap() += 1;
        assert_eq!(t.lookup(&8), Some(&81));
        assert_eq!(t.iter().count(), 8);
        assert_eq!(t.next_live(3), Some(3));
        t.clear();
        assert_eq!(t.len(), 0);
        assert_eq!(t.next_live(0), None);
        assert_eq!(t.find(&8), None);
        check_invariants(&t);
    }

    #[test]
    fn churn_with_backward_shift_matches_a_model() {
        let mut t: Table<u32, u32, _, 64> = Table::new(PeerHashKey::new([9; 16]));
        // key -> (slot, value)
        let mut model: HashMap<u32, (usize, u32)> = HashMap::new();
        let mut s = 0x1234_5678_9abc_def0;
        for step in 0..20_000u32 {
            let k = (rng(&mut s) % 200) as u32;
            if rng(&mut s).is_multiple_of(2) {
                let r = t.insert(k, step);
                if let Some(&(slot, _)) = model.get(&k) {
                    assert_eq!(r, Ok(slot), "a replaced key keeps its slot");
                    model.insert(k, (slot, step));
                } else if model.len() < 64 {
                    let slot = r.expect("room left");
                    assert!(model.values().all(|&(o, _)| o != slot), "slot in use");
                    model.insert(k, (slot, step));
                } else {
                    assert_eq!(r, Err((k, step)));
                }
            } else {
                let found = t.find(&k);
                assert_eq!(found, model.get(&k).map(|&(slot, _)| slot));
                let h = t.hash_of(&k);
                assert_eq!(t.slot_near(h, t.touch(h), &k).or(found), found);
                if let Some(slot) = found {
                    assert_eq!(t.remove(slot), model.remove(&k).map(|(_, v)| (k, v)));
                }
            }
            assert_eq!(t.len(), model.len());
            if step % 512 == 0 {
                check_invariants(&t);
            }
        }
        check_invariants(&t);
        for (k, (slot, v)) in &model {
            assert_eq!(t.find(k), Some(*slot));
            assert_eq!(t.lookup(k), Some(v));
        }
    }

    #[test]
    fn colliding_keys_wrap_around_and_shift_back() {
        // all keys in the last bucket: the run wraps around the end of the index
        let mut t: Table<u32, u32, _, 4> = Table::new(Fixed(7)); // bucket 7 of 8
        for k in 0..4u32 {
            assert!(t.insert(k, k).is_ok());
        }
        assert_eq!(t.insert(4, 4), Err((4, 4)));
        check_invariants(&t);
        assert_eq!(t.remove(1), Some((1, 1)));
        check_invariants(&t);
        assert_eq!(t.remove(0), Some((0, 0)));
        check_invariants(&t);
        // the remaining two are back in buckets 7 and 0
        assert!(t.bucket(7) != 0 && t.bucket(0) != 0 && t.bucket(1) == 0);
        for k in [2u32, 3] {
            assert_eq!(t.lookup(&k), Some(&k));
        }
    }

    #[test]
    fn adversarial_same_bucket_keys_stay_correct_and_bounded() {
        // every key in one bucket: correctness holds and a probe never passes more than
        // len + 1 buckets
        const N: usize = 256;
        let mut t: Table<u32, u32, _, N> = Table::new(Fixed(42));
        let max_peers = 100u32;
        for k in 0..max_peers {
            assert!(t.insert(k, k).is_ok());
        }
        check_invariants(&t);
        // the longest probe (last key, or a miss) ends within len + 1 buckets
        let Probe::Found { pos, .. } = t.probe(42, &(max_peers - 1)) else {
            panic!("last key not found");
        };
        assert_eq!(pos, 42 + max_peers as usize - 1);
        assert!(matches!(
            t.probe(42, &1000),
            Probe::Missing(Some(p)) if p == 42 + max_peers as usize
        ));
        // churn in the collision run
        for k in (0..max_peers).step_by(3) {
            let slot = t.find(&k).unwrap();
            assert_eq!(t.remove(slot), Some((k, k)));
        }
        check_invariants(&t);
        let left: Vec<u32> = (0..max_peers).filter(|k| k % 3 != 0).collect();
        for k in &left {
            assert_eq!(t.lookup(k), Some(k));
        }
        // the run is compact again: no tombstones, no holes
        let run = (42..42 + left.len()).all(|p| t.bucket(p) != 0);
        assert!(run && t.bucket(42 + left.len()) == 0);
    }

    #[test]
    fn batch_prefetch_names_the_slot_of_a_key_in_its_home_bucket() {
        // what `Server::handle_batch` reads for a group before handling any datagram: the home
        // bucket's word (`touch`), then the slot it names when that slot holds the key
        // (`slot_of_word`), checked again before use (`holds`). `None` sends a datagram to a
        // full probe: a prefetch that never found anything would be correct but no faster
        // than one lookup after another, so it must find every key that sits at home.
        struct Spread;
        impl KeyHash<u32> for Spread {
            fn hash_key(&self, key: &u32) -> u32 {
                // home bucket 2k mod 16, the key as the tag
                key.wrapping_mul(2) | (key << 16)
            }
        }
        fn prefetch(t: &Table<u32, u32, Spread, 8>, k: u32) -> Option<usize> {
            t.slot_of_word(t.touch(t.hash_of(&k)), &k)
        }
        let mut t: Table<u32, u32, _, 8> = Table::new(Spread);
        for k in 0..6u32 {
            assert!(t.insert(k, 100 + k).is_ok());
        }
        for k in 0..6u32 {
            let slot = t.find(&k).unwrap();
            assert_eq!(
                prefetch(&t, k),
                Some(slot),
                "key {k} sits in its home bucket"
            );
            assert!(t.holds(slot, &k));
            assert!(!t.holds(slot, &(k + 1)));
        }
        // key 8's home bucket (16 mod 16) is key 0's: the word names key 0's slot, so "probe"
        assert!(t.insert(8, 108).is_ok());
        assert_eq!(prefetch(&t, 8), None);
        assert_eq!(t.lookup(&8), Some(&108));
        // absent keys: an empty home bucket (7: bucket 14) and an occupied one (16: bucket 0)
        assert_eq!(t.touch(t.hash_of(&7)), 0);
        assert_eq!(prefetch(&t, 7), None);
        assert_eq!(prefetch(&t, 16), None);
        // a removed key: its slot is free though it still holds the old key's bytes, so
        // neither a word read before the removal nor the slot itself finds it
        let word = t.touch(t.hash_of(&3));
        let slot = t.find(&3).unwrap();
        assert_eq!(t.remove(slot), Some((3, 103)));
        assert_eq!(t.slot_of_word(word, &3), None);
        assert!(!t.holds(slot, &3));
        assert!(!t.holds(usize::MAX, &3));
        check_invariants(&t);
    }

    #[test]
    fn slot_near_names_a_key_up_to_three_buckets_past_its_home() {
        // `slot_near`: the first of the four buckets from home whose tag is the key's (the last
        // bucket's next is the first). Keys four or more buckets past home, keys behind another
        // with the same tag, absent keys and freed slots give `None`: a full probe, as before.
        struct Home;
        impl KeyHash<u32> for Home {
            fn hash_key(&self, key: &u32) -> u32 {
                // home bucket = the key's low 4 bits (16 buckets), tag = the key (bits 0..28)
                (key & 0xF) | (key << 4)
            }
        }
        fn near(t: &Table<u32, u32, Home, 8>, k: u32) -> Option<usize> {
            let h = t.hash_of(&k);
            t.slot_near(h, t.touch(h), &k)
        }
        let mut t: Table<u32, u32, _, 8> = Table::new(Home);
        // home 5: 0x05 at home, 0x15 .. 0x45 one to four past (buckets 6 to 9); home 15: 0x0F
        // in the last bucket, 0x1F and 0x2F wrapped around to buckets 0 and 1
        for k in [0x05, 0x15, 0x25, 0x35, 0x45, 0x0F, 0x1F, 0x2F] {
            assert!(t.insert(k, 0x100 + k).is_ok());
        }
        assert_eq!(t.bucket(9) & 0xF, t.find(&0x45).unwrap() as u32 + 1);
        assert_eq!(t.bucket(1) & 0xF, t.find(&0x2F).unwrap() as u32 + 1);
        for k in [0x05, 0x15, 0x25, 0x35, 0x0F, 0x1F, 0x2F] {
            assert_eq!(near(&t, k), t.find(&k), "key {k:#x}");
            assert!(near(&t, k).is_some(), "key {k:#x}");
        }
        assert_eq!(near(&t, 0x45), None, "four buckets past home: probe");
        assert_eq!(t.lookup(&0x45), Some(&0x145));
        // absent: home 5 and its three next taken by others, home 2 empty
        assert_eq!(near(&t, 0x55), None);
        assert_eq!(near(&t, 0x02), None);
        // a removed key two past home: its old slot no longer holds it
        let slot = t.find(&0x25).unwrap();
        let word = t.touch(t.hash_of(&0x25));
        assert_eq!(t.remove(slot), Some((0x25, 0x125)));
        assert_eq!(t.slot_near(t.hash_of(&0x25), word, &0x25), None);
        check_invariants(&t);
        for k in [0x05, 0x15, 0x35, 0x45, 0x0F, 0x1F, 0x2F] {
            assert_eq!(t.lookup(&k), Some(&(0x100 + k)), "key {k:#x}");
        }

        // the nearest tag match is the one checked: a key behind another key with its tag (and
        // home) is left to the probe, which finds it
        let mut t: Table<u32, u32, _, 8> = Table::new(Home);
        let twin = 0x03 | 1 << 28;
        assert_eq!(t.hash_of(&twin) & !0xF, t.hash_of(&0x03) & !0xF);
        assert!(t.insert(twin, 1).is_ok());
        assert!(t.insert(0x03, 2).is_ok());
        assert_eq!(near(&t, twin), t.find(&twin));
        assert_eq!(near(&t, 0x03), None);
        assert_eq!(t.lookup(&0x03), Some(&2));
        check_invariants(&t);
    }

    #[test]
    fn tags_keep_probes_off_other_slots() {
        // two keys with the same home bucket but different tags: the tag alone tells them
        // apart, and a key with a matching tag is still compared
        struct ByKey;
        impl KeyHash<u32> for ByKey {
            fn hash_key(&self, key: &u32) -> u32 {
                // home bucket 5 of 16 for every key; tag = the key above the position bits
                5 | (key << 4)
            }
        }
        let mut t: Table<u32, u32, _, 8> = Table::new(ByKey);
        assert!(t.insert(1, 10).is_ok());
        assert!(t.insert(2, 20).is_ok());
        assert_eq!(t.lookup(&2), Some(&20));
        assert_eq!(t.lookup(&3), None);
        // 1 + 2^28 has the same tag bits as 1 in a 32-bit word: compared by key, not found
        assert_eq!(t.lookup(&(1 + (1 << 28))), None);
        check_invariants(&t);
    }

    #[test]
    fn hash_is_keyed_and_spreads_small_keys() {
        let a = PeerHashKey::new([1; 16]);
        let b = PeerHashKey::new([2; 16]);
        assert_ne!(a.hash(&5u32), b.hash(&5u32));
        assert_eq!(a.hash(&5u32), a.hash(&5u32));
        // sequential keys over 1024 buckets: no bucket holds more than a handful
        let mut counts = [0u8; 1024];
        for k in 0..512u32 {
            counts[a.hash(&k) as usize & 1023] += 1;
        }
        assert!(counts.iter().all(|&c| c <= 6), "{:?}", counts.iter().max());
        // byte-stream keys of different lengths differ
        assert_ne!(a.hash(&[1u8][..]), a.hash(&[1u8, 0][..]));
    }

    /// Distinct home buckets (of 1024) of `keys`
    fn homes<T: Hash>(h: &PeerHashKey, keys: impl Iterator<Item = T>) -> usize {
        let mut seen = [false; 1024];
        for k in keys {
            seen[h.hash(&k) as usize & 1023] = true;
        }
        seen.iter().filter(|&&s| s).count()
    }

    #[test]
    fn hash_spreads_every_kind_of_peer_key() {
        use core::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
        // 256 keys over 1024 buckets land in about 226 distinct buckets at random; a hash that
        // ignores part of the key puts them all in one
        let h = PeerHashKey::new([0x5a; 16]);
        let spread = |n: usize, what: &str| assert!(n >= 150, "{what}: {n} home buckets");
        spread(homes(&h, 0..=255u8), "u8");
        spread(homes(&h, (0..256u16).map(|i| i * 251)), "u16");
        spread(homes(&h, (0..256u64).map(|i| i << 40)), "u64");
        spread(homes(&h, (0..256usize).map(|i| i * 7)), "usize");
        // keys that differ only above the bucket bits: an off-path client picking addresses in
        // one /16 must not be able to stack them in one bucket
        spread(homes(&h, (0..256u32).map(|i| i << 16)), "u32 high bits");
        // hosts of one subnet on one port, and one host on many ports
        let host =
            |i: u32| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 | i), 8303));
        spread(homes(&h, (0..256).map(host)), "IPv4 hosts");
        let port = |p: u16| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8000 + p));
        spread(homes(&h, (0..256).map(port)), "ports");
        let v6 = |i: u128| SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(i << 64), 8303, 0, 0));
        spread(homes(&h, (0..256).map(v6)), "IPv6 prefixes");
        // every one-bit change of an IPv6 address gives another hash
        let base = 0x2001_0db8_0000_0000_0000_0000_0000_0001u128;
        let mut hashes: Vec<u32> = (0..128)
            .map(|b| h.hash(&Ipv6Addr::from(base ^ (1 << b))))
            .collect();
        hashes.push(h.hash(&Ipv6Addr::from(base)));
        hashes.sort_unstable();
        hashes.dedup();
        assert_eq!(hashes.len(), 129);
        // text keys that differ by a trailing NUL are different keys
        assert_ne!(h.hash("a"), h.hash("a\0"));
        assert_ne!(h.hash("peer-1234567"), h.hash("peer-1234567\0"));
    }
}
