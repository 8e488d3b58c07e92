//! Chunks: the messages inside a Teeworlds 0.6 / DDNet chunk packet
//!
//! A non-control packet is the 3-byte [`Header`] (its `num_chunks` byte
//! counts the chunks), the chunks one after the other, and — on a DDNet token connection — the
//! 4 token bytes. Everything after the header, the token included, is Huffman-compressed as one
//! stream when that is strictly shorter (header flag 0x80, see [`super::huffman`]).
//!
//! ```text
//! | H0 H1 N | chunk 1 | chunk 2 | ... | token |        chunk = header (2 or 3 bytes) + data
//!           \_____ compressed together when H0 & 0x80 ______/
//! ```
//!
//! # Chunk header
//!
//! ```text
//! byte 0:  R V s9 s8 s7 s6 s5 s4      R 0x80 = this is a re-transmission, V 0x40 = vital
//! byte 1:  q9 q8 q7 q6 s3 s2 s1 s0    s = data size (10 bits), q = sequence (10 bits)
//! byte 2:  q7 q6 q5 q4 q3 q2 q1 q0    only when V is set
//! ```
//!
//! Sequence bits q7 and q6 are stored twice. [`ChunkHeader::parse`] reads the sequence as DDNet
//! 16.4 does, `(b1 & 0xF0) << 2 | b2`, i.e. the two copies are ORed: a sender's disagreeing copies
//! are accepted, not rejected. Non-vital chunks use the 2-byte form and have no sequence; the high
//! nibble of their byte 1 is ignored on input and written as zero. The R flag is informational
//! (receivers treat a resent chunk like any other); it is kept on parse and written on emit in
//! either form, although reference peers only set it together with V. The emitters write the
//! canonical form, so `parse(emit(h)) == h` for every header, and `emit(parse(bytes))` equals
//! `bytes` whenever they were canonical.
//!
//! # Reading and writing
//!
//! * [`decompress_packet`] turns a received datagram with the compression flag into the same
//!   datagram uncompressed (in a scratch buffer), so token, ack and chunk parsing see plain bytes.
//! * [`Chunks`] iterates over the chunks of a (decompressed, token-stripped) payload, borrowed.
//! * [`ChunkWriter`] appends chunks to one payload up to a byte limit ([`payload_limit`]) and
//!   reports [`PushError::Full`] instead of writing part of a chunk.
//! * [`write_packet`] adds header and token and compresses when that is shorter, as DDNet does.
//!
//! Reference: DDNet `src/engine/shared/network.cpp` (`CNetChunkHeader::Pack/Unpack`,
//! `CNetBase::SendPacket/UnpackPacket`) and `network_conn.cpp` (`QueueChunkEx`, `Flush`).

use core::fmt;

use super::huffman::{self, Encoder};
use super::wire::{
    DecodeError, Flags, Header, Token, FLAG_COMPRESSION, FLAG_CONNLESS, HEADER_LEN, MAX_PACKET_LEN,
    RESERVED_MASK, TOKEN_LEN,
};
use crate::io::BufferTooSmall;

/// Chunk header byte 0 bit: this chunk is a re-transmission
pub const CHUNK_FLAG_RESEND: u8 = 0x80;
/// Chunk header byte 0 bit: vital chunk (sequenced, acked, resent)
pub const CHUNK_FLAG_VITAL: u8 = 0x40;
/// Header size of a vital chunk
pub const VITAL_HEADER_LEN: usize = 3;
/// Header size of a non-vital chunk
pub const NON_VITAL_HEADER_LEN: usize = 2;
/// Largest chunk data (10-bit size field)
pub const MAX_CHUNK_SIZE: usize = 1023;
/// Most chunks in one packet (`num_chunks` is one byte)
pub const MAX_CHUNKS: usize = 255;
/// Chunk bytes plus token a peer accepts in one packet (`NET_MAX_PAYLOAD`); also the limit for
/// decompressed data
pub const MAX_PAYLOAD: usize = huffman::MAX_DECOMPRESSED_LEN;
/// Size of the scratch buffer [`decompress_packet`] needs: the header and [`MAX_PAYLOAD`] bytes
pub const SCRATCH_LEN: usize = HEADER_LEN + MAX_PAYLOAD;

/// Most chunk bytes one packet may carry: [`MAX_PAYLOAD`] minus the token when there is one
///
/// A datagram may be 1,400 bytes, but receivers decompress (and DDNet 16.4 copies) the payload
/// into a 1,394-byte buffer that must also hold the 4 token bytes, so a token connection carries
/// at most 1,390 chunk bytes per packet (a vanilla one 1,394). DDNet 16.4 itself flushes earlier,
/// reserving 5 header bytes per chunk (≤ 1,388 chunk bytes).
#[must_use]
pub const fn payload_limit(token: bool) -> usize {
    if token {
        MAX_PAYLOAD - TOKEN_LEN
    } else {
        MAX_PAYLOAD
    }
}

