//! QEMU firmware: runs tether's game and LongPort machines client <-> server in memory, and the
//! game chunk layer (vital channel, Huffman) against a peer played with the codecs, with no
//! global allocator, and exits 0 only when every step matched
//!
//! `cargo run --release` (thumbv7m-none-eabi, lm3s6965evb) or
//! `cargo run --release --target thumbv6m-none-eabi` (Cortex-M0, microbit).
#![no_std]
#![no_main]

mod chunks;
mod clock;
mod game;
mod longport;
mod runner;
mod stack;

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use panic_semihosting as _;

#[entry]
fn main() -> ! {
    hprintln!(
        "tether firmware on {} (no global allocator)",
        env!("FW_TARGET")
    );
    let mut runner = runner::Runner::default();
    stack::paint();
    game::run(&mut runner);
    let (game_stack, size) = stack::peak();
    stack::report("game");
    stack::paint();
    chunks::run(&mut runner);
    let (chunks_stack, _) = stack::peak();
    stack::report("chunks");
    stack::paint();
    longport::run(&mut runner);
    let (lp_stack, _) = stack::peak();
    stack::report("longport");
    hprintln!(
        "peak stack use: game {} B, chunk layer {} B, longport {} B, of {} B",
        game_stack,
        chunks_stack,
        lp_stack,
        size
    );
    hprintln!("{} passed, {} failed", runner.passed, runner.failed);
    let ok = runner.failed == 0 && runner.passed > 0;
    debug::exit(if ok {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    #[allow(clippy::empty_loop)]
    loop {}
}
