//! LongPort v1 packets: fixed headers, body, optional signature trailer
//!
//! Every packet starts with one *first byte*, followed by a header whose length depends on the
//! packet type, the body, and — when the verify bit is set — a 24-byte trailer. All multi-byte
//! integers are big-endian.
//!
//! # First byte
//!
//! | bits | mask   | field   | meaning |
//! |------|--------|---------|---------|
//! | 0-3  | `0x0F` | type    | `1` request, `2` response, `3` push; `0` and `4..=15` are rejected |
//! | 4    | `0x10` | verify  | set: an 8-byte nonce and a 16-byte signature follow the body |
//! | 5    | `0x20` | gzip    | set: the body on the wire is a gzip member |
//! | 6-7  | `0xC0` | reserve | encoders write 0; kept on decode in [`Header::reserve`] (value `0..=3`) |
//!
//! The official documentation pages label two of their first-byte examples wrongly: `0x32`
//! (`0b0011_0010`) is a response with *both* verify and gzip set, and `0x13` (`0b0001_0011`) is a
//! push with *only* verify set. The English table also swaps the meaning of the verify bit; the
//! official encoders and decoders all treat a set bit as "signed", and so does this module.
//!
//! # Layouts
//!
//! Offsets in bytes; `N` is the body length announced in the header.
//!
//! Request, [`REQUEST_HEADER_LEN`] = 11 bytes of header:
//!
//! | offset | size | field |
//! |--------|------|-------|
//! | 0      | 1    | first byte (type 1) |
//! | 1      | 1    | command code |
//! | 2      | 4    | request id |
//! | 6      | 2    | timeout in milliseconds |
//! | 8      | 3    | body length `N` |
//! | 11     | N    | body |
//!
//! Response, [`RESPONSE_HEADER_LEN`] = 10 bytes of header:
//!
//! | offset | size | field |
//! |--------|------|-------|
//! | 0      | 1    | first byte (type 2) |
//! | 1      | 1    | command code |
//! | 2      | 4    | request id (copied from the request) |
//! | 6      | 1    | status ([`Status`]) |
//! | 7      | 3    | body length `N` |
//! | 10     | N    | body |
//!
//! Push, [`PUSH_HEADER_LEN`] = 5 bytes of header:
//!
//! | offset | size | field |
//! |--------|------|-------|
//! | 0      | 1    | first byte (type 3) |
//! | 1      | 1    | command code |
//! | 2      | 3    | body length `N` |
//! | 5      | N    | body |
//!
//! Signature trailer, present only when verify is set, [`SIGNATURE_LEN`] = 24 bytes right after
//! the body:
//!
//! | offset      | size | field |
//! |-------------|------|-------|
//! | header + N  | 8    | nonce |
//! | header+N+8  | 16   | signature |
//!
//! The algorithm and key behind the signature are not public; this module only carries the bytes
//! ([`Signature`]) and never computes or checks them.
//!
//! The body length counts the body *as sent*, i.e. the compressed length when gzip is set.
//! Decoding never inflates; see the `gzip` module for that.
//!
//! # Limits
//!
//! The 24-bit length field caps a body at [`MAX_BODY_LEN`] bytes. Decoders take a smaller
//! `max_body` (typically [`DEFAULT_MAX_BODY`]) and refuse an oversized announcement with
//! [`DecodeError::BodyTooLarge`] as soon as the fixed header is readable, before any body byte
//! needs to be buffered.

use core::fmt;

use crate::io::BufferTooSmall;
use crate::wire::{Reader, Writer};

/// Header length of a request packet
pub const REQUEST_HEADER_LEN: usize = 11;
/// Header length of a response packet
pub const RESPONSE_HEADER_LEN: usize = 10;
/// Header length of a push packet
pub const PUSH_HEADER_LEN: usize = 5;
/// Length of the nonce + signature trailer of a packet with the verify bit
pub const SIGNATURE_LEN: usize = 24;
/// Largest body the 24-bit length field can announce
pub const MAX_BODY_LEN: usize = 0xFF_FFFF;
/// Default decoder limit on the announced body length (1 MiB)
pub const DEFAULT_MAX_BODY: usize = 1 << 20;
/// Longest packet the format can describe: request header, largest body, signature trailer
pub const MAX_PACKET_LEN: usize = REQUEST_HEADER_LEN + MAX_BODY_LEN + SIGNATURE_LEN;

