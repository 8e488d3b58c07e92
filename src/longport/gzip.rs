//! Bounded, allocation-free gzip (RFC 1952) decoder and stored-block encoder for LongPort bodies
//!
//! LongPort marks a compressed body with the gzip bit of the packet header; the body is then one
//! gzip member whose deflate (RFC 1951) stream may use stored, fixed-Huffman and dynamic-Huffman
//! blocks.
//!
//! * [`gunzip`] / [`gunzip_member`] inflate one member into the caller's buffer. The buffer is
//!   also the deflate window, so there is no internal 32 KiB window and nothing is allocated.
//!   Decoded output that would not fit fails at once with [`GzipError::OutputLimit`]: pass a
//!   buffer sized to the largest body you accept and a decompression bomb costs nothing more.
//!   The header (with its optional CRC16), the trailer CRC32 and ISIZE are all checked.
//! * [`gzip_stored`] writes a valid member made of stored (uncompressed) blocks, so a peer without
//!   a compressor can still emit gzip bodies; [`stored_len`] is its exact size.
//! * [`crc32`] is the CRC-32 of RFC 1952 (ISO 3309, reflected polynomial `0xEDB88320`).
//!
//! Work per call is linear in `input.len() + out.len()`: every loop either consumes input bits
//! or produces output bytes, and the Huffman tables (at most about 4 KiB of stack in total) are
//! rebuilt only when a block header supplies new code lengths.
//!
//! ```
//! use tether_net::longport::gzip::{gunzip, gzip_stored, stored_len, GzipError};
//!
//! let body = b"heartbeat";
//! let mut member = [0u8; 64];
//! let n = gzip_stored(body, &mut member).unwrap();
//! assert_eq!(n, stored_len(body.len()));
//!
//! let mut out = [0u8; 16];
//! let len = gunzip(&member[..n], &mut out).unwrap();
//! assert_eq!(&out[..len], body);
//! // A buffer smaller than the body is refused, whatever the member claims.
//! assert_eq!(gunzip(&member[..n], &mut out[..4]), Err(GzipError::OutputLimit { limit: 4 }));
//! ```

use core::fmt;

use crate::io::BufferTooSmall;
use crate::wire::Writer;

/// The two magic bytes every gzip member starts with
pub const MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Compression method "deflate", the only one RFC 1952 defines
pub const CM_DEFLATE: u8 = 8;
/// Length of the fixed part of a gzip header
pub const HEADER_LEN: usize = 10;
/// Length of the gzip trailer (CRC32 then ISIZE, both little-endian)
pub const TRAILER_LEN: usize = 8;
/// Largest payload of one stored deflate block
pub const MAX_STORED_BLOCK: usize = 0xFFFF;

const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const FLG_RESERVED: u8 = 0xE0;

/// Why a gzip member could not be decoded
///
/// On any error, `out` may hold partially decoded bytes; none were written past `out.len()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum GzipError {
    /// The first two bytes are not `1f 8b`
    BadMagic,
    /// The compression method byte is not 8 (deflate)
    UnsupportedMethod,
    /// One of the reserved FLG bits 5..7 is set
    ReservedFlags,
    /// The input ends inside the gzip header (fixed part, FEXTRA, FNAME, FCOMMENT or FHCRC)
    HeaderTruncated,
    /// The FHCRC header checksum does not match the header bytes
    HeaderCrc,
    /// The input ends inside the deflate stream or the trailer
    Truncated,
    /// A deflate block header has the reserved block type 3
    InvalidBlockType,
    /// A stored block's LEN is not the one's complement of its NLEN
    StoredLengthMismatch,
    /// Dynamic-block code lengths are malformed: over-subscribed or incomplete codes, a repeat
    /// with nothing to repeat or running past the declared count, too many literal/length
    /// codes, or no end-of-block code
    InvalidCodeLengths,
    /// A bit pattern that is no code, or a code for a symbol that must not occur
    /// (literal/length 286 and 287, distance 30 and 31)
    InvalidSymbol,
    /// A back-reference points before the start of the output
    DistanceTooFar,
    /// The decoded data does not fit in the output buffer
    OutputLimit {
        /// Size of the caller's output buffer, in bytes
        limit: usize,
    },
    /// The trailer CRC32 differs from the CRC32 of the decoded data
    CrcMismatch {
        /// CRC32 stored in the trailer
        expected: u32,
        /// CRC32 of the decoded data
        actual: u32,
    },
    /// The trailer ISIZE differs from the decoded length (modulo 2^32)
    SizeMismatch {
        /// ISIZE stored in the trailer
        expected: u32,
        /// Decoded length modulo 2^32
        actual: u32,
    },
}

