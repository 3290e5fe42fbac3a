//! Image decoding of untrusted bytes (magic bytes decide the format; seeded with PNG files):
//! probing and decoding the first pages must return an error or an image, never panic,
//! hang or allocate beyond `max_pixels`.
#![no_main]

use std::path::Path;

use ipscope_io::{decode, probe_bytes, ReadOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.png");
    let opts = ReadOptions {
        max_pixels: 1 << 22,
    };
    let _ = probe_bytes(data, path);
    for page in 0..2 {
        let _ = decode(data, path, page, &opts);
    }
});
