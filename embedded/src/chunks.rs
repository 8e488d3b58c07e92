//! The chunk layer on the target: a `Reliable` game client against a peer played with the codecs
//! (a `Vital` channel, the chunk writer/reader, Huffman)
//!
//! Handshake, a vital chunk whose packet is lost and resent after the 1 s timer, the peer's ack,
//! a compressed packet with a vital and a non-vital chunk handed out by `poll_chunk`, and the
//! Huffman vectors of a live DDNet capture.

use tether_net::game::chunk::{
    decompress_packet, payload_limit, write_packet, Chunk, ChunkWriter, Chunks, SCRATCH_LEN,
};
use tether_net::game::huffman;
use tether_net::game::vital::{Receive, Vital, VitalConfig};
use tether_net::game::wire::{self, Control, ControlPacket, Flags, Header, Packet, TokenMode};
use tether_net::game::{
    ChunkConfig, Client, ClientApp, ClientConfig, ClientEvent, ClientState, Reliable, Token,
};
use tether_net::{Duration, Instant};

use crate::clock::VClock;
use crate::runner::{Runner, Step, StepResult};
use crate::{ensure, ensure_eq, try_step};

/// Small capacities: the Cortex-M0 board has 16 KiB of RAM for everything
type Layer = Reliable<1024, 8, 1024, 8>;

const TOKEN: Token = Token([0x40, 0x72, 0xf6, 0x5a]);

struct World {
    clock: VClock,
    client: Client<4, Layer>,
    /// The server side of the vital channel, played by the scenario
    peer: Vital<1024, 8>,
    buf: [u8; 1400],
    /// Vital chunk data the peer received, last one
    peer_got: heapless::Vec<u8, 32>,
    /// Chunks the client handed out: (vital, first data byte, length)
    client_got: heapless::Vec<(bool, u8, usize), 4>,
    datagrams: u32,
}

impl World {
    fn new() -> Self {
        World {
            clock: VClock::new(Instant::from_secs(1)),
            client: Client::with_chunks(
                ClientConfig::new().with_keep_alive(Duration::from_secs(1)),
                ChunkConfig::new(),
            ),
            peer: Vital::new(VitalConfig::reference()),
            buf: [0; 1400],
            peer_got: heapless::Vec::new(),
            client_got: heapless::Vec::new(),
            datagrams: 0,
        }
    }

    fn clear_logs(&mut self) {
        self.client_got.clear();
    }

    /// The client's next datagram, if any
    fn next_from_client(&mut self) -> Result<Option<usize>, crate::runner::Fail> {
        let now = self.clock.now();
        let t = try_step!(crate::stack_call!(
            "client.poll_transmit",
            self.client.poll_transmit(now, &mut self.buf)
        ));
        if t.is_some() {
            self.datagrams += 1;
        }
        Ok(t.map(|t| t.len))
    }

    /// Feed a datagram to the client and hand its chunks out
    fn deliver_to_client(&mut self, bytes: &[u8]) -> StepResult {
        let now = self.clock.now();
        let r = try_step!(crate::stack_call!(
            "client.handle_input",
            self.client.handle_input(now, (), bytes)
        ));
        if let Some(ClientApp::ChunksReady) = r.into_app() {
            while let Some(c) = crate::stack_call!("client.poll_chunk", self.client.poll_chunk()) {
                let first = c.data.first().copied().unwrap_or(0);
                ensure!(
                    self.client_got
                        .push((c.flags.vital, first, c.data.len()))
                        .is_ok(),
                    "chunk log full"
                );
            }
        }
        Ok(())
    }
}

fn handshake(w: &mut World) -> StepResult {
    try_step!(crate::stack_call!(
        "client.connect",
        w.client.connect(w.clock.now())
    ));
    let n = w.next_from_client()?;
    ensure_eq!(n, Some(12));
    let mut reply = [0u8; 16];
    let len = try_step!(ControlPacket {
        ack: 0,
        control: Control::ConnectAccept,
        token: Some(TOKEN),
    }
    .emit(&mut reply));
    w.deliver_to_client(&reply[..len])?;
    ensure_eq!(w.client.state(), ClientState::Online);
    ensure_eq!(
        crate::stack_call!("client.poll_event", w.client.poll_event()),
        Some(ClientEvent::Connected { token: Some(TOKEN) })
    );
    // the ACCEPT
    ensure_eq!(w.next_from_client()?, Some(8));
    Ok(())
}

