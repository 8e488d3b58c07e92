//! Serving the join of a Teeworlds 0.6 / DDNet client: the server's side of [`join`](super::join),
//! one [`Serve`] per peer of a [`Reliable`] server
//!
//! ```text
//! client                                server (what Serve queues)
//! INFO "0.6 626fce9a778df4d4" (vital) →
//!                                     ← rcon-type, capabilities, map-details (SHA-256), MAP_CHANGE
//!                                       (another version: CLOSE "Wrong version. Server is
//!                                       running '0.6 626fce9a778df4d4' and client '<v>'")
//! REQUEST_MAP_DATA 0                  → ← MAP_DATA 0..=15 (a window of 16 pieces of 896 bytes)
//! REQUEST_MAP_DATA k (in order)       → ← MAP_DATA k + 15
//! READY                               → ← Sv_Motd, CON_READY
//! Cl_StartInfo                        → ← Sv_VoteClearOptions, Sv_ReadyToEnter
//! ENTERGAME                           →   in the game: the application sends snapshots
//! ```
//!
//! [`Serve`] keeps only the join's state (about 330 bytes, most of it the queue of due pieces and
//! a refusal's CLOSE text): the map stays with the application, which gives a [`MapSource`] (a
//! `&[u8]` in memory, a file, flash) from which each piece is read into a stack buffer when it is
//! sent. What the server offers — map name, CRC32, size,
//! SHA-256, message of the day, password — is an [`Offer`] the application passes with every
//! call. Every message the join does not consume (INPUT, Cl_Say, `clientver@ddnet.tw`, ...) comes
//! back as [`ServeEvent::Message`]; snapshots are the application's ([`empty_snapshot`] writes
//! the smallest one a client accepts).
//!
//! The download copies DDNet 16.4: pieces of [`MAP_PIECE`] bytes; the first request of piece 0
//! sends pieces 0 to [`MAP_WINDOW`] − 1 and then, like every request of the next piece in order,
//! one more piece [`MAP_WINDOW`] ahead, so 16 pieces are in flight; any other request gets the
//! piece asked for. Requests for pieces outside the map are ignored, and at most
//! `2 × pieces + 16` requests are answered per join (DDNet since 17 caps them the same way).
//!
//! ```
//! use tether_net::game::serve::{Offer, Serve, ServeEvent};
//! use tether_net::game::{Reliable, Server};
//! use tether_net::Instant;
//! # fn run(server: &mut Server<u32, 4, 16, Reliable>, now: Instant, map: &[u8], crc: u32,
//! #        joins: &mut [Serve; 4]) -> Result<(), tether_net::game::serve::ServeError> {
//! let offer = Offer::new("ctf1", crc, map.len() as u32).with_motd("welcome");
//! // after every handle_input: each chunk to the peer's Serve, then flush what became due
//! while let Some((peer, chunk)) = server.poll_chunk() {
//!     let serve = &mut joins[peer as usize];
//!     match serve.handle_chunk(&offer, chunk)? {
//!         ServeEvent::Entered => { /* start sending snapshots to peer */ }
//!         ServeEvent::Message(m) => { /* INPUT, chat, ... */ }
//!         _ => {}
//!     }
//! }
//! for (peer, serve) in joins.iter_mut().enumerate() {
//!     if serve.wants_flush() {
//!         serve.flush(now, server, peer as u32, &offer, &mut &map[..])?;
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Reference: DDNet 16.4 `src/engine/server/server.cpp` (`ProcessClientPacket`, `SendMap`,
//! `SendMapData`, `SendConnectionReady`) and `src/game/server/gamecontext.cpp` (start info,
//! ready-to-enter).

use core::fmt;
use core::fmt::Write as _;

use heapless::Deque;

use super::chunk::Chunk;
use super::error::Error;
use super::layer::Reliable;
use super::msg::{
    emit_message, game_id, Capabilities, ConReady, MapChange, MapData, MapDetails, Message,
    MsgError, PongEx, RconType, SnapEmpty, VERSION_0_6,
};
use super::packer::{MsgHeader, MsgId, Packer, Str};
use super::wire::MAX_REASON_LEN;
use super::Server;
use crate::io::BufferTooSmall;
use crate::time::Instant;

/// Bytes per map piece (DDNet 16.4 and vanilla 0.6.4: `1024 − 128`)
pub const MAP_PIECE: usize = 896;
/// Pieces DDNet 16.4 sends ahead on the first request (`sv_map_window`); one more piece follows
/// each request in order, so `MAP_WINDOW + 1` are in flight
pub const MAP_WINDOW: i32 = 15;
/// The capabilities DDNet 16.4 announces (version 5): DDNet, chat timeout code, any player
/// flag, `ping@ddnet.tw`, dummies, synchronised weapon input
pub const CAPABILITIES_16_4: i32 = 0x3f;
/// The reason of the CLOSE for a wrong password (DDNet's wording)
pub const WRONG_PASSWORD: &str = "Wrong password";
/// Pieces queued for sending at most (a full window plus room for out-of-order requests)
const DUE_PIECES: usize = 32;
/// The start of DDNet's CLOSE reason for a wrong version
const WRONG_VERSION_HEAD: &str = "Wrong version. Server is running '0.6 626fce9a778df4d4' and \
                                  client '";

/// Where the map's bytes come from: piece reads at an offset
pub trait MapSource {
    /// Fill `out` completely with the map's bytes from `offset` on (the range is always inside
    /// the size the [`Offer`] announces)
    ///
    /// # Errors
    /// [`MapReadError`] when the bytes cannot be read (the piece is not sent).
    fn read_at(&mut self, offset: u32, out: &mut [u8]) -> Result<(), MapReadError>;
}

/// The map in memory
impl MapSource for &[u8] {
    fn read_at(&mut self, offset: u32, out: &mut [u8]) -> Result<(), MapReadError> {
        let start = offset as usize;
        let src = start
            .checked_add(out.len())
            .and_then(|end| self.get(start..end))
            .ok_or(MapReadError)?;
        out.copy_from_slice(src);
        Ok(())
    }
}

/// A [`MapSource`] could not give the bytes asked for
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MapReadError;

impl fmt::Display for MapReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("map bytes not readable")
    }
}

