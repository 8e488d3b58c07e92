//! Edges of the chunk layer's receive path, each from a peer that sends what a real peer can send
//! but our own writer never does: a packet with no chunk (DDNet's resend request), a small
//! compressed packet, a compressed packet on a vanilla connection that claims more chunks than it
//! holds (the bytes of the packet before must not come back as a chunk), a compressed datagram
//! longer than a packet, a rejoin while a vital chunk waits unsent, a chunk of the largest size.

use tether_net::game::huffman::compress;
use tether_net::game::vital::VitalConfig;
use tether_net::game::{
    ChunkConfig, Client, ClientApp, ClientConfig, ClientEvent, Error, Reliable, Server,
    ServerConfig, ServerEvent, TokenSecret,
};
use tether_net::testing::from_hex;
use tether_net::{Duration, Instant};

type Layer = Reliable<4096, 16, 4096, 16>;
type RClient = Client<4, Layer>;
type RServer = Server<u32, 4, 16, Layer>;

/// The token the server offers in [`CONNECT_ACCEPT`]
const TOKEN: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

fn at(ms: u64) -> Instant {
    Instant::ZERO + Duration::from_millis(ms)
}

fn drain(c: &mut RClient, now: Instant) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1400];
    while let Some(t) = c.poll_transmit(now, &mut buf).unwrap() {
        out.push(buf[..t.len].to_vec());
    }
    out
}

/// A `Reliable` client online at 0 ms, uncompressed sending; in token mode with [`TOKEN`], else
/// on a vanilla connection (a CONNECT_ACCEPT without token)
fn online(token: bool) -> Box<RClient> {
    let mut c: Box<RClient> = Box::new(Client::with_chunks(
        ClientConfig::new(),
        ChunkConfig::new().with_compression(false),
    ));
    c.connect(at(0)).unwrap();
    drain(&mut c, at(0));
    let accept = if token {
        from_hex("10 00 00 02 54 4b 45 4e 12 34 56 78")
    } else {
        from_hex("10 00 00 02")
    };
    let _ = c.handle_input(at(0), (), &accept).unwrap();
    drain(&mut c, at(0));
    let events: Vec<_> = core::iter::from_fn(|| c.poll_event()).collect();
    assert!(matches!(events.as_slice(), [ClientEvent::Connected { .. }]));
    c
}

/// Feed one datagram; the chunks it delivered (vital?, data), or `None` when it was dropped
fn feed(c: &mut RClient, now: Instant, bytes: &[u8]) -> Option<Vec<(bool, Vec<u8>)>> {
    let r = c.handle_input(now, (), bytes).unwrap();
    assert_eq!(r.bytes_consumed(), bytes.len());
    match r.into_app() {
        Some(ClientApp::ChunksReady) => {}
        None => return None,
        Some(other) => panic!("unexpected {other:?}"),
    }
    let mut got = Vec::new();
    while let Some(chunk) = c.poll_chunk() {
        got.push((chunk.flags.vital, chunk.data.to_vec()));
    }
    Some(got)
}

/// A chunk packet header (`flags` nibble, ack, number of chunks) and `plain` Huffman-compressed
fn compressed(first: u8, num_chunks: u8, plain: &[u8]) -> Vec<u8> {
    let mut packed = vec![0u8; 4096];
    let n = compress(plain, &mut packed).unwrap();
    let mut pkt = vec![first, 0x00, num_chunks];
    pkt.extend_from_slice(&packed[..n]);
    pkt
}

#[test]
fn a_packet_with_no_chunk_but_its_token_asks_for_a_resend() {
    // DDNet's CNetConnection::Flush sends a packet of no chunk when it only has a resend request:
    // 3 header bytes and the token, 7 bytes in all
    let mut c = online(true);
    c.send_vital(at(10), b"hello", true).unwrap();
    let first = drain(&mut c, at(10));
    assert_eq!(first.len(), 1);
    let resent = c.chunk_stats().resent;
    let mut request = from_hex("40 00 00");
    request.extend_from_slice(&TOKEN);
    assert_eq!(feed(&mut c, at(20), &request), Some(vec![]));
    let stats = c.stats();
    assert_eq!(stats.dropped_wrong_token + stats.dropped_malformed, 0);
    assert_eq!(stats.chunk_packets_received, 1);
    // the vital chunk goes out again at once, the same chunk with its resend flag (0x80)
    let mut again = first[0].clone();
    again[3] |= 0x80;
    assert_eq!(drain(&mut c, at(20)), [again]);
    assert_eq!(c.chunk_stats().resent, resent + 1);
}

