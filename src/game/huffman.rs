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
//! looks them up in a table built at compile time (4,096 × 8 bytes = 32 KiB; 4 KiB with 9 bits)
//! whose entries hold up to six whole symbols, their count and the bits they take; each lookup
//! stores its 8 bytes at once. Codes longer than the lookup finish with one more lookup in a 2 KiB
//! table (64-bit targets) or bit by bit (the others). Four lookups share one load of the input,
//! and a single stream loads the bits of its next four lookups while the current ones run.
//!
//! Each lookup waits for the one before it (where a code starts depends on the lengths of the
//! codes before), so one stream leaves most of a modern CPU idle. On 64-bit targets an input of
//! 128 bytes or more is therefore decoded as three streams at once, from its first byte and from
//! the bytes a third and two thirds in, the later ones into buffers on the stack (2 × 1,394
//! bytes). A stream that starts inside a code decodes garbage for a few codes and then usually
//! falls into step with the true code boundaries (prefix codes tend to resynchronise); each
//! stream goes on until it stands on a code boundary of the next one, and from there the next
//! one's bytes are the true continuation (without a common boundary it decodes the rest alone). The result, errors included, is that of the bit-by-bit decoder, which a property
//! test checks. The encoder looks up one packed code word per byte and writes the output four
//! bytes at a time.
//!
//! For flash-constrained targets the cargo feature `small-huffman` replaces the table-driven
//! decoder by a bit-by-bit walk of the tree (576 bytes, nine bits per child, instead of the 4 KiB
//! of tables; same results, several times slower). Targets narrower than 64 bits walk this
//! packed tree for their longest codes too; 64-bit ones keep the 1 KiB form, whose walk is
//! faster. The encoder's code table takes 514 bytes with `small-huffman` and on targets narrower
//! than 64 bits (each code with a marker bit above it, the length read back as the marker's
//! position), else 1,028 bytes of ready 32-bit words.
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
/// (64-bit targets with the lookup tables, where the encoder wants the word as it is)
#[cfg(not(any(feature = "small-huffman", not(target_pointer_width = "64"))))]
static CODES: [u32; SYMBOLS] = build_codes();

/// Per symbol: the code bits with one more bit set just above them, `bits | 1 << len` (a code has
/// at most 15 bits, so this fits 16), half the flash of the 32-bit words; the length is the
/// position of the highest set bit (`small-huffman` and targets narrower than 64 bits)
#[cfg(any(feature = "small-huffman", not(target_pointer_width = "64")))]
static CODES: [u16; SYMBOLS] = mark_codes(build_codes());

/// [`build_codes`]'s words in the marked 16-bit form of the small [`CODES`]
#[cfg_attr(
    not(any(test, feature = "small-huffman", not(target_pointer_width = "64"))),
    allow(dead_code)
)]
const fn mark_codes(codes: [u32; SYMBOLS]) -> [u16; SYMBOLS] {
    let mut marked = [0u16; SYMBOLS];
    let mut i = 0;
    while i < SYMBOLS {
        let len = codes[i] >> 16;
        assert!(len >= 1 && len <= MAX_CODE_LEN && (codes[i] & 0xFFFF) >> len == 0);
        // `+` sets the marker: the code's bits are all below it (checked above)
        marked[i] = ((codes[i] & 0xFFFF) + (1 << len)) as u16;
        i += 1;
    }
    marked
}

/// The code word of symbol `i` (< [`SYMBOLS`]): bits in bits 0..16, length in bits 16..24
#[inline(always)]
fn code_word(i: usize) -> u32 {
    #[cfg(not(any(feature = "small-huffman", not(target_pointer_width = "64"))))]
    {
        CODES[i]
    }
    #[cfg(any(feature = "small-huffman", not(target_pointer_width = "64")))]
    {
        unmark(CODES[i])
    }
}

/// A marked 16-bit code word back in the 32-bit form (`m` is not zero)
#[cfg_attr(
    not(any(test, feature = "small-huffman", not(target_pointer_width = "64"))),
    allow(dead_code)
)]
#[inline(always)]
fn unmark(m: u16) -> u32 {
    let m = u32::from(m);
    let len = 31 - m.leading_zeros();
    // the marker off, the length on top (`+`: the two parts share no bit)
    (m ^ (1 << len)) + (len << 16)
}

/// The tree for walks at run time (the bit-by-bit decoder; the long codes of 32-bit targets) as
/// it is built: one 16-bit load per step (64-bit targets with the lookup tables, where flash is
/// plentiful and the packed form's extra work per bit made the walk four times slower)
#[cfg(not(any(feature = "small-huffman", not(target_pointer_width = "64"))))]
static TREE_WIDE: [[u16; 2]; INTERNAL] = TREE;

/// The tree for walks at run time in 576 bytes instead of [`TREE`]'s 1,024 (`small-huffman`
/// and targets narrower than 64 bits): child `c = 2 × (node - 257) + bit` is `TREE_LOW[c]` plus
/// bit `c % 8` of `TREE_HIGH[c / 8]` as bit 8. Nine bits suffice because the root is nobody's
/// child: a child is one of the 257 leaves or one of the internal nodes 257..=511.
#[cfg_attr(
    not(any(test, feature = "small-huffman", not(target_pointer_width = "64"))),
    allow(dead_code)
)]
static TREE_LOW: [u8; 2 * INTERNAL] = pack_tree().0;
/// The ninth bits of the children (see [`TREE_LOW`])
#[cfg_attr(
    not(any(test, feature = "small-huffman", not(target_pointer_width = "64"))),
    allow(dead_code)
)]
static TREE_HIGH: [u8; 2 * INTERNAL / 8] = pack_tree().1;

