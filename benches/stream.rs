//! Byte-throughput benches: the LongPort TCP deframer over 16 MiB streams split at random read
//! boundaries, and gunzip of a 64 KiB body, each next to a `copy_from_slice` floor of the same bytes
//!
//! Run: `cargo bench --bench stream -- --warm-up-time 1 --measurement-time 3`
//!
//! Every benchmark in a group processes the same bytes and reports bytes/s, so the ratio of two
//! medians in one run is the cost relative to the copy floor.

// criterion_group! generates undocumented public functions
#![allow(missing_docs)]

use core::hint::black_box;
use std::io::Write as _;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tether_net::longport::deframe::{Frame, Handshake, StreamDeframer};
use tether_net::longport::gzip::{crc32, gunzip, gzip_stored, stored_len};
use tether_net::longport::wire::{Packet, RequestId, Signature, Status, MAX_BODY_LEN};

const STREAM_LEN: usize = 16 << 20;
/// Largest single read the simulated socket returns
const MAX_READ: usize = 64 << 10;
/// The caller's receive buffer (holds the largest packet plus one read)
const RX_CAP: usize = (2 << 20) + MAX_READ;

/// SplitMix64: a fixed-seed generator so every run sees the same stream and split points
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }
}

/// A server-side stream: handshake, then packets of every type (a third signed) until
/// `STREAM_LEN`, with bodies drawn by `body_len`; returns the bytes and the packet count
fn make_stream(seed: u64, mut body_len: impl FnMut(&mut Rng) -> usize) -> (Vec<u8>, usize) {
    let mut rng = Rng(seed);
    let mut s = Vec::with_capacity(STREAM_LEN + (1 << 20));
    s.extend_from_slice(&Handshake::OPENAPI.to_bytes());
    let body_src: Vec<u8> = (0..(1 << 20)).map(|i| (i * 31 % 251) as u8).collect();
    let mut out = vec![0u8; (1 << 20) + 64];
    let mut count = 0;
    while s.len() < STREAM_LEN {
        let len = body_len(&mut rng).min(MAX_BODY_LEN);
        let body = &body_src[..len];
        let id = RequestId(rng.next() as u32);
        let p = match rng.range(0, 2) {
            0 => Packet::request(rng.range(0, 255) as u8, id, 10_000, body),
            1 => Packet::response(rng.range(0, 255) as u8, id, Status::Success, body),
            _ => Packet::push(rng.range(0, 255) as u8, body),
        };
        let p = if rng.range(0, 2) == 0 {
            p.with_signature(Some(Signature {
                nonce: [7; 8],
                signature: [9; 16],
            }))
        } else {
            p
        };
        let n = p.emit(&mut out).expect("sized");
        s.extend_from_slice(&out[..n]);
        count += 1;
    }
    (s, count)
}

/// Read sizes: uniform 1..=MAX_READ, covering the stream exactly
fn make_splits(seed: u64, total: usize) -> Vec<usize> {
    let mut rng = Rng(seed);
    let mut v = Vec::new();
    let mut left = total;
    while left > 0 {
        let n = rng.range(1, MAX_READ).min(left);
        v.push(n);
        left -= n;
    }
    v
}

/// Deframe `stream` in place: every decode sees the bytes received so far (up to the current
/// split point), as a caller that reads straight into one large buffer would. No byte is copied.
fn deframe_in_place(stream: &[u8], splits: &[usize]) -> usize {
    let mut d = StreamDeframer::new(true, MAX_BODY_LEN);
    let mut start = 0;
    let mut end = 0;
    let mut packets = 0;
    for &n in splits {
        end += n;
        loop {
            match d.decode(&stream[start..end]).expect("valid stream") {
                Frame::Need(_) => break,
                Frame::Handshake(h, used) => {
                    black_box(h);
                    start += used;
                }
                Frame::Packet(p, used) => {
                    black_box(&p);
                    packets += 1;
                    start += used;
                }
            }
        }
    }
    packets
}

