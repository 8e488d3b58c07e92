//! LongPort control bodies: every `Body::decode` never panics; what decodes re-encodes
//! (`encoded_len` exact, `BufferTooSmall` one byte short) and decodes back to the same value;
//! `prost` (the generated `longport::pb` types) accepts everything our decoder accepts and reads
//! the same values; where the value has a canonical prost encoding the bytes are identical.
//! (The varint helpers are crate-private; their differential check against prost is a property
//! test in `src/longport/control.rs`.)
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tether_net::longport::control::{
    AuthRequest, Body, Close, ErrorBody, Heartbeat, Metadata, ReconnectRequest, SessionGrant,
};
use tether_net::longport::pb;

/// decode → encode → decode; returns the encoding
fn round_trip<'a, B>(data: &'a [u8], name: &str) -> Option<(B, Vec<u8>)>
where
    B: Body<'a> + PartialEq + core::fmt::Debug,
{
    let v = B::decode(data).ok()?;
    let len = v.encoded_len();
    let mut out = vec![0u8; len];
    assert_eq!(
        v.encode(&mut out),
        Ok(len),
        "{name}: encode into encoded_len bytes"
    );
    if len > 0 {
        let mut short = vec![0u8; len - 1];
        assert_eq!(
            v.encode(&mut short).map_err(|e| e.required),
            Err(len),
            "{name}: short buffer"
        );
    }
    Some((v, out))
}

fn again<'a, B: Body<'a> + PartialEq + core::fmt::Debug>(bytes: &'a [u8], v: &B, name: &str) {
    let w = B::decode(bytes).unwrap_or_else(|e| panic!("{name}: own encoding rejected: {e:?}"));
    assert_eq!(&w, v, "{name}: round trip changed the value");
}

fn pb_decode<M: Message + Default>(data: &[u8], name: &str) -> M {
    M::decode(data).unwrap_or_else(|e| panic!("{name}: accepted by us, rejected by prost: {e}"))
}

fn map_of(m: &Metadata<'_>) -> BTreeMap<String, String> {
    // map semantics: the last entry for a key wins
    m.iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Keys strictly increasing: prost's BTreeMap encoding is then the same sequence of entries
fn canonical_map(m: &Metadata<'_>) -> bool {
    let keys: Vec<&str> = m.iter().map(|(k, _)| k).collect();
    keys.windows(2).all(|w| w[0] < w[1])
}

fuzz_target!(|data: &[u8]| {
    // Close
    if let Some((v, out)) = round_trip::<Close<'_>>(data, "Close") {
        again(&out, &v, "Close");
        let p: pb::Close = pb_decode(data, "Close");
        assert_eq!(p.code, i32::from(v.code));
        assert_eq!(p.reason, v.reason);
        assert_eq!(p.encode_to_vec(), out, "Close: bytes differ from prost");
    }
    // Heartbeat
    if let Some((v, out)) = round_trip::<Heartbeat>(data, "Heartbeat") {
        again(&out, &v, "Heartbeat");
        let p: pb::Heartbeat = pb_decode(data, "Heartbeat");
        assert_eq!((p.timestamp, p.heartbeat_id), (v.timestamp, v.heartbeat_id));
        assert_eq!(p.encode_to_vec(), out, "Heartbeat: bytes differ from prost");
    }
    // AuthRequest
    if let Some((v, out)) = round_trip::<AuthRequest<'_>>(data, "AuthRequest") {
        again(&out, &v, "AuthRequest");
        let p: pb::AuthRequest = pb_decode(data, "AuthRequest");
        assert_eq!(p.token, v.token);
        assert_eq!(p.metadata, map_of(&v.metadata), "AuthRequest: metadata");
        for (k, val) in &p.metadata {
            assert_eq!(v.metadata.get(k), Some(val.as_str()));
        }
        if canonical_map(&v.metadata) {
            assert_eq!(
                p.encode_to_vec(),
                out,
                "AuthRequest: bytes differ from prost"
            );
        }
    }
    // ReconnectRequest
    if let Some((v, out)) = round_trip::<ReconnectRequest<'_>>(data, "ReconnectRequest") {
        again(&out, &v, "ReconnectRequest");
        let p: pb::ReconnectRequest = pb_decode(data, "ReconnectRequest");
        assert_eq!(p.session_id, v.session_id);
        assert_eq!(
            p.metadata,
            map_of(&v.metadata),
            "ReconnectRequest: metadata"
        );
        if canonical_map(&v.metadata) {
            assert_eq!(
                p.encode_to_vec(),
                out,
                "ReconnectRequest: bytes differ from prost"
            );
        }
    }
    // SessionGrant (= AuthResponse = ReconnectResponse)
    if let Some((v, out)) = round_trip::<SessionGrant<'_>>(data, "SessionGrant") {
        again(&out, &v, "SessionGrant");
        for (name, p) in [
            ("AuthResponse", {
                let p: pb::AuthResponse = pb_decode(data, "AuthResponse");
                (
                    p.session_id.clone(),
                    p.expires,
                    p.limit,
                    p.online,
                    p.encode_to_vec(),
                )
            }),
            ("ReconnectResponse", {
                let p: pb::ReconnectResponse = pb_decode(data, "ReconnectResponse");
                (
                    p.session_id.clone(),
                    p.expires,
                    p.limit,
                    p.online,
                    p.encode_to_vec(),
                )
            }),
        ] {
            assert_eq!(
                (p.0.as_str(), p.1, p.2, p.3),
                (v.session_id, v.expires, v.limit, v.online),
                "{name}: values"
            );
            assert_eq!(p.4, out, "{name}: bytes differ from prost");
        }
    }
    // ErrorBody
    if let Some((v, out)) = round_trip::<ErrorBody<'_>>(data, "ErrorBody") {
        again(&out, &v, "ErrorBody");
        let p: pb::Error = pb_decode(data, "Error");
        assert_eq!((p.code, p.msg.as_str()), (v.code, v.msg));
        assert_eq!(p.encode_to_vec(), out, "ErrorBody: bytes differ from prost");
    }
});
