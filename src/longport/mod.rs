//! LongPort OpenAPI socket control plane: auth, heartbeat, reconnect, close, request correlation

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
