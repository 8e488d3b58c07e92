//! Quote socket business commands (what `QuoteContext` sends after auth)
//!
//! [`handle`] is a pure function of the command, its body, the connection's [`QuoteConn`] and
//! the [`Market`]. Bodies are the official `longport-proto` messages (`longbridge.quote.v1`).
//!
//! | cmd | request | answer |
//! |---|---|---|
//! | 4 | `UserQuoteProfileRequest` | `UserQuoteProfileResponse` from the account |
//! | 5 | `SubscriptionRequest` | `SubscriptionResponse`: this connection's subscriptions |
//! | 6 | `SubscribeRequest` | empty; with `is_first_push`, a cmd 101 push of each symbol's current quote follows |
//! | 7 | `UnsubscribeRequest` | `UnsubscribeResponse` |
//! | 9 | `MarketTradeDayRequest` | `MarketTradeDayResponse`: scripted days in `[beg_day, end_day]` |
//! | 10 | `MultiSecurityRequest` | `SecurityStaticInfoResponse` (unknown symbols left out) |
//! | 11 | `MultiSecurityRequest` | `SecurityQuoteResponse`: current quotes (unknown symbols left out) |
//! | other | | status 3, `Error{301600}` naming the command |
//!
//! A body that does not decode, or bad parameters, get status 3 with `Error{301600, ..}`;
//! unknown symbols in a subscribe get status 7 with `Error{301600}`; going over the account's
//! subscribe limit gets status 7 with `Error{301605}`; more than [`MAX_SYMBOLS`] symbols in one
//! request gets status 3 with `Error{301607}` (the codes of the OpenAPI quote error tables).

use std::collections::BTreeMap;
use std::sync::Arc;

use longport_proto::quote::{self as pb, SubType};
use prost::Message;

use crate::market::{Market, QuoteUpdate};
use crate::reply::{code, status, Push, Reply};
use crate::script::{Account, Day, Dec};

/// `QueryUserQuoteProfile`
pub const CMD_USER_QUOTE_PROFILE: u8 = 4;
/// `Subscription` (list this connection's subscriptions)
pub const CMD_SUBSCRIPTION: u8 = 5;
/// `Subscribe`
pub const CMD_SUBSCRIBE: u8 = 6;
/// `Unsubscribe`
pub const CMD_UNSUBSCRIBE: u8 = 7;
/// `QueryMarketTradeDay`
pub const CMD_TRADE_DAYS: u8 = 9;
/// `QuerySecurityStaticInfo`
pub const CMD_STATIC_INFO: u8 = 10;
/// `QuerySecurityQuote`
pub const CMD_SECURITY_QUOTE: u8 = 11;

/// Most symbols one request may name (the OpenAPI quote pages' per-request limit)
pub const MAX_SYMBOLS: usize = 500;

/// Bit of a sub type in a subscription's flags (`None` for `UnknownType` and unknown values)
fn flag(sub_type: i32) -> Option<u8> {
    match SubType::try_from(sub_type).ok()? {
        SubType::UnknownType => None,
        t => Some(1 << (t as i32 - 1)),
    }
}

const ALL_FLAGS: u8 = 0b1111;

fn sub_types(flags: u8) -> Vec<i32> {
    (1..=4).filter(|t| flags & (1 << (t - 1)) != 0).collect()
}

/// A quote connection's business state: its account and subscriptions
///
/// Owned by the connection; when the connection ends with its session still valid, park it in a
/// [`SessionStore`](crate::session::SessionStore) and hand it to the connection that reconnects
/// with that session, so subscriptions survive a reconnect even before the SDK resubscribes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuoteConn {
    account: Arc<Account>,
    subs: BTreeMap<String, u8>,
}

impl QuoteConn {
    /// A fresh connection of `account` with no subscriptions
    pub fn new(account: Arc<Account>) -> Self {
        QuoteConn {
            account,
            subs: BTreeMap::new(),
        }
    }

    /// The account the connection authenticated as
    pub fn account(&self) -> &Arc<Account> {
        &self.account
    }

    /// Whether `symbol` is subscribed with `sub_type`
    pub fn is_subscribed(&self, symbol: &str, sub_type: SubType) -> bool {
        let f = flag(sub_type as i32).unwrap_or(0);
        self.subs.get(symbol).is_some_and(|s| s & f != 0)
    }

    /// The push of `update` for this connection, if it subscribed to the symbol's quotes
    pub fn wants_quote(&self, update: &QuoteUpdate) -> Option<Push> {
        self.is_subscribed(&update.symbol, SubType::Quote)
            .then(|| update.push.clone())
    }

