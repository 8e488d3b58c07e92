//! The join helper (`game::join::Join`) driving a `Reliable` client against a `Reliable` server
//! whose application serves a map the way DDNet 16.4 does (tests/support/join_server.rs): INFO,
//! MAP_CHANGE, the whole map in 896-byte pieces with 16 in flight, CRC checked, READY, start
//! info, ENTERGAME, snapshots — on a perfect link and through 30 % loss each way

#[path = "support/join_pair.rs"]
mod join_pair;
#[path = "support/join_server.rs"]
mod join_server;

use std::cell::RefCell;
use std::rc::Rc;

use join_pair::{JPair, Seen};
use join_server::{map_bytes, MapServer};
use tether_net::game::join::{Crc32, Join, JoinError, JoinEvent, JoinState};
use tether_net::game::packer::Str;
use tether_net::game::{ChunkConfig, ServerApp, TokenSecret};
use tether_net::testing::LinkConfig;
use tether_net::Duration;

const SECRET: TokenSecret = TokenSecret([0x51; 16]);
const ADDR: u32 = 11;

struct Run {
    p: JPair,
    seen: Rc<RefCell<Seen>>,
    server_app: Rc<RefCell<MapServer>>,
}

fn setup(link: LinkConfig, seed: u64, map_len: usize, fast: bool) -> Run {
    let chunks = if fast {
        ChunkConfig::fast()
    } else {
        ChunkConfig::new()
    };
    let mut p = join_pair::pair(SECRET, ADDR, chunks, link, seed);
    let (join, seen) = join_pair::play_join(&mut p);
    let server_app = Rc::new(RefCell::new(MapServer::new(
        "Tutorial",
        map_bytes(map_len, seed),
    )));
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
            app.handle(peer, &data, &mut |d, flush| {
                s.send_vital(now, peer, d, flush)
            });
        }
    });
    // INFO as soon as the client is online (as the DDNet client does after its ACCEPT)
    join_pair::go_online(&mut p);
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
    let app = run.server_app.clone();
    join_pair::join_and_play(&mut run.p, &run.seen, budget, |tick| {
        app.borrow().snapshots(tick)
    })
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
    // the map's only piece, "abc", under the map CRC field `crc`
    let piece = |crc| tether_net::game::msg::MapData {
        last: 1,
        crc,
        chunk: 0,
        data: b"abc",
    };
    // a piece with another map's CRC is ignored, as DDNet does
    let n = piece(1).emit(&mut buf).unwrap();
    assert_eq!(join.handle_chunk(&buf[..n]), Ok(JoinEvent::Ignored));
    // the right CRC field, the wrong bytes: the file check fails
    let n = piece(0x1234_5678).emit(&mut buf).unwrap();
    let err = join.handle_chunk(&buf[..n]).unwrap_err();
    // CRC32 of "abc" (IEEE): 352441c2
    assert_eq!(
        err,
        JoinError::MapMismatch {
            expected_crc: 0x1234_5678,
            crc: 0x3524_41c2,
            expected_size: 3,
            size: 3
        }
    );
    assert_eq!(
        err.to_string(),
        "map mismatch: crc 352441c2 (expected 12345678), 3 bytes (expected 3)"
    );
    // garbage is no message
    assert!(matches!(join.handle_chunk(&[]), Err(JoinError::Message(_))));
}

#[test]
fn crc32_matches_the_ieee_check_values_in_one_call_or_piece_by_piece() {
    // known answers of CRC-32/ISO-HDLC (zlib's crc32, what DDNet checks maps with)
    let all: Vec<u8> = (0..=255).collect();
    let ff = [0xFFu8; 1000];
    let vectors: [(&[u8], u32); 7] = [
        (b"", 0),
        (b"a", 0xe8b7_be43),
        (b"abc", 0x3524_41c2),
        (b"123456789", 0xcbf4_3926),
        (b"The quick brown fox jumps over the lazy dog", 0x414f_a339),
        (&all, 0x2905_8c73),
        (&ff, 0xe053_3230),
    ];
    for (data, want) in vectors {
        let mut c = Crc32::new();
        c.update(data);
        assert_eq!(c.finish(), want, "{} bytes", data.len());
        // the same in pieces of every size (a map arrives in pieces)
        for step in [1, 7, 64] {
            let mut c = Crc32::new();
            for piece in data.chunks(step) {
                c.update(piece);
            }
            assert_eq!(c.finish(), want, "{} bytes in pieces of {step}", data.len());
        }
    }
}

