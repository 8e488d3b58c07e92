//! LongPort client machine (TCP or WebSocket, 4 requests in flight, 8 events): replays a stream
//! of (time step, server bytes / valid server packets / WebSocket frames, caller command) ops and
//! checks the machine invariants after every step.
//!
//! Input (see `tether_fuzz::OpReader`): 8 config bytes, then ops; an op byte's low 5 bits pick
//! the op, bit 7 makes the drain after it start with a tiny buffer. Valid server packets use the
//! request ids the client actually sent (login, heartbeat, business), so the fuzzer gets past the
//! codecs into the state machine.
//!
//! Invariants: no panic; `poll_timeout` is `None` or not before the latest `now`; no timer
//! livelock; early `handle_timeout` is a no-op; bounded frames and events per drain; one
//! `Disconnected` per `ConnectTransport` (a connection ends with `Disconnected` or the final
//! `Closed`), `ConnectTransport` only when no connection is outstanding; `Closed` at most once
//! and last, after every request outcome; every business request gets exactly one outcome
//! (response, timeout or failure) and `in_flight` matches; data frames only while a transport is
//! open and logged in / logging in, never after `Disconnected` or `Closed` (only the WebSocket
//! close frame may follow); frame kinds match the transport; TCP output is handshake then whole
//! packets (re-deframed), WebSocket binary frames are exactly one packet; the client sends only
//! requests (heartbeat, auth, reconnect) and heartbeat echoes; pings carry a `Heartbeat` body and
//! pongs echo the last ping payload; a WebSocket close frame carries the `close` reason or
//! nothing; `ReconnectScheduled { at }` (in the caller's clock) is not before the earliest `now`
//! given since the last drain. Server heartbeats the client hands over (`HeartbeatEcho`) are
//! echoed with `echo_heartbeat` and must be that echo; with config flag bit 7, request bodies of
//! 16 bytes and more go out as gzip members that inflate to the body; after a status-6 refusal
//! under `QuotaPolicy::Stop` (bit 4 of the last config byte clear) no `TokenNeeded` and no
//! dial follow until the next `connect`. Ops 27 (`send_heartbeat`) and 28 (a status-6 answer
//! to the login) are the newer ones.
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use tether_fuzz::{drain_events, drain_transmits, interval, is_spurious, step, OpReader};
use tether_net::longport::control::{
    AuthRequest, Body, Close, ErrorBody, Heartbeat, ReconnectRequest, CMD_AUTH, CMD_CLOSE,
    CMD_HEARTBEAT, CMD_RECONNECT,
};
use tether_net::longport::deframe::{decode_message, Frame, StreamDeframer};
use tether_net::longport::wire::{Kind, Packet, DEFAULT_MAX_BODY};
use tether_net::longport::{
    Client, ClientApp as App, ClientConfig, ClientEvent, ClientState, CloseCode, Credentials,
    Error, Handshake, QuotaPolicy, RequestId, SessionGrant, Status,
};
use tether_net::{Duration, FrameKind, Instant};

const REQS: usize = 4;
const EVENTS: usize = 8;
type C = Client<REQS, EVENTS, 64, 32, 64>;
const BUF: usize = 64 * 1024;
/// WsClose, login (+handshake), 4 echoes, pong, heartbeat — with slack
const MAX_FRAMES: usize = 12;
const MAX_EVENTS: usize = EVENTS + REQS + 1;
/// The reason op 19 passes to `close`
const CLOSE_REASON: &str = "bye";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conn {
    None,
    Dialing,
    Up,
}

struct H {
    /// ops left whose drain is skipped (queues fill up: refusal paths, capacity bounds)
    hold: u8,
    /// `now` of the last complete drain, or an earlier `now` given since: events queued since
    /// are stamped no earlier
    floor: Instant,
    /// the previous op was held: timers refused meanwhile may be due
    was_held: bool,
    c: C,
    now: Instant,
    tcp: bool,
    tiny: Option<usize>,
    conn: Conn,
    /// `Disconnected` (or `Closed`) seen for the current connection: only a WsClose may follow
    closed: bool,
    final_seen: bool,
    ws_closes: u32,
    outstanding: BTreeSet<u32>,
    /// server-side view of the client's TCP output on the current transport
    stream: Vec<u8>,
    stream_deframer: StreamDeframer,
    /// ids the server last received
    login_rid: u32,
    hb_rid: u32,
    ping_hb_id: Option<i32>,
    last_ping_payload: Option<Vec<u8>>,
    /// bytes from the "server" not yet consumed by the client (TCP)
    rx: Vec<u8>,
    /// `QuotaPolicy::Stop` configured
    quota_stop: bool,
    /// a status-6 refusal under `QuotaPolicy::Stop` was seen, no `connect` since
    quota_stopped: bool,
}

