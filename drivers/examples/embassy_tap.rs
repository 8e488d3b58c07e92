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
use embassy_net::{Config, IpEndpoint, Ipv4Cidr, Runner, Stack, StackResources, StaticConfigV4};
use embassy_net_tuntap::TunTapDevice;
use embassy_time::Duration;
use static_cell::StaticCell;
use tether_net::game;
use tether_net::longport::{Client, ClientConfig, ClientEvent, Credentials, LoginKind};
use tether_net_drivers::embassy::{TcpBuffers, TcpClient, UdpBuffers, UdpDriver};

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

    if let Err(e) = game(stack, endpoint(&args[2])).await {
        fail(&format!("game: {e}"));
    }
    if let Err(e) = longport(stack, endpoint(&args[3]), &args[4]).await {
        fail(&format!("longport: {e}"));
    }
    std::process::exit(0);
}

/// Game client over UDP: connect, stay 5 s, close with a reason
async fn game(stack: Stack<'_>, server: IpEndpoint) -> Result<(), String> {
    let mut buffers: UdpBuffers = UdpBuffers::new();
    let client = game::Client::new(game::ClientConfig::new());
    let mut d =
        UdpDriver::bind(stack, &mut buffers, server, client).map_err(|e| format!("{e:?}"))?;
    d.command(|c, now| c.connect(now))
        .map_err(|e| e.to_string())?;
    match d.next_event(Duration::from_secs(10)).await {
        Some(game::ClientEvent::Connected { .. }) => println!("game: connected"),
        other => return Err(format!("{other:?} instead of Connected")),
    }
    if let Some(e) = d.next_event(Duration::from_secs(5)).await {
        return Err(format!("{e:?} while staying"));
    }
    d.command(|c, now| c.close(now, "bye from embassy"))
        .map_err(|e| e.to_string())?;
    println!("game: {:?}", d.next_event(Duration::from_secs(1)).await);
    Ok(())
}

/// LongPort client over TCP: auth, one request, reconnect when the transport drops, close
async fn longport(stack: Stack<'_>, server: IpEndpoint, token: &str) -> Result<(), String> {
    let mut buffers: TcpBuffers = TcpBuffers::new();
    let client = Client::new(ClientConfig::tcp().with_max_body(2000));
    let mut d: TcpClient<'_, Client> = TcpClient::with_buffers(stack, &mut buffers, server, client);
    d.command(|c, now| c.connect(now, Credentials::new(token)))
        .map_err(|e| e.to_string())?;
    let connected = |e: Option<ClientEvent>, how: LoginKind| matches!(e, Some(ClientEvent::Connected { via, .. }) if via == how);
    while !connected(d.next_event(Duration::from_secs(10)).await, LoginKind::Auth) {}
    println!("longport: connected");
    let mut body = [0u8; 64];
    let n = d
        .call(4, StdDuration::from_secs(5), b"hello", &mut body)
        .await;
    let n = n.map_err(|e| format!("{e:?}"))?;
    println!(
        "longport: response: {}",
        String::from_utf8_lossy(&body[..n])
    );
    // when the transport drops, the driver reconnects with the session by itself
    while !connected(
        d.next_event(Duration::from_secs(30)).await,
        LoginKind::Reconnect,
    ) {}
    println!("longport: reconnected");
    d.command(|c, now| c.close(now, "bye"))
        .map_err(|e| e.to_string())?;
    println!("longport: {:?}", d.next_event(Duration::from_secs(1)).await);
    Ok(())
}
