//! The tokio game client against the tokio game server on 127.0.0.1: connect, the server closes
//! the peer with a reason, a second client, the server shuts down
#![cfg(feature = "tokio")]

use std::time::Duration;

use tether_net::game::{
    ClientConfig, ClientEvent, CloseCause, ServerConfig, ServerEvent, TokenSecret,
};
use tether_net_drivers::tokio::{GameClient, GameClientItem, GameServer, GameServerItem};
use tokio::time::timeout;

const STEP: Duration = Duration::from_secs(5);

#[tokio::test]
async fn client_and_server_over_loopback_udp() {
    // a constant secret is for this test only; a real server draws it from a random source
    let (server, mut sevents) =
        GameServer::bind("127.0.0.1:0", ServerConfig::new(TokenSecret([9; 16])))
            .await
            .unwrap();
    let (client, mut cevents) = timeout(
        STEP,
        GameClient::connect(server.local_addr(), ClientConfig::new()),
    )
    .await
    .unwrap()
    .unwrap();
    let peer = match timeout(STEP, sevents.next()).await.unwrap() {
        Some(GameServerItem::Event(ServerEvent::Connected {
            peer,
            token: Some(_),
        })) => peer,
        other => panic!("{other:?}"),
    };
    assert_eq!(peer, client.local_addr());
    server.close(peer, "kicked by the test").await.unwrap();
    assert!(matches!(
        cevents.next().await,
        Some(GameClientItem::Event(ClientEvent::Connected { .. }))
    ));
    assert_eq!(
        timeout(STEP, cevents.next()).await.unwrap(),
        Some(GameClientItem::Close {
            reason: "kicked by the test".into()
        })
    );
    assert_eq!(
        cevents.next().await,
        Some(GameClientItem::Event(ClientEvent::Closed {
            cause: CloseCause::Peer
        }))
    );
    assert_eq!(
        timeout(STEP, sevents.next()).await.unwrap(),
        Some(GameServerItem::Event(ServerEvent::Closed {
            peer,
            cause: CloseCause::Local
        }))
    );

    let (second, mut cevents) = GameClient::connect(server.local_addr(), ClientConfig::new())
        .await
        .unwrap();
    assert!(matches!(
        timeout(STEP, sevents.next()).await.unwrap(),
        Some(GameServerItem::Event(ServerEvent::Connected { .. }))
    ));
    timeout(STEP, server.shutdown("server shutdown"))
        .await
        .unwrap()
        .unwrap();
    let mut reason = None;
    while let Some(item) = timeout(STEP, cevents.next()).await.unwrap() {
        if let GameClientItem::Close { reason: r } = item {
            reason = Some(r);
        }
    }
    assert_eq!(reason.as_deref(), Some("server shutdown"));
    // the cause, also once the client's task has ended
    assert_eq!(second.closed().await, Some(CloseCause::Peer));
    let mut last = None;
    while let Some(item) = timeout(STEP, sevents.next()).await.unwrap() {
        last = Some(item);
    }
    assert_eq!(
        last,
        Some(GameServerItem::Event(ServerEvent::ShutdownComplete))
    );
}

