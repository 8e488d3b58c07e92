//! gzip codec: the gzip heartbeat response vector, round-trips against flate2, hand-built malformed
//! deflate streams
//! and never-panic properties

use std::io::{Read, Write};
use std::sync::OnceLock;

use flate2::{read::GzDecoder, write::GzEncoder, Compression, Crc, GzBuilder};
use proptest::prelude::*;
use tether_net::longport::gzip::{
    crc32, crc32_update, gunzip, gunzip_member, gzip_stored, stored_len, GzipError, HEADER_LEN,
};
use tether_net::BufferTooSmall;

/// Heartbeat{timestamp = 1700000000000}
const HEARTBEAT: [u8; 7] = [0x08, 0x80, 0xd0, 0x95, 0xff, 0xbc, 0x31];

/// A gzip heartbeat response packet (10-byte LongPort header, then a 30-byte gzip member)
const V12: [u8; 40] = [
    0x22, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x1e, 0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0xff, 0x01, 0x07, 0x00, 0xf8, 0xff, 0x08, 0x80, 0xd0, 0x95, 0xff, 0xbc, 0x31,
    0x6d, 0x3e, 0x6e, 0x14, 0x07, 0x00, 0x00, 0x00,
];

fn v12_member() -> &'static [u8] {
    &V12[10..]
}

fn flate(data: &[u8], level: u32) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::new(level));
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn flate2_decode(member: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    GzDecoder::new(member).read_to_end(&mut out).unwrap();
    out
}

fn independent_crc(data: &[u8]) -> u32 {
    let mut crc = Crc::new();
    crc.update(data);
    crc.sum()
}

/// Our decoder, into a buffer exactly `cap` bytes long
fn decode(member: &[u8], cap: usize) -> Result<Vec<u8>, GzipError> {
    let mut out = vec![0u8; cap];
    let n = gunzip(member, &mut out)?;
    out.truncate(n);
    Ok(out)
}

/// Wrap a raw deflate stream in a minimal gzip member whose trailer describes `decoded`
fn wrap(deflate: &[u8], decoded: &[u8]) -> Vec<u8> {
    let mut m = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    m.extend_from_slice(deflate);
    m.extend_from_slice(&independent_crc(decoded).to_le_bytes());
    m.extend_from_slice(&(decoded.len() as u32).to_le_bytes());
    m
}

/// Deflate bit packer: plain values go LSB first, Huffman codes MSB first (RFC 1951 3.1.1)
#[derive(Default)]
struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl BitWriter {
    fn bits(&mut self, value: u32, n: u32) -> &mut Self {
        self.acc |= u64::from(value) << self.n;
        self.n += n;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
        self
    }

    fn code(&mut self, (code, len): (u32, u32)) -> &mut Self {
        for i in (0..len).rev() {
            self.bits((code >> i) & 1, 1);
        }
        self
    }

    fn finish(&mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        core::mem::take(&mut self.out)
    }
}

/// Fixed literal/length code of `sym` (RFC 1951 3.2.6)
fn fixed_lit(sym: u32) -> (u32, u32) {
    match sym {
        0..=143 => (0x30 + sym, 8),
        144..=255 => (0x190 + sym - 144, 9),
        256..=279 => (sym - 256, 7),
        _ => (0xC0 + sym - 280, 8),
    }
}

/// Fixed distance code of `sym`
fn fixed_dist(sym: u32) -> (u32, u32) {
    (sym, 5)
}

/// `(code, length)` of each symbol of a Huffman code
type Codes = Vec<(u32, u32)>;

/// Canonical codes for code lengths (RFC 1951 3.2.2)
fn canonical(lengths: &[u8]) -> Codes {
    let mut count = [0u32; 16];
    for &l in lengths {
        count[usize::from(l)] += 1;
    }
    count[0] = 0;
    let mut next = [0u32; 16];
    let mut code = 0;
    for bits in 1..16 {
        code = (code + count[bits - 1]) << 1;
        next[bits] = code;
    }
    lengths
        .iter()
        .map(|&l| {
            let l = usize::from(l);
            let c = next[l];
            next[l] += 1;
            (c, l as u32)
        })
        .collect()
}

const CL_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// One code-length-alphabet item: symbol, extra-bit value, extra-bit count
type ClItem = (usize, u32, u32);

/// Write a dynamic block header: HLIT/HDIST as counts, the code-length code, then `items`
fn dynamic_header(
    w: &mut BitWriter,
    bfinal: bool,
    hlit: u32,
    hdist: u32,
    cl_lengths: [u8; 19],
    items: &[ClItem],
) {
    w.bits(u32::from(bfinal), 1).bits(2, 2);
    w.bits(hlit - 257, 5).bits(hdist - 1, 5).bits(15, 4); // HCLEN = 19
    for &sym in &CL_ORDER {
        w.bits(u32::from(cl_lengths[sym]), 3);
    }
    let cl = canonical(&cl_lengths);
    for &(sym, extra, extra_bits) in items {
        w.code(cl[sym]);
        w.bits(extra, extra_bits);
    }
}

