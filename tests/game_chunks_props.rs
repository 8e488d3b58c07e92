//! Property tests for the chunk layer codecs: round trips of every codec, exact lengths, and
//! decoders that never panic on arbitrary bytes and report exact errors

use proptest::prelude::*;
use tether_net::game::chunk::{
    decompress_packet, write_packet, Chunk, ChunkError, ChunkFlags, ChunkHeader, ChunkWriter,
    Chunks, PushError, MAX_CHUNK_SIZE, SCRATCH_LEN,
};
use tether_net::game::connless::{
    ClientInfo, ClientList, Connless, InfoKind, InfoRequest, InfoRequestKind, ServerInfo,
    ServerInfoMore,
};
use tether_net::game::huffman::{code, compress, compressed_len, decompress, DecompressError};
use tether_net::game::msg::{self, Message};
use tether_net::game::packer::{
    int_len, read_int, write_int, MsgHeader, MsgId, Packer, Str, Unpacker,
};
use tether_net::game::wire::{self, Flags, Header, Packet, Token, TokenMode};
use tether_net::BufferTooSmall;

/// `f` writes exactly `len` bytes into an exact buffer and refuses every smaller one untouched
fn exact<F: Fn(&mut [u8]) -> Result<usize, BufferTooSmall>>(
    len: usize,
    f: F,
) -> Result<Vec<u8>, TestCaseError> {
    let mut buf = vec![0u8; len];
    prop_assert_eq!(f(&mut buf), Ok(len));
    for size in [0, len / 2, len.saturating_sub(1)] {
        if size < len {
            let mut small = vec![0xA5; size];
            prop_assert_eq!(f(&mut small), Err(BufferTooSmall { required: len }));
            prop_assert!(small.iter().all(|&b| b == 0xA5), "short buffer touched");
        }
    }
    Ok(buf)
}

fn no_nul(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(1u8..=255, 0..max)
}

/// Payloads made of chunk headers with short sizes (any flag and sequence bits), then arbitrary
/// bytes: mostly whole chunks, the last one often cut
fn chunky_payload() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec((any::<[u8; 3]>(), 0usize..40), 0..60),
        proptest::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|(chunks, tail)| {
            let mut p = Vec::new();
            for ([b0, b1, b2], size) in chunks {
                let b0 = b0 & 0xC0 | (size >> 4) as u8;
                p.extend_from_slice(&[b0, b1 & 0xF0 | (size & 0xF) as u8]);
                if b0 & 0x40 != 0 {
                    p.push(b2);
                }
                p.extend(std::iter::repeat_n(b2, size));
            }
            p.extend_from_slice(&tail);
            p
        })
}

