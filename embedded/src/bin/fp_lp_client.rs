//! Footprint: LongPort client (default capacities, TCP), no alloc, through the fixed drive loop
#![no_std]
#![no_main]

#[path = "../fp_common.rs"]
mod fp_common;

use core::hint::black_box;

use tether_net::longport::{Client, ClientConfig, ClientEvent, Credentials};
use tether_net::Duration;

#[cortex_m_rt::entry]
fn main() -> ! {
    let client: &'static mut Client =
        cortex_m::singleton!(: Client = Client::new(ClientConfig::tcp())).unwrap();
    let (mut rx, mut tx) = ([0u8; 1400], [0u8; 1400]);
    let mut tick = 0;
    loop {
        let i = fp_common::inputs(&mut rx, &mut tick);
        let now = i.now;
        match i.command {
            0 => {
                let _ = black_box(client.connect(now, Credentials::new("one-time-token")));
            }
            1 => {
                let _ = black_box(client.handle_connected(now));
            }
            2 => {
                let r = client.send_request(now, 42, Duration::ZERO, &rx[..i.len.min(64)], &mut tx);
                let _ = black_box((r, &tx));
            }
            3 => {
                let _ = black_box(client.provide_token(now, "fresh-token"));
            }
            4 => client.handle_closed(now, ()),
            5 => {
                let _ = black_box(client.close(now, "bye"));
            }
            _ => {}
        }
        match client.handle_input(now, (), &rx[..i.len]) {
            Ok(r) => {
                black_box(r.bytes_consumed());
                black_box(r.into_app());
            }
            Err(e) => {
                black_box(e);
            }
        }
        client.handle_timeout(now);
        while let Ok(Some(t)) = client.poll_transmit(now, &mut tx) {
            black_box(&tx[..t.len.min(tx.len())]);
        }
        while let Some(ev) = client.poll_event() {
            if let ClientEvent::ConnectTransport { .. } = ev {
                let _ = black_box(client.handle_connected(now));
            }
            black_box(&ev);
        }
        black_box(client.poll_timeout());
    }
}
