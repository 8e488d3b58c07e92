//! The accept loop, the per-connection WebSocket tasks and the single machine task

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use tether_net::longport::deframe::WsParams;
use tether_net::longport::wire::Packet;
use tether_net::longport::{
    CloseCause, CloseCode, Error, Grant, Server, ServerApp as App, ServerConfig, ServerEvent,
    ServerStats, SessionId, Source, Status, Transport,
};
use tether_net::{drain, DrainError, FrameKind, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant as TokioInstant;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Bytes, Message};

use crate::{ConnId, PEERS, SESSIONS};

/// The machine the harness drives
type LpServer = Server<ConnId, PEERS, SESSIONS>;

/// How long a WebSocket upgrade may take
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection waits for the client's Close reply after the machine said `Closed`
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// `Error.code` in the status-5 answer to a wrong token
const ERROR_CODE_BAD_TOKEN: u64 = 401;
/// Upgrade request targets kept for [`Running::upgrades`] (the first ones; bounded memory)
const MAX_RECORDED_UPGRADES: usize = 1024;
/// Close code 1005 ("no status received") stands for a client Close frame without a code
const WS_CLOSE_NO_STATUS: u16 = 1005;

/// Settings of a harness server
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to bind (`127.0.0.1:0` picks a free port)
    pub listen: SocketAddr,
    /// The one token Auth accepts
    pub token: String,
    /// WebSocket Ping cadence (the machine raises values below 1 s to 1 s)
    pub ping_interval: Duration,
    /// Silence after which an authenticated connection is closed
    pub heartbeat_timeout: Duration,
    /// Time a new connection has to authenticate
    pub auth_timeout: Duration,
    /// Lifetime of the sessions Auth and Reconnect grant
    pub session_ttl: Duration,
    /// Log connection lifecycle lines to stderr
    pub verbose: bool,
}

impl Config {
    /// Machine defaults (20 s pings, 150 s heartbeat timeout, 10 s auth timeout), 1 h sessions
    #[must_use]
    pub fn new(listen: SocketAddr, token: impl Into<String>) -> Self {
        let d = ServerConfig::new();
        Config {
            listen,
            token: token.into(),
            ping_interval: d.ws_ping_interval(),
            heartbeat_timeout: d.heartbeat_timeout(),
            auth_timeout: d.auth_timeout(),
            session_ttl: Duration::from_secs(3600),
            verbose: false,
        }
    }
}

/// Messages from connection tasks and from [`Running`] to the machine task
enum ToMachine {
    Connected {
        id: ConnId,
        out: mpsc::UnboundedSender<ToConn>,
    },
    Binary {
        id: ConnId,
        data: Bytes,
    },
    Frame {
        id: ConnId,
        kind: FrameKind,
        payload: Bytes,
    },
    Closed {
        id: ConnId,
    },
    CloseAll {
        code: CloseCode,
        reason: String,
        done: oneshot::Sender<usize>,
    },
    Snapshot(oneshot::Sender<Snapshot>),
}

/// The machine's counters and table sizes at one moment
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// The machine's counters
    pub stats: ServerStats,
    /// Connections registered with the machine (any state)
    pub connections: usize,
    /// Sessions in the machine's table
    pub sessions: usize,
}

/// Messages from the machine task to one connection task
enum ToConn {
    /// Send this WebSocket message
    Send(Message),
    /// Every frame for this connection was sent: finish the close and drop the socket
    Disconnect,
}

