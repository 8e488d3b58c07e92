//! Both sides of the join from the crate: `game::join::Join` on a `Reliable` client against
//! `game::serve::Serve` on a `Reliable` server, in the simulator — INFO, the map announcement
//! (with SHA-256), the whole map from a `MapSource` through DDNet 16.4's window, READY, start
//! info, ENTERGAME, empty snapshots — on a perfect link and through 30 % loss each way; a wrong
//! version is closed with DDNet's wording

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use tether_net::game::join::{Crc32, Join, JoinEvent, JoinState};
use tether_net::game::msg::{Info, StartInfo};
use tether_net::game::packer::Str;
use tether_net::game::serve::{empty_snapshot, Offer, Serve, ServeEvent};
use tether_net::game::sha256::Sha256;
use tether_net::game::{
    ChunkConfig, Client, ClientApp, ClientConfig, ClientEvent, CloseCause, Reliable, Server,
    ServerApp, ServerConfig, TokenSecret,
};
use tether_net::testing::{LinkConfig, Pair};
use tether_net::{Duration, FrameKind, Instant};

const SECRET: TokenSecret = TokenSecret([0x5e; 16]);
const ADDR: u32 = 21;

type CLayer = Reliable<4096, 32, 16384, 64>;
type SLayer = Reliable<32768, 64, 2048, 16>;
type JClient = Client<4, CLayer>;
type JServer = Server<u32, 2, 16, SLayer>;

/// A deterministic, hard-to-compress "map"
fn map_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

#[derive(Default)]
struct Seen {
    map: Vec<u8>,
    entered: Option<Instant>,
    snapshots: u64,
    errors: Vec<String>,
}

struct Host {
    map: Vec<u8>,
    crc: u32,
    sha: [u8; 32],
    joins: HashMap<u32, Serve>,
    in_game: bool,
}

struct Run {
    p: Pair<Box<JClient>, Box<JServer>>,
    seen: Rc<RefCell<Seen>>,
    host: Rc<RefCell<Host>>,
}

fn setup(link: LinkConfig, seed: u64, map_len: usize, version: &'static str) -> Run {
    let client: Box<JClient> = Box::new(Client::with_chunks(
        ClientConfig::new()
            .with_keep_alive(Duration::from_secs(1))
            .with_connect_timeout(Duration::from_secs(60))
            .with_timeout(Duration::from_secs(30)),
        ChunkConfig::fast(),
    ));
    let server_chunks = ChunkConfig::new().with_vital(
        ChunkConfig::new()
            .vital()
            .with_answer_interval(Duration::ZERO)
            .with_unacked_timeout(Duration::from_secs(100)),
    );
    let server: Box<JServer> = Box::new(Server::with_chunks(
        ServerConfig::new(SECRET).with_timeout(Duration::from_secs(100)),
        server_chunks,
    ));
    let mut p = Pair::new(client, server, ADDR, link, seed);
    let map = map_bytes(map_len, seed);
    let mut c = Crc32::new();
    c.update(&map);
    let host = Rc::new(RefCell::new(Host {
        crc: c.finish(),
        sha: Sha256::digest(&map),
        map,
        joins: HashMap::new(),
        in_game: false,
    }));
    let seen: Rc<RefCell<Seen>> = Rc::default();
    let join = Rc::new(RefCell::new(Join::new()));
    let (j, sn) = (join.clone(), seen.clone());
    p.answer_client_app(move |c, now, app| {
        if !matches!(app, ClientApp::ChunksReady) {
            return;
        }
        let mut join = j.borrow_mut();
        let mut seen = sn.borrow_mut();
        let mut start_info = false;
        while let Some(chunk) = c.poll_chunk() {
            match join.handle_chunk(chunk.data) {
                Ok(JoinEvent::MapData { offset, data, .. }) => {
                    assert_eq!(offset as usize, seen.map.len());
                    seen.map.extend_from_slice(data);
                }
                Ok(JoinEvent::ConReady) => start_info = true,
                Ok(JoinEvent::EnteredGame) => seen.entered = Some(now),
                Ok(JoinEvent::Snapshot { .. }) => seen.snapshots += 1,
                Ok(_) => {}
                Err(e) => seen.errors.push(e.to_string()),
            }
        }
        if start_info {
            let mut buf = [0u8; 128];
            let n = StartInfo {
                name: Str::new("tether"),
                clan: Str::EMPTY,
                country: -1,
                skin: Str::new("default"),
                use_custom_color: 0,
                color_body: 0,
                color_feet: 0,
            }
            .emit(&mut buf)
            .unwrap();
            c.send_vital(now, &buf[..n], true).unwrap();
        }
        join.flush(now, &mut **c).unwrap();
    });
    let h = host.clone();
    p.answer_server_app(move |s, now, app| {
        if !matches!(app, ServerApp::ChunksReady) {
            return;
        }
        let mut host = h.borrow_mut();
        let Host {
            map,
            crc,
            sha,
            joins,
            in_game,
        } = &mut *host;
        let offer = Offer::new("served", *crc, map.len() as u32)
            .with_sha256(*sha)
            .with_motd("hello");
        while let Some((peer, chunk)) = s.poll_chunk() {
            let serve = joins.entry(peer).or_default();
            if let Ok(ServeEvent::Entered) = serve.handle_chunk(&offer, chunk) {
                *in_game = true;
            }
        }
        for (&peer, serve) in joins.iter_mut() {
            if serve.wants_flush() {
                serve
                    .flush(now, &mut **s, peer, &offer, &mut &map[..])
                    .unwrap();
            }
        }
    });
    let now = p.now();
    p.client_mut().connect(now).unwrap();
    p.run_until(
        |p| p.client().state() == tether_net::game::ClientState::Online,
        Duration::from_secs(60),
    )
    .expect("online");
    let now = p.now();
    if version == tether_net::game::msg::VERSION_0_6 {
        join.borrow_mut()
            .start(now, &mut **p.client_mut(), "")
            .unwrap();
        assert_eq!(join.borrow().state(), JoinState::Info);
    } else {
        let mut buf = [0u8; 128];
        let n = Info {
            version: Str::new(version),
            password: Str::EMPTY,
        }
        .emit(&mut buf)
        .unwrap();
        p.client_mut().send_vital(now, &buf[..n], true).unwrap();
    }
    p.fleet_mut().drain();
    Run { p, seen, host }
}

