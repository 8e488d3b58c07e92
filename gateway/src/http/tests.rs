use super::*;
use crate::script::Script;

const SCRIPT: &str = concat!(
    r#"{"account": {"app_key": "key-a", "app_secret": "secret-a", "access_token": "token-a", "member_id": 1, "quote_level": "LV1", "balances": [{"currency": "HKD", "total_cash": "1000.50", "risk_level": 2, "cash_infos": [{"currency": "HKD", "available_cash": "900"}], "frozen_transaction_fees": [{"currency": "HKD", "frozen_transaction_fee": "1.5"}]}, {"currency": "USD", "total_cash": "10"}]}}"#,
    "\n",
    r#"{"account": {"app_key": "key-b", "app_secret": "secret-b", "member_id": 2, "quote_level": "LV1"}}"#,
);

fn gateway() -> HttpGateway {
    let script = Script::parse(SCRIPT).unwrap();
    HttpGateway::new(script.accounts, Arc::new(TokenStore::default()))
}

struct Req {
    method: Method,
    path: &'static str,
    query: Option<&'static str>,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Req {
    /// A GET signed like the SDK signs it
    fn signed(
        path: &'static str,
        query: Option<&'static str>,
        key: &str,
        token: &str,
        secret: &str,
    ) -> Req {
        let mut r = Req {
            method: Method::GET,
            path,
            query,
            headers: HeaderMap::new(),
            body: Vec::new(),
        };
        r.set("x-api-key", key);
        r.set("authorization", token);
        r.set("x-timestamp", "1704159000");
        r.set("user-agent", "openapi-sdk");
        r.resign(secret);
        r
    }

    fn set(&mut self, name: &'static str, value: &str) {
        self.headers
            .insert(name, HeaderValue::from_str(value).unwrap());
    }

    fn resign(&mut self, secret: &str) {
        let sig = sign(&self.as_http(), secret);
        self.set("x-api-signature", &sig);
    }

    fn as_http(&self) -> HttpRequest<'_> {
        HttpRequest {
            method: &self.method,
            path: self.path,
            query: self.query,
            headers: &self.headers,
            body: &self.body,
        }
    }

    fn send(&self, gw: &HttpGateway) -> (StatusCode, Value) {
        let r = gw.respond(&self.as_http(), Instant::now());
        (
            r.status,
            serde_json::from_str(&r.body).expect("a JSON body"),
        )
    }
}

fn token_req(secret: &str) -> Req {
    Req::signed(TOKEN_PATH, None, "key-a", "token-a", secret)
}

#[test]
fn token_endpoint_issues_one_time_tokens() {
    let gw = gateway();
    let (status, v) = token_req("secret-a").send(&gw);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (v["code"].as_i64(), v["message"].as_str()),
        (Some(0), Some("success"))
    );
    let otp = v["data"]["otp"].as_str().unwrap();
    assert_eq!(
        (v["data"]["limit"].as_i64(), v["data"]["online"].as_i64()),
        (Some(10), Some(0))
    );
    let account = gw.tokens().redeem(otp, Instant::now()).unwrap();
    assert_eq!(account.app_key, "key-a");
    assert!(gw.tokens().redeem(otp, Instant::now()).is_none());
}

#[test]
fn the_quota_hook_fills_limit_and_online() {
    struct Busy;
    impl Quota for Busy {
        fn connections(&self, account: &Account) -> Connections {
            Connections {
                limit: 3,
                online: account.member_id as i32,
            }
        }
    }
    let script = Script::parse(SCRIPT).unwrap();
    let gw = HttpGateway::with_quota(
        script.accounts,
        Arc::new(TokenStore::default()),
        Arc::new(Busy),
    );
    let (_, v) = token_req("secret-a").send(&gw);
    assert_eq!(
        (v["data"]["limit"].as_i64(), v["data"]["online"].as_i64()),
        (Some(3), Some(1))
    );
}

