//! Game profile: a client and a server exchanging datagrams in memory
//!
//! Token-mode handshake, one chunk packet, keep-alives over two seconds of counted virtual
//! time, and a client CLOSE whose reason the server reports.

use heapless::Vec;
use tether_net::game::{
    ChunkPacket, Client, ClientConfig, ClientEvent, ClientState, CloseCause, Flags, Server,
    ServerApp, ServerConfig, ServerEvent, TokenSecret,
};
use tether_net::{Duration, FrameKind, Instant};

use crate::clock::VClock;
use crate::runner::{Runner, Step, StepResult};
use crate::{ensure, ensure_eq, try_step};

/// The client's address as the server's caller knows it
const ADDR: u8 = 7;
/// Virtual time the keep-alive step covers
const KEEP_ALIVE_SPAN: Duration = Duration::from_secs(2);
/// The CLOSE reason the client sends
#[cfg(not(feature = "break-step"))]
const CLOSE_REASON: &str = "bye from the firmware";
/// With `break-step` the server is expected to report a reason the client never sent
#[cfg(feature = "break-step")]
const CLOSE_REASON: &str = "bye from the firmware (deliberately wrong expectation)";

struct World {
    clock: VClock,
    client: Client,
    server: Server<u8, 4>,
    buf: [u8; 1400],
    client_events: Vec<ClientEvent, 4>,
    server_events: Vec<ServerEvent<u8>, 4>,
    /// Chunk payloads the server received (copied out of the datagrams)
    server_chunks: Vec<Vec<u8, 32>, 4>,
    /// The CLOSE reason the server received (copied out of the datagram)
    server_close_reason: Option<Vec<u8, 127>>,
    datagrams_c2s: u32,
    datagrams_s2c: u32,
    /// Instant of admission (start of the keep-alive window)
    online_at: Instant,
}

impl World {
    fn new() -> Self {
        World {
            clock: VClock::new(Instant::from_secs(1)),
            client: Client::new(ClientConfig::default()),
            server: Server::with_capacities(ServerConfig::new(TokenSecret(*b"firmware-secret!"))),
            buf: [0; 1400],
            client_events: Vec::new(),
            server_events: Vec::new(),
            server_chunks: Vec::new(),
            server_close_reason: None,
            datagrams_c2s: 0,
            datagrams_s2c: 0,
            online_at: Instant::ZERO,
        }
    }

    /// Carry datagrams both ways until neither side has anything to send; collect events
    fn clear_logs(&mut self) {
        self.client_events.clear();
        self.server_events.clear();
        self.server_chunks.clear();
        self.server_close_reason = None;
    }

    /// Carry datagrams both ways until neither side has anything to send; collect events
    fn pump(&mut self) -> StepResult {
        let now = self.clock.now();
        loop {
            let mut moved = false;
            while let Some(t) = try_step!(crate::stack_call!(
                "client.poll_transmit",
                self.client.poll_transmit(now, &mut self.buf)
            )) {
                ensure_eq!(t.kind, FrameKind::Datagram);
                self.datagrams_c2s += 1;
                moved = true;
                let r = try_step!(crate::stack_call!(
                    "server.handle_input",
                    self.server.handle_input(now, ADDR, &self.buf[..t.len])
                ));
                ensure_eq!(r.bytes_consumed(), t.len);
                match r.into_app() {
                    Some(ServerApp::Chunks(chunk)) => {
                        record_chunk(&mut self.server_chunks, &chunk)?
                    }
                    Some(ServerApp::Close { reason }) => {
                        self.server_close_reason =
                            Some(try_step!(Vec::from_slice(reason.as_bytes())));
                    }
                    _ => {}
                }
            }
            while let Some(t) = try_step!(crate::stack_call!(
                "server.poll_transmit",
                self.server.poll_transmit(now, &mut self.buf)
            )) {
                ensure_eq!(t.to, ADDR);
                self.datagrams_s2c += 1;
                moved = true;
                let r = try_step!(crate::stack_call!(
                    "client.handle_input",
                    self.client.handle_input(now, (), &self.buf[..t.len])
                ));
                ensure!(r.app().is_none(), "the server sent no chunk packets");
            }
            while let Some(ev) = crate::stack_call!("client.poll_event", self.client.poll_event()) {
                ensure!(self.client_events.push(ev).is_ok(), "client event log full");
            }
            while let Some(ev) = crate::stack_call!("server.poll_event", self.server.poll_event()) {
                ensure!(self.server_events.push(ev).is_ok(), "server event log full");
            }
            if !moved {
                return Ok(());
            }
        }
    }
}

fn record_chunk(log: &mut Vec<Vec<u8, 32>, 4>, chunk: &ChunkPacket<'_>) -> StepResult {
    let payload = try_step!(Vec::from_slice(chunk.payload));
    ensure!(log.push(payload).is_ok(), "chunk log full");
    Ok(())
}

