//! Borrowed protobuf codecs for the LongPort control bodies (cmd 0..3 and the error body)
//!
//! Every message is a plain struct of borrowed fields that decodes from `&[u8]` without copying
//! or allocating and encodes straight into a caller buffer. The bytes produced are identical to
//! what `prost` (and the official generated classes) produce for the same values: proto3
//! implicit presence, so default values are omitted, and fields are written in field-number
//! order. Decoding follows proto3 rules:
//!
//! * missing fields take their default (an empty body decodes to all defaults, so an empty
//!   `Close` body is [`CloseCode::HeartbeatTimeout`] with an empty reason);
//! * unknown fields of the varint, 64-bit, length-delimited and 32-bit wire types are skipped;
//! * a scalar or string field that appears more than once keeps its last value;
//! * integers are truncated like the official decoders (an `int32` field keeps the low 32 bits
//!   of its varint);
//! * `Close.code` values outside the known set are kept as [`CloseCode::Other`].
//!
//! Deviation from `prost`: the deprecated group wire types (3 and 4) are refused with
//! [`PbError::Group`] instead of being skipped. No LongPort peer emits them.
//!
//! ```
//! use tether_net::longport::control::{AuthRequest, Body, Metadata, SessionGrant};
//!
//! // encode an auth request into a stack buffer
//! let pairs = [("accept-language", "en")];
//! let req = AuthRequest::new("abc", Metadata::from_pairs(&pairs));
//! let mut buf = [0u8; 64];
//! let n = req.encode(&mut buf).unwrap();
//! assert_eq!(n, req.encoded_len());
//! assert_eq!(&buf[..5], b"\x0a\x03abc");
//!
//! // decode borrows from the input; the metadata view iterates the encoded entries
//! let back = AuthRequest::decode(&buf[..n]).unwrap();
//! assert_eq!(back.metadata.get("accept-language"), Some("en"));
//! assert_eq!(back, req);
//!
//! // an auth response: session "s1", expires 1_700_086_400_000
//! let grant = SessionGrant::decode(b"\x0a\x02s1\x10\x80\x88\xaf\xa8\xbd\x31").unwrap();
//! assert_eq!((grant.session_id, grant.expires), ("s1", 1_700_086_400_000));
//! ```

use core::fmt;

use crate::io::BufferTooSmall;
use crate::longport::wire::{Header, Kind};
use crate::wire::Writer;

/// Command code of a Close push
pub const CMD_CLOSE: u8 = 0;
/// Command code of a heartbeat request or response
pub const CMD_HEARTBEAT: u8 = 1;
/// Command code of the auth request and response
pub const CMD_AUTH: u8 = 2;
/// Command code of the reconnect request and response
pub const CMD_RECONNECT: u8 = 3;

/// Most bytes a varint of a 64-bit value takes
pub(crate) const MAX_VARINT_LEN: usize = 10;

const WT_VARINT: u8 = 0;
const WT_I64: u8 = 1;
const WT_LEN: u8 = 2;
const WT_I32: u8 = 5;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why a control body failed to decode
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PbError {
    /// The body ends inside a tag, a varint, a fixed-width value or a length-delimited field
    Truncated,
    /// A varint is longer than 10 bytes or carries bits beyond 64
    VarintOverflow,
    /// A known field arrived with a wire type that does not match its declared type
    ///
    /// Problems inside a metadata map entry are reported against the map field.
    WrongWireType {
        /// Field number of the offending field
        field: u32,
    },
    /// A string field is not valid UTF-8
    ///
    /// Problems inside a metadata map entry (key or value) are reported against the map field.
    InvalidUtf8 {
        /// Field number of the offending field
        field: u32,
    },
    /// A tag uses wire type 6 or 7, which do not exist
    BadWireType(u8),
    /// A tag has field number 0, or its varint does not fit in 32 bits
    BadFieldNumber,
    /// A tag uses the deprecated group wire types (3 = start, 4 = end), which are not supported
    Group {
        /// Field number of the group tag
        field: u32,
    },
}

impl fmt::Display for PbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PbError::Truncated => f.write_str("protobuf body truncated"),
            PbError::VarintOverflow => f.write_str("protobuf varint longer than 64 bits"),
            PbError::WrongWireType { field } => {
                write!(f, "protobuf field {field} has the wrong wire type")
            }
            PbError::InvalidUtf8 { field } => {
                write!(f, "protobuf string field {field} is not valid UTF-8")
            }
            PbError::BadWireType(wt) => write!(f, "protobuf wire type {wt} does not exist"),
            PbError::BadFieldNumber => f.write_str("protobuf field number out of range"),
            PbError::Group { field } => {
                write!(f, "protobuf group (field {field}) is not supported")
            }
        }
    }
}

impl core::error::Error for PbError {}

// ---------------------------------------------------------------------------------------------
// Varints
// ---------------------------------------------------------------------------------------------

