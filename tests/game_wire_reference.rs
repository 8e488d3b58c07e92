//! Differential property test: the game wire parser against a straightforward reference
//!
//! `reference_parse` and `reference_header` are the plain, step-by-step reading of the spec (the
//! codec as it was before its fast paths, spec A.3–A.8): every check in the documented order, no
//! shortcuts. The library's `parse` / `Header::parse` must give exactly the same `Ok` values (same
//! borrowed slices, same warnings) and the same `Err` values for any bytes in every token mode.

use proptest::prelude::*;
use tether_net::game::wire::*;

const MODES: [TokenMode; 3] = [TokenMode::Vanilla, TokenMode::Trailing, TokenMode::Detect];

fn reference_header(buf: &[u8]) -> Result<Header, DecodeError> {
    if buf.len() < HEADER_LEN {
        return Err(DecodeError::TooShort { len: buf.len() });
    }
    let (b0, b1, b2) = (buf[0], buf[1], buf[2]);
    if b0 & FLAG_CONNLESS != 0 {
        return Err(DecodeError::Connless);
    }
    if b0 & RESERVED_MASK != 0 {
        return Err(DecodeError::ReservedBits(b0 & RESERVED_MASK));
    }
    Ok(Header {
        flags: Flags {
            compression: b0 & FLAG_COMPRESSION != 0,
            resend: b0 & FLAG_RESEND != 0,
            control: b0 & FLAG_CONTROL != 0,
        },
        ack: u16::from(b0 & ACK_HIGH_MASK) * 256 + u16::from(b1),
        num_chunks: b2,
    })
}

/// The last 4 bytes as the token, or `MissingToken`
fn reference_split_token(data: &[u8]) -> Result<(&[u8], Token), DecodeError> {
    if data.len() < TOKEN_LEN {
        return Err(DecodeError::MissingToken);
    }
    let cut = data.len() - TOKEN_LEN;
    let t = &data[cut..];
    Ok((&data[..cut], Token([t[0], t[1], t[2], t[3]])))
}

fn reference_reason<'a>(extra: &'a [u8], token_may_follow: bool, w: &mut Warnings) -> Reason<'a> {
    if extra.is_empty() {
        return Reason::EMPTY;
    }
    let text = match extra.iter().position(|&b| b == 0) {
        Some(nul) => {
            let after = extra.len() - nul - 1;
            if after != 0 && !(token_may_follow && after == TOKEN_LEN) {
                *w |= Warnings::REASON_TRAILING_BYTES;
            }
            &extra[..nul]
        }
        None => {
            *w |= Warnings::REASON_MISSING_NUL;
            extra
        }
    };
    let valid = std::str::from_utf8(text).is_ok();
    let mut kept = text;
    if text.len() > MAX_REASON_LEN {
        *w |= Warnings::REASON_TRUNCATED;
        let mut end = MAX_REASON_LEN;
        if valid {
            while end > 0 && text[end] & 0xC0 == 0x80 {
                end -= 1;
            }
        }
        kept = &text[..end];
    }
    if !valid {
        *w |= Warnings::REASON_INVALID_UTF8;
    }
    // `kept` has no NUL and at most 127 bytes: `from_bytes` keeps it as it is
    Reason::from_bytes(kept)
}

fn reference_simple(id: u8) -> Control<'static> {
    match id {
        0 => Control::KeepAlive,
        1 => Control::Connect,
        2 => Control::ConnectAccept,
        3 => Control::Accept,
        _ => Control::Close(Reason::EMPTY),
    }
}