impl core::error::Error for MapReadError {}

/// What the server offers a joining client: the map (name, CRC32, size, optional SHA-256), the
/// message of the day, the password and the capabilities announced
///
/// Borrowed; pass the same offer to every call of a join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct Offer<'a> {
    name: &'a str,
    crc: u32,
    size: u32,
    sha256: Option<[u8; 32]>,
    motd: &'a str,
    password: &'a str,
    capabilities: Option<i32>,
}

impl<'a> Offer<'a> {
    /// A map `name` (cut to 127 bytes) whose file has this CRC32 (zlib's, see
    /// [`Crc32`](super::join::Crc32)) and `size` (clamped to `i32::MAX`); no SHA-256, empty
    /// message of the day, no password, DDNet 16.4's capabilities
    #[must_use]
    pub const fn new(name: &'a str, crc: u32, size: u32) -> Self {
        Offer {
            name,
            crc,
            size: if size > i32::MAX as u32 {
                i32::MAX as u32
            } else {
                size
            },
            sha256: None,
            motd: "",
            password: "",
            capabilities: Some(CAPABILITIES_16_4),
        }
    }

    /// The map's SHA-256 (see [`Sha256`](super::sha256::Sha256)): sent in
    /// `map-details@ddnet.tw` before MAP_CHANGE, as DDNet does; DDNet clients then check the
    /// download against it and store it as `<name>_<sha256>.map`
    #[must_use]
    pub const fn with_sha256(mut self, sha256: [u8; 32]) -> Self {
        self.sha256 = Some(sha256);
        self
    }

    /// The message of the day (Sv_Motd, sent with CON_READY; cut to 900 bytes)
    #[must_use]
    pub const fn with_motd(mut self, motd: &'a str) -> Self {
        self.motd = motd;
        self
    }

    /// A password INFO must carry (empty: none); a wrong one is refused with
    /// [`WRONG_PASSWORD`]
    #[must_use]
    pub const fn with_password(mut self, password: &'a str) -> Self {
        self.password = password;
        self
    }

    /// The `capabilities@ddnet.tw` flags to announce (version 5), or `None` to send neither
    /// `rcon-type@ddnet.tw` nor capabilities (a vanilla 0.6 server); default
    /// [`CAPABILITIES_16_4`]
    #[must_use]
    pub const fn with_capabilities(mut self, flags: Option<i32>) -> Self {
        self.capabilities = flags;
        self
    }