/// Number of bytes the varint encoding of `v` takes (1..=10)
#[must_use]
pub(crate) const fn varint_len(v: u64) -> usize {
    // bits needed, at least 1; 7 bits per byte
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Write `v` as a varint at the start of `buf`; returns the number of bytes written
///
/// # Errors
/// [`BufferTooSmall`] when `buf` is shorter than [`varint_len`]`(v)`; nothing is written.
#[cfg(test)]
pub(crate) fn encode_varint(v: u64, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
    let mut w = Writer::new(buf);
    put_varint(&mut w, v)?;
    Ok(w.written())
}

/// Read a varint from the start of `buf`; returns the value and the number of bytes read
///
/// Accepts non-minimal encodings (as every protobuf decoder does).
///
/// # Errors
/// [`PbError::Truncated`] when `buf` ends before the last byte (high bit clear);
/// [`PbError::VarintOverflow`] when the varint has more than 10 bytes or its 10th byte carries
/// bits beyond 64.
#[inline(always)]
pub(crate) fn decode_varint(buf: &[u8]) -> Result<(u64, usize), PbError> {
    // Fast path: tags, lengths and small values are one byte
    match *buf {
        [b0, ..] if b0 < 0x80 => Ok((u64::from(b0), 1)),
        _ => decode_varint_multi(buf),
    }
}

/// A varint that is not a single byte (or an empty buffer)
#[inline]
fn decode_varint_multi(buf: &[u8]) -> Result<(u64, usize), PbError> {
    // Eight bytes at once when the varint ends within them (values below 2^56): keep the bytes
    // up to the first one with a clear high bit, drop the high bits, pack the 7-bit groups.
    if let Some(word) = buf.first_chunk::<8>() {
        let w = u64::from_le_bytes(*word);
        let ends = !w & 0x8080_8080_8080_8080;
        if ends != 0 {
            // bits 0 ..= the high bit of the last byte
            let x = w & (ends ^ (ends - 1)) & 0x7f7f_7f7f_7f7f_7f7f;
            let x = (x & 0x007f_007f_007f_007f) | ((x & 0x7f00_7f00_7f00_7f00) >> 1);
            let x = (x & 0x0000_3fff_0000_3fff) | ((x & 0x3fff_0000_3fff_0000) >> 2);
            let x = (x & 0x0000_0000_0fff_ffff) | ((x & 0x0fff_ffff_0000_0000) >> 4);
            return Ok((x, (ends.trailing_zeros() / 8 + 1) as usize));
        }
    }
    decode_varint_slow(buf)
}

/// The general varint loop: short buffers, nine- and ten-byte varints, truncation and overflow
fn decode_varint_slow(buf: &[u8]) -> Result<(u64, usize), PbError> {
    let mut v: u64 = 0;
    for i in 0..MAX_VARINT_LEN {
        let Some(&b) = buf.get(i) else {
            return Err(PbError::Truncated);
        };
        if i == MAX_VARINT_LEN - 1 && b > 1 {
            return Err(PbError::VarintOverflow);
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((v, i + 1));
        }
    }
    Err(PbError::VarintOverflow)
}

fn put_varint(w: &mut Writer<'_>, mut v: u64) -> Result<(), BufferTooSmall> {
    let mut tmp = [0u8; MAX_VARINT_LEN];
    let mut n = 0;
    for slot in tmp.iter_mut() {
        n += 1;
        if v < 0x80 {
            *slot = v as u8;
            break;
        }
        *slot = (v as u8 & 0x7f) | 0x80;
        v >>= 7;
    }
    w.bytes(tmp.get(..n).unwrap_or(&tmp))
}

// ---------------------------------------------------------------------------------------------
// Field reader
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32,
}

/// Value of a varint field whose key has been read; returns it and the rest of the body
#[inline]
fn take_varint(buf: &[u8]) -> Result<(u64, &[u8]), PbError> {
    let (v, n) = decode_varint(buf)?;
    Ok((v, buf.get(n..).ok_or(PbError::Truncated)?))
}

/// Payload of a length-delimited field whose key has been read; returns it and the rest
#[inline]
fn take_bytes(buf: &[u8]) -> Result<(&[u8], &[u8]), PbError> {
    let (len, n) = decode_varint(buf)?;
    let rest = buf.get(n..).ok_or(PbError::Truncated)?;
    let len = usize::try_from(len).map_err(|_| PbError::Truncated)?;
    rest.split_at_checked(len).ok_or(PbError::Truncated)
}

/// String field `field` whose key has been read; returns it and the rest of the body
#[inline]
fn take_str(buf: &[u8], field: u32) -> Result<(&str, &[u8]), PbError> {
    let (data, rest) = take_bytes(buf)?;
    match core::str::from_utf8(data) {
        Ok(s) => Ok((s, rest)),
        Err(_) => Err(PbError::InvalidUtf8 { field }),
    }
}

/// Read the next field of `buf` (which must not be empty) and advance past it
#[inline(always)]
fn next_field<'a>(buf: &mut &'a [u8]) -> Result<(u32, Value<'a>), PbError> {
    let (key, n) = decode_varint(buf)?;
    let rest = buf.get(n..).ok_or(PbError::Truncated)?;
    let key = u32::try_from(key).map_err(|_| PbError::BadFieldNumber)?;
    let wt = (key & 7) as u8;
    let field = key >> 3;
    if wt > WT_I32 {
        return Err(PbError::BadWireType(wt));
    }
    if field == 0 {
        return Err(PbError::BadFieldNumber);
    }
    let (value, rest) = match wt {
        WT_VARINT => {
            let (v, rest) = take_varint(rest)?;
            (Value::Varint(v), rest)
        }
        WT_I64 => (Value::Fixed64, rest.get(8..).ok_or(PbError::Truncated)?),
        WT_LEN => {
            let (data, rest) = take_bytes(rest)?;
            (Value::Bytes(data), rest)
        }
        WT_I32 => (Value::Fixed32, rest.get(4..).ok_or(PbError::Truncated)?),
        // 3 = start group, 4 = end group
        _ => return Err(PbError::Group { field }),
    };
    *buf = rest;
    Ok((field, value))
}

