//! `ipscope demo --kind neuron` and `ipscope run --assay neurite` end to end: neurite length
//! per neuron follows the drawn truth (Spearman ≥ 0.9), the two growth conditions separate
//! in Wells, and bad input (no marker signal, no marker channel) gives defined results or
//! named errors.

mod common;

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
