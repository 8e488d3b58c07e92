//! LongPort OpenAPI socket server over std TCP: auth with a fixed token, business requests echoed
//!
//! ```text
//! cargo run --example longport_tcp_server -- [--listen 127.0.0.1:PORT] [--token T]
//! ```
//! Prints `listening on ADDR`, then one line per connection and per event. Any Auth token other
//! than T (default `demo-token`) is refused with status 5 and `Close{AuthError}`. Session ids
//! are 128 random bits (they are bearer secrets). The socket work (non-blocking sockets, bounded
//! buffers per connection, the run loop) is `tether_net_drivers::blocking::TcpServer`.

use std::time::Duration;

use tether_net::longport::{ServerConfig, Status};
use tether_net_drivers::blocking::{Grant, ServerInput, ServerItem, TcpServer};
use tether_net_drivers::random_session_id;

/// Session lifetime granted
const SESSION_TTL_MS: i64 = 3_600_000;

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
    let mut server = TcpServer::bind(&listen, ServerConfig::new()).unwrap_or_else(|e| {
        eprintln!("cannot listen on {listen}: {e}");
        std::process::exit(1);
    });
    println!("listening on {}", server.local_addr().expect("bound"));
    let served = server.run(Duration::MAX, |ctl, item| {
        match item {
            ServerItem::Accepted { peer, remote, .. } => {
                println!("conn {peer}: connected from {remote}")
            }
            ServerItem::Input(ServerInput::Auth { peer, token: t, .. }) => {
                let r = if t == token {
                    let grant =
                        Grant::new(random_session_id(), ctl.wall_clock_ms() + SESSION_TTL_MS);
                    ctl.accept_auth(peer, grant).map(|_| ())
                } else {
                    ctl.reject_auth(peer, Status::Unauthenticated, 401, "invalid token")
                };
                if let Err(e) = r {
                    println!("conn {peer}: auth decision refused: {e}");
                }
            }
            ServerItem::Input(ServerInput::Reconnect { peer, .. }) => {
                let grant = Grant::new(random_session_id(), ctl.wall_clock_ms() + SESSION_TTL_MS);
                let _ = ctl.accept_reconnect(peer, grant);
            }
            ServerItem::Input(ServerInput::Request {
                peer,
                request_id,
                cmd,
                body,
                ..
            }) => {
                println!(
                    "conn {peer}: request {request_id} cmd {cmd}, {} bytes: echo",
                    body.len()
                );
                let _ = ctl.respond(peer, cmd, request_id, Status::Success, &body);
            }
            ServerItem::Event(e) => println!("event: {e:?}"),
            other => println!("{other:?}"),
        }
        None::<()>
    });
    if let Err(e) = served {
        eprintln!("server error: {e}");
        std::process::exit(1);
    }
}
