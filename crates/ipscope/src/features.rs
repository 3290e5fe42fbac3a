//! Per-object measurements as CellProfiler-named columns: which feature groups exist, what
//! every column means (name, unit, definition), and how core's results become table columns.
//!
//! The maths lives in `ipscope_core::ops::measure` (pure functions over a label image and
//! intensity images); this module only names, documents and selects. Column names follow
//! CellProfiler: `<Object>_AreaShape_<Feature>`, `<Object>_Location_<Feature>[_<channel>]`,
//! `<Object>_Intensity_<Feature>_<channel>`. Intensities use CellProfiler's scaling (pixel
//! value divided by the sample type's maximum). Full definitions and references:
//! `docs/measurements.md`.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use ipscope_core::ops::measure::{measure_colocalization, Colocalization};
use ipscope_core::ops::measure::{
    measure_granularity, measure_intensity_features_in, measure_radial_distribution,
    measure_shape_features, GranularityParams, IntensityFeatures, ObjectRuns, RadialDistribution,
    ShapeFeatures, DEFAULT_RADIAL_BINS,
};
use ipscope_core::ops::measure::{
    measure_neighbors, NeighborMethod, Neighbors, DEFAULT_NEIGHBOR_DISTANCE,
};
use ipscope_core::ops::measure::{
    measure_texture, measure_zernike, zernike_indexes, Texture, DEFAULT_TEXTURE_SCALE,
    HARALICK_FEATURES,
};
use ipscope_image::{with_dyn_image, DynImage, Labels};
use ipscope_table::TableBuilder;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A group of features that is computed (and costs time) together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FeatureGroup {
    /// Size and shape of the mask (`AreaShape_*`), incl. Feret diameters.
    AreaShape,
    /// Centroid of the mask (`Location_Center_X/Y`).
    Location,
    /// Per-channel intensity statistics (`Intensity_*_<ch>`, `Location_CenterMassIntensity_*`,
    /// `Location_MaxIntensity_*`).
    Intensity,
    /// Per-channel granular spectrum (`Granularity_<n>_<ch>`, CellProfiler's
    /// MeasureGranularity defaults); not in the default set.
    Granularity,
    /// Per-channel radial intensity distribution (`RadialDistribution_{FracAtD,MeanFrac,
    /// RadialCV}_<ch>_<b>of4`); not in the default set.
    RadialDistribution,
    /// Per-channel Haralick texture (`Texture_<Feature>_<ch>_3_<dir>_256`, CellProfiler's
    /// MeasureTexture at scale 3); not in the default set.
    Texture,
    /// Zernike shape moments up to degree 9 (`AreaShape_Zernike_<n>_<m>`); not in the default
    /// set.
    Zernike,
    /// Colocalisation of every channel pair (`Correlation_<Measure>_<A>_<B>`, CellProfiler's
    /// MeasureColocalization); not in the default set.
    Correlation,
    /// Neighbour count, touching share and closest objects within a distance (5 px unless
    /// `[measure] neighbors_distance` / `--neighbors-distance` says otherwise;
    /// `Neighbors_<Feature>_<distance>`, CellProfiler's MeasureObjectNeighbors); not in the
    /// default set.
    Neighbors,
}

impl FeatureGroup {
    /// Every implemented group (`all`).
    pub const ALL: [FeatureGroup; 9] = [
        FeatureGroup::AreaShape,
        FeatureGroup::Location,
        FeatureGroup::Intensity,
        FeatureGroup::Granularity,
        FeatureGroup::RadialDistribution,
        FeatureGroup::Texture,
        FeatureGroup::Zernike,
        FeatureGroup::Correlation,
        FeatureGroup::Neighbors,
    ];

    /// The cheap groups `ipscope run` and `default` compute.
    pub const DEFAULT: [FeatureGroup; 3] = [
        FeatureGroup::AreaShape,
        FeatureGroup::Location,
        FeatureGroup::Intensity,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FeatureGroup::AreaShape => "AreaShape",
            FeatureGroup::Location => "Location",
            FeatureGroup::Intensity => "Intensity",
            FeatureGroup::Granularity => "Granularity",
            FeatureGroup::RadialDistribution => "RadialDistribution",
            FeatureGroup::Texture => "Texture",
            FeatureGroup::Zernike => "Zernike",
            FeatureGroup::Correlation => "Correlation",
            FeatureGroup::Neighbors => "Neighbors",
        }
    }
}

impl fmt::Display for FeatureGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// CellProfiler groups ipscope does not compute yet; asking for them is an error
/// that says so rather than a silently missing column.
const PLANNED: [&str; 1] = ["Children"];

impl FromStr for FeatureGroup {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim();
        if let Some(g) = FeatureGroup::ALL
            .iter()
            .find(|g| g.name().eq_ignore_ascii_case(t))
        {
            return Ok(*g);
        }
        if let Some(p) = PLANNED.iter().find(|p| p.eq_ignore_ascii_case(t)) {
            return Err(Error::Invalid(format!(
                "feature group {p} is not implemented yet; available: {}",
                names(&FeatureGroup::ALL)
            )));
        }
        Err(Error::Invalid(format!(
            "unknown feature group {t:?}; available: {} (or `default`, `all`)",
            names(&FeatureGroup::ALL)
        )))
    }
}

