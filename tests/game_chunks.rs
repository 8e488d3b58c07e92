//! The chunk layer against live DDNet 16.4 captures: packets decompressed, split into chunks,
//! messages decoded, and our encoders reproducing the same bytes; connectionless server info

use tether_net::game::chunk::{
    decompress_packet, payload_limit, write_packet, Chunk, ChunkError, ChunkFlags, ChunkWriter,
    Chunks, PacketError, PushError, MAX_PAYLOAD, SCRATCH_LEN,
};
use tether_net::game::connless::{
    ClientInfo, ClientList, Connless, ConnlessError, InfoKind, InfoRequest, InfoRequestKind,
    ServerInfo,
};
use tether_net::game::huffman::DecompressError;
use tether_net::game::msg::{
    Capabilities, ConReady, EnterGame, Info, Input, InputInts, InputTiming, MapChange, MapData,
    MapDetails, Message, RconType, Ready, RequestMapData, SnapSingle, StartInfo, VERSION_0_6,
};
use tether_net::game::packer::{MsgHeader, MsgId, Str};
use tether_net::game::vital::{Receive, Vital, VitalConfig};
use tether_net::game::wire::{self, DecodeError, Flags, Header, Packet, Token, TokenMode};
use tether_net::testing::from_hex as hex;
use tether_net::Instant;

const TOK: Token = Token([0x40, 0x72, 0xf6, 0x5a]);

/// Decompress, parse in token mode, check the token; header and chunks
fn open(datagram: &[u8], token: Token) -> (Header, Vec<Chunk<'static>>) {
    let mut scratch = vec![0u8; SCRATCH_LEN];
    let plain = decompress_packet(datagram, &mut scratch).unwrap().to_vec();
    let plain: &'static [u8] = Box::leak(plain.into_boxed_slice());
    let parsed = wire::parse(plain, TokenMode::Trailing).unwrap();
    let Packet::Chunks(p) = parsed.packet else {
        panic!("not a chunk packet")
    };
    assert_eq!(p.token, Some(token));
    let chunks = Chunks::new(p.payload, p.header.num_chunks)
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    (p.header, chunks)
}

/// Our encoder: the same chunks, ack and flags, compressed when shorter
fn reencode(header: Header, chunks: &[Chunk<'_>], token: Token) -> Vec<u8> {
    let mut construct = [0u8; 1400];
    let mut w = ChunkWriter::new(&mut construct, payload_limit(true));
    for c in chunks {
        w.push(c).unwrap();
    }
    let mut out = [0u8; 1400];
    let h = Header {
        num_chunks: w.num_chunks(),
        ..header
    };
    let n = write_packet(h, w.as_bytes(), Some(token), true, &mut out).unwrap();
    out[..n].to_vec()
}

fn emit<F: Fn(&mut [u8]) -> Result<usize, tether_net::BufferTooSmall>>(
    len: usize,
    f: F,
) -> Vec<u8> {
    let mut v = vec![0u8; len];
    assert_eq!(f(&mut v), Ok(len));
    if len > 0 {
        let mut short = vec![0u8; len - 1];
        assert_eq!(
            f(&mut short),
            Err(tether_net::BufferTooSmall { required: len })
        );
    }
    v
}

fn info_packet() -> Vec<u8> {
    let mut v = hex("00 00 01 41 07 01 03");
    v.extend_from_slice(b"0.6 626fce9a778df4d4\0\0");
    v.extend_from_slice(&TOK.0);
    v
}

fn server_answer() -> Vec<u8> {
    let mut v = hex("00 01 04");
    v.extend(hex(
        "41 02 01 01 12 81 0e 1f a1 db 33 78 b4 fb 16 4e d6 50 59 26 00",
    ));
    v.extend(hex(
        "41 03 02 01 f6 21 a5 a1 f5 85 37 75 8e 73 41 be ee 79 f2 b2 05 3f",
    ));
    v.extend(hex(
        "44 04 03 01 f9 11 7b 3c 80 39 34 16 9f c0 ae f2 bc b7 5c 03",
    ));
    v.extend_from_slice(b"Tutorial\0");
    v.extend(hex(
        "0d af bb a3 01 08 4a eb bf 43 95 75 e3 6a 44 bf b6 5a 4f 15 e6 06 e9 ee c3 81 4e 2e 0e \
         28 d9 53 f9 ed 9c ab 0e 97 95 84 01 00",
    ));
    v.extend(hex("41 03 04 05"));
    v.extend_from_slice(b"Tutorial\0");
    v.extend(hex("f9 ed 9c ab 0e 97 95 84 01"));
    v.extend_from_slice(&TOK.0);
    assert_eq!(v.len(), 143);
    v
}

#[test]
fn client_info_packet() {
    let bytes = info_packet();
    assert_eq!(bytes.len(), 33);
    let (h, chunks) = open(&bytes, TOK);
    assert_eq!((h.ack, h.num_chunks, h.flags), (0, 1, Flags::default()));
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].flags, ChunkFlags::VITAL);
    assert_eq!(chunks[0].seq, 1);
    let info = Info::parse(chunks[0].data).unwrap();
    assert_eq!(info.version.as_str(), Some(VERSION_0_6));
    assert!(info.password.is_empty());
    // the INFO payload compresses to 41 > 30 bytes: sent raw, byte-identical
    assert_eq!(reencode(h, &chunks, TOK), bytes);
    let data = emit(info.buffer_len(), |b| info.emit(b));
    assert_eq!(data, chunks[0].data);
}

