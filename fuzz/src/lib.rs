//! Shared helpers of the tether fuzz targets
//!
//! The targets themselves live in `fuzz_targets/`; this library holds what more than one of them
//! uses: the op-stream reader/writer, a fuzz clock, bounded drain loops over any
//! [`tether_net::Machine`] and the timer invariant.

use tether_net::{BufferTooSmall, Duration, Instant, Machine, Transmit};

/// Byte reader for the machine targets' op streams
///
/// The op streams use a small hand-written format instead of `#[derive(Arbitrary)]` so that seed
/// files can be written from the test vectors (see `examples/seeds.rs`, which uses [`OpWriter`],
/// the exact inverse). Reading past the end yields zeros / empty slices, like
/// `arbitrary::Unstructured`.
///
/// * integers: `u8`, `u16` little-endian;
/// * blobs: a length byte `n`; `n < 255` is the length, `255` is followed by a `u16` length;
///   then the bytes (cut short at the end of the input).
#[derive(Debug, Clone)]
pub struct OpReader<'a> {
    data: &'a [u8],
}

impl<'a> OpReader<'a> {
    /// A reader over `data`
    pub fn new(data: &'a [u8]) -> Self {
        OpReader { data }
    }

    /// True when everything was read
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The unread bytes (for tracing)
    pub fn peek(&self) -> &'a [u8] {
        &self.data[..self.data.len().min(16)]
    }

    /// One byte (0 at the end)
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// Two bytes, little-endian
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// Four bytes
    pub fn array4(&mut self) -> [u8; 4] {
        [self.u8(), self.u8(), self.u8(), self.u8()]
    }

    /// A length-prefixed blob
    pub fn blob(&mut self) -> &'a [u8] {
        let n = match self.u8() {
            255 => usize::from(self.u16()),
            n => usize::from(n),
        };
        let n = n.min(self.data.len());
        let (b, rest) = self.data.split_at(n);
        self.data = rest;
        b
    }

    /// A blob as text (lossy UTF-8)
    pub fn text(&mut self) -> String {
        String::from_utf8_lossy(self.blob()).into_owned()
    }
}

/// Writer of the [`OpReader`] format (for seed files)
#[derive(Debug, Clone, Default)]
pub struct OpWriter {
    /// The bytes written so far
    pub out: Vec<u8>,
}

impl OpWriter {
    /// An empty writer
    pub fn new() -> Self {
        OpWriter::default()
    }

    /// One byte
    pub fn u8(&mut self, b: u8) -> &mut Self {
        self.out.push(b);
        self
    }

    /// Two bytes, little-endian
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Raw bytes without a length
    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.out.extend_from_slice(b);
        self
    }

    /// A length-prefixed blob
    pub fn blob(&mut self, b: &[u8]) -> &mut Self {
        if b.len() < 255 {
            self.out.push(b.len() as u8);
        } else {
            self.out.push(255);
            self.u16(u16::try_from(b.len()).expect("blob up to 65535 bytes"));
        }
        self.out.extend_from_slice(b);
        self
    }
}

/// Durations for machine configuration, picked by one byte (never zero: a zero interval makes a
/// timer due again at the same instant, which is a configuration error, not a bug)
pub fn interval(b: u8) -> Duration {
    const MS: [u64; 16] = [
        1, 7, 50, 100, 250, 500, 1_000, 1_500, 2_000, 3_000, 5_000, 10_000, 20_000, 30_000, 60_000,
        100_000,
    ];
    Duration::from_millis(MS[usize::from(b & 15)])
}

/// Read a time step: `kind` 0 = milliseconds (u16), 1 = microseconds (u16), 2 = seconds (u8)
pub fn step(r: &mut OpReader<'_>, kind: u8) -> Duration {
    match kind % 3 {
        0 => Duration::from_millis(u64::from(r.u16())),
        1 => Duration::from_micros(u64::from(r.u16())),
        _ => Duration::from_secs(u64::from(r.u8())),
    }
}

