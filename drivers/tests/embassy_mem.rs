//! The embassy drivers on their own, over two `embassy-net` stacks joined in memory (no TAP, no
//! root): the LongPort `TcpClient` against our LongPort server machine on the other stack, and
//! the datagram `UdpDriver` as both game client and game server.
//!
//! The server side here is test glue: one connection at a time, every frame of a turn written in
//! one piece (so a push the server queues with a login response, or two responses, arrive in the
//! same segment, as they do from a real server), a script of commands from the test.
#![cfg(feature = "embassy")]

#[path = "support/embassy_mem.rs"]
mod mem;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration as StdDuration, SystemTime, UNIX_EPOCH};

use embassy_futures::select::{select, Either};
use embassy_net::tcp::TcpSocket;
use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::{IpEndpoint, Stack};
use embassy_time::{with_timeout, Duration, Instant, Timer};
use tether_net::longport::{
    Client, ClientApp, ClientConfig, ClientEvent, CloseCause, CloseCode, Credentials, Grant,
    LoginKind, RequestFailure, RequestId, Server, ServerApp, ServerConfig, ServerEvent, SessionId,
    Source, Status, Transport,
};
use tether_net_drivers::embassy::{now, CallError, TcpBuffers, TcpClient, UdpBuffers, UdpDriver};
use tether_net_drivers::Input;