#[test]
fn wrong_secret_and_tampering_are_signature_invalid() {
    let gw = gateway();
    let expect_403201 = |r: &Req, what: &str| {
        let (status, v) = r.send(&gw);
        assert_eq!(status, StatusCode::FORBIDDEN, "{what}");
        assert_eq!(v["code"].as_i64(), Some(code::SIGNATURE_INVALID), "{what}");
        assert_eq!(v["message"], "signature invalid", "{what}");
        assert!(v.get("data").is_none());
    };
    expect_403201(&token_req("secret-b"), "another account's secret");
    expect_403201(&token_req(""), "empty secret");

    let mut r = token_req("secret-a");
    r.set("x-timestamp", "1704159001");
    expect_403201(&r, "timestamp changed after signing");

    let mut r = token_req("secret-a");
    r.query = Some("x=1");
    expect_403201(&r, "query added after signing");

    let mut r = token_req("secret-a");
    r.body = b"{}".to_vec();
    expect_403201(&r, "body added after signing");

    let mut r = token_req("secret-a");
    r.headers.remove("x-api-signature");
    expect_403201(&r, "no signature");

    let good = token_req("secret-a");
    let sig = header(&good.headers, "x-api-signature").unwrap().to_owned();
    let hex_sig = sig.rsplit_once("Signature=").unwrap().1.to_owned();
    for bad in [
        format!("HMAC-SHA1 SignedHeaders=authorization;x-api-key;x-timestamp, Signature={hex_sig}"),
        format!("HMAC-SHA256 SignedHeaders=authorization;x-api-key;x-timestamp, Signature={}", &hex_sig[1..]),
        format!("HMAC-SHA256 SignedHeaders=authorization;x-api-key;x-timestamp, Signature=zz{}", &hex_sig[2..]),
        format!("HMAC-SHA256 Signature={hex_sig}"),
        format!("HMAC-SHA256 SignedHeaders=authorization;x-api-key;x-timestamp, Signature={hex_sig}, Extra=1"),
        format!("HMAC-SHA256 SignedHeaders=authorization;X-Api-Key;x-timestamp, Signature={hex_sig}"),
        format!("HMAC-SHA256 SignedHeaders=authorization;x-api-key, Signature={hex_sig}"),
        format!("HMAC-SHA256 SignedHeaders=authorization;;x-api-key;x-timestamp, Signature={hex_sig}"),
        format!("HMAC-SHA256 SignedHeaders=authorization;x-api-key;x-timestamp;x-nope, Signature={hex_sig}"),
        String::new(),
    ] {
        let mut r = token_req("secret-a");
        r.set("x-api-signature", &bad);
        expect_403201(&r, &bad);
    }
}

#[test]
fn signature_errors_are_precise() {
    let r = token_req("secret-a");
    assert_eq!(verify_signature(&r.as_http(), "secret-a"), Ok(()));
    assert_eq!(
        verify_signature(&r.as_http(), "nope"),
        Err(SignatureError::Mismatch)
    );
    let mut r2 = token_req("secret-a");
    r2.headers.remove("x-api-signature");
    assert_eq!(
        verify_signature(&r2.as_http(), "secret-a"),
        Err(SignatureError::Missing)
    );
    let mut r3 = token_req("secret-a");
    r3.set(
        "x-api-signature",
        "HMAC-SHA256 SignedHeaders=x-api-key;authorization, Signature=00",
    );
    assert_eq!(
        verify_signature(&r3.as_http(), "secret-a"),
        Err(SignatureError::HeadersNotSigned)
    );
    let mut r4 = token_req("secret-a");
    r4.headers.remove("authorization");
    assert_eq!(
        verify_signature(&r4.as_http(), "secret-a"),
        Err(SignatureError::SignedHeaderMissing)
    );
}

#[test]
fn signed_header_order_and_subset_follow_signed_headers() {
    // the SDK signs `x-api-key;x-timestamp` when it has no access token: accept any order and
    // subset that includes the key and the timestamp
    let mut r = token_req("secret-a");
    let sts = string_to_sign(
        "GET",
        TOKEN_PATH,
        "",
        &[("x-timestamp", "1704159000"), ("x-api-key", "key-a")],
        None,
    );
    let tag = mac("secret-a").chain_update(sts.as_bytes()).finalize();
    r.set(
        "x-api-signature",
        &format!(
            "HMAC-SHA256 SignedHeaders=x-timestamp;x-api-key, Signature={}",
            hex(&tag.into_bytes())
        ),
    );
    assert_eq!(verify_signature(&r.as_http(), "secret-a"), Ok(()));
}

#[test]
fn bodies_are_hashed_and_an_empty_body_may_be() {
    let mut r = token_req("secret-a");
    r.body = br#"{"x":1}"#.to_vec();
    r.resign("secret-a");
    assert_eq!(verify_signature(&r.as_http(), "secret-a"), Ok(()));
    // an empty body signed with its hash (what the SDK does for a request given an empty body)
    let mut r = token_req("secret-a");
    let signed = [
        ("authorization", "token-a"),
        ("x-api-key", "key-a"),
        ("x-timestamp", "1704159000"),
    ];
    let sts = string_to_sign("GET", TOKEN_PATH, "", &signed, Some(&[]));
    let tag = mac("secret-a").chain_update(sts.as_bytes()).finalize();
    r.set(
        "x-api-signature",
        &format!(
            "HMAC-SHA256 SignedHeaders=authorization;x-api-key;x-timestamp, Signature={}",
            hex(&tag.into_bytes())
        ),
    );
    assert_eq!(verify_signature(&r.as_http(), "secret-a"), Ok(()));
}

