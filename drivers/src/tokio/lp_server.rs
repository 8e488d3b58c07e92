//! The LongPort server over tokio: TCP and WebSocket listeners (optionally TLS), one task for
//! the machine, one task per connection

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::string::{String, ToString};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use std::vec::Vec;

use futures_util::{SinkExt, StreamExt};
use tether_net::longport::deframe::WsParams;
use tether_net::longport::wire::{Packet, RequestId};
use tether_net::longport::{
    Admission, CloseCode, Error, Grant, ServerConfig, ServerEvent, ServerStats, Source, Status,
    Transport,
};
use tether_net::time::Epoch;
use tether_net::{FrameKind, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::AbortHandle;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::WebSocketStream;

use super::outlet::Outlet;
use super::tls::ServerStream;
use super::{sleep_until, tokio_at, unix_ms, DriverError, COMMANDS, EVENTS};
use crate::hub::{
    ConnId, Hub, HubStats, OutFrame, Outbox, SendError, ServerItem, ServerLimits, WsIn,
};

/// Largest read from one socket at a time
const READ_CHUNK: usize = 16 * 1024;
/// Time a client gets for the TLS and WebSocket handshakes
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a [`LongPortServer`] listens
#[derive(Clone)]
#[non_exhaustive]
pub enum Listener {
    /// LongPort over TCP (2-byte handshake, then length-framed packets)
    Tcp(SocketAddr),
    /// LongPort over WebSocket (`ws://`); the upgrade request's query must carry
    /// `version=1&codec=1&platform=9` (else HTTP 400)
    Ws(SocketAddr),
    /// LongPort over WebSocket inside TLS (`wss://`)
    Wss(SocketAddr, Arc<rustls::ServerConfig>),
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listener::Tcp(a) => write!(f, "Tcp({a})"),
            Listener::Ws(a) => write!(f, "Ws({a})"),
            Listener::Wss(a, _) => write!(f, "Wss({a})"),
        }
    }
}

/// Called with every WebSocket upgrade request's target (path and query) and whether it was
/// accepted
pub type UpgradeHook = Arc<dyn Fn(&str, bool) + Send + Sync>;

/// Options of a [`LongPortServer`] beyond the machine's configuration
#[derive(Clone)]
pub struct ServerOptions {
    limits: ServerLimits,
    events: usize,
    hook: Option<UpgradeHook>,
}

impl fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerOptions")
            .field("limits", &self.limits)
            .field("events", &self.events)
            .field("upgrade_hook", &self.hook.is_some())
            .finish()
    }
}

impl Default for ServerOptions {
    /// [`ServerLimits::default`], 64 events, no upgrade hook
    fn default() -> Self {
        ServerOptions {
            limits: ServerLimits::default(),
            events: EVENTS,
            hook: None,
        }
    }
}

impl ServerOptions {
    /// Per-connection bounds against clients that do not read
    #[must_use]
    pub fn with_limits(mut self, limits: ServerLimits) -> Self {
        self.limits = limits;
        self
    }
    /// Capacity of the event channel (at least 1)
    #[must_use]
    pub fn with_events_capacity(mut self, n: usize) -> Self {
        self.events = n.max(1);
        self
    }
    /// Observe every WebSocket upgrade request
    #[must_use]
    pub fn with_upgrade_hook(mut self, hook: UpgradeHook) -> Self {
        self.hook = Some(hook);
        self
    }
}

/// The machine's counters and table sizes at one moment
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerSnapshot {
    /// The machine's counters
    pub stats: ServerStats,
    /// Connections registered with the machine
    pub connections: usize,
    /// Sessions in the machine's table
    pub sessions: usize,
    /// The driver layer's counters (stalled connections, peak buffers)
    pub driver: HubStats,
    /// Connections closed in their TLS or WebSocket handshake to keep within
    /// [`ServerLimits::max_handshakes`] and [`ServerLimits::max_handshakes_per_source`]
    pub handshakes_evicted: u64,
}

/// The items of a [`LongPortServer`] (a bounded channel; see the module docs): new
/// connections, auth and business requests to answer, machine events
#[derive(Debug)]
pub struct ServerEvents(mpsc::Receiver<ServerItem>);

impl ServerEvents {
    /// The next item; `None` once the server has shut down and everything was handed out
    pub async fn next(&mut self) -> Option<ServerItem> {
        self.0.recv().await
    }
}

impl futures_core::Stream for ServerEvents {
    type Item = ServerItem;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ServerItem>> {
        self.0.poll_recv(cx)
    }
}

type Done<T = ()> = oneshot::Sender<Result<T, Error>>;