fn names(groups: &[FeatureGroup]) -> String {
    groups
        .iter()
        .map(|g| g.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The groups to compute. The default (AreaShape + Location + Intensity) is what `ipscope run`
/// writes; costly groups will join only when asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureSet {
    groups: BTreeSet<FeatureGroup>,
    /// Neighbors: CellProfiler's "Within a specified distance" (px), also the column suffix.
    #[serde(default = "default_neighbors_distance")]
    neighbors_distance: usize,
}

fn default_neighbors_distance() -> usize {
    DEFAULT_NEIGHBOR_DISTANCE
}

impl Default for FeatureSet {
    fn default() -> Self {
        FeatureSet {
            groups: FeatureGroup::DEFAULT.into_iter().collect(),
            neighbors_distance: DEFAULT_NEIGHBOR_DISTANCE,
        }
    }
}

impl FeatureSet {
    pub fn all() -> Self {
        FeatureSet {
            groups: FeatureGroup::ALL.into_iter().collect(),
            neighbors_distance: DEFAULT_NEIGHBOR_DISTANCE,
        }
    }

    /// The same groups with another Neighbors distance (CellProfiler's "Within a specified
    /// distance", at least 1 px; it becomes the suffix of the Neighbors columns).
    ///
    /// # Errors
    /// When `distance` is 0.
    pub fn with_neighbors_distance(mut self, distance: usize) -> Result<Self> {
        if distance == 0 {
            return Err(Error::Invalid(
                "neighbors distance must be at least 1 pixel (CellProfiler's minimum)".to_string(),
            ));
        }
        self.neighbors_distance = distance;
        Ok(self)
    }

    /// The Neighbors distance in pixels (default [`DEFAULT_NEIGHBOR_DISTANCE`]).
    pub fn neighbors_distance(&self) -> usize {
        self.neighbors_distance
    }
    pub fn contains(&self, g: FeatureGroup) -> bool {
        self.groups.contains(&g)
    }
    pub fn groups(&self) -> impl Iterator<Item = FeatureGroup> + '_ {
        self.groups.iter().copied()
    }
}

impl FromStr for FeatureSet {
    type Err = Error;
    /// A comma-separated list of groups (case-insensitive), or `default` / `all`.
    fn from_str(s: &str) -> Result<Self> {
        let mut groups = BTreeSet::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part.eq_ignore_ascii_case("default") {
                groups.extend(FeatureGroup::DEFAULT);
            } else if part.eq_ignore_ascii_case("all") {
                groups.extend(FeatureGroup::ALL);
            } else {
                groups.insert(part.parse()?);
            }
        }
        if groups.is_empty() {
            return Err(Error::Invalid(format!(
                "--features {s:?}: name at least one group ({})",
                names(&FeatureGroup::ALL)
            )));
        }
        Ok(FeatureSet {
            groups,
            neighbors_distance: DEFAULT_NEIGHBOR_DISTANCE,
        })
    }
}

/// Core's results for the objects of one label image.
#[derive(Debug, Clone, Default)]
pub struct ObjectMeasurements {
    /// Index `i` = label `i + 1`; absent labels have `area == 0`.
    pub shapes: Vec<ShapeFeatures>,
    /// One entry per channel, in the channel order given to [`measure_objects`]; empty when
    /// the Intensity group is off.
    pub intensities: Vec<Vec<IntensityFeatures>>,
    /// Per channel, per object (index = label − 1): `Granularity_1..=16`; empty when the
    /// Granularity group is off.
    pub granularity: Vec<Vec<Vec<f64>>>,
    /// Per channel: `Granularity_1..=16` of the whole image (CellProfiler's image
    /// measurement, the Image table's `Granularity_<n>_<channel>`); empty when the
    /// Granularity group is off.
    pub image_granularity: Vec<Vec<f64>>,
    /// Per channel, per object: the radial distribution over 4 bins; empty when the
    /// RadialDistribution group is off.
    pub radial: Vec<Vec<RadialDistribution>>,
    /// Per channel, per object: Haralick features `[direction][feature]` at scale 3; empty
    /// when the Texture group is off.
    pub texture: Vec<Vec<Texture>>,
    /// Per object: the 30 Zernike features in `zernike_indexes()` order; empty when the
    /// Zernike group is off.
    pub zernike: Vec<Vec<f64>>,
    /// Per channel pair `(i, j)`, `i < j` in [`channel_pairs`] order, per object; empty when
    /// the Correlation group is off.
    pub correlation: Vec<Vec<Colocalization>>,
    /// Per object: neighbours within [`FeatureSet::neighbors_distance`] px; empty when the
    /// Neighbors group is off.
    pub neighbors: Vec<Neighbors>,
}

/// The channel pairs `(i, j)`, `i < j`, that the Correlation group measures, in column order.
pub fn channel_pairs(n: usize) -> Vec<(usize, usize)> {
    (0..n)
        .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
        .collect()
}

type ColocCol = (&'static str, bool, fn(&Colocalization) -> f64, &'static str);

/// CellProfiler's colocalisation columns: measure, channels swapped (`_B_A`), value, definition.
const COLOC_COLS: [ColocCol; 9] = [
    ("Correlation", false, |c| c.correlation, "Pearson correlation of the two channels over the object's pixels"),
    ("Slope", false, |c| c.slope, "Least-squares slope of the second channel on the first"),
    ("Overlap", false, |c| c.overlap, "Overlap coefficient sum(ab)/sqrt(sum(a^2) sum(b^2)) over pixels above 15 % of each channel's object maximum"),
    ("K", false, |c| c.k1, "K1 = sum(ab)/sum(a^2) over pixels above both thresholds"),
    ("K", true, |c| c.k2, "K2 = sum(ab)/sum(b^2) over pixels above both thresholds"),
    ("Manders", false, |c| c.manders_1, "Manders M1: share of the first channel's above-threshold intensity where the second is above its threshold too (15 % of the object maximum)"),
    ("Manders", true, |c| c.manders_2, "Manders M2: share of the second channel's above-threshold intensity where the first is above its threshold too"),
    ("RWC", false, |c| c.rwc_1, "Rank-weighted colocalisation RWC1 (Manders M1 weighted by (R - rank difference)/R)"),
    ("RWC", true, |c| c.rwc_2, "Rank-weighted colocalisation RWC2"),
];

