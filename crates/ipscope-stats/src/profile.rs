//! Morphological profiles: per-object tables aggregated to wells, normalised against a
//! reference subset per plate, and reduced by feature selection — the steps of
//! `pycytominer.aggregate`, `pycytominer.normalize` and `pycytominer.feature_select`
//! (Serrano et al. 2025, Nat Methods 22:677), with the same column names and the same numbers
//! (checked against pycytominer 1.2.0 by `tests/stats/profiles.rs`).
//!
//! Features are the columns whose names start with `Cells`, `Nuclei` or `Cytoplasm` (and
//! `Image` when asked), as pycytominer's `infer_cp_features`; every other column is metadata.
//! Missing values are NaN and are skipped by every statistic, as pandas does.

use std::cmp::Ordering;
use std::collections::HashMap;

use ipscope_table::arrow_array::RecordBatch;
use ipscope_table::{DataType, TableBuilder};

use crate::input;
use crate::{Error, Result};

/// pycytominer's default blocklist (`pycytominer/data/blocklist_features.txt`, BSD-3-Clause).
const DEFAULT_BLOCKLIST: &str = include_str!("blocklist_features.txt");

/// The values of one metadata column.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValues {
    /// Text, `None` where missing.
    Text(Vec<Option<String>>),
    /// Numbers, NaN where missing.
    Number(Vec<f64>),
}

impl MetaValues {
    fn len(&self) -> usize {
        match self {
            MetaValues::Text(v) => v.len(),
            MetaValues::Number(v) => v.len(),
        }
    }

    fn take(&self, rows: &[usize]) -> MetaValues {
        match self {
            MetaValues::Text(v) => MetaValues::Text(rows.iter().map(|&r| v[r].clone()).collect()),
            MetaValues::Number(v) => MetaValues::Number(rows.iter().map(|&r| v[r]).collect()),
        }
    }

    fn key(&self, row: usize) -> Key {
        match self {
            MetaValues::Text(v) => match &v[row] {
                Some(s) => Key::Text(s.clone()),
                None => Key::Missing,
            },
            MetaValues::Number(v) if v[row].is_nan() => Key::Missing,
            MetaValues::Number(v) => Key::Number(v[row]),
        }
    }

    /// The value of `row` as text (numbers formatted, missing = empty).
    pub fn text(&self, row: usize) -> String {
        match self {
            MetaValues::Text(v) => v[row].clone().unwrap_or_default(),
            MetaValues::Number(v) if v[row].is_nan() => String::new(),
            MetaValues::Number(v) => format!("{}", v[row]),
        }
    }
}

/// One metadata column.
#[derive(Debug, Clone, PartialEq)]
pub struct MetaColumn {
    /// Column name, e.g. `Metadata_Well`.
    pub name: String,
    /// Its values.
    pub values: MetaValues,
}

/// A table of profiles: metadata columns and numeric feature columns of equal length.
#[derive(Debug, Clone, PartialEq)]
pub struct Profiles {
    /// Metadata (every non-feature column), in table order.
    pub meta: Vec<MetaColumn>,
    /// Feature names, in table order.
    pub features: Vec<String>,
    /// `values[f][row]`: feature-major, NaN where missing.
    pub values: Vec<Vec<f64>>,
}

/// Sort key of a group: pandas sorts text and numbers by value and puts missing last.
#[derive(Debug, Clone, PartialEq)]
enum Key {
    Text(String),
    Number(f64),
    Missing,
}

impl Key {
    fn cmp(&self, other: &Key) -> Ordering {
        match (self, other) {
            (Key::Text(a), Key::Text(b)) => a.cmp(b),
            (Key::Number(a), Key::Number(b)) => a.total_cmp(b),
            (Key::Missing, Key::Missing) => Ordering::Equal,
            (Key::Missing, _) => Ordering::Greater,
            (_, Key::Missing) => Ordering::Less,
            (Key::Number(_), Key::Text(_)) => Ordering::Less,
            (Key::Text(_), Key::Number(_)) => Ordering::Greater,
        }
    }
}

/// Whether `name` is a feature by pycytominer's `infer_cp_features`.
pub fn is_cp_feature(name: &str, image_features: bool) -> bool {
    ["Cells", "Nuclei", "Cytoplasm"]
        .iter()
        .any(|p| name.starts_with(p))
        || (image_features && name.starts_with("Image"))
}

