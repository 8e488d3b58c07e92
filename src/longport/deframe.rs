//! Getting packets off a transport: TCP handshake and stream deframing, WebSocket messages and
//! upgrade query
//!
//! # TCP
//!
//! Right after connecting, the client writes a 2-byte handshake; the server never answers it.
//! Nibbles are numbered from the least significant bit:
//!
//! | byte | bits 0-3 (low nibble) | bits 4-7 (high nibble) |
//! |------|-----------------------|------------------------|
//! | 0    | protocol version      | codec (`1` protobuf)   |
//! | 1    | platform (`9` OpenAPI)| reserve (0)            |
//!
//! OpenAPI clients send `11 09` ([`Handshake::OPENAPI`]). Only version 1 is accepted here; codec
//! and platform are recorded without checks. After the handshake the stream carries packets back
//! to back with no extra framing: each packet's header says how long it is. A client may write
//! the handshake and its first packet in one go, so both can arrive in one read.
//!
//! [`StreamDeframer`] parses that stream in place: it never copies or buffers bytes. The caller
//! keeps the received bytes; each [`StreamDeframer::decode`] call looks at the front of them and
//! says how many to drop ([`Frame::Handshake`], [`Frame::Packet`]) or how many must be buffered
//! before anything can be decoded ([`Frame::Need`]). The only state is whether the handshake has
//! been seen.
//!
//! # WebSocket
//!
//! There is no handshake on WebSocket. Version, codec and platform travel in the query of the
//! upgrade request (`version=1&codec=1&platform=9`; some clients send them in another order), see
//! [`WsParams`]. Every binary message holds exactly one packet, see [`decode_message`].

use core::fmt;

use crate::io::BufferTooSmall;
use crate::longport::wire::{DecodeError, Packet};
use crate::wire::Writer;

/// The only protocol version this crate speaks
pub const PROTOCOL_VERSION: u8 = 1;
/// Codec value for protobuf
pub const CODEC_PROTOBUF: u8 = 1;
/// Platform value for OpenAPI clients
pub const PLATFORM_OPENAPI: u8 = 9;

/// The 2-byte TCP handshake
///
/// Each field is a nibble (`0..=15`); [`Handshake::to_bytes`] keeps only the low four bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Handshake {
    /// Protocol version (low nibble of byte 0)
    pub version: u8,
    /// Body codec: 0 unknown, 1 protobuf, 2 JSON (high nibble of byte 0)
    pub codec: u8,
    /// Client platform, 9 for OpenAPI (low nibble of byte 1)
    pub platform: u8,
    /// Reserve bits (high nibble of byte 1), sent as 0
    pub reserve: u8,
}

impl Handshake {
    /// Length on the wire
    pub const LEN: usize = 2;

    /// Version 1, protobuf, OpenAPI platform: `11 09`
    pub const OPENAPI: Handshake = Handshake {
        version: PROTOCOL_VERSION,
        codec: CODEC_PROTOBUF,
        platform: PLATFORM_OPENAPI,
        reserve: 0,
    };

    /// Split two bytes into their nibbles without any check
    #[must_use]
    #[inline]
    pub const fn from_bytes(bytes: [u8; 2]) -> Handshake {
        Handshake {
            version: bytes[0] & 0x0F,
            codec: bytes[0] >> 4,
            platform: bytes[1] & 0x0F,
            reserve: bytes[1] >> 4,
        }
    }

    /// Parse and validate a handshake from the start of `buf`
    ///
    /// Only the first [`Handshake::LEN`] bytes are looked at.
    ///
    /// # Errors
    /// [`HandshakeError::Incomplete`] for fewer than 2 bytes,
    /// [`HandshakeError::UnsupportedVersion`] when the version is not 1.
    pub fn parse(buf: &[u8]) -> Result<Handshake, HandshakeError> {
        let bytes: [u8; 2] = match buf.get(..Self::LEN) {
            Some(&[a, b]) => [a, b],
            _ => return Err(HandshakeError::Incomplete { needed: Self::LEN }),
        };
        let h = Handshake::from_bytes(bytes);
        if h.version != PROTOCOL_VERSION {
            return Err(HandshakeError::UnsupportedVersion(h.version));
        }
        Ok(h)
    }

    /// The two bytes on the wire
    #[must_use]
    #[inline]
    pub const fn to_bytes(&self) -> [u8; 2] {
        [
            (self.version & 0x0F) | ((self.codec & 0x0F) << 4),
            (self.platform & 0x0F) | ((self.reserve & 0x0F) << 4),
        ]
    }

