//! One connection of the server: its phase, deadlines and the bounded slots of frames it still
//! has to send

use heapless::Vec;

use crate::io::{BufferTooSmall, FrameKind};
use crate::longport::control::{
    emit_packet, Body, Close, CloseCode, ErrorBody, Heartbeat, SessionGrant, CMD_CLOSE,
    CMD_HEARTBEAT,
};
use crate::longport::deframe::{Handshake, StreamDeframer, Transport};
use crate::longport::event::{CloseCause, ServerEvent};
use crate::longport::server::admission::{AccountId, Source};
use crate::longport::server::rate::Buckets;
use crate::longport::server::session::SessionId;
use crate::longport::wire::{Kind, RequestId, Status};
use crate::longport::{emit_raw, Echo, Text, WallClock, MAX_WS_CONTROL_PAYLOAD};
use crate::time::{Duration, Instant};

/// Rate-limit refusals a connection holds for `poll_transmit`; one more input is refused with
/// `QueueFull` until they are handed out
pub(super) const REFUSAL_SLOTS: usize = 4;
/// `Error.code` of a rate-limit refusal (the code the LongPort documentation lists)
pub(super) const ERROR_CODE_RATE_LIMITED: u64 = 301_606;
/// `Error.msg` of a rate-limit refusal
const RATE_LIMITED_TEXT: &str = "request rate limited";

/// The login waiting for the application's decision
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(super) enum Login {
    Auth {
        request_id: RequestId,
    },
    Reconnect {
        request_id: RequestId,
        /// The session presented (see `session::Sessions`)
        generation: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(super) enum Phase {
    AwaitHandshake,
    AwaitAuth,
    Pending(Login),
    Authenticated,
    /// Frames of the close still to hand out; then `Closed` is reported and the slot freed
    Closing,
    /// The transport is gone; `Closed` is reported at the next `poll_event`
    Gone,
}

/// Body of a response the machine sends by itself
#[derive(Debug, Clone)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(super) enum CtlBody {
    Grant {
        session_id: SessionId,
        expires: i64,
        limit: u32,
        online: u32,
    },
    Error {
        code: u64,
        msg: Text,
    },
}

/// A response the machine sends by itself (login answers, status-3/5 refusals)
#[derive(Debug, Clone)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(super) struct CtlResponse {
    pub(super) cmd: u8,
    pub(super) request_id: RequestId,
    pub(super) status: Status,
    pub(super) body: CtlBody,
}

impl CtlResponse {
    fn emit(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let kind = Kind::Response {
            request_id: self.request_id,
            status: self.status,
        };
        match &self.body {
            CtlBody::Grant {
                session_id,
                expires,
                limit,
                online,
            } => {
                let grant = SessionGrant {
                    session_id: session_id.as_str(),
                    expires: *expires,
                    limit: *limit,
                    online: *online,
                };
                emit_packet(buf, &[], kind, self.cmd, &grant)
            }
            CtlBody::Error { code, msg } => {
                emit_packet(buf, &[], kind, self.cmd, &ErrorBody::new(*code, msg))
            }
        }
    }
}

/// A request the machine refused by itself (status 3 + `Error{301606}`: rate limited)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(super) struct Refusal {
    pub(super) cmd: u8,
    pub(super) request_id: RequestId,
}

impl Refusal {
    fn emit(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let kind = Kind::Response {
            request_id: self.request_id,
            status: Status::BadRequest,
        };
        let body = ErrorBody::new(ERROR_CODE_RATE_LIMITED, RATE_LIMITED_TEXT);
        emit_packet(buf, &[], kind, self.cmd, &body)
    }
}

/// The Close push (and on WebSocket the close frame) of a closing connection
#[derive(Debug, Clone)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(super) struct PendingClose {
    code: CloseCode,
    text: Text,
    push_pending: bool,
    ws_pending: bool,
}

