//! Helpers shared by the reference tests that read real images from `$IPSCOPE_DATA`.

use std::path::{Path, PathBuf};

use ipscope_image::{DynImage, Image, Labels};
use serde_json::Value;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The shared data sets: `$IPSCOPE_DATA`, else `../shared/data` beside the repository.
pub fn data_dir() -> PathBuf {
    std::env::var_os("IPSCOPE_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/data"))
}

/// A label image read from disk (any integer or float sample type) as labels.
pub fn labels_of(img: DynImage) -> Labels {
    let lab: Image<u32> = match img {
        DynImage::U8(i) => i.map(u32::from),
        DynImage::U16(i) => i.map(u32::from),
        DynImage::U32(i) => i,
        DynImage::F32(i) => i.map(|v| v as u32),
    };
    Labels::from_image(lab)
}

/// `a` within 1e-6 absolute + 1e-6 relative of the reference `b` (`None` = NaN expected).
pub fn close(a: f64, b: Option<f64>) -> bool {
    match b {
        None => a.is_nan(),
        Some(b) => (a - b).abs() <= 1e-6 + 1e-6 * b.abs(),
    }
}

/// Decodes standard base64 (the reference scripts store arrays as base64 in JSON).
pub fn b64(s: &str) -> Vec<u8> {
    fn val(c: u8) -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("bad base64 byte {c}"),
        }
    }
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c) << (18 - 6 * i);
        }
        for i in 0..chunk.len() * 6 / 8 {
            out.push((acc >> (16 - 8 * i)) as u8);
        }
    }
    out
}

/// A JSON file of reference values, `testdata/reference/<dir>/<name>`.
pub fn reference_json(dir: &str, name: &str) -> Value {
    let path = repo().join("testdata/reference").join(dir).join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON in {name}: {e}"))
}

/// The `width` and `height` of an image stored in a reference JSON.
pub fn dims(v: &Value) -> (usize, usize) {
    (
        v["width"].as_u64().unwrap() as usize,
        v["height"].as_u64().unwrap() as usize,
    )
}

/// An `f32` image stored in a reference JSON (little-endian, base64).
pub fn f32_image(v: &Value) -> Image<f32> {
    assert_eq!(v["dtype"], "f32le-b64");
    let (w, h) = dims(v);
    let data = b64(v["data"].as_str().unwrap())
        .chunks(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Image::from_vec(w, h, data).unwrap()
}

/// A `u16` image stored in a reference JSON (little-endian, base64).
pub fn u16_image(v: &Value) -> Image<u16> {
    assert_eq!(v["dtype"], "u16le-b64");
    let (w, h) = dims(v);
    let data = b64(v["data"].as_str().unwrap())
        .chunks(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect();
    Image::from_vec(w, h, data).unwrap()
}
