//! Illumination correction in `ipscope run` (`[illumination]` in the configuration, or
//! `--illum`): CellProfiler's CorrectIlluminationCalculate with "All" images of the plate,
//! then CorrectIlluminationApply (Divide) on every field before segmentation.
//!
//! A first pass reads every field of the plate (all shards: each shard computes the same
//! function) once per corrected channel and adds it to a running f64 sum
//! ([`ipscope_core::ops::illumination::IlluminationSum`]), so memory does not grow with the
//! number of fields; decoding runs on the run's threads, the sum is taken in field order,
//! so the function is the same for any thread count. The smoothed, rescaled function is
//! saved as `illum_<channel>.tif` (float32) in the output directory and listed in the
//! manifest. Corrected channels reach segmentation and measurement as float images on
//! CellProfiler's 0..1 scale (the raw value / type maximum / function); image QC still
//! measures the raw images.

use std::path::Path;
use std::sync::Arc;

use ipscope_core::ops::illumination::{
    correct, illumination_function, IllumIntensity, IllumRescale, IllumSmoothing,
    IlluminationParams, IlluminationSum,
};
use ipscope_image::{with_dyn_image, DynImage, Image};
use ipscope_io::Plate;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::channels::{Channel, Role};
use crate::{Error, Result};

/// `[illumination]`: which channels to correct and how (defaults as
/// [`IlluminationParams::default`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IlluminationConfig {
    /// Correct uneven illumination (default false; `run --illum` sets it).
    pub enabled: bool,
    /// Channels to correct, by name (`DNA`) or id (`w1`); empty = every channel that is not
    /// transmitted light.
    pub channels: Vec<String>,
    /// What is averaged: `background` (default: each field's minima in blocks of
    /// `block_size` px) or `regular` (the pixels).
    pub intensity: IllumIntensity,
    /// Block size (px) of `background`; default 60.
    pub block_size: usize,
    /// Smoothing of the plate's average: `polynomial` (default), `median`, `gaussian` or
    /// `none`.
    pub method: IllumSmoothing,
    /// Smoothing filter size in pixels; unset = CellProfiler's automatic size, min(30,
    /// longest side / 40).
    pub size: Option<f64>,
    /// `robust_minimum` (default; function ≥ 1), `median` or `none`.
    pub rescale: IllumRescale,
}

impl Default for IlluminationConfig {
    fn default() -> Self {
        let p = IlluminationParams::default();
        IlluminationConfig {
            enabled: false,
            channels: Vec::new(),
            intensity: p.intensity,
            block_size: p.block_size,
            method: p.method,
            size: p.size,
            rescale: p.rescale,
        }
    }
}

