//! Teeworlds 0.6 / DDNet system messages: what a client needs to join and a server to serve a join
//!
//! A message fills one chunk: the header int `id << 1 | system` ([`MsgHeader`]; id 0 = DDNet
//! extended message followed by a 16-byte UUID), then its fields ([`super::packer`]). Every message
//! type here is a borrowed struct with:
//!
//! * `parse(chunk_data)`: checks the header, reads the fields; bytes after the last field are
//!   ignored (DDNet does the same);
//! * `emit(out)`: writes header and fields, returns the length, or [`BufferTooSmall`] with the
//!   exact size and nothing written;
//! * `buffer_len()`: exactly what `emit` writes;
//! * `HEADER`: the message's [`MsgHeader`].
//!
//! [`Message::parse`] dispatches on the header: every 0.6 system message, the DDNet extended
//! system messages a 16.4 join sends or accepts (RCON_TYPE, CAPABILITIES, MAP_DETAILS, CLIENTVER,
//! PING_EX / PONG_EX), unknown system messages and game messages (header and body, for the
//! application to decode or skip).
//!
//! Field conventions: "int" fields are `i32` as on the wire; CRC32 values travel as the `i32` of
//! their bits and are `u32` here; a `&[u8]` field is a size int followed by that many raw bytes;
//! strings are [`Str`] (any bytes but NUL; see [`Str::to_text`] for display).
//!
//! Which messages must be vital: DDNet 16.4 ignores every client→server message except INPUT
//! and PING when it is not vital, and every game message that is not vital.
//!
//! ```
//! use tether_net::game::msg::{Info, Message, MapChange, VERSION_0_6};
//! use tether_net::game::packer::Str;
//!
//! let info = Info { version: Str::new(VERSION_0_6), password: Str::EMPTY };
//! let mut buf = [0u8; 64];
//! let n = info.emit(&mut buf).unwrap();
//! assert_eq!(&buf[..4], b"\x030.6");
//! assert_eq!(n, info.buffer_len());
//! assert_eq!(Message::parse(&buf[..n]), Ok(Message::Info(info)));
//!
//! // MAP_CHANGE as DDNet 16.4 sent it for the map Tutorial
//! let data = b"\x05Tutorial\0\xf9\xed\x9c\xab\x0e\x97\x95\x84\x01";
//! let m = MapChange::parse(data).unwrap();
//! assert_eq!((m.name.as_bytes(), m.crc, m.size), (&b"Tutorial"[..], 0x8d4c6486, 1082711));
//! ```
//!
//! Reference: DDNet `src/engine/shared/protocol.h`, `protocol_ex_msgs.h`, `datasrc/network.py`,
//! `src/engine/server/server.cpp` (`ProcessClientPacket`), `src/engine/client/client.cpp`.

use core::fmt;

use super::packer::{read_int, MsgHeader, MsgId, Packer, Str, UnpackError, Unpacker, UUID_LEN};
use crate::io::BufferTooSmall;

pub use super::packer::int_len;

/// The version string DDNet 16.4 (and vanilla 0.6) servers accept in [`Info`]
pub const VERSION_0_6: &str = "0.6 626fce9a778df4d4";

/// Numbers of the 0.6 system messages (`NETMSG_*`)
pub mod id {
    /// Client info: version, password
    pub const INFO: u16 = 1;
    /// Map name, CRC and size
    pub const MAP_CHANGE: u16 = 2;
    /// One piece of the map file
    pub const MAP_DATA: u16 = 3;
    /// The server is ready for the client's start info
    pub const CON_READY: u16 = 4;
    /// One part of a multi-part snapshot
    pub const SNAP: u16 = 5;
    /// A snapshot with no change
    pub const SNAPEMPTY: u16 = 6;
    /// A snapshot in one part
    pub const SNAPSINGLE: u16 = 7;
    /// Unused
    pub const SNAPSMALL: u16 = 8;
    /// Answer to an input with a new intended tick
    pub const INPUTTIMING: u16 = 9;
    /// Remote console login state
    pub const RCON_AUTH_STATUS: u16 = 10;
    /// A remote console line
    pub const RCON_LINE: u16 = 11;
    /// Unused
    pub const AUTH_CHALLANGE: u16 = 12;
    /// Unused
    pub const AUTH_RESULT: u16 = 13;
    /// The client has the map
    pub const READY: u16 = 14;
    /// The client enters the game
    pub const ENTERGAME: u16 = 15;
    /// Player input
    pub const INPUT: u16 = 16;
    /// A remote console command
    pub const RCON_CMD: u16 = 17;
    /// Remote console login
    pub const RCON_AUTH: u16 = 18;
    /// Request for one piece of the map
    pub const REQUEST_MAP_DATA: u16 = 19;
    /// Unused
    pub const AUTH_START: u16 = 20;
    /// Unused
    pub const AUTH_RESPONSE: u16 = 21;
    /// Ping
    pub const PING: u16 = 22;
    /// Answer to a ping
    pub const PING_REPLY: u16 = 23;
    /// Unused
    pub const ERROR: u16 = 24;
    /// A remote console command became available
    pub const RCON_CMD_ADD: u16 = 25;
    /// A remote console command went away
    pub const RCON_CMD_REM: u16 = 26;
}

/// UUIDs of DDNet extended messages (MD5 of a fixed namespace and the name, as a version-3 UUID)
pub mod uuid {
    use super::UUID_LEN;

