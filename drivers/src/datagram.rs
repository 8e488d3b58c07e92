//! How a datagram machine's peer key maps to UDP addresses

use std::net::{SocketAddr, SocketAddrV4};

#[cfg(feature = "blocking")]
pub use batch::BatchInput;

/// How a machine's peer key maps to UDP addresses
pub trait DatagramPeer: Copy + Eq {
    /// The key for a datagram that came from `addr`; `None` for a source this key type cannot
    /// hold (an IPv6 sender where the key is a [`SocketAddrV4`]): the driver drops that
    /// datagram without feeding it (the blocking driver counts it in `UdpStats::unkeyed`)
    fn from_addr(addr: SocketAddr) -> Option<Self>;
    /// Where a frame for this key goes; `None`: to the address the socket is connected to
    fn to_addr(self) -> Option<SocketAddr>;
}

/// A client's peer: the one server its socket is connected to
impl DatagramPeer for () {
    fn from_addr(_: SocketAddr) -> Option<Self> {
        Some(())
    }
    fn to_addr(self) -> Option<SocketAddr> {
        None
    }
}

/// A server's peer: the client's address
impl DatagramPeer for SocketAddr {
    fn from_addr(addr: SocketAddr) -> Option<Self> {
        Some(addr)
    }
    fn to_addr(self) -> Option<SocketAddr> {
        Some(self)
    }
}

/// The peer of a server on an IPv4 socket: 8 bytes where a `SocketAddr` takes 32, so a game
/// server's peer slot is 20 bytes instead of 44 (at 65,536 peers 1.25 MiB of slots instead of
/// 2.75 MiB, which keeps the peer table in a 2 MiB L2 cache). IPv6 senders, IPv4-mapped ones
/// included, are not keyed (on an IPv6 socket a reply to an IPv4 key could not be sent): bind
/// the socket to an IPv4 address.
impl DatagramPeer for SocketAddrV4 {
    fn from_addr(addr: SocketAddr) -> Option<Self> {
        match addr {
            SocketAddr::V4(a) => Some(a),
            SocketAddr::V6(_) => None,
        }
    }
    fn to_addr(self) -> Option<SocketAddr> {
        Some(SocketAddr::V4(self))
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
