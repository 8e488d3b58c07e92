//! Byte layout of Teeworlds 0.6 / DDNet connection-oriented packets: header, control messages, chunk pass-through
//!
//! # Header (3 bytes)
//!
//! ```text
//! byte 0:  Z R N C T U a9 a8     Z 0x80 compression, R 0x40 resend, N 0x20 connless, C 0x10 control,
//!                                T 0x08 / U 0x04 must be zero in 0.6 traffic, a9..a8 = ack bits 9..8
//! byte 1:  ack bits 7..0         ack = (byte0 & 0x03) << 8 | byte1, a 10-bit number (mod 1024)
//! byte 2:  num_chunks            always 0 in control packets
//! ```
//!
//! [`Header::parse`] reports a set connless bit as [`DecodeError::Connless`] (those packets have a
//! different header, out of scope here) and either of the two middle bits as
//! [`DecodeError::ReservedBits`]: 0x08 is the Teeworlds 0.6.5 header token, 0x04 marks a 0.7 packet
//! for DDNet. Neither belongs to a plain 0.6 packet.
//!
//! # Control messages
//!
//! A control packet is the header, one id byte ([`ControlId`]), optional extra data and — on a
//! connection that uses the DDNet security token — the 4 token bytes at the very end:
//!
//! | id | vanilla | DDNet token form |
//! | --- | --- | --- |
//! | 0 KEEP_ALIVE | `00` | `00 token` |
//! | 1 CONNECT | `01` | `01 "TKEN" FF FF FF FF` |
//! | 2 CONNECT_ACCEPT | `02` | `02 "TKEN" token` |
//! | 3 ACCEPT | `03` | `03 token` |
//! | 4 CLOSE | `04 [reason 00]` | `04 [reason 00] token` |
//!
//! CONNECT and CONNECT_ACCEPT carry the token behind the `TKEN` magic (the client does not know its
//! token yet and sends [`Token::UNKNOWN`]); every other packet of a token connection, chunk packets
//! included, simply ends with the token. For chunk packets the token sits inside the data before
//! Huffman compression, so a compressed chunk packet is passed through with its token unverified.
//!
//! # Token modes
//!
//! The bytes alone cannot always tell whether a packet ends with a token (`04 61 62 63 00` is a
//! CLOSE "abc" or a CLOSE without reason followed by a token), so [`parse`] takes the receiver's
//! knowledge as a [`TokenMode`]:
//!
//! * [`TokenMode::Vanilla`]: the connection has no token; nothing is stripped. Extra data where the
//!   message has none is reported as [`Warnings::EXTRA_BYTES`].
//! * [`TokenMode::Trailing`]: an established token connection. Every packet must end with 4 token
//!   bytes (else [`DecodeError::MissingToken`]); they are stripped and returned for the caller to
//!   compare. CONNECT / CONNECT_ACCEPT may keep their `TKEN` magic in front of that token.
//! * [`TokenMode::Detect`]: no connection state yet (a connecting client, a server before admission).
//!   The structural rules DDNet uses apply: a CONNECT / CONNECT_ACCEPT carries a token when its
//!   payload is at least 9 bytes and starts `id "TKEN"`; an ACCEPT / KEEP_ALIVE carries one when its
//!   payload is at least 5 bytes; a CLOSE reason is read up to its NUL and the token is not returned.
//!
//! # Tolerance
//!
//! Only damage that makes a packet meaningless is a [`DecodeError`]. Oddities that reference peers
//! tolerate are reported as [`Warnings`] next to the packet: a CLOSE reason without NUL, with invalid
//! UTF-8, too long, or followed by extra bytes; extra data after a message that has none; the resend
//! flag on a control packet. A control packet with `num_chunks != 0` is also only a warning
//! ([`Warnings::CONTROL_NUM_CHUNKS`]): DDNet master drops such packets while older peers ignore the
//! byte, so the decision is left to the state machine.
//!
//! # Common misreadings of the format
//!
//! * The ack is not `(byte0 & 0x0F) << 8 | byte1`; only the low two bits of byte 0 belong
//!   to the ack and the next two must be zero (`18 05` is ack 5 with an illegal flag, not ack 2053).
//!   "6-bit flags, 2-bit ack" and `flags = byte0 >> 4` describe the same wire bits.
//! * Byte 2 is not "unused": it is `num_chunks`, zero for control packets.
//! * ACCEPT (3) is not unused: clients send it once, and DDNet servers need it (with the token) to
//!   create the connection.
//! * CONNECT / CONNECT_ACCEPT have extra data in the DDNet form (`TKEN` + token).
//! * The ack is a 10-bit number 0..=1023 that wraps to 0 ([`ACK_MODULO`]), not "max 1024".
//! * The CLOSE reason is NUL-terminated by senders and readers keep at most
//!   [`MAX_REASON_LEN`] bytes.

use core::fmt;

use crate::io::{BufferTooSmall, PeerText};
use crate::wire::Writer;

