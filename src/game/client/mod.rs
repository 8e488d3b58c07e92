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
    self, ack_in_range, ChunkPacket, Control, ControlPacket, DecodeError, Flags, Packet, Reason,
    Token, TokenMode, ACK_MODULO,
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
mod tests;
