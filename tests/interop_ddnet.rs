//! Our game client against a real DDNet server (Debian's `ddnet-server` 16.4) on loopback
//!
//! `#[ignore]`d in plain `cargo test`; `.ci/run` runs them with
//! `cargo test --test interop_ddnet -- --ignored` inside a private network namespace. Every test
//! starts its own server (temp HOME, 127.0.0.1, free port, no arguments), bounds its time, and
//! fails loudly when the server cannot start.
#![cfg(not(target_family = "wasm"))]

#[path = "support/ddnet.rs"]
mod ddnet;

use std::time::Duration;

use ddnet::DdnetServer;
use tether_net::game::{Client, ClientApp, ClientConfig, ClientEvent, ClientState, CloseCause};
use tether_net::Instant;
use tether_net_drivers::blocking::{Input, UdpDriver};

/// The blocking datagram driver of `tether-net-drivers`, plus the reason of the server's CLOSE
struct UdpClient {
    d: UdpDriver<Client>,
    /// The reason of the server's CLOSE, as printed, once one arrived
    close_reason: Option<String>,
}

impl UdpClient {
    fn client(&mut self) -> &mut Client {
        self.d.machine_mut()
    }

    fn now(&self) -> Instant {
        self.d.now()
    }

    /// Datagrams received so far
    fn received(&self) -> u64 {
        self.d.stats().received
    }

    /// Run the loop for at most `limit`; `on_event` returns true to stop early. Returns whether
    /// it stopped because `on_event` asked to.
    fn run(
        &mut self,
        limit: Duration,
        mut on_event: impl FnMut(Instant, &ClientEvent) -> bool,
    ) -> std::io::Result<bool> {
        let reason = &mut self.close_reason;
        let stopped = self.d.run(limit, |_, now, input| match input {
            Input::Event(ev) => on_event(now, &ev).then_some(()),
            Input::App(_, ClientApp::Close { reason: r }) => {
                *reason = Some(r.to_string());
                None
            }
            Input::App(..) => None,
        })?;
        Ok(stopped.is_some())
    }
}

fn connect(server: &DdnetServer, vanilla: bool) -> UdpClient {
    let config = ClientConfig::new().with_vanilla(vanilla);
    let mut c = UdpClient {
        d: UdpDriver::connect(Client::new(config), server.addr()).unwrap(),
        close_reason: None,
    };
    let now = c.now();
    c.client().connect(now).unwrap();
    let mut token = None;
    let connected = c
        .run(Duration::from_secs(5), |t, ev| match ev {
            ClientEvent::Connected { token: tk } => {
                eprintln!("[{t}] connected, token {tk:?}");
                token = Some(*tk);
                true
            }
            other => panic!("unexpected event before Connected: {other:?}"),
        })
        .unwrap();
    assert!(
        connected,
        "no Connected within 5 s; server log:\n{}",
        server.log_tail()
    );
    let token = token.unwrap();
    assert_eq!(
        token.is_none(),
        vanilla,
        "token mode must match the configuration"
    );
    assert_eq!(c.client().state(), ClientState::Online);
    c
}

/// Stay online for 3 s, counting the server's keep-alives; fail on any event
fn stay_online(c: &mut UdpClient) {
    let before = c.client().stats().keep_alives_received;
    let stopped = c
        .run(Duration::from_secs(3), |_, ev| {
            panic!("unexpected event while online: {ev:?}")
        })
        .unwrap();
    assert!(!stopped);
    let got = c.client().stats().keep_alives_received - before;
    eprintln!("keep-alives from the server in 3 s: {got}");
    // DDNet sends one after 1 s without traffic to us: expect about 3.
    assert!(
        got >= 2,
        "expected at least 2 keep-alives from DDNet in 3 s, got {got}"
    );
    assert_eq!(c.client().state(), ClientState::Online);
}

fn close_locally(c: &mut UdpClient, server: &DdnetServer) {
    let now = c.now();
    c.client().close(now, "tether interop done").unwrap();
    let mut closed = None;
    c.run(Duration::from_secs(1), |_, ev| {
        closed = Some(*ev);
        true
    })
    .unwrap();
    assert!(
        matches!(
            closed,
            Some(ClientEvent::Closed {
                cause: CloseCause::Local
            })
        ),
        "expected Closed{{Local}}, got {closed:?}"
    );
    // While a connection exists DDNet sends a keep-alive after every second of silence; once it
    // handled our CLOSE it sends nothing at all. A keep-alive it sent just
    // before reading our CLOSE may still arrive, so listen for 4 s and require that nothing
    // arrived after the first 1.5 s: 2.5 s of silence is impossible on a live connection.
    c.run(Duration::from_millis(1500), |_, ev| {
        panic!("event after Closed: {ev:?}")
    })
    .unwrap();
    let before = c.received();
    c.run(Duration::from_millis(2500), |_, ev| {
        panic!("event after Closed: {ev:?}")
    })
    .unwrap();
    let late = c.received() - before;
    assert_eq!(
        late,
        0,
        "DDNet still sent {late} datagrams more than 1.5 s after our CLOSE, so it kept the connection; log:\n{}",
        server.log_tail()
    );
}

fn wait_peer_close(c: &mut UdpClient, what: &str) -> String {
    let stopped = c
        .run(Duration::from_secs(5), |t, ev| match ev {
            ClientEvent::Closed {
                cause: CloseCause::Peer,
            } => {
                eprintln!("[{t}] closed by server");
                true
            }
            other => panic!("unexpected event waiting for the {what}: {other:?}"),
        })
        .unwrap();
    assert!(
        stopped,
        "no CLOSE from the server within 5 s after the {what}"
    );
    assert_eq!(c.client().state(), ClientState::Closed);
    // the reason came with the CLOSE datagram (ClientApp::Close), before the event
    let reason = c.close_reason.clone().expect("the CLOSE's reason");
    eprintln!("reason: {reason:?}");
    reason
}

#[test]
#[ignore = "needs Debian's ddnet-server; run by .ci/run"]
fn token_mode_online_keepalives_and_close() {
    let server = DdnetServer::start("token", "");
    let mut c = connect(&server, false);
    stay_online(&mut c);
    close_locally(&mut c, &server);
}

#[test]
#[ignore = "needs Debian's ddnet-server; run by .ci/run"]
fn vanilla_mode_online_keepalives_and_close() {
    let server = DdnetServer::start("vanilla", "");
    let mut c = connect(&server, true);
    stay_online(&mut c);
    close_locally(&mut c, &server);
}

#[test]
#[ignore = "needs Debian's ddnet-server; run by .ci/run"]
fn kick_through_console_arrives_as_closed_with_reason() {
    let server = DdnetServer::start("kick", "");
    let mut c = connect(&server, false);
    c.run(Duration::from_millis(500), |_, ev| {
        panic!("unexpected {ev:?}")
    })
    .unwrap();
    for id in 0..4 {
        server.console(&format!("kick {id} ci test kick"));
    }
    let reason = wait_peer_close(&mut c, "kick");
    assert_eq!(reason, "Kicked (ci test kick)");
}

#[test]
#[ignore = "needs Debian's ddnet-server; run by .ci/run"]
fn shutdown_by_sigint_arrives_as_closed_with_reason() {
    let mut server = DdnetServer::start("shutdown", "");
    let mut c = connect(&server, false);
    c.run(Duration::from_millis(500), |_, ev| {
        panic!("unexpected {ev:?}")
    })
    .unwrap();
    server.interrupt();
    let reason = wait_peer_close(&mut c, "shutdown");
    assert_eq!(reason, "Server shutdown");
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)),
        Some(0),
        "server exit status"
    );
}
