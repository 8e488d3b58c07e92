//! Connectionless packets: server-info requests and answers (Teeworlds 0.6 / DDNet 16.4)
//!
//! A connectionless datagram has the connless bit 0x20 in its first byte and a 6-byte header in
//! one of two forms, then a payload that starts with an 8-byte type (`FF FF FF FF` + 4 letters):
//!
//! ```text
//! vanilla 0.6   FF FF FF FF FF FF | payload
//! DDNet "xe"    78 65 x0 x1 x2 x3 | payload     ("xe" + 4 extra bytes; x0 x1 carry the info token)
//! ```
//!
//! DDNet 16.4 treats a datagram as connectionless when byte 0 has bit 0x20; a first byte whose
//! low two bits are `01` is the Teeworlds 0.7 form (rejected here, [`ConnlessError::SixUp`]);
//! otherwise bytes 0–1 = `78 65` mark the "xe" form and anything else the vanilla form (servers
//! always answer with six `FF`).
//!
//! | request | payload | answer |
//! | --- | --- | --- |
//! | info | `FF FF FF FF "gie3"` + 1 token byte | `"inf3"` ([`InfoKind::Vanilla`]) |
//! | extended info | the same with header `78 65 t2 t1 00 00` (token = t0 + t1 << 8 + t2 << 16) | `"iext"` ([`InfoKind::Extended`]), then `"iex+"` ([`ServerInfoMore`]) |
//! | 64-player legacy | `FF FF FF FF "fstd"` + 1 token byte | `"dtsf"` ([`InfoKind::Legacy64`]) |
//!
//! Answers are NUL-terminated strings; the numeric fields are decimal text (a CRC as the
//! decimal of its `i32`), except the client offset of `dtsf`, which is a packed int
//! ([`super::packer`]). Per client an answer lists name, clan, country, score and "is player"
//! (the extended forms add an empty reserved string). DDNet 16.4 lists at most 16 clients in `inf3`
//! and sends a server's players an unsolicited `inf3` with token −1 and no client list when its
//! name or map changes, so a client should accept connectionless packets on its game socket.
//!
//! Reference: DDNet `src/engine/shared/network.cpp` (`UnpackPacket`), `src/engine/server/server.cpp`
//! (`SendServerInfo`), `src/engine/client/serverbrowser.cpp`, `src/engine/shared/protocol.h`.

use core::fmt;

use super::packer::{Packer, Str, Unpacker};
use super::wire::{FLAG_CONNLESS, MAX_PACKET_LEN};
use crate::io::BufferTooSmall;

/// Size of a connectionless header
pub const CONNLESS_HEADER_LEN: usize = 6;
/// The vanilla header (and the one servers answer with)
pub const VANILLA_HEADER: [u8; CONNLESS_HEADER_LEN] = [0xFF; CONNLESS_HEADER_LEN];
/// First two bytes of the DDNet extended header
pub const EXTENDED_MAGIC: [u8; 2] = *b"xe";
/// Size of the packet type at the start of the payload
pub const TYPE_LEN: usize = 8;

/// Packet type: info request
pub const TYPE_GETINFO: [u8; TYPE_LEN] = *b"\xff\xff\xff\xffgie3";
/// Packet type: info answer (0.6)
pub const TYPE_INFO: [u8; TYPE_LEN] = *b"\xff\xff\xff\xffinf3";
/// Packet type: 64-player legacy info request
pub const TYPE_GETINFO_64: [u8; TYPE_LEN] = *b"\xff\xff\xff\xfffstd";
/// Packet type: 64-player legacy info answer
pub const TYPE_INFO_64: [u8; TYPE_LEN] = *b"\xff\xff\xff\xffdtsf";
/// Packet type: extended info answer, first packet
pub const TYPE_INFO_EXTENDED: [u8; TYPE_LEN] = *b"\xff\xff\xff\xffiext";
/// Packet type: extended info answer, further packets
pub const TYPE_INFO_EXTENDED_MORE: [u8; TYPE_LEN] = *b"\xff\xff\xff\xffiex+";

/// Why a datagram is not a usable connectionless packet
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ConnlessError {
    /// Shorter than the 6-byte header
    TooShort {
        /// Datagram length
        len: usize,
    },
    /// Longer than 1,400 bytes
    TooLong {
        /// Datagram length
        len: usize,
    },
    /// Bit 0x20 of byte 0 is clear: a connection-oriented packet
    NotConnless,
    /// The Teeworlds 0.7 connless form (byte 0 low bits `01`)
    SixUp,
    /// A field is missing or a string has no NUL
    Truncated,
    /// A numeric field is not a decimal number in range
    BadNumber,
    /// A packet type this codec does not handle, or too short a request
    UnexpectedType,
}

impl fmt::Display for ConnlessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnlessError::TooShort { len } => write!(f, "connless packet too short ({len} bytes)"),
            ConnlessError::TooLong { len } => write!(f, "connless packet too long ({len} bytes)"),
            ConnlessError::NotConnless => f.write_str("not a connectionless packet"),
            ConnlessError::SixUp => f.write_str("0.7 connectionless packet"),
            ConnlessError::Truncated => f.write_str("connless packet truncated"),
            ConnlessError::BadNumber => f.write_str("bad number in server info"),
            ConnlessError::UnexpectedType => f.write_str("unexpected connless packet type"),
        }
    }
}

