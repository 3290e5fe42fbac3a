//! `run` with a cells channel (`--channel w2=OCT4:cells`): the Cells and Cytoplasm tables,
//! their parent links to Nuclei, the Image counts and Wells statistics, and the same tables for
//! 1 and 2 threads, for two shards merged and for a resumed run.
//!
//! The small demo plate has no cytoplasm stain; its marker channel (OCT4, w2) stands in as
//! the cell-body stain here, which is enough to check the bookkeeping (every cell holds its
//! nucleus, cytoplasm = cell − nucleus), not the biology of the cells.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use ipscope_table::arrow_array::Array;

const CELLS: &str = "w2=OCT4:cells";
const TABLES: [&str; 6] = ["Image", "Nuclei", "Cells", "Cytoplasm", "Wells", "Errors"];

/// `run` arguments of the small plate with OCT4 as the cells channel.
fn cells_args<'a>(plate: &'a Path, out: &'a Path, threads: &'a str) -> Vec<&'a str> {
    vec![
        "run",
        p(plate),
        "-o",
        p(out),
        "--channel",
        "w1=DNA",
        "--channel",
        CELLS,
        "--threads",
        threads,
        "--quiet",
    ]
}

fn run_ok(args: &[&str]) {
    let o = ipscope(args);
    assert!(o.status.success(), "{}", stderr(&o));
}

