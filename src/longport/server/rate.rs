//! Request rate limits of the server: [`RateLimit`] (configuration) and the per-connection
//! buckets that enforce it on the caller's clock
//!
//! Each limit is a token bucket, kept as its "theoretical arrival time" (the generic cell rate
//! algorithm): one instant per bucket, no counter to refill. A request at `now` conforms when
//! `max(tat, now) <= now + (burst - 1) * interval`; it then moves `tat` to
//! `max(tat, now) + interval`. So a quiet connection may send `burst` requests at once, and then
//! one per `interval`.

use crate::time::{duration_from_micros, Duration, Instant};

/// Most per-command limits a [`ServerConfig`](crate::longport::ServerConfig) holds
pub const MAX_COMMAND_LIMITS: usize = 8;

/// Most requests per second a [`RateLimit`] can express
const MAX_RATE: u32 = 1_000_000;

/// A request rate: `rate` requests per second on average, up to `burst` at once
///
/// Used per connection ([`ServerConfig::with_rate_limit`](crate::longport::ServerConfig::with_rate_limit))
/// and per command ([`ServerConfig::with_command_rate_limit`](crate::longport::ServerConfig::with_command_rate_limit)).
/// A request over the limit is answered by the machine with status 3 (BadRequest) and
/// `Error{301606}` (the code the LongPort documentation lists for rate limiting); it never
/// reaches the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct RateLimit {
    interval_us: u64,
    burst: u32,
}

impl RateLimit {
    /// `rate` requests per second (clamped to 1 ..= 1,000,000), bursts of up to `burst`
    /// (clamped to at least 1)
    #[must_use]
    pub const fn per_second(rate: u32, burst: u32) -> Self {
        let rate = if rate == 0 {
            1
        } else if rate > MAX_RATE {
            MAX_RATE
        } else {
            rate
        };
        RateLimit {
            // a 32-bit division (rate is at most 1,000,000)
            interval_us: (1_000_000 / rate) as u64,
            burst: if burst == 0 { 1 } else { burst },
        }
    }

    /// Time between two requests at the sustained rate
    #[must_use]
    pub const fn interval(&self) -> Duration {
        duration_from_micros(self.interval_us)
    }

    /// Requests allowed at once after a quiet spell
    #[must_use]
    pub const fn burst(&self) -> u32 {
        self.burst
    }

    /// The bucket's next `tat` if a request at `now` conforms, else `None`
    fn check(&self, tat: Instant, now: Instant) -> Option<Instant> {
        // in microseconds: at most 10^6 x (2^32 - 1), no overflow; no `Duration` (whose
        // `from_micros` divides 64-bit numbers, a library call on 32-bit targets)
        let tolerance = self
            .interval_us
            .saturating_mul(u64::from(self.burst.saturating_sub(1)));
        let start = tat.max(now);
        (start <= now.add_micros(tolerance)).then(|| start.add_micros(self.interval_us))
    }
}

/// The buckets of one connection: one for the connection, one per configured command
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(super) struct Buckets {
    conn: Instant,
    cmds: [Instant; MAX_COMMAND_LIMITS],
}

impl Buckets {
    pub(super) const fn new() -> Self {
        Buckets {
            conn: Instant::ZERO,
            cmds: [Instant::ZERO; MAX_COMMAND_LIMITS],
        }
    }

    /// Whether a request of `cmd` at `now` conforms to `conn` and to the limit of its command
    /// (`slot`: its index in the configuration); the buckets are charged only when it does
    pub(super) fn admit(
        &mut self,
        now: Instant,
        conn: Option<RateLimit>,
        cmd: Option<(usize, RateLimit)>,
    ) -> bool {
        let conn_tat = match conn {
            Some(limit) => match limit.check(self.conn, now) {
                Some(t) => Some(t),
                None => return false,
            },
            None => None,
        };
        let cmd_tat = match cmd {
            Some((slot, limit)) => {
                let Some(&tat) = self.cmds.get(slot) else {
                    return true;
                };
                match limit.check(tat, now) {
                    Some(t) => Some((slot, t)),
                    None => return false,
                }
            }
            None => None,
        };
        if let Some(t) = conn_tat {
            self.conn = t;
        }
        if let Some((slot, t)) = cmd_tat {
            if let Some(b) = self.cmds.get_mut(slot) {
                *b = t;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_sustained_rate() {
        let limit = RateLimit::per_second(10, 3);
        assert_eq!(limit.interval(), Duration::from_millis(100));
        let mut b = Buckets::new();
        let t0 = Instant::from_secs(100);
        let admitted = (0..5).filter(|_| b.admit(t0, Some(limit), None)).count();
        assert_eq!(admitted, 3, "a burst of 3");
        // one more every 100 ms
        assert!(!b.admit(t0 + Duration::from_millis(99), Some(limit), None));
        assert!(b.admit(t0 + Duration::from_millis(100), Some(limit), None));
        assert!(!b.admit(t0 + Duration::from_millis(150), Some(limit), None));
        // a quiet second refills the burst
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!((0..5).filter(|_| b.admit(t1, Some(limit), None)).count(), 3);
    }

    #[test]
    fn both_limits_must_admit_and_a_refusal_charges_nothing() {
        let conn = RateLimit::per_second(100, 2);
        let cmd = RateLimit::per_second(1, 1);
        let mut b = Buckets::new();
        let t = Instant::from_secs(10);
        assert!(b.admit(t, Some(conn), Some((3, cmd))));
        // the command bucket refuses: the connection bucket is not charged
        assert!(!b.admit(t, Some(conn), Some((3, cmd))));
        assert!(b.admit(t, Some(conn), None));
        assert!(!b.admit(t, Some(conn), None), "burst of 2 used");
        assert!(b.admit(t, None, Some((4, cmd))), "another command's bucket");
        assert!(b.admit(t, None, None));
    }

    #[test]
    fn clamps() {
        assert_eq!(RateLimit::per_second(0, 0).burst(), 1);
        assert_eq!(
            RateLimit::per_second(0, 0).interval(),
            Duration::from_secs(1)
        );
        assert_eq!(
            RateLimit::per_second(u32::MAX, 1).interval(),
            Duration::from_micros(1)
        );
    }
}
