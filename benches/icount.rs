//! Fixed-count drivers of the `machines` bench loops, for instruction counts and CPU time
//! (load-independent evidence on a shared machine; not a criterion bench)
//!
//! `icount SCENARIO ITERATIONS` sets up what `benches/machines.rs` sets up and runs the same
//! loop body ITERATIONS times: `ka8` / `ka1024` / `ka65536` (KEEP_ALIVE from a random one of N
//! peers, drained), `b8` / `b65536` / `bs8` / `bs65536` (`handle_batch` of 32, `u32` /
//! `SocketAddr` keys), `bh65536` / `bsh65536` (the batch harness alone), `tcp` / `ws` (LongPort
//! heartbeat round trip), `pdka` / `ptka` / `pdco` / `ptco` / `pdcl` / `ptcl` (`wire::parse`
//! of KEEP_ALIVE / CONNECT / CLOSE "bye" in Detect / Trailing mode). Per operation = the
//! difference between a run with ITERATIONS and one with 0, divided by ITERATIONS:
//!
//! ```sh
//! cargo bench --manifest-path benches/Cargo.toml --bench icount --no-run
//! valgrind --tool=cachegrind --cache-sim=yes benches/target/release/deps/icount-* ka8 200000
//! valgrind --tool=cachegrind --cache-sim=yes benches/target/release/deps/icount-* ka8 0
//! ```

use core::hint::black_box;
use tether_net::game::wire::{Control, ControlPacket, Token};
use tether_net::game::{Server, ServerConfig, ServerEvent, TokenSecret};
use tether_net::longport::{
    Client as DefaultClient, ClientConfig, ClientEvent, Credentials, Grant, Server as LpServer,
    ServerApp, ServerConfig as LpServerConfig, SessionId, Source, Transport,
};
use tether_net::testing::control_packet;
use tether_net::Instant;
type DefaultServer<P> = LpServer<P>;

fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}
fn peer_addr(i: u32) -> u32 {
    i.wrapping_mul(0x9E37_79B1) ^ 0x0A00_0000
}

fn game<const N: usize>(peers: u32, iters: u64) {
    let mut srv: Box<Server<u32, N>> = std::thread::Builder::new()
        .stack_size(1 << 30)
        .spawn(|| {
            Box::new(Server::with_capacities(ServerConfig::new(TokenSecret(
                [0x5A; 16],
            ))))
        })
        .unwrap()
        .join()
        .unwrap();
    let now = Instant::from_millis(1);
    let mut c = [0u8; 16];
    let clen = ControlPacket {
        ack: 0,
        control: Control::Connect,
        token: Some(Token::UNKNOWN),
    }
    .emit(&mut c)
    .unwrap();
    let mut out = [0u8; 1400];
    let mut tokens = Vec::new();
    let mut template = [0u8; 8];
    for i in 0..peers {
        let addr = peer_addr(i);
        let _ = srv.handle_input(now, addr, &c[..clen]).unwrap();
        let t = srv.poll_transmit(now, &mut out).unwrap().unwrap();
        let parsed =
            tether_net::game::wire::parse(&out[..t.len], tether_net::game::wire::TokenMode::Detect)
                .unwrap();
        let tether_net::game::wire::Packet::Control(ca) = parsed.packet else {
            panic!()
        };
        let token = ca.token.unwrap();
        let mut a = [0u8; 8];
        let alen = ControlPacket {
            ack: 0,
            control: Control::Accept,
            token: Some(token),
        }
        .emit(&mut a)
        .unwrap();
        let _ = srv.handle_input(now, addr, &a[..alen]).unwrap();
        match srv.poll_event() {
            Some(ServerEvent::Connected { .. }) => {}
            o => panic!("{o:?}"),
        }
        let ka = control_packet(Control::KeepAlive, Some(token));
        template[..4].copy_from_slice(&ka[..4]);
        tokens.push(token.0);
    }
    let now = Instant::from_millis(2);
    let mask = (peers as usize).next_power_of_two() - 1;
    let mut rng = 0x2545_F491_4F6C_DD1D_u64;
    for _ in 0..iters {
        let i = loop {
            let i = next(&mut rng) as usize & mask;
            if i < tokens.len() {
                break i;
            }
        };
        let mut ka = template;
        ka[4..8].copy_from_slice(&tokens[i]);
        let addr = peer_addr(i as u32);
        let r = srv.handle_input(now, addr, &ka).unwrap();
        black_box((r.bytes_consumed(), r.app().is_some()));
        while let Some(t) = srv.poll_transmit(now, &mut out).unwrap() {
            let _ = black_box(t);
        }
        while let Some(e) = srv.poll_event() {
            black_box(e);
        }
    }
    assert_eq!(srv.stats().dropped_wrong_token, 0);
    eprintln!("ka {}", srv.stats().keep_alives_received);
}

