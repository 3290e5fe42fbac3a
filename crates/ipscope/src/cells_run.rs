//! Cells and Cytoplasm in `run`: per field, cells grown from that field's nuclei into the
//! cell-body stain (the channel named `NAME:cells`) by core's
//! [`segment_cells`](ipscope_core::assays::cells::segment_cells) (CellProfiler's
//! IdentifySecondaryObjects, Propagate by default), cytoplasm = cell − nucleus
//! (IdentifyTertiaryObjects), both measured with the run's feature set in every channel.
//!
//! Cell `k` grows from nucleus `k`, so a cell's `Parent_Nuclei` and a cytoplasm's
//! `Parent_Nuclei` / `Parent_Cells` are its own `ObjectNumber`.

use ipscope_core::assays::cells::{segment_cells, CellsParams};
use ipscope_image::{with_dyn_image, DynImage, Labels};
use ipscope_table::TableBuilder;

use crate::features::{measure_objects, FeatureSet, ObjectMeasurements};

/// One field's cells and cytoplasm, measured.
#[derive(Debug, Clone)]
pub struct FieldCells {
    pub cells: ObjectMeasurements,
    pub cytoplasm: ObjectMeasurements,
    /// Threshold of the cell stain (0..1 scale); NaN for `distance` growth.
    pub threshold: f64,
}

impl FieldCells {
    /// Image counts: `[Count_Cells, Count_Cytoplasm]` (objects with pixels).
    pub fn counts(&self) -> Vec<u64> {
        [&self.cells, &self.cytoplasm]
            .iter()
            .map(|m| m.shapes.iter().filter(|s| s.area > 0).count() as u64)
            .collect()
    }

    /// `Children_Cells_Count` of every nucleus label (`[l - 1]`): 1 when the cell grown from
    /// it has pixels, else 0.
    pub fn children_of_nuclei(&self, nuclei: usize) -> Vec<u32> {
        (0..nuclei)
            .map(|i| {
                self.cells
                    .shapes
                    .get(i)
                    .map_or(0, |s| u32::from(s.area > 0))
            })
            .collect()
    }
}

/// Grows and measures the cells and cytoplasm of one field. `images` are the field's channels
/// in plate order; `cells_channel` indexes the cell-body stain among them.
pub fn segment_field(
    nuclei: &Labels,
    images: &[DynImage],
    cells_channel: usize,
    params: &CellsParams,
    features: &FeatureSet,
) -> std::result::Result<FieldCells, String> {
    let stain = images
        .get(cells_channel)
        .ok_or("the cells channel is missing from the field")?;
    let result = with_dyn_image!(stain, img => segment_cells(img.view(), nuclei, params))
        .map_err(|e| e.to_string())?;
    let all: Vec<&DynImage> = images.iter().collect();
    let cells = measure_objects(&result.cells, &all, features).map_err(|e| e.to_string())?;
    let cytoplasm =
        measure_objects(&result.cytoplasm, &all, features).map_err(|e| e.to_string())?;
    Ok(FieldCells {
        cells,
        cytoplasm,
        threshold: result.threshold,
    })
}

/// Rows kept in a compartment table: the objects with pixels (indices = label − 1).
pub fn kept(m: &ObjectMeasurements) -> Vec<usize> {
    (0..m.shapes.len())
        .filter(|&i| m.shapes[i].area > 0)
        .collect()
}

/// Appends the parent columns of a compartment's kept rows: `Parent_Nuclei` (the nucleus
/// with the object's label, 0 when that nucleus has no pixels) and, for Cytoplasm,
/// `Parent_Cells`.
pub fn add_parent_columns(
    b: &mut TableBuilder,
    object: &str,
    labels: &[u32],
    nucleus_exists: &dyn Fn(u32) -> bool,
    cell_exists: &dyn Fn(u32) -> bool,
) {
    b.u32(
        "Parent_Nuclei",
        labels
            .iter()
            .map(|&l| if nucleus_exists(l) { l } else { 0 })
            .collect(),
    )
    .doc("ObjectNumber of the nucleus the object grew from (0: none)");
    if object == "Cytoplasm" {
        b.u32(
            "Parent_Cells",
            labels
                .iter()
                .map(|&l| if cell_exists(l) { l } else { 0 })
                .collect(),
        )
        .doc("ObjectNumber of the cell the cytoplasm belongs to (cell minus nucleus)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipscope_core::assays::cells::CellMethod;
    use ipscope_image::Image;

    #[test]
    fn cytoplasm_is_cell_minus_nucleus_and_counts_follow() {
        // Two nuclei in a 12x6 field; distance growth by 2 px ignores the stain.
        let nuclei = Labels::from_image(Image::from_fn(12, 6, |r, c| match (r, c) {
            (2..=3, 2..=3) => 1,
            (2..=3, 8..=9) => 2,
            _ => 0,
        }));
        let stain = DynImage::U8(Image::from_fn(12, 6, |_, _| 100u8));
        let params = CellsParams {
            method: CellMethod::Distance,
            distance: 2.0,
            ..CellsParams::default()
        };
        let f = segment_field(&nuclei, &[stain], 0, &params, &FeatureSet::default()).unwrap();
        assert_eq!(f.counts(), vec![2, 2]);
        for i in 0..2 {
            assert_eq!(
                f.cytoplasm.shapes[i].area,
                f.cells.shapes[i].area - 4,
                "object {}",
                i + 1
            );
        }
        assert_eq!(f.children_of_nuclei(2), vec![1, 1]);
        assert!(segment_field(&nuclei, &[], 0, &params, &FeatureSet::default()).is_err());
    }
}
