//! Sans-IO state machines that keep connections alive and authenticated
//!
//! `tether_net` implements two wire protocols as pure state machines. Bytes and timestamps go in;
//! frames to send, events and the next deadline come out. The caller owns every socket, clock,
//! allocator and random source, so the same machines run under tokio, a blocking std loop,
//! embassy, a C host, a fuzzer or a simulator on a virtual clock.
//!
//! | profile | transport | machines |
//! |---|---|---|
//! | [`game`]: Teeworlds 0.6 / DDNet: control messages (KEEP_ALIVE, CONNECT, CONNECT_ACCEPT, ACCEPT, CLOSE; vanilla and DDNet token modes) and an opt-in chunk layer ([`game::Reliable`]: vital chunks in order exactly once, resends, Huffman compression, system messages, the map download of [`game::join`], server info) | UDP datagrams | [`game::Client`], [`game::Server`] |
//! | [`longport`]: LongPort OpenAPI socket control plane (auth, heartbeat, reconnect, server close, request correlation) | TCP (2-byte handshake) or WebSocket | [`longport::Client`], [`longport::Server`] |
//!
//! # One contract for the four machines
//!
//! Learn it once; it holds for every machine:
//!
//! | what | name |
//! |---|---|
//! | drive it | inherent `handle_input`, `handle_timeout`, `poll_transmit`, `poll_event`, `poll_timeout` (+ `handle_frame`, `handle_closed` for LongPort's stream and message transports); the same methods through the [`Machine`] trait for generic code |
//! | build it | `Client::new(config)` / `Server::new(config)` with default capacities, `with_capacities(config)` for others; configs are `Config::new(..)` plus clamping `with_*` setters, every timeout a [`Duration`] |
//! | the other side | `peer`: `()` for a client, your key `P` (an address, a connection id) for a server |
//! | it is up | `ClientEvent::Connected { .. }`, `ServerEvent::Connected { peer, .. }` |
//! | it ended | `ClientEvent::Closed { cause }` (always the last event), `ServerEvent::Closed { peer, cause }`; one `CloseCause` per profile with the same spellings: `Local`, `Shutdown`, `Peer`, `Timeout`, `ConnectTimeout`, ... |
//! | end it | `close(now, reason)` on a client, `close(now, peer, reason)` on a server (LongPort adds its close code), `shutdown(now, reason)` on a server, then `ServerEvent::ShutdownComplete` |
//! | what went wrong | one `Error` per profile, the same names for the same meaning: `QueueFull`, `UnknownPeer`, `NotOpen`, `Closed`, `BufferTooSmall { required }`, `TooLong { len, max }` |
//! | data | borrowed in [`Received::app`] (`ClientApp`, `ServerApp`), never copied; texts the peer sent (close reasons, error messages) are borrowed [`PeerText`]s there too; events are small and `Copy` |
//! | counters | `stats()`: `u64` counters that saturate |
//!
//! # The run loop
//!
//! 1. Do exactly one input: bytes that arrived (`handle_input`, or `handle_frame` for a WebSocket
//!    Ping/Pong/Close), a due timer (`handle_timeout`), a lost transport (`handle_closed`), or a
//!    command (an inherent method such as `connect`, `close`, `send_request`).
//! 2. Drain: send every frame [`Machine::poll_transmit`] writes into your buffer ([`Transmit`]
//!    says how many bytes, to whom and as what [`FrameKind`]; a buffer that is too small gives
//!    [`BufferTooSmall`] with the exact size and leaves the frame queued), then take **one**
//!    event from [`Machine::poll_event`] and handle it. Handling it may issue commands; whatever
//!    they queue goes out when you go back to the frames. Repeat until both are empty.
//!    [`drain`] is exactly this step with callbacks; [`poll_output`] is the same step one item at
//!    a time (the next frame, else the next event), for async loops that `.await` each send.
//! 3. Sleep until [`Machine::poll_timeout`], new bytes or a new command, then go to 1.
//!
//! ```
//! use std::collections::VecDeque;
//! use tether_net::game::{Client, ClientConfig, ClientEvent, Server, ServerConfig, ServerEvent, TokenSecret};
//! use tether_net::{drain, Instant};
//!
//! let mut client = Client::new(ClientConfig::new());
//! // the secret must come from a random source; a constant is for this example only
//! let mut server = Server::new(ServerConfig::new(TokenSecret([7; 16])));
//! let (mut to_server, mut to_client) = (VecDeque::new(), VecDeque::new());
//! let mut buf = [0u8; 1400];
//! let mut now = Instant::ZERO;
//! let mut log = Vec::new();
//!
//! client.connect(now).unwrap(); // 1. one input: a command
//! while now < Instant::from_secs(30) {
//!     // 2. drain both machines; the "network" is two queues, peer address 1 on the server
//!     drain(&mut client, now, &mut buf, |_, bytes| {
//!         to_server.push_back(bytes.to_vec());
//!         Ok::<(), ()>(())
//!     }, |client, event| {
//!         log.push(format!("client: {event:?}"));
//!         if let ClientEvent::Connected { .. } = event {
//!             client.close(now, "bye").unwrap(); // a command while handling an event
//!         }
//!     }).unwrap();
//!     drain(&mut server, now, &mut buf, |_, bytes| {
//!         to_client.push_back(bytes.to_vec());
//!         Ok::<(), ()>(())
//!     }, |_, event: ServerEvent<u32>| log.push(format!("server: {event:?}"))).unwrap();
//!     if let Some(d) = to_server.pop_front() {
//!         let _ = server.handle_input(now, 1, &d).unwrap(); // 1. one input: a datagram
//!     } else if let Some(d) = to_client.pop_front() {
//!         let _ = client.handle_input(now, (), &d).unwrap();
//!     } else {
//!         // 3. nothing in flight: "sleep" until the earliest deadline
//!         let Some(t) = [client.poll_timeout(), server.poll_timeout()].into_iter().flatten().min()
//!         else { break };
//!         now = t;
//!         client.handle_timeout(now);
//!         server.handle_timeout(now);
//!     }
//! }
//! assert!(log[0].starts_with("client: Connected"));
//! assert!(log.iter().any(|l| l.starts_with("server: Connected { peer: 1")));
//! assert!(log.iter().any(|l| l.starts_with("server: Closed { peer: 1, cause: Peer")));
//! ```
//!
//! # Rules the machines keep
//!
//! * **Time** is an [`Instant`] you supply from a monotonic source (see [`time`]). A `now`
//!   earlier than the last one is a backward step: it counts as no time passing, timers keep the
//!   time they had left and deadlines are reported in your clock. Calling `handle_timeout` early
//!   is a no-op. No deadline is ever more than [`time::MAX_DELAY`] after the latest `now`.
//! * **Backpressure**: any input or command may return the profile's `Error::QueueFull`; then
//!   nothing was consumed or changed. Drain `poll_transmit` and `poll_event` and feed the same
//!   input again: after a complete drain the next input or command is never refused.
//! * **Nothing random is generated inside**: token secrets, session ids and jitter come from you.
//! * **Application data** (game chunk packets, LongPort business packets) comes back borrowed in
//!   [`Received::app`], never copied into the machine.
//! * **Stream transports** (LongPort over TCP) report how many bytes a call consumed and, for a
//!   partial frame, [`Received::needed`]; partial frames stay in your buffer. A datagram or a
//!   WebSocket message is consumed whole.
//! * **Memory** is bounded by const-generic capacities; no allocation happens on any path of the
//!   game profile or the LongPort control plane, and no peer input can make a machine panic.
//!
//! # Features
//!
//! | feature | what it adds |
//! |---|---|
//! | (none) | everything above, `#![no_std]`, no allocator needed |
//! | `alloc` | [`longport::pb`]: prost messages for the LongPort control bodies |
//! | `std` | `alloc`, and `time::Epoch` (conversions between `std::time::Instant` and [`Instant`]) |
//! | `gzip` | `longport::gzip`: bounded, allocation-free inflate of gzip bodies |
//! | `defmt` | `defmt::Format` on every public type |
//! | `testing` | `tether_net::testing`: virtual clock, seeded lossy link, pair and fleet simulators |
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]
#![warn(clippy::std_instead_of_core, clippy::alloc_instead_of_core)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod config;
pub mod game;
pub mod io;
pub mod longport;
pub mod machine;
pub mod time;
pub mod wire;

#[cfg(feature = "testing")]
pub mod testing;

pub use io::{BufferTooSmall, FrameKind, PeerText, Received, Transmit};
pub use machine::{drain, poll_output, DrainError, Machine, Output};
pub use time::{Duration, Instant};
