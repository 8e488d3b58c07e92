//! Byte-exact vectors of the LongPort protocol through the v1 packet codec and deframer

use tether_net::longport::deframe::{
    decode_message, DeframeError, Frame, Handshake, HandshakeError, QueryError, QueryParam,
    StreamDeframer, WsParams,
};
use tether_net::longport::wire::{
    DecodeError, Header, Kind, Packet, RequestId, Signature, Status, DEFAULT_MAX_BODY,
    MAX_BODY_LEN, MAX_PACKET_LEN, PUSH_HEADER_LEN, REQUEST_HEADER_LEN, RESPONSE_HEADER_LEN,
    SIGNATURE_LEN,
};
use tether_net::testing::from_hex as hex;
use tether_net::BufferTooSmall;

/// Bytes from space-separated hex
/// `p` emits exactly `wire`, and `wire` parses back to `p` using all of it
fn check(p: &Packet<'_>, wire: &[u8]) {
    assert_eq!(p.buffer_len(), wire.len(), "buffer_len");
    let mut buf = vec![0u8; wire.len() + 7];
    let n = p.emit(&mut buf).expect("emit");
    assert_eq!(&buf[..n], wire, "emitted bytes");
    let (q, used) = Packet::parse(wire, DEFAULT_MAX_BODY).expect("parse");
    assert_eq!(used, wire.len());
    assert_eq!(&q, p);
    // through the client-side stream deframer and as a WebSocket message too
    let mut d = StreamDeframer::new(false, DEFAULT_MAX_BODY);
    assert_eq!(d.decode(wire), Ok(Frame::Packet(*p, wire.len())));
    assert_eq!(decode_message(wire, DEFAULT_MAX_BODY), Ok((*p, 0)));
}

const V2_HEARTBEAT: &str = "08 80 d0 95 ff bc 31";
const V5_BODY: &str = "08 80 d0 95 ff bc 31 10 01";
const V6_AUTH: &str = "0a 03 61 62 63";
const V7_GRANT: &str = "0a 02 73 31 10 80 88 af a8 bd 31";

#[test]
fn v1_handshake() {
    let wire = hex("11 09");
    assert_eq!(Handshake::OPENAPI.to_bytes(), [0x11, 0x09]);
    let h = Handshake::parse(&wire).unwrap();
    assert_eq!(h, Handshake::OPENAPI);
    assert_eq!((h.version, h.codec, h.platform, h.reserve), (1, 1, 9, 0));
    let mut buf = [0u8; 2];
    assert_eq!(h.emit(&mut buf), Ok(2));
    assert_eq!(buf, [0x11, 0x09]);
    assert_eq!(
        Handshake::parse(&wire[..1]),
        Err(HandshakeError::Incomplete { needed: 2 })
    );
    assert_eq!(
        Handshake::parse(&[]),
        Err(HandshakeError::Incomplete { needed: 2 })
    );
}

#[test]
fn go_handshake_vectors_split_nibbles_and_only_v1_is_accepted() {
    for (bytes, version, codec, platform) in [
        ([0x13, 0x01], 3, 1, 1),
        ([0x11, 0x02], 1, 1, 2),
        ([0x12, 0x03], 2, 1, 3),
    ] {
        let h = Handshake {
            version,
            codec,
            platform,
            reserve: 0,
        };
        assert_eq!(h.to_bytes(), bytes);
        assert_eq!(Handshake::from_bytes(bytes), h);
        let parsed = Handshake::parse(&bytes);
        if version == 1 {
            assert_eq!(parsed, Ok(h));
        } else {
            assert_eq!(parsed, Err(HandshakeError::UnsupportedVersion(version)));
        }
    }
    // reserve nibble is recorded
    assert_eq!(Handshake::parse(&[0x21, 0xF9]).unwrap().reserve, 15);
}

#[test]
fn v3_heartbeat_request() {
    let body = hex(V2_HEARTBEAT);
    assert_eq!(body.len(), 7);
    let wire = hex("01 01 00 00 00 01 00 00 00 00 07 08 80 d0 95 ff bc 31");
    assert_eq!(wire.len(), 18);
    let p = Packet::request(1, RequestId(1), 0, &body);
    check(&p, &wire);
    assert_eq!(
        p.header.kind,
        Kind::Request {
            request_id: RequestId(1),
            timeout_ms: 0
        }
    );
}

