//! The machines under load: the game server handling a KEEP_ALIVE from one of N established
//! peers (N = 8, 1,024, 65,536), and a LongPort heartbeat round trip through client and server
//!
//! `game_server_batch_*`: the same KEEP_ALIVEs from uniformly random peers through
//! `Server::handle_batch`, 32 per call, with `u32`, `SocketAddr` and `SocketAddrV4` keys (8 and
//! 65,536 peers),
//! and that bench's harness alone (`harness_only`: peer picks, keys, batch array; no server).
//!
//! `game_server_flood`: the stateless path a spoofing flood takes, datagrams from a fresh
//! unknown source each (a token CONNECT answered, an ACCEPT with a guessed token, junk).
//!
//! `lp_server_heartbeat`: a heartbeat from a random one of N authenticated LongPort connections
//! through the server, with the driver's drain and `poll_timeout` after it (N = 1, 64, 1,024);
//! `lp_server_churn`: a connection that comes and goes beside N logged-in ones (1, 1,023).
//!
//! Run: `cargo bench --bench machines -- --warm-up-time 1 --measurement-time 3`

// criterion_group! generates undocumented public functions
#![allow(missing_docs)]

use core::hint::black_box;
use core::mem::size_of;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use tether_net::game::wire::{Control, ControlPacket, Token};
use tether_net::game::{Server, ServerConfig, ServerEvent, TokenSecret};
use tether_net::longport::{
    Client as LpClient, ClientConfig, ClientEvent, Credentials, Grant, RequestId,
    Server as LpServer, ServerApp as LpServerApp, ServerConfig as LpServerConfig, SessionId,
    Source, Transport,
};
use tether_net::testing::control_packet;
use tether_net::{FrameKind, Instant, Machine};

/// xorshift64: the peer each iteration picks (fixed seed, no bias that matters here)
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Run `f` on a thread with a 1 GiB stack: `Server::new` builds the value on the stack before it
/// is boxed, and a 65,536-peer server is several MiB
fn on_big_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(1 << 30)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("setup thread")
}

/// The address of peer `i` (spread over the key space; consecutive integers would be fine too:
/// the table hash is keyed)
fn peer_addr(i: u32) -> u32 {
    i.wrapping_mul(0x9E37_79B1) ^ 0x0A00_0000
}

/// The KEEP_ALIVE every peer sends, with peer `i`'s token at bytes 4..8 (ack 0): filled in per
/// datagram from the peer's 4-byte token, the way a receive buffer is filled by the socket, so
/// that the harness itself does not read a large packet array (4 bytes per peer, not 12)
struct KeepAlives {
    template: [u8; 8],
    tokens: Vec<[u8; 4]>,
}

impl KeepAlives {
    #[inline(always)]
    fn datagram(&self, i: usize) -> (u32, [u8; 8]) {
        let mut ka = self.template;
        ka[4..8].copy_from_slice(&self.tokens[i]);
        (peer_addr(i as u32), ka)
    }

    fn len(&self) -> usize {
        self.tokens.len()
    }
}

fn keep_alive_bench<const N: usize>(c: &mut Criterion, group: &str, peers: u32) {
    let (mut srv, packets) = game_server::<u32, N>(peers);
    let before = srv.stats().keep_alives_received;
    let now = Instant::from_millis(2);
    let mask = (peers as usize).next_power_of_two() - 1;
    let mut g = c.benchmark_group(group);
    let mut rng = 0x2545_F491_4F6C_DD1D_u64;
    let mut out = [0u8; 1400];
    g.bench_function(BenchmarkId::new("peers", peers), |b| {
        b.iter(|| {
            let i = pick(&mut rng, mask, packets.len());
            let (addr, ka) = packets.datagram(i);
            let r = srv.handle_input(now, addr, &ka).expect("event room");
            // what a caller reads of the result (black-boxing the whole 56-byte value would
            // measure a store-forwarding stall of the harness)
            black_box((r.bytes_consumed(), r.app().is_some()));
            drain_black_box(&mut *srv, now, &mut out);
        })
    });
    g.finish();
    let handled = srv.stats().keep_alives_received - before;
    // (zero when a filter skipped this bench)
    assert_eq!(srv.stats().dropped_wrong_token, 0);
    eprintln!(
        "{group}/peers/{peers}: Server<u32, {N}> ({} buckets) is {} bytes = {:.1} bytes per peer of capacity; {handled} keep-alives handled",
        2 * N,
        size_of::<Server<u32, N>>(),
        size_of::<Server<u32, N>>() as f64 / N as f64
    );
}

