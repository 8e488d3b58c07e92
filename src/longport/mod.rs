//! LongPort OpenAPI socket control plane: auth, heartbeat, reconnect, close, request correlation
//!
//! The LongPort (Longbridge) OpenAPI socket protocol carries protobuf bodies in small binary
//! packets (request, response, push) over TCP (after a 2-byte handshake) or WebSocket (one
//! packet per binary message). Commands 0..=3 are the control plane — Close push, Heartbeat,
//! Auth, Reconnect — and everything above is business traffic that this crate passes through
//! borrowed.
//!
//! | module | what |
//! |---|---|
//! | [`wire`] | packet headers and packets: `parse`, `emit`, `buffer_len` |
//! | [`deframe`] | TCP handshake and stream deframer, WebSocket message decoding, upgrade query |
//! | [`control`] | borrowed protobuf codecs of the control bodies |
//! | [`client`] | [`Client`]: auth → session, heartbeat + RTT, reconnect, close policy, requests |
//! | [`server`] | the server machine |
//! | [`event`] | [`ClientEvent`] and the types both roles share ([`RequestId`], [`DisconnectReason`]) |
//! | `gzip` | (feature `gzip`) bounded inflate of gzip bodies |
//! | `pb` | (feature `alloc`) prost types generated from `proto/control.proto` |
//!
//! # Client quick start
//!
//! ```
//! use tether_net::longport::{Client, ClientConfig, ClientEvent, Credentials, DefaultClient};
//! use tether_net::{FrameKind, Instant};
//!
//! let mut client = DefaultClient::new(ClientConfig::tcp());
//! let now = Instant::from_secs(1);
//! client.connect(now, Credentials::new("one-time-token")).unwrap();
//! assert_eq!(client.poll_event(), Some(ClientEvent::ConnectTransport { attempt: 0 }));
//! // ... the caller opens a TCP connection, then:
//! client.handle_connected(now).unwrap();
//! let mut buf = [0u8; 1024];
//! let t = client.poll_transmit(now, &mut buf).unwrap().unwrap();
//! assert_eq!(t.kind, FrameKind::Stream);
//! assert_eq!(&buf[..2], &[0x11, 0x09]); // handshake, then the Auth request
//! # let _: Option<tether_net::longport::client::App<'_>> = None;
//! # let _ = Client::<1, 8, 32, 32, 32>::new(ClientConfig::websocket());
//! ```

pub mod client;
pub mod control;
pub mod deframe;
pub mod event;
#[cfg(feature = "gzip")]
pub mod gzip;
#[cfg(feature = "alloc")]
pub mod pb;
pub mod server;
pub mod wire;

pub use client::{
    App, Client, ClientConfig, ClientState, ClientStats, Credentials, DefaultClient, SendError,
};
pub use event::{ClientEvent, CloseAction, DisconnectReason, LoginKind, RequestFailure, RequestId};