impl fmt::Display for GzipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GzipError::BadMagic => f.write_str("gzip: bad magic bytes"),
            GzipError::UnsupportedMethod => f.write_str("gzip: compression method is not deflate"),
            GzipError::ReservedFlags => f.write_str("gzip: reserved header flags set"),
            GzipError::HeaderTruncated => f.write_str("gzip: truncated header"),
            GzipError::HeaderCrc => f.write_str("gzip: header CRC16 mismatch"),
            GzipError::Truncated => f.write_str("gzip: truncated deflate stream or trailer"),
            GzipError::InvalidBlockType => f.write_str("deflate: invalid block type 3"),
            GzipError::StoredLengthMismatch => {
                f.write_str("deflate: stored block LEN/NLEN mismatch")
            }
            GzipError::InvalidCodeLengths => f.write_str("deflate: invalid Huffman code lengths"),
            GzipError::InvalidSymbol => f.write_str("deflate: invalid Huffman code or symbol"),
            GzipError::DistanceTooFar => {
                f.write_str("deflate: back-reference before start of output")
            }
            GzipError::OutputLimit { limit } => {
                write!(
                    f,
                    "gzip: decoded data exceeds the {limit}-byte output limit"
                )
            }
            GzipError::CrcMismatch { expected, actual } => {
                write!(
                    f,
                    "gzip: CRC32 mismatch (trailer {expected:#010x}, data {actual:#010x})"
                )
            }
            GzipError::SizeMismatch { expected, actual } => {
                write!(
                    f,
                    "gzip: ISIZE mismatch (trailer {expected}, data {actual})"
                )
            }
        }
    }
}

impl core::error::Error for GzipError {}

// ---------------------------------------------------------------------------------------------
// CRC-32

/// Slice-by-8 tables: `CRC_TABLES[0]` is the classic bytewise table; `CRC_TABLES[k][n]` is the
/// CRC of byte `n` followed by `k` zero bytes, so eight table lookups advance the CRC by eight
/// input bytes at once (8 KiB of tables, built at compile time).
const fn crc_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut n = 0;
    while n < 256 {
        let mut c = n as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[0][n] = c;
        n += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut n = 0;
        while n < 256 {
            let prev = t[k - 1][n];
            t[k][n] = (prev >> 8) ^ t[0][(prev & 0xFF) as usize];
            n += 1;
        }
        k += 1;
    }
    t
}

static CRC_TABLES: [[u32; 256]; 8] = crc_tables();

/// CRC-32 of `data` as used by gzip (`crc32(b"123456789") == 0xCBF4_3926`)
#[must_use]
pub fn crc32(data: &[u8]) -> u32 {
    crc32_update(0, data)
}

