//! Disease-model analysis from a run's own tables: well profiles from the per-object table
//! (with the run's cell counts), the disease / control design read from the layout, and the
//! per-compound phenotypic activity (copairs' mAP of separating a compound's wells from the
//! vehicle wells, with permutation p-values and Benjamini–Hochberg q-values).
//!
//! `ipscope profile`, `ipscope demo --kind disease --run` and `ipscope run` (when the layout
//! names a disease and a control line) all build their profiles with [`build_profiles`].

use std::collections::HashMap;

use ipscope_table::arrow_array::RecordBatch;

use crate::input::{has_column, numeric, text};
use crate::profile::{
    aggregate_wells, feature_select, normalize, Aggregation, MetaValues, NormMethod, Profiles,
    SelectOp, OBJECT_COUNT,
};
use crate::similarity::{
    average_precision, mean_average_precision, reference_index, vehicle_rule, MapScore, Similarity,
};
use crate::{Error, Result};

/// Layout columns naming the line, in the order they are looked for.
pub const LINE_COLUMNS: [&str; 2] = ["Metadata_Genotype", "Metadata_CellLine"];
/// Line names taken for the control (healthy, wild-type or gene-corrected) line, lower case.
pub const CONTROL_NAMES: [&str; 8] = [
    "control",
    "healthy",
    "wt",
    "wildtype",
    "wild-type",
    "wild type",
    "corrected",
    "isogenic",
];
/// Line names taken for the disease line when there are more than two lines, lower case.
pub const DISEASE_NAMES: [&str; 3] = ["disease", "patient", "mutant"];
/// Vehicle when the layout does not tell.
pub const DEFAULT_VEHICLE: &str = "DMSO";
/// Permutations per null distribution of the activity mAP (as the copairs reference).
pub const NULL_SIZE: usize = 10_000;
/// Seed of the activity permutations.
pub const ACTIVITY_SEED: u64 = 7;

/// How [`build_profiles`] makes well profiles.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileOptions {
    /// Aggregation of the objects of a well.
    pub aggregation: Aggregation,
    /// Normalisation per plate against the reference wells; `None` = none.
    pub normalize: Option<NormMethod>,
    /// Vehicle compound: its wells are the normalisation reference.
    pub vehicle: String,
    /// Compound column.
    pub compound_col: String,
    /// Only this line's vehicle wells are the reference.
    pub reference_line: Option<String>,
    /// Line column.
    pub line_col: String,
    /// Feature selection steps, in order.
    pub feature_select: Vec<SelectOp>,
    /// Leave out positional features (`_Location_`, `AreaShape_Center`, `AreaShape_BoundingBox`,
    /// `Number_Object_Number`, `Parent_`): where an object sits says nothing of its phenotype.
    pub drop_positional: bool,
}

impl Default for ProfileOptions {
    fn default() -> Self {
        ProfileOptions {
            aggregation: Aggregation::Median,
            normalize: Some(NormMethod::MadRobustize),
            vehicle: DEFAULT_VEHICLE.into(),
            compound_col: "Metadata_Compound".into(),
            reference_line: None,
            line_col: "Metadata_CellLine".into(),
            feature_select: Vec::new(),
            drop_positional: false,
        }
    }
}

/// Whether a feature name is positional (see [`ProfileOptions::drop_positional`]).
pub fn is_positional(name: &str) -> bool {
    [
        "_Location_",
        "_AreaShape_Center",
        "_AreaShape_BoundingBox",
        "_Number_Object_Number",
        "_Parent_",
    ]
    .iter()
    .any(|p| name.contains(p))
}

/// Well profiles and the features feature selection dropped (name, step).
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltProfiles {
    /// One row per well.
    pub profiles: Profiles,
    /// Dropped features with the step that dropped them.
    pub dropped: Vec<(String, String)>,
}

