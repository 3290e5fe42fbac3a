//! Profile similarity and retrieval: cosine and Pearson similarity, average precision (AP)
//! and mean average precision (mAP) with permutation p-values and Benjamini–Hochberg FDR, as
//! `copairs` (Kalinin et al. 2024, "A versatile information retrieval framework for
//! evaluating profile strength and similarity", bioRxiv 2024.04.01.587631), and 1-nearest-
//! neighbour classification with the not-same-compound protocol of Ljosa et al. 2013
//! (J Biomol Screen 18:1321).
//!
//! Pairs follow copairs' rules: a positive pair shares every `pos_sameby` value and differs in
//! every `pos_diffby` value; a negative pair likewise with `neg_sameby` / `neg_diffby`. Each
//! profile ranks its pairs by similarity (ties: positives first, as copairs' stable sort);
//! AP = mean over positives of precision at the positive's rank. AP values equal copairs'
//! to rounding; p-values come from our own random permutations (copairs' null model:
//! uniformly placed positives among the profile's pairs), so they agree within Monte-Carlo
//! error, not bit for bit.

use crate::{Error, Result};

/// How two profiles are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Similarity {
    /// Cosine similarity (copairs' default).
    #[default]
    Cosine,
    /// Pearson correlation of the two feature vectors.
    Pearson,
}

/// Cosine similarity of two vectors (NaN when one has zero norm).
pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let na = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    a.iter().zip(b).map(|(x, y)| (x / na) * (y / nb)).sum()
}

/// Pearson correlation of two vectors (NaN when one is constant).
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let ma = a.iter().sum::<f64>() / n;
    let mb = b.iter().sum::<f64>() / n;
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let da: f64 = a.iter().map(|x| (x - ma) * (x - ma)).sum();
    let db: f64 = b.iter().map(|y| (y - mb) * (y - mb)).sum();
    num / (da * db).sqrt()
}

impl Similarity {
    /// Similarity of two profiles.
    pub fn of(self, a: &[f64], b: &[f64]) -> f64 {
        match self {
            Similarity::Cosine => cosine(a, b),
            Similarity::Pearson => pearson(a, b),
        }
    }
}

/// Which pairs count as positives and negatives; names index the `labels` given to
/// [`average_precision`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PairRule {
    /// Positives share all of these.
    pub pos_sameby: Vec<String>,
    /// Positives differ in all of these.
    pub pos_diffby: Vec<String>,
    /// Negatives share all of these.
    pub neg_sameby: Vec<String>,
    /// Negatives differ in all of these.
    pub neg_diffby: Vec<String>,
}

/// Average precision of one profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ApScore {
    /// AP; NaN without positive pairs.
    pub average_precision: f64,
    /// Positive pairs of this profile.
    pub n_pos_pairs: usize,
    /// All pairs (positive and negative) of this profile.
    pub n_total_pairs: usize,
}

/// Label columns by name: `(name, one label per profile)`.
pub type Labels<'a> = [(&'a str, &'a [String])];

fn label<'a>(labels: &'a Labels<'a>, name: &str, n: usize) -> Result<&'a [String]> {
    let col = labels
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| *v)
        .ok_or_else(|| Error::Invalid(format!("no label column `{name}`")))?;
    if col.len() != n {
        return Err(Error::Invalid(format!(
            "label column `{name}` has {} values, there are {n} profiles",
            col.len()
        )));
    }
    Ok(col)
}

fn matches(same: &[&[String]], diff: &[&[String]], i: usize, j: usize) -> bool {
    same.iter().all(|c| c[i] == c[j]) && diff.iter().all(|c| c[i] != c[j])
}