/// Code-length code giving symbols 0..=15 four bits each (complete) and no repeat codes
const CL_PLAIN: [u8; 19] = [4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 0, 0, 0];

/// A dynamic block header sending every length literally; returns the lit and dist codes
fn dynamic_plain(w: &mut BitWriter, lit: &[u8], dist: &[u8]) -> (Codes, Codes) {
    let items: Vec<ClItem> = lit
        .iter()
        .chain(dist)
        .map(|&l| (usize::from(l), 0, 0))
        .collect();
    dynamic_header(
        w,
        true,
        lit.len() as u32,
        dist.len() as u32,
        CL_PLAIN,
        &items,
    );
    (canonical(lit), canonical(dist))
}

fn lit_lengths(pairs: &[(usize, u8)]) -> Vec<u8> {
    let mut l = vec![0u8; 286];
    for &(sym, len) in pairs {
        l[sym] = len;
    }
    l
}

// ---------------------------------------------------------------------------------------------
// Spec vector and encoder

#[test]
fn v12_decodes_to_heartbeat_body() {
    let mut out = [0u8; 64];
    assert_eq!(gunzip_member(v12_member(), &mut out), Ok((7, 30)));
    assert_eq!(out[..7], HEARTBEAT);
    assert_eq!(crc32(&HEARTBEAT), 0x146E_3E6D);
    // A buffer of exactly the body size is enough; one byte less is not.
    assert_eq!(decode(v12_member(), 7).unwrap(), HEARTBEAT);
    assert_eq!(
        decode(v12_member(), 6),
        Err(GzipError::OutputLimit { limit: 6 })
    );
}

#[test]
fn gzip_stored_reproduces_v12() {
    let mut out = [0u8; 64];
    let n = gzip_stored(&HEARTBEAT, &mut out).unwrap();
    assert_eq!(n, 30);
    assert_eq!(stored_len(HEARTBEAT.len()), 30);
    assert_eq!(&out[..n], v12_member());
}

#[test]
fn crc32_check_value() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32(b""), 0);
    assert_eq!(crc32_update(crc32(b"12345"), b"6789"), 0xCBF4_3926);
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
    assert_eq!(crc32(&data), independent_crc(&data));
}

#[test]
fn stored_len_is_exact_across_block_boundaries() {
    for len in [
        0usize, 1, 7, 65_534, 65_535, 65_536, 131_070, 131_071, 200_000,
    ] {
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut out = vec![0u8; stored_len(len)];
        let n = gzip_stored(&data, &mut out).unwrap();
        assert_eq!(n, out.len(), "len {len}");
        assert_eq!(n, 18 + 5 * len.div_ceil(65_535).max(1) + len);
        assert_eq!(
            flate2_decode(&out),
            data,
            "flate2 reads our member, len {len}"
        );
        assert_eq!(decode(&out, len).unwrap(), data, "len {len}");
    }
}

#[test]
fn gzip_stored_refuses_short_buffer_without_writing() {
    let mut out = [0xAAu8; 29];
    assert_eq!(
        gzip_stored(&HEARTBEAT, &mut out),
        Err(BufferTooSmall { required: 30 })
    );
    assert!(out.iter().all(|&b| b == 0xAA));
    assert_eq!(
        gzip_stored(b"", &mut [0u8; 22]),
        Err(BufferTooSmall { required: 23 })
    );
    let mut out = [0u8; 23];
    assert_eq!(gzip_stored(b"", &mut out), Ok(23));
    assert_eq!(decode(&out, 0).unwrap(), b"");
}

// ---------------------------------------------------------------------------------------------
// Real encoders and header fields

fn sample_text(len: usize) -> Vec<u8> {
    let words: [&[u8]; 8] = [
        b"quote ",
        b"depth ",
        b"700.HK ",
        b"AAPL.US ",
        b"subscribe ",
        b"\x00\x01",
        b"9",
        b"\n",
    ];
    let mut state = 0x2545_F491u32;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        out.extend_from_slice(words[(state % 8) as usize]);
    }
    out.truncate(len);
    out
}

#[test]
fn flate2_levels_decode() {
    let text = sample_text(100_000);
    for level in [0, 1, 6, 9] {
        let member = flate(&text, level);
        let mut out = vec![0u8; text.len()];
        assert_eq!(
            gunzip_member(&member, &mut out),
            Ok((text.len(), member.len()))
        );
        assert_eq!(out, text, "level {level}");
    }
    assert_eq!(decode(&flate(b"", 6), 0).unwrap(), b"");
}

