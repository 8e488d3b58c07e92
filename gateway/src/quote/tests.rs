use super::*;
use crate::market::CMD_PUSH_QUOTE;
use crate::script::{Item, Script, UnixTime};

const SCRIPT: &str = concat!(
    r#"{"account": {"app_key": "k", "app_secret": "s", "member_id": 100001, "quote_level": "LV2", "subscribe_limit": 2, "history_candlestick_limit": 1000, "rate_limits": [{"command": 11, "limit": 10, "burst": 20}], "packages": [{"key": "hk_lv2", "name": "HK LV2", "market": "HK", "start": 1704067200, "end": 1735689600}, {"key": "misc", "name": "no market"}]}}"#,
    "\n",
    r#"{"security": {"symbol": "700.HK", "name_en": "TENCENT", "currency": "HKD", "lot_size": 100, "quote": {"last_done": "305.0", "prev_close": "300.0", "volume": 10, "turnover": "3050", "timestamp": 1704158400}}}"#,
    "\n",
    r#"{"security": {"symbol": "9988.HK", "quote": {"last_done": "75.60"}}}"#,
    "\n",
    r#"{"security": {"symbol": "AAPL.US"}}"#,
    "\n",
    r#"{"trade_days": {"market": "HK", "days": ["20231229", "20240102", "20240103", "20240131"], "half_days": ["20240102"]}}"#,
    "\n",
    r#"{"push_quote": {"at": "1s", "symbol": "700.HK", "last_done": "306.2", "current_volume": 100, "current_turnover": "30620"}}"#,
);

fn setup() -> (Script, Market, QuoteConn) {
    let script = Script::parse(SCRIPT).unwrap();
    let market = Market::new(&script, UnixTime(1_704_159_000));
    let conn = QuoteConn::new(Arc::clone(market.account("k").unwrap()));
    (script, market, conn)
}

fn ok<M: Message + Default>(r: &Reply) -> M {
    assert_eq!(r.status, status::SUCCESS, "{:?}", r.error_detail());
    M::decode(r.body.as_slice()).unwrap()
}

fn err(r: &Reply) -> (u8, u64, String) {
    let e = r.error_detail().expect("an Error body");
    (r.status, e.code, e.msg)
}

fn subscribe_req(symbols: &[&str], types: &[SubType], first: bool) -> Vec<u8> {
    pb::SubscribeRequest {
        symbol: symbols.iter().map(|s| s.to_string()).collect(),
        sub_type: types.iter().map(|t| *t as i32).collect(),
        is_first_push: first,
    }
    .encode_to_vec()
}

fn multi(symbols: &[&str]) -> Vec<u8> {
    pb::MultiSecurityRequest {
        symbol: symbols.iter().map(|s| s.to_string()).collect(),
    }
    .encode_to_vec()
}

#[test]
fn user_quote_profile_from_the_account() {
    let (_, market, mut conn) = setup();
    let body = pb::UserQuoteProfileRequest {
        language: "en".into(),
    }
    .encode_to_vec();
    let r = handle(CMD_USER_QUOTE_PROFILE, &body, &mut conn, &market);
    assert!(r.pushes.is_empty());
    let p: pb::UserQuoteProfileResponse = ok(&r);
    assert_eq!((p.member_id, p.quote_level.as_str()), (100001, "LV2"));
    assert_eq!((p.subscribe_limit, p.history_candlestick_limit), (2, 1000));
    assert_eq!(
        p.rate_limit,
        [pb::RateLimit {
            command: 11,
            limit: 10,
            burst: 20
        }]
    );
    let d = p.quote_level_detail.unwrap();
    assert_eq!(d.by_package_key.len(), 2);
    let pkg = &d.by_package_key["hk_lv2"];
    assert_eq!((pkg.start, pkg.end), (1_704_067_200, 1_735_689_600));
    assert_eq!(
        d.by_market_code.len(),
        1,
        "packages without a market are not listed by market"
    );
    assert_eq!(d.by_market_code["HK"].packages[0].key, "hk_lv2");
    // the SDK's own first request carries the language; an empty body is just as valid
    let r = handle(CMD_USER_QUOTE_PROFILE, &[], &mut conn, &market);
    assert_eq!(ok::<pb::UserQuoteProfileResponse>(&r).member_id, 100001);
}