#[test]
fn a_small_compressed_packet_is_read_with_its_token() {
    let mut c = online(true);
    // one non-vital chunk of one byte and the token: 10 bytes decompressed
    let mut plain = from_hex("00 01 aa");
    plain.extend_from_slice(&TOKEN);
    let pkt = compressed(0x80, 1, &plain);
    assert_eq!(feed(&mut c, at(10), &pkt), Some(vec![(false, vec![0xaa])]));
    // no chunk, only the token: 7 bytes decompressed
    let pkt = compressed(0x80, 0, &TOKEN);
    assert_eq!(feed(&mut c, at(20), &pkt), Some(vec![]));
    // the token of another connection: dropped
    let pkt = compressed(0x80, 1, &from_hex("00 01 aa 12 34 56 79"));
    assert_eq!(feed(&mut c, at(30), &pkt), None);
    let stats = c.stats();
    assert_eq!(stats.chunk_packets_received, 2);
    assert_eq!(stats.dropped_wrong_token, 1);
}

#[test]
fn a_compressed_packet_claiming_more_chunks_than_it_holds_does_not_replay_the_packet_before() {
    // a vanilla connection (no token), where the decompressed payload is all chunks
    let mut c = online(false);
    let a = from_hex("00 00 02 00 01 aa 00 01 bb");
    assert_eq!(
        feed(&mut c, at(10), &a),
        Some(vec![(false, vec![0xaa]), (false, vec![0xbb])])
    );
    // two chunks claimed, one there: the receive buffer still holds the second chunk of the
    // packet before right behind it, which must not be read as this packet's second chunk
    let b = compressed(0x80, 2, &from_hex("00 01 cc"));
    assert_eq!(feed(&mut c, at(20), &b), Some(vec![(false, vec![0xcc])]));
    // a whole one reads whole
    let b = compressed(0x80, 2, &from_hex("00 01 dd 00 02 ee ff"));
    assert_eq!(
        feed(&mut c, at(30), &b),
        Some(vec![(false, vec![0xdd]), (false, vec![0xee, 0xff])])
    );
}

#[test]
fn a_compressed_datagram_longer_than_a_packet_is_dropped_though_it_decodes() {
    // DDNet reads at most 1,400 bytes a datagram: a longer one is no packet, whatever it holds.
    // Rare symbols take more than 8 bits each, so this compressed payload outgrows its plain text.
    let data: Vec<u8> = (0..1000u32).map(|i| 0xc1 ^ (i * 37) as u8 | 0x81).collect();
    let build = |len: usize| {
        let mut plain = vec![(len >> 4) as u8 & 0x3f, len as u8 & 0x0f];
        plain.extend_from_slice(&data[..len]);
        plain.extend_from_slice(&TOKEN);
        compressed(0x80, 1, &plain)
    };
    let long = build(1000);
    assert!(long.len() > 1400, "premise: {} bytes", long.len());
    let mut short_len = 1000;
    while build(short_len).len() > 1400 {
        short_len -= 10;
    }
    let short = build(short_len);

    let mut c = online(true);
    assert_eq!(feed(&mut c, at(10), &long), None);
    assert_eq!(c.stats().dropped_malformed, 1);
    assert_eq!(c.stats().chunk_packets_received, 0);
    // the same content cut to fit a packet is read
    assert_eq!(
        feed(&mut c, at(20), &short),
        Some(vec![(false, data[..short_len].to_vec())])
    );

    // a `ControlOnly` client, which checks the token of a compressed packet in passing, drops it
    // the same way
    let mut plain_client: Client<4> = Client::new(ClientConfig::new());
    plain_client.connect(at(0)).unwrap();
    let mut buf = [0u8; 1400];
    while plain_client
        .poll_transmit(at(0), &mut buf)
        .unwrap()
        .is_some()
    {}
    let _ = plain_client
        .handle_input(at(0), (), &from_hex("10 00 00 02 54 4b 45 4e 12 34 56 78"))
        .unwrap();
    let r = plain_client.handle_input(at(10), (), &long).unwrap();
    assert!(r.into_app().is_none());
    assert_eq!(plain_client.stats().dropped_malformed, 1);
    let r = plain_client.handle_input(at(20), (), &short).unwrap();
    assert!(matches!(r.into_app(), Some(ClientApp::Chunks(_))));
}

#[test]
fn a_chunk_of_the_largest_size_is_sent_and_one_byte_more_is_refused() {
    let mut c = online(true);
    let mut buf = [0u8; 1400];
    let t = c.send_non_vital(at(10), &[7u8; 1023], &mut buf).unwrap();
    // header, chunk header (2 bytes: 1023 in 10 bits), the data, the token
    assert_eq!(t.len, 3 + 2 + 1023 + 4);
    assert_eq!(&buf[3..5], &[0x3f, 0x0f]);
    assert_eq!(
        c.send_non_vital(at(10), &[7u8; 1024], &mut buf),
        Err(Error::TooLong {
            len: 1024,
            max: 1023
        })
    );
}

const SECRET: TokenSecret = TokenSecret([0x5a; 16]);
/// A DDNet CONNECT (token form, no token yet)
const TOKEN_CONNECT: &str = "10 00 00 01 54 4b 45 4e ff ff ff ff";

fn handshake(s: &mut RServer, now: Instant, peer: u32) -> Vec<u8> {
    let _ = s.handle_input(now, peer, &from_hex(TOKEN_CONNECT)).unwrap();
    let mut buf = [0u8; 1400];
    while s.poll_transmit(now, &mut buf).unwrap().is_some() {}
    let mut accept = from_hex("10 00 00 03");
    accept.extend_from_slice(&s.token_for(peer).0);
    let _ = s.handle_input(now, peer, &accept).unwrap();
    accept
}

