//! Teeworlds 0.6 message packing: variable-length ints, NUL-terminated strings, raw bytes, message ids
//!
//! Every message inside a chunk is a sequence of fields written by DDNet's `CPacker` and read by
//! its `CUnpacker` (`src/engine/shared/packer.cpp`, `compression.cpp`):
//!
//! * **int** (signed 32-bit), 1 to 5 bytes. The first byte is `E S d5..d0`, each further byte
//!   `E d6..d0` (7 more bits, least significant group first); E (0x80) = another byte follows,
//!   S (0x40) = negative, in which case the stored bits are `!v`. The fifth byte only contributes
//!   its low 4 bits. See [`write_int`] / [`Unpacker::int`] for the exact rules on odd input.
//! * **string**: the bytes up to and including a NUL ([`Str`], borrowed on unpack).
//! * **raw**: bytes of a known length, no terminator (UUIDs, SHA-256, map and snapshot data).
//! * **message header**: the first int of a chunk, `id << 1 | system` ([`MsgHeader`]); id 0 is the
//!   DDNet extended form, followed by a 16-byte UUID ([`MsgId::Uuid`]).
//!
//! ```
//! use tether_net::game::packer::{Packer, Unpacker, Str};
//!
//! let mut buf = [0u8; 32];
//! let mut p = Packer::new(&mut buf);
//! p.int(-1924373370).unwrap(); // a CRC32 travels as its i32 value
//! p.str(Str::new("Tutorial")).unwrap();
//! let n = p.written();
//! assert_eq!(&buf[..5], &[0xf9, 0xed, 0x9c, 0xab, 0x0e]);
//!
//! let mut u = Unpacker::new(&buf[..n]);
//! assert_eq!(u.int().unwrap() as u32, 0x8d4c6486);
//! assert_eq!(u.str().unwrap().as_bytes(), b"Tutorial");
//! assert!(u.is_empty());
//! ```

use core::fmt;

use crate::io::BufferTooSmall;

/// Longest encoding of an int
pub const MAX_INT_LEN: usize = 5;
/// Length of a DDNet message UUID
pub const UUID_LEN: usize = 16;

/// Bytes [`write_int`] uses for `v` (1..=5)
#[must_use]
#[inline]
pub const fn int_len(v: i32) -> usize {
    let mut u = (if v < 0 { !v } else { v }) as u32 >> 6;
    let mut n = 1;
    while u != 0 {
        u >>= 7;
        n += 1;
    }
    n
}

/// Encode `v` at the start of `out`; returns the number of bytes written ([`int_len`])
///
/// # Errors
/// [`BufferTooSmall`] (with the exact size) when `out` is shorter; nothing is written.
#[inline]
pub fn write_int(v: i32, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
    let (bytes, n) = encode_int(v);
    let dst = out.get_mut(..n).ok_or(BufferTooSmall { required: n })?;
    dst.copy_from_slice(&bytes[..n]);
    Ok(n)
}

/// The encoding of `v` in a 5-byte array, and its length
#[inline]
const fn encode_int(v: i32) -> ([u8; MAX_INT_LEN], usize) {
    let mut out = [0u8; MAX_INT_LEN];
    let mut u = if v < 0 {
        out[0] = 0x40;
        !v as u32
    } else {
        v as u32
    };
    out[0] |= (u & 0x3F) as u8;
    u >>= 6;
    let mut n = 1;
    while u != 0 {
        out[n - 1] |= 0x80;
        out[n] = (u & 0x7F) as u8;
        u >>= 7;
        n += 1;
    }
    (out, n)
}

/// Decode an int at the start of `buf`; returns the value and the bytes it took
///
/// Follows DDNet 16.4's `CVariableInt::Unpack`: at most 5 bytes are read; the E bit of the fifth
/// byte is ignored (the int ends there) and only its low 4 bits count; the value bits are XORed
/// with `-S`. Overlong forms are accepted (`80 00` is 0, `c0 00` is −1), so every `i32` has one
/// canonical encoding but may be read from several.
///
/// # Errors
/// [`UnpackError::Truncated`] when `buf` is empty or ends while E asks for another byte.
#[inline]
pub fn read_int(buf: &[u8]) -> Result<(i32, usize), UnpackError> {
    let Some(&first) = buf.first() else {
        return Err(UnpackError::Truncated);
    };
    let sign = (first >> 6) & 1;
    let mut v = u32::from(first & 0x3F);
    let mut n = 1;
    let mut prev = first;
    let shifts = [6u32, 13, 20, 27];
    let masks = [0x7Fu8, 0x7F, 0x7F, 0x0F];
    for (shift, mask) in shifts.into_iter().zip(masks) {
        if prev & 0x80 == 0 {
            break;
        }
        let Some(&b) = buf.get(n) else {
            return Err(UnpackError::Truncated);
        };
        v |= u32::from(b & mask) << shift;
        prev = b;
        n += 1;
    }
    let v = v as i32 ^ -(sign as i32);
    Ok((v, n))
}

