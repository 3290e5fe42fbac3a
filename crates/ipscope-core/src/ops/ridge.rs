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
//! in SciPy, sums are accumulated in f64; the parity test (`tests/skeleton_reference.rs`)
//! holds it within 1e-4 of the largest response.

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