#[test]
fn v4_heartbeat_response() {
    let body = hex(V2_HEARTBEAT);
    let wire = hex("02 01 00 00 00 01 00 00 00 07 08 80 d0 95 ff bc 31");
    assert_eq!(wire.len(), 17);
    check(
        &Packet::response(1, RequestId(1), Status::Success, &body),
        &wire,
    );
}

#[test]
fn v5_go_heartbeat_request() {
    let body = hex(V5_BODY);
    let wire = hex("01 01 00 00 00 01 00 00 00 00 09 08 80 d0 95 ff bc 31 10 01");
    assert_eq!(wire.len(), 20);
    check(&Packet::request(1, RequestId(1), 0, &body), &wire);
    // the heartbeat_id = -1 body variant is carried opaquely
    let body = hex("08 80 d0 95 ff bc 31 10 ff ff ff ff ff ff ff ff ff 01");
    assert_eq!(body.len(), 18);
    let mut wire = hex("01 01 ff ff ff ff 00 00 00 00 12");
    wire.extend_from_slice(&body);
    check(&Packet::request(1, RequestId(0xFFFF_FFFF), 0, &body), &wire);
}

#[test]
fn v6_auth_requests() {
    let body = hex(V6_AUTH);
    check(
        &Packet::request(2, RequestId(1), 5000, &body),
        &hex("01 02 00 00 00 01 13 88 00 00 05 0a 03 61 62 63"),
    );
    check(
        &Packet::request(2, RequestId(1), 0, &body),
        &hex("01 02 00 00 00 01 00 00 00 00 05 0a 03 61 62 63"),
    );
    let meta =
        hex("0a 03 61 62 63 12 15 0a 0f 61 63 63 65 70 74 2d 6c 61 6e 67 75 61 67 65 12 02 65 6e");
    assert_eq!(meta.len(), 28);
    let mut wire = hex("01 02 00 00 00 01 13 88 00 00 1c");
    wire.extend_from_slice(&meta);
    check(&Packet::request(2, RequestId(1), 5000, &meta), &wire);
}

#[test]
fn v6_pipelined_first_tcp_write() {
    let stream = hex("11 09 01 02 00 00 00 01 13 88 00 00 05 0a 03 61 62 63");
    let body = hex(V6_AUTH);
    let mut d = StreamDeframer::new(true, DEFAULT_MAX_BODY);
    assert!(d.awaiting_handshake());
    assert_eq!(
        d.decode(&stream),
        Ok(Frame::Handshake(Handshake::OPENAPI, 2))
    );
    assert!(!d.awaiting_handshake());
    let rest = &stream[2..];
    assert_eq!(
        d.decode(rest),
        Ok(Frame::Packet(
            Packet::request(2, RequestId(1), 5000, &body),
            16
        ))
    );
    assert_eq!(d.decode(&rest[16..]), Ok(Frame::Need(1)));
}

#[test]
fn v7_auth_responses() {
    let grant = hex(V7_GRANT);
    assert_eq!(grant.len(), 11);
    check(
        &Packet::response(2, RequestId(1), Status::Success, &grant),
        &hex("02 02 00 00 00 01 00 00 00 0b 0a 02 73 31 10 80 88 af a8 bd 31"),
    );
    let grant = hex("0a 02 73 31 10 80 88 af a8 bd 31 18 0a 20 01");
    let wire = hex("02 02 00 00 00 01 00 00 00 0f 0a 02 73 31 10 80 88 af a8 bd 31 18 0a 20 01");
    assert_eq!(wire.len(), 25);
    check(
        &Packet::response(2, RequestId(1), Status::Success, &grant),
        &wire,
    );
}

#[test]
fn v8_reconnect() {
    let body = hex("0a 02 73 31");
    let wire = hex("01 03 00 00 00 01 13 88 00 00 04 0a 02 73 31");
    assert_eq!(wire.len(), 15);
    check(&Packet::request(3, RequestId(1), 5000, &body), &wire);
    let body = hex("0a 02 73 32 10 80 c0 c8 d1 bd 31");
    let wire = hex("02 03 00 00 00 01 00 00 00 0b 0a 02 73 32 10 80 c0 c8 d1 bd 31");
    assert_eq!(wire.len(), 21);
    check(
        &Packet::response(3, RequestId(1), Status::Success, &body),
        &wire,
    );
}

