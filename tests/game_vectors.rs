//! Byte-exact vectors from spec/game.md A.12 (plus A.3–A.7 edge cases), each emitted and parsed
//!
//! Every positive vector is one `#[test]` (named after the vector) that checks: `buffer_len` equals
//! the vector length, `emit` writes exactly the vector bytes, every shorter buffer gets
//! `BufferTooSmall { required: len }` and stays untouched, and `parse` in the given mode gives back
//! the same packet without warnings.

use tether_net::game::wire::*;
use tether_net::BufferTooSmall;

/// Parse "10 00 0a" style hex (leaked, so parsed packets may borrow it freely)
fn hex(s: &str) -> &'static [u8] {
    Box::leak(hexv(s).into_boxed_slice())
}

/// Parse "10 00 0a" style hex into a vector
fn hexv(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap_or_else(|_| panic!("bad hex byte {b:?}")))
        .collect()
}

const T: Token = Token([0x12, 0x34, 0x56, 0x78]);
const LIVE_T: Token = Token([0x28, 0x6A, 0x6E, 0x4B]);
const LIVE_T2: Token = Token([0x73, 0xFA, 0x9D, 0x1E]);

fn ctl(ack: u16, control: Control<'_>, token: Option<Token>) -> ControlPacket<'_> {
    ControlPacket {
        ack,
        control,
        token,
    }
}

fn close(reason: &str) -> Control<'_> {
    Control::Close(Reason::from_str(reason))
}

/// Emit must produce exactly `bytes`; every smaller buffer is refused untouched
fn check_emit(pkt: &ControlPacket<'_>, bytes: &[u8]) {
    let len = bytes.len();
    assert_eq!(pkt.buffer_len(), len, "buffer_len");
    let mut buf = vec![0xAA; len];
    assert_eq!(pkt.emit(&mut buf), Ok(len), "emit length");
    assert_eq!(buf, bytes, "emitted bytes");
    // a larger buffer: only the prefix is written
    let mut big = vec![0xAA; len + 10];
    assert_eq!(pkt.emit(&mut big), Ok(len));
    assert_eq!(&big[..len], bytes);
    assert!(
        big[len..].iter().all(|&b| b == 0xAA),
        "wrote past the packet"
    );
    for size in 0..len {
        let mut small = vec![0x5A; size];
        assert_eq!(
            pkt.emit(&mut small),
            Err(BufferTooSmall { required: len }),
            "size {size}"
        );
        assert!(
            small.iter().all(|&b| b == 0x5A),
            "buffer of {size} bytes was touched"
        );
    }
}

fn check_parse(bytes: &[u8], mode: TokenMode, pkt: &ControlPacket<'_>) {
    let parsed = parse(bytes, mode).unwrap_or_else(|e| panic!("{mode:?}: {e}"));
    assert_eq!(parsed.packet, Packet::Control(*pkt), "{mode:?}");
    assert!(
        parsed.warnings.is_empty(),
        "{mode:?}: {:?}",
        parsed.warnings
    );
}

/// One positive vector: emit + parse in each listed mode
macro_rules! vector {
    ($name:ident: $hex:literal, $pkt:expr, [$($mode:ident),+]) => {
        #[test]
        fn $name() {
            let bytes = hex($hex);
            let pkt = $pkt;
            check_emit(&pkt, &bytes);
            $( check_parse(&bytes, TokenMode::$mode, &pkt); )+
        }
    };
}

// ---- A.12 table, vanilla column (parsed in Vanilla mode; Detect gives the same for these) ----
vector!(vanilla_keep_alive_ack0: "10 00 00 00", ctl(0, Control::KeepAlive, None), [Vanilla, Detect]);
vector!(vanilla_keep_alive_ack1: "10 01 00 00", ctl(1, Control::KeepAlive, None), [Vanilla, Detect]);
vector!(vanilla_keep_alive_ack255: "10 FF 00 00", ctl(255, Control::KeepAlive, None), [Vanilla, Detect]);
vector!(vanilla_keep_alive_ack256: "11 00 00 00", ctl(256, Control::KeepAlive, None), [Vanilla, Detect]);
vector!(vanilla_keep_alive_ack513: "12 01 00 00", ctl(513, Control::KeepAlive, None), [Vanilla, Detect]);
vector!(vanilla_keep_alive_ack1023: "13 FF 00 00", ctl(1023, Control::KeepAlive, None), [Vanilla, Detect]);
vector!(vanilla_connect: "10 00 00 01", ctl(0, Control::Connect, None), [Vanilla, Detect]);
vector!(vanilla_connect_accept: "10 00 00 02", ctl(0, Control::ConnectAccept, None), [Vanilla, Detect]);
vector!(vanilla_accept: "10 00 00 03", ctl(0, Control::Accept, None), [Vanilla, Detect]);
vector!(vanilla_close_no_reason: "10 00 00 04", ctl(0, close(""), None), [Vanilla, Detect]);
vector!(vanilla_close_bye: "10 00 00 04 62 79 65 00", ctl(0, close("bye"), None), [Vanilla, Detect]);
vector!(vanilla_close_42_ack1: "10 01 00 04 34 32 00", ctl(1, close("42"), None), [Vanilla, Detect]);

