//! Footprint: one vital channel (`Vital<2048, 16, 2048, 16>`) with the chunk codec, through the
//! fixed drive loop (queue, timers, fill a packet, take a packet's header and chunks, reorder)
#![no_std]
#![no_main]

#[path = "../fp_common.rs"]
mod fp_common;

use core::hint::black_box;

use tether_net::game::chunk::{ChunkWriter, Chunks};
use tether_net::game::vital::{Vital, VitalConfig};
use tether_net::game::wire::Header;

type V = Vital<2048, 16, 2048, 16>;

#[cortex_m_rt::entry]
fn main() -> ! {
    let v: &'static mut V = cortex_m::singleton!(: V = V::new(VitalConfig::fast())).unwrap();
    let (mut rx, mut tx) = ([0u8; 1400], [0u8; 1400]);
    let mut tick = 0;
    loop {
        let i = fp_common::inputs(&mut rx, &mut tick);
        let now = i.now;
        if i.command == 0 {
            let _ = black_box(v.queue(now, &rx[..i.len.min(64)], true));
        }
        let _ = black_box(v.handle_timeout(now));
        if v.needs_packet(now) || v.needs_ack(now) {
            let mut w = ChunkWriter::new(&mut tx, 1390);
            let _ = black_box(v.fill(now, &mut w));
        }
        if let Ok(h) = Header::parse(&rx[..i.len]) {
            if v.on_packet(now, &h).is_ok() {
                for c in Chunks::new(&rx[3..i.len], h.num_chunks).flatten() {
                    black_box(v.on_chunk(now, &c));
                    while let Some(d) = v.next_ready() {
                        black_box(d);
                    }
                }
            }
        }
        black_box(v.poll_timeout());
    }
}
