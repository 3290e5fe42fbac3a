//! Disease phenotype, rescue and toxicity scoring on well profiles.
//!
//! A disease-model screen has a patient (disease) line and a healthy or gene-corrected
//! (control) line; a compound is good when it moves the disease line's wells toward the
//! control line without killing the cells.
//!
//! - **Phenotype** (vehicle wells only): per feature, control vs disease Cohen's d (pooled
//!   sample SD), SSMD and Z′ (Zhang et al. 1999; Zhang 2007), ranked by Z′.
//! - **Univariate rescue** per well: 100 · (x − disease vehicle mean) / (control vehicle mean −
//!   disease vehicle mean).
//! - **Multivariate rescue** (Heiser et al. 2020, RxRx19a "on-/off-perturbation"): the axis
//!   from the disease vehicle centroid to the control vehicle centroid, optionally in the space
//!   whitened by the Ledoit–Wolf shrinkage covariance of the vehicle wells (Ledoit & Wolf
//!   2004, scikit-learn's `ledoit_wolf`); on-target = projection on the axis (0 = disease,
//!   1 = control); off-target = length of the part orthogonal to the axis divided by the
//!   vehicle spread (root mean square of the vehicle wells' orthogonal deviations from their
//!   own line's centroid), so 1 is "as far off-axis as a typical vehicle well".
//! - **Toxicity**: viable cell count relative to the disease vehicle mean; a dose is cytotoxic
//!   when the mean relative count is below `cytotoxic_below`; TC50 = dose where the LL.4 fit
//!   of relative count crosses 0.5.
//! - **Compounds**: per compound and readout, LL.4 fit of % rescue (EC50 with 95 % CI), the
//!   largest mean rescue, TC50, therapeutic window TC50 / EC50, replicate agreement (Pearson r
//!   of replicate 1 vs replicate 2 over doses), and a hit call by the rule in
//!   [`RescueOptions::hit_rule`].

use nalgebra::{DMatrix, SymmetricEigen};

use crate::curve::{fit, CurveFit, Model};
use crate::profile::{MetaValues, Profiles};
use crate::qc::control_qc;
use crate::{Error, Result};

/// The readout name used for the multivariate on-target score in the Compounds table.
pub const ON_TARGET: &str = "OnTarget";

/// What to score and how.
#[derive(Debug, Clone, PartialEq)]
pub struct RescueOptions {
    /// Column naming the cell line / genotype (`Metadata_CellLine`).
    pub line_col: String,
    /// Disease line value.
    pub disease: String,
    /// Control line value.
    pub control: String,
    /// Compound column.
    pub compound_col: String,
    /// Concentration column (numeric).
    pub concentration_col: String,
    /// Vehicle compound name.
    pub vehicle: String,
    /// Univariate readouts; empty = the feature with the best Z′.
    pub readouts: Vec<String>,
    /// Viable cell count column; `None` = no toxicity scoring.
    pub count_col: Option<String>,
    /// A dose is cytotoxic when its mean count relative to the disease vehicle is below this.
    pub cytotoxic_below: f64,
    /// % rescue a hit must reach in every replicate at one non-toxic dose.
    pub hit_rescue: f64,
    /// Whiten the multivariate space with the Ledoit–Wolf covariance.
    pub whiten: bool,
}

impl Default for RescueOptions {
    fn default() -> Self {
        RescueOptions {
            line_col: "Metadata_CellLine".into(),
            disease: "disease".into(),
            control: "control".into(),
            compound_col: "Metadata_Compound".into(),
            concentration_col: "Metadata_Concentration".into(),
            vehicle: "DMSO".into(),
            readouts: Vec::new(),
            count_col: Some("Metadata_Object_Count".into()),
            cytotoxic_below: 0.7,
            hit_rescue: 50.0,
            whiten: false,
        }
    }
}

