//! The LongPort client over tokio: `tcp://`, `ws://` and `wss://`

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::string::{String, ToString};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;
use std::vec::Vec;

use futures_util::{SinkExt, StreamExt};
use tether_net::longport::{
    Client, ClientApp, ClientConfig, ClientEvent, CloseCause, CloseCode, Credentials,
    RequestFailure, RequestId, Status, Transport,
};
use tether_net::time::Epoch;
use tether_net::{drain, DrainError, FrameKind, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::WebSocketStream;

use super::outlet::Outlet;
use super::tls::{webpki_client_config, MaybeTls};
use super::{sleep_until, tokio_at, unix_ms, DriverError, COMMANDS, EVENTS};
use crate::client::{rx_capacity, LongPortClient as Machine};
use crate::rx::{feed_one, Fed, RxBuf};

/// Default bound on one write to the transport; longer counts as a lost transport
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Options of a [`LongPortClient`] beyond the machine's configuration
pub struct ClientOptions {
    tls: Option<Arc<rustls::ClientConfig>>,
    events: usize,
    tokens: Option<Box<dyn FnMut() -> Option<String> + Send>>,
    write_timeout: Duration,
    metadata: Vec<(String, String)>,
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("tls", &self.tls.is_some())
            .field("events", &self.events)
            .field("token_source", &self.tokens.is_some())
            .field("write_timeout", &self.write_timeout)
            .field("metadata", &self.metadata)
            .finish()
    }
}

impl Default for ClientOptions {
    /// webpki roots for `wss://`, 64 events, no token source, 10 s write timeout, no metadata
    fn default() -> Self {
        ClientOptions {
            tls: None,
            events: EVENTS,
            tokens: None,
            write_timeout: WRITE_TIMEOUT,
            metadata: Vec::new(),
        }
    }
}

impl ClientOptions {
    /// The TLS configuration of `wss://` (trust roots, ALPN, ...); default: the webpki roots
    #[must_use]
    pub fn with_tls(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }
    /// Capacity of the event channel (at least 1)
    #[must_use]
    pub fn with_events_capacity(mut self, n: usize) -> Self {
        self.events = n.max(1);
        self
    }
    /// Answer `TokenNeeded` with tokens from `source` (after a refused login or a Close that
    /// drops the session); without one, `TokenNeeded` reaches your event stream and you call
    /// [`LongPortClient::provide_token`]
    #[must_use]
    pub fn with_token_source(
        mut self,
        source: impl FnMut() -> Option<String> + Send + 'static,
    ) -> Self {
        self.tokens = Some(Box::new(source));
        self
    }
    /// Bound on one write to the transport (longer: the transport counts as lost)
    #[must_use]
    pub fn with_write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }
    /// Metadata pairs sent with every Auth and Reconnect request (the official SDKs send
    /// `accept-language`); the machine's limits apply (`connect` fails with
    /// [`ClientConnectError::Refused`] beyond them)
    #[must_use]
    pub fn with_metadata<K: Into<String>, V: Into<String>>(
        mut self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.metadata = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self
    }
}

/// One item of a [`LongPortEvents`] stream
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientItem {
    /// A machine event (`Connected`, `Disconnected`, `ReconnectScheduled`, `HeartbeatRtt`,
    /// ..., `Closed` as the last item)
    Event(ClientEvent),
    /// A server push
    Push {
        /// Command code
        cmd: u8,
        /// Body as received (still compressed when `gzip`)
        body: Vec<u8>,
        /// The body is a gzip member
        gzip: bool,
    },
    /// The server pushed Close; `Event(Disconnected { cause: Peer { code } })` follows
    ServerClose {
        /// The Close code
        code: CloseCode,
        /// The reason, printable
        reason: String,
    },
    /// A login was refused; `Event(LoginFailed { .. })` follows
    LoginError {
        /// The response status
        status: Status,
        /// `Error.code` of the body
        code: Option<u64>,
        /// `Error.msg` of the body, printable
        message: String,
    },
}

/// The response to a request
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Response {
    /// Command code
    pub cmd: u8,
    /// Status (0: success)
    pub status: Status,
    /// Body as received (still compressed when `gzip`)
    pub body: Vec<u8>,
    /// The body is a gzip member
    pub gzip: bool,
    /// `Error{code, msg}` of a non-zero status, when it decoded
    pub error: Option<(u64, String)>,
}

