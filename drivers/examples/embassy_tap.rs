//! The embassy drivers on Linux: the embassy executor and `embassy-net` over a TAP interface,
//! running both scenarios against real servers
//!
//! ```text
//! embassy_tap TAP ADDR/PREFIX DDNET_ADDR:PORT LONGPORT_ADDR:PORT TOKEN
//! ```
//! The TAP device must exist and be up (`ip tuntap add dev TAP mode tap`); ADDR is the address
//! of this program's own network stack on that link (the host side has another one). Game:
//! connect, stay 5 s, close with a reason. LongPort over TCP: auth, one request, reconnect when
//! the transport drops, close. One line per step on stdout; exit 0 when both scenarios ran.
//! `drivers/tests/embassy_tap.rs` runs it inside a private network namespace.
use std::net::SocketAddrV4;
use std::time::Duration as StdDuration;

use embassy_executor::Spawner;
use embassy_net::tcp::TcpSocket;
use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::{Config, IpEndpoint, Ipv4Cidr, Runner, StackResources, StaticConfigV4};
use embassy_net_tuntap::TunTapDevice;
use embassy_time::Duration;
use static_cell::StaticCell;
use tether_net::game::{
    Client as GameClient, ClientConfig as GameConfig, ClientEvent as GameEvent,
};
use tether_net::longport::{Client, ClientApp, ClientConfig, ClientEvent, Credentials, LoginKind};
use tether_net_drivers::embassy::{TcpClient, UdpDriver};
use tether_net_drivers::Input;

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, TunTapDevice>) -> ! {
    runner.run().await
}

fn endpoint(s: &str) -> IpEndpoint {
    let a: SocketAddrV4 = s.parse().expect("IPv4 ADDR:PORT");
    IpEndpoint::new((*a.ip()).into(), a.port())
}

fn fail(what: &str) -> ! {
    println!("failed: {what}");
    std::process::exit(1)
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 5 {
        eprintln!("usage: embassy_tap TAP ADDR/PREFIX DDNET_ADDR:PORT LONGPORT_ADDR:PORT TOKEN");
        std::process::exit(2);
    }
    let (ip, prefix) = args[1].split_once('/').expect("ADDR/PREFIX");
    let ip: std::net::Ipv4Addr = ip.parse().expect("an IPv4 address");
    let device =
        TunTapDevice::new(&args[0]).unwrap_or_else(|e| fail(&format!("TAP {}: {e}", args[0])));
    let config = Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(ip, prefix.parse().expect("a prefix")),
        dns_servers: Default::default(),
        gateway: None,
    });
    static RESOURCES: StaticCell<StackResources<4>> = StaticCell::new();
    let seed = std::process::id() as u64 ^ 0x5eed;
    let (stack, runner) =
        embassy_net::new(device, config, RESOURCES.init(StackResources::new()), seed);
    spawner.spawn(net_task(runner).expect("spawn the network task"));
    stack.wait_config_up().await;
    println!("stack up at {}", args[1]);

    // --- game client over UDP: connect, stay 5 s, close with a reason ----------------------
    let (mut rx_meta, mut tx_meta) = ([PacketMetadata::EMPTY; 8], [PacketMetadata::EMPTY; 8]);
    let (mut rx_buf, mut tx_buf) = ([0u8; 8192], [0u8; 8192]);
    let mut sock = UdpSocket::new(stack, &mut rx_meta, &mut rx_buf, &mut tx_meta, &mut tx_buf);
    sock.bind(0).expect("bind a UDP port");
    let mut d = UdpDriver::new(sock, endpoint(&args[2]), GameClient::new(GameConfig::new()));
    d.command(|c, now| c.connect(now)).expect("a fresh client");
    let event = |_: &mut GameClient, _, i: Input<'_, GameClient>| match i {
        Input::Event(e) => Some(e),
        Input::App(..) => None,
    };
    match d.run(Duration::from_secs(10), event).await {
        Some(GameEvent::Connected { .. }) => println!("game: connected"),
        other => fail(&format!("game: {other:?} instead of Connected")),
    }
    if let Some(e) = d.run(Duration::from_secs(5), event).await {
        fail(&format!("game: {e:?} while staying"));
    }
    d.command(|c, now| c.close(now, "bye from embassy"))
        .expect("open");
    match d.run(Duration::from_secs(1), event).await {
        Some(GameEvent::Closed { cause }) => println!("game: closed: {cause:?}"),
        other => fail(&format!("game: {other:?} instead of Closed")),
    }

    // --- LongPort client over TCP: auth, one request, reconnect, close ------------------------
    let (mut rx_buf, mut tx_buf) = ([0u8; 4096], [0u8; 4096]);
    let sock = TcpSocket::new(stack, &mut rx_buf, &mut tx_buf);
    let config = ClientConfig::tcp().with_max_body(2000);
    let mut lp: TcpClient<'_, Client> =
        TcpClient::new(sock, endpoint(&args[3]), Client::new(config));
    lp.command(|c, now| c.connect(now, Credentials::new(&args[4])))
        .expect("a fresh client");
    let mut requested = false;
    loop {
        let step = lp
            .run(Duration::from_secs(30), |_, _, i| match i {
                Input::Event(ClientEvent::Connected { via, .. }) => Some(Some(via)),
                Input::Event(ClientEvent::Closed { .. } | ClientEvent::LoginFailed { .. }) => {
                    Some(None)
                }
                Input::App(_, ClientApp::Response { body, .. }) => {
                    println!("longport: response: {}", String::from_utf8_lossy(body));
                    None
                }
                _ => None,
            })
            .await;
        match step {
            Some(Some(LoginKind::Auth)) if !requested => {
                requested = true;
                println!("longport: connected");
                lp.request(4, StdDuration::from_secs(5), b"hello")
                    .await
                    .expect("request");
            }
            Some(Some(LoginKind::Reconnect)) => {
                println!("longport: reconnected");
                break;
            }
            other => fail(&format!("longport: {other:?}")),
        }
    }
    lp.command(|c, now| c.close(now, "bye")).expect("open");
    lp.run(Duration::from_secs(1), |_, _, i| match i {
        Input::Event(ClientEvent::Closed { .. }) => Some(()),
        _ => None,
    })
    .await;
    println!("longport: closed");
    std::process::exit(0);
}
