//! Per-connection business state, and where it waits between a disconnect and a reconnect

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::market::{Market, QuoteUpdate};
use crate::quote::{self, QuoteConn};
use crate::reply::{Push, Reply};
use crate::script::{Account, OrderPush, SocketKind};
use crate::trade::{self, TradeConn};

/// The business state of one authenticated connection, quote or trade
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// A quote connection
    Quote(QuoteConn),
    /// A trade connection
    Trade(TradeConn),
}

impl ConnState {
    /// Fresh state for a connection of `kind` authenticated as `account`
    pub fn new(kind: SocketKind, account: Arc<Account>) -> Self {
        match kind {
            SocketKind::Quote => ConnState::Quote(QuoteConn::new(account)),
            SocketKind::Trade => ConnState::Trade(TradeConn::new(account)),
        }
    }

    /// Which socket the connection is on
    pub fn kind(&self) -> SocketKind {
        match self {
            ConnState::Quote(_) => SocketKind::Quote,
            ConnState::Trade(_) => SocketKind::Trade,
        }
    }

    /// The account the connection authenticated as
    pub fn account(&self) -> &Arc<Account> {
        match self {
            ConnState::Quote(c) => c.account(),
            ConnState::Trade(c) => c.account(),
        }
    }

    /// Answer one business request (cmd ≥ 4) with the quote or trade handler
    pub fn handle(&mut self, cmd: u8, body: &[u8], market: &Market) -> Reply {
        match self {
            ConnState::Quote(c) => quote::handle(cmd, body, c, market),
            ConnState::Trade(c) => trade::handle(cmd, body, c, market),
        }
    }

    /// The quote push this connection gets for `update` (quote connections subscribed to it)
    pub fn quote_push(&self, update: &QuoteUpdate) -> Option<Push> {
        match self {
            ConnState::Quote(c) => c.wants_quote(update),
            ConnState::Trade(_) => None,
        }
    }

    /// The order push this connection gets for `order` (its account's subscribed trade
    /// connections)
    pub fn order_push(&self, order: &OrderPush, market_time: i64) -> Option<Push> {
        match self {
            ConnState::Quote(_) => None,
            ConnState::Trade(c) => c.wants_order(order, market_time),
        }
    }
}

/// Connection state parked under its session id between a disconnect and a reconnect
///
/// When a connection ends while its session stays valid, [`park`](Self::park) its state; when a
/// new connection reconnects with that session, [`take`](Self::take) it back (and re-park it
/// under the new session id the gateway mints, when that connection ends in turn). Bounded: at
/// most `capacity` entries (the oldest is dropped to make room) and each for at most `ttl`
/// (the session lifetime). Time is passed in.
#[derive(Debug)]
pub struct SessionStore<K, S = ConnState> {
    entries: HashMap<K, (S, Instant)>,
    capacity: usize,
    ttl: Duration,
}

