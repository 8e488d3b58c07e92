//! Stateless security tokens: SipHash-2-4 keyed by a server secret
//!
//! A DDNet-style server answers every CONNECT with a token derived from the peer's address and
//! keeps no state until the peer echoes that token in ACCEPT. The game
//! [`Server`](super::Server) computes such a token ([`Server::token_for`](super::Server::token_for))
//! as a keyed hash (SipHash-2-4, written here from the published algorithm) of whatever peer key
//! the caller uses: hash the IP alone to give all ports of one host the same token (what DDNet
//! does), or the whole socket address to tie it to the port. The two sentinel values
//! [`Token::UNSUPPORTED`] (`00000000`) and [`Token::UNKNOWN`] (`FFFFFFFF`) are never returned.
//! DDNet itself mints with SHA-256 over a random seed and the address
//! ([network_server.cpp](https://github.com/ddnet/ddnet/blob/master/src/engine/shared/network_server.cpp));
//! only the server that minted a token ever checks it, so the function is the server's choice.
//!
//! Tokens only have to be stable for the lifetime of one server process (the same secret, the same
//! build): they go through [`core::hash::Hash`], whose byte stream is not a portable format.
//!
//! The key of the server's peer-table placement hash is derived from the same secret (SipHash of
//! a fixed label), so table hashes never equal token material.

use core::fmt;
use core::hash::{Hash, Hasher};

use super::wire::Token;

/// The 128-bit server secret tokens are derived from
///
/// Fill it from a random source (the OS's random generator, a hardware RNG) at start-up: anyone
/// who knows or guesses it can compute valid tokens for spoofed addresses offline. `Debug` and
/// `defmt` print it as `TokenSecret(..)`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenSecret(pub [u8; 16]);

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSecret(..)")
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for TokenSecret {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "TokenSecret(..)");
    }
}

/// SipHash-2-4 with a 128-bit key, 64-bit output, as a streaming [`Hasher`]
#[derive(Clone)]
pub(crate) struct SipHasher24 {
    v0: u64,
    v1: u64,
    v2: u64,
    v3: u64,
    /// Up to 7 bytes not yet compressed, little-endian in the low bytes
    tail: u64,
    /// Number of valid bytes in `tail`
    ntail: usize,
    /// Total bytes written (only the low 8 bits matter)
    len: u64,
}

impl fmt::Debug for SipHasher24 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SipHasher24 { .. }")
    }
}

impl SipHasher24 {
    /// A hasher keyed with 16 bytes (k0 = bytes 0..8, k1 = bytes 8..16, both little-endian)
    #[must_use]
    pub(crate) const fn new_with_key(key: &[u8; 16]) -> Self {
        let [a0, a1, a2, a3, a4, a5, a6, a7, b0, b1, b2, b3, b4, b5, b6, b7] = *key;
        let k0 = u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]);
        let k1 = u64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7]);
        SipHasher24 {
            v0: k0 ^ 0x736f_6d65_7073_6575,
            v1: k1 ^ 0x646f_7261_6e64_6f6d,
            v2: k0 ^ 0x6c79_6765_6e65_7261,
            v3: k1 ^ 0x7465_6462_7974_6573,
            tail: 0,
            ntail: 0,
            len: 0,
        }
    }

    /// A hasher keyed with a [`TokenSecret`]
    #[must_use]
    pub(crate) const fn new(secret: &TokenSecret) -> Self {
        Self::new_with_key(&secret.0)
    }

    #[inline]
    fn round(&mut self) {
        self.v0 = self.v0.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(13) ^ self.v0;
        self.v0 = self.v0.rotate_left(32);
        self.v2 = self.v2.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(16) ^ self.v2;
        self.v0 = self.v0.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(21) ^ self.v0;
        self.v2 = self.v2.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(17) ^ self.v2;
        self.v2 = self.v2.rotate_left(32);
    }

    /// Absorb one 8-byte block (2 compression rounds)
    #[inline]
    fn compress(&mut self, m: u64) {
        self.v3 ^= m;
        self.round();
        self.round();
        self.v0 ^= m;
    }
}

impl Hasher for SipHasher24 {
    fn write(&mut self, bytes: &[u8]) {
        self.len = self.len.wrapping_add(bytes.len() as u64);
        for &b in bytes {
            self.tail |= u64::from(b) << (8 * self.ntail);
            self.ntail += 1;
            if self.ntail == 8 {
                let m = self.tail;
                self.compress(m);
                self.tail = 0;
                self.ntail = 0;
            }
        }
    }