fn reference_parse(buf: &[u8], mode: TokenMode) -> Result<Parsed<'_>, DecodeError> {
    if buf.len() < HEADER_LEN {
        return Err(DecodeError::TooShort { len: buf.len() });
    }
    if buf.len() > MAX_PACKET_LEN {
        return Err(DecodeError::TooLong { len: buf.len() });
    }
    let header = reference_header(buf)?;
    let payload = &buf[HEADER_LEN..];
    let mut warnings = Warnings::NONE;

    if !header.flags.control {
        let (payload, token) = if mode == TokenMode::Trailing && !header.flags.compression {
            let (p, t) = reference_split_token(payload)?;
            (p, Some(t))
        } else {
            (payload, None)
        };
        return Ok(Parsed {
            packet: Packet::Chunks(ChunkPacket {
                header,
                payload,
                token,
            }),
            warnings,
        });
    }

    if header.flags.compression {
        return Err(DecodeError::CompressedControl);
    }
    if payload.is_empty() {
        return Err(DecodeError::MissingControlId);
    }
    let id = payload[0];
    let extra = &payload[1..];
    if id > 4 {
        return Err(DecodeError::UnknownControl(id));
    }
    if header.num_chunks != 0 {
        warnings |= Warnings::CONTROL_NUM_CHUNKS;
    }
    if header.flags.resend {
        warnings |= Warnings::CONTROL_RESEND;
    }

    let (control, token) = match mode {
        TokenMode::Vanilla => {
            if id == 4 {
                (
                    Control::Close(reference_reason(extra, false, &mut warnings)),
                    None,
                )
            } else {
                if !extra.is_empty() {
                    warnings |= Warnings::EXTRA_BYTES;
                }
                (reference_simple(id), None)
            }
        }
        TokenMode::Trailing => {
            let (extra, token) = reference_split_token(extra)?;
            let control = if id == 4 {
                Control::Close(reference_reason(extra, false, &mut warnings))
            } else {
                let magic_ok = (id == 1 || id == 2) && extra == TOKEN_MAGIC;
                if !extra.is_empty() && !magic_ok {
                    warnings |= Warnings::EXTRA_BYTES;
                }
                reference_simple(id)
            };
            (control, Some(token))
        }
        TokenMode::Detect => match id {
            4 => (
                Control::Close(reference_reason(extra, true, &mut warnings)),
                None,
            ),
            1 | 2 => {
                let token = if extra.len() >= 8 && extra[..4] == TOKEN_MAGIC {
                    Some(Token([extra[4], extra[5], extra[6], extra[7]]))
                } else {
                    None
                };
                let rest = if token.is_some() { &extra[8..] } else { extra };
                if !rest.is_empty() {
                    warnings |= Warnings::EXTRA_BYTES;
                }
                (reference_simple(id), token)
            }
            _ => {
                let token = if extra.len() >= 4 {
                    Some(Token([extra[0], extra[1], extra[2], extra[3]]))
                } else {
                    None
                };
                let rest = if token.is_some() { &extra[4..] } else { extra };
                if !rest.is_empty() {
                    warnings |= Warnings::EXTRA_BYTES;
                }
                (reference_simple(id), token)
            }
        },
    };
    Ok(Parsed {
        packet: Packet::Control(ControlPacket {
            ack: header.ack,
            control,
            token,
        }),
        warnings,
    })
}

/// Where a borrowed slice sits: equal results must borrow the same bytes of the datagram
fn span(s: &[u8]) -> (usize, usize) {
    (s.as_ptr() as usize, s.len())
}

fn borrowed_span(p: &Parsed<'_>) -> Option<(usize, usize)> {
    match p.packet {
        Packet::Chunks(c) => Some(span(c.payload)),
        Packet::Control(ControlPacket {
            control: Control::Close(r),
            ..
        }) if !r.is_empty() => Some(span(r.as_bytes())),
        Packet::Control(_) => None,
    }
}

fn check(buf: &[u8]) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        Header::parse(buf),
        reference_header(buf),
        "header of {:02x?}",
        buf
    );
    for mode in MODES {
        let got = parse(buf, mode);
        let want = reference_parse(buf, mode);
        prop_assert_eq!(got, want, "{:?} {:02x?}", mode, buf);
        if let (Ok(g), Ok(w)) = (got, want) {
            prop_assert_eq!(g.warnings.bits(), w.warnings.bits());
            prop_assert_eq!(
                borrowed_span(&g),
                borrowed_span(&w),
                "{:?} {:02x?}",
                mode,
                buf
            );
        }
    }
    Ok(())
}