impl Profiles {
    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.meta
            .first()
            .map(|m| m.values.len())
            .or_else(|| self.values.first().map(Vec::len))
            .unwrap_or(0)
    }

    /// Splits a table into metadata and features; features are inferred as pycytominer does
    /// unless `features` names them. A named or inferred feature that is not numeric is an
    /// error naming the column.
    pub fn from_batch(batch: &RecordBatch, features: Option<&[String]>) -> Result<Profiles> {
        let schema = batch.schema();
        let mut meta = Vec::new();
        let mut names = Vec::new();
        let mut values = Vec::new();
        for field in schema.fields() {
            let name = field.name();
            let is_feature = match features {
                Some(list) => list.iter().any(|f| f == name),
                None => is_cp_feature(name, false),
            };
            if is_feature {
                values.push(input::numeric(batch, name).map_err(|e| {
                    Error::Invalid(format!("feature column `{name}` is not numeric: {e}"))
                })?);
                names.push(name.clone());
            } else {
                let v = match field.data_type() {
                    DataType::Utf8 | DataType::LargeUtf8 => {
                        MetaValues::Text(input::text(batch, name)?)
                    }
                    DataType::Boolean => MetaValues::Text(input::text(batch, name)?),
                    _ => match input::numeric(batch, name) {
                        Ok(v) => MetaValues::Number(v),
                        Err(_) => MetaValues::Text(input::text(batch, name)?),
                    },
                };
                meta.push(MetaColumn {
                    name: name.clone(),
                    values: v,
                });
            }
        }
        if let Some(list) = features {
            if let Some(missing) = list.iter().find(|f| !names.contains(f)) {
                return Err(Error::Invalid(format!("no feature column `{missing}`")));
            }
        }
        if names.is_empty() {
            return Err(Error::Invalid(
                "no feature columns (names starting with Cells, Nuclei or Cytoplasm)".into(),
            ));
        }
        Ok(Profiles {
            meta,
            features: names,
            values,
        })
    }

    /// The table: metadata columns first, then features (Float64, NaN kept).
    pub fn to_batch(&self) -> Result<RecordBatch> {
        let mut b = TableBuilder::new();
        for m in &self.meta {
            match &m.values {
                MetaValues::Text(v) => b.opt_str(&m.name, v.clone()),
                MetaValues::Number(v) => b.f64(&m.name, v.clone()),
            };
        }
        for (name, v) in self.features.iter().zip(&self.values) {
            b.f64(name, v.clone());
        }
        Ok(b.finish()?)
    }

    /// The metadata column `name`.
    pub fn meta_column(&self, name: &str) -> Result<&MetaValues> {
        self.meta
            .iter()
            .find(|m| m.name == name)
            .map(|m| &m.values)
            .ok_or_else(|| Error::Invalid(format!("no metadata column `{name}`")))
    }

    /// The metadata column `name` as text, one string per row (missing = empty).
    pub fn meta_text(&self, name: &str) -> Result<Vec<String>> {
        let col = self.meta_column(name)?;
        Ok((0..col.len()).map(|r| col.text(r)).collect())
    }

    /// The rows `rows`, in that order.
    pub fn take(&self, rows: &[usize]) -> Profiles {
        Profiles {
            meta: self
                .meta
                .iter()
                .map(|m| MetaColumn {
                    name: m.name.clone(),
                    values: m.values.take(rows),
                })
                .collect(),
            features: self.features.clone(),
            values: self
                .values
                .iter()
                .map(|v| rows.iter().map(|&r| v[r]).collect())
                .collect(),
        }
    }

    /// Keeps only the features not in `drop`, in their order.
    pub fn drop_features(&self, drop: &[String]) -> Profiles {
        let keep: Vec<usize> = (0..self.features.len())
            .filter(|&f| !drop.contains(&self.features[f]))
            .collect();
        Profiles {
            meta: self.meta.clone(),
            features: keep.iter().map(|&f| self.features[f].clone()).collect(),
            values: keep.iter().map(|&f| self.values[f].clone()).collect(),
        }
    }
}

