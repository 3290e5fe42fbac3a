//! The trainable colony classifier: trained on the colony demo's truth-labelled colonies of
//! one seed, it must grade the colonies of another seed; `ipscope train` on a run's
//! Colonies table prints its cross-validated accuracy and writes a model that loads; a model
//! file naming an unknown feature, or missing its scaling, is a named error.

use crate::colony_eval;
use crate::common;

use colony_eval::{eval_plate, truth_grade, Matched};
use common::{ipscope, p, stderr, strs, table, u32s};
use ipscope::colony_model::{feature_row, ColonyModel};
use ipscope::core::assays::colonies::{ColonyFeatures, Grade};
use ipscope::demo_colonies::ColonyDemoParams;

/// Found colonies with the truth grade of the drawn colony they overlap most.
fn labelled(seed: u64) -> (Vec<ColonyFeatures>, Vec<Grade>) {
    let params = ColonyDemoParams {
        seed,
        ..Default::default()
    };
    let fields = eval_plate(&params);
    let ms: Vec<&Matched> = fields.iter().flat_map(|f| &f.matched).collect();
    let mut feats = Vec::new();
    let mut grades = Vec::new();
    for m in ms {
        if let Some(f) = &m.features {
            feats.push(f.clone());
            grades.push(truth_grade(m.class));
        }
    }
    (feats, grades)
}

/// A numeric column as f64 (the nuclei count is u64, the rest f64).
fn number_column(b: &ipscope::table::RecordBatch, name: &str) -> Vec<f64> {
    if name == "Colonies_Children_Nuclei_Count" {
        common::u64s(b, name).iter().map(|&v| v as f64).collect()
    } else {
        common::f64s(b, name)
    }
}

fn accuracy(model: &ColonyModel, feats: &[ColonyFeatures], grades: &[Grade]) -> f64 {
    let ok = feats
        .iter()
        .zip(grades)
        .filter(|(f, g)| model.predict(f) == **g)
        .count();
    ok as f64 / feats.len() as f64
}

#[test]
fn model_trained_on_one_seed_grades_another() {
    let (train_f, train_g) = labelled(1);
    let (test_f, test_g) = labelled(2);
    let names = ipscope::colony_model::default_features();
    let rows: Vec<Vec<f64>> = train_f.iter().map(feature_row).collect();
    let cv = ColonyModel::cross_validate(&names, &rows, &train_g, 5).expect("cv");
    let model = ColonyModel::train_features(&train_f, &train_g).expect("train");
    let acc = accuracy(&model, &test_f, &test_g);
    let rules = test_f
        .iter()
        .zip(&test_g)
        .filter(|(f, g)| {
            ipscope::core::assays::colonies::grade_colony(f, &Default::default()) == **g
        })
        .count() as f64
        / test_f.len() as f64;
    eprintln!(
        "colony model: trained on {} colonies (seed 1), 5-fold CV accuracy {:.4}; on {} colonies of seed 2: model {acc:.4}, rules {rules:.4}",
        train_f.len(),
        cv.accuracy,
        test_f.len()
    );
    assert!(cv.accuracy >= 0.9, "CV accuracy {}", cv.accuracy);
    assert!(acc >= 0.9, "accuracy on seed 2 {acc}");

    // Saved and loaded, it predicts the same.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("model.json");
    model.save(&path).expect("save");
    let back = ColonyModel::load(&path).expect("load");
    for f in &test_f {
        assert_eq!(back.predict(f), model.predict(f));
    }

    // A model naming a feature ipscope does not compute, or without its scaling, is refused
    // with the file and the problem named.
    let text = std::fs::read_to_string(&path).expect("read");
    let bad = dir.path().join("bad_feature.json");
    std::fs::write(
        &bad,
        text.replace(
            "\"Colonies_AreaShape_Solidity\"",
            "\"Colonies_AreaShape_Wobble\"",
        ),
    )
    .expect("write");
    let e = ColonyModel::load(&bad).unwrap_err().to_string();
    assert!(
        e.contains("bad_feature.json") && e.contains("Colonies_AreaShape_Wobble"),
        "{e}"
    );
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("json");
    v.as_object_mut().expect("object").remove("scale");
    let missing = dir.path().join("no_scale.json");
    std::fs::write(&missing, v.to_string()).expect("write");
    let e = ColonyModel::load(&missing).unwrap_err().to_string();
    assert!(e.contains("no_scale.json") && e.contains("scale"), "{e}");
}

