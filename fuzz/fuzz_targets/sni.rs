//! The ClientHello reader of TCP listeners with `sni` routes, on random first bytes.
//! Never panics; a name it reports is never empty, and more bytes never undo a whole
//! hello's answer.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(name) = tioga::fuzzing::server_name(data) {
        assert!(name.as_deref() != Some(""), "an empty server name");
        let mut longer = data.to_vec();
        longer.extend_from_slice(b"\x17\x03\x03\x00\x01x");
        assert_eq!(tioga::fuzzing::server_name(&longer), Ok(name), "more bytes changed it");
    }
});
