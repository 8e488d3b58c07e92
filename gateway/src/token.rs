//! One-time socket tokens: issued by `GET /v1/socket/token`, redeemed by the socket's Auth
//!
//! A token is a bearer secret: 128 bits from the OS random source, valid once and for a
//! limited time. The store is shared (`Arc<TokenStore>`) between the HTTP side that issues and
//! the socket side that redeems; it is bounded (the oldest pending token is dropped to make
//! room). Time is passed in.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::script::Account;

/// How long an issued token stays redeemable by default
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// Pending tokens kept at most by default
pub const DEFAULT_CAPACITY: usize = 4096;

/// Longest token [`TokenStore::redeem`] looks up (longer ones are refused without a lookup)
pub const MAX_TOKEN_LEN: usize = 128;

/// The OS random source failed
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenError;

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the OS random source failed")
    }
}

impl std::error::Error for TokenError {}

#[derive(Debug)]
struct Pending {
    account: Arc<Account>,
    issued: Instant,
}

/// Pending one-time tokens
#[derive(Debug)]
pub struct TokenStore {
    pending: Mutex<HashMap<String, Pending>>,
    ttl: Duration,
    capacity: usize,
}

impl Default for TokenStore {
    fn default() -> Self {
        TokenStore::new(DEFAULT_TTL, DEFAULT_CAPACITY)
    }
}

impl TokenStore {
    /// A store whose tokens stay redeemable for `ttl`, keeping at most `capacity` (at least 1)
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        TokenStore {
            pending: Mutex::new(HashMap::new()),
            ttl,
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Pending>> {
        // a panic while holding the lock cannot leave the map half-updated
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Issue a fresh token for `account` at `now`
    pub fn issue(&self, account: Arc<Account>, now: Instant) -> Result<String, TokenError> {
        let mut raw = [0u8; 16];
        getrandom::fill(&mut raw).map_err(|_| TokenError)?;
        let mut token = String::with_capacity(4 + 32);
        token.push_str("otp-");
        for b in raw {
            token.push_str(&format!("{b:02x}"));
        }
        self.insert(token.clone(), account, now);
        Ok(token)
    }

    fn insert(&self, token: String, account: Arc<Account>, now: Instant) {
        let mut pending = self.lock();
        let ttl = self.ttl;
        pending.retain(|_, p| now.saturating_duration_since(p.issued) <= ttl);
        if pending.len() >= self.capacity {
            let oldest = pending
                .iter()
                .min_by_key(|(_, p)| p.issued)
                .map(|(t, _)| t.clone());
            if let Some(t) = oldest {
                pending.remove(&t);
            }
        }
        pending.insert(
            token,
            Pending {
                account,
                issued: now,
            },
        );
    }

    /// Redeem `token` at `now`: its account, once; `None` for an unknown, used or expired token
    pub fn redeem(&self, token: &str, now: Instant) -> Option<Arc<Account>> {
        if token.len() > MAX_TOKEN_LEN {
            return None;
        }
        let p = self.lock().remove(token)?;
        (now.saturating_duration_since(p.issued) <= self.ttl).then_some(p.account)
    }

    /// Tokens issued and not yet redeemed (expired ones included until the next issue)
    pub fn pending(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(key: &str) -> Arc<Account> {
        let line = format!(
            r#"{{"account": {{"app_key": "{key}", "app_secret": "s", "member_id": 1, "quote_level": "LV1"}}}}"#
        );
        Arc::clone(&crate::script::Script::parse(&line).unwrap().accounts[0])
    }

    #[test]
    fn tokens_are_one_time() {
        let store = TokenStore::default();
        let now = Instant::now();
        let t = store.issue(account("a"), now).unwrap();
        assert!(t.starts_with("otp-") && t.len() == 36, "{t}");
        assert_eq!(store.pending(), 1);
        assert_eq!(store.redeem(&t, now).unwrap().app_key, "a");
        assert!(store.redeem(&t, now).is_none(), "used once, then refused");
        assert_eq!(store.pending(), 0);
    }

    #[test]
    fn tokens_are_unguessable_and_distinct() {
        let store = TokenStore::default();
        let now = Instant::now();
        let a = store.issue(account("a"), now).unwrap();
        let b = store.issue(account("a"), now).unwrap();
        assert_ne!(a, b);
        for guess in ["", "otp-", "otp-00000000000000000000000000000000", &a[..35]] {
            assert!(store.redeem(guess, now).is_none(), "{guess:?}");
        }
        assert!(store.redeem(&"x".repeat(1 << 20), now).is_none());
        assert_eq!(store.pending(), 2, "failed guesses consume nothing");
    }

    #[test]
    fn tokens_expire() {
        let store = TokenStore::new(Duration::from_secs(10), 16);
        let t0 = Instant::now();
        let a = store.issue(account("a"), t0).unwrap();
        let b = store.issue(account("b"), t0).unwrap();
        assert!(
            store.redeem(&a, t0 + Duration::from_secs(10)).is_some(),
            "exactly the ttl"
        );
        assert!(store.redeem(&b, t0 + Duration::from_secs(11)).is_none());
        let _ = store.issue(account("c"), t0).unwrap();
        let _ = store
            .issue(account("d"), t0 + Duration::from_secs(30))
            .unwrap();
        assert_eq!(store.pending(), 1, "expired tokens are dropped on issue");
    }

    #[test]
    fn the_store_is_bounded() {
        let store = TokenStore::new(Duration::from_secs(60), 3);
        let t0 = Instant::now();
        let first = store.issue(account("a"), t0).unwrap();
        for i in 1..10 {
            store
                .issue(account("a"), t0 + Duration::from_millis(i))
                .unwrap();
        }
        assert_eq!(store.pending(), 3);
        assert!(store.redeem(&first, t0).is_none(), "the oldest made room");
    }
}