enum Cmd {
    Accept {
        peer: ConnId,
        reconnect: bool,
        grant: Grant,
        reply: Done<Admission>,
    },
    Reject {
        peer: ConnId,
        reconnect: bool,
        status: Status,
        code: u64,
        msg: String,
        reply: Done,
    },
    Respond {
        peer: ConnId,
        cmd: u8,
        request_id: RequestId,
        status: Status,
        body: Vec<u8>,
        gzip: bool,
        reply: Done,
    },
    Push {
        peer: ConnId,
        cmd: u8,
        body: Vec<u8>,
        reply: Done,
    },
    Close {
        peer: ConnId,
        code: CloseCode,
        reason: String,
        reply: Done,
    },
    CloseAll {
        code: CloseCode,
        reason: String,
        reply: oneshot::Sender<usize>,
    },
    Shutdown {
        reason: String,
        reply: Done,
    },
    Drop(ConnId),
    Snapshot(oneshot::Sender<ServerSnapshot>),
}

/// A handle to a LongPort server running in its own tasks; clone it freely
///
/// Dropping every handle shuts the server down (`Close{ServerShutdown}` to every connection).
#[derive(Clone)]
pub struct LongPortServer {
    commands: mpsc::Sender<Cmd>,
    addrs: Vec<SocketAddr>,
}

impl fmt::Debug for LongPortServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LongPortServer")
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

/// What a connection task shares with the machine task
#[derive(Debug, Default)]
struct ConnShared {
    /// Input bytes the reader may still hand over (given back as the machine parses them)
    credit: AtomicUsize,
    /// Outbox bytes not written yet
    queued: AtomicUsize,
    /// The application owes this connection too many answers: do not read
    paused: AtomicBool,
    /// Outbox bytes at which reading stops ([`ServerLimits::outbox_high`])
    outbox_high: usize,
    wake: Notify,
}

enum OutMsg {
    Frame(OutFrame),
    Finish(Duration),
}

struct ChanOutbox {
    tx: mpsc::UnboundedSender<OutMsg>,
    shared: Arc<ConnShared>,
}

impl Outbox for ChanOutbox {
    fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Acquire)
    }
    fn push(&mut self, frame: OutFrame) {
        self.shared
            .queued
            .fetch_add(frame.bytes.len(), Ordering::AcqRel);
        let _ = self.tx.send(OutMsg::Frame(frame));
    }
    fn finish(&mut self, linger: Duration) {
        let _ = self.tx.send(OutMsg::Finish(linger));
    }
}

enum ConnMsg {
    Open {
        id: ConnId,
        remote: SocketAddr,
        transport: Transport,
        outbox: ChanOutbox,
        abort: AbortHandle,
        reply: oneshot::Sender<bool>,
    },
    Bytes(ConnId, Vec<u8>),
    Message(ConnId, WsIn),
    Gone(ConnId),
    Drained(ConnId),
}

impl LongPortServer {
    /// Listen on `listeners` with a machine of the default driver capacities (64 connections,
    /// 256 sessions); the machine's wall clock is set from the system clock. Must be called
    /// inside a tokio runtime.
    ///
    /// # Errors
    /// A bind error.
    pub async fn bind(
        listeners: &[Listener],
        config: ServerConfig,
        options: ServerOptions,
    ) -> io::Result<(LongPortServer, ServerEvents)> {
        Self::bind_with::<64, 256>(listeners, config, options).await
    }

