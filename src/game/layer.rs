//! The opt-in chunk layer of the game machines ([`ControlOnly`] or [`Reliable`]): the marker
//! types, their configuration, and the state and code the machines share for it (receive buffer,
//! lazy chunk reading, packet writing). The user documentation is on [`Reliable`].

use super::chunk::{
    payload_limit, Chunk, ChunkWriter, Chunks, MAX_CHUNK_SIZE, MAX_PAYLOAD, SCRATCH_LEN,
};
use super::error::Error;
use super::huffman;
use super::vital::{Channel, Filled, QueueError, Vital, VitalConfig};
use super::wire::{
    self, ack_in_range, ChunkPacket, ControlPacket, DecodeError, Flags, Header, Packet, Reason,
    Token, TokenMode, Warnings, FLAG_COMPRESSION, HEADER_LEN, MAX_PACKET_LEN, TOKEN_LEN,
};
use crate::time::Instant;

/// Control-plane connections without a chunk layer (the default of both machines)
///
/// Chunk packets are passed through as [`ChunkPacket`](super::wire::ChunkPacket)s; the machines
/// keep no memory for them. The alternative is [`Reliable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ControlOnly;

/// Connections with the chunk layer and vital reliability, with these capacities per connection
///
/// `SEND_BYTES` / `SEND_CHUNKS`: the resend buffer (vital chunks sent and not yet acked, at most
/// 511 chunks); `REORDER_BYTES` / `REORDER_CHUNKS`: the reorder buffer for vital chunks that
/// arrive before their turn (0 = none: such chunks are dropped and asked for again, as the
/// reference does). DDNet 16.4's map download keeps 16 MAP_DATA chunks of 906 bytes in flight:
/// its receiver wants a reorder buffer of at least 16 × 906 bytes, its sender a resend buffer of
/// that size.
///
/// # The layer is a type parameter
///
/// The last type parameter of [`Client`](super::Client) and [`Server`](super::Server) chooses
/// what a connection does with chunk packets:
///
/// * [`ControlOnly`] (the default): the machines run the control plane only and pass chunk
///   packets through as [`ChunkPacket`](super::wire::ChunkPacket)s; the application does its own
///   sequencing (`set_ack`, `set_sequence`, `send_chunks`). No memory beyond the control plane.
/// * [`Reliable`]: each connection (the client's one, each server peer) gets a vital channel
///   ([`Vital`]) with the const-generic capacities of the type. The machines then decompress,
///   sequence, ack, resend, reorder and compress; the application sends chunks with
///   `send_vital` / `send_non_vital` and reads the delivered ones with `poll_chunk`.
///
/// ```
/// use tether_net::game::{ChunkConfig, Client, ClientConfig, Reliable};
/// // a client with the chunk layer: 8 KiB resend buffer (32 chunks), 16 KiB reorder buffer (32)
/// let client: Client<4, Reliable<8192, 32, 16384, 32>> =
///     Client::with_chunks(ClientConfig::new(), ChunkConfig::fast());
/// # let _ = client;
/// ```
///
/// # Receiving: `handle_input`, then `poll_chunk`
///
/// A chunk packet is decompressed (when its header says so) **before** its token and ack are
/// checked, into one receive buffer of 1,397 bytes (the client's, or one shared by all of a
/// server's peers); an uncompressed one is copied there. `handle_input` then returns
/// [`ClientApp::ChunksReady`](super::ClientApp::ChunksReady) /
/// [`ServerApp::ChunksReady`](super::ServerApp::ChunksReady), and `poll_chunk` hands out the
/// packet's chunks one by one, borrowed from the machine: non-vital chunks as they come, vital
/// chunks in sequence order exactly once. A vital chunk that arrived early waits in the reorder
/// buffer (bounded by `REORDER_BYTES` / `REORDER_CHUNKS`) and is handed out, borrowed from there,
/// by the `poll_chunk` call after the one that delivered the chunk before it. Read every chunk
/// before the next `handle_input`: that input replaces the packet, and vital chunks not read are
/// not acknowledged (the peer sends them again).
///
/// # Sending
///
/// `send_vital(now, data, flush)` copies the chunk into the bounded resend buffer and gives it its
/// sequence number; it goes out from `poll_transmit`, at once with `flush`, else with the next
/// packet or after the flush timeout (DDNet's MSGFLAG_FLUSH). `send_non_vital(now, data, out)`
/// writes a packet at once with that chunk and every queued vital chunk that fits. Packets are
/// Huffman-compressed when that makes them shorter ([`ChunkConfig::with_compression`]), as DDNet
/// does. Resends, acks, resend requests and flushes run from `handle_timeout` / `poll_timeout`.
/// A connection whose oldest unacked chunk is older than the unacked timeout ends with
/// [`CloseCause::TooWeak`](super::CloseCause::TooWeak) (no CLOSE is sent, as in DDNet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Reliable<
    const SEND_BYTES: usize = 16384,
    const SEND_CHUNKS: usize = 64,
    const REORDER_BYTES: usize = 16384,
    const REORDER_CHUNKS: usize = 64,
