//! Game section of the demo: one server, two DDNet token clients, a seeded lossy link
//!
//! Client 1 connects (its first CONNECT is lost, so the 500 ms resend shows up), trades a chunk
//! packet with the server, idles through a few keep-alives and closes with a reason. Client 2
//! connects and the server closes it. Then a client with the chunk layer (`Reliable`) sends a
//! vital INFO whose packet is lost and resent, the server answers MAP_CHANGE, and a non-vital
//! snapshot goes out compressed. Every datagram is one line; events and what the machines hand
//! to the application (chunk payloads, CLOSE reasons, delivered chunks) are printed under the
//! datagram that caused them.

use std::cell::RefCell;
use std::rc::Rc;

use tether_net::game::chunk::{decompress_packet, Chunks, SCRATCH_LEN};
use tether_net::game::msg::{Info, MapChange, Message, SnapSingle, VERSION_0_6};
use tether_net::game::packer::Str;
use tether_net::game::wire::{self, Control, Packet, TokenMode};
use tether_net::game::{
    ChunkConfig, Client, ClientApp, ClientConfig, ClientEvent, CloseCause, Flags, Reliable, Server,
    ServerApp, ServerConfig, ServerEvent, Token, TokenSecret,
};
use tether_net::testing::{Direction, Fleet, LinkConfig, Pair, TraceEntry};
use tether_net::{Duration, FrameKind};

/// Seed of the link's randomness: with it, client 1's first CONNECT and a keep-alive are lost
const SEED: u64 = 26;
/// Datagram loss probability of every link
const LOSS: f64 = 0.1;

type Demo = Fleet<Client, Server<u32, 4>>;

fn hex4(t: Token) -> String {
    t.0.iter().map(|b| format!("{b:02x}")).collect()
}

/// The message name of one datagram, as the receiver's decoder sees it
fn name(bytes: &[u8]) -> String {
    // no connection state here: the structural rules DDNet uses find the tokens
    let parsed = match wire::parse(bytes, TokenMode::Detect) {
        Ok(p) => p,
        Err(e) => return format!("malformed ({e})"),
    };
    match parsed.packet {
        Packet::Control(c) => match (c.control, c.token) {
            (Control::Connect, Some(_)) => "CONNECT (token form)".into(),
            (Control::Connect, None) => "CONNECT (vanilla)".into(),
            (Control::ConnectAccept, Some(t)) => format!("CONNECT_ACCEPT token {}", hex4(t)),
            (Control::ConnectAccept, None) => "CONNECT_ACCEPT (vanilla)".into(),
            (Control::Accept, _) => "ACCEPT".into(),
            (Control::KeepAlive, _) => "KEEP_ALIVE".into(),
            (Control::Close(r), _) if r.is_empty() => "CLOSE".into(),
            (Control::Close(r), _) => format!("CLOSE {:?}", r.text().to_string()),
        },
        // the demo's connections all use a token: the last 4 bytes are not payload
        Packet::Chunks(_) => match wire::parse(bytes, TokenMode::Trailing) {
            Ok(wire::Parsed {
                packet: Packet::Chunks(c),
                ..
            }) => format!(
                "chunks (n={}, {} bytes)",
                c.header.num_chunks,
                c.payload.len()
            ),
            _ => "chunks (no token)".into(),
        },
    }
}

fn client_event(i: usize, e: &ClientEvent) -> String {
    match e {
        ClientEvent::Connected { token: Some(t) } => {
            format!("client {i} Connected (token {})", hex4(*t))
        }
        ClientEvent::Connected { token: None } => format!("client {i} Connected (no token)"),
        ClientEvent::Closed { cause } => format!("client {i} Closed ({})", cause_name(*cause)),
        other => format!("client {i} {other:?}"),
    }
}

fn cause_name(cause: CloseCause) -> &'static str {
    match cause {
        CloseCause::Local => "local",
        CloseCause::Shutdown => "shutdown",
        CloseCause::Peer => "by the peer",
        CloseCause::Timeout => "timeout",
        CloseCause::ConnectTimeout => "connect timeout",
        _ => "other",
    }
}