#[test]
fn flate2_header_fields_are_skipped() {
    let body = sample_text(3000);
    let mut enc = GzBuilder::new()
        .filename("quotes.pb")
        .comment("a comment")
        .extra(vec![b'A', b'P', 3, 0, 1, 2, 3])
        .mtime(1_700_000_000)
        .operating_system(3)
        .write(Vec::new(), Compression::new(6));
    enc.write_all(&body).unwrap();
    let member = enc.finish().unwrap();
    assert_eq!(member[3], 0x04 | 0x08 | 0x10, "FEXTRA | FNAME | FCOMMENT");
    assert_eq!(decode(&member, body.len()).unwrap(), body);

    // Add FHCRC by hand: the header CRC16 is the low half of the CRC32 of the header bytes.
    let header_end = HEADER_LEN + 2 + 7 + b"quotes.pb\0".len() + b"a comment\0".len();
    let mut with_hcrc = member.clone();
    with_hcrc[3] |= 0x02;
    let crc16 = independent_crc(&with_hcrc[..header_end]) as u16;
    with_hcrc.splice(header_end..header_end, crc16.to_le_bytes());
    assert_eq!(
        flate2_decode(&with_hcrc),
        body,
        "flate2 accepts the FHCRC member"
    );
    let mut out = vec![0u8; body.len()];
    assert_eq!(
        gunzip_member(&with_hcrc, &mut out),
        Ok((body.len(), with_hcrc.len()))
    );
    assert_eq!(out, body);

    // A wrong header CRC, or a changed header byte under a correct-looking CRC, is rejected.
    let mut bad = with_hcrc.clone();
    bad[header_end] ^= 1;
    assert_eq!(decode(&bad, body.len()), Err(GzipError::HeaderCrc));
    let mut bad = with_hcrc.clone();
    bad[HEADER_LEN + 5] ^= 1; // inside the FEXTRA payload
    assert_eq!(decode(&bad, body.len()), Err(GzipError::HeaderCrc));
    // FHCRC alone, on a minimal header.
    let mut minimal = flate(b"hi", 6);
    minimal[3] = 0x02;
    let crc16 = independent_crc(&minimal[..HEADER_LEN]) as u16;
    minimal.splice(HEADER_LEN..HEADER_LEN, crc16.to_le_bytes());
    assert_eq!(decode(&minimal, 2).unwrap(), b"hi");
}

#[test]
fn header_errors() {
    let good = flate(b"hello", 6);
    let with = |i: usize, v: u8| {
        let mut m = good.clone();
        m[i] = v;
        m
    };
    assert_eq!(decode(&with(0, 0x1e), 16), Err(GzipError::BadMagic));
    assert_eq!(decode(&with(1, 0x8c), 16), Err(GzipError::BadMagic));
    assert_eq!(
        decode(&[0x78, 0x9c, 0x01], 16),
        Err(GzipError::BadMagic),
        "zlib is not gzip"
    );
    assert_eq!(decode(&with(2, 7), 16), Err(GzipError::UnsupportedMethod));
    for bit in [0x20, 0x40, 0x80] {
        assert_eq!(decode(&with(3, bit), 16), Err(GzipError::ReservedFlags));
    }
    // FTEXT is only a hint, MTIME/XFL/OS are informational.
    assert_eq!(decode(&with(3, 0x01), 16).unwrap(), b"hello");
    assert_eq!(decode(&with(9, 0x0b), 16).unwrap(), b"hello");
    // Optional fields running past the input.
    let fextra = [
        0x1f, 0x8b, 8, 0x04, 0, 0, 0, 0, 0, 0xff, 0x10, 0x00, 1, 2, 3,
    ];
    assert_eq!(decode(&fextra, 16), Err(GzipError::HeaderTruncated));
    // An extra field that ends exactly where the input ends is a whole header: what is missing
    // is the deflate stream.
    let fextra_whole = [
        0x1f, 0x8b, 8, 0x04, 0, 0, 0, 0, 0, 0xff, 0x03, 0x00, 1, 2, 3,
    ];
    assert_eq!(decode(&fextra_whole, 16), Err(GzipError::Truncated));
    let fname = [0x1f, 0x8b, 8, 0x08, 0, 0, 0, 0, 0, 0xff, b'a', b'b'];
    assert_eq!(decode(&fname, 16), Err(GzipError::HeaderTruncated));
    let fcomment = [0x1f, 0x8b, 8, 0x10, 0, 0, 0, 0, 0, 0xff, b'a'];
    assert_eq!(decode(&fcomment, 16), Err(GzipError::HeaderTruncated));
    let fhcrc = [0x1f, 0x8b, 8, 0x02, 0, 0, 0, 0, 0, 0xff, 0x12];
    assert_eq!(decode(&fhcrc, 16), Err(GzipError::HeaderTruncated));
    assert_eq!(decode(&[], 16), Err(GzipError::HeaderTruncated));
}

