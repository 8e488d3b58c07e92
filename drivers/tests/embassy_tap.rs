//! The embassy example (`examples/embassy_tap.rs`: the embassy executor and `embassy-net` on
//! Linux over a TAP interface) against a real DDNet 16.4 server and our LongPort server
//!
//! The TAP link lives only inside the private network namespace this test runs in (CI:
//! `unshare -n`, as root): the test creates the device, gives the host side 10.203.0.1/24 and
//! the embassy stack 10.203.0.2/24, binds both servers to 10.203.0.1 only, and deletes the
//! device at the end. Nothing routes out of the namespace. `#[ignore]`d: it needs root, a
//! private network namespace, `/dev/net/tun` and Debian's `ddnet-server`.
#![cfg(feature = "embassy")]

#[path = "../../tests/support/ddnet.rs"]
mod ddnet;
#[path = "support/echo.rs"]
mod echo;
#[path = "support/proc.rs"]
mod proc;

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use tether_net::longport::ServerConfig;
use tether_net_drivers::blocking::{ServerLimits, TcpServer};

const TAP: &str = "tthr0";
const HOST: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 1);
const TOKEN: &str = "embassy-token";
const LINE: Duration = Duration::from_secs(20);

fn ip(args: &[&str]) {
    let st = Command::new("ip")
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("cannot run ip {args:?}: {e}"));
    assert!(
        st.success(),
        "ip {args:?} failed (root inside a private network namespace?)"
    );
}

/// The TAP device of this test; deleted when dropped
struct Tap;

impl Tap {
    fn create() -> Tap {
        // netlink, not /sys/class/net: sysfs shows the namespace the mount was made in
        let out = Command::new("ip")
            .args(["-o", "link", "show"])
            .output()
            .expect("ip");
        let ifaces: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                l.split(": ")
                    .nth(1)
                    .map(|n| n.split('@').next().unwrap_or(n).to_string())
            })
            .collect();
        assert_eq!(
            ifaces,
            ["lo"],
            "this test creates a TAP link and must run in a private network namespace with only \
             `lo` (e.g. `unshare -n sh -c 'ip link set lo up && cargo test ... -- --ignored'`)"
        );
        ip(&["tuntap", "add", "dev", TAP, "mode", "tap"]);
        ip(&["addr", "add", "10.203.0.1/24", "dev", TAP]);
        ip(&["link", "set", TAP, "up"]);
        Tap
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", TAP]).status();
    }
}

#[test]
#[ignore = "needs root in a private network namespace, /dev/net/tun and ddnet-server; run by .ci/run"]
fn the_embassy_example_over_tap_against_ddnet_and_our_server() {
    let _tap = Tap::create();
    let ddnet = ddnet::DdnetServer::start_on("embassy", "", HOST);

    let listener = std::net::TcpListener::bind((HOST, 0)).unwrap();
    let lp_addr = listener.local_addr().unwrap();
    let server: TcpServer =
        TcpServer::with_capacities(listener, ServerConfig::new(), ServerLimits::default()).unwrap();
    let server = echo::Running::start(server, TOKEN, echo::Refusals::Panic);

    let ddnet_addr = ddnet.addr().to_string();
    let lp = lp_addr.to_string();
    let mut p = proc::Proc::spawn(
        "embassy_tap",
        &[TAP, "10.203.0.2/24", &ddnet_addr, &lp, TOKEN],
    );
    p.expect_line("stack up", LINE);
    p.expect_line("game: connected", LINE);
    p.expect_line("game: Some(Closed { cause: Local })", LINE);
    p.expect_line("longport: connected", LINE);
    assert_eq!(
        p.expect_line("longport: response", LINE),
        "longport: response: hello"
    );
    server.drop_first();
    p.expect_line("longport: reconnected", LINE);
    p.expect_line("longport: Some(Closed { cause: Local })", LINE);
    assert_eq!(p.wait(LINE), Some(0), "{:#?}", p.seen);
    assert_eq!(server.stop().1.len(), 2, "login and reconnect");
}