#[test]
fn v9_close_pushes() {
    let body = hex("08 04 12 09 62 61 64 20 74 6f 6b 65 6e");
    let wire = hex("03 00 00 00 0d 08 04 12 09 62 61 64 20 74 6f 6b 65 6e");
    assert_eq!(wire.len(), 18);
    check(&Packet::push(0, &body), &wire);
    check(&Packet::push(0, &[]), &hex("03 00 00 00 00"));
    let body = hex("08 06 12 03 64 75 70");
    check(
        &Packet::push(0, &body),
        &hex("03 00 00 00 07 08 06 12 03 64 75 70"),
    );
}

#[test]
fn v10_error_responses() {
    let body = hex("08 a0 b4 12 12 0f 69 6e 76 61 6c 69 64 20 72 65 71 75 65 73 74");
    let mut wire = hex("02 06 00 00 00 07 03 00 00 15");
    wire.extend_from_slice(&body);
    assert_eq!(wire.len(), 31);
    let p = Packet::response(6, RequestId(7), Status::BadRequest, &body);
    check(&p, &wire);
    assert!(!Status::BadRequest.is_success());

    let body = hex(
        "08 93 03 12 1d 63 6f 6e 6e 65 63 74 69 6f 6e 73 20 6c 69 6d 69 74 61 74 69 6f 6e 20 69 73 20 68 69 74",
    );
    let mut wire = hex("02 02 00 00 00 01 06 00 00 22");
    wire.extend_from_slice(&body);
    assert_eq!(wire.len(), 44);
    let p = Packet::response(2, RequestId(1), Status::PermissionDenied, &body);
    check(&p, &wire);
    assert_eq!(
        p.header.kind,
        Kind::Response {
            request_id: RequestId(1),
            status: Status::from(6)
        }
    );
}

#[test]
fn v11_edge_cases() {
    check(&Packet::push(101, &[]), &hex("03 65 00 00 00"));
    let p = Packet::request(4, RequestId(0xFFFF_FFFF), 60000, &[]);
    check(&p, &hex("01 04 ff ff ff ff ea 60 00 00 00"));
    assert_eq!(p.header.kind.request_id(), Some(RequestId(u32::MAX)));

    let sig = Signature {
        nonce: [1, 2, 3, 4, 5, 6, 7, 8],
        signature: [0xAA; 16],
    };
    let wire = hex(
        "13 65 00 00 01 01 01 02 03 04 05 06 07 08 aa aa aa aa aa aa aa aa aa aa aa aa aa aa aa aa",
    );
    assert_eq!(wire.len(), 30);
    let p = Packet::push(101, &[1]).with_signature(Some(sig));
    assert!(p.header.verify);
    check(&p, &wire);
    assert_eq!(p.header.packet_len(), 30);
}

#[test]
fn v12_gzip_response_header() {
    let gz = hex(
        "1f 8b 08 00 00 00 00 00 00 ff 01 07 00 f8 ff 08 80 d0 95 ff bc 31 6d 3e 6e 14 07 00 00 00",
    );
    assert_eq!(gz.len(), 30);
    let mut wire = hex("22 01 00 00 00 01 00 00 00 1e");
    wire.extend_from_slice(&gz);
    assert_eq!(wire.len(), 40);
    let p = Packet::response(1, RequestId(1), Status::Success, &gz).with_gzip(true);
    check(&p, &wire);
    let (h, n) = Header::parse(&wire, DEFAULT_MAX_BODY).unwrap();
    assert_eq!(n, RESPONSE_HEADER_LEN);
    assert!(h.gzip && !h.verify);
    assert_eq!(h.body_len, 30);
}

