use super::*;

const EXAMPLE: &str = include_str!("../../scripts/trading-day.jsonl");

const ACCOUNT: &str =
    r#"{"account": {"app_key": "k", "app_secret": "s", "member_id": 7, "quote_level": "LV1"}}"#;
const SECURITY: &str =
    r#"{"security": {"symbol": "700.HK", "currency": "HKD", "name_en": "TENCENT"}}"#;

fn lines(ls: &[&str]) -> String {
    ls.join("\n")
}

fn err(ls: &[&str]) -> ScriptError {
    Script::parse(&lines(ls)).expect_err("the script should be refused")
}

#[test]
fn the_example_script_parses() {
    let s = Script::parse(EXAMPLE).unwrap();
    assert_eq!(s.clock.start, Some(UnixTime(1_704_159_000)));
    assert_eq!(s.clock.speed, 60.0);
    assert_eq!(s.accounts.len(), 1);
    let a = &s.accounts[0];
    assert_eq!(
        (a.app_key.as_str(), a.member_id, a.quote_level.as_str()),
        ("demo-app-key", 100001, "LV2")
    );
    assert_eq!(a.access_token.as_deref(), Some("demo-access-token"));
    assert_eq!(a.balances[0].total_cash.as_str(), "1000000.00");
    assert_eq!(a.balances[0].cash_infos.len(), 1);
    assert_eq!(a.packages[0].start, UnixTime(1_704_067_200));
    assert_eq!(s.securities.len(), 2);
    assert_eq!(
        s.securities[0].quote.timestamp,
        Some(UnixTime(1_704_158_400))
    );
    assert_eq!(s.trade_days["HK"].days.len(), 22);
    assert!(
        s.timeline.windows(2).all(|w| w[0].at <= w[1].at),
        "sorted by offset"
    );
    let orders: Vec<&OrderPush> = s
        .timeline
        .iter()
        .filter_map(|t| match &t.item {
            Item::Order(o) => Some(&**o),
            _ => None,
        })
        .collect();
    assert_eq!(orders.len(), 3);
    // defaults resolved from the single account and the security
    assert_eq!(orders[0].account, "demo-app-key");
    assert_eq!(orders[0].currency.as_deref(), Some("HKD"));
    assert_eq!(orders[0].stock_name.as_deref(), Some("TENCENT"));
    assert!(matches!(
        s.timeline.last().unwrap().item,
        Item::Shutdown { .. }
    ));
    assert!(s.timeline.iter().any(|t| matches!(
        &t.item,
        Item::Close {
            code: 1,
            target: Target {
                socket: Some(SocketKind::Quote),
                account: None
            },
            ..
        }
    )));
}

#[test]
fn comments_and_blank_lines_keep_line_numbers() {
    let e = err(&[
        "# comment",
        "",
        "   # indented comment",
        ACCOUNT,
        "  ",
        "{\"nope\": {}}",
    ]);
    assert_eq!(e.line, 6);
    assert!(e.message.contains("unknown variant `nope`"), "{e}");
}

#[test]
fn unknown_field_names_its_path_and_column() {
    let e = err(&[
        ACCOUNT,
        r#"{"account": {"app_key": "k2", "app_secret": "s", "member_id": 7, "quote_level": "LV1", "balances": [{"currency": "HKD", "totl_cash": "1"}]}}"#,
    ]);
    assert_eq!(e.line, 2);
    assert_eq!(
        e.field.as_deref(),
        Some("account.balances[0].totl_cash"),
        "{e}"
    );
    assert!(e.message.contains("unknown field `totl_cash`"), "{e}");
    assert!(e.column.unwrap() > 100, "{e}");
}

#[test]
fn bad_decimal_names_line_field_and_column() {
    let text = lines(&[
        ACCOUNT,
        SECURITY,
        r#"{"push_quote": {"at": "1s", "symbol": "700.HK", "last_done": "38x.2"}}"#,
    ]);
    let e = Script::parse(&text).unwrap_err();
    assert_eq!(e.line, 3);
    assert_eq!(e.field.as_deref(), Some("push_quote.last_done"));
    assert!(e.message.contains("\"38x.2\""), "{e}");
    let col = e.column.unwrap();
    let line3 = text.lines().nth(2).unwrap();
    let value_end = line3.find("\"38x.2\"").unwrap() + "\"38x.2\"".len();
    assert_eq!(
        col, value_end,
        "column points at the end of the bad value: {e}"
    );
    assert_eq!(
        e.to_string(),
        format!("line 3, column {col}, field `push_quote.last_done`: expected a decimal number like \"388.2\" or \"-5\", got \"38x.2\"")
    );
}

