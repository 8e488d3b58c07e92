//! The game client: CONNECT → CONNECT_ACCEPT → ACCEPT, keep-alive, timeout and CLOSE
//!
//! States: `Offline` → [`Client::connect`] → `Connecting` → CONNECT_ACCEPT → `Online` →
//! `Closed` (local close, peer CLOSE, timeout or connect timeout). The client connects once; to
//! reconnect, create a new one.
//!
//! # Token mode and vanilla mode
//!
//! By default the client sends the DDNet form `CONNECT | "TKEN" | FF FF FF FF` and learns its
//! security token from the `CONNECT_ACCEPT | "TKEN" | token` reply; from then on every packet in
//! both directions ends with the token, and incoming packets with another token are dropped
//! ([`ClientStats::dropped_wrong_token`]). A server that answers with a bare CONNECT_ACCEPT is a
//! vanilla server: the connection then runs without token. [`ClientConfig::vanilla`] makes the
//! client send the bare vanilla CONNECT itself.
//!
//! # Ack and sequence
//!
//! The client implements the control plane only, not vital-chunk sequencing. Every packet it
//! sends carries its `ack` — the value the application last reported with [`Client::set_ack`]
//! (0 until then). Incoming packets are checked against the range the spec (A.6) allows:
//! `peer_ack <= ack <= sequence` (mod 1024), where `peer_ack` is the last ack the server reported
//! and `sequence` the client's own last vital sequence number, reported with
//! [`Client::set_sequence`] (0 until then). Packets outside that range are dropped and counted in
//! [`ClientStats::dropped_bad_ack`]; with both values 0 only ack 0 is accepted, as in the
//! reference implementations.
//!
//! # Timers
//!
//! * CONNECT is resent every [`ClientConfig::connect_resend`] (500 ms) while connecting;
//!   [`ClientConfig::connect_timeout`] (10 s) after `connect` the client gives up
//!   ([`ClientCloseCause::ConnectTimeout`]).
//! * Online, a KEEP_ALIVE is sent when nothing was sent for [`ClientConfig::keep_alive`].
//! * Online, until the server sends anything besides CONNECT_ACCEPT, the client watches for a
//!   lost ACCEPT (spec A.8 item 7): a DDNet server creates the connection only on ACCEPT, so a
//!   lost one leaves the server without the connection while the client believes it is online.
//!   When nothing but CONNECT_ACCEPT arrived for [`ClientConfig::accept_retry`] (2 s) after the
//!   ACCEPT, the client starts over: CONNECT every [`ClientConfig::connect_resend`] until a
//!   CONNECT_ACCEPT arrives, then ACCEPT again and another `accept_retry` of waiting.
//! * Online, the connection times out ([`ClientCloseCause::Timeout`], no CLOSE sent) when nothing
//!   valid arrived for [`ClientConfig::timeout`]; the deadline itself counts as expired.

use heapless::Deque;

use super::event::{
    ClientCloseCause, ClientEvent, CloseError, ConnectError, InputError, ReasonText, SendError,
};
use super::wire::{
    self, ChunkPacket, Control, ControlPacket, DecodeError, Flags, Packet, Reason, Token,
    TokenMode, ACK_MODULO,
};
use crate::io::{BufferTooSmall, FrameKind, Received, Transmit};
use crate::machine::Machine;
use crate::time::{earliest, Clock, Duration, Instant};

/// Settings of a [`Client`]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ClientConfig {
    /// Send the bare vanilla CONNECT (`10 00 00 01`) instead of the DDNet token form.
    /// Default: `false` (token form; a vanilla server's bare reply still works).
    pub vanilla: bool,
    /// Interval between CONNECT retransmissions while connecting. Default: 500 ms (both
    /// reference implementations).
    pub connect_resend: Duration,
    /// Give up connecting after this long. Default: 10 s. (The references have no network-layer
    /// connect timeout; their game layer gives up.)
    pub connect_timeout: Duration,
    /// Send a KEEP_ALIVE when online and nothing was sent for this long. Default: 250 ms, the
    /// value of the project's seed text. DDNet and vanilla 0.6 actually use 1 s on both sides
    /// (the 250 ms comes from a stale source comment, see the spec's corrections, A.13); set
    /// `Duration::from_secs(1)` to match them on the wire.
    pub keep_alive: Duration,
    /// The connection times out when nothing valid was received for this long. Default: 10 s
    /// (vanilla 0.6.4; DDNet's `conn_timeout` defaults to 100 s).
    pub timeout: Duration,
    /// Lost-ACCEPT recovery: when nothing but CONNECT_ACCEPT arrived for this long after the
    /// client sent ACCEPT, it starts the handshake over — CONNECT every
    /// [`ClientConfig::connect_resend`] until a CONNECT_ACCEPT comes back, then ACCEPT and this
    /// long of waiting again — until some other packet arrives or the connection times out.
    /// `None` disables it.
    /// Default: 2 s, the spec's recommendation (A.8 item 7): a DDNet server creates the
    /// connection only on ACCEPT and never asks for it again, and it sends a keep-alive within
    /// about 1 s of admission. A repeated handshake on a server that did get the first ACCEPT is
    /// a harmless "rejoin" of a connection that has exchanged nothing yet.
    pub accept_retry: Option<Duration>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            vanilla: false,
            connect_resend: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_millis(250),
            timeout: Duration::from_secs(10),
            accept_retry: Some(Duration::from_secs(2)),
        }
    }
}