    /// `rcon-type@ddnet.tw` (system, server→client)
    pub const RCON_TYPE: [u8; UUID_LEN] = [
        0x12, 0x81, 0x0e, 0x1f, 0xa1, 0xdb, 0x33, 0x78, 0xb4, 0xfb, 0x16, 0x4e, 0xd6, 0x50, 0x59,
        0x26,
    ];
    /// `capabilities@ddnet.tw` (system, server→client)
    pub const CAPABILITIES: [u8; UUID_LEN] = [
        0xf6, 0x21, 0xa5, 0xa1, 0xf5, 0x85, 0x37, 0x75, 0x8e, 0x73, 0x41, 0xbe, 0xee, 0x79, 0xf2,
        0xb2,
    ];
    /// `map-details@ddnet.tw` (system, server→client)
    pub const MAP_DETAILS: [u8; UUID_LEN] = [
        0xf9, 0x11, 0x7b, 0x3c, 0x80, 0x39, 0x34, 0x16, 0x9f, 0xc0, 0xae, 0xf2, 0xbc, 0xb7, 0x5c,
        0x03,
    ];
    /// `clientver@ddnet.tw` (system, client→server)
    pub const CLIENTVER: [u8; UUID_LEN] = [
        0x8c, 0x00, 0x13, 0x04, 0x84, 0x61, 0x3e, 0x47, 0x87, 0x87, 0xf6, 0x72, 0xb3, 0x83, 0x5b,
        0xd4,
    ];
    /// `ping@ddnet.tw` (system, both ways)
    pub const PING: [u8; UUID_LEN] = [
        0xbc, 0xb4, 0x3b, 0xf5, 0x42, 0x7c, 0x36, 0xd8, 0xb5, 0xb8, 0x79, 0x75, 0xc8, 0xc0, 0x6a,
        0xa1,
    ];
    /// `pong@ddnet.tw` (system, both ways)
    pub const PONG: [u8; UUID_LEN] = [
        0xd8, 0x29, 0x55, 0x30, 0x14, 0xa7, 0x3a, 0x0a, 0xb0, 0x2e, 0xb2, 0xce, 0xe0, 0x8d, 0x20,
        0x33,
    ];
    /// `what-is@ddnet.tw` (system: "which name has this UUID?")
    pub const WHAT_IS: [u8; UUID_LEN] = [
        0x24, 0x5e, 0x50, 0x97, 0x9f, 0xe0, 0x39, 0xd6, 0xbf, 0x7d, 0x9a, 0x29, 0xe1, 0x69, 0x1e,
        0x4c,
    ];
    /// `it-is@ddnet.tw` (system: answer to what-is)
    pub const IT_IS: [u8; UUID_LEN] = [
        0x69, 0x54, 0x84, 0x7e, 0x2e, 0x87, 0x36, 0x03, 0xb5, 0x62, 0x36, 0xda, 0x29, 0xed, 0x1a,
        0xca,
    ];
    /// `i-dont-know@ddnet.tw` (system: answer to what-is)
    pub const I_DONT_KNOW: [u8; UUID_LEN] = [
        0x41, 0x69, 0x11, 0xb5, 0x79, 0x73, 0x33, 0xbf, 0x8d, 0x52, 0x7b, 0xf0, 0x1e, 0x51, 0x9c,
        0xf0,
    ];
    /// `record@netmsg.ddnet.tw` (game, server→client)
    pub const RECORD: [u8; UUID_LEN] = [
        0x80, 0x4f, 0x14, 0x9f, 0x9b, 0x53, 0x3b, 0x0a, 0x89, 0x7f, 0x59, 0x66, 0x3a, 0x1c, 0x4e,
        0xb9,
    ];
    /// `teamsstate@netmsg.ddnet.tw` (game, server→client)
    pub const TEAMS_STATE: [u8; UUID_LEN] = [
        0xa0, 0x91, 0x96, 0x1a, 0x95, 0xe8, 0x37, 0x44, 0xbb, 0x60, 0x5e, 0xac, 0x9b, 0xd5, 0x63,
        0xc6,
    ];
}

/// Numbers of the 0.6 / DDNet 16.4 game messages (`datasrc/network.py`); game messages are not
/// decoded here except [`StartInfo`]
pub mod game_id {
    /// Sv_Motd: message str
    pub const SV_MOTD: u16 = 1;
    /// Sv_Broadcast: message str
    pub const SV_BROADCAST: u16 = 2;
    /// Sv_Chat: team int, client id int (−1 = server), message str
    pub const SV_CHAT: u16 = 3;
    /// Sv_TuneParams: a list of ints
    pub const SV_TUNE_PARAMS: u16 = 6;
    /// Sv_ReadyToEnter: no fields; the client may now send ENTERGAME
    pub const SV_READY_TO_ENTER: u16 = 8;
    /// Sv_VoteClearOptions: no fields
    pub const SV_VOTE_CLEAR_OPTIONS: u16 = 11;
    /// Cl_Say: team int, message str
    pub const CL_SAY: u16 = 17;
    /// Cl_StartInfo ([`super::StartInfo`])
    pub const CL_START_INFO: u16 = 20;
}

/// Why a message could not be read
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum MsgError {
    /// A field (or the header) could not be read
    Unpack(UnpackError),
    /// The chunk holds another message than the one asked for
    Unexpected(MsgHeader),
    /// A field has a value the message does not allow (INPUT size outside 0..=512)
    BadValue,
}

impl From<UnpackError> for MsgError {
    fn from(e: UnpackError) -> Self {
        MsgError::Unpack(e)
    }
}

impl fmt::Display for MsgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MsgError::Unpack(e) => write!(f, "{e}"),
            MsgError::Unexpected(h) => write!(f, "unexpected message {h:?}"),
            MsgError::BadValue => f.write_str("field value out of range"),
        }
    }
}

impl core::error::Error for MsgError {}

