//! Colonies in `run`: per field, colonies segmented from the nuclei (or transmitted light),
//! measured and graded; the rows of `Colonies`, each nucleus's `Parent_Colonies`, the per-field
//! colony counts in Image and the per-well undifferentiated fraction in Wells.
//!
//! Grades are assigned in one place, [`assign_grades`], which takes an optional
//! [`ColonyGrader`] (a trained model) instead of the rules.

use std::str::FromStr;
use std::sync::Arc;

use ipscope_core::assays::colonies::{
    colonies_from_brightfield, colonies_from_nuclei, grade_colony, measure_colonies,
    ColonyFeatures, ColonyParams, ColonyResult, Grade, GradeRules,
};
use ipscope_core::ops::label::Connectivity;
use ipscope_image::{DynImage, Image, ImageView, Labels};
use ipscope_table::arrow_array::cast::AsArray;
use ipscope_table::arrow_array::types::UInt64Type;
use ipscope_table::arrow_array::{Float64Array, RecordBatch};
use ipscope_table::{DataType, Field, TableBuilder};
use serde::{Deserialize, Serialize};

use crate::channels::{Channel, Role};
use crate::features::{FeatureGroup, FeatureSet, ObjectMeasurements};
use crate::{Error, Result};

/// What colonies are segmented from (`--colonies`, config `colonies_from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColonySource {
    /// Nuclei closer than `[colonies] link_distance` join one colony.
    Nuclei,
    /// Texture of the transmitted-light channel (a channel named Brightfield, BF, Phase, TL).
    Brightfield,
    /// Both: a pixel is in a colony when either method puts it in one (connected pieces of
    /// the union, 8-connected); the well and edge measures come from the transmitted light.
    Both,
}

impl ColonySource {
    /// Whether this source needs a transmitted-light channel.
    pub fn needs_transmitted(self) -> bool {
        matches!(self, ColonySource::Brightfield | ColonySource::Both)
    }
}

impl FromStr for ColonySource {
    type Err = Error;
    fn from_str(s: &str) -> Result<ColonySource> {
        match s.trim().to_ascii_lowercase().as_str() {
            "nuclei" => Ok(ColonySource::Nuclei),
            "brightfield" | "bf" | "transmitted" | "phase" => Ok(ColonySource::Brightfield),
            "both" => Ok(ColonySource::Both),
            _ => Err(Error::Invalid(format!(
                "--colonies {s:?}: expected nuclei, brightfield or both"
            ))),
        }
    }
}

/// Grades as columns: (grade, Image count column suffix).
pub const GRADES: [(Grade, &str); 3] = [
    (Grade::Undifferentiated, "Undifferentiated"),
    (Grade::Differentiating, "Differentiating"),
    (Grade::TooSmall, "TooSmall"),
];

/// A trained colony classifier; without one the rules of `[colony_grades]` grade.
pub trait ColonyGrader: Sync {
    fn grade(&self, features: &ColonyFeatures) -> Grade;
}

/// The grade of every colony: the model's when one is given, else the rules'.
pub fn assign_grades(
    features: &[ColonyFeatures],
    rules: &GradeRules,
    model: Option<&dyn ColonyGrader>,
) -> Vec<Grade> {
    features
        .iter()
        .map(|f| match model {
            Some(m) => m.grade(f),
            None => grade_colony(f, rules),
        })
        .collect()
}

/// One field's colonies.
#[derive(Debug, Clone)]
pub struct FieldColonies {
    /// Colony of each nucleus label (`parents[l - 1]`, 0 = in none).
    pub parents: Vec<u32>,
    pub features: Vec<ColonyFeatures>,
    pub grades: Vec<Grade>,
    /// The `[measure] features` groups of the colony label image in every channel, as
    /// Nuclei, Cells and Cytoplasm get them (index = colony label − 1).
    pub measurements: ObjectMeasurements,
}

impl FieldColonies {
    /// Image counts: all colonies, then one per grade in [`GRADES`] order.
    pub fn counts(&self) -> Vec<u64> {
        let mut c = vec![self.features.len() as u64];
        for (g, _) in GRADES {
            c.push(self.grades.iter().filter(|&&x| x == g).count() as u64);
        }
        c
    }
}

fn scaled(img: &DynImage) -> Image<f32> {
    let s = img.sample_type().scale() as f32;
    img.to_f32().map(|v| v / s)
}

