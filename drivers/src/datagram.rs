//! How a datagram machine's peer key maps to UDP addresses

use std::net::SocketAddr;

#[cfg(feature = "blocking")]
pub use batch::BatchInput;

/// How a machine's peer key maps to UDP addresses
pub trait DatagramPeer: Copy + Eq {
    /// The key for a datagram that came from `addr`
    fn from_addr(addr: SocketAddr) -> Self;
    /// Where a frame for this key goes; `None`: to the address the socket is connected to
    fn to_addr(self) -> Option<SocketAddr>;
}

/// A client's peer: the one server its socket is connected to
impl DatagramPeer for () {
    fn from_addr(_: SocketAddr) -> Self {}
    fn to_addr(self) -> Option<SocketAddr> {
        None
    }
}

/// A server's peer: the client's address
impl DatagramPeer for SocketAddr {
    fn from_addr(addr: SocketAddr) -> Self {
        addr
    }
    fn to_addr(self) -> Option<SocketAddr> {
        Some(self)
    }
}

#[cfg(feature = "blocking")]
mod batch {
    use core::hash::Hash;

    use tether_net::game::{Layer, Server, ServerApp};
    use tether_net::{Instant, Machine, Received};

    /// A machine that takes a batch of datagrams at once (what `recvmmsg` hands over) with the
    /// result of feeding them one at a time
    ///
    /// Implemented for the game [`Server`](tether_net::game::Server) (its `handle_batch` looks the
    /// senders of a group of datagrams up together, so that the cache misses of a large peer table
    /// overlap). [`UdpDriver::run_batched`](crate::blocking::UdpDriver::run_batched) needs it.
    pub trait BatchInput: Machine {
        /// Feed `batch[i] = (sender, bytes)` in order, calling `on_each(machine, i, received)` right
        /// after datagram `i` (where the driver hands out frames, events and application values as
        /// after a single input); returns how many were consumed
        ///
        /// When that is less than `batch.len()`, `batch[returned]` was refused with `QueueFull`
        /// (nothing of it consumed): drain `poll_transmit` and `poll_event`, feed the rest again.
        fn handle_batch<'a>(
            &mut self,
            now: Instant,
            batch: &[(Self::Peer, &'a [u8])],
            on_each: impl FnMut(&mut Self, usize, Received<Self::App<'a>>),
        ) -> usize;
    }

    impl<P, const PEERS: usize, const EVENTS: usize, L> BatchInput for Server<P, PEERS, EVENTS, L>
    where
        P: Copy + Eq + Hash,
        L: Layer,
    {
        fn handle_batch<'a>(
            &mut self,
            now: Instant,
            batch: &[(P, &'a [u8])],
            on_each: impl FnMut(&mut Self, usize, Received<ServerApp<'a>>),
        ) -> usize {
            Server::handle_batch(self, now, batch, on_each)
        }
    }
}