impl core::error::Error for ConnlessError {}

/// The 6-byte header of a connectionless packet
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConnlessHeader {
    /// `FF FF FF FF FF FF` (on input: any header with the connless bit that is not "xe")
    Vanilla,
    /// `78 65` + these 4 bytes (DDNet)
    Extended([u8; 4]),
}

impl ConnlessHeader {
    /// The 6 header bytes
    #[must_use]
    pub const fn to_bytes(&self) -> [u8; CONNLESS_HEADER_LEN] {
        match *self {
            ConnlessHeader::Vanilla => VANILLA_HEADER,
            ConnlessHeader::Extended([a, b, c, d]) => {
                [EXTENDED_MAGIC[0], EXTENDED_MAGIC[1], a, b, c, d]
            }
        }
    }
}

/// A connectionless datagram: header and payload (borrowed)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ConnlessPacket<'a> {
    /// The header form
    pub header: ConnlessHeader,
    /// Everything after the header
    pub payload: &'a [u8],
}

impl<'a> ConnlessPacket<'a> {
    /// Split a datagram into header and payload
    ///
    /// # Errors
    /// [`ConnlessError::TooShort`], [`ConnlessError::TooLong`], [`ConnlessError::NotConnless`],
    /// [`ConnlessError::SixUp`].
    pub fn parse(datagram: &'a [u8]) -> Result<Self, ConnlessError> {
        let len = datagram.len();
        let Some((head, payload)) = datagram.split_first_chunk::<CONNLESS_HEADER_LEN>() else {
            return Err(ConnlessError::TooShort { len });
        };
        if len > MAX_PACKET_LEN {
            return Err(ConnlessError::TooLong { len });
        }
        if head[0] & FLAG_CONNLESS == 0 {
            return Err(ConnlessError::NotConnless);
        }
        if head[0] & 0x03 == 0x01 {
            return Err(ConnlessError::SixUp);
        }
        let header = match *head {
            [b'x', b'e', a, b, c, d] => ConnlessHeader::Extended([a, b, c, d]),
            _ => ConnlessHeader::Vanilla,
        };
        Ok(ConnlessPacket { header, payload })
    }

    /// The 8-byte packet type at the start of the payload, if there is one
    #[must_use]
    pub fn packet_type(&self) -> Option<[u8; TYPE_LEN]> {
        self.payload.first_chunk::<TYPE_LEN>().copied()
    }

    /// Exact number of bytes [`ConnlessPacket::emit`] writes
    #[must_use]
    pub const fn buffer_len(&self) -> usize {
        CONNLESS_HEADER_LEN + self.payload.len()
    }

    /// Write header and payload; returns the length
    ///
    /// # Errors
    /// [`BufferTooSmall`]; nothing is written.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let len = self.buffer_len();
        let dst = out.get_mut(..len).ok_or(BufferTooSmall { required: len })?;
        dst[..CONNLESS_HEADER_LEN].copy_from_slice(&self.header.to_bytes());
        dst[CONNLESS_HEADER_LEN..].copy_from_slice(self.payload);
        Ok(len)
    }
}

/// Which server-info request
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum InfoRequestKind {
    /// `gie3`: answered with `inf3`, or `iext` (+ `iex+`) when sent with the "xe" header
    Info,
    /// `fstd`: answered with `dtsf` (64-player legacy)
    Legacy64,
}

/// A server-info request (what a server browser sends)
///
/// The token comes back in the answer. Vanilla form: one byte (0..=255). Extended form (header
/// `78 65 t2 t1 00 00`, sent when `extended` is set): 24 bits, `t0 | t1 << 8 | t2 << 16`, where t0
/// is the byte after the type. On emit the token is reduced to 8 or 24 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct InfoRequest {
    /// gie3 or fstd
    pub kind: InfoRequestKind,
    /// True for the DDNet "xe" header (24-bit token, extended answer)
    pub extended: bool,
    /// The request token
    pub token: u32,
}

impl InfoRequest {
    /// Bytes on the wire (15)
    pub const LEN: usize = CONNLESS_HEADER_LEN + TYPE_LEN + 1;

    /// The token as the answer carries it
    #[must_use]
    pub const fn answer_token(&self) -> i32 {
        (self.token & if self.extended { 0xFF_FFFF } else { 0xFF }) as i32
    }

