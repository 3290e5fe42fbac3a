//! Marker positivity in `run`: every marker channel's per-nucleus mean intensity
//! (`Nuclei_Intensity_MeanIntensity_<marker>`) gated once for the whole plate, then per well
//! the percent positive, double-positive percentages of marker pairs, heterogeneity (CV,
//! entropy, Gini) and acceptance criteria, as Wells columns.
//!
//! The gate needs the whole plate (Otsu) or the negative-control wells (a percentile), so the
//! values are gathered while the fields stream past (one number per nucleus and marker with
//! its well, not the Nuclei table), into a scratch file rather than memory, and reduced after
//! the last field, one well at a time ([`MarkerValues`]). Fields left out of Wells
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
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipscope_core::assays::markers::{
    double_positive, positive, resolve_gate, resolve_otsu_streamed, summarize, CmpOp, Criterion,
    Gate,
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
///
/// The values are not held in memory (a 384-well plate has millions of nuclei): each field's
/// are appended to an unnamed scratch file in the output directory (8 bytes per nucleus and
/// marker, 8 more for its colony), removed when this is dropped, and only where each field's
/// block lies is kept. [`MarkerValues::finish`] reads the file back: twice for a plate-wide
/// Otsu gate (range, then histogram), then one well at a time. What stays in memory is one
/// well's values, plus the negative-control wells' for a control gate (an exact percentile
/// needs them all).
pub struct MarkerValues {
    markers: Vec<String>,
    /// Where the scratch file goes (created at the first field with nuclei).
    dir: PathBuf,
    spill: Option<Spill>,
    /// (plate, well) → its fields' blocks in the scratch file (field order).
    by_well: BTreeMap<(String, String), Vec<Block>>,
    /// Whether the run finds colonies (a field came with `Parent_Colonies`).
    colonies: bool,
}

struct Spill {
    file: BufWriter<File>,
    len: u64,
}

/// One field's nuclei in the scratch file: at `offset`, per marker `rows` f64 (little
/// endian), then, with `colonies`, `rows` pairs of u32 (ImageNumber, Parent_Colonies).
#[derive(Debug, Clone, Copy)]
struct Block {
    offset: u64,
    rows: usize,
    colonies: bool,
}

/// One well's values read back: per marker the values of its counted nuclei (field order),
/// and their colonies as (ImageNumber, Parent_Colonies) where the fields had them.
struct WellValues {
    values: Vec<Vec<f64>>,
    owners: Vec<(u32, u32)>,
}

impl MarkerValues {
    /// Values of `markers`, their scratch file (if any nuclei come) in `dir`.
    pub fn new(markers: Vec<String>, dir: &Path) -> MarkerValues {
        MarkerValues {
            markers,
            dir: dir.to_path_buf(),
            spill: None,
            by_well: BTreeMap::new(),
            colonies: false,
        }
    }

    fn io_error(&self, e: std::io::Error) -> Error {
        Error::Io {
            path: self.dir.clone(),
            source: std::io::Error::new(
                e.kind(),
                format!("the scratch file of the marker values in this directory: {e}"),
            ),
        }
    }

    /// Adds a field's Nuclei rows (only when the field counts in Wells).
    pub fn add(&mut self, plate: &str, well: &str, nuclei: &RecordBatch) -> Result<()> {
        let mut columns = Vec::with_capacity(self.markers.len());
        for m in &self.markers {
            let name = value_column(m);
            let Some(col) = nuclei.column_by_name(&name) else {
                return Err(Error::Invalid(format!(
                    "marker {m}: the Nuclei table has no column {name} (the Intensity feature group is needed)"
                )));
            };
            let a = col
                .as_primitive_opt::<Float64Type>()
                .ok_or_else(|| Error::Invalid(format!("Nuclei column {name} is not Float64")))?;
            columns.push(a);
        }
        let colonies = nuclei.column_by_name("Parent_Colonies").is_some();
        let owners = if colonies {
            Some((
                column_u32(nuclei, "ImageNumber")?,
                column_u32(nuclei, "Parent_Colonies")?,
            ))
        } else {
            None
        };
        self.colonies |= colonies;
        let rows = nuclei.num_rows();
        if rows == 0 || self.markers.is_empty() {
            return Ok(());
        }
        let key = (plate.to_string(), well.to_string());
        if self.spill.is_none() {
            let file = tempfile::tempfile_in(&self.dir).map_err(|e| self.io_error(e))?;
            self.spill = Some(Spill {
                file: BufWriter::with_capacity(1 << 16, file),
                len: 0,
            });
        }
        let Some(spill) = self.spill.as_mut() else {
            return Ok(());
        };
        self.by_well.entry(key).or_default().push(Block {
            offset: spill.len,
            rows,
            colonies,
        });
        let mut bytes = Vec::with_capacity(rows * 8 * (columns.len() + 1));
        for a in &columns {
            for i in 0..rows {
                let v = if a.is_null(i) { f64::NAN } else { a.value(i) };
                bytes.extend_from_slice(&v.to_le_bytes());
            }
        }
        if let Some((images, parents)) = owners {
            for i in 0..rows {
                bytes.extend_from_slice(&images.value(i).to_le_bytes());
                bytes.extend_from_slice(&parents.value(i).to_le_bytes());
            }
        }
        spill.len += bytes.len() as u64;
        let written = spill.file.write_all(&bytes);
        written.map_err(|e| self.io_error(e))
    }

    /// Reads a well's values back from the scratch file (`file`, flushed): every marker's and
    /// the colonies, or with `only` that marker's values alone.
    fn read_well(
        &self,
        file: Option<&mut File>,
        key: &(String, String),
        only: Option<usize>,
    ) -> Result<WellValues> {
        let k = self.markers.len();
        let mut out = WellValues {
            values: vec![Vec::new(); k],
            owners: Vec::new(),
        };
        let (Some(blocks), Some(file)) = (self.by_well.get(key), file) else {
            return Ok(out);
        };
        let mut bytes = Vec::new();
        for b in blocks {
            let column = b.rows * 8;
            let (start, len) = match only {
                Some(m) => (b.offset + (m * column) as u64, column),
                None => (b.offset, column * k + if b.colonies { column } else { 0 }),
            };
            bytes.resize(len, 0);
            file.seek(SeekFrom::Start(start))
                .and_then(|_| file.read_exact(&mut bytes))
                .map_err(|e| self.io_error(e))?;
            let (values, owners) = bytes.split_at(len.min(column * k));
            for (m, column) in values.chunks_exact(column).enumerate() {
                out.values[only.unwrap_or(m)].extend(
                    column
                        .chunks_exact(8)
                        .map(|c| f64::from_le_bytes(c.try_into().unwrap_or_default())),
                );
            }
            let u = |s: &[u8]| u32::from_le_bytes(s.try_into().unwrap_or_default());
            out.owners
                .extend(owners.chunks_exact(8).map(|c| (u(&c[..4]), u(&c[4..]))));
        }
        Ok(out)
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
        mut self,
        wells: RecordBatch,
        config: &MarkerConfig,
        acceptance: &[Acceptance],
    ) -> Result<RecordBatch> {
        if self.markers.is_empty() {
            return Ok(wells);
        }
        let mut file = match self.spill.take() {
            Some(s) => Some(
                s.file
                    .into_inner()
                    .map_err(|e| self.io_error(e.into_error()))?,
            ),
            None => None,
        };
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
        let keys: Vec<(String, String)> = (0..n)
            .map(|i| (plates.value(i).to_string(), names.value(i).to_string()))
            .collect();
        // One threshold per marker for the plate (the Wells rows' nuclei).
        let mut thresholds = Vec::with_capacity(self.markers.len());
        for (k, m) in self.markers.iter().enumerate() {
            let threshold = match &config.gate {
                Gate::Otsu | Gate::OtsuLog => {
                    let log = config.gate == Gate::OtsuLog;
                    resolve_otsu_streamed(log, |feed| {
                        for key in &keys {
                            feed(&self.read_well(file.as_mut(), key, Some(k))?.values[k]);
                        }
                        Ok::<(), Error>(())
                    })?
                }
                gate => {
                    let mut controls = Vec::new();
                    if matches!(gate, Gate::Controls { .. }) {
                        for (key, _) in keys.iter().zip(&control_rows).filter(|(_, &c)| c) {
                            let w = self.read_well(file.as_mut(), key, Some(k))?;
                            controls.extend_from_slice(&w.values[k]);
                        }
                    }
                    resolve_gate(gate, &[], &controls)
                        .map_err(|e| Error::Invalid(format!("marker {m}: {e}")))?
                }
            };
            thresholds.push(threshold);
        }
        // Then the wells one at a time.
        let markers = self.markers.len();
        let pairs: Vec<(usize, usize)> = (0..markers)
            .flat_map(|a| (a + 1..markers).map(move |b| (a, b)))
            .collect();
        let mut summaries = vec![Vec::with_capacity(n); markers];
        let mut purity = vec![Vec::with_capacity(n); markers];
        let mut double = vec![Vec::with_capacity(n); pairs.len()];
        for key in &keys {
            let w = self.read_well(file.as_mut(), key, None)?;
            let pos: Vec<Vec<bool>> = (0..markers)
                .map(|k| positive(&w.values[k], thresholds[k]))
                .collect();
            for k in 0..markers {
                summaries[k].push(summarize(&w.values[k], thresholds[k]));
                purity[k].push(median_colony_percent(&w.owners, &pos[k]));
            }
            for (p, &(a, b)) in pairs.iter().enumerate() {
                double[p].push(double_positive(&pos[a], &pos[b]));
            }
        }
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
        let mut percents: Vec<Vec<f64>> = Vec::new();
        for (k, m) in self.markers.iter().enumerate() {
            let (summaries, threshold) = (&summaries[k], thresholds[k]);
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
            if self.colonies {
                push(
                    format!("Median_Colonies_PercentPositive_{m}"),
                    format!("Colony-level purity: median over the well's colonies of the percent of each colony's nuclei positive for {m} (plate gate); null without colonies"),
                    opt(&purity[k]),
                );
            }
            percents.push(pct);
        }
        for (p, &(a, b)) in pairs.iter().enumerate() {
            let v: Vec<Option<f64>> = double[p]
                .iter()
                .map(|f| f.is_finite().then_some(100.0 * f))
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
        let dir = tempfile::tempdir().unwrap();
        let mut v = MarkerValues::new(vec!["A".into(), "B".into()], dir.path());
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

    /// A well in the tests: name, per marker its values, the colonies of its nuclei.
    type TestWell<'a> = (&'a str, Vec<Vec<f64>>, Vec<(u32, u32)>);

    /// The Wells columns computed the direct way: every well's values in memory, the gate
    /// resolved on all of them at once.
    fn direct(
        wells: &[TestWell],
        controls: &[bool],
        gate: &Gate,
    ) -> Vec<(String, Vec<Option<f64>>)> {
        let k = wells[0].1.len();
        let mut out = Vec::new();
        let mut pos = Vec::new();
        for m in 0..k {
            let all: Vec<f64> = wells.iter().flat_map(|w| w.1[m].clone()).collect();
            let ctl: Vec<f64> = wells
                .iter()
                .zip(controls)
                .filter(|(_, &c)| c)
                .flat_map(|(w, _)| w.1[m].clone())
                .collect();
            let t = resolve_gate(gate, &all, &ctl).unwrap();
            let fin = |x: f64| x.is_finite().then_some(x);
            let s: Vec<_> = wells.iter().map(|w| summarize(&w.1[m], t)).collect();
            out.push((
                format!("Percent_Positive_M{m}"),
                s.iter().map(|s| fin(s.percent_positive)).collect(),
            ));
            out.push((format!("Threshold_Positive_M{m}"), vec![t; wells.len()]));
            out.push((
                format!("Heterogeneity_Gini_M{m}"),
                s.iter().map(|s| fin(s.gini)).collect(),
            ));
            let p: Vec<Vec<bool>> = wells.iter().map(|w| positive(&w.1[m], t)).collect();
            out.push((
                format!("Median_Colonies_PercentPositive_M{m}"),
                wells
                    .iter()
                    .zip(&p)
                    .map(|(w, p)| fin(median_colony_percent(&w.2, p)))
                    .collect(),
            ));
            pos.push(p);
        }
        out.push((
            "Percent_DoublePositive_M0_M1".into(),
            (0..wells.len())
                .map(|i| {
                    let f = double_positive(&pos[0][i], &pos[1][i]);
                    f.is_finite().then_some(100.0 * f)
                })
                .collect(),
        ));
        out
    }

    #[test]
    fn spilled_values_give_the_direct_columns() {
        // Three markers over five wells of several fields each (one well without nuclei,
        // one not in Wells), NaN values and colonies, added in an interleaved field order.
        // Pseudo-random numbers by Knuth's multiplicative hash of a counter.
        let mut k = 0u32;
        let mut r = move || {
            k += 1;
            k.wrapping_mul(2_654_435_761) >> 8
        };
        let names = ["A01", "A02", "A03", "B01", "B02"];
        let mut wells: Vec<TestWell> = names
            .iter()
            .map(|w| (*w, vec![Vec::new(); 3], Vec::new()))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let markers: Vec<String> = (0..3).map(|m| format!("M{m}")).collect();
        let mut v = MarkerValues::new(markers.clone(), dir.path());
        let mut image = 0u32;
        for round in 0..4 {
            for (wi, well) in names.iter().enumerate().chain([(9, &"Z99")]) {
                image += 1;
                let rows = if wi == 2 {
                    0
                } else {
                    3 + (r() % 40) as usize + round
                };
                let mut t = TableBuilder::new();
                let mut cols = Vec::new();
                for (m, marker) in markers.iter().enumerate() {
                    let c: Vec<f64> = (0..rows)
                        .map(|i| {
                            let u = f64::from(r() % 100_000) / 100_000.0;
                            if i % 17 == 5 {
                                f64::NAN
                            } else if (m + wi + i) % 3 == 0 {
                                0.6 * u + 0.3
                            } else {
                                0.1 * u + 0.01
                            }
                        })
                        .collect();
                    t.f64(&value_column(marker), c.clone());
                    cols.push(c);
                }
                let parents: Vec<u32> = (0..rows).map(|_| r() % 4).collect();
                t.u32("ImageNumber", vec![image; rows])
                    .u32("Parent_Colonies", parents.clone());
                v.add("P", well, &t.finish().unwrap()).unwrap();
                if let Some(w) = wells.get_mut(wi) {
                    for (m, c) in cols.into_iter().enumerate() {
                        w.1[m].extend(c);
                    }
                    w.2.extend(parents.iter().map(|&p| (image, p)));
                }
            }
        }
        let controls = [true, false, false, true, false];
        let mut b = TableBuilder::new();
        b.str("Metadata_Plate", vec!["P".into(); names.len()])
            .str(
                "Metadata_Well",
                names.iter().map(|w| w.to_string()).collect(),
            )
            .str(
                ipscope_stats::plate::ROLE,
                controls
                    .iter()
                    .map(|&c| if c { "negative" } else { "treated" }.to_string())
                    .collect(),
            );
        let table = b.finish().unwrap();
        // The scratch file holds the values, 8 bytes per nucleus and marker plus the colony.
        let spilled = v.spill.as_ref().map(|s| s.len).unwrap();
        let added: usize = v.by_well.values().flatten().map(|b| b.rows).sum();
        assert_eq!(spilled, (added * 8 * 4) as u64);
        for gate in [
            Gate::OtsuLog,
            Gate::Otsu,
            Gate::Controls { percentile: 90.0 },
            Gate::Fixed { threshold: 0.2 },
        ] {
            // A second copy of the same values for each gate (finish consumes them).
            let mut again = MarkerValues::new(markers.clone(), dir.path());
            again.by_well = v.by_well.clone();
            again.colonies = v.colonies;
            let s = v.spill.as_mut().unwrap();
            s.file.flush().unwrap();
            let mut copy = tempfile::tempfile_in(dir.path()).unwrap();
            let f = s.file.get_mut();
            f.seek(SeekFrom::Start(0)).unwrap();
            std::io::copy(f, &mut copy).unwrap();
            f.seek(SeekFrom::End(0)).unwrap();
            again.spill = Some(Spill {
                file: BufWriter::new(copy),
                len: s.len,
            });
            let config = MarkerConfig { gate: gate.clone() };
            let out = again.finish(table.clone(), &config, &[]).unwrap();
            let want = direct(&wells, &controls, &gate);
            for (name, want) in want {
                let got: Vec<Option<f64>> = out
                    .column_by_name(&name)
                    .unwrap_or_else(|| panic!("{name}"))
                    .as_primitive::<Float64Type>()
                    .iter()
                    .collect();
                assert_eq!(got, want, "{gate:?} {name}");
            }
        }
    }

    #[test]
    fn an_unwritable_scratch_directory_is_a_named_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("gone");
        let mut v = MarkerValues::new(vec!["A".into(), "B".into()], &missing);
        let err = v
            .add("P", "W1", &nuclei(&[0.9], &[0.1]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("gone") && err.contains("scratch file of the marker values"),
            "{err}"
        );
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
