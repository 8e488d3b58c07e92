//! Teeworlds 0.6 Huffman compression of packet payloads (fixed frequency table)
//!
//! Every Teeworlds 0.6 / DDNet peer compresses the payload of a chunk packet (everything after the
//! 3-byte header, the security token included) with one fixed Huffman code when that makes it
//! strictly shorter, and sets the header flag 0x80. The code is built from a fixed table of byte
//! frequencies ([`FREQUENCIES`]) plus an end-of-stream symbol ([`EOF`]) of frequency 1, exactly as
//! DDNet's `src/engine/shared/huffman.cpp` builds it, so both sides agree bit for bit.
//!
//! * [`compress`] / [`Encoder`]: the DDNet 16.4 (and Teeworlds 0.6.4) encoder form: the symbol
//!   codes, then EOF, then the 0–7 leftover bits in one final byte — a `00` byte when the stream
//!   already ended on a byte boundary. Output length = [`compressed_len`].
//! * [`decompress`]: stops at EOF and ignores whatever follows, so it accepts the 16.4 form and the
//!   form of newer DDNet versions that leave out the final zero byte. Input that ends before EOF is
//!   [`DecompressError::Truncated`]; output that does not fit is [`DecompressError::OutputFull`]
//!   (a tiny stream can claim an endless run of `0x80`, the all-zero-bits path, so the output
//!   buffer is the only bound — give it the protocol's limit, [`MAX_DECOMPRESSED_LEN`]).
//!
//! # The code
//!
//! The tree is built once, at compile time, by `const fn`s from [`FREQUENCIES`]:
//!
//! 1. a work list holds the 257 leaves (bytes 0–255, then EOF) in symbol order;
//! 2. until one entry is left: the list is stable-sorted by frequency, highest first; the last
//!    entry L (lowest) and the one before it S are merged into a new node (bit 0 leads to L, bit 1
//!    to S), which takes S's place in the list with frequency L + S, and L is removed;
//! 3. a symbol's code is the sequence of bit choices from the root (node 512) to its leaf.
//!
//! Codes are 1 to 15 bits long (byte `00` has the 1-bit code `1`, EOF the 15 bits
//! `010100011101100`). Bits are packed least significant bit first: the first choice of a code goes
//! to the lowest free bit of the current byte.
//!
//! # Speed
//!
//! The decoder reads 12 bits at a time (9 on targets with pointers narrower than 64 bits) and
//! looks them up in two tables built at compile time (4,096 × (8 + 2) bytes = 40 KiB; 5 KiB with
//! 9 bits) that yield up to eight whole symbols per lookup; longer codes finish bit by bit. Four
//! lookups share one refill of a 64-bit bit buffer, and each stores 8 bytes at once. The encoder
//! looks up one packed code word per byte and writes the output four bytes at a time.
//!
//! For flash-constrained targets the cargo feature `small-huffman` replaces the table-driven
//! decoder by a bit-by-bit walk of the tree (the tree's 1 KiB instead of the 5 KiB of tables;
//! same results, several times slower); the encoder and its 1 KiB code table stay.
//!
//! ```
//! use tether_net::game::huffman::{compress, compressed_len, decompress};
//!
//! let data = [0x00, 0x01, 0x00, 0x02, 0x00, 0x80, 0x00];
//! let mut packed = [0u8; 16];
//! let n = compress(&data, &mut packed).unwrap();
//! assert_eq!(&packed[..n], &[0xb1, 0x08, 0x2a, 0x6e, 0x00]); // DDNet 16.4 form
//! assert_eq!(n, compressed_len(&data));
//!
//! let mut out = [0u8; 1394];
//! let m = decompress(&packed[..n], &mut out).unwrap();
//! assert_eq!(&out[..m], &data);
//!
//! // `00` + EOF is 16 bits: DDNet 16.4 adds a zero byte, newer versions do not; both decode
//! assert_eq!(compress(&[0x00], &mut packed), Ok(3));
//! assert_eq!(&packed[..3], &[0x15, 0x37, 0x00]);
//! assert_eq!(decompress(&packed[..3], &mut out), Ok(1));
//! assert_eq!(decompress(&packed[..2], &mut out), Ok(1));
//! ```

use core::fmt;

/// Largest decompressed payload a 0.6 peer accepts (`NET_MAX_PAYLOAD`: chunks and token)
pub const MAX_DECOMPRESSED_LEN: usize = 1394;

/// The end-of-stream symbol (after the 256 byte values)
pub const EOF: u16 = 256;

/// Number of symbols: 256 byte values and [`EOF`]
const SYMBOLS: usize = 257;
/// Number of internal nodes of the tree (ids 257..=512)
const INTERNAL: usize = SYMBOLS - 1;
/// Id of the root node
const ROOT: u16 = 512;
/// Length of the longest code (checked at compile time)
pub const MAX_CODE_LEN: u32 = 15;

