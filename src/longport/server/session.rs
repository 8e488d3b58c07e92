//! [`SessionId`], the bearer secret a session is resumed with, and the server's session table:
//! sessions outlive their connections until they expire
//!
//! Lookups compare ids in constant time over their bytes ([`ct_eq`]) and scan the whole table.
//! Eviction when full: the entry that expires first among those **without** a live connection,
//! else the one that expires first.

use core::fmt;

use heapless::{String, Vec};

use crate::longport::error::Error;
use crate::longport::server::admission::AccountId;
use crate::longport::server::MAX_SESSION_ID_LEN;

/// Fewest random bytes a [`SessionId`] is made of (128 bits)
pub const MIN_SESSION_ENTROPY: usize = 16;
/// Most random bytes a [`SessionId`] is made of (its text is twice as long: at most
/// [`MAX_SESSION_ID_LEN`])
pub const MAX_SESSION_ENTROPY: usize = MAX_SESSION_ID_LEN / 2;

/// A session id the server grants: at least 128 random bits from the caller, as lowercase hex
///
/// **A session id is a bearer secret**: whoever presents it in a Reconnect request resumes the
/// session (the protocol has nothing else to prove who is reconnecting). So the server only
/// grants ids built from random bytes the caller draws from a cryptographically secure source
/// (the OS: `getrandom`, `/dev/urandom`; a hardware RNG on a microcontroller); the machine has
/// no randomness of its own. Never derive ids from counters, clocks or account numbers, never
/// log them: `Debug` and `defmt` print only the length.
///
/// The text on the wire is the bytes in lowercase hex (32 characters for 16 bytes), which
/// every official client stores and sends back as it is. Reconnect requests are matched by
/// text, in constant time per byte; any id a client presents is looked up, and unknown ones are
/// refused without involving the application.
///
/// ```
/// use tether_net::longport::SessionId;
///
/// // in real code: let mut random = [0u8; 16]; getrandom::fill(&mut random)?;
/// let random = [0x5a; 16];
/// let id = SessionId::from_random(random);
/// assert_eq!(id.as_str(), "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a");
/// assert!(SessionId::from_random_bytes(&[1; 8]).is_err(), "64 bits are not enough");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId {
    text: String<MAX_SESSION_ID_LEN>,
}

impl SessionId {
    /// The id made of 16 random bytes (128 bits)
    #[must_use]
    pub fn from_random(bytes: [u8; MIN_SESSION_ENTROPY]) -> Self {
        SessionId {
            text: hex_text(&bytes),
        }
    }

    /// The id made of `bytes`, [`MIN_SESSION_ENTROPY`] ..= [`MAX_SESSION_ENTROPY`] random bytes
    ///
    /// # Errors
    /// [`Error::TooShort`] below 16 bytes, [`Error::TooLong`] above 32.
    pub fn from_random_bytes(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() < MIN_SESSION_ENTROPY {
            return Err(Error::TooShort {
                len: bytes.len(),
                min: MIN_SESSION_ENTROPY,
            });
        }
        if bytes.len() > MAX_SESSION_ENTROPY {
            return Err(Error::TooLong {
                len: bytes.len(),
                max: MAX_SESSION_ENTROPY,
            });
        }
        Ok(SessionId {
            text: hex_text(bytes),
        })
    }

    /// The id as sent on the wire
    #[must_use]
    pub fn as_str(&self) -> &str {
        self.text.as_str()
    }

    /// Any text as an id, for the unit tests that check the spec's vectors ("s1")
    #[cfg(test)]
    pub(crate) fn from_text(text: &str) -> Self {
        let mut t = String::new();
        t.push_str(text).unwrap();
        SessionId { text: t }
    }
}

/// `bytes` (at most [`MAX_SESSION_ENTROPY`]) in lowercase hex
fn hex_text(bytes: &[u8]) -> String<MAX_SESSION_ID_LEN> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::new();
    for &b in bytes.iter().take(MAX_SESSION_ENTROPY) {
        for nibble in [b >> 4, b & 0x0f] {
            // cannot fail: at most MAX_SESSION_ENTROPY bytes of two digits each
            let _ = text.push(char::from(DIGITS[usize::from(nibble)]));
        }
    }
    text
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId(<{} chars>)", self.text.len())
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for SessionId {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "SessionId(<{=usize} chars>)", self.text.len());
    }
}

