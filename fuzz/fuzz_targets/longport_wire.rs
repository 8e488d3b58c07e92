//! LongPort wire decoder: `Header::parse` / `Packet::parse` with small and default body limits
//! never panic and agree with each other; parsed packets re-emit byte for byte; `Incomplete`
//! names a length the input does not have; built packets round-trip.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use tether_net::longport::wire::{
    DecodeError, Header, Kind, Packet, RequestId, Signature, Status, DEFAULT_MAX_BODY, MAX_BODY_LEN,
};

#[derive(Debug, Arbitrary)]
enum BuildKind {
    Request { request_id: u32, timeout_ms: u16 },
    Response { request_id: u32, status: u8 },
    Push,
}

#[derive(Debug, Arbitrary)]
struct Build<'a> {
    kind: BuildKind,
    cmd: u8,
    gzip: bool,
    reserve: u8,
    signature: Option<([u8; 8], [u8; 16])>,
    body: &'a [u8],
}

fn check_raw(data: &[u8], max_body: usize) {
    let header = Header::parse(data, max_body);
    match header {
        Ok((h, hlen)) => {
            assert_eq!(hlen, h.len());
            assert!(hlen <= data.len());
            assert!(h.body_len as usize <= max_body);
            assert!(h.reserve <= 3);
            let mut out = [0u8; 16];
            assert_eq!(h.emit(&mut out), Ok(hlen));
            assert_eq!(&out[..hlen], &data[..hlen], "header re-emit differs");
            assert!(h.emit(&mut out[..hlen - 1]).is_err());
        }
        Err(DecodeError::Incomplete { needed }) => assert!(needed > data.len()),
        Err(DecodeError::BodyTooLarge { len, max }) => {
            assert_eq!(max, max_body);
            assert!(len > max_body);
        }
        Err(DecodeError::UnknownType(t)) => assert!(t == 0 || t > 3),
    }

    match Packet::parse(data, max_body) {
        Ok((p, n)) => {
            let (h, _) = header.expect("packet parsed but its header did not");
            assert_eq!(p.header, h);
            assert_eq!(n, h.packet_len());
            assert_eq!(n, p.buffer_len());
            assert_eq!(p.signature.is_some(), h.verify);
            assert_eq!(p.body.len(), h.body_len as usize);
            let mut out = vec![0u8; n];
            assert_eq!(p.emit(&mut out), Ok(n));
            assert_eq!(&out[..], &data[..n], "packet re-emit differs");
            assert_eq!(
                p.emit(&mut out[..n - 1]).map_err(|e| e.required),
                Err(n),
                "short buffer must name the exact length"
            );
            // Every strict prefix is incomplete and asks for exactly n bytes once the header is
            // there.
            let cut = n - 1;
            match Packet::parse(&data[..cut], max_body) {
                Err(DecodeError::Incomplete { needed }) => {
                    assert!(needed > cut);
                    if cut >= h.len() {
                        assert_eq!(needed, n);
                    }
                }
                other => panic!("prefix of a packet parsed as {other:?}"),
            }
        }
        Err(DecodeError::Incomplete { needed }) => {
            assert!(needed > data.len());
            if let Ok((h, _)) = header {
                assert_eq!(needed, h.packet_len());
            }
        }
        Err(e) => {
            // The packet parser fails only where the header parser does.
            assert_eq!(header.map(|_| ()), Err(e));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    for max in [0, 7, 64, DEFAULT_MAX_BODY, MAX_BODY_LEN] {
        check_raw(data, max);
    }

    // Built packets round-trip.
    let mut u = Unstructured::new(data);
    if let Ok(b) = Build::arbitrary(&mut u) {
        let p = match b.kind {
            BuildKind::Request {
                request_id,
                timeout_ms,
            } => Packet::request(b.cmd, RequestId(request_id), timeout_ms, b.body),
            BuildKind::Response { request_id, status } => {
                assert_eq!(
                    u8::from(Status::from(status)),
                    status,
                    "status code round trip"
                );
                Packet::response(b.cmd, RequestId(request_id), Status::from(status), b.body)
            }
            BuildKind::Push => Packet::push(b.cmd, b.body),
        }
        .with_gzip(b.gzip)
        .with_reserve(b.reserve)
        .with_signature(
            b.signature
                .map(|(nonce, signature)| Signature { nonce, signature }),
        );
        let len = p.buffer_len();
        let mut out = vec![0u8; len];
        assert_eq!(p.emit(&mut out), Ok(len));
        let (q, n) = Packet::parse(&out, DEFAULT_MAX_BODY).expect("built packet parses");
        assert_eq!(n, len);
        assert_eq!(q, p, "built packet round trip");
        assert_eq!(q.header, p.wire_header());
        if let Kind::Response { status, .. } = q.header.kind {
            assert_eq!(Status::from(u8::from(status)), status);
        }
    }
});