const PORT: u16 = 7000;
const TOKEN: &str = "embassy-mem-token";
/// Bound on every wait of a test: a hang fails instead of blocking the run
const LIMIT: Duration = Duration::from_secs(10);

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// What the test tells the server to do at its next turn
enum Cmd {
    Push(u8, Vec<u8>),
    /// Reset the connection (RST) as a crashed server would
    Drop,
    Close(CloseCode, &'static str),
    /// Write these bytes as they are (a hostile or broken server)
    Raw(Vec<u8>),
}

/// The server's script and log, shared with the test
#[derive(Default)]
struct Script {
    cmds: VecDeque<Cmd>,
    /// Pushed in the turn that accepts a login, after the login response
    after_login: Vec<(u8, Vec<u8>)>,
    events: Vec<ServerEvent<u8>>,
    /// Connections accepted
    accepted: u32,
    /// (cmd, body) of every request
    requests: Vec<(u8, Vec<u8>)>,
    /// Read nothing from the clients and answer nothing (a server that hangs after accepting)
    silent: bool,
}

type Shared = Rc<RefCell<Script>>;

/// The server's policy per request command: 5 answered 300 ms late, 6 with status 7, 7 resets
/// the connection, 8 answered and followed by a push in the same write, 9 never answered; every
/// other command is echoed
async fn serve(stack: Stack<'_>, script: Shared) -> ! {
    let mut srv: Server<u8, 4, 8> = Server::with_capacities(ServerConfig::new());
    let (mut rxb, mut txb) = (vec![0u8; 32 * 1024], vec![0u8; 32 * 1024]);
    let mut out = vec![0u8; 32 * 1024];
    let mut tmp = vec![0u8; 4096];
    let mut peer = 0u8;
    loop {
        let mut sock = TcpSocket::new(stack, &mut rxb, &mut txb);
        if sock.accept(PORT).await.is_err() {
            continue;
        }
        peer = peer.wrapping_add(1);
        script.borrow_mut().accepted += 1;
        srv.set_wall_clock(now(), unix_ms());
        srv.handle_connected(now(), peer, Transport::Tcp, Source::UNKNOWN)
            .unwrap();
        let mut inbuf: Vec<u8> = Vec::new();
        let mut held: Vec<(u8, RequestId, Vec<u8>, Instant)> = Vec::new();
        'conn: loop {
            let t = now();
            let mut wire: Vec<u8> = Vec::new();
            let mut after: Vec<(u8, Vec<u8>)> = Vec::new();
            let mut reset = false;
            let cmds: Vec<Cmd> = script.borrow_mut().cmds.drain(..).collect();
            for cmd in cmds {
                match cmd {
                    Cmd::Push(c, b) => after.push((c, b)),
                    Cmd::Drop => reset = true,
                    Cmd::Close(code, reason) => srv.close(t, peer, code, reason).unwrap(),
                    Cmd::Raw(bytes) => wire.extend_from_slice(&bytes),
                }
            }
            held.retain(|(cmd, id, body, at)| {
                let due = Instant::now() >= *at;
                if due {
                    let tx = srv
                        .respond(t, peer, *cmd, *id, Status::Success, body, &mut out)
                        .unwrap();
                    wire.extend_from_slice(&out[..tx.len]);
                }
                !due
            });
            if script.borrow().silent {
                inbuf.clear();
            }
            while let Ok(r) = srv.handle_input(t, peer, &inbuf) {
                let n = r.bytes_consumed();
                match r.app() {
                    Some(ServerApp::Auth { token, .. }) if *token == TOKEN => {
                        let g =
                            Grant::new(SessionId::from_random([peer; 16]), unix_ms() + 3_600_000);
                        srv.accept_auth(t, peer, g).unwrap();
                        after.extend(script.borrow().after_login.iter().cloned());
                    }
                    Some(ServerApp::Auth { .. }) => srv
                        .reject_auth(t, peer, Status::Unauthenticated, 401, "invalid token")
                        .unwrap(),
                    Some(ServerApp::Reconnect { .. }) => {
                        let g =
                            Grant::new(SessionId::from_random([peer; 16]), unix_ms() + 3_600_000);
                        srv.accept_reconnect(t, peer, g).unwrap();
                    }
                    Some(ServerApp::Request {
                        request_id,
                        cmd,
                        body,
                        ..
                    }) => {
                        let (id, cmd, body) = (*request_id, *cmd, body.to_vec());
                        script.borrow_mut().requests.push((cmd, body.clone()));
                        let mut answer = |status: Status, body: &[u8], wire: &mut Vec<u8>| {
                            let tx = srv
                                .respond(t, peer, cmd, id, status, body, &mut out)
                                .unwrap();
                            wire.extend_from_slice(&out[..tx.len]);
                        };
                        match cmd {
                            5 => held.push((
                                cmd,
                                id,
                                body,
                                Instant::now() + Duration::from_millis(300),
                            )),
                            6 => answer(Status::ServerInternalError, b"", &mut wire),
                            7 => reset = true,
                            8 => {
                                answer(Status::Success, &body, &mut wire);
                                after.push((50, b"after the response".to_vec()));
                            }
                            9 => {}
                            _ => answer(Status::Success, &body, &mut wire),
                        }
                    }
                    _ => {}
                }
                inbuf.drain(..n);
                if n == 0 {
                    break;
                }
            }
            if srv.poll_timeout().is_some_and(|d| d <= t) {
                srv.handle_timeout(t);
            }
            while let Some(tx) = srv.poll_transmit(t, &mut out).unwrap() {
                wire.extend_from_slice(&out[..tx.len]);
            }
            for (c, b) in after {
                if let Ok(tx) = srv.push(t, peer, c, &b, &mut out) {
                    wire.extend_from_slice(&out[..tx.len]);
                }
            }
            let mut closed = false;
            while let Some(ev) = srv.poll_event() {
                closed |= matches!(ev, ServerEvent::Closed { peer: p, .. } if p == peer);
                script.borrow_mut().events.push(ev);
            }
            if !wire.is_empty() && write_all(&mut sock, &wire).await.is_err() {
                reset = true;
            }
            if reset {
                sock.abort();
                let _ = sock.flush().await;
                srv.handle_closed(now(), peer);
                while let Some(ev) = srv.poll_event() {
                    script.borrow_mut().events.push(ev);
                }
                break 'conn;
            }
            if closed {
                sock.close();
                let _ = sock.flush().await;
                break 'conn;
            }
            match select(sock.read(&mut tmp), Timer::after(Duration::from_millis(10))).await {
                Either::First(Ok(0) | Err(_)) => {
                    srv.handle_closed(now(), peer);
                    while let Some(ev) = srv.poll_event() {
                        script.borrow_mut().events.push(ev);
                    }
                    break 'conn;
                }
                Either::First(Ok(n)) => inbuf.extend_from_slice(&tmp[..n]),
                Either::Second(()) => {}
            }
        }
    }
}

async fn write_all(sock: &mut TcpSocket<'_>, mut buf: &[u8]) -> Result<(), ()> {
    while !buf.is_empty() {
        match sock.write(buf).await {
            Ok(0) | Err(_) => return Err(()),
            Ok(n) => buf = &buf[n..],
        }
    }
    sock.flush().await.map_err(drop)
}

fn server_endpoint() -> IpEndpoint {
    IpEndpoint::new(mem::HOST.into(), PORT)
}

type Lp<'s> = TcpClient<'s, Client, 4096, 2048>;

/// The tests' client configuration: reconnects fast
fn config() -> ClientConfig {
    ClientConfig::tcp()
        .with_reconnect_backoff(StdDuration::from_millis(10), StdDuration::from_secs(1))
}

