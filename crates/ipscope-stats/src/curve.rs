//! Dose-response curves: least-squares fits of drc's log-logistic and Weibull models.
//!
//! The models and their parameter names follow the R package drc (Ritz, Baty, Streibig &
//! Gerhard 2015, "Dose-Response Analysis Using R", PLoS ONE 10:e0146021):
//!
//! - `LL.4`: f(x) = c + (d − c) / (1 + exp(b (ln x − ln e)))
//! - `LL.3`: `LL.4` with c = 0; `LL.2`: c = 0 and d = 1
//! - `LL.5`: f(x) = c + (d − c) / (1 + exp(b (ln x − ln e)))^f
//! - `W1.4`: f(x) = c + (d − c) exp(−exp(b (ln x − ln e)))
//!
//! Dose 0 is handled as drc does: ln 0 = −∞, so the curve takes its limit there (d for b > 0,
//! c for b < 0).
//!
//! **Fit.** Ordinary least squares, solved with the Levenberg–Marquardt implementation of the
//! `levenberg-marquardt` crate (MINPACK's algorithm) over (b, c, d, ln e, f). The start is
//! chosen so that the global minimum is reached, not a local one: for every point of a grid
//! over the non-linear parameters (b, ln e and, for `LL.5`, f) the linear ones (c, d) are
//! solved exactly by linear least squares (variable projection), and the best few grid points
//! are refined with Levenberg–Marquardt; the lowest sum of squares wins. The grid spans the
//! tested dose range with a margin, and slopes from 0.2 to 20 in both directions.
//!
//! **Uncertainty.** Standard errors from the Jacobian at the optimum: Cov = s² (JᵀJ)⁻¹ with
//! s² = RSS / (n − p), as in nls(); the SE of e and of the EDp values by the delta method
//! (drc's `ED(..., interval = "delta")`), with Student-t 95 % intervals on n − p degrees of
//! freedom.
//!
//! **EDp** is drc's relative effective dose: the dose at which the response has moved p % of
//! the way from d to c, e.g. ED_p = e (p / (100 − p))^(1/b) for the log-logistic models.
//!
//! A curve whose fit is not better than a constant (F-test, p > 0.05), or that does not
//! converge, gets a status and a reason and no EC50.

use std::fmt;
use std::str::FromStr;

use levenberg_marquardt::{LeastSquaresProblem, LevenbergMarquardt};
use nalgebra::{DMatrix, DVector, Dyn, Owned};
use serde::Serialize;
use statrs::distribution::{ContinuousCDF, FisherSnedecor, StudentsT};

use crate::{Error, Result};

/// Significance level of the no-effect F-test below which a curve counts as an effect.
pub const FLAT_P_VALUE: f64 = 0.05;

/// Largest standard error of ln EC50 for which the EC50 is reported (1: the 95 % interval
/// spans about a factor of 7 either way).
pub const MAX_SE_LN_EC50: f64 = 1.0;

/// Index of each parameter in the full vector (b, c, d, ln e, f).
const B: usize = 0;
const C: usize = 1;
const D: usize = 2;
const ETA: usize = 3;
const F: usize = 4;

/// A dose-response model of drc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Model {
    /// Four-parameter log-logistic (drc `LL.4`).
    #[serde(rename = "LL.4")]
    Ll4,
    /// Three-parameter log-logistic with lower limit 0 (drc `LL.3`).
    #[serde(rename = "LL.3")]
    Ll3,
    /// Two-parameter log-logistic with limits 0 and 1 (drc `LL.2`).
    #[serde(rename = "LL.2")]
    Ll2,
    /// Five-parameter (asymmetric) log-logistic (drc `LL.5`).
    #[serde(rename = "LL.5")]
    Ll5,
    /// Four-parameter Weibull type 1 (drc `W1.4`).
    #[serde(rename = "W1.4")]
    W14,
}

impl Model {
    /// drc's name: `LL.4`, `LL.3`, `LL.2`, `LL.5` or `W1.4`.
    pub fn name(self) -> &'static str {
        match self {
            Model::Ll4 => "LL.4",
            Model::Ll3 => "LL.3",
            Model::Ll2 => "LL.2",
            Model::Ll5 => "LL.5",
            Model::W14 => "W1.4",
        }
    }

    /// Indices (into b, c, d, ln e, f) of the parameters this model estimates.
    fn free(self) -> &'static [usize] {
        match self {
            Model::Ll4 | Model::W14 => &[B, C, D, ETA],
            Model::Ll3 => &[B, D, ETA],
            Model::Ll2 => &[B, ETA],
            Model::Ll5 => &[B, C, D, ETA, F],
        }
    }

    /// Number of estimated parameters.
    pub fn n_params(self) -> usize {
        self.free().len()
    }

    /// The fixed values: c = 0 (LL.3, LL.2), d = 1 (LL.2), f = 1 (all but LL.5).
    fn defaults(self) -> [f64; 5] {
        [1.0, 0.0, 1.0, 0.0, 1.0]
    }

    /// Shape h(t) in [0, 1] with f(x) = c + (d − c) h, its derivative dh/dt and dh/df.
    fn shape(self, t: f64, f: f64) -> (f64, f64, f64) {
        match self {
            Model::W14 => {
                // h = exp(−exp(t)); dh/dt = −exp(t − exp(t)).
                if t > 700.0 {
                    (0.0, 0.0, 0.0)
                } else {
                    let et = t.exp();
                    let h = (-et).exp();
                    (h, -(t - et).exp(), 0.0)
                }
            }
            _ => {
                // g = 1 / (1 + exp(t)) computed without overflow; h = g^f.
                let one_minus_g = logistic(t);
                let ln_s = softplus(t);
                let h = (-f * ln_s).exp();
                (h, -f * h * one_minus_g, -h * ln_s)
            }
        }
    }

    /// ln of the constant K_p with ED_p = exp(ln e + K_p / b), and dK_p/df.
    fn ed_constant(self, p: f64, f: f64) -> (f64, f64) {
        let q = p / 100.0;
        match self {
            Model::W14 => ((-(1.0 - q).ln()).ln(), 0.0),
            Model::Ll5 => {
                let a = 1.0 / (1.0 - q);
                let af = a.powf(1.0 / f);
                let k = (af - 1.0).ln();
                let dk = af * a.ln() * (-1.0 / (f * f)) / (af - 1.0);
                (k, dk)
            }
            _ => ((q / (1.0 - q)).ln(), 0.0),
        }
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Model {
    type Err = Error;

    /// `ll4`/`LL.4`, `ll3`, `ll2`, `ll5`, `w1.4`/`w14`, ignoring case and dots.
    fn from_str(s: &str) -> Result<Self> {
        let key: String = s
            .chars()
            .filter(|c| *c != '.' && *c != '_')
            .collect::<String>()
            .to_ascii_lowercase();
        match key.as_str() {
            "ll4" => Ok(Model::Ll4),
            "ll3" => Ok(Model::Ll3),
            "ll2" => Ok(Model::Ll2),
            "ll5" => Ok(Model::Ll5),
            "w14" => Ok(Model::W14),
            _ => Err(Error::Invalid(format!(
                "unknown dose-response model `{s}` (expected ll4, ll3, ll2, ll5 or w1.4)"
            ))),
        }
    }
}

fn logistic(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// ln(1 + exp(t)) without overflow.
fn softplus(t: f64) -> f64 {
    if t > 30.0 {
        t + (-t).exp()
    } else {
        t.exp().ln_1p()
    }
}

/// t = b (ln x − ln e) with drc's limit for x = 0 (ln x = −∞).
fn t_of(b: f64, ln_x: f64, eta: f64) -> f64 {
    if ln_x == f64::NEG_INFINITY {
        if b > 0.0 {
            f64::NEG_INFINITY
        } else if b < 0.0 {
            f64::INFINITY
        } else {
            0.0
        }
    } else {
        b * (ln_x - eta)
    }
}

/// Value and gradient (over b, c, d, ln e, f) of `model` at ln x.
fn eval(model: Model, theta: &[f64; 5], ln_x: f64) -> (f64, [f64; 5]) {
    let [b, c, d, eta, f] = *theta;
    let t = t_of(b, ln_x, eta);
    if t.is_infinite() {
        let h = if t < 0.0 { 1.0 } else { 0.0 };
        return (c + (d - c) * h, [0.0, 1.0 - h, h, 0.0, 0.0]);
    }
    let (h, dh_dt, dh_df) = model.shape(t, f);
    let amp = d - c;
    let grad = [
        amp * dh_dt * (ln_x - eta),
        1.0 - h,
        h,
        -amp * dh_dt * b,
        amp * dh_df,
    ];
    (c + amp * h, grad)
}

/// The value of a fitted curve at dose `x` (x ≥ 0).
pub fn predict(model: Model, params: &Params, x: f64) -> f64 {
    eval(model, &params.full(), x.ln()).0
}

/// Estimated (or fixed) parameters in drc's names.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Params {
    /// Slope (drc's b; GraphPad's HillSlope is −b).
    pub b: f64,
    /// Lower limit (response as the dose goes to ∞ for b > 0).
    pub c: f64,
    /// Upper limit (response at dose 0 for b > 0).
    pub d: f64,
    /// Inflection point e (= ED50 except for LL.5).
    pub e: f64,
    /// Asymmetry (LL.5; 1 otherwise).
    pub f: f64,
}

impl Params {
    fn full(&self) -> [f64; 5] {
        [self.b, self.c, self.d, self.e.ln(), self.f]
    }
}

/// Standard errors of [`Params`]; `None` for fixed parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct ParamErrors {
    pub b: Option<f64>,
    pub c: Option<f64>,
    pub d: Option<f64>,
    pub e: Option<f64>,
    pub f: Option<f64>,
}

