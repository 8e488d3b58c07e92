//! The HTTP side: `GET /v1/socket/token` and the account-balance endpoint, with the SDK's
//! request signature checked
//!
//! # Signature
//!
//! The official SDK signs every HTTP request (`longport-httpcli` 4.3.7, `src/signature.rs`):
//! `X-Api-Signature: HMAC-SHA256 SignedHeaders=authorization;x-api-key;x-timestamp,
//! Signature=<hex>`, where the hex is `HMAC-SHA256(app_secret, "HMAC-SHA256|" + sha1hex(C))`
//! and `C` is `METHOD|path|query|name:value\n...|signed headers|`, followed by `sha1hex(body)`
//! when the request has a body. [`HttpGateway`] recomputes it from the request as received with
//! the secret of the account named by `X-Api-Key`, and compares in constant time.
//!
//! # Answers
//!
//! Every body is JSON in the OpenAPI envelope `{"code", "message", "data"}`; the SDK reads
//! `code` (0 = success) before the HTTP status, so errors reach the caller as
//! `HttpClientError::OpenApi { code, message }`. Error codes are those of the OpenAPI error
//! table (<https://open.longportapp.com/docs/api-reference/error-codes>):
//!
//! | case | HTTP | code | message |
//! |---|---|---|---|
//! | `X-Api-Key` missing or unknown | 403 | 403203 | `apikey illegal` |
//! | signature missing, malformed or wrong | 403 | 403201 | `signature invalid` |
//! | account has an `access_token` and `Authorization` differs | 401 | 401004 | `token invalid` |
//! | request body over the limit | 413 | 413 | gateway's own |
//! | known path, other method | 405 | 405 | gateway's own |
//! | any other path | 404 | 404 | gateway's own, naming the method and path |
//!
//! `GET /v1/socket/token` answers `data: {"otp", "limit", "online"}` with a one-time token from
//! the [`TokenStore`] and the numbers of the [`Quota`] hook. `GET /v1/asset/account[?currency=C]`
//! answers `data: {"list": [..]}` with the account's scripted balances (only currency `C` when
//! given).

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};
use sha1::{Digest, Sha1};
use sha2::Sha256;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::script::{Account, Balance};
use crate::token::TokenStore;

/// Path of the socket token endpoint
pub const TOKEN_PATH: &str = "/v1/socket/token";
/// Path of the account-balance endpoint (`TradeContext::account_balance`)
pub const ACCOUNT_BALANCE_PATH: &str = "/v1/asset/account";

/// Largest request body read by default
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;

/// How long a client may take to send a request's headers by default
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP connections served at once by default
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// Limits of the HTTP side
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpConfig {
    /// Largest request body read (default 64 KiB); a larger one gets 413
    pub max_body: usize,
    /// How long a client may take to send a request's headers, including the wait for the
    /// next request on a kept-alive connection (default 10 s); then the connection is closed
    pub header_read_timeout: Duration,
    /// Connections [`HttpGateway::serve`] serves at once (default 256); one more is closed at
    /// once
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_body: DEFAULT_MAX_BODY,
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl HttpConfig {
    /// With `max_body`
    #[must_use]
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// With `header_read_timeout` (at least 1 ms)
    #[must_use]
    pub fn header_read_timeout(mut self, t: Duration) -> Self {
        self.header_read_timeout = t.max(Duration::from_millis(1));
        self
    }

    /// With `max_connections` (at least 1)
    #[must_use]
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }
}

/// Error codes of the OpenAPI error table
pub mod code {
    /// `signature invalid`
    pub const SIGNATURE_INVALID: i64 = 403201;
    /// `apikey illegal`
    pub const APIKEY_ILLEGAL: i64 = 403203;
    /// `token invalid` (the access token)
    pub const TOKEN_INVALID: i64 = 401004;
    /// `internal error`
    pub const INTERNAL_ERROR: i64 = 500000;
}

