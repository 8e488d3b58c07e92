//! Huffman: any input compresses to exactly `compressed_len` bytes and decompresses back (also
//! without the final byte when it is 16.4's extra zero byte); the decoder on any bytes never
//! panics, never writes past its buffer, and its errors are exact: `Ok(n)` means the input starts
//! with the encoding of those n bytes, `OutputFull` means a larger buffer decodes more,
//! `Truncated` means a larger buffer stops at the same place.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_net::game::huffman::{code, compress, compressed_len, decompress, DecompressError};

const BIG: usize = 8 * 4096 + 8;

fuzz_target!(|data: &[u8]| {
    // round trip
    let len = compressed_len(data);
    let mut packed = vec![0u8; len];
    assert_eq!(compress(data, &mut packed), Ok(len));
    assert!(compress(data, &mut packed[..len - 1]).is_err());
    let mut out = vec![0u8; data.len()];
    assert_eq!(decompress(&packed, &mut out), Ok(data.len()));
    assert_eq!(out, data);
    if packed[len - 1] == 0 {
        // possibly the extra byte: the shorter form must decode too when EOF ended on a byte
        let bits: usize = data
            .iter()
            .map(|&b| code(u16::from(b)).1 as usize)
            .sum::<usize>()
            + 15;
        if bits % 8 == 0 {
            assert_eq!(decompress(&packed[..len - 1], &mut out), Ok(data.len()));
        }
    }

    // the decoder on the raw input, with a limit taken from the first byte
    let limit = usize::from(data.first().copied().unwrap_or(0)) * 8;
    let mut small = vec![0u8; limit];
    let mut big = vec![0u8; BIG];
    let wide = decompress(data, &mut big);
    match decompress(data, &mut small) {
        Ok(n) => {
            assert_eq!(wide, Ok(n));
            assert_eq!(small[..n], big[..n]);
            let bits: usize = small[..n]
                .iter()
                .map(|&b| code(u16::from(b)).1 as usize)
                .sum::<usize>()
                + 15;
            let mut again = vec![0u8; compressed_len(&small[..n])];
            compress(&small[..n], &mut again).unwrap();
            assert_eq!(data[..bits / 8], again[..bits / 8]);
            if bits % 8 != 0 {
                let mask = (1u8 << (bits % 8)) - 1;
                assert_eq!(data[bits / 8] & mask, again[bits / 8] & mask);
            }
        }
        Err(DecompressError::OutputFull { limit: l }) => {
            assert_eq!(l, limit);
            match wide {
                Ok(n) => assert!(n > limit),
                Err(DecompressError::Truncated { decoded }) => assert!(decoded > limit),
                Err(DecompressError::OutputFull { .. }) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
        Err(DecompressError::Truncated { decoded }) => {
            assert!(decoded <= limit);
            assert_eq!(wide, Err(DecompressError::Truncated { decoded }));
        }
        Err(e) => panic!("{e:?}"),
    }
});