fn lost_vital_chunk_is_resent(w: &mut World) -> StepResult {
    let now = w.clock.now();
    // INFO "0.6 626fce9a778df4d4" as DDNet's join sends it: vital sequence 1
    let info = b"\x030.6 626fce9a778df4d4\x00\x00";
    ensure_eq!(
        try_step!(crate::stack_call!(
            "client.send_vital",
            w.client.send_vital(now, info, true)
        )),
        1
    );
    // the first packet is lost on the way
    ensure!(w.next_from_client()?.is_some(), "the chunk packet goes out");
    ensure_eq!(w.next_from_client()?, None);
    // 1 s later (DDNet's resend timer) it goes out again, flagged as a resend
    let due = crate::stack_call!("client.poll_timeout", w.client.poll_timeout());
    ensure!(
        due.is_some_and(|t| t <= now + Duration::from_secs(1)),
        "a resend timer runs"
    );
    let t = w.clock.advance(Duration::from_secs(1));
    crate::stack_call!("client.handle_timeout", w.client.handle_timeout(t));
    let Some(len) = w.next_from_client()? else {
        return Err(crate::runner::Fail::new(line!(), format_args!("no resend")));
    };
    // the peer reads it: token, header, one vital chunk with the R flag
    let mut scratch = [0u8; SCRATCH_LEN];
    let plain = try_step!(decompress_packet(&w.buf[..len], &mut scratch));
    let parsed = try_step!(wire::parse(plain, TokenMode::Trailing));
    let Packet::Chunks(p) = parsed.packet else {
        return Err(crate::runner::Fail::new(
            line!(),
            format_args!("not chunks"),
        ));
    };
    ensure_eq!(p.token, Some(TOKEN));
    try_step!(w.peer.on_packet(t, &p.header));
    let mut chunks = Chunks::new(p.payload, p.header.num_chunks);
    let c = try_step!(chunks.next().unwrap_or(Err(
        tether_net::game::chunk::ChunkError::TruncatedHeader {
            index: 0,
            offset: 0
        }
    )));
    ensure!(
        c.flags.vital && c.flags.resend,
        "a vital chunk marked as resent"
    );
    ensure_eq!(c.seq, 1);
    ensure_eq!(w.peer.on_chunk(t, &c), Receive::Deliver);
    w.peer_got.clear();
    try_step!(w.peer_got.extend_from_slice(c.data).map_err(|_| ()));
    ensure_eq!(w.peer_got.as_slice(), &info[..]);
    ensure_eq!(w.client.chunk_stats().resent, 1);
    Ok(())
}

fn compressed_packet_delivers_in_order(w: &mut World) -> StepResult {
    let now = w.clock.advance(Duration::from_millis(20));
    // the peer answers: a vital chunk (MAP_CHANGE-like) and a non-vital one of zero bytes (a
    // snapshot), in one packet, compressed; its header acks the client's chunk
    try_step!(w.peer.queue(now, b"\x05Tutorial\x00", true));
    let mut payload = [0u8; 128];
    let mut cw = ChunkWriter::new(&mut payload, payload_limit(true));
    let filled = w.peer.fill(now, &mut cw);
    try_step!(cw.push(&Chunk::non_vital(&[0u8; 40])));
    let header = Header {
        flags: Flags::default(),
        ack: filled.ack,
        num_chunks: cw.num_chunks(),
    };
    let mut out = [0u8; 200];
    let n = try_step!(write_packet(
        header,
        cw.as_bytes(),
        Some(TOKEN),
        true,
        &mut out
    ));
    ensure!(out[0] & 0x80 != 0, "the packet went out compressed");
    ensure!(n < 3 + cw.len() + 4, "compressed is shorter");
    w.deliver_to_client(&out[..n])?;
    ensure_eq!(w.client_got.as_slice(), &[(true, 0x05, 10), (false, 0, 40)]);
    ensure_eq!(w.client.ack(), 1);
    ensure_eq!(w.client.unacked(), 0);
    Ok(())
}

fn huffman_vectors(_w: &mut World) -> StepResult {
    // live DDNet 16.4 capture: an INPUT packet's payload, 22 bytes -> 15
    let plain: [u8; 22] = [
        0x01, 0x00, 0x21, 0x90, 0x01, 0x92, 0x01, 0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0x72,
        0xf6, 0x5a,
    ];
    let packed: [u8; 15] = [
        0x98, 0x91, 0x49, 0x64, 0x81, 0xd6, 0xff, 0x95, 0xe0, 0xc4, 0x31, 0x8a, 0x4b, 0x71, 0x03,
    ];
    let mut out = [0u8; 32];
    let n = try_step!(huffman::compress(&plain, &mut out));
    ensure_eq!(&out[..n], &packed[..]);
    let mut back = [0u8; 64];
    let m = try_step!(huffman::decompress(&packed, &mut back));
    ensure_eq!(&back[..m], &plain[..]);
    ensure_eq!(
        try_step!(huffman::decompressed_tail(&packed)),
        (22, [0x40, 0x72, 0xf6, 0x5a])
    );
    // a stream that never reaches EOF is stopped by the output limit
    ensure!(
        huffman::decompress(&[0u8; 200], &mut back).is_err(),
        "zero bits are no stream"
    );
    Ok(())
}

const STEPS: &[Step<World>] = &[
    ("chunks: handshake of a Reliable client", handshake),
    (
        "chunks: a lost vital chunk is resent after 1 s",
        lost_vital_chunk_is_resent,
    ),
    (
        "chunks: compressed packet, vital + non-vital chunk in order",
        compressed_packet_delivers_in_order,
    ),
    (
        "chunks: Huffman vectors of a DDNet capture",
        huffman_vectors,
    ),
];

/// Run the chunk-layer scenario (its own stack frame)
#[inline(never)]
pub fn run(runner: &mut Runner) {
    let mut world = World::new();
    runner.run(&mut world, World::clear_logs, STEPS);
    cortex_m_semihosting::hprintln!(
        "chunks: {} datagrams from the client, virtual time {} ms",
        world.datagrams,
        world.clock.now().as_millis()
    );
}
