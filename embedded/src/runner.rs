//! A tiny in-firmware test runner: named steps, one line each, a summary line
//!
//! Steps of one scenario share a "world" (the machines, the virtual clock, the logs) and run in
//! order. A failing step is reported and the next one still runs: its own checks decide whether
//! the scenario could continue. `main` exits with `EXIT_SUCCESS` only when every step passed.

use core::fmt::{self, Write};

use cortex_m_semihosting::hprintln;

/// Why a step failed: the source line of the check and a message
pub struct Fail {
    /// Line of the failed check in the scenario source
    pub line: u32,
    /// What was expected and what was seen (truncated to the capacity)
    pub msg: heapless::String<400>,
}

impl Fail {
    /// A failure at `line` with a formatted message
    pub fn new(line: u32, args: fmt::Arguments<'_>) -> Self {
        let mut msg = heapless::String::new();
        // a message longer than the capacity is cut; the line number still points at the check
        let _ = msg.write_fmt(args);
        Fail { line, msg }
    }
}

/// Result of one step
pub type StepResult = Result<(), Fail>;

/// A named step over a world `W`
pub type Step<W> = (&'static str, fn(&mut W) -> StepResult);

/// Fail the step unless `cond` holds
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($crate::runner::Fail::new(line!(), format_args!($($fmt)+)));
        }
    };
}

/// Fail the step unless both sides are equal; shows both
#[macro_export]
macro_rules! ensure_eq {
    ($left:expr, $right:expr) => {{
        let (l, r) = (&$left, &$right);
        if l != r {
            return Err($crate::runner::Fail::new(
                line!(),
                format_args!("got {:?}, expected {:?}", l, r),
            ));
        }
    }};
}

/// Turn any `Result<T, E: Debug>` into a step failure naming the call
#[macro_export]
macro_rules! try_step {
    ($call:expr) => {
        match $call {
            Ok(v) => v,
            Err(e) => {
                return Err($crate::runner::Fail::new(
                    line!(),
                    format_args!("{} failed: {:?}", stringify!($call), e),
                ))
            }
        }
    };
}

/// Counts passed and failed steps
#[derive(Default)]
pub struct Runner {
    /// Steps that passed
    pub passed: u32,
    /// Steps that failed
    pub failed: u32,
}

impl Runner {
    /// Run `steps` in order over `world`, printing `step NAME ... ok` or `... FAILED`
    ///
    /// `before` runs ahead of every step (e.g. to clear the event logs, so that a failed step
    /// leaves nothing behind that would fail the next one for the wrong reason).
    pub fn run<W>(&mut self, world: &mut W, before: fn(&mut W), steps: &[Step<W>]) {
        for (name, step) in steps {
            before(world);
            match step(world) {
                Ok(()) => {
                    self.passed += 1;
                    hprintln!("step {} ... ok", name);
                }
                Err(fail) => {
                    self.failed += 1;
                    hprintln!(
                        "step {} ... FAILED (line {}: {})",
                        name,
                        fail.line,
                        fail.msg
                    );
                }
            }
        }
    }
}