/// The harness alone: the same peer pick and datagram fill, no server
fn keep_alive_harness(c: &mut Criterion, peers: u32) {
    let packets = KeepAlives {
        template: [0x10, 0, 0, 0, 0, 0, 0, 0],
        tokens: (0..peers).map(|i| i.to_le_bytes()).collect(),
    };
    let mask = (peers as usize).next_power_of_two() - 1;
    let mut rng = 0x2545_F491_4F6C_DD1D_u64;
    c.bench_function(
        &format!("game_server_keep_alive/harness_only/{peers}"),
        |b| {
            b.iter(|| {
                let i = next(&mut rng) as usize & mask;
                let (addr, ka) = packets.datagram(i);
                black_box((addr, ka));
            })
        },
    );
}

fn game_keep_alive(c: &mut Criterion) {
    keep_alive_bench::<8>(c, "game_server_keep_alive", 8);
    keep_alive_bench::<1024>(c, "game_server_keep_alive", 1024);
    // full servers: `Server<u32, N>` holds N peers in 2N buckets, so the table is at 50 % load
    // (65,536 peers: 131,072 buckets)
    keep_alive_bench::<65536>(c, "game_server_keep_alive", 65536);
    keep_alive_harness(c, 8);
    keep_alive_harness(c, 65536);
}

/// Key types of the batched bench: made from the peer number on the fly, like `peer_addr`
trait BenchKey: Copy + Eq + core::hash::Hash + core::fmt::Debug + Send + 'static {
    const NAME: &'static str;
    fn key(i: u32) -> Self;
}

impl BenchKey for u32 {
    const NAME: &'static str = "u32";
    #[inline(always)]
    fn key(i: u32) -> Self {
        peer_addr(i)
    }
}

impl BenchKey for std::net::SocketAddr {
    const NAME: &'static str = "socket_addr";
    #[inline(always)]
    fn key(i: u32) -> Self {
        let a = peer_addr(i);
        std::net::SocketAddr::from((a.to_be_bytes(), 8303 + (i & 0xFF) as u16))
    }
}

/// What an IPv4-only server can key by: 8 bytes instead of `SocketAddr`'s 32, so a peer slot
/// is 20 bytes instead of 44
impl BenchKey for std::net::SocketAddrV4 {
    const NAME: &'static str = "socket_addr_v4";
    #[inline(always)]
    fn key(i: u32) -> Self {
        let a = peer_addr(i);
        std::net::SocketAddrV4::new(a.into(), 8303 + (i & 0xFF) as u16)
    }
}