#[test]
fn server_answer_to_info() {
    let bytes = server_answer();
    let (h, chunks) = open(&bytes, TOK);
    assert_eq!((h.ack, h.num_chunks), (1, 4));
    let seqs: Vec<u16> = chunks.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    let msgs: Vec<Message<'_>> = chunks
        .iter()
        .map(|c| Message::parse(c.data).unwrap())
        .collect();
    assert_eq!(
        msgs[0],
        Message::RconType(RconType {
            username_required: 0
        })
    );
    assert_eq!(
        msgs[1],
        Message::Capabilities(Capabilities {
            version: 5,
            flags: 0x3f
        })
    );
    let Message::MapDetails(d) = msgs[2] else {
        panic!("{:?}", msgs[2])
    };
    assert_eq!(d.name.as_bytes(), b"Tutorial");
    assert_eq!(d.sha256[..4], [0x0d, 0xaf, 0xbb, 0xa3]);
    assert_eq!(d.sha256[28..], [0x0e, 0x28, 0xd9, 0x53]);
    assert_eq!((d.crc, d.size), (0x8d4c6486, 1_082_711));
    assert!(d.url.is_empty());
    let Message::MapChange(m) = msgs[3] else {
        panic!("{:?}", msgs[3])
    };
    assert_eq!(
        m,
        MapChange {
            name: Str::new("Tutorial"),
            crc: 0x8d4c6486,
            size: 1_082_711
        }
    );
    // every message re-encodes to the captured bytes, and the packet too (16.4 sent it raw: our
    // compressor also finds the Huffman form longer)
    for (msg, chunk) in msgs.iter().zip(&chunks) {
        assert_eq!(emit(msg.buffer_len(), |b| msg.emit(b)), chunk.data);
    }
    assert_eq!(reencode(h, &chunks, TOK), bytes);
}

#[test]
fn client_join_packets_replayed_through_a_vital_channel() {
    let now = Instant::from_millis(508);
    let mut client: Vital<4096, 32> = Vital::new(VitalConfig::reference());
    let mut construct = [0u8; 1400];
    let mut out = [0u8; 1400];

    // INFO, seq 1, flushed: the captured 33-byte packet
    let info = Info {
        version: Str::new(VERSION_0_6),
        password: Str::EMPTY,
    };
    let data = emit(info.buffer_len(), |b| info.emit(b));
    assert_eq!(client.queue(now, &data, true), Ok(1));
    let mut send = |client: &mut Vital<4096, 32>| {
        let mut w = ChunkWriter::new(&mut construct, payload_limit(true));
        let f = client.poll_packet(now, &mut w).unwrap().unwrap();
        let h = Header {
            flags: Flags {
                resend: f.resend_request,
                ..Flags::default()
            },
            ack: f.ack,
            num_chunks: w.num_chunks(),
        };
        let n = write_packet(h, w.as_bytes(), Some(TOK), true, &mut out).unwrap();
        out[..n].to_vec()
    };
    assert_eq!(send(&mut client), info_packet());

    // the 4-chunk answer: all delivered, ack 4
    let (h, chunks) = open(&server_answer(), TOK);
    client.on_packet(now, &h).unwrap();
    assert_eq!(client.unacked(), 0, "ack 1 released INFO");
    for c in &chunks {
        assert_eq!(client.on_chunk(now, c), Receive::Deliver);
    }
    assert_eq!(client.ack(), 4);

    // REQUEST_MAP_DATA(0), seq 2, ack 4: `00 04 01 | 40 02 02 | 27 00 | tok`
    let req = RequestMapData { chunk: 0 };
    let data = emit(req.buffer_len(), |b| req.emit(b));
    assert_eq!(client.queue(now, &data, true), Ok(2));
    assert_eq!(
        send(&mut client),
        hex("00 04 01 40 02 02 27 00 40 72 f6 5a")
    );
}