    /// [`LongPortServer::bind`] with other machine capacities
    ///
    /// # Errors
    /// A bind error.
    pub async fn bind_with<const PEERS: usize, const SESSIONS: usize>(
        listeners: &[Listener],
        config: ServerConfig,
        options: ServerOptions,
    ) -> io::Result<(LongPortServer, ServerEvents)> {
        let (conn_tx, conn_rx) = mpsc::channel(256);
        let next_id = Arc::new(AtomicU64::new(1));
        let mut addrs = Vec::new();
        let mut accept_tasks = Vec::new();
        let mut bound = Vec::new();
        for l in listeners {
            let (addr, tls, ws) = match l {
                Listener::Tcp(a) => (*a, None, false),
                Listener::Ws(a) => (*a, None, true),
                Listener::Wss(a, c) => (*a, Some(tokio_rustls::TlsAcceptor::from(c.clone())), true),
            };
            let listener = TcpListener::bind(addr).await?;
            addrs.push(listener.local_addr()?);
            bound.push((listener, tls, ws));
        }
        let handshakes = Arc::new(Mutex::new(Handshakes::new(&options.limits, &config)));
        for (listener, tls, ws) in bound {
            let accept = AcceptLoop {
                listener,
                handshakes: handshakes.clone(),
                tls,
                ws,
                conn_tx: conn_tx.clone(),
                next_id: next_id.clone(),
                hook: options.hook.clone(),
                max_input: 0,
                outbox_high: options.limits.outbox_high,
            };
            accept_tasks.push(accept);
        }
        let epoch = Epoch::new(std::time::Instant::now());
        let mut hub: Hub<ChanOutbox, PEERS, SESSIONS> = Hub::new(config, options.limits);
        hub.server.set_wall_clock(Instant::ZERO, unix_ms());
        let max_input = hub.max_input();
        let handles = accept_tasks
            .into_iter()
            .map(|mut a| {
                a.max_input = max_input;
                tokio::spawn(a.run()).abort_handle()
            })
            .collect();
        let (tx, rx) = mpsc::channel(options.events);
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMANDS);
        let task = MachineTask {
            hub,
            epoch,
            outlet: Outlet::new(tx),
            conns: HashMap::new(),
            accept: handles,
            handshakes,
            shutdown_waiters: Vec::new(),
            complete: false,
        };
        drop(conn_tx);
        tokio::spawn(task.run(conn_rx, cmd_rx));
        Ok((
            LongPortServer {
                commands: cmd_tx,
                addrs,
            },
            ServerEvents(rx),
        ))
    }

    /// The bound addresses, in the order of the listeners
    #[must_use]
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    async fn call<T>(&self, make: impl FnOnce(Done<T>) -> Cmd) -> Result<T, DriverError> {
        super::call(&self.commands, make).await
    }

    /// Accept a pending Auth with this session (draw the id from a random source: it is a
    /// bearer secret)
    ///
    /// The answer is the machine's [`Admission`]: `OverQuota` when the grant names an account
    /// that already holds its quota of connections (the machine refused the login instead).
    ///
    /// # Errors
    /// As `Server::accept_auth`, or [`DriverError::Stopped`].
    pub async fn accept_auth(&self, peer: ConnId, grant: Grant) -> Result<Admission, DriverError> {
        self.accept(peer, false, grant).await
    }

    /// Accept a pending Reconnect with a fresh session (answer: the machine's [`Admission`])
    ///
    /// # Errors
    /// As `Server::accept_reconnect`, or [`DriverError::Stopped`].
    pub async fn accept_reconnect(
        &self,
        peer: ConnId,
        grant: Grant,
    ) -> Result<Admission, DriverError> {
        self.accept(peer, true, grant).await
    }

    /// `accept_auth` / `accept_reconnect`
    async fn accept(
        &self,
        peer: ConnId,
        reconnect: bool,
        grant: Grant,
    ) -> Result<Admission, DriverError> {
        self.call(|reply| Cmd::Accept {
            peer,
            reconnect,
            grant,
            reply,
        })
        .await
    }

    /// Reject a pending Auth with `status` and `Error{code, msg}`
    ///
    /// # Errors
    /// As `Server::reject_auth`, or [`DriverError::Stopped`].
    pub async fn reject_auth(
        &self,
        peer: ConnId,
        status: Status,
        code: u64,
        msg: &str,
    ) -> Result<(), DriverError> {
        self.reject(peer, false, status, code, msg).await
    }

    /// Reject a pending Reconnect
    ///
    /// # Errors
    /// As `Server::reject_reconnect`, or [`DriverError::Stopped`].
    pub async fn reject_reconnect(
        &self,
        peer: ConnId,
        status: Status,
        code: u64,
        msg: &str,
    ) -> Result<(), DriverError> {
        self.reject(peer, true, status, code, msg).await
    }

    /// `reject_auth` / `reject_reconnect`
    async fn reject(
        &self,
        peer: ConnId,
        reconnect: bool,
        status: Status,
        code: u64,
        msg: &str,
    ) -> Result<(), DriverError> {
        self.call(|reply| Cmd::Reject {
            peer,
            reconnect,
            status,
            code,
            msg: msg.to_string(),
            reply,
        })
        .await
    }

    /// Answer a business request
    ///
    /// # Errors
    /// As `Server::respond`; `Closed` also when the answer would overflow the connection's
    /// outbox (the connection is dropped); [`DriverError::Stopped`].
    pub async fn respond(
        &self,
        peer: ConnId,
        cmd: u8,
        request_id: RequestId,
        status: Status,
        body: impl Into<Vec<u8>>,
    ) -> Result<(), DriverError> {
        self.respond_flagged(peer, cmd, request_id, status, body.into(), false)
            .await
    }

    /// [`LongPortServer::respond`] with a body that is a gzip member (the packet's gzip flag
    /// set)
    ///
    /// # Errors
    /// As [`LongPortServer::respond`].
    pub async fn respond_gzip(
        &self,
        peer: ConnId,
        cmd: u8,
        request_id: RequestId,
        status: Status,
        body: impl Into<Vec<u8>>,
    ) -> Result<(), DriverError> {
        self.respond_flagged(peer, cmd, request_id, status, body.into(), true)
            .await
    }

    /// `respond` / `respond_gzip`: the answer with the packet's gzip flag as given
    async fn respond_flagged(
        &self,
        peer: ConnId,
        cmd: u8,
        request_id: RequestId,
        status: Status,
        body: Vec<u8>,
        gzip: bool,
    ) -> Result<(), DriverError> {
        self.call(|reply| Cmd::Respond {
            peer,
            cmd,
            request_id,
            status,
            body,
            gzip,
            reply,
        })
        .await
    }

    /// Push a packet to an authenticated connection
    ///
    /// # Errors
    /// As [`LongPortServer::respond`].
    pub async fn push(
        &self,
        peer: ConnId,
        cmd: u8,
        body: impl Into<Vec<u8>>,
    ) -> Result<(), DriverError> {
        let body = body.into();
        self.call(|reply| Cmd::Push {
            peer,
            cmd,
            body,
            reply,
        })
        .await
    }

    /// Close one connection with `Close{code, reason}`
    ///
    /// # Errors
    /// As `Server::close`, or [`DriverError::Stopped`].
    pub async fn close(
        &self,
        peer: ConnId,
        code: CloseCode,
        reason: &str,
    ) -> Result<(), DriverError> {
        self.call(|reply| Cmd::Close {
            peer,
            code,
            reason: reason.to_string(),
            reply,
        })
        .await
    }

    /// Close every connection with `Close{code, reason}`; returns how many started closing
    pub async fn close_all(&self, code: CloseCode, reason: &str) -> usize {
        let (reply, rx) = oneshot::channel();
        let c = Cmd::CloseAll {
            code,
            reason: reason.to_string(),
            reply,
        };
        if self.commands.send(c).await.is_err() {
            return 0;
        }
        rx.await.unwrap_or(0)
    }

    /// Close every connection with `Close{ServerShutdown, reason}`, stop accepting; returns
    /// once `ShutdownComplete` was reported
    ///
    /// # Errors
    /// `Closed` when already shutting down, [`DriverError::Stopped`].
    pub async fn shutdown(&self, reason: &str) -> Result<(), DriverError> {
        self.call(|reply| Cmd::Shutdown {
            reason: reason.to_string(),
            reply,
        })
        .await
    }

    /// Drop a connection's transport without a word (as a network failure would): the socket
    /// closes now, the machine reports `Closed` with `TransportClosed`, the session stays
    /// resumable
    pub async fn drop_connection(&self, peer: ConnId) {
        let _ = self.commands.send(Cmd::Drop(peer)).await;
    }

    /// The machine's counters and table sizes; `None` once the server has stopped
    pub async fn snapshot(&self) -> Option<ServerSnapshot> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Cmd::Snapshot(reply)).await.ok()?;
        rx.await.ok()
    }
}

