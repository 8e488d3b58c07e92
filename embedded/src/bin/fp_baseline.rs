//! Footprint baseline: the shared skeleton and buffers, no machine
#![no_std]
#![no_main]

#[path = "../fp_common.rs"]
mod fp_common;

use core::hint::black_box;

#[cortex_m_rt::entry]
fn main() -> ! {
    let state: &'static mut u32 = cortex_m::singleton!(: u32 = 0).unwrap();
    let (mut rx, mut tx) = ([0u8; 1400], [0u8; 1400]);
    let mut tick = 0;
    loop {
        let i = fp_common::inputs(&mut rx, &mut tick);
        *state = state.wrapping_add(u32::from(i.command));
        black_box(&rx[..i.len]);
        black_box(&mut tx);
        black_box((i.now, &mut *state));
    }
}
