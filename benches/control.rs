//! LongPort control bodies: the borrowed, allocation-free decoder against prost's decode of the
//! same bytes (types generated from the same `.proto`), with two floors: a copy of the bytes, and
//! `core::str::from_utf8` of the body's string in place (which any borrowed `&str` decode pays)
//!
//! Run: `cargo bench --bench control -- --warm-up-time 1 --measurement-time 3`

// criterion_group! generates undocumented public functions
#![allow(missing_docs)]

use core::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use prost::Message as _;
use tether_net::longport::control::{
    AuthRequest, AuthResponse, Body, Close, CloseCode, ErrorBody, Heartbeat, Metadata,
    ReconnectRequest,
};
use tether_net::longport::pb;

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
    // where the strings sit in the bodies (one-byte key and length before each)
    let id_at = 2..2 + auth.session_id.len();
    let reason_at = 4..4 + close.reason.len();
    assert_eq!(&auth_bytes[id_at.clone()], auth.session_id.as_bytes());
    assert_eq!(&close_bytes[reason_at.clone()], close.reason.as_bytes());
    for (name, bytes, text) in [
        ("auth_response", &auth_bytes, id_at),
        ("close", &close_bytes, reason_at),
    ] {
        g.bench_with_input(BenchmarkId::new("copy_floor", name), bytes, |b, bytes| {
            b.iter(|| {
                let src = black_box(&bytes[..]);
                out[..src.len()].copy_from_slice(src);
                black_box(&out);
            })
        });
        // the UTF-8 check of the string where it lies: every borrowed decode pays it
        g.bench_with_input(BenchmarkId::new("utf8_floor", name), bytes, |b, bytes| {
            b.iter(|| core::str::from_utf8(&black_box(&bytes[..])[text.clone()]))
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
