extern crate std;
use std::vec;
use std::vec::Vec;

use super::peer::unstamp;
use super::*;
#[cfg(feature = "control-huffman")]
use crate::game::test_util::compressed_control;
use crate::game::test_util::{hex, ms};
use crate::game::{Client, ClientConfig, ClientEvent, ClientState};
use crate::io::PeerText;

type Addr = u32;
type Srv = Server<Addr, 4>;

const SECRET: TokenSecret = TokenSecret([7; 16]);

fn server(vanilla: VanillaPolicy) -> Srv {
    Server::with_capacities(ServerConfig::new(SECRET).with_vanilla(vanilla))
}

fn s_out<const N: usize, const E: usize>(
    s: &mut Server<Addr, N, E>,
    now: Instant,
) -> Vec<(Addr, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1400];
    while let Some(t) = s.poll_transmit(now, &mut buf).unwrap() {
        assert_eq!(t.kind, FrameKind::Datagram);
        out.push((t.to, buf[..t.len].to_vec()));
    }
    out
}

fn c_out(c: &mut Client, now: Instant) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1400];
    while let Some(t) = c.poll_transmit(now, &mut buf).unwrap() {
        out.push(buf[..t.len].to_vec());
    }
    out
}

fn s_events<const N: usize, const E: usize>(s: &mut Server<Addr, N, E>) -> Vec<ServerEvent<Addr>> {
    core::iter::from_fn(|| s.poll_event()).collect()
}

fn c_events(c: &mut Client) -> Vec<ClientEvent> {
    core::iter::from_fn(|| c.poll_event()).collect()
}

fn to_s<const N: usize, const E: usize>(
    s: &mut Server<Addr, N, E>,
    now: Instant,
    from: Addr,
    d: &[u8],
) -> Option<Vec<u8>> {
    let r = s.handle_input(now, from, d).unwrap();
    assert_eq!(r.bytes_consumed(), d.len());
    r.into_app()
        .and_then(|a| a.chunks())
        .map(|c| c.payload.to_vec())
}

fn to_c(c: &mut Client, now: Instant, d: &[u8]) -> Option<Vec<u8>> {
    let r = c.handle_input(now, (), d).unwrap();
    r.into_app()
        .and_then(|a| a.chunks())
        .map(|c| c.payload.to_vec())
}

/// One round over a lossless link at `now`: the datagrams of `c` (address `addr`) to `s`, then
/// those of `s` (all to `addr`) to `c`
fn exchange<const N: usize, const E: usize>(
    s: &mut Server<Addr, N, E>,
    c: &mut Client,
    addr: Addr,
    now: Instant,
) {
    for p in c_out(c, now) {
        to_s(s, now, addr, &p);
    }
    for (to, p) in s_out(s, now) {
        assert_eq!(to, addr);
        to_c(c, now, &p);
    }
}

/// Run the handshake of `c` (address `addr`) with `s` at `now` over a lossless link
fn handshake<const N: usize, const E: usize>(
    s: &mut Server<Addr, N, E>,
    c: &mut Client,
    addr: Addr,
    now: Instant,
) {
    c.connect(now).unwrap();
    for _ in 0..4 {
        exchange(s, c, addr, now);
    }
}

/// Run the timers of `s` and `c` and the lossless link between them from `now` until `end`;
/// the last instant run
fn run_until(s: &mut Srv, c: &mut Client, addr: Addr, mut now: Instant, end: Instant) -> Instant {
    while now < end {
        now = crate::time::earliest(c.poll_timeout(), s.poll_timeout()).unwrap();
        c.handle_timeout(now);
        s.handle_timeout(now);
        exchange(s, c, addr, now);
    }
    now
}

/// A server with `policy` and the client `c`, connecting since 0 ms (its CONNECT not sent yet)
fn connecting(policy: VanillaPolicy, mut c: Client) -> (Srv, Client) {
    c.connect(ms(0)).unwrap();
    (server(policy), c)
}

/// The addresses of the datagrams `s` hands out at `now`, in order
fn out_addrs<const N: usize, const E: usize>(
    s: &mut Server<Addr, N, E>,
    now: Instant,
) -> Vec<Addr> {
    s_out(s, now).iter().map(|(a, _)| *a).collect()
}

/// A rejecting server and a token client, online as peer `addr` since 0 ms (the server's
/// `Connected` event taken)
fn online_pair(addr: Addr) -> (Srv, Client) {
    let mut s = server(VanillaPolicy::Reject);
    let mut c = token_client();
    handshake(&mut s, &mut c, addr, ms(0));
    let _ = s_events(&mut s);
    (s, c)
}

/// The hex bytes `prefix`, then the token `tok`
fn with_token(prefix: &str, tok: Token) -> Vec<u8> {
    let mut v = hex(prefix);
    v.extend_from_slice(&tok.0);
    v
}

/// The events of `s` are exactly: `peer` closed with `cause`
fn assert_closed<const N: usize, const E: usize>(
    s: &mut Server<Addr, N, E>,
    peer: Addr,
    cause: CloseCause,
) {
    assert_eq!(s_events(s), [ServerEvent::Closed { peer, cause }]);
}

/// The events of `c` are exactly: closed with `cause`
fn assert_c_closed(c: &mut Client, cause: CloseCause) {
    assert_eq!(c_events(c), [ClientEvent::Closed { cause }]);
}

fn token_client() -> Client {
    Client::new(ClientConfig::default())
}

fn vanilla_client() -> Client {
    Client::new(ClientConfig::new().with_vanilla(true))
}

#[test]
fn per_peer_memory_layout() {
    use core::mem::size_of;
    // what a datagram touches: one 4-byte index bucket and a 16-byte slot (u32 key)
    assert_eq!(size_of::<PeerHot>(), 12);
    assert_eq!(
        size_of::<Option<PeerHot>>(),
        12,
        "the niche holds the free flag"
    );
    assert_eq!(size_of::<table::Slot<u32, PeerHot>>(), 16);
    assert_eq!(size_of::<PeerCold>(), 12);
    assert_eq!(size_of::<TimerEntry>(), 16);
    // per peer of capacity: 2 buckets (8) + slot (16) + free-list entry (4) + cold (12) +
    // timer entry (16) + transmit-queue entry (4) = 60 bytes, plus a fixed part
    let fixed = size_of::<Server<u32, 2>>() - 2 * 60;
    assert_eq!(size_of::<Server<u32, 1024>>(), fixed + 1024 * 60);
    assert_eq!(size_of::<Server<u32, 65536>>(), fixed + 65536 * 60);
    // an (IPv4 address, port) key: its slot is 20 bytes (6 + 12, aligned to 4), 64 per peer
    type V4 = ([u8; 4], u16);
    assert_eq!(size_of::<table::Slot<V4, PeerHot>>(), 20);
    let fixed = size_of::<Server<V4, 2>>() - 2 * 64;
    assert_eq!(size_of::<Server<V4, 1024>>(), fixed + 1024 * 64);
}

#[test]
fn liveness_stamps_round_up_and_survive_the_32_bit_wrap() {
    // 1 ms resolution, rounded up: never earlier than the real receive time
    assert_eq!(stamp(Instant::from_micros(0)), 0);
    assert_eq!(stamp(Instant::from_micros(1)), 1);
    assert_eq!(stamp(Instant::from_micros(1_000)), 1);
    assert_eq!(stamp(Instant::from_micros(1_001)), 2);
    let t = Instant::from_micros(1_500);
    assert_eq!(unstamp(stamp(t), t), ms(2));
    assert_eq!(unstamp(stamp(t), ms(9_000)), ms(2));
    // across the wrap of the low 32 bits of the millisecond count
    let wrap = 1u64 << 32;
    let before = ms(wrap - 3);
    assert_eq!(stamp(before), u32::MAX - 2);
    assert_eq!(unstamp(stamp(before), ms(wrap + 10_000)), before);
    // near the end of time: no overflow
    assert_eq!(
        unstamp(stamp(Instant::MAX), Instant::MAX).as_millis(),
        u64::MAX / 1_000
    );
    // a stamp older than 2^32 ms reads as younger (documented)
    assert_eq!(unstamp(stamp(ms(5)), ms(wrap + 5)), ms(wrap + 5));
}

#[test]
fn peer_times_out_on_schedule_across_the_millisecond_wrap() {
    // an epoch at which the 32-bit millisecond stamp wraps while the peer is online
    let base = (1u64 << 32) - 4_000;
    let mut s = server(VanillaPolicy::Reject);
    let mut c = token_client();
    handshake(&mut s, &mut c, 1, ms(base));
    let _ = s_events(&mut s);
    let ka = with_token("10 00 00 00", s.token_for(1));
    // the peer sends a KEEP_ALIVE every 500 ms for 20 s, across the wrap; the server runs
    // every timer it asks for
    let mut now = base;
    let mut sent = 0;
    while now < base + 20_000 {
        now += 500;
        while let Some(t) = s.poll_timeout().filter(|&t| t <= ms(now)) {
            s.handle_timeout(t);
            sent += s_out(&mut s, t).len();
        }
        to_s(&mut s, ms(now), 1, &ka);
    }
    assert!(s.is_online(1), "kept alive across the wrap");
    assert!(s_events(&mut s).is_empty());
    assert!((19..=21).contains(&sent), "server keep-alives: {sent}");
    // then silence: the timeout fires exactly 10 s after the last KEEP_ALIVE
    let deadline = ms(now + 10_000);
    while let Some(t) = s.poll_timeout() {
        assert!(t <= deadline, "no timer up to the deadline: {t:?}");
        assert!(s.is_online(1), "timed out before {deadline:?}");
        s.handle_timeout(t);
        let _ = s_out(&mut s, t);
        if s.peer_count() == 0 {
            assert_eq!(t, deadline);
        }
    }
    assert_closed(&mut s, 1, CloseCause::Timeout);
}

#[test]
fn token_handshake_is_stateless_until_accept() {
    let (mut s, mut c) = connecting(VanillaPolicy::Reject, token_client());
    let connect = c_out(&mut c, ms(0));
    to_s(&mut s, ms(0), 1, &connect[0]);
    assert_eq!(s.peer_count(), 0);
    let reply = s_out(&mut s, ms(0));
    let tok = s.token_for(1);
    assert!(!tok.is_sentinel());
    let expect = with_token("10 00 00 02 54 4b 45 4e", tok);
    assert_eq!(reply, [(1, expect.clone())]);
    // the same address always gets the same token; nothing stored
    to_s(&mut s, ms(1), 1, &connect[0]);
    assert_eq!(s_out(&mut s, ms(1)), [(1, expect.clone())]);
    assert_eq!(s.peer_count(), 0);
    assert_eq!(s.poll_timeout(), None);

    to_c(&mut c, ms(2), &expect);
    assert_eq!(
        c_events(&mut c),
        [ClientEvent::Connected { token: Some(tok) }]
    );
    let accept = c_out(&mut c, ms(2));
    let expect_accept = with_token("10 00 00 03", tok);
    assert_eq!(accept, [expect_accept]);
    to_s(&mut s, ms(3), 1, &accept[0]);
    assert_eq!(
        s_events(&mut s),
        [ServerEvent::Connected {
            peer: 1,
            token: Some(tok)
        }]
    );
    assert!(s.is_online(1));
    assert_eq!(s.peer_token(1), Some(tok));
    assert_eq!(s.stats().peers_admitted, 1);
}