/// A client with `config` towards `to`, told to connect with `token`
fn client_to<'s, const RX: usize, const OUT: usize>(
    stack: Stack<'s>,
    buffers: &'s mut TcpBuffers<8192>,
    to: IpEndpoint,
    config: ClientConfig,
    token: &'static str,
) -> TcpClient<'s, Client, RX, OUT> {
    let mut d = TcpClient::with_buffers(stack, buffers, to, Client::new(config));
    d.command(|c, t| c.connect(t, Credentials::new(token)))
        .unwrap();
    d
}

/// A client told to connect to the server with `token`, reconnecting fast
fn client<'s>(stack: Stack<'s>, buffers: &'s mut TcpBuffers<8192>, token: &'static str) -> Lp<'s> {
    client_to(stack, buffers, server_endpoint(), config(), token)
}

/// The events `d` hands out until `last` matches one (at most [`LIMIT`]), that one included
async fn events_until<const RX: usize, const OUT: usize>(
    d: &mut TcpClient<'_, Client, RX, OUT>,
    last: impl Fn(&ClientEvent) -> bool,
) -> Vec<ClientEvent> {
    let mut got = Vec::new();
    d.run(LIMIT, |_, _, i| {
        let Input::Event(e) = i else { return None };
        got.push(e);
        last(&e).then_some(())
    })
    .await;
    got
}

/// Run `d` until its login (of kind `via`) succeeded
async fn logged_in(d: &mut Lp<'_>, via: LoginKind) {
    let up = d
        .run(LIMIT, |_, _, i| match i {
            Input::Event(ClientEvent::Connected { via: v, .. }) if v == via => Some(Ok(())),
            Input::Event(e @ (ClientEvent::LoginFailed { .. } | ClientEvent::Closed { .. })) => {
                Some(Err(e))
            }
            _ => None,
        })
        .await;
    assert_eq!(up, Some(Ok(())), "no {via:?} login");
}

/// The pushes (cmd, body) `d` receives within `limit`
async fn pushes(d: &mut Lp<'_>, limit: Duration) -> Vec<(u8, Vec<u8>)> {
    let mut got = Vec::new();
    d.run(limit, |_, _, i| {
        if let Input::App((), ClientApp::Push { cmd, body, .. }) = i {
            got.push((cmd, body.to_vec()));
        }
        None::<()>
    })
    .await;
    got
}

/// Both stacks, the server on the host one, and `body` on the device one
fn with_server<R>(script: Shared, body: impl for<'s> AsyncFnOnce(Stack<'s>) -> R) -> R {
    let (mut host, mut device) = (mem::Resources::new(), mem::Resources::new());
    let ((hs, hr), (ds, dr), _link) = mem::pair(&mut host, &mut device);
    mem::run(hr, dr, async move {
        match select(serve(hs, script), body(ds)).await {
            Either::First(never) => match never {},
            Either::Second(r) => r,
        }
    })
}

/// [`with_server`] with a client logged in with `TOKEN`, handed to `body`
fn with_logged_in<R>(script: Shared, body: impl for<'s, 'd> AsyncFnOnce(&'d mut Lp<'s>) -> R) -> R {
    with_server(script, async move |stack| {
        let mut b = TcpBuffers::new();
        let mut d = client(stack, &mut b, TOKEN);
        logged_in(&mut d, LoginKind::Auth).await;
        body(&mut d).await
    })
}

/// Run `d` until it is disconnected: the events on the way and the cause
async fn disconnected(d: &mut Lp<'_>) -> (Vec<ClientEvent>, CloseCause) {
    let evs = events_until(d, |e| matches!(e, ClientEvent::Disconnected { .. })).await;
    match evs.last() {
        Some(&ClientEvent::Disconnected { cause }) => (evs, cause),
        _ => panic!("no Disconnected: {evs:?}"),
    }
}

#[test]
fn a_push_sent_with_the_login_response_reaches_a_client_that_stopped_at_connected() {
    let script = Shared::default();
    script.borrow_mut().after_login = vec![(40, b"first".to_vec()), (41, b"second".to_vec())];
    let got = with_server(script.clone(), async |stack| {
        let mut b = TcpBuffers::new();
        let mut d = client(stack, &mut b, TOKEN);
        assert!(!d.is_open(), "open before the first run");
        logged_in(&mut d, LoginKind::Auth).await;
        assert!(d.is_open());
        // nothing else comes: both pushes were in the segment of the login response
        pushes(&mut d, Duration::from_millis(300)).await
    });
    assert_eq!(
        got,
        [(40, b"first".to_vec()), (41, b"second".to_vec())],
        "pushes lost after a run stopped at Connected"
    );
}