#[inline(always)]
fn want_varint(field: u32, v: Value<'_>) -> Result<u64, PbError> {
    match v {
        Value::Varint(x) => Ok(x),
        _ => Err(PbError::WrongWireType { field }),
    }
}

#[inline(always)]
fn want_str(field: u32, v: Value<'_>) -> Result<&str, PbError> {
    match v {
        Value::Bytes(b) => core::str::from_utf8(b).map_err(|_| PbError::InvalidUtf8 { field }),
        _ => Err(PbError::WrongWireType { field }),
    }
}

// ---------------------------------------------------------------------------------------------
// Field writer helpers (proto3 implicit presence: defaults are omitted)
// ---------------------------------------------------------------------------------------------

const fn tag(field: u32, wt: u8) -> u64 {
    ((field as u64) << 3) | wt as u64
}

const fn varint_field_len(field: u32, v: u64) -> usize {
    if v == 0 {
        0
    } else {
        varint_len(tag(field, WT_VARINT)) + varint_len(v)
    }
}

const fn len_field_len(field: u32, len: usize) -> usize {
    varint_len(tag(field, WT_LEN))
        .saturating_add(varint_len(len as u64))
        .saturating_add(len)
}

const fn str_field_len(field: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        len_field_len(field, s.len())
    }
}

fn put_varint_field(w: &mut Writer<'_>, field: u32, v: u64) -> Result<(), BufferTooSmall> {
    if v != 0 {
        put_varint(w, tag(field, WT_VARINT))?;
        put_varint(w, v)?;
    }
    Ok(())
}

fn put_str_field(w: &mut Writer<'_>, field: u32, s: &str) -> Result<(), BufferTooSmall> {
    if !s.is_empty() {
        put_varint(w, tag(field, WT_LEN))?;
        put_varint(w, s.len() as u64)?;
        w.bytes(s.as_bytes())?;
    }
    Ok(())
}

/// Check room for `len` bytes, then run `f` on a writer over exactly that prefix
fn encode_with(
    buf: &mut [u8],
    len: usize,
    f: impl FnOnce(&mut Writer<'_>) -> Result<(), BufferTooSmall>,
) -> Result<usize, BufferTooSmall> {
    let Some(out) = buf.get_mut(..len) else {
        return Err(BufferTooSmall { required: len });
    };
    let mut w = Writer::new(out);
    f(&mut w)?;
    Ok(w.written())
}

// ---------------------------------------------------------------------------------------------
// Body trait
// ---------------------------------------------------------------------------------------------

/// A control body: borrowed protobuf view and encoder; every message type implements it
pub trait Body<'a>: Sized {
    /// Decode the body, borrowing strings from `buf`
    ///
    /// # Errors
    /// [`PbError`] when `buf` is not a valid encoding of the message.
    fn decode(buf: &'a [u8]) -> Result<Self, PbError>;

    /// Exact number of bytes [`Body::encode`] writes
    fn encoded_len(&self) -> usize;

    /// Encode at the start of `buf` (byte-identical to `prost`); returns the number of bytes written
    ///
    /// # Errors
    /// [`BufferTooSmall`] when `buf` is shorter than [`Body::encoded_len`]; nothing is written.
    fn encode(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall>;
}

/// Write `prefix`, then a packet of `kind` and `cmd` whose body is `body` encoded in place
///
/// Returns the bytes written; nothing is written on error. The machines use it for their own
/// control packets (login requests, heartbeats, login responses, Close pushes), whose bodies are
/// bounded far below the 24-bit length limit.
pub(crate) fn emit_packet<'b>(
    buf: &mut [u8],
    prefix: &[u8],
    kind: Kind,
    cmd: u8,
    body: &impl Body<'b>,
) -> Result<usize, BufferTooSmall> {
    let body_len = body.encoded_len();
    let header = Header {
        kind,
        cmd,
        gzip: false,
        verify: false,
        reserve: 0,
        body_len: u32::try_from(body_len).unwrap_or(u32::MAX),
    };
    let required = prefix
        .len()
        .saturating_add(header.len())
        .saturating_add(body_len);
    let out = buf.get_mut(..required).ok_or(BufferTooSmall { required })?;
    let (pre, rest) = out.split_at_mut(prefix.len());
    let hlen = header.emit(rest)?;
    let body_out = rest.get_mut(hlen..).ok_or(BufferTooSmall { required })?;
    body.encode(body_out)?;
    pre.copy_from_slice(prefix);
    Ok(required)
}

// ---------------------------------------------------------------------------------------------
// Close
// ---------------------------------------------------------------------------------------------

/// Why the server closes a connection (`Close.Code`)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CloseCode {
    /// 0: no heartbeat arrived in time (also what an empty Close body means)
    #[default]
    HeartbeatTimeout,
    /// 1: internal server error
    ServerError,
    /// 2: the server is shutting down or draining
    ServerShutdown,
    /// 3: the server could not parse what the client sent
    UnpackError,
    /// 4: authentication failed
    AuthError,
    /// 5: a reconnect presented an expired session
    SessExpired,
    /// 6: the same session is connected more than once
    ConnectDuplicate,
    /// A value outside 0..=6, kept as received
    ///
    /// [`CloseCode::from_i32`] never produces `Other` for a known value; an `Other(0..=6)` built
    /// by hand encodes like the named variant.
    Other(i32),
}

