//! Drive the LongPort client and server machines over blocking std TCP: the run loop of the
//! crate docs with real sockets
//!
//! Shared by `tests/longport_tcp_examples.rs` and `examples/longport_tcp_{server,client}.rs`
//! (included with `#[path]`). Every line the loops print goes through a `log` callback, one line
//! per event.
#![allow(dead_code)]

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tether_net::longport::client::App as ClientApp;
use tether_net::longport::control::SessionGrant;
use tether_net::longport::deframe::Transport;
use tether_net::longport::server::{App as ServerApp, InputError, Server, ServerConfig};
use tether_net::longport::wire::Status;
use tether_net::longport::{ClientConfig, ClientEvent, Credentials, DefaultClient};
use tether_net::{Instant, Machine};

/// Business command the client sends and the server echoes (QueryUserQuoteProfile's number)
pub const CMD_ECHO: u8 = 4;
/// Session lifetime the server grants
pub const SESSION_TTL_MS: i64 = 3_600_000;
/// Largest packet either loop accepts (header + body)
const MAX_PACKET: usize = 64 * 1024;

/// Monotonic machine time since `epoch`
fn now(epoch: std::time::Instant) -> Instant {
    Instant::from_micros(epoch.elapsed().as_micros() as u64)
}

/// Unix time in milliseconds
fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Write all of `buf` to a non-blocking socket, waiting out `WouldBlock`
fn write_all(sock: &mut TcpStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match sock.write(buf) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_micros(200))
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Read what is available into `rx`; `Ok(false)` when the peer closed the stream
fn read_some(sock: &mut TcpStream, rx: &mut Vec<u8>) -> io::Result<bool> {
    let mut chunk = [0u8; 4096];
    loop {
        match sock.read(&mut chunk) {
            Ok(0) => return Ok(false),
            Ok(n) => rx.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

/// What the server loop counted
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ServerReport {
    /// Connections accepted
    pub connections: u32,
    /// Auths accepted
    pub authenticated: u32,
    /// Auths rejected (wrong token)
    pub rejected: u32,
    /// Business requests echoed
    pub echoed: u32,
}

struct Conn {
    id: u32,
    sock: TcpStream,
    rx: Vec<u8>,
}

/// Accept LongPort TCP clients on `listener` until `stop` is set, then close every connection
/// with `Close{ServerShutdown}`
///
/// Auth succeeds with `token` (a fixed token stands in for the one-time password check) and
/// grants session `s-N`; business requests are echoed with status 0.
pub fn serve(
    listener: TcpListener,
    token: &str,
    stop: &AtomicBool,
    mut log: impl FnMut(String),
) -> io::Result<ServerReport> {
    listener.set_nonblocking(true)?;
    let epoch = std::time::Instant::now();
    let config = ServerConfig {
        wall_offset_ms: unix_ms() - now(epoch).as_millis() as i64,
        ..ServerConfig::default()
    };
    let mut server: Server<u32, 64, 256> = Server::new(config);
    let mut conns: Vec<Conn> = Vec::new();
    let mut next_id = 1u32;
    let mut report = ServerReport::default();
    let mut out = vec![0u8; MAX_PACKET];
    let mut shutting_down = false;
    loop {
        let t = now(epoch);
        if stop.load(Ordering::Relaxed) && !shutting_down {
            shutting_down = true;
            log("shutdown: Close{ServerShutdown} to every connection".into());
            server.shutdown(t);
        }
        if shutting_down && conns.is_empty() {
            return Ok(report);
        }
        let mut busy = false;
        // 1. inputs: new connections, bytes, closed sockets, timers
        match listener.accept() {
            Ok((sock, peer)) => {
                sock.set_nonblocking(true)?;
                sock.set_nodelay(true)?;
                let id = next_id;
                next_id += 1;
                match server.handle_connected(t, id, Transport::Tcp) {
                    Ok(()) => {
                        log(format!("conn {id}: connected from {peer}"));
                        report.connections += 1;
                        conns.push(Conn {
                            id,
                            sock,
                            rx: Vec::new(),
                        });
                    }
                    Err(e) => log(format!("conn {id}: refused: {e}")),
                }
                busy = true;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        let mut gone = Vec::new();
        // frames in send order: (connection, bytes)
        let mut outbox: Vec<(u32, Vec<u8>)> = Vec::new();
        for c in conns.iter_mut() {
            let open = read_some(&mut c.sock, &mut c.rx).unwrap_or(false);
            while !c.rx.is_empty() {
                let r = match server.handle_input(t, c.id, &c.rx) {
                    Ok(r) => r,
                    Err(InputError::AuthPending) => break,
                    Err(InputError::UnknownConn) => {
                        c.rx.clear();
                        break;
                    }
                };
                busy = true;
                let consumed = r.bytes_consumed();
                // act on the app data before the next packet is fed
                let mut reply = None;
                match r.app().copied() {
                    Some(ServerApp::Auth { token: got, .. }) => {
                        if got == token {
                            report.authenticated += 1;
                            let session = format!("s-{}", report.authenticated);
                            let grant = SessionGrant {
                                session_id: &session,
                                expires: server.wall_clock_ms() + SESSION_TTL_MS,
                                limit: 10,
                                online: 1,
                            };
                            let _ = server.accept_auth(t, c.id, grant);
                        } else {
                            report.rejected += 1;
                            let _ = server.reject_auth(
                                t,
                                c.id,
                                Status::Unauthenticated,
                                401,
                                "invalid token",
                            );
                        }
                    }
                    Some(ServerApp::Reconnect { .. }) => {
                        let session = format!("s-r{}", next_id);
                        let grant = SessionGrant {
                            session_id: &session,
                            expires: server.wall_clock_ms() + SESSION_TTL_MS,
                            limit: 10,
                            online: 1,
                        };
                        let _ = server.accept_reconnect(t, c.id, grant);
                    }
                    Some(ServerApp::Request {
                        request_id,
                        cmd,
                        body,
                        ..
                    }) => {
                        log(format!(
                            "conn {}: request #{request_id} cmd {cmd}, {} bytes: echo",
                            c.id,
                            body.len()
                        ));
                        reply = Some((request_id, cmd, body.to_vec()));
                    }
                    Some(ServerApp::HeartbeatEcho {
                        request_id, body, ..
                    }) => reply = Some((request_id, 1, body.to_vec())),
                    Some(_) | None => {}
                }
                let need = r.needed().is_some();
                c.rx.drain(..consumed);
                if let Some((rid, cmd, body)) = reply {
                    // a control response (auth) may still be queued: it goes first
                    while let Some(tx) = server.poll_transmit(t, &mut out).expect("buffer") {
                        outbox.push((tx.to, out[..tx.len].to_vec()));
                    }
                    if let Ok(tx) =
                        server.respond(t, c.id, rid, cmd, Status::Success, &body, &mut out)
                    {
                        if cmd != 1 {
                            report.echoed += 1;
                        }
                        outbox.push((tx.to, out[..tx.len].to_vec()));
                    }
                }
                if need || consumed == 0 {
                    break;
                }
            }
            if !open {
                gone.push(c.id);
            }
        }
        for (to, bytes) in outbox {
            if let Some(c) = conns.iter_mut().find(|c| c.id == to) {
                if write_all(&mut c.sock, &bytes).is_err() {
                    gone.push(to);
                }
            }
        }
        for id in gone.drain(..) {
            server.handle_closed(t, id);
        }
        if server.poll_timeout().is_some_and(|d| d <= t) {
            server.handle_timeout(t);
        }
        // 2. transmits
        while let Some(tx) = server.poll_transmit(t, &mut out).expect("buffer") {
            busy = true;
            if let Some(c) = conns.iter_mut().find(|c| c.id == tx.to) {
                let _ = write_all(&mut c.sock, &out[..tx.len]);
            }
        }
        // 3. events; close the sockets of connections the machine has forgotten (after
        //    `Disconnect`, or once `PeerClosed` for a lost transport was polled)
        while let Some(e) = server.poll_event() {
            busy = true;
            log(format!("event: {e:?}"));
        }
        conns.retain(|c| {
            let keep = server.state(c.id).is_some();
            if !keep {
                let _ = c.sock.shutdown(Shutdown::Both);
            }
            keep
        });
        // 4. sleep a little when idle
        if !busy {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

/// What one client session did
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientReport {
    /// Session id granted by the server
    pub session_id: String,
    /// Body of the echo response
    pub echo: Vec<u8>,
    /// Round-trip time of the first heartbeat
    pub rtt: Duration,
}

/// Connect to `addr`, authenticate with `token`, send one business request with `body`, wait
/// for its echo and one heartbeat RTT (heartbeat every `heartbeat`), then close
///
/// # Errors
/// A socket error, a refused login (`PermissionDenied` with the server's message) or no
/// progress within `deadline`.
pub fn run_client(
    addr: SocketAddr,
    token: &str,
    body: &[u8],
    heartbeat: Duration,
    deadline: Duration,
    mut log: impl FnMut(String),
) -> io::Result<ClientReport> {
    let epoch = std::time::Instant::now();
    let mut config = ClientConfig::tcp();
    config.heartbeat_interval = Some(heartbeat);
    let mut client = DefaultClient::new(config);
    client.set_wall_clock(now(epoch), unix_ms());
    client
        .connect(now(epoch), Credentials::new(token))
        .map_err(|e| io::Error::other(e.to_string()))?;
    let mut sock: Option<TcpStream> = None;
    let mut rx: Vec<u8> = Vec::new();
    let mut out = vec![0u8; MAX_PACKET];
    let (mut session, mut echo, mut rtt) = (None, None, None);
    let mut request = None;
    loop {
        let t = now(epoch);
        if epoch.elapsed() > deadline {
            return Err(io::Error::new(
                ErrorKind::TimedOut,
                "no echo and RTT in time",
            ));
        }
        let mut busy = false;
        let mut eof = false;
        // 1. inputs
        if let Some(s) = sock.as_mut() {
            let open = read_some(s, &mut rx)?;
            while !rx.is_empty() {
                let Ok(r) = client.handle_input(t, (), &rx) else {
                    break; // Busy: drain events below, then retry
                };
                busy = true;
                if let Some(ClientApp::Response {
                    request_id, body, ..
                }) = r.app()
                {
                    if Some(*request_id) == request {
                        log(format!(
                            "echo: {request_id} {:?}",
                            String::from_utf8_lossy(body)
                        ));
                        echo = Some(body.to_vec());
                    }
                }
                let consumed = r.bytes_consumed();
                let need = r.needed().is_some();
                rx.drain(..consumed);
                if need || consumed == 0 {
                    break;
                }
            }
            eof = !open;
        }
        if client.poll_timeout().is_some_and(|d| d <= t) {
            client.handle_timeout(t);
        }
        if echo.is_some() && rtt.is_some() {
            client.close(t); // later calls do nothing
        }
        // 2. transmits
        while let Some(tx) = client.poll_transmit(t, &mut out).expect("buffer") {
            busy = true;
            if let Some(s) = sock.as_mut() {
                write_all(s, &out[..tx.len])?;
            }
        }
        // 3. events
        while let Some(e) = client.poll_event() {
            busy = true;
            log(format!("event: {e:?}"));
            match e {
                ClientEvent::ConnectTransport { .. } => {
                    let s = TcpStream::connect(addr)?;
                    s.set_nodelay(true)?;
                    s.set_nonblocking(true)?;
                    sock = Some(s);
                    rx.clear();
                    client
                        .handle_connected(now(epoch))
                        .map_err(|e| io::Error::other(e.to_string()))?;
                }
                ClientEvent::Authenticated { session_id, .. } => {
                    session = Some(session_id.to_string());
                    let (id, tx) = client
                        .send_request(now(epoch), CMD_ECHO, Duration::from_secs(5), body, &mut out)
                        .map_err(|e| io::Error::other(e.to_string()))?;
                    log(format!(
                        "request: {id} cmd {CMD_ECHO}, {} bytes",
                        body.len()
                    ));
                    if let Some(s) = sock.as_mut() {
                        write_all(s, &out[..tx.len])?;
                    }
                    request = Some(id);
                }
                ClientEvent::HeartbeatRtt { rtt: d } => rtt = rtt.or(Some(d)),
                ClientEvent::LoginFailed { message, .. } => {
                    return Err(io::Error::new(
                        ErrorKind::PermissionDenied,
                        format!("login refused: {message}"),
                    ));
                }
                ClientEvent::Disconnected { .. } => {
                    if let Some(s) = sock.take() {
                        let _ = s.shutdown(Shutdown::Both);
                    }
                    rx.clear();
                }
                ClientEvent::Closed { .. } => {
                    if let Some(s) = sock.take() {
                        let _ = s.shutdown(Shutdown::Both);
                    }
                    return match (session, echo, rtt) {
                        (Some(session_id), Some(echo), Some(rtt)) => Ok(ClientReport {
                            session_id,
                            echo,
                            rtt,
                        }),
                        _ => Err(io::Error::other("closed before the echo and RTT")),
                    };
                }
                _ => {}
            }
        }
        // the end of the stream is an input too, after what arrived before it
        if eof && sock.is_some() {
            log("server closed the connection".into());
            sock = None;
            rx.clear();
            client.handle_closed(t, ());
            continue;
        }
        // 4. sleep until the next deadline or a little while
        if !busy {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
