//! defmt link check: a game handshake and a LongPort login in memory, every machine event, the
//! machines and their configurations logged with `defmt::info!` through defmt-rtt
//!
//! Built for thumbv7em-none-eabihf (`cargo build --release`); not run (RTT needs a probe).
#![no_std]
#![no_main]

use cortex_m::asm;
use cortex_m_rt::entry;
use defmt_rtt as _;
use tether_net::game::{self, ClientConfig, ServerConfig, TokenSecret};
use tether_net::longport::{self, Credentials, Grant, SessionId, Source, Transport};
use tether_net::{Duration, Instant};

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    if let Some(loc) = info.location() {
        defmt::error!("panic at {=str}:{=u32}", loc.file(), loc.line());
    }
    asm::udf()
}

/// Game: CONNECT / CONNECT_ACCEPT / ACCEPT, one keep-alive period, CLOSE
fn game_session() {
    const ADDR: u16 = 1;
    let (client_config, server_config) = (
        ClientConfig::default(),
        ServerConfig::new(TokenSecret([3; 16])),
    );
    // delays show as `Duration`s (kept in microseconds inside)
    defmt::info!("game configs {} {}", client_config, server_config);
    defmt::info!("vital config {}", game::vital::VitalConfig::new());
    let mut client = game::Client::new(client_config);
    let mut server: game::Server<u16, 4> = game::Server::with_capacities(server_config);
    let mut buf = [0u8; 1400];
    let mut now = Instant::from_secs(1);
    let _ = client.connect(now);
    for round in 0..4u32 {
        if round == 2 {
            now += Duration::from_millis(250);
            client.handle_timeout(now);
            server.handle_timeout(now);
        }
        if round == 3 {
            let _ = client.close(now, "bye");
        }
        while let Ok(Some(t)) = client.poll_transmit(now, &mut buf) {
            defmt::info!("game c->s {} bytes", t.len);
            if let Err(e) = server.handle_input(now, ADDR, &buf[..t.len]) {
                defmt::warn!("server refused input: {}", e);
            }
        }
        while let Ok(Some(t)) = server.poll_transmit(now, &mut buf) {
            defmt::info!("game s->c {} bytes to {}", t.len, t.to);
            if let Err(e) = client.handle_input(now, (), &buf[..t.len]) {
                defmt::warn!("client refused input: {}", e);
            }
        }
        while let Some(ev) = client.poll_event() {
            defmt::info!("game client event: {}", ev);
        }
        while let Some(ev) = server.poll_event() {
            defmt::info!("game server event: {}", ev);
        }
    }
    defmt::info!("game client {} stats {}", client, client.stats());
    defmt::info!("game server {} stats {}", server, server.stats());
}

/// LongPort over in-memory TCP: handshake + auth, accepted by the application
fn longport_session() {
    const CONN: u8 = 1;
    let (client_config, server_config) =
        (longport::ClientConfig::tcp(), longport::ServerConfig::new());
    defmt::info!("longport configs {} {}", client_config, server_config);
    let mut client = longport::Client::new(client_config);
    let mut server: longport::Server<u8> = longport::Server::new(server_config);
    let now = Instant::from_secs(1);
    let mut buf = [0u8; 512];
    let _ = client.connect(now, Credentials::new("token"));
    let _ = server.handle_connected(now, CONN, Transport::Tcp, Source::UNKNOWN);
    let _ = client.handle_connected(now);
    for _ in 0..3 {
        while let Ok(Some(t)) = client.poll_transmit(now, &mut buf) {
            let mut data = &buf[..t.len];
            while !data.is_empty() {
                let Ok(r) = server.handle_input(now, CONN, data) else {
                    break;
                };
                if let Some(longport::ServerApp::Auth { token, .. }) = r.app() {
                    defmt::info!("auth with a token of {} bytes", token.len());
                }
                if r.bytes_consumed() == 0 {
                    break;
                }
                data = &data[r.bytes_consumed()..];
            }
            // (128 bits from the hardware RNG in a real firmware; QEMU's board has none)
            let grant = Grant::new(SessionId::from_random([0x5a; 16]), 1 << 41);
            if let Err(e) = server.accept_auth(now, CONN, grant) {
                defmt::info!("accept_auth: {}", e);
            }
        }
        while let Ok(Some(t)) = server.poll_transmit(now, &mut buf) {
            let mut data = &buf[..t.len];
            while !data.is_empty() {
                let Ok(r) = client.handle_input(now, (), data) else {
                    break;
                };
                if r.bytes_consumed() == 0 {
                    break;
                }
                data = &data[r.bytes_consumed()..];
            }
        }
        while let Some(ev) = client.poll_event() {
            defmt::info!("longport client event: {}", ev);
        }
        while let Some(ev) = server.poll_event() {
            defmt::info!("longport server event: {}", ev);
        }
    }
    defmt::info!(
        "longport client state {} stats {}",
        client.state(),
        client.stats()
    );
    defmt::info!("longport server stats {}", server.stats());
}

#[entry]
fn main() -> ! {
    defmt::info!("tether defmt firmware");
    game_session();
    longport_session();
    loop {
        asm::wfi();
    }
}