#[test]
fn compressed_input_packet() {
    let bytes = hex("80 cd 01 98 91 49 64 81 d6 ff 95 e0 c4 31 8a 4b 71 03");
    let (h, chunks) = open(&bytes, TOK);
    assert_eq!((h.ack, h.num_chunks), (0xcd, 1));
    assert_eq!(chunks[0].flags, ChunkFlags::NON_VITAL);
    let input = Input::parse(chunks[0].data).unwrap();
    assert_eq!((input.ack_tick, input.intended_tick), (80, 82));
    assert_eq!(input.input.size(), 40);
    assert!(input.input.iter().all(|v| v == 0));
    assert_eq!(input.input, InputInts::from_values(&[0; 10]));
    // our encoder produces the same compressed datagram
    let h = Header {
        flags: Flags::default(),
        ..h
    };
    assert_eq!(reencode(h, &chunks, TOK), bytes);
}

#[test]
fn compressed_snapshot_packet_with_the_extra_byte() {
    let token = Token([0xa4, 0x27, 0xdf, 0x91]);
    let bytes = hex(
        "80 bd 02 3d 55 b4 d0 94 b0 bb a3 85 c2 35 49 9d 6d aa 47 68 31 b3 f8 ff ff b6 65 99 b6 \
         1f 14 37 00",
    );
    let (h, chunks) = open(&bytes, token);
    assert_eq!((h.ack, h.num_chunks), (0xbd, 2));
    assert_eq!(
        InputTiming::parse(chunks[0].data),
        Ok(InputTiming {
            intended_tick: 76,
            time_left: 17
        })
    );
    let snap = SnapSingle::parse(chunks[1].data).unwrap();
    assert_eq!((snap.tick, snap.delta_tick()), (76, 74));
    assert_eq!(snap.data.len(), 27);
    assert_eq!(&snap.data[..6], &[0x00, 0x01, 0x00, 0x09, 0x00, 0x02]);
    assert_eq!(snap.crc, -232_037_610); // e9 f3 a4 dd 01
    assert_eq!(reencode(h, &chunks, token), bytes);
    // the same datagram without the extra byte (newer DDNet) opens to the same chunks
    let (_, again) = open(&bytes[..bytes.len() - 1], token);
    assert_eq!(again, chunks);
}

#[test]
fn ready_motd_startinfo_entergame() {
    // C>S READY, seq 187, ack 189
    let (h, c) = open(&hex("00 bd 01 40 21 bb 1d 40 72 f6 5a"), TOK);
    assert_eq!((h.ack, c[0].seq), (189, 187));
    assert_eq!(Ready::parse(c[0].data), Ok(Ready {}));
    // S>C Sv_Motd "" (seq 190) + CON_READY (seq 191)
    let (h, c) = open(&hex("00 bb 02 40 22 be 02 00 40 21 bf 09 40 72 f6 5a"), TOK);
    assert_eq!((h.ack, c[0].seq, c[1].seq), (187, 190, 191));
    assert_eq!(
        Message::parse(c[0].data),
        Ok(Message::Game {
            id: MsgId::Ordinal(1),
            body: &[0x00]
        })
    );
    assert_eq!(ConReady::parse(c[1].data), Ok(ConReady {}));
    // C>S Cl_StartInfo (seq 188)
    let mut bytes = hex("00 bf 01 41 25 bc 28");
    bytes.extend_from_slice(b"joinpy\0\0\x40default\0\0\0\0");
    bytes.extend_from_slice(&TOK.0);
    let (h, c) = open(&bytes, TOK);
    assert_eq!((h.ack, c[0].seq), (191, 188));
    let si = StartInfo::parse(c[0].data).unwrap();
    assert_eq!(
        si,
        StartInfo {
            name: Str::new("joinpy"),
            clan: Str::EMPTY,
            country: -1,
            skin: Str::new("default"),
            use_custom_color: 0,
            color_body: 0,
            color_feet: 0
        }
    );
    assert_eq!(reencode(h, &c, TOK), bytes);
    // C>S ENTERGAME, seq 189, ack 194
    let (h, c) = open(&hex("00 c2 01 40 21 bd 1f 40 72 f6 5a"), TOK);
    assert_eq!((h.ack, c[0].seq), (194, 189));
    assert_eq!(EnterGame::parse(c[0].data), Ok(EnterGame {}));
}