#[test]
fn call_returns_its_own_answer_and_the_packet_after_it_waits_for_the_next_run() {
    let script = Shared::default();
    with_logged_in(script.clone(), async |d| {
        // an earlier request answered 300 ms after it arrives, and a call answered 300 ms after
        // its own: the earlier answer comes first and is not the call's
        d.request(5, StdDuration::from_secs(5), b"earlier")
            .await
            .unwrap();
        let mut resp = [0u8; 64];
        let n = with_timeout(
            LIMIT,
            d.call(5, StdDuration::from_secs(5), b"mine", &mut resp),
        )
        .await
        .expect("call hung");
        assert_eq!(n.map(|n| resp[..n].to_vec()), Ok(b"mine".to_vec()));
        // cmd 8: the response and a push in one write; the call returns at the response and
        // the push is kept in the receive buffer for the next run
        let n = d
            .call(8, StdDuration::from_secs(5), b"eight", &mut resp)
            .await;
        assert_eq!(n, Ok(5));
        assert_eq!(
            pushes(d, Duration::from_millis(300)).await,
            [(50, b"after the response".to_vec())]
        );
    });
}

#[test]
fn call_outcomes_status_size_timeout_and_a_reset_connection() {
    let script = Shared::default();
    with_logged_in(script.clone(), async |d| {
        let mut resp = [0u8; 8];
        // a body exactly as long as the buffer fits; one byte longer does not
        assert_eq!(
            d.call(4, StdDuration::from_secs(5), b"12345678", &mut resp)
                .await,
            Ok(8)
        );
        assert_eq!(&resp, b"12345678");
        assert_eq!(
            d.call(4, StdDuration::from_secs(5), b"123456789", &mut resp)
                .await,
            Err(CallError::TooLong(9))
        );
        assert_eq!(
            d.call(6, StdDuration::from_secs(5), b"", &mut resp).await,
            Err(CallError::Status(Status::ServerInternalError))
        );
        // another request times out first (100 ms) while the call's answer comes at 300 ms
        d.request(9, StdDuration::from_millis(100), b"never")
            .await
            .unwrap();
        let r = with_timeout(
            LIMIT,
            d.call(5, StdDuration::from_secs(2), b"late", &mut resp),
        )
        .await
        .expect("call hung");
        assert_eq!(r, Ok(4), "another request's timeout ended the call");
        // the call's own timeout
        let r = with_timeout(
            LIMIT,
            d.call(9, StdDuration::from_millis(200), b"x", &mut resp),
        )
        .await
        .expect("a call whose request timed out hung");
        assert_eq!(r, Err(CallError::TimedOut));
        // the server resets the connection: the call fails instead of hanging
        let r = with_timeout(LIMIT, d.call(7, StdDuration::from_secs(5), b"", &mut resp))
            .await
            .expect("a call on a reset connection hung");
        assert!(
            matches!(r, Err(CallError::Failed(RequestFailure::Disconnected))),
            "{r:?}"
        );
    });
}

#[test]
fn drop_transport_closes_the_socket_and_the_client_comes_back_with_its_session() {
    let script = Shared::default();
    with_logged_in(script.clone(), async |d| {
        d.drop_transport();
        assert!(!d.is_open(), "open after drop_transport");
        logged_in(d, LoginKind::Reconnect).await;
        assert!(d.is_open());
    });
    let s = script.borrow();
    assert_eq!(s.accepted, 2, "drop_transport did not drop the connection");
    assert!(
        s.events
            .iter()
            .any(|e| matches!(e, ServerEvent::Closed { peer: 1, .. })),
        "{:?}",
        s.events
    );
}

#[test]
fn a_server_close_ends_the_connection_at_the_disconnected_event() {
    let script = Shared::default();
    let s2 = script.clone();
    with_logged_in(script.clone(), async move |d| {
        s2.borrow_mut()
            .cmds
            .push_back(Cmd::Close(CloseCode::ServerShutdown, "maintenance"));
        let (evs, cause) = disconnected(d).await;
        assert!(matches!(cause, CloseCause::Peer { .. }), "{evs:?}");
        assert!(!d.is_open(), "the socket outlived Disconnected");
    });
}