#[derive(Debug, Clone)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
struct Entry<P> {
    id: SessionId,
    expires: i64,
    /// The account the application named when granting it
    account: Option<AccountId>,
    /// The live connection holding it, if any
    peer: Option<P>,
    /// Distinguishes this entry from a later one with the same id
    generation: u32,
}

/// A session a Reconnect presented
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Found<P> {
    pub(super) generation: u32,
    pub(super) expires: i64,
    pub(super) account: Option<AccountId>,
    /// The live connection holding it, if any
    pub(super) peer: Option<P>,
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
            let hit = ct_eq(s.id.as_str().as_bytes(), id.as_bytes());
            if hit && found.is_none() {
                found = Some(i);
            }
        }
        found
    }

    /// The session with this id, expired or not
    pub(super) fn find(&self, id: &str) -> Option<Found<P>> {
        self.lookup(id).map(|i| Found {
            generation: self.entries[i].generation,
            expires: self.entries[i].expires,
            account: self.entries[i].account,
            peer: self.entries[i].peer,
        })
    }

    /// The session of this generation (a Reconnect waiting for its decision)
    pub(super) fn by_generation(&self, generation: u32) -> Option<Found<P>> {
        self.entries
            .iter()
            .find(|s| s.generation == generation)
            .map(|s| Found {
                generation,
                expires: s.expires,
                account: s.account,
                peer: s.peer,
            })
    }

    /// The session bound to a live connection
    pub(super) fn id_of(&self, peer: P) -> Option<&str> {
        self.entries
            .iter()
            .find(|s| s.peer == Some(peer))
            .map(|s| s.id.as_str())
    }

    /// Every live connection holding a session (test builds: the server's invariant check)
    #[cfg(all(debug_assertions, any(test, feature = "testing")))]
    pub(super) fn holders(&self) -> impl Iterator<Item = P> + '_ {
        self.entries.iter().filter_map(|s| s.peer)
    }

    /// The live connection holding the session with this id
    pub(super) fn holder(&self, id: &str) -> Option<P> {
        self.lookup(id).and_then(|i| self.entries[i].peer)
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
    /// as the file docs say; an older holder of the same id is reported as displaced
    pub(super) fn bind(
        &mut self,
        peer: P,
        id: SessionId,
        expires: i64,
        account: Option<AccountId>,
        wall_ms: i64,
    ) -> Bound<P> {
        let mut evicted = self.purge_expired(wall_ms);
        // one session per connection
        self.detach(peer);
        let displaced = self
            .lookup(id.as_str())
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
            account,
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
    fn session_ids_are_hex_of_enough_random_bytes() {
        let id = SessionId::from_random([
            0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0, 0, 0, 0, 0, 0, 0, 0xff,
        ]);
        assert_eq!(id.as_str(), "0123456789abcdef00000000000000ff");
        assert_eq!(
            SessionId::from_random_bytes(&[0; 15]),
            Err(Error::TooShort { len: 15, min: 16 })
        );
        assert_eq!(
            SessionId::from_random_bytes(&[0x5a; 16]).map(|id| id.as_str().len()),
            Ok(32)
        );
        // a bearer secret: its Debug form (what ends up in logs) shows its length only
        let shown = std::format!("{id:?}");
        assert_eq!(shown, "SessionId(<32 chars>)");
        assert!(!shown.contains("0123"));
        assert_eq!(
            SessionId::from_random_bytes(&[0; 33]),
            Err(Error::TooLong { len: 33, max: 32 })
        );
        assert_eq!(
            SessionId::from_random_bytes(&[0xaa; 32])
                .unwrap()
                .as_str()
                .len(),
            64
        );
        extern crate std;
        let shown = std::format!("{id:?}");
        assert!(!shown.contains("0123"), "Debug hides the secret: {shown}");
    }

    #[test]
    fn ct_eq_compares_contents_and_lengths() {
        assert!(ct_eq(b"s1", b"s1"));
        assert!(!ct_eq(b"s1", b"s2"));
        assert!(!ct_eq(b"s1", b"s12"));
        assert!(ct_eq(b"", b""));
    }

    #[test]
    fn a_session_expires_at_its_expiry_instant() {
        let mut t: Sessions<u32, 4> = Sessions::new();
        let id = SessionId::from_random([7; 16]);
        let _ = t.bind(1, id, 1_000, None, 0);
        assert_eq!(t.purge_expired(999), 0);
        assert_eq!(t.len(), 1);
        // `expires` is the first wall-clock millisecond at which the session is gone
        assert_eq!(t.purge_expired(1_000), 1);
        assert_eq!(t.len(), 0);
    }
}
