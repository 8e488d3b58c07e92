//! The game chunk layer: Huffman compress / decompress of real packets (libtw2's 202 captured
//! Teeworlds payloads and the live DDNet 16.4 captures), a 1,400-byte compressed datagram
//! decompressed and split into chunks, and one vital chunk sent and acked through two `Vital`
//! channels — each next to a `copy_from_slice` floor of the same bytes in the same run; the
//! datagram also with the caches evicted before each call (`open_and_split_cold`)
//!
//! Run: `cargo bench --bench chunks -- --warm-up-time 1 --measurement-time 2`.
//! Throughput: decompression counts output bytes, compression input bytes.

// criterion_group! generates undocumented public functions
#![allow(missing_docs)]

use core::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use tether_net::game::chunk::{
    decompress_packet, payload_limit, write_packet, Chunk, ChunkWriter, Chunks, SCRATCH_LEN,
};
use tether_net::game::huffman::{
    compress, compressed_len, decompress, decompressed_tail, MAX_DECOMPRESSED_LEN,
};
use tether_net::game::vital::{Receive, Vital, VitalConfig};
use tether_net::game::wire::{
    self, Control, ControlPacket, Flags, Header, Packet, Token, TokenMode,
};
use tether_net::testing::from_hex as hex;
use tether_net::Instant;

const TOKEN: Token = Token([0x40, 0x72, 0xf6, 0x5a]);

/// libtw2's captured payloads (uncompressed, as the reference compressed them)
fn corpus() -> Vec<Vec<u8>> {
    include_str!("../tests/data/huffman_test_cases.txt")
        .lines()
        .map(|l| hex(l.split_once('#').unwrap().0))
        .collect()
}

/// The live captures: (name, uncompressed payload = chunks + token)
fn live() -> Vec<(&'static str, Vec<u8>)> {
    let mut input = hex("01 00 21 90 01 92 01 28");
    input.extend_from_slice(&[0; 10]);
    input.extend_from_slice(&TOKEN.0);
    let mut snap = hex("00 04 13 8c 01 11 02 05 0f 8c 01 02 e9 f3 a4 dd 01 1b 00 01 00 09 00 02");
    snap.extend_from_slice(&[0; 21]);
    snap.extend_from_slice(&[0xa4, 0x27, 0xdf, 0x91]);
    vec![("input_22B", input), ("snapsingle_49B", snap)]
}

fn huffman(c: &mut Criterion) {
    let corpus = corpus();
    let total: usize = corpus.iter().map(Vec::len).sum();
    let packed: Vec<Vec<u8>> = corpus
        .iter()
        .map(|p| {
            let mut out = vec![0u8; compressed_len(p)];
            compress(p, &mut out).unwrap();
            out
        })
        .collect();
    let mut g = c.benchmark_group("huffman");
    // all 202 captured payloads, one call each
    g.throughput(Throughput::Bytes(total as u64));
    let mut out = vec![0u8; MAX_DECOMPRESSED_LEN];
    g.bench_function("decompress/libtw2_202", |b| {
        b.iter(|| {
            let mut n = 0;
            for p in &packed {
                n += decompress(black_box(p), &mut out).unwrap();
            }
            n
        })
    });
    g.bench_function("compress/libtw2_202", |b| {
        b.iter(|| {
            let mut n = 0;
            for p in &corpus {
                n += compress(black_box(p), &mut out).unwrap();
            }
            n
        })
    });
    g.bench_function("copy_floor/libtw2_202", |b| {
        b.iter(|| {
            for p in &corpus {
                out[..p.len()].copy_from_slice(black_box(p));
            }
            out[0]
        })
    });
    // the bit-by-bit decoder without an output buffer: the token check of a compressed chunk
    // packet by a machine without the chunk layer (and the `small-huffman` decoder's loop)
    g.bench_function("decompressed_tail/libtw2_202", |b| {
        b.iter(|| {
            let mut n = 0;
            for p in &packed {
                n += decompressed_tail(black_box(p)).unwrap().0;
            }
            n
        })
    });
    // single live packets
    for (name, plain) in live() {
        let mut packed = vec![0u8; compressed_len(&plain)];
        compress(&plain, &mut packed).unwrap();
        g.throughput(Throughput::Bytes(plain.len() as u64));
        g.bench_with_input(BenchmarkId::new("decompress", name), &packed, |b, p| {
            b.iter(|| decompress(black_box(p), &mut out))
        });
        g.bench_with_input(BenchmarkId::new("compress", name), &plain, |b, p| {
            b.iter(|| compress(black_box(p), &mut out))
        });
        g.bench_with_input(BenchmarkId::new("copy_floor", name), &plain, |b, p| {
            b.iter(|| out[..p.len()].copy_from_slice(black_box(p)))
        });
    }
    g.finish();
}