#[test]
fn trailing_bytes_are_ignored_but_reported() {
    let first = flate(b"first member", 6);
    let mut input = first.clone();
    input.extend_from_slice(&flate(b"second member", 6));
    input.extend_from_slice(b"\0\0junk");
    let mut out = [0u8; 64];
    assert_eq!(gunzip_member(&input, &mut out), Ok((12, first.len())));
    assert_eq!(&out[..12], b"first member");
    assert_eq!(gunzip(&input, &mut out), Ok(12));
}

// ---------------------------------------------------------------------------------------------
// Limits and integrity

#[test]
fn decompression_bomb_hits_output_limit() {
    let bomb = flate(&vec![0u8; 1 << 20], 9);
    assert!(
        bomb.len() < 2048,
        "1 MiB of zeros compresses to {} bytes",
        bomb.len()
    );
    let limit = 64 * 1024;
    let mut buf = vec![0xAAu8; limit + 4096];
    assert_eq!(
        gunzip(&bomb, &mut buf[..limit]),
        Err(GzipError::OutputLimit { limit })
    );
    assert!(
        buf[limit..].iter().all(|&b| b == 0xAA),
        "nothing written past the limit"
    );
    assert!(
        buf[..limit - 258].iter().all(|&b| b == 0),
        "output up to the limit is real data"
    );
    // With room for it, the same member decodes.
    assert_eq!(decode(&bomb, 1 << 20).unwrap().len(), 1 << 20);
}

#[test]
fn output_limit_on_each_kind_of_write() {
    // Stored block one byte too big.
    assert_eq!(
        decode(v12_member(), 6),
        Err(GzipError::OutputLimit { limit: 6 })
    );
    // Literal and match in a fixed block: "ab" then a 5-byte copy at distance 2.
    let mut w = BitWriter::default();
    w.bits(1, 1).bits(1, 2);
    w.code(fixed_lit(u32::from(b'a')))
        .code(fixed_lit(u32::from(b'b')));
    w.code(fixed_lit(259)).code(fixed_dist(1)); // length 5, distance 2
    w.code(fixed_lit(256));
    let member = wrap(&w.finish(), b"abababa");
    assert_eq!(decode(&member, 7).unwrap(), b"abababa");
    assert_eq!(decode(&member, 6), Err(GzipError::OutputLimit { limit: 6 }));
    assert_eq!(decode(&member, 1), Err(GzipError::OutputLimit { limit: 1 }));
    assert_eq!(decode(&member, 0), Err(GzipError::OutputLimit { limit: 0 }));
}

#[test]
fn corrupted_crc_and_isize() {
    let body = sample_text(5000);
    let member = flate(&body, 6);
    let n = member.len();
    let crc = independent_crc(&body);

    let mut bad = member.clone();
    bad[n - 8] ^= 0x01;
    assert_eq!(
        decode(&bad, body.len()),
        Err(GzipError::CrcMismatch {
            expected: crc ^ 1,
            actual: crc
        })
    );

    let mut bad = member.clone();
    bad[n - 4..].copy_from_slice(&4999u32.to_le_bytes());
    assert_eq!(
        decode(&bad, body.len()),
        Err(GzipError::SizeMismatch {
            expected: 4999,
            actual: 5000
        })
    );
}

