//! Teeworlds 0.6 / DDNet over UDP: the control plane (KEEP_ALIVE, CONNECT, CONNECT_ACCEPT,
//! ACCEPT, CLOSE) and an opt-in chunk layer (vital reliability, Huffman, system messages)
//!
//! * [`wire`]: byte layout (header, control messages, chunk pass-through, ack rule), no state.
//! * [`token`]: stateless DDNet security tokens keyed by a server [`TokenSecret`].
//! * [`chunk`], [`huffman`], [`packer`], [`msg`], [`connless`], [`vital`]: the chunk layer's
//!   codecs and its reliable channel.
//! * [`Client`]: connects (DDNet token form by default, vanilla on request), keeps the
//!   connection alive, detects timeouts, closes with a reason; recovers from forged
//!   CONNECT_ACCEPTs; queries server info.
//! * [`Server`]: admits DDNet clients statelessly (no state before a valid ACCEPT, no reply
//!   larger than its request), handles vanilla clients by [`VanillaPolicy`], keeps up to `PEERS`
//!   peers alive, closes peers and shuts down; resets a peer on DDNet's "rejoin"; hands
//!   server-info requests to the application within a rate limit.
//! * The chunk layer is a choice in the type: `Client<EVENTS, L>` / `Server<P, PEERS, EVENTS, L>`
//!   with `L` = [`ControlOnly`] (default: chunk packets pass through, no extra memory) or
//!   [`Reliable`] (a vital channel per connection: in-order exactly-once delivery, resends,
//!   compression; see [`Reliable`]).
//! * [`join`]: the join of a server (INFO, map download with CRC check, READY, ENTERGAME) as a
//!   helper over a [`Reliable`] client.
//! * [`serve`]: the server side of a join (version check, map announcement, map download from a
//!   caller byte source with DDNet's window, ready-to-enter, ENTERGAME) as a helper per peer of
//!   a [`Reliable`] server; [`sha256`] for the map hash DDNet clients check.
//!
//! Both machines follow the crate's run loop with inherent methods (`handle_input`,
//! `handle_timeout`, `poll_transmit`, `poll_event`, `poll_timeout`) and implement
//! [`Machine`](crate::Machine). They share one vocabulary:
//!
//! | machine | commands | events | errors |
//! |---|---|---|---|
//! | [`Client`] | `connect`, `close(now, reason)`, `request_info`; [`ControlOnly`]: `send_chunks`, `set_ack`, `set_sequence`; [`Reliable`]: `send_vital`, `send_non_vital`, `poll_chunk` | [`ClientEvent`]`::{Connected { token }, Closed { cause }}` | [`Error`]`::{QueueFull, NotOpen, Closed, BufferTooSmall, TooLong, AlreadyStarted, TooManyInFlight}` |
//! | [`Server`] | `close(now, peer, reason)`, `shutdown(now, reason)`, `answer_info`; [`ControlOnly`]: `send_chunks`, `set_ack`, `set_sequence`; [`Reliable`]: `send_vital`, `send_non_vital`, `poll_chunk` | [`ServerEvent`]`::{Connected { peer, token }, Closed { peer, cause }, Rejoined { peer }, ShutdownComplete}` | [`Error`]`::{QueueFull, UnknownPeer, NotOpen, Closed, BufferTooSmall, TooLong, TooManyInFlight}` |
//!
//! Application data comes back borrowed: from `handle_input` as [`ClientApp`] / [`ServerApp`] —
//! chunk packets ([`wire::ChunkPacket`], [`ControlOnly`]), the reason of a peer's CLOSE (a
//! [`PeerText`](crate::PeerText)), server-info answers and requests — and with [`Reliable`] the
//! delivered chunks from `poll_chunk`, borrowed from the machine. With [`ControlOnly`] the
//! machines do not implement vital-chunk sequencing: the application reports its ack
//! (`set_ack`) and sequence (`set_sequence`), and the machines put the ack on every packet and
//! check incoming acks with [`wire::ack_in_range`]. Every packet with the compression flag is
//! decompressed (or, with [`ControlOnly`], decoded in passing) before its token and ack are
//! checked.
//!
//! Defaults: the client sends a KEEP_ALIVE after 250 ms without sending, the server after 1 s
//! (DDNet and vanilla 0.6 send one after 1 s of silence on both sides); both time out after 10 s
//! without a valid packet, as vanilla 0.6.4 does (DDNet's `conn_timeout` defaults to 100 s).
//! See DDNet's [network_client.cpp], [network_server.cpp] and [network_conn.cpp] for the
//! reference behaviour.
//!
//! [network_client.cpp]: https://github.com/ddnet/ddnet/blob/master/src/engine/shared/network_client.cpp
//! [network_server.cpp]: https://github.com/ddnet/ddnet/blob/master/src/engine/shared/network_server.cpp
//! [network_conn.cpp]: https://github.com/ddnet/ddnet/blob/master/src/engine/shared/network_conn.cpp
//!
//! ```
//! use tether_net::game::{Client, ClientConfig, Server, ServerConfig, TokenSecret};
//! use tether_net::Instant;
//!
//! let mut client = Client::new(ClientConfig::default());
//! // the secret must come from a random source (a fixed one lets anyone mint tokens)
//! let mut server = Server::new(ServerConfig::new(TokenSecret([42; 16])));
//! let now = Instant::from_millis(0);
//! client.connect(now).unwrap();
//! let (mut to_server, mut to_client) = ([0u8; 1400], [0u8; 1400]);
//! // CONNECT -> CONNECT_ACCEPT -> ACCEPT over a perfect link; peer address 7
//! for _ in 0..2 {
//!     while let Some(t) = client.poll_transmit(now, &mut to_server).unwrap() {
//!         let _ = server.handle_input(now, 7u32, &to_server[..t.len]).unwrap();
//!     }
//!     while let Some(t) = server.poll_transmit(now, &mut to_client).unwrap() {
//!         let _ = client.handle_input(now, (), &to_client[..t.len]).unwrap();
//!     }
//! }
//! assert!(server.is_online(7));
//! assert!(client.token().is_some());
//! ```

