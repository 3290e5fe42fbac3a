//! The colony assay against the colony demo plate's truth (`ipscope demo --kind colonies`),
//! measured through the library: colony Dice, rule-based grade accuracy, per-well %
//! OCT4-positive nuclei and the EC50 of that fraction (drc's LL.4, `ipscope_stats::curve`).

use crate::colony_eval;

use colony_eval::{eval_plate, rule_grade, truth_grade};
use ipscope::core::assays::colonies::Grade;
use ipscope::core::assays::markers::{resolve_gate, Gate};
use ipscope::demo_colonies::{self, ColonyClass, ColonyDemoParams};
use ipscope::stats::curve::{fit, Model};

#[test]
fn colony_demo_truth() {
    let params = ColonyDemoParams::default();
    let fields = eval_plate(&params);

    // Colony Dice: pixels of the union of drawn regions against the union of found colonies
    // (all fields pooled), and per drawn colony (undifferentiated and differentiating)
    // against its best-overlapping found colony.
    let (mut both, mut nt, mut nf) = (0u64, 0u64, 0u64);
    for f in &fields {
        both += f.overlap.0;
        nt += f.overlap.1;
        nf += f.overlap.2;
    }
    let union_dice = 2.0 * both as f64 / (nt + nf) as f64;
    let real: Vec<&colony_eval::Matched> = fields
        .iter()
        .flat_map(|f| &f.matched)
        .filter(|m| m.class != ColonyClass::Debris)
        .collect();
    let matched_dice = real.iter().map(|m| m.dice).sum::<f64>() / real.len() as f64;
    let worst_dice = real.iter().map(|m| m.dice).fold(1.0, f64::min);
    let class_dice = |c: ColonyClass| {
        let v: Vec<f64> = real
            .iter()
            .filter(|m| m.class == c)
            .map(|m| m.dice)
            .collect();
        (v.iter().sum::<f64>() / v.len() as f64, v.len())
    };
    let (undiff_dice, n_undiff) = class_dice(ColonyClass::Undifferentiated);
    let (diff_dice, n_diff) = class_dice(ColonyClass::Differentiating);

    // Grades: the rule-based grade of the matched colony against the drawn class.
    let all: Vec<&colony_eval::Matched> = fields.iter().flat_map(|f| &f.matched).collect();
    let mut confusion = [[0usize; 3]; 3];
    let idx = |g: Grade| match g {
        Grade::Undifferentiated => 0,
        Grade::Differentiating => 1,
        Grade::TooSmall => 2,
    };
    for m in &all {
        confusion[idx(truth_grade(m.class))][idx(rule_grade(m))] += 1;
    }
    let correct: usize = (0..3).map(|i| confusion[i][i]).sum();
    let accuracy = correct as f64 / all.len() as f64;

    // OCT4: one log-Otsu gate over all nuclei of the plate (per-well gates would fail in
    // wells that are nearly all positive or all negative), then % positive per well.
    let pooled: Vec<f64> = fields.iter().flat_map(|f| f.oct4.iter().copied()).collect();
    let gate = resolve_gate(&Gate::OtsuLog, &pooled, &[]).expect("gate");
    let design = demo_colonies::plate_design(&params).expect("design");
    let mut worst_pct = 0.0f64;
    let (mut doses, mut fractions) = (Vec::new(), Vec::new());
    eprintln!("well  conc     truth%  found%");
    for w in &design {
        let fs: Vec<_> = fields.iter().filter(|f| f.well.well == w.well).collect();
        let tn: u32 = fs.iter().map(|f| f.truth.nuclei()).sum();
        let tp: u32 = fs.iter().map(|f| f.truth.positives()).sum();
        let vals: Vec<f64> = fs.iter().flat_map(|f| f.oct4.iter().copied()).collect();
        let pos = vals
            .iter()
            .filter(|&&v| gate.is_some_and(|g| v > g))
            .count();
        let truth_pct = 100.0 * f64::from(tp) / f64::from(tn);
        let found_pct = 100.0 * pos as f64 / vals.len() as f64;
        eprintln!(
            "{}  {:8.4}  {truth_pct:6.2}  {found_pct:6.2}",
            w.well, w.concentration
        );
        worst_pct = worst_pct.max((truth_pct - found_pct).abs());
        if w.compound == demo_colonies::COMPOUND {
            doses.push(w.concentration);
            fractions.push(found_pct / 100.0);
        }
    }
    let curve = fit(&doses, &fractions, Model::Ll4);
    let ec50 = curve.ec50.map(|e| e.estimate).unwrap_or(f64::NAN);
    let ratio = (ec50 / demo_colonies::EC50).max(demo_colonies::EC50 / ec50);

    eprintln!(
        "colony demo (seed {}, {} fields of {}²): union Dice {union_dice:.4}, matched Dice mean {matched_dice:.4} (worst {worst_dice:.4}) over {} colonies",
        params.seed,
        fields.len(),
        params.size,
        real.len()
    );
    eprintln!(
        "matched Dice by class: undifferentiated {undiff_dice:.4} (n={n_undiff}), differentiating {diff_dice:.4} (n={n_diff})"
    );
    eprintln!(
        "grades: accuracy {accuracy:.4} ({correct}/{}); confusion rows truth U/D/S, columns found U/D/S: {confusion:?}",
        all.len()
    );
    eprintln!(
        "OCT4: gate {gate:?}, worst |found − truth| {worst_pct:.2} points; EC50 {ec50:.4} µM (truth {}), ratio {ratio:.3}, fit {:?}",
        demo_colonies::EC50,
        curve.status
    );
    assert!(union_dice >= 0.85, "union Dice {union_dice}");
    assert!(matched_dice >= 0.85, "matched Dice {matched_dice}");
    assert!(accuracy >= 0.9, "grade accuracy {accuracy}");
    assert!(
        worst_pct <= 3.0,
        "per-well % OCT4-positive off by {worst_pct} points"
    );
    assert!(ratio <= 1.5, "EC50 {ec50} vs {}", demo_colonies::EC50);
}

/// Colonies from the brightfield channel (texture after flat-field correction; the demo
/// fields lie inside a well, so no well is looked for), against the drawn regions.
#[test]
fn colony_demo_brightfield_dice() {
    use ipscope::core::assays::colonies::{colonies_from_brightfield, ColonyParams};
    let params = ColonyDemoParams::default();
    let design = demo_colonies::plate_design(&params).expect("design");
    let cp = ColonyParams {
        detect_well: false,
        ..Default::default()
    };
    let (mut both, mut nt, mut nf) = (0u64, 0u64, 0u64);
    for w in design.iter().step_by(4) {
        let f = demo_colonies::render_field(&params, w, 1);
        let bf = f.brightfield.map(|v| f32::from(v) / 65535.0);
        let found = colonies_from_brightfield(bf.view(), &cp);
        for (&t, &c) in f
            .labels
            .image()
            .as_slice()
            .iter()
            .zip(found.labels.image().as_slice())
        {
            both += u64::from(t > 0 && c > 0);
            nt += u64::from(t > 0);
            nf += u64::from(c > 0);
        }
    }
    let dice = 2.0 * both as f64 / (nt + nf) as f64;
    eprintln!("brightfield colonies: union Dice {dice:.4} over 6 fields");
    assert!(dice >= 0.85, "brightfield union Dice {dice}");
}