#[test]
fn accept_with_wrong_or_missing_token_creates_nothing() {
    let mut s = server(VanillaPolicy::Admit);
    let good = s.token_for(1);
    let wrong = with_token("10 00 00 03", s.token_for(2));
    to_s(&mut s, ms(0), 1, &wrong);
    to_s(&mut s, ms(0), 1, &hex("10 00 00 03"));
    assert_eq!(s.peer_count(), 0);
    assert_eq!(s.stats().dropped_wrong_token, 1);
    assert_eq!(s.stats().ignored_unsolicited, 1);
    assert!(s_out(&mut s, ms(0)).is_empty());
    let right = with_token("10 00 00 03", good);
    to_s(&mut s, ms(0), 1, &right);
    assert_eq!(s.peer_count(), 1);
}

#[test]
fn vanilla_admit_policy() {
    let (mut s, mut c) = connecting(VanillaPolicy::Admit, vanilla_client());
    to_s(&mut s, ms(0), 9, &c_out(&mut c, ms(0))[0]);
    assert_eq!(
        s_events(&mut s),
        [ServerEvent::Connected {
            peer: 9,
            token: None
        }]
    );
    let out = s_out(&mut s, ms(0));
    assert_eq!(out, [(9, hex("10 00 00 02"))]);
    to_c(&mut c, ms(1), &out[0].1);
    assert_eq!(c_events(&mut c), [ClientEvent::Connected { token: None }]);
    // the client's bare ACCEPT is accepted as liveness, nothing answered
    to_s(&mut s, ms(1), 9, &c_out(&mut c, ms(1))[0]);
    assert!(s_out(&mut s, ms(1)).is_empty());
    // a repeated vanilla CONNECT (the first CONNECT_ACCEPT was lost) is answered again
    to_s(&mut s, ms(2), 9, &hex("10 00 00 01"));
    assert_eq!(s_out(&mut s, ms(2)), [(9, hex("10 00 00 02"))]);
    assert_eq!(s_events(&mut s), []);
    // server keep-alive after 1 s of silence (last send at 2 ms): bare
    s.handle_timeout(ms(1001));
    assert!(s_out(&mut s, ms(1001)).is_empty());
    s.handle_timeout(ms(1002));
    assert_eq!(s_out(&mut s, ms(1002)), [(9, hex("10 00 00 00"))]);
}

#[test]
fn vanilla_pending_policy() {
    let mut s = server(VanillaPolicy::Pending);
    to_s(&mut s, ms(0), 5, &hex("10 00 00 01"));
    assert!(s_events(&mut s).is_empty());
    assert_eq!(s_out(&mut s, ms(0)), [(5, hex("10 00 00 02"))]);
    assert_eq!(s.poll_timeout(), Some(ms(500)));
    s.handle_timeout(ms(500));
    assert_eq!(s_out(&mut s, ms(500)), [(5, hex("10 00 00 02"))]);
    // ACCEPT and keep-alives do not complete the connect
    to_s(&mut s, ms(600), 5, &hex("10 00 00 03"));
    assert!(!s.is_online(5));
    let mut out = [0u8; 16];
    assert_eq!(
        s.send_chunks(ms(600), 5, Flags::default(), 0, &[], &mut out),
        Err(Error::NotOpen)
    );
    // the first chunk packet does
    assert_eq!(
        to_s(&mut s, ms(700), 5, &hex("00 00 01 aa")),
        Some(vec_of(&[0xAA]))
    );
    assert_eq!(
        s_events(&mut s),
        [ServerEvent::Connected {
            peer: 5,
            token: None
        }]
    );
    assert!(s.is_online(5));
    // online now: keep-alive 1 s after the last send (the resend at 500 ms); the timer entry
    // filed for the next resend (1 s) wakes the caller early but sends nothing
    s.handle_timeout(ms(1000));
    assert!(s_out(&mut s, ms(1000)).is_empty());
    assert_eq!(s.poll_timeout(), Some(ms(1500)));
    s.handle_timeout(ms(1500));
    assert_eq!(s_out(&mut s, ms(1500)), [(5, hex("10 00 00 00"))]);
}

fn vec_of(b: &[u8]) -> Vec<u8> {
    b.to_vec()
}

#[test]
fn pending_slot_times_out_without_event() {
    let mut s = server(VanillaPolicy::Pending);
    to_s(&mut s, ms(0), 5, &hex("10 00 00 01"));
    let mut now = ms(0);
    let _ = s_out(&mut s, now);
    while let Some(t) = s.poll_timeout() {
        now = t;
        s.handle_timeout(now);
        let _ = s_out(&mut s, now);
    }
    assert_eq!(now, ms(10_000));
    assert_eq!(s.peer_count(), 0);
    assert!(s_events(&mut s).is_empty());
    assert_eq!(s.stats().pending_timed_out, 1);
    assert_eq!(s.stats().connect_accepts_sent, 20);
}

#[test]
fn vanilla_reject_policy_sends_bare_close() {
    let (mut s, mut c) = connecting(VanillaPolicy::Reject, vanilla_client());
    to_s(&mut s, ms(0), 3, &c_out(&mut c, ms(0))[0]);
    let out = s_out(&mut s, ms(0));
    assert_eq!(out, [(3, hex("10 00 00 04"))]);
    assert_eq!(s.peer_count(), 0);
    let r = c.handle_input(ms(1), (), &out[0].1).unwrap();
    assert_eq!(
        r.into_app().and_then(|a| a.close_reason()),
        Some(PeerText::new(b""))
    );
    assert_c_closed(&mut c, CloseCause::Peer);
}

#[test]
fn in_memory_token_and_vanilla_sessions() {
    for (policy, mut c, token) in [
        (VanillaPolicy::Reject, token_client(), true),
        (VanillaPolicy::Admit, vanilla_client(), false),
        (VanillaPolicy::Pending, vanilla_client(), false),
    ] {
        let mut s = server(policy);
        handshake(&mut s, &mut c, 1, ms(0));
        assert_eq!(c.state(), ClientState::Online);
        assert_eq!(c.token().is_some(), token);
        // app data both ways
        let mut buf = [0u8; 64];
        let t = c
            .send_chunks(ms(10), Flags::default(), 1, b"hi", &mut buf)
            .unwrap();
        assert_eq!(to_s(&mut s, ms(10), 1, &buf[..t.len]), Some(b"hi".to_vec()));
        assert!(s.is_online(1), "{policy:?}");
        let t = s
            .send_chunks(ms(11), 1, Flags::default(), 1, b"yo", &mut buf)
            .unwrap();
        assert_eq!(t.to, 1);
        assert_eq!(to_c(&mut c, ms(11), &buf[..t.len]), Some(b"yo".to_vec()));
        // 30 s of keep-alives keep both sides up
        let mut now = ms(11);
        now = run_until(&mut s, &mut c, 1, now, ms(30_000));
        assert_eq!(c.state(), ClientState::Online);
        assert!(s.is_online(1));
        assert!(
            c.stats().keep_alives_received >= 29,
            "{policy:?} {:?}",
            c.stats()
        );
        assert!(
            s.stats().keep_alives_received >= 100,
            "{policy:?} {:?}",
            s.stats()
        );
        assert_eq!(
            s.stats().dropped_wrong_token + c.stats().dropped_wrong_token,
            0
        );
    }
}

#[test]
fn lost_connect_and_lost_connect_accept_recover_by_resend() {
    let (mut s, mut c) = connecting(VanillaPolicy::Reject, token_client());
    let _lost_connect = c_out(&mut c, ms(0));
    c.handle_timeout(ms(500));
    let connect = c_out(&mut c, ms(500));
    to_s(&mut s, ms(500), 1, &connect[0]);
    let _lost_accept = s_out(&mut s, ms(500));
    c.handle_timeout(ms(1000));
    let connect = c_out(&mut c, ms(1000));
    to_s(&mut s, ms(1000), 1, &connect[0]);
    for (_, p) in s_out(&mut s, ms(1000)) {
        to_c(&mut c, ms(1000), &p);
    }
    for p in c_out(&mut c, ms(1000)) {
        to_s(&mut s, ms(1000), 1, &p);
    }
    assert_eq!(c.state(), ClientState::Online);
    assert!(s.is_online(1));
}

#[test]
fn lost_accept_without_retry_leaves_server_without_peer_and_client_times_out() {
    let mut s = server(VanillaPolicy::Reject);
    let mut c = Client::new(ClientConfig::new().with_accept_retry(None));
    c.connect(ms(0)).unwrap();
    to_s(&mut s, ms(0), 1, &c_out(&mut c, ms(0))[0]);
    for (_, p) in s_out(&mut s, ms(0)) {
        to_c(&mut c, ms(0), &p);
    }
    let _lost = c_out(&mut c, ms(0));
    assert_eq!(c.state(), ClientState::Online);
    let mut now = ms(0);
    while c.state() == ClientState::Online {
        now = c.poll_timeout().unwrap();
        c.handle_timeout(now);
        for p in c_out(&mut c, now) {
            to_s(&mut s, now, 1, &p);
        }
        assert!(s_out(&mut s, now).is_empty());
    }
    assert_eq!(now, ms(10_000));
    assert_eq!(s.peer_count(), 0);
    assert!(s.stats().ignored_unsolicited >= 39);
    assert!(matches!(
        c_events(&mut c).last(),
        Some(ClientEvent::Closed {
            cause: CloseCause::Timeout
        })
    ));
}

#[test]
fn lost_accept_recovered_by_retry_handshake() {
    let (mut s, mut c) = connecting(VanillaPolicy::Reject, token_client());
    to_s(&mut s, ms(0), 1, &c_out(&mut c, ms(0))[0]);
    for (_, p) in s_out(&mut s, ms(0)) {
        to_c(&mut c, ms(0), &p);
    }
    assert_eq!(c_events(&mut c).len(), 1);
    let _lost = c_out(&mut c, ms(0));
    // keep-alives go unanswered (the server has no peer); at 2 s the client repeats CONNECT
    let mut now = ms(0);
    while c.stats().accept_retries == 0 {
        now = c.poll_timeout().unwrap();
        c.handle_timeout(now);
        exchange(&mut s, &mut c, 1, now);
    }
    assert_eq!(now, ms(2_000));
    // CONNECT -> CONNECT_ACCEPT -> ACCEPT happened at 2 s over the lossless link
    for p in c_out(&mut c, now) {
        to_s(&mut s, now, 1, &p);
    }
    assert!(s.is_online(1));
    assert_eq!(s_events(&mut s).len(), 1);
    // the server's first keep-alive ends the retrying; no further handshakes
    run_until(&mut s, &mut c, 1, now, ms(20_000));
    assert_eq!(c.stats().accept_retries, 1);
    assert_eq!(c.state(), ClientState::Online);
    assert!(c_events(&mut c).is_empty(), "no second Connected event");
}

#[test]
fn ddnet_connect_from_existing_peer_is_reanswered() {
    let (mut s, _c) = online_pair(1);
    s.set_ack(1, 7).unwrap();
    let tok = s.token_for(1);
    to_s(
        &mut s,
        ms(100),
        1,
        &hex("10 00 00 01 54 4b 45 4e ff ff ff ff"),
    );
    let expect = with_token("10 00 00 02 54 4b 45 4e", tok);
    assert_eq!(s_out(&mut s, ms(100)), [(1, expect)]);
    assert!(s.is_online(1));
    assert!(s_events(&mut s).is_empty());
    // the client ignores it while online (it is a valid, in-range packet: liveness only)
    assert_eq!(s.peer_count(), 1);
}

