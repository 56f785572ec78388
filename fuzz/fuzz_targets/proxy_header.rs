//! The PROXY protocol (v1 and v2) reader of listeners with `proxy_protocol`, on random
//! first bytes. Never panics; a whole header never claims more bytes than it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((_, length))) = tioga::fuzzing::proxy_header(data) {
        assert!(length > 0 && length <= data.len(), "length {length} of {}", data.len());
    }
});
