//! LongPort control bodies: the borrowed, allocation-free decoder against prost's decode of the
//! same bytes (types generated from the same `.proto`), with a copy of the bytes as the floor
//!
//! Run: `cargo bench --bench control -- --warm-up-time 1 --measurement-time 3`

// criterion_group! generates undocumented public functions
#![allow(missing_docs)]

use core::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use prost::Message as _;
use tether::longport::control::{AuthResponse, Body, Close, CloseCode};
use tether::longport::pb;

fn encode<'a>(b: &impl Body<'a>) -> Vec<u8> {
    let mut v = vec![0u8; b.encoded_len()];
    let n = b.encode(&mut v).expect("sized");
    v.truncate(n);
    v
}

fn control(c: &mut Criterion) {
    let mut g = c.benchmark_group("control");
    // what a LongPort server grants: a 36-character session id, Unix-ms expiry, quota numbers
    let auth = AuthResponse {
        session_id: "3f2c7a9e-5b1d-4e8f-9a6c-0d4b2e7f1a35",
        expires: 1_763_712_000_000,
        limit: 10,
        online: 3,
    };
    let close = Close::new(
        CloseCode::SessExpired,
        "session expired, please log in again",
    );
    let auth_bytes = encode(&auth);
    let close_bytes = encode(&close);

    // both decoders agree on these bytes
    let p_auth = pb::AuthResponse::decode(&auth_bytes[..]).expect("prost");
    assert_eq!(
        (
            p_auth.session_id.as_str(),
            p_auth.expires,
            p_auth.limit,
            p_auth.online
        ),
        (auth.session_id, auth.expires, auth.limit, auth.online)
    );
    assert_eq!(AuthResponse::decode(&auth_bytes), Ok(auth));
    let p_close = pb::Close::decode(&close_bytes[..]).expect("prost");
    assert_eq!(p_close.reason, close.reason);
    assert_eq!(Close::decode(&close_bytes), Ok(close));
    assert_eq!(p_auth.encode_to_vec(), auth_bytes);
    assert_eq!(p_close.encode_to_vec(), close_bytes);

    let mut out = [0u8; 256];
    let mut vec_out: Vec<u8> = Vec::with_capacity(256);
    for (name, bytes) in [("auth_response", &auth_bytes), ("close", &close_bytes)] {
        g.bench_with_input(BenchmarkId::new("copy_floor", name), bytes, |b, bytes| {
            b.iter(|| {
                let src = black_box(&bytes[..]);
                out[..src.len()].copy_from_slice(src);
                black_box(&out);
            })
        });
    }
    g.bench_with_input(
        BenchmarkId::new("borrowed_decode", "auth_response"),
        &auth_bytes,
        |b, bytes| b.iter(|| AuthResponse::decode(black_box(&bytes[..]))),
    );
    g.bench_with_input(
        BenchmarkId::new("prost_decode", "auth_response"),
        &auth_bytes,
        |b, bytes| b.iter(|| pb::AuthResponse::decode(black_box(&bytes[..]))),
    );
    g.bench_with_input(
        BenchmarkId::new("borrowed_decode", "close"),
        &close_bytes,
        |b, bytes| b.iter(|| Close::decode(black_box(&bytes[..]))),
    );
    g.bench_with_input(
        BenchmarkId::new("prost_decode", "close"),
        &close_bytes,
        |b, bytes| b.iter(|| pb::Close::decode(black_box(&bytes[..]))),
    );
    // encoders: ours into a slice, prost into a reused Vec (no allocation after the first)
    g.bench_function(BenchmarkId::new("borrowed_encode", "auth_response"), |b| {
        b.iter(|| black_box(&auth).encode(&mut out))
    });
    g.bench_function(BenchmarkId::new("prost_encode", "auth_response"), |b| {
        b.iter(|| {
            vec_out.clear();
            black_box(&p_auth).encode(&mut vec_out)
        })
    });
    g.bench_function(BenchmarkId::new("borrowed_encode", "close"), |b| {
        b.iter(|| black_box(&close).encode(&mut out))
    });
    g.bench_function(BenchmarkId::new("prost_encode", "close"), |b| {
        b.iter(|| {
            vec_out.clear();
            black_box(&p_close).encode(&mut vec_out)
        })
    });
    g.finish();
    eprintln!(
        "control: AuthResponse {} bytes, Close {} bytes",
        auth_bytes.len(),
        close_bytes.len()
    );
}

criterion_group!(benches, control);
criterion_main!(benches);
