//! Vital channel: an op stream (queue, time, timers, fill, incoming headers and chunks) never
//! panics; vital chunks are delivered strictly in sequence (directly or from the reorder buffer,
//! each exactly once); a refused ack changes nothing; `fill` writes only valid vital chunks within
//! the limit; after the timers ran and everything due was filled, `poll_timeout` is in the future.
//!
//! Input: byte 0 picks the preset (bit 0: fast), then ops:
//! `0 flush blob` queue · `1 u16` advance ms · `2` handle_timeout · `3 limit` fill ·
//! `4 b0 b1` header (ack, resend flag) · `5 u16 flags blob` chunk · `6` reset
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_fuzz::OpReader;
use tether_net::game::chunk::{Chunk, ChunkFlags, ChunkWriter, Chunks};
use tether_net::game::vital::{seq, Receive, Vital, VitalConfig};
use tether_net::game::wire::{Flags, Header};
use tether_net::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let mut r = OpReader::new(data);
    let config = if r.u8() & 1 == 1 {
        VitalConfig::fast()
    } else {
        VitalConfig::reference()
    };
    let mut v: Vital<4096, 32, 4096, 16> = Vital::new(config);
    let mut now = Instant::from_millis(1);
    let mut buf = vec![0u8; 1400];
    let mut ops = 0;
    while !r.is_empty() && ops < 2000 {
        ops += 1;
        match r.u8() % 7 {
            0 => {
                let flush = r.u8() & 1 == 1;
                let blob = r.blob();
                let before = (v.sequence(), v.unacked());
                match v.queue(now, blob, flush) {
                    Ok(s) => {
                        assert_eq!(s, seq::next(before.0));
                        assert_eq!(v.unacked(), before.1 + 1);
                    }
                    Err(_) => assert_eq!((v.sequence(), v.unacked()), before),
                }
            }
            1 => now += Duration::from_millis(u64::from(r.u16())),
            2 => {
                if v.handle_timeout(now).is_err() {
                    return;
                }
                let mut rounds = 0;
                while v.needs_packet(now) {
                    rounds += 1;
                    assert!(rounds < 64, "fill never catches up");
                    let mut w = ChunkWriter::new(&mut buf, 1390);
                    let _ = v.fill(now, &mut w);
                }
                if v.needs_ack(now) {
                    v.note_sent(now);
                }
                if let Some(t) = v.poll_timeout() {
                    assert!(t > now, "poll_timeout {t} not after {now} with nothing due");
                }
            }
            3 => {
                let limit = usize::from(r.u8()) * 6;
                let unacked = v.unacked();
                let mut w = ChunkWriter::new(&mut buf, limit);
                let f = v.fill(now, &mut w);
                assert!(w.len() <= limit);
                assert!(f.vital_chunks <= unacked);
                assert_eq!(f.ack, v.ack());
                let n = Chunks::new(w.as_bytes(), w.num_chunks())
                    .map(|c| {
                        let c = c.unwrap();
                        assert!(c.flags.vital);
                    })
                    .count();
                assert_eq!(n, f.vital_chunks);
            }
            4 => {
                let (a, b) = (r.u8(), r.u8());
                let h = Header {
                    flags: Flags {
                        resend: a & 0x40 != 0,
                        ..Flags::default()
                    },
                    ack: u16::from(a & 3) << 8 | u16::from(b),
                    num_chunks: 0,
                };
                let before = v.unacked();
                if v.on_packet(now, &h).is_err() {
                    assert_eq!(v.unacked(), before);
                }
                assert!(v.unacked() <= before);
            }
            5 => {
                let s = r.u16() % 1024;
                let fl = r.u8();
                let blob = r.blob();
                let blob = &blob[..blob.len().min(1023)];
                let chunk = Chunk {
                    flags: ChunkFlags {
                        vital: fl & 1 == 1,
                        resend: fl & 2 == 2,
                    },
                    seq: if fl & 1 == 1 { s } else { 0 },
                    data: blob,
                };
                let ack = v.ack();
                let got = v.on_chunk(now, &chunk);
                if chunk.flags.vital {
                    if got == Receive::Deliver {
                        assert_eq!(s, seq::next(ack));
                        assert_eq!(v.ack(), s);
                    } else {
                        assert_eq!(v.ack(), ack);
                    }
                    let mut expect = v.ack();
                    while let Some(d) = v.next_ready() {
                        assert!(d.len() <= 1023);
                        expect = seq::next(expect);
                        assert_eq!(v.ack(), expect);
                    }
                } else {
                    assert_eq!(got, Receive::Deliver);
                }
            }
            _ => v.reset(),
        }
    }
});
