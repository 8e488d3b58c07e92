//! Game server machine (4 slots, 5 peer addresses): replays a stream of (time step, datagram from
//! a peer, command) ops and checks the machine invariants after every step.
//!
//! Input (see `tether_fuzz::OpReader`): 6 config bytes (vanilla policy `% 3`, bit 7 the chunk
//! layer `Reliable` instead of `ControlOnly`, bit 6 its fast timers; keep_alive, timeout,
//! connect_accept_resend as `interval` bytes; a secret fill byte; max_peers 0..=4 (0 is clamped
//! to 1) or 5 = no limit), then ops. An op byte's low 4
//! bits pick the op; bit 7 makes the drain after it start with a tiny buffer. Ops 8–10 are
//! `set_ack` / `set_sequence` / `send_chunks` for `ControlOnly` and `send_vital` / nothing /
//! `send_non_vital` for `Reliable`; op 14 (added last, so older seeds keep their meaning) is
//! followed by a sub-op byte: 0 a Huffman-compressed control or chunk packet from a peer, 1 a
//! connectionless datagram (a server-info request, answered with `answer_info`, or raw bytes),
//! 2 a repeated ACCEPT (DDNet's rejoin), 3 a chunk packet of well-formed chunks (vital ones near
//! the server's ack), optionally compressed.
//!
//! Invariants: no panic; `poll_timeout` is `None` or not before the latest `now`; no timer
//! livelock; a timeout call before the deadline is a no-op; bounded frames and events per drain;
//! per peer, `Connected` and `Closed` alternate (a closed peer may be admitted again);
//! `ShutdownComplete` once, after every open peer was closed, and right after the shutdown's
//! drain; every frame is a well-formed control packet of at most 1400 bytes; KEEP_ALIVE only to
//! open peers and with their token; CONNECT_ACCEPT carries the minted token; after its
//! `Closed` a peer gets only CLOSE / CONNECT_ACCEPT (stateless) frames until admitted again;
//! after `ShutdownComplete` only queued CLOSEs; `send_chunks` only works for open peers; a CLOSE
//! reason comes back borrowed from the datagram of an online peer, which is then gone; after a
//! drain no input or command is refused with `QueueFull`. `Rejoined` only for online peers. With
//! the chunk layer: chunk packets go only to open peers and decompress and parse with their token;
//! `poll_chunk` hands out each peer's vital chunks with consecutive sequence numbers (the
//! server's ack follows them); info answers fit a datagram and carry the request's token.
//!
//! The join (`game::serve`, chunk layer only): every delivered chunk goes to the peer's `Serve`
//! (reset on `Connected` and `Rejoined`), which is flushed after every input with a 3,000-byte
//! map. Op 15 (unused before, so older seeds keep their meaning) sends a join message as the
//! next vital chunk of a peer (or non-vital, or out of order): INFO with the right, a wrong or a
//! fuzzed version; REQUEST_MAP_DATA for piece 0, the next in order, the last, −1, one past the
//! end or any index; READY; a start info; ENTERGAME; a PING_EX — so each comes in every state.
//! Invariants: the join enters the game only from READY after a start info; a refusal closes
//! the peer; the due pieces and the answered requests stay bounded (32, 2 × pieces + 16);
//! `flush` fails only for a peer that is not open.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_fuzz::{drain_events, drain_transmits, interval, is_spurious, step, OpReader};
use tether_net::game::chunk::{write_packet, Chunk, ChunkWriter};
use tether_net::game::connless::{
    ClientInfo, InfoContent, InfoRequest, InfoRequestKind, ServerInfo,
};
use tether_net::game::msg::{EnterGame, Info, PingEx, Ready, RequestMapData, VERSION_0_6};
use tether_net::game::packer::Str;
use tether_net::game::serve::{Offer, Serve, ServeError, ServeEvent, ServeState};
use tether_net::game::vital::seq;
use tether_net::game::wire::{self, Control, Header, Packet, Token, TokenMode, MAX_PACKET_LEN};
use tether_net::game::{
    ChunkConfig, CloseCause, ControlOnly, Error, Flags, Layer, Reliable, Server, ServerApp,
    ServerConfig, ServerEvent, ServerState, TokenSecret, VanillaPolicy, CLOSE_QUEUE_LEN,
    STATELESS_QUEUE_LEN,
};
use tether_net::testing::start_info;
use tether_net::{FrameKind, Instant};

