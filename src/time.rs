//! Time as the caller tells it: [`Instant`] and helpers around [`core::time::Duration`]
//!
//! A machine never reads a clock. Every input carries `now`, an [`Instant`] counted in
//! microseconds since an epoch the caller chooses. **The source must be monotonic**: process
//! start or boot time through `std::time::Instant` (see [`Epoch`] with the `std` feature),
//! embassy's `Instant`, a hardware timer. A wall clock (Unix time) is not suitable: NTP and
//! users step it.
//!
//! # When `now` goes backwards
//!
//! A `now` earlier than the latest one a machine has seen is a backward step. The machine treats
//! the step as no time passing and shifts its own timeline by the size of the step: timers keep
//! the time they had left, and every instant it hands back ([`poll_timeout`], instants inside
//! events) is expressed in the caller's (stepped) clock. A clock that jumps back one hour
//! therefore delays nothing: keep-alives and heartbeats continue on schedule. A step forward
//! cannot be told from time passing: timers due in the skipped span fire at once.
//!
//! # Bounds
//!
//! Configurations clamp every interval and timeout to at most [`MAX_DELAY`], so a deadline from
//! [`poll_timeout`] is never more than `MAX_DELAY` after the latest `now` and can be added to any
//! caller clock without overflow.
//!
//! [`poll_timeout`]: crate::Machine::poll_timeout

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
    /// The latest representable instant
    ///
    /// Machines never return it as a deadline (see [`MAX_DELAY`]).
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
        div_rem_small(self.0, 1_000).0
    }

    /// Time elapsed from `earlier` to `self`, or zero if `earlier` is later
    #[must_use]
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        duration_from_micros(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating at [`Instant::MAX`]
    #[must_use]
    pub fn saturating_add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(duration_micros(d)))
    }

    /// `self + us` microseconds, saturating at [`Instant::MAX`] (for delays kept in
    /// microseconds)
    #[must_use]
    pub(crate) const fn add_micros(self, us: u64) -> Instant {
        Instant(self.0.saturating_add(us))
    }

    /// `self - us` microseconds, saturating at [`Instant::ZERO`] (for delays kept in
    /// microseconds)
    #[must_use]
    pub(crate) const fn sub_micros(self, us: u64) -> Instant {
        Instant(self.0.saturating_sub(us))
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

/// Longest interval or timeout any configuration accepts: 30 days
///
/// Setters clamp larger values to it; see the module docs.
pub const MAX_DELAY: Duration = Duration::from_secs(30 * 24 * 3600);

/// [`MAX_DELAY`] in microseconds
pub(crate) const MAX_DELAY_MICROS: u64 = 30 * 24 * 3600 * 1_000_000;

/// A [`Duration`] in whole microseconds, saturating at `u64::MAX`
#[must_use]
pub(crate) fn duration_micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// `us` microseconds as a [`Duration`] (what `Duration::from_micros` gives, without its 64-bit
/// division)
#[must_use]
pub(crate) const fn duration_from_micros(us: u64) -> Duration {
    // 1_000_000 = 64 * 15_625, and 15_625 < 2^16
    let secs = div_rem_small(us >> 6, 15_625).0;
    // the remainder is below 1_000_000: the casts are exact
    let micros = (us - secs * 1_000_000) as u32;
    Duration::new(secs, micros * 1_000)
}

/// `(x / d, x % d)` for a divisor `d` in `1..=65_536`
///
/// On 32-bit targets it takes three 32-bit divisions (long division in 16-bit digits): a 64-bit
/// division is a library call there (compiler-builtins' `__aeabi_uldivmod` with
/// `u64_div_rem`, about 1 KB of flash on Cortex-M) that a firmware otherwise need not link. On
/// 64-bit targets it is the plain division.
#[must_use]
pub(crate) const fn div_rem_small(x: u64, d: u32) -> (u64, u32) {
    if cfg!(target_pointer_width = "64") {
        let d = d as u64;
        // the remainder is below d: the cast is exact
        (x / d, (x % d) as u32)
    } else {
        div_rem_digits(x, d)
    }
}

/// [`div_rem_small`] in 32-bit steps (separate, so 64-bit hosts test it too)
#[must_use]
const fn div_rem_digits(x: u64, d: u32) -> (u64, u32) {
    // every partial dividend is below d * 2^16 <= 2^32, every partial quotient below 2^16
    let hi = (x >> 32) as u32;
    let (q_hi, r) = (hi / d, hi % d);
    let mid = (r << 16) | ((x >> 16) as u32 & 0xFFFF);
    let (q_mid, r) = (mid / d, mid % d);
    let lo = (r << 16) | (x as u32 & 0xFFFF);
    let (q_lo, r) = (lo / d, lo % d);
    (
        ((q_hi as u64) << 32) | ((q_mid as u64) << 16) | q_lo as u64,
        r,
    )
}

/// `d` clamped into `[min, MAX_DELAY]` (for config setters)
#[must_use]
pub(crate) const fn clamp_delay(d: Duration, min: Duration) -> Duration {
    if d.as_nanos() < min.as_nanos() {
        min
    } else if d.as_nanos() > MAX_DELAY.as_nanos() {
        MAX_DELAY
    } else {
        d
    }
}

/// `d` clamped into `[min, MAX_DELAY]`, in whole microseconds (for configurations that keep
/// their delays in the unit of [`Instant`]: a timer then adds them with one 64-bit addition
/// instead of a `Duration` conversion at every use)
#[must_use]
pub(crate) const fn clamp_micros(d: Duration, min: Duration) -> u64 {
    // at most MAX_DELAY (2.6e12 µs): the cast is exact
    clamp_delay(d, min).as_micros() as u64
}

/// [`clamp_micros`] of an optional delay
#[must_use]
pub(crate) const fn clamp_micros_some(d: Option<Duration>, min: Duration) -> Option<u64> {
    match d {
        Some(d) => Some(clamp_micros(d, min)),
        None => None,
    }
}

/// An optional delay kept in microseconds as a [`Duration`] (for the getters of such
/// configurations)
#[must_use]
pub(crate) const fn duration_from_micros_some(us: Option<u64>) -> Option<Duration> {
    match us {
        Some(us) => Some(duration_from_micros(us)),
        None => None,
    }
}

/// A machine's view of time: monotonic, and shifted past backward steps of the caller's clock
///
/// Every machine holds one. [`Clock::update`] turns the caller's `now` into machine time: equal
/// to the caller's time plus the sum of all backward steps seen so far, so machine time never
/// goes back and a step back counts as no time passing. [`Clock::to_caller`] turns a machine
/// instant (a deadline) back into the caller's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(crate) struct Clock {
    last: Instant,
    shift: u64,
}

