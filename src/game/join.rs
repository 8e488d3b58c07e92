//! Joining a Teeworlds 0.6 / DDNet server: the steps after the connection is up, map download
//! included, as a helper that drives a [`Reliable`] client
//!
//! ```text
//! client                                   server
//! INFO "0.6 626fce9a778df4d4" (vital)   →
//!                                       ←  (DDNet: rcon-type, capabilities, map-details) MAP_CHANGE
//! REQUEST_MAP_DATA 0, 1, 2, ...         →  one per piece received in order
//!                                       ←  MAP_DATA ... (last = 1: whole file, CRC32 checked)
//! READY                                 →
//!                                       ←  (Sv_Motd) CON_READY
//! start info (a game message: the app)  →
//!                                       ←  (votes, tune params) Sv_ReadyToEnter
//! ENTERGAME                             →
//!                                       ←  snapshots (non-vital), chat, ...
//! ```
//!
//! [`Join`] keeps only the join's state (a few words): the map is never held; each piece comes
//! back as [`JoinEvent::MapData`], borrowed from the chunk, for the application to write where it
//! wants, and the CRC32 ([`Crc32`]) and size are checked at the last piece. Everything that is
//! game-specific — the start info (skin, name), player input — stays with the application;
//! [`JoinEvent::ConReady`] says when to send the start info. Every message the join does not
//! consume comes back as [`JoinEvent::Message`].
//!
//! ```
//! use tether_net::game::join::{Join, JoinEvent};
//! use tether_net::game::{Client, Reliable};
//! use tether_net::Instant;
//! # fn run(client: &mut Client<4, Reliable>, now: Instant) -> Result<(), tether_net::game::join::JoinError> {
//! let mut join = Join::new();
//! // on ClientEvent::Connected:
//! join.start(now, client, "")?; // queues INFO
//! // after every handle_input: every chunk to the join, then its due messages to the client
//! while let Some(chunk) = client.poll_chunk() {
//!     match join.handle_chunk(chunk.data)? {
//!         JoinEvent::MapData { offset, data, .. } => { /* write data at offset */ }
//!         JoinEvent::ConReady => { /* send the start info (after this loop) */ }
//!         _ => {}
//!     }
//! }
//! join.flush(now, client)?;
//! # Ok(()) }
//! ```
//!
//! Reference: DDNet `src/engine/client/client.cpp` (`ProcessServerPacket`), map download and the
//! join order as a 16.4 server runs it (`src/engine/server/server.cpp`).

use core::fmt;

use super::error::Error;
use super::layer::Reliable;
use super::msg::{game_id, EnterGame, Info, Message, MsgError, Ready, RequestMapData, VERSION_0_6};
use super::packer::{MsgId, Str};
use super::Client;
use crate::time::Instant;

/// CRC32 as zlib computes it (IEEE polynomial, reflected, initial value 0): what MAP_CHANGE
/// announces for the map file
///
/// ```
/// use tether_net::game::join::Crc32;
/// let mut c = Crc32::new();
/// c.update(b"1234");
/// c.update(b"56789");
/// assert_eq!(c.finish(), 0xcbf4_3926); // the standard check value of "123456789"
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Crc32(u32);

