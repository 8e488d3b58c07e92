//! The LongPort client over `embassy_net::tcp::TcpSocket`

use embassy_futures::select::{select, Either};
use embassy_net::tcp::TcpSocket;
use embassy_net::{IpEndpoint, Stack};
use embassy_time::{with_timeout, Duration, Timer};
use tether_net::longport::{ClientApp, ClientEvent, Error, RequestFailure, RequestId, Status};
use tether_net::{Duration as TDuration, FrameKind, Instant};

use super::now;
use crate::client::LongPortClient;
use crate::rx::{feed_one, Fed, RxBuf};
use crate::Input;

/// The buffers of a TCP socket: `N` bytes each way
pub struct TcpBuffers<const N: usize = 4096> {
    rx: [u8; N],
    tx: [u8; N],
}

impl<const N: usize> TcpBuffers<N> {
    /// Empty buffers (put them in a `static` or a long-lived task frame)
    pub const fn new() -> Self {
        TcpBuffers {
            rx: [0; N],
            tx: [0; N],
        }
    }
}

impl<const N: usize> Default for TcpBuffers<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// Why [`TcpClient::call`] got no response body
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallError {
    /// The machine refused to send the request
    Refused(Error),
    /// The response carried this non-zero status
    Status(Status),
    /// The response body (this many bytes) does not fit the buffer
    TooLong(usize),
    /// No response within the request's timeout
    TimedOut,
    /// The connection ended first
    Failed(RequestFailure),
}

/// A LongPort client on an `embassy_net` TCP socket, with a receive buffer of `RX` bytes and an
/// output buffer of `OUT` bytes (the login packet and every request must fit: configure the
/// machine's `max_body` below `RX - 35`)
pub struct TcpClient<'s, M: LongPortClient, const RX: usize = 2048, const OUT: usize = 1024> {
    sock: TcpSocket<'s>,
    remote: IpEndpoint,
    machine: M,
    rx: RxBuf<[u8; RX]>,
    out: [u8; OUT],
    open: bool,
    dial: bool,
    gone: bool,
    /// Whole packets may wait in `rx`: a `run` stopped in the middle of a read's bytes
    unfed: bool,
}

impl<'s, M: LongPortClient, const RX: usize, const OUT: usize> TcpClient<'s, M, RX, OUT> {
    /// A driver that dials `remote` whenever `machine` asks for a transport
    pub fn new(sock: TcpSocket<'s>, remote: IpEndpoint, machine: M) -> Self {
        TcpClient {
            sock,
            remote,
            machine,
            rx: RxBuf::new([0; RX]),
            out: [0; OUT],
            open: false,
            dial: false,
            gone: false,
            unfed: false,
        }
    }

    /// A socket on `stack` with `buffers`, driving `machine` towards `remote`
    pub fn with_buffers<const N: usize>(
        stack: Stack<'s>,
        buffers: &'s mut TcpBuffers<N>,
        remote: IpEndpoint,
        machine: M,
    ) -> Self {
        let TcpBuffers { rx, tx } = buffers;
        Self::new(TcpSocket::new(stack, rx, tx), remote, machine)
    }

    /// The machine (getters)
    pub fn machine(&self) -> &M {
        &self.machine
    }

    /// True while a TCP connection is open
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Issue a command at the current time; what it queues goes out at the start of the next
    /// [`TcpClient::run`]
    pub fn command<R>(&mut self, f: impl FnOnce(&mut M, Instant) -> R) -> R {
        f(&mut self.machine, now())
    }

    /// Send a business request now; its response comes through [`TcpClient::run`]
    ///
    /// # Errors
    /// The machine's refusal (`BufferTooSmall` when the packet does not fit `OUT`).
    pub async fn request(
        &mut self,
        cmd: u8,
        timeout: TDuration,
        body: &[u8],
    ) -> Result<RequestId, Error> {
        let (id, t) = self
            .machine
            .send_request(now(), cmd, timeout, body, &mut self.out)?;
        if self.open && write_all(&mut self.sock, &self.out[..t.len]).await.is_err() {
            self.lose();
        }
        Ok(id)
    }