/// An effective dose with its delta-method standard error and 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EffectiveDose {
    /// p of ED_p (10, 50, 90).
    pub p: f64,
    pub estimate: f64,
    pub se: Option<f64>,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
}

/// Outcome of a fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Converged; EC50 inside the tested dose range.
    Ok,
    /// Converged, but the EC50 lies outside the tested (positive) dose range.
    Extrapolated,
    /// The fit is not better than a constant (F-test): no EC50.
    Flat,
    /// The solver did not converge or the parameters are not identifiable: no EC50.
    NotConverged,
    /// Converged, but the data do not pin the EC50 down (SE of ln EC50 above
    /// [`MAX_SE_LN_EC50`], GraphPad's "ambiguous"): no EC50.
    Ambiguous,
    /// Not enough usable points or dose levels for the model.
    TooFewPoints,
    /// Doses that are not usable (negative, NaN or infinite).
    InvalidInput,
}

impl Status {
    /// snake_case name as in the tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Extrapolated => "extrapolated",
            Status::Flat => "flat",
            Status::NotConverged => "not_converged",
            Status::Ambiguous => "ambiguous",
            Status::TooFewPoints => "too_few_points",
            Status::InvalidInput => "invalid_input",
        }
    }

    /// Whether the fit gives an EC50.
    pub fn has_ec50(self) -> bool {
        matches!(self, Status::Ok | Status::Extrapolated)
    }
}

/// Result of [`fit`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CurveFit {
    pub model: Model,
    pub status: Status,
    /// Why the status is not `ok` (empty when it is).
    pub reason: String,
    /// Points used (after dropping NaN responses).
    pub n: usize,
    /// Points dropped because the response was NaN or missing.
    pub n_dropped: usize,
    /// Residual degrees of freedom n − p.
    pub df: usize,
    /// Estimates; `None` when no fit was attempted.
    pub params: Option<Params>,
    pub se: ParamErrors,
    /// Residual sum of squares.
    pub rss: Option<f64>,
    /// Residual standard error sqrt(RSS / df).
    pub residual_se: Option<f64>,
    /// ED50 (the EC50) with SE and 95 % interval; `None` unless the status has an EC50.
    pub ec50: Option<EffectiveDose>,
    pub ed10: Option<EffectiveDose>,
    pub ed90: Option<EffectiveDose>,
    /// GraphPad's HillSlope = −b.
    pub hill_slope: Option<f64>,
    /// GraphPad's LogEC50 = log10(EC50).
    pub log_ec50: Option<f64>,
    /// p-value of the F-test of the model against a constant.
    pub p_no_effect: Option<f64>,
    /// Lowest and highest positive dose.
    pub dose_range: Option<(f64, f64)>,
    /// Covariance of the estimated parameters (in the order b, c, d, ln e, f restricted to the
    /// model's free parameters); used for confidence bands.
    #[serde(skip)]
    pub covariance: Option<DMatrix<f64>>,
}

impl CurveFit {
    fn failed(model: Model, status: Status, reason: String, n: usize, n_dropped: usize) -> Self {
        CurveFit {
            model,
            status,
            reason,
            n,
            n_dropped,
            df: n.saturating_sub(model.n_params()),
            params: None,
            se: ParamErrors::default(),
            rss: None,
            residual_se: None,
            ec50: None,
            ed10: None,
            ed90: None,
            hill_slope: None,
            log_ec50: None,
            p_no_effect: None,
            dose_range: None,
            covariance: None,
        }
    }

    /// EC50, when the status gives one.
    pub fn ec50_value(&self) -> Option<f64> {
        self.ec50.map(|e| e.estimate)
    }