>;

/// The chunk-layer choice of a game machine: [`ControlOnly`] or [`Reliable`] (sealed)
pub trait Layer: imp::Imp {}

impl Layer for ControlOnly {}
impl<const SB: usize, const SN: usize, const RB: usize, const RN: usize> Layer
    for Reliable<SB, SN, RB, RN>
{
}

/// Settings of the chunk layer of a [`Reliable`] machine
///
/// `new()` (also `default()`): DDNet 16.4's timers ([`VitalConfig::reference`]) and compression
/// on; [`ChunkConfig::fast`]: the loss-tolerant timers ([`VitalConfig::fast`]).
///
/// ```
/// use core::time::Duration;
/// use tether_net::game::vital::VitalConfig;
/// use tether_net::game::ChunkConfig;
/// let c = ChunkConfig::fast()
///     .with_vital(VitalConfig::fast().with_unacked_timeout(Duration::from_secs(100)))
///     .with_compression(false);
/// assert!(!c.compression());
/// assert_eq!(c.vital().unacked_timeout(), Duration::from_secs(100));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct ChunkConfig {
    vital: VitalConfig,
    compress: bool,
}

impl ChunkConfig {
    /// Reference timers, compression on
    #[must_use]
    pub const fn new() -> Self {
        ChunkConfig {
            vital: VitalConfig::reference(),
            compress: true,
        }
    }

    /// Loss-tolerant timers ([`VitalConfig::fast`]), compression on
    #[must_use]
    pub const fn fast() -> Self {
        ChunkConfig {
            vital: VitalConfig::fast(),
            compress: true,
        }
    }

    /// The vital channel's timers and options (already clamped by its own setters)
    #[must_use]
    pub const fn with_vital(mut self, vital: VitalConfig) -> Self {
        self.vital = vital;
        self
    }

    /// Send a chunk packet Huffman-compressed when that is strictly shorter (default: on, as DDNet
    /// does); received packets are decompressed either way
    #[must_use]
    pub const fn with_compression(mut self, on: bool) -> Self {
        self.compress = on;
        self
    }

    /// The vital channel's configuration
    #[must_use]
    pub const fn vital(&self) -> VitalConfig {
        self.vital
    }

    /// Whether outgoing packets are compressed when shorter
    #[must_use]
    pub const fn compression(&self) -> bool {
        self.compress
    }
}

impl Default for ChunkConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// The receive buffer: one decompressed (or copied) packet, read chunk by chunk
pub(crate) struct Rx {
    buf: [u8; SCRATCH_LEN],
    /// Next chunk's offset in `buf`
    pos: u16,
    /// End of the chunk data in `buf` (token excluded)
    end: u16,
    /// Chunks announced and not read yet
    left: u8,
}

impl Rx {
    const fn new() -> Self {
        Rx {
            buf: [0; SCRATCH_LEN],
            pos: 0,
            end: 0,
            left: 0,
        }
    }

    /// Forget the packet (unread chunks are dropped, unacknowledged)
    pub(crate) fn clear(&mut self) {
        self.left = 0;
        self.pos = 0;
        self.end = 0;
    }

    /// Decompress `datagram` (compression flag set) into the buffer: header (flag cleared) and
    /// payload; returns the plain datagram, `None` when it does not decode
    pub(crate) fn decompress(&mut self, datagram: &[u8]) -> Option<&[u8]> {
        self.clear();
        let (&[b0, b1, b2], payload) = datagram.split_first_chunk::<HEADER_LEN>()?;
        let (head, body) = self.buf.split_first_chunk_mut::<HEADER_LEN>()?;
        *head = [b0 & !FLAG_COMPRESSION, b1, b2];
        let n = huffman::decompress(payload, &mut body[..MAX_PAYLOAD]).ok()?;
        self.buf.get(..HEADER_LEN + n)
    }

