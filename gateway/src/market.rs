//! The gateway's market state: accounts, securities with their current quotes, trading days
//!
//! Built from a [`Script`]; the timeline's quote pushes update it ([`Market::apply_quote`]) so
//! that a later cmd 11 answers the values pushed so far. One `Market` serves every connection;
//! the handlers only read it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use longport_proto::quote as pb;
use prost::Message as _;

use crate::reply::Push;
use crate::script::{Account, Dec, QuotePush, RateLimit, Script, Security, TradeDays, UnixTime};

/// Push command of a real-time quote (`PushQuoteData`)
pub const CMD_PUSH_QUOTE: u8 = 101;

/// A security's current quote
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quote {
    /// Last price
    pub last_done: Dec,
    /// Previous close
    pub prev_close: Dec,
    /// Open
    pub open: Dec,
    /// High
    pub high: Dec,
    /// Low
    pub low: Dec,
    /// Time of the quote (Unix seconds)
    pub timestamp: i64,
    /// Cumulative volume
    pub volume: i64,
    /// Cumulative turnover
    pub turnover: Dec,
    /// `TradeStatus` value
    pub trade_status: i32,
    /// `TradeSession` value of the last push
    pub trade_session: i32,
}

/// A security: its static info, current quote and push sequence number
#[derive(Clone, Debug, PartialEq)]
pub struct SecurityState {
    /// Static info as scripted
    pub info: Security,
    /// Current quote
    pub quote: Quote,
    /// Sequence number of the last quote push (0: none yet)
    pub sequence: i64,
}

impl SecurityState {
    /// The `SecurityQuote` cmd 11 answers
    pub fn security_quote(&self) -> pb::SecurityQuote {
        let q = &self.quote;
        pb::SecurityQuote {
            symbol: self.info.symbol.clone(),
            last_done: q.last_done.to_string(),
            prev_close: q.prev_close.to_string(),
            open: q.open.to_string(),
            high: q.high.to_string(),
            low: q.low.to_string(),
            timestamp: q.timestamp,
            volume: q.volume,
            turnover: q.turnover.to_string(),
            trade_status: q.trade_status,
            pre_market_quote: None,
            post_market_quote: None,
            over_night_quote: None,
        }
    }

    /// The `StaticInfo` cmd 10 answers
    pub fn static_info(&self) -> pb::StaticInfo {
        let s = &self.info;
        let dec = |d: &Option<Dec>| d.as_ref().map(ToString::to_string).unwrap_or_default();
        pb::StaticInfo {
            symbol: s.symbol.clone(),
            name_cn: s.name_cn.clone(),
            name_en: s.name_en.clone(),
            name_hk: s.name_hk.clone(),
            listing_date: s.listing_date.clone(),
            exchange: s.exchange.clone(),
            currency: s.currency.clone(),
            lot_size: s.lot_size,
            total_shares: s.total_shares,
            circulating_shares: s.circulating_shares,
            hk_shares: s.hk_shares,
            eps: dec(&s.eps),
            eps_ttm: dec(&s.eps_ttm),
            bps: dec(&s.bps),
            dividend_yield: dec(&s.dividend_yield),
            stock_derivatives: s.stock_derivatives.clone(),
            board: s.board.clone(),
        }
    }

    /// A `PushQuote` of the current quote, with the given tick volume and turnover
    pub fn push_quote(&self, current_volume: i64, current_turnover: &Dec) -> pb::PushQuote {
        let q = &self.quote;
        pb::PushQuote {
            symbol: self.info.symbol.clone(),
            sequence: self.sequence,
            last_done: q.last_done.to_string(),
            open: q.open.to_string(),
            high: q.high.to_string(),
            low: q.low.to_string(),
            timestamp: q.timestamp,
            volume: q.volume,
            turnover: q.turnover.to_string(),
            trade_status: q.trade_status,
            trade_session: q.trade_session,
            current_volume,
            current_turnover: current_turnover.to_string(),
            tag: pb::PushQuoteTag::Normal as i32,
        }
    }
}

/// A quote push produced by [`Market::apply_quote`]: send `push` to every quote connection
/// subscribed to `symbol` with the quote sub type (see `quote::QuoteConn::wants_quote`)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuoteUpdate {
    /// Symbol
    pub symbol: String,
    /// cmd 101 with the encoded `PushQuote`
    pub push: Push,
}

/// Accounts, securities and trading days, shared by every connection
#[derive(Clone, Debug)]
pub struct Market {
    accounts: HashMap<String, Arc<Account>>,
    securities: BTreeMap<String, SecurityState>,
    trade_days: BTreeMap<String, TradeDays>,
    rate_limits: Option<Vec<RateLimit>>,
}