#[test]
fn v13_go_header_vectors() {
    let cases = [
        (
            "01 01 00 00 00 01 00 ff 00 00 07",
            Header {
                kind: Kind::Request {
                    request_id: RequestId(1),
                    timeout_ms: 255,
                },
                cmd: 1,
                gzip: false,
                verify: false,
                reserve: 0,
                body_len: 7,
            },
        ),
        (
            "32 01 00 00 00 01 08 00 00 07",
            Header {
                kind: Kind::Response {
                    request_id: RequestId(1),
                    status: Status::ClientInternalError,
                },
                cmd: 1,
                gzip: true,
                verify: true,
                reserve: 0,
                body_len: 7,
            },
        ),
        (
            "e3 01 00 00 07",
            Header {
                kind: Kind::Push,
                cmd: 1,
                gzip: true,
                verify: false,
                reserve: 3,
                body_len: 7,
            },
        ),
    ];
    for (bytes, header) in cases {
        let wire = hex(bytes);
        assert_eq!(header.len(), wire.len());
        assert_eq!(
            Header::parse(&wire, DEFAULT_MAX_BODY),
            Ok((header, wire.len()))
        );
        let mut buf = [0u8; 16];
        assert_eq!(header.emit(&mut buf), Ok(wire.len()));
        assert_eq!(&buf[..wire.len()], &wire[..]);
        // header only: the packet itself is incomplete
        let trailer = if header.verify { SIGNATURE_LEN } else { 0 };
        assert_eq!(
            Packet::parse(&wire, DEFAULT_MAX_BODY),
            Err(DecodeError::Incomplete {
                needed: wire.len() + 7 + trailer
            })
        );
    }
    // type 12 is rejected from the first byte alone
    assert_eq!(
        Header::parse(&[0xEC], DEFAULT_MAX_BODY),
        Err(DecodeError::UnknownType(12))
    );
    assert_eq!(
        Packet::parse(&hex("ec 01 00 00 07"), DEFAULT_MAX_BODY),
        Err(DecodeError::UnknownType(12))
    );
    assert_eq!(
        decode_message(&hex("ec 01 00 00 07"), DEFAULT_MAX_BODY),
        Err(DeframeError::UnknownType(12))
    );
    // truncated push header: not done yet
    let short = hex("e3 01 00");
    assert_eq!(
        Header::parse(&short, DEFAULT_MAX_BODY),
        Err(DecodeError::Incomplete {
            needed: PUSH_HEADER_LEN
        })
    );
    let mut d = StreamDeframer::new(false, DEFAULT_MAX_BODY);
    assert_eq!(d.decode(&short), Ok(Frame::Need(5)));
    assert_eq!(
        decode_message(&short, DEFAULT_MAX_BODY),
        Err(DeframeError::Truncated { len: 3, needed: 5 })
    );
}

#[test]
fn every_unknown_type_nibble_is_rejected() {
    for first in 0u8..=255 {
        let t = first & 0x0F;
        let r = Header::parse(&[first], DEFAULT_MAX_BODY);
        match t {
            1 => assert_eq!(
                r,
                Err(DecodeError::Incomplete {
                    needed: REQUEST_HEADER_LEN
                })
            ),
            2 => assert_eq!(
                r,
                Err(DecodeError::Incomplete {
                    needed: RESPONSE_HEADER_LEN
                })
            ),
            3 => assert_eq!(
                r,
                Err(DecodeError::Incomplete {
                    needed: PUSH_HEADER_LEN
                })
            ),
            _ => assert_eq!(r, Err(DecodeError::UnknownType(t))),
        }
    }
    assert_eq!(
        Header::parse(&[], DEFAULT_MAX_BODY),
        Err(DecodeError::Incomplete { needed: 1 })
    );
}

#[test]
fn v15_ws_query_in_both_orders() {
    assert_eq!(
        WsParams::parse_query("version=1&codec=1&platform=9"),
        Ok(WsParams::OPENAPI)
    );
    assert_eq!(
        WsParams::parse_query("codec=1&platform=9&version=1"),
        Ok(WsParams::OPENAPI)
    );
    assert_eq!(
        WsParams::parse_query("?codec=1&platform=9&version=1"),
        Ok(WsParams::OPENAPI)
    );
    assert_eq!(
        WsParams::parse_query("token=x&version=1&&lang=en&codec=1&platform=9&a"),
        Ok(WsParams::OPENAPI)
    );
    // leading zeros up to three digits are the same number ("0009" is one digit too many)
    assert_eq!(
        WsParams::parse_query("version=001&codec=01&platform=009"),
        Ok(WsParams::OPENAPI)
    );
    let mut buf = [0u8; 64];
    let n = WsParams::OPENAPI.write_query(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"version=1&codec=1&platform=9");
    assert_eq!(n, WsParams::OPENAPI.query_len());
    assert_eq!(WsParams::OPENAPI.handshake(), Handshake::OPENAPI);
    let q = core::str::from_utf8(&buf[..n]).unwrap();
    assert_eq!(WsParams::parse_query(q), Ok(WsParams::OPENAPI));
}

