//! The counted virtual clock the scenarios run on (the machines never read a clock)

use tether_net::{Duration, Instant};

/// Virtual time that only moves when a scenario moves it; counts its moves
pub struct VClock {
    now: Instant,
    /// How many times the clock was moved
    pub ticks: u32,
}

impl VClock {
    /// A clock at `start`
    pub const fn new(start: Instant) -> Self {
        VClock {
            now: start,
            ticks: 0,
        }
    }

    /// The current virtual instant
    pub const fn now(&self) -> Instant {
        self.now
    }

    /// Move forward by `d`
    pub fn advance(&mut self, d: Duration) -> Instant {
        self.now += d;
        self.ticks += 1;
        self.now
    }

    /// Move to the earliest of two machine deadlines (never backwards); `None` if neither runs
    pub fn advance_to_deadline(
        &mut self,
        a: Option<Instant>,
        b: Option<Instant>,
    ) -> Option<Instant> {
        let at = a.into_iter().chain(b).min()?;
        if at > self.now {
            self.now = at;
        }
        self.ticks += 1;
        Some(self.now)
    }
}