    /// Pointwise 95 % confidence band of the mean response at dose `x` (delta method,
    /// Student t on the residual df): (lower, upper).
    pub fn band(&self, x: f64) -> Option<(f64, f64)> {
        let params = self.params?;
        let cov = self.covariance.as_ref()?;
        let (y, grad) = eval(self.model, &params.full(), x.ln());
        let free = self.model.free();
        let g = DVector::from_iterator(free.len(), free.iter().map(|&i| grad[i]));
        let var = (g.transpose() * cov * &g)[(0, 0)];
        let t = t_quantile(self.df)?;
        let half = t * var.max(0.0).sqrt();
        Some((y - half, y + half))
    }
}

/// 97.5 % quantile of Student's t with `df` degrees of freedom.
fn t_quantile(df: usize) -> Option<f64> {
    if df == 0 {
        return None;
    }
    StudentsT::new(0.0, 1.0, df as f64)
        .ok()
        .map(|t| t.inverse_cdf(0.975))
}

/// The least-squares problem for the `levenberg-marquardt` crate over the free parameters.
struct Problem<'a> {
    model: Model,
    ln_x: &'a [f64],
    y: &'a [f64],
    theta: [f64; 5],
}

impl Problem<'_> {
    fn free_vector(&self) -> DVector<f64> {
        let free = self.model.free();
        DVector::from_iterator(free.len(), free.iter().map(|&i| self.theta[i]))
    }

    fn jacobian_matrix(&self) -> DMatrix<f64> {
        let free = self.model.free();
        let mut j = DMatrix::zeros(self.y.len(), free.len());
        for (row, &lx) in self.ln_x.iter().enumerate() {
            let (_, grad) = eval(self.model, &self.theta, lx);
            for (col, &i) in free.iter().enumerate() {
                j[(row, col)] = grad[i];
            }
        }
        j
    }

    fn rss(&self) -> f64 {
        self.ln_x
            .iter()
            .zip(self.y)
            .map(|(&lx, &y)| {
                let r = eval(self.model, &self.theta, lx).0 - y;
                r * r
            })
            .sum()
    }
}

impl LeastSquaresProblem<f64, Dyn, Dyn> for Problem<'_> {
    type ResidualStorage = Owned<f64, Dyn>;
    type JacobianStorage = Owned<f64, Dyn, Dyn>;
    type ParameterStorage = Owned<f64, Dyn>;

    fn set_params(&mut self, x: &DVector<f64>) {
        for (k, &i) in self.model.free().iter().enumerate() {
            self.theta[i] = x[k];
        }
    }

    fn params(&self) -> DVector<f64> {
        self.free_vector()
    }

    fn residuals(&self) -> Option<DVector<f64>> {
        let r = DVector::from_iterator(
            self.y.len(),
            self.ln_x
                .iter()
                .zip(self.y)
                .map(|(&lx, &y)| eval(self.model, &self.theta, lx).0 - y),
        );
        r.iter().all(|v| v.is_finite()).then_some(r)
    }

    fn jacobian(&self) -> Option<DMatrix<f64>> {
        let j = self.jacobian_matrix();
        j.iter().all(|v| v.is_finite()).then_some(j)
    }
}