impl Clock {
    /// A clock that has seen only [`Instant::ZERO`]
    #[must_use]
    pub(crate) const fn new() -> Self {
        Clock {
            last: Instant::ZERO,
            shift: 0,
        }
    }

    /// Machine time for the caller's `now`; records a backward step as a shift
    #[inline]
    pub(crate) fn update(&mut self, now: Instant) -> Instant {
        let t = now.0.saturating_add(self.shift);
        if t < self.last.0 {
            self.shift += self.last.0 - t;
        } else {
            self.last = Instant(t);
        }
        self.last
    }

    /// Machine time for the caller's `now` without recording it (for getters): a `now` earlier
    /// than the latest one counts as no time passing
    #[must_use]
    #[inline]
    pub(crate) fn peek(&self, now: Instant) -> Instant {
        Instant(now.0.saturating_add(self.shift).max(self.last.0))
    }

    /// The latest machine time
    #[must_use]
    #[inline]
    pub(crate) const fn now(&self) -> Instant {
        self.last
    }

    /// A machine instant in the caller's clock (saturating at [`Instant::ZERO`])
    #[must_use]
    #[inline]
    pub(crate) const fn to_caller(self, t: Instant) -> Instant {
        Instant(t.0.saturating_sub(self.shift))
    }
}

/// The earlier of two optional deadlines
#[must_use]
#[inline]
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Converts between `std::time::Instant` and [`Instant`] around a fixed origin (feature `std`)
///
/// Reads no clock itself: you pass the origin (typically `std::time::Instant::now()` once at
/// start-up) and the times to convert.
///
/// ```
/// use tether_net::time::Epoch;
/// let epoch = Epoch::new(std::time::Instant::now());
/// let now = epoch.instant(std::time::Instant::now());
/// let deadline = now + core::time::Duration::from_millis(250);
/// let wake_at: std::time::Instant = epoch.to_std(deadline);
/// assert!(wake_at >= epoch.origin());
/// ```
#[cfg(feature = "std")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Epoch(std::time::Instant);

#[cfg(feature = "std")]
impl Epoch {
    /// An epoch at `origin`: [`Instant::ZERO`] stands for `origin`
    #[must_use]
    pub const fn new(origin: std::time::Instant) -> Self {
        Epoch(origin)
    }

    /// The origin
    #[must_use]
    pub const fn origin(&self) -> std::time::Instant {
        self.0
    }

    /// `t` as an [`Instant`]; times before the origin map to [`Instant::ZERO`]
    #[must_use]
    pub fn instant(&self, t: std::time::Instant) -> Instant {
        Instant(duration_micros(t.saturating_duration_since(self.0)))
    }