fn lp_server_read(
    srv: &mut DefaultServer<u32>,
    now: Instant,
    conn: u32,
    bytes: &[u8],
) -> Option<tether_net::longport::RequestId> {
    let mut rest = bytes;
    let mut auth = None;
    while !rest.is_empty() {
        let r = srv.handle_input(now, conn, rest).unwrap();
        if let Some(ServerApp::Auth { request_id, .. }) = r.app() {
            auth = Some(*request_id);
        }
        rest = &rest[r.bytes_consumed()..];
    }
    auth
}

fn lp(transport: Transport, iters: u64) {
    let mut client = DefaultClient::new(ClientConfig::new(transport));
    let mut srv: DefaultServer<u32> = DefaultServer::new(LpServerConfig::new());
    let now = Instant::from_secs(1);
    let (mut c2s, mut s2c) = ([0u8; 1024], [0u8; 1024]);
    client
        .connect(now, Credentials::new("one-time-token"))
        .unwrap();
    assert!(matches!(
        client.poll_event(),
        Some(ClientEvent::ConnectTransport { .. })
    ));
    client.handle_connected(now).unwrap();
    srv.handle_connected(now, 1, transport, Source::UNKNOWN)
        .unwrap();
    let t = client.poll_transmit(now, &mut c2s).unwrap().unwrap();
    let _auth = lp_server_read(&mut srv, now, 1, &c2s[..t.len]).unwrap();
    let grant = Grant::new(SessionId::from_random([0x3f; 16]), i64::MAX).with_limit_online(10, 1);
    srv.accept_auth(now, 1, grant).unwrap();
    while let Some(t) = srv.poll_transmit(now, &mut s2c).unwrap() {
        let _ = client.handle_input(now, (), &s2c[..t.len]).unwrap();
    }
    while srv.poll_event().is_some() {}
    while client.poll_event().is_some() {}
    let mut rtts = 0u64;
    for _ in 0..iters {
        let now = client.poll_timeout().unwrap();
        client.handle_timeout(now);
        let t = client.poll_transmit(now, &mut c2s).unwrap().unwrap();
        if transport == Transport::Tcp {
            let r = srv.handle_input(now, 1, &c2s[..t.len]).unwrap();
            black_box(r.bytes_consumed());
            let t = srv.poll_transmit(now, &mut s2c).unwrap().unwrap();
            let r = client.handle_input(now, (), &s2c[..t.len]).unwrap();
            black_box(r.bytes_consumed());
        } else {
            srv.handle_frame(now, 1, t.kind, &c2s[..t.len]);
            let t = srv.poll_transmit(now, &mut s2c).unwrap().unwrap();
            client.handle_frame(now, (), t.kind, &s2c[..t.len]);
        }
        while let Some(e) = client.poll_event() {
            rtts += u64::from(matches!(e, ClientEvent::HeartbeatRtt { .. }));
        }
        while let Some(e) = srv.poll_event() {
            black_box(e);
        }
    }
    assert_eq!(rtts, iters);
    eprintln!("rtts {rtts}");
}

trait BenchKey: Copy + Eq + core::hash::Hash + core::fmt::Debug + Send + 'static {
    fn key(i: u32) -> Self;
}
impl BenchKey for u32 {
    #[inline(always)]
    fn key(i: u32) -> Self {
        peer_addr(i)
    }
}
impl BenchKey for std::net::SocketAddr {
    #[inline(always)]
    fn key(i: u32) -> Self {
        let a = peer_addr(i);
        std::net::SocketAddr::from((a.to_be_bytes(), 8303 + (i & 0xFF) as u16))
    }
}