// ---- A.12 table, DDNet token column (Trailing mode) ----
vector!(token_keep_alive_ack0: "10 00 00 00 12 34 56 78", ctl(0, Control::KeepAlive, Some(T)), [Trailing, Detect]);
vector!(token_keep_alive_ack1: "10 01 00 00 12 34 56 78", ctl(1, Control::KeepAlive, Some(T)), [Trailing, Detect]);
// ack 255 / 256 / 513 token forms: not in the table, same header bytes as the vanilla rows + token
vector!(token_keep_alive_ack255: "10 FF 00 00 12 34 56 78", ctl(255, Control::KeepAlive, Some(T)), [Trailing, Detect]);
vector!(token_keep_alive_ack256: "11 00 00 00 12 34 56 78", ctl(256, Control::KeepAlive, Some(T)), [Trailing, Detect]);
vector!(token_keep_alive_ack513: "12 01 00 00 12 34 56 78", ctl(513, Control::KeepAlive, Some(T)), [Trailing, Detect]);
vector!(token_keep_alive_ack1023: "13 FF 00 00 12 34 56 78", ctl(1023, Control::KeepAlive, Some(T)), [Trailing, Detect]);
vector!(
    token_connect: "10 00 00 01 54 4B 45 4E FF FF FF FF",
    ctl(0, Control::Connect, Some(Token::UNKNOWN)),
    [Trailing, Detect]
);
vector!(
    token_connect_accept: "10 00 00 02 54 4B 45 4E 12 34 56 78",
    ctl(0, Control::ConnectAccept, Some(T)),
    [Trailing, Detect]
);
vector!(token_accept: "10 00 00 03 12 34 56 78", ctl(0, Control::Accept, Some(T)), [Trailing, Detect]);
// Detect mode reads `04 12 34 56 78` as a reason (A.7 ambiguity), see detect_close_without_reason_*
vector!(token_close_no_reason: "10 00 00 04 12 34 56 78", ctl(0, close(""), Some(T)), [Trailing]);
vector!(token_close_bye: "10 00 00 04 62 79 65 00 12 34 56 78", ctl(0, close("bye"), Some(T)), [Trailing]);
vector!(token_close_42_ack1: "10 01 00 04 34 32 00 12 34 56 78", ctl(1, close("42"), Some(T)), [Trailing]);

// ---- A.12 live captures from DDNet 16.4 ----
vector!(
    live_close_server_shutdown:
    "10 00 00 04 53 65 72 76 65 72 20 73 68 75 74 64 6F 77 6E 00 28 6A 6E 4B",
    ctl(0, close("Server shutdown"), Some(LIVE_T)),
    [Trailing]
);
vector!(
    live_close_kicked:
    "10 00 00 04 4B 69 63 6B 65 64 20 28 63 69 20 74 65 73 74 20 6B 69 63 6B 29 00 28 6A 6E 4B",
    ctl(0, close("Kicked (ci test kick)"), Some(LIVE_T)),
    [Trailing]
);
vector!(
    live_close_wrong_version_ack1:
    "10 01 00 04 57 72 6F 6E 67 20 76 65 72 73 69 6F 6E 2E 20 53 65 72 76 65 72 20 69 73 20 72 75 6E \
     6E 69 6E 67 20 27 30 2E 36 20 36 32 36 66 63 65 39 61 37 37 38 64 66 34 64 34 27 20 61 6E 64 20 \
     63 6C 69 65 6E 74 20 27 62 6F 67 75 73 2D 76 65 72 73 69 6F 6E 27 00 28 6A 6E 4B",
    ctl(1, close("Wrong version. Server is running '0.6 626fce9a778df4d4' and client 'bogus-version'"), Some(LIVE_T)),
    [Trailing]
);
vector!(
    live_close_per_ip_limit:
    "10 00 00 04 4F 6E 6C 79 20 34 20 70 6C 61 79 65 72 73 20 77 69 74 68 20 74 68 65 20 73 61 6D 65 \
     20 49 50 20 61 72 65 20 61 6C 6C 6F 77 65 64 00 73 FA 9D 1E",
    ctl(0, close("Only 4 players with the same IP are allowed"), Some(LIVE_T2)),
    [Trailing]
);