/// A server keyed by `K` with `peers` token peers admitted through CONNECT / CONNECT_ACCEPT /
/// ACCEPT, and the KEEP_ALIVE (with token) each of them sends
fn game_server<K: BenchKey, const N: usize>(peers: u32) -> (Box<Server<K, N>>, KeepAlives) {
    let mut srv: Box<Server<K, N>> = on_big_stack(|| {
        Box::new(Server::with_capacities(ServerConfig::new(TokenSecret(
            [0x5A; 16],
        ))))
    });
    let now = Instant::from_millis(1);
    let connect = ControlPacket {
        ack: 0,
        control: Control::Connect,
        token: Some(Token::UNKNOWN),
    };
    let mut c = [0u8; 16];
    let clen = connect.emit(&mut c).expect("fits");
    let mut out = [0u8; 1400];
    let mut tokens = Vec::with_capacity(peers as usize);
    let mut template = [0u8; 8];
    for i in 0..peers {
        let addr = K::key(i);
        let _ = srv.handle_input(now, addr, &c[..clen]).expect("event room");
        let t = srv
            .poll_transmit(now, &mut out)
            .expect("fits")
            .expect("CONNECT_ACCEPT");
        let parsed =
            tether_net::game::wire::parse(&out[..t.len], tether_net::game::wire::TokenMode::Detect)
                .expect("valid");
        let tether_net::game::wire::Packet::Control(ca) = parsed.packet else {
            panic!("not control")
        };
        let token = ca.token.expect("token form");
        assert_eq!(token, srv.token_for(addr));
        let mut a = [0u8; 8];
        let alen = ControlPacket {
            ack: 0,
            control: Control::Accept,
            token: Some(token),
        }
        .emit(&mut a)
        .expect("fits");
        let _ = srv.handle_input(now, addr, &a[..alen]).expect("event room");
        while srv.poll_transmit(now, &mut out).expect("fits").is_some() {}
        match srv.poll_event() {
            Some(ServerEvent::Connected { peer, .. }) if peer == addr => {}
            other => panic!("peer {i} not admitted: {other:?}"),
        }
        let mut ka = [0u8; 8];
        let klen = ControlPacket {
            ack: 0,
            control: Control::KeepAlive,
            token: Some(token),
        }
        .emit(&mut ka)
        .expect("fits");
        assert_eq!(klen, 8);
        template[..4].copy_from_slice(&ka[..4]);
        tokens.push(token.0);
        assert_eq!(&ka[4..], &token.0, "KEEP_ALIVE = header, id, token");
    }
    assert_eq!(srv.peer_count(), peers as usize);
    (srv, KeepAlives { template, tokens })
}

/// A uniformly random peer below `len` (`mask`: `len` rounded up to a power of two, minus one;
/// mask + reject keeps the pick uniform when `len` is not a power of two)
#[inline(always)]
fn pick(rng: &mut u64, mask: usize, len: usize) -> usize {
    loop {
        let i = next(rng) as usize & mask;
        if i < len {
            return i;
        }
    }
}

/// Step 2 of the run loop, for the benches: every frame and event into `black_box`
#[inline(always)]
fn drain_black_box<M: Machine>(m: &mut M, now: Instant, out: &mut [u8]) {
    while let Some(t) = m.poll_transmit(now, out).expect("fits") {
        let _ = black_box(t);
    }
    while let Some(e) = m.poll_event() {
        black_box(e);
    }
}

/// Datagrams per `handle_batch` call in the batched bench (a typical `recvmmsg` batch)
const BATCH: usize = 32;

/// KEEP_ALIVEs from uniformly random peers among `peers`, `BATCH` per `handle_batch` call (one
/// iteration = one batch: divide the time by `BATCH` for ns/datagram)
fn batch_bench<K: BenchKey, const N: usize>(c: &mut Criterion, peers: u32) {
    let (mut srv, packets) = game_server::<K, N>(peers);
    let before = srv.stats().keep_alives_received;
    let now = Instant::from_millis(2);
    let mask = (peers as usize).next_power_of_two() - 1;
    let mut rng = 0x2545_F491_4F6C_DD1D_u64;
    let mut out = [0u8; 1400];
    let mut g = c.benchmark_group(format!("game_server_batch_{}", K::NAME));
    g.throughput(criterion::Throughput::Elements(BATCH as u64));
    g.bench_function(BenchmarkId::new("random_peers", peers), |b| {
        b.iter(|| {
            let mut keys = [K::key(0); BATCH];
            let mut bytes = [[0u8; 8]; BATCH];
            for (k, d) in keys.iter_mut().zip(&mut bytes) {
                let i = pick(&mut rng, mask, packets.len());
                *k = K::key(i as u32);
                *d = packets.datagram(i).1;
            }
            let mut batch: [(K, &[u8]); BATCH] = [(keys[0], &[]); BATCH];
            for ((slot, k), d) in batch.iter_mut().zip(&keys).zip(&bytes) {
                *slot = (*k, d);
            }
            let mut apps = 0u32;
            let done = srv.handle_batch(now, &batch, |_, _, r| {
                apps += u32::from(r.app().is_some());
            });
            black_box((done, apps));
            drain_black_box(&mut *srv, now, &mut out);
        })
    });
    g.finish();
    let handled = srv.stats().keep_alives_received - before;
    assert_eq!(srv.stats().dropped_wrong_token, 0);
    eprintln!(
        "game_server_batch_{}/random_peers/{peers}: {handled} keep-alives handled",
        K::NAME
    );
}