fn batch<K: BenchKey, const N: usize>(peers: u32, iters: u64, harness_only: bool) {
    let mut srv: Box<Server<K, N>> = std::thread::Builder::new()
        .stack_size(1 << 30)
        .spawn(|| {
            Box::new(Server::with_capacities(ServerConfig::new(TokenSecret(
                [0x5A; 16],
            ))))
        })
        .unwrap()
        .join()
        .unwrap();
    let now = Instant::from_millis(1);
    let mut tokens = Vec::new();
    let mut template = [0u8; 8];
    let mut out = [0u8; 1400];
    for i in 0..peers {
        let addr = K::key(i);
        let token = srv.token_for(addr);
        for control in [Control::Connect, Control::Accept] {
            let mut b = [0u8; 16];
            let n = ControlPacket {
                ack: 0,
                control,
                token: Some(if control == Control::Connect {
                    Token::UNKNOWN
                } else {
                    token
                }),
            }
            .emit(&mut b)
            .unwrap();
            let _ = srv.handle_input(now, addr, &b[..n]).unwrap();
        }
        while srv.poll_transmit(now, &mut out).unwrap().is_some() {}
        assert!(matches!(
            srv.poll_event(),
            Some(ServerEvent::Connected { .. })
        ));
        let ka = control_packet(Control::KeepAlive, Some(token));
        template[..4].copy_from_slice(&ka[..4]);
        tokens.push(token.0);
    }
    let now = Instant::from_millis(2);
    let mask = (peers as usize).next_power_of_two() - 1;
    let mut rng = 0x2545_F491_4F6C_DD1D_u64;
    const BATCH: usize = 32;
    for _ in 0..iters {
        let mut keys = [K::key(0); BATCH];
        let mut bytes = [[0u8; 8]; BATCH];
        for (k, d) in keys.iter_mut().zip(&mut bytes) {
            let i = loop {
                let i = next(&mut rng) as usize & mask;
                if i < tokens.len() {
                    break i;
                }
            };
            *k = K::key(i as u32);
            let mut ka = template;
            ka[4..8].copy_from_slice(&tokens[i]);
            *d = ka;
        }
        let mut b: [(K, &[u8]); BATCH] = [(keys[0], &[]); BATCH];
        for ((slot, k), d) in b.iter_mut().zip(&keys).zip(&bytes) {
            *slot = (*k, d);
        }
        if harness_only {
            black_box(&b);
            continue;
        }
        let mut apps = 0u32;
        let done = srv.handle_batch(now, &b, |_, _, r| {
            apps += u32::from(r.app().is_some());
        });
        black_box((done, apps));
        while let Some(t) = srv.poll_transmit(now, &mut out).unwrap() {
            let _ = black_box(t);
        }
        while let Some(e) = srv.poll_event() {
            black_box(e);
        }
    }
    assert_eq!(srv.stats().dropped_wrong_token, 0);
    eprintln!("ka {}", srv.stats().keep_alives_received);
}

fn parse_loop(mode: tether_net::game::wire::TokenMode, control: Control<'static>, iters: u64) {
    let token = if control == Control::Connect {
        Token::UNKNOWN
    } else {
        Token([1, 2, 3, 4])
    };
    let mut b = [0u8; 64];
    let n = ControlPacket {
        ack: 513,
        control,
        token: Some(token),
    }
    .emit(&mut b)
    .unwrap();
    let mut acc = 0u64;
    for _ in 0..iters {
        let r = tether_net::game::wire::parse(black_box(&b[..n]), black_box(mode));
        black_box(&r);
        acc += r.is_ok() as u64;
    }
    eprintln!("{acc}");
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let iters: u64 = a[2].parse().unwrap();
    match a[1].as_str() {
        "ka8" => game::<8>(8, iters),
        "ka1024" => game::<1024>(1024, iters),
        "ka65536" => game::<65536>(65536, iters),
        "b8" => batch::<u32, 8>(8, iters, false),
        "b65536" => batch::<u32, 65536>(65536, iters, false),
        "bs8" => batch::<std::net::SocketAddr, 8>(8, iters, false),
        "bs65536" => batch::<std::net::SocketAddr, 65536>(65536, iters, false),
        "bh65536" => batch::<u32, 65536>(65536, iters, true),
        "bsh65536" => batch::<std::net::SocketAddr, 65536>(65536, iters, true),
        "pdka" => parse_loop(
            tether_net::game::wire::TokenMode::Detect,
            Control::KeepAlive,
            iters,
        ),
        "ptka" => parse_loop(
            tether_net::game::wire::TokenMode::Trailing,
            Control::KeepAlive,
            iters,
        ),
        "pdco" => parse_loop(
            tether_net::game::wire::TokenMode::Detect,
            Control::Connect,
            iters,
        ),
        "ptco" => parse_loop(
            tether_net::game::wire::TokenMode::Trailing,
            Control::Connect,
            iters,
        ),
        "pdcl" => parse_loop(
            tether_net::game::wire::TokenMode::Detect,
            Control::Close(tether_net::game::wire::Reason::from_str("bye")),
            iters,
        ),
        "ptcl" => parse_loop(
            tether_net::game::wire::TokenMode::Trailing,
            Control::Close(tether_net::game::wire::Reason::from_str("bye")),
            iters,
        ),
        "tcp" => lp(Transport::Tcp, iters),
        "ws" => lp(Transport::WebSocket, iters),
        _ => panic!(),
    }
}
