//! Our game client against a real DDNet server (Debian's `ddnet-server` 16.4) on loopback
//!
//! `#[ignore]`d in plain `cargo test`; `.ci/run` runs them with
//! `cargo test --test interop_ddnet -- --ignored` inside a private network namespace. Every test
//! starts its own server (temp HOME, 127.0.0.1, free port, no arguments), bounds its time, and
//! fails loudly when the server cannot start.
#![cfg(not(target_family = "wasm"))]

#[path = "support/ddnet.rs"]
mod ddnet;
#[path = "../examples/ddnet_client/join.rs"]
mod ddnet_join;
#[path = "support/forge.rs"]
mod forge;
#[path = "support/lossy_proxy.rs"]
mod lossy_proxy;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use ddnet::DdnetServer;
use lossy_proxy::LossyProxy;
use tether_net::game::connless::InfoKind;
use tether_net::game::join::Crc32;
use tether_net::game::wire::{Control, ControlPacket};
use tether_net::game::{
    Client, ClientApp, ClientConfig, ClientEvent, ClientState, CloseCause, Token,
};
use tether_net::Instant;
use tether_net_drivers::blocking::{Input, UdpDriver};

/// A server-info answer as the tests keep it
#[derive(Debug, Clone, PartialEq, Eq)]
struct InfoSeen {
    token: i32,
    name: String,
    map: String,
    version: String,
    /// Map CRC32 and size, in the extended answer
    map_crc_size: Option<(u32, i32)>,
    clients: usize,
}

/// The blocking datagram driver of `tether-net-drivers`, plus what the client application saw:
/// the reason of the server's CLOSE and server-info answers
struct UdpClient {
    d: UdpDriver<Client>,
    /// The reason of the server's CLOSE, as printed, once one arrived
    close_reason: Option<String>,
    /// Server-info answers received
    info: Vec<InfoSeen>,
}

impl UdpClient {
    fn new(server: SocketAddr, config: ClientConfig) -> std::io::Result<UdpClient> {
        Ok(UdpClient {
            d: UdpDriver::connect(Client::new(config), server)?,
            close_reason: None,
            info: Vec::new(),
        })
    }

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
        let (reason, info) = (&mut self.close_reason, &mut self.info);
        let stopped = self.d.run(limit, |_, now, input| match input {
            Input::Event(ev) => on_event(now, &ev).then_some(()),
            Input::App(_, ClientApp::Close { reason: r }) => {
                *reason = Some(r.to_string());
                None
            }
            Input::App(_, ClientApp::ServerInfo(i)) => {
                info.push(InfoSeen {
                    token: i.token,
                    name: i.name.to_text::<256>().to_string(),
                    map: i.map.to_text::<256>().to_string(),
                    version: i.version.to_text::<256>().to_string(),
                    map_crc_size: match i.kind {
                        InfoKind::Extended { map_crc, map_size } => Some((map_crc, map_size)),
                        _ => None,
                    },
                    clients: i.clients.len(),
                });
                None
            }
            Input::App(..) => None,
        })?;
        Ok(stopped.is_some())
    }
}