/// Size of the 0.6 packet header
pub const HEADER_LEN: usize = 3;
/// Largest datagram (header included) a peer sends or accepts
pub const MAX_PACKET_LEN: usize = 1400;
/// Most CLOSE reason bytes kept on parse and written on emit (NUL not counted)
pub const MAX_REASON_LEN: usize = 127;
/// The `TKEN` magic in front of the token in DDNet CONNECT / CONNECT_ACCEPT
pub const TOKEN_MAGIC: [u8; 4] = *b"TKEN";
/// Size of a security token
pub const TOKEN_LEN: usize = 4;
/// Acks and sequence numbers count modulo this
pub const ACK_MODULO: u16 = 1024;
/// Largest ack value (10 bits)
pub const ACK_MAX: u16 = ACK_MODULO - 1;

/// Byte 0 bit: the payload is Huffman compressed
pub const FLAG_COMPRESSION: u8 = 0x80;
/// Byte 0 bit: the sender asks for a resend of unacked vital chunks
pub const FLAG_RESEND: u8 = 0x40;
/// Byte 0 bit: connectionless packet (different header, not handled here)
pub const FLAG_CONNLESS: u8 = 0x20;
/// Byte 0 bit: control packet
pub const FLAG_CONTROL: u8 = 0x10;
/// Byte 0 bits that must be zero in 0.6 traffic (0x08: 0.6.5 header token, 0x04: 0.7 marker)
pub const RESERVED_MASK: u8 = 0x0C;
/// Byte 0 bits holding ack bits 9..8
pub const ACK_HIGH_MASK: u8 = 0x03;

/// Whether a received packet's `ack` is acceptable on a connection: `peer_ack <= ack <= sequence`,
/// counted modulo [`ACK_MODULO`]
///
/// `peer_ack` is the last ack the peer sent (accepted), `sequence` the receiver's own last vital
/// sequence number: a peer cannot acknowledge a chunk that was never sent, nor go back behind an
/// ack it already gave. When `sequence < peer_ack` the range wraps through 1023 → 0. With both
/// at 0 only ack 0 passes. The same check as DDNet's `CNetConnection::Feed`
/// ([network_conn.cpp](https://github.com/ddnet/ddnet/blob/master/src/engine/shared/network_conn.cpp)),
/// which drops every packet, control packets included, that fails it.
#[must_use]
#[inline]
pub const fn ack_in_range(ack: u16, peer_ack: u16, sequence: u16) -> bool {
    if sequence >= peer_ack {
        peer_ack <= ack && ack <= sequence
    } else {
        ack >= peer_ack || ack <= sequence
    }
}

/// Byte 0 bits that make [`Header::parse`] fail: connless or reserved
const HEADER_ERROR_MASK: u8 = FLAG_CONNLESS | RESERVED_MASK;

/// The error for a byte 0 that has a [`HEADER_ERROR_MASK`] bit set (connless takes precedence)
#[cold]
#[inline(never)]
const fn header_error(b0: u8) -> DecodeError {
    if b0 & FLAG_CONNLESS != 0 {
        DecodeError::Connless
    } else {
        DecodeError::ReservedBits(b0 & RESERVED_MASK)
    }
}

/// A DDNet security token: 4 opaque bytes, echoed unchanged (never reinterpreted as an integer)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
// align(4): `Option<Token>` is then 8 bytes with the token in its own aligned word, which the
// compiler keeps in a register; with the 5-byte unaligned layout it was spilled and read back with
// mismatched widths (a store-forwarding stall on every parse result that carries a token).
#[repr(align(4))]
pub struct Token(pub [u8; 4]);

impl Token {
    /// `FF FF FF FF`: the placeholder a client puts in its CONNECT
    pub const UNKNOWN: Token = Token([0xFF; 4]);
    /// `00 00 00 00`: "no token"; never a real token
    pub const UNSUPPORTED: Token = Token([0x00; 4]);

    /// True for the two values that are never minted ([`Token::UNKNOWN`], [`Token::UNSUPPORTED`])
    #[must_use]
    pub const fn is_sentinel(&self) -> bool {
        let [a, b, c, d] = self.0;
        (a == 0 && b == 0 && c == 0 && d == 0) || (a == 0xFF && b == 0xFF && c == 0xFF && d == 0xFF)
    }
}

/// The three header flags a 0.6 packet may carry
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Flags {
    /// Payload is Huffman compressed (0x80)
    pub compression: bool,
    /// Resend request (0x40)
    pub resend: bool,
    /// Control packet (0x10)
    pub control: bool,
}

impl Flags {
    /// The flag bits of byte 0
    #[must_use]
    #[inline]
    pub const fn bits(self) -> u8 {
        (if self.compression {
            FLAG_COMPRESSION
        } else {
            0
        }) | (if self.resend { FLAG_RESEND } else { 0 })
            | (if self.control { FLAG_CONTROL } else { 0 })
    }
}