/// Type nibble of a request
pub const TYPE_REQUEST: u8 = 1;
/// Type nibble of a response
pub const TYPE_RESPONSE: u8 = 2;
/// Type nibble of a push
pub const TYPE_PUSH: u8 = 3;

const TYPE_MASK: u8 = 0x0F;
const VERIFY_BIT: u8 = 0x10;
const GZIP_BIT: u8 = 0x20;
const RESERVE_SHIFT: u32 = 6;
const RESERVE_MASK: u8 = 0x03;

/// Nonce and signature bytes carried after the body when the verify bit is set
///
/// Exposed and round-tripped verbatim; never computed or verified here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Signature {
    /// The 8 nonce bytes
    pub nonce: [u8; 8],
    /// The 16 signature bytes
    pub signature: [u8; 16],
}

/// Response status byte
///
/// Values 0..=8 have names; anything else is kept as [`Status::Other`]. Build from a byte with
/// `Status::from(u8)` so that known values always get their named variant (`Other(3)` is not
/// equal to `BadRequest`, though both encode as 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Status {
    /// 0: the request succeeded; the body is the command's response
    Success,
    /// 1: the server did not finish in time
    ServerTimeout,
    /// 2: client-side timeout (not documented for the wire)
    ClientTimeout,
    /// 3: the request was invalid
    BadRequest,
    /// 4: the response was invalid (not documented for the wire)
    BadResponse,
    /// 5: bad token or session
    Unauthenticated,
    /// 6: refused, e.g. the connection quota is exhausted
    PermissionDenied,
    /// 7: server-side failure, also used for business errors
    ServerInternalError,
    /// 8: client-side failure (not documented for the wire)
    ClientInternalError,
    /// Any other status byte
    Other(u8),
}

impl Status {
    /// The status byte
    #[must_use]
    #[inline]
    pub const fn as_u8(self) -> u8 {
        match self {
            Status::Success => 0,
            Status::ServerTimeout => 1,
            Status::ClientTimeout => 2,
            Status::BadRequest => 3,
            Status::BadResponse => 4,
            Status::Unauthenticated => 5,
            Status::PermissionDenied => 6,
            Status::ServerInternalError => 7,
            Status::ClientInternalError => 8,
            Status::Other(v) => v,
        }
    }

    /// The status for a byte (named variant for 0..=8)
    #[must_use]
    #[inline]
    pub const fn from_u8(v: u8) -> Status {
        match v {
            0 => Status::Success,
            1 => Status::ServerTimeout,
            2 => Status::ClientTimeout,
            3 => Status::BadRequest,
            4 => Status::BadResponse,
            5 => Status::Unauthenticated,
            6 => Status::PermissionDenied,
            7 => Status::ServerInternalError,
            8 => Status::ClientInternalError,
            v => Status::Other(v),
        }
    }

    /// True for [`Status::Success`] (and `Other(0)`)
    #[must_use]
    #[inline]
    pub const fn is_success(self) -> bool {
        self.as_u8() == 0
    }
}

impl From<u8> for Status {
    fn from(v: u8) -> Status {
        Status::from_u8(v)
    }
}

impl From<Status> for u8 {
    fn from(s: Status) -> u8 {
        s.as_u8()
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Status::Success => "success",
            Status::ServerTimeout => "server timeout",
            Status::ClientTimeout => "client timeout",
            Status::BadRequest => "bad request",
            Status::BadResponse => "bad response",
            Status::Unauthenticated => "unauthenticated",
            Status::PermissionDenied => "permission denied",
            Status::ServerInternalError => "server internal error",
            Status::ClientInternalError => "client internal error",
            Status::Other(v) => return write!(f, "status {v}"),
        };
        write!(f, "{name} ({})", self.as_u8())
    }
}

/// Id of a request, unique among the requests in flight on one connection
///
/// The side that sends a request allocates the id; the response copies it. Both machines use
/// this type for every id they take or hand out, so an id cannot be swapped with another integer
/// argument (a command code, a status) without a compile error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RequestId(pub u32);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Packet type with the fields only that type carries
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Kind {
    /// Type 1: a request expecting a response with the same id
    Request {
        /// Sender-allocated id, echoed by the response
        request_id: RequestId,
        /// Processing deadline hint in milliseconds (0 = receiver's default)
        timeout_ms: u16,
    },
    /// Type 2: the answer to a request
    Response {
        /// Id of the request being answered
        request_id: RequestId,
        /// Outcome
        status: Status,
    },
    /// Type 3: an unsolicited message
    Push,
}

