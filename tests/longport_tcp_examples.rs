//! The LongPort TCP drivers the examples use (`tether_net_drivers::blocking::{TcpServer,
//! TcpClient}`) over real loopback sockets, with the examples' policy: auth with a fixed token,
//! an echoed business request and a heartbeat RTT; a wrong token is refused
#![cfg(not(target_family = "wasm"))]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tether_net::longport::{
    Client, ClientApp, ClientConfig, ClientEvent, Credentials, ServerConfig, ServerEvent, Status,
};
use tether_net_drivers::blocking::{Grant, Input, ServerInput, ServerItem, TcpClient, TcpServer};
use tether_net_drivers::random_session_id;

const CMD_ECHO: u8 = 4;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct ServerReport {
    connections: u32,
    authenticated: u32,
    rejected: u32,
    echoed: u32,
}

/// The example server's policy until `stop`, then a shutdown; returns what it counted
fn serve(
    mut server: TcpServer,
    token: &str,
    stop: &AtomicBool,
    log: &Mutex<Vec<String>>,
) -> ServerReport {
    let mut r = ServerReport::default();
    let mut shutting_down = false;
    loop {
        if stop.load(Ordering::Relaxed) && !shutting_down {
            shutting_down = true;
            server
                .command(|ctl| ctl.shutdown("server shutdown"))
                .unwrap();
        }
        let done = server
            .run(Duration::from_millis(50), |ctl, item| {
                log.lock().unwrap().push(format!("{item:?}"));
                match item {
                    ServerItem::Accepted { .. } => r.connections += 1,
                    ServerItem::Input(ServerInput::Auth { peer, token: t, .. }) => {
                        if t == token {
                            r.authenticated += 1;
                            let grant =
                                Grant::new(random_session_id(), ctl.wall_clock_ms() + 3_600_000);
                            ctl.accept_auth(peer, grant).unwrap();
                        } else {
                            r.rejected += 1;
                            ctl.reject_auth(peer, Status::Unauthenticated, 401, "invalid token")
                                .unwrap();
                        }
                    }
                    ServerItem::Input(ServerInput::Request {
                        peer,
                        request_id,
                        cmd,
                        body,
                        ..
                    }) => {
                        r.echoed += 1;
                        ctl.respond(peer, cmd, request_id, Status::Success, &body)
                            .unwrap();
                    }
                    ServerItem::Event(ServerEvent::ShutdownComplete) => return Some(()),
                    _ => {}
                }
                None
            })
            .unwrap();
        if done.is_some() {
            return r;
        }
    }
}

/// What one client session did
struct ClientReport {
    session_id: String,
    echo: Vec<u8>,
    rtt: Duration,
}

/// The example client: auth, one echoed request, one heartbeat RTT, close
fn run_client(
    addr: std::net::SocketAddr,
    token: &str,
    body: &[u8],
) -> Result<ClientReport, String> {
    let config = ClientConfig::tcp().with_heartbeat_interval(Some(Duration::from_millis(50)));
    let mut d = TcpClient::new(Client::new(config), addr).unwrap();
    d.command(|c, now| c.connect(now, Credentials::new(token)))
        .unwrap();
    let (mut echo, mut rtt, mut refusal, mut events) = (None, None, None, Vec::new());
    let mut requested = false;
    let end = std::time::Instant::now() + Duration::from_secs(20);
    while echo.is_none() || rtt.is_none() {
        if std::time::Instant::now() > end {
            return Err(format!("no echo and RTT in time: {events:?}"));
        }
        let stop = d
            .run(Duration::from_millis(100), |_, _, input| match input {
                Input::Event(e) => {
                    events.push(e);
                    match e {
                        ClientEvent::HeartbeatRtt { rtt: r } => rtt = rtt.or(Some(r)),
                        ClientEvent::LoginFailed { .. } => return Some(()),
                        _ => {}
                    }
                    None
                }
                Input::App(_, ClientApp::Response { body, .. }) => {
                    echo = Some(body.to_vec());
                    None
                }
                Input::App(_, ClientApp::LoginError { message, .. }) => {
                    refusal = Some(message.to_string());
                    None
                }
                Input::App(..) => None,
            })
            .unwrap();
        if stop.is_some() {
            return Err(format!("login refused: {}", refusal.unwrap_or_default()));
        }
        if !requested && d.machine().is_connected() {
            requested = true;
            d.request(CMD_ECHO, Duration::from_secs(5), body).unwrap();
        }
    }
    let session_id = d.machine().session_id().unwrap().to_string();
    d.command(|c, now| c.close(now, "done")).unwrap();
    let closed = d
        .run(Duration::from_secs(1), |_, _, input| match input {
            Input::Event(ClientEvent::Closed { cause }) => Some(cause),
            _ => None,
        })
        .unwrap();
    assert!(closed.is_some(), "Closed after close");
    assert!(!d.is_open(), "socket closed with the machine");
    Ok(ClientReport {
        session_id,
        echo: echo.unwrap(),
        rtt: rtt.unwrap(),
    })
}

#[test]
#[cfg_attr(
    target_os = "wasi",
    ignore = "real TCP sockets and threads: not on WASI"
)]
fn client_and_server_loops_over_loopback_tcp() {
    let server = TcpServer::bind("127.0.0.1:0", ServerConfig::new()).unwrap();
    let addr = server.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let server_log = Arc::new(Mutex::new(Vec::<String>::new()));
    let server = {
        let (stop, log) = (stop.clone(), server_log.clone());
        std::thread::spawn(move || serve(server, "secret", &stop, &log))
    };
    let report = run_client(addr, "secret", b"ping over tcp").unwrap();
    assert_eq!(report.session_id.len(), 32, "128 random bits in hex");
    assert_eq!(report.echo, b"ping over tcp");
    assert!(
        report.rtt < Duration::from_secs(1),
        "loopback rtt {:?}",
        report.rtt
    );

    let err = run_client(addr, "wrong", b"x").err().expect("refused");
    assert!(err.contains("invalid token"), "{err}");

    stop.store(true, Ordering::Relaxed);
    let r = server.join().unwrap();
    assert_eq!(
        (r.connections, r.authenticated, r.rejected, r.echoed),
        (2, 1, 1, 1)
    );
    let log = server_log.lock().unwrap();
    assert!(log.iter().any(|l| l.contains("Connected")), "{log:#?}");
    assert!(log.iter().any(|l| l.contains("LoginRejected")), "{log:#?}");
    assert!(
        log.iter().any(|l| l.contains("ShutdownComplete")),
        "{log:#?}"
    );
}
