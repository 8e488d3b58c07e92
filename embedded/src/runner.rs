//! A tiny in-firmware test runner: named steps, one line each, a summary line
//!
//! Steps of one scenario share a "world" (the machines, the virtual clock, the logs) and run in
//! order. A failing step is reported and the next one still runs: its own checks decide whether
//! the scenario could continue. `main` exits with `EXIT_SUCCESS` only when every step passed.

use cortex_m_semihosting::hprintln;

/// Why a step failed: the source line of the failed check
///
/// The check prints what it expected and what it saw at once (see [`ensure!`]), so a failure
/// costs no stack: results travel up as this one word.
#[derive(Debug, Clone, Copy)]
pub struct Fail {
    /// Line of the failed check in the scenario source
    pub line: u32,
}

impl Fail {
    /// Print `args` as the failure detail and return the failure for `line`
    pub fn new(line: u32, args: core::fmt::Arguments<'_>) -> Self {
        hprintln!("    check failed at line {}: {}", line, args);
        Fail { line }
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
                    hprintln!("step {} ... FAILED (line {})", name, fail.line);
                }
            }
        }
    }
}