/// The 3-byte header of a connection-oriented packet
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Header {
    /// Compression / resend / control flags
    pub flags: Flags,
    /// The sender's ack, 0..=1023 (emit keeps only the low 10 bits)
    pub ack: u16,
    /// Number of chunks in a chunk packet; 0 for control packets
    pub num_chunks: u8,
}

impl Header {
    /// Size of the header on the wire
    pub const LEN: usize = HEADER_LEN;

    /// Read the header at the start of `buf` (the rest of `buf` is not looked at)
    ///
    /// # Errors
    /// [`DecodeError::TooShort`] for fewer than 3 bytes, [`DecodeError::Connless`] when bit 0x20 is
    /// set, [`DecodeError::ReservedBits`] when bit 0x08 or 0x04 is set.
    #[inline]
    pub fn parse(buf: &[u8]) -> Result<Header, DecodeError> {
        match buf.first_chunk::<HEADER_LEN>() {
            Some(&[b0, b1, b2]) if b0 & HEADER_ERROR_MASK == 0 => Ok(Header::decode(b0, b1, b2)),
            Some(&[b0, ..]) => Err(header_error(b0)),
            None => Err(DecodeError::TooShort { len: buf.len() }),
        }
    }

    /// A header with only `ack` and the resend flag: what the ack check of the chunk layer
    /// ([`Vital::on_packet`](super::vital::Vital::on_packet)) looks at in a received packet
    #[inline]
    pub(crate) const fn ack_only(ack: u16, resend: bool) -> Header {
        Header {
            flags: Flags {
                compression: false,
                resend,
                control: false,
            },
            ack,
            num_chunks: 0,
        }
    }

    /// The header of three bytes whose byte 0 passed the [`HEADER_ERROR_MASK`] check
    #[inline]
    const fn decode(b0: u8, b1: u8, b2: u8) -> Header {
        Header {
            flags: Flags {
                compression: b0 & FLAG_COMPRESSION != 0,
                resend: b0 & FLAG_RESEND != 0,
                control: b0 & FLAG_CONTROL != 0,
            },
            ack: ack(b0, b1),
            num_chunks: b2,
        }
    }

    /// The three header bytes (ack reduced modulo 1024)
    #[must_use]
    #[inline]
    pub const fn to_bytes(&self) -> [u8; 3] {
        let ack = self.ack % ACK_MODULO;
        [
            self.flags.bits() | (ack >> 8) as u8,
            (ack & 0xFF) as u8,
            self.num_chunks,
        ]
    }

    /// Write the header; returns 3
    ///
    /// # Errors
    /// [`BufferTooSmall`] (required 3) when `buf` is shorter; nothing is written.
    #[inline]
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        put(buf, self.to_bytes())
    }
}

/// The one-byte id of a control message
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ControlId {
    /// 0: keep-alive, sent by either side when idle
    KeepAlive = 0,
    /// 1: connect request from the client
    Connect = 1,
    /// 2: the server's answer to CONNECT
    ConnectAccept = 2,
    /// 3: the client's answer to CONNECT_ACCEPT (admits it on a DDNet server)
    Accept = 3,
    /// 4: close, with an optional reason
    Close = 4,
}

impl TryFrom<u8> for ControlId {
    type Error = DecodeError;

    fn try_from(id: u8) -> Result<Self, DecodeError> {
        match id {
            0 => Ok(ControlId::KeepAlive),
            1 => Ok(ControlId::Connect),
            2 => Ok(ControlId::ConnectAccept),
            3 => Ok(ControlId::Accept),
            4 => Ok(ControlId::Close),
            other => Err(DecodeError::UnknownControl(other)),
        }
    }
}

/// How [`parse`] finds the token of a packet (see the module docs)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TokenMode {
    /// No token anywhere: a vanilla connection or vanilla peer
    Vanilla,
    /// Established token connection: every packet ends with 4 token bytes, stripped and returned
    Trailing,
    /// No connection state: DDNet's structural rules decide whether a control packet has a token
    Detect,
}

/// A CLOSE reason: the bytes before the first NUL, at most [`MAX_REASON_LEN`] of them
///
/// Never contains a NUL byte. Received reasons may be invalid UTF-8 ([`Reason::as_str`] is then
/// `None`; [`Reason::text`] prints a safe display form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Reason<'a> {
    bytes: &'a [u8],
}

impl<'a> Reason<'a> {
    /// No reason (a CLOSE with nothing after the id)
    pub const EMPTY: Reason<'static> = Reason { bytes: &[] };

    /// A reason to send: cut at the first NUL, then truncated to 127 bytes on a char boundary
    #[allow(clippy::should_implement_trait)] // borrowing constructor, not `FromStr`
    #[must_use]
    pub fn from_str(s: &'a str) -> Self {
        let s = match s.bytes().position(|b| b == 0) {
            Some(nul) => s.get(..nul).unwrap_or(""),
            None => s,
        };
        let mut end = s.len().min(MAX_REASON_LEN);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        Reason {
            bytes: s.as_bytes().get(..end).unwrap_or(&[]),
        }
    }