/// Measures every object of `labels` in `images` (all of the label image's size).
///
/// # Errors
/// When an image does not have the label image's size.
pub fn measure_objects(
    labels: &Labels,
    images: &[&DynImage],
    set: &FeatureSet,
) -> Result<ObjectMeasurements> {
    for im in images {
        if (im.width(), im.height()) != (labels.width(), labels.height()) {
            return Err(Error::Invalid(format!(
                "image is {}x{} but the labels are {}x{}",
                im.width(),
                im.height(),
                labels.width(),
                labels.height()
            )));
        }
    }
    // Shapes are always computed: they decide which labels exist and are cheap.
    let shapes = measure_shape_features(labels);
    let intensities = if set.contains(FeatureGroup::Intensity) {
        // Where the objects' pixels are, found once for every channel.
        let objects = ObjectRuns::new(labels);
        images
            .iter()
            .map(|im| with_dyn_image!(im, img => measure_intensity_features_in(&objects, img.view())))
            .collect()
    } else {
        Vec::new()
    };
    let (granularity, image_granularity) = if set.contains(FeatureGroup::Granularity) {
        let params = GranularityParams::default();
        images
            .iter()
            .map(|im| {
                let g =
                    with_dyn_image!(im, img => measure_granularity(labels, img.view(), &params));
                (g.objects, g.image)
            })
            .unzip()
    } else {
        (Vec::new(), Vec::new())
    };
    let radial = if set.contains(FeatureGroup::RadialDistribution) {
        images
            .iter()
            .map(|im| {
                with_dyn_image!(im, img => measure_radial_distribution(labels, img.view(), DEFAULT_RADIAL_BINS))
            })
            .collect()
    } else {
        Vec::new()
    };
    let texture = if set.contains(FeatureGroup::Texture) {
        images
            .iter()
            .map(|im| with_dyn_image!(im, img => measure_texture(labels, img.view(), DEFAULT_TEXTURE_SCALE)))
            .collect()
    } else {
        Vec::new()
    };
    let zernike = if set.contains(FeatureGroup::Zernike) {
        measure_zernike(labels)
    } else {
        Vec::new()
    };
    let correlation = if set.contains(FeatureGroup::Correlation) {
        channel_pairs(images.len())
            .into_iter()
            .map(|(i, j)| {
                with_dyn_image!(images[i], a => with_dyn_image!(images[j], b =>
                    measure_colocalization(labels, a.view(), b.view())))
            })
            .collect()
    } else {
        Vec::new()
    };
    let neighbors = if set.contains(FeatureGroup::Neighbors) {
        measure_neighbors(labels, NeighborMethod::Within(set.neighbors_distance))
    } else {
        Vec::new()
    };
    Ok(ObjectMeasurements {
        shapes,
        intensities,
        granularity,
        image_granularity,
        radial,
        texture,
        zernike,
        correlation,
        neighbors,
    })
}

/// One documented column.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnDoc {
    pub name: String,
    /// Arrow type as written: `Float64` or `UInt32`.
    pub data_type: &'static str,
    pub unit: &'static str,
    pub definition: String,
    pub group: &'static str,
}

struct ShapeCol {
    suffix: &'static str,
    unit: &'static str,
    definition: &'static str,
    get: fn(&ShapeFeatures) -> f64,
}

const fn sc(
    suffix: &'static str,
    unit: &'static str,
    definition: &'static str,
    get: fn(&ShapeFeatures) -> f64,
) -> ShapeCol {
    ShapeCol {
        suffix,
        unit,
        definition,
        get,
    }
}

const SHAPE_COLS: [ShapeCol; 18] = [
    sc("Area", "px²", "Number of pixels in the object", |s| s.area as f64),
    sc("Perimeter", "px", "Length of the object's border: 4-connected inner border pixels weighted by their neighbour pattern (Benkrid & Crookes; skimage.measure.perimeter(image, 4), as CellProfiler 4)", |s| s.perimeter),
    sc("ConvexArea", "px²", "Pixels whose centres lie inside or on the convex hull of the object's pixels (skimage convex_hull_image)", |s| s.convex_area as f64),
    sc("Solidity", "1", "Area / ConvexArea", |s| s.solidity),
    sc("Extent", "1", "Area / BoundingBoxArea", |s| s.extent),
    sc("Eccentricity", "1", "Eccentricity of the ellipse with the same second moments: sqrt(1 − λ₂/λ₁) of the inertia tensor", |s| s.eccentricity),
    sc("MajorAxisLength", "px", "Major axis of the ellipse with the same second moments, 4·sqrt(λ₁)", |s| s.major_axis_length),
    sc("MinorAxisLength", "px", "Minor axis of the ellipse with the same second moments, 4·sqrt(λ₂)", |s| s.minor_axis_length),
    sc("Orientation", "degree", "Angle between the image's row (Y) axis and the major axis, in [−90, 90] (skimage orientation in degrees, as CellProfiler)", |s| s.orientation),
    sc("FormFactor", "1", "4π·Area / Perimeter² (1 for a disk)", |s| s.form_factor),
    sc("Compactness", "1", "Perimeter² / (4π·Area) (CellProfiler ≥ 4; 1 for a disk)", |s| s.compactness),
    sc("EulerNumber", "1", "Number of objects minus number of holes, 8-connected object", |s| s.euler_number as f64),
    sc("EquivalentDiameter", "px", "Diameter of the disk with the same area, sqrt(4·Area/π)", |s| s.equivalent_diameter),
    sc("BoundingBoxArea", "px²", "Area of the bounding box", |s| s.bbox_area as f64),
    sc("MaxFeretDiameter", "px", "Largest distance between two pixel centres of the convex hull (CellProfiler, centrosome feret_diameter)", |s| s.max_feret),
    sc("MinFeretDiameter", "px", "Smallest distance between two parallel lines that enclose the pixel centres (caliper width of the hull)", |s| s.min_feret),
    sc("Center_X", "px", "Mean column of the object's pixels", |s| s.center_x),
    sc("Center_Y", "px", "Mean row of the object's pixels", |s| s.center_y),
];

