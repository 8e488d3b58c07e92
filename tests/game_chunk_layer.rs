//! The opt-in chunk layer (`Reliable`) of the game machines in the simulator: vital chunks both
//! ways under loss, duplication and reordering (property test), compression, the too weak
//! connection, a rejoin resetting the channel, and the connectionless server info (query,
//! answer, flood)

use std::cell::RefCell;
use std::rc::Rc;

use proptest::prelude::*;
use tether_net::game::connless::{ClientInfo, InfoContent, InfoRequest};
use tether_net::game::packer::Str;
use tether_net::game::vital::{TooWeak, VitalConfig};
use tether_net::game::{
    ChunkConfig, Client, ClientApp, ClientConfig, ClientEvent, ClientState, CloseCause, Error,
    Reliable, Server, ServerApp, ServerConfig, ServerEvent, TokenSecret,
};
use tether_net::testing::{Direction, LinkConfig, Pair};
use tether_net::{Duration, FrameKind, Instant};

const SECRET: TokenSecret = TokenSecret([0x77; 16]);
const ADDR: u32 = 3;

type Layer = Reliable<16384, 64, 16384, 64>;
type RClient = Client<4, Layer>;
type RServer = Server<u32, 2, 16, Layer>;
/// Boxed: a server with four 36 KiB channels is too big to move around on a test thread's stack
type RPair = Pair<Box<RClient>, Box<RServer>>;

/// What each side's application received: (vital?, data), in delivery order
type Log = Rc<RefCell<Vec<(bool, Vec<u8>)>>>;

fn chunk_config(fast: bool) -> ChunkConfig {
    let c = if fast {
        ChunkConfig::fast()
    } else {
        ChunkConfig::new()
    };
    // the simulated links below are worse than real ones: do not give up early
    c.with_vital(c.vital().with_unacked_timeout(Duration::from_secs(120)))
}

fn pair(link: LinkConfig, seed: u64, fast: bool) -> (RPair, Log, Log) {
    let client: Box<RClient> = Box::new(Client::with_chunks(
        ClientConfig::new()
            .with_keep_alive(Duration::from_secs(1))
            .with_timeout(Duration::from_secs(120)),
        chunk_config(fast),
    ));
    let server: Box<RServer> = Box::new(Server::with_chunks(
        ServerConfig::new(SECRET).with_timeout(Duration::from_secs(120)),
        chunk_config(fast),
    ));
    let mut p = Pair::new(client, server, ADDR, link, seed);
    p.record_transcript(false);
    let (at_client, at_server) = (Log::default(), Log::default());
    let log = at_client.clone();
    p.answer_client_app(move |c, _, app| {
        if matches!(app, ClientApp::ChunksReady) {
            while let Some(chunk) = c.poll_chunk() {
                log.borrow_mut()
                    .push((chunk.flags.vital, chunk.data.to_vec()));
            }
        }
    });
    let log = at_server.clone();
    p.answer_server_app(move |s, _, app| {
        if matches!(app, ServerApp::ChunksReady) {
            while let Some((peer, chunk)) = s.poll_chunk() {
                assert_eq!(peer, ADDR);
                log.borrow_mut()
                    .push((chunk.flags.vital, chunk.data.to_vec()));
            }
        }
    });
    let now = p.now();
    p.client_mut().connect(now).unwrap();
    // confirmed (the server was heard after the ACCEPT): from now on the client makes no
    // lost-ACCEPT retry, which would make the server reset the connection ("rejoin") and drop
    // its queued chunks; then let a retry already in flight (reordering delays it up to 60 ms,
    // jitter 20 ms) arrive before any chunk is queued
    p.run_until(
        |p| p.client().is_confirmed() && p.server().is_online(ADDR),
        Duration::from_secs(60),
    )
    .expect("online");
    p.run_for(Duration::from_millis(200));
    (p, at_client, at_server)
}

