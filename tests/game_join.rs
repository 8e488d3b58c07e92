//! The join helper (`game::join::Join`) driving a `Reliable` client against a `Reliable` server
//! whose application serves a map the way DDNet 16.4 does (tests/support/join_server.rs): INFO,
//! MAP_CHANGE, the whole map in 896-byte pieces with 16 in flight, CRC checked, READY, start
//! info, ENTERGAME, snapshots — on a perfect link and through 30 % loss each way

#[path = "support/join_server.rs"]
mod join_server;

use std::cell::RefCell;
use std::rc::Rc;

use join_server::{map_bytes, MapServer};
use tether_net::game::join::{Crc32, Join, JoinError, JoinEvent, JoinState};
use tether_net::game::msg::StartInfo;
use tether_net::game::packer::Str;
use tether_net::game::{
    ChunkConfig, Client, ClientApp, ClientConfig, Reliable, Server, ServerApp, ServerConfig,
    TokenSecret,
};
use tether_net::testing::{LinkConfig, Pair};
use tether_net::{Duration, FrameKind, Instant};

const SECRET: TokenSecret = TokenSecret([0x51; 16]);
const ADDR: u32 = 11;

type CLayer = Reliable<4096, 32, 16384, 64>;
type SLayer = Reliable<32768, 64, 2048, 16>;
type JClient = Client<4, CLayer>;
type JServer = Server<u32, 2, 16, SLayer>;

/// What the client application saw
#[derive(Default)]
struct Seen {
    map_name: String,
    map: Vec<u8>,
    done: Option<Instant>,
    entered: Option<Instant>,
    snapshots: u64,
    errors: Vec<JoinError>,
}

struct Run {
    p: Pair<Box<JClient>, Box<JServer>>,
    seen: Rc<RefCell<Seen>>,
    server_app: Rc<RefCell<MapServer>>,
}

