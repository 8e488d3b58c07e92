//! LongPort profile: a client and a server exchanging TCP bytes in memory
//!
//! Handshake + Auth accepted by the application, one client heartbeat echoed by the server
//! with its RTT measured over a counted virtual clock, one business request answered with
//! `respond()`, then a server shutdown whose Close push reaches the client.

use heapless::{String, Vec};
use tether_net::longport::{
    Client, ClientApp as LpClientApp, ClientConfig, ClientEvent, ClientState, CloseCause,
    CloseCode, Credentials, Error, Grant, LoginKind, RequestId, Server, ServerApp as LpServerApp,
    ServerConfig, ServerEvent, ServerState, SessionId, Source, Status, Transport,
};
use tether_net::{Duration, FrameKind, Instant};

use crate::clock::VClock;
use crate::runner::{Fail, Runner, Step, StepResult};
use crate::{ensure, ensure_eq, try_step};

/// The connection id the server's caller uses
const CONN: u8 = 3;
/// One-time password the client presents and the application checks
const TOKEN: &str = "fw-one-time-token";
/// Session the application grants
/// The session id's 128 bits: a real firmware draws them from its hardware random number
/// generator (QEMU's lm3s6965evb board has none); the machine never makes them up
const SESSION_RANDOM: [u8; 16] = *b"fw-session-1\x00\x00\x00\x01";
/// Their text on the wire (lowercase hex)
const SESSION: &str = "66772d73657373696f6e2d3100000001";
/// Absolute Unix ms expiry of the session
const EXPIRES: i64 = 1_900_000_000_000;
/// A business command (anything above the control commands 0..=3)
const CMD_ECHO: u8 = 42;
/// Body of the business request
const BODY: &[u8] = b"quote?symbol=700.HK";
/// One-way delay of the in-memory link in the heartbeat step
const LINK_DELAY: Duration = Duration::from_millis(15);
/// The RTT the client must report: one delay each way
#[cfg(not(feature = "break-step"))]
const EXPECTED_RTT: Duration = Duration::from_millis(30);
#[cfg(feature = "break-step")]
const EXPECTED_RTT: Duration = Duration::from_millis(31);

/// What the server application was handed (copied out of the stream buffer)
#[derive(Debug, PartialEq, Eq)]
enum ServerApp {
    Auth {
        token: String<32>,
    },
    Request {
        request_id: RequestId,
        cmd: u8,
        timeout: Duration,
        body: Vec<u8, 32>,
    },
    Other,
}

/// What the client application was handed
#[derive(Debug, PartialEq, Eq)]
enum ClientApp {
    Response {
        request_id: RequestId,
        cmd: u8,
        status: Status,
        body: Vec<u8, 32>,
    },
    /// A Close push: its code and reason (borrowed in the input, copied here)
    Close {
        code: CloseCode,
        reason: String<32>,
    },
    Other,
}

type LpServer = Server<u8, 4, 8>;

struct World {
    clock: VClock,
    client: Client,
    server: LpServer,
    /// Client -> server TCP bytes not yet consumed by the server
    c2s: Vec<u8, 512>,
    /// Server -> client TCP bytes not yet consumed by the client
    s2c: Vec<u8, 512>,
    out: [u8; 256],
    client_events: Vec<ClientEvent, 4>,
    server_events: Vec<ServerEvent<u8>, 4>,
    client_apps: Vec<ClientApp, 4>,
    server_apps: Vec<ServerApp, 4>,
    bytes_c2s: usize,
    bytes_s2c: usize,
}

fn drop_front<const N: usize>(buf: &mut Vec<u8, N>, n: usize) {
    let n = n.min(buf.len());
    let rest = buf.len() - n;
    buf.copy_within(n.., 0);
    buf.truncate(rest);
}

fn copy<const N: usize>(bytes: &[u8]) -> Result<Vec<u8, N>, Fail> {
    Vec::from_slice(bytes).map_err(|_| {
        Fail::new(
            line!(),
            format_args!("{} bytes do not fit the log", bytes.len()),
        )
    })
}

impl World {
    fn new() -> Self {
        World {
            clock: VClock::new(Instant::from_secs(1)),
            client: Client::new(ClientConfig::tcp()),
            server: LpServer::with_capacities(ServerConfig::new()),
            c2s: Vec::new(),
            s2c: Vec::new(),
            out: [0; 256],
            client_events: Vec::new(),
            server_events: Vec::new(),
            client_apps: Vec::new(),
            server_apps: Vec::new(),
            bytes_c2s: 0,
            bytes_s2c: 0,
        }
    }