/// The fuzz clock: monotonic `now` plus the latest instant any machine was told
#[derive(Debug, Clone, Copy, Default)]
pub struct FuzzClock {
    now: Instant,
}

impl FuzzClock {
    /// Starts at a non-zero epoch so that `Instant::ZERO`-based defaults are not special
    pub fn new(start_ms: u16) -> Self {
        FuzzClock {
            now: Instant::from_millis(u64::from(start_ms)),
        }
    }

    /// Current time
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Advance by `d`
    pub fn advance(&mut self, d: Duration) -> Instant {
        self.now += d;
        self.now
    }
}

/// Assert the timer invariant: `poll_timeout` is `None` or not earlier than the last `now`
pub fn check_timeout<M: Machine>(m: &M, last_now: Instant, ctx: &str) {
    if let Some(t) = m.poll_timeout() {
        assert!(
            t >= last_now,
            "{ctx}: poll_timeout {t} earlier than the last now {last_now}"
        );
    }
}

/// Drain `poll_transmit` until it reports nothing, handing every frame to `check`
///
/// With `tiny = Some(n)` the first request uses an `n`-byte buffer: a `BufferTooSmall` must name
/// more than `n` bytes, and the retry with the full buffer must then yield a frame of exactly
/// that length (nothing changed on the error). Panics when more than `max` frames come out of one
/// drain (the queues are bounded) or when a frame is longer than the buffer.
pub fn drain_transmits<M: Machine>(
    m: &mut M,
    now: Instant,
    big: usize,
    tiny: Option<usize>,
    max: usize,
    mut check: impl FnMut(&M, Transmit<M::Peer>, &[u8]),
) -> usize {
    let mut buf = vec![0u8; big];
    let mut count = 0usize;
    let mut expect_len: Option<usize> = None;
    if let Some(n) = tiny {
        let n = n.min(big);
        let mut small = vec![0u8; n];
        match m.poll_transmit(now, &mut small) {
            Ok(Some(t)) => {
                assert!(t.len <= n, "transmit len {} > buffer {n}", t.len);
                count += 1;
                check(m, t, &small[..t.len]);
            }
            Ok(None) => return 0,
            Err(BufferTooSmall { required }) => {
                assert!(
                    required > n,
                    "BufferTooSmall {{ required: {required} }} with a {n}-byte buffer"
                );
                expect_len = Some(required);
            }
        }
    }
    loop {
        match m.poll_transmit(now, &mut buf) {
            Ok(Some(t)) => {
                assert!(t.len <= big, "transmit len {} > buffer {big}", t.len);
                if let Some(required) = expect_len.take() {
                    assert_eq!(
                        t.len, required,
                        "frame after BufferTooSmall has another length than announced"
                    );
                }
                count += 1;
                assert!(
                    count <= max,
                    "more than {max} frames in one drain: queue unbounded?"
                );
                check(m, t, &buf[..t.len]);
            }
            Ok(None) => {
                assert!(expect_len.is_none(), "frame vanished after BufferTooSmall");
                return count;
            }
            Err(BufferTooSmall { required }) => {
                panic!("BufferTooSmall {{ required: {required} }} with the full {big}-byte buffer")
            }
        }
    }
}

/// Drain `poll_event`, handing every event to `check`; panics after more than `max` events
pub fn drain_events<M: Machine>(
    m: &mut M,
    max: usize,
    mut check: impl FnMut(&M, M::Event),
) -> usize {
    let mut count = 0usize;
    while let Some(e) = m.poll_event() {
        count += 1;
        assert!(
            count <= max,
            "more than {max} events in one drain: queue unbounded?"
        );
        check(m, e);
    }
    count
}

