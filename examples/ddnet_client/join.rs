//! Join a real Teeworlds 0.6 / DDNet server with tether's `Reliable` game client over a blocking
//! std `UdpSocket`: the crate's run loop around `Client::poll_chunk` and `game::join::Join`
//!
//! The `--join` mode of this example; `tests/interop_ddnet.rs` drives the same code (it
//! includes this file): token handshake, INFO, MAP_CHANGE, the whole map through vital chunks (CRC32
//! checked), READY, start info, ENTERGAME, snapshots (acked by INPUT ten times a second) for the
//! configured time, then CLOSE.
#![allow(dead_code)]

#[path = "../common/udp_wait.rs"]
mod udp_wait;

use std::io;
use std::net::UdpSocket;
use std::time::Duration;

use tether_net::game::join::{Join, JoinEvent};
use tether_net::game::msg::{Input, InputInts};
use tether_net::game::packer::Str;
use tether_net::game::{
    ChunkConfig, Client, ClientApp, ClientConfig, ClientEvent, CloseCause, Reliable,
};
use tether_net::time::Epoch;
use tether_net::{drain, DrainError, Instant};

/// The chunk layer of the joining client: 8 KiB resend buffer, 32 KiB reorder buffer (DDNet 16.4
/// keeps 16 map pieces of 906 bytes in flight)
pub type JoinLayer = Reliable<8192, 64, 32768, 64>;
/// The joining client
pub type JoinClient = Client<4, JoinLayer>;

/// What to do
pub struct Options {
    /// Stay in the game this long, then close
    pub stay: Duration,
    /// Player name in the start info
    pub name: String,
    /// Give up when not in the game this long after the first CONNECT
    pub limit: Duration,
    /// Print progress lines (`out`)
    pub verbose: bool,
    /// Feed this datagram to the client right after its first CONNECT went out, before anything
    /// from the server (a forged CONNECT_ACCEPT, in a test)
    pub inject_after_connect: Option<Vec<u8>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            stay: Duration::from_secs(5),
            name: "tether".into(),
            limit: Duration::from_secs(120),
            verbose: true,
            inject_after_connect: None,
        }
    }
}

/// What happened
#[derive(Debug, Default)]
pub struct Report {
    /// Map name, size, CRC32 from MAP_CHANGE
    pub map: Option<(String, u32, u32)>,
    /// The downloaded map's CRC32 and size matched
    pub map_ok: bool,
    /// The map's bytes
    pub map_bytes: Vec<u8>,
    /// Time from the first CONNECT to ENTERGAME
    pub entered_after: Option<Duration>,
    /// Snapshots received in the game
    pub snapshots: u64,
    /// Vital chunks this client re-sent
    pub resends: u64,
    /// How the connection ended
    pub closed: Option<CloseCause>,
    /// The server's CLOSE reason, if it closed
    pub close_reason: Option<String>,
    /// The client's token at the end
    pub token: Option<[u8; 4]>,
    /// The client's counters at the end
    pub stats: Option<tether_net::game::ClientStats>,
}

impl Report {
    /// Entered the game and closed it ourselves
    pub fn success(&self) -> bool {
        self.entered_after.is_some() && self.map_ok && self.closed == Some(CloseCause::Local)
    }
}

/// The client configuration the join uses: loss-tolerant chunk timers, a connect timeout long
/// enough for a lossy link, DDNet's 1 s keep-alive
pub fn join_client() -> JoinClient {
    Client::with_chunks(
        ClientConfig::new()
            .with_keep_alive(Duration::from_secs(1))
            .with_connect_timeout(Duration::from_secs(30)),
        ChunkConfig::fast(),
    )
}

