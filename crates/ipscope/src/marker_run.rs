//! Marker positivity in `run`: every marker channel's per-nucleus mean intensity
//! (`Nuclei_Intensity_MeanIntensity_<marker>`) gated once for the whole plate, then per well
//! the percent positive, double-positive percentages of marker pairs, heterogeneity (CV,
//! entropy, Gini) and acceptance criteria, as Wells columns.
//!
//! The gate needs the whole plate (Otsu) or the negative-control wells (a percentile), so the
//! values are gathered while the fields stream past (one number per nucleus and marker with
//! its well, not the Nuclei table) and reduced after the last field. Fields left out of Wells
//! (failed, or flagged by image QC) are left out here too.
//!
//! ```toml
//! [markers]
//! gate = { method = "otsu_log" }   # or "otsu", { method = "fixed", threshold = 0.1 },
//!                                  # { method = "controls", percentile = 99 }
//!
//! [[acceptance]]
//! marker = "OCT4"
//! op = ">="
//! percent = 80
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use ipscope_core::assays::markers::{
    double_positive, positive, resolve_gate, summarize, CmpOp, Criterion, Gate,
};
use ipscope_table::arrow_array::cast::AsArray;
use ipscope_table::arrow_array::types::Float64Type;
use ipscope_table::arrow_array::{Array, ArrayRef, BooleanArray, Float64Array, RecordBatch};
use ipscope_table::{column_str, column_u32, Field};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// `[markers]` of the run configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MarkerConfig {
    /// How the positivity threshold is set (default: Otsu on the log of the plate's values).
    pub gate: Gate,
}

/// One `[[acceptance]]` entry: a marker's percent positive compared with a value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acceptance {
    /// Column suffix (`Metadata_Acceptance_<name>`); default `<marker>`.
    #[serde(default)]
    pub name: Option<String>,
    pub marker: String,
    pub op: CmpOp,
    /// Percent positive (0..100).
    pub percent: f64,
}

impl Acceptance {
    fn column(&self) -> String {
        format!(
            "Metadata_Acceptance_{}",
            self.name.as_deref().unwrap_or(&self.marker)
        )
    }
}

/// The column a marker's per-nucleus value comes from.
pub fn value_column(marker: &str) -> String {
    format!("Nuclei_Intensity_MeanIntensity_{marker}")
}

/// Checks, before any field runs, that every marker the configuration names is a marker
/// channel of the run.
pub fn check_config(acceptance: &[Acceptance], markers: &[String]) -> Result<()> {
    for a in acceptance {
        if !markers.iter().any(|m| m == &a.marker) {
            return Err(Error::Invalid(format!(
                "[[acceptance]] names marker {:?}, which is not a marker channel of this run (markers: {}); name the channel, e.g. --channel w2={}",
                a.marker,
                if markers.is_empty() {
                    "none".to_string()
                } else {
                    markers.join(", ")
                },
                a.marker
            )));
        }
    }
    Ok(())
}

/// Per-nucleus marker values gathered while the fields stream past.
pub struct MarkerValues {
    markers: Vec<String>,
    /// (plate, well) → per marker, the values of its counted nuclei (field order).
    by_well: BTreeMap<(String, String), Vec<Vec<f64>>>,
    /// (plate, well) → the colony of each of those nuclei as (ImageNumber, Parent_Colonies),
    /// when the run finds colonies (0 = in none).
    colonies: BTreeMap<(String, String), Vec<(u32, u32)>>,
}

impl MarkerValues {
    pub fn new(markers: Vec<String>) -> MarkerValues {
        MarkerValues {
            markers,
            by_well: BTreeMap::new(),
            colonies: BTreeMap::new(),
        }
    }

