//! Game client machine: replays a stream of (time step, datagram, command) ops and checks the
//! machine invariants after every step.
//!
//! Input (see `tether_fuzz::OpReader`): 6 config bytes (flags: bit 0 vanilla, bit 1 the chunk
//! layer `Reliable` instead of `ControlOnly`, bit 2 its fast timers; connect_resend,
//! connect_timeout, keep_alive, timeout as `interval` bytes; accept_retry: 0 = off, else an
//! `interval` byte), then ops. An op byte's low 4 bits
//! pick the op; bit 7 makes the drain after it start with a tiny buffer of `(op >> 4 & 7) * 3`
//! bytes. Ops 8–10 are `set_ack` / `set_sequence` / `send_chunks` for `ControlOnly` and
//! `send_vital` / nothing / `send_non_vital` for `Reliable`; op 14 (added last, so older seeds
//! keep their meaning) is followed by a sub-op byte: 0 a Huffman-compressed control or chunk
//! packet, 1 a connectionless datagram (a server-info answer with a chosen token), 2 a forged
//! CONNECT_ACCEPT (any token, sentinels included), 3 `request_info`, 4 a chunk packet of
//! well-formed chunks (vital ones with sequences near the client's ack), optionally compressed.
//!
//! Invariants: no panic; `poll_timeout` is `None` or not before the latest `now`; no timer
//! livelock; a timeout call before the deadline is a no-op; at most `E` events and 4 frames per
//! drain; at most one `Connected` and one `Closed` event, in that order, and the state agrees;
//! every frame is a well-formed control packet of at most 1400 bytes with the client's ack and
//! token; after `Closed` only the one CLOSE of a local close goes out; `BufferTooSmall` leaves the
//! frame queued with the announced size; chunk packets are delivered only while online; a CLOSE
//! reason comes back borrowed from the datagram together with the end of the connection; after a
//! drain no input or command is refused with `QueueFull`. With the chunk layer: chunk packets in
//! `poll_transmit` decompress and parse with the client's token and ack; `poll_chunk` hands out
//! vital chunks with consecutive sequence numbers (each exactly once, in order); a server-info
//! answer carries the requested token (or −1).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_fuzz::{drain_events, drain_transmits, interval, is_spurious, step, OpReader};
use tether_net::game::connless::{ClientList, InfoKind, ServerInfo};
use tether_net::game::packer::Str;
use tether_net::game::vital::seq;
use tether_net::game::wire::{self, Control, Packet, Token, TokenMode, MAX_PACKET_LEN};
use tether_net::game::{
    ChunkConfig, Client, ClientApp, ClientConfig, ClientEvent, ClientState, CloseCause,
    ControlOnly, Error, Flags, Layer, Reliable,
};
use tether_net::{FrameKind, Instant};

const E: usize = 8;
/// Pending control frames: CLOSE, CONNECT, ACCEPT, KEEP_ALIVE, and a server-info request
const MAX_FRAMES_PER_DRAIN: usize = 5;
/// With the chunk layer: chunk packets too (resends of up to 16 chunks, a request)
const MAX_FRAMES_CHUNKS: usize = 5 + 20;
const FIXED: Token = Token([0x12, 0x34, 0x56, 0x78]);

/// The chunk layer under test: small buffers, so that they fill up
type FuzzLayer = Reliable<2048, 16, 2048, 16>;

struct H<L: Layer> {
    /// ops left whose drain is skipped (queues fill up: refusal paths, capacity bounds)
    hold: u8,
    /// the previous op was held: timers refused meanwhile may be due
    was_held: bool,
    c: Client<E, L>,
    now: Instant,
    sequence: u16,
    tiny: Option<usize>,
    connected: u32,
    closed: Option<CloseCause>,
    /// CLOSE frames seen after the Closed event
    closes_after: u32,
    /// A local close was requested while connecting/online: one CLOSE is owed
    local_close_sends: bool,
    sent_close: u32,
    last_state: ClientState,
    /// The vital sequence `poll_chunk` must hand out next
    next_vital: u16,
    /// The token of the last server-info request (as answers carry it)
    info_token: Option<i32>,
}