    /// Client transmits -> c2s; returns how many frames were handed out
    fn flush_client(&mut self) -> Result<u32, Fail> {
        let now = self.clock.now();
        let mut n = 0;
        while let Some(t) = try_step!(crate::stack_call!(
            "client.poll_transmit",
            self.client.poll_transmit(now, &mut self.out)
        )) {
            ensure_eq!(t.kind, FrameKind::Stream);
            ensure!(
                self.c2s.extend_from_slice(&self.out[..t.len]).is_ok(),
                "c2s pipe full"
            );
            self.bytes_c2s += t.len;
            n += 1;
        }
        Ok(n)
    }

    /// Server transmits -> s2c; returns how many frames were handed out
    fn flush_server(&mut self) -> Result<u32, Fail> {
        let now = self.clock.now();
        let mut n = 0;
        while let Some(t) = try_step!(crate::stack_call!(
            "server.poll_transmit",
            self.server.poll_transmit(now, &mut self.out)
        )) {
            ensure_eq!(t.to, CONN);
            ensure_eq!(t.kind, FrameKind::Stream);
            ensure!(
                self.s2c.extend_from_slice(&self.out[..t.len]).is_ok(),
                "s2c pipe full"
            );
            self.bytes_s2c += t.len;
            n += 1;
        }
        Ok(n)
    }

    /// Feed the server every whole packet in c2s (stops at a partial packet or a pending auth)
    fn feed_server(&mut self) -> StepResult {
        let now = self.clock.now();
        while !self.c2s.is_empty() {
            let r = match crate::stack_call!(
                "server.handle_input",
                self.server.handle_input(now, CONN, &self.c2s)
            ) {
                Ok(r) => r,
                Err(Error::AuthPending) => break,
                Err(e) => return Err(Fail::new(line!(), format_args!("server input: {e:?}"))),
            };
            let consumed = r.bytes_consumed();
            if let Some(app) = r.into_app() {
                let entry = match app {
                    LpServerApp::Auth { token, .. } => ServerApp::Auth {
                        token: try_step!(String::try_from(token)),
                    },
                    LpServerApp::Request {
                        request_id,
                        cmd,
                        timeout,
                        body,
                        ..
                    } => ServerApp::Request {
                        request_id,
                        cmd,
                        timeout,
                        body: copy(body)?,
                    },
                    _ => ServerApp::Other,
                };
                ensure!(self.server_apps.push(entry).is_ok(), "server app log full");
            }
            if consumed == 0 {
                break;
            }
            drop_front(&mut self.c2s, consumed);
        }
        self.collect_events()
    }

    /// Feed the client every whole packet in s2c
    fn feed_client(&mut self) -> StepResult {
        let now = self.clock.now();
        while !self.s2c.is_empty() {
            let r = try_step!(crate::stack_call!(
                "client.handle_input",
                self.client.handle_input(now, (), &self.s2c)
            ));
            let consumed = r.bytes_consumed();
            if let Some(app) = r.into_app() {
                let entry = match app {
                    LpClientApp::Response {
                        cmd,
                        request_id,
                        status,
                        body,
                        ..
                    } => ClientApp::Response {
                        request_id,
                        cmd,
                        status,
                        body: copy(body)?,
                    },
                    LpClientApp::Close { code, reason } => ClientApp::Close {
                        code,
                        reason: try_step!(String::try_from(try_step!(reason
                            .to_str()
                            .ok_or("reason not UTF-8")))),
                    },
                    _ => ClientApp::Other,
                };
                ensure!(self.client_apps.push(entry).is_ok(), "client app log full");
            }
            // drain events after every packet: the client refuses input when its queue is full
            self.collect_events()?;
            if consumed == 0 {
                break;
            }
            drop_front(&mut self.s2c, consumed);
        }
        self.collect_events()
    }

    fn collect_events(&mut self) -> StepResult {
        while let Some(ev) = crate::stack_call!("client.poll_event", self.client.poll_event()) {
            ensure!(self.client_events.push(ev).is_ok(), "client event log full");
        }
        while let Some(ev) = crate::stack_call!("server.poll_event", self.server.poll_event()) {
            ensure!(self.server_events.push(ev).is_ok(), "server event log full");
        }
        Ok(())
    }

    /// Move bytes both ways, without delay, until nothing moves
    fn pump(&mut self) -> StepResult {
        loop {
            let sent = self.flush_client()?;
            self.feed_server()?;
            let answered = self.flush_server()?;
            self.feed_client()?;
            if sent == 0 && answered == 0 {
                return self.collect_events();
            }
        }
    }