const N: usize = 4;
const E: usize = 8;
const PEERS: usize = 5;
const MAX_FRAMES: usize = STATELESS_QUEUE_LEN + CLOSE_QUEUE_LEN + 3 * N;
/// With the chunk layer: chunk packets too (resends of up to 16 chunks per peer)
const MAX_FRAMES_CHUNKS: usize = MAX_FRAMES + 20 * N;
const MAX_EVENTS: usize = E + N + 1;
const FIXED: Token = Token([0x12, 0x34, 0x56, 0x78]);

/// The chunk layer under test: small buffers, so that they fill up
type FuzzLayer = Reliable<2048, 16, 2048, 16>;
/// The map the join serves: 4 pieces (the last one 312 bytes)
const MAP_LEN: usize = 3000;
const MAP_CRC: u32 = 0x1234_5678;

fn offer() -> Offer<'static> {
    Offer::new("fuzzmap", MAP_CRC, MAP_LEN as u32).with_motd("motd")
}

struct H<L: Layer> {
    /// ops left whose drain is skipped (queues fill up: refusal paths, capacity bounds)
    hold: u8,
    /// the previous op was held: timers refused meanwhile may be due
    was_held: bool,
    s: Box<Server<u8, N, E, L>>,
    now: Instant,
    tiny: Option<usize>,
    online: [bool; PEERS],
    sequence: [u16; PEERS],
    shutdown_called: bool,
    shutdown_complete: bool,
    /// Per peer: the last vital sequence `poll_chunk` handed out, and the admission/rejoin count
    /// when it did (a reset starts the sequence over)
    last_vital: [Option<(u16, u64)>; PEERS],
    /// Per peer: its join (chunk layer)
    serve: [Serve; PEERS],
    /// The map the join serves
    map: Vec<u8>,
}