#[test]
fn server_keep_alive_cadence_and_timeout_exactly_at_deadline() {
    let (mut s, _c) = online_pair(1);
    let tok = s.token_for(1);
    let ka = with_token("10 00 00 00", tok);
    // admitted at 0: keep-alives at 1 s, 2 s, ...
    for i in 1..10u64 {
        assert_eq!(s.poll_timeout(), Some(ms(i * 1000)));
        s.handle_timeout(ms(i * 1000 - 1));
        assert!(s_out(&mut s, ms(i * 1000 - 1)).is_empty());
        s.handle_timeout(ms(i * 1000));
        assert_eq!(s_out(&mut s, ms(i * 1000)), [(1, ka.clone())]);
    }
    assert_eq!(s.poll_timeout(), Some(ms(10_000)));
    s.handle_timeout(Instant::from_micros(9_999_999));
    assert!(s.is_online(1));
    s.handle_timeout(ms(10_000));
    assert_eq!(s.peer_count(), 0);
    assert_closed(&mut s, 1, CloseCause::Timeout);
    assert!(s_out(&mut s, ms(10_000)).is_empty());
    assert_eq!(s.poll_timeout(), None);
    assert_eq!(s.stats().peers_timed_out, 1);
}

#[test]
fn close_reasons_both_ways() {
    let (mut s, mut c) = online_pair(1);
    c.close(ms(5), "bye").unwrap();
    let close = c_out(&mut c, ms(5));
    assert_eq!(close.len(), 1);
    let r = s.handle_input(ms(5), 1, &close[0]).unwrap();
    assert_eq!(
        r.into_app(),
        Some(ServerApp::Close {
            reason: PeerText::new(b"bye")
        })
    );
    assert_closed(&mut s, 1, CloseCause::Peer);
    assert!(s_out(&mut s, ms(5)).is_empty(), "nothing sent back");

    let mut c = token_client();
    handshake(&mut s, &mut c, 2, ms(10));
    let _ = s_events(&mut s);
    let _ = c_events(&mut c);
    s.close(ms(20), 2, "Kicked (ci test kick)").unwrap();
    assert_closed(&mut s, 2, CloseCause::Local);
    let out = s_out(&mut s, ms(20));
    let mut expect = hex("10 00 00 04");
    expect.extend_from_slice(b"Kicked (ci test kick)\0");
    expect.extend_from_slice(&s.token_for(2).0);
    assert_eq!(out, [(2, expect)]);
    let r = c.handle_input(ms(21), (), &out[0].1).unwrap();
    assert_eq!(
        r.into_app().and_then(|a| a.close_reason()),
        Some(PeerText::new(b"Kicked (ci test kick)"))
    );
    assert_c_closed(&mut c, CloseCause::Peer);
    assert_eq!(s.close(ms(22), 2, ""), Err(Error::UnknownPeer));
}

#[test]
fn wrong_token_and_bad_ack_from_peer_dropped_and_counted() {
    let (mut s, _c) = online_pair(1);
    let tok = s.token_for(1);
    to_s(&mut s, ms(1), 1, &hex("10 00 00 04 78 00 01 02 03 04"));
    to_s(&mut s, ms(1), 1, &hex("10 00 00"));
    assert_eq!(s.stats().dropped_wrong_token, 1);
    let bad_ack = with_token("10 05 00 04 79 00", tok);
    to_s(&mut s, ms(2), 1, &bad_ack);
    assert_eq!(s.stats().dropped_bad_ack, 1);
    assert!(s.is_online(1));
    assert!(s_events(&mut s).is_empty());
    // the ignored packets did not refresh liveness: timeout still at 10 s
    s.handle_timeout(ms(10_000));
    assert!(!s.is_online(1));
}

#[test]
fn full_server_answers_accept_with_close_and_token() {
    let mut s: Server<Addr, 2> = Server::with_capacities(ServerConfig::new(SECRET));
    for a in [1, 2] {
        let mut c = token_client();
        handshake(&mut s, &mut c, a, ms(0));
    }
    assert_eq!(s.peer_count(), 2);
    let _ = s_events(&mut s);
    let mut c = token_client();
    c.connect(ms(1)).unwrap();
    to_s(&mut s, ms(1), 3, &c_out(&mut c, ms(1))[0]);
    for (_, p) in s_out(&mut s, ms(1)) {
        to_c(&mut c, ms(1), &p);
    }
    let accept = c_out(&mut c, ms(1));
    to_s(&mut s, ms(1), 3, &accept[0]);
    let out = s_out(&mut s, ms(1));
    let mut expect = hex("10 00 00 04");
    expect.extend_from_slice(b"This server is full\0");
    expect.extend_from_slice(&s.token_for(3).0);
    assert_eq!(out, [(3, expect)]);
    assert_eq!(s.stats().rejected_full, 1);
    assert!(s_events(&mut s).is_empty());
    to_c(&mut c, ms(2), &out[0].1);
    assert!(matches!(
        c_events(&mut c).as_slice(),
        [
            ClientEvent::Connected { .. },
            ClientEvent::Closed {
                cause: CloseCause::Peer
            }
        ]
    ));

    // a vanilla CONNECT to a full Admit server gets a bare CLOSE
    let mut s: Server<Addr, 2> =
        Server::with_capacities(ServerConfig::new(SECRET).with_vanilla(VanillaPolicy::Admit));
    for a in [1, 2, 3] {
        to_s(&mut s, ms(0), a, &hex("10 00 00 01"));
    }
    let out = s_out(&mut s, ms(0));
    assert_eq!(out.len(), 3);
    assert!(out.contains(&(3, hex("10 00 00 04"))), "{out:?}");
    assert_eq!(s.stats().rejected_full, 1);
}

#[test]
fn shutdown_closes_every_peer() {
    let mut s = server(VanillaPolicy::Admit);
    let mut clients = Vec::new();
    for a in [1, 2, 3] {
        let mut c = if a == 2 {
            vanilla_client()
        } else {
            token_client()
        };
        handshake(&mut s, &mut c, a, ms(0));
        clients.push(c);
    }
    let _ = s_events(&mut s);
    s.shutdown(ms(50), "Server shutdown").unwrap();
    assert_eq!(s.state(), ServerState::ShuttingDown);
    assert_eq!(s.shutdown(ms(50), "again"), Err(Error::Closed));
    assert_eq!(s.poll_timeout(), None);
    // events only follow the CLOSEs
    assert!(s.poll_event().is_none());
    let out = s_out(&mut s, ms(50));
    assert_eq!(out.len(), 3);
    // in table order (hash order), one CLOSE per peer
    let mut tos: Vec<u32> = out.iter().map(|(to, _)| *to).collect();
    tos.sort_unstable();
    assert_eq!(tos, [1, 2, 3]);
    for (to, p) in &out {
        let c = &mut clients[*to as usize - 1];
        let mut expect = hex("10 00 00 04");
        expect.extend_from_slice(b"Server shutdown\0");
        if *to != 2 {
            expect.extend_from_slice(&s.token_for(*to).0);
        }
        assert_eq!(p, &expect);
        to_c(c, ms(51), p);
        assert_eq!(c.state(), ClientState::Closed);
    }
    let ev = s_events(&mut s);
    assert_eq!(ev.len(), 4);
    // PeerClosed in the order of the CLOSEs
    for (a, e) in out.iter().map(|(to, _)| *to).zip(&ev) {
        assert_eq!(
            e,
            &ServerEvent::Closed {
                peer: a,
                cause: CloseCause::Shutdown
            }
        );
    }
    assert_eq!(ev[3], ServerEvent::ShutdownComplete);
    assert_eq!(s.state(), ServerState::Stopped);
    assert_eq!(s.peer_count(), 0);
    to_s(
        &mut s,
        ms(60),
        4,
        &hex("10 00 00 01 54 4b 45 4e ff ff ff ff"),
    );
    assert!(s_out(&mut s, ms(60)).is_empty());
    assert_eq!(s.stats().ignored_stopped, 1);
    assert_eq!(s.close(ms(60), 1, ""), Err(Error::Closed));
    assert_eq!(s.shutdown(ms(60), ""), Err(Error::Closed));
}

#[test]
fn shutdown_without_peers_completes_at_once() {
    let mut s = server(VanillaPolicy::Reject);
    s.shutdown(ms(0), "").unwrap();
    assert_eq!(s_events(&mut s), [ServerEvent::ShutdownComplete]);
    assert!(s.poll_event().is_none());
}

#[test]
fn buffer_too_small_keeps_frames_queued() {
    let mut s = server(VanillaPolicy::Reject);
    to_s(
        &mut s,
        ms(0),
        1,
        &hex("10 00 00 01 54 4b 45 4e ff ff ff ff"),
    );
    let mut small = [0u8; 11];
    assert_eq!(
        s.poll_transmit(ms(0), &mut small),
        Err(BufferTooSmall { required: 12 })
    );
    assert_eq!(s.stats().connect_accepts_sent, 0);
    assert_eq!(s_out(&mut s, ms(0)).len(), 1);

    let mut c = token_client();
    handshake(&mut s, &mut c, 1, ms(0));
    s.handle_timeout(ms(1000));
    assert_eq!(
        s.poll_transmit(ms(1000), &mut small[..7]),
        Err(BufferTooSmall { required: 8 })
    );
    assert_eq!(s.stats().keep_alives_sent, 0);
    assert_eq!(s_out(&mut s, ms(1000)).len(), 1);
    s.close(ms(1001), 1, "x").unwrap();
    assert_eq!(
        s.poll_transmit(ms(1001), &mut small[..4]),
        Err(BufferTooSmall { required: 10 })
    );
    assert_eq!(s_out(&mut s, ms(1001)).len(), 1);
}

#[test]
fn backwards_time_shifts_the_timeline() {
    let mut s = server(VanillaPolicy::Reject);
    let mut c = token_client();
    handshake(&mut s, &mut c, 1, ms(5_000));
    // the caller's clock steps back 5 s: no time passes, nothing is due
    s.handle_timeout(ms(1));
    assert!(s_out(&mut s, ms(0)).is_empty());
    assert!(s.is_online(1));
    // a keep-alive after the step: the next one is due 1 s later in the caller's clock
    let ka = with_token("10 00 00 00", s.token_for(1));
    to_s(&mut s, ms(0), 1, &ka);
    assert_eq!(s.poll_timeout(), Some(ms(1_000)));
    // and the peer times out 10 s after its last keep-alive, in the caller's clock
    let mut now = ms(1_000);
    while s.is_online(1) {
        s.handle_timeout(now);
        let _ = s_out(&mut s, now);
        now = s.poll_timeout().unwrap_or(now);
    }
    assert!(now <= ms(10_001), "timed out at {now}");
}