/// Counters of a [`Client`]; they only grow (wrapping)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ClientStats {
    /// Packets dropped because their token was wrong or missing
    pub dropped_wrong_token: u32,
    /// Packets dropped because their ack was outside `peer_ack..=sequence`
    pub dropped_bad_ack: u32,
    /// Datagrams that did not parse as a 0.6 packet
    pub dropped_malformed: u32,
    /// Chunk packets received while not online (dropped)
    pub dropped_not_online: u32,
    /// Datagrams fed before `connect` or after the connection closed (ignored)
    pub ignored_closed: u32,
    /// Accepted packets that carried decoder [`Warnings`](super::wire::Warnings)
    pub warnings: u32,
    /// CONNECT packets sent (first one and retransmissions)
    pub connects_sent: u32,
    /// KEEP_ALIVE packets sent
    pub keep_alives_sent: u32,
    /// KEEP_ALIVE packets received (and accepted)
    pub keep_alives_received: u32,
    /// Chunk packets written by [`Client::send_chunks`]
    pub chunk_packets_sent: u32,
    /// Chunk packets delivered in [`Received::app`]
    pub chunk_packets_received: u32,
    /// Handshakes started over because nothing came back after ACCEPT
    /// ([`ClientConfig::accept_retry`]); the CONNECT resends of one such restart count once here
    /// (and each in [`ClientStats::connects_sent`])
    pub accept_retries: u32,
}

/// Where a [`Client`] is
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
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

/// A sans-IO Teeworlds 0.6 / DDNet game client (control plane), with an event queue of `E`
/// entries (default 8)
///
/// Drive it with the [`Machine`] run loop: one input (datagram, timeout or command), then drain
/// [`Client::poll_transmit`] and [`Client::poll_event`], then sleep until
/// [`Client::poll_timeout`]. Application (chunk) packets are written by [`Client::send_chunks`]
/// straight into the caller's buffer and come back borrowed from `handle_input`.
#[derive(Debug)]
pub struct Client<const E: usize = 8> {
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
    close_reason: ReasonText,
    close_token: Option<Token>,
    events: Deque<ClientEvent, E>,
    stats: ClientStats,
}

impl<const E: usize> Client<E> {
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