    /// Make the accepted chunk packet readable: its chunk data is `buf[start..start + len]`
    /// (already there after [`Rx::decompress`]) or `copy` (an uncompressed datagram's payload)
    pub(crate) fn load(&mut self, num_chunks: u8, start: usize, len: usize, copy: Option<&[u8]>) {
        let (start, len) = match copy {
            Some(bytes) => {
                let len = bytes.len().min(MAX_PAYLOAD);
                self.buf[HEADER_LEN..HEADER_LEN + len].copy_from_slice(&bytes[..len]);
                (HEADER_LEN, len)
            }
            None => (start, len),
        };
        self.pos = start as u16;
        self.end = (start + len).min(SCRATCH_LEN) as u16;
        self.left = num_chunks;
    }

    /// The decompressed bytes `range` (for a compressed control packet's parse)
    pub(crate) fn bytes(&self, len: usize) -> &[u8] {
        self.buf.get(..len).unwrap_or(&[])
    }
}

/// What `poll_chunk` found
pub(crate) enum Next {
    /// Hand this chunk of the packet (at `pos`, `len` data bytes) out
    Packet {
        flags: super::chunk::ChunkFlags,
        seq: u16,
        start: usize,
        len: usize,
    },
    /// Hand out the chunk the reorder buffer released (sequence)
    Ready(u16),
    /// Nothing more; `malformed` when a chunk ran past the end of the packet
    Done { malformed: bool },
}

/// Decide the next chunk to hand out: first what the reorder buffer can deliver, then the
/// packet's chunks in order, each judged by the vital channel (duplicates and early chunks are
/// skipped, the latter kept in the reorder buffer when there is room)
pub(crate) fn next_chunk(rx: &mut Rx, vital: &mut dyn Channel, now: Instant) -> Next {
    if let Some(seq) = vital.advance_ready() {
        return Next::Ready(seq);
    }
    while rx.left > 0 {
        let (pos, end) = (usize::from(rx.pos), usize::from(rx.end));
        let rest = rx.buf.get(pos..end).unwrap_or(&[]);
        let mut it = Chunks::new(rest, 1);
        let chunk = match it.next() {
            Some(Ok(c)) => c,
            _ => {
                rx.clear();
                return Next::Done { malformed: true };
            }
        };
        let used = rest.len() - it.trailing().len();
        let data_start = pos + used - chunk.data.len();
        rx.pos = (pos + used) as u16;
        rx.left -= 1;
        let (flags, seq, len) = (chunk.flags, chunk.seq, chunk.data.len());
        match vital.on_chunk(now, &chunk) {
            super::vital::Receive::Deliver => {
                return Next::Packet {
                    flags,
                    seq,
                    start: data_start,
                    len,
                }
            }
            _ => continue,
        }
    }
    Next::Done { malformed: false }
}

/// The chunk [`next_chunk`] decided on, borrowed from the receive buffer or the reorder buffer
pub(crate) fn chunk_of<'a>(rx: &'a Rx, vital: &'a dyn Channel, next: &Next) -> Option<Chunk<'a>> {
    match *next {
        Next::Packet {
            flags,
            seq,
            start,
            len,
        } => Some(Chunk {
            flags,
            seq,
            data: rx.buf.get(start..start + len)?,
        }),
        Next::Ready(seq) => Some(Chunk::vital(seq, vital.taken_data()?)),
        Next::Done { .. } => None,
    }
}

/// Write one chunk packet into `out`: `non_vital` first (if any), then every pending vital chunk
/// that fits; header with the channel's ack and resend request; the token; compressed when
/// `compress` and shorter. `out` must hold [`MAX_PACKET_LEN`] bytes (checked by the caller).
pub(crate) fn write_chunk_packet(
    vital: &mut dyn Channel,
    tx: &mut [u8; MAX_PAYLOAD],
    now: Instant,
    token: Option<Token>,
    compress: bool,
    non_vital: Option<&[u8]>,
    out: &mut [u8],
) -> Result<(usize, Filled), Error> {
    let mut w = ChunkWriter::new(tx, payload_limit(token.is_some()));
    if let Some(data) = non_vital {
        if w.push(&Chunk::non_vital(data)).is_err() {
            return Err(Error::TooLong {
                len: data.len(),
                max: MAX_CHUNK_SIZE,
            });
        }
    }
    let filled = vital.fill(now, &mut w);
    let header = Header {
        flags: Flags {
            resend: filled.resend_request,
            ..Flags::default()
        },
        ack: filled.ack,
        num_chunks: w.num_chunks(),
    };
    let n = w.len();
    let len =
        super::chunk::write_packet(header, &tx[..n], token, compress, out).map_err(
            |e| match e {
                super::chunk::PacketError::BufferTooSmall { required } => {
                    Error::BufferTooSmall { required }
                }
                _ => Error::TooLong {
                    len: n,
                    max: MAX_PACKET_LEN,
                },
            },
        )?;
    Ok((len, filled))
}