/// [`TREE`] split into the low bytes and the ninth bits of its children
#[cfg_attr(
    not(any(test, feature = "small-huffman", not(target_pointer_width = "64"))),
    allow(dead_code)
)]
const fn pack_tree() -> ([u8; 2 * INTERNAL], [u8; 2 * INTERNAL / 8]) {
    let mut low = [0u8; 2 * INTERNAL];
    let mut high = [0u8; 2 * INTERNAL / 8];
    let mut c = 0;
    while c < 2 * INTERNAL {
        let id = TREE[c / 2][c % 2];
        assert!(id < ROOT);
        low[c] = id as u8;
        high[c / 8] |= ((id >> 8) as u8) << (c % 8);
        c += 1;
    }
    (low, high)
}

/// The child of internal node `node` (257..=512) for the lowest bit of `bit`, from the packed
/// tree
#[cfg_attr(
    not(any(test, feature = "small-huffman", not(target_pointer_width = "64"))),
    allow(dead_code)
)]
#[inline(always)]
fn packed_child(node: usize, bit: u64) -> usize {
    // the mask keeps the index in range without a check (`node` is internal); `+` joins parts
    // that share no bit
    let c = ((node.wrapping_sub(SYMBOLS) << 1) + (bit & 1) as usize) & (2 * INTERNAL - 1);
    usize::from(TREE_LOW[c]) + (usize::from(TREE_HIGH[c >> 3] >> (c & 7) & 1) << 8)
}

/// The child of internal node `node` (257..=512) for the lowest bit of `bit`, at run time
#[inline(always)]
fn tree_child(node: usize, bit: u64) -> usize {
    #[cfg(not(any(feature = "small-huffman", not(target_pointer_width = "64"))))]
    {
        usize::from(TREE_WIDE[node - SYMBOLS][(bit & 1) as usize])
    }
    #[cfg(any(feature = "small-huffman", not(target_pointer_width = "64")))]
    {
        packed_child(node, bit)
    }
}

/// Bits the decoder looks up at once: 12 on 64-bit targets (32 KiB table, plus 2 KiB for the
/// codes longer than that), 9 on smaller ones (4 KiB), where flash is scarce and the 64-bit
/// arithmetic of the fast path is slow anyway
#[cfg(not(feature = "small-huffman"))]
const LOOKUP_BITS: u32 = if cfg!(target_pointer_width = "64") {
    12
} else {
    9
};
#[cfg(not(feature = "small-huffman"))]
const LOOKUP_MASK: u64 = (1 << LOOKUP_BITS) - 1;
/// Most whole symbols one table entry holds
#[cfg(not(feature = "small-huffman"))]
const MAX_RUN: u32 = 6;
/// Length of the EOF code (checked at compile time)
#[cfg(not(feature = "small-huffman"))]
const EOF_LEN: usize = 15;

// A decode table entry is one u64:
//   bits 0..6    bits consumed: `wrapping_shr` by the entry itself takes them (shift counts are
//                taken modulo 64), so no mask stands between a lookup and the next
//   bit 6        LONG: no code ends within the lookup bits (consumed = LOOKUP_BITS, no bytes;
//                the only entries of the main table without bytes)
//   bit 7        EOF: only in entries of the long path, which then consume and write nothing
//   bits 8..56   up to 6 decoded bytes, the first in the lowest byte; in a LONG entry bits 8..24
//                hold the tree node reached and bits 24..32 its first index in LONG_CODES
//   bits 61..64  number of bytes (0..=6)
// Storing `e >> 8` as 8 bytes writes the bytes; what lands after them is overwritten by the next
// store or lies past the decoded length.
#[cfg(not(feature = "small-huffman"))]
const USED_MASK: u64 = 63;
#[cfg(not(feature = "small-huffman"))]
const LONG: u64 = 1 << 6;
#[cfg(not(feature = "small-huffman"))]
const EOF_FLAG: u64 = 1 << 7;
#[cfg(not(feature = "small-huffman"))]
const SYM_SHIFT: u32 = 8;
#[cfg(not(feature = "small-huffman"))]
const COUNT_SHIFT: u32 = 61;

#[cfg(not(feature = "small-huffman"))]
const _: () = {
    assert!(build_codes()[EOF as usize] >> 16 == EOF_LEN as u32);
    // the EOF code never ends within a lookup, so only the long path meets it
    assert!(LOOKUP_BITS < EOF_LEN as u32);
    // four lookups per refill of ≥ 57 bits; a LONG entry refills before its ≤ 15 bits
    assert!(4 * LOOKUP_BITS <= 57 && 3 * LOOKUP_BITS + MAX_CODE_LEN <= 57);
    assert!(MAX_RUN <= 6 && MAX_CODE_LEN as u64 <= USED_MASK);
};

/// Bits the 64-bit long path looks up after the first [`LOOKUP_BITS`]: the rest of any code
#[cfg(all(not(feature = "small-huffman"), target_pointer_width = "64"))]
const LONG_BITS: u32 = MAX_CODE_LEN - LOOKUP_BITS;

/// The decode tables: the main one, indexed by the next [`LOOKUP_BITS`] input bits (first bit in
/// bit 0), and the one for the codes longer than that (64-bit targets), indexed by a LONG entry's
/// first index plus the next [`LONG_BITS`] bits
#[cfg(not(feature = "small-huffman"))]
const TABLES: ([u64; 1 << LOOKUP_BITS], [u64; 256]) = build_decode();
#[cfg(not(feature = "small-huffman"))]
static DECODE: [u64; 1 << LOOKUP_BITS] = TABLES.0;
#[cfg(all(not(feature = "small-huffman"), target_pointer_width = "64"))]
static LONG_CODES: [u64; 256] = TABLES.1;

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

