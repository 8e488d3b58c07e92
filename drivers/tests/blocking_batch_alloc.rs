//! The blocking driver's batched path allocates per call, never per batch: a `run_batched` that
//! reads eight `recvmmsg` batches makes exactly as many heap allocations as one that reads one
//! (the machine itself allocates nothing, `tests/zero_alloc.rs` of the library; this is the
//! driver's own loop around it). The counter is `stats_alloc`'s (the crate-wide `unsafe_code =
//! "forbid"` lint rules out a `GlobalAlloc` written here); the test runs on the main thread under
//! `libtest-mimic` (`harness = false`), so no harness thread allocates while it counts.
#![cfg(target_os = "linux")]

#[path = "support/accept.rs"]
mod accept;

use std::alloc::System;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use accept::token_of;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use tether_net::game::wire::{Control, Reason, Token};
use tether_net::game::{Server, ServerApp, ServerConfig, TokenSecret};
use tether_net::testing::control_packet as control;
use tether_net_drivers::blocking::{Input, UdpDriver};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Heap allocations (and reallocations) while `f` runs
fn allocations<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let region = Region::new(GLOBAL);
    let r = f();
    let s = region.change();
    (r, s.allocations + s.reallocations)
}

fn config() -> ServerConfig {
    // a constant secret is for tests only; a real server draws it from a random source
    ServerConfig::new(TokenSecret([7; 16]))
        .with_keep_alive(Duration::from_secs(60))
        .with_timeout(Duration::from_secs(60))
}

/// Loopback delivery of what was just sent
fn settle() {
    std::thread::sleep(Duration::from_millis(50));
}

type Srv = Server<SocketAddr>;

/// `run_batched` until a peer's CLOSE (the closure's stop)
fn until_close(driver: &mut UdpDriver<Srv>) -> Option<SocketAddr> {
    driver
        .run_batched(
            Duration::from_secs(10),
            |_: &mut Srv, _, input: Input<'_, Srv>| match input {
                Input::App(peer, ServerApp::Close { .. }) => Some(peer),
                _ => None,
            },
        )
        .unwrap()
}

fn eight_batches_allocate_what_one_batch_does() {
    const BATCH: usize = 4;
    let mut driver = UdpDriver::bind(Srv::new(config()), "127.0.0.1:0")
        .expect("server socket")
        .with_batch_size(BATCH);
    let server = driver.local_addr().unwrap();
    let clients: Vec<UdpSocket> = (0..4)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").expect("client socket");
            s.connect(server).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s
        })
        .collect();
    // warm-up, not counted: four peers connect (the driver's buffers are made here)
    for c in &clients {
        c.send(&control(Control::Connect, Some(Token::UNKNOWN)))
            .unwrap();
    }
    settle();
    driver
        .run_batched(Duration::ZERO, |_, _, _| None::<()>)
        .unwrap();
    let mut tokens = Vec::new();
    for c in &clients {
        let mut b = [0u8; 2048];
        let n = c.recv(&mut b).expect("CONNECT_ACCEPT");
        let t = token_of(&b[..n]);
        c.send(&control(Control::Accept, Some(t))).unwrap();
        tokens.push(t);
    }
    settle();
    driver
        .run_batched(Duration::ZERO, |_, _, _| None::<()>)
        .unwrap();
    assert_eq!(driver.machine().peer_count(), 4);

    // `kas` KEEP_ALIVEs from client 0, then a CLOSE from client `closer`, all queued before the
    // server reads; the run stops at the CLOSE
    let mut run = |kas: usize, closer: usize| {
        let ka = control(Control::KeepAlive, Some(tokens[0]));
        let close = control(
            Control::Close(Reason::from_str("bye")),
            Some(tokens[closer]),
        );
        for _ in 0..kas {
            clients[0].send(&ka).unwrap();
        }
        clients[closer].send(&close).unwrap();
        settle();
        let batches = driver.stats().batches;
        let (closed, allocs) = allocations(|| until_close(&mut driver));
        assert_eq!(closed, Some(clients[closer].local_addr().unwrap()));
        (driver.stats().batches - batches, allocs)
    };
    // a first run of the shape, not compared: what grows once (the event backlog) grows here
    run(BATCH - 1, 3);
    let (one, one_allocs) = run(BATCH - 1, 1);
    let (eight, eight_allocs) = run(8 * BATCH - 1, 2);
    assert_eq!((one, eight), (1, 8), "recvmmsg batches read");
    // per call: the two directions' syscall headers (README: four small allocations)
    assert!(one_allocs <= 4, "{one_allocs} allocations in a call");
    assert_eq!(
        eight_allocs, one_allocs,
        "allocations of a run of 8 batches against one of 1 ({one_allocs}): one per batch?"
    );
    assert_eq!(
        driver.machine().stats().keep_alives_received,
        10 * BATCH as u64 - 3
    );
}

fn main() -> std::process::ExitCode {
    let mut args = libtest_mimic::Arguments::from_args();
    args.test_threads = Some(1);
    let trial = libtest_mimic::Trial::test("eight_batches_allocate_what_one_batch_does", || {
        eight_batches_allocate_what_one_batch_does();
        Ok(())
    });
    libtest_mimic::run(&args, vec![trial]).exit_code()
}
