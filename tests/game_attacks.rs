//! Attacks on the game machines in the simulator: spoofed compressed datagrams, forged and
//! sentinel CONNECT_ACCEPTs, a compressed CLOSE from a vanilla 0.6.4 server, a DDNet client's
//! repeated ACCEPT ("rejoin")
//!
//! Each test was written before its fix and failed against the machines of that time.

#[path = "support/forge.rs"]
mod forge;
#[path = "support/game_net.rs"]
mod game_net;

use game_net::*;
use tether_net::game::wire::{Control, ControlPacket};
use tether_net::game::{
    Client, ClientConfig, ClientEvent, ClientState, CloseCause, Server, ServerConfig, ServerEvent,
    Token, TokenSecret,
};
use tether_net::testing::{LinkConfig, Pair, Solo};
use tether_net::{Duration, FrameKind};

const SECRET: TokenSecret = TokenSecret([0x3c; 16]);
const ADDR: u32 = 9;
const WRONG: Token = Token([0xde, 0xad, 0xbe, 0xef]);

type Srv = Server<u32, 8>;

fn pair(link: LinkConfig) -> Pair<Client, Srv> {
    let server: Srv = Server::with_capacities(ServerConfig::new(SECRET));
    let mut p = Pair::new(Client::new(ClientConfig::new()), server, ADDR, link, 5);
    p.fleet_mut().client_closed_when(client_closed);
    p.record_transcript(true);
    p
}

fn online(p: &mut Pair<Client, Srv>) {
    let now = p.now();
    p.client_mut().connect(now).unwrap();
    p.run_until(
        |p| {
            p.client().state() == ClientState::Online
                && p.server().is_online(ADDR)
                && p.client().stats().keep_alives_received > 0
        },
        Duration::from_secs(5),
    )
    .expect("online on both sides");
}

#[test]
fn spoofed_compressed_datagrams_do_not_keep_a_dead_server_alive() {
    let mut p = pair(LinkConfig::perfect());
    online(&mut p);
    // the server goes silent (link cut); an off-path sender keeps sending compressed datagrams
    // with a wrong token, twice a second
    p.set_link_up(false);
    let spoof = forge::compressed_chunk_packet(WRONG);
    let timeout = p.client().config().timeout();
    let start = p.now();
    while p.client().state() != ClientState::Closed && p.elapsed() < Duration::from_secs(60) {
        p.inject_to_client(FrameKind::Datagram, &spoof);
        p.run_for(Duration::from_millis(500));
    }
    assert!(
        p.client_events().contains(&ClientEvent::Closed {
            cause: CloseCause::Timeout
        }),
        "the client must time out although spoofed compressed datagrams keep arriving; events {:?}",
        p.client_events()
    );
    assert!(p.now() <= start + timeout + Duration::from_secs(1));
    assert!(p.client().stats().dropped_wrong_token > 0);
}

#[test]
fn spoofed_compressed_datagrams_do_not_keep_a_dead_peer_alive() {
    let mut p = pair(LinkConfig::perfect());
    online(&mut p);
    // the client goes silent; compressed datagrams with a wrong token arrive from its address
    p.set_link_up(false);
    let spoof = forge::compressed_chunk_packet(WRONG);
    let timeout = p.server().config().timeout();
    let start = p.now();
    while p.server().is_online(ADDR) && p.elapsed() < Duration::from_secs(60) {
        p.inject_to_server(FrameKind::Datagram, &spoof);
        p.run_for(Duration::from_millis(500));
    }
    assert!(
        p.server_events().contains(&ServerEvent::Closed {
            peer: ADDR,
            cause: CloseCause::Timeout
        }),
        "the peer must time out; events {:?}",
        p.server_events()
    );
    assert!(p.now() <= start + timeout + Duration::from_secs(1));
    assert!(p.server().stats().dropped_wrong_token > 0);
}

fn connect_accept(token: Token) -> Vec<u8> {
    let mut out = [0u8; 16];
    let n = ControlPacket {
        ack: 0,
        control: Control::ConnectAccept,
        token: Some(token),
    }
    .emit(&mut out)
    .unwrap();
    out[..n].to_vec()
}

#[test]
fn forged_connect_accept_before_the_real_one_still_ends_online() {
    // 20 ms each way: the forgery arrives at once, the genuine answer 40 ms later
    let mut p = pair(LinkConfig::perfect().with_latency(Duration::from_millis(20)));
    let now = p.now();
    p.client_mut().connect(now).unwrap();
    p.inject_to_client(FrameKind::Datagram, &connect_accept(WRONG));
    p.run_for(Duration::from_secs(15));
    let genuine = p.server().token_for(ADDR);
    assert_eq!(
        p.client().state(),
        ClientState::Online,
        "events {:?}",
        p.client_events()
    );
    assert_eq!(
        p.client().token(),
        Some(genuine),
        "recovered onto the genuine token"
    );
    assert!(p.server().is_online(ADDR));
    assert!(
        p.client().stats().keep_alives_received >= 10,
        "the genuine keep-alives are accepted: {:?}",
        p.client().stats()
    );
    assert!(!p
        .server_events()
        .iter()
        .any(|e| matches!(e, ServerEvent::Closed { .. })));
}