#[test]
fn a_rejoin_while_a_vital_chunk_waits_unsent_resets_the_channel() {
    let mut s: Box<RServer> = Box::new(Server::with_chunks(
        ServerConfig::new(SECRET),
        ChunkConfig::new(),
    ));
    let events = |s: &mut RServer| core::iter::from_fn(|| s.poll_event()).collect::<Vec<_>>();
    // a peer that re-handshakes before anything was exchanged: nothing to reset, no event
    let accept = handshake(&mut s, at(0), 1);
    assert!(matches!(
        events(&mut s).as_slice(),
        [ServerEvent::Connected { peer: 1, .. }]
    ));
    let _ = s.handle_input(at(5), 1, &from_hex(TOKEN_CONNECT)).unwrap();
    let _ = s.handle_input(at(5), 1, &accept).unwrap();
    assert_eq!(events(&mut s), []);
    assert_eq!(s.stats().rejoins, 0);
    // a vital chunk queued for the peer and not yet sent: its channel has state, so a rejoin
    // resets it (the chunk belonged to the old connection), as DDNet resets the connection
    let accept = handshake(&mut s, at(10), 2);
    assert!(matches!(
        events(&mut s).as_slice(),
        [ServerEvent::Connected { peer: 2, .. }]
    ));
    assert_eq!(s.send_vital(at(10), 2, b"old", false), Ok(1));
    let _ = s.handle_input(at(15), 2, &from_hex(TOKEN_CONNECT)).unwrap();
    let _ = s.handle_input(at(15), 2, &accept).unwrap();
    assert_eq!(events(&mut s), [ServerEvent::Rejoined { peer: 2 }]);
    assert_eq!(s.stats().rejoins, 1);
    // the next vital chunk is the new connection's first
    assert_eq!(s.send_vital(at(20), 2, b"new", false), Ok(1));

    // a chunk due at once (flush) when the rejoin comes: the reset drops it, and nothing goes
    // out in its place (no chunk packet of the old connection, no stray KEEP_ALIVE)
    let accept = handshake(&mut s, at(30), 3);
    let _ = events(&mut s);
    let mut buf = [0u8; 1400];
    assert_eq!(s.send_vital(at(30), 3, b"old", true), Ok(1));
    let _ = s.handle_input(at(31), 3, &from_hex(TOKEN_CONNECT)).unwrap();
    let _ = s.handle_input(at(31), 3, &accept).unwrap();
    assert_eq!(events(&mut s), [ServerEvent::Rejoined { peer: 3 }]);
    let mut sent = Vec::new();
    while let Some(t) = s.poll_transmit(at(31), &mut buf).unwrap() {
        sent.push((t.to, buf[..t.len].to_vec()));
    }
    let mut connect_accept = from_hex("10 00 00 02 54 4b 45 4e");
    connect_accept.extend_from_slice(&s.token_for(3).0);
    assert_eq!(sent, [(3, connect_accept)], "only the CONNECT's answer");
}

#[test]
fn the_client_counts_its_vital_chunks_until_the_server_acknowledges_them() {
    let mut c = online(true);
    assert_eq!(c.unacked(), 0);
    assert_eq!(c.send_vital(at(1), b"one", false), Ok(1));
    assert_eq!(c.send_vital(at(1), b"two", true), Ok(2));
    assert_eq!(c.unacked(), 2, "queued");
    assert_eq!(drain(&mut c, at(1)).len(), 1, "both in one packet");
    assert_eq!(c.stats().chunk_packets_sent, 1);
    assert_eq!(c.unacked(), 2, "sent, not acknowledged");
    assert_eq!(c.peer_ack(), 0);
    // the server's KEEP_ALIVEs acknowledge sequence 1, then 2
    assert_eq!(
        feed(&mut c, at(2), &from_hex("10 01 00 00 12 34 56 78")),
        None
    );
    assert_eq!((c.unacked(), c.peer_ack()), (1, 1));
    assert_eq!(
        feed(&mut c, at(3), &from_hex("10 02 00 00 12 34 56 78")),
        None
    );
    assert_eq!((c.unacked(), c.peer_ack()), (0, 2));
}

/// A chunk-layer server (`chunks`) with `peers` joined at 0 ms, their events drained
fn server_with(chunks: ChunkConfig, peers: &[u32]) -> Box<RServer> {
    let mut s: Box<RServer> = Box::new(Server::with_chunks(ServerConfig::new(SECRET), chunks));
    for &peer in peers {
        handshake(&mut s, at(0), peer);
    }
    while s.poll_event().is_some() {}
    s
}

/// A chunk packet from `peer` with one vital chunk: sequence `seq`, the byte `byte`
fn one_vital_chunk(s: &RServer, peer: u32, seq: u8, byte: u8) -> Vec<u8> {
    let mut pkt = vec![0x00, 0x00, 0x01, 0x40, 0x01, seq, byte];
    pkt.extend_from_slice(&s.token_for(peer).0);
    pkt
}