fn connect(server: &DdnetServer, vanilla: bool) -> UdpClient {
    let config = ClientConfig::new().with_vanilla(vanilla);
    let mut c = UdpClient::new(server.addr(), config).unwrap();
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

// ---------------------------------------------------------------------------------------------
// The chunk layer and the join (issue 11)

/// The Tutorial map as Debian's ddnet-data installs it (what the server serves)
const TUTORIAL: &str = "/usr/share/games/ddnet/data/maps/Tutorial.map";
const TUTORIAL_SIZE: u32 = 1_082_711;
const TUTORIAL_CRC: u32 = 0x8d4c_6486;

fn client_socket(to: SocketAddr) -> UdpSocket {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind a client socket on 127.0.0.1");
    sock.connect(to).unwrap();
    sock
}

/// Join the server (directly or through `via`), print the run, check the map and the log; with
/// `lossy` our single CLOSE datagram may be lost on the way, so the log check of it is skipped
fn join_and_check(
    server: &DdnetServer,
    via: SocketAddr,
    limit: Duration,
    lossy: bool,
) -> ddnet_join::Report {
    let sock = client_socket(via);
    let opts = ddnet_join::Options {
        stay: Duration::from_secs(3),
        name: "tether".into(),
        limit,
        ..ddnet_join::Options::default()
    };
    let report = ddnet_join::run_join(&sock, &opts, |l| eprintln!("{l}")).unwrap();
    eprintln!(
        "entered after {:?}, {} snapshots, {} resends, stats {:?}",
        report.entered_after, report.snapshots, report.resends, report.stats
    );
    assert!(
        report.success(),
        "join failed: {report:?}; server log:\n{}",
        server.log_tail()
    );
    let (name, size, crc) = report.map.clone().unwrap();
    assert_eq!(
        (name.as_str(), size, crc),
        ("Tutorial", TUTORIAL_SIZE, TUTORIAL_CRC)
    );
    let mut c = Crc32::new();
    c.update(&report.map_bytes);
    assert_eq!(c.finish(), TUTORIAL_CRC);
    if let Ok(file) = std::fs::read(TUTORIAL) {
        assert!(report.map_bytes == file, "the map equals {TUTORIAL}");
    }
    assert!(report.snapshots > 0);
    // the server saw the player enter and leave (our CLOSE), and no too weak connection
    std::thread::sleep(Duration::from_millis(300));
    let log = server.log();
    assert!(
        log.contains("player has entered the game"),
        "server log:\n{}",
        server.log_tail()
    );
    let left = log.contains("leave player='0:tether'") || log.contains("has left the game");
    eprintln!("server log shows our CLOSE: {left}");
    assert!(
        left || lossy,
        "our CLOSE was not honoured; server log:\n{}",
        server.log_tail()
    );
    assert!(
        !log.to_lowercase().contains("too weak connection"),
        "server log:\n{}",
        server.log_tail()
    );
    report
}

#[test]
#[ignore = "needs Debian's ddnet-server; run by .ci/run"]
fn full_join_with_map_download() {
    let server = DdnetServer::start("join", "");
    let report = join_and_check(&server, server.addr(), Duration::from_secs(30), false);
    eprintln!(
        "direct: entered {:.2} s after the first CONNECT",
        report.entered_after.unwrap().as_secs_f64()
    );
}

#[test]
#[ignore = "needs Debian's ddnet-server; run by .ci/run"]
fn full_join_through_30_percent_loss_each_way() {
    let server = DdnetServer::start("join-loss", "");
    let proxy = LossyProxy::start(server.addr(), 0.3, 11);
    let report = join_and_check(&server, proxy.addr, Duration::from_secs(90), true);
    let entered = report.entered_after.unwrap();
    let [c2s, c2s_lost, s2c, s2c_lost] = proxy.counts();
    eprintln!(
        "30% loss: entered {:.1} s after the first CONNECT; proxy c->s {c2s} forwarded / {c2s_lost} \
         dropped, s->c {s2c} / {s2c_lost}",
        entered.as_secs_f64()
    );
    assert!(entered < Duration::from_secs(90), "{entered:?}");
    assert!(c2s_lost > 0 && s2c_lost > 0);
}

// the query needs the feature server-info (on by default)
#[cfg(feature = "server-info")]
#[test]
#[ignore = "needs Debian's ddnet-server; run by .ci/run"]
fn server_info_query_returns_name_map_and_version() {
    let server = DdnetServer::start("info", "");
    let mut c = UdpClient::new(server.addr(), ClientConfig::new()).unwrap();
    for (token, extended) in [(0x5au32, false), (0x12_3456, true)] {
        let now = c.now();
        c.client().request_info(now, token, extended).unwrap();
        c.info.clear();
        c.run(Duration::from_millis(1500), |_, ev| {
            panic!("unexpected {ev:?}")
        })
        .unwrap();
        let info = c.info.first().cloned().unwrap_or_else(|| {
            panic!(
                "no answer (extended {extended}); log:\n{}",
                server.log_tail()
            )
        });
        eprintln!("info (extended {extended}): {info:?}");
        // 16.4 appends " [clients/slots]" to the name in the 0.6 answer when it has > 16 slots
        assert!(info.name.starts_with("tether-ci"), "{info:?}");
        if extended {
            assert_eq!(info.name, "tether-ci");
            assert_eq!(
                info.map_crc_size,
                Some((TUTORIAL_CRC, TUTORIAL_SIZE as i32))
            );
        }
        assert_eq!(info.map, "Tutorial");
        assert!(info.version.starts_with("0.6.4"), "{info:?}");
        assert_eq!(info.token as u32, token);
    }
    assert_eq!(
        c.client().state(),
        ClientState::Offline,
        "no connection needed"
    );
}

#[test]
#[ignore = "needs Debian's ddnet-server; run by .ci/run"]
fn spoofed_compressed_datagrams_do_not_refresh_liveness() {
    let server = DdnetServer::start("spoof", "");
    let config = ClientConfig::new().with_timeout(Duration::from_secs(3));
    let mut c = UdpClient::new(server.addr(), config).unwrap();
    let now = c.now();
    c.client().connect(now).unwrap();
    assert!(c
        .run(Duration::from_secs(5), |_, ev| matches!(
            ev,
            ClientEvent::Connected { .. }
        ))
        .unwrap());
    // genuine keep-alives keep it up for 2 s
    c.run(Duration::from_secs(2), |_, ev| panic!("unexpected {ev:?}"))
        .unwrap();
    assert!(c.client().is_confirmed());
    let real = c.client().token().unwrap();
    // from now on the server's datagrams are not read (the path is dead); an off-path sender
    // keeps sending compressed datagrams with a wrong token, four a second
    let spoof =
        forge::compressed_chunk_packet(Token([!real.0[0], real.0[1], real.0[2], real.0[3]]));
    let start = std::time::Instant::now();
    let mut closed = None;
    while closed.is_none() && start.elapsed() < Duration::from_secs(10) {
        let now = c.now();
        let _ = c.client().handle_input(now, (), &spoof).unwrap();
        std::thread::sleep(Duration::from_millis(250));
        let now = c.now();
        c.client().handle_timeout(now);
        while let Some(ev) = c.client().poll_event() {
            if let ClientEvent::Closed { cause } = ev {
                closed = Some((cause, start.elapsed()));
            }
        }
    }
    let (cause, after) = closed.expect("the client must time out");
    eprintln!(
        "timed out {after:?} after the path died, {} spoofed datagrams dropped",
        c.client().stats().dropped_wrong_token
    );
    assert_eq!(cause, CloseCause::Timeout);
    assert!(after <= Duration::from_millis(3500), "{after:?}");
    assert!(c.client().stats().dropped_wrong_token >= 8);
}

#[test]
#[ignore = "needs Debian's ddnet-server; run by .ci/run"]
fn forged_connect_accept_before_the_real_one_still_joins() {
    let server = DdnetServer::start("forged", "");
    // the genuine token of 127.0.0.1 (DDNet mints it from the IP alone)
    let probe = client_socket(server.addr());
    probe
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    probe.send(b"\x10\x00\x00\x01TKEN\xff\xff\xff\xff").unwrap();
    let mut buf = [0u8; 64];
    let n = probe.recv(&mut buf).unwrap();
    assert_eq!(&buf[..8], b"\x10\x00\x00\x02TKEN");
    let genuine = [buf[8], buf[9], buf[10], buf[11]];
    let _ = n;
    let forged_token = Token([genuine[0] ^ 0x55, 1, 2, 3]);
    let mut forged = [0u8; 16];
    let n = ControlPacket {
        ack: 0,
        control: Control::ConnectAccept,
        token: Some(forged_token),
    }
    .emit(&mut forged)
    .unwrap();
    let sock = client_socket(server.addr());
    let opts = ddnet_join::Options {
        stay: Duration::from_secs(2),
        limit: Duration::from_secs(30),
        inject_after_connect: Some(forged[..n].to_vec()),
        ..ddnet_join::Options::default()
    };
    let report = ddnet_join::run_join(&sock, &opts, |l| eprintln!("{l}")).unwrap();
    assert!(report.success(), "{report:?}; log:\n{}", server.log_tail());
    assert_eq!(
        report.token,
        Some(genuine),
        "recovered onto the genuine token"
    );
    let stats = report.stats.unwrap();
    assert_eq!(stats.token_candidates, 1, "{stats:?}");
    eprintln!(
        "forged CONNECT_ACCEPT first: entered after {:?}",
        report.entered_after
    );
}