impl Kind {
    /// The type nibble: 1, 2 or 3
    #[must_use]
    #[inline]
    pub const fn type_code(&self) -> u8 {
        match self {
            Kind::Request { .. } => TYPE_REQUEST,
            Kind::Response { .. } => TYPE_RESPONSE,
            Kind::Push => TYPE_PUSH,
        }
    }

    /// Fixed header length of this type: 11, 10 or 5
    #[must_use]
    #[inline]
    pub const fn header_len(&self) -> usize {
        match self {
            Kind::Request { .. } => REQUEST_HEADER_LEN,
            Kind::Response { .. } => RESPONSE_HEADER_LEN,
            Kind::Push => PUSH_HEADER_LEN,
        }
    }

    /// The request id of a request or response
    #[must_use]
    #[inline]
    pub const fn request_id(&self) -> Option<RequestId> {
        match self {
            Kind::Request { request_id, .. } | Kind::Response { request_id, .. } => {
                Some(*request_id)
            }
            Kind::Push => None,
        }
    }
}

/// Header length for a type nibble, or `None` for an unknown type
#[inline]
const fn header_len_for(type_code: u8) -> Option<usize> {
    match type_code {
        TYPE_REQUEST => Some(REQUEST_HEADER_LEN),
        TYPE_RESPONSE => Some(RESPONSE_HEADER_LEN),
        TYPE_PUSH => Some(PUSH_HEADER_LEN),
        _ => None,
    }
}

#[inline]
fn to_usize(v: u32) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// Fixed header of any packet
///
/// [`Header::len`] is 11, 10 or 5 by type. `body_len` is the on-wire body length (the compressed
/// length when `gzip` is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Header {
    /// Type and its type-specific fields
    pub kind: Kind,
    /// Command code
    pub cmd: u8,
    /// The body is a gzip member
    pub gzip: bool,
    /// A 24-byte nonce + signature trailer follows the body
    pub verify: bool,
    /// The two reserve bits (`0..=3`); only the low two bits are emitted
    pub reserve: u8,
    /// Body length on the wire; at most [`MAX_BODY_LEN`] to be encodable
    pub body_len: u32,
}

impl Header {
    /// Header length: 11 (request), 10 (response) or 5 (push)
    #[must_use]
    #[allow(clippy::len_without_is_empty)]
    #[inline]
    pub const fn len(&self) -> usize {
        self.kind.header_len()
    }

    /// Whole packet length: header + body + 24 when `verify` (saturating)
    #[must_use]
    #[inline]
    pub fn packet_len(&self) -> usize {
        let trailer = if self.verify { SIGNATURE_LEN } else { 0 };
        self.len()
            .saturating_add(to_usize(self.body_len))
            .saturating_add(trailer)
    }

    /// The first byte as it is emitted
    #[must_use]
    #[inline]
    pub const fn first_byte(&self) -> u8 {
        let mut b = self.kind.type_code();
        if self.verify {
            b |= VERIFY_BIT;
        }
        if self.gzip {
            b |= GZIP_BIT;
        }
        b | ((self.reserve & RESERVE_MASK) << RESERVE_SHIFT)
    }

