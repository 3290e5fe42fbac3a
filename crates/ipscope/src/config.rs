//! The run configuration (`--config ipscope.toml`).
//!
//! Every key is optional; missing keys take the documented defaults. Command-line flags
//! override the file.
//!
//! ```toml
//! [input]
//! max_pixels = 268435456       # refuse images larger than this before decoding
//! pattern = '(?P<Well>[A-P][0-9]{2})_s(?P<Site>[0-9]+)_(?P<Channel>w[0-9])\.tif'
//!
//! [channels]                   # raw channel id = name (same as --channel w1=DNA)
//! w1 = "DNA"
//! w2 = "OCT4"
//!
//! [measure]
//! features = ["AreaShape", "Location", "Intensity"]
//! neighbors_distance = 5       # Neighbors group: "within a specified distance" (px)
//!
//! [nuclei]                     # see ipscope_core::NucleiParams
//! smoothing_sigma = 1.0
//! min_diameter = 8.0
//! max_diameter = 80.0
//!
//! [illumination]               # off by default; run --illum turns it on
//! enabled = true
//! channels = ["DNA"]           # names or ids; empty = every non-transmitted channel
//! intensity = "background"     # block minima (block_size = 60 px), or "regular"
//! method = "polynomial"        # or "median", "gaussian", "none"
//! # size = 20.0                # median/gaussian size (px); unset = min(30, longest side / 40)
//!
//! [neurite]                    # run --assay neurite
//! ridge = "sato"               # or "frangi", "meijering" (ipscope_core::ops::ridge)
//!
//! [run]
//! device = "cpu"               # where nuclei are segmented: "cpu", "gpu" or "auto" (run/segment --device wins)
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use ipscope_core::NucleiParams;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Input options of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InputConfig {
    /// Images with more pixels than this are refused before their pixels are allocated.
    pub max_pixels: u64,
    /// A file-name regex with named groups (Plate, Well or Row+Column, Site, Channel, Z, T)
    /// instead of the built-in vendor patterns.
    pub pattern: Option<String>,
}

impl Default for InputConfig {
    fn default() -> Self {
        InputConfig {
            max_pixels: ipscope_io::ReadOptions::default().max_pixels,
            pattern: None,
        }
    }
}

/// Which measurements the object tables get.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MeasureConfig {
    /// Feature groups: `AreaShape`, `Location`, `Intensity` by default; `Texture`, `Zernike`,
    /// `Correlation`, `Granularity`, `RadialDistribution` and `Neighbors` on request.
    pub features: Vec<crate::features::FeatureGroup>,
    /// Neighbors: CellProfiler's "Within a specified distance" in pixels (default 5, at
    /// least 1); it is the suffix of the columns, `Neighbors_NumberOfNeighbors_<distance>`.
    pub neighbors_distance: usize,
}

impl Default for MeasureConfig {
    fn default() -> Self {
        MeasureConfig {
            features: crate::features::FeatureSet::default().groups().collect(),
            neighbors_distance: ipscope_core::ops::measure::DEFAULT_NEIGHBOR_DISTANCE,
        }
    }
}

impl MeasureConfig {
    /// The groups as a [`crate::features::FeatureSet`].
    pub fn feature_set(&self) -> Result<crate::features::FeatureSet> {
        let names: Vec<&str> = self.features.iter().map(|g| g.name()).collect();
        let set: crate::features::FeatureSet = names.join(",").parse()?;
        set.with_neighbors_distance(self.neighbors_distance)
            .map_err(|e| Error::Invalid(format!("[measure] neighbors_distance: {e}")))
    }
}

