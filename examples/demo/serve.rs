//! Serve section of the demo: the server side of a join (`game::serve`) against the client side
//! (`game::join`), both on `Reliable` machines over a perfect 15 ms link
//!
//! INFO → the map announcement (rcon-type, capabilities, map-details with the SHA-256,
//! MAP_CHANGE) → REQUEST_MAP_DATA 0 → MAP_DATA 0 (a 100-byte map: one piece, `last`) → READY →
//! Sv_Motd, CON_READY → start info → Sv_VoteClearOptions, Sv_ReadyToEnter → ENTERGAME → an empty
//! snapshot. Every datagram is one line with the chunks it carries.

use std::cell::RefCell;
use std::rc::Rc;

use tether_net::game::chunk::{decompress_packet, Chunks, SCRATCH_LEN};
use tether_net::game::join::{Crc32, Join, JoinEvent};
use tether_net::game::msg::{game_id, Message};
use tether_net::game::packer::{MsgId, Str};
use tether_net::game::serve::{empty_snapshot, Offer, Serve, ServeEvent};
use tether_net::game::sha256::Sha256;
use tether_net::game::wire::{self, Control, Packet, TokenMode};
use tether_net::game::{
    ChunkConfig, Client, ClientApp, ClientConfig, Reliable, Server, ServerApp, ServerConfig,
    TokenSecret,
};
use tether_net::testing::{LinkConfig, Pair, TraceEntry};
use tether_net::{Duration, FrameKind};

type JoinClient = Client<4, Reliable<4096, 16, 4096, 16>>;
type JoinServer = Server<u32, 4, 16, Reliable<16384, 32, 4096, 16>>;
const PEER: u32 = 5;

/// What one message is, in a few words
fn msg_name(data: &[u8]) -> String {
    match Message::parse(data) {
        Ok(Message::Info(_)) => "INFO".into(),
        Ok(Message::RconType(_)) => "rcon-type".into(),
        Ok(Message::Capabilities(_)) => "capabilities".into(),
        Ok(Message::MapDetails(d)) => format!(
            "map-details sha256 {:02x}{:02x}..",
            d.sha256[0], d.sha256[1]
        ),
        Ok(Message::MapChange(m)) => format!("MAP_CHANGE {} {} B", m.name.to_text::<32>(), m.size),
        Ok(Message::RequestMapData(r)) => format!("REQUEST_MAP_DATA {}", r.chunk),
        Ok(Message::MapData(d)) => {
            format!("MAP_DATA {} ({} B, last {})", d.chunk, d.data.len(), d.last)
        }
        Ok(Message::Ready(_)) => "READY".into(),
        Ok(Message::ConReady(_)) => "CON_READY".into(),
        Ok(Message::EnterGame(_)) => "ENTERGAME".into(),
        Ok(Message::SnapEmpty(s)) => format!("SNAPEMPTY tick {}", s.tick),
        Ok(Message::Game {
            id: MsgId::Ordinal(id),
            ..
        }) => match id {
            game_id::SV_MOTD => "Sv_Motd".into(),
            game_id::CL_START_INFO => "start info".into(),
            game_id::SV_VOTE_CLEAR_OPTIONS => "Sv_VoteClearOptions".into(),
            game_id::SV_READY_TO_ENTER => "Sv_ReadyToEnter".into(),
            other => format!("game message {other}"),
        },
        Ok(other) => format!("{:?}", other.header().id),
        Err(_) => "?".into(),
    }
}

/// The chunks of one datagram (or its control message)
fn datagram_name(bytes: &[u8]) -> String {
    let mut scratch = [0u8; SCRATCH_LEN];
    let Ok(plain) = decompress_packet(bytes, &mut scratch) else {
        return "undecodable".into();
    };
    match wire::parse(plain, TokenMode::Detect) {
        Ok(wire::Parsed {
            packet: Packet::Control(c),
            ..
        }) => match c.control {
            Control::Connect => "CONNECT".into(),
            Control::ConnectAccept => "CONNECT_ACCEPT".into(),
            Control::Accept => "ACCEPT".into(),
            Control::KeepAlive => "KEEP_ALIVE".into(),
            Control::Close(_) => "CLOSE".into(),
        },
        _ => match wire::parse(plain, TokenMode::Trailing) {
            Ok(wire::Parsed {
                packet: Packet::Chunks(c),
                ..
            }) => {
                let parts: Vec<String> = Chunks::new(c.payload, c.header.num_chunks)
                    .filter_map(Result::ok)
                    .map(|ch| msg_name(ch.data))
                    .collect();
                if parts.is_empty() {
                    format!("ack {}", c.header.ack)
                } else {
                    parts.join(", ")
                }
            }
            _ => "chunks".into(),
        },
    }
}

