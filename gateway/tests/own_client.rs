//! tether-net's own LongPort client (the tokio driver of `tether-net-drivers`, over TCP and
//! WebSocket) against the `longport-gateway` binary on 127.0.0.1: the same scenarios as the
//! official SDK's (tests/sdk.rs), spoken with raw commands and `longport-proto` bodies
//!
//! One-time tokens come from the gateway's HTTP token endpoint through the official SDK's signed
//! HTTP client.

mod support;

use std::time::Duration;

use longport::httpclient::{HttpClient, HttpClientConfig};
use longport_proto::quote::{
    MultiSecurityRequest, PushQuote, SecurityQuoteResponse, SubType, SubscribeRequest,
    UserQuoteProfileRequest, UserQuoteProfileResponse,
};
use prost::Message as _;
use support::{Gateway, ACCESS, KEY, MEMBER_ID, PUSH_THEN_CLOSE, QUOTE_LEVEL, SECRET};
use tether_net::longport::{ClientConfig, ClientEvent, Status};
use tether_net_drivers::tokio::{
    ClientConnectError, ClientItem, ClientOptions, LongPortClient, LongPortEvents,
};
use tokio::time::timeout;

const STEP: Duration = Duration::from_secs(20);

async fn otp(g: &Gateway) -> String {
    let http =
        HttpClient::new(HttpClientConfig::from_apikey(KEY, SECRET, ACCESS).http_url(g.http_url()));
    timeout(STEP, http.get_otp())
        .await
        .expect("token endpoint timed out")
        .expect("token endpoint refused")
}

fn url(g: &Gateway, tcp: bool) -> String {
    if tcp {
        format!("tcp://{}", g.quote_tcp)
    } else {
        g.quote_url()
    }
}

fn cfg(tcp: bool) -> ClientConfig {
    let c = if tcp {
        ClientConfig::tcp()
    } else {
        ClientConfig::websocket()
    };
    c.with_reconnect_backoff(Duration::from_millis(200), Duration::from_secs(1))
}

async fn connect(g: &Gateway, tcp: bool) -> (LongPortClient, LongPortEvents) {
    let token = otp(g).await;
    timeout(
        STEP,
        LongPortClient::connect(&url(g, tcp), cfg(tcp), &token, ClientOptions::default()),
    )
    .await
    .expect("connect timed out")
    .expect("login refused")
}

/// The next cmd 101 push's last price
async fn next_quote(events: &mut LongPortEvents) -> String {
    loop {
        let item = timeout(STEP, events.next())
            .await
            .expect("no push in time")
            .expect("client ended");
        if let ClientItem::Push { cmd: 101, body, .. } = item {
            let q = PushQuote::decode(body.as_slice()).expect("PushQuote");
            assert_eq!(q.symbol, "700.HK");
            return q.last_done;
        }
    }
}

async fn profile_quote_and_errors(tcp: bool) {
    let mut g = Gateway::start("", &[]);
    let (client, _events) = connect(&g, tcp).await;
    let r = client
        .request(
            4,
            UserQuoteProfileRequest {
                language: "en".into(),
            }
            .encode_to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, Status::Success);
    let p = UserQuoteProfileResponse::decode(r.body.as_slice()).unwrap();
    assert_eq!(p.member_id, MEMBER_ID);
    assert_eq!(p.quote_level, QUOTE_LEVEL);

    let r = client
        .request(
            11,
            MultiSecurityRequest {
                symbol: vec!["700.HK".into()],
            }
            .encode_to_vec(),
        )
        .await
        .unwrap();
    let q = SecurityQuoteResponse::decode(r.body.as_slice()).unwrap();
    assert_eq!(q.secu_quote[0].last_done, "388.2");

    // an unhandled command: non-zero status and an Error body
    let r = client.request(14, Vec::new()).await.unwrap();
    assert_eq!(r.status, Status::BadRequest);
    let (code, msg) = r.error.expect("an Error body");
    assert_eq!(code, 301_600);
    assert!(msg.contains("command 14"), "{msg}");
    g.wait_for("quote#1 cmd 14: status 3", STEP);
    let transport = if tcp { "Tcp" } else { "WebSocket" };
    g.wait_for(&format!("over {transport}"), STEP);
}

#[tokio::test]
async fn own_client_over_tcp_gets_profile_quote_and_error_replies() {
    profile_quote_and_errors(true).await;
}

#[tokio::test]
async fn own_client_over_websocket_gets_profile_quote_and_error_replies() {
    profile_quote_and_errors(false).await;
}

async fn pushes_survive_a_scripted_close(tcp: bool) {
    let script = format!(
        "{PUSH_THEN_CLOSE}{}\n",
        r#"{"push_quote": {"at": "4s", "symbol": "700.HK", "last_done": "391.0"}}"#
    );
    let mut g = Gateway::start(&script, &["--start-on-auth"]);
    let (client, mut events) = connect(&g, tcp).await;
    let sub = SubscribeRequest {
        symbol: vec!["700.HK".into()],
        sub_type: vec![SubType::Quote as i32],
        is_first_push: true,
    };
    let r = client.request(6, sub.encode_to_vec()).await.unwrap();
    assert_eq!(r.status, Status::Success);
    assert_eq!(next_quote(&mut events).await, "388.2");
    assert_eq!(next_quote(&mut events).await, "389.0");
    // the Close push, then the machine reconnects with its session by itself
    let item = timeout(
        STEP,
        events.wait_for(|i| matches!(i, ClientItem::ServerClose { .. })),
    )
    .await
    .unwrap();
    assert!(item.is_some());
    let up = timeout(
        STEP,
        events.wait_for(|i| matches!(i, ClientItem::Event(ClientEvent::Connected { .. }))),
    )
    .await
    .unwrap();
    assert!(up.is_some());
    g.wait_for("quote#2 reconnect ok", STEP);
    // the gateway kept the subscription with the session: no resubscribe needed
    assert_eq!(next_quote(&mut events).await, "391.0");
}

#[tokio::test]
async fn own_client_over_tcp_reconnects_through_a_scripted_close() {
    pushes_survive_a_scripted_close(true).await;
}

#[tokio::test]
async fn own_client_over_websocket_reconnects_through_a_scripted_close() {
    pushes_survive_a_scripted_close(false).await;
}

#[tokio::test]
async fn a_token_is_good_for_one_login_only() {
    let mut g = Gateway::start("", &[]);
    let token = otp(&g).await;
    let (first, _e) = timeout(
        STEP,
        LongPortClient::connect(
            &url(&g, false),
            cfg(false),
            &token,
            ClientOptions::default(),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    let again = timeout(
        STEP,
        LongPortClient::connect(&url(&g, true), cfg(true), &token, ClientOptions::default()),
    )
    .await
    .unwrap();
    match again {
        Err(ClientConnectError::LoginFailed { status, code, .. }) => {
            assert_eq!(status, Status::Unauthenticated);
            assert_eq!(code, Some(longport_gateway::server::CODE_BAD_TOKEN));
        }
        other => panic!("a used token must be refused, got {other:?}"),
    }
    g.wait_for("auth refused: unknown, used or expired token", STEP);
    drop(first);
}
