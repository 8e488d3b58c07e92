//! The game client: CONNECT → CONNECT_ACCEPT → ACCEPT, keep-alive, timeout and CLOSE
//!
//! The public description (states, token mode, ack, timers) is on [`Client`].

use heapless::Deque;

use super::error::Error;
use super::event::{ClientApp, ClientEvent, CloseCause};
use super::wire::{
    self, ack_in_range, Control, ControlPacket, DecodeError, Flags, Packet, Reason, Token,
    TokenMode, ACK_MODULO,
};
use super::{count, local_reason, LocalReason, MIN_DELAY};
use crate::io::{BufferTooSmall, FrameKind, Received, Transmit};
use crate::time::{clamp_delay, earliest, Clock, Duration, Instant};

#[cfg(test)]
mod tests;

/// Settings of a [`Client`]
///
/// Build it with [`ClientConfig::new`] (or `default()`, the same) and the `with_*` setters;
/// every interval and timeout is clamped into `[1 ms, 30 days]` ([`MAX_DELAY`]).
///
/// ```
/// use core::time::Duration;
/// use tether_net::game::ClientConfig;
/// let config = ClientConfig::new()
///     .with_keep_alive(Duration::from_secs(1))
///     .with_timeout(Duration::ZERO); // clamped to 1 ms
/// assert_eq!(config.keep_alive(), Duration::from_secs(1));
/// assert_eq!(config.timeout(), Duration::from_millis(1));
/// ```
///
/// [`MAX_DELAY`]: crate::time::MAX_DELAY
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct ClientConfig {
    vanilla: bool,
    connect_resend: Duration,
    connect_timeout: Duration,
    keep_alive: Duration,
    timeout: Duration,
    accept_retry: Option<Duration>,
}

impl ClientConfig {
    /// The defaults: token mode, CONNECT resent every 500 ms, connect timeout 10 s, keep-alive
    /// 250 ms, timeout 10 s, lost-ACCEPT recovery after 2 s
    #[must_use]
    pub const fn new() -> Self {
        ClientConfig {
            vanilla: false,
            connect_resend: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_millis(250),
            timeout: Duration::from_secs(10),
            accept_retry: Some(Duration::from_secs(2)),
        }
    }

    /// Send the bare vanilla CONNECT (`10 00 00 01`) instead of the DDNet token form
    /// `CONNECT | "TKEN" | FF FF FF FF`. Default: `false` (token form; a vanilla server's bare
    /// reply still works).
    #[must_use]
    pub const fn with_vanilla(mut self, vanilla: bool) -> Self {
        self.vanilla = vanilla;
        self
    }

    /// Interval between CONNECT retransmissions while connecting, clamped into
    /// `[1 ms, 30 days]`. Default: 500 ms, as DDNet and vanilla 0.6.
    #[must_use]
    pub const fn with_connect_resend(mut self, interval: Duration) -> Self {
        self.connect_resend = clamp_delay(interval, MIN_DELAY);
        self
    }

