//! The application policy of the harness on top of `tether_net_drivers::tokio::LongPortServer`
//! (the WebSocket listener, the connection tasks and the machine task live in the drivers crate)

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tether_net::longport::{CloseCode, ServerConfig, ServerEvent, ServerStats, Status};
use tether_net_drivers::random_session_id;
use tether_net_drivers::tokio::{
    Grant, Listener, LongPortServer, ServerInput, ServerItem, ServerOptions,
};
use tokio::task::JoinHandle;

use crate::{PEERS, SESSIONS};

/// `Error.code` in the status-5 answer to a wrong token
const ERROR_CODE_BAD_TOKEN: u64 = 401;
/// Upgrade request targets kept for [`Running::upgrades`] (the first ones; bounded memory)
const MAX_RECORDED_UPGRADES: usize = 1024;

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

/// A running harness server; dropping it stops the listener and the machine
#[derive(Debug)]
pub struct Running {
    local_addr: SocketAddr,
    server: LongPortServer,
    upgrades: Arc<Mutex<Vec<String>>>,
    app: JoinHandle<()>,
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
        self.server.close_all(code, reason).await
    }

    /// The machine's counters
    pub async fn stats(&self) -> Option<ServerStats> {
        self.snapshot().await.map(|s| s.stats)
    }

    /// The machine's counters and table sizes
    pub async fn snapshot(&self) -> Option<Snapshot> {
        self.server.snapshot().await.map(|s| Snapshot {
            stats: s.stats,
            connections: s.connections,
            sessions: s.sessions,
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // the application task holds the last handle: the server shuts down with it
        self.app.abort();
    }
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Bind `config.listen` and start serving
///
/// # Errors
/// The bind error.
pub async fn start(config: Config) -> io::Result<Running> {
    let upgrades = Arc::new(Mutex::new(Vec::new()));
    let recorded = upgrades.clone();
    let verbose = config.verbose;
    let hook = Arc::new(move |target: &str, accepted: bool| {
        if verbose {
            let verdict = if accepted {
                "upgrade"
            } else {
                "refused upgrade"
            };
            eprintln!("{verdict} GET {target}");
        }
        if let Ok(mut v) = recorded.lock() {
            if v.len() < MAX_RECORDED_UPGRADES {
                v.push(target.to_owned());
            }
        }
    });
    let server_config = ServerConfig::new()
        .with_auth_timeout(config.auth_timeout)
        .with_heartbeat_timeout(config.heartbeat_timeout)
        .with_ws_ping_interval(config.ping_interval);
    let (server, mut events) = LongPortServer::bind_with::<PEERS, SESSIONS>(
        &[Listener::Ws(config.listen)],
        server_config,
        ServerOptions::default().with_upgrade_hook(hook),
    )
    .await?;
    let local_addr = server.local_addrs()[0];
    let handle = server.clone();
    let app = tokio::spawn(async move {
        while let Some(item) = events.next().await {
            on_item(&handle, &config, item).await;
        }
    });
    Ok(Running {
        local_addr,
        server,
        upgrades,
        app,
    })
}

/// The harness's policy: the token check, fresh random session ids, the echo
async fn on_item(server: &LongPortServer, config: &Config, item: ServerItem) {
    let log = |line: String| {
        if config.verbose {
            eprintln!("{line}");
        }
    };
    let ttl = i64::try_from(config.session_ttl.as_millis()).unwrap_or(i64::MAX);
    let grant = || {
        let connections = u32::try_from(PEERS).unwrap_or(u32::MAX);
        Grant::new(random_session_id(), unix_ms().saturating_add(ttl))
            .with_limit_online(connections, 0)
    };
    match item {
        ServerItem::Accepted {
            peer,
            remote,
            transport,
        } => log(format!("conn {peer}: {transport:?} from {remote}")),
        ServerItem::Input(ServerInput::Auth {
            peer,
            request_id,
            token,
            metadata,
        }) => {
            log(format!(
                "conn {peer}: auth request rid {request_id}, {} metadata entries",
                metadata.len()
            ));
            let r = if token == config.token {
                let g = grant();
                log(format!(
                    "conn {peer}: auth ok, session {}",
                    g.session_id().as_str()
                ));
                server.accept_auth(peer, g).await.map(|_| ())
            } else {
                log(format!("conn {peer}: auth rejected (wrong token)"));
                server
                    .reject_auth(
                        peer,
                        Status::Unauthenticated,
                        ERROR_CODE_BAD_TOKEN,
                        "invalid token",
                    )
                    .await
            };
            if let Err(e) = r {
                log(format!("conn {peer}: auth decision refused: {e}"));
            }
        }
        ServerItem::Input(ServerInput::Reconnect {
            peer,
            request_id,
            session_id,
            ..
        }) => {
            let g = grant();
            log(format!(
                "conn {peer}: reconnect rid {request_id}: {session_id} -> {}",
                g.session_id().as_str()
            ));
            if let Err(e) = server.accept_reconnect(peer, g).await {
                log(format!("conn {peer}: accept_reconnect failed: {e}"));
            }
        }
        ServerItem::Input(ServerInput::Request {
            peer,
            request_id,
            cmd,
            timeout,
            body,
            gzip,
            ..
        }) => {
            log(format!(
                "conn {peer}: request cmd {cmd} rid {request_id} timeout {} ms, {} body bytes{}",
                timeout.as_millis(),
                body.len(),
                if gzip { " (gzip)" } else { "" }
            ));
            let r = if gzip {
                server
                    .respond_gzip(peer, cmd, request_id, Status::Success, body)
                    .await
            } else {
                server
                    .respond(peer, cmd, request_id, Status::Success, body)
                    .await
            };
            if let Err(e) = r {
                log(format!("conn {peer}: respond failed: {e}"));
            }
        }
        ServerItem::Event(ServerEvent::Closed { peer, cause }) => {
            log(format!("conn {peer}: closed: {cause}"));
        }
        ServerItem::Event(ServerEvent::Connected { peer, expires, .. }) => {
            log(format!(
                "conn {peer}: session live until {expires} (unix ms)"
            ));
        }
        other => log(format!("{other:?}")),
    }
}