/// Why a field could not be read
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum UnpackError {
    /// The data ended inside a field (an int with E set on its last byte, raw data cut short)
    Truncated,
    /// A string without its NUL before the end of the data
    MissingNul,
    /// A length field (raw data size) is negative
    NegativeLength(i32),
    /// A message id is negative or ≥ 65536 (the raw header int is given)
    BadMsgId(i32),
}

impl fmt::Display for UnpackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnpackError::Truncated => f.write_str("message truncated"),
            UnpackError::MissingNul => f.write_str("string without NUL terminator"),
            UnpackError::NegativeLength(n) => write!(f, "negative length {n}"),
            UnpackError::BadMsgId(raw) => write!(f, "message id out of range (header {raw})"),
        }
    }
}

impl core::error::Error for UnpackError {}

/// A string field: bytes without NUL (borrowed from the packet on unpack)
///
/// Received strings may be any bytes except NUL, including invalid UTF-8 and control characters.
/// DDNet 16.4 receivers turn control characters (< 0x20) into spaces before using a string, and
/// some fields (player names, clans) also drop leading whitespace: [`Str::to_text`] and
/// [`Str::to_text_trimmed`] give that display form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Str<'a> {
    bytes: &'a [u8],
}

impl<'a> Str<'a> {
    /// The empty string
    pub const EMPTY: Str<'static> = Str { bytes: &[] };

    /// A string to send, cut at its first NUL (a NUL cannot be sent inside a string)
    #[must_use]
    pub fn new(s: &'a str) -> Self {
        Str::from_bytes(s.as_bytes())
    }

    /// A string from raw bytes, cut at the first NUL
    #[must_use]
    pub fn from_bytes(b: &'a [u8]) -> Self {
        let end = b.iter().position(|&x| x == 0).unwrap_or(b.len());
        Str {
            bytes: b.get(..end).unwrap_or(&[]),
        }
    }

    /// A string to send, cut at its first NUL and then to at most `max` bytes on a char boundary
    /// (how DDNet senders limit fields)
    #[must_use]
    pub fn new_limited(s: &'a str, max: usize) -> Self {
        let s = Str::new(s);
        let text = core::str::from_utf8(s.bytes).unwrap_or("");
        let mut end = text.len().min(max);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        Str {
            bytes: s.bytes.get(..end).unwrap_or(&[]),
        }
    }

    /// The bytes, without NUL
    #[must_use]
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The string, when it is valid UTF-8
    #[must_use]
    pub fn as_str(&self) -> Option<&'a str> {
        core::str::from_utf8(self.bytes).ok()
    }

    /// Length in bytes (NUL not counted)
    #[must_use]
    pub const fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True for the empty string
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Bytes on the wire: the string and its NUL
    #[must_use]
    pub const fn wire_len(&self) -> usize {
        self.bytes.len() + 1
    }

    /// Display form: control characters become spaces, invalid UTF-8 becomes U+FFFD, cut on a
    /// char boundary to fit `N` bytes
    #[must_use]
    pub fn to_text<const N: usize>(&self) -> heapless::String<N> {
        sanitize(self.bytes, false)
    }

    /// [`Str::to_text`] without leading whitespace (DDNet's rule for names and clans)
    #[must_use]
    pub fn to_text_trimmed<const N: usize>(&self) -> heapless::String<N> {
        sanitize(self.bytes, true)
    }
}

/// The display form of `bytes` (see [`Str::to_text`])
fn sanitize<const N: usize>(bytes: &[u8], trim_start: bool) -> heapless::String<N> {
    let mut out = heapless::String::new();
    let mut started = !trim_start;
    for chunk in bytes.utf8_chunks() {
        let valid = chunk
            .valid()
            .chars()
            .map(|c| if (c as u32) < 0x20 { ' ' } else { c });
        let invalid = (!chunk.invalid().is_empty()).then_some(char::REPLACEMENT_CHARACTER);
        for c in valid.chain(invalid) {
            if !started && c.is_whitespace() {
                continue;
            }
            started = true;
            if out.push(c).is_err() {
                return out;
            }
        }
    }
    out
}

