//! The skeleton every footprint variant shares: entry glue, an opaque input source, a sink
//!
//! Each `fp-*` binary puts one machine in a static (`singleton!`, so its size shows up as static
//! RAM) and runs it through the same fixed loop: opaque input bytes and time, the role's
//! commands behind an opaque selector, then the run loop (`handle_input`, `handle_timeout`,
//! drain `poll_transmit` and `poll_event`, `poll_timeout`). `core::hint::black_box` keeps the
//! optimiser from assuming anything about inputs or discarding outputs. `fp-baseline` runs the
//! loop without a machine; the footprint script subtracts it.

use core::hint::black_box;

use tether_net::{Instant, Machine};

/// A panic parks the core: no formatting machinery is linked (the variants are measured, not run)
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        cortex_m::asm::nop();
    }
}

/// Opaque inputs for one loop iteration
#[allow(dead_code)] // not every variant reads every input
pub struct Inputs {
    /// Time of this iteration
    pub now: Instant,
    /// Which command to issue (opaque)
    pub command: u8,
    /// Length of the input bytes in `rx`
    pub len: usize,
}

/// Fresh opaque inputs; `rx` is treated as overwritten
pub fn inputs(rx: &mut [u8], tick: &mut u64) -> Inputs {
    black_box(&mut *rx);
    *tick = tick.wrapping_add(black_box(1_000));
    Inputs {
        now: Instant::from_micros(black_box(*tick)),
        command: black_box(0),
        len: black_box(rx.len()).min(rx.len()),
    }
}

/// The run loop after an input: timers, transmits, events, next deadline
#[allow(dead_code)] // not every variant uses the generic loop
pub fn run_loop<M: Machine>(m: &mut M, now: Instant, tx: &mut [u8])
where
    M::Event: Sized,
{
    m.handle_timeout(now);
    while let Ok(Some(t)) = m.poll_transmit(now, tx) {
        black_box(&tx[..t.len.min(tx.len())]);
        black_box(&t.to);
    }
    while let Some(ev) = m.poll_event() {
        black_box(&ev);
    }
    black_box(m.poll_timeout());
}
