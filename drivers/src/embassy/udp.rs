//! Datagram machines over `embassy_net::udp::UdpSocket`

use embassy_futures::select::{select, Either};
use embassy_net::udp::{BindError, PacketMetadata, UdpSocket};
use embassy_net::{IpEndpoint, Stack};
use embassy_time::{Duration, Timer};
use tether_net::{Instant, Machine};

use super::now;
use crate::{Input, QueueFull};

/// Largest datagram handled (game packets are at most 1400 bytes)
const DATAGRAM: usize = 1500;

/// How a datagram machine's peer key maps to embassy endpoints
pub trait EmbassyPeer: Copy + Eq {
    /// The key of a datagram from `from`
    fn from_endpoint(from: IpEndpoint) -> Self;
    /// Where a frame for this key goes; `None`: the driver's remote endpoint
    fn to_endpoint(self) -> Option<IpEndpoint>;
}

impl EmbassyPeer for () {
    fn from_endpoint(_: IpEndpoint) -> Self {}
    fn to_endpoint(self) -> Option<IpEndpoint> {
        None
    }
}

impl EmbassyPeer for IpEndpoint {
    fn from_endpoint(from: IpEndpoint) -> Self {
        from
    }
    fn to_endpoint(self) -> Option<IpEndpoint> {
        Some(self)
    }
}

/// The buffers of a UDP socket: `META` datagrams of metadata and `N` bytes each way
pub struct UdpBuffers<const META: usize = 8, const N: usize = 4096> {
    rx_meta: [PacketMetadata; META],
    tx_meta: [PacketMetadata; META],
    rx: [u8; N],
    tx: [u8; N],
}

impl<const META: usize, const N: usize> UdpBuffers<META, N> {
    /// Empty buffers (put them in a `static` or a long-lived task frame)
    pub const fn new() -> Self {
        UdpBuffers {
            rx_meta: [PacketMetadata::EMPTY; META],
            tx_meta: [PacketMetadata::EMPTY; META],
            rx: [0; N],
            tx: [0; N],
        }
    }
}

impl<const META: usize, const N: usize> Default for UdpBuffers<META, N> {
    fn default() -> Self {
        Self::new()
    }
}

/// A datagram machine on a bound `embassy_net` UDP socket
///
/// For a client, `remote` is the server: frames go there, and datagrams from anywhere else are
/// dropped. For a server, `remote` is not used.
pub struct UdpDriver<'s, M: Machine> {
    sock: UdpSocket<'s>,
    remote: IpEndpoint,
    machine: M,
    out: [u8; DATAGRAM],
    inp: [u8; DATAGRAM],
    send_errors: u64,
}

impl<'s, M> UdpDriver<'s, M>
where
    M: Machine,
    M::Peer: EmbassyPeer,
    M::Error: QueueFull,
{
    /// Drive `machine` over `sock` (bound already)
    pub fn new(sock: UdpSocket<'s>, remote: IpEndpoint, machine: M) -> Self {
        UdpDriver {
            sock,
            remote,
            machine,
            out: [0; DATAGRAM],
            inp: [0; DATAGRAM],
            send_errors: 0,
        }
    }

    /// A socket on `stack` with `buffers`, bound to an ephemeral port, driving `machine`
    ///
    /// # Errors
    /// The bind error.
    pub fn bind<const META: usize, const N: usize>(
        stack: Stack<'s>,
        buffers: &'s mut UdpBuffers<META, N>,
        remote: IpEndpoint,
        machine: M,
    ) -> Result<Self, BindError> {
        let UdpBuffers {
            rx_meta,
            tx_meta,
            rx,
            tx,
        } = buffers;
        let mut sock = UdpSocket::new(stack, rx_meta, rx, tx_meta, tx);
        sock.bind(0)?;
        Ok(Self::new(sock, remote, machine))
    }

    /// The machine (getters)
    pub fn machine(&self) -> &M {
        &self.machine
    }

    /// Sends that failed (UDP is lossy: the machine's timers recover)
    pub fn send_errors(&self) -> u64 {
        self.send_errors
    }

    /// Issue a command at the current time; what it queues goes out at the start of the next
    /// [`UdpDriver::run`]
    pub fn command<R>(&mut self, f: impl FnOnce(&mut M, Instant) -> R) -> R {
        f(&mut self.machine, now())
    }

    /// Run the loop until the next event (at most `limit`; `None` when none came), dropping
    /// application values
    pub async fn next_event(&mut self, limit: Duration) -> Option<M::Event> {
        self.run(limit, |_, _, input| input.into_event()).await
    }

    /// Run the loop for at most `limit`, handing every event and application value to `f`;
    /// `Some(r)` as soon as `f` returns it (later events of that drain wait in the machine for
    /// the next call), `None` when `limit` elapsed
    pub async fn run<R>(
        &mut self,
        limit: Duration,
        mut f: impl for<'a> FnMut(&mut M, Instant, Input<'a, M>) -> Option<R>,
    ) -> Option<R> {
        let end = embassy_time::Instant::now() + limit;
        loop {
            if let Some(r) = self.flush(&mut f).await {
                return Some(r);
            }
            let wake = super::wake_at(&self.machine, end)?;
            match select(self.sock.recv_from(&mut self.inp), Timer::at(wake)).await {
                Either::First(Ok((n, meta))) => {
                    let from = meta.endpoint;
                    if M::Peer::to_endpoint(M::Peer::from_endpoint(from)).is_none()
                        && from != self.remote
                    {
                        continue; // a client hears only its server
                    }
                    if let Some(r) = self.feed(n, M::Peer::from_endpoint(from), &mut f).await {
                        return Some(r);
                    }
                }
                // a truncated datagram or the like: dropped
                Either::First(Err(_)) => {}
                Either::Second(()) => self.machine.handle_timeout(now()),
            }
        }
    }

    async fn feed<R>(
        &mut self,
        n: usize,
        from: M::Peer,
        f: &mut impl for<'a> FnMut(&mut M, Instant, Input<'a, M>) -> Option<R>,
    ) -> Option<R> {
        loop {
            let t = now();
            let refused = match self.machine.handle_input(t, from, &self.inp[..n]) {
                Ok(r) => {
                    return r
                        .into_app()
                        .and_then(|app| f(&mut self.machine, t, Input::App(from, app)));
                }
                Err(e) => e,
            };
            if !refused.is_queue_full() {
                return None;
            }
            if let Some(r) = self.flush(f).await {
                return Some(r);
            }
        }
    }

    /// Step 2, awaited: each frame is sent before the next event is taken
    async fn flush<R>(
        &mut self,
        f: &mut impl for<'a> FnMut(&mut M, Instant, Input<'a, M>) -> Option<R>,
    ) -> Option<R> {
        loop {
            let t = now();
            while let Ok(Some(tx)) = self.machine.poll_transmit(t, &mut self.out) {
                let to = tx.to.to_endpoint().unwrap_or(self.remote);
                if self.sock.send_to(&self.out[..tx.len], to).await.is_err() {
                    self.send_errors += 1;
                }
            }
            let ev = self.machine.poll_event()?;
            if let Some(r) = f(&mut self.machine, t, Input::Event(ev)) {
                return Some(r);
            }
        }
    }
}
