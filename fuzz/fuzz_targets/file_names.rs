//! Vendor file-name schemes (ImageXpress, Operetta, CellVoyager, Incucyte, …) and well names
//! from untrusted file names: parsing returns metadata or nothing, never panics.
#![no_main]

use ipscope_io::{builtin_schemes, natural_cmp, normalize_well, parse_file_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let name = String::from_utf8_lossy(data);
    for scheme in builtin_schemes() {
        let _ = parse_file_name(&name, &scheme);
    }
    let _ = normalize_well(&name);
    let (a, b) = name.split_at(
        name.char_indices()
            .nth(name.chars().count() / 2)
            .map_or(0, |(i, _)| i),
    );
    let _ = natural_cmp(a, b);
});
