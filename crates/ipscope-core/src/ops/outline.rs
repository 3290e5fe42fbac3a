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
    finite.sort_by(f32::total_cmp);
    let pick = |q: f64| -> f32 {
        if finite.is_empty() {
            0.0
        } else {
            finite[((finite.len() - 1) as f64 * q).round() as usize]
        }
    };
    let (lo, hi) = (pick(0.005), pick(0.995));
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
                    (v * 191.0).round() as u8
                } else {
                    0
                }
            };
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
