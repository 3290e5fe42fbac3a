//! Plate layout CSV from untrusted text: strict and lenient reading return a layout or
//! errors naming the row, never panic.
#![no_main]

use ipscope_io::{read_layout, read_layout_lenient};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("ipscope-fuzz-layout-{}.csv", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let _ = read_layout(&path);
    if let Ok((layout, _)) = read_layout_lenient(&path) {
        for well in layout.wells() {
            let _ = layout.get(&well);
            let _ = layout.role(&well);
        }
        for i in 0..layout.columns.len() {
            let _ = layout.is_numeric(i);
        }
    }
});
