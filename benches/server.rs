//! The tokio LongPort server driver with idle connections: one client's request round trip
//! (request, the application's answer, response) while N other clients are logged in and idle
//! (N = 0, 100, 1,000), all on 127.0.0.1 in this process. What it shows: the driver's work per
//! input does not grow with the connections that have nothing to say.
//!
//! Run: `cargo bench --manifest-path benches/Cargo.toml --bench server -- --warm-up-time 1 --measurement-time 3`

// criterion_group! generates undocumented public functions
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use tether_net::longport::{ClientConfig, ServerConfig, Status};
use tether_net_drivers::random_session_id;
use tether_net_drivers::tokio::{
    ClientOptions, Grant, Listener, LongPortClient, LongPortServer, ServerInput, ServerItem,
    ServerOptions,
};

const TOKEN: &str = "bench";
const CMD_ECHO: u8 = 4;

fn idle_connections(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (url, client) = rt.block_on(async {
        let (server, mut events) = LongPortServer::bind_with::<2048, 4096>(
            &[Listener::Tcp("127.0.0.1:0".parse().expect("address"))],
            ServerConfig::new(),
            ServerOptions::default(),
        )
        .await
        .expect("bind 127.0.0.1");
        let url = format!("tcp://{}", server.local_addrs()[0]);
        // the application: every login accepted, every request echoed
        tokio::spawn(async move {
            while let Some(item) = events.next().await {
                match item {
                    ServerItem::Input(ServerInput::Auth { peer, .. }) => {
                        let grant = Grant::new(random_session_id(), i64::MAX / 2);
                        let _ = server.accept_auth(peer, grant).await;
                    }
                    ServerItem::Input(ServerInput::Request {
                        peer,
                        request_id,
                        cmd,
                        body,
                        ..
                    }) => {
                        let _ = server
                            .respond(peer, cmd, request_id, Status::Success, body)
                            .await;
                    }
                    _ => {}
                }
            }
        });
        let (client, _events) =
            LongPortClient::connect(&url, ClientConfig::tcp(), TOKEN, ClientOptions::default())
                .await
                .expect("login");
        (url, client)
    });
    let mut idle = Vec::new();
    let mut g = c.benchmark_group("lp_server_idle_connections");
    for n in [0usize, 100, 1000] {
        rt.block_on(async {
            while idle.len() < n {
                let options = ClientOptions::default().with_events_capacity(1);
                idle.push(
                    LongPortClient::connect(&url, ClientConfig::tcp(), TOKEN, options)
                        .await
                        .expect("idle login"),
                );
            }
        });
        g.bench_function(BenchmarkId::new("request_round_trip", n), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let r = client.request(CMD_ECHO, b"x".to_vec()).await.expect("echo");
                    assert_eq!(r.body, b"x");
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, idle_connections);
criterion_main!(benches);