    /// Read a request from a parsed connectionless packet; extra payload bytes are ignored (as
    /// DDNet 16.4 does; vanilla 0.6.4 wants exactly 9 payload bytes)
    ///
    /// # Errors
    /// [`ConnlessError::UnexpectedType`] when the payload is not a gie3/fstd request of at least
    /// 9 bytes.
    pub fn from_packet(p: &ConnlessPacket<'_>) -> Result<Self, ConnlessError> {
        let Some((ty, rest)) = p.payload.split_first_chunk::<TYPE_LEN>() else {
            return Err(ConnlessError::UnexpectedType);
        };
        let kind = match *ty {
            TYPE_GETINFO => InfoRequestKind::Info,
            TYPE_GETINFO_64 => InfoRequestKind::Legacy64,
            _ => return Err(ConnlessError::UnexpectedType),
        };
        let &t0 = rest.first().ok_or(ConnlessError::UnexpectedType)?;
        let (extended, token) = match p.header {
            ConnlessHeader::Vanilla => (false, u32::from(t0)),
            ConnlessHeader::Extended([x0, x1, _, _]) => (
                true,
                u32::from(t0) | u32::from(x1) << 8 | u32::from(x0) << 16,
            ),
        };
        Ok(InfoRequest {
            kind,
            extended,
            token,
        })
    }

    /// Parse a datagram as a request
    ///
    /// # Errors
    /// See [`ConnlessPacket::parse`] and [`InfoRequest::from_packet`].
    pub fn parse(datagram: &[u8]) -> Result<Self, ConnlessError> {
        InfoRequest::from_packet(&ConnlessPacket::parse(datagram)?)
    }

    /// Exact number of bytes [`InfoRequest::emit`] writes
    #[must_use]
    pub const fn buffer_len(&self) -> usize {
        Self::LEN
    }

    /// Write the request; returns 15
    ///
    /// # Errors
    /// [`BufferTooSmall`]; nothing is written.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let dst = out.get_mut(..Self::LEN).ok_or(BufferTooSmall {
            required: Self::LEN,
        })?;
        let header = if self.extended {
            ConnlessHeader::Extended([(self.token >> 16) as u8, (self.token >> 8) as u8, 0, 0])
        } else {
            ConnlessHeader::Vanilla
        };
        dst[..CONNLESS_HEADER_LEN].copy_from_slice(&header.to_bytes());
        dst[CONNLESS_HEADER_LEN..CONNLESS_HEADER_LEN + TYPE_LEN].copy_from_slice(match self.kind {
            InfoRequestKind::Info => &TYPE_GETINFO,
            InfoRequestKind::Legacy64 => &TYPE_GETINFO_64,
        });
        dst[Self::LEN - 1] = self.token as u8;
        Ok(Self::LEN)
    }
}

/// One client in a server-info answer
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ClientInfo<'a> {
    /// Player name
    pub name: Str<'a>,
    /// Clan
    pub clan: Str<'a>,
    /// Country code (−1: none)
    pub country: i32,
    /// Score (DDNet: −9999 = no time yet)
    pub score: i32,
    /// 1 for a player, 0 for a spectator
    pub is_player: i32,
}

impl<'a> ClientInfo<'a> {
    fn read(u: &mut Unpacker<'a>, reserved: bool) -> Result<Self, ConnlessError> {
        let c = ClientInfo {
            name: string(u)?,
            clan: string(u)?,
            country: number(u)?,
            score: number(u)?,
            is_player: number(u)?,
        };
        if reserved {
            string(u)?;
        }
        Ok(c)
    }

    fn write(&self, p: &mut Packer<'_>, reserved: bool) -> Result<(), BufferTooSmall> {
        p.str(self.name)?;
        p.str(self.clan)?;
        write_dec(p, i64::from(self.country))?;
        write_dec(p, i64::from(self.score))?;
        write_dec(p, i64::from(self.is_player))?;
        if reserved {
            p.str(Str::EMPTY)?;
        }
        Ok(())
    }

    fn wire_len(&self, reserved: bool) -> usize {
        self.name.wire_len()
            + self.clan.wire_len()
            + dec_len(i64::from(self.country))
            + dec_len(i64::from(self.score))
            + dec_len(i64::from(self.is_player))
            + usize::from(reserved)
    }
}

/// The client list of an answer: borrowed wire bytes (parsed) or a slice (to send)
///
/// Parsing checks every entry, so [`ClientList::iter`] yields exactly [`ClientList::len`] entries.
/// Two lists are equal when their entries are.
#[derive(Clone, Copy)]
pub struct ClientList<'a> {
    repr: ListRepr<'a>,
    count: usize,
}

#[derive(Clone, Copy)]
enum ListRepr<'a> {
    Wire { bytes: &'a [u8], reserved: bool },
    Slice(&'a [ClientInfo<'a>]),
}

