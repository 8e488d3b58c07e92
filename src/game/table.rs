//! The game server's peer table: open addressing with linear probing and backward-shift deletion
//!
//! A `Table<K, V, N>` holds at most `N` entries in `2 × N` buckets (`N` a power of two, checked
//! at compile time), so the load factor never exceeds 50 % and an unsuccessful probe ends at an
//! empty bucket after a short run. Deletion shifts the following run back instead of leaving
//! tombstones, so churn (admit, time out, admit ...) does not lengthen probe sequences.
//! Positions are `u32`-sized (no 65 536 cap); a lookup touches the home bucket and, on a
//! collision, its neighbours — usually one cache line.
//!
//! The caller supplies the hash of every key (a keyed hash: clients must not be able to pick
//! colliding addresses). Even with every key in one bucket a probe visits at most `len + 1`
//! buckets, and `len <= N` (the server caps it further with `max_peers`).
//!
//! [`PeerHasher`] is the keyed hash the server uses: a folded 64 × 64 → 128-bit multiply per
//! word of the key's `Hash` stream, keyed by 16 bytes derived from the server secret. It is not a
//! MAC (tokens still use SipHash-2-4), only a placement hash that an off-path client cannot
//! predict; a few nanoseconds per datagram instead of a SipHash.

use core::hash::{Hash, Hasher};

/// One occupied bucket: the key's hash (for placement and backward shift), the key, the value
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket<K, V> {
    pub(crate) hash: u32,
    pub(crate) key: K,
    pub(crate) value: V,
}

/// Open-addressing table of at most `N` entries in `2 × N` buckets (see the module docs)
///
/// The buckets are stored as two halves of `N` each because `[T; 2 * N]` is not expressible on
/// stable Rust; a position `p` in `0..2N` lives at `halves[p / N][p % N]`.
pub(crate) struct Table<K, V, const N: usize> {
    halves: [[Option<Bucket<K, V>>; N]; 2],
    len: u32,
}

impl<K, V, const N: usize> Table<K, V, N> {
    /// Number of entries
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    /// True when `N` entries are stored (an insert of a new key is refused)
    pub(crate) fn is_full(&self) -> bool {
        self.len as usize >= N
    }
}

impl<K: Copy + Eq, V: Copy, const N: usize> Table<K, V, N> {
    /// Compile-time check of `N`
    const CHECK: () = assert!(
        N.is_power_of_two() && N <= 1 << 30,
        "the peer table size N must be a power of two, at most 2^30"
    );
    const EMPTY: Option<Bucket<K, V>> = None;
    const EMPTY_HALF: [Option<Bucket<K, V>>; N] = [Self::EMPTY; N];
    /// Number of buckets
    pub(crate) const SLOTS: usize = 2 * N;
    const MASK: usize = 2 * N - 1;