/// Run due timers at `now` the way a caller's loop does: while `poll_timeout() <= now`, call
/// `handle_timeout(now)` and `after` (which drains the machine). Panics when the timer stays due
/// after `limit` rounds (a livelock: a timer that fires without moving its deadline).
pub fn run_timers<M: Machine>(
    m: &mut M,
    now: Instant,
    limit: usize,
    mut after: impl FnMut(&mut M),
) {
    for _ in 0..limit {
        match m.poll_timeout() {
            Some(t) if t <= now => {
                m.handle_timeout(now);
                after(m);
            }
            _ => return,
        }
    }
    panic!(
        "timer livelock: poll_timeout {:?} still due at {now} after {limit} rounds",
        m.poll_timeout()
    );
}

/// `handle_timeout` before the deadline is a no-op: returns true when the call is spurious
/// (the caller then asserts that nothing came out of it)
pub fn is_spurious<M: Machine>(m: &M, now: Instant) -> bool {
    m.poll_timeout().is_none_or(|t| t > now)
}

/// `TETHER_FUZZ_ALLOW_STALE_TIMEOUT`: tolerate a `poll_timeout` in the past after an input or
/// command (not after `handle_timeout`) as long as running the timers at `now` fixes it
///
/// `1` applies to every target, otherwise a comma-separated list of target names (e.g.
/// `longport_server`). Unset by default, so the targets check the invariant strictly. Long
/// exploratory runs set it once a stale-deadline bug is known and filed (with its reproducer
/// under `regressions/`), so they can look for other bugs instead of stopping at the known one.
pub fn allow_stale_timeout() -> bool {
    static ALLOW: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ALLOW.get_or_init(|| {
        let Some(v) = std::env::var_os("TETHER_FUZZ_ALLOW_STALE_TIMEOUT") else {
            return false;
        };
        let v = v.to_string_lossy().into_owned();
        if v == "1" {
            return true;
        }
        let me = std::env::args()
            .next()
            .and_then(|a| {
                std::path::Path::new(&a)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
            })
            .unwrap_or_default();
        v.split(',').any(|t| t.trim() == me)
    })
}

/// True when `poll_timeout` lies before `now`
pub fn timeout_is_stale<M: Machine>(m: &M, now: Instant) -> bool {
    m.poll_timeout().is_some_and(|t| t < now)
}

/// `TETHER_FUZZ_TRACE=1`: print each op of a machine target to stderr (for reading reproducers)
pub fn trace_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("TETHER_FUZZ_TRACE").is_some_and(|v| v == "1"))
}

/// What the four machine targets share for [`settle`]: the machine, the latest `now`, a full
/// drain of the machine's queues, and the hold bookkeeping (ops during which the target leaves
/// the queues full, to reach the "queue full" paths)
pub trait Harness {
    /// The machine under test
    type M: Machine;
    /// The machine
    fn machine(&mut self) -> &mut Self::M;
    /// The latest `now` passed to the machine
    fn now(&self) -> Instant;
    /// Move the target's clock (the machine sees it with the next call)
    fn set_now(&mut self, now: Instant);
    /// Drain transmits and events, checking them
    fn drain(&mut self);
    /// Settle after an op and check the target's invariants (starts with [`settle`])
    fn after_op(&mut self);
    /// Ops still to hold, and whether a hold happened since the last settle
    fn hold(&mut self) -> (&mut u8, &mut bool);
}

/// The start of every target's `after_op`. While holding: count the op down and return false
/// (the queues stay full, invariants that need a drain are not checked). Otherwise drain; after
/// a hold, run the timers it left due the way a caller's loop would (at most 64 rounds); with
/// [`allow_stale_timeout`], run the timers an input left in the past (a known, filed bug) instead
/// of reporting it. Returns true: the caller checks its invariants next.
pub fn settle<H: Harness>(h: &mut H) -> bool {
    let (hold, was_held) = h.hold();
    if *hold > 0 {
        *hold -= 1;
        *was_held = true;
        return false;
    }
    let held = std::mem::take(was_held);
    h.drain();
    if held {
        for _ in 0..64 {
            let now = h.now();
            match h.machine().poll_timeout() {
                Some(t) if t <= now => {
                    h.machine().handle_timeout(now);
                    h.drain();
                }
                _ => break,
            }
        }
    }
    let now = h.now();
    if allow_stale_timeout() && timeout_is_stale(h.machine(), now) {
        h.machine().handle_timeout(now);
        h.drain();
    }
    true
}

