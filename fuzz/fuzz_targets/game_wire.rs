//! Game wire decoder: `parse` in all three token modes never panics; whatever parses re-emits
//! (exact `buffer_len`, `BufferTooSmall` one byte short) and parses back to the same packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_net::game::wire::{
    parse, Control, DecodeError, Header, Packet, TokenMode, MAX_PACKET_LEN, MAX_REASON_LEN,
};

fn emit(packet: &Packet<'_>, buf: &mut [u8]) -> Result<usize, tether_net::BufferTooSmall> {
    match packet {
        Packet::Control(c) => c.emit(buf),
        Packet::Chunks(c) => c.emit(buf),
    }
}

fn buffer_len(packet: &Packet<'_>) -> usize {
    match packet {
        Packet::Control(c) => c.buffer_len(),
        Packet::Chunks(c) => c.buffer_len(),
    }
}

fuzz_target!(|data: &[u8]| {
    // The header alone: whatever parses re-encodes to the same three bytes.
    if let Ok(h) = Header::parse(data) {
        assert_eq!(&h.to_bytes()[..], &data[..3]);
        assert!(h.ack < 1024);
        let mut out = [0u8; 3];
        assert_eq!(h.emit(&mut out), Ok(3));
        assert!(h.emit(&mut out[..2]).is_err());
    }

    for mode in [TokenMode::Vanilla, TokenMode::Trailing, TokenMode::Detect] {
        let parsed = match parse(data, mode) {
            Ok(p) => p,
            Err(DecodeError::TooShort { len }) => {
                assert_eq!(len, data.len());
                assert!(len < 3);
                continue;
            }
            Err(DecodeError::TooLong { len }) => {
                assert_eq!(len, data.len());
                assert!(len > MAX_PACKET_LEN);
                continue;
            }
            Err(_) => continue,
        };
        assert!(data.len() <= MAX_PACKET_LEN);
        if let Packet::Control(c) = &parsed.packet {
            assert!(c.ack < 1024);
            if let Control::Close(r) = c.control {
                assert!(r.len() <= MAX_REASON_LEN);
                assert!(!r.as_bytes().contains(&0));
                let text = r.text().to_string();
                assert!(text.chars().all(|ch| !ch.is_control()));
                assert_eq!(r.text().as_bytes(), r.as_bytes());
            }
        }
        let len = buffer_len(&parsed.packet);
        let mut buf = vec![0u8; len + 8];
        let n = emit(&parsed.packet, &mut buf).expect("emit into buffer_len bytes");
        assert_eq!(
            n, len,
            "emit wrote another length than buffer_len ({mode:?})"
        );
        if len > 0 {
            let mut short = vec![0u8; len - 1];
            let e = emit(&parsed.packet, &mut short).expect_err("emit into a short buffer");
            assert_eq!(e.required, len);
        }
        let again = parse(&buf[..n], mode).unwrap_or_else(|e| {
            panic!(
                "re-parse of emitted {:02x?} failed: {e:?} ({mode:?})",
                &buf[..n]
            )
        });
        assert_eq!(
            again.packet,
            parsed.packet,
            "round trip changed the packet ({mode:?}); emitted {:02x?}",
            &buf[..n]
        );
    }
});
