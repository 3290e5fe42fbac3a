//! `manifest.json`: the provenance of a run — version, command line, parameters, every input
//! with its size and sha256, the status of every image, every output with its sha256, and
//! start/end times — as a drug-evaluation report needs it.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::channels::Channel;
use crate::config::Config;
use crate::pipeline::{hex, FieldRecord, Shard};
use crate::{Error, Result};

/// An input file, hashed as it was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRecord {
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: String,
}

impl InputRecord {
    /// Reads and hashes a whole file.
    pub fn of_file(path: &Path) -> Result<InputRecord> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Ok(InputRecord {
            path: path.to_path_buf(),
            bytes: bytes.len() as u64,
            sha256: hex(&Sha256::digest(&bytes)),
        })
    }
}

/// The status of one field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageStatus {
    pub image_number: u32,
    pub well: String,
    pub site: u32,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Wall time spent on the field, in seconds.
    #[serde(default)]
    pub seconds: f64,
}

impl From<&FieldRecord> for ImageStatus {
    fn from(r: &FieldRecord) -> Self {
        ImageStatus {
            image_number: r.image_number,
            well: r.well.clone(),
            site: r.site,
            status: r.status.as_str().to_string(),
            error: r
                .failure
                .as_ref()
                .map(|f| format!("{}: {}", f.stage, f.message)),
            seconds: r.seconds,
        }
    }
}

/// A table written by the run; `path` is relative to the output directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputRecord {
    pub path: PathBuf,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

impl OutputRecord {
    pub(crate) fn from_written(w: &ipscope_table::WrittenFile, out_dir: &Path) -> Self {
        OutputRecord {
            path: w
                .path
                .strip_prefix(out_dir)
                .map(Path::to_path_buf)
                .unwrap_or_else(|_| w.path.clone()),
            rows: w.rows,
            bytes: w.bytes,
            sha256: w.sha256.clone(),
        }
    }
}

/// The machine a run ran on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    pub host: String,
    pub os: String,
    pub arch: String,
    pub cpus: usize,
    pub threads: usize,
    /// The device of the nuclei segmentation (`--device`): `cpu`, or `gpu: NAME (API,
    /// type)`; empty where not recorded (merges, other assays, older manifests).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub device: String,
}

impl Machine {
    pub(crate) fn current(threads: usize) -> Machine {
        Machine {
            host: crate::lock::host_name(),
            os: std::env::consts::OS.to_string(),
            arch: std::env::consts::ARCH.to_string(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            threads,
            device: String::new(),
        }
    }
}

/// `name → version` of the key dependencies, recorded by the build script.
pub fn dependencies() -> std::collections::BTreeMap<String, String> {
    option_env!("IPSCOPE_DEPENDENCY_VERSIONS")
        .unwrap_or("")
        .split(';')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The whole manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub ipscope_version: String,
    pub command_line: Vec<String>,
    pub started: String,
    /// When an interrupted run was resumed (`--resume`), in order.
    #[serde(default)]
    pub resumed: Vec<String>,
    pub finished: String,
    pub plate: String,
    pub plate_dir: PathBuf,
    pub naming_scheme: String,
    /// Fields in the whole plate (a shard processes some of them).
    pub fields_in_plate: usize,
    /// The shards this output holds: one for a `--shard` run, all for a merge, none for a
    /// whole-plate run.
    pub shards: Vec<Shard>,
    pub channels: Vec<Channel>,
    pub parameters: Config,
    pub format: String,
    /// Where the run ran.
    #[serde(default)]
    pub machine: Machine,
    /// Versions of the crates that decide the numbers and the files (from Cargo.lock at build time).
    #[serde(default)]
    pub dependencies: std::collections::BTreeMap<String, String>,
    /// Plate QC from the control wells (Z′, robust Z′, SSMD, … per plate and readout), as in
    /// `Qc.parquet`; empty without a layout role column.
    #[serde(default)]
    pub plate_qc: Vec<serde_json::Value>,
    /// Warnings raised while planning the run (layout coverage, channel roles).
    #[serde(default)]
    pub warnings: Vec<String>,
    pub inputs: Vec<InputRecord>,
    pub images: Vec<ImageStatus>,
    pub outputs: Vec<OutputRecord>,
}

impl Manifest {
    /// Writes the manifest atomically (temporary file, fsync, rename).
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        let tmp = path.with_extension("json.tmp");
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        result.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io(path, e)
        })
    }

    /// Reads a manifest written by ipscope.
    pub fn read(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| {
            Error::Invalid(format!("{}: not an ipscope manifest: {e}", path.display()))
        })
    }
}