#[test]
fn a_silent_link_is_a_heartbeat_timeout_and_the_client_reconnects_when_it_returns() {
    let (mut host, mut device) = (mem::Resources::new(), mem::Resources::new());
    let ((hs, hr), (ds, dr), link) = mem::pair(&mut host, &mut device);
    let script = Shared::default();
    mem::run(hr, dr, async {
        let client_side = async {
            let mut b = TcpBuffers::new();
            let config = config()
                .with_heartbeat_interval(Some(StdDuration::from_secs(1)))
                .with_heartbeat_timeout(StdDuration::from_millis(300));
            let mut d: Lp<'_> = client_to(ds, &mut b, server_endpoint(), config, TOKEN);
            logged_in(&mut d, LoginKind::Auth).await;
            link.set_down(true);
            let (evs, cause) = disconnected(&mut d).await;
            assert!(matches!(cause, CloseCause::Timeout), "{evs:?}");
            assert!(!d.is_open());
            link.set_down(false);
            logged_in(&mut d, LoginKind::Reconnect).await;
        };
        match select(serve(hs, script.clone()), client_side).await {
            Either::First(never) => match never {},
            Either::Second(()) => {}
        }
    });
}

#[test]
fn a_refused_login_is_login_failed() {
    let script = Shared::default();
    with_server(script.clone(), async |stack| {
        let mut b = TcpBuffers::new();
        let mut d = client(stack, &mut b, "wrong token");
        // through `next_event`: ConnectTransport first, then the refusal
        let mut evs = Vec::new();
        while let Some(e) = d.next_event(LIMIT).await {
            evs.push(e);
            if matches!(e, ClientEvent::LoginFailed { .. }) {
                break;
            }
        }
        assert!(
            matches!(evs.first(), Some(ClientEvent::ConnectTransport { .. })),
            "{evs:?}"
        );
        assert!(
            matches!(
                evs.last(),
                Some(ClientEvent::LoginFailed {
                    status: Status::Unauthenticated,
                    ..
                })
            ),
            "{evs:?}"
        );
    });
}

#[test]
fn a_packet_larger_than_the_receive_buffer_drops_the_connection_and_the_next_one_works() {
    let script = Shared::default();
    let s2 = script.clone();
    with_server(script.clone(), async move |stack| {
        let mut b = TcpBuffers::new();
        // the machine takes bodies this large; the driver's 4 KiB receive buffer does not
        let config = config().with_max_body(16 * 1024);
        let mut d: Lp<'_> = client_to(stack, &mut b, server_endpoint(), config, TOKEN);
        logged_in(&mut d, LoginKind::Auth).await;
        s2.borrow_mut().cmds.push_back(Cmd::Push(42, vec![7; 6000]));
        disconnected(&mut d).await;
        logged_in(&mut d, LoginKind::Reconnect).await;
        s2.borrow_mut().cmds.push_back(Cmd::Push(43, vec![8; 3000]));
        assert_eq!(
            pushes(&mut d, Duration::from_millis(300)).await,
            [(43, vec![8; 3000])]
        );
    });
}

#[test]
fn a_login_larger_than_the_output_buffer_closes_the_machine() {
    let script = Shared::default();
    with_server(script.clone(), async |stack| {
        let mut b = TcpBuffers::new();
        const LONG: &str =
            "a token far longer than the sixty-four bytes of this client's output buffer";
        let mut d: TcpClient<'_, Client, 4096, 64> =
            client_to(stack, &mut b, server_endpoint(), config(), LONG);
        let evs = events_until(&mut d, |e| matches!(e, ClientEvent::Closed { .. })).await;
        assert!(
            matches!(
                evs.last(),
                Some(ClientEvent::Closed {
                    cause: CloseCause::Local
                })
            ),
            "{evs:?}"
        );
        // and a request that does not fit is refused
        assert!(d
            .request(4, StdDuration::from_secs(1), &[0; 100])
            .await
            .is_err());
    });
}

#[test]
fn a_refused_dial_and_a_dial_into_silence_are_retried() {
    let (mut host, mut device) = (mem::Resources::new(), mem::Resources::new());
    let ((_hs, hr), (ds, dr), link) = mem::pair(&mut host, &mut device);
    mem::run(hr, dr, async {
        let mut b = TcpBuffers::new();
        // nothing listens on this port: the host stack answers the SYN with a RST
        let closed_port = IpEndpoint::new(mem::HOST.into(), 7999);
        let config = config().with_connect_timeout(StdDuration::from_millis(200));
        let mut d: Lp<'_> = client_to(ds, &mut b, closed_port, config, TOKEN);
        let evs = events_until(&mut d, |e| {
            matches!(e, ClientEvent::ReconnectScheduled { .. })
        })
        .await;
        assert!(
            matches!(
                evs.last(),
                Some(ClientEvent::ReconnectScheduled { attempt: 1, .. })
            ),
            "{evs:?}"
        );
        assert!(!d.is_open());
        // no answer at all: the dial is abandoned at the connect timeout
        link.set_down(true);
        let t0 = Instant::now();
        let evs = events_until(&mut d, |e| {
            matches!(e, ClientEvent::ReconnectScheduled { attempt: 2, .. })
        })
        .await;
        assert!(
            matches!(
                evs.last(),
                Some(ClientEvent::ReconnectScheduled { attempt: 2, .. })
            ),
            "{evs:?}"
        );
        assert!(
            Instant::now() - t0 < Duration::from_secs(5),
            "the dial outlived its timeout"
        );
    });
}

