//! The unmodified official SDK (`longport` 4.3.7: `QuoteContext`, `TradeContext`) against the
//! `longport-gateway` binary on 127.0.0.1
//!
//! Each test starts its own gateway process (free ports, its own script) and kills it by PID at
//! the end; every await is bounded by a timeout. Timing checks are lower bounds (a push never
//! comes before its scripted offset) plus generous upper bounds.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use longport::quote::{PushEvent, PushEventDetail, SubFlags};
use longport::trade::{PushEvent as TradePush, TopicType};
use longport::wsclient::WsClientError;
use longport::{Config, Decimal, Error, QuoteContext, TradeContext};
use support::{Gateway, ACCESS, KEY, MEMBER_ID, PUSH_THEN_CLOSE, QUOTE_LEVEL, SECRET};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::timeout;

const STEP: Duration = Duration::from_secs(20);

fn config(g: &Gateway, secret: &str) -> Arc<Config> {
    Arc::new(
        Config::from_apikey(KEY, secret, ACCESS)
            .http_url(g.http_url())
            .quote_ws_url(g.quote_url())
            .trade_ws_url(g.trade_url())
            .dont_print_quote_packages(),
    )
}

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// The next quote push of `symbol` (other push kinds skipped), with its arrival time
async fn next_quote(rx: &mut UnboundedReceiver<PushEvent>, limit: Duration) -> (Decimal, Instant) {
    loop {
        let ev = timeout(limit, rx.recv())
            .await
            .expect("no quote push in time")
            .expect("push channel closed");
        if let PushEventDetail::Quote(q) = ev.detail {
            assert_eq!(ev.symbol, "700.HK");
            return (q.last_done, Instant::now());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quote_context_gets_profile_and_scripted_quote() {
    let mut g = Gateway::start("", &[]);
    let (ctx, _rx) = QuoteContext::new(config(&g, SECRET));
    let member = timeout(STEP, ctx.member_id()).await.unwrap().unwrap();
    assert_eq!(member, MEMBER_ID);
    let level = timeout(STEP, ctx.quote_level()).await.unwrap().unwrap();
    assert_eq!(level, QUOTE_LEVEL);
    let quotes = timeout(STEP, ctx.quote(["700.HK"])).await.unwrap().unwrap();
    assert_eq!(quotes.len(), 1);
    let q = &quotes[0];
    assert_eq!(q.symbol, "700.HK");
    assert_eq!(q.last_done, dec("388.2"));
    assert_eq!(q.prev_close, dec("385.0"));
    assert_eq!(q.open, dec("386.0"));
    assert_eq!(q.high, dec("390.0"));
    assert_eq!(q.low, dec("384.4"));
    assert_eq!(q.volume, 1000);
    assert_eq!(q.turnover, dec("388200"));
    // 2024-01-02T09:59:00+08:00
    assert_eq!(q.timestamp.unix_timestamp(), 1_704_160_740);
    g.wait_for("quote#1 auth ok: test-app-key (member 4242)", STEP);
    assert_eq!(g.count("quote#1 cmd"), 0, "no error answers to cmd 4 or 11");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_gets_the_scripted_pushes_in_order_and_on_time() {
    let mut g = Gateway::start(
        concat!(
            r#"{"push_quote": {"at": "1s", "symbol": "700.HK", "last_done": "389.0"}}"#,
            "\n",
            r#"{"push_quote": {"at": "1.5s", "symbol": "9988.HK", "last_done": "76.0"}}"#,
            "\n",
            r#"{"push_quote": {"at": "2s", "symbol": "700.HK", "last_done": "389.6"}}"#,
            "\n",
            r#"{"push_quote": {"at": "3s", "symbol": "700.HK", "last_done": "390.4"}}"#,
            "\n",
        ),
        &["--start-on-auth"],
    );
    let (ctx, mut rx) = QuoteContext::new(config(&g, SECRET));
    let called = Instant::now();
    timeout(STEP, ctx.subscribe(["700.HK"], SubFlags::QUOTE))
        .await
        .unwrap()
        .unwrap();
    // is_first_push: the current quote first, then the script's 700.HK pushes (not 9988.HK)
    let (first, _) = next_quote(&mut rx, STEP).await;
    assert_eq!(first, dec("388.2"));
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(next_quote(&mut rx, STEP).await);
    }
    let prices: Vec<_> = got.iter().map(|(p, _)| *p).collect();
    assert_eq!(prices, [dec("389.0"), dec("389.6"), dec("390.4")]);
    // the timeline started at the Auth, after `called`: no push before its offset
    for ((_, at), offset) in got.iter().zip([1.0, 2.0, 3.0]) {
        let since = at.duration_since(called).as_secs_f64();
        assert!(since >= offset, "push due at {offset} s came at {since} s");
        assert!(
            since < offset + 10.0,
            "push due at {offset} s came at {since} s"
        );
    }
    g.wait_for("timeline started", STEP);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhandled_command_is_a_response_error_with_our_status_and_code() {
    let mut g = Gateway::start("", &[]);
    let (ctx, _rx) = QuoteContext::new(config(&g, SECRET));
    // cmd 14 (depth) is not implemented by the gateway
    let err = timeout(STEP, ctx.depth("700.HK"))
        .await
        .unwrap()
        .expect_err("depth is not implemented");
    match err {
        Error::WsClient(WsClientError::ResponseError {
            status,
            detail: Some(d),
        }) => {
            assert_eq!(status, 3);
            assert_eq!(d.code, 301_600);
            assert!(d.msg.contains("command 14"), "{}", d.msg);
        }
        other => panic!("expected ResponseError, got {other:?}"),
    }
    g.wait_for("cmd 14: status 3, error 301600", STEP);
    // the connection is still good
    let q = timeout(STEP, ctx.quote(["9988.HK"]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(q[0].last_done, dec("75.60"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_close_makes_the_sdk_reconnect_resubscribe_and_pushes_continue() {
    let script = format!(
        "{PUSH_THEN_CLOSE}{}\n{}\n",
        r#"{"push_quote": {"at": "7s", "symbol": "700.HK", "last_done": "391.0"}}"#,
        r#"{"push_quote": {"at": "7.5s", "symbol": "700.HK", "last_done": "391.5"}}"#
    );
    let mut g = Gateway::start(&script, &["--start-on-auth"]);
    let (ctx, mut rx) = QuoteContext::new(config(&g, SECRET));
    timeout(STEP, ctx.subscribe(["700.HK"], SubFlags::QUOTE))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next_quote(&mut rx, STEP).await.0, dec("388.2"));
    assert_eq!(next_quote(&mut rx, STEP).await.0, dec("389.0"));
    g.wait_for("close quote#1 (code 1)", STEP);
    g.wait_for("quote#1 closed", STEP);
    // the SDK comes back 2 s later with cmd 3 and its session, then resubscribes (cmd 6)
    let line = g.wait_for("quote#2 reconnect ok: test-app-key", STEP);
    assert!(line.contains("session"), "{line}");
    assert_eq!(
        g.count("auth ok"),
        1,
        "no second token/Auth: the session was resumed"
    );
    assert_eq!(next_quote(&mut rx, STEP).await.0, dec("391.0"));
    assert_eq!(next_quote(&mut rx, STEP).await.0, dec("391.5"));
    // requests work on the new connection and see the pushed values
    let q = timeout(STEP, ctx.quote(["700.HK"])).await.unwrap().unwrap();
    assert_eq!(q[0].last_done, dec("391.5"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trade_context_balance_and_private_order_pushes() {
    let mut g = Gateway::start(
        concat!(
            r#"{"push_order": {"at": "1s", "order_id": "9001", "symbol": "700.HK", "side": "Buy", "order_type": "LO", "status": "NewStatus", "submitted_quantity": "200", "submitted_price": "388.2"}}"#,
            "\n",
            r#"{"push_order": {"at": "1.5s", "order_id": "9001", "symbol": "700.HK", "side": "Buy", "order_type": "LO", "status": "FilledStatus", "submitted_quantity": "200", "submitted_price": "388.2", "executed_quantity": "200", "executed_price": "388.2"}}"#,
            "\n",
        ),
        &["--start-on-auth"],
    );
    let (ctx, mut rx) = TradeContext::new(config(&g, SECRET));
    let balances = timeout(STEP, ctx.account_balance(None))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(balances.len(), 1);
    assert_eq!(balances[0].currency, "HKD");
    assert_eq!(balances[0].total_cash, dec("1234567.89"));
    assert_eq!(balances[0].cash_infos[0].available_cash, dec("1234567.89"));
    timeout(STEP, ctx.subscribe([TopicType::Private]))
        .await
        .unwrap()
        .unwrap();
    g.wait_for("trade#1 auth ok", STEP);
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let TradePush::OrderChanged(o) = timeout(STEP, rx.recv()).await.unwrap().unwrap();
        assert_eq!(o.order_id, "9001");
        assert_eq!(o.symbol, "700.HK");
        assert_eq!(o.submitted_quantity, dec("200"));
        statuses.push(format!("{:?}", o.status));
    }
    assert_eq!(statuses, ["New", "Filled"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_app_secret_is_refused_at_the_token_endpoint() {
    let mut g = Gateway::start("", &[]);
    let (ctx, _rx) = QuoteContext::new(config(&g, "not-the-secret"));
    let err = timeout(STEP, ctx.member_id())
        .await
        .unwrap()
        .expect_err("a wrong secret must not connect");
    assert_eq!(err.openapi_error_code(), Some(403_201), "{err:?}");
    assert_eq!(g.count("auth ok"), 0);
    assert_eq!(g.count("connected from"), 0, "refused before any socket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_context_more_than_the_quota_gets_status_6_with_error_403() {
    let mut g = Gateway::start("", &["--max-connections", "2"]);
    let mut held = Vec::new();
    for _ in 0..2 {
        let (ctx, rx) = QuoteContext::new(config(&g, SECRET));
        assert_eq!(
            timeout(STEP, ctx.member_id()).await.unwrap().unwrap(),
            MEMBER_ID
        );
        held.push((ctx, rx));
    }
    let (third, _rx) = QuoteContext::new(config(&g, SECRET));
    let err = timeout(STEP, third.member_id())
        .await
        .unwrap()
        .expect_err("over the quota");
    match err {
        Error::WsClient(WsClientError::ResponseError {
            status,
            detail: Some(d),
        }) => {
            assert_eq!(status, 6);
            assert_eq!(d.code, 403);
        }
        other => panic!("expected ResponseError 6/403, got {other:?}"),
    }
    g.wait_for(
        "auth refused: test-app-key holds 2 of 2 quote connections",
        STEP,
    );
    // the trade socket has its own count
    let (trade, _trx) = TradeContext::new(config(&g, SECRET));
    timeout(STEP, trade.subscribe([TopicType::Private]))
        .await
        .unwrap()
        .unwrap();
    // the held contexts still work
    let q = timeout(STEP, held[0].0.quote(["700.HK"]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(q[0].last_done, dec("388.2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_the_rate_limit_gets_status_3_with_code_301606() {
    let g = Gateway::start("", &["--rate-limit", "1:4"]);
    let (ctx, _rx) = QuoteContext::new(config(&g, SECRET));
    // the connect's cmd 4 takes one request of the burst of 4
    assert_eq!(
        timeout(STEP, ctx.member_id()).await.unwrap().unwrap(),
        MEMBER_ID
    );
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let ctx = ctx.clone();
        set.spawn(async move { timeout(STEP, ctx.quote(["700.HK"])).await });
    }
    let (mut ok, mut limited) = (0, 0);
    while let Some(r) = set.join_next().await {
        match r.unwrap().expect("quote timed out") {
            Ok(q) => {
                assert_eq!(q[0].last_done, dec("388.2"));
                ok += 1;
            }
            Err(Error::WsClient(WsClientError::ResponseError {
                status: 3,
                detail: Some(d),
            })) if d.code == 301_606 => limited += 1,
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert!(ok >= 3, "the rest of the burst is served: {ok} ok");
    assert!(limited >= 1, "some are limited: {ok} ok, {limited} limited");
    assert_eq!(ok + limited, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_drop_makes_the_trade_context_reconnect_and_order_pushes_continue() {
    let mut g = Gateway::start(
        concat!(
            r#"{"drop": {"at": "1s", "socket": "trade"}}"#,
            "\n",
            r#"{"push_order": {"at": "6s", "order_id": "9002", "symbol": "700.HK", "side": "Sell", "order_type": "LO", "status": "NewStatus", "submitted_quantity": "100", "submitted_price": "390"}}"#,
            "\n",
        ),
        &["--start-on-auth"],
    );
    let (ctx, mut rx) = TradeContext::new(config(&g, SECRET));
    timeout(STEP, ctx.subscribe([TopicType::Private]))
        .await
        .unwrap()
        .unwrap();
    g.wait_for("drop trade#1", STEP);
    g.wait_for("trade#2 reconnect ok", STEP);
    let TradePush::OrderChanged(o) = timeout(STEP, rx.recv()).await.unwrap().unwrap();
    assert_eq!(o.order_id, "9002");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_shutdown_closes_the_sdk_and_stops_the_gateway() {
    let mut g = Gateway::start(
        concat!(
            r#"{"shutdown": {"at": "1s", "reason": "end of the trading day"}}"#,
            "\n"
        ),
        &["--start-on-auth"],
    );
    let (ctx, _rx) = QuoteContext::new(config(&g, SECRET));
    assert_eq!(
        timeout(STEP, ctx.member_id()).await.unwrap().unwrap(),
        MEMBER_ID
    );
    g.wait_for("shutdown (end of the trading day)", STEP);
    g.wait_for("quote#1 closed", STEP);
    g.wait_for("stopped: the script shut the gateway down", STEP);
    assert!(
        g.exited_within(STEP),
        "the gateway exits after a scripted shutdown"
    );
}