/// The batched bench's harness alone: the same peer picks, keys, datagrams and batch array,
/// no server (subtract it from `random_peers` for the server's own cost per batch)
fn batch_harness<K: BenchKey>(c: &mut Criterion, peers: u32) {
    let packets = KeepAlives {
        template: [0x10, 0, 0, 0, 0, 0, 0, 0],
        tokens: (0..peers).map(|i| i.to_le_bytes()).collect(),
    };
    let mask = (peers as usize).next_power_of_two() - 1;
    let mut rng = 0x2545_F491_4F6C_DD1D_u64;
    let mut g = c.benchmark_group(format!("game_server_batch_{}", K::NAME));
    g.throughput(criterion::Throughput::Elements(BATCH as u64));
    g.bench_function(BenchmarkId::new("harness_only", peers), |b| {
        b.iter(|| {
            let mut keys = [K::key(0); BATCH];
            let mut bytes = [[0u8; 8]; BATCH];
            for (k, d) in keys.iter_mut().zip(&mut bytes) {
                let i = loop {
                    let i = next(&mut rng) as usize & mask;
                    if i < packets.len() {
                        break i;
                    }
                };
                *k = K::key(i as u32);
                *d = packets.datagram(i).1;
            }
            let mut batch: [(K, &[u8]); BATCH] = [(keys[0], &[]); BATCH];
            for ((slot, k), d) in batch.iter_mut().zip(&keys).zip(&bytes) {
                *slot = (*k, d);
            }
            black_box(&batch);
        })
    });
    g.finish();
}

fn game_batch(c: &mut Criterion) {
    batch_bench::<u32, 8>(c, 8);
    batch_bench::<u32, 65536>(c, 65536);
    batch_bench::<std::net::SocketAddr, 8>(c, 8);
    batch_bench::<std::net::SocketAddr, 65536>(c, 65536);
    batch_bench::<std::net::SocketAddrV4, 8>(c, 8);
    batch_bench::<std::net::SocketAddrV4, 65536>(c, 65536);
    batch_harness::<u32>(c, 65536);
    batch_harness::<std::net::SocketAddr>(c, 65536);
    batch_harness::<std::net::SocketAddrV4>(c, 65536);
}

/// Feed `bytes` to the LongPort server as one read of connection `conn`; returns the request id
/// of an Auth request found in it
fn lp_server_read(
    srv: &mut LpServer<u32>,
    now: Instant,
    conn: u32,
    bytes: &[u8],
) -> Option<RequestId> {
    let mut rest = bytes;
    let mut auth = None;
    while !rest.is_empty() {
        let r = srv.handle_input(now, conn, rest).expect("input taken");
        if let Some(LpServerApp::Auth { request_id, .. }) = r.app() {
            auth = Some(*request_id);
        }
        assert!(r.bytes_consumed() > 0, "whole packets only");
        rest = &rest[r.bytes_consumed()..];
    }
    auth
}