/// A vital channel's queue error as the machines report it
pub(crate) fn queue_error(e: QueueError) -> Error {
    match e {
        QueueError::TooLarge { size } => Error::TooLong {
            len: size,
            max: MAX_CHUNK_SIZE,
        },
        _ => Error::TooManyInFlight,
    }
}

/// `send_non_vital`'s checks before anything is written: `data` fits one chunk, `out` one packet
#[inline]
pub(crate) fn check_non_vital(data: &[u8], out: &[u8]) -> Result<(), Error> {
    if data.len() > MAX_CHUNK_SIZE {
        return Err(Error::TooLong {
            len: data.len(),
            max: MAX_CHUNK_SIZE,
        });
    }
    if out.len() < MAX_PACKET_LEN {
        return Err(Error::BufferTooSmall {
            required: MAX_PACKET_LEN,
        });
    }
    Ok(())
}

/// Why a datagram of a connection was dropped before its token and ack were checked: the stats
/// counter it goes to, or none
#[derive(Clone, Copy)]
pub(crate) enum Dropped {
    /// `dropped_malformed`
    Malformed,
    /// `dropped_wrong_token`
    WrongToken,
    /// Not counted
    Silent,
}

/// The application value of a datagram, or `None` when it was dropped, counted in `malformed` or
/// `wrong_token`
#[inline]
pub(crate) fn counted<A, C: super::Counter>(
    handled: Result<Option<A>, Dropped>,
    malformed: &mut C,
    wrong_token: &mut C,
) -> Option<A> {
    match handled {
        Ok(app) => app,
        Err(Dropped::Malformed) => {
            super::count(malformed);
            None
        }
        Err(Dropped::WrongToken) => {
            super::count(wrong_token);
            None
        }
        Err(Dropped::Silent) => None,
    }
}

/// The first byte of a datagram of a connection whose header parses, that is no longer than a
/// packet and, when it is a control packet, has its id byte
#[inline]
pub(crate) fn first_byte(data: &[u8]) -> Result<u8, Dropped> {
    match Header::parse(data) {
        Ok(h) if data.len() <= MAX_PACKET_LEN && !(h.flags.control && data.len() == HEADER_LEN) => {
            Ok(data[0])
        }
        _ => Err(Dropped::Malformed),
    }
}

/// `bytes` parsed in `mode` as a [`Pkt`]; a missing token is [`Dropped::WrongToken`], any other
/// decode error [`Dropped::Malformed`]
#[inline]
pub(crate) fn parse(bytes: &[u8], mode: TokenMode) -> Result<Pkt<'_>, Dropped> {
    match wire::parse(bytes, mode) {
        Ok(p) => Ok(match p.packet {
            Packet::Control(c) => Pkt::Control {
                c,
                warnings: p.warnings,
            },
            Packet::Chunks(c) => Pkt::Chunks(ChunksIn {
                header: c.header,
                token: c.token,
                payload: Payload::Slice(c.payload),
            }),
        }),
        Err(DecodeError::MissingToken) => Err(Dropped::WrongToken),
        Err(_) => Err(Dropped::Malformed),
    }
}

/// Decode the Huffman-compressed control packet `data` into `small`: the header with the
/// compression flag cleared, then the decoded payload (cut at [`SMALL_LEN`]); returns the decoded
/// payload's whole length
#[cfg(feature = "control-huffman")]
#[inline]
pub(crate) fn decompress_control(
    data: &[u8],
    small: &mut [u8; SMALL_LEN],
) -> Result<usize, Dropped> {
    let (head, payload) = data
        .split_first_chunk::<HEADER_LEN>()
        .ok_or(Dropped::Silent)?;
    small[..HEADER_LEN].copy_from_slice(head);
    small[0] &= !FLAG_COMPRESSION;
    huffman::decompress_prefix(payload, &mut small[HEADER_LEN..]).map_err(|_| Dropped::Malformed)
}