    /// A reason from raw bytes: cut at the first NUL, then truncated to 127 bytes (not UTF-8 aware)
    #[must_use]
    pub fn from_bytes(b: &'a [u8]) -> Self {
        let b = match b.iter().position(|&x| x == 0) {
            Some(nul) => b.get(..nul).unwrap_or(&[]),
            None => b,
        };
        Reason {
            bytes: b.get(..MAX_REASON_LEN).unwrap_or(b),
        }
    }

    /// The reason bytes (no NUL)
    #[must_use]
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The reason as text; `None` when it is not valid UTF-8
    #[must_use]
    pub fn as_str(&self) -> Option<&'a str> {
        core::str::from_utf8(self.bytes).ok()
    }

    /// True when there is no reason
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Length in bytes (NUL not counted)
    #[must_use]
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The reason as [`PeerText`]: the raw bytes, and a `Display` that is safe to print
    /// (control characters become spaces, invalid UTF-8 becomes U+FFFD)
    #[must_use]
    pub const fn text(&self) -> PeerText<'a> {
        PeerText::new(self.bytes)
    }

    /// Bytes this reason takes on the wire: the text plus its NUL, or nothing when empty
    #[must_use]
    pub fn wire_len(&self) -> usize {
        if self.bytes.is_empty() {
            0
        } else {
            self.bytes.len() + 1
        }
    }
}

impl Default for Reason<'_> {
    fn default() -> Self {
        Reason::EMPTY
    }
}

/// A control message with its data
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Control<'a> {
    /// KEEP_ALIVE (0)
    KeepAlive,
    /// CONNECT (1)
    Connect,
    /// CONNECT_ACCEPT (2)
    ConnectAccept,
    /// ACCEPT (3)
    Accept,
    /// CLOSE (4) with its reason (possibly empty)
    Close(Reason<'a>),
}

impl Control<'_> {
    /// The message id
    #[must_use]
    pub const fn id(&self) -> ControlId {
        match self {
            Control::KeepAlive => ControlId::KeepAlive,
            Control::Connect => ControlId::Connect,
            Control::ConnectAccept => ControlId::ConnectAccept,
            Control::Accept => ControlId::Accept,
            Control::Close(_) => ControlId::Close,
        }
    }
}

/// A parsed or to-be-sent control packet
///
/// `token`: for CONNECT / CONNECT_ACCEPT, `Some` is the DDNet form `TKEN | token` (a CONNECT uses
/// [`Token::UNKNOWN`]); for the other messages `Some` is the 4 trailing token bytes. The encoder
/// always writes byte 0 = `0x10 | ack >> 8`, byte 2 = 0: no compression, no resend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ControlPacket<'a> {
    /// The sender's ack, 0..=1023 (emit keeps only the low 10 bits)
    pub ack: u16,
    /// The message
    pub control: Control<'a>,
    /// The security token, if the packet carries one
    pub token: Option<Token>,
}

impl ControlPacket<'_> {
    /// Exact number of bytes [`ControlPacket::emit`] writes
    #[must_use]
    #[inline]
    pub fn buffer_len(&self) -> usize {
        let token = if self.token.is_some() { TOKEN_LEN } else { 0 };
        let extra = match &self.control {
            Control::Connect | Control::ConnectAccept if self.token.is_some() => TOKEN_MAGIC.len(),
            Control::Close(reason) => reason.wire_len(),
            _ => 0,
        };
        HEADER_LEN + 1 + extra + token
    }

    /// Write the packet; returns the number of bytes written
    ///
    /// # Errors
    /// [`BufferTooSmall`] with the exact size when `buf` is shorter than [`ControlPacket::buffer_len`];
    /// nothing is written.
    #[inline]
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        // byte 0 = 0x10 | ack >> 8, byte 1 = ack & 0xFF, byte 2 = 0: no compression, no resend
        let ack = self.ack % ACK_MODULO;
        let [h0, h1] = [FLAG_CONTROL | (ack >> 8) as u8, (ack & 0xFF) as u8];
        let id = self.control.id() as u8;
        match (&self.control, self.token) {
            (Control::Close(reason), token) => emit_close([h0, h1, 0, id], *reason, token, buf),
            (Control::Connect | Control::ConnectAccept, Some(Token([t0, t1, t2, t3]))) => {
                let [m0, m1, m2, m3] = TOKEN_MAGIC;
                put(buf, [h0, h1, 0, id, m0, m1, m2, m3, t0, t1, t2, t3])
            }
            (_, Some(Token([t0, t1, t2, t3]))) => put(buf, [h0, h1, 0, id, t0, t1, t2, t3]),
            (_, None) => put(buf, [h0, h1, 0, id]),
        }
    }
}

