//! Durable per-field results, so an interrupted run can be resumed.
//!
//! While a run is in progress, every finished field is written to
//! `OUT/.ipscope-partial/<ImageNumber>.arrow` (an Arrow IPC file of its Nuclei rows, with the
//! field's Image row as JSON in the schema metadata), fsynced and renamed into place. The
//! final tables are assembled from these files in ImageNumber order, so a resumed run and an
//! uninterrupted one write the same tables. `run.json` holds the fingerprint of the run
//! (parameters, channels, the plate's files with sizes and modification times, layout hash,
//! shard, format): a resume with a different fingerprint is refused unless forced.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use ipscope_table::SchemaRef;
use serde::{Deserialize, Serialize};

use crate::pipeline::{FieldOutput, FieldRecord};
use crate::{Error, Result};

/// Name of the hidden directory holding finished fields of a run in progress.
pub const PARTIAL_DIR: &str = ".ipscope-partial";
const RECORD_KEY: &str = "ipscope.field_record";

/// What `run.json` records about the run in progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState {
    pub fingerprint: String,
    pub started: String,
    #[serde(default)]
    pub resumed: Vec<String>,
}

/// The per-field store of one output directory.
#[derive(Debug)]
pub struct PartialStore {
    dir: PathBuf,
    pub state: RunState,
    done: BTreeSet<u32>,
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let r = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    r.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// Whether `out_dir` holds an interrupted run.
pub fn exists(out_dir: &Path) -> bool {
    out_dir.join(PARTIAL_DIR).join("run.json").exists()
}

impl PartialStore {
    /// Opens the store: continues an interrupted run with the same fingerprint when `resume`,
    /// otherwise starts a new one (removing any earlier partial results).
    pub fn open(out_dir: &Path, fingerprint: &str, resume: bool, force: bool) -> Result<Self> {
        let dir = out_dir.join(PARTIAL_DIR);
        let now = chrono::Utc::now().to_rfc3339();
        if resume && exists(out_dir) {
            let path = dir.join("run.json");
            let text = fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            let mut state: RunState = serde_json::from_str(&text).map_err(|e| {
                Error::Invalid(format!("{}: unreadable run state: {e}", path.display()))
            })?;
            if state.fingerprint == fingerprint {
                state.resumed.push(now);
                write_atomic(
                    &path,
                    &serde_json::to_vec_pretty(&state).unwrap_or_default(),
                )?;
                let mut done = BTreeSet::new();
                for e in fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
                    let name = e.map_err(|e| Error::io(&dir, e))?.file_name();
                    let name = name.to_string_lossy();
                    if let Some(n) = name.strip_suffix(".arrow").and_then(|n| n.parse().ok()) {
                        done.insert(n);
                    }
                }
                return Ok(PartialStore { dir, state, done });
            }
            if !force {
                return Err(Error::Invalid(format!(
                    "{}: the interrupted run in this directory used other parameters or inputs; \
                     use --force to discard its finished fields and start again",
                    out_dir.display()
                )));
            }
        }
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let state = RunState {
            fingerprint: fingerprint.to_string(),
            started: now,
            resumed: vec![],
        };
        write_atomic(
            &dir.join("run.json"),
            &serde_json::to_vec_pretty(&state).unwrap_or_default(),
        )?;
        Ok(PartialStore {
            dir,
            state,
            done: BTreeSet::new(),
        })
    }

    /// ImageNumbers already finished.
    pub fn done(&self) -> &BTreeSet<u32> {
        &self.done
    }

    fn path_of(&self, image_number: u32) -> PathBuf {
        self.dir.join(format!("{image_number:08}.arrow"))
    }

    /// Saves one finished field durably.
    pub fn save(&mut self, out: &FieldOutput) -> Result<()> {
        let path = self.path_of(out.record.image_number);
        let record = serde_json::to_string(&out.record)
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        let meta = HashMap::from([(RECORD_KEY.to_string(), record)]);
        // Colonies, Cells and Cytoplasm first: the Nuclei file marks the field done.
        for (kind, rows) in [
            ("colonies", &out.colonies),
            ("cells", &out.cells),
            ("cytoplasm", &out.cytoplasm),
        ] {
            if let Some(c) = rows {
                write_atomic(
                    &self.object_path_of(out.record.image_number, kind),
                    &ipscope_table::encode_ipc(c, &HashMap::new())?,
                )?;
            }
        }
        write_atomic(&path, &ipscope_table::encode_ipc(&out.nuclei, &meta)?)?;
        self.done.insert(out.record.image_number);
        Ok(())
    }

    /// The file of a field's other object rows (`colonies`, `cells`, `cytoplasm`).
    fn object_path_of(&self, image_number: u32, kind: &str) -> PathBuf {
        self.dir.join(format!("{image_number:08}.{kind}.arrow"))
    }

    fn load_objects(
        &self,
        image_number: u32,
        kind: &str,
        schema: Option<&SchemaRef>,
    ) -> Result<Option<ipscope_table::RecordBatch>> {
        match schema {
            Some(s) => {
                let (_, b) = ipscope_table::decode_ipc_file(
                    &self.object_path_of(image_number, kind),
                    Some(s),
                )?;
                Ok(Some(ipscope_table::concat(s, &b)?))
            }
            None => Ok(None),
        }
    }

    /// Loads a finished field; `schema` is the Nuclei schema of the run, `colonies` the
    /// Colonies schema when the run has colonies, `cells` the Cells and Cytoplasm schemas
    /// when it grows cells.
    pub fn load(
        &self,
        image_number: u32,
        schema: &SchemaRef,
        colonies: Option<&SchemaRef>,
        cells: Option<&(SchemaRef, SchemaRef)>,
    ) -> Result<FieldOutput> {
        let path = self.path_of(image_number);
        let (meta, batches) = ipscope_table::decode_ipc_file(&path, Some(schema))?;
        let record: FieldRecord = meta
            .get(RECORD_KEY)
            .ok_or_else(|| Error::Invalid(format!("{}: no field record", path.display())))
            .and_then(|s| {
                serde_json::from_str(s)
                    .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
            })?;
        let nuclei = ipscope_table::concat(schema, &batches)?;
        Ok(FieldOutput {
            record,
            nuclei,
            colonies: self.load_objects(image_number, "colonies", colonies)?,
            cells: self.load_objects(image_number, "cells", cells.map(|c| &c.0))?,
            cytoplasm: self.load_objects(image_number, "cytoplasm", cells.map(|c| &c.1))?,
        })
    }

    /// Removes the store once the final tables are written.
    pub fn finish(self) -> Result<()> {
        fs::remove_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))
    }
}