/// One registered connection
#[derive(Debug, Clone)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(super) struct Peer<P> {
    pub(super) key: P,
    pub(super) transport: Transport,
    /// Where it comes from (the caller's key), for the per-source cap
    pub(super) source: Source,
    /// When it was registered (machine time): eviction takes the oldest first
    pub(super) since: Instant,
    pub(super) phase: Phase,
    pub(super) deframer: StreamDeframer,
    pub(super) handshake: Option<Handshake>,
    pub(super) auth_deadline: Instant,
    pub(super) last_rx: Instant,
    /// Next heartbeat of the server (WebSocket ping from the start; TCP request once
    /// authenticated, when configured)
    pub(super) next_ping: Option<Instant>,
    pub(super) resp: Option<CtlResponse>,
    pub(super) echo: Option<Echo>,
    pub(super) refusals: Vec<Refusal, REFUSAL_SLOTS>,
    pub(super) pong: Option<Vec<u8, MAX_WS_CONTROL_PAYLOAD>>,
    pub(super) ping_due: bool,
    /// Id of the next server heartbeat
    pub(super) hb_next_id: u32,
    /// The server heartbeat handed out and not yet answered: its id and when
    pub(super) hb_sent: Option<(u32, Instant)>,
    /// A measured round-trip time, until polled as `HeartbeatRtt`
    pub(super) rtt: Option<Duration>,
    /// The account of the login, once accepted
    pub(super) account: Option<AccountId>,
    /// Requests handed to the application and not answered yet
    pub(super) unanswered: u16,
    pub(super) buckets: Buckets,
    close: Option<PendingClose>,
    /// `Connected`, until polled
    pub(super) announce: Option<ServerEvent<P>>,
    /// Why it closes, reported with `Closed`
    pub(super) cause: Option<CloseCause>,
    /// In the server's queue of connections with a frame to send
    pub(super) tx_queued: bool,
    /// In the server's queue of connections with an event to report
    pub(super) ev_queued: bool,
}

impl<P: Copy> Peer<P> {
    /// A new connection at `now`: TCP waits for the handshake, WebSocket for the first packet;
    /// `max_body` is the limit before authentication
    pub(super) fn new(
        key: P,
        transport: Transport,
        source: Source,
        now: Instant,
        auth_timeout: u64,
        ws_ping_interval: u64,
        max_body: usize,
    ) -> Self {
        let tcp = transport == Transport::Tcp;
        Peer {
            key,
            transport,
            source,
            since: now,
            phase: if tcp {
                Phase::AwaitHandshake
            } else {
                Phase::AwaitAuth
            },
            deframer: StreamDeframer::new(tcp, max_body),
            handshake: None,
            auth_deadline: now.add_micros(auth_timeout),
            last_rx: now,
            next_ping: (!tcp).then(|| now.add_micros(ws_ping_interval)),
            resp: None,
            echo: None,
            refusals: Vec::new(),
            pong: None,
            ping_due: false,
            hb_next_id: 1,
            hb_sent: None,
            rtt: None,
            account: None,
            unanswered: 0,
            buckets: Buckets::new(),
            close: None,
            announce: None,
            cause: None,
            tx_queued: false,
            ev_queued: false,
        }
    }

    /// Authenticated and not closing: counts against its account's quota
    pub(super) fn is_live(&self) -> bool {
        self.phase == Phase::Authenticated
    }

    /// An answer to server heartbeat `id` arrived at `now`: the round-trip time is kept for
    /// `poll_event`; false when `id` is not the one outstanding
    pub(super) fn heartbeat_answered(&mut self, id: u32, now: Instant) -> bool {
        match self.hb_sent {
            Some((sent_id, at)) if sent_id == id => {
                self.hb_sent = None;
                self.rtt = Some(now.saturating_duration_since(at));
                true
            }
            _ => false,
        }
    }

    pub(super) fn is_unauthenticated(&self) -> bool {
        matches!(
            self.phase,
            Phase::AwaitHandshake | Phase::AwaitAuth | Phase::Pending(_)
        )
    }

    pub(super) fn is_closing(&self) -> bool {
        matches!(self.phase, Phase::Closing | Phase::Gone)
    }

    /// No frame of this connection waits for `poll_transmit`
    pub(super) fn flushed(&self) -> bool {
        self.resp.is_none()
            && self.echo.is_none()
            && self.refusals.is_empty()
            && self.pong.is_none()
            && !self.ping_due
            && self
                .close
                .as_ref()
                .is_none_or(|c| !c.push_pending && !c.ws_pending)
    }

    /// How its packets go on the transport
    pub(super) fn packet_kind(&self) -> FrameKind {
        match self.transport {
            Transport::Tcp => FrameKind::Stream,
            Transport::WebSocket => FrameKind::WsBinary,
        }
    }

