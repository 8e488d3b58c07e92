//! Property tests for the game wire codec: round trips, exact lengths, no panics on any input

use proptest::prelude::*;
use proptest::sample::Index;
use tether_net::game::wire::*;
use tether_net::BufferTooSmall;

fn token() -> impl Strategy<Value = Token> {
    any::<[u8; 4]>().prop_map(Token)
}

/// Arbitrary UTF-8 without NUL, cut on a char boundary to at most 127 bytes
fn reason_text() -> impl Strategy<Value = String> {
    "[^\\x00]{0,130}".prop_map(|s| {
        let mut end = s.len().min(MAX_REASON_LEN);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s[..end].to_owned()
    })
}

fn header() -> impl Strategy<Value = Header> {
    (any::<[bool; 3]>(), 0..ACK_MODULO, any::<u8>()).prop_map(
        |([compression, resend, control], ack, num_chunks)| Header {
            flags: Flags {
                compression,
                resend,
                control,
            },
            ack,
            num_chunks,
        },
    )
}

/// Build the control message `kind` (0..=4) borrowing `text` for a CLOSE
fn control(kind: u8, text: &str) -> Control<'_> {
    match kind {
        0 => Control::KeepAlive,
        1 => Control::Connect,
        2 => Control::ConnectAccept,
        3 => Control::Accept,
        _ => Control::Close(Reason::from_str(text)),
    }
}

/// Emit into an exact buffer, checking the length against `buffer_len` and every smaller size
fn emit_control(pkt: &ControlPacket<'_>) -> Result<Vec<u8>, TestCaseError> {
    let len = pkt.buffer_len();
    let mut buf = vec![0u8; len];
    prop_assert_eq!(pkt.emit(&mut buf), Ok(len));
    for size in 0..len {
        let mut small = vec![0xA5; size];
        prop_assert_eq!(pkt.emit(&mut small), Err(BufferTooSmall { required: len }));
        prop_assert!(
            small.iter().all(|&b| b == 0xA5),
            "buffer of {} bytes touched",
            size
        );
    }
    Ok(buf)
}

/// Datagrams that are mostly plausible: a header byte from the interesting set, an id, anything after
fn plausible_datagram() -> impl Strategy<Value = Vec<u8>> {
    let b0 = prop::sample::select(vec![
        0x00u8, 0x10, 0x11, 0x13, 0x14, 0x18, 0x20, 0x40, 0x50, 0x80, 0x90, 0xFF,
    ]);
    (
        b0,
        any::<u8>(),
        prop::sample::select(vec![0u8, 1, 255]),
        0u8..7,
        prop::collection::vec(any::<u8>(), 0..150),
    )
        .prop_map(|(b0, b1, b2, id, rest)| {
            let mut v = vec![b0, b1, b2, id];
            v.extend(rest);
            v
        })
}

fn any_datagram() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..1500),
        plausible_datagram(),
        prop::collection::vec(any::<u8>(), 0..8)
    ]
}