/// Why a request got no response
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// The machine refused to send it (`NotOpen` while not connected, `TooManyInFlight`, ...)
    Refused(tether_net::longport::Error),
    /// No response within its timeout
    TimedOut,
    /// The connection it was sent on ended, or the client was closed
    Failed(RequestFailure),
    /// The driver has ended
    Stopped,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Refused(e) => write!(f, "refused: {e}"),
            RequestError::TimedOut => f.write_str("timed out"),
            RequestError::Failed(r) => write!(f, "failed: {r}"),
            RequestError::Stopped => f.write_str("the driver has stopped"),
        }
    }
}

impl std::error::Error for RequestError {}

/// Why [`LongPortClient::connect`] did not end connected
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientConnectError {
    /// The URL is not `tcp://host:port`, `ws://...` or `wss://...`, or does not match the
    /// configuration's transport
    BadUrl(String),
    /// The machine refused to start (e.g. a token longer than its capacity)
    Refused(tether_net::longport::Error),
    /// The login was refused (status, `Error.code`, `Error.msg`)
    LoginFailed {
        /// The response status
        status: Status,
        /// `Error.code`
        code: Option<u64>,
        /// `Error.msg`, printable
        message: String,
    },
    /// The machine ended before connecting
    Closed(CloseCause),
}

impl fmt::Display for ClientConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientConnectError::BadUrl(u) => write!(f, "bad URL: {u}"),
            ClientConnectError::Refused(e) => write!(f, "refused: {e}"),
            ClientConnectError::LoginFailed {
                status, message, ..
            } => {
                write!(f, "login refused ({status}): {message}")
            }
            ClientConnectError::Closed(c) => write!(f, "closed before connecting: {c}"),
        }
    }
}

impl std::error::Error for ClientConnectError {}

/// A request written to the transport, waiting for its response (see [`LongPortClient::send`])
///
/// Dropping it discards the response when it arrives.
#[derive(Debug)]
pub struct PendingResponse(oneshot::Receiver<Result<Response, RequestError>>);

impl Future for PendingResponse {
    type Output = Result<Response, RequestError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(RequestError::Stopped)))
    }
}

/// The events and data of a [`LongPortClient`], in order (a bounded channel: see the module
/// docs for what a slow consumer causes)
#[derive(Debug)]
pub struct LongPortEvents(mpsc::Receiver<ClientItem>);

impl LongPortEvents {
    /// The next item; `None` once the client is finished and everything was handed out
    pub async fn next(&mut self) -> Option<ClientItem> {
        self.0.recv().await
    }

    /// Skip items until one matches `f` (returned); `None` when the stream ended first
    pub async fn wait_for(&mut self, mut f: impl FnMut(&ClientItem) -> bool) -> Option<ClientItem> {
        while let Some(item) = self.0.recv().await {
            if f(&item) {
                return Some(item);
            }
        }
        None
    }
}

impl futures_core::Stream for LongPortEvents {
    type Item = ClientItem;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ClientItem>> {
        self.0.poll_recv(cx)
    }
}

type Reply = oneshot::Sender<Result<Response, RequestError>>;

enum Cmd {
    Request {
        cmd: u8,
        timeout: Duration,
        body: Vec<u8>,
        reply: Reply,
        written: Option<oneshot::Sender<Result<(), RequestError>>>,
    },
    Close {
        reason: String,
        reply: oneshot::Sender<Result<(), tether_net::longport::Error>>,
    },
    Token {
        token: String,
        reply: oneshot::Sender<Result<(), tether_net::longport::Error>>,
    },
    DropTransport,
    SessionId(oneshot::Sender<Option<String>>),
    InFlight(oneshot::Sender<(usize, usize)>),
    Closed(oneshot::Sender<CloseCause>),
}

/// A handle to a LongPort client running in its own task; clone it freely
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use tether_net::longport::ClientConfig;
/// use tether_net_drivers::tokio::{ClientOptions, LongPortClient};
///
/// let (client, _events) = LongPortClient::connect(
///     "ws://127.0.0.1:8080/v2", ClientConfig::websocket(), "one-time-token", ClientOptions::default(),
/// ).await?;
/// let response = client.request(4, b"hello".to_vec()).await?;
/// client.close("bye").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LongPortClient {
    commands: mpsc::Sender<Cmd>,
    /// Set by the task as it ends
    ended: Arc<OnceLock<CloseCause>>,
}

impl fmt::Debug for LongPortClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LongPortClient").finish_non_exhaustive()
    }
}

