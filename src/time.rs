//! Time as the caller tells it: [`Instant`] and helpers around [`core::time::Duration`]
//!
//! A machine never reads a clock. Every input carries `now`, an [`Instant`] counted in
//! microseconds since an epoch the caller chooses (boot, process start, Unix epoch — anything
//! monotonic). Machines remember the latest `now` they saw and clamp an earlier one to it, so a
//! clock that steps backwards is tolerated and never causes a panic.

pub use core::time::Duration;

/// A point in time, in microseconds since a caller-chosen epoch
///
/// All arithmetic saturates: adding a huge [`Duration`] gives [`Instant::MAX`], subtracting a later
/// instant gives [`Duration::ZERO`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Instant(u64);

impl Instant {
    /// The epoch itself
    pub const ZERO: Instant = Instant(0);
    /// The latest representable instant (used as "never")
    pub const MAX: Instant = Instant(u64::MAX);

    /// An instant `us` microseconds after the epoch
    #[must_use]
    pub const fn from_micros(us: u64) -> Self {
        Instant(us)
    }

    /// An instant `ms` milliseconds after the epoch (saturating)
    #[must_use]
    pub const fn from_millis(ms: u64) -> Self {
        Instant(ms.saturating_mul(1_000))
    }

    /// An instant `s` seconds after the epoch (saturating)
    #[must_use]
    pub const fn from_secs(s: u64) -> Self {
        Instant(s.saturating_mul(1_000_000))
    }

    /// Microseconds since the epoch
    #[must_use]
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Whole milliseconds since the epoch
    #[must_use]
    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000
    }

    /// Time elapsed from `earlier` to `self`, or zero if `earlier` is later
    #[must_use]
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating at [`Instant::MAX`]
    #[must_use]
    pub fn saturating_add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(duration_micros(d)))
    }

    /// `self - d`, saturating at [`Instant::ZERO`]
    #[must_use]
    pub fn saturating_sub(self, d: Duration) -> Instant {
        Instant(self.0.saturating_sub(duration_micros(d)))
    }
}

impl core::ops::Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        self.saturating_add(rhs)
    }
}

impl core::ops::AddAssign<Duration> for Instant {
    fn add_assign(&mut self, rhs: Duration) {
        *self = self.saturating_add(rhs);
    }
}

impl core::ops::Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, rhs: Duration) -> Instant {
        self.saturating_sub(rhs)
    }
}

impl core::ops::Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

impl core::fmt::Display for Instant {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{:06}s", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

/// A [`Duration`] in whole microseconds, saturating at `u64::MAX`
#[must_use]
pub fn duration_micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The latest of the times a machine has seen: keeps `now` monotonic
///
/// Every machine holds one. [`Clock::update`] clamps an earlier `now` to the latest one seen and
/// returns the value the machine should use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Clock {
    last: Instant,
}

impl Clock {
    /// A clock that has seen only [`Instant::ZERO`]
    #[must_use]
    pub const fn new() -> Self {
        Clock { last: Instant::ZERO }
    }

    /// Record `now` and return `max(now, latest seen)`
    pub fn update(&mut self, now: Instant) -> Instant {
        if now > self.last {
            self.last = now;
        }
        self.last
    }

    /// The latest instant seen
    #[must_use]
    pub const fn now(&self) -> Instant {
        self.last
    }
}

/// Earliest of two optional deadlines
#[must_use]
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturating_arithmetic() {
        assert_eq!(Instant::MAX + Duration::from_secs(1), Instant::MAX);
        assert_eq!(Instant::ZERO - Duration::from_secs(1), Instant::ZERO);
        assert_eq!(Instant::from_millis(5) - Instant::from_millis(7), Duration::ZERO);
        assert_eq!(Instant::from_millis(7) - Instant::from_millis(5), Duration::from_millis(2));
        assert_eq!(Instant::from_secs(2).as_millis(), 2_000);
    }

    #[test]
    fn clock_clamps_backwards_time() {
        let mut c = Clock::new();
        assert_eq!(c.update(Instant::from_millis(10)), Instant::from_millis(10));
        assert_eq!(c.update(Instant::from_millis(3)), Instant::from_millis(10));
        assert_eq!(c.update(Instant::from_millis(11)), Instant::from_millis(11));
    }

    #[test]
    fn earliest_of_options() {
        let a = Some(Instant::from_millis(1));
        let b = Some(Instant::from_millis(2));
        assert_eq!(earliest(a, b), a);
        assert_eq!(earliest(None, b), b);
        assert_eq!(earliest(a, None), a);
        assert_eq!(earliest(None, None), None);
    }
}