/// `dst.copy_from_slice(src)` (same lengths) without a call into `memcpy` for the short copies of
/// the chunk layer (chunk headers, tokens, small messages): up to 16 bytes as two overlapping
/// fixed-size copies on 64-bit targets; on smaller ones a plain copy, as the inlined moves cost
/// flash (about 450 bytes in the vital channel of a Cortex-M firmware)
#[inline(always)]
pub(crate) fn copy_short(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    if cfg!(not(target_pointer_width = "64")) || n > 16 || dst.len() != n {
        dst.copy_from_slice(src);
    } else if n >= 8 {
        dst[..8].copy_from_slice(&src[..8]);
        dst[n - 8..].copy_from_slice(&src[n - 8..]);
    } else if n >= 4 {
        dst[..4].copy_from_slice(&src[..4]);
        dst[n - 4..].copy_from_slice(&src[n - 4..]);
    } else if n > 0 {
        dst[0] = src[0];
        dst[n - 1] = src[n - 1];
        dst[n / 2] = src[n / 2];
    }
}

/// The two flags of a chunk
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ChunkFlags {
    /// Vital: sequenced, acked and resent until acked (0x40)
    pub vital: bool,
    /// This is a re-transmission (0x80)
    pub resend: bool,
}

impl ChunkFlags {
    /// A vital chunk sent for the first time
    pub const VITAL: ChunkFlags = ChunkFlags {
        vital: true,
        resend: false,
    };
    /// A non-vital chunk
    pub const NON_VITAL: ChunkFlags = ChunkFlags {
        vital: false,
        resend: false,
    };

    /// The flag bits of header byte 0
    #[must_use]
    pub const fn bits(self) -> u8 {
        (if self.vital { CHUNK_FLAG_VITAL } else { 0 })
            | (if self.resend { CHUNK_FLAG_RESEND } else { 0 })
    }
}

/// The 2- or 3-byte header of a chunk
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ChunkHeader {
    /// Vital / resend
    pub flags: ChunkFlags,
    /// Data size, 0..=1023 (emit keeps the low 10 bits)
    pub size: u16,
    /// Sequence number of a vital chunk, 0..=1023 (emit keeps the low 10 bits); 0 when not vital
    pub seq: u16,
}

impl ChunkHeader {
    /// Bytes on the wire: 3 for a vital chunk, 2 otherwise
    #[must_use]
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        if self.flags.vital {
            VITAL_HEADER_LEN
        } else {
            NON_VITAL_HEADER_LEN
        }
    }

    /// Read a chunk header at the start of `buf`; returns it and its length (2 or 3)
    ///
    /// # Errors
    /// [`ChunkError::TruncatedHeader`] (with `index` 0 and `offset` 0) when `buf` is shorter than
    /// the header.
    #[inline]
    pub fn parse(buf: &[u8]) -> Result<(ChunkHeader, usize), ChunkError> {
        let truncated = ChunkError::TruncatedHeader {
            index: 0,
            offset: 0,
        };
        let (&b0, rest) = buf.split_first().ok_or(truncated)?;
        let &b1 = rest.first().ok_or(truncated)?;
        let flags = ChunkFlags {
            vital: b0 & CHUNK_FLAG_VITAL != 0,
            resend: b0 & CHUNK_FLAG_RESEND != 0,
        };
        let size = u16::from(b0 & 0x3F) << 4 | u16::from(b1 & 0x0F);
        if flags.vital {
            let &b2 = rest.get(1).ok_or(truncated)?;
            let seq = u16::from(b1 & 0xF0) << 2 | u16::from(b2);
            Ok((ChunkHeader { flags, size, seq }, VITAL_HEADER_LEN))
        } else {
            Ok((
                ChunkHeader {
                    flags,
                    size,
                    seq: 0,
                },
                NON_VITAL_HEADER_LEN,
            ))
        }
    }

    /// The header bytes (3 when vital, else 2 and a zero third byte), size and sequence reduced to
    /// 10 bits
    #[must_use]
    #[inline]
    pub const fn to_bytes(&self) -> [u8; 3] {
        let size = self.size & 0x3FF;
        let b0 = self.flags.bits() | (size >> 4) as u8;
        if self.flags.vital {
            let seq = self.seq & 0x3FF;
            [
                b0,
                (size & 0x0F) as u8 | ((seq >> 2) & 0xF0) as u8,
                (seq & 0xFF) as u8,
            ]
        } else {
            [b0, (size & 0x0F) as u8, 0]
        }
    }

    /// Write the header; returns its length
    ///
    /// # Errors
    /// [`BufferTooSmall`]; nothing is written.
    #[inline]
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let n = self.buffer_len();
        let dst = buf.get_mut(..n).ok_or(BufferTooSmall { required: n })?;
        dst.copy_from_slice(&self.to_bytes()[..n]);
        Ok(n)
    }
}

