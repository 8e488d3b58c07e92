//! LongPort OpenAPI socket server over std TCP: auth with a fixed token, business requests echoed
//!
//! ```text
//! cargo run --example longport_tcp_server -- [--listen 127.0.0.1:PORT] [--token T]
//! ```
//! Prints `listening on ADDR`, then one line per connection and per event. Any Auth token other
//! than T (default `demo-token`) is refused with status 5 and `Close{AuthError}`.

#[path = "../tests/support/longport_tcp.rs"]
mod longport_tcp;

use std::net::TcpListener;
use std::sync::atomic::AtomicBool;

fn main() {
    let mut listen = "127.0.0.1:0".to_string();
    let mut token = "demo-token".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--listen", Some(v)) => listen = v,
            ("--token", Some(v)) => token = v,
            _ => {
                eprintln!("usage: longport_tcp_server [--listen ADDR] [--token T]");
                std::process::exit(2);
            }
        }
    }
    let listener = TcpListener::bind(&listen).unwrap_or_else(|e| {
        eprintln!("cannot listen on {listen}: {e}");
        std::process::exit(1);
    });
    println!("listening on {}", listener.local_addr().expect("bound"));
    let stop = AtomicBool::new(false);
    if let Err(e) = longport_tcp::serve(listener, &token, &stop, |line| println!("{line}")) {
        eprintln!("server error: {e}");
        std::process::exit(1);
    }
}