#[test]
fn a_reset_from_the_server_is_a_lost_transport_and_the_client_reconnects() {
    let script = Shared::default();
    let s2 = script.clone();
    with_logged_in(script.clone(), async move |d| {
        s2.borrow_mut().cmds.push_back(Cmd::Drop);
        let (evs, cause) = disconnected(d).await;
        assert!(matches!(cause, CloseCause::TransportClosed), "{evs:?}");
        assert!(!d.is_open());
        logged_in(d, LoginKind::Reconnect).await;
    });
    assert_eq!(script.borrow().accepted, 2);
}

const GAME_PORT: u16 = 8303;

/// What the game server loop shares with the test
#[derive(Default)]
struct GameScript {
    /// The connected client's endpoint
    peer: Option<IpEndpoint>,
    /// Close the client with this reason at the next turn
    close: Option<&'static str>,
    events: Vec<tether_net::game::ServerEvent<IpEndpoint>>,
}

/// The game server over embassy UDP on the host stack, in turns of 20 ms
async fn game_server(stack: Stack<'_>, script: Rc<RefCell<GameScript>>) -> ! {
    use tether_net::game::{Server, ServerConfig, ServerEvent, TokenSecret};
    let (mut rx_meta, mut tx_meta) = ([PacketMetadata::EMPTY; 8], [PacketMetadata::EMPTY; 8]);
    let (mut rx, mut tx) = ([0u8; 4096], [0u8; 4096]);
    let mut sock = UdpSocket::new(stack, &mut rx_meta, &mut rx, &mut tx_meta, &mut tx);
    sock.bind(GAME_PORT).unwrap();
    // a constant secret is for this test only
    let server = Server::<IpEndpoint>::new(ServerConfig::new(TokenSecret([5; 16])));
    let mut d = UdpDriver::new(sock, server_endpoint(), server);
    loop {
        d.run(Duration::from_millis(20), |_, _, i| {
            if let Input::Event(e) = i {
                if let ServerEvent::Connected { peer, .. } = e {
                    script.borrow_mut().peer = Some(peer);
                }
                script.borrow_mut().events.push(e);
            }
            None::<()>
        })
        .await;
        let close = script.borrow_mut().close.take();
        if let Some(reason) = close {
            let peer = script.borrow().peer.unwrap();
            d.command(|s, t| s.close(t, peer, reason)).unwrap();
        }
    }
}

fn game_endpoint() -> IpEndpoint {
    IpEndpoint::new(mem::HOST.into(), GAME_PORT)
}

#[test]
fn the_game_client_hears_only_its_server_and_is_closed_with_a_reason() {
    use tether_net::game::wire::{Control, Reason};
    use tether_net::game::{Client, ClientApp, ClientConfig, ClientEvent, CloseCause};
    let script = Rc::new(RefCell::new(GameScript::default()));
    let (mut host, mut device) = (mem::Resources::new(), mem::Resources::new());
    let ((hs, hr), (ds, dr), _link) = mem::pair(&mut host, &mut device);
    let s2 = script.clone();
    mem::run(hr, dr, async move {
        let client_side = async {
            let mut buffers: UdpBuffers = UdpBuffers::new();
            let mut c = UdpDriver::bind(
                ds,
                &mut buffers,
                game_endpoint(),
                Client::new(ClientConfig::new()),
            )
            .unwrap();
            c.command(|c, t| c.connect(t)).unwrap();
            let up = c.next_event(LIMIT).await;
            assert!(matches!(up, Some(ClientEvent::Connected { .. })), "{up:?}");
            // let the client confirm its token, then forge the server's CLOSE, token and all,
            // from another port of the server's address
            assert_eq!(c.next_event(Duration::from_millis(300)).await, None);
            let token = c.machine().token();
            let peer = s2.borrow().peer.expect("the server saw the client");
            let forged = tether_net::testing::control_packet(
                Control::Close(Reason::from_str("forged")),
                token,
            );
            let (mut rm, mut tm) = ([PacketMetadata::EMPTY; 2], [PacketMetadata::EMPTY; 2]);
            let (mut rb, mut tb) = ([0u8; 256], [0u8; 256]);
            let mut spoofer = UdpSocket::new(hs, &mut rm, &mut rb, &mut tm, &mut tb);
            spoofer.bind(GAME_PORT + 1).unwrap();
            spoofer.send_to(&forged, peer).await.unwrap();
            assert_eq!(
                c.next_event(Duration::from_millis(300)).await,
                None,
                "a CLOSE from another port ended the connection"
            );
            assert_eq!(c.send_errors(), 0);
            // the server's own CLOSE
            s2.borrow_mut().close = Some("closed by the test");
            let mut reason = None;
            let closed = c
                .run(LIMIT, |_, _, i| match i {
                    Input::App(_, ClientApp::Close { reason: r }) => {
                        reason = Some(r.to_string());
                        None
                    }
                    Input::Event(ClientEvent::Closed { cause }) => Some(cause),
                    _ => None,
                })
                .await;
            assert_eq!(closed, Some(CloseCause::Peer));
            assert_eq!(reason.as_deref(), Some("closed by the test"));
        };
        match select(game_server(hs, s2.clone()), client_side).await {
            Either::First(never) => match never {},
            Either::Second(()) => {}
        }
    });
    let events = &script.borrow().events;
    assert_eq!(events.len(), 2, "{events:?}");
}