#[test]
fn a_non_vital_packet_carries_its_own_peers_ack_and_replaces_a_queued_keep_alive() {
    let mut s = server_with(ChunkConfig::new().with_compression(false), &[1, 2, 3]);
    // peer 3 (the third slot) sends one vital chunk, sequence 1: the server acks 1 to it only
    let pkt = one_vital_chunk(&s, 3, 1, b'x');
    let _ = s.handle_input(at(10), 3, &pkt).unwrap();
    while s.poll_chunk().is_some() {}
    // the ack each peer is sent is its own vital channel's
    assert_eq!((s.ack(1), s.ack(3), s.ack(4)), (Some(0), Some(1), None));
    let mut buf = [0u8; 1400];
    while s.poll_transmit(at(10), &mut buf).unwrap().is_some() {}
    let mut out = [0u8; 1400];
    let t = s.send_non_vital(at(10), 3, b"nv", &mut out).unwrap();
    assert_eq!((t.to, &out[..2]), (3, &[0x00, 0x01][..]), "ack 1 to peer 3");
    let t = s.send_non_vital(at(10), 1, b"nv", &mut out).unwrap();
    assert_eq!((t.to, &out[..2]), (1, &[0x00, 0x00][..]), "ack 0 to peer 1");
    // every keep-alive is due 1 s after the last send (peers 1 and 3 at 1,010 ms); a non-vital
    // packet to peer 3 before the next poll takes its keep-alive's place
    let due = at(1010);
    s.handle_timeout(due);
    let _ = s.send_non_vital(due, 3, b"nv", &mut out).unwrap();
    let mut to = Vec::new();
    while let Some(t) = s.poll_transmit(due, &mut buf).unwrap() {
        to.push(t.to);
    }
    to.sort_unstable();
    assert_eq!(to, [1, 2], "keep-alives to the others only");
    // peer 3's own keep-alive, a second later, carries the ack of its vital chunk too
    s.handle_timeout(at(2010));
    let mut ka = Vec::new();
    while let Some(t) = s.poll_transmit(at(2010), &mut buf).unwrap() {
        if t.to == 3 {
            ka.push(buf[..4].to_vec());
        }
    }
    assert_eq!(ka, [from_hex("10 01 00 00")], "KEEP_ALIVE acking 1");
}

#[test]
fn chunks_of_a_peer_closed_before_they_were_read_never_reach_the_peer_in_its_slot() {
    let mut s = server_with(ChunkConfig::new().with_compression(false), &[1, 2, 3]);
    let pkt = one_vital_chunk(&s, 3, 1, b'x');
    let _ = s.handle_input(at(10), 3, &pkt).unwrap();
    // the application closes peer 3 before reading its chunk; peer 4 takes the freed slot
    s.close(at(10), 3, "bye").unwrap();
    handshake(&mut s, at(10), 4);
    assert!(s.is_online(4));
    assert!(s.poll_chunk().is_none(), "nothing for peer 4");
    assert_eq!(s.chunk_stats(4).unwrap().delivered, 0);
}

#[test]
fn a_third_slot_peers_early_chunk_comes_out_of_its_own_reorder_buffer() {
    let mut s = server_with(ChunkConfig::fast().with_compression(false), &[1, 2, 3]);
    let mut got = Vec::new();
    // peer 3 sends sequence 2 ("y") before 1 ("x"): 2 waits in peer 3's reorder buffer
    for (at_ms, seq, byte) in [(10, 2, b'y'), (20, 1, b'x')] {
        let pkt = one_vital_chunk(&s, 3, seq, byte);
        let _ = s.handle_input(at(at_ms), 3, &pkt).unwrap();
        while let Some((peer, c)) = s.poll_chunk() {
            got.push((peer, c.seq, c.data.to_vec()));
        }
    }
    assert_eq!(got, [(3, 1, b"x".to_vec()), (3, 2, b"y".to_vec())]);
    // the counters are peer 3's own
    assert_eq!(s.chunk_stats(3).unwrap().delivered, 2);
    assert_eq!(s.chunk_stats(1).unwrap().delivered, 0);
}

/// What the server received (peer, data) and what each client received
type Received = (Vec<(u32, Vec<u8>)>, Vec<Vec<Vec<u8>>>);