/// Connection numbers reported with each token: the SDK refuses to connect when
/// `online >= limit`
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connections {
    /// Connections the account may hold
    pub limit: i32,
    /// Connections it holds now
    pub online: i32,
}

/// Hook: the connection quota reported by the token endpoint
///
/// The gateway implements it from its server machine's per-account connection counts.
pub trait Quota: Send + Sync {
    /// The numbers for `account`
    fn connections(&self, account: &Account) -> Connections;
}

/// A fixed limit with nobody online (the default: limit 10)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedQuota {
    /// Reported limit
    pub limit: i32,
}

impl Default for FixedQuota {
    fn default() -> Self {
        FixedQuota { limit: 10 }
    }
}

impl Quota for FixedQuota {
    fn connections(&self, _account: &Account) -> Connections {
        Connections {
            limit: self.limit,
            online: 0,
        }
    }
}

/// One HTTP request, as the pure [`HttpGateway::respond`] sees it
#[derive(Clone, Copy, Debug)]
pub struct HttpRequest<'a> {
    /// Method
    pub method: &'a Method,
    /// Path, as sent (percent-encoded)
    pub path: &'a str,
    /// Query string without `?`, as sent
    pub query: Option<&'a str>,
    /// Headers
    pub headers: &'a HeaderMap,
    /// Body
    pub body: &'a [u8],
}

/// The answer to one HTTP request
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpReply {
    /// Status
    pub status: StatusCode,
    /// JSON body
    pub body: String,
}

impl HttpReply {
    fn ok(data: Value) -> Self {
        HttpReply {
            status: StatusCode::OK,
            body: json!({"code": 0, "message": "success", "data": data}).to_string(),
        }
    }

    fn error(status: StatusCode, code: i64, message: impl Into<String>) -> Self {
        HttpReply {
            status,
            body: json!({"code": code, "message": message.into()}).to_string(),
        }
    }

    /// The `code` of the JSON envelope
    pub fn code(&self) -> Option<i64> {
        serde_json::from_str::<Value>(&self.body).ok()?["code"].as_i64()
    }
}

/// Why a request's signature was refused
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureError {
    /// No `X-Api-Signature` header
    Missing,
    /// The header is not `HMAC-SHA256 SignedHeaders=..., Signature=<hex>`
    Malformed,
    /// `SignedHeaders` leaves out `x-api-key` or `x-timestamp`
    HeadersNotSigned,
    /// A signed header is absent from the request
    SignedHeaderMissing,
    /// The signature does not match
    Mismatch,
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignatureError::Missing => "no X-Api-Signature header",
            SignatureError::Malformed => "X-Api-Signature is malformed",
            SignatureError::HeadersNotSigned => "x-api-key and x-timestamp must be signed",
            SignatureError::SignedHeaderMissing => "a signed header is missing",
            SignatureError::Mismatch => "signature mismatch",
        })
    }
}

impl std::error::Error for SignatureError {}

fn sha1_hex(data: &[u8]) -> String {
    hex(&Sha1::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok()
}

/// The string the SDK feeds to HMAC: `"HMAC-SHA256|" + sha1hex(canonical request)`
///
/// `signed` lists `(lower-case name, value)` in the order of `SignedHeaders`; `body_hash` adds
/// `sha1hex(body)` to the canonical request.
fn string_to_sign(
    method: &str,
    path: &str,
    query: &str,
    signed: &[(&str, &str)],
    body: Option<&[u8]>,
) -> String {
    let mut canonical = format!("{method}|{path}|{query}|");
    for (name, value) in signed {
        canonical.push_str(name);
        canonical.push(':');
        canonical.push_str(value);
        canonical.push('\n');
    }
    canonical.push('|');
    let names: Vec<&str> = signed.iter().map(|(n, _)| *n).collect();
    canonical.push_str(&names.join(";"));
    canonical.push('|');
    if let Some(body) = body {
        canonical.push_str(&sha1_hex(body));
    }
    format!("HMAC-SHA256|{}", sha1_hex(canonical.as_bytes()))
}

fn mac(secret: &str) -> Hmac<Sha256> {
    // HMAC takes keys of any length
    Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!())
}