fn connect(w: &mut World) -> StepResult {
    ensure_eq!(w.client.state(), ClientState::Offline);
    try_step!(crate::stack_call!(
        "client.connect",
        w.client.connect(w.clock.now())
    ));
    ensure_eq!(w.client.state(), ClientState::Connecting);
    ensure!(
        crate::stack_call!("client.poll_timeout", w.client.poll_timeout()).is_some(),
        "a connecting client runs its resend timer"
    );
    Ok(())
}

fn handshake(w: &mut World) -> StepResult {
    w.pump()?;
    // CONNECT, ACCEPT from the client; CONNECT_ACCEPT from the server
    ensure_eq!((w.datagrams_c2s, w.datagrams_s2c), (2, 1));
    let token = w.server.token_for(ADDR);
    ensure!(!token.is_sentinel(), "minted token is never a sentinel");
    ensure_eq!(
        w.client_events.as_slice(),
        &[ClientEvent::Connected { token: Some(token) }]
    );
    ensure_eq!(
        w.server_events.as_slice(),
        &[ServerEvent::Connected {
            peer: ADDR,
            token: Some(token)
        }]
    );
    ensure_eq!(w.client.state(), ClientState::Online);
    ensure_eq!(w.client.token(), Some(token));
    ensure!(w.server.is_online(ADDR), "server holds the peer");
    ensure_eq!(w.server.peer_token(ADDR), Some(token));
    ensure_eq!(w.server.peer_count(), 1);
    w.online_at = w.clock.now();
    Ok(())
}

fn chunk_packet(w: &mut World) -> StepResult {
    let now = w.clock.now();
    let mut out = [0u8; 64];
    let t = try_step!(crate::stack_call!(
        "client.send_chunks",
        w.client
            .send_chunks(now, Flags::default(), 1, b"\x40\x02\x02hi", &mut out)
    ));
    // header (3) + payload (5) + token (4)
    ensure_eq!(t.len, 12);
    let r = try_step!(crate::stack_call!(
        "server.handle_input",
        w.server.handle_input(now, ADDR, &out[..t.len])
    ));
    let Some(chunk) = r.into_app().and_then(|a| a.chunks()) else {
        return Err(crate::runner::Fail::new(
            line!(),
            format_args!("no chunk packet delivered"),
        ));
    };
    ensure_eq!(chunk.payload, b"\x40\x02\x02hi");
    ensure_eq!(chunk.token, Some(w.server.token_for(ADDR)));
    ensure_eq!(chunk.header.num_chunks, 1);
    ensure_eq!(w.server.stats().chunk_packets_received, 1);
    w.pump()?;
    ensure!(w.server_chunks.is_empty(), "nothing else arrived");
    Ok(())
}

fn keep_alives(w: &mut World) -> StepResult {
    let end = w.online_at + KEEP_ALIVE_SPAN;
    let ticks_before = w.clock.ticks;
    loop {
        let (c, s) = (
            crate::stack_call!("client.poll_timeout", w.client.poll_timeout()),
            crate::stack_call!("server.poll_timeout", w.server.poll_timeout()),
        );
        let Some(next) = c.into_iter().chain(s).min() else {
            return Err(crate::runner::Fail::new(
                line!(),
                format_args!("no timer runs while online"),
            ));
        };
        if next > end {
            break;
        }
        let now = w.clock.advance_to_deadline(c, s).unwrap_or(next);
        crate::stack_call!("client.handle_timeout", w.client.handle_timeout(now));
        crate::stack_call!("server.handle_timeout", w.server.handle_timeout(now));
        w.pump()?;
    }
    let (cs, ss) = (w.client.stats(), w.server.stats());
    // client: a KEEP_ALIVE after every 250 ms without sending, 2 s / 250 ms = 8;
    // server: after every 1 s without sending to the peer, 2 s / 1 s = 2
    ensure_eq!(cs.keep_alives_sent, 8);
    ensure_eq!(ss.keep_alives_sent, 2);
    ensure_eq!(ss.keep_alives_received, cs.keep_alives_sent);
    ensure_eq!(cs.keep_alives_received, ss.keep_alives_sent);
    ensure_eq!(
        (
            cs.dropped_wrong_token,
            cs.dropped_bad_ack,
            cs.dropped_malformed
        ),
        (0, 0, 0)
    );
    ensure_eq!(
        (
            ss.dropped_wrong_token,
            ss.dropped_bad_ack,
            ss.dropped_malformed
        ),
        (0, 0, 0)
    );
    ensure!(
        w.client_events.is_empty() && w.server_events.is_empty(),
        "no events while alive"
    );
    ensure_eq!(w.client.state(), ClientState::Online);
    ensure!(w.server.is_online(ADDR), "peer still online");
    ensure!(w.clock.ticks > ticks_before, "the clock moved");
    ensure!(
        w.clock.now() <= end && w.clock.now() + Duration::from_millis(250) > end,
        "clock ran the span"
    );
    Ok(())
}