#[test]
fn unknown_or_missing_app_key_is_apikey_illegal() {
    let gw = gateway();
    for r in [Req::signed(TOKEN_PATH, None, "key-x", "t", "secret-a"), {
        let mut r = token_req("secret-a");
        r.headers.remove("x-api-key");
        r
    }] {
        let (status, v) = r.send(&gw);
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(v["code"].as_i64(), Some(code::APIKEY_ILLEGAL));
        assert_eq!(v["message"], "apikey illegal");
    }
}

#[test]
fn access_token_is_checked_when_scripted() {
    let gw = gateway();
    let r = Req::signed(TOKEN_PATH, None, "key-a", "token-other", "secret-a");
    let (status, v) = r.send(&gw);
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(v["code"].as_i64(), Some(code::TOKEN_INVALID));
    // key-b has no access token in the script: any is accepted
    let r = Req::signed(TOKEN_PATH, None, "key-b", "anything", "secret-b");
    assert_eq!(r.send(&gw).0, StatusCode::OK);
}

#[test]
fn account_balance() {
    let gw = gateway();
    let (status, v) = Req::signed(
        ACCOUNT_BALANCE_PATH,
        Some(""),
        "key-a",
        "token-a",
        "secret-a",
    )
    .send(&gw);
    assert_eq!(status, StatusCode::OK);
    let list = v["data"]["list"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let hkd = &list[0];
    assert_eq!(hkd["currency"], "HKD");
    assert_eq!(hkd["total_cash"], "1000.50");
    assert_eq!(hkd["risk_level"], "2", "risk_level travels as a string");
    assert_eq!(hkd["net_assets"], "0", "defaults to zero");
    assert_eq!(hkd["cash_infos"][0]["available_cash"], "900");
    assert_eq!(hkd["cash_infos"][0]["frozen_cash"], "0");
    assert_eq!(
        hkd["frozen_transaction_fees"][0]["frozen_transaction_fee"],
        "1.5"
    );

    let (_, v) = Req::signed(
        ACCOUNT_BALANCE_PATH,
        Some("currency=USD"),
        "key-a",
        "token-a",
        "secret-a",
    )
    .send(&gw);
    let list = v["data"]["list"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["total_cash"], "10");

    let (_, v) = Req::signed(ACCOUNT_BALANCE_PATH, None, "key-b", "t", "secret-b").send(&gw);
    assert_eq!(v["data"]["list"].as_array().unwrap().len(), 0);

    let (status, _) =
        Req::signed(ACCOUNT_BALANCE_PATH, None, "key-a", "token-a", "secret-b").send(&gw);
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the balance endpoint checks the signature too"
    );
}

#[test]
fn everything_else_is_a_clear_json_error() {
    let gw = gateway();
    let (status, v) = Req::signed(
        "/v1/trade/order/today",
        None,
        "key-a",
        "token-a",
        "secret-a",
    )
    .send(&gw);
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["code"].as_i64(), Some(404));
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("GET /v1/trade/order/today"),
        "{v}"
    );

    let mut r = token_req("secret-a");
    r.method = Method::POST;
    r.resign("secret-a");
    let (status, v) = r.send(&gw);
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(v["code"].as_i64(), Some(405));

    let mut r = token_req("secret-a");
    r.path = "/v2/socket/token";
    assert_eq!(
        r.send(&gw).0,
        StatusCode::NOT_FOUND,
        "only the v1 token path"
    );
}

#[test]
fn reply_code_helper() {
    assert_eq!(HttpReply::ok(json!({})).code(), Some(0));
    assert_eq!(
        HttpReply::error(StatusCode::NOT_FOUND, 404, "x").code(),
        Some(404)
    );
}

#[tokio::test]
async fn handle_reads_the_body_with_a_limit_and_sets_headers() {
    let gw = gateway();
    let ok = token_req("secret-a");
    let mut builder = Request::builder().method(Method::GET).uri(TOKEN_PATH);
    for (k, v) in &ok.headers {
        builder = builder.header(k, v);
    }
    let resp = gw
        .handle(builder.body(Full::new(Bytes::new())).unwrap())
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()[CONTENT_TYPE],
        "application/json; charset=utf-8"
    );
    assert!(resp.headers()["x-trace-id"]
        .to_str()
        .unwrap()
        .starts_with("gateway-"));

    let big = Request::builder()
        .method(Method::POST)
        .uri("/anything")
        .body(Full::new(Bytes::from(vec![0u8; DEFAULT_MAX_BODY + 1])))
        .unwrap();
    let resp = gw.handle(big).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["code"].as_i64(), Some(413));
}
