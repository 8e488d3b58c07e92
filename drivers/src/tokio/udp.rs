//! The game machines over `tokio::net::UdpSocket`: one datagram loop, two sides

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::string::{String, ToString};
use std::sync::{Arc, OnceLock};
use std::vec::Vec;

use tether_net::game::connless::{ClientInfo, InfoContent};
use tether_net::game::packer::Str;
use tether_net::game::wire::{Flags, Header, Token, MAX_PACKET_LEN};
use tether_net::game::{
    Client, ClientApp, ClientConfig, ClientEvent, ClientStats, CloseCause, Error, Server,
    ServerApp, ServerConfig, ServerEvent, ServerStats,
};
use tether_net::time::Epoch;
use tether_net::{drain, DrainError, Instant, Machine};
use tokio::net::{lookup_host, ToSocketAddrs, UdpSocket};
use tokio::sync::{mpsc, oneshot};

use super::outlet::Outlet;
use super::{call, sleep_until, tokio_at, DriverError, COMMANDS, EVENTS};
use crate::datagram::DatagramPeer;
use crate::QueueFull;

/// Largest datagram received
const RECV_LEN: usize = 2048;

/// Socket counters of a tokio datagram loop ([`GameServer::stats`], [`GameClient::stats`])
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct SocketStats {
    /// Datagrams received and handed to the machine
    pub received: u64,
    /// Receive errors (an ICMP refusal of an earlier send, and the like)
    pub receive_errors: u64,
    /// Datagrams sent
    pub sent: u64,
    /// Frames the socket refused (a full send buffer: UDP is lossy, the frame is dropped and
    /// the machine's timers recover)
    pub send_errors: u64,
}

impl SocketStats {
    fn count_send(&mut self, r: &io::Result<usize>) {
        match r {
            Ok(_) => self.sent += 1,
            Err(_) => self.send_errors += 1,
        }
    }
}

/// What one side of the datagram loop (client or server) does with commands, events and data
trait Side: Send + 'static {
    type M: Machine<Peer = Self::Peer> + Send + 'static;
    type Peer: DatagramPeer + Send;
    type Cmd: Send + 'static;
    type Item: Send + 'static;

    /// A command; a datagram it writes itself (chunks) goes into `direct`; `socket` is what
    /// the loop counted so far
    fn command(
        &mut self,
        m: &mut Self::M,
        now: Instant,
        cmd: Self::Cmd,
        direct: &mut Vec<(Self::Peer, Vec<u8>)>,
        socket: &SocketStats,
    );
    /// Application data borrowed from one datagram, right after the input that handed it out
    /// (an answer the side writes, such as a server-info answer, goes into `direct`)
    fn app<'a>(
        &mut self,
        m: &mut Self::M,
        now: Instant,
        from: Self::Peer,
        app: <Self::M as Machine>::App<'a>,
        out: &mut Outlet<Self::Item>,
        direct: &mut Vec<(Self::Peer, Vec<u8>)>,
    );
    /// A machine event
    fn event(
        &mut self,
        m: &mut Self::M,
        now: Instant,
        ev: <Self::M as Machine>::Event,
        out: &mut Outlet<Self::Item>,
    );
    /// Every handle is gone: end the machine
    fn abandoned(&mut self, m: &mut Self::M, now: Instant);
    /// The machine is finished: the task ends
    fn finished(&self) -> bool;
}

