//! Teeworlds 0.6 / DDNet UDP control plane: KEEP_ALIVE, CONNECT, CONNECT_ACCEPT, ACCEPT, CLOSE

pub mod client;
pub mod event;
pub mod server;
pub mod token;
pub mod wire;