/// A running harness server; dropping it stops the listener and the machine
#[derive(Debug)]
pub struct Running {
    local_addr: SocketAddr,
    to_machine: mpsc::UnboundedSender<ToMachine>,
    upgrades: Arc<Mutex<Vec<String>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// The address the listener is bound to
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The request targets (path and query) of the upgrade requests seen, accepted or not
    ///
    /// Only the first 1024 are kept.
    #[must_use]
    pub fn upgrades(&self) -> Vec<String> {
        self.upgrades.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Close every live connection with `Close{code, reason}` (+ the WS close frame)
    ///
    /// Returns how many connections the machine started closing.
    pub async fn close_all(&self, code: CloseCode, reason: &str) -> usize {
        let (done, rx) = oneshot::channel();
        let msg = ToMachine::CloseAll {
            code,
            reason: reason.to_owned(),
            done,
        };
        if self.to_machine.send(msg).is_err() {
            return 0;
        }
        rx.await.unwrap_or(0)
    }

    /// The machine's counters
    pub async fn stats(&self) -> Option<ServerStats> {
        self.snapshot().await.map(|s| s.stats)
    }

    /// The machine's counters and table sizes
    pub async fn snapshot(&self) -> Option<Snapshot> {
        let (tx, rx) = oneshot::channel();
        self.to_machine.send(ToMachine::Snapshot(tx)).ok()?;
        rx.await.ok()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Bind `config.listen` and start serving
///
/// # Errors
/// The bind error.
pub async fn start(config: Config) -> io::Result<Running> {
    let listener = TcpListener::bind(config.listen).await?;
    let local_addr = listener.local_addr()?;
    let (to_machine, rx) = mpsc::unbounded_channel();
    let upgrades = Arc::new(Mutex::new(Vec::new()));
    let verbose = config.verbose;
    let machine = tokio::spawn(machine_task(config, rx));
    let acceptor = tokio::spawn(accept_loop(
        listener,
        to_machine.clone(),
        upgrades.clone(),
        verbose,
    ));
    Ok(Running {
        local_addr,
        to_machine,
        upgrades,
        tasks: vec![machine, acceptor],
    })
}

async fn accept_loop(
    listener: TcpListener,
    to_machine: mpsc::UnboundedSender<ToMachine>,
    upgrades: Arc<Mutex<Vec<String>>>,
    verbose: bool,
) {
    let mut next_id: ConnId = 1;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                eprintln!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let id = next_id;
        next_id += 1;
        if verbose {
            eprintln!("conn {id}: tcp from {peer}");
        }
        tokio::spawn(connection_task(
            stream,
            id,
            to_machine.clone(),
            upgrades.clone(),
            verbose,
        ));
    }
}

/// Upgrade, register with the machine, then pump frames both ways until the socket ends
async fn connection_task(
    stream: TcpStream,
    id: ConnId,
    to_machine: mpsc::UnboundedSender<ToMachine>,
    upgrades: Arc<Mutex<Vec<String>>>,
    verbose: bool,
) {
    let _ = stream.set_nodelay(true);
    // The Result type is fixed by tungstenite's `Callback` trait.
    #[allow(clippy::result_large_err)]
    let check_query = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let uri = req.uri();
        let target = uri
            .path_and_query()
            .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned());
        if verbose {
            eprintln!("conn {id}: upgrade {} {target}", req.method());
        }
        if let Ok(mut v) = upgrades.lock() {
            if v.len() < MAX_RECORDED_UPGRADES {
                v.push(target);
            }
        }
        match WsParams::parse_query(uri.query().unwrap_or("")) {
            Ok(_) => Ok(resp),
            Err(e) => {
                let mut r = ErrorResponse::new(Some(format!("bad LongPort query: {e}\n")));
                *r.status_mut() = StatusCode::BAD_REQUEST;
                if verbose {
                    eprintln!("conn {id}: refused upgrade: {e}");
                }
                Err(r)
            }
        }
    };
    let mut ws = match tokio::time::timeout(
        UPGRADE_TIMEOUT,
        tokio_tungstenite::accept_hdr_async(stream, check_query),
    )
    .await
    {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            if verbose {
                eprintln!("conn {id}: upgrade failed: {e}");
            }
            return;
        }
        Err(_) => {
            if verbose {
                eprintln!("conn {id}: upgrade timed out");
            }
            return;
        }
    };
    let (out_tx, mut out_rx) = mpsc::unbounded_channel();
    if to_machine
        .send(ToMachine::Connected { id, out: out_tx })
        .is_err()
    {
        return;
    }
    // After `Closed`: stop taking machine output, wait a little for the client's Close reply.
    let mut linger: Option<TokioInstant> = None;
    loop {
        let linger_at = linger.unwrap_or_else(TokioInstant::now);
        tokio::select! {
            msg = ws.next() => {
                let to = match msg {
                    Some(Ok(Message::Binary(data))) => ToMachine::Binary { id, data },
                    // The protocol says servers should never send text; a lenient server (like the Go
                    // one) decodes a client's text frame as if it were binary.
                    Some(Ok(Message::Text(t))) => ToMachine::Binary { id, data: Bytes::from(t) },
                    Some(Ok(Message::Ping(payload))) => {
                        ToMachine::Frame { id, kind: FrameKind::WsPing, payload }
                    }
                    Some(Ok(Message::Pong(payload))) => {
                        ToMachine::Frame { id, kind: FrameKind::WsPong, payload }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        let code = frame.as_ref().map_or(WS_CLOSE_NO_STATUS, |f| u16::from(f.code));
                        if verbose {
                            eprintln!("conn {id}: client close frame {frame:?}");
                        }
                        let payload = frame.map(|f| Bytes::from(f.reason)).unwrap_or_default();
                        ToMachine::Frame { id, kind: FrameKind::WsClose(code), payload }
                    }
                    Some(Ok(Message::Frame(_))) => continue,
                    Some(Err(e)) => {
                        if verbose {
                            eprintln!("conn {id}: read ended: {e}");
                        }
                        let _ = to_machine.send(ToMachine::Closed { id });
                        break;
                    }
                    None => {
                        if verbose {
                            eprintln!("conn {id}: stream ended");
                        }
                        let _ = to_machine.send(ToMachine::Closed { id });
                        break;
                    }
                };
                if to_machine.send(to).is_err() {
                    break;
                }
            }
            out = out_rx.recv(), if linger.is_none() => match out {
                Some(ToConn::Send(m)) => {
                    if let Err(e) = ws.send(m).await {
                        if verbose {
                            eprintln!("conn {id}: write failed: {e}");
                        }
                        let _ = to_machine.send(ToMachine::Closed { id });
                        break;
                    }
                }
                Some(ToConn::Disconnect) | None => {
                    if verbose {
                        eprintln!("conn {id}: disconnect");
                    }
                    linger = Some(TokioInstant::now() + CLOSE_LINGER);
                }
            },
            () = tokio::time::sleep_until(linger_at), if linger.is_some() => break,
        }
    }
}