/// Everything that decides a run's numbers, recorded in the manifest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub input: InputConfig,
    /// Raw channel id → name, as `--channel`.
    pub channels: BTreeMap<String, String>,
    pub nuclei: NucleiParams,
    /// Cells grown from the nuclei into the channel named `NAME:cells` (`[cells]`: method
    /// propagation | watershed | distance, and its settings; see
    /// [`ipscope_core::assays::cells::CellsParams`]). Used only when a channel has that role.
    pub cells: ipscope_core::assays::cells::CellsParams,
    pub measure: MeasureConfig,
    /// Colony segmentation (`segment --object colonies`, the colony tables).
    pub colonies: ipscope_core::assays::colonies::ColonyParams,
    /// Thresholds of the rule-based colony grade.
    pub colony_grades: ipscope_core::assays::colonies::GradeRules,
    /// Disease-model tables (`[disease]`, see [`crate::disease::DiseaseConfig`]).
    pub disease: crate::disease::DiseaseConfig,
    /// Image QC of every field (`[qc]`, see [`crate::qc_run::QcConfig`]).
    pub qc: crate::qc_run::QcConfig,
    /// Segment colonies in `run` from `nuclei` or `brightfield` (unset: no colonies; the same
    /// as `run --colonies`).
    pub colonies_from: Option<crate::colony_run::ColonySource>,
    /// Marker positivity gate (`[markers]`, see [`crate::marker_run`]).
    pub markers: crate::marker_run::MarkerConfig,
    /// Acceptance criteria on markers' percent positive (`[[acceptance]]`).
    pub acceptance: Vec<crate::marker_run::Acceptance>,
    /// The neurite assay's options.
    pub neurite: NeuriteConfig,
    /// Illumination correction before segmentation (`[illumination]`, off by default; see
    /// [`crate::illum_run::IlluminationConfig`]).
    pub illumination: crate::illum_run::IlluminationConfig,
    /// How `ipscope run` runs (`[run]`).
    pub run: RunConfig,
}

/// `[run]`: how `ipscope run` runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Where nuclei are segmented, as `run --device` and `segment --device` (which win over
    /// this key): `"cpu"` (the default, the reference), `"gpu"` (an error when there is
    /// none, naming this key and the file) or `"auto"`. The CLI copies it into [`crate::pipeline::RunOptions::device`], which is what a run uses,
    /// and records the choice here in the manifest's parameters (the device picked is
    /// `machine.device`). Not part of the resume fingerprint: the device picked is.
    pub device: ipscope_gpu::DeviceChoice,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            device: ipscope_gpu::DeviceChoice::Cpu,
        }
    }
}

/// Options of `run --assay neurite`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NeuriteConfig {
    /// Ridge filter for the neurites: `"sato"` (default), `"frangi"` or `"meijering"`.
    pub ridge: ipscope_core::ops::ridge::RidgeFilter,
}

impl Config {
    /// Reads a TOML configuration file.
    pub fn from_file(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        toml::from_str(&text)
            .map_err(|e| Error::Invalid(format!("{}: invalid configuration: {e}", path.display())))
    }

    /// The configuration as TOML, every key included.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

/// What one `[section]` of the configuration file holds, as `ipscope config --default`
/// prints it: a line above the header, a line above each key, and commented examples of the
/// keys that are unset or empty by default. Section `""` is the top level.
#[derive(Debug, Clone, Copy)]
pub struct SectionDocs {
    /// The section as its header names it (`"markers.gate"`); `""` for the top level.
    pub section: &'static str,
    /// What the section is for, printed above its header.
    pub doc: &'static str,
    /// `(key, doc)`: one line each, printed above the key.
    pub keys: &'static [(&'static str, &'static str)],
    /// `(key, value)`: keys unset (or empty) by default, printed commented out inside the
    /// section, below their doc, so that uncommenting one in place sets it.
    pub examples: &'static [(&'static str, &'static str)],
}

impl InputConfig {
    /// What each `[input]` key means (see [`SectionDocs`]).
    pub const KEY_DOCS: &'static [(&'static str, &'static str)] = &[
        (
            "max_pixels",
            "images with more pixels than this are refused before their pixels are allocated",
        ),
        (
            "pattern",
            "file-name regex with named groups (Plate, Well or Row+Column, Site, Channel, Z, T) instead of the built-in vendor patterns; unset = built-in",
        ),
    ];
}

impl MeasureConfig {
    /// What each `[measure]` key means (see [`SectionDocs`]).
    pub const KEY_DOCS: &'static [(&'static str, &'static str)] = &[
        (
            "features",
            "CellProfiler measurement groups of the object tables: AreaShape, Location, Intensity (default) and on request Texture, Zernike, Correlation, Granularity, RadialDistribution, Neighbors",
        ),
        (
            "neighbors_distance",
            "Neighbors: MeasureObjectNeighbors' \"within a specified distance\" (px, at least 1); the suffix of Neighbors_*_<distance>",
        ),
    ];
}

