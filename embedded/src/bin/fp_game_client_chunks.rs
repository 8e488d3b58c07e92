//! Footprint: game client with the chunk layer (`Client<4, Reliable<2048, 16, 2048, 16>>`)
//! through the fixed drive loop
#![no_std]
#![no_main]

#[path = "../fp_common.rs"]
mod fp_common;

use core::hint::black_box;

use tether_net::game::{ChunkConfig, Client, ClientConfig, Reliable};

type C = Client<4, Reliable<2048, 16, 2048, 16>>;

#[cortex_m_rt::entry]
fn main() -> ! {
    let client: &'static mut C = cortex_m::singleton!(
        : C = Client::with_chunks(ClientConfig::default(), ChunkConfig::fast())
    )
    .unwrap();
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
                let _ = black_box(client.send_vital(now, &rx[..i.len.min(64)], true));
            }
            3 => {
                let t = client.send_non_vital(now, &rx[..i.len.min(64)], &mut tx);
                let _ = black_box((t, &tx));
            }
            _ => {}
        }
        if let Ok(r) = client.handle_input(now, (), &rx[..i.len]) {
            black_box(r.into_app());
        }
        while let Some(c) = client.poll_chunk() {
            black_box(c);
        }
        fp_common::run_loop(client, now, &mut tx);
    }
}
