//! The official SDK's own HTTP client (`longport` 4.3.7: `longport::httpclient` and
//! `TradeContext`) against the gateway's HTTP side on 127.0.0.1
//!
//! Every server binds 127.0.0.1 with a port the OS picks and runs inside the test's runtime;
//! every await is bounded by a timeout.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use longport::httpclient::{HttpClient, HttpClientConfig, HttpClientError, Json, Method};
use longport::{Config, TradeContext};
use longport_gateway::http::{bind_loopback, Connections, HttpGateway, Quota};
use longport_gateway::script::{Account, Script};
use longport_gateway::token::TokenStore;
use tokio::time::timeout;

const SCRIPT: &str = include_str!("../scripts/trading-day.jsonl");
const KEY: &str = "demo-app-key";
const SECRET: &str = "demo-app-secret";
const ACCESS: &str = "demo-access-token";
const STEP: Duration = Duration::from_secs(20);

async fn start(quota: Option<Arc<dyn Quota>>) -> (String, HttpGateway) {
    support::no_proxy_in_the_way();
    let script = Script::parse(SCRIPT).unwrap();
    let tokens = Arc::new(TokenStore::default());
    let gw = match quota {
        Some(q) => HttpGateway::with_quota(script.accounts, tokens, q),
        None => HttpGateway::new(script.accounts, tokens),
    };
    let listener = bind_loopback(0).await.expect("cannot bind 127.0.0.1:0");
    let addr = listener.local_addr().unwrap();
    assert!(addr.ip().is_loopback());
    tokio::spawn(gw.clone().serve(listener));
    (format!("http://{addr}"), gw)
}

fn client(url: &str, key: &str, secret: &str, access: &str) -> HttpClient {
    HttpClient::new(HttpClientConfig::from_apikey(key, secret, access).http_url(url))
}

#[tokio::test]
async fn the_sdk_gets_a_one_time_token() {
    let (url, gw) = start(None).await;
    let otp = timeout(STEP, client(&url, KEY, SECRET, ACCESS).get_otp())
        .await
        .expect("get_otp timed out")
        .expect("the gateway refused the SDK's signature");
    let account = gw
        .tokens()
        .redeem(&otp, Instant::now())
        .expect("the token is redeemable");
    assert_eq!(account.app_key, KEY);
    assert!(gw.tokens().redeem(&otp, Instant::now()).is_none(), "once");

    // a second call gets a new token
    let otp2 = timeout(STEP, client(&url, KEY, SECRET, ACCESS).get_otp())
        .await
        .unwrap()
        .unwrap();
    assert_ne!(otp, otp2);
}

#[tokio::test]
async fn a_wrong_secret_is_refused() {
    let (url, gw) = start(None).await;
    let err = timeout(STEP, client(&url, KEY, "not-the-secret", ACCESS).get_otp())
        .await
        .expect("get_otp timed out")
        .expect_err("a wrong secret must be refused");
    match err {
        HttpClientError::OpenApi {
            code,
            message,
            trace_id,
        } => {
            assert_eq!((code, message.as_str()), (403201, "signature invalid"));
            assert!(trace_id.starts_with("gateway-"), "{trace_id}");
        }
        other => panic!("expected OpenApi{{403201}}, got {other:?}"),
    }
    assert_eq!(gw.tokens().pending(), 0, "no token issued");
}

#[tokio::test]
async fn an_unknown_app_key_and_a_wrong_access_token_are_refused() {
    let (url, _) = start(None).await;
    let err = timeout(STEP, client(&url, "someone-else", SECRET, ACCESS).get_otp())
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, HttpClientError::OpenApi { code: 403203, .. }),
        "{err:?}"
    );
    let err = timeout(STEP, client(&url, KEY, SECRET, "stale-token").get_otp())
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, HttpClientError::OpenApi { code: 401004, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_sdk_refuses_to_connect_when_the_quota_is_full() {
    struct Full;
    impl Quota for Full {
        fn connections(&self, _: &Account) -> Connections {
            Connections {
                limit: 2,
                online: 2,
            }
        }
    }
    let (url, _) = start(Some(Arc::new(Full))).await;
    let err = timeout(STEP, client(&url, KEY, SECRET, ACCESS).get_otp())
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            err,
            HttpClientError::ConnectionLimitExceeded {
                limit: 2,
                online: 2
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn other_paths_get_a_json_error_the_sdk_reports() {
    let (url, _) = start(None).await;
    let cli = client(&url, KEY, SECRET, ACCESS);
    let err = timeout(
        STEP,
        cli.request(Method::GET, "/v1/trade/order/today")
            .response::<Json<serde_json::Value>>()
            .send(),
    )
    .await
    .unwrap()
    .unwrap_err();
    match err {
        HttpClientError::OpenApi { code, message, .. } => {
            assert_eq!(code, 404);
            assert!(message.contains("GET /v1/trade/order/today"), "{message}");
        }
        other => panic!("expected OpenApi{{404}}, got {other:?}"),
    }
}

/// `TradeContext::account_balance` is plain HTTP: the whole SDK path, config to typed result
#[tokio::test]
async fn trade_context_account_balance() {
    let (url, _) = start(None).await;
    let config = Config::from_apikey(KEY, SECRET, ACCESS)
        .http_url(url.clone())
        // never used by this test, but never left to a geo probe of a public host either
        .quote_ws_url("ws://127.0.0.1:9/v2")
        .trade_ws_url("ws://127.0.0.1:9/v2");
    let (ctx, _pushes) = TradeContext::new(Arc::new(config));

    let all = timeout(STEP, ctx.account_balance(None))
        .await
        .expect("account_balance timed out")
        .expect("account_balance failed");
    assert_eq!(all.len(), 1);
    let b = &all[0];
    assert_eq!(b.currency, "HKD");
    assert_eq!(b.total_cash.to_string(), "1000000.00");
    assert_eq!(b.buy_power.to_string(), "1000000.00");
    assert_eq!(b.risk_level, 1);
    assert_eq!(b.cash_infos.len(), 1);
    assert_eq!(b.cash_infos[0].available_cash.to_string(), "1000000.00");
    assert_eq!(b.frozen_transaction_fees[0].currency, "HKD");

    let hkd = timeout(STEP, ctx.account_balance(Some("HKD")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hkd.len(), 1);
    let usd = timeout(STEP, ctx.account_balance(Some("USD")))
        .await
        .unwrap()
        .unwrap();
    assert!(usd.is_empty());
}