/// The CRC32 remainders of the 16 nibble values (polynomial 0xEDB88320), built at compile time:
/// 64 bytes of table, two lookups per byte
const CRC_NIBBLES: [u32; 16] = {
    let mut t = [0u32; 16];
    let mut i = 0;
    while i < 16 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 4 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

impl Crc32 {
    /// The CRC of nothing
    #[must_use]
    pub const fn new() -> Self {
        Crc32(0)
    }

    /// Continue with `data`
    pub fn update(&mut self, data: &[u8]) {
        let mut c = !self.0;
        for &b in data {
            c ^= u32::from(b);
            c = CRC_NIBBLES[(c & 0xF) as usize] ^ (c >> 4);
            c = CRC_NIBBLES[(c & 0xF) as usize] ^ (c >> 4);
        }
        self.0 = !c;
    }

    /// The CRC of everything so far
    #[must_use]
    pub const fn finish(&self) -> u32 {
        self.0
    }
}

/// Where a [`Join`] is
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum JoinState {
    /// [`Join::start`] not called yet
    Idle,
    /// INFO sent, waiting for MAP_CHANGE
    Info,
    /// Downloading the map (REQUEST_MAP_DATA / MAP_DATA)
    Downloading,
    /// READY sent, waiting for CON_READY
    Ready,
    /// CON_READY received: the application sends its start info; waiting for Sv_ReadyToEnter
    StartInfo,
    /// ENTERGAME sent: in the game (snapshots come)
    InGame,
}

/// What one chunk did to the join, borrowed from the chunk's data
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum JoinEvent<'a> {
    /// MAP_CHANGE: the server's map; the download of piece 0 was requested (call
    /// [`Join::skip_download`] instead when the application has this map already)
    MapChange {
        /// Map name
        name: Str<'a>,
        /// CRC32 of the file
        crc: u32,
        /// File size in bytes
        size: u32,
    },
    /// A piece of the map, in order: write `data` at `offset` of the file; the next piece was
    /// requested, or (`done`) this was the last one, the whole file's CRC32 and size match
    /// MAP_CHANGE and READY was sent (a mismatch is [`JoinError::MapMismatch`] instead)
    MapData {
        /// Offset of `data` in the file
        offset: u32,
        /// The bytes
        data: &'a [u8],
        /// Bytes received so far (`offset + data.len()`)
        received: u32,
        /// The file size
        size: u32,
        /// The last piece: the map is complete and checked
        done: bool,
    },
    /// CON_READY: send the start info now (Cl_StartInfo, a vital game message)
    ConReady,
    /// Sv_ReadyToEnter arrived and ENTERGAME was sent: the player is in the game
    EnteredGame,
    /// A snapshot (SNAP, SNAPEMPTY, SNAPSINGLE) for `tick`: the ack tick of the next INPUT
    Snapshot {
        /// Its game tick
        tick: i32,
    },
    /// A MAP_DATA the join ignores (wrong CRC, piece, or size, or not downloading), as DDNet
    /// does
    Ignored,
    /// Any other message, for the application
    Message(Message<'a>),
}

/// Why the join failed or a step could not be taken
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum JoinError {
    /// A message could not be queued on the client
    Send(Error),
    /// A chunk is not a readable message (DDNet ignores such chunks)
    Message(MsgError),
    /// MAP_CHANGE announced a negative size
    BadMapSize(i32),
    /// The downloaded map does not match MAP_CHANGE
    MapMismatch {
        /// CRC32 announced
        expected_crc: u32,
        /// CRC32 of the bytes received
        crc: u32,
        /// Size announced
        expected_size: u32,
        /// Bytes received
        size: u32,
    },
    /// [`Join::start`] was called twice
    AlreadyStarted,
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Send(e) => write!(f, "cannot send: {e}"),
            JoinError::Message(e) => write!(f, "unreadable message: {e}"),
            JoinError::BadMapSize(s) => write!(f, "map size {s}"),
            JoinError::MapMismatch {
                expected_crc,
                crc,
                expected_size,
                size,
            } => write!(
                f,
                "map mismatch: crc {crc:08x} (expected {expected_crc:08x}), {size} bytes \
                 (expected {expected_size})"
            ),
            JoinError::AlreadyStarted => f.write_str("join already started"),
        }
    }
}

impl core::error::Error for JoinError {}

impl From<Error> for JoinError {
    fn from(e: Error) -> Self {
        JoinError::Send(e)
    }
}

/// A client that can queue vital chunks: what [`Join`] drives (every [`Reliable`] client)
pub trait SendVital {
    /// Queue a vital chunk (see [`Client::send_vital`])
    ///
    /// # Errors
    /// The client's [`Error`].
    fn send_vital(&mut self, now: Instant, data: &[u8], flush: bool) -> Result<u16, Error>;
}

impl<const EVENTS: usize, const SB: usize, const SN: usize, const RB: usize, const RN: usize>
    SendVital for Client<EVENTS, Reliable<SB, SN, RB, RN>>
{
    fn send_vital(&mut self, now: Instant, data: &[u8], flush: bool) -> Result<u16, Error> {
        Client::send_vital(self, now, data, flush)
    }
}

