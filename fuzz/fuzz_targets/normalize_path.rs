//! The path normaliser: never panics, and what it returns is normal (starts with `/`,
//! no `//`, no dot segment, unchanged by a second pass).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let Some(normal) = tioga::fuzzing::normalize_path(path) else {
        return;
    };
    if !path.starts_with('/') {
        assert_eq!(normal, path);
        return;
    }
    assert!(normal.starts_with('/'), "{path:?} -> {normal:?}");
    assert!(!normal.contains("//"), "{path:?} -> {normal:?}");
    for segment in normal.split('/') {
        assert!(segment != "." && segment != "..", "{path:?} -> {normal:?}");
    }
    assert_eq!(
        tioga::fuzzing::normalize_path(&normal).as_deref(),
        Some(normal.as_str()),
        "a second pass changes {path:?}"
    );
});
