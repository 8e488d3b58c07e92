//! Drive the LongPort client and server machines over non-blocking std TCP: the run loop of the
//! crate docs with real sockets (one input, then `tether_net::drain`, then a short sleep)
//!
//! Shared by `tests/longport_tcp_examples.rs` and `examples/longport_tcp_{server,client}.rs`
//! (included with `#[path]`). Every line the loops print goes through a `log` callback, one line
//! per event.
#![allow(dead_code)]

use std::cell::RefCell;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tether_net::longport::{
    Client, ClientApp, ClientConfig, ClientEvent, Credentials, Error, Grant, QuotaPolicy, Server,
    ServerApp, ServerConfig, ServerEvent, SessionId, Source, Status, Transport,
};
use tether_net::{drain, DrainError, Instant};

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

/// A fresh session id: 128 bits from the OS random source (session ids are bearer secrets)
pub fn random_session_id() -> SessionId {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source");
    SessionId::from_random(bytes)
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
    let mut server: Server<u32, 64, 256> = Server::with_capacities(ServerConfig::new());
    server.set_wall_clock(now(epoch), unix_ms());
    let conns: RefCell<Vec<Conn>> = RefCell::new(Vec::new());
    let mut next_id = 1u32;
    let mut report = ServerReport::default();
    let mut out = vec![0u8; MAX_PACKET];
    let mut shutting_down = false;
    loop {
        let t = now(epoch);
        if stop.load(Ordering::Relaxed) && !shutting_down {
            shutting_down = true;
            log("shutdown: Close{ServerShutdown} to every connection".into());
            let _ = server.shutdown(t, "server shutdown");
        }
        let mut busy = false;
        // 1. inputs: new connections, bytes, closed sockets, timers
        match listener.accept() {
            Ok((sock, peer)) => {
                sock.set_nonblocking(true)?;
                sock.set_nodelay(true)?;
                let id = next_id;
                next_id += 1;
                match server.handle_connected(t, id, Transport::Tcp, Source::from_ip(peer.ip())) {
                    Ok(()) => {
                        log(format!("conn {id}: connected from {peer}"));
                        report.connections += 1;
                        conns.borrow_mut().push(Conn {
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
        for c in conns.borrow_mut().iter_mut() {
            let open = read_some(&mut c.sock, &mut c.rx).unwrap_or(false);
            while !c.rx.is_empty() {
                let r = match server.handle_input(t, c.id, &c.rx) {
                    Ok(r) => r,
                    // keep the bytes and feed them again later: a login decision is pending,
                    // the application still owes answers, or the machine's refusals wait to be
                    // sent (this loop answers every request at once, so the last two are rare)
                    Err(Error::AuthPending | Error::TooManyInFlight | Error::QueueFull) => break,
                    Err(_) => {
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
                            let expires = server.wall_clock_ms(t).unwrap_or(0) + SESSION_TTL_MS;
                            let grant =
                                Grant::new(random_session_id(), expires).with_limit_online(10, 1);
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
                        let expires = server.wall_clock_ms(t).unwrap_or(0) + SESSION_TTL_MS;
                        let grant =
                            Grant::new(random_session_id(), expires).with_limit_online(10, 1);
                        let _ = server.accept_reconnect(t, c.id, grant);
                    }
                    Some(ServerApp::Request {
                        request_id,
                        cmd,
                        body,
                        ..
                    }) => {
                        log(format!(
                            "conn {}: request {request_id} cmd {cmd}, {} bytes: echo",
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
                        server.respond(t, c.id, cmd, rid, Status::Success, &body, &mut out)
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
            if let Some(c) = conns.borrow_mut().iter_mut().find(|c| c.id == to) {
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
        // 2. drain: every frame goes to its socket; `Closed` means close that socket now
        let (mut complete, mut sent) = (false, false);
        drain(
            &mut server,
            t,
            &mut out,
            |tx, bytes| {
                sent = true;
                if let Some(c) = conns.borrow_mut().iter_mut().find(|c| c.id == tx.to) {
                    let _ = write_all(&mut c.sock, bytes);
                }
                Ok::<(), io::Error>(())
            },
            |_server, e| {
                busy = true;
                log(format!("event: {e:?}"));
                match e {
                    ServerEvent::Closed { peer, .. } => conns.borrow_mut().retain(|c| {
                        if c.id == peer {
                            let _ = c.sock.shutdown(Shutdown::Both);
                        }
                        c.id != peer
                    }),
                    ServerEvent::ShutdownComplete => complete = true,
                    _ => {}
                }
            },
        )
        .map_err(|e| io::Error::other(e.to_string()))?;
        busy |= sent;
        if complete {
            return Ok(report);
        }
        // 3. sleep a little when idle
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
/// for its echo and one heartbeat RTT (heartbeat every `heartbeat`, at least 1 s), then close
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
    // a refusal for the account's connection quota (status 6) stops the client (no token loop)
    let config = ClientConfig::tcp()
        .with_heartbeat_interval(Some(heartbeat))
        .with_quota_policy(QuotaPolicy::Stop);
    let mut client = Client::new(config);
    client.set_wall_clock(now(epoch), unix_ms());
    client
        .connect(now(epoch), Credentials::new(token))
        .map_err(|e| io::Error::other(e.to_string()))?;
    let sock: RefCell<Option<TcpStream>> = RefCell::new(None);
    let mut rx: Vec<u8> = Vec::new();
    let mut out = vec![0u8; MAX_PACKET];
    let mut req_buf = vec![0u8; MAX_PACKET];
    let (mut session, mut echo, mut rtt) = (None, None, None);
    let mut request = None;
    let mut refusal = None;
    let mut closing = false;
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
        if let Some(s) = sock.borrow_mut().as_mut() {
            let open = read_some(s, &mut rx)?;
            while !rx.is_empty() {
                let Ok(r) = client.handle_input(t, (), &rx) else {
                    break; // QueueFull: the drain below empties the queues, then we retry
                };
                busy = true;
                match r.app() {
                    Some(ClientApp::Response {
                        request_id, body, ..
                    }) if Some(*request_id) == request => {
                        log(format!(
                            "echo: {request_id} {:?}",
                            String::from_utf8_lossy(body)
                        ));
                        echo = Some(body.to_vec());
                    }
                    // the refusal's message, borrowed from `rx`: keep a copy for the error
                    Some(ClientApp::LoginError { message, .. }) => {
                        refusal = Some(message.to_string());
                    }
                    // a server heartbeat too big for the client's own echo slots: echo it here
                    Some(ClientApp::HeartbeatEcho {
                        request_id,
                        body,
                        gzip,
                    }) => {
                        let mut echo_buf = vec![0u8; 16 + body.len()];
                        if let Ok(tx) =
                            client.echo_heartbeat(t, *request_id, body, *gzip, &mut echo_buf)
                        {
                            if let Some(s) = sock.borrow_mut().as_mut() {
                                write_all(s, &echo_buf[..tx.len])?;
                            }
                        }
                    }
                    _ => {}
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
        if echo.is_some() && rtt.is_some() && !closing {
            closing = true;
            client.close(t, "done").expect("open");
        }
        // 2. drain: frames to the socket; commands issued while handling an event (the login
        //    after `handle_connected`, the request after `Connected`) go out in the same drain
        let (mut result, mut sent) = (None, false);
        let drained = drain(
            &mut client,
            t,
            &mut out,
            |_tx, bytes| {
                sent = true;
                match sock.borrow_mut().as_mut() {
                    Some(s) => write_all(s, bytes),
                    None => Ok(()),
                }
            },
            |client, e| {
                busy = true;
                log(format!("event: {e:?}"));
                if result.is_some() {
                    return;
                }
                match e {
                    ClientEvent::ConnectTransport { .. } => {
                        let opened = TcpStream::connect(addr).and_then(|s| {
                            s.set_nodelay(true)?;
                            s.set_nonblocking(true)?;
                            Ok(s)
                        });
                        match opened {
                            Ok(s) => {
                                *sock.borrow_mut() = Some(s);
                                rx.clear();
                                client.handle_connected(t).expect("requested");
                            }
                            Err(e) => result = Some(Err(e)),
                        }
                    }
                    ClientEvent::Connected { .. } => {
                        session = client.session_id().map(str::to_string);
                        match client.send_request(
                            t,
                            CMD_ECHO,
                            Duration::from_secs(5),
                            body,
                            &mut req_buf,
                        ) {
                            Ok((id, tx)) => {
                                log(format!(
                                    "request: {id} cmd {CMD_ECHO}, {} bytes",
                                    body.len()
                                ));
                                // a request is written by `send_request`: send it right away
                                if let Some(s) = sock.borrow_mut().as_mut() {
                                    if let Err(e) = write_all(s, &req_buf[..tx.len]) {
                                        result = Some(Err(e));
                                    }
                                }
                                request = Some(id);
                            }
                            Err(e) => result = Some(Err(io::Error::other(e.to_string()))),
                        }
                    }
                    ClientEvent::HeartbeatRtt { rtt: d } => rtt = rtt.or(Some(d)),
                    ClientEvent::LoginFailed { .. } => {
                        let message = refusal.take().unwrap_or_default();
                        result = Some(Err(io::Error::new(
                            ErrorKind::PermissionDenied,
                            format!("login refused: {message}"),
                        )));
                    }
                    ClientEvent::Disconnected { .. } => {
                        if let Some(s) = sock.borrow_mut().take() {
                            let _ = s.shutdown(Shutdown::Both);
                        }
                        rx.clear();
                    }
                    ClientEvent::Closed { .. } => {
                        if let Some(s) = sock.borrow_mut().take() {
                            let _ = s.shutdown(Shutdown::Both);
                        }
                        result = Some(match (session.take(), echo.take(), rtt) {
                            (Some(session_id), Some(echo), Some(rtt)) => Ok(ClientReport {
                                session_id,
                                echo,
                                rtt,
                            }),
                            _ => Err(io::Error::other("closed before the echo and RTT")),
                        });
                    }
                    _ => {}
                }
            },
        );
        busy |= sent;
        match drained {
            Ok(()) => {}
            Err(DrainError::Send(e)) => return Err(e),
            Err(DrainError::BufferTooSmall(e)) => return Err(io::Error::other(e.to_string())),
        }
        if let Some(r) = result {
            return r;
        }
        // the end of the stream is an input too, after what arrived before it
        if eof && sock.borrow().is_some() {
            log("server closed the connection".into());
            *sock.borrow_mut() = None;
            rx.clear();
            client.handle_closed(t, ());
            continue;
        }
        // 3. sleep until the next deadline or a little while
        if !busy {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