/// How `aggregate` combines the objects of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Aggregation {
    /// Median of the non-missing values (pycytominer's default).
    #[default]
    Median,
    /// Mean of the non-missing values.
    Mean,
}

/// Median of the non-NaN values (NaN when there are none); the mean of the two middle values
/// for an even count, as NumPy and pandas.
pub fn nan_median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Mean of the non-NaN values (NaN when there are none).
pub fn nan_mean(values: &[f64]) -> f64 {
    let (s, n) = values
        .iter()
        .filter(|x| !x.is_nan())
        .fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        s / n as f64
    }
}

/// NumPy's `nanpercentile` with linear interpolation, `q` in [0, 100].
pub fn nan_percentile(values: &[f64], q: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let pos = q / 100.0 * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    let t = pos - lo as f64;
    // NumPy's _lerp: a + (b - a) t, evaluated from the nearer end
    let (a, b) = (v[lo], v[hi]);
    if t >= 0.5 {
        b - (b - a) * (1.0 - t)
    } else {
        a + (b - a) * t
    }
}

/// Row groups by the values of `strata`, in pandas' `groupby(sort=True, dropna=False)` order.
fn groups(p: &Profiles, strata: &[&str]) -> Result<Vec<Vec<usize>>> {
    let cols: Vec<&MetaValues> = strata
        .iter()
        .map(|s| p.meta_column(s))
        .collect::<Result<_>>()?;
    let n = p.n_rows();
    let keys: Vec<Vec<Key>> = (0..n)
        .map(|r| cols.iter().map(|c| c.key(r)).collect())
        .collect();
    let mut order: Vec<usize> = (0..n).collect();
    let cmp = |a: &Vec<Key>, b: &Vec<Key>| {
        a.iter()
            .zip(b)
            .map(|(x, y)| x.cmp(y))
            .find(|o| *o != Ordering::Equal)
            .unwrap_or(Ordering::Equal)
    };
    order.sort_by(|&a, &b| cmp(&keys[a], &keys[b]).then(a.cmp(&b)));
    let mut out: Vec<Vec<usize>> = Vec::new();
    for r in order {
        match out.last_mut() {
            Some(g) if cmp(&keys[g[0]], &keys[r]) == Ordering::Equal => g.push(r),
            _ => out.push(vec![r]),
        }
    }
    Ok(out)
}