impl RunConfig {
    /// What each `[run]` key means (see [`SectionDocs`]).
    pub const KEY_DOCS: &'static [(&'static str, &'static str)] = &[(
        "device",
        "where `ipscope run` segments nuclei (and `ipscope segment`): cpu (the reference) | gpu (an error when there is none) | auto (a GPU when there is one); --device wins",
    )];
}

impl NeuriteConfig {
    /// What each `[neurite]` key means (see [`SectionDocs`]).
    pub const KEY_DOCS: &'static [(&'static str, &'static str)] = &[(
        "ridge",
        "ridge filter that finds the neurites: sato | frangi | meijering (skimage.filters equivalents)",
    )];
}

/// `[nuclei]`: [`NucleiParams`] (its docs say more).
const NUCLEI_DOCS: &[(&str, &str)] = &[
    ("smoothing_sigma", "Gaussian sigma (px) before thresholding; 0 = none"),
    (
        "threshold_method",
        "field threshold (CellProfiler's thresholding method): li | otsu | otsu3_foreground | otsu3_background | triangle | robust_background | local",
    ),
    (
        "threshold_log",
        "threshold the log of the intensities (CellProfiler's \"log transform before thresholding\")",
    ),
    ("local_block_size", "window (odd, px) of threshold_method = \"local\""),
    (
        "local_offset",
        "offset subtracted from the local threshold (0..1 scale)",
    ),
    (
        "threshold_correction",
        "factor applied to the threshold (CellProfiler's threshold correction factor)",
    ),
    ("threshold_min", "lower bound of the corrected threshold (0..1 scale)"),
    ("threshold_max", "upper bound of the corrected threshold (0..1 scale)"),
    (
        "min_diameter",
        "smallest nucleus equivalent diameter (px); also sets the declumping scale (CellProfiler's typical diameter, min)",
    ),
    (
        "max_diameter",
        "largest nucleus equivalent diameter (px; CellProfiler's typical diameter, max)",
    ),
    ("fill_holes", "fill holes inside objects"),
    ("declump", "split touching nuclei"),
    (
        "declump_method",
        "how touching nuclei are split: hybrid (intensity x shape) | intensity (CellProfiler's default: bright centres) | shape (distance transform)",
    ),
    (
        "seed_min_depth",
        "hybrid declumping: smallest dip between two maxima, as a fraction of the lower one, that keeps them as two seeds",
    ),
    (
        "min_seed_distance",
        "minimum distance (px, Chebyshev) between declumping seeds; unset = round(min_diameter / 2)",
    ),
    ("exclude_border", "drop objects touching the image border"),
    (
        "auto_scale",
        "estimate the nucleus diameter per field (round objects' inscribed radius) and scale declumping and size range to it",
    ),
    (
        "background_radius",
        "radius (px) of the grey opening subtracted before thresholding (top-hat); 0 = none",
    ),
    (
        "object_contrast",
        "cut each object at this fraction of its own contrast (90th percentile over background), never below the field threshold; 0 = field threshold only",
    ),
    (
        "outline_contrast",
        "after declumping, grow each object out to this lower fraction of its contrast (CellProfiler-like outlines); 0 = keep the object_contrast outlines",
    ),
    (
        "outline_max_growth",
        "largest growth (px) of that outline step; 1 = one 4-connected ring; 0 = no growth",
    ),
];

/// `[cells]`: [`ipscope_core::assays::cells::CellsParams`].
const CELLS_DOCS: &[(&str, &str)] = &[
    (
        "method",
        "propagation (CellProfiler's IdentifySecondaryObjects Propagation) | watershed (of the gradient) | distance (fixed growth, image ignored)",
    ),
    ("regularization", "propagation's lambda (CellProfiler's regularization factor)"),
    ("distance", "growth (px) of method = \"distance\""),
    (
        "threshold_method",
        "threshold of the cell stain: li | otsu | otsu3_foreground | otsu3_background | triangle | robust_background | local",
    ),
    ("threshold_correction", "factor applied to the cell-stain threshold"),
    ("smoothing_sigma", "Gaussian sigma (px) before thresholding; 0 = none"),
    ("fill_holes", "fill holes inside each cell"),
];