    /// Run the loop until the next event (at most `limit`; `None` when none came), dropping
    /// application values
    pub async fn next_event(&mut self, limit: Duration) -> Option<ClientEvent> {
        self.run(limit, |_, _, input| input.into_event()).await
    }

    /// Send a business request and run the loop until its outcome; the body of a status-0
    /// response is copied into `response` and its length returned
    ///
    /// Other events and application values that arrive meanwhile are dropped (no allocator:
    /// there is no backlog); use [`TcpClient::request`] and [`TcpClient::run`] to see them.
    ///
    /// # Errors
    /// [`CallError`].
    pub async fn call(
        &mut self,
        cmd: u8,
        timeout: TDuration,
        body: &[u8],
        response: &mut [u8],
    ) -> Result<usize, CallError> {
        let id = self
            .request(cmd, timeout, body)
            .await
            .map_err(CallError::Refused)?;
        let outcome = self
            .run(
                // no limit of its own: the request's timeout ends it (136 years, still far from
                // overflowing `embassy_time::Instant` when added to now)
                Duration::from_secs(u32::MAX as u64),
                |_, _, input| match input {
                    Input::App(
                        _,
                        ClientApp::Response {
                            request_id,
                            status,
                            body,
                            ..
                        },
                    ) if request_id == id => Some(if status != Status::Success {
                        Err(CallError::Status(status))
                    } else if body.len() > response.len() {
                        Err(CallError::TooLong(body.len()))
                    } else {
                        response[..body.len()].copy_from_slice(body);
                        Ok(body.len())
                    }),
                    Input::Event(ClientEvent::RequestTimedOut { id: x }) if x == id => {
                        Some(Err(CallError::TimedOut))
                    }
                    Input::Event(ClientEvent::RequestFailed { id: x, reason }) if x == id => {
                        Some(Err(CallError::Failed(reason)))
                    }
                    _ => None,
                },
            )
            .await;
        outcome.unwrap_or(Err(CallError::TimedOut))
    }

    /// Drop the TCP connection now, as if the network had (the machine reconnects per policy)
    pub fn drop_transport(&mut self) {
        if self.open {
            self.lose();
        }
    }

    fn lose(&mut self) {
        self.sock.abort();
        self.open = false;
        self.rx.clear();
        self.machine.handle_closed(now(), ());
    }