/// Fits `model` to (dose, response) points by least squares.
///
/// Points with a NaN response are left out and counted in `n_dropped`. Negative, NaN or
/// infinite doses give [`Status::InvalidInput`]; fewer points than parameters + 1, or fewer
/// distinct dose levels than parameters, give [`Status::TooFewPoints`]. Never panics.
pub fn fit(doses: &[f64], responses: &[f64], model: Model) -> CurveFit {
    let k = model.n_params();
    if doses.len() != responses.len() {
        return CurveFit::failed(
            model,
            Status::InvalidInput,
            format!("{} doses but {} responses", doses.len(), responses.len()),
            0,
            0,
        );
    }
    if let Some(bad) = doses.iter().find(|d| !d.is_finite() || **d < 0.0) {
        return CurveFit::failed(
            model,
            Status::InvalidInput,
            format!("dose {bad} is not a finite non-negative number"),
            0,
            0,
        );
    }
    let mut ln_x = Vec::with_capacity(doses.len());
    let mut y = Vec::with_capacity(doses.len());
    for (&d, &r) in doses.iter().zip(responses) {
        if r.is_finite() {
            ln_x.push(d.ln());
            y.push(r);
        }
    }
    let n = y.len();
    let n_dropped = doses.len() - n;
    let mut levels: Vec<f64> = ln_x.clone();
    levels.sort_by(f64::total_cmp);
    levels.dedup();
    let positive: Vec<f64> = levels.iter().copied().filter(|v| v.is_finite()).collect();
    if n <= k || levels.len() < k.min(4) || positive.len() < 2 {
        return CurveFit::failed(
            model,
            Status::TooFewPoints,
            format!(
                "{n} usable points at {} dose levels ({} positive); {} needs more than {k} points \
                 and at least {} levels, two of them positive",
                levels.len(),
                positive.len(),
                model.name(),
                k.min(4)
            ),
            n,
            n_dropped,
        );
    }
    let lo = positive[0];
    let hi = positive[positive.len() - 1];
    let df = n - k;

    let starts = grid_starts(model, &ln_x, &y, lo, hi);
    let solver = LevenbergMarquardt::new().with_patience(200);
    let mut best: Option<([f64; 5], f64, bool, String)> = None;
    for theta in starts {
        let problem = Problem {
            model,
            ln_x: &ln_x,
            y: &y,
            theta,
        };
        let (problem, report) = solver.minimize(problem);
        let rss = problem.rss();
        if !rss.is_finite() || problem.theta.iter().any(|v| !v.is_finite()) {
            continue;
        }
        let ok = report.termination.was_successful();
        let better = match &best {
            None => true,
            Some((_, b_rss, b_ok, _)) => (ok && !b_ok) || (ok == *b_ok && rss < *b_rss),
        };
        if better {
            best = Some((problem.theta, rss, ok, format!("{:?}", report.termination)));
        }
    }
    let Some((mut theta, rss, converged, termination)) = best else {
        return CurveFit::failed(
            model,
            Status::NotConverged,
            "no start gave a finite fit".to_string(),
            n,
            n_dropped,
        );
    };
    if model == Model::Ll4 && theta[C] > theta[D] {
        // LL.4 is the same curve under (b, c, d) → (−b, d, c); report drc's orientation, c < d.
        theta.swap(C, D);
        theta[B] = -theta[B];
    }
    let params = Params {
        b: theta[B],
        c: theta[C],
        d: theta[D],
        e: theta[ETA].exp(),
        f: theta[F],
    };
    let residual_se = (rss / df as f64).sqrt();
    let mean = y.iter().sum::<f64>() / n as f64;
    let rss0: f64 = y.iter().map(|v| (v - mean) * (v - mean)).sum();
    let p_no_effect = if rss > 0.0 && k > 1 {
        let fstat = ((rss0 - rss) / (k - 1) as f64) / (rss / df as f64);
        FisherSnedecor::new((k - 1) as f64, df as f64)
            .ok()
            .map(|dist| 1.0 - dist.cdf(fstat.max(0.0)))
    } else if rss == 0.0 && rss0 > 0.0 {
        Some(0.0)
    } else {
        None
    };

    let problem = Problem {
        model,
        ln_x: &ln_x,
        y: &y,
        theta,
    };
    let j = problem.jacobian_matrix();
    let jtj = j.transpose() * &j;
    let covariance = jtj
        .clone()
        .try_inverse()
        .filter(|m| m.iter().all(|v| v.is_finite()))
        .map(|m| m * (rss / df as f64));
    let t = t_quantile(df);

    let mut fit = CurveFit::failed(model, Status::Ok, String::new(), n, n_dropped);
    fit.params = Some(params);
    fit.rss = Some(rss);
    fit.residual_se = Some(residual_se);
    fit.p_no_effect = p_no_effect;
    fit.dose_range = Some((lo.exp(), hi.exp()));
    if let Some(cov) = &covariance {
        let free = model.free();
        let se_of = |i: usize| {
            free.iter()
                .position(|&f| f == i)
                .map(|k| cov[(k, k)].max(0.0).sqrt())
        };
        fit.se = ParamErrors {
            b: se_of(B),
            c: se_of(C),
            d: se_of(D),
            e: se_of(ETA).map(|s| s * params.e),
            f: se_of(F),
        };
    }
    fit.covariance = covariance.clone();

    let ed = |p: f64| -> Option<EffectiveDose> {
        let (kp, dkp_df) = model.ed_constant(p, params.f);
        let estimate = (theta[ETA] + kp / params.b).exp();
        if !estimate.is_finite() {
            return None;
        }
        let se = covariance.as_ref().map(|cov| {
            let free = model.free();
            let grad = DVector::from_iterator(
                free.len(),
                free.iter().map(|&i| match i {
                    B => -estimate * kp / (params.b * params.b),
                    ETA => estimate,
                    F => estimate * dkp_df / params.b,
                    _ => 0.0,
                }),
            );
            (grad.transpose() * cov * &grad)[(0, 0)].max(0.0).sqrt()
        });
        let half = se.zip(t).map(|(s, t)| s * t);
        Some(EffectiveDose {
            p,
            estimate,
            se,
            lower: half.map(|h| estimate - h),
            upper: half.map(|h| estimate + h),
        })
    };

    if !converged {
        fit.status = Status::NotConverged;
        fit.reason = format!("Levenberg-Marquardt stopped without converging ({termination})");
    } else if covariance.is_none() {
        fit.status = Status::NotConverged;
        fit.reason = "parameters are not identifiable (JᵀJ is singular)".to_string();
    } else if p_no_effect.is_none_or(|p| p > FLAT_P_VALUE) {
        fit.status = Status::Flat;
        fit.reason = match p_no_effect {
            Some(p) => format!("no dose effect: F-test against a constant gives p = {p:.3}"),
            None => "no dose effect: the responses are constant".to_string(),
        };
    } else {
        match ed(50.0) {
            None => {
                fit.status = Status::NotConverged;
                fit.reason = "EC50 is not finite".to_string();
            }
            Some(ec50)
                if ec50
                    .se
                    .is_some_and(|se| se / ec50.estimate > MAX_SE_LN_EC50) =>
            {
                fit.status = Status::Ambiguous;
                fit.reason = format!(
                    "EC50 not determined by the data: SE of ln EC50 is {:.3} (> {MAX_SE_LN_EC50})",
                    ec50.se.unwrap_or(f64::NAN) / ec50.estimate
                );
            }
            Some(ec50) => {
                let (dlo, dhi) = (lo.exp(), hi.exp());
                if ec50.estimate < dlo || ec50.estimate > dhi {
                    fit.status = Status::Extrapolated;
                    fit.reason = format!(
                        "EC50 {:.4} lies outside the tested doses [{dlo}, {dhi}]",
                        ec50.estimate
                    );
                }
                fit.hill_slope = Some(-params.b);
                fit.log_ec50 = Some(ec50.estimate.log10());
                fit.ec50 = Some(ec50);
                fit.ed10 = ed(10.0);
                fit.ed90 = ed(90.0);
            }
        }
    }
    fit
}

/// Start points for Levenberg–Marquardt: the best grid points of the profiled sum of squares.
fn grid_starts(model: Model, ln_x: &[f64], y: &[f64], lo: f64, hi: f64) -> Vec<[f64; 5]> {
    const KEEP: usize = 6;
    const N_ETA: usize = 25;
    const SLOPES: [f64; 9] = [0.2, 0.4, 0.7, 1.0, 1.5, 2.5, 4.0, 8.0, 20.0];
    let fs: &[f64] = if model == Model::Ll5 {
        &[0.3, 0.6, 1.0, 2.0, 4.0]
    } else {
        &[1.0]
    };
    let margin = 0.5 * (hi - lo).max(1.0);
    let (e_lo, e_hi) = (lo - margin, hi + margin);
    let mut scored: Vec<(f64, [f64; 5])> = Vec::new();
    let mut h = vec![0.0; y.len()];
    for step in 0..N_ETA {
        let eta = e_lo + (e_hi - e_lo) * step as f64 / (N_ETA - 1) as f64;
        for &slope in &SLOPES {
            for b in [slope, -slope] {
                for &f in fs {
                    let mut theta = model.defaults();
                    theta[B] = b;
                    theta[ETA] = eta;
                    theta[F] = f;
                    for (hv, &lx) in h.iter_mut().zip(ln_x) {
                        let t = t_of(b, lx, eta);
                        *hv = if t.is_infinite() {
                            if t < 0.0 {
                                1.0
                            } else {
                                0.0
                            }
                        } else {
                            model.shape(t, f).0
                        };
                    }
                    if !solve_linear(model, &h, y, &mut theta) {
                        continue;
                    }
                    let rss: f64 = h
                        .iter()
                        .zip(y)
                        .map(|(&hv, &yv)| {
                            let r = theta[C] + (theta[D] - theta[C]) * hv - yv;
                            r * r
                        })
                        .sum();
                    if rss.is_finite() {
                        scored.push((rss, theta));
                    }
                }
            }
        }
    }
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    scored.into_iter().take(KEEP).map(|(_, t)| t).collect()
}

