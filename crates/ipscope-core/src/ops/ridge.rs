//! Ridge (tubeness) filters for curvilinear structures such as neurites.
//!
//! [`sato`] reproduces `skimage.filters.sato(image, sigmas, black_ridges, mode='reflect')`
//! (scikit-image 0.26) in 2-D: Sato et al. 1998, "Three-dimensional multi-scale line filter
//! for segmentation and visualization of curvilinear structures in medical images", Medical
//! Image Analysis 2(2):143–168. At each scale σ the Hessian is computed as scikit-image's
//! `hessian_matrix(use_gaussian_derivatives=True)` does — two successive first-order
//! Gaussian-derivative filters of standard deviation σ/√2 (kernel truncated at 8 standard
//! deviations when σ > 1, at 100 otherwise), mirror-reflected edges — and the response is
//! σ² · max(λ, 0) with λ the larger eigenvalue of the Hessian of the (for bright ridges,
//! negated) image; the output is the maximum over scales. Intermediate images are float32 as
//! in SciPy, sums are accumulated in f64; the parity test (`tests/algorithms/skeleton_reference.rs`)
//! holds it within 1e-4 of the largest response.
//!
//! [`frangi`] and [`meijering`] reproduce `skimage.filters.frangi` and
//! `skimage.filters.meijering` (2-D, same Hessian):
//!
//! * **Frangi** et al. 1998 ("Multiscale vessel enhancement filtering", MICCAI): with the
//!   eigenvalues sorted by magnitude |λ1| ≤ |λ2| (λ2 clipped below at 1e-10, so a wrong-sign
//!   λ2 gives no response), R_b = |λ1|/λ2 and S = √(λ1² + λ2²), the response at one scale is
//!   exp(−R_b²/2β²) · (1 − exp(−S²/2γ²)); γ defaults to half the largest S **of the first
//!   scale** (scikit-image sets it once), β = 0.5; no σ² normalisation; maximum over scales.
//! * **Meijering** et al. 2004 ("Design and validation of a tool for neurite tracing and
//!   analysis in fluorescence microscopy images", Cytometry A 58:167): with the eigenvalues
//!   e0 ≥ e1 and α = 1/3 (scikit-image's default 1/(ndim+1)), normalised as e_i + α e_j; the
//!   normalised eigenvalue of larger magnitude, clipped at 0 and divided by its maximum over
//!   the image, at each scale; maximum over scales.
//!
//! Their parity test (`tests/algorithms/ridge_reference.rs`) holds both within 1e-4 of the largest
//! response, as for Sato.

use ipscope_image::{Image, ImageView};

/// Parameters of [`sato`].
#[derive(Debug, Clone, PartialEq)]
pub struct SatoParams {
    /// Scales (Gaussian standard deviations, pixels); the response is the maximum over them.
    pub sigmas: Vec<f32>,
    /// `true` for bright ridges on a dark background (fluorescent neurites), i.e.
    /// scikit-image's `black_ridges=False`.
    pub bright_ridges: bool,
}

impl Default for SatoParams {
    /// Scales 1 and 2 px, bright ridges: neurites one to a few pixels wide.
    fn default() -> Self {
        SatoParams {
            sigmas: vec![1.0, 2.0],
            bright_ridges: true,
        }
    }
}

/// SciPy's `_gaussian_kernel1d(sigma, order, radius)` for order 0, 1 or 2, already reversed as
/// `gaussian_filter1d` passes it to `correlate1d`: index `k` weights the input at offset
/// `k - radius`.
pub(crate) fn gaussian_kernel_order(sigma: f64, order: u8, truncate: f64) -> Vec<f64> {
    let radius = (truncate * sigma + 0.5) as i64;
    let s2 = sigma * sigma;
    let phi: Vec<f64> = (-radius..=radius)
        .map(|x| (-0.5 / s2 * (x * x) as f64).exp())
        .collect();
    let sum: f64 = phi.iter().sum();
    let phi: Vec<f64> = phi.iter().map(|p| p / sum).collect();
    match order {
        0 => phi,
        // d/dx φ = -x/σ² φ; reversed for correlation: weight at offset x is +x/σ² φ(x).
        1 => (-radius..=radius)
            .zip(&phi)
            .map(|(x, p)| x as f64 / s2 * p)
            .collect(),
        // d²/dx² φ = (x²/σ⁴ − 1/σ²) φ, symmetric.
        _ => (-radius..=radius)
            .zip(&phi)
            .map(|(x, p)| ((x * x) as f64 / (s2 * s2) - 1.0 / s2) * p)
            .collect(),
    }
}