    /// Parse a fixed header from the start of `buf`; returns it and its length
    ///
    /// Bytes after the header are not looked at, so this works on a partly received packet.
    ///
    /// # Errors
    /// * [`DecodeError::UnknownType`] when the type nibble is not 1, 2 or 3 (checked on the
    ///   first byte alone);
    /// * [`DecodeError::Incomplete`] when `buf` is shorter than the header; `needed` is the
    ///   header length (1 when `buf` is empty);
    /// * [`DecodeError::BodyTooLarge`] when the announced body exceeds `max_body`.
    #[inline]
    pub fn parse(buf: &[u8], max_body: usize) -> Result<(Header, usize), DecodeError> {
        let mut r = Reader::new(buf);
        let first = r.u8().ok_or(DecodeError::Incomplete { needed: 1 })?;
        let type_code = first & TYPE_MASK;
        let hlen = header_len_for(type_code).ok_or(DecodeError::UnknownType(type_code))?;
        let incomplete = DecodeError::Incomplete { needed: hlen };
        if buf.len() < hlen {
            return Err(incomplete);
        }
        let cmd = r.u8().ok_or(incomplete)?;
        let kind = match type_code {
            TYPE_REQUEST => {
                let request_id = RequestId(r.u32().ok_or(incomplete)?);
                let timeout_ms = r.u16().ok_or(incomplete)?;
                Kind::Request {
                    request_id,
                    timeout_ms,
                }
            }
            TYPE_RESPONSE => {
                let request_id = RequestId(r.u32().ok_or(incomplete)?);
                let status = Status::from_u8(r.u8().ok_or(incomplete)?);
                Kind::Response { request_id, status }
            }
            _ => Kind::Push,
        };
        let body_len = r.u24().ok_or(incomplete)?;
        let len = to_usize(body_len);
        if len > max_body {
            return Err(DecodeError::BodyTooLarge { len, max: max_body });
        }
        let header = Header {
            kind,
            cmd,
            gzip: first & GZIP_BIT != 0,
            verify: first & VERIFY_BIT != 0,
            reserve: (first >> RESERVE_SHIFT) & RESERVE_MASK,
            body_len,
        };
        Ok((header, r.position()))
    }

    /// Write the fixed header at the start of `buf`; returns [`Header::len`]
    ///
    /// # Errors
    /// [`BufferTooSmall`] with the header length when `buf` is too short; nothing is written.
    /// A `body_len` above [`MAX_BODY_LEN`] cannot be represented and is refused with
    /// `required: usize::MAX`, which no buffer satisfies.
    #[inline]
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        if to_usize(self.body_len) > MAX_BODY_LEN {
            return Err(BufferTooSmall {
                required: usize::MAX,
            });
        }
        let mut w = Writer::new(buf);
        w.reserve(self.len())?;
        w.u8(self.first_byte())?;
        w.u8(self.cmd)?;
        match self.kind {
            Kind::Request {
                request_id,
                timeout_ms,
            } => {
                w.u32(request_id.0)?;
                w.u16(timeout_ms)?;
            }
            Kind::Response { request_id, status } => {
                w.u32(request_id.0)?;
                w.u8(status.as_u8())?;
            }
            Kind::Push => {}
        }
        w.u24(self.body_len)?;
        Ok(w.written())
    }
}

/// One v1 packet borrowing its body from the caller's buffer
///
/// On emit, the body length and the verify bit are taken from [`Packet::body`] and
/// [`Packet::signature`]; `header.body_len` and `header.verify` are ignored there. Parsing always
/// yields a packet where they agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Packet<'a> {
    /// Fixed header
    pub header: Header,
    /// Body as on the wire (still compressed when `header.gzip`)
    pub body: &'a [u8],
    /// Nonce and signature, present iff the verify bit is set
    pub signature: Option<Signature>,
}

impl<'a> Packet<'a> {
    #[inline]
    fn plain(kind: Kind, cmd: u8, body: &'a [u8]) -> Self {
        Packet {
            header: Header {
                kind,
                cmd,
                gzip: false,
                verify: false,
                reserve: 0,
                body_len: u32::try_from(body.len()).unwrap_or(u32::MAX),
            },
            body,
            signature: None,
        }
    }

    /// An unsigned, uncompressed request
    #[must_use]
    #[inline]
    pub fn request(cmd: u8, request_id: RequestId, timeout_ms: u16, body: &'a [u8]) -> Self {
        Self::plain(
            Kind::Request {
                request_id,
                timeout_ms,
            },
            cmd,
            body,
        )
    }

    /// An unsigned, uncompressed response
    #[must_use]
    #[inline]
    pub fn response(cmd: u8, request_id: RequestId, status: Status, body: &'a [u8]) -> Self {
        Self::plain(Kind::Response { request_id, status }, cmd, body)
    }

    /// An unsigned, uncompressed push
    #[must_use]
    #[inline]
    pub fn push(cmd: u8, body: &'a [u8]) -> Self {
        Self::plain(Kind::Push, cmd, body)
    }

    /// The same packet with the gzip flag set as given (the body must already be gzip)
    #[must_use]
    #[inline]
    pub const fn with_gzip(mut self, gzip: bool) -> Self {
        self.header.gzip = gzip;
        self
    }

