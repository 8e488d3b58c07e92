//! An offline LongPort OpenAPI gateway for testing code built on the official SDKs
//!
//! (crate docs: see the end of part 1)

pub mod feed;
pub mod http;
pub mod market;
pub mod quote;
pub mod reply;
pub mod script;
pub mod session;
pub mod token;
pub mod trade;
