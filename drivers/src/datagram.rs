//! How a datagram machine's peer key maps to UDP addresses

use std::net::SocketAddr;

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
