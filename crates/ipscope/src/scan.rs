//! `ipscope scan`: what a plate directory holds, without processing anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::Result;

/// One channel as found on the plate, described from its first file.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelSummary {
    pub id: String,
    pub files: usize,
    pub format: Option<String>,
    pub sample_type: Option<String>,
    pub bits_per_sample: Option<u32>,
    pub width: Option<usize>,
    pub height: Option<usize>,
    /// Channel name from OME-XML, when the file carries one.
    pub ome_name: Option<String>,
    pub pixel_size_um: Option<(f64, f64)>,
    /// Why the first file could not be probed, if it could not.
    pub error: Option<String>,
}

/// What `scan` prints.
#[derive(Debug, Clone, Serialize)]
pub struct ScanReport {
    pub plate: String,
    pub dir: PathBuf,
    pub naming_scheme: String,
    pub wells: usize,
    pub sites: usize,
    pub fields: usize,
    pub channels: Vec<ChannelSummary>,
    /// `well: sites` for wells lacking sites that other wells have.
    pub missing_fields: Vec<String>,
    pub problems: Vec<String>,
    pub unmatched_files: Vec<PathBuf>,
}

/// Discovers the plate in `dir` and describes it.
pub fn scan(dir: &Path, pattern: Option<String>) -> Result<ScanReport> {
    let plate = ipscope_io::discover(dir, &ipscope_io::DiscoverOptions { pattern })?;
    let wells = plate.wells();
    let sites = plate.sites();
    let mut by_well: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
    for f in &plate.fields {
        by_well.entry(f.well.as_str()).or_default().insert(f.site);
    }
    let missing_fields = by_well
        .iter()
        .filter_map(|(w, s)| {
            let missing: Vec<String> = sites
                .iter()
                .filter(|x| !s.contains(x))
                .map(|x| format!("s{x}"))
                .collect();
            (!missing.is_empty()).then(|| format!("{w}: {}", missing.join(" ")))
        })
        .collect();
    let channels = plate
        .channels
        .iter()
        .map(|id| {
            let files: Vec<&ipscope_io::ChannelFile> = plate
                .fields
                .iter()
                .flat_map(|f| f.channels.iter())
                .filter(|c| &c.channel == id)
                .collect();
            let mut s = ChannelSummary {
                id: id.clone(),
                files: files.len(),
                format: None,
                sample_type: None,
                bits_per_sample: None,
                width: None,
                height: None,
                ome_name: None,
                pixel_size_um: None,
                error: None,
            };
            if let Some(first) = files.first() {
                match ipscope_io::probe(&first.path) {
                    Ok(info) => {
                        s.format = Some(info.format.to_string());
                        s.sample_type = Some(info.sample_type.to_string());
                        s.bits_per_sample = Some(info.bits_per_sample);
                        s.width = Some(info.width);
                        s.height = Some(info.height);
                        s.ome_name = info.channel_names.get(first.page).cloned();
                        s.pixel_size_um = info.pixel_size_um;
                    }
                    Err(e) => s.error = Some(e.to_string()),
                }
            }
            s
        })
        .collect();
    Ok(ScanReport {
        plate: plate.id.clone(),
        dir: dir.to_path_buf(),
        naming_scheme: plate.scheme.clone(),
        wells: wells.len(),
        sites: sites.len(),
        fields: plate.fields.len(),
        channels,
        missing_fields,
        problems: plate.problems.iter().map(|p| p.to_string()).collect(),
        unmatched_files: plate.unmatched.clone(),
    })
}
