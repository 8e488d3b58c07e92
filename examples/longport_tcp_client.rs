//! LongPort OpenAPI socket client over std TCP: auth, one echoed business request, one
//! heartbeat RTT, close
//!
//! ```text
//! cargo run --example longport_tcp_server -- --listen 127.0.0.1:7000
//! cargo run --example longport_tcp_client -- 127.0.0.1:7000 [--token T]
//! ```
//! Prints one line per event; exits 0 once the echo and the RTT are in, 1 on failure.

#[path = "../tests/support/longport_tcp.rs"]
mod longport_tcp;

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

fn main() {
    let mut addr: Option<SocketAddr> = None;
    let mut token = "demo-token".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--token" {
            token = args.next().unwrap_or_default();
        } else if addr.is_none() {
            addr = a.to_socket_addrs().ok().and_then(|mut i| i.next());
        }
    }
    let Some(addr) = addr else {
        eprintln!("usage: longport_tcp_client ADDR [--token T]");
        std::process::exit(2);
    };
    let body = b"hello from tether";
    match longport_tcp::run_client(
        addr,
        &token,
        body,
        Duration::from_secs(1),
        Duration::from_secs(10),
        |line| println!("{line}"),
    ) {
        Ok(r) => {
            println!(
                "done: session {}, echo {:?}, heartbeat rtt {:?}",
                r.session_id,
                String::from_utf8_lossy(&r.echo),
                r.rtt
            );
        }
        Err(e) => {
            eprintln!("failed: {e}");
            std::process::exit(1);
        }
    }
}