/// copairs' `average_precision`: AP of every profile (`rows[i]` is profile i's features).
/// Errors when there is no positive or no negative pair at all (copairs' `UnpairedException`).
pub fn average_precision(
    rows: &[Vec<f64>],
    labels: &Labels<'_>,
    rule: &PairRule,
    similarity: Similarity,
) -> Result<Vec<ApScore>> {
    let n = rows.len();
    let get = |names: &[String]| -> Result<Vec<&[String]>> {
        names.iter().map(|k| label(labels, k, n)).collect()
    };
    let (ps, pd, ns, nd) = (
        get(&rule.pos_sameby)?,
        get(&rule.pos_diffby)?,
        get(&rule.neg_sameby)?,
        get(&rule.neg_diffby)?,
    );
    if ps.is_empty() && pd.is_empty() || ns.is_empty() && nd.is_empty() {
        return Err(Error::Invalid(
            "a pair rule needs at least one sameby or diffby column".into(),
        ));
    }
    // per profile: (1 - similarity, is positive)
    let mut lists: Vec<Vec<(f64, bool)>> = vec![Vec::new(); n];
    let (mut any_pos, mut any_neg) = (false, false);
    for i in 0..n {
        for j in i + 1..n {
            let pos = matches(&ps, &pd, i, j);
            let neg = matches(&ns, &nd, i, j);
            if !pos && !neg {
                continue;
            }
            let d = 1.0 - similarity.of(&rows[i], &rows[j]);
            // copairs lists a pair that is both positive and negative twice
            if pos {
                any_pos = true;
                lists[i].push((d, true));
                lists[j].push((d, true));
            }
            if neg {
                any_neg = true;
                lists[i].push((d, false));
                lists[j].push((d, false));
            }
        }
    }
    if !any_pos {
        return Err(Error::Invalid("no positive pairs".into()));
    }
    if !any_neg {
        return Err(Error::Invalid("no negative pairs".into()));
    }
    Ok(lists
        .into_iter()
        .map(|mut list| {
            list.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)));
            let mut tp = 0usize;
            let mut sum = 0.0;
            for (k, (_, pos)) in list.iter().enumerate() {
                if *pos {
                    tp += 1;
                    sum += tp as f64 / (k + 1) as f64;
                }
            }
            ApScore {
                average_precision: if tp == 0 { f64::NAN } else { sum / tp as f64 },
                n_pos_pairs: tp,
                n_total_pairs: list.len(),
            }
        })
        .collect())
}

/// A small deterministic generator (SplitMix64, Steele et al. 2014) for the permutations.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (Lemire's multiply-shift; the bias is below 2⁻³² for our n).
    fn below(&mut self, n: usize) -> usize {
        ((self.next() >> 32).wrapping_mul(n as u64) >> 32) as usize
    }
}

/// Null distribution of AP for `n_pos` positives placed uniformly among `total` ranks
/// (`null_size` draws), as copairs' `random_ap`.
pub fn null_ap(n_pos: usize, total: usize, null_size: usize, seed: u64) -> Vec<f64> {
    let mut rng = SplitMix64(seed ^ ((n_pos as u64) << 32) ^ total as u64);
    let mut idx: Vec<usize> = (0..total).collect();
    (0..null_size)
        .map(|_| {
            for k in 0..n_pos.min(total) {
                let j = k + rng.below(total - k);
                idx.swap(k, j);
            }
            let mut ranks: Vec<usize> = idx[..n_pos.min(total)].to_vec();
            ranks.sort_unstable();
            let s: f64 = ranks
                .iter()
                .enumerate()
                .map(|(i, &r)| (i + 1) as f64 / (r + 1) as f64)
                .sum();
            s / n_pos as f64
        })
        .collect()
}

/// Mean AP of one group with its permutation p-value.
#[derive(Debug, Clone, PartialEq)]
pub struct MapScore {
    /// The group's label.
    pub group: String,
    /// Mean AP over the group's profiles with at least one positive pair.
    pub mean_average_precision: f64,
    /// Profiles averaged.
    pub n_profiles: usize,
    /// (1 + #null mAP > observed) / (1 + null size).
    pub p_value: f64,
    /// Benjamini–Hochberg adjusted p-value over all groups.
    pub corrected_p_value: f64,
}

