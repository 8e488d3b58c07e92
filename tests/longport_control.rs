//! LongPort control bodies: byte-exact vectors of the protocol, malformed input and unknown fields

use tether_net::longport::control::{
    AuthRequest, AuthResponse, Body, Close, CloseCode, ErrorBody, Heartbeat, Metadata, PbError,
    ReconnectRequest, ReconnectResponse, SessionGrant, CMD_AUTH, CMD_CLOSE, CMD_HEARTBEAT,
    CMD_RECONNECT,
};
use tether_net::BufferTooSmall;

/// Hex to bytes; leaked so decoded views can borrow from it anywhere in a test
fn hex(s: &str) -> &'static [u8] {
    let v: Vec<u8> = s
        .split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    v.leak()
}

/// Encode `body`, checking `encoded_len`, the exact bytes, and that every shorter buffer is
/// refused with the exact size and left untouched
fn assert_encodes<'a, B: Body<'a>>(body: &B, expected: &[u8]) {
    assert_eq!(body.encoded_len(), expected.len(), "encoded_len");
    let mut buf = vec![0xEEu8; expected.len() + 8];
    let n = body.encode(&mut buf).unwrap();
    assert_eq!(&buf[..n], expected, "encoded bytes");
    assert!(buf[n..].iter().all(|&b| b == 0xEE), "wrote past its length");
    for short in 0..expected.len() {
        let mut buf = vec![0xEEu8; short];
        assert_eq!(
            body.encode(&mut buf),
            Err(BufferTooSmall {
                required: expected.len()
            })
        );
        assert!(
            buf.iter().all(|&b| b == 0xEE),
            "wrote into a too-small buffer ({short})"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Section 8 vectors
// ---------------------------------------------------------------------------------------------

#[test]
fn command_codes() {
    assert_eq!(
        (CMD_CLOSE, CMD_HEARTBEAT, CMD_AUTH, CMD_RECONNECT),
        (0, 1, 2, 3)
    );
}

#[test]
fn v2_heartbeat_timestamp_only() {
    let bytes = hex("08 80 d0 95 ff bc 31");
    let hb = Heartbeat::decode(bytes).unwrap();
    assert_eq!(
        hb,
        Heartbeat {
            timestamp: 1_700_000_000_000,
            heartbeat_id: None
        }
    );
    assert_encodes(&hb, bytes);
}

#[test]
fn v5_heartbeat_with_id() {
    // body of the 20-byte GO-style request
    let packet = hex("01 01 00 00 00 01 00 00 00 00 09 08 80 d0 95 ff bc 31 10 01");
    let bytes = &packet[11..];
    let hb = Heartbeat::decode(bytes).unwrap();
    assert_eq!(hb, Heartbeat::new(1_700_000_000_000, Some(1)));
    assert_encodes(&hb, bytes);
}

#[test]
fn v5_heartbeat_id_minus_one_is_a_ten_byte_varint() {
    let bytes = hex("08 80 d0 95 ff bc 31 10 ff ff ff ff ff ff ff ff ff 01");
    assert_eq!(bytes.len(), 18);
    let hb = Heartbeat::decode(bytes).unwrap();
    assert_eq!(hb, Heartbeat::new(1_700_000_000_000, Some(-1)));
    assert_encodes(&hb, bytes);
    // what GO emits for request id 0xFFFFFFFF
    assert_eq!(
        Heartbeat::new(1_700_000_000_000, Some(0xFFFF_FFFFu32 as i32)),
        hb
    );
}

#[test]
fn heartbeat_id_presence_is_kept() {
    // optional int32: Some(0) is written (tag 0x10, value 0); None is not
    let hb = Heartbeat::new(0, Some(0));
    assert_encodes(&hb, &[0x10, 0x00]);
    assert_eq!(Heartbeat::decode(&[0x10, 0x00]).unwrap(), hb);
    assert_encodes(&Heartbeat::new(0, None), &[]);
    assert_eq!(Heartbeat::decode(&[]).unwrap(), Heartbeat::new(0, None));
    // negative timestamp: int64 two's complement in 10 bytes
    let neg = Heartbeat::new(-2, None);
    assert_encodes(&neg, hex("08 fe ff ff ff ff ff ff ff ff 01"));
}

#[test]
fn v6_auth_request_token_only() {
    let bytes = hex("0a 03 61 62 63");
    let req = AuthRequest::decode(bytes).unwrap();
    assert_eq!(req.token, "abc");
    assert!(req.metadata.is_empty());
    assert_eq!(req.metadata.iter().count(), 0);
    assert_eq!(req, AuthRequest::new("abc", Metadata::EMPTY));
    assert_encodes(&req, bytes);
    // the same body inside the RS-style request packet
    let packet = hex("01 02 00 00 00 01 13 88 00 00 05 0a 03 61 62 63");
    assert_eq!(&packet[11..], bytes);
}

#[test]
fn v6_auth_request_with_accept_language() {
    let bytes =
        hex("0a 03 61 62 63 12 15 0a 0f 61 63 63 65 70 74 2d 6c 61 6e 67 75 61 67 65 12 02 65 6e");
    assert_eq!(bytes.len(), 28);
    let req = AuthRequest::decode(bytes).unwrap();
    assert_eq!(req.token, "abc");
    assert_eq!(req.metadata.len(), 1);
    assert_eq!(
        req.metadata.iter().collect::<Vec<_>>(),
        vec![("accept-language", "en")]
    );
    assert_eq!(req.metadata.get("accept-language"), Some("en"));
    assert_eq!(req.metadata.get("accept"), None);
    // a decoded view equals a slice view with the same entries, and re-encodes identically
    let pairs = [("accept-language", "en")];
    let built = AuthRequest::new("abc", Metadata::from_pairs(&pairs));
    assert_eq!(req, built);
    assert_encodes(&built, bytes);
    assert_encodes(&req, bytes);
}

#[test]
fn v7_auth_response() {
    let bytes = hex("0a 02 73 31 10 80 88 af a8 bd 31");
    let grant = AuthResponse::decode(bytes).unwrap();
    assert_eq!(
        grant,
        SessionGrant {
            session_id: "s1",
            expires: 1_700_086_400_000,
            limit: 0,
            online: 0
        }
    );
    assert_encodes(&grant, bytes);
}

#[test]
fn v7_auth_response_with_limit_and_online() {
    let packet = hex("02 02 00 00 00 01 00 00 00 0f 0a 02 73 31 10 80 88 af a8 bd 31 18 0a 20 01");
    let bytes = &packet[10..];
    let grant = AuthResponse::decode(bytes).unwrap();
    assert_eq!(
        grant,
        SessionGrant {
            session_id: "s1",
            expires: 1_700_086_400_000,
            limit: 10,
            online: 1
        }
    );
    assert_encodes(&grant, bytes);
}

#[test]
fn v8_reconnect_request_and_response() {
    let packet = hex("01 03 00 00 00 01 13 88 00 00 04 0a 02 73 31");
    let req = ReconnectRequest::decode(&packet[11..]).unwrap();
    assert_eq!(req, ReconnectRequest::new("s1", Metadata::EMPTY));
    assert_encodes(&req, &packet[11..]);

    let packet = hex("02 03 00 00 00 01 00 00 00 0b 0a 02 73 32 10 80 c0 c8 d1 bd 31");
    let grant = ReconnectResponse::decode(&packet[10..]).unwrap();
    assert_eq!(
        grant,
        SessionGrant {
            session_id: "s2",
            expires: 1_700_172_800_000,
            limit: 0,
            online: 0
        }
    );
    assert_encodes(&grant, &packet[10..]);
}

#[test]
fn v9_close_auth_error() {
    let packet = hex("03 00 00 00 0d 08 04 12 09 62 61 64 20 74 6f 6b 65 6e");
    let close = Close::decode(&packet[5..]).unwrap();
    assert_eq!(close, Close::new(CloseCode::AuthError, "bad token"));
    assert_encodes(&close, &packet[5..]);
}

#[test]
fn v9_close_empty_body_is_heartbeat_timeout() {
    let close = Close::decode(&[]).unwrap();
    assert_eq!(
        close,
        Close {
            code: CloseCode::HeartbeatTimeout,
            reason: ""
        }
    );
    assert_encodes(&close, &[]);
    assert_eq!(Close::default(), close);
}

#[test]
fn v9_close_connect_duplicate() {
    let bytes = hex("08 06 12 03 64 75 70");
    let close = Close::decode(bytes).unwrap();
    assert_eq!(close, Close::new(CloseCode::ConnectDuplicate, "dup"));
    assert_encodes(&close, bytes);
}

#[test]
fn v10_error_bodies() {
    let packet = hex(
        "02 06 00 00 00 07 03 00 00 15 08 a0 b4 12 12 0f 69 6e 76 61 6c 69 64 20 72 65 71 75 65 73 74",
    );
    let err = ErrorBody::decode(&packet[10..]).unwrap();
    assert_eq!(err, ErrorBody::new(301_600, "invalid request"));
    assert_encodes(&err, &packet[10..]);

    let packet = hex(
        "02 02 00 00 00 01 06 00 00 22 08 93 03 12 1d 63 6f 6e 6e 65 63 74 69 6f 6e 73 20 6c 69 6d 69 74 61 74 69 6f 6e 20 69 73 20 68 69 74",
    );
    let err = ErrorBody::decode(&packet[10..]).unwrap();
    assert_eq!(err, ErrorBody::new(403, "connections limitation is hit"));
    assert_encodes(&err, &packet[10..]);

    // clients must accept an empty error body
    assert_eq!(ErrorBody::decode(&[]).unwrap(), ErrorBody::new(0, ""));
}

// ---------------------------------------------------------------------------------------------
// Close codes
// ---------------------------------------------------------------------------------------------

#[test]
fn close_codes_round_trip_and_unknown_values_are_kept() {
    for v in 0..=6 {
        let code = CloseCode::from_i32(v);
        assert!(!matches!(code, CloseCode::Other(_)), "{v}");
        assert_eq!(code.to_i32(), v);
        assert_eq!(i32::from(code), v);
    }
    assert_eq!(CloseCode::from(7), CloseCode::Other(7));
    // unknown 99
    let close = Close::decode(&[0x08, 99]).unwrap();
    assert_eq!(close.code, CloseCode::Other(99));
    assert_encodes(&close, &[0x08, 99]);
    // negative enum value: 10-byte varint, kept
    let bytes = hex("08 fb ff ff ff ff ff ff ff ff 01");
    let close = Close::decode(bytes).unwrap();
    assert_eq!(close.code, CloseCode::Other(-5));
    assert_encodes(&close, bytes);
    // Other(4) built by hand encodes like AuthError
    assert_encodes(&Close::new(CloseCode::Other(4), ""), &[0x08, 0x04]);
}

// ---------------------------------------------------------------------------------------------
// proto3 semantics: last value wins, unknown fields skipped
// ---------------------------------------------------------------------------------------------

#[test]
fn repeated_scalar_and_string_fields_keep_the_last_value() {
    let close = Close::decode(hex("08 01 12 01 61 08 02 12 01 62")).unwrap();
    assert_eq!(close, Close::new(CloseCode::ServerShutdown, "b"));
    let hb = Heartbeat::decode(hex("10 05 08 01 10 07 08 02")).unwrap();
    assert_eq!(hb, Heartbeat::new(2, Some(7)));
    let g = SessionGrant::decode(hex("18 01 18 02 20 05 20 00 0a 01 61 0a 00")).unwrap();
    assert_eq!(
        g,
        SessionGrant {
            session_id: "",
            expires: 0,
            limit: 2,
            online: 0
        }
    );
    let e = ErrorBody::decode(hex("08 01 08 02 12 01 78")).unwrap();
    assert_eq!(e, ErrorBody::new(2, "x"));
    let a = AuthRequest::decode(hex("0a 01 61 0a 01 62")).unwrap();
    assert_eq!(a.token, "b");
}

#[test]
fn integers_truncate_like_prost() {
    // uint32 field given a 64-bit varint keeps the low 32 bits
    let g = SessionGrant::decode(hex("18 ff ff ff ff ff ff ff ff ff 01")).unwrap();
    assert_eq!(g.limit, u32::MAX);
    // int32 heartbeat_id given 2^32 + 5 keeps 5
    let hb = Heartbeat::decode(hex("10 85 80 80 80 10")).unwrap();
    assert_eq!(hb.heartbeat_id, Some(5));
}

/// One unknown field of every wire type: varint (field 9), i64 (field 10), len (field 11), i32 (field 12)
/// and a large field number (field 536870911, the maximum)
fn unknown_fields() -> Vec<u8> {
    let mut v = hex("48 96 01 51 01 02 03 04 05 06 07 08 5a 03 78 79 7a 65 aa bb cc dd").to_vec();
    // field 536870911 varint: key = (2^29 - 1) << 3 = 0xFFFFFFF8
    v.extend(hex("f8 ff ff ff 0f 01"));
    v
}

#[test]
fn unknown_fields_of_every_wire_type_are_skipped() {
    let u = unknown_fields();
    let with = |body: &str| {
        let mut v = u.clone();
        v.extend(hex(body));
        v.extend(&u);
        &*v.leak()
    };
    assert_eq!(
        Close::decode(with("08 04 12 09 62 61 64 20 74 6f 6b 65 6e")).unwrap(),
        Close::new(CloseCode::AuthError, "bad token")
    );
    assert_eq!(
        Heartbeat::decode(with("08 80 d0 95 ff bc 31 10 01")).unwrap(),
        Heartbeat::new(1_700_000_000_000, Some(1))
    );
    assert_eq!(
        SessionGrant::decode(with("0a 02 73 31 10 80 88 af a8 bd 31 18 0a 20 01")).unwrap(),
        SessionGrant {
            session_id: "s1",
            expires: 1_700_086_400_000,
            limit: 10,
            online: 1
        }
    );
    assert_eq!(
        ErrorBody::decode(with("08 93 03 12 02 6e 6f")).unwrap(),
        ErrorBody::new(403, "no")
    );
    let pairs = [("k", "v")];
    let req = AuthRequest::decode(with("0a 03 61 62 63 12 06 0a 01 6b 12 01 76")).unwrap();
    assert_eq!(req, AuthRequest::new("abc", Metadata::from_pairs(&pairs)));
    let req = ReconnectRequest::decode(with("0a 02 73 31 12 06 0a 01 6b 12 01 76")).unwrap();
    assert_eq!(
        req,
        ReconnectRequest::new("s1", Metadata::from_pairs(&pairs))
    );
    // unknown fields are not re-encoded
    assert_encodes(&req, hex("0a 02 73 31 12 06 0a 01 6b 12 01 76"));
}

#[test]
fn metadata_entries_tolerate_missing_parts_unknown_fields_and_interleaving() {
    // entry 1: value only; entry 2: key only; entry 3: empty; entry 4: unknown fields inside,
    // value before key, key repeated (last wins); token between the entries.
    let bytes = hex(concat!(
        "12 03 12 01 61 ",
        "12 03 0a 01 62 ",
        "0a 01 74 ",
        "12 00 ",
        "12 10 18 01 12 01 76 0a 01 78 25 00 00 00 00 0a 01 6b"
    ));
    let req = AuthRequest::decode(bytes).unwrap();
    assert_eq!(req.token, "t");
    assert_eq!(req.metadata.len(), 4);
    let entries: Vec<_> = req.metadata.iter().collect();
    assert_eq!(entries, vec![("", "a"), ("b", ""), ("", ""), ("k", "v")]);
    assert_eq!(req.metadata.iter().len(), 4);
    // map semantics: the last entry with a key wins
    assert_eq!(req.metadata.get(""), Some(""));
    assert_eq!(req.metadata.get("b"), Some(""));
    // canonical re-encoding: token first, defaults omitted inside entries
    assert_encodes(
        &req,
        hex("0a 01 74 12 03 12 01 61 12 03 0a 01 62 12 00 12 06 0a 01 6b 12 01 76"),
    );
    // Debug shows the entries as a map
    let dbg = format!("{:?}", req.metadata);
    assert!(dbg.contains("\"k\": \"v\""), "{dbg}");
}

#[test]
fn metadata_iteration_is_restartable_and_copyable() {
    let bytes = hex("12 06 0a 01 6b 12 01 76 12 06 0a 01 6b 12 01 77");
    let req = ReconnectRequest::decode(bytes).unwrap();
    let m = req.metadata;
    assert_eq!(
        m.iter().collect::<Vec<_>>(),
        m.into_iter().collect::<Vec<_>>()
    );
    assert_eq!((&m).into_iter().count(), 2);
    // the iterator knows how many entries are left, as it goes
    let mut it = m.iter();
    assert_eq!((it.len(), it.size_hint()), (2, (2, Some(2))));
    assert_eq!(it.next(), Some(("k", "v")));
    assert_eq!(it.len(), 1);
    assert_eq!(it.next(), Some(("k", "w")));
    assert_eq!((it.len(), it.next(), it.len()), (0, None, 0));
    assert_eq!(m.get("k"), Some("w"), "duplicate key: last wins");
    assert_ne!(m, Metadata::from_pairs(&[("k", "v")]));
    let pairs = Metadata::from_pairs(&[("k", "v"), ("k", "w")]);
    assert_eq!(m, pairs);
    assert!(!m.is_empty() && !pairs.is_empty() && Metadata::EMPTY.is_empty());
    // as many entries is not enough: the entries and their order count
    assert_ne!(m, Metadata::from_pairs(&[("k", "v"), ("k", "x")]));
    assert_ne!(pairs, Metadata::from_pairs(&[("k", "w"), ("k", "v")]));
    // equal views hash equally, whatever their backing
    use core::hash::BuildHasher;
    let state = std::hash::RandomState::new();
    assert_eq!(state.hash_one(m), state.hash_one(pairs));
    assert_ne!(
        state.hash_one(m),
        state.hash_one(Metadata::from_pairs(&[("k", "w"), ("k", "v")]))
    );
}

// ---------------------------------------------------------------------------------------------
// Malformed input
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_varints() {
    // value varint cut short
    assert_eq!(Heartbeat::decode(hex("08 80 d0")), Err(PbError::Truncated));
    // 11-byte varint
    assert_eq!(
        Heartbeat::decode(hex("08 80 80 80 80 80 80 80 80 80 80 01")),
        Err(PbError::VarintOverflow)
    );
    // 10 bytes but bits beyond 64
    assert_eq!(
        Heartbeat::decode(hex("08 ff ff ff ff ff ff ff ff ff 02")),
        Err(PbError::VarintOverflow)
    );
    // tag varint cut short
    assert_eq!(Close::decode(&[0x80]), Err(PbError::Truncated));
    // tag varint too long
    assert_eq!(Close::decode(&[0xff; 11]), Err(PbError::VarintOverflow));
    // tag beyond 32 bits
    assert_eq!(
        Close::decode(hex("80 80 80 80 10 00")),
        Err(PbError::BadFieldNumber)
    );
    // unknown-field varint overflow is still an error
    assert_eq!(
        ErrorBody::decode(hex("48 ff ff ff ff ff ff ff ff ff 7f")),
        Err(PbError::VarintOverflow)
    );
    // length prefix overflow
    assert_eq!(
        AuthRequest::decode(hex("0a ff ff ff ff ff ff ff ff ff 02")),
        Err(PbError::VarintOverflow)
    );
}

#[test]
fn wrong_wire_type_for_known_fields() {
    // token (field 1, string) sent as varint
    assert_eq!(
        AuthRequest::decode(hex("08 01")),
        Err(PbError::WrongWireType { field: 1 })
    );
    // token sent as fixed32
    assert_eq!(
        AuthRequest::decode(hex("0d 00 00 00 00")),
        Err(PbError::WrongWireType { field: 1 })
    );
    // metadata (field 2) sent as varint
    assert_eq!(
        AuthRequest::decode(hex("10 01")),
        Err(PbError::WrongWireType { field: 2 })
    );
    // map entry key sent as varint: reported against the map field
    assert_eq!(
        ReconnectRequest::decode(hex("12 02 08 01")),
        Err(PbError::WrongWireType { field: 2 })
    );
    // timestamp as length-delimited
    assert_eq!(
        Heartbeat::decode(hex("0a 00")),
        Err(PbError::WrongWireType { field: 1 })
    );
    // heartbeat_id as fixed64
    assert_eq!(
        Heartbeat::decode(hex("11 00 00 00 00 00 00 00 00")),
        Err(PbError::WrongWireType { field: 2 })
    );
    // close code as string, reason as varint
    assert_eq!(
        Close::decode(hex("0a 00")),
        Err(PbError::WrongWireType { field: 1 })
    );
    assert_eq!(
        Close::decode(hex("10 00")),
        Err(PbError::WrongWireType { field: 2 })
    );
    // session grant fields
    assert_eq!(
        SessionGrant::decode(hex("08 00")),
        Err(PbError::WrongWireType { field: 1 })
    );
    assert_eq!(
        SessionGrant::decode(hex("12 00")),
        Err(PbError::WrongWireType { field: 2 })
    );
    assert_eq!(
        SessionGrant::decode(hex("1d 00 00 00 00")),
        Err(PbError::WrongWireType { field: 3 })
    );
    assert_eq!(
        SessionGrant::decode(hex("22 00")),
        Err(PbError::WrongWireType { field: 4 })
    );
    assert_eq!(
        ErrorBody::decode(hex("0a 00")),
        Err(PbError::WrongWireType { field: 1 })
    );
    assert_eq!(
        ErrorBody::decode(hex("10 00")),
        Err(PbError::WrongWireType { field: 2 })
    );
}

#[test]
fn invalid_utf8_in_every_string_field() {
    let bad = "02 c3 28"; // length 2, invalid sequence
    assert_eq!(
        Close::decode(hex(&format!("12 {bad}"))),
        Err(PbError::InvalidUtf8 { field: 2 })
    );
    assert_eq!(
        AuthRequest::decode(hex(&format!("0a {bad}"))),
        Err(PbError::InvalidUtf8 { field: 1 })
    );
    assert_eq!(
        ReconnectRequest::decode(hex(&format!("0a {bad}"))),
        Err(PbError::InvalidUtf8 { field: 1 })
    );
    assert_eq!(
        SessionGrant::decode(hex(&format!("0a {bad}"))),
        Err(PbError::InvalidUtf8 { field: 1 })
    );
    assert_eq!(
        ErrorBody::decode(hex(&format!("12 {bad}"))),
        Err(PbError::InvalidUtf8 { field: 2 })
    );
    // metadata key, then value
    assert_eq!(
        AuthRequest::decode(hex("0a 01 61 12 04 0a 02 c3 28")),
        Err(PbError::InvalidUtf8 { field: 2 })
    );
    assert_eq!(
        ReconnectRequest::decode(hex("12 07 0a 01 6b 12 02 ff fe")),
        Err(PbError::InvalidUtf8 { field: 2 })
    );
    // an invalid entry after valid ones still fails the whole message
    assert_eq!(
        AuthRequest::decode(hex("12 03 0a 01 6b 12 04 12 02 c3 28")),
        Err(PbError::InvalidUtf8 { field: 2 })
    );
    // invalid bytes inside an unknown length-delimited field are fine
    assert_eq!(
        ErrorBody::decode(hex("5a 02 c3 28 08 01")),
        Ok(ErrorBody::new(1, ""))
    );
}

#[test]
fn truncated_fields() {
    // length-delimited longer than the body
    assert_eq!(
        AuthRequest::decode(hex("0a 05 61 62 63")),
        Err(PbError::Truncated)
    );
    assert_eq!(
        Close::decode(hex("12 09 62 61 64")),
        Err(PbError::Truncated)
    );
    // length prefix missing
    assert_eq!(SessionGrant::decode(hex("0a")), Err(PbError::Truncated));
    // varint value missing
    assert_eq!(ErrorBody::decode(hex("08")), Err(PbError::Truncated));
    // map entry overrunning its message
    assert_eq!(
        AuthRequest::decode(hex("12 06 0a 01 6b")),
        Err(PbError::Truncated)
    );
    // entry content truncated inside the entry
    assert_eq!(
        AuthRequest::decode(hex("12 03 0a 05 6b")),
        Err(PbError::Truncated)
    );
    // unknown fixed64 / fixed32 cut short
    assert_eq!(
        Heartbeat::decode(hex("49 01 02 03")),
        Err(PbError::Truncated)
    );
    assert_eq!(
        Heartbeat::decode(hex("4d 01 02 03")),
        Err(PbError::Truncated)
    );
}

#[test]
fn field_number_zero_and_bad_wire_types() {
    assert_eq!(Close::decode(hex("00 01")), Err(PbError::BadFieldNumber));
    assert_eq!(
        ErrorBody::decode(hex("02 00")),
        Err(PbError::BadFieldNumber)
    );
    assert_eq!(
        Heartbeat::decode(hex("08 01 06")),
        Err(PbError::BadWireType(6))
    );
    assert_eq!(Heartbeat::decode(hex("0f")), Err(PbError::BadWireType(7)));
    // field 0 inside a map entry
    assert_eq!(
        AuthRequest::decode(hex("12 02 00 00")),
        Err(PbError::BadFieldNumber)
    );
}

#[test]
fn group_wire_types_are_refused() {
    // start group field 1 / field 9, end group field 9
    assert_eq!(
        Close::decode(hex("0b 0c")),
        Err(PbError::Group { field: 1 })
    );
    assert_eq!(
        SessionGrant::decode(hex("4b 4c")),
        Err(PbError::Group { field: 9 })
    );
    assert_eq!(
        ErrorBody::decode(hex("08 01 4c")),
        Err(PbError::Group { field: 9 })
    );
    // inside a map entry
    assert_eq!(
        ReconnectRequest::decode(hex("12 02 1b 1c")),
        Err(PbError::Group { field: 3 })
    );
}

#[test]
fn errors_display_and_are_errors() {
    let errs = [
        PbError::Truncated,
        PbError::VarintOverflow,
        PbError::WrongWireType { field: 1 },
        PbError::InvalidUtf8 { field: 2 },
        PbError::BadWireType(6),
        PbError::BadFieldNumber,
        PbError::Group { field: 9 },
    ];
    let texts: Vec<String> = errs.iter().map(ToString::to_string).collect();
    for (i, t) in texts.iter().enumerate() {
        assert!(!t.is_empty());
        assert!(texts[..i].iter().all(|o| o != t), "duplicate message {t}");
    }
    let _: &dyn core::error::Error = &errs[0];
    assert_eq!(CloseCode::AuthError.to_string(), "auth error");
    assert_eq!(CloseCode::Other(9).to_string(), "close code 9");
}