/// Where to dial
#[derive(Debug, Clone)]
struct Endpoint {
    tls: bool,
    ws: bool,
    host: String,
    port: u16,
    /// The WebSocket URL with the protocol query
    url: String,
}

fn parse_url(url: &str) -> Result<Endpoint, String> {
    let (scheme, rest) = url.split_once("://").ok_or("no scheme")?;
    let (ws, tls, default_port) = match scheme {
        "tcp" => (false, false, None),
        "ws" => (true, false, Some(80)),
        "wss" => (true, true, Some(443)),
        other => return Err(format!("scheme {other:?}: want tcp, ws or wss")),
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, p) = v6.split_once(']').ok_or("unclosed [")?;
        (h, p.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match (port, default_port) {
        (Some(p), _) => p.parse().map_err(|_| format!("port {p:?}"))?,
        (None, Some(d)) => d,
        (None, None) => return Err("tcp:// needs a port".into()),
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    let mut full = url.to_string();
    if ws && !rest[end..].starts_with('/') {
        // no path: the root path, before any query (the handshake refuses `host?query`)
        full.insert(scheme.len() + 3 + end, '/');
    }
    if ws && !url.contains("version=") {
        full.push(if url.contains('?') { '&' } else { '?' });
        full.push_str("version=1&codec=1&platform=9");
    }
    Ok(Endpoint {
        tls,
        ws,
        host: host.to_string(),
        port,
        url: full,
    })
}

impl LongPortClient {
    /// Connect and log in: spawns the driver task (dials `url`, sends Auth with `token`) and
    /// returns once the first `Connected` arrived (also the first item of the event stream
    /// after `ConnectTransport`)
    ///
    /// `url` is `tcp://host:port` (with `ClientConfig::tcp()`), `ws://host[:port][/path]` or
    /// `wss://host[:port][/path]` (with `ClientConfig::websocket()`; no path is the root path);
    /// the protocol query `version=1&codec=1&platform=9` is appended to WebSocket URLs that
    /// have none. Must be called inside a tokio runtime.
    ///
    /// While the transport cannot be opened (server down, handshake refused), the machine's
    /// reconnect policy decides: `connect` waits through its back-off, for ever with the default
    /// `ClientConfig::with_max_reconnect_attempts(None)`, and fails with
    /// [`ClientConnectError::Closed`] once a set number of attempts has failed; wrap it in a
    /// timeout to bound the wait otherwise.
    ///
    /// # Errors
    /// [`ClientConnectError`]. The task ends with the error.
    pub async fn connect(
        url: &str,
        config: ClientConfig,
        token: &str,
        options: ClientOptions,
    ) -> Result<(LongPortClient, LongPortEvents), ClientConnectError> {
        Self::connect_with(url, Client::new(config), token, options).await
    }

    /// [`LongPortClient::connect`] with a machine of other capacities
    ///
    /// # Errors
    /// As [`LongPortClient::connect`].
    pub async fn connect_with<M: Machine + Send + 'static>(
        url: &str,
        mut machine: M,
        token: &str,
        options: ClientOptions,
    ) -> Result<(LongPortClient, LongPortEvents), ClientConnectError> {
        let endpoint =
            parse_url(url).map_err(|e| ClientConnectError::BadUrl(format!("{url}: {e}")))?;
        let want = if endpoint.ws {
            Transport::WebSocket
        } else {
            Transport::Tcp
        };
        if machine.transport() != want {
            return Err(ClientConnectError::BadUrl(format!(
                "{url}: the configuration's transport is {:?}",
                machine.transport()
            )));
        }
        let epoch = Epoch::new(std::time::Instant::now());
        machine.set_wall_clock(Instant::ZERO, unix_ms());
        let metadata: Vec<(&str, &str)> = options
            .metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        machine
            .connect(
                Instant::ZERO,
                Credentials::new(token).with_metadata(&metadata),
            )
            .map_err(ClientConnectError::Refused)?;
        let (tx, rx) = mpsc::channel(options.events);
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMANDS);
        let (up_tx, up_rx) = oneshot::channel();
        let ended = Arc::new(OnceLock::new());
        let tls = if endpoint.tls {
            Some(options.tls.clone().unwrap_or_else(webpki_client_config))
        } else {
            None
        };
        let cap = rx_capacity(machine.max_body());
        let task = Task {
            machine,
            epoch,
            endpoint,
            tls,
            link: None,
            rx: RxBuf::with_capacity(cap.min(64 * 1024)),
            rx_max: cap,
            out: std::vec![0; 1024],
            req: std::vec![0; 1024],
            outlet: Outlet::new(tx),
            requests: HashMap::new(),
            connected: Some(up_tx),
            login_error: None,
            closed: None,
            ended: Arc::clone(&ended),
            close_waiters: Vec::new(),
            end_waiters: Vec::new(),
            tokens: options.tokens,
            write_timeout: options.write_timeout,
            frames: Vec::new(),
            dial: false,
            gone: false,
        };
        tokio::spawn(task.run(cmd_rx));
        match up_rx.await {
            Ok(Ok(())) => Ok((
                LongPortClient {
                    commands: cmd_tx,
                    ended,
                },
                LongPortEvents(rx),
            )),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ClientConnectError::Closed(CloseCause::Local)),
        }
    }

    /// Send a business request and wait for its response (timeout: the configuration's
    /// request timeout)
    ///
    /// Cancel-safe: dropped before the request was written, it is never sent; dropped later, its
    /// response is discarded.
    ///
    /// # Errors
    /// [`RequestError`].
    pub async fn request(
        &self,
        cmd: u8,
        body: impl Into<Vec<u8>>,
    ) -> Result<Response, RequestError> {
        self.request_with_timeout(cmd, Duration::ZERO, body).await
    }

    /// [`LongPortClient::request`] with its own timeout (zero: the configuration's)
    ///
    /// # Errors
    /// [`RequestError`].
    pub async fn request_with_timeout(
        &self,
        cmd: u8,
        timeout: Duration,
        body: impl Into<Vec<u8>>,
    ) -> Result<Response, RequestError> {
        self.submit(cmd, timeout, body.into(), None).await?.await
    }

    /// Write a business request and return without waiting for its response: await the
    /// [`PendingResponse`] for it (requests may be pipelined this way)
    ///
    /// # Errors
    /// [`RequestError::Refused`] when the machine did not send it, [`RequestError::Stopped`].
    pub async fn send(
        &self,
        cmd: u8,
        timeout: Duration,
        body: impl Into<Vec<u8>>,
    ) -> Result<PendingResponse, RequestError> {
        let (written, w_rx) = oneshot::channel();
        let pending = self
            .submit(cmd, timeout, body.into(), Some(written))
            .await?;
        w_rx.await.map_err(|_| RequestError::Stopped)??;
        Ok(pending)
    }

    /// `request_with_timeout` / `send`: hand the request to the driver task (`written`, when
    /// given, learns whether the machine sent it)
    async fn submit(
        &self,
        cmd: u8,
        timeout: Duration,
        body: Vec<u8>,
        written: Option<oneshot::Sender<Result<(), RequestError>>>,
    ) -> Result<PendingResponse, RequestError> {
        let (reply, rx) = oneshot::channel();
        let c = Cmd::Request {
            cmd,
            timeout,
            body,
            reply,
            written,
        };
        self.commands
            .send(c)
            .await
            .map_err(|_| RequestError::Stopped)?;
        Ok(PendingResponse(rx))
    }

    /// Close with `reason` (in the WebSocket close frame; nothing extra on TCP); returns once
    /// the machine reported `Closed`, after every request in flight was resolved with an error
    ///
    /// # Errors
    /// [`DriverError::LongPort`] (`Closed`: already closed), [`DriverError::Stopped`].
    pub async fn close(&self, reason: &str) -> Result<(), DriverError> {
        super::call(&self.commands, |reply| Cmd::Close {
            reason: reason.to_string(),
            reply,
        })
        .await
    }

    /// Hand over a fresh one-time token (after `TokenNeeded`)
    ///
    /// # Errors
    /// The machine's refusal, [`DriverError::Stopped`].
    pub async fn provide_token(&self, token: &str) -> Result<(), DriverError> {
        super::call(&self.commands, |reply| Cmd::Token {
            token: token.to_string(),
            reply,
        })
        .await
    }

    /// Drop the current transport as if the network had (the machine reconnects per its
    /// policy, with the session while it is resumable)
    pub async fn drop_transport(&self) {
        let _ = self.commands.send(Cmd::DropTransport).await;
    }

    /// The current session id
    pub async fn session_id(&self) -> Option<String> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Cmd::SessionId(reply)).await.ok()?;
        rx.await.ok().flatten()
    }

    /// Requests the machine tracks (in flight or with an outcome not handed out yet) and
    /// requests the driver still holds a reply slot for; both drop to 0 once every request was
    /// answered, timed out or failed (also the cancelled ones)
    pub async fn in_flight(&self) -> Option<(usize, usize)> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Cmd::InFlight(reply)).await.ok()?;
        rx.await.ok()
    }

    /// Wait until the client has ended, for whatever cause; at once when it has
    ///
    /// `None` only when the driver task went away without ending (the runtime shut down).
    pub async fn closed(&self) -> Option<CloseCause> {
        super::ended(&self.ended, &self.commands, Cmd::Closed).await
    }
}

