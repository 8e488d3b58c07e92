//! Huffman codec against public test data: libtw2's code table (`huffman/data/repr`, one code per
//! symbol, first choice first) and its 202 `test_cases` (captured Teeworlds traffic compressed by
//! the reference encoder, 16.4 form), plus the live DDNet 16.4 captures

use tether_net::game::huffman::{
    code, compress, compressed_len, decompress, DecompressError, Encoder, EOF, MAX_DECOMPRESSED_LEN,
};
use tether_net::testing::from_hex as hex;

#[test]
fn code_table_equals_libtw2_repr() {
    let repr = include_str!("data/huffman_codes.txt");
    let lines: Vec<&str> = repr.lines().collect();
    assert_eq!(lines.len(), 257);
    for (symbol, line) in lines.iter().enumerate() {
        let (bits, len) = code(symbol as u16);
        let ours: String = (0..len)
            .map(|i| if bits >> i & 1 == 1 { '1' } else { '0' })
            .collect();
        assert_eq!(&ours, line, "symbol {symbol}");
    }
    assert_eq!(code(EOF).1, 15);
}

#[test]
fn libtw2_test_cases_compress_and_decompress() {
    let cases = include_str!("data/huffman_test_cases.txt");
    let mut n = 0;
    for line in cases.lines() {
        let (plain, packed) = line.split_once('#').unwrap();
        let (plain, packed) = (hex(plain), hex(packed));
        let mut out = vec![0u8; packed.len() + 8];
        let len = compress(&plain, &mut out).unwrap();
        assert_eq!(&out[..len], &packed[..], "compress {plain:02x?}");
        assert_eq!(compressed_len(&plain), len);
        let mut back = vec![0u8; MAX_DECOMPRESSED_LEN];
        let m = decompress(&packed, &mut back).unwrap();
        assert_eq!(&back[..m], &plain[..]);
        n += 1;
    }
    assert_eq!(n, 202);
}

#[test]
fn spec_vectors_of_real_payloads() {
    // INFO chunk + token (30 B): 41 B compressed, so a sender keeps it raw
    let mut info = hex("41 07 01 03");
    info.extend_from_slice(b"0.6 626fce9a778df4d4\0\0");
    info.extend_from_slice(&[0x12, 0x34, 0x56, 0x78]);
    let packed = hex(
        "bc dd d0 c2 75 17 7d 0d 6b 5f e3 8b af a1 f3 d4 91 13 e0 9c a3 14 47 71 a8 8b 13 e9 3c \
         8f 38 91 47 73 79 a4 0b d7 a6 b8 01",
    );
    let mut out = [0u8; 64];
    assert_eq!(compress(&info, &mut out), Ok(41));
    assert_eq!(&out[..41], &packed[..]);
    // bounded to the raw size, the encoder reports OutputFull (the sender's "send raw" signal)
    assert!(compress(&info, &mut out[..info.len() - 1]).is_err());

    // live C→S INPUT payload (22 B) → 15 B, accepted by DDNet 16.4
    let mut input = hex("01 00 21 90 01 92 01 28");
    input.extend_from_slice(&[0; 10]);
    input.extend_from_slice(&[0x40, 0x72, 0xf6, 0x5a]);
    let packed = hex("98 91 49 64 81 d6 ff 95 e0 c4 31 8a 4b 71 03");
    assert_eq!(compress(&input, &mut out), Ok(15));
    assert_eq!(&out[..15], &packed[..]);
    let mut back = [0u8; MAX_DECOMPRESSED_LEN];
    assert_eq!(decompress(&packed, &mut back), Ok(22));
    assert_eq!(&back[..22], &input[..]);

    // live S→C payload (49 B) → 30 B, ending with 16.4's extra zero byte
    let mut s2c = hex("00 04 13 8c 01 11 02 05 0f 8c 01 02 e9 f3 a4 dd 01 1b 00 01 00 09 00 02");
    s2c.extend_from_slice(&[0; 21]);
    s2c.extend_from_slice(&[0xa4, 0x27, 0xdf, 0x91]);
    let packed = hex(
        "3d 55 b4 d0 94 b0 bb a3 85 c2 35 49 9d 6d aa 47 68 31 b3 f8 ff ff b6 65 99 b6 1f 14 37 00",
    );
    assert_eq!(compress(&s2c, &mut out), Ok(30));
    assert_eq!(&out[..30], &packed[..]);
    // both forms decode: with the extra byte and without it (newer DDNet)
    assert_eq!(decompress(&packed, &mut back), Ok(49));
    assert_eq!(&back[..49], &s2c[..]);
    assert_eq!(decompress(&packed[..29], &mut back), Ok(49));
    assert_eq!(&back[..49], &s2c[..]);
}