impl<K: Hash + Eq + Clone, S> SessionStore<K, S> {
    /// An empty store of at most `capacity` (at least 1) entries kept for `ttl` each
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        SessionStore {
            entries: HashMap::new(),
            capacity: capacity.max(1),
            ttl,
        }
    }

    /// Park `state` under `session` at `now`; returns the entry dropped to make room, if any
    pub fn park(&mut self, session: K, state: S, now: Instant) -> Option<(K, S)> {
        self.purge(now);
        let mut evicted = None;
        if !self.entries.contains_key(&session) && self.entries.len() >= self.capacity {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                evicted = self.entries.remove(&k).map(|(s, _)| (k, s));
            }
        }
        self.entries.insert(session, (state, now));
        evicted
    }

    /// Take back the state parked under `session`, unless it is older than the ttl at `now`
    pub fn take(&mut self, session: &K, now: Instant) -> Option<S> {
        let (state, at) = self.entries.remove(session)?;
        (now.saturating_duration_since(at) <= self.ttl).then_some(state)
    }

    /// Drop every entry older than the ttl at `now`
    pub fn purge(&mut self, now: Instant) {
        let ttl = self.ttl;
        self.entries
            .retain(|_, (_, at)| now.saturating_duration_since(*at) <= ttl);
    }

    /// Entries parked
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is parked
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::{Script, UnixTime};
    use longport_proto::quote::SubType;
    use prost::Message as _;

    const SCRIPT: &str = concat!(
        r#"{"account": {"app_key": "k", "app_secret": "s", "member_id": 7, "quote_level": "LV1"}}"#,
        "\n",
        r#"{"security": {"symbol": "700.HK"}}"#,
        "\n",
        r#"{"push_quote": {"at": "1s", "symbol": "700.HK", "last_done": "1"}}"#,
        "\n",
        r#"{"push_order": {"at": "2s", "order_id": "1", "symbol": "700.HK", "side": "Buy", "order_type": "LO", "status": "NewStatus", "submitted_quantity": "1"}}"#,
    );

    #[test]
    fn subscriptions_survive_a_reconnect_through_the_store() {
        let script = Script::parse(SCRIPT).unwrap();
        let mut market = Market::new(&script, UnixTime(0));
        let account = Arc::clone(market.account("k").unwrap());
        let mut quote = ConnState::new(SocketKind::Quote, Arc::clone(&account));
        let mut trade = ConnState::new(SocketKind::Trade, Arc::clone(&account));
        assert_eq!(
            (quote.kind(), trade.kind()),
            (SocketKind::Quote, SocketKind::Trade)
        );
        assert_eq!(quote.account().app_key, "k");

        let sub = longport_proto::quote::SubscribeRequest {
            symbol: vec!["700.HK".into()],
            sub_type: vec![SubType::Quote as i32],
            is_first_push: false,
        }
        .encode_to_vec();
        assert_eq!(quote.handle(quote::CMD_SUBSCRIBE, &sub, &market).status, 0);
        let topics = longport_proto::trade::Sub {
            topics: vec!["private".into()],
        }
        .encode_to_vec();
        assert_eq!(trade.handle(trade::CMD_SUB, &topics, &market).status, 0);
        // a quote command on the trade socket and the reverse are refused
        assert_ne!(trade.handle(quote::CMD_SUBSCRIBE, &sub, &market).status, 0);
        assert_ne!(quote.handle(trade::CMD_SUB, &topics, &market).status, 0);

        // the connections end; their sessions are still valid
        let t0 = Instant::now();
        let mut store: SessionStore<String> = SessionStore::new(8, Duration::from_secs(60));
        store.park("s-quote".into(), quote, t0);
        store.park("s-trade".into(), trade, t0);
        assert_eq!(store.len(), 2);

        // reconnects with the sessions get the same state back, once
        let later = t0 + Duration::from_secs(2);
        let quote = store.take(&"s-quote".to_string(), later).unwrap();
        let trade = store.take(&"s-trade".to_string(), later).unwrap();
        assert!(store.take(&"s-quote".to_string(), later).is_none());
        assert!(store.is_empty());

        let crate::script::Item::Quote(p) = &script.timeline[0].item else {
            unreachable!()
        };
        let u = market.apply_quote(p, 1).unwrap();
        assert_eq!(
            quote.quote_push(&u),
            Some(u.push.clone()),
            "pushes continue"
        );
        assert_eq!(trade.quote_push(&u), None);
        let crate::script::Item::Order(o) = &script.timeline[1].item else {
            unreachable!()
        };
        assert!(trade.order_push(o, 2).is_some());
        assert!(quote.order_push(o, 2).is_none());
    }

    #[test]
    fn the_store_is_bounded_in_size_and_time() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut store: SessionStore<u32, &str> = SessionStore::new(2, Duration::from_secs(10));
        assert!(store.park(1, "a", s(0)).is_none());
        assert!(store.park(2, "b", s(1)).is_none());
        assert!(
            store.park(2, "b2", s(2)).is_none(),
            "replacing an entry evicts nothing"
        );
        assert_eq!(
            store.park(3, "c", s(3)),
            Some((1, "a")),
            "the oldest makes room"
        );
        assert_eq!(store.len(), 2);
        assert_eq!(
            store.take(&3, s(13)),
            Some("c"),
            "exactly the ttl is still valid"
        );
        assert_eq!(store.take(&2, s(13)), None, "expired");
        store.park(4, "d", s(20));
        store.purge(s(31));
        assert!(store.is_empty());
        let mut tiny: SessionStore<u32, ()> = SessionStore::new(0, Duration::ZERO);
        tiny.park(1, (), s(0));
        assert_eq!(
            tiny.park(2, (), s(0)),
            Some((1, ())),
            "capacity 0 is raised to 1"
        );
    }
}