/// Byte 0: anything, or one of the values a 0.6 parser accepts (flags and ack bits only)
fn first_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        any::<u8>(),
        any::<u8>().prop_map(|b| b & !(FLAG_CONNLESS | RESERVED_MASK)),
        any::<u8>().prop_map(|b| (b & (FLAG_RESEND | ACK_HIGH_MASK)) | FLAG_CONTROL),
    ]
}

/// Payload bytes with NULs, `TKEN` and non-UTF-8 bytes likely enough to hit every branch
fn payload_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            3 => any::<u8>().prop_map(|b| vec![b]),
            2 => Just(vec![0u8]),
            1 => Just(TOKEN_MAGIC.to_vec()),
            1 => "[a-zé€😀 ]{1,8}".prop_map(String::into_bytes),
            1 => prop::sample::select(vec![0x80u8, 0xC3, 0xE2, 0xF0, 0xFF]).prop_map(|b| vec![b]),
        ],
        0..max,
    )
    .prop_map(|parts| parts.concat())
}

fn datagram() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // short, fully random
        prop::collection::vec(any::<u8>(), 0..14),
        // header + id + structured payload
        (
            first_byte(),
            any::<u8>(),
            prop::sample::select(vec![0u8, 0, 1, 3, 255]),
            prop_oneof![0u8..=6, any::<u8>()],
            payload_bytes(48),
        )
            .prop_map(|(b0, b1, b2, id, rest)| {
                let mut v = vec![b0, b1, b2, id];
                v.extend(rest);
                v
            }),
        // a header followed by exactly 0..=12 bytes (token / magic boundaries)
        (
            first_byte(),
            any::<u8>(),
            any::<u8>(),
            prop::collection::vec(any::<u8>(), 0..=12)
        )
            .prop_map(|(b0, b1, b2, rest)| {
                let mut v = vec![b0, b1, b2];
                v.extend(rest);
                v
            }),
        // long reasons (truncation) and the 1400 / 1401 byte limit
        (first_byte(), 120usize..1410, any::<u8>()).prop_map(|(b0, len, fill)| {
            let mut v = vec![fill; len];
            v[0] = b0;
            if len > 3 {
                v[3] = 4;
            }
            v
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn parse_matches_reference(buf in datagram()) {
        check(&buf)?;
    }
}

/// Inputs at every edge the fast paths branch on, checked exhaustively over byte 0
#[test]
fn parse_matches_reference_on_edges() {
    let tails: [&[u8]; 14] = [
        &[],
        &[0],
        &[0, 1, 2, 3],
        &[0, 1, 2, 3, 4],
        &[1, b'T', b'K', b'E', b'N'],
        &[1, b'T', b'K', b'E', b'N', 1, 2, 3, 4],
        &[2, b'T', b'K', b'E', b'N', 1, 2, 3, 4, 5],
        &[2, b'T', b'K', b'E', b'X', 1, 2, 3, 4],
        &[3, 9, 9, 9, 9],
        &[4, b'a', 0, 1, 2, 3, 4],
        &[4, b'a', b'b', b'c', 0],
        &[4, 0xFF, 0, 1, 2, 3, 4],
        &[4, 1, 2, 3],
        &[5, 1, 2, 3, 4],
    ];
    for b0 in 0..=255u8 {
        for b2 in [0u8, 7] {
            for tail in tails {
                let mut v = vec![b0, 0x5A, b2];
                v.extend_from_slice(tail);
                for len in 0..=v.len() {
                    if let Err(e) = check(&v[..len]) {
                        panic!("{e}");
                    }
                }
            }
        }
    }
}