/// Four chunk-layer clients on a four-slot server (every slot taken, the fourth joining late),
/// one datagram in five lost each way: each side receives exactly its own vital chunks, in
/// order, once. Returns what the server and each client received.
fn four_clients_exchange() -> Received {
    const K: usize = 12;
    let mut s: Box<RServer> = Box::new(Server::with_chunks(
        ServerConfig::new(SECRET),
        ChunkConfig::fast().with_compression(false),
    ));
    let mut cs: Vec<Box<RClient>> = (0..4)
        .map(|_| {
            Box::new(Client::with_chunks(
                ClientConfig::new(),
                ChunkConfig::fast().with_compression(false),
            ))
        })
        .collect();
    let mut at_srv: Vec<(u32, Vec<u8>)> = Vec::new();
    let mut at_cli: Vec<Vec<Vec<u8>>> = vec![Vec::new(); 4];
    let mut sent = [0usize; 4];
    let mut online = [false; 4];
    // one datagram in five lost each way, from a fixed xorshift sequence
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut lose = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x.is_multiple_of(5)
    };
    let mut buf = [0u8; 1400];
    for step in 0..6000u64 {
        let now = at(step * 10);
        for (i, c) in cs.iter_mut().enumerate() {
            // clients 1-3 connect at once, client 4 after 300 ms of traffic
            if (i < 3 && step == 0) || (i == 3 && step == 30) {
                c.connect(now).unwrap();
            }
            if c.poll_timeout().is_some_and(|d| d <= now) {
                c.handle_timeout(now);
            }
            while let Some(e) = c.poll_event() {
                if let ClientEvent::Connected { .. } = e {
                    online[i] = true;
                }
            }
            if online[i]
                && sent[i] < K
                && c.send_vital(now, &[b'c', i as u8, sent[i] as u8], true)
                    .is_ok()
            {
                sent[i] += 1;
            }
            while let Some(t) = c.poll_transmit(now, &mut buf).unwrap() {
                if lose() {
                    continue;
                }
                let peer = i as u32 + 1;
                let _ = s.handle_input(now, peer, &buf[..t.len]).unwrap();
                while let Some((p, chunk)) = s.poll_chunk() {
                    if chunk.flags.vital {
                        at_srv.push((p, chunk.data.to_vec()));
                    }
                }
            }
        }
        while let Some(e) = s.poll_event() {
            if let ServerEvent::Connected { peer, .. } = e {
                for k in 0..K {
                    // queued at once: the channel sends them as room allows
                    s.send_vital(now, peer, &[b's', peer as u8, k as u8], k == K - 1)
                        .unwrap();
                }
            }
        }
        if s.poll_timeout().is_some_and(|d| d <= now) {
            s.handle_timeout(now);
        }
        while let Some(t) = s.poll_transmit(now, &mut buf).unwrap() {
            if lose() {
                continue;
            }
            let c = &mut cs[t.to as usize - 1];
            let r = c.handle_input(now, (), &buf[..t.len]).unwrap();
            if let Some(ClientApp::ChunksReady) = r.into_app() {
                while let Some(chunk) = c.poll_chunk() {
                    if chunk.flags.vital {
                        at_cli[t.to as usize - 1].push(chunk.data.to_vec());
                    }
                }
            }
        }
        let done = at_srv.len() == 4 * K && at_cli.iter().all(|v| v.len() == K);
        if done && cs.iter().all(|c| c.unacked() == 0) {
            break;
        }
    }
    (at_srv, at_cli)
}

#[test]
fn four_chunk_clients_in_every_slot_each_get_exactly_their_own_chunks_under_loss() {
    let (at_srv, at_cli) = four_clients_exchange();
    for i in 0..4u8 {
        let from: Vec<Vec<u8>> = at_srv
            .iter()
            .filter(|(p, _)| *p == u32::from(i) + 1)
            .map(|(_, d)| d.clone())
            .collect();
        let want: Vec<Vec<u8>> = (0..12u8).map(|k| vec![b'c', i, k]).collect();
        assert_eq!(from, want, "the server from client {}", i + 1);
        let want: Vec<Vec<u8>> = (0..12u8).map(|k| vec![b's', i + 1, k]).collect();
        assert_eq!(at_cli[usize::from(i)], want, "client {}", i + 1);
    }
}

#[test]
fn a_silent_peer_with_an_unacked_chunk_times_out_as_a_timeout_not_too_weak() {
    // the peer goes silent right after joining while a vital chunk waits for its ack: both
    // the 10 s timeout and the 10 s unacked limit fall due at once; the timeout is the cause
    let mut s = server_with(ChunkConfig::new().with_compression(false), &[1]);
    assert_eq!(s.send_vital(at(0), 1, b"hello", true), Ok(1));
    let mut buf = [0u8; 1400];
    let mut closed = None;
    let mut now = at(0);
    while closed.is_none() && now < at(20_000) {
        while s.poll_transmit(now, &mut buf).unwrap().is_some() {}
        now = s.poll_timeout().unwrap();
        s.handle_timeout(now);
        while let Some(e) = s.poll_event() {
            if let ServerEvent::Closed { peer: 1, cause } = e {
                closed = Some((now, cause));
            }
        }
    }
    assert_eq!(
        closed,
        Some((at(10_000), tether_net::game::CloseCause::Timeout))
    );
}