impl RescueOptions {
    /// The hit rule in words, written into the Compounds table.
    pub fn hit_rule(&self) -> String {
        format!(
            "hit = at one dose every replicate has >= {} % rescue and the mean viable count is \
             >= {} % of the disease vehicle",
            self.hit_rescue,
            100.0 * self.cytotoxic_below
        )
    }
}

/// Disease-vs-control effect of one feature in the vehicle wells.
#[derive(Debug, Clone, PartialEq)]
pub struct PhenotypeRow {
    /// Feature name.
    pub feature: String,
    /// Disease vehicle mean.
    pub mean_disease: f64,
    /// Control vehicle mean.
    pub mean_control: f64,
    /// Disease vehicle sample SD.
    pub sd_disease: f64,
    /// Control vehicle sample SD.
    pub sd_control: f64,
    /// (control − disease) / pooled SD.
    pub cohens_d: f64,
    /// (control − disease) / sqrt(var_c + var_d).
    pub ssmd: f64,
    /// 1 − 3 (sd_c + sd_d) / |control − disease|.
    pub z_prime: f64,
    /// `ok`, `no phenotype` (equal means), `constant`, `too few values`.
    pub status: String,
    /// 1 = best Z′ among `ok` features; 0 for the others.
    pub rank: usize,
}

/// Per-feature phenotype from the vehicle wells of the two lines, ranked by Z′.
pub fn phenotype(profiles: &Profiles, opts: &RescueOptions) -> Result<Vec<PhenotypeRow>> {
    let groups = Groups::of(profiles, opts)?;
    let mut rows: Vec<PhenotypeRow> = profiles
        .features
        .iter()
        .zip(&profiles.values)
        .map(|(name, col)| {
            let d: Vec<f64> = groups.disease_vehicle.iter().map(|&r| col[r]).collect();
            let c: Vec<f64> = groups.control_vehicle.iter().map(|&r| col[r]).collect();
            let qc = control_qc(name, &d, &c);
            let (nd, nc) = (qc.negative, qc.positive);
            let (md, mc) = (nd.mean.unwrap_or(f64::NAN), nc.mean.unwrap_or(f64::NAN));
            let (sd, sc) = (nd.sd.unwrap_or(f64::NAN), nc.sd.unwrap_or(f64::NAN));
            // pooled SD with n_d + n_c − 2 degrees of freedom
            let pooled = (((nd.n as f64 - 1.0) * sd * sd + (nc.n as f64 - 1.0) * sc * sc)
                / ((nd.n + nc.n) as f64 - 2.0))
                .sqrt();
            let status = if nd.n < 2 || nc.n < 2 {
                "too few values"
            } else if md == mc && sd == 0.0 && sc == 0.0 {
                "constant"
            } else if md == mc {
                "no phenotype"
            } else {
                "ok"
            };
            let ok = status == "ok";
            PhenotypeRow {
                feature: name.clone(),
                mean_disease: md,
                mean_control: mc,
                sd_disease: sd,
                sd_control: sc,
                cohens_d: if ok && pooled > 0.0 {
                    (mc - md) / pooled
                } else {
                    f64::NAN
                },
                ssmd: if ok {
                    qc.ssmd.unwrap_or(f64::NAN)
                } else {
                    f64::NAN
                },
                z_prime: if ok {
                    qc.z_prime.unwrap_or(f64::NAN)
                } else {
                    f64::NAN
                },
                status: status.to_string(),
                rank: 0,
            }
        })
        .collect();
    let mut order: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].status == "ok" && rows[i].z_prime.is_finite())
        .collect();
    order.sort_by(|&a, &b| {
        rows[b]
            .z_prime
            .total_cmp(&rows[a].z_prime)
            .then(rows[b].cohens_d.abs().total_cmp(&rows[a].cohens_d.abs()))
            .then(a.cmp(&b))
    });
    for (k, &i) in order.iter().enumerate() {
        rows[i].rank = k + 1;
    }
    Ok(rows)
}