/// A LongPort client and server with one authenticated connection (id 1) over `transport`
fn lp_pair(transport: Transport) -> (LpClient, LpServer<u32>, Instant) {
    let mut client = LpClient::new(ClientConfig::new(transport));
    let mut srv = LpServer::new(LpServerConfig::new());
    let now = Instant::from_secs(1);
    let (mut c2s, mut s2c) = ([0u8; 1024], [0u8; 1024]);
    client
        .connect(now, Credentials::new("one-time-token"))
        .expect("connect");
    assert!(matches!(
        client.poll_event(),
        Some(ClientEvent::ConnectTransport { .. })
    ));
    client.handle_connected(now).expect("connected");
    srv.handle_connected(now, 1, transport, Source::UNKNOWN)
        .expect("room");
    let t = client
        .poll_transmit(now, &mut c2s)
        .expect("fits")
        .expect("login");
    let auth = lp_server_read(&mut srv, now, 1, &c2s[..t.len]).expect("auth request");
    let mut random = [0u8; 16];
    getrandom::fill(&mut random).expect("the OS random source");
    let grant = Grant::new(SessionId::from_random(random), i64::MAX).with_limit_online(10, 1);
    assert!(auth.0 > 0);
    srv.accept_auth(now, 1, grant).expect("pending auth");
    while let Some(t) = srv.poll_transmit(now, &mut s2c).expect("fits") {
        let r = client
            .handle_input(now, (), &s2c[..t.len])
            .expect("input taken");
        assert_eq!(r.bytes_consumed(), t.len);
    }
    while srv.poll_event().is_some() {}
    let mut authenticated = false;
    while let Some(e) = client.poll_event() {
        authenticated |= matches!(e, ClientEvent::Connected { .. });
    }
    assert!(authenticated);
    (client, srv, now)
}

/// One heartbeat round trip: client timer fires → heartbeat request → server echoes →
/// client matches it and reports the RTT
fn lp_heartbeat(c: &mut Criterion) {
    let (mut client, mut srv, _) = lp_pair(Transport::Tcp);
    let (mut c2s, mut s2c) = ([0u8; 256], [0u8; 256]);
    let mut g = c.benchmark_group("lp_heartbeat");
    let mut rtts = 0u64;
    g.bench_function(BenchmarkId::new("round_trip", "tcp"), |b| {
        b.iter(|| {
            let now = client.poll_timeout().expect("heartbeat timer");
            client.handle_timeout(now);
            let t = client
                .poll_transmit(now, &mut c2s)
                .expect("fits")
                .expect("heartbeat");
            let r = srv
                .handle_input(now, 1, &c2s[..t.len])
                .expect("input taken");
            debug_assert_eq!(r.bytes_consumed(), t.len);
            black_box(r.bytes_consumed());
            let t = srv
                .poll_transmit(now, &mut s2c)
                .expect("fits")
                .expect("echo");
            let r = client
                .handle_input(now, (), &s2c[..t.len])
                .expect("input taken");
            black_box(r.bytes_consumed());
            while let Some(e) = client.poll_event() {
                rtts += u64::from(matches!(e, ClientEvent::HeartbeatRtt { .. }));
            }
            while let Some(e) = srv.poll_event() {
                black_box(e);
            }
        })
    });
    // every heartbeat sent came back as an RTT event (zero of each when a filter skipped this)
    assert_eq!(client.stats().heartbeats_sent, rtts);

    // WebSocket: the heartbeat is a Ping carrying the Heartbeat body, echoed as a Pong
    let (mut ws_client, mut ws_srv, _) = lp_pair(Transport::WebSocket);
    let mut ws_rtts = 0u64;
    g.bench_function(BenchmarkId::new("round_trip", "websocket"), |b| {
        b.iter(|| {
            let now = ws_client.poll_timeout().expect("heartbeat timer");
            ws_client.handle_timeout(now);
            let t = ws_client
                .poll_transmit(now, &mut c2s)
                .expect("fits")
                .expect("ping");
            debug_assert_eq!(t.kind, FrameKind::WsPing);
            ws_srv.handle_frame(now, 1, t.kind, &c2s[..t.len]);
            let t = ws_srv
                .poll_transmit(now, &mut s2c)
                .expect("fits")
                .expect("pong");
            debug_assert_eq!(t.kind, FrameKind::WsPong);
            ws_client.handle_frame(now, (), t.kind, &s2c[..t.len]);
            while let Some(e) = ws_client.poll_event() {
                ws_rtts += u64::from(matches!(e, ClientEvent::HeartbeatRtt { .. }));
            }
            while let Some(e) = ws_srv.poll_event() {
                black_box(e);
            }
        })
    });
    g.finish();
    assert_eq!(ws_client.stats().heartbeats_sent, ws_rtts);
    eprintln!(
        "lp_heartbeat: {rtts} round trips; Client {} bytes, Server<u32> {} bytes",
        size_of::<LpClient>(),
        size_of::<LpServer<u32>>()
    );
}

