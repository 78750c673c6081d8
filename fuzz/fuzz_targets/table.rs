//! Any bytes through `decode_table`; a table that decodes must encode and
//! decode again to an equal table.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pikars::protocol::{decode_table, encode_table, ProtocolError};

fuzz_target!(|data: &[u8]| {
    let Ok(table) = decode_table(data) else { return };
    let mut bytes = Vec::new();
    match encode_table(&mut bytes, &table) {
        Ok(()) => {
            let again = decode_table(&bytes).expect("a re-encoded table decodes");
            assert_eq!(again, table);
        }
        // A key that lossy UTF-8 decoding expanded past 255 bytes.
        Err(ProtocolError::ShortStringTooLong(n)) => assert!(n > 255),
        Err(e) => panic!("a decoded table does not encode: {e:?}"),
    }
});
