//! Game client machine: replays a stream of (time step, datagram, command) ops and checks the
//! machine invariants after every step.
//!
//! Input (see `tether_fuzz::OpReader`): 6 config bytes (flags: bit 0 vanilla; connect_resend,
//! connect_timeout, keep_alive, timeout as `interval` bytes; accept_retry: 0 = off, else an
//! `interval` byte), then ops. An op byte's low 4 bits
//! pick the op; bit 7 makes the drain after it start with a tiny buffer of `(op >> 4 & 7) * 3`
//! bytes.
//!
//! Invariants: no panic; `poll_timeout` is `None` or not before the latest `now`; no timer
//! livelock; a timeout call before the deadline is a no-op; at most `E` events and 4 frames per
//! drain; at most one `Connected` and one `Closed` event, in that order, and the state agrees;
//! every frame is a well-formed control packet of at most 1400 bytes with the client's ack and
//! token; after `Closed` only the one CLOSE of a local close goes out; `BufferTooSmall` leaves the
//! frame queued with the announced size; chunk packets are delivered only while online; a CLOSE
//! reason comes back borrowed from the datagram together with the end of the connection; after a
//! drain no input or command is refused with `QueueFull`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_net::game::wire::{self, Control, Packet, Token, TokenMode, MAX_PACKET_LEN};
use tether_net::game::{
    Client, ClientApp, ClientConfig, ClientEvent, ClientState, CloseCause, Error, Flags,
};
use tether_net::{FrameKind, Instant};
use tether_fuzz::{drain_events, drain_transmits, interval, is_spurious, step, OpReader};

const E: usize = 8;
/// Pending control frames: CLOSE, CONNECT, ACCEPT, KEEP_ALIVE
const MAX_FRAMES_PER_DRAIN: usize = 4;
const FIXED: Token = Token([0x12, 0x34, 0x56, 0x78]);

struct H {
    /// ops left whose drain is skipped (queues fill up: refusal paths, capacity bounds)
    hold: u8,
    /// the previous op was held: timers refused meanwhile may be due
    was_held: bool,
    c: Client<E>,
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

tether_fuzz::impl_harness!(H, c: Client<E>);

impl H {
    fn drain(&mut self) {
        let tiny = self.tiny.take();
        let now = self.now;
        let closed = self.closed.is_some();
        let mut closes_after = 0;
        let mut sent_close = 0;
        drain_transmits(
            &mut self.c,
            now,
            2048,
            tiny,
            MAX_FRAMES_PER_DRAIN,
            |c, t, bytes| {
                assert_eq!(t.kind, FrameKind::Datagram);
                assert!(t.len <= MAX_PACKET_LEN, "datagram of {} bytes", t.len);
                let parsed = wire::parse(bytes, TokenMode::Detect)
                    .unwrap_or_else(|e| panic!("client sent unparsable {bytes:02x?}: {e:?}"));
                let Packet::Control(p) = parsed.packet else {
                    panic!("poll_transmit produced a chunk packet {bytes:02x?}")
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
            },
        );
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
                assert_eq!(token, c.token());
                if c.config().vanilla() {
                    assert_eq!(token, None);
                }
            }
            ClientEvent::Closed { cause } => {
                assert!(closed_ev.is_none(), "second Closed event: {cause:?}");
                assert_eq!(c.state(), ClientState::Closed);
                if matches!(cause, CloseCause::Timeout) {
                    assert_eq!(connected, 1, "Timeout before Connected");
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
        match r.app() {
            Some(ClientApp::Chunks(app)) => {
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
            Some(ClientApp::Close { reason }) => {
                assert!(
                    matches!(state, ClientState::Connecting | ClientState::Online),
                    "CLOSE reason delivered in {state:?}"
                );
                assert_eq!(self.c.state(), ClientState::Closed, "CLOSE without closing");
                tether_fuzz::game_check_reason(*reason, bytes);
            }
            Some(other) => panic!("unknown app value {other:?}"),
            None => {}
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
    let mut h = H {
        hold: 0,
        was_held: false,
        c: Client::with_capacities(config),
        now: Instant::from_millis(1_000),
        sequence: 0,
        tiny: None,
        connected: 0,
        closed: None,
        closes_after: 0,
        local_close_sends: false,
        sent_close: 0,
        last_state: ClientState::Offline,
    };
    tether_fuzz::start(&mut h);
    let mut ops = 0;
    while let Some(op) = tether_fuzz::next_op(&mut r, &mut ops, 15, h.now) {
        if op & 0x80 != 0 {
            h.tiny = Some(usize::from((op >> 4) & 7) * 3);
        }
        match op & 15 {
            0..=2 => {
                let d = step(&mut r, op & 15);
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
                let ack = h.ack_sel(&mut r);
                let token = h.token_sel(&mut r);
                let reason = r.blob();
                let bytes = tether_fuzz::game_control(id, ack, token, reason);
                h.input(h.now, &bytes);
            }
            5 => {
                // a well-formed chunk packet
                let f = r.u8();
                let num_chunks = r.u8();
                let ack = h.ack_sel(&mut r);
                let token = h.token_sel(&mut r);
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
            8 => h.c.set_ack(r.u16()),
            9 => {
                h.sequence = r.u16() % 1024;
                h.c.set_sequence(h.sequence);
            }
            10 => {
                let f = r.u8();
                let num_chunks = r.u8();
                let payload = r.blob();
                let flags = Flags {
                    compression: f & 1 != 0,
                    resend: f & 2 != 0,
                    control: f & 4 != 0,
                };
                let mut out = [0u8; 2048];
                let state = h.c.state();
                let online = state == ClientState::Online;
                match h.c.send_chunks(h.now, flags, num_chunks, payload, &mut out) {
                    Ok(t) => {
                        assert!(online, "send_chunks succeeded while not online");
                        assert!(t.len <= MAX_PACKET_LEN);
                        let mode = if h.c.token().is_some() {
                            TokenMode::Trailing
                        } else {
                            TokenMode::Vanilla
                        };
                        let p = wire::parse(&out[..t.len], mode).expect("own chunk packet parses");
                        let Packet::Chunks(c) = p.packet else {
                            panic!("chunk packet parsed as control")
                        };
                        assert_eq!(c.payload, payload);
                        assert_eq!(c.header.num_chunks, num_chunks);
                        assert_eq!(c.header.ack, h.c.ack());
                        if !flags.compression {
                            assert_eq!(c.token, h.c.token());
                        }
                    }
                    Err(Error::NotOpen) => assert!(matches!(
                        state,
                        ClientState::Offline | ClientState::Connecting
                    )),
                    Err(Error::Closed) => assert_eq!(state, ClientState::Closed),
                    Err(Error::TooLong { len, max }) => {
                        assert!(max == MAX_PACKET_LEN && len > max)
                    }
                    Err(e) => panic!("send_chunks: {e:?}"),
                }
            }
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
                    let n = drain_transmits(&mut h.c, h.now, 2048, None, 4, |_, _, _| {});
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
            _ => {}
        }
        h.after_op();
    }
});