/// The KEEP_ALIVE fast path (`input_hashed`) takes a token peer's plain KEEP_ALIVE only where
/// the general path would: not from a server shutting down, not with the event queue full, and
/// not a connectionless datagram of the same shape
#[test]
fn a_keep_alive_takes_the_fast_path_only_where_the_general_path_would_refresh() {
    // a connectionless datagram shaped like the peer's KEEP_ALIVE (0xEC: the connectionless
    // flag among others, and `0xEC ^ 0xFC` is the control flag) is connectionless
    let mut s = server(VanillaPolicy::Reject);
    let mut c = token_client();
    handshake(&mut s, &mut c, 1, ms(0));
    let _ = s_events(&mut s);
    let tok = s.token_for(1);
    let before = s.stats();
    to_s(&mut s, ms(10), 1, &with_token("ec 00 00 00", tok));
    let after = s.stats();
    assert_eq!(after.keep_alives_received, before.keep_alives_received);
    assert_eq!(after.dropped_connless, before.dropped_connless + 1);
    // the same bytes as a KEEP_ALIVE are one; with a wrong token they are dropped as such
    to_s(&mut s, ms(20), 1, &with_token("10 00 00 00", tok));
    assert_eq!(
        s.stats().keep_alives_received,
        after.keep_alives_received + 1
    );
    let wrong = Token([tok.0[0] ^ 1, tok.0[1], tok.0[2], tok.0[3]]);
    to_s(&mut s, ms(30), 1, &with_token("10 00 00 00", wrong));
    assert_eq!(s.stats().dropped_wrong_token, after.dropped_wrong_token + 1);
    assert_eq!(
        s.stats().keep_alives_received,
        after.keep_alives_received + 1
    );

    // with the event queue full, a KEEP_ALIVE is refused like any datagram
    let mut s: Server<Addr, 4, 1> = Server::with_capacities(ServerConfig::new(SECRET));
    let mut c = token_client();
    handshake(&mut s, &mut c, 1, ms(0)); // its Connected event fills the queue
    let ka = with_token("10 00 00 00", s.token_for(1));
    let before = s.stats();
    assert_eq!(s.handle_input(ms(10), 1, &ka), Err(Error::QueueFull));
    assert_eq!(s.stats().keep_alives_received, before.keep_alives_received);
    assert_eq!(s_events(&mut s).len(), 1);
    to_s(&mut s, ms(10), 1, &ka);
    assert_eq!(
        s.stats().keep_alives_received,
        before.keep_alives_received + 1
    );

    // a server shutting down ignores it (the peer is still in the table until its CLOSE)
    let mut s = server(VanillaPolicy::Reject);
    let mut c = token_client();
    handshake(&mut s, &mut c, 1, ms(0));
    let _ = s_events(&mut s);
    let ka = with_token("10 00 00 00", s.token_for(1));
    s.shutdown(ms(10), "bye").unwrap();
    assert_eq!(s.state(), ServerState::ShuttingDown);
    let before = s.stats();
    to_s(&mut s, ms(20), 1, &ka);
    assert_eq!(s.stats().keep_alives_received, before.keep_alives_received);
    assert_eq!(s.stats().ignored_stopped, before.ignored_stopped + 1);
}

#[test]
fn full_event_queue_refuses_input_without_consuming() {
    let mut s: Server<Addr, 4, 1> =
        Server::with_capacities(ServerConfig::new(SECRET).with_vanilla(VanillaPolicy::Admit));
    to_s(&mut s, ms(0), 1, &hex("10 00 00 01"));
    assert_eq!(
        s.handle_input(ms(0), 2, &hex("10 00 00 01")),
        Err(Error::QueueFull)
    );
    assert_eq!(s.peer_count(), 1);
    assert_eq!(s.close(ms(0), 1, ""), Err(Error::QueueFull));
    assert_eq!(s_events(&mut s).len(), 1);
    to_s(&mut s, ms(0), 2, &hex("10 00 00 01"));
    assert_eq!(s.peer_count(), 2);
}

#[test]
fn timeouts_wait_for_event_queue_room() {
    let mut s: Server<Addr, 4, 1> =
        Server::with_capacities(ServerConfig::new(SECRET).with_vanilla(VanillaPolicy::Admit));
    for a in [1, 2] {
        to_s(&mut s, ms(0), a, &hex("10 00 00 01"));
        let _ = s_events(&mut s);
    }
    s.handle_timeout(ms(10_000));
    assert_eq!(s.peer_count(), 1);
    assert!(
        s.poll_timeout().is_some_and(|t| t <= ms(10_000)),
        "the remaining peer is overdue"
    );
    assert_eq!(s_events(&mut s).len(), 1);
    s.handle_timeout(ms(10_000));
    assert_eq!(s.peer_count(), 0);
    assert_eq!(s_events(&mut s).len(), 1);
}

#[test]
fn stateless_reply_queue_is_bounded() {
    let mut s = server(VanillaPolicy::Reject);
    let connect = hex("10 00 00 01 54 4b 45 4e ff ff ff ff");
    for a in 0..(STATELESS_QUEUE_LEN as u32 + 3) {
        to_s(&mut s, ms(0), a, &connect);
    }
    assert_eq!(s.stats().dropped_reply_queue_full, 3);
    assert_eq!(s_out(&mut s, ms(0)).len(), STATELESS_QUEUE_LEN);
}

/// Every reply to an address without a connection is no larger than the request, except the
/// documented full-server CLOSE
#[test]
fn amplification_at_most_one_before_admission() {
    let tok_connect = hex("10 00 00 01 54 4b 45 4e ff ff ff ff");
    let mut requests: Vec<Vec<u8>> = vec_list(&[
        "10 00 00 01",
        "10 00 00 01 54 4b 45 4e",
        "10 00 00 01 54 4b 45 4e ff ff ff",
        "10 00 00 00",
        "10 00 00 00 01 02 03 04",
        "10 00 00 02 54 4b 45 4e 01 02 03 04",
        "10 00 00 03",
        "10 00 00 03 01 02 03 04",
        "10 00 00 04",
        "10 00 00 04 61 62 00",
        "00 00 01 aa",
        "10 00",
        "18 00 00 00",
        "10 00 00 07",
    ]);
    requests.push(tok_connect.clone());
    for policy in [
        VanillaPolicy::Reject,
        VanillaPolicy::Admit,
        VanillaPolicy::Pending,
    ] {
        let mut s: Server<Addr, 64> =
            Server::with_capacities(ServerConfig::new(SECRET).with_vanilla(policy));
        for (i, req) in requests.iter().enumerate() {
            let from = i as Addr + 100;
            to_s(&mut s, ms(0), from, req);
            for (to, reply) in s_out(&mut s, ms(0)) {
                assert_eq!(to, from);
                assert!(
                    reply.len() <= req.len(),
                    "{policy:?}: {req:02x?} -> {reply:02x?}"
                );
            }
        }
        // the valid ACCEPT of a token client gets no reply at all (admission)
        let accept = with_token("10 00 00 03", s.token_for(1));
        to_s(&mut s, ms(0), 1, &accept);
        assert!(s_out(&mut s, ms(0)).is_empty());
    }
}

fn vec_list(items: &[&str]) -> Vec<Vec<u8>> {
    items.iter().map(|s| hex(s)).collect()
}

#[test]
fn set_ack_and_sequence_apply_per_peer() {
    let mut s = server(VanillaPolicy::Admit);
    to_s(&mut s, ms(0), 1, &hex("10 00 00 01"));
    let _ = s_out(&mut s, ms(0));
    assert_eq!(s.set_ack(9, 1), Err(Error::UnknownPeer));
    assert_eq!((s.ack(1), s.ack(9)), (Some(0), None));
    s.set_ack(1, 256).unwrap();
    assert_eq!(s.ack(1), Some(256));
    s.set_sequence(1, 3).unwrap();
    to_s(&mut s, ms(1), 1, &hex("10 03 00 00"));
    assert_eq!(s.stats().dropped_bad_ack, 0);
    assert_eq!(s.stats().keep_alives_received, 1);
    s.handle_timeout(ms(1000));
    assert_eq!(s_out(&mut s, ms(1000)), [(1, hex("11 00 00 00"))]);
}
#[test]
fn set_ack_and_sequence_take_any_u16_modulo_1024() {
    let mut s = server(VanillaPolicy::Admit);
    to_s(&mut s, ms(0), 1, &hex("10 00 00 01"));
    let _ = s_out(&mut s, ms(0));
    s.set_ack(1, u16::MAX).unwrap();
    s.set_sequence(1, u16::MAX).unwrap();
    // sequence 1023: a packet acking 1023 is in range
    to_s(&mut s, ms(1), 1, &hex("13 ff 00 00"));
    assert_eq!(s.stats().dropped_bad_ack, 0);
    assert_eq!(s.stats().keep_alives_received, 1);
    s.handle_timeout(ms(1000));
    assert_eq!(s_out(&mut s, ms(1000)), [(1, hex("13 ff 00 00"))]);
    assert_eq!(s.ack(1), Some(1023), "kept modulo 1024");
    s.set_ack(1, 1024 + 5).unwrap();
    assert_eq!(s.ack(1), Some(5));
    s.handle_timeout(ms(2000));
    assert_eq!(s_out(&mut s, ms(2000)), [(1, hex("10 05 00 00"))]);
}

#[test]
fn a_chunk_packet_sent_over_a_queued_keep_alive_replaces_it() {
    let (mut s, _c) = online_pair(1);
    let _ = s_out(&mut s, ms(0));
    // the keep-alive falls due and is queued, then the application sends chunks first
    let due = s.poll_timeout().unwrap();
    s.handle_timeout(due);
    let mut out = [0u8; 64];
    let _ = s
        .send_chunks(due, 1, Flags::default(), 1, &[0x40, 0x01, 0x02], &mut out)
        .unwrap();
    assert!(
        s_out(&mut s, due).is_empty(),
        "the keep-alive went with the chunks"
    );
    assert_eq!(s.stats().keep_alives_sent, 0);
}

#[test]
fn info_rates_are_clamped_and_reported() {
    let c = ServerConfig::new(SECRET)
        .with_info_per_second(600)
        .with_info_replies_per_second(500);
    assert_eq!(c.info_per_second(), 500, "clamped to the replies");
    assert_eq!(c.info_replies_per_second(), 500);
    let c = c.with_info_per_second(20);
    assert_eq!(c.info_per_second(), 20);
    assert_eq!(ServerConfig::new(SECRET).info_replies_per_second(), 500);
    assert_eq!(ServerConfig::new(SECRET).info_per_second(), 50);
}

#[test]
#[cfg(feature = "control-huffman")]
fn compressed_chunks_have_their_token_checked_after_decompression() {
    let mut s = server(VanillaPolicy::Reject);
    let mut c = token_client();
    handshake(&mut s, &mut c, 1, ms(0));
    let token = s.peer_token(1).unwrap();
    let compressed = |plain: &[u8]| {
        let mut packed = [0u8; 64];
        let n = crate::game::huffman::compress(plain, &mut packed).unwrap();
        let mut pkt = hex("80 00 01");
        pkt.extend_from_slice(&packed[..n]);
        (pkt, packed[..n].to_vec())
    };
    // the token is inside the compressed data: checked after decompressing in passing, the
    // payload handed out still compressed
    let mut plain = vec![0xde, 0xad];
    plain.extend_from_slice(&token.0);
    let (pkt, packed) = compressed(&plain);
    assert_eq!(to_s(&mut s, ms(1), 1, &pkt), Some(packed));
    // a wrong token inside: dropped, no sign of life
    let (pkt, _) = compressed(&[0xde, 0xad, 0, 0, 0, 1]);
    assert_eq!(to_s(&mut s, ms(1), 1, &pkt), None);
    // uncompressed with a wrong token: dropped
    assert_eq!(
        to_s(&mut s, ms(1), 1, &hex("00 00 01 de ad 00 00 00 01")),
        None
    );
    assert_eq!(s.stats().dropped_wrong_token, 2);
    assert_eq!(s.stats().chunk_packets_received, 1);
    // undecodable: malformed
    assert_eq!(to_s(&mut s, ms(1), 1, &hex("80 00 01 de ad")), None);
    assert_eq!(s.stats().dropped_malformed, 1);
}