/// The fixed frequency table of the 256 byte values (Teeworlds 0.6 / DDNet `gs_aFreqTable`)
///
/// The C++ arrays carry a 257th value for EOF (1517 in 0.6.4 and DDNet 16.4, 1 in newer DDNet),
/// but every version builds the tree with an EOF frequency of 1.
#[rustfmt::skip]
pub const FREQUENCIES: [u32; 256] = [
    1 << 30, 4545, 2657, 431, 1950, 919, 444, 482, 2244, 617, 838, 542, 715, 1814, 304, 240, 754, 212, 647, 186,
    283, 131, 146, 166, 543, 164, 167, 136, 179, 859, 363, 113, 157, 154, 204, 108, 137, 180, 202, 176,
    872, 404, 168, 134, 151, 111, 113, 109, 120, 126, 129, 100, 41, 20, 16, 22, 18, 18, 17, 19,
    16, 37, 13, 21, 362, 166, 99, 78, 95, 88, 81, 70, 83, 284, 91, 187, 77, 68, 52, 68,
    59, 66, 61, 638, 71, 157, 50, 46, 69, 43, 11, 24, 13, 19, 10, 12, 12, 20, 14, 9,
    20, 20, 10, 10, 15, 15, 12, 12, 7, 19, 15, 14, 13, 18, 35, 19, 17, 14, 8, 5,
    15, 17, 9, 15, 14, 18, 8, 10, 2173, 134, 157, 68, 188, 60, 170, 60, 194, 62, 175, 71,
    148, 67, 167, 78, 211, 67, 156, 69, 1674, 90, 174, 53, 147, 89, 181, 51, 174, 63, 163, 80,
    167, 94, 128, 122, 223, 153, 218, 77, 200, 110, 190, 73, 174, 69, 145, 66, 277, 143, 141, 60,
    136, 53, 180, 57, 142, 57, 158, 61, 166, 112, 152, 92, 26, 22, 21, 28, 20, 26, 30, 21,
    32, 27, 20, 17, 23, 21, 30, 22, 22, 21, 27, 25, 17, 27, 23, 18, 39, 26, 15, 21,
    12, 18, 18, 27, 20, 18, 15, 19, 11, 17, 33, 12, 18, 15, 19, 18, 16, 26, 17, 18,
    9, 10, 25, 22, 22, 17, 20, 16, 6, 16, 15, 20, 14, 18, 24, 335,
];

/// The children of the internal nodes 257..=512: `[child for bit 0, child for bit 1]`
const TREE: [[u16; 2]; INTERNAL] = build_tree();

/// Per symbol: the code bits (first choice in bit 0) in bits 0..16 and the length in bits 16..24
static CODES: [u32; SYMBOLS] = build_codes();

/// Bits the decoder looks up at once: 12 (40 KiB of tables) on 64-bit targets, 9 (5 KiB) on
/// smaller ones, where flash is scarce and the 64-bit arithmetic of the fast path is slow anyway
#[cfg(not(feature = "small-huffman"))]
const LOOKUP_BITS: u32 = if cfg!(target_pointer_width = "64") {
    12
} else {
    9
};
#[cfg(not(feature = "small-huffman"))]
const _: () = assert!(3 * LOOKUP_BITS + MAX_CODE_LEN <= 56 && 4 * LOOKUP_BITS <= 56);
#[cfg(not(feature = "small-huffman"))]
const LOOKUP_MASK: u64 = (1 << LOOKUP_BITS) - 1;
/// Most whole symbols one table entry holds
#[cfg(not(feature = "small-huffman"))]
const MAX_RUN: u32 = 8;

// Two tables share the lookup index: SYMS (u64) holds up to 8 decoded bytes, first in the lowest
// byte (LONG entries: the node reached), META (u16) says what they mean:
//   bits 0..6    bits consumed by the bytes (and EOF, when META_EOF is set): the low 6 bits, so
//                `buf >> meta` shifts by exactly that much
//   bits 8..12   number of bytes (0..=8)
//   bit 12       META_EOF: EOF follows the bytes within the lookup bits
//   LONG entries (no symbol ends within the lookup bits) have count 0 and no EOF
#[cfg(not(feature = "small-huffman"))]
const META_COUNT_SHIFT: u32 = 8;
#[cfg(not(feature = "small-huffman"))]
const META_EOF: u16 = 1 << 12;

/// The multi-symbol decode tables, indexed by the next [`LOOKUP_BITS`] input bits (first bit in
/// bit 0)
#[cfg(not(feature = "small-huffman"))]
const DECODE: ([u64; 1 << LOOKUP_BITS], [u16; 1 << LOOKUP_BITS]) = build_decode();
#[cfg(not(feature = "small-huffman"))]
static SYMS: [u64; 1 << LOOKUP_BITS] = DECODE.0;
#[cfg(not(feature = "small-huffman"))]
static META: [u16; 1 << LOOKUP_BITS] = DECODE.1;