/// Connections in their TLS or WebSocket handshake, oldest first: the machine meets a
/// connection only once those are done, so the driver bounds this phase itself (per source
/// and in all), closing the oldest beyond the bounds as the machine does with unauthenticated
/// connections
struct Handshakes {
    pending: VecDeque<(IpAddr, ConnId, AbortHandle)>,
    total: usize,
    per_source: usize,
    evicted: u64,
}

impl Handshakes {
    fn new(limits: &ServerLimits, config: &ServerConfig) -> Self {
        Handshakes {
            pending: VecDeque::new(),
            total: limits
                .max_handshakes
                .unwrap_or_else(|| config.max_unauthenticated())
                .max(1),
            per_source: limits
                .max_handshakes_per_source
                .unwrap_or_else(|| config.max_unauthenticated_per_source())
                .max(1),
            evicted: 0,
        }
    }

    /// A new connection from `source` starts its handshakes; makes room first
    fn admit(&mut self, source: IpAddr, id: ConnId, abort: AbortHandle) {
        let mine = self.pending.iter().filter(|p| p.0 == source).count();
        let victim = if mine >= self.per_source {
            self.pending.iter().position(|p| p.0 == source)
        } else if self.pending.len() >= self.total {
            Some(0)
        } else {
            None
        };
        if let Some((_, _, task)) = victim.and_then(|i| self.pending.remove(i)) {
            task.abort();
            self.evicted += 1;
        }
        self.pending.push_back((source, id, abort));
    }

    /// The connection's handshakes ended (done, failed or timed out)
    fn done(&mut self, id: ConnId) {
        if let Some(i) = self.pending.iter().position(|p| p.1 == id) {
            self.pending.remove(i);
        }
    }
}

/// Takes a connection out of [`Handshakes`] when dropped (also when its task is aborted)
struct InHandshake {
    gate: Arc<Mutex<Handshakes>>,
    id: ConnId,
}

impl Drop for InHandshake {
    fn drop(&mut self) {
        if let Ok(mut g) = self.gate.lock() {
            g.done(self.id);
        }
    }
}

struct AcceptLoop {
    listener: TcpListener,
    /// Shared by the server's listeners
    handshakes: Arc<Mutex<Handshakes>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    ws: bool,
    conn_tx: mpsc::Sender<ConnMsg>,
    next_id: Arc<AtomicU64>,
    hook: Option<UpgradeHook>,
    max_input: usize,
    outbox_high: usize,
}