#[test]
fn resend_request_and_resent_chunks() {
    // a chunk-less packet with the RESEND flag, ack 7
    let tok = Token([0xa7, 0x34, 0xec, 0x04]);
    let (h, c) = open(&hex("40 07 00 a7 34 ec 04"), tok);
    assert!(h.flags.resend);
    assert_eq!((h.ack, c.len()), (7, 0));
    // two PINGs re-sent with the R flag and their original sequences
    let tok = Token([0xd4, 0x78, 0x93, 0x97]);
    let (h, c) = open(&hex("00 ce 02 c0 21 bf 2d c0 31 c0 2d d4 78 93 97"), tok);
    assert_eq!(h.ack, 0xce);
    let resend = ChunkFlags {
        vital: true,
        resend: true,
    };
    assert_eq!(
        c[0],
        Chunk {
            flags: resend,
            seq: 191,
            data: &[0x2d]
        }
    );
    assert_eq!(
        c[1],
        Chunk {
            flags: resend,
            seq: 192,
            data: &[0x2d]
        }
    );
}

#[test]
fn last_map_data_header() {
    // 56 22 bd | 07 01 f9 ed 9c ab 0e b8 12 97 05 | 343 B: last=1, chunk 1208, seq 189
    let piece = [0u8; 343];
    let m = MapData {
        last: 1,
        crc: 0x8d4c6486,
        chunk: 1208,
        data: &piece,
    };
    let bytes = emit(m.buffer_len(), |b| m.emit(b));
    assert_eq!(&bytes[..11], &hex("07 01 f9 ed 9c ab 0e b8 12 97 05")[..]);
    let mut construct = [0u8; 1400];
    let mut w = ChunkWriter::new(&mut construct, payload_limit(true));
    w.push(&Chunk::vital(189, &bytes)).unwrap();
    assert_eq!(&w.as_bytes()[..3], &[0x56, 0x22, 0xbd]);
    assert_eq!(MapData::parse(&bytes), Ok(m));
}

#[test]
fn truncated_and_hostile_chunk_packets() {
    // num_chunks says 2, only one chunk present: one chunk, then the error, then nothing
    let payload = hex("40 21 bd 1f");
    let mut it = Chunks::new(&payload, 2);
    assert_eq!(it.next(), Some(Ok(Chunk::vital(189, &[0x1f]))));
    assert_eq!(
        it.next(),
        Some(Err(ChunkError::TruncatedHeader {
            index: 1,
            offset: 4
        }))
    );
    assert_eq!(it.next(), None);
    // size claims 906 bytes, 3 present
    let payload = hex("78 0a 05 01 02 03");
    let mut it = Chunks::new(&payload, 1);
    assert_eq!(
        it.next(),
        Some(Err(ChunkError::TruncatedData {
            index: 0,
            offset: 0,
            size: 906,
            available: 3
        }))
    );
    assert_eq!(it.next(), None);
    // bytes after the announced chunks are ignored
    let payload = hex("00 01 2d ff ff");
    let mut it = Chunks::new(&payload, 1);
    assert_eq!(it.next(), Some(Ok(Chunk::non_vital(&[0x2d]))));
    assert_eq!(it.next(), None);
    assert_eq!(it.trailing(), &[0xff, 0xff]);
    // 255 announced chunks of nothing
    assert_eq!(Chunks::new(&[], 255).count(), 1);
}

#[test]
fn an_empty_chunk_that_ends_the_payload_is_read_and_the_next_is_missing_at_the_end() {
    // A non-vital chunk of no data is only its 2-byte header: the one chunk too short for the
    // in-place read, so the slow path takes it. A hostile peer ends a packet with it and
    // announces more chunks than follow: the missing one is reported at the payload's end.
    let payload = hex("00 00");
    let mut it = Chunks::new(&payload, 2);
    assert_eq!(it.next(), Some(Ok(Chunk::non_vital(&[]))));
    assert_eq!(it.trailing(), &[] as &[u8]);
    assert_eq!(
        it.next(),
        Some(Err(ChunkError::TruncatedHeader {
            index: 1,
            offset: 2
        }))
    );
    assert_eq!(it.next(), None);
    // after a vital chunk
    let payload = hex("40 21 bd 1f 00 00");
    let mut it = Chunks::new(&payload, 3);
    assert_eq!(it.next(), Some(Ok(Chunk::vital(189, &[0x1f]))));
    assert_eq!(it.next(), Some(Ok(Chunk::non_vital(&[]))));
    assert_eq!(
        it.next(),
        Some(Err(ChunkError::TruncatedHeader {
            index: 2,
            offset: 6
        }))
    );
    assert_eq!(it.next(), None);
}