/// Let `d` pass: run the timers that fall due the way a caller's loop does, with
/// [`Harness::after_op`] after each round. While holding, at most one timer round runs (the
/// queues stay full). Panics when a timer stays due after 64 rounds (a livelock).
pub fn advance<H: Harness>(h: &mut H, d: Duration) {
    let now = h.now() + d;
    h.set_now(now);
    if *h.hold().0 > 0 {
        if h.machine().poll_timeout().is_some_and(|t| t <= now) {
            h.machine().handle_timeout(now);
        }
        return h.after_op();
    }
    for _ in 0..64 {
        match h.machine().poll_timeout() {
            Some(t) if t <= now => {
                h.machine().handle_timeout(now);
                h.after_op();
            }
            _ => return h.after_op(),
        }
    }
    panic!(
        "timer livelock at {now}: poll_timeout {:?}",
        h.machine().poll_timeout()
    );
}

/// `impl Harness for $h` for a target struct with fields `$machine: $ty`, `now: Instant`,
/// `hold: u8`, `was_held: bool` and inherent `drain` / `after_op` methods
#[macro_export]
macro_rules! impl_harness {
    ($h:ident, $machine:ident: $ty:ty) => {
        impl $crate::Harness for $h {
            type M = $ty;
            fn machine(&mut self) -> &mut Self::M {
                &mut self.$machine
            }
            fn now(&self) -> ::tether_net::Instant {
                self.now
            }
            fn set_now(&mut self, now: ::tether_net::Instant) {
                self.now = now;
            }
            fn drain(&mut self) {
                $h::drain(self);
            }
            fn after_op(&mut self) {
                $h::after_op(self);
            }
            fn hold(&mut self) -> (&mut u8, &mut bool) {
                (&mut self.hold, &mut self.was_held)
            }
        }
    };
}

/// Start a machine target: the machine has seen `h.now()` from the start (as if created then),
/// so "the latest now passed" is always `h.now()` and stale-stamped inputs are clamped, never
/// the first time it sees; then the first [`Harness::after_op`]
pub fn start<H: Harness>(h: &mut H) {
    let now = h.now();
    h.machine().handle_timeout(now);
    h.after_op();
}

/// The next op byte of a machine target (at most 256 per input, counted in `ops`); with
/// `TETHER_FUZZ_TRACE=1` it is printed with its op number (`byte & mask`), `now` and the bytes
/// that follow
pub fn next_op(r: &mut OpReader<'_>, ops: &mut u32, mask: u8, now: Instant) -> Option<u8> {
    if r.is_empty() || *ops >= 256 {
        return None;
    }
    *ops += 1;
    let op = r.u8();
    if trace_enabled() {
        eprintln!(
            "op {:2} (byte {op:#04x}) at {now} next {:02x?}",
            op & mask,
            r.peek()
        );
    }
    Some(op)
}

/// A well-formed game control packet: `id % 5` picks KEEP_ALIVE, CONNECT, CONNECT_ACCEPT, ACCEPT
/// or CLOSE with `reason`
pub fn game_control(
    id: u8,
    ack: u16,
    token: Option<tether_net::game::wire::Token>,
    reason: &[u8],
) -> Vec<u8> {
    use tether_net::game::wire::{Control, ControlPacket, Reason};
    let control = match id % 5 {
        0 => Control::KeepAlive,
        1 => Control::Connect,
        2 => Control::ConnectAccept,
        3 => Control::Accept,
        _ => Control::Close(Reason::from_bytes(reason)),
    };
    let p = ControlPacket {
        ack,
        control,
        token,
    };
    let mut buf = vec![0u8; p.buffer_len()];
    let n = p.emit(&mut buf).expect("exact buffer");
    buf.truncate(n);
    buf
}