    /// Adds a field's Nuclei rows (only when the field counts in Wells).
    pub fn add(&mut self, plate: &str, well: &str, nuclei: &RecordBatch) -> Result<()> {
        let slot = self
            .by_well
            .entry((plate.to_string(), well.to_string()))
            .or_insert_with(|| vec![Vec::new(); self.markers.len()]);
        for (k, m) in self.markers.iter().enumerate() {
            let name = value_column(m);
            let Some(col) = nuclei.column_by_name(&name) else {
                return Err(Error::Invalid(format!(
                    "marker {m}: the Nuclei table has no column {name} (the Intensity feature group is needed)"
                )));
            };
            let a = col
                .as_primitive_opt::<Float64Type>()
                .ok_or_else(|| Error::Invalid(format!("Nuclei column {name} is not Float64")))?;
            slot[k].extend((0..a.len()).map(|i| if a.is_null(i) { f64::NAN } else { a.value(i) }));
        }
        if nuclei.column_by_name("Parent_Colonies").is_some() {
            let images = column_u32(nuclei, "ImageNumber")?;
            let parents = column_u32(nuclei, "Parent_Colonies")?;
            self.colonies
                .entry((plate.to_string(), well.to_string()))
                .or_default()
                .extend((0..nuclei.num_rows()).map(|i| (images.value(i), parents.value(i))));
        }
        Ok(())
    }

    /// Adds the nuclei of a whole Nuclei table (sorted by ImageNumber), field by field, keeping
    /// the fields in `counted` (the same order and values as a run's [`MarkerValues::add`]).
    pub fn add_table(
        &mut self,
        nuclei: &RecordBatch,
        counted: &std::collections::BTreeSet<u32>,
    ) -> Result<()> {
        let numbers = column_u32(nuclei, "ImageNumber")?;
        let plates = column_str(nuclei, "Metadata_Plate")?;
        let wells = column_str(nuclei, "Metadata_Well")?;
        let mut start = 0;
        while start < nuclei.num_rows() {
            let n = numbers.value(start);
            let mut end = start + 1;
            while end < nuclei.num_rows() && numbers.value(end) == n {
                end += 1;
            }
            if counted.contains(&n) {
                let (p, w) = (
                    plates.value(start).to_string(),
                    wells.value(start).to_string(),
                );
                self.add(&p, &w, &nuclei.slice(start, end - start))?;
            }
            start = end;
        }
        Ok(())
    }