#[test]
fn security_quotes_follow_the_timeline() {
    let (script, mut market, mut conn) = setup();
    let r = handle(
        CMD_SECURITY_QUOTE,
        &multi(&["700.HK", "GHOST.HK", "9988.HK"]),
        &mut conn,
        &market,
    );
    let q: pb::SecurityQuoteResponse = ok(&r);
    let symbols: Vec<&str> = q.secu_quote.iter().map(|q| q.symbol.as_str()).collect();
    assert_eq!(
        symbols,
        ["700.HK", "9988.HK"],
        "unknown symbols left out, order kept"
    );
    let t = &q.secu_quote[0];
    assert_eq!(
        (t.last_done.as_str(), t.prev_close.as_str(), t.timestamp),
        ("305.0", "300.0", 1_704_158_400)
    );
    assert_eq!(
        q.secu_quote[1].timestamp, 1_704_159_000,
        "default: market start"
    );

    let Item::Quote(p) = &script.timeline[0].item else {
        unreachable!()
    };
    market.apply_quote(p, 1_704_159_001).unwrap();
    let r = handle(CMD_SECURITY_QUOTE, &multi(&["700.HK"]), &mut conn, &market);
    let q: pb::SecurityQuoteResponse = ok(&r);
    assert_eq!(
        (q.secu_quote[0].last_done.as_str(), q.secu_quote[0].volume),
        ("306.2", 110)
    );
}

#[test]
fn static_info() {
    let (_, market, mut conn) = setup();
    let r = handle(
        CMD_STATIC_INFO,
        &multi(&["700.HK", "NOPE"]),
        &mut conn,
        &market,
    );
    let s: pb::SecurityStaticInfoResponse = ok(&r);
    assert_eq!(s.secu_static_info.len(), 1);
    let i = &s.secu_static_info[0];
    assert_eq!(
        (i.name_en.as_str(), i.currency.as_str(), i.lot_size),
        ("TENCENT", "HKD", 100)
    );
}

#[test]
fn subscribe_keeps_a_per_connection_set_and_first_push() {
    let (script, mut market, mut conn) = setup();
    let r = handle(
        CMD_SUBSCRIBE,
        &subscribe_req(
            &["700.HK", "700.HK"],
            &[SubType::Quote, SubType::Depth],
            true,
        ),
        &mut conn,
        &market,
    );
    assert_eq!((r.status, r.body.len()), (status::SUCCESS, 0));
    assert_eq!(r.pushes.len(), 1, "one first push per distinct symbol");
    assert_eq!(r.pushes[0].cmd, CMD_PUSH_QUOTE);
    let first = pb::PushQuote::decode(r.pushes[0].body.as_slice()).unwrap();
    assert_eq!(
        (
            first.symbol.as_str(),
            first.last_done.as_str(),
            first.volume
        ),
        ("700.HK", "305.0", 10)
    );
    assert!(conn.is_subscribed("700.HK", SubType::Quote));
    assert!(conn.is_subscribed("700.HK", SubType::Depth));
    assert!(!conn.is_subscribed("700.HK", SubType::Trade));

    // trade-only subscription: no first quote push, no quote pushes later
    let r = handle(
        CMD_SUBSCRIBE,
        &subscribe_req(&["9988.HK"], &[SubType::Trade], true),
        &mut conn,
        &market,
    );
    assert!(r.pushes.is_empty());
    // resubscribing (the SDK after a reconnect, is_first_push false) adds flags, no pushes
    let r = handle(
        CMD_SUBSCRIBE,
        &subscribe_req(&["700.HK"], &[SubType::Quote], false),
        &mut conn,
        &market,
    );
    assert!(r.pushes.is_empty());

    let Item::Quote(p) = &script.timeline[0].item else {
        unreachable!()
    };
    let u = market.apply_quote(p, 1_704_159_001).unwrap();
    assert_eq!(conn.wants_quote(&u).unwrap(), u.push);
    let fresh = QuoteConn::new(Arc::clone(conn.account()));
    assert!(fresh.wants_quote(&u).is_none());

    let r = handle(CMD_SUBSCRIPTION, &[], &mut conn, &market);
    let s: pb::SubscriptionResponse = ok(&r);
    let listed: Vec<(&str, &[i32])> = s
        .sub_list
        .iter()
        .map(|l| (l.symbol.as_str(), l.sub_type.as_slice()))
        .collect();
    assert_eq!(listed, [("700.HK", &[1, 2][..]), ("9988.HK", &[4][..])]);
    let mine: Vec<_> = conn.subscriptions().collect();
    assert_eq!(mine[0], ("700.HK", vec![SubType::Quote, SubType::Depth]));
}

