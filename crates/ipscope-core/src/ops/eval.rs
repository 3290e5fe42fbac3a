//! Instance-segmentation scores against ground truth: precision, recall and F1 at an IoU
//! threshold, and the Data Science Bowl 2018 average precision over IoU 0.50:0.95.
//!
//! A predicted object matches a true object when their intersection over union is above
//! the threshold (the DSB2018 rule; StarDist's `matching` uses ≥ with an optimal
//! assignment, which differs only for pairs at exactly the threshold). For thresholds ≥ 0.5
//! a match is then necessarily one-to-one (two objects cannot both overlap a third by more
//! than half of their union), so no assignment step is needed. Per threshold τ: TP = matched pairs, FP = unmatched predictions, FN = unmatched
//! truths; precision TP/(TP+FP), recall TP/(TP+FN), F1 = 2TP/(2TP+FP+FN) and the DSB2018
//! "average precision" TP/(TP+FP+FN), averaged over τ = 0.50, 0.55, …, 0.95.
//!
//! References: J. C. Caicedo et al., "Nucleus segmentation across imaging experiments: the
//! 2018 Data Science Bowl", Nat. Methods 16 (2019) 1247–1253; U. Schmidt et al., "Cell
//! detection with star-convex polygons", MICCAI 2018.

use std::collections::HashMap;

use ipscope_image::ImageView;

use crate::{ensure_shape, Error};

/// The IoU thresholds of the DSB2018 score: 0.50, 0.55, …, 0.95.
pub const DSB_THRESHOLDS: [f64; 10] = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95];

/// Match counts at one IoU threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MatchCounts {
    /// Predicted objects matched to a true object.
    pub tp: u64,
    /// Predicted objects without a match.
    pub fp: u64,
    /// True objects without a match.
    pub fn_: u64,
}

