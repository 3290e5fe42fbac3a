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
//! device = "cpu"               # where nuclei are segmented: "cpu", "gpu" or "auto" (run --device wins)
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
    /// Where nuclei are segmented, as `run --device` (which wins over this key): `"cpu"`
    /// (the default, the reference), `"gpu"` (an error when there is none) or `"auto"`. The
    /// CLI copies it into [`crate::pipeline::RunOptions::device`], which is what a run uses,
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