/// Build the decode tables (see [`TABLES`])
#[cfg(not(feature = "small-huffman"))]
const fn build_decode() -> ([u64; 1 << LOOKUP_BITS], [u64; 256]) {
    let mut table = [0u64; 1 << LOOKUP_BITS];
    // the internal nodes a LONG entry can reach, in order of first appearance
    let mut long_nodes = [0u16; 32];
    let mut longs = 0usize;
    let mut index = 0;
    while index < (1 << LOOKUP_BITS) {
        let bits = index as u64;
        let mut pos = 0u32; // bits walked
        let mut used = 0u32; // bits of the completed symbols
        let mut count = 0u32;
        let mut syms = 0u64;
        let mut node = ROOT;
        while count < MAX_RUN && pos < LOOKUP_BITS {
            node = child(node, bits >> pos);
            pos += 1;
            if (node as usize) < SYMBOLS {
                assert!(node != EOF);
                syms |= (node as u64) << (8 * count);
                count += 1;
                used = pos;
                node = ROOT;
            }
        }
        table[index] = if count == 0 {
            // the code is longer than the lookup: 64-bit targets number the nodes reached for
            // the long table, smaller ones walk on from the node bit by bit
            let mut first = 0;
            if cfg!(target_pointer_width = "64") {
                let mut rank = 0;
                while rank < longs && long_nodes[rank] != node {
                    rank += 1;
                }
                if rank == longs {
                    long_nodes[longs] = node;
                    longs += 1;
                }
                first = (rank as u64) << (MAX_CODE_LEN - LOOKUP_BITS);
                assert!(first < 256);
            }
            ((node as u64) << SYM_SHIFT) | (first << 24) | LOOKUP_BITS as u64 | LONG
        } else {
            (syms << SYM_SHIFT) | used as u64 | ((count as u64) << COUNT_SHIFT)
        };
        index += 1;
    }
    // 64-bit: the rest of each long code in one more lookup of MAX_CODE_LEN - LOOKUP_BITS bits
    let mut long = [0u64; 256];
    if cfg!(target_pointer_width = "64") {
        let rest = MAX_CODE_LEN - LOOKUP_BITS;
        assert!(longs << rest <= 256);
        let mut j = 0;
        while j < longs << rest {
            let mut node = long_nodes[j >> rest];
            let mut pos = 0;
            while node as usize >= SYMBOLS {
                assert!(pos < rest);
                node = child(node, (j as u64) >> pos);
                pos += 1;
            }
            long[j] = if node == EOF {
                EOF_FLAG
            } else {
                ((node as u64) << SYM_SHIFT) | (LOOKUP_BITS + pos) as u64 | (1 << COUNT_SHIFT)
            };
            j += 1;
        }
    }
    (table, long)
}

/// Length in bits of the code of `symbol` (0..=255, or [`EOF`])
#[must_use]
#[inline]
pub fn code_len(symbol: u16) -> u32 {
    code(symbol).1
}

/// The code of `symbol` (0..=255, or [`EOF`]) as `(bits, length)`: the first choice in bit 0
#[must_use]
#[inline]
pub fn code(symbol: u16) -> (u16, u32) {
    if usize::from(symbol) < SYMBOLS {
        let c = code_word(usize::from(symbol));
        ((c & 0xFFFF) as u16, c >> 16)
    } else {
        (0, 0)
    }
}

/// Exact size of [`compress`]'s output for `input` (DDNet 16.4 form: `bits / 8 + 1` bytes)
#[must_use]
pub fn compressed_len(input: &[u8]) -> usize {
    let bits: usize = input
        .iter()
        .map(|&b| (code_word(usize::from(b)) >> 16) as usize)
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
            let a = code_word(usize::from(pair[0]));
            let b = code_word(usize::from(pair[1]));
            self.acc |= u64::from(a & 0xFFFF) << self.nbits;
            self.nbits += a >> 16;
            self.acc |= u64::from(b & 0xFFFF) << self.nbits;
            self.nbits += b >> 16;
            if self.nbits >= 32 {
                self.flush32()?;
            }
        }
        for &byte in pairs.remainder() {
            self.put(code_word(usize::from(byte)));
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
        self.put(code_word(usize::from(EOF)));
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
/// With the `small-huffman` feature this is the bit-by-bit decoder (576 bytes of tree instead of
/// the lookup tables; several times slower), else the table-driven one. Decoding stops at the EOF
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
    #[cfg(target_pointer_width = "64")]
    if input.len() >= STREAMS_MIN {
        return decompress_streams(input, out);
    }
    // inputs shorter than one 8-byte load are decoded from a zero-padded copy
    let mut padded = [0u8; 8];
    let data = match padded.get_mut(..input.len()) {
        Some(p) => {
            p.copy_from_slice(input);
            &padded[..]
        }
        None => input,
    };
    finish(decode_from(data, input.len() * 8, 0, out, 0, usize::MAX))
}

/// Where [`decode_from`] stopped
#[cfg(not(feature = "small-huffman"))]
enum Flow {
    /// The end: EOF or an error
    Done(Result<usize, DecompressError>),
    /// At the first lookup boundary at or after the `stop` bit: bit `p`, `o` bytes written
    /// (only the streams of [`decompress_streams`] pause)
    #[cfg_attr(not(target_pointer_width = "64"), allow(dead_code))]
    Paused { p: usize, o: usize },
}

/// The result of a [`decode_from`] that cannot pause (`stop = usize::MAX`)
#[cfg(not(feature = "small-huffman"))]
#[inline(always)]
fn finish(flow: Flow) -> Result<usize, DecompressError> {
    match flow {
        Flow::Done(r) => r,
        // no bit position reaches usize::MAX
        Flow::Paused { o, .. } => Err(DecompressError::Truncated { decoded: o }),
    }
}