/// Write `bytes` at the start of `buf` in one copy; returns `N`
///
/// # Errors
/// [`BufferTooSmall`] (required `N`) when `buf` is shorter; nothing is written.
#[inline]
fn put<const N: usize>(buf: &mut [u8], bytes: [u8; N]) -> Result<usize, BufferTooSmall> {
    let dst = buf
        .first_chunk_mut::<N>()
        .ok_or(BufferTooSmall { required: N })?;
    *dst = bytes;
    Ok(N)
}

/// Write a CLOSE: `head` (header and id), the reason with its NUL when not empty, the token
///
/// # Errors
/// [`BufferTooSmall`] with the exact size when `buf` is too short; nothing is written.
#[inline(never)]
fn emit_close(
    head: [u8; 4],
    reason: Reason<'_>,
    token: Option<Token>,
    buf: &mut [u8],
) -> Result<usize, BufferTooSmall> {
    let token_len = if token.is_some() { TOKEN_LEN } else { 0 };
    let len = head.len() + reason.wire_len() + token_len;
    let mut w = Writer::new(buf);
    w.reserve(len)?;
    w.bytes(&head)?;
    if !reason.is_empty() {
        w.bytes(reason.as_bytes())?;
        w.u8(0)?;
    }
    if let Some(t) = token {
        w.bytes(&t.0)?;
    }
    debug_assert_eq!(w.written(), len);
    Ok(w.written())
}

/// A non-control packet, passed through with its payload borrowed
///
/// `token` is `Some` when the packet was parsed in [`TokenMode::Trailing`] and is not compressed
/// (a compressed packet has its token inside the compressed data; it is returned unverified with
/// `token: None`). On emit, `header.flags.control` is ignored (always written clear) and `token`,
/// when `Some`, is appended after `payload`. The caller keeps the packet within
/// [`MAX_PACKET_LEN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ChunkPacket<'a> {
    /// Header (flags, ack, number of chunks)
    pub header: Header,
    /// The chunk data (possibly compressed), token removed
    pub payload: &'a [u8],
    /// The trailing token, if it was stripped / is to be appended
    pub token: Option<Token>,
}

impl ChunkPacket<'_> {
    /// Exact number of bytes [`ChunkPacket::emit`] writes
    #[must_use]
    pub fn buffer_len(&self) -> usize {
        let token = if self.token.is_some() { TOKEN_LEN } else { 0 };
        HEADER_LEN
            .saturating_add(self.payload.len())
            .saturating_add(token)
    }

    /// Write the packet; returns the number of bytes written
    ///
    /// # Errors
    /// [`BufferTooSmall`] with the exact size when `buf` is shorter than [`ChunkPacket::buffer_len`];
    /// nothing is written.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let len = self.buffer_len();
        let mut w = Writer::new(buf);
        w.reserve(len)?;
        let mut header = self.header;
        header.flags.control = false;
        w.bytes(&header.to_bytes())?;
        w.bytes(self.payload)?;
        if let Some(t) = self.token {
            w.bytes(&t.0)?;
        }
        Ok(w.written())
    }
}