    /// Write the two bytes at the start of `buf`
    ///
    /// # Errors
    /// [`BufferTooSmall`] (2) when `buf` is shorter; nothing is written.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let mut w = Writer::new(buf);
        w.bytes(&self.to_bytes())?;
        Ok(w.written())
    }
}

/// Why a handshake was refused
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum HandshakeError {
    /// Fewer than 2 bytes
    Incomplete {
        /// Bytes needed in total (always 2)
        needed: usize,
    },
    /// The version nibble is not 1
    UnsupportedVersion(u8),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Incomplete { needed } => {
                write!(f, "incomplete handshake: {needed} bytes needed")
            }
            HandshakeError::UnsupportedVersion(v) => {
                write!(f, "unsupported protocol version {v}")
            }
        }
    }
}

impl core::error::Error for HandshakeError {}

/// Which transport a connection uses
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Transport {
    /// Byte stream: handshake then back-to-back packets; heartbeats as cmd-1 packets
    Tcp,
    /// One packet per binary message; parameters in the upgrade query; heartbeats as ping/pong
    WebSocket,
}

/// What the front of a stream buffer holds
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Frame<'a> {
    /// Not enough bytes yet: the next item needs this many buffered bytes in total; nothing was
    /// consumed
    Need(usize),
    /// The handshake; drop this many bytes (always 2)
    Handshake(Handshake, usize),
    /// A packet borrowing from the buffer; drop this many bytes once done with it
    Packet(Packet<'a>, usize),
}

/// Incremental TCP stream deframer
///
/// With `expect_handshake` (server side) the stream must start with the 2-byte handshake; without
/// it (client side) it holds packets only. It never copies bytes: the caller keeps its buffer and
/// drops the consumed prefix after each decoded item.
///
/// ```
/// use tether_net::longport::deframe::{Frame, StreamDeframer};
/// use tether_net::longport::wire::DEFAULT_MAX_BODY;
///
/// // handshake and an empty push arrived in one read, followed by half of the next packet
/// let received = [0x11, 0x09, 0x03, 0x65, 0x00, 0x00, 0x00, 0x03, 0x00];
/// let mut d = StreamDeframer::new(true, DEFAULT_MAX_BODY);
/// let mut buf = &received[..];
/// loop {
///     match d.decode(buf)? {
///         Frame::Handshake(h, n) => {
///             assert_eq!(h.platform, 9);
///             buf = &buf[n..];
///         }
///         Frame::Packet(p, n) => {
///             assert_eq!((p.header.cmd, p.body.len()), (101, 0));
///             buf = &buf[n..];
///         }
///         Frame::Need(total) => {
///             // keep `buf`, read until at least `total` bytes are buffered
///             assert_eq!((buf.len(), total), (2, 5));
///             break;
///         }
///     }
/// }
/// # Ok::<(), tether_net::longport::deframe::DeframeError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StreamDeframer {
    awaiting_handshake: bool,
    max_body: usize,
}

impl StreamDeframer {
    /// A deframer for a new connection; `max_body` limits announced body lengths
    #[must_use]
    pub const fn new(expect_handshake: bool, max_body: usize) -> Self {
        StreamDeframer {
            awaiting_handshake: expect_handshake,
            max_body,
        }
    }

    /// True while the handshake is still expected
    #[must_use]
    #[inline]
    pub const fn awaiting_handshake(&self) -> bool {
        self.awaiting_handshake
    }

    /// The body length limit
    #[must_use]
    #[inline]
    pub const fn max_body(&self) -> usize {
        self.max_body
    }

    /// Decode the item at the front of `buf`
    ///
    /// Call again with the remaining bytes after dropping the consumed count. `buf` may be split
    /// anywhere; an incomplete item gives [`Frame::Need`] and leaves the state unchanged.
    ///
    /// # Errors
    /// A bad handshake version, an unknown packet type or an oversized body announcement. The
    /// stream cannot be resynchronised after an error; close the connection.
    #[inline]
    pub fn decode<'a>(&mut self, buf: &'a [u8]) -> Result<Frame<'a>, DeframeError> {
        if self.awaiting_handshake {
            return match Handshake::parse(buf) {
                Ok(h) => {
                    self.awaiting_handshake = false;
                    Ok(Frame::Handshake(h, Handshake::LEN))
                }
                Err(HandshakeError::Incomplete { needed }) => Ok(Frame::Need(needed)),
                Err(e) => Err(e.into()),
            };
        }
        match Packet::parse(buf, self.max_body) {
            Ok((p, n)) => Ok(Frame::Packet(p, n)),
            Err(DecodeError::Incomplete { needed }) => Ok(Frame::Need(needed)),
            Err(e) => Err(e.into()),
        }
    }
}