/// A well-formed game chunk packet; bits of `f`: 1 compression, 2 resend
pub fn game_chunks(
    f: u8,
    num_chunks: u8,
    ack: u16,
    token: Option<tether_net::game::wire::Token>,
    payload: &[u8],
) -> Vec<u8> {
    use tether_net::game::wire::{ChunkPacket, Flags, Header};
    let p = ChunkPacket {
        header: Header {
            flags: Flags {
                compression: f & 1 != 0,
                resend: f & 2 != 0,
                control: false,
            },
            ack,
            num_chunks,
        },
        payload,
        token,
    };
    let mut buf = vec![0u8; p.buffer_len()];
    let n = p.emit(&mut buf).expect("exact buffer");
    buf.truncate(n);
    buf
}

/// A chunk packet of up to 7 well-formed chunks read from `r` (each non-vital, or vital with a
/// sequence 1 to 6 after `base`, some marked resend), maybe compressed: bits of `f`: 1
/// compression, 4 the packet's resend flag
pub fn game_chunk_packet(
    r: &mut OpReader<'_>,
    f: u8,
    ack: u16,
    token: Option<tether_net::game::wire::Token>,
    base: u16,
) -> Vec<u8> {
    use tether_net::game::chunk::{write_packet, Chunk, ChunkWriter};
    use tether_net::game::wire::{Flags, Header};
    let n = r.u8() % 8;
    let mut payload = [0u8; 1400];
    let mut w = ChunkWriter::new(&mut payload, 1390);
    for _ in 0..n {
        let g = r.u8();
        let data = r.blob();
        let data = &data[..data.len().min(1023)];
        let chunk = if g & 1 == 0 {
            Chunk::non_vital(data)
        } else {
            let s = (base + 1 + u16::from(g >> 1) % 6) % 1024;
            let mut c = Chunk::vital(s, data);
            c.flags.resend = g & 0x80 != 0;
            c
        };
        if w.push(&chunk).is_err() {
            break;
        }
    }
    let header = Header {
        flags: Flags {
            resend: f & 4 != 0,
            ..Flags::default()
        },
        ack,
        num_chunks: w.num_chunks(),
    };
    let len = w.len();
    let mut out = vec![0u8; 2048];
    let n = write_packet(header, &payload[..len], token, f & 1 != 0, &mut out).expect("fits");
    out.truncate(n);
    out
}

/// Check a chunk packet a game machine sent: it decompresses, parses with `token` (and `ack`,
/// when given), and every chunk is whole
pub fn game_check_chunk_packet(
    bytes: &[u8],
    token: Option<tether_net::game::wire::Token>,
    ack: Option<u16>,
) {
    use tether_net::game::chunk::{decompress_packet, Chunks, SCRATCH_LEN};
    use tether_net::game::wire::{self, Packet, TokenMode};
    let mut scratch = [0u8; SCRATCH_LEN];
    let plain = decompress_packet(bytes, &mut scratch)
        .unwrap_or_else(|e| panic!("own chunk packet does not decompress: {e:?}"));
    let mode = if token.is_some() {
        TokenMode::Trailing
    } else {
        TokenMode::Vanilla
    };
    let p = wire::parse(plain, mode).expect("own chunk packet parses");
    let Packet::Chunks(p) = p.packet else {
        panic!("chunk packet parsed as control")
    };
    assert_eq!(p.token, token, "chunk packet token");
    if let Some(ack) = ack {
        assert_eq!(p.header.ack, ack, "chunk packet ack");
    }
    let mut it = Chunks::new(p.payload, p.header.num_chunks);
    for chunk in it.by_ref() {
        let chunk = chunk.expect("own chunks are whole");
        assert!(chunk.data.len() <= 1023);
    }
    assert!(it.trailing().is_empty(), "bytes after the chunks");
}