async fn run<S: Side>(
    sock: UdpSocket,
    mut machine: S::M,
    mut side: S,
    mut commands: mpsc::Receiver<S::Cmd>,
    mut out: Outlet<S::Item>,
) where
    <S::M as Machine>::Error: QueueFull,
{
    // Frames go out with `try_send`, which answers from the runtime's readiness cache: for a
    // fresh socket that cache is empty until the reactor has polled it once, so the first frame
    // (a client's CONNECT) failed with `WouldBlock` and was lost. Wait for it once here.
    let _ = sock.writable().await;
    let epoch = Epoch::new(std::time::Instant::now());
    let now = || epoch.instant(std::time::Instant::now());
    let mut buf = std::vec![0u8; RECV_LEN];
    let mut inp = std::vec![0u8; RECV_LEN];
    let mut direct: Vec<(S::Peer, Vec<u8>)> = Vec::new();
    let mut abandoned = false;
    let mut stats = SocketStats::default();
    loop {
        // 2. drain: frames to the socket (never waiting: UDP is lossy), events to the side
        flush(
            &sock,
            &mut machine,
            &mut side,
            &mut out,
            &mut buf,
            now(),
            &mut stats,
        );
        for (to, bytes) in direct.drain(..) {
            stats.count_send(&send(&sock, to, &bytes));
        }
        if side.finished() {
            break;
        }
        let deadline = machine.poll_timeout().map(|t| tokio_at(&epoch, t));
        // 1. one input
        tokio::select! {
            biased;
            () = out.deliver(), if out.congested() => {}
            cmd = commands.recv(), if !out.saturated() && !abandoned => match cmd {
                Some(cmd) => side.command(&mut machine, now(), cmd, &mut direct, &stats),
                None => {
                    abandoned = true;
                    side.abandoned(&mut machine, now());
                }
            },
            r = sock.recv_from(&mut inp), if !out.congested() => match r {
                // a source the peer key cannot hold (`DatagramPeer::from_addr`): dropped
                Ok((n, from)) => if let Some(from) = S::Peer::from_addr(from) {
                    stats.received += 1;
                    loop {
                        let t = now();
                        let refused = match machine.handle_input(t, from, &inp[..n]) {
                            Ok(r) => {
                                if let Some(app) = r.into_app() {
                                    side.app(&mut machine, t, from, app, &mut out, &mut direct);
                                }
                                break;
                            }
                            Err(e) => e,
                        };
                        if !refused.is_queue_full() {
                            break;
                        }
                        flush(&sock, &mut machine, &mut side, &mut out, &mut buf, t, &mut stats);
                    }
                }
                // ICMP refusals and the like: the machine's timers decide
                Err(_) => {
                    stats.receive_errors += 1;
                    machine.handle_timeout(now());
                }
            },
            () = sleep_until(deadline), if !out.saturated() => machine.handle_timeout(now()),
        }
    }
    // the consumer gets what was queued before the end
    while out.congested() {
        out.deliver().await;
    }
}

fn send<P: DatagramPeer>(sock: &UdpSocket, to: P, bytes: &[u8]) -> io::Result<usize> {
    match to.to_addr() {
        Some(addr) => sock.try_send_to(bytes, addr),
        None => sock.try_send(bytes),
    }
}