/// The map being downloaded
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
struct Download {
    crc: u32,
    size: u32,
    next_piece: i32,
    received: u32,
    check: Crc32,
}

/// The join helper (see the [module docs](self)): the join's state machine, a few words of state
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Join {
    state: JoinState,
    map: Option<(u32, u32)>,
    download: Option<Download>,
    last_tick: Option<i32>,
    /// Map pieces to request, `first..=last`, not sent yet
    requests: Option<(i32, i32)>,
    /// READY not sent yet
    send_ready: bool,
    /// ENTERGAME not sent yet
    send_enter: bool,
}

impl Default for Join {
    fn default() -> Self {
        Self::new()
    }
}

/// Longest message the join sends: INFO with a 127-byte password
const MSG_BUF: usize = 160;

impl Join {
    /// A join that has not started
    #[must_use]
    pub const fn new() -> Self {
        Join {
            state: JoinState::Idle,
            map: None,
            download: None,
            last_tick: None,
            requests: None,
            send_ready: false,
            send_enter: false,
        }
    }

    /// Send INFO with the version DDNet 16.4 accepts (`0.6 626fce9a778df4d4`) and `password`
    /// (empty for none; cut to 127 bytes): call it once the client is connected
    ///
    /// # Errors
    /// [`JoinError::AlreadyStarted`], [`JoinError::Send`].
    pub fn start<C: SendVital>(
        &mut self,
        now: Instant,
        client: &mut C,
        password: &str,
    ) -> Result<(), JoinError> {
        if self.state != JoinState::Idle {
            return Err(JoinError::AlreadyStarted);
        }
        let info = Info {
            version: Str::new(VERSION_0_6),
            password: Str::new_limited(password, 127),
        };
        let mut buf = [0u8; MSG_BUF];
        let n = info.emit(&mut buf).map_err(Error::from)?;
        client.send_vital(now, &buf[..n], true)?;
        self.state = JoinState::Info;
        Ok(())
    }