/// A flood from one spoofing host: junk (a reserved header bit), token CONNECTs (answered
/// statelessly, one CONNECT_ACCEPT of the same size each) and ACCEPTs with a guessed token, in
/// rounds; `GameServer::stats` shows each kind counted where it belongs, no peer and no event is
/// created, and a real client still gets in afterwards
#[tokio::test]
async fn a_spoofed_and_junk_flood_shows_in_the_stats_and_creates_no_peer() {
    use std::net::SocketAddr;
    use tether_net::game::wire::{Control, Token};
    use tether_net::game::Server;
    use tether_net::testing::control_packet;
    use tokio::net::UdpSocket;

    const ROUNDS: u64 = 5;
    const EACH: u64 = 20;
    let secret = TokenSecret([7; 16]);
    let (server, mut sevents) = GameServer::bind("127.0.0.1:0", ServerConfig::new(secret))
        .await
        .unwrap();
    let attacker = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    attacker.connect(server.local_addr()).await.unwrap();
    // the token the server would mint for the attacker's address, to be sure the guess is wrong
    let real = Server::<SocketAddr>::new(ServerConfig::new(secret))
        .token_for(attacker.local_addr().unwrap());
    let guess = Token(real.0.map(|b| b ^ 0x5A));
    let connect = control_packet(Control::Connect, Some(Token::UNKNOWN));
    let accept = control_packet(Control::Accept, Some(guess));
    let junk = [0x14u8, 0x00, 0x00, 0x00];
    let mut replies = 0u64;
    let mut buf = [0u8; 64];
    for round in 1..=ROUNDS {
        for _ in 0..EACH {
            attacker.send(&junk).await.unwrap();
            attacker.send(&connect).await.unwrap();
            attacker.send(&accept).await.unwrap();
        }
        // wait until the server has read the round (each kind in its counter)
        let deadline = std::time::Instant::now() + STEP;
        let st = loop {
            let st = server.stats().await.unwrap();
            if st.machine.dropped_malformed >= round * EACH
                && st.machine.dropped_wrong_token >= round * EACH
                && st.machine.connect_accepts_sent >= round * EACH
            {
                break st;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "round {round} not read within 5 s: {st:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(st.machine.dropped_malformed, round * EACH, "{st:?}");
        assert_eq!(st.machine.dropped_wrong_token, round * EACH, "{st:?}");
        assert_eq!(st.machine.connect_accepts_sent, round * EACH, "{st:?}");
        assert_eq!((st.peers, st.machine.peers_admitted), (0, 0), "{st:?}");
        // every datagram reached the machine; one reply per CONNECT left the socket
        assert_eq!(st.socket.received, 3 * round * EACH, "{st:?}");
        assert_eq!(
            (st.socket.sent, st.socket.send_errors),
            (round * EACH, 0),
            "{st:?}"
        );
        // every CONNECT was answered, never with more bytes than it had
        while replies < round * EACH {
            let n = timeout(STEP, attacker.recv(&mut buf))
                .await
                .expect("a CONNECT_ACCEPT for every CONNECT")
                .unwrap();
            assert!(n <= connect.len(), "{n} bytes for {}", connect.len());
            assert_eq!(buf[3], 0x02, "CONNECT_ACCEPT");
            replies += 1;
        }
    }
    // nothing else came back (no reply to junk or to a guessed ACCEPT), no event
    assert!(
        timeout(Duration::from_millis(200), attacker.recv(&mut buf))
            .await
            .is_err(),
        "an extra reply"
    );
    assert!(timeout(Duration::from_millis(200), sevents.next())
        .await
        .is_err());
    // a real client is still admitted
    let (client, _cevents) = timeout(
        STEP,
        GameClient::connect(server.local_addr(), ClientConfig::new()),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(matches!(
        timeout(STEP, sevents.next()).await.unwrap(),
        Some(GameServerItem::Event(ServerEvent::Connected { .. }))
    ));
    let st = server.stats().await.unwrap();
    assert_eq!((st.peers, st.machine.peers_admitted), (1, 1), "{st:?}");
    // the client's counters: its CONNECTs (resent on a timer, so one or more), nothing dropped
    let cs = client.stats().await.unwrap();
    assert!(
        cs.machine.connects_sent >= 1 && cs.machine.dropped_malformed == 0,
        "{cs:?}"
    );
    client.close("bye").await.unwrap();
}

/// The first datagram of a fresh socket goes out: the client's first CONNECT is answered, so a
/// client whose CONNECT resend is 10 s connects at once (the driver used to try the send before
/// the runtime knew the new socket was writable; the CONNECT was dropped and only the resend
/// got through, 500 ms later with the default interval)
#[tokio::test]
async fn the_first_connect_of_a_fresh_client_socket_is_sent() {
    let (server, mut sevents) =
        GameServer::bind("127.0.0.1:0", ServerConfig::new(TokenSecret([3; 16])))
            .await
            .unwrap();
    let config = ClientConfig::new().with_connect_resend(Duration::from_secs(10));
    let (client, _cevents) = timeout(
        Duration::from_secs(3),
        GameClient::connect(server.local_addr(), config),
    )
    .await
    .expect("connected without a resend")
    .unwrap();
    let cs = client.stats().await.unwrap();
    assert_eq!(cs.machine.connects_sent, 1, "{cs:?}");
    // the CONNECT and the ACCEPT went out, none was refused
    assert_eq!((cs.socket.sent, cs.socket.send_errors), (2, 0), "{cs:?}");
    assert_eq!(cs.socket.received, 1, "the CONNECT_ACCEPT: {cs:?}");
    assert!(matches!(
        timeout(STEP, sevents.next()).await.unwrap(),
        Some(GameServerItem::Event(ServerEvent::Connected { .. }))
    ));
    let st = server.stats().await.unwrap();
    assert_eq!(
        (st.peers, st.machine.connect_accepts_sent),
        (1, 1),
        "{st:?}"
    );
    client.close("bye").await.unwrap();
}

/// Server browsers' info requests: unanswered until `GameServer::set_info`, then answered in
/// the form asked for (`inf3` for a vanilla `gie3`, `iext` with the map CRC for the extended
/// one) with the counts of the client list; a spoofed request flood is bounded by the machine's
/// `info_replies_per_second` (the rest counted in `dropped_info_flood`); `set_info(None)` stops
/// the answers
#[tokio::test]
async fn the_tokio_game_server_answers_info_requests_once_told_what_to_say() {
    use tether_net::game::connless::{InfoKind, InfoRequest, InfoRequestKind, ServerInfo};
    use tether_net_drivers::tokio::{GameServerInfo, GameServerInfoClient};
    use tokio::net::UdpSocket;

    let config = ServerConfig::new(TokenSecret([5; 16])).with_info_replies_per_second(20);
    let (server, _sevents) = GameServer::bind("127.0.0.1:0", config).await.unwrap();
    let browser = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    browser.connect(server.local_addr()).await.unwrap();
    let request = |extended, token| {
        let mut b = [0u8; InfoRequest::LEN];
        InfoRequest {
            kind: InfoRequestKind::Info,
            extended,
            token,
        }
        .emit(&mut b)
        .unwrap();
        b
    };
    let mut buf = [0u8; 2048];
    let quiet = Duration::from_millis(200);
    // nothing to say yet: no answer, the request counted
    browser.send(&request(false, 0x42)).await.unwrap();
    assert!(timeout(quiet, browser.recv(&mut buf)).await.is_err());
    assert_eq!(server.stats().await.unwrap().machine.info_requests, 1);

    let info = GameServerInfo {
        version: "0.6.4, tether".into(),
        name: "tokio test server".into(),
        map: "dm1".into(),
        map_crc: 0xDEAD_BEEF,
        map_size: 5805,
        game_type: "DM".into(),
        flags: 0,
        max_players: 8,
        max_clients: 16,
        clients: vec![
            GameServerInfoClient {
                name: "alice".into(),
                clan: "t".into(),
                country: -1,
                score: 3,
                is_player: true,
            },
            GameServerInfoClient {
                name: "bob".into(),
                clan: String::new(),
                country: 276,
                score: 0,
                is_player: false,
            },
        ],
    };
    server.set_info(Some(info)).await.unwrap();
    browser.send(&request(false, 0x42)).await.unwrap();
    let n = timeout(STEP, browser.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let a = ServerInfo::parse(&buf[..n]).unwrap();
    assert_eq!(a.kind, InfoKind::Vanilla);
    assert_eq!(a.token, 0x42);
    assert_eq!(a.name.as_str(), Some("tokio test server"));
    assert_eq!(a.map.as_str(), Some("dm1"));
    assert_eq!((a.num_players, a.max_players), (1, 8));
    assert_eq!((a.num_clients, a.max_clients), (2, 16));
    let names: Vec<_> = a.clients.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, [Some("alice"), Some("bob")]);
    // the extended form carries the map CRC and the 24-bit token
    browser.send(&request(true, 0x12_3456)).await.unwrap();
    let n = timeout(STEP, browser.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let a = ServerInfo::parse(&buf[..n]).unwrap();
    assert_eq!(a.token, 0x12_3456);
    assert!(
        matches!(
            a.kind,
            InfoKind::Extended {
                map_crc: 0xDEAD_BEEF,
                map_size: 5805,
                ..
            }
        ),
        "{:?}",
        a.kind
    );
    // a flood of 100 requests within a second: at most 20 requests a second are answered (3
    // were counted in this window already, so 17 here unless the window ran out meanwhile)
    for t in 0..100u32 {
        browser.send(&request(false, t)).await.unwrap();
    }
    let mut answers = 0;
    while timeout(quiet, browser.recv(&mut buf)).await.is_ok() {
        answers += 1;
    }
    let st = server.stats().await.unwrap();
    assert_eq!(st.machine.info_requests, 103, "{st:?}");
    assert!(answers <= 20, "{answers} answers past the limit");
    assert_eq!(st.machine.dropped_info_flood, 100 - answers, "{st:?}");
    // no more answers once the info is withdrawn
    tokio::time::sleep(Duration::from_millis(1100)).await;
    server.set_info(None).await.unwrap();
    browser.send(&request(false, 7)).await.unwrap();
    assert!(timeout(quiet, browser.recv(&mut buf)).await.is_err());
}

/// The rest of the handles' API over loopback: chunk packets both ways (the largest a packet
/// holds, and one byte more refused with `TooLong`), `send` to an unknown peer refused, the
/// client closing with a reason (the server sees it, `closed()` reports it), a client whose
/// handles are all dropped closing itself ("client dropped"), and a server whose handles are
/// all dropped shutting down ("server stopped", seen by its client)
#[tokio::test]
async fn chunks_both_ways_and_every_way_to_close() {
    use tether_net::game::wire::Flags;
    use tether_net::game::Error;
    use tether_net_drivers::tokio::DriverError;

    // the payload a 1,400-byte datagram holds after the 3-byte header and the 4-byte token
    const MOST: usize = 1400 - 3 - 4;
    let (server, mut sevents) =
        GameServer::bind("127.0.0.1:0", ServerConfig::new(TokenSecret([1; 16])))
            .await
            .unwrap();
    assert!(format!("{server:?}").contains("GameServer"));
    let connected = |item| match item {
        Some(GameServerItem::Event(ServerEvent::Connected { peer, .. })) => peer,
        other => panic!("{other:?}"),
    };
    let (client, mut cevents) = GameClient::connect(server.local_addr(), ClientConfig::new())
        .await
        .unwrap();
    assert!(format!("{client:?}").contains("GameClient"));
    // a client of 127.0.0.1 sends from 127.0.0.1
    assert_eq!(client.local_addr().ip(), std::net::Ipv4Addr::LOCALHOST);
    let peer = connected(timeout(STEP, sevents.next()).await.unwrap());
    assert!(matches!(
        timeout(STEP, cevents.next()).await.unwrap(),
        Some(GameClientItem::Event(ClientEvent::Connected { .. }))
    ));
    let up: Vec<u8> = (0..MOST).map(|i| i as u8).collect();
    client.send(Flags::default(), 3, &up).await.unwrap();
    match timeout(STEP, sevents.next()).await.unwrap() {
        Some(GameServerItem::Chunks {
            peer: from,
            header,
            payload,
        }) => {
            assert_eq!((from, header.num_chunks), (peer, 3));
            assert_eq!(payload, up);
        }
        other => panic!("{other:?}"),
    }
    let down = b"\x40\x05\x01hello".to_vec();
    server.send(peer, Flags::default(), 1, &down).await.unwrap();
    match timeout(STEP, cevents.next()).await.unwrap() {
        Some(GameClientItem::Chunks { header, payload }) => {
            assert_eq!((header.num_chunks, payload), (1, down.clone()));
        }
        other => panic!("{other:?}"),
    }
    // one byte more than a datagram holds, and a peer that is not there
    let too_long = vec![0u8; MOST + 1];
    assert!(matches!(
        client.send(Flags::default(), 1, &too_long).await,
        Err(DriverError::Game(Error::TooLong { .. }))
    ));
    assert!(matches!(
        server.send(peer, Flags::default(), 1, &too_long).await,
        Err(DriverError::Game(Error::TooLong { .. }))
    ));
    let nobody: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    assert!(matches!(
        server.send(nobody, Flags::default(), 1, &down).await,
        Err(DriverError::Game(_))
    ));
    // the client closes with a reason
    client.close("see you").await.unwrap();
    assert_eq!(
        timeout(STEP, sevents.next()).await.unwrap(),
        Some(GameServerItem::Close {
            peer,
            reason: "see you".into()
        })
    );
    assert_eq!(
        timeout(STEP, sevents.next()).await.unwrap(),
        Some(GameServerItem::Event(ServerEvent::Closed {
            peer,
            cause: CloseCause::Peer
        }))
    );
    assert_eq!(client.closed().await, Some(CloseCause::Local));
    // after the end the handle reports the task gone
    drop(cevents);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(matches!(
        client.send(Flags::default(), 1, &down).await,
        Err(DriverError::Stopped)
    ));

    // a client nobody holds any more closes itself
    let (dropped, dropped_events) = GameClient::connect(server.local_addr(), ClientConfig::new())
        .await
        .unwrap();
    let peer2 = connected(timeout(STEP, sevents.next()).await.unwrap());
    drop((dropped, dropped_events));
    assert_eq!(
        timeout(STEP, sevents.next()).await.unwrap(),
        Some(GameServerItem::Close {
            peer: peer2,
            reason: "client dropped".into()
        })
    );
    assert!(matches!(
        timeout(STEP, sevents.next()).await.unwrap(),
        Some(GameServerItem::Event(ServerEvent::Closed { .. }))
    ));

    // a server nobody holds any more shuts down; its client hears why
    let (last, mut last_events) = GameClient::connect(server.local_addr(), ClientConfig::new())
        .await
        .unwrap();
    let _ = connected(timeout(STEP, sevents.next()).await.unwrap());
    assert!(matches!(
        timeout(STEP, last_events.next()).await.unwrap(),
        Some(GameClientItem::Event(ClientEvent::Connected { .. }))
    ));
    drop(server);
    assert_eq!(
        timeout(STEP, last_events.next()).await.unwrap(),
        Some(GameClientItem::Close {
            reason: "server stopped".into()
        })
    );
    assert_eq!(
        timeout(STEP, last.closed()).await.unwrap(),
        Some(CloseCause::Peer)
    );
    // the server's stream ends after its last event
    let mut tail = Vec::new();
    while let Some(item) = timeout(STEP, sevents.next()).await.unwrap() {
        tail.push(item);
    }
    assert!(
        matches!(
            tail.last(),
            Some(GameServerItem::Event(ServerEvent::ShutdownComplete))
        ),
        "{tail:?}"
    );
}

/// Nobody answers: `connect` ends with the machine's connect timeout, as an error that says so
#[tokio::test]
async fn connect_to_a_silent_port_times_out_with_a_readable_error() {
    use tether_net_drivers::tokio::GameConnectError;

    // a UDP port that is bound and never answers
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let config = ClientConfig::new()
        .with_connect_resend(Duration::from_millis(50))
        .with_connect_timeout(Duration::from_millis(300));
    let r = timeout(
        STEP,
        GameClient::connect(silent.local_addr().unwrap(), config),
    )
    .await
    .expect("gave up within the timeout");
    let e = match r {
        Err(e @ GameConnectError::Closed(CloseCause::ConnectTimeout)) => e,
        other => panic!("{:?}", other.map(|_| ())),
    };
    assert_eq!(e.to_string(), "closed before connecting: ConnectTimeout");
    // and the CONNECTs did reach the port (the resends included)
    let mut buf = [0u8; 64];
    let n = silent.try_recv(&mut buf).expect("a CONNECT arrived");
    assert_eq!(buf[3], 0x01, "CONNECT: {:02x?}", &buf[..n]);
}
