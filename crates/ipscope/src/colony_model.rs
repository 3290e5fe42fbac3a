//! A trainable colony classifier: multinomial logistic regression (smartcore) on standardised
//! colony features, the learned alternative to the rule-based grades of
//! [`ipscope_core::assays::colonies::grade_colony`].
//!
//! `ipscope train --table Colonies.parquet --labels labels.csv -o model.json` fits one;
//! [`ColonyModel::load`] reads it back and [`ColonyModel::predict`] grades a colony. The
//! model file is JSON: the feature names (the `Colonies` table's column names), the mean and
//! standard deviation used to standardise each feature, the grade of each class and the
//! smartcore model itself. A feature that is NaN for a colony (no intensity image, no
//! nuclei) takes the training mean, i.e. 0 after standardising.
//!
//! It lives in the facade rather than in `ipscope-core` so that core keeps no dependency
//! beyond the image crate, serde and thiserror; smartcore (with num, rand, typetag) is only
//! built where the pipeline is.

use std::path::Path;

use ipscope_core::assays::colonies::{ColonyFeatures, Grade};
use serde::{Deserialize, Serialize};
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linear::logistic_regression::{LogisticRegression, LogisticRegressionParameters};

use crate::{Error, Result};

/// Identifies a model file.
pub const FORMAT: &str = "ipscope-colony-model";

/// How a feature is read from a measured colony.
pub type FeatureFn = fn(&ColonyFeatures) -> f64;

/// The features a model may use, as `Colonies` table columns, with their value in
/// [`ColonyFeatures`].
pub const FEATURES: [(&str, FeatureFn); 11] = [
    ("Colonies_AreaShape_Area", |f| f.area as f64),
    ("Colonies_AreaShape_FormFactor", |f| f.circularity),
    ("Colonies_AreaShape_Solidity", |f| f.solidity),
    ("Colonies_AreaShape_ConvexityDeficiency", |f| {
        f.convexity_deficiency
    }),
    ("Colonies_Children_Nuclei_Count", |f| f.nuclei as f64),
    ("Colonies_Density_NucleiPer10000Pixels", |f| {
        f.nuclear_density
    }),
    ("Colonies_Packing_NuclearFraction", |f| f.packing),
    ("Colonies_Nuclei_MeanArea", |f| f.nuclear_area_mean),
    ("Colonies_Nuclei_AreaCV", |f| f.nuclear_area_cv),
    ("Colonies_Texture_EdgeSharpness", |f| f.edge_sharpness),
    ("Colonies_Texture_LocalStd", |f| f.texture),
];

/// The default feature set: every name in [`FEATURES`].
pub fn default_features() -> Vec<String> {
    FEATURES.iter().map(|(n, _)| n.to_string()).collect()
}

type Lr = LogisticRegression<f64, u32, DenseMatrix<f64>, Vec<u32>>;

/// A trained colony classifier (see the module docs).
#[derive(Debug, Serialize, Deserialize)]
pub struct ColonyModel {
    pub format: String,
    pub version: u32,
    /// Feature (column) names, in the order of the model's inputs.
    pub features: Vec<String>,
    /// Training mean of each feature.
    pub mean: Vec<f64>,
    /// Training standard deviation of each feature (1 where it was 0).
    pub scale: Vec<f64>,
    /// Grade of each class id (`undifferentiated`, `differentiating`, `too_small`).
    pub classes: Vec<String>,
    /// Cross-validated accuracy measured when training, with the number of folds.
    pub cv_accuracy: Option<f64>,
    pub cv_folds: Option<usize>,
    /// Training rows.
    pub n_train: usize,
    /// L2 penalty of the logistic regression.
    pub alpha: f64,
    model: Lr,
}

/// Result of [`ColonyModel::cross_validate`].
#[derive(Debug, Clone, PartialEq)]
pub struct CvReport {
    pub folds: usize,
    pub correct: usize,
    pub total: usize,
    pub accuracy: f64,
}

fn grade_id(g: Grade) -> u32 {
    match g {
        Grade::Undifferentiated => 0,
        Grade::Differentiating => 1,
        Grade::TooSmall => 2,
    }
}

const GRADE_NAMES: [Grade; 3] = [
    Grade::Undifferentiated,
    Grade::Differentiating,
    Grade::TooSmall,
];

/// Default L2 penalty: small, only to keep separable classes from diverging.
pub const DEFAULT_ALPHA: f64 = 0.1;

