//! Properties of the LongPort v1 codec and deframer

use proptest::prelude::*;
use tether_net::longport::deframe::{
    decode_message, DeframeError, Frame, Handshake, StreamDeframer, WsParams,
};
use tether_net::longport::wire::{
    DecodeError, Header, Kind, Packet, RequestId, Signature, Status, DEFAULT_MAX_BODY, MAX_BODY_LEN,
};

/// Everything about a packet except the body, which is generated separately and borrowed
#[derive(Debug, Clone)]
struct Shape {
    kind: Kind,
    cmd: u8,
    gzip: bool,
    reserve: u8,
    signature: Option<Signature>,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        (any::<u32>(), any::<u16>()).prop_map(|(id, timeout_ms)| Kind::Request {
            request_id: RequestId(id),
            timeout_ms
        }),
        (any::<u32>(), any::<u8>()).prop_map(|(id, s)| Kind::Response {
            request_id: RequestId(id),
            status: Status::from(s)
        }),
        Just(Kind::Push),
    ]
}

fn signature() -> impl Strategy<Value = Option<Signature>> {
    proptest::option::of(
        (any::<[u8; 8]>(), any::<[u8; 16]>())
            .prop_map(|(nonce, signature)| Signature { nonce, signature }),
    )
}

fn shape() -> impl Strategy<Value = Shape> {
    (kind(), any::<u8>(), any::<bool>(), 0u8..=3, signature()).prop_map(
        |(kind, cmd, gzip, reserve, signature)| Shape {
            kind,
            cmd,
            gzip,
            reserve,
            signature,
        },
    )
}

fn packet_with<'a>(s: &Shape, body: &'a [u8]) -> Packet<'a> {
    let p = match s.kind {
        Kind::Request {
            request_id,
            timeout_ms,
        } => Packet::request(s.cmd, request_id, timeout_ms, body),
        Kind::Response { request_id, status } => Packet::response(s.cmd, request_id, status, body),
        Kind::Push => Packet::push(s.cmd, body),
    };
    p.with_gzip(s.gzip)
        .with_reserve(s.reserve)
        .with_signature(s.signature)
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..300)
}

fn emit_vec(p: &Packet<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; p.buffer_len()];
    let n = p.emit(&mut buf).expect("buffer_len bytes are enough");
    assert_eq!(n, buf.len());
    buf
}

/// What the deframer produced, owned so it can be compared across runs
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Handshake(Handshake),
    Packet(Header, Vec<u8>, Option<Signature>),
}

/// Feed `stream` to a fresh deframer, revealing bytes only at the given cut points
/// (like reads of a socket), keeping unconsumed bytes in a caller-side buffer.
fn deframe_in_pieces(stream: &[u8], cuts: &[usize], expect_handshake: bool) -> Vec<Item> {
    let mut d = StreamDeframer::new(expect_handshake, DEFAULT_MAX_BODY);
    let mut out = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    points.push(stream.len());
    points.sort_unstable();
    for point in points {
        pending.extend_from_slice(&stream[fed..point]);
        fed = point;
        loop {
            let consumed = match d.decode(&pending).expect("valid stream") {
                Frame::Need(n) => {
                    assert!(
                        n > pending.len(),
                        "Need({n}) with {} buffered",
                        pending.len()
                    );
                    break;
                }
                Frame::Handshake(h, n) => {
                    out.push(Item::Handshake(h));
                    n
                }
                Frame::Packet(p, n) => {
                    assert_eq!(n, p.buffer_len());
                    out.push(Item::Packet(p.header, p.body.to_vec(), p.signature));
                    n
                }
            };
            pending.drain(..consumed);
        }
    }
    assert!(pending.is_empty(), "leftover bytes");
    out
}

fn max_body() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0usize),
        Just(16),
        Just(DEFAULT_MAX_BODY),
        Just(usize::MAX)
    ]
}