impl<'a> ClientList<'a> {
    /// No clients
    pub const EMPTY: ClientList<'static> = ClientList {
        repr: ListRepr::Slice(&[]),
        count: 0,
    };

    /// Clients to send
    #[must_use]
    pub const fn from_slice(clients: &'a [ClientInfo<'a>]) -> Self {
        ClientList {
            repr: ListRepr::Slice(clients),
            count: clients.len(),
        }
    }

    /// Number of clients listed
    #[must_use]
    pub const fn len(&self) -> usize {
        self.count
    }

    /// True when no client is listed
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The clients
    pub fn iter(&self) -> impl Iterator<Item = ClientInfo<'a>> + 'a {
        let (mut u, reserved, slice) = match self.repr {
            ListRepr::Wire { bytes, reserved } => (Unpacker::new(bytes), reserved, &[][..]),
            ListRepr::Slice(s) => (Unpacker::new(&[]), false, s),
        };
        let wire = core::iter::from_fn(move || {
            if u.is_empty() {
                None
            } else {
                ClientInfo::read(&mut u, reserved).ok()
            }
        });
        wire.chain(slice.iter().copied()).take(self.count)
    }

    /// Read entries until `u` is empty; every entry must be complete
    fn read(u: &mut Unpacker<'a>, reserved: bool) -> Result<Self, ConnlessError> {
        let bytes = u.rest();
        let mut count = 0;
        while !u.is_empty() {
            ClientInfo::read(u, reserved)?;
            count += 1;
        }
        Ok(ClientList {
            repr: ListRepr::Wire { bytes, reserved },
            count,
        })
    }

    fn write(&self, p: &mut Packer<'_>, reserved: bool) -> Result<(), BufferTooSmall> {
        for c in self.iter() {
            c.write(p, reserved)?;
        }
        Ok(())
    }

    fn wire_len(&self, reserved: bool) -> usize {
        self.iter().map(|c| c.wire_len(reserved)).sum()
    }
}

impl PartialEq for ClientList<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.count == other.count && self.iter().eq(other.iter())
    }
}

impl Eq for ClientList<'_> {}

impl core::hash::Hash for ClientList<'_> {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.count.hash(state);
        for c in self.iter() {
            c.hash(state);
        }
    }
}

impl fmt::Debug for ClientList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for ClientList<'_> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "ClientList({} clients)", self.count);
    }
}

/// Which answer, with the fields only that answer has
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum InfoKind {
    /// `inf3`, the 0.6 answer
    Vanilla,
    /// `iext`, DDNet's extended answer (to a request with the "xe" header)
    Extended {
        /// CRC32 of the map (sent as the decimal of its `i32`)
        map_crc: u32,
        /// Map size in bytes
        map_size: i32,
    },
    /// `dtsf`, the 64-player legacy answer
    Legacy64 {
        /// Index of the first client in this packet (a packed int on the wire)
        offset: i32,
    },
}

/// A server-info answer (`inf3`, `iext` or `dtsf`), borrowed
///
/// Wire order: type, token, version, name, map, [iext: map CRC, map size], game type, flags,
/// num players, max players, num clients, max clients, [iext: reserved `""`], [dtsf: offset as a
/// packed int], then the clients. The header written by [`ServerInfo::emit`] is always six `FF`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ServerInfo<'a> {
    /// Answer type and its own fields
    pub kind: InfoKind,
    /// The request's token (−1 in the unsolicited update DDNet sends to its players)
    pub token: i32,
    /// Game version, e.g. `0.6.4, 16.4`
    pub version: Str<'a>,
    /// Server name
    pub name: Str<'a>,
    /// Map name
    pub map: Str<'a>,
    /// Game type, e.g. `DDraceNetwork`
    pub game_type: Str<'a>,
    /// Bit 0: password required
    pub flags: i32,
    /// Players in game
    pub num_players: i32,
    /// Player slots
    pub max_players: i32,
    /// Clients (players and spectators)
    pub num_clients: i32,
    /// Client slots
    pub max_clients: i32,
    /// The clients listed in this packet (possibly fewer than `num_clients`, or none when the
    /// server is rate limiting)
    pub clients: ClientList<'a>,
}

impl<'a> ServerInfo<'a> {
    /// The 8-byte packet type of this answer
    #[must_use]
    pub const fn packet_type(&self) -> [u8; TYPE_LEN] {
        match self.kind {
            InfoKind::Vanilla => TYPE_INFO,
            InfoKind::Extended { .. } => TYPE_INFO_EXTENDED,
            InfoKind::Legacy64 { .. } => TYPE_INFO_64,
        }
    }

    /// Read an answer from a parsed connectionless packet (any header form)
    ///
    /// # Errors
    /// [`ConnlessError::UnexpectedType`] for another packet type, [`ConnlessError::Truncated`],
    /// [`ConnlessError::BadNumber`].
    pub fn from_packet(p: &ConnlessPacket<'a>) -> Result<Self, ConnlessError> {
        let Some((ty, rest)) = p.payload.split_first_chunk::<TYPE_LEN>() else {
            return Err(ConnlessError::UnexpectedType);
        };
        let extended = match *ty {
            TYPE_INFO | TYPE_INFO_64 => false,
            TYPE_INFO_EXTENDED => true,
            _ => return Err(ConnlessError::UnexpectedType),
        };
        let u = &mut Unpacker::new(rest);
        let token = number(u)?;
        let version = string(u)?;
        let name = string(u)?;
        let map = string(u)?;
        let mut kind = InfoKind::Vanilla;
        if extended {
            let crc = number64(u)?;
            let map_crc = if (i64::from(i32::MIN)..=i64::from(u32::MAX)).contains(&crc) {
                crc as u32
            } else {
                return Err(ConnlessError::BadNumber);
            };
            kind = InfoKind::Extended {
                map_crc,
                map_size: number(u)?,
            };
        }
        let game_type = string(u)?;
        let flags = number(u)?;
        let num_players = number(u)?;
        let max_players = number(u)?;
        let num_clients = number(u)?;
        let max_clients = number(u)?;
        if extended {
            string(u)?; // reserved
        }
        if *ty == TYPE_INFO_64 {
            kind = InfoKind::Legacy64 {
                offset: u.int().map_err(|_| ConnlessError::Truncated)?,
            };
        }
        let clients = ClientList::read(u, extended)?;
        Ok(ServerInfo {
            kind,
            token,
            version,
            name,
            map,
            game_type,
            flags,
            num_players,
            max_players,
            num_clients,
            max_clients,
            clients,
        })
    }