tether_fuzz::impl_harness!(H, c: C);

impl H {
    fn check_packet(&mut self, p: &Packet<'_>, business: Option<u32>) {
        match p.header.kind {
            Kind::Request { request_id, .. } => {
                let request_id = request_id.0;
                assert_ne!(request_id, 0, "request id 0");
                if let Some(id) = business {
                    assert_eq!(request_id, id);
                    assert!(p.header.cmd > CMD_RECONNECT);
                    return;
                }
                match p.header.cmd {
                    CMD_HEARTBEAT => {
                        Heartbeat::decode(p.body).expect("heartbeat body decodes");
                        self.hb_rid = request_id;
                    }
                    CMD_AUTH => {
                        AuthRequest::decode(p.body).expect("auth body decodes");
                        self.login_rid = request_id;
                    }
                    CMD_RECONNECT => {
                        let r = ReconnectRequest::decode(p.body).expect("reconnect body decodes");
                        assert!(!r.session_id.is_empty(), "reconnect with an empty session");
                        self.login_rid = request_id;
                    }
                    cmd => panic!("poll_transmit produced a request with cmd {cmd}"),
                }
                assert!(
                    !self.outstanding.contains(&request_id),
                    "control request reuses the id of business request {request_id}"
                );
            }
            Kind::Response { status, .. } => {
                assert!(business.is_none());
                assert_eq!(
                    p.header.cmd, CMD_HEARTBEAT,
                    "client responses are heartbeat echoes"
                );
                assert_eq!(status, Status::Success);
            }
            Kind::Push => panic!("client sent a push"),
        }
    }

    /// Append TCP output to the server-side view; every transmit must end on a packet boundary
    fn stream_out(&mut self, bytes: &[u8], business: Option<u32>) {
        self.stream.extend_from_slice(bytes);
        let mut packets = 0;
        let mut handshakes = 0;
        loop {
            let stream = std::mem::take(&mut self.stream);
            match self.stream_deframer.decode(&stream) {
                Ok(Frame::Need(_)) => {
                    self.stream = stream;
                    break;
                }
                Ok(Frame::Handshake(h, n)) => {
                    assert!(business.is_none());
                    assert_eq!(h, Handshake::OPENAPI);
                    handshakes += 1;
                    self.stream = stream[n..].to_vec();
                }
                Ok(Frame::Packet(p, n)) => {
                    packets += 1;
                    self.check_packet(&p, business);
                    self.stream = stream[n..].to_vec();
                }
                Err(e) => panic!("client TCP output does not deframe: {e:?}"),
            }
        }
        assert!(
            self.stream.is_empty(),
            "a Stream transmit ends inside a packet"
        );
        assert!(
            packets + handshakes >= 1 && packets <= 1,
            "a transmit holds one packet (after the handshake)"
        );
    }