/// Join through `sock` (connected to the server), printing progress through `out`
pub fn run_join(sock: &UdpSocket, opts: &Options, mut out: impl FnMut(&str)) -> io::Result<Report> {
    let epoch = Epoch::new(std::time::Instant::now());
    let now = || epoch.instant(std::time::Instant::now());
    let mut client = join_client();
    let mut join = Join::new();
    let mut report = Report::default();
    let (mut buf, mut inp) = ([0u8; 1400], [0u8; 2048]);
    let start = now();
    let mut entered_at: Option<Instant> = None;
    let mut close_at: Option<Instant> = None;
    let mut next_input: Option<Instant> = None;
    let mut next_line: Option<Instant> = None;
    let (mut snaps_line, mut resends_line) = (0u64, 0u64);
    let mut done = false;
    let mut injected = opts.inject_after_connect.is_none();

    client.connect(now()).expect("a fresh client");
    while !done {
        // 2. hand out every frame and event
        let t = now();
        let mut start_join = false;
        drain(
            &mut client,
            t,
            &mut buf,
            |_, bytes| sock.send(bytes).map(drop),
            |_, ev| match ev {
                ClientEvent::Connected { .. } => start_join = true,
                ClientEvent::Closed { cause } => {
                    report.closed = Some(cause);
                    done = true;
                }
                _ => {}
            },
        )
        .map_err(|e| match e {
            DrainError::Send(e) => e,
            other => io::Error::other(other.to_string()),
        })?;
        if !injected {
            injected = true;
            if let Some(forged) = &opts.inject_after_connect {
                out("injecting a forged datagram before the server's answer");
                let _ = client.handle_input(now(), (), forged);
                continue;
            }
        }
        if start_join {
            if opts.verbose {
                out(&format!("[{t}] connected, token {:02x?}", client.token()));
            }
            join.start(now(), &mut client, "")
                .map_err(|e| io::Error::other(e.to_string()))?;
            continue;
        }
        if done {
            break;
        }
        let t = now();
        if entered_at.is_none() && t.saturating_duration_since(start) > opts.limit {
            out("not in the game within the limit: closing");
            client.close(t, "bye").map_err(io::Error::other)?;
            continue;
        }
        // our own timers: INPUT, the per-second line, the close
        if let Some(at) = close_at {
            if t >= at {
                close_at = None;
                client.close(t, "bye").map_err(io::Error::other)?;
                continue;
            }
        }
        if let Some(at) = next_input {
            if t >= at {
                next_input = Some(at + Duration::from_millis(100));
                let tick = join.last_snapshot_tick().unwrap_or(0);
                let ints = [0i32; 10];
                let msg = Input {
                    ack_tick: tick,
                    intended_tick: tick + 2,
                    input: InputInts::from_values(&ints),
                };
                let mut m = [0u8; 64];
                let n = msg.emit(&mut m).map_err(io::Error::other)?;
                let tr = client
                    .send_non_vital(t, &m[..n], &mut buf)
                    .map_err(io::Error::other)?;
                sock.send(&buf[..tr.len])?;
                continue;
            }
        }
        if let Some(at) = next_line {
            if t >= at {
                next_line = Some(at + Duration::from_secs(1));
                let resends = client.chunk_stats().resent;
                if opts.verbose {
                    out(&format!(
                        "[{t}] snapshots {} (total {}), resends {} (total {})",
                        report.snapshots - snaps_line,
                        report.snapshots,
                        resends - resends_line,
                        resends
                    ));
                }
                snaps_line = report.snapshots;
                resends_line = resends;
                continue;
            }
        }
        // 3. sleep until the next deadline or a datagram
        let wake = [client.poll_timeout(), close_at, next_input, next_line]
            .into_iter()
            .flatten()
            .min();
        let wait = udp_wait::read_timeout(&epoch, wake, Duration::from_micros(100));
        sock.set_read_timeout(Some(wait))?;
        // 1. one input: a datagram or the due timers
        match sock.recv(&mut inp) {
            Ok(n) => {
                let t = now();
                let r = client
                    .handle_input(t, (), &inp[..n])
                    .map_err(io::Error::other)?;
                match r.into_app() {
                    Some(ClientApp::ChunksReady) => {}
                    Some(ClientApp::Close { reason }) => {
                        report.close_reason = Some(reason.to_string());
                        continue;
                    }
                    _ => continue,
                }
                let mut start_info = false;
                while let Some(chunk) = client.poll_chunk() {
                    match join.handle_chunk(chunk.data) {
                        Ok(JoinEvent::MapChange { name, crc, size }) => {
                            let name = name.to_text::<128>().to_string();
                            if opts.verbose {
                                out(&format!(
                                    "[{t}] map change: {name}, {size} bytes, crc {crc:08x}"
                                ));
                            }
                            report.map = Some((name, size, crc));
                            report.map_bytes = Vec::with_capacity(size as usize);
                        }
                        Ok(JoinEvent::MapData {
                            offset, data, done, ..
                        }) => {
                            debug_assert_eq!(offset as usize, report.map_bytes.len());
                            report.map_bytes.extend_from_slice(data);
                            if done {
                                report.map_ok = true;
                                if let Some((name, size, crc)) = &report.map {
                                    out(&format!("map {name}: {size} bytes, crc {crc:08x} ok"));
                                }
                            }
                        }
                        Ok(JoinEvent::ConReady) => start_info = true,
                        Ok(JoinEvent::EnteredGame) => {
                            entered_at = Some(t);
                            report.entered_after = Some(t.saturating_duration_since(start));
                            out(&format!(
                                "entered game ({:.2} s after the first CONNECT)",
                                t.saturating_duration_since(start).as_secs_f64()
                            ));
                            close_at = Some(t + opts.stay);
                            next_input = Some(t);
                            next_line = Some(t + Duration::from_secs(1));
                        }
                        Ok(JoinEvent::Snapshot { .. }) => report.snapshots += 1,
                        Ok(_) => {}
                        Err(tether_net::game::join::JoinError::Message(_)) => {}
                        Err(e) => {
                            out(&format!("join failed: {e}"));
                            client.close(t, "bye").map_err(io::Error::other)?;
                            break;
                        }
                    }
                }
                if start_info {
                    let mut m = [0u8; 128];
                    let n = tether_net::testing::start_info(Str::new_limited(&opts.name, 15))
                        .emit(&mut m)
                        .map_err(io::Error::other)?;
                    client
                        .send_vital(t, &m[..n], true)
                        .map_err(io::Error::other)?;
                }
                if let Err(e) = join.flush(t, &mut client) {
                    out(&format!("join: {e}"));
                }
            }
            Err(e) if udp_wait::is_idle(&e) => client.handle_timeout(now()),
            Err(e) => return Err(e),
        }
    }
    report.resends = client.chunk_stats().resent;
    report.token = client.token().map(|t| t.0);
    report.stats = Some(client.stats());
    let reason = match report.closed {
        Some(CloseCause::Local) => "bye (by us)".to_string(),
        Some(CloseCause::Peer) => report
            .close_reason
            .clone()
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "(server gave no reason)".into()),
        Some(CloseCause::Timeout) => "timeout (nothing received)".into(),
        Some(CloseCause::ConnectTimeout) => "connect timeout".into(),
        Some(CloseCause::TooWeak(w)) => w.to_string(),
        Some(other) => format!("{other:?}"),
        None => "not closed".into(),
    };
    out(&format!("closed: {reason}"));
    Ok(report)
}
