//! `ipscope demo --kind neuron` and `ipscope run --assay neurite` end to end: neurite length
//! per neuron follows the drawn truth (Spearman ≥ 0.9), the two growth conditions separate
//! in Wells, and bad input (no marker signal, no marker channel) gives defined results or
//! named errors.

use crate::common;

use common::{f64s, ipscope, p, stderr, strs, table, u32s, u64s};

fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        for &k in &idx[i..=j] {
            r[k] = (i + j) as f64 / 2.0;
        }
        i = j + 1;
    }
    r
}

fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let n = a.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

#[test]
fn neuron_demo_lengths_follow_truth_and_conditions_separate() {
    let dir = tempfile::tempdir().unwrap();
    let plate = dir.path().join("plate");
    let out = dir.path().join("out");
    let o = ipscope(&["demo", p(&plate), "--kind", "neuron", "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = ipscope(&[
        "run",
        p(&plate),
        "-o",
        p(&out),
        "--assay",
        "neurite",
        "--channel",
        "w1=DNA",
        "--channel",
        "w2=TUBB3",
        "--layout",
        p(&plate.join("layout.csv")),
        "--pixel-size",
        "0.65",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    // Truth: one row per drawn neuron.
    let text = std::fs::read_to_string(plate.join("truth/neurons.csv")).unwrap();
    let truth: Vec<(String, u32, f64, f64, f64)> = text
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[0].to_string(),
                f[1].parse().unwrap(),
                f[3].parse().unwrap(),
                f[4].parse().unwrap(),
                f[5].parse().unwrap(),
            )
        })
        .collect();
    let n = table(&out.join("Neurons.parquet"));
    let wells = strs(&n, "Metadata_Well");
    let sites = u32s(&n, "Metadata_Site");
    let xs = f64s(&n, "Location_Center_X");
    let ys = f64s(&n, "Location_Center_Y");
    let len = f64s(&n, "ObjectSkeleton_TotalObjectSkeletonLength_Neurites");
    let len_um = f64s(&n, "ObjectSkeleton_TotalObjectSkeletonLength_Neurites_um");
    assert_eq!(
        u32s(&n, "Parent_Nuclei"),
        u32s(&n, "ObjectNumber"),
        "a neuron is its nucleus's child"
    );
    for (a, b) in len.iter().zip(&len_um) {
        assert!((a * 0.65 - b).abs() < 1e-9);
    }
    let (mut want, mut got) = (Vec::new(), Vec::new());
    for t in &truth {
        let hit = (0..len.len()).find(|&i| {
            wells[i] == t.0 && sites[i] == t.1 && (xs[i] - t.2).hypot(ys[i] - t.3) < 3.0
        });
        let i = hit.unwrap_or_else(|| panic!("drawn neuron {t:?} not found"));
        want.push(t.4);
        got.push(len[i]);
    }
    let rho = spearman(&want, &got);
    eprintln!("{} neurons, Spearman {rho:.3}", want.len());
    assert!(want.len() >= 60);
    assert!(rho >= 0.9, "Spearman {rho}");

    let w = table(&out.join("Wells.parquet"));
    let cond = strs(&w, "Metadata_Condition");
    let mean = f64s(&w, "Mean_NeuriteLength");
    let ctrl: Vec<f64> = (0..mean.len())
        .filter(|&i| cond[i] == "control")
        .map(|i| mean[i])
        .collect();
    let grow: Vec<f64> = (0..mean.len())
        .filter(|&i| cond[i] == "growth")
        .map(|i| mean[i])
        .collect();
    assert_eq!((ctrl.len(), grow.len()), (3, 3));
    let max_ctrl = ctrl.iter().cloned().fold(f64::MIN, f64::max);
    let min_grow = grow.iter().cloned().fold(f64::MAX, f64::min);
    assert!(min_grow > max_ctrl, "control {ctrl:?} vs growth {grow:?}");
    // Every drawn dead and non-neuronal nucleus is counted apart from the neurons.
    let dead: u64 = u64s(&w, "Count_Dead").iter().sum();
    let neurons: u64 = u64s(&w, "Count_Neurons").iter().sum();
    assert_eq!(neurons as usize, truth.len());
    assert!(dead > 0);
}