fn setup(link: LinkConfig, seed: u64, map_len: usize, fast: bool) -> Run {
    let chunks = if fast {
        ChunkConfig::fast()
    } else {
        ChunkConfig::new()
    };
    let client: Box<JClient> = Box::new(Client::with_chunks(
        ClientConfig::new()
            .with_keep_alive(Duration::from_secs(1))
            .with_connect_timeout(Duration::from_secs(60))
            .with_timeout(Duration::from_secs(30)),
        chunks,
    ));
    // the server copies DDNet 16.4: reference timers, every resend request answered, 100 s
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
    let seen: Rc<RefCell<Seen>> = Rc::default();
    let join = Rc::new(RefCell::new(Join::new()));
    let server_app = Rc::new(RefCell::new(MapServer::new(
        "Tutorial",
        map_bytes(map_len, seed),
    )));
    let (j, sn) = (join.clone(), seen.clone());
    p.answer_client_app(move |c, now, app| {
        if !matches!(app, ClientApp::ChunksReady) {
            return;
        }
        let mut join = j.borrow_mut();
        let mut seen = sn.borrow_mut();
        let mut send_start_info = false;
        while let Some(chunk) = c.poll_chunk() {
            match join.handle_chunk(chunk.data) {
                Ok(JoinEvent::MapChange { name, size, .. }) => {
                    seen.map_name = name.to_text::<64>().to_string();
                    seen.map = Vec::with_capacity(size as usize);
                }
                Ok(JoinEvent::MapData {
                    offset, data, done, ..
                }) => {
                    assert_eq!(offset as usize, seen.map.len());
                    seen.map.extend_from_slice(data);
                    if done {
                        seen.done = Some(now);
                    }
                }
                Ok(JoinEvent::ConReady) => send_start_info = true,
                Ok(JoinEvent::EnteredGame) => seen.entered = Some(now),
                Ok(JoinEvent::Snapshot { .. }) => seen.snapshots += 1,
                Ok(_) => {}
                Err(e) => seen.errors.push(e),
            }
        }
        if send_start_info {
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
    let sa = server_app.clone();
    p.answer_server_app(move |s, now, app| {
        if !matches!(app, ServerApp::ChunksReady) {
            return;
        }
        let mut chunks = Vec::new();
        while let Some((peer, chunk)) = s.poll_chunk() {
            chunks.push((peer, chunk.data.to_vec()));
        }
        let mut app = sa.borrow_mut();
        for (peer, data) in chunks {
            app.handle(s, now, peer, &data);
        }
    });
    let now = p.now();
    p.client_mut().connect(now).unwrap();
    // INFO as soon as the client is online (as the DDNet client does after its ACCEPT)
    p.run_until(
        |p| p.client().state() == tether_net::game::ClientState::Online,
        Duration::from_secs(60),
    )
    .expect("online");
    let now = p.now();
    join.borrow_mut()
        .start(now, &mut **p.client_mut(), "")
        .unwrap();
    p.fleet_mut().drain();
    assert_eq!(join.borrow().state(), JoinState::Info);
    Run {
        p,
        seen,
        server_app,
    }
}

/// Run until the client entered the game, then 2 s of snapshots every 40 ms; returns the time
/// from the first CONNECT to ENTERGAME
fn join_and_play(run: &mut Run, budget: Duration) -> Duration {
    let seen = run.seen.clone();
    run.p
        .run_until(
            |_| seen.borrow().entered.is_some() || !seen.borrow().errors.is_empty(),
            budget,
        )
        .unwrap_or_else(|e| {
            panic!(
                "not in the game: {e}; map {} of {} bytes, client {:?}",
                seen.borrow().map.len(),
                run.server_app.borrow().map.len(),
                run.p.client().chunk_stats()
            )
        });
    assert!(
        seen.borrow().errors.is_empty(),
        "{:?}",
        seen.borrow().errors
    );
    let entered = seen.borrow().entered.unwrap();
    let mut tick = 100;
    for _ in 0..50 {
        run.p.run_for(Duration::from_millis(40));
        let snaps = run.server_app.borrow().snapshots(tick);
        for (peer, data) in snaps {
            let now = run.p.now();
            let mut out = [0u8; 1400];
            let t = run
                .p
                .server_mut()
                .send_non_vital(now, peer, &data, &mut out)
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
    let app = run.server_app.borrow();
    assert_eq!(seen.map_name, "Tutorial");
    assert_eq!(seen.map.len(), app.map.len());
    assert!(seen.map == app.map, "the map arrived intact");
    let mut c = Crc32::new();
    c.update(&seen.map);
    assert_eq!(c.finish(), app.crc);
}

#[test]
fn join_on_a_perfect_link() {
    // a map of 50 pieces and a few bytes
    let mut run = setup(LinkConfig::perfect(), 1, 50 * 896 + 123, true);
    let t = join_and_play(&mut run, Duration::from_secs(30));
    check_map(&run);
    assert!(t < Duration::from_secs(2), "{t:?}");
    assert!(
        run.seen.borrow().snapshots >= 40,
        "{}",
        run.seen.borrow().snapshots
    );
    assert!(run.server_app.borrow().peers[&ADDR].in_game);
}

#[test]
fn join_through_30_percent_loss_each_way() {
    // the Tutorial map's size: 1,082,711 bytes in 1,209 pieces
    for seed in [11u64, 7] {
        let mut run = setup(LinkConfig::lossy(0.3), seed, 1_082_711, true);
        let t = join_and_play(&mut run, Duration::from_secs(300));
        check_map(&run);
        println!(
            "seed {seed}: entered after {t:?} (virtual), client {:?}",
            run.p.client().chunk_stats()
        );
        assert!(t < Duration::from_secs(90), "seed {seed}: {t:?}");
        assert!(run.seen.borrow().snapshots > 0);
    }
}

#[test]
fn a_corrupt_piece_is_reported_as_a_map_mismatch() {
    let mut join = Join::new();
    let mut buf = [0u8; 1024];
    let change = tether_net::game::msg::MapChange {
        name: Str::new("m"),
        crc: 0x1234_5678,
        size: 3,
    };
    let n = change.emit(&mut buf).unwrap();
    assert!(matches!(
        join.handle_chunk(&buf[..n]),
        Ok(JoinEvent::MapChange { size: 3, .. })
    ));
    assert!(join.wants_flush());
    // a piece with another map's CRC is ignored, as DDNet does
    let other = tether_net::game::msg::MapData {
        last: 1,
        crc: 1,
        chunk: 0,
        data: b"abc",
    };
    let n = other.emit(&mut buf).unwrap();
    assert_eq!(join.handle_chunk(&buf[..n]), Ok(JoinEvent::Ignored));
    // the right CRC field, the wrong bytes: the file check fails
    let piece = tether_net::game::msg::MapData {
        last: 1,
        crc: 0x1234_5678,
        chunk: 0,
        data: b"abc",
    };
    let n = piece.emit(&mut buf).unwrap();
    let mut c = Crc32::new();
    c.update(b"abc");
    assert_eq!(
        join.handle_chunk(&buf[..n]),
        Err(JoinError::MapMismatch {
            expected_crc: 0x1234_5678,
            crc: c.finish(),
            expected_size: 3,
            size: 3
        })
    );
    // garbage is no message
    assert!(matches!(join.handle_chunk(&[]), Err(JoinError::Message(_))));
}