impl AcceptLoop {
    async fn run(self) {
        loop {
            let (stream, remote) = match self.listener.accept().await {
                Ok(x) => x,
                Err(_) => {
                    // out of descriptors and the like: try again shortly
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let shared = Arc::new(ConnShared {
                credit: AtomicUsize::new(self.max_input),
                outbox_high: self.outbox_high,
                ..ConnShared::default()
            });
            let conn = Conn {
                id,
                remote,
                shared,
                conn_tx: self.conn_tx.clone(),
                max_packet: self.max_input,
            };
            let (tls, ws, hook) = (self.tls.clone(), self.ws, self.hook.clone());
            // a plain TCP connection meets the machine at once: no handshake to bound
            let handshaking = ws || tls.is_some();
            let gate = handshaking.then(|| InHandshake {
                gate: self.handshakes.clone(),
                id,
            });
            let (abort_tx, abort_rx) = oneshot::channel();
            let task = tokio::spawn(async move {
                let Ok(abort) = abort_rx.await else { return };
                conn.run(stream, tls, ws, hook, abort, gate).await;
            });
            if handshaking {
                if let Ok(mut g) = self.handshakes.lock() {
                    g.admit(remote.ip(), id, task.abort_handle());
                }
            }
            let _ = abort_tx.send(task.abort_handle());
        }
    }
}

/// One connection's task
struct Conn {
    id: ConnId,
    remote: SocketAddr,
    shared: Arc<ConnShared>,
    conn_tx: mpsc::Sender<ConnMsg>,
    /// The largest WebSocket message or frame taken (the hub's input limit)
    max_packet: usize,
}

/// A transport of one connection
enum Link<S> {
    Tcp(S),
    Ws(Box<WebSocketStream<S>>),
}

impl Conn {
    async fn run(
        self,
        stream: TcpStream,
        tls: Option<tokio_rustls::TlsAcceptor>,
        ws: bool,
        hook: Option<UpgradeHook>,
        abort: AbortHandle,
        handshakes: Option<InHandshake>,
    ) {
        let stream = match tls {
            Some(acceptor) => {
                match tokio::time::timeout(UPGRADE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => ServerStream::Tls(Box::new(s)),
                    _ => return,
                }
            }
            None => ServerStream::Plain(stream),
        };
        let link = if ws {
            #[allow(clippy::result_large_err)] // the type is tungstenite's callback signature
            let check = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
                let uri = req.uri();
                let target = uri
                    .path_and_query()
                    .map_or_else(|| uri.path().to_string(), |pq| pq.as_str().to_string());
                let parsed = WsParams::parse_query(uri.query().unwrap_or(""));
                if let Some(h) = &hook {
                    h(&target, parsed.is_ok());
                }
                match parsed {
                    Ok(_) => Ok(resp),
                    Err(e) => {
                        let mut r = ErrorResponse::new(Some(format!("bad LongPort query: {e}\n")));
                        *r.status_mut() = StatusCode::BAD_REQUEST;
                        Err(r)
                    }
                }
            };
            match tokio::time::timeout(
                UPGRADE_TIMEOUT,
                tokio_tungstenite::accept_hdr_async_with_config(
                    stream,
                    check,
                    Some(super::ws_config(self.max_packet)),
                ),
            )
            .await
            {
                Ok(Ok(ws)) => Link::Ws(Box::new(ws)),
                _ => return,
            }
        } else {
            Link::Tcp(stream)
        };
        drop(handshakes);
        let transport = match link {
            Link::Tcp(_) => Transport::Tcp,
            Link::Ws(_) => Transport::WebSocket,
        };
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (reply, registered) = oneshot::channel();
        let open = ConnMsg::Open {
            id: self.id,
            remote: self.remote,
            transport,
            outbox: ChanOutbox {
                tx: out_tx,
                shared: self.shared.clone(),
            },
            abort,
            reply,
        };
        if self.conn_tx.send(open).await.is_err() {
            return;
        }
        match registered.await {
            Ok(true) => {}
            _ => {
                // refused by the machine (full, shutting down): close without a word (a
                // WebSocket gets a close frame saying to try again)
                if let Link::Ws(mut ws) = link {
                    let frame = CloseFrame {
                        code: WsCloseCode::Again,
                        reason: "server busy".into(),
                    };
                    let _ = tokio::time::timeout(
                        Duration::from_secs(1),
                        WebSocketStream::close(&mut ws, Some(frame)),
                    )
                    .await;
                }
                return;
            }
        }
        self.pump(link, out_rx).await;
    }

    /// Read while the credit allows, write what the machine queues, until the machine says done
    async fn pump<S: AsyncRead + AsyncWrite + Unpin>(
        self,
        mut link: Link<S>,
        mut out_rx: mpsc::UnboundedReceiver<OutMsg>,
    ) {
        let mut buf = std::vec![0u8; READ_CHUNK];
        let mut reading = true;
        loop {
            let shared = &self.shared;
            tokio::select! {
                biased;
                out = out_rx.recv() => match out {
                    Some(OutMsg::Frame(f)) => {
                        let n = f.bytes.len();
                        if write(&mut link, f).await.is_err() {
                            let _ = self.conn_tx.send(ConnMsg::Gone(self.id)).await;
                            return;
                        }
                        let before = shared.queued.fetch_sub(n, Ordering::AcqRel);
                        if before >= shared.outbox_high && before - n < shared.outbox_high {
                            // below the high-water mark again: the stall clock stops, and
                            // input held back by the full outbox goes on (so this one must
                            // arrive: the hub looks only at connections it was told about)
                            if self.conn_tx.send(ConnMsg::Drained(self.id)).await.is_err() {
                                return;
                            }
                        }
                        shared.wake.notify_one();
                    }
                    Some(OutMsg::Finish(linger)) => {
                        finish(link, linger).await;
                        return;
                    }
                    // the machine task dropped us
                    None => return,
                },
                r = gated_read(&mut link, &mut buf, shared), if reading => match r {
                    Some(WsIn::Binary(data)) if matches!(link, Link::Tcp(_)) => {
                        shared.credit.fetch_sub(data.len().min(shared.credit.load(Ordering::Acquire)), Ordering::AcqRel);
                        if self.conn_tx.send(ConnMsg::Bytes(self.id, data)).await.is_err() {
                            return;
                        }
                    }
                    Some(msg) => {
                        let n = msg.cost();
                        shared.credit.fetch_sub(n.min(shared.credit.load(Ordering::Acquire)), Ordering::AcqRel);
                        if self.conn_tx.send(ConnMsg::Message(self.id, msg)).await.is_err() {
                            return;
                        }
                    }
                    None => {
                        // the peer is gone: tell the machine, then wait for its last frames
                        reading = false;
                        if self.conn_tx.send(ConnMsg::Gone(self.id)).await.is_err() {
                            return;
                        }
                    }
                },
            }
        }
    }
}

/// Wait until this connection may be read, then read once: bytes (TCP) or a message (WS);
/// `None` when the stream ended
async fn gated_read<S: AsyncRead + AsyncWrite + Unpin>(
    link: &mut Link<S>,
    buf: &mut [u8],
    shared: &ConnShared,
) -> Option<WsIn> {
    let high_water = shared.outbox_high;
    loop {
        let woken = shared.wake.notified();
        let credit = shared.credit.load(Ordering::Acquire);
        if credit > 0
            && !shared.paused.load(Ordering::Acquire)
            && shared.queued.load(Ordering::Acquire) < high_water
        {
            break;
        }
        woken.await;
    }
    match link {
        Link::Tcp(s) => {
            let n = buf.len().min(shared.credit.load(Ordering::Acquire).max(1));
            match s.read(&mut buf[..n]).await {
                Ok(0) | Err(_) => None,
                Ok(n) => Some(WsIn::Binary(buf[..n].to_vec())),
            }
        }
        Link::Ws(ws) => loop {
            match ws.next().await {
                Some(Ok(Message::Binary(b))) => return Some(WsIn::Binary(b.to_vec())),
                // the protocol has no text messages; a lenient server reads them as binary
                Some(Ok(Message::Text(t))) => return Some(WsIn::Binary(t.as_bytes().to_vec())),
                Some(Ok(Message::Ping(p))) => {
                    return Some(WsIn::Frame(FrameKind::WsPing, p.to_vec()))
                }
                Some(Ok(Message::Pong(p))) => {
                    return Some(WsIn::Frame(FrameKind::WsPong, p.to_vec()))
                }
                Some(Ok(Message::Close(f))) => {
                    let code = f.as_ref().map_or(1005, |f| u16::from(f.code));
                    let reason = f.map(|f| f.reason.as_bytes().to_vec()).unwrap_or_default();
                    return Some(WsIn::Frame(FrameKind::WsClose(code), reason));
                }
                Some(Ok(Message::Frame(_))) => {}
                Some(Err(_)) | None => return None,
            }
        },
    }
}

/// Write one frame of the machine; bounded by nothing here: the hub's stall rule aborts a
/// connection whose writes do not progress
async fn write<S: AsyncRead + AsyncWrite + Unpin>(
    link: &mut Link<S>,
    f: OutFrame,
) -> io::Result<()> {
    match link {
        Link::Tcp(s) => s.write_all(&f.bytes).await,
        Link::Ws(ws) => {
            let msg = match f.kind {
                FrameKind::WsBinary => Message::Binary(Bytes::from(f.bytes)),
                FrameKind::WsPing => Message::Ping(Bytes::from(f.bytes)),
                // tungstenite answers every Ping itself; a second Pong would duplicate it
                FrameKind::WsPong => return Ok(()),
                FrameKind::WsClose(code) => Message::Close(Some(CloseFrame {
                    code: WsCloseCode::from(code),
                    reason: String::from_utf8_lossy(&f.bytes).into_owned().into(),
                })),
                FrameKind::Datagram | FrameKind::Stream => return Ok(()),
            };
            ws.send(msg).await.map_err(io::Error::other)
        }
    }
}

/// After the machine's `Closed`: TCP shuts down; a WebSocket waits up to `linger` for the
/// client's Close reply
async fn finish<S: AsyncRead + AsyncWrite + Unpin>(link: Link<S>, linger: Duration) {
    match link {
        Link::Tcp(mut s) => {
            let _ = tokio::time::timeout(linger, s.shutdown()).await;
        }
        Link::Ws(mut ws) => {
            let _ = tokio::time::timeout(linger, async {
                let _ = ws.flush().await;
                while let Some(Ok(m)) = ws.next().await {
                    if matches!(m, Message::Close(_)) {
                        break;
                    }
                }
            })
            .await;
        }
    }
}

struct ConnEntry {
    shared: Arc<ConnShared>,
    abort: AbortHandle,
}

struct MachineTask<const PEERS: usize, const SESSIONS: usize> {
    hub: Hub<ChanOutbox, PEERS, SESSIONS>,
    epoch: Epoch,
    outlet: Outlet<ServerItem>,
    conns: HashMap<ConnId, ConnEntry>,
    accept: Vec<AbortHandle>,
    handshakes: Arc<Mutex<Handshakes>>,
    shutdown_waiters: Vec<Done>,
    complete: bool,
}

enum Input {
    Cmd(Option<Cmd>),
    Conn(Option<ConnMsg>),
    Timer,
}

impl<const PEERS: usize, const SESSIONS: usize> MachineTask<PEERS, SESSIONS> {
    fn now(&self) -> Instant {
        self.epoch.instant(std::time::Instant::now())
    }