#[test]
fn out_of_order_and_empty_map_pieces_are_ignored() {
    let mut join = Join::new();
    let mut buf = [0u8; 1024];
    let change = tether_net::game::msg::MapChange {
        name: Str::new("m"),
        crc: 0x4b8e_39ef,
        size: 6,
    };
    let n = change.emit(&mut buf).unwrap();
    assert!(matches!(
        join.handle_chunk(&buf[..n]),
        Ok(JoinEvent::MapChange { size: 6, .. })
    ));
    let piece = |chunk, data: &'static [u8]| tether_net::game::msg::MapData {
        last: 0,
        crc: 0x4b8e_39ef,
        chunk,
        data,
    };
    // piece 1 before piece 0, and an empty piece 0: neither is taken
    for p in [piece(1, b"def"), piece(0, b"")] {
        let n = p.emit(&mut buf).unwrap();
        assert_eq!(
            join.handle_chunk(&buf[..n]),
            Ok(JoinEvent::Ignored),
            "{p:?}"
        );
    }
    let n = piece(0, b"abc").emit(&mut buf).unwrap();
    assert!(matches!(
        join.handle_chunk(&buf[..n]),
        Ok(JoinEvent::MapData {
            offset: 0,
            received: 3,
            done: false,
            ..
        })
    ));
    // piece 0 again is a repeat: ignored
    let n = piece(0, b"abc").emit(&mut buf).unwrap();
    assert_eq!(join.handle_chunk(&buf[..n]), Ok(JoinEvent::Ignored));
    let n = piece(1, b"def").emit(&mut buf).unwrap();
    assert!(matches!(
        join.handle_chunk(&buf[..n]),
        Ok(JoinEvent::MapData {
            offset: 3,
            received: 6,
            done: true,
            ..
        })
    ));
}

/// A `SendVital` that records what it is given
#[derive(Default)]
struct Sent(Vec<Vec<u8>>);

impl tether_net::game::join::SendVital for Sent {
    fn send_vital(
        &mut self,
        _now: tether_net::Instant,
        data: &[u8],
        flush: bool,
    ) -> Result<u16, tether_net::game::Error> {
        assert!(flush);
        self.0.push(data.to_vec());
        Ok(self.0.len() as u16)
    }
}