/// Per-well profiles from a per-object table: aggregation per `Metadata_Plate`,
/// `Metadata_Well` (pycytominer `aggregate`), the cell counts of the run's Wells table when
/// given ([`with_run_counts`]), normalisation per plate against the vehicle wells (of
/// `reference_line` only when set; pycytominer `normalize`) and feature selection
/// (pycytominer `feature_select`).
pub fn build_profiles(
    objects: &RecordBatch,
    wells: Option<&RecordBatch>,
    opts: &ProfileOptions,
) -> Result<BuiltProfiles> {
    let objects = Profiles::from_batch(objects, None)?;
    let objects = if opts.drop_positional {
        let drop: Vec<String> = objects
            .features
            .iter()
            .filter(|f| is_positional(f))
            .cloned()
            .collect();
        objects.drop_features(&drop)
    } else {
        objects
    };
    let strata = ["Metadata_Plate", "Metadata_Well"];
    let mut p = aggregate_wells(&objects, &strata, opts.aggregation)?;
    if let Some(w) = wells {
        p = with_run_counts(p, w)?;
    }
    if let Some(method) = opts.normalize {
        let cmpd = p.meta_text(&opts.compound_col)?;
        let line = match &opts.reference_line {
            Some(_) => Some(p.meta_text(&opts.line_col)?),
            None => None,
        };
        let reference: Vec<bool> = (0..p.n_rows())
            .map(|r| {
                cmpd[r] == opts.vehicle
                    && match (&line, &opts.reference_line) {
                        (Some(l), Some(want)) => &l[r] == want,
                        _ => true,
                    }
            })
            .collect();
        if !reference.iter().any(|&x| x) {
            return Err(Error::Invalid(format!(
                "no reference wells ({} = {}{}) to normalise against",
                opts.compound_col,
                opts.vehicle,
                opts.reference_line
                    .as_ref()
                    .map(|l| format!(", {} = {l}", opts.line_col))
                    .unwrap_or_default()
            )));
        }
        p = normalize(&p, method, &reference, Some("Metadata_Plate"))?;
    }
    let mut dropped = Vec::new();
    if !opts.feature_select.is_empty() {
        let sel = feature_select(&p, &opts.feature_select)?;
        dropped = sel.dropped;
        p = sel.profiles;
    }
    Ok(BuiltProfiles {
        profiles: p,
        dropped,
    })
}

/// Takes the cell count of every well from the run's Wells table (`Count_Nuclei`; it also
/// counts wells whose objects all died, which the object table cannot show) into
/// [`OBJECT_COUNT`] and adds those wells with missing features.
pub fn with_run_counts(mut p: Profiles, wells: &RecordBatch) -> Result<Profiles> {
    let plate = text(wells, "Metadata_Plate")?;
    let well = text(wells, "Metadata_Well")?;
    let count = numeric(wells, "Count_Nuclei")?;
    let pp = p.meta_text("Metadata_Plate")?;
    let pw = p.meta_text("Metadata_Well")?;
    let index: HashMap<(String, String), usize> = (0..pp.len())
        .map(|r| ((pp[r].clone(), pw[r].clone()), r))
        .collect();
    let n0 = p.n_rows();
    let mut counts = vec![f64::NAN; n0];
    let mut extra = Vec::new();
    for i in 0..plate.len() {
        let key = (
            plate[i].clone().unwrap_or_default(),
            well[i].clone().unwrap_or_default(),
        );
        match index.get(&key) {
            Some(&r) => counts[r] = count[i],
            None => extra.push(i),
        }
    }
    for m in &mut p.meta {
        let has = has_column(wells, &m.name);
        match &mut m.values {
            MetaValues::Text(v) => {
                let col = if has {
                    Some(text(wells, &m.name)?)
                } else {
                    None
                };
                for &i in &extra {
                    v.push(col.as_ref().and_then(|c| c[i].clone()));
                }
            }
            MetaValues::Number(v) => {
                let col = if has {
                    Some(numeric(wells, &m.name)?)
                } else {
                    None
                };
                for &i in &extra {
                    v.push(col.as_ref().map_or(f64::NAN, |c| c[i]));
                }
            }
        }
    }
    for &i in &extra {
        counts.push(count[i]);
    }
    for v in &mut p.values {
        v.extend(std::iter::repeat_n(f64::NAN, extra.len()));
    }
    for m in &mut p.meta {
        if m.name == OBJECT_COUNT {
            m.values = MetaValues::Number(counts.clone());
        }
    }
    Ok(p)
}