/// `ipscope train` on the Colonies table of `ipscope run --colonies nuclei` over the demo
/// plate, labelled by the truth colony under each found colony's centre.
#[test]
fn cli_train_on_a_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plate = dir.path().join("plate");
    let out = dir.path().join("out");
    let o = ipscope(&[
        "demo",
        p(&plate),
        "--kind",
        "colonies",
        "--sites",
        "1",
        "--seed",
        "3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = ipscope(&[
        "run",
        p(&plate),
        "-o",
        p(&out),
        "--colonies",
        "nuclei",
        "--layout",
        p(&plate.join("layout.csv")),
        "--channel",
        "w1=DNA",
        "--channel",
        "w2=OCT4",
        "--channel",
        "w3=Brightfield",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let colonies = out.join("Colonies.parquet");
    let b = table(&colonies);
    let wells = strs(&b, "Metadata_Well");
    let sites = u32s(&b, "Metadata_Site");
    let objects = u32s(&b, "ObjectNumber");
    let xs = common::f64s(&b, "Colonies_Location_Center_X");
    let ys = common::f64s(&b, "Colonies_Location_Center_Y");
    // Truth class per (well, site, truth label).
    let truth = std::fs::read_to_string(plate.join("truth/colonies.csv")).expect("truth");
    let mut class = std::collections::HashMap::new();
    for line in truth.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        class.insert(format!("{}/{}/{}", f[0], f[1], f[2]), f[3].to_string());
    }
    let mut labels = String::from("Metadata_Well,Metadata_Site,ObjectNumber,Grade\n");
    let mut n = 0;
    for i in 0..b.num_rows() {
        let name = ipscope::demo_colonies::label_name("COLONY1", &wells[i], sites[i]);
        let img = ipscope::io::read_image(
            &plate.join("truth/labels").join(name),
            0,
            &Default::default(),
        )
        .expect("truth labels")
        .to_f32();
        let (r, c) = (ys[i].round() as usize, xs[i].round() as usize);
        let t = img.get(r.min(img.height() - 1), c.min(img.width() - 1)) as u32;
        if let Some(g) = class.get(&format!("{}/{}/{t}", wells[i], sites[i])) {
            labels.push_str(&format!("{},{},{},{g}\n", wells[i], sites[i], objects[i]));
            n += 1;
        }
    }
    assert!(n >= 100, "only {n} labelled colonies");
    let labels_path = dir.path().join("labels.csv");
    std::fs::write(&labels_path, labels).expect("labels");
    let model = dir.path().join("model.json");
    let o = ipscope(&[
        "train",
        "--table",
        p(&colonies),
        "--labels",
        p(&labels_path),
        "-o",
        p(&model),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    eprintln!("{text}");
    let line = text
        .lines()
        .find(|l| l.contains("cross-validated accuracy"))
        .expect("accuracy printed");
    let acc: f64 = line
        .split(": ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .expect("a number");
    assert!(acc >= 0.9, "{line}");
    let m = ColonyModel::load(&model).expect("model loads");
    let stored = m.cv_accuracy.expect("model records its CV accuracy");
    assert!((stored - acc).abs() < 1e-4, "{stored} vs printed {acc}");
    assert_eq!(m.cv_folds, Some(5));
    // run --colony-model: the Colonies table's grades are the model's predictions from the
    // same row's features.
    let out2 = dir.path().join("out2");
    let mut args: Vec<&str> = vec!["run", p(&plate), "-o", p(&out2), "--colonies", "nuclei"];
    args.extend(["--colony-model", p(&model), "--layout"]);
    let layout = plate.join("layout.csv");
    args.push(p(&layout));
    args.extend([
        "--channel",
        "w1=DNA",
        "--channel",
        "w2=OCT4",
        "--channel",
        "w3=Brightfield",
    ]);
    let o = ipscope(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let b2 = table(&out2.join("Colonies.parquet"));
    let grades = strs(&b2, "Classify_Grade");
    let cols: Vec<Vec<f64>> = m.features.iter().map(|n| number_column(&b2, n)).collect();
    let mut differs_from_rules = 0;
    let rules = strs(&b, "Classify_Grade");
    for i in 0..b2.num_rows() {
        let row: Vec<f64> = cols.iter().map(|c| c[i]).collect();
        let want = m.predict_row(&row).expect("predict");
        assert_eq!(grades[i], want.as_str(), "row {i}");
        if rules[i] != grades[i] {
            differs_from_rules += 1;
        }
    }
    eprintln!(
        "run --colony-model: {} colonies graded by the model ({differs_from_rules} differ from the rules)",
        b2.num_rows()
    );
    // Without --colonies, and with a file that is not a model, run refuses.
    let out3 = dir.path().join("out3");
    let o = ipscope(&[
        "run",
        p(&plate),
        "-o",
        p(&out3),
        "--colony-model",
        p(&model),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--colonies"), "{}", stderr(&o));
    let o = ipscope(&[
        "run",
        p(&plate),
        "-o",
        p(&out3),
        "--colonies",
        "nuclei",
        "--colony-model",
        p(&layout),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("layout.csv"), "{}", stderr(&o));
    // A labels file without a key is a named error.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "Grade\nundifferentiated\n").expect("write");
    let o = ipscope(&[
        "train",
        "--table",
        p(&colonies),
        "--labels",
        p(&bad),
        "-o",
        p(&model),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("bad.csv"), "{}", stderr(&o));
}
