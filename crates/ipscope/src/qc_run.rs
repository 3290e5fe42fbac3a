//! Image QC of every field in `run`: CellProfiler MeasureImageQuality measures per channel in
//! the Image table, a flag with its reasons, and the switch that leaves flagged fields out of
//! the Wells statistics.
//!
//! Which measures flag a field: saturation in any channel; low content, focus and debris on
//! the nuclear channel only (a marker channel may rightly be almost empty in a negative well,
//! and transmitted light has no foreground to threshold).

use ipscope_core::assays::quality::{assess, measure_quality, ImageQuality, QualityParams};
use ipscope_image::{with_dyn_image, DynImage, Pixel};
use ipscope_table::TableBuilder;
use serde::{Deserialize, Serialize};

use crate::channels::{Channel, Role};

/// `[qc]` of the run configuration.
///
/// ```toml
/// [qc]
/// enabled = true                 # false: no image QC (null ImageQuality_*, nothing flagged)
/// exclude_flagged = true         # leave flagged fields out of the Wells statistics
/// max_percent_saturated = 1.0    # percent of pixels at the sample type's maximum
/// min_content_fraction = 0.002   # nuclear-channel foreground (Otsu) below this: low_content
/// min_focus_score = 0.0          # nuclear-channel focus score below this: out_of_focus
/// # min_power_log_log_slope = -1.5  # unset: not used
/// debris_area = 20000
/// max_debris_fraction = 0.05
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QcConfig {
    /// Measure image quality of every field (default true). `false` skips it, e.g. to time
    /// the segmentation and measurement job alone: the `ImageQuality_*` columns are null and
    /// no field is flagged.
    pub enabled: bool,
    /// Leave flagged fields out of the Wells counts and statistics (default true). They stay
    /// in the Image and object tables.
    pub exclude_flagged: bool,
    pub max_percent_saturated: f64,
    pub min_content_fraction: f64,
    pub min_focus_score: f64,
    /// Unset (the default): the slope does not flag.
    pub min_power_log_log_slope: Option<f64>,
    pub debris_area: u64,
    pub max_debris_fraction: f64,
}

impl Default for QcConfig {
    fn default() -> Self {
        let p = QualityParams::default();
        QcConfig {
            enabled: true,
            exclude_flagged: true,
            max_percent_saturated: p.max_percent_saturated,
            min_content_fraction: p.min_content_fraction,
            min_focus_score: p.min_focus_score,
            min_power_log_log_slope: None,
            debris_area: p.debris_area,
            max_debris_fraction: p.max_debris_fraction,
        }
    }
}

impl QcConfig {
    /// The thresholds as the core's [`QualityParams`].
    pub fn params(&self) -> QualityParams {
        QualityParams {
            max_percent_saturated: self.max_percent_saturated,
            min_content_fraction: self.min_content_fraction,
            min_focus_score: self.min_focus_score,
            min_power_log_log_slope: self.min_power_log_log_slope.unwrap_or(f64::NEG_INFINITY),
            debris_area: self.debris_area,
            max_debris_fraction: self.max_debris_fraction,
        }
    }
}

/// The short key of one of [`assess`]'s reasons: `saturated`, `low_content`, `out_of_focus`,
/// `debris` (or `flagged` for one it does not know).
pub fn reason_key(reason: &str) -> &'static str {
    if reason.starts_with("saturated") {
        "saturated"
    } else if reason.starts_with("low content") {
        "low_content"
    } else if reason.starts_with("out of focus") {
        "out_of_focus"
    } else if reason.starts_with("debris") {
        "debris"
    } else {
        "flagged"
    }
}

/// One channel's measures as stored with a field (NaN as `None`, so the record survives JSON):
/// focus score, power log-log slope, percent maximal, content fraction, debris fraction.
pub type QualityRow = [Option<f64>; 5];

fn row_of(q: &ImageQuality) -> QualityRow {
    [
        q.focus_score,
        q.power_log_log_slope,
        q.percent_saturated,
        q.content_fraction,
        q.debris_fraction,
    ]
    .map(|v| v.is_finite().then_some(v))
}

