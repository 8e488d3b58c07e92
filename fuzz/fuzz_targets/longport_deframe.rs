//! LongPort stream deframer: feeding a TCP stream in arbitrary pieces yields the same handshake,
//! packets and final error / need as decoding it in one go; `Need` always asks for more than is
//! buffered. Also `decode_message` (one WebSocket message) and `WsParams::parse_query`.
//!
//! Input layout: byte 0 = flags (bit 0: server side, expects the handshake; bits 1-2: body limit
//! 0 / 7 / 64 / default), byte 1 = number of split points (low 3 bits), then that many bytes
//! picking split offsets, then the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_net::longport::deframe::{
    decode_message, DeframeError, Frame, Handshake, StreamDeframer, WsParams,
};
use tether_net::longport::wire::{Packet, DEFAULT_MAX_BODY};

/// An owned decoded item, for comparison across runs
#[derive(Debug, PartialEq, Eq)]
enum Item {
    Handshake(Handshake),
    Packet(String, Vec<u8>),
}

#[derive(Debug, PartialEq, Eq)]
enum End {
    Need(usize),
    Error(DeframeError),
}

fn item(f: &Frame<'_>, buf: &[u8]) -> Item {
    match f {
        Frame::Handshake(h, n) => {
            assert_eq!(*n, Handshake::LEN);
            assert_eq!(&h.to_bytes()[..], &buf[..2], "handshake bytes");
            Item::Handshake(*h)
        }
        Frame::Packet(p, n) => {
            assert_eq!(*n, p.header.packet_len());
            assert!(*n <= buf.len());
            Item::Packet(format!("{:?}", p.header), buf[..*n].to_vec())
        }
        Frame::Need(_) => unreachable!(),
    }
}

/// Decode everything `buf` holds; returns the items and how it ended
fn one_shot(expect_handshake: bool, max: usize, stream: &[u8]) -> (Vec<Item>, End) {
    let mut d = StreamDeframer::new(expect_handshake, max);
    let mut buf = stream;
    let mut items = Vec::new();
    for _ in 0..=stream.len() {
        match d.decode(buf) {
            Ok(Frame::Need(n)) => {
                assert!(n > buf.len(), "Need({n}) with {} bytes buffered", buf.len());
                return (items, End::Need(n));
            }
            Ok(f) => {
                let (Frame::Handshake(_, n) | Frame::Packet(_, n)) = f else {
                    unreachable!()
                };
                assert!(n > 0, "an item consumed nothing");
                items.push(item(&f, buf));
                buf = &buf[n..];
            }
            Err(e) => return (items, End::Error(e)),
        }
    }
    panic!("deframer did not make progress");
}

fn chunked(expect_handshake: bool, max: usize, stream: &[u8], cuts: &[usize]) -> (Vec<Item>, End) {
    let mut d = StreamDeframer::new(expect_handshake, max);
    let mut buffered: Vec<u8> = Vec::new();
    let mut items = Vec::new();
    let mut fed = 0usize;
    let mut last_need = None;
    let points = cuts.iter().copied().chain(core::iter::once(stream.len()));
    for cut in points {
        let cut = cut.clamp(fed, stream.len());
        buffered.extend_from_slice(&stream[fed..cut]);
        fed = cut;
        loop {
            match d.decode(&buffered) {
                Ok(Frame::Need(n)) => {
                    assert!(
                        n > buffered.len(),
                        "Need({n}) with {} bytes buffered",
                        buffered.len()
                    );
                    last_need = Some(n);
                    break;
                }
                Ok(f) => {
                    let (Frame::Handshake(_, n) | Frame::Packet(_, n)) = f else {
                        unreachable!()
                    };
                    let it = item(&f, &buffered);
                    items.push(it);
                    buffered.drain(..n);
                }
                Err(e) => return (items, End::Error(e)),
            }
        }
    }
    (
        items,
        End::Need(last_need.expect("the final decode reports Need")),
    )
}

fuzz_target!(|data: &[u8]| {
    let [flags, ncuts, rest @ ..] = data else {
        return;
    };
    let expect_handshake = flags & 1 != 0;
    let max = [0, 7, 64, DEFAULT_MAX_BODY][usize::from((flags >> 1) & 3)];
    let ncuts = usize::from(ncuts & 7).min(rest.len());
    let (cut_bytes, stream) = rest.split_at(ncuts);
    let mut cuts: Vec<usize> = cut_bytes
        .iter()
        .map(|&b| {
            if stream.is_empty() {
                0
            } else {
                usize::from(b) % (stream.len() + 1)
            }
        })
        .collect();
    cuts.sort_unstable();

    let whole = one_shot(expect_handshake, max, stream);
    let pieces = chunked(expect_handshake, max, stream, &cuts);
    assert_eq!(
        whole, pieces,
        "chunking changed the decoded stream (cuts {cuts:?})"
    );
    // Byte-at-a-time is the extreme chunking (bounded to keep exec/s up).
    if stream.len() <= 64 {
        let every: Vec<usize> = (0..stream.len()).collect();
        assert_eq!(whole, chunked(expect_handshake, max, stream, &every));
    }

    // One WebSocket message = one packet.
    match decode_message(stream, max) {
        Ok((p, trailing)) => {
            let (q, n) = Packet::parse(stream, max).expect("message packet parses");
            assert_eq!(p, q);
            assert_eq!(trailing, stream.len() - n);
        }
        Err(DeframeError::Truncated { len, needed }) => {
            assert_eq!(len, stream.len());
            assert!(needed > len);
        }
        Err(_) => assert!(Packet::parse(stream, max).is_err()),
    }

    // The upgrade query.
    for q in [
        core::str::from_utf8(data).ok().map(String::from),
        Some(String::from_utf8_lossy(stream).into_owned()),
    ]
    .into_iter()
    .flatten()
    {
        if let Ok(p) = WsParams::parse_query(&q) {
            assert_eq!(p.version, 1);
            assert!(p.codec <= 15 && p.platform <= 15);
            let mut out = [0u8; 64];
            let n = p.write_query(&mut out).expect("query fits 64 bytes");
            assert_eq!(n, p.query_len());
            assert!(p.write_query(&mut out[..n - 1]).is_err());
            let written = core::str::from_utf8(&out[..n]).expect("query is ASCII");
            assert_eq!(WsParams::parse_query(written), Ok(p));
            assert_eq!(WsParams::parse_query(&format!("?{written}")), Ok(p));
            assert_eq!(p.handshake().version, 1);
        }
    }
});
