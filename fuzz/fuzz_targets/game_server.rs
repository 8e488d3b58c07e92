//! Game server machine (4 slots, 5 peer addresses): replays a stream of (time step, datagram from
//! a peer, command) ops and checks the machine invariants after every step.
//!
//! Input (see `tether_fuzz::OpReader`): 6 config bytes (vanilla policy; keep_alive, timeout,
//! connect_accept_resend as `interval` bytes; a secret fill byte; max_peers 0..=4 (0 is clamped
//! to 1) or 5 = no limit), then ops. An op byte's low 4
//! bits pick the op; bit 7 makes the drain after it start with a tiny buffer.
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
//! drain no input or command is refused with `QueueFull`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_net::game::wire::{self, Control, Packet, Token, TokenMode, MAX_PACKET_LEN};
use tether_net::game::{
    CloseCause, Error, Flags, Server, ServerApp, ServerConfig, ServerEvent, ServerState,
    TokenSecret, VanillaPolicy, CLOSE_QUEUE_LEN, STATELESS_QUEUE_LEN,
};
use tether_net::{FrameKind, Instant};
use tether_fuzz::{drain_events, drain_transmits, interval, is_spurious, step, OpReader};

const N: usize = 4;
const E: usize = 8;
const PEERS: usize = 5;
const MAX_FRAMES: usize = STATELESS_QUEUE_LEN + CLOSE_QUEUE_LEN + 3 * N;
const MAX_EVENTS: usize = E + N + 1;
const FIXED: Token = Token([0x12, 0x34, 0x56, 0x78]);

struct H {
    /// ops left whose drain is skipped (queues fill up: refusal paths, capacity bounds)
    hold: u8,
    /// the previous op was held: timers refused meanwhile may be due
    was_held: bool,
    s: Server<u8, N, E>,
    now: Instant,
    tiny: Option<usize>,
    online: [bool; PEERS],
    sequence: [u16; PEERS],
    shutdown_called: bool,
    shutdown_complete: bool,
}

tether_fuzz::impl_harness!(H, s: Server<u8, N, E>);