/// One chunk: flags, sequence (vital only) and data
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Chunk<'a> {
    /// Vital / resend
    pub flags: ChunkFlags,
    /// Sequence number of a vital chunk (0..=1023); 0 when not vital
    pub seq: u16,
    /// The data (at most [`MAX_CHUNK_SIZE`] bytes on emit)
    pub data: &'a [u8],
}

impl<'a> Chunk<'a> {
    /// A non-vital chunk
    #[must_use]
    pub const fn non_vital(data: &'a [u8]) -> Self {
        Chunk {
            flags: ChunkFlags::NON_VITAL,
            seq: 0,
            data,
        }
    }

    /// A vital chunk with sequence `seq`, sent for the first time
    #[must_use]
    pub const fn vital(seq: u16, data: &'a [u8]) -> Self {
        Chunk {
            flags: ChunkFlags::VITAL,
            seq,
            data,
        }
    }

    /// The header this chunk is written with (size = data length, at most 1023)
    #[must_use]
    pub const fn header(&self) -> ChunkHeader {
        ChunkHeader {
            flags: self.flags,
            size: if self.data.len() > MAX_CHUNK_SIZE {
                MAX_CHUNK_SIZE as u16
            } else {
                self.data.len() as u16
            },
            seq: if self.flags.vital {
                self.seq & 0x3FF
            } else {
                0
            },
        }
    }

    /// Bytes on the wire: header and data
    #[must_use]
    pub const fn buffer_len(&self) -> usize {
        self.header().buffer_len() + self.data.len()
    }

    /// Read one chunk at the start of `buf`; returns it and the bytes it took
    ///
    /// # Errors
    /// [`ChunkError::TruncatedHeader`] / [`ChunkError::TruncatedData`] (`index` 0, offsets relative
    /// to `buf`).
    pub fn parse(buf: &'a [u8]) -> Result<(Chunk<'a>, usize), ChunkError> {
        let (h, hlen) = ChunkHeader::parse(buf)?;
        let size = usize::from(h.size);
        let data = buf
            .get(hlen..hlen + size)
            .ok_or(ChunkError::TruncatedData {
                index: 0,
                offset: 0,
                size: h.size,
                available: buf.len() - hlen,
            })?;
        Ok((
            Chunk {
                flags: h.flags,
                seq: h.seq,
                data,
            },
            hlen + size,
        ))
    }

    /// Write the chunk; returns the bytes written
    ///
    /// # Errors
    /// [`EmitError::TooLarge`] for more than 1023 data bytes, [`EmitError::BufferTooSmall`];
    /// nothing is written.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        if self.data.len() > MAX_CHUNK_SIZE {
            return Err(EmitError::TooLarge {
                size: self.data.len(),
            });
        }
        let h = self.header();
        let hlen = h.buffer_len();
        let len = hlen + self.data.len();
        let dst = buf
            .get_mut(..len)
            .ok_or(EmitError::BufferTooSmall { required: len })?;
        dst[..hlen].copy_from_slice(&h.to_bytes()[..hlen]);
        dst[hlen..].copy_from_slice(self.data);
        Ok(len)
    }
}

/// Why a chunk could not be read
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ChunkError {
    /// The payload ended inside (or right before) the header of chunk `index` (0-based), which
    /// starts at byte `offset` of the payload
    TruncatedHeader {
        /// Index of the chunk in the packet
        index: u8,
        /// Where its header starts
        offset: usize,
    },
    /// The data of chunk `index` runs past the end of the payload
    TruncatedData {
        /// Index of the chunk in the packet
        index: u8,
        /// Where its header starts
        offset: usize,
        /// Its size field
        size: u16,
        /// Bytes left after its header
        available: usize,
    },
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkError::TruncatedHeader { index, offset } => {
                write!(f, "chunk {index} header truncated at byte {offset}")
            }
            ChunkError::TruncatedData {
                index,
                offset,
                size,
                available,
            } => write!(
                f,
                "chunk {index} at byte {offset}: {size} data bytes announced, {available} left"
            ),
        }
    }
}

impl core::error::Error for ChunkError {}

/// Why a chunk could not be written
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum EmitError {
    /// More than [`MAX_CHUNK_SIZE`] data bytes (the size field has 10 bits)
    TooLarge {
        /// The data length
        size: usize,
    },
    /// The buffer is too small
    BufferTooSmall {
        /// Bytes needed
        required: usize,
    },
}

impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmitError::TooLarge { size } => {
                write!(f, "chunk of {size} bytes (max {MAX_CHUNK_SIZE})")
            }
            EmitError::BufferTooSmall { required } => {
                write!(f, "buffer too small ({required} bytes needed)")
            }
        }
    }
}

impl core::error::Error for EmitError {}

/// The chunks of a payload, borrowed: yields `Ok(chunk)` for each of the `num_chunks` chunks,
/// then `None`
///
/// `payload` is what follows the packet header after decompression, without the token. As in
/// DDNet, bytes after the last announced chunk are ignored ([`Chunks::trailing`]), and a chunk
/// whose header or data runs past the end ends the iteration: the iterator yields one
/// `Err(`[`ChunkError`]`)` and then `None` (earlier chunks stay valid).
#[derive(Debug, Clone)]
pub struct Chunks<'a> {
    payload: &'a [u8],
    pos: usize,
    /// `num_chunks`
    count: u8,
    left: u8,
}

#[cfg(feature = "defmt")]
impl defmt::Format for Chunks<'_> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "Chunks {{ offset: {}, left: {} }}", self.pos, self.left);
    }
}

impl<'a> Chunks<'a> {
    /// The chunks of `payload`, `num_chunks` of them (the packet header's byte 2)
    #[must_use]
    pub const fn new(payload: &'a [u8], num_chunks: u8) -> Self {
        Chunks {
            payload,
            pos: 0,
            count: num_chunks,
            left: num_chunks,
        }
    }

    /// The bytes after the last announced chunk (complete once the iterator returned `None`
    /// without an error)
    #[must_use]
    pub fn trailing(&self) -> &'a [u8] {
        self.payload.get(self.pos..).unwrap_or(&[])
    }
}

impl<'a> Iterator for Chunks<'a> {
    type Item = Result<Chunk<'a>, ChunkError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        // a whole chunk with at least 3 bytes left from its start, read in place
        if let Some(rest) = self.payload.get(self.pos..) {
            if let Some(&[b0, b1, b2]) = rest.first_chunk::<3>() {
                let vital = b0 & CHUNK_FLAG_VITAL != 0;
                let hlen = if vital {
                    VITAL_HEADER_LEN
                } else {
                    NON_VITAL_HEADER_LEN
                };
                let size = usize::from(b0 & 0x3F) << 4 | usize::from(b1 & 0x0F);
                if let Some(data) = rest.get(hlen..hlen + size) {
                    self.pos += hlen + size;
                    self.left -= 1;
                    return Some(Ok(Chunk {
                        flags: ChunkFlags {
                            vital,
                            resend: b0 & CHUNK_FLAG_RESEND != 0,
                        },
                        seq: if vital {
                            u16::from(b1 & 0xF0) << 2 | u16::from(b2)
                        } else {
                            0
                        },
                        data,
                    }));
                }
            }
        }
        self.next_near_end()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(usize::from(self.left)))
    }
}

impl<'a> Chunks<'a> {
    /// [`Iterator::next`] for a chunk that ends the payload or runs past it
    #[cold]
    #[inline(never)]
    fn next_near_end(&mut self) -> Option<<Self as Iterator>::Item> {
        let rest = self.payload.get(self.pos..).unwrap_or(&[]);
        let index = self.count.wrapping_sub(self.left);
        let item = match Chunk::parse(rest) {
            Ok((chunk, n)) => {
                self.pos += n;
                self.left -= 1;
                return Some(Ok(chunk));
            }
            Err(ChunkError::TruncatedHeader { .. }) => ChunkError::TruncatedHeader {
                index,
                offset: self.pos,
            },
            Err(ChunkError::TruncatedData {
                size, available, ..
            }) => ChunkError::TruncatedData {
                index,
                offset: self.pos,
                size,
                available,
            },
        };
        self.left = 0;
        Some(Err(item))
    }
}

impl core::iter::FusedIterator for Chunks<'_> {}

/// Why a chunk was not appended to a [`ChunkWriter`]; nothing was written
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum PushError {
    /// The chunk would take the payload over its limit: send this packet, then push it into the
    /// next one
    Full {
        /// Bytes the chunk needs (header and data)
        required: usize,
        /// Bytes left under the limit
        available: usize,
    },
    /// The packet already holds [`MAX_CHUNKS`] chunks
    TooManyChunks,
    /// More than [`MAX_CHUNK_SIZE`] data bytes: no packet can carry it
    TooLarge {
        /// The data length
        size: usize,
    },
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Full {
                required,
                available,
            } => write!(f, "packet full ({required} bytes needed, {available} left)"),
            PushError::TooManyChunks => write!(f, "packet full ({MAX_CHUNKS} chunks)"),
            PushError::TooLarge { size } => {
                write!(f, "chunk of {size} bytes (max {MAX_CHUNK_SIZE})")
            }
        }
    }
}

impl core::error::Error for PushError {}