/// Without the feature `control-huffman` a compressed control packet is dropped
/// ([`Dropped::Malformed`]), `small` untouched
#[cfg(not(feature = "control-huffman"))]
#[inline]
pub(crate) fn decompress_control(
    _data: &[u8],
    _small: &mut [u8; SMALL_LEN],
) -> Result<usize, Dropped> {
    Err(Dropped::Malformed)
}

/// The decompressed length and last four bytes of a compressed chunk packet's payload, decoded
/// in passing (no receive buffer)
#[cfg(feature = "control-huffman")]
#[inline]
fn decompressed_tail(payload: &[u8]) -> Result<(usize, [u8; 4]), Dropped> {
    huffman::decompressed_tail(payload).map_err(|_| Dropped::Malformed)
}

/// Without the feature `control-huffman` a compressed chunk packet without a receive buffer
/// ([`ControlOnly`]) is dropped ([`Dropped::Malformed`])
#[cfg(not(feature = "control-huffman"))]
#[inline]
fn decompressed_tail(_payload: &[u8]) -> Result<(usize, [u8; 4]), Dropped> {
    Err(Dropped::Malformed)
}

/// A Huffman-compressed chunk packet decoded as far as its token candidate (the last four
/// decompressed bytes): into the receive buffer, or without one in passing
pub(crate) struct Compressed<'p> {
    header: Header,
    /// Decompressed length: header and payload in the receive buffer, else the payload's
    plain_len: usize,
    /// The token candidate, `None` when too short for one
    pub(crate) tail: Option<Token>,
    /// Without a receive buffer: the compressed payload, handed out as it is
    passing: Option<&'p [u8]>,
}

/// Decompress the chunk packet `data` into `rx`, or without a receive buffer decode it in passing
/// for its token only
#[inline]
pub(crate) fn decompress_chunks<'p>(
    rx: Option<&mut Rx>,
    data: &'p [u8],
) -> Result<Compressed<'p>, Dropped> {
    let header = Header::parse(data).map_err(|_| Dropped::Silent)?;
    if let Some(rx) = rx {
        let plain_len = rx.decompress(data).ok_or(Dropped::Malformed)?.len();
        let tail = tail_token(rx.bytes(plain_len));
        return Ok(Compressed {
            header,
            plain_len,
            tail,
            passing: None,
        });
    }
    let payload = data.get(HEADER_LEN..).unwrap_or(&[]);
    let (plain_len, last4) = decompressed_tail(payload)?;
    Ok(Compressed {
        header,
        plain_len,
        tail: (plain_len >= TOKEN_LEN).then_some(Token(last4)),
        passing: Some(payload),
    })
}

impl<'p> Compressed<'p> {
    /// The packet read in `mode`: in [`TokenMode::Trailing`] its token is the candidate, which
    /// must be there
    #[inline]
    pub(crate) fn packet(self, mode: TokenMode) -> Result<Pkt<'p>, Dropped> {
        let trailing = mode == TokenMode::Trailing;
        let Some(payload) = self.passing else {
            let (token, len) = if trailing {
                let len = self.plain_len.checked_sub(HEADER_LEN + TOKEN_LEN);
                (self.tail, len.ok_or(Dropped::WrongToken)?)
            } else {
                (None, self.plain_len - HEADER_LEN)
            };
            // the header keeps its compression flag: on this path only its chunk count, ack and
            // resend flag are read
            let payload = Payload::Rx(len);
            return Ok(Pkt::Chunks(ChunksIn {
                header: self.header,
                token,
                payload,
            }));
        };
        let token = if trailing {
            Some(self.tail.ok_or(Dropped::WrongToken)?)
        } else {
            None
        };
        Ok(Pkt::Chunks(ChunksIn {
            header: self.header,
            token,
            payload: Payload::Slice(payload),
        }))
    }
}

/// What [`Pkt::marks`] reads off a packet for the token and ack checks
pub(crate) struct Marks {
    pub(crate) token: Option<Token>,
    pub(crate) ack: u16,
    /// The packet asks for a resend
    pub(crate) resend: bool,
    pub(crate) warnings: Warnings,
}

impl Pkt<'_> {
    /// The token, ack, resend flag and warnings of the packet
    #[inline]
    pub(crate) fn marks(&self) -> Marks {
        match self {
            Pkt::Control { c, warnings } => Marks {
                token: c.token,
                ack: c.ack,
                resend: warnings.contains(Warnings::CONTROL_RESEND),
                warnings: *warnings,
            },
            Pkt::Chunks(c) => Marks {
                token: c.token,
                ack: c.header.ack,
                resend: c.header.flags.resend,
                warnings: Warnings::NONE,
            },
        }
    }
}

