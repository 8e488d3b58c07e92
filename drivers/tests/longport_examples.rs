//! The LongPort scenario examples (`blocking_longport`, `tokio_longport`) against our servers
//! on 127.0.0.1: auth, one request, the server drops the transport, the example reconnects
//! with the session, closes
#![cfg(feature = "tokio")]

#[path = "support/echo.rs"]
mod echo;
#[path = "support/lp.rs"]
mod lp;
#[path = "support/proc.rs"]
mod proc;

use std::time::Duration;

use lp::{TestServer, TOKEN};
use tether_net::longport::ServerConfig;
use tether_net_drivers::blocking::TcpServer;
use tether_net_drivers::tokio::Listener;

const LINE: Duration = Duration::from_secs(10);

async fn tokio_example_against(listener: Listener, scheme: &str) {
    let srv = TestServer::on(listener).await;
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
    let server = TcpServer::bind("127.0.0.1:0", ServerConfig::new()).unwrap();
    let addr = server.local_addr().unwrap().to_string();
    let server = echo::Running::start(server, TOKEN, echo::Refusals::Panic);
    let mut p = proc::Proc::spawn("blocking_longport", &[&addr, TOKEN]);
    assert_eq!(p.expect_line("response:", LINE), "response: hello");
    server.drop_first();
    p.expect_line("reconnected", LINE);
    p.expect_line("Some(Closed { cause: Local })", LINE);
    assert_eq!(p.wait(LINE), Some(0));
    assert_eq!(server.stop().1.len(), 2, "login and reconnect");
}
