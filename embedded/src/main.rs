//! Placeholder firmware: proves the crate links with no allocator (filled in with both profiles)
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use panic_semihosting as _;

#[entry]
fn main() -> ! {
    let mut clock = tether::time::Clock::new();
    let now = clock.update(tether::Instant::from_millis(5));
    hprintln!("tether firmware: now={}ms", now.as_millis());
    debug::exit(debug::EXIT_SUCCESS);
    loop {}
}