/// copairs' `mean_average_precision`: mAP per group of `groups` (one label per profile),
/// p-values from `null_size` permutations per (positives, total) configuration, BH FDR
/// across groups. Groups are returned sorted by label.
pub fn mean_average_precision(
    scores: &[ApScore],
    groups: &[String],
    null_size: usize,
    seed: u64,
) -> Result<Vec<MapScore>> {
    if scores.len() != groups.len() {
        return Err(Error::Invalid(format!(
            "{} AP scores but {} group labels",
            scores.len(),
            groups.len()
        )));
    }
    if null_size == 0 {
        return Err(Error::Invalid("null size must be at least 1".into()));
    }
    let valid: Vec<usize> = (0..scores.len())
        .filter(|&i| scores[i].n_pos_pairs > 0 && !scores[i].average_precision.is_nan())
        .collect();
    let mut names: Vec<&String> = valid.iter().map(|&i| &groups[i]).collect();
    names.sort();
    names.dedup();
    let mut nulls: std::collections::BTreeMap<(usize, usize), Vec<f64>> = Default::default();
    let mut out = Vec::new();
    for name in names {
        let members: Vec<usize> = valid
            .iter()
            .copied()
            .filter(|&i| &groups[i] == name)
            .collect();
        let m = members.len() as f64;
        let map = members
            .iter()
            .map(|&i| scores[i].average_precision)
            .sum::<f64>()
            / m;
        let mut null_mean = vec![0.0; null_size];
        for &i in &members {
            let key = (scores[i].n_pos_pairs, scores[i].n_total_pairs);
            let null = nulls
                .entry(key)
                .or_insert_with(|| null_ap(key.0, key.1, null_size, seed));
            for (acc, v) in null_mean.iter_mut().zip(null.iter()) {
                *acc += v / m;
            }
        }
        let above = null_mean.iter().filter(|&&v| v > map).count();
        out.push(MapScore {
            group: name.clone(),
            mean_average_precision: map,
            n_profiles: members.len(),
            p_value: (above + 1) as f64 / (null_size + 1) as f64,
            corrected_p_value: f64::NAN,
        });
    }
    let p: Vec<f64> = out.iter().map(|s| s.p_value).collect();
    for (s, q) in out.iter_mut().zip(benjamini_hochberg(&p)) {
        s.corrected_p_value = q;
    }
    Ok(out)
}

/// Benjamini–Hochberg adjusted p-values (statsmodels' `multipletests(method="fdr_bh")`).
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let n = p.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut q = vec![0.0; n];
    let mut running = f64::INFINITY;
    for (rank, &i) in order.iter().enumerate().rev() {
        running = running.min(p[i] * n as f64 / (rank + 1) as f64);
        q[i] = running.min(1.0);
    }
    q
}

/// The vs-vehicle pair rule of copairs' phenotypic-activity recipe over labels
/// `perturbation` and `reference`: build `reference` with [`reference_index`].
pub fn vehicle_rule(perturbation: &str, reference: &str) -> PairRule {
    PairRule {
        pos_sameby: vec![perturbation.into(), reference.into()],
        pos_diffby: vec![],
        neg_sameby: vec![],
        neg_diffby: vec![perturbation.into(), reference.into()],
    }
}

/// copairs' `assign_reference_index`: vehicle rows get their own row number, other rows
/// `-1`, so vehicle wells are never positives of each other.
pub fn reference_index(perturbation: &[String], vehicle: &str) -> Vec<String> {
    perturbation
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if p == vehicle {
                i.to_string()
            } else {
                "-1".to_string()
            }
        })
        .collect()
}

/// 1-nearest-neighbour classification accuracy where the neighbour may not share the query's
/// `exclude` label (Ljosa et al. 2013's not-same-compound protocol when `exclude` is the
/// compound). Profiles with no admissible neighbour are skipped; returns (correct, queried).
pub fn nn_accuracy(
    rows: &[Vec<f64>],
    class: &[String],
    exclude: &[String],
    similarity: Similarity,
) -> (usize, usize) {
    let n = rows.len();
    let mut correct = 0;
    let mut queried = 0;
    for i in 0..n {
        let mut best: Option<(f64, usize)> = None;
        for j in 0..n {
            if j == i || exclude[j] == exclude[i] {
                continue;
            }
            let s = similarity.of(&rows[i], &rows[j]);
            if best.is_none_or(|(b, _)| s > b) {
                best = Some((s, j));
            }
        }
        if let Some((_, j)) = best {
            queried += 1;
            if class[j] == class[i] {
                correct += 1;
            }
        }
    }
    (correct, queried)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bh_matches_hand_example() {
        // statsmodels: multipletests([0.01, 0.04, 0.03, 0.2], method="fdr_bh")[1]
        // = [0.04, 0.05333333, 0.05333333, 0.2]
        let q = benjamini_hochberg(&[0.01, 0.04, 0.03, 0.2]);
        let want = [0.04, 0.16 / 3.0, 0.16 / 3.0, 0.2];
        for (a, b) in q.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{q:?}");
        }
    }

    #[test]
    fn null_ap_mean_is_expected_ap() {
        // one positive among 4: E[AP] = (1 + 1/2 + 1/3 + 1/4) / 4
        let null = null_ap(1, 4, 20000, 3);
        let mean = null.iter().sum::<f64>() / null.len() as f64;
        let want = (1.0 + 0.5 + 1.0 / 3.0 + 0.25) / 4.0;
        assert!((mean - want).abs() < 0.01, "{mean} vs {want}");
    }
}
