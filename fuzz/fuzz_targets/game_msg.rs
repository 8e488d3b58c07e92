//! Game messages and the int packer: `Message::parse` on any chunk data never panics; whatever
//! parses re-emits with its exact `buffer_len`, never longer than the input, and parses back to
//! the same message; `read_int` on any bytes returns 1..=5 bytes and a value whose canonical
//! encoding reads back the same; unpacking strings stops at NUL or errors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_net::game::msg::Message;
use tether_net::game::packer::{int_len, read_int, write_int, MsgHeader, Unpacker};

fuzz_target!(|data: &[u8]| {
    if let Ok((v, n)) = read_int(data) {
        assert!((1..=5).contains(&n));
        let mut canon = [0u8; 5];
        let m = write_int(v, &mut canon).unwrap();
        assert_eq!(m, int_len(v));
        assert!(m <= n);
        assert_eq!(read_int(&canon[..m]), Ok((v, m)));
    }
    let mut u = Unpacker::new(data);
    while !u.is_empty() {
        match u.str() {
            Ok(s) => assert!(!s.as_bytes().contains(&0)),
            Err(_) => break,
        }
    }
    if let Ok(m) = Message::parse(data) {
        let len = m.buffer_len();
        assert!(len <= data.len(), "re-emitted longer than the input");
        let mut out = vec![0u8; len];
        assert_eq!(m.emit(&mut out), Ok(len));
        let mut short = vec![0u8; len - 1];
        assert_eq!(m.emit(&mut short).map_err(|e| e.required), Err(len));
        assert_eq!(Message::parse(&out), Ok(m), "round trip of {out:02x?}");
        assert_eq!(MsgHeader::parse(&out).unwrap().0, m.header());
    }
});
