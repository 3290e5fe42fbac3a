//! Durable per-field results, so an interrupted run can be resumed.
//!
//! While a run is in progress, every finished field is written to
//! `OUT/.ipscope-partial/<ImageNumber>.arrow` (an Arrow IPC file of its Nuclei rows, with the
//! field's Image row as JSON in the schema metadata), fsynced and renamed into place. The
//! final tables are assembled from these files in ImageNumber order, so a resumed run and an
//! uninterrupted one write the same tables. `run.json` holds the fingerprint of the run
//! (parameters, channels, the plate's files with sizes and modification times, layout hash,
//! shard, format): a resume with a different fingerprint is refused unless forced.
//!
//! Runners whose per-field results are not Nuclei rows (neurite, spots) keep each finished
//! field as `<ImageNumber>.json` in the same directory ([`PartialStore::save_record`], floats
//! as their bits so they read back exactly) and run their fields through [`run_fields`];
//! [`open_resumable`] is the output-directory check every resumable run shares.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use ipscope_table::SchemaRef;
use rayon::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::lock::OutputLock;
use crate::pipeline::{prepare_out_dir, FieldOutput, FieldRecord};
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

/// Writes `bytes` to `path` durably: a temporary file, fsynced, renamed into place.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
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
                    let stem = name
                        .strip_suffix(".arrow")
                        .or_else(|| name.strip_suffix(".json"));
                    if let Some(n) = stem.and_then(|n| n.parse().ok()) {
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

    fn record_path_of(&self, image_number: u32) -> PathBuf {
        self.dir.join(format!("{image_number:08}.json"))
    }

    /// Saves one finished field of a runner that keeps its own per-field record (neurite,
    /// spots) as `<ImageNumber>.json`, durably. Takes `&self` so parallel workers save each
    /// field as it finishes; [`PartialStore::done`] stays the set found when the store opened.
    pub fn save_record<T: Serialize>(&self, image_number: u32, record: &T) -> Result<()> {
        let path = self.record_path_of(image_number);
        let bytes = serde_json::to_vec(record)
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        write_atomic(&path, &bytes)
    }

    /// The record of a field finished before the interruption; `None` when it was not
    /// finished or its file cannot be read back (then the field is computed again).
    pub fn load_record<T: DeserializeOwned>(&self, image_number: u32) -> Option<T> {
        if !self.done.contains(&image_number) {
            return None;
        }
        let bytes = fs::read(self.record_path_of(image_number)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// Serde of an `f64` as its bits, so a saved record reads back exactly (NaN included),
/// which decimal JSON does not promise: `#[serde(with = "crate::partial::f64_bits")]`.
pub mod f64_bits {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_u64(v.to_bits())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
        u64::deserialize(d).map(f64::from_bits)
    }
}

/// Opens `out_dir` for a run that can be resumed, as every resumable runner does: a complete
/// run has nothing to resume; the directory is locked and, unless resuming, must be empty or
/// `overwrite`n; an interrupted run is neither discarded without `overwrite` nor continued
/// without `resume`; then the store is opened ([`PartialStore::open`]).
pub fn open_resumable(
    out_dir: &Path,
    fingerprint: &str,
    resume: bool,
    force: bool,
    overwrite: bool,
) -> Result<(OutputLock, PartialStore)> {
    let interrupted = exists(out_dir);
    if resume && !interrupted && out_dir.join("manifest.json").exists() {
        return Err(Error::Invalid(format!(
            "{}: the run in this directory is complete; nothing to resume (use --overwrite to run again)",
            out_dir.display()
        )));
    }
    let lock = prepare_out_dir(out_dir, overwrite || (resume && interrupted))?;
    if interrupted && !resume && !overwrite {
        return Err(Error::Invalid(format!(
            "{}: holds an interrupted run; continue it with --resume, or start over with --overwrite",
            out_dir.display()
        )));
    }
    let store = PartialStore::open(out_dir, fingerprint, resume, force)?;
    Ok((lock, store))
}

/// A run's fingerprint: its parts hashed in order, each ended by a NUL byte, as hex SHA-256.
#[derive(Default)]
pub(crate) struct Fingerprint(sha2::Sha256);

impl Fingerprint {
    /// Adds one part.
    pub(crate) fn put(&mut self, part: &str) {
        use sha2::Digest;
        self.0.update(part.as_bytes());
        self.0.update([0u8]);
    }

    /// The hex digest of the parts added.
    pub(crate) fn finish(self) -> String {
        use sha2::Digest;
        crate::pipeline::hex(&self.0.finalize())
    }
}

/// Size and modification time of an input file, for a run's fingerprint: a file changed
/// since the interrupted run makes the resume refused.
pub fn file_stamp(path: &Path) -> String {
    let meta = fs::metadata(path).ok();
    let mtime = meta
        .as_ref()
        .and_then(|m| m.modified().ok())
        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}|{mtime}", meta.map(|m| m.len()).unwrap_or(0))
}

/// A field's record as [`run_fields`] keeps it: the value and the time it took.
#[derive(Serialize, Deserialize)]
struct Saved<T> {
    #[serde(with = "f64_bits")]
    seconds: f64,
    value: T,
}

/// One field's result from [`run_fields`].
#[derive(Debug, Clone)]
pub struct FieldRun<T> {
    pub value: T,
    /// Wall time of the field, in seconds (as first measured, for a resumed field).
    pub seconds: f64,
}

/// Runs `work` on every item in parallel (`threads` workers when given), results in item
/// order so any thread count gives the same tables. Item `i` is field `i + 1` of the store:
/// one finished before an interruption is read back instead of computed, every newly
/// finished one is saved as it finishes. Once `stop` is set no field starts; the fields
/// running finish and are saved, then the run ends with [`Error::Interrupted`].
pub fn run_fields<I, T>(
    store: &PartialStore,
    items: &[I],
    threads: Option<usize>,
    stop: Option<&AtomicBool>,
    out_dir: &Path,
    work: impl Fn(&I) -> T + Sync + Send,
) -> Result<Vec<FieldRun<T>>>
where
    I: Sync,
    T: Serialize + DeserializeOwned + Send,
{
    let one = |(i, item): (usize, &I)| -> Result<Option<FieldRun<T>>> {
        let n = i as u32 + 1;
        if let Some(s) = store.load_record::<Saved<T>>(n) {
            return Ok(Some(FieldRun {
                value: s.value,
                seconds: s.seconds,
            }));
        }
        if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            return Ok(None);
        }
        let t = Instant::now();
        let value = work(item);
        let saved = Saved {
            seconds: t.elapsed().as_secs_f64(),
            value,
        };
        store.save_record(n, &saved)?;
        Ok(Some(FieldRun {
            value: saved.value,
            seconds: saved.seconds,
        }))
    };
    let all: Vec<Option<FieldRun<T>>> = match threads {
        Some(t) => rayon::ThreadPoolBuilder::new()
            .num_threads(t.max(1))
            .build()
            .map_err(|e| Error::Invalid(format!("cannot start {t} threads: {e}")))?
            .install(|| items.par_iter().enumerate().map(one).collect::<Result<_>>())?,
        None => items
            .par_iter()
            .enumerate()
            .map(one)
            .collect::<Result<_>>()?,
    };
    let done = all.iter().filter(|r| r.is_some()).count();
    if done < items.len() {
        return Err(Error::Interrupted {
            out_dir: out_dir.to_path_buf(),
            done,
            total: items.len(),
            unit: "fields",
        });
    }
    Ok(all.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Rec {
        n: u32,
        #[serde(with = "f64_bits")]
        x: f64,
    }

    /// A value no decimal text of fewer than 17 digits gives back, and NaN.
    fn value(i: u32) -> Rec {
        Rec {
            n: i,
            x: if i == 2 {
                f64::NAN
            } else {
                0.1 + f64::from(i) / 3.0
            },
        }
    }

    #[test]
    fn run_fields_stops_keeps_finished_fields_and_reads_them_back_exactly() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path();
        let items: Vec<u32> = (0..6).collect();
        let stop = AtomicBool::new(false);
        let calls = AtomicUsize::new(0);
        // One thread: fields run in order; the stop comes while field 3 runs.
        let store = PartialStore::open(out, "fp", false, false).unwrap();
        let r = run_fields(&store, &items, Some(1), Some(&stop), out, |&i| {
            calls.fetch_add(1, Ordering::SeqCst);
            if i == 2 {
                stop.store(true, Ordering::SeqCst);
            }
            value(i)
        });
        match r {
            Err(Error::Interrupted { done, total, .. }) => assert_eq!((done, total), (3, 6)),
            other => panic!("{:?}", other.map(|v| v.len())),
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        // Resumed: the three finished fields are read back, the others computed.
        let store = PartialStore::open(out, "fp", true, false).unwrap();
        assert_eq!(store.done().iter().copied().collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(store.state.resumed.len(), 1);
        let computed = AtomicUsize::new(0);
        let all = run_fields(&store, &items, Some(2), None, out, |&i| {
            assert!(i >= 3, "field {} was finished before", i + 1);
            computed.fetch_add(1, Ordering::SeqCst);
            value(i)
        })
        .unwrap();
        assert_eq!(computed.load(Ordering::SeqCst), 3);
        for (i, r) in all.iter().enumerate() {
            let want = value(i as u32);
            assert_eq!(r.value.n, want.n);
            assert_eq!(r.value.x.to_bits(), want.x.to_bits(), "field {}", i + 1);
        }

        // Another fingerprint: refused, then forced to start over.
        let e = PartialStore::open(out, "other", true, false).unwrap_err();
        assert!(e.to_string().contains("--force"), "{e}");
        let store = PartialStore::open(out, "other", true, true).unwrap();
        assert!(store.done().is_empty());
        assert!(store.load_record::<Saved<Rec>>(1).is_none());
    }
}