/// A disease-model layout: which column names the line, which line is which, the vehicle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Design {
    /// `Metadata_Genotype` or `Metadata_CellLine`.
    pub line_col: String,
    /// The disease line.
    pub disease: String,
    /// The control line.
    pub control: String,
    /// The vehicle compound.
    pub vehicle: String,
}

/// What the layout says about disease models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detection {
    /// No line column: not a disease-model plate.
    Absent,
    /// A line column, but the disease tables cannot be made; the reason in words.
    Skip(String),
    /// Both lines and their vehicle wells are there.
    Ready(Design),
}

fn is_one_of(name: &str, list: &[&str]) -> bool {
    list.contains(&name.trim().to_lowercase().as_str())
}

/// Reads the design from a table of wells (the run's Wells table: layout columns per well).
/// The line column is the first of [`LINE_COLUMNS`] with two or more values; the control is
/// the line named as in [`CONTROL_NAMES`] (`control` first), the disease line the other one
/// (with more than two lines, the one named as in [`DISEASE_NAMES`]). The vehicle is
/// `vehicle` when given, else the one compound of the wells whose `Metadata_Role` is
/// `negative` with concentration 0 when there is exactly one, else [`DEFAULT_VEHICLE`].
pub fn detect(wells: &RecordBatch, vehicle: Option<&str>) -> Result<Detection> {
    let present: Vec<&str> = LINE_COLUMNS
        .iter()
        .copied()
        .filter(|c| has_column(wells, c))
        .collect();
    if present.is_empty() {
        return Ok(Detection::Absent);
    }
    let mut chosen = None;
    for c in &present {
        let mut values: Vec<String> = text(wells, c)?.into_iter().flatten().collect();
        values.sort();
        values.dedup();
        if values.len() >= 2 {
            chosen = Some((c.to_string(), values));
            break;
        }
        if chosen.is_none() {
            chosen = Some((c.to_string(), values));
        }
    }
    let Some((line_col, lines)) = chosen else {
        return Ok(Detection::Absent);
    };
    if lines.len() < 2 {
        return Ok(Detection::Skip(format!(
            "{line_col} has {} ({}); profiles, phenotype, rescue and compound ranking need a \
             disease and a control line",
            if lines.is_empty() {
                "no values".to_string()
            } else {
                "one line".to_string()
            },
            lines.join(", ")
        )));
    }
    let controls: Vec<&String> = match lines.iter().find(|l| l.eq_ignore_ascii_case("control")) {
        Some(c) => vec![c],
        None => lines
            .iter()
            .filter(|l| is_one_of(l, &CONTROL_NAMES))
            .collect(),
    };
    if controls.len() != 1 {
        return Ok(Detection::Skip(format!(
            "{line_col} has lines {}: cannot tell which is the control (name it `control`, \
             `healthy`, `wt` or `corrected`)",
            lines.join(", ")
        )));
    }
    let control = controls[0].clone();
    let others: Vec<&String> = lines.iter().filter(|l| **l != control).collect();
    let disease = if others.len() == 1 {
        others[0].clone()
    } else {
        let named: Vec<&&String> = others
            .iter()
            .filter(|l| is_one_of(l, &DISEASE_NAMES))
            .collect();
        if named.len() != 1 {
            return Ok(Detection::Skip(format!(
                "{line_col} has lines {}: cannot tell which is the disease line (name it \
                 `disease`)",
                lines.join(", ")
            )));
        }
        named[0].to_string()
    };
    let vehicle = match vehicle {
        Some(v) => v.to_string(),
        None => layout_vehicle(wells)?.unwrap_or_else(|| DEFAULT_VEHICLE.to_string()),
    };
    let line = text(wells, &line_col)?;
    let compound_col = "Metadata_Compound";
    if !has_column(wells, compound_col) {
        return Ok(Detection::Skip(format!(
            "{line_col} names lines {disease} and {control}, but the layout has no \
             {compound_col} column"
        )));
    }
    let cmpd = text(wells, compound_col)?;
    for l in [&disease, &control] {
        let n = (0..line.len())
            .filter(|&r| line[r].as_ref() == Some(l) && cmpd[r].as_deref() == Some(&vehicle))
            .count();
        if n == 0 {
            return Ok(Detection::Skip(format!(
                "no vehicle wells ({compound_col} = {vehicle}) of line `{l}` ({line_col})"
            )));
        }
    }
    Ok(Detection::Ready(Design {
        line_col,
        disease,
        control,
        vehicle,
    }))
}