#[test]
fn no_marker_signal_gives_zero_neurons_and_no_marker_channel_is_a_named_error() {
    let dir = tempfile::tempdir().unwrap();
    let plate = dir.path().join("plate");
    let o = ipscope(&[
        "demo",
        p(&plate),
        "--kind",
        "neuron",
        "--sites",
        "1",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Blank every TUBB3 image: a flat background.
    for e in std::fs::read_dir(&plate).unwrap() {
        let path = e.unwrap().path();
        if path.to_string_lossy().ends_with("_w2.tif") {
            let flat = ipscope_image::Image::new(256, 256, 100u16);
            ipscope_io::write_tiff(&path, flat.view()).unwrap();
        }
    }
    let out = dir.path().join("out");
    let o = ipscope(&[
        "run",
        p(&plate),
        "-o",
        p(&out),
        "--assay",
        "neurite",
        "--channel",
        "w1=DNA",
        "--channel",
        "w2=TUBB3",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let n = table(&out.join("Neurons.parquet"));
    assert_eq!(n.num_rows(), 0);
    let img = table(&out.join("Image.parquet"));
    assert!(u64s(&img, "Count_Nuclei").iter().all(|&c| c > 0));
    assert!(u64s(&img, "Count_Neurons").iter().all(|&c| c == 0));
    let w = table(&out.join("Wells.parquet"));
    assert!(f64s(&w, "Mean_NeuriteLength").iter().all(|v| v.is_nan()));

    // Only a nuclear channel named: the marker is missing.
    let out2 = dir.path().join("out2");
    let o = ipscope(&[
        "run",
        p(&plate),
        "-o",
        p(&out2),
        "--assay",
        "neurite",
        "--channel",
        "w1=DNA",
        "--channel",
        "w2=Hoechst",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("neuronal marker channel") && e.contains("plate"),
        "{e}"
    );
}

#[test]
fn spots_are_counted_per_cell_on_a_drawn_plate() {
    let dir = tempfile::tempdir().unwrap();
    let plate = dir.path().join("plate");
    std::fs::create_dir_all(&plate).unwrap();
    let (w, h) = (200usize, 100usize);
    let nuclei = [(50.0, 30.0), (50.0, 100.0), (50.0, 170.0)];
    // Cell k (1-based, left to right) gets 1, 2 and 4 spots within 12 px of its nucleus.
    let spots: Vec<(f64, f64)> = vec![
        (40.0, 30.0),
        (40.0, 95.0),
        (60.0, 108.0),
        (40.0, 162.0),
        (40.0, 178.0),
        (60.0, 162.0),
        (60.0, 178.0),
    ];
    let dna = ipscope_image::Image::from_fn(w, h, |r, c| {
        let inside = nuclei
            .iter()
            .any(|&(y, x)| (r as f64 - y).hypot(c as f64 - x) <= 6.0);
        if inside {
            20000u16
        } else {
            500
        }
    });
    let syn = ipscope_image::Image::from_fn(w, h, |r, c| {
        let v: f64 = spots
            .iter()
            .map(|&(y, x)| {
                (-((r as f64 - y).powi(2) + (c as f64 - x).powi(2)) / (2.0 * 1.5 * 1.5)).exp()
            })
            .sum();
        (500.0 + 20000.0 * v) as u16
    });
    for site in 1..=2 {
        ipscope_io::write_tiff(&plate.join(format!("SPOT1_B02_s{site}_w1.tif")), dna.view())
            .unwrap();
        ipscope_io::write_tiff(&plate.join(format!("SPOT1_B02_s{site}_w3.tif")), syn.view())
            .unwrap();
    }
    let out = dir.path().join("out");
    let o = ipscope(&[
        "run",
        p(&plate),
        "-o",
        p(&out),
        "--assay",
        "spots",
        "--channel",
        "w1=DNA",
        "--channel",
        "w3=SYN1",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let cells = table(&out.join("Cells.parquet"));
    assert_eq!(u32s(&cells, "Children_Spots_Count"), vec![1, 2, 4, 1, 2, 4]);
    assert!(f64s(&cells, "Cells_Spots_TotalIntensity_SYN1")
        .iter()
        .all(|&v| v > 0.0));
    let sp = table(&out.join("Spots.parquet"));
    assert_eq!(sp.num_rows(), 14);
    let wells = table(&out.join("Wells.parquet"));
    assert_eq!(u64s(&wells, "Count_Spots"), vec![14]);
    let m = f64s(&wells, "Mean_SpotsPerCell")[0];
    assert!((m - 7.0 / 3.0).abs() < 1e-12, "{m}");

    // `[nuclei]` of --config segments the nuclei: a lower bound on the threshold above the
    // nuclei's intensity (20000 / 65535) leaves no nucleus, so no cell.
    let config = dir.path().join("nuclei.toml");
    std::fs::write(&config, "[nuclei]\nthreshold_min = 0.9\n").unwrap();
    let bounded = dir.path().join("bounded");
    let o = ipscope(&[
        "run",
        p(&plate),
        "-o",
        p(&bounded),
        "--assay",
        "spots",
        "--channel",
        "w1=DNA",
        "--channel",
        "w3=SYN1",
        "--config",
        p(&config),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(table(&bounded.join("Cells.parquet")).num_rows(), 0);
}

#[test]
fn ridge_filter_is_chosen_in_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let plate = dir.path().join("plate");
    let o = ipscope(&["demo", p(&plate), "--kind", "neuron", "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let run = |filter: &str| {
        let config = dir.path().join(format!("{filter}.toml"));
        std::fs::write(&config, format!("[neurite]\nridge = \"{filter}\"\n")).unwrap();
        let out = dir.path().join(filter);
        let o = ipscope(&[
            "run",
            p(&plate),
            "-o",
            p(&out),
            "--assay",
            "neurite",
            "--channel",
            "w1=DNA",
            "--channel",
            "w2=TUBB3",
            "--layout",
            p(&plate.join("layout.csv")),
            "--config",
            p(&config),
            "--quiet",
        ]);
        (o, out)
    };
    let mut totals = Vec::new();
    for filter in ["sato", "frangi", "meijering"] {
        let (o, out) = run(filter);
        assert!(o.status.success(), "{filter}: {}", stderr(&o));
        let w = table(&out.join("Wells.parquet"));
        let cond = strs(&w, "Metadata_Condition");
        let mean = f64s(&w, "Mean_NeuriteLength");
        let of = |c: &str| -> Vec<f64> {
            (0..mean.len())
                .filter(|&i| cond[i] == c)
                .map(|i| mean[i])
                .collect()
        };
        let (ctrl, grow) = (of("control"), of("growth"));
        let top_ctrl = ctrl.iter().copied().fold(f64::MIN, f64::max);
        let low_grow = grow.iter().copied().fold(f64::MAX, f64::min);
        eprintln!("{filter}: control {ctrl:?}, growth {grow:?}");
        assert!(low_grow > top_ctrl, "{filter}: conditions overlap");
        totals.push(f64s(&w, "Sum_NeuriteLength").iter().sum::<f64>());
    }
    // Each filter gives its own skeletons.
    assert!(totals[0] != totals[1] && totals[0] != totals[2] && totals[1] != totals[2]);

    // An unknown filter: exit 1 naming the file and the choices.
    let (o, _) = run("hessian");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("hessian.toml") && e.contains("sato") && e.contains("meijering"),
        "{e}"
    );
}

/// (start, length, value) runs of the nonzero pixels, row-major.
fn runs(values: impl Iterator<Item = u32>) -> Vec<[u64; 3]> {
    let mut out: Vec<[u64; 3]> = Vec::new();
    for (i, v) in values.enumerate() {
        if v == 0 {
            continue;
        }
        match out.last_mut() {
            Some(r) if r[0] + r[1] == i as u64 && r[2] == u64::from(v) => r[1] += 1,
            _ => out.push([i as u64, 1, u64::from(v)]),
        }
    }
    out
}

/// CellProfiler 4.2.8's MeasureObjectSkeleton, run by
/// `testdata/reference/assays/cellprofiler_skeleton_ref.py` on the somata (seed objects) and
/// pruned neurite skeleton ipscope found on every field of the default demo neuron plate,
/// against ipscope's skeleton measurement ([`measure_skeleton`], the last step of the neurite
/// assay) on the same somata and skeleton. With `IPSCOPE_WRITE_CP_INPUT=FILE` the test
/// writes those somata, skeletons and neuron labels for the script instead (see the README
/// there).
#[test]
fn skeleton_counts_agree_with_cellprofiler_measureobjectskeleton() {
    use ipscope::core::assays::neurite::{measure_skeleton, NeuriteParams, NucleusClass};
    use ipscope::neurite_run::{analyze_field, NeuriteRunOptions};
    use ipscope_image::Image;
    if let Ok(path) = std::env::var("IPSCOPE_WRITE_CP_INPUT") {
        let tmp = tempfile::tempdir().unwrap();
        let plate = tmp.path().join("plate");
        ipscope::demo_neuron::generate(&plate, &Default::default()).unwrap();
        let found = ipscope_io::discover(&plate, &Default::default()).unwrap();
        let opts = NeuriteRunOptions::new(&plate, tmp.path().join("out"));
        let mut fields = Vec::new();
        for f in &found.fields {
            let ch = |id: &str| f.channels.iter().find(|c| c.channel == id).unwrap();
            let (dna, marker) = (ch("w1"), ch("w2"));
            let (_, res) = analyze_field(&dna.path, dna.page, &marker.path, marker.page, &opts)
                .unwrap_or_else(|e| panic!("{e:?}"));
            fields.push(serde_json::json!({
                "well": f.well,
                "site": f.site,
                "width": res.skeleton.width(),
                "height": res.skeleton.height(),
                "somata_runs": runs(res.somata.image().as_slice().iter().copied()),
                "skeleton_runs": runs(res.skeleton.as_slice().iter().map(|&b| u32::from(b))),
                "neurons": res.neurons.iter()
                    .filter(|n| n.class == NucleusClass::Neuron)
                    .map(|n| n.nucleus)
                    .collect::<Vec<_>>(),
            }));
        }
        std::fs::write(&path, serde_json::to_string(&fields).unwrap()).unwrap();
        eprintln!(
            "wrote the somata and skeletons of {} fields to {path}",
            fields.len()
        );
        return;
    }
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            common::repo().join("testdata/reference/assays/cellprofiler_skeleton.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let image = |v: &serde_json::Value, w: usize, h: usize| -> Vec<u32> {
        let mut out = vec![0u32; w * h];
        for r in v.as_array().unwrap() {
            let r: Vec<u64> = r
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap())
                .collect();
            out[r[0] as usize..(r[0] + r[1]) as usize].fill(r[2] as u32);
        }
        out
    };
    let attach = NeuriteParams::default().attach_distance;
    let (mut neurons, mut same_counts, mut same_trunks, mut same_ends, mut same_non_trunk) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    let mut fewer_trunks = 0usize;
    let mut length_errors: Vec<f64> = Vec::new();
    for f in reference["fields"].as_array().unwrap() {
        let (w, h) = (
            f["width"].as_u64().unwrap() as usize,
            f["height"].as_u64().unwrap() as usize,
        );
        let som = image(&f["somata_runs"], w, h);
        let skel = image(&f["skeleton_runs"], w, h);
        let somata = Image::from_fn(w, h, |r, c| som[r * w + c]);
        let skeleton = Image::from_fn(w, h, |r, c| skel[r * w + c] != 0);
        let labels: Vec<u32> = f["neurons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        let max = som.iter().copied().max().unwrap_or(0) as usize;
        let mut is_neuron = vec![false; max + 1];
        for &l in &labels {
            is_neuron[l as usize] = true;
        }
        let mine = measure_skeleton(&somata, &skeleton, &is_neuron, attach);
        let objects = f["objects"].as_array().unwrap();
        for &l in &labels {
            let o = &objects[l as usize - 1];
            assert_eq!(o["label"].as_u64(), Some(u64::from(l)));
            let m = mine.counts[l as usize];
            let count = |k: &str| o[k].as_u64().unwrap() as u32;
            neurons += 1;
            let t = m.trunks == count("NumberTrunks");
            let e = m.branch_ends == count("NumberBranchEnds");
            let b = m.non_trunk_branches == count("NumberNonTrunkBranches");
            same_trunks += usize::from(t);
            fewer_trunks += usize::from(m.trunks < count("NumberTrunks"));
            same_ends += usize::from(e);
            same_non_trunk += usize::from(b);
            same_counts += usize::from(t && e && b);
            let cp_len = o["TotalObjectSkeletonLength"].as_f64().unwrap();
            length_errors.push((m.total_length - cp_len).abs() / cp_len.max(1.0));
            if !(t && e && b) {
                eprintln!(
                    "{} s{} neuron {l}: ipscope trunks/non-trunk/ends {}/{}/{} length {:.1}, CellProfiler {}/{}/{} length {cp_len:.1}",
                    f["well"], f["site"], m.trunks, m.non_trunk_branches, m.branch_ends, m.total_length,
                    count("NumberTrunks"), count("NumberNonTrunkBranches"), count("NumberBranchEnds"),
                );
            }
        }
    }
    length_errors.sort_by(f64::total_cmp);
    let frac = |k: usize| k as f64 / neurons.max(1) as f64;
    let median_len = length_errors[length_errors.len() / 2];
    let p90_len = length_errors[length_errors.len() * 9 / 10];
    eprintln!(
        "{neurons} neurons: trunks {:.3}, non-trunk branches {:.3}, branch ends {:.3}, all three {:.3} equal; \
         length relative difference median {median_len:.4}, 90th percentile {p90_len:.4}",
        frac(same_trunks),
        frac(same_non_trunk),
        frac(same_ends),
        frac(same_counts),
    );
    assert!(neurons >= 20, "{neurons} neurons");
    // Measured on the committed reference (84 neurons): branch ends and non-trunk branch
    // points equal for every neuron; trunks equal for 75 %, otherwise ipscope counts more
    // (CellProfiler re-skeletonizes the skeleton joined to a ring around the dilated soma,
    // which merges trunks leaving the soma side by side); lengths 11 % longer at the median
    // (ipscope also counts the skeleton between the soma and CellProfiler's ring).
    assert_eq!(same_non_trunk, neurons, "non-trunk branch points differ");
    assert_eq!(same_ends, neurons, "branch ends differ");
    assert!(
        fewer_trunks == 0,
        "{fewer_trunks} neurons with fewer trunks than CellProfiler"
    );
    assert!(
        frac(same_trunks) >= 0.7,
        "trunks agree for {:.3}",
        frac(same_trunks)
    );
    assert!(median_len <= 0.15, "median length difference {median_len}");
}
