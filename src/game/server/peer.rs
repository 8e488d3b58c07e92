//! Per-peer state of the game server: the 12 bytes every datagram touches ([`PeerHot`], kept
//! in the peer table's slot) and the 16 bytes only timers, commands and sends touch
//! ([`PeerCold`], in an array beside the table)

use core::num::NonZeroU32;

use super::ServerConfig;
use crate::game::wire::{Control, ControlPacket, Token};
use crate::time::{div_rem_small, Instant};

/// Pending-output bit: CONNECT_ACCEPT to this peer
pub(super) const OUT_CONNECT_ACCEPT: u8 = 1;
/// Pending-output bit: KEEP_ALIVE to this peer
pub(super) const OUT_KEEP_ALIVE: u8 = 2;
/// Pending-output bit: a chunk packet of the chunk layer is due for this peer
pub(super) const OUT_CHUNKS: u8 = 4;

/// [`PeerHot::bits`]: the peer's last ack (bits 0..10)
const ACK_MASK: u32 = 0x3FF;
/// [`PeerHot::bits`]: our own sequence towards the peer (bits 10..20)
const SEQUENCE_SHIFT: u32 = 10;
/// [`PeerHot::bits`]: an online token peer sent CONNECT again (a DDNet client re-handshaking from
/// the same port): the next ACCEPT is a rejoin; any other ACCEPT (e.g. a duplicated or late copy
/// of the first one) is not
const REHANDSHAKE_BIT: u32 = 1 << 29;
/// [`PeerHot::bits`]: admitted and announced (`Connected`); a vanilla pending slot is not
const ONLINE_BIT: u32 = 1 << 30;
/// [`PeerHot::bits`]: always set, so the field is never zero and `Option<PeerHot>` needs no tag
const PRESENT: NonZeroU32 = match NonZeroU32::new(1 << 31) {
    Some(v) => v,
    None => panic!("1 << 31 is not zero"),
};

/// A peer's last receive or send time as kept: milliseconds since the caller's epoch, rounded
/// up, low 32 bits (wraps every 49.7 days; see [`unstamp`]). Not inlined on 32-bit targets,
/// where the division is three 32-bit divisions at every call site.
#[cfg_attr(target_pointer_width = "32", inline(never))]
#[cfg_attr(not(target_pointer_width = "32"), inline)]
pub(super) fn stamp(t: Instant) -> u32 {
    millis_up(t) as u32
}

/// `t` in whole milliseconds, rounded up (by [`div_rem_small`]: a 64-bit division is a library
/// call on 32-bit targets)
#[inline]
fn millis_up(t: Instant) -> u64 {
    // ⌈x / 1000⌉ = ⌊(x − 1) / 1000⌋ + 1 for x ≥ 1: one division, no remainder test
    t.as_micros()
        .checked_sub(1)
        .map_or(0, |x| div_rem_small(x, 1_000).0 + 1)
}

/// The instant of a [`stamp`]: the latest whole millisecond at or before `now` (rounded up)
/// whose low 32 bits are `stamp`
///
/// Exact while the stamp is younger than 2^32 ms (49.7 days). A peer is looked at by its timer
/// at least every keep-alive interval and removed after the timeout, so a stamp is that old
/// only if `handle_timeout` was not called for 49 days while the peer stayed silent; the peer
/// then looks younger than it is and times out one timeout later.
#[inline]
pub(super) fn unstamp(stamp: u32, now: Instant) -> Instant {
    let now_ms = millis_up(now);
    let age = (now_ms as u32).wrapping_sub(stamp);
    Instant::from_millis(now_ms.saturating_sub(u64::from(age)))
}

/// The per-peer state every datagram from the peer reads or writes; 12 bytes, stored with the
/// key in the table's slot (16 bytes with a `u32` key)
#[derive(Debug, Clone, Copy)]
pub(super) struct PeerHot {
    /// The peer's token; [`Token::UNSUPPORTED`] (00 00 00 00, never minted) for a vanilla peer
    pub(super) token: Token,
    /// When the last accepted datagram arrived (a [`stamp`]: 1 ms resolution, so a timeout
    /// fires up to 1 ms after the exact deadline)
    pub(super) last_recv: u32,
    /// The last ack the peer sent, our sequence towards it, [`ONLINE_BIT`], [`PRESENT`]
    bits: NonZeroU32,
}

impl PeerHot {
    pub(super) fn new(now: Instant, token: Option<Token>, online: bool) -> Self {
        PeerHot {
            token: token.unwrap_or(Token::UNSUPPORTED),
            last_recv: stamp(now),
            bits: PRESENT | if online { ONLINE_BIT } else { 0 },
        }
    }

    #[inline]
    pub(super) fn token(&self) -> Option<Token> {
        if self.token == Token::UNSUPPORTED {
            None
        } else {
            Some(self.token)
        }
    }

