//! OME-XML from an untrusted OME-TIFF: the input becomes the ImageDescription of a valid
//! 2 x 2 8-bit TIFF, which is then probed and decoded (channel names, physical sizes).
#![no_main]

use std::path::Path;

use ipscope_io::{decode, probe_bytes, ReadOptions};
use libfuzzer_sys::fuzz_target;

/// A little-endian 2 x 2 u8 TIFF whose ImageDescription is `description` (NUL-terminated).
fn tiff_with_description(description: &[u8]) -> Vec<u8> {
    const ENTRIES: u16 = 10;
    let ifd_len = 2 + 12 * ENTRIES as u32 + 4;
    let pixels_at = 8 + ifd_len;
    let description_at = pixels_at + 4;
    let mut out = Vec::with_capacity(description_at as usize + description.len() + 1);
    out.extend_from_slice(b"II");
    out.extend_from_slice(&42u16.to_le_bytes());
    out.extend_from_slice(&8u32.to_le_bytes());
    out.extend_from_slice(&ENTRIES.to_le_bytes());
    let mut entry = |tag: u16, kind: u16, count: u32, value: u32| {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&value.to_le_bytes());
    };
    const SHORT: u16 = 3;
    const LONG: u16 = 4;
    const ASCII: u16 = 2;
    entry(256, SHORT, 1, 2); // ImageWidth
    entry(257, SHORT, 1, 2); // ImageLength
    entry(258, SHORT, 1, 8); // BitsPerSample
    entry(259, SHORT, 1, 1); // Compression: none
    entry(262, SHORT, 1, 1); // PhotometricInterpretation: BlackIsZero
    entry(270, ASCII, description.len() as u32 + 1, description_at); // ImageDescription
    entry(273, LONG, 1, pixels_at); // StripOffsets
    entry(277, SHORT, 1, 1); // SamplesPerPixel
    entry(278, SHORT, 1, 2); // RowsPerStrip
    entry(279, LONG, 1, 4); // StripByteCounts
    out.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    out.extend_from_slice(&[0, 64, 128, 255]);
    out.extend_from_slice(description);
    out.push(0);
    out
}

fuzz_target!(|data: &[u8]| {
    let bytes = tiff_with_description(data);
    let path = Path::new("fuzz.ome.tif");
    let _ = probe_bytes(&bytes, path);
    let _ = decode(&bytes, path, 0, &ReadOptions::default());
});