/// Run the serve timeline
pub fn run() {
    let map: Vec<u8> = (0..100u8).collect();
    let mut c = Crc32::new();
    c.update(&map);
    let (crc, sha) = (c.finish(), Sha256::digest(&map));
    let client: JoinClient = Client::with_chunks(ClientConfig::new(), ChunkConfig::new());
    let server: JoinServer = Server::with_chunks(
        ServerConfig::new(TokenSecret(*b"demo secret 0003")),
        ChunkConfig::new(),
    );
    let link = LinkConfig::perfect().with_latency(Duration::from_millis(15));
    let mut p = Pair::new(Box::new(client), Box::new(server), PEER, link, 1);
    let lines: Rc<RefCell<Vec<String>>> = Rc::default();
    let pending = lines.clone();
    p.set_observer(move |e: &TraceEntry<'_>| {
        crate::line(e, &datagram_name(e.bytes));
        for l in pending.borrow_mut().drain(..) {
            println!("{l}");
        }
    });
    let serve = Rc::new(RefCell::new(Serve::new()));
    let in_game = Rc::new(RefCell::new(false));
    let (sv, ig, ln) = (serve.clone(), in_game.clone(), lines.clone());
    p.answer_server_app(move |s, now, app| {
        if !matches!(app, ServerApp::ChunksReady) {
            return;
        }
        let offer = Offer::new("demo", crc, map.len() as u32).with_sha256(sha);
        let mut serve = sv.borrow_mut();
        while let Some((_, chunk)) = s.poll_chunk() {
            let what = match serve.handle_chunk(&offer, chunk) {
                Ok(ServeEvent::Info { .. }) => "INFO: version ok, map announced",
                Ok(ServeEvent::MapRequest { .. }) => "map piece queued from the MapSource",
                Ok(ServeEvent::Ready { .. }) => "READY: CON_READY due",
                Ok(ServeEvent::StartInfo { .. }) => "start info: ready-to-enter due",
                Ok(ServeEvent::Entered) => {
                    *ig.borrow_mut() = true;
                    "ENTERGAME: in the game, snapshots start"
                }
                _ => continue,
            };
            ln.borrow_mut().push(format!("   serve: {what}"));
        }
        serve
            .flush(now, &mut **s, PEER, &offer, &mut &map[..])
            .expect("room");
    });
    let join = Rc::new(RefCell::new(Join::new()));
    let (j, ln) = (join.clone(), lines.clone());
    p.answer_client_app(move |c, now, app| {
        if !matches!(app, ClientApp::ChunksReady) {
            return;
        }
        let mut join = j.borrow_mut();
        let mut start_info = false;
        while let Some(chunk) = c.poll_chunk() {
            match join.handle_chunk(chunk.data) {
                Ok(JoinEvent::MapData {
                    done: true, size, ..
                }) => ln
                    .borrow_mut()
                    .push(format!("   join:  map complete, {size} B, CRC32 checked")),
                Ok(JoinEvent::ConReady) => start_info = true,
                Ok(JoinEvent::EnteredGame) => {
                    ln.borrow_mut().push("   join:  ENTERGAME sent".into())
                }
                Ok(JoinEvent::Snapshot { tick }) => {
                    ln.borrow_mut()
                        .push(format!("   join:  snapshot tick {tick}"));
                }
                _ => {}
            }
        }
        if start_info {
            let mut buf = [0u8; 64];
            let n = tether_net::testing::start_info(Str::new("demo"))
                .emit(&mut buf)
                .expect("fits");
            c.send_vital(now, &buf[..n], true).expect("room");
        }
        join.flush(now, &mut **c).expect("room");
    });
    println!("-- a client connects and joins; the server's side is game::serve");
    let now = p.now();
    p.client_mut().connect(now).expect("fresh client");
    p.run_until(|p| p.server().is_online(PEER), Duration::from_secs(5))
        .expect("online");
    let now = p.now();
    join.borrow_mut()
        .start(now, &mut **p.client_mut(), "")
        .expect("online");
    p.fleet_mut().drain();
    let ig = in_game.clone();
    p.run_until(move |_| *ig.borrow(), Duration::from_secs(5))
        .expect("in the game");
    p.run_for(Duration::from_millis(20));
    println!("-- in the game: an empty snapshot (SNAPEMPTY against the empty snapshot), non-vital");
    let now = p.now();
    let (mut snap, mut out) = ([0u8; 16], [0u8; 1400]);
    let n = empty_snapshot(100, &mut snap).expect("fits");
    let t = p
        .server_mut()
        .send_non_vital(now, PEER, &snap[..n], &mut out)
        .expect("online");
    p.send_from_server(FrameKind::Datagram, &out[..t.len]);
    p.run_for(Duration::from_millis(50));
}