/// Given the shape values h, solves the model's linear parameters (c, d) by least squares
/// into `theta`; false when they are not determined.
fn solve_linear(model: Model, h: &[f64], y: &[f64], theta: &mut [f64; 5]) -> bool {
    match model {
        Model::Ll2 => true,
        Model::Ll3 => {
            let hh: f64 = h.iter().map(|v| v * v).sum();
            if hh <= 0.0 {
                return false;
            }
            theta[D] = h.iter().zip(y).map(|(a, b)| a * b).sum::<f64>() / hh;
            true
        }
        _ => {
            // y ≈ c (1 − h) + d h: 2×2 normal equations.
            let (mut s11, mut s12, mut s22, mut r1, mut r2) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for (&hv, &yv) in h.iter().zip(y) {
                let u = 1.0 - hv;
                s11 += u * u;
                s12 += u * hv;
                s22 += hv * hv;
                r1 += u * yv;
                r2 += hv * yv;
            }
            let det = s11 * s22 - s12 * s12;
            if det.abs() <= 1e-12 * (s11 * s22).max(f64::MIN_POSITIVE) {
                return false;
            }
            theta[C] = (r1 * s22 - r2 * s12) / det;
            theta[D] = (s11 * r2 - s12 * r1) / det;
            true
        }
    }
}

/// The joint least-squares fit of several curves with separate parameters, drc's
/// `drm(y ~ x, curveid = group)` default (no parameter shared between curves).
///
/// With nothing shared, the joint minimum is every curve's own minimum, so the per-curve fits
/// are the joint fit's estimates; what the joint fit adds is the residual variance pooled over
/// all curves, s² = Σ RSS / Σ (n − p), on Σ (n − p) degrees of freedom. Its covariance is
/// block-diagonal with blocks s² (JᵀJ)⁻¹ of each curve (drc's `vcov` of the joint fit).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct JointFit {
    /// Curves pooled (those with estimates and a covariance).
    pub curves: usize,
    /// Σ RSS over the pooled curves.
    pub rss: f64,
    /// Σ (n − p).
    pub df: usize,
    /// sqrt(RSS / df).
    pub residual_se: f64,
}

impl JointFit {
    /// Pools every fit that has estimates and an invertible JᵀJ; `None` when none has, or the
    /// pooled df is 0.
    pub fn of<'a>(fits: impl IntoIterator<Item = &'a CurveFit>) -> Option<JointFit> {
        let (mut curves, mut rss, mut df) = (0, 0.0, 0);
        for f in fits {
            if let (Some(_), Some(r), Some(_)) = (f.params, f.rss, &f.covariance) {
                if f.status != Status::NotConverged && f.df > 0 {
                    curves += 1;
                    rss += r;
                    df += f.df;
                }
            }
        }
        (curves > 0 && df > 0).then(|| JointFit {
            curves,
            rss,
            df,
            residual_se: (rss / df as f64).sqrt(),
        })
    }
}

/// Potency of a curve relative to a reference curve from their [`JointFit`], drc's
/// `EDcomp(fit, c(50, 50), interval = "delta")` for the pair (reference, curve):
/// ratio = ED50(reference) / ED50(curve), > 1 when the curve is more potent. The delta-method
/// SE uses the joint covariance (each curve's (JᵀJ)⁻¹ scaled by the pooled s²), the 95 %
/// interval is ratio ∓ t(0.975, df) · SE on the joint fit's df, and `p_value` is the t-test of
/// ratio = 1 (EDcomp's test).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RelativePotency {
    pub ratio: f64,
    pub se: f64,
    pub lower: f64,
    pub upper: f64,
    /// Residual degrees of freedom of the joint fit.
    pub df: usize,
    pub p_value: f64,
}

/// ED_p and its gradient over the model's free parameters (in [`CurveFit::covariance`]'s
/// order).
fn ed_gradient(model: Model, params: &Params, p: f64) -> Option<(f64, DVector<f64>)> {
    let (kp, dkp_df) = model.ed_constant(p, params.f);
    let estimate = (params.e.ln() + kp / params.b).exp();
    if !estimate.is_finite() || params.b == 0.0 {
        return None;
    }
    let free = model.free();
    let grad = DVector::from_iterator(
        free.len(),
        free.iter().map(|&i| match i {
            B => -estimate * kp / (params.b * params.b),
            ETA => estimate,
            F => estimate * dkp_df / params.b,
            _ => 0.0,
        }),
    );
    Some((estimate, grad))
}

/// Variance of ln ED50 of `fit` with its covariance rescaled to the pooled variance `s2`.
fn ln_ec50_variance(fit: &CurveFit, s2: f64) -> Option<(f64, f64)> {
    let params = fit.params?;
    let cov = fit.covariance.as_ref()?;
    let own = fit.rss? / fit.df as f64;
    if own <= 0.0 || fit.df == 0 {
        return None;
    }
    let (ed50, g) = ed_gradient(fit.model, &params, 50.0)?;
    let var = (g.transpose() * cov * &g)[(0, 0)] * (s2 / own) / (ed50 * ed50);
    Some((ed50, var.max(0.0)))
}

/// See [`RelativePotency`]; `None` when either curve has no EC50 (status not ok or
/// extrapolated) or no covariance.
pub fn relative_potency(
    curve: &CurveFit,
    reference: &CurveFit,
    joint: &JointFit,
) -> Option<RelativePotency> {
    if !curve.status.has_ec50() || !reference.status.has_ec50() {
        return None;
    }
    let s2 = joint.rss / joint.df as f64;
    let (ed_c, var_c) = ln_ec50_variance(curve, s2)?;
    let (ed_r, var_r) = ln_ec50_variance(reference, s2)?;
    let ratio = ed_r / ed_c;
    // d(ED_r / ED_c) = ratio (d ln ED_r − d ln ED_c); the blocks are independent.
    let se = ratio * (var_c + var_r).sqrt();
    let t = t_quantile(joint.df)?;
    let p_value = if se > 0.0 {
        let dist = StudentsT::new(0.0, 1.0, joint.df as f64).ok()?;
        2.0 * (1.0 - dist.cdf(((ratio - 1.0) / se).abs()))
    } else {
        f64::NAN
    };
    Some(RelativePotency {
        ratio,
        se,
        lower: ratio - t * se,
        upper: ratio + t * se,
        df: joint.df,
        p_value,
    })
}

/// drc's parameter names, in the order of the full parameter vector.
const NAMES: [&str; 5] = ["b", "c", "d", "e", "f"];

/// A joint fit of several curves in which some parameters are shared, drc's
/// `drm(y ~ x, curveid = group, pmodels = ...)` (e.g. common lower and upper limits,
/// `pmodels = data.frame(group, 1, 1, group)`); see [`fit_joint`].
#[derive(Debug, Clone)]
pub struct JointCurves {
    pub model: Model,
    /// drc names of the shared parameters.
    pub shared: Vec<String>,
    /// Points in all groups; residual df = n − number of parameters.
    pub n: usize,
    pub df: usize,
    pub rss: f64,
    pub residual_se: f64,
    /// Per group, the fit as the joint model gives it: its parameters, SEs and EDs from the
    /// joint covariance, and the joint fit's RSS, df and residual SE.
    pub fits: Vec<CurveFit>,
    /// Joint covariance s² (JᵀJ)⁻¹ over the joint parameter vector.
    covariance: DMatrix<f64>,
    /// Per group, the joint-vector slot of each of (b, c, d, ln e, f) it estimates.
    slots: Vec<[Option<usize>; 5]>,
}