#[test]
fn live_capture_lengths_match_the_spec() {
    assert_eq!(ctl(1, close("Wrong version. Server is running '0.6 626fce9a778df4d4' and client 'bogus-version'"), Some(LIVE_T)).buffer_len(), 91);
    assert_eq!(
        ctl(
            0,
            close("Only 4 players with the same IP are allowed"),
            Some(LIVE_T2)
        )
        .buffer_len(),
        52
    );
    assert_eq!(
        ctl(0, close("Kicked (ci test kick)"), Some(LIVE_T)).buffer_len(),
        30
    );
    assert_eq!(
        ctl(0, close("Server shutdown"), Some(LIVE_T)).buffer_len(),
        24
    );
}

/// The refusal CLOSE arrives at a client that is still connecting: Detect mode reads the reason up
/// to its NUL and treats the 4 bytes after it as the (unreturned) token, without a warning
#[test]
fn live_close_per_ip_limit_in_detect_mode() {
    let bytes = hex(
        "10 00 00 04 4F 6E 6C 79 20 34 20 70 6C 61 79 65 72 73 20 77 69 74 68 20 74 68 65 20 73 61 6D 65 \
         20 49 50 20 61 72 65 20 61 6C 6C 6F 77 65 64 00 73 FA 9D 1E",
    );
    let p = parse(bytes, TokenMode::Detect).unwrap();
    assert_eq!(
        p.packet,
        Packet::Control(ctl(
            0,
            close("Only 4 players with the same IP are allowed"),
            None
        ))
    );
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

// ---- A.12 negative vectors ----

fn all_modes() -> [TokenMode; 3] {
    [TokenMode::Vanilla, TokenMode::Trailing, TokenMode::Detect]
}

fn assert_error(bytes: &[u8], err: DecodeError) {
    for mode in all_modes() {
        assert_eq!(parse(bytes, mode), Err(err), "{mode:?}");
    }
}

#[test]
fn negative_two_bytes_too_short() {
    assert_error(hex("10 00"), DecodeError::TooShort { len: 2 });
    assert_eq!(
        Header::parse(hex("10 00")),
        Err(DecodeError::TooShort { len: 2 })
    );
    assert_error(&[], DecodeError::TooShort { len: 0 });
}

#[test]
fn negative_control_without_id() {
    assert_error(hex("10 00 00"), DecodeError::MissingControlId);
}

#[test]
fn negative_1401_byte_datagram() {
    let mut big = vec![0u8; 1401];
    assert_error(&big, DecodeError::TooLong { len: 1401 });
    big[0] = 0x10;
    assert_error(&big, DecodeError::TooLong { len: 1401 });
    // 1400 bytes is the largest accepted datagram
    let ok = vec![0u8; MAX_PACKET_LEN];
    let p = parse(&ok, TokenMode::Vanilla).unwrap();
    assert!(matches!(p.packet, Packet::Chunks(c) if c.payload.len() == 1397));
}

#[test]
fn negative_0_6_5_token_flag() {
    assert_error(hex("18 00 00 00"), DecodeError::ReservedBits(0x08));
    // the docs' `& 0x0F` ack mask would read "18 05" as ack 2053
    assert_eq!(
        Header::parse(hex("18 05 00")),
        Err(DecodeError::ReservedBits(0x08))
    );
}

#[test]
fn negative_0_7_marker() {
    assert_error(hex("14 00 00 00"), DecodeError::ReservedBits(0x04));
    assert_error(hex("1C 00 00 00 01 02 03"), DecodeError::ReservedBits(0x0C));
    assert_error(hex("04 00 00"), DecodeError::ReservedBits(0x04));
}

#[test]
fn negative_compressed_control() {
    assert_error(
        hex("90 00 00 04 62 79 65 00"),
        DecodeError::CompressedControl,
    );
    assert_error(hex("90 00 00 15 37"), DecodeError::CompressedControl); // libtw2's sample
    assert_error(hex("D0 00 00"), DecodeError::CompressedControl);
}

#[test]
fn negative_connless() {
    assert_error(hex("FF FF FF FF FF FF 67 69 65 33"), DecodeError::Connless);
    assert_error(hex("20 00 00"), DecodeError::Connless);
    // connless wins over the reserved bits, as in the decoder recipe's order
    assert_eq!(Header::parse(hex("3C 00 00")), Err(DecodeError::Connless));
}

#[test]
fn negative_unknown_control_ids() {
    for id in 5..=255u8 {
        assert_error(&[0x10, 0x00, 0x00, id], DecodeError::UnknownControl(id));
        assert_error(
            &[0x10, 0x00, 0x00, id, 0x12, 0x34, 0x56, 0x78],
            DecodeError::UnknownControl(id),
        );
    }
}

#[test]
fn negative_control_num_chunks_is_a_warning() {
    let p = parse(hex("10 00 01 00"), TokenMode::Vanilla).unwrap();
    assert_eq!(p.packet, Packet::Control(ctl(0, Control::KeepAlive, None)));
    assert_eq!(p.warnings, Warnings::CONTROL_NUM_CHUNKS);
    let p = parse(hex("10 00 FF 04 12 34 56 78"), TokenMode::Trailing).unwrap();
    assert_eq!(p.packet, Packet::Control(ctl(0, close(""), Some(T))));
    assert_eq!(p.warnings, Warnings::CONTROL_NUM_CHUNKS);
}

#[test]
fn negative_wrong_token_is_returned_for_the_machine_to_reject() {
    let p = parse(hex("10 00 00 04 78 00 01 02 03 04"), TokenMode::Trailing).unwrap();
    let Packet::Control(c) = p.packet else {
        panic!("not a control packet")
    };
    assert_eq!(c.token, Some(Token([0x01, 0x02, 0x03, 0x04])));
    assert_ne!(c.token, Some(T));
    assert_eq!(c.control, close("x"));
    assert!(p.warnings.is_empty());
}

#[test]
fn negative_ack_out_of_range_still_parses_with_its_ack() {
    let p = parse(hex("10 05 00 04 79 00 12 34 56 78"), TokenMode::Trailing).unwrap();
    assert_eq!(p.packet, Packet::Control(ctl(5, close("y"), Some(T))));
    assert!(p.warnings.is_empty());
}

#[test]
fn negative_missing_token_in_trailing_mode() {
    assert_eq!(
        parse(hex("10 00 00 00"), TokenMode::Trailing),
        Err(DecodeError::MissingToken)
    );
    assert_eq!(
        parse(hex("10 00 00 03 12 34 56"), TokenMode::Trailing),
        Err(DecodeError::MissingToken)
    );
    assert_eq!(
        parse(hex("10 00 00 04"), TokenMode::Trailing),
        Err(DecodeError::MissingToken)
    );
    assert_eq!(
        parse(hex("00 00 01 12 34 56"), TokenMode::Trailing),
        Err(DecodeError::MissingToken)
    );
    assert_eq!(
        parse(hex("00 00 00"), TokenMode::Trailing),
        Err(DecodeError::MissingToken)
    );
}

// ---- Vanilla mode: extra bytes ----

#[test]
fn vanilla_extra_bytes_after_keep_alive_accept_connect() {
    for (bytes, control) in [
        ("10 00 00 00 12 34 56 78", Control::KeepAlive),
        ("10 00 00 03 12 34 56 78", Control::Accept),
        ("10 00 00 01 54 4B 45 4E FF FF FF FF", Control::Connect),
        (
            "10 00 00 02 54 4B 45 4E 12 34 56 78",
            Control::ConnectAccept,
        ),
        ("10 00 00 00 00", Control::KeepAlive),
    ] {
        let p = parse(hex(bytes), TokenMode::Vanilla).unwrap();
        assert_eq!(p.packet, Packet::Control(ctl(0, control, None)), "{bytes}");
        assert_eq!(p.warnings, Warnings::EXTRA_BYTES, "{bytes}");
    }
}

#[test]
fn trailing_extra_bytes_before_token() {
    let p = parse(hex("10 00 00 03 AA 12 34 56 78"), TokenMode::Trailing).unwrap();
    assert_eq!(p.packet, Packet::Control(ctl(0, Control::Accept, Some(T))));
    assert_eq!(p.warnings, Warnings::EXTRA_BYTES);
    let p = parse(
        hex("10 00 00 02 58 4B 45 4E 12 34 56 78"),
        TokenMode::Trailing,
    )
    .unwrap();
    assert_eq!(
        p.packet,
        Packet::Control(ctl(0, Control::ConnectAccept, Some(T)))
    );
    assert_eq!(p.warnings, Warnings::EXTRA_BYTES);
}

#[test]
fn control_resend_flag_is_reported() {
    let p = parse(hex("50 00 00 00"), TokenMode::Vanilla).unwrap();
    assert_eq!(p.packet, Packet::Control(ctl(0, Control::KeepAlive, None)));
    assert_eq!(p.warnings, Warnings::CONTROL_RESEND);
}

// ---- CLOSE reasons (A.7) ----

/// A vanilla CLOSE (ack 0) carrying `text` and its NUL
fn close_packet(text: &[u8]) -> Vec<u8> {
    let mut bytes = hexv("10 00 00 04");
    bytes.extend_from_slice(text);
    bytes.push(0);
    bytes
}

fn parse_close(bytes: &str, mode: TokenMode) -> (Reason<'static>, Option<Token>, Warnings) {
    parse_close_bytes(hex(bytes), mode)
}

/// A CLOSE parsed: its reason, token and warnings
fn parse_close_bytes(bytes: &[u8], mode: TokenMode) -> (Reason<'_>, Option<Token>, Warnings) {
    let p = parse(bytes, mode).unwrap();
    match p.packet {
        Packet::Control(ControlPacket {
            control: Control::Close(r),
            token,
            ..
        }) => (r, token, p.warnings),
        other => panic!("not a CLOSE: {other:?}"),
    }
}

#[test]
fn reason_without_nul() {
    let (r, t, w) = parse_close("10 00 00 04 62 79 65", TokenMode::Vanilla);
    assert_eq!(
        (r.as_str(), t, w),
        (Some("bye"), None, Warnings::REASON_MISSING_NUL)
    );
    let (r, t, w) = parse_close("10 00 00 04 62 79 65 12 34 56 78", TokenMode::Trailing);
    assert_eq!(
        (r.as_str(), t, w),
        (Some("bye"), Some(T), Warnings::REASON_MISSING_NUL)
    );
}

#[test]
fn reason_with_invalid_utf8() {
    let (r, t, w) = parse_close("10 00 00 04 FF FE 41 00", TokenMode::Vanilla);
    assert_eq!(r.as_bytes(), &[0xFF, 0xFE, 0x41]);
    assert_eq!(r.as_str(), None);
    assert_eq!(t, None);
    assert_eq!(w, Warnings::REASON_INVALID_UTF8);
    assert_eq!(r.text().to_string(), "\u{FFFD}\u{FFFD}A");
}

#[test]
fn reason_of_200_bytes_is_truncated_to_127() {
    let text = "a".repeat(200);
    let mut bytes = close_packet(text.as_bytes());
    bytes.extend_from_slice(&T.0);
    let (r, token, warnings) = parse_close_bytes(&bytes, TokenMode::Trailing);
    assert_eq!(r.len(), MAX_REASON_LEN);
    assert_eq!(r.as_str(), Some(&text[..127]));
    assert_eq!(token, Some(T));
    assert_eq!(warnings, Warnings::REASON_TRUNCATED);
}

#[test]
fn reason_of_200_bytes_multibyte_is_truncated_on_a_char_boundary() {
    let text = "é".repeat(100); // 200 bytes, 2 per char: 127 would split a char
    let bytes = close_packet(text.as_bytes());
    let (r, _, warnings) = parse_close_bytes(&bytes, TokenMode::Vanilla);
    assert_eq!(r.as_str(), Some(&text[..126]));
    assert_eq!(warnings, Warnings::REASON_TRUNCATED);
}

#[test]
fn reason_followed_by_extra_bytes() {
    let (r, t, w) = parse_close("10 00 00 04 62 79 65 00 AA BB", TokenMode::Vanilla);
    assert_eq!(
        (r.as_str(), t, w),
        (Some("bye"), None, Warnings::REASON_TRAILING_BYTES)
    );
    let (r, t, w) = parse_close(
        "10 00 00 04 62 79 65 00 AA BB 12 34 56 78",
        TokenMode::Trailing,
    );
    assert_eq!(
        (r.as_str(), t, w),
        (Some("bye"), Some(T), Warnings::REASON_TRAILING_BYTES)
    );
    // Detect: 4 bytes after the NUL are a token, anything else is reported
    let (r, t, w) = parse_close("10 00 00 04 62 79 65 00 AA BB", TokenMode::Detect);
    assert_eq!(
        (r.as_str(), t, w),
        (Some("bye"), None, Warnings::REASON_TRAILING_BYTES)
    );
    let (r, t, w) = parse_close("10 00 00 04 62 79 65 00 12 34 56 78", TokenMode::Detect);
    assert_eq!((r.as_str(), t, w), (Some("bye"), None, Warnings::NONE));
    // Vanilla: the same 4 bytes after the NUL are unexpected
    let (_, _, w) = parse_close("10 00 00 04 62 79 65 00 12 34 56 78", TokenMode::Vanilla);
    assert_eq!(w, Warnings::REASON_TRAILING_BYTES);
}

#[test]
fn reason_several_warnings_at_once() {
    let mut bytes = hexv("10 00 00 04");
    bytes.extend(std::iter::repeat_n(0xFF, 130));
    let p = parse(&bytes, TokenMode::Vanilla).unwrap();
    let Packet::Control(ControlPacket {
        control: Control::Close(r),
        ..
    }) = p.packet
    else {
        panic!()
    };
    assert_eq!(r.len(), 127);
    let expected =
        Warnings::REASON_MISSING_NUL | Warnings::REASON_TRUNCATED | Warnings::REASON_INVALID_UTF8;
    assert_eq!(p.warnings, expected);
    assert!(p.warnings.contains(Warnings::REASON_TRUNCATED));
    assert!(!p.warnings.contains(Warnings::EXTRA_BYTES));
    assert_eq!(
        format!("{:?}", p.warnings),
        "Warnings(REASON_MISSING_NUL | REASON_INVALID_UTF8 | REASON_TRUNCATED)"
    );
}

#[test]
fn reason_nul_only_is_empty_without_warning() {
    let (r, _, w) = parse_close("10 00 00 04 00", TokenMode::Vanilla);
    assert!(r.is_empty());
    assert!(w.is_empty());
}

#[test]
fn reason_text_replaces_control_chars_and_keeps_the_bytes() {
    let r = Reason::from_str("a\tb\nc\u{7f}");
    assert_eq!(r.text().to_string(), "a b c ");
    assert_eq!(r.text().as_bytes(), b"a\tb\nc\x7f");
    let r = Reason::from_str("héllo");
    assert_eq!(r.text().to_string(), "héllo");
    assert_eq!(r.text().to_str(), Some("héllo"));
}

#[test]
fn emit_reason_with_nul_is_cut_at_the_nul() {
    let pkt = ctl(0, close("abc\0def"), None);
    check_emit(&pkt, hex("10 00 00 04 61 62 63 00"));
    let pkt = ctl(0, close("\0abc"), Some(T));
    check_emit(&pkt, hex("10 00 00 04 12 34 56 78"));
}

#[test]
fn emit_reason_of_200_bytes_is_truncated_to_127() {
    let text = "b".repeat(200);
    let pkt = ctl(7, Control::Close(Reason::from_str(&text)), Some(T));
    let mut expected = hexv("10 07 00 04");
    expected.extend_from_slice(&text.as_bytes()[..127]);
    expected.push(0);
    expected.extend_from_slice(&T.0);
    check_emit(&pkt, &expected);
    let p = parse(&expected, TokenMode::Trailing).unwrap();
    assert_eq!(p.packet, Packet::Control(pkt));
    assert!(p.warnings.is_empty());
}

#[test]
fn emit_reason_multibyte_truncated_on_char_boundary() {
    let text = "€".repeat(50); // 150 bytes, 3 per char → 126 bytes kept
    let r = Reason::from_str(&text);
    assert_eq!(r.len(), 126);
    assert_eq!(r.as_str(), Some(&text[..126]));
    assert_eq!(
        Reason::from_bytes(text.as_bytes()).len(),
        127,
        "from_bytes is not UTF-8 aware"
    );
}

// ---- Detect mode (A.5 structural rules) ----

#[test]
fn detect_connect_with_tken() {
    let p = parse(
        hex("10 00 00 01 54 4B 45 4E FF FF FF FF"),
        TokenMode::Detect,
    )
    .unwrap();
    assert_eq!(
        p.packet,
        Packet::Control(ctl(0, Control::Connect, Some(Token::UNKNOWN)))
    );
    assert!(p.warnings.is_empty());
    // the 4 bytes after the magic are not checked
    let p = parse(
        hex("10 00 00 01 54 4B 45 4E 00 00 00 07"),
        TokenMode::Detect,
    )
    .unwrap();
    assert_eq!(
        p.packet,
        Packet::Control(ctl(0, Control::Connect, Some(Token([0, 0, 0, 7]))))
    );
}

#[test]
fn detect_connect_with_unknown_short_data_is_vanilla() {
    for data in [
        "10 00 00 01 AA BB",
        "10 00 00 01 54 4B 45 4E",
        "10 00 00 01 54 4B 45 4E FF FF FF",
        "10 00 00 01 58 58 58 58 FF FF FF FF",
    ] {
        let p = parse(hex(data), TokenMode::Detect).unwrap();
        assert_eq!(
            p.packet,
            Packet::Control(ctl(0, Control::Connect, None)),
            "{data}"
        );
        assert_eq!(p.warnings, Warnings::EXTRA_BYTES, "{data}");
    }
}

#[test]
fn detect_connect_with_data_after_the_token() {
    let p = parse(
        hex("10 00 00 01 54 4B 45 4E FF FF FF FF 01"),
        TokenMode::Detect,
    )
    .unwrap();
    assert_eq!(
        p.packet,
        Packet::Control(ctl(0, Control::Connect, Some(Token::UNKNOWN)))
    );
    assert_eq!(p.warnings, Warnings::EXTRA_BYTES);
}

#[test]
fn detect_accept_with_4_token_bytes() {
    let p = parse(hex("10 00 00 03 12 34 56 78"), TokenMode::Detect).unwrap();
    assert_eq!(p.packet, Packet::Control(ctl(0, Control::Accept, Some(T))));
    assert!(p.warnings.is_empty());
    let p = parse(hex("10 00 00 03 12 34 56"), TokenMode::Detect).unwrap();
    assert_eq!(p.packet, Packet::Control(ctl(0, Control::Accept, None)));
    assert_eq!(p.warnings, Warnings::EXTRA_BYTES);
}

#[test]
fn detect_connect_accept_bare() {
    let p = parse(hex("10 00 00 02"), TokenMode::Detect).unwrap();
    assert_eq!(
        p.packet,
        Packet::Control(ctl(0, Control::ConnectAccept, None))
    );
    assert!(p.warnings.is_empty());
}

#[test]
fn detect_close_without_reason_but_with_token_reads_the_token_as_reason() {
    // A.7 ambiguity: without connection state, `04 12 34 56 78` is a 4-byte reason without NUL
    let (r, t, w) = parse_close("10 00 00 04 12 34 56 78", TokenMode::Detect);
    assert_eq!(r.as_bytes(), &T.0);
    assert_eq!(t, None);
    assert_eq!(w, Warnings::REASON_MISSING_NUL);
}

// ---- chunk packets ----

#[test]
fn chunk_packet_vanilla_pass_through() {
    let bytes = hex("40 05 02 AA BB CC");
    let p = parse(bytes, TokenMode::Vanilla).unwrap();
    let expected = ChunkPacket {
        header: Header {
            flags: Flags {
                resend: true,
                ..Flags::default()
            },
            ack: 5,
            num_chunks: 2,
        },
        payload: &bytes[3..],
        token: None,
    };
    assert_eq!(p.packet, Packet::Chunks(expected));
    assert!(p.warnings.is_empty());
    let Packet::Chunks(c) = p.packet else {
        panic!()
    };
    assert!(core::ptr::eq(c.payload, &bytes[3..]), "payload is borrowed");
    assert_eq!(expected.buffer_len(), 6);
    let mut out = [0u8; 6];
    assert_eq!(expected.emit(&mut out), Ok(6));
    assert_eq!(out[..], bytes[..]);
    assert_eq!(
        parse(bytes, TokenMode::Detect).unwrap().packet,
        Packet::Chunks(expected)
    );
}

#[test]
fn chunk_packet_trailing_token() {
    let bytes = hex("01 02 01 AA BB 12 34 56 78");
    let p = parse(bytes, TokenMode::Trailing).unwrap();
    let expected = ChunkPacket {
        header: Header {
            flags: Flags::default(),
            ack: 258,
            num_chunks: 1,
        },
        payload: &bytes[3..5],
        token: Some(T),
    };
    assert_eq!(p.packet, Packet::Chunks(expected));
    let mut out = vec![0xEE; 9];
    assert_eq!(expected.emit(&mut out), Ok(9));
    assert_eq!(out, bytes);
    let mut small = vec![0xEE; 8];
    assert_eq!(
        expected.emit(&mut small),
        Err(BufferTooSmall { required: 9 })
    );
    assert!(small.iter().all(|&b| b == 0xEE));
}

#[test]
fn chunk_packet_compressed_token_is_not_stripped() {
    let bytes = hex("80 00 06 4A 0E DA 82");
    let p = parse(bytes, TokenMode::Trailing).unwrap();
    let Packet::Chunks(c) = p.packet else {
        panic!()
    };
    assert_eq!(c.payload, &bytes[3..]);
    assert_eq!(c.token, None);
    assert!(c.header.flags.compression);
    assert_eq!(c.header.num_chunks, 6);
}

#[test]
fn chunk_emit_clears_the_control_flag() {
    let c = ChunkPacket {
        header: Header {
            flags: Flags {
                control: true,
                ..Flags::default()
            },
            ack: 0,
            num_chunks: 1,
        },
        payload: &[0x00],
        token: None,
    };
    let mut out = [0u8; 4];
    assert_eq!(c.emit(&mut out), Ok(4));
    assert_eq!(out, [0x00, 0x00, 0x01, 0x00]);
}

// ---- header ----

#[test]
fn header_ack_encodings() {
    for (ack, b0, b1) in [
        (0u16, 0x10, 0x00),
        (1, 0x10, 0x01),
        (255, 0x10, 0xFF),
        (256, 0x11, 0x00),
        (513, 0x12, 0x01),
        (1023, 0x13, 0xFF),
    ] {
        let h = Header {
            flags: Flags {
                control: true,
                ..Flags::default()
            },
            ack,
            num_chunks: 0,
        };
        let mut buf = [0u8; 3];
        assert_eq!(h.emit(&mut buf), Ok(3));
        assert_eq!(buf, [b0, b1, 0], "ack {ack}");
        assert_eq!(Header::parse(&buf), Ok(h));
    }
    let h = Header {
        flags: Flags {
            compression: true,
            resend: true,
            control: false,
        },
        ack: 1023,
        num_chunks: 9,
    };
    let mut buf = [0u8; 3];
    h.emit(&mut buf).unwrap();
    assert_eq!(buf, [0xC3, 0xFF, 0x09]);
    assert_eq!(h.emit(&mut [0u8; 2]), Err(BufferTooSmall { required: 3 }));
}

#[test]
fn control_emit_never_sets_compression_or_resend_and_wraps_ack() {
    let pkt = ctl(1024 + 5, Control::KeepAlive, None);
    let mut buf = [0u8; 4];
    pkt.emit(&mut buf).unwrap();
    assert_eq!(buf, [0x10, 0x05, 0x00, 0x00]);
}

#[test]
fn token_sentinels() {
    assert!(Token::UNKNOWN.is_sentinel());
    assert!(Token::UNSUPPORTED.is_sentinel());
    assert!(!T.is_sentinel());
    assert_eq!(Token::UNKNOWN.0, [0xFF; 4]);
    assert_eq!(Token::UNSUPPORTED.0, [0; 4]);
}

#[test]
fn control_ids() {
    for (id, c) in [
        (0u8, ControlId::KeepAlive),
        (1, ControlId::Connect),
        (2, ControlId::ConnectAccept),
        (3, ControlId::Accept),
        (4, ControlId::Close),
    ] {
        assert_eq!(ControlId::try_from(id), Ok(c));
        assert_eq!(c as u8, id);
    }
    assert_eq!(ControlId::try_from(5), Err(DecodeError::UnknownControl(5)));
    assert_eq!(close("x").id(), ControlId::Close);
}

#[test]
fn decode_errors_display() {
    let e: &dyn core::error::Error = &DecodeError::TooLong { len: 1401 };
    assert!(e.to_string().contains("1401"));
    assert!(DecodeError::UnknownControl(9).to_string().contains('9'));
    assert!(DecodeError::ReservedBits(0x08).to_string().contains("0x08"));
}

#[test]
fn ack_range_wraps() {
    assert!(ack_in_range(0, 0, 0));
    assert!(!ack_in_range(1, 0, 0));
    assert!(ack_in_range(1023, 1000, 3));
    assert!(ack_in_range(2, 1000, 3));
    assert!(!ack_in_range(500, 1000, 3));
}

#[test]
fn ack_max_is_the_largest_ack_on_the_wire() {
    let pkt = ctl(ACK_MAX, Control::KeepAlive, None);
    check_emit(&pkt, hex("13 ff 00 00"));
    check_parse(hex("13 ff 00 00"), TokenMode::Vanilla, &pkt);
    // one more wraps to 0
    let mut buf = [0u8; 4];
    ctl(ACK_MAX + 1, Control::KeepAlive, None)
        .emit(&mut buf)
        .unwrap();
    assert_eq!(buf, [0x10, 0x00, 0x00, 0x00]);
    assert_eq!(ACK_MAX + 1, ACK_MODULO);
}

#[test]
fn tokens_near_the_sentinels_are_real_tokens() {
    // one byte away from 00000000 or FFFFFFFF, in each position
    for i in 0..4 {
        let mut zero = [0u8; 4];
        zero[i] = 1;
        let mut ones = [0xFF; 4];
        ones[i] = 0xFE;
        assert!(!Token(zero).is_sentinel(), "{zero:02x?}");
        assert!(!Token(ones).is_sentinel(), "{ones:02x?}");
    }
    assert!(!Token([0x00, 0xFF, 0x00, 0xFF]).is_sentinel());
}

#[test]
fn warnings_are_a_set_of_distinct_bits() {
    let all = [
        Warnings::REASON_MISSING_NUL,
        Warnings::REASON_INVALID_UTF8,
        Warnings::REASON_TRUNCATED,
        Warnings::REASON_TRAILING_BYTES,
        Warnings::CONTROL_NUM_CHUNKS,
        Warnings::EXTRA_BYTES,
        Warnings::CONTROL_RESEND,
    ];
    assert_eq!(Warnings::NONE.bits(), 0);
    let mut seen = Warnings::NONE;
    for w in all {
        assert_eq!(w.bits().count_ones(), 1, "{w:?}");
        assert!(!seen.contains(w), "{w:?} shares a bit");
        let before = seen;
        seen |= w;
        assert_eq!(seen.bits(), before.bits() | w.bits());
        // a set already holding `w` stays the same
        assert_eq!(seen | w, seen);
        assert_eq!(seen.union(w), seen);
        assert!(seen.contains(w) && seen.contains(before));
    }
    assert_eq!(seen.bits().count_ones(), 7);
    // what parse reports is readable through bits(): CONTROL_RESEND is the resend flag's bit
    let p = parse(hex("50 00 00 00"), TokenMode::Vanilla).unwrap();
    assert_eq!(p.warnings.bits(), FLAG_RESEND);
}

#[test]
fn reason_of_exactly_127_bytes_is_kept_whole() {
    for (len, warnings) in [
        (MAX_REASON_LEN, Warnings::NONE),
        (MAX_REASON_LEN + 1, Warnings::REASON_TRUNCATED),
    ] {
        let text = "b".repeat(len);
        let bytes = close_packet(text.as_bytes());
        let (r, _, got) = parse_close_bytes(&bytes, TokenMode::Vanilla);
        assert_eq!(r.as_str(), Some(&text[..MAX_REASON_LEN]), "{len} bytes");
        assert_eq!(got, warnings, "{len} bytes");
    }
}