#[test]
fn ws_query_errors_are_typed() {
    use QueryParam::*;
    let cases = [
        ("codec=1&platform=9", QueryError::Missing(Version)),
        ("version=1&platform=9", QueryError::Missing(Codec)),
        ("version=1&codec=1", QueryError::Missing(Platform)),
        ("", QueryError::Missing(Version)),
        (
            "version=1&codec=1&codec=1&platform=9",
            QueryError::Duplicate(Codec),
        ),
        (
            "version=1&version=1&codec=1&platform=9",
            QueryError::Duplicate(Version),
        ),
        ("version=x&codec=1&platform=9", QueryError::Invalid(Version)),
        ("version=1&codec=&platform=9", QueryError::Invalid(Codec)),
        (
            "version=1&codec=1&platform=16",
            QueryError::Invalid(Platform),
        ),
        (
            "version=1&codec=1&platform=+9",
            QueryError::Invalid(Platform),
        ),
        (
            "version=1&codec=1&platform=0009",
            QueryError::Invalid(Platform),
        ),
        ("version=1&codec=1&platform", QueryError::Invalid(Platform)),
        (
            "version=2&codec=1&platform=9",
            QueryError::UnsupportedVersion(2),
        ),
        // keys and values are compared literally: no case folding, no percent-decoding
        ("Version=1&codec=1&platform=9", QueryError::Missing(Version)),
        (
            "version=%31&codec=1&platform=9",
            QueryError::Invalid(Version),
        ),
        (
            "version=1 &codec=1&platform=9",
            QueryError::Invalid(Version),
        ),
    ];
    for (q, e) in cases {
        assert_eq!(WsParams::parse_query(q), Err(e), "{q}");
    }
    assert_eq!(
        WsParams::parse_query("version=01&codec=1&platform=09"),
        Ok(WsParams::OPENAPI)
    );
}

#[test]
fn body_limit_is_enforced_from_the_header_alone() {
    // push announcing 2 MiB: refused with only the 5 header bytes buffered
    let header = [0x03, 0x65, 0x20, 0x00, 0x00];
    let too_large = DecodeError::BodyTooLarge {
        len: 2 << 20,
        max: DEFAULT_MAX_BODY,
    };
    assert_eq!(Header::parse(&header, DEFAULT_MAX_BODY), Err(too_large));
    assert_eq!(Packet::parse(&header, DEFAULT_MAX_BODY), Err(too_large));
    let mut d = StreamDeframer::new(false, DEFAULT_MAX_BODY);
    assert_eq!(
        d.decode(&header),
        Err(DeframeError::BodyTooLarge {
            len: 2 << 20,
            max: DEFAULT_MAX_BODY
        })
    );
    // one byte less and the deframer still waits for the header
    assert_eq!(d.decode(&header[..4]), Ok(Frame::Need(5)));
    // exactly at the limit is fine (and needs the body)
    let at_limit = [0x03, 0x65, 0x10, 0x00, 0x00];
    assert_eq!(d.decode(&at_limit), Ok(Frame::Need(5 + DEFAULT_MAX_BODY)));
    // the limit is the caller's: the largest field value passes with max = MAX_BODY_LEN
    let max = [0x13, 0x65, 0xFF, 0xFF, 0xFF];
    assert_eq!(
        Packet::parse(&max, MAX_BODY_LEN),
        Err(DecodeError::Incomplete {
            needed: 5 + MAX_BODY_LEN + SIGNATURE_LEN
        })
    );
    assert_eq!(
        Packet::parse(&max, 0),
        Err(DecodeError::BodyTooLarge {
            len: MAX_BODY_LEN,
            max: 0
        })
    );
    // requests and responses too
    let req = hex("01 04 00 00 00 09 00 00 00 00 02");
    assert_eq!(
        Packet::parse(&req, 1),
        Err(DecodeError::BodyTooLarge { len: 2, max: 1 })
    );
    let resp = hex("02 04 00 00 00 09 00 00 00 02");
    assert_eq!(
        decode_message(&resp, 1),
        Err(DeframeError::BodyTooLarge { len: 2, max: 1 })
    );
}

