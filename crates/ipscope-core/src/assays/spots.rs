//! Spots / puncta (synaptic puncta, DNA-damage foci, lipid droplets) counted per cell.
//!
//! Cells grow a fixed distance from the nuclei ([`expand_labels`], CellProfiler's
//! "Distance - N"; a punctate stain outlines no cell body), spots are found by the
//! scale-normalised Laplacian of Gaussian ([`blob_log`], parity with
//! `skimage.feature.blob_log`), and each spot goes to the cell holding its centre
//! ([`spots_per_object`]): per cell the count, summed and mean intensity, and spot area.

use ipscope_image::{ImageView, Labels, Pixel};
use serde::{Deserialize, Serialize};

use crate::ops::blob::{blob_log, spots_per_object, Blob, BlobLogParams, ObjectSpots};
use crate::ops::expand::expand_labels;
use crate::{ensure_shape, Error};

/// Settings of [`analyze_spots`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpotsParams {
    /// Cells = nuclei grown by this many pixels. Default 15.
    pub cell_distance: f64,
    /// Smallest and largest spot scale (Gaussian σ, px). Default 1 and 3.
    pub min_sigma: f32,
    pub max_sigma: f32,
    /// Scales tried between them. Default 5.
    pub num_sigma: usize,
    /// Absolute threshold on the scale-normalised LoG response (image on CellProfiler's 0..1
    /// scale). Default 0.02.
    pub threshold: f32,
    /// Largest overlap (fraction of the smaller spot) before the smaller is dropped.
    /// Default 0.5.
    pub overlap: f64,
}

impl Default for SpotsParams {
    fn default() -> Self {
        SpotsParams {
            cell_distance: 15.0,
            min_sigma: 1.0,
            max_sigma: 3.0,
            num_sigma: 5,
            threshold: 0.02,
            overlap: 0.5,
        }
    }
}

/// Spots of one field.
#[derive(Debug, Clone, PartialEq)]
pub struct SpotsResult {
    pub cells: Labels,
    /// Every spot, raster order.
    pub spots: Vec<Blob>,
    /// Cell holding each spot (0 = none).
    pub parent: Vec<u32>,
    /// Index `k` = cell `k`; index 0 = spots outside every cell.
    pub per_cell: Vec<ObjectSpots>,
}

/// Finds spots in `spot_image` and counts them per cell grown from `nuclei`.
pub fn analyze_spots<T: Pixel>(
    spot_image: ImageView<T>,
    nuclei: &Labels,
    params: &SpotsParams,
) -> Result<SpotsResult, Error> {
    let (w, h) = (spot_image.width(), spot_image.height());
    ensure_shape("nuclei", (w, h), (nuclei.width(), nuclei.height()))?;
    let scaled = spot_image.map(|v| (v.to_f64() / T::MAX) as f32);
    let cells = expand_labels(nuclei, params.cell_distance);
    let spots = blob_log(
        scaled.view(),
        &BlobLogParams {
            min_sigma: params.min_sigma,
            max_sigma: params.max_sigma,
            num_sigma: params.num_sigma,
            threshold: params.threshold,
            overlap: params.overlap,
        },
    );
    let parent = spots
        .iter()
        .map(|b| cells.image().get(b.row, b.col))
        .collect();
    let per_cell = spots_per_object(&spots, &cells, scaled.view());
    Ok(SpotsResult {
        cells,
        spots,
        parent,
        per_cell,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipscope_image::Image;

    #[test]
    fn spots_are_counted_in_the_cell_around_their_nucleus() {
        // Two nuclei; three spots near the first, one near the second, one far from both.
        let mut nuc = Image::new(80, 40, 0u32);
        for r in 18..22 {
            for c in 18..22 {
                nuc.set(r, c, 1);
                nuc.set(r, c + 40, 2);
            }
        }
        let nuclei = Labels::new(nuc, 2);
        let centres = [
            (10.0, 12.0),
            (28.0, 25.0),
            (15.0, 28.0),
            (30.0, 60.0),
            (3.0, 77.0),
        ];
        let img = Image::from_fn(80, 40, |r, c| {
            let v: f64 = centres
                .iter()
                .map(|&(y, x)| {
                    (-((r as f64 - y).powi(2) + (c as f64 - x).powi(2)) / (2.0 * 1.5 * 1.5)).exp()
                })
                .sum();
            (v * 30000.0 + 500.0) as u16
        });
        let res = analyze_spots(img.view(), &nuclei, &SpotsParams::default()).unwrap();
        assert_eq!(res.spots.len(), 5, "{:?}", res.spots);
        assert_eq!(res.per_cell[1].count, 3);
        assert_eq!(res.per_cell[2].count, 1);
        assert_eq!(res.per_cell[0].count, 1);
        assert!(res.per_cell[1].total_intensity > res.per_cell[2].total_intensity);
        let bad = Labels::empty(3, 3);
        assert!(analyze_spots(img.view(), &bad, &SpotsParams::default()).is_err());
    }
}