/// Appends chunks into one packet payload, up to a byte limit
///
/// The limit is normally [`payload_limit`] (1,390 on a token connection); it is capped at the
/// buffer's length. A chunk that does not fit entirely is refused with [`PushError::Full`] and
/// nothing of it is written.
///
/// ```
/// use tether_net::game::chunk::{payload_limit, Chunk, ChunkWriter, Chunks, PushError};
///
/// let mut buf = [0u8; 1400];
/// let mut w = ChunkWriter::new(&mut buf, payload_limit(true));
/// w.push(&Chunk::vital(1, &[0x27, 0x00])).unwrap(); // REQUEST_MAP_DATA(0), seq 1
/// w.push(&Chunk::non_vital(&[0x2d])).unwrap();
/// w.push(&Chunk::non_vital(&[0; 1000])).unwrap();
/// assert_eq!(
///     w.push(&Chunk::non_vital(&[0; 1000])),
///     Err(PushError::Full { required: 1002, available: 1390 - 5 - 3 - 1002 })
/// );
/// assert_eq!(w.num_chunks(), 3);
/// let mut chunks = Chunks::new(w.as_bytes(), w.num_chunks());
/// assert_eq!(chunks.next(), Some(Ok(Chunk::vital(1, &[0x27, 0x00]))));
/// ```
#[derive(Debug)]
pub struct ChunkWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
    limit: usize,
    count: u8,
}

#[cfg(feature = "defmt")]
impl defmt::Format for ChunkWriter<'_> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "ChunkWriter {{ len: {}, chunks: {}, limit: {} }}",
            self.len,
            self.count,
            self.limit
        );
    }
}

impl<'b> ChunkWriter<'b> {
    /// A writer filling `buf` up to `limit` bytes (at most `buf.len()`)
    #[must_use]
    pub fn new(buf: &'b mut [u8], limit: usize) -> Self {
        let limit = limit.min(buf.len());
        ChunkWriter {
            buf,
            len: 0,
            limit,
            count: 0,
        }
    }

    /// Bytes written
    #[must_use]
    pub const fn len(&self) -> usize {
        self.len
    }

    /// True when no chunk was written
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Number of chunks written (the packet header's `num_chunks`)
    #[must_use]
    pub const fn num_chunks(&self) -> u8 {
        self.count
    }

    /// Bytes left under the limit
    #[must_use]
    pub const fn remaining(&self) -> usize {
        self.limit - self.len
    }

    /// True when a chunk of `data_len` bytes with these flags would be accepted
    #[must_use]
    pub fn fits(&self, flags: ChunkFlags, data_len: usize) -> bool {
        self.check(flags, data_len).is_ok()
    }

    fn check(&self, flags: ChunkFlags, data_len: usize) -> Result<usize, PushError> {
        if data_len > MAX_CHUNK_SIZE {
            return Err(PushError::TooLarge { size: data_len });
        }
        if usize::from(self.count) >= MAX_CHUNKS {
            return Err(PushError::TooManyChunks);
        }
        let hlen = if flags.vital {
            VITAL_HEADER_LEN
        } else {
            NON_VITAL_HEADER_LEN
        };
        let required = hlen + data_len;
        if required > self.remaining() {
            return Err(PushError::Full {
                required,
                available: self.remaining(),
            });
        }
        Ok(hlen)
    }

    /// Append a chunk
    ///
    /// # Errors
    /// [`PushError`]; nothing is written.
    #[inline]
    pub fn push(&mut self, chunk: &Chunk<'_>) -> Result<(), PushError> {
        let slot = self.reserve(chunk.flags, chunk.seq, chunk.data.len())?;
        copy_short(slot, chunk.data);
        Ok(())
    }

    /// Append a chunk header for `size` data bytes and return the data slot for the caller to fill
    /// (a message can be packed straight into the packet)
    ///
    /// # Errors
    /// [`PushError`]; nothing is written.
    #[inline]
    pub fn reserve(
        &mut self,
        flags: ChunkFlags,
        seq: u16,
        size: usize,
    ) -> Result<&mut [u8], PushError> {
        let hlen = self.check(flags, size)?;
        let h = ChunkHeader {
            flags,
            size: size as u16,
            seq: if flags.vital { seq & 0x3FF } else { 0 },
        };
        let start = self.len;
        let end = start + hlen + size;
        self.len = end;
        self.count += 1;
        let dst = &mut self.buf[start..end];
        let bytes = h.to_bytes();
        if flags.vital {
            dst[..VITAL_HEADER_LEN].copy_from_slice(&bytes);
        } else {
            dst[..NON_VITAL_HEADER_LEN].copy_from_slice(&bytes[..NON_VITAL_HEADER_LEN]);
        }
        Ok(&mut dst[hlen..])
    }

    /// The payload written so far
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Forget every chunk written (the limit stays)
    pub fn clear(&mut self) {
        self.len = 0;
        self.count = 0;
    }
}

/// Why [`decompress_packet`] or [`write_packet`] failed
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum PacketError {
    /// Not a 0.6 connection-oriented packet (too short, too long, connless, reserved bits)
    Header(DecodeError),
    /// The compressed payload does not decode (truncated, or longer than [`MAX_PAYLOAD`])
    Huffman(huffman::DecompressError),
    /// Chunks and token exceed [`MAX_PAYLOAD`]: no peer would accept the packet
    TooLong {
        /// Chunk bytes plus token
        len: usize,
    },
    /// The output buffer is too small
    BufferTooSmall {
        /// Bytes needed (the uncompressed packet)
        required: usize,
    },
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacketError::Header(e) => write!(f, "{e}"),
            PacketError::Huffman(e) => write!(f, "{e}"),
            PacketError::TooLong { len } => {
                write!(f, "payload of {len} bytes (max {MAX_PAYLOAD})")
            }
            PacketError::BufferTooSmall { required } => {
                write!(f, "buffer too small ({required} bytes needed)")
            }
        }
    }
}