/// Until in the game, then 2 s of empty snapshots every 40 ms; the virtual join time
fn join_and_play(run: &mut Run, budget: Duration) -> Duration {
    let seen = run.seen.clone();
    run.p
        .run_until(
            |_| seen.borrow().entered.is_some() || !seen.borrow().errors.is_empty(),
            budget,
        )
        .unwrap_or_else(|e| panic!("not in the game: {e}; {} bytes", seen.borrow().map.len()));
    assert!(
        seen.borrow().errors.is_empty(),
        "{:?}",
        seen.borrow().errors
    );
    let entered = seen.borrow().entered.unwrap();
    let mut tick = 100;
    for _ in 0..50 {
        run.p.run_for(Duration::from_millis(40));
        if run.host.borrow().in_game {
            let now = run.p.now();
            let (mut snap, mut out) = ([0u8; 16], [0u8; 1400]);
            let n = empty_snapshot(tick, &mut snap).unwrap();
            let t = run
                .p
                .server_mut()
                .send_non_vital(now, ADDR, &snap[..n], &mut out)
                .unwrap();
            run.p.send_from_server(FrameKind::Datagram, &out[..t.len]);
        }
        tick += 2;
    }
    run.p.run_for(Duration::from_millis(100));
    entered.saturating_duration_since(Instant::ZERO)
}

fn check_map(run: &Run) {
    let seen = run.seen.borrow();
    let host = run.host.borrow();
    assert!(seen.map == host.map, "the map arrived intact");
}

#[test]
fn our_join_against_our_serve_on_a_perfect_link() {
    let mut run = setup(
        LinkConfig::perfect(),
        1,
        50 * 896 + 123,
        tether_net::game::msg::VERSION_0_6,
    );
    let t = join_and_play(&mut run, Duration::from_secs(30));
    check_map(&run);
    assert!(t < Duration::from_secs(2), "{t:?}");
    assert!(run.host.borrow().in_game);
    assert!(
        run.seen.borrow().snapshots >= 40,
        "{}",
        run.seen.borrow().snapshots
    );
}

#[test]
fn our_join_against_our_serve_through_30_percent_loss_each_way() {
    for seed in [11u64, 7] {
        let mut run = setup(
            LinkConfig::lossy(0.3),
            seed,
            300 * 896 + 5,
            tether_net::game::msg::VERSION_0_6,
        );
        let t = join_and_play(&mut run, Duration::from_secs(300));
        check_map(&run);
        println!("seed {seed}: entered after {t:?} (virtual)");
        assert!(t < Duration::from_secs(120), "seed {seed}: {t:?}");
        assert!(run.seen.borrow().snapshots > 0);
    }
}

#[test]
fn a_wrong_version_is_closed_with_ddnet_wording() {
    let mut run = setup(LinkConfig::perfect(), 3, 2000, "0.6 626fce9a778ab4d4");
    run.p
        .run_until(
            |p| {
                p.client_events()
                    .iter()
                    .any(|e| matches!(e, ClientEvent::Closed { .. }))
            },
            Duration::from_secs(10),
        )
        .expect("closed by the server");
    assert!(run.p.client_events().contains(&ClientEvent::Closed {
        cause: CloseCause::Peer
    }));
    let reason = run.p.client().peer_close_reason().unwrap().to_string();
    assert_eq!(
        reason,
        "Wrong version. Server is running '0.6 626fce9a778df4d4' and client '0.6 626fce9a778ab4d4'"
    );
    assert!(run.seen.borrow().map.is_empty());
}