/// Row indices of the wells that matter.
struct Groups {
    disease_vehicle: Vec<usize>,
    control_vehicle: Vec<usize>,
    /// Disease-line wells with a compound other than the vehicle.
    disease_treated: Vec<usize>,
}

impl Groups {
    fn of(p: &Profiles, opts: &RescueOptions) -> Result<Groups> {
        let line = p.meta_text(&opts.line_col)?;
        let cmpd = p.meta_text(&opts.compound_col)?;
        let mut lines: Vec<&String> = line.iter().collect();
        lines.sort();
        lines.dedup();
        let present = lines
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        for want in [&opts.disease, &opts.control] {
            if !line.contains(want) {
                return Err(Error::Invalid(format!(
                    "no wells of line `{want}` in {} (lines present: {present}); rescue needs \
                     a disease and a control line",
                    opts.line_col
                )));
            }
        }
        let pick = |l: &str, vehicle: bool| -> Vec<usize> {
            (0..line.len())
                .filter(|&r| line[r] == l && (cmpd[r] == opts.vehicle) == vehicle)
                .collect()
        };
        let g = Groups {
            disease_vehicle: pick(&opts.disease, true),
            control_vehicle: pick(&opts.control, true),
            disease_treated: pick(&opts.disease, false),
        };
        for (rows, l) in [
            (&g.disease_vehicle, &opts.disease),
            (&g.control_vehicle, &opts.control),
        ] {
            if rows.is_empty() {
                return Err(Error::Invalid(format!(
                    "no vehicle wells ({} = {}) of line `{l}`",
                    opts.compound_col, opts.vehicle
                )));
            }
        }
        Ok(g)
    }
}

fn mean_of(col: &[f64], rows: &[usize]) -> f64 {
    crate::profile::nan_mean(&rows.iter().map(|&r| col[r]).collect::<Vec<_>>())
}

/// Ledoit–Wolf shrunk covariance of the rows of `x` (n × p), exactly scikit-learn's
/// `ledoit_wolf(assume_centered=False)`: centred data, S = XᵀX / n, target μI with μ = tr S / p.
/// Returns (covariance, shrinkage).
pub fn ledoit_wolf(x: &DMatrix<f64>) -> (DMatrix<f64>, f64) {
    let (n, p) = x.shape();
    let mut xc = x.clone();
    for j in 0..p {
        let m = xc.column(j).mean();
        xc.column_mut(j).add_scalar_mut(-m);
    }
    let nf = n as f64;
    let emp = xc.transpose() * &xc / nf;
    if p == 1 {
        return (emp, 0.0);
    }
    let x2 = xc.map(|v| v * v);
    let emp_trace: Vec<f64> = (0..p).map(|j| x2.column(j).sum() / nf).collect();
    let mu = emp_trace.iter().sum::<f64>() / p as f64;
    let beta_ = (x2.transpose() * &x2).sum();
    let delta_ = (xc.transpose() * &xc).map(|v| v * v).sum() / (nf * nf);
    let beta = 1.0 / (p as f64 * nf) * (beta_ / nf - delta_);
    let mut delta = delta_ - 2.0 * mu * emp_trace.iter().sum::<f64>() + p as f64 * mu * mu;
    delta /= p as f64;
    let beta = beta.min(delta);
    let shrinkage = if beta == 0.0 { 0.0 } else { beta / delta };
    let mut cov = emp * (1.0 - shrinkage);
    for j in 0..p {
        cov[(j, j)] += shrinkage * mu;
    }
    (cov, shrinkage)
}

/// Per-well scores.
#[derive(Debug, Clone, PartialEq)]
pub struct WellScores {
    /// `rescue[k][row]`: % rescue of readout k.
    pub rescue: Vec<Vec<f64>>,
    /// Readout names, in the order of `rescue`.
    pub readouts: Vec<String>,
    /// Multivariate on-target score (0 = disease, 1 = control); NaN without usable features.
    pub on_target: Vec<f64>,
    /// Off-target score in vehicle-spread units.
    pub off_target: Vec<f64>,
    /// Viable count / disease vehicle mean count; NaN without a count column.
    pub viability: Vec<f64>,
    /// Ledoit–Wolf shrinkage used (NaN when not whitened).
    pub shrinkage: f64,
}