/// State of the one task that owns the machine
struct Driver {
    server: Box<LpServer>,
    config: Config,
    start: TokioInstant,
    conns: HashMap<ConnId, mpsc::UnboundedSender<ToConn>>,
    buf: Vec<u8>,
    pongs_dropped: u64,
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Driver {
    fn now(&self) -> Instant {
        let us = self.start.elapsed().as_micros();
        Instant::from_micros(u64::try_from(us).unwrap_or(u64::MAX))
    }

    fn deadline(&self) -> Option<TokioInstant> {
        let t = self.server.poll_timeout()?;
        self.start.checked_add(Duration::from_micros(t.as_micros()))
    }

    /// A session id of 128 bits from the OS random source (session ids are bearer secrets)
    fn mint_session(&mut self) -> SessionId {
        use std::io::Read;
        let mut bytes = [0u8; 16];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .expect("the OS random source");
        SessionId::from_random(bytes)
    }

    fn grant_expires(&self) -> i64 {
        let ttl = i64::try_from(self.config.session_ttl.as_millis()).unwrap_or(i64::MAX);
        let wall = self
            .server
            .wall_clock_ms(self.now())
            .unwrap_or_else(unix_ms);
        wall.saturating_add(ttl)
    }

    fn log(&self, line: std::fmt::Arguments<'_>) {
        if self.config.verbose {
            eprintln!("{line}");
        }
    }

    fn handle(&mut self, msg: ToMachine) {
        let now = self.now();
        match msg {
            ToMachine::Connected { id, out } => {
                match self.server.handle_connected(now, id, Transport::WebSocket, Source::UNKNOWN) {
                    Ok(()) => {
                        self.conns.insert(id, out);
                    }
                    Err(e) => {
                        self.log(format_args!("conn {id}: refused by the machine: {e}"));
                        let frame = CloseFrame {
                            code: WsCloseCode::Again,
                            reason: e.to_string().into(),
                        };
                        let _ = out.send(ToConn::Send(Message::Close(Some(frame))));
                        let _ = out.send(ToConn::Disconnect);
                    }
                }
            }
            ToMachine::Binary { id, data } => {
                if self.config.verbose {
                    // The fixed header (at most 11 bytes) as sent, for wire observations.
                    let head: Vec<String> =
                        data.iter().take(11).map(|b| format!("{b:02x}")).collect();
                    eprintln!(
                        "conn {id}: binary message, {} bytes, header {}",
                        data.len(),
                        head.join(" ")
                    );
                }
                self.input(now, id, &data);
            }
            ToMachine::Frame { id, kind, payload } => {
                self.server.handle_frame(now, id, kind, &payload);
            }
            ToMachine::Closed { id } => {
                self.server.handle_closed(now, id);
                self.conns.remove(&id);
            }
            ToMachine::CloseAll { code, reason, done } => {
                let ids: Vec<ConnId> = self.conns.keys().copied().collect();
                let n = ids
                    .into_iter()
                    .filter(|&id| self.server.close(now, id, code, &reason).is_ok())
                    .count();
                let _ = done.send(n);
            }
            ToMachine::Snapshot(tx) => {
                let _ = tx.send(Snapshot {
                    stats: self.server.stats(),
                    connections: self.server.connections(),
                    sessions: self.server.sessions(),
                });
            }
        }
    }

    /// One binary message into the machine, then the application's answer
    ///
    /// Auth decisions are taken right here, so `Error::AuthPending` cannot occur: the
    /// machine is never left waiting for this application.
    fn input(&mut self, now: Instant, id: ConnId, data: &[u8]) {
        match self.server.handle_input(now, id, data) {
            Ok(r) => {
                if let Some(app) = r.into_app() {
                    self.on_app(now, id, app);
                }
            }
            Err(e) => self.log(format_args!("conn {id}: input refused: {e}")),
        }
    }

    fn on_app(&mut self, now: Instant, id: ConnId, app: App<'_>) {
        match app {
            App::Auth {
                request_id,
                token,
                metadata,
            } => {
                self.log(format_args!(
                    "conn {id}: auth request rid {request_id}, {} metadata entries",
                    metadata.len()
                ));
                if token == self.config.token {
                    let session_id = self.mint_session();
                    let grant = Grant::new(session_id.clone(), self.grant_expires())
                        .with_limit_online(
                            u32::try_from(PEERS).unwrap_or(u32::MAX),
                            u32::try_from(self.server.connections()).unwrap_or(u32::MAX),
                        );
                    if let Err(e) = self.server.accept_auth(now, id, grant) {
                        self.log(format_args!("conn {id}: accept_auth failed: {e}"));
                    } else {
                        self.log(format_args!(
                            "conn {id}: auth ok, session {}",
                            session_id.as_str()
                        ));
                    }
                } else if let Err(e) = self.server.reject_auth(
                    now,
                    id,
                    Status::Unauthenticated,
                    ERROR_CODE_BAD_TOKEN,
                    "invalid token",
                ) {
                    self.log(format_args!("conn {id}: reject_auth failed: {e}"));
                } else {
                    self.log(format_args!("conn {id}: auth rejected (wrong token)"));
                }
            }
            App::Reconnect {
                request_id,
                session_id,
                ..
            } => {
                self.log(format_args!(
                    "conn {id}: reconnect request rid {request_id}"
                ));
                let old = session_id.to_owned();
                let new = self.mint_session();
                let grant = Grant::new(new.clone(), self.grant_expires()).with_limit_online(
                    u32::try_from(PEERS).unwrap_or(u32::MAX),
                    u32::try_from(self.server.connections()).unwrap_or(u32::MAX),
                );
                if let Err(e) = self.server.accept_reconnect(now, id, grant) {
                    self.log(format_args!("conn {id}: accept_reconnect failed: {e}"));
                } else {
                    self.log(format_args!(
                        "conn {id}: reconnect {old} -> {}",
                        new.as_str()
                    ));
                }
            }
            App::Request {
                request_id,
                cmd,
                timeout,
                body,
                gzip,
                ..
            } => {
                self.log(format_args!(
                    "conn {id}: request cmd {cmd} rid {request_id} timeout {} ms, \
                     {} body bytes{}",
                    timeout.as_millis(),
                    body.len(),
                    if gzip { " (gzip)" } else { "" }
                ));
                let packet =
                    Packet::response(cmd, request_id, Status::Success, body).with_gzip(gzip);
                self.send_packet(now, id, &packet);
            }
            App::HeartbeatEcho {
                request_id,
                body,
                gzip,
            } => {
                let packet = Packet::response(
                    tether_net::longport::control::CMD_HEARTBEAT,
                    request_id,
                    Status::Success,
                    body,
                )
                .with_gzip(gzip);
                self.send_packet(now, id, &packet);
            }
            App::Response { cmd, .. } | App::Push { cmd, .. } => {
                self.log(format_args!(
                    "conn {id}: ignoring client packet with cmd {cmd}"
                ));
            }
            other => self.log(format_args!("conn {id}: ignoring {other:?}")),
        }
    }

    /// Write an application packet through the machine and hand it to the connection
    fn send_packet(&mut self, now: Instant, id: ConnId, packet: &Packet<'_>) {
        for _ in 0..3 {
            match self.server.send(now, id, packet, &mut self.buf) {
                Ok(t) => {
                    let bytes = Bytes::copy_from_slice(&self.buf[..t.len]);
                    self.deliver(t.to, Message::Binary(bytes));
                    return;
                }
                Err(Error::BufferTooSmall { required }) => self.buf.resize(required, 0),
                Err(Error::QueueFull) => self.flush(now),
                Err(e) => {
                    self.log(format_args!("conn {id}: send failed: {e}"));
                    return;
                }
            }
        }
    }

    fn deliver(&self, to: ConnId, msg: Message) {
        if let Some(tx) = self.conns.get(&to) {
            let _ = tx.send(ToConn::Send(msg));
        }
    }

    /// Step 2 of the run loop, through `tether_net::drain`: every transmit to its connection,
    /// then the events
    fn flush(&mut self, now: Instant) {
        let mut events = Vec::new();
        loop {
            let Driver {
                server,
                conns,
                buf,
                pongs_dropped,
                config,
                ..
            } = self;
            let verbose = config.verbose;
            let r = drain(
                &mut **server,
                now,
                buf,
                |t, bytes| {
                    let msg = match t.kind {
                        FrameKind::WsBinary => Message::Binary(Bytes::copy_from_slice(bytes)),
                        FrameKind::WsPing => Message::Ping(Bytes::copy_from_slice(bytes)),
                        FrameKind::WsPong => {
                            // tungstenite already queued a Pong for that Ping.
                            *pongs_dropped += 1;
                            return Ok::<(), std::convert::Infallible>(());
                        }
                        FrameKind::WsClose(code) => Message::Close(Some(CloseFrame {
                            code: WsCloseCode::from(code),
                            reason: String::from_utf8_lossy(bytes).into_owned().into(),
                        })),
                        FrameKind::Datagram | FrameKind::Stream => {
                            if verbose {
                                eprintln!("conn {}: unexpected {:?} transmit", t.to, t.kind);
                            }
                            return Ok(());
                        }
                    };
                    if let Some(tx) = conns.get(&t.to) {
                        let _ = tx.send(ToConn::Send(msg));
                    }
                    Ok(())
                },
                // no command is issued from these events: handled once the frames are out
                |_, ev| events.push(ev),
            );
            match r {
                Ok(()) => break,
                Err(DrainError::BufferTooSmall(e)) => self.buf.resize(e.required, 0),
                Err(DrainError::Send(never)) => match never {},
            }
        }
        for ev in events {
            match ev {
                ServerEvent::Closed { peer, cause } => {
                    self.log(format_args!("conn {peer}: closed: {cause}"));
                    // a transport the client ended is closed already: nothing to finish
                    if !matches!(
                        cause,
                        CloseCause::TransportClosed | CloseCause::WsClosed { .. }
                    ) {
                        if let Some(tx) = self.conns.remove(&peer) {
                            let _ = tx.send(ToConn::Disconnect);
                        }
                    }
                }
                ServerEvent::Connected { peer, expires, .. } => {
                    self.log(format_args!(
                        "conn {peer}: session live until {expires} (unix ms)"
                    ));
                }
                other => self.log(format_args!("event {other:?}")),
            }
        }
    }
}

async fn machine_task(config: Config, mut rx: mpsc::UnboundedReceiver<ToMachine>) {
    let server_config = ServerConfig::new()
        .with_auth_timeout(config.auth_timeout)
        .with_heartbeat_timeout(config.heartbeat_timeout)
        .with_ws_ping_interval(config.ping_interval);
    let mut d = Driver {
        server: Box::new(LpServer::with_capacities(server_config)),
        config,
        start: TokioInstant::now(),
        conns: HashMap::new(),
        buf: vec![0; 64 * 1024],
        pongs_dropped: 0,
    };
    let now = d.now();
    let wall = unix_ms();
    d.server.set_wall_clock(now, wall);
    loop {
        let deadline = d.deadline();
        let timer = async move {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(m) => d.handle(m),
                None => break,
            },
            () = timer => {
                let now = d.now();
                d.server.handle_timeout(now);
            }
        }
        let now = d.now();
        d.flush(now);
    }
    d.log(format_args!(
        "machine task ends ({} pongs dropped)",
        d.pongs_dropped
    ));
}