impl Market {
    /// The market at the start of `script`, `start` being the market time at offset 0
    /// (`Timeline::start`): the default timestamp of the securities' first quotes
    pub fn new(script: &Script, start: UnixTime) -> Market {
        let securities = script
            .securities
            .iter()
            .map(|s| {
                let v = &s.quote;
                let quote = Quote {
                    last_done: v.last_done.clone(),
                    prev_close: v.prev_close.clone(),
                    open: v.open.clone(),
                    high: v.high.clone(),
                    low: v.low.clone(),
                    timestamp: v.timestamp.unwrap_or(start).0,
                    volume: v.volume,
                    turnover: v.turnover.clone(),
                    trade_status: v.trade_status.0,
                    trade_session: pb::TradeSession::NormalTrade as i32,
                };
                let state = SecurityState {
                    info: s.clone(),
                    quote,
                    sequence: 0,
                };
                (s.symbol.clone(), state)
            })
            .collect();
        Market {
            accounts: script
                .accounts
                .iter()
                .map(|a| (a.app_key.clone(), Arc::clone(a)))
                .collect(),
            securities,
            trade_days: script.trade_days.clone(),
            rate_limits: None,
        }
    }

    /// The account with `app_key`
    pub fn account(&self, app_key: &str) -> Option<&Arc<Account>> {
        self.accounts.get(app_key)
    }

    /// Every account
    pub fn accounts(&self) -> impl Iterator<Item = &Arc<Account>> {
        self.accounts.values()
    }

    /// The security `symbol`
    pub fn security(&self, symbol: &str) -> Option<&SecurityState> {
        self.securities.get(symbol)
    }

    /// Trading days of `market`
    pub fn trade_days(&self, market: &str) -> Option<&TradeDays> {
        self.trade_days.get(market)
    }

    /// Hook: the per-command rate limits announced in every user quote profile (cmd 4),
    /// replacing the accounts' scripted `rate_limits` (`None`: back to the scripted ones)
    ///
    /// The gateway sets it from the rate limits its server machine enforces, so that the SDK's
    /// client-side bucket and the gateway agree.
    pub fn set_rate_limits(&mut self, limits: Option<Vec<RateLimit>>) {
        self.rate_limits = limits;
    }

    /// The rate limits announced to `account`
    pub fn rate_limits<'a>(&'a self, account: &'a Account) -> &'a [RateLimit] {
        self.rate_limits.as_deref().unwrap_or(&account.rate_limits)
    }