/// Decode from bit `p` of `data` into `out`, where `o` bytes are already written; pause at the
/// first lookup boundary at or after bit `stop`
///
/// `data` holds at least 8 bytes; its first `input_bits` bits are the input, and it is read as if
/// zero bytes followed it. Results and errors are those of the bit-by-bit decoder run from bit 0
/// into `out`, given that bit `p` is where the `o`-th byte's code starts.
///
/// Fast path, while four table entries' 8-byte stores fit: the bits consumed are checked against
/// the input before every group of four lookups and at EOF; a stream that ran into the padding is
/// truncated. Near the end of `out`: exact accounting, one symbol at a time.
#[cfg(not(feature = "small-huffman"))]
#[inline(always)]
fn decode_from(
    data: &[u8],
    input_bits: usize,
    p: usize,
    out: &mut [u8],
    mut o: usize,
    stop: usize,
) -> Flow {
    let mut bits = Ahead::at(data, p);
    while bits.p < stop {
        if bits.p > input_bits {
            return Flow::Done(Err(truncated(out, o, bits.p, input_bits)));
        }
        let Some(win) = out.get_mut(o..o + 32) else {
            break;
        };
        bits.start_group(data);
        let mut w = 0;
        for _ in 0..4 {
            step(data, &mut bits, win, &mut w);
            if bits.eof {
                // EOF starts at bit p
                let (o, p) = (o + w, bits.p);
                return Flow::Done(if p + EOF_LEN > input_bits {
                    Err(truncated(out, o, p, input_bits))
                } else {
                    Ok(o)
                });
            }
        }
        bits.end_group();
        o += w;
    }
    let mut p = bits.p;
    if p > input_bits {
        return Flow::Done(Err(truncated(out, o, p, input_bits)));
    }
    loop {
        if p >= stop {
            return Flow::Paused { p, o };
        }
        let buf = bits_at(data, p);
        let mut e = DECODE[(buf & LOOKUP_MASK) as usize];
        if e & LONG != 0 {
            e = long_entry(e, buf);
            if e & EOF_FLAG != 0 {
                return Flow::Done(if p + EOF_LEN > input_bits {
                    Err(DecompressError::Truncated { decoded: o })
                } else {
                    Ok(o)
                });
            }
        }
        // whole symbols, one at a time, each checked against the input and the output
        for &sym in (e >> SYM_SHIFT)
            .to_le_bytes()
            .iter()
            .take((e >> COUNT_SHIFT) as usize)
        {
            p += code_len(u16::from(sym)) as usize;
            if p > input_bits {
                return Flow::Done(Err(DecompressError::Truncated { decoded: o }));
            }
            let Some(b) = out.get_mut(o) else {
                return Flow::Done(Err(DecompressError::OutputFull { limit: out.len() }));
            };
            *b = sym;
            o += 1;
        }
    }
}

/// A bit buffer of the fast path: the input from bit `p` on in `buf` (bit `p` in bit 0), at
/// least 57 valid bits at the start of a group of four lookups, zeros past the end of the input
#[cfg(not(feature = "small-huffman"))]
trait BitBuf {
    /// The buffer at bit `p` of `data`
    fn at(data: &[u8], p: usize) -> Self;
    /// Before a group of lookups
    fn start_group(&mut self, data: &[u8]);
    /// After it
    fn end_group(&mut self);
    /// Before a long code: at least [`MAX_CODE_LEN`] valid bits
    fn make_room(&mut self, data: &[u8]);
    /// The buffered bits
    fn buf(&self) -> u64;
    /// Consume the bits of entry `e` (its low 6 bits)
    fn consume(&mut self, e: u64);
    /// Note that the next code is EOF
    fn set_eof(&mut self);
}

/// One stream alone, where every lookup waits for the one before: the bits for the next group
/// are loaded while this group's lookups run and merged in after them, so no load stands between
/// two groups. `buf`'s bits below `top - p` are valid, the ones above zero or valid; `next` holds
/// the input from bit `top` (a byte boundary) on.
#[cfg(not(feature = "small-huffman"))]
struct Ahead {
    buf: u64,
    p: usize,
    top: usize,
    next: u64,
    eof: bool,
}

#[cfg(not(feature = "small-huffman"))]
impl BitBuf for Ahead {
    #[inline(always)]
    fn at(data: &[u8], p: usize) -> Self {
        Ahead {
            buf: bits_at(data, p),
            p,
            top: (p & !7) + 64,
            next: 0,
            eof: false,
        }
    }

    #[inline(always)]
    fn start_group(&mut self, data: &[u8]) {
        self.next = bits_at(data, self.top);
    }

    #[inline(always)]
    fn end_group(&mut self) {
        // 0..=64 valid bits are left: four long codes of 15 bits can take all 60 of a buffer
        let valid = self.top.wrapping_sub(self.p);
        self.buf |= self.next.checked_shl(valid as u32).unwrap_or(0);
        self.top += 64usize.wrapping_sub(valid) & !7;
    }

    #[inline(always)]
    fn make_room(&mut self, data: &[u8]) {
        if self.top.wrapping_sub(self.p) < MAX_CODE_LEN as usize {
            // after other long codes in this group: start afresh at p
            *self = Ahead::at(data, self.p);
            self.start_group(data);
        }
    }

    #[inline(always)]
    fn buf(&self) -> u64 {
        self.buf
    }

    #[inline(always)]
    fn consume(&mut self, e: u64) {
        self.buf = self.buf.wrapping_shr(e as u32);
        self.p += (e & USED_MASK) as usize;
    }

    #[inline(always)]
    fn set_eof(&mut self) {
        self.eof = true;
    }
}

/// Streams interleaved ([`decompress_streams`]): one stream's loads hide behind the others'
/// lookups, and the fewer registers per stream the better; each group and each long code load
/// afresh at `p`.
#[cfg(all(not(feature = "small-huffman"), target_pointer_width = "64"))]
struct Plain {
    buf: u64,
    /// The bit position at the start of the group, [`Plain::EOF`] set once EOF was met (which
    /// stops the streams' loop by itself)
    p: usize,
    /// The sum of the entries consumed since `p` was last brought up to date: its low byte is
    /// the sum of their bit counts (at most 4 × 15; their flag bits 6 and 7 are clear), which is
    /// all that is used, so no lookup needs to mask its entry
    sum: u64,
}

#[cfg(all(not(feature = "small-huffman"), target_pointer_width = "64"))]
impl Plain {
    /// Mark in `p`: the next code is EOF
    const EOF: usize = 1 << 62;