impl CloseCode {
    /// The code for a wire value (unknown values become [`CloseCode::Other`])
    #[must_use]
    pub const fn from_i32(v: i32) -> Self {
        match v {
            0 => CloseCode::HeartbeatTimeout,
            1 => CloseCode::ServerError,
            2 => CloseCode::ServerShutdown,
            3 => CloseCode::UnpackError,
            4 => CloseCode::AuthError,
            5 => CloseCode::SessExpired,
            6 => CloseCode::ConnectDuplicate,
            other => CloseCode::Other(other),
        }
    }

    /// The wire value
    #[must_use]
    pub const fn to_i32(self) -> i32 {
        match self {
            CloseCode::HeartbeatTimeout => 0,
            CloseCode::ServerError => 1,
            CloseCode::ServerShutdown => 2,
            CloseCode::UnpackError => 3,
            CloseCode::AuthError => 4,
            CloseCode::SessExpired => 5,
            CloseCode::ConnectDuplicate => 6,
            CloseCode::Other(v) => v,
        }
    }

    /// The RFC 6455 status code the server machine sends in the WebSocket Close frame that
    /// follows a `Close` push with this code
    ///
    /// 1000 (normal) for heartbeat timeout and unknown codes, 1001 (going away) for shutdown,
    /// 1002 (protocol error) for unpack errors, 1008 (policy violation) for the auth, session and
    /// duplicate cases, 1011 (internal error) for server errors. Codes 0..=6 themselves are not
    /// legal WebSocket status codes.
    #[must_use]
    pub const fn ws_close_code(self) -> u16 {
        match self {
            CloseCode::ServerShutdown => 1001,
            CloseCode::UnpackError => 1002,
            CloseCode::AuthError | CloseCode::SessExpired | CloseCode::ConnectDuplicate => 1008,
            CloseCode::ServerError => 1011,
            CloseCode::HeartbeatTimeout | CloseCode::Other(_) => 1000,
        }
    }
}

impl From<i32> for CloseCode {
    fn from(v: i32) -> Self {
        CloseCode::from_i32(v)
    }
}

impl From<CloseCode> for i32 {
    fn from(c: CloseCode) -> Self {
        c.to_i32()
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            CloseCode::HeartbeatTimeout => "heartbeat timeout",
            CloseCode::ServerError => "server error",
            CloseCode::ServerShutdown => "server shutdown",
            CloseCode::UnpackError => "unpack error",
            CloseCode::AuthError => "auth error",
            CloseCode::SessExpired => "session expired",
            CloseCode::ConnectDuplicate => "duplicate connection",
            CloseCode::Other(v) => return write!(f, "close code {v}"),
        };
        f.write_str(name)
    }
}

/// Body of a Close push (cmd 0): `Close { Code code = 1; string reason = 2; }`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Close<'a> {
    /// Why the connection is closed
    pub code: CloseCode,
    /// Free text
    pub reason: &'a str,
}

impl<'a> Close<'a> {
    /// A Close body
    #[must_use]
    pub const fn new(code: CloseCode, reason: &'a str) -> Self {
        Close { code, reason }
    }
}

/// Wire form of an `int32`/enum value: sign-extended to 64 bits (negative values take 10 bytes)
const fn int32_wire(v: i32) -> u64 {
    v as i64 as u64
}

impl<'a> Close<'a> {
    /// The general field loop, from wherever the in-order fast path stopped
    fn decode_rest(mut self, mut buf: &'a [u8]) -> Result<Self, PbError> {
        while !buf.is_empty() {
            match next_field(&mut buf)? {
                (1, v) => self.code = CloseCode::from_i32(want_varint(1, v)? as i32),
                (2, v) => self.reason = want_str(2, v)?,
                _ => {}
            }
        }
        Ok(self)
    }
}

