//! Game chunk layer: `decompress_packet` on any datagram never panics and keeps the header; the
//! chunk iterator over any payload yields complete chunks then at most one error, each chunk
//! re-emits to the same bytes when canonical and always re-parses to itself; the chunks found
//! are packed again with `ChunkWriter` + `write_packet` (compressed when shorter) and come back
//! identical through `decompress_packet` + `wire::parse` + `Chunks`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_net::game::chunk::{
    decompress_packet, write_packet, Chunk, ChunkError, ChunkWriter, Chunks, PushError, SCRATCH_LEN,
};
use tether_net::game::wire::{self, Flags, Header, Packet, Token, TokenMode};

fuzz_target!(|data: &[u8]| {
    // 1. the datagram path
    let mut scratch = vec![0u8; SCRATCH_LEN];
    if let Ok(plain) = decompress_packet(data, &mut scratch) {
        assert!(plain.len() <= 1400);
        assert_eq!(plain[0] & 0x80, 0, "compression flag left set");
        assert_eq!(&plain[1..3], &data[1..3]);
        let _ = wire::parse(plain, TokenMode::Trailing);
    }

    // 2. the chunk iterator over the bytes after a one-byte chunk count
    let Some((&n, payload)) = data.split_first() else {
        return;
    };
    let mut chunks: Vec<Chunk<'_>> = Vec::new();
    let mut used = 0usize;
    let mut it = Chunks::new(payload, n);
    let mut failed = false;
    for item in it.by_ref() {
        assert!(!failed, "item after an error");
        match item {
            Ok(c) => {
                let len = c.buffer_len();
                let mut out = vec![0u8; len];
                assert_eq!(c.emit(&mut out), Ok(len));
                let (again, m) = Chunk::parse(&out).expect("re-parse");
                assert_eq!((again, m), (c, len));
                used += len;
                chunks.push(c);
            }
            Err(ChunkError::TruncatedHeader { index, offset })
            | Err(ChunkError::TruncatedData { index, offset, .. }) => {
                assert_eq!(usize::from(index), chunks.len());
                assert_eq!(offset, used);
                failed = true;
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert!(chunks.len() <= usize::from(n));
    if !failed {
        assert_eq!(chunks.len(), usize::from(n));
        assert_eq!(it.trailing(), &payload[used..]);
    }

    // 3. pack them again into packets of at most 1,390 chunk bytes, compressed when shorter
    let token = Token([0x12, 0x34, 0x56, 0x78]);
    let mut construct = vec![0u8; 1400];
    let mut out = vec![0u8; 1400];
    let mut i = 0;
    while i < chunks.len() {
        let mut w = ChunkWriter::new(&mut construct, 1390);
        let start = i;
        while i < chunks.len() {
            match w.push(&chunks[i]) {
                Ok(()) => i += 1,
                Err(PushError::Full { .. } | PushError::TooManyChunks) => break,
                Err(e) => panic!("{e:?}"),
            }
        }
        assert!(i > start, "a parsed chunk never fits an empty packet");
        let h = Header {
            flags: Flags::default(),
            ack: u16::from(n) * 4,
            num_chunks: w.num_chunks(),
        };
        let len = write_packet(h, w.as_bytes(), Some(token), true, &mut out).unwrap();
        let plain = decompress_packet(&out[..len], &mut scratch).unwrap();
        let Packet::Chunks(p) = wire::parse(plain, TokenMode::Trailing).unwrap().packet else {
            panic!("not a chunk packet");
        };
        assert_eq!(p.token, Some(token));
        let back: Vec<Chunk<'_>> = Chunks::new(p.payload, p.header.num_chunks)
            .map(|c| c.unwrap())
            .collect();
        assert_eq!(back, chunks[start..i]);
    }
});