/// SciPy's `mode='reflect'` (half-sample symmetric, `d c b a | a b c d | d c b a`), for any
/// offset, however far outside.
fn reflect(i: i64, n: usize) -> usize {
    let n = n as i64;
    let m = i.rem_euclid(2 * n);
    (if m < n { m } else { 2 * n - 1 - m }) as usize
}

/// Correlates along axis 0 (`axis == 0`, down the columns) or axis 1 (along the rows).
fn correlate1d(src: &Image<f32>, kernel: &[f64], axis: usize) -> Image<f32> {
    let (w, h) = (src.width(), src.height());
    let r = (kernel.len() / 2) as i64;
    let mut out = Image::new(w, h, 0.0f32);
    if axis == 0 {
        let mut acc = vec![0.0f64; w];
        for y in 0..h {
            acc.fill(0.0);
            for (k, &kw) in kernel.iter().enumerate() {
                let row = src.row(reflect(y as i64 + k as i64 - r, h));
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a += f64::from(v) * kw;
                }
            }
            for (o, &a) in out.row_mut(y).iter_mut().zip(&acc) {
                *o = a as f32;
            }
        }
    } else {
        let idx: Vec<Vec<usize>> = (0..w)
            .map(|x| {
                (0..kernel.len())
                    .map(|k| reflect(x as i64 + k as i64 - r, w))
                    .collect()
            })
            .collect();
        for y in 0..h {
            let row = src.row(y).to_vec();
            for (x, o) in out.row_mut(y).iter_mut().enumerate() {
                let a: f64 = idx[x]
                    .iter()
                    .zip(kernel)
                    .map(|(&i, &kw)| f64::from(row[i]) * kw)
                    .sum();
                *o = a as f32;
            }
        }
    }
    out
}

/// `scipy.ndimage.gaussian_filter(img, sigma, order=(order_rows, order_cols), mode='reflect')`.
pub(crate) fn gaussian_derivative(
    img: &Image<f32>,
    sigma: f64,
    truncate: f64,
    order_rows: u8,
    order_cols: u8,
) -> Image<f32> {
    let k0 = gaussian_kernel_order(sigma, order_rows, truncate);
    let k1 = gaussian_kernel_order(sigma, order_cols, truncate);
    let tmp = correlate1d(img, &k0, 0);
    correlate1d(&tmp, &k1, 1)
}

/// The Hessian of `src` at scale `sigma` as `skimage.feature.hessian_matrix(…,
/// use_gaussian_derivatives=True)`: (H_rr, H_rc, H_cc).
fn hessian(src: &Image<f32>, sigma: f64) -> [Image<f32>; 3] {
    let truncate = if sigma > 1.0 { 8.0 } else { 100.0 };
    let ss = sigma / 2f64.sqrt();
    let grad_r = gaussian_derivative(src, ss, truncate, 1, 0);
    let grad_c = gaussian_derivative(src, ss, truncate, 0, 1);
    [
        gaussian_derivative(&grad_r, ss, truncate, 1, 0),
        gaussian_derivative(&grad_r, ss, truncate, 0, 1),
        gaussian_derivative(&grad_c, ss, truncate, 0, 1),
    ]
}

/// Eigenvalues (larger, smaller) of the symmetric 2×2 matrix [[a, b], [b, c]].
fn eigenvalues(a: f64, b: f64, c: f64) -> (f64, f64) {
    let half = (a - c) / 2.0;
    let r = (b * b + half * half).sqrt();
    let m = (a + c) / 2.0;
    (m + r, m - r)
}

/// The image the filters work on: negated for bright ridges (scikit-image normalises to
/// black ridges).
fn oriented(img: ImageView<f32>, bright_ridges: bool) -> Image<f32> {
    if bright_ridges {
        img.map(|v| -v)
    } else {
        img.to_image()
    }
}

/// Valid scales as f64.
fn scales(sigmas: &[f32]) -> impl Iterator<Item = f64> + '_ {
    sigmas
        .iter()
        .filter(|s| s.is_finite() && **s > 0.0)
        .map(|&s| f64::from(s))
}