/// A server-side stream: handshake then several packets of every kind
fn sample_stream() -> (Vec<u8>, usize) {
    let mut s = hex("11 09");
    for p in [
        hex("01 02 00 00 00 01 13 88 00 00 05 0a 03 61 62 63"),
        hex("03 00 00 00 00"),
        hex("13 65 00 00 01 01 01 02 03 04 05 06 07 08 aa aa aa aa aa aa aa aa aa aa aa aa aa aa aa aa"),
        hex("02 02 00 00 00 01 00 00 00 0b 0a 02 73 31 10 80 88 af a8 bd 31"),
    ] {
        s.extend_from_slice(&p);
    }
    (s, 5)
}

#[test]
fn every_prefix_of_a_valid_stream_yields_need() {
    let (stream, items) = sample_stream();
    // boundaries between items
    let mut bounds = vec![0];
    let mut d = StreamDeframer::new(true, DEFAULT_MAX_BODY);
    let mut off = 0;
    for _ in 0..items {
        let n = match d.decode(&stream[off..]).unwrap() {
            Frame::Handshake(_, n) | Frame::Packet(_, n) => n,
            Frame::Need(n) => panic!("whole stream needs {n}"),
        };
        off += n;
        bounds.push(off);
    }
    assert_eq!(off, stream.len());
    // for every start boundary and every strictly shorter prefix of the next item: Need
    for w in bounds.windows(2) {
        let (start, end) = (w[0], w[1]);
        let mut d = StreamDeframer::new(start == 0, DEFAULT_MAX_BODY);
        for cut in start..end {
            match d.decode(&stream[start..cut]) {
                Ok(Frame::Need(n)) => {
                    assert!(n > cut - start, "need {n} at prefix {}", cut - start);
                    assert!(n <= end - start, "need {n} beyond item of {}", end - start);
                }
                other => panic!("prefix {start}..{cut}: {other:?}"),
            }
            // still waiting for the same item
            assert_eq!(d.awaiting_handshake(), start == 0);
        }
        assert!(matches!(
            d.decode(&stream[start..end]),
            Ok(Frame::Handshake(_, n) | Frame::Packet(_, n)) if n == end - start
        ));
    }
}

#[test]
fn truncated_messages_are_errors_and_trailing_bytes_are_counted() {
    let wire = hex("02 02 00 00 00 01 00 00 00 0b 0a 02 73 31 10 80 88 af a8 bd 31");
    for cut in 0..wire.len() {
        let needed = if cut < RESPONSE_HEADER_LEN && cut > 0 {
            RESPONSE_HEADER_LEN
        } else if cut == 0 {
            1
        } else {
            wire.len()
        };
        assert_eq!(
            decode_message(&wire[..cut], DEFAULT_MAX_BODY),
            Err(DeframeError::Truncated { len: cut, needed }),
            "cut {cut}"
        );
    }
    let mut longer = wire.clone();
    longer.extend_from_slice(&[0xde, 0xad, 0xbe]);
    let (p, trailing) = decode_message(&longer, DEFAULT_MAX_BODY).unwrap();
    assert_eq!(trailing, 3);
    assert_eq!(p.body, &wire[10..]);
}

#[test]
fn buffer_too_small_reports_exact_size_and_writes_nothing() {
    let body = hex(V2_HEARTBEAT);
    let sig = Signature {
        nonce: [7; 8],
        signature: [9; 16],
    };
    let packets = [
        Packet::request(1, RequestId(1), 0, &body),
        Packet::response(1, RequestId(1), Status::Other(200), &body).with_signature(Some(sig)),
        Packet::push(101, &[]),
        Packet::push(101, &body)
            .with_gzip(true)
            .with_reserve(2)
            .with_signature(Some(sig)),
    ];
    for p in packets {
        let len = p.buffer_len();
        for short in 0..len {
            let mut buf = vec![0x5Au8; short];
            assert_eq!(p.emit(&mut buf), Err(BufferTooSmall { required: len }));
            assert!(buf.iter().all(|&b| b == 0x5A), "buffer touched");
        }
        let hlen = p.header.len();
        for short in 0..hlen {
            let mut buf = vec![0x5Au8; short];
            assert_eq!(
                p.header.emit(&mut buf),
                Err(BufferTooSmall { required: hlen })
            );
            assert!(buf.iter().all(|&b| b == 0x5A));
        }
        let mut buf = vec![0u8; len];
        assert_eq!(p.emit(&mut buf), Ok(len));
        assert_eq!(Packet::parse(&buf, DEFAULT_MAX_BODY), Ok((p, len)));
    }
    let mut buf = [0x5Au8; 1];
    assert_eq!(
        Handshake::OPENAPI.emit(&mut buf),
        Err(BufferTooSmall { required: 2 })
    );
    assert_eq!(buf, [0x5A]);
    let q = WsParams {
        version: 1,
        codec: 10,
        platform: 15,
    };
    let len = q.query_len();
    assert_eq!(len, "version=1&codec=10&platform=15".len());
    for short in 0..len {
        let mut buf = vec![0x5Au8; short];
        assert_eq!(
            q.write_query(&mut buf),
            Err(BufferTooSmall { required: len })
        );
        assert!(buf.iter().all(|&b| b == 0x5A));
    }
    let mut buf = [0u8; 40];
    assert_eq!(q.write_query(&mut buf), Ok(len));
    assert_eq!(&buf[..len], b"version=1&codec=10&platform=15");
}