#[test]
fn a_vital_chunk_with_nothing_to_send_back_is_acked_by_an_early_keep_alive() {
    // the third of three peers (its own slot's channel decides)
    let vital = VitalConfig::reference().with_ack_delay(Some(Duration::from_millis(50)));
    let chunks = ChunkConfig::new().with_compression(false).with_vital(vital);
    let mut s = server_with(chunks, &[1, 2, 3]);
    let mut buf = [0u8; 1400];
    while s.poll_transmit(at(0), &mut buf).unwrap().is_some() {}
    let pkt = one_vital_chunk(&s, 3, 1, b'x');
    let _ = s.handle_input(at(10), 3, &pkt).unwrap();
    while s.poll_chunk().is_some() {}
    // an ack delay of 50 ms: the first packet to the peer is a KEEP_ALIVE acking 1, 50 ms later,
    // long before the 1 s cadence
    let mut now = at(10);
    let first = loop {
        if let Some(t) = s.poll_transmit(now, &mut buf).unwrap() {
            if t.to == 3 {
                break (now, buf[..t.len].to_vec());
            }
            continue;
        }
        now = s.poll_timeout().unwrap();
        s.handle_timeout(now);
    };
    let mut ka = from_hex("10 01 00 00");
    ka.extend_from_slice(&s.token_for(3).0);
    assert_eq!(first.1, ka);
    assert_eq!(first.0, at(60));
    // that KEEP_ALIVE carried the ack: the next packet to peer 3 keeps the 1 s cadence
    let next = loop {
        now = s.poll_timeout().unwrap();
        s.handle_timeout(now);
        let mut to3 = None;
        while let Some(t) = s.poll_transmit(now, &mut buf).unwrap() {
            if t.to == 3 {
                to3 = Some(now);
            }
        }
        if let Some(t) = to3 {
            break t;
        }
    };
    assert_eq!(next, at(1060));
}

#[test]
fn a_chunk_packet_refused_by_a_small_buffer_comes_out_whole_on_the_next_call() {
    let mut s = server_with(ChunkConfig::new().with_compression(false), &[1, 2]);
    let mut buf = [0u8; 1400];
    while s.poll_transmit(at(0), &mut buf).unwrap().is_some() {}
    s.send_vital(at(10), 2, b"hello", true).unwrap();
    // the packet is written into the server's out buffer before the caller's is checked: a
    // buffer too small for it is refused with the size it needs, the packet kept
    let mut small = [0u8; 4];
    let required = match s.poll_transmit(at(10), &mut small) {
        Err(e) => e.required,
        Ok(t) => panic!("a 4-byte buffer took {t:?}"),
    };
    assert!(required > 4);
    // nothing else is queued, yet the kept packet comes out, to peer 2, exactly that size
    let t = s
        .poll_transmit(at(10), &mut buf)
        .unwrap()
        .expect("the kept packet");
    assert_eq!((t.to, t.len), (2, required));
    let payload = &buf[3..t.len - 4];
    assert!(
        payload.windows(5).any(|w| w == b"hello"),
        "the vital chunk is in it: {:02x?}",
        &buf[..t.len]
    );
    assert_eq!(&buf[t.len - 4..t.len], &s.token_for(2).0);
    assert!(s.poll_transmit(at(10), &mut buf).unwrap().is_none());
}

#[test]
fn a_peer_admitted_into_a_freed_slot_starts_a_fresh_vital_channel_and_leaves_the_others_alone() {
    let mut s = server_with(ChunkConfig::new().with_compression(false), &[1, 2, 3, 4]);
    let mut buf = [0u8; 1400];
    while s.poll_transmit(at(0), &mut buf).unwrap().is_some() {}
    // every peer sends vital chunk 1 and is sent two: the channels of all four slots have state
    for peer in [1, 2, 3, 4] {
        let pkt = one_vital_chunk(&s, peer, 1, b'x');
        let r = s.handle_input(at(10), peer, &pkt).unwrap();
        assert_eq!(r.bytes_consumed(), pkt.len());
        // (the chunks of one packet are read before the next is taken in)
        while s.poll_chunk().is_some() {}
        assert_eq!(s.ack(peer), Some(1));
        assert_eq!(s.send_vital(at(10), peer, b"a", false), Ok(1));
        assert_eq!(s.send_vital(at(10), peer, b"b", false), Ok(2));
    }
    // peer 3 (the third slot) leaves; peer 9 takes its slot
    s.close(at(20), 3, "bye").unwrap();
    while s.poll_event().is_some() {}
    handshake(&mut s, at(20), 9);
    while s.poll_event().is_some() {}
    assert_eq!(s.peer_count(), 4);
    // 9's channel is new: nothing acked, its first chunk is sequence 1
    assert_eq!(s.ack(9), Some(0));
    assert_eq!(s.send_vital(at(20), 9, b"c", false), Ok(1));
    // the others kept theirs
    for peer in [1, 2, 4] {
        assert_eq!(s.ack(peer), Some(1), "peer {peer}");
        assert_eq!(
            s.send_vital(at(20), peer, b"c", false),
            Ok(3),
            "peer {peer}"
        );
    }
}