impl core::error::Error for PacketError {}

/// The datagram with its payload decompressed: `datagram` itself when the compression flag is
/// clear, else the header (flag cleared) and the decoded payload written into `scratch`
///
/// Run this before any token, ack or chunk processing: a compressed packet's token is inside the
/// compressed data (DDNet appends it before compressing), so only the decompressed bytes can be
/// checked. The result can go to [`super::wire::parse`] like any uncompressed datagram — chunk
/// packets and the compressed CLOSE a vanilla 0.6.4 peer may send alike. `scratch` should hold
/// [`SCRATCH_LEN`] bytes; the decoded payload is limited to `scratch.len() - 3` and to
/// [`MAX_PAYLOAD`] bytes.
///
/// # Errors
/// [`PacketError::Header`] for a datagram that is no 0.6 packet (shorter than 3 or longer than
/// 1,400 bytes, connless, reserved bits); [`PacketError::Huffman`] when the payload does not
/// decode within the limit (DDNet drops such packets).
pub fn decompress_packet<'a>(
    datagram: &'a [u8],
    scratch: &'a mut [u8],
) -> Result<&'a [u8], PacketError> {
    let [b0, b1, b2] = match datagram.first_chunk::<HEADER_LEN>() {
        Some(h) => *h,
        None => {
            return Err(PacketError::Header(DecodeError::TooShort {
                len: datagram.len(),
            }))
        }
    };
    if datagram.len() > MAX_PACKET_LEN {
        return Err(PacketError::Header(DecodeError::TooLong {
            len: datagram.len(),
        }));
    }
    if b0 & FLAG_CONNLESS != 0 {
        return Err(PacketError::Header(DecodeError::Connless));
    }
    if b0 & RESERVED_MASK != 0 {
        return Err(PacketError::Header(DecodeError::ReservedBits(
            b0 & RESERVED_MASK,
        )));
    }
    if b0 & FLAG_COMPRESSION == 0 {
        return Ok(datagram);
    }
    let limit = scratch.len().min(SCRATCH_LEN);
    let Some((head, body)) = scratch
        .get_mut(..limit)
        .and_then(|s| s.split_first_chunk_mut::<HEADER_LEN>())
    else {
        return Err(PacketError::BufferTooSmall {
            required: SCRATCH_LEN,
        });
    };
    *head = [b0 & !FLAG_COMPRESSION, b1, b2];
    let n = huffman::decompress(&datagram[HEADER_LEN..], body).map_err(PacketError::Huffman)?;
    Ok(&scratch[..HEADER_LEN + n])
}

/// Payloads up to this long are measured before they are compressed: small packets (a vital
/// chunk or two and the token) rarely get shorter, and summing code lengths is cheaper than
/// encoding
const SHORT_PAYLOAD: usize = 64;

/// True when the Huffman form of `chunks | token` is strictly shorter than they are
fn compresses(chunks: &[u8], token: &[u8]) -> bool {
    let bits: usize = chunks
        .iter()
        .chain(token)
        .map(|&b| huffman::code_len(u16::from(b)) as usize)
        .sum::<usize>()
        + huffman::MAX_CODE_LEN as usize;
    // the DDNet 16.4 form: bits / 8 + 1 bytes
    bits / 8 + 1 < chunks.len() + token.len()
}