/// The messages `sent` holds, by kind, in order
fn sent_messages(sent: &Sent) -> Vec<String> {
    use tether_net::game::msg::Message;
    sent.0
        .iter()
        .map(|d| match Message::parse(d).unwrap() {
            Message::RequestMapData(r) => format!("request {}", r.chunk),
            Message::Ready(_) => "ready".into(),
            Message::EnterGame(_) => "enter".into(),
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn a_join_reports_the_map_its_progress_and_the_latest_snapshot_tick() {
    use tether_net::game::msg::{MapData, SnapEmpty};
    let now = tether_net::Instant::ZERO;
    let mut join = Join::new();
    let mut buf = [0u8; 256];
    assert_eq!(
        (join.map(), join.progress(), join.last_snapshot_tick()),
        (None, None, None)
    );
    assert!(!join.wants_flush());
    // "abcdef" in two pieces, the second without the `last` flag: the size says it is done
    let change = tether_net::game::msg::MapChange {
        name: Str::new("m"),
        crc: 0x4b8e_39ef,
        size: 6,
    };
    let n = change.emit(&mut buf).unwrap();
    join.handle_chunk(&buf[..n]).unwrap();
    assert_eq!(join.map(), Some((0x4b8e_39ef, 6)));
    assert_eq!(join.progress(), Some((0, 6)));
    assert!(join.wants_flush());
    let mut sent = Sent::default();
    join.flush(now, &mut sent).unwrap();
    assert!(!join.wants_flush());
    for (chunk, data) in [(0, &b"abc"[..]), (1, &b"def"[..])] {
        let n = MapData {
            last: 0,
            crc: 0x4b8e_39ef,
            chunk,
            data,
        }
        .emit(&mut buf)
        .unwrap();
        join.handle_chunk(&buf[..n]).unwrap();
        if chunk == 0 {
            assert_eq!(join.progress(), Some((3, 6)));
            join.flush(now, &mut sent).unwrap();
        }
    }
    assert_eq!(join.progress(), None, "done: no download left");
    assert_eq!(join.map(), Some((0x4b8e_39ef, 6)));
    assert_eq!(join.state(), JoinState::Ready);
    assert!(join.wants_flush());
    join.flush(now, &mut sent).unwrap();
    assert_eq!(sent_messages(&sent), ["request 0", "request 1", "ready"]);
    // the latest snapshot tick only moves forward
    for (tick, latest) in [(10, 10), (8, 10), (10, 10), (11, 11), (-5, 11)] {
        let n = SnapEmpty { tick, delta: 1 }.emit(&mut buf).unwrap();
        assert_eq!(
            join.handle_chunk(&buf[..n]),
            Ok(JoinEvent::Snapshot { tick })
        );
        assert_eq!(join.last_snapshot_tick(), Some(latest), "after {tick}");
    }
}

#[test]
fn skipping_the_download_sends_ready_and_no_piece_request() {
    let now = tether_net::Instant::ZERO;
    let mut join = Join::new();
    let mut buf = [0u8; 256];
    let change = tether_net::game::msg::MapChange {
        name: Str::new("m"),
        crc: 7,
        size: 100_000,
    };
    let n = change.emit(&mut buf).unwrap();
    join.handle_chunk(&buf[..n]).unwrap();
    join.skip_download();
    assert_eq!(join.state(), JoinState::Ready);
    assert_eq!(join.progress(), None);
    assert_eq!(join.map(), Some((7, 100_000)));
    let mut sent = Sent::default();
    join.flush(now, &mut sent).unwrap();
    assert_eq!(sent_messages(&sent), ["ready"]);
    assert!(!join.wants_flush());
}

#[test]
fn a_ready_to_enter_before_the_start_info_does_not_enter_the_game() {
    use tether_net::game::msg::{emit_message, game_id};
    use tether_net::game::packer::MsgHeader;
    let mut buf = [0u8; 64];
    let n = emit_message(MsgHeader::game(game_id::SV_READY_TO_ENTER), &[], &mut buf).unwrap();
    let ready_to_enter = buf[..n].to_vec();
    let mut join = Join::new();
    // before anything, and while the map downloads: handed on as a message, nothing changes
    assert!(matches!(
        join.handle_chunk(&ready_to_enter),
        Ok(JoinEvent::Message(_))
    ));
    assert_eq!(join.state(), JoinState::Idle);
    let change = tether_net::game::msg::MapChange {
        name: Str::new("m"),
        crc: 0x4b8e_39ef,
        size: 6,
    };
    let n = change.emit(&mut buf).unwrap();
    join.handle_chunk(&buf[..n]).unwrap();
    let state = join.state();
    let mut sent = Sent::default();
    join.flush(tether_net::Instant::ZERO, &mut sent).unwrap();
    assert!(matches!(
        join.handle_chunk(&ready_to_enter),
        Ok(JoinEvent::Message(_))
    ));
    assert_eq!(join.state(), state);
    assert!(!join.wants_flush(), "no ENTERGAME to send");
    assert_eq!(sent_messages(&sent), ["request 0"]);
}