/// A compressed datagram of (nearly) 1,400 bytes: the most a peer can receive is 1,394 chunk and
/// token bytes, so such a datagram holds data that barely compresses. Built from captured
/// payloads (as non-vital chunks) with their zero bytes replaced by pseudo-random bytes at a rate
/// chosen so that the Huffman form is just below the raw form
fn big_datagram() -> (Vec<u8>, usize, usize) {
    let corpus = corpus();
    let mut best = (Vec::new(), 0, 0);
    let mut construct = vec![0u8; 1400];
    let mut out = vec![0u8; 1400];
    for per_mille in (0..=1000).step_by(10) {
        let mut x = 0x2545_F491_u32;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let mut w = ChunkWriter::new(&mut construct, payload_limit(true));
        'fill: for p in corpus.iter().cycle() {
            let data: Vec<u8> = p
                .iter()
                .map(|&b| {
                    if b == 0 && rnd() % 1000 < per_mille {
                        rnd() as u8
                    } else {
                        b
                    }
                })
                .collect();
            if w.push(&Chunk::non_vital(&data)).is_err() {
                break 'fill;
            }
        }
        let h = Header {
            flags: Flags::default(),
            ack: 5,
            num_chunks: w.num_chunks(),
        };
        let n = write_packet(h, w.as_bytes(), Some(TOKEN), true, &mut out).unwrap();
        if out[0] & 0x80 != 0 && n > best.0.len() {
            best = (out[..n].to_vec(), usize::from(w.num_chunks()), w.len() + 4);
        }
    }
    best
}

fn packet(c: &mut Criterion) {
    let (dgram, chunks, plain_len) = big_datagram();
    assert!(dgram.len() > 1350, "datagram of {} bytes", dgram.len());
    let mut g = c.benchmark_group("chunk_packet");
    g.throughput(Throughput::Bytes(plain_len as u64));
    let mut scratch = vec![0u8; SCRATCH_LEN];
    let name = format!("{}B_{}chunks", dgram.len(), chunks);
    g.bench_with_input(BenchmarkId::new("open_and_split", &name), &dgram, |b, d| {
        b.iter(|| {
            let plain = decompress_packet(black_box(d), &mut scratch).unwrap();
            let Packet::Chunks(p) = wire::parse(plain, TokenMode::Trailing).unwrap().packet else {
                unreachable!()
            };
            let mut bytes = 0;
            for c in Chunks::new(p.payload, p.header.num_chunks) {
                bytes += c.unwrap().data.len();
            }
            bytes
        })
    });
    // the same after other work evicted the decoder's tables from L1 and L2 (a 4 MiB walk before
    // every call, not timed): what a server sees when compressed datagrams are rare
    let mut evict = vec![0u8; 4 << 20];
    g.bench_with_input(
        BenchmarkId::new("open_and_split_cold", &name),
        &dgram,
        |b, d| {
            b.iter_batched(
                || {
                    for line in evict.chunks_mut(64) {
                        line[0] = line[0].wrapping_add(1);
                    }
                },
                |()| {
                    let plain = decompress_packet(black_box(d), &mut scratch).unwrap();
                    plain.len()
                },
                BatchSize::PerIteration,
            )
        },
    );
    // the chunk split alone, on the already decompressed payload
    let plain = decompress_packet(&dgram, &mut scratch).unwrap().to_vec();
    let payload = &plain[3..plain.len() - 4];
    g.bench_with_input(BenchmarkId::new("split_only", &name), &payload, |b, p| {
        b.iter(|| {
            let mut bytes = 0;
            for c in Chunks::new(black_box(p), chunks as u8) {
                bytes += c.unwrap().data.len();
            }
            bytes
        })
    });
    let mut out = vec![0u8; 1400];
    g.bench_with_input(BenchmarkId::new("copy_floor", &name), &plain, |b, p| {
        b.iter(|| out[..p.len()].copy_from_slice(black_box(p)))
    });
    g.finish();
}