/// Build the tree from [`FREQUENCIES`] (EOF frequency 1) with DDNet's tie-breaking
const fn build_tree() -> [[u16; 2]; INTERNAL] {
    let mut ids = [0u16; SYMBOLS];
    let mut freqs = [0u32; SYMBOLS];
    let mut i = 0;
    while i < SYMBOLS {
        ids[i] = i as u16;
        freqs[i] = if i < 256 { FREQUENCIES[i] } else { 1 };
        i += 1;
    }
    // Stable sort, highest frequency first (insertion sort: equal keys keep their order).
    let mut i = 1;
    while i < SYMBOLS {
        insert_left(&mut ids, &mut freqs, i);
        i += 1;
    }
    let mut tree = [[0u16; 2]; INTERNAL];
    let mut n = SYMBOLS;
    let mut next = SYMBOLS as u16;
    while n > 1 {
        let low = n - 1;
        let second = n - 2;
        tree[(next as usize) - SYMBOLS] = [ids[low], ids[second]];
        ids[second] = next;
        freqs[second] += freqs[low];
        n -= 1;
        // The list before the merge was sorted; only the merged entry (now last) can be out of
        // place, and a stable sort moves it left past every entry of strictly lower frequency.
        insert_left(&mut ids, &mut freqs, n - 1);
        next += 1;
    }
    assert!(next == ROOT + 1);
    tree
}

/// Move entry `i` left past every entry with a strictly lower frequency (one insertion step)
const fn insert_left(ids: &mut [u16; SYMBOLS], freqs: &mut [u32; SYMBOLS], i: usize) {
    let id = ids[i];
    let f = freqs[i];
    let mut j = i;
    while j > 0 && freqs[j - 1] < f {
        ids[j] = ids[j - 1];
        freqs[j] = freqs[j - 1];
        j -= 1;
    }
    ids[j] = id;
    freqs[j] = f;
}

/// The child of internal node `node` for `bit`
const fn child(node: u16, bit: u64) -> u16 {
    TREE[(node as usize) - SYMBOLS][(bit & 1) as usize]
}

/// Walk the tree from the root and record every leaf's code
const fn build_codes() -> [u32; SYMBOLS] {
    let mut codes = [0u32; SYMBOLS];
    // explicit stack of (node, code, length); depth-first, at most 16 levels × 1 pending sibling
    let mut stack = [(0u16, 0u32, 0u32); 64];
    let mut sp = 1;
    stack[0] = (ROOT, 0, 0);
    let mut kraft: u64 = 0; // sum of 2^(15 - len): exactly 2^15 for a complete code
    while sp > 0 {
        sp -= 1;
        let (node, code, len) = stack[sp];
        if (node as usize) < SYMBOLS {
            assert!(len >= 1 && len <= MAX_CODE_LEN);
            codes[node as usize] = code | (len << 16);
            kraft += 1 << (MAX_CODE_LEN - len);
        } else {
            stack[sp] = (child(node, 0), code, len + 1);
            stack[sp + 1] = (child(node, 1), code | (1 << len), len + 1);
            sp += 2;
        }
    }
    assert!(kraft == 1 << MAX_CODE_LEN);
    codes
}

/// Build the multi-symbol decode tables
#[cfg(not(feature = "small-huffman"))]
const fn build_decode() -> ([u64; 1 << LOOKUP_BITS], [u16; 1 << LOOKUP_BITS]) {
    let mut syms_table = [0u64; 1 << LOOKUP_BITS];
    let mut meta_table = [0u16; 1 << LOOKUP_BITS];
    let mut index = 0;
    while index < (1 << LOOKUP_BITS) {
        let bits = index as u64;
        let mut pos = 0u32; // bits walked
        let mut used = 0u32; // bits of the completed symbols
        let mut count = 0u32;
        let mut syms = 0u64;
        let mut node = ROOT;
        let mut eof = false;
        while !eof && count < MAX_RUN && pos < LOOKUP_BITS {
            node = child(node, bits >> pos);
            pos += 1;
            if node == EOF {
                eof = true;
                used = pos;
            } else if (node as usize) < SYMBOLS {
                syms |= (node as u64) << (8 * count);
                count += 1;
                used = pos;
                node = ROOT;
            }
        }
        if count == 0 && !eof {
            // the code is longer than the lookup: continue from `node` bit by bit
            syms = node as u64;
            used = LOOKUP_BITS;
        }
        syms_table[index] = syms;
        meta_table[index] =
            (used as u16) | ((count as u16) << META_COUNT_SHIFT) | if eof { META_EOF } else { 0 };
        index += 1;
    }
    (syms_table, meta_table)
}