    /// Map name
    #[must_use]
    pub const fn name(&self) -> &'a str {
        self.name
    }

    /// CRC32 of the map file
    #[must_use]
    pub const fn crc(&self) -> u32 {
        self.crc
    }

    /// Size of the map file in bytes
    #[must_use]
    pub const fn size(&self) -> u32 {
        self.size
    }

    /// SHA-256 of the map file, when given
    #[must_use]
    pub const fn sha256(&self) -> Option<[u8; 32]> {
        self.sha256
    }

    /// Number of pieces of [`MAP_PIECE`] bytes
    #[must_use]
    pub const fn pieces(&self) -> u32 {
        self.size.div_ceil(MAP_PIECE as u32)
    }
}

/// Where a [`Serve`] is (DDNet 16.4's client states)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ServeState {
    /// Connected, waiting for INFO
    Auth,
    /// INFO accepted, map announced: downloading (REQUEST_MAP_DATA) until READY
    Connecting,
    /// READY received (CON_READY sent), waiting for the start info and ENTERGAME
    Ready,
    /// ENTERGAME accepted: in the game
    InGame,
    /// INFO refused: the CLOSE is due or sent; everything else is ignored
    Refused,
}

/// Why a [`Serve`] refused a client
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Refusal {
    /// INFO carried another version string than [`VERSION_0_6`]
    WrongVersion,
    /// INFO carried another password than the [`Offer`]'s
    WrongPassword,
}

/// Why a chunk changed nothing (DDNet 16.4 ignores the same inputs silently)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Ignored {
    /// A join message that was not vital
    NotVital,
    /// A join message in a state where it means nothing (a second INFO, REQUEST_MAP_DATA or
    /// READY before INFO, ENTERGAME before READY and the start info, anything after a refusal)
    WrongState,
    /// REQUEST_MAP_DATA for a piece outside the map
    OutOfRange,
    /// REQUEST_MAP_DATA beyond `2 × pieces + 16` requests in this join
    TooManyRequests,
    /// A second start info (processed once per player)
    Repeated,
}

/// What one chunk did to the join, borrowed from the chunk's data
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ServeEvent<'a> {
    /// INFO accepted: the map announcement (capabilities, map details, MAP_CHANGE) is due
    Info {
        /// The password the client sent (already checked against the [`Offer`])
        password: Str<'a>,
    },
    /// INFO refused: the CLOSE with DDNet's wording is due ([`Serve::refusal_reason`]); the
    /// peer is gone once [`Serve::flush`] sent it
    Refused(Refusal),
    /// REQUEST_MAP_DATA answered: `queued` pieces became due (16 for the first request)
    MapRequest {
        /// Piece asked for
        piece: i32,
        /// Pieces queued by this request
        queued: u8,
    },
    /// READY: Sv_Motd and CON_READY are due (`first`: the client is ready for the first time,
    /// DDNet creates the player then)
    Ready {
        /// First READY of this join
        first: bool,
    },
    /// The start info (Cl_StartInfo): Sv_VoteClearOptions and Sv_ReadyToEnter are due
    StartInfo {
        /// Player name
        name: Str<'a>,
        /// Clan
        clan: Str<'a>,
        /// Skin
        skin: Str<'a>,
    },
    /// ENTERGAME accepted: the client is in the game; send it snapshots
    Entered,
    /// The chunk changed nothing (see [`Ignored`])
    Ignored(Ignored),
    /// `ping@ddnet.tw`: the answer (`pong@ddnet.tw`, same id) is due
    Ping,
    /// Any other message, for the application (INPUT, Cl_Say, `clientver@ddnet.tw`, ...)
    Message(Message<'a>),
}

