//! Connless: `Connless::parse` on any datagram never panics; whatever parses re-emits with its
//! exact `buffer_len` (one byte less is `BufferTooSmall` naming that length) and parses back to
//! the same value; the request and answer decoders agree with the dispatcher.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_net::game::connless::{Connless, ConnlessPacket, InfoRequest, ServerInfo};

fuzz_target!(|data: &[u8]| {
    let Ok(c) = Connless::parse(data) else {
        return;
    };
    let p = ConnlessPacket::parse(data).expect("the dispatcher parsed it");
    match c {
        Connless::InfoRequest(r) => assert_eq!(InfoRequest::from_packet(&p), Ok(r)),
        Connless::Info(i) => {
            assert_eq!(ServerInfo::from_packet(&p), Ok(i));
            assert!(i.clients.iter().count() == i.clients.len());
        }
        _ => {}
    }
    let len = c.buffer_len();
    let mut out = vec![0u8; len];
    assert_eq!(c.emit(&mut out), Ok(len));
    if len > 0 {
        let mut short = vec![0u8; len - 1];
        assert_eq!(c.emit(&mut short).map_err(|e| e.required), Err(len));
    }
    assert_eq!(Connless::parse(&out), Ok(c), "round trip of {out:02x?}");
});
