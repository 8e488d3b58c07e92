//! Footprint: game server, 16 peer slots keyed by an IPv4 socket address, through the fixed loop
#![no_std]
#![no_main]

#[path = "../fp_common.rs"]
mod fp_common;

use core::hint::black_box;

use tether_net::game::{Flags, Server, ServerConfig, TokenSecret};

type Addr = ([u8; 4], u16);
type GameServer = Server<Addr, 16>;

#[cortex_m_rt::entry]
fn main() -> ! {
    let server: &'static mut GameServer = cortex_m::singleton!(
        : GameServer = GameServer::with_capacities(ServerConfig::new(TokenSecret(black_box([7; 16]))))
    )
    .unwrap();
    let (mut rx, mut tx) = ([0u8; 1400], [0u8; 1400]);
    let mut tick = 0;
    loop {
        let i = fp_common::inputs(&mut rx, &mut tick);
        let now = i.now;
        let from: Addr = black_box(([10, 0, 0, 1], 8303));
        match i.command {
            0 => {
                let _ = black_box(server.close(now, from, "kicked"));
            }
            1 => {
                let _ = black_box(server.shutdown(now, "shutdown"));
            }
            2 => {
                let t = server.send_chunks(
                    now,
                    from,
                    Flags::default(),
                    1,
                    &rx[..i.len.min(64)],
                    &mut tx,
                );
                let _ = black_box((t, &tx));
            }
            _ => {}
        }
        if let Ok(r) = server.handle_input(now, from, &rx[..i.len]) {
            black_box(r.into_app());
        }
        fp_common::run_loop(server, now, &mut tx);
    }
}