    /// `t` as a `std::time::Instant` (for `sleep_until`, socket timeouts)
    #[must_use]
    pub fn to_std(&self, t: Instant) -> std::time::Instant {
        let d = Duration::from_micros(t.0);
        self.0.checked_add(d).unwrap_or(self.0 + MAX_DELAY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturating_arithmetic() {
        assert_eq!(Instant::MAX + Duration::from_secs(1), Instant::MAX);
        assert_eq!(Instant::ZERO - Duration::from_secs(1), Instant::ZERO);
        assert_eq!(
            Instant::from_millis(5) - Instant::from_millis(7),
            Duration::ZERO
        );
        assert_eq!(
            Instant::from_millis(7) - Instant::from_millis(5),
            Duration::from_millis(2)
        );
        assert_eq!(Instant::from_secs(2).as_millis(), 2_000);
    }

    #[test]
    fn division_without_64_bit_divide_matches() {
        let xs = [
            0,
            1,
            999,
            1_000,
            65_535,
            65_536,
            u64::from(u32::MAX),
            u64::from(u32::MAX) + 1,
            1 << 48,
            0x1234_5678_9ABC_DEF0,
            u64::MAX - 1,
            u64::MAX,
        ];
        let ds = [1, 2, 3, 7, 125, 1_000, 15_625, 65_535, 65_536];
        let mut x = 0x9E37_79B9_7F4A_7C15_u64;
        for i in 0..2_000 {
            // xorshift: spread over the whole range
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = if i < xs.len() { xs[i] } else { x >> (i % 64) };
            for &d in &ds {
                let want = (v / u64::from(d), (v % u64::from(d)) as u32);
                assert_eq!(div_rem_digits(v, d), want, "{v} / {d}");
                assert_eq!(div_rem_small(v, d), want, "{v} / {d}");
            }
            assert_eq!(duration_from_micros(v), Duration::from_micros(v), "{v} µs");
        }
        for d in [
            Duration::ZERO,
            Duration::new(1, 999_999_999),
            MAX_DELAY,
            Duration::new(u64::MAX / 1_000_000, 999_999_999),
            Duration::new(u64::MAX / 1_000_000 + 1, 0),
            Duration::MAX,
        ] {
            let want = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
            assert_eq!(duration_micros(d), want, "{d:?}");
        }
    }

    #[test]
    fn clock_shifts_past_backward_steps() {
        let ms = Instant::from_millis;
        let mut c = Clock::new();
        assert_eq!(c.update(ms(10)), ms(10));
        assert_eq!(c.to_caller(ms(15)), ms(15));
        // a step back of 7 ms: no time passes, and the timeline moves by 7 ms
        assert_eq!(c.update(ms(3)), ms(10));
        assert_eq!(
            c.to_caller(ms(15)),
            ms(8),
            "5 ms left, in the caller's clock"
        );
        assert_eq!(c.peek(ms(5)), ms(12), "peek maps without recording");
        assert_eq!(c.peek(ms(1)), ms(10), "an earlier now is no time passing");
        assert_eq!(c.update(ms(4)), ms(11), "time runs again from the step");
        assert_eq!(c.now(), ms(11));
        // a second step accumulates
        assert_eq!(c.update(ms(1)), ms(11));
        assert_eq!(c.update(ms(2)), ms(12));
        assert_eq!(c.to_caller(ms(12)), ms(2));
        assert_eq!(
            c.to_caller(ms(5)),
            ms(0),
            "deadlines before the shift saturate"
        );
    }

    #[test]
    fn clamp_delay_bounds() {
        let min = Duration::from_millis(1);
        assert_eq!(clamp_delay(Duration::ZERO, min), min);
        assert_eq!(
            clamp_delay(Duration::from_secs(5), min),
            Duration::from_secs(5)
        );
        assert_eq!(clamp_delay(Duration::MAX, min), MAX_DELAY);
    }

    #[test]
    fn clamped_microseconds_keep_none_and_drop_what_is_below_a_microsecond() {
        let min = Duration::from_millis(1);
        assert_eq!(clamp_micros(Duration::ZERO, min), 1_000);
        assert_eq!(clamp_micros(Duration::new(5, 123_456_789), min), 5_123_456);
        assert_eq!(clamp_micros(Duration::MAX, min), MAX_DELAY_MICROS);
        assert_eq!(MAX_DELAY_MICROS, duration_micros(MAX_DELAY));
        assert_eq!(clamp_micros_some(None, min), None);
        assert_eq!(clamp_micros_some(Some(Duration::ZERO), min), Some(1_000));
        assert_eq!(
            clamp_micros_some(Some(Duration::MAX), min),
            Some(MAX_DELAY_MICROS)
        );
        assert_eq!(duration_from_micros_some(None), None);
        assert_eq!(
            duration_from_micros_some(Some(MAX_DELAY_MICROS)),
            Some(MAX_DELAY)
        );
        assert_eq!(
            duration_from_micros_some(Some(1_000_001)),
            Some(Duration::from_micros(1_000_001))
        );
    }

    #[test]
    fn max_delay_is_thirty_days() {
        let day = Duration::from_secs(24 * 3600);
        let min = Duration::from_millis(1);
        assert_eq!(clamp_delay(30 * day, min), 30 * day);
        assert_eq!(clamp_delay(31 * day, min), 30 * day);
        let just_under = 30 * day - Duration::from_micros(1);
        assert_eq!(clamp_delay(just_under, min), just_under);
    }

    #[cfg(feature = "std")]
    #[test]
    fn epoch_round_trips() {
        let origin = std::time::Instant::now();
        let e = Epoch::new(origin);
        let later = origin + Duration::from_millis(1500);
        assert_eq!(e.instant(later), Instant::from_millis(1500));
        assert_eq!(e.to_std(Instant::from_millis(1500)), later);
        assert_eq!(
            e.instant(origin.checked_sub(Duration::from_secs(1)).unwrap_or(origin)),
            Instant::ZERO
        );
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
