//! The client's reconnect policy: what follows each way a connection ends, the back-off, and
//! what a refusal for the account's connection quota does ([`QuotaPolicy`])

use crate::longport::control::CloseCode;
use crate::time::{clamp_delay, duration_micros, Duration, MAX_DELAY_MICROS};

/// Shortest delay [`QuotaPolicy::RetryAfter`] is clamped to
const MIN_QUOTA_RETRY: Duration = Duration::from_secs(1);

/// What the client does when a login is refused with status 6 (PermissionDenied), the answer
/// of the LongPort gateway when the account already holds its quota of connections
/// (`Error{403, "connections limitation is hit"}`)
///
/// A new token cannot help (the quota counts connections, not tokens), so the client never
/// asks for one at once: [`ClientEvent::LoginFailed`](crate::longport::ClientEvent::LoginFailed)
/// (status 6, code 403) and [`ClientEvent::Disconnected`](crate::longport::ClientEvent::Disconnected)
/// (cause `LoginRejected(PermissionDenied)`) are followed by:
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum QuotaPolicy {
    /// Nothing: the client is [`ClientState::Stopped`](crate::longport::ClientState::Stopped)
    /// (session and token dropped) until you call `connect` with fresh credentials, e.g. after
    /// closing the account's other connections (the default)
    Stop,
    /// [`ClientEvent::ReconnectScheduled`](crate::longport::ClientEvent::ReconnectScheduled)
    /// this long after the refusal (clamped to 1 s ..= [`MAX_DELAY`](crate::time::MAX_DELAY)); when it elapses,
    /// [`ClientEvent::TokenNeeded`](crate::longport::ClientEvent::TokenNeeded), then a fresh
    /// Auth. Counts as a failed attempt for
    /// [`ClientConfig::with_max_reconnect_attempts`](crate::longport::ClientConfig::with_max_reconnect_attempts).
    RetryAfter(Duration),
}

impl QuotaPolicy {
    /// The policy with its delay clamped
    pub(super) const fn clamped(self) -> Self {
        match self {
            QuotaPolicy::Stop => QuotaPolicy::Stop,
            QuotaPolicy::RetryAfter(d) => QuotaPolicy::RetryAfter(clamp_delay(d, MIN_QUOTA_RETRY)),
        }
    }
}

/// Extra reconnect delay for an attempt number, chosen by the caller (e.g. random jitter)
///
/// Its output is clamped: the whole delay (back-off plus jitter) is at most
/// [`MAX_DELAY`](crate::time::MAX_DELAY).
pub type JitterFn = fn(u32) -> Duration;

/// What the client does once a connection has ended
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum After {
    /// Reconnect after the back-off, with the session while it is resumable
    Reconnect,
    /// Drop the session and the token: a fresh token is needed, then reconnect
    ReAuth,
    /// A login refused for the account's quota: session and token dropped, then the
    /// [`QuotaPolicy`]
    Quota,
}

impl After {
    /// The reaction to a Close push: codes 4 (`AuthError`), 5 (`SessExpired`) and 6
    /// (`ConnectDuplicate`) re-authenticate, every other code reconnects with the session
    ///
    /// The official clients reconnect whatever the code; this is stricter where reconnecting
    /// with the same session cannot work. After code 6 the session belongs to the newer
    /// connection that presented it (a server mints a new id for it on every Reconnect), so a
    /// fresh Auth gets this client a session of its own; two holders of one session therefore
    /// cannot kick each other for ever, and a client displaced by someone who got hold of its
    /// session id is not stopped for good either.
    pub(super) const fn close_push(code: CloseCode) -> After {
        match code {
            CloseCode::AuthError | CloseCode::SessExpired | CloseCode::ConnectDuplicate => {
                After::ReAuth
            }
            CloseCode::HeartbeatTimeout
            | CloseCode::ServerError
            | CloseCode::ServerShutdown
            | CloseCode::UnpackError
            | CloseCode::Other(_) => After::Reconnect,
        }
    }

    /// The reaction to a WebSocket Close frame: 4000..=4006 are read as 4000 + a Close code and
    /// get that code's reaction; any other status reconnects
    pub(super) const fn ws_close(status: u16) -> After {
        match status.checked_sub(4000) {
            // `c` is at most 6: the cast is exact
            Some(c @ 0..=6) => After::close_push(CloseCode::from_i32(c as i32)),
            _ => After::Reconnect,
        }
    }
}

/// Delay in microseconds before reconnect attempt `attempt` (1 for the first retry): `base`
/// doubled per earlier failed attempt, capped at `max` (both in microseconds), plus
/// `jitter(attempt)`; never more than [`MAX_DELAY`](crate::time::MAX_DELAY)
pub(super) fn backoff(base: u64, max: u64, jitter: Option<JitterFn>, attempt: u32) -> u64 {
    // base * 2^(attempt - 1) by doubling; stops once at `max`, where the product would be capped
    // anyway
    let mut delay = base;
    for _ in 0..attempt.saturating_sub(1).min(31) {
        if delay >= max {
            break;
        }
        delay = delay.saturating_add(delay);
    }
    let delay = delay.min(max);
    let jitter = jitter.map_or(0, |j| duration_micros(j(attempt)));
    delay.saturating_add(jitter).min(MAX_DELAY_MICROS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_clamps_jitter() {
        let s = |n: u64| n * 1_000_000;
        let delays: [u64; 6] =
            core::array::from_fn(|i| backoff(s(1), s(30), None, i as u32 + 1) / s(1));
        assert_eq!(delays, [1, 2, 4, 8, 16, 30]);
        assert_eq!(backoff(s(1), s(30), None, u32::MAX), s(30));
        fn huge(_: u32) -> Duration {
            Duration::MAX
        }
        assert_eq!(backoff(s(1), s(30), Some(huge), 1), MAX_DELAY_MICROS);
        assert_eq!(
            backoff(MAX_DELAY_MICROS, MAX_DELAY_MICROS, None, 40),
            MAX_DELAY_MICROS
        );
        // the jitter is added to the microsecond (below that it is dropped)
        fn some(attempt: u32) -> Duration {
            Duration::from_nanos(u64::from(attempt) * 1_500_999)
        }
        assert_eq!(backoff(s(1), s(30), Some(some), 1), 1_001_500);
        assert_eq!(backoff(s(1), s(30), Some(some), 2), 2_003_001);
    }

    #[test]
    fn quota_retry_is_clamped() {
        assert_eq!(
            QuotaPolicy::RetryAfter(Duration::ZERO).clamped(),
            QuotaPolicy::RetryAfter(MIN_QUOTA_RETRY)
        );
        assert_eq!(
            QuotaPolicy::RetryAfter(Duration::MAX).clamped(),
            QuotaPolicy::RetryAfter(crate::time::MAX_DELAY)
        );
        assert_eq!(QuotaPolicy::Stop.clamped(), QuotaPolicy::Stop);
    }

    #[test]
    fn close_codes_map_to_the_policy() {
        let after = |c| After::close_push(CloseCode::from_i32(c));
        assert_eq!(after(0), After::Reconnect);
        assert_eq!(after(3), After::Reconnect);
        assert_eq!(after(4), After::ReAuth);
        assert_eq!(after(5), After::ReAuth);
        assert_eq!(after(6), After::ReAuth);
        assert_eq!(after(99), After::Reconnect);
        assert_eq!(After::ws_close(4006), After::ReAuth);
        assert_eq!(After::ws_close(4004), After::ReAuth);
        assert_eq!(After::ws_close(4007), After::Reconnect);
        assert_eq!(After::ws_close(1001), After::Reconnect);
    }
}
