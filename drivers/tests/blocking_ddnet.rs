//! The blocking game client driver against a real DDNet 16.4 server on 127.0.0.1: connect,
//! stay 5 s, close with a reason; the server's kick and shutdown seen with their reasons; the
//! `blocking_game` example doing its scenario
//!
//! `#[ignore]`d (they need Debian's `ddnet-server`); CI runs them with `--ignored` inside a
//! private network namespace. Each test starts its own server and stops it by PID.

#[path = "../../tests/support/ddnet.rs"]
mod ddnet;
#[path = "support/game.rs"]
mod game;
#[path = "support/proc.rs"]
mod proc;

use std::time::Duration;

use ddnet::DdnetServer;
use game::server_close_reason;
use tether_net::game::{Client, ClientConfig, ClientEvent, CloseCause};
use tether_net_drivers::blocking::{Input, UdpDriver};

fn connect(server: &DdnetServer) -> UdpDriver<Client> {
    let mut d = UdpDriver::connect(Client::new(ClientConfig::new()), server.addr()).unwrap();
    d.command(|c, now| c.connect(now)).unwrap();
    let up = d
        .run(Duration::from_secs(5), |_, _, i| match i {
            Input::Event(ClientEvent::Connected { .. }) => Some(()),
            Input::Event(e) => panic!("{e:?} before Connected"),
            Input::App(..) => None,
        })
        .unwrap();
    assert!(
        up.is_some(),
        "no Connected within 5 s; log:\n{}",
        server.log_tail()
    );
    d
}

#[test]
#[ignore = "needs Debian's ddnet-server; run by .ci/run"]
fn connect_stay_5_s_close_with_a_reason() {
    let server = DdnetServer::start("blocking-stay", "");
    let mut d = connect(&server);
    let before = d.machine().stats().keep_alives_received;
    let ev = d
        .run(Duration::from_secs(5), |_, _, i| match i {
            Input::Event(e) => Some(e),
            Input::App(..) => None,
        })
        .unwrap();
    assert_eq!(ev, None, "nothing happens while we stay");
    let kept = d.machine().stats().keep_alives_received - before;
    assert!(
        kept >= 3,
        "DDNet keeps the connection alive: {kept} keep-alives in 5 s"
    );
    d.command(|c, now| c.close(now, "drivers: blocking test done"))
        .unwrap();
    let closed = d
        .run(Duration::from_secs(1), |_, _, i| match i {
            Input::Event(ClientEvent::Closed { cause }) => Some(cause),
            _ => None,
        })
        .unwrap();
    assert_eq!(closed, Some(CloseCause::Local));
    // DDNet took our CLOSE: after 1.5 s (a keep-alive sent just before may still arrive) it
    // sends nothing more, which a live connection never does
    d.run(Duration::from_millis(1500), |_, _, _| None::<()>)
        .unwrap();
    let before = d.stats().received;
    d.run(Duration::from_millis(2500), |_, _, _| None::<()>)
        .unwrap();
    assert_eq!(
        d.stats().received,
        before,
        "DDNet kept the connection; log:\n{}",
        server.log_tail()
    );
}

#[test]
#[ignore = "needs Debian's ddnet-server; run by .ci/run"]
fn kick_and_shutdown_arrive_with_their_reasons() {
    let mut server = DdnetServer::start("blocking-kick", "");
    let mut d = connect(&server);
    d.run(Duration::from_millis(500), |_, _, _| None::<()>)
        .unwrap();
    for id in 0..4 {
        server.console(&format!("kick {id} drivers kick"));
    }
    assert_eq!(
        server_close_reason(&mut d, Duration::from_secs(5)),
        "Kicked (drivers kick)"
    );

    let mut d = connect(&server);
    d.run(Duration::from_millis(500), |_, _, _| None::<()>)
        .unwrap();
    server.interrupt();
    assert_eq!(
        server_close_reason(&mut d, Duration::from_secs(5)),
        "Server shutdown"
    );
    assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
#[ignore = "needs Debian's ddnet-server; run by .ci/run"]
fn the_blocking_game_example_runs_its_scenario() {
    let server = DdnetServer::start("blocking-example", "");
    let addr = server.addr().to_string();
    let mut p = proc::Proc::spawn("blocking_game", &[&addr]);
    p.expect_line("connected", Duration::from_secs(10));
    p.expect_line("Some(Closed { cause: Local })", Duration::from_secs(10));
    assert_eq!(p.wait(Duration::from_secs(5)), Some(0));
}