struct JointProblem<'a> {
    model: Model,
    data: &'a [(Vec<f64>, Vec<f64>)],
    slots: &'a [[Option<usize>; 5]],
    x: DVector<f64>,
}

impl JointProblem<'_> {
    fn theta(&self, g: usize) -> [f64; 5] {
        let mut t = self.model.defaults();
        for (i, slot) in self.slots[g].iter().enumerate() {
            if let Some(k) = slot {
                t[i] = self.x[*k];
            }
        }
        t
    }

    fn n(&self) -> usize {
        self.data.iter().map(|d| d.1.len()).sum()
    }

    fn jacobian_matrix(&self) -> DMatrix<f64> {
        let mut j = DMatrix::zeros(self.n(), self.x.len());
        let mut row = 0;
        for (g, (ln_x, _)) in self.data.iter().enumerate() {
            let theta = self.theta(g);
            for &lx in ln_x {
                let (_, grad) = eval(self.model, &theta, lx);
                for (i, slot) in self.slots[g].iter().enumerate() {
                    if let Some(k) = slot {
                        j[(row, *k)] += grad[i];
                    }
                }
                row += 1;
            }
        }
        j
    }

    fn residual_vector(&self) -> DVector<f64> {
        let mut r = Vec::with_capacity(self.n());
        for (g, (ln_x, y)) in self.data.iter().enumerate() {
            let theta = self.theta(g);
            for (&lx, &yv) in ln_x.iter().zip(y) {
                r.push(eval(self.model, &theta, lx).0 - yv);
            }
        }
        DVector::from_vec(r)
    }
}

impl LeastSquaresProblem<f64, Dyn, Dyn> for JointProblem<'_> {
    type ResidualStorage = Owned<f64, Dyn>;
    type JacobianStorage = Owned<f64, Dyn, Dyn>;
    type ParameterStorage = Owned<f64, Dyn>;

    fn set_params(&mut self, x: &DVector<f64>) {
        self.x.copy_from(x);
    }

    fn params(&self) -> DVector<f64> {
        self.x.clone()
    }

    fn residuals(&self) -> Option<DVector<f64>> {
        let r = self.residual_vector();
        r.iter().all(|v| v.is_finite()).then_some(r)
    }

    fn jacobian(&self) -> Option<DMatrix<f64>> {
        let j = self.jacobian_matrix();
        j.iter().all(|v| v.is_finite()).then_some(j)
    }
}

/// Fits `model` jointly to several groups' (dose, response) points with the parameters named
/// in `shared` (drc names: `b`, `c`, `d`, `e`, `f`) common to all groups and the others per
/// group, by least squares (Levenberg–Marquardt). Starts from the separate fits (`separate`,
/// one per group, e.g. from [`fit`]), with each shared parameter set to every group's estimate
/// in turn; the lowest RSS wins. Covariance s² (JᵀJ)⁻¹ with s² = RSS / (N − parameters).
///
/// Errors name the problem: an unknown or fixed parameter in `shared`, a group without a
/// separate fit to start from, or a joint fit that does not converge.
pub fn fit_joint(
    groups: &[(&[f64], &[f64])],
    separate: &[CurveFit],
    model: Model,
    shared: &[&str],
) -> Result<JointCurves> {
    let mut shared_idx = Vec::new();
    for name in shared {
        let i = NAMES.iter().position(|n| n == name).ok_or_else(|| {
            Error::Invalid(format!(
                "unknown parameter `{name}` (expected b, c, d, e or f)"
            ))
        })?;
        let i = if i == 3 { ETA } else { i };
        if !model.free().contains(&i) {
            return Err(Error::Invalid(format!(
                "parameter `{name}` is fixed in {}, so it cannot be shared",
                model.name()
            )));
        }
        shared_idx.push(i);
    }
    if groups.len() != separate.len() || groups.len() < 2 {
        return Err(Error::Invalid(
            "a joint fit needs two or more groups, each with its separate fit".into(),
        ));
    }
    let mut starts: Vec<[f64; 5]> = Vec::new();
    for (g, f) in separate.iter().enumerate() {
        let p = f
            .params
            .filter(|_| f.status != Status::NotConverged)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "group {}: its separate fit ({}: {}) gives no start for the joint fit",
                    g + 1,
                    f.status.as_str(),
                    f.reason
                ))
            })?;
        starts.push(p.full());
    }
    let mut slots = vec![[None; 5]; groups.len()];
    let mut k = 0;
    for &i in model.free() {
        if shared_idx.contains(&i) {
            for s in slots.iter_mut() {
                s[i] = Some(k);
            }
            k += 1;
        } else {
            for s in slots.iter_mut() {
                s[i] = Some(k);
                k += 1;
            }
        }
    }
    let mut data = Vec::with_capacity(groups.len());
    for (doses, responses) in groups {
        let (mut lx, mut y) = (Vec::new(), Vec::new());
        for (&d, &r) in doses.iter().zip(responses.iter()) {
            if r.is_finite() && d.is_finite() && d >= 0.0 {
                lx.push(d.ln());
                y.push(r);
            }
        }
        data.push((lx, y));
    }
    let n: usize = data.iter().map(|d| d.1.len()).sum();
    if n <= k {
        return Err(Error::Invalid(format!(
            "{n} points for {k} joint parameters"
        )));
    }
    let solver = LevenbergMarquardt::new().with_patience(200);
    let mut best: Option<(DVector<f64>, f64)> = None;
    for donor in 0..groups.len() {
        let mut x = DVector::zeros(k);
        for (g, s) in slots.iter().enumerate() {
            for (i, slot) in s.iter().enumerate() {
                if let Some(kk) = slot {
                    let from = if shared_idx.contains(&i) { donor } else { g };
                    x[*kk] = starts[from][i];
                }
            }
        }
        let problem = JointProblem {
            model,
            data: &data,
            slots: &slots,
            x,
        };
        let (problem, report) = solver.minimize(problem);
        let r = problem.residual_vector();
        let rss = r.dot(&r);
        if report.termination.was_successful()
            && rss.is_finite()
            && best.as_ref().is_none_or(|b| rss < b.1)
        {
            best = Some((problem.x.clone(), rss));
        }
    }
    let (x, rss) =
        best.ok_or_else(|| Error::Invalid("the joint fit did not converge from any start".into()))?;
    let df = n - k;
    let problem = JointProblem {
        model,
        data: &data,
        slots: &slots,
        x,
    };
    let j = problem.jacobian_matrix();
    let s2 = rss / df as f64;
    let covariance = (j.transpose() * &j)
        .try_inverse()
        .filter(|m| m.iter().all(|v| v.is_finite()))
        .map(|m| m * s2)
        .ok_or_else(|| {
            Error::Invalid("the joint parameters are not identifiable (JᵀJ is singular)".into())
        })?;
    let t = t_quantile(df);
    let mut fits = Vec::with_capacity(groups.len());
    for (g, f) in separate.iter().enumerate() {
        let theta = problem.theta(g);
        let params = Params {
            b: theta[B],
            c: theta[C],
            d: theta[D],
            e: theta[ETA].exp(),
            f: theta[F],
        };
        let se_of = |i: usize| slots[g][i].map(|kk| covariance[(kk, kk)].max(0.0).sqrt());
        let mut out = CurveFit::failed(
            model,
            f.status,
            f.reason.clone(),
            data[g].1.len(),
            f.n_dropped,
        );
        out.df = df;
        out.params = Some(params);
        out.rss = Some(rss);
        out.residual_se = Some(s2.sqrt());
        out.p_no_effect = f.p_no_effect;
        out.dose_range = f.dose_range;
        out.se = ParamErrors {
            b: se_of(B),
            c: se_of(C),
            d: se_of(D),
            e: se_of(ETA).map(|s| s * params.e),
            f: se_of(F),
        };
        let ed = |p: f64| -> Option<EffectiveDose> {
            let (estimate, v) = joint_ed_gradient(model, &params, &slots[g], k, p)?;
            let se = (v.transpose() * &covariance * &v)[(0, 0)].max(0.0).sqrt();
            let half = t.map(|t| t * se);
            Some(EffectiveDose {
                p,
                estimate,
                se: Some(se),
                lower: half.map(|h| estimate - h),
                upper: half.map(|h| estimate + h),
            })
        };
        if f.status.has_ec50() {
            out.ec50 = ed(50.0);
            out.ed10 = ed(10.0);
            out.ed90 = ed(90.0);
            out.hill_slope = Some(-params.b);
            out.log_ec50 = out.ec50.map(|e| e.estimate.log10());
        }
        fits.push(out);
    }
    Ok(JointCurves {
        model,
        shared: shared.iter().map(|s| s.to_string()).collect(),
        n,
        df,
        rss,
        residual_se: s2.sqrt(),
        fits,
        covariance,
        slots,
    })
}