/// Continue a CRC-32: `crc32_update(crc32(a), b) == crc32(a ++ b)`; start from 0
#[must_use]
pub fn crc32_update(crc: u32, data: &[u8]) -> u32 {
    let t = &CRC_TABLES;
    let mut c = !crc;
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        // chunks_exact(8) only yields 8-byte slices: the default is never taken
        let [b0, b1, b2, b3, b4, b5, b6, b7] = <[u8; 8]>::try_from(chunk).unwrap_or_default();
        let lo = c ^ u32::from_le_bytes([b0, b1, b2, b3]);
        c = t[7][(lo & 0xFF) as usize]
            ^ t[6][((lo >> 8) & 0xFF) as usize]
            ^ t[5][((lo >> 16) & 0xFF) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][usize::from(b4)]
            ^ t[2][usize::from(b5)]
            ^ t[1][usize::from(b6)]
            ^ t[0][usize::from(b7)];
    }
    for &b in chunks.remainder() {
        c = t[0][((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

// ---------------------------------------------------------------------------------------------
// Encoder (stored blocks only)

/// Exact size of the member [`gzip_stored`] writes for `input_len` bytes (saturates at `usize::MAX`)
#[must_use]
pub const fn stored_len(input_len: usize) -> usize {
    let blocks = if input_len == 0 {
        1
    } else {
        input_len.div_ceil(MAX_STORED_BLOCK)
    };
    // 5 bytes per stored block: the block header byte, LEN and NLEN.
    (HEADER_LEN + TRAILER_LEN)
        .saturating_add(blocks.saturating_mul(5))
        .saturating_add(input_len)
}

/// Write `input` as one gzip member of stored deflate blocks into `out`; returns the length
///
/// The header is `1f 8b 08 00`, MTIME 0, XFL 0, OS 255 (unknown); blocks carry at most
/// [`MAX_STORED_BLOCK`] bytes each and an empty input is one empty final block.
///
/// # Errors
/// [`BufferTooSmall`] with the exact [`stored_len`] when `out` is shorter; nothing is written.
pub fn gzip_stored(input: &[u8], out: &mut [u8]) -> Result<usize, BufferTooSmall> {
    let required = stored_len(input.len());
    if out.len() < required {
        return Err(BufferTooSmall { required });
    }
    let mut w = Writer::new(out);
    w.bytes(&[MAGIC[0], MAGIC[1], CM_DEFLATE, 0, 0, 0, 0, 0, 0, 0xFF])?;
    if input.is_empty() {
        w.bytes(&[0x01, 0x00, 0x00, 0xFF, 0xFF])?;
    } else {
        let mut chunks = input.chunks(MAX_STORED_BLOCK).peekable();
        while let Some(chunk) = chunks.next() {
            let bfinal = u8::from(chunks.peek().is_none());
            // chunks() never yields more than MAX_STORED_BLOCK bytes, so this cannot saturate.
            let len = u16::try_from(chunk.len()).unwrap_or(u16::MAX);
            w.u8(bfinal)?;
            w.bytes(&len.to_le_bytes())?;
            w.bytes(&(!len).to_le_bytes())?;
            w.bytes(chunk)?;
        }
    }
    w.bytes(&crc32(input).to_le_bytes())?;
    // ISIZE is the input length modulo 2^32.
    w.bytes(&(input.len() as u32).to_le_bytes())?;
    Ok(w.written())
}

// ---------------------------------------------------------------------------------------------
// Decoder

/// Inflate the first gzip member of `input` into `out`; returns the decoded length
///
/// Bytes after the member (another member, padding) are ignored; use [`gunzip_member`] to see
/// how many bytes the member took.
///
/// # Errors
/// See [`GzipError`]; [`GzipError::OutputLimit`] when the data does not fit in `out`.
pub fn gunzip(input: &[u8], out: &mut [u8]) -> Result<usize, GzipError> {
    gunzip_member(input, out).map(|(written, _)| written)
}

/// Inflate the first gzip member of `input` into `out`; returns `(decoded, consumed)`
///
/// `consumed` is the member's length including its trailer; `input[consumed..]` is whatever
/// follows it.
///
/// # Errors
/// See [`GzipError`]; [`GzipError::OutputLimit`] when the data does not fit in `out`.
pub fn gunzip_member(input: &[u8], out: &mut [u8]) -> Result<(usize, usize), GzipError> {
    let start = parse_header(input)?;
    let body = input.get(start..).ok_or(GzipError::HeaderTruncated)?;
    let (written, used) = inflate(body, out)?;
    let trailer_at = start.saturating_add(used);
    let trailer = input
        .get(trailer_at..trailer_at.saturating_add(TRAILER_LEN))
        .ok_or(GzipError::Truncated)?;
    let expected_crc = le32(trailer.get(..4));
    let expected_size = le32(trailer.get(4..));
    let actual_crc = crc32(out.get(..written).unwrap_or_default());
    if expected_crc != actual_crc {
        return Err(GzipError::CrcMismatch {
            expected: expected_crc,
            actual: actual_crc,
        });
    }
    // ISIZE is the decoded length modulo 2^32.
    let actual_size = written as u32;
    if expected_size != actual_size {
        return Err(GzipError::SizeMismatch {
            expected: expected_size,
            actual: actual_size,
        });
    }
    Ok((written, trailer_at + TRAILER_LEN))
}

fn le32(b: Option<&[u8]>) -> u32 {
    match b {
        Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]),
        _ => 0,
    }
}

/// Check the gzip header and return the offset of the deflate stream
fn parse_header(input: &[u8]) -> Result<usize, GzipError> {
    let byte = |i: usize| input.get(i).copied().ok_or(GzipError::HeaderTruncated);
    if byte(0)? != MAGIC[0] || byte(1)? != MAGIC[1] {
        return Err(GzipError::BadMagic);
    }
    if byte(2)? != CM_DEFLATE {
        return Err(GzipError::UnsupportedMethod);
    }
    let flg = byte(3)?;
    if flg & FLG_RESERVED != 0 {
        return Err(GzipError::ReservedFlags);
    }
    if input.len() < HEADER_LEN {
        return Err(GzipError::HeaderTruncated);
    }
    let mut pos = HEADER_LEN;
    if flg & FEXTRA != 0 {
        let xlen = usize::from(u16::from_le_bytes([byte(pos)?, byte(pos + 1)?]));
        pos += 2 + xlen;
        if pos > input.len() {
            return Err(GzipError::HeaderTruncated);
        }
    }
    for flag in [FNAME, FCOMMENT] {
        if flg & flag != 0 {
            let rest = input.get(pos..).unwrap_or_default();
            let nul = rest
                .iter()
                .position(|&b| b == 0)
                .ok_or(GzipError::HeaderTruncated)?;
            pos += nul + 1;
        }
    }
    if flg & FHCRC != 0 {
        let stored = u16::from_le_bytes([byte(pos)?, byte(pos + 1)?]);
        let actual = crc32(input.get(..pos).unwrap_or_default()) as u16;
        if stored != actual {
            return Err(GzipError::HeaderCrc);
        }
        pos += 2;
    }
    Ok(pos)
}

/// LSB-first bit reader over the deflate stream
struct Bits<'a> {
    input: &'a [u8],
    /// Next byte of `input` not yet loaded into `buf`
    pos: usize,
    buf: u64,
    /// Valid bits in `buf`
    cnt: u32,
}

impl<'a> Bits<'a> {
    fn new(input: &'a [u8]) -> Self {
        Bits {
            input,
            pos: 0,
            buf: 0,
            cnt: 0,
        }
    }

    fn refill(&mut self) {
        while self.cnt <= 56 {
            let Some(&b) = self.input.get(self.pos) else {
                break;
            };
            self.buf |= u64::from(b) << self.cnt;
            self.cnt += 8;
            self.pos += 1;
        }
    }

    /// The next `n` (at most 16) bits as an integer, first bit least significant
    fn bits(&mut self, n: u32) -> Result<u32, GzipError> {
        if self.cnt < n {
            self.refill();
            if self.cnt < n {
                return Err(GzipError::Truncated);
            }
        }
        let v = (self.buf & ((1u64 << n) - 1)) as u32;
        self.consume(n);
        Ok(v)
    }

    fn consume(&mut self, n: u32) {
        self.buf >>= n;
        self.cnt -= n;
    }

    /// Skip to the next byte boundary and give back whole bytes still in the bit buffer
    fn align(&mut self) {
        let whole = (self.cnt / 8) as usize;
        self.pos = self.pos.saturating_sub(whole);
        self.buf = 0;
        self.cnt = 0;
    }

    /// The next `n` bytes; only call when aligned
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let bytes = self.input.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(bytes)
    }
}