    /// Subscribed symbols with their sub types, sorted by symbol
    pub fn subscriptions(&self) -> impl Iterator<Item = (&str, Vec<SubType>)> {
        self.subs.iter().map(|(s, f)| {
            let types = sub_types(*f)
                .into_iter()
                .filter_map(|t| SubType::try_from(t).ok())
                .collect();
            (s.as_str(), types)
        })
    }

    /// Number of subscribed symbols
    pub fn subscription_count(&self) -> usize {
        self.subs.len()
    }
}

fn decode<M: Message + Default>(cmd: u8, body: &[u8]) -> Result<M, Reply> {
    M::decode(body).map_err(|e| Reply::invalid_request(format!("cmd {cmd}: bad request body: {e}")))
}

fn check_symbols(symbols: &[String]) -> Result<(), Reply> {
    if symbols.len() > MAX_SYMBOLS {
        return Err(Reply::error(
            status::BAD_REQUEST,
            code::TOO_MANY_ITEMS,
            format!(
                "too many symbols: {} (at most {MAX_SYMBOLS})",
                symbols.len()
            ),
        ));
    }
    Ok(())
}

/// Answer one quote business request
///
/// `conn` changes only on a successful subscribe or unsubscribe; `market` is read only.
pub fn handle(cmd: u8, body: &[u8], conn: &mut QuoteConn, market: &Market) -> Reply {
    let r = match cmd {
        CMD_USER_QUOTE_PROFILE => user_profile(body, conn, market),
        CMD_SUBSCRIPTION => subscription(body, conn),
        CMD_SUBSCRIBE => subscribe(body, conn, market),
        CMD_UNSUBSCRIBE => unsubscribe(body, conn),
        CMD_TRADE_DAYS => trade_days(body, market),
        CMD_STATIC_INFO => static_info(body, market),
        CMD_SECURITY_QUOTE => security_quote(body, market),
        _ => return Reply::unsupported(cmd),
    };
    r.unwrap_or_else(|e| e)
}

fn user_profile(body: &[u8], conn: &QuoteConn, market: &Market) -> Result<Reply, Reply> {
    let _req: pb::UserQuoteProfileRequest = decode(CMD_USER_QUOTE_PROFILE, body)?;
    let a = &conn.account;
    let mut detail = pb::UserQuoteLevelDetail::default();
    for p in &a.packages {
        let pkg = pb::user_quote_level_detail::PackageDetail {
            key: p.key.clone(),
            name: p.name.clone(),
            description: p.description.clone(),
            start: p.start.0,
            end: p.end.0,
        };
        if !p.market.is_empty() {
            detail
                .by_market_code
                .entry(p.market.clone())
                .or_default()
                .packages
                .push(pkg.clone());
        }
        detail.by_package_key.insert(p.key.clone(), pkg);
    }
    let rate_limit = market
        .rate_limits(a)
        .iter()
        .map(|r| pb::RateLimit {
            command: i32::from(r.command),
            limit: r.limit,
            burst: r.burst,
        })
        .collect();
    Ok(Reply::ok(&pb::UserQuoteProfileResponse {
        member_id: a.member_id,
        quote_level: a.quote_level.clone(),
        subscribe_limit: a.subscribe_limit,
        history_candlestick_limit: a.history_candlestick_limit,
        rate_limit,
        quote_level_detail: Some(detail),
    }))
}

fn subscription(body: &[u8], conn: &QuoteConn) -> Result<Reply, Reply> {
    let _req: pb::SubscriptionRequest = decode(CMD_SUBSCRIPTION, body)?;
    let sub_list = conn
        .subs
        .iter()
        .map(|(symbol, f)| pb::SubTypeList {
            symbol: symbol.clone(),
            sub_type: sub_types(*f),
        })
        .collect();
    Ok(Reply::ok(&pb::SubscriptionResponse { sub_list }))
}

/// The flags of a request's sub types; an empty list means every type when `empty_is_all`
fn flags_of(sub_type: &[i32], empty_is_all: bool) -> Result<u8, Reply> {
    if sub_type.is_empty() {
        return if empty_is_all {
            Ok(ALL_FLAGS)
        } else {
            Err(Reply::invalid_request("no sub_type given"))
        };
    }
    sub_type.iter().try_fold(0u8, |acc, t| match flag(*t) {
        Some(f) => Ok(acc | f),
        None => Err(Reply::invalid_request(format!("unknown sub_type {t}"))),
    })
}

