//! Stack use: of a whole scenario (paint the free RAM below the stack with a pattern, look for
//! it afterwards) and of every single call into a machine ([`call`], the [`stack_call!`] macro)
//!
//! cortex-m-rt puts the stack at the top of RAM growing down to `_stack_end` (the end of the
//! statics). The scenario's worlds live on the stack, so a scenario's peak is the RAM it needs
//! beyond its statics. A call's figure is how far below the caller's stack pointer the call
//! wrote: the machine method's frames and everything it calls (plus the few bytes of the
//! closure that makes the call, see [`call`]).

use core::cell::RefCell;
use core::ptr::{addr_of, read_volatile, write_volatile};
use core::sync::atomic::{AtomicUsize, Ordering};

use cortex_m::interrupt::{self, Mutex};
use heapless::Vec;

const PATTERN: u32 = 0x5afe_c0de;
/// Bytes below the current stack pointer left untouched while painting a scenario's stack (the
/// painter's own frame)
const MARGIN: usize = 64;
/// Bytes below the caller's stack pointer painted before each measured call: a call that goes
/// deeper is reported as at least this much (`>=` in the report)
const WINDOW: usize = 12 * 1024;

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

/// Lowest stack address written since the last [`paint`] that a measured call's painting
/// covered again (so [`peak`] still sees it)
static LOWEST: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Keep `addr` in [`LOWEST`] if it is lower and was written (below `high`; load and store:
/// thumbv6m has no atomic min)
fn note_lowest(addr: usize, high: usize) {
    if addr < high {
        LOWEST.store(LOWEST.load(Ordering::Relaxed).min(addr), Ordering::Relaxed);
    }
}

/// Fill `[from, own stack pointer - 16)` with the pattern; returns where it stopped
///
/// The stack pointer is read inside the painter, whose own frame is at most the 16 bytes left
/// out (LLVM may read it before the prologue pushes registers: shrink-wrapping); everything
/// below is free (Arm has no red zone, nothing else runs).
#[inline(never)]
fn paint_below_own_frame(from: usize) -> usize {
    let sp = (cortex_m::register::msp::read() as usize).saturating_sub(16);
    let mut p = from;
    while p + 4 <= sp {
        // SAFETY: RAM between the statics and this function's frame, which nothing uses now
        unsafe { write_volatile(p as *mut u32, PATTERN) };
        p += 4;
    }
    sp
}

/// Fill `[from, to)` with the pattern
#[inline(never)]
fn paint_range(from: usize, to: usize) {
    let mut p = from;
    while p + 4 <= to {
        // SAFETY: the callers pass RAM between the statics and the live stack frames
        unsafe { write_volatile(p as *mut u32, PATTERN) };
        p += 4;
    }
}

/// The first address in `[from, to)` whose word is not the pattern (`to` when there is none)
fn first_dirty(from: usize, to: usize) -> usize {
    let mut p = from;
    // SAFETY: reads RAM between the statics and the top of the stack
    while p + 4 <= to && unsafe { read_volatile(p as *const u32) } == PATTERN {
        p += 4;
    }
    p
}

/// Fill the unused stack area with the pattern (start of a scenario)
#[inline(never)]
pub fn paint() {
    let (bottom, _) = bounds();
    let sp = cortex_m::register::msp::read() as usize;
    LOWEST.store(usize::MAX, Ordering::Relaxed);
    paint_range(bottom, sp.saturating_sub(MARGIN));
}

/// (deepest stack use seen since `paint`, stack area size), in bytes
pub fn peak() -> (usize, usize) {
    let (bottom, top) = bounds();
    let p = first_dirty(bottom, top).min(LOWEST.load(Ordering::Relaxed));
    (top - p, top - bottom)
}

/// Deepest single call per label (e.g. `client.handle_input`) of the running scenario
static CALLS: Mutex<RefCell<Vec<(&'static str, usize), 24>>> = Mutex::new(RefCell::new(Vec::new()));

/// Call `f` (one call into a machine) and record how many bytes of stack it used below the
/// caller's stack pointer under `label` (the deepest per label counts)
///
/// The window below the stack pointer is painted first (up to the painter's own frame, a few
/// words: the smallest figure a call can show); `f` runs in a frame of its own below it (`run`,
/// never inlined), so the figure is the machine method's stack use plus `run`'s frame and the
/// closure's (a few words). Anything dirty in the window beforehand is kept in the scenario
/// peak.
#[inline(always)]
pub fn call<R>(label: &'static str, f: impl FnOnce() -> R) -> R {
    let (bottom, _) = bounds();
    let sp = cortex_m::register::msp::read() as usize;
    let low = sp.saturating_sub(WINDOW).max(bottom);
    note_lowest(first_dirty(low, sp), sp);
    let painted = paint_below_own_frame(low);
    let r = run(f);
    let dirty = first_dirty(low, painted);
    note_lowest(dirty, painted);
    // `dirty == painted` (nothing below the painter's frame written): the call used at most
    // that much; window exhausted: reported as the window (see `report`)
    let used = if dirty <= low { usize::MAX } else { sp - dirty };
    interrupt::free(|cs| {
        let mut calls = CALLS.borrow(cs).borrow_mut();
        match calls.iter_mut().find(|(l, _)| *l == label) {
            Some((_, max)) => *max = (*max).max(used),
            None => {
                // a full table only loses the figure of a new label; the report says so
                if calls.push((label, used)).is_err() {
                    cortex_m_semihosting::hprintln!(
                        "stack: call table full, {} not recorded",
                        label
                    );
                }
            }
        }
    });
    r
}

/// `f()` in a frame of its own, below the stack pointer [`call`] read
#[inline(never)]
fn run<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Print one line per label (`stack call <scenario> <label> = <bytes>`, `>= <WINDOW>` when the
/// window was exhausted) and forget them
pub fn report(scenario: &str) {
    interrupt::free(|cs| {
        let mut calls = CALLS.borrow(cs).borrow_mut();
        for &(label, used) in calls.iter() {
            if used == usize::MAX {
                cortex_m_semihosting::hprintln!("stack call {} {} >= {}", scenario, label, WINDOW);
            } else {
                cortex_m_semihosting::hprintln!("stack call {} {} = {}", scenario, label, used);
            }
        }
        calls.clear();
    });
}

/// `$call` (one call into a machine), its stack use recorded under `$label` (see [`call`])
#[macro_export]
macro_rules! stack_call {
    ($label:expr, $call:expr) => {
        $crate::stack::call($label, || $call)
    };
}