impl MatchCounts {
    /// TP / (TP + FP); 0 when nothing was predicted.
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
    /// TP / (TP + FN); 0 when there is no true object.
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
    /// 2TP / (2TP + FP + FN); 1 when both are empty.
    pub fn f1(&self) -> f64 {
        if self.tp + self.fp + self.fn_ == 0 {
            return 1.0;
        }
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }
    /// The DSB2018 score TP / (TP + FP + FN); 1 when both are empty.
    pub fn dsb_precision(&self) -> f64 {
        if self.tp + self.fp + self.fn_ == 0 {
            return 1.0;
        }
        ratio(self.tp, self.tp + self.fp + self.fn_)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// The comparison of one predicted label image with its truth.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageMatch {
    /// Number of true objects (distinct non-zero labels).
    pub n_true: u64,
    /// Number of predicted objects.
    pub n_pred: u64,
    /// Counts at each of [`DSB_THRESHOLDS`].
    pub counts: [MatchCounts; 10],
    /// Sum of the IoUs of the pairs matched at 0.5 (for the mean matched IoU).
    pub matched_iou_sum: f64,
}

/// Scores pooled over several images (counts summed before the ratios).
#[derive(Debug, Clone, PartialEq)]
pub struct EvalSummary {
    /// Images compared.
    pub images: usize,
    /// True objects in all images.
    pub n_true: u64,
    /// Predicted objects in all images.
    pub n_pred: u64,
    /// Counts at IoU 0.5.
    pub at_50: MatchCounts,
    /// Precision at IoU 0.5.
    pub precision: f64,
    /// Recall at IoU 0.5.
    pub recall: f64,
    /// F1 at IoU 0.5.
    pub f1: f64,
    /// Mean over τ ∈ 0.50:0.95 of the pooled TP / (TP + FP + FN).
    pub ap_dsb: f64,
    /// Mean IoU of the pairs matched at 0.5 (0 when none).
    pub mean_matched_iou: f64,
}

/// Compares a predicted label image with the true one (any label values; 0 = background).
///
/// Errors when the two images differ in size.
pub fn match_labels(truth: ImageView<u32>, pred: ImageView<u32>) -> Result<ImageMatch, Error> {
    ensure_shape(
        "predicted labels",
        (truth.width(), truth.height()),
        (pred.width(), pred.height()),
    )?;
    let mut area_t: HashMap<u32, u64> = HashMap::new();
    let mut area_p: HashMap<u32, u64> = HashMap::new();
    let mut inter: HashMap<(u32, u32), u64> = HashMap::new();
    for (rt, rp) in truth.rows().zip(pred.rows()) {
        for (&t, &p) in rt.iter().zip(rp) {
            if t != 0 {
                *area_t.entry(t).or_default() += 1;
            }
            if p != 0 {
                *area_p.entry(p).or_default() += 1;
            }
            if t != 0 && p != 0 {
                *inter.entry((t, p)).or_default() += 1;
            }
        }
    }
    // Pairs sorted so the sums below do not depend on hash order.
    let mut ious: Vec<f64> = inter
        .iter()
        .map(|(&(t, p), &i)| {
            let u = area_t[&t] + area_p[&p] - i;
            i as f64 / u as f64
        })
        .collect();
    ious.sort_by(f64::total_cmp);
    let (n_true, n_pred) = (area_t.len() as u64, area_p.len() as u64);
    let mut counts = [MatchCounts::default(); 10];
    for (c, &tau) in counts.iter_mut().zip(&DSB_THRESHOLDS) {
        let tp = ious.iter().filter(|&&v| v > tau).count() as u64;
        *c = MatchCounts {
            tp,
            fp: n_pred - tp,
            fn_: n_true - tp,
        };
    }
    let matched_iou_sum = ious.iter().filter(|&&v| v > 0.5).sum();
    Ok(ImageMatch {
        n_true,
        n_pred,
        counts,
        matched_iou_sum,
    })
}

/// Pools the matches of several images: counts are summed, then the ratios taken.
pub fn summarize(matches: &[ImageMatch]) -> EvalSummary {
    let mut counts = [MatchCounts::default(); 10];
    let (mut n_true, mut n_pred, mut iou_sum) = (0, 0, 0.0);
    for m in matches {
        n_true += m.n_true;
        n_pred += m.n_pred;
        iou_sum += m.matched_iou_sum;
        for (c, mc) in counts.iter_mut().zip(&m.counts) {
            c.tp += mc.tp;
            c.fp += mc.fp;
            c.fn_ += mc.fn_;
        }
    }
    let at_50 = counts[0];
    let ap_dsb = counts.iter().map(MatchCounts::dsb_precision).sum::<f64>() / counts.len() as f64;
    EvalSummary {
        images: matches.len(),
        n_true,
        n_pred,
        at_50,
        precision: at_50.precision(),
        recall: at_50.recall(),
        f1: at_50.f1(),
        ap_dsb,
        mean_matched_iou: if at_50.tp == 0 {
            0.0
        } else {
            iou_sum / at_50.tp as f64
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipscope_image::Image;

    fn img(w: usize, rows: &[&[u32]]) -> Image<u32> {
        Image::from_vec(w, rows.len(), rows.concat()).unwrap()
    }

    #[test]
    fn identical_labels_score_one_whatever_the_numbering() {
        let t = img(4, &[&[1, 1, 0, 7], &[1, 1, 0, 7], &[0, 0, 0, 0]]);
        let p = img(4, &[&[5, 5, 0, 2], &[5, 5, 0, 2], &[0, 0, 0, 0]]);
        let s = summarize(&[match_labels(t.view(), p.view()).unwrap()]);
        assert_eq!((s.n_true, s.n_pred), (2, 2));
        assert_eq!(
            (s.precision, s.recall, s.f1, s.ap_dsb),
            (1.0, 1.0, 1.0, 1.0)
        );
        assert_eq!(s.mean_matched_iou, 1.0);
    }

    #[test]
    fn iou_thresholds_count_as_dsb2018() {
        // Truth: one 10-pixel object. Prediction covers 6 of them plus nothing else: IoU 0.6.
        let t = img(10, &[&[1; 10]]);
        let p = img(10, &[&[3, 3, 3, 3, 3, 3, 0, 0, 0, 0]]);
        let m = match_labels(t.view(), p.view()).unwrap();
        assert_eq!(
            m.counts[0],
            MatchCounts {
                tp: 1,
                fp: 0,
                fn_: 0
            }
        ); // 0.50
        assert_eq!(m.counts[1].tp, 1); // 0.55
        assert_eq!(
            m.counts[2],
            MatchCounts {
                tp: 0,
                fp: 1,
                fn_: 1
            }
        ); // 0.60: not above
        let s = summarize(&[m]);
        assert!((s.ap_dsb - 0.2).abs() < 1e-12);
        assert!((s.mean_matched_iou - 0.6).abs() < 1e-12);
    }

    #[test]
    fn split_and_merge_errors_and_pooling() {
        // A merge: one prediction over two equal truths has IoU 0.5 with each: no match.
        let t = img(4, &[&[1, 1, 2, 2]]);
        let p = img(4, &[&[9, 9, 9, 9]]);
        let m = match_labels(t.view(), p.view()).unwrap();
        assert_eq!(
            m.counts[0],
            MatchCounts {
                tp: 0,
                fp: 1,
                fn_: 2
            }
        );
        let empty = Image::new(4, 1, 0u32);
        let e = match_labels(empty.view(), empty.view()).unwrap();
        let s = summarize(&[m, e]);
        assert_eq!((s.images, s.n_true, s.n_pred), (2, 2, 1));
        assert!(match_labels(empty.view(), Image::new(3, 1, 0u32).view()).is_err());
        let none = summarize(&[]);
        assert_eq!(none.f1, 1.0);
    }
}