    fn clear_logs(&mut self) {
        self.client_events.clear();
        self.server_events.clear();
        self.client_apps.clear();
        self.server_apps.clear();
    }
}

fn connect(w: &mut World) -> StepResult {
    let now = w.clock.now();
    try_step!(crate::stack_call!(
        "client.connect",
        w.client.connect(now, Credentials::new(TOKEN))
    ));
    w.collect_events()?;
    ensure_eq!(
        w.client_events.as_slice(),
        &[ClientEvent::ConnectTransport { attempt: 0 }]
    );
    ensure_eq!(w.client.state(), ClientState::Connecting);
    // the caller "opens the TCP connection": both ends learn about it
    try_step!(crate::stack_call!(
        "server.handle_connected",
        w.server
            .handle_connected(now, CONN, Transport::Tcp, Source::UNKNOWN)
    ));
    ensure_eq!(w.server.state(CONN), Some(ServerState::AwaitHandshake));
    try_step!(crate::stack_call!(
        "client.handle_connected",
        w.client.handle_connected(now)
    ));
    ensure_eq!(w.client.state(), ClientState::LoggingIn);
    Ok(())
}

fn auth(w: &mut World) -> StepResult {
    w.pump()?;
    // the handshake 11 09 and the Auth request went out; the application holds the token
    ensure_eq!(
        w.server.handshake(CONN).map(|h| h.to_bytes()),
        Some([0x11, 0x09])
    );
    ensure_eq!(w.server.state(CONN), Some(ServerState::AuthPending));
    let expected = ServerApp::Auth {
        token: try_step!(String::try_from(TOKEN)),
    };
    ensure_eq!(w.server_apps.as_slice(), &[expected]);
    ensure!(
        w.client_events.is_empty(),
        "client waits for the auth response"
    );
    let now = w.clock.now();
    let grant = Grant::new(SessionId::from_random(SESSION_RANDOM), EXPIRES).with_limit_online(3, 1);
    try_step!(crate::stack_call!(
        "server.accept_auth",
        w.server.accept_auth(now, CONN, grant)
    ));
    w.pump()?;
    ensure_eq!(
        w.client_events.as_slice(),
        &[ClientEvent::Connected {
            via: LoginKind::Auth,
            expires: EXPIRES,
            limit: 3,
            online: 1,
            resumable: true,
        }]
    );
    ensure_eq!(
        w.server_events.as_slice(),
        &[ServerEvent::Connected {
            peer: CONN,
            via: LoginKind::Auth,
            expires: EXPIRES
        }]
    );
    ensure!(w.client.is_connected(), "client connected");
    ensure_eq!(w.client.session_id(), Some(SESSION));
    ensure_eq!(w.server.state(CONN), Some(ServerState::Authenticated));
    ensure_eq!(w.server.session_id(CONN), Some(SESSION));
    ensure!(w.c2s.is_empty() && w.s2c.is_empty(), "pipes drained");
    Ok(())
}

fn heartbeat(w: &mut World) -> StepResult {
    let authed_at = w.clock.now();
    let (c, s) = (
        crate::stack_call!("client.poll_timeout", w.client.poll_timeout()),
        crate::stack_call!("server.poll_timeout", w.server.poll_timeout()),
    );
    // the client heartbeat (60 s) is the first timer; the server's silence timeout is 150 s
    ensure_eq!(c, Some(authed_at + Duration::from_secs(60)));
    let now = try_step!(w.clock.advance_to_deadline(c, s).ok_or("no deadline"));
    crate::stack_call!("client.handle_timeout", w.client.handle_timeout(now));
    crate::stack_call!("server.handle_timeout", w.server.handle_timeout(now));
    ensure_eq!(w.flush_client()?, 1);
    w.clock.advance(LINK_DELAY);
    w.feed_server()?;
    ensure_eq!(w.flush_server()?, 1);
    w.clock.advance(LINK_DELAY);
    w.feed_client()?;
    ensure_eq!(
        w.client_events.as_slice(),
        &[ClientEvent::HeartbeatRtt { rtt: EXPECTED_RTT }]
    );
    ensure!(
        w.server_events.is_empty() && w.server_apps.is_empty() && w.client_apps.is_empty(),
        "heartbeats stay in the control plane"
    );
    ensure_eq!(w.server.stats().heartbeats_echoed, 1);
    let cs = w.client.stats();
    ensure_eq!((cs.heartbeats_sent, cs.heartbeat_acks), (1, 1));
    ensure!(w.client.is_connected(), "still connected");
    Ok(())
}