fn flush<S: Side>(
    sock: &UdpSocket,
    machine: &mut S::M,
    side: &mut S,
    out: &mut Outlet<S::Item>,
    buf: &mut Vec<u8>,
    now: Instant,
    stats: &mut SocketStats,
) {
    loop {
        let r = drain(
            machine,
            now,
            buf,
            |t, bytes| {
                stats.count_send(&send(sock, t.to, bytes));
                Ok::<(), io::Error>(())
            },
            |m, ev| side.event(m, now, ev, out),
        );
        match r {
            Err(DrainError::BufferTooSmall(e)) => buf.resize(e.required, 0),
            _ => return,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

/// One item of a [`GameEvents`] stream
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GameClientItem {
    /// A machine event (`Connected`, then `Closed`, the last item)
    Event(ClientEvent),
    /// A chunk packet of the connection (header and payload as received, token removed)
    Chunks {
        /// The packet header
        header: Header,
        /// The chunk data
        payload: Vec<u8>,
    },
    /// The server closed the connection with this reason (`Event(Closed { cause: Peer })`
    /// follows)
    Close {
        /// The reason, printable (see `PeerText`'s `Display`)
        reason: String,
    },
}

enum ClientCmd {
    Send {
        flags: Flags,
        num_chunks: u8,
        payload: Vec<u8>,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Close {
        reason: String,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Closed(oneshot::Sender<CloseCause>),
    Stats(oneshot::Sender<GameClientStats>),
}

/// What [`GameClient::stats`] reports
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct GameClientStats {
    /// The machine's counters (CONNECTs and KEEP_ALIVEs sent, datagrams dropped and why, ...)
    pub machine: ClientStats,
    /// The socket's
    pub socket: SocketStats,
}

struct ClientSide {
    connected: Option<oneshot::Sender<Result<Option<Token>, CloseCause>>>,
    /// How the connection ended (set once), shared with the handles so that they can ask after
    /// the task has ended
    ended: Arc<OnceLock<CloseCause>>,
    close_waiters: Vec<oneshot::Sender<Result<(), Error>>>,
    end_waiters: Vec<oneshot::Sender<CloseCause>>,
    /// Where `send_chunks` writes: a whole datagram, the most a chunk packet can be
    buf: Vec<u8>,
}

impl Side for ClientSide {
    type M = Client;
    type Peer = ();
    type Cmd = ClientCmd;
    type Item = GameClientItem;

    fn command(
        &mut self,
        m: &mut Client,
        now: Instant,
        cmd: ClientCmd,
        direct: &mut Vec<((), Vec<u8>)>,
        socket: &SocketStats,
    ) {
        match cmd {
            ClientCmd::Send {
                flags,
                num_chunks,
                payload,
                reply,
            } => {
                let r = m
                    .send_chunks(now, flags, num_chunks, &payload, &mut self.buf)
                    .map(|t| direct.push(((), self.buf[..t.len].to_vec())));
                let _ = reply.send(r);
            }
            ClientCmd::Close { reason, reply } => match m.close(now, &reason) {
                Ok(()) => self.close_waiters.push(reply),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            ClientCmd::Stats(reply) => {
                let _ = reply.send(GameClientStats {
                    machine: m.stats(),
                    socket: *socket,
                });
            }
            ClientCmd::Closed(reply) => match self.ended.get().copied() {
                Some(cause) => {
                    let _ = reply.send(cause);
                }
                None => self.end_waiters.push(reply),
            },
        }
    }

    fn app<'a>(
        &mut self,
        _: &mut Client,
        _: Instant,
        _: (),
        app: ClientApp<'a>,
        out: &mut Outlet<GameClientItem>,
        _: &mut Vec<((), Vec<u8>)>,
    ) {
        out.push(match app {
            ClientApp::Chunks(p) => GameClientItem::Chunks {
                header: p.header,
                payload: p.payload.to_vec(),
            },
            ClientApp::Close { reason } => GameClientItem::Close {
                reason: reason.to_string(),
            },
            _ => return,
        });
    }

    fn event(
        &mut self,
        _: &mut Client,
        _: Instant,
        ev: ClientEvent,
        out: &mut Outlet<GameClientItem>,
    ) {
        match ev {
            ClientEvent::Connected { token } => {
                if let Some(tx) = self.connected.take() {
                    let _ = tx.send(Ok(token));
                }
            }
            ClientEvent::Closed { cause } => {
                let _ = self.ended.set(cause);
                if let Some(tx) = self.connected.take() {
                    let _ = tx.send(Err(cause));
                }
                for tx in self.close_waiters.drain(..) {
                    let _ = tx.send(Ok(()));
                }
                for tx in self.end_waiters.drain(..) {
                    let _ = tx.send(cause);
                }
            }
            _ => {}
        }
        out.push(GameClientItem::Event(ev));
    }

    fn abandoned(&mut self, m: &mut Client, now: Instant) {
        let _ = m.close(now, "client dropped");
    }

    fn finished(&self) -> bool {
        self.ended.get().is_some()
    }
}

/// A handle to a game client running in its own task; clone it freely
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use tether_net::game::ClientConfig;
/// use tether_net_drivers::tokio::GameClient;
///
/// let (client, _events) = GameClient::connect("127.0.0.1:8303", ClientConfig::new()).await?;
/// tokio::time::sleep(std::time::Duration::from_secs(5)).await;
/// client.close("bye").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct GameClient {
    commands: mpsc::Sender<ClientCmd>,
    local: SocketAddr,
    ended: Arc<OnceLock<CloseCause>>,
}

impl fmt::Debug for GameClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GameClient")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

/// The events and data of a game client or server, in order (a bounded channel; see the
/// module docs for what a slow consumer causes)
#[derive(Debug)]
pub struct GameEvents<T = GameClientItem>(mpsc::Receiver<T>);

/// The events and data of a [`GameServer`]
pub type GameServerEvents = GameEvents<GameServerItem>;

impl<T> GameEvents<T> {
    /// The next item; `None` once the machine is finished and everything was handed out
    pub async fn next(&mut self) -> Option<T> {
        self.0.recv().await
    }
}

impl<T> futures_core::Stream for GameEvents<T> {
    type Item = T;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

/// Why [`GameClient::connect`] did not end connected
#[derive(Debug)]
#[non_exhaustive]
pub enum GameConnectError {
    /// Resolving, binding or connecting the socket failed
    Io(io::Error),
    /// The machine ended before `Connected` (e.g. `ConnectTimeout`, or the server's CLOSE)
    Closed(CloseCause),
}

impl fmt::Display for GameConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GameConnectError::Io(e) => write!(f, "socket: {e}"),
            GameConnectError::Closed(c) => write!(f, "closed before connecting: {c:?}"),
        }
    }
}

impl std::error::Error for GameConnectError {}

impl GameClient {
    /// Connect to a game server: binds a socket, spawns the driver task, and returns once the
    /// server accepted (`Connected` is also the first item of the event stream)
    ///
    /// The event channel holds 64 items. Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// [`GameConnectError`]: a socket error, or the close cause when the machine gave up
    /// (`ConnectTimeout` after the configured connect timeout).
    pub async fn connect(
        server: impl ToSocketAddrs,
        config: ClientConfig,
    ) -> Result<(GameClient, GameEvents), GameConnectError> {
        Self::connect_with(server, Client::new(config), EVENTS).await
    }

    /// [`GameClient::connect`] with a machine you built and an event channel of `events`
    /// items (at least 1)
    ///
    /// # Errors
    /// As [`GameClient::connect`].
    pub async fn connect_with(
        server: impl ToSocketAddrs,
        mut machine: Client,
        events: usize,
    ) -> Result<(GameClient, GameEvents), GameConnectError> {
        let server = lookup_host(server)
            .await
            .map_err(GameConnectError::Io)?
            .next()
            .ok_or_else(|| {
                GameConnectError::Io(io::Error::new(io::ErrorKind::InvalidInput, "no address"))
            })?;
        let local: SocketAddr = match server {
            SocketAddr::V4(a) if a.ip().is_loopback() => ([127, 0, 0, 1], 0).into(),
            SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
            SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let sock = UdpSocket::bind(local).await.map_err(GameConnectError::Io)?;
        sock.connect(server).await.map_err(GameConnectError::Io)?;
        let local = sock.local_addr().map_err(GameConnectError::Io)?;
        machine
            .connect(Instant::ZERO)
            .map_err(|_| GameConnectError::Closed(CloseCause::Local))?;
        let (tx, rx) = mpsc::channel(events.max(1));
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMANDS);
        let (up_tx, up_rx) = oneshot::channel();
        let ended = Arc::new(OnceLock::new());
        let side = ClientSide {
            connected: Some(up_tx),
            ended: Arc::clone(&ended),
            close_waiters: Vec::new(),
            end_waiters: Vec::new(),
            buf: std::vec![0; MAX_PACKET_LEN],
        };
        tokio::spawn(run(sock, machine, side, cmd_rx, Outlet::new(tx)));
        match up_rx.await {
            Ok(Ok(_)) => Ok((
                GameClient {
                    commands: cmd_tx,
                    local,
                    ended,
                },
                GameEvents(rx),
            )),
            Ok(Err(cause)) => Err(GameConnectError::Closed(cause)),
            Err(_) => Err(GameConnectError::Closed(CloseCause::Local)),
        }
    }

    /// Our socket's address
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Send one chunk packet (`payload` holds `num_chunks` chunks; the token is appended in
    /// token mode)
    ///
    /// # Errors
    /// The machine's refusal (`NotOpen`, `Closed`, `TooLong`), or [`DriverError::Stopped`].
    pub async fn send(
        &self,
        flags: Flags,
        num_chunks: u8,
        payload: &[u8],
    ) -> Result<(), DriverError> {
        call(&self.commands, |reply| ClientCmd::Send {
            flags,
            num_chunks,
            payload: payload.to_vec(),
            reply,
        })
        .await
    }

    /// Close with `reason`; returns once the CLOSE was sent and the machine reported `Closed`
    ///
    /// # Errors
    /// The machine's refusal (`Closed`: it is closed already), or [`DriverError::Stopped`].
    pub async fn close(&self, reason: &str) -> Result<(), DriverError> {
        call(&self.commands, |reply| ClientCmd::Close {
            reason: reason.to_string(),
            reply,
        })
        .await
    }

    /// Wait until the connection has ended, for whatever cause; at once when it has
    ///
    /// `None` only when the driver task went away without a `Closed` event (the runtime shut
    /// down).
    pub async fn closed(&self) -> Option<CloseCause> {
        super::ended(&self.ended, &self.commands, ClientCmd::Closed).await
    }

    /// The machine's counters (datagrams dropped as malformed, with a wrong token, ...) and
    /// the socket's
    ///
    /// Answered between two inputs, like every command: while the event stream is full and
    /// unread, this waits.
    ///
    /// # Errors
    /// [`DriverError::Stopped`] once the connection has ended and its task is gone.
    pub async fn stats(&self) -> Result<GameClientStats, DriverError> {
        super::ask(&self.commands, ClientCmd::Stats).await
    }
}

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

/// One item of a [`GameServerEvents`] stream
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GameServerItem {
    /// A machine event (`Connected`, `Closed`, `ShutdownComplete`, the last item)
    Event(ServerEvent<SocketAddr>),
    /// A chunk packet of an online peer
    Chunks {
        /// The peer
        peer: SocketAddr,
        /// The packet header
        header: Header,
        /// The chunk data (token removed)
        payload: Vec<u8>,
    },
    /// A peer closed its connection with this reason (`Event(Closed { cause: Peer })` follows)
    Close {
        /// The peer
        peer: SocketAddr,
        /// The reason, printable
        reason: String,
    },
}

enum ServerCmd {
    Send {
        peer: SocketAddr,
        flags: Flags,
        num_chunks: u8,
        payload: Vec<u8>,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Close {
        peer: SocketAddr,
        reason: String,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Shutdown {
        reason: String,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Stats(oneshot::Sender<GameServerStats>),
    SetInfo(Option<GameServerInfo>),
}

/// What a tokio [`GameServer`] tells server browsers ([`GameServer::set_info`]); the player and
/// client counts are those of `clients`
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GameServerInfo {
    /// Game version, e.g. `0.6.4, 16.4`
    pub version: String,
    /// Server name
    pub name: String,
    /// Map name
    pub map: String,
    /// CRC32 of the map file (the extended answer carries it)
    pub map_crc: u32,
    /// Map size in bytes (the extended answer carries it)
    pub map_size: i32,
    /// Game type, e.g. `DDraceNetwork`
    pub game_type: String,
    /// Bit 0: password required
    pub flags: i32,
    /// Player slots
    pub max_players: i32,
    /// Client slots
    pub max_clients: i32,
    /// The clients listed (as many as fit into one answer; DDNet 16.4 lists at most 16 in `inf3`)
    pub clients: Vec<GameServerInfoClient>,
}

/// One client of a [`GameServerInfo`]
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GameServerInfoClient {
    /// Player name
    pub name: String,
    /// Clan
    pub clan: String,
    /// Country code (−1: none)
    pub country: i32,
    /// Score (DDNet: −9999 = no time yet)
    pub score: i32,
    /// A player (true) or a spectator
    pub is_player: bool,
}

/// What [`GameServer::stats`] reports
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct GameServerStats {
    /// The machine's counters: what was dropped and why (malformed datagrams, wrong tokens, a
    /// full stateless reply queue, info floods, ...), admissions, keep-alives
    pub machine: ServerStats,
    /// Peers in the table now (online, or admitted and not yet online)
    pub peers: usize,
    /// The socket's counters
    pub socket: SocketStats,
}

struct ServerSide {
    info: Option<GameServerInfo>,
    done: bool,
    shutdown_waiters: Vec<oneshot::Sender<Result<(), Error>>>,
    /// Where `send_chunks` writes: a whole datagram, the most a chunk packet can be
    buf: Vec<u8>,
}

impl Side for ServerSide {
    type M = Server<SocketAddr>;
    type Peer = SocketAddr;
    type Cmd = ServerCmd;
    type Item = GameServerItem;

    fn command(
        &mut self,
        m: &mut Server<SocketAddr>,
        now: Instant,
        cmd: ServerCmd,
        direct: &mut Vec<(SocketAddr, Vec<u8>)>,
        socket: &SocketStats,
    ) {
        match cmd {
            ServerCmd::Send {
                peer,
                flags,
                num_chunks,
                payload,
                reply,
            } => {
                let r = m
                    .send_chunks(now, peer, flags, num_chunks, &payload, &mut self.buf)
                    .map(|t| direct.push((t.to, self.buf[..t.len].to_vec())));
                let _ = reply.send(r);
            }
            ServerCmd::Close {
                peer,
                reason,
                reply,
            } => {
                let _ = reply.send(m.close(now, peer, &reason));
            }
            ServerCmd::SetInfo(info) => self.info = info,
            ServerCmd::Stats(reply) => {
                let _ = reply.send(GameServerStats {
                    machine: m.stats(),
                    peers: m.peer_count(),
                    socket: *socket,
                });
            }
            ServerCmd::Shutdown { reason, reply } => match m.shutdown(now, &reason) {
                Ok(()) => self.shutdown_waiters.push(reply),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
        }
    }

    fn app<'a>(
        &mut self,
        m: &mut Server<SocketAddr>,
        now: Instant,
        from: SocketAddr,
        app: ServerApp<'a>,
        out: &mut Outlet<GameServerItem>,
        direct: &mut Vec<(SocketAddr, Vec<u8>)>,
    ) {
        if let ServerApp::InfoRequest(_) = app {
            // answered from the info last set, within the machine's rate limits; without one
            // the request stays unanswered (counted in `info_requests`)
            if let Some(info) = &self.info {
                let clients: Vec<ClientInfo<'_>> = info
                    .clients
                    .iter()
                    .map(|c| ClientInfo {
                        name: Str::new(&c.name),
                        clan: Str::new(&c.clan),
                        country: c.country,
                        score: c.score,
                        is_player: i32::from(c.is_player),
                    })
                    .collect();
                let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
                let content = InfoContent {
                    version: Str::new(&info.version),
                    name: Str::new(&info.name),
                    map: Str::new(&info.map),
                    map_crc: info.map_crc,
                    map_size: info.map_size,
                    game_type: Str::new(&info.game_type),
                    flags: info.flags,
                    num_players: count(info.clients.iter().filter(|c| c.is_player).count()),
                    max_players: info.max_players,
                    num_clients: count(info.clients.len()),
                    max_clients: info.max_clients,
                    clients: &clients,
                };
                let mut answer = std::vec![0u8; MAX_PACKET_LEN];
                if let Ok(Some(t)) = m.answer_info(now, &content, &mut answer) {
                    answer.truncate(t.len);
                    direct.push((t.to, answer));
                }
            }
            return;
        }
        out.push(match app {
            ServerApp::Chunks(p) => GameServerItem::Chunks {
                peer: from,
                header: p.header,
                payload: p.payload.to_vec(),
            },
            ServerApp::Close { reason } => GameServerItem::Close {
                peer: from,
                reason: reason.to_string(),
            },
            _ => return,
        });
    }

    fn event(
        &mut self,
        _: &mut Server<SocketAddr>,
        _: Instant,
        ev: ServerEvent<SocketAddr>,
        out: &mut Outlet<GameServerItem>,
    ) {
        if ev == ServerEvent::ShutdownComplete {
            self.done = true;
            for tx in self.shutdown_waiters.drain(..) {
                let _ = tx.send(Ok(()));
            }
        }
        out.push(GameServerItem::Event(ev));
    }

    fn abandoned(&mut self, m: &mut Server<SocketAddr>, now: Instant) {
        if m.shutdown(now, "server stopped").is_err() {
            self.done = true;
        }
    }

    fn finished(&self) -> bool {
        self.done
    }
}

/// A handle to a game server running in its own task; clone it freely
#[derive(Clone)]
pub struct GameServer {
    commands: mpsc::Sender<ServerCmd>,
    local: SocketAddr,
}

impl fmt::Debug for GameServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GameServer")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl GameServer {
    /// Bind `addr` and serve with a machine of the default capacities (64 peers); the event
    /// channel holds 64 items. Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// The bind error.
    pub async fn bind(
        addr: impl ToSocketAddrs,
        config: ServerConfig,
    ) -> io::Result<(GameServer, GameServerEvents)> {
        let sock = UdpSocket::bind(addr).await?;
        let local = sock.local_addr()?;
        let (tx, rx) = mpsc::channel(EVENTS);
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMANDS);
        let side = ServerSide {
            info: None,
            done: false,
            shutdown_waiters: Vec::new(),
            buf: std::vec![0; MAX_PACKET_LEN],
        };
        tokio::spawn(run(
            sock,
            Server::new(config),
            side,
            cmd_rx,
            Outlet::new(tx),
        ));
        Ok((
            GameServer {
                commands: cmd_tx,
                local,
            },
            GameEvents(rx),
        ))
    }

    /// The bound address
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Send one chunk packet to an online peer
    ///
    /// # Errors
    /// The machine's refusal, or [`DriverError::Stopped`].
    pub async fn send(
        &self,
        peer: SocketAddr,
        flags: Flags,
        num_chunks: u8,
        payload: &[u8],
    ) -> Result<(), DriverError> {
        call(&self.commands, |reply| ServerCmd::Send {
            peer,
            flags,
            num_chunks,
            payload: payload.to_vec(),
            reply,
        })
        .await
    }

    /// Close one peer with `reason`
    ///
    /// # Errors
    /// The machine's refusal (`UnknownPeer`), or [`DriverError::Stopped`].
    pub async fn close(&self, peer: SocketAddr, reason: &str) -> Result<(), DriverError> {
        call(&self.commands, |reply| ServerCmd::Close {
            peer,
            reason: reason.to_string(),
            reply,
        })
        .await
    }

    /// The machine's counters and the number of peers: what a flood of spoofed or junk
    /// datagrams cost shows here (`dropped_malformed`, `dropped_wrong_token`,
    /// `dropped_reply_queue_full`, `dropped_info_flood`) while it creates no peer
    ///
    /// Answered between two inputs, like every command: while the event stream is full and
    /// unread, this waits.
    ///
    /// # Errors
    /// [`DriverError::Stopped`] once the server's task has ended.
    pub async fn stats(&self) -> Result<GameServerStats, DriverError> {
        super::ask(&self.commands, ServerCmd::Stats).await
    }

    /// Answer server browsers' info requests (`gie3`, extended or not, and `fstd`) with `info`
    /// from now on, or stop answering them (`None`, the state after [`GameServer::bind`])
    ///
    /// The machine's limits apply: the client list only in the first
    /// `ServerConfig::info_per_second` answers of a second, no answer at all past
    /// `ServerConfig::info_replies_per_second` (a spoofed request makes the server send to its
    /// victim, so both are bounded).
    ///
    /// # Errors
    /// [`DriverError::Stopped`] once the server's task has ended.
    pub async fn set_info(&self, info: Option<GameServerInfo>) -> Result<(), DriverError> {
        self.commands
            .send(ServerCmd::SetInfo(info))
            .await
            .map_err(|_| DriverError::Stopped)
    }

    /// Close every peer with `reason`; returns once `ShutdownComplete` was reported
    ///
    /// # Errors
    /// The machine's refusal (`Closed`: already shutting down), or [`DriverError::Stopped`].
    pub async fn shutdown(&self, reason: &str) -> Result<(), DriverError> {
        call(&self.commands, |reply| ServerCmd::Shutdown {
            reason: reason.to_string(),
            reply,
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::SocketStats;
    use std::io::{Error, ErrorKind};

    #[test]
    fn refused_sends_are_counted_apart_from_sent_ones() {
        let mut s = SocketStats::default();
        s.count_send(&Ok(8));
        // what a fresh socket's first `try_send` used to meet, and a full send buffer
        s.count_send(&Err(Error::from(ErrorKind::WouldBlock)));
        s.count_send(&Err(Error::from(ErrorKind::ConnectionRefused)));
        assert_eq!((s.sent, s.send_errors), (1, 2));
    }
}