fn same_tables(a: &Path, b: &Path) {
    for t in TABLES {
        let (x, y) = (
            table(&a.join(format!("{t}.parquet"))),
            table(&b.join(format!("{t}.parquet"))),
        );
        assert_eq!(
            x,
            y,
            "{t} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

/// (ImageNumber, ObjectNumber) → row value of `column`.
fn by_object(
    t: &ipscope_table::arrow_array::RecordBatch,
    column: &str,
) -> BTreeMap<(u32, u32), f64> {
    let (img, obj, v) = (
        u32s(t, "ImageNumber"),
        u32s(t, "ObjectNumber"),
        f64s(t, column),
    );
    img.into_iter().zip(obj).zip(v).collect()
}

/// The links and areas of one run's Cells, Cytoplasm and Nuclei tables.
fn check_cell_tables(out: &Path) {
    let nuclei = table(&out.join("Nuclei.parquet"));
    let cells = table(&out.join("Cells.parquet"));
    let cyto = table(&out.join("Cytoplasm.parquet"));
    let image = table(&out.join("Image.parquet"));
    assert!(cells.num_rows() > 100, "only {} cells", cells.num_rows());

    // Same format as Nuclei: key columns, then the same measurement columns per compartment.
    for name in nuclei.schema().fields().iter().map(|f| f.name().clone()) {
        let Some(rest) = name.strip_prefix("Nuclei_") else {
            continue;
        };
        for (obj, t) in [("Cells", &cells), ("Cytoplasm", &cyto)] {
            assert!(
                t.column_by_name(&format!("{obj}_{rest}")).is_some(),
                "{obj} lacks {obj}_{rest}"
            );
        }
    }

    let nuc_area = by_object(&nuclei, "Nuclei_AreaShape_Area");
    let cell_area = by_object(&cells, "Cells_AreaShape_Area");
    let cyto_area = by_object(&cyto, "Cytoplasm_AreaShape_Area");

    // Every cell's Parent_Nuclei exists, in the same field, and lies inside the cell.
    let (ci, co, cp) = (
        u32s(&cells, "ImageNumber"),
        u32s(&cells, "ObjectNumber"),
        u32s(&cells, "Parent_Nuclei"),
    );
    let mut grown = 0;
    for k in 0..cells.num_rows() {
        let n = nuc_area
            .get(&(ci[k], cp[k]))
            .unwrap_or_else(|| panic!("cell {}/{}: no nucleus {}", ci[k], co[k], cp[k]));
        let c = cell_area[&(ci[k], co[k])];
        assert!(c >= *n, "cell {}/{}: area {c} < nucleus {n}", ci[k], co[k]);
        if c > *n {
            grown += 1;
        }
        // Cytoplasm = cell − nucleus; a cell that is all nucleus has no cytoplasm row.
        match cyto_area.get(&(ci[k], co[k])) {
            Some(y) => assert_eq!(*y, c - n, "cytoplasm {}/{}", ci[k], co[k]),
            None => assert_eq!(c, *n, "cell {}/{} has no cytoplasm row", ci[k], co[k]),
        }
    }
    assert!(grown > 0, "no cell grew beyond its nucleus");
    assert_eq!(
        cyto.num_rows(),
        grown,
        "cytoplasm rows vs cells larger than their nucleus"
    );

    // Cytoplasm's parents: the cell and the nucleus with its own label.
    let (yi, yo) = (u32s(&cyto, "ImageNumber"), u32s(&cyto, "ObjectNumber"));
    let (yn, yc) = (u32s(&cyto, "Parent_Nuclei"), u32s(&cyto, "Parent_Cells"));
    for k in 0..cyto.num_rows() {
        assert!(
            cell_area.contains_key(&(yi[k], yc[k])),
            "cytoplasm {}/{}",
            yi[k],
            yo[k]
        );
        assert!(
            nuc_area.contains_key(&(yi[k], yn[k])),
            "cytoplasm {}/{}",
            yi[k],
            yo[k]
        );
    }

    // Children_Cells_Count sums to the Cells rows; Image counts match the tables.
    let children: u64 = u32s(&nuclei, "Children_Cells_Count")
        .iter()
        .map(|&c| u64::from(c))
        .sum();
    assert_eq!(children, cells.num_rows() as u64);
    let sum = |c: &str| u64s(&image, c).iter().sum::<u64>();
    assert_eq!(sum("Count_Cells"), cells.num_rows() as u64);
    assert_eq!(sum("Count_Cytoplasm"), cyto.num_rows() as u64);
    assert!(image
        .column_by_name("Threshold_FinalThreshold_Cells")
        .is_some());

    // Per-well statistics of the cells.
    let wells = table(&out.join("Wells.parquet"));
    for c in [
        "Mean_Cells_AreaShape_Area",
        "Median_Cytoplasm_AreaShape_Area",
    ] {
        assert!(wells.column_by_name(c).is_some(), "Wells lacks {c}");
    }

    // The manifest lists both tables with their sha256 (checked with sha256sum).
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    for t in ["Cells.parquet", "Cytoplasm.parquet"] {
        let rec = m["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["path"] == t)
            .unwrap_or_else(|| panic!("manifest lacks {t}"));
        let bytes = std::fs::read(out.join(t)).unwrap();
        assert_eq!(rec["sha256"].as_str().unwrap(), sha256sum(&bytes), "{t}");
    }
}

/// sha256 through the `sha256sum` tool, independent of ipscope's hashing.
fn sha256sum(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn cells_and_cytoplasm_in_run_match_across_threads_shards_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let plate = small_plate(dir.path());
    let one = dir.path().join("one");
    run_ok(&cells_args(&plate, &one, "1"));
    check_cell_tables(&one);

    // Two threads: byte-identical tables.
    let two = dir.path().join("two");
    run_ok(&cells_args(&plate, &two, "2"));
    for t in TABLES {
        let f = format!("{t}.parquet");
        assert!(
            std::fs::read(one.join(&f)).unwrap() == std::fs::read(two.join(&f)).unwrap(),
            "{f} differs between 1 and 2 threads"
        );
    }

    // Two shards merged.
    let mut shard_dirs = Vec::new();
    for s in ["1/2", "2/2"] {
        let d = dir.path().join(format!("shard{}", &s[..1]));
        let mut args = cells_args(&plate, &d, "1");
        args.extend(["--shard", s]);
        run_ok(&args);
        shard_dirs.push(d);
    }
    let merged = dir.path().join("merged");
    run_ok(&[
        "merge",
        p(&shard_dirs[0]),
        p(&shard_dirs[1]),
        "-o",
        p(&merged),
    ]);
    same_tables(&one, &merged);

    // Resume: the tables fail to write (file-size limit) after fields were saved; the resumed
    // run assembles them from the saved fields, cells and cytoplasm included.
    let out = dir.path().join("resumed");
    let mut args = cells_args(&plate, &out, "1");
    let cmd = format!(
        "ulimit -f 64; exec \"$0\" {}",
        args.iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let o = std::process::Command::new("bash")
        .args(["-c", &cmd, env!("CARGO_BIN_EXE_ipscope")])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!out.join("manifest.json").exists());
    args.push("--resume");
    run_ok(&args);
    same_tables(&one, &out);
}

#[test]
fn cells_from_config_and_two_cells_channels_refused() {
    let dir = tempfile::tempdir().unwrap();
    let plate = small_plate(dir.path());

    // The role and the method from a configuration file: fixed-distance growth by 3 px.
    let config = dir.path().join("cells.toml");
    std::fs::write(
        &config,
        "[channels]\nw1 = \"DNA\"\nw2 = \"OCT4:cells\"\n[cells]\nmethod = \"distance\"\ndistance = 3.0\n",
    )
    .unwrap();
    let grown = dir.path().join("distance");
    run_ok(&[
        "run",
        p(&plate),
        "-o",
        p(&grown),
        "--config",
        p(&config),
        "--threads",
        "2",
        "--quiet",
    ]);
    check_cell_tables(&grown);
    // No threshold for distance growth.
    let image = table(&grown.join("Image.parquet"));
    let th = image
        .column_by_name("Threshold_FinalThreshold_Cells")
        .unwrap();
    assert_eq!(th.null_count(), image.num_rows());

    // A blank cell stain (A01): cells are the nuclei, no cytoplasm. A blank nuclear image
    // (A02): no nuclei, no cells. Neither fails.
    for (well, ch) in [("A01", "w2"), ("A02", "w1")] {
        let path = plate.join(format!("DEMO01_{well}_s1_{ch}.tif"));
        let bytes = std::fs::read(&path).unwrap();
        let opts = ipscope_io::ReadOptions {
            max_pixels: 1 << 30,
        };
        let img = ipscope_io::decode(&bytes, &path, 0, &opts).unwrap();
        let blank = ipscope_image::Image::new(img.width(), img.height(), 0u16);
        ipscope_io::write_tiff(&path, blank.view()).unwrap();
    }
    let blanks = dir.path().join("blanks");
    run_ok(&cells_args(&plate, &blanks, "1"));
    check_cell_tables(&blanks);
    let image = table(&blanks.join("Image.parquet"));
    assert_eq!(strs(&image, "Status")[..2], ["ok", "ok"]);
    let (nuclei, cells, cyto) = (
        u64s(&image, "Count_Nuclei"),
        u64s(&image, "Count_Cells"),
        u64s(&image, "Count_Cytoplasm"),
    );
    assert!(nuclei[0] > 0);
    assert_eq!((cells[0], cyto[0]), (nuclei[0], 0), "blank cell stain");
    assert_eq!(
        (nuclei[1], cells[1], cyto[1]),
        (0, 0, 0),
        "blank nuclear image"
    );

    let out = dir.path().join("out");
    let o = ipscope(&[
        "run",
        p(&plate),
        "-o",
        p(&out),
        "--channel",
        "w1=DNA:cells",
        "--channel",
        CELLS,
        "--quiet",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains(":cells"), "{}", stderr(&o));
}

/// With colonies on, every cell and cytoplasm carries its nucleus's colony.
#[test]
fn cells_carry_the_colony_of_their_nucleus() {
    let tmp = tempfile::tempdir().unwrap();
    let plate = small_plate(tmp.path());
    let out = tmp.path().join("out");
    let mut args = cells_args(&plate, &out, "2");
    args.extend(["--colonies", "nuclei"]);
    run_ok(&args);
    let nuclei = table(&out.join("Nuclei.parquet"));
    let colony_of: BTreeMap<(u32, u32), u32> = u32s(&nuclei, "ImageNumber")
        .into_iter()
        .zip(u32s(&nuclei, "ObjectNumber"))
        .zip(u32s(&nuclei, "Parent_Colonies"))
        .collect();
    assert!(
        colony_of.values().any(|&c| c > 0),
        "no nucleus is in a colony"
    );
    for object in ["Cells", "Cytoplasm"] {
        let t = table(&out.join(format!("{object}.parquet")));
        assert!(t.num_rows() > 0, "{object} is empty");
        let images = u32s(&t, "ImageNumber");
        let nuclei_of = u32s(&t, "Parent_Nuclei");
        for (r, colony) in u32s(&t, "Parent_Colonies").into_iter().enumerate() {
            let nucleus = (images[r], nuclei_of[r]);
            assert_eq!(
                Some(&colony),
                colony_of.get(&nucleus),
                "{object} row {r} (nucleus {nucleus:?})"
            );
        }
    }
}
