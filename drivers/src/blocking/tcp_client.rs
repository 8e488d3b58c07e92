//! The LongPort client over a blocking `std::net::TcpStream`

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::string::{String, ToString};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use std::vec::Vec;

use tether_net::longport::{Client, ClientApp, ClientEvent, RequestId, Status};
use tether_net::time::Epoch;
use tether_net::{drain, FrameKind, Instant};

use super::Input;
use crate::client::{rx_capacity, LongPortClient};
use crate::rx::{feed_one, Fed, RxBuf};
use crate::QueueFull;

/// How long one socket write may block before the transport counts as broken
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the one-time tokens come from when the client asks for one (`TokenNeeded`)
pub type TokenSource = std::boxed::Box<dyn FnMut() -> Option<String> + Send>;

/// Counters of a [`TcpClient`]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TcpClientStats {
    /// Transports opened (`handle_connected` given)
    pub dials: u64,
    /// Dials that failed (`handle_closed` given)
    pub dial_errors: u64,
    /// Bytes written
    pub bytes_sent: u64,
    /// Bytes read
    pub bytes_received: u64,
    /// Inputs refused with `QueueFull` and fed again after a drain
    pub retried: u64,
}

/// A LongPort client over TCP: dials on `ConnectTransport`, keeps the compacting receive buffer,
/// answers `TokenNeeded` from a token source, retries on a full queue, runs the timers
///
/// Commands go through [`TcpClient::command`]; business requests through
/// [`TcpClient::request`] (written to the socket at once); [`TcpClient::run`] runs the loop and
/// hands every event and application value (responses, pushes, the server's Close reason) to
/// your closure. The driver reacts to the transport events itself before your closure sees them:
/// it dials on `ConnectTransport`, closes the socket on `Disconnected` and `Closed`, and answers
/// `TokenNeeded` when a [`TokenSource`] is set.
pub struct TcpClient<M: LongPortClient = Client> {
    addrs: Vec<SocketAddr>,
    sock: Option<TcpStream>,
    machine: M,
    epoch: Epoch,
    rx: RxBuf<Vec<u8>>,
    out: Vec<u8>,
    req: Vec<u8>,
    tokens: Option<TokenSource>,
    dial: bool,
    broken: bool,
    /// Whole packets may wait in `rx`: a `run` stopped in the middle of a read's bytes
    unfed: bool,
    backlog: VecDeque<ClientEvent>,
    stats: TcpClientStats,
}