    /// The bit position (between groups)
    #[inline(always)]
    fn pos(&self) -> usize {
        self.p & !Self::EOF
    }

    /// Count the bits consumed into `p`
    #[inline(always)]
    fn settle(&mut self) {
        self.p += (self.sum & 0xFF) as usize;
        self.sum = 0;
    }
}

#[cfg(all(not(feature = "small-huffman"), target_pointer_width = "64"))]
impl BitBuf for Plain {
    #[inline(always)]
    fn at(data: &[u8], p: usize) -> Self {
        Plain {
            buf: bits_at(data, p),
            p,
            sum: 0,
        }
    }

    #[inline(always)]
    fn start_group(&mut self, data: &[u8]) {
        // the callers keep p 64 bits before the end of the input
        self.buf = load(data, self.p >> 3) >> (self.p & 7);
    }

    #[inline(always)]
    fn end_group(&mut self) {
        self.settle();
    }

    #[inline(always)]
    fn make_room(&mut self, data: &[u8]) {
        self.settle();
        self.buf = bits_at(data, self.pos());
    }

    #[inline(always)]
    fn buf(&self) -> u64 {
        self.buf
    }

    #[inline(always)]
    fn consume(&mut self, e: u64) {
        // entries that get here have their flag bits 6 and 7 clear
        self.buf = self.buf.wrapping_shr(e as u32);
        self.sum = self.sum.wrapping_add(e);
    }

    #[inline(always)]
    fn set_eof(&mut self) {
        self.p |= Self::EOF;
    }
}

/// One lookup of the fast path: store the entry's bytes at `win[*w..]`, consume its bits,
/// advance `w` by its byte count
///
/// EOF writes and consumes nothing and sets the buffer's `eof` (further lookups from the same
/// bits meet it again).
#[cfg(not(feature = "small-huffman"))]
#[inline(always)]
fn step<B: BitBuf>(data: &[u8], bits: &mut B, win: &mut [u8], w: &mut usize) {
    let mut e = DECODE[(bits.buf() & LOOKUP_MASK) as usize];
    let mut count = (e >> COUNT_SHIFT) as usize;
    if count == 0 {
        // LONG (the only entries without bytes)
        bits.make_room(data);
        e = long_entry(e, bits.buf());
        if e & EOF_FLAG != 0 {
            bits.set_eof();
            return;
        }
        count = 1;
    }
    if let Some(dst) = win.get_mut(*w..*w + 8) {
        dst.copy_from_slice(&(e >> SYM_SHIFT).to_le_bytes());
    }
    bits.consume(e);
    *w += count;
}

/// The entry of the code that the LONG entry `e` starts, `buf` holding its bits from the first
/// on: one symbol (count 1, all its bits consumed) or EOF
#[cfg(all(not(feature = "small-huffman"), target_pointer_width = "64"))]
#[inline(always)]
fn long_entry(e: u64, buf: u64) -> u64 {
    let first = (e >> 24) as usize & 0xFF;
    let rest = (buf >> LOOKUP_BITS) as usize & ((1 << LONG_BITS) - 1);
    LONG_CODES[(first | rest) & 0xFF]
}

/// The entry of the code that the LONG entry `e` starts, `buf` holding its bits from the first
/// on: one symbol (count 1, all its bits consumed) or EOF
#[cfg(all(not(feature = "small-huffman"), not(target_pointer_width = "64")))]
#[inline(never)]
fn long_entry(e: u64, buf: u64) -> u64 {
    let mut node = (e >> SYM_SHIFT) as usize & 0xFFFF;
    let mut bits = buf >> LOOKUP_BITS;
    let mut used = u64::from(LOOKUP_BITS);
    while node >= SYMBOLS {
        node = tree_child(node, bits);
        bits >>= 1;
        used += 1;
    }
    if node == usize::from(EOF) {
        EOF_FLAG
    } else {
        ((node as u64) << SYM_SHIFT) | used | (1 << COUNT_SHIFT)
    }
}

/// The 8 bytes of `b` at `at` as a little-endian word (zero when out of range)
#[cfg(not(feature = "small-huffman"))]
#[inline(always)]
fn load(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).map_or(0, |w| {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        u64::from_le_bytes(a)
    })
}

/// The bits of `data` from bit `p` on, bit `p` in bit 0: at least 57 of them, zero past the end
/// of `data` (which holds at least 8 bytes)
#[cfg(not(feature = "small-huffman"))]
#[inline(always)]
fn bits_at(data: &[u8], p: usize) -> u64 {
    let at = p >> 3;
    let n = data.len();
    let word = if at + 8 <= n {
        load(data, at)
    } else if at < n {
        // the last 8 bytes, shifted so that the byte at `at` comes first
        load(data, n - 8) >> (8 * (at + 8 - n))
    } else {
        0
    };
    word >> (p & 7)
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
            .map_or(0, |&b| (code_word(usize::from(b)) >> 16) as usize);
    }
    DecompressError::Truncated { decoded: o }
}

/// Inputs from this many bytes on are decoded as three streams at once ([`decompress_streams`])
#[cfg(all(not(feature = "small-huffman"), target_pointer_width = "64"))]
const STREAMS_MIN: usize = 128;
#[cfg(all(not(feature = "small-huffman"), target_pointer_width = "64"))]
const _: () = assert!(stream_starts(STREAMS_MIN)[0] * 8 >= 64);

/// How the bytes of a stream's buffer end ([`Piece`])
#[cfg(all(not(feature = "small-huffman"), target_pointer_width = "64"))]
#[derive(Clone, Copy)]
enum End {
    /// EOF follows them, within the input
    Eof,
    /// The input ends before the next code does
    Truncated,
    /// Decoding goes on from this bit (the buffer was full)
    Resume(usize),
}

/// What a stream decoded from its start: `count` bytes of its buffer, then `end`
#[cfg(all(not(feature = "small-huffman"), target_pointer_width = "64"))]
#[derive(Clone, Copy)]
struct Piece {
    count: usize,
    end: End,
}