fn standardise(rows: &[Vec<f64>], k: usize) -> (Vec<f64>, Vec<f64>) {
    let mut mean = vec![0.0; k];
    let mut n = vec![0usize; k];
    for r in rows {
        for j in 0..k {
            if r[j].is_finite() {
                mean[j] += r[j];
                n[j] += 1;
            }
        }
    }
    for j in 0..k {
        mean[j] = if n[j] > 0 { mean[j] / n[j] as f64 } else { 0.0 };
    }
    let mut var = vec![0.0; k];
    for r in rows {
        for j in 0..k {
            if r[j].is_finite() {
                var[j] += (r[j] - mean[j]).powi(2);
            }
        }
    }
    let scale = (0..k)
        .map(|j| {
            let s = if n[j] > 1 {
                (var[j] / n[j] as f64).sqrt()
            } else {
                0.0
            };
            if s > 0.0 && s.is_finite() {
                s
            } else {
                1.0
            }
        })
        .collect();
    (mean, scale)
}

fn scaled_row(r: &[f64], mean: &[f64], scale: &[f64]) -> Vec<f64> {
    r.iter()
        .zip(mean.iter().zip(scale))
        .map(|(&v, (&m, &s))| if v.is_finite() { (v - m) / s } else { 0.0 })
        .collect()
}

fn fit_lr(rows: &[Vec<f64>], ids: &[u32], alpha: f64) -> Result<Lr> {
    let x = DenseMatrix::from_2d_vec(&rows.to_vec())
        .map_err(|e| Error::Invalid(format!("colony model: {e}")))?;
    let y = ids.to_vec();
    LogisticRegression::fit(
        &x,
        &y,
        LogisticRegressionParameters::default().with_alpha(alpha),
    )
    .map_err(|e| Error::Invalid(format!("colony model: fitting failed: {e}")))
}

impl ColonyModel {
    /// Trains on `rows` (one per colony, values in the order of `features`) labelled with
    /// `grades`. Needs at least two grades among the labels.
    pub fn train(features: &[String], rows: &[Vec<f64>], grades: &[Grade]) -> Result<Self> {
        let k = features.len();
        check_features(features)?;
        if rows.len() != grades.len() {
            return Err(Error::Invalid(format!(
                "colony model: {} feature rows but {} labels",
                rows.len(),
                grades.len()
            )));
        }
        if let Some(r) = rows.iter().find(|r| r.len() != k) {
            return Err(Error::Invalid(format!(
                "colony model: a row has {} values for {k} features",
                r.len()
            )));
        }
        let ids: Vec<u32> = grades.iter().map(|&g| grade_id(g)).collect();
        let mut distinct = ids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() < 2 {
            return Err(Error::Invalid(format!(
                "colony model: the labels hold {} grade(s); at least two are needed to train",
                distinct.len()
            )));
        }
        let (mean, scale) = standardise(rows, k);
        let x: Vec<Vec<f64>> = rows.iter().map(|r| scaled_row(r, &mean, &scale)).collect();
        let model = fit_lr(&x, &ids, DEFAULT_ALPHA)?;
        Ok(ColonyModel {
            format: FORMAT.to_string(),
            version: 1,
            features: features.to_vec(),
            mean,
            scale,
            classes: GRADE_NAMES.iter().map(|g| g.as_str().to_string()).collect(),
            cv_accuracy: None,
            cv_folds: None,
            n_train: rows.len(),
            alpha: DEFAULT_ALPHA,
            model,
        })
    }

    /// Trains on measured colonies with the default features.
    pub fn train_features(colonies: &[ColonyFeatures], grades: &[Grade]) -> Result<Self> {
        let names = default_features();
        let rows: Vec<Vec<f64>> = colonies.iter().map(feature_row).collect();
        Self::train(&names, &rows, grades)
    }

    /// k-fold cross-validated accuracy: row `i` is in fold `rank % k`, where `rank` is its
    /// position among the rows of its grade (stratified, deterministic).
    pub fn cross_validate(
        features: &[String],
        rows: &[Vec<f64>],
        grades: &[Grade],
        folds: usize,
    ) -> Result<CvReport> {
        if folds < 2 || folds > rows.len() {
            return Err(Error::Invalid(format!(
                "colony model: {folds} folds for {} rows (need 2..=rows)",
                rows.len()
            )));
        }
        let mut seen = [0usize; 3];
        let fold: Vec<usize> = grades
            .iter()
            .map(|&g| {
                let i = grade_id(g) as usize;
                seen[i] += 1;
                (seen[i] - 1) % folds
            })
            .collect();
        let mut correct = 0;
        let mut total = 0;
        for f in 0..folds {
            let (mut tr, mut tg, mut te, mut eg) = (vec![], vec![], vec![], vec![]);
            for (i, r) in rows.iter().enumerate() {
                if fold[i] == f {
                    te.push(r.clone());
                    eg.push(grades[i]);
                } else {
                    tr.push(r.clone());
                    tg.push(grades[i]);
                }
            }
            if te.is_empty() {
                continue;
            }
            let m = Self::train(features, &tr, &tg)?;
            for (r, g) in te.iter().zip(&eg) {
                total += 1;
                if m.predict_row(r)? == *g {
                    correct += 1;
                }
            }
        }
        Ok(CvReport {
            folds,
            correct,
            total,
            accuracy: correct as f64 / total.max(1) as f64,
        })
    }