#[test]
fn a_chunk_due_when_its_peers_timer_fires_leaves_no_deadline_in_the_past() {
    let mut s = server_with(ChunkConfig::new().with_compression(false), &[1, 2, 3]);
    let mut buf = [0u8; 1400];
    while s.poll_transmit(at(0), &mut buf).unwrap().is_some() {}
    // the keep-alive timers fire at 1 s; a flushed chunk for the third peer is due right then
    let due = s.poll_timeout().unwrap();
    assert_eq!(due, at(1000));
    assert_eq!(s.send_vital(due, 3, b"now", true), Ok(1));
    s.handle_timeout(due);
    // the chunk goes out with the next poll_transmit; until then no timer says "already due"
    let next = s.poll_timeout().unwrap();
    assert!(next > due, "{next:?} is not after {due:?}");
    let mut to = Vec::new();
    while let Some(t) = s.poll_transmit(due, &mut buf).unwrap() {
        to.push(t.to);
    }
    to.sort_unstable();
    assert_eq!(to, [1, 2, 3]);
    assert!(s.poll_timeout().unwrap() > due);
}

/// A KEEP_ALIVE from `peer` acking our vital sequence `ack`
fn keep_alive_acking(s: &RServer, peer: u32, ack: u8) -> Vec<u8> {
    let mut pkt = vec![0x10, ack, 0x00, 0x00];
    pkt.extend_from_slice(&s.token_for(peer).0);
    pkt
}

#[test]
fn a_third_slot_peers_ack_is_checked_against_its_own_channel() {
    let mut s = server_with(ChunkConfig::new().with_compression(false), &[1, 2, 3, 4]);
    let mut buf = [0u8; 1400];
    while s.poll_transmit(at(0), &mut buf).unwrap().is_some() {}
    // only peer 3 (the third slot) was sent vital chunks: 1 and 2
    s.send_vital(at(10), 3, b"a", false).unwrap();
    s.send_vital(at(10), 3, b"b", true).unwrap();
    while s.poll_transmit(at(10), &mut buf).unwrap().is_some() {}
    assert_eq!(s.chunk_stats(3).unwrap().sent, 2);
    // its ack of 2 is in range for its channel (out of range for the others')
    let _ = s
        .handle_input(at(20), 3, &keep_alive_acking(&s, 3, 2))
        .unwrap();
    assert_eq!(s.stats().dropped_bad_ack, 0);
    assert_eq!(s.stats().keep_alives_received, 1);
    // the same ack from peer 4, which was sent nothing, is refused
    let _ = s
        .handle_input(at(20), 4, &keep_alive_acking(&s, 4, 2))
        .unwrap();
    assert_eq!(s.stats().dropped_bad_ack, 1);
}

#[test]
fn a_rejoin_forgets_the_unread_chunks_of_the_old_connection() {
    let mut s = server_with(ChunkConfig::new().with_compression(false), &[1, 2, 3]);
    let mut buf = [0u8; 1400];
    while s.poll_transmit(at(0), &mut buf).unwrap().is_some() {}
    // peer 3 has state (a vital chunk sent to it), then sends one that is not read yet
    s.send_vital(at(10), 3, b"to", true).unwrap();
    while s.poll_transmit(at(10), &mut buf).unwrap().is_some() {}
    let pkt = one_vital_chunk(&s, 3, 1, b'x');
    let _ = s.handle_input(at(20), 3, &pkt).unwrap();
    // it re-handshakes before the application read the chunk: the connection starts over,
    // and the old connection's chunk is not handed out
    let mut accept = from_hex("10 00 00 03");
    accept.extend_from_slice(&s.token_for(3).0);
    let _ = s.handle_input(at(30), 3, &from_hex(TOKEN_CONNECT)).unwrap();
    let _ = s.handle_input(at(30), 3, &accept).unwrap();
    let events: Vec<_> = core::iter::from_fn(|| s.poll_event()).collect();
    assert_eq!(events, [ServerEvent::Rejoined { peer: 3 }]);
    assert!(s.poll_chunk().is_none());
    assert_eq!(s.ack(3), Some(0));
    // the other peers' input goes on as usual
    let pkt = one_vital_chunk(&s, 2, 1, b'y');
    let _ = s.handle_input(at(40), 2, &pkt).unwrap();
    let (from, chunk) = s.poll_chunk().expect("peer 2's chunk");
    assert_eq!((from, chunk.data), (2, &b"y"[..]));
}

#[test]
fn a_kept_chunk_packet_never_goes_to_the_next_occupant_of_its_slot() {
    let mut s = server_with(ChunkConfig::new().with_compression(false), &[1, 2, 3]);
    let mut buf = [0u8; 1400];
    while s.poll_transmit(at(0), &mut buf).unwrap().is_some() {}
    // a chunk packet for peer 3 is written, refused by a small buffer and kept
    s.send_vital(at(10), 3, b"for peer 3 only", true).unwrap();
    assert!(s.poll_transmit(at(10), &mut [0u8; 4]).is_err());
    // peer 3 is closed and peer 9 takes its slot before the next poll_transmit
    // (a token peer's ACCEPT admits it; nothing is polled in between)
    s.close(at(20), 3, "bye").unwrap();
    let mut accept = from_hex("10 00 00 03");
    accept.extend_from_slice(&s.token_for(9).0);
    let _ = s.handle_input(at(20), 9, &accept).unwrap();
    while s.poll_event().is_some() {}
    assert!(s.is_online(9));
    let mut out = Vec::new();
    while let Some(t) = s.poll_transmit(at(20), &mut buf).unwrap() {
        out.push((t.to, buf[..t.len].to_vec()));
    }
    assert!(
        out.iter()
            .all(|(_, d)| !d.windows(15).any(|w| w == b"for peer 3 only")),
        "{out:02x?}"
    );
    // peer 3 got its CLOSE and nothing else; nothing at all went to 9
    assert_eq!(out.len(), 1, "{out:02x?}");
    assert_eq!((out[0].0, out[0].1[3]), (3, 0x04));
}