#[test]
#[cfg(not(feature = "control-huffman"))]
fn without_control_huffman_compressed_packets_are_dropped() {
    let mut s = server(VanillaPolicy::Reject);
    let mut c = token_client();
    handshake(&mut s, &mut c, 1, ms(0));
    let token = s.peer_token(1).unwrap();
    let mut plain = vec![0xde, 0xad];
    plain.extend_from_slice(&token.0);
    let mut packed = [0u8; 64];
    let n = crate::game::huffman::compress(&plain, &mut packed).unwrap();
    let mut pkt = hex("80 00 01");
    pkt.extend_from_slice(&packed[..n]);
    // a compressed chunk packet with the right token inside, a compressed CLOSE: both dropped
    assert_eq!(to_s(&mut s, ms(1), 1, &pkt), None);
    let n = crate::game::huffman::compress(&hex("04 62 79 65 00"), &mut packed).unwrap();
    let mut close = hex("90 00 00");
    close.extend_from_slice(&packed[..n]);
    assert_eq!(to_s(&mut s, ms(2), 1, &close), None);
    assert_eq!(s.stats().dropped_malformed, 2);
    assert_eq!(s.stats().chunk_packets_received, 0);
    assert!(s.is_online(1));
}

/// Deterministic garbage and mutated valid packets into both machines in every state: no
/// panic, every datagram consumed whole, at most one Closed event per client
#[test]
fn arbitrary_input_never_panics() {
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let templates = vec_list(&[
        "10 00 00 01 54 4b 45 4e ff ff ff ff",
        "10 00 00 02 54 4b 45 4e 12 34 56 78",
        "10 00 00 03 12 34 56 78",
        "10 00 00 04 61 00 12 34 56 78",
        "10 00 00 00 12 34 56 78",
        "00 00 01 aa bb 12 34 56 78",
        "80 00 01 aa",
        "10 00 00 01",
        "00 00 01 aa",
    ]);
    for policy in [
        VanillaPolicy::Reject,
        VanillaPolicy::Admit,
        VanillaPolicy::Pending,
    ] {
        let mut s: Server<Addr, 8, 2> =
            Server::with_capacities(ServerConfig::new(SECRET).with_vanilla(policy));
        let mut c = token_client();
        c.connect(ms(0)).unwrap();
        let mut now = 0u64;
        let mut closed = 0;
        for round in 0..20_000u32 {
            now += next() % 300;
            let mut pkt = if next() % 3 == 0 {
                let len = (next() % 40) as usize;
                (0..len).map(|_| next() as u8).collect::<Vec<u8>>()
            } else {
                templates[(next() % templates.len() as u64) as usize].clone()
            };
            if !pkt.is_empty() && next() % 2 == 0 {
                let i = (next() % pkt.len() as u64) as usize;
                pkt[i] ^= next() as u8;
            }
            let from = (next() % 12) as Addr;
            if next() % 4 == 0 {
                // a packet ending with the right token for `from` (ACCEPT admits it)
                let id = [3u8, 0, 4, 3][(next() % 4) as usize];
                pkt = vec![0x10, 0, 0, id];
                pkt.extend_from_slice(&s.token_for(from).0);
            }
            match s.handle_input(ms(now), from, &pkt) {
                Ok(r) => assert_eq!(r.bytes_consumed(), pkt.len()),
                Err(e) => assert_eq!(e, Error::QueueFull),
            }
            match c.handle_input(ms(now), (), &pkt) {
                Ok(r) => assert_eq!(r.bytes_consumed(), pkt.len()),
                Err(e) => assert_eq!(e, Error::QueueFull),
            }
            s.handle_timeout(ms(now));
            c.handle_timeout(ms(now));
            if round % 3 == 0 {
                let _ = s_out(&mut s, ms(now));
                let _ = s_events(&mut s);
                let _ = c_out(&mut c, ms(now));
                closed += c_events(&mut c)
                    .iter()
                    .filter(|e| matches!(e, ClientEvent::Closed { .. }))
                    .count();
            }
            if round == 15_000 {
                s.shutdown(ms(now), "bye").unwrap();
            }
            if round % 3 == 0 && s.state() == ServerState::Running {
                // once the events are drained, no deadline is left overdue
                s.handle_timeout(ms(now));
                while !s_events(&mut s).is_empty() {
                    s.handle_timeout(ms(now));
                }
                assert!(
                    s.poll_timeout().is_none_or(|t| t > ms(now)),
                    "round {round}"
                );
                assert!(
                    c.poll_timeout().is_none_or(|t| t > ms(now)),
                    "round {round}"
                );
            }
        }
        closed += c_events(&mut c)
            .iter()
            .filter(|e| matches!(e, ClientEvent::Closed { .. }))
            .count();
        assert!(closed <= 1);
        assert!(s.stats().peers_admitted > 10, "{policy:?} {:?}", s.stats());
        assert_eq!(s.state(), ServerState::Stopped);
    }
}
#[test]
fn many_peers_admitted_kept_alive_and_timed_out_individually() {
    extern crate alloc;
    let config = ServerConfig::new(SECRET).with_max_peers(2048);
    let mut s: alloc::boxed::Box<Server<Addr, 4096>> =
        alloc::boxed::Box::new(Server::with_capacities(config));
    let packet = |s: &Server<Addr, 4096>, id: u8, a: Addr| {
        let mut p = vec![0x10, 0, 0, id];
        p.extend_from_slice(&s.token_for(a).0);
        p
    };
    for a in 0..2049u32 {
        let accept = packet(&s, 3, a);
        to_s(&mut s, ms(0), a, &accept);
        let _ = s_events(&mut s);
    }
    assert_eq!(s.peer_count(), 2048);
    assert_eq!(s.stats().rejected_full, 1);
    let out = s_out(&mut s, ms(0));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, 2048);
    // even peers stay alive, odd peers go silent
    let mut now = ms(0);
    let mut keep_alives = 0usize;
    let mut timed_out = Vec::new();
    while now < ms(12_000) {
        now = s.poll_timeout().unwrap_or(ms(12_000)).max(now);
        s.handle_timeout(now);
        for ev in s_events(&mut s) {
            match ev {
                ServerEvent::Closed {
                    peer,
                    cause: CloseCause::Timeout,
                } => timed_out.push(peer),
                other => panic!("{other:?}"),
            }
        }
        for (to, p) in s_out(&mut s, now) {
            assert_eq!(p, packet(&s, 0, to));
            keep_alives += 1;
            if to % 2 == 0 {
                let ka = packet(&s, 0, to);
                to_s(&mut s, now, to, &ka);
            }
        }
    }
    timed_out.sort_unstable();
    assert_eq!(
        timed_out,
        (0..2048).filter(|a| a % 2 == 1).collect::<Vec<_>>()
    );
    assert_eq!(s.peer_count(), 1024);
    assert!((0..2048).all(|a| s.is_online(a) == (a % 2 == 0)));
    // 2048 peers x 9 keep-alives (1..=9 s) before the odd ones timed out at 10 s (a timeout
    // wins over a due keep-alive), then the even ones at 10, 11 and 12 s
    assert_eq!(keep_alives, 2048 * 9 + 1024 * 3);
    assert_eq!(s.stats().peers_timed_out, 1024);
}
/// Kick token peer `a` at 400 ms and admit it again at once: its old timer entry is stale and
/// overflows a full heap, so `handle_timeout` at 400 ms rebuilds it
fn kick_and_readmit_overflowing_the_heap<const N: usize>(s: &mut Server<Addr, N>, a: Addr) {
    s.close(ms(400), a, "").unwrap();
    let p = with_token("10 00 00 03", s.token_for(a));
    to_s(s, ms(400), a, &p);
    let _ = s_events(s);
    let _ = s_out(s, ms(400));
    assert_eq!(s.poll_timeout(), Some(ms(400)), "rebuild requested");
    s.handle_timeout(ms(400));
}

#[test]
fn timer_heap_survives_churn_and_overflow() {
    let mut s: Server<Addr, 2> = Server::with_capacities(ServerConfig::new(SECRET));
    let accept = |s: &Server<Addr, 2>, a: Addr| with_token("10 00 00 03", s.token_for(a));
    for a in [1, 2] {
        let p = accept(&s, a);
        to_s(&mut s, ms(0), a, &p);
    }
    assert_eq!(s.poll_timeout(), Some(ms(1000)));
    // kick and re-admit 1 at 400 ms: its old entry is stale, the heap (2 entries) overflows
    kick_and_readmit_overflowing_the_heap(&mut s, 1);
    assert!(s_out(&mut s, ms(400)).is_empty());
    // after the rebuild: 2 keeps its 1 s cadence, the new 1 starts from 400 ms
    assert_eq!(s.poll_timeout(), Some(ms(1000)));
    s.handle_timeout(ms(1000));
    assert_eq!(out_addrs(&mut s, ms(1000)), [2]);
    assert_eq!(s.poll_timeout(), Some(ms(1400)));
    s.handle_timeout(ms(1400));
    assert_eq!(out_addrs(&mut s, ms(1400)), [1]);
    // 2 times out at 10 s, 1 at 10.4 s
    s.handle_timeout(ms(10_000));
    let _ = s_out(&mut s, ms(10_000));
    assert_closed(&mut s, 2, CloseCause::Timeout);
    while let Some(t) = s.poll_timeout() {
        s.handle_timeout(t);
        let _ = s_out(&mut s, t);
    }
    assert_closed(&mut s, 1, CloseCause::Timeout);
    assert_eq!(s.peer_count(), 0);
}

#[test]
fn liveness_refresh_defers_entry_without_early_action() {
    let mut s = server(VanillaPolicy::Reject);
    let mut c = token_client();
    handshake(&mut s, &mut c, 1, ms(0));
    let ka = with_token("10 00 00 00", s.token_for(1));
    // the server sends every second; the peer's packets push the timeout back
    for sec in 1..=30u64 {
        s.handle_timeout(ms(sec * 1000));
        assert_eq!(
            s_out(&mut s, ms(sec * 1000)).len(),
            1,
            "keep-alive at {sec} s"
        );
        to_s(&mut s, ms(sec * 1000), 1, &ka);
    }
    assert!(s.is_online(1));
    assert_eq!(s.stats().keep_alives_sent, 30);
}
#[test]
fn vanilla_admit_recovers_from_lost_connect_accept() {
    let (mut s, mut c) = connecting(VanillaPolicy::Admit, vanilla_client());
    to_s(&mut s, ms(0), 1, &c_out(&mut c, ms(0))[0]);
    let _lost = s_out(&mut s, ms(0));
    c.handle_timeout(ms(500));
    to_s(&mut s, ms(500), 1, &c_out(&mut c, ms(500))[0]);
    for (_, p) in s_out(&mut s, ms(500)) {
        to_c(&mut c, ms(500), &p);
    }
    assert_eq!(c.state(), ClientState::Online);
    assert_eq!(
        s_events(&mut s),
        [ServerEvent::Connected {
            peer: 1,
            token: None
        }]
    );
}

