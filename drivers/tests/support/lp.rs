//! Our tokio LongPort server with the test policy: token `TOKEN`, random session ids, echo,
//! a gzip-flagged echo (`CMD_GZIP_ECHO`) and one command (`CMD_SILENT`) that is never answered
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tether_net::longport::{ServerConfig, Status};
use tether_net_drivers::random_session_id;
use tether_net_drivers::tokio::{
    Grant, Listener, LongPortServer, ServerInput, ServerItem, ServerOptions,
};

pub const TOKEN: &str = "test-token";
/// Length of the other token the test server accepts: [`long_token`]
pub const LONG_TOKEN_LEN: usize = 3000;

/// A token longer than the client driver's 1 KiB frame buffer (real tokens are JWT-sized), which
/// the test server accepts too
pub fn long_token() -> String {
    "t".repeat(LONG_TOKEN_LEN)
}
pub const CMD_ECHO: u8 = 4;
/// Requests with this command are never answered
pub const CMD_SILENT: u8 = 9;
/// Requests with this command are echoed with the gzip flag set (`respond_gzip`)
pub const CMD_GZIP_ECHO: u8 = 5;
/// A bound for every await of the tests
pub const STEP: Duration = Duration::from_secs(10);

pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A running test server: its handle, addresses and the log of every item it saw
pub struct TestServer {
    pub server: LongPortServer,
    pub addrs: Vec<SocketAddr>,
    pub log: Arc<Mutex<Vec<ServerItem>>>,
}

impl TestServer {
    pub async fn start(
        listeners: &[Listener],
        config: ServerConfig,
        options: ServerOptions,
    ) -> TestServer {
        let (server, mut events) = LongPortServer::bind(listeners, config, options)
            .await
            .expect("bind 127.0.0.1");
        let addrs = server.local_addrs().to_vec();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (s, l) = (server.clone(), log.clone());
        tokio::spawn(async move {
            while let Some(item) = events.next().await {
                l.lock().unwrap().push(item.clone());
                let expires = unix_ms() + 3_600_000;
                match item {
                    ServerItem::Input(ServerInput::Auth { peer, token, .. }) => {
                        if token == TOKEN || token == long_token() {
                            let _ = s
                                .accept_auth(peer, Grant::new(random_session_id(), expires))
                                .await;
                        } else {
                            let _ = s
                                .reject_auth(peer, Status::Unauthenticated, 401, "invalid token")
                                .await;
                        }
                    }
                    ServerItem::Input(ServerInput::Reconnect { peer, .. }) => {
                        let _ = s
                            .accept_reconnect(peer, Grant::new(random_session_id(), expires))
                            .await;
                    }
                    ServerItem::Input(ServerInput::Request {
                        peer,
                        request_id,
                        cmd: CMD_GZIP_ECHO,
                        body,
                        ..
                    }) => {
                        let _ = s
                            .respond_gzip(peer, CMD_GZIP_ECHO, request_id, Status::Success, body)
                            .await;
                    }
                    ServerItem::Input(ServerInput::Request {
                        peer,
                        request_id,
                        cmd,
                        body,
                        ..
                    }) if cmd != CMD_SILENT => {
                        let _ = s
                            .respond(peer, cmd, request_id, Status::Success, body)
                            .await;
                    }
                    _ => {}
                }
            }
        });
        TestServer { server, addrs, log }
    }

    /// [`TestServer::start`] on one listener with the default configuration and options
    pub async fn on(listener: Listener) -> TestServer {
        Self::start(&[listener], ServerConfig::new(), ServerOptions::default()).await
    }

    /// Shut the server down (within `STEP`)
    pub async fn shutdown(&self) {
        tokio::time::timeout(STEP, self.server.shutdown("done"))
            .await
            .expect("shutdown in time")
            .expect("shutdown");
    }

    /// Peers that logged in, in order
    pub fn connected_peers(&self) -> Vec<u64> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|i| match i {
                ServerItem::Event(tether_net::longport::ServerEvent::Connected {
                    peer, ..
                }) => Some(*peer),
                _ => None,
            })
            .collect()
    }

    pub fn saw(&self, f: impl Fn(&ServerItem) -> bool) -> bool {
        self.log.lock().unwrap().iter().any(f)
    }
}

/// A self-signed certificate for `localhost`, generated here: (server config, client roots)
pub fn self_signed() -> (Arc<rustls::ServerConfig>, rustls::RootCertStore) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("rcgen");
    let cert = ck.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("a valid certificate");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    (Arc::new(config), roots)
}