/// `pycytominer.aggregate`: one row per distinct combination of `strata` (sorted), each
/// feature the median or mean of its objects. The output's metadata are the strata columns.
pub fn aggregate(objects: &Profiles, strata: &[&str], how: Aggregation) -> Result<Profiles> {
    if strata.is_empty() {
        return Err(Error::Invalid(
            "aggregate needs at least one strata column".into(),
        ));
    }
    let groups = groups(objects, strata)?;
    let first: Vec<usize> = groups.iter().map(|g| g[0]).collect();
    let meta = strata
        .iter()
        .map(|s| {
            Ok(MetaColumn {
                name: s.to_string(),
                values: objects.meta_column(s)?.take(&first),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let values = objects
        .values
        .iter()
        .map(|col| {
            groups
                .iter()
                .map(|g| {
                    let v: Vec<f64> = g.iter().map(|&r| col[r]).collect();
                    match how {
                        Aggregation::Median => nan_median(&v),
                        Aggregation::Mean => nan_mean(&v),
                    }
                })
                .collect()
        })
        .collect();
    Ok(Profiles {
        meta,
        features: objects.features.clone(),
        values,
    })
}

/// `pycytominer.normalize` methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NormMethod {
    /// (x − mean) / SD (population SD), scikit-learn's `StandardScaler`.
    Standardize,
    /// (x − median) / IQR, scikit-learn's `RobustScaler`.
    Robustize,
    /// (x − median) / (1.4826 · MAD + ε), pycytominer's `RobustMAD`.
    #[default]
    MadRobustize,
}

impl std::str::FromStr for NormMethod {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "standardize" => Ok(NormMethod::Standardize),
            "robustize" => Ok(NormMethod::Robustize),
            "mad_robustize" => Ok(NormMethod::MadRobustize),
            other => Err(Error::Invalid(format!(
                "normalisation `{other}`: expected standardize, robustize or mad_robustize"
            ))),
        }
    }
}

/// pycytominer's default `mad_robustize_epsilon`.
pub const MAD_EPSILON: f64 = 1e-18;

/// Centre and scale of one feature from its reference values, by `method`.
fn centre_scale(reference: &[f64], method: NormMethod) -> (f64, f64) {
    let eps = f64::EPSILON;
    match method {
        NormMethod::Standardize => {
            let v: Vec<f64> = reference.iter().copied().filter(|x| !x.is_nan()).collect();
            let n = v.len() as f64;
            let mean = nan_mean(&v);
            // two-pass variance with scikit-learn's correction term
            let dev: f64 = v.iter().map(|x| x - mean).sum();
            let var = (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() - dev * dev / n) / n;
            // scikit-learn's _is_constant_feature: such features keep scale 1
            let constant = var <= n * eps * var + (n * mean * eps).powi(2);
            (mean, if constant { 1.0 } else { var.sqrt() })
        }
        NormMethod::Robustize => {
            let median = nan_median(reference);
            let iqr = nan_percentile(reference, 75.0) - nan_percentile(reference, 25.0);
            (median, if iqr < 10.0 * eps { 1.0 } else { iqr })
        }
        NormMethod::MadRobustize => {
            let median = nan_median(reference);
            let dev: Vec<f64> = reference.iter().map(|x| (x - median).abs()).collect();
            (median, nan_median(&dev) * 1.4826 + MAD_EPSILON)
        }
    }
}

/// `pycytominer.normalize` run separately on each group of `by` (e.g. `Metadata_Plate`; `None`
/// = the whole table): centre and scale come from the group's rows where `reference` is
/// true (e.g. the disease line's vehicle wells) and are applied to all its rows. A group with
/// no reference rows is an error naming it. Row order is kept.
pub fn normalize(
    profiles: &Profiles,
    method: NormMethod,
    reference: &[bool],
    by: Option<&str>,
) -> Result<Profiles> {
    let n = profiles.n_rows();
    if reference.len() != n {
        return Err(Error::Invalid(format!(
            "reference mask has {} rows, the profiles {n}",
            reference.len()
        )));
    }
    let row_groups = match by {
        Some(col) => groups(profiles, &[col])?,
        None => vec![(0..n).collect()],
    };
    let mut out = profiles.clone();
    for g in &row_groups {
        let refs: Vec<usize> = g.iter().copied().filter(|&r| reference[r]).collect();
        if refs.is_empty() {
            let name = match by {
                Some(col) => format!("{col} = {}", profiles.meta_column(col)?.text(g[0])),
                None => "the table".to_string(),
            };
            return Err(Error::Invalid(format!(
                "no reference rows to normalise against in {name}"
            )));
        }
        for (f, col) in profiles.values.iter().enumerate() {
            let r: Vec<f64> = refs.iter().map(|&i| col[i]).collect();
            let (centre, scale) = centre_scale(&r, method);
            for &i in g {
                out.values[f][i] = (col[i] - centre) / scale;
            }
        }
    }
    Ok(out)
}

/// One step of `pycytominer.feature_select`.
#[derive(Debug, Clone, PartialEq)]
pub enum SelectOp {
    /// Drop features missing in more than `cutoff` of the rows (pycytominer `na_cutoff` 0.05).
    DropNaColumns {
        /// Largest allowed fraction of missing values.
        cutoff: f64,
    },
    /// Drop near-constant features: second-most / most common value count below `freq_cut`
    /// (0.05), or distinct values / rows below `unique_cut` (0.01).
    VarianceThreshold {
        /// Frequency ratio cut.
        freq_cut: f64,
        /// Unique ratio cut.
        unique_cut: f64,
    },
    /// Of every pair with Pearson r above `threshold` (0.9), drop the one with the larger sum
    /// of absolute correlations to all features.
    CorrelationThreshold {
        /// Correlation cut.
        threshold: f64,
    },
    /// Drop listed features (`None` = pycytominer's default blocklist).
    Blocklist(Option<Vec<String>>),
}

impl SelectOp {
    /// The step by pycytominer's name with its default parameters.
    pub fn by_name(name: &str) -> Result<SelectOp> {
        match name {
            "drop_na_columns" => Ok(SelectOp::DropNaColumns { cutoff: 0.05 }),
            "variance_threshold" => Ok(SelectOp::VarianceThreshold {
                freq_cut: 0.05,
                unique_cut: 0.01,
            }),
            "correlation_threshold" => Ok(SelectOp::CorrelationThreshold { threshold: 0.9 }),
            "blocklist" => Ok(SelectOp::Blocklist(None)),
            other => Err(Error::Invalid(format!(
                "feature selection `{other}`: expected drop_na_columns, variance_threshold, \
                 correlation_threshold or blocklist"
            ))),
        }
    }
}

/// pycytominer's default blocklist of feature names.
pub fn default_blocklist() -> Vec<String> {
    DEFAULT_BLOCKLIST
        .lines()
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Features to drop by variance threshold.
fn variance_excluded(values: &[f64], freq_cut: f64, unique_cut: f64) -> bool {
    let mut counts: HashMap<u64, usize> = HashMap::new();
    for &x in values.iter().filter(|x| !x.is_nan()) {
        // 0.0 and -0.0 are one value for pandas' value_counts
        let x = if x == 0.0 { 0.0 } else { x };
        *counts.entry(x.to_bits()).or_default() += 1;
    }
    let mut c: Vec<usize> = counts.values().copied().collect();
    c.sort_unstable_by(|a, b| b.cmp(a));
    if c.len() < 2 || (c[1] as f64 / c[0] as f64) < freq_cut {
        return true;
    }
    (c.len() as f64 / values.len() as f64) < unique_cut
}

/// Pearson correlation over the rows where both are finite (pandas' pairwise-complete rule).
fn pearson_complete(a: &[f64], b: &[f64]) -> f64 {
    let pairs: Vec<(f64, f64)> = a
        .iter()
        .zip(b)
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .map(|(x, y)| (*x, *y))
        .collect();
    if pairs.is_empty() {
        return f64::NAN;
    }
    let n = pairs.len() as f64;
    let ma = pairs.iter().map(|p| p.0).sum::<f64>() / n;
    let mb = pairs.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in &pairs {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    let d = (saa * sbb).sqrt();
    if d == 0.0 {
        f64::NAN
    } else {
        (sab / d).clamp(-1.0, 1.0)
    }
}

/// Features to drop by correlation threshold (pycytominer's `correlation_threshold`).
fn correlation_excluded(names: &[String], cols: &[&Vec<f64>], threshold: f64) -> Vec<String> {
    let k = cols.len();
    let mut cor = vec![vec![f64::NAN; k]; k];
    for i in 0..k {
        for j in 0..=i {
            let r = pearson_complete(cols[i], cols[j]);
            cor[i][j] = r;
            cor[j][i] = r;
        }
    }
    let sums: Vec<f64> = cor
        .iter()
        .map(|row| row.iter().filter(|x| !x.is_nan()).map(|x| x.abs()).sum())
        .collect();
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &b| sums[a].total_cmp(&sums[b]));
    let mut pos = vec![0; k];
    for (p, &f) in order.iter().enumerate() {
        pos[f] = p;
    }
    let mut out: Vec<String> = Vec::new();
    for i in 0..k {
        for j in 0..i {
            if cor[i][j] > threshold {
                let drop = if pos[i] > pos[j] { i } else { j };
                if !out.contains(&names[drop]) {
                    out.push(names[drop].clone());
                }
            }
        }
    }
    out
}

/// What `feature_select` kept and dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// The profiles without the dropped features.
    pub profiles: Profiles,
    /// Dropped features with the step that dropped them, in feature order.
    pub dropped: Vec<(String, String)>,
}

/// `pycytominer.feature_select`: the steps run in order, each on the features the earlier
/// ones kept, over all rows.
pub fn feature_select(profiles: &Profiles, ops: &[SelectOp]) -> Result<Selection> {
    let mut alive: Vec<usize> = (0..profiles.features.len()).collect();
    let mut dropped: Vec<(String, String)> = Vec::new();
    let n = profiles.n_rows();
    for op in ops {
        let names: Vec<String> = alive
            .iter()
            .map(|&f| profiles.features[f].clone())
            .collect();
        let (step, excluded): (&str, Vec<String>) = match op {
            SelectOp::DropNaColumns { cutoff } => (
                "drop_na_columns",
                alive
                    .iter()
                    .filter(|&&f| {
                        let na = profiles.values[f].iter().filter(|x| x.is_nan()).count();
                        n > 0 && na as f64 / n as f64 > *cutoff
                    })
                    .map(|&f| profiles.features[f].clone())
                    .collect(),
            ),
            SelectOp::VarianceThreshold {
                freq_cut,
                unique_cut,
            } => (
                "variance_threshold",
                alive
                    .iter()
                    .filter(|&&f| variance_excluded(&profiles.values[f], *freq_cut, *unique_cut))
                    .map(|&f| profiles.features[f].clone())
                    .collect(),
            ),
            SelectOp::CorrelationThreshold { threshold } => {
                if !(0.0..=1.0).contains(threshold) {
                    return Err(Error::Invalid(format!(
                        "correlation threshold {threshold} is not within [0, 1]"
                    )));
                }
                let cols: Vec<&Vec<f64>> = alive.iter().map(|&f| &profiles.values[f]).collect();
                (
                    "correlation_threshold",
                    correlation_excluded(&names, &cols, *threshold),
                )
            }
            SelectOp::Blocklist(list) => {
                let list = list.clone().unwrap_or_else(default_blocklist);
                (
                    "blocklist",
                    names.iter().filter(|n| list.contains(n)).cloned().collect(),
                )
            }
        };
        alive.retain(|&f| !excluded.contains(&profiles.features[f]));
        for e in excluded {
            dropped.push((e, step.to_string()));
        }
    }
    let order: HashMap<&str, usize> = profiles
        .features
        .iter()
        .enumerate()
        .map(|(i, f)| (f.as_str(), i))
        .collect();
    dropped.sort_by_key(|(f, _)| order.get(f.as_str()).copied().unwrap_or(usize::MAX));
    let names: Vec<String> = dropped.iter().map(|d| d.0.clone()).collect();
    Ok(Selection {
        profiles: profiles.drop_features(&names),
        dropped,
    })
}

/// Column `aggregate_wells` adds: objects per group (pycytominer's `compute_object_count`).
pub const OBJECT_COUNT: &str = "Metadata_Object_Count";

/// [`aggregate`] plus, as metadata, every other non-feature column of `objects` that is
/// constant within each group (layout columns such as `Metadata_Compound`), and
/// [`OBJECT_COUNT`]. Columns that vary within a group (`Metadata_Site`, `ObjectNumber`) are
/// left out, as pycytominer leaves them out.
pub fn aggregate_wells(objects: &Profiles, strata: &[&str], how: Aggregation) -> Result<Profiles> {
    let mut out = aggregate(objects, strata, how)?;
    let groups = groups(objects, strata)?;
    for m in &objects.meta {
        if strata.contains(&m.name.as_str()) {
            continue;
        }
        let constant = groups.iter().all(|g| {
            let k = m.values.key(g[0]);
            g.iter().all(|&r| m.values.key(r) == k)
        });
        if constant {
            let first: Vec<usize> = groups.iter().map(|g| g[0]).collect();
            out.meta.push(MetaColumn {
                name: m.name.clone(),
                values: m.values.take(&first),
            });
        }
    }
    out.meta.push(MetaColumn {
        name: OBJECT_COUNT.into(),
        values: MetaValues::Number(groups.iter().map(|g| g.len() as f64).collect()),
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_matches_numpy_linear() {
        // np.percentile([1, 2, 4, 8], [25, 75]) = [1.75, 5.0]
        let v = [8.0, f64::NAN, 1.0, 4.0, 2.0];
        assert!((nan_percentile(&v, 25.0) - 1.75).abs() < 1e-15);
        assert!((nan_percentile(&v, 75.0) - 5.0).abs() < 1e-15);
        assert_eq!(nan_median(&v), 3.0);
        assert!(nan_median(&[f64::NAN]).is_nan());
    }

    #[test]
    fn constant_reference_keeps_scale_one() {
        let (c, s) = centre_scale(&[2.0, 2.0, 2.0], NormMethod::Standardize);
        assert_eq!((c, s), (2.0, 1.0));
        let (c, s) = centre_scale(&[2.0, 2.0, 2.0], NormMethod::Robustize);
        assert_eq!((c, s), (2.0, 1.0));
    }
}
