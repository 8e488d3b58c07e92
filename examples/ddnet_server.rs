//! A Teeworlds 0.6 / DDNet server a real DDNet client can join: tether's `Reliable` game server and
//! `game::serve` over a std UDP socket
//!
//! ```text
//! cargo run --example ddnet_server -- --listen 127.0.0.1:PORT [--map PATH] [--name NAME]
//!     [--map-name NAME] [--motd TEXT] [--chat TEXT] [--kick-after SECONDS REASON]
//!     [--shutdown-reason TEXT] [--reference-timers]
//! ```
//! Prints `listening on ADDR`, then one line per peer event (`ADDR connected`, `ADDR info ok`,
//! `ADDR map download done`, `ADDR ready`, `ADDR start info name='...'`, `ADDR entered the game`,
//! `ADDR closed: ...`). Serves the map file PATH (default: Debian's `ctf1.map` from ddnet-data)
//! under its file name or `--map-name`, read piece by piece from the file (CRC32 and SHA-256
//! computed at start); sends `--chat TEXT` as a server chat line to every client that enters;
//! kicks every client with `Kicked (REASON)` SECONDS after it entered; answers server-info queries
//! (name, map, players); on Ctrl-C / SIGINT shuts down with a CLOSE `Server shutdown` (or
//! `--shutdown-reason`) to every peer and exits 0.
//!
//! The chunk layer runs the loss-tolerant timers of `VitalConfig::fast` (our resends after
//! 250 ms, a resend request as soon as a client's vital chunk is missing) unless
//! `--reference-timers` asks for DDNet 16.4's (1 s resend of the oldest chunk).
//!
//! In the game every client gets an empty snapshot every second tick (25 a second, ticks of
//! 20 ms), enough for a DDNet client to stay in the game; there is no world.

#[path = "common/udp_wait.rs"]
mod udp_wait;

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tether_net::game::connless::{ClientInfo, InfoContent};
use tether_net::game::join::Crc32;
use tether_net::game::msg::game_id;
use tether_net::game::packer::{MsgHeader, Packer, Str};
use tether_net::game::serve::{empty_snapshot, MapReadError, MapSource, Offer, Serve, ServeEvent};
use tether_net::game::sha256::Sha256;
use tether_net::game::vital::VitalConfig;
use tether_net::game::{
    ChunkConfig, CloseCause, Reliable, Server, ServerApp, ServerConfig, ServerEvent, TokenSecret,
};
use tether_net::time::Epoch;
use tether_net::{drain, DrainError, Instant};

/// 32 KiB resend buffer per peer (the map window: 16 pieces of 906 bytes), 4 KiB reorder buffer
type Layer = Reliable<32768, 64, 4096, 16>;
/// Up to 16 peers
type GameServer = Server<SocketAddr, 16, 16, Layer>;

const USAGE: &str =
    "usage: ddnet_server --listen ADDR [--map PATH] [--name NAME] [--map-name NAME] \
                     [--motd TEXT] [--chat TEXT] [--kick-after SECONDS REASON] \
                     [--shutdown-reason TEXT] [--reference-timers]";
/// Debian's ddnet-data: a 4.6 KB map every DDNet client has under this name
const DEFAULT_MAP: &str = "/usr/share/games/ddnet/data/maps/ctf1.map";
/// One game tick (DDNet: 50 a second)
const TICK: Duration = Duration::from_millis(20);

/// The map file, read piece by piece (never held in memory)
struct FileMap(File);

impl MapSource for FileMap {
    fn read_at(&mut self, offset: u32, out: &mut [u8]) -> Result<(), MapReadError> {
        self.0
            .seek(SeekFrom::Start(u64::from(offset)))
            .and_then(|_| self.0.read_exact(out))
            .map_err(|_| MapReadError)
    }
}