fn subscribe(body: &[u8], conn: &mut QuoteConn, market: &Market) -> Result<Reply, Reply> {
    let req: pb::SubscribeRequest = decode(CMD_SUBSCRIBE, body)?;
    check_symbols(&req.symbol)?;
    if req.symbol.is_empty() {
        return Err(Reply::invalid_request("no symbol given"));
    }
    let flags = flags_of(&req.sub_type, false)?;
    if let Some(unknown) = req.symbol.iter().find(|s| market.security(s).is_none()) {
        return Err(Reply::error(
            status::SERVER_INTERNAL_ERROR,
            code::INVALID_REQUEST,
            format!("symbol not found: {unknown}"),
        ));
    }
    let new = req
        .symbol
        .iter()
        .filter(|s| !conn.subs.contains_key(s.as_str()))
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let limit = usize::try_from(conn.account.subscribe_limit).unwrap_or(0);
    if conn.subs.len() + new > limit {
        return Err(Reply::error(
            status::SERVER_INTERNAL_ERROR,
            code::TOO_MANY_SUBSCRIPTIONS,
            format!(
                "too many subscriptions: {} subscribed, {new} more asked, limit {limit}",
                conn.subs.len()
            ),
        ));
    }
    for s in &req.symbol {
        *conn.subs.entry(s.clone()).or_insert(0) |= flags;
    }
    let mut reply = Reply::ok(&());
    if req.is_first_push && flags & flag(SubType::Quote as i32).unwrap_or(0) != 0 {
        let zero = Dec::zero();
        let mut seen = std::collections::BTreeSet::new();
        reply = reply.with_pushes(
            req.symbol
                .iter()
                .filter(|s| seen.insert(*s))
                .filter_map(|s| {
                    market.security(s).map(|sec| Push {
                        cmd: crate::market::CMD_PUSH_QUOTE,
                        body: sec.push_quote(0, &zero).encode_to_vec(),
                    })
                }),
        );
    }
    Ok(reply)
}

fn unsubscribe(body: &[u8], conn: &mut QuoteConn) -> Result<Reply, Reply> {
    let req: pb::UnsubscribeRequest = decode(CMD_UNSUBSCRIBE, body)?;
    if req.unsub_all {
        conn.subs.clear();
    } else {
        check_symbols(&req.symbol)?;
        let flags = flags_of(&req.sub_type, true)?;
        for s in &req.symbol {
            if let Some(f) = conn.subs.get_mut(s.as_str()) {
                *f &= !flags;
                if *f == 0 {
                    conn.subs.remove(s.as_str());
                }
            }
        }
    }
    Ok(Reply::ok(&pb::UnsubscribeResponse {}))
}

fn trade_days(body: &[u8], market: &Market) -> Result<Reply, Reply> {
    let req: pb::MarketTradeDayRequest = decode(CMD_TRADE_DAYS, body)?;
    let day = |field: &str, v: &str| {
        Day::parse(v).map_err(|e| Reply::invalid_request(format!("{field}: {e}")))
    };
    let (beg, end) = (day("beg_day", &req.beg_day)?, day("end_day", &req.end_day)?);
    if beg > end {
        return Err(Reply::invalid_request(format!(
            "beg_day {} is after end_day {}",
            req.beg_day, req.end_day
        )));
    }
    let mut resp = pb::MarketTradeDayResponse::default();
    if let Some(d) = market.trade_days(&req.market) {
        let in_range = |days: &[Day]| {
            days.iter()
                .filter(|d| (beg..=end).contains(d))
                .map(|d| d.compact())
                .collect()
        };
        resp.trade_day = in_range(&d.days);
        resp.half_trade_day = in_range(&d.half_days);
    }
    Ok(Reply::ok(&resp))
}

fn static_info(body: &[u8], market: &Market) -> Result<Reply, Reply> {
    let req: pb::MultiSecurityRequest = decode(CMD_STATIC_INFO, body)?;
    check_symbols(&req.symbol)?;
    let secu_static_info = req
        .symbol
        .iter()
        .filter_map(|s| market.security(s))
        .map(|s| s.static_info())
        .collect();
    Ok(Reply::ok(&pb::SecurityStaticInfoResponse {
        secu_static_info,
    }))
}

fn security_quote(body: &[u8], market: &Market) -> Result<Reply, Reply> {
    let req: pb::MultiSecurityRequest = decode(CMD_SECURITY_QUOTE, body)?;
    check_symbols(&req.symbol)?;
    let secu_quote = req
        .symbol
        .iter()
        .filter_map(|s| market.security(s))
        .map(|s| s.security_quote())
        .collect();
    Ok(Reply::ok(&pb::SecurityQuoteResponse { secu_quote }))
}

#[cfg(test)]
mod tests;