#[test]
fn bad_values_of_each_kind() {
    let cases: &[(&str, &str, &str)] = &[
        (
            r#"{"push_quote": {"at": "soon", "symbol": "700.HK"}}"#,
            "push_quote.at",
            "offset",
        ),
        (
            r#"{"push_quote": {"at": "1s", "symbol": "700.HK", "trade_status": "OPEN"}}"#,
            "push_quote.trade_status",
            "NORMAL",
        ),
        (
            r#"{"push_quote": {"at": "1s", "symbol": "700.HK", "timestamp": "yesterday"}}"#,
            "push_quote.timestamp",
            "RFC 3339",
        ),
        (
            r#"{"trade_days": {"market": "HK", "days": ["20240230"]}}"#,
            "trade_days.days[0]",
            "20240230",
        ),
        (
            r#"{"push_order": {"at": "1s", "order_id": "1", "symbol": "700.HK", "side": "Long", "order_type": "LO", "status": "NewStatus", "submitted_quantity": "1"}}"#,
            "push_order.side",
            "Buy, Sell",
        ),
        (
            r#"{"close": {"at": "1s", "code": 9}}"#,
            "close.code",
            "0..=6",
        ),
        (
            r#"{"close": {"at": "1s", "code": "Bye"}}"#,
            "close.code",
            "ConnectDuplicate",
        ),
        (
            r#"{"drop": {"at": "1s", "socket": "both"}}"#,
            "drop.socket",
            "unknown variant",
        ),
        (
            r#"{"push_quote": {"at": "1s"}}"#,
            "push_quote",
            "missing field `symbol`",
        ),
    ];
    for (line, field, needle) in cases {
        let e = err(&[ACCOUNT, SECURITY, line]);
        assert_eq!(e.line, 3, "{line}: {e}");
        assert_eq!(e.field.as_deref(), Some(*field), "{line}: {e}");
        assert!(e.message.contains(needle), "{line}: {e}");
        assert!(e.column.is_some(), "{line}: {e}");
    }
}