    /// Give up connecting ([`CloseCause::ConnectTimeout`]) this long after `connect`, clamped
    /// into `[1 ms, 30 days]`. Default: 10 s. (DDNet's and vanilla's network layer has no connect
    /// timeout; their game layer gives up.)
    #[must_use]
    pub const fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = clamp_delay(timeout, MIN_DELAY);
        self
    }

    /// Send a KEEP_ALIVE when online and nothing was sent for this long, clamped into
    /// `[1 ms, 30 days]`. Default: 250 ms. DDNet and vanilla 0.6 send one after 1 s without
    /// sending, on both sides; set `Duration::from_secs(1)` to match them on the wire.
    #[must_use]
    pub const fn with_keep_alive(mut self, interval: Duration) -> Self {
        self.keep_alive = clamp_delay(interval, MIN_DELAY);
        self
    }

    /// The connection times out ([`CloseCause::Timeout`], no CLOSE sent) when nothing valid was
    /// received for this long, clamped into `[1 ms, 30 days]`. Default: 10 s (vanilla 0.6.4;
    /// DDNet's `conn_timeout` defaults to 100 s).
    #[must_use]
    pub const fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = clamp_delay(timeout, MIN_DELAY);
        self
    }

    /// Lost-ACCEPT recovery: when nothing but CONNECT_ACCEPT arrived for this long after the
    /// client sent ACCEPT, it starts the handshake over (see [`Client`]); `None` disables it.
    /// Clamped into `[1 ms, 30 days]`. Default: 2 s: a DDNet server creates the connection only
    /// on ACCEPT and never asks for it again, and it sends a keep-alive within about 1 s of
    /// admission. A repeated handshake on a server that did get the first ACCEPT is a harmless
    /// "rejoin" of a connection that has exchanged nothing yet.
    #[must_use]
    pub const fn with_accept_retry(mut self, wait: Option<Duration>) -> Self {
        self.accept_retry = match wait {
            Some(d) => Some(clamp_delay(d, MIN_DELAY)),
            None => None,
        };
        self
    }

    /// Whether the client sends the vanilla CONNECT
    #[must_use]
    pub const fn vanilla(&self) -> bool {
        self.vanilla
    }

    /// CONNECT resend interval
    #[must_use]
    pub const fn connect_resend(&self) -> Duration {
        self.connect_resend
    }

    /// Connect timeout
    #[must_use]
    pub const fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Keep-alive interval
    #[must_use]
    pub const fn keep_alive(&self) -> Duration {
        self.keep_alive
    }

    /// Timeout of an online connection
    #[must_use]
    pub const fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Lost-ACCEPT recovery wait, `None` when disabled
    #[must_use]
    pub const fn accept_retry(&self) -> Option<Duration> {
        self.accept_retry
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// Counters of a [`Client`]; they only grow (saturating)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct ClientStats {
    /// Packets dropped because their token was wrong or missing
    pub dropped_wrong_token: u64,
    /// Packets dropped because their ack was outside `peer_ack..=sequence`
    /// ([`wire::ack_in_range`])
    pub dropped_bad_ack: u64,
    /// Datagrams that did not parse as a 0.6 packet
    pub dropped_malformed: u64,
    /// Chunk packets received while not online (dropped)
    pub dropped_not_online: u64,
    /// Datagrams fed before `connect` or after the connection closed (ignored)
    pub ignored_closed: u64,
    /// Accepted packets that carried decoder [`Warnings`](super::wire::Warnings)
    pub warnings: u64,
    /// CONNECT packets sent (first one and retransmissions)
    pub connects_sent: u64,
    /// KEEP_ALIVE packets sent
    pub keep_alives_sent: u64,
    /// KEEP_ALIVE packets received (and accepted)
    pub keep_alives_received: u64,
    /// Chunk packets written by [`Client::send_chunks`]
    pub chunk_packets_sent: u64,
    /// Chunk packets delivered as [`ClientApp::Chunks`]
    pub chunk_packets_received: u64,
    /// Handshakes started over because nothing came back after ACCEPT
    /// ([`ClientConfig::with_accept_retry`]); the CONNECT resends of one such restart count once
    /// here (and each in [`ClientStats::connects_sent`])
    pub accept_retries: u64,
}

/// Where a [`Client`] is
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ClientState {
    /// Created; [`Client::connect`] not called yet
    Offline,
    /// CONNECT sent, waiting for CONNECT_ACCEPT
    Connecting,
    /// CONNECT_ACCEPT received, ACCEPT queued
    Online,
    /// The connection ended (see the [`ClientEvent::Closed`] event)
    Closed,
}

/// Control frames waiting for `poll_transmit`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Pending {
    connect: bool,
    accept: bool,
    keep_alive: bool,
    close: bool,
}

