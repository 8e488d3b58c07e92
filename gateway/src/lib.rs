//! An offline LongPort OpenAPI gateway for testing code built on the official SDKs
//!
//! (crate docs: see the end of part 1)

pub mod reply;
pub mod script;