    async fn run(
        mut self,
        mut conn_rx: mpsc::Receiver<ConnMsg>,
        mut commands: mpsc::Receiver<Cmd>,
    ) {
        let mut abandoned = false;
        loop {
            let now = self.now();
            self.hub.process(now);
            self.hand_out();
            self.update_gates();
            if self.complete {
                break;
            }
            let deadline = self.hub.poll_timeout().map(|t| tokio_at(&self.epoch, t));
            let outlet = &mut self.outlet;
            let input = tokio::select! {
                biased;
                () = outlet.deliver(), if outlet.congested() => None,
                c = commands.recv(), if !outlet.saturated() && !abandoned => Some(Input::Cmd(c)),
                m = conn_rx.recv(), if !outlet.congested() => Some(Input::Conn(m)),
                () = sleep_until(deadline), if !outlet.saturated() => Some(Input::Timer),
            };
            let now = self.now();
            match input {
                None => {}
                Some(Input::Cmd(Some(c))) => self.command(now, c),
                Some(Input::Cmd(None)) => {
                    abandoned = true;
                    if self.hub.shutdown(now, "server stopped").is_err() {
                        self.complete = true;
                    }
                }
                Some(Input::Conn(Some(m))) => self.conn_msg(now, m),
                Some(Input::Conn(None)) => {}
                Some(Input::Timer) => self.hub.tick(now),
            }
        }
        for a in &self.accept {
            a.abort();
        }
        while self.outlet.congested() {
            self.outlet.deliver().await;
        }
    }