/// A sans-IO Teeworlds 0.6 / DDNet game client (control plane), with an event queue of `EVENTS`
/// entries (default 4)
///
/// Drive it with the crate's run loop: one input ([`Client::handle_input`],
/// [`Client::handle_timeout`] or a command), then hand out every frame and event
/// ([`drain`](crate::drain) does it), then sleep until [`Client::poll_timeout`]. Application
/// (chunk) packets are written by [`Client::send_chunks`] straight into the caller's buffer and
/// come back borrowed from `handle_input` as [`ClientApp::Chunks`].
///
/// # States
///
/// `Offline` → [`Client::connect`] → `Connecting` → CONNECT_ACCEPT → `Online` → `Closed` (local
/// close, peer CLOSE, timeout or connect timeout). The client connects once; to reconnect, create
/// a new one. Its whole life has at most two events, `Connected` and `Closed`, so the default
/// queue of 4 never fills.
///
/// # Token mode and vanilla mode
///
/// By default the client sends the DDNet form `CONNECT | "TKEN" | FF FF FF FF` and learns its
/// security token from the `CONNECT_ACCEPT | "TKEN" | token` reply; from then on every packet in
/// both directions ends with the token, and incoming packets with another token are dropped
/// ([`ClientStats::dropped_wrong_token`]). A server that answers with a bare CONNECT_ACCEPT is a
/// vanilla server: the connection then runs without token. [`ClientConfig::with_vanilla`] makes
/// the client send the bare vanilla CONNECT itself.
///
/// # Ack and sequence
///
/// The client implements the control plane only, not vital-chunk sequencing. Every packet it
/// sends carries its `ack`, the value the application last reported with [`Client::set_ack`]
/// (0 until then). Incoming packets must pass [`wire::ack_in_range`]: `peer_ack <= ack <=
/// sequence` (mod 1024), where `peer_ack` is the last ack the server reported and `sequence` the
/// client's own last vital sequence number, reported with [`Client::set_sequence`] (0 until
/// then). Packets outside that range are dropped and counted in
/// [`ClientStats::dropped_bad_ack`]; with both values 0 only ack 0 is accepted, as in DDNet.
///
/// # Timers
///
/// * CONNECT is resent every [`ClientConfig::connect_resend`] (500 ms) while connecting;
///   [`ClientConfig::connect_timeout`] (10 s) after `connect` the client gives up
///   ([`CloseCause::ConnectTimeout`]).
/// * Online, a KEEP_ALIVE is sent when nothing was sent for [`ClientConfig::keep_alive`].
/// * Online, until the server sends anything besides CONNECT_ACCEPT, the client watches for a
///   lost ACCEPT: a DDNet server creates the connection only on ACCEPT, so a lost one leaves the
///   server without the connection while the client believes it is online. When nothing but
///   CONNECT_ACCEPT arrived for [`ClientConfig::accept_retry`] (2 s) after the ACCEPT, the client
///   starts over: CONNECT every [`ClientConfig::connect_resend`] until a CONNECT_ACCEPT arrives,
///   then ACCEPT again and another `accept_retry` of waiting.
/// * Online, the connection times out ([`CloseCause::Timeout`], no CLOSE sent) when nothing valid
///   arrived for [`ClientConfig::timeout`]; the deadline itself counts as expired.
///
/// Time comes from the caller and must be monotonic; a step back is taken as no time passing
/// (see [`time`](crate::time)).
///
/// ```
/// use tether_net::game::{Client, ClientConfig, ClientEvent};
/// use tether_net::{drain, Instant};
///
/// let mut client = Client::new(ClientConfig::default()); // Client<4>, no annotation needed
/// let small: Client<2> = Client::with_capacities(ClientConfig::default());
/// client.connect(Instant::ZERO).unwrap();
/// let mut buf = [0u8; 1400];
/// drain(&mut client, Instant::ZERO, &mut buf, |_, bytes| {
///     assert_eq!(bytes, b"\x10\x00\x00\x01TKEN\xff\xff\xff\xff"); // socket.send(bytes)
///     Ok::<(), ()>(())
/// }, |_, _: ClientEvent| {})
/// .unwrap();
/// # let _ = small;
/// ```
#[derive(Debug)]
pub struct Client<const EVENTS: usize = 4> {
    config: ClientConfig,
    clock: Clock,
    state: ClientState,
    token: Option<Token>,
    ack: u16,
    sequence: u16,
    peer_ack: u16,
    connect_start: Instant,
    last_send: Instant,
    last_recv: Instant,
    pending: Pending,
    /// Online, but nothing except CONNECT_ACCEPT received since ACCEPT (see `accept_retry`)
    awaiting_server: bool,
    /// Lost-ACCEPT recovery is resending CONNECT (waiting for CONNECT_ACCEPT)
    retry_connecting: bool,
    /// When the last ACCEPT (or, while `retry_connecting`, the last retry CONNECT) was queued
    handshake_at: Instant,
    close_reason: LocalReason,
    close_token: Option<Token>,
    events: Deque<ClientEvent, EVENTS>,
    stats: ClientStats,
}