    fn finish(&self) -> u64 {
        let mut s = self.clone();
        let b = (self.len & 0xFF) << 56 | self.tail;
        s.compress(b);
        s.v2 ^= 0xFF;
        for _ in 0..4 {
            s.round();
        }
        s.v0 ^ s.v1 ^ s.v2 ^ s.v3
    }
}

/// The token for `addr` under `secret`: the high 4 bytes of SipHash-2-4(`secret`, `addr`), with the
/// sentinels `00000000` and `FFFFFFFF` replaced by `00000001`
#[must_use]
pub(crate) fn mint<A: Hash>(secret: &TokenSecret, addr: &A) -> Token {
    let mut h = SipHasher24::new(secret);
    addr.hash(&mut h);
    let v = (h.finish() >> 32) as u32;
    let t = Token(v.to_be_bytes());
    if t.is_sentinel() {
        Token(1u32.to_be_bytes())
    } else {
        t
    }
}

/// The 16-byte key of the server's peer-table placement hash, derived from `secret`
pub(crate) fn table_key(secret: &TokenSecret) -> [u8; 16] {
    let mut key = [0u8; 16];
    for (i, half) in key.chunks_exact_mut(8).enumerate() {
        let mut h = SipHasher24::new(secret);
        h.write(b"tether peer table key");
        h.write_u8(i as u8);
        half.copy_from_slice(&h.finish().to_le_bytes());
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

    fn sip(key: &[u8; 16], msg: &[u8]) -> u64 {
        let mut h = SipHasher24::new_with_key(key);
        h.write(msg);
        h.finish()
    }

    #[test]
    fn reference_vector_15_bytes() {
        let msg: [u8; 15] = core::array::from_fn(|i| i as u8);
        assert_eq!(sip(&KEY, &msg), 0xa129_ca61_49be_45e5);
    }

    #[test]
    fn reference_vector_empty() {
        assert_eq!(sip(&KEY, &[]), 0x726f_db47_dd0e_0e31);
    }

    #[test]
    fn split_writes_equal_one_write() {
        let msg: [u8; 40] = core::array::from_fn(|i| (i * 7) as u8);
        let whole = sip(&KEY, &msg);
        for cut in 0..msg.len() {
            let mut h = SipHasher24::new_with_key(&KEY);
            h.write(&msg[..cut]);
            h.write(&msg[cut..]);
            assert_eq!(h.finish(), whole, "cut at {cut}");
        }
        // finish does not consume: calling it twice gives the same value
        let mut h = SipHasher24::new_with_key(&KEY);
        h.write(&msg);
        assert_eq!(h.finish(), h.finish());
    }

    #[test]
    fn mint_is_deterministic_and_keyed() {
        let a = TokenSecret([7; 16]);
        let b = TokenSecret([8; 16]);
        let ip = [127u8, 0, 0, 1];
        assert_eq!(mint(&a, &ip), mint(&a, &ip));
        assert_ne!(mint(&a, &ip), mint(&b, &ip));
        assert_ne!(mint(&a, &ip), mint(&a, &[127u8, 0, 0, 2]));
    }

    #[test]
    fn mint_never_returns_a_sentinel() {
        for s in 0..=255u8 {
            let secret = TokenSecret([s; 16]);
            for port in 0..256u16 {
                assert!(!mint(&secret, &port).is_sentinel());
            }
        }
    }

    #[test]
    fn table_key_is_derived_from_the_secret() {
        let secret = TokenSecret([9; 16]);
        let k = table_key(&secret);
        assert_eq!(k, table_key(&secret));
        assert_ne!(k, table_key(&TokenSecret([10; 16])));
        // never the secret itself, never token material
        assert_ne!(k, secret.0);
        assert!(!k.windows(4).any(|w| w == mint(&secret, &42u32).0));
    }

    #[test]
    fn debug_never_prints_the_secret_or_the_keyed_state() {
        extern crate alloc;
        use alloc::format;
        let secret = TokenSecret([0xA5; 16]);
        assert_eq!(format!("{secret:?}"), "TokenSecret(..)");
        let mut h = SipHasher24::new(&secret);
        h.write(b"peer");
        assert_eq!(format!("{h:?}"), "SipHasher24 { .. }");
    }
}