/// Decode one WebSocket binary message as one packet
///
/// Returns the packet and the number of trailing bytes after it, which peers ignore (callers
/// may count them as a warning).
///
/// # Errors
/// [`DeframeError::Truncated`] when the message is shorter than its packet, plus the errors of
/// [`Packet::parse`].
#[inline]
pub fn decode_message(msg: &[u8], max_body: usize) -> Result<(Packet<'_>, usize), DeframeError> {
    match Packet::parse(msg, max_body) {
        Ok((p, n)) => Ok((p, msg.len().saturating_sub(n))),
        Err(DecodeError::Incomplete { needed }) => Err(DeframeError::Truncated {
            len: msg.len(),
            needed,
        }),
        Err(e) => Err(e.into()),
    }
}

/// Why a stream or message cannot be decoded
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DeframeError {
    /// The handshake's version nibble is not 1
    UnsupportedVersion(u8),
    /// The packet type nibble is 0 or 4..=15
    UnknownType(u8),
    /// The header announces a body longer than the limit
    BodyTooLarge {
        /// Announced body length
        len: usize,
        /// The limit in force
        max: usize,
    },
    /// A WebSocket message ends before its packet does
    Truncated {
        /// Message length
        len: usize,
        /// Bytes the packet (or its header) needs
        needed: usize,
    },
}

/// `Incomplete` maps to `Truncated` with `len: 0` (the length is unknown here); the deframer
/// and [`decode_message`] fill in real values themselves.
impl From<DecodeError> for DeframeError {
    #[inline]
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Incomplete { needed } => DeframeError::Truncated { len: 0, needed },
            DecodeError::UnknownType(t) => DeframeError::UnknownType(t),
            DecodeError::BodyTooLarge { len, max } => DeframeError::BodyTooLarge { len, max },
        }
    }
}

/// `Incomplete` maps to `Truncated` with `len: 0`, as for [`DecodeError`].
impl From<HandshakeError> for DeframeError {
    #[inline]
    fn from(e: HandshakeError) -> Self {
        match e {
            HandshakeError::Incomplete { needed } => DeframeError::Truncated { len: 0, needed },
            HandshakeError::UnsupportedVersion(v) => DeframeError::UnsupportedVersion(v),
        }
    }
}

impl fmt::Display for DeframeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeframeError::UnsupportedVersion(v) => write!(f, "unsupported protocol version {v}"),
            DeframeError::UnknownType(t) => write!(f, "unknown packet type {t}"),
            DeframeError::BodyTooLarge { len, max } => {
                write!(
                    f,
                    "announced body of {len} bytes exceeds the limit of {max}"
                )
            }
            DeframeError::Truncated { len, needed } => {
                write!(f, "message of {len} bytes truncated: packet needs {needed}")
            }
        }
    }
}

impl core::error::Error for DeframeError {}

/// Protocol parameters of a WebSocket connection, carried in the upgrade request's query
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct WsParams {
    /// Protocol version (must be 1)
    pub version: u8,
    /// Body codec (1 protobuf)
    pub codec: u8,
    /// Client platform (9 OpenAPI)
    pub platform: u8,
}

/// One of the three query parameters
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum QueryParam {
    /// `version`
    Version,
    /// `codec`
    Codec,
    /// `platform`
    Platform,
}

impl QueryParam {
    /// The key as it appears in the query
    #[must_use]
    pub const fn key(self) -> &'static str {
        match self {
            QueryParam::Version => "version",
            QueryParam::Codec => "codec",
            QueryParam::Platform => "platform",
        }
    }
}

impl fmt::Display for QueryParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// Why an upgrade query was refused
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum QueryError {
    /// A parameter is absent
    Missing(QueryParam),
    /// A parameter appears more than once
    Duplicate(QueryParam),
    /// A parameter's value is not a decimal number in `0..=15`
    Invalid(QueryParam),
    /// The version is a valid number but not 1
    UnsupportedVersion(u8),
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::Missing(p) => write!(f, "query parameter `{p}` missing"),
            QueryError::Duplicate(p) => write!(f, "query parameter `{p}` repeated"),
            QueryError::Invalid(p) => write!(f, "query parameter `{p}` is not a number in 0..=15"),
            QueryError::UnsupportedVersion(v) => write!(f, "unsupported protocol version {v}"),
        }
    }
}

