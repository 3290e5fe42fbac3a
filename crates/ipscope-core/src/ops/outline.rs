//! Object outlines and outline overlays for looking at segmentations.
//!
//! [`outlines`] marks the inner boundary of every object, as
//! `skimage.segmentation.find_boundaries(labels, connectivity=1, mode='inner')`: an object
//! pixel is on the outline when one of its 4-neighbours carries another label (background
//! included). Pixels outside the image do not count as another label.

use ipscope_image::{Image, ImageView};

/// Inner outlines of all objects of a label image (0 = background).
pub fn outlines(labels: ImageView<u32>) -> Image<bool> {
    let (w, h) = (labels.width(), labels.height());
    let mut out = Image::new(w, h, false);
    for r in 0..h {
        let row = labels.row(r);
        for c in 0..w {
            let l = row[c];
            if l == 0 {
                continue;
            }
            let differs = (c > 0 && row[c - 1] != l)
                || (c + 1 < w && row[c + 1] != l)
                || (r > 0 && labels.get(r - 1, c) != l)
                || (r + 1 < h && labels.get(r + 1, c) != l);
            out.set(r, c, differs);
        }
    }
    out
}

/// An 8-bit grey overlay for inspection: the image stretched between its 0.5th and 99.5th
/// percentiles (of finite pixels) onto 0..=191, with outline pixels set to 255.
///
/// Errors when the label image differs in size from the image.
pub fn outline_overlay(
    image: ImageView<f32>,
    labels: ImageView<u32>,
) -> Result<Image<u8>, crate::Error> {
    crate::ensure_shape(
        "labels",
        (image.width(), image.height()),
        (labels.width(), labels.height()),
    )?;
    let mut finite: Vec<f32> = image
        .rows()
        .flat_map(|r| r.iter().copied())
        .filter(|v| v.is_finite())
        .collect();
    let (lo, hi) = percentile_pair(&mut finite, 0.005, 0.995);
    let span = if hi > lo { hi - lo } else { 1.0 };
    let edges = outlines(labels);
    let mut out = Image::new(image.width(), image.height(), 0u8);
    for r in 0..image.height() {
        let src = image.row(r);
        let e = edges.row(r);
        for (c, o) in out.row_mut(r).iter_mut().enumerate() {
            *o = if e[c] {
                255
            } else {
                let v = ((src[c] - lo) / span).clamp(0.0, 1.0);
                if v.is_finite() {
                    round_grey(v * 191.0)
                } else {
                    0
                }
            };
        }
    }
    Ok(out)
}

/// Index of the `q` percentile among `n` sorted values (nearest rank, as the overlay uses).
fn rank_of(n: usize, q: f64) -> usize {
    ((n - 1) as f64 * q).round() as usize
}

/// The values at the `q_lo` and `q_hi` percentiles (`q_lo <= q_hi`) of `values` in
/// `f32::total_cmp` order, 0 for none: the elements a full sort would put at those ranks,
/// found by two selections (linear time; the slice is reordered).
fn percentile_pair(values: &mut [f32], q_lo: f64, q_hi: f64) -> (f32, f32) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let (i_lo, i_hi) = (rank_of(values.len(), q_lo), rank_of(values.len(), q_hi));
    let (left, &mut hi, _) = values.select_nth_unstable_by(i_hi, f32::total_cmp);
    // Everything left of `i_hi` is at most `hi`, so rank `i_lo < i_hi` lies among them.
    let lo = if i_lo < i_hi {
        *left.select_nth_unstable_by(i_lo, f32::total_cmp).1
    } else {
        hi
    };
    (lo, hi)
}

