//! Both sides of the join from the crate: `game::join::Join` on a `Reliable` client against
//! `game::serve::Serve` on a `Reliable` server, in the simulator — INFO, the map announcement
//! (with SHA-256), the whole map from a `MapSource` through DDNet 16.4's window, READY, start
//! info, ENTERGAME, empty snapshots — on a perfect link and through 30 % loss each way; a wrong
//! version is closed with DDNet's wording

#[path = "support/join_pair.rs"]
mod join_pair;
#[path = "support/join_server.rs"]
mod join_server;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use join_pair::{JPair, Seen};
use join_server::map_bytes;
use tether_net::game::join::{Crc32, JoinState};
use tether_net::game::msg::Info;
use tether_net::game::packer::Str;
use tether_net::game::serve::{empty_snapshot, Offer, Serve, ServeEvent};
use tether_net::game::sha256::Sha256;
use tether_net::game::{ChunkConfig, ClientEvent, CloseCause, ServerApp, TokenSecret};
use tether_net::testing::LinkConfig;
use tether_net::Duration;

const SECRET: TokenSecret = TokenSecret([0x5e; 16]);
const ADDR: u32 = 21;

struct Host {
    map: Vec<u8>,
    crc: u32,
    sha: [u8; 32],
    joins: HashMap<u32, Serve>,
    in_game: bool,
}

struct Run {
    p: JPair,
    seen: Rc<RefCell<Seen>>,
    host: Rc<RefCell<Host>>,
}

fn setup(link: LinkConfig, seed: u64, map_len: usize, version: &'static str) -> Run {
    let mut p = join_pair::pair(SECRET, ADDR, ChunkConfig::fast(), link, seed);
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
    let (join, seen) = join_pair::play_join(&mut p);
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
    join_pair::go_online(&mut p);
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
    let host = run.host.clone();
    join_pair::join_and_play(&mut run.p, &run.seen, budget, |tick| {
        if !host.borrow().in_game {
            return Vec::new();
        }
        let mut snap = [0u8; 16];
        let n = empty_snapshot(tick, &mut snap).unwrap();
        vec![(ADDR, snap[..n].to_vec())]
    })
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
    let wording =
        "Wrong version. Server is running '0.6 626fce9a778df4d4' and client '0.6 626fce9a778ab4d4'";
    // whole from `ClientApp::Close`; the client keeps its first KEPT_REASON_LEN bytes
    assert_eq!(run.seen.borrow().close_reason.as_deref(), Some(wording));
    let kept = run.p.client().peer_close_reason().unwrap().to_string();
    assert_eq!(kept, wording[..tether_net::game::KEPT_REASON_LEN]);
    assert!(run.seen.borrow().map.is_empty());
}