    fn drain_once(&mut self) -> usize {
        let tiny = self.tiny.take();
        let now = self.now;
        let mut frames: Vec<(FrameKind, Vec<u8>, ClientState)> = Vec::new();
        let n = drain_transmits(&mut self.c, now, BUF, tiny, MAX_FRAMES, |c, t, bytes| {
            assert_eq!(t.len, bytes.len());
            frames.push((t.kind, bytes.to_vec(), c.state()));
        });
        for (kind, bytes, state) in frames {
            if tether_fuzz::trace_enabled() {
                eprintln!("    frame {kind:?} {:02x?}", &bytes[..bytes.len().min(24)]);
            }
            if let FrameKind::WsClose(code) = kind {
                assert!(!self.tcp, "WsClose on TCP");
                assert!(
                    bytes.is_empty() || bytes == CLOSE_REASON.as_bytes(),
                    "{bytes:02x?}"
                );
                assert!(code == 1000 || code == 1002, "close code {code}");
                assert_eq!(self.conn, Conn::Up, "WsClose without an open transport");
                self.ws_closes += 1;
                assert!(self.ws_closes <= 1, "two WsClose frames on one transport");
                continue;
            }
            assert!(!self.closed, "{kind:?} frame after Disconnected/Closed");
            assert_eq!(
                self.conn,
                Conn::Up,
                "{kind:?} frame without an open transport"
            );
            assert_eq!(self.ws_closes, 0, "{kind:?} after WsClose");
            assert!(
                matches!(state, ClientState::LoggingIn | ClientState::Connected),
                "{kind:?} frame in state {state:?}"
            );
            match kind {
                FrameKind::Stream => {
                    assert!(self.tcp, "Stream frame on WebSocket");
                    self.stream_out(&bytes, None);
                }
                FrameKind::WsBinary => {
                    assert!(!self.tcp, "WsBinary on TCP");
                    let (p, trailing) = decode_message(&bytes, DEFAULT_MAX_BODY)
                        .expect("binary frame is one packet");
                    assert_eq!(trailing, 0);
                    self.check_packet(&p, None);
                }
                FrameKind::WsPing => {
                    assert!(!self.tcp);
                    assert!(bytes.len() <= 125);
                    let hb = Heartbeat::decode(&bytes).expect("ping payload is a Heartbeat");
                    self.ping_hb_id = hb.heartbeat_id;
                }
                FrameKind::WsPong => {
                    assert!(!self.tcp);
                    assert_eq!(
                        Some(&bytes),
                        self.last_ping_payload.as_ref(),
                        "pong payload"
                    );
                }
                other => panic!("{other:?} from the LongPort client"),
            }
        }

        let mut out: Vec<ClientEvent> = Vec::new();
        let m = drain_events(&mut self.c, MAX_EVENTS, |_, e| out.push(e));
        for e in out {
            self.on_event(e);
        }
        n + m
    }

    fn on_event(&mut self, e: ClientEvent) {
        if tether_fuzz::trace_enabled() {
            eprintln!("    event {e:?}");
        }
        assert!(!self.final_seen, "event {e:?} after Closed");
        match e {
            ClientEvent::ConnectTransport { .. } => {
                assert_eq!(
                    self.conn,
                    Conn::None,
                    "ConnectTransport while a connection is outstanding"
                );
                assert!(!self.quota_stopped, "a dial after a quota refusal");
                self.conn = Conn::Dialing;
                self.closed = false;
                self.ws_closes = 0;
            }
            ClientEvent::Disconnected { cause } => {
                assert_ne!(
                    self.conn,
                    Conn::None,
                    "Disconnected ({cause:?}) without a connection"
                );
                self.conn = Conn::None;
                self.closed = true;
                self.rx.clear();
            }
            ClientEvent::Connected { .. } => {
                assert_eq!(self.conn, Conn::Up, "{e:?} without an open transport");
            }
            ClientEvent::LoginFailed { status, .. } => {
                assert_eq!(self.conn, Conn::Up, "{e:?} without an open transport");
                // a refusal stops the client only until the caller connects again: when the
                // event is drained late (a held queue), the caller may already have done so
                if status == Status::PermissionDenied
                    && self.quota_stop
                    && self.c.state() == ClientState::Stopped
                {
                    self.quota_stopped = true;
                }
            }
            ClientEvent::HeartbeatRtt { .. } => assert_eq!(self.conn, Conn::Up),
            ClientEvent::ReconnectScheduled { at, .. } => assert!(at >= self.floor),
            ClientEvent::RequestTimedOut { id } | ClientEvent::RequestFailed { id, .. } => {
                assert!(
                    self.outstanding.remove(&id.0),
                    "outcome for unknown request {id:?}"
                );
            }
            ClientEvent::Closed { .. } => {
                assert!(
                    self.outstanding.is_empty(),
                    "Closed before the outcomes of {:?}",
                    self.outstanding
                );
                self.conn = Conn::None;
                self.closed = true;
                self.final_seen = true;
                self.rx.clear();
            }
            ClientEvent::TokenNeeded => {
                assert!(
                    !self.quota_stopped,
                    "a token asked for after a quota refusal"
                );
            }
            other => panic!("unknown event {other:?}"),
        }
    }