/// Reads one bounding-box coordinate.
type BoxGetter = fn(&ShapeFeatures) -> usize;

const BBOX_COLS: [(&str, &str, BoxGetter); 4] = [
    ("BoundingBoxMinimum_X", "First column of the object", |s| {
        s.bbox_min_x
    }),
    ("BoundingBoxMinimum_Y", "First row of the object", |s| {
        s.bbox_min_y
    }),
    (
        "BoundingBoxMaximum_X",
        "One past the last column of the object (exclusive, as CellProfiler)",
        |s| s.bbox_max_x,
    ),
    (
        "BoundingBoxMaximum_Y",
        "One past the last row of the object (exclusive, as CellProfiler)",
        |s| s.bbox_max_y,
    ),
];

struct IntCol {
    /// `Intensity` or `Location`.
    category: &'static str,
    feature: &'static str,
    unit: &'static str,
    definition: &'static str,
    get: fn(&IntensityFeatures) -> f64,
}

const fn ic(
    category: &'static str,
    feature: &'static str,
    unit: &'static str,
    definition: &'static str,
    get: fn(&IntensityFeatures) -> f64,
) -> IntCol {
    IntCol {
        category,
        feature,
        unit,
        definition,
        get,
    }
}

const SCALED: &str = "intensity (pixel / type max)";

const INTENSITY_COLS: [IntCol; 19] = [
    ic("Intensity", "IntegratedIntensity", SCALED, "Sum of the object's pixel values", |o| o.integrated),
    ic("Intensity", "MeanIntensity", SCALED, "Mean of the object's pixel values", |o| o.mean),
    ic("Intensity", "StdIntensity", SCALED, "Population standard deviation of the object's pixel values", |o| o.std),
    ic("Intensity", "MinIntensity", SCALED, "Smallest pixel value in the object", |o| o.min),
    ic("Intensity", "MaxIntensity", SCALED, "Largest pixel value in the object", |o| o.max),
    ic("Intensity", "IntegratedIntensityEdge", SCALED, "Sum over the object's edge pixels (pixels with another label or background among their 4 neighbours; the image border is not an edge; CellProfiler 4's find_boundaries(mode=\"inner\"))", |o| o.integrated_edge),
    ic("Intensity", "MeanIntensityEdge", SCALED, "Mean over the object's edge pixels", |o| o.mean_edge),
    ic("Intensity", "StdIntensityEdge", SCALED, "Population standard deviation over the edge pixels", |o| o.std_edge),
    ic("Intensity", "MinIntensityEdge", SCALED, "Smallest edge pixel value", |o| o.min_edge),
    ic("Intensity", "MaxIntensityEdge", SCALED, "Largest edge pixel value", |o| o.max_edge),
    ic("Intensity", "MassDisplacement", "px", "Distance between the centroid and the intensity-weighted centroid", |o| o.mass_displacement),
    ic("Intensity", "LowerQuartileIntensity", SCALED, "25th percentile, CellProfiler's interpolation (position n·0.25 in the sorted values)", |o| o.lower_quartile),
    ic("Intensity", "MedianIntensity", SCALED, "Median, CellProfiler's interpolation (position n·0.5 in the sorted values)", |o| o.median),
    ic("Intensity", "MADIntensity", SCALED, "Median absolute deviation from the median (same interpolation)", |o| o.mad),
    ic("Intensity", "UpperQuartileIntensity", SCALED, "75th percentile, CellProfiler's interpolation (position n·0.75)", |o| o.upper_quartile),
    ic("Location", "CenterMassIntensity_X", "px", "Intensity-weighted mean column", |o| o.center_mass_x),
    ic("Location", "CenterMassIntensity_Y", "px", "Intensity-weighted mean row", |o| o.center_mass_y),
    ic("Location", "MaxIntensity_X", "px", "Column of the brightest pixel (first in raster order on ties)", |o| o.max_x),
    ic("Location", "MaxIntensity_Y", "px", "Row of the brightest pixel (first in raster order on ties)", |o| o.max_y),
];