/// Length in bits of the code of `symbol` (0..=255, or [`EOF`])
#[must_use]
#[inline]
pub fn code_len(symbol: u16) -> u32 {
    CODES.get(symbol as usize).map_or(0, |c| c >> 16)
}

/// The code of `symbol` (0..=255, or [`EOF`]) as `(bits, length)`: the first choice in bit 0
#[must_use]
#[inline]
pub fn code(symbol: u16) -> (u16, u32) {
    CODES
        .get(symbol as usize)
        .map_or((0, 0), |&c| ((c & 0xFFFF) as u16, c >> 16))
}

/// Exact size of [`compress`]'s output for `input` (DDNet 16.4 form: `bits / 8 + 1` bytes)
#[must_use]
pub fn compressed_len(input: &[u8]) -> usize {
    let bits: usize = input
        .iter()
        .map(|&b| (CODES[b as usize] >> 16) as usize)
        .sum::<usize>()
        + MAX_CODE_LEN as usize; // EOF
    bits / 8 + 1
}

/// Why [`compress`] or an [`Encoder`] failed
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum CompressError {
    /// The compressed form does not fit into the output buffer (for a sender: send it raw)
    OutputFull,
}

impl fmt::Display for CompressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompressError::OutputFull => f.write_str("huffman: compressed data does not fit"),
        }
    }
}

impl core::error::Error for CompressError {}

/// Why [`decompress`] failed
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DecompressError {
    /// The decoded data does not fit into the output buffer (`limit` = its length): a stream
    /// longer than the protocol allows, or a "bomb" that never reaches EOF
    OutputFull {
        /// Size of the output buffer, all of it written
        limit: usize,
    },
    /// The input ended before the EOF symbol (also: empty input)
    Truncated {
        /// Bytes decoded before the input ran out
        decoded: usize,
    },
}

impl fmt::Display for DecompressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecompressError::OutputFull { limit } => {
                write!(f, "huffman: decoded data exceeds {limit} bytes")
            }
            DecompressError::Truncated { decoded } => {
                write!(f, "huffman: input ends before EOF (after {decoded} bytes)")
            }
        }
    }
}

impl core::error::Error for DecompressError {}

/// Streaming compressor into a caller buffer: [`Encoder::push`] any number of slices, then
/// [`Encoder::finish`]
///
/// This lets a sender compress `chunks | token` without first copying them together. The output
/// is byte-identical to [`compress`] of the concatenated input.
#[derive(Debug)]
pub struct Encoder<'o> {
    out: &'o mut [u8],
    len: usize,
    acc: u64,
    nbits: u32,
}

#[cfg(feature = "defmt")]
impl defmt::Format for Encoder<'_> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "Encoder {{ written: {}, bits: {} }}",
            self.len,
            self.nbits
        );
    }
}

impl<'o> Encoder<'o> {
    /// An encoder writing into `out`
    #[must_use]
    pub fn new(out: &'o mut [u8]) -> Self {
        Encoder {
            out,
            len: 0,
            acc: 0,
            nbits: 0,
        }
    }

    /// Write the low 32 accumulated bits as 4 bytes
    #[inline(always)]
    fn flush32(&mut self) -> Result<(), CompressError> {
        let dst = self
            .out
            .get_mut(self.len..self.len + 4)
            .ok_or(CompressError::OutputFull)?;
        dst.copy_from_slice(&(self.acc as u32).to_le_bytes());
        self.len += 4;
        self.acc >>= 32;
        self.nbits -= 32;
        Ok(())
    }

    /// Compress `data` and append it to the stream
    ///
    /// # Errors
    /// [`CompressError::OutputFull`] when the output buffer is full; the encoder is then in an
    /// unspecified state and must be dropped.
    #[inline]
    pub fn push(&mut self, data: &[u8]) -> Result<(), CompressError> {
        let mut pairs = data.chunks_exact(2);
        for pair in &mut pairs {
            // two codes (≤ 30 bits) on top of < 32 pending bits fit the 64-bit accumulator
            let a = CODES[pair[0] as usize];
            let b = CODES[pair[1] as usize];
            self.acc |= u64::from(a & 0xFFFF) << self.nbits;
            self.nbits += a >> 16;
            self.acc |= u64::from(b & 0xFFFF) << self.nbits;
            self.nbits += b >> 16;
            if self.nbits >= 32 {
                self.flush32()?;
            }
        }
        for &byte in pairs.remainder() {
            self.put(CODES[byte as usize]);
            if self.nbits >= 32 {
                self.flush32()?;
            }
        }
        Ok(())
    }

    #[inline(always)]
    fn put(&mut self, c: u32) {
        self.acc |= u64::from(c & 0xFFFF) << self.nbits;
        self.nbits += c >> 16;
    }