fn chunk_flags() -> impl Strategy<Value = ChunkFlags> {
    any::<(bool, bool)>().prop_map(|(vital, resend)| ChunkFlags { vital, resend })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    // ---------------------------------------------------------------- chunk header and chunks

    #[test]
    fn chunk_header_round_trip(flags in chunk_flags(), size in 0u16..1024, seq in 0u16..1024) {
        let h = ChunkHeader { flags, size, seq: if flags.vital { seq } else { 0 } };
        let bytes = exact(h.buffer_len(), |b| h.emit(b))?;
        prop_assert_eq!(ChunkHeader::parse(&bytes), Ok((h, h.buffer_len())));
    }

    #[test]
    fn chunk_header_of_any_bytes(bytes in any::<[u8; 3]>()) {
        let (h, n) = ChunkHeader::parse(&bytes).unwrap();
        prop_assert!(h.size < 1024 && h.seq < 1024);
        prop_assert_eq!(n, h.buffer_len());
        // re-emitted canonically: same header; same bytes unless the input was not canonical
        let mut out = [0u8; 3];
        h.emit(&mut out).unwrap();
        prop_assert_eq!(ChunkHeader::parse(&out), Ok((h, n)));
        let canonical = if h.flags.vital {
            bytes[1] & 0x30 == (bytes[2] >> 2) & 0x30
        } else {
            bytes[1] & 0xF0 == 0
        };
        prop_assert_eq!(out[..n] == bytes[..n], canonical);
        for cut in 0..n {
            let truncated = matches!(ChunkHeader::parse(&bytes[..cut]), Err(ChunkError::TruncatedHeader { .. }));
            prop_assert!(truncated);
        }
    }

    #[test]
    fn chunks_iterator_equals_chunk_parse(
        payload in prop_oneof![chunky_payload(), proptest::collection::vec(any::<u8>(), 0..1500)],
        n in any::<u8>(),
    ) {
        // the iterator (which reads whole chunks in place) against Chunk::parse, one by one
        let mut it = Chunks::new(&payload, n);
        let mut pos = 0;
        for index in 0..n {
            match Chunk::parse(&payload[pos..]) {
                Ok((chunk, len)) => {
                    prop_assert_eq!(it.next(), Some(Ok(chunk)));
                    pos += len;
                }
                Err(e) => {
                    let located = match e {
                        ChunkError::TruncatedHeader { .. } => ChunkError::TruncatedHeader { index, offset: pos },
                        ChunkError::TruncatedData { size, available, .. } => {
                            ChunkError::TruncatedData { index, offset: pos, size, available }
                        }
                        e => e,
                    };
                    prop_assert_eq!(it.next(), Some(Err(located)));
                    break;
                }
            }
        }
        prop_assert_eq!(it.next(), None);
    }

    #[test]
    fn chunks_of_any_payload_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..1500), n in any::<u8>()) {
        let mut it = Chunks::new(&payload, n);
        let mut count = 0usize;
        let mut used = 0usize;
        let mut errored = false;
        for item in it.by_ref() {
            prop_assert!(!errored, "item after an error");
            match item {
                Ok(c) => {
                    count += 1;
                    used += c.buffer_len();
                    prop_assert!(c.data.len() <= MAX_CHUNK_SIZE);
                }
                Err(ChunkError::TruncatedHeader { index, offset }) => {
                    prop_assert_eq!((usize::from(index), offset), (count, used));
                    errored = true;
                }
                Err(ChunkError::TruncatedData { index, offset, size, available }) => {
                    prop_assert_eq!((usize::from(index), offset), (count, used));
                    prop_assert!(usize::from(size) > available);
                    prop_assert_eq!(offset + if payload[offset] & 0x40 != 0 { 3 } else { 2 } + available, payload.len());
                    errored = true;
                }
                Err(e) => prop_assert!(false, "unexpected {e:?}"),
            }
        }
        prop_assert!(count <= usize::from(n));
        prop_assert!(used <= payload.len());
        if !errored {
            prop_assert_eq!(count, usize::from(n));
            prop_assert_eq!(it.trailing(), &payload[used..]);
        }
    }

    #[test]
    fn writer_then_iterator_round_trip(
        chunks in proptest::collection::vec((chunk_flags(), 0u16..1024, proptest::collection::vec(any::<u8>(), 0..700)), 0..12),
        limit in 0usize..1500,
    ) {
        let mut buf = vec![0u8; 1500];
        let mut w = ChunkWriter::new(&mut buf, limit);
        let mut pushed = Vec::new();
        for (flags, seq, data) in &chunks {
            let c = Chunk { flags: *flags, seq: if flags.vital { *seq } else { 0 }, data };
            let before = w.len();
            match w.push(&c) {
                Ok(()) => pushed.push(c),
                Err(PushError::Full { required, available }) => {
                    prop_assert_eq!(required, c.buffer_len());
                    prop_assert!(required > available);
                    prop_assert_eq!(w.len(), before);
                }
                Err(e) => prop_assert!(false, "unexpected {e:?}"),
            }
            prop_assert!(w.len() <= limit);
        }
        let got: Vec<Chunk<'_>> = Chunks::new(w.as_bytes(), w.num_chunks()).map(|c| c.unwrap()).collect();
        prop_assert_eq!(got, pushed);
    }

    #[test]
    fn packet_round_trip_through_compression(
        chunks in proptest::collection::vec((chunk_flags(), 0u16..1024, proptest::collection::vec(0u8..4, 0..300)), 0..6),
        ack in 0u16..1024, resend in any::<bool>(), token in any::<Option<[u8; 4]>>(), compress in any::<bool>(),
    ) {
        let mut construct = vec![0u8; 1400];
        let mut w = ChunkWriter::new(&mut construct, 1390);
        let mut pushed = Vec::new();
        for (flags, seq, data) in &chunks {
            let c = Chunk { flags: *flags, seq: if flags.vital { *seq } else { 0 }, data };
            if w.push(&c).is_ok() {
                pushed.push(c);
            }
        }
        let header = Header { flags: Flags { resend, ..Flags::default() }, ack, num_chunks: w.num_chunks() };
        let token = token.map(Token);
        let mut out = vec![0u8; 1400];
        let n = write_packet(header, w.as_bytes(), token, compress, &mut out).unwrap();
        prop_assert!(n <= 3 + w.len() + 4);
        prop_assert_eq!(out[0] & 0x80 != 0, n < 3 + w.len() + token.map_or(0, |_| 4));
        // compressed exactly when the Huffman form is strictly shorter
        let mut payload = w.as_bytes().to_vec();
        payload.extend_from_slice(token.as_ref().map_or(&[][..], |t| &t.0[..]));
        prop_assert_eq!(out[0] & 0x80 != 0, compress && payload.len() > 1 && compressed_len(&payload) < payload.len());
        let mut scratch = vec![0u8; SCRATCH_LEN];
        let plain = decompress_packet(&out[..n], &mut scratch).unwrap();
        let mode = if token.is_some() { TokenMode::Trailing } else { TokenMode::Vanilla };
        let Packet::Chunks(p) = wire::parse(plain, mode).unwrap().packet else {
            return Err(TestCaseError::fail("not a chunk packet"));
        };
        prop_assert_eq!(p.header, header);
        prop_assert_eq!(p.token, token);
        let got: Vec<Chunk<'_>> = Chunks::new(p.payload, p.header.num_chunks).map(|c| c.unwrap()).collect();
        prop_assert_eq!(got, pushed);
    }

    #[test]
    fn decompress_packet_of_any_datagram(data in proptest::collection::vec(any::<u8>(), 0..1402)) {
        let mut scratch = vec![0u8; SCRATCH_LEN];
        let compressed = data.first().is_some_and(|b| b & 0x80 != 0);
        if let Ok(plain) = decompress_packet(&data, &mut scratch) {
            prop_assert!(plain.len() <= 1400);
            if compressed {
                prop_assert!(plain.len() <= SCRATCH_LEN);
                prop_assert_eq!(&plain[..3], &[data[0] & 0x7f, data[1], data[2]][..]);
            } else {
                prop_assert_eq!(plain, &data[..]);
            }
            let _ = wire::parse(plain, TokenMode::Trailing);
        }
    }

    // ---------------------------------------------------------------- Huffman

    #[test]
    fn huffman_round_trip(data in proptest::collection::vec(any::<u8>(), 0..1400)) {
        let len = compressed_len(&data);
        let packed = exact_compress(&data, len)?;
        let mut out = vec![0u8; data.len()];
        prop_assert_eq!(decompress(&packed, &mut out), Ok(data.len()));
        prop_assert_eq!(&out, &data);
        if !data.is_empty() {
            let mut short = vec![0u8; data.len() - 1];
            prop_assert_eq!(decompress(&packed, &mut short), Err(DecompressError::OutputFull { limit: data.len() - 1 }));
        }
    }

    #[test]
    fn huffman_round_trip_skewed(data in proptest::collection::vec(prop_oneof![8 => Just(0u8), 1 => any::<u8>()], 0..=1394)) {
        let packed = exact_compress(&data, compressed_len(&data))?;
        let mut out = vec![0u8; 1394];
        let n = decompress(&packed, &mut out).unwrap();
        prop_assert_eq!(&out[..n], &data[..]);
    }

    #[test]
    fn huffman_decoder_on_any_bytes(input in proptest::collection::vec(any::<u8>(), 0..400), limit in 0usize..2000) {
        let mut out = vec![0u8; limit];
        let mut big = vec![0u8; 8 * 400 + 8];
        let wide = decompress(&input, &mut big);
        match decompress(&input, &mut out) {
            Ok(n) => {
                prop_assert_eq!(wide, Ok(n));
                prop_assert_eq!(&out[..n], &big[..n]);
                // the input starts with the exact encoding of what was decoded
                let bits = out[..n].iter().map(|&b| code(u16::from(b)).1 as usize).sum::<usize>() + 15;
                let mut again = vec![0u8; compressed_len(&out[..n])];
                compress(&out[..n], &mut again).unwrap();
                prop_assert_eq!(&input[..bits / 8], &again[..bits / 8]);
                let rest = bits % 8;
                if rest > 0 {
                    let mask = (1u8 << rest) - 1;
                    prop_assert_eq!(input[bits / 8] & mask, again[bits / 8] & mask);
                }
            }
            Err(DecompressError::OutputFull { limit: l }) => {
                prop_assert_eq!(l, limit);
                let longer = match wide {
                    Ok(n) => n > limit,
                    Err(DecompressError::Truncated { decoded }) => decoded > limit,
                    Err(_) => false,
                };
                prop_assert!(longer, "{wide:?} with limit {limit}");
            }
            Err(DecompressError::Truncated { decoded }) => {
                prop_assert!(decoded <= limit);
                prop_assert_eq!(wide, Err(DecompressError::Truncated { decoded }));
                prop_assert!(input.len() * 8 < 8 * 400 + 64);
            }
            Err(e) => prop_assert!(false, "unexpected {e:?}"),
        }
    }

    // ---------------------------------------------------------------- packer

    #[test]
    fn int_round_trip(v in any::<i32>()) {
        let bytes = exact(int_len(v), |b| write_int(v, b))?;
        prop_assert_eq!(read_int(&bytes), Ok((v, bytes.len())));
    }

    #[test]
    fn int_of_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..8)) {
        match read_int(&bytes) {
            Ok((v, n)) => {
                prop_assert!((1..=5).contains(&n));
                // every byte but the last read has E set, the last has it clear (or is the 5th)
                prop_assert!(bytes[..n - 1].iter().all(|b| b & 0x80 != 0));
                prop_assert!(n == 5 || bytes[n - 1] & 0x80 == 0);
                // the canonical form is never longer and reads back the same value
                let mut canon = [0u8; 5];
                let m = write_int(v, &mut canon).unwrap();
                prop_assert!(m <= n);
                prop_assert_eq!(read_int(&canon[..m]), Ok((v, m)));
            }
            Err(_) => {
                let cut = bytes.iter().take(4).take_while(|b| *b & 0x80 != 0).count();
                prop_assert_eq!(cut, bytes.len(), "error although the int was complete");
            }
        }
    }

    #[test]
    fn strings_and_raw_round_trip(
        a in no_nul(40), b in no_nul(40), raw in proptest::collection::vec(any::<u8>(), 0..40), v in any::<i32>(),
    ) {
        let mut buf = vec![0u8; 200];
        let mut p = Packer::new(&mut buf);
        p.str(Str::from_bytes(&a)).unwrap();
        p.int(v).unwrap();
        p.raw(&raw).unwrap();
        p.str(Str::from_bytes(&b)).unwrap();
        let n = p.written();
        prop_assert_eq!(n, a.len() + 1 + int_len(v) + raw.len() + b.len() + 1);
        let mut u = Unpacker::new(&buf[..n]);
        prop_assert_eq!(u.str().unwrap().as_bytes(), &a[..]);
        prop_assert_eq!(u.int(), Ok(v));
        prop_assert_eq!(u.raw(raw.len()).unwrap(), &raw[..]);
        prop_assert_eq!(u.str().unwrap().as_bytes(), &b[..]);
        prop_assert!(u.is_empty());
        // the display form is safe text
        let t = Str::from_bytes(&a).to_text::<64>();
        prop_assert!(t.chars().all(|c| c as u32 >= 0x20));
    }

    #[test]
    fn msg_header_round_trip(system in any::<bool>(), id in 1u16..=u16::MAX, uuid in any::<[u8; 16]>(), ext in any::<bool>()) {
        let h = if ext { MsgHeader::uuid(system, uuid) } else { MsgHeader { system, id: MsgId::Ordinal(id) } };
        let bytes = exact(h.buffer_len(), |b| h.emit(b))?;
        prop_assert_eq!(MsgHeader::parse(&bytes), Ok((h, &[][..])));
    }

    // ---------------------------------------------------------------- messages

    #[test]
    fn any_message_bytes(data in proptest::collection::vec(any::<u8>(), 0..80)) {
        if let Ok(m) = Message::parse(&data) {
            let bytes = exact(m.buffer_len(), |b| m.emit(b))?;
            prop_assert!(bytes.len() <= data.len(), "re-emitted longer than the input");
            prop_assert_eq!(Message::parse(&bytes), Ok(m));
            prop_assert_eq!(m.header(), MsgHeader::parse(&bytes).unwrap().0);
        }
    }

    #[test]
    fn every_message_round_trips(
        s1 in no_nul(30), s2 in no_nul(30), s3 in no_nul(30),
        ints in any::<[i32; 8]>(), crc in any::<u32>(),
        blob in proptest::collection::vec(any::<u8>(), 0..300),
        sha in any::<[u8; 32]>(), id16 in any::<[u8; 16]>(),
        input in proptest::collection::vec(any::<i32>(), 0..20),
        opt in any::<Option<i32>>(),
    ) {
        let (a, b, c) = (Str::from_bytes(&s1), Str::from_bytes(&s2), Str::from_bytes(&s3));
        let [i0, i1, i2, i3, i4, i5, i6, _] = ints;
        let msgs = [
            Message::Info(msg::Info { version: a, password: b }),
            Message::MapChange(msg::MapChange { name: a, crc, size: i0 }),
            Message::MapData(msg::MapData { last: i0, crc, chunk: i1, data: &blob }),
            Message::ConReady(msg::ConReady {}),
            Message::Snap(msg::Snap { tick: i0, delta: i1, num_parts: i2, part: i3, crc: i4, data: &blob }),
            Message::SnapEmpty(msg::SnapEmpty { tick: i0, delta: i1 }),
            Message::SnapSingle(msg::SnapSingle { tick: i0, delta: i1, crc: i2, data: &blob }),
            Message::InputTiming(msg::InputTiming { intended_tick: i0, time_left: i1 }),
            Message::RconAuthStatus(msg::RconAuthStatus { authed: i0, cmdlist: opt }),
            Message::RconLine(msg::RconLine { line: a }),
            Message::Ready(msg::Ready {}),
            Message::EnterGame(msg::EnterGame {}),
            Message::Input(msg::Input { ack_tick: i0, intended_tick: i1, input: msg::InputInts::from_values(&input) }),
            Message::RconCmd(msg::RconCmd { command: a }),
            Message::RconAuth(msg::RconAuth { name: a, password: b, send_cmds: opt }),
            Message::RequestMapData(msg::RequestMapData { chunk: i0 }),
            Message::Ping(msg::Ping {}),
            Message::PingReply(msg::PingReply {}),
            Message::RconCmdAdd(msg::RconCmdAdd { name: a, help: b, params: c }),
            Message::RconCmdRem(msg::RconCmdRem { name: a }),
            Message::RconType(msg::RconType { username_required: i0 }),
            Message::Capabilities(msg::Capabilities { version: i0, flags: i1 }),
            Message::MapDetails(msg::MapDetails { name: a, sha256: sha, crc, size: i0, url: b }),
            Message::ClientVer(msg::ClientVer { connection_id: id16, ddnet_version: i0, version: a }),
            Message::PingEx(msg::PingEx { id: id16 }),
            Message::PongEx(msg::PongEx { id: id16 }),
            Message::Game { id: MsgId::Ordinal(20), body: &blob },
            Message::Game { id: MsgId::Uuid(id16), body: &blob },
        ];
        for m in msgs {
            let bytes = exact(m.buffer_len(), |buf| m.emit(buf))?;
            prop_assert_eq!(Message::parse(&bytes), Ok(m));
        }
        let si = msg::StartInfo { name: a, clan: b, country: i0, skin: c, use_custom_color: i1, color_body: i5, color_feet: i6 };
        let bytes = exact(si.buffer_len(), |buf| si.emit(buf))?;
        prop_assert_eq!(msg::StartInfo::parse(&bytes), Ok(si));
    }

    // ---------------------------------------------------------------- connless

    #[test]
    fn info_request_round_trip(legacy in any::<bool>(), extended in any::<bool>(), token in any::<u32>()) {
        let r = InfoRequest {
            kind: if legacy { InfoRequestKind::Legacy64 } else { InfoRequestKind::Info },
            extended,
            token: token & if extended { 0xFF_FFFF } else { 0xFF },
        };
        let bytes = exact(r.buffer_len(), |b| r.emit(b))?;
        prop_assert_eq!(InfoRequest::parse(&bytes), Ok(r));
        prop_assert_eq!(Connless::parse(&bytes), Ok(Connless::InfoRequest(r)));
    }

    #[test]
    fn server_info_round_trip(
        strs in proptest::collection::vec(no_nul(20), 4), nums in any::<[i32; 7]>(), crc in any::<u32>(),
        kind in 0u8..3, clients in proptest::collection::vec((no_nul(16), no_nul(12), any::<[i32; 3]>()), 0..20),
    ) {
        let list: Vec<ClientInfo<'_>> = clients.iter().map(|(n, c, [country, score, p])| ClientInfo {
            name: Str::from_bytes(n), clan: Str::from_bytes(c), country: *country, score: *score, is_player: *p,
        }).collect();
        let kind = match kind {
            0 => InfoKind::Vanilla,
            1 => InfoKind::Extended { map_crc: crc, map_size: nums[5] },
            _ => InfoKind::Legacy64 { offset: nums[6] },
        };
        let i = ServerInfo {
            kind, token: nums[0], version: Str::from_bytes(&strs[0]), name: Str::from_bytes(&strs[1]),
            map: Str::from_bytes(&strs[2]), game_type: Str::from_bytes(&strs[3]), flags: nums[1],
            num_players: nums[2], max_players: nums[3], num_clients: nums[4], max_clients: nums[5],
            clients: ClientList::from_slice(&list),
        };
        let bytes = exact(i.buffer_len(), |b| i.emit(b))?;
        let back = ServerInfo::parse(&bytes).unwrap();
        prop_assert_eq!(back, i);
        prop_assert_eq!(back.clients.iter().collect::<Vec<_>>(), list.clone());
        let more = ServerInfoMore { token: nums[0], packet_no: nums[1], clients: ClientList::from_slice(&list) };
        let bytes = exact(more.buffer_len(), |b| more.emit(b))?;
        prop_assert_eq!(Connless::parse(&bytes), Ok(Connless::InfoMore(more)));
    }

    #[test]
    fn connless_of_any_bytes(head in prop_oneof![Just(vec![0xffu8; 10]), Just(b"xe\x01\x02\0\0\xff\xff\xff\xff".to_vec()), proptest::collection::vec(any::<u8>(), 0..10)],
                             ty in prop_oneof![Just(b"inf3".to_vec()), Just(b"iext".to_vec()), Just(b"iex+".to_vec()), Just(b"dtsf".to_vec()), Just(b"gie3".to_vec()), proptest::collection::vec(any::<u8>(), 4)],
                             body in proptest::collection::vec(prop_oneof![4 => 0x30u8..0x3a, 2 => Just(0u8), 1 => any::<u8>()], 0..120)) {
        let data = [head, ty, body].concat();
        if let Ok(c) = Connless::parse(&data) {
            let bytes = exact(c.buffer_len(), |b| c.emit(b))?;
            prop_assert_eq!(Connless::parse(&bytes), Ok(c));
        }
    }
}

/// Compress into exactly `len` bytes; one byte less fails
fn exact_compress(data: &[u8], len: usize) -> Result<Vec<u8>, TestCaseError> {
    let mut packed = vec![0u8; len];
    prop_assert_eq!(compress(data, &mut packed), Ok(len));
    let mut short = vec![0u8; len - 1];
    prop_assert!(compress(data, &mut short).is_err());
    Ok(packed)
}
