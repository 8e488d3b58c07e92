//! 1,000 connections at once against the `longport-gateway` binary on 127.0.0.1, twice: every
//! one authenticates with its own one-time token and gets an answer; the gateway's resident
//! memory is measured idle, with 1,000 connections and after each round, and stays bounded
//!
//! 600 connections speak LongPort over TCP and 400 over WebSocket (tether-net's own tokio
//! client). The test raises its open-file limit (inherited by the gateway) and fails loudly when
//! the hard limit is too low.

mod support;

use std::time::Duration;

use longport::httpclient::{HttpClient, HttpClientConfig};
use longport_proto::quote::{MultiSecurityRequest, SecurityQuoteResponse};
use prost::Message as _;
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use support::{rss_kib, Gateway, ACCESS, KEY, SECRET};
use tether_net::longport::{ClientConfig, Status};
use tether_net_drivers::tokio::{ClientOptions, LongPortClient, LongPortEvents};
use tokio::time::timeout;

const N: usize = 1000;
const TCP: usize = 600;
const BATCH: usize = 100;
const STEP: Duration = Duration::from_secs(60);

fn raise_open_files() {
    let want = 4096;
    let lim = getrlimit(Resource::Nofile);
    if lim.current.is_none_or(|c| c >= want) {
        return;
    }
    let max = lim.maximum.map_or(want, |m| m.min(want));
    assert!(
        max >= 2 * N as u64 + 200,
        "the open-file hard limit ({max}) is too low for {N} connections"
    );
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(max),
            maximum: lim.maximum,
        },
    )
    .expect("raise RLIMIT_NOFILE");
}

async fn round(g: &Gateway, http: &HttpClient) -> Vec<(LongPortClient, LongPortEvents)> {
    let mut tokens = Vec::with_capacity(N);
    for _ in 0..N {
        tokens.push(timeout(STEP, http.get_otp()).await.unwrap().unwrap());
    }
    let mut clients = Vec::with_capacity(N);
    let mut tokens = tokens.into_iter().enumerate();
    loop {
        let mut set = tokio::task::JoinSet::new();
        for (i, token) in tokens.by_ref().take(BATCH) {
            let (url, cfg) = if i < TCP {
                (format!("tcp://{}", g.quote_tcp), ClientConfig::tcp())
            } else {
                (g.quote_url(), ClientConfig::websocket())
            };
            set.spawn(async move {
                let (c, e) = timeout(
                    STEP,
                    LongPortClient::connect(&url, cfg, &token, ClientOptions::default()),
                )
                .await
                .expect("connect timed out")
                .expect("login refused");
                let body = MultiSecurityRequest {
                    symbol: vec!["700.HK".into()],
                }
                .encode_to_vec();
                let r = timeout(STEP, c.request(11, body))
                    .await
                    .expect("request timed out")
                    .expect("request failed");
                assert_eq!(r.status, Status::Success);
                let q = SecurityQuoteResponse::decode(r.body.as_slice()).unwrap();
                assert_eq!(q.secu_quote[0].last_done, "388.2");
                (c, e)
            });
        }
        if set.is_empty() {
            break;
        }
        while let Some(r) = set.join_next().await {
            clients.push(r.expect("client task"));
        }
    }
    clients
}

async fn close_all(clients: Vec<(LongPortClient, LongPortEvents)>) {
    let mut set = tokio::task::JoinSet::new();
    for (c, _e) in clients {
        set.spawn(async move {
            let _ = timeout(STEP, c.close("soak done")).await;
        });
    }
    while set.join_next().await.is_some() {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_connections_twice_with_bounded_memory() {
    raise_open_files();
    let mut g = Gateway::start(
        "",
        &[
            "--max-connections",
            "5000",
            "--max-unauthenticated",
            "256",
            "--max-unauthenticated-per-source",
            "256",
        ],
    );
    let http =
        HttpClient::new(HttpClientConfig::from_apikey(KEY, SECRET, ACCESS).http_url(g.http_url()));
    let idle = rss_kib(g.pid());
    let mut peaks = Vec::new();
    let mut afters = Vec::new();
    for r in 1..=2 {
        let clients = round(&g, &http).await;
        assert_eq!(clients.len(), N);
        let peak = rss_kib(g.pid());
        close_all(clients).await;
        // every connection reported closed by the gateway
        let deadline = std::time::Instant::now() + STEP;
        while g.count(" closed: ") < r * N {
            assert!(std::time::Instant::now() < deadline, "not all closed");
            std::thread::sleep(Duration::from_millis(100));
        }
        let after = rss_kib(g.pid());
        eprintln!("soak round {r}: gateway RSS idle {idle} KiB, with {N} connections {peak} KiB, after closing {after} KiB");
        peaks.push(peak);
        afters.push(after);
    }
    assert_eq!(g.count("auth ok"), 2 * N);
    // bounded: the second round reuses what the first one grew
    assert!(
        peaks[0] < 256 * 1024,
        "RSS with {N} connections: {} KiB",
        peaks[0]
    );
    assert!(
        peaks[1] <= peaks[0] + 16 * 1024,
        "the second round grew the gateway: {peaks:?} KiB"
    );
}