impl<'a> Body<'a> for Close<'a> {
    fn decode(mut buf: &'a [u8]) -> Result<Self, PbError> {
        // Fast path: the fields in declaration order with their one-byte keys; anything else
        // continues in the general loop (see `SessionGrant::decode`)
        let mut out = Close::default();
        if let [0x08, ref rest @ ..] = *buf {
            let (v, rest) = take_varint(rest)?;
            (out.code, buf) = (CloseCode::from_i32(v as i32), rest);
        }
        if let [0x12, ref rest @ ..] = *buf {
            (out.reason, buf) = take_str(rest, 2)?;
        }
        if buf.is_empty() {
            Ok(out)
        } else {
            out.decode_rest(buf)
        }
    }

    fn encoded_len(&self) -> usize {
        varint_field_len(1, int32_wire(self.code.to_i32())) + str_field_len(2, self.reason)
    }

    fn encode(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        encode_with(buf, self.encoded_len(), |w| {
            put_varint_field(w, 1, int32_wire(self.code.to_i32()))?;
            put_str_field(w, 2, self.reason)
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Heartbeat
// ---------------------------------------------------------------------------------------------

/// Suggested heartbeat body (cmd 1): `Heartbeat { int64 timestamp = 1; optional int32 heartbeat_id = 2; }`
///
/// The heartbeat body is opaque to the responder (it echoes the bytes); this is the form the
/// official Go client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Heartbeat {
    /// Sender's clock (the Go client uses Unix milliseconds)
    pub timestamp: i64,
    /// Request id cast to `i32` (explicit presence: `Some(0)` is encoded, `None` is not)
    pub heartbeat_id: Option<i32>,
}

impl Heartbeat {
    /// A heartbeat body
    #[must_use]
    pub const fn new(timestamp: i64, heartbeat_id: Option<i32>) -> Self {
        Heartbeat {
            timestamp,
            heartbeat_id,
        }
    }
}

impl Heartbeat {
    /// The general field loop, from wherever the in-order fast path stopped
    fn decode_rest(mut self, mut buf: &[u8]) -> Result<Self, PbError> {
        while !buf.is_empty() {
            match next_field(&mut buf)? {
                (1, v) => self.timestamp = want_varint(1, v)? as i64,
                (2, v) => self.heartbeat_id = Some(want_varint(2, v)? as i32),
                _ => {}
            }
        }
        Ok(self)
    }
}

impl<'a> Body<'a> for Heartbeat {
    fn decode(mut buf: &'a [u8]) -> Result<Self, PbError> {
        // Fast path: the fields in declaration order with their one-byte keys; anything else
        // continues in the general loop (see `SessionGrant::decode`)
        let mut out = Heartbeat::default();
        if let [0x08, ref rest @ ..] = *buf {
            let (v, rest) = take_varint(rest)?;
            (out.timestamp, buf) = (v as i64, rest);
        }
        if let [0x10, ref rest @ ..] = *buf {
            let (v, rest) = take_varint(rest)?;
            (out.heartbeat_id, buf) = (Some(v as i32), rest);
        }
        if buf.is_empty() {
            Ok(out)
        } else {
            out.decode_rest(buf)
        }
    }

    fn encoded_len(&self) -> usize {
        let id = match self.heartbeat_id {
            Some(id) => varint_len(tag(2, WT_VARINT)) + varint_len(int32_wire(id)),
            None => 0,
        };
        varint_field_len(1, self.timestamp as u64) + id
    }

    fn encode(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        encode_with(buf, self.encoded_len(), |w| {
            put_varint_field(w, 1, self.timestamp as u64)?;
            if let Some(id) = self.heartbeat_id {
                put_varint(w, tag(2, WT_VARINT))?;
                put_varint(w, int32_wire(id))?;
            }
            Ok(())
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Metadata
// ---------------------------------------------------------------------------------------------

/// Field number of `metadata` in both AuthRequest and ReconnectRequest
const METADATA_FIELD: u32 = 2;

#[derive(Clone, Copy)]
enum Repr<'a> {
    /// Pairs supplied by the caller
    Pairs(&'a [(&'a str, &'a str)]),
    /// The whole encoded message; entries are the (already validated) fields numbered `field`
    Encoded {
        msg: &'a [u8],
        field: u32,
        count: usize,
    },
}

/// `map<string, string>` entries, borrowed either from a slice of pairs (to encode) or from the
/// encoded message (decoded)
///
/// Iteration yields entries in order: slice order, or wire order for a decoded message. A decoded
/// message may repeat a key; map semantics (as in `prost`) keep the last one, which is what
/// [`Metadata::get`] returns. An entry whose key or value is missing yields `""` for it.
/// Decoding validates every entry, so iteration never fails.
///
/// Equality (and hashing) compares the entry sequences, whatever the backing.
#[derive(Clone, Copy)]
pub struct Metadata<'a> {
    repr: Repr<'a>,
}

impl<'a> Metadata<'a> {
    /// No entries
    pub const EMPTY: Metadata<'static> = Metadata {
        repr: Repr::Pairs(&[]),
    };

    /// Entries from a slice of `(key, value)` pairs, encoded in slice order
    ///
    /// `prost` encodes its `BTreeMap` in key order; sort the pairs by key for byte-identical output.
    #[must_use]
    pub const fn from_pairs(pairs: &'a [(&'a str, &'a str)]) -> Self {
        Metadata {
            repr: Repr::Pairs(pairs),
        }
    }

    /// The entries, in order
    #[must_use]
    pub fn iter(&self) -> MetadataIter<'a> {
        match self.repr {
            Repr::Pairs(p) => MetadataIter {
                inner: IterRepr::Pairs(p.iter()),
            },
            Repr::Encoded { msg, field, count } => MetadataIter {
                inner: IterRepr::Encoded {
                    rest: msg,
                    field,
                    left: count,
                },
            },
        }
    }

    /// Number of entries (a repeated key counts each time)
    #[must_use]
    pub const fn len(&self) -> usize {
        match self.repr {
            Repr::Pairs(p) => p.len(),
            Repr::Encoded { count, .. } => count,
        }
    }

    /// True when there are no entries
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Value of the last entry with this key
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.iter()
            .filter(|(k, _)| *k == key)
            .last()
            .map(|(_, v)| v)
    }

    fn entries_encoded_len(&self) -> usize {
        self.iter().fold(0usize, |acc, (k, v)| {
            acc.saturating_add(len_field_len(METADATA_FIELD, entry_len(k, v)))
        })
    }

    fn put_entries(&self, w: &mut Writer<'_>) -> Result<(), BufferTooSmall> {
        for (k, v) in self.iter() {
            put_varint(w, tag(METADATA_FIELD, WT_LEN))?;
            put_varint(w, entry_len(k, v) as u64)?;
            put_str_field(w, 1, k)?;
            put_str_field(w, 2, v)?;
        }
        Ok(())
    }

    /// Check every metadata entry of `msg` and count them
    fn validate(msg: &'a [u8], field: u32) -> Result<Self, PbError> {
        let mut rest = msg;
        let mut count = 0usize;
        while !rest.is_empty() {
            let (f, v) = next_field(&mut rest)?;
            if f == field {
                let Value::Bytes(entry) = v else {
                    return Err(PbError::WrongWireType { field });
                };
                decode_entry(entry, field)?;
                count = count.saturating_add(1);
            }
        }
        Ok(Metadata {
            repr: Repr::Encoded { msg, field, count },
        })
    }
}

impl Default for Metadata<'_> {
    fn default() -> Self {
        Metadata::EMPTY
    }
}

/// Encoded length of a map entry's content (key = 1, value = 2; empty strings omitted)
const fn entry_len(k: &str, v: &str) -> usize {
    str_field_len(1, k).saturating_add(str_field_len(2, v))
}

/// Decode one map entry; errors are reported against the map field `field`
fn decode_entry(mut entry: &[u8], field: u32) -> Result<(&str, &str), PbError> {
    let (mut key, mut value) = ("", "");
    while !entry.is_empty() {
        let (f, v) = next_field(&mut entry)?;
        let slot = match f {
            1 => &mut key,
            2 => &mut value,
            _ => continue,
        };
        *slot = match v {
            Value::Bytes(b) => {
                core::str::from_utf8(b).map_err(|_| PbError::InvalidUtf8 { field })?
            }
            _ => return Err(PbError::WrongWireType { field }),
        };
    }
    Ok((key, value))
}

impl PartialEq for Metadata<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Metadata<'_> {}

impl core::hash::Hash for Metadata<'_> {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        state.write_usize(self.len());
        for entry in self.iter() {
            entry.hash(state);
        }
    }
}