fn server_event(e: &ServerEvent<u32>) -> String {
    match e {
        ServerEvent::Connected { peer, token } => match token {
            Some(t) => format!("server Connected {peer} (token {})", hex4(*t)),
            None => format!("server Connected {peer} (no token)"),
        },
        ServerEvent::Closed { peer, cause } => {
            format!("server Closed {peer} ({})", cause_name(*cause))
        }
        ServerEvent::ShutdownComplete => "server ShutdownComplete".into(),
        other => format!("server {other:?}"),
    }
}

/// What a machine handed to the application from one datagram, borrowed from it
fn app_line(who: &str, from: &str, chunks: Option<&[u8]>, reason: Option<String>) -> String {
    match (chunks, reason) {
        (Some(payload), _) => format!(
            "   app:   {who} got {:?}{from} (borrowed from the datagram)",
            String::from_utf8_lossy(payload)
        ),
        (None, Some(reason)) => format!("   app:   {who} got the CLOSE reason {reason:?}{from}"),
        (None, None) => format!("   app:   {who} got something new{from}"),
    }
}

/// Send one chunk packet (one chunk) from client `i`: `send_chunks` writes it into our buffer
/// and we hand it to the link, as an application hands it to its socket
fn client_says(f: &mut Demo, i: usize, payload: &[u8]) {
    let now = f.now();
    let mut buf = [0u8; 1400];
    let t = f
        .client_mut(i)
        .send_chunks(now, Flags::default(), 1, payload, &mut buf)
        .expect("online");
    f.send_from_client(i, t.kind, &buf[..t.len]);
}

/// Send one chunk packet from the server to `peer`
fn server_says(f: &mut Demo, peer: u32, payload: &[u8]) {
    let now = f.now();
    let mut buf = [0u8; 1400];
    let t = f
        .server_mut()
        .send_chunks(now, peer, Flags::default(), 1, payload, &mut buf)
        .expect("online");
    f.send_from_server(t.to, t.kind, &buf[..t.len]);
}

/// Run the game timeline
pub fn run() {
    let server = Server::with_capacities(ServerConfig::new(TokenSecret(*b"demo secret 0001")));
    // DDNet's keep-alive interval (1 s) instead of the 250 ms default keeps the output short
    let config = ClientConfig::new().with_keep_alive(Duration::from_secs(1));
    let link = LinkConfig::lossy(LOSS).with_latency(Duration::from_millis(15));
    let mut f: Demo = Fleet::new(
        server,
        2,
        |_| Client::new(config),
        |i| i as u32 + 1,
        link,
        SEED,
    );
    // A received chunk payload is seen while the datagram is handed over, before the datagram's
    // own line is printed: keep it until then.
    let app_lines: Rc<RefCell<Vec<String>>> = Rc::default();
    let pending = app_lines.clone();
    f.set_observer(move |e: &TraceEntry<'_>| {
        let who = e.client.map_or(String::new(), |i| format!("[{}] ", i + 1));
        crate::line(e, &format!("{who}{}", name(e.bytes)));
        for l in pending.borrow_mut().drain(..) {
            println!("{l}");
        }
    });
    f.on_client_event(|i, e| println!("   event: {}", client_event(i + 1, e)));
    f.on_server_event(|_, e| println!("   event: {}", server_event(e)));
    let lines = app_lines.clone();
    f.on_server_app(move |i, app: &ServerApp<'_>| {
        lines.borrow_mut().push(app_line(
            "server",
            &format!(" from client {}", i + 1),
            app.chunks().map(|c| c.payload),
            app.close_reason().map(|r| r.to_string()),
        ))
    });
    f.on_client_app(move |i, app: &ClientApp<'_>| {
        app_lines.borrow_mut().push(app_line(
            &format!("client {}", i + 1),
            "",
            app.chunks().map(|c| c.payload),
            app.close_reason().map(|r| r.to_string()),
        ))
    });
    f.keep_events(false);

    println!(
        "-- client 1 connects; the link loses {LOSS:.0}% of datagrams (seed {SEED})",
        LOSS = LOSS * 100.0
    );
    let now = f.now();
    f.client_mut(0).connect(now).expect("fresh client");
    f.run_until(|f| f.server().is_online(1), Duration::from_secs(10))
        .expect("client 1 admitted");

    println!("-- a chunk packet each way, then idle");
    client_says(&mut f, 0, b"hello");
    f.run_for(Duration::from_millis(50));
    server_says(&mut f, 1, b"welcome");
    f.run_for(Duration::from_millis(2_600));

    println!("-- client 1 closes with a reason");
    let now = f.now();
    f.client_mut(0).close(now, "bye").expect("online");
    f.run_for(Duration::from_millis(100));

    println!("-- client 2 connects and the server closes it");
    let now = f.now();
    f.client_mut(1).connect(now).expect("fresh client");
    f.run_until(|f| f.server().is_online(2), Duration::from_secs(10))
        .expect("client 2 admitted");
    f.run_for(Duration::from_millis(1_100));
    let now = f.now();
    f.server_mut()
        .close(now, 2, "Kicked (demo)")
        .expect("client 2 is a peer");
    f.run_for(Duration::from_millis(100));
    let s = f.server().stats();
    println!(
        "-- server: {} admitted, {} CONNECT_ACCEPTs, {} keep-alives sent; {} peers left",
        s.peers_admitted,
        s.connect_accepts_sent,
        s.keep_alives_sent,
        f.server().peer_count()
    );
}