    /// Appends the marker columns to Wells (rows matched by plate and well). `controls`: the
    /// Wells rows that are negative controls (for a control gate).
    pub fn finish(
        self,
        wells: RecordBatch,
        config: &MarkerConfig,
        acceptance: &[Acceptance],
    ) -> Result<RecordBatch> {
        if self.markers.is_empty() {
            return Ok(wells);
        }
        let plates = column_str(&wells, "Metadata_Plate")?;
        let names = column_str(&wells, "Metadata_Well")?;
        let n = wells.num_rows();
        let control_rows: Vec<bool> = match wells.column_by_name(ipscope_stats::plate::ROLE) {
            Some(_) => {
                let r = column_str(&wells, ipscope_stats::plate::ROLE)?;
                (0..n)
                    .map(|i| r.is_valid(i) && r.value(i).eq_ignore_ascii_case("negative"))
                    .collect()
            }
            None => vec![false; n],
        };
        let empty = vec![Vec::new(); self.markers.len()];
        let per_row: Vec<&Vec<Vec<f64>>> = (0..n)
            .map(|i| {
                self.by_well
                    .get(&(plates.value(i).to_string(), names.value(i).to_string()))
                    .unwrap_or(&empty)
            })
            .collect();
        let mut fields: Vec<Field> = wells
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let mut columns: Vec<ArrayRef> = wells.columns().to_vec();
        let mut push = |name: String, doc: String, array: ArrayRef| {
            let meta = HashMap::from([(ipscope_table::DESCRIPTION_KEY.to_string(), doc)]);
            fields.push(Field::new(name, array.data_type().clone(), true).with_metadata(meta));
            columns.push(array);
        };
        let mut positives: Vec<Vec<Vec<bool>>> = Vec::new();
        let mut percents: Vec<Vec<f64>> = Vec::new();
        for (k, m) in self.markers.iter().enumerate() {
            // One threshold for the plate.
            let all: Vec<f64> = per_row.iter().flat_map(|v| v[k].iter().copied()).collect();
            let controls: Vec<f64> = per_row
                .iter()
                .zip(&control_rows)
                .filter(|(_, &c)| c)
                .flat_map(|(v, _)| v[k].iter().copied())
                .collect();
            let threshold = resolve_gate(&config.gate, &all, &controls)
                .map_err(|e| Error::Invalid(format!("marker {m}: {e}")))?;
            let summaries: Vec<_> = per_row
                .iter()
                .map(|v| summarize(&v[k], threshold))
                .collect();
            let pct: Vec<f64> = summaries.iter().map(|s| s.percent_positive).collect();
            let opt = |v: &[f64]| -> ArrayRef {
                Arc::new(
                    v.iter()
                        .map(|x| x.is_finite().then_some(*x))
                        .collect::<Float64Array>(),
                )
            };
            push(
                format!("Percent_Positive_{m}"),
                format!("Percent of the well's counted nuclei with {} above the plate's gate; null without nuclei", value_column(m)),
                opt(&pct),
            );
            push(
                format!("Threshold_Positive_{m}"),
                "The plate's positivity threshold ([markers] gate) on the 0..1 intensity scale"
                    .to_string(),
                opt(&vec![threshold.unwrap_or(f64::NAN); n]),
            );
            let cv: Vec<f64> = summaries.iter().map(|s| s.cv).collect();
            let entropy: Vec<f64> = summaries.iter().map(|s| s.entropy).collect();
            let gini: Vec<f64> = summaries.iter().map(|s| s.gini).collect();
            push(
                format!("Heterogeneity_CV_{m}"),
                "Coefficient of variation (population SD / mean) of the nuclei's values, as scipy.stats.variation".to_string(),
                opt(&cv),
            );
            push(
                format!("Heterogeneity_Entropy_{m}"),
                "Shannon entropy (natural log) of the values' 32-bin histogram".to_string(),
                opt(&entropy),
            );
            push(
                format!("Heterogeneity_Gini_{m}"),
                "Gini coefficient of the values".to_string(),
                opt(&gini),
            );
            let pos: Vec<Vec<bool>> = per_row.iter().map(|v| positive(&v[k], threshold)).collect();
            if !self.colonies.is_empty() {
                let purity: Vec<f64> = (0..n)
                    .map(|i| {
                        let key = (plates.value(i).to_string(), names.value(i).to_string());
                        let owners = self.colonies.get(&key).map(Vec::as_slice).unwrap_or(&[]);
                        median_colony_percent(owners, &pos[i])
                    })
                    .collect();
                push(
                    format!("Median_Colonies_PercentPositive_{m}"),
                    format!("Colony-level purity: median over the well's colonies of the percent of each colony's nuclei positive for {m} (plate gate); null without colonies"),
                    opt(&purity),
                );
            }
            positives.push(pos);
            percents.push(pct);
        }
        for a in 0..self.markers.len() {
            for b in a + 1..self.markers.len() {
                let v: Vec<Option<f64>> = (0..n)
                    .map(|i| {
                        let f = double_positive(&positives[a][i], &positives[b][i]);
                        f.is_finite().then_some(100.0 * f)
                    })
                    .collect();
                push(
                    format!(
                        "Percent_DoublePositive_{}_{}",
                        self.markers[a], self.markers[b]
                    ),
                    "Percent of the well's counted nuclei positive for both markers".to_string(),
                    Arc::new(Float64Array::from(v)),
                );
            }
        }
        for acc in acceptance {
            let k = self
                .markers
                .iter()
                .position(|m| m == &acc.marker)
                .ok_or_else(|| {
                    Error::Invalid(format!("[[acceptance]]: no marker {:?}", acc.marker))
                })?;
            let c = Criterion {
                marker: acc.marker.clone(),
                op: acc.op,
                value: acc.percent,
            };
            let pass: BooleanArray = percents[k].iter().map(|&p| Some(c.passes(p))).collect();
            let op = serde_json::to_string(&acc.op).unwrap_or_default();
            push(
                acc.column(),
                format!(
                    "Percent_Positive_{} {} {} (false without nuclei)",
                    acc.marker,
                    op.trim_matches('"'),
                    acc.percent
                ),
                Arc::new(pass),
            );
        }
        RecordBatch::try_new(Arc::new(ipscope_table::Schema::new(fields)), columns)
            .map_err(|e| Error::Invalid(format!("Wells marker columns: {e}")))
    }
}

