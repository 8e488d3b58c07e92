//! The running gateway: HTTP, quote and trade listeners on `tether-net`'s LongPort server
//! machine (the tokio driver of `tether-net-drivers`), the script's timeline, one line of log
//! per connection event
//!
//! [`start`] binds every listener and returns a [`Running`] gateway; the `longport-gateway`
//! binary is a command-line wrapper around it. One application task owns all the business
//! state (market, connections, parked sessions) and handles, in turn: the items of the quote
//! server, the items of the trade server and the timeline's due items. Nothing is shared
//! behind locks except the one-time token store the HTTP side issues into.

use std::collections::HashMap;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use tether_net::longport::RateLimit;
use tether_net::longport::{AccountId, CloseCode, ServerConfig, ServerEvent, Status};
use tether_net_drivers::random_session_id;
use tether_net_drivers::tokio::{
    Admission, ConnId, Grant, Listener, LongPortServer, ServerEvents, ServerInput, ServerItem,
    ServerOptions,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::feed::Step;
use crate::http::{bind_loopback, FixedQuota, HttpConfig, HttpGateway};
use crate::market::Market;
use crate::reply::{code, Reply};
use crate::script::{Account, Item, Script, SocketKind, UnixTime};
use crate::session::{ConnState, SessionStore};
use crate::token::TokenStore;

/// Connections one socket's machine holds at once (quote and trade each)
pub const PEERS: usize = 1024;
/// Sessions one socket's machine remembers
pub const SESSIONS: usize = 2048;

/// `Error.code` of an Auth with an unknown, used or expired one-time token
pub const CODE_BAD_TOKEN: u64 = 401_003;
/// `Error.code` of an Auth over the account's connection quota (the machine's answer)
pub const CODE_OVER_QUOTA: u64 = 403;
/// `Error.code` of a Reconnect whose session the gateway no longer holds
pub const CODE_SESSION_GONE: u64 = 401_005;

/// Everything the gateway is started with
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct GatewayConfig {
    /// HTTP listener (`GET /v1/socket/token`, `GET /v1/asset/account`)
    pub http: SocketAddr,
    /// Quote WebSocket listener (`ws://ADDR/…`, any path)
    pub quote_ws: SocketAddr,
    /// Trade WebSocket listener
    pub trade_ws: SocketAddr,
    /// Quote socket over LongPort's TCP framing as well (`None`: no)
    pub quote_tcp: Option<SocketAddr>,
    /// Trade socket over TCP as well
    pub trade_tcp: Option<SocketAddr>,
    /// The market-data script
    pub script: Script,
    /// Authenticated connections one account may hold on each socket (quote, trade)
    pub max_connections: u32,
    /// Per-connection limit on business requests (`None`: unlimited)
    pub rate_limit: Option<RateLimit>,
    /// Lifetime of the sessions Auth and Reconnect grant
    pub session_ttl: Duration,
    /// WebSocket Ping cadence (the SDK drops a connection that saw no Ping for 120 s)
    pub ping_interval: Duration,
    /// Silence after which an authenticated connection is closed
    pub heartbeat_timeout: Duration,
    /// Time a new connection has to authenticate
    pub auth_timeout: Duration,
    /// Connections that may be unauthenticated at once, per socket
    pub max_unauthenticated: usize,
    /// Of those, from one source address (all of a loopback gateway's clients share
    /// 127.0.0.1; a new one beyond it evicts that source's oldest)
    pub max_unauthenticated_per_source: usize,
    /// Start the timeline at the first successful Auth instead of at start-up
    pub start_on_auth: bool,
    /// Print one line per connection event on stdout
    pub verbose: bool,
}

impl GatewayConfig {
    /// Every listener on 127.0.0.1 with a free port, limits as the command line's defaults
    pub fn loopback(script: Script) -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        GatewayConfig {
            http: any,
            quote_ws: any,
            trade_ws: any,
            quote_tcp: None,
            trade_tcp: None,
            script,
            max_connections: 10,
            rate_limit: None,
            session_ttl: Duration::from_secs(3600),
            ping_interval: Duration::from_secs(20),
            heartbeat_timeout: Duration::from_secs(150),
            auth_timeout: Duration::from_secs(10),
            max_unauthenticated: 64,
            max_unauthenticated_per_source: 64,
            start_on_auth: false,
            verbose: true,
        }
    }
}

/// The bound addresses of a running gateway
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addrs {
    /// HTTP
    pub http: SocketAddr,
    /// Quote WebSocket
    pub quote_ws: SocketAddr,
    /// Trade WebSocket
    pub trade_ws: SocketAddr,
    /// Quote TCP, if configured
    pub quote_tcp: Option<SocketAddr>,
    /// Trade TCP, if configured
    pub trade_tcp: Option<SocketAddr>,
}