/// Everything [`score`] computes.
#[derive(Debug, Clone, PartialEq)]
pub struct Rescue {
    /// Ranked phenotype, one row per feature.
    pub phenotype: Vec<PhenotypeRow>,
    /// Per-well scores, rows as the input profiles.
    pub wells: WellScores,
    /// One row per compound and readout, ranked.
    pub compounds: Vec<CompoundRow>,
    /// The hit rule in words.
    pub hit_rule: String,
}

fn multivariate(
    p: &Profiles,
    g: &Groups,
    feats: &[usize],
    whiten: bool,
) -> Result<(Vec<f64>, Vec<f64>, f64)> {
    let n = p.n_rows();
    let nan = || (vec![f64::NAN; n], vec![f64::NAN; n], f64::NAN);
    if feats.is_empty() {
        return Ok(nan());
    }
    let k = feats.len();
    let row = |r: usize| -> Vec<f64> { feats.iter().map(|&f| p.values[f][r]).collect() };
    let mut transform: Option<DMatrix<f64>> = None;
    let mut shrinkage = f64::NAN;
    if whiten {
        // vehicle wells, each centred on its own line's centroid
        let vehicle: Vec<&Vec<usize>> = vec![&g.disease_vehicle, &g.control_vehicle];
        let m: usize = vehicle.iter().map(|v| v.len()).sum();
        let mut x = DMatrix::zeros(m, k);
        let mut i = 0;
        for rows in vehicle {
            let centre: Vec<f64> = feats.iter().map(|&f| mean_of(&p.values[f], rows)).collect();
            for &r in rows {
                for (j, v) in row(r).iter().enumerate() {
                    x[(i, j)] = v - centre[j];
                }
                i += 1;
            }
        }
        let (cov, s) = ledoit_wolf(&x);
        shrinkage = s;
        let eig = SymmetricEigen::new(cov);
        let min = eig
            .eigenvalues
            .iter()
            .cloned()
            .fold(f64::INFINITY, f64::min);
        if min.is_nan() || min <= 0.0 {
            return Err(Error::Invalid(
                "the vehicle covariance is singular even after shrinkage (constant features?)"
                    .into(),
            ));
        }
        let inv_sqrt = DMatrix::from_diagonal(&eig.eigenvalues.map(|v| 1.0 / v.sqrt()));
        transform = Some(&eig.eigenvectors * inv_sqrt * eig.eigenvectors.transpose());
    }
    let apply = |v: Vec<f64>| -> Vec<f64> {
        match &transform {
            Some(t) => (t * nalgebra::DVector::from_vec(v))
                .iter()
                .copied()
                .collect(),
            None => v,
        }
    };
    let centroid = |rows: &[usize]| -> Vec<f64> {
        apply(feats.iter().map(|&f| mean_of(&p.values[f], rows)).collect())
    };
    let cd = centroid(&g.disease_vehicle);
    let cc = centroid(&g.control_vehicle);
    let axis: Vec<f64> = cc.iter().zip(&cd).map(|(c, d)| c - d).collect();
    let len2: f64 = axis.iter().map(|a| a * a).sum();
    if len2.is_nan() || len2 <= 0.0 {
        return Ok(nan());
    }
    // (on, orthogonal length) of v relative to origin o
    let split = |v: &[f64], o: &[f64]| -> (f64, f64) {
        let d: Vec<f64> = v.iter().zip(o).map(|(a, b)| a - b).collect();
        let on = d.iter().zip(&axis).map(|(a, b)| a * b).sum::<f64>() / len2;
        let orth: f64 = d
            .iter()
            .zip(&axis)
            .map(|(a, b)| (a - on * b) * (a - on * b))
            .sum();
        (on, orth.sqrt())
    };
    let mut spread2 = 0.0;
    let mut m = 0usize;
    for (rows, o) in [(&g.disease_vehicle, &cd), (&g.control_vehicle, &cc)] {
        for &r in rows {
            let (_, orth) = split(&apply(row(r)), o);
            if orth.is_finite() {
                spread2 += orth * orth;
                m += 1;
            }
        }
    }
    let spread = (spread2 / m.max(1) as f64).sqrt();
    let mut on = vec![f64::NAN; n];
    let mut off = vec![f64::NAN; n];
    for r in 0..n {
        let (a, b) = split(&apply(row(r)), &cd);
        on[r] = a;
        off[r] = if spread > 0.0 { b / spread } else { f64::NAN };
    }
    Ok((on, off, shrinkage))
}