    /// An empty table
    pub(crate) const fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::CHECK;
        Table {
            halves: [Self::EMPTY_HALF; 2],
            len: 0,
        }
    }

    #[inline]
    fn bucket(&self, pos: usize) -> &Option<Bucket<K, V>> {
        &self.halves[(pos / N) & 1][pos % N]
    }

    #[inline]
    fn bucket_mut(&mut self, pos: usize) -> &mut Option<Bucket<K, V>> {
        &mut self.halves[(pos / N) & 1][pos % N]
    }

    /// Position of `key` (hashed to `hash`), if present
    #[inline]
    pub(crate) fn find(&self, hash: u32, key: &K) -> Option<usize> {
        let mut pos = hash as usize & Self::MASK;
        // at least one bucket is empty (len <= N < 2N): the loop ends; bounded anyway
        for _ in 0..=self.len {
            match self.bucket(pos) {
                None => return None,
                Some(b) if b.hash == hash && b.key == *key => return Some(pos),
                Some(_) => pos = (pos + 1) & Self::MASK,
            }
        }
        None
    }

    /// The entry at `pos`, if occupied
    pub(crate) fn get(&self, pos: usize) -> Option<&Bucket<K, V>> {
        if pos < Self::SLOTS {
            self.bucket(pos).as_ref()
        } else {
            None
        }
    }

    /// The value at `pos`, if occupied
    pub(crate) fn value_mut(&mut self, pos: usize) -> Option<&mut V> {
        if pos < Self::SLOTS {
            self.bucket_mut(pos).as_mut().map(|b| &mut b.value)
        } else {
            None
        }
    }

    /// The value of `key`
    pub(crate) fn lookup(&self, hash: u32, key: &K) -> Option<&V> {
        let pos = self.find(hash, key)?;
        self.get(pos).map(|b| &b.value)
    }

    /// The value of `key`, mutably
    pub(crate) fn lookup_mut(&mut self, hash: u32, key: &K) -> Option<&mut V> {
        let pos = self.find(hash, key)?;
        self.value_mut(pos)
    }

    /// Insert `key` → `value` (replacing the value of an existing `key`); `Err` when the table
    /// holds `N` entries already and `key` is new. Returns the position.
    pub(crate) fn insert(&mut self, hash: u32, key: K, value: V) -> Result<usize, (K, V)> {
        let mut pos = hash as usize & Self::MASK;
        let full = self.is_full();
        for _ in 0..=self.len {
            match self.bucket_mut(pos) {
                Some(b) if b.hash == hash && b.key == key => {
                    b.value = value;
                    return Ok(pos);
                }
                Some(_) => pos = (pos + 1) & Self::MASK,
                empty @ None => {
                    if full {
                        return Err((key, value));
                    }
                    *empty = Some(Bucket { hash, key, value });
                    self.len += 1;
                    return Ok(pos);
                }
            }
        }
        // not reachable: len + 1 probes always meet an empty bucket
        Err((key, value))
    }

    /// Remove the entry at `pos` (backward-shift deletion: no tombstones); returns its value
    pub(crate) fn remove_at(&mut self, pos: usize) -> Option<V> {
        if pos >= Self::SLOTS {
            return None;
        }
        let removed = self.bucket_mut(pos).take()?;
        self.len -= 1;
        let mut hole = pos;
        let mut i = (pos + 1) & Self::MASK;
        // every iteration visits a new occupied bucket: at most len iterations
        while let Some(b) = *self.bucket(i) {
            let home = b.hash as usize & Self::MASK;
            // the entry at `i` may move back to `hole` when `hole` lies on its probe path
            // [home, i] (cyclically): its distance from home is at least the hole's distance
            if (i.wrapping_sub(home) & Self::MASK) >= (i.wrapping_sub(hole) & Self::MASK) {
                *self.bucket_mut(hole) = Some(b);
                *self.bucket_mut(i) = None;
                hole = i;
            }
            i = (i + 1) & Self::MASK;
        }
        Some(removed.value)
    }

    /// Remove `key`; returns its value
    #[cfg(test)]
    pub(crate) fn remove(&mut self, hash: u32, key: &K) -> Option<V> {
        let pos = self.find(hash, key)?;
        self.remove_at(pos)
    }

    /// The first occupied position at or after `from`
    pub(crate) fn next_occupied(&self, from: usize) -> Option<usize> {
        (from..Self::SLOTS).find(|&p| self.bucket(p).is_some())
    }

    /// All entries, in bucket order
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Bucket<K, V>> {
        self.halves.iter().flatten().filter_map(Option::as_ref)
    }

    /// Remove every entry; O(N)
    pub(crate) fn clear(&mut self) {
        for half in &mut self.halves {
            half.fill(None);
        }
        self.len = 0;
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

    /// Deterministic xorshift for the churn test
    fn rng(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    fn check_invariants<const N: usize>(t: &Table<u32, u32, N>) {
        // every entry is reachable from its home without crossing an empty bucket
        let mut count = 0;
        for pos in 0..Table::<u32, u32, N>::SLOTS {
            if let Some(b) = t.get(pos) {
                count += 1;
                assert_eq!(t.find(b.hash, &b.key), Some(pos));
            }
        }
        assert_eq!(count, t.len());
    }

    #[test]
    fn insert_lookup_remove() {
        let key = PeerHashKey::new([3; 16]);
        let mut t: Table<u32, u32, 8> = Table::new();
        assert_eq!(t.len(), 0);
        for k in 0..8u32 {
            assert!(t.insert(key.hash(&k), k, k * 10).is_ok());
        }
        assert!(t.is_full());
        check_invariants(&t);
        for k in 0..8u32 {
            assert_eq!(t.lookup(key.hash(&k), &k), Some(&(k * 10)));
        }
        assert_eq!(t.lookup(key.hash(&99u32), &99), None);
        // replacing an existing key works when full; a new key is refused
        assert!(t.insert(key.hash(&3u32), 3, 33).is_ok());
        assert_eq!(t.lookup(key.hash(&3u32), &3), Some(&33));
        assert_eq!(t.insert(key.hash(&8u32), 8, 80), Err((8, 80)));
        assert_eq!(t.len(), 8);
        assert_eq!(t.remove(key.hash(&3u32), &3), Some(33));
        assert_eq!(t.remove(key.hash(&3u32), &3), None);
        check_invariants(&t);
        assert!(t.insert(key.hash(&8u32), 8, 80).is_ok());
        *t.lookup_mut(key.hash(&8u32), &8).unwrap() += 1;
        assert_eq!(t.lookup(key.hash(&8u32), &8), Some(&81));
        assert_eq!(t.iter().count(), 8);
        t.clear();
        assert_eq!(t.len(), 0);
        assert_eq!(t.next_occupied(0), None);
    }

    #[test]
    fn churn_with_backward_shift_matches_a_model() {
        let key = PeerHashKey::new([9; 16]);
        let mut t: Table<u32, u32, 64> = Table::new();
        let mut model: HashMap<u32, u32> = HashMap::new();
        let mut s = 0x1234_5678_9abc_def0;
        for step in 0..20_000u32 {
            let k = (rng(&mut s) % 200) as u32;
            let h = key.hash(&k);
            if rng(&mut s) % 2 == 0 {
                let r = t.insert(h, k, step);
                if model.len() < 64 || model.contains_key(&k) {
                    assert!(r.is_ok());
                    model.insert(k, step);
                } else {
                    assert!(r.is_err());
                }
            } else {
                assert_eq!(t.remove(h, &k), model.remove(&k));
            }
            assert_eq!(t.len(), model.len());
            if step % 512 == 0 {
                check_invariants(&t);
            }
        }
        check_invariants(&t);
        for (k, v) in &model {
            assert_eq!(t.lookup(key.hash(k), k), Some(v));
        }
    }

    #[test]
    fn colliding_keys_wrap_around_and_shift_back() {
        // all keys in the last bucket: the run wraps around the end of the table
        let mut t: Table<u32, u32, 4> = Table::new();
        let h = 7; // bucket 7 of 8
        for k in 0..4u32 {
            assert!(t.insert(h, k, k).is_ok());
        }
        assert_eq!(t.insert(h, 4, 4), Err((4, 4)));
        check_invariants(&t);
        assert_eq!(t.remove(h, &1), Some(1));
        check_invariants(&t);
        assert_eq!(t.remove(h, &0), Some(0));
        check_invariants(&t);
        // the remaining two are back in buckets 7 and 0
        assert!(t.get(7).is_some() && t.get(0).is_some() && t.get(1).is_none());
        for k in [2u32, 3] {
            assert_eq!(t.lookup(h, &k), Some(&k));
        }
    }

    #[test]
    fn adversarial_same_bucket_keys_stay_correct_and_bounded() {
        // a hash that puts every key into one bucket (what an attacker who knew the key would
        // aim for): correctness holds and a probe never passes more than len + 1 buckets
        const N: usize = 256;
        let mut t: Table<u32, u32, N> = Table::new();
        let max_peers = 100u32;
        for k in 0..max_peers {
            assert!(t.insert(42, k, k).is_ok());
        }
        check_invariants(&t);
        // the longest probe (last key, or a miss) ends within len + 1 buckets
        let last = t.find(42, &(max_peers - 1)).unwrap();
        assert_eq!(last, 42 + max_peers as usize - 1);
        assert_eq!(t.find(42, &1000), None);
        // churn in the collision run
        for k in (0..max_peers).step_by(3) {
            assert_eq!(t.remove(42, &k), Some(k));
        }
        check_invariants(&t);
        let left: Vec<u32> = (0..max_peers).filter(|k| k % 3 != 0).collect();
        for k in &left {
            assert_eq!(t.lookup(42, k), Some(k));
        }
        // the run is compact again: no tombstones, no holes
        let run = (42..42 + left.len()).all(|p| t.get(p).is_some());
        assert!(run && t.get(42 + left.len()).is_none());
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
}