/// The realistic loop: each read is copied into a bounded receive buffer (the socket read), the
/// buffer is deframed, and the unconsumed tail is moved to the front only when the next read
/// would not fit.
fn deframe_with_reads(stream: &[u8], splits: &[usize], rx: &mut [u8]) -> usize {
    let mut d = StreamDeframer::new(true, MAX_BODY_LEN);
    let (mut start, mut end, mut pos) = (0usize, 0usize, 0usize);
    let mut packets = 0;
    for &n in splits {
        if end + n > rx.len() {
            rx.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
        rx[end..end + n].copy_from_slice(&stream[pos..pos + n]);
        end += n;
        pos += n;
        loop {
            match d.decode(&rx[start..end]).expect("valid stream") {
                Frame::Need(_) => break,
                Frame::Handshake(h, used) => {
                    black_box(h);
                    start += used;
                }
                Frame::Packet(p, used) => {
                    black_box(&p);
                    packets += 1;
                    start += used;
                }
            }
        }
        if start == end {
            start = 0;
            end = 0;
        }
    }
    packets
}

/// The floor: the same reads copied into the receive buffer, nothing else
fn copy_reads(stream: &[u8], splits: &[usize], rx: &mut [u8]) {
    let (mut end, mut pos) = (0usize, 0usize);
    for &n in splits {
        if end + n > rx.len() {
            end = 0;
        }
        rx[end..end + n].copy_from_slice(&stream[pos..pos + n]);
        end += n;
        pos += n;
    }
    black_box(&rx[..end]);
}

fn deframe(c: &mut Criterion) {
    // mixed: mostly control-sized bodies, some quote/depth-sized, a few large snapshots
    let mixed = make_stream(1, |r| match r.range(0, 99) {
        0..=69 => r.range(0, 128),
        70..=97 => r.range(128, 4096),
        _ => r.range(4096, 256 << 10),
    });
    // small: control and quote sized bodies only (per-packet cost dominates)
    let small = make_stream(5, |r| r.range(0, 256));
    // large: 64 KiB ..= 1 MiB bodies
    let large = make_stream(2, |r| r.range(64 << 10, 1 << 20));
    let mut rx = vec![0u8; RX_CAP];
    for (name, (stream, count)) in [("mixed", &mixed), ("small", &small), ("large", &large)] {
        let splits = make_splits(3, stream.len());
        assert_eq!(deframe_in_place(stream, &splits), *count);
        assert_eq!(deframe_with_reads(stream, &splits, &mut rx), *count);
        let mut g = c.benchmark_group(format!("deframe_{name}"));
        g.throughput(Throughput::Bytes(stream.len() as u64));
        g.sample_size(20);
        g.bench_function("copy_floor", |b| {
            b.iter(|| copy_reads(black_box(stream), &splits, &mut rx))
        });
        g.bench_function("deframe_in_place", |b| {
            b.iter(|| deframe_in_place(black_box(stream), &splits))
        });
        g.bench_function("deframe_with_reads", |b| {
            b.iter(|| deframe_with_reads(black_box(stream), &splits, &mut rx))
        });
        g.finish();
        eprintln!(
            "deframe_{name}: {} bytes, {} packets, {} reads",
            stream.len(),
            count,
            splits.len()
        );
    }
}

/// A 64 KiB body that looks like what LongPort compresses: JSON quote snapshots
fn json_body() -> Vec<u8> {
    let mut rng = Rng(4);
    let mut s = Vec::with_capacity(70 << 10);
    let symbols = [
        "700.HK", "AAPL.US", "TSLA.US", "9988.HK", "NVDA.US", "BABA.US",
    ];
    while s.len() < 64 << 10 {
        let sym = symbols[rng.range(0, symbols.len() - 1)];
        let _ = write!(
            s,
            "{{\"symbol\":\"{sym}\",\"last_done\":\"{}.{:02}\",\"volume\":{},\"turnover\":\"{}.{:03}\",\"timestamp\":{}}},",
            rng.range(1, 900),
            rng.range(0, 99),
            rng.range(0, 10_000_000),
            rng.range(0, 1_000_000_000),
            rng.range(0, 999),
            1_700_000_000 + rng.range(0, 100_000)
        );
    }
    s.truncate(64 << 10);
    s
}

fn gzip(c: &mut Criterion) {
    let body = json_body();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&body).expect("vec");
    let dynamic = enc.finish().expect("vec");
    let mut stored = vec![0u8; stored_len(body.len())];
    let n = gzip_stored(&body, &mut stored).expect("sized");
    stored.truncate(n);
    let mut out = vec![0u8; body.len()];
    for member in [&dynamic, &stored] {
        assert_eq!(gunzip(member, &mut out), Ok(body.len()));
        assert_eq!(out, body);
    }
    // reference inflater on the same deflate stream (skip the 10-byte header, no FLG fields)
    let raw = &dynamic[10..dynamic.len() - 8];
    let mut inflater = flate2::Decompress::new(false);
    let reference = |inflater: &mut flate2::Decompress, out: &mut [u8]| {
        inflater.reset(false);
        inflater
            .decompress(raw, out, flate2::FlushDecompress::Finish)
            .expect("valid");
        inflater.total_out() as usize
    };
    assert_eq!(reference(&mut inflater, &mut out), body.len());

    let mut g = c.benchmark_group("gzip_64KiB");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("copy_floor", |b| {
        b.iter(|| out.copy_from_slice(black_box(&body)))
    });
    g.bench_function("gunzip_dynamic", |b| {
        b.iter(|| gunzip(black_box(&dynamic), &mut out))
    });
    g.bench_function("gunzip_stored", |b| {
        b.iter(|| gunzip(black_box(&stored), &mut out))
    });
    g.bench_function("crc32", |b| b.iter(|| crc32(black_box(&body))));
    g.bench_function("flate2_inflate_dynamic", |b| {
        b.iter(|| reference(&mut inflater, black_box(&mut out)))
    });
    g.finish();
    eprintln!(
        "gzip: body {} bytes, dynamic member {} bytes, stored member {} bytes",
        body.len(),
        dynamic.len(),
        stored.len()
    );
}

criterion_group!(benches, deframe, gzip);
criterion_main!(benches);