/// ED_p of one group and its gradient over the joint parameter vector (length `k`).
fn joint_ed_gradient(
    model: Model,
    params: &Params,
    slots: &[Option<usize>; 5],
    k: usize,
    p: f64,
) -> Option<(f64, DVector<f64>)> {
    let (estimate, g) = ed_gradient(model, params, p)?;
    let mut v = DVector::zeros(k);
    for (pos, &i) in model.free().iter().enumerate() {
        if let Some(kk) = slots[i] {
            v[kk] += g[pos];
        }
    }
    Some((estimate, v))
}

impl JointCurves {
    /// drc's `EDcomp(fit, c(50, 50), interval = "delta")` for (reference, group) on this joint
    /// fit: ratio ED50(reference) / ED50(group) with the delta-method SE over the joint
    /// covariance (shared parameters make the two ED50s correlated). `None` when either group
    /// has no EC50.
    pub fn relative_potency(&self, group: usize, reference: usize) -> Option<RelativePotency> {
        let (fg, fr) = (self.fits.get(group)?, self.fits.get(reference)?);
        let (ec_g, ec_r) = (fg.ec50?, fr.ec50?);
        let k = self.covariance.nrows();
        let (ed_g, vg) = joint_ed_gradient(self.model, &fg.params?, &self.slots[group], k, 50.0)?;
        let (ed_r, vr) =
            joint_ed_gradient(self.model, &fr.params?, &self.slots[reference], k, 50.0)?;
        debug_assert!((ed_g - ec_g.estimate).abs() <= 1e-9 * ed_g.abs());
        debug_assert!((ed_r - ec_r.estimate).abs() <= 1e-9 * ed_r.abs());
        let ratio = ed_r / ed_g;
        let v = vr / ed_r - vg / ed_g;
        let se = ratio
            * (v.transpose() * &self.covariance * &v)[(0, 0)]
                .max(0.0)
                .sqrt();
        let t = t_quantile(self.df)?;
        let p_value = if se > 0.0 {
            let dist = StudentsT::new(0.0, 1.0, self.df as f64).ok()?;
            2.0 * (1.0 - dist.cdf(((ratio - 1.0) / se).abs()))
        } else {
            f64::NAN
        };
        Some(RelativePotency {
            ratio,
            se,
            lower: ratio - t * se,
            upper: ratio + t * se,
            df: self.df,
            p_value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synth(model: Model, p: Params, doses: &[f64]) -> Vec<f64> {
        doses.iter().map(|&x| predict(model, &p, x)).collect()
    }

    #[test]
    fn exact_data_recovers_parameters() {
        let doses: Vec<f64> = [0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0]
            .iter()
            .flat_map(|&d| [d, d])
            .collect();
        for (model, p) in [
            (
                Model::Ll4,
                Params {
                    b: 1.3,
                    c: 0.1,
                    d: 2.0,
                    e: 0.7,
                    f: 1.0,
                },
            ),
            (
                Model::W14,
                Params {
                    b: -0.9,
                    c: 5.0,
                    d: 1.0,
                    e: 2.0,
                    f: 1.0,
                },
            ),
            (
                Model::Ll2,
                Params {
                    b: 2.0,
                    c: 0.0,
                    d: 1.0,
                    e: 0.2,
                    f: 1.0,
                },
            ),
            (
                Model::Ll3,
                Params {
                    b: -1.5,
                    c: 0.0,
                    d: 3.0,
                    e: 0.5,
                    f: 1.0,
                },
            ),
            (
                Model::Ll5,
                Params {
                    b: 1.0,
                    c: 0.5,
                    d: 2.5,
                    e: 0.3,
                    f: 2.0,
                },
            ),
        ] {
            let mut y = synth(model, p, &doses);
            // A tiny deterministic wiggle so the residual variance is not zero.
            for (i, v) in y.iter_mut().enumerate() {
                *v += if i % 2 == 0 { 1e-6 } else { -1e-6 };
            }
            let fit = fit(&doses, &y, model);
            assert_eq!(fit.status, Status::Ok, "{}", fit.reason);
            let got = fit.params.unwrap();
            assert!((got.b - p.b).abs() < 1e-3, "{got:?}");
            assert!((got.e / p.e - 1.0).abs() < 1e-3, "{got:?}");
            // ED50 is the dose halfway between d and c, also for the asymmetric models.
            let ec50 = fit.ec50.unwrap().estimate;
            let mid = 0.5 * (got.c + got.d);
            let at = predict(model, &got, ec50);
            assert!(
                (at - mid).abs() < 1e-9 * (got.d - got.c).abs(),
                "{model}: {at} vs {mid}"
            );
        }
    }

    /// Deterministic noise in [-0.5, 0.5) (64-bit LCG), so the test needs no RNG crate.
    fn noise(state: &mut u64) -> f64 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    }

    /// Single-cell-like data: 6000 points, noise as large as the effect. The fit's RSS must not
    /// be above that of an independent search: the best point of a dense profiled grid (c, d
    /// solved exactly at each of 100 × 100 (b, ln e) points) refined by Levenberg–Marquardt.
    #[test]
    fn noisy_single_cell_data_reach_the_global_minimum() {
        let doses = [
            0.0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0,
        ];
        let truth = Params {
            b: 1.1,
            c: 0.2,
            d: 1.0,
            e: 0.5,
            f: 1.0,
        };
        let mut state = 7u64;
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for i in 0..6000 {
            let d = doses[i % doses.len()];
            let n = noise(&mut state) + noise(&mut state) + noise(&mut state);
            x.push(d);
            y.push(predict(Model::Ll4, &truth, d) * (1.0 + 0.8 * n).max(0.05));
        }
        let f = fit(&x, &y, Model::Ll4);
        assert_eq!(f.status, Status::Ok, "{}", f.reason);
        let rss = f.rss.unwrap();
        let ln_x: Vec<f64> = x.iter().map(|v| v.ln()).collect();
        let mut grid_min = f64::INFINITY;
        let mut grid_best = Model::Ll4.defaults();
        let mut h = vec![0.0; y.len()];
        for i in 0..100 {
            let b = -6.0 + 12.0 * (i as f64 + 0.5) / 100.0;
            for j in 0..100 {
                let eta = -9.0 + 15.0 * j as f64 / 99.0;
                let mut theta = Model::Ll4.defaults();
                theta[B] = b;
                theta[ETA] = eta;
                for (hv, &lx) in h.iter_mut().zip(&ln_x) {
                    *hv = eval(Model::Ll4, &[b, 0.0, 1.0, eta, 1.0], lx).0;
                }
                if solve_linear(Model::Ll4, &h, &y, &mut theta) {
                    let r: f64 = h
                        .iter()
                        .zip(&y)
                        .map(|(hv, yv)| (theta[C] + (theta[D] - theta[C]) * hv - yv).powi(2))
                        .sum();
                    if r < grid_min {
                        grid_min = r;
                        grid_best = theta;
                    }
                }
            }
        }
        let problem = Problem {
            model: Model::Ll4,
            ln_x: &ln_x,
            y: &y,
            theta: grid_best,
        };
        let (refined, _) = LevenbergMarquardt::new().minimize(problem);
        let independent = refined.rss().min(grid_min);
        assert!(
            rss <= independent * (1.0 + 1e-9),
            "fit RSS {rss} > independent search {independent}"
        );
        let p = f.params.unwrap();
        assert!((p.e / truth.e - 1.0).abs() < 0.3, "{p:?}");
    }

    /// With nothing shared, the joint Levenberg–Marquardt fit over all groups' parameters ends
    /// where the separate fits did, and its potency (joint covariance) equals the one from the
    /// separate fits with the pooled variance ([`JointFit`]).
    #[test]
    fn joint_fit_without_shared_parameters_matches_the_pooled_shortcut() {
        let doses: Vec<f64> = [0.0, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0]
            .iter()
            .flat_map(|&d| [d, d, d])
            .collect();
        let mut state = 11u64;
        let mut groups = Vec::new();
        for (e, b, noise_sd) in [(0.8, 1.4, 0.05), (3.0, 2.2, 0.12), (0.3, 0.9, 0.08)] {
            let p = Params {
                b,
                c: 0.2,
                d: 1.5,
                e,
                f: 1.0,
            };
            let y: Vec<f64> = doses
                .iter()
                .map(|&x| predict(Model::Ll4, &p, x) + noise_sd * noise(&mut state))
                .collect();
            groups.push(y);
        }
        let separate: Vec<CurveFit> = groups.iter().map(|y| fit(&doses, y, Model::Ll4)).collect();
        let data: Vec<(&[f64], &[f64])> = groups.iter().map(|y| (&doses[..], &y[..])).collect();
        let joint = fit_joint(&data, &separate, Model::Ll4, &[]).unwrap();
        let pooled = JointFit::of(&separate).unwrap();
        assert_eq!(joint.df, pooled.df);
        assert!((joint.rss / pooled.rss - 1.0).abs() < 1e-9);
        for (j, s) in joint.fits.iter().zip(&separate) {
            let (pj, ps) = (j.params.unwrap(), s.params.unwrap());
            assert!((pj.e / ps.e - 1.0).abs() < 1e-6 && (pj.b / ps.b - 1.0).abs() < 1e-6);
        }
        for g in 1..3 {
            let a = joint.relative_potency(g, 0).unwrap();
            let b = relative_potency(&separate[g], &separate[0], &pooled).unwrap();
            assert!((a.ratio / b.ratio - 1.0).abs() < 1e-6, "{a:?} {b:?}");
            assert!((a.se / b.se - 1.0).abs() < 1e-4, "{a:?} {b:?}");
            assert_eq!(a.df, b.df);
        }
        // Sharing a parameter changes the fit and lowers the parameter count.
        let shared = fit_joint(&data, &separate, Model::Ll4, &["c", "d"]).unwrap();
        assert_eq!(shared.df, joint.df + 4);
        assert!(shared.rss >= joint.rss);
        assert!(fit_joint(&data, &separate, Model::Ll4, &["z"]).is_err());
        assert!(fit_joint(&data[..1], &separate[..1], Model::Ll4, &["c"]).is_err());
    }

    #[test]
    fn flat_data_has_no_ec50() {
        let doses: Vec<f64> = (0..24).map(|i| [0.0, 0.1, 1.0, 10.0][i % 4]).collect();
        let y: Vec<f64> = (0..24)
            .map(|i| 1.0 + 0.1 * ((i * 7 % 5) as f64 - 2.0))
            .collect();
        let fit = fit(&doses, &y, Model::Ll4);
        assert_ne!(fit.status, Status::Ok);
        assert!(fit.ec50.is_none());
        assert!(!fit.reason.is_empty());
    }

    #[test]
    fn bad_input_gives_a_status() {
        let f = fit(&[0.0, -1.0, 1.0], &[1.0, 2.0, 3.0], Model::Ll4);
        assert_eq!(f.status, Status::InvalidInput);
        let f = fit(&[0.0, 1.0, 2.0], &[1.0, 2.0, 3.0], Model::Ll4);
        assert_eq!(f.status, Status::TooFewPoints);
        let f = fit(&[0.0, 1.0, 2.0, 3.0, 4.0], &[f64::NAN; 5], Model::Ll4);
        assert_eq!(f.status, Status::TooFewPoints);
        assert_eq!(f.n_dropped, 5);
        assert!("ll9".parse::<Model>().is_err());
        assert_eq!("W1.4".parse::<Model>().unwrap(), Model::W14);
    }
}
