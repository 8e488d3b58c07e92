//! Parse and emit of every wire type: game header / control / chunk packets in each token mode,
//! LongPort headers and packets (request, response, push; with and without signature)
//!
//! Run: `cargo bench --bench codec -- --warm-up-time 1 --measurement-time 3`
//! then `python3 benches/report.py` for the table.

// criterion_group! generates undocumented public functions
#![allow(missing_docs)]

use core::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use tether_net::game::wire::{
    self as gw, ChunkPacket, Control, ControlPacket, Flags, Reason, Token, TokenMode,
};
use tether_net::longport::deframe::{decode_message, Handshake, WsParams};
use tether_net::longport::wire::{
    self as lw, Packet, RequestId, Signature, Status, DEFAULT_MAX_BODY,
};

const TOKEN: Token = Token([0x12, 0x34, 0x56, 0x78]);

/// Emit `p` into a fresh vector of exactly its length
fn control_bytes(p: &ControlPacket<'_>) -> Vec<u8> {
    let mut v = vec![0u8; p.buffer_len()];
    let n = p.emit(&mut v).expect("sized");
    v.truncate(n);
    v
}

fn chunk_bytes(p: &ChunkPacket<'_>) -> Vec<u8> {
    let mut v = vec![0u8; p.buffer_len()];
    let n = p.emit(&mut v).expect("sized");
    v.truncate(n);
    v
}

fn game_header(c: &mut Criterion) {
    let mut g = c.benchmark_group("game_header");
    let h = gw::Header {
        flags: Flags {
            compression: false,
            resend: true,
            control: false,
        },
        ack: 777,
        num_chunks: 3,
    };
    let bytes = h.to_bytes();
    g.bench_function("parse", |b| {
        b.iter(|| gw::Header::parse(black_box(&bytes[..])))
    });
    let mut out = [0u8; 3];
    g.bench_function("emit", |b| {
        b.iter(|| black_box(&h).emit(black_box(&mut out[..])))
    });
    g.finish();
}