/// The stateless path under a flood: datagrams from addresses the server has never seen (a
/// spoofing attacker picks a fresh source for each), one at a time, with every frame the server
/// queues drained: a token CONNECT (answered with a CONNECT_ACCEPT carrying the minted token, no
/// state kept), an ACCEPT with a guessed token (minted again and compared, dropped) and 8 bytes of
/// junk (dropped by the parser). The server holds 1,024 established peers.
fn game_flood(c: &mut Criterion) {
    let (mut srv, _) = game_server::<u32, 1024>(1024);
    let now = Instant::from_millis(2);
    let connect = control_packet(Control::Connect, Some(Token::UNKNOWN));
    let accept = control_packet(Control::Accept, Some(Token([0xA5, 0x5A, 0x0F, 0xF0])));
    let mut junk = [0u8; 8];
    let mut out = [0u8; 1400];
    let mut g = c.benchmark_group("game_server_flood");
    let before = srv.stats();
    let mut sent = 0u64;
    for (name, datagram) in [
        ("connect", &connect[..]),
        ("accept_guessed_token", &accept[..]),
    ] {
        // a fresh source each time: `peer_addr` of numbers past the peers' (it is a bijection,
        // so never a peer's address)
        let mut k = 1024_u32;
        g.bench_function(BenchmarkId::new("unknown_source", name), |b| {
            b.iter(|| {
                k = k.wrapping_add(1).max(1024);
                let r = srv
                    .handle_input(now, peer_addr(k), black_box(datagram))
                    .expect("no event");
                black_box(r.bytes_consumed());
                drain_black_box(&mut *srv, now, &mut out);
            })
        });
        sent += u64::from(k - 1024);
    }
    let mut rng = 0x2545_F491_4F6C_DD1D_u64;
    let mut k = 1024_u32;
    g.bench_function(BenchmarkId::new("unknown_source", "junk_8B"), |b| {
        b.iter(|| {
            k = k.wrapping_add(1).max(1024);
            let from = peer_addr(k);
            junk = next(&mut rng).to_le_bytes();
            // a header the parser refuses: a reserved bit set, the connless bit clear
            junk[0] = (junk[0] & !0x20) | 0x04;
            let r = srv
                .handle_input(now, from, black_box(&junk))
                .expect("no event");
            black_box(r.bytes_consumed());
            drain_black_box(&mut *srv, now, &mut out);
        })
    });
    g.finish();
    let after = srv.stats();
    // nothing of the flood was kept: no peer added, no event
    assert_eq!(srv.peer_count(), 1024, "the flood added peers");
    eprintln!(
        "game_server_flood: {sent} CONNECTs and guessed-token ACCEPTs; {} dropped as malformed, {} wrong tokens",
        after.dropped_malformed - before.dropped_malformed,
        after.dropped_wrong_token - before.dropped_wrong_token
    );
}

