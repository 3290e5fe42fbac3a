//! `--pattern` regexes from the user: the first line is the pattern, the rest a file name.
//! Compiling the pattern returns a scheme or an error, and parsing a name with it never
//! panics.
#![no_main]

use std::path::Path;

use ipscope_io::{parse_file_name, NamingScheme};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (pattern, name) = text.split_once('\n').unwrap_or((&text, "P_A01_s1_w1.tif"));
    if let Ok(scheme) = NamingScheme::custom(pattern, Path::new("plate")) {
        let _ = parse_file_name(name, &scheme);
    }
});