    fn drain(&mut self) {
        for _ in 0..4 {
            if self.drain_once() == 0 {
                break;
            }
        }
        self.floor = self.now;
    }

    fn after_op(&mut self) {
        if !tether_fuzz::settle(self) {
            return;
        }
        assert_eq!(
            self.c.in_flight(),
            self.outstanding.len(),
            "in_flight differs from the requests without outcome"
        );
        if self.final_seen {
            assert_eq!(self.c.state(), ClientState::Closed);
            assert_eq!(self.c.poll_timeout(), None, "timer running after Closed");
        }
        if self.c.state() == ClientState::Closed {
            assert!(
                self.final_seen,
                "state Closed but no Closed event after a full drain"
            );
        }
        tether_fuzz::check_timeout(&self.c, self.now, "longport client");
    }

    fn check_app(&mut self, app: &App<'_>) {
        match app {
            App::Response { request_id, .. } => {
                assert!(
                    self.outstanding.remove(&request_id.0),
                    "response for {request_id:?}, which is not in flight"
                );
            }
            App::Push { cmd, .. } => assert_ne!(*cmd, CMD_CLOSE, "Close push handed to the app"),
            // the Close push and the refused login come with their texts, borrowed
            App::Close { reason, .. } => assert!(reason.len() < BUF),
            App::LoginError { status, .. } => assert!(!status.is_success()),
            App::HeartbeatEcho {
                request_id,
                body,
                gzip,
            } => {
                // echo it, as a caller does, and send it with the rest of the output
                assert_eq!(self.conn, Conn::Up, "server heartbeat without a transport");
                let mut out = vec![0u8; BUF];
                let t = self
                    .c
                    .echo_heartbeat(self.now, *request_id, body, *gzip, &mut out)
                    .expect("echo of a heartbeat handed over");
                let bytes = out[..t.len].to_vec();
                let (p, n) = Packet::parse(&bytes, DEFAULT_MAX_BODY).expect("echo parses");
                assert_eq!(n, bytes.len());
                assert_eq!(
                    p.header.kind,
                    Kind::Response {
                        request_id: *request_id,
                        status: Status::Success
                    }
                );
                assert_eq!(
                    (p.header.cmd, p.header.gzip, p.body),
                    (CMD_HEARTBEAT, *gzip, *body)
                );
                if self.tcp && !self.stream_deframer.awaiting_handshake() {
                    assert_eq!(t.kind, FrameKind::Stream);
                    self.stream_out(&bytes, None);
                }
            }
            other => panic!("unknown app value {other:?}"),
        }
    }

    /// Bytes from the server: a WebSocket message, or appended to the TCP stream and fed the way
    /// a caller's read loop does
    fn input(&mut self, now: Instant, bytes: &[u8]) {
        if !self.tcp {
            for _ in 0..4 {
                match self.c.handle_input(now, (), bytes) {
                    Ok(r) => {
                        assert_eq!(
                            r.bytes_consumed(),
                            bytes.len(),
                            "WebSocket messages are consumed whole"
                        );
                        if let Some(app) = r.app() {
                            self.check_app(app);
                        }
                        return;
                    }
                    Err(_) if self.hold > 0 => return,
                    Err(_) => self.drain(),
                }
            }
            panic!("input refused as busy after draining");
        }
        self.rx.extend_from_slice(bytes);
        let mut busy = 0;
        for _ in 0..256 {
            if self.rx.is_empty() {
                return;
            }
            let rx = std::mem::take(&mut self.rx);
            match self.c.handle_input(now, (), &rx) {
                Err(_) if self.hold > 0 => {
                    self.rx = rx;
                    return;
                }
                Err(_) => {
                    self.rx = rx;
                    busy += 1;
                    assert!(busy < 4, "input refused as busy after draining");
                    self.drain();
                    continue;
                }
                Ok(r) => {
                    if let Some(app) = r.app() {
                        self.check_app(app);
                    }
                    let used = r.bytes_consumed();
                    assert!(used <= rx.len());
                    if used == 0 {
                        if let Some(n) = r.needed() {
                            assert!(n > rx.len(), "needs {n} with {} buffered", rx.len());
                        }
                        self.rx = rx;
                        return;
                    }
                    self.rx = rx[used..].to_vec();
                }
            }
            // events of this input (a Disconnected clears rx)
            if self.hold == 0 {
                self.drain();
            }
        }
    }