#[test]
fn encoder_in_pieces_equals_one_shot() {
    let data: Vec<u8> = (0..=255u8).chain(0..=255u8).collect();
    let mut one = vec![0u8; 2048];
    let n = compress(&data, &mut one).unwrap();
    for cut in [0, 1, 7, 255, 511, 512] {
        let mut out = vec![0u8; 2048];
        let mut e = Encoder::new(&mut out);
        e.push(&data[..cut]).unwrap();
        e.push(&data[cut..]).unwrap();
        let m = e.finish().unwrap();
        assert_eq!(&out[..m], &one[..n], "cut at {cut}");
    }
}

#[test]
fn huffman_bomb_stops_at_the_output_limit() {
    // every 0xFF byte is eight 1-bits: eight 0x00 symbols, never EOF. A full datagram's payload
    // claims 11,176 bytes; the decoder must stop at the buffer and say so.
    let bomb = [0xFFu8; 1397];
    let mut out = vec![0u8; MAX_DECOMPRESSED_LEN];
    assert_eq!(
        decompress(&bomb, &mut out),
        Err(DecompressError::OutputFull {
            limit: MAX_DECOMPRESSED_LEN
        })
    );
    // zero bits decode as endless 0x80: same
    assert_eq!(
        decompress(&[0u8; 1397], &mut out),
        Err(DecompressError::OutputFull {
            limit: MAX_DECOMPRESSED_LEN
        })
    );
    // and every output size, including 0, stops cleanly
    for limit in 0..64 {
        let mut small = vec![0u8; limit];
        assert_eq!(
            decompress(&bomb[..16], &mut small),
            Err(DecompressError::OutputFull { limit })
        );
    }
}

#[test]
fn every_truncation_is_an_error_until_eof_is_complete() {
    let data = b"\x00\x04\x13\x8c\x01\x11 snapshot data with some text \x00\x00\x00\xff\xfe";
    let mut packed = [0u8; 128];
    let n = compress(data, &mut packed).unwrap();
    // where each symbol's code ends, in bits from the start
    let ends: Vec<usize> = data
        .iter()
        .scan(0, |at, &b| {
            *at += code(u16::from(b)).1 as usize;
            Some(*at)
        })
        .collect();
    let eof_bits = ends[ends.len() - 1] + 15;
    let mut out = [0u8; 128];
    let mut on_a_boundary = 0;
    for cut in 0..=n {
        let r = decompress(&packed[..cut], &mut out);
        if cut * 8 >= eof_bits {
            assert_eq!(r, Ok(data.len()), "cut {cut}");
        } else {
            // the symbols whose codes end within the cut input count as decoded, a code cut
            // in two does not; a cut right after a code counts that code
            let complete = ends.iter().filter(|&&end| end <= cut * 8).count();
            on_a_boundary += usize::from(ends.contains(&(cut * 8)));
            assert_eq!(
                r,
                Err(DecompressError::Truncated { decoded: complete }),
                "cut {cut}"
            );
            assert_eq!(out[..complete], data[..complete], "cut {cut}");
        }
    }
    // the data has cuts that fall right after a code (not only inside one)
    assert!(on_a_boundary >= 2, "{on_a_boundary}");
    // an output one byte short is OutputFull, whatever the input length
    assert_eq!(
        decompress(&packed[..n], &mut out[..data.len() - 1]),
        Err(DecompressError::OutputFull {
            limit: data.len() - 1
        })
    );
}

#[test]
fn bits_after_eof_are_ignored() {
    let mut packed = [0u8; 64];
    let n = compress(b"abc", &mut packed).unwrap();
    for junk in [0x00u8, 0xFF, 0x5A] {
        let mut with_junk = packed[..n].to_vec();
        with_junk.extend_from_slice(&[junk; 9]);
        // the last byte's unused high bits too
        *with_junk.get_mut(n - 1).unwrap() |= junk & 0x80;
        let mut out = [0u8; 16];
        let m = decompress(&with_junk, &mut out).unwrap();
        assert_eq!(&out[..m], b"abc");
        // a long tail after EOF (a datagram padded with junk): the long-input decoder, which
        // reads three parts of the input at once, stops at EOF in its first part as well
        with_junk.extend_from_slice(&[junk; 1000]);
        let mut out = [0u8; 1400];
        let m = decompress(&with_junk, &mut out).unwrap();
        assert_eq!(&out[..m], b"abc");
    }
}