/// A message field type: how it is read, written and sized
trait Field<'a>: Sized {
    fn read(u: &mut Unpacker<'a>) -> Result<Self, MsgError>;
    fn write(&self, p: &mut Packer<'_>) -> Result<(), BufferTooSmall>;
    fn wire_len(&self) -> usize;
}

impl Field<'_> for i32 {
    fn read(u: &mut Unpacker<'_>) -> Result<Self, MsgError> {
        Ok(u.int()?)
    }
    fn write(&self, p: &mut Packer<'_>) -> Result<(), BufferTooSmall> {
        p.int(*self)
    }
    fn wire_len(&self) -> usize {
        int_len(*self)
    }
}

/// A CRC32: the int of its bits
impl Field<'_> for u32 {
    fn read(u: &mut Unpacker<'_>) -> Result<Self, MsgError> {
        Ok(u.int()? as u32)
    }
    fn write(&self, p: &mut Packer<'_>) -> Result<(), BufferTooSmall> {
        p.int(*self as i32)
    }
    fn wire_len(&self) -> usize {
        int_len(*self as i32)
    }
}

impl<'a> Field<'a> for Str<'a> {
    fn read(u: &mut Unpacker<'a>) -> Result<Self, MsgError> {
        Ok(u.str()?)
    }
    fn write(&self, p: &mut Packer<'_>) -> Result<(), BufferTooSmall> {
        p.str(*self)
    }
    fn wire_len(&self) -> usize {
        self.wire_len()
    }
}

impl<const N: usize> Field<'_> for [u8; N] {
    fn read(u: &mut Unpacker<'_>) -> Result<Self, MsgError> {
        Ok(u.array::<N>()?)
    }
    fn write(&self, p: &mut Packer<'_>) -> Result<(), BufferTooSmall> {
        p.raw(self)
    }
    fn wire_len(&self) -> usize {
        N
    }
}

/// A size int and that many raw bytes
impl<'a> Field<'a> for &'a [u8] {
    fn read(u: &mut Unpacker<'a>) -> Result<Self, MsgError> {
        Ok(u.sized_raw()?)
    }
    fn write(&self, p: &mut Packer<'_>) -> Result<(), BufferTooSmall> {
        p.int(<[u8]>::len(self) as i32)?;
        p.raw(self)
    }
    fn wire_len(&self) -> usize {
        int_len(<[u8]>::len(self) as i32) + <[u8]>::len(self)
    }
}

/// An optional last int: present when bytes are left (older peers leave it out)
impl Field<'_> for Option<i32> {
    fn read(u: &mut Unpacker<'_>) -> Result<Self, MsgError> {
        if u.is_empty() {
            Ok(None)
        } else {
            Ok(Some(u.int()?))
        }
    }
    fn write(&self, p: &mut Packer<'_>) -> Result<(), BufferTooSmall> {
        match self {
            Some(v) => p.int(*v),
            None => Ok(()),
        }
    }
    fn wire_len(&self) -> usize {
        self.map_or(0, int_len)
    }
}