/// Median over colonies of the percent of their nuclei that are positive. `owners[i]` is the
/// (field, colony) of nucleus `i` (colony 0: in none); NaN without colonies.
fn median_colony_percent(owners: &[(u32, u32)], positive: &[bool]) -> f64 {
    let mut per: BTreeMap<(u32, u32), (u32, u32)> = BTreeMap::new();
    for (o, &p) in owners.iter().zip(positive) {
        if o.1 > 0 {
            let e = per.entry(*o).or_default();
            e.0 += u32::from(p);
            e.1 += 1;
        }
    }
    let mut v: Vec<f64> = per
        .values()
        .map(|&(p, t)| 100.0 * f64::from(p) / f64::from(t))
        .collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let h = v.len() / 2;
    if v.len() % 2 == 1 {
        v[h]
    } else {
        0.5 * (v[h - 1] + v[h])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipscope_table::TableBuilder;

    fn nuclei(a: &[f64], b: &[f64]) -> RecordBatch {
        let mut t = TableBuilder::new();
        t.f64(&value_column("A"), a.to_vec())
            .f64(&value_column("B"), b.to_vec());
        t.finish().unwrap()
    }

    #[test]
    fn wells_columns_by_hand() {
        let mut v = MarkerValues::new(vec!["A".into(), "B".into()]);
        // W1: A positive in 2 of 4, B in 1 of 4, both in 1. W2: none positive.
        v.add(
            "P",
            "W1",
            &nuclei(&[0.9, 0.8, 0.1, 0.2], &[0.9, 0.1, 0.1, 0.1]),
        )
        .unwrap();
        v.add("P", "W2", &nuclei(&[0.1, 0.2], &[0.1, 0.2])).unwrap();
        let mut w = TableBuilder::new();
        w.str("Metadata_Plate", vec!["P".into(); 3])
            .str("Metadata_Well", vec!["W1".into(), "W2".into(), "W3".into()]);
        let wells = w.finish().unwrap();
        let config = MarkerConfig {
            gate: Gate::Fixed { threshold: 0.5 },
        };
        let acc = [Acceptance {
            name: None,
            marker: "A".into(),
            op: CmpOp::Ge,
            percent: 50.0,
        }];
        let out = v.finish(wells, &config, &acc).unwrap();
        let f = |name: &str| -> Vec<Option<f64>> {
            out.column_by_name(name)
                .unwrap()
                .as_primitive::<Float64Type>()
                .iter()
                .collect()
        };
        assert_eq!(f("Percent_Positive_A"), vec![Some(50.0), Some(0.0), None]);
        assert_eq!(f("Percent_Positive_B"), vec![Some(25.0), Some(0.0), None]);
        assert_eq!(
            f("Percent_DoublePositive_A_B"),
            vec![Some(25.0), Some(0.0), None]
        );
        assert_eq!(f("Threshold_Positive_A"), vec![Some(0.5); 3]);
        let pass: Vec<bool> = out
            .column_by_name("Metadata_Acceptance_A")
            .unwrap()
            .as_boolean()
            .iter()
            .map(|x| x.unwrap())
            .collect();
        assert_eq!(pass, vec![true, false, false]);
        // CV of W1's A values as scipy.stats.variation: population SD / mean.
        let a = [0.9f64, 0.8, 0.1, 0.2];
        let m = a.iter().sum::<f64>() / 4.0;
        let sd = (a.iter().map(|x| (x - m).powi(2)).sum::<f64>() / 4.0).sqrt();
        let cv = f("Heterogeneity_CV_A")[0].unwrap();
        assert!((cv - sd / m).abs() < 1e-12, "{cv}");
    }

    #[test]
    fn acceptance_must_name_a_marker_channel() {
        let acc = [Acceptance {
            name: None,
            marker: "cTnT".into(),
            op: CmpOp::Ge,
            percent: 80.0,
        }];
        let err = check_config(&acc, &["OCT4".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("cTnT") && err.contains("OCT4"), "{err}");
        assert!(check_config(&acc, &["cTnT".into()]).is_ok());
    }

    #[test]
    fn colony_purity_is_the_median_over_colonies() {
        // Field 1: colony 1 has 2 of 4 positive (50 %), colony 2 1 of 1 (100 %); field 2's
        // colony 1 is another colony: 0 of 2 (0 %). Nuclei outside colonies do not count.
        let owners = [
            (1, 1),
            (1, 1),
            (1, 1),
            (1, 1),
            (1, 2),
            (2, 1),
            (2, 1),
            (1, 0),
        ];
        let pos = [true, false, true, false, true, false, false, true];
        assert_eq!(median_colony_percent(&owners, &pos), 50.0);
        assert_eq!(median_colony_percent(&owners[..5], &pos[..5]), 75.0);
        assert!(median_colony_percent(&[(1, 0)], &[true]).is_nan());
        assert!(median_colony_percent(&[], &[]).is_nan());
    }
}
