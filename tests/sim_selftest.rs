//! Self-tests of `tether_net::testing` with tiny toy machines
//!
//! * `Pinger` — datagram client: every `interval` it sends a 4-byte big-endian sequence number and
//!   reports the round-trip time of each echo.
//! * `Echo<A>` — server in one of three flavours: datagrams (echo each), a stream with a 1-byte
//!   length prefix (echo each framed message), WebSocket (binary echo, Ping → Pong).
//! * `Talker` — stream/WebSocket client sending length-prefixed messages on command.

use core::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use tether_net::testing::{
    Direction, Fate, Fleet, Hex, Link, LinkConfig, Pair, Rng, SimError, Solo, TraceRecord,
    VirtualClock,
};
use tether_net::{BufferTooSmall, Duration, FrameKind, Instant, Machine, Received, Transmit};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ToyError;

fn write_out<P: Copy>(
    q: &mut VecDeque<(P, FrameKind, Vec<u8>)>,
    buf: &mut [u8],
) -> Result<Option<Transmit<P>>, BufferTooSmall> {
    let Some((to, kind, bytes)) = q.front() else {
        return Ok(None);
    };
    if bytes.len() > buf.len() {
        return Err(BufferTooSmall {
            required: bytes.len(),
        });
    }
    buf[..bytes.len()].copy_from_slice(bytes);
    let t = Transmit {
        to: *to,
        len: bytes.len(),
        kind: *kind,
    };
    q.pop_front();
    Ok(Some(t))
}

/// Parse one 1-byte-length-prefixed message from a stream buffer
fn parse_prefixed(data: &[u8]) -> Received<&[u8]> {
    let Some(&len) = data.first() else {
        return Received::need(1);
    };
    let total = 1 + usize::from(len);
    match data.get(1..total) {
        Some(payload) => Received::with_app(total, payload),
        None => Received::need(total),
    }
}

fn prefixed(payload: &[u8]) -> Vec<u8> {
    let mut v = vec![u8::try_from(payload.len()).unwrap()];
    v.extend_from_slice(payload);
    v
}

// ---------------------------------------------------------------------------------------------
// Pinger: datagram client

#[derive(Debug, Clone, PartialEq, Eq)]
enum PingEvent {
    Pong { seq: u32, rtt: Duration },
}

struct Pinger {
    interval: Duration,
    next: Option<Instant>,
    seq: u32,
    limit: Option<u32>,
    sent_at: HashMap<u32, Instant>,
    out: VecDeque<((), FrameKind, Vec<u8>)>,
    events: VecDeque<PingEvent>,
    closed: bool,
    /// Bug switch: keep pinging after close
    chatty_after_close: bool,
}

impl Pinger {
    fn new(interval: Duration, first: Instant) -> Self {
        Pinger {
            interval,
            next: Some(first),
            seq: 0,
            limit: None,
            sent_at: HashMap::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            closed: false,
            chatty_after_close: false,
        }
    }

    fn limit(mut self, n: u32) -> Self {
        self.limit = Some(n);
        self
    }

    fn close(&mut self) {
        self.closed = true;
        self.out
            .push_back(((), FrameKind::Datagram, b"bye".to_vec()));
        if !self.chatty_after_close {
            self.next = None;
        }
    }
}

impl Machine for Pinger {
    type Peer = ();
    type Event = PingEvent;
    type App<'a> = &'a [u8];
    type Error = ToyError;

    fn handle_input<'a>(
        &mut self,
        now: Instant,
        _from: (),
        data: &'a [u8],
    ) -> Result<Received<&'a [u8]>, ToyError> {
        let seq = u32::from_be_bytes(data.try_into().map_err(|_| ToyError)?);
        if let Some(sent) = self.sent_at.remove(&seq) {
            self.events.push_back(PingEvent::Pong {
                seq,
                rtt: now - sent,
            });
        }
        Ok(Received::with_app(data.len(), data))
    }

    fn handle_timeout(&mut self, now: Instant) {
        let Some(next) = self.next else { return };
        if now < next {
            return;
        }
        self.sent_at.insert(self.seq, now);
        self.out
            .push_back(((), FrameKind::Datagram, self.seq.to_be_bytes().to_vec()));
        self.seq += 1;
        self.next = match self.limit {
            Some(l) if self.seq >= l => None,
            _ => Some(now + self.interval),
        };
    }

    fn poll_transmit(
        &mut self,
        _now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<Transmit<()>>, BufferTooSmall> {
        write_out(&mut self.out, buf)
    }

    fn poll_event(&mut self) -> Option<PingEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.next
    }
}

// ---------------------------------------------------------------------------------------------
// Echo: server in three flavours

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    Datagram,
    Stream,
    Ws,
    /// Broken stream server: consumes nothing and does not say what it needs
    StreamStuck,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum EchoEvent<A> {
    Got(A, usize),
    PeerClosed(A),
    TransportClosed(A),
}

struct Echo<A> {
    flavour: Flavour,
    out: VecDeque<(A, FrameKind, Vec<u8>)>,
    events: VecDeque<EchoEvent<A>>,
}

impl<A: Copy + Eq> Echo<A> {
    fn new(flavour: Flavour) -> Self {
        Echo {
            flavour,
            out: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    fn send_to(&mut self, to: A, bytes: &[u8]) {
        self.out
            .push_back((to, FrameKind::Datagram, bytes.to_vec()));
    }
}

impl<A: Copy + Eq> Machine for Echo<A> {
    type Peer = A;
    type Event = EchoEvent<A>;
    type App<'a> = &'a [u8];
    type Error = ToyError;

    fn handle_input<'a>(
        &mut self,
        _now: Instant,
        from: A,
        data: &'a [u8],
    ) -> Result<Received<&'a [u8]>, ToyError> {
        match self.flavour {
            Flavour::Datagram | Flavour::Ws => {
                if data.is_empty() {
                    return Err(ToyError);
                }
                let kind = if self.flavour == Flavour::Ws {
                    FrameKind::WsBinary
                } else {
                    FrameKind::Datagram
                };
                self.out.push_back((from, kind, data.to_vec()));
                self.events.push_back(EchoEvent::Got(from, data.len()));
                Ok(Received::with_app(data.len(), data))
            }
            Flavour::StreamStuck => Ok(Received::consumed(0)),
            Flavour::Stream => {
                let r = parse_prefixed(data);
                if let Some(p) = r.app() {
                    if p.first() == Some(&0xEE) {
                        return Err(ToyError); // "protocol violation"
                    }
                    self.out.push_back((from, FrameKind::Stream, prefixed(p)));
                    self.events.push_back(EchoEvent::Got(from, p.len()));
                }
                Ok(r)
            }
        }
    }

    fn handle_frame(&mut self, _now: Instant, from: A, kind: FrameKind, payload: &[u8]) {
        match kind {
            FrameKind::WsPing => self
                .out
                .push_back((from, FrameKind::WsPong, payload.to_vec())),
            FrameKind::WsClose(code) => {
                self.events.push_back(EchoEvent::PeerClosed(from));
                // Answer the closing handshake; the simulator drops it with the transport.
                self.out
                    .push_back((from, FrameKind::WsClose(code), Vec::new()));
            }
            _ => {}
        }
    }

    fn handle_closed(&mut self, _now: Instant, from: A) {
        self.events.push_back(EchoEvent::TransportClosed(from));
    }

    fn handle_timeout(&mut self, _now: Instant) {}