/// The `X-Api-Signature` value the SDK computes for `req` with `app_secret`
///
/// Signs the request's `authorization`, `x-api-key` and `x-timestamp` headers (absent ones as
/// empty values), and its body when it is not empty. For tests, and for clients written without
/// the SDK.
pub fn sign(req: &HttpRequest<'_>, app_secret: &str) -> String {
    let h = |n| header(req.headers, n).unwrap_or("");
    let signed = [
        ("authorization", h("authorization")),
        ("x-api-key", h("x-api-key")),
        ("x-timestamp", h("x-timestamp")),
    ];
    let body = (!req.body.is_empty()).then_some(req.body);
    let sts = string_to_sign(
        req.method.as_str(),
        req.path,
        req.query.unwrap_or(""),
        &signed,
        body,
    );
    let tag = mac(app_secret).chain_update(sts.as_bytes()).finalize();
    format!(
        "HMAC-SHA256 SignedHeaders=authorization;x-api-key;x-timestamp, Signature={}",
        hex(&tag.into_bytes())
    )
}

/// Check the request's `X-Api-Signature` against `app_secret`
///
/// A request without a body is accepted signed either without a body hash (what the SDK does
/// for a GET) or with the hash of the empty body.
pub fn verify_signature(req: &HttpRequest<'_>, app_secret: &str) -> Result<(), SignatureError> {
    let value = header(req.headers, "x-api-signature").ok_or(SignatureError::Missing)?;
    let rest = value
        .strip_prefix("HMAC-SHA256 ")
        .ok_or(SignatureError::Malformed)?;
    let (mut names, mut signature) = (None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("SignedHeaders=") {
            names = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        } else {
            return Err(SignatureError::Malformed);
        }
    }
    let (names, signature) = names.zip(signature).ok_or(SignatureError::Malformed)?;
    let signature = unhex(signature).ok_or(SignatureError::Malformed)?;
    let names: Vec<&str> = names.split(';').collect();
    if names.len() > 16
        || names
            .iter()
            .any(|n| n.is_empty() || n.bytes().any(|b| b.is_ascii_uppercase()))
    {
        return Err(SignatureError::Malformed);
    }
    if !names.contains(&"x-api-key") || !names.contains(&"x-timestamp") {
        return Err(SignatureError::HeadersNotSigned);
    }
    let signed = names
        .iter()
        .map(|n| Some((*n, header(req.headers, n)?)))
        .collect::<Option<Vec<_>>>()
        .ok_or(SignatureError::SignedHeaderMissing)?;
    let query = req.query.unwrap_or("");
    let method = req.method.as_str();
    let check = |body: Option<&[u8]>| {
        let sts = string_to_sign(method, req.path, query, &signed, body);
        mac(app_secret)
            .chain_update(sts.as_bytes())
            .verify_slice(&signature)
            .is_ok()
    };
    let ok = if req.body.is_empty() {
        check(None) || check(Some(&[]))
    } else {
        check(Some(req.body))
    };
    if ok {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

struct Inner {
    accounts: HashMap<String, Arc<Account>>,
    tokens: Arc<TokenStore>,
    quota: Arc<dyn Quota>,
    config: HttpConfig,
    trace: AtomicU64,
}

/// The HTTP side of the gateway (cheap to clone: shared inside)
///
/// Use [`respond`](Self::respond) (pure), [`handle`](Self::handle) (a hyper request) or
/// [`serve`](Self::serve) (a whole listener).
#[derive(Clone)]
pub struct HttpGateway {
    inner: Arc<Inner>,
}

impl fmt::Debug for HttpGateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpGateway")
            .field("accounts", &self.inner.accounts.len())
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl HttpGateway {
    /// A gateway for `accounts`, issuing tokens into `tokens`, with the [`FixedQuota`] default
    pub fn new(accounts: impl IntoIterator<Item = Arc<Account>>, tokens: Arc<TokenStore>) -> Self {
        Self::with_quota(accounts, tokens, Arc::new(FixedQuota::default()))
    }

    /// A gateway whose token endpoint reports `quota`'s numbers
    pub fn with_quota(
        accounts: impl IntoIterator<Item = Arc<Account>>,
        tokens: Arc<TokenStore>,
        quota: Arc<dyn Quota>,
    ) -> Self {
        Self::with_config(accounts, tokens, quota, HttpConfig::default())
    }

    /// A gateway with `quota` and the limits of `config`
    pub fn with_config(
        accounts: impl IntoIterator<Item = Arc<Account>>,
        tokens: Arc<TokenStore>,
        quota: Arc<dyn Quota>,
        config: HttpConfig,
    ) -> Self {
        HttpGateway {
            inner: Arc::new(Inner {
                accounts: accounts
                    .into_iter()
                    .map(|a| (a.app_key.clone(), a))
                    .collect(),
                tokens,
                quota,
                config,
                trace: AtomicU64::new(1),
            }),
        }
    }

    /// The token store tokens are issued into
    pub fn tokens(&self) -> &Arc<TokenStore> {
        &self.inner.tokens
    }

    /// Answer one request at `now` (the tokens' issue time)
    pub fn respond(&self, req: &HttpRequest<'_>, now: Instant) -> HttpReply {
        let known = [TOKEN_PATH, ACCOUNT_BALANCE_PATH];
        if !known.contains(&req.path) {
            return HttpReply::error(
                StatusCode::NOT_FOUND,
                404,
                format!(
                    "not found: the offline gateway has no {} {}",
                    req.method, req.path
                ),
            );
        }
        if req.method != Method::GET {
            return HttpReply::error(
                StatusCode::METHOD_NOT_ALLOWED,
                405,
                format!("method not allowed: {} {}", req.method, req.path),
            );
        }
        let account = match self.authenticate(req) {
            Ok(a) => a,
            Err(reply) => return reply,
        };
        match req.path {
            TOKEN_PATH => match self.inner.tokens.issue(Arc::clone(account), now) {
                Ok(otp) => {
                    let c = self.inner.quota.connections(account);
                    HttpReply::ok(json!({"otp": otp, "limit": c.limit, "online": c.online}))
                }
                Err(e) => HttpReply::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    code::INTERNAL_ERROR,
                    format!("internal error: {e}"),
                ),
            },
            _ => {
                let currency = req.query.and_then(|q| {
                    q.split('&')
                        .filter_map(|kv| kv.split_once('='))
                        .find(|(k, _)| *k == "currency")
                        .map(|(_, v)| v)
                });
                let list: Vec<Value> = account
                    .balances
                    .iter()
                    .filter(|b| currency.is_none_or(|c| c.is_empty() || c == b.currency))
                    .map(balance_json)
                    .collect();
                HttpReply::ok(json!({ "list": list }))
            }
        }
    }

    fn authenticate(&self, req: &HttpRequest<'_>) -> Result<&Arc<Account>, HttpReply> {
        let account = header(req.headers, "x-api-key")
            .and_then(|k| self.inner.accounts.get(k))
            .ok_or_else(|| {
                HttpReply::error(
                    StatusCode::FORBIDDEN,
                    code::APIKEY_ILLEGAL,
                    "apikey illegal",
                )
            })?;
        verify_signature(req, &account.app_secret).map_err(|_| {
            HttpReply::error(
                StatusCode::FORBIDDEN,
                code::SIGNATURE_INVALID,
                "signature invalid",
            )
        })?;
        if let Some(token) = &account.access_token {
            if header(req.headers, "authorization") != Some(token.as_str()) {
                return Err(HttpReply::error(
                    StatusCode::UNAUTHORIZED,
                    code::TOKEN_INVALID,
                    "token invalid",
                ));
            }
        }
        Ok(account)
    }

    /// Answer a hyper request: read its body (at most [`HttpConfig::max_body`]), take
    /// `Instant::now()`, call
    /// [`respond`](Self::respond), and build the response (JSON, `x-trace-id`)
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = req.into_parts();
        let reply = match Limited::new(body, self.inner.config.max_body)
            .collect()
            .await
        {
            Ok(body) => {
                let body = body.to_bytes();
                let req = HttpRequest {
                    method: &parts.method,
                    path: parts.uri.path(),
                    query: parts.uri.query(),
                    headers: &parts.headers,
                    body: &body,
                };
                self.respond(&req, Instant::now())
            }
            Err(_) => HttpReply::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                413,
                format!(
                    "request body unreadable or over {} bytes",
                    self.inner.config.max_body
                ),
            ),
        };
        let trace = self.inner.trace.fetch_add(1, Ordering::Relaxed);
        let mut resp = Response::new(Full::new(Bytes::from(reply.body)));
        *resp.status_mut() = reply.status;
        let h = resp.headers_mut();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        if let Ok(v) = HeaderValue::from_str(&format!("gateway-{trace}")) {
            h.insert("x-trace-id", v);
        }
        resp
    }

    /// Serve HTTP/1.1 on one accepted connection until it closes (or stalls for
    /// [`HttpConfig::header_read_timeout`] while sending headers)
    pub async fn serve_connection(&self, stream: TcpStream) {
        let gw = self.clone();
        let service = hyper::service::service_fn(move |req| {
            let gw = gw.clone();
            async move { Ok::<_, Infallible>(gw.handle(req).await) }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.inner.config.header_read_timeout)
            .serve_connection(TokioIo::new(stream), service)
            .await;
    }

    /// Accept connections on `listener` for ever, one task each, at most
    /// [`HttpConfig::max_connections`] at once (one more is closed at once)
    ///
    /// Accept errors (e.g. out of file descriptors) are retried after 50 ms.
    pub async fn serve(self, listener: TcpListener) -> io::Result<()> {
        let slots = Arc::new(Semaphore::new(self.inner.config.max_connections));
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                        drop(stream);
                        continue;
                    };
                    let gw = self.clone();
                    tokio::spawn(async move {
                        gw.serve_connection(stream).await;
                        drop(permit);
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

/// Bind a listener on 127.0.0.1 (the gateway's default: nothing outside the machine reaches it);
/// port 0 lets the OS pick one (`local_addr` tells which)
pub async fn bind_loopback(port: u16) -> io::Result<TcpListener> {
    TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port)).await
}

/// One balance as the SDK's `AccountBalance` reads it (decimals and `risk_level` as strings)
fn balance_json(b: &Balance) -> Value {
    json!({
        "total_cash": b.total_cash.to_string(),
        "max_finance_amount": b.max_finance_amount.to_string(),
        "remaining_finance_amount": b.remaining_finance_amount.to_string(),
        "risk_level": b.risk_level.to_string(),
        "margin_call": b.margin_call.to_string(),
        "currency": b.currency,
        "cash_infos": b.cash_infos.iter().map(|c| json!({
            "withdraw_cash": c.withdraw_cash.to_string(),
            "available_cash": c.available_cash.to_string(),
            "frozen_cash": c.frozen_cash.to_string(),
            "settling_cash": c.settling_cash.to_string(),
            "currency": c.currency,
        })).collect::<Vec<_>>(),
        "net_assets": b.net_assets.to_string(),
        "init_margin": b.init_margin.to_string(),
        "maintenance_margin": b.maintenance_margin.to_string(),
        "buy_power": b.buy_power.to_string(),
        "frozen_transaction_fees": b.frozen_transaction_fees.iter().map(|f| json!({
            "currency": f.currency,
            "frozen_transaction_fee": f.frozen_transaction_fee.to_string(),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests;
