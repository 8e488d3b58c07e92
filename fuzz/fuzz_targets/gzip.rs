//! gzip: `gunzip` into a bounded buffer never panics and never writes past it; on success the
//! output matches the trailer CRC32 and ISIZE, a smaller buffer gives the same bytes or
//! `OutputLimit`, and flate2 decodes the same member to the same bytes; `gzip_stored` of the
//! input is a valid member that gunzips back to the input.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use tether_net::longport::gzip::{
    crc32, gunzip, gunzip_member, gzip_stored, stored_len, GzipError,
};

/// Output bound: four times libFuzzer's default input cap, so bombs hit the limit quickly
const LIMIT: usize = 16 * 1024;
const SMALL: usize = 64;

fn flate2_gunzip(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut d = flate2::read::GzDecoder::new(data).take(LIMIT as u64 + 1);
    d.read_to_end(&mut out).ok()?;
    Some(out)
}

thread_local! {
    static BUFS: std::cell::RefCell<(Vec<u8>, Vec<u8>)> =
        std::cell::RefCell::new((vec![0u8; LIMIT], vec![0u8; LIMIT]));
}

fuzz_target!(|data: &[u8]| BUFS.with(|b| {
    let (out, out2) = &mut *b.borrow_mut();
    let full = gunzip_member(data, out);
    assert_eq!(full.map(|(n, _)| n), gunzip(data, out2));
    if let Ok((n, _)) = full {
        assert_eq!(&out[..n], &out2[..n]);
    }
    match full {
        Ok((n, consumed)) => {
            assert!(n <= LIMIT);
            assert!(consumed <= data.len() && consumed >= 18);
            let trailer = &data[consumed - 8..consumed];
            let crc = u32::from_le_bytes(trailer[..4].try_into().unwrap());
            let isize = u32::from_le_bytes(trailer[4..].try_into().unwrap());
            assert_eq!(
                crc,
                crc32(&out[..n]),
                "CRC32 of the output differs from the trailer"
            );
            assert_eq!(isize, n as u32, "ISIZE differs from the output length");
            // A smaller buffer: the same bytes, or the output limit.
            let mut small = [0u8; SMALL];
            match gunzip(data, &mut small) {
                Ok(m) => {
                    assert_eq!(m, n);
                    assert_eq!(&small[..m], &out[..n]);
                }
                Err(GzipError::OutputLimit { limit }) => {
                    assert_eq!(limit, SMALL);
                    assert!(n > SMALL);
                }
                Err(e) => panic!("{n}-byte member fails with a {SMALL}-byte buffer: {e:?}"),
            }
            // Differential: flate2 reads the same member to the same bytes.
            match flate2_gunzip(&data[..consumed]) {
                Some(theirs) => assert_eq!(theirs, &out[..n], "flate2 decodes other bytes"),
                None => panic!("we decode {n} bytes, flate2 rejects the member"),
            }
        }
        Err(GzipError::OutputLimit { limit }) => assert_eq!(limit, LIMIT),
        Err(_) => {
            // flate2 must not find a valid member that fits the limit either, unless it is more
            // lenient in a documented way (it does not check the FHCRC header CRC).
            if let Some(theirs) = flate2_gunzip(data) {
                if theirs.len() <= LIMIT && !has_fhcrc(data) {
                    panic!(
                        "flate2 decodes {} bytes, we reject: {:?}",
                        theirs.len(),
                        full
                    );
                }
            }
        }
    }

    // Stored-block encoder round trip.
    let len = stored_len(data.len());
    let mut gz = vec![0u8; len];
    assert_eq!(gzip_stored(data, &mut gz), Ok(len));
    if len > 0 {
        assert_eq!(
            gzip_stored(data, &mut gz[..len - 1]).map_err(|e| e.required),
            Err(len)
        );
    }
    let mut back = vec![0u8; data.len()];
    assert_eq!(gunzip_member(&gz, &mut back), Ok((data.len(), len)));
    assert_eq!(&back[..], data);
    assert_eq!(flate2_gunzip(&gz).as_deref(), Some(data));
}));

fn has_fhcrc(data: &[u8]) -> bool {
    data.get(3).is_some_and(|f| f & 0x02 != 0)
}
