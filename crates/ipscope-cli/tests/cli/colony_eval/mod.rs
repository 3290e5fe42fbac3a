//! The colony demo's fields measured through the library (segment nuclei → colonies from
//! nuclei → measure → grade; nuclear OCT4 means), matched to the drawn truth. Shared by the
//! colony truth and classifier tests.

use ipscope::core::assays::colonies::{
    colonies_from_nuclei, grade_colony, measure_colonies, ColonyFeatures, ColonyParams, Grade,
    GradeRules,
};
use ipscope::core::ops::measure::measure_intensity;
use ipscope::core::{segment_nuclei, NucleiParams};
use ipscope::demo_colonies::{self, ColonyClass, ColonyDemoParams, ColonyField, ColonyWell};

/// One drawn colony, its best-overlapping found colony and the rule-based grade of that one.
pub struct Matched {
    pub class: ColonyClass,
    /// Features of the found colony with the largest overlap; `None` when no found colony
    /// overlaps it (dropped by the segmentation's size rules).
    pub features: Option<ColonyFeatures>,
    /// Pixel Dice of the drawn region and that colony (0 without a match).
    pub dice: f64,
}

/// One measured field.
pub struct FieldEval {
    pub well: ColonyWell,
    pub truth: ColonyField,
    /// |truth ∪-mask ∩ found ∪-mask|, |truth mask|, |found mask|.
    pub overlap: (u64, u64, u64),
    /// Mean nuclear OCT4 (0..1 scale) of every segmented nucleus.
    pub oct4: Vec<f64>,
    pub matched: Vec<Matched>,
}

/// The truth grade of a drawn class.
pub fn truth_grade(c: ColonyClass) -> Grade {
    match c {
        ColonyClass::Undifferentiated => Grade::Undifferentiated,
        ColonyClass::Differentiating => Grade::Differentiating,
        ColonyClass::Debris => Grade::TooSmall,
    }
}

/// The rule-based grade of a match; a drawn colony the segmentation dropped counts as
/// `too_small` (it was dropped for being under the size rules).
pub fn rule_grade(m: &Matched) -> Grade {
    m.features
        .as_ref()
        .map_or(Grade::TooSmall, |f| grade_colony(f, &GradeRules::default()))
}

pub fn eval_field(params: &ColonyDemoParams, well: &ColonyWell, site: u32) -> FieldEval {
    let truth = demo_colonies::render_field(params, well, site);
    let nuclei = segment_nuclei(truth.dna.view(), &NucleiParams::default()).labels;
    let cp = ColonyParams::default();
    let col = colonies_from_nuclei(&nuclei, &cp);
    let dna = truth.dna.map(|v| f32::from(v) / 65535.0);
    let oct4f = truth.oct4.map(|v| f32::from(v) / 65535.0);
    let found = measure_colonies(
        &col.labels,
        Some((&nuclei, &col.parents)),
        Some(dna.view()),
        &[oct4f.view()],
        None,
        &cp,
    )
    .expect("same sizes");
    let oct4 = measure_intensity(&nuclei, oct4f.view())
        .iter()
        .map(|o| o.mean)
        .collect();
    let t = truth.labels.image().as_slice();
    let f = col.labels.image().as_slice();
    let nt = truth.labels.count() as usize;
    let nf = col.labels.count() as usize;
    let mut inter = vec![vec![0u64; nf + 1]; nt + 1];
    let mut area_t = vec![0u64; nt + 1];
    let mut area_f = vec![0u64; nf + 1];
    for (&a, &b) in t.iter().zip(f) {
        inter[a as usize][b as usize] += 1;
        area_t[a as usize] += 1;
        area_f[b as usize] += 1;
    }
    let both: u64 = (1..=nt)
        .map(|a| (1..=nf).map(|b| inter[a][b]).sum::<u64>())
        .sum();
    let overlap = (both, area_t[1..].iter().sum(), area_f[1..].iter().sum());
    let matched = truth
        .colonies
        .iter()
        .map(|c| {
            let a = c.label as usize;
            let best = (1..=nf).max_by_key(|&b| (inter[a][b], std::cmp::Reverse(b)));
            let (features, dice) = match best {
                Some(b) if inter[a][b] > 0 => (
                    found.iter().find(|x| x.label as usize == b).cloned(),
                    2.0 * inter[a][b] as f64 / (area_t[a] + area_f[b]) as f64,
                ),
                _ => (None, 0.0),
            };
            Matched {
                class: c.class,
                features,
                dice,
            }
        })
        .collect();
    FieldEval {
        well: well.clone(),
        truth,
        overlap,
        oct4,
        matched,
    }
}

/// Every field of the demo plate of `params`, measured.
pub fn eval_plate(params: &ColonyDemoParams) -> Vec<FieldEval> {
    let design = demo_colonies::plate_design(params).expect("valid demo params");
    let mut out = Vec::new();
    for w in &design {
        for site in 1..=params.sites {
            out.push(eval_field(params, w, site));
        }
    }
    out
}