#[test]
#[cfg_attr(
    target_os = "wasi",
    ignore = "needs a thread (256 MiB stack): no threads on WASI"
)]
fn more_than_65536_peers_and_churn_at_capacity() {
    // no 65,536 cap: 70,000 vanilla peers in a Server<_, 131072> (262,144 buckets), then
    // removal and re-admission at full capacity in a small server
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(|| {
            let mut s: std::boxed::Box<Server<Addr, { 1 << 17 }>> =
                std::boxed::Box::new(Server::with_capacities(
                    ServerConfig::new(SECRET).with_vanilla(VanillaPolicy::Admit),
                ));
            let connect = hex("10 00 00 01");
            for a in 0..70_000 {
                let _ = s.handle_input(ms(0), a, &connect).unwrap();
                while s.poll_event().is_some() {}
            }
            assert_eq!(s.peer_count(), 70_000);
            assert!(s.is_online(0) && s.is_online(69_999) && !s.is_online(70_000));
        })
        .unwrap()
        .join()
        .unwrap();

    let mut s: Server<Addr, 8> =
        Server::with_capacities(ServerConfig::new(SECRET).with_vanilla(VanillaPolicy::Admit));
    let connect = hex("10 00 00 01");
    for round in 0..200u32 {
        for a in 0..8 {
            let _ = s.handle_input(ms(0), round * 8 + a, &connect).unwrap();
            while s.poll_event().is_some() {}
        }
        assert_eq!(s.peer_count(), 8);
        // full: the next vanilla CONNECT gets a bare CLOSE and no slot
        let _ = s.handle_input(ms(0), u32::MAX, &connect).unwrap();
        assert!(!s.is_online(u32::MAX));
        for a in 0..8 {
            assert!(s.is_online(round * 8 + a));
            s.close(ms(0), round * 8 + a, "").unwrap();
            while s.poll_event().is_some() {}
            let _ = s_out(&mut s, ms(0));
        }
        assert_eq!(s.peer_count(), 0);
    }
}

#[test]
fn config_keeps_its_delays_to_the_microsecond_and_debug_shows_durations() {
    let odd = Duration::new(2, 345_678_999); // 2.345678999 s: the last 999 ns are dropped
    let c = ServerConfig::new(SECRET)
        .with_keep_alive(odd)
        .with_timeout(odd + Duration::from_micros(1))
        .with_connect_accept_resend(Duration::from_micros(1_001));
    assert_eq!(
        (c.keep_alive(), c.timeout(), c.connect_accept_resend()),
        (
            Duration::from_micros(2_345_678),
            Duration::from_micros(2_345_679),
            Duration::from_micros(1_001)
        )
    );
    // configurations that differ by a microsecond differ
    assert_ne!(c, c.with_timeout(odd));
    assert_eq!(c, c.with_timeout(Duration::from_micros(2_345_679)));
    let text = std::format!("{c:?}");
    let max_peers = std::format!("max_peers: {},", usize::MAX);
    for part in [
        "ServerConfig { secret: TokenSecret(..), vanilla: Reject, keep_alive: 2.345678s,",
        "timeout: 2.345679s, connect_accept_resend: 1.001ms,",
        &max_peers,
        "info_per_second: 50, info_replies_per_second: 500 }",
    ] {
        assert!(text.contains(part), "{part} in {text}");
    }
}

/// Every interval and timeout zero, and no peers allowed
fn zero_config() -> ServerConfig {
    ServerConfig::new(SECRET)
        .with_keep_alive(Duration::ZERO)
        .with_timeout(Duration::ZERO)
        .with_connect_accept_resend(Duration::ZERO)
        .with_max_peers(0)
}

/// Every interval and timeout `Duration::MAX`, no peer limit
fn huge_config() -> ServerConfig {
    ServerConfig::new(SECRET)
        .with_keep_alive(Duration::MAX)
        .with_timeout(Duration::MAX)
        .with_connect_accept_resend(Duration::MAX)
        .with_max_peers(usize::MAX)
}

#[test]
fn config_setters_clamp_zero_and_huge_values() {
    use crate::time::MAX_DELAY;
    let one = Duration::from_millis(1);
    let zero = zero_config();
    assert_eq!(
        (
            zero.keep_alive(),
            zero.timeout(),
            zero.connect_accept_resend(),
            zero.max_peers()
        ),
        (one, one, one, 1)
    );
    let huge = huge_config();
    assert_eq!(
        (
            huge.keep_alive(),
            huge.timeout(),
            huge.connect_accept_resend()
        ),
        (MAX_DELAY, MAX_DELAY, MAX_DELAY)
    );
    // max_peers is clamped to the capacity by the server
    let s: Server<Addr, 8> = Server::with_capacities(huge);
    assert_eq!(s.config().max_peers(), 8);
    let s: Server<Addr, 8> = Server::with_capacities(huge.with_max_peers(3));
    assert_eq!(s.config().max_peers(), 3);
    let s = Server::<Addr>::new(ServerConfig::new(SECRET));
    assert_eq!(s.config().max_peers(), 64, "default capacity");
    // the defaults, and the secret kept
    let d = ServerConfig::new(SECRET);
    assert_eq!(
        (
            d.vanilla(),
            d.keep_alive(),
            d.timeout(),
            d.connect_accept_resend()
        ),
        (
            VanillaPolicy::Reject,
            Duration::from_secs(1),
            Duration::from_secs(10),
            Duration::from_millis(500)
        )
    );
    assert_eq!(d.secret(), &SECRET);
    // a one-peer limit admits exactly one peer
    let mut s: Srv = Server::with_capacities(zero.with_vanilla(VanillaPolicy::Admit));
    to_s(&mut s, ms(0), 1, &hex("10 00 00 01"));
    to_s(&mut s, ms(0), 2, &hex("10 00 00 01"));
    assert_eq!(s.peer_count(), 1);
}

/// Run a server with `config` with peers in every state (online, pending, closed) and check
/// every deadline it hands out: never `Instant::MAX`, never more than `MAX_DELAY` after the
/// latest `now`, never at or before that `now` after its timers ran (no spinning)
fn check_server_deadlines(config: ServerConfig, start: Instant) {
    let check = crate::game::test_util::assert_sane_deadline::<Srv>;
    let mut s: Srv = Server::with_capacities(config.with_vanilla(VanillaPolicy::Pending));
    let mut now = start;
    let accept = with_token("10 00 00 03", s.token_for(1));
    to_s(&mut s, now, 1, &accept);
    to_s(&mut s, now, 2, &hex("10 00 00 01"));
    let _ = s_out(&mut s, now);
    let _ = s_events(&mut s);
    check(&s, now);
    for round in 0..60 {
        let Some(t) = s.poll_timeout() else { break };
        now = t;
        s.handle_timeout(now);
        let _ = s_out(&mut s, now);
        let _ = s_events(&mut s);
        check(&s, now);
        if round == 5 {
            let _ = s.close(now, 1, "bye");
        }
    }
}

#[test]
fn poll_timeout_stays_within_max_delay_and_never_spins() {
    let (zero, huge) = (zero_config(), huge_config());
    let year = Instant::from_secs(365 * 24 * 3600);
    for config in [zero, huge, ServerConfig::new(SECRET)] {
        check_server_deadlines(config, Instant::ZERO);
        check_server_deadlines(config, year);
    }
}

/// What a refusal must leave unchanged (the server's `Debug` shows only a summary)
fn snapshot<const N: usize, const E: usize>(s: &Server<Addr, N, E>) -> std::string::String {
    let online: Vec<bool> = (0..8).map(|p| s.is_online(p)).collect();
    std::format!(
        "{s:?} {:?} {:?} {:?} {online:?}",
        s.stats(),
        s.poll_timeout(),
        s.state()
    )
}

/// Random datagrams from eight addresses and random commands into a server with a one-entry
/// event queue: a refusal (`QueueFull`) changes nothing, and after a complete drain of
/// `poll_transmit` and `poll_event` the next input or command is never refused
#[test]
fn queue_full_changes_nothing_and_a_drain_always_makes_room() {
    let mut rng = 0x0bad_cafe_f00d_1234u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (mut refused, mut after_drain) = (0, 0);
    for policy in [VanillaPolicy::Admit, VanillaPolicy::Pending] {
        let mut s: Server<Addr, 4, 1> =
            Server::with_capacities(ServerConfig::new(SECRET).with_vanilla(policy));
        let mut now = ms(0);
        let mut drained = true;
        for round in 0..20_000u32 {
            now += Duration::from_millis(next() % 200);
            let pick = next();
            let peer = (pick >> 8) as Addr % 8;
            let token = s.token_for(peer).0;
            let with_token = |head: &str| {
                let mut d = hex(head);
                d.extend_from_slice(&token);
                d
            };
            let datagram = match pick % 7 {
                0 => with_token("10 00 00 03"),
                1 => with_token("10 00 00 04 62 79 65 00"),
                2 => with_token("10 00 00 00"),
                3 => with_token("00 00 01 aa"),
                4 => hex("10 00 00 01"),
                5 => hex("00 00 01 aa"),
                _ => hex("10 00 00 04"),
            };
            let op = |s: &mut Server<Addr, 4, 1>| -> Result<(), Error> {
                match (pick >> 16) % 8 {
                    0 => s.close(now, peer, "kicked"),
                    1 => {
                        let mut out = [0u8; 64];
                        s.send_chunks(now, peer, Flags::default(), 1, b"x", &mut out)
                            .map(drop)
                    }
                    2 => {
                        s.handle_timeout(now);
                        Ok(())
                    }
                    3 => s.set_ack(peer, 0),
                    _ => s.handle_input(now, peer, &datagram).map(drop),
                }
            };
            let before = snapshot(&s);
            let r = op(&mut s);
            if drained {
                after_drain += 1;
                assert_ne!(r, Err(Error::QueueFull), "refused after a complete drain");
            }
            if r == Err(Error::QueueFull) {
                refused += 1;
                assert_eq!(snapshot(&s), before, "a refusal changed the server");
                let _ = s_out(&mut s, now);
                let _ = s_events(&mut s);
                assert_ne!(op(&mut s), Err(Error::QueueFull), "refused after a drain");
            }
            drained = next().is_multiple_of(3);
            if drained {
                let _ = s_out(&mut s, now);
                let _ = s_events(&mut s);
            }
            if round == 19_000 {
                // shutdown never refuses; after it everything is `Closed` or ignored
                s.shutdown(now, "bye").unwrap();
            }
        }
        assert_eq!(s.state(), ServerState::Stopped);
    }
    assert!(
        refused > 500 && after_drain > 10_000,
        "{refused} refusals, {after_drain} ops after a drain"
    );
}