/// One compound × readout summary.
#[derive(Debug, Clone, PartialEq)]
pub struct CompoundRow {
    /// Compound.
    pub compound: String,
    /// Readout (a feature name, or [`ON_TARGET`] for the multivariate score × 100).
    pub readout: String,
    /// Disease-line wells of the compound.
    pub n_wells: usize,
    /// LL.4 fit of % rescue against concentration.
    pub rescue_fit: CurveFit,
    /// Largest mean % rescue over doses.
    pub max_rescue: f64,
    /// Largest mean % rescue over non-toxic doses.
    pub max_rescue_nontoxic: f64,
    /// LL.4 fit of relative viable count (absent without a count column).
    pub viability_fit: Option<CurveFit>,
    /// Dose where the viability fit crosses 0.5; NaN when it does not in the tested range.
    pub tc50: f64,
    /// TC50 / EC50.
    pub therapeutic_window: f64,
    /// Whether any dose is cytotoxic.
    pub cytotoxic: bool,
    /// Pearson r of replicate 1 vs replicate 2 % rescue over doses (NaN with < 3 doses).
    pub replicate_agreement: f64,
    /// Hit by [`RescueOptions::hit_rule`].
    pub hit: bool,
    /// 1 = best.
    pub rank: usize,
}

fn tc50_of(f: &CurveFit) -> f64 {
    let Some(p) = f.params else {
        return f64::NAN;
    };
    let Some((lo, hi)) = f.dose_range else {
        return f64::NAN;
    };
    let (c, d) = (p.c, p.d);
    if (c - 0.5) * (d - 0.5) >= 0.0 || c.is_nan() || d.is_nan() {
        return f64::NAN;
    }
    let h = (0.5 - c) / (d - c);
    let x = (p.e.ln() + ((1.0 / h) - 1.0).ln() / p.b).exp();
    if x.is_finite() && x >= lo && x <= hi {
        x
    } else {
        f64::NAN
    }
}

fn pearson_pairs(a: &[f64], b: &[f64]) -> f64 {
    let pairs: Vec<(f64, f64)> = a
        .iter()
        .zip(b)
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .map(|(x, y)| (*x, *y))
        .collect();
    if pairs.len() < 3 {
        return f64::NAN;
    }
    let xs: Vec<f64> = pairs.iter().map(|p| p.0).collect();
    let ys: Vec<f64> = pairs.iter().map(|p| p.1).collect();
    crate::similarity::pearson(&xs, &ys)
}

