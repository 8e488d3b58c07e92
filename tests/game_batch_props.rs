//! `Server::handle_batch` against `Server::handle_input`: the same datagrams, one at a time and
//! in batches, give the same results, transmits, events and stats (differential property test)

use proptest::prelude::*;
use tether_net::game::wire::{Control, Reason, Token};
use tether_net::game::{Server, ServerConfig, TokenSecret};
use tether_net::testing::control_packet as control;
use tether_net::Instant;

/// A small event queue (2) so that batches run into `QueueFull` and resume
type Srv = Server<u32, 8, 2>;

/// One datagram to build: sender index, kind, and raw bytes for the garbage kinds
#[derive(Debug, Clone)]
struct Op {
    peer: u32,
    kind: u8,
    raw: Vec<u8>,
    /// drain the server in the per-datagram callback
    drain: bool,
}

fn op() -> impl Strategy<Value = Op> {
    (
        0u32..10,
        0u8..8,
        proptest::collection::vec(any::<u8>(), 0..24),
        any::<bool>(),
    )
        .prop_map(|(peer, kind, raw, drain)| Op {
            peer,
            kind,
            raw,
            drain,
        })
}

/// The bytes of `op` for a server whose tokens are `token_for`
fn datagram(srv: &Srv, op: &Op) -> Vec<u8> {
    let token = srv.token_for(op.peer);
    match op.kind {
        0 => control(Control::Connect, Some(Token::UNKNOWN)),
        1 => control(Control::Accept, Some(token)),
        2 | 3 => control(Control::KeepAlive, Some(token)),
        4 => control(Control::KeepAlive, Some(Token([1, 2, 3, 4]))),
        5 => control(Control::Close(Reason::from_str("bye")), Some(token)),
        6 => {
            let mut d = op.raw.clone();
            if let Some(b) = d.first_mut() {
                *b |= 0x20;
            }
            d
        }
        _ => op.raw.clone(),
    }
}

fn drain(srv: &mut Srv, now: Instant, log: &mut Vec<String>) {
    let mut out = [0u8; 1400];
    loop {
        while let Some(t) = srv.poll_transmit(now, &mut out).expect("fits") {
            log.push(format!("tx {:?} {:?}", t, &out[..t.len]));
        }
        match srv.poll_event() {
            Some(e) => log.push(format!("ev {e:?}")),
            None => break,
        }
    }
}

/// Batches of (time step in ms, datagrams)
/// Batches, each after a clock step in milliseconds: mostly forward, a sixth of them backward (a
/// clock that jumps back is part of what the two paths must agree on)
fn batches() -> impl Strategy<Value = Vec<(i64, Vec<Op>)>> {
    proptest::collection::vec(
        (-800i64..4000, proptest::collection::vec(op(), 0..40)),
        1..8,
    )
}

fn server() -> Srv {
    Server::with_capacities(ServerConfig::new(TokenSecret([7; 16])))
}

/// Every batch at its time: `feed` takes its datagrams in, then the timers run and everything
/// is drained; the log and the stats
fn replay(
    batches: &[(i64, Vec<Op>)],
    mut feed: impl FnMut(&mut Srv, Instant, &[Op], &[Vec<u8>], &mut Vec<String>),
) -> (Vec<String>, String) {
    let mut srv = server();
    let mut log = Vec::new();
    let mut now = Instant::from_secs(1);
    for (step, ops) in batches {
        let by = tether_net::Duration::from_millis(step.unsigned_abs());
        now = if *step < 0 { now - by } else { now + by };
        let data: Vec<Vec<u8>> = ops.iter().map(|o| datagram(&srv, o)).collect();
        feed(&mut srv, now, ops, &data, &mut log);
        srv.handle_timeout(now);
        drain(&mut srv, now, &mut log);
    }
    (log, format!("{:?}", srv.stats()))
}