#[test]
fn subscribe_errors_change_nothing() {
    let (_, market, mut conn) = setup();
    let r = handle(
        CMD_SUBSCRIBE,
        &subscribe_req(&["700.HK", "GHOST.HK"], &[SubType::Quote], true),
        &mut conn,
        &market,
    );
    let (st, code_, msg) = err(&r);
    assert_eq!(
        (st, code_),
        (status::SERVER_INTERNAL_ERROR, code::INVALID_REQUEST)
    );
    assert!(msg.contains("GHOST.HK"), "{msg}");
    assert_eq!(conn.subscription_count(), 0, "nothing subscribed on error");

    for (body, what) in [
        (subscribe_req(&["700.HK"], &[], false), "no sub_type"),
        (subscribe_req(&[], &[SubType::Quote], false), "no symbol"),
        (
            subscribe_req(&["700.HK"], &[SubType::UnknownType], false),
            "unknown sub_type 0",
        ),
        (vec![0x0a, 0x09, b'7'], "bad request body"),
    ] {
        let (st, c, msg) = err(&handle(CMD_SUBSCRIBE, &body, &mut conn, &market));
        assert_eq!(
            (st, c),
            (status::BAD_REQUEST, code::INVALID_REQUEST),
            "{what}"
        );
        assert!(msg.contains(what), "{msg} vs {what}");
    }
    let mut body = pb::SubscribeRequest {
        symbol: vec!["700.HK".into()],
        sub_type: vec![9],
        is_first_push: false,
    }
    .encode_to_vec();
    let (st, _, msg) = err(&handle(CMD_SUBSCRIBE, &body, &mut conn, &market));
    assert_eq!(st, status::BAD_REQUEST);
    assert!(msg.contains("unknown sub_type 9"));

    body = subscribe_req(&vec!["700.HK"; MAX_SYMBOLS + 1], &[SubType::Quote], false);
    let (st, c, _) = err(&handle(CMD_SUBSCRIBE, &body, &mut conn, &market));
    assert_eq!((st, c), (status::BAD_REQUEST, code::TOO_MANY_ITEMS));
    assert_eq!(conn.subscription_count(), 0);
}

#[test]
fn subscribe_limit() {
    let (_, market, mut conn) = setup();
    // limit 2 distinct symbols; duplicates and re-subscriptions do not count twice
    let r = handle(
        CMD_SUBSCRIBE,
        &subscribe_req(&["700.HK", "9988.HK", "700.HK"], &[SubType::Quote], false),
        &mut conn,
        &market,
    );
    assert_eq!(r.status, status::SUCCESS);
    let r = handle(
        CMD_SUBSCRIBE,
        &subscribe_req(&["9988.HK"], &[SubType::Trade], false),
        &mut conn,
        &market,
    );
    assert_eq!(r.status, status::SUCCESS);
    let (st, c, msg) = err(&handle(
        CMD_SUBSCRIBE,
        &subscribe_req(&["AAPL.US"], &[SubType::Quote], false),
        &mut conn,
        &market,
    ));
    assert_eq!(
        (st, c),
        (status::SERVER_INTERNAL_ERROR, code::TOO_MANY_SUBSCRIPTIONS)
    );
    assert!(msg.contains("limit 2"), "{msg}");
    assert!(!conn.is_subscribed("AAPL.US", SubType::Quote));
}

#[test]
fn unsubscribe() {
    let (_, market, mut conn) = setup();
    handle(
        CMD_SUBSCRIBE,
        &subscribe_req(
            &["700.HK", "9988.HK"],
            &[SubType::Quote, SubType::Trade],
            false,
        ),
        &mut conn,
        &market,
    );
    let unsub = |symbols: &[&str], types: &[SubType], all: bool| {
        pb::UnsubscribeRequest {
            symbol: symbols.iter().map(|s| s.to_string()).collect(),
            sub_type: types.iter().map(|t| *t as i32).collect(),
            unsub_all: all,
        }
        .encode_to_vec()
    };
    let r = handle(
        CMD_UNSUBSCRIBE,
        &unsub(&["700.HK", "GHOST"], &[SubType::Quote], false),
        &mut conn,
        &market,
    );
    let _: pb::UnsubscribeResponse = ok(&r);
    assert!(!conn.is_subscribed("700.HK", SubType::Quote));
    assert!(conn.is_subscribed("700.HK", SubType::Trade));
    // no sub type: every type of the symbol
    handle(
        CMD_UNSUBSCRIBE,
        &unsub(&["700.HK"], &[], false),
        &mut conn,
        &market,
    );
    assert_eq!(conn.subscription_count(), 1);
    handle(CMD_UNSUBSCRIBE, &unsub(&[], &[], true), &mut conn, &market);
    assert_eq!(conn.subscription_count(), 0);
    let (st, _, _) = err(&handle(
        CMD_UNSUBSCRIBE,
        &unsub(&["700.HK"], &[SubType::UnknownType], false),
        &mut conn,
        &market,
    ));
    assert_eq!(st, status::BAD_REQUEST);
}