/// `x.round() as u8` for `0 <= x <= 255` without the libm call (`round` has no baseline
/// x86-64 instruction): the integer part plus one when the fraction is at least one half.
/// `x - t` is exact (`t` is `x` truncated, both in the same binade or `t = 0`), so the
/// comparison is the one `round` makes.
#[inline]
fn round_grey(x: f32) -> u8 {
    let t = x as u8;
    t + u8::from(x - f32::from(t) >= 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selected_percentiles_equal_the_sorted_ones() {
        // Random values with ties, signed zeros and a range of sizes, against a full sort.
        let mut s = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for n in [1usize, 2, 3, 7, 100, 201, 1000, 4099] {
            for ties in [false, true] {
                let v: Vec<f32> = (0..n)
                    .map(|_| {
                        let x = next();
                        if ties {
                            [0.0, -0.0, 1.0, 2.5][(x % 4) as usize]
                        } else {
                            (x >> 40) as f32 / 7.0 - 1000.0
                        }
                    })
                    .collect();
                let mut sorted = v.clone();
                sorted.sort_by(f32::total_cmp);
                for (ql, qh) in [(0.005, 0.995), (0.0, 1.0), (0.5, 0.5), (0.25, 0.75)] {
                    let want = (sorted[rank_of(n, ql)], sorted[rank_of(n, qh)]);
                    let got = percentile_pair(&mut v.clone(), ql, qh);
                    assert_eq!(
                        (got.0.to_bits(), got.1.to_bits()),
                        (want.0.to_bits(), want.1.to_bits()),
                        "n {n} ties {ties} q {ql} {qh}"
                    );
                }
            }
        }
        assert_eq!(percentile_pair(&mut [], 0.1, 0.9), (0.0, 0.0));
    }

    #[test]
    fn grey_rounding_equals_round() {
        // Every f32 in [0, 191] near a half-integer and a dense sweep of the range.
        for k in 0..=191u32 {
            let mut x = k as f32 + 0.5;
            for _ in 0..64 {
                x = f32::from_bits(x.to_bits() - 1);
            }
            for _ in 0..129 {
                if x <= 191.0 {
                    assert_eq!(round_grey(x), x.round() as u8, "{x}");
                }
                x = f32::from_bits(x.to_bits() + 1);
            }
        }
        for i in 0..=2_000_000u32 {
            let x = i as f32 * (191.0 / 2_000_000.0);
            assert_eq!(round_grey(x), x.round() as u8, "{x}");
        }
        assert_eq!(round_grey(0.0), 0);
        assert_eq!(round_grey(191.0), 191);
    }

    #[test]
    fn inner_outline_of_a_square_and_touching_objects() {
        let l = Image::from_fn(6, 5, |r, c| {
            if (1..4).contains(&r) && (1..3).contains(&c) {
                1
            } else if (1..4).contains(&r) && (3..5).contains(&c) {
                2
            } else {
                0
            }
        });
        let o = outlines(l.view());
        // Every pixel of these thin objects touches background or the other object.
        for r in 1..4 {
            for c in 1..5 {
                assert!(o.get(r, c), "{r},{c}");
            }
        }
        assert!(!o.get(0, 0));
        let big = Image::new(5, 5, 3u32);
        let ob = outlines(big.view());
        assert!(
            ob.as_slice().iter().all(|&b| !b),
            "image border is not an outline"
        );
    }

    #[test]
    fn overlay_marks_outlines_and_survives_odd_input() {
        let img = Image::from_fn(4, 4, |r, _| r as f32);
        let l = Image::from_fn(4, 4, |r, c| u32::from(r < 2 && c < 2));
        let ov = outline_overlay(img.view(), l.view()).unwrap();
        assert_eq!(ov.get(1, 1), 255);
        assert_ne!(ov.get(0, 0), 255, "the image border is no outline");
        assert!(ov.get(3, 3) <= 191);
        let nan = Image::new(3, 3, f32::NAN);
        let z = Image::new(3, 3, 0u32);
        assert!(outline_overlay(nan.view(), z.view())
            .unwrap()
            .as_slice()
            .iter()
            .all(|&v| v == 0));
        assert!(outline_overlay(nan.view(), Image::new(2, 3, 0u32).view()).is_err());
        let empty = Image::new(0, 0, 0f32);
        assert!(outline_overlay(empty.view(), Image::new(0, 0, 0u32).view())
            .unwrap()
            .is_empty());
    }
}