impl fmt::Debug for Metadata<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Metadata<'_> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "{{");
        for (i, (k, v)) in self.iter().enumerate() {
            if i > 0 {
                defmt::write!(f, ", ");
            }
            defmt::write!(f, "{=str}: {=str}", k, v);
        }
        defmt::write!(f, "}}");
    }
}

impl<'a> IntoIterator for Metadata<'a> {
    type Item = (&'a str, &'a str);
    type IntoIter = MetadataIter<'a>;
    fn into_iter(self) -> MetadataIter<'a> {
        self.iter()
    }
}

impl<'a> IntoIterator for &Metadata<'a> {
    type Item = (&'a str, &'a str);
    type IntoIter = MetadataIter<'a>;
    fn into_iter(self) -> MetadataIter<'a> {
        self.iter()
    }
}

#[derive(Clone)]
enum IterRepr<'a> {
    Pairs(core::slice::Iter<'a, (&'a str, &'a str)>),
    Encoded {
        rest: &'a [u8],
        field: u32,
        left: usize,
    },
}

/// Iterator over [`Metadata`] entries as `(key, value)`
#[derive(Clone)]
pub struct MetadataIter<'a> {
    inner: IterRepr<'a>,
}

impl fmt::Debug for MetadataIter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetadataIter")
            .field("remaining", &self.len())
            .finish()
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for MetadataIter<'_> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "MetadataIter {{ remaining: {=usize} }}", self.len());
    }
}

impl<'a> Iterator for MetadataIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            IterRepr::Pairs(it) => it.next().copied(),
            IterRepr::Encoded { rest, field, left } => {
                while *left > 0 && !rest.is_empty() {
                    // Validated at decode time: an error cannot happen; stop quietly if it does.
                    let Ok((f, v)) = next_field(rest) else { break };
                    if let (true, Value::Bytes(entry)) = (f == *field, v) {
                        let Ok(kv) = decode_entry(entry, *field) else {
                            break;
                        };
                        *left -= 1;
                        return Some(kv);
                    }
                }
                *left = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = match &self.inner {
            IterRepr::Pairs(it) => it.len(),
            IterRepr::Encoded { left, .. } => *left,
        };
        (n, Some(n))
    }
}

impl ExactSizeIterator for MetadataIter<'_> {}
impl core::iter::FusedIterator for MetadataIter<'_> {}

// ---------------------------------------------------------------------------------------------
// AuthRequest / ReconnectRequest
// ---------------------------------------------------------------------------------------------

/// Body of an auth request (cmd 2): `AuthRequest { string token = 1; map<string,string> metadata = 2; }`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AuthRequest<'a> {
    /// One-time password from the HTTP socket-token API
    pub token: &'a str,
    /// Connection metadata (e.g. `accept-language`)
    pub metadata: Metadata<'a>,
}

impl<'a> AuthRequest<'a> {
    /// An auth request body
    #[must_use]
    pub const fn new(token: &'a str, metadata: Metadata<'a>) -> Self {
        AuthRequest { token, metadata }
    }
}

/// Body of a reconnect request (cmd 3): `ReconnectRequest { string session_id = 1; map<string,string> metadata = 2; }`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ReconnectRequest<'a> {
    /// Session from an earlier auth or reconnect response
    pub session_id: &'a str,
    /// Connection metadata (e.g. `accept-language`)
    pub metadata: Metadata<'a>,
}

impl<'a> ReconnectRequest<'a> {
    /// A reconnect request body
    #[must_use]
    pub const fn new(session_id: &'a str, metadata: Metadata<'a>) -> Self {
        ReconnectRequest {
            session_id,
            metadata,
        }
    }
}

/// Shared decode of the two request shapes: (string 1, metadata 2)
fn decode_str_and_metadata(msg: &[u8]) -> Result<(&str, Metadata<'_>), PbError> {
    let mut buf = msg;
    let mut s = "";
    while !buf.is_empty() {
        if let (1, v) = next_field(&mut buf)? {
            s = want_str(1, v)?;
        }
    }
    Ok((s, Metadata::validate(msg, METADATA_FIELD)?))
}

fn str_and_metadata_len(s: &str, m: &Metadata<'_>) -> usize {
    str_field_len(1, s).saturating_add(m.entries_encoded_len())
}