impl H {
    fn drain(&mut self) {
        let tiny = self.tiny.take();
        let now = self.now;
        let online = self.online;
        let complete = self.shutdown_complete;
        drain_transmits(&mut self.s, now, 2048, tiny, MAX_FRAMES, |s, t, bytes| {
            assert_eq!(t.kind, FrameKind::Datagram);
            assert!(t.len <= MAX_PACKET_LEN, "datagram of {} bytes", t.len);
            let p = usize::from(t.to);
            assert!(p < PEERS, "frame to unknown address {p}");
            let parsed = wire::parse(bytes, TokenMode::Detect)
                .unwrap_or_else(|e| panic!("server sent unparsable {bytes:02x?}: {e:?}"));
            let Packet::Control(c) = parsed.packet else {
                panic!("poll_transmit produced a chunk packet {bytes:02x?}")
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
        drain_events(&mut self.s, MAX_EVENTS, |s, e| {
            assert!(!complete, "event {e:?} after ShutdownComplete");
            match e {
                ServerEvent::Connected { peer, token } => {
                    let p = usize::from(peer);
                    assert!(p < PEERS);
                    assert!(!online[p], "second Connected for peer {p} without Closed");
                    online[p] = true;
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
        tether_fuzz::check_timeout(&self.s, self.now, "server");
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
        match r.app() {
            Some(ServerApp::Chunks(app)) => {
                assert!(
                    self.s.is_online(peer),
                    "chunks delivered for a peer that is not online"
                );
                assert!(!app.header.flags.control);
            }
            Some(ServerApp::Close { reason }) => {
                assert!(
                    !self.s.is_online(peer),
                    "peer {peer} still online after CLOSE"
                );
                tether_fuzz::game_check_reason(*reason, bytes);
            }
            Some(other) => panic!("unknown app value {other:?}"),
            None => {}
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
}

fn peer(r: &mut OpReader<'_>) -> u8 {
    r.u8() % PEERS as u8
}

fuzz_target!(|data: &[u8]| {
    let mut r = OpReader::new(data);
    let vanilla = match r.u8() % 3 {
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
    let mut h = H {
        hold: 0,
        was_held: false,
        s: Server::with_capacities(config),
        now: Instant::from_millis(1_000),
        tiny: None,
        online: [false; PEERS],
        sequence: [0; PEERS],
        shutdown_called: false,
        shutdown_complete: false,
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
                let p = peer(&mut r);
                let bytes = r.blob().to_vec();
                h.input(h.now, p, &bytes);
            }
            4 => {
                let p = peer(&mut r);
                let id = r.u8();
                let ack = h.ack_sel(&mut r, usize::from(p));
                let token = h.token_sel(&mut r, p);
                let reason = r.blob();
                let bytes = tether_fuzz::game_control(id, ack, token, reason);
                h.input(h.now, p, &bytes);
            }
            5 => {
                let p = peer(&mut r);
                let f = r.u8();
                let num_chunks = r.u8();
                let ack = h.ack_sel(&mut r, usize::from(p));
                let token = h.token_sel(&mut r, p);
                let payload = r.blob();
                let bytes = tether_fuzz::game_chunks(f, num_chunks, ack, token, payload);
                h.input(h.now, p, &bytes);
            }
            6 => {
                let p = peer(&mut r);
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
            8 => {
                let p = peer(&mut r);
                let ack = r.u16();
                match h.s.set_ack(p, ack) {
                    Ok(()) => {}
                    Err(Error::UnknownPeer) => assert!(!h.s.is_online(p)),
                    Err(e) => panic!("set_ack: {e:?}"),
                }
            }
            9 => {
                let p = peer(&mut r);
                let seq = r.u16() % 1024;
                if h.s.set_sequence(p, seq).is_ok() {
                    h.sequence[usize::from(p)] = seq;
                }
            }
            10 => {
                let p = peer(&mut r);
                let f = r.u8();
                let num_chunks = r.u8();
                let payload = r.blob();
                let flags = Flags {
                    compression: f & 1 != 0,
                    resend: f & 2 != 0,
                    control: f & 4 != 0,
                };
                let mut out = [0u8; 2048];
                match h
                    .s
                    .send_chunks(h.now, p, flags, num_chunks, payload, &mut out)
                {
                    Ok(t) => {
                        assert!(
                            h.online[usize::from(p)] || h.was_held,
                            "send_chunks to peer {p}, which is not open"
                        );
                        assert!(!h.shutdown_called);
                        assert_eq!(t.to, p);
                        assert!(t.len <= MAX_PACKET_LEN);
                        let token = h.s.peer_token(p);
                        let mode = if token.is_some() {
                            TokenMode::Trailing
                        } else {
                            TokenMode::Vanilla
                        };
                        let parsed =
                            wire::parse(&out[..t.len], mode).expect("own chunk packet parses");
                        let Packet::Chunks(c) = parsed.packet else {
                            panic!("chunks parsed as control")
                        };
                        assert_eq!(c.payload, payload);
                        if !flags.compression {
                            assert_eq!(c.token, token);
                        }
                    }
                    Err(Error::Closed) => assert!(h.shutdown_called),
                    Err(Error::UnknownPeer) => assert!(!h.s.is_online(p)),
                    Err(Error::NotOpen) => assert!(!h.s.is_online(p)),
                    Err(Error::TooLong { len, max }) => {
                        assert!(max == MAX_PACKET_LEN && len > max)
                    }
                    Err(e) => panic!("send_chunks: {e:?}"),
                }
            }
            11 => {
                if h.hold == 0 && !h.was_held && is_spurious(&h.s, h.now) {
                    let before = h.s.poll_timeout();
                    let count = h.s.peer_count();
                    h.s.handle_timeout(h.now);
                    assert_eq!(
                        h.s.poll_timeout(),
                        before,
                        "spurious handle_timeout moved the timer"
                    );
                    assert_eq!(h.s.peer_count(), count);
                    let n = drain_transmits(&mut h.s, h.now, 2048, None, MAX_FRAMES, |_, _, _| {});
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
                let p = peer(&mut r);
                let bytes = r.blob().to_vec();
                h.now = h.now - back;
                h.input(h.now, p, &bytes);
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