/// A cursor reading fields out of a message (borrowed)
///
/// Each read either returns the field or an error; after an error the position is unspecified and
/// the message should be dropped (as DDNet drops it).
#[derive(Debug, Clone)]
pub struct Unpacker<'a> {
    buf: &'a [u8],
}

#[cfg(feature = "defmt")]
impl defmt::Format for Unpacker<'_> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "Unpacker {{ remaining: {} }}", self.buf.len());
    }
}

impl<'a> Unpacker<'a> {
    /// A reader over `buf`
    #[must_use]
    pub const fn new(buf: &'a [u8]) -> Self {
        Unpacker { buf }
    }

    /// True when everything was read
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The bytes not read yet
    #[must_use]
    pub const fn rest(&self) -> &'a [u8] {
        self.buf
    }

    /// One int (see [`read_int`])
    ///
    /// # Errors
    /// [`UnpackError::Truncated`].
    #[inline]
    pub fn int(&mut self) -> Result<i32, UnpackError> {
        let (v, n) = read_int(self.buf)?;
        self.buf = self.buf.get(n..).unwrap_or(&[]);
        Ok(v)
    }

    /// One string: the bytes before the next NUL, which is consumed
    ///
    /// # Errors
    /// [`UnpackError::MissingNul`] when no NUL follows.
    #[inline]
    pub fn str(&mut self) -> Result<Str<'a>, UnpackError> {
        let nul = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or(UnpackError::MissingNul)?;
        let (s, rest) = self.buf.split_at(nul);
        self.buf = rest.get(1..).unwrap_or(&[]);
        Ok(Str { bytes: s })
    }

    /// `n` raw bytes
    ///
    /// # Errors
    /// [`UnpackError::Truncated`] when fewer are left.
    #[inline]
    pub fn raw(&mut self, n: usize) -> Result<&'a [u8], UnpackError> {
        if n > self.buf.len() {
            return Err(UnpackError::Truncated);
        }
        let (r, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(r)
    }

    /// `N` raw bytes as an array
    ///
    /// # Errors
    /// [`UnpackError::Truncated`] when fewer are left.
    #[inline]
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], UnpackError> {
        let (a, rest) = self
            .buf
            .split_first_chunk::<N>()
            .ok_or(UnpackError::Truncated)?;
        self.buf = rest;
        Ok(*a)
    }

    /// A size int followed by that many raw bytes (MAP_DATA, snapshot parts)
    ///
    /// # Errors
    /// [`UnpackError::NegativeLength`], [`UnpackError::Truncated`].
    #[inline]
    pub fn sized_raw(&mut self) -> Result<&'a [u8], UnpackError> {
        let n = self.int()?;
        let len = usize::try_from(n).map_err(|_| UnpackError::NegativeLength(n))?;
        self.raw(len)
    }
}

/// A cursor writing fields into a caller's buffer
///
/// Every write either writes the whole field or nothing and reports [`BufferTooSmall`] with the
/// size the buffer would need for that field.
#[derive(Debug)]
pub struct Packer<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

#[cfg(feature = "defmt")]
impl defmt::Format for Packer<'_> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "Packer {{ written: {} }}", self.pos);
    }
}

impl<'b> Packer<'b> {
    /// A packer at the start of `buf`
    #[must_use]
    pub fn new(buf: &'b mut [u8]) -> Self {
        Packer { buf, pos: 0 }
    }

    /// Bytes written so far
    #[must_use]
    pub const fn written(&self) -> usize {
        self.pos
    }

    fn slot(&mut self, n: usize) -> Result<&mut [u8], BufferTooSmall> {
        let end = self.pos + n;
        let pos = self.pos;
        let dst = self
            .buf
            .get_mut(pos..end)
            .ok_or(BufferTooSmall { required: end })?;
        self.pos = end;
        Ok(dst)
    }

    /// One int
    ///
    /// # Errors
    /// [`BufferTooSmall`].
    #[inline]
    pub fn int(&mut self, v: i32) -> Result<(), BufferTooSmall> {
        let (bytes, n) = encode_int(v);
        self.slot(n)?.copy_from_slice(&bytes[..n]);
        Ok(())
    }

    /// One string and its NUL
    ///
    /// # Errors
    /// [`BufferTooSmall`].
    #[inline]
    pub fn str(&mut self, s: Str<'_>) -> Result<(), BufferTooSmall> {
        let n = s.bytes.len();
        let dst = self.slot(n + 1)?;
        dst[..n].copy_from_slice(s.bytes);
        dst[n] = 0;
        Ok(())
    }