    /// Parse a datagram as an answer
    ///
    /// # Errors
    /// See [`ConnlessPacket::parse`] and [`ServerInfo::from_packet`].
    pub fn parse(datagram: &'a [u8]) -> Result<Self, ConnlessError> {
        ServerInfo::from_packet(&ConnlessPacket::parse(datagram)?)
    }

    /// Exact number of bytes [`ServerInfo::emit`] writes
    #[must_use]
    pub fn buffer_len(&self) -> usize {
        let extended = matches!(self.kind, InfoKind::Extended { .. });
        let kind_len = match self.kind {
            InfoKind::Vanilla => 0,
            InfoKind::Extended { map_crc, map_size } => {
                dec_len(i64::from(map_crc as i32)) + dec_len(i64::from(map_size)) + 1
            }
            InfoKind::Legacy64 { offset } => super::packer::int_len(offset),
        };
        answer_head_len(self.token)
            + self.version.wire_len()
            + self.name.wire_len()
            + self.map.wire_len()
            + self.game_type.wire_len()
            + [
                self.flags,
                self.num_players,
                self.max_players,
                self.num_clients,
                self.max_clients,
            ]
            .iter()
            .map(|&v| dec_len(i64::from(v)))
            .sum::<usize>()
            + kind_len
            + self.clients.wire_len(extended)
    }

    /// Write the answer (vanilla header); returns the length
    ///
    /// # Errors
    /// [`BufferTooSmall`] with the exact size; nothing is written.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let len = self.buffer_len();
        let mut p = answer_start(out, len, &self.packet_type(), self.token)?;
        p.str(self.version)?;
        p.str(self.name)?;
        p.str(self.map)?;
        if let InfoKind::Extended { map_crc, map_size } = self.kind {
            write_dec(&mut p, i64::from(map_crc as i32))?;
            write_dec(&mut p, i64::from(map_size))?;
        }
        p.str(self.game_type)?;
        for v in [
            self.flags,
            self.num_players,
            self.max_players,
            self.num_clients,
            self.max_clients,
        ] {
            write_dec(&mut p, i64::from(v))?;
        }
        let extended = matches!(self.kind, InfoKind::Extended { .. });
        if extended {
            p.str(Str::EMPTY)?;
        }
        if let InfoKind::Legacy64 { offset } = self.kind {
            p.int(offset)?;
        }
        self.clients.write(&mut p, extended)?;
        debug_assert_eq!(p.written(), len);
        Ok(len)
    }
}

/// What a server says about itself in a server-info answer, whatever form the request had
///
/// [`InfoContent::answer`] turns it into the answer a request asks for. A game server keeps one
/// of these (name, map, version, player counts, the client list) and hands it to
/// [`Server::answer_info`](super::Server::answer_info).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct InfoContent<'a> {
    /// Game version, e.g. `0.6.4, 16.4`
    pub version: Str<'a>,
    /// Server name
    pub name: Str<'a>,
    /// Map name
    pub map: Str<'a>,
    /// CRC32 of the map file (only the extended answer carries it)
    pub map_crc: u32,
    /// Map size in bytes (only the extended answer carries it)
    pub map_size: i32,
    /// Game type, e.g. `DDraceNetwork`
    pub game_type: Str<'a>,
    /// Bit 0: password required
    pub flags: i32,
    /// Players in game
    pub num_players: i32,
    /// Player slots
    pub max_players: i32,
    /// Clients (players and spectators)
    pub num_clients: i32,
    /// Client slots
    pub max_clients: i32,
    /// The clients, as many of them as fit are listed
    pub clients: &'a [ClientInfo<'a>],
}

/// Most clients an `inf3` answer lists (DDNet 16.4)
pub const INF3_MAX_CLIENTS: usize = 16;
/// Most clients a `dtsf` answer lists per packet (DDNet 16.4)
pub const DTSF_MAX_CLIENTS: usize = 24;

