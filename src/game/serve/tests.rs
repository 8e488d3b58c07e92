//! Hostile inputs first: out-of-range and repeated map requests, ENTERGAME before its turn,
//! wrong versions, non-vital join messages; then the whole join against a recording server

extern crate std;
use std::string::String;
use std::vec::Vec;

use super::*;
use crate::game::chunk::{Chunk, ChunkFlags};
use crate::game::msg::{EnterGame, Info, Ready, RequestMapData, StartInfo};

/// A server that records what the join queues; `room` vital chunks fit before it refuses with
/// `TooManyInFlight`
#[derive(Default)]
struct Rec {
    sent: Vec<(Vec<u8>, bool)>,
    closed: Vec<String>,
    room: Option<usize>,
}

impl ServeTo<u32> for Rec {
    fn send_vital(
        &mut self,
        _: Instant,
        peer: u32,
        data: &[u8],
        flush: bool,
    ) -> Result<u16, Error> {
        assert_eq!(peer, 7);
        if let Some(r) = self.room.as_mut() {
            if *r == 0 {
                return Err(Error::TooManyInFlight);
            }
            *r -= 1;
        }
        self.sent.push((data.to_vec(), flush));
        Ok(self.sent.len() as u16)
    }
    fn close(&mut self, _: Instant, _: u32, reason: &str) -> Result<(), Error> {
        self.closed.push(reason.into());
        Ok(())
    }
}

impl Rec {
    fn messages(&self) -> Vec<Message<'_>> {
        self.sent
            .iter()
            .map(|(d, _)| Message::parse(d).unwrap())
            .collect()
    }
    fn pieces(&self) -> Vec<i32> {
        self.messages()
            .into_iter()
            .filter_map(|m| match m {
                Message::MapData(d) => Some(d.chunk),
                _ => None,
            })
            .collect()
    }
}

const NOW: Instant = Instant::ZERO;

/// A 20-piece map (the last one 100 bytes)
fn map() -> Vec<u8> {
    (0..19 * MAP_PIECE + 100)
        .map(|i| (i * 31 % 251) as u8)
        .collect()
}

fn offer(map: &[u8]) -> Offer<'_> {
    let mut c = crate::game::join::Crc32::new();
    c.update(map);
    Offer::new("hostile", c.finish(), map.len() as u32)
}

fn vital(data: &[u8]) -> Chunk<'_> {
    Chunk {
        flags: ChunkFlags::VITAL,
        seq: 1,
        data,
    }
}

fn emit(m: impl FnOnce(&mut [u8]) -> usize) -> Vec<u8> {
    let mut b = [0u8; 1024];
    let n = m(&mut b);
    b[..n].to_vec()
}

fn info(version: &str, password: &str) -> Vec<u8> {
    emit(|b| {
        Info {
            version: Str::new(version),
            password: Str::new(password),
        }
        .emit(b)
        .unwrap()
    })
}

fn request(k: i32) -> Vec<u8> {
    emit(|b| RequestMapData { chunk: k }.emit(b).unwrap())
}

fn start_info() -> Vec<u8> {
    let si: StartInfo = crate::testing::start_info(Str::new("p"));
    emit(|b| si.emit(b).unwrap())
}

/// One peer's join served from the map `m` under the offer `o`, into a recording server
struct Join<'m> {
    s: Serve,
    rec: Rec,
    o: Offer<'m>,
    m: &'m [u8],
}

impl<'m> Join<'m> {
    fn new(m: &'m [u8], o: Offer<'m>) -> Self {
        Join {
            s: Serve::new(),
            rec: Rec::default(),
            o,
            m,
        }
    }

    /// Feed one vital message and flush
    fn feed<'a>(&mut self, data: &'a [u8]) -> ServeEvent<'a> {
        let ev = self.s.handle_chunk(&self.o, vital(data)).unwrap();
        self.flush().unwrap();
        ev
    }

    /// Flush, the pieces read from the whole map
    fn flush(&mut self) -> Result<(), ServeError> {
        self.flush_from(self.m)
    }

    /// Flush, the pieces read from `map`
    fn flush_from(&mut self, mut map: &[u8]) -> Result<(), ServeError> {
        self.s.flush(NOW, &mut self.rec, 7, &self.o, &mut map)
    }

    /// Feed the INFO of a 0.6 client without password: the join is announced
    fn joined(&mut self) {
        let i = info(VERSION_0_6, "");
        assert!(matches!(self.feed(&i), ServeEvent::Info { .. }));
    }
}