    /// Inputs and events of the hub to the application; sockets of dropped connections closed
    fn hand_out(&mut self) {
        while let Some(i) = self.hub.next_input() {
            self.outlet.push(ServerItem::Input(i));
        }
        while let Some(e) = self.hub.next_event() {
            if e == ServerEvent::ShutdownComplete {
                self.complete = true;
                for w in self.shutdown_waiters.drain(..) {
                    let _ = w.send(Ok(()));
                }
                for a in &self.accept {
                    a.abort();
                }
            }
            self.outlet.push(ServerItem::Event(e));
        }
        for id in self.hub.take_killed() {
            if let Some(c) = self.conns.remove(&id) {
                c.abort.abort();
            }
        }
        for id in self.hub.take_closing() {
            // the connection task finishes its outbox, then ends by itself
            self.conns.remove(&id);
        }
    }

    /// Give the connections the hub fed or woke back the credit of what the machine parsed,
    /// and their pause state (only those: the work does not grow with idle connections)
    fn update_gates(&mut self) {
        for id in self.hub.take_touched() {
            let Some(c) = self.conns.get(&id) else {
                continue;
            };
            let consumed = self.hub.take_consumed(id);
            let paused = self.hub.requests_pending(id);
            let was = c.shared.paused.swap(paused, Ordering::AcqRel);
            if consumed > 0 {
                c.shared.credit.fetch_add(consumed, Ordering::AcqRel);
            }
            if consumed > 0 || was != paused {
                c.shared.wake.notify_one();
            }
        }
    }

    fn conn_msg(&mut self, now: Instant, m: ConnMsg) {
        match m {
            ConnMsg::Open {
                id,
                remote,
                transport,
                outbox,
                abort,
                reply,
            } => {
                let shared = outbox.shared.clone();
                match self
                    .hub
                    .connect(now, id, transport, Source::from(remote.ip()), outbox)
                {
                    Ok(()) => {
                        self.conns.insert(id, ConnEntry { shared, abort });
                        let _ = reply.send(true);
                        self.outlet.push(ServerItem::Accepted {
                            peer: id,
                            remote,
                            transport,
                        });
                    }
                    Err(_) => {
                        let _ = reply.send(false);
                    }
                }
            }
            ConnMsg::Bytes(id, data) => {
                let taken = self.hub.input_stream(id, &data);
                if taken < data.len() {
                    // more than the credit allowed: cannot happen with a well-behaved reader
                    self.hub.closed(now, id);
                }
            }
            ConnMsg::Message(id, msg) => self.hub.input_message(id, msg),
            ConnMsg::Gone(id) => self.hub.closed(now, id),
            ConnMsg::Drained(id) => self.hub.drained(id),
        }
    }