    /// Raw bytes
    ///
    /// # Errors
    /// [`BufferTooSmall`].
    #[inline]
    pub fn raw(&mut self, b: &[u8]) -> Result<(), BufferTooSmall> {
        self.slot(b.len())?.copy_from_slice(b);
        Ok(())
    }

    /// A message header
    ///
    /// # Errors
    /// [`BufferTooSmall`].
    #[inline]
    pub fn header(&mut self, h: MsgHeader) -> Result<(), BufferTooSmall> {
        match h.id {
            MsgId::Ordinal(id) => self.int(i32::from(id) << 1 | i32::from(h.system)),
            MsgId::Uuid(uuid) => {
                self.int(i32::from(h.system))?;
                self.raw(&uuid)
            }
        }
    }
}

/// The id of a message: a number, or a DDNet UUID (sent as id 0 followed by the UUID)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum MsgId {
    /// A numbered message, 1..=65535 (0 is reserved for the extended form: a header with
    /// `Ordinal(0)` is written as the int 0 or 1 without a UUID and does not read back)
    Ordinal(u16),
    /// A DDNet extended message identified by its UUID
    Uuid([u8; UUID_LEN]),
}

/// The header int of a message: its id and whether it is a system (engine) message
///
/// Wire form: the int `id << 1 | system`; for [`MsgId::Uuid`] the int is `0 << 1 | system` and
/// the 16 UUID bytes follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MsgHeader {
    /// True for engine (system) messages, false for game messages
    pub system: bool,
    /// The id
    pub id: MsgId,
}

impl MsgHeader {
    /// A numbered system message
    #[must_use]
    pub const fn system(id: u16) -> Self {
        MsgHeader {
            system: true,
            id: MsgId::Ordinal(id),
        }
    }

    /// A numbered game message
    #[must_use]
    pub const fn game(id: u16) -> Self {
        MsgHeader {
            system: false,
            id: MsgId::Ordinal(id),
        }
    }

    /// A DDNet extended message
    #[must_use]
    pub const fn uuid(system: bool, uuid: [u8; UUID_LEN]) -> Self {
        MsgHeader {
            system,
            id: MsgId::Uuid(uuid),
        }
    }

    /// Bytes on the wire
    #[must_use]
    pub const fn buffer_len(&self) -> usize {
        match self.id {
            MsgId::Ordinal(id) => int_len((id as i32) << 1 | self.system as i32),
            MsgId::Uuid(_) => 1 + UUID_LEN,
        }
    }

    /// Read the header at the start of a chunk's data; returns it and the rest (the fields)
    ///
    /// An id of 0 (the extended form) takes the 16 UUID bytes that follow. `Ordinal(0)` is never
    /// returned.
    ///
    /// # Errors
    /// [`UnpackError::Truncated`] (empty data, cut int or UUID), [`UnpackError::BadMsgId`] for a
    /// negative header or an id ≥ 65536 (DDNet 16.4 drops those).
    pub fn parse(data: &[u8]) -> Result<(MsgHeader, &[u8]), UnpackError> {
        let mut u = Unpacker::new(data);
        let raw = u.int()?;
        if raw < 0 {
            return Err(UnpackError::BadMsgId(raw));
        }
        let system = raw & 1 == 1;
        let id = u16::try_from(raw >> 1).map_err(|_| UnpackError::BadMsgId(raw))?;
        let id = if id == 0 {
            MsgId::Uuid(u.array::<UUID_LEN>()?)
        } else {
            MsgId::Ordinal(id)
        };
        Ok((MsgHeader { system, id }, u.rest()))
    }

    /// Write the header; returns the bytes written
    ///
    /// # Errors
    /// [`BufferTooSmall`]; nothing is written.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let len = self.buffer_len();
        if out.len() < len {
            return Err(BufferTooSmall { required: len });
        }
        let mut p = Packer::new(out);
        p.header(*self)?;
        Ok(p.written())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_counts_its_bytes_without_the_nul() {
        let s = Str::new("héllo");
        assert_eq!((s.len(), s.wire_len(), s.is_empty()), (6, 7, false));
        let e = Str::new("");
        assert_eq!((e.len(), e.wire_len(), e.is_empty()), (0, 1, true));
    }