fn vital(c: &mut Criterion) {
    let mut g = c.benchmark_group("vital");
    let data = hex("27 05"); // REQUEST_MAP_DATA(5)
    let map_data = vec![0x5Au8; 906];
    for (name, data) in [("2B", &data), ("906B", &map_data)] {
        let mut a: Vital<16384, 64> = Vital::new(VitalConfig::reference());
        let mut b: Vital<16384, 64> = Vital::new(VitalConfig::reference());
        let mut construct = vec![0u8; 1400];
        let mut wire_buf = vec![0u8; 1400];
        let mut scratch = vec![0u8; SCRATCH_LEN];
        let mut t = 0u64;
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("send_deliver_ack", name),
            data,
            |bench, data| {
                bench.iter(|| {
                    t += 1;
                    let now = Instant::from_micros(t);
                    // a: queue, fill, write (compressed when shorter)
                    a.queue(now, black_box(data), true).unwrap();
                    let mut w = ChunkWriter::new(&mut construct, payload_limit(true));
                    let f = a.fill(now, &mut w);
                    let h = Header {
                        flags: Flags {
                            resend: f.resend_request,
                            ..Flags::default()
                        },
                        ack: f.ack,
                        num_chunks: w.num_chunks(),
                    };
                    let n =
                        write_packet(h, w.as_bytes(), Some(TOKEN), true, &mut wire_buf).unwrap();
                    // b: open, header, chunk, deliver
                    let plain = decompress_packet(&wire_buf[..n], &mut scratch).unwrap();
                    let Packet::Chunks(p) = wire::parse(plain, TokenMode::Trailing).unwrap().packet
                    else {
                        unreachable!()
                    };
                    b.on_packet(now, &p.header).unwrap();
                    let mut delivered = 0;
                    for c in Chunks::new(p.payload, p.header.num_chunks) {
                        if b.on_chunk(now, &c.unwrap()) == Receive::Deliver {
                            delivered += 1;
                        }
                    }
                    // b acks with a keep-alive; a releases the chunk
                    let ka = ControlPacket {
                        ack: b.ack(),
                        control: Control::KeepAlive,
                        token: Some(TOKEN),
                    };
                    let m = ka.emit(&mut wire_buf).unwrap();
                    b.note_sent(now);
                    let Packet::Control(k) = wire::parse(&wire_buf[..m], TokenMode::Trailing)
                        .unwrap()
                        .packet
                    else {
                        unreachable!()
                    };
                    let ack = Header {
                        flags: Flags::default(),
                        ack: k.ack,
                        num_chunks: 0,
                    };
                    a.on_packet(now, &ack).unwrap();
                    debug_assert_eq!(a.unacked(), 0);
                    delivered
                })
            },
        );
        let mut out = vec![0u8; 1400];
        g.bench_with_input(BenchmarkId::new("copy_floor", name), data, |bench, data| {
            bench.iter(|| out[..data.len()].copy_from_slice(black_box(data)))
        });
    }
    g.finish();
}

criterion_group!(benches, huffman, packet, vital);
criterion_main!(benches);