/// Define a message struct with its header and fields, and its `parse` / `emit` / `buffer_len`
macro_rules! message {
    (
        $(#[$meta:meta])*
        $name:ident $(<$lt:lifetime>)? = $header:expr;
        { $( $(#[$fmeta:meta])* $field:ident : $fty:ty ),* $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        pub struct $name $(<$lt>)? { $( $(#[$fmeta])* pub $field: $fty, )* }

        impl $(<$lt>)? $name $(<$lt>)? {
            /// The message header (id and system flag)
            pub const HEADER: MsgHeader = $header;

            /// Read the message from a chunk's data (header included)
            ///
            /// # Errors
            /// [`MsgError::Unexpected`] for another message, [`MsgError::Unpack`] for missing or
            /// broken fields.
            pub fn parse(data: &$($lt)? [u8]) -> Result<Self, MsgError> {
                let (h, body) = MsgHeader::parse(data)?;
                if h != Self::HEADER {
                    return Err(MsgError::Unexpected(h));
                }
                Self::parse_body(body)
            }

            /// Read the fields (the data after the header)
            ///
            /// # Errors
            /// [`MsgError::Unpack`] for missing or broken fields.
            #[allow(unused_mut, unused_variables)]
            pub fn parse_body(body: &$($lt)? [u8]) -> Result<Self, MsgError> {
                let mut u = Unpacker::new(body);
                Ok($name { $( $field: Field::read(&mut u)?, )* })
            }

            /// Exact number of bytes [`Self::emit`] writes
            #[must_use]
            pub fn buffer_len(&self) -> usize {
                Self::HEADER.buffer_len() $( + Field::wire_len(&self.$field) )*
            }

            /// Write header and fields; returns the bytes written
            ///
            /// # Errors
            /// [`BufferTooSmall`] with the exact size; nothing is written.
            pub fn emit(&self, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
                let len = self.buffer_len();
                let dst = out.get_mut(..len).ok_or(BufferTooSmall { required: len })?;
                let mut p = Packer::new(dst);
                p.header(Self::HEADER)?;
                $( Field::write(&self.$field, &mut p)?; )*
                debug_assert_eq!(p.written(), len);
                Ok(len)
            }
        }
    };
}

message! {
    /// NETMSG_INFO (1), client→server, vital: the first message of a join
    ///
    /// DDNet 16.4 closes the connection with "Wrong version…" unless `version` is
    /// [`VERSION_0_6`], and with "Wrong password" when the password does not match.
    Info<'a> = MsgHeader::system(id::INFO);
    {
        /// Network version string ([`VERSION_0_6`])
        version: Str<'a>,
        /// Server password (empty for none)
        password: Str<'a>,
    }
}

message! {
    /// NETMSG_MAP_CHANGE (2), server→client, vital: the map to load or download
    MapChange<'a> = MsgHeader::system(id::MAP_CHANGE);
    {
        /// Map name
        name: Str<'a>,
        /// CRC32 (zlib polynomial) of the whole map file
        crc: u32,
        /// Map file size in bytes (check ≥ 0 before use)
        size: i32,
    }
}

message! {
    /// NETMSG_MAP_DATA (3), server→client, vital: one piece of the map file (0.6 layout)
    ///
    /// Piece `chunk` covers bytes `chunk * n .. chunk * n + data.len()` where `n` is the server's
    /// piece size (896 in DDNet 16.4 and 0.6.4; use the announced size of each piece). A client
    /// ignores pieces with a wrong CRC or index and checks the file's CRC and size when `last` is 1.
    MapData<'a> = MsgHeader::system(id::MAP_DATA);
    {
        /// 1 for the last piece
        last: i32,
        /// CRC32 of the whole map (as in [`MapChange`])
        crc: u32,
        /// Index of this piece
        chunk: i32,
        /// The piece (size int + bytes on the wire)
        data: &'a [u8],
    }
}

message! {
    /// NETMSG_CON_READY (4), server→client, vital: answer to every [`Ready`]; the client sends its
    /// start info next
    ConReady = MsgHeader::system(id::CON_READY);
    {}
}

message! {
    /// NETMSG_SNAP (5), server→client, non-vital: one part of a multi-part snapshot (opaque data)
    ///
    /// On the wire the second int is `tick - delta_tick`; it is converted both ways with wrapping
    /// arithmetic (a delta against the empty snapshot, −1, appears as `tick + 1`).
    Snap<'a> = MsgHeader::system(id::SNAP);
    {
        /// Game tick of the snapshot
        tick: i32,
        /// `tick - delta_tick` (the wire value)
        delta: i32,
        /// Number of parts
        num_parts: i32,
        /// Index of this part
        part: i32,
        /// Snapshot CRC
        crc: i32,
        /// This part's data (size int + bytes)
        data: &'a [u8],
    }
}

message! {
    /// NETMSG_SNAPEMPTY (6), server→client, non-vital: nothing changed since the delta snapshot
    SnapEmpty = MsgHeader::system(id::SNAPEMPTY);
    {
        /// Game tick
        tick: i32,
        /// `tick - delta_tick` (the wire value)
        delta: i32,
    }
}

message! {
    /// NETMSG_SNAPSINGLE (7), server→client, non-vital: a snapshot in one part (opaque data)
    SnapSingle<'a> = MsgHeader::system(id::SNAPSINGLE);
    {
        /// Game tick
        tick: i32,
        /// `tick - delta_tick` (the wire value; delta against the empty snapshot = `tick + 1`)
        delta: i32,
        /// Snapshot CRC
        crc: i32,
        /// The delta data (size int + bytes)
        data: &'a [u8],
    }
}

impl Snap<'_> {
    /// The tick this snapshot is a delta against (−1: the empty snapshot)
    #[must_use]
    pub const fn delta_tick(&self) -> i32 {
        self.tick.wrapping_sub(self.delta)
    }
}

impl SnapEmpty {
    /// The tick this snapshot is a delta against (−1: the empty snapshot)
    #[must_use]
    pub const fn delta_tick(&self) -> i32 {
        self.tick.wrapping_sub(self.delta)
    }
}

impl SnapSingle<'_> {
    /// The tick this snapshot is a delta against (−1: the empty snapshot)
    #[must_use]
    pub const fn delta_tick(&self) -> i32 {
        self.tick.wrapping_sub(self.delta)
    }
}

message! {
    /// NETMSG_INPUTTIMING (9), server→client, non-vital
    InputTiming = MsgHeader::system(id::INPUTTIMING);
    {
        /// The intended tick of the input this answers
        intended_tick: i32,
        /// Milliseconds the input arrived before that tick (negative: late)
        time_left: i32,
    }
}

message! {
    /// NETMSG_RCON_AUTH_STATUS (10), server→client, vital
    RconAuthStatus = MsgHeader::system(id::RCON_AUTH_STATUS);
    {
        /// 1 when logged in
        authed: i32,
        /// 1 when the command list follows (absent from some servers)
        cmdlist: Option<i32>,
    }
}

message! {
    /// NETMSG_RCON_LINE (11), server→client, vital: one remote console line
    RconLine<'a> = MsgHeader::system(id::RCON_LINE);
    {
        /// The line
        line: Str<'a>,
    }
}

message! {
    /// NETMSG_READY (14), client→server, vital: the client has the map; answered by
    /// [`ConReady`] (and the game's Sv_Motd)
    Ready = MsgHeader::system(id::READY);
    {}
}

message! {
    /// NETMSG_ENTERGAME (15), client→server, vital: enter the game (DDNet ignores it before the
    /// client's start info was processed: wait for Sv_ReadyToEnter)
    EnterGame = MsgHeader::system(id::ENTERGAME);
    {}
}

message! {
    /// NETMSG_INPUT (16), client→server, non-vital: acknowledges a snapshot tick and carries the
    /// player input (opaque ints)
    Input<'a> = MsgHeader::system(id::INPUT);
    {
        /// Last snapshot tick received (acks it; 0 or less: none yet)
        ack_tick: i32,
        /// The tick this input is meant for
        intended_tick: i32,
        /// The input ints (a size int in bytes, then size / 4 ints)
        input: InputInts<'a>,
    }
}

message! {
    /// NETMSG_RCON_CMD (17), client→server, vital
    RconCmd<'a> = MsgHeader::system(id::RCON_CMD);
    {
        /// The command
        command: Str<'a>,
    }
}

message! {
    /// NETMSG_RCON_AUTH (18), client→server, vital
    RconAuth<'a> = MsgHeader::system(id::RCON_AUTH);
    {
        /// User name (vanilla: unused, empty)
        name: Str<'a>,
        /// Password
        password: Str<'a>,
        /// DDNet: 1 to receive the command list
        send_cmds: Option<i32>,
    }
}

message! {
    /// NETMSG_REQUEST_MAP_DATA (19), client→server, vital: ask for one piece of the map
    RequestMapData = MsgHeader::system(id::REQUEST_MAP_DATA);
    {
        /// Index of the piece
        chunk: i32,
    }
}

message! {
    /// NETMSG_PING (22), both ways: answered with [`PingReply`]
    Ping = MsgHeader::system(id::PING);
    {}
}

message! {
    /// NETMSG_PING_REPLY (23), both ways
    PingReply = MsgHeader::system(id::PING_REPLY);
    {}
}

message! {
    /// NETMSG_RCON_CMD_ADD (25), server→client, vital
    RconCmdAdd<'a> = MsgHeader::system(id::RCON_CMD_ADD);
    {
        /// Command name
        name: Str<'a>,
        /// Help text
        help: Str<'a>,
        /// Parameter description
        params: Str<'a>,
    }
}

message! {
    /// NETMSG_RCON_CMD_REM (26), server→client, vital
    RconCmdRem<'a> = MsgHeader::system(id::RCON_CMD_REM);
    {
        /// Command name
        name: Str<'a>,
    }
}

message! {
    /// `rcon-type@ddnet.tw`, server→client, vital: sent first in DDNet's answer to INFO
    RconType = MsgHeader::uuid(true, uuid::RCON_TYPE);
    {
        /// 1 when the remote console asks for a user name
        username_required: i32,
    }
}

message! {
    /// `capabilities@ddnet.tw`, server→client, vital (16.4: version 5, flags 0x3f)
    Capabilities = MsgHeader::uuid(true, uuid::CAPABILITIES);
    {
        /// Capabilities version
        version: i32,
        /// Capability bits
        flags: i32,
    }
}

message! {
    /// `map-details@ddnet.tw`, server→client, vital: sent by DDNet (16.4 included) before
    /// [`MapChange`]; adds the map's SHA-256
    MapDetails<'a> = MsgHeader::uuid(true, uuid::MAP_DETAILS);
    {
        /// Map name
        name: Str<'a>,
        /// SHA-256 of the map file
        sha256: [u8; 32],
        /// CRC32 of the map file
        crc: u32,
        /// Map size in bytes
        size: i32,
        /// Download URL (empty in 16.4)
        url: Str<'a>,
    }
}

message! {
    /// `clientver@ddnet.tw`, client→server, vital, optional: sent before [`Info`] by DDNet clients
    ClientVer<'a> = MsgHeader::uuid(true, uuid::CLIENTVER);
    {
        /// Random connection id
        connection_id: [u8; 16],
        /// DDNet version number (16.4: 16040)
        ddnet_version: i32,
        /// Version string
        version: Str<'a>,
    }
}

message! {
    /// `ping@ddnet.tw`, both ways: answered with [`PongEx`] carrying the same id
    PingEx = MsgHeader::uuid(true, uuid::PING);
    {
        /// Ping id
        id: [u8; 16],
    }
}

message! {
    /// `pong@ddnet.tw`, both ways
    PongEx = MsgHeader::uuid(true, uuid::PONG);
    {
        /// The id of the ping this answers
        id: [u8; 16],
    }
}

message! {
    /// Cl_StartInfo (game message 20), client→server, vital: the player's look; DDNet answers with
    /// vote options, tuning and Sv_ReadyToEnter
    StartInfo<'a> = MsgHeader::game(game_id::CL_START_INFO);
    {
        /// Player name
        name: Str<'a>,
        /// Clan
        clan: Str<'a>,
        /// Country code (−1: none)
        country: i32,
        /// Skin name
        skin: Str<'a>,
        /// 1 to use the colors below
        use_custom_color: i32,
        /// Body color
        color_body: i32,
        /// Feet color
        color_feet: i32,
    }
}

/// Largest input size in bytes DDNet accepts in [`Input`]
pub const MAX_INPUT_SIZE: usize = 512;

/// The input ints of an [`Input`]: the size field (bytes) and `size / 4` ints
///
/// Parsed inputs borrow the packed ints ([`InputInts::iter`] decodes them); inputs to send borrow
/// a slice of values ([`InputInts::from_values`]). Two values are equal when their size and ints
/// are.
#[derive(Clone, Copy)]
pub struct InputInts<'a> {
    size: i32,
    repr: IntsRepr<'a>,
}

#[derive(Clone, Copy)]
enum IntsRepr<'a> {
    Packed(&'a [u8]),
    Values(&'a [i32]),
}

impl<'a> InputInts<'a> {
    /// Ints to send (size = 4 × count; at most 128 ints are written)
    #[must_use]
    pub fn from_values(values: &'a [i32]) -> Self {
        let values = values.get(..MAX_INPUT_SIZE / 4).unwrap_or(values);
        InputInts {
            size: (values.len() * 4) as i32,
            repr: IntsRepr::Values(values),
        }
    }

    /// The size field (bytes)
    #[must_use]
    pub const fn size(&self) -> i32 {
        self.size
    }

    /// Number of ints (`size / 4`)
    #[must_use]
    pub const fn len(&self) -> usize {
        (self.size / 4) as usize
    }

    /// True when there are no ints
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ints
    pub fn iter(&self) -> impl Iterator<Item = i32> + 'a {
        let (packed, values) = match self.repr {
            IntsRepr::Packed(p) => (p, &[][..]),
            IntsRepr::Values(v) => (&[][..], v),
        };
        let mut rest = packed;
        let n = self.len();
        let unpacked = core::iter::from_fn(move || {
            let (v, used) = read_int(rest).ok()?;
            rest = rest.get(used..).unwrap_or(&[]);
            Some(v)
        });
        unpacked.chain(values.iter().copied()).take(n)
    }
}

impl PartialEq for InputInts<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.size == other.size && self.iter().eq(other.iter())
    }
}

