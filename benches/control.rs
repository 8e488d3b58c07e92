//! LongPort control bodies: the borrowed, allocation-free decoder against prost's decode of the
//! same bytes (types generated from the same `.proto`), with a copy of the bytes as the floor
//!
//! Run: `cargo bench --bench control -- --warm-up-time 1 --measurement-time 3`

// criterion_group! generates undocumented public functions
#![allow(missing_docs)]

use core::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use prost::Message as _;
use tether::longport::control::{
    AuthRequest, AuthResponse, Body, Close, CloseCode, ErrorBody, Heartbeat, Metadata,
    ReconnectRequest,
};
use tether::longport::pb;

fn encode<'a>(b: &impl Body<'a>) -> Vec<u8> {
    let mut v = vec![0u8; b.encoded_len()];
    let n = b.encode(&mut v).expect("sized");
    v.truncate(n);
    v
}

/// Bench-local sketch, not crate code: the least a borrowed `AuthResponse` decode can do (one
/// pass, inlined varints with a one-byte fast path, UTF-8 check of the session id; unknown fields
/// are refused instead of skipped). It shows what the crate's decoder could reach.
#[inline(always)]
fn sketch_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let b = *buf.get(*pos)?;
    *pos += 1;
    if b < 0x80 {
        return Some(u64::from(b));
    }
    let mut v = u64::from(b & 0x7f);
    let mut shift = 7;
    loop {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

fn sketch_decode(buf: &[u8]) -> Option<AuthResponse<'_>> {
    let mut out = AuthResponse::default();
    let mut pos = 0;
    while pos < buf.len() {
        match sketch_varint(buf, &mut pos)? {
            0x0A => {
                let len = usize::try_from(sketch_varint(buf, &mut pos)?).ok()?;
                let end = pos.checked_add(len)?;
                out.session_id = core::str::from_utf8(buf.get(pos..end)?).ok()?;
                pos = end;
            }
            0x10 => out.expires = sketch_varint(buf, &mut pos)? as i64,
            0x18 => out.limit = sketch_varint(buf, &mut pos)? as u32,
            0x20 => out.online = sketch_varint(buf, &mut pos)? as u32,
            _ => return None,
        }
    }
    Some(out)
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
    assert_eq!(sketch_decode(&auth_bytes), Some(auth));
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
        BenchmarkId::new("sketch_decode", "auth_response"),
        &auth_bytes,
        |b, bytes| b.iter(|| sketch_decode(black_box(&bytes[..]))),
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

    // the other bodies: borrowed decode and encode against prost's decode
    let pairs = [("accept-language", "zh-CN"), ("client-version", "3.0.1")];
    let heartbeat = Heartbeat::new(1_763_712_000_123, Some(42));
    let auth_req = AuthRequest::new(
        "m_eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.one-time-token",
        Metadata::from_pairs(&pairs),
    );
    let reconnect = ReconnectRequest::new(
        "3f2c7a9e-5b1d-4e8f-9a6c-0d4b2e7f1a35",
        Metadata::from_pairs(&pairs),
    );
    let error = ErrorBody::new(301_600, "invalid request parameter");
    // encode from the value an application builds (metadata from pairs); decode its bytes
    macro_rules! pair {
        ($name:expr, $value:expr, $borrowed:ty, $prost:ty) => {{
            let value: $borrowed = $value;
            let bytes = encode(&value);
            let bytes: &[u8] = &bytes;
            assert_eq!(<$borrowed as Body>::decode(bytes), Ok(value));
            let theirs = <$prost as prost::Message>::decode(bytes).expect("valid");
            assert_eq!(prost::Message::encode_to_vec(&theirs), bytes);
            g.bench_function(BenchmarkId::new("borrowed_decode", $name), |b| {
                b.iter(|| <$borrowed as Body>::decode(black_box(bytes)))
            });
            g.bench_function(BenchmarkId::new("prost_decode", $name), |b| {
                b.iter(|| <$prost as prost::Message>::decode(black_box(bytes)))
            });
            g.bench_function(BenchmarkId::new("borrowed_encode", $name), |b| {
                b.iter(|| black_box(&value).encode(&mut out))
            });
            g.bench_function(BenchmarkId::new("prost_encode", $name), |b| {
                b.iter(|| {
                    vec_out.clear();
                    prost::Message::encode(black_box(&theirs), &mut vec_out)
                })
            });
        }};
    }
    pair!("heartbeat", heartbeat, Heartbeat, pb::Heartbeat);
    pair!("auth_request", auth_req, AuthRequest<'_>, pb::AuthRequest);
    pair!(
        "reconnect_request",
        reconnect,
        ReconnectRequest<'_>,
        pb::ReconnectRequest
    );
    pair!("error", error, ErrorBody<'_>, pb::Error);
    g.finish();
    eprintln!(
        "control: AuthResponse {} bytes, Close {} bytes",
        auth_bytes.len(),
        close_bytes.len()
    );
}

criterion_group!(benches, control);
criterion_main!(benches);