/// For each nucleus label, the colony covering more than half of its pixels (0 if none).
fn parents_by_overlap(nuclei: &Labels, colonies: &Labels) -> Vec<u32> {
    let n = nuclei.count() as usize;
    let mut area = vec![0u64; n + 1];
    let mut overlap: Vec<std::collections::BTreeMap<u32, u64>> = vec![Default::default(); n + 1];
    for (&l, &c) in nuclei
        .image()
        .as_slice()
        .iter()
        .zip(colonies.image().as_slice())
    {
        let l = l as usize;
        if l == 0 || l > n {
            continue;
        }
        area[l] += 1;
        if c > 0 {
            *overlap[l].entry(c).or_default() += 1;
        }
    }
    (1..=n)
        .map(|l| {
            overlap[l]
                .iter()
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
                .filter(|(_, &k)| 2 * k > area[l])
                .map_or(0, |(&c, _)| c)
        })
        .collect()
}

/// Segments, measures and grades the colonies of one field; `set` chooses the per-channel
/// feature groups measured on the colonies besides the colony features.
#[allow(clippy::too_many_arguments)]
pub fn segment_field(
    source: ColonySource,
    nuclei: &Labels,
    images: &[DynImage],
    channels: &[Channel],
    nuclear: usize,
    params: &ColonyParams,
    rules: &GradeRules,
    model: Option<&dyn ColonyGrader>,
    set: &FeatureSet,
) -> std::result::Result<FieldColonies, String> {
    let transmitted = || {
        channels
            .iter()
            .position(|c| c.role == Role::Transmitted)
            .map(|bf| scaled(&images[bf]))
            .ok_or("no transmitted-light channel to find colonies in")
    };
    let (result, intensity) = match source {
        ColonySource::Nuclei => (
            colonies_from_nuclei(nuclei, params),
            scaled(&images[nuclear]),
        ),
        ColonySource::Brightfield => {
            let img = transmitted()?;
            (colonies_from_brightfield(img.view(), params), img)
        }
        ColonySource::Both => {
            let img = transmitted()?;
            let bf = colonies_from_brightfield(img.view(), params);
            let union = union_colonies(&bf, &colonies_from_nuclei(nuclei, params));
            (union, img)
        }
    };
    let parents = if result.parents.len() == nuclei.count() as usize {
        result.parents.clone()
    } else {
        parents_by_overlap(nuclei, &result.labels)
    };
    let markers: Vec<Image<f32>> = channels
        .iter()
        .zip(images)
        .filter(|(c, _)| c.role == Role::Marker)
        .map(|(_, i)| scaled(i))
        .collect();
    let marker_views: Vec<ImageView<f32>> = markers.iter().map(|m| m.view()).collect();
    let features = measure_colonies(
        &result.labels,
        Some((nuclei, &parents)),
        Some(intensity.view()),
        &marker_views,
        result.well.as_ref(),
        params,
    )
    .map_err(|e| e.to_string())?;
    let grades = assign_grades(&features, rules, model);
    let refs: Vec<&DynImage> = images.iter().collect();
    let measurements =
        crate::features::measure_objects(&result.labels, &refs, set).map_err(|e| e.to_string())?;
    Ok(FieldColonies {
        parents,
        features,
        grades,
        measurements,
    })
}

/// Where a colony row comes from.
pub struct FieldKey<'a> {
    pub image_number: u32,
    pub plate: &'a str,
    pub well: &'a str,
    pub site: u32,
}