#[test]
fn map_requests_before_info_are_ignored() {
    let m = map();
    let mut j = Join::new(&m, offer(&m));
    let r = request(0);
    assert_eq!(j.feed(&r), ServeEvent::Ignored(Ignored::WrongState));
    assert!(j.rec.sent.is_empty());
}

#[test]
fn out_of_range_map_requests_are_ignored() {
    let m = map();
    let mut j = Join::new(&m, offer(&m));
    j.joined();
    let before = j.rec.sent.len();
    for k in [-1, i32::MIN, 20, 21, i32::MAX, 0x0500_0000] {
        let r = request(k);
        assert_eq!(
            j.feed(&r),
            ServeEvent::Ignored(Ignored::OutOfRange),
            "piece {k}"
        );
    }
    assert_eq!(
        j.rec.sent.len(),
        before,
        "nothing sent for out-of-range pieces"
    );
    assert_eq!(j.s.requests(), 0);
}

#[test]
fn window_like_16_4_and_last_piece() {
    let m = map();
    let mut j = Join::new(&m, offer(&m));
    j.joined();
    let r = request(0);
    assert_eq!(
        j.feed(&r),
        ServeEvent::MapRequest {
            piece: 0,
            queued: 16
        }
    );
    assert_eq!(j.rec.pieces(), (0..16).collect::<Vec<_>>());
    // in-order requests: one more piece each, until the map ends
    for k in 1..20 {
        let r = request(k);
        let ev = j.feed(&r);
        let expect = u8::from(k + 15 < 20);
        assert_eq!(
            ev,
            ServeEvent::MapRequest {
                piece: k,
                queued: expect
            }
        );
    }
    assert_eq!(j.rec.pieces(), (0..20).collect::<Vec<_>>());
    // reassemble: every byte, the last piece flagged and short
    let mut file = Vec::new();
    for msg in j.rec.messages() {
        if let Message::MapData(d) = msg {
            assert_eq!(d.crc, j.o.crc());
            assert_eq!(d.last, i32::from(d.chunk == 19));
            file.extend_from_slice(d.data);
        }
    }
    assert_eq!(file, m);
    // every MAP_DATA flushed, as DDNet does
    assert!(j
        .rec
        .sent
        .iter()
        .all(|(d, f)| !matches!(Message::parse(d), Ok(Message::MapData(_))) || *f));
}

#[test]
fn repeated_map_requests_are_bounded() {
    let m = map();
    let mut j = Join::new(&m, offer(&m));
    j.joined();
    let r = request(0);
    let mut answered = 0;
    for _ in 0..1000 {
        match j.feed(&r) {
            ServeEvent::MapRequest { .. } => answered += 1,
            ServeEvent::Ignored(Ignored::TooManyRequests) => {}
            other => panic!("{other:?}"),
        }
    }
    // 2 x 20 pieces + 16
    assert_eq!(answered, 56);
    // a request for another piece than the next one queues that piece alone
    let mut other = Join::new(&m, offer(&m));
    other.joined();
    assert_eq!(
        other.feed(&request(5)),
        ServeEvent::MapRequest {
            piece: 5,
            queued: 1
        }
    );
    // the first request: 16 pieces; every repeat: piece 0 only
    assert_eq!(j.rec.pieces().len(), 16 + 55);
    assert_eq!(j.s.pieces_due(), 0);
}

#[test]
fn out_of_order_flood_does_not_grow_the_queue() {
    let m = map();
    let o = offer(&m);
    // nothing fits into the resend buffer: requests pile up as due pieces
    let mut j = Join::new(&m, o);
    j.joined();
    j.rec.room = Some(0);
    for k in (0..20).cycle().skip(3).take(50) {
        let r = request(k);
        let _ = j.feed(&r);
    }
    assert_eq!(j.s.pieces_due(), DUE_PIECES);
    assert!(j.s.dropped() > 0);
    assert!(j.s.wants_flush());
    // room again: everything due goes out in order of the requests
    j.rec.room = None;
    j.flush().unwrap();
    assert_eq!(j.s.pieces_due(), 0);
    assert!(!j.s.wants_flush());
    // one piece asked again and again: each request queues it once more until the queue is
    // full; the rest are counted as dropped
    let mut j = Join::new(&m, o);
    j.joined();
    j.rec.room = Some(0);
    let r = request(5);
    for _ in 0..DUE_PIECES + 3 {
        let _ = j.feed(&r);
    }
    assert_eq!(j.s.requests(), DUE_PIECES as u32 + 3);
    assert_eq!(j.s.pieces_due(), DUE_PIECES);
    assert_eq!(j.s.dropped(), 3);
}