/// An open transport
enum Link {
    Tcp(TcpStream),
    Ws(Box<WebSocketStream<MaybeTls>>),
}

/// What one read gave
enum Read {
    Bytes(usize),
    Message(Message),
    End,
}

async fn read(link: &mut Option<Link>, rx: &mut RxBuf<Vec<u8>>) -> Read {
    let Some(link) = link.as_mut() else {
        return std::future::pending().await;
    };
    match link {
        Link::Tcp(s) => {
            let room = rx.spare(4096);
            if room.is_empty() {
                return Read::End;
            }
            match s.read(room).await {
                Ok(0) | Err(_) => Read::End,
                Ok(n) => Read::Bytes(n),
            }
        }
        Link::Ws(ws) => match ws.next().await {
            Some(Ok(m)) => Read::Message(m),
            _ => Read::End,
        },
    }
}

struct Task<M> {
    machine: M,
    epoch: Epoch,
    endpoint: Endpoint,
    tls: Option<Arc<rustls::ClientConfig>>,
    link: Option<Link>,
    rx: RxBuf<Vec<u8>>,
    rx_max: usize,
    out: Vec<u8>,
    req: Vec<u8>,
    outlet: Outlet<ClientItem>,
    requests: HashMap<RequestId, Reply>,
    connected: Option<oneshot::Sender<Result<(), ClientConnectError>>>,
    login_error: Option<(Status, Option<u64>, String)>,
    closed: Option<CloseCause>,
    /// The cause, for handles asking after the task has ended
    ended: Arc<OnceLock<CloseCause>>,
    close_waiters: Vec<oneshot::Sender<Result<(), tether_net::longport::Error>>>,
    end_waiters: Vec<oneshot::Sender<CloseCause>>,
    tokens: Option<Box<dyn FnMut() -> Option<String> + Send>>,
    write_timeout: Duration,
    /// Frames of the last drain, to write
    frames: Vec<(FrameKind, Vec<u8>)>,
    dial: bool,
    gone: bool,
}

