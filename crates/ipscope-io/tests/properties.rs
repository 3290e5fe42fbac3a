//! Property tests: untrusted bytes and strings never panic the parsers (the stable-toolchain
//! counterpart of fuzzing).

use std::path::Path;

use ipscope_image::Image;
use ipscope_io::{
    builtin_schemes, decode, normalize_well, parse_file_name, probe_bytes, read_layout_lenient,
    write_png, write_tiff, NamingScheme, ReadOptions,
};
use proptest::prelude::*;

fn valid_tiff() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.tif");
    let img = Image::from_fn(13, 7, |r, c| (r * 100 + c) as u16);
    write_tiff(&p, img.view()).unwrap();
    std::fs::read(p).unwrap()
}

fn valid_png() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.png");
    let img = Image::from_fn(9, 11, |r, c| (r * 7 + c) as u8);
    write_png(&p, img.view()).unwrap();
    std::fs::read(p).unwrap()
}

fn opts() -> ReadOptions {
    ReadOptions {
        max_pixels: 1 << 20,
    }
}

fn mutate(mut bytes: Vec<u8>, edits: &[(prop::sample::Index, u8)]) -> Vec<u8> {
    for (i, v) in edits {
        let k = i.index(bytes.len());
        bytes[k] = *v;
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let path = Path::new("fuzz.tif");
        let _ = probe_bytes(&bytes, path);
        let _ = decode(&bytes, path, 0, &opts());
    }

    #[test]
    fn mutated_images_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
        cut in any::<prop::sample::Index>(),
    ) {
        for (bytes, name) in [(valid_tiff(), "m.tif"), (valid_png(), "m.png")] {
            let bytes = mutate(bytes, &edits);
            let path = Path::new(name);
            let _ = probe_bytes(&bytes, path);
            let _ = decode(&bytes, path, 0, &opts());
            let end = cut.index(bytes.len() + 1);
            let _ = decode(&bytes[..end], path, 0, &opts());
        }
    }

    #[test]
    fn file_names_and_wells_never_panic(name in "\\PC{0,60}", well in "\\PC{0,8}") {
        for s in builtin_schemes() {
            let _ = parse_file_name(&name, &s);
        }
        let _ = normalize_well(&well);
    }

    #[test]
    fn user_patterns_never_panic(pattern in "\\PC{0,40}", name in "[A-Za-z0-9_.-]{0,30}") {
        if let Ok(s) = NamingScheme::custom(&pattern, Path::new("plate")) {
            let _ = parse_file_name(&name, &s);
        }
    }

    #[test]
    fn layouts_never_panic(text in "(\\PC|,|\\n|\\t|\"){0,300}") {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("layout.csv");
        std::fs::write(&p, format!("Metadata_Well,Metadata_Role\n{text}")).unwrap();
        let _ = read_layout_lenient(&p);
        std::fs::write(&p, &text).unwrap();
        let _ = read_layout_lenient(&p);
    }
}

#[test]
fn the_mutated_fixtures_are_valid_images() {
    assert!(decode(&valid_tiff(), Path::new("a.tif"), 0, &opts()).is_ok());
    assert!(decode(&valid_png(), Path::new("a.png"), 0, &opts()).is_ok());
}