    fn rid(&self, r: &mut OpReader<'_>) -> u32 {
        match r.u8() % 4 {
            0 => self.login_rid,
            1 => self.hb_rid,
            2 => {
                let i = usize::from(r.u8());
                let ids: Vec<u32> = self.outstanding.iter().copied().collect();
                if ids.is_empty() {
                    1
                } else {
                    ids[i % ids.len()]
                }
            }
            _ => u32::from_le_bytes(r.array4()),
        }
    }
}

fn status(r: &mut OpReader<'_>) -> Status {
    match r.u8() {
        b @ 0..=127 => Status::from(b % 8),
        b => Status::from(b),
    }
}

fn expires(r: &mut OpReader<'_>) -> i64 {
    match r.u8() % 7 {
        0 => 0,
        1 => -1,
        2 => 1_700_086_400_000,
        3 => 5_000,
        4 => i64::MAX,
        5 => 4_000_000_000_000,
        _ => i64::from_le_bytes([
            r.u8(),
            r.u8(),
            r.u8(),
            r.u8(),
            r.u8(),
            r.u8(),
            r.u8(),
            r.u8(),
        ]),
    }
}

fn text(r: &mut OpReader<'_>) -> String {
    match r.u8() % 4 {
        0 => String::new(),
        1 => "s1".into(),
        2 => "x".repeat(40),
        _ => r.text(),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut r = OpReader::new(data);
    let flags = r.u8();
    let tcp = flags & 1 == 0;
    let config = if tcp {
        ClientConfig::tcp()
    } else {
        ClientConfig::websocket()
    };
    // (the setters clamp: heartbeat intervals below 1 s become 1 s)
    let mut config = config
        .with_any_inbound_is_alive(flags & 2 != 0)
        .with_relative_expiry_heuristic(flags & 4 != 0)
        .with_connect_timeout(interval(r.u8()))
        .with_auth_timeout(interval(r.u8()));
    let hb = r.u8();
    config = config.with_heartbeat_interval(if flags & 8 != 0 {
        None
    } else {
        Some(interval(hb))
    });
    config = config
        .with_heartbeat_timeout(interval(r.u8()))
        .with_request_timeout(interval(r.u8()));
    let rb = r.u8();
    config = config.with_reconnect_backoff(interval(rb), interval(rb >> 4));
    let last = r.u8();
    if flags & 32 != 0 {
        config = config.with_max_reconnect_attempts(Some(u32::from((last >> 2) % 4)));
    }
    if flags & 64 != 0 {
        config = config.with_max_body(64);
    }
    let gzip_requests = flags & 128 != 0;
    if gzip_requests {
        config = config.with_gzip_requests(Some(16));
    }
    let quota_stop = (last >> 4) & 1 == 0;
    if !quota_stop {
        config = config.with_quota_policy(QuotaPolicy::RetryAfter(Duration::from_secs(5)));
    }
    config = config.with_first_request_id(match last % 4 {
        0 => 1,
        1 => u32::MAX - 1,
        2 => u32::MAX,
        _ => 0x7FFF_FFFF,
    });
    let mut c = C::with_capacities(config);
    if flags & 16 != 0 {
        // Unix ms 1.7e12 at the caller's epoch
        c.set_wall_clock(Instant::ZERO, 1_700_000_000_000);
    }
    let mut h = H {
        hold: 0,
        floor: Instant::from_millis(1_000),
        was_held: false,
        c,
        now: Instant::from_millis(1_000),
        tcp,
        tiny: None,
        conn: Conn::None,
        closed: false,
        final_seen: false,
        ws_closes: 0,
        outstanding: BTreeSet::new(),
        stream: Vec::new(),
        stream_deframer: StreamDeframer::new(true, DEFAULT_MAX_BODY),
        login_rid: 1,
        hb_rid: 1,
        ping_hb_id: None,
        last_ping_payload: None,
        rx: Vec::new(),
        quota_stop,
        quota_stopped: false,
    };
    tether_fuzz::start(&mut h);
    let mut ops = 0;
    while let Some(op) = tether_fuzz::next_op(&mut r, &mut ops, 31, h.now) {
        if op & 0x80 != 0 {
            h.tiny = Some(usize::from((op >> 5) & 3) * 5);
        }
        let now = h.now;
        match op & 31 {
            0..=2 => {
                let d = step(&mut r, op & 31);
                tether_fuzz::advance(&mut h, d);
                continue;
            }
            3 => {
                let bytes = r.blob().to_vec();
                h.input(now, &bytes);
            }
            4 => {
                // login response
                let rid = h.rid(&mut r);
                let st = status(&mut r);
                let body = match r.u8() % 4 {
                    0 => {
                        let sid = text(&mut r);
                        let g = SessionGrant {
                            session_id: &sid,
                            expires: expires(&mut r),
                            limit: u32::from(r.u8()),
                            online: u32::from(r.u8()),
                        };
                        tether_fuzz::lp_encode(&g)
                    }
                    1 => {
                        let msg = text(&mut r);
                        tether_fuzz::lp_encode(&ErrorBody::new(u64::from(r.u16()), &msg))
                    }
                    2 => r.blob().to_vec(),
                    _ => Vec::new(),
                };
                let flags = r.u8();
                let cmd = if flags & 2 != 0 {
                    CMD_RECONNECT
                } else {
                    CMD_AUTH
                };
                let body = tether_fuzz::lp_maybe_gzip(flags & 1 != 0, body);
                let p = Packet::response(cmd, RequestId(rid), st, &body).with_gzip(flags & 1 != 0);
                h.input(now, &tether_fuzz::lp_emit(&p));
            }
            5 => {
                // heartbeat echo
                let rid = h.hb_rid;
                let body =
                    tether_fuzz::lp_encode(&Heartbeat::new(i64::from(r.u16()), Some(rid as i32)));
                h.input(
                    now,
                    &tether_fuzz::lp_emit(&Packet::response(
                        CMD_HEARTBEAT,
                        RequestId(rid),
                        Status::Success,
                        &body,
                    )),
                );
            }
            6 => {
                // business response
                let rid = h.rid(&mut r);
                let cmd = r.u8();
                let st = status(&mut r);
                let body = if r.u8() & 1 == 0 {
                    let msg = text(&mut r);
                    tether_fuzz::lp_encode(&ErrorBody::new(u64::from(r.u16()), &msg))
                } else {
                    r.blob().to_vec()
                };
                h.input(
                    now,
                    &tether_fuzz::lp_emit(&Packet::response(cmd, RequestId(rid), st, &body)),
                );
            }
            7 => {
                // server heartbeat request
                let rid = u32::from_le_bytes(r.array4());
                let gz = r.u8() & 1 != 0;
                let body = tether_fuzz::lp_maybe_gzip(gz, r.blob().to_vec());
                h.input(
                    now,
                    &tether_fuzz::lp_emit(
                        &Packet::request(CMD_HEARTBEAT, RequestId(rid), 0, &body).with_gzip(gz),
                    ),
                );
            }
            8 => {
                // Close push
                let code = CloseCode::from_i32(i32::from(r.u8() as i8));
                let reason = text(&mut r);
                let gz = r.u8() & 1 != 0;
                let body = tether_fuzz::lp_maybe_gzip(
                    gz,
                    tether_fuzz::lp_encode(&Close::new(code, &reason)),
                );
                h.input(
                    now,
                    &tether_fuzz::lp_emit(&Packet::push(CMD_CLOSE, &body).with_gzip(gz)),
                );
            }
            9 => {
                let cmd = r.u8();
                let body = r.blob().to_vec();
                h.input(now, &tether_fuzz::lp_emit(&Packet::push(cmd, &body)));
            }
            10 => {
                let payload = r.blob().to_vec();
                // an oversized ping is dropped and leaves an earlier queued pong as it was
                if payload.len() <= 125 {
                    h.last_ping_payload = Some(payload.clone());
                }
                h.c.handle_frame(now, (), FrameKind::WsPing, &payload);
            }
            11 => {
                let payload = if r.u8() & 1 == 0 {
                    tether_fuzz::lp_encode(&Heartbeat::new(7, h.ping_hb_id))
                } else {
                    r.blob().to_vec()
                };
                h.c.handle_frame(now, (), FrameKind::WsPong, &payload);
            }
            12 => {
                let code = match r.u8() {
                    b @ 0..=15 => 4000 + u16::from(b),
                    b if b < 128 => 1000 + u16::from(b % 16),
                    _ => r.u16(),
                };
                h.c.handle_frame(now, (), FrameKind::WsClose(code), &[]);
            }
            13 => {
                let token = text(&mut r);
                let pairs: &[(&str, &str)] = match r.u8() % 3 {
                    0 => &[],
                    1 => &[("accept-language", "en")],
                    _ => &[
                        ("a", "1"),
                        ("b", "2"),
                        ("c", "3"),
                        ("d", "4"),
                        ("e", "5"),
                        ("f", "6"),
                        ("g", "7"),
                        ("h", "8"),
                        ("i", "9"),
                    ],
                };
                let state = h.c.state();
                // a connect after a quota refusal is the caller's decision to try again
                let stopped = std::mem::take(&mut h.quota_stopped);
                match h
                    .c
                    .connect(now, Credentials::new(&token).with_metadata(pairs))
                {
                    Ok(()) => assert!(matches!(
                        state,
                        ClientState::Idle
                            | ClientState::WaitingToReconnect
                            | ClientState::NeedToken
                            | ClientState::Stopped
                    )),
                    Err(_) if stopped => h.quota_stopped = true,
                    Err(Error::Closed) => assert_eq!(state, ClientState::Closed),
                    Err(Error::AlreadyConnected) => assert!(matches!(
                        state,
                        ClientState::Connecting | ClientState::LoggingIn | ClientState::Connected
                    )),
                    Err(Error::QueueFull) => {
                        assert!(
                            h.hold > 0 || h.was_held,
                            "connect busy with a drained queue"
                        )
                    }
                    Err(_) => {}
                }
            }
            14 => {
                let token = text(&mut r);
                let _ = h.c.provide_token(now, &token);
            }
            15 => {
                if h.c.reconnect_now(now).is_ok() {
                    // the caller's decision to try again (with a token it provided)
                    h.quota_stopped = false;
                }
            }
            16 => {
                // a caller opens the transport after it saw ConnectTransport: catch up on
                // events a hold left queued
                if h.was_held {
                    h.drain();
                }
                let state = h.c.state();
                match h.c.handle_connected(now) {
                    Ok(()) => {
                        assert_eq!(state, ClientState::Connecting);
                        assert_eq!(
                            h.conn,
                            Conn::Dialing,
                            "handle_connected accepted without ConnectTransport"
                        );
                        h.conn = Conn::Up;
                        h.stream.clear();
                        h.stream_deframer = StreamDeframer::new(true, DEFAULT_MAX_BODY);
                        h.rx.clear();
                        h.last_ping_payload = None;
                        h.ping_hb_id = None;
                    }
                    Err(Error::Closed) => assert_eq!(state, ClientState::Closed),
                    Err(_) => assert_ne!(state, ClientState::Connecting),
                }
            }
            17 => {
                h.c.handle_closed(now, ());
                h.rx.clear();
            }
            18 => {
                let cmd = r.u8();
                let timeout = Duration::from_millis(u64::from(r.u16()));
                let body = r.blob().to_vec();
                let mut out = vec![0u8; BUF];
                let state = h.c.state();
                let in_flight = h.c.in_flight();
                match h.c.send_request(now, cmd, timeout, &body, &mut out) {
                    Ok((RequestId(id), t)) => {
                        assert_eq!(state, ClientState::Connected);
                        assert_eq!(h.conn, Conn::Up);
                        assert!(
                            h.outstanding.insert(id),
                            "request id {id} reused while in flight"
                        );
                        assert_ne!(id, 0);
                        let bytes = out[..t.len].to_vec();
                        if h.tcp && h.stream_deframer.awaiting_handshake() {
                            // only after a hold that fed the login response before the login was
                            // polled (no real server can): the stream view has no handshake yet
                            assert_eq!(t.kind, FrameKind::Stream);
                            let (p, n) =
                                Packet::parse(&bytes, DEFAULT_MAX_BODY).expect("request parses");
                            assert_eq!(n, bytes.len());
                            h.check_packet(&p, Some(id));
                        } else if h.tcp {
                            assert_eq!(t.kind, FrameKind::Stream);
                            h.stream_out(&bytes, Some(id));
                        } else {
                            assert_eq!(t.kind, FrameKind::WsBinary);
                            let (p, trailing) =
                                decode_message(&bytes, DEFAULT_MAX_BODY).expect("request parses");
                            assert_eq!(trailing, 0);
                            if p.header.gzip {
                                assert!(gzip_requests && body.len() >= 16);
                                let mut plain = vec![0u8; body.len()];
                                let n = tether_net::longport::gzip::gunzip(p.body, &mut plain)
                                    .expect("a gzip'd body inflates");
                                assert_eq!(&plain[..n], &body[..]);
                            } else {
                                assert_eq!(p.body, &body[..]);
                            }
                            h.check_packet(&p, Some(id));
                        }
                    }
                    Err(Error::NotOpen) => assert_ne!(state, ClientState::Connected),
                    Err(Error::Closed) => assert_eq!(state, ClientState::Closed),
                    Err(Error::ControlCommand(c)) => assert!(c <= CMD_RECONNECT),
                    Err(Error::TooManyInFlight) => assert!(in_flight >= REQS),
                    Err(e) => panic!("send_request: {e:?}"),
                }
            }
            19 => {
                // (reads no op bytes, as before the reason existed: seeds keep their meaning)
                let state = h.c.state();
                let res = h.c.close(now, CLOSE_REASON);
                assert_eq!(res.is_err(), state == ClientState::Closed, "{res:?}");
                let held = h.hold > 0;
                h.after_op();
                assert!(held || h.final_seen, "close() without a Closed event");
                continue;
            }
            20 => {
                let ms = expires(&mut r);
                h.c.set_wall_clock(now, ms);
            }
            21 => {
                if h.hold == 0 && !h.was_held && is_spurious(&h.c, now) {
                    let before = h.c.poll_timeout();
                    let state = h.c.state();
                    h.c.handle_timeout(now);
                    assert_eq!(
                        h.c.poll_timeout(),
                        before,
                        "spurious handle_timeout moved the timer"
                    );
                    assert_eq!(h.c.state(), state);
                    assert_eq!(h.drain_once(), 0, "spurious handle_timeout produced output");
                }
            }
            22 => {
                let back = Duration::from_millis(u64::from(r.u16()));
                let bytes = r.blob().to_vec();
                // the caller's clock steps back: the machine shifts its timeline and reports
                // deadlines in the stepped clock, which the target then continues from
                let at = now - back;
                h.floor = h.floor.min(at);
                h.now = at;
                h.input(at, &bytes);
            }
            26 => {
                // skip the drains of the next 1..=4 ops
                h.hold = r.u8() % 4 + 1;
                continue;
            }
            27 => {
                let state = h.c.state();
                match h.c.send_heartbeat(now) {
                    Ok(()) => assert_eq!(state, ClientState::Connected),
                    Err(Error::Closed) => assert_eq!(state, ClientState::Closed),
                    Err(Error::NotOpen) => assert_ne!(state, ClientState::Connected),
                    Err(e) => panic!("send_heartbeat: {e:?}"),
                }
            }
            28 => {
                // the login refused for the account's connection quota
                let err =
                    tether_fuzz::lp_encode(&ErrorBody::new(403, "connections limitation is hit"));
                let cmd = if r.u8() & 1 == 0 {
                    CMD_AUTH
                } else {
                    CMD_RECONNECT
                };
                h.input(
                    now,
                    &tether_fuzz::lp_emit(&Packet::response(
                        cmd,
                        RequestId(h.login_rid),
                        Status::PermissionDenied,
                        &err,
                    )),
                );
            }
            _ => {}
        }
        h.after_op();
    }
});