/// Phenotype, per-well rescue / on-off-target / viability, and the ranked compound table.
pub fn score(profiles: &Profiles, opts: &RescueOptions) -> Result<Rescue> {
    let g = Groups::of(profiles, opts)?;
    let pheno = phenotype(profiles, opts)?;
    let readouts: Vec<String> = if opts.readouts.is_empty() {
        let best = pheno.iter().find(|r| r.rank == 1).ok_or_else(|| {
            Error::Invalid(format!(
                "no feature differs between `{}` and `{}` vehicle wells: no phenotype to rescue",
                opts.disease, opts.control
            ))
        })?;
        vec![best.feature.clone()]
    } else {
        opts.readouts.clone()
    };
    let n = profiles.n_rows();
    let mut rescue = Vec::new();
    for r in &readouts {
        let f = profiles
            .features
            .iter()
            .position(|x| x == r)
            .ok_or_else(|| Error::Invalid(format!("no readout column `{r}` in the profiles")))?;
        let row = &pheno[f];
        if row.status != "ok" {
            return Err(Error::Invalid(format!(
                "readout `{r}`: {} between `{}` and `{}` vehicle wells (means {} and {}), so % \
                 rescue is undefined",
                row.status, opts.disease, opts.control, row.mean_disease, row.mean_control
            )));
        }
        let (md, mc) = (row.mean_disease, row.mean_control);
        rescue.push(
            profiles.values[f]
                .iter()
                .map(|x| 100.0 * (x - md) / (mc - md))
                .collect::<Vec<f64>>(),
        );
    }
    let usable: Vec<usize> = (0..pheno.len())
        .filter(|&i| pheno[i].status == "ok")
        .filter(|&i| {
            [&g.disease_vehicle, &g.control_vehicle, &g.disease_treated]
                .iter()
                .all(|rows| rows.iter().all(|&r| profiles.values[i][r].is_finite()))
        })
        .collect();
    let (on, off, shrinkage) = multivariate(profiles, &g, &usable, opts.whiten)?;
    let viability = match &opts.count_col {
        Some(c) => {
            let count = match profiles.meta_column(c) {
                Ok(MetaValues::Number(v)) => v.clone(),
                Ok(MetaValues::Text(_)) => {
                    return Err(Error::Invalid(format!("count column `{c}` is not numeric")))
                }
                Err(_) => match profiles.features.iter().position(|x| x == c) {
                    Some(f) => profiles.values[f].clone(),
                    None => return Err(Error::Invalid(format!("no count column `{c}`"))),
                },
            };
            let base = mean_of(&count, &g.disease_vehicle);
            if base.is_nan() || base <= 0.0 {
                return Err(Error::Invalid(format!(
                    "count column `{c}`: disease vehicle wells have no cells"
                )));
            }
            count.iter().map(|x| x / base).collect()
        }
        None => vec![f64::NAN; n],
    };
    let wells = WellScores {
        rescue,
        readouts: readouts.clone(),
        on_target: on,
        off_target: off,
        viability,
        shrinkage,
    };
    let compounds = compound_table(profiles, opts, &g, &wells)?;
    Ok(Rescue {
        phenotype: pheno,
        wells,
        compounds,
        hit_rule: opts.hit_rule(),
    })
}