/// The Colonies rows of one field: the `[measure] features` groups of `set` in every channel
/// (`channels`: all channel names, in order), named as for Nuclei, then the colony features
/// (`markers`: names of the marker channels, in order). A colony feature that a selected
/// group already writes under the same name (`AreaShape_Area`, `Location_Center_X`,
/// `Intensity_MeanIntensity_<marker>`, ...) is written once, by the group.
pub fn colonies_batch(
    key: &FieldKey<'_>,
    colonies: Option<&FieldColonies>,
    channels: &[String],
    markers: &[String],
    set: &FeatureSet,
) -> Result<RecordBatch> {
    let empty = FieldColonies {
        parents: vec![],
        features: vec![],
        grades: vec![],
        measurements: ObjectMeasurements::default(),
    };
    let c = colonies.unwrap_or(&empty);
    let f = &c.features;
    let n = f.len();
    let col = |get: fn(&ColonyFeatures) -> f64| f.iter().map(get).collect::<Vec<f64>>();
    let mut b = TableBuilder::new();
    b.u32("ImageNumber", vec![key.image_number; n])
        .doc("Field number: row of Image with the same ImageNumber")
        .u32("ObjectNumber", f.iter().map(|x| x.label).collect())
        .doc("Label of the colony in the field (1..N, raster order); Parent_Colonies of its nuclei")
        .str("Metadata_Plate", vec![key.plate.to_string(); n])
        .str("Metadata_Well", vec![key.well.to_string(); n])
        .u32("Metadata_Site", vec![key.site; n]);
    // Colony labels are 1..N; row k is label features[k].label.
    let keep: Vec<usize> = f
        .iter()
        .filter_map(|x| (x.label as usize).checked_sub(1))
        .collect();
    let m = &c.measurements;
    crate::features::add_object_columns(
        &mut b,
        "Colonies",
        channels,
        set,
        &m.shapes,
        &m.intensities,
        &keep,
    );
    crate::features::add_distribution_columns(&mut b, "Colonies", channels, set, m, &keep);
    if !set.contains(FeatureGroup::AreaShape) {
        b.f64("Colonies_AreaShape_Area", col(|x| x.area as f64))
            .doc("Colony area (pixels)")
            .f64("Colonies_AreaShape_Perimeter", col(|x| x.perimeter))
            .doc("Perimeter (pixels), as CellProfiler's AreaShape_Perimeter")
            .f64("Colonies_AreaShape_FormFactor", col(|x| x.circularity))
            .doc("Circularity 4π·Area/Perimeter² (CellProfiler's FormFactor)")
            .f64("Colonies_AreaShape_Solidity", col(|x| x.solidity))
            .doc("Area / convex hull area");
    }
    if !set.contains(FeatureGroup::Location) {
        b.f64("Colonies_Location_Center_X", col(|x| x.center_x))
            .f64("Colonies_Location_Center_Y", col(|x| x.center_y));
    }
    b.f64(
        "Colonies_AreaShape_ConvexityDeficiency",
        col(|x| x.convexity_deficiency),
    )
    .doc("(ConvexArea − Area) / ConvexArea")
    .u64(
        "Colonies_Children_Nuclei_Count",
        f.iter().map(|x| x.nuclei).collect(),
    )
    .doc("Nuclei whose Parent_Colonies is this colony")
    .f64(
        "Colonies_Density_NucleiPer10000Pixels",
        col(|x| x.nuclear_density),
    )
    .doc("Nuclei per 10 000 px² of colony area")
    .f64("Colonies_Packing_NuclearFraction", col(|x| x.packing))
    .doc("Nuclear pixels / colony pixels")
    .f64("Colonies_Nuclei_MeanArea", col(|x| x.nuclear_area_mean))
    .f64("Colonies_Nuclei_MedianArea", col(|x| x.nuclear_area_median))
    .f64("Colonies_Nuclei_AreaCV", col(|x| x.nuclear_area_cv))
    .doc("Coefficient of variation of the colony's nuclear areas")
    .f64("Colonies_Texture_EdgeSharpness", col(|x| x.edge_sharpness))
    .doc("Mean gradient magnitude on the boundary / mean intensity of the field")
    .f64("Colonies_Texture_LocalStd", col(|x| x.texture))
    .doc("Mean flat-fielded local standard deviation inside the colony");
    if !set.contains(FeatureGroup::Intensity) {
        for (k, m) in markers.iter().enumerate() {
            b.f64(
                &format!("Colonies_Intensity_MeanIntensity_{m}"),
                f.iter()
                    .map(|x| x.marker_means.get(k).copied().unwrap_or(f64::NAN))
                    .collect(),
            )
            .doc("Mean intensity over the colony on CellProfiler's 0..1 scale");
        }
    }
    b.f64(
        "Colonies_DistanceToWellEdge",
        col(|x| x.distance_to_well_edge),
    )
    .doc("Centroid to well edge minus equivalent radius (pixels); NaN without a detected well")
    .bool(
        "Colonies_TouchingBorder",
        f.iter().map(|x| x.touching_border).collect(),
    )
    .bool("Colonies_Fused", f.iter().map(|x| x.fused).collect())
    .doc("Probably several colonies grown together")
    .str(
        "Classify_Grade",
        c.grades.iter().map(|g| g.as_str().to_string()).collect(),
    )
    .doc("undifferentiated, differentiating or too_small ([colony_grades] rules)");
    Ok(b.finish()?)
}

/// The Image count columns: `Count_Colonies`, `Count_Colonies_<Grade>`. `counts[row]` is
/// empty for a field without colony results (failed).
pub fn add_image_columns(b: &mut TableBuilder, counts: &[&[u64]]) {
    let get = |k: usize| {
        counts
            .iter()
            .map(|c| c.get(k).copied().unwrap_or(0))
            .collect()
    };
    b.u64("Count_Colonies", get(0))
        .doc("Colonies found in the field");
    for (k, (g, name)) in GRADES.iter().enumerate() {
        b.u64(&format!("Count_Colonies_{name}"), get(k + 1))
            .doc(&format!("Colonies graded {}", g.as_str()));
    }
}