    /// The same packet carrying `signature` (sets the verify bit) or none
    #[must_use]
    #[inline]
    pub const fn with_signature(mut self, signature: Option<Signature>) -> Self {
        self.header.verify = signature.is_some();
        self.signature = signature;
        self
    }

    /// The same packet with these reserve bits (`0..=3`)
    #[must_use]
    #[inline]
    pub const fn with_reserve(mut self, reserve: u8) -> Self {
        self.header.reserve = reserve & RESERVE_MASK;
        self
    }

    /// Parse one packet from the start of `buf`; returns it and the bytes it used
    ///
    /// Bytes after the packet are left alone (the next packet of a stream, or trailing bytes of a
    /// message).
    ///
    /// # Errors
    /// As [`Header::parse`]; when the header is complete but the body or trailer is not,
    /// [`DecodeError::Incomplete`] carries the whole packet length.
    #[inline]
    pub fn parse(buf: &'a [u8], max_body: usize) -> Result<(Packet<'a>, usize), DecodeError> {
        let (header, hlen) = Header::parse(buf, max_body)?;
        let total = header.packet_len();
        let incomplete = DecodeError::Incomplete { needed: total };
        if buf.len() < total {
            return Err(incomplete);
        }
        let mut r = Reader::new(buf);
        r.bytes(hlen).ok_or(incomplete)?;
        let body = r.bytes(to_usize(header.body_len)).ok_or(incomplete)?;
        let signature = if header.verify {
            let nonce = r.array::<8>().ok_or(incomplete)?;
            let signature = r.array::<16>().ok_or(incomplete)?;
            Some(Signature { nonce, signature })
        } else {
            None
        };
        Ok((
            Packet {
                header,
                body,
                signature,
            },
            r.position(),
        ))
    }

    /// Exact number of bytes [`Packet::emit`] writes
    #[must_use]
    #[inline]
    pub fn buffer_len(&self) -> usize {
        let trailer = if self.signature.is_some() {
            SIGNATURE_LEN
        } else {
            0
        };
        self.header
            .len()
            .saturating_add(self.body.len())
            .saturating_add(trailer)
    }

    /// The header as emitted: `body_len` and `verify` follow the body and signature
    #[must_use]
    #[inline]
    pub fn wire_header(&self) -> Header {
        Header {
            body_len: u32::try_from(self.body.len()).unwrap_or(u32::MAX),
            verify: self.signature.is_some(),
            ..self.header
        }
    }

    /// Write the packet at the start of `buf`; returns [`Packet::buffer_len`]
    ///
    /// # Errors
    /// [`BufferTooSmall`] with [`Packet::buffer_len`] when `buf` is too short; nothing is
    /// written. A body longer than [`MAX_BODY_LEN`] cannot be represented and is refused with
    /// `required: usize::MAX`.
    #[inline]
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        if self.body.len() > MAX_BODY_LEN {
            return Err(BufferTooSmall {
                required: usize::MAX,
            });
        }
        let total = self.buffer_len();
        if buf.len() < total {
            return Err(BufferTooSmall { required: total });
        }
        let hlen = self.wire_header().emit(buf)?;
        let mut w = Writer::new(buf.get_mut(hlen..).unwrap_or_default());
        w.bytes(self.body)?;
        if let Some(sig) = &self.signature {
            w.bytes(&sig.nonce)?;
            w.bytes(&sig.signature)?;
        }
        Ok(hlen + w.written())
    }
}

/// Why bytes are not (yet) a packet
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DecodeError {
    /// Not enough bytes: the header or packet needs `needed` bytes in total
    Incomplete {
        /// Total bytes needed from the start of the packet
        needed: usize,
    },
    /// The type nibble (here) is 0 or 4..=15
    UnknownType(u8),
    /// The header announces a body longer than the decoder's limit
    BodyTooLarge {
        /// Announced body length
        len: usize,
        /// The limit in force
        max: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Incomplete { needed } => {
                write!(f, "incomplete packet: {needed} bytes needed")
            }
            DecodeError::UnknownType(t) => write!(f, "unknown packet type {t}"),
            DecodeError::BodyTooLarge { len, max } => {
                write!(
                    f,
                    "announced body of {len} bytes exceeds the limit of {max}"
                )
            }
        }
    }
}

impl core::error::Error for DecodeError {}