struct Options {
    listen: SocketAddr,
    map: String,
    name: String,
    map_name: Option<String>,
    motd: String,
    chat: Option<String>,
    kick: Option<(u64, String)>,
    shutdown_reason: String,
    reference_timers: bool,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        listen: SocketAddr::from(([127, 0, 0, 1], 8303)),
        map: DEFAULT_MAP.into(),
        name: "tether ddnet_server".into(),
        map_name: None,
        motd: String::new(),
        chat: None,
        kick: None,
        shutdown_reason: "Server shutdown".into(),
        reference_timers: false,
    };
    let mut args = std::env::args().skip(1);
    let mut listen = false;
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--listen" => {
                o.listen = value()?.parse().map_err(|e| format!("--listen: {e}"))?;
                listen = true;
            }
            "--map" => o.map = value()?,
            "--name" => o.name = value()?,
            "--map-name" => o.map_name = Some(value()?),
            "--motd" => o.motd = value()?,
            "--chat" => o.chat = Some(value()?),
            "--shutdown-reason" => o.shutdown_reason = value()?,
            "--reference-timers" => o.reference_timers = true,
            "--kick-after" => {
                let secs = value()?.parse().map_err(|e| format!("--kick-after: {e}"))?;
                let reason = args.next().ok_or("--kick-after needs SECONDS REASON")?;
                o.kick = Some((secs, reason));
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if !listen {
        return Err("--listen is required".into());
    }
    Ok(o)
}

/// One joining or joined client
struct Peer {
    serve: Serve,
    name: String,
    kick_at: Option<Instant>,
    /// The last map piece was requested (printed once)
    download_done: bool,
}

/// A server chat line (game message Sv_Chat: team 0, client id −1 = the server), vital
fn chat_message(text: &str, out: &mut [u8]) -> usize {
    let mut p = Packer::new(out);
    p.header(MsgHeader::game(game_id::SV_CHAT)).expect("room");
    p.int(0).expect("room");
    p.int(-1).expect("room");
    p.str(Str::new_limited(text, 256)).expect("room");
    p.written()
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// CRC32, SHA-256 and size of the map file, streamed
fn map_digest(path: &str) -> io::Result<(u32, [u8; 32], u32)> {
    let mut f = File::open(path)?;
    let (mut crc, mut sha, mut size) = (Crc32::new(), Sha256::new(), 0u64);
    let mut buf = [0u8; 8192];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        crc.update(&buf[..n]);
        sha.update(&buf[..n]);
        size += n as u64;
    }
    let size = u32::try_from(size)
        .ok()
        .filter(|&s| s <= i32::MAX as u32)
        .ok_or_else(|| io::Error::other("map larger than 2 GiB"))?;
    Ok((crc.finish(), sha.finish(), size))
}

fn random_secret() -> TokenSecret {
    let mut s = [0u8; 16];
    if File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut s))
        .is_err()
    {
        // no /dev/urandom: the clock's nanoseconds (a demo, not a production secret)
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        s.copy_from_slice(&t.to_le_bytes());
    }
    TokenSecret(s)
}

/// Ctrl-C / SIGINT sets `stop`
#[cfg(not(target_family = "wasm"))]
fn on_interrupt(stop: Arc<AtomicBool>) -> io::Result<()> {
    ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst)).map_err(io::Error::other)
}

/// No signals here: the server runs until it fails
#[cfg(target_family = "wasm")]
fn on_interrupt(_stop: Arc<AtomicBool>) -> io::Result<()> {
    Ok(())
}