// ---------------------------------------------------------------------------------------------
// The chunk layer: vital chunks, a loss repaired by a resend, a compressed packet

type ChunkClient = Client<4, Reliable<4096, 16, 4096, 16>>;
type ChunkServer = Server<u32, 4, 16, Reliable<4096, 16, 4096, 16>>;

/// What the chunks of one datagram are, as its receiver reads them (token known: `token`)
fn chunk_names(bytes: &[u8], token: Option<Token>) -> String {
    let mut scratch = [0u8; SCRATCH_LEN];
    let compressed = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let Ok(plain) = decompress_packet(bytes, &mut scratch) else {
        return "undecodable".into();
    };
    let mode = if token.is_some() {
        TokenMode::Trailing
    } else {
        TokenMode::Detect
    };
    let c = match wire::parse(plain, mode) {
        Ok(wire::Parsed {
            packet: Packet::Chunks(c),
            ..
        }) => c,
        _ => return name(bytes),
    };
    let mut parts: Vec<String> = Chunks::new(c.payload, c.header.num_chunks)
        .filter_map(Result::ok)
        .map(|ch| {
            let what = match Message::parse(ch.data) {
                Ok(Message::Info(_)) => "INFO".to_string(),
                Ok(Message::MapChange(m)) => format!("MAP_CHANGE {}", m.name.to_text::<32>()),
                Ok(Message::SnapSingle(s)) => format!("SNAPSINGLE tick {}", s.tick),
                Ok(other) => format!("{:?}", other.header().id),
                Err(_) => "?".into(),
            };
            match (ch.flags.vital, ch.flags.resend) {
                (true, true) => format!("{what} (vital {}, RESENT)", ch.seq),
                (true, false) => format!("{what} (vital {})", ch.seq),
                _ => what,
            }
        })
        .collect();
    if parts.is_empty() {
        parts.push(format!("ack {}", c.header.ack));
    }
    let how = if compressed {
        format!("compressed {} -> {} B: ", plain.len(), bytes.len())
    } else {
        String::new()
    };
    format!("{how}{}", parts.join(", "))
}