pub mod chunk;
mod client;
pub mod connless;
mod error;
mod event;
pub mod huffman;
pub mod join;
mod layer;
pub mod msg;
pub mod packer;
pub mod serve;
mod server;
pub mod sha256;
pub mod token;
pub mod vital;
pub mod wire;

pub use client::{Client, ClientConfig, ClientState, ClientStats, KEPT_REASON_LEN};
pub use error::Error;
pub use event::{ClientApp, ClientEvent, CloseCause, ServerApp, ServerEvent};
pub use layer::{ChunkConfig, ControlOnly, Layer, Reliable};
pub use server::{
    Server, ServerConfig, ServerState, ServerStats, VanillaPolicy, CLOSE_QUEUE_LEN,
    SERVER_FULL_REASON, STATELESS_QUEUE_LEN,
};
pub use token::TokenSecret;
pub use wire::{ChunkPacket, Flags, Header, Token};

use crate::time::Duration;

/// Shortest interval or timeout the configurations accept (see their setters)
const MIN_DELAY: Duration = Duration::from_millis(1);

/// Add one to a counter of the stats (they saturate)
#[inline]
fn count<C: Counter>(counter: &mut C) {
    counter.bump();
}

/// A saturating event counter: `u64` in the servers' statistics, `u32` inside the game client
/// (which widens them in [`ClientStats`])
trait Counter {
    /// Add one, saturating
    fn bump(&mut self);
}

impl Counter for u64 {
    #[inline]
    fn bump(&mut self) {
        *self = self.saturating_add(1);
    }
}

impl Counter for u32 {
    #[inline]
    fn bump(&mut self) {
        *self = self.saturating_add(1);
    }
}

/// A CLOSE reason kept until its CLOSE is written (or a peer's, kept after it closed): at most
/// [`wire::MAX_REASON_LEN`] bytes, no NUL
type LocalReason = heapless::Vec<u8, { wire::MAX_REASON_LEN }, u8>;

/// `reason` as sent in a CLOSE (cut at a NUL, then to 127 bytes on a char boundary), kept
fn local_reason(reason: &str) -> LocalReason {
    let mut text = LocalReason::new();
    // `Reason::from_str` cut it to MAX_REASON_LEN already, so it fits
    let _ = text.extend_from_slice(wire::Reason::from_str(reason).as_bytes());
    text
}

/// Write one chunk packet of a connection (its `ack` and `token`) into `out`, for the
/// `send_chunks` of both machines: the control flag cleared, the token left out when
/// `flags.compression` is set (the caller puts it inside the compressed data), the length
/// checked against [`wire::MAX_PACKET_LEN`] before anything is written. Returns the length.
fn write_chunks(
    flags: Flags,
    ack: u16,
    num_chunks: u8,
    payload: &[u8],
    token: Option<Token>,
    out: &mut [u8],
) -> Result<usize, Error> {
    // (`ChunkPacket::emit` writes the control flag cleared)
    let packet = ChunkPacket {
        header: Header {
            flags,
            ack,
            num_chunks,
        },
        payload,
        token: if flags.compression { None } else { token },
    };
    let len = packet.buffer_len();
    if len > wire::MAX_PACKET_LEN {
        return Err(Error::TooLong {
            len,
            max: wire::MAX_PACKET_LEN,
        });
    }
    Ok(packet.emit(out)?)
}

/// Helpers of the machines' unit tests
#[cfg(test)]
mod test_util {
    extern crate std;
    use std::vec::Vec;

    use crate::{Instant, Machine};

    /// `v` milliseconds after the epoch
    pub(super) fn ms(v: u64) -> Instant {
        Instant::from_millis(v)
    }

    /// Bytes from space-separated hex pairs
    pub(super) fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    /// A control packet as vanilla 0.6.4 sends it compressed: header `90 00 00` (control and
    /// compression flags, ack 0), then the Huffman code of `plain` (control id and payload)
    #[cfg(feature = "control-huffman")]
    pub(super) fn compressed_control(plain: &[u8]) -> Vec<u8> {
        let mut packed = [0u8; 512];
        let n = super::huffman::compress(plain, &mut packed).unwrap();
        let mut pkt = hex("90 00 00");
        pkt.extend_from_slice(&packed[..n]);
        pkt
    }

    /// After `m`'s timers ran at `now`, its next deadline is not `Instant::MAX`, not more than
    /// `MAX_DELAY` after `now`, and not at or before `now` (no spinning)
    pub(super) fn assert_sane_deadline<M: Machine>(m: &M, now: Instant) {
        if let Some(t) = m.poll_timeout() {
            assert_ne!(t, Instant::MAX);
            assert!(
                t <= now + crate::time::MAX_DELAY,
                "{t} is more than MAX_DELAY after {now}"
            );
            assert!(
                t > now,
                "{t} is due at {now} after handle_timeout: spinning"
            );
        }
    }
}