#[test]
fn json_syntax_and_trailing_text() {
    let e = err(&[ACCOUNT, r#"{"security": {"symbol": "700.HK""#]);
    assert_eq!((e.line, e.field.as_deref()), (2, Some("security")), "{e}");
    let e = err(&[
        ACCOUNT,
        r#"{"security": {"symbol": "700.HK"}} {"security": {}}"#,
    ]);
    assert_eq!(e.line, 2);
    assert!(e.message.contains("one JSON object per line"), "{e}");
    let e = err(&[ACCOUNT, r#"{"security": {"symbol": "A"}, "account": {}}"#]);
    assert_eq!(e.line, 2, "two kinds in one record: {e}");
}

#[test]
fn cross_record_checks() {
    let e = err(&[
        ACCOUNT,
        r#"{"push_quote": {"at": "1s", "symbol": "9988.HK"}}"#,
    ]);
    assert_eq!((e.line, e.field.as_deref()), (2, Some("push_quote.symbol")));
    assert!(e.message.contains("9988.HK"), "{e}");

    let e = err(&[ACCOUNT, ACCOUNT]);
    assert_eq!((e.line, e.field.as_deref()), (2, Some("account.app_key")));
    assert!(e.message.contains("line 1"), "{e}");

    let e = err(&[ACCOUNT, SECURITY, SECURITY]);
    assert_eq!((e.line, e.field.as_deref()), (3, Some("security.symbol")));

    let e = err(&[SECURITY]);
    assert_eq!(e.line, 0);
    assert!(e.to_string().starts_with("script: no account"), "{e}");

    let e = err(&[
        r#"{"account": {"app_key": "k", "app_secret": "", "member_id": 7, "quote_level": "LV1"}}"#,
    ]);
    assert_eq!(e.field.as_deref(), Some("account.app_secret"));

    let order = r#"{"push_order": {"at": "1s", "order_id": "1", "symbol": "700.HK", "side": "Buy", "order_type": "LO", "status": "NewStatus", "submitted_quantity": "1"}}"#;
    let other = r#"{"account": {"app_key": "k2", "app_secret": "s", "member_id": 8, "quote_level": "LV1"}}"#;
    let e = err(&[ACCOUNT, other, SECURITY, order]);
    assert_eq!(
        (e.line, e.field.as_deref()),
        (4, Some("push_order.account"))
    );

    let e = err(&[
        ACCOUNT,
        r#"{"close": {"at": "1s", "code": 2, "account": "ghost"}}"#,
    ]);
    assert_eq!((e.line, e.field.as_deref()), (2, Some("close.account")));
    let e = err(&[ACCOUNT, r#"{"drop": {"at": "1s", "account": "ghost"}}"#]);
    assert_eq!((e.line, e.field.as_deref()), (2, Some("drop.account")));

    let e = err(&[
        ACCOUNT,
        r#"{"clock": {"speed": 2}}"#,
        r#"{"clock": {"speed": 2}}"#,
    ]);
    assert_eq!((e.line, e.field.as_deref()), (3, Some("clock")));
    let e = err(&[ACCOUNT, r#"{"clock": {"speed": 0}}"#]);
    assert_eq!((e.line, e.field.as_deref()), (2, Some("clock.speed")));
}

#[test]
fn defaults_and_merges() {
    let s = Script::parse(&lines(&[
        ACCOUNT,
        SECURITY,
        r#"{"trade_days": {"market": "HK", "days": ["20240103", "2024-01-02"]}}"#,
        r#"{"trade_days": {"market": "HK", "days": ["20240102"], "half_days": ["20240224"]}}"#,
        r#"{"close": {"at": "2s", "code": "ConnectDuplicate", "socket": "trade", "account": "k"}}"#,
        r#"{"drop": {"at": 1.5}}"#,
    ]))
    .unwrap();
    let a = &s.accounts[0];
    assert_eq!((a.subscribe_limit, a.access_token.as_ref()), (500, None));
    assert_eq!(s.clock, Clock::default());
    let q = &s.securities[0].quote;
    assert_eq!(
        (q.last_done.as_str(), q.timestamp, q.trade_status.0),
        ("0", None, 0)
    );
    let hk = &s.trade_days["HK"];
    assert_eq!(
        hk.days,
        [Day(20240102), Day(20240103)],
        "merged, sorted, deduplicated"
    );
    assert_eq!(hk.half_days, [Day(20240224)]);
    assert_eq!(s.timeline[0].at, Duration::from_millis(1500));
    assert_eq!(
        s.timeline[0].item,
        Item::Drop {
            target: Target::default()
        }
    );
    let Item::Close { target, code, .. } = &s.timeline[1].item else {
        panic!("{:?}", s.timeline[1]);
    };
    assert_eq!(*code, 6);
    assert!(target.matches(SocketKind::Trade, "k"));
    assert!(!target.matches(SocketKind::Quote, "k"));
    assert!(!target.matches(SocketKind::Trade, "k2"));
    assert!(Target::default().matches(SocketKind::Quote, "anyone"));
}

#[test]
fn script_timeline_uses_the_wall_clock_without_a_clock_record() {
    let s = Script::parse(&lines(&[
        ACCOUNT,
        SECURITY,
        r#"{"push_quote": {"at": "2s", "symbol": "700.HK"}}"#,
    ]))
    .unwrap();
    let mut t = s.timeline(UnixTime(1000));
    assert_eq!(t.poll(Duration::from_secs(2)).unwrap().market_time, 1002);
    let s2 = Script::parse(EXAMPLE).unwrap();
    assert_eq!(s2.timeline(UnixTime(1000)).start(), UnixTime(1_704_159_000));
}

#[test]
fn load_reports_io_errors() {
    let e = Script::load("/nonexistent/script.jsonl").unwrap_err();
    assert!(matches!(e, LoadError::Io(_)));
    assert!(e.to_string().starts_with("cannot read the script"));
}