#[test]
fn compressed_datagram_errors() {
    let mut scratch = vec![0u8; SCRATCH_LEN];
    // a Huffman bomb in a full datagram: dropped, not a hang
    let mut bomb = vec![0x80, 0x00, 0x01];
    bomb.extend_from_slice(&[0xff; 1397]);
    assert_eq!(
        decompress_packet(&bomb, &mut scratch),
        Err(PacketError::Huffman(DecompressError::OutputFull {
            limit: MAX_PAYLOAD
        }))
    );
    // truncated stream
    assert!(matches!(
        decompress_packet(&hex("80 00 01 98 91 49"), &mut scratch),
        Err(PacketError::Huffman(DecompressError::Truncated { .. }))
    ));
    // header errors come first
    assert_eq!(
        decompress_packet(&[0x80, 0x00], &mut scratch),
        Err(PacketError::Header(DecodeError::TooShort { len: 2 }))
    );
    assert_eq!(
        decompress_packet(&[0xa0, 0, 0, 0], &mut scratch),
        Err(PacketError::Header(DecodeError::Connless))
    );
    assert_eq!(
        decompress_packet(&[0x84, 0, 0, 0], &mut scratch),
        Err(PacketError::Header(DecodeError::ReservedBits(0x04)))
    );
    assert_eq!(
        decompress_packet(&[0x80; 1401], &mut scratch),
        Err(PacketError::Header(DecodeError::TooLong { len: 1401 }))
    );
    // an uncompressed datagram is handed back as it is
    let plain = hex("00 00 01 00 01 aa");
    assert_eq!(decompress_packet(&plain, &mut scratch), Ok(&plain[..]));
    // a compressed CLOSE (vanilla 0.6.4 may send one) decompresses into a plain control packet
    let mut reason = vec![0x04];
    reason.extend_from_slice(b"Server shutdown\0");
    let mut packed = [0u8; 64];
    let n = tether_net::game::huffman::compress(&reason, &mut packed).unwrap();
    let mut dgram = vec![0x90, 0x00, 0x00];
    dgram.extend_from_slice(&packed[..n]);
    let plain = decompress_packet(&dgram, &mut scratch).unwrap();
    let parsed = wire::parse(plain, TokenMode::Vanilla).unwrap();
    let Packet::Control(c) = parsed.packet else {
        panic!()
    };
    assert_eq!(
        c.control,
        wire::Control::Close(wire::Reason::from_str("Server shutdown"))
    );
}

#[test]
fn write_packet_limits_and_raw_fallback() {
    let mut out = [0u8; 1400];
    let h = Header {
        flags: Flags {
            compression: true,
            control: true,
            resend: true,
        },
        ack: 1023,
        num_chunks: 0,
    };
    // an empty chunk-less resend request: header + token, never compressed (4 B < 2 B + …)
    assert_eq!(write_packet(h, &[], Some(TOK), true, &mut out), Ok(7));
    assert_eq!(&out[..7], &hex("43 ff 00 40 72 f6 5a")[..]);
    // the shortest payloads Huffman shortens: four zero bytes (two empty chunks, no token) take
    // 1 bit each and EOF 15, 19 bits in 3 bytes; three would also take 3 bytes, so stay raw
    let h0 = Header {
        flags: Flags::default(),
        ack: 0,
        num_chunks: 2,
    };
    assert_eq!(write_packet(h0, &[0; 4], None, true, &mut out), Ok(6));
    assert_eq!(out[0] & 0x80, 0x80, "compressed");
    assert_eq!(write_packet(h0, &[0; 3], None, true, &mut out), Ok(6));
    assert_eq!(out[0] & 0x80, 0, "raw");
    // a payload whose Huffman form is exactly as long as itself stays raw (DDNet keeps the
    // compressed form only when strictly shorter): the encoder gets one byte less than the raw
    // payload to write into
    let even = (70..200)
        .flat_map(|len| (0..=len).flat_map(move |zeros| (1..=255u8).map(move |x| (len, zeros, x))))
        .map(|(len, zeros, x)| {
            let mut p = vec![0u8; zeros];
            p.resize(len, x);
            p
        })
        .find(|p| tether_net::game::huffman::compressed_len(p) == p.len())
        .expect("a payload of 70 to 200 bytes that Huffman does not shorten or lengthen");
    assert_eq!(
        write_packet(h0, &even, None, true, &mut out),
        Ok(3 + even.len())
    );
    assert_eq!(out[0] & 0x80, 0, "raw");
    assert_eq!(&out[3..3 + even.len()], &even[..]);
    let too_long = vec![0u8; MAX_PAYLOAD - 3];
    assert_eq!(
        write_packet(h, &too_long, Some(TOK), true, &mut out),
        Err(PacketError::TooLong {
            len: MAX_PAYLOAD + 1
        })
    );
    assert_eq!(
        write_packet(h, &[1, 2, 3], None, false, &mut out[..5]),
        Err(PacketError::BufferTooSmall { required: 6 })
    );
}