fn encode_str_and_metadata(
    s: &str,
    m: &Metadata<'_>,
    buf: &mut [u8],
) -> Result<usize, BufferTooSmall> {
    encode_with(buf, str_and_metadata_len(s, m), |w| {
        put_str_field(w, 1, s)?;
        m.put_entries(w)
    })
}

impl<'a> Body<'a> for AuthRequest<'a> {
    fn decode(buf: &'a [u8]) -> Result<Self, PbError> {
        let (token, metadata) = decode_str_and_metadata(buf)?;
        Ok(AuthRequest { token, metadata })
    }

    fn encoded_len(&self) -> usize {
        str_and_metadata_len(self.token, &self.metadata)
    }

    fn encode(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        encode_str_and_metadata(self.token, &self.metadata, buf)
    }
}

impl<'a> Body<'a> for ReconnectRequest<'a> {
    fn decode(buf: &'a [u8]) -> Result<Self, PbError> {
        let (session_id, metadata) = decode_str_and_metadata(buf)?;
        Ok(ReconnectRequest {
            session_id,
            metadata,
        })
    }

    fn encoded_len(&self) -> usize {
        str_and_metadata_len(self.session_id, &self.metadata)
    }

    fn encode(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        encode_str_and_metadata(self.session_id, &self.metadata, buf)
    }
}

// ---------------------------------------------------------------------------------------------
// SessionGrant (AuthResponse, ReconnectResponse)
// ---------------------------------------------------------------------------------------------

/// Body of a successful auth or reconnect response:
/// `{ string session_id = 1; int64 expires = 2; uint32 limit = 3; uint32 online = 4; }`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SessionGrant<'a> {
    /// Session to present in a later reconnect
    pub session_id: &'a str,
    /// When the session expires; undocumented unit, in practice absolute Unix milliseconds
    pub expires: i64,
    /// Connection quota of the account (0 when absent)
    pub limit: u32,
    /// Connections currently open for the account (0 when absent)
    pub online: u32,
}

/// Body of a successful auth response (cmd 2)
pub type AuthResponse<'a> = SessionGrant<'a>;
/// Body of a successful reconnect response (cmd 3); same layout as [`AuthResponse`]
pub type ReconnectResponse<'a> = SessionGrant<'a>;

impl<'a> SessionGrant<'a> {
    /// The general field loop, from wherever the in-order fast path stopped
    fn decode_rest(mut self, mut buf: &'a [u8]) -> Result<Self, PbError> {
        while !buf.is_empty() {
            match next_field(&mut buf)? {
                (1, v) => self.session_id = want_str(1, v)?,
                (2, v) => self.expires = want_varint(2, v)? as i64,
                (3, v) => self.limit = want_varint(3, v)? as u32,
                (4, v) => self.online = want_varint(4, v)? as u32,
                _ => {}
            }
        }
        Ok(self)
    }
}