    /// Append EOF and the final byte; returns the total number of bytes written
    ///
    /// # Errors
    /// [`CompressError::OutputFull`] when the output buffer is too small.
    pub fn finish(mut self) -> Result<usize, CompressError> {
        self.put(CODES[EOF as usize]);
        if self.nbits >= 32 {
            self.flush32()?;
        }
        // whole bytes, then one more byte with the 0..7 leftover bits (0x00 when none: 16.4 form)
        let tail = (self.nbits / 8 + 1) as usize;
        let dst = self
            .out
            .get_mut(self.len..self.len + tail)
            .ok_or(CompressError::OutputFull)?;
        dst.copy_from_slice(&self.acc.to_le_bytes()[..tail]);
        Ok(self.len + tail)
    }
}

/// Compress `input` into `out`; returns the number of bytes written ([`compressed_len`])
///
/// Writes the DDNet 16.4 form (a final `00` byte when the bits end on a byte boundary).
///
/// # Errors
/// [`CompressError::OutputFull`] when `out` is shorter than [`compressed_len`]`(input)`. A sender
/// that only wants the compressed form when it is strictly shorter passes
/// `&mut out[..input.len() - 1]` and sends raw on this error.
pub fn compress(input: &[u8], out: &mut [u8]) -> Result<usize, CompressError> {
    let mut e = Encoder::new(out);
    e.push(input)?;
    e.finish()
}

/// Decompress `input` into `out`; returns the number of bytes written
///
/// With the `small-huffman` feature this is the bit-by-bit decoder (1 KiB of tree instead of the
/// lookup tables; several times slower), else the table-driven one. Decoding stops at the EOF
/// symbol; bytes after it are ignored (DDNet 16.4 writes a `00` byte
/// there when the stream ends on a byte boundary, newer versions do not).
///
/// # Errors
/// [`DecompressError::OutputFull`] when the decoded data does not fit into `out`;
/// [`DecompressError::Truncated`] when `input` ends before EOF. Either way the contents of `out`
/// are unspecified.
#[cfg(feature = "small-huffman")]
pub fn decompress(input: &[u8], out: &mut [u8]) -> Result<usize, DecompressError> {
    let limit = out.len();
    decode_bits(input, limit, out, &mut [0; 4])
}

/// The table-driven decoder (see "Speed" in the module docs)
#[cfg(not(feature = "small-huffman"))]
pub fn decompress(input: &[u8], out: &mut [u8]) -> Result<usize, DecompressError> {
    let input_bits = input.len() * 8;
    // inputs shorter than one 8-byte load are decoded from a zero-padded copy
    let mut padded = [0u8; 8];
    let data = if input.len() < 8 {
        padded[..input.len()].copy_from_slice(input);
        &padded[..]
    } else {
        input
    };
    let mut d = BitReader {
        input: data,
        len: input.len(),
        pos: 0,
        buf: 0,
        nbits: 0,
    };
    let mut o = 0usize;
    let full = DecompressError::OutputFull { limit: out.len() };

    // Fast path, while three table entries' 8-byte stores fit: the input is read as if followed
    // by zero bytes, and the bits consumed are checked against the real input before every group
    // of lookups and at EOF; a stream that ran into the padding is truncated.
    'fast: while o + 32 <= out.len() {
        d.refill_padded();
        if d.consumed() > input_bits {
            return Err(truncated(out, o, d.consumed(), input_bits));
        }
        // ≥ 56 bits buffered: four lookups of ≤ 12 bits, or fewer and then one long code (≤ 15
        // bits, after which the buffer is refilled); four entries store at most 18 + 8 bytes
        for _ in 0..4 {
            let i = (d.buf & LOOKUP_MASK) as usize;
            let m = META[i];
            let e = SYMS[i];
            let count = u32::from(m >> META_COUNT_SHIFT);
            if count.wrapping_sub(1) < MAX_RUN {
                // 1..=8 bytes, no EOF: store all 8, keep `count` of them
                if let Some(dst) = out.get_mut(o..o + 8) {
                    dst.copy_from_slice(&e.to_le_bytes());
                }
                o += count as usize;
                d.consume(u32::from(m) & 63);
            } else if m & META_EOF != 0 {
                let n = (count & 0xF) as usize;
                if let Some(dst) = out.get_mut(o..o + n) {
                    dst.copy_from_slice(&e.to_le_bytes()[..n]);
                }
                d.consume(u32::from(m) & 63);
                let end = d.consumed();
                if end > input_bits {
                    let symbols_end = end - MAX_CODE_LEN as usize;
                    return Err(truncated(out, o + n, symbols_end, input_bits));
                }
                return Ok(o + n);
            } else {
                d.consume(LOOKUP_BITS);
                let mut node = e as u16;
                while node as usize >= SYMBOLS {
                    node = child(node, d.buf);
                    d.consume(1);
                }
                if node == EOF {
                    let end = d.consumed();
                    if end > input_bits {
                        return Err(truncated(out, o, end - MAX_CODE_LEN as usize, input_bits));
                    }
                    return Ok(o);
                }
                if let Some(b) = out.get_mut(o) {
                    *b = node as u8;
                }
                o += 1;
                continue 'fast;
            }
        }
    }
    if d.consumed() > input_bits {
        return Err(truncated(out, o, d.consumed(), input_bits));
    }

    // Careful path near the end of the output: exact bit accounting, one symbol at a time.
    loop {
        d.refill_slow();
        let avail = (input_bits - d.consumed()).min(d.nbits as usize) as u32;
        let i = (d.buf & LOOKUP_MASK) as usize;
        let (m, e) = (META[i], SYMS[i]);
        let count = usize::from((m >> META_COUNT_SHIFT) & 0xF);
        if count == 0 && m & META_EOF == 0 {
            // LONG: first the lookup bits, then one bit at a time
            if avail < LOOKUP_BITS {
                return Err(DecompressError::Truncated { decoded: o });
            }
            let mut avail = avail - LOOKUP_BITS;
            d.consume(LOOKUP_BITS);
            let mut node = e as u16;
            while node as usize >= SYMBOLS {
                if avail == 0 {
                    return Err(DecompressError::Truncated { decoded: o });
                }
                avail -= 1;
                node = child(node, d.buf);
                d.consume(1);
            }
            if node == EOF {
                return Ok(o);
            }
            *out.get_mut(o).ok_or(full)? = node as u8;
            o += 1;
            continue;
        }
        // whole symbols, one at a time, each checked against the input and the output
        let mut used = 0u32;
        let bytes = e.to_le_bytes();
        for &sym in &bytes[..count] {
            used += CODES[sym as usize] >> 16;
            if used > avail {
                return Err(DecompressError::Truncated { decoded: o });
            }
            *out.get_mut(o).ok_or(full)? = sym;
            o += 1;
        }
        if m & META_EOF != 0 {
            if u32::from(m & 63) > avail {
                return Err(DecompressError::Truncated { decoded: o });
            }
            return Ok(o);
        }
        d.consume(used);
    }
}