#[test]
fn chunk_writer_limits() {
    let mut buf = [0u8; 1400];
    let mut w = ChunkWriter::new(&mut buf, payload_limit(true));
    assert_eq!(payload_limit(true), 1390);
    assert_eq!(payload_limit(false), 1394);
    assert_eq!(
        w.push(&Chunk::vital(1, &[0; 1024])),
        Err(PushError::TooLarge { size: 1024 })
    );
    // exactly 1390 bytes fit: 1023 + 3, then 361 + 3
    w.push(&Chunk::vital(1, &[7; 1023])).unwrap();
    assert_eq!(
        w.push(&Chunk::vital(2, &[7; 362])),
        Err(PushError::Full {
            required: 365,
            available: 364
        })
    );
    w.push(&Chunk::vital(2, &[7; 361])).unwrap();
    assert_eq!(w.len(), 1390);
    assert_eq!(w.remaining(), 0);
    // 255 empty non-vital chunks, then TooManyChunks
    let mut buf = [0u8; 1400];
    let mut w = ChunkWriter::new(&mut buf, 1394);
    for _ in 0..255 {
        w.push(&Chunk::non_vital(&[])).unwrap();
    }
    assert_eq!(
        w.push(&Chunk::non_vital(&[])),
        Err(PushError::TooManyChunks)
    );
    assert_eq!(Chunks::new(w.as_bytes(), w.num_chunks()).count(), 255);
    // `fits` answers what `push` would do; `clear` starts the packet over
    let mut buf = [0u8; 1400];
    let mut w = ChunkWriter::new(&mut buf, 10);
    assert!(w.is_empty());
    assert!(w.fits(ChunkFlags::NON_VITAL, 8));
    assert!(!w.fits(ChunkFlags::NON_VITAL, 9));
    assert!(!w.fits(ChunkFlags::VITAL, 8));
    assert!(!w.fits(ChunkFlags::NON_VITAL, 1024));
    w.push(&Chunk::non_vital(&[1, 2, 3])).unwrap();
    assert!(!w.is_empty());
    assert!(w.fits(ChunkFlags::NON_VITAL, 3));
    assert!(!w.fits(ChunkFlags::NON_VITAL, 4));
    w.clear();
    assert!(w.is_empty());
    assert_eq!((w.len(), w.num_chunks(), w.remaining()), (0, 0, 10));
    w.push(&Chunk::vital(9, &[4; 7])).unwrap();
    assert_eq!(w.as_bytes(), &[0x40, 0x07, 0x09, 4, 4, 4, 4, 4, 4, 4]);
}

#[test]
fn a_last_chunk_shorter_than_three_bytes_is_read_to_the_end() {
    // an empty non-vital chunk (2 bytes) ends the payload: read by the near-end path
    let payload = hex("00 01 aa 00 00");
    let mut chunks = Chunks::new(&payload, 2);
    assert_eq!(chunks.next(), Some(Ok(Chunk::non_vital(&[0xaa]))));
    assert_eq!(chunks.next(), Some(Ok(Chunk::non_vital(&[]))));
    assert_eq!(chunks.next(), None);
    assert_eq!(chunks.trailing(), &[] as &[u8]);
    // and one more byte after it is trailing
    let payload = hex("00 01 aa 00 00 ee");
    let mut chunks = Chunks::new(&payload, 2);
    assert_eq!(chunks.by_ref().count(), 2);
    assert_eq!(chunks.trailing(), &[0xee]);
}

#[test]
fn chunk_layer_error_texts_are_what_a_log_shows() {
    let cases = [
        (
            PushError::Full {
                required: 365,
                available: 364,
            }
            .to_string(),
            "packet full (365 bytes needed, 364 left)",
        ),
        (
            PushError::TooManyChunks.to_string(),
            "packet full (255 chunks)",
        ),
        (
            PushError::TooLarge { size: 1024 }.to_string(),
            "chunk of 1024 bytes (max 1023)",
        ),
        (
            PacketError::TooLong { len: 1400 }.to_string(),
            "payload of 1400 bytes (max 1394)",
        ),
        (
            PacketError::BufferTooSmall { required: 1400 }.to_string(),
            "buffer too small (1400 bytes needed)",
        ),
    ];
    for (got, want) in cases {
        assert_eq!(got, want);
    }
    // the wrapped errors read as themselves
    assert_eq!(
        PacketError::Header(DecodeError::Connless).to_string(),
        DecodeError::Connless.to_string()
    );
    let full = DecompressError::OutputFull { limit: 1397 };
    assert_eq!(PacketError::Huffman(full).to_string(), full.to_string());
}