/// `[colonies]`: [`ipscope_core::assays::colonies::ColonyParams`].
const COLONIES_DOCS: &[(&str, &str)] = &[
    (
        "link_distance",
        "from nuclei: nuclei whose edges are at most this far apart (px) join one colony",
    ),
    ("min_nuclei", "from nuclei: colonies with fewer nuclei are dropped"),
    ("min_area", "colonies smaller than this (px) are dropped"),
    (
        "texture_window",
        "transmitted light: window (odd, px) of the local standard deviation",
    ),
    (
        "texture_smoothing",
        "transmitted light: window (odd, px) over which the local standard deviation is averaged; 1 = none",
    ),
    (
        "flatfield_window",
        "transmitted light: window (odd, px) of the flat-field local mean",
    ),
    (
        "closing_radius",
        "transmitted light: closing radius (px) of the texture mask",
    ),
    (
        "detect_well",
        "transmitted light: find the circular well and ignore everything outside it",
    ),
    (
        "well_margin",
        "fraction of the well radius kept (leaves out the rim)",
    ),
    (
        "threshold_correction",
        "factor applied to the Otsu threshold of the texture",
    ),
];

/// `[colony_grades]`: [`ipscope_core::assays::colonies::GradeRules`].
const COLONY_GRADES_DOCS: &[(&str, &str)] = &[
    ("min_area", "below this area (px) a colony is too_small"),
    (
        "min_nuclei",
        "below this many nuclei (when nuclei are known) a colony is too_small",
    ),
    (
        "min_circularity",
        "undifferentiated colonies are at least this circular (AreaShape_FormFactor)",
    ),
    (
        "min_solidity",
        "undifferentiated colonies are at least this solid (AreaShape_Solidity)",
    ),
    (
        "min_packing",
        "undifferentiated colonies have at least this nuclear packing (nuclear / colony pixels; skipped when unknown)",
    ),
];

/// `[qc]`: [`crate::qc_run::QcConfig`].
const QC_DOCS: &[(&str, &str)] = &[
    (
        "enabled",
        "measure image quality of every field (ImageQuality_* columns, Metadata_QCFlag); false = skip it: null ImageQuality_*, no field flagged",
    ),
    (
        "exclude_flagged",
        "leave flagged fields out of the Wells counts and statistics (they stay in the Image and object tables)",
    ),
    (
        "max_percent_saturated",
        "flag a field when more than this percent of its pixels are saturated (ImageQuality_PercentMaximal)",
    ),
    (
        "min_content_fraction",
        "flag a field when less than this fraction of it is foreground",
    ),
    (
        "min_focus_score",
        "flag a field when its focus score (ImageQuality_FocusScore, normalized variance) is below this; 0 = off",
    ),
    (
        "min_power_log_log_slope",
        "flag a field when ImageQuality_PowerLogLogSlope is below this (more negative = blurrier); unset = off",
    ),
    ("debris_area", "objects above this area (px) count as debris"),
    (
        "max_debris_fraction",
        "flag a field when debris covers more than this fraction of it",
    ),
];