/// One at a time through `handle_input`
fn one_by_one(batches: &[(i64, Vec<Op>)]) -> (Vec<String>, String) {
    replay(batches, |srv, now, ops, data, log| {
        for (i, (o, d)) in ops.iter().zip(data).enumerate() {
            let r = loop {
                match srv.handle_input(now, o.peer, d) {
                    Ok(r) => break r,
                    Err(e) => {
                        log.push(format!("refused {i} {e:?}"));
                        drain(srv, now, log);
                    }
                }
            };
            log.push(format!("in {i} {} {:?}", r.bytes_consumed(), r.app()));
            if o.drain {
                drain(srv, now, log);
            }
        }
    })
}

/// The same datagrams through `handle_batch`
fn batched(batches: &[(i64, Vec<Op>)]) -> (Vec<String>, String) {
    replay(batches, |srv, now, ops, data, log| {
        let batch: Vec<(u32, &[u8])> = ops
            .iter()
            .zip(data)
            .map(|(o, d)| (o.peer, d.as_slice()))
            .collect();
        let mut start = 0;
        while start < batch.len() {
            let mut inner = Vec::new();
            let done = srv.handle_batch(now, &batch[start..], |srv, i, r| {
                inner.push(format!(
                    "in {} {} {:?}",
                    start + i,
                    r.bytes_consumed(),
                    r.app()
                ));
                if ops[start + i].drain {
                    let mut sub = Vec::new();
                    drain(srv, now, &mut sub);
                    inner.extend(sub);
                }
            });
            log.extend(inner);
            start += done;
            if start < batch.len() {
                log.push(format!("refused {start} QueueFull"));
                drain(srv, now, log);
            }
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn batched_input_is_one_at_a_time_input(batches in batches()) {
        let (a_log, a_stats) = one_by_one(&batches);
        let (b_log, b_stats) = batched(&batches);
        prop_assert_eq!(a_log, b_log);
        prop_assert_eq!(a_stats, b_stats);
    }
}

/// The generator reaches the interesting cases: peers come online, send keep-alives and
/// CLOSE, and a batch is refused with `QueueFull` and resumed
#[test]
fn the_fixed_sequence_connects_closes_and_resumes() {
    let mut ops = Vec::new();
    for peer in 0..6 {
        for kind in [0, 1, 2, 5] {
            ops.push(Op {
                peer,
                kind,
                raw: Vec::new(),
                drain: false,
            });
        }
    }
    let batches = vec![(0, ops)];
    let (a, a_stats) = one_by_one(&batches);
    let (b, b_stats) = batched(&batches);
    assert_eq!(a, b);
    assert_eq!(a_stats, b_stats);
    assert!(
        a.iter().filter(|l| l.starts_with("ev Connected")).count() >= 4,
        "{a:#?}"
    );
    assert!(a.iter().any(|l| l.starts_with("refused")), "{a:#?}");
    assert!(a.iter().any(|l| l.contains("Close")), "{a:#?}");
}

/// A clock that jumps back between batches: both paths count the same KEEP_ALIVEs and nobody
/// times out or is refused for it
#[test]
fn a_clock_jumping_back_between_batches_changes_nothing_between_the_paths() {
    let op = |peer, kind| Op {
        peer,
        kind,
        raw: Vec::new(),
        drain: true,
    };
    let join: Vec<Op> = (0..3).flat_map(|p| [op(p, 0), op(p, 1)]).collect();
    let keep_alives: Vec<Op> = (0..3).map(|p| op(p, 2)).collect();
    let batches = vec![
        (0, join),
        (-900, keep_alives.clone()),
        (3_000, keep_alives.clone()),
        (-800, keep_alives),
    ];
    let (a, a_stats) = one_by_one(&batches);
    let (b, b_stats) = batched(&batches);
    assert_eq!(a, b);
    assert_eq!(a_stats, b_stats);
    assert_eq!(
        a.iter().filter(|l| l.starts_with("ev Connected")).count(),
        3,
        "{a:#?}"
    );
    assert!(a_stats.contains("keep_alives_received: 9"), "{a_stats}");
    assert!(a_stats.contains("peers_timed_out: 0"), "{a_stats}");
    assert!(!a.iter().any(|l| l.starts_with("ev Closed")), "{a:#?}");
}