    /// A client in state `Offline` with this configuration
    #[must_use]
    pub fn new(config: ClientConfig) -> Self {
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
            close_reason: ReasonText::new(),
            close_token: None,
            events: Deque::new(),
            stats: ClientStats::default(),
        }
    }

    /// Start connecting: queue the first CONNECT
    ///
    /// # Errors
    /// [`ConnectError::AlreadyStarted`] unless the client is `Offline`.
    pub fn connect(&mut self, now: Instant) -> Result<(), ConnectError> {
        let now = self.clock.update(now);
        if self.state != ClientState::Offline {
            return Err(ConnectError::AlreadyStarted);
        }
        self.state = ClientState::Connecting;
        self.connect_start = now;
        self.last_send = now;
        self.pending.connect = true;
        Ok(())
    }

    /// Close the connection: queue CLOSE with `reason` (may be empty; cut to 127 bytes on a char
    /// boundary) and end in `Closed` with [`ClientCloseCause::Local`]
    ///
    /// The CLOSE carries the current ack (spec A.11: a local disconnect sends the current ack; it
    /// is 0 unless the application reported one with [`Client::set_ack`]) and, in token mode
    /// while online, the token; while connecting no token is known yet, so it is the bare form.
    /// When `connect` was never called nothing is sent.
    ///
    /// # Errors
    /// [`CloseError::AlreadyClosed`], or [`CloseError::EventQueueFull`] (nothing changed).
    pub fn close(&mut self, now: Instant, reason: &str) -> Result<(), CloseError> {
        self.clock.update(now);
        if self.state == ClientState::Closed {
            return Err(CloseError::AlreadyClosed);
        }
        if self.events.is_full() {
            return Err(CloseError::EventQueueFull);
        }
        let send = self.state != ClientState::Offline;
        self.close_token = if self.state == ClientState::Online {
            self.token
        } else {
            None
        };
        self.close_reason.clear();
        // `Reason::from_str` already cut the text to MAX_REASON_LEN on a char boundary, so it
        // fits the buffer; on the impossible failure the reason is just left empty.
        if self
            .close_reason
            .push_str(Reason::from_str(reason).as_str().unwrap_or(""))
            .is_err()
        {
            self.close_reason.clear();
        }
        self.finish(ClientCloseCause::Local);
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
    /// [`SendError::NotOnline`], [`SendError::TooLong`] (over 1400 bytes) or
    /// [`SendError::BufferTooSmall`]; nothing was written and no state changed.
    pub fn send_chunks(
        &mut self,
        now: Instant,
        flags: Flags,
        num_chunks: u8,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<Transmit<()>, SendError> {
        let now = self.clock.update(now);
        if self.state != ClientState::Online {
            return Err(SendError::NotOnline);
        }
        let len = super::write_chunks(flags, self.ack, num_chunks, payload, self.token, out)?;
        self.last_send = now;
        self.pending.keep_alive = false;
        self.stats.chunk_packets_sent = self.stats.chunk_packets_sent.wrapping_add(1);
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

    /// Enter `Closed` and queue the one `Closed` event (caller checked there is room)
    fn finish(&mut self, cause: ClientCloseCause) {
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
        armed.then(|| self.handshake_at + wait.max(Duration::from_micros(1)))
    }

    fn has_pending(&self) -> bool {
        let p = &self.pending;
        p.connect || p.accept || p.keep_alive || p.close
    }

    /// The ack-range check of spec A.6 against `peer_ack` and `sequence`
    fn ack_ok(&self, ack: u16) -> bool {
        ack_in_range(ack, self.peer_ack, self.sequence)
    }

    fn handle_datagram<'a>(
        &mut self,
        now: Instant,
        data: &'a [u8],
    ) -> Result<Received<ChunkPacket<'a>>, InputError> {
        let n = data.len();
        match self.state {
            ClientState::Offline | ClientState::Closed => {
                self.stats.ignored_closed = self.stats.ignored_closed.wrapping_add(1);
                return Ok(Received::consumed(n));
            }
            ClientState::Connecting | ClientState::Online => {}
        }
        if self.events.is_full() {
            return Err(InputError::EventQueueFull);
        }
        let mode = match (self.state, self.token) {
            (ClientState::Connecting, _) => TokenMode::Detect,
            (_, Some(_)) => TokenMode::Trailing,
            (_, None) => TokenMode::Vanilla,
        };
        let parsed = match wire::parse(data, mode) {
            Ok(p) => p,
            Err(DecodeError::MissingToken) => {
                self.stats.dropped_wrong_token = self.stats.dropped_wrong_token.wrapping_add(1);
                return Ok(Received::consumed(n));
            }
            Err(_) => {
                self.stats.dropped_malformed = self.stats.dropped_malformed.wrapping_add(1);
                return Ok(Received::consumed(n));
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
                self.stats.dropped_wrong_token = self.stats.dropped_wrong_token.wrapping_add(1);
                return Ok(Received::consumed(n));
            }
        }
        let ack = match &parsed.packet {
            Packet::Control(c) => c.ack,
            Packet::Chunks(c) => c.header.ack,
        };
        if !self.ack_ok(ack) {
            self.stats.dropped_bad_ack = self.stats.dropped_bad_ack.wrapping_add(1);
            return Ok(Received::consumed(n));
        }
        self.peer_ack = ack;
        if !parsed.warnings.is_empty() {
            self.stats.warnings = self.stats.warnings.wrapping_add(1);
        }
        match parsed.packet {
            Packet::Control(c) => {
                self.handle_control(now, c);
                Ok(Received::consumed(n))
            }
            Packet::Chunks(c) => {
                if self.state != ClientState::Online {
                    self.stats.dropped_not_online = self.stats.dropped_not_online.wrapping_add(1);
                    return Ok(Received::consumed(n));
                }
                self.last_recv = now;
                self.heard_server();
                self.stats.chunk_packets_received =
                    self.stats.chunk_packets_received.wrapping_add(1);
                Ok(Received::with_app(n, c))
            }
        }
    }

    fn handle_control(&mut self, now: Instant, c: ControlPacket<'_>) {
        match (self.state, c.control) {
            (_, Control::Close(reason)) => {
                self.finish(ClientCloseCause::Peer {
                    reason: reason.to_text(),
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
                // answer to an earlier CONNECT does not: a DDNet server takes a repeated ACCEPT
                // as a "rejoin" and resets the connection (spec A.8 item 6).
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
                self.stats.keep_alives_received = self.stats.keep_alives_received.wrapping_add(1);
            }
            (ClientState::Online, _) => {
                self.last_recv = now;
                self.heard_server();
            }
            // Connecting: KEEP_ALIVE, CONNECT, ACCEPT are ignored
            _ => {}
        }
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

/// The ack-range check of spec A.6: accept `peer_ack <= ack <= sequence`, modulo 1024
pub(crate) fn ack_in_range(ack: u16, peer_ack: u16, sequence: u16) -> bool {
    if sequence >= peer_ack {
        peer_ack <= ack && ack <= sequence
    } else {
        ack >= peer_ack || ack <= sequence
    }
}

#[cfg(feature = "defmt")]
impl<const E: usize> defmt::Format for Client<E> {
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

impl<const E: usize> Default for Client<E> {
    fn default() -> Self {
        Client::new(ClientConfig::default())
    }
}

impl<const E: usize> Machine for Client<E> {
    type Peer = ();
    type Event = ClientEvent;
    type App<'a> = ChunkPacket<'a>;
    type Error = InputError;

    /// Feed one datagram from the server
    ///
    /// Always consumes the whole datagram, also when it is dropped (counted in
    /// [`Client::stats`]); chunk packets of an online connection come back in
    /// [`Received::app`].
    ///
    /// # Errors
    /// [`InputError::EventQueueFull`]: nothing was consumed or changed; drain `poll_event`.
    fn handle_input<'a>(
        &mut self,
        now: Instant,
        _from: (),
        data: &'a [u8],
    ) -> Result<Received<ChunkPacket<'a>>, InputError> {
        let now = self.clock.update(now);
        self.handle_datagram(now, data)
    }

    fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock.update(now);
        match self.state {
            ClientState::Connecting => {
                if now >= self.connect_start + self.config.connect_timeout {
                    if !self.events.is_full() {
                        self.finish(ClientCloseCause::ConnectTimeout);
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
                        self.finish(ClientCloseCause::Timeout);
                    }
                } else {
                    if let Some(at) = self.accept_retry_at() {
                        if now >= at {
                            self.pending.connect = true;
                            self.handshake_at = now;
                            if !self.retry_connecting {
                                self.retry_connecting = true;
                                self.stats.accept_retries =
                                    self.stats.accept_retries.wrapping_add(1);
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
    fn poll_transmit(
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
                self.stats.connects_sent = self.stats.connects_sent.wrapping_add(1);
            }
            Which::Accept => self.pending.accept = false,
            Which::KeepAlive => {
                self.pending.keep_alive = false;
                self.stats.keep_alives_sent = self.stats.keep_alives_sent.wrapping_add(1);
            }
        }
        self.last_send = now;
        Ok(Some(Transmit {
            to: (),
            len,
            kind: FrameKind::Datagram,
        }))
    }

    fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// The next timer: CONNECT resend or connect timeout while connecting, keep-alive or timeout
    /// while online; `None` when offline or closed
    fn poll_timeout(&self) -> Option<Instant> {
        self.next_deadline().map(|t| self.clock.to_caller(t))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    use super::*;

    const TOK: Token = Token([0x12, 0x34, 0x56, 0x78]);

    fn ms(v: u64) -> Instant {
        Instant::from_millis(v)
    }

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    /// Every frame the client has queued, as byte vectors
    fn drain<const E: usize>(c: &mut Client<E>, now: Instant) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = [0u8; 1400];
        while let Some(t) = c.poll_transmit(now, &mut buf).unwrap() {
            out.push(buf[..t.len].to_vec());
        }
        out
    }

    fn events<const E: usize>(c: &mut Client<E>) -> Vec<ClientEvent> {
        core::iter::from_fn(|| c.poll_event()).collect()
    }

    fn feed<const E: usize>(c: &mut Client<E>, now: Instant, bytes: &[u8]) -> Option<Vec<u8>> {
        let r = c.handle_input(now, (), bytes).unwrap();
        assert_eq!(r.bytes_consumed(), bytes.len());
        r.into_app().map(|a| a.payload.to_vec())
    }

    /// A token-mode client online at 0 ms with token TOK (CONNECT and ACCEPT drained)
    fn online() -> Client {
        let mut c = Client::new(ClientConfig::default());
        c.connect(ms(0)).unwrap();
        assert_eq!(drain(&mut c, ms(0)).len(), 1);
        feed(&mut c, ms(0), &hex("10 00 00 02 54 4b 45 4e 12 34 56 78"));
        assert_eq!(drain(&mut c, ms(0)), [hex("10 00 00 03 12 34 56 78")]);
        assert_eq!(
            events(&mut c),
            [ClientEvent::Connected { token: Some(TOK) }]
        );
        c
    }

    fn closed_cause<const E: usize>(c: &mut Client<E>) -> ClientCloseCause {
        match events(c).as_slice() {
            [ClientEvent::Closed { cause }] => cause.clone(),
            other => panic!("expected one Closed event, got {other:?}"),
        }
    }

    #[test]
    fn connect_sends_token_form_and_vanilla_form() {
        let mut c: Client = Client::default();
        assert_eq!(c.state(), ClientState::Offline);
        assert_eq!(c.poll_timeout(), None);
        c.connect(ms(0)).unwrap();
        assert_eq!(c.connect(ms(0)), Err(ConnectError::AlreadyStarted));
        assert_eq!(
            drain(&mut c, ms(0)),
            [hex("10 00 00 01 54 4b 45 4e ff ff ff ff")]
        );

        let mut v: Client = Client::new(ClientConfig {
            vanilla: true,
            ..ClientConfig::default()
        });
        v.connect(ms(0)).unwrap();
        assert_eq!(drain(&mut v, ms(0)), [hex("10 00 00 01")]);
    }

    #[test]
    fn connect_resent_every_500ms_then_connect_timeout() {
        let mut c: Client = Client::default();
        c.connect(ms(0)).unwrap();
        assert_eq!(drain(&mut c, ms(0)).len(), 1);
        assert_eq!(c.poll_timeout(), Some(ms(500)));
        c.handle_timeout(ms(499));
        assert!(drain(&mut c, ms(499)).is_empty());
        c.handle_timeout(ms(500));
        assert_eq!(
            drain(&mut c, ms(500)),
            [hex("10 00 00 01 54 4b 45 4e ff ff ff ff")]
        );
        assert_eq!(c.poll_timeout(), Some(ms(1000)));
        let mut t = 1000;
        while t < 10_000 {
            c.handle_timeout(ms(t));
            assert_eq!(drain(&mut c, ms(t)).len(), 1, "resend at {t} ms");
            t += 500;
        }
        assert_eq!(c.stats().connects_sent, 20);
        assert_eq!(c.poll_timeout(), Some(ms(10_000)));
        c.handle_timeout(ms(10_000));
        assert_eq!(closed_cause(&mut c), ClientCloseCause::ConnectTimeout);
        assert!(drain(&mut c, ms(10_000)).is_empty());
        assert_eq!(c.state(), ClientState::Closed);
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn token_accept_goes_online() {
        let c = online();
        assert_eq!(c.state(), ClientState::Online);
        assert_eq!(c.token(), Some(TOK));
    }

    #[test]
    fn bare_connect_accept_means_vanilla_connection() {
        let mut c: Client = Client::default();
        c.connect(ms(0)).unwrap();
        let _ = drain(&mut c, ms(0));
        feed(&mut c, ms(100), &hex("10 00 00 02"));
        assert_eq!(events(&mut c), [ClientEvent::Connected { token: None }]);
        assert_eq!(drain(&mut c, ms(100)), [hex("10 00 00 03")]);
        c.handle_timeout(ms(350));
        assert_eq!(drain(&mut c, ms(350)), [hex("10 00 00 00")]);
        // vanilla connection: a packet with trailing bytes is not token-checked
        feed(&mut c, ms(400), &hex("10 00 00 00"));
        assert_eq!(c.stats().keep_alives_received, 1);
    }

    #[test]
    fn vanilla_mode_ignores_offered_token() {
        let mut c: Client = Client::new(ClientConfig {
            vanilla: true,
            ..ClientConfig::default()
        });
        c.connect(ms(0)).unwrap();
        let _ = drain(&mut c, ms(0));
        feed(&mut c, ms(1), &hex("10 00 00 02 54 4b 45 4e 12 34 56 78"));
        assert_eq!(events(&mut c), [ClientEvent::Connected { token: None }]);
        assert_eq!(drain(&mut c, ms(1)), [hex("10 00 00 03")]);
    }

    #[test]
    fn keep_alive_cadence_and_chunk_traffic_defers_it() {
        let mut c = online();
        // ACCEPT went out at 0 ms
        assert_eq!(c.poll_timeout(), Some(ms(250)));
        c.handle_timeout(ms(249));
        assert!(drain(&mut c, ms(249)).is_empty());
        c.handle_timeout(ms(250));
        assert_eq!(drain(&mut c, ms(250)), [hex("10 00 00 00 12 34 56 78")]);
        assert_eq!(c.poll_timeout(), Some(ms(500)));
        // a chunk packet at 400 ms counts as activity
        let mut out = [0u8; 64];
        let t = c
            .send_chunks(ms(400), Flags::default(), 1, &[0xAA, 0xBB], &mut out)
            .unwrap();
        assert_eq!(&out[..t.len], hex("00 00 01 aa bb 12 34 56 78").as_slice());
        assert_eq!(c.poll_timeout(), Some(ms(650)));
        c.handle_timeout(ms(500));
        assert!(drain(&mut c, ms(500)).is_empty());
        c.handle_timeout(ms(650));
        assert_eq!(drain(&mut c, ms(650)).len(), 1);
        assert_eq!(c.stats().keep_alives_sent, 2);
        assert_eq!(c.stats().chunk_packets_sent, 1);
    }

    #[test]
    fn timeout_exactly_at_deadline_sends_nothing() {
        let mut c = online();
        feed(&mut c, ms(2_000), &hex("10 00 00 00 12 34 56 78"));
        let deadline = ms(12_000);
        // keep-alives until just before the deadline
        let mut now = ms(2_000);
        while let Some(t) = c.poll_timeout() {
            if t >= deadline {
                break;
            }
            now = t.max(now);
            c.handle_timeout(now);
            let _ = drain(&mut c, now);
        }
        assert!(now < deadline);
        assert_eq!(c.poll_timeout(), Some(deadline));
        c.handle_timeout(Instant::from_micros(deadline.as_micros() - 1));
        assert_eq!(c.state(), ClientState::Online);
        c.handle_timeout(deadline);
        assert_eq!(closed_cause(&mut c), ClientCloseCause::Timeout);
        assert!(drain(&mut c, deadline).is_empty());
    }

    #[test]
    fn local_close_with_reason_then_silence() {
        let mut c = online();
        c.close(ms(10), "bye").unwrap();
        assert_eq!(closed_cause(&mut c), ClientCloseCause::Local);
        assert_eq!(
            drain(&mut c, ms(10)),
            [hex("10 00 00 04 62 79 65 00 12 34 56 78")]
        );
        assert_eq!(c.close(ms(11), "again"), Err(CloseError::AlreadyClosed));
        feed(&mut c, ms(12), &hex("10 00 00 00 12 34 56 78"));
        assert_eq!(c.stats().ignored_closed, 1);
        c.handle_timeout(ms(60_000));
        assert!(drain(&mut c, ms(60_000)).is_empty());
        assert!(events(&mut c).is_empty());
        let mut out = [0u8; 16];
        assert_eq!(
            c.send_chunks(ms(1), Flags::default(), 0, &[], &mut out),
            Err(SendError::NotOnline)
        );
    }

    #[test]
    fn close_carries_ack_and_empty_reason() {
        let mut c = online();
        c.set_ack(1);
        c.close(ms(10), "").unwrap();
        assert_eq!(drain(&mut c, ms(10)), [hex("10 01 00 04 12 34 56 78")]);
    }

    #[test]
    fn close_before_connect_sends_nothing_and_while_connecting_is_bare() {
        let mut c: Client = Client::default();
        c.close(ms(0), "x").unwrap();
        assert_eq!(closed_cause(&mut c), ClientCloseCause::Local);
        assert!(drain(&mut c, ms(0)).is_empty());

        let mut c: Client = Client::default();
        c.connect(ms(0)).unwrap();
        c.close(ms(1), "").unwrap();
        // the queued CONNECT is dropped, only the CLOSE goes out
        assert_eq!(drain(&mut c, ms(1)), [hex("10 00 00 04")]);
    }

    #[test]
    fn peer_close_with_reason_online_and_while_connecting() {
        let mut c = online();
        let mut pkt = hex("10 00 00 04");
        pkt.extend_from_slice(b"Kicked (ci test kick)\0");
        pkt.extend_from_slice(&TOK.0);
        feed(&mut c, ms(5), &pkt);
        match closed_cause(&mut c) {
            ClientCloseCause::Peer { reason } => {
                assert_eq!(reason.as_str(), "Kicked (ci test kick)")
            }
            other => panic!("{other:?}"),
        }
        assert!(drain(&mut c, ms(5)).is_empty());

        let mut c: Client = Client::default();
        c.connect(ms(0)).unwrap();
        let _ = drain(&mut c, ms(0));
        let mut pkt = hex("10 00 00 04");
        pkt.extend_from_slice(b"This server is full\0");
        pkt.extend_from_slice(&[1, 2, 3, 4]);
        feed(&mut c, ms(1), &pkt);
        match closed_cause(&mut c) {
            ClientCloseCause::Peer { reason } => assert_eq!(reason.as_str(), "This server is full"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn wrong_token_dropped_and_counted() {
        let mut c = online();
        feed(&mut c, ms(5), &hex("10 00 00 04 78 00 01 02 03 04"));
        feed(&mut c, ms(5), &hex("00 00 01 aa 01 02 03 04"));
        feed(&mut c, ms(5), &hex("10 00 00"));
        assert_eq!(c.stats().dropped_wrong_token, 2);
        assert_eq!(c.stats().dropped_malformed, 1);
        assert_eq!(c.state(), ClientState::Online);
        assert!(events(&mut c).is_empty());
    }

    #[test]
    fn bad_ack_dropped_and_counted_until_sequence_reported() {
        let mut c = online();
        let close_ack5 = hex("10 05 00 04 79 00 12 34 56 78");
        feed(&mut c, ms(5), &close_ack5);
        assert_eq!(c.stats().dropped_bad_ack, 1);
        assert_eq!(c.state(), ClientState::Online);
        c.set_sequence(5);
        feed(&mut c, ms(6), &hex("10 03 00 00 12 34 56 78"));
        assert_eq!(c.peer_ack(), 3);
        // below peer_ack now: dropped
        feed(&mut c, ms(7), &hex("10 02 00 00 12 34 56 78"));
        assert_eq!(c.stats().dropped_bad_ack, 2);
        feed(&mut c, ms(8), &close_ack5);
        assert!(matches!(
            closed_cause(&mut c),
            ClientCloseCause::Peer { .. }
        ));
    }

    #[test]
    fn ack_range_wraps() {
        assert!(ack_in_range(0, 0, 0));
        assert!(!ack_in_range(1, 0, 0));
        assert!(ack_in_range(1023, 1000, 3));
        assert!(ack_in_range(2, 1000, 3));
        assert!(!ack_in_range(500, 1000, 3));
    }

    #[test]
    fn connect_accept_with_nonzero_ack_is_dropped() {
        let mut c: Client = Client::default();
        c.connect(ms(0)).unwrap();
        let _ = drain(&mut c, ms(0));
        feed(&mut c, ms(1), &hex("10 01 00 02 54 4b 45 4e 12 34 56 78"));
        assert_eq!(c.stats().dropped_bad_ack, 1);
        assert_eq!(c.state(), ClientState::Connecting);
    }

    #[test]
    fn chunks_delivered_borrowed_and_refresh_liveness() {
        let mut c = online();
        let app = feed(&mut c, ms(9_000), &hex("00 00 01 42 43 12 34 56 78"));
        assert_eq!(app, Some(vec![0x42, 0x43]));
        assert_eq!(c.stats().chunk_packets_received, 1);
        // the timeout now runs from 9 s
        c.handle_timeout(ms(10_000));
        let _ = drain(&mut c, ms(10_000));
        assert_eq!(c.state(), ClientState::Online);
        // a compressed packet is passed through unverified (its token is inside the data)
        let app = feed(&mut c, ms(10_001), &hex("80 00 01 ff ee"));
        assert_eq!(app, Some(vec![0xFF, 0xEE]));
    }

    #[test]
    fn chunks_while_connecting_are_dropped() {
        let mut c: Client = Client::default();
        c.connect(ms(0)).unwrap();
        assert_eq!(feed(&mut c, ms(1), &hex("00 00 01 42")), None);
        assert_eq!(c.stats().dropped_not_online, 1);
    }

    #[test]
    fn send_chunks_errors_leave_state() {
        let mut c = online();
        let mut small = [0u8; 5];
        assert_eq!(
            c.send_chunks(ms(1), Flags::default(), 1, &[1, 2], &mut small),
            Err(SendError::BufferTooSmall { required: 9 })
        );
        assert_eq!(c.stats().chunk_packets_sent, 0);
        let big = [0u8; 1394];
        let mut out = [0u8; 1500];
        assert_eq!(
            c.send_chunks(ms(1), Flags::default(), 1, &big, &mut out),
            Err(SendError::TooLong { len: 1401 })
        );
        // compressed: no token appended, ack carried
        c.set_ack(513);
        let flags = Flags {
            compression: true,
            ..Flags::default()
        };
        let t = c.send_chunks(ms(1), flags, 2, &[9], &mut out).unwrap();
        assert_eq!(&out[..t.len], hex("82 01 02 09").as_slice());
    }

    #[test]
    fn buffer_too_small_keeps_frame_queued() {
        let mut c: Client = Client::default();
        c.connect(ms(0)).unwrap();
        let mut small = [0u8; 4];
        assert_eq!(
            c.poll_transmit(ms(0), &mut small),
            Err(BufferTooSmall { required: 12 })
        );
        assert_eq!(c.stats().connects_sent, 0);
        assert_eq!(drain(&mut c, ms(0)).len(), 1);
    }

    #[test]
    fn backwards_time_shifts_the_timeline() {
        let mut c = online();
        c.handle_timeout(ms(300));
        let _ = drain(&mut c, ms(300));
        // the caller's clock steps back 300 ms: no time passes, nothing is due
        c.handle_timeout(ms(1));
        assert!(drain(&mut c, ms(0)).is_empty());
        feed(&mut c, Instant::ZERO, &hex("10 00 00 00 12 34 56 78"));
        // the next keep-alive is due 250 ms after this packet, in the caller's clock
        assert_eq!(c.poll_timeout(), Some(ms(250)));
        let mut now = ms(250);
        while c.state() == ClientState::Online {
            c.handle_timeout(now);
            let _ = drain(&mut c, now);
            now = c.poll_timeout().unwrap_or(now);
        }
        // keep-alives kept going; the timeout came 10 s after the last packet
        assert_eq!(now, ms(10_000));
    }

    #[test]
    fn full_event_queue_refuses_input_without_consuming() {
        let mut c: Client<1> = Client::new(ClientConfig::default());
        c.connect(ms(0)).unwrap();
        let _ = drain(&mut c, ms(0));
        feed(&mut c, ms(1), &hex("10 00 00 02 54 4b 45 4e 12 34 56 78"));
        let close = hex("10 00 00 04 12 34 56 78");
        assert_eq!(
            c.handle_input(ms(2), (), &close),
            Err(InputError::EventQueueFull)
        );
        assert_eq!(c.close(ms(2), ""), Err(CloseError::EventQueueFull));
        assert_eq!(c.state(), ClientState::Online);
        assert_eq!(events(&mut c).len(), 1);
        feed(&mut c, ms(3), &close);
        assert!(matches!(
            closed_cause(&mut c),
            ClientCloseCause::Peer { .. }
        ));
    }

    #[test]
    fn at_most_one_closed_event() {
        let mut c = online();
        feed(&mut c, ms(1), &hex("10 00 00 04 12 34 56 78"));
        c.handle_timeout(ms(100_000));
        let _ = c.close(ms(100_001), "late");
        let closed = events(&mut c)
            .iter()
            .filter(|e| matches!(e, ClientEvent::Closed { .. }))
            .count();
        assert_eq!(closed, 1);
    }

    #[test]
    fn late_connect_accept_gets_no_second_accept() {
        let mut c: Client = Client::default();
        c.connect(ms(0)).unwrap();
        let _ = drain(&mut c, ms(0));
        c.handle_timeout(ms(500));
        assert_eq!(drain(&mut c, ms(500)).len(), 1, "CONNECT resent");
        let ca = hex("10 00 00 02 54 4b 45 4e 12 34 56 78");
        feed(&mut c, ms(600), &ca);
        assert_eq!(drain(&mut c, ms(600)), [hex("10 00 00 03 12 34 56 78")]);
        // the answer to the resent CONNECT, and a duplicate of it: liveness only
        feed(&mut c, ms(1_100), &ca);
        feed(&mut c, ms(1_101), &ca);
        assert!(drain(&mut c, ms(1_101)).is_empty());
        assert_eq!(
            events(&mut c),
            [ClientEvent::Connected { token: Some(TOK) }]
        );
    }

    /// Let the client's timers fire up to and including `until`; the frames sent, with times
    fn run_until_t(c: &mut Client, until: Instant) -> Vec<(Instant, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(t) = c.poll_timeout().filter(|t| *t <= until) {
            c.handle_timeout(t);
            out.extend(drain(c, t).into_iter().map(|f| (t, f)));
        }
        out
    }

    #[test]
    fn accept_retry_resends_connect_until_answered() {
        let mut c = online();
        let connect = hex("10 00 00 01 54 4b 45 4e ff ff ff ff");
        let connects = |frames: &[(Instant, Vec<u8>)]| {
            frames
                .iter()
                .filter(|(_, f)| *f == connect)
                .map(|(t, _)| *t)
                .collect::<Vec<_>>()
        };
        // the ACCEPT was lost; keep-alives go unanswered until the retry at 2 s, and every retry
        // CONNECT is lost too: it is resent every 500 ms
        let sent = run_until_t(&mut c, ms(3_600));
        assert_eq!(
            connects(&sent),
            [ms(2_000), ms(2_500), ms(3_000), ms(3_500)]
        );
        assert_eq!(c.stats().accept_retries, 1);
        assert_eq!(c.stats().connects_sent, 5);
        // the answer brings one ACCEPT and 2 s of waiting without CONNECTs
        feed(
            &mut c,
            ms(3_600),
            &hex("10 00 00 02 54 4b 45 4e 12 34 56 78"),
        );
        assert_eq!(drain(&mut c, ms(3_600)), [hex("10 00 00 03 12 34 56 78")]);
        let sent = run_until_t(&mut c, ms(5_650));
        assert_eq!(connects(&sent), [ms(5_600)]);
        assert_eq!(c.stats().accept_retries, 2);
        // any other packet ends the recovery for good
        feed(&mut c, ms(5_700), &hex("10 00 00 00 12 34 56 78"));
        let sent = run_until_t(&mut c, ms(15_000));
        assert!(connects(&sent).is_empty());
        assert_eq!(c.stats().accept_retries, 2);
        assert_eq!(c.state(), ClientState::Online);
    }

    #[test]
    fn keep_alive_carries_reported_ack() {
        let mut c = online();
        c.set_ack(1023 + 1024);
        assert_eq!(c.ack(), 1023);
        c.handle_timeout(ms(250));
        assert_eq!(drain(&mut c, ms(250)), [hex("13 ff 00 00 12 34 56 78")]);
    }
}
