//! Footprint: LongPort server (default capacities: 16 connections, 64 sessions), through the loop
#![no_std]
#![no_main]

#[path = "../fp_common.rs"]
mod fp_common;

use core::hint::black_box;

use tether_net::longport::{
    CloseCode, Grant, Server, ServerApp as App, ServerConfig, SessionId, Source, Status, Transport,
};

type LpServer = Server<u32>;

#[cortex_m_rt::entry]
fn main() -> ! {
    let server: &'static mut LpServer =
        cortex_m::singleton!(: LpServer = LpServer::new(ServerConfig::new())).unwrap();
    let (mut rx, mut tx) = ([0u8; 1400], [0u8; 1400]);
    let mut tick = 0;
    loop {
        let i = fp_common::inputs(&mut rx, &mut tick);
        let now = i.now;
        let conn: u32 = black_box(1);
        match i.command {
            0 => {
                let _ =
                    black_box(server.handle_connected(now, conn, Transport::Tcp, Source::UNKNOWN));
            }
            1 => {
                let _ = black_box(server.close(now, conn, CloseCode::ServerError, "bye"));
            }
            2 => {
                let _ = black_box(server.shutdown(now, "bye"));
            }
            3 => server.handle_closed(now, conn),
            _ => {}
        }
        let mut grant = None;
        let mut answer = None;
        match server.handle_input(now, conn, &rx[..i.len]) {
            Ok(r) => {
                black_box(r.bytes_consumed());
                match r.into_app() {
                    Some(App::Auth { token, .. }) => grant = Some(black_box(token.len()) > 3),
                    Some(App::Reconnect { .. }) => grant = Some(true),
                    Some(App::Request {
                        request_id, cmd, ..
                    }) => answer = Some((request_id, cmd)),
                    other => {
                        black_box(other);
                    }
                }
            }
            Err(e) => {
                black_box(e);
            }
        }
        // (from the hardware RNG in a real firmware)
        let session = Grant::new(
            SessionId::from_random(black_box([7; 16])),
            black_box(1 << 40),
        );
        match grant {
            Some(true) => {
                let _ = black_box(server.accept_auth(now, conn, session.clone()));
                let _ = black_box(server.accept_reconnect(now, conn, session));
            }
            Some(false) => {
                let _ = black_box(server.reject_auth(
                    now,
                    conn,
                    Status::Unauthenticated,
                    401,
                    "bad token",
                ));
            }
            None => {}
        }
        if let Some((id, cmd)) = answer {
            let r = server.respond(now, conn, cmd, id, Status::Success, &rx[..8], &mut tx);
            let _ = black_box((r, &tx));
        }
        fp_common::run_loop(server, now, &mut tx);
    }
}