impl<M: Machine + Send + 'static> Task<M> {
    fn now(&self) -> Instant {
        self.epoch.instant(std::time::Instant::now())
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Cmd>) {
        let mut abandoned = false;
        loop {
            self.flush();
            self.write_frames().await;
            if self.gone {
                self.gone = false;
                self.link = None;
                self.rx.clear();
            }
            if self.closed.is_some() {
                break;
            }
            if self.dial {
                self.dial = false;
                self.open().await;
                continue;
            }
            let deadline = self
                .machine
                .poll_timeout()
                .map(|t| tokio_at(&self.epoch, t));
            let reading = self.link.is_some() && !self.outlet.congested();
            let Task {
                link, rx, outlet, ..
            } = &mut self;
            let input = tokio::select! {
                biased;
                () = outlet.deliver(), if outlet.congested() => None,
                cmd = commands.recv(), if !outlet.saturated() && !abandoned => Some(Input::Cmd(cmd)),
                r = read(link, rx), if reading => Some(Input::Read(r)),
                () = sleep_until(deadline), if !outlet.saturated() => Some(Input::Timer),
            };
            match input {
                None => {}
                Some(Input::Cmd(Some(c))) => self.command(c).await,
                Some(Input::Cmd(None)) => {
                    // every handle is gone: close
                    abandoned = true;
                    let now = self.now();
                    let _ = self.machine.close(now, "client dropped");
                }
                Some(Input::Read(r)) => self.input(r),
                Some(Input::Timer) => {
                    let now = self.now();
                    self.machine.handle_timeout(now);
                }
            }
        }
        // the machine is finished
        if let Some(Link::Ws(mut ws)) = self.link.take() {
            let _ = tokio::time::timeout(
                Duration::from_millis(200),
                WebSocketStream::close(&mut ws, None),
            )
            .await;
        }
        for (_, reply) in self.requests.drain() {
            let _ = reply.send(Err(RequestError::Failed(RequestFailure::Closed)));
        }
        let cause = self.closed.unwrap_or(CloseCause::Local);
        let _ = self.ended.set(cause);
        for tx in self.close_waiters.drain(..) {
            let _ = tx.send(Ok(()));
        }
        for tx in self.end_waiters.drain(..) {
            let _ = tx.send(cause);
        }
        while self.outlet.congested() {
            self.outlet.deliver().await;
        }
    }

    /// Dial the endpoint (the machine asked for a transport)
    async fn open(&mut self) {
        let timeout = self.machine.connect_timeout();
        let opened = tokio::time::timeout(
            timeout,
            dial_link(self.endpoint.clone(), self.tls.clone(), self.rx_max),
        )
        .await;
        let now = self.now();
        match opened {
            Ok(Ok(link)) => {
                self.link = Some(link);
                self.rx.clear();
                if self.machine.handle_connected(now).is_err() {
                    self.link = None;
                }
            }
            _ => self.machine.handle_closed(now, ()),
        }
    }

    async fn command(&mut self, c: Cmd) {
        let now = self.now();
        match c {
            Cmd::Request {
                cmd,
                timeout,
                body,
                reply,
                written,
            } => {
                // cancelled before it was sent: never send it
                if reply.is_closed() {
                    return;
                }
                let need = rx_capacity(body.len());
                if self.req.len() < need {
                    self.req.resize(need, 0);
                }
                match self
                    .machine
                    .send_request(now, cmd, timeout, &body, &mut self.req)
                {
                    Ok((id, t)) => {
                        let bytes = self.req[..t.len].to_vec();
                        self.requests.insert(id, reply);
                        self.frames.push((t.kind, bytes));
                        self.write_frames().await;
                        if let Some(w) = written {
                            let _ = w.send(Ok(()));
                        }
                    }
                    Err(e) => {
                        if let Some(w) = written {
                            let _ = w.send(Err(RequestError::Refused(e)));
                        }
                        let _ = reply.send(Err(RequestError::Refused(e)));
                    }
                }
            }
            Cmd::Close { reason, reply } => match self.machine.close(now, &reason) {
                Ok(()) => self.close_waiters.push(reply),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Cmd::Token { token, reply } => {
                let _ = reply.send(self.machine.provide_token(now, &token));
            }
            Cmd::DropTransport => {
                if self.link.take().is_some() {
                    self.rx.clear();
                    self.machine.handle_closed(now, ());
                }
            }
            Cmd::SessionId(reply) => {
                let _ = reply.send(self.machine.session_id().map(str::to_string));
            }
            Cmd::InFlight(reply) => {
                let _ = reply.send((self.machine.in_flight(), self.requests.len()));
            }
            Cmd::Closed(reply) => self.end_waiters.push(reply),
        }
    }

    /// One read: feed it to the machine
    fn input(&mut self, r: Read) {
        let now = self.now();
        match r {
            Read::End => {
                self.link = None;
                self.rx.clear();
                self.machine.handle_closed(now, ());
            }
            Read::Bytes(n) => {
                self.rx.filled(n);
                self.feed_stream();
                // a packet larger than the buffer holds: grow up to the machine's limit
                if self.rx.free() == 0 && self.rx.capacity() < self.rx_max {
                    let mut bigger =
                        RxBuf::with_capacity((self.rx.capacity() * 2).min(self.rx_max));
                    bigger.extend(self.rx.data());
                    self.rx = bigger;
                }
            }
            Read::Message(m) => {
                let (kind, payload): (Option<FrameKind>, Bytes) = match m {
                    Message::Binary(b) => (None, b),
                    Message::Text(t) => (None, Bytes::from(t)),
                    Message::Ping(p) => (Some(FrameKind::WsPing), p),
                    Message::Pong(p) => (Some(FrameKind::WsPong), p),
                    Message::Close(f) => {
                        let code = f.as_ref().map_or(1005, |f| u16::from(f.code));
                        let reason = f.map(|f| Bytes::from(f.reason)).unwrap_or_default();
                        (Some(FrameKind::WsClose(code)), reason)
                    }
                    Message::Frame(_) => return,
                };
                match kind {
                    Some(k) => self.machine.handle_frame(now, (), k, &payload),
                    None => self.feed_message(&payload),
                }
            }
        }
    }

    fn feed_message(&mut self, msg: &[u8]) {
        loop {
            let now = self.now();
            let refused = match self.machine.handle_input(now, (), msg) {
                Ok(r) => {
                    if let Some(app) = r.into_app() {
                        on_app(
                            &mut self.requests,
                            &mut self.login_error,
                            &mut self.outlet,
                            app,
                        );
                    }
                    return;
                }
                Err(e) => e,
            };
            if refused != tether_net::longport::Error::QueueFull {
                return;
            }
            self.flush();
        }
    }

    fn feed_stream(&mut self) {
        loop {
            let now = self.now();
            let Task {
                machine,
                rx,
                requests,
                login_error,
                outlet,
                ..
            } = self;
            let fed = feed_one(machine, now, (), rx, |_, app| {
                on_app(requests, login_error, outlet, app);
            });
            match fed {
                Ok(Fed::Frame) | Err(tether_net::longport::Error::QueueFull) => self.flush(),
                Ok(Fed::NeedMore(_)) | Err(_) => return,
            }
            if self.link.is_none() {
                return;
            }
        }
    }

    /// Step 2: frames into `self.frames`, events to the driver's housekeeping and the stream
    fn flush(&mut self) {
        loop {
            let now = self.now();
            let Task {
                machine,
                out,
                frames,
                outlet,
                requests,
                connected,
                login_error,
                closed,
                tokens,
                dial,
                gone,
                ..
            } = self;
            let r = drain(
                machine,
                now,
                out,
                |t, bytes| {
                    frames.push((t.kind, bytes.to_vec()));
                    Ok::<(), io::Error>(())
                },
                |m, ev| {
                    match ev {
                        ClientEvent::ConnectTransport { .. } => *dial = true,
                        ClientEvent::Disconnected { .. } => *gone = true,
                        ClientEvent::Connected { .. } => {
                            if let Some(tx) = connected.take() {
                                let _ = tx.send(Ok(()));
                            }
                        }
                        ClientEvent::LoginFailed { status, code, .. } => {
                            // with a token source the machine logs in again with a fresh
                            // token, and `connect` waits for that (the sender stays: taking it
                            // here dropped it, and `connect` failed with `Closed(Local)` while
                            // the task went on to log in)
                            let has_source = tokens.is_some();
                            if let Some(tx) = connected.take_if(|_| !has_source) {
                                let message = login_error.take().map(|e| e.2).unwrap_or_default();
                                let _ = tx.send(Err(ClientConnectError::LoginFailed {
                                    status,
                                    code,
                                    message,
                                }));
                                let _ = m.close(now, "login refused");
                            }
                        }
                        ClientEvent::TokenNeeded => {
                            if let Some(token) = tokens.as_mut().and_then(|src| src()) {
                                let _ = m.provide_token(now, &token);
                            }
                        }
                        ClientEvent::RequestTimedOut { id } => {
                            if let Some(tx) = requests.remove(&id) {
                                let _ = tx.send(Err(RequestError::TimedOut));
                            }
                        }
                        ClientEvent::RequestFailed { id, reason } => {
                            if let Some(tx) = requests.remove(&id) {
                                let _ = tx.send(Err(RequestError::Failed(reason)));
                            }
                        }
                        ClientEvent::Closed { cause } => {
                            *closed = Some(cause);
                            *gone = true;
                            if let Some(tx) = connected.take() {
                                let _ = tx.send(Err(ClientConnectError::Closed(cause)));
                            }
                        }
                        _ => {}
                    }
                    outlet.push(ClientItem::Event(ev));
                },
            );
            match r {
                Err(DrainError::BufferTooSmall(e)) => self.out.resize(e.required, 0),
                _ => return,
            }
        }
    }

    /// Write the frames of the last drain; a failed or stalled write loses the transport
    async fn write_frames(&mut self) {
        if self.frames.is_empty() {
            return;
        }
        let frames = std::mem::take(&mut self.frames);
        let Some(link) = self.link.as_mut() else {
            return;
        };
        let limit = self.write_timeout;
        let written = tokio::time::timeout(limit, async {
            for (kind, bytes) in frames {
                match (&mut *link, kind) {
                    (Link::Tcp(s), FrameKind::Stream) => s.write_all(&bytes).await?,
                    (Link::Ws(ws), kind) => {
                        let msg = match kind {
                            FrameKind::WsBinary => Message::Binary(Bytes::from(bytes)),
                            FrameKind::WsPing => Message::Ping(Bytes::from(bytes)),
                            // tungstenite answers every Ping itself
                            FrameKind::WsPong => continue,
                            FrameKind::WsClose(code) => Message::Close(Some(CloseFrame {
                                code: WsCloseCode::from(code),
                                reason: String::from_utf8_lossy(&bytes).into_owned().into(),
                            })),
                            _ => continue,
                        };
                        ws.send(msg).await.map_err(io::Error::other)?;
                    }
                    _ => {}
                }
            }
            Ok::<(), io::Error>(())
        })
        .await;
        if !matches!(written, Ok(Ok(()))) && self.closed.is_none() {
            self.link = None;
            self.rx.clear();
            let now = self.now();
            self.machine.handle_closed(now, ());
            self.flush();
        }
    }
}