/// The ack check of an accepted packet: with the chunk layer its `vital` channel takes the ack
/// (and a resend request), without it the ack must lie in `peer_ack..=sequence`
#[inline]
pub(crate) fn ack_ok(
    vital: Option<&mut dyn Channel>,
    now: Instant,
    marks: &Marks,
    peer_ack: u16,
    sequence: u16,
) -> bool {
    match vital {
        Some(v) => v
            .on_packet(now, &Header::ack_only(marks.ack, marks.resend))
            .is_ok(),
        None => ack_in_range(marks.ack, peer_ack, sequence),
    }
}

/// What an accepted chunk packet gives the application, as its `App` value: with a receive
/// buffer `rx` the packet is loaded there (`ready`: read it with `poll_chunk`); without one it
/// is handed out (`pass`), borrowed from the datagram (a compressed one without its token,
/// which is inside the compressed data)
#[inline]
pub(crate) fn deliver<'p, A>(
    rx: Option<&mut Rx>,
    chunks: ChunksIn<'p>,
    pass: impl FnOnce(ChunkPacket<'p>) -> A,
    ready: A,
) -> Option<A> {
    let ChunksIn {
        header,
        token,
        payload,
    } = chunks;
    match (rx, payload) {
        (Some(rx), Payload::Slice(bytes)) => {
            rx.load(header.num_chunks, HEADER_LEN, bytes.len(), Some(bytes));
            Some(ready)
        }
        (Some(rx), Payload::Rx(len)) => {
            rx.load(header.num_chunks, HEADER_LEN, len, None);
            Some(ready)
        }
        (None, Payload::Slice(payload)) => Some(pass(ChunkPacket {
            header,
            payload,
            token: if header.flags.compression {
                None
            } else {
                token
            },
        })),
        (None, Payload::Rx(_)) => None,
    }
}

/// A packet after decompression and parsing, before its token, ack and state checks
pub(crate) enum Pkt<'p> {
    Control {
        c: ControlPacket<'p>,
        warnings: Warnings,
    },
    Chunks(ChunksIn<'p>),
}

/// A received chunk packet: its header, its token (checked for presence when the connection has
/// one), where its payload is
#[derive(Clone, Copy)]
pub(crate) struct ChunksIn<'p> {
    pub(crate) header: Header,
    pub(crate) token: Option<Token>,
    pub(crate) payload: Payload<'p>,
}

/// Where a chunk packet's payload is
#[derive(Clone, Copy)]
pub(crate) enum Payload<'p> {
    /// In the datagram (uncompressed; or compressed, for [`ControlOnly`])
    Slice(&'p [u8]),
    /// Decompressed in the chunk layer's receive buffer, after the header: `len` bytes
    Rx(usize),
}