/// Run the chunk-layer timeline
pub fn run_chunks() {
    let config = ChunkConfig::new();
    let client: ChunkClient = Client::with_chunks(
        ClientConfig::new().with_keep_alive(Duration::from_secs(1)),
        config,
    );
    let server: ChunkServer =
        Server::with_chunks(ServerConfig::new(TokenSecret(*b"demo secret 0002")), config);
    let link = LinkConfig::perfect().with_latency(Duration::from_millis(15));
    let mut p = Pair::new(Box::new(client), Box::new(server), 9, link, SEED);
    let token: Rc<RefCell<Option<Token>>> = Rc::default();
    let tok = token.clone();
    let app_lines: Rc<RefCell<Vec<String>>> = Rc::default();
    let pending = app_lines.clone();
    p.set_observer(move |e: &TraceEntry<'_>| {
        let text = if e.bytes.first().is_some_and(|b| b & 0x10 != 0) {
            name(e.bytes)
        } else {
            chunk_names(e.bytes, *tok.borrow())
        };
        crate::line(e, &text);
        for l in pending.borrow_mut().drain(..) {
            println!("{l}");
        }
    });
    let lines = app_lines.clone();
    p.answer_server_app(move |s, now, app| {
        if !matches!(app, ServerApp::ChunksReady) {
            return;
        }
        let mut got = Vec::new();
        while let Some((_, chunk)) = s.poll_chunk() {
            got.push(chunk.data.to_vec());
        }
        for data in got {
            if let Ok(Message::Info(_)) = Message::parse(&data) {
                lines
                    .borrow_mut()
                    .push("   app:   server got INFO (vital, in order, once)".into());
                let mut buf = [0u8; 64];
                let n = MapChange {
                    name: Str::new("Tutorial"),
                    crc: 0x8d4c6486,
                    size: 1_082_711,
                }
                .emit(&mut buf)
                .expect("fits");
                s.send_vital(now, 9, &buf[..n], true).expect("queued");
            }
        }
    });
    let lines = app_lines.clone();
    p.answer_client_app(move |c, _, app| {
        if !matches!(app, ClientApp::ChunksReady) {
            return;
        }
        while let Some(chunk) = c.poll_chunk() {
            let what = match Message::parse(chunk.data) {
                Ok(Message::MapChange(m)) => format!("MAP_CHANGE {}", m.name.to_text::<32>()),
                Ok(Message::SnapSingle(s)) => format!("SNAPSINGLE tick {}", s.tick),
                _ => "a chunk".into(),
            };
            lines.borrow_mut().push(format!(
                "   app:   client got {what} ({}, borrowed from the client)",
                if chunk.flags.vital {
                    "vital"
                } else {
                    "non-vital"
                }
            ));
        }
    });
    p.on_client_event(|e| println!("   event: {}", client_event(1, e)));
    p.on_server_event(|e| println!("   event: {}", server_event(e)));
    // the client's first chunk packet (its INFO) is lost on the way
    let mut first = true;
    p.set_drop_filter(Direction::ClientToServer, move |bytes| {
        let chunks = bytes.first().is_some_and(|b| b & 0x10 == 0);
        let drop = chunks && first;
        first &= !chunks;
        drop
    });

    println!(
        "-- a client with the chunk layer connects and sends INFO (vital); the packet is lost"
    );
    let now = p.now();
    p.client_mut().connect(now).expect("fresh client");
    p.run_until(|p| p.server().is_online(9), Duration::from_secs(5))
        .expect("online");
    *token.borrow_mut() = p.client().token();
    let mut buf = [0u8; 64];
    let n = Info {
        version: Str::new(VERSION_0_6),
        password: Str::EMPTY,
    }
    .emit(&mut buf)
    .expect("fits");
    let now = p.now();
    p.client_mut()
        .send_vital(now, &buf[..n], true)
        .expect("online");
    p.fleet_mut().drain();
    println!("-- 1 s later (DDNet's resend timer) the client sends it again, flagged as a resend");
    p.run_for(Duration::from_millis(1_500));
    println!("-- a snapshot-like non-vital chunk of mostly zero bytes goes out Huffman-compressed");
    let now = p.now();
    let mut snap = [0u8; 128];
    let n = SnapSingle {
        tick: 100,
        delta: 101,
        crc: 0,
        data: &[0u8; 64],
    }
    .emit(&mut snap)
    .expect("fits");
    let mut out = [0u8; 1400];
    let t = p
        .server_mut()
        .send_non_vital(now, 9, &snap[..n], &mut out)
        .expect("online");
    p.send_from_server(FrameKind::Datagram, &out[..t.len]);
    p.run_for(Duration::from_millis(100));
    let c = p.client().chunk_stats();
    println!(
        "-- client channel: {} vital chunk sent, {} resent; server channel: {} delivered",
        c.sent,
        c.resent,
        p.server().chunk_stats(9).map(|s| s.delivered).unwrap_or(0)
    );
}