    #[test]
    fn int_vectors() {
        let cases: [(i32, &[u8]); 16] = [
            (0, &[0x00]),
            (1, &[0x01]),
            (63, &[0x3f]),
            (64, &[0x80, 0x01]),
            (-1, &[0x40]),
            (-64, &[0x7f]),
            (-65, &[0xc0, 0x01]),
            (127, &[0xbf, 0x01]),
            (896, &[0x80, 0x0e]),
            (8191, &[0xbf, 0x7f]),
            (8192, &[0x80, 0x80, 0x01]),
            (16040, &[0xa8, 0xfa, 0x01]),
            (i32::MAX, &[0xbf, 0xff, 0xff, 0xff, 0x0f]),
            (i32::MIN, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
            (0x8d4c6486_u32 as i32, &[0xf9, 0xed, 0x9c, 0xab, 0x0e]),
            (-1924373370, &[0xf9, 0xed, 0x9c, 0xab, 0x0e]),
        ];
        for (v, bytes) in cases {
            let mut out = [0u8; 5];
            assert_eq!(write_int(v, &mut out), Ok(bytes.len()), "{v}");
            assert_eq!(&out[..bytes.len()], bytes, "{v}");
            assert_eq!(int_len(v), bytes.len());
            assert_eq!(read_int(bytes), Ok((v, bytes.len())), "{v}");
        }
    }

    #[test]
    fn int_odd_input() {
        // overlong forms are accepted
        assert_eq!(read_int(&[0x80, 0x00]), Ok((0, 2)));
        assert_eq!(read_int(&[0xc0, 0x00]), Ok((-1, 2)));
        assert_eq!(read_int(&[0x80, 0x80, 0x80, 0x80, 0x00]), Ok((0, 5)));
        // the fifth byte: only its low 4 bits count, its E bit does not continue the int
        assert_eq!(
            read_int(&[0xbf, 0xff, 0xff, 0xff, 0xff, 0x33]),
            Ok((i32::MAX, 5))
        );
        assert_eq!(read_int(&[0x80, 0x80, 0x80, 0x80, 0x70]), Ok((0, 5)));
        // truncated
        assert_eq!(read_int(&[]), Err(UnpackError::Truncated));
        assert_eq!(read_int(&[0x80]), Err(UnpackError::Truncated));
        assert_eq!(
            read_int(&[0xff, 0xff, 0xff, 0xff]),
            Err(UnpackError::Truncated)
        );
        // too small an output
        assert_eq!(
            write_int(64, &mut [0u8; 1]),
            Err(BufferTooSmall { required: 2 })
        );
    }

    #[test]
    fn message_headers() {
        let (h, rest) = MsgHeader::parse(&[0x03, 0xAA]).unwrap();
        assert_eq!(h, MsgHeader::system(1));
        assert_eq!(rest, &[0xAA]);
        let (h, _) = MsgHeader::parse(&[0x28]).unwrap();
        assert_eq!(h, MsgHeader::game(20));
        let mut data = [0u8; 17];
        data[0] = 0x01;
        data[1..].copy_from_slice(&[7; 16]);
        let (h, rest) = MsgHeader::parse(&data).unwrap();
        assert_eq!(h, MsgHeader::uuid(true, [7; 16]));
        assert!(rest.is_empty());
        assert_eq!(h.buffer_len(), 17);
        assert_eq!(MsgHeader::parse(&data[..5]), Err(UnpackError::Truncated));
        assert_eq!(MsgHeader::parse(&[0x40]), Err(UnpackError::BadMsgId(-1)));
        assert_eq!(
            MsgHeader::parse(&[0x80, 0x80, 0x10]),
            Err(UnpackError::BadMsgId(131072))
        );
        let mut out = [0u8; 3];
        assert_eq!(MsgHeader::system(19).emit(&mut out), Ok(1));
        assert_eq!(out[0], 0x27);
    }

    #[test]
    fn strings() {
        let mut u = Unpacker::new(b"abc\0\0x");
        assert_eq!(u.str().unwrap().as_bytes(), b"abc");
        assert_eq!(u.str().unwrap(), Str::EMPTY);
        assert_eq!(u.str(), Err(UnpackError::MissingNul));
        assert_eq!(Str::new("a\0b").as_bytes(), b"a");
        assert_eq!(Str::new_limited("héllo", 2).as_bytes(), b"h");
        let s = Str::from_bytes(b"  a\x01b\xff");
        assert_eq!(s.to_text::<16>(), "  a b\u{fffd}");
        assert_eq!(s.to_text_trimmed::<16>(), "a b\u{fffd}");
        assert_eq!(s.to_text::<3>(), "  a");
    }
}