/// Every measurement column for `object` with these channel names, in table order.
pub fn column_docs(object: &str, channels: &[String], set: &FeatureSet) -> Vec<ColumnDoc> {
    let mut out = Vec::new();
    if set.contains(FeatureGroup::AreaShape) {
        for c in &SHAPE_COLS {
            out.push(ColumnDoc {
                name: format!("{object}_AreaShape_{}", c.suffix),
                data_type: "Float64",
                unit: c.unit,
                definition: c.definition.to_string(),
                group: "AreaShape",
            });
        }
        for (suffix, def, _) in &BBOX_COLS {
            out.push(ColumnDoc {
                name: format!("{object}_AreaShape_{suffix}"),
                data_type: "UInt32",
                unit: "px",
                definition: def.to_string(),
                group: "AreaShape",
            });
        }
    }
    if set.contains(FeatureGroup::Location) {
        for (axis, what) in [("X", "column"), ("Y", "row")] {
            out.push(ColumnDoc {
                name: format!("{object}_Location_Center_{axis}"),
                data_type: "Float64",
                unit: "px",
                definition: format!("Centroid {what} (mean {what} of the object's pixels)"),
                group: "Location",
            });
        }
    }
    if set.contains(FeatureGroup::Intensity) {
        for ch in channels {
            for c in &INTENSITY_COLS {
                out.push(ColumnDoc {
                    name: format!("{object}_{}_{}_{ch}", c.category, c.feature),
                    data_type: "Float64",
                    unit: c.unit,
                    definition: format!("{} in channel {ch}", c.definition),
                    group: "Intensity",
                });
            }
        }
    }
    out.extend(distribution_docs(object, channels, set));
    out
}

/// Number of `Granularity_<n>` columns per channel (CellProfiler's default spectrum length).
const GRANULARITY_STEPS: usize = 16;

/// RadialDistribution features: name, unit, definition, value of bin `b`.
type RadialCol = (
    &'static str,
    &'static str,
    &'static str,
    fn(&RadialDistribution, usize) -> f64,
);

const RADIAL_COLS: [RadialCol; 3] = [
    (
        "FracAtD",
        "1",
        "Share of the object's summed intensity in ring",
        |r, b| r.frac_at_d[b],
    ),
    (
        "MeanFrac",
        "1",
        "FracAtD divided by the ring's share of the object's pixels, for ring",
        |r, b| r.mean_frac[b],
    ),
    (
        "RadialCV",
        "1",
        "Coefficient of variation of the mean intensity over 8 sectors around the centre, in ring",
        |r, b| r.radial_cv[b],
    ),
];

/// The Image table's granularity columns, `Granularity_<n>_<channel>` (CellProfiler's
/// MeasureGranularity image measurement: the spectrum of the whole field, means over the
/// subsampled, background-corrected image), when the Granularity group is in `set`.
pub fn image_granularity_docs(channels: &[String], set: &FeatureSet) -> Vec<ColumnDoc> {
    let mut out = Vec::new();
    if set.contains(FeatureGroup::Granularity) {
        for ch in channels {
            for n in 1..=GRANULARITY_STEPS {
                out.push(ColumnDoc {
                    name: format!("Granularity_{n}_{ch}"),
                    data_type: "Float64",
                    unit: "% of the image's mean",
                    definition: format!("Drop of the field's mean intensity in channel {ch} between openings by reconstruction of size {} and {n}, over the background-corrected, 4x subsampled image, in percent of its starting mean (CellProfiler MeasureGranularity, image measurement); null when the field was not measured", n - 1),
                    group: "Granularity",
                });
            }
        }
    }
    out
}

/// Appends the columns of [`image_granularity_docs`] to an Image table: `per_field[row]` is
/// that field's [`ObjectMeasurements::image_granularity`] (empty for a field that was not
/// measured, which gets nulls).
pub fn add_image_granularity_columns(
    b: &mut TableBuilder,
    channels: &[String],
    set: &FeatureSet,
    per_field: &[&[Vec<f64>]],
) {
    let docs = image_granularity_docs(channels, set);
    let mut doc = docs.iter();
    for ci in 0..channels.len() {
        for n in 0..GRANULARITY_STEPS {
            let Some(d) = doc.next() else { return };
            let vals = per_field
                .iter()
                .map(|g| g.get(ci).and_then(|s| s.get(n)).copied())
                .collect();
            b.opt_f64(&d.name, vals);
            b.doc(&doc_text(d));
        }
    }
}