/// Why a step of the join could not be taken
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ServeError {
    /// The server refused a message (other than a full resend buffer, which leaves it due)
    Send(Error),
    /// A chunk is not a readable message (DDNet ignores such chunks)
    Message(MsgError),
    /// The [`MapSource`] could not give a piece (it stays due)
    Map(MapReadError),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::Send(e) => write!(f, "cannot send: {e}"),
            ServeError::Message(e) => write!(f, "unreadable message: {e}"),
            ServeError::Map(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for ServeError {}

impl From<Error> for ServeError {
    fn from(e: Error) -> Self {
        ServeError::Send(e)
    }
}

impl From<BufferTooSmall> for ServeError {
    fn from(e: BufferTooSmall) -> Self {
        ServeError::Send(e.into())
    }
}

/// A server that can queue vital chunks for a peer and close it: what [`Serve`] drives (every
/// [`Reliable`] server)
pub trait ServeTo<P> {
    /// Queue a vital chunk for `peer` (see [`Server::send_vital`])
    ///
    /// # Errors
    /// The server's [`Error`].
    fn send_vital(&mut self, now: Instant, peer: P, data: &[u8], flush: bool)
        -> Result<u16, Error>;

    /// Close `peer` with `reason` (see [`Server::close`])
    ///
    /// # Errors
    /// The server's [`Error`].
    fn close(&mut self, now: Instant, peer: P, reason: &str) -> Result<(), Error>;
}

impl<
        P: Copy + Eq + core::hash::Hash,
        const PEERS: usize,
        const EVENTS: usize,
        const SB: usize,
        const SN: usize,
        const RB: usize,
        const RN: usize,
    > ServeTo<P> for Server<P, PEERS, EVENTS, Reliable<SB, SN, RB, RN>>
{
    fn send_vital(
        &mut self,
        now: Instant,
        peer: P,
        data: &[u8],
        flush: bool,
    ) -> Result<u16, Error> {
        Server::send_vital(self, now, peer, data, flush)
    }

    fn close(&mut self, now: Instant, peer: P, reason: &str) -> Result<(), Error> {
        Server::close(self, now, peer, reason)
    }
}

/// Messages due, in the order [`Serve::flush`] sends them
mod due {
    pub(super) const RCON_TYPE: u16 = 1; // bit 0
    pub(super) const CAPABILITIES: u16 = 1 << 1;
    pub(super) const MAP_DETAILS: u16 = 1 << 2;
    pub(super) const MAP_CHANGE: u16 = 1 << 3;
    // map pieces come here
    pub(super) const MOTD: u16 = 1 << 4;
    pub(super) const CON_READY: u16 = 1 << 5;
    pub(super) const VOTE_CLEAR: u16 = 1 << 6;
    pub(super) const READY_TO_ENTER: u16 = 1 << 7;
    pub(super) const PONG: u16 = 1 << 8;
    pub(super) const CLOSE: u16 = 1 << 9;
}

/// The server side of one client's join (see the [module docs](self)): 328 bytes on 64-bit targets
#[derive(Debug, Clone)]
pub struct Serve {
    state: ServeState,
    start_info: bool,
    /// The piece whose in-order request advances the window
    next: i32,
    /// REQUEST_MAP_DATA answered in this join
    requests: u32,
    due: u16,
    pieces: Deque<i32, DUE_PIECES>,
    /// Pieces that did not fit into `pieces` (a hostile client's out-of-order requests)
    dropped: u32,
    ping_id: [u8; 16],
    refusal: Option<Refusal>,
    /// The CLOSE reason of a refusal
    reason: heapless::String<MAX_REASON_LEN>,
}

#[cfg(feature = "defmt")]
impl defmt::Format for Serve {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "Serve {{ state: {}, start_info: {}, next: {}, requests: {}, due: {=u16:#x}, pieces due: {}, dropped: {}, refusal: {} }}",
            self.state,
            self.start_info,
            self.next,
            self.requests,
            self.due,
            self.pieces.len(),
            self.dropped,
            self.refusal
        );
    }
}

impl Default for Serve {
    fn default() -> Self {
        Self::new()
    }
}

impl Serve {
    /// A join waiting for INFO (make one when the peer connects; replace it on a DDNet rejoin)
    #[must_use]
    pub const fn new() -> Self {
        Serve {
            state: ServeState::Auth,
            start_info: false,
            next: 0,
            requests: 0,
            due: 0,
            pieces: Deque::new(),
            dropped: 0,
            ping_id: [0; 16],
            refusal: None,
            reason: heapless::String::new(),
        }
    }