/// Which ridge filter the neurite assay uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RidgeFilter {
    /// [`sato`] (default).
    #[default]
    Sato,
    /// [`frangi`] with scikit-image's defaults (β = 0.5, γ from the first scale).
    Frangi,
    /// [`meijering`] with scikit-image's default α.
    Meijering,
}

impl RidgeFilter {
    /// The filter's name as in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            RidgeFilter::Sato => "sato",
            RidgeFilter::Frangi => "frangi",
            RidgeFilter::Meijering => "meijering",
        }
    }

    /// Applies the filter at `sigmas` with its other parameters at their defaults.
    pub fn apply(self, img: ImageView<f32>, sigmas: &[f32], bright_ridges: bool) -> Image<f32> {
        let sigmas = sigmas.to_vec();
        match self {
            RidgeFilter::Sato => sato(
                img,
                &SatoParams {
                    sigmas,
                    bright_ridges,
                },
            ),
            RidgeFilter::Frangi => frangi(
                img,
                &FrangiParams {
                    sigmas,
                    bright_ridges,
                    ..FrangiParams::default()
                },
            ),
            RidgeFilter::Meijering => meijering(
                img,
                &MeijeringParams {
                    sigmas,
                    bright_ridges,
                    ..MeijeringParams::default()
                },
            ),
        }
    }
}

/// Parameters of [`frangi`] (scikit-image's names and defaults, bright ridges).
#[derive(Debug, Clone, PartialEq)]
pub struct FrangiParams {
    pub sigmas: Vec<f32>,
    /// Sensitivity to deviation from a line (blobness), default 0.5.
    pub beta: f64,
    /// Sensitivity to structure; `None`: half the largest Hessian norm at the first scale.
    pub gamma: Option<f64>,
    pub bright_ridges: bool,
}

impl Default for FrangiParams {
    fn default() -> Self {
        FrangiParams {
            sigmas: vec![1.0, 2.0],
            beta: 0.5,
            gamma: None,
            bright_ridges: true,
        }
    }
}

/// Frangi vesselness, as `skimage.filters.frangi` in 2-D; see the module docs.
pub fn frangi(img: ImageView<f32>, params: &FrangiParams) -> Image<f32> {
    let (w, h) = (img.width(), img.height());
    let mut best = Image::new(w, h, 0.0f32);
    if w == 0 || h == 0 {
        return best;
    }
    let src = oriented(img, params.bright_ridges);
    let mut gamma = params.gamma;
    let two_beta2 = 2.0 * params.beta * params.beta;
    for s in scales(&params.sigmas) {
        let [hrr, hrc, hcc] = hessian(&src, s);
        let eig: Vec<(f64, f64)> = (0..w * h)
            .map(|i| {
                let (e0, e1) = eigenvalues(
                    f64::from(hrr.as_slice()[i]),
                    f64::from(hrc.as_slice()[i]),
                    f64::from(hcc.as_slice()[i]),
                );
                // By magnitude: λ1 the smaller (the first on ties, as NumPy's argsort).
                if e0.abs() <= e1.abs() {
                    (e0, e1)
                } else {
                    (e1, e0)
                }
            })
            .collect();
        let norm = |(l1, l2): (f64, f64)| (l1 * l1 + l2 * l2).sqrt();
        let g = *gamma.get_or_insert_with(|| {
            let g = eig.iter().map(|&e| norm(e)).fold(0.0, f64::max) / 2.0;
            if g == 0.0 {
                1.0
            } else {
                g
            }
        });
        let two_gamma2 = 2.0 * g * g;
        for (b, &(l1, l2)) in best.as_mut_slice().iter_mut().zip(&eig) {
            let rb = l1.abs() / l2.max(1e-10);
            let s2 = l1 * l1 + l2 * l2;
            let v = ((-rb * rb / two_beta2).exp() * (1.0 - (-s2 / two_gamma2).exp())) as f32;
            if v > *b {
                *b = v;
            }
        }
    }
    best
}

/// Parameters of [`meijering`] (scikit-image's names and defaults, bright ridges).
#[derive(Debug, Clone, PartialEq)]
pub struct MeijeringParams {
    pub sigmas: Vec<f32>,
    /// Shaping constant; `None`: 1/(ndim + 1) = 1/3, as scikit-image.
    pub alpha: Option<f64>,
    pub bright_ridges: bool,
}