/// The vehicle the layout implies: the one compound of its `negative` wells at concentration 0.
fn layout_vehicle(wells: &RecordBatch) -> Result<Option<String>> {
    let (role, conc) = ("Metadata_Role", "Metadata_Concentration");
    if !has_column(wells, role) || !has_column(wells, "Metadata_Compound") {
        return Ok(None);
    }
    let r = text(wells, role)?;
    let c = text(wells, "Metadata_Compound")?;
    let d = if has_column(wells, conc) {
        numeric(wells, conc)?
    } else {
        vec![0.0; r.len()]
    };
    let mut names: Vec<&String> = (0..r.len())
        .filter(|&i| {
            r[i].as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("negative"))
        })
        .filter(|&i| d[i] == 0.0 || d[i].is_nan())
        .filter_map(|i| c[i].as_ref())
        .collect();
    names.sort();
    names.dedup();
    Ok((names.len() == 1).then(|| names[0].clone()))
}

/// Phenotypic activity per compound, copairs' recipe (`assign_reference_index`,
/// `pos_sameby = [compound, reference_index]`, `neg_diffby = [compound, reference_index]`,
/// cosine): how well a compound's wells are retrieved against the vehicle wells. Only the
/// rows where `line` (column, value) matches when given; features that are missing in any of
/// those rows and rows that have no feature left are left out. mAP per compound with
/// permutation p-values ([`NULL_SIZE`] draws) and Benjamini–Hochberg q-values.
pub fn vehicle_activity(
    p: &Profiles,
    line: Option<(&str, &str)>,
    compound_col: &str,
    vehicle: &str,
    null_size: usize,
    seed: u64,
) -> Result<Vec<MapScore>> {
    let cmpd = p.meta_text(compound_col)?;
    let in_line: Vec<usize> = match line {
        Some((col, want)) => {
            let l = p.meta_text(col)?;
            (0..p.n_rows()).filter(|&r| l[r] == want).collect()
        }
        None => (0..p.n_rows()).collect(),
    };
    // rows with at least one finite feature; then the features finite in all of them
    let rows: Vec<usize> = in_line
        .into_iter()
        .filter(|&r| p.values.iter().any(|v| v[r].is_finite()))
        .collect();
    let feats: Vec<usize> = (0..p.features.len())
        .filter(|&f| rows.iter().all(|&r| p.values[f][r].is_finite()))
        .collect();
    if feats.is_empty() {
        return Err(Error::Invalid(
            "phenotypic activity: no feature has a value in every well".into(),
        ));
    }
    let x: Vec<Vec<f64>> = rows
        .iter()
        .map(|&r| feats.iter().map(|&f| p.values[f][r]).collect())
        .collect();
    let names: Vec<String> = rows.iter().map(|&r| cmpd[r].clone()).collect();
    if !names.iter().any(|c| c == vehicle) {
        return Err(Error::Invalid(format!(
            "phenotypic activity: no vehicle wells ({compound_col} = {vehicle}) with features"
        )));
    }
    let refi = reference_index(&names, vehicle);
    let labels = [
        ("Metadata_Compound", names.as_slice()),
        ("Metadata_Reference_Index", refi.as_slice()),
    ];
    let rule = vehicle_rule("Metadata_Compound", "Metadata_Reference_Index");
    let ap = average_precision(&x, &labels, &rule, Similarity::Cosine)?;
    let keep: Vec<usize> = (0..names.len()).filter(|&i| names[i] != vehicle).collect();
    let scores: Vec<_> = keep.iter().map(|&i| ap[i]).collect();
    let groups: Vec<String> = keep.iter().map(|&i| names[i].clone()).collect();
    mean_average_precision(&scores, &groups, null_size, seed)
}

