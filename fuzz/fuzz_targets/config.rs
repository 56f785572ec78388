//! The config loader and validation on arbitrary text: every input ends in a config
//! or a list of problems, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        tioga::fuzzing::check_config(text);
    }
});