#[test]
fn enter_game_before_ready_and_start_info_is_ignored() {
    let m = map();
    let mut j = Join::new(&m, offer(&m));
    let e = emit(|b| EnterGame {}.emit(b).unwrap());
    let ready = emit(|b| Ready {}.emit(b).unwrap());
    let si = start_info();
    // before INFO
    assert_eq!(j.feed(&e), ServeEvent::Ignored(Ignored::WrongState));
    assert_eq!(j.feed(&si), ServeEvent::Ignored(Ignored::WrongState));
    assert_eq!(j.feed(&ready), ServeEvent::Ignored(Ignored::WrongState));
    j.joined();
    // after INFO, before READY
    assert_eq!(j.feed(&e), ServeEvent::Ignored(Ignored::WrongState));
    assert_eq!(j.feed(&si), ServeEvent::Ignored(Ignored::WrongState));
    assert_eq!(j.feed(&ready), ServeEvent::Ready { first: true });
    // READY, no start info yet
    assert_eq!(j.feed(&e), ServeEvent::Ignored(Ignored::WrongState));
    // non-vital start info and ENTERGAME do not count
    assert_eq!(
        j.s.handle_chunk(&j.o, Chunk::non_vital(&si)).unwrap(),
        ServeEvent::Ignored(Ignored::NotVital)
    );
    assert!(matches!(j.feed(&si), ServeEvent::StartInfo { .. }));
    assert_eq!(j.feed(&si), ServeEvent::Ignored(Ignored::Repeated));
    assert_eq!(
        j.s.handle_chunk(&j.o, Chunk::non_vital(&e)).unwrap(),
        ServeEvent::Ignored(Ignored::NotVital)
    );
    assert!(!j.s.in_game());
    assert_eq!(j.feed(&e), ServeEvent::Entered);
    assert!(j.s.in_game());
    // a second ENTERGAME changes nothing; a second READY gets another CON_READY
    assert_eq!(j.feed(&e), ServeEvent::Ignored(Ignored::WrongState));
    let n = j.rec.sent.len();
    assert_eq!(j.feed(&ready), ServeEvent::Ready { first: false });
    assert_eq!(j.rec.messages()[n..], [Message::ConReady(ConReady {})]);
}

#[test]
fn wrong_version_is_closed_with_ddnet_wording() {
    let m = map();
    let mut j = Join::new(&m, offer(&m));
    let i = info("0.6 626fce9a778ab4d4", "");
    assert_eq!(j.feed(&i), ServeEvent::Refused(Refusal::WrongVersion));
    assert_eq!(
        j.rec.closed,
        ["Wrong version. Server is running '0.6 626fce9a778df4d4' and client '0.6 626fce9a778ab4d4'"]
    );
    assert!(j.rec.sent.is_empty(), "no MAP_CHANGE for a refused client");
    assert_eq!(j.s.state(), ServeState::Refused);
    // everything after is ignored, the CLOSE is not repeated
    for data in [info(VERSION_0_6, ""), request(0)] {
        assert_eq!(j.feed(&data), ServeEvent::Ignored(Ignored::WrongState));
    }
    assert_eq!(j.rec.closed.len(), 1);
    assert!(j.rec.sent.is_empty());
}

