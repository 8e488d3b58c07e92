//! Game packets an off-path sender forges (it does not know the connection's token)
#![allow(dead_code)]

use tether_net::game::chunk::{write_packet, Chunk, ChunkWriter};
use tether_net::game::wire::{Flags, Header, Token};

/// A chunk packet whose payload (one non-vital chunk and `token`) is Huffman-compressed, as an
/// off-path sender that does not know the token would forge it (ack 0)
pub fn compressed_chunk_packet(token: Token) -> Vec<u8> {
    let mut chunks = [0u8; 64];
    let mut w = ChunkWriter::new(&mut chunks, 64);
    // mostly zero bytes: Huffman makes them much shorter, so the packet is compressed
    w.push(&Chunk::non_vital(&[0; 24])).unwrap();
    let n = w.len();
    let header = Header {
        flags: Flags::default(),
        ack: 0,
        num_chunks: 1,
    };
    let mut out = [0u8; 128];
    let len = write_packet(header, &chunks[..n], Some(token), true, &mut out).unwrap();
    assert_ne!(out[0] & 0x80, 0, "the forged packet is compressed");
    out[..len].to_vec()
}