/// A lossless session of a token client and the server in real time from `base`; at `step_at`
/// the caller of one side (the client when `client_steps`) starts reading a clock one hour
/// behind. Returns the real send times of the client and of the server after the handshake.
fn session_with_clock_step_back(client_steps: bool) -> (Vec<Instant>, Vec<Instant>) {
    const HOUR: Duration = Duration::from_secs(3600);
    let base = Instant::from_secs(2 * 3600);
    let step_at = STEP_AT;
    let end = base + Duration::from_secs(60);
    let mut s = server(VanillaPolicy::Reject);
    let mut c = token_client();
    handshake(&mut s, &mut c, 1, base);
    assert_eq!(c_events(&mut c).len(), 1);
    assert_eq!(s_events(&mut s).len(), 1);
    // what each caller's clock reads at real time `real`, and a deadline it got back in real time
    let clock = |steps: bool, real: Instant| {
        if steps && real >= step_at {
            real - HOUR
        } else {
            real
        }
    };
    let real_of = |steps: bool, real_now: Instant, t: Instant| {
        if steps && real_now >= step_at {
            t + HOUR
        } else {
            t
        }
    };
    let (mut c_sends, mut s_sends) = (Vec::new(), Vec::new());
    let mut real = base;
    while real < end {
        let cd = c.poll_timeout().map(|t| real_of(client_steps, real, t));
        let sd = s.poll_timeout().map(|t| real_of(!client_steps, real, t));
        let mut next = crate::time::earliest(cd, sd).expect("timers run while online");
        if real < step_at && next > step_at {
            // the step is seen at the first call after it: a wake-up at the step itself
            next = step_at;
        }
        assert!(next >= real, "a deadline in the past: {next} at {real}");
        real = next;
        let (ct, st) = (clock(client_steps, real), clock(!client_steps, real));
        c.handle_timeout(ct);
        s.handle_timeout(st);
        if real == step_at {
            // right after the step the deadlines are in the stepped clock: less than a second
            // (the longest interval here) after the stepped `now`
            let (stepped, t) = if client_steps {
                (ct, c.poll_timeout())
            } else {
                (st, s.poll_timeout())
            };
            let t = t.expect("a deadline");
            assert!(
                t >= stepped && t <= stepped + Duration::from_secs(1),
                "{t} not in the stepped clock ({stepped})"
            );
        }
        for p in c_out(&mut c, ct) {
            c_sends.push(real);
            to_s(&mut s, st, 1, &p);
        }
        for (_, p) in s_out(&mut s, st) {
            s_sends.push(real);
            to_c(&mut c, ct, &p);
        }
    }
    assert_eq!(
        c.state(),
        ClientState::Online,
        "the client did not time out"
    );
    assert!(s.is_online(1), "the server did not time the client out");
    assert!(c_events(&mut c).is_empty() && s_events(&mut s).is_empty());
    (c_sends, s_sends)
}

/// Every gap between consecutive sends is exactly `interval` (lossless, idle connection), except
/// the one across `step` (when given): a step back counts as no time passing since the previous
/// call, so that gap may grow by at most one interval
fn assert_cadence(who: &str, sends: &[Instant], interval: Duration, step: Option<Instant>) {
    assert!(sends.len() >= 40, "{who}: only {} sends", sends.len());
    for w in sends.windows(2) {
        let gap = w[1] - w[0];
        if step.is_some_and(|s| w[0] < s && s <= w[1]) {
            assert!(
                gap >= interval && gap <= 2 * interval,
                "{who}: gap of {gap:?} across the step at {}",
                w[0]
            );
        } else {
            assert_eq!(gap, interval, "{who}: gap at {}", w[0]);
        }
    }
}

/// The real time of the clock step in `session_with_clock_step_back`
const STEP_AT: Instant = Instant::from_secs(2 * 3600 + 10);

#[test]
fn client_clock_stepping_back_one_hour_keeps_the_session() {
    let (c_sends, s_sends) = session_with_clock_step_back(true);
    // the client's keep-alives go on every 250 ms of real time (the stepped clock's deadlines
    // are an hour earlier), the server's every second, and neither side timed out
    assert_cadence(
        "client",
        &c_sends,
        Duration::from_millis(250),
        Some(STEP_AT),
    );
    assert_cadence("server", &s_sends, Duration::from_secs(1), None);
}

#[test]
fn server_clock_stepping_back_one_hour_keeps_the_session() {
    let (c_sends, s_sends) = session_with_clock_step_back(false);
    assert_cadence("client", &c_sends, Duration::from_millis(250), None);
    assert_cadence("server", &s_sends, Duration::from_secs(1), Some(STEP_AT));
}

#[test]
fn eight_byte_keep_alives_take_the_same_checks_as_any_control_packet() {
    // A token peer's 8-byte KEEP_ALIVE (control flag alone, 0 chunks) skips the general parser;
    // its neighbours (flags, chunk count, wrong token, acks out of range, a vanilla peer's 8
    // bytes) go through it. Each row: header bytes, whether the peer's own token follows
    // (else 01 02 03 04), and the counters (keep-alives, wrong token, bad ack, warnings), and
    // whether liveness was refreshed.
    let rows: [(&str, bool, [u64; 4], bool); 8] = [
        ("10 00 00 00", true, [1, 0, 0, 0], true),
        ("10 00 00 00", false, [0, 1, 0, 0], false),
        // ack 5 with our sequence 0: out of range
        ("10 05 00 00", true, [0, 0, 1, 0], false),
        // ack 0x100 (the ack's high bits in byte 0): out of range
        ("11 00 00 00", true, [0, 0, 1, 0], false),
        // resend flag and a chunk count: accepted with a warning, through the parser
        ("50 00 00 00", true, [1, 0, 0, 1], true),
        ("10 00 01 00", true, [1, 0, 0, 1], true),
        // compressed, connless-reserved bits: malformed (no counter of these four)
        ("90 00 00 00", true, [0, 0, 0, 0], false),
        ("18 00 00 00", true, [0, 0, 0, 0], false),
    ];
    for (head, own_token, counters, refreshed) in rows {
        let mut s = server(VanillaPolicy::Reject);
        let mut c = token_client();
        handshake(&mut s, &mut c, 1, ms(0));
        let _ = s_events(&mut s);
        let mut d = hex(head);
        if own_token {
            d.extend_from_slice(&s.token_for(1).0);
        } else {
            d.extend_from_slice(&[1, 2, 3, 4]);
        }
        assert!(to_s(&mut s, ms(5_000), 1, &d).is_none());
        let st = s.stats();
        assert_eq!(
            [
                st.keep_alives_received,
                st.dropped_wrong_token,
                st.dropped_bad_ack,
                st.warnings
            ],
            counters,
            "{head}"
        );
        // the handshake was at 0 ms, the timeout is 10 s
        s.handle_timeout(ms(10_000));
        assert_eq!(s.is_online(1), refreshed, "{head}");
    }
    // a vanilla peer's 8 bytes: KEEP_ALIVE with 4 extra bytes (a warning), accepted
    let mut s = server(VanillaPolicy::Admit);
    let mut c = vanilla_client();
    handshake(&mut s, &mut c, 1, ms(0));
    to_s(&mut s, ms(5_000), 1, &hex("10 00 00 00 01 02 03 04"));
    assert_eq!((s.stats().keep_alives_received, s.stats().warnings), (1, 1));
}

#[test]
fn keep_alives_go_out_on_schedule_while_the_peer_talks_more_often_than_the_timeout() {
    // timeout 400 ms, keep-alive 1 s, the client talking every 300 ms: the timer entry fires at
    // the (refreshed) timeout again and again and is re-filed each time; the KEEP_ALIVE must
    // still come due at the last send + 1 s, not wait for the peer's next packet
    let mut s: Srv = Server::with_capacities(
        ServerConfig::new(SECRET)
            .with_vanilla(VanillaPolicy::Reject)
            .with_timeout(Duration::from_millis(400)),
    );
    let mut c = Client::new(ClientConfig::new().with_keep_alive(Duration::from_millis(300)));
    handshake(&mut s, &mut c, 1, ms(0));
    let _ = s_events(&mut s);
    let ka = with_token("10 00 00 00", s.token_for(1));
    let mut sent_at = Vec::new();
    let mut now = ms(0);
    while now < ms(5_000) {
        now = crate::time::earliest(c.poll_timeout(), s.poll_timeout()).unwrap();
        c.handle_timeout(now);
        s.handle_timeout(now);
        for p in c_out(&mut c, now) {
            to_s(&mut s, now, 1, &p);
        }
        for (_, p) in s_out(&mut s, now) {
            if p == ka {
                sent_at.push(now);
            }
            to_c(&mut c, now, &p);
        }
    }
    assert!(s.is_online(1));
    assert_eq!(
        sent_at,
        [ms(1_000), ms(2_000), ms(3_000), ms(4_000), ms(5_000)]
    );
}

#[test]
fn a_peer_ack_going_backwards_is_dropped_and_the_range_wraps() {
    let (mut s, _c) = online_pair(1);
    let tok = s.token_for(1);
    // KEEP_ALIVE acking `ack`: flags 1 and the ack's high bits, its low byte, no chunks
    let ka = |ack: u16| {
        let mut d = vec![0x10 | (ack >> 8) as u8, ack as u8, 0x00, 0x00];
        d.extend_from_slice(&tok.0);
        d
    };
    s.set_sequence(1, 1000).unwrap();
    for (ack, dropped) in [(900, 0), (800, 1), (1000, 1), (999, 2)] {
        to_s(&mut s, ms(1), 1, &ka(ack));
        assert_eq!(s.stats().dropped_bad_ack, dropped, "ack {ack}");
    }
    // our sequence wrapped past 1023: the accepted range is 1000..=1023, 0..=5
    s.set_sequence(1, 5).unwrap();
    for (ack, dropped) in [(1020, 2), (3, 2), (1021, 3), (6, 4), (5, 4)] {
        to_s(&mut s, ms(2), 1, &ka(ack));
        assert_eq!(s.stats().dropped_bad_ack, dropped, "ack {ack}");
    }
    assert!(s.is_online(1));
}

#[test]
fn a_frame_that_found_the_transmit_queue_full_of_stale_entries_goes_out_at_its_next_timer() {
    // Two slots, so the transmit queue holds two entries. Peer 1 (pending) is queued, closed
    // before its CONNECT_ACCEPT went out and replaced by peer 2 in the same slot: both entries
    // name that slot. Peer 3 then lands in the other slot and cannot be queued.
    let mut s: Server<Addr, 2> =
        Server::with_capacities(ServerConfig::new(SECRET).with_vanilla(VanillaPolicy::Pending));
    let resend = s.config().connect_accept_resend();
    to_s(&mut s, ms(0), 1, &hex("10 00 00 01"));
    s.close(ms(0), 1, "").unwrap();
    to_s(&mut s, ms(0), 2, &hex("10 00 00 01"));
    to_s(&mut s, ms(0), 3, &hex("10 00 00 01"));
    assert_eq!(s.peer_count(), 2);
    // the CLOSE to 1, then the two entries of slot 0 give peer 2's CONNECT_ACCEPT once; peer
    // 3's waits
    assert_eq!(out_addrs(&mut s, ms(0)), [1, 2]);
    assert_eq!(out_addrs(&mut s, ms(1)), [] as [Addr; 0]);
    // its timer entry (filed for one resend interval after the failed queueing) queues it
    // again: it goes out then, and follows the usual cadence from there
    let mut sent = Vec::new();
    while let Some(t) = s.poll_timeout().filter(|&t| t < ms(1200)) {
        s.handle_timeout(t);
        for (to, d) in s_out(&mut s, t) {
            assert_eq!(d, hex("10 00 00 02"));
            sent.push((t, to));
        }
    }
    let first = ms(1) + resend;
    assert_eq!(
        sent,
        [
            (ms(0) + resend, 2),
            (first, 3),
            (ms(0) + resend + resend, 2),
            (first + resend, 3)
        ]
    );
}