    fn poll_transmit(
        &mut self,
        _now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<Transmit<A>>, BufferTooSmall> {
        write_out(&mut self.out, buf)
    }

    fn poll_event(&mut self) -> Option<EchoEvent<A>> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Talker: stream / WebSocket client

#[derive(Debug, Clone, PartialEq, Eq)]
enum TalkEvent {
    Echo(Vec<u8>),
    Pong(Vec<u8>),
    Closed,
}

struct Talker {
    flavour: Flavour,
    out: VecDeque<((), FrameKind, Vec<u8>)>,
    events: VecDeque<TalkEvent>,
}

impl Talker {
    fn new(flavour: Flavour) -> Self {
        Talker {
            flavour,
            out: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    fn say(&mut self, payload: &[u8]) {
        match self.flavour {
            Flavour::Stream => self
                .out
                .push_back(((), FrameKind::Stream, prefixed(payload))),
            _ => self
                .out
                .push_back(((), FrameKind::WsBinary, payload.to_vec())),
        }
    }

    /// Send raw stream bytes (no prefix), to inject garbage or giant frames
    fn raw(&mut self, kind: FrameKind, bytes: Vec<u8>) {
        self.out.push_back(((), kind, bytes));
    }
}

impl Machine for Talker {
    type Peer = ();
    type Event = TalkEvent;
    type App<'a> = &'a [u8];
    type Error = ToyError;

    fn handle_input<'a>(
        &mut self,
        _now: Instant,
        _from: (),
        data: &'a [u8],
    ) -> Result<Received<&'a [u8]>, ToyError> {
        let r = match self.flavour {
            Flavour::Stream => parse_prefixed(data),
            _ => Received::with_app(data.len(), data),
        };
        if let Some(p) = r.app() {
            self.events.push_back(TalkEvent::Echo(p.to_vec()));
        }
        Ok(r)
    }

    fn handle_frame(&mut self, _now: Instant, _from: (), kind: FrameKind, payload: &[u8]) {
        if kind == FrameKind::WsPong {
            self.events.push_back(TalkEvent::Pong(payload.to_vec()));
        }
    }

    fn handle_closed(&mut self, _now: Instant, _from: ()) {
        self.events.push_back(TalkEvent::Closed);
    }

    fn handle_timeout(&mut self, _now: Instant) {}

    fn poll_transmit(
        &mut self,
        _now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<Transmit<()>>, BufferTooSmall> {
        write_out(&mut self.out, buf)
    }

    fn poll_event(&mut self) -> Option<TalkEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Broken machines for the livelock and invariant tests

/// Its deadline never moves past `now`: a timer livelock
struct Stuck {
    deadline: Instant,
    /// Bug switch: after a timeout, report a deadline before `now`
    go_back: bool,
}

impl Machine for Stuck {
    type Peer = ();
    type Event = ();
    type App<'a> = ();
    type Error = ToyError;

    fn handle_input(&mut self, _: Instant, _: (), _: &[u8]) -> Result<Received<()>, ToyError> {
        Err(ToyError)
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.deadline = if self.go_back {
            now - Duration::from_millis(5)
        } else {
            now
        };
    }

    fn poll_transmit(
        &mut self,
        _: Instant,
        _: &mut [u8],
    ) -> Result<Option<Transmit<()>>, BufferTooSmall> {
        Ok(None)
    }

    fn poll_event(&mut self) -> Option<()> {
        None
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Some(self.deadline)
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

const ADDR: u32 = 7;

fn ping_pair(link: LinkConfig, seed: u64, interval_ms: u64) -> Pair<Pinger, Echo<u32>> {
    Pair::new(
        Pinger::new(Duration::from_millis(interval_ms), Instant::ZERO),
        Echo::new(Flavour::Datagram),
        ADDR,
        link,
        seed,
    )
}

fn noisy() -> LinkConfig {
    LinkConfig::lossy(0.2)
        .with_duplicate(0.1)
        .with_reorder(0.2, Duration::from_millis(30))
        .with_jitter(Duration::from_millis(8))
}

fn pongs(p: &Pair<Pinger, Echo<u32>>) -> usize {
    p.client_events().len()
}

fn count(t: &[TraceRecord], dir: Direction, fate: Fate) -> usize {
    t.iter().filter(|r| r.dir == dir && r.fate == fate).count()
}

fn transcript_of(seed: u64) -> Vec<TraceRecord> {
    let mut p = ping_pair(noisy(), seed, 20);
    p.record_transcript(true);
    p.run_for(Duration::from_secs(60));
    p.take_transcript()
}

// ---------------------------------------------------------------------------------------------
// Basics

#[test]
fn rng_is_deterministic_and_roughly_uniform() {
    let mut a = Rng::new(42);
    let mut b = Rng::new(42);
    let mut c = Rng::new(43);
    let xs: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
    let ys: Vec<u64> = (0..100).map(|_| b.next_u64()).collect();
    let zs: Vec<u64> = (0..100).map(|_| c.next_u64()).collect();
    assert_eq!(xs, ys);
    assert_ne!(xs, zs);
    assert_ne!(
        Rng::new(0).next_u64(),
        0,
        "seed 0 must not give a stuck generator"
    );

    let mut r = Rng::new(1);
    let mut buckets = [0u32; 10];
    for _ in 0..100_000 {
        let f = r.next_f64();
        assert!((0.0..1.0).contains(&f));
        buckets[(f * 10.0) as usize] += 1;
        assert!(r.below(7) < 7);
        assert!((3..=5).contains(&r.range_inclusive(3, 5)));
    }
    for b in buckets {
        assert!((9_000..11_000).contains(&b), "bucket {b} far from 10 000");
    }
    assert!(r.duration_up_to(Duration::from_millis(3)) <= Duration::from_millis(3));
    assert!(!r.chance(0.0));
    assert!(r.chance(1.0));
    assert_ne!(Rng::derived(5, 0).next_u64(), Rng::derived(5, 1).next_u64());
}

/// The generator's sequences are part of the simulator's contract: a seed that found a bug must
/// replay the same run after an upgrade. splitmix64's first outputs from 0 are the published
/// reference values (Vigna's `splitmix64.c`); the xorshift64* outputs were computed by an
/// independent implementation (Python, same constants).
#[test]
fn rng_sequences_are_the_reference_ones() {
    use tether_net::testing::splitmix64;
    let gamma = 0x9E37_79B9_7F4A_7C15_u64;
    assert_eq!(
        [
            splitmix64(0),
            splitmix64(gamma),
            splitmix64(gamma.wrapping_mul(2))
        ],
        [
            0xE220_A839_7B1D_CDAF,
            0x6E78_9E6A_A1B9_65F4,
            0x06C4_5D18_8009_454F
        ]
    );
    let first = |mut r: Rng, n: usize| (0..n).map(|_| r.next_u64()).collect::<Vec<_>>();
    assert_eq!(
        first(Rng::new(0), 3),
        [
            0x7BBC_B40D_5506_82D0,
            0xDE7F_E413_D00C_C9FD,
            0xB3C6_3835_3C66_8C91
        ]
    );
    assert_eq!(
        first(Rng::new(42), 3),
        [
            0x31B0_ECE7_C4F6_97A2,
            0x9008_A3B1_CB68_6F03,
            0x7C71_73AB_D97B_E16F
        ]
    );
    assert_eq!(
        first(Rng::derived(7, 3), 2),
        [0x023A_E383_4B26_D883, 0x2C07_7D3F_1CA5_75BF]
    );
    // below(n) is the high half of the 128-bit product
    let mut r = Rng::new(9);
    assert_eq!(
        (0..5).map(|_| r.below(1000)).collect::<Vec<_>>(),
        [381, 501, 629, 463, 786]
    );
    // chance(p) is `next_f64() < p`: false at exactly the value drawn, true just above it
    let mut probe = Rng::new(5);
    let drawn = probe.next_f64();
    assert!(!Rng::new(5).chance(drawn));
    assert!(Rng::new(5).chance(drawn + f64::EPSILON));
}

#[test]
fn rng_fill_writes_the_little_endian_outputs_and_fates_say_who_got_the_frame() {
    // fill: each 8 bytes are the next output, little-endian; a short tail takes the low bytes
    let mut buf = [0u8; 11];
    Rng::new(0).fill(&mut buf);
    let mut r = Rng::new(0);
    let (a, b) = (r.next_u64().to_le_bytes(), r.next_u64().to_le_bytes());
    assert_eq!(buf[..8], a);
    assert_eq!(buf[8..], b[..3]);
    let reached = [
        Fate::Delivered,
        Fate::Duplicate,
        Fate::Refused,
        Fate::Injected,
    ];
    let dropped = [
        Fate::Lost,
        Fate::Filtered,
        Fate::Oversize,
        Fate::LinkDown,
        Fate::TransportClosed,
        Fate::Unroutable,
    ];
    assert!(reached.iter().all(|f| f.reached_receiver()));
    assert!(dropped.iter().all(|f| !f.reached_receiver()));
}

#[test]
fn link_setters_set_what_they_name() {
    let c = LinkConfig::perfect()
        .with_loss(0.25)
        .with_duplicate(0.5)
        .with_reorder(0.75, Duration::from_millis(7))
        .with_latency(Duration::from_millis(3))
        .with_jitter(Duration::from_millis(2))
        .with_mtu(Some(100))
        .with_split_stream(true);
    assert_eq!(
        (c.loss, c.duplicate, c.reorder, c.reorder_delay),
        (0.25, 0.5, 0.75, Duration::from_millis(7))
    );
    assert_eq!(
        (c.latency, c.jitter, c.mtu, c.split_stream),
        (
            Duration::from_millis(3),
            Duration::from_millis(2),
            Some(100),
            true
        )
    );
    // the setters change one field of any config, not only of the perfect one
    let lossless = LinkConfig::lossy(1.0).with_loss(0.0);
    assert_eq!(lossless, LinkConfig::perfect());
    let mut link = Link::new(LinkConfig::perfect().with_loss(1.0), 1);
    assert_eq!(
        link.send(Instant::ZERO, FrameKind::Datagram, b"x"),
        Err(Fate::Lost)
    );
}

#[test]
fn a_link_delivers_in_arrival_order_and_its_timing_is_latency_plus_jitter() {
    let t0 = Instant::from_secs(1);
    let latency = Duration::from_millis(10);
    let jitter = Duration::from_millis(5);
    let config = LinkConfig::perfect()
        .with_latency(latency)
        .with_jitter(jitter)
        .with_duplicate(0.5)
        .with_reorder(0.5, Duration::from_millis(20));
    let mut link = Link::new(config, 7);
    for i in 0..40u8 {
        link.send(t0, FrameKind::Datagram, &[i]).unwrap();
    }
    let queued = link.in_flight();
    assert!(queued > 40, "some duplicates: {queued}");
    let mut got = Vec::new();
    while let Some(f) = link.poll_delivery(Instant::from_secs(2)) {
        got.push(f);
    }
    assert_eq!(got.len(), queued);
    // popped in arrival order, each no earlier than the latency after sending and no later than
    // latency + jitter + the longest reorder delay (+1 µs)
    assert!(got.windows(2).all(|w| w[0].deliver_at <= w[1].deliver_at));
    let latest = t0 + latency + jitter + Duration::from_millis(20) + Duration::from_micros(1);
    for f in &got {
        assert!(
            f.deliver_at >= t0 + latency && f.deliver_at <= latest,
            "{f:?}"
        );
    }
    assert!(got.iter().any(|f| f.fate == Fate::Duplicate));
    // the jitter and the reorder delays really spread the arrivals
    assert!(got.iter().any(|f| f.deliver_at > t0 + latency + jitter));
    assert!(got.first().unwrap().deliver_at < t0 + latency + jitter);
}

#[test]
fn a_link_drops_datagrams_over_its_mtu_only_and_can_be_cut() {
    let t0 = Instant::from_secs(1);
    let mut link = Link::new(LinkConfig::perfect().with_mtu(Some(4)), 3);
    assert_eq!(link.send(t0, FrameKind::Datagram, &[0; 4]), Ok(1));
    assert_eq!(
        link.send(t0, FrameKind::Datagram, &[0; 5]),
        Err(Fate::Oversize)
    );
    // stream frames ignore the MTU
    assert_eq!(link.send(t0, FrameKind::Stream, &[0; 5]), Ok(1));
    assert!(link.is_up());
    link.set_up(false);
    assert!(!link.is_up());
    assert_eq!(
        link.send(t0, FrameKind::Datagram, &[0]),
        Err(Fate::LinkDown)
    );
    // frames already in flight come out as LinkDown while it is cut
    let f = link.poll_delivery(Instant::from_secs(2)).unwrap();
    assert_eq!(f.fate, Fate::LinkDown);
}

#[test]
fn reliable_frames_keep_fifo_order_split_only_when_asked_and_reset_forgets_them() {
    let t0 = Instant::from_secs(1);
    let latency = Duration::from_millis(10);
    let config = LinkConfig::perfect()
        .with_latency(latency)
        .with_jitter(Duration::from_millis(30));
    let mut link = Link::new(config, 11);
    for i in 0..20u8 {
        // one byte frames are never split, even with splitting on
        assert_eq!(link.send(t0, FrameKind::Stream, &[i]), Ok(1));
    }
    let mut order = Vec::new();
    while let Some(f) = link.poll_delivery(Instant::from_secs(2)) {
        assert!(f.deliver_at >= t0 + latency, "{f:?}");
        order.push(f.bytes[0]);
    }
    assert_eq!(order, (0..20).collect::<Vec<u8>>(), "FIFO despite jitter");
    // splitting: only stream frames longer than one byte, only with split_stream
    let mut plain = Link::new(LinkConfig::perfect(), 5);
    assert_eq!(plain.send(t0, FrameKind::Stream, &[7; 64]), Ok(1));
    let mut split = Link::new(LinkConfig::perfect().with_split_stream(true), 5);
    let mut chunks = 0;
    for _ in 0..10 {
        chunks += split.send(t0, FrameKind::Stream, &[7; 64]).unwrap();
    }
    assert!(chunks > 10, "some frames split: {chunks}");
    assert_eq!(split.send(t0, FrameKind::Stream, &[7]), Ok(1));
    assert_eq!(
        split.send(t0, FrameKind::WsBinary, &[7; 64]),
        Ok(1),
        "WebSocket frames are never split"
    );
    // reset_reliable drops the reliable frames in flight and keeps the datagrams
    let mut link = Link::new(LinkConfig::perfect(), 2);
    link.send(t0, FrameKind::Stream, b"tcp").unwrap();
    link.send(t0, FrameKind::Datagram, b"udp").unwrap();
    link.send(t0, FrameKind::WsBinary, b"ws").unwrap();
    link.reset_reliable();
    assert_eq!(link.in_flight(), 1);
    let f = link.poll_delivery(Instant::from_secs(2)).unwrap();
    assert_eq!(
        (f.kind, f.bytes.as_slice()),
        (FrameKind::Datagram, &b"udp"[..])
    );
    // and forgets the FIFO position: a reliable frame sent after it is not held behind the
    // jittered ones sent before
    let mut link = Link::new(
        LinkConfig::perfect().with_jitter(Duration::from_secs(10)),
        4,
    );
    let mut last = Instant::ZERO;
    for _ in 0..10 {
        link.send(t0, FrameKind::Stream, b"x").unwrap();
    }
    while let Some(f) = link.poll_delivery(Instant::from_secs(100)) {
        last = f.deliver_at;
    }
    assert!(
        last > t0 + Duration::from_secs(5),
        "jitter pushed the tail out: {last}"
    );
    link.set_config(LinkConfig::perfect());
    link.reset_reliable();
    link.send(t0, FrameKind::Stream, b"y").unwrap();
    assert_eq!(link.next_delivery(), Some(t0 + Duration::from_millis(10)));
}

#[test]
fn a_split_stream_frame_tiles_the_frame_in_order_and_the_next_frame_follows_its_last_chunk() {
    let t0 = Instant::from_secs(1);
    let latency = Duration::from_millis(10);
    let mut link = Link::new(LinkConfig::perfect().with_split_stream(true), 9);
    let mut plan = Vec::new();
    let mut split = 0;
    for _ in 0..50 {
        link.plan(t0, FrameKind::Stream, 40, &mut plan).unwrap();
        // non-empty chunks that cover 0..40 in order, each later than the one before
        assert_eq!(plan.first().unwrap().start, 0);
        assert_eq!(plan.last().unwrap().end, 40);
        for w in plan.windows(2) {
            assert_eq!(w[0].end, w[1].start);
            assert!(w[1].at > w[0].at, "{plan:?}");
        }
        assert!(plan.iter().all(|c| c.end > c.start), "{plan:?}");
        split += usize::from(plan.len() > 1);
        // the next frame (sent at the same instant) arrives with the last chunk, not later
        let last = plan.last().unwrap().at;
        let mut next = Vec::new();
        link.plan(t0, FrameKind::Stream, 1, &mut next).unwrap();
        assert_eq!(next[0].at, last);
        assert!(last >= t0 + latency);
    }
    assert!(split > 10, "{split} of 50 frames split");
}

#[test]
fn datagrams_due_at_the_same_instant_come_out_in_send_order() {
    let t0 = Instant::from_secs(1);
    let mut link = Link::new(LinkConfig::perfect(), 1);
    for i in 0..32u8 {
        link.send(t0, FrameKind::Datagram, &[i]).unwrap();
    }
    let order: Vec<u8> = core::iter::from_fn(|| link.poll_delivery(Instant::from_secs(2)))
        .map(|f| f.bytes[0])
        .collect();
    assert_eq!(order, (0..32).collect::<Vec<u8>>());
}

/// A link's plans are part of the replay contract: the same seed and the same frames give the
/// same deliveries (arrival time in µs after sending, byte range) in every version
#[test]
fn a_seeded_link_plans_the_same_deliveries() {
    let t0 = Instant::from_secs(1);
    let config = LinkConfig::perfect()
        .with_jitter(Duration::from_millis(4))
        .with_duplicate(0.3)
        .with_reorder(0.3, Duration::from_millis(20))
        .with_split_stream(true);
    let mut link = Link::new(config, 2026);
    let mut plan = Vec::new();
    let mut got = Vec::new();
    for (kind, len) in [
        (FrameKind::Datagram, 8),
        (FrameKind::Stream, 1),
        (FrameKind::Stream, 30),
        (FrameKind::Datagram, 8),
        (FrameKind::WsBinary, 30),
        (FrameKind::Stream, 30),
        (FrameKind::Datagram, 8),
        (FrameKind::Stream, 30),
    ] {
        link.plan(t0, kind, len, &mut plan).unwrap();
        got.extend(
            plan.iter()
                .map(|p| ((p.at - t0).as_micros() as u64, p.start, p.end)),
        );
    }
    assert_eq!(got, GOLDEN_PLANS);
}

/// What `a_seeded_link_plans_the_same_deliveries` plans (seed 2026): datagrams with a duplicate
/// and a reordered one, a one-byte stream frame, a stream frame split in two, FIFO reliable frames
const GOLDEN_PLANS: &[(u64, usize, usize)] = &[
    (11811, 0, 8),
    (18944, 0, 8),
    (12237, 0, 1),
    (13667, 0, 30),
    (26847, 0, 8),
    (13832, 0, 30),
    (13832, 0, 28),
    (14801, 28, 30),
    (22170, 0, 8),
    (14801, 0, 30),
];

#[test]
fn trace_records_show_like_their_entries() {
    let record = TraceRecord {
        at: Instant::from_micros(1_500_000),
        sent_at: Instant::from_micros(1_000_000),
        dir: Direction::ServerToClient,
        client: Some(2),
        kind: FrameKind::Datagram,
        bytes: vec![0x10, 0x00, 0x00, 0x04],
        fate: Fate::Lost,
    };
    assert_eq!(
        record.to_string(),
        "1.500000s s->c[2] Datagram lost 10 00 00 04"
    );
    assert_eq!(record.to_string(), record.as_entry().to_string());
    let unroutable = TraceRecord {
        client: None,
        fate: Fate::Unroutable,
        ..record
    };
    assert_eq!(
        unroutable.to_string(),
        "1.500000s s->c Datagram unroutable 10 00 00 04"
    );
}

#[test]
fn start_info_is_the_default_look() {
    use tether_net::game::packer::Str;
    let si = tether_net::testing::start_info(Str::new("tee"));
    assert_eq!(
        (si.name, si.clan, si.country, si.skin),
        (Str::new("tee"), Str::EMPTY, -1, Str::new("default"))
    );
    assert_eq!(
        (si.use_custom_color, si.color_body, si.color_feet),
        (0, 0, 0)
    );
}

#[test]
#[cfg_attr(panic = "abort", ignore = "catches a panic: wasm32 aborts on panic")]
fn virtual_clock_moves_forward_only() {
    let mut c = VirtualClock::new(Instant::from_secs(10));
    assert_eq!(
        c.advance(Duration::from_millis(1_500)),
        Instant::from_millis(11_500)
    );
    c.jump_to(Instant::from_secs(20));
    assert_eq!(c.now(), Instant::from_secs(20));
    assert_eq!(c.elapsed(), Duration::from_secs(10));
    let back = std::panic::catch_unwind(move || c.jump_to(Instant::from_secs(1)));
    assert!(back.is_err(), "jumping backwards must panic");
}

#[test]
fn standalone_link_queues_and_delivers() {
    let mut link = Link::new(
        LinkConfig::perfect().with_latency(Duration::from_millis(5)),
        3,
    );
    assert_eq!(link.send(Instant::ZERO, FrameKind::Datagram, b"abc"), Ok(1));
    assert_eq!(link.next_delivery(), Some(Instant::from_millis(5)));
    assert!(link.poll_delivery(Instant::from_millis(4)).is_none());
    let f = link.poll_delivery(Instant::from_millis(5)).expect("due");
    assert_eq!(
        (f.bytes.as_slice(), f.fate, f.sent_at),
        (&b"abc"[..], Fate::Delivered, Instant::ZERO)
    );
    link.set_up(false);
    assert_eq!(
        link.send(Instant::ZERO, FrameKind::Datagram, b"x"),
        Err(Fate::LinkDown)
    );
    let mut mtu = Link::new(LinkConfig::perfect().with_mtu(Some(2)), 3);
    assert_eq!(
        mtu.send(Instant::ZERO, FrameKind::Datagram, b"abc"),
        Err(Fate::Oversize)
    );
    assert_eq!(
        mtu.send(Instant::ZERO, FrameKind::Stream, b"abc"),
        Ok(1),
        "MTU applies to datagrams only"
    );
}

#[test]
#[cfg_attr(panic = "abort", ignore = "expects a panic: wasm32 aborts on panic")]
#[should_panic(expected = "LinkConfig::loss must be in 0..=1")]
fn link_rejects_bad_probability() {
    let _ = Link::new(LinkConfig::lossy(1.5), 0);
}

// ---------------------------------------------------------------------------------------------
// Pair

#[test]
fn perfect_link_echoes_every_ping_with_exact_rtt() {
    let mut p = ping_pair(
        LinkConfig::perfect().with_latency(Duration::from_millis(37)),
        1,
        100,
    );
    p.record_transcript(true);
    let seen = Rc::new(RefCell::new(0usize));
    let s2 = Rc::clone(&seen);
    p.on_client_app(move |a: &&[u8]| {
        assert_eq!(a.len(), 4);
        *s2.borrow_mut() += 1;
    });
    p.run_until(|p| pongs(p) >= 10, Duration::from_secs(5))
        .expect("ten pongs");
    for e in p.client_events() {
        let PingEvent::Pong { rtt, .. } = e;
        assert_eq!(*rtt, Duration::from_millis(74), "RTT is twice the latency");
    }
    assert_eq!(*seen.borrow(), 10);
    assert_eq!(p.client_stats().app_frames, 10);
    assert_eq!(p.client_stats().app_bytes, 40);
    for r in p.transcript() {
        assert_eq!(r.at - r.sent_at, Duration::from_millis(37), "{r}");
        assert_eq!(r.fate, Fate::Delivered);
    }
    // The 10th pong arrives at 900 ms + 74 ms.
    assert_eq!(p.now(), Instant::from_millis(974));
}

#[test]
fn latency_with_jitter_stays_in_range() {
    let cfg = LinkConfig::perfect()
        .with_latency(Duration::from_millis(20))
        .with_jitter(Duration::from_millis(10));
    let mut p = ping_pair(cfg, 9, 10);
    p.record_transcript(true);
    p.run_for(Duration::from_secs(10));
    let t = p.transcript();
    assert!(t.len() > 1_500);
    let mut distinct = std::collections::BTreeSet::new();
    for r in t {
        let d = r.at - r.sent_at;
        assert!(
            d >= Duration::from_millis(20) && d <= Duration::from_millis(30),
            "{d:?}: {r}"
        );
        distinct.insert(d);
    }
    assert!(distinct.len() > 100, "jitter should vary the delay");
}

#[test]
fn same_seed_gives_same_transcript() {
    let a = transcript_of(11);
    let b = transcript_of(11);
    let c = transcript_of(12);
    assert!(a.len() > 5_000);
    assert_eq!(a, b);
    assert_ne!(a, c);
    // Every fate the noisy link can produce shows up.
    for fate in [Fate::Delivered, Fate::Duplicate, Fate::Lost] {
        assert!(
            a.iter().any(|r| r.fate == fate),
            "no {fate} in the transcript"
        );
    }
}

#[test]
fn loss_and_duplication_rates_match_config() {
    let cfg = LinkConfig::lossy(0.3).with_duplicate(0.1);
    let mut p = Pair::new(
        Pinger::new(Duration::from_millis(10), Instant::ZERO).limit(10_000),
        Echo::new(Flavour::Datagram),
        ADDR,
        cfg,
        2024,
    );
    p.set_link_config(Direction::ServerToClient, LinkConfig::perfect());
    p.record_transcript(true);
    p.run_for(Duration::from_secs(200));
    let t = p.transcript();
    let lost = count(t, Direction::ClientToServer, Fate::Lost);
    let delivered = count(t, Direction::ClientToServer, Fate::Delivered);
    let dup = count(t, Direction::ClientToServer, Fate::Duplicate);
    assert_eq!(lost + delivered, 10_000);
    let loss = lost as f64 / 10_000.0;
    let dup_rate = dup as f64 / delivered as f64;
    println!("loss {loss:.4} (config 0.3), duplicate {dup_rate:.4} (config 0.1)");
    assert!((loss - 0.3).abs() < 0.02, "loss rate {loss}");
    assert!((dup_rate - 0.1).abs() < 0.015, "duplicate rate {dup_rate}");
    // The server saw exactly what was delivered; the perfect return path loses nothing.
    assert_eq!(p.server_stats().frames_in as usize, delivered + dup);
    assert_eq!(p.client_stats().frames_in as usize, delivered + dup);
    assert_eq!(
        pongs(&p),
        delivered,
        "each delivered ping is answered once (duplicates add no event)"
    );
}

#[test]
fn reordering_happens_only_when_configured() {
    fn arrival_inversions(cfg: LinkConfig) -> usize {
        let mut p = Pair::new(
            Pinger::new(Duration::from_millis(5), Instant::ZERO).limit(2_000),
            Echo::new(Flavour::Datagram),
            ADDR,
            cfg,
            5,
        );
        let order = Rc::new(RefCell::new(Vec::new()));
        let o2 = Rc::clone(&order);
        p.on_server_app(move |a: &&[u8]| {
            o2.borrow_mut()
                .push(u32::from_be_bytes((*a).try_into().unwrap()))
        });
        p.run_for(Duration::from_secs(20));
        let order = order.borrow();
        assert_eq!(order.len(), 2_000);
        order.windows(2).filter(|w| w[1] < w[0]).count()
    }
    let reordered =
        arrival_inversions(LinkConfig::perfect().with_reorder(0.2, Duration::from_millis(25)));
    println!("{reordered} inversions in 2000 datagrams");
    assert!(
        reordered > 100,
        "expected reordering, saw {reordered} inversions"
    );
    assert_eq!(arrival_inversions(LinkConfig::perfect()), 0);
}

#[test]
fn mtu_drops_oversize_datagrams() {
    let mut p = ping_pair(LinkConfig::perfect().with_mtu(Some(3)), 1, 100);
    p.record_transcript(true);
    p.run_for(Duration::from_secs(1));
    assert_eq!(pongs(&p), 0);
    // Pings at 0, 100, ..., 1000 ms: run_for includes events due exactly at its end.
    assert_eq!(
        count(p.transcript(), Direction::ClientToServer, Fate::Oversize),
        11
    );
}

#[test]
fn stream_split_reassembles_in_order() {
    let cfg = LinkConfig::perfect()
        .with_split_stream(true)
        .with_jitter(Duration::from_millis(15))
        // Datagram-only knobs must not affect a reliable stream.
        .with_loss(0.5)
        .with_duplicate(0.5)
        .with_reorder(0.5, Duration::from_millis(50));
    let mut p = Pair::new(
        Talker::new(Flavour::Stream),
        Echo::new(Flavour::Stream),
        ADDR,
        cfg,
        77,
    );
    p.record_transcript(true);
    let mut rng = Rng::new(99);
    let mut sent = Vec::new();
    for i in 0..300u32 {
        let len = rng.below(256) as usize;
        let mut payload = vec![0u8; len];
        rng.fill(&mut payload);
        if let Some(b) = payload.first_mut() {
            *b = (i % 200) as u8; // never the 0xEE "violation" marker
        }
        p.client_mut().say(&payload);
        sent.push(payload);
        if i % 7 == 0 {
            p.run_for(Duration::from_millis(3));
        }
    }
    p.run_until(|p| p.client_events().len() == 300, Duration::from_secs(10))
        .expect("all echoes back");
    let got: Vec<Vec<u8>> = p
        .client_events()
        .iter()
        .map(|e| match e {
            TalkEvent::Echo(b) => b.clone(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(got, sent, "stream bytes arrive complete and in order");
    let chunks = p
        .transcript()
        .iter()
        .filter(|r| r.dir == Direction::ClientToServer)
        .count();
    println!("300 stream frames arrived as {chunks} chunks");
    assert!(
        chunks > 400,
        "frames should have been split: {chunks} chunks"
    );
    assert!(p.transcript().iter().all(|r| r.fate == Fate::Delivered));
    assert_eq!(p.server_stats().app_frames, 300);
    assert_eq!(p.server_stats().input_errors, 0);
}

#[test]
fn large_frames_grow_the_scratch_buffer() {
    let mut p = Pair::new(
        Talker::new(Flavour::Stream),
        Echo::new(Flavour::Stream),
        ADDR,
        LinkConfig::perfect().with_split_stream(true),
        1,
    );
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    p.client_mut().raw(FrameKind::Stream, big.clone());
    p.record_transcript(true);
    p.run_for(Duration::from_secs(1));
    let bytes: Vec<u8> = p
        .transcript()
        .iter()
        .filter(|r| r.dir == Direction::ClientToServer)
        .flat_map(|r| r.bytes.iter().copied())
        .collect();
    assert!(bytes == big, "100 KB frame went out whole and in order");
    assert_eq!(p.client_stats().bytes_out, 100_000);
}

#[test]
fn stream_protocol_error_resets_the_transport() {
    let mut p = Pair::new(
        Talker::new(Flavour::Stream),
        Echo::new(Flavour::Stream),
        ADDR,
        LinkConfig::perfect(),
        1,
    );
    p.client_mut().say(&[0xEE, 1, 2]);
    p.run_for(Duration::from_secs(1));
    assert_eq!(
        p.server_stats().input_errors,
        2,
        "refused, retried once after draining events"
    );
    assert_eq!(p.server_stats().stream_resets, 1);
    assert_eq!(p.client_events(), &[TalkEvent::Closed]);
    assert_eq!(p.server_events(), &[EchoEvent::TransportClosed(ADDR)]);
    // A fresh transport works.
    p.client_mut().say(b"again");
    p.run_for(Duration::from_secs(1));
    assert_eq!(
        p.client_events().last(),
        Some(&TalkEvent::Echo(b"again".to_vec()))
    );
}

#[test]
#[cfg_attr(panic = "abort", ignore = "expects a panic: wasm32 aborts on panic")]
#[should_panic(expected = "did not say what it needs")]
fn stream_input_without_progress_or_need_panics() {
    let mut p = Pair::new(
        Talker::new(Flavour::Stream),
        Echo::new(Flavour::StreamStuck),
        ADDR,
        LinkConfig::perfect(),
        1,
    );
    p.client_mut().say(b"hello");
    p.run_for(Duration::from_secs(1));
}

#[test]
fn run_until_mut_lets_the_test_answer_events() {
    // The test plays the application: each echo triggers the next message, ten rounds.
    let mut p = Pair::new(
        Talker::new(Flavour::Stream),
        Echo::new(Flavour::Stream),
        ADDR,
        LinkConfig::perfect().with_split_stream(true),
        8,
    );
    p.client_mut().say(&[0]);
    let mut rounds = 0u8;
    p.run_until_mut(
        |p| {
            for e in p.take_client_events() {
                assert_eq!(e, TalkEvent::Echo(vec![rounds]));
                rounds += 1;
                p.client_mut().say(&[rounds]);
            }
            rounds == 10
        },
        Duration::from_secs(5),
    )
    .expect("ten rounds");
    // Ten round trips of 2 x 10 ms, plus up to 1 ms per extra chunk of a split 2-byte frame.
    let t = p.now();
    assert!(
        t >= Instant::from_millis(200) && t <= Instant::from_millis(220),
        "{t}"
    );
    let mut f = Fleet::new(
        Echo::new(Flavour::Datagram),
        3,
        |_| Pinger::new(Duration::from_secs(1), Instant::ZERO).limit(1),
        |i| i as u32,
        LinkConfig::perfect(),
        1,
    );
    let err = f
        .run_until_mut(|f| f.server_events().len() > 3, Duration::from_secs(3))
        .unwrap_err();
    assert!(matches!(err, SimError::Idle { .. }), "{err}");
}

#[test]
fn close_transport_drops_in_flight_stream_frames() {
    let mut p = Pair::new(
        Talker::new(Flavour::Stream),
        Echo::new(Flavour::Stream),
        ADDR,
        LinkConfig::perfect(),
        1,
    );
    p.record_transcript(true);
    p.client_mut().say(b"lost with the connection");
    p.drain();
    assert_eq!(p.in_flight(), 1);
    p.close_transport();
    assert_eq!(p.client_events(), &[TalkEvent::Closed]);
    assert_eq!(p.server_events(), &[EchoEvent::TransportClosed(ADDR)]);
    p.run_for(Duration::from_secs(1));
    assert_eq!(
        count(
            p.transcript(),
            Direction::ClientToServer,
            Fate::TransportClosed
        ),
        1
    );
    assert_eq!(p.server_stats().frames_in, 0);
}

#[test]
fn websocket_frames_ping_pong_and_close() {
    let cfg = LinkConfig::lossy(0.9).with_jitter(Duration::from_millis(20)); // loss ignored for WS
    let mut p = Pair::new(
        Talker::new(Flavour::Ws),
        Echo::new(Flavour::Ws),
        ADDR,
        cfg,
        4,
    );
    for i in 0..50u8 {
        p.client_mut().say(&[i + 1; 3]);
        p.client_mut().raw(FrameKind::WsPing, vec![i]);
    }
    p.run_until(|p| p.client_events().len() == 100, Duration::from_secs(5))
        .expect("all replies");
    let mut expect = Vec::new();
    for i in 0..50u8 {
        expect.push(TalkEvent::Echo(vec![i + 1; 3]));
        expect.push(TalkEvent::Pong(vec![i]));
    }
    assert_eq!(p.take_client_events(), expect, "message order kept");
    p.record_transcript(true);
    p.client_mut()
        .raw(FrameKind::WsClose(1000), b"bye".to_vec());
    p.client_mut().say(b"after close"); // in flight behind the Close: dropped with the transport
    p.run_for(Duration::from_secs(1));
    assert_eq!(p.client_events(), &[TalkEvent::Closed]);
    let ev = p.server_events();
    assert_eq!(
        &ev[ev.len() - 2..],
        &[
            EchoEvent::PeerClosed(ADDR),
            EchoEvent::TransportClosed(ADDR)
        ]
    );
    assert_eq!(p.server_stats().app_frames, 50);
    let fates: Vec<(Direction, FrameKind, Fate)> = p
        .transcript()
        .iter()
        .map(|r| (r.dir, r.kind, r.fate))
        .collect();
    assert_eq!(
        fates,
        [
            (
                Direction::ClientToServer,
                FrameKind::WsClose(1000),
                Fate::Delivered
            ),
            (
                Direction::ClientToServer,
                FrameKind::WsBinary,
                Fate::TransportClosed
            ),
            (
                Direction::ServerToClient,
                FrameKind::WsClose(1000),
                Fate::TransportClosed
            ),
        ]
    );
}

#[test]
fn event_hooks_see_events_even_when_not_kept() {
    let mut p = ping_pair(LinkConfig::perfect(), 1, 100);
    let seen = Rc::new(RefCell::new((0u32, 0u32)));
    let (s1, s2) = (Rc::clone(&seen), Rc::clone(&seen));
    p.on_client_event(move |e| {
        let PingEvent::Pong { seq, .. } = e;
        assert_eq!(*seq, s1.borrow().0);
        s1.borrow_mut().0 += 1;
    });
    p.on_server_event(move |_| s2.borrow_mut().1 += 1);
    p.keep_events(false);
    p.run_for(Duration::from_millis(1_050));
    assert_eq!(*seen.borrow(), (11, 11));
    assert!(p.client_events().is_empty() && p.server_events().is_empty());
    assert_eq!((p.client_stats().events, p.server_stats().events), (11, 11));
}

#[test]
fn link_cut_drops_frames_until_restored() {
    let mut p = ping_pair(LinkConfig::perfect(), 1, 100);
    p.record_transcript(true);
    p.run_for(Duration::from_millis(950));
    assert_eq!(pongs(&p), 10);
    p.set_link_up(false);
    p.run_for(Duration::from_secs(1));
    assert_eq!(pongs(&p), 10);
    assert!(count(p.transcript(), Direction::ClientToServer, Fate::LinkDown) >= 9);
    p.set_link_up(true);
    p.run_for(Duration::from_secs(1));
    assert!(pongs(&p) >= 19);
}

#[test]
fn injected_garbage_is_counted_not_fatal() {
    let mut p = ping_pair(LinkConfig::perfect(), 1, 100);
    p.record_transcript(true);
    p.inject_to_server(FrameKind::Datagram, &[]);
    p.inject_to_client(FrameKind::Datagram, &[1, 2, 3]);
    assert_eq!(p.server_stats().input_errors, 1);
    assert_eq!(p.client_stats().input_errors, 1);
    assert_eq!(
        p.transcript()
            .iter()
            .filter(|r| r.fate == Fate::Injected)
            .count(),
        2
    );
    p.run_until(|p| pongs(p) == 3, Duration::from_secs(1))
        .expect("keeps working");
}

#[test]
fn unroutable_and_rebound_addresses() {
    let mut p = ping_pair(LinkConfig::perfect(), 1, 100);
    p.record_transcript(true);
    p.server_mut().send_to(999, b"nobody");
    p.drain();
    assert_eq!(p.server_stats().unroutable, 1);
    let r = p.transcript().last().unwrap();
    assert_eq!((r.fate, r.client), (Fate::Unroutable, None));
    p.set_client_addr(8);
    p.run_until(|p| pongs(p) == 3, Duration::from_secs(1))
        .expect("echo follows the new address");
    assert!(p.server_events().contains(&EchoEvent::Got(8, 4)));
}

#[test]
fn observer_sees_every_fate_and_formats_a_timeline() {
    let lines = Rc::new(RefCell::new(Vec::new()));
    let l2 = Rc::clone(&lines);
    let mut p = ping_pair(LinkConfig::lossy(0.5), 3, 100);
    p.set_observer(move |e| l2.borrow_mut().push(e.to_string()));
    p.run_for(Duration::from_secs(2));
    let lines = lines.borrow();
    assert!(lines.iter().any(|l| l.contains("lost")));
    assert!(lines.iter().any(|l| l.contains("delivered")));
    assert!(
        lines[0].starts_with("0.000000s c->s[0] Datagram"),
        "{}",
        lines[0]
    );
    assert!(
        lines.iter().any(|l| l.ends_with("00 00 00 01")),
        "hex payload shown"
    );
    assert_eq!(Hex(&[0x0a, 0xff]).to_string(), "0a ff");
}

// ---------------------------------------------------------------------------------------------
// Failing loudly

#[test]
fn run_until_times_out_on_a_livelock() {
    // A ping/pong exchange that never satisfies the predicate: time runs out.
    let mut p = ping_pair(LinkConfig::perfect(), 1, 100);
    let err = p.run_until(|_| false, Duration::from_secs(3)).unwrap_err();
    assert!(matches!(err, SimError::Timeout { .. }), "{err}");
    assert_eq!(p.now(), Instant::from_secs(3), "clock stops at the budget");
    assert!(err.to_string().contains("timed out"));
}

#[test]
fn run_until_reports_a_stalled_timer() {
    let mut p = Pair::new(
        Stuck {
            deadline: Instant::from_millis(5),
            go_back: false,
        },
        Echo::<u32>::new(Flavour::Datagram),
        ADDR,
        LinkConfig::perfect(),
        1,
    );
    p.set_stall_limit(1_000);
    let err = p.run_until(|_| false, Duration::from_secs(3)).unwrap_err();
    assert_eq!(
        err,
        SimError::Stalled {
            at: Instant::from_millis(5),
            steps: 1_000
        }
    );
}

#[test]
fn run_until_reports_idle() {
    let mut p = ping_pair(LinkConfig::perfect(), 1, 100);
    p.client_mut().close();
    let err = p.run_until(|_| false, Duration::from_secs(3)).unwrap_err();
    assert!(matches!(err, SimError::Idle { .. }), "{err}");
    // `step` just says "nothing to do".
    assert!(!p.step());
}

#[test]
#[cfg_attr(panic = "abort", ignore = "expects a panic: wasm32 aborts on panic")]
#[should_panic(expected = "earlier than the last now")]
fn deadline_in_the_past_panics() {
    let mut p = Pair::new(
        Stuck {
            deadline: Instant::from_millis(5),
            go_back: true,
        },
        Echo::<u32>::new(Flavour::Datagram),
        ADDR,
        LinkConfig::perfect(),
        1,
    );
    p.run_for(Duration::from_secs(1));
}

#[test]
fn closed_client_may_send_its_last_frame() {
    let mut p = ping_pair(LinkConfig::perfect(), 1, 100);
    p.client_closed_when(|c| c.closed);
    p.run_for(Duration::from_millis(250));
    p.client_mut().close(); // queues "bye" while closed: allowed
    p.run_for(Duration::from_secs(2));
    assert_eq!(p.server_events().last(), Some(&EchoEvent::Got(ADDR, 3)));
}

#[test]
#[cfg_attr(panic = "abort", ignore = "expects a panic: wasm32 aborts on panic")]
#[should_panic(expected = "after it reported closed")]
fn transmit_after_close_panics() {
    let mut p = ping_pair(LinkConfig::perfect(), 1, 100);
    p.client_closed_when(|c| c.closed);
    p.client_mut().chatty_after_close = true;
    p.run_for(Duration::from_millis(250));
    p.client_mut().close();
    p.run_for(Duration::from_secs(2));
}

#[test]
fn checks_can_be_switched_off() {
    let mut p = ping_pair(LinkConfig::perfect(), 1, 100);
    p.set_checks(false);
    p.client_closed_when(|c| c.closed);
    p.client_mut().chatty_after_close = true;
    p.client_mut().close();
    p.run_for(Duration::from_secs(1));
    assert!(p.server_stats().frames_in >= 10);
}

// ---------------------------------------------------------------------------------------------
// Fleet

#[test]
fn fleet_routes_each_client_separately() {
    let mut f = Fleet::new(
        Echo::new(Flavour::Datagram),
        5,
        |i| Pinger::new(Duration::from_millis(100 * (i as u64 + 1)), Instant::ZERO),
        |i| 1000 + i as u32,
        LinkConfig::perfect(),
        1,
    );
    let attributed = Rc::new(RefCell::new(0));
    let a2 = Rc::clone(&attributed);
    f.on_server_event(move |i, e| {
        assert_eq!(
            e,
            &EchoEvent::Got(1000 + i as u32, 4),
            "event attributed to its client"
        );
        *a2.borrow_mut() += 1;
    });
    f.run_for(Duration::from_millis(1_050));
    for i in 0..5 {
        let expect = 1_000 / (100 * (i + 1)) + 1; // pings at 0, T, 2T, ... <= 1000 ms... minus in-flight
        let got = f.client_events(i).len();
        assert!(
            got + 1 >= expect && got <= expect,
            "client {i}: {got} pongs, expected about {expect}"
        );
        assert_eq!(f.client_addr(i), 1000 + i as u32);
    }
    assert_eq!(*attributed.borrow(), f.server_stats().events);
    let total = f.total_client_stats();
    assert_eq!(total.app_frames, f.server_stats().app_frames);
}

#[test]
fn fleet_of_1000_clients_runs_one_virtual_hour() {
    let clients = 1_000;
    let start = std::time::Instant::now();
    let mut f = Fleet::new(
        Echo::new(Flavour::Datagram),
        clients,
        // Stagger the first pings so the timer heap is exercised with distinct deadlines.
        |i| {
            Pinger::new(
                Duration::from_secs(5),
                Instant::from_micros((i as u64 + 1) * 4_999),
            )
        },
        |i| i as u32,
        LinkConfig::lossy(0.05).with_jitter(Duration::from_millis(10)),
        2026,
    );
    let steps = f.run_for(Duration::from_secs(3_600));
    let wall = start.elapsed();
    let stats = f.total_client_stats();
    println!(
        "fleet: {clients} clients, 1 virtual hour, {steps} steps, {} pings, {} pongs, wall time {wall:?}",
        stats.transmits, stats.app_frames
    );
    assert_eq!(f.now(), Instant::from_secs(3_600));
    // 720 pings each (first in (0, 5 s), then every 5 s up to 3600 s).
    assert_eq!(stats.transmits, 720 * clients as u64);
    let expected = stats.transmits as f64 * 0.95 * 0.95;
    assert!(
        (stats.app_frames as f64 - expected).abs() < expected * 0.01,
        "pongs {} vs about {expected}",
        stats.app_frames
    );
    assert_eq!(f.server_stats().transmits, f.server_stats().app_frames);
}

#[test]
fn fleet_is_deterministic() {
    let run = |seed| {
        let mut f = Fleet::new(
            Echo::new(Flavour::Datagram),
            20,
            |i| Pinger::new(Duration::from_millis(50 + i as u64), Instant::ZERO),
            |i| i as u32,
            noisy(),
            seed,
        );
        f.record_transcript(true);
        f.run_for(Duration::from_secs(10));
        f.take_transcript()
    };
    let a = run(1);
    assert_eq!(a, run(1));
    assert_ne!(a, run(2));
}

// ---------------------------------------------------------------------------------------------
// Solo

#[test]
fn solo_fires_timers_in_order_and_takes_inputs() {
    let mut solo = Solo::new(Pinger::new(Duration::from_millis(100), Instant::ZERO));
    assert_eq!(solo.advance(Duration::from_secs(1)), 11);
    let sent = solo.take_sent();
    assert_eq!(sent.len(), 11);
    for (k, s) in sent.iter().enumerate() {
        assert_eq!(s.at, Instant::from_millis(100 * k as u64));
        assert_eq!(s.bytes, (k as u32).to_be_bytes());
    }
    assert_eq!(solo.now(), Instant::from_secs(1));
    assert_eq!(
        solo.input((), FrameKind::Datagram, &3u32.to_be_bytes()),
        Fate::Delivered
    );
    assert_eq!(
        solo.events(),
        &[PingEvent::Pong {
            seq: 3,
            rtt: Duration::from_millis(700)
        }]
    );
    assert_eq!(solo.input((), FrameKind::Datagram, b"xx"), Fate::Refused);
    assert_eq!(solo.stats().input_errors, 1);
}

/// The application payloads a `Solo` delivered, copied out
type Payloads = Rc<RefCell<Vec<Vec<u8>>>>;

/// A `Solo` around a stream `Echo`, and the application payloads it delivers
fn stream_solo() -> (Solo<Echo<u8>>, Payloads) {
    let mut solo = Solo::new(Echo::<u8>::new(Flavour::Stream));
    let apps = Rc::new(RefCell::new(Vec::new()));
    let sink = Rc::clone(&apps);
    solo.on_app(move |a: &&[u8]| sink.borrow_mut().push(a.to_vec()));
    (solo, apps)
}

#[test]
fn solo_reassembles_a_byte_by_byte_stream() {
    let (mut solo, apps) = stream_solo();
    let mut stream = prefixed(b"hello");
    stream.extend(prefixed(b""));
    stream.extend(prefixed(b"world"));
    for b in &stream {
        assert_eq!(solo.input(1, FrameKind::Stream, &[*b]), Fate::Delivered);
    }
    assert_eq!(
        *apps.borrow(),
        [b"hello".to_vec(), vec![], b"world".to_vec()]
    );
    let echoed: Vec<u8> = solo.sent().iter().flat_map(|s| s.bytes.clone()).collect();
    assert_eq!(echoed, stream);
    // Two peers keep separate buffers.
    solo.input(1, FrameKind::Stream, &[2, b'a']);
    solo.input(2, FrameKind::Stream, &[1, b'z']);
    solo.input(1, FrameKind::Stream, b"b");
    assert_eq!(apps.borrow().last().unwrap(), b"ab");
    // A refused stream is closed like a runtime would.
    assert_eq!(solo.input(2, FrameKind::Stream, &[1, 0xEE]), Fate::Refused);
    assert_eq!(solo.stats().stream_resets, 1);
    assert_eq!(solo.events().last(), Some(&EchoEvent::TransportClosed(2)));
}

#[test]
fn solo_switches_and_hooks_do_what_they_say() {
    let mut solo = Solo::new(Echo::<u8>::new(Flavour::Datagram));
    // keep_sent(false): counted, not kept
    solo.keep_sent(false);
    solo.input(1, FrameKind::Datagram, b"a");
    assert!(solo.sent().is_empty());
    assert_eq!(solo.stats().transmits, 1);
    solo.keep_sent(true);
    solo.input(1, FrameKind::Datagram, b"b");
    assert_eq!(solo.sent().len(), 1);
    // keep_events(false): the hook still sees every event
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s2 = Rc::clone(&seen);
    solo.on_event(move |e: &EchoEvent<u8>| s2.borrow_mut().push(e.clone()));
    solo.keep_events(false);
    let kept = solo.events().len();
    solo.input(2, FrameKind::Datagram, b"cd");
    assert_eq!(solo.events().len(), kept);
    assert_eq!(*seen.borrow(), [EchoEvent::Got(2, 2)]);
    // answer_app: the hook gets the machine, the time and the payload, and may answer at once
    let apps = Rc::new(RefCell::new(Vec::new()));
    let a2 = Rc::clone(&apps);
    solo.answer_app(move |m: &mut Echo<u8>, now, a: &&[u8]| {
        a2.borrow_mut().push((now, a.to_vec()));
        m.send_to(9, b"answer");
    });
    solo.advance(Duration::from_millis(5));
    solo.input(3, FrameKind::Datagram, b"e");
    assert_eq!(*apps.borrow(), [(Instant::from_millis(5), b"e".to_vec())]);
    let to: Vec<u8> = solo.sent().iter().map(|s| s.to).collect();
    assert_eq!(
        &to[to.len() - 2..],
        [3, 9],
        "the echo, then the hook's answer"
    );
}

#[test]
fn solo_closes_a_websocket_on_its_close_frame_unless_told_not_to() {
    let mut solo = Solo::new(Echo::<u8>::new(Flavour::Ws));
    solo.input(1, FrameKind::WsClose(1000), b"");
    assert_eq!(
        solo.take_events(),
        [EchoEvent::PeerClosed(1), EchoEvent::TransportClosed(1)]
    );
    solo.set_ws_close_closes_transport(false);
    solo.input(2, FrameKind::WsClose(1000), b"");
    assert_eq!(solo.take_events(), [EchoEvent::PeerClosed(2)]);
}

#[test]
fn solo_closing_one_transport_keeps_the_other_peers_buffers() {
    let (mut solo, apps) = stream_solo();
    solo.input(1, FrameKind::Stream, &[2, b'a']); // half of a 2-byte frame
    solo.input(2, FrameKind::Stream, &[1]); // a 1-byte frame's length only
    solo.close_transport(1);
    assert_eq!(solo.events().last(), Some(&EchoEvent::TransportClosed(1)));
    solo.input(2, FrameKind::Stream, b"z");
    assert_eq!(*apps.borrow(), [b"z".to_vec()]);
    // peer 1 starts over with an empty buffer
    solo.input(1, FrameKind::Stream, &[1, b'y']);
    assert_eq!(apps.borrow().last().unwrap(), b"y");
}

#[test]
fn solo_counts_what_it_drains_and_ends_advance_at_the_time_asked() {
    let mut solo = Solo::new(Pinger::new(Duration::from_millis(100), Instant::ZERO));
    // timers at 0, 100, ..., 1000 ms; the clock still ends at 1,050 ms
    assert_eq!(solo.advance(Duration::from_millis(1_050)), 11);
    assert_eq!(solo.now(), Instant::from_millis(1_050));
    solo.input((), FrameKind::Datagram, &3u32.to_be_bytes());
    let st = *solo.stats();
    assert_eq!(
        (st.timeouts, st.transmits, st.bytes_out, st.events),
        (11, 11, 44, 1)
    );
    // more than one frame and event in a drain are all counted
    let mut echo = Solo::new(Echo::<u8>::new(Flavour::Datagram));
    for to in 0..5 {
        echo.machine_mut().send_to(to, b"xyz");
    }
    echo.input(9, FrameKind::Datagram, b"ab");
    echo.input(9, FrameKind::Datagram, b"cd");
    let st = *echo.stats();
    assert_eq!(
        (st.transmits, st.bytes_out, st.events),
        (7, 5 * 3 + 2 + 2, 2)
    );
}

#[test]
#[cfg_attr(panic = "abort", ignore = "expects a panic: wasm32 aborts on panic")]
#[should_panic(expected = "emitted more than 100000 transmits in one drain")]
fn solo_stops_a_machine_that_floods_one_drain() {
    let mut solo = Solo::new(Echo::<u8>::new(Flavour::Datagram));
    solo.keep_sent(false);
    for _ in 0..100_001 {
        solo.machine_mut().send_to(1, b"x");
    }
    solo.drain();
}

#[test]
#[cfg_attr(panic = "abort", ignore = "expects a panic: wasm32 aborts on panic")]
#[should_panic(expected = "reported more than 100000 events in one drain")]
fn solo_stops_a_machine_that_reports_too_many_events_in_one_drain() {
    let mut solo = Solo::new(Echo::<u8>::new(Flavour::Datagram));
    solo.keep_events(false);
    for _ in 0..100_001 {
        solo.machine_mut().events.push_back(EchoEvent::Got(1, 0));
    }
    solo.drain();
}

#[test]
fn solo_closed_when_holds_from_the_drain_after_the_machine_reports_closed() {
    use core::cell::Cell;
    let closed = Rc::new(Cell::new(false));
    let c2 = Rc::clone(&closed);
    let mut solo = Solo::new(Echo::<u8>::new(Flavour::Datagram));
    solo.closed_when(move |_| c2.get());
    solo.input(1, FrameKind::Datagram, b"a");
    // the machine now says it is closed, but this input's drain is the one that notes it: its
    // echo is still allowed
    closed.set(true);
    solo.input(1, FrameKind::Datagram, b"b");
    assert_eq!(solo.sent().len(), 2);
}

#[test]
#[cfg_attr(panic = "abort", ignore = "expects a panic: wasm32 aborts on panic")]
#[should_panic(expected = "livelocked at 0.001000s: 3 steps without virtual time advancing")]
fn solo_stall_limit_is_the_one_set() {
    let mut solo = Solo::new(Stuck {
        deadline: Instant::from_millis(1),
        go_back: false,
    });
    solo.set_stall_limit(3);
    solo.advance(Duration::from_secs(1));
}

#[test]
#[cfg_attr(panic = "abort", ignore = "expects a panic: wasm32 aborts on panic")]
#[should_panic(expected = "after it reported closed")]
fn solo_closed_when_makes_a_closed_machine_silent() {
    let mut solo = Solo::new(Echo::<u8>::new(Flavour::Datagram));
    solo.closed_when(|_| true);
    solo.input(1, FrameKind::Datagram, b"a"); // the drain after it notes "closed"
    solo.input(1, FrameKind::Datagram, b"b"); // and this echo breaks the invariant
}

#[test]
fn solo_without_checks_lets_a_closed_machine_talk() {
    let mut solo = Solo::new(Echo::<u8>::new(Flavour::Datagram));
    solo.closed_when(|_| true);
    solo.set_checks(false);
    solo.input(1, FrameKind::Datagram, b"a");
    solo.input(1, FrameKind::Datagram, b"b");
    assert_eq!(solo.sent().len(), 2);
}

#[test]
#[cfg_attr(panic = "abort", ignore = "expects a panic: wasm32 aborts on panic")]
#[should_panic(expected = "earlier than the last now")]
fn solo_checks_deadlines() {
    let mut solo = Solo::new(Stuck {
        deadline: Instant::from_millis(1),
        go_back: true,
    });
    solo.advance(Duration::from_secs(1));
}
