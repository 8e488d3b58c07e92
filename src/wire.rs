//! Bounds-checked big-endian reader and writer used by every codec
//!
//! Neither type ever panics: reads past the end return `None`, writes past the end return
//! [`BufferTooSmall`] (and write nothing for that call).

use crate::io::BufferTooSmall;

/// A cursor over borrowed bytes
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`
    #[must_use]
    #[inline]
    pub const fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes read so far
    #[must_use]
    #[inline]
    pub const fn position(&self) -> usize {
        self.pos
    }

    /// Bytes left
    #[must_use]
    #[inline]
    pub const fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// True when nothing is left
    #[must_use]
    #[inline]
    pub const fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The next `n` bytes, borrowed
    #[inline]
    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    /// The next `N` bytes as an array
    #[inline]
    pub fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let b = self.bytes(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Some(out)
    }

    /// Everything left, borrowed
    #[inline]
    pub fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }

    /// Look at the next byte without consuming it
    #[must_use]
    #[inline]
    pub fn peek_u8(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// One byte
    #[inline]
    pub fn u8(&mut self) -> Option<u8> {
        let b = self.peek_u8()?;
        self.pos += 1;
        Some(b)
    }

    /// Big-endian u16
    #[inline]
    pub fn u16(&mut self) -> Option<u16> {
        self.array::<2>().map(u16::from_be_bytes)
    }

    /// Big-endian 24-bit unsigned integer
    #[inline]
    pub fn u24(&mut self) -> Option<u32> {
        let [a, b, c] = self.array::<3>()?;
        Some(u32::from_be_bytes([0, a, b, c]))
    }

    /// Big-endian u32
    #[inline]
    pub fn u32(&mut self) -> Option<u32> {
        self.array::<4>().map(u32::from_be_bytes)
    }

    /// Big-endian u64
    #[inline]
    pub fn u64(&mut self) -> Option<u64> {
        self.array::<8>().map(u64::from_be_bytes)
    }
}

/// A cursor writing into a caller's buffer
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    /// A writer at the start of `buf`
    #[inline]
    pub fn new(buf: &'a mut [u8]) -> Self {
        Writer { buf, pos: 0 }
    }

    /// Bytes written so far
    #[must_use]
    #[inline]
    pub const fn written(&self) -> usize {
        self.pos
    }

    /// Space left
    #[must_use]
    #[inline]
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Fail early, writing nothing, unless `n` more bytes fit; `required` reports `position + n`
    ///
    /// # Errors
    /// [`BufferTooSmall`] when fewer than `n` bytes are left.
    #[inline]
    pub fn reserve(&self, n: usize) -> Result<(), BufferTooSmall> {
        if self.remaining() < n {
            Err(BufferTooSmall {
                required: self.pos.saturating_add(n),
            })
        } else {
            Ok(())
        }
    }

    /// Append bytes
    ///
    /// # Errors
    /// [`BufferTooSmall`] when `b` does not fit; nothing is written.
    #[inline]
    pub fn bytes(&mut self, b: &[u8]) -> Result<(), BufferTooSmall> {
        self.reserve(b.len())?;
        self.buf[self.pos..self.pos + b.len()].copy_from_slice(b);
        self.pos += b.len();
        Ok(())
    }

    /// Append one byte
    ///
    /// # Errors
    /// [`BufferTooSmall`] when the buffer is full.
    #[inline]
    pub fn u8(&mut self, v: u8) -> Result<(), BufferTooSmall> {
        self.bytes(&[v])
    }

    /// Append a big-endian u16
    ///
    /// # Errors
    /// [`BufferTooSmall`] when it does not fit.
    #[inline]
    pub fn u16(&mut self, v: u16) -> Result<(), BufferTooSmall> {
        self.bytes(&v.to_be_bytes())
    }

    /// Append the low 24 bits of `v`, big-endian
    ///
    /// # Errors
    /// [`BufferTooSmall`] when it does not fit.
    #[inline]
    pub fn u24(&mut self, v: u32) -> Result<(), BufferTooSmall> {
        self.bytes(&v.to_be_bytes()[1..])
    }

    /// Append a big-endian u32
    ///
    /// # Errors
    /// [`BufferTooSmall`] when it does not fit.
    #[inline]
    pub fn u32(&mut self, v: u32) -> Result<(), BufferTooSmall> {
        self.bytes(&v.to_be_bytes())
    }

    /// Append a big-endian u64
    ///
    /// # Errors
    /// [`BufferTooSmall`] when it does not fit.
    #[inline]
    pub fn u64(&mut self, v: u64) -> Result<(), BufferTooSmall> {
        self.bytes(&v.to_be_bytes())
    }

    /// The written prefix
    #[must_use]
    #[inline]
    pub fn as_written(&self) -> &[u8] {
        &self.buf[..self.pos]
    }
}

/// True when `bytes` is valid UTF-8: what `core::str::from_utf8(bytes).is_ok()` says
///
/// For codecs that only need the verdict (they keep the bytes): one byte at a time, a fraction
/// of the flash of core's validator (whose word-at-a-time ASCII path is about 370 B on
/// Cortex-M), which a firmware then need not link.
pub(crate) fn is_utf8(bytes: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&lead) = bytes.get(i) {
        // continuation bytes and the smallest code point of each length
        let (more, min) = match lead {
            0..=0x7F => {
                i += 1;
                continue;
            }
            0xC2..=0xDF => (1, 0x80),
            0xE0..=0xEF => (2, 0x800),
            0xF0..=0xF4 => (3, 0x1_0000),
            _ => return false,
        };
        // the lead byte's payload bits: 5, 4 or 3
        let mut c = u32::from(lead) & (0x3F >> more);
        for k in 1..=more {
            match bytes.get(i + k) {
                Some(&b) if b & 0xC0 == 0x80 => c = c << 6 | u32::from(b & 0x3F),
                _ => return false,
            }
        }
        // overlong forms, UTF-16 surrogates, beyond U+10FFFF
        if c < min || (0xD800..=0xDFFF).contains(&c) || c > 0x10_FFFF {
            return false;
        }
        i += 1 + more;
    }
    true
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    #[test]
    fn is_utf8_agrees_with_core() {
        let check = |b: &[u8]| {
            assert_eq!(is_utf8(b), core::str::from_utf8(b).is_ok(), "{b:02x?}");
        };
        // every sequence of up to 3 bytes from lead/continuation/boundary values, every
        // 2-byte sequence
        for a in 0..=255u8 {
            check(&[a]);
            for b in 0..=255u8 {
                check(&[a, b]);
                check(&[b'x', a, b]);
            }
        }
        let edges = [
            0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xED,
            0xEF, 0xF0, 0xF4, 0xF5, 0xFF,
        ];
        for &a in &edges {
            for &b in &edges {
                for &c in &edges {
                    check(&[a, b, c]);
                    for &d in &edges {
                        check(&[a, b, c, d]);
                        check(&[a, b, c, d, b'x']);
                    }
                }
            }
        }
        // every code point, encoded, then cut short
        let mut all = Vec::new();
        for c in (0..=0x10_FFFF).filter_map(char::from_u32) {
            let mut buf = [0; 4];
            let s = c.encode_utf8(&mut buf).as_bytes();
            check(s);
            check(&s[..s.len() - 1]);
            all.extend_from_slice(s);
        }
        check(&all);
    }

    #[test]
    fn reader_reads_big_endian_and_stops_at_end() {
        let data = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        let mut r = Reader::new(&data);
        assert_eq!(r.u8(), Some(1));
        assert_eq!(r.u24(), Some(0x02_0304));
        assert_eq!(r.u16(), Some(0x0506));
        assert_eq!(r.u32(), None, "only 3 bytes left");
        assert_eq!(r.remaining(), 3);
        assert_eq!(r.rest(), &[7, 8, 9]);
        assert!(r.is_empty());
        assert_eq!(r.u8(), None);
        assert_eq!(r.bytes(usize::MAX), None);
    }

    #[test]
    fn writer_refuses_without_writing() {
        let mut buf = [0u8; 5];
        let mut w = Writer::new(&mut buf);
        w.u24(0x0A0B0C).unwrap();
        assert_eq!(w.u32(1), Err(BufferTooSmall { required: 7 }));
        assert_eq!(w.written(), 3);
        w.u16(0xFFEE).unwrap();
        assert_eq!(w.as_written(), &[0x0A, 0x0B, 0x0C, 0xFF, 0xEE]);
        assert_eq!(w.u8(0), Err(BufferTooSmall { required: 6 }));
    }

    #[test]
    fn u64_round_trips_big_endian() {
        let mut buf = [0u8; 9];
        let mut w = Writer::new(&mut buf);
        w.u64(0x0102_0304_0506_0708).unwrap();
        assert_eq!(w.u64(1), Err(BufferTooSmall { required: 16 }));
        assert_eq!(w.as_written(), &[1, 2, 3, 4, 5, 6, 7, 8]);
        w.u8(9).unwrap();
        let mut r = Reader::new(&buf);
        assert!(!r.is_empty());
        assert_eq!(r.u64(), Some(0x0102_0304_0506_0708));
        assert!(!r.is_empty(), "one byte left");
        assert_eq!(r.u64(), None, "only 1 byte left");
        assert_eq!((r.position(), r.u8(), r.is_empty()), (8, Some(9), true));
    }
}