impl<'a> InfoContent<'a> {
    /// The answer to `request`, in one datagram: `inf3` for a vanilla `gie3`, `iext` for a
    /// `gie3` with the "xe" header, `dtsf` for `fstd`; with the request's token and, when
    /// `with_clients`, as many clients as fit into [`MAX_PACKET_LEN`] bytes (`inf3` at most 16,
    /// `dtsf` at most 24, as DDNet 16.4). Clients that do not fit are left out (DDNet would send
    /// further `iex+` / `dtsf` packets).
    ///
    /// ```
    /// use tether_net::game::connless::{InfoContent, InfoKind, InfoRequest, InfoRequestKind};
    /// use tether_net::game::packer::Str;
    /// let content = InfoContent {
    ///     version: Str::new("0.6.4, tether"), name: Str::new("my server"), map: Str::new("Tutorial"),
    ///     map_crc: 0x8d4c6486, map_size: 1_082_711, game_type: Str::new("DM"), flags: 0,
    ///     num_players: 0, max_players: 8, num_clients: 0, max_clients: 8, clients: &[],
    /// };
    /// let request = InfoRequest { kind: InfoRequestKind::Info, extended: true, token: 0x123456 };
    /// let answer = content.answer(&request, true);
    /// assert_eq!(answer.token, 0x123456);
    /// assert!(matches!(answer.kind, InfoKind::Extended { map_size: 1_082_711, .. }));
    /// ```
    #[must_use]
    pub fn answer(&self, request: &InfoRequest, with_clients: bool) -> ServerInfo<'a> {
        let (kind, cap) = match (request.kind, request.extended) {
            (InfoRequestKind::Legacy64, _) => (InfoKind::Legacy64 { offset: 0 }, DTSF_MAX_CLIENTS),
            (InfoRequestKind::Info, true) => (
                InfoKind::Extended {
                    map_crc: self.map_crc,
                    map_size: self.map_size,
                },
                usize::MAX,
            ),
            (InfoRequestKind::Info, false) => (InfoKind::Vanilla, INF3_MAX_CLIENTS),
        };
        let mut info = ServerInfo {
            kind,
            token: request.answer_token(),
            version: self.version,
            name: self.name,
            map: self.map,
            game_type: self.game_type,
            flags: self.flags,
            num_players: self.num_players,
            max_players: self.max_players,
            num_clients: self.num_clients,
            max_clients: self.max_clients,
            clients: ClientList::EMPTY,
        };
        if with_clients {
            let extended = matches!(kind, InfoKind::Extended { .. });
            let mut len = info.buffer_len();
            let mut n = 0;
            for c in self.clients.iter().take(cap) {
                len += c.wire_len(extended);
                if len > MAX_PACKET_LEN {
                    break;
                }
                n += 1;
            }
            info.clients = ClientList::from_slice(self.clients.get(..n).unwrap_or(&[]));
        }
        info
    }
}

/// A further packet of an extended answer (`iex+`): the clients that did not fit into `iext`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ServerInfoMore<'a> {
    /// The request's token
    pub token: i32,
    /// Packet number (1, 2, …)
    pub packet_no: i32,
    /// The clients in this packet (6 strings each on the wire)
    pub clients: ClientList<'a>,
}

impl<'a> ServerInfoMore<'a> {
    /// Read from a parsed connectionless packet
    ///
    /// # Errors
    /// [`ConnlessError::UnexpectedType`], [`ConnlessError::Truncated`], [`ConnlessError::BadNumber`].
    pub fn from_packet(p: &ConnlessPacket<'a>) -> Result<Self, ConnlessError> {
        let Some((ty, rest)) = p.payload.split_first_chunk::<TYPE_LEN>() else {
            return Err(ConnlessError::UnexpectedType);
        };
        if *ty != TYPE_INFO_EXTENDED_MORE {
            return Err(ConnlessError::UnexpectedType);
        }
        let u = &mut Unpacker::new(rest);
        let token = number(u)?;
        let packet_no = number(u)?;
        string(u)?; // reserved
        Ok(ServerInfoMore {
            token,
            packet_no,
            clients: ClientList::read(u, true)?,
        })
    }

    /// Exact number of bytes [`ServerInfoMore::emit`] writes
    #[must_use]
    pub fn buffer_len(&self) -> usize {
        answer_head_len(self.token)
            + dec_len(i64::from(self.packet_no))
            + 1
            + self.clients.wire_len(true)
    }

    /// Write the packet (vanilla header); returns the length
    ///
    /// # Errors
    /// [`BufferTooSmall`] with the exact size; nothing is written.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let len = self.buffer_len();
        let mut p = answer_start(out, len, &TYPE_INFO_EXTENDED_MORE, self.token)?;
        write_dec(&mut p, i64::from(self.packet_no))?;
        p.str(Str::EMPTY)?;
        self.clients.write(&mut p, true)?;
        Ok(len)
    }
}