/// Message `i` of a side: its index first, then filler (some long, mostly short)
fn message(from: u8, i: usize, len: usize) -> Vec<u8> {
    let mut m = vec![from];
    m.extend_from_slice(&(i as u32).to_le_bytes());
    m.extend((0..len).map(|k| (k * 7 + i) as u8));
    m
}

/// Queue messages on both sides over `steps` rounds (waiting when a resend buffer is full),
/// then run until everything arrived; returns the virtual time it took
fn exchange(p: &mut RPair, n: usize, lens: &[usize]) -> Duration {
    let start = p.now();
    let (mut c_next, mut s_next) = (0, 0);
    while c_next < n || s_next < n {
        let now = p.now();
        if c_next < n {
            let m = message(b'c', c_next, lens[c_next % lens.len()]);
            match p.client_mut().send_vital(now, &m, c_next % 3 == 0) {
                Ok(_) => c_next += 1,
                Err(Error::TooManyInFlight) => {}
                Err(e) => panic!("client send: {e}"),
            }
        }
        if s_next < n {
            let m = message(b's', s_next, lens[s_next % lens.len()]);
            match p.server_mut().send_vital(now, ADDR, &m, s_next % 2 == 0) {
                Ok(_) => s_next += 1,
                Err(Error::TooManyInFlight) => {}
                Err(e) => panic!("server send: {e}"),
            }
        }
        p.fleet_mut().drain();
        p.run_for(Duration::from_millis(20));
        assert!(
            p.elapsed() < Duration::from_secs(3600),
            "not done in an hour"
        );
    }
    p.run_until(
        |p| {
            p.client().chunk_stats().delivered >= n as u64
                && p.server().chunk_stats(ADDR).unwrap().delivered >= n as u64
        },
        Duration::from_secs(600),
    )
    .expect("everything delivered");
    p.now().saturating_duration_since(start)
}

fn check(log: &Log, from: u8, n: usize, lens: &[usize]) {
    let got: Vec<Vec<u8>> = log
        .borrow()
        .iter()
        .filter(|(vital, _)| *vital)
        .map(|(_, d)| d.clone())
        .collect();
    let want: Vec<Vec<u8>> = (0..n)
        .map(|i| message(from, i, lens[i % lens.len()]))
        .collect();
    assert_eq!(got.len(), want.len(), "every vital chunk exactly once");
    assert!(got == want, "in order and intact");
}