    /// Handle one chunk the client delivered (its data, vital or not, straight from
    /// `poll_chunk`); the messages this makes due (map requests, READY, ENTERGAME) are sent by
    /// the next [`Join::flush`]
    ///
    /// # Errors
    /// [`JoinError::Message`] for a chunk that is no readable message (skip it, as DDNet does),
    /// [`JoinError::MapMismatch`] (the download failed: close), [`JoinError::BadMapSize`].
    pub fn handle_chunk<'a>(&mut self, data: &'a [u8]) -> Result<JoinEvent<'a>, JoinError> {
        let msg = Message::parse(data).map_err(JoinError::Message)?;
        Ok(match msg {
            Message::MapChange(m) => {
                let size = u32::try_from(m.size).map_err(|_| JoinError::BadMapSize(m.size))?;
                self.map = Some((m.crc, size));
                self.download = Some(Download {
                    crc: m.crc,
                    size,
                    next_piece: 0,
                    received: 0,
                    check: Crc32::new(),
                });
                self.state = JoinState::Downloading;
                if size == 0 {
                    // nothing to download (DDNet never announces an empty map)
                    self.finish_download()?;
                } else {
                    self.request(0);
                }
                JoinEvent::MapChange {
                    name: m.name,
                    crc: m.crc,
                    size,
                }
            }
            Message::MapData(m) => {
                let Some(d) = self.download.as_mut() else {
                    return Ok(JoinEvent::Ignored);
                };
                if m.crc != d.crc || m.chunk != d.next_piece || m.data.is_empty() {
                    return Ok(JoinEvent::Ignored);
                }
                let offset = d.received;
                d.received = d.received.saturating_add(m.data.len() as u32);
                d.check.update(m.data);
                d.next_piece += 1;
                let (received, size, next) = (d.received, d.size, d.next_piece);
                let done = m.last != 0 || received >= size;
                if done {
                    self.finish_download()?;
                } else {
                    self.request(next);
                }
                JoinEvent::MapData {
                    offset,
                    data: m.data,
                    received,
                    size,
                    done,
                }
            }
            Message::ConReady(_) => {
                if self.state == JoinState::Ready {
                    self.state = JoinState::StartInfo;
                }
                JoinEvent::ConReady
            }
            Message::Game {
                id: MsgId::Ordinal(game_id::SV_READY_TO_ENTER),
                ..
            } if self.state == JoinState::StartInfo => {
                self.send_enter = true;
                self.state = JoinState::InGame;
                JoinEvent::EnteredGame
            }
            Message::SnapSingle(s) => self.snapshot(s.tick),
            Message::Snap(s) => self.snapshot(s.tick),
            Message::SnapEmpty(s) => self.snapshot(s.tick),
            other => JoinEvent::Message(other),
        })
    }

    /// The application has the announced map already (same CRC and size): skip the download;
    /// READY goes out with the next [`Join::flush`]
    pub fn skip_download(&mut self) {
        self.download = None;
        self.requests = None;
        self.send_ready = true;
        self.state = JoinState::Ready;
    }

    /// Send what the chunks handled since the last call made due, in order: map piece requests,
    /// READY, ENTERGAME (each vital, flushed). Call it after reading the chunks of an input.
    ///
    /// # Errors
    /// [`JoinError::Send`] (e.g. the client's resend buffer is full): what was not sent stays
    /// due for the next call.
    pub fn flush<C: SendVital>(&mut self, now: Instant, client: &mut C) -> Result<(), JoinError> {
        while let Some((first, last)) = self.requests {
            let mut buf = [0u8; 8];
            let n = RequestMapData { chunk: first }
                .emit(&mut buf)
                .map_err(Error::from)?;
            client.send_vital(now, &buf[..n], true)?;
            self.requests = (first < last).then_some((first + 1, last));
        }
        let mut b = [0u8; 4];
        if self.send_ready {
            let n = Ready {}.emit(&mut b).map_err(Error::from)?;
            client.send_vital(now, &b[..n], true)?;
            self.send_ready = false;
        }
        if self.send_enter {
            let n = EnterGame {}.emit(&mut b).map_err(Error::from)?;
            client.send_vital(now, &b[..n], true)?;
            self.send_enter = false;
        }
        Ok(())
    }

    /// True when [`Join::flush`] has something to send
    #[must_use]
    pub const fn wants_flush(&self) -> bool {
        self.requests.is_some() || self.send_ready || self.send_enter
    }

    /// Where the join is
    #[must_use]
    pub const fn state(&self) -> JoinState {
        self.state
    }

    /// CRC32 and size of the map MAP_CHANGE announced
    #[must_use]
    pub const fn map(&self) -> Option<(u32, u32)> {
        self.map
    }

    /// Download progress: bytes received, file size (while downloading)
    #[must_use]
    pub fn progress(&self) -> Option<(u32, u32)> {
        self.download.map(|d| (d.received, d.size))
    }

    /// The tick of the latest snapshot (the ack tick a client's INPUT carries)
    #[must_use]
    pub const fn last_snapshot_tick(&self) -> Option<i32> {
        self.last_tick
    }

    fn snapshot(&mut self, tick: i32) -> JoinEvent<'static> {
        if self.last_tick.is_none_or(|t| tick > t) {
            self.last_tick = Some(tick);
        }
        JoinEvent::Snapshot { tick }
    }

    /// Check the downloaded map; READY becomes due
    fn finish_download(&mut self) -> Result<(), JoinError> {
        let Some(d) = self.download.take() else {
            return Ok(());
        };
        let crc = d.check.finish();
        if crc != d.crc || d.received != d.size {
            return Err(JoinError::MapMismatch {
                expected_crc: d.crc,
                crc,
                expected_size: d.size,
                size: d.received,
            });
        }
        self.send_ready = true;
        self.state = JoinState::Ready;
        Ok(())
    }

    /// Map piece `piece` becomes due for a request
    fn request(&mut self, piece: i32) {
        self.requests = Some(match self.requests {
            Some((first, _)) => (first, piece),
            None => (piece, piece),
        });
    }
}