    /// Reads a model written by [`ColonyModel::save`]; a wrong format, an unknown feature
    /// name or inconsistent sizes are errors naming the file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let m: ColonyModel = serde_json::from_str(&text)
            .map_err(|e| Error::Invalid(format!("{}: not a colony model: {e}", path.display())))?;
        if m.format != FORMAT {
            return Err(Error::Invalid(format!(
                "{}: format {:?}, expected {FORMAT:?}",
                path.display(),
                m.format
            )));
        }
        check_features(&m.features)
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        let k = m.features.len();
        if m.mean.len() != k || m.scale.len() != k {
            return Err(Error::Invalid(format!(
                "{}: {k} features but {} means and {} scales",
                path.display(),
                m.mean.len(),
                m.scale.len()
            )));
        }
        if m.classes.len() != 3
            || m.classes
                .iter()
                .zip(GRADE_NAMES)
                .any(|(c, g)| Grade::parse(c) != Some(g))
        {
            return Err(Error::Invalid(format!(
                "{}: classes {:?}, expected {:?}",
                path.display(),
                m.classes,
                GRADE_NAMES.map(|g| g.as_str())
            )));
        }
        Ok(m)
    }

    /// Writes the model as JSON.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string(self)
            .map_err(|e| Error::Invalid(format!("colony model: {e}")))?;
        std::fs::write(path, text).map_err(|e| Error::io(path, e))
    }

    /// Grade of one row of feature values (in the order of `features`).
    pub fn predict_row(&self, row: &[f64]) -> Result<Grade> {
        if row.len() != self.features.len() {
            return Err(Error::Invalid(format!(
                "colony model: {} values for {} features",
                row.len(),
                self.features.len()
            )));
        }
        let x = DenseMatrix::from_2d_vec(&vec![scaled_row(row, &self.mean, &self.scale)])
            .map_err(|e| Error::Invalid(format!("colony model: {e}")))?;
        let y = self
            .model
            .predict(&x)
            .map_err(|e| Error::Invalid(format!("colony model: prediction failed: {e}")))?;
        let id = y.first().copied().unwrap_or(0) as usize;
        Ok(GRADE_NAMES
            .get(id)
            .copied()
            .unwrap_or(Grade::Differentiating))
    }

    /// Grade of one measured colony.
    pub fn predict(&self, f: &ColonyFeatures) -> Grade {
        let row: Vec<f64> = self
            .features
            .iter()
            .map(|n| feature_value(f, n).unwrap_or(f64::NAN))
            .collect();
        // The row has the model's width and the features were checked at load/train.
        self.predict_row(&row).unwrap_or(Grade::Differentiating)
    }
}

impl crate::colony_run::ColonyGrader for ColonyModel {
    fn grade(&self, features: &ColonyFeatures) -> Grade {
        self.predict(features)
    }
}

/// The value of the feature (column) `name` of a colony; `None` for an unknown name.
pub fn feature_value(f: &ColonyFeatures, name: &str) -> Option<f64> {
    FEATURES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, get)| get(f))
}

/// A colony's values of the default features.
pub fn feature_row(f: &ColonyFeatures) -> Vec<f64> {
    FEATURES.iter().map(|(_, get)| get(f)).collect()
}

fn check_features(names: &[String]) -> Result<()> {
    if names.is_empty() {
        return Err(Error::Invalid("colony model: no features".into()));
    }
    for n in names {
        if !FEATURES.iter().any(|(k, _)| k == n) {
            return Err(Error::Invalid(format!(
                "colony model: unknown feature {n:?} (known: {})",
                default_features().join(", ")
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_feature_is_named() {
        let e = ColonyModel::train(
            &["Colonies_Bogus".to_string()],
            &[vec![1.0]],
            &[Grade::TooSmall],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("Colonies_Bogus"), "{e}");
    }
}
