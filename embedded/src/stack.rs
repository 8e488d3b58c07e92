//! Peak stack use: paint the free RAM below the stack with a pattern, look for it afterwards
//!
//! cortex-m-rt puts the stack at the top of RAM growing down to `_stack_end` (the end of the
//! statics). The scenario's worlds live on the stack, so this is the RAM the scenario needs
//! beyond its statics.

use core::ptr::{addr_of, read_volatile, write_volatile};

const PATTERN: u32 = 0x5afe_c0de;
/// Bytes below the current stack pointer left untouched while painting (the painter's own frame)
const MARGIN: usize = 64;

extern "C" {
    static _stack_start: u32;
    static _stack_end: u32;
}

fn bounds() -> (usize, usize) {
    // only the addresses of the linker-defined symbols are taken (no read: no unsafe needed)
    (
        addr_of!(_stack_end) as usize,
        addr_of!(_stack_start) as usize,
    )
}

/// Fill the unused stack area with the pattern
#[inline(never)]
pub fn paint() {
    let (bottom, _) = bounds();
    let sp = cortex_m::register::msp::read() as usize;
    let mut p = bottom;
    while p + 4 <= sp.saturating_sub(MARGIN) {
        // SAFETY: [bottom, sp - MARGIN) is RAM between the statics and the live stack frames
        unsafe { write_volatile(p as *mut u32, PATTERN) };
        p += 4;
    }
}

/// (deepest stack use seen since `paint`, stack area size), in bytes
pub fn peak() -> (usize, usize) {
    let (bottom, top) = bounds();
    let mut p = bottom;
    // SAFETY: reads RAM between the statics and the top of the stack
    while p < top && unsafe { read_volatile(p as *const u32) } == PATTERN {
        p += 4;
    }
    (top - p, top - bottom)
}
