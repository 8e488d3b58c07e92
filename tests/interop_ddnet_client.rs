//! Our game server (`examples/ddnet_server.rs`: `Reliable` server + `game::serve`) against the
//! real DDNet 16.4 client (Debian's `ddnet`), headless under Xvfb, on loopback
//!
//! `#[ignore]`d in plain `cargo test`; `.ci/run` installs `ddnet xvfb xauth libgl1-mesa-dri` and
//! runs `cargo test --test interop_ddnet_client -- --ignored --test-threads=1` inside a private
//! network namespace (`unshare -n`, only `lo`). The assertions are on the client's own log (16.4
//! wording): `connected, sending info`, `chat: *** <our line>`, `offline error='<our reason>'`,
//! and the map file in its `downloadedmaps/`. Each test starts its own server, Xvfb and client,
//! bounds every wait, and stops them by PID.

#[path = "../examples/ddnet_client/join.rs"]
mod ddnet_join;
#[path = "support/lossy_proxy.rs"]
mod lossy_proxy;
#[path = "support/real_client.rs"]
mod real_client;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use lossy_proxy::LossyProxy;
use real_client::{OurServer, RealClient};
#[cfg(feature = "server-info")]
use tether_net::game::connless::InfoKind;
use tether_net::game::join::Crc32;
use tether_net::game::sha256::Sha256;
#[cfg(feature = "server-info")]
use tether_net::game::{Client, ClientApp, ClientConfig};
#[cfg(feature = "server-info")]
use tether_net_drivers::blocking::{Input, UdpDriver};

/// A small map every DDNet client has (Debian's ddnet-data), served under a new name so that
/// the client must download it
const MAP: &str = "/usr/share/games/ddnet/data/maps/ctf1.map";
const CHAT: &str = "hello from tether";