#[test]
fn hostile_version_strings_fit_the_close() {
    let m = map();
    let o = offer(&m);
    let long = "é".repeat(200);
    for v in ["", "0.7 802f1be60a05665f", "\x01\x1b[31mred\n", &long] {
        let mut j = Join::new(&m, o);
        let i = info(v, "");
        let _ = j.feed(&i);
        let r = &j.rec.closed[0];
        assert!(r.len() <= MAX_REASON_LEN, "{} bytes", r.len());
        assert!(r.starts_with(WRONG_VERSION_HEAD) && r.ends_with('\''));
        assert!(!r.chars().any(|c| c.is_control()), "{r:?}");
        assert_eq!(j.s.refusal_reason(), Some(r.as_str()));
        assert_eq!(j.s.refusal(), Some(Refusal::WrongVersion));
    }
    // a long version fills the 127 bytes exactly: as much of it as fits, then the quote; a
    // two-byte character is never split
    let room = MAX_REASON_LEN - WRONG_VERSION_HEAD.len() - 1;
    // (room is 58: "a" and 28 "é" end at byte 57, the 29th would end past the room)
    let odd = std::format!("a{long}");
    let cases = [
        ("x".repeat(200), "x".repeat(room)),
        (long, "é".repeat(room / 2)),
        (odd, std::format!("a{}", "é".repeat((room - 1) / 2))),
    ];
    for (v, kept) in cases {
        let mut j = Join::new(&m, o);
        let _ = j.feed(&info(&v, ""));
        assert_eq!(j.rec.closed[0], std::format!("{WRONG_VERSION_HEAD}{kept}'"));
    }
}

#[test]
fn wrong_password_and_repeated_info() {
    let m = map();
    let o = offer(&m).with_password("secret");
    let mut j = Join::new(&m, o);
    let i = info(VERSION_0_6, "guess");
    assert_eq!(j.feed(&i), ServeEvent::Refused(Refusal::WrongPassword));
    assert_eq!(j.rec.closed, [WRONG_PASSWORD]);
    // the right password; then a second INFO is ignored (one announcement)
    let mut j = Join::new(&m, o);
    let i = info(VERSION_0_6, "secret");
    assert!(matches!(j.feed(&i), ServeEvent::Info { .. }));
    let n = j.rec.sent.len();
    assert_eq!(j.feed(&i), ServeEvent::Ignored(Ignored::WrongState));
    assert_eq!(j.rec.sent.len(), n);
    // non-vital INFO does not count
    let mut j = Join::new(&m, o);
    assert_eq!(
        j.s.handle_chunk(&j.o, Chunk::non_vital(&i)).unwrap(),
        ServeEvent::Ignored(Ignored::NotVital)
    );
}

#[test]
fn announcement_like_16_4() {
    let m = map();
    let sha = crate::game::sha256::Sha256::digest(&m);
    let mut j = Join::new(&m, offer(&m).with_sha256(sha));
    j.joined();
    let msgs = j.rec.messages();
    assert!(matches!(msgs[0], Message::RconType(_)));
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
    assert_eq!((d.sha256, d.crc, d.size), (sha, j.o.crc(), m.len() as i32));
    let Message::MapChange(c) = msgs[3] else {
        panic!("{:?}", msgs[3])
    };
    assert_eq!(
        (c.name.as_bytes(), c.crc, c.size),
        (&b"hostile"[..], j.o.crc(), m.len() as i32)
    );
    // MAP_CHANGE flushes the packet; the three before it ride along
    let flushes: Vec<bool> = j.rec.sent.iter().map(|(_, f)| *f).collect();
    assert_eq!(flushes, [false, false, false, true]);
    // a vanilla announcement: MAP_CHANGE only
    let mut j = Join::new(&m, offer(&m).with_capabilities(None));
    j.joined();
    assert!(matches!(j.rec.messages()[..], [Message::MapChange(_)]));
}

#[test]
fn full_resend_buffer_keeps_messages_due_in_order() {
    let m = map();
    let mut j = Join::new(&m, offer(&m).with_motd("hi"));
    j.rec.room = Some(2);
    j.joined();
    assert_eq!(j.rec.sent.len(), 2);
    assert!(j.s.wants_flush());
    let r = request(0);
    let _ = j.feed(&r);
    assert_eq!(j.rec.sent.len(), 2);
    j.rec.room = None;
    j.flush().unwrap();
    let msgs = j.rec.messages();
    assert!(matches!(msgs[2], Message::MapChange(_)));
    assert!(matches!(
        msgs[3],
        Message::MapData(MapData { chunk: 0, .. })
    ));
    assert_eq!(msgs.len(), 3 + 16);
}

