//! Sans-IO state machines that keep connections alive and authenticated
//!
//! (Crate docs with the run-loop contract are completed once the first machine lands.)
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

pub use io::{BufferTooSmall, FrameKind, Received, Transmit};
pub use machine::Machine;
pub use time::{Duration, Instant};