/// A running gateway; dropping it stops everything
#[derive(Debug)]
pub struct Running {
    addrs: Addrs,
    app: JoinHandle<()>,
    http: JoinHandle<io::Result<()>>,
    done: Option<oneshot::Receiver<()>>,
    quote: LongPortServer,
    trade: LongPortServer,
}

impl Running {
    /// Where it listens
    pub fn addrs(&self) -> Addrs {
        self.addrs
    }

    /// Wait until a scripted `shutdown` (or [`Running::shutdown`]) has closed every
    /// connection
    pub async fn finished(&mut self) {
        if let Some(rx) = self.done.take() {
            let _ = rx.await;
        }
    }

    /// Close every connection with `Close{ServerShutdown, reason}` and stop (waits at most
    /// 5 s for the connections' Closed events to be logged)
    pub async fn shutdown(&mut self, reason: &str) {
        let _ = tokio::join!(self.quote.shutdown(reason), self.trade.shutdown(reason));
        let _ = tokio::time::timeout(Duration::from_secs(5), self.finished()).await;
        self.app.abort();
    }

    /// The two machines' counters and table sizes (quote, trade)
    pub async fn snapshots(
        &self,
    ) -> (
        Option<tether_net_drivers::tokio::ServerSnapshot>,
        Option<tether_net_drivers::tokio::ServerSnapshot>,
    ) {
        tokio::join!(self.quote.snapshot(), self.trade.snapshot())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.app.abort();
        self.http.abort();
    }
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Print one log line on stdout now (a test or a user reading a pipe sees it at once)
fn say(verbose: bool, line: std::fmt::Arguments<'_>) {
    if verbose {
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// Bind every listener and start serving
///
/// Prints `listening on` lines (HTTP, quote, trade) on stdout when `verbose`.
///
/// # Errors
/// A bind error.
pub async fn start(config: GatewayConfig) -> io::Result<Running> {
    let tokens = Arc::new(TokenStore::new(Duration::from_secs(300), 4096));
    let accounts: Vec<Arc<Account>> = config.script.accounts.clone();
    // The quota is enforced at the sockets' Auth (status 6, Error{403}); the token endpoint
    // reports the limit with nobody online, so the SDK always gets that far.
    let quota = Arc::new(FixedQuota {
        limit: i32::try_from(config.max_connections).unwrap_or(i32::MAX),
    });
    let http_gw = HttpGateway::with_config(accounts, tokens.clone(), quota, HttpConfig::default());
    let http_listener = if config.http.ip().is_loopback() && config.http.port() == 0 {
        bind_loopback(0).await?
    } else {
        tokio::net::TcpListener::bind(config.http).await?
    };
    let http_addr = http_listener.local_addr()?;
    let machine = ServerConfig::new()
        .with_auth_timeout(config.auth_timeout)
        .with_heartbeat_timeout(config.heartbeat_timeout)
        .with_ws_ping_interval(config.ping_interval)
        .with_max_unauthenticated(config.max_unauthenticated)
        .with_max_unauthenticated_per_source(config.max_unauthenticated_per_source)
        .with_account_quota(Some(config.max_connections))
        .with_rate_limit(config.rate_limit);
    let options = ServerOptions::default().with_events_capacity(256);
    let mut quote_listeners = vec![Listener::Ws(config.quote_ws)];
    quote_listeners.extend(config.quote_tcp.map(Listener::Tcp));
    let mut trade_listeners = vec![Listener::Ws(config.trade_ws)];
    trade_listeners.extend(config.trade_tcp.map(Listener::Tcp));
    let (quote, quote_events) =
        LongPortServer::bind_with::<PEERS, SESSIONS>(&quote_listeners, machine, options.clone())
            .await?;
    let (trade, trade_events) =
        LongPortServer::bind_with::<PEERS, SESSIONS>(&trade_listeners, machine, options).await?;
    let addrs = Addrs {
        http: http_addr,
        quote_ws: quote.local_addrs()[0],
        trade_ws: trade.local_addrs()[0],
        quote_tcp: quote.local_addrs().get(1).copied(),
        trade_tcp: trade.local_addrs().get(1).copied(),
    };
    let v = config.verbose;
    say(v, format_args!("listening on http://{} (HTTP)", addrs.http));
    say(
        v,
        format_args!("listening on ws://{} (quote)", addrs.quote_ws),
    );
    say(
        v,
        format_args!("listening on ws://{} (trade)", addrs.trade_ws),
    );
    if let Some(a) = addrs.quote_tcp {
        say(v, format_args!("listening on tcp://{a} (quote)"));
    }
    if let Some(a) = addrs.trade_tcp {
        say(v, format_args!("listening on tcp://{a} (trade)"));
    }
    let http = tokio::spawn(http_gw.serve(http_listener));
    let wall_start = UnixTime(unix_ms() / 1000);
    let timeline = config.script.timeline(wall_start);
    let market = Market::new(&config.script, timeline.start());
    let (done_tx, done_rx) = oneshot::channel();
    let app = App {
        quote: quote.clone(),
        trade: trade.clone(),
        tokens,
        market,
        timeline,
        started: (!config.start_on_auth).then(Instant::now),
        conns: HashMap::new(),
        parked: SessionStore::new(4 * SESSIONS, config.session_ttl),
        config,
    };
    let task = tokio::spawn(app.run(quote_events, trade_events, done_tx));
    Ok(Running {
        addrs,
        app: task,
        http,
        done: Some(done_rx),
        quote,
        trade,
    })
}

/// One connection the application knows
struct Conn {
    /// Business state, from a successful Auth or Reconnect on
    state: Option<ConnState>,
    /// The session granted to it
    session: Option<String>,
}

struct App {
    quote: LongPortServer,
    trade: LongPortServer,
    tokens: Arc<TokenStore>,
    market: Market,
    timeline: crate::script::Timeline,
    /// When the timeline's offset 0 was (None: not started yet)
    started: Option<Instant>,
    conns: HashMap<(SocketKind, ConnId), Conn>,
    parked: SessionStore<(SocketKind, String)>,
    config: GatewayConfig,
}

fn kind_name(kind: SocketKind) -> &'static str {
    match kind {
        SocketKind::Quote => "quote",
        SocketKind::Trade => "trade",
    }
}

enum Wake {
    Item(SocketKind, Option<ServerItem>),
    Timeline,
}

impl App {
    fn server(&self, kind: SocketKind) -> &LongPortServer {
        match kind {
            SocketKind::Quote => &self.quote,
            SocketKind::Trade => &self.trade,
        }
    }

    fn log(&self, line: std::fmt::Arguments<'_>) {
        say(self.config.verbose, line);
    }

    /// A fresh session for `app_key`'s account (the machine counts the account's connections
    /// against the quota and reports `limit`/`online`)
    fn grant(&self, app_key: &str) -> Grant {
        let ttl = i64::try_from(self.config.session_ttl.as_millis()).unwrap_or(i64::MAX);
        let index = self
            .config
            .script
            .accounts
            .iter()
            .position(|a| a.app_key == app_key)
            .unwrap_or(usize::MAX);
        Grant::new(random_session_id(), unix_ms().saturating_add(ttl))
            .with_account(AccountId(index as u64))
    }

    async fn run(
        mut self,
        mut quote_events: ServerEvents,
        mut trade_events: ServerEvents,
        done: oneshot::Sender<()>,
    ) {
        let mut open = (true, true);
        while open.0 || open.1 {
            let due = self
                .started
                .and_then(|s| self.timeline.next_at().map(|at| s + at));
            let wake = tokio::select! {
                i = quote_events.next(), if open.0 => Wake::Item(SocketKind::Quote, i),
                i = trade_events.next(), if open.1 => Wake::Item(SocketKind::Trade, i),
                () = sleep_until(due) => Wake::Timeline,
            };
            match wake {
                Wake::Item(SocketKind::Quote, None) => open.0 = false,
                Wake::Item(SocketKind::Trade, None) => open.1 = false,
                Wake::Item(kind, Some(item)) => self.item(kind, item).await,
                Wake::Timeline => {
                    if self.timeline_due().await {
                        // shutting down: the loop goes on logging the connections' Closed
                        // events until both servers have handed out everything
                        self.started = None;
                    }
                }
            }
        }
        let _ = done.send(());
    }

    async fn item(&mut self, kind: SocketKind, item: ServerItem) {
        let k = kind_name(kind);
        match item {
            ServerItem::Accepted {
                peer,
                remote,
                transport,
            } => {
                self.log(format_args!(
                    "{k}#{peer} connected from {remote} over {transport:?}"
                ));
                self.conns.insert(
                    (kind, peer),
                    Conn {
                        state: None,
                        session: None,
                    },
                );
            }
            ServerItem::Input(ServerInput::Auth { peer, token, .. }) => {
                self.auth(kind, peer, &token).await;
            }
            ServerItem::Input(ServerInput::Reconnect {
                peer, session_id, ..
            }) => self.reconnect(kind, peer, &session_id).await,
            ServerItem::Input(ServerInput::Request {
                peer,
                request_id,
                cmd,
                body,
                gzip,
                ..
            }) => {
                let reply = self.request(kind, peer, cmd, &body, gzip);
                let server = self.server(kind).clone();
                if reply.status != 0 {
                    let detail = reply.error_detail().unwrap_or_default();
                    self.log(format_args!(
                        "{k}#{peer} cmd {cmd}: status {}, error {} {:?}",
                        reply.status, detail.code, detail.msg
                    ));
                }
                let status = Status::from_u8(reply.status);
                if let Err(e) = server
                    .respond(peer, cmd, request_id, status, reply.body)
                    .await
                {
                    self.log(format_args!("{k}#{peer} cmd {cmd}: answer not sent: {e}"));
                    return;
                }
                for p in reply.pushes {
                    if server.push(peer, p.cmd, p.body).await.is_err() {
                        break;
                    }
                }
            }
            ServerItem::Input(other) => {
                self.log(format_args!("{k}: ignored input {other:?}"));
            }
            ServerItem::Event(ServerEvent::Connected { peer, via, expires }) => {
                self.log(format_args!(
                    "{k}#{peer} session up ({via:?}), expires at {expires} unix ms"
                ));
            }
            ServerItem::Event(ServerEvent::Closed { peer, cause }) => {
                self.log(format_args!("{k}#{peer} closed: {cause}"));
                if let Some(c) = self.conns.remove(&(kind, peer)) {
                    if let (Some(state), Some(s)) = (c.state, c.session) {
                        self.parked.park((kind, s), state, Instant::now());
                    }
                }
            }
            ServerItem::Event(ServerEvent::ShutdownComplete) => {
                self.log(format_args!("{k} socket shut down"));
            }
            ServerItem::Event(other) => self.log(format_args!("{k}: {other:?}")),
            _ => {}
        }
    }

    async fn auth(&mut self, kind: SocketKind, peer: ConnId, token: &str) {
        let k = kind_name(kind);
        let server = self.server(kind).clone();
        let Some(account) = self.tokens.redeem(token, Instant::now()) else {
            self.log(format_args!(
                "{k}#{peer} auth refused: unknown, used or expired token"
            ));
            let _ = server
                .reject_auth(
                    peer,
                    Status::Unauthenticated,
                    CODE_BAD_TOKEN,
                    "token invalid or used",
                )
                .await;
            return;
        };
        let grant = self.grant(&account.app_key);
        let session = grant.session_id().as_str().to_owned();
        match server.accept_auth(peer, grant).await {
            Ok(Admission::OverQuota { limit, online }) => {
                self.log(format_args!(
                    "{k}#{peer} auth refused: {} holds {online} of {limit} {k} connections",
                    account.app_key
                ));
            }
            Ok(_) => {
                self.log(format_args!(
                    "{k}#{peer} auth ok: {} (member {}), session {}…",
                    account.app_key,
                    account.member_id,
                    &session[..8]
                ));
                if let Some(c) = self.conns.get_mut(&(kind, peer)) {
                    c.state = Some(ConnState::new(kind, account));
                    c.session = Some(session);
                }
                if self.started.is_none() {
                    self.started = Some(Instant::now());
                    self.log(format_args!("timeline started"));
                }
            }
            Err(e) => self.log(format_args!("{k}#{peer} auth not accepted: {e}")),
        }
    }

    async fn reconnect(&mut self, kind: SocketKind, peer: ConnId, session_id: &str) {
        let k = kind_name(kind);
        let server = self.server(kind).clone();
        // parked when its connection ended; or still live (the machine closes that one with
        // ConnectDuplicate once this one is accepted)
        let parked = self
            .parked
            .take(&(kind, session_id.to_owned()), Instant::now())
            .or_else(|| {
                self.conns
                    .iter()
                    .find(|(&(k, _), c)| k == kind && c.session.as_deref() == Some(session_id))
                    .and_then(|(_, c)| c.state.clone())
            });
        let Some(state) = parked else {
            self.log(format_args!(
                "{k}#{peer} reconnect refused: session not held"
            ));
            let _ = server
                .reject_reconnect(
                    peer,
                    Status::Unauthenticated,
                    CODE_SESSION_GONE,
                    "session expired",
                )
                .await;
            return;
        };
        let app_key = state.account().app_key.clone();
        let grant = self.grant(&app_key);
        let session = grant.session_id().as_str().to_owned();
        match server.accept_reconnect(peer, grant).await {
            Ok(Admission::OverQuota { limit, online }) => {
                self.log(format_args!(
                    "{k}#{peer} reconnect refused: {app_key} holds {online} of {limit} {k} connections"
                ));
            }
            Ok(_) => {
                self.log(format_args!(
                    "{k}#{peer} reconnect ok: {app_key}, session {}… -> {}…",
                    &session_id[..session_id.len().min(8)],
                    &session[..8]
                ));
                if let Some(c) = self.conns.get_mut(&(kind, peer)) {
                    c.state = Some(state);
                    c.session = Some(session);
                }
            }
            Err(e) => self.log(format_args!("{k}#{peer} reconnect not accepted: {e}")),
        }
    }

    /// The answer to one business request
    fn request(
        &mut self,
        kind: SocketKind,
        peer: ConnId,
        cmd: u8,
        body: &[u8],
        gzip: bool,
    ) -> Reply {
        // rate limits are the machine's: a request over them never gets here
        let Some(conn) = self.conns.get_mut(&(kind, peer)) else {
            return Reply::error(7, code::INVALID_REQUEST, "not authenticated");
        };
        let Some(state) = conn.state.as_mut() else {
            return Reply::error(7, code::INVALID_REQUEST, "not authenticated");
        };
        if gzip {
            return Reply::invalid_request("gzip request bodies are not supported");
        }
        state.handle(cmd, body, &self.market)
    }

    /// Hand out every due timeline item; true when the script shut the gateway down
    async fn timeline_due(&mut self) -> bool {
        let Some(started) = self.started else {
            return false;
        };
        let elapsed = started.elapsed();
        loop {
            let Some(due) = self.timeline.poll(elapsed) else {
                return false;
            };
            let line = due.line;
            let is_shutdown = matches!(due.item, Item::Shutdown { .. });
            let step = self.market.step(&due);
            if self.apply(step, line).await || is_shutdown {
                return true;
            }
        }
    }

    /// Send what one step means to every connection; true on shutdown
    async fn apply(&mut self, step: Step, line: usize) -> bool {
        if let Step::Shutdown { reason } = &step {
            self.log(format_args!("script line {line}: shutdown ({reason})"));
            for server in [self.quote.clone(), self.trade.clone()] {
                let reason = reason.clone();
                tokio::spawn(async move { server.shutdown(&reason).await });
            }
            return true;
        }
        let mut targeted = Vec::new();
        let mut pushes = Vec::new();
        for (&(kind, peer), c) in &self.conns {
            let Some(state) = &c.state else { continue };
            if let Some(p) = step.push_for(state) {
                pushes.push((kind, peer, p));
            } else if step.targets(state) {
                targeted.push((kind, peer));
            }
        }
        pushes.sort_by_key(|(k, p, _)| (kind_name(*k), *p));
        for (kind, peer, p) in pushes {
            let _ = self.server(kind).push(peer, p.cmd, p.body).await;
        }
        match &step {
            Step::Close { code, reason, .. } => {
                for (kind, peer) in targeted {
                    self.log(format_args!(
                        "script line {line}: close {}#{peer} (code {code})",
                        kind_name(kind)
                    ));
                    let cc = CloseCode::from_i32(i32::from(*code));
                    let _ = self.server(kind).close(peer, cc, reason).await;
                }
            }
            Step::Drop { .. } => {
                for (kind, peer) in targeted {
                    self.log(format_args!(
                        "script line {line}: drop {}#{peer}",
                        kind_name(kind)
                    ));
                    self.server(kind).drop_connection(peer).await;
                }
            }
            _ => {}
        }
        false
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// Give the script's first account other credentials (the `--app-key` / `--app-secret` flags);
/// timed items naming the old app key follow
pub fn set_credentials(script: &mut Script, app_key: Option<&str>, app_secret: Option<&str>) {
    let Some(first) = script.accounts.first_mut() else {
        return;
    };
    let old = first.app_key.clone();
    let mut acc = (**first).clone();
    if let Some(k) = app_key {
        acc.app_key = k.to_owned();
    }
    if let Some(s) = app_secret {
        acc.app_secret = s.to_owned();
    }
    let new = acc.app_key.clone();
    *first = Arc::new(acc);
    if old == new {
        return;
    }
    for t in &mut script.timeline {
        match &mut t.item {
            Item::Order(o) if o.account == old => o.account = new.clone(),
            Item::Close { target, .. } | Item::Drop { target }
                if target.account.as_deref() == Some(old.as_str()) =>
            {
                target.account = Some(new.clone());
            }
            _ => {}
        }
    }
}