fn compound_table(
    p: &Profiles,
    opts: &RescueOptions,
    g: &Groups,
    w: &WellScores,
) -> Result<Vec<CompoundRow>> {
    let cmpd = p.meta_text(&opts.compound_col)?;
    let conc = match p.meta_column(&opts.concentration_col)? {
        MetaValues::Number(v) => v.clone(),
        MetaValues::Text(_) => {
            return Err(Error::Invalid(format!(
                "concentration column `{}` is not numeric",
                opts.concentration_col
            )))
        }
    };
    let mut names: Vec<&String> = g.disease_treated.iter().map(|&r| &cmpd[r]).collect();
    names.sort();
    names.dedup();
    let has_count = opts.count_col.is_some();
    let mut series: Vec<(String, Vec<f64>)> = w
        .readouts
        .iter()
        .cloned()
        .zip(w.rescue.iter().cloned())
        .collect();
    if w.on_target.iter().any(|v| v.is_finite()) {
        series.push((
            ON_TARGET.to_string(),
            w.on_target.iter().map(|v| 100.0 * v).collect(),
        ));
    }
    let mut out = Vec::new();
    for name in names {
        let rows: Vec<usize> = g
            .disease_treated
            .iter()
            .copied()
            .filter(|&r| &cmpd[r] == name)
            .collect();
        let mut doses: Vec<f64> = rows.iter().map(|&r| conc[r]).collect();
        doses.sort_by(f64::total_cmp);
        doses.dedup();
        let at = |d: f64| -> Vec<usize> {
            rows.iter()
                .copied()
                .filter(|&r| conc[r] == d)
                .collect::<Vec<_>>()
        };
        let x: Vec<f64> = rows.iter().map(|&r| conc[r]).collect();
        let viability_fit = has_count.then(|| {
            let y: Vec<f64> = rows.iter().map(|&r| w.viability[r]).collect();
            fit(&x, &y, Model::Ll4)
        });
        let tc50 = viability_fit.as_ref().map(tc50_of).unwrap_or(f64::NAN);
        let toxic_at =
            |d: f64| -> bool { has_count && mean_of(&w.viability, &at(d)) < opts.cytotoxic_below };
        let cytotoxic = doses.iter().any(|&d| toxic_at(d));
        for (readout, values) in &series {
            let y: Vec<f64> = rows.iter().map(|&r| values[r]).collect();
            let rescue_fit = fit(&x, &y, Model::Ll4);
            let mut max_rescue = f64::NAN;
            let mut max_nontoxic = f64::NAN;
            let mut hit = false;
            let (mut rep1, mut rep2) = (Vec::new(), Vec::new());
            for &d in &doses {
                let here = at(d);
                let m = mean_of(values, &here);
                max_rescue = max_rescue.max(m);
                if !toxic_at(d) {
                    max_nontoxic = max_nontoxic.max(m);
                    if !here.is_empty() && here.iter().all(|&r| values[r] >= opts.hit_rescue) {
                        hit = true;
                    }
                }
                if here.len() >= 2 {
                    rep1.push(values[here[0]]);
                    rep2.push(values[here[1]]);
                }
            }
            let ec50 = rescue_fit.ec50_value().unwrap_or(f64::NAN);
            out.push(CompoundRow {
                compound: name.clone(),
                readout: readout.clone(),
                n_wells: rows.len(),
                max_rescue,
                max_rescue_nontoxic: max_nontoxic,
                viability_fit: viability_fit.clone(),
                tc50,
                therapeutic_window: tc50 / ec50,
                cytotoxic,
                replicate_agreement: pearson_pairs(&rep1, &rep2),
                hit,
                rank: 0,
                rescue_fit,
            });
        }
    }
    // rank within each readout: hits first, then larger non-toxic rescue, then name
    let mut order: Vec<usize> = (0..out.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&out[a], &out[b]);
        x.readout.cmp(&y.readout).then(y.hit.cmp(&x.hit)).then(
            y.max_rescue_nontoxic
                .total_cmp(&x.max_rescue_nontoxic)
                .then(x.compound.cmp(&y.compound)),
        )
    });
    let mut rank = 0;
    let mut last: Option<String> = None;
    let mut ranked = Vec::with_capacity(out.len());
    for i in order {
        if last.as_deref() != Some(out[i].readout.as_str()) {
            rank = 0;
            last = Some(out[i].readout.clone());
        }
        rank += 1;
        let mut row = out[i].clone();
        row.rank = rank;
        ranked.push(row);
    }
    Ok(ranked)
}