#[test]
fn emit_derives_length_and_verify_from_body_and_signature() {
    let mut p = Packet::push(5, &[1, 2, 3]);
    p.header.body_len = 99;
    p.header.verify = true;
    let mut buf = [0u8; 16];
    assert_eq!(p.emit(&mut buf), Ok(8));
    assert_eq!(&buf[..8], &[0x03, 5, 0, 0, 3, 1, 2, 3]);
    assert_eq!(p.wire_header().body_len, 3);
    assert!(!p.wire_header().verify);
    // a header alone with an unrepresentable length is refused
    let h = Header {
        body_len: (MAX_BODY_LEN + 1) as u32,
        ..p.header
    };
    assert_eq!(
        h.emit(&mut buf),
        Err(BufferTooSmall {
            required: usize::MAX
        })
    );
}

#[test]
fn status_byte_conversions() {
    for v in 0u8..=255 {
        let s = Status::from(v);
        assert_eq!(u8::from(s), v);
        assert_eq!(matches!(s, Status::Other(_)), v > 8);
    }
    assert_eq!(Status::from(5), Status::Unauthenticated);
    assert_eq!(u8::from(Status::ServerInternalError), 7);
    assert_eq!(Status::Other(3).as_u8(), 3);
    assert!(Status::Success.is_success());
    assert_eq!(
        Status::PermissionDenied.to_string(),
        "permission denied (6)"
    );
    assert_eq!(Status::Other(42).to_string(), "status 42");
}

#[test]
fn errors_display_their_numbers() {
    assert!(DecodeError::Incomplete { needed: 11 }
        .to_string()
        .contains("11"));
    assert!(DecodeError::UnknownType(12).to_string().contains("12"));
    let e = DecodeError::BodyTooLarge {
        len: 2097152,
        max: 1048576,
    };
    assert!(e.to_string().contains("2097152") && e.to_string().contains("1048576"));
    assert!(DeframeError::Truncated { len: 3, needed: 5 }
        .to_string()
        .contains('5'));
    assert!(HandshakeError::UnsupportedVersion(3)
        .to_string()
        .contains('3'));
    assert!(QueryError::Duplicate(QueryParam::Codec)
        .to_string()
        .contains("codec"));
    fn is_error<E: core::error::Error + Copy>(_: E) {}
    is_error(DecodeError::UnknownType(0));
    is_error(DeframeError::UnknownType(0));
    is_error(HandshakeError::UnsupportedVersion(0));
    is_error(QueryError::Missing(QueryParam::Version));
}

#[test]
fn server_deframer_rejects_a_bad_handshake() {
    let mut d = StreamDeframer::new(true, DEFAULT_MAX_BODY);
    assert_eq!(d.decode(&[]), Ok(Frame::Need(2)));
    assert_eq!(d.decode(&[0x12]), Ok(Frame::Need(2)));
    assert_eq!(
        d.decode(&[0x12, 0x03]),
        Err(DeframeError::UnsupportedVersion(2))
    );
    assert!(d.awaiting_handshake());
    // a client-side deframer reads `11 09` as a packet and refuses its type nibble
    let mut d = StreamDeframer::new(false, DEFAULT_MAX_BODY);
    assert_eq!(d.decode(&[]), Ok(Frame::Need(1)));
    assert_eq!(d.decode(&[0x11, 0x09]), Ok(Frame::Need(REQUEST_HEADER_LEN)));
    assert_eq!(d.decode(&[0x14, 0x09]), Err(DeframeError::UnknownType(4)));
    assert_eq!(d.max_body(), DEFAULT_MAX_BODY);
}

