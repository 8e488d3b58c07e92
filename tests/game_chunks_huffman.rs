//! Huffman codec against public test data: libtw2's code table (`huffman/data/repr`, one code per
//! symbol, first choice first) and its 202 `test_cases` (captured Teeworlds traffic compressed by
//! the reference encoder, 16.4 form), plus the live DDNet 16.4 captures

use tether_net::game::huffman::{
    code, compress, compressed_len, decompress, EOF, MAX_DECOMPRESSED_LEN,
};

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect()
}

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
