//! Shared helpers of the game session tests: the application's chunk sends over the simulated
//! link, a log of close reasons, and small frame classifiers
//!
//! `Client::send_chunks` / `Server::send_chunks` write a chunk packet into the caller's buffer;
//! a real application then hands it to its socket. [`client_send`] / [`server_send`] play that
//! application inside the simulator: they hand the packet to [`Fleet::send_from_client`] /
//! [`Fleet::send_from_server`], so it crosses the same lossy link as everything else (a
//! [`tether_net::testing::Pair`] is reached through `fleet_mut()`, its client is index 0).
#![allow(dead_code)]

use std::cell::RefCell;
use std::rc::Rc;

use tether_net::game::{
    Client, ClientApp, ClientState, Error, Flags, Server, ServerApp, ServerState, VanillaPolicy,
};
use tether_net::testing::{Direction, Fate, Fleet, TraceRecord};
use tether_net::{FrameKind, Instant};

/// The game fleet these tests use: default clients, a server keyed by `u32`
pub type GameFleet<const N: usize> = Fleet<Client, Server<u32, N>>;

/// Write one chunk packet (`num_chunks` = 1) with `payload` from client `i` and send it
pub fn client_send<const N: usize>(
    f: &mut GameFleet<N>,
    i: usize,
    payload: &[u8],
) -> Result<(), Error> {
    let now = f.now();
    let mut buf = [0u8; 1400];
    let t = f
        .client_mut(i)
        .send_chunks(now, Flags::default(), 1, payload, &mut buf)?;
    f.send_from_client(i, FrameKind::Datagram, &buf[..t.len]);
    Ok(())
}

/// Write one chunk packet (`num_chunks` = 1) with `payload` from the server to `peer` and send it
pub fn server_send<const N: usize>(
    f: &mut GameFleet<N>,
    peer: u32,
    payload: &[u8],
) -> Result<(), Error> {
    let now = f.now();
    let mut buf = [0u8; 1400];
    let t = f
        .server_mut()
        .send_chunks(now, peer, Flags::default(), 1, payload, &mut buf)?;
    f.send_from_server(t.to, FrameKind::Datagram, &buf[..t.len]);
    Ok(())
}

/// CLOSE reasons the application saw: (client index, reason as printed), in arrival order
pub type Reasons = Rc<RefCell<Vec<(usize, String)>>>;

/// Record the CLOSE reasons the clients ([`ClientApp::Close`]) and the server
/// ([`ServerApp::Close`], by client index) receive; replaces the fleet's app hooks
pub fn close_reasons<const N: usize>(f: &mut GameFleet<N>) -> (Reasons, Reasons) {
    let (clients, server) = (Reasons::default(), Reasons::default());
    let log = |l: &Reasons, i: usize, reason: Option<tether_net::PeerText<'_>>| {
        if let Some(reason) = reason {
            l.borrow_mut().push((i, reason.to_string()));
        }
    };
    let l = clients.clone();
    f.on_client_app(move |i, app: &ClientApp<'_>| log(&l, i, app.close_reason()));
    let l = server.clone();
    f.on_server_app(move |i, app: &ServerApp<'_>| log(&l, i, app.close_reason()));
    (clients, server)
}

pub fn client_closed(c: &Client) -> bool {
    c.state() == ClientState::Closed
}

pub fn server_stopped<const N: usize>(s: &Server<u32, N>) -> bool {
    s.state() == ServerState::Stopped
}

pub const KEEP_ALIVE: u8 = 0;
pub const CONNECT: u8 = 1;
pub const CONNECT_ACCEPT: u8 = 2;
pub const ACCEPT: u8 = 3;
pub const CLOSE: u8 = 4;

/// The control id of a control packet (`None` for a chunk packet or a runt)
pub fn control_id(bytes: &[u8]) -> Option<u8> {
    match bytes {
        [b0, _, _, id, ..] if b0 & 0x10 != 0 => Some(*id),
        _ => None,
    }
}

/// True for a chunk (non-control) packet
pub fn is_chunks(bytes: &[u8]) -> bool {
    bytes.len() >= 3 && bytes[0] & 0x10 == 0
}

/// Transcript records of client `i` in direction `dir` that carry control id `id`
pub fn frames<'t>(
    t: &'t [TraceRecord],
    i: usize,
    dir: Direction,
    id: u8,
) -> impl Iterator<Item = &'t TraceRecord> + 't {
    t.iter()
        .filter(move |r| r.client == Some(i) && r.dir == dir && control_id(&r.bytes) == Some(id))
}

/// Send times of the frames client `i` (or the server towards it) put on the wire in `dir`
/// (everything except the test's own injections), with their control id (`None`: chunks)
pub fn sends(t: &[TraceRecord], i: usize, dir: Direction) -> Vec<(Instant, Option<u8>)> {
    let mut v: Vec<(Instant, Option<u8>)> = t
        .iter()
        .filter(|r| r.client == Some(i) && r.dir == dir)
        .filter(|r| !matches!(r.fate, Fate::Injected | Fate::Duplicate))
        .map(|r| (r.sent_at, control_id(&r.bytes)))
        .collect();
    v.sort_by_key(|(at, _)| *at);
    v
}

/// A server policy name for messages
pub fn policy_name(p: VanillaPolicy) -> &'static str {
    match p {
        VanillaPolicy::Reject => "Reject",
        VanillaPolicy::Admit => "Admit",
        VanillaPolicy::Pending => "Pending",
        _ => "other",
    }
}