/// Any connectionless packet, decoded when it is a server-info request or answer
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Connless<'a> {
    /// gie3 / fstd
    InfoRequest(InfoRequest),
    /// inf3 / iext / dtsf
    Info(ServerInfo<'a>),
    /// iex+
    InfoMore(ServerInfoMore<'a>),
    /// Another packet type (master-server traffic, 0.6.5 or DDNet additions): not decoded
    Other(ConnlessPacket<'a>),
}

impl<'a> Connless<'a> {
    /// Parse a connectionless datagram
    ///
    /// # Errors
    /// [`ConnlessPacket::parse`]'s errors, and those of the request / answer decoders for a
    /// packet of their type.
    pub fn parse(datagram: &'a [u8]) -> Result<Self, ConnlessError> {
        let p = ConnlessPacket::parse(datagram)?;
        Ok(match p.packet_type() {
            Some(TYPE_GETINFO | TYPE_GETINFO_64) => {
                Connless::InfoRequest(InfoRequest::from_packet(&p)?)
            }
            Some(TYPE_INFO | TYPE_INFO_EXTENDED | TYPE_INFO_64) => {
                Connless::Info(ServerInfo::from_packet(&p)?)
            }
            Some(TYPE_INFO_EXTENDED_MORE) => Connless::InfoMore(ServerInfoMore::from_packet(&p)?),
            _ => Connless::Other(p),
        })
    }

    /// Exact number of bytes [`Connless::emit`] writes
    #[must_use]
    pub fn buffer_len(&self) -> usize {
        match self {
            Connless::InfoRequest(r) => r.buffer_len(),
            Connless::Info(i) => i.buffer_len(),
            Connless::InfoMore(m) => m.buffer_len(),
            Connless::Other(p) => p.buffer_len(),
        }
    }

    /// Write the packet; returns the length
    ///
    /// # Errors
    /// [`BufferTooSmall`]; nothing is written.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
        match self {
            Connless::InfoRequest(r) => r.emit(out),
            Connless::Info(i) => i.emit(out),
            Connless::InfoMore(m) => m.emit(out),
            Connless::Other(p) => p.emit(out),
        }
    }
}

/// Length of an answer's start: the connless header, the packet type, the request's token
const fn answer_head_len(token: i32) -> usize {
    CONNLESS_HEADER_LEN + TYPE_LEN + dec_len(token as i64)
}

/// Start an answer of `len` bytes in `out`: the vanilla header, the packet type `ty`, the
/// request's `token` (as a decimal string); the rest is written with the packer returned
fn answer_start<'o>(
    out: &'o mut [u8],
    len: usize,
    ty: &[u8; TYPE_LEN],
    token: i32,
) -> Result<Packer<'o>, BufferTooSmall> {
    let dst = out.get_mut(..len).ok_or(BufferTooSmall { required: len })?;
    let mut p = Packer::new(dst);
    p.raw(&VANILLA_HEADER)?;
    p.raw(ty)?;
    write_dec(&mut p, i64::from(token))?;
    Ok(p)
}

fn string<'a>(u: &mut Unpacker<'a>) -> Result<Str<'a>, ConnlessError> {
    u.str().map_err(|_| ConnlessError::Truncated)
}

/// A decimal string field as `i32`
fn number(u: &mut Unpacker<'_>) -> Result<i32, ConnlessError> {
    i32::try_from(number64(u)?).map_err(|_| ConnlessError::BadNumber)
}

/// A decimal string field: optional `-`, then 1 to 10 digits
fn number64(u: &mut Unpacker<'_>) -> Result<i64, ConnlessError> {
    let s = string(u)?.as_bytes();
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 10 {
        return Err(ConnlessError::BadNumber);
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(ConnlessError::BadNumber);
        }
        v = v * 10 + i64::from(d - b'0');
    }
    Ok(if neg { -v } else { v })
}

/// Bytes of `v` as a decimal string with its NUL
const fn dec_len(v: i64) -> usize {
    let mut n = if v < 0 { 2 } else { 1 };
    let mut u = v.unsigned_abs();
    while u >= 10 {
        u /= 10;
        n += 1;
    }
    n + 1
}