/// A parsed connection-oriented packet
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Packet<'a> {
    /// A control message
    Control(ControlPacket<'a>),
    /// Chunks (application data), passed through
    Chunks(ChunkPacket<'a>),
}

/// Tolerated oddities found by [`parse`] (a bit set)
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Warnings(u8);

impl Warnings {
    /// No warning
    pub const NONE: Warnings = Warnings(0);
    /// The CLOSE reason was not NUL-terminated
    pub const REASON_MISSING_NUL: Warnings = Warnings(1 << 0);
    /// The CLOSE reason is not valid UTF-8
    pub const REASON_INVALID_UTF8: Warnings = Warnings(1 << 1);
    /// The CLOSE reason was longer than [`MAX_REASON_LEN`] bytes and was cut
    pub const REASON_TRUNCATED: Warnings = Warnings(1 << 2);
    /// Bytes followed the reason's NUL (other than a token the mode strips)
    pub const REASON_TRAILING_BYTES: Warnings = Warnings(1 << 3);
    /// A control packet had `num_chunks != 0` (DDNet master drops these; older peers ignore it)
    pub const CONTROL_NUM_CHUNKS: Warnings = Warnings(1 << 4);
    /// Extra data after a control message that has none (ignored)
    pub const EXTRA_BYTES: Warnings = Warnings(1 << 5);
    /// A control packet had the resend flag set (references honour it as a resend request)
    pub const CONTROL_RESEND: Warnings = Warnings(1 << 6);

    const NAMES: [(Warnings, &'static str); 7] = [
        (Warnings::REASON_MISSING_NUL, "REASON_MISSING_NUL"),
        (Warnings::REASON_INVALID_UTF8, "REASON_INVALID_UTF8"),
        (Warnings::REASON_TRUNCATED, "REASON_TRUNCATED"),
        (Warnings::REASON_TRAILING_BYTES, "REASON_TRAILING_BYTES"),
        (Warnings::CONTROL_NUM_CHUNKS, "CONTROL_NUM_CHUNKS"),
        (Warnings::EXTRA_BYTES, "EXTRA_BYTES"),
        (Warnings::CONTROL_RESEND, "CONTROL_RESEND"),
    ];

    /// True when every bit of `w` is set
    #[must_use]
    pub const fn contains(self, w: Warnings) -> bool {
        self.0 & w.0 == w.0
    }

    /// True when no warning is set
    #[must_use]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The raw bits
    #[must_use]
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Both sets together
    #[must_use]
    pub const fn union(self, w: Warnings) -> Warnings {
        Warnings(self.0 | w.0)
    }

    /// Add the bits of `w`
    pub fn insert(&mut self, w: Warnings) {
        self.0 |= w.0;
    }
}

impl core::ops::BitOr for Warnings {
    type Output = Warnings;
    fn bitor(self, rhs: Warnings) -> Warnings {
        self.union(rhs)
    }
}

impl core::ops::BitOrAssign for Warnings {
    fn bitor_assign(&mut self, rhs: Warnings) {
        self.insert(rhs);
    }
}

impl fmt::Debug for Warnings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Warnings(")?;
        let mut first = true;
        for (w, name) in Warnings::NAMES {
            if self.contains(w) {
                if !first {
                    f.write_str(" | ")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        f.write_str(")")
    }
}

/// What [`parse`] returns: the packet and the tolerated oddities found in it
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Parsed<'a> {
    /// The packet
    pub packet: Packet<'a>,
    /// Oddities that did not prevent parsing
    pub warnings: Warnings,
}

/// Why a datagram is not a usable 0.6 connection-oriented packet
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DecodeError {
    /// Shorter than the 3-byte header
    TooShort {
        /// Datagram length
        len: usize,
    },
    /// Longer than [`MAX_PACKET_LEN`]
    TooLong {
        /// Datagram length
        len: usize,
    },
    /// Connectionless packet (bit 0x20), not handled by this codec
    Connless,
    /// Bit 0x08 (0.6.5 header token) or 0x04 (0.7 marker) set; the value holds those bits
    ReservedBits(u8),
    /// A compressed control packet (DDNet drops them; vanilla 0.6.4 may send a compressed CLOSE)
    CompressedControl,
    /// A control packet without the id byte
    MissingControlId,
    /// A control id other than 0..=4
    UnknownControl(u8),
    /// [`TokenMode::Trailing`] and fewer than 4 bytes left for the token
    MissingToken,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooShort { len } => {
                write!(f, "packet too short ({len} bytes, header is 3)")
            }
            DecodeError::TooLong { len } => {
                write!(f, "packet too long ({len} bytes, max {MAX_PACKET_LEN})")
            }
            DecodeError::Connless => f.write_str("connectionless packet"),
            DecodeError::ReservedBits(bits) => {
                write!(
                    f,
                    "reserved header bits set ({bits:#04x}): not a 0.6 packet"
                )
            }
            DecodeError::CompressedControl => f.write_str("compressed control packet"),
            DecodeError::MissingControlId => f.write_str("control packet without id"),
            DecodeError::UnknownControl(id) => write!(f, "unknown control id {id}"),
            DecodeError::MissingToken => f.write_str("packet too short for its security token"),
        }
    }
}

impl core::error::Error for DecodeError {}

/// Read a CLOSE reason out of `extra` (everything after the id, token already removed)
///
/// `token_may_follow`: in [`TokenMode::Detect`] exactly 4 bytes after the NUL are taken to be the
/// token and not reported.
#[inline(never)]
fn parse_reason<'a>(extra: &'a [u8], token_may_follow: bool, w: &mut Warnings) -> Reason<'a> {
    if extra.is_empty() {
        return Reason::EMPTY;
    }
    let text = match extra.iter().position(|&b| b == 0) {
        Some(nul) => {
            let (text, rest) = extra.split_at(nul);
            let after = rest.len().saturating_sub(1);
            if after != 0 && !(token_may_follow && after == TOKEN_LEN) {
                w.insert(Warnings::REASON_TRAILING_BYTES);
            }
            text
        }
        None => {
            w.insert(Warnings::REASON_MISSING_NUL);
            extra
        }
    };
    let valid = crate::wire::is_utf8(text);
    let mut kept = text;
    if text.len() > MAX_REASON_LEN {
        w.insert(Warnings::REASON_TRUNCATED);
        let mut end = MAX_REASON_LEN;
        if valid {
            // back off to a char boundary: continuation bytes are 0b10xx_xxxx
            while end > 0 && text.get(end).is_some_and(|&b| b & 0xC0 == 0x80) {
                end -= 1;
            }
        }
        kept = text.get(..end).unwrap_or(&[]);
    }
    if !valid {
        w.insert(Warnings::REASON_INVALID_UTF8);
    }
    Reason { bytes: kept }
}