    /// The next deadline of this connection, in machine time (`heartbeat_timeout` in
    /// microseconds)
    pub(super) fn deadline(&self, heartbeat_timeout: u64) -> Option<Instant> {
        let d = match self.phase {
            Phase::AwaitHandshake | Phase::AwaitAuth | Phase::Pending(_) => self.auth_deadline,
            Phase::Authenticated => self.last_rx.add_micros(heartbeat_timeout),
            Phase::Closing | Phase::Gone => return None,
        };
        Some(match self.next_ping {
            Some(ping) => d.min(ping),
            None => d,
        })
    }

    /// Queue the `Close{code, text}` push (and the WebSocket close frame); false if it already
    /// closes
    pub(super) fn begin_close(&mut self, cause: CloseCause, code: CloseCode, text: Text) -> bool {
        if self.is_closing() {
            return false;
        }
        self.phase = Phase::Closing;
        self.ping_due = false;
        self.next_ping = None;
        self.pong = None;
        self.close = Some(PendingClose {
            code,
            text,
            push_pending: true,
            ws_pending: self.transport == Transport::WebSocket,
        });
        self.cause = Some(cause);
        true
    }

    /// The transport is gone: drop every queued frame; `cause` unless a close was under way
    /// (false if it was gone already)
    pub(super) fn transport_gone(&mut self, cause: CloseCause) -> bool {
        if self.phase == Phase::Gone {
            return false;
        }
        if self.phase != Phase::Closing {
            self.cause = Some(cause);
        }
        self.phase = Phase::Gone;
        self.resp = None;
        self.echo = None;
        self.refusals.clear();
        self.pong = None;
        self.ping_due = false;
        self.next_ping = None;
        self.close = None;
        true
    }

    /// Write the next frame into `buf`; the slot is cleared only on success
    ///
    /// Order: control response, heartbeat echo, rate-limit refusals, pong, server heartbeat (a
    /// `Heartbeat{timestamp = wall clock ms, heartbeat_id}` body: a WebSocket ping's payload, or a
    /// cmd-1 request on TCP), Close push, WebSocket close frame. Returns the length and the
    /// frame kind; `now` is when a heartbeat handed out was sent.
    #[inline]
    pub(super) fn next_frame(
        &mut self,
        buf: &mut [u8],
        now: Instant,
        wall: WallClock,
    ) -> Result<Option<(usize, FrameKind)>, BufferTooSmall> {
        let packet_kind = self.packet_kind();
        Ok(Some(if let Some(r) = &self.resp {
            let len = r.emit(buf)?;
            self.resp = None;
            (len, packet_kind)
        } else if let Some(e) = &self.echo {
            let len = e.emit(buf)?;
            self.echo = None;
            (len, packet_kind)
        } else if let Some(r) = self.refusals.first() {
            let len = r.emit(buf)?;
            self.refusals.remove(0);
            (len, packet_kind)
        } else if let Some(payload) = &self.pong {
            let len = emit_raw(payload, buf)?;
            self.pong = None;
            (len, FrameKind::WsPong)
        } else if self.ping_due {
            let id = self.hb_next_id;
            let body = Heartbeat::new(
                wall.or_epoch_ms(now),
                Some(i32::from_ne_bytes(id.to_ne_bytes())),
            );
            let frame = match self.transport {
                Transport::WebSocket => (body.encode(buf)?, FrameKind::WsPing),
                Transport::Tcp => {
                    let kind = Kind::Request {
                        request_id: RequestId(id),
                        timeout_ms: 0,
                    };
                    let len = emit_packet(buf, &[], kind, CMD_HEARTBEAT, &body)?;
                    (len, FrameKind::Stream)
                }
            };
            self.ping_due = false;
            self.hb_sent = Some((id, now));
            // ids count from 1 and skip 0 on wrap
            self.hb_next_id = id.checked_add(1).unwrap_or(1);
            frame
        } else if let Some(c) = &mut self.close {
            if c.push_pending {
                let body = Close::new(c.code, &c.text);
                let len = emit_packet(buf, &[], Kind::Push, CMD_CLOSE, &body)?;
                c.push_pending = false;
                (len, packet_kind)
            } else if c.ws_pending {
                let len = emit_raw(c.text.as_bytes(), buf)?;
                c.ws_pending = false;
                (len, FrameKind::WsClose(c.code.ws_close_code()))
            } else {
                return Ok(None);
            }
        } else {
            return Ok(None);
        }))
    }
}