/// Decode `input` bit by bit: the first `out.len()` bytes go to `out`, the last four to `tail`
/// (shifted in), at most `limit` bytes in all; returns the decoded length (the same result and
/// errors as [`decompress`] into a `limit`-byte buffer). One function (not generic) serves
/// [`decompressed_tail`], [`decompress_prefix`] and the `small-huffman` [`decompress`], so the
/// loop exists once in a firmware.
#[inline(never)]
fn decode_bits(
    input: &[u8],
    limit: usize,
    out: &mut [u8],
    tail: &mut [u8; 4],
) -> Result<usize, DecompressError> {
    let mut node = ROOT;
    let mut n = 0usize;
    for &byte in input {
        for bit in 0..8 {
            node = child(node, u64::from(byte >> bit));
            if node == EOF {
                return Ok(n);
            }
            if (node as usize) < SYMBOLS {
                if n == limit {
                    return Err(DecompressError::OutputFull { limit });
                }
                let b = node as u8;
                if let Some(o) = out.get_mut(n) {
                    *o = b;
                }
                *tail = [tail[1], tail[2], tail[3], b];
                n += 1;
                node = ROOT;
            }
        }
    }
    Err(DecompressError::Truncated { decoded: n })
}

/// The decompressed length of `input` and its last four bytes (fewer are zero-filled at the
/// front), found without an output buffer
///
/// This is how a receiver that does not want the decompressed data checks the security token of a
/// compressed chunk packet: DDNet appends the token before compressing, so it is the last four
/// decompressed bytes. The limit is [`MAX_DECOMPRESSED_LEN`]. Slower than [`decompress`] (one
/// tree step per bit).
///
/// ```
/// use tether_net::game::huffman::{compress, decompressed_tail};
/// let mut packed = [0u8; 32];
/// let n = compress(&[0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78], &mut packed).unwrap();
/// assert_eq!(decompressed_tail(&packed[..n]), Ok((8, [0x12, 0x34, 0x56, 0x78])));
/// ```
///
/// # Errors
/// As [`decompress`] with a [`MAX_DECOMPRESSED_LEN`]-byte output buffer.
pub fn decompressed_tail(input: &[u8]) -> Result<(usize, [u8; 4]), DecompressError> {
    let mut tail = [0u8; 4];
    let n = decode_bits(input, MAX_DECOMPRESSED_LEN, &mut [], &mut tail)?;
    Ok((n, tail))
}