/// Parse one datagram as a 0.6 connection-oriented packet
///
/// `mode` says how the token is found (see [`TokenMode`]). Chunk packets are returned with their
/// payload borrowed from `buf`.
///
/// # Errors
/// Any [`DecodeError`]; tolerated oddities are [`Warnings`] in the result instead.
// Always inlined (as are the helpers below): the loops and the error construction are out of line
// (`parse_reason`, `frame_error`), and inlined the caller keeps the 48-byte result in registers
// instead of reading back through memory what was just written field by field.
#[inline(always)]
pub fn parse(buf: &[u8], mode: TokenMode) -> Result<Parsed<'_>, DecodeError> {
    match buf.split_first_chunk::<HEADER_LEN>() {
        Some((&[b0, b1, b2], payload))
            if buf.len() <= MAX_PACKET_LEN && b0 & HEADER_ERROR_MASK == 0 =>
        {
            if b0 & FLAG_CONTROL == 0 {
                parse_chunks(b0, b1, b2, payload, mode)
            } else {
                parse_control(b0, b1, b2, payload, mode)
            }
        }
        _ => Err(frame_error(buf)),
    }
}

/// Why `buf` has no usable header: too short, too long, connless or reserved bits (in that order)
#[cold]
#[inline(never)]
fn frame_error(buf: &[u8]) -> DecodeError {
    let len = buf.len();
    match buf.first() {
        Some(&b0) if len >= HEADER_LEN => {
            if len > MAX_PACKET_LEN {
                DecodeError::TooLong { len }
            } else {
                header_error(b0)
            }
        }
        _ => DecodeError::TooShort { len },
    }
}

/// A chunk packet (byte 0 checked, control bit clear); `payload` is everything after the header
#[inline(always)]
fn parse_chunks(
    b0: u8,
    b1: u8,
    b2: u8,
    payload: &[u8],
    mode: TokenMode,
) -> Result<Parsed<'_>, DecodeError> {
    let (payload, token) = if matches!(mode, TokenMode::Trailing) && b0 & FLAG_COMPRESSION == 0 {
        let Some((payload, token)) = payload.split_last_chunk::<TOKEN_LEN>() else {
            return Err(DecodeError::MissingToken);
        };
        (payload, Some(Token(*token)))
    } else {
        (payload, None)
    };
    Ok(Parsed {
        packet: Packet::Chunks(ChunkPacket {
            header: Header::decode(b0, b1, b2),
            payload,
            token,
        }),
        warnings: Warnings::NONE,
    })
}

/// A control packet (byte 0 checked, control bit set); `payload` is everything after the header
///
/// The packets a live connection sees nearly all the time — a KEEP_ALIVE or ACCEPT that is just
/// the id and the token, a bare id on a vanilla connection — are decoded here in a few
/// instructions; everything else goes to [`parse_control_any`], which handles every control packet.
#[inline(always)]
fn parse_control(
    b0: u8,
    b1: u8,
    b2: u8,
    payload: &[u8],
    mode: TokenMode,
) -> Result<Parsed<'_>, DecodeError> {
    if b0 & FLAG_COMPRESSION == 0 {
        let fast = match (mode, payload) {
            (TokenMode::Trailing, &[KEEP_ALIVE, t0, t1, t2, t3]) => {
                Some((Control::KeepAlive, Some(Token([t0, t1, t2, t3]))))
            }
            (TokenMode::Trailing, &[ACCEPT, t0, t1, t2, t3]) => {
                Some((Control::Accept, Some(Token([t0, t1, t2, t3]))))
            }
            (TokenMode::Vanilla, &[id @ ..=ACCEPT]) => Some((simple(id), None)),
            // what `detect` makes of the token forms without extra bytes: KEEP_ALIVE / ACCEPT +
            // token, CONNECT / CONNECT_ACCEPT + "TKEN" + token (no warning from the payload)
            (TokenMode::Detect, &[id @ (KEEP_ALIVE | ACCEPT), t0, t1, t2, t3])
            | (
                TokenMode::Detect,
                &[id @ (CONNECT | CONNECT_ACCEPT), b'T', b'K', b'E', b'N', t0, t1, t2, t3],
            ) => Some((simple(id), Some(Token([t0, t1, t2, t3])))),
            _ => None,
        };
        if let Some((control, token)) = fast {
            return Ok(Parsed {
                packet: Packet::Control(ControlPacket {
                    ack: ack(b0, b1),
                    control,
                    token,
                }),
                warnings: control_warnings(b0, b2),
            });
        }
    }
    parse_control_any(b0, b1, b2, payload, mode)
}

/// The sender's ack from header bytes 0 and 1
/// The 10-bit ack of header bytes 0 and 1
#[inline]
pub(crate) const fn ack(b0: u8, b1: u8) -> u16 {
    (b0 as u16 & ACK_HIGH_MASK as u16) << 8 | b1 as u16
}