impl<'a> Body<'a> for SessionGrant<'a> {
    fn decode(mut buf: &'a [u8]) -> Result<Self, PbError> {
        // Fast path: the fields in declaration order with their one-byte keys (what every encoder
        // writes); each may be absent. Whatever comes next goes through the general loop, which
        // applies the rest in wire order, so a repeated field still keeps its last value.
        let mut out = SessionGrant::default();
        if let [0x0A, ref rest @ ..] = *buf {
            (out.session_id, buf) = take_str(rest, 1)?;
        }
        if let [0x10, ref rest @ ..] = *buf {
            let (v, rest) = take_varint(rest)?;
            (out.expires, buf) = (v as i64, rest);
        }
        if let [0x18, ref rest @ ..] = *buf {
            let (v, rest) = take_varint(rest)?;
            (out.limit, buf) = (v as u32, rest);
        }
        if let [0x20, ref rest @ ..] = *buf {
            let (v, rest) = take_varint(rest)?;
            (out.online, buf) = (v as u32, rest);
        }
        if buf.is_empty() {
            Ok(out)
        } else {
            out.decode_rest(buf)
        }
    }

    fn encoded_len(&self) -> usize {
        str_field_len(1, self.session_id)
            .saturating_add(varint_field_len(2, self.expires as u64))
            .saturating_add(varint_field_len(3, u64::from(self.limit)))
            .saturating_add(varint_field_len(4, u64::from(self.online)))
    }

    fn encode(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        encode_with(buf, self.encoded_len(), |w| {
            put_str_field(w, 1, self.session_id)?;
            put_varint_field(w, 2, self.expires as u64)?;
            put_varint_field(w, 3, u64::from(self.limit))?;
            put_varint_field(w, 4, u64::from(self.online))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// ErrorBody
// ---------------------------------------------------------------------------------------------

/// Body of any response with a non-zero status: `Error { uint64 code = 1; string msg = 2; }`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ErrorBody<'a> {
    /// Business error code (e.g. 301600, 403)
    pub code: u64,
    /// Human-readable message
    pub msg: &'a str,
}

impl<'a> ErrorBody<'a> {
    /// An error body
    #[must_use]
    pub const fn new(code: u64, msg: &'a str) -> Self {
        ErrorBody { code, msg }
    }
}

impl<'a> ErrorBody<'a> {
    /// The general field loop, from wherever the in-order fast path stopped
    fn decode_rest(mut self, mut buf: &'a [u8]) -> Result<Self, PbError> {
        while !buf.is_empty() {
            match next_field(&mut buf)? {
                (1, v) => self.code = want_varint(1, v)?,
                (2, v) => self.msg = want_str(2, v)?,
                _ => {}
            }
        }
        Ok(self)
    }
}

impl<'a> Body<'a> for ErrorBody<'a> {
    fn decode(mut buf: &'a [u8]) -> Result<Self, PbError> {
        // Fast path: the fields in declaration order with their one-byte keys; anything else
        // continues in the general loop (see `SessionGrant::decode`)
        let mut out = ErrorBody::default();
        if let [0x08, ref rest @ ..] = *buf {
            (out.code, buf) = take_varint(rest)?;
        }
        if let [0x12, ref rest @ ..] = *buf {
            (out.msg, buf) = take_str(rest, 2)?;
        }
        if buf.is_empty() {
            Ok(out)
        } else {
            out.decode_rest(buf)
        }
    }

    fn encoded_len(&self) -> usize {
        varint_field_len(1, self.code).saturating_add(str_field_len(2, self.msg))
    }

    fn encode(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        encode_with(buf, self.encoded_len(), |w| {
            put_varint_field(w, 1, self.code)?;
            put_str_field(w, 2, self.msg)
        })
    }
}

#[cfg(test)]
mod tests {
    extern crate alloc;

    use super::*;

    #[test]
    fn varint_len_matches_encoding() {
        for (v, n) in [
            (0u64, 1usize),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (u64::MAX, 10),
        ] {
            assert_eq!(varint_len(v), n, "{v}");
            let mut buf = [0u8; 10];
            assert_eq!(encode_varint(v, &mut buf), Ok(n));
            assert_eq!(decode_varint(&buf[..n]), Ok((v, n)));
        }
    }

    /// The helpers are crate-private; these checks moved here from tests/longport_control.rs,
    /// tests/longport_control_props.rs and the `longport_control` fuzz target
    #[test]
    fn decode_varint_helper() {
        let v = [0x80, 0xd0, 0x95, 0xff, 0xbc, 0x31, 0xff];
        assert_eq!(decode_varint(&v), Ok((1_700_000_000_000, 6)));
        assert_eq!(varint_len(1_700_000_000_000), 6);
        let mut buf = [0u8; 6];
        assert_eq!(encode_varint(1_700_000_000_000, &mut buf), Ok(6));
        assert_eq!(buf, v[..6]);
        assert_eq!(decode_varint(&[]), Err(PbError::Truncated));
    }

    /// The varint rules stated plainly: the length is up to the first byte below 0x80 among
    /// the first ten; a tenth byte above 1 overflows; the groups are little-endian
    fn varint_reference(buf: &[u8]) -> Result<(u64, usize), PbError> {
        let len = buf.iter().take(10).position(|&b| b < 0x80).map(|i| i + 1);
        if buf.get(9).is_some_and(|&b| b > 1) && len.is_none_or(|n| n == 10) {
            return Err(PbError::VarintOverflow);
        }
        let n = len.ok_or(PbError::Truncated)?;
        let groups = buf[..n].iter().rev();
        Ok((groups.fold(0, |v, &b| (v << 7) | u64::from(b & 0x7f)), n))
    }

    /// Bytes that start with a varint of any length, mostly continuation bytes
    fn varint_bytes() -> impl proptest::strategy::Strategy<Value = alloc::vec::Vec<u8>> {
        use proptest::prelude::*;
        prop::collection::vec(
            prop_oneof![3 => 0x80u8..=0xff, 1 => 0u8..0x80, 1 => 0u8..2],
            0..14,
        )
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(if cfg!(miri) { 4 } else { 2048 }))]

        #[test]
        fn decode_varint_matches_the_byte_loop(bytes in varint_bytes()) {
            proptest::prop_assert_eq!(decode_varint(&bytes), varint_reference(&bytes));
        }

        /// Ours and prost's agree on what a varint is and what it is worth; what decodes
        /// re-encodes minimally
        #[test]
        fn varints_agree_with_prost(bytes in varint_bytes()) {
            let mut theirs_buf = bytes.as_slice();
            let theirs = prost::encoding::decode_varint(&mut theirs_buf);
            match decode_varint(&bytes) {
                Ok((v, n)) => {
                    proptest::prop_assert_eq!(theirs.ok(), Some(v), "value differs from prost");
                    proptest::prop_assert_eq!(bytes.len() - theirs_buf.len(), n, "length differs");
                    let mut out = [0u8; MAX_VARINT_LEN];
                    let m = encode_varint(v, &mut out).expect("10 bytes hold any varint");
                    proptest::prop_assert_eq!(m, varint_len(v));
                    proptest::prop_assert_eq!(decode_varint(&out[..m]), Ok((v, m)));
                    proptest::prop_assert!(m <= n);
                    proptest::prop_assert!(encode_varint(v, &mut out[..m - 1]).is_err());
                }
                Err(_) => proptest::prop_assert!(theirs.is_err(), "prost reads a varint we refuse"),
            }
        }
    }

    #[test]
    fn varint_overflow_and_truncation() {
        assert_eq!(decode_varint(&[0x80; 10]), Err(PbError::VarintOverflow));
        assert_eq!(decode_varint(&[0x80; 3]), Err(PbError::Truncated));
        let mut ten = [0xffu8; 10];
        ten[9] = 0x02;
        assert_eq!(decode_varint(&ten), Err(PbError::VarintOverflow));
        ten[9] = 0x01;
        assert_eq!(decode_varint(&ten), Ok((u64::MAX, 10)));
    }

    #[test]
    fn encode_varint_refuses_short_buffer_without_writing() {
        let mut buf = [0xAAu8; 2];
        assert_eq!(
            encode_varint(300_000, &mut buf),
            Err(BufferTooSmall { required: 3 })
        );
        assert_eq!(buf, [0xAA, 0xAA]);
    }
}