/// Docs of the Granularity and RadialDistribution columns, in table order.
fn distribution_docs(object: &str, channels: &[String], set: &FeatureSet) -> Vec<ColumnDoc> {
    let mut out = Vec::new();
    if set.contains(FeatureGroup::Granularity) {
        for ch in channels {
            for n in 1..=GRANULARITY_STEPS {
                out.push(ColumnDoc {
                    name: format!("{object}_Granularity_{n}_{ch}"),
                    data_type: "Float64",
                    unit: "% of the object's mean",
                    definition: format!("Drop of the object's mean intensity in channel {ch} between openings by reconstruction of size {} and {n} of the background-corrected, 4x subsampled image (CellProfiler MeasureGranularity)", n - 1),
                    group: "Granularity",
                });
            }
        }
    }
    if set.contains(FeatureGroup::RadialDistribution) {
        let bins = DEFAULT_RADIAL_BINS;
        for ch in channels {
            for (feature, unit, def, _) in &RADIAL_COLS {
                for b in 1..=bins {
                    out.push(ColumnDoc {
                        name: format!("{object}_RadialDistribution_{feature}_{ch}_{b}of{bins}"),
                        data_type: "Float64",
                        unit,
                        definition: format!("{def} {b} of {bins} (normalised distance from the centre to the edge) in channel {ch} (CellProfiler MeasureObjectIntensityDistribution)"),
                        group: "RadialDistribution",
                    });
                }
            }
        }
    }
    if set.contains(FeatureGroup::Texture) {
        let scale = DEFAULT_TEXTURE_SCALE;
        for ch in channels {
            for dir in 0..4 {
                for f in HARALICK_FEATURES {
                    out.push(ColumnDoc {
                        name: format!("{object}_Texture_{f}_{ch}_{scale}_0{dir}_256"),
                        data_type: "Float64",
                        unit: "1",
                        definition: format!("Haralick {f} of the grey-level co-occurrence matrix at distance {scale}, direction 0{dir} (00 horizontal, 01 down-right, 02 vertical, 03 down-left), 256 levels, in channel {ch} (CellProfiler MeasureTexture); NaN when the object has no pixel pair at that distance"),
                        group: "Texture",
                    });
                }
            }
        }
    }
    if set.contains(FeatureGroup::Zernike) {
        for (n, m) in zernike_indexes() {
            out.push(ColumnDoc {
                name: format!("{object}_AreaShape_Zernike_{n}_{m}"),
                data_type: "Float64",
                unit: "1",
                definition: format!("Magnitude of the Zernike moment n={n}, m={m} of the object's mask over its minimum enclosing circle, divided by the circle's area (CellProfiler MeasureObjectSizeShape)"),
                group: "Zernike",
            });
        }
    }
    if set.contains(FeatureGroup::Correlation) {
        for (i, j) in channel_pairs(channels.len()) {
            for (measure, swapped, _, def) in &COLOC_COLS {
                let (a, b) = if *swapped {
                    (&channels[j], &channels[i])
                } else {
                    (&channels[i], &channels[j])
                };
                out.push(ColumnDoc {
                    name: format!("{object}_Correlation_{measure}_{a}_{b}"),
                    data_type: "Float64",
                    unit: "1",
                    definition: format!(
                        "{def}; channels {} and {} (CellProfiler MeasureColocalization)",
                        channels[i], channels[j]
                    ),
                    group: "Correlation",
                });
            }
        }
    }
    if set.contains(FeatureGroup::Neighbors) {
        let d = set.neighbors_distance;
        for (feature, data_type, unit, def, _) in &NEIGHBOR_COLS {
            out.push(ColumnDoc {
                name: format!("{object}_Neighbors_{feature}_{d}"),
                data_type,
                unit,
                definition: format!("{def} (CellProfiler MeasureObjectNeighbors, within {d} px: another object with a pixel at most {d} px from one of this object's pixels is a neighbour)"),
                group: "Neighbors",
            });
        }
    }
    out
}

/// Neighbors columns: feature, Arrow type, unit, definition, value (integers for `UInt32`).
type NeighborCol = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    fn(&Neighbors) -> f64,
);

const NEIGHBOR_COLS: [NeighborCol; 7] = [
    ("NumberOfNeighbors", "UInt32", "1", "Number of other objects within the distance", |n| n.number_of_neighbors as f64),
    ("PercentTouching", "Float64", "%", "Share of the object's boundary pixels with another object within the distance + 0.5 px", |n| n.percent_touching),
    ("FirstClosestObjectNumber", "UInt32", "1", "ObjectNumber of the object whose centroid is closest (0 when there is no other object)", |n| n.first_closest_object_number as f64),
    ("FirstClosestDistance", "Float64", "px", "Centroid distance to the closest object (NaN when there is none)", |n| n.first_closest_distance),
    ("SecondClosestObjectNumber", "UInt32", "1", "ObjectNumber of the object whose centroid is second closest (0 when there is none)", |n| n.second_closest_object_number as f64),
    ("SecondClosestDistance", "Float64", "px", "Centroid distance to the second closest object (NaN when there is none)", |n| n.second_closest_distance),
    ("AngleBetweenNeighbors", "Float64", "degree", "Angle at the object's centroid between the vectors to the first and second closest centroids (NaN without two other objects)", |n| n.angle_between_neighbors),
];

/// Appends the Granularity, RadialDistribution, Texture and Zernike columns of the objects
/// `keep` (when their groups are in `set`), after those of [`add_object_columns`], with their
/// docs.
pub fn add_distribution_columns(
    b: &mut TableBuilder,
    object: &str,
    channels: &[String],
    set: &FeatureSet,
    m: &ObjectMeasurements,
    keep: &[usize],
) {
    let docs = distribution_docs(object, channels, set);
    let mut doc = docs.iter();
    let mut push = |b: &mut TableBuilder, vals: Vec<f64>| {
        if let Some(d) = doc.next() {
            b.f64(&d.name, vals);
            b.doc(&doc_text(d));
        }
    };
    if set.contains(FeatureGroup::Granularity) {
        for ci in 0..channels.len() {
            for n in 0..GRANULARITY_STEPS {
                let vals = match m.granularity.get(ci) {
                    Some(g) => keep
                        .iter()
                        .filter_map(|&i| g.get(i))
                        .map(|v| v.get(n).copied().unwrap_or(f64::NAN))
                        .collect(),
                    None => Vec::new(),
                };
                push(b, vals);
            }
        }
    }
    if set.contains(FeatureGroup::RadialDistribution) {
        for ci in 0..channels.len() {
            for (_, _, _, get) in &RADIAL_COLS {
                for bin in 0..DEFAULT_RADIAL_BINS {
                    let vals = match m.radial.get(ci) {
                        Some(r) => keep
                            .iter()
                            .filter_map(|&i| r.get(i))
                            .map(|r| get(r, bin))
                            .collect(),
                        None => Vec::new(),
                    };
                    push(b, vals);
                }
            }
        }
    }
    if set.contains(FeatureGroup::Texture) {
        for ci in 0..channels.len() {
            for dir in 0..4 {
                for f in 0..HARALICK_FEATURES.len() {
                    let vals = match m.texture.get(ci) {
                        Some(t) => keep
                            .iter()
                            .filter_map(|&i| t.get(i))
                            .map(|t| t[dir][f])
                            .collect(),
                        None => Vec::new(),
                    };
                    push(b, vals);
                }
            }
        }
    }
    if set.contains(FeatureGroup::Zernike) {
        for k in 0..zernike_indexes().len() {
            let vals = keep
                .iter()
                .filter_map(|&i| m.zernike.get(i))
                .map(|z| z.get(k).copied().unwrap_or(f64::NAN))
                .collect();
            push(b, vals);
        }
    }
    if set.contains(FeatureGroup::Correlation) {
        for p in 0..channel_pairs(channels.len()).len() {
            for (_, _, get, _) in &COLOC_COLS {
                let vals = match m.correlation.get(p) {
                    Some(c) => keep.iter().filter_map(|&i| c.get(i)).map(get).collect(),
                    None => Vec::new(),
                };
                push(b, vals);
            }
        }
    }
    if set.contains(FeatureGroup::Neighbors) {
        for (_, data_type, _, _, get) in &NEIGHBOR_COLS {
            let Some(d) = doc.next() else { break };
            let vals = keep.iter().filter_map(|&i| m.neighbors.get(i)).map(get);
            if *data_type == "UInt32" {
                b.u32(&d.name, vals.map(|v| v as u32).collect());
            } else {
                b.f64(&d.name, vals.collect());
            }
            b.doc(&doc_text(d));
        }
    }
}