/// No panic anywhere; whatever decodes is consistent with the input bytes
fn check_any_bytes(bytes: &[u8], max_body: usize, handshake: bool) -> Result<(), TestCaseError> {
    let _ = Header::parse(bytes, max_body);
    let _ = Handshake::parse(bytes);
    if let Ok((p, n)) = Packet::parse(bytes, max_body) {
        prop_assert_eq!(n, p.buffer_len());
        prop_assert!(n <= bytes.len());
        // re-emitting reproduces the bytes (reserve bits included)
        prop_assert_eq!(&emit_vec(&p)[..], &bytes[..n]);
    }
    if let Ok((p, trailing)) = decode_message(bytes, max_body) {
        prop_assert_eq!(p.buffer_len() + trailing, bytes.len());
    }
    // a deframer walks the whole input and consumes only what it decoded
    let mut d = StreamDeframer::new(handshake, max_body);
    let mut off = 0;
    while let Ok(frame) = d.decode(&bytes[off..]) {
        match frame {
            Frame::Need(n) => {
                prop_assert!(n > bytes.len() - off);
                break;
            }
            Frame::Handshake(_, n) | Frame::Packet(_, n) => off += n,
        }
        prop_assert!(off <= bytes.len());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parse_inverts_emit(s in shape(), body in body(), extra in proptest::collection::vec(any::<u8>(), 0..8)) {
        let p = packet_with(&s, &body);
        let wire = emit_vec(&p);
        prop_assert_eq!(wire.len(), p.buffer_len());
        prop_assert_eq!(wire.len(), p.header.packet_len());
        prop_assert_eq!(Packet::parse(&wire, DEFAULT_MAX_BODY), Ok((p, wire.len())));
        let (h, hlen) = Header::parse(&wire, DEFAULT_MAX_BODY).unwrap();
        prop_assert_eq!(h, p.header);
        prop_assert_eq!(hlen, p.header.len());
        // trailing bytes are left for the caller
        let mut longer = wire.clone();
        longer.extend_from_slice(&extra);
        prop_assert_eq!(Packet::parse(&longer, DEFAULT_MAX_BODY), Ok((p, wire.len())));
        prop_assert_eq!(decode_message(&longer, DEFAULT_MAX_BODY), Ok((p, extra.len())));
        // a body limit below the body length refuses it, from the header alone
        if !body.is_empty() {
            let max = body.len() - 1;
            prop_assert_eq!(
                Packet::parse(&wire[..hlen], max),
                Err(DecodeError::BodyTooLarge { len: body.len(), max })
            );
        }
        // every strict prefix is incomplete, never anything else
        for cut in 0..wire.len() {
            match Packet::parse(&wire[..cut], DEFAULT_MAX_BODY) {
                Err(DecodeError::Incomplete { needed }) => {
                    prop_assert!(needed > cut && needed <= wire.len());
                }
                other => prop_assert!(false, "prefix {}: {:?}", cut, other),
            }
            let is_truncated =
                matches!(decode_message(&wire[..cut], DEFAULT_MAX_BODY), Err(DeframeError::Truncated { .. }));
            prop_assert!(is_truncated);
        }
    }

    #[test]
    fn header_emit_parse_round_trip(s in shape(), body_len in 0u32..=(MAX_BODY_LEN as u32)) {
        let h = Header {
            kind: s.kind,
            cmd: s.cmd,
            gzip: s.gzip,
            verify: s.signature.is_some(),
            reserve: s.reserve,
            body_len,
        };
        let mut buf = [0u8; 11];
        let n = h.emit(&mut buf).unwrap();
        prop_assert_eq!(n, h.len());
        prop_assert_eq!(Header::parse(&buf[..n], MAX_BODY_LEN), Ok((h, n)));
    }

    #[test]
    fn deframer_is_split_invariant(
        shapes in proptest::collection::vec(shape(), 0..6),
        bodies in proptest::collection::vec(body(), 6),
        handshake in any::<bool>(),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let packets: Vec<Packet<'_>> =
            shapes.iter().zip(&bodies).map(|(s, b)| packet_with(s, b)).collect();
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        if handshake {
            stream.extend_from_slice(&Handshake::OPENAPI.to_bytes());
            expected.push(Item::Handshake(Handshake::OPENAPI));
        }
        for p in &packets {
            stream.extend_from_slice(&emit_vec(p));
            expected.push(Item::Packet(p.header, p.body.to_vec(), p.signature));
        }
        // all at once, byte by byte, and at random cut points
        prop_assert_eq!(&deframe_in_pieces(&stream, &[], handshake), &expected);
        let every: Vec<usize> = (0..stream.len()).collect();
        prop_assert_eq!(&deframe_in_pieces(&stream, &every, handshake), &expected);
        prop_assert_eq!(&deframe_in_pieces(&stream, &cuts, handshake), &expected);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..64),
        max_body in max_body(),
        handshake in any::<bool>(),
    ) {
        check_any_bytes(&bytes, max_body, handshake)?;
    }

    #[test]
    fn mutated_packets_never_panic(
        s in shape(),
        body in body(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        keep in any::<usize>(),
        max_body in max_body(),
        handshake in any::<bool>(),
    ) {
        // start from a valid stream so that most mutations still reach the deeper paths
        let mut bytes = Handshake::OPENAPI.to_bytes().to_vec();
        bytes.extend_from_slice(&emit_vec(&packet_with(&s, &body)));
        if !handshake {
            bytes.drain(..2);
        }
        for (at, x) in flips {
            let i = at % bytes.len();
            bytes[i] ^= x;
        }
        bytes.truncate(keep % (bytes.len() + 1));
        check_any_bytes(&bytes, max_body, handshake)?;
    }

    #[test]
    fn arbitrary_query_strings_never_panic(q in ".{0,80}") {
        let _ = WsParams::parse_query(&q);
    }

    #[test]
    fn query_like_strings_parse_consistently(
        pairs in proptest::collection::vec(
            (prop_oneof![Just("version"), Just("codec"), Just("platform"), Just("x"), Just("")],
             prop_oneof![Just("1".to_string()), "[0-9]{0,4}", ".{0,3}"]),
            0..6),
    ) {
        let q: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let q = q.join("&");
        if let Ok(params) = WsParams::parse_query(&q) {
            // write_query output parses back to the same parameters
            let mut buf = [0u8; 40];
            let n = params.write_query(&mut buf).unwrap();
            prop_assert_eq!(n, params.query_len());
            let text = core::str::from_utf8(&buf[..n]).unwrap();
            prop_assert_eq!(WsParams::parse_query(text), Ok(params));
            prop_assert_eq!(params.version, 1);
        }
    }

    #[test]
    fn queries_parse_in_any_order(
        codec in 0u8..=15,
        platform in 0u8..=15,
        order in Just([0usize, 1, 2]).prop_shuffle(),
        noise in proptest::collection::vec("[a-z]{1,6}=[a-z0-9]{0,4}", 0..3),
    ) {
        let values = [
            "version=1".to_string(),
            format!("codec={codec}"),
            format!("platform={platform}"),
        ];
        let mut parts: Vec<String> = order.iter().map(|&i| values[i].clone()).collect();
        // unrelated keys (never one of ours) anywhere
        for (i, n) in noise.into_iter().enumerate() {
            if !n.starts_with("version=") && !n.starts_with("codec=") && !n.starts_with("platform=") {
                parts.insert(i % (parts.len() + 1), n);
            }
        }
        let q = parts.join("&");
        prop_assert_eq!(WsParams::parse_query(&q), Ok(WsParams { version: 1, codec, platform }));
    }
}
