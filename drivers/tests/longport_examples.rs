//! The LongPort scenario examples (`blocking_longport`, `tokio_longport`) against our servers
//! on 127.0.0.1: auth, one request, the server drops the transport, the example reconnects
//! with the session, closes
#![cfg(feature = "tokio")]

#[path = "support/lp.rs"]
mod lp;
#[path = "support/proc.rs"]
mod proc;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lp::{TestServer, TOKEN};
use tether_net::longport::{ServerConfig, ServerEvent, Status};
use tether_net_drivers::blocking::{Grant, ServerInput, ServerItem, TcpServer};
use tether_net_drivers::random_session_id;
use tether_net_drivers::tokio::{Listener, ServerOptions};

const LINE: Duration = Duration::from_secs(10);

async fn tokio_example_against(listener: Listener, scheme: &str) {
    let srv = TestServer::start(&[listener], ServerConfig::new(), ServerOptions::default()).await;
    let url = match scheme {
        "tcp" => format!("tcp://{}", srv.addrs[0]),
        _ => format!("ws://{}/v2", srv.addrs[0]),
    };
    let mut p = proc::Proc::spawn("tokio_longport", &[&url, TOKEN]);
    let line = tokio::task::block_in_place(|| p.expect_line("response:", LINE));
    assert_eq!(line, "response: hello");
    let peer = *srv.connected_peers().last().unwrap();
    srv.server.drop_connection(peer).await;
    tokio::task::block_in_place(|| {
        p.expect_line("reconnected", LINE);
        p.expect_line("closed", LINE);
        assert_eq!(p.wait(LINE), Some(0));
    });
    assert_eq!(srv.connected_peers().len(), 2, "login and reconnect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_longport_example_over_ws() {
    tokio_example_against(Listener::Ws("127.0.0.1:0".parse().unwrap()), "ws").await;
}

#[test]
fn blocking_longport_example_over_tcp() {
    let mut server = TcpServer::bind("127.0.0.1:0", ServerConfig::new()).unwrap();
    let addr = server.local_addr().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let drop_first = Arc::new(AtomicBool::new(false));
    let (s, d) = (stop.clone(), drop_first.clone());
    let thread = std::thread::spawn(move || {
        let mut logins = Vec::new();
        while !s.load(Ordering::Relaxed) {
            server
                .run(Duration::from_millis(20), |ctl, item| {
                    match item {
                        ServerItem::Input(ServerInput::Auth { peer, .. }) => {
                            let g =
                                Grant::new(random_session_id(), ctl.wall_clock_ms() + 3_600_000);
                            ctl.accept_auth(peer, g).unwrap();
                        }
                        ServerItem::Input(ServerInput::Reconnect { peer, .. }) => {
                            let g =
                                Grant::new(random_session_id(), ctl.wall_clock_ms() + 3_600_000);
                            ctl.accept_reconnect(peer, g).unwrap();
                        }
                        ServerItem::Input(ServerInput::Request {
                            peer,
                            request_id,
                            cmd,
                            body,
                            ..
                        }) => {
                            ctl.respond(peer, cmd, request_id, Status::Success, &body)
                                .unwrap();
                        }
                        ServerItem::Event(ServerEvent::Connected { peer, .. }) => logins.push(peer),
                        _ => {}
                    }
                    None::<()>
                })
                .unwrap();
            if d.swap(false, Ordering::Relaxed) {
                server.command(|ctl| ctl.drop_connection(logins[0]));
            }
        }
        logins
    });
    let mut p = proc::Proc::spawn("blocking_longport", &[&addr, TOKEN]);
    assert_eq!(p.expect_line("response:", LINE), "response: hello");
    drop_first.store(true, Ordering::Relaxed);
    p.expect_line("reconnected", LINE);
    p.expect_line("Some(Closed { cause: Local })", LINE);
    assert_eq!(p.wait(LINE), Some(0));
    stop.store(true, Ordering::Relaxed);
    assert_eq!(thread.join().unwrap().len(), 2, "login and reconnect");
}