/// Everything `s` hands out at `now`: (to, first byte, datagram)
fn drain_server(s: &mut RServer, now: Instant) -> Vec<(u32, Vec<u8>)> {
    let mut buf = [0u8; 1400];
    let mut out = Vec::new();
    while let Some(t) = s.poll_transmit(now, &mut buf).unwrap() {
        out.push((t.to, buf[..t.len].to_vec()));
    }
    out
}

#[test]
fn a_connect_accept_goes_out_before_the_chunk_packet_queued_with_it() {
    let mut s = server_with(ChunkConfig::new().with_compression(false), &[1, 2, 3]);
    let _ = drain_server(&mut s, at(0));
    // a flushed chunk for peer 3, then its CONNECT (a re-handshake) before anything was sent
    s.send_vital(at(10), 3, b"chunk", true).unwrap();
    let _ = s.handle_input(at(10), 3, &from_hex(TOKEN_CONNECT)).unwrap();
    let out = drain_server(&mut s, at(10));
    assert_eq!(out.len(), 2, "{out:02x?}");
    assert_eq!((out[0].0, out[0].1[3]), (3, 0x02), "CONNECT_ACCEPT first");
    assert_eq!(
        (out[1].0, out[1].1[0] & 0x10),
        (3, 0),
        "then the chunk packet"
    );
}

#[test]
fn a_chunk_packet_due_with_a_keep_alive_replaces_it() {
    let mut s = server_with(ChunkConfig::new().with_compression(false), &[1, 2, 3]);
    let _ = drain_server(&mut s, at(0));
    // at 1 s the keep-alives fall due; a flushed chunk for peer 3 is queued at the same instant
    s.handle_timeout(at(1000));
    s.send_vital(at(1000), 3, b"chunk", true).unwrap();
    let out = drain_server(&mut s, at(1000));
    let to3: Vec<_> = out.iter().filter(|(to, _)| *to == 3).collect();
    assert_eq!(to3.len(), 1, "{out:02x?}");
    assert_eq!(
        to3[0].1[0] & 0x10,
        0,
        "a chunk packet, no KEEP_ALIVE after it"
    );
    // the others get their KEEP_ALIVE
    assert_eq!(out.len(), 3);
}

#[test]
fn chunks_that_need_two_packets_go_out_in_one_drain() {
    let mut s = server_with(ChunkConfig::new().with_compression(false), &[1, 2, 3]);
    let _ = drain_server(&mut s, at(0));
    for _ in 0..3 {
        s.send_vital(at(10), 3, &[b'z'; 600], true).unwrap();
    }
    let out = drain_server(&mut s, at(10));
    assert_eq!(
        out.len(),
        2,
        "two chunks fit a packet, the third goes in a second"
    );
    assert!(out.iter().all(|(to, d)| *to == 3 && d[0] & 0x10 == 0));
    assert_eq!(s.chunk_stats(3).unwrap().sent, 3);
    assert!(drain_server(&mut s, at(10)).is_empty());
}

#[test]
fn a_flushed_chunk_carried_by_a_non_vital_packet_leaves_nothing_queued() {
    let mut s = server_with(ChunkConfig::new().with_compression(false), &[1, 2, 3]);
    let _ = drain_server(&mut s, at(0));
    s.send_vital(at(10), 3, b"vital", true).unwrap();
    let mut out = [0u8; 1400];
    let t = s.send_non_vital(at(10), 3, b"snap", &mut out).unwrap();
    assert!(out[..t.len].windows(5).any(|w| w == b"vital"));
    assert!(drain_server(&mut s, at(10)).is_empty());
    assert_eq!(s.chunk_stats(3).unwrap().sent, 1);
    // the peer acks it; the keep-alive cadence goes on from that packet: the next 1 s after it
    let _ = s
        .handle_input(at(20), 3, &keep_alive_acking(&s, 3, 1))
        .unwrap();
    assert_eq!(s.stats().dropped_bad_ack, 0);
    s.handle_timeout(at(20));
    let mut to3: Vec<(Instant, u8)> = Vec::new();
    let mut now = at(20);
    while now <= at(1100) {
        for (to, d) in drain_server(&mut s, now) {
            if to == 3 {
                to3.push((now, d[3]));
            }
        }
        now = s.poll_timeout().unwrap().max(now);
        s.handle_timeout(now);
    }
    assert_eq!(to3, [(at(1010), 0x00)], "one KEEP_ALIVE, at 1,010 ms");
}