/// Quality of every channel of one field (in channel order) and the field's reason keys
/// (sorted, without repeats; empty when it passes).
pub fn measure_field(
    images: &[DynImage],
    channels: &[Channel],
    nuclear: usize,
    config: &QcConfig,
) -> (Vec<QualityRow>, Vec<String>) {
    let params = config.params();
    let mut keys: Vec<String> = Vec::new();
    let mut qualities = Vec::with_capacity(images.len());
    for (i, img) in images.iter().enumerate() {
        // On CellProfiler's 0..1 scale, so the focus score is comparable with its values and
        // the type's maximum is 1.
        let scale = img.sample_type().scale() as f32;
        // One pass (not `to_f32` and then a division), the same values.
        let scaled = with_dyn_image!(img, i => i.map(|v| v.to_f32() / scale));
        let q = measure_quality(scaled.view(), 1.0, &params);
        let reasons = assess(&q, &params);
        let transmitted = channels.get(i).is_some_and(|c| c.role == Role::Transmitted);
        for r in &reasons {
            let key = reason_key(r);
            if (i == nuclear && !transmitted) || key == "saturated" {
                keys.push(key.to_string());
            }
        }
        qualities.push(row_of(&q));
    }
    keys.sort_unstable();
    keys.dedup();
    (qualities, keys)
}

/// Adds the Image-table QC columns: per channel `ImageQuality_FocusScore_<ch>`,
/// `ImageQuality_PowerLogLogSlope_<ch>`, `ImageQuality_PercentMaximal_<ch>` (CellProfiler's
/// names), `ImageQuality_ContentFraction_<ch>` and `ImageQuality_DebrisFraction_<ch>`
/// (ipscope's), then `Metadata_QCFlag` and `Metadata_QCReason`. `quality[row]` is empty for a
/// field that failed (its values are null).
pub fn add_image_columns(
    b: &mut TableBuilder,
    channels: &[Channel],
    quality: &[&[QualityRow]],
    reasons: &[&[String]],
) {
    let measures: [(&str, &str); 5] = [
        ("FocusScore", "CellProfiler MeasureImageQuality FocusScore: normalised variance Σ(x−μ)²/(N·μ) on the 0..1 scale; higher is sharper"),
        ("PowerLogLogSlope", "CellProfiler MeasureImageQuality PowerLogLogSlope: slope of log power summed per frequency radius against log radius, radii 1 to min(H, W)/8 − 2 (centrosome's radial power spectrum, whole image); more negative is blurrier"),
        ("PercentMaximal", "Percent of pixels at the sample type's maximum (saturated), as CellProfiler's PercentMaximal for a saturated image"),
        ("ContentFraction", "Fraction of pixels above the channel's Otsu threshold (ipscope)"),
        ("DebrisFraction", "Fraction of pixels in bright objects larger than [qc] debris_area (ipscope)"),
    ];
    for (ci, c) in channels.iter().enumerate() {
        for (k, (name, doc)) in measures.iter().enumerate() {
            b.opt_f64(
                &format!("ImageQuality_{name}_{}", c.name),
                quality
                    .iter()
                    .map(|q| q.get(ci).and_then(|r| r[k]))
                    .collect(),
            )
            .doc(doc);
        }
    }
    b.bool(
        "Metadata_QCFlag",
        reasons.iter().map(|r| !r.is_empty()).collect(),
    )
    .doc("The field failed image QC ([qc] thresholds; saturation in any channel, low content, focus or debris in the nuclear channel)")
    .str(
        "Metadata_QCReason",
        reasons.iter().map(|r| r.join(";")).collect(),
    )
    .doc("Image-QC reason keys joined by ';' (saturated, low_content, out_of_focus, debris); empty when not flagged");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_keys_cover_assess() {
        let p = QualityParams {
            min_focus_score: 10.0,
            min_power_log_log_slope: 0.0,
            ..QualityParams::default()
        };
        let q = ImageQuality {
            focus_score: 0.0,
            power_log_log_slope: -3.0,
            percent_saturated: 50.0,
            content_fraction: 0.0,
            debris_fraction: 1.0,
        };
        let mut keys: Vec<&str> = assess(&q, &p).iter().map(|r| reason_key(r)).collect();
        keys.dedup();
        assert_eq!(keys, ["saturated", "low_content", "out_of_focus", "debris"]);
    }

    #[test]
    fn default_config_round_trips_through_json() {
        let c = QcConfig::default();
        let back: QcConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        assert_eq!(c.params(), QualityParams::default());
    }
}
