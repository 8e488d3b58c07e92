//! One connection of the server: its phase, deadlines and the bounded slots of frames it still
//! has to send

use heapless::{String, Vec};

use crate::io::{BufferTooSmall, FrameKind};
use crate::longport::control::{
    emit_packet, Body, Close, CloseCode, ErrorBody, Heartbeat, SessionGrant, CMD_CLOSE,
};
use crate::longport::deframe::{Handshake, StreamDeframer, Transport};
use crate::longport::event::{CloseCause, ServerEvent};
use crate::longport::server::MAX_SESSION_ID_LEN;
use crate::longport::wire::{Kind, RequestId, Status};
use crate::longport::{emit_raw, Echo, Text, MAX_WS_CONTROL_PAYLOAD};
use crate::time::{Duration, Instant};

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
        session_id: String<MAX_SESSION_ID_LEN>,
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
                    session_id,
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
    pub(super) phase: Phase,
    pub(super) deframer: StreamDeframer,
    pub(super) handshake: Option<Handshake>,
    pub(super) auth_deadline: Instant,
    pub(super) last_rx: Instant,
    pub(super) next_ping: Instant,
    pub(super) resp: Option<CtlResponse>,
    pub(super) echo: Option<Echo>,
    pub(super) pong: Option<Vec<u8, MAX_WS_CONTROL_PAYLOAD>>,
    pub(super) ping_due: bool,
    close: Option<PendingClose>,
    /// `Connected`, until polled
    pub(super) announce: Option<ServerEvent<P>>,
    /// Why it closes, reported with `Closed`
    pub(super) cause: Option<CloseCause>,
}

impl<P: Copy> Peer<P> {
    /// A new connection at `now`: TCP waits for the handshake, WebSocket for the first packet
    pub(super) fn new(
        key: P,
        transport: Transport,
        now: Instant,
        auth_timeout: Duration,
        ping_interval: Duration,
        max_body: usize,
    ) -> Self {
        let tcp = transport == Transport::Tcp;
        Peer {
            key,
            transport,
            phase: if tcp {
                Phase::AwaitHandshake
            } else {
                Phase::AwaitAuth
            },
            deframer: StreamDeframer::new(tcp, max_body),
            handshake: None,
            auth_deadline: now + auth_timeout,
            last_rx: now,
            next_ping: now + ping_interval,
            resp: None,
            echo: None,
            pong: None,
            ping_due: false,
            close: None,
            announce: None,
            cause: None,
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

    /// The next deadline of this connection, in machine time
    pub(super) fn deadline(&self, heartbeat_timeout: Duration) -> Option<Instant> {
        let d = match self.phase {
            Phase::AwaitHandshake | Phase::AwaitAuth | Phase::Pending(_) => self.auth_deadline,
            Phase::Authenticated => self.last_rx + heartbeat_timeout,
            Phase::Closing | Phase::Gone => return None,
        };
        Some(match self.transport {
            Transport::WebSocket => d.min(self.next_ping),
            Transport::Tcp => d,
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
        self.pong = None;
        self.ping_due = false;
        self.close = None;
        true
    }

    /// Write the next frame into `buf`; the slot is cleared only on success
    ///
    /// Order: control response, heartbeat echo, pong, ping (a `Heartbeat{timestamp = wall_ms}`
    /// payload), Close push, WebSocket close frame. Returns the length and the frame kind.
    pub(super) fn next_frame(
        &mut self,
        buf: &mut [u8],
        wall_ms: i64,
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
        } else if let Some(payload) = &self.pong {
            let len = emit_raw(payload, buf)?;
            self.pong = None;
            (len, FrameKind::WsPong)
        } else if self.ping_due {
            let len = Heartbeat::new(wall_ms, None).encode(buf)?;
            self.ping_due = false;
            (len, FrameKind::WsPing)
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