#[test]
fn truncated_at_every_byte_is_an_error() {
    let mut named = GzBuilder::new()
        .filename("n")
        .comment("c")
        .extra(vec![1, 2, 0, 0])
        .write(Vec::new(), Compression::new(9));
    named.write_all(&sample_text(600)).unwrap();
    let named = named.finish().unwrap();
    let named_header = HEADER_LEN + 2 + 4 + 2 + 2;
    let cases: [(Vec<u8>, usize); 4] = [
        (v12_member().to_vec(), HEADER_LEN),
        (flate(&sample_text(400), 1), HEADER_LEN),
        (flate(&sample_text(2000), 9), HEADER_LEN),
        (named, named_header),
    ];
    for (member, header_len) in &cases {
        assert!(decode(member, 4096).is_ok());
        for cut in 0..member.len() {
            let expected = if cut < *header_len {
                GzipError::HeaderTruncated
            } else {
                GzipError::Truncated
            };
            assert_eq!(decode(&member[..cut], 4096), Err(expected), "cut at {cut}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hand-built malformed deflate streams

#[test]
fn invalid_block_type() {
    for first_byte in [0x07u8, 0x06] {
        let member = wrap(&[first_byte, 0, 0, 0], b"");
        assert_eq!(decode(&member, 16), Err(GzipError::InvalidBlockType));
    }
    // A good first block does not excuse a bad second one.
    let mut w = BitWriter::default();
    w.bits(0, 1)
        .bits(1, 2)
        .code(fixed_lit(u32::from(b'x')))
        .code(fixed_lit(256));
    w.bits(1, 1).bits(3, 2);
    assert_eq!(
        decode(&wrap(&w.finish(), b"x"), 16),
        Err(GzipError::InvalidBlockType)
    );
}

#[test]
fn stored_len_nlen_mismatch() {
    let mut m = v12_member().to_vec();
    m[13] = 0xf7; // NLEN low byte
    assert_eq!(decode(&m, 16), Err(GzipError::StoredLengthMismatch));
    let mut m = v12_member().to_vec();
    m[11] = 0x08; // LEN
    assert_eq!(decode(&m, 16), Err(GzipError::StoredLengthMismatch));
}

#[test]
fn stored_block_after_unaligned_bits() {
    // A fixed block "z", then a stored block (which starts on the next byte boundary), final.
    let mut w = BitWriter::default();
    w.bits(0, 1)
        .bits(1, 2)
        .code(fixed_lit(u32::from(b'z')))
        .code(fixed_lit(256));
    w.bits(1, 1).bits(0, 2);
    let mut deflate = w.finish();
    deflate.extend_from_slice(&[3, 0, 0xfc, 0xff, b'a', b'b', b'c']);
    assert_eq!(decode(&wrap(&deflate, b"zabc"), 16).unwrap(), b"zabc");
}

#[test]
fn distance_too_far() {
    // A match as the very first symbol.
    let mut w = BitWriter::default();
    w.bits(1, 1)
        .bits(1, 2)
        .code(fixed_lit(257))
        .code(fixed_dist(0))
        .code(fixed_lit(256));
    assert_eq!(
        decode(&wrap(&w.finish(), b"aaa"), 16),
        Err(GzipError::DistanceTooFar)
    );
    // One literal, then distance 2.
    let mut w = BitWriter::default();
    w.bits(1, 1).bits(1, 2).code(fixed_lit(u32::from(b'a')));
    w.code(fixed_lit(257))
        .code(fixed_dist(1))
        .code(fixed_lit(256));
    assert_eq!(
        decode(&wrap(&w.finish(), b"aaaa"), 16),
        Err(GzipError::DistanceTooFar)
    );
    // Control: distance 1 is fine and repeats the byte (overlapping copy).
    let mut w = BitWriter::default();
    w.bits(1, 1).bits(1, 2).code(fixed_lit(u32::from(b'a')));
    w.code(fixed_lit(257))
        .code(fixed_dist(0))
        .code(fixed_lit(256));
    assert_eq!(decode(&wrap(&w.finish(), b"aaaa"), 16).unwrap(), b"aaaa");
    // Largest distance, 32768, with extra bits, across a stored block of 32768 bytes.
    let data: Vec<u8> = (0..32_768u32).map(|i| (i % 253) as u8).collect();
    let mut deflate = vec![0u8, 0x00, 0x80, 0xff, 0x7f];
    deflate.extend_from_slice(&data);
    let mut w = BitWriter::default();
    w.bits(1, 1)
        .bits(1, 2)
        .code(fixed_lit(285))
        .code(fixed_dist(29))
        .bits(8191, 13);
    w.code(fixed_lit(256));
    deflate.extend_from_slice(&w.finish());
    let mut expected = data.clone();
    expected.extend_from_slice(&data[..258]);
    assert_eq!(
        decode(&wrap(&deflate, &expected), 40_000).unwrap(),
        expected
    );
}

#[test]
fn invalid_fixed_symbols() {
    for sym in [286, 287] {
        let mut w = BitWriter::default();
        w.bits(1, 1)
            .bits(1, 2)
            .code(fixed_lit(u32::from(b'a')))
            .code(fixed_lit(sym));
        w.code(fixed_dist(0)).code(fixed_lit(256));
        assert_eq!(
            decode(&wrap(&w.finish(), b""), 16),
            Err(GzipError::InvalidSymbol),
            "{sym}"
        );
    }
    for dsym in [30, 31] {
        let mut w = BitWriter::default();
        w.bits(1, 1)
            .bits(1, 2)
            .code(fixed_lit(u32::from(b'a')))
            .code(fixed_lit(257));
        w.code(fixed_dist(dsym)).code(fixed_lit(256));
        assert_eq!(
            decode(&wrap(&w.finish(), b""), 16),
            Err(GzipError::InvalidSymbol),
            "{dsym}"
        );
    }
}

#[test]
fn dynamic_block_with_single_distance_code() {
    // lit: 'a' 2 bits, EOB 2 bits, length-3 symbol 1 bit; dist: one code of one bit (incomplete,
    // allowed for distances only).
    let lit = lit_lengths(&[(97, 2), (256, 2), (257, 1)]);
    let mut w = BitWriter::default();
    let (lc, dc) = dynamic_plain(&mut w, &lit, &[1]);
    w.code(lc[97]).code(lc[257]).code(dc[0]).code(lc[256]);
    assert_eq!(decode(&wrap(&w.finish(), b"aaaa"), 16).unwrap(), b"aaaa");
    // The unused distance code (bit 1) is an invalid symbol.
    let mut w = BitWriter::default();
    let (lc, _) = dynamic_plain(&mut w, &lit, &[1]);
    w.code(lc[97]).code(lc[257]).bits(1, 1).code(lc[256]);
    assert_eq!(
        decode(&wrap(&w.finish(), b""), 16),
        Err(GzipError::InvalidSymbol)
    );
}

#[test]
fn dynamic_block_without_distance_codes() {
    let lit = lit_lengths(&[(97, 2), (98, 2), (256, 2), (257, 2)]);
    let mut w = BitWriter::default();
    let (lc, _) = dynamic_plain(&mut w, &lit, &[0]);
    w.code(lc[97]).code(lc[98]).code(lc[256]);
    assert_eq!(decode(&wrap(&w.finish(), b"ab"), 16).unwrap(), b"ab");
    // A match needs a distance code, and there is none.
    let mut w = BitWriter::default();
    let (lc, _) = dynamic_plain(&mut w, &lit, &[0]);
    w.code(lc[97]).code(lc[257]).bits(0, 1).code(lc[256]);
    assert_eq!(
        decode(&wrap(&w.finish(), b""), 16),
        Err(GzipError::InvalidSymbol)
    );
}

#[test]
fn dynamic_block_with_fifteen_bit_codes() {
    // Lengths 1, 2, ..., 14, 15 for symbols 0..=14 and 15 for EOB: complete, deepest possible.
    let pairs: Vec<(usize, u8)> = (0..15)
        .map(|s| (s, s as u8 + 1))
        .chain([(256, 15)])
        .collect();
    let lit = lit_lengths(&pairs);
    let mut w = BitWriter::default();
    let (lc, _) = dynamic_plain(&mut w, &lit, &[0]);
    for sym in [14, 13, 0, 9, 14, 1] {
        w.code(lc[sym]);
    }
    w.code(lc[256]);
    let expected = [14u8, 13, 0, 9, 14, 1];
    assert_eq!(decode(&wrap(&w.finish(), &expected), 16).unwrap(), expected);
}

#[test]
fn dynamic_block_invalid_code_lengths() {
    let check = |lit: &[u8], dist: &[u8], what: &str| {
        let mut w = BitWriter::default();
        dynamic_plain(&mut w, lit, dist);
        w.bits(0, 16);
        assert_eq!(
            decode(&wrap(&w.finish(), b""), 16),
            Err(GzipError::InvalidCodeLengths),
            "{what}"
        );
    };
    check(
        &lit_lengths(&[(0, 1), (1, 1), (256, 1)]),
        &[1],
        "over-subscribed literal code",
    );
    check(
        &lit_lengths(&[(65, 1), (256, 2)]),
        &[1],
        "incomplete literal code",
    );
    check(
        &lit_lengths(&[(256, 1)]),
        &[1],
        "literal code with only end-of-block",
    );
    check(
        &lit_lengths(&[(0, 1), (1, 1)]),
        &[1],
        "no end-of-block code",
    );
    let lit = lit_lengths(&[(97, 1), (256, 1)]);
    check(&lit, &[1, 1, 1], "over-subscribed distance code");
    check(
        &lit,
        &[2, 2, 2],
        "incomplete distance code with three codes",
    );
    check(&lit, &[2], "single distance code longer than one bit");

    // HLIT 287 and 288 (more than the 286 defined literal/length codes), with code lengths that
    // would otherwise be valid: 'a' and EOB one bit each, one distance code.
    for hlit in [287, 288] {
        let mut lit = lit_lengths(&[(97, 1), (256, 1)]);
        lit.resize(hlit, 0);
        let mut w = BitWriter::default();
        let (lc, _) = dynamic_plain(&mut w, &lit, &[1]);
        w.code(lc[97]).code(lc[256]);
        assert_eq!(
            decode(&wrap(&w.finish(), b"a"), 16),
            Err(GzipError::InvalidCodeLengths),
            "HLIT {hlit}"
        );
    }
    // Control: the same with HLIT 286 decodes.
    let lit = lit_lengths(&[(97, 1), (256, 1)]);
    let mut w = BitWriter::default();
    let (lc, _) = dynamic_plain(&mut w, &lit, &[1]);
    w.code(lc[97]).code(lc[256]);
    assert_eq!(decode(&wrap(&w.finish(), b"a"), 16).unwrap(), b"a");

    // Incomplete or over-subscribed code-length code.
    for cl0 in [[1u8, 0, 0], [1, 1, 1]] {
        let mut cl = [0u8; 19];
        cl[..3].copy_from_slice(&cl0);
        let mut w = BitWriter::default();
        dynamic_header(&mut w, true, 257, 1, cl, &[]);
        w.bits(0, 32);
        assert_eq!(
            decode(&wrap(&w.finish(), b""), 16),
            Err(GzipError::InvalidCodeLengths)
        );
    }

    // Repeat codes: code-length code with 0, 1, 16, 17, 18 (lengths 2, 2, 2, 3, 3).
    let mut cl = [0u8; 19];
    cl[0] = 2;
    cl[1] = 2;
    cl[16] = 2;
    cl[17] = 3;
    cl[18] = 3;
    let run = |items: &[ClItem]| {
        let mut w = BitWriter::default();
        dynamic_header(&mut w, true, 257, 1, cl, items);
        w.bits(0, 32);
        decode(&wrap(&w.finish(), b""), 16)
    };
    // "Repeat previous" with nothing before it.
    assert_eq!(run(&[(16, 0, 2)]), Err(GzipError::InvalidCodeLengths));
    // Zero runs past HLIT + HDIST = 258: 138 + 138 > 258.
    assert_eq!(
        run(&[(18, 127, 7), (18, 127, 7)]),
        Err(GzipError::InvalidCodeLengths)
    );
    // 16 repeating past the end: 254 zeros, then 1, 1 and "repeat 3 more" reaches 259.
    let items = [(18, 127, 7), (18, 105, 7), (1, 0, 0), (1, 0, 0), (16, 0, 2)];
    assert_eq!(run(&items), Err(GzipError::InvalidCodeLengths));
    // Control: repeats that fit exactly, giving 'a' (97) and EOB one bit each, one distance code.
    let items = [
        (18, 97 - 11, 7),  // 0..=96: zero
        (1, 0, 0),         // 97: length 1
        (18, 138 - 11, 7), // 98..=235: zero
        (17, 10 - 3, 3),   // 236..=245: zero
        (17, 10 - 3, 3),   // 246..=255: zero
        (1, 0, 0),         // 256: length 1
        (1, 0, 0),         // distance 0: length 1
    ];
    let mut w = BitWriter::default();
    dynamic_header(&mut w, true, 257, 1, cl, &items);
    w.bits(0, 1).bits(0, 1).bits(1, 1); // 'a', 'a', EOB (codes: 97 -> 0, 256 -> 1)
    assert_eq!(decode(&wrap(&w.finish(), b"aa"), 16).unwrap(), b"aa");
}

#[test]
fn many_empty_blocks_stay_linear() {
    // 20 000 empty stored blocks, then an empty final one.
    let mut deflate = Vec::new();
    for _ in 0..20_000 {
        deflate.extend_from_slice(&[0, 0, 0, 0xff, 0xff]);
    }
    deflate.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    assert_eq!(decode(&wrap(&deflate, b""), 0).unwrap(), b"");
    // 5 000 empty fixed blocks alternating with empty dynamic ones (each forces a table rebuild).
    let lit = lit_lengths(&[(97, 1), (256, 1)]);
    let mut w = BitWriter::default();
    for _ in 0..5_000 {
        w.bits(0, 1).bits(1, 2).code(fixed_lit(256));
        let items: Vec<ClItem> = lit
            .iter()
            .chain(&[1])
            .map(|&l| (usize::from(l), 0, 0))
            .collect();
        dynamic_header(&mut w, false, 286, 1, CL_PLAIN, &items);
        w.bits(1, 1); // EOB
    }
    w.bits(1, 1)
        .bits(1, 2)
        .code(fixed_lit(u32::from(b'k')))
        .code(fixed_lit(256));
    assert_eq!(decode(&wrap(&w.finish(), b"k"), 4).unwrap(), b"k");
}

#[test]
fn errors_display_and_are_std_errors() {
    let errors = [
        GzipError::BadMagic,
        GzipError::UnsupportedMethod,
        GzipError::ReservedFlags,
        GzipError::HeaderTruncated,
        GzipError::HeaderCrc,
        GzipError::Truncated,
        GzipError::InvalidBlockType,
        GzipError::StoredLengthMismatch,
        GzipError::InvalidCodeLengths,
        GzipError::InvalidSymbol,
        GzipError::DistanceTooFar,
        GzipError::OutputLimit { limit: 65_536 },
        GzipError::CrcMismatch {
            expected: 1,
            actual: 2,
        },
        GzipError::SizeMismatch {
            expected: 3,
            actual: 4,
        },
    ];
    let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
    for (i, t) in texts.iter().enumerate() {
        assert!(!t.is_empty());
        assert!(!texts[..i].contains(t), "duplicate message {t}");
        let _: &dyn core::error::Error = &errors[i];
    }
    assert!(texts[11].contains("65536"));
}

// ---------------------------------------------------------------------------------------------
// Properties

fn body_strategy() -> impl Strategy<Value = Vec<u8>> {
    let phrases = (
        prop::collection::vec(prop::collection::vec(any::<u8>(), 1..24), 1..12),
        prop::collection::vec(any::<prop::sample::Index>(), 0..6000),
    )
        .prop_map(|(words, picks)| {
            let mut out = Vec::new();
            for p in picks {
                let word: &Vec<u8> = p.get(&words);
                out.extend_from_slice(word);
            }
            out.truncate(64 * 1024);
            out
        });
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64 * 1024),
        prop::collection::vec(0u8..4, 0..64 * 1024),
        phrases,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn roundtrip_flate2_levels(data in body_strategy()) {
        for level in [0, 1, 6, 9] {
            let member = flate(&data, level);
            let mut out = vec![0u8; data.len()];
            prop_assert_eq!(gunzip_member(&member, &mut out), Ok((data.len(), member.len())));
            prop_assert!(out == data, "level {}", level);
            if !data.is_empty() {
                let limit = data.len() - 1;
                prop_assert_eq!(decode(&member, limit), Err(GzipError::OutputLimit { limit }));
            }
        }
    }

    #[test]
    fn roundtrip_gzip_stored(data in body_strategy()) {
        let mut member = vec![0u8; stored_len(data.len())];
        let n = gzip_stored(&data, &mut member).unwrap();
        prop_assert_eq!(n, member.len());
        prop_assert!(decode(&member, data.len()).unwrap() == data);
        prop_assert!(flate2_decode(&member) == data);
    }
}

/// A few small members of every block kind, for mutation
fn mutation_corpus() -> &'static [(Vec<u8>, Vec<u8>)] {
    static CORPUS: OnceLock<Vec<(Vec<u8>, Vec<u8>)>> = OnceLock::new();
    CORPUS.get_or_init(build_mutation_corpus)
}

fn build_mutation_corpus() -> Vec<(Vec<u8>, Vec<u8>)> {
    let text = sample_text(700);
    let mut named = GzBuilder::new()
        .filename("x")
        .comment("y")
        .write(Vec::new(), Compression::new(6));
    named.write_all(&text).unwrap();
    let mut stored = vec![0u8; stored_len(40)];
    gzip_stored(&text[..40], &mut stored).unwrap();
    vec![
        (v12_member().to_vec(), HEARTBEAT.to_vec()),
        (stored, text[..40].to_vec()),
        (flate(&text, 1), text.clone()),
        (flate(&text, 9), text.clone()),
        (flate(&text[..60], 6), text[..60].to_vec()),
        (named.finish().unwrap(), text),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn bit_flips_never_panic(
        which in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..4),
        cap in 0usize..1024,
    ) {
        let corpus = mutation_corpus();
        let (member, body) = which.get(corpus);
        let mut m = member.clone();
        for (at, bit) in &flips {
            let i = at.index(m.len());
            m[i] ^= 1 << bit;
        }
        let mut out = vec![0u8; cap];
        if let Ok(n) = gunzip(&m, &mut out) {
            // Only harmless bits can flip (MTIME, XFL, OS, FTEXT, padding): same data.
            prop_assert_eq!(&out[..n], &body[..]);
        }
    }

    #[test]
    fn garbage_after_a_header_never_panics(
        deflate in prop::collection::vec(any::<u8>(), 0..512),
        cap in 0usize..4096,
    ) {
        let mut m = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
        m.extend_from_slice(&deflate);
        let mut out = vec![0u8; cap];
        let _ = gunzip(&m, &mut out);
    }
}

#[test]
fn gzip_error_texts_are_what_a_log_shows() {
    let cases = [
        (GzipError::BadMagic, "gzip: bad magic bytes"),
        (
            GzipError::UnsupportedMethod,
            "gzip: compression method is not deflate",
        ),
        (GzipError::ReservedFlags, "gzip: reserved header flags set"),
        (GzipError::HeaderTruncated, "gzip: truncated header"),
        (GzipError::HeaderCrc, "gzip: header CRC16 mismatch"),
        (
            GzipError::Truncated,
            "gzip: truncated deflate stream or trailer",
        ),
        (GzipError::InvalidBlockType, "deflate: invalid block type 3"),
        (
            GzipError::StoredLengthMismatch,
            "deflate: stored block LEN/NLEN mismatch",
        ),
        (
            GzipError::InvalidCodeLengths,
            "deflate: invalid Huffman code lengths",
        ),
        (
            GzipError::InvalidSymbol,
            "deflate: invalid Huffman code or symbol",
        ),
        (
            GzipError::DistanceTooFar,
            "deflate: back-reference before start of output",
        ),
        (
            GzipError::OutputLimit { limit: 4096 },
            "gzip: decoded data exceeds the 4096-byte output limit",
        ),
        (
            GzipError::CrcMismatch {
                expected: 0x1234,
                actual: 0xdead_beef,
            },
            "gzip: CRC32 mismatch (trailer 0x00001234, data 0xdeadbeef)",
        ),
        (
            GzipError::SizeMismatch {
                expected: 3,
                actual: 4,
            },
            "gzip: ISIZE mismatch (trailer 3, data 4)",
        ),
    ];
    for (e, text) in cases {
        assert_eq!(e.to_string(), text, "{e:?}");
    }
}