/// The header's warnings for a control packet: resend flag, `num_chunks != 0`
#[inline]
const fn control_warnings(b0: u8, b2: u8) -> Warnings {
    // CONTROL_RESEND is the resend flag's own bit
    let resend = b0 & FLAG_RESEND;
    let num_chunks = if b2 != 0 {
        Warnings::CONTROL_NUM_CHUNKS.0
    } else {
        0
    };
    Warnings(resend | num_chunks)
}

/// Any control packet (byte 0 checked, control bit set); `payload` is everything after the header
#[inline(always)]
fn parse_control_any(
    b0: u8,
    b1: u8,
    b2: u8,
    payload: &[u8],
    mode: TokenMode,
) -> Result<Parsed<'_>, DecodeError> {
    if b0 & FLAG_COMPRESSION != 0 {
        return Err(DecodeError::CompressedControl);
    }
    let Some((&id, extra)) = payload.split_first() else {
        return Err(DecodeError::MissingControlId);
    };
    if id > CLOSE {
        return Err(DecodeError::UnknownControl(id));
    }
    let mut warnings = control_warnings(b0, b2);
    let (control, token) = match (mode, id) {
        (TokenMode::Vanilla, CLOSE) => (
            Control::Close(parse_reason(extra, false, &mut warnings)),
            None,
        ),
        (TokenMode::Vanilla, _) => {
            warnings.insert(extra_bytes(extra));
            (simple(id), None)
        }
        (TokenMode::Trailing, _) => {
            let Some((extra, token)) = extra.split_last_chunk::<TOKEN_LEN>() else {
                return Err(DecodeError::MissingToken);
            };
            let control = match id {
                CLOSE => Control::Close(parse_reason(extra, false, &mut warnings)),
                CONNECT | CONNECT_ACCEPT if *extra == TOKEN_MAGIC => simple(id),
                _ => {
                    warnings.insert(extra_bytes(extra));
                    simple(id)
                }
            };
            (control, Some(Token(*token)))
        }
        (TokenMode::Detect, _) => detect(id, extra, &mut warnings),
    };
    Ok(Parsed {
        packet: Packet::Control(ControlPacket {
            ack: ack(b0, b1),
            control,
            token,
        }),
        warnings,
    })
}

/// A control message parsed in [`TokenMode::Detect`] (the structural rules of the module docs)
#[inline(always)]
fn detect<'a>(id: u8, extra: &'a [u8], warnings: &mut Warnings) -> (Control<'a>, Option<Token>) {
    match id {
        CLOSE => (Control::Close(parse_reason(extra, true, warnings)), None),
        CONNECT | CONNECT_ACCEPT => match extra.split_first_chunk::<8>() {
            Some((&[b'T', b'K', b'E', b'N', t0, t1, t2, t3], rest)) => {
                warnings.insert(extra_bytes(rest));
                (simple(id), Some(Token([t0, t1, t2, t3])))
            }
            _ => {
                warnings.insert(extra_bytes(extra));
                (simple(id), None)
            }
        },
        _ => match extra.split_first_chunk::<TOKEN_LEN>() {
            Some((token, rest)) => {
                warnings.insert(extra_bytes(rest));
                (simple(id), Some(Token(*token)))
            }
            None => {
                warnings.insert(extra_bytes(extra));
                (simple(id), None)
            }
        },
    }
}

/// [`Warnings::EXTRA_BYTES`] when `rest` (data a message does not have) is not empty
#[inline]
const fn extra_bytes(rest: &[u8]) -> Warnings {
    if rest.is_empty() {
        Warnings::NONE
    } else {
        Warnings::EXTRA_BYTES
    }
}

const KEEP_ALIVE: u8 = ControlId::KeepAlive as u8;
const CONNECT: u8 = ControlId::Connect as u8;
const CONNECT_ACCEPT: u8 = ControlId::ConnectAccept as u8;
const ACCEPT: u8 = ControlId::Accept as u8;
const CLOSE: u8 = ControlId::Close as u8;
// the resend flag doubles as the CONTROL_RESEND warning bit
const _: () = assert!(Warnings::CONTROL_RESEND.0 == FLAG_RESEND);
const _: () = assert!(
    TOKEN_MAGIC[0] == b'T'
        && TOKEN_MAGIC[1] == b'K'
        && TOKEN_MAGIC[2] == b'E'
        && TOKEN_MAGIC[3] == b'N'
);

/// The data-less message for a known `id` 0..=4 (CLOSE gets an empty reason)
#[inline]
const fn simple(id: u8) -> Control<'static> {
    match id {
        KEEP_ALIVE => Control::KeepAlive,
        CONNECT => Control::Connect,
        CONNECT_ACCEPT => Control::ConnectAccept,
        ACCEPT => Control::Accept,
        _ => Control::Close(Reason::EMPTY),
    }
}