impl core::error::Error for QueryError {}

/// A decimal nibble: 1 to 3 ASCII digits (leading zeros allowed), value `0..=15`
fn parse_nibble(s: &str) -> Option<u8> {
    if s.is_empty() || s.len() > 3 {
        return None;
    }
    let mut v: u8 = 0;
    for b in s.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(b - b'0')?;
    }
    (v <= 15).then_some(v)
}

impl WsParams {
    /// `version=1&codec=1&platform=9`
    pub const OPENAPI: WsParams = WsParams {
        version: PROTOCOL_VERSION,
        codec: CODEC_PROTOBUF,
        platform: PLATFORM_OPENAPI,
    };

    /// Read the three parameters from a query string, in any order
    ///
    /// A leading `?` is skipped; other keys and empty segments are ignored. Keys and values are
    /// compared literally (no percent-decoding).
    ///
    /// # Errors
    /// [`QueryError`]: a parameter missing, repeated, not a decimal number in `0..=15`, or a
    /// version other than 1. Duplicates and invalid values are reported first, in query order.
    pub fn parse_query(q: &str) -> Result<WsParams, QueryError> {
        let q = q.strip_prefix('?').unwrap_or(q);
        let mut found: [Option<u8>; 3] = [None; 3];
        for pair in q.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (param, slot) = match key {
                "version" => (QueryParam::Version, 0),
                "codec" => (QueryParam::Codec, 1),
                "platform" => (QueryParam::Platform, 2),
                _ => continue,
            };
            let Some(entry) = found.get_mut(slot) else {
                continue;
            };
            if entry.is_some() {
                return Err(QueryError::Duplicate(param));
            }
            *entry = Some(parse_nibble(value).ok_or(QueryError::Invalid(param))?);
        }
        let [version, codec, platform] = found;
        let version = version.ok_or(QueryError::Missing(QueryParam::Version))?;
        let codec = codec.ok_or(QueryError::Missing(QueryParam::Codec))?;
        let platform = platform.ok_or(QueryError::Missing(QueryParam::Platform))?;
        if version != PROTOCOL_VERSION {
            return Err(QueryError::UnsupportedVersion(version));
        }
        Ok(WsParams {
            version,
            codec,
            platform,
        })
    }

    /// Write `version=V&codec=C&platform=P` (no leading `?`); returns its length
    ///
    /// # Errors
    /// [`BufferTooSmall`] with the exact length when `buf` is too short; nothing is written.
    pub fn write_query(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let parts: [(&str, u8); 3] = [
            ("version=", self.version),
            ("&codec=", self.codec),
            ("&platform=", self.platform),
        ];
        let mut digits = [[0u8; 3]; 3];
        let mut lens = [0usize; 3];
        let mut total = 0usize;
        for (i, (key, v)) in parts.iter().enumerate() {
            let n = write_decimal(*v, &mut digits[i]);
            lens[i] = n;
            total += key.len() + n;
        }
        if buf.len() < total {
            return Err(BufferTooSmall { required: total });
        }
        let mut w = Writer::new(buf);
        for (i, (key, _)) in parts.iter().enumerate() {
            w.bytes(key.as_bytes())?;
            w.bytes(digits[i].get(..lens[i]).unwrap_or_default())?;
        }
        Ok(w.written())
    }

    /// Length of the query [`WsParams::write_query`] writes
    #[must_use]
    pub fn query_len(&self) -> usize {
        let mut scratch = [0u8; 3];
        "version=&codec=&platform=".len()
            + write_decimal(self.version, &mut scratch)
            + write_decimal(self.codec, &mut scratch)
            + write_decimal(self.platform, &mut scratch)
    }

    /// The same parameters as a TCP handshake (values masked to nibbles, reserve 0)
    #[must_use]
    pub const fn handshake(&self) -> Handshake {
        Handshake {
            version: self.version & 0x0F,
            codec: self.codec & 0x0F,
            platform: self.platform & 0x0F,
            reserve: 0,
        }
    }
}

/// Decimal digits of `v` into `out`; returns how many
fn write_decimal(v: u8, out: &mut [u8; 3]) -> usize {
    if v >= 100 {
        *out = [b'0' + v / 100, b'0' + (v / 10) % 10, b'0' + v % 10];
        3
    } else if v >= 10 {
        out[0] = b'0' + v / 10;
        out[1] = b'0' + v % 10;
        2
    } else {
        out[0] = b'0' + v;
        1
    }
}