fn game_control(c: &mut Criterion) {
    let mut g = c.benchmark_group("game_control");
    let reason = Reason::from_str("kicked by an admin for flooding the chat");
    // (name, packet with token as the token form sends it, packet without token)
    let cases: [(&str, Control<'_>); 6] = [
        ("keep_alive", Control::KeepAlive),
        ("connect", Control::Connect),
        ("connect_accept", Control::ConnectAccept),
        ("accept", Control::Accept),
        ("close_bye", Control::Close(Reason::from_str("bye"))),
        ("close_reason", Control::Close(reason)),
    ];
    let mut floor_buf = [0u8; gw::MAX_PACKET_LEN];
    for (name, control) in cases {
        let token = match control {
            Control::Connect => Token::UNKNOWN,
            _ => TOKEN,
        };
        let tokened = ControlPacket {
            ack: 513,
            control,
            token: Some(token),
        };
        let vanilla = ControlPacket {
            ack: 513,
            control,
            token: None,
        };
        let tok_bytes = control_bytes(&tokened);
        let van_bytes = control_bytes(&vanilla);
        // the floor of any parse: the same datagram copied out of the caller's receive buffer
        g.bench_with_input(
            BenchmarkId::new("copy_floor", name),
            &tok_bytes,
            |b, bytes| {
                b.iter(|| {
                    let src = black_box(&bytes[..]);
                    floor_buf[..src.len()].copy_from_slice(src);
                    black_box(&floor_buf);
                })
            },
        );
        for (mode_name, mode, bytes) in [
            ("vanilla", TokenMode::Vanilla, &van_bytes),
            ("trailing", TokenMode::Trailing, &tok_bytes),
            ("detect", TokenMode::Detect, &tok_bytes),
        ] {
            // the Trailing reading of a CONNECT with magic keeps the magic as extra data, which is fine
            let parsed = gw::parse(bytes, mode).expect("valid");
            assert!(matches!(parsed.packet, gw::Packet::Control(_)));
            g.bench_with_input(
                BenchmarkId::new(format!("parse_{mode_name}"), name),
                bytes,
                |b, bytes| b.iter(|| gw::parse(black_box(&bytes[..]), black_box(mode))),
            );
        }
        // what the server's hot path reads: ack, token, message kind and warnings
        g.bench_with_input(
            BenchmarkId::new("parse_trailing_fields", name),
            &tok_bytes,
            |b, bytes| {
                b.iter(|| receive_fields(black_box(&bytes[..]), black_box(TokenMode::Trailing)))
            },
        );
        let mut out = [0u8; gw::MAX_PACKET_LEN];
        for (form, p) in [("token", tokened), ("vanilla", vanilla)] {
            g.bench_function(BenchmarkId::new(format!("emit_{form}"), name), |b| {
                b.iter(|| black_box(&p).emit(black_box(&mut out[..])))
            });
        }
    }
    g.finish();
}

/// Parse and keep only what a connection's receive path looks at (ack, token, kind, warnings),
/// folded into one integer the way a caller uses them: in registers (returning them as a tuple
/// would add a store/reload of the tuple to the measurement)
fn receive_fields(bytes: &[u8], mode: TokenMode) -> u64 {
    let Ok(parsed) = gw::parse(bytes, mode) else {
        return u64::MAX;
    };
    let (ack, token, kind) = match parsed.packet {
        gw::Packet::Control(c) => (c.ack, c.token, c.control.id() as u8),
        gw::Packet::Chunks(c) => (c.header.ack, c.token, u8::MAX),
    };
    let token = token.map_or(0, |t| u64::from(u32::from_le_bytes(t.0)) | 1 << 32);
    token | u64::from(ack) << 33 | u64::from(kind) << 43 | u64::from(parsed.warnings.bits()) << 51
}

fn game_chunk(c: &mut Criterion) {
    let mut g = c.benchmark_group("game_chunk");
    let payload: Vec<u8> = (0..200u32).map(|i| (i * 7) as u8).collect();
    let header = gw::Header {
        flags: Flags::default(),
        ack: 42,
        num_chunks: 4,
    };
    let tokened = ChunkPacket {
        header,
        payload: &payload,
        token: Some(TOKEN),
    };
    let vanilla = ChunkPacket {
        header,
        payload: &payload,
        token: None,
    };
    let tok_bytes = chunk_bytes(&tokened);
    let van_bytes = chunk_bytes(&vanilla);
    for (mode_name, mode, bytes) in [
        ("vanilla", TokenMode::Vanilla, &van_bytes),
        ("trailing", TokenMode::Trailing, &tok_bytes),
        ("detect", TokenMode::Detect, &tok_bytes),
    ] {
        assert!(matches!(
            gw::parse(bytes, mode).expect("valid").packet,
            gw::Packet::Chunks(_)
        ));
        g.bench_with_input(
            BenchmarkId::new("parse_200B", mode_name),
            bytes,
            |b, bytes| b.iter(|| gw::parse(black_box(&bytes[..]), black_box(mode))),
        );
    }
    g.bench_with_input(
        BenchmarkId::new("parse_200B_fields", "trailing"),
        &tok_bytes,
        |b, bytes| b.iter(|| receive_fields(black_box(&bytes[..]), black_box(TokenMode::Trailing))),
    );
    let mut out = [0u8; gw::MAX_PACKET_LEN];
    for (form, p) in [("token", tokened), ("vanilla", vanilla)] {
        g.bench_function(BenchmarkId::new("emit_200B", form), |b| {
            b.iter(|| black_box(&p).emit(black_box(&mut out[..])))
        });
    }
    g.finish();
}

const SIG: Signature = Signature {
    nonce: [1, 2, 3, 4, 5, 6, 7, 8],
    signature: [9; 16],
};

fn lp_packets(body: &[u8]) -> [(&'static str, Packet<'_>); 6] {
    let req = Packet::request(100, RequestId(0x0102_0304), 5_000, body);
    let resp = Packet::response(100, RequestId(0x0102_0304), Status::Success, body);
    let push = Packet::push(101, body);
    [
        ("request", req),
        ("request_signed", req.with_signature(Some(SIG))),
        ("response", resp),
        ("response_signed", resp.with_signature(Some(SIG))),
        ("push", push),
        ("push_signed", push.with_signature(Some(SIG))),
    ]
}

fn lp_bytes(p: &Packet<'_>) -> Vec<u8> {
    let mut v = vec![0u8; p.buffer_len()];
    let n = p.emit(&mut v).expect("sized");
    v.truncate(n);
    v
}

fn lp_header(c: &mut Criterion) {
    let mut g = c.benchmark_group("lp_header");
    let body = [0u8; 64];
    for (name, p) in lp_packets(&body).into_iter().step_by(2) {
        let bytes = lp_bytes(&p);
        let (h, n) = lw::Header::parse(&bytes, DEFAULT_MAX_BODY).expect("valid");
        assert_eq!((h, n), (p.wire_header(), p.header.len()));
        g.bench_with_input(BenchmarkId::new("parse", name), &bytes, |b, bytes| {
            b.iter(|| lw::Header::parse(black_box(&bytes[..]), black_box(DEFAULT_MAX_BODY)))
        });
        let mut out = [0u8; 16];
        g.bench_function(BenchmarkId::new("emit", name), |b| {
            b.iter(|| black_box(&h).emit(black_box(&mut out[..])))
        });
    }
    g.finish();
}

fn lp_packet(c: &mut Criterion) {
    let mut g = c.benchmark_group("lp_packet");
    let body: Vec<u8> = (0..64u32).map(|i| i as u8).collect();
    let mut out = vec![0u8; 1024];
    for (name, p) in lp_packets(&body) {
        let bytes = lp_bytes(&p);
        let (back, n) = Packet::parse(&bytes, DEFAULT_MAX_BODY).expect("valid");
        assert_eq!((back, n), (p, bytes.len()));
        g.bench_with_input(BenchmarkId::new("parse_64B", name), &bytes, |b, bytes| {
            b.iter(|| Packet::parse(black_box(&bytes[..]), black_box(DEFAULT_MAX_BODY)))
        });
        g.bench_function(BenchmarkId::new("emit_64B", name), |b| {
            b.iter(|| black_box(&p).emit(black_box(&mut out[..])))
        });
    }
    g.finish();
}

/// The transport-level types: TCP handshake, WebSocket message, upgrade query
fn lp_transport(c: &mut Criterion) {
    let mut g = c.benchmark_group("lp_transport");
    let hs = Handshake::OPENAPI.to_bytes();
    g.bench_function("handshake_parse", |b| {
        b.iter(|| Handshake::parse(black_box(&hs[..])))
    });
    let mut out = [0u8; 64];
    g.bench_function("handshake_emit", |b| {
        b.iter(|| black_box(&Handshake::OPENAPI).emit(black_box(&mut out[..])))
    });
    let body = [7u8; 64];
    let msg = lp_bytes(&Packet::push(101, &body));
    g.bench_function("ws_message_decode_64B_push", |b| {
        b.iter(|| decode_message(black_box(&msg[..]), DEFAULT_MAX_BODY))
    });
    let query = "version=1&codec=1&platform=9";
    assert_eq!(WsParams::parse_query(query), Ok(WsParams::OPENAPI));
    g.bench_function("ws_query_parse", |b| {
        b.iter(|| WsParams::parse_query(black_box(query)))
    });
    g.bench_function("ws_query_write", |b| {
        b.iter(|| black_box(&WsParams::OPENAPI).write_query(black_box(&mut out[..])))
    });
    g.finish();
}

criterion_group!(
    benches,
    game_header,
    game_control,
    game_chunk,
    lp_header,
    lp_packet,
    lp_transport
);
criterion_main!(benches);
