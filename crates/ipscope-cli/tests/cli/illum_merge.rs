//! `merge` of shards run with `--illum`: every shard computes the illumination function over
//! the whole plate and saves it as `illum_<channel>.tif`; the merge copies it into the merged
//! output (the bytes an unsharded run saves) and lists it in the manifest, and refuses shards
//! whose functions differ or are missing, naming both files.

use crate::common;

use std::path::Path;

use common::*;

fn run_illum(plate: &Path, out: &Path, extra: &[&str]) {
    let mut args = small_run_args(plate, out);
    args.push("--illum");
    args.extend(extra);
    let o = ipscope(&args);
    assert!(o.status.success(), "{}", stderr(&o));
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap()
}

#[test]
fn merge_copies_the_shards_illumination_functions_and_refuses_differing_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let plate = small_plate(tmp.path());
    let whole = tmp.path().join("whole");
    run_illum(&plate, &whole, &[]);
    let parts: Vec<_> = (1..=2)
        .map(|i| {
            let part = tmp.path().join(format!("part{i}"));
            run_illum(&plate, &part, &["--shard", &format!("{i}/2")]);
            part
        })
        .collect();

    let merged = tmp.path().join("merged");
    let o = ipscope(&["merge", p(&parts[1]), p(&parts[0]), "-o", p(&merged)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (m, m_whole) = (manifest(&merged), manifest(&whole));
    let listed_in = |m: &serde_json::Value, name: &str| -> Option<serde_json::Value> {
        m["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["path"] == name)
            .cloned()
    };
    for name in ["illum_DNA.tif", "illum_OCT4.tif"] {
        let bytes = std::fs::read(merged.join(name))
            .unwrap_or_else(|e| panic!("{name} not in the merged output: {e}"));
        assert!(
            bytes == std::fs::read(whole.join(name)).unwrap(),
            "{name}: the merged function differs from the unsharded run's"
        );
        let listed = listed_in(&m, name)
            .unwrap_or_else(|| panic!("{name} not listed in the merged manifest's outputs"));
        // Same bytes, so the same hash as the unsharded run recorded.
        let whole_listed = listed_in(&m_whole, name).unwrap();
        assert_eq!(listed["sha256"], whole_listed["sha256"]);
        assert_eq!(listed["sha256"].as_str().map(str::len), Some(64));
        assert_eq!(listed["bytes"].as_u64(), Some(bytes.len() as u64));
    }

    // One float of shard 2's DNA function changed: refused, naming both files.
    let changed = parts[1].join("illum_DNA.tif");
    let mut bytes = std::fs::read(&changed).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x40;
    std::fs::write(&changed, &bytes).unwrap();
    let bad = tmp.path().join("bad");
    let o = ipscope(&["merge", p(&parts[0]), p(&parts[1]), "-o", p(&bad)]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains(p(&parts[0].join("illum_DNA.tif"))) && e.contains(p(&changed)),
        "{e}"
    );
    assert!(e.contains("differ"), "{e}");
    assert!(!bad.exists(), "a refused merge writes nothing");

    // A function missing from one shard: refused, naming the one that exists and the missing one.
    std::fs::remove_file(&changed).unwrap();
    let o = ipscope(&["merge", p(&parts[0]), p(&parts[1]), "-o", p(&bad)]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains(p(&parts[0].join("illum_DNA.tif"))) && e.contains(p(&changed)),
        "{e}"
    );
    assert!(e.contains("does not"), "{e}");
}