const MAX_BITS: usize = 15;

/// Canonical Huffman decoder for an alphabet of `N` symbols with a `F`-entry direct lookup table
/// (`F` a power of two) for codes of at most `log2(F)` bits
struct Huffman<const N: usize, const F: usize> {
    /// Number of codes of each length (index 0 unused)
    counts: [u16; MAX_BITS + 1],
    /// Symbols ordered by code (length, then symbol value)
    symbols: [u16; N],
    /// Indexed by the next `log2(F)` stream bits: `symbol << 4 | length`, or 0 for "longer code
    /// or no code"
    fast: [u16; F],
}

impl<const N: usize, const F: usize> Huffman<N, F> {
    const FAST_BITS: u32 = F.trailing_zeros();

    const fn new() -> Self {
        Huffman {
            counts: [0; MAX_BITS + 1],
            symbols: [0; N],
            fast: [0; F],
        }
    }

    /// Build from code lengths (`lengths.len() <= N`, each at most 15)
    ///
    /// Over-subscribed sets are always rejected. Incomplete sets are rejected unless
    /// `allow_sparse`, which admits only the two forms RFC 1951 gives for distance codes: no code
    /// at all, or a single code of length 1.
    fn build(&mut self, lengths: &[u8], allow_sparse: bool) -> Result<(), GzipError> {
        if lengths.len() > N {
            return Err(GzipError::InvalidCodeLengths);
        }
        self.counts = [0; MAX_BITS + 1];
        for &len in lengths {
            let slot = self
                .counts
                .get_mut(usize::from(len))
                .ok_or(GzipError::InvalidCodeLengths)?;
            *slot += 1;
        }
        self.counts[0] = 0;

        // Kraft sum: `left` is the number of unused codes of the current length.
        let mut left: i32 = 1;
        let mut used: u16 = 0;
        for &count in &self.counts[1..] {
            left = (left << 1) - i32::from(count);
            if left < 0 {
                return Err(GzipError::InvalidCodeLengths);
            }
            used += count;
        }
        if left > 0 && !(allow_sparse && (used == 0 || (used == 1 && self.counts[1] == 1))) {
            return Err(GzipError::InvalidCodeLengths);
        }

        // Sort symbols by code: offsets of each length's first symbol, then a stable pass.
        let mut offs = [0u16; MAX_BITS + 1];
        for len in 1..MAX_BITS {
            offs[len + 1] = offs[len] + self.counts[len];
        }
        // First canonical code of each length (RFC 1951 section 3.2.2).
        let mut next = [0u32; MAX_BITS + 1];
        let mut code = 0u32;
        for (slot, &shorter) in next[1..].iter_mut().zip(&self.counts) {
            code = (code + u32::from(shorter)) << 1;
            *slot = code;
        }

        self.fast = [0; F];
        for (sym, &len) in lengths.iter().enumerate() {
            if len == 0 {
                continue;
            }
            let len = usize::from(len);
            // `sym < N <= 288` fits in 12 bits, leaving 4 for the length.
            let sym = sym as u16;
            if let Some(slot) = self.symbols.get_mut(usize::from(offs[len])) {
                *slot = sym;
            }
            offs[len] += 1;
            let code = next[len];
            next[len] += 1;
            if len as u32 <= Self::FAST_BITS {
                // Codes are sent most significant bit first; the table is indexed LSB-first.
                let mut i = (code.reverse_bits() >> (32 - len)) as usize;
                while let Some(slot) = self.fast.get_mut(i) {
                    *slot = (sym << 4) | len as u16;
                    i += 1 << len;
                }
            }
        }
        Ok(())
    }