impl Config {
    /// Every section of the configuration file, in the order `ipscope config --default`
    /// prints them, with what each key means.
    pub const SECTION_DOCS: &'static [SectionDocs] = &[
        SectionDocs {
            section: "",
            doc: "",
            keys: &[
                (
                    "colonies_from",
                    "segment colonies in `run` from nuclei | brightfield | both; unset = no colonies (run --colonies wins)",
                ),
                (
                    "acceptance",
                    "acceptance criteria on markers' percent positive, one per Metadata_Acceptance_<name> column: { marker, op (>= > <= <), percent (0..100), name (optional) }; [] = none",
                ),
            ],
            examples: &[
                ("colonies_from", "\"nuclei\""),
                (
                    "acceptance",
                    "[{ marker = \"OCT4\", op = \">=\", percent = 80.0 }]",
                ),
            ],
        },
        SectionDocs {
            section: "input",
            doc: "which files are read",
            keys: InputConfig::KEY_DOCS,
            examples: &[(
                "pattern",
                r"'(?P<Well>[A-P][0-9]{2})_s(?P<Site>[0-9]+)_(?P<Channel>w[0-9])\.tif'",
            )],
        },
        SectionDocs {
            section: "channels",
            doc: "raw channel id = name, as --channel w1=DNA: DNA/Hoechst/DAPI = nuclear stain, Brightfield/BF/Phase/TL = transmitted light, NAME:cells = cell stain, any other name = a marker (column suffix); a channel not named keeps its raw id as name; --channel wins",
            keys: &[("w1", "channel w1 is the nuclear stain")],
            examples: &[("w1", "\"DNA\"")],
        },
        SectionDocs {
            section: "nuclei",
            doc: "nuclear segmentation (CellProfiler's IdentifyPrimaryObjects)",
            keys: NUCLEI_DOCS,
            examples: &[("min_seed_distance", "3")],
        },
        SectionDocs {
            section: "cells",
            doc: "cells grown from the nuclei into the channel named NAME:cells (CellProfiler's IdentifySecondaryObjects)",
            keys: CELLS_DOCS,
            examples: &[],
        },
        SectionDocs {
            section: "measure",
            doc: "what the object tables measure",
            keys: MeasureConfig::KEY_DOCS,
            examples: &[],
        },
        SectionDocs {
            section: "colonies",
            doc: "colony segmentation (segment --object colonies, run --colonies)",
            keys: COLONIES_DOCS,
            examples: &[],
        },
        SectionDocs {
            section: "colony_grades",
            doc: "thresholds of the rule-based colony grade (too_small | undifferentiated | differentiating)",
            keys: COLONY_GRADES_DOCS,
            examples: &[],
        },
        SectionDocs {
            section: "disease",
            doc: "disease-model tables (Profiles, Phenotype, Rescue, Compounds, Similarity)",
            keys: &[(
                "vehicle",
                "vehicle compound (run --vehicle wins); unset = the one compound of the layout's negative wells at concentration 0, else DMSO",
            )],
            examples: &[("vehicle", "\"DMSO\"")],
        },
        SectionDocs {
            section: "qc",
            doc: "image quality control of every field (CellProfiler's MeasureImageQuality)",
            keys: QC_DOCS,
            examples: &[("min_power_log_log_slope", "-1.5")],
        },
        SectionDocs {
            section: "markers.gate",
            doc: "marker positivity gate on Nuclei_Intensity_MeanIntensity_<marker>",
            keys: &[(
                "method",
                "otsu_log (Otsu of the log of the cells' values, as flow cytometry gates) | otsu | fixed (with threshold = T, 0..1 scale) | controls (with percentile = P of negative-control cells)",
            )],
            examples: &[],
        },
        SectionDocs {
            section: "neurite",
            doc: "run --assay neurite",
            keys: NeuriteConfig::KEY_DOCS,
            examples: &[],
        },
        SectionDocs {
            section: "illumination",
            doc: "illumination correction, off by default (run --illum turns it on)",
            keys: crate::illum_run::IlluminationConfig::KEY_DOCS,
            examples: &[("size", "20.0")],
        },
        SectionDocs {
            section: "run",
            doc: "how `ipscope run` runs",
            keys: RunConfig::KEY_DOCS,
            examples: &[],
        },
    ];

    /// The docs of `[section]`, if the file has that section.
    pub fn section_docs(section: &str) -> Option<&'static SectionDocs> {
        Config::SECTION_DOCS.iter().find(|s| s.section == section)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_file_keeps_defaults_and_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ipscope.toml");
        std::fs::write(
            &p,
            "[nuclei]\nmin_diameter = 12.0\n[channels]\nw1 = \"DNA\"\n",
        )
        .unwrap();
        let c = Config::from_file(&p).unwrap();
        assert_eq!(c.nuclei.min_diameter, 12.0);
        assert_eq!(c.nuclei.max_diameter, NucleiParams::default().max_diameter);
        assert_eq!(c.channels["w1"], "DNA");
        assert_eq!(c.run.device, ipscope_gpu::DeviceChoice::Cpu);
        std::fs::write(&p, "[run]\ndevice = \"auto\"\n").unwrap();
        assert_eq!(
            Config::from_file(&p).unwrap().run.device,
            ipscope_gpu::DeviceChoice::Auto
        );
        std::fs::write(&p, "[run]\ndevice = \"tpu\"\n").unwrap();
        let err = Config::from_file(&p).unwrap_err().to_string();
        assert!(err.contains("ipscope.toml") && err.contains("tpu"), "{err}");
        std::fs::write(&p, "[nuclei]\nmin_diam = 12.0\n").unwrap();
        let err = Config::from_file(&p).unwrap_err().to_string();
        assert!(
            err.contains("ipscope.toml") && err.contains("min_diam"),
            "{err}"
        );
    }
}