    /// Handle one chunk the peer sent (straight from `poll_chunk`); the messages this makes due
    /// are sent by the next [`Serve::flush`]
    ///
    /// INFO, REQUEST_MAP_DATA, READY, the start info and ENTERGAME count only when vital (DDNet
    /// 16.4 ignores them otherwise).
    ///
    /// # Errors
    /// [`ServeError::Message`] for a chunk that is no readable message (skip it, as DDNet does).
    pub fn handle_chunk<'a>(
        &mut self,
        offer: &Offer<'_>,
        chunk: Chunk<'a>,
    ) -> Result<ServeEvent<'a>, ServeError> {
        let msg = Message::parse(chunk.data).map_err(ServeError::Message)?;
        let vital = chunk.flags.vital;
        let join_msg = matches!(
            msg,
            Message::Info(_)
                | Message::RequestMapData(_)
                | Message::Ready(_)
                | Message::EnterGame(_)
                | Message::Game {
                    id: MsgId::Ordinal(game_id::CL_START_INFO),
                    ..
                }
        );
        if join_msg && !vital {
            return Ok(ServeEvent::Ignored(Ignored::NotVital));
        }
        if self.state == ServeState::Refused {
            return Ok(ServeEvent::Ignored(Ignored::WrongState));
        }
        Ok(match msg {
            Message::Info(info) => {
                if self.state != ServeState::Auth {
                    return Ok(ServeEvent::Ignored(Ignored::WrongState));
                }
                if info.version.as_bytes() != VERSION_0_6.as_bytes() {
                    self.refuse(Refusal::WrongVersion, info.version);
                    return Ok(ServeEvent::Refused(Refusal::WrongVersion));
                }
                if info.password.as_bytes() != offer.password.as_bytes() {
                    self.refuse(Refusal::WrongPassword, Str::EMPTY);
                    return Ok(ServeEvent::Refused(Refusal::WrongPassword));
                }
                self.state = ServeState::Connecting;
                self.next = 0;
                self.due |= due::MAP_CHANGE;
                if offer.capabilities.is_some() {
                    self.due |= due::RCON_TYPE | due::CAPABILITIES;
                }
                if offer.sha256.is_some() {
                    self.due |= due::MAP_DETAILS;
                }
                ServeEvent::Info {
                    password: info.password,
                }
            }
            Message::RequestMapData(r) => self.request(offer, r.chunk),
            Message::Ready(_) => {
                if self.state == ServeState::Auth {
                    return Ok(ServeEvent::Ignored(Ignored::WrongState));
                }
                let first = self.state == ServeState::Connecting;
                if first {
                    self.state = ServeState::Ready;
                    self.due |= due::MOTD;
                }
                // DDNet answers every READY
                self.due |= due::CON_READY;
                ServeEvent::Ready { first }
            }
            Message::Game {
                id: MsgId::Ordinal(game_id::CL_START_INFO),
                ..
            } => {
                if !matches!(self.state, ServeState::Ready | ServeState::InGame) {
                    return Ok(ServeEvent::Ignored(Ignored::WrongState));
                }
                if self.start_info {
                    return Ok(ServeEvent::Ignored(Ignored::Repeated));
                }
                let Ok(si) = super::msg::StartInfo::parse(chunk.data) else {
                    return Ok(ServeEvent::Ignored(Ignored::WrongState));
                };
                self.start_info = true;
                self.due |= due::VOTE_CLEAR | due::READY_TO_ENTER;
                ServeEvent::StartInfo {
                    name: si.name,
                    clan: si.clan,
                    skin: si.skin,
                }
            }
            Message::EnterGame(_) => {
                if self.state != ServeState::Ready || !self.start_info {
                    return Ok(ServeEvent::Ignored(Ignored::WrongState));
                }
                self.state = ServeState::InGame;
                ServeEvent::Entered
            }
            Message::PingEx(p) => {
                self.ping_id = p.id;
                self.due |= due::PONG;
                ServeEvent::Ping
            }
            other => ServeEvent::Message(other),
        })
    }

    /// Send what became due since the last call, in the join's order: the map announcement,
    /// map pieces, Sv_Motd and CON_READY, Sv_VoteClearOptions and Sv_ReadyToEnter, a pong, or
    /// the CLOSE of a refusal. Call it after the chunks of an input were handled, and again
    /// after later inputs of the peer while [`Serve::wants_flush`] (its acks make room).
    ///
    /// A full resend buffer ([`Error::TooManyInFlight`]) or CLOSE queue ([`Error::QueueFull`])
    /// stops the call without an error: the rest stays due.
    ///
    /// # Errors
    /// [`ServeError::Send`] for other refusals of the server (e.g. [`Error::UnknownPeer`]),
    /// [`ServeError::Map`] when `map` fails (that piece stays due).
    pub fn flush<P: Copy, S: ServeTo<P>, M: MapSource>(
        &mut self,
        now: Instant,
        server: &mut S,
        peer: P,
        offer: &Offer<'_>,
        map: &mut M,
    ) -> Result<(), ServeError> {
        match self.flush_inner(now, server, peer, offer, map) {
            Err(ServeError::Send(Error::TooManyInFlight | Error::QueueFull)) => Ok(()),
            other => other,
        }
    }

    fn flush_inner<P: Copy, S: ServeTo<P>, M: MapSource>(
        &mut self,
        now: Instant,
        server: &mut S,
        peer: P,
        offer: &Offer<'_>,
        map: &mut M,
    ) -> Result<(), ServeError> {
        let mut buf = [0u8; 1024];
        if self.due & due::CLOSE != 0 {
            server.close(now, peer, &self.reason)?;
            self.due = 0;
            self.pieces.clear();
            return Ok(());
        }
        let name = Str::new_limited(offer.name, MAX_REASON_LEN);
        let size = offer.size as i32;
        // one due message: written into `buf` only when due, sent, then no longer due
        macro_rules! due_msg {
            ($bit:expr, $flush:expr, $emit:expr) => {
                if self.due & $bit != 0 {
                    let n = $emit?;
                    server.send_vital(now, peer, &buf[..n], $flush)?;
                    self.due &= !$bit;
                }
            };
        }
        due_msg!(
            due::RCON_TYPE,
            false,
            RconType {
                username_required: 0
            }
            .emit(&mut buf)
        );
        due_msg!(
            due::CAPABILITIES,
            false,
            Capabilities {
                version: 5,
                flags: offer.capabilities.unwrap_or(0),
            }
            .emit(&mut buf)
        );
        due_msg!(
            due::MAP_DETAILS,
            false,
            MapDetails {
                name,
                sha256: offer.sha256.unwrap_or([0; 32]),
                crc: offer.crc,
                size,
                url: Str::EMPTY,
            }
            .emit(&mut buf)
        );
        due_msg!(
            due::MAP_CHANGE,
            true,
            MapChange {
                name,
                crc: offer.crc,
                size,
            }
            .emit(&mut buf)
        );
        while let Some(&k) = self.pieces.front() {
            let mut piece = [0u8; MAP_PIECE];
            // queued pieces are inside the map (checked by `request`)
            let offset = (k as u32).saturating_mul(MAP_PIECE as u32);
            let len = offer.size.saturating_sub(offset).min(MAP_PIECE as u32) as usize;
            map.read_at(offset, &mut piece[..len])
                .map_err(ServeError::Map)?;
            let n = MapData {
                last: i32::from(offset as usize + len >= offer.size as usize),
                crc: offer.crc,
                chunk: k,
                data: &piece[..len],
            }
            .emit(&mut buf)?;
            server.send_vital(now, peer, &buf[..n], true)?;
            self.pieces.pop_front();
        }
        due_msg!(due::MOTD, false, {
            let mut p = Packer::new(&mut buf);
            p.header(MsgHeader::game(game_id::SV_MOTD))
                .and_then(|()| p.str(Str::new_limited(offer.motd, 900)))
                .map(|()| p.written())
        });
        due_msg!(due::CON_READY, true, ConReady {}.emit(&mut buf));
        due_msg!(
            due::VOTE_CLEAR,
            false,
            emit_message(
                MsgHeader::game(game_id::SV_VOTE_CLEAR_OPTIONS),
                &[],
                &mut buf
            )
        );
        due_msg!(
            due::READY_TO_ENTER,
            true,
            emit_message(MsgHeader::game(game_id::SV_READY_TO_ENTER), &[], &mut buf)
        );
        due_msg!(due::PONG, true, PongEx { id: self.ping_id }.emit(&mut buf));
        Ok(())
    }

    /// REQUEST_MAP_DATA `k`: DDNet 16.4's window (see the module docs)
    fn request(&mut self, offer: &Offer<'_>, k: i32) -> ServeEvent<'static> {
        if self.state == ServeState::Auth {
            return ServeEvent::Ignored(Ignored::WrongState);
        }
        let pieces = offer.pieces();
        if k < 0 || k as u32 >= pieces {
            return ServeEvent::Ignored(Ignored::OutOfRange);
        }
        let limit = pieces
            .saturating_mul(2)
            .saturating_add(MAP_WINDOW as u32 + 1);
        if self.requests >= limit {
            return ServeEvent::Ignored(Ignored::TooManyRequests);
        }
        self.requests += 1;
        let mut queued = 0u8;
        if k != self.next {
            queued += self.queue_piece(k, pieces);
        } else {
            if k == 0 {
                for p in 0..MAP_WINDOW {
                    queued += self.queue_piece(p, pieces);
                }
            }
            queued += self.queue_piece(MAP_WINDOW.saturating_add(self.next), pieces);
            self.next = self.next.saturating_add(1);
        }
        ServeEvent::MapRequest { piece: k, queued }
    }

    /// Queue piece `k` when it is inside the map and there is room; 1 when queued
    fn queue_piece(&mut self, k: i32, pieces: u32) -> u8 {
        if k < 0 || k as u32 >= pieces {
            return 0;
        }
        if self.pieces.push_back(k).is_err() {
            self.dropped = self.dropped.saturating_add(1);
            return 0;
        }
        1
    }

    /// Refuse the client: the CLOSE becomes due, nothing else is sent
    fn refuse(&mut self, why: Refusal, version: Str<'_>) {
        self.state = ServeState::Refused;
        self.refusal = Some(why);
        self.due = due::CLOSE;
        self.pieces.clear();
        self.reason.clear();
        match why {
            Refusal::WrongVersion => {
                // the client's string as DDNet prints it (control characters as spaces),
                // cut so that the closing quote fits into the 127 bytes of a CLOSE
                let room = MAX_REASON_LEN - WRONG_VERSION_HEAD.len() - 1;
                let text = version.to_text::<{ MAX_REASON_LEN }>();
                let mut end = text.len().min(room);
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                let _ = write!(self.reason, "{WRONG_VERSION_HEAD}{}'", &text[..end]);
            }
            Refusal::WrongPassword => {
                let _ = self.reason.push_str(WRONG_PASSWORD);
            }
        }
    }

    /// True when [`Serve::flush`] has something to send
    #[must_use]
    pub fn wants_flush(&self) -> bool {
        self.due != 0 || !self.pieces.is_empty()
    }

    /// Where the join is
    #[must_use]
    pub const fn state(&self) -> ServeState {
        self.state
    }

    /// True once ENTERGAME was accepted
    #[must_use]
    pub fn in_game(&self) -> bool {
        self.state == ServeState::InGame
    }

    /// Why INFO was refused, if it was
    #[must_use]
    pub const fn refusal(&self) -> Option<Refusal> {
        self.refusal
    }

    /// The CLOSE reason of a refusal (DDNet's wording), if INFO was refused
    #[must_use]
    pub fn refusal_reason(&self) -> Option<&str> {
        self.refusal.map(|_| self.reason.as_str())
    }

    /// Map pieces waiting to be sent
    #[must_use]
    pub fn pieces_due(&self) -> usize {
        self.pieces.len()
    }

    /// REQUEST_MAP_DATA answered so far
    #[must_use]
    pub const fn requests(&self) -> u32 {
        self.requests
    }

    /// Pieces not queued because the queue of due pieces was full
    #[must_use]
    pub const fn dropped(&self) -> u32 {
        self.dropped
    }
}

/// Write the smallest snapshot a DDNet client accepts for `tick`: SNAPEMPTY against the empty
/// snapshot (delta tick −1); send it non-vital (`send_non_vital`), as DDNet sends snapshots.
/// Returns the length.
///
/// # Errors
/// [`BufferTooSmall`] with the exact size; nothing is written.
pub fn empty_snapshot(tick: i32, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
    SnapEmpty {
        tick,
        delta: tick.wrapping_add(1),
    }
    .emit(out)
}

#[cfg(test)]
mod tests;
