//! The blocking datagram driver serving both game machines on 127.0.0.1: a client connects, the
//! server closes it with a reason, then shuts down

#[path = "support/game.rs"]
mod game;

use std::net::SocketAddr;
use std::time::Duration;

use tether_net::game::{
    Client, ClientConfig, CloseCause, Server, ServerConfig, ServerEvent, TokenSecret,
};
use tether_net_drivers::blocking::{Input, UdpDriver};

#[test]
fn one_loop_serves_the_client_and_the_server() {
    // a constant secret is for this test only; a real server draws it from a random source
    let server = Server::<SocketAddr>::new(ServerConfig::new(TokenSecret([3; 16])));
    let mut s = UdpDriver::bind(server, "127.0.0.1:0").unwrap();
    let addr = s.local_addr().unwrap();
    let thread = std::thread::spawn(move || {
        let mut log = Vec::new();
        let done = s
            .run(Duration::from_secs(10), |srv, now, input| {
                if let Input::Event(e) = input {
                    log.push(e);
                    match e {
                        ServerEvent::Connected { peer, .. } => {
                            srv.close(now, peer, "closed by the test").unwrap();
                        }
                        ServerEvent::Closed { .. } => srv.shutdown(now, "bye").unwrap(),
                        ServerEvent::ShutdownComplete => return Some(()),
                        _ => {}
                    }
                }
                None
            })
            .unwrap();
        assert!(done.is_some(), "{log:?}");
        log
    });
    let mut c = UdpDriver::connect(Client::new(ClientConfig::new()), addr).unwrap();
    c.try_command(|c, now| c.connect(now)).unwrap();
    let reason = game::server_close_reason(&mut c, Duration::from_secs(10));
    assert_eq!(reason, "closed by the test");
    let log = thread.join().unwrap();
    assert!(matches!(log[0], ServerEvent::Connected { .. }), "{log:?}");
    assert!(
        matches!(
            log[1],
            ServerEvent::Closed {
                cause: CloseCause::Local,
                ..
            }
        ),
        "{log:?}"
    );
    assert_eq!(log.last(), Some(&ServerEvent::ShutdownComplete));
}