    /// Run the loop for at most `limit`, handing every event and application value to `f`;
    /// `Some(r)` as soon as `f` returns it (events queued then wait in the machine, packets
    /// already read in the receive buffer, for the next call), `None` when `limit` elapsed
    pub async fn run<R>(
        &mut self,
        limit: Duration,
        mut f: impl for<'a> FnMut(&mut M, Instant, Input<'a, M>) -> Option<R>,
    ) -> Option<R> {
        let end = embassy_time::Instant::now() + limit;
        loop {
            let r = self.flush(&mut f).await;
            if self.dial {
                self.dial = false;
                self.open_transport().await;
                if r.is_none() {
                    continue;
                }
            }
            if r.is_some() {
                return r;
            }
            if core::mem::take(&mut self.unfed) && self.open {
                if let Some(r) = self.feed(&mut f).await {
                    return Some(r);
                }
                continue;
            }
            let wake = super::wake_at(&self.machine, end)?;
            if !self.open {
                Timer::at(wake).await;
                self.machine.handle_timeout(now());
                continue;
            }
            let room = self.rx.spare(512);
            if room.is_empty() {
                // a packet larger than RX: this stream cannot go on
                self.lose();
                continue;
            }
            match select(self.sock.read(room), Timer::at(wake)).await {
                Either::First(Ok(0) | Err(_)) => self.lose(),
                Either::First(Ok(n)) => {
                    self.rx.filled(n);
                    if let Some(r) = self.feed(&mut f).await {
                        return Some(r);
                    }
                }
                Either::Second(()) => self.machine.handle_timeout(now()),
            }
        }
    }

    async fn open_transport(&mut self) {
        self.sock.abort();
        let _ = self.sock.flush().await;
        let timeout = self.machine.connect_timeout();
        let limit = Duration::from_micros(u64::try_from(timeout.as_micros()).unwrap_or(u64::MAX));
        let connected = with_timeout(limit, self.sock.connect(self.remote)).await;
        let t = now();
        if matches!(connected, Ok(Ok(()))) {
            self.open = true;
            self.rx.clear();
            if self.machine.handle_connected(t).is_err() {
                self.sock.abort();
                self.open = false;
            }
        } else {
            self.sock.abort();
            self.machine.handle_closed(t, ());
        }
    }

    /// Feed every whole packet in `rx`, draining after each, until `f` asks to stop: the
    /// packets after that one stay in `rx` for the next `run` (their values are borrowed from
    /// it), the events of that one in the machine
    async fn feed<R>(
        &mut self,
        f: &mut impl for<'a> FnMut(&mut M, Instant, Input<'a, M>) -> Option<R>,
    ) -> Option<R> {
        loop {
            let t = now();
            let mut result = None;
            let fed = feed_one(&mut self.machine, t, (), &mut self.rx, |m, app| {
                result = f(m, t, Input::App((), app));
            });
            if result.is_some() {
                self.unfed = !self.rx.is_empty();
                return result;
            }
            match fed {
                Ok(Fed::NeedMore(_)) | Err(Error::QueueFull) | Ok(Fed::Frame) => {}
                Err(_) => return None,
            }
            let stop = matches!(fed, Ok(Fed::NeedMore(_)));
            if let Some(r) = self.flush(f).await {
                self.unfed = !self.rx.is_empty();
                return Some(r);
            }
            if stop || !self.open {
                return None;
            }
        }
    }

    /// Step 2, awaited: frames to the socket, events to the driver's housekeeping, then to `f`;
    /// a connection the machine is finished with (`Disconnected`, `Closed`, a failed write) is
    /// closed before this returns, also when `f` stopped the run at that event
    async fn flush<R>(
        &mut self,
        f: &mut impl for<'a> FnMut(&mut M, Instant, Input<'a, M>) -> Option<R>,
    ) -> Option<R> {
        let r = self.flush_events(f).await;
        if core::mem::take(&mut self.gone) {
            if self.open {
                self.sock.abort();
                self.open = false;
            }
            self.rx.clear();
        }
        r
    }

    async fn flush_events<R>(
        &mut self,
        f: &mut impl for<'a> FnMut(&mut M, Instant, Input<'a, M>) -> Option<R>,
    ) -> Option<R> {
        loop {
            let t = now();
            loop {
                match self.machine.poll_transmit(t, &mut self.out) {
                    Ok(Some(tx)) => {
                        if tx.kind == FrameKind::Stream
                            && self.open
                            && !self.gone
                            && write_all(&mut self.sock, &self.out[..tx.len])
                                .await
                                .is_err()
                        {
                            self.gone = true;
                            self.machine.handle_closed(now(), ());
                        }
                    }
                    Ok(None) => break,
                    // OUT cannot hold a machine frame (a login with a long token): give up
                    Err(_) => {
                        let _ = self.machine.close(t, "output buffer too small");
                        break;
                    }
                }
            }
            let ev = self.machine.poll_event()?;
            match ev {
                ClientEvent::ConnectTransport { .. } => self.dial = true,
                ClientEvent::Disconnected { .. } | ClientEvent::Closed { .. } => self.gone = true,
                _ => {}
            }
            if let Some(r) = f(&mut self.machine, t, Input::Event(ev)) {
                return Some(r);
            }
        }
    }
}

async fn write_all(sock: &mut TcpSocket<'_>, mut buf: &[u8]) -> Result<(), ()> {
    while !buf.is_empty() {
        match sock.write(buf).await {
            Ok(0) | Err(_) => return Err(()),
            Ok(n) => buf = &buf[n..],
        }
    }
    Ok(())
}
