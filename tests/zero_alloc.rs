//! After set-up, the four machines never allocate: a counting global allocator watches a million
//! packets go into each of them (debug and release builds alike)
//!
//! The build is the std one (the self dev-dependency turns on `std` via `testing`), as a user of
//! the std build would run it. The counter is `stats_alloc::StatsAlloc<System>`: a wrapper around
//! `std::alloc::System` with atomic counters. It is taken from a crate because the package-wide
//! `unsafe_code = "forbid"` lint also covers test targets, and `GlobalAlloc` can only be
//! implemented with `unsafe impl`.
//!
//! The test runs on the main thread under `libtest-mimic` with one test thread (`harness = false`
//! in Cargo.toml): with libtest's own harness the test runs on a spawned thread while the main
//! thread finishes its bookkeeping, and those allocations (4, 900 bytes) landed in the first
//! measured region in about one run of four. Now no other thread exists while a region is
//! measured. `cargo test` runs it like any test (filters and `--list` work).
//! Set-up (admission, auth) happens before each region; inside it only the machines and fixed
//! stack buffers are used — no formatting, no collections.

use std::alloc::System;

use stats_alloc::{Region, Stats, StatsAlloc, INSTRUMENTED_SYSTEM};
use tether_net::game::{self, Flags, ServerEvent};
use tether_net::longport::{
    AccountId, Client as LpClient, ClientApp as LpApp, ClientConfig, ClientEvent, Credentials,
    Grant, RateLimit, RequestId, Server as LpServer, ServerApp as LpServerApp,
    ServerConfig as LpServerConfig, ServerEvent as LpServerEvent, SessionId, Source, Status,
    Transport,
};
use tether_net::{Duration, Instant, Machine};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Packets each machine must take in through `handle_input` inside the measured region (the
/// whole test takes about 4 s in a debug build, 0.4 s with `--release`, so both run the million)
const PACKETS: u64 = 1_000_000;

const PEER: u32 = 0x0A00_0001;

/// Packets each machine took in, and the allocator's activity in the region
struct Run {
    first: u64,
    second: u64,
    stats: Stats,
}

fn allocations(s: &Stats) -> usize {
    s.allocations + s.reallocations
}

/// Hand every frame `from` has queued to `to` (from `peer`), except those `lost` drops;
/// `taken` runs after each frame `to` took in; how many it took in
fn deliver<A: Machine, B: Machine>(
    from: &mut A,
    to: &mut B,
    peer: B::Peer,
    now: Instant,
    buf: &mut [u8],
    mut lost: impl FnMut() -> bool,
    mut taken: impl FnMut(&mut B),
) -> u64
where
    B::Peer: Copy,
    B::Error: std::fmt::Debug,
{
    let mut n = 0;
    while let Some(t) = from.poll_transmit(now, buf).expect("fits") {
        if !lost() {
            let _ = to.handle_input(now, peer, &buf[..t.len]).expect("room");
            taken(to);
            n += 1;
        }
    }
    n
}

/// Frames hand over in full
fn lossless() -> bool {
    false
}

/// The game connection holds: no client event, no server `Closed`
fn game_quiet<C, S>(client: &mut C, srv: &mut S)
where
    C: Machine<Event = game::ClientEvent>,
    S: Machine<Event = ServerEvent<u32>>,
{
    if let Some(e) = client.poll_event() {
        panic!("unexpected client event {e:?}");
    }
    while let Some(e) = srv.poll_event() {
        assert!(!matches!(e, ServerEvent::Closed { .. }), "{e:?}");
    }
}

/// The game handshake by hand, the client's `connect` issued: two rounds of frames each way,
/// then its events dropped
fn game_handshake<C: Machine<Peer = ()>, S: Machine<Peer = u32>>(
    client: &mut C,
    srv: &mut S,
    now: Instant,
    c2s: &mut [u8],
    s2c: &mut [u8],
) where
    C::Error: std::fmt::Debug,
    S::Error: std::fmt::Debug,
{
    for _ in 0..2 {
        deliver(client, srv, PEER, now, c2s, lossless, |_| {});
        deliver(srv, client, (), now, s2c, lossless, |_| {});
    }
    while client.poll_event().is_some() {}
    while srv.poll_event().is_some() {}
}

/// Game client and a 16-slot server: chunk packets both ways, and every other step a 1 s pause
/// so keep-alives flow both ways too
fn game_pair() -> Run {
    let mut client = game::Client::new(game::ClientConfig::default());
    let mut srv: game::Server<u32, 16> =
        game::Server::with_capacities(game::ServerConfig::new(game::TokenSecret([3; 16])));
    let mut now = Instant::from_secs(1);
    let (mut c2s, mut s2c) = ([0u8; 1400], [0u8; 1400]);
    client.connect(now).expect("idle");
    game_handshake(&mut client, &mut srv, now, &mut c2s, &mut s2c);
    assert!(srv.is_online(PEER));
    let payload = [0x42u8; 120];

    let region = Region::new(GLOBAL);
    let (mut to_client, mut to_server) = (0u64, 0u64);
    let mut step = 0u64;
    while to_client < PACKETS || to_server < PACKETS {
        step += 1;
        if step.is_multiple_of(2) {
            let t = srv
                .send_chunks(now, PEER, Flags::default(), 1, &payload, &mut s2c)
                .expect("online");
            let r = client.handle_input(now, (), &s2c[..t.len]).expect("room");
            assert!(r
                .app()
                .and_then(|a| a.chunks())
                .is_some_and(|c| c.payload.len() == payload.len()));
            let t = client
                .send_chunks(now, Flags::default(), 1, &payload, &mut c2s)
                .expect("online");
            let r = srv.handle_input(now, PEER, &c2s[..t.len]).expect("room");
            assert!(r.app().is_some());
            to_client += 1;
            to_server += 1;
        } else {
            // silence: both keep-alive timers (client 250 ms, server 1 s) fire
            now += Duration::from_secs(1);
            client.handle_timeout(now);
            srv.handle_timeout(now);
            to_server += deliver(&mut client, &mut srv, PEER, now, &mut c2s, lossless, |_| {});
            to_client += deliver(&mut srv, &mut client, (), now, &mut s2c, lossless, |_| {});
        }
        game_quiet(&mut client, &mut srv);
    }
    let stats = region.change();
    assert!(srv.is_online(PEER));
    assert!(client.stats().keep_alives_received > 0 && srv.stats().keep_alives_received > 0);
    Run {
        first: to_client,
        second: to_server,
        stats,
    }
}

/// Packets each chunk-layer machine takes in (decompression, sequencing and compression make a
/// packet about ten times the work of a control-plane one in a debug build)
const CHUNK_PACKETS: u64 = 100_000;

type ChunkLayer = game::Reliable<8192, 32, 8192, 32>;

/// Game client and server with the chunk layer: vital chunks both ways, non-vital compressed
/// ones, every 7th datagram lost (resend requests, reordering, timer resends)
fn game_chunk_pair() -> Run {
    let config = game::ChunkConfig::fast();
    let mut client: Box<game::Client<4, ChunkLayer>> = Box::new(game::Client::with_chunks(
        game::ClientConfig::default(),
        config,
    ));
    let mut srv: Box<game::Server<u32, 4, 16, ChunkLayer>> = Box::new(game::Server::with_chunks(
        game::ServerConfig::new(game::TokenSecret([3; 16])),
        config,
    ));
    let mut now = Instant::from_secs(1);
    let (mut c2s, mut s2c) = ([0u8; 1400], [0u8; 1400]);
    client.connect(now).expect("idle");
    game_handshake(&mut *client, &mut *srv, now, &mut c2s, &mut s2c);
    assert!(srv.is_online(PEER));
    let vital = [0x42u8; 40];
    let zeros = [0u8; 300];

    let region = Region::new(GLOBAL);
    let (mut to_client, mut to_server) = (0u64, 0u64);
    let (mut got_client, mut got_server) = (0u64, 0u64);
    let mut sent = 0u64;
    while to_client < CHUNK_PACKETS || to_server < CHUNK_PACKETS {
        now += Duration::from_millis(20);
        // queue while there is room (the resend buffers fill when acks are lost)
        let _ = client.send_vital(now, &vital, true);
        let _ = srv.send_vital(now, PEER, &vital, false);
        client.handle_timeout(now);
        srv.handle_timeout(now);
        let t = srv
            .send_non_vital(now, PEER, &zeros, &mut s2c)
            .expect("online");
        sent += 1;
        if !sent.is_multiple_of(7) {
            let _ = client.handle_input(now, (), &s2c[..t.len]).expect("room");
            while client.poll_chunk().is_some() {
                got_client += 1;
            }
            to_client += 1;
        }
        // every 7th datagram either way is lost
        let mut lost = || {
            sent += 1;
            sent.is_multiple_of(7)
        };
        to_server += deliver(
            &mut *client,
            &mut *srv,
            PEER,
            now,
            &mut c2s,
            &mut lost,
            |s| {
                while s.poll_chunk().is_some() {
                    got_server += 1;
                }
            },
        );
        to_client += deliver(&mut *srv, &mut *client, (), now, &mut s2c, &mut lost, |c| {
            while c.poll_chunk().is_some() {
                got_client += 1;
            }
        });
        game_quiet(&mut *client, &mut *srv);
    }
    let stats = region.change();
    assert!(srv.is_online(PEER));
    let (cs, ss) = (client.chunk_stats(), srv.chunk_stats(PEER).expect("peer"));
    assert!(got_client > 0 && got_server > 0);
    assert!(cs.resent > 0 && ss.resent > 0, "{cs:?} {ss:?}");
    assert!(client.stats().chunk_packets_received > 0);
    Run {
        first: to_client,
        second: to_server,
        stats,
    }
}

/// Feed one read to the LongPort server; the Auth request id if the read held one
fn lp_server_read(srv: &mut LpServer<u32>, now: Instant, bytes: &[u8]) -> Option<RequestId> {
    let mut rest = bytes;
    let mut auth = None;
    while !rest.is_empty() {
        let r = srv.handle_input(now, 1, rest).expect("taken");
        if let Some(LpServerApp::Auth { request_id, .. }) = r.app() {
            auth = Some(*request_id);
        }
        assert!(r.bytes_consumed() > 0);
        rest = &rest[r.bytes_consumed()..];
    }
    auth
}

/// LongPort TCP client and server with the gateway's limits on (account quota, a per-connection
/// and a per-command rate limit, server heartbeats): business request → response (or the
/// machine's rate-limit refusal), server push, 1 ms per step, and every 8th step a heartbeat
/// round trip (time jumps to the client's heartbeat deadline)
fn lp_pair() -> Run {
    let mut client = LpClient::new(ClientConfig::tcp());
    let mut srv = LpServer::new(
        LpServerConfig::new()
            .with_account_quota(Some(10))
            .with_rate_limit(Some(RateLimit::per_second(5_000, 100)))
            .with_command_rate_limit(100, Some(RateLimit::per_second(100, 5)))
            .with_tcp_heartbeat_interval(Some(Duration::from_secs(5))),
    );
    let mut now = Instant::from_secs(1);
    let (mut c2s, mut s2c) = ([0u8; 1024], [0u8; 1024]);
    client
        .connect(now, Credentials::new("one-time-token"))
        .expect("idle");
    client.poll_event().expect("ConnectTransport");
    client.handle_connected(now).expect("dialing");
    srv.handle_connected(now, 1, Transport::Tcp, Source::UNKNOWN)
        .expect("room");
    let t = client
        .poll_transmit(now, &mut c2s)
        .expect("fits")
        .expect("login");
    lp_server_read(&mut srv, now, &c2s[..t.len]).expect("auth");
    let session = SessionId::from_random(
        *b"\x3f\x2c\x7a\x9e\x5b\x1d\x4e\x8f\x9a\x6c\x0d\x4b\x2e\x7f\x1a\x35",
    );
    let grant = Grant::new(session, i64::MAX).with_account(AccountId(42));
    srv.accept_auth(now, 1, grant).expect("pending");
    while let Some(t) = srv.poll_transmit(now, &mut s2c).expect("fits") {
        let _ = client.handle_input(now, (), &s2c[..t.len]).expect("taken");
    }
    let mut authenticated = false;
    while let Some(e) = client.poll_event() {
        authenticated |= matches!(e, ClientEvent::Connected { .. });
    }
    assert!(authenticated);
    while srv.poll_event().is_some() {}
    let body = [0x5Au8; 96];

    let region = Region::new(GLOBAL);
    let (mut to_client, mut to_server) = (0u64, 0u64);
    let (mut answered, mut limited, mut rtts) = (0u64, 0u64, 0u64);
    let mut step = 0u64;
    while to_client < PACKETS || to_server < PACKETS {
        step += 1;
        now += Duration::from_millis(1);
        if step.is_multiple_of(8) {
            now = client.poll_timeout().expect("heartbeat timer").max(now);
            client.handle_timeout(now);
            srv.handle_timeout(now);
        } else {
            let (_, t) = client
                .send_request(now, 100, Duration::ZERO, &body, &mut c2s)
                .expect("ready");
            let r = srv.handle_input(now, 1, &c2s[..t.len]).expect("taken");
            to_server += 1;
            if let Some(LpServerApp::Request {
                request_id, cmd, ..
            }) = r.app().copied()
            {
                answered += 1;
                let t = srv
                    .respond(now, 1, cmd, request_id, Status::Success, &body, &mut s2c)
                    .expect("open");
                let r = client.handle_input(now, (), &s2c[..t.len]).expect("taken");
                assert!(matches!(
                    r.app(),
                    Some(LpApp::Response {
                        status: Status::Success,
                        ..
                    })
                ));
            } else {
                // over the rate limit: the machine's own answer, status 3 / Error{301606}
                limited += 1;
                let t = srv
                    .poll_transmit(now, &mut s2c)
                    .expect("fits")
                    .expect("refusal");
                let r = client.handle_input(now, (), &s2c[..t.len]).expect("taken");
                let Some(LpApp::Response { status, error, .. }) = r.app() else {
                    panic!("not a response");
                };
                assert_eq!(*status, Status::BadRequest);
                assert_eq!(error.map(|e| e.code), Some(301_606));
            }
            let t = srv.push(now, 1, 101, &body, &mut s2c).expect("open");
            let r = client.handle_input(now, (), &s2c[..t.len]).expect("taken");
            assert!(matches!(r.app(), Some(LpApp::Push { .. })));
            to_client += 2;
        }
        while let Some(t) = client.poll_transmit(now, &mut c2s).expect("fits") {
            let r = srv.handle_input(now, 1, &c2s[..t.len]).expect("taken");
            assert_eq!(r.bytes_consumed(), t.len);
            to_server += 1;
        }
        while let Some(t) = srv.poll_transmit(now, &mut s2c).expect("fits") {
            let r = client.handle_input(now, (), &s2c[..t.len]).expect("taken");
            assert_eq!(r.bytes_consumed(), t.len);
            to_client += 1;
        }
        while let Some(e) = client.poll_event() {
            assert!(matches!(e, ClientEvent::HeartbeatRtt { .. }), "{e:?}");
        }
        while let Some(e) = srv.poll_event() {
            assert!(matches!(e, LpServerEvent::HeartbeatRtt { .. }), "{e:?}");
            rtts += 1;
        }
    }
    let stats = region.change();
    assert!(
        answered > 0 && limited > 0 && rtts > 0,
        "{answered} {limited} {rtts}"
    );
    assert_eq!(srv.stats().requests_rate_limited, limited);
    assert_eq!(srv.online(AccountId(42)), 1);
    assert!(client.stats().heartbeats_sent > 0);
    assert_eq!(
        client.stats().heartbeats_sent,
        client.stats().heartbeat_acks
    );
    Run {
        first: to_client,
        second: to_server,
        stats,
    }
}

/// A 16-slot game server fed through `handle_batch`: 8 peers admitted, then batches of 32
/// KEEP_ALIVEs from them (every 64th batch a second later, so the server's timers fire too);
/// `first` counts datagrams, `second` batches × 32
fn game_batch() -> Run {
    use game::wire::{Control, ControlPacket, Token};
    let mut srv: game::Server<u32, 16> =
        game::Server::with_capacities(game::ServerConfig::new(game::TokenSecret([5; 16])));
    let mut now = Instant::from_secs(1);
    let mut out = [0u8; 1400];
    let emit = |control, token| {
        let mut b = [0u8; 16];
        let n = ControlPacket {
            ack: 0,
            control,
            token: Some(token),
        }
        .emit(&mut b)
        .expect("fits");
        (b, n)
    };
    let mut keep_alives = [[0u8; 8]; 8];
    for (peer, ka) in (0u32..8).zip(&mut keep_alives) {
        let token = srv.token_for(peer);
        let (c, cn) = emit(Control::Connect, Token::UNKNOWN);
        let _ = srv.handle_input(now, peer, &c[..cn]).expect("room");
        let (a, an) = emit(Control::Accept, token);
        let _ = srv.handle_input(now, peer, &a[..an]).expect("room");
        let (k, kn) = emit(Control::KeepAlive, token);
        assert_eq!(kn, 8);
        ka.copy_from_slice(&k[..8]);
        while srv.poll_transmit(now, &mut out).expect("fits").is_some() {}
        while srv.poll_event().is_some() {}
        assert!(srv.is_online(peer));
    }
    let mut batch: [(u32, &[u8]); 32] = [(0, &[]); 32];
    for (i, b) in batch.iter_mut().enumerate() {
        *b = (i as u32 * 5 % 8, &keep_alives[i * 5 % 8]);
    }
    let before = srv.stats().keep_alives_received;
    let region = Region::new(GLOBAL);
    let (mut datagrams, mut batches) = (0u64, 0u64);
    while datagrams < PACKETS {
        batches += 1;
        if batches.is_multiple_of(64) {
            now += Duration::from_secs(1);
            srv.handle_timeout(now);
        }
        let mut apps = 0u32;
        let done = srv.handle_batch(now, &batch, |_, _, r| {
            apps += u32::from(r.app().is_some());
        });
        assert_eq!((done, apps), (batch.len(), 0));
        datagrams += done as u64;
        while srv.poll_transmit(now, &mut out).expect("fits").is_some() {}
        if let Some(e) = srv.poll_event() {
            panic!("unexpected server event {e:?}");
        }
    }
    let stats = region.change();
    assert_eq!(srv.stats().keep_alives_received - before, datagrams);
    assert_eq!(srv.peer_count(), 8);
    Run {
        first: datagrams,
        second: batches * 32,
        stats,
    }
}

fn main() -> std::process::ExitCode {
    let mut args = libtest_mimic::Arguments::from_args();
    // on this thread: nothing else may allocate while a region is measured
    args.test_threads = Some(1);
    let trial = libtest_mimic::Trial::test("a_million_packets_allocate_nothing", || {
        a_million_packets_allocate_nothing();
        Ok(())
    });
    libtest_mimic::run(&args, vec![trial]).exit_code()
}

fn a_million_packets_allocate_nothing() {
    // the allocator really counts: this Vec is seen
    let region = Region::new(GLOBAL);
    let v = core::hint::black_box(vec![1u8; 64]);
    drop(v);
    assert!(
        allocations(&region.change()) >= 1,
        "counting allocator not installed"
    );

    let game = game_pair();
    let chunks = game_chunk_pair();
    let lp = lp_pair();
    let batch = game_batch();
    for (name, run, a, b) in [
        (
            "game server batched input",
            &batch,
            "server",
            "server (batches × 32)",
        ),
        ("game", &game, "client", "server"),
        ("game chunk layer", &chunks, "client", "server"),
        ("longport", &lp, "client", "server"),
    ] {
        eprintln!(
            "{name}: {} packets into the {a}, {} into the {b}; allocations {}, reallocations {}, deallocations {}, bytes allocated {}",
            run.first,
            run.second,
            run.stats.allocations,
            run.stats.reallocations,
            run.stats.deallocations,
            run.stats.bytes_allocated
        );
        let want = if name == "game chunk layer" {
            CHUNK_PACKETS
        } else {
            PACKETS
        };
        assert!(run.first >= want && run.second >= want);
    }
    for (name, run) in [
        ("game server batched input", &batch),
        ("game", &game),
        ("game chunk layer", &chunks),
        ("longport", &lp),
    ] {
        assert_eq!(allocations(&run.stats), 0, "{name} machines allocated");
        assert_eq!(run.stats.deallocations, 0, "{name} machines freed memory");
    }
}