fn rank(s: ClientState) -> u8 {
    match s {
        ClientState::Offline => 0,
        ClientState::Connecting => 1,
        ClientState::Online => 2,
        ClientState::Closed => 3,
        other => panic!("unknown state {other:?}"),
    }
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
    type M = Client<E, L>;
    fn machine(&mut self) -> &mut Self::M {
        &mut self.c
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

impl<L: Layer> H<L>
where
    H<L>: Variant,
{
    fn drain(&mut self) {
        let tiny = self.tiny.take();
        let now = self.now;
        let closed = self.closed.is_some();
        let mut closes_after = 0;
        let mut sent_close = 0;
        let max = if Self::CHUNKS {
            MAX_FRAMES_CHUNKS
        } else {
            MAX_FRAMES_PER_DRAIN
        };
        drain_transmits(&mut self.c, now, 2048, tiny, max, |c, t, bytes| {
            assert_eq!(t.kind, FrameKind::Datagram);
            assert!(t.len <= MAX_PACKET_LEN, "datagram of {} bytes", t.len);
            if bytes.first().is_some_and(|b| b & 0x20 != 0) {
                // a server-info request
                assert!(
                    tether_net::game::connless::InfoRequest::parse(bytes).is_ok(),
                    "unparsable info request {bytes:02x?}"
                );
                return;
            }
            if bytes.first().is_some_and(|b| b & 0x10 == 0) {
                assert!(
                    Self::CHUNKS,
                    "poll_transmit produced a chunk packet {bytes:02x?}"
                );
                tether_fuzz::game_check_chunk_packet(bytes, c.token(), Some(c.ack()));
                return;
            }
            let parsed = wire::parse(bytes, TokenMode::Detect)
                .unwrap_or_else(|e| panic!("client sent unparsable {bytes:02x?}: {e:?}"));
            let Packet::Control(p) = parsed.packet else {
                panic!("control flag but chunk packet {bytes:02x?}")
            };
            // (a CLOSE's trailing token may hold a NUL, which Detect reads as trailing bytes)
            if !matches!(p.control, Control::Close(_)) {
                assert!(
                    parsed.warnings.is_empty(),
                    "own frame has warnings {:?}",
                    parsed.warnings
                );
            }
            assert_eq!(
                p.ack,
                c.ack(),
                "frame carries another ack than the client's"
            );
            match p.control {
                Control::Close(_) => {
                    sent_close += 1;
                    if closed {
                        closes_after += 1;
                    }
                }
                other => {
                    assert!(!closed, "{other:?} sent after the Closed event");
                    assert_ne!(
                        c.state(),
                        ClientState::Closed,
                        "{other:?} sent while closed"
                    );
                }
            }
            match p.control {
                Control::Connect => {
                    let want = if c.config().vanilla() {
                        None
                    } else {
                        Some(Token::UNKNOWN)
                    };
                    assert_eq!(p.token, want, "CONNECT token form");
                }
                Control::Accept | Control::KeepAlive => {
                    assert_eq!(p.token, c.token(), "frame token differs from the client's");
                }
                _ => {}
            }
        });
        self.closes_after += closes_after;
        self.sent_close += sent_close;
        assert!(self.closes_after <= 1, "more than one CLOSE after Closed");
        assert!(self.sent_close <= 1, "more than one CLOSE sent");
        if sent_close > 0 {
            assert!(self.local_close_sends, "CLOSE sent without a local close");
        }

        let mut connected = self.connected;
        let mut closed_ev = self.closed;
        drain_events(&mut self.c, E, |c, e| match e {
            ClientEvent::Connected { token } => {
                assert!(closed_ev.is_none(), "Connected after Closed");
                connected += 1;
                assert_eq!(connected, 1, "second Connected");
                // (a CONNECT_ACCEPT with another token may have replaced it since, unconfirmed)
                assert!(
                    token == c.token() || c.stats().token_candidates > 0,
                    "Connected {token:?} but the client has {:?}",
                    c.token()
                );
                assert!(
                    !token.is_some_and(|t| t.is_sentinel()),
                    "sentinel token adopted"
                );
                if c.config().vanilla() {
                    assert_eq!(token, None);
                }
            }
            ClientEvent::Closed { cause } => {
                assert!(closed_ev.is_none(), "second Closed event: {cause:?}");
                assert_eq!(c.state(), ClientState::Closed);
                if matches!(cause, CloseCause::Timeout | CloseCause::TooWeak(_)) {
                    assert_eq!(connected, 1, "{cause:?} before Connected");
                }
                if matches!(cause, CloseCause::TooWeak(_)) {
                    assert!(Self::CHUNKS, "too weak without the chunk layer");
                }
                closed_ev = Some(cause);
            }
            other => panic!("unknown event {other:?}"),
        });
        self.connected = connected;
        self.closed = closed_ev;
    }

    fn after_op(&mut self) {
        if !tether_fuzz::settle(self) {
            return;
        }
        let state = self.c.state();
        assert!(
            rank(state) >= rank(self.last_state),
            "state went back: {:?} -> {state:?}",
            self.last_state
        );
        self.last_state = state;
        if state == ClientState::Closed {
            assert!(
                self.closed.is_some(),
                "Closed state without Closed event after a drain"
            );
            assert_eq!(self.c.poll_timeout(), None, "timer running while closed");
        }
        if let Some(t) = self.c.token() {
            assert!(!t.is_sentinel(), "sentinel token adopted");
        }
        tether_fuzz::check_timeout(&self.c, self.now, "client");
    }

    fn input(&mut self, now: Instant, bytes: &[u8]) {
        let state = self.c.state();
        let r = match self.c.handle_input(now, (), bytes) {
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
        assert_eq!(r.needed(), None);
        let mut chunks = false;
        match r.app() {
            Some(ClientApp::Chunks(app)) => {
                assert!(!Self::CHUNKS, "a raw chunk packet with the chunk layer");
                assert_eq!(
                    self.c.state(),
                    ClientState::Online,
                    "chunks delivered while not online"
                );
                assert_eq!(state, ClientState::Online);
                assert!(!app.header.flags.control);
                let start = app.payload.as_ptr() as usize - bytes.as_ptr() as usize;
                assert!(start + app.payload.len() <= bytes.len());
            }
            Some(ClientApp::ChunksReady) => {
                assert!(Self::CHUNKS, "ChunksReady without the chunk layer");
                assert_eq!(state, ClientState::Online);
                chunks = true;
            }
            Some(ClientApp::Close { reason }) => {
                assert!(
                    matches!(state, ClientState::Connecting | ClientState::Online),
                    "CLOSE reason delivered in {state:?}"
                );
                assert_eq!(self.c.state(), ClientState::Closed, "CLOSE without closing");
                if !reason.is_empty() {
                    tether_fuzz::game_check_reason(*reason, bytes);
                }
                assert!(self.c.peer_close_reason().is_some());
            }
            Some(ClientApp::ServerInfo(info)) => {
                assert!(
                    Some(info.token) == self.info_token
                        || (info.token == -1 && state == ClientState::Online),
                    "server info with token {} (asked {:?})",
                    info.token,
                    self.info_token
                );
            }
            Some(other) => panic!("unknown app value {other:?}"),
            None => {}
        }
        if chunks {
            self.read_chunks();
        }
    }

    fn ack_sel(&self, r: &mut OpReader<'_>) -> u16 {
        match r.u8() % 4 {
            0 => 0,
            1 => self.c.peer_ack(),
            2 => self.sequence,
            _ => r.u16(),
        }
    }

    fn token_sel(&self, r: &mut OpReader<'_>) -> Option<Token> {
        match r.u8() % 5 {
            0 => None,
            1 => self.c.token(),
            2 => Some(FIXED),
            3 => Some(Token::UNKNOWN),
            _ => Some(Token(r.array4())),
        }
    }

    /// Op 14: the inputs added with the chunk layer
    fn extended(&mut self, r: &mut OpReader<'_>) {
        match r.u8() % 5 {
            0 => {
                // a Huffman-compressed control or chunk packet
                let kind = r.u8();
                let ack = self.ack_sel(r);
                let token = self.token_sel(r);
                let body = r.blob();
                let plain = if kind & 1 == 0 {
                    tether_fuzz::game_control(kind >> 1, ack, token, body)
                } else {
                    tether_fuzz::game_chunks(0, kind >> 1, ack, token, body)
                };
                let bytes = tether_fuzz::game_compress(&plain);
                self.input(self.now, &bytes);
            }
            1 => {
                // a connectionless datagram: a server-info answer, or raw bytes
                let f = r.u8();
                let bytes = if f & 1 == 0 {
                    let token = match f >> 1 & 3 {
                        0 => self.info_token.unwrap_or(0),
                        1 => -1,
                        _ => r.u16().into(),
                    };
                    let name = r.blob();
                    let info = ServerInfo {
                        kind: if f & 8 != 0 {
                            InfoKind::Extended {
                                map_crc: 1,
                                map_size: 2,
                            }
                        } else {
                            InfoKind::Vanilla
                        },
                        token,
                        version: Str::new("0.6.4"),
                        name: Str::from_bytes(name),
                        map: Str::new("m"),
                        game_type: Str::new("DM"),
                        flags: 0,
                        num_players: 0,
                        max_players: 8,
                        num_clients: 0,
                        max_clients: 8,
                        clients: ClientList::EMPTY,
                    };
                    let mut out = vec![0u8; info.buffer_len()];
                    let n = info.emit(&mut out).expect("exact buffer");
                    out.truncate(n);
                    out
                } else {
                    let mut b = vec![0xff; 6];
                    b.extend_from_slice(r.blob());
                    b
                };
                self.input(self.now, &bytes);
            }
            2 => {
                // a forged CONNECT_ACCEPT: any token, the sentinels included
                let token = match r.u8() % 4 {
                    0 => Some(Token([0xff; 4])),
                    1 => Some(Token([0; 4])),
                    2 => None,
                    _ => Some(Token(r.array4())),
                };
                let bytes = tether_fuzz::game_control(2, 0, token, &[]);
                self.input(self.now, &bytes);
            }
            3 => {
                let token = u32::from(r.u16()) | u32::from(r.u8()) << 16;
                let extended = token & 1 != 0;
                let state = self.c.state();
                match self.c.request_info(self.now, token, extended) {
                    Ok(()) => {
                        let mask = if extended { 0xFF_FFFF } else { 0xFF };
                        self.info_token = Some((token & mask) as i32);
                    }
                    Err(Error::Closed) => assert_eq!(state, ClientState::Closed),
                    Err(e) => panic!("request_info: {e:?}"),
                }
            }
            _ => {
                // well-formed chunks (vital ones near the expected sequence), maybe compressed
                let f = r.u8();
                let ack = self.ack_sel(r);
                let token = if f & 2 != 0 {
                    self.token_sel(r)
                } else {
                    self.c.token()
                };
                let bytes = tether_fuzz::game_chunk_packet(r, f, ack, token, self.c.ack());
                self.input(self.now, &bytes);
            }
        }
    }
}

impl Variant for H<ControlOnly> {
    const CHUNKS: bool = false;

    fn op8(&mut self, r: &mut OpReader<'_>) {
        self.c.set_ack(r.u16());
    }

    fn op9(&mut self, r: &mut OpReader<'_>) {
        self.sequence = r.u16() % 1024;
        self.c.set_sequence(self.sequence);
    }

    fn op10(&mut self, r: &mut OpReader<'_>) {
        let f = r.u8();
        let num_chunks = r.u8();
        let payload = r.blob();
        let flags = Flags {
            compression: f & 1 != 0,
            resend: f & 2 != 0,
            control: f & 4 != 0,
        };
        let mut out = [0u8; 2048];
        let state = self.c.state();
        let online = state == ClientState::Online;
        match self
            .c
            .send_chunks(self.now, flags, num_chunks, payload, &mut out)
        {
            Ok(t) => {
                assert!(online, "send_chunks succeeded while not online");
                let header = tether_fuzz::game_check_sent_chunks(
                    &out[..t.len],
                    self.c.token(),
                    payload,
                    flags.compression,
                );
                assert_eq!(header.num_chunks, num_chunks);
                assert_eq!(header.ack, self.c.ack());
            }
            Err(Error::NotOpen) => assert!(matches!(
                state,
                ClientState::Offline | ClientState::Connecting
            )),
            Err(Error::Closed) => assert_eq!(state, ClientState::Closed),
            Err(Error::TooLong { len, max }) => assert!(max == MAX_PACKET_LEN && len > max),
            Err(e) => panic!("send_chunks: {e:?}"),
        }
    }

    fn read_chunks(&mut self) {}
}

impl Variant for H<FuzzLayer> {
    const CHUNKS: bool = true;

    fn op8(&mut self, r: &mut OpReader<'_>) {
        let flush = r.u8() & 1 != 0;
        let data = r.blob();
        let state = self.c.state();
        let before = self.c.unacked();
        match self.c.send_vital(self.now, data, flush) {
            Ok(seq) => {
                assert_eq!(state, ClientState::Online);
                assert!(seq < 1024);
                assert_eq!(self.c.unacked(), before + 1);
            }
            Err(Error::NotOpen) => assert!(matches!(
                state,
                ClientState::Offline | ClientState::Connecting
            )),
            Err(Error::Closed) => assert_eq!(state, ClientState::Closed),
            Err(Error::TooLong { len, max }) => assert!(max == 1023 && len > max),
            Err(Error::TooManyInFlight) => assert!(before > 0),
            Err(e) => panic!("send_vital: {e:?}"),
        }
    }

    fn op9(&mut self, _r: &mut OpReader<'_>) {}

    fn op10(&mut self, r: &mut OpReader<'_>) {
        let data = r.blob();
        let state = self.c.state();
        let mut out = [0u8; 2048];
        match self.c.send_non_vital(self.now, data, &mut out) {
            Ok(t) => {
                assert_eq!(state, ClientState::Online);
                tether_fuzz::game_check_chunk_packet(
                    &out[..t.len],
                    self.c.token(),
                    Some(self.c.ack()),
                );
            }
            Err(Error::NotOpen) => assert!(matches!(
                state,
                ClientState::Offline | ClientState::Connecting
            )),
            Err(Error::Closed) => assert_eq!(state, ClientState::Closed),
            Err(Error::TooLong { len, max }) => assert!(max == 1023 && len > max),
            Err(e) => panic!("send_non_vital: {e:?}"),
        }
    }

    fn read_chunks(&mut self) {
        let mut n = 0;
        while let Some(chunk) = self.c.poll_chunk() {
            n += 1;
            assert!(
                n <= 255 + 16,
                "more chunks than a packet and the reorder buffer hold"
            );
            assert!(chunk.data.len() <= 1023);
            if chunk.flags.vital {
                let want = seq::next(self.next_vital.wrapping_sub(1) % 1024);
                assert_eq!(chunk.seq, want, "vital chunks out of order or twice");
                self.next_vital = seq::next(want);
            }
        }
        assert_eq!(self.c.ack(), self.next_vital.wrapping_add(1023) % 1024);
    }
}

fn run<L: Layer>(r: &mut OpReader<'_>, c: Client<E, L>)
where
    H<L>: Variant,
{
    let mut h = H {
        hold: 0,
        was_held: false,
        c,
        now: Instant::from_millis(1_000),
        sequence: 0,
        tiny: None,
        connected: 0,
        closed: None,
        closes_after: 0,
        local_close_sends: false,
        sent_close: 0,
        last_state: ClientState::Offline,
        next_vital: 1,
        info_token: None,
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
                let bytes = r.blob().to_vec();
                h.input(h.now, &bytes);
            }
            4 => {
                // a well-formed control packet
                let id = r.u8();
                let ack = h.ack_sel(r);
                let token = h.token_sel(r);
                let reason = r.blob();
                let bytes = tether_fuzz::game_control(id, ack, token, reason);
                h.input(h.now, &bytes);
            }
            5 => {
                // a well-formed chunk packet
                let f = r.u8();
                let num_chunks = r.u8();
                let ack = h.ack_sel(r);
                let token = h.token_sel(r);
                let payload = r.blob();
                let bytes = tether_fuzz::game_chunks(f, num_chunks, ack, token, payload);
                h.input(h.now, &bytes);
            }
            6 => {
                let state = h.c.state();
                match h.c.connect(h.now) {
                    Ok(()) => assert_eq!(state, ClientState::Offline),
                    Err(Error::AlreadyStarted) => assert!(matches!(
                        state,
                        ClientState::Connecting | ClientState::Online
                    )),
                    Err(Error::Closed) => assert_eq!(state, ClientState::Closed),
                    Err(e) => panic!("connect: {e:?}"),
                }
            }
            7 => {
                let reason = r.text();
                let state = h.c.state();
                match h.c.close(h.now, &reason) {
                    Ok(()) => {
                        assert_ne!(state, ClientState::Closed);
                        assert_eq!(h.c.state(), ClientState::Closed);
                        if state != ClientState::Offline {
                            h.local_close_sends = true;
                        }
                    }
                    Err(Error::Closed) => assert_eq!(state, ClientState::Closed),
                    Err(Error::QueueFull) => assert!(h.hold > 0 || h.was_held),
                    Err(e) => panic!("close: {e:?}"),
                }
            }
            8 => h.op8(r),
            9 => h.op9(r),
            10 => h.op10(r),
            11 => {
                // handle_timeout before the deadline must do nothing
                if h.hold == 0 && !h.was_held && is_spurious(&h.c, h.now) {
                    let before = h.c.poll_timeout();
                    let state = h.c.state();
                    h.c.handle_timeout(h.now);
                    assert_eq!(
                        h.c.poll_timeout(),
                        before,
                        "spurious handle_timeout moved the timer"
                    );
                    assert_eq!(h.c.state(), state);
                    let n = drain_transmits(&mut h.c, h.now, 2048, None, 64, |_, _, _| {});
                    assert_eq!(n, 0, "spurious handle_timeout queued a frame");
                    assert!(
                        h.c.poll_event().is_none(),
                        "spurious handle_timeout queued an event"
                    );
                }
            }
            12 => {
                // the caller's clock steps back: a datagram stamped earlier than the latest now,
                // and time goes on from there (the machine takes the step as no time passing)
                let back = tether_net::Duration::from_millis(u64::from(r.u16()));
                let bytes = r.blob().to_vec();
                h.now = h.now - back;
                h.input(h.now, &bytes);
            }
            13 => {
                // skip the drains of the next 1..=4 ops
                h.hold = r.u8() % 4 + 1;
                continue;
            }
            14 => h.extended(r),
            _ => {}
        }
        h.after_op();
    }
}

fuzz_target!(|data: &[u8]| {
    let mut r = OpReader::new(data);
    let flags = r.u8();
    let config = ClientConfig::new()
        .with_vanilla(flags & 1 != 0)
        .with_connect_resend(interval(r.u8()))
        .with_connect_timeout(interval(r.u8()))
        .with_keep_alive(interval(r.u8()))
        .with_timeout(interval(r.u8()))
        .with_accept_retry(match r.u8() {
            0 => None,
            b => Some(interval(b)),
        });
    if flags & 2 != 0 {
        let chunks = if flags & 4 != 0 {
            ChunkConfig::fast()
        } else {
            ChunkConfig::new()
        };
        let c: Box<Client<E, FuzzLayer>> = Box::new(Client::with_chunks(config, chunks));
        run(&mut r, *c);
    } else {
        run(&mut r, Client::<E>::with_capacities(config));
    }
});
