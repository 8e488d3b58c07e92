//! Footprint: Huffman compress + decompress (and the buffer-less tail decoder) through the fixed
//! drive loop; with the firmware feature `small-huffman` the bit-by-bit decoder
#![no_std]
#![no_main]

#[path = "../fp_common.rs"]
mod fp_common;

use core::hint::black_box;

use tether_net::game::huffman;

#[cortex_m_rt::entry]
fn main() -> ! {
    let (mut rx, mut tx) = ([0u8; 1400], [0u8; 1400]);
    let mut tick = 0;
    loop {
        let i = fp_common::inputs(&mut rx, &mut tick);
        let n = huffman::compress(&rx[..i.len.min(1390)], &mut tx);
        let m = huffman::decompress(&rx[..i.len], &mut tx);
        let t = huffman::decompressed_tail(&rx[..i.len]);
        let _ = black_box((n, m, t, &tx));
    }
}
