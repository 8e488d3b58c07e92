//! Ready-made drivers for the sans-IO machines of [`tether_net`]
//!
//! The machines of `tether_net` own no socket, clock or task: every program that uses them
//! runs the same loop (one input, then [`tether_net::drain`], then sleep until `poll_timeout`).
//! This crate is that loop, written once per runtime, so that a program holds only its protocol
//! logic:
//!
//! | feature | module | game (UDP) | LongPort client | LongPort server |
//! |---|---|---|---|---|
//! | `blocking` (default) | [`blocking`] | client and server over `std::net::UdpSocket` | TCP | TCP |
//! | `tokio` | `tokio` | client and server over `tokio::net::UdpSocket` | TCP, `ws://`, `wss://` | TCP, `ws://` (+ TLS) |
//! | `embassy` (`no_std`) | `embassy` | client over `embassy_net::udp` | TCP | — |
//!
//! The drivers are generic over the contract where the transport allows: one datagram loop
//! serves both game machines, one stream feed ([`rx::feed_one`]) serves both LongPort machines,
//! and every driver follows the backpressure rule (`Error::QueueFull`: drain, feed the same
//! input again) through [`QueueFull`].
#![cfg_attr(not(feature = "std"), no_std)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "std")]
extern crate std;

pub mod client;
pub mod rx;

#[cfg(feature = "std")]
mod datagram;
#[cfg(feature = "std")]
mod hub;

#[cfg(feature = "blocking")]
pub mod blocking;

#[cfg(feature = "tokio")]
pub mod tokio;

#[cfg(feature = "embassy")]
pub mod embassy;

use tether_net::Machine;

/// One thing a blocking or embassy driver hands to your closure: an event of the machine, or the
/// application value one input carried (borrowed from that input)
pub enum Input<'a, M: Machine + 'a> {
    /// A control-plane event
    Event(M::Event),
    /// Application data from a peer (game chunks or the server's CLOSE reason; LongPort
    /// responses, pushes, the server's Close reason, a refused login's message)
    App(M::Peer, M::App<'a>),
}

impl<'a, M: Machine + 'a> core::fmt::Debug for Input<'a, M>
where
    M::Event: core::fmt::Debug,
    M::Peer: core::fmt::Debug,
    M::App<'a>: core::fmt::Debug,
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Input::Event(e) => f.debug_tuple("Event").field(e).finish(),
            Input::App(p, a) => f.debug_tuple("App").field(p).field(a).finish(),
        }
    }
}

#[cfg(any(feature = "blocking", feature = "embassy"))]
impl<'a, M: Machine + 'a> Input<'a, M> {
    /// The event, if this is one (what the drivers' `next_event` keeps)
    pub(crate) fn into_event(self) -> Option<M::Event> {
        match self {
            Input::Event(e) => Some(e),
            Input::App(..) => None,
        }
    }
}

/// A LongPort session id from the OS random source: 128 random bits (32 hex digits on the
/// wire), for [`Grant::new`](tether_net::longport::Grant::new)
///
/// Session ids are bearer secrets (whoever presents one in a Reconnect takes the session over):
/// draw every one from a random source, never from a counter.
///
/// # Panics
/// When the OS random source fails (it does not on supported systems).
#[cfg(feature = "std")]
#[must_use]
pub fn random_session_id() -> tether_net::longport::SessionId {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source");
    tether_net::longport::SessionId::from_random(bytes)
}

/// The end of a `limit` that starts now, for `run(limit, ..)` (a year for absurd limits)
#[cfg(feature = "blocking")]
pub(crate) fn deadline(limit: core::time::Duration) -> std::time::Instant {
    let now = std::time::Instant::now();
    now.checked_add(limit).unwrap_or_else(|| now + YEAR)
}

/// What [`deadline`] gives an absurd limit: 365 days
#[cfg(feature = "blocking")]
const YEAR: core::time::Duration = core::time::Duration::from_secs(31_536_000);

/// Tells the backpressure refusal apart from the other errors of a machine
///
/// `QueueFull` means "nothing was consumed or changed: drain `poll_transmit` and `poll_event`,
/// then feed the same input again"; drivers retry on it and report every other error.
pub trait QueueFull {
    /// True for the profile's `Error::QueueFull`
    fn is_queue_full(&self) -> bool;
}

impl QueueFull for tether_net::game::Error {
    fn is_queue_full(&self) -> bool {
        matches!(self, tether_net::game::Error::QueueFull)
    }
}

impl QueueFull for tether_net::longport::Error {
    fn is_queue_full(&self) -> bool {
        matches!(self, tether_net::longport::Error::QueueFull)
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    #[test]
    fn an_input_shows_what_it_holds() {
        use tether_net::longport::{Client, ClientApp, ClientEvent};
        let e: Input<'_, Client> = Input::Event(ClientEvent::TokenNeeded);
        assert_eq!(format!("{e:?}"), "Event(TokenNeeded)");
        let a: Input<'_, Client> = Input::App(
            (),
            ClientApp::Push {
                cmd: 9,
                body: b"x",
                gzip: false,
            },
        );
        assert_eq!(
            format!("{a:?}"),
            "App((), Push { cmd: 9, body: [120], gzip: false })"
        );
    }

    #[test]
    fn only_queue_full_is_queue_full() {
        assert!(tether_net::game::Error::QueueFull.is_queue_full());
        assert!(!tether_net::game::Error::Closed.is_queue_full());
        assert!(tether_net::longport::Error::QueueFull.is_queue_full());
        assert!(!tether_net::longport::Error::Closed.is_queue_full());
    }

    #[cfg(feature = "blocking")]
    #[test]
    fn a_deadline_is_the_limit_from_now_or_a_year_for_absurd_limits() {
        let before = std::time::Instant::now();
        let d = deadline(core::time::Duration::from_secs(5));
        let after = std::time::Instant::now();
        assert!(d >= before + core::time::Duration::from_secs(5));
        assert!(d <= after + core::time::Duration::from_secs(5));
        let far = deadline(core::time::Duration::MAX);
        assert!(far >= before + YEAR && far <= std::time::Instant::now() + YEAR);
        assert_eq!(YEAR.as_secs(), 365 * 24 * 3600);
    }

    #[test]
    fn session_ids_are_random() {
        let (a, b) = (random_session_id(), random_session_id());
        assert_eq!(a.as_str().len(), 32);
        assert_ne!(a.as_str(), b.as_str());
    }
}