#[test]
fn max_packet_len_is_the_largest_packet() {
    // a signed request with the largest body there is: a buffer of MAX_PACKET_LEN holds it,
    // one byte less does not, and the whole buffer parses back as that packet
    let body = vec![0x5a; MAX_BODY_LEN];
    let sig = Signature {
        nonce: [1; 8],
        signature: [2; 16],
    };
    let p = Packet::request(9, RequestId(7), 30_000, &body).with_signature(Some(sig));
    assert_eq!(p.buffer_len(), MAX_PACKET_LEN);
    let mut buf = vec![0u8; MAX_PACKET_LEN];
    assert_eq!(
        p.emit(&mut buf[..MAX_PACKET_LEN - 1]),
        Err(BufferTooSmall {
            required: MAX_PACKET_LEN
        })
    );
    assert_eq!(p.emit(&mut buf), Ok(MAX_PACKET_LEN));
    let (q, used) = Packet::parse(&buf, MAX_BODY_LEN).expect("parse");
    assert_eq!((q, used), (p, MAX_PACKET_LEN));
}

#[test]
fn a_body_too_long_to_represent_is_refused_before_the_buffer_is_looked_at() {
    let body = vec![0u8; MAX_BODY_LEN + 1];
    let p = Packet::request(9, RequestId(7), 30_000, &body);
    // whatever the buffer: `usize::MAX`, which no buffer satisfies, not a size to grow to
    assert_eq!(
        p.emit(&mut [0u8; 16]),
        Err(BufferTooSmall {
            required: usize::MAX
        })
    );
}

#[test]
fn reserve_bits_keep_two_bits_and_zero_adds_none() {
    let emit = |p: Packet<'_>| {
        let mut buf = [0u8; 64];
        let n = p.emit(&mut buf).expect("emit");
        buf[..n].to_vec()
    };
    let plain = Packet::request(9, RequestId(7), 30_000, b"x");
    assert_eq!(emit(plain.with_reserve(0)), emit(plain));
    assert_eq!(emit(plain.with_reserve(7)), emit(plain.with_reserve(3)));
    assert_ne!(emit(plain.with_reserve(3)), emit(plain));
    // the other bits of the first byte are untouched
    assert_eq!(emit(plain.with_reserve(3))[1..], emit(plain)[1..]);
}

#[test]
fn handshake_bytes_round_trip_every_nibble() {
    // each of the four nibbles (version, codec, platform, reserve) at a value of its own
    for bytes in [
        [0x11, 0x09],
        [0x21, 0x59],
        [0xF3, 0xA4],
        [0x0F, 0xF0],
        [0xF0, 0x0F],
    ] {
        let h = Handshake::from_bytes(bytes);
        assert_eq!(h.to_bytes(), bytes, "{bytes:02x?}");
        let mut out = [0u8; 2];
        assert_eq!(h.emit(&mut out), Ok(2));
        assert_eq!(out, bytes);
    }
}

#[test]
fn ws_query_writes_every_byte_value_in_decimal_into_an_exact_buffer() {
    // values beyond a nibble are not valid parameters but are written as given (one, two and
    // three digits); the exact length fits, one byte less is refused with that length
    for v in 0..=u8::MAX {
        let p = WsParams {
            version: v,
            codec: v / 3,
            platform: 255 - v,
        };
        let want = format!(
            "version={}&codec={}&platform={}",
            p.version, p.codec, p.platform
        );
        assert_eq!(p.query_len(), want.len(), "{p:?}");
        let mut buf = vec![0u8; want.len()];
        assert_eq!(p.write_query(&mut buf), Ok(want.len()), "{p:?}");
        assert_eq!(buf, want.as_bytes());
        let mut short = vec![0u8; want.len() - 1];
        assert_eq!(
            p.write_query(&mut short),
            Err(BufferTooSmall {
                required: want.len()
            })
        );
        assert!(short.iter().all(|&b| b == 0), "nothing written");
    }
}