#[test]
fn unknown_and_extended_messages_are_skippable() {
    // record@netmsg.ddnet.tw game message, unknown system UUID, unused system id 8
    let mut rec = vec![0x00];
    rec.extend_from_slice(&tether_net::game::msg::uuid::RECORD);
    rec.extend_from_slice(&[0x05, 0x06]);
    let m = Message::parse(&rec).unwrap();
    assert_eq!(
        m,
        Message::Game {
            id: MsgId::Uuid(tether_net::game::msg::uuid::RECORD),
            body: &[0x05, 0x06]
        }
    );
    assert_eq!(emit(m.buffer_len(), |b| m.emit(b)), rec);
    let mut unknown = vec![0x01];
    unknown.extend_from_slice(&[0xAB; 16]);
    assert_eq!(
        Message::parse(&unknown),
        Ok(Message::OtherSystem {
            id: MsgId::Uuid([0xAB; 16]),
            body: &[]
        })
    );
    assert!(matches!(
        Message::parse(&[0x11, 0x01]),
        Ok(Message::OtherSystem {
            id: MsgId::Ordinal(8),
            ..
        })
    ));
    assert_eq!(
        m.header(),
        MsgHeader::uuid(false, tether_net::game::msg::uuid::RECORD)
    );
    let md = MapDetails {
        name: Str::new("x"),
        sha256: [1; 32],
        crc: 5,
        size: 6,
        url: Str::EMPTY,
    };
    assert_eq!(md.buffer_len(), 1 + 16 + 2 + 32 + 1 + 1 + 1);
}

// ------------------------------------------------------------------------------------------------
// connectionless

fn ff(n: usize) -> Vec<u8> {
    vec![0xff; n]
}

fn strs(parts: &[&str]) -> Vec<u8> {
    let mut v = Vec::new();
    for p in parts {
        v.extend_from_slice(p.as_bytes());
        v.push(0);
    }
    v
}

/// `req` parses to `want`, which re-encodes to `req`
fn request_round_trip(req: &[u8], want: InfoRequest) -> InfoRequest {
    let r = InfoRequest::parse(req).unwrap();
    assert_eq!(r, want);
    assert_eq!(emit(r.buffer_len(), |b| r.emit(b)), req);
    r
}

/// A connectionless packet: the 10-byte 0xff prefix, the 4-byte `kind`, `fields` NUL-terminated
fn connless(kind: &[u8; 4], fields: &[&str]) -> Vec<u8> {
    [ff(10), kind.to_vec(), strs(fields)].concat()
}

#[test]
fn connless_info_request_and_inf3_answer() {
    let req = [ff(10), b"gie3\x56".to_vec()].concat();
    let r = request_round_trip(
        &req,
        InfoRequest {
            kind: InfoRequestKind::Info,
            extended: false,
            token: 0x56,
        },
    );
    assert_eq!(r.answer_token(), 86);

    let answer = connless(
        b"inf3",
        &[
            "86",
            "0.6.4, 16.4",
            "probe [0/64]",
            "Tutorial",
            "DDraceNetwork",
            "0",
            "0",
            "16",
            "0",
            "16",
        ],
    );
    assert_eq!(answer.len(), 77);
    let Connless::Info(i) = Connless::parse(&answer).unwrap() else {
        panic!()
    };
    assert_eq!(i.kind, InfoKind::Vanilla);
    assert_eq!(i.token, 86);
    assert_eq!(i.name.as_bytes(), b"probe [0/64]");
    assert_eq!((i.max_players, i.max_clients, i.clients.len()), (16, 16, 0));
    assert_eq!(emit(i.buffer_len(), |b| i.emit(b)), answer);

    // in game, with one client entry
    let mut with_client = answer.clone();
    with_client.extend(strs(&["joinpy", "", "-1", "-9999", "1"]));
    let i = ServerInfo::parse(&with_client).unwrap();
    let c: Vec<ClientInfo<'_>> = i.clients.iter().collect();
    assert_eq!(
        c,
        [ClientInfo {
            name: Str::new("joinpy"),
            clan: Str::EMPTY,
            country: -1,
            score: -9999,
            is_player: 1
        }]
    );
    assert_eq!(emit(i.buffer_len(), |b| i.emit(b)), with_client);
    // a half client entry is an error
    let mut half = answer.clone();
    half.extend(strs(&["joinpy", ""]));
    assert_eq!(ServerInfo::parse(&half), Err(ConnlessError::Truncated));
}