impl IlluminationConfig {
    /// What each `[illumination]` key means, one line each, as `ipscope config --default`
    /// prints it above the key (`size`, unset by default, is printed as a commented example).
    pub const KEY_DOCS: &'static [(&'static str, &'static str)] = &[
        (
            "enabled",
            "correct uneven illumination before segmentation (CellProfiler's CorrectIlluminationCalculate over all fields of the plate, then Apply by division; nuclei assay only); run --illum sets it",
        ),
        (
            "channels",
            "channels to correct, by name (\"DNA\") or id (\"w1\"); [] = every channel that is not transmitted light",
        ),
        (
            "intensity",
            "what is averaged over the fields: background (each field's minima in blocks of block_size px; for sparse objects) | regular (the pixels themselves)",
        ),
        (
            "block_size",
            "block size (px) of intensity = \"background\"",
        ),
        (
            "method",
            "smoothing of the plate average: polynomial (quadratic surface, least squares) | median (disc) | gaussian | none",
        ),
        (
            "size",
            "median/gaussian filter size (px; sigma = size / 2.35); unset = CellProfiler's automatic min(30, longest side / 40)",
        ),
        (
            "rescale",
            "robust_minimum (divide by the 2nd percentile: function >= 1, correction never brightens) | median (divide by the median) | none",
        ),
    ];

    /// The core parameters.
    pub fn params(&self) -> IlluminationParams {
        IlluminationParams {
            intensity: self.intensity,
            block_size: self.block_size,
            method: self.method,
            size: self.size,
            rescale: self.rescale,
        }
    }

    /// Indices (into `channels`) of the channels to correct; empty when disabled. Errors on
    /// a name that is no channel, or a non-positive size.
    pub fn corrected_channels(&self, channels: &[Channel]) -> Result<Vec<usize>> {
        if !self.enabled {
            return Ok(Vec::new());
        }
        if let Some(s) = self.size {
            if !(s > 0.0 && s.is_finite()) {
                return Err(Error::Invalid(format!(
                    "[illumination] size = {s}: must be a positive number of pixels"
                )));
            }
        }
        if self.block_size == 0 {
            return Err(Error::Invalid(
                "[illumination] block_size = 0: must be at least 1 pixel".into(),
            ));
        }
        if self.channels.is_empty() {
            return Ok((0..channels.len())
                .filter(|&i| channels[i].role != Role::Transmitted)
                .collect());
        }
        let mut out = Vec::new();
        for want in &self.channels {
            let i = channels
                .iter()
                .position(|c| c.name.eq_ignore_ascii_case(want) || c.id.eq_ignore_ascii_case(want))
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "[illumination] channels: no channel {want:?} (channels: {})",
                        channels
                            .iter()
                            .map(|c| format!("{}={}", c.id, c.name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
            if !out.contains(&i) {
                out.push(i);
            }
        }
        out.sort_unstable();
        Ok(out)
    }
}

/// The illumination function of each channel (plate channel order), where it is corrected.
#[derive(Debug, Clone, Default)]
pub struct Illumination {
    pub functions: Vec<Option<Arc<Image<f32>>>>,
    /// Fields averaged per channel (0 where not corrected).
    pub fields: Vec<u64>,
    /// Problems met while averaging (unreadable fields left out).
    pub warnings: Vec<String>,
}

impl Illumination {
    /// Whether any channel is corrected.
    pub fn is_active(&self) -> bool {
        self.functions.iter().any(Option::is_some)
    }

    /// Divides the corrected channels of a field by their function; they become float
    /// images on the 0..1 scale. Errors name the channel when a size differs.
    pub fn apply(
        &self,
        images: &mut [DynImage],
        channels: &[Channel],
    ) -> std::result::Result<(), String> {
        for (i, img) in images.iter_mut().enumerate() {
            if let Some(Some(f)) = self.functions.get(i) {
                let out = with_dyn_image!(&*img, x => correct(x.view(), f.view())).map_err(|e| {
                    format!(
                        "channel {}: {e} (the illumination function is computed from the plate's first readable field of that channel)",
                        channels.get(i).map(|c| c.id.as_str()).unwrap_or("?")
                    )
                })?;
                *img = DynImage::F32(out);
            }
        }
        Ok(())
    }
}

/// File name of a channel's saved function: `illum_<name>.tif`, characters other than
/// letters, digits, `-` and `_` replaced by `_`.
pub fn file_name(channel: &Channel) -> String {
    let safe: String = channel
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("illum_{safe}.tif")
}

/// One decoded (or failed) channel image of a field: channel index, path, image.
type Decoded = (
    usize,
    std::path::PathBuf,
    std::result::Result<DynImage, String>,
);

/// Computes the illumination functions of `which` channels over every field of `plate`,
/// decoding `chunk` fields at a time on `pool`.
pub fn compute(
    plate: &Plate,
    channels: &[Channel],
    which: &[usize],
    config: &IlluminationConfig,
    read_opts: &ipscope_io::ReadOptions,
    pool: &rayon::ThreadPool,
    chunk: usize,
) -> Result<Illumination> {
    let mut out = Illumination {
        functions: vec![None; channels.len()],
        fields: vec![0; channels.len()],
        warnings: Vec::new(),
    };
    if which.is_empty() {
        return Ok(out);
    }
    let params = config.params();
    let mut sums: Vec<Option<(IlluminationSum, String)>> = vec![None; channels.len()];
    let mut unreadable = vec![0usize; channels.len()];
    let read = |path: &Path, page: usize| -> std::result::Result<DynImage, String> {
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        ipscope_io::decode(&bytes, path, page, read_opts).map_err(|e| e.to_string())
    };
    for fields in plate.fields.chunks(chunk.max(1)) {
        // Decode in parallel; add in field order.
        let decoded: Vec<Vec<Decoded>> = pool.install(|| {
            fields
                .par_iter()
                .map(|f| {
                    which
                        .iter()
                        .filter_map(|&ci| {
                            let cf = f.channels.iter().find(|cf| cf.channel == channels[ci].id)?;
                            Some((ci, cf.path.clone(), read(&cf.path, cf.page)))
                        })
                        .collect()
                })
                .collect()
        });
        for (ci, path, img) in decoded.into_iter().flatten() {
            let Ok(img) = img else {
                unreadable[ci] += 1;
                continue;
            };
            let slot = sums[ci].get_or_insert_with(|| {
                (
                    IlluminationSum::new(img.width(), img.height()),
                    path.display().to_string(),
                )
            });
            with_dyn_image!(&img, x => slot.0.add_field(x.view(), &params)).map_err(|e| {
                Error::Invalid(format!(
                    "{}: {e}; illumination correction needs every field of channel {} to have the size of {}",
                    path.display(),
                    channels[ci].id,
                    slot.1
                ))
            })?;
        }
    }
    for &ci in which {
        let c = &channels[ci];
        if unreadable[ci] > 0 {
            out.warnings.push(format!(
                "illumination correction: {} field(s) of channel {} ({}) could not be read and are left out of its average",
                unreadable[ci], c.id, c.name
            ));
        }
        match sums[ci].take() {
            Some((sum, _)) if sum.count() > 0 => {
                out.fields[ci] = sum.count();
                let f = illumination_function(sum.mean().view(), &params);
                out.functions[ci] = Some(Arc::new(f));
            }
            _ => out.warnings.push(format!(
                "illumination correction: no readable field of channel {} ({}); it is not corrected",
                c.id, c.name
            )),
        }
    }
    Ok(out)
}

/// Writes each function as `illum_<channel>.tif` (float32, written atomically) in `out_dir`.
pub fn write_functions(
    out_dir: &Path,
    channels: &[Channel],
    illum: &Illumination,
) -> Result<Vec<ipscope_table::WrittenFile>> {
    let mut written = Vec::new();
    for (c, f) in channels.iter().zip(&illum.functions) {
        let Some(f) = f else { continue };
        let path = out_dir.join(file_name(c));
        ipscope_io::write_tiff(&path, f.view())?;
        let bytes = std::fs::metadata(&path)
            .map_err(|e| Error::io(&path, e))?
            .len();
        written.push(ipscope_table::WrittenFile {
            sha256: ipscope_table::sha256_file(&path)?,
            path,
            rows: 0,
            bytes,
        });
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(id: &str, name: &str, role: Role) -> Channel {
        Channel {
            id: id.into(),
            name: name.into(),
            role,
        }
    }

    #[test]
    fn every_key_is_documented_once() {
        let all = IlluminationConfig {
            size: Some(20.0),
            ..IlluminationConfig::default()
        };
        let table: toml::Table = toml::from_str(&toml::to_string(&all).unwrap()).unwrap();
        let mut keys: Vec<&str> = table.keys().map(String::as_str).collect();
        let mut documented: Vec<&str> = IlluminationConfig::KEY_DOCS.iter().map(|d| d.0).collect();
        keys.sort_unstable();
        documented.sort_unstable();
        assert_eq!(keys, documented);
        assert!(IlluminationConfig::KEY_DOCS
            .iter()
            .all(|(_, doc)| !doc.is_empty() && !doc.contains('\n')));
    }

    #[test]
    fn channels_by_name_or_id_and_defaults() {
        let chans = [
            ch("w1", "DNA", Role::Nuclear),
            ch("w2", "OCT4", Role::Marker),
            ch("w3", "BF", Role::Transmitted),
        ];
        let mut c = IlluminationConfig::default();
        assert!(c.corrected_channels(&chans).unwrap().is_empty());
        c.enabled = true;
        assert_eq!(c.corrected_channels(&chans).unwrap(), vec![0, 1]);
        c.channels = vec!["oct4".into(), "w1".into()];
        assert_eq!(c.corrected_channels(&chans).unwrap(), vec![0, 1]);
        c.channels = vec!["Actin".into()];
        let e = c.corrected_channels(&chans).unwrap_err().to_string();
        assert!(e.contains("Actin") && e.contains("w1=DNA"), "{e}");
        c.channels.clear();
        c.size = Some(0.0);
        assert!(c.corrected_channels(&chans).is_err());
        c.size = None;
        c.block_size = 0;
        assert!(c.corrected_channels(&chans).is_err());
        assert_eq!(
            file_name(&ch("w2", "p-H3/x", Role::Marker)),
            "illum_p-H3_x.tif"
        );
    }
}