/// `Phenotype` table: one row per feature, ranked rows first.
pub fn phenotype_table(rows: &[PhenotypeRow]) -> Result<ipscope_table::RecordBatch> {
    let mut order: Vec<&PhenotypeRow> = rows.iter().collect();
    order.sort_by_key(|r| if r.rank == 0 { usize::MAX } else { r.rank });
    let f = |g: fn(&PhenotypeRow) -> f64| order.iter().map(|r| g(r)).collect::<Vec<f64>>();
    let mut b = ipscope_table::TableBuilder::new();
    b.str("Feature", order.iter().map(|r| r.feature.clone()).collect())
        .f64("Mean_Disease", f(|r| r.mean_disease))
        .f64("Mean_Control", f(|r| r.mean_control))
        .f64("SD_Disease", f(|r| r.sd_disease))
        .f64("SD_Control", f(|r| r.sd_control))
        .f64("CohensD", f(|r| r.cohens_d))
        .doc("(control − disease vehicle mean) / pooled SD")
        .f64("SSMD", f(|r| r.ssmd))
        .f64("ZPrime", f(|r| r.z_prime))
        .str("Status", order.iter().map(|r| r.status.clone()).collect())
        .u32("Rank", order.iter().map(|r| r.rank as u32).collect());
    Ok(b.finish()?)
}

/// `Compounds` table: one row per compound and readout, in rank order within each readout.
pub fn compounds_table(rows: &[CompoundRow], hit_rule: &str) -> Result<ipscope_table::RecordBatch> {
    let f = |g: &dyn Fn(&CompoundRow) -> f64| rows.iter().map(g).collect::<Vec<f64>>();
    let ec50 = |r: &CompoundRow| r.rescue_fit.ec50;
    let mut b = ipscope_table::TableBuilder::new();
    b.str(
        "Metadata_Compound",
        rows.iter().map(|r| r.compound.clone()).collect(),
    )
    .str("Readout", rows.iter().map(|r| r.readout.clone()).collect())
    .u32(
        "Count_Wells",
        rows.iter().map(|r| r.n_wells as u32).collect(),
    )
    .str(
        "Rescue_Status",
        rows.iter()
            .map(|r| r.rescue_fit.status.as_str().to_string())
            .collect(),
    )
    .f64(
        "Rescue_EC50",
        f(&|r| ec50(r).map_or(f64::NAN, |e| e.estimate)),
    )
    .f64(
        "Rescue_EC50_Lower",
        f(&|r| ec50(r).and_then(|e| e.lower).unwrap_or(f64::NAN)),
    )
    .f64(
        "Rescue_EC50_Upper",
        f(&|r| ec50(r).and_then(|e| e.upper).unwrap_or(f64::NAN)),
    )
    .f64("MaxRescue_Percent", f(&|r| r.max_rescue))
    .f64("MaxRescueNonToxic_Percent", f(&|r| r.max_rescue_nontoxic))
    .f64("TC50", f(&|r| r.tc50))
    .doc("dose where the LL.4 fit of viable count / disease vehicle crosses 0.5")
    .f64("TherapeuticWindow", f(&|r| r.therapeutic_window))
    .bool("Cytotoxic", rows.iter().map(|r| r.cytotoxic).collect())
    .f64("ReplicateAgreement", f(&|r| r.replicate_agreement))
    .bool("Hit", rows.iter().map(|r| r.hit).collect())
    .str("HitRule", vec![hit_rule.to_string(); rows.len()])
    .u32("Rank", rows.iter().map(|r| r.rank as u32).collect());
    Ok(b.finish()?)
}

/// Per-well scores next to the profiles' metadata: `Rescue_Percent_<readout>`,
/// `Rescue_OnTarget`, `Rescue_OffTarget`, `Viability_Relative`.
pub fn wells_table(profiles: &Profiles, w: &WellScores) -> Result<ipscope_table::RecordBatch> {
    let mut b = ipscope_table::TableBuilder::new();
    for m in &profiles.meta {
        match &m.values {
            MetaValues::Text(v) => b.opt_str(&m.name, v.clone()),
            MetaValues::Number(v) => b.f64(&m.name, v.clone()),
        };
    }
    for (name, v) in w.readouts.iter().zip(&w.rescue) {
        b.f64(&format!("Rescue_Percent_{name}"), v.clone());
    }
    b.f64("Rescue_OnTarget", w.on_target.clone())
        .f64("Rescue_OffTarget", w.off_target.clone())
        .f64("Viability_Relative", w.viability.clone());
    Ok(b.finish()?)
}
