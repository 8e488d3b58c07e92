//! The client half of the join tests (`tests/game_join.rs`, `tests/game_serve.rs`): a `Reliable`
//! client and server in the simulator, the client application (`game::join::Join`, the start
//! info on CON_READY, what it saw) and the play after the join; each test brings its own server
//! application
#![allow(dead_code)]

use std::cell::RefCell;
use std::rc::Rc;

use tether_net::game::join::{Join, JoinError, JoinEvent};
use tether_net::game::packer::Str;
use tether_net::game::{
    ChunkConfig, Client, ClientApp, ClientConfig, ClientState, Reliable, Server, ServerConfig,
    TokenSecret,
};
use tether_net::testing::{start_info, LinkConfig, Pair};
use tether_net::{Duration, FrameKind, Instant};

pub type CLayer = Reliable<4096, 32, 16384, 64>;
pub type SLayer = Reliable<32768, 64, 2048, 16>;
pub type JClient = Client<4, CLayer>;
pub type JServer = Server<u32, 2, 16, SLayer>;
pub type JPair = Pair<Box<JClient>, Box<JServer>>;

/// What the client application saw
#[derive(Default)]
pub struct Seen {
    pub map_name: String,
    pub map: Vec<u8>,
    pub done: Option<Instant>,
    pub entered: Option<Instant>,
    pub snapshots: u64,
    pub errors: Vec<JoinError>,
    /// The reason of the server's CLOSE, whole, as `ClientApp::Close` handed it out
    pub close_reason: Option<String>,
}

/// The client (`chunks`; keep-alive 1 s, connect timeout 60 s, timeout 30 s) at `addr` and a
/// server that copies DDNet 16.4 (reference timers, every resend request answered, 100 s)
pub fn pair(
    secret: TokenSecret,
    addr: u32,
    chunks: ChunkConfig,
    link: LinkConfig,
    seed: u64,
) -> JPair {
    let client: Box<JClient> = Box::new(Client::with_chunks(
        ClientConfig::new()
            .with_keep_alive(Duration::from_secs(1))
            .with_connect_timeout(Duration::from_secs(60))
            .with_timeout(Duration::from_secs(30)),
        chunks,
    ));
    let server_chunks = ChunkConfig::new().with_vital(
        ChunkConfig::new()
            .vital()
            .with_answer_interval(Duration::ZERO)
            .with_unacked_timeout(Duration::from_secs(100)),
    );
    let server: Box<JServer> = Box::new(Server::with_chunks(
        ServerConfig::new(secret).with_timeout(Duration::from_secs(100)),
        server_chunks,
    ));
    Pair::new(client, server, addr, link, seed)
}

/// The client application: every chunk to the join, the start info ("tether") on CON_READY,
/// the join's messages flushed; the join (to start) and what the application saw
pub fn play_join(p: &mut JPair) -> (Rc<RefCell<Join>>, Rc<RefCell<Seen>>) {
    let seen: Rc<RefCell<Seen>> = Rc::default();
    let join = Rc::new(RefCell::new(Join::new()));
    let (j, sn) = (join.clone(), seen.clone());
    p.answer_client_app(move |c, now, app| {
        if let ClientApp::Close { reason } = app {
            sn.borrow_mut().close_reason = Some(reason.to_string());
        }
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
            let n = start_info(Str::new("tether")).emit(&mut buf).unwrap();
            c.send_vital(now, &buf[..n], true).unwrap();
        }
        join.flush(now, &mut **c).unwrap();
    });
    (join, seen)
}

/// Connect and run until the client is online (within 60 s)
pub fn go_online(p: &mut JPair) {
    let now = p.now();
    p.client_mut().connect(now).unwrap();
    p.run_until(
        |p| p.client().state() == ClientState::Online,
        Duration::from_secs(60),
    )
    .expect("online");
}

/// Run until the client entered the game (within `budget`), then 2 s of the server's snapshots
/// every 40 ms (`snapshots(tick)`: (peer, chunk data) to send non-vital); returns the time from
/// the first CONNECT to ENTERGAME
pub fn join_and_play(
    p: &mut JPair,
    seen: &Rc<RefCell<Seen>>,
    budget: Duration,
    mut snapshots: impl FnMut(i32) -> Vec<(u32, Vec<u8>)>,
) -> Duration {
    let s = seen.clone();
    p.run_until(
        |_| s.borrow().entered.is_some() || !s.borrow().errors.is_empty(),
        budget,
    )
    .unwrap_or_else(|e| {
        panic!(
            "not in the game: {e}; {} bytes of the map, client {:?}",
            seen.borrow().map.len(),
            p.client().chunk_stats()
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
        p.run_for(Duration::from_millis(40));
        for (peer, data) in snapshots(tick) {
            let now = p.now();
            let mut out = [0u8; 1400];
            let t = p
                .server_mut()
                .send_non_vital(now, peer, &data, &mut out)
                .unwrap();
            p.send_from_server(FrameKind::Datagram, &out[..t.len]);
        }
        tick += 2;
    }
    p.run_for(Duration::from_millis(100));
    entered.saturating_duration_since(Instant::ZERO)
}
