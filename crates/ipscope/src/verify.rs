//! `ipscope verify OUT`: recompute the hashes a run's manifest recorded and say what changed.
//!
//! Outputs must all be present and unchanged; inputs are checked where they still exist (a
//! plate may have been archived), and files in OUT that the manifest does not list are
//! reported as added.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::manifest::{InputRecord, Manifest};
use crate::pipeline::hex;
use crate::{Error, Result};

/// What a check of one file found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    Unchanged,
    Changed,
    Missing,
    Added,
}

/// One file's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct FileCheck {
    pub path: PathBuf,
    /// `input` or `output`.
    pub kind: &'static str,
    pub state: FileState,
}

/// The verdict on a whole output directory.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub out_dir: PathBuf,
    pub files: Vec<FileCheck>,
}

impl VerifyReport {
    fn count(&self, kind: &str, state: FileState) -> usize {
        self.files
            .iter()
            .filter(|f| f.kind == kind && f.state == state)
            .count()
    }
    /// Every output present and unchanged, nothing added.
    pub fn outputs_ok(&self) -> bool {
        self.files
            .iter()
            .filter(|f| f.kind == "output")
            .all(|f| f.state == FileState::Unchanged)
    }
    /// No input that is still present has changed.
    pub fn inputs_ok(&self) -> bool {
        self.count("input", FileState::Changed) == 0
    }
    /// Inputs that could not be checked because they are gone.
    pub fn inputs_missing(&self) -> usize {
        self.count("input", FileState::Missing)
    }
}

fn sha256_of(path: &Path) -> std::io::Result<(u64, String)> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        n += k as u64;
        h.update(&buf[..k]);
    }
    Ok((n, hex(&h.finalize())))
}

fn check(path: &Path, bytes: u64, sha256: &str) -> FileState {
    match sha256_of(path) {
        Ok((n, h)) if n == bytes && h == sha256 => FileState::Unchanged,
        Ok(_) => FileState::Changed,
        Err(_) => FileState::Missing,
    }
}

/// Checks `out_dir` against its `manifest.json`.
pub fn verify(out_dir: &Path) -> Result<VerifyReport> {
    let manifest_path = out_dir.join("manifest.json");
    if !manifest_path.exists() {
        return Err(Error::Invalid(format!(
            "{}: no manifest.json; not an ipscope output directory (or the run did not finish)",
            out_dir.display()
        )));
    }
    let m = Manifest::read(&manifest_path)?;
    let mut files = Vec::new();
    let mut listed: BTreeSet<PathBuf> = BTreeSet::new();
    listed.insert(PathBuf::from("manifest.json"));
    for o in &m.outputs {
        listed.insert(o.path.clone());
        files.push(FileCheck {
            path: out_dir.join(&o.path),
            kind: "output",
            state: check(&out_dir.join(&o.path), o.bytes, &o.sha256),
        });
    }
    let mut seen = BTreeSet::new();
    for InputRecord {
        path,
        bytes,
        sha256,
    } in &m.inputs
    {
        if seen.insert(path.clone()) {
            files.push(FileCheck {
                path: path.clone(),
                kind: "input",
                state: check(path, *bytes, sha256),
            });
        }
    }
    let entries = std::fs::read_dir(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let mut added = Vec::new();
    for e in entries {
        let e = e.map_err(|e| Error::io(out_dir, e))?;
        let name = PathBuf::from(e.file_name());
        let hidden = name.to_string_lossy().starts_with('.');
        if !hidden && !listed.contains(&name) {
            added.push(out_dir.join(name));
        }
    }
    added.sort();
    files.extend(added.into_iter().map(|path| FileCheck {
        path,
        kind: "output",
        state: FileState::Added,
    }));
    Ok(VerifyReport {
        out_dir: out_dir.to_path_buf(),
        files,
    })
}