/// Decompress the first `out.len()` bytes of `input` into `out` and return the whole
/// decompressed length (at most [`MAX_DECOMPRESSED_LEN`]; the rest is decoded and dropped)
///
/// For small messages in a possibly longer stream, e.g. a vanilla 0.6.4 peer's compressed
/// CLOSE, whose reason a receiver keeps to 127 bytes anyway.
///
/// # Errors
/// As [`decompress`] with a [`MAX_DECOMPRESSED_LEN`]-byte output buffer; the contents of `out`
/// are then unspecified.
pub fn decompress_prefix(input: &[u8], out: &mut [u8]) -> Result<usize, DecompressError> {
    decode_bits(input, MAX_DECOMPRESSED_LEN, out, &mut [0; 4])
}

/// The [`DecompressError::Truncated`] of a fast-path decode that read `end` bits (the end of
/// its last symbol) while the input has only `input_bits`: the symbols that end past the input
/// were decoded from padding and are not counted
#[cold]
#[cfg(not(feature = "small-huffman"))]
fn truncated(out: &[u8], mut o: usize, mut end: usize, input_bits: usize) -> DecompressError {
    while end > input_bits && o > 0 {
        o -= 1;
        end -= out
            .get(o)
            .map_or(0, |&b| (CODES[b as usize] >> 16) as usize);
    }
    DecompressError::Truncated { decoded: o }
}

/// LSB-first bit buffer over the input, read as if zero bytes followed it
///
/// `input` holds at least 8 bytes (a short input is copied into a zero-padded array first);
/// `len` is the real input length. `pos` counts the bytes fetched, padding included (it may pass
/// the input's end). Invariant: `buf` holds `nbits` bits in its low bits; the bits above them are
/// zero or the bits of the bytes starting at `pos` (zero past the end), so fetching those bytes
/// again is harmless.
#[cfg(not(feature = "small-huffman"))]
struct BitReader<'a> {
    input: &'a [u8],
    len: usize,
    pos: usize,
    buf: u64,
    nbits: u32,
}

/// The 8 bytes of `b` at `at` as a little-endian word (zero when out of range)
#[inline(always)]
#[cfg(not(feature = "small-huffman"))]
fn load(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).map_or(0, |w| {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        u64::from_le_bytes(a)
    })
}