    /// Whether `token` (what a packet carried) is this peer's: its token for a token peer, none
    /// for a vanilla peer (`== self.token()`, compared as one word)
    #[inline]
    pub(super) fn token_is(&self, token: Option<Token>) -> bool {
        let mine = u32::from_ne_bytes(self.token.0);
        match token {
            Some(t) => mine != 0 && u32::from_ne_bytes(t.0) == mine,
            None => mine == 0,
        }
    }

    #[inline]
    pub(super) fn online(&self) -> bool {
        self.bits.get() & ONLINE_BIT != 0
    }

    pub(super) fn set_online(&mut self) {
        self.bits |= ONLINE_BIT;
    }

    /// Note a token CONNECT from this online peer: its next ACCEPT re-joins
    pub(super) fn arm_rejoin(&mut self) {
        self.bits |= REHANDSHAKE_BIT;
    }

    /// Whether a re-handshake was noted; clears the note
    pub(super) fn take_rejoin(&mut self) -> bool {
        let armed = self.bits.get() & REHANDSHAKE_BIT != 0;
        self.bits = PRESENT | (self.bits.get() & !REHANDSHAKE_BIT);
        armed
    }

    /// The last ack the peer sent (mod 1024)
    #[inline]
    pub(super) fn peer_ack(&self) -> u16 {
        (self.bits.get() & ACK_MASK) as u16
    }

    #[inline]
    pub(super) fn set_peer_ack(&mut self, ack: u16) {
        self.bits = PRESENT | (self.bits.get() & !ACK_MASK) | (u32::from(ack) & ACK_MASK);
    }

    /// Our own last vital sequence towards the peer (upper end of its accepted ack range)
    #[inline]
    pub(super) fn sequence(&self) -> u16 {
        ((self.bits.get() >> SEQUENCE_SHIFT) & ACK_MASK) as u16
    }

    pub(super) fn set_sequence(&mut self, sequence: u16) {
        let mask = ACK_MASK << SEQUENCE_SHIFT;
        self.bits = PRESENT
            | (self.bits.get() & !mask)
            | ((u32::from(sequence) & ACK_MASK) << SEQUENCE_SHIFT);
    }

    /// When the last accepted datagram arrived (1 ms resolution, judged at `now`)
    pub(super) fn last_recv(&self, now: Instant) -> Instant {
        unstamp(self.last_recv, now)
    }

    /// Interval of the send timer: keep-alive when online, CONNECT_ACCEPT resend when pending
    /// in microseconds (at least 1 ms by the config's clamping, so a due timer always moves
    /// forward)
    pub(super) fn send_interval(&self, config: &ServerConfig) -> u64 {
        if self.online() {
            config.keep_alive
        } else {
            config.connect_accept_resend
        }
    }
}

/// The per-peer state only timers, commands and sends touch; 12 bytes, in an array beside the
/// table indexed by the peer's slot
#[derive(Debug, Clone, Copy)]
pub(super) struct PeerCold {
    /// When we last sent the peer a datagram (a [`stamp`], like [`PeerHot`]'s receive time:
    /// the send timer fires up to 1 ms after the exact deadline)
    last_send: u32,
    /// Admission number: identifies this slot's entry in the timer heap
    pub(super) gen: u32,
    /// The ack we send (the application's last in-order vital sequence), mod 1024
    pub(super) ack: u16,
    /// `OUT_*` bits
    pub(super) out: u8,
    /// In the transmit queue
    pub(super) queued: bool,
}

impl PeerCold {
    pub(super) const EMPTY: PeerCold = PeerCold {
        last_send: 0,
        gen: 0,
        ack: 0,
        out: 0,
        queued: false,
    };

    pub(super) fn new(now: Instant, gen: u32) -> Self {
        PeerCold {
            last_send: stamp(now),
            gen,
            ..Self::EMPTY
        }
    }

    /// Note a datagram sent to the peer at `now`
    #[inline]
    pub(super) fn sent(&mut self, now: Instant) {
        self.last_send = stamp(now);
    }

    /// When we last sent the peer a datagram (1 ms resolution, judged at `now`)
    #[inline]
    pub(super) fn last_send(&self, now: Instant) -> Instant {
        unstamp(self.last_send, now)
    }
}

/// The next frame a peer has queued, and its bit
pub(super) fn next_frame(hot: &PeerHot, cold: &PeerCold) -> Option<(ControlPacket<'static>, u8)> {
    if cold.out & OUT_CONNECT_ACCEPT != 0 {
        // ack 0: the peer's ack check while connecting accepts only 0
        Some((
            ControlPacket {
                ack: 0,
                control: Control::ConnectAccept,
                token: hot.token(),
            },
            OUT_CONNECT_ACCEPT,
        ))
    } else if cold.out & OUT_KEEP_ALIVE != 0 {
        Some((
            ControlPacket {
                ack: cold.ack,
                control: Control::KeepAlive,
                token: hot.token(),
            },
            OUT_KEEP_ALIVE,
        ))
    } else {
        None
    }
}
