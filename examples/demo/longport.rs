//! LongPort section of the demo: client ↔ server over TCP bytes, in memory, on the virtual clock

use std::{cell::RefCell, rc::Rc};

use tether_net::longport::control::{Body, Close};
use tether_net::longport::wire::{Kind, Packet};
use tether_net::longport::{
    AccountId, Client, ClientConfig, ClientEvent, Credentials, Grant, QuotaPolicy, Server,
    ServerApp as App, ServerConfig, SessionGrant, SessionId, Source, Status, Transport,
};
use tether_net::testing::{LinkConfig, Pair};
use tether_net::{Duration, FrameKind};

type Sim = Pair<Client, Server<u32>>;
const WALL: i64 = 1_700_000_000_000; // Unix ms at virtual time zero, on both sides

/// Name a frame: the handshake, then the packet decoded with the wire and control codecs
fn name(b: &[u8]) -> String {
    if let [0x11, 0x09, rest @ ..] = b {
        return format!("handshake v1 protobuf openapi + {}", name(rest));
    }
    let Ok((p, _)) = Packet::parse(b, 1 << 20) else {
        return "?".into();
    };
    let cmd = ["CLOSE", "HEARTBEAT", "AUTH", "RECONNECT"].get(usize::from(p.header.cmd));
    let what = cmd.map_or(format!("cmd {}", p.header.cmd), |c| c.to_string());
    match p.header.kind {
        Kind::Request { request_id, .. } => format!("{what} request {request_id}"),
        Kind::Response {
            request_id,
            status: Status::Success,
        } => match SessionGrant::decode(p.body) {
            Ok(g) if p.header.cmd >= 2 => {
                format!("{what} response {request_id} ok session {}", g.session_id)
            }
            _ => format!("{what} response {request_id} ok"),
        },
        Kind::Response { request_id, status } => {
            format!("{what} response {request_id} status {status}")
        }
        Kind::Push if p.header.cmd == 0 => format!(
            "CLOSE push {:?}",
            Close::decode(p.body).map(|c| c.code).unwrap_or_default()
        ),
        Kind::Push => format!("push {what}"),
    }
}

/// Run until `done`, opening a transport on every `ConnectTransport` and sending the app's frames
fn until(p: &mut Sim, out: &Rc<RefCell<Vec<Vec<u8>>>>, done: impl Fn(&Sim) -> bool) {
    let react = |p: &mut Sim| {
        out.take()
            .iter()
            .for_each(|b| p.send_from_server(FrameKind::Stream, b));
        for e in p.take_client_events() {
            if let ClientEvent::ConnectTransport { .. } = e {
                let now = p.now();
                p.server_mut()
                    .handle_connected(now, 1, Transport::Tcp, Source::UNKNOWN)
                    .unwrap();
                p.client_mut().handle_connected(now).unwrap();
            }
        }
        done(p)
    };
    p.run_until_mut(react, Duration::from_secs(60)).unwrap();
}

/// A session id: 128 bits from the OS random source (whoever holds it can resume the session)
fn random_session_id() -> SessionId {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source");
    SessionId::from_random(bytes)
}

/// Run the LongPort timeline
pub fn run() {
    let config = ClientConfig::tcp()
        .with_heartbeat_interval(Some(Duration::from_secs(5)))
        // refused for the account's connection quota (status 6): stop, do not loop for tokens
        .with_quota_policy(QuotaPolicy::Stop);
    let mut client = Client::new(config);
    // the gateway's limits: 2 connections per account (reported as limit/online), and the
    // server's own heartbeat over TCP every 7 s (its round trip is a server event)
    let server_config = ServerConfig::new()
        .with_account_quota(Some(2))
        .with_tcp_heartbeat_interval(Some(Duration::from_secs(7)));
    let mut server = Server::new(server_config);
    client.set_wall_clock(tether_net::Instant::ZERO, WALL);
    server.set_wall_clock(tether_net::Instant::ZERO, WALL);
    let mut p = Pair::new(client, server, 1, LinkConfig::perfect(), 1);
    p.set_observer(|e| crate::line(e, &name(e.bytes)));
    p.on_client_event(|e| println!("   event: client {e:?}"));
    p.on_server_event(|e| println!("   event: server {e:?}"));
    let (o, mut n) = (Rc::new(RefCell::new(Vec::<Vec<u8>>::new())), 0);
    let o2 = o.clone();
    p.answer_server_app(move |s, now, app| match *app {
        App::Auth { .. } | App::Reconnect { .. } => {
            n += 1;
            let g = Grant::new(random_session_id(), WALL + 3_600_000).with_account(AccountId(7));
            let r = if let App::Auth { .. } = app {
                s.accept_auth(now, 1, g)
            } else {
                s.accept_reconnect(now, 1, g)
            };
            println!("   app: login {n} {:?}", r.unwrap());
        }
        App::Request {
            request_id,
            cmd,
            body,
            ..
        } => {
            let mut b = vec![0u8; 64 + body.len()];
            let t = s
                .respond(now, 1, cmd, request_id, Status::Success, body, &mut b)
                .unwrap();
            o2.borrow_mut().push(b[..t.len].to_vec());
        }
        _ => {}
    });
    p.client_mut()
        .connect(tether_net::Instant::ZERO, Credentials::new("demo-token"))
        .unwrap();
    until(&mut p, &o, |p| p.client().is_connected());
    until(&mut p, &o, |p| p.client().stats().heartbeat_acks == 1);
    until(&mut p, &o, |p| p.server().stats().heartbeat_acks == 1);
    let (now, mut buf) = (p.now(), [0u8; 64]);
    let (_, t) = p
        .client_mut()
        .send_request(now, 4, Duration::ZERO, b"profile?", &mut buf)
        .unwrap();
    p.send_from_client(t.kind, &buf[..t.len]);
    until(&mut p, &o, |p| p.client().stats().responses == 1);
    let t = p
        .server_mut()
        .push(now, 1, 101, b"700.HK 321.5", &mut buf)
        .unwrap();
    p.send_from_server(t.kind, &buf[..t.len]);
    until(&mut p, &o, |p| p.client().stats().pushes == 1);
    println!("   (transport drops)");
    p.close_transport();
    until(&mut p, &o, |p| p.client().is_connected());
    let now = p.now();
    p.server_mut().shutdown(now, "server shutdown").unwrap();
    until(&mut p, &o, |p| !p.client().is_connected());
}