fn map_bytes() -> Vec<u8> {
    std::fs::read(MAP).unwrap_or_else(|e| panic!("{MAP}: {e} (Debian's ddnet-data)"))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn crc(b: &[u8]) -> u32 {
    let mut c = Crc32::new();
    c.update(b);
    c.finish()
}

/// A map name no client has
fn fresh_name(tag: &str) -> String {
    format!("tether_{tag}_{}", std::process::id())
}

/// Wait for `pat` in the client's log (after `after`), failing with both logs
fn expect_client(
    client: &RealClient,
    server: &OurServer,
    after: &str,
    pat: &str,
    limit: Duration,
) -> (Instant, String) {
    client.wait_line(after, pat, limit).unwrap_or_else(|| {
        panic!(
            "client log has no '{pat}' within {limit:?}\n--- client ---\n{}\n--- server ---\n{}",
            client.log_summary(),
            server.output()
        )
    })
}

/// Our server serving the map file `map` as `name`, saying `CHAT` to every player who enters,
/// with the `extra` options
fn serve(map: &str, name: &str, extra: &[&str]) -> OurServer {
    let mut args = vec!["--map", map, "--map-name", name, "--chat", CHAT];
    args.extend_from_slice(extra);
    OurServer::start(&args)
}

/// The client's chat line for our `--chat CHAT`
fn chat_line() -> String {
    format!("chat: *** {CHAT}")
}

/// Wait for the client's `connected, sending info` (within `connect`), then our chat line
/// (within `chat`); both lines and the seconds between them
fn expect_connected_and_chat(
    client: &RealClient,
    server: &OurServer,
    connect: Duration,
    chat: Duration,
) -> (String, String, f64) {
    let (t0, l0) = expect_client(
        client,
        server,
        "",
        "client: connected, sending info",
        connect,
    );
    let (t1, l1) = expect_client(
        client,
        server,
        "connected, sending info",
        &chat_line(),
        chat,
    );
    (l0, l1, (t1 - t0).as_secs_f64())
}

/// The downloaded file: name `<map>_<sha256>.map`, the bytes and CRC of the served map
fn check_download(client: &RealClient, name: &str, map: &[u8]) {
    let files = client.downloaded_maps();
    let expect = format!("{name}_{}.map", hex(&Sha256::digest(map)));
    let file = files
        .iter()
        .find(|p| p.file_name().is_some_and(|f| f.to_string_lossy() == expect))
        .unwrap_or_else(|| panic!("no {expect} in downloadedmaps: {files:?}"));
    let got = std::fs::read(file).unwrap();
    assert_eq!(crc(&got), crc(map), "CRC32 of the downloaded map");
    assert!(got == map, "the downloaded map equals the served one");
    eprintln!(
        "downloaded {} ({} bytes, crc {:08x})",
        file.display(),
        got.len(),
        crc(&got)
    );
}

#[test]
#[ignore = "needs Debian's ddnet client and Xvfb; run by .ci/run"]
fn real_client_downloads_the_map_sees_our_chat_and_our_kick() {
    let map = map_bytes();
    let name = fresh_name("direct");
    let server = serve(MAP, &name, &["--kick-after", "3", "tether interop kick"]);
    let client = RealClient::start("realclient-direct", server.addr);
    let (l0, l1, secs) = expect_connected_and_chat(
        &client,
        &server,
        Duration::from_secs(30),
        Duration::from_secs(20),
    );
    let (_, l2) = expect_client(
        &client,
        &server,
        &chat_line(),
        "client: offline error='",
        Duration::from_secs(20),
    );
    assert!(l2.contains("tether interop kick"), "{l2}");
    assert!(
        l2.contains("offline error='Kicked (tether interop kick)'"),
        "{l2}"
    );
    eprintln!("matched:\n{l0}\n{l1}\n{l2}");
    eprintln!("direct: chat line {secs:.2} s after 'connected, sending info'");
    check_download(&client, &name, &map);
    assert!(server
        .wait_line("entered the game", Duration::ZERO)
        .is_some());
    assert!(server
        .wait_line("kicked: tether interop kick", Duration::ZERO)
        .is_some());
}

/// A 40,637-byte map (46 pieces: the window of 16 and in-order requests under loss)
const LOSSY_MAP: &str = "/usr/share/games/ddnet/data/maps/dm8.map";

#[test]
#[ignore = "needs Debian's ddnet client and Xvfb; run by .ci/run"]
fn real_client_joins_through_30_percent_loss() {
    let map = std::fs::read(LOSSY_MAP).unwrap_or_else(|e| panic!("{LOSSY_MAP}: {e}"));
    for seed in [11u64, 7] {
        let name = fresh_name(&format!("lossy{seed}"));
        let server = serve(LOSSY_MAP, &name, &[]);
        let proxy = LossyProxy::start(server.addr, 0.3, seed);
        let client = RealClient::start("realclient-lossy", proxy.addr);
        let (l0, l1, secs) = expect_connected_and_chat(
            &client,
            &server,
            Duration::from_secs(60),
            Duration::from_secs(120),
        );
        let [c2s, c2s_lost, s2c, s2c_lost] = proxy.counts();
        eprintln!("matched:\n{l0}\n{l1}");
        eprintln!(
            "30% loss, seed {seed}: chat line {secs:.2} s after 'connected, sending info'; proxy \
             c->s {c2s} forwarded / {c2s_lost} dropped, s->c {s2c} / {s2c_lost}"
        );
        assert!(c2s_lost > 0 && s2c_lost > 0, "the proxy dropped nothing");
        check_download(&client, &name, &map);
    }
}

#[test]
#[ignore = "needs Debian's ddnet client and Xvfb; run by .ci/run"]
fn real_client_sees_our_shutdown_reason() {
    let name = fresh_name("shutdown");
    let reason = "tether shutdown for the interop test";
    let mut server = serve(MAP, &name, &["--shutdown-reason", reason]);
    let client = RealClient::start("realclient-shutdown", server.addr);
    let chat = chat_line();
    expect_client(&client, &server, "", &chat, Duration::from_secs(60));
    server.interrupt();
    let (_, line) = expect_client(
        &client,
        &server,
        &chat,
        "client: offline error='",
        Duration::from_secs(20),
    );
    assert!(
        line.contains(&format!("offline error='{reason}'")),
        "{line}"
    );
    eprintln!("matched:\n{line}");
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)),
        Some(0),
        "exit code"
    );
    assert!(server
        .wait_line("shutdown complete", Duration::ZERO)
        .is_some());
}