#[test]
fn vital_chunks_both_ways_on_a_perfect_link() {
    let (mut p, at_client, at_server) = pair(LinkConfig::perfect(), 1, false);
    let lens = [3, 900, 40, 0];
    exchange(&mut p, 200, &lens);
    check(&at_server, b'c', 200, &lens);
    check(&at_client, b's', 200, &lens);
    assert_eq!(p.client().state(), ClientState::Online);
    // nothing was lost or reordered: no gap, no resend request (a timer resend racing an idle
    // peer's ack is normal with the reference timers)
    for st in [
        p.client().chunk_stats(),
        p.server().chunk_stats(ADDR).unwrap(),
    ] {
        assert_eq!(
            (st.gaps, st.buffered, st.requests_sent),
            (0, 0, 0),
            "{st:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 2 } else { 24 },
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Client and server exchange vital chunks through loss, duplication and reordering: every
    /// vital chunk arrives exactly once and in order, both ways, with either timer preset
    #[test]
    fn vital_chunks_exactly_once_in_order_under_loss_duplication_reordering(
        seed in any::<u64>(),
        loss in 0.0f64..0.3,
        dup in 0.0f64..0.3,
        reorder in 0.0f64..0.4,
        fast in any::<bool>(),
        n in 20usize..120,
        long in 0usize..1000,
    ) {
        let link = LinkConfig::perfect()
            .with_loss(loss)
            .with_duplicate(dup)
            .with_reorder(reorder, Duration::from_millis(60))
            .with_jitter(Duration::from_millis(20));
        let (mut p, at_client, at_server) = pair(link, seed, fast);
        let lens = [1, long, 17, 0, 300];
        exchange(&mut p, n, &lens);
        check(&at_server, b'c', n, &lens);
        check(&at_client, b's', n, &lens);
        prop_assert_eq!(p.client().state(), ClientState::Online);
        prop_assert!(p.server().is_online(ADDR));
    }
}

/// A case the property test found: the client's retried handshake (CONNECT, ACCEPT) was still in
/// flight when the exchange began, and its late ACCEPT reset the server's channel mid-exchange
/// (3 of 20 chunks lost); the pair now lets it arrive first, and a duplicate of that ACCEPT
/// (delivered 10 ms later) is no second rejoin
#[test]
fn a_handshake_retry_in_flight_does_not_reset_the_exchange() {
    let link = LinkConfig::perfect()
        .with_loss(0.134)
        .with_duplicate(0.083)
        .with_reorder(0.227, Duration::from_millis(60))
        .with_jitter(Duration::from_millis(20));
    let (mut p, at_client, at_server) = pair(link, 12555051530173486740, false);
    let lens = [1, 0, 17, 0, 300];
    exchange(&mut p, 20, &lens);
    check(&at_server, b'c', 20, &lens);
    check(&at_client, b's', 20, &lens);
    assert_eq!(p.server().stats().rejoins, 0);
}

#[test]
fn non_vital_chunks_pass_through_and_packets_are_compressed_when_shorter() {
    // compression is on by default, and can be turned off
    assert!(chunk_config(false).compression());
    assert!(!chunk_config(false).with_compression(false).compression());
    let (mut p, at_client, at_server) = pair(LinkConfig::perfect(), 2, false);
    p.record_transcript(true);
    let now = p.now();
    let mut buf = [0u8; 1400];
    // a snapshot-like non-vital chunk of mostly zero bytes: Huffman makes it shorter
    let t = p
        .server_mut()
        .send_non_vital(now, ADDR, &[0u8; 200], &mut buf)
        .unwrap();
    assert!(buf[0] & 0x80 != 0, "compressed");
    assert!(t.len < 100, "200 zero bytes compress well: {}", t.len);
    p.send_from_server(FrameKind::Datagram, &buf[..t.len]);
    // an incompressible one travels raw
    let noise: Vec<u8> = (0..200u32).map(|i| (i * 97 + 13) as u8 | 0x41).collect();
    let t = p
        .client_mut()
        .send_non_vital(now, &noise, &mut buf)
        .unwrap();
    assert_eq!(buf[0] & 0x80, 0, "sent raw");
    p.send_from_client(FrameKind::Datagram, &buf[..t.len]);
    p.run_for(Duration::from_millis(100));
    assert_eq!(at_client.borrow().as_slice(), &[(false, vec![0u8; 200])]);
    assert_eq!(at_server.borrow().as_slice(), &[(false, noise)]);
    // too long for a chunk, too small a buffer: refused, nothing changed
    assert!(matches!(
        p.client_mut().send_non_vital(now, &[0; 1024], &mut buf),
        Err(Error::TooLong {
            len: 1024,
            max: 1023
        })
    ));
    assert!(matches!(
        p.client_mut().send_vital(now, &[0; 1024], true),
        Err(Error::TooLong {
            len: 1024,
            max: 1023
        })
    ));
    let mut small = [0u8; 100];
    assert_eq!(
        p.client_mut().send_non_vital(now, b"x", &mut small),
        Err(Error::BufferTooSmall { required: 1400 })
    );
}

#[test]
fn unacked_vital_chunk_ends_the_connection_as_too_weak() {
    let config = ChunkConfig::new()
        .with_vital(VitalConfig::reference().with_unacked_timeout(Duration::from_secs(5)));
    let client: Box<RClient> = Box::new(Client::with_chunks(
        ClientConfig::new().with_timeout(Duration::from_secs(60)),
        config,
    ));
    let server: Box<RServer> = Box::new(Server::with_chunks(ServerConfig::new(SECRET), config));
    let mut p = Pair::new(client, server, ADDR, LinkConfig::perfect(), 9);
    let now = p.now();
    p.client_mut().connect(now).unwrap();
    p.run_until(|p| p.server().is_online(ADDR), Duration::from_secs(5))
        .unwrap();
    // the server's answers (acks included) stop arriving; keep-alives from a filter-free
    // direction would refresh liveness, so drop everything towards the client
    p.fleet_mut()
        .set_drop_filter(Direction::ServerToClient, |_, _| true);
    let now = p.now();
    p.client_mut().send_vital(now, b"\x03hello", true).unwrap();
    p.run_for(Duration::from_secs(8));
    let closed = p
        .client_events()
        .iter()
        .find_map(|e| match e {
            ClientEvent::Closed { cause } => Some(*cause),
            _ => None,
        })
        .expect("closed");
    assert_eq!(
        closed,
        CloseCause::TooWeak(TooWeak::NotAcked { seq: 1, secs: 5 })
    );
    assert_eq!(
        TooWeak::NotAcked { seq: 1, secs: 5 }.to_string(),
        "Too weak connection (not acked for 5 seconds)"
    );
}

/// A DDNet CONNECT (token form, no token yet)
const TOKEN_CONNECT: [u8; 12] = [
    0x10, 0x00, 0x00, 0x01, b'T', b'K', b'E', b'N', 0xff, 0xff, 0xff, 0xff,
];

#[test]
fn rejoin_resets_the_servers_channel() {
    let (mut p, _at_client, at_server) = pair(LinkConfig::perfect(), 4, false);
    let lens = [5];
    exchange(&mut p, 10, &lens);
    check(&at_server, b'c', 10, &lens);
    // a late copy of the first ACCEPT changes nothing
    let token = p.server().token_for(ADDR);
    let mut accept = vec![0x10, 0x00, 0x00, 0x03];
    accept.extend_from_slice(&token.0);
    p.inject_to_server(FrameKind::Datagram, &accept);
    assert!(!p
        .server_events()
        .contains(&ServerEvent::Rejoined { peer: ADDR }));
    assert_eq!(p.server().stats().rejoins, 0);
    // a DDNet client re-handshaking from the same address: CONNECT again, then ACCEPT
    p.inject_to_server(FrameKind::Datagram, &TOKEN_CONNECT);
    p.inject_to_server(FrameKind::Datagram, &accept);
    assert!(p
        .server_events()
        .contains(&ServerEvent::Rejoined { peer: ADDR }));
    // the server expects sequence 1 again: a fresh client's first vital chunk is delivered
    let stats = p.server().chunk_stats(ADDR).unwrap();
    assert_eq!(stats.delivered, 10, "counters survive the reset");
    let mut chunk = vec![0x00, 0x00, 0x01, 0x40, 0x02, 0x01, 0xaa, 0xbb];
    chunk.extend_from_slice(&token.0);
    p.inject_to_server(FrameKind::Datagram, &chunk);
    assert_eq!(
        at_server.borrow().last(),
        Some(&(true, vec![0xaa, 0xbb])),
        "sequence 1 accepted after the rejoin"
    );
}

#[test]
fn a_connect_followed_by_chunks_is_a_late_retry_not_a_rejoin() {
    let (mut p, _at_client, at_server) = pair(LinkConfig::perfect(), 4, false);
    let lens = [5];
    exchange(&mut p, 3, &lens);
    let token = p.server().token_for(ADDR);
    // a late CONNECT retry, then the client carries on with chunks, then a late ACCEPT
    p.inject_to_server(FrameKind::Datagram, &TOKEN_CONNECT);
    exchange(&mut p, 3, &lens);
    let mut accept = vec![0x10, 0x00, 0x00, 0x03];
    accept.extend_from_slice(&token.0);
    p.inject_to_server(FrameKind::Datagram, &accept);
    assert_eq!(p.server().stats().rejoins, 0);
    assert!(!p
        .server_events()
        .contains(&ServerEvent::Rejoined { peer: ADDR }));
    // the connection goes on where it was: nine chunks, each delivered once
    exchange(&mut p, 3, &lens);
    p.run_for(Duration::from_secs(2));
    assert_eq!(at_server.borrow().len(), 9);
    assert_eq!(p.server().chunk_stats(ADDR).unwrap().delivered, 9);
}

fn info_content<'a>(clients: &'a [ClientInfo<'a>]) -> InfoContent<'a> {
    InfoContent {
        version: Str::new("0.6.4, tether"),
        name: Str::new("tether test server"),
        map: Str::new("Tutorial"),
        map_crc: 0x8d4c6486,
        map_size: 1_082_711,
        game_type: Str::new("DM"),
        flags: 0,
        num_players: clients.len() as i32,
        max_players: 16,
        num_clients: clients.len() as i32,
        max_clients: 16,
        clients,
    }
}

// the query needs the feature server-info (on by default)
#[cfg(feature = "server-info")]
#[test]
fn server_info_query_and_answer() {
    // a control-only client queries a control-only server, without connecting
    let server: Server<u32, 4> = Server::with_capacities(ServerConfig::new(SECRET));
    let mut p = Pair::new(
        Client::new(ClientConfig::new()),
        server,
        ADDR,
        LinkConfig::perfect(),
        1,
    );
    let clients = [ClientInfo {
        name: Str::new("nameless tee"),
        clan: Str::EMPTY,
        country: -1,
        score: 0,
        is_player: 1,
    }];
    p.answer_server_app(move |s, now, app| {
        if let ServerApp::InfoRequest(_) = app {
            let mut out = [0u8; 1400];
            let t = s
                .answer_info(now, &info_content(&clients), &mut out)
                .unwrap()
                .expect("a request to answer");
            let mut c = [0u8; 1400];
            // answered once only
            assert_eq!(s.answer_info(now, &info_content(&[]), &mut c), Ok(None));
            // the application hands the answer to its socket: here the test, below
            ANSWER.with(|a| *a.borrow_mut() = out[..t.len].to_vec());
        }
    });
    let got: Rc<RefCell<Vec<String>>> = Rc::default();
    let g = got.clone();
    p.on_client_app(move |app| {
        if let ClientApp::ServerInfo(info) = app {
            g.borrow_mut().push(format!(
                "{} {} {} {:?} {}",
                info.name.to_text::<64>(),
                info.map.to_text::<64>(),
                info.version.to_text::<64>(),
                info.kind,
                info.clients.len()
            ));
        }
    });
    for (token, extended) in [(0x42u32, false), (0x123456, true)] {
        let now = p.now();
        p.client_mut().request_info(now, token, extended).unwrap();
        p.fleet_mut().drain();
        p.run_for(Duration::from_millis(30));
        let answer = ANSWER.with(|a| std::mem::take(&mut *a.borrow_mut()));
        assert!(!answer.is_empty(), "the server answered");
        p.send_from_server(FrameKind::Datagram, &answer);
        p.run_for(Duration::from_millis(30));
    }
    assert_eq!(
        got.borrow().as_slice(),
        &[
            "tether test server Tutorial 0.6.4, tether Vanilla 1".to_string(),
            format!(
                "tether test server Tutorial 0.6.4, tether {:?} 1",
                tether_net::game::connless::InfoKind::Extended {
                    map_crc: 0x8d4c6486,
                    map_size: 1_082_711
                }
            ),
        ]
    );
    // an answer with another token is not ours
    let stale = info_content(&[]).answer(
        &InfoRequest {
            kind: tether_net::game::connless::InfoRequestKind::Info,
            extended: false,
            token: 7,
        },
        false,
    );
    let mut out = [0u8; 1400];
    let n = stale.emit(&mut out).unwrap();
    p.send_from_server(FrameKind::Datagram, &out[..n]);
    p.run_for(Duration::from_millis(30));
    assert_eq!(got.borrow().len(), 2);
    assert_eq!(p.client().stats().dropped_connless, 1);
    assert_eq!(p.client().state(), ClientState::Offline);
}

thread_local! {
    static ANSWER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

#[test]
fn connless_flood_is_answered_within_the_amplification_bound() {
    // 2,000 info requests in one second from one (spoofable) address: the first 50 of the second
    // get the full answer, the next 450 the short one, the rest nothing
    let mut s: Server<u32, 4> = Server::with_capacities(ServerConfig::new(SECRET));
    let clients: Vec<ClientInfo<'_>> = (0..16)
        .map(|_| ClientInfo {
            name: Str::new("a player with a long name"),
            clan: Str::new("clan"),
            country: 276,
            score: -9999,
            is_player: 1,
        })
        .collect();
    let content = info_content(&clients);
    let request = {
        let mut b = [0u8; 15];
        InfoRequest {
            kind: tether_net::game::connless::InfoRequestKind::Info,
            extended: false,
            token: 9,
        }
        .emit(&mut b)
        .unwrap();
        b
    };
    let (mut bytes_in, mut bytes_out, mut full, mut short) = (0usize, 0usize, 0, 0);
    let mut out = [0u8; 1400];
    for i in 0..2000u64 {
        let now = Instant::from_micros(i * 500);
        bytes_in += request.len();
        let r = s.handle_input(now, 77, &request).unwrap();
        if let Some(ServerApp::InfoRequest(_)) = r.into_app() {
            let t = s.answer_info(now, &content, &mut out).unwrap().unwrap();
            bytes_out += t.len;
            if t.len > 200 {
                full += 1;
            } else {
                short += 1;
            }
        }
    }
    let st = s.stats();
    assert_eq!((full, short), (50, 450));
    assert_eq!(st.info_answers_full, 50);
    assert_eq!(st.info_answers_short, 450);
    assert_eq!(st.dropped_info_flood, 1500);
    // amplification over the flood: bytes out per byte in
    let ratio = bytes_out as f64 / bytes_in as f64;
    println!("flood: {bytes_in} bytes in, {bytes_out} bytes out, ratio {ratio:.2}");
    assert!(ratio < 6.0, "ratio {ratio}");
    // nothing was queued on the machine's own transmit path, no peer created
    assert_eq!(s.peer_count(), 0);
    assert_eq!(s.poll_transmit(Instant::from_secs(1), &mut out), Ok(None));
}

#[test]
fn a_chunk_running_past_the_packet_end_is_counted_once_and_the_rest_dropped() {
    let (mut p, at_client, at_server) = pair(LinkConfig::perfect(), 5, false);
    let token = p.server().token_for(ADDR);
    // two non-vital chunks announced: `aa` whole, then one claiming 10 bytes with 1 left
    let mut bad = vec![0x00, 0x00, 0x02, 0x00, 0x01, 0xaa, 0x00, 0x0a, 0xbb];
    bad.extend_from_slice(&token.0);
    p.inject_to_server(FrameKind::Datagram, &bad);
    assert_eq!(at_server.borrow().last(), Some(&(false, vec![0xaa])));
    assert_eq!(p.server().stats().malformed_chunks, 1);
    // asking again finds nothing more, and counts nothing more
    assert!(p.server_mut().poll_chunk().is_none());
    assert_eq!(p.server().stats().malformed_chunks, 1);
    // the same from the server to the client
    p.inject_to_client(FrameKind::Datagram, &bad);
    assert_eq!(at_client.borrow().last(), Some(&(false, vec![0xaa])));
    assert_eq!(p.client().stats().malformed_chunks, 1);
    assert!(p.client_mut().poll_chunk().is_none());
    assert!(p.client_mut().poll_chunk().is_none());
    assert_eq!(p.client().stats().malformed_chunks, 1);
    // well-formed packets read to their end count nothing more
    exchange(&mut p, 3, &[5, 300]);
    assert_eq!(p.server().stats().malformed_chunks, 1);
    assert_eq!(p.client().stats().malformed_chunks, 1);
}