#[test]
fn sentinel_token_in_connect_accept_is_no_silent_downgrade() {
    for sentinel in [Token([0xff; 4]), Token([0x00; 4])] {
        let mut p = pair(LinkConfig::perfect().with_latency(Duration::from_millis(20)));
        let now = p.now();
        p.client_mut().connect(now).unwrap();
        // a forged CONNECT_ACCEPT carrying a sentinel token arrives first
        p.inject_to_client(FrameKind::Datagram, &connect_accept(sentinel));
        assert_ne!(
            p.client().state(),
            ClientState::Online,
            "a CONNECT_ACCEPT with the sentinel {sentinel:?} must not put the client online"
        );
        // the genuine answer then completes the token handshake
        p.run_for(Duration::from_secs(3));
        assert_eq!(p.client().state(), ClientState::Online);
        assert_eq!(p.client().token(), Some(p.server().token_for(ADDR)));
        assert!(p.server().is_online(ADDR));
    }
}

#[test]
fn compressed_close_from_a_vanilla_server_is_understood() {
    // A vanilla 0.6.4 server compresses every packet, control packets too, when that is
    // shorter: CLOSE "Server shutdown" (ack 0, no token) becomes 90 00 00 + Huffman
    let mut plain = vec![0x04];
    plain.extend_from_slice(b"Server shutdown\0");
    let mut packed = [0u8; 64];
    // (a vanilla 0.6.4 server sends the compressed form only when it is shorter, which takes a
    // reason of bytes with short codes; a receiver decodes whatever it gets)
    let n = tether_net::game::huffman::compress(&plain, &mut packed).unwrap();
    let mut close = vec![0x90, 0x00, 0x00];
    close.extend_from_slice(&packed[..n]);

    let mut solo = Solo::new(Client::new(ClientConfig::new().with_vanilla(true)));
    let now = solo.now();
    solo.machine_mut().connect(now).unwrap();
    solo.drain();
    solo.input((), FrameKind::Datagram, b"\x10\x00\x00\x02");
    assert_eq!(solo.machine().state(), ClientState::Online);
    // libtw2's vector: a compressed KEEP_ALIVE (`00` in Huffman form) is understood too
    let before = solo.machine().stats().keep_alives_received;
    solo.input((), FrameKind::Datagram, b"\x90\x00\x00\x15\x37");
    assert_eq!(solo.machine().stats().keep_alives_received, before + 1);
    solo.input((), FrameKind::Datagram, &close);
    assert_eq!(solo.machine().state(), ClientState::Closed);
    assert!(solo.events().contains(&ClientEvent::Closed {
        cause: CloseCause::Peer
    }));
}

#[test]
fn repeated_accept_from_an_online_peer_resets_its_connection() {
    // A DDNet client that re-handshakes from the same port sends CONNECT and ACCEPT again: DDNet
    // resets the connection's sequence and ack ("rejoin"). Before: the server kept the old ack state, so
    // the re-joined client's ack 0 was dropped as out of range.
    let mut p = pair(LinkConfig::perfect());
    online(&mut p);
    let token = p.server().token_for(ADDR);
    // the connection has exchanged vital chunks: the server's sequence is 5, the client acked it
    p.server_mut().set_sequence(ADDR, 5).unwrap();
    let keep_alive = |ack: u16| {
        let mut out = [0u8; 16];
        let n = ControlPacket {
            ack,
            control: Control::KeepAlive,
            token: Some(token),
        }
        .emit(&mut out)
        .unwrap();
        out[..n].to_vec()
    };
    p.inject_to_server(FrameKind::Datagram, &keep_alive(5));
    let bad_before = p.server().stats().dropped_bad_ack;
    // the rejoin: CONNECT again, then ACCEPT + token on the live connection
    let mut accept = vec![0x10, 0x00, 0x00, 0x03];
    accept.extend_from_slice(&token.0);
    p.inject_to_server(
        FrameKind::Datagram,
        &[
            0x10, 0x00, 0x00, 0x01, b'T', b'K', b'E', b'N', 0xff, 0xff, 0xff, 0xff,
        ],
    );
    p.inject_to_server(FrameKind::Datagram, &accept);
    // after the reset the client's fresh ack 0 is in range again
    p.inject_to_server(FrameKind::Datagram, &keep_alive(0));
    assert_eq!(
        p.server().stats().dropped_bad_ack,
        bad_before,
        "ack 0 after the rejoin must be accepted"
    );
    assert!(p.server().is_online(ADDR));
    assert!(p
        .server_events()
        .contains(&ServerEvent::Rejoined { peer: ADDR }));
    assert_eq!(p.server().stats().rejoins, 1);
}
