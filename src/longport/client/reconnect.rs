//! The client's reconnect policy: what follows each way a connection ends, and the back-off

use crate::longport::control::CloseCode;
use crate::time::{Duration, MAX_DELAY};

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
    /// No automatic reconnect; the caller decides (`reconnect_now` or `connect`)
    Stop,
}

impl After {
    /// The reaction to a Close push: codes 4 (`AuthError`) and 5 (`SessExpired`) re-authenticate,
    /// 6 (`ConnectDuplicate`) stops (two holders of one session would otherwise kick each other
    /// for ever), every other code reconnects
    ///
    /// The official clients reconnect whatever the code; this is stricter where reconnecting
    /// with the same session cannot work.
    pub(super) const fn close_push(code: CloseCode) -> After {
        match code {
            CloseCode::AuthError | CloseCode::SessExpired => After::ReAuth,
            CloseCode::ConnectDuplicate => After::Stop,
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

/// Delay before reconnect attempt `attempt` (1 for the first retry): `base` doubled per earlier
/// failed attempt, capped at `max`, plus `jitter(attempt)`; never more than [`MAX_DELAY`]
pub(super) fn backoff(
    base: Duration,
    max: Duration,
    jitter: Option<JitterFn>,
    attempt: u32,
) -> Duration {
    let shift = attempt.saturating_sub(1).min(31);
    let delay = base
        .checked_mul(1u32 << shift)
        .unwrap_or(Duration::MAX)
        .min(max);
    let jitter = jitter.map_or(Duration::ZERO, |j| j(attempt));
    delay.saturating_add(jitter).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_clamps_jitter() {
        let s = Duration::from_secs;
        let delays: [u64; 6] =
            core::array::from_fn(|i| backoff(s(1), s(30), None, i as u32 + 1).as_secs());
        assert_eq!(delays, [1, 2, 4, 8, 16, 30]);
        assert_eq!(backoff(s(1), s(30), None, u32::MAX), s(30));
        fn huge(_: u32) -> Duration {
            Duration::MAX
        }
        assert_eq!(backoff(s(1), s(30), Some(huge), 1), MAX_DELAY);
        assert_eq!(backoff(MAX_DELAY, MAX_DELAY, None, 40), MAX_DELAY);
    }

    #[test]
    fn close_codes_map_to_the_policy() {
        let after = |c| After::close_push(CloseCode::from_i32(c));
        assert_eq!(after(0), After::Reconnect);
        assert_eq!(after(3), After::Reconnect);
        assert_eq!(after(4), After::ReAuth);
        assert_eq!(after(5), After::ReAuth);
        assert_eq!(after(6), After::Stop);
        assert_eq!(after(99), After::Reconnect);
        assert_eq!(After::ws_close(4006), After::Stop);
        assert_eq!(After::ws_close(4004), After::ReAuth);
        assert_eq!(After::ws_close(4007), After::Reconnect);
        assert_eq!(After::ws_close(1001), After::Reconnect);
    }
}