/// Write `v` as a NUL-terminated decimal string
fn write_dec(p: &mut Packer<'_>, v: i64) -> Result<(), BufferTooSmall> {
    let mut buf = [0u8; 21];
    let mut i = buf.len() - 1; // buf[20] = NUL
    let mut u = v.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    if v < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    p.raw(&buf[i..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_lists_compare_by_their_entries_whatever_their_form() {
        extern crate std;
        use crate::game::packer::Str;
        let player = |name| ClientInfo {
            name: Str::new(name),
            clan: Str::new("c"),
            country: -1,
            score: 10,
            is_player: 1,
        };
        let two = [player("a"), player("b")];
        let info = ServerInfo {
            kind: InfoKind::Vanilla,
            token: 3,
            version: Str::new("0.6.4"),
            name: Str::new("srv"),
            map: Str::new("dm1"),
            game_type: Str::new("DM"),
            flags: 0,
            num_players: 2,
            max_players: 8,
            num_clients: 2,
            max_clients: 8,
            clients: ClientList::from_slice(&two),
        };
        let mut buf = [0u8; 256];
        let n = info.emit(&mut buf).unwrap();
        let parsed = ServerInfo::parse(&buf[..n]).unwrap();
        let wire = parsed.clients;
        // the list read from the wire equals the one it was written from
        assert_eq!(wire, ClientList::from_slice(&two));
        assert!(!wire.is_empty());
        assert!(ClientList::EMPTY.is_empty());
        // another entry, one fewer: not equal
        let other = [player("a"), player("x")];
        assert_ne!(wire, ClientList::from_slice(&other));
        assert_ne!(wire, ClientList::from_slice(&two[..1]));
        // hashing agrees with equality
        let hash = |l: &ClientList<'_>| {
            use core::hash::{Hash, Hasher};
            let mut h = std::hash::DefaultHasher::new();
            l.hash(&mut h);
            h.finish()
        };
        assert_eq!(hash(&wire), hash(&ClientList::from_slice(&two)));
        assert_ne!(hash(&wire), hash(&ClientList::from_slice(&other)));
    }

    #[test]
    fn a_connless_datagram_of_the_largest_packet_size_parses_and_one_byte_more_is_too_long() {
        let mut d = [0xffu8; MAX_PACKET_LEN + 1];
        let p = ConnlessPacket::parse(&d[..MAX_PACKET_LEN]).unwrap();
        assert_eq!(p.payload.len(), MAX_PACKET_LEN - CONNLESS_HEADER_LEN);
        assert_eq!(
            ConnlessPacket::parse(&d),
            Err(ConnlessError::TooLong {
                len: MAX_PACKET_LEN + 1
            })
        );
        d[0] = 0x00;
        assert_eq!(
            ConnlessPacket::parse(&d[..MAX_PACKET_LEN]),
            Err(ConnlessError::NotConnless)
        );
    }

    #[test]
    fn an_answer_of_exactly_the_largest_datagram_lists_every_client_and_one_byte_more_drops_one() {
        extern crate std;
        use std::string::String;
        use std::vec::Vec;
        fn content<'a>(clients: &'a [ClientInfo<'a>]) -> InfoContent<'a> {
            InfoContent {
                version: Str::new("0.6.4, 19.0"),
                name: Str::new("a full server"),
                map: Str::new("Tutorial"),
                map_crc: 0x8d4c_6486,
                map_size: 1_082_711,
                game_type: Str::new("DDraceNetwork"),
                flags: 0,
                num_players: 40,
                max_players: 64,
                num_clients: 40,
                max_clients: 64,
                clients,
            }
        }
        fn client(name: &str) -> ClientInfo<'_> {
            ClientInfo {
                name: Str::new(name),
                clan: Str::EMPTY,
                country: -1,
                score: 0,
                is_player: 1,
            }
        }
        let request = InfoRequest {
            kind: InfoRequestKind::Info,
            extended: true,
            token: 0x12_3456,
        };
        let base = content(&[]).answer(&request, true).buffer_len();
        // full clients of a 50-byte name, then one whose name takes up the rest exactly
        let fifty = "x".repeat(50);
        let unit = client(&fifty).wire_len(true);
        let empty = client("").wire_len(true);
        let full = (MAX_PACKET_LEN - base) / unit - 1;
        let last = MAX_PACKET_LEN - base - full * unit - empty;
        assert!(last > 0 && last < 2 * unit, "{last}");
        for (extra, listed, len) in [
            (0, full + 1, MAX_PACKET_LEN),
            (1, full, MAX_PACKET_LEN - last - empty),
        ] {
            let mut names: Vec<String> = (0..full).map(|_| "x".repeat(50)).collect();
            names.push("y".repeat(last + extra));
            let clients: Vec<ClientInfo<'_>> = names.iter().map(|n| client(n)).collect();
            let answer = content(&clients).answer(&request, true);
            assert_eq!(answer.clients.len(), listed, "{extra}");
            assert_eq!(answer.buffer_len(), len, "{extra}");
            let mut out = [0u8; MAX_PACKET_LEN];
            assert_eq!(answer.emit(&mut out), Ok(len));
        }
    }

    #[test]
    fn decimal_numbers() {
        for v in [
            0i64,
            5,
            -1,
            9,
            10,
            -9999,
            1082711,
            -1924373370,
            i64::from(u32::MAX),
        ] {
            let mut buf = [0u8; 24];
            let mut p = Packer::new(&mut buf);
            write_dec(&mut p, v).unwrap();
            let n = p.written();
            assert_eq!(n, dec_len(v), "{v}");
            let mut u = Unpacker::new(&buf[..n]);
            assert_eq!(number64(&mut u), Ok(v));
        }
        for bad in [
            &b"\0"[..],
            b"-\0",
            b"1a\0",
            b"+1\0",
            b"12345678901\0",
            b" 1\0",
        ] {
            assert_eq!(
                number64(&mut Unpacker::new(bad)),
                Err(ConnlessError::BadNumber),
                "{bad:?}"
            );
        }
        assert_eq!(
            number(&mut Unpacker::new(b"2147483648\0")),
            Err(ConnlessError::BadNumber)
        );
    }

    #[test]
    fn headers() {
        assert_eq!(
            ConnlessPacket::parse(&[0xff; 5]),
            Err(ConnlessError::TooShort { len: 5 })
        );
        assert_eq!(
            ConnlessPacket::parse(&[0x10, 0, 0, 0, 0, 0]),
            Err(ConnlessError::NotConnless)
        );
        assert_eq!(
            ConnlessPacket::parse(&[0x21, 0, 0, 0, 0, 0]),
            Err(ConnlessError::SixUp)
        );
        let p = ConnlessPacket::parse(b"xe\x12\x34\0\0abc").unwrap();
        assert_eq!(p.header, ConnlessHeader::Extended([0x12, 0x34, 0, 0]));
        assert_eq!(p.payload, b"abc");
    }
}