impl Client {
    /// A client in state `Offline` with the default event capacity (4: more than the two events
    /// of a client's life)
    ///
    /// For another capacity use [`Client::with_capacities`].
    #[must_use]
    pub fn new(config: ClientConfig) -> Self {
        Self::with_capacities(config)
    }
}

impl<const EVENTS: usize> Client<EVENTS> {
    /// A client in state `Offline` with an event queue of `EVENTS` entries (at least 1, checked
    /// at compile time)
    #[must_use]
    pub fn with_capacities(config: ClientConfig) -> Self {
        const {
            assert!(
                EVENTS >= 1,
                "a game Client needs room for at least one event"
            )
        };
        Client {
            config,
            clock: Clock::new(),
            state: ClientState::Offline,
            token: None,
            ack: 0,
            sequence: 0,
            peer_ack: 0,
            connect_start: Instant::ZERO,
            last_send: Instant::ZERO,
            last_recv: Instant::ZERO,
            pending: Pending::default(),
            awaiting_server: false,
            retry_connecting: false,
            handshake_at: Instant::ZERO,
            close_reason: LocalReason::new(),
            close_token: None,
            events: Deque::new(),
            stats: ClientStats::default(),
        }
    }

    /// Feed one datagram from the server
    ///
    /// Always consumes the whole datagram, also when it is dropped (counted in
    /// [`Client::stats`]). A chunk packet of the online connection comes back as
    /// [`ClientApp::Chunks`]; the server's CLOSE as [`ClientApp::Close`] with its reason (the
    /// `Closed` event follows from `poll_event`).
    ///
    /// # Errors
    /// [`Error::QueueFull`]: nothing was consumed or changed; drain `poll_event` and feed the
    /// same datagram again.
    pub fn handle_input<'a>(
        &mut self,
        now: Instant,
        _from: (),
        data: &'a [u8],
    ) -> Result<Received<ClientApp<'a>>, Error> {
        let n = data.len();
        match self.state {
            ClientState::Offline | ClientState::Closed => {
                self.clock.update(now);
                count(&mut self.stats.ignored_closed);
                return Ok(Received::consumed(n));
            }
            ClientState::Connecting | ClientState::Online => {}
        }
        if self.events.is_full() {
            return Err(Error::QueueFull);
        }
        let now = self.clock.update(now);
        Ok(match self.handle_datagram(now, data) {
            Some(app) => Received::with_app(n, app),
            None => Received::consumed(n),
        })
    }

    /// Let timers fire: CONNECT resend, connect timeout, keep-alive, lost-ACCEPT recovery,
    /// timeout; a call before [`Client::poll_timeout`] does nothing
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock.update(now);
        match self.state {
            ClientState::Connecting => {
                if now >= self.connect_start + self.config.connect_timeout {
                    if !self.events.is_full() {
                        self.finish(CloseCause::ConnectTimeout);
                    }
                } else if !self.pending.connect
                    && now >= self.last_send + self.config.connect_resend
                {
                    self.pending.connect = true;
                }
            }
            ClientState::Online => {
                if now >= self.last_recv + self.config.timeout {
                    if !self.events.is_full() {
                        self.finish(CloseCause::Timeout);
                    }
                } else {
                    if let Some(at) = self.accept_retry_at() {
                        if now >= at {
                            self.pending.connect = true;
                            self.handshake_at = now;
                            if !self.retry_connecting {
                                self.retry_connecting = true;
                                count(&mut self.stats.accept_retries);
                            }
                        }
                    }
                    if !self.has_pending() && now >= self.last_send + self.config.keep_alive {
                        self.pending.keep_alive = true;
                    }
                }
            }
            ClientState::Offline | ClientState::Closed => {}
        }
    }

    /// Write the next control frame (CLOSE, CONNECT, ACCEPT, KEEP_ALIVE) into `buf`
    ///
    /// # Errors
    /// [`BufferTooSmall`] with the exact size when `buf` cannot hold the frame; it stays queued.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<Transmit<()>>, BufferTooSmall> {
        let now = self.clock.update(now);
        let Some((packet, which)) = self.next_frame() else {
            return Ok(None);
        };
        let len = packet.emit(buf)?;
        match which {
            Which::Close => self.pending.close = false,
            Which::Connect => {
                self.pending.connect = false;
                count(&mut self.stats.connects_sent);
            }
            Which::Accept => self.pending.accept = false,
            Which::KeepAlive => {
                self.pending.keep_alive = false;
                count(&mut self.stats.keep_alives_sent);
            }
        }
        self.last_send = now;
        Ok(Some(Transmit {
            to: (),
            len,
            kind: FrameKind::Datagram,
        }))
    }

    /// The next event: `Connected`, then `Closed` (always the last)
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When [`Client::handle_timeout`] must be called next, in the caller's clock: CONNECT resend
    /// or connect timeout while connecting, keep-alive, lost-ACCEPT recovery or timeout while
    /// online; `None` when offline or closed
    ///
    /// Never more than 30 days ([`MAX_DELAY`](crate::time::MAX_DELAY)) after the latest `now`.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_deadline().map(|t| self.clock.to_caller(t))
    }

    /// Start connecting: queue the first CONNECT
    ///
    /// # Errors
    /// [`Error::AlreadyStarted`] when `connect` was called before, [`Error::Closed`] when the
    /// client is closed; nothing changed.
    pub fn connect(&mut self, now: Instant) -> Result<(), Error> {
        match self.state {
            ClientState::Offline => {}
            ClientState::Closed => return Err(Error::Closed),
            ClientState::Connecting | ClientState::Online => return Err(Error::AlreadyStarted),
        }
        let now = self.clock.update(now);
        self.state = ClientState::Connecting;
        self.connect_start = now;
        self.last_send = now;
        self.pending.connect = true;
        Ok(())
    }

    /// Close the connection: queue CLOSE with `reason` and end in `Closed` with
    /// [`CloseCause::Local`]
    ///
    /// `reason` may be empty; it is cut at a NUL and to 127 bytes on a char boundary (what DDNet
    /// reads at most). The CLOSE carries the current ack (0 unless the application reported one
    /// with [`Client::set_ack`]) and, in token mode while online, the token; while connecting no
    /// token is known yet, so it is the bare form. When `connect` was never called nothing is
    /// sent. The `Closed` event is queued at once; the CLOSE comes from the next `poll_transmit`.
    ///
    /// # Errors
    /// [`Error::Closed`] when already closed, [`Error::QueueFull`]; nothing changed.
    pub fn close(&mut self, now: Instant, reason: &str) -> Result<(), Error> {
        if self.state == ClientState::Closed {
            return Err(Error::Closed);
        }
        if self.events.is_full() {
            return Err(Error::QueueFull);
        }
        self.clock.update(now);
        let send = self.state != ClientState::Offline;
        self.close_token = if self.state == ClientState::Online {
            self.token
        } else {
            None
        };
        self.close_reason = local_reason(reason);
        self.finish(CloseCause::Local);
        self.pending.close = send;
        Ok(())
    }

    /// Report the client's current ack (last in-order vital sequence received), carried by every
    /// packet sent from now on; taken modulo 1024
    pub fn set_ack(&mut self, ack: u16) {
        self.ack = ack % ACK_MODULO;
    }

    /// Report the client's own last vital sequence number (upper end of the accepted incoming ack
    /// range); taken modulo 1024
    pub fn set_sequence(&mut self, sequence: u16) {
        self.sequence = sequence % ACK_MODULO;
    }

    /// Write one chunk packet straight into `out`: header (`flags`, the current ack,
    /// `num_chunks`), `payload`, then the token in token mode
    ///
    /// `flags.control` is ignored. When `flags.compression` is set the token is *not* appended:
    /// DDNet puts it inside the data before Huffman compression, so the caller appends
    /// [`Client::token`] before compressing. Sending counts as activity for the keep-alive timer.
    ///
    /// # Errors
    /// [`Error::NotOpen`] (not connected yet), [`Error::Closed`], [`Error::TooLong`] (over 1400
    /// bytes) or [`Error::BufferTooSmall`]; nothing was written and no state changed.
    pub fn send_chunks(
        &mut self,
        now: Instant,
        flags: Flags,
        num_chunks: u8,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<Transmit<()>, Error> {
        match self.state {
            ClientState::Online => {}
            ClientState::Closed => return Err(Error::Closed),
            ClientState::Offline | ClientState::Connecting => return Err(Error::NotOpen),
        }
        let len = super::write_chunks(flags, self.ack, num_chunks, payload, self.token, out)?;
        self.last_send = self.clock.update(now);
        self.pending.keep_alive = false;
        count(&mut self.stats.chunk_packets_sent);
        Ok(Transmit {
            to: (),
            len,
            kind: FrameKind::Datagram,
        })
    }

    /// Where the client is
    #[must_use]
    pub fn state(&self) -> ClientState {
        self.state
    }

    /// The security token, once CONNECT_ACCEPT brought one (`None` in vanilla mode)
    #[must_use]
    pub fn token(&self) -> Option<Token> {
        self.token
    }

    /// The ack the client sends (see [`Client::set_ack`])
    #[must_use]
    pub fn ack(&self) -> u16 {
        self.ack
    }

    /// The last ack the server reported
    #[must_use]
    pub fn peer_ack(&self) -> u16 {
        self.peer_ack
    }

    /// The configuration
    #[must_use]
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Counters
    #[must_use]
    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    /// The next deadline in machine time (see `time::Clock`)
    fn next_deadline(&self) -> Option<Instant> {
        match self.state {
            ClientState::Connecting => {
                let give_up = self.connect_start + self.config.connect_timeout;
                let resend =
                    (!self.pending.connect).then(|| self.last_send + self.config.connect_resend);
                earliest(Some(give_up), resend)
            }
            ClientState::Online => {
                let timeout = self.last_recv + self.config.timeout;
                let keep_alive =
                    (!self.has_pending()).then(|| self.last_send + self.config.keep_alive);
                earliest(earliest(Some(timeout), keep_alive), self.accept_retry_at())
            }
            ClientState::Offline | ClientState::Closed => None,
        }
    }

    /// Enter `Closed` and queue the one `Closed` event (caller checked there is room)
    fn finish(&mut self, cause: CloseCause) {
        self.state = ClientState::Closed;
        self.pending = Pending::default();
        // Room was checked by every caller; a full queue cannot happen here.
        let _ = self.events.push_back(ClientEvent::Closed { cause });
    }

    /// Something besides CONNECT_ACCEPT came from the server: it has the connection
    fn heard_server(&mut self) {
        self.awaiting_server = false;
        self.retry_connecting = false;
    }

    /// When the next lost-ACCEPT retry (or retry CONNECT resend) is due, if one is armed
    fn accept_retry_at(&self) -> Option<Instant> {
        let retry = self.config.accept_retry?;
        let armed = self.state == ClientState::Online
            && self.awaiting_server
            && !self.pending.connect
            && !self.pending.accept;
        let wait = if self.retry_connecting {
            self.config.connect_resend
        } else {
            retry
        };
        armed.then(|| self.handshake_at + wait)
    }

    fn has_pending(&self) -> bool {
        let p = &self.pending;
        p.connect || p.accept || p.keep_alive || p.close
    }

    /// A datagram while connecting or online (the event queue has room)
    fn handle_datagram<'a>(&mut self, now: Instant, data: &'a [u8]) -> Option<ClientApp<'a>> {
        let mode = match (self.state, self.token) {
            (ClientState::Connecting, _) => TokenMode::Detect,
            (_, Some(_)) => TokenMode::Trailing,
            (_, None) => TokenMode::Vanilla,
        };
        let parsed = match wire::parse(data, mode) {
            Ok(p) => p,
            Err(DecodeError::MissingToken) => {
                count(&mut self.stats.dropped_wrong_token);
                return None;
            }
            Err(_) => {
                count(&mut self.stats.dropped_malformed);
                return None;
            }
        };
        // Token check (online token mode only; a compressed chunk packet carries its token inside
        // the compressed data and is passed through unverified with `token: None`).
        if mode == TokenMode::Trailing {
            let token = match &parsed.packet {
                Packet::Control(c) => c.token,
                Packet::Chunks(c) => c.token.or(if c.header.flags.compression {
                    self.token
                } else {
                    None
                }),
            };
            if token != self.token {
                count(&mut self.stats.dropped_wrong_token);
                return None;
            }
        }
        let ack = match &parsed.packet {
            Packet::Control(c) => c.ack,
            Packet::Chunks(c) => c.header.ack,
        };
        if !ack_in_range(ack, self.peer_ack, self.sequence) {
            count(&mut self.stats.dropped_bad_ack);
            return None;
        }
        self.peer_ack = ack;
        if !parsed.warnings.is_empty() {
            count(&mut self.stats.warnings);
        }
        match parsed.packet {
            Packet::Control(c) => self.handle_control(now, c),
            Packet::Chunks(c) => {
                if self.state != ClientState::Online {
                    count(&mut self.stats.dropped_not_online);
                    return None;
                }
                self.last_recv = now;
                self.heard_server();
                count(&mut self.stats.chunk_packets_received);
                Some(ClientApp::Chunks(c))
            }
        }
    }

    fn handle_control<'a>(&mut self, now: Instant, c: ControlPacket<'a>) -> Option<ClientApp<'a>> {
        match (self.state, c.control) {
            (_, Control::Close(reason)) => {
                self.finish(CloseCause::Peer);
                return Some(ClientApp::Close {
                    reason: reason.text(),
                });
            }
            (ClientState::Connecting, Control::ConnectAccept) => {
                // In vanilla mode a TKEN reply is still answered without token: we promised the
                // server nothing, and a DDNet server treats our bare CONNECT as vanilla anyway.
                self.token = if self.config.vanilla {
                    None
                } else {
                    c.token.filter(|t| !t.is_sentinel())
                };
                self.state = ClientState::Online;
                self.pending.connect = false;
                self.pending.accept = true;
                self.awaiting_server = true;
                self.handshake_at = now;
                self.last_recv = now;
                // Room was checked at the top of handle_input.
                let _ = self
                    .events
                    .push_back(ClientEvent::Connected { token: self.token });
            }
            (ClientState::Online, Control::ConnectAccept) => {
                self.last_recv = now;
                // Only the answer to a retry CONNECT gets another ACCEPT. A late or duplicated
                // answer to an earlier CONNECT does not: a DDNet server takes an ACCEPT on an
                // existing connection as a "rejoin" and resets that connection.
                if self.awaiting_server && self.retry_connecting {
                    self.pending.connect = false;
                    self.pending.accept = true;
                    self.retry_connecting = false;
                    self.handshake_at = now;
                }
            }
            (ClientState::Online, Control::KeepAlive) => {
                self.last_recv = now;
                self.heard_server();
                count(&mut self.stats.keep_alives_received);
            }
            (ClientState::Online, _) => {
                self.last_recv = now;
                self.heard_server();
            }
            // Connecting: KEEP_ALIVE, CONNECT, ACCEPT are ignored
            _ => {}
        }
        None
    }

    /// The next control frame to send, if any, and which pending flag it clears
    fn next_frame(&self) -> Option<(ControlPacket<'_>, Which)> {
        let p = &self.pending;
        let (control, token, which) = if p.close {
            (
                Control::Close(Reason::from_str(&self.close_reason)),
                self.close_token,
                Which::Close,
            )
        } else if p.connect {
            let token = if self.config.vanilla {
                None
            } else {
                Some(Token::UNKNOWN)
            };
            (Control::Connect, token, Which::Connect)
        } else if p.accept {
            (Control::Accept, self.token, Which::Accept)
        } else if p.keep_alive {
            (Control::KeepAlive, self.token, Which::KeepAlive)
        } else {
            return None;
        };
        Some((
            ControlPacket {
                ack: self.ack,
                control,
                token,
            },
            which,
        ))
    }
}

/// Which pending flag a frame came from
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Connect,
    Accept,
    KeepAlive,
    Close,
}

#[cfg(feature = "defmt")]
impl<const EVENTS: usize> defmt::Format for Client<EVENTS> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "Client {{ state: {}, token: {}, ack: {}, peer_ack: {} }}",
            self.state,
            self.token,
            self.ack,
            self.peer_ack
        );
    }
}

crate::machine::impl_machine! {
    impl[const EVENTS: usize] for Client<EVENTS> {
        Peer = (),
        Event = ClientEvent,
        App<'a> = ClientApp<'a>,
        Error = Error,
    }
}