impl Default for MeijeringParams {
    fn default() -> Self {
        MeijeringParams {
            sigmas: vec![1.0, 2.0],
            alpha: None,
            bright_ridges: true,
        }
    }
}

/// Meijering neuriteness, as `skimage.filters.meijering` in 2-D; see the module docs.
pub fn meijering(img: ImageView<f32>, params: &MeijeringParams) -> Image<f32> {
    let (w, h) = (img.width(), img.height());
    let mut best = Image::new(w, h, 0.0f32);
    if w == 0 || h == 0 {
        return best;
    }
    let src = oriented(img, params.bright_ridges);
    let alpha = params.alpha.unwrap_or(1.0 / 3.0);
    for s in scales(&params.sigmas) {
        let [hrr, hrc, hcc] = hessian(&src, s);
        let vals: Vec<f64> = (0..w * h)
            .map(|i| {
                let (e0, e1) = eigenvalues(
                    f64::from(hrr.as_slice()[i]),
                    f64::from(hrc.as_slice()[i]),
                    f64::from(hcc.as_slice()[i]),
                );
                let (v0, v1) = (e0 + alpha * e1, alpha * e0 + e1);
                // The larger magnitude (the first on ties, as NumPy's argmax).
                let v = if v0.abs() >= v1.abs() { v0 } else { v1 };
                v.max(0.0)
            })
            .collect();
        let max = vals.iter().copied().fold(0.0, f64::max);
        let scale = if max > 0.0 { 1.0 / max } else { 1.0 };
        for (b, &v) in best.as_mut_slice().iter_mut().zip(&vals) {
            let v = (v * scale) as f32;
            if v > *b {
                *b = v;
            }
        }
    }
    best
}

/// Sato tubeness, as `skimage.filters.sato`; see the module docs. An empty image or no
/// scales gives zeros; non-positive scales are skipped.
pub fn sato(img: ImageView<f32>, params: &SatoParams) -> Image<f32> {
    let (w, h) = (img.width(), img.height());
    let mut best = Image::new(w, h, 0.0f32);
    if w == 0 || h == 0 {
        return best;
    }
    let src = if params.bright_ridges {
        img.map(|v| -v)
    } else {
        img.to_image()
    };
    for &sigma in &params.sigmas {
        if !(sigma > 0.0 && sigma.is_finite()) {
            continue;
        }
        let s = f64::from(sigma);
        let truncate = if s > 1.0 { 8.0 } else { 100.0 };
        let ss = s / 2f64.sqrt();
        let grad_r = gaussian_derivative(&src, ss, truncate, 1, 0);
        let grad_c = gaussian_derivative(&src, ss, truncate, 0, 1);
        let hrr = gaussian_derivative(&grad_r, ss, truncate, 1, 0);
        let hrc = gaussian_derivative(&grad_r, ss, truncate, 0, 1);
        let hcc = gaussian_derivative(&grad_c, ss, truncate, 0, 1);
        let s2 = s * s;
        for (i, b) in best.as_mut_slice().iter_mut().enumerate() {
            let (a, bb, c) = (
                f64::from(hrr.as_slice()[i]),
                f64::from(hrc.as_slice()[i]),
                f64::from(hcc.as_slice()[i]),
            );
            let half = (a - c) / 2.0;
            let top = (a + c) / 2.0 + (bb * bb + half * half).sqrt();
            let v = (s2 * top.max(0.0)) as f32;
            if v > *b {
                *b = v;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_matches_scipy_mode() {
        let n = 4;
        let got: Vec<usize> = (-5..10).map(|i| reflect(i, n)).collect();
        // d c b a | a b c d | d c b a, for a..d = 0..3
        assert_eq!(got, vec![3, 3, 2, 1, 0, 0, 1, 2, 3, 3, 2, 1, 0, 0, 1]);
        assert_eq!(reflect(-7, 1), 0);
    }

    #[test]
    fn a_bright_line_responds_on_its_centre() {
        let img = Image::from_fn(21, 21, |r, _| if r == 10 { 1.0 } else { 0.0 });
        let out = sato(img.view(), &SatoParams::default());
        let centre = out.get(10, 10);
        assert!(centre > 0.1, "{centre}");
        assert!(out.get(4, 10) < centre * 0.1);
        let empty = Image::new(0, 3, 0.0f32);
        assert_eq!(sato(empty.view(), &SatoParams::default()).len(), 0);
    }
}