impl Eq for InputInts<'_> {}

impl core::hash::Hash for InputInts<'_> {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.size.hash(state);
        for v in self.iter() {
            v.hash(state);
        }
    }
}

impl fmt::Debug for InputInts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for InputInts<'_> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "InputInts(size {})", self.size);
    }
}

impl<'a> Field<'a> for InputInts<'a> {
    fn read(u: &mut Unpacker<'a>) -> Result<Self, MsgError> {
        let size = u.int()?;
        if !(0..=MAX_INPUT_SIZE as i32).contains(&size) {
            return Err(MsgError::BadValue);
        }
        let start = u.rest();
        for _ in 0..size / 4 {
            u.int()?;
        }
        let used = start.len() - u.rest().len();
        Ok(InputInts {
            size,
            repr: IntsRepr::Packed(start.get(..used).unwrap_or(&[])),
        })
    }
    fn write(&self, p: &mut Packer<'_>) -> Result<(), BufferTooSmall> {
        p.int(self.size)?;
        match self.repr {
            IntsRepr::Packed(bytes) => p.raw(bytes),
            IntsRepr::Values(_) => {
                for v in self.iter() {
                    p.int(v)?;
                }
                Ok(())
            }
        }
    }
    fn wire_len(&self) -> usize {
        int_len(self.size)
            + match self.repr {
                IntsRepr::Packed(bytes) => bytes.len(),
                IntsRepr::Values(_) => self.iter().map(int_len).sum(),
            }
    }
}