/// Checks that hold for every successful parse
fn check_parsed(buf: &[u8], mode: TokenMode, p: &Parsed<'_>) -> Result<(), TestCaseError> {
    match p.packet {
        Packet::Control(c) => {
            prop_assert!(c.ack < ACK_MODULO);
            if let Control::Close(r) = c.control {
                prop_assert!(r.len() <= MAX_REASON_LEN);
                prop_assert!(!r.as_bytes().contains(&0));
                prop_assert_eq!(
                    r.as_str().is_none(),
                    p.warnings.contains(Warnings::REASON_INVALID_UTF8)
                );
                prop_assert!(!r.text().to_string().chars().any(char::is_control));
            }
            match mode {
                TokenMode::Vanilla => prop_assert!(c.token.is_none()),
                TokenMode::Trailing => prop_assert!(c.token.is_some()),
                TokenMode::Detect => {
                    if matches!(c.control, Control::Close(_)) {
                        prop_assert!(c.token.is_none());
                    }
                }
            }
            // re-emitting a parsed control packet and parsing it again gives the same packet
            let again = emit_control(&c)?;
            let q =
                parse(&again, mode).map_err(|e| TestCaseError::fail(format!("re-parse: {e}")))?;
            prop_assert_eq!(q.packet, Packet::Control(c));
        }
        Packet::Chunks(c) => {
            prop_assert!(!c.header.flags.control);
            let start = buf.as_ptr() as usize;
            let p0 = c.payload.as_ptr() as usize;
            prop_assert!(
                p0 >= start && p0 + c.payload.len() <= start + buf.len(),
                "payload borrowed from input"
            );
            let token_len = if c.token.is_some() { 4 } else { 0 };
            prop_assert_eq!(HEADER_LEN + c.payload.len() + token_len, buf.len());
            let mut out = vec![0u8; c.buffer_len()];
            prop_assert_eq!(c.emit(&mut out), Ok(buf.len()));
            prop_assert_eq!(&out[..], buf);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn header_round_trip(h in header()) {
        let mut buf = [0u8; 3];
        prop_assert_eq!(h.emit(&mut buf), Ok(Header::LEN));
        prop_assert_eq!(buf[0] & RESERVED_MASK, 0);
        prop_assert_eq!(buf[0] & FLAG_CONNLESS, 0);
        prop_assert_eq!(Header::parse(&buf), Ok(h));
        for size in 0..3 {
            prop_assert_eq!(h.emit(&mut [0u8; 3][..size]), Err(BufferTooSmall { required: 3 }));
        }
    }

    #[test]
    fn control_round_trip_vanilla(kind in 0u8..5, ack in 0..ACK_MODULO, text in reason_text()) {
        prop_assert_eq!(Reason::from_str(&text).as_str(), Some(text.as_str()));
        let pkt = ControlPacket { ack, control: control(kind, &text), token: None };
        let bytes = emit_control(&pkt)?;
        prop_assert_eq!(bytes[0], 0x10 | (ack >> 8) as u8, "no compression/resend on control");
        prop_assert_eq!(bytes[2], 0);
        let p = parse(&bytes, TokenMode::Vanilla).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(p.packet, Packet::Control(pkt));
        prop_assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        // Detect reads the vanilla forms the same way
        let p = parse(&bytes, TokenMode::Detect).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(p.packet, Packet::Control(pkt));
        prop_assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }

    #[test]
    fn control_round_trip_trailing(kind in 0u8..5, ack in 0..ACK_MODULO, text in reason_text(), t in token()) {
        let pkt = ControlPacket { ack, control: control(kind, &text), token: Some(t) };
        let bytes = emit_control(&pkt)?;
        prop_assert_eq!(&bytes[bytes.len() - 4..], &t.0[..], "token is last");
        let p = parse(&bytes, TokenMode::Trailing).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(p.packet, Packet::Control(pkt));
        prop_assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        // Detect finds the token of everything but CLOSE; a CLOSE with a reason keeps its reason
        let p = parse(&bytes, TokenMode::Detect).map_err(|e| TestCaseError::fail(e.to_string()))?;
        if kind < 4 {
            prop_assert_eq!(p.packet, Packet::Control(pkt));
            prop_assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        } else if !text.is_empty() {
            prop_assert_eq!(p.packet, Packet::Control(ControlPacket { token: None, ..pkt }));
            prop_assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        }
    }

    #[test]
    fn chunk_round_trip(
        h in header(),
        payload in prop::collection::vec(any::<u8>(), 0..=MAX_PACKET_LEN - HEADER_LEN - 4),
        t in token(),
        with_token in any::<bool>(),
        cut in any::<Index>(),
    ) {
        let header = Header { flags: Flags { control: false, ..h.flags }, ..h };
        let trailing = with_token && !header.flags.compression;
        let pkt = ChunkPacket { header, payload: &payload, token: trailing.then_some(t) };
        let len = pkt.buffer_len();
        let mut buf = vec![0u8; len];
        prop_assert_eq!(pkt.emit(&mut buf), Ok(len));
        let mode = if with_token { TokenMode::Trailing } else { TokenMode::Vanilla };
        let p = parse(&buf, mode).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(p.packet, Packet::Chunks(pkt));
        prop_assert!(p.warnings.is_empty());
        if !with_token {
            prop_assert_eq!(parse(&buf, TokenMode::Detect).map(|p| p.packet), Ok(Packet::Chunks(pkt)));
        }
        for size in [0, cut.index(len), len - 1] {
            let mut small = vec![0xA5; size];
            prop_assert_eq!(pkt.emit(&mut small), Err(BufferTooSmall { required: len }));
            prop_assert!(small.iter().all(|&b| b == 0xA5));
        }
    }

    #[test]
    fn parse_never_panics(buf in any_datagram()) {
        for mode in [TokenMode::Vanilla, TokenMode::Trailing, TokenMode::Detect] {
            match parse(&buf, mode) {
                Ok(p) => check_parsed(&buf, mode, &p)?,
                Err(DecodeError::TooShort { len }) => prop_assert!(len == buf.len() && len < 3),
                Err(DecodeError::TooLong { len }) => prop_assert!(len == buf.len() && len > MAX_PACKET_LEN),
                Err(_) => {}
            }
            let _ = Header::parse(&buf);
        }
    }
}