/// Appends `Fraction_Colonies_Undifferentiated` to a Wells table that has the colony counts:
/// undifferentiated / (undifferentiated + differentiating) colonies (too small ones are not
/// judged), null when the well has none.
pub fn add_well_fractions(wells: RecordBatch) -> Result<RecordBatch> {
    let (Some(u), Some(d)) = (
        wells.column_by_name("Count_Colonies_Undifferentiated"),
        wells.column_by_name("Count_Colonies_Differentiating"),
    ) else {
        return Ok(wells);
    };
    let (Some(u), Some(d)) = (
        u.as_primitive_opt::<UInt64Type>(),
        d.as_primitive_opt::<UInt64Type>(),
    ) else {
        return Err(Error::Invalid(
            "Wells colony counts are not UInt64".to_string(),
        ));
    };
    let frac: Float64Array = (0..wells.num_rows())
        .map(|i| {
            let (a, b) = (u.value(i), d.value(i));
            (a + b > 0).then(|| a as f64 / (a + b) as f64)
        })
        .collect();
    let mut fields: Vec<Field> = wells
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut meta = std::collections::HashMap::new();
    meta.insert(
        ipscope_table::DESCRIPTION_KEY.to_string(),
        "Undifferentiated / (undifferentiated + differentiating) colonies of the well's counted fields; null when none".to_string(),
    );
    fields.push(
        Field::new(
            "Fraction_Colonies_Undifferentiated",
            DataType::Float64,
            true,
        )
        .with_metadata(meta),
    );
    let mut columns = wells.columns().to_vec();
    columns.push(Arc::new(frac));
    RecordBatch::try_new(Arc::new(ipscope_table::Schema::new(fields)), columns)
        .map_err(|e| Error::Invalid(format!("Wells colony fraction: {e}")))
}

/// Colonies where either result has one: the 8-connected pieces of the union of both masks,
/// with the first result's well and threshold (nuclei are assigned to them by overlap).
fn union_colonies(a: &ColonyResult, b: &ColonyResult) -> ColonyResult {
    let (la, lb) = (a.labels.image(), b.labels.image());
    let mask = Image::from_fn(la.width(), la.height(), |r, c| {
        la.get(r, c) > 0 || lb.get(r, c) > 0
    });
    ColonyResult {
        labels: ipscope_core::ops::label::label(mask.view(), Connectivity::Eight),
        parents: Vec::new(),
        well: a.well,
        threshold: a.threshold,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(w: usize, h: usize, f: impl FnMut(usize, usize) -> u32) -> Labels {
        let img = Image::from_fn(w, h, f);
        let n = img.as_slice().iter().copied().max().unwrap_or(0);
        Labels::new(img, n)
    }

    #[test]
    fn overlap_parent_needs_more_than_half() {
        // Nucleus 1: 4 px, 3 in colony 2; nucleus 2: 4 px, 2 in colony 1 (half: none).
        let nuclei = labels(8, 1, |_, c| match c {
            0..=3 => 1,
            4..=7 => 2,
            _ => 0,
        });
        let colonies = labels(8, 1, |_, c| match c {
            1..=3 => 2,
            6..=7 => 1,
            _ => 0,
        });
        assert_eq!(parents_by_overlap(&nuclei, &colonies), vec![2, 0]);
    }

    #[test]
    fn source_names() {
        assert_eq!(
            "BF".parse::<ColonySource>().unwrap(),
            ColonySource::Brightfield
        );
        assert_eq!(
            "nuclei".parse::<ColonySource>().unwrap(),
            ColonySource::Nuclei
        );
        assert_eq!("both".parse::<ColonySource>().unwrap(), ColonySource::Both);
        assert!("all".parse::<ColonySource>().is_err());
    }

    #[test]
    fn both_joins_the_two_masks() {
        // Brightfield finds columns 0..=2 and 8..=9; nuclei find 2..=4 (overlapping the
        // first) and 6 (alone): the union has pieces 0..=4, 6 and 8..=9.
        let result = |l: Labels| ColonyResult {
            labels: l,
            parents: Vec::new(),
            well: None,
            threshold: 0.5,
        };
        let bf = result(labels(10, 2, |_, c| match c {
            0..=2 => 1,
            8..=9 => 2,
            _ => 0,
        }));
        let nu = result(labels(10, 2, |_, c| match c {
            2..=4 => 1,
            6 => 2,
            _ => 0,
        }));
        let u = union_colonies(&bf, &nu);
        assert_eq!(u.labels.count(), 3);
        let row: Vec<u32> = (0..10).map(|c| u.labels.image().get(1, c)).collect();
        assert_eq!(row, vec![1, 1, 1, 1, 1, 0, 2, 0, 3, 3]);
        assert_eq!(u.threshold, 0.5);
    }
}