#[test]
fn a_timer_heap_rebuilt_with_four_slots_keeps_every_peers_cadence() {
    // four token peers in the four slots; kicking and re-admitting peer 1 leaves a stale entry
    // that overflows the heap of four, so the next handle_timeout rebuilds it from the table
    let mut s = server(VanillaPolicy::Reject);
    let accept = |s: &Srv, a: Addr| with_token("10 00 00 03", s.token_for(a));
    for a in [1, 2, 3, 4] {
        let p = accept(&s, a);
        to_s(&mut s, ms(0), a, &p);
    }
    kick_and_readmit_overflowing_the_heap(&mut s, 1);
    // every slot's entry survives the rebuild: 2, 3 and 4 at 1 s, 1 at 1.4 s
    let mut sent = Vec::new();
    while let Some(t) = s.poll_timeout().filter(|&t| t <= ms(2400)) {
        s.handle_timeout(t);
        for a in out_addrs(&mut s, t) {
            sent.push((t, a));
        }
    }
    let mut expected = Vec::new();
    for k in 1..=2u64 {
        expected.extend([(ms(k * 1000), 2), (ms(k * 1000), 3), (ms(k * 1000), 4)]);
        expected.push((ms(k * 1000 + 400), 1));
    }
    assert_eq!(sent, expected);
}

#[test]
#[cfg(feature = "control-huffman")]
fn compressed_control_packets_of_a_vanilla_peer_are_understood() {
    let mut s = server(VanillaPolicy::Admit);
    to_s(&mut s, ms(0), 5, &hex("10 00 00 01"));
    let _ = s_events(&mut s);
    let _ = s_out(&mut s, ms(0));
    // a compressed KEEP_ALIVE: a sign of life like a plain one
    to_s(&mut s, ms(100), 5, &compressed_control(&[0x00]));
    assert_eq!(s.stats().keep_alives_received, 1);
    assert_eq!(s.stats().dropped_malformed, 0);
    // a compressed CONNECT from the online peer: nothing happens (no CONNECT_ACCEPT again, no
    // rejoin armed)
    to_s(&mut s, ms(200), 5, &compressed_control(&[0x01]));
    assert!(s_out(&mut s, ms(200)).is_empty());
    assert!(s.is_online(5));
    // a compressed CLOSE: the peer goes, the application gets the CLOSE (its reason sits in a
    // stack buffer, so it is handed out empty)
    let bye = compressed_control(b"\x04bye\0");
    let r = s.handle_input(ms(300), 5, &bye).unwrap();
    match r.into_app() {
        Some(ServerApp::Close { reason }) => assert_eq!(reason.as_bytes(), b""),
        other => panic!("not a CLOSE: {other:?}"),
    }
    assert_closed(&mut s, 5, CloseCause::Peer);
    assert_eq!(s.peer_count(), 0);
    // nor is a compressed CONNECT a sign of life: a peer that sends nothing else times out 10 s
    // after it was admitted
    to_s(&mut s, ms(1000), 6, &hex("10 00 00 01"));
    let _ = s_events(&mut s);
    let run_until = |s: &mut Srv, end: Instant| {
        while let Some(t) = s.poll_timeout().filter(|&t| t <= end) {
            s.handle_timeout(t);
            let _ = s_out(s, t);
        }
    };
    run_until(&mut s, ms(6000));
    to_s(&mut s, ms(6000), 6, &compressed_control(&[0x01]));
    run_until(&mut s, ms(10_999));
    assert!(s.is_online(6));
    run_until(&mut s, ms(11_000));
    assert_closed(&mut s, 6, CloseCause::Timeout);
}

#[test]
#[cfg(feature = "control-huffman")]
fn a_compressed_control_packet_is_read_up_to_the_192_byte_buffer_and_only_from_vanilla_peers() {
    // CLOSE (1 byte), the reason and its NUL: 3 + 189 bytes fill the 192-byte buffer exactly
    let close = |reason_len: usize| {
        let mut plain = vec![0x04];
        plain.extend(core::iter::repeat_n(b'r', reason_len));
        plain.push(0);
        compressed_control(&plain)
    };
    let mut s = server(VanillaPolicy::Admit);
    for a in [5, 6] {
        to_s(&mut s, ms(0), a, &hex("10 00 00 01"));
    }
    let _ = s_events(&mut s);
    // one byte more than fits: dropped as malformed, the peer stays
    to_s(&mut s, ms(100), 6, &close(188));
    assert_eq!(s.stats().dropped_malformed, 1);
    assert!(s.is_online(6));
    let fits = close(187);
    let r = s.handle_input(ms(100), 5, &fits).unwrap();
    assert!(matches!(r.into_app(), Some(ServerApp::Close { .. })));
    assert!(!s.is_online(5));
    // a token peer never sends compressed control packets (DDNet does not): dropped, even a
    // well-formed KEEP_ALIVE with the token inside
    let (mut s, _c) = online_pair(1);
    let mut plain = vec![0x00];
    plain.extend_from_slice(&s.token_for(1).0);
    to_s(&mut s, ms(100), 1, &compressed_control(&plain));
    assert_eq!(s.stats().dropped_malformed, 1);
    assert_eq!(s.stats().keep_alives_received, 0);
}

#[test]
fn a_vanilla_peer_that_connects_again_while_online_is_answered_and_never_rejoins() {
    let mut s = server(VanillaPolicy::Admit);
    to_s(&mut s, ms(0), 5, &hex("10 00 00 01"));
    let _ = s_events(&mut s);
    let _ = s_out(&mut s, ms(0));
    // its CONNECT_ACCEPT was lost: it connects again and is answered, then sends ACCEPT
    to_s(&mut s, ms(100), 5, &hex("10 00 00 01"));
    assert_eq!(s_out(&mut s, ms(100)), [(5, hex("10 00 00 02"))]);
    to_s(&mut s, ms(110), 5, &hex("10 00 00 03"));
    assert_eq!(s_events(&mut s), []);
    assert_eq!(s.stats().rejoins, 0);
    assert!(s.is_online(5));
}

#[test]
fn a_rejoin_resets_a_connection_whose_only_state_is_its_ack_or_its_sequence() {
    // three token peers in the first three slots; the application reported an ack to the third
    // (vital chunks it read) and a sequence to the second (vital chunks it sent)
    let mut s = server(VanillaPolicy::Reject);
    let connect = hex("10 00 00 01 54 4b 45 4e ff ff ff ff");
    let accept = |s: &Srv, a: Addr| with_token("10 00 00 03", s.token_for(a));
    for a in [1, 2, 3] {
        let p = accept(&s, a);
        to_s(&mut s, ms(0), a, &p);
    }
    let _ = s_events(&mut s);
    s.set_ack(3, 5).unwrap();
    s.set_sequence(2, 3).unwrap();
    // each re-handshakes: a token CONNECT, then ACCEPT
    for (a, at) in [(1, 10), (2, 20), (3, 30)] {
        to_s(&mut s, ms(at), a, &connect);
        let p = accept(&s, a);
        to_s(&mut s, ms(at), a, &p);
    }
    // 1 had nothing to reset; 2 and 3 start over
    assert_eq!(
        s_events(&mut s),
        [
            ServerEvent::Rejoined { peer: 2 },
            ServerEvent::Rejoined { peer: 3 }
        ]
    );
    assert_eq!(s.stats().rejoins, 2);
    assert_eq!((s.ack(1), s.ack(2), s.ack(3)), (Some(0), Some(0), Some(0)));
    // 2's sequence is 0 again: a packet acking 3 is now beyond it
    let ka = with_token("10 03 00 00", s.token_for(2));
    to_s(&mut s, ms(40), 2, &ka);
    assert_eq!(s.stats().dropped_bad_ack, 1);
}

#[test]
fn a_pending_peers_first_chunk_packet_cancels_its_queued_connect_accept() {
    let mut s = server(VanillaPolicy::Pending);
    to_s(&mut s, ms(0), 5, &hex("10 00 00 01"));
    assert_eq!(s_out(&mut s, ms(0)), [(5, hex("10 00 00 02"))]);
    // the resend falls due and is queued, but a chunk packet arrives before it is sent: the
    // peer is online and needs no CONNECT_ACCEPT any more
    let resend = Instant::ZERO + s.config().connect_accept_resend();
    s.handle_timeout(resend);
    to_s(&mut s, resend, 5, &hex("00 00 01 00 01 07"));
    assert!(matches!(
        s_events(&mut s).as_slice(),
        [ServerEvent::Connected { peer: 5, .. }]
    ));
    assert!(s_out(&mut s, resend).is_empty());
    assert_eq!(s.stats().connect_accepts_sent, 1);
}

#[test]
fn a_connect_accept_and_a_keep_alive_queued_together_both_go_out_in_one_drain() {
    let mut s = server(VanillaPolicy::Reject);
    let accept = with_token("10 00 00 03", s.token_for(1));
    to_s(&mut s, ms(0), 1, &accept);
    let _ = s_events(&mut s);
    // the keep-alive falls due, and the peer's CONNECT (a re-handshake) comes in the same instant
    s.handle_timeout(ms(1000));
    to_s(
        &mut s,
        ms(1000),
        1,
        &hex("10 00 00 01 54 4b 45 4e ff ff ff ff"),
    );
    let out = s_out(&mut s, ms(1000));
    let kinds: Vec<u8> = out
        .iter()
        .map(|(to, d)| if *to == 1 { d[3] } else { 0xff })
        .collect();
    assert_eq!(
        kinds,
        [0x02, 0x00],
        "CONNECT_ACCEPT, then KEEP_ALIVE: {out:02x?}"
    );
    assert_eq!(s.stats().keep_alives_sent, 1);
}

/// Frames wait in two of the three transmit queues at once, with equal counts (a CLOSE and a
/// stateless CONNECT_ACCEPT; a KEEP_ALIVE and a stateless CONNECT_ACCEPT): `poll_transmit` hands
/// out both (its nothing-queued test must not let equal counts cancel out)
#[test]
fn frames_waiting_in_two_queues_at_once_all_go_out() {
    const CONNECT: &[u8] = b"\x10\x00\x00\x01TKEN\xff\xff\xff\xff";
    // a CLOSE for peer 1 (close queue) and a CONNECT_ACCEPT for address 2 (reply queue)
    let (mut s, _c) = online_pair(1);
    s.close(ms(10), 1, "bye").unwrap();
    assert_eq!(to_s(&mut s, ms(10), 2, CONNECT), None);
    let out = s_out(&mut s, ms(10));
    assert_eq!(out.iter().map(|(a, _)| *a).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(out[0].1[3], 4, "CLOSE first");
    assert_eq!(
        &out[1].1[..8],
        b"\x10\x00\x00\x02TKEN",
        "then CONNECT_ACCEPT"
    );
    // peer 1's KEEP_ALIVE (a dirty slot) and a CONNECT_ACCEPT for address 2 (reply queue)
    let (mut s, _c) = online_pair(1);
    let due = s.poll_timeout().unwrap();
    s.handle_timeout(due);
    assert_eq!(to_s(&mut s, due, 2, CONNECT), None);
    let out = s_out(&mut s, due);
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(
        out.iter().any(|(a, d)| *a == 1 && d[3] == 0),
        "KEEP_ALIVE to 1: {out:?}"
    );
    assert!(
        out.iter().any(|(a, d)| *a == 2 && d[3] == 2),
        "CONNECT_ACCEPT to 2: {out:?}"
    );
}