/// A spoofed source that shares the peer's link (its datagrams carry what it overheard)
const SPOOFER: u8 = 9;

fn batch(w: &mut World) -> StepResult {
    // the client's next KEEP_ALIVE, taken out of the client by hand
    let due = crate::stack_call!("client.poll_timeout", w.client.poll_timeout());
    let Some(due) = due else {
        return Err(crate::runner::Fail::new(
            line!(),
            format_args!("no client timer while online"),
        ));
    };
    let now = w.clock.advance_to_deadline(Some(due), None).unwrap_or(due);
    crate::stack_call!("client.handle_timeout", w.client.handle_timeout(now));
    let mut ka = [0u8; 16];
    let Some(t) = try_step!(crate::stack_call!(
        "client.poll_transmit",
        w.client.poll_transmit(now, &mut ka)
    )) else {
        return Err(crate::runner::Fail::new(
            line!(),
            format_args!("the client sent no KEEP_ALIVE"),
        ));
    };
    // header (3) + control id (1) + token (4)
    ensure_eq!(t.len, 8);
    let ka = &ka[..t.len];
    // the same KEEP_ALIVE with its token's last byte changed: a guessed token
    let mut guessed = [0u8; 8];
    guessed.copy_from_slice(ka);
    guessed[7] ^= 0x5a;
    let before = w.server.stats();
    // one recvmmsg's worth: the peer's KEEP_ALIVE, the same bytes replayed from another
    // address, a guessed token from the peer's address
    let batch: [(u8, &[u8]); 3] = [(ADDR, ka), (SPOOFER, ka), (ADDR, &guessed)];
    let mut consumed = [0usize; 3];
    let mut apps = 0u32;
    let done = crate::stack_call!(
        "server.handle_batch",
        w.server.handle_batch(now, &batch, |_, i, r| {
            consumed[i] = r.bytes_consumed();
            apps += u32::from(r.app().is_some());
        })
    );
    ensure_eq!(done, 3);
    ensure_eq!(consumed, [8, 8, 8]);
    ensure_eq!(apps, 0);
    let after = w.server.stats();
    ensure_eq!(after.keep_alives_received, before.keep_alives_received + 1);
    ensure_eq!(after.dropped_wrong_token, before.dropped_wrong_token + 1);
    ensure_eq!(after.ignored_unsolicited, before.ignored_unsolicited + 1);
    ensure_eq!(w.server.peer_count(), 1);
    ensure!(
        !w.server.is_online(SPOOFER),
        "no peer for the spoofed source"
    );
    ensure!(w.server.is_online(ADDR), "the peer stays online");
    ensure_eq!(
        crate::stack_call!("server.poll_event", w.server.poll_event()),
        None
    );
    w.pump()?;
    Ok(())
}

fn close(w: &mut World) -> StepResult {
    let now = w.clock.now();
    try_step!(crate::stack_call!(
        "client.close",
        w.client.close(now, "bye from the firmware")
    ));
    w.pump()?;
    ensure_eq!(
        w.client_events.as_slice(),
        &[ClientEvent::Closed {
            cause: CloseCause::Local
        }]
    );
    // the reason came borrowed with the CLOSE datagram (ServerApp::Close), before the event
    ensure_eq!(
        w.server_close_reason.as_deref(),
        Some(CLOSE_REASON.as_bytes())
    );
    ensure_eq!(
        w.server_events.as_slice(),
        &[ServerEvent::Closed {
            peer: ADDR,
            cause: CloseCause::Peer
        }]
    );
    ensure_eq!(w.client.state(), ClientState::Closed);
    ensure_eq!(w.server.peer_count(), 0);
    ensure!(!w.server.is_online(ADDR), "peer removed");
    ensure_eq!(
        crate::stack_call!("client.poll_timeout", w.client.poll_timeout()),
        None
    );
    Ok(())
}

const STEPS: &[Step<World>] = &[
    ("game: client connects (token mode)", connect),
    ("game: handshake CONNECT/CONNECT_ACCEPT/ACCEPT", handshake),
    ("game: chunk packet passes through with token", chunk_packet),
    ("game: keep-alives over 2 s of virtual time", keep_alives),
    (
        "game: a batch through handle_batch, spoofed datagrams dropped",
        batch,
    ),
    ("game: client close, reason seen by server", close),
];

/// Run the game scenario (its own stack frame, so the worlds of the scenarios do not overlap)
#[inline(never)]
pub fn run(runner: &mut Runner) {
    let mut world = World::new();
    runner.run(&mut world, World::clear_logs, STEPS);
    cortex_m_semihosting::hprintln!(
        "game: {} datagrams client->server, {} server->client, {} clock ticks, virtual time {} ms",
        world.datagrams_c2s,
        world.datagrams_s2c,
        world.clock.ticks,
        world.clock.now().as_millis()
    );
}