    /// Decode one symbol
    fn decode(&self, bits: &mut Bits<'_>) -> Result<u16, GzipError> {
        if bits.cnt < MAX_BITS as u32 {
            bits.refill();
        }
        let entry = self
            .fast
            .get((bits.buf as usize) & (F - 1))
            .copied()
            .unwrap_or(0);
        if entry != 0 {
            let len = u32::from(entry & 0xF);
            if len > bits.cnt {
                return Err(GzipError::Truncated);
            }
            bits.consume(len);
            return Ok(entry >> 4);
        }
        // Slow path, one bit at a time: `code` is the code read so far, `first` the first code
        // of this length and `index` the position of its symbol in `symbols`.
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for len in 1..=MAX_BITS as u32 {
            if len > bits.cnt {
                return Err(GzipError::Truncated);
            }
            code |= ((bits.buf >> (len - 1)) & 1) as i32;
            let count = i32::from(self.counts[len as usize]);
            if code - first < count {
                bits.consume(len);
                let at = (index + code - first) as usize;
                return self
                    .symbols
                    .get(at)
                    .copied()
                    .ok_or(GzipError::InvalidSymbol);
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        Err(GzipError::InvalidSymbol)
    }
}

type LitTable = Huffman<288, 512>;
type DistTable = Huffman<32, 512>;
type CodeLenTable = Huffman<19, 128>;

/// Base length of length symbols 257..=285
const LEN_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
/// Extra bits of length symbols 257..=285
const LEN_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
/// Base distance of distance symbols 0..=29
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
/// Extra bits of distance symbols 0..=29
const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

/// Order in which code-length code lengths are sent
const CODE_LEN_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// Inflate a raw deflate stream; returns `(decoded, consumed input bytes)`
fn inflate(input: &[u8], out: &mut [u8]) -> Result<(usize, usize), GzipError> {
    let mut bits = Bits::new(input);
    let mut lit = LitTable::new();
    let mut dist = DistTable::new();
    // Whether `lit`/`dist` hold the fixed codes, so runs of fixed blocks build them once.
    let mut fixed_loaded = false;
    let mut written = 0usize;
    loop {
        let header = bits.bits(3)?;
        match header >> 1 {
            0 => stored_block(&mut bits, out, &mut written)?,
            1 => {
                if !fixed_loaded {
                    load_fixed(&mut lit, &mut dist)?;
                    fixed_loaded = true;
                }
                huffman_block(&mut bits, out, &mut written, &lit, &dist)?;
            }
            2 => {
                fixed_loaded = false;
                load_dynamic(&mut bits, &mut lit, &mut dist)?;
                huffman_block(&mut bits, out, &mut written, &lit, &dist)?;
            }
            _ => return Err(GzipError::InvalidBlockType),
        }
        if header & 1 == 1 {
            break;
        }
    }
    bits.align();
    Ok((written, bits.pos))
}

fn stored_block(bits: &mut Bits<'_>, out: &mut [u8], written: &mut usize) -> Result<(), GzipError> {
    bits.align();
    let Some(&[l0, l1, n0, n1]) = bits.take(4) else {
        return Err(GzipError::Truncated);
    };
    let len = u16::from_le_bytes([l0, l1]);
    if len != !u16::from_le_bytes([n0, n1]) {
        return Err(GzipError::StoredLengthMismatch);
    }
    let len = usize::from(len);
    let limit = out.len();
    let dst = out
        .get_mut(*written..*written + len)
        .ok_or(GzipError::OutputLimit { limit })?;
    dst.copy_from_slice(bits.take(len).ok_or(GzipError::Truncated)?);
    *written += len;
    Ok(())
}

fn load_fixed(lit: &mut LitTable, dist: &mut DistTable) -> Result<(), GzipError> {
    let mut lengths = [8u8; 288];
    lengths[144..256].fill(9);
    lengths[256..280].fill(7);
    lit.build(&lengths, false)?;
    dist.build(&[5; 32], false)
}

fn load_dynamic(
    bits: &mut Bits<'_>,
    lit: &mut LitTable,
    dist: &mut DistTable,
) -> Result<(), GzipError> {
    let hlit = bits.bits(5)? as usize + 257;
    let hdist = bits.bits(5)? as usize + 1;
    let hclen = bits.bits(4)? as usize + 4;
    if hlit > 286 {
        return Err(GzipError::InvalidCodeLengths);
    }
    let mut cl_lengths = [0u8; 19];
    for &sym in CODE_LEN_ORDER.iter().take(hclen) {
        cl_lengths[sym] = bits.bits(3)? as u8;
    }
    let mut cl = CodeLenTable::new();
    cl.build(&cl_lengths, false)?;

    // Literal/length and distance code lengths form one sequence; repeats may cross between them.
    let mut lengths = [0u8; 286 + 32];
    let total = hlit + hdist;
    let mut i = 0;
    while i < total {
        let (value, repeat) = match cl.decode(bits)? {
            sym @ 0..=15 => (sym as u8, 1),
            16 => {
                let prev = i
                    .checked_sub(1)
                    .and_then(|p| lengths.get(p).copied())
                    .ok_or(GzipError::InvalidCodeLengths)?;
                (prev, 3 + bits.bits(2)? as usize)
            }
            17 => (0, 3 + bits.bits(3)? as usize),
            18 => (0, 11 + bits.bits(7)? as usize),
            _ => return Err(GzipError::InvalidSymbol),
        };
        let run = lengths
            .get_mut(i..i + repeat)
            .filter(|_| i + repeat <= total);
        run.ok_or(GzipError::InvalidCodeLengths)?.fill(value);
        i += repeat;
    }
    if lengths[256] == 0 {
        return Err(GzipError::InvalidCodeLengths);
    }
    lit.build(&lengths[..hlit], false)?;
    dist.build(&lengths[hlit..total], true)
}

/// `base[index]` plus the extra bits that follow the symbol; [`GzipError::InvalidSymbol`] for
/// symbols outside the tables (literal/length 286, 287 and distance 30, 31)
fn base_plus_extra(
    bits: &mut Bits<'_>,
    index: usize,
    base: &[u16],
    extra: &[u8],
) -> Result<usize, GzipError> {
    let (Some(&base), Some(&extra)) = (base.get(index), extra.get(index)) else {
        return Err(GzipError::InvalidSymbol);
    };
    Ok(usize::from(base) + bits.bits(u32::from(extra))? as usize)
}

fn huffman_block(
    bits: &mut Bits<'_>,
    out: &mut [u8],
    written: &mut usize,
    lit: &LitTable,
    dist: &DistTable,
) -> Result<(), GzipError> {
    let limit = out.len();
    loop {
        let sym = lit.decode(bits)?;
        if sym < 256 {
            let slot = out
                .get_mut(*written)
                .ok_or(GzipError::OutputLimit { limit })?;
            *slot = sym as u8;
            *written += 1;
            continue;
        }
        if sym == 256 {
            return Ok(());
        }
        let len = base_plus_extra(bits, usize::from(sym - 257), &LEN_BASE, &LEN_EXTRA)?;
        let dsym = usize::from(dist.decode(bits)?);
        let distance = base_plus_extra(bits, dsym, &DIST_BASE, &DIST_EXTRA)?;
        if distance > *written {
            return Err(GzipError::DistanceTooFar);
        }
        if len > limit - *written {
            return Err(GzipError::OutputLimit { limit });
        }
        // Copy in pieces of at most `distance` bytes so that source and destination never
        // overlap; a short distance repeats the pattern, as deflate requires.
        let mut from = *written - distance;
        let mut to = *written;
        let end = *written + len;
        while to < end {
            let n = distance.min(end - to);
            out.copy_within(from..from + n, to);
            from += n;
            to += n;
        }
        *written = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32_update(crc32(b"1234"), b"56789"), 0xCBF4_3926);
    }

    #[test]
    fn crc32_slice_by_8_matches_bytewise() {
        fn bytewise(crc: u32, data: &[u8]) -> u32 {
            let mut c = !crc;
            for &b in data {
                c = CRC_TABLES[0][((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
            }
            !c
        }
        let mut data = [0u8; 97];
        let mut x: u32 = 0x1234_5678;
        for b in data.iter_mut() {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            *b = (x >> 24) as u8;
        }
        for len in 0..data.len() {
            for split in 0..=len {
                let (a, b) = data[..len].split_at(split);
                assert_eq!(crc32_update(crc32(a), b), bytewise(0, &data[..len]));
            }
        }
    }

    #[test]
    fn huffman_rejects_over_subscribed_and_incomplete() {
        let mut h = Huffman::<19, 128>::new();
        assert_eq!(
            h.build(&[1, 1, 1], false),
            Err(GzipError::InvalidCodeLengths)
        );
        assert_eq!(h.build(&[1, 2], false), Err(GzipError::InvalidCodeLengths));
        assert_eq!(h.build(&[1], false), Err(GzipError::InvalidCodeLengths));
        assert_eq!(h.build(&[1], true), Ok(()));
        assert_eq!(h.build(&[0, 0], true), Ok(()));
        assert_eq!(
            h.build(&[2, 0, 2], true),
            Err(GzipError::InvalidCodeLengths)
        );
        assert_eq!(h.build(&[1, 2, 2], false), Ok(()));
    }

    /// Code lengths 1, 2, ..., 14, 15, 15: a complete code whose longest codes exceed the table
    fn long_code() -> Huffman<16, 128> {
        let mut lengths = [0u8; 16];
        for (i, l) in lengths.iter_mut().enumerate() {
            *l = (i as u8 + 1).min(15);
        }
        let mut h = Huffman::<16, 128>::new();
        h.build(&lengths, false).unwrap();
        h
    }

    #[test]
    fn huffman_decodes_long_codes_through_slow_path() {
        // Lengths 1, 2, ..., 14, 15, 15: a complete code whose longest codes exceed the table.
        let h = long_code();
        // Symbol 15 has code 111111111111111 (15 ones), symbol 14 has 111111111111110.
        let stream = [0xFF, 0xFF, 0xFF, 0x1F];
        let mut bits = Bits::new(&stream);
        assert_eq!(h.decode(&mut bits), Ok(15));
        assert_eq!(h.decode(&mut bits), Ok(14));
        assert_eq!(bits.cnt, 2);
        // Symbol 0 (code 0) then symbol 1 (code 10): stream bits 0, 1, 0.
        let mut bits = Bits::new(&[0b010]);
        assert_eq!(h.decode(&mut bits), Ok(0));
        assert_eq!(h.decode(&mut bits), Ok(1));
    }

    #[test]
    fn a_code_that_ends_exactly_at_the_end_of_the_input_is_decoded() {
        let h = long_code();
        // table path: eight 1-bit codes (symbol 0) fill one byte exactly
        let mut bits = Bits::new(&[0x00]);
        for _ in 0..8 {
            assert_eq!(h.decode(&mut bits), Ok(0));
        }
        assert_eq!(h.decode(&mut bits), Err(GzipError::Truncated));
        // bit-by-bit path: symbol 0 (code 0), then symbol 14 (fourteen 1s and a 0, 15 bits):
        // 16 bits, two bytes exactly
        let mut bits = Bits::new(&[0xFE, 0x7F]);
        assert_eq!(h.decode(&mut bits), Ok(0));
        assert_eq!(h.decode(&mut bits), Ok(14));
        assert_eq!(h.decode(&mut bits), Err(GzipError::Truncated));
    }

    #[test]
    fn the_bit_reader_hands_out_the_last_bits_of_its_input_exactly() {
        // 16 bits of input: 3 + 13 are all there is, one bit more is missing
        let mut bits = Bits::new(&[0b1010_1101, 0b0101_0011]);
        assert_eq!(bits.bits(3), Ok(0b101));
        assert_eq!(bits.bits(13), Ok(0b0_1010_0111_0101));
        assert_eq!(bits.bits(1), Err(GzipError::Truncated));
        let mut bits = Bits::new(&[0xAB, 0xCD]);
        assert_eq!(bits.bits(16), Ok(0xCDAB));
    }
}