#[test]
#[ignore = "needs the ddnet_server example; run by .ci/run"]
fn our_client_joins_our_server() {
    let map = map_bytes();
    let name = fresh_name("ours");
    let server = serve(MAP, &name, &[]);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(server.addr).unwrap();
    let opts = ddnet_join::Options {
        stay: Duration::from_secs(2),
        name: "tether".into(),
        limit: Duration::from_secs(30),
        ..ddnet_join::Options::default()
    };
    let report = ddnet_join::run_join(&sock, &opts, |l| eprintln!("[ddnet_client] {l}")).unwrap();
    assert!(report.success(), "{report:?}\n{}", server.output());
    assert_eq!(report.map_bytes, map);
    let (n, size, c) = report.map.clone().unwrap();
    assert_eq!(
        (n.as_str(), size, c),
        (name.as_str(), map.len() as u32, crc(&map))
    );
    assert!(
        report.snapshots > 20,
        "{} snapshots in 2 s",
        report.snapshots
    );
    eprintln!(
        "our client: entered {:.3} s after the first CONNECT, {} snapshots in 2 s",
        report.entered_after.unwrap().as_secs_f64(),
        report.snapshots
    );
    assert!(server
        .wait_line("start info name='tether'", Duration::ZERO)
        .is_some());
    assert!(server
        .wait_line("closed: by the client", Duration::from_secs(2))
        .is_some());
}

#[test]
#[ignore = "needs Debian's ddnet client and Xvfb; run by .ci/run"]
fn real_client_downloads_a_large_map_through_the_window() {
    // Tutorial: 1,082,711 bytes = 1,209 pieces, so both vital sequence counters wrap
    const TUTORIAL: &str = "/usr/share/games/ddnet/data/maps/Tutorial.map";
    let map = std::fs::read(TUTORIAL).unwrap_or_else(|e| panic!("{TUTORIAL}: {e}"));
    let name = fresh_name("large");
    let server = serve(TUTORIAL, &name, &[]);
    let client = RealClient::start("realclient-large", server.addr);
    let (l0, l1, secs) = expect_connected_and_chat(
        &client,
        &server,
        Duration::from_secs(30),
        Duration::from_secs(60),
    );
    eprintln!("matched:\n{l0}\n{l1}");
    eprintln!("large map: chat line {secs:.2} s after 'connected, sending info'");
    check_download(&client, &name, &map);
}

// the query needs the feature server-info (on by default)
#[cfg(feature = "server-info")]
#[test]
#[ignore = "needs the ddnet_server example; run by .ci/run"]
fn server_info_of_our_server_lists_name_map_and_players() {
    let map = map_bytes();
    let name = fresh_name("info");
    let server = OurServer::start(&["--map", MAP, "--map-name", &name, "--name", "tether info"]);
    let addr = server.addr;
    // a player in the game for 4 s
    let player = std::thread::spawn(move || {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.connect(addr).unwrap();
        let opts = ddnet_join::Options {
            stay: Duration::from_secs(4),
            name: "infoplayer".into(),
            limit: Duration::from_secs(30),
            verbose: false,
            ..ddnet_join::Options::default()
        };
        ddnet_join::run_join(&sock, &opts, |_| {}).unwrap()
    });
    assert!(server
        .wait_line("entered the game", Duration::from_secs(10))
        .is_some());
    let mut c = UdpDriver::connect(Client::new(ClientConfig::new()), addr).unwrap();
    for (token, extended) in [(0x5au32, false), (0x12_3456, true)] {
        let now = c.now();
        c.machine_mut().request_info(now, token, extended).unwrap();
        // (name, map, token, clients, map CRC and size of an extended answer)
        let info = c
            .run(Duration::from_millis(1000), |_, _, input| match input {
                Input::App(_, ClientApp::ServerInfo(i)) => Some((
                    i.name.to_text::<256>().to_string(),
                    i.map.to_text::<256>().to_string(),
                    i.token,
                    i.clients.len(),
                    match i.kind {
                        InfoKind::Extended { map_crc, map_size } => Some((map_crc, map_size)),
                        _ => None,
                    },
                )),
                Input::Event(ev) => panic!("unexpected {ev:?}"),
                Input::App(..) => None,
            })
            .unwrap()
            .unwrap_or_else(|| {
                panic!(
                    "no info answer (extended {extended}); server:\n{}",
                    server.output()
                )
            });
        eprintln!("info (extended {extended}): {info:?}");
        let (info_name, info_map, info_token, clients, crc_size) = info;
        assert_eq!(info_name, "tether info");
        assert_eq!(info_map, name);
        assert_eq!(info_token as u32, token);
        assert_eq!(clients, 1, "the player in the game");
        if extended {
            assert_eq!(crc_size, Some((crc(&map), map.len() as i32)));
        }
    }
    assert!(player.join().unwrap().success());
}