#[test]
fn sends_that_fail_are_counted() {
    use tether_net::game::{Client, ClientConfig};
    let (mut host, mut device) = (mem::Resources::new(), mem::Resources::new());
    let ((_hs, hr), (ds, dr), _link) = mem::pair(&mut host, &mut device);
    mem::run(hr, dr, async move {
        // a send buffer too small for any game packet: every send fails (`PacketTooLarge`)
        let mut buffers: UdpBuffers<8, 8> = UdpBuffers::new();
        let mut c = UdpDriver::bind(
            ds,
            &mut buffers,
            game_endpoint(),
            Client::new(ClientConfig::new()),
        )
        .unwrap();
        c.command(|c, t| c.connect(t)).unwrap();
        assert_eq!(c.next_event(Duration::from_millis(200)).await, None);
        assert!(c.send_errors() >= 1, "{}", c.send_errors());
    });
}

/// Why [`Picky`] refuses an input
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PickyError {
    QueueFull,
    Broken,
}

impl tether_net_drivers::QueueFull for PickyError {
    fn is_queue_full(&self) -> bool {
        *self == PickyError::QueueFull
    }
}

/// A datagram server machine that refuses every datagram once with `QueueFull` (as a machine
/// whose event queue is full does) and takes it when fed again: its bytes are the application
/// value, an event names its length, and a reply "re:" + bytes goes back to the sender;
/// `broken` is refused with another error
#[derive(Default)]
struct Picky {
    refused: bool,
    refusals: u32,
    events: VecDeque<usize>,
    replies: VecDeque<(IpEndpoint, Vec<u8>)>,
}

impl tether_net::Machine for Picky {
    type Peer = IpEndpoint;
    type Event = usize;
    type App<'a> = &'a [u8];
    type Error = PickyError;

    fn handle_input<'a>(
        &mut self,
        _now: tether_net::Instant,
        from: IpEndpoint,
        data: &'a [u8],
    ) -> Result<tether_net::Received<&'a [u8]>, PickyError> {
        if data == b"broken" {
            return Err(PickyError::Broken);
        }
        if !self.refused {
            self.refused = true;
            self.refusals += 1;
            return Err(PickyError::QueueFull);
        }
        self.refused = false;
        self.events.push_back(data.len());
        self.replies.push_back((from, [b"re:", data].concat()));
        Ok(tether_net::Received::with_app(data.len(), data))
    }

    fn handle_timeout(&mut self, _now: tether_net::Instant) {}

    fn poll_transmit(
        &mut self,
        _now: tether_net::Instant,
        buf: &mut [u8],
    ) -> Result<Option<tether_net::Transmit<IpEndpoint>>, tether_net::BufferTooSmall> {
        let Some((to, bytes)) = self.replies.pop_front() else {
            return Ok(None);
        };
        buf[..bytes.len()].copy_from_slice(&bytes);
        Ok(Some(tether_net::Transmit {
            to,
            len: bytes.len(),
            kind: tether_net::FrameKind::Datagram,
        }))
    }

    fn poll_event(&mut self) -> Option<usize> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<tether_net::Instant> {
        None
    }
}