impl<M: LongPortClient> fmt::Debug for TcpClient<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpClient")
            .field("addrs", &self.addrs)
            .field("open", &self.sock.is_some())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl<M: LongPortClient> TcpClient<M> {
    /// A driver for `machine` (configured for TCP) that dials `server` whenever the machine asks
    /// for a transport; the machine's wall clock is set from the system clock
    ///
    /// # Errors
    /// `server` does not resolve, or the machine is configured for WebSocket.
    pub fn new(mut machine: M, server: impl ToSocketAddrs) -> io::Result<Self> {
        if machine.transport() != tether_net::longport::Transport::Tcp {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the blocking driver speaks TCP: use ClientConfig::tcp()",
            ));
        }
        let addrs: Vec<SocketAddr> = server.to_socket_addrs()?.collect();
        if addrs.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no address"));
        }
        let epoch = Epoch::new(std::time::Instant::now());
        machine.set_wall_clock(Instant::ZERO, unix_ms());
        let cap = rx_capacity(machine.max_body());
        Ok(TcpClient {
            addrs,
            sock: None,
            machine,
            epoch,
            rx: RxBuf::with_capacity(cap),
            out: std::vec![0; 1024],
            req: std::vec![0; 1024],
            tokens: None,
            dial: false,
            broken: false,
            unfed: false,
            backlog: VecDeque::new(),
            stats: TcpClientStats::default(),
        })
    }

    /// Answer `TokenNeeded` with tokens from `source` (`None` from it: the event reaches your
    /// closure and you call `provide_token` yourself)
    #[must_use]
    pub fn with_token_source(
        mut self,
        source: impl FnMut() -> Option<String> + Send + 'static,
    ) -> Self {
        self.tokens = Some(std::boxed::Box::new(source));
        self
    }

    /// The driver's clock: time since it was created
    #[must_use]
    pub fn now(&self) -> Instant {
        self.epoch.instant(std::time::Instant::now())
    }

    /// The machine (getters)
    #[must_use]
    pub fn machine(&self) -> &M {
        &self.machine
    }

    /// Counters
    #[must_use]
    pub fn stats(&self) -> TcpClientStats {
        self.stats
    }

    /// True while a TCP connection is open
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.sock.is_some()
    }

    /// Issue a command (`connect`, `close`, `provide_token`, `reconnect_now`, ...) at the current
    /// time; what it queues goes out at the start of the next [`TcpClient::run`]
    pub fn command<R>(&mut self, f: impl FnOnce(&mut M, Instant) -> R) -> R {
        let now = self.now();
        f(&mut self.machine, now)
    }

    /// Send a business request now; its response (or `RequestTimedOut` / `RequestFailed`)
    /// comes through [`TcpClient::run`]
    ///
    /// # Errors
    /// The machine's refusal (`NotOpen` before `Connected`, `TooManyInFlight`, ...). A write
    /// error is not reported here: the transport counts as lost and the request fails with
    /// `RequestFailed` once the loop runs.
    pub fn request(
        &mut self,
        cmd: u8,
        timeout: Duration,
        body: &[u8],
    ) -> Result<RequestId, tether_net::longport::Error> {
        let need = rx_capacity(body.len());
        if self.req.len() < need {
            self.req.resize(need, 0);
        }
        let now = self.now();
        let (id, t) = self
            .machine
            .send_request(now, cmd, timeout, body, &mut self.req)?;
        if let Some(s) = self.sock.as_mut() {
            match s.write_all(&self.req[..t.len]) {
                Ok(()) => self.stats.bytes_sent += t.len as u64,
                Err(_) => self.broken = true,
            }
        }
        Ok(id)
    }

    /// [`TcpClient::command`] for a command that returns the machine's `Result`, its error
    /// turned into an `io::Error`
    ///
    /// # Errors
    /// The machine's refusal.
    pub fn try_command<R>(
        &mut self,
        f: impl FnOnce(&mut M, Instant) -> Result<R, tether_net::longport::Error>,
    ) -> io::Result<R> {
        self.command(f).map_err(io::Error::other)
    }

    /// Run the loop until the next event (at most `limit`; `None` when none came), dropping
    /// application values
    ///
    /// # Errors
    /// As [`TcpClient::run`].
    pub fn next_event(&mut self, limit: Duration) -> io::Result<Option<ClientEvent>> {
        self.run(limit, |_, _, input| input.into_event())
    }

    /// Send a business request and run the loop until its outcome: the body of a status-0
    /// response
    ///
    /// Events that arrive meanwhile are kept for the next `run`/`next_event`; other
    /// application values are dropped.
    ///
    /// # Errors
    /// The machine's refusal, a non-zero status (`Other`, with the status), `TimedOut` (no
    /// response within the request's timeout), `ConnectionAborted` (the connection ended
    /// first), or the loop's errors.
    pub fn call(&mut self, cmd: u8, timeout: Duration, body: &[u8]) -> io::Result<Vec<u8>> {
        let id = self.request(cmd, timeout, body).map_err(io::Error::other)?;
        let mut seen = Vec::new();
        let outcome = self.run(Duration::MAX, |_, _, input| match input {
            Input::App(
                _,
                ClientApp::Response {
                    request_id,
                    status,
                    body,
                    ..
                },
            ) if request_id == id => Some(if status == Status::Success {
                Ok(body.to_vec())
            } else {
                Err(io::Error::other(format!("status {status}")))
            }),
            Input::Event(ClientEvent::RequestTimedOut { id: x }) if x == id => {
                Some(Err(io::ErrorKind::TimedOut.into()))
            }
            Input::Event(ClientEvent::RequestFailed { id: x, reason }) if x == id => Some(Err(
                io::Error::new(io::ErrorKind::ConnectionAborted, reason.to_string()),
            )),
            Input::Event(e) => {
                seen.push(e);
                None
            }
            Input::App(..) => None,
        })?;
        for e in seen.into_iter().rev() {
            self.backlog.push_front(e);
        }
        outcome.unwrap_or_else(|| Err(io::ErrorKind::TimedOut.into()))
    }

    /// Drop the TCP connection now, as if the network had (the machine is told, and reconnects
    /// per its policy)
    pub fn drop_transport(&mut self) {
        if let Some(s) = self.sock.take() {
            let _ = s.shutdown(Shutdown::Both);
            self.rx.clear();
            let now = self.now();
            self.machine.handle_closed(now, ());
        }
    }

    /// Run the loop for at most `limit`, handing every event and application value to `f`
    ///
    /// `f` may issue commands on the machine it is given. Returns `Some(r)` as soon as `f`
    /// returns `Some(r)` (events already queued then, and packets already read but not yet
    /// fed, are kept for the next call), `None` when `limit` elapsed.
    ///
    /// # Errors
    /// Machine errors other than `QueueFull`. Socket errors are transport losses, reported to
    /// the machine (`handle_closed`), not errors.
    pub fn run<R>(
        &mut self,
        limit: Duration,
        mut f: impl for<'a> FnMut(&mut M, Instant, Input<'a, M>) -> Option<R>,
    ) -> io::Result<Option<R>> {
        let end = crate::deadline(limit);
        let mut result = None;
        if let Some(r) = super::replay(&mut self.backlog, &mut self.machine, &self.epoch, &mut f) {
            return Ok(Some(r));
        }
        loop {
            self.flush(&mut f, &mut result)?;
            if self.broken {
                self.broken = false;
                self.drop_transport();
                continue;
            }
            if self.dial {
                self.dial = false;
                self.open();
                continue;
            }
            if result.is_some() {
                return Ok(result);
            }
            if std::mem::take(&mut self.unfed) && self.sock.is_some() {
                self.feed(&mut f, &mut result)?;
                continue;
            }
            let Some(wait) = super::sleep_for(&self.machine, &self.epoch, end) else {
                return Ok(None);
            };
            let Some(sock) = self.sock.as_mut() else {
                std::thread::sleep(wait);
                let now = self.now();
                self.machine.handle_timeout(now);
                continue;
            };
            sock.set_read_timeout(Some(wait))?;
            let room = self.rx.spare(4096);
            if room.is_empty() {
                // a packet larger than the buffer was announced: the machine refuses those
                // itself, so this cannot last; treat it as a broken stream
                self.drop_transport();
                continue;
            }
            match sock.read(room) {
                Ok(0) => self.drop_transport(),
                Ok(n) => {
                    self.rx.filled(n);
                    self.stats.bytes_received += n as u64;
                    self.feed(&mut f, &mut result)?;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    let now = self.now();
                    self.machine.handle_timeout(now);
                }
                Err(_) => self.drop_transport(),
            }
        }
    }

    /// Dial the server (the machine asked for a transport)
    fn open(&mut self) {
        let timeout = self.machine.connect_timeout();
        let mut opened = None;
        for addr in &self.addrs {
            if let Ok(s) = TcpStream::connect_timeout(addr, timeout) {
                opened = Some(s);
                break;
            }
        }
        let now = self.now();
        match opened.inspect(|s| {
            let _ = s.set_nodelay(true);
            let _ = s.set_write_timeout(Some(WRITE_TIMEOUT));
        }) {
            Some(s) => {
                self.sock = Some(s);
                self.rx.clear();
                self.stats.dials += 1;
                // `NotPending`: the machine gave up on this dial meanwhile; drop the socket
                if self.machine.handle_connected(now).is_err() {
                    self.sock = None;
                }
            }
            None => {
                self.stats.dial_errors += 1;
                self.machine.handle_closed(now, ());
            }
        }
    }

    /// Feed every whole packet in the buffer, draining after each, until `f` asks to stop: the
    /// packets after that one stay in the buffer for the next `run` (their values are borrowed
    /// from it, so they cannot be kept otherwise)
    fn feed<R>(
        &mut self,
        f: &mut impl for<'a> FnMut(&mut M, Instant, Input<'a, M>) -> Option<R>,
        result: &mut Option<R>,
    ) -> io::Result<()> {
        loop {
            if result.is_some() {
                self.unfed = !self.rx.is_empty();
                return Ok(());
            }
            let now = self.now();
            let fed = feed_one(&mut self.machine, now, (), &mut self.rx, |m, app| {
                *result = f(m, now, Input::App((), app));
            });
            match fed {
                Ok(Fed::Frame) => self.flush(f, result)?,
                Ok(Fed::NeedMore(_)) => return Ok(()),
                Err(e) if e.is_queue_full() => {
                    self.stats.retried += 1;
                    self.flush(f, result)?;
                }
                Err(e) => return Err(io::Error::other(e.to_string())),
            }
            if self.sock.is_none() {
                return Ok(());
            }
        }
    }

    /// Step 2: frames to the socket, events to the driver's own housekeeping, then to `f`
    fn flush<R>(
        &mut self,
        f: &mut impl for<'a> FnMut(&mut M, Instant, Input<'a, M>) -> Option<R>,
        result: &mut Option<R>,
    ) -> io::Result<()> {
        loop {
            let now = self.now();
            let TcpClient {
                sock,
                machine,
                out,
                tokens,
                dial,
                broken,
                backlog,
                stats,
                ..
            } = self;
            let gone = std::cell::Cell::new(false);
            let r = drain(
                machine,
                now,
                out,
                |t, bytes| {
                    if t.kind != FrameKind::Stream || gone.get() {
                        return Ok(());
                    }
                    if let Some(s) = sock.as_mut() {
                        match s.write_all(bytes) {
                            Ok(()) => stats.bytes_sent += bytes.len() as u64,
                            Err(_) => *broken = true,
                        }
                    }
                    Ok::<(), io::Error>(())
                },
                |m, ev| {
                    match ev {
                        ClientEvent::ConnectTransport { .. } => *dial = true,
                        ClientEvent::Disconnected { .. } | ClientEvent::Closed { .. } => {
                            gone.set(true);
                        }
                        ClientEvent::TokenNeeded => {
                            if let Some(token) = tokens.as_mut().and_then(|src| src()) {
                                let _ = m.provide_token(now, &token);
                            }
                        }
                        _ => {}
                    }
                    super::hand_event(result, backlog, f, m, now, ev);
                },
            );
            if gone.get() {
                // the transport is finished: close it (a dial asked for meanwhile opens a new one)
                if let Some(s) = self.sock.take() {
                    let _ = s.shutdown(Shutdown::Both);
                }
                self.rx.clear();
                self.broken = false;
            }
            if let Some(done) = super::drained(r, &mut self.out) {
                return done;
            }
        }
    }
}

impl<M: LongPortClient> Drop for TcpClient<M> {
    fn drop(&mut self) {
        if let Some(s) = self.sock.take() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}