fn run(opts: &Options) -> io::Result<()> {
    let (crc, sha, size) =
        map_digest(&opts.map).map_err(|e| io::Error::other(format!("map {}: {e}", opts.map)))?;
    let map_name = opts.map_name.clone().unwrap_or_else(|| {
        std::path::Path::new(&opts.map)
            .file_stem()
            .map_or("map".into(), |s| s.to_string_lossy().into_owned())
    });
    let mut map = FileMap(File::open(&opts.map)?);
    let offer = Offer::new(&map_name, crc, size)
        .with_sha256(sha)
        .with_motd(&opts.motd);
    let stop = Arc::new(AtomicBool::new(false));
    on_interrupt(stop.clone())?;
    let sock = UdpSocket::bind(opts.listen)?;
    println!("listening on {}", sock.local_addr()?);
    println!(
        "map {map_name}: {size} bytes, crc {crc:08x}, sha256 {}",
        sha.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    // loss-tolerant timers (resends after 250 ms, a resend request at once after a gap) or
    // DDNet 16.4's; every resend request answered, 100 s before a peer is too weak
    let vital = if opts.reference_timers {
        VitalConfig::reference()
    } else {
        VitalConfig::fast()
    };
    let chunks = ChunkConfig::new().with_vital(
        vital
            .with_answer_interval(Duration::ZERO)
            .with_unacked_timeout(Duration::from_secs(100)),
    );
    let mut server: Box<GameServer> = Box::new(Server::with_chunks(
        ServerConfig::new(random_secret()).with_timeout(Duration::from_secs(30)),
        chunks,
    ));
    let epoch = Epoch::new(std::time::Instant::now());
    let now = || epoch.instant(std::time::Instant::now());
    let start = now();
    let mut peers: HashMap<SocketAddr, Peer> = HashMap::new();
    let (mut buf, mut inp) = ([0u8; 1400], [0u8; 2048]);
    let mut next_tick = start + TICK;
    let mut tick: i32 = 0;
    let mut shutting_down = false;
    let mut complete = false;
    loop {
        // 2. every frame and every event
        let t = now();
        drain(
            &mut *server,
            t,
            &mut buf,
            |tr, bytes| match sock.send_to(bytes, tr.to) {
                Ok(_) => Ok(()),
                // a vanished peer's ICMP error must not stop the server
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(()),
                Err(e) => Err(e),
            },
            |_, ev| match ev {
                ServerEvent::Connected { peer, .. } => {
                    println!("{peer} connected");
                    peers.insert(
                        peer,
                        Peer {
                            serve: Serve::new(),
                            name: String::new(),
                            kick_at: None,
                            download_done: false,
                        },
                    );
                }
                ServerEvent::Rejoined { peer } => {
                    println!("{peer} rejoined: the join starts over");
                    if let Some(p) = peers.get_mut(&peer) {
                        p.serve = Serve::new();
                        p.download_done = false;
                    }
                }
                ServerEvent::Closed { peer, cause } => {
                    peers.remove(&peer);
                    let how = match cause {
                        CloseCause::Local => "by us".to_string(),
                        CloseCause::Peer => "by the client".to_string(),
                        CloseCause::Shutdown => "shutdown".to_string(),
                        CloseCause::Timeout => "timeout".to_string(),
                        other => format!("{other:?}"),
                    };
                    println!("{peer} closed: {how}");
                }
                ServerEvent::ShutdownComplete => {
                    println!("shutdown complete");
                    complete = true;
                }
                other => println!("{other:?}"),
            },
        )
        .map_err(|e| match e {
            DrainError::Send(e) => e,
            other => io::Error::other(other.to_string()),
        })?;
        if complete {
            return Ok(());
        }
        let t = now();
        // our commands: shutdown, kicks, snapshots
        if stop.load(Ordering::SeqCst) && !shutting_down {
            shutting_down = true;
            println!("shutting down: {}", opts.shutdown_reason);
            server
                .shutdown(t, &opts.shutdown_reason)
                .map_err(io::Error::other)?;
            continue;
        }
        if !shutting_down {
            let due: Vec<SocketAddr> = peers
                .iter()
                .filter(|(_, p)| p.kick_at.is_some_and(|k| t >= k))
                .map(|(a, _)| *a)
                .collect();
            if let Some(&peer) = due.first() {
                let reason = opts.kick.as_ref().map_or("", |k| k.1.as_str());
                println!("{peer} kicked: {reason}");
                if let Some(p) = peers.get_mut(&peer) {
                    p.kick_at = None;
                }
                server
                    .close(t, peer, &format!("Kicked ({reason})"))
                    .map_err(io::Error::other)?;
                continue;
            }
            if t >= next_tick {
                while next_tick <= t {
                    next_tick += TICK;
                    tick += 1;
                }
                if tick % 2 == 0 {
                    let mut snap = [0u8; 16];
                    let n = empty_snapshot(tick, &mut snap).map_err(io::Error::other)?;
                    for (&peer, p) in &peers {
                        if p.serve.in_game() {
                            let tr = server
                                .send_non_vital(t, peer, &snap[..n], &mut buf)
                                .map_err(io::Error::other)?;
                            let _ = sock.send_to(&buf[..tr.len], peer);
                        }
                    }
                }
                continue;
            }
        }
        // 3. sleep until a timer or a datagram
        let mut wake = server.poll_timeout();
        if !shutting_down {
            let kicks = peers.values().filter_map(|p| p.kick_at);
            wake = [wake, Some(next_tick), kicks.min()]
                .into_iter()
                .flatten()
                .min();
        }
        let wait = udp_wait::read_timeout(&epoch, wake, Duration::from_micros(200));
        sock.set_read_timeout(Some(wait))?;
        // 1. one input
        let (n, from) = match sock.recv_from(&mut inp) {
            Ok(r) => r,
            Err(e) if udp_wait::is_idle(&e) => {
                server.handle_timeout(now());
                continue;
            }
            Err(e) => return Err(e),
        };
        let t = now();
        let r = loop {
            match server.handle_input(t, from, &inp[..n]) {
                Ok(r) => break r,
                Err(tether_net::game::Error::QueueFull) => {
                    // drain, then feed the same datagram again
                    drain(
                        &mut *server,
                        t,
                        &mut buf,
                        |tr, bytes| sock.send_to(bytes, tr.to).map(drop),
                        |_, ev| println!("{ev:?}"),
                    )
                    .map_err(|e| io::Error::other(e.to_string()))?;
                }
                Err(e) => return Err(io::Error::other(e)),
            }
        };
        match r.into_app() {
            Some(ServerApp::ChunksReady) => {
                let mut chats: Vec<SocketAddr> = Vec::new();
                while let Some((peer, chunk)) = server.poll_chunk() {
                    let Some(p) = peers.get_mut(&peer) else {
                        continue;
                    };
                    match p.serve.handle_chunk(&offer, chunk) {
                        Ok(ServeEvent::Info { .. }) => println!("{peer} info ok"),
                        Ok(ServeEvent::Refused(why)) => println!(
                            "{peer} refused ({why:?}): {}",
                            p.serve.refusal_reason().unwrap_or("")
                        ),
                        Ok(ServeEvent::MapRequest { piece, .. }) => {
                            if !p.download_done && piece as u32 + 1 >= offer.pieces() {
                                p.download_done = true;
                                println!("{peer} map download done ({} pieces)", offer.pieces());
                            }
                        }
                        Ok(ServeEvent::Ready { first: true }) => println!("{peer} ready"),
                        Ok(ServeEvent::StartInfo { name, .. }) => {
                            p.name = name.to_text_trimmed::<32>().to_string();
                            println!("{peer} start info name='{}'", p.name);
                        }
                        Ok(ServeEvent::Entered) => {
                            println!("{peer} entered the game");
                            p.kick_at =
                                opts.kick.as_ref().map(|(s, _)| t + Duration::from_secs(*s));
                            chats.push(peer);
                        }
                        Ok(_) => {}
                        Err(e) => println!("{peer} unreadable chunk: {e}"),
                    }
                }
                if let Some(text) = &opts.chat {
                    let mut m = [0u8; 300];
                    let len = chat_message(text, &mut m);
                    for peer in chats {
                        server
                            .send_vital(t, peer, &m[..len], true)
                            .map_err(io::Error::other)?;
                        println!("{peer} chat: {text}");
                    }
                }
            }
            Some(ServerApp::InfoRequest(_)) => {
                let names: Vec<String> = peers
                    .values()
                    .filter(|p| p.serve.in_game())
                    .map(|p| p.name.clone())
                    .collect();
                let clients: Vec<ClientInfo<'_>> = names
                    .iter()
                    .map(|n| ClientInfo {
                        name: Str::new(n),
                        clan: Str::EMPTY,
                        country: -1,
                        score: 0,
                        is_player: 1,
                    })
                    .collect();
                let content = InfoContent {
                    version: Str::new("0.6.4, tether"),
                    name: Str::new(&opts.name),
                    map: Str::new(&map_name),
                    map_crc: crc,
                    map_size: size as i32,
                    game_type: Str::new("tether"),
                    flags: 0,
                    num_players: clients.len() as i32,
                    max_players: 16,
                    num_clients: clients.len() as i32,
                    max_clients: 16,
                    clients: &clients,
                };
                if let Some(tr) = server
                    .answer_info(t, &content, &mut buf)
                    .map_err(io::Error::other)?
                {
                    let _ = sock.send_to(&buf[..tr.len], tr.to);
                }
            }
            Some(ServerApp::Close { reason }) => println!("{from} left: '{reason}'"),
            _ => {}
        }
        // what became due (also what waited for the acks this input carried)
        for (&peer, p) in peers.iter_mut() {
            if p.serve.wants_flush() {
                if let Err(e) = p.serve.flush(t, &mut *server, peer, &offer, &mut map) {
                    println!("{peer} join: {e}");
                }
            }
        }
    }
}