#[test]
fn a_queue_full_refusal_is_fed_again_and_a_server_replies_to_each_sender() {
    let (mut host, mut device) = (mem::Resources::new(), mem::Resources::new());
    let ((hs, hr), (ds, dr), _link) = mem::pair(&mut host, &mut device);
    mem::run(hr, dr, async move {
        let (mut rm, mut tm) = ([PacketMetadata::EMPTY; 8], [PacketMetadata::EMPTY; 8]);
        let (mut rb, mut tb) = ([0u8; 2048], [0u8; 2048]);
        let mut sock = UdpSocket::new(ds, &mut rm, &mut rb, &mut tm, &mut tb);
        sock.bind(GAME_PORT).unwrap();
        // `remote` is not used by a server: replies go to each datagram's sender
        let unused = IpEndpoint::new(mem::HOST.into(), 1);
        let mut d = UdpDriver::new(sock, unused, Picky::default());
        let (mut hm, mut htm) = ([PacketMetadata::EMPTY; 8], [PacketMetadata::EMPTY; 8]);
        let (mut hb, mut htb) = ([0u8; 2048], [0u8; 2048]);
        let mut peer = UdpSocket::new(hs, &mut hm, &mut hb, &mut htm, &mut htb);
        peer.bind(9100).unwrap();
        let to = IpEndpoint::new(mem::DEVICE.into(), GAME_PORT);
        for m in [&b"one"[..], b"broken", b"two", b"three"] {
            peer.send_to(m, to).await.unwrap();
        }
        let mut seen = Vec::new();
        let r = d
            .run(Duration::from_millis(300), |_, _, i| {
                seen.push(match i {
                    Input::App(from, app) => {
                        assert_eq!(from, IpEndpoint::new(mem::HOST.into(), 9100));
                        format!("app {}", String::from_utf8_lossy(app))
                    }
                    Input::Event(n) => format!("event {n}"),
                });
                None::<()>
            })
            .await;
        assert_eq!(r, None);
        // each once, in order, after one refusal each; `broken` dropped, the loop went on
        assert_eq!(
            seen,
            [
                "app one",
                "event 3",
                "app two",
                "event 3",
                "app three",
                "event 5"
            ]
        );
        assert_eq!(d.machine().refusals, 3);
        let mut buf = [0u8; 64];
        for want in [&b"re:one"[..], b"re:two", b"re:three"] {
            let (n, meta) = with_timeout(LIMIT, peer.recv_from(&mut buf))
                .await
                .expect("no reply")
                .unwrap();
            assert_eq!(&buf[..n], want);
            assert_eq!(meta.endpoint, to);
        }
        // `next_event` hands out the next event and stops there
        peer.send_to(b"four", to).await.unwrap();
        assert_eq!(d.next_event(LIMIT).await, Some(4));
        assert_eq!(d.send_errors(), 0);
    });
}

#[test]
fn garbage_from_the_server_is_a_protocol_error_and_the_socket_is_closed_at_once() {
    let script = Shared::default();
    let s2 = script.clone();
    with_logged_in(script.clone(), async move |d| {
        // a packet header with a reserved type (0) and junk behind it
        s2.borrow_mut().cmds.push_back(Cmd::Raw(vec![0x00; 64]));
        let (evs, cause) = disconnected(d).await;
        assert!(matches!(cause, CloseCause::Protocol(_)), "{evs:?}");
        assert!(!d.is_open(), "the socket outlived the protocol error");
        // a fresh connection logs in again (the junk is not carried over)
        logged_in(d, LoginKind::Reconnect).await;
    });
    assert_eq!(script.borrow().accepted, 2);
}

#[test]
fn a_server_that_accepts_and_never_answers_is_left_at_the_login_timeout() {
    let script = Shared::default();
    script.borrow_mut().silent = true;
    with_server(script.clone(), async |stack| {
        let mut b = TcpBuffers::new();
        let config = config().with_auth_timeout(StdDuration::from_millis(300));
        let mut d: Lp<'_> = client_to(stack, &mut b, server_endpoint(), config, TOKEN);
        let t0 = Instant::now();
        let (evs, cause) = disconnected(&mut d).await;
        assert!(matches!(cause, CloseCause::LoginTimeout), "{evs:?}");
        assert!(Instant::now() - t0 < Duration::from_secs(3));
        assert!(!d.is_open());
        // it dials again: the server sees a second connection
        events_until(&mut d, |e| {
            matches!(e, ClientEvent::ConnectTransport { .. })
        })
        .await;
        d.next_event(Duration::from_millis(100)).await;
    });
    assert!(
        script.borrow().accepted >= 2,
        "{}",
        script.borrow().accepted
    );
}