/// Write a chunk packet: the header (`num_chunks`, flags, ack), `chunks`, the token; compressed
/// when `compress` is set and the Huffman form of `chunks | token` is strictly shorter (the
/// header's compression flag is then set, else cleared). Returns the datagram length.
///
/// DDNet 16.4 compresses every chunk packet this way and never compresses control packets.
/// `header.flags.control` is ignored (written clear). The Huffman output is bounded by the raw
/// size, so an incompressible payload costs one failed attempt, not a second buffer.
///
/// # Errors
/// [`PacketError::TooLong`] when `chunks` and token exceed [`MAX_PAYLOAD`];
/// [`PacketError::BufferTooSmall`] when `out` cannot hold the uncompressed packet. Nothing is
/// written on error.
pub fn write_packet(
    header: Header,
    chunks: &[u8],
    token: Option<Token>,
    compress: bool,
    out: &mut [u8],
) -> Result<usize, PacketError> {
    let token_bytes = token.as_ref().map_or(&[][..], |t| &t.0[..]);
    let raw = chunks.len() + token_bytes.len();
    if raw > MAX_PAYLOAD {
        return Err(PacketError::TooLong { len: raw });
    }
    let Some(dst) = out.get_mut(..HEADER_LEN + raw) else {
        return Err(PacketError::BufferTooSmall {
            required: HEADER_LEN + raw,
        });
    };
    let (head, body) = dst.split_at_mut(HEADER_LEN);
    let mut flags = Flags {
        control: false,
        ..header.flags
    };
    let mut len = raw;
    flags.compression = false;
    if compress && raw > 1 && (raw > SHORT_PAYLOAD || compresses(chunks, token_bytes)) {
        let mut e = Encoder::new(&mut body[..raw - 1]);
        let packed = e
            .push(chunks)
            .and_then(|()| e.push(token_bytes))
            .and_then(|()| e.finish());
        if let Ok(n) = packed {
            flags.compression = true;
            len = n;
        }
    }
    if !flags.compression {
        let (data, tail) = body.split_at_mut(chunks.len());
        copy_short(data, chunks);
        if let (Some(t), Some(dst)) = (token, tail.first_chunk_mut::<TOKEN_LEN>()) {
            *dst = t.0;
        }
    }
    let h = Header { flags, ..header };
    head.copy_from_slice(&h.to_bytes());
    Ok(HEADER_LEN + len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vital(size: u16, seq: u16) -> ChunkHeader {
        ChunkHeader {
            flags: ChunkFlags::VITAL,
            size,
            seq,
        }
    }

    #[test]
    fn header_vectors() {
        let resend_vital = ChunkFlags {
            vital: true,
            resend: true,
        };
        let cases: [(&[u8], ChunkHeader); 13] = [
            (&[0x41, 0x07, 0x01], vital(23, 1)),
            (&[0x41, 0x02, 0x01], vital(18, 1)),
            (&[0x78, 0x0a, 0x05], vital(906, 5)),
            (
                &[0xf8, 0x0a, 0x05],
                ChunkHeader {
                    flags: resend_vital,
                    ..vital(906, 5)
                },
            ),
            (&[0x56, 0x22, 0xbd], vital(354, 189)),
            (&[0x40, 0x22, 0xbe], vital(2, 190)),
            (
                &[0xc0, 0x22, 0xbe],
                ChunkHeader {
                    flags: resend_vital,
                    ..vital(2, 190)
                },
            ),
            (&[0x40, 0x31, 0xc0], vital(1, 192)),
            (
                &[0x00, 0x04],
                ChunkHeader {
                    flags: ChunkFlags::NON_VITAL,
                    size: 4,
                    seq: 0,
                },
            ),
            (
                &[0x02, 0x05],
                ChunkHeader {
                    flags: ChunkFlags::NON_VITAL,
                    size: 37,
                    seq: 0,
                },
            ),
            (
                &[0x01, 0x00],
                ChunkHeader {
                    flags: ChunkFlags::NON_VITAL,
                    size: 16,
                    seq: 0,
                },
            ),
            (&[0x40, 0xf1, 0xff], vital(1, 1023)),
            (
                &[0xc0, 0x15, 0x40],
                ChunkHeader {
                    flags: resend_vital,
                    ..vital(5, 64)
                },
            ),
        ];
        for (bytes, h) in cases {
            assert_eq!(
                ChunkHeader::parse(bytes),
                Ok((h, bytes.len())),
                "{bytes:02x?}"
            );
            let mut out = [0u8; 3];
            assert_eq!(h.emit(&mut out), Ok(bytes.len()));
            assert_eq!(&out[..bytes.len()], bytes);
        }
        let big = ChunkHeader {
            flags: resend_vital,
            size: 1023,
            seq: 256,
        };
        assert_eq!(big.to_bytes(), [0xff, 0x4f, 0x00]);
    }

    #[test]
    fn a_chunks_header_holds_its_length_and_sequence_cut_to_their_fields() {
        let data = [0u8; 2000];
        let h = Chunk::vital(5000, &data).header();
        assert_eq!((h.size, h.seq), (1023, 5000 & 0x3FF));
        let h = Chunk::vital(0x3FF, &data[..5]).header();
        assert_eq!((h.flags, h.size, h.seq), (ChunkFlags::VITAL, 5, 1023));
        let h = Chunk::non_vital(&data[..1024]).header();
        assert_eq!((h.flags, h.size, h.seq), (ChunkFlags::NON_VITAL, 1023, 0));
        assert_eq!(Chunk::non_vital(&data[..1023]).header().size, 1023);
        assert_eq!(Chunk::vital(7, &data[..1023]).buffer_len(), 3 + 1023);
    }

    #[test]
    fn a_chunk_is_written_as_it_is_read_and_refused_whole() {
        let data = [0xab_u8; 300];
        let resent = Chunk {
            flags: ChunkFlags {
                vital: true,
                resend: true,
            },
            seq: 5,
            data: &data[..1],
        };
        for c in [
            Chunk::vital(1023, &data),
            Chunk::non_vital(&data[..16]),
            resent,
        ] {
            let mut buf = [0u8; 400];
            let n = c.emit(&mut buf).unwrap();
            assert_eq!(n, c.buffer_len());
            assert_eq!(Chunk::parse(&buf[..n]), Ok((c, n)));
            // one byte short: an error with the exact size, nothing written
            let mut short = [0x55_u8; 400];
            assert_eq!(
                c.emit(&mut short[..n - 1]),
                Err(EmitError::BufferTooSmall { required: n })
            );
            assert!(short.iter().all(|&b| b == 0x55));
        }
        let big = [0u8; 1024];
        let mut buf = [0u8; 1100];
        assert_eq!(
            Chunk::non_vital(&big).emit(&mut buf),
            Err(EmitError::TooLarge { size: 1024 })
        );
        assert_eq!(Chunk::non_vital(&big[..1023]).emit(&mut buf), Ok(2 + 1023));
        assert_eq!(&buf[..2], &[0x3f, 0x0f]);
    }

    #[test]
    fn chunk_error_texts_are_what_a_log_shows() {
        extern crate std;
        use std::string::ToString;
        let cases = [
            (
                ChunkError::TruncatedHeader {
                    index: 2,
                    offset: 9,
                }
                .to_string(),
                "chunk 2 header truncated at byte 9",
            ),
            (
                ChunkError::TruncatedData {
                    index: 0,
                    offset: 3,
                    size: 906,
                    available: 40,
                }
                .to_string(),
                "chunk 0 at byte 3: 906 data bytes announced, 40 left",
            ),
            (
                EmitError::TooLarge { size: 1024 }.to_string(),
                "chunk of 1024 bytes (max 1023)",
            ),
            (
                EmitError::BufferTooSmall { required: 12 }.to_string(),
                "buffer too small (12 bytes needed)",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn the_chunk_iterator_bounds_its_length_by_the_chunks_left() {
        // two announced, one there: at most 2, then at most 1, then none
        let payload = [0x00, 0x01, 0xaa];
        let mut chunks = Chunks::new(&payload, 2);
        assert_eq!(chunks.size_hint(), (0, Some(2)));
        assert!(matches!(chunks.next(), Some(Ok(_))));
        assert_eq!(chunks.size_hint(), (0, Some(1)));
        assert!(matches!(chunks.next(), Some(Err(_))));
        assert_eq!(chunks.size_hint(), (0, Some(0)));
        assert_eq!(chunks.next(), None);
    }

    #[test]
    fn overlapping_sequence_bits_are_ored() {
        // byte 1 says q7q6 = 01, byte 2 says q7q6 = 10: DDNet ORs them (seq 0xC0 | 0x100)
        let (h, _) = ChunkHeader::parse(&[0x40, 0x51, 0x80]).unwrap();
        assert_eq!(h.seq, 0x100 | 0x40 | 0x80);
        // a non-vital header's high nibble of byte 1 is ignored
        let (h, n) = ChunkHeader::parse(&[0x00, 0xf4]).unwrap();
        assert_eq!((h.seq, h.size, n), (0, 4, 2));
    }

    #[test]
    fn copy_short_copies_every_length() {
        let src: [u8; 40] = core::array::from_fn(|i| i as u8 + 1);
        for n in 0..=40 {
            let mut dst = [0u8; 40];
            copy_short(&mut dst[..n], &src[..n]);
            assert_eq!(dst[..n], src[..n], "length {n}");
            assert!(dst[n..].iter().all(|&b| b == 0), "length {n}");
        }
    }

    #[test]
    fn truncated_headers() {
        for bytes in [&[][..], &[0x00], &[0x40, 0x00]] {
            assert!(matches!(
                ChunkHeader::parse(bytes),
                Err(ChunkError::TruncatedHeader { .. })
            ));
        }
    }
}