/// The `Similarity` table: one row per compound, copairs' column names
/// (`mean_average_precision`, `p_value`, `corrected_p_value`, `below_corrected_p`).
pub fn activity_table(rows: &[MapScore], threshold: f64) -> Result<RecordBatch> {
    let mut b = ipscope_table::TableBuilder::new();
    b.str(
        "Metadata_Compound",
        rows.iter().map(|r| r.group.clone()).collect(),
    )
    .str(
        "Similarity_Comparison",
        vec!["vs vehicle (cosine)".to_string(); rows.len()],
    )
    .u32(
        "Count_Wells",
        rows.iter().map(|r| r.n_profiles as u32).collect(),
    )
    .f64(
        "mean_average_precision",
        rows.iter().map(|r| r.mean_average_precision).collect(),
    )
    .doc("copairs mAP of retrieving the compound's wells against the vehicle wells")
    .f64("p_value", rows.iter().map(|r| r.p_value).collect())
    .doc("permutation p-value: (1 + #null mAP > observed) / (1 + null size)")
    .f64(
        "corrected_p_value",
        rows.iter().map(|r| r.corrected_p_value).collect(),
    )
    .doc("Benjamini–Hochberg q-value over the compounds")
    .bool(
        "below_corrected_p",
        rows.iter()
            .map(|r| r.corrected_p_value < threshold)
            .collect(),
    );
    Ok(b.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipscope_table::TableBuilder;

    fn wells(lines: &[&str], compounds: &[&str], roles: &[&str]) -> RecordBatch {
        let mut b = TableBuilder::new();
        b.str(
            "Metadata_CellLine",
            lines.iter().map(|s| s.to_string()).collect(),
        )
        .str(
            "Metadata_Compound",
            compounds.iter().map(|s| s.to_string()).collect(),
        )
        .str(
            "Metadata_Role",
            roles.iter().map(|s| s.to_string()).collect(),
        )
        .f64("Metadata_Concentration", vec![0.0; lines.len()]);
        b.finish().unwrap()
    }

    #[test]
    fn detects_lines_and_vehicle_from_the_layout() {
        let w = wells(
            &["patient", "patient", "Healthy", "Healthy"],
            &["VEH", "X", "VEH", "VEH"],
            &["negative", "treated", "negative", "negative"],
        );
        assert_eq!(
            detect(&w, None).unwrap(),
            Detection::Ready(Design {
                line_col: "Metadata_CellLine".into(),
                disease: "patient".into(),
                control: "Healthy".into(),
                vehicle: "VEH".into(),
            })
        );
        // an explicit vehicle that no well has
        let Detection::Skip(why) = detect(&w, Some("DMSO")).unwrap() else {
            panic!("expected a skip");
        };
        assert!(
            why.contains("no vehicle wells") && why.contains("DMSO"),
            "{why}"
        );
    }

    #[test]
    fn one_line_or_unnamed_control_is_a_reason_not_an_error() {
        let w = wells(
            &["disease", "disease"],
            &["DMSO", "X"],
            &["negative", "treated"],
        );
        let Detection::Skip(why) = detect(&w, None).unwrap() else {
            panic!("expected a skip");
        };
        assert!(why.contains("one line") && why.contains("disease"), "{why}");
        let w = wells(&["a", "b"], &["DMSO", "DMSO"], &["negative", "negative"]);
        let Detection::Skip(why) = detect(&w, None).unwrap() else {
            panic!("expected a skip");
        };
        assert!(why.contains("control"), "{why}");
        let mut b = TableBuilder::new();
        b.str("Metadata_Compound", vec!["DMSO".into()]);
        assert_eq!(
            detect(&b.finish().unwrap(), None).unwrap(),
            Detection::Absent
        );
    }

    #[test]
    fn positional_features() {
        assert!(is_positional("Nuclei_Location_Center_X"));
        assert!(is_positional("Nuclei_AreaShape_BoundingBoxMinimum_Y"));
        assert!(!is_positional("Nuclei_AreaShape_Area"));
        assert!(!is_positional("Nuclei_Intensity_MeanIntensity_OCT4"));
    }
}