/// A LongPort server holding `n` authenticated TCP connections (ids 0..n), and the bytes of one
/// client heartbeat request (the same packet serves every connection: the server echoes it)
fn lp_server_with(n: u32) -> (Box<LpServer<u32, 1024, 1024>>, Vec<u8>, Instant) {
    let (mut client, _, now) = lp_pair(Transport::Tcp);
    let mut login = [0u8; 1024];
    let mut fresh = LpClient::new(ClientConfig::new(Transport::Tcp));
    fresh
        .connect(now, Credentials::new("one-time-token"))
        .expect("connect");
    while fresh.poll_event().is_some() {}
    fresh.handle_connected(now).expect("connected");
    let t = fresh
        .poll_transmit(now, &mut login)
        .expect("fits")
        .expect("login");
    let login = login[..t.len].to_vec();
    let at = client.poll_timeout().expect("heartbeat timer");
    client.handle_timeout(at);
    let mut hb = [0u8; 256];
    let t = client
        .poll_transmit(at, &mut hb)
        .expect("fits")
        .expect("heartbeat");
    let hb = hb[..t.len].to_vec();
    let (srv, now) = on_big_stack(move || {
        let mut srv: Box<LpServer<u32, 1024, 1024>> =
            Box::new(LpServer::with_capacities(LpServerConfig::new()));
        let mut out = [0u8; 1024];
        for conn in 0..n {
            srv.handle_connected(now, conn, Transport::Tcp, Source::UNKNOWN)
                .expect("room");
            let mut rest = &login[..];
            while !rest.is_empty() {
                let r = srv.handle_input(now, conn, rest).expect("input taken");
                rest = &rest[r.bytes_consumed()..];
            }
            let mut random = [0u8; 16];
            random[..4].copy_from_slice(&conn.to_le_bytes());
            let grant = Grant::new(SessionId::from_random(random), i64::MAX);
            srv.accept_auth(now, conn, grant).expect("pending auth");
            while srv.poll_transmit(now, &mut out).expect("fits").is_some() {}
            while srv.poll_event().is_some() {}
        }
        assert_eq!(srv.sessions(), n as usize);
        (srv, now)
    });
    (srv, hb, now)
}

/// A heartbeat from a uniformly random one of N authenticated connections through the LongPort
/// server, with what a driver does after each read: drain `poll_transmit` (the echo) and
/// `poll_event`, then ask `poll_timeout` for its next wake-up
fn lp_server_peers(c: &mut Criterion) {
    let mut g = c.benchmark_group("lp_server_heartbeat");
    for n in [1u32, 64, 1024] {
        let (mut srv, hb, now) = lp_server_with(n);
        let mut out = [0u8; 256];
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let (mut inputs, mut echoes) = (0u64, 0u64);
        g.bench_function(BenchmarkId::new("random_peer", n), |b| {
            b.iter(|| {
                let conn = (next(&mut x) % u64::from(n)) as u32;
                let r = srv.handle_input(now, conn, &hb).expect("input taken");
                debug_assert_eq!(r.bytes_consumed(), hb.len());
                inputs += 1;
                while let Some(t) = srv.poll_transmit(now, &mut out).expect("fits") {
                    echoes += 1;
                    black_box(t.len);
                }
                while let Some(e) = srv.poll_event() {
                    black_box(e);
                }
                black_box(srv.poll_timeout())
            })
        });
        // every heartbeat got its echo, and no connection went away
        assert_eq!(srv.sessions(), n as usize);
        assert_eq!(echoes, inputs);
    }
    g.finish();
}

/// A connection that comes and goes while N others are logged in: a WebSocket from a known
/// source connects, is closed by its transport, and its `Closed` is drained (what a flood of
/// short-lived connections costs the server)
fn lp_server_churn(c: &mut Criterion) {
    let mut g = c.benchmark_group("lp_server_churn");
    // 1,023: the table holds 1,024 connections, one slot for the newcomer
    for n in [1u32, 1023] {
        let (mut srv, _, now) = lp_server_with(n);
        let mut out = [0u8; 256];
        let mut conn = n;
        g.bench_function(BenchmarkId::new("connect_close", n), |b| {
            b.iter(|| {
                conn = conn.wrapping_add(1).max(n);
                let mut key = [0u8; 16];
                key[..4].copy_from_slice(&(conn & 0xff).to_le_bytes());
                let source = Source::from_bytes(key);
                srv.handle_connected(now, conn, Transport::WebSocket, source)
                    .expect("room");
                srv.handle_closed(now, conn);
                while srv.poll_transmit(now, &mut out).expect("fits").is_some() {}
                while let Some(e) = srv.poll_event() {
                    black_box(e);
                }
            })
        });
        assert_eq!(srv.connections(), n as usize);
    }
    g.finish();
}

criterion_group!(
    benches,
    game_keep_alive,
    game_batch,
    game_flood,
    lp_heartbeat,
    lp_server_peers,
    lp_server_churn
);
criterion_main!(benches);