#[test]
fn connless_extended_request_and_iext_answer() {
    let req = hex("78 65 12 34 00 00 ff ff ff ff 67 69 65 33 56");
    let r = request_round_trip(
        &req,
        InfoRequest {
            kind: InfoRequestKind::Info,
            extended: true,
            token: 0x123456,
        },
    );
    assert_eq!(r.answer_token(), 1193046);

    let answer = connless(
        b"iext",
        &[
            "1193046",
            "0.6.4, 16.4",
            "probe",
            "Tutorial",
            "-1924373370",
            "1082711",
            "DDraceNetwork",
            "0",
            "0",
            "64",
            "0",
            "64",
            "",
        ],
    );
    assert_eq!(answer.len(), 96);
    let i = ServerInfo::parse(&answer).unwrap();
    assert_eq!(
        i.kind,
        InfoKind::Extended {
            map_crc: 0x8d4c6486,
            map_size: 1_082_711
        }
    );
    assert_eq!(i.token, 1193046);
    assert_eq!(emit(i.buffer_len(), |b| i.emit(b)), answer);
    let mut with_client = answer.clone();
    with_client.extend(strs(&["joinpy", "", "-1", "-9999", "1", ""]));
    let i = ServerInfo::parse(&with_client).unwrap();
    assert_eq!(i.clients.len(), 1);
    assert_eq!(emit(i.buffer_len(), |b| i.emit(b)), with_client);
}

#[test]
fn connless_fstd_and_dtsf() {
    let req = [ff(10), b"fstd\x56".to_vec()].concat();
    let r = InfoRequest::parse(&req).unwrap();
    assert_eq!(r.kind, InfoRequestKind::Legacy64);
    assert_eq!(emit(r.buffer_len(), |b| r.emit(b)), req);
    let answer = [
        ff(10),
        b"dtsf".to_vec(),
        strs(&[
            "86",
            "0.6.4, 16.4",
            "probe",
            "Tutorial",
            "DDraceNetwork",
            "0",
            "0",
            "64",
            "0",
            "64",
        ]),
        vec![0x00],
    ]
    .concat();
    assert_eq!(answer.len(), 71);
    let i = ServerInfo::parse(&answer).unwrap();
    assert_eq!(i.kind, InfoKind::Legacy64 { offset: 0 });
    assert_eq!(emit(i.buffer_len(), |b| i.emit(b)), answer);
}

#[test]
fn connless_unsolicited_update_and_errors() {
    // what 16.4 sends its players on a name change: token -1, no client list
    let clients = [ClientInfo {
        name: Str::new("a"),
        clan: Str::new("b"),
        country: 276,
        score: 10,
        is_player: 0,
    }];
    let i = ServerInfo {
        kind: InfoKind::Vanilla,
        token: -1,
        version: Str::new("0.6.4, 16.4"),
        name: Str::new("probe2 [1/64]"),
        map: Str::new("Tutorial"),
        game_type: Str::new("DDraceNetwork"),
        flags: 0,
        num_players: 1,
        max_players: 16,
        num_clients: 1,
        max_clients: 16,
        clients: ClientList::EMPTY,
    };
    let bytes = emit(i.buffer_len(), |b| i.emit(b));
    assert_eq!(bytes.len(), 78);
    assert_eq!(&bytes[14..17], b"-1\0");
    assert_eq!(ServerInfo::parse(&bytes), Ok(i));
    let j = ServerInfo {
        clients: ClientList::from_slice(&clients),
        ..i
    };
    let bytes = emit(j.buffer_len(), |b| j.emit(b));
    assert_eq!(ServerInfo::parse(&bytes), Ok(j));

    assert_eq!(
        Connless::parse(&[0xff; 5]),
        Err(ConnlessError::TooShort { len: 5 })
    );
    assert_eq!(Connless::parse(&[0x10; 8]), Err(ConnlessError::NotConnless));
    // bad number
    let bad = [ff(10), b"inf3".to_vec(), strs(&["x"])].concat();
    assert_eq!(ServerInfo::parse(&bad), Err(ConnlessError::BadNumber));
    // request too short
    assert_eq!(
        Connless::parse(&[ff(10), b"gie3".to_vec()].concat()),
        Err(ConnlessError::UnexpectedType)
    );
    // unknown type passes through
    let other = [ff(10), b"xyzw".to_vec()].concat();
    assert!(matches!(Connless::parse(&other), Ok(Connless::Other(_))));
}