/// The sum of the code lengths of `bytes`
#[cfg(all(not(feature = "small-huffman"), target_pointer_width = "64"))]
fn bits_of(bytes: &[u8]) -> usize {
    bytes.iter().map(|&b| code_len(u16::from(b)) as usize).sum()
}

/// A finished stream's result as a [`Piece`] of its buffer `buf`, the stream having started at
/// bit `start`
#[cfg(all(not(feature = "small-huffman"), target_pointer_width = "64"))]
fn piece_of(result: Result<usize, DecompressError>, buf: &[u8], start: usize) -> Piece {
    match result {
        Ok(count) => Piece {
            count,
            end: End::Eof,
        },
        Err(DecompressError::Truncated { decoded }) => Piece {
            count: decoded,
            end: End::Truncated,
        },
        Err(DecompressError::OutputFull { limit }) => Piece {
            count: limit,
            end: End::Resume(start + bits_of(buf.get(..limit).unwrap_or(&[]))),
        },
    }
}

/// Go on with a stream (at bit `p`, `o` bytes in `dst`, started at bit `start`) until it stands
/// on a code boundary of the next stream (started at bit `next_start`, `next` of `next_buf`
/// decoded), then append the next stream's bytes from that boundary on: as many as fit, the
/// rest to be decoded again from where they start. Without a common boundary (the next stream
/// ended early: a false EOF, or its buffer was full) the stream decodes the rest alone.
#[cfg(all(not(feature = "small-huffman"), target_pointer_width = "64"))]
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn join(
    input: &[u8],
    mut p: usize,
    dst: &mut [u8],
    mut o: usize,
    start: usize,
    next_start: usize,
    next_buf: &[u8],
    next: Piece,
) -> Piece {
    use core::cmp::Ordering;
    let input_bits = input.len() * 8;
    // the next stream's decoded bytes (its buffer holds scratch bytes after them)
    let known = next_buf.get(..next.count).unwrap_or(&[]);
    let (mut q, mut i) = (next_start, 0);
    let mut stop = next_start;
    loop {
        match decode_from(input, input_bits, p, dst, o, stop) {
            Flow::Done(r) => return piece_of(r, dst, start),
            Flow::Paused { p: at, o: written } => (p, o) = (at, written),
        }
        while q < p {
            let Some(&b) = known.get(i) else { break };
            q += code_len(u16::from(b)) as usize;
            i += 1;
        }
        match q.cmp(&p) {
            // a common boundary
            Ordering::Equal => break,
            // the next stream's bytes ran out before it: the rest alone
            Ordering::Less => {
                let r = finish(decode_from(input, input_bits, p, dst, o, usize::MAX));
                return piece_of(r, dst, start);
            }
            // go on to the next stream's next boundary
            Ordering::Greater => stop = q,
        }
    }
    // in step at the next stream's byte `i`: its bytes from there on are the true ones; as many
    // as fit
    let tail = known.get(i..).unwrap_or(&[]);
    let free = dst.get_mut(o..).unwrap_or(&mut []);
    let n = tail.len().min(free.len());
    if let (Some(to), Some(from)) = (free.get_mut(..n), tail.get(..n)) {
        to.copy_from_slice(from);
    }
    Piece {
        count: o + n,
        end: if n == tail.len() {
            next.end
        } else {
            End::Resume(q + bits_of(tail.get(..n).unwrap_or(&[])))
        },
    }
}

/// The bytes where the second and third stream of [`decompress_streams`] start in an input of
/// `len` bytes
#[cfg(all(not(feature = "small-huffman"), target_pointer_width = "64"))]
const fn stream_starts(len: usize) -> [usize; 2] {
    [len / 3, len * 2 / 3]
}