/// What an accepted packet gives the application
pub(crate) enum Outcome<'p> {
    Nothing,
    Chunks(ChunksIn<'p>),
    Close(Reason<'p>),
}

/// Size of the stack buffer a compressed control packet is decoded into (header, id, a CLOSE
/// reason of 127 bytes and its NUL, a token, and slack)
pub(crate) const SMALL_LEN: usize = 192;

/// The stack buffer a compressed control packet is decoded into, word-aligned: zeroing it is
/// then the word-wise `memclr` every firmware links anyway (a byte array of this size made
/// 32-bit Arm builds link the unaligned one too, 208 B)
#[repr(align(8))]
pub(crate) struct Small(pub(crate) [u8; SMALL_LEN]);

impl Small {
    /// All zeros
    #[inline]
    pub(crate) const fn new() -> Self {
        Small([0; SMALL_LEN])
    }
}

/// The last four bytes of a packet as a token candidate (`None` when it has no room for one)
pub(crate) fn tail_token(bytes: &[u8]) -> Option<Token> {
    if bytes.len() < HEADER_LEN + TOKEN_LEN {
        return None;
    }
    bytes.last_chunk::<TOKEN_LEN>().map(|t| Token(*t))
}

/// A chunk packet written and not yet handed out: `poll_transmit` writes a packet here first (the
/// vital channel's state changes when it is written), so that a caller buffer that turns out too
/// small gets the exact size and the same packet on the next call
pub(crate) struct Out {
    buf: [u8; MAX_PACKET_LEN],
    len: u16,
}

impl Out {
    const fn new() -> Self {
        Out {
            buf: [0; MAX_PACKET_LEN],
            len: 0,
        }
    }

    /// True when no packet waits
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The buffer to write a packet into
    pub(crate) fn buf(&mut self) -> &mut [u8; MAX_PACKET_LEN] {
        &mut self.buf
    }

    /// A packet of `len` bytes was written into [`Out::buf`]
    pub(crate) fn set(&mut self, len: usize) {
        self.len = len.min(MAX_PACKET_LEN) as u16;
    }

    /// Copy the waiting packet into `to` and forget it; its length
    pub(crate) fn take_into(&mut self, to: &mut [u8]) -> Result<usize, crate::io::BufferTooSmall> {
        let len = usize::from(self.len);
        let dst = to
            .get_mut(..len)
            .ok_or(crate::io::BufferTooSmall { required: len })?;
        dst.copy_from_slice(&self.buf[..len]);
        self.len = 0;
        Ok(len)
    }
}

/// The chunk-layer state of a client: the vital channel, the receive buffer, the construct buffer
/// for outgoing packets, the configuration
pub struct ClientChunks<const SB: usize, const SN: usize, const RB: usize, const RN: usize> {
    pub(crate) vital: Vital<SB, SN, RB, RN>,
    pub(crate) rx: Rx,
    pub(crate) tx: [u8; MAX_PAYLOAD],
    pub(crate) out: Out,
    pub(crate) config: ChunkConfig,
}

impl<const SB: usize, const SN: usize, const RB: usize, const RN: usize> core::fmt::Debug
    for ClientChunks<SB, SN, RB, RN>
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ClientChunks")
            .field("vital", &self.vital)
            .field("unread", &self.rx.left)
            .finish_non_exhaustive()
    }
}

/// The chunk-layer state a server shares between its peers: one receive buffer (one datagram is
/// handled at a time), one construct buffer, the configuration, and whose packet is in the
/// receive buffer
pub struct SharedChunks {
    pub(crate) rx: Rx,
    pub(crate) tx: [u8; MAX_PAYLOAD],
    pub(crate) out: Out,
    /// Slot and admission number of the peer the packet in `out` goes to
    pub(crate) out_to: Option<(usize, u32)>,
    pub(crate) config: ChunkConfig,
    /// Slot and admission number of the peer whose packet `rx` holds
    pub(crate) owner: Option<(usize, u32)>,
}

impl core::fmt::Debug for SharedChunks {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SharedChunks")
            .field("unread", &self.rx.left)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// The chunk-layer state of one server peer: its vital channel and when its timer entry fires
pub struct PeerChunks<const SB: usize, const SN: usize, const RB: usize, const RN: usize> {
    pub(crate) vital: Vital<SB, SN, RB, RN>,
    /// The deadline of the peer's live timer entry (an earlier vital deadline files a new one)
    pub(crate) timer_at: Instant,
}

/// The chunk layer's parts of a client, capacities erased
pub struct ConnParts<'a> {
    pub(crate) vital: &'a mut dyn Channel,
    pub(crate) rx: &'a mut Rx,
    pub(crate) tx: &'a mut [u8; MAX_PAYLOAD],
    pub(crate) out: &'a mut Out,
    pub(crate) config: &'a ChunkConfig,
}

/// The chunk layer's shared parts of a server
pub struct SharedParts<'a> {
    pub(crate) rx: &'a mut Rx,
    pub(crate) tx: &'a mut [u8; MAX_PAYLOAD],
    pub(crate) out: &'a mut Out,
    pub(crate) out_to: &'a mut Option<(usize, u32)>,
    pub(crate) config: &'a ChunkConfig,
    pub(crate) owner: &'a mut Option<(usize, u32)>,
}

pub(crate) mod imp {
    use super::*;

    /// What a [`Layer`] is made of (sealed: implemented for [`ControlOnly`] and [`Reliable`])
    pub trait Imp {
        /// The client's state
        type Conn: core::fmt::Debug;
        /// A server peer's state
        type Peer;
        /// A server's shared state
        type Shared;
        /// True for [`Reliable`]
        const CHUNKS: bool;

