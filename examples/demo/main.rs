//! In-memory demo: every machine of tether on a virtual clock over a seeded lossy link
//!
//! ```text
//! cargo run --example demo
//! ```
//! Prints a timeline with one line per frame: virtual time, direction, message name, and at the
//! end of the line the frame's bytes in lowercase hex separated by single spaces.

mod game;
mod longport;
mod serve;

use tether_net::testing::{Direction, Fate, TraceEntry};

/// Print one timeline line: `time  direction  fate  name  hex bytes`
pub fn line(e: &TraceEntry<'_>, name: &str) {
    let dir = match e.dir {
        Direction::ClientToServer => "client -> server",
        Direction::ServerToClient => "server -> client",
    };
    let fate = match e.fate {
        Fate::Delivered => "",
        Fate::Duplicate => " (duplicate)",
        Fate::Lost => " (LOST)",
        _ => " (dropped)",
    };
    let hex: Vec<String> = e.bytes.iter().map(|b| format!("{b:02x}")).collect();
    println!(
        "{:>12}  {dir}  {:<40} {}",
        format!("{}", e.at),
        format!("{name}{fate}"),
        hex.join(" ")
    );
}

fn main() {
    println!("== game profile: Teeworlds 0.6 / DDNet control messages over a lossy UDP link ==");
    game::run();
    println!();
    println!("== game profile: the chunk layer (vital chunks, resend, compression) ==");
    game::run_chunks();
    println!();
    println!("== game profile: serving a join (game::serve against game::join) ==");
    serve::run();
    println!();
    println!("== longport profile: LongPort OpenAPI control plane over TCP ==");
    longport::run();
}