fn doc_text(d: &ColumnDoc) -> String {
    format!("{} [{}]", d.definition, d.unit)
}

/// Appends the measurement columns of the objects `keep` (indices into `shapes`) to `b`,
/// in the order of [`column_docs`], each with its definition and unit as the column's
/// description. With no objects the columns are still added (empty), so a schema can be
/// built from an empty measurement.
pub fn add_object_columns(
    b: &mut TableBuilder,
    object: &str,
    channels: &[String],
    set: &FeatureSet,
    shapes: &[ShapeFeatures],
    intensities: &[Vec<IntensityFeatures>],
    keep: &[usize],
) {
    let docs = column_docs(object, channels, set);
    let mut doc = docs.iter();
    let mut next_doc = |b: &mut TableBuilder| {
        if let Some(d) = doc.next() {
            b.doc(&doc_text(d));
        }
    };
    let shape_col = |f: &dyn Fn(&ShapeFeatures) -> f64| -> Vec<f64> {
        keep.iter().filter_map(|&i| shapes.get(i)).map(f).collect()
    };
    if set.contains(FeatureGroup::AreaShape) {
        for c in &SHAPE_COLS {
            b.f64(
                &format!("{object}_AreaShape_{}", c.suffix),
                shape_col(&c.get),
            );
            next_doc(b);
        }
        for (suffix, _, get) in &BBOX_COLS {
            b.u32(
                &format!("{object}_AreaShape_{suffix}"),
                keep.iter()
                    .filter_map(|&i| shapes.get(i))
                    .map(|s| get(s) as u32)
                    .collect(),
            );
            next_doc(b);
        }
    }
    if set.contains(FeatureGroup::Location) {
        b.f64(
            &format!("{object}_Location_Center_X"),
            shape_col(&|s| s.center_x),
        );
        next_doc(b);
        b.f64(
            &format!("{object}_Location_Center_Y"),
            shape_col(&|s| s.center_y),
        );
        next_doc(b);
    }
    if set.contains(FeatureGroup::Intensity) {
        for (ci, ch) in channels.iter().enumerate() {
            for c in &INTENSITY_COLS {
                let vals: Vec<f64> = match intensities.get(ci) {
                    Some(v) => keep.iter().filter_map(|&i| v.get(i)).map(c.get).collect(),
                    None => Vec::new(),
                };
                b.f64(&format!("{object}_{}_{}_{ch}", c.category, c.feature), vals);
                next_doc(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipscope_image::Image;

    #[test]
    fn feature_sets_parse() {
        let s: FeatureSet = "areashape, Intensity".parse().unwrap();
        assert!(s.contains(FeatureGroup::AreaShape) && !s.contains(FeatureGroup::Location));
        assert_eq!(
            "default".parse::<FeatureSet>().unwrap(),
            FeatureSet::default()
        );
        assert_eq!("all".parse::<FeatureSet>().unwrap(), FeatureSet::all());
        assert!(!FeatureSet::default().contains(FeatureGroup::Granularity));
        let e = "Children".parse::<FeatureSet>().unwrap_err().to_string();
        assert!(e.contains("not implemented"), "{e}");
        assert!("".parse::<FeatureSet>().is_err());
        assert!("Shape".parse::<FeatureSet>().is_err());
    }

    #[test]
    fn columns_match_their_docs() {
        let labels =
            Labels::from_image(Image::from_vec(4, 2, vec![1u32, 1, 0, 2, 1, 0, 0, 2]).unwrap());
        let img =
            DynImage::U8(Image::from_vec(4, 2, vec![10u8, 20, 30, 40, 50, 60, 70, 80]).unwrap());
        let set = FeatureSet::all();
        let m = measure_objects(&labels, &[&img], &set).unwrap();
        let channels = vec!["DNA".to_string()];
        let mut b = TableBuilder::new();
        add_object_columns(
            &mut b,
            "Nuclei",
            &channels,
            &set,
            &m.shapes,
            &m.intensities,
            &[0, 1],
        );
        add_distribution_columns(&mut b, "Nuclei", &channels, &set, &m, &[0, 1]);
        let batch = b.finish().unwrap();
        let docs = column_docs("Nuclei", &channels, &set);
        let schema = batch.schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let doc_names: Vec<&str> = docs.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, doc_names);
        assert_eq!(batch.num_rows(), 2);
        assert!(names.contains(&"Nuclei_Intensity_MedianIntensity_DNA"));
        assert!(names.contains(&"Nuclei_Location_MaxIntensity_X_DNA"));
        assert!(names.contains(&"Nuclei_Granularity_16_DNA"));
        assert!(names.contains(&"Nuclei_RadialDistribution_RadialCV_DNA_4of4"));
        assert!(names.contains(&"Nuclei_Texture_InfoMeas2_DNA_3_03_256"));
        assert!(names.contains(&"Nuclei_AreaShape_Zernike_9_9"));
        assert!(names.contains(&"Nuclei_Neighbors_AngleBetweenNeighbors_5"));
        for d in docs.iter().filter(|d| d.group == "Neighbors") {
            let f = schema.field_with_name(&d.name).unwrap();
            assert_eq!(f.data_type().to_string(), d.data_type, "{}", d.name);
        }
        let wrong = DynImage::U8(Image::new(3, 2, 0u8));
        assert!(measure_objects(&labels, &[&wrong], &set).is_err());
    }

    #[test]
    fn neighbors_distance_is_the_column_suffix() {
        // Two 1-px objects 3 px apart: neighbours within 3 px, not within 2 px.
        let labels = Labels::from_image(Image::from_vec(4, 1, vec![1u32, 0, 0, 2]).unwrap());
        let img = DynImage::U8(Image::from_vec(4, 1, vec![1u8, 2, 3, 4]).unwrap());
        let channels = vec!["DNA".to_string()];
        let count = |d: usize| {
            let set = "neighbors"
                .parse::<FeatureSet>()
                .unwrap()
                .with_neighbors_distance(d)
                .unwrap();
            let m = measure_objects(&labels, &[&img], &set).unwrap();
            let mut b = TableBuilder::new();
            add_distribution_columns(&mut b, "Nuclei", &channels, &set, &m, &[0, 1]);
            let batch = b.finish().unwrap();
            let name = format!("Nuclei_Neighbors_NumberOfNeighbors_{d}");
            let col = batch
                .column_by_name(&name)
                .unwrap_or_else(|| panic!("{name} missing"));
            let col = col
                .as_any()
                .downcast_ref::<ipscope_table::arrow_array::UInt32Array>()
                .unwrap();
            assert!(
                batch
                    .column_by_name("Nuclei_Neighbors_NumberOfNeighbors_5")
                    .is_none()
                    || d == 5
            );
            (col.value(0), col.value(1))
        };
        assert_eq!(count(3), (1, 1));
        assert_eq!(count(2), (0, 0));
        assert_eq!(FeatureSet::default().neighbors_distance(), 5);
        assert!(FeatureSet::default().with_neighbors_distance(0).is_err());
    }

    #[test]
    fn image_granularity_columns_follow_the_group() {
        let channels = vec!["DNA".to_string(), "OCT4".to_string()];
        assert!(image_granularity_docs(&channels, &FeatureSet::default()).is_empty());
        let set: FeatureSet = "granularity".parse().unwrap();
        let g = vec![(1..=16).map(f64::from).collect::<Vec<f64>>(); 2];
        let mut b = TableBuilder::new();
        add_image_granularity_columns(&mut b, &channels, &set, &[g.as_slice(), &[]]);
        let batch = b.finish().unwrap();
        assert_eq!(batch.num_columns(), 32);
        let col = batch
            .column_by_name("Granularity_3_OCT4")
            .unwrap()
            .as_any()
            .downcast_ref::<ipscope_table::arrow_array::Float64Array>()
            .unwrap();
        assert_eq!(col.value(0), 3.0);
        assert!(
            ipscope_table::arrow_array::Array::is_null(col, 1),
            "a field without values is null"
        );
    }

    #[test]
    fn correlation_columns_cover_each_channel_pair() {
        let labels =
            Labels::from_image(Image::from_vec(4, 2, vec![1u32, 1, 0, 2, 1, 0, 0, 2]).unwrap());
        let a =
            DynImage::U8(Image::from_vec(4, 2, vec![10u8, 20, 30, 40, 50, 60, 70, 80]).unwrap());
        let b =
            DynImage::U16(Image::from_vec(4, 2, vec![5u16, 9, 1, 400, 600, 2, 3, 100]).unwrap());
        let set: FeatureSet = "correlation".parse().unwrap();
        let m = measure_objects(&labels, &[&a, &b], &set).unwrap();
        let channels = vec!["DNA".to_string(), "OCT4".to_string()];
        let mut tb = TableBuilder::new();
        add_object_columns(
            &mut tb,
            "Nuclei",
            &channels,
            &set,
            &m.shapes,
            &m.intensities,
            &[0, 1],
        );
        add_distribution_columns(&mut tb, "Nuclei", &channels, &set, &m, &[0, 1]);
        let batch = tb.finish().unwrap();
        let schema = batch.schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let docs = column_docs("Nuclei", &channels, &set);
        let doc_names: Vec<&str> = docs.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, doc_names);
        for n in [
            "Nuclei_Correlation_Correlation_DNA_OCT4",
            "Nuclei_Correlation_Manders_DNA_OCT4",
            "Nuclei_Correlation_Manders_OCT4_DNA",
            "Nuclei_Correlation_RWC_OCT4_DNA",
            "Nuclei_Correlation_K_OCT4_DNA",
        ] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
        assert_eq!(
            names.iter().filter(|n| n.contains("Correlation_")).count(),
            9
        );
    }
}