/// Open the transport of `endpoint`: TCP, then TLS and the WebSocket upgrade when asked
async fn dial_link(
    endpoint: Endpoint,
    tls: Option<Arc<rustls::ClientConfig>>,
    max_packet: usize,
) -> io::Result<Link> {
    let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await?;
    let _ = tcp.set_nodelay(true);
    if !endpoint.ws {
        return Ok(Link::Tcp(tcp));
    }
    let stream = match tls {
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from(endpoint.host.clone())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            MaybeTls::Tls(Box::new(tls))
        }
        None => MaybeTls::Plain(tcp),
    };
    let (ws, _) = tokio_tungstenite::client_async_with_config(
        endpoint.url.as_str(),
        stream,
        Some(super::ws_config(max_packet)),
    )
    .await
    .map_err(io::Error::other)?;
    Ok(Link::Ws(Box::new(ws)))
}

enum Input {
    Cmd(Option<Cmd>),
    Read(Read),
    Timer,
}

/// What a response, push, Close or refused login means for the driver
fn on_app(
    requests: &mut HashMap<RequestId, Reply>,
    login_error: &mut Option<(Status, Option<u64>, String)>,
    outlet: &mut Outlet<ClientItem>,
    app: ClientApp<'_>,
) {
    match app {
        ClientApp::Response {
            cmd,
            request_id,
            status,
            body,
            gzip,
            error,
            ..
        } => {
            if let Some(tx) = requests.remove(&request_id) {
                let _ = tx.send(Ok(Response {
                    cmd,
                    status,
                    body: body.to_vec(),
                    gzip,
                    error: error.map(|e| (e.code, e.msg.to_string())),
                }));
            }
        }
        ClientApp::Push {
            cmd, body, gzip, ..
        } => outlet.push(ClientItem::Push {
            cmd,
            body: body.to_vec(),
            gzip,
        }),
        ClientApp::Close { code, reason, .. } => outlet.push(ClientItem::ServerClose {
            code,
            reason: reason.to_string(),
        }),
        ClientApp::LoginError {
            status,
            code,
            message,
            ..
        } => {
            let message = message.to_string();
            *login_error = Some((status, code, message.clone()));
            outlet.push(ClientItem::LoginError {
                status,
                code,
                message,
            });
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::parse_url;

    #[test]
    fn urls() {
        let e = parse_url("tcp://127.0.0.1:2020").unwrap();
        assert_eq!(
            (e.ws, e.tls, e.host.as_str(), e.port),
            (false, false, "127.0.0.1", 2020)
        );
        let e = parse_url("wss://openapi-quote.example/v2").unwrap();
        assert_eq!((e.ws, e.tls, e.port), (true, true, 443));
        assert_eq!(
            e.url,
            "wss://openapi-quote.example/v2?version=1&codec=1&platform=9"
        );
        let e = parse_url("ws://[::1]:81/v2?version=1&codec=1&platform=9").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 81));
        assert_eq!(e.url, "ws://[::1]:81/v2?version=1&codec=1&platform=9");
        assert!(parse_url("tcp://host").is_err());
        assert!(parse_url("http://host:1").is_err());
    }

    #[test]
    fn a_websocket_url_without_a_path_gets_the_root_path() {
        // `ws://host:port` is a valid URL whose path is `/`; with the query appended straight
        // after the authority the WebSocket handshake refused it and the client kept dialing
        let e = parse_url("ws://127.0.0.1:8080").unwrap();
        assert_eq!(e.url, "ws://127.0.0.1:8080/?version=1&codec=1&platform=9");
        let e = parse_url("wss://example.test?version=1&codec=1&platform=9").unwrap();
        assert_eq!(e.url, "wss://example.test/?version=1&codec=1&platform=9");
        let e = parse_url("ws://[::1]").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 80));
        assert_eq!(e.url, "ws://[::1]/?version=1&codec=1&platform=9");
    }
}