    fn command(&mut self, now: Instant, c: Cmd) {
        let answer = |r: Result<(), SendError>| match r {
            Ok(()) => Ok(()),
            Err(SendError::Machine(e)) => Err(e),
            Err(SendError::Stalled) => Err(Error::Closed),
        };
        match c {
            Cmd::Accept {
                peer,
                reconnect,
                grant,
                reply,
            } => {
                let _ = reply.send(self.hub.accept(now, peer, reconnect, grant));
            }
            Cmd::Reject {
                peer,
                reconnect,
                status,
                code,
                msg,
                reply,
            } => {
                let _ = reply.send(self.hub.reject(now, peer, reconnect, status, code, &msg));
            }
            Cmd::Respond {
                peer,
                cmd,
                request_id,
                status,
                body,
                gzip,
                reply,
            } => {
                let r = self
                    .hub
                    .respond(now, peer, cmd, request_id, status, &body, gzip);
                let _ = reply.send(answer(r));
            }
            Cmd::Push {
                peer,
                cmd,
                body,
                reply,
            } => {
                let r = self.hub.send(now, peer, &Packet::push(cmd, &body));
                let _ = reply.send(answer(r));
            }
            Cmd::Close {
                peer,
                code,
                reason,
                reply,
            } => {
                let _ = reply.send(self.hub.close(now, peer, code, &reason));
            }
            Cmd::CloseAll {
                code,
                reason,
                reply,
            } => {
                let n = self
                    .hub
                    .ids()
                    .into_iter()
                    .filter(|&id| self.hub.close(now, id, code, &reason).is_ok())
                    .count();
                let _ = reply.send(n);
            }
            Cmd::Shutdown { reason, reply } => match self.hub.shutdown(now, &reason) {
                Ok(()) => self.shutdown_waiters.push(reply),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Cmd::Drop(peer) => {
                if let Some(c) = self.conns.remove(&peer) {
                    c.abort.abort();
                    self.hub.closed(now, peer);
                }
            }
            Cmd::Snapshot(reply) => {
                let _ = reply.send(ServerSnapshot {
                    stats: self.hub.server.stats(),
                    connections: self.hub.server.connections(),
                    sessions: self.hub.server.sessions(),
                    driver: self.hub.stats(),
                    handshakes_evicted: self.handshakes.lock().map_or(0, |g| g.evicted),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    /// A task that waits for ever, standing for a connection in its handshake
    fn parked() -> AbortHandle {
        tokio::spawn(std::future::pending::<()>()).abort_handle()
    }

    fn ids(g: &Handshakes) -> Vec<ConnId> {
        g.pending.iter().map(|p| p.1).collect()
    }

    #[tokio::test]
    async fn a_source_over_its_bound_loses_its_own_oldest_handshake() {
        let mut g = Handshakes::new(
            &ServerLimits::default().with_handshakes(10, 2),
            &ServerConfig::new(),
        );
        let (a1, b1) = (parked(), parked());
        g.admit(ip(1), 1, a1.clone());
        g.admit(ip(2), 2, b1.clone());
        g.admit(ip(1), 3, parked());
        assert_eq!((ids(&g), g.evicted), (vec![1, 2, 3], 0));
        g.admit(ip(1), 4, parked());
        assert_eq!((ids(&g), g.evicted), (vec![2, 3, 4], 1));
        tokio::task::yield_now().await;
        assert!(a1.is_finished(), "the evicted connection's task is aborted");
        assert!(!b1.is_finished());
        g.done(3);
        g.done(99);
        assert_eq!(ids(&g), [2, 4]);
        g.admit(ip(1), 5, parked());
        assert_eq!((ids(&g), g.evicted), (vec![2, 4, 5], 1));
    }

    #[tokio::test]
    async fn over_the_total_bound_the_oldest_handshake_of_any_source_goes() {
        let mut g = Handshakes::new(
            &ServerLimits::default().with_handshakes(3, 10),
            &ServerConfig::new(),
        );
        let first = parked();
        g.admit(ip(1), 1, first.clone());
        g.admit(ip(2), 2, parked());
        g.admit(ip(3), 3, parked());
        assert_eq!((ids(&g), g.evicted), (vec![1, 2, 3], 0));
        g.admit(ip(4), 4, parked());
        assert_eq!((ids(&g), g.evicted), (vec![2, 3, 4], 1));
        tokio::task::yield_now().await;
        assert!(first.is_finished());
    }

    #[test]
    fn handshake_bounds_are_at_least_one_and_default_to_the_machines_login_bounds() {
        let l = ServerLimits::default().with_handshakes(0, 0);
        assert_eq!(
            (l.max_handshakes, l.max_handshakes_per_source),
            (Some(1), Some(1))
        );
        let l = ServerLimits::default().with_handshakes(5, 2);
        assert_eq!(
            (l.max_handshakes, l.max_handshakes_per_source),
            (Some(5), Some(2))
        );
        let config = ServerConfig::new()
            .with_max_unauthenticated(40)
            .with_max_unauthenticated_per_source(6);
        let g = Handshakes::new(&ServerLimits::default(), &config);
        assert_eq!((g.total, g.per_source), (40, 6));
        let g = Handshakes::new(&ServerLimits::default().with_handshakes(7, 3), &config);
        assert_eq!((g.total, g.per_source), (7, 3));
    }
}