#[test]
fn trade_days_in_range() {
    let (_, market, mut conn) = setup();
    let req = |m: &str, b: &str, e: &str| {
        pb::MarketTradeDayRequest {
            market: m.into(),
            beg_day: b.into(),
            end_day: e.into(),
        }
        .encode_to_vec()
    };
    let r = handle(
        CMD_TRADE_DAYS,
        &req("HK", "20240101", "20240130"),
        &mut conn,
        &market,
    );
    let d: pb::MarketTradeDayResponse = ok(&r);
    assert_eq!(d.trade_day, ["20240102", "20240103"]);
    assert_eq!(d.half_trade_day, ["20240102"]);
    let r = handle(
        CMD_TRADE_DAYS,
        &req("US", "20240101", "20240130"),
        &mut conn,
        &market,
    );
    let d: pb::MarketTradeDayResponse = ok(&r);
    assert!(
        d.trade_day.is_empty() && d.half_trade_day.is_empty(),
        "unscripted market: none"
    );
    for (b, e, what) in [
        ("2024010", "20240130", "beg_day"),
        ("20240101", "20241301", "end_day"),
        ("20240201", "20240101", "after"),
    ] {
        let (st, c, msg) = err(&handle(
            CMD_TRADE_DAYS,
            &req("HK", b, e),
            &mut conn,
            &market,
        ));
        assert_eq!((st, c), (status::BAD_REQUEST, code::INVALID_REQUEST));
        assert!(msg.contains(what), "{msg}");
    }
}

#[test]
fn every_other_command_is_an_error_never_silence() {
    let (_, market, mut conn) = setup();
    for cmd in (0..=255u8).filter(|c| ![4, 5, 6, 7, 9, 10, 11].contains(c)) {
        let r = handle(cmd, &[], &mut conn, &market);
        let (st, c, msg) = err(&r);
        assert_eq!(
            (st, c),
            (status::BAD_REQUEST, code::INVALID_REQUEST),
            "cmd {cmd}"
        );
        assert!(msg.contains(&format!("command {cmd} ")), "{msg}");
        assert!(r.pushes.is_empty());
    }
}

#[test]
fn garbage_bodies_never_panic() {
    let (_, market, mut conn) = setup();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for len in 0..64 {
        let body: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        for cmd in [4, 5, 6, 7, 9, 10, 11] {
            let r = handle(cmd, &body, &mut conn, &market);
            assert!(
                r.status == status::SUCCESS || r.error_detail().is_some(),
                "cmd {cmd}"
            );
        }
    }
}

/// The SDK's own conversions (the `TryFrom` impls `QuoteContext` applies) accept our replies
#[test]
fn the_sdk_converts_our_replies() {
    use longport::quote::{QuotePackageDetail, SecurityQuote, SecurityStaticInfo, TradeStatus};
    let (_, market, mut conn) = setup();
    let p: pb::UserQuoteProfileResponse =
        ok(&handle(CMD_USER_QUOTE_PROFILE, &[], &mut conn, &market));
    for pkg in p.quote_level_detail.unwrap().by_package_key.into_values() {
        QuotePackageDetail::try_from(pkg).expect("valid package times");
    }
    let q: pb::SecurityQuoteResponse = ok(&handle(
        CMD_SECURITY_QUOTE,
        &multi(&["700.HK", "9988.HK", "AAPL.US"]),
        &mut conn,
        &market,
    ));
    let quotes: Vec<SecurityQuote> = q
        .secu_quote
        .into_iter()
        .map(|q| SecurityQuote::try_from(q).unwrap())
        .collect();
    assert_eq!(quotes[0].last_done.to_string(), "305.0");
    assert_eq!(quotes[0].timestamp.unix_timestamp(), 1_704_158_400);
    assert_eq!(quotes[0].trade_status, TradeStatus::Normal);
    assert_eq!(
        quotes[2].last_done.to_string(),
        "0",
        "an all-default security still converts"
    );
    let s: pb::SecurityStaticInfoResponse = ok(&handle(
        CMD_STATIC_INFO,
        &multi(&["700.HK"]),
        &mut conn,
        &market,
    ));
    let info = SecurityStaticInfo::try_from(s.secu_static_info[0].clone()).unwrap();
    assert_eq!((info.name_en.as_str(), info.lot_size), ("TENCENT", 100));
}