    /// Apply a scripted quote push at `market_time` and encode the push; `None` when the
    /// symbol is not a security (a parsed script never has one)
    ///
    /// Given fields replace the current ones. When left out: `high`/`low` follow `last_done`
    /// (a zero low counts as unset), `volume`/`turnover` grow by `current_volume`/
    /// `current_turnover`, `timestamp` is `market_time`, `trade_session` is `NORMAL_TRADE`.
    pub fn apply_quote(&mut self, push: &QuotePush, market_time: i64) -> Option<QuoteUpdate> {
        let s = self.securities.get_mut(&push.symbol)?;
        let q = &mut s.quote;
        if let Some(v) = &push.last_done {
            q.last_done = v.clone();
        }
        if let Some(v) = &push.open {
            q.open = v.clone();
        }
        match &push.high {
            Some(v) => q.high = v.clone(),
            None if push.last_done.is_some() && q.last_done > q.high => {
                q.high = q.last_done.clone();
            }
            None => {}
        }
        let zero = Dec::zero();
        match &push.low {
            Some(v) => q.low = v.clone(),
            None if push.last_done.is_some() && (q.low == zero || q.last_done < q.low) => {
                q.low = q.last_done.clone();
            }
            None => {}
        }
        let current_volume = push.current_volume.unwrap_or(0);
        let current_turnover = push.current_turnover.clone().unwrap_or_else(Dec::zero);
        match push.volume {
            Some(v) => q.volume = v,
            None => q.volume = q.volume.saturating_add(current_volume),
        }
        match &push.turnover {
            Some(v) => q.turnover = v.clone(),
            None => {
                if let Some(sum) = q.turnover.checked_add(&current_turnover) {
                    q.turnover = sum;
                }
            }
        }
        q.timestamp = push.timestamp.map_or(market_time, |t| t.0);
        if let Some(v) = push.trade_status {
            q.trade_status = v.0;
        }
        q.trade_session = push.trade_session.0;
        s.sequence += 1;
        Some(QuoteUpdate {
            symbol: push.symbol.clone(),
            push: Push {
                cmd: CMD_PUSH_QUOTE,
                body: s
                    .push_quote(current_volume, &current_turnover)
                    .encode_to_vec(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = concat!(
        r#"{"account": {"app_key": "k", "app_secret": "s", "member_id": 7, "quote_level": "LV1", "rate_limits": [{"command": 11, "limit": 10, "burst": 20}]}}"#,
        "\n",
        r#"{"security": {"symbol": "700.HK", "name_en": "TENCENT", "eps": "12.5", "quote": {"last_done": "305.0", "prev_close": "300", "volume": 10, "turnover": "3050"}}}"#,
        "\n",
        r#"{"security": {"symbol": "NEW.HK"}}"#,
        "\n",
        r#"{"push_quote": {"at": "1s", "symbol": "700.HK", "last_done": "306.2", "current_volume": 100, "current_turnover": "30620"}}"#,
        "\n",
        r#"{"push_quote": {"at": "2s", "symbol": "700.HK", "last_done": "304.0", "volume": 500, "timestamp": 1704159999, "trade_status": "HALTED", "trade_session": "POST_TRADE"}}"#,
        "\n",
        r#"{"push_quote": {"at": "3s", "symbol": "NEW.HK", "last_done": "1.5"}}"#,
    );

    fn pushes(script: &Script) -> Vec<QuotePush> {
        script
            .timeline
            .iter()
            .filter_map(|t| match &t.item {
                crate::script::Item::Quote(q) => Some(q.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn starts_from_the_script() {
        let script = Script::parse(SCRIPT).unwrap();
        let m = Market::new(&script, UnixTime(1_704_159_000));
        let s = m.security("700.HK").unwrap();
        assert_eq!(
            s.quote.timestamp, 1_704_159_000,
            "default timestamp: market start"
        );
        assert_eq!(s.sequence, 0);
        let q = s.security_quote();
        assert_eq!(
            (q.last_done.as_str(), q.prev_close.as_str(), q.volume),
            ("305.0", "300", 10)
        );
        let info = s.static_info();
        assert_eq!(
            (info.name_en.as_str(), info.eps.as_str(), info.bps.as_str()),
            ("TENCENT", "12.5", "")
        );
        assert!(m.security("9988.HK").is_none());
        assert_eq!(m.account("k").unwrap().member_id, 7);
        assert_eq!(m.accounts().count(), 1);
    }

    #[test]
    fn quote_pushes_update_the_state_and_encode_a_push_quote() {
        let script = Script::parse(SCRIPT).unwrap();
        let mut m = Market::new(&script, UnixTime(1_704_159_000));
        let p = pushes(&script);

        let u = m.apply_quote(&p[0], 1_704_159_001).unwrap();
        assert_eq!((u.symbol.as_str(), u.push.cmd), ("700.HK", CMD_PUSH_QUOTE));
        let pq = pb::PushQuote::decode(u.push.body.as_slice()).unwrap();
        assert_eq!(pq.sequence, 1);
        assert_eq!(pq.last_done, "306.2");
        assert_eq!(pq.high, "306.2", "high follows last_done");
        assert_eq!(pq.low, "306.2", "a zero low counts as unset");
        assert_eq!((pq.volume, pq.turnover.as_str()), (110, "33670"));
        assert_eq!(
            (pq.current_volume, pq.current_turnover.as_str()),
            (100, "30620")
        );
        assert_eq!(pq.timestamp, 1_704_159_001);

        let u = m.apply_quote(&p[1], 1_704_159_002).unwrap();
        let pq = pb::PushQuote::decode(u.push.body.as_slice()).unwrap();
        assert_eq!(pq.sequence, 2);
        assert_eq!((pq.high.as_str(), pq.low.as_str()), ("306.2", "304.0"));
        assert_eq!(pq.volume, 500, "a given volume replaces");
        assert_eq!(pq.timestamp, 1_704_159_999);
        assert_eq!(pq.trade_status, pb::TradeStatus::Halted as i32);
        assert_eq!(pq.trade_session, pb::TradeSession::PostTrade as i32);
        assert_eq!((pq.current_volume, pq.current_turnover.as_str()), (0, "0"));

        // cmd 11 now answers the pushed values
        let q = m.security("700.HK").unwrap().security_quote();
        assert_eq!(
            (q.last_done.as_str(), q.volume, q.trade_status),
            ("304.0", 500, 1)
        );

        let u = m.apply_quote(&p[2], 1_704_159_003).unwrap();
        let pq = pb::PushQuote::decode(u.push.body.as_slice()).unwrap();
        assert_eq!(
            (pq.sequence, pq.high.as_str(), pq.low.as_str()),
            (1, "1.5", "1.5")
        );
    }

    #[test]
    fn unknown_symbols_and_overflow_change_nothing() {
        let script = Script::parse(SCRIPT).unwrap();
        let mut m = Market::new(&script, UnixTime(0));
        let mut p = pushes(&script)[0].clone();
        p.symbol = "GHOST.US".into();
        assert!(m.apply_quote(&p, 1).is_none());

        let mut p = pushes(&script)[0].clone();
        p.current_turnover = Some(Dec::parse("99999999999999999999").unwrap());
        p.current_volume = Some(i64::MAX);
        m.apply_quote(&p, 1).unwrap();
        let q = &m.security("700.HK").unwrap().quote;
        assert_eq!(q.volume, i64::MAX, "volume saturates");
        assert_eq!(
            q.turnover.as_str(),
            "3050",
            "a turnover that does not fit is not added"
        );
    }

    #[test]
    fn rate_limit_hook_overrides_the_script() {
        let script = Script::parse(SCRIPT).unwrap();
        let mut m = Market::new(&script, UnixTime(0));
        let a = Arc::clone(m.account("k").unwrap());
        assert_eq!(m.rate_limits(&a)[0].limit, 10);
        m.set_rate_limits(Some(vec![RateLimit {
            command: 6,
            limit: 1,
            burst: 1,
        }]));
        assert_eq!(m.rate_limits(&a)[0].command, 6);
        m.set_rate_limits(None);
        assert_eq!(m.rate_limits(&a)[0].command, 11);
    }
}
