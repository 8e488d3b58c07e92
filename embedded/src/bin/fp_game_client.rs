//! Footprint: game client (default capacities) through the fixed drive loop
#![no_std]
#![no_main]

#[path = "../fp_common.rs"]
mod fp_common;

use core::hint::black_box;

use tether_net::game::{Client, ClientConfig, Flags};

#[cortex_m_rt::entry]
fn main() -> ! {
    let client: &'static mut Client =
        cortex_m::singleton!(: Client = Client::new(ClientConfig::default())).unwrap();
    let (mut rx, mut tx) = ([0u8; 1400], [0u8; 1400]);
    let mut tick = 0;
    loop {
        let i = fp_common::inputs(&mut rx, &mut tick);
        let now = i.now;
        match i.command {
            0 => {
                let _ = black_box(client.connect(now));
            }
            1 => {
                let _ = black_box(client.close(now, "bye"));
            }
            2 => {
                let t = client.send_chunks(now, Flags::default(), 1, &rx[..i.len.min(64)], &mut tx);
                let _ = black_box((t, &tx));
            }
            _ => {}
        }
        if let Ok(r) = client.handle_input(now, (), &rx[..i.len]) {
            black_box(r.into_app());
        }
        fp_common::run_loop(client, now, &mut tx);
    }
}
