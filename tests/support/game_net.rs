//! Shared helpers of the game session tests: a wrapper that lets the application send chunk
//! packets over the simulated link, and small frame classifiers
//!
//! `Client::send_chunks` / `Server::send_chunks` write a chunk packet into the caller's buffer;
//! a real application then hands it to its socket. [`Net`] plays that application inside the
//! simulator: it keeps such packets in an outbox and transmits them from `poll_transmit` after
//! the machine's own frames, so they cross the same lossy link as everything else.
#![allow(dead_code)]

use std::collections::VecDeque;

use tether_net::game::{Client, ClientState, Flags, SendError, Server, ServerState, VanillaPolicy};
use tether_net::testing::{Direction, Fate, TraceRecord};
use tether_net::{BufferTooSmall, FrameKind, Instant, Machine, Received, Transmit};

/// A game machine plus the application's outbox of chunk packets
pub struct Net<M: Machine> {
    /// The machine
    pub m: M,
    outbox: VecDeque<(M::Peer, Vec<u8>)>,
}

impl<M: Machine> Net<M> {
    pub fn new(m: M) -> Self {
        Net {
            m,
            outbox: VecDeque::new(),
        }
    }
}

impl<const E: usize> Net<Client<E>> {
    /// Write one chunk packet (`num_chunks` = 1) with `payload` and queue it for the link
    pub fn send(&mut self, now: Instant, payload: &[u8]) -> Result<(), SendError> {
        let mut buf = [0u8; 1400];
        let t = self
            .m
            .send_chunks(now, Flags::default(), 1, payload, &mut buf)?;
        self.outbox.push_back(((), buf[..t.len].to_vec()));
        Ok(())
    }
}

impl<const N: usize, const E: usize> Net<Server<u32, N, E>> {
    /// Write one chunk packet (`num_chunks` = 1) with `payload` for `peer` and queue it
    pub fn send(&mut self, now: Instant, peer: u32, payload: &[u8]) -> Result<(), SendError> {
        let mut buf = [0u8; 1400];
        let t = self
            .m
            .send_chunks(now, peer, Flags::default(), 1, payload, &mut buf)?;
        self.outbox.push_back((t.to, buf[..t.len].to_vec()));
        Ok(())
    }
}

impl<M: Machine> Machine for Net<M> {
    type Peer = M::Peer;
    type Event = M::Event;
    type App<'a> = M::App<'a>;
    type Error = M::Error;

    fn handle_input<'a>(
        &mut self,
        now: Instant,
        from: M::Peer,
        data: &'a [u8],
    ) -> Result<Received<M::App<'a>>, M::Error> {
        self.m.handle_input(now, from, data)
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.m.handle_timeout(now);
    }

    fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<Transmit<M::Peer>>, BufferTooSmall> {
        if let Some(t) = self.m.poll_transmit(now, buf)? {
            return Ok(Some(t));
        }
        let Some((to, bytes)) = self.outbox.front() else {
            return Ok(None);
        };
        if bytes.len() > buf.len() {
            return Err(BufferTooSmall {
                required: bytes.len(),
            });
        }
        buf[..bytes.len()].copy_from_slice(bytes);
        let t = Transmit {
            to: *to,
            len: bytes.len(),
            kind: FrameKind::Datagram,
        };
        self.outbox.pop_front();
        Ok(Some(t))
    }

    fn poll_event(&mut self) -> Option<M::Event> {
        self.m.poll_event()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.m.poll_timeout()
    }
}

pub fn client_closed(c: &Net<Client>) -> bool {
    c.m.state() == ClientState::Closed
}

pub fn server_stopped<const N: usize>(s: &Net<Server<u32, N>>) -> bool {
    s.m.state() == ServerState::Stopped
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
    }
}
