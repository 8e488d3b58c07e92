//! Interop harness: tether's LongPort server machine behind a real WebSocket listener
//!
//! [`start`] runs `tether_net_drivers::tokio::LongPortServer` on one WebSocket listener: it
//! upgrades each connection with `tokio-tungstenite` (refusing upgrade requests whose
//! `version/codec/platform` query does not parse, with HTTP 400) and drives **one**
//! [`tether_net::longport::Server`] from **one** tokio task; connection tasks talk to it over
//! bounded channels. This crate adds only the application policy below.
//!
//! Application policy (the parts the sans-IO machine leaves to its caller):
//!
//! * Auth: the token must equal [`Config::token`] exactly; anything else is rejected with status
//!   5 (Unauthenticated) and `Error{401, "invalid token"}`, after which the machine pushes
//!   `Close{AuthError}` and sends a WebSocket Close 1008. Session ids are 128 bits from
//!   the OS random source, 32 hex digits on the wire (they are bearer secrets).
//! * Reconnect: a session the machine still knows is accepted with a fresh session id.
//! * Business requests (cmd ≥ 4) are answered with status 0 and the request body echoed
//!   byte-for-byte (gzip flag kept).
//! * WebSocket Pings are the machine's ping transmits; the machine's Pong transmits are dropped
//!   because tungstenite already answers every Ping by itself (sending both would duplicate
//!   Pongs).
//!
//! The binary `longport-ws-server` is a thin command-line wrapper around [`start`]. It is a
//! protocol test harness (echo); the offline gateway the full official SDK runs against is
//! `gateway/`'s `longport-gateway`, on the same server driver.

#![forbid(unsafe_code)]

mod driver;

pub use driver::{start, Config, Running, Snapshot};

/// Connection ids handed to the machine (a counter; never reused)
pub type ConnId = u64;

/// Connections the harness's machine holds at once
pub const PEERS: usize = 64;

/// Sessions the harness's machine remembers
pub const SESSIONS: usize = 256;
