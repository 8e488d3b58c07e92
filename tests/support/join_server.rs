//! A small map server in the test (the application of a `Reliable` game server): serves one map
//! the way DDNet 16.4 does (MAP_CHANGE after INFO; 16 pieces of 896 bytes in flight: pieces
//! 0..=14 plus one more per in-order request; CON_READY after READY; Sv_ReadyToEnter after the
//! start info; snapshots after ENTERGAME)
//!
//! Used by `tests/game_join.rs` (and its `map_bytes` by `tests/game_serve.rs`), included with
//! `#[path]`.
#![allow(dead_code)]

use std::collections::HashMap;

use tether_net::game::join::Crc32;
use tether_net::game::msg::{
    emit_message, game_id, ConReady, MapChange, MapData, Message, SnapSingle,
};
use tether_net::game::packer::{MsgHeader, MsgId, Str};
use tether_net::game::Error;

/// DDNet 16.4's map piece size
pub const PIECE: usize = 896;
/// DDNet 16.4's `sv_map_window`
pub const WINDOW: i32 = 15;

/// Where a client of the map server is
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Peer {
    /// Next piece the fast download sends when requested in order
    next: i32,
    pub ready: bool,
    pub start_info: bool,
    pub in_game: bool,
}

/// How the map server queues a vital message (`data`, `flush`) to the peer it answers: the
/// game server's `send_vital`
pub type SendVital<'a> = dyn FnMut(&[u8], bool) -> Result<u16, Error> + 'a;

/// The application side of a DDNet-like map server
pub struct MapServer {
    pub name: String,
    pub map: Vec<u8>,
    pub crc: u32,
    pub peers: HashMap<u32, Peer>,
    /// Pieces sent (first sends, by request)
    pub pieces_sent: u64,
}

impl MapServer {
    pub fn new(name: &str, map: Vec<u8>) -> Self {
        let mut c = Crc32::new();
        c.update(&map);
        MapServer {
            name: name.into(),
            crc: c.finish(),
            map,
            peers: HashMap::new(),
            pieces_sent: 0,
        }
    }

    fn pieces(&self) -> i32 {
        self.map.len().div_ceil(PIECE) as i32
    }

    fn send_piece(&mut self, send: &mut SendVital<'_>, k: i32) {
        if k < 0 || k >= self.pieces() {
            return;
        }
        let start = k as usize * PIECE;
        let end = (start + PIECE).min(self.map.len());
        let msg = MapData {
            last: i32::from(end == self.map.len()),
            crc: self.crc,
            chunk: k,
            data: &self.map[start..end],
        };
        let mut buf = [0u8; 1024];
        let n = msg.emit(&mut buf).unwrap();
        // a full resend buffer would be a bug of the test's sizing: fail loudly
        send(&buf[..n], true).expect("map piece queued");
        self.pieces_sent += 1;
    }

    /// Handle one chunk a client sent
    pub fn handle(&mut self, peer: u32, data: &[u8], send: &mut SendVital<'_>) {
        let Ok(msg) = Message::parse(data) else {
            return;
        };
        let mut buf = [0u8; 256];
        match msg {
            Message::Info(_) => {
                self.peers.insert(peer, Peer::default());
                let n = MapChange {
                    name: Str::new(&self.name),
                    crc: self.crc,
                    size: self.map.len() as i32,
                }
                .emit(&mut buf)
                .unwrap();
                send(&buf[..n], true).unwrap();
            }
            Message::RequestMapData(r) => {
                let Some(p) = self.peers.get(&peer).copied() else {
                    return;
                };
                if r.chunk != p.next {
                    self.send_piece(send, r.chunk);
                    return;
                }
                if r.chunk == 0 {
                    for k in 0..WINDOW {
                        self.send_piece(send, k);
                    }
                }
                self.send_piece(send, WINDOW + p.next);
                self.peers.get_mut(&peer).unwrap().next += 1;
            }
            Message::Ready(_) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.ready = true;
                }
                // Sv_Motd "" without flush, then CON_READY flushed: one packet
                let n = emit_message(MsgHeader::game(game_id::SV_MOTD), b"\0", &mut buf).unwrap();
                send(&buf[..n], false).unwrap();
                let n = ConReady {}.emit(&mut buf).unwrap();
                send(&buf[..n], true).unwrap();
            }
            Message::Game {
                id: MsgId::Ordinal(game_id::CL_START_INFO),
                ..
            } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.start_info = true;
                }
                let n = emit_message(
                    MsgHeader::game(game_id::SV_VOTE_CLEAR_OPTIONS),
                    &[],
                    &mut buf,
                )
                .unwrap();
                send(&buf[..n], false).unwrap();
                let n = emit_message(MsgHeader::game(game_id::SV_READY_TO_ENTER), &[], &mut buf)
                    .unwrap();
                send(&buf[..n], true).unwrap();
            }
            Message::EnterGame(_) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    if p.ready && p.start_info {
                        p.in_game = true;
                    }
                }
            }
            _ => {}
        }
    }

    /// A snapshot for `tick` to every player in game: (peer, chunk data)
    pub fn snapshots(&self, tick: i32) -> Vec<(u32, Vec<u8>)> {
        let mut buf = [0u8; 128];
        let n = SnapSingle {
            tick,
            delta: tick + 1,
            crc: 0,
            data: &[0u8; 24],
        }
        .emit(&mut buf)
        .unwrap();
        self.peers
            .iter()
            .filter(|(_, p)| p.in_game)
            .map(|(&peer, _)| (peer, buf[..n].to_vec()))
            .collect()
    }
}

/// A deterministic, hard-to-compress "map" of `len` bytes (like the zlib data inside a real map)
pub fn map_bytes(len: usize, seed: u64) -> Vec<u8> {
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