/// What differs between the two layers
trait Variant: Sized {
    /// True for the chunk layer
    const CHUNKS: bool;
    /// Op 8
    fn op8(&mut self, r: &mut OpReader<'_>);
    /// Op 9
    fn op9(&mut self, r: &mut OpReader<'_>);
    /// Op 10
    fn op10(&mut self, r: &mut OpReader<'_>);
    /// Read the chunks of an accepted packet (chunk layer)
    fn read_chunks(&mut self);
}

impl<L: Layer> tether_fuzz::Harness for H<L>
where
    H<L>: Variant,
{
    type M = Server<u8, N, E, L>;
    fn machine(&mut self) -> &mut Self::M {
        &mut self.s
    }
    fn now(&self) -> Instant {
        self.now
    }
    fn set_now(&mut self, now: Instant) {
        self.now = now;
    }
    fn drain(&mut self) {
        H::drain(self);
    }
    fn after_op(&mut self) {
        H::after_op(self);
    }
    fn hold(&mut self) -> (&mut u8, &mut bool) {
        (&mut self.hold, &mut self.was_held)
    }
}

/// The admission/rejoin count of a server: when it changes, a peer's sequence may start over
fn epoch<L: Layer>(s: &Server<u8, N, E, L>) -> u64 {
    let st = s.stats();
    st.peers_admitted + st.rejoins
}

impl<L: Layer> H<L>
where
    H<L>: Variant,
{
    fn drain(&mut self) {
        let tiny = self.tiny.take();
        let now = self.now;
        let online = self.online;
        let complete = self.shutdown_complete;
        let max = if Self::CHUNKS {
            MAX_FRAMES_CHUNKS
        } else {
            MAX_FRAMES
        };
        drain_transmits(&mut *self.s, now, 2048, tiny, max, |s, t, bytes| {
            assert_eq!(t.kind, FrameKind::Datagram);
            assert!(t.len <= MAX_PACKET_LEN, "datagram of {} bytes", t.len);
            let p = usize::from(t.to);
            assert!(p < PEERS, "frame to unknown address {p}");
            if bytes.first().is_some_and(|b| b & 0x10 == 0) {
                assert!(
                    Self::CHUNKS,
                    "poll_transmit produced a chunk packet {bytes:02x?}"
                );
                assert!(!complete, "chunk packet after ShutdownComplete");
                assert!(
                    online[p] || s.is_online(t.to),
                    "chunk packet to peer {p}, not open"
                );
                tether_fuzz::game_check_chunk_packet(bytes, s.peer_token(t.to), None);
                return;
            }
            let parsed = wire::parse(bytes, TokenMode::Detect)
                .unwrap_or_else(|e| panic!("server sent unparsable {bytes:02x?}: {e:?}"));
            let Packet::Control(c) = parsed.packet else {
                panic!("control flag but chunk packet {bytes:02x?}")
            };
            match c.control {
                Control::Close(_) => {}
                Control::ConnectAccept => {
                    assert!(!complete, "CONNECT_ACCEPT after ShutdownComplete");
                    assert_eq!(c.ack, 0, "CONNECT_ACCEPT with ack {}", c.ack);
                    if let Some(tok) = c.token {
                        assert_eq!(
                            tok,
                            s.token_for(t.to),
                            "CONNECT_ACCEPT token is not the minted one"
                        );
                    }
                }
                Control::KeepAlive => {
                    assert!(!complete, "KEEP_ALIVE after ShutdownComplete");
                    // (after a hold its Connected may still be queued: ask the table)
                    assert!(
                        online[p] || s.is_online(t.to),
                        "KEEP_ALIVE to peer {p}, which is not open"
                    );
                    assert_eq!(c.token, s.peer_token(t.to), "KEEP_ALIVE token");
                    assert!(parsed.warnings.is_empty());
                }
                other => panic!("server sent {other:?}"),
            }
        });

        let mut online = self.online;
        let mut complete = self.shutdown_complete;
        let mut reset = [false; PEERS];
        drain_events(&mut *self.s, MAX_EVENTS, |s, e| {
            assert!(!complete, "event {e:?} after ShutdownComplete");
            match e {
                ServerEvent::Connected { peer, token } => {
                    let p = usize::from(peer);
                    assert!(p < PEERS);
                    assert!(!online[p], "second Connected for peer {p} without Closed");
                    online[p] = true;
                    reset[p] = true;
                    if let Some(tok) = token {
                        assert_eq!(
                            tok,
                            s.token_for(peer),
                            "admitted with a token not minted for it"
                        );
                    }
                }
                ServerEvent::Closed { peer, cause } => {
                    let p = usize::from(peer);
                    assert!(p < PEERS);
                    assert!(
                        online[p],
                        "Closed ({cause:?}) for peer {p}, which is not open"
                    );
                    online[p] = false;
                    if matches!(cause, CloseCause::Shutdown) {
                        assert_ne!(s.state(), ServerState::Running);
                    }
                    if matches!(cause, CloseCause::TooWeak(_)) {
                        assert!(Self::CHUNKS, "too weak without the chunk layer");
                    }
                }
                ServerEvent::Rejoined { peer } => {
                    let p = usize::from(peer);
                    assert!(p < PEERS);
                    assert!(online[p], "Rejoined for peer {p}, which is not open");
                    reset[p] = true;
                }
                ServerEvent::ShutdownComplete => {
                    assert!(
                        online.iter().all(|o| !o),
                        "ShutdownComplete with open peers {online:?}"
                    );
                    assert_eq!(s.state(), ServerState::Stopped);
                    complete = true;
                }
                other => panic!("unknown event {other:?}"),
            }
        });
        self.online = online;
        self.shutdown_complete = complete;
        for (p, r) in reset.iter().enumerate() {
            if *r {
                self.serve[p] = Serve::new();
            }
        }
    }

    fn after_op(&mut self) {
        if !tether_fuzz::settle(self) {
            return;
        }
        if self.shutdown_called {
            assert!(
                self.shutdown_complete,
                "shutdown not complete after a full drain"
            );
            assert_eq!(self.s.state(), ServerState::Stopped);
            assert_eq!(self.s.peer_count(), 0);
            assert_eq!(self.s.poll_timeout(), None, "timer running after shutdown");
        }
        assert!(self.s.peer_count() <= N.min(self.s.config().max_peers()));
        for p in 0..PEERS as u8 {
            if self.s.is_online(p) {
                assert!(
                    self.online[usize::from(p)],
                    "peer {p} online without Connected"
                );
            }
        }
        tether_fuzz::check_timeout(&*self.s, self.now, "server");
    }

    fn input(&mut self, now: Instant, peer: u8, bytes: &[u8]) {
        let r = match self.s.handle_input(now, peer, bytes) {
            Ok(r) => r,
            Err(e) => {
                assert!(
                    self.hold > 0 || self.was_held,
                    "input refused with a drained event queue: {e:?}"
                );
                return;
            }
        };
        assert_eq!(
            r.bytes_consumed(),
            bytes.len(),
            "datagrams are consumed whole"
        );
        let mut chunks = false;
        let mut info = None;
        match r.app() {
            Some(ServerApp::Chunks(app)) => {
                assert!(!Self::CHUNKS, "a raw chunk packet with the chunk layer");
                assert!(
                    self.s.is_online(peer),
                    "chunks delivered for a peer that is not online"
                );
                assert!(!app.header.flags.control);
            }
            Some(ServerApp::ChunksReady) => {
                assert!(Self::CHUNKS, "ChunksReady without the chunk layer");
                assert!(self.s.is_online(peer));
                chunks = true;
            }
            Some(ServerApp::Close { reason }) => {
                assert!(
                    !self.s.is_online(peer),
                    "peer {peer} still online after CLOSE"
                );
                if !reason.is_empty() {
                    tether_fuzz::game_check_reason(*reason, bytes);
                }
            }
            Some(ServerApp::InfoRequest(req)) => info = Some(*req),
            Some(other) => panic!("unknown app value {other:?}"),
            None => {}
        }
        if chunks {
            self.read_chunks();
        }
        if let Some(req) = info {
            let clients = [ClientInfo {
                name: Str::new("a player"),
                clan: Str::EMPTY,
                country: -1,
                score: 0,
                is_player: 1,
            }; 40];
            let content = InfoContent {
                version: Str::new("0.6.4"),
                name: Str::new("fuzz"),
                map: Str::new("m"),
                map_crc: 7,
                map_size: 9,
                game_type: Str::new("DM"),
                flags: 0,
                num_players: 40,
                max_players: 64,
                num_clients: 40,
                max_clients: 64,
                clients: &clients,
            };
            let mut out = [0u8; 2048];
            let t = self
                .s
                .answer_info(now, &content, &mut out)
                .expect("fits")
                .expect("a request to answer");
            assert_eq!(t.to, peer);
            assert!(t.len <= MAX_PACKET_LEN, "info answer of {} bytes", t.len);
            let answer = ServerInfo::parse(&out[..t.len]).expect("own answer parses");
            assert_eq!(answer.token, req.answer_token());
            assert_eq!(
                self.s.answer_info(now, &content, &mut out),
                Ok(None),
                "answered twice"
            );
        }
    }

    fn ack_sel(&self, r: &mut OpReader<'_>, p: usize) -> u16 {
        match r.u8() % 3 {
            0 => 0,
            1 => self.sequence[p],
            _ => r.u16(),
        }
    }

    fn token_sel(&self, r: &mut OpReader<'_>, peer: u8) -> Option<Token> {
        match r.u8() % 6 {
            0 => None,
            1 => Some(self.s.token_for(peer)),
            2 => self.s.peer_token(peer),
            3 => Some(Token::UNKNOWN),
            4 => Some(FIXED),
            _ => Some(Token(r.array4())),
        }
    }

    /// Op 14: the inputs added with the chunk layer
    fn extended(&mut self, r: &mut OpReader<'_>) {
        let p = peer(r);
        match r.u8() % 4 {
            0 => {
                // a Huffman-compressed control or chunk packet
                let kind = r.u8();
                let ack = self.ack_sel(r, usize::from(p));
                let token = self.token_sel(r, p);
                let body = r.blob();
                let plain = if kind & 1 == 0 {
                    tether_fuzz::game_control(kind >> 1, ack, token, body)
                } else {
                    tether_fuzz::game_chunks(0, kind >> 1, ack, token, body)
                };
                let bytes = tether_fuzz::game_compress(&plain);
                self.input(self.now, p, &bytes);
            }
            1 => {
                // a connectionless datagram: a server-info request, or raw bytes
                let f = r.u8();
                let bytes = if f & 1 == 0 {
                    let req = InfoRequest {
                        kind: if f & 2 != 0 {
                            InfoRequestKind::Legacy64
                        } else {
                            InfoRequestKind::Info
                        },
                        extended: f & 4 != 0,
                        token: u32::from(r.u16()) | u32::from(r.u8()) << 16,
                    };
                    let mut b = [0u8; 15];
                    let n = req.emit(&mut b).expect("fits");
                    b[..n].to_vec()
                } else {
                    let mut b = vec![0xff; 6];
                    b.extend_from_slice(r.blob());
                    b
                };
                // a burst: the rate limit and the short answers
                for _ in 0..=(f >> 4) {
                    self.input(self.now, p, &bytes);
                }
            }
            2 => {
                // ACCEPT + token again (DDNet's rejoin), with the minted token
                let bytes = tether_fuzz::game_control(3, 0, Some(self.s.token_for(p)), &[]);
                self.input(self.now, p, &bytes);
            }
            _ => {
                // well-formed chunks (vital ones near the server's ack), maybe compressed
                let f = r.u8();
                let ack = self.ack_sel(r, usize::from(p));
                let token = if f & 2 != 0 {
                    self.token_sel(r, p)
                } else {
                    self.s.peer_token(p)
                };
                let base = self.s.ack(p).unwrap_or(0);
                let bytes = tether_fuzz::game_chunk_packet(r, f, ack, token, base);
                self.input(self.now, p, &bytes);
            }
        }
    }

    /// Op 15: a join message from a peer, as its next vital chunk (or not vital, or early)
    fn join_message(&mut self, r: &mut OpReader<'_>) {
        let p = peer(r);
        let f = r.u8();
        let mut msg = [0u8; 512];
        let n = match f % 6 {
            0 => {
                let fuzzed = r.blob();
                let version = match (f >> 3) % 3 {
                    0 => Str::new(VERSION_0_6),
                    1 => Str::new("0.6 626fce9a778ab4d4"),
                    _ => Str::from_bytes(&fuzzed[..fuzzed.len().min(200)]),
                };
                let password = Str::new(if f & 0x80 != 0 { "pw" } else { "" });
                Info { version, password }.emit(&mut msg)
            }
            1 => {
                let chunk = match (f >> 3) % 6 {
                    0 => 0,
                    1 => self.serve[usize::from(p)].requests() as i32,
                    2 => MAP_LEN.div_ceil(896) as i32 - 1,
                    3 => -1,
                    4 => MAP_LEN.div_ceil(896) as i32,
                    _ => i32::from_le_bytes([r.u8(), r.u8(), r.u8(), r.u8()]),
                };
                RequestMapData { chunk }.emit(&mut msg)
            }
            2 => Ready {}.emit(&mut msg),
            3 => start_info(Str::new("fuzz")).emit(&mut msg),
            4 => EnterGame {}.emit(&mut msg),
            _ => PingEx { id: [f; 16] }.emit(&mut msg),
        }
        .expect("fits");
        let ack = self.ack_sel(r, usize::from(p));
        let base = self.s.ack(p).unwrap_or(0);
        let chunk = if f & 0x40 != 0 {
            Chunk::non_vital(&msg[..n])
        } else {
            // in order, or (bit 5) one ahead: the reorder buffer or a resend request
            let ahead = u16::from(f & 0x20 != 0);
            Chunk::vital((base + 1 + ahead) % 1024, &msg[..n])
        };
        let mut payload = [0u8; 1400];
        let mut w = ChunkWriter::new(&mut payload, 1390);
        w.push(&chunk).expect("fits");
        let header = Header {
            flags: Flags::default(),
            ack,
            num_chunks: w.num_chunks(),
        };
        let len = w.len();
        let mut out = [0u8; 2048];
        let n = write_packet(
            header,
            &payload[..len],
            self.s.peer_token(p),
            false,
            &mut out,
        )
        .expect("fits");
        self.input(self.now, p, &out[..n]);
    }
}

impl Variant for H<ControlOnly> {
    const CHUNKS: bool = false;

    fn op8(&mut self, r: &mut OpReader<'_>) {
        let p = peer(r);
        let ack = r.u16();
        match self.s.set_ack(p, ack) {
            Ok(()) => {}
            Err(Error::UnknownPeer) => assert!(!self.s.is_online(p)),
            Err(e) => panic!("set_ack: {e:?}"),
        }
    }

    fn op9(&mut self, r: &mut OpReader<'_>) {
        let p = peer(r);
        let seq = r.u16() % 1024;
        if self.s.set_sequence(p, seq).is_ok() {
            self.sequence[usize::from(p)] = seq;
        }
    }

    fn op10(&mut self, r: &mut OpReader<'_>) {
        let p = peer(r);
        let f = r.u8();
        let num_chunks = r.u8();
        let payload = r.blob();
        let flags = Flags {
            compression: f & 1 != 0,
            resend: f & 2 != 0,
            control: f & 4 != 0,
        };
        let mut out = [0u8; 2048];
        match self
            .s
            .send_chunks(self.now, p, flags, num_chunks, payload, &mut out)
        {
            Ok(t) => {
                assert!(
                    self.online[usize::from(p)] || self.was_held,
                    "send_chunks to peer {p}, which is not open"
                );
                assert!(!self.shutdown_called);
                assert_eq!(t.to, p);
                tether_fuzz::game_check_sent_chunks(
                    &out[..t.len],
                    self.s.peer_token(p),
                    payload,
                    flags.compression,
                );
            }
            Err(Error::Closed) => assert!(self.shutdown_called),
            Err(Error::UnknownPeer) => assert!(!self.s.is_online(p)),
            Err(Error::NotOpen) => assert!(!self.s.is_online(p)),
            Err(Error::TooLong { len, max }) => assert!(max == MAX_PACKET_LEN && len > max),
            Err(e) => panic!("send_chunks: {e:?}"),
        }
    }

    fn read_chunks(&mut self) {}
}

impl Variant for H<FuzzLayer> {
    const CHUNKS: bool = true;

    fn op8(&mut self, r: &mut OpReader<'_>) {
        let p = peer(r);
        let flush = r.u8() & 1 != 0;
        let data = r.blob();
        match self.s.send_vital(self.now, p, data, flush) {
            Ok(seq) => {
                assert!(self.s.is_online(p));
                assert!(seq < 1024);
            }
            Err(Error::Closed) => assert!(self.shutdown_called),
            Err(Error::UnknownPeer | Error::NotOpen) => assert!(!self.s.is_online(p)),
            Err(Error::TooLong { len, max }) => assert!(max == 1023 && len > max),
            Err(Error::TooManyInFlight) => assert!(self.s.is_online(p)),
            Err(e) => panic!("send_vital: {e:?}"),
        }
    }

    fn op9(&mut self, _r: &mut OpReader<'_>) {}

    fn op10(&mut self, r: &mut OpReader<'_>) {
        let p = peer(r);
        let data = r.blob();
        let mut out = [0u8; 2048];
        match self.s.send_non_vital(self.now, p, data, &mut out) {
            Ok(t) => {
                assert!(self.s.is_online(p));
                assert_eq!(t.to, p);
                tether_fuzz::game_check_chunk_packet(&out[..t.len], self.s.peer_token(p), None);
            }
            Err(Error::Closed) => assert!(self.shutdown_called),
            Err(Error::UnknownPeer | Error::NotOpen) => assert!(!self.s.is_online(p)),
            Err(Error::TooLong { len, max }) => assert!(max == 1023 && len > max),
            Err(e) => panic!("send_non_vital: {e:?}"),
        }
    }

    fn read_chunks(&mut self) {
        let mut n = 0;
        loop {
            let epoch = epoch(&self.s);
            let Some((peer, chunk)) = self.s.poll_chunk() else {
                break;
            };
            n += 1;
            assert!(
                n <= 255 + 16,
                "more chunks than a packet and the reorder buffer hold"
            );
            assert!(chunk.data.len() <= 1023);
            let (vital, s) = (chunk.flags.vital, chunk.seq);
            let p = usize::from(peer);
            let serve = &mut self.serve[p];
            let before = serve.state();
            let had_start_info = matches!(before, ServeState::Ready | ServeState::InGame);
            match serve.handle_chunk(&offer(), chunk) {
                Ok(ServeEvent::Entered) => {
                    assert!(vital, "ENTERGAME counted without being vital");
                    assert_eq!(before, ServeState::Ready, "entered from {before:?}");
                    assert!(had_start_info);
                }
                Ok(ServeEvent::Refused(_)) => {
                    assert_eq!(before, ServeState::Auth);
                    assert!(serve.refusal_reason().is_some_and(|r| r.len() <= 127));
                }
                Ok(ServeEvent::Info { .. }) => assert_eq!(before, ServeState::Auth),
                Ok(ServeEvent::MapRequest { queued, .. }) => {
                    assert!(queued <= 16);
                    assert_ne!(before, ServeState::Auth);
                }
                Ok(_) | Err(ServeError::Message(_)) => {}
                Err(e) => panic!("handle_chunk: {e:?}"),
            }
            if before == ServeState::Refused {
                assert_eq!(serve.state(), ServeState::Refused, "a refusal is final");
            }
            if vital {
                if let Some((last, e)) = self.last_vital[p] {
                    if e == epoch {
                        assert_eq!(
                            s,
                            seq::next(last),
                            "peer {p}: vital chunks out of order or twice"
                        );
                    }
                }
                self.last_vital[p] = Some((s, epoch));
                assert_eq!(
                    self.s.ack(peer),
                    Some(s),
                    "the server's ack follows the delivery"
                );
            }
            let pieces = (MAP_LEN as u32).div_ceil(896);
            assert!(serve.pieces_due() <= 32);
            assert!(serve.requests() <= 2 * pieces + 16);
        }
        // what the chunks made due (the peers whose acks made room too)
        let o = offer();
        for p in 0..PEERS {
            if !self.serve[p].wants_flush() {
                continue;
            }
            let peer = p as u8;
            let mut map = &self.map[..];
            match self.serve[p].flush(self.now, &mut *self.s, peer, &o, &mut map) {
                Ok(()) => {}
                Err(ServeError::Send(Error::UnknownPeer | Error::NotOpen | Error::Closed)) => {
                    assert!(!self.s.is_online(peer) || self.shutdown_called);
                }
                Err(e) => panic!("flush: {e:?}"),
            }
        }
    }
}

fn peer(r: &mut OpReader<'_>) -> u8 {
    r.u8() % PEERS as u8
}

fn run<L: Layer>(r: &mut OpReader<'_>, s: Box<Server<u8, N, E, L>>)
where
    H<L>: Variant,
{
    let mut h = H {
        hold: 0,
        was_held: false,
        s,
        now: Instant::from_millis(1_000),
        tiny: None,
        online: [false; PEERS],
        sequence: [0; PEERS],
        shutdown_called: false,
        shutdown_complete: false,
        last_vital: [None; PEERS],
        serve: core::array::from_fn(|_| Serve::new()),
        map: (0..MAP_LEN).map(|i| (i % 251) as u8).collect(),
    };
    tether_fuzz::start(&mut h);
    let mut ops = 0;
    while let Some(op) = tether_fuzz::next_op(r, &mut ops, 15, h.now) {
        if op & 0x80 != 0 {
            h.tiny = Some(usize::from((op >> 4) & 7) * 3);
        }
        match op & 15 {
            0..=2 => {
                let d = step(r, op & 15);
                tether_fuzz::advance(&mut h, d);
                continue;
            }
            3 => {
                let p = peer(r);
                let bytes = r.blob().to_vec();
                h.input(h.now, p, &bytes);
            }
            4 => {
                let p = peer(r);
                let id = r.u8();
                let ack = h.ack_sel(r, usize::from(p));
                let token = h.token_sel(r, p);
                let reason = r.blob();
                let bytes = tether_fuzz::game_control(id, ack, token, reason);
                h.input(h.now, p, &bytes);
            }
            5 => {
                let p = peer(r);
                let f = r.u8();
                let num_chunks = r.u8();
                let ack = h.ack_sel(r, usize::from(p));
                let token = h.token_sel(r, p);
                let payload = r.blob();
                let bytes = tether_fuzz::game_chunks(f, num_chunks, ack, token, payload);
                h.input(h.now, p, &bytes);
            }
            6 => {
                let p = peer(r);
                let reason = r.text();
                match h.s.close(h.now, p, &reason) {
                    Ok(()) => assert!(!h.shutdown_called),
                    Err(Error::Closed) => assert!(h.shutdown_called),
                    Err(Error::UnknownPeer) => {
                        // (the view lags while events are held)
                        assert!(!h.online[usize::from(p)] || h.shutdown_called || h.was_held)
                    }
                    Err(Error::QueueFull) => {
                        assert!(
                            h.hold > 0 || h.was_held,
                            "close refused with drained queues"
                        )
                    }
                    Err(e) => panic!("close: {e:?}"),
                }
            }
            7 => {
                let reason = r.text();
                match h.s.shutdown(h.now, &reason) {
                    Ok(()) => assert!(!h.shutdown_called),
                    Err(Error::Closed) => assert!(h.shutdown_called),
                    Err(e) => panic!("shutdown: {e:?}"),
                }
                h.shutdown_called = true;
            }
            8 => h.op8(r),
            9 => h.op9(r),
            10 => h.op10(r),
            11 => {
                if h.hold == 0 && !h.was_held && is_spurious(&*h.s, h.now) {
                    let before = h.s.poll_timeout();
                    let count = h.s.peer_count();
                    h.s.handle_timeout(h.now);
                    assert_eq!(
                        h.s.poll_timeout(),
                        before,
                        "spurious handle_timeout moved the timer"
                    );
                    assert_eq!(h.s.peer_count(), count);
                    let n = drain_transmits(
                        &mut *h.s,
                        h.now,
                        2048,
                        None,
                        MAX_FRAMES_CHUNKS,
                        |_, _, _| {},
                    );
                    assert_eq!(n, 0, "spurious handle_timeout queued a frame");
                    assert!(
                        h.s.poll_event().is_none(),
                        "spurious handle_timeout queued an event"
                    );
                }
            }
            12 => {
                // the caller's clock steps back: a datagram stamped earlier than the latest now,
                // and time goes on from there (the machine takes the step as no time passing)
                let back = tether_net::Duration::from_millis(u64::from(r.u16()));
                let p = peer(r);
                let bytes = r.blob().to_vec();
                h.now = h.now - back;
                h.input(h.now, p, &bytes);
            }
            13 => {
                // skip the drains of the next 1..=4 ops
                h.hold = r.u8() % 4 + 1;
                continue;
            }
            14 => h.extended(r),
            15 => h.join_message(r),
            _ => {}
        }
        h.after_op();
    }
}

fuzz_target!(|data: &[u8]| {
    let mut r = OpReader::new(data);
    let first = r.u8();
    let vanilla = match first % 3 {
        0 => VanillaPolicy::Reject,
        1 => VanillaPolicy::Admit,
        _ => VanillaPolicy::Pending,
    };
    let keep_alive = interval(r.u8());
    let timeout = interval(r.u8());
    let connect_accept_resend = interval(r.u8());
    let secret = TokenSecret([r.u8(); 16]);
    let max_peers = match r.u8() % 6 {
        5 => usize::MAX,
        m => usize::from(m),
    };
    let config = ServerConfig::new(secret)
        .with_vanilla(vanilla)
        .with_keep_alive(keep_alive)
        .with_timeout(timeout)
        .with_connect_accept_resend(connect_accept_resend)
        .with_max_peers(max_peers);
    if first & 0x80 != 0 {
        let chunks = if first & 0x40 != 0 {
            ChunkConfig::fast()
        } else {
            ChunkConfig::new()
        };
        let s: Box<Server<u8, N, E, FuzzLayer>> = Box::new(Server::with_chunks(config, chunks));
        run(&mut r, s);
    } else {
        run(
            &mut r,
            Box::new(Server::<u8, N, E>::with_capacities(config)),
        );
    }
});