#[test]
fn short_map_source_is_an_error_not_a_panic() {
    let m = map();
    let o = offer(&m);
    let short = &m[..1000];
    let mut j = Join::new(&m, o);
    j.joined();
    let r = request(0);
    let _ = j.s.handle_chunk(&j.o, vital(&r)).unwrap();
    assert_eq!(j.flush_from(short), Err(ServeError::Map(MapReadError)));
    // piece 0 went out, piece 1 stays due
    assert_eq!(j.rec.pieces(), [0]);
    assert_eq!(j.s.pieces_due(), 15);
}

#[test]
fn ping_ex_is_answered_and_other_messages_pass_through() {
    let m = map();
    let mut j = Join::new(&m, offer(&m));
    let p = emit(|b| crate::game::msg::PingEx { id: [5; 16] }.emit(b).unwrap());
    assert_eq!(j.feed(&p), ServeEvent::Ping);
    assert_eq!(j.rec.messages(), [Message::PongEx(PongEx { id: [5; 16] })]);
    let say = emit(|b| emit_message(MsgHeader::game(17), b"\0\0hi\0", b).unwrap());
    assert!(matches!(
        j.feed(&say),
        ServeEvent::Message(Message::Game { .. })
    ));
    assert!(matches!(
        j.s.handle_chunk(&j.o, vital(&[0x80])),
        Err(ServeError::Message(_))
    ));
}

#[test]
fn empty_snapshot_layout() {
    let mut b = [0u8; 16];
    let n = empty_snapshot(80, &mut b).unwrap();
    // SNAPEMPTY (6), tick 80, tick - delta_tick = 81
    assert_eq!(&b[..n], &[0x0d, 0x90, 0x01, 0x91, 0x01]);
    assert_eq!(
        empty_snapshot(80, &mut b[..2]),
        Err(BufferTooSmall { required: 5 })
    );
}

#[test]
fn serve_stays_small() {
    // the due-piece queue (32 x i32) and the refusal text (127 bytes) dominate
    assert!(
        core::mem::size_of::<Serve>() <= 336,
        "{}",
        core::mem::size_of::<Serve>()
    );
}

#[test]
fn ready_brings_the_motd_then_con_ready_and_start_info_the_vote_clear_then_ready_to_enter() {
    let m = map();
    let mut j = Join::new(&m, offer(&m).with_motd("welcome"));
    j.joined();
    let n = j.rec.sent.len();
    let ready = emit(|b| Ready {}.emit(b).unwrap());
    assert_eq!(j.feed(&ready), ServeEvent::Ready { first: true });
    let msgs = j.rec.messages();
    assert_eq!(msgs.len(), n + 2, "{msgs:?}");
    assert_eq!(
        msgs[n],
        Message::Game {
            id: MsgId::Ordinal(game_id::SV_MOTD),
            body: b"welcome\0"
        }
    );
    assert_eq!(msgs[n + 1], Message::ConReady(ConReady {}));
    let n = j.rec.sent.len();
    let si = start_info();
    assert!(matches!(j.feed(&si), ServeEvent::StartInfo { .. }));
    let msgs = j.rec.messages();
    assert_eq!(msgs.len(), n + 2, "{msgs:?}");
    assert_eq!(
        msgs[n],
        Message::Game {
            id: MsgId::Ordinal(game_id::SV_VOTE_CLEAR_OPTIONS),
            body: b""
        }
    );
    assert!(
        matches!(
            msgs[n + 1],
            Message::Game {
                id: MsgId::Ordinal(game_id::SV_READY_TO_ENTER),
                ..
            }
        ),
        "{msgs:?}"
    );
}

#[test]
fn an_offer_reports_what_it_was_built_with() {
    let sha = [7u8; 32];
    let o = Offer::new("ctf5", 0x8d4c_6486, 19 * MAP_PIECE as u32 + 100).with_sha256(sha);
    assert_eq!(o.name(), "ctf5");
    assert_eq!(o.crc(), 0x8d4c_6486);
    assert_eq!(o.size(), 19 * MAP_PIECE as u32 + 100);
    assert_eq!(o.sha256(), Some(sha));
    assert_eq!(o.pieces(), 20);
    assert_eq!(Offer::new("ctf5", 1, 2).sha256(), None);
}