        fn new_conn(config: ChunkConfig) -> Self::Conn;
        fn new_peer(config: ChunkConfig) -> Self::Peer;
        fn new_shared(config: ChunkConfig) -> Self::Shared;
        fn conn(c: &mut Self::Conn) -> Option<ConnParts<'_>>;
        fn conn_channel(c: &Self::Conn) -> Option<&dyn Channel>;
        fn peer(p: &mut Self::Peer) -> Option<(&mut dyn Channel, &mut Instant)>;
        fn peer_channel(p: &Self::Peer) -> Option<&dyn Channel>;
        fn shared(s: &mut Self::Shared) -> Option<SharedParts<'_>>;
    }

    impl Imp for ControlOnly {
        type Conn = ();
        type Peer = ();
        type Shared = ();
        const CHUNKS: bool = false;

        #[inline]
        fn new_conn(_: ChunkConfig) {}
        #[inline]
        fn new_peer(_: ChunkConfig) {}
        #[inline]
        fn new_shared(_: ChunkConfig) {}
        #[inline]
        fn conn(_: &mut ()) -> Option<ConnParts<'_>> {
            None
        }
        #[inline]
        fn conn_channel(_: &()) -> Option<&dyn Channel> {
            None
        }
        #[inline]
        fn peer(_: &mut ()) -> Option<(&mut dyn Channel, &mut Instant)> {
            None
        }
        #[inline]
        fn peer_channel(_: &()) -> Option<&dyn Channel> {
            None
        }
        #[inline]
        fn shared(_: &mut ()) -> Option<SharedParts<'_>> {
            None
        }
    }

    impl<const SB: usize, const SN: usize, const RB: usize, const RN: usize> Imp
        for Reliable<SB, SN, RB, RN>
    {
        type Conn = ClientChunks<SB, SN, RB, RN>;
        type Peer = PeerChunks<SB, SN, RB, RN>;
        type Shared = SharedChunks;
        const CHUNKS: bool = true;

        fn new_conn(config: ChunkConfig) -> Self::Conn {
            ClientChunks {
                vital: Vital::new(config.vital),
                rx: Rx::new(),
                tx: [0; MAX_PAYLOAD],
                out: Out::new(),
                config,
            }
        }
        fn new_peer(config: ChunkConfig) -> Self::Peer {
            PeerChunks {
                vital: Vital::new(config.vital),
                timer_at: Instant::MAX,
            }
        }
        fn new_shared(config: ChunkConfig) -> Self::Shared {
            SharedChunks {
                rx: Rx::new(),
                tx: [0; MAX_PAYLOAD],
                out: Out::new(),
                out_to: None,
                config,
                owner: None,
            }
        }
        fn conn(c: &mut Self::Conn) -> Option<ConnParts<'_>> {
            Some(ConnParts {
                vital: &mut c.vital,
                rx: &mut c.rx,
                tx: &mut c.tx,
                out: &mut c.out,
                config: &c.config,
            })
        }
        fn conn_channel(c: &Self::Conn) -> Option<&dyn Channel> {
            Some(&c.vital)
        }
        fn peer(p: &mut Self::Peer) -> Option<(&mut dyn Channel, &mut Instant)> {
            Some((&mut p.vital, &mut p.timer_at))
        }
        fn peer_channel(p: &Self::Peer) -> Option<&dyn Channel> {
            Some(&p.vital)
        }
        fn shared(s: &mut Self::Shared) -> Option<SharedParts<'_>> {
            Some(SharedParts {
                rx: &mut s.rx,
                tx: &mut s.tx,
                out: &mut s.out,
                out_to: &mut s.out_to,
                config: &s.config,
                owner: &mut s.owner,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_packet_for_a_too_small_buffer_reports_the_size_it_needs() {
        // the machines always hand over a whole packet's room; the writer's contract still holds
        let mut vital: Vital<1024, 8, 0, 0> = Vital::new(VitalConfig::reference());
        let mut tx = [0u8; MAX_PAYLOAD];
        let mut out = [0u8; 8];
        let data = b"0123456789";
        let r = write_chunk_packet(
            &mut vital,
            &mut tx,
            Instant::ZERO,
            None,
            false,
            Some(data),
            &mut out,
        );
        // header, chunk header, data
        let required = HEADER_LEN + 2 + data.len();
        assert_eq!(r.map(|(n, _)| n), Err(Error::BufferTooSmall { required }));
        let mut out = [0u8; MAX_PACKET_LEN];
        let r = write_chunk_packet(
            &mut vital,
            &mut tx,
            Instant::ZERO,
            None,
            false,
            Some(data),
            &mut out,
        );
        assert_eq!(r.map(|(n, _)| n), Ok(required));
    }
}