/// Decode a long input as three streams at once, starting at its first byte and at the bytes a
/// third and two thirds in
///
/// Each lookup waits for the one before it (its bit position depends on the code lengths found),
/// so one stream leaves most of the CPU idle. The later streams most likely start inside a code
/// and decode into buffers on the stack; a prefix code usually falls into step with the true
/// code boundaries after a few codes (not always: on periodic input it may never). Then, from the
/// last stream back: each stream goes on until it stands on a code boundary of the next one,
/// where the next one's bytes become the true continuation and are appended ([`join`]), or, when
/// there is none, decodes the rest alone. The first stream starts at bit 0, so the result is
/// that of the one-stream decoder, errors included.
#[cfg(all(not(feature = "small-huffman"), target_pointer_width = "64"))]
#[inline(never)]
fn decompress_streams(input: &[u8], out: &mut [u8]) -> Result<usize, DecompressError> {
    let input_bits = input.len() * 8;
    let [sb, sc] = stream_starts(input.len()).map(|byte| byte * 8);
    const ROW: usize = MAX_DECOMPRESSED_LEN;
    let limit = out.len().min(ROW);
    let mut rows = [[0u8; ROW]; 2];
    let [row_b, row_c] = &mut rows;
    let (mut oa, mut ob, mut oc) = (0, 0, 0);
    // the three streams, one lookup of each in turn, while nothing needs care: each stays 64
    // bits before where the next one started (the last: before the end of the input), none has
    // met EOF (which moves its position out of range), each has room for four lookups
    let mut a = Plain::at(input, 0);
    let mut b = Plain::at(input, sb);
    let mut c = Plain::at(input, sc);
    // (no underflow: STREAMS_MIN makes a third of the input at least 64 bits)
    let (end_a, end_b, end_c) = (sb - 64, sc - 64, input_bits - 64);
    while a.p <= end_a && b.p <= end_b && c.p <= end_c && ob + 32 <= limit && oc + 32 <= limit {
        // (`min` only shows the compiler that the rows' windows are in range)
        let (Some(wa), Some(wb), Some(wc)) = (
            out.get_mut(oa..).and_then(|o| o.first_chunk_mut::<32>()),
            row_b[ob.min(ROW - 32)..].first_chunk_mut::<32>(),
            row_c[oc.min(ROW - 32)..].first_chunk_mut::<32>(),
        ) else {
            break;
        };
        a.start_group(input);
        b.start_group(input);
        c.start_group(input);
        let (mut ka, mut kb, mut kc) = (0, 0, 0);
        // four rounds, written out: a loop here is not unrolled, and its counter costs a register
        step(input, &mut a, wa, &mut ka);
        step(input, &mut b, wb, &mut kb);
        step(input, &mut c, wc, &mut kc);
        step(input, &mut a, wa, &mut ka);
        step(input, &mut b, wb, &mut kb);
        step(input, &mut c, wc, &mut kc);
        step(input, &mut a, wa, &mut ka);
        step(input, &mut b, wb, &mut kb);
        step(input, &mut c, wc, &mut kc);
        step(input, &mut a, wa, &mut ka);
        step(input, &mut b, wb, &mut kb);
        step(input, &mut c, wc, &mut kc);
        a.end_group();
        b.end_group();
        c.end_group();
        oa += ka;
        ob += kb;
        oc += kc;
    }
    // the last stream to its end, the middle one up to it, the first up to the middle one
    let (out_b, out_c) = (&mut row_b[..limit], &mut row_c[..limit]);
    let rc = finish(decode_from(
        input,
        input_bits,
        c.pos(),
        out_c,
        oc,
        usize::MAX,
    ));
    let pc = piece_of(rc, out_c, sc);
    let pb = join(input, b.pos(), out_b, ob, sb, sc, out_c, pc);
    let pa = join(input, a.pos(), out, oa, 0, sb, out_b, pb);
    match pa.end {
        End::Eof => Ok(pa.count),
        End::Truncated => Err(DecompressError::Truncated { decoded: pa.count }),
        End::Resume(at) => finish(decode_from(
            input,
            input_bits,
            at,
            out,
            pa.count,
            usize::MAX,
        )),
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
    // `usize`, not `u16`: no partial-register writes on x86, no zero extensions on Arm
    let mut node = usize::from(ROOT);
    let mut n = 0usize;
    for &byte in input {
        for bit in 0..8 {
            node = tree_child(node, u64::from(byte >> bit));
            if node == usize::from(EOF) {
                return Ok(n);
            }
            if node < SYMBOLS {
                if n == limit {
                    return Err(DecompressError::OutputFull { limit });
                }
                let b = node as u8;
                if let Some(o) = out.get_mut(n) {
                    *o = b;
                }
                *tail = [tail[1], tail[2], tail[3], b];
                n += 1;
                node = usize::from(ROOT);
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

#[cfg(test)]
mod tests {
    extern crate alloc;
    use super::*;
    use alloc::{vec, vec::Vec};

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
    fn a_buffer_of_exactly_the_decoded_length_takes_an_eof_that_ends_the_input() {
        // a caller that knows the length decodes into exactly that much room: then every
        // symbol goes through the exact one-at-a-time path (no 32 bytes of room for the fast
        // one), and when the EOF code's last bit is the input's last bit (newer DDNet sends
        // nothing after it) the packet is whole, not truncated
        let mut aligned = 0;
        for n in 1..48usize {
            for seed in 0u8..6 {
                let msg: Vec<u8> = (0..n)
                    .map(|i| (i as u8).wrapping_mul(seed.wrapping_add(3)) ^ seed)
                    .collect();
                let mut packed = vec![0u8; 2 * n + 8];
                let mut len = compress(&msg, &mut packed).unwrap();
                let bits: u32 =
                    msg.iter().map(|&b| code_len(u16::from(b))).sum::<u32>() + code_len(EOF);
                if bits.is_multiple_of(8) {
                    // newer DDNet's form: without 16.4's `00` byte after a byte-aligned EOF
                    assert_eq!(packed[len - 1], 0);
                    len -= 1;
                    aligned += 1;
                }
                let mut out = vec![0u8; n];
                assert_eq!(decompress(&packed[..len], &mut out), Ok(n), "{msg:02x?}");
                assert_eq!(out, msg);
            }
        }
        // the case the test is about does occur
        assert!(aligned >= 10, "{aligned}");
    }

    #[test]
    fn packed_tree_is_the_tree() {
        for node in SYMBOLS as u16..=ROOT {
            for bit in 0..2u64 {
                // only the lowest bit of `bit` chooses
                let want = usize::from(child(node, bit));
                let n = usize::from(node);
                assert_eq!(tree_child(n, bit), want, "{node} {bit}");
                assert_eq!(packed_child(n, bit), want, "{node} {bit}");
                assert_eq!(tree_child(n, bit | 6), want, "{node} {bit}");
                assert_eq!(packed_child(n, bit | 6), want, "{node} {bit}");
            }
        }
        // both halves hold data: leaves and internal children, ninth bits set and clear
        assert!(TREE_HIGH.iter().any(|&b| b != 0) && TREE_HIGH.iter().any(|&b| b != 0xFF));
    }

    #[test]
    fn code_words_of_either_table_are_the_built_codes() {
        let built = build_codes();
        let marked = mark_codes(built);
        for (i, &word) in built.iter().enumerate() {
            assert_eq!(code_word(i), word, "{i}");
            assert_eq!(unmark(marked[i]), word, "{i}");
            assert_eq!(u32::from(marked[i]) >> (word >> 16), 1, "{i}: the mark");
        }
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
    fn four_long_codes_in_a_row() {
        // 0x77 has a 15-bit code: four in one group of lookups take 60 bits, all the buffer
        // held (found by the huffman fuzz target); Miri runs the short runs only
        let max = if cfg!(miri) { 24 } else { 300 };
        for n in 1..max {
            for lead in [
                &[][..],
                &[0x00][..],
                &[0xb1, 0x18][..],
                &[0x01, 0x02, 0x03][..],
            ] {
                let mut plain = lead.to_vec();
                plain.extend(core::iter::repeat_n(0x77, n));
                let mut packed = vec![0u8; compressed_len(&plain)];
                let len = compress(&plain, &mut packed).unwrap();
                for limit in [plain.len(), plain.len() + 1, MAX_DECOMPRESSED_LEN] {
                    let mut out = vec![0u8; limit];
                    assert_eq!(
                        decompress(&packed[..len], &mut out),
                        Ok(plain.len()),
                        "n {n} limit {limit}"
                    );
                    assert_eq!(out[..plain.len()], plain[..]);
                }
            }
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

    #[test]
    #[cfg(all(target_pointer_width = "64", not(feature = "small-huffman")))]
    fn later_stream_meeting_a_false_eof() {
        // The codes of 07 86 repeated are a 17-bit period that holds the 15 EOF bits from its
        // bit 11 on, inside a code. For the repetition counts below, the byte where the second
        // or the third stream of the multi-stream decoder starts falls on such a bit 11: that
        // stream meets EOF at once and never falls into step; the stream before it decodes on
        // alone.
        let mut found = [0; 2];
        for k in 64..400 {
            let plain: Vec<u8> = [0x07, 0x86].repeat(k);
            let mut packed = vec![0u8; compressed_len(&plain)];
            let n = compress(&plain, &mut packed).unwrap();
            if n < STREAMS_MIN {
                continue;
            }
            for (j, start) in stream_starts(n).into_iter().enumerate() {
                let bit = start * 8;
                if bit % 17 != 11 || bit + 15 > 17 * 2 * k / 2 {
                    continue;
                }
                assert_eq!(
                    decode_bits(&packed[start..], 8, &mut [], &mut [0; 4]),
                    Ok(0),
                    "k = {k}"
                );
                found[j] += 1;
                let mut out = [0u8; MAX_DECOMPRESSED_LEN];
                assert_eq!(decompress(&packed, &mut out), Ok(2 * k));
                assert_eq!(out[..2 * k], plain[..]);
                for (input, limit) in [
                    (&packed[..n - 2], 1394),
                    (&packed[..], 2 * k - 1),
                    (&packed[..], 100),
                ] {
                    let mut slow = vec![0u8; limit];
                    assert_eq!(
                        decompress(input, &mut out[..limit]),
                        decode_bits(input, limit, &mut slow, &mut [0; 4])
                    );
                }
            }
        }
        assert!(found[0] > 0 && found[1] > 0, "{found:?}");
    }

    /// Streams for the differential test: compressed data (from all zeros to random bytes),
    /// whole, cut short, with bits flipped or bytes appended; arbitrary bytes; runs of one byte
    /// (zeros decode as an endless run of 0x80)
    fn stream() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        use proptest::strategy::Just;
        let packed = (
            0u32..=10,
            proptest::collection::vec(any::<u8>(), 0..1600),
            any::<u16>(),
            proptest::collection::vec(any::<u16>(), 0..4),
            proptest::collection::vec(any::<u8>(), 0..4),
        )
            .prop_map(|(zeros, mut plain, cut, flips, tail)| {
                for (i, b) in plain.iter_mut().enumerate() {
                    if (i as u32 * 7 + u32::from(*b)) % 10 < zeros {
                        *b = 0;
                    }
                }
                let mut packed = vec![0u8; compressed_len(&plain)];
                let n = compress(&plain, &mut packed).unwrap();
                packed.truncate(n);
                if cut % 3 == 0 {
                    packed.truncate(usize::from(cut) % (n + 1));
                }
                let bits = packed.len() * 8;
                for f in flips {
                    if bits > 0 {
                        let f = usize::from(f) % bits;
                        packed[f / 8] ^= 1 << (f % 8);
                    }
                }
                packed.extend_from_slice(&tail);
                packed
            });
        // runs of one byte value, compressed: long runs of one code length (e.g. four 15-bit
        // codes in a row, which empty a 60-bit buffer) at every alignment
        let long_code = prop_oneof![
            Just(0x77u8),                                                    // 15 bits
            proptest::sample::select(&[0x6cu8, 0x76, 0x7e, 0xf0, 0xf8][..]), // 14 bits
            proptest::sample::select(&[0x36u8, 0x3c, 0x3e, 0x5a, 0x5c][..]), // 13 bits
            any::<u8>(),
        ];
        let runs = (
            proptest::collection::vec((long_code, 1usize..300), 1..4),
            any::<u16>(),
        )
            .prop_map(|(runs, cut)| {
                let plain: Vec<u8> = runs.iter().flat_map(|&(b, n)| vec![b; n]).collect();
                let mut packed = vec![0u8; compressed_len(&plain)];
                let n = compress(&plain, &mut packed).unwrap();
                packed.truncate(if cut % 4 == 0 {
                    usize::from(cut) % (n + 1)
                } else {
                    n
                });
                packed
            });
        prop_oneof![
            5 => packed,
            3 => runs,
            2 => proptest::collection::vec(any::<u8>(), 0..1600),
            1 => (any::<u8>(), 0usize..1600).prop_map(|(b, n)| vec![b; n]),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 1500, ..Default::default() })]

        /// The table-driven decoder (one stream for short inputs, three at once for long ones)
        /// against the bit-by-bit one: same result, same bytes
        #[test]
        fn table_decoder_equals_bit_by_bit(
            input in stream(),
            limit in proptest::prop_oneof![0usize..64, 64usize..1394, proptest::strategy::Just(MAX_DECOMPRESSED_LEN), 1395usize..5000],
        ) {
            let mut fast_out = vec![0u8; limit];
            let mut slow_out = vec![0u8; limit];
            let fast = decompress(&input, &mut fast_out);
            let slow = decode_bits(&input, limit, &mut slow_out, &mut [0; 4]);
            proptest::prop_assert_eq!(fast, slow);
            if let Ok(n) = fast {
                proptest::prop_assert_eq!(&fast_out[..n], &slow_out[..n]);
            }
        }
    }
}