/// Check the packet a game machine's `send_chunks` wrote: at most `MAX_PACKET_LEN` bytes, parses
/// in the mode of `token`, carries `payload` as given and (unless the compression flag was asked
/// for) `token`; its header
pub fn game_check_sent_chunks(
    bytes: &[u8],
    token: Option<tether_net::game::wire::Token>,
    payload: &[u8],
    compression: bool,
) -> tether_net::game::wire::Header {
    use tether_net::game::wire::{self, Packet, TokenMode, MAX_PACKET_LEN};
    assert!(bytes.len() <= MAX_PACKET_LEN);
    let mode = if token.is_some() {
        TokenMode::Trailing
    } else {
        TokenMode::Vanilla
    };
    let parsed = wire::parse(bytes, mode).expect("own chunk packet parses");
    let Packet::Chunks(c) = parsed.packet else {
        panic!("chunk packet parsed as control")
    };
    assert_eq!(c.payload, payload);
    if !compression {
        assert_eq!(c.token, token);
    }
    c.header
}

/// `packet` (a game control or chunk packet) with everything after its header Huffman-compressed
/// and the compression flag set, as a vanilla 0.6.4 peer sends it (or DDNet a chunk packet)
pub fn game_compress(packet: &[u8]) -> Vec<u8> {
    let Some((head, body)) = packet.split_first_chunk::<3>() else {
        return packet.to_vec();
    };
    let mut out = vec![0u8; 3 + tether_net::game::huffman::compressed_len(body)];
    out[..3].copy_from_slice(head);
    out[0] |= 0x80;
    let n = tether_net::game::huffman::compress(body, &mut out[3..]).expect("exact buffer");
    out.truncate(3 + n);
    out
}

/// Check a CLOSE reason a game machine handed out: at most 127 bytes, no NUL, borrowed from
/// the `datagram` that carried it
pub fn game_check_reason(reason: tether_net::PeerText<'_>, datagram: &[u8]) {
    let r = reason.as_bytes();
    assert!(
        r.len() <= tether_net::game::wire::MAX_REASON_LEN && !r.contains(&0),
        "reason {r:02x?}"
    );
    if !r.is_empty() {
        let (start, at) = (datagram.as_ptr() as usize, r.as_ptr() as usize);
        assert!(
            at >= start && at + r.len() <= start + datagram.len(),
            "reason not borrowed from the datagram"
        );
    }
}

/// A LongPort control body's bytes
pub fn lp_encode<'a, B: tether_net::longport::control::Body<'a>>(b: &B) -> Vec<u8> {
    let mut out = vec![0u8; b.encoded_len()];
    let n = b.encode(&mut out).expect("exact buffer");
    out.truncate(n);
    out
}

/// `body`, wrapped in a stored-block gzip stream when `gz`
pub fn lp_maybe_gzip(gz: bool, body: Vec<u8>) -> Vec<u8> {
    use tether_net::longport::gzip::{gzip_stored, stored_len};
    if !gz {
        return body;
    }
    let mut out = vec![0u8; stored_len(body.len())];
    let n = gzip_stored(&body, &mut out).expect("exact buffer");
    out.truncate(n);
    out
}

/// The inflated body of a gzip'd Auth/Reconnect the server handed over (it checked that it
/// inflates within `MAX_INFLATED_LOGIN`)
pub fn lp_gunzip_login(body: &[u8]) -> Vec<u8> {
    use tether_net::longport::{gzip::gunzip, MAX_INFLATED_LOGIN};
    let mut out = vec![0u8; MAX_INFLATED_LOGIN];
    let n = gunzip(body, &mut out).expect("a login the server accepted inflates");
    out.truncate(n);
    out
}

/// A LongPort packet's bytes
pub fn lp_emit(p: &tether_net::longport::wire::Packet<'_>) -> Vec<u8> {
    let mut out = vec![0u8; p.buffer_len()];
    let n = p.emit(&mut out).expect("exact buffer");
    out.truncate(n);
    out
}