#[cfg(not(feature = "small-huffman"))]
impl BitReader<'_> {
    /// Bits taken out of the buffer so far
    #[inline(always)]
    fn consumed(&self) -> usize {
        self.pos * 8 - self.nbits as usize
    }

    /// Top up to ≥ 56 bits, zero bytes past the end of the input
    #[inline(always)]
    fn refill_padded(&mut self) {
        let n = self.input.len();
        let word = if self.pos + 8 <= n {
            load(self.input, self.pos)
        } else if self.pos < n {
            // the last 8 bytes, shifted so that the byte at `pos` comes first
            load(self.input, n - 8) >> (8 * (self.pos + 8 - n))
        } else {
            0
        };
        self.buf |= word << self.nbits;
        self.pos += ((63 - self.nbits) >> 3) as usize;
        self.nbits |= 56;
    }

    /// Top up byte by byte while there is real input and room
    #[inline]
    fn refill_slow(&mut self) {
        while self.nbits <= 56 && self.pos < self.len {
            let Some(&b) = self.input.get(self.pos) else {
                break;
            };
            self.buf |= u64::from(b) << self.nbits;
            self.pos += 1;
            self.nbits += 8;
        }
    }

    #[inline(always)]
    fn consume(&mut self, n: u32) {
        // callers never take more than the buffered bits
        self.buf >>= n & 63;
        self.nbits = self.nbits.wrapping_sub(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> heapless::Vec<u8, 64> {
        s.split_whitespace()
            .map(|h| u8::from_str_radix(h, 16).unwrap())
            .collect()
    }

    /// The code of `symbol` as the string of choices, first choice first
    fn code_str(symbol: u16) -> heapless::String<16> {
        let (bits, len) = code(symbol);
        (0..len)
            .map(|i| if bits >> i & 1 == 1 { '1' } else { '0' })
            .collect()
    }

    #[test]
    fn example_codes() {
        assert_eq!(code_str(0x00), "1");
        assert_eq!(code_str(0x01), "0001");
        assert_eq!(code_str(0x02), "01000");
        assert_eq!(code_str(0x80), "00000");
        assert_eq!(code_str(0x40), "01010010");
        assert_eq!(code_str(0xff), "01001001");
        assert_eq!(code_str(EOF), "010100011101100");
    }

    #[test]
    fn code_length_histogram() {
        let mut hist = [0u32; 16];
        for s in 0..=256u16 {
            hist[code_len(s) as usize] += 1;
        }
        let expected: [(usize, u32); 13] = [
            (1, 1),
            (4, 1),
            (5, 3),
            (6, 3),
            (7, 10),
            (8, 12),
            (9, 51),
            (10, 39),
            (11, 27),
            (12, 66),
            (13, 37),
            (14, 5),
            (15, 2),
        ];
        for (len, n) in expected {
            assert_eq!(hist[len], n, "codes of length {len}");
        }
        assert_eq!(hist.iter().sum::<u32>(), 257);
    }

    #[test]
    fn spec_vectors_compress_and_decompress() {
        let cases = [
            ("", "8a 1b"),
            ("00", "15 37 00"),
            ("00 00 00 00", "af b8 01"),
            ("00 01 00 02 00 80 00", "b1 08 2a 6e 00"),
            ("ff ff ff ff ff ff ff ff", "92 92 92 92 92 92 92 92 8a 1b"),
            (
                "00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f",
                "51 58 78 76 1b 37 c2 d4 fb cb 1d 7a 77 8a 1b",
            ),
            ("68 65 6c 6c 6f", "ae 95 13 5c 09 57 c2 16 29 6e 00"),
        ];
        for (plain, packed) in cases {
            let (plain, packed) = (hex(plain), hex(packed));
            let mut out = [0u8; 64];
            let n = compress(&plain, &mut out).unwrap();
            assert_eq!(&out[..n], &packed[..], "compress {plain:02x?}");
            assert_eq!(compressed_len(&plain), n);
            let mut back = [0u8; 64];
            let m = decompress(&packed, &mut back).unwrap();
            assert_eq!(&back[..m], &plain[..]);
        }
    }

    #[test]
    fn the_empty_stream_is_truncated() {
        let mut out = [0u8; 8];
        assert_eq!(
            decompress(&[], &mut out),
            Err(DecompressError::Truncated { decoded: 0 })
        );
    }

    #[test]
    fn all_zero_bits_is_a_bomb_stopped_by_the_output_limit() {
        // "00000" is 0x80: a stream of zero bits decodes as endless 0x80 without EOF
        let input = [0u8; 4];
        let mut out = [0u8; 100];
        // 32 bits → 6 symbols, then the input runs out
        assert_eq!(
            decompress(&input, &mut out),
            Err(DecompressError::Truncated { decoded: 6 })
        );
        let mut small = [0u8; 3];
        assert_eq!(
            decompress(&input, &mut small),
            Err(DecompressError::OutputFull { limit: 3 })
        );
    }

    #[test]
    fn tail_and_prefix_agree_with_decompress() {
        let inputs: [&[u8]; 5] = [
            &[],
            &[0x12],
            &[0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78],
            b"\x04Server shutdown\0",
            &[0xff; 200],
        ];
        for plain in inputs {
            let mut packed = [0u8; 512];
            let n = compress(plain, &mut packed).unwrap();
            let mut out = [0u8; MAX_DECOMPRESSED_LEN];
            let m = decompress(&packed[..n], &mut out).unwrap();
            let mut tail = [0u8; 4];
            let k = m.min(4);
            tail[4 - k..].copy_from_slice(&out[m - k..m]);
            assert_eq!(decompressed_tail(&packed[..n]), Ok((m, tail)));
            let mut prefix = [0u8; 6];
            assert_eq!(decompress_prefix(&packed[..n], &mut prefix), Ok(m));
            assert_eq!(&prefix[..m.min(6)], &out[..m.min(6)]);
        }
        // errors as decompress's: truncated, and the zero-bit bomb stopped at the limit
        assert_eq!(
            decompressed_tail(&[0u8; 4]),
            Err(DecompressError::Truncated { decoded: 6 })
        );
        assert_eq!(
            decompressed_tail(&[0u8; 1390]),
            Err(DecompressError::OutputFull {
                limit: MAX_DECOMPRESSED_LEN
            })
        );
    }

    #[test]
    fn bit_by_bit_decoder_agrees_with_the_tables() {
        // the `small-huffman` decoder (decode_each) against the default one, on arbitrary bytes
        // and on real streams, for several output limits
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        for round in 0..3000 {
            let len = (next() % 64) as usize;
            let mut input = [0u8; 64];
            for b in input.iter_mut().take(len) {
                *b = next() as u8;
            }
            let input = if round % 2 == 0 {
                let mut packed = [0u8; 200];
                let n = compress(&input[..len], &mut packed).unwrap();
                let mut v = heapless::Vec::<u8, 200>::new();
                let _ = v.extend_from_slice(&packed[..n]);
                v
            } else {
                let mut v = heapless::Vec::<u8, 200>::new();
                let _ = v.extend_from_slice(&input[..len]);
                v
            };
            for limit in [0usize, 3, 17, 64, 300] {
                let mut a = [0u8; 300];
                let mut b = [0u8; 300];
                let fast = decompress(&input, &mut a[..limit]);
                let slow = decode_bits(&input, limit, &mut b[..limit], &mut [0; 4]);
                assert_eq!(fast, slow, "input {:02x?} limit {limit}", input.as_slice());
                if let Ok(n) = fast {
                    assert_eq!(&a[..n], &b[..n]);
                }
            }
        }
    }
}