/// Any message of a chunk, decoded when it is one of the system messages above
///
/// Game messages (other than what the application decodes itself) and unknown system messages
/// come back with their header and undecoded body, so an application can skip or decode them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Message<'a> {
    /// [`Info`]
    Info(Info<'a>),
    /// [`MapChange`]
    MapChange(MapChange<'a>),
    /// [`MapData`]
    MapData(MapData<'a>),
    /// [`ConReady`]
    ConReady(ConReady),
    /// [`Snap`]
    Snap(Snap<'a>),
    /// [`SnapEmpty`]
    SnapEmpty(SnapEmpty),
    /// [`SnapSingle`]
    SnapSingle(SnapSingle<'a>),
    /// [`InputTiming`]
    InputTiming(InputTiming),
    /// [`RconAuthStatus`]
    RconAuthStatus(RconAuthStatus),
    /// [`RconLine`]
    RconLine(RconLine<'a>),
    /// [`Ready`]
    Ready(Ready),
    /// [`EnterGame`]
    EnterGame(EnterGame),
    /// [`Input`]
    Input(Input<'a>),
    /// [`RconCmd`]
    RconCmd(RconCmd<'a>),
    /// [`RconAuth`]
    RconAuth(RconAuth<'a>),
    /// [`RequestMapData`]
    RequestMapData(RequestMapData),
    /// [`Ping`]
    Ping(Ping),
    /// [`PingReply`]
    PingReply(PingReply),
    /// [`RconCmdAdd`]
    RconCmdAdd(RconCmdAdd<'a>),
    /// [`RconCmdRem`]
    RconCmdRem(RconCmdRem<'a>),
    /// [`RconType`]
    RconType(RconType),
    /// [`Capabilities`]
    Capabilities(Capabilities),
    /// [`MapDetails`]
    MapDetails(MapDetails<'a>),
    /// [`ClientVer`]
    ClientVer(ClientVer<'a>),
    /// [`PingEx`]
    PingEx(PingEx),
    /// [`PongEx`]
    PongEx(PongEx),
    /// A system message not decoded here (unused ids, unknown DDNet UUIDs): skip it
    OtherSystem {
        /// Its id
        id: MsgId,
        /// The undecoded fields
        body: &'a [u8],
    },
    /// A game message (including [`StartInfo`], which [`StartInfo::parse`] decodes)
    Game {
        /// Its id
        id: MsgId,
        /// The undecoded fields
        body: &'a [u8],
    },
}

/// Dispatch helper for [`Message`]'s methods: `$m` is bound to the inner struct
macro_rules! each_known {
    ($self:expr, $m:ident => $e:expr, $other:pat => $oe:expr) => {
        match $self {
            Message::Info($m) => $e,
            Message::MapChange($m) => $e,
            Message::MapData($m) => $e,
            Message::ConReady($m) => $e,
            Message::Snap($m) => $e,
            Message::SnapEmpty($m) => $e,
            Message::SnapSingle($m) => $e,
            Message::InputTiming($m) => $e,
            Message::RconAuthStatus($m) => $e,
            Message::RconLine($m) => $e,
            Message::Ready($m) => $e,
            Message::EnterGame($m) => $e,
            Message::Input($m) => $e,
            Message::RconCmd($m) => $e,
            Message::RconAuth($m) => $e,
            Message::RequestMapData($m) => $e,
            Message::Ping($m) => $e,
            Message::PingReply($m) => $e,
            Message::RconCmdAdd($m) => $e,
            Message::RconCmdRem($m) => $e,
            Message::RconType($m) => $e,
            Message::Capabilities($m) => $e,
            Message::MapDetails($m) => $e,
            Message::ClientVer($m) => $e,
            Message::PingEx($m) => $e,
            Message::PongEx($m) => $e,
            $other => $oe,
        }
    };
}

impl<'a> Message<'a> {
    /// Read the message of a chunk's data
    ///
    /// # Errors
    /// [`MsgError::Unpack`] for a broken header or broken fields of a known system message,
    /// [`MsgError::BadValue`] for an INPUT size outside 0..=512.
    pub fn parse(data: &'a [u8]) -> Result<Message<'a>, MsgError> {
        let (h, body) = MsgHeader::parse(data)?;
        if !h.system {
            return Ok(Message::Game { id: h.id, body });
        }
        Ok(match h.id {
            MsgId::Ordinal(n) => match n {
                id::INFO => Message::Info(Info::parse_body(body)?),
                id::MAP_CHANGE => Message::MapChange(MapChange::parse_body(body)?),
                id::MAP_DATA => Message::MapData(MapData::parse_body(body)?),
                id::CON_READY => Message::ConReady(ConReady::parse_body(body)?),
                id::SNAP => Message::Snap(Snap::parse_body(body)?),
                id::SNAPEMPTY => Message::SnapEmpty(SnapEmpty::parse_body(body)?),
                id::SNAPSINGLE => Message::SnapSingle(SnapSingle::parse_body(body)?),
                id::INPUTTIMING => Message::InputTiming(InputTiming::parse_body(body)?),
                id::RCON_AUTH_STATUS => Message::RconAuthStatus(RconAuthStatus::parse_body(body)?),
                id::RCON_LINE => Message::RconLine(RconLine::parse_body(body)?),
                id::READY => Message::Ready(Ready::parse_body(body)?),
                id::ENTERGAME => Message::EnterGame(EnterGame::parse_body(body)?),
                id::INPUT => Message::Input(Input::parse_body(body)?),
                id::RCON_CMD => Message::RconCmd(RconCmd::parse_body(body)?),
                id::RCON_AUTH => Message::RconAuth(RconAuth::parse_body(body)?),
                id::REQUEST_MAP_DATA => Message::RequestMapData(RequestMapData::parse_body(body)?),
                id::PING => Message::Ping(Ping::parse_body(body)?),
                id::PING_REPLY => Message::PingReply(PingReply::parse_body(body)?),
                id::RCON_CMD_ADD => Message::RconCmdAdd(RconCmdAdd::parse_body(body)?),
                id::RCON_CMD_REM => Message::RconCmdRem(RconCmdRem::parse_body(body)?),
                _ => Message::OtherSystem { id: h.id, body },
            },
            MsgId::Uuid(u) => match u {
                uuid::RCON_TYPE => Message::RconType(RconType::parse_body(body)?),
                uuid::CAPABILITIES => Message::Capabilities(Capabilities::parse_body(body)?),
                uuid::MAP_DETAILS => Message::MapDetails(MapDetails::parse_body(body)?),
                uuid::CLIENTVER => Message::ClientVer(ClientVer::parse_body(body)?),
                uuid::PING => Message::PingEx(PingEx::parse_body(body)?),
                uuid::PONG => Message::PongEx(PongEx::parse_body(body)?),
                _ => Message::OtherSystem { id: h.id, body },
            },
        })
    }

    /// The message header
    #[must_use]
    pub fn header(&self) -> MsgHeader {
        match self {
            Message::OtherSystem { id, .. } => MsgHeader {
                system: true,
                id: *id,
            },
            Message::Game { id, .. } => MsgHeader {
                system: false,
                id: *id,
            },
            other => each_known!(other, m => m.header_of(), _ => MsgHeader::system(0)),
        }
    }

    /// Exact number of bytes [`Message::emit`] writes
    #[must_use]
    pub fn buffer_len(&self) -> usize {
        match self {
            Message::OtherSystem { id, body } => {
                MsgHeader {
                    system: true,
                    id: *id,
                }
                .buffer_len()
                    + body.len()
            }
            Message::Game { id, body } => {
                MsgHeader {
                    system: false,
                    id: *id,
                }
                .buffer_len()
                    + body.len()
            }
            other => each_known!(other, m => m.buffer_len(), _ => 0),
        }
    }

    /// Write the message; returns the bytes written
    ///
    /// # Errors
    /// [`BufferTooSmall`] with the exact size; nothing is written.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
        match self {
            Message::OtherSystem { id, body } => emit_raw(true, *id, body, out),
            Message::Game { id, body } => emit_raw(false, *id, body, out),
            other => each_known!(other, m => m.emit(out), _ => Ok(0)),
        }
    }
}

/// The header of a known message — helper for [`Message::header`]
trait HeaderOf {
    fn header_of(&self) -> MsgHeader;
}

/// `impl HeaderOf` for each message struct
macro_rules! header_of {
    ($($name:ident $(<$lt:lifetime>)?),* $(,)?) => {
        $( impl $(<$lt>)? HeaderOf for $name $(<$lt>)? {
            fn header_of(&self) -> MsgHeader { Self::HEADER }
        } )*
    };
}

header_of!(
    Info<'a>,
    MapChange<'a>,
    MapData<'a>,
    ConReady,
    Snap<'a>,
    SnapEmpty,
    SnapSingle<'a>,
    InputTiming,
    RconAuthStatus,
    RconLine<'a>,
    Ready,
    EnterGame,
    Input<'a>,
    RconCmd<'a>,
    RconAuth<'a>,
    RequestMapData,
    Ping,
    PingReply,
    RconCmdAdd<'a>,
    RconCmdRem<'a>,
    RconType,
    Capabilities,
    MapDetails<'a>,
    ClientVer<'a>,
    PingEx,
    PongEx,
);

/// A message given as header and raw body
fn emit_raw(system: bool, id: MsgId, body: &[u8], out: &mut [u8]) -> Result<usize, BufferTooSmall> {
    let h = MsgHeader { system, id };
    let len = h.buffer_len() + body.len();
    let dst = out.get_mut(..len).ok_or(BufferTooSmall { required: len })?;
    let mut p = Packer::new(dst);
    p.header(h)?;
    p.raw(body)?;
    Ok(len)
}

/// Write any message given as header and (already packed) body; returns the bytes written
///
/// This is the generic framing for game messages (e.g. Sv_Chat, Cl_Say) the crate does not
/// define: pack the fields with a [`Packer`] and wrap them here, or pack header and fields into
/// one buffer with [`Packer::header`].
///
/// # Errors
/// [`BufferTooSmall`] with the exact size; nothing is written.
pub fn emit_message(
    header: MsgHeader,
    body: &[u8],
    out: &mut [u8],
) -> Result<usize, BufferTooSmall> {
    emit_raw(header.system, header.id, body, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_snapshot_form_gives_its_delta_tick() {
        // the wire carries `tick - delta_tick`; `tick + 1` means a delta against the empty
        // snapshot (-1), and the subtraction wraps like the reference's int arithmetic
        let data = &[0u8; 2][..];
        for (tick, delta, delta_tick) in [(100, 3, 97), (80, 81, -1), (i32::MIN, 1, i32::MAX)] {
            let snap = Snap {
                tick,
                delta,
                num_parts: 2,
                part: 0,
                crc: 0,
                data,
            };
            assert_eq!(snap.delta_tick(), delta_tick);
            assert_eq!(SnapEmpty { tick, delta }.delta_tick(), delta_tick);
            let single = SnapSingle {
                tick,
                delta,
                crc: 0,
                data,
            };
            assert_eq!(single.delta_tick(), delta_tick);
        }
    }

    #[test]
    fn no_field_messages_are_one_byte() {
        let mut out = [0u8; 4];
        assert_eq!(Ready {}.emit(&mut out), Ok(1));
        assert_eq!(out[0], 0x1d);
        assert_eq!(EnterGame {}.emit(&mut out), Ok(1));
        assert_eq!(out[0], 0x1f);
        assert_eq!(ConReady {}.emit(&mut out), Ok(1));
        assert_eq!(out[0], 0x09);
        assert_eq!(Message::parse(&[0x2d]), Ok(Message::Ping(Ping {})));
    }

    #[test]
    fn wrong_message_is_unexpected() {
        assert_eq!(
            Ready::parse(&[0x1f]),
            Err(MsgError::Unexpected(MsgHeader::system(15)))
        );
    }

    #[test]
    fn input_from_values_round_trips() {
        let vals = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let msg = Input {
            ack_tick: 80,
            intended_tick: 82,
            input: InputInts::from_values(&vals),
        };
        let mut out = [0u8; 32];
        let n = msg.emit(&mut out).unwrap();
        // live capture: 21 90 01 92 01 28 + 10 × 00
        assert_eq!(
            &out[..n],
            &[0x21, 0x90, 0x01, 0x92, 0x01, 0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(Input::parse(&out[..n]), Ok(msg));
        let big = [0i32; 200];
        assert_eq!(InputInts::from_values(&big).len(), 128);
    }

    #[test]
    fn input_ints_compare_by_size_and_values_whatever_their_form() {
        let parsed = |vals: &[i32]| {
            let msg = Input {
                ack_tick: 1,
                intended_tick: 2,
                input: InputInts::from_values(vals),
            };
            let mut out = [0u8; 64];
            let n = msg.emit(&mut out).unwrap();
            (out, n)
        };
        let (bytes, n) = parsed(&[1, -2, 300]);
        let from_wire = Input::parse(&bytes[..n]).unwrap().input;
        // the packed (received) form equals the values form with the same ints
        assert_eq!(from_wire, InputInts::from_values(&[1, -2, 300]));
        assert_eq!(
            from_wire.iter().collect::<alloc::vec::Vec<_>>(),
            [1, -2, 300]
        );
        assert!(!from_wire.is_empty());
        assert_eq!(from_wire.len(), 3);
        // one int different, one more or one fewer: not equal
        assert_ne!(from_wire, InputInts::from_values(&[1, -2, 301]));
        assert_ne!(from_wire, InputInts::from_values(&[1, -2, 300, 0]));
        assert_ne!(from_wire, InputInts::from_values(&[1, -2]));
        let none = InputInts::from_values(&[]);
        assert!(none.is_empty());
        assert_eq!(none.size(), 0);
        let (bytes, n) = parsed(&[]);
        let empty_from_wire = Input::parse(&bytes[..n]).unwrap().input;
        assert!(empty_from_wire.is_empty());
        assert_eq!(empty_from_wire, none);
        // hashing agrees with equality (the forms hash alike), and the debug form lists the ints
        let hash = |v: &InputInts<'_>| {
            use core::hash::{Hash, Hasher};
            let mut h = std::hash::DefaultHasher::new();
            v.hash(&mut h);
            h.finish()
        };
        assert_eq!(
            hash(&from_wire),
            hash(&InputInts::from_values(&[1, -2, 300]))
        );
        assert_ne!(
            hash(&from_wire),
            hash(&InputInts::from_values(&[1, -2, 301]))
        );
        assert_eq!(std::format!("{from_wire:?}"), "[1, -2, 300]");
    }

    #[test]
    fn input_size_out_of_range() {
        // size 516 > 512
        assert_eq!(
            Input::parse(&[0x21, 0x01, 0x01, 0x84, 0x08]),
            Err(MsgError::BadValue)
        );
        assert_eq!(
            Input::parse(&[0x21, 0x01, 0x01, 0x40]),
            Err(MsgError::BadValue)
        );
    }
}
