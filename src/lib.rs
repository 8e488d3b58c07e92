//! Sans-IO state machines that keep connections alive and authenticated
//!
//! `tether` implements the control plane of two wire protocols as pure state machines. Bytes and
//! timestamps go in; frames to send, events and the next deadline come out. The caller owns every
//! socket, clock, allocator and random source, so the same machines run under tokio, a blocking
//! std loop, embassy, a C host, a fuzzer or a simulator on a virtual clock.
//!
//! | profile | transport | machines |
//! |---|---|---|
//! | [`game`]: Teeworlds 0.6 / DDNet control messages (KEEP_ALIVE, CONNECT, CONNECT_ACCEPT, ACCEPT, CLOSE; vanilla and DDNet token modes) | UDP datagrams | [`game::Client`], [`game::Server`] |
//! | [`longport`]: LongPort OpenAPI socket control plane (auth, heartbeat, reconnect, server close, request correlation) | TCP (2-byte handshake) or WebSocket | [`longport::Client`], [`longport::Server`] |
//!
//! # The run-loop contract
//!
//! All four machines implement [`Machine`] and are driven the same way:
//!
//! 1. Do exactly one input: bytes that arrived (`handle_input`, or `handle_frame` for a WebSocket
//!    Ping/Pong/Close), a due timer (`handle_timeout`), a lost transport (`handle_closed`), or a
//!    command (an inherent method such as `connect`, `close`, `send_request`).
//! 2. Drain: send every frame [`Machine::poll_transmit`] writes into your buffer ([`Transmit`]
//!    says how many bytes, to whom and as what [`FrameKind`]; a buffer that is too small gives
//!    [`BufferTooSmall`] with the exact size and leaves the frame queued), then take **one**
//!    event from [`Machine::poll_event`] and handle it. Handling it may issue commands; whatever
//!    they queue goes out when you go back to the frames. Repeat until both are empty.
//!    [`drain`] is exactly this step.
//! 3. Sleep until [`Machine::poll_timeout`], new bytes or a new command, then go to 1.
//!
//! Rules the machines keep:
//!
//! * Time is an [`Instant`] you supply (microseconds since your epoch). A `now` earlier than the
//!   last one is clamped, never a panic; calling `handle_timeout` early is a no-op.
//! * Nothing random is generated inside: tokens secrets, session ids and jitter come from you.
//! * Application data (game chunk packets, LongPort business packets) comes back borrowed in
//!   [`Received::app`], never copied into the machine. Control effects become small owned events.
//! * Stream transports (LongPort over TCP) report how many bytes a call consumed and, for a
//!   partial frame, [`Received::needed`]; partial frames stay in your buffer. A datagram or a
//!   WebSocket message is consumed whole.
//! * Memory is bounded by const-generic capacities; no allocation happens on any path of the
//!   game profile or the LongPort control plane, and no peer input can make a machine panic.
//!
//! ```
//! use tether_net::game::{Client, ClientConfig, ClientEvent, Server, ServerConfig, ServerEvent, TokenSecret};
//! use tether_net::Instant;
//!
//! let mut client = Client::new(ClientConfig::default());
//! let mut server = Server::new(ServerConfig::new(TokenSecret([7; 16])));
//! let mut now = Instant::ZERO;
//! let (mut buf, mut events) = ([0u8; 1400], Vec::new());
//!
//! client.connect(now).unwrap(); // 1. one input: a command
//! for _ in 0..40 {
//!     // 2. drain transmits; here each one is delivered straight to the other side (address 1),
//!     //    which is an input there, so keep draining until both sides are quiet
//!     loop {
//!         let mut quiet = true;
//!         while let Some(t) = client.poll_transmit(now, &mut buf).unwrap() {
//!             let _ = server.handle_input(now, 1u32, &buf[..t.len]).unwrap();
//!             quiet = false;
//!         }
//!         while let Some(t) = server.poll_transmit(now, &mut buf).unwrap() {
//!             let _ = client.handle_input(now, (), &buf[..t.len]).unwrap();
//!             quiet = false;
//!         }
//!         if quiet {
//!             break;
//!         }
//!     }
//!     // 3. drain events
//!     while let Some(e) = client.poll_event() {
//!         events.push(format!("client: {e:?}"));
//!     }
//!     while let Some(e) = server.poll_event() {
//!         if let ServerEvent::Connected { peer, .. } = e {
//!             events.push(format!("server: peer {peer} connected"));
//!         }
//!     }
//!     // 4. "sleep" until the earliest deadline, then let the timers fire
//!     now = [client.poll_timeout(), server.poll_timeout()].into_iter().flatten().min().unwrap();
//!     client.handle_timeout(now);
//!     server.handle_timeout(now);
//! }
//! assert!(events.iter().any(|e| e.starts_with("client: Connected")));
//! assert!(events.contains(&"server: peer 1 connected".to_string()));
//! assert!(server.is_online(1), "keep-alives kept the peer online for {now}");
//! ```
//!
//! # Features
//!
//! | feature | what it adds |
//! |---|---|
//! | (none) | everything above, `#![no_std]`, no allocator needed |
//! | `alloc` | [`longport::pb`]: prost messages for the LongPort control bodies |
//! | `std` | `alloc` plus std integration |
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

pub mod game;
pub mod io;
pub mod longport;
pub mod machine;
pub mod time;
pub mod wire;

#[cfg(feature = "testing")]
pub mod testing;

pub use io::{BufferTooSmall, FrameKind, PeerText, Received, Transmit};
pub use machine::{drain, DrainError, Machine};
pub use time::{Duration, Instant};