fn request(w: &mut World) -> StepResult {
    let now = w.clock.now();
    let (id, t) = try_step!(crate::stack_call!(
        "client.send_request",
        w.client
            .send_request(now, CMD_ECHO, Duration::from_secs(5), BODY, &mut w.out)
    ));
    ensure_eq!(t.kind, FrameKind::Stream);
    ensure_eq!(t.len, 11 + BODY.len());
    ensure!(
        w.c2s.extend_from_slice(&w.out[..t.len]).is_ok(),
        "c2s pipe full"
    );
    w.bytes_c2s += t.len;
    ensure_eq!(w.client.in_flight(), 1);
    w.feed_server()?;
    let expected = ServerApp::Request {
        request_id: id,
        cmd: CMD_ECHO,
        timeout: Duration::from_secs(5),
        body: copy(BODY)?,
    };
    ensure_eq!(w.server_apps.as_slice(), &[expected]);
    // the application echoes the body through respond(), written straight into its buffer
    let t = try_step!(crate::stack_call!(
        "server.respond",
        w.server
            .respond(now, CONN, CMD_ECHO, id, Status::Success, BODY, &mut w.out)
    ));
    ensure_eq!(t.to, CONN);
    ensure!(
        w.s2c.extend_from_slice(&w.out[..t.len]).is_ok(),
        "s2c pipe full"
    );
    w.bytes_s2c += t.len;
    w.feed_client()?;
    let expected = ClientApp::Response {
        request_id: id,
        cmd: CMD_ECHO,
        status: Status::Success,
        body: copy(BODY)?,
    };
    ensure_eq!(w.client_apps.as_slice(), &[expected]);
    ensure_eq!(w.client.in_flight(), 0);
    ensure!(
        w.client_events.is_empty() && w.server_events.is_empty(),
        "no control events"
    );
    Ok(())
}

fn shutdown_close(w: &mut World) -> StepResult {
    let now = w.clock.now();
    try_step!(crate::stack_call!(
        "server.shutdown",
        w.server.shutdown(now, "server shutdown")
    ));
    ensure_eq!(w.flush_server()?, 1);
    w.collect_events()?;
    ensure_eq!(
        w.server_events.as_slice(),
        &[
            ServerEvent::Closed {
                peer: CONN,
                cause: CloseCause::Shutdown
            },
            ServerEvent::ShutdownComplete,
        ]
    );
    ensure_eq!(w.server.connections(), 0);
    w.feed_client()?;
    let reason = try_step!(String::try_from("server shutdown"));
    ensure_eq!(
        w.client_apps.as_slice(),
        &[ClientApp::Close {
            code: CloseCode::ServerShutdown,
            reason
        }]
    );
    ensure_eq!(
        w.client_events.as_slice(),
        &[
            ClientEvent::Disconnected {
                cause: CloseCause::Peer {
                    code: CloseCode::ServerShutdown
                }
            },
            ClientEvent::ReconnectScheduled {
                at: now + Duration::from_secs(1),
                attempt: 1
            },
        ]
    );
    ensure_eq!(w.client.state(), ClientState::WaitingToReconnect);
    ensure!(w.s2c.is_empty(), "close push consumed");
    Ok(())
}

fn client_close(w: &mut World) -> StepResult {
    let now = w.clock.now();
    try_step!(crate::stack_call!(
        "client.close",
        w.client.close(now, "done")
    ));
    w.collect_events()?;
    ensure_eq!(
        w.client_events.as_slice(),
        &[ClientEvent::Closed {
            cause: CloseCause::Local
        }]
    );
    ensure_eq!(w.client.state(), ClientState::Closed);
    ensure_eq!(w.flush_client()?, 0);
    ensure_eq!(
        crate::stack_call!("client.poll_timeout", w.client.poll_timeout()),
        None
    );
    Ok(())
}

const STEPS: &[Step<World>] = &[
    ("longport: client connects, transport opened", connect),
    ("longport: handshake + auth accepted", auth),
    ("longport: heartbeat echoed, RTT event", heartbeat),
    ("longport: business request answered via respond()", request),
    (
        "longport: server shutdown, Close push reaches client",
        shutdown_close,
    ),
    ("longport: client closes", client_close),
];

/// Run the LongPort scenario (its own stack frame)
#[inline(never)]
pub fn run(runner: &mut Runner) {
    let mut world = World::new();
    runner.run(&mut world, World::clear_logs, STEPS);
    cortex_m_semihosting::hprintln!(
        "longport: {} bytes client->server, {} server->client, {} clock ticks, virtual time {} ms",
        world.bytes_c2s,
        world.bytes_s2c,
        world.clock.ticks,
        world.clock.now().as_millis()
    );
}
