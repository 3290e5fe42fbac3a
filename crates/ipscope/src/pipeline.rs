//! The main job: a plate directory in, Arrow tables out.
//!
//! Flow (one direction, as the house style asks): discover the plate and its layout
//! (`ipscope-io`), then stream fields through decode → nuclei segmentation → measurements
//! (`ipscope-core`) on a pool of workers that each take the next field when free, and write
//! the rows in ImageNumber order as each field's turn comes (`ipscope-table`), so the output
//! is the same for any thread count. Per-well tables are
//! computed from the written tables only (`ipscope-stats`), which is what lets `merge`
//! reproduce them from shards.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Instant;

use ipscope_core::ops::measure::ShapeFeatures;
use ipscope_core::{segment_nuclei_with, Backend};
use ipscope_image::{with_dyn_image, DynImage};
use ipscope_io::{Field, Plate};
use ipscope_table::{Format, RecordBatch, SchemaRef, TableBuilder, TableWriter};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::channels::{nuclear_channel, resolve_channels, Channel, Role};
use crate::config::Config;
use crate::lock::OutputLock;
use crate::manifest::{InputRecord, Manifest, OutputRecord};
use crate::partial::{self, PartialStore};
use crate::{Error, Result};

/// The I-th (1-based) of N deterministic partitions of a plate's wells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl FromStr for Shard {
    type Err = Error;
    fn from_str(s: &str) -> Result<Shard> {
        let bad = || {
            Error::Invalid(format!(
                "--shard {s:?}: expected I/N with 1 <= I <= N, e.g. --shard 2/4"
            ))
        };
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// Whether the well with this (0-based) position in the plate's sorted well list belongs
    /// to the shard. Whole wells stay together; wells are dealt round-robin.
    pub fn contains_well(&self, well_index: usize) -> bool {
        well_index % self.count as usize == (self.index - 1) as usize
    }
}

/// What to run. `config` holds everything that decides the numbers.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub plate_dir: PathBuf,
    pub layout: Option<PathBuf>,
    /// `--channel ID=NAME` pairs; they override `config.channels`.
    pub channels: Vec<(String, String)>,
    /// Worker threads; `None` = all cores.
    pub threads: Option<usize>,
    pub shard: Option<Shard>,
    pub config: Config,
    /// Continue an interrupted run in the output directory (skip its finished fields).
    pub resume: bool,
    /// With `resume`: start over when the interrupted run used other parameters or inputs.
    pub force: bool,
    /// Set (e.g. by a signal handler) to stop taking new fields; finished ones are kept.
    pub stop: Option<Arc<AtomicBool>>,
    /// A trained colony classifier (`--colony-model`) that grades colonies instead of the
    /// rules of `[colony_grades]`.
    pub colony_model: Option<Arc<crate::colony_model::ColonyModel>>,
    /// Where the nuclei segmentation runs (`--device`): the CPU reference by default, so
    /// results do not depend on the machine unless asked. The other stages run on the CPU.
    pub device: ipscope_gpu::DeviceChoice,
    /// Where `device` was chosen, as an error about it names it (e.g.
    /// `[run] device = "gpu" in plate.toml`); `None`: the `--device` flag.
    pub device_source: Option<String>,
    /// A backend to segment nuclei on instead of opening one for `device` (embedding an
    /// already open device, tests).
    pub backend: Option<SharedBackend>,
}

/// A caller's [`Backend`] for [`RunOptions::backend`].
#[derive(Clone)]
pub struct SharedBackend(pub Arc<dyn Backend>);

impl std::fmt::Debug for SharedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedBackend({})", self.0.name())
    }
}

impl RunOptions {
    pub fn new(plate_dir: impl Into<PathBuf>) -> Self {
        RunOptions {
            plate_dir: plate_dir.into(),
            layout: None,
            channels: Vec::new(),
            threads: None,
            shard: None,
            config: Config::default(),
            resume: false,
            force: false,
            stop: None,
            colony_model: None,
            device: ipscope_gpu::DeviceChoice::Cpu,
            device_source: None,
            backend: None,
        }
    }
}

/// `--device`'s spelling of a choice.
fn device_arg(choice: ipscope_gpu::DeviceChoice) -> &'static str {
    match choice {
        ipscope_gpu::DeviceChoice::Auto => "auto",
        ipscope_gpu::DeviceChoice::Cpu => "cpu",
        ipscope_gpu::DeviceChoice::Gpu => "gpu",
    }
}

/// Whether a field was processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "failed",
        }
    }
}

/// One input that failed: the row of `Errors.parquet`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureRecord {
    /// 0 when the failure is not tied to one field (e.g. a duplicate file).
    pub image_number: u32,
    pub well: String,
    pub site: u32,
    pub file: String,
    /// `discover`, `layout`, `read`, `decode`, `segment` or `measure`.
    pub stage: String,
    pub message: String,
}

/// One processed field: the row of `Image.parquet`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FieldRecord {
    pub image_number: u32,
    pub plate: String,
    pub well: String,
    pub site: u32,
    pub z: Option<u32>,
    pub t: Option<u32>,
    /// Per channel (in plate channel order): file name and directory, if the field has one.
    pub files: Vec<Option<(String, String)>>,
    pub width: u32,
    pub height: u32,
    /// Per channel: bits per sample as stored (0 when not decoded).
    pub bit_depths: Vec<u32>,
    pub count_nuclei: u64,
    /// The nuclei threshold on CellProfiler's 0..1 scale.
    pub threshold: Option<f64>,
    pub status: Status,
    pub failure: Option<FailureRecord>,
    /// Layout values (one per layout column; `None` when empty or missing).
    pub layout: Vec<Option<String>>,
    /// The files read for this field, hashed.
    pub inputs: Vec<InputRecord>,
    /// Wall time spent on the field (manifest only; tables stay deterministic).
    #[serde(default)]
    pub seconds: f64,
    /// Image quality per channel (empty when the field failed before it was measured).
    #[serde(default)]
    pub quality: Vec<crate::qc_run::QualityRow>,
    /// Image-QC reason keys; empty when the field passes.
    #[serde(default)]
    pub qc_reasons: Vec<String>,
    /// With colonies: all colonies, then per grade (see [`crate::colony_run::GRADES`]);
    /// empty otherwise or when the field failed.
    #[serde(default)]
    pub colony_counts: Vec<u64>,
    /// With a cells channel: `[Count_Cells, Count_Cytoplasm]`; empty otherwise or when the
    /// field failed.
    #[serde(default)]
    pub cell_counts: Vec<u64>,
    /// The cell-stain threshold on CellProfiler's 0..1 scale (None for distance growth).
    #[serde(default)]
    pub cells_threshold: Option<f64>,
    /// With the Granularity group: per channel, the field's `Granularity_1..=16` (Image
    /// columns `Granularity_<n>_<channel>`); empty otherwise or when the field failed.
    #[serde(default)]
    pub granularity: Vec<Vec<f64>>,
}

impl FieldRecord {
    /// Whether the field counts in the Wells statistics: processed, and not left out by
    /// image QC.
    pub fn counts_in_wells(&self, exclude_flagged: bool) -> bool {
        self.status == Status::Ok && (!exclude_flagged || self.qc_reasons.is_empty())
    }
}

/// A field's results as the pipeline streams them.
#[derive(Debug, Clone)]
pub struct FieldOutput {
    pub record: FieldRecord,
    /// Per-nucleus measurements (the rows of `Nuclei.parquet`); empty when the field failed.
    pub nuclei: RecordBatch,
    /// The rows of `Colonies.parquet` when the run segments colonies.
    pub colonies: Option<RecordBatch>,
    /// The rows of `Cells.parquet` when the run has a cells channel.
    pub cells: Option<RecordBatch>,
    /// The rows of `Cytoplasm.parquet` when the run has a cells channel.
    pub cytoplasm: Option<RecordBatch>,
}

/// A field to process, with its layout values.
#[derive(Debug, Clone)]
struct Task {
    image_number: u32,
    field: Field,
    layout: Result<Vec<Option<String>>, String>,
}

/// Progress events, for a progress bar or `--json` log lines.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Start {
        plate: String,
        fields: usize,
        fields_in_plate: usize,
        /// Fields finished by an earlier, interrupted run (with `--resume`).
        already_done: usize,
        threads: usize,
        shard: Option<Shard>,
    },
    Warning {
        message: String,
    },
    Field {
        image_number: u32,
        well: String,
        site: u32,
        status: Status,
        nuclei: u64,
        error: Option<String>,
    },
    Written {
        path: PathBuf,
        rows: u64,
    },
}

/// What a finished run did.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub plate: String,
    pub fields: usize,
    pub fields_failed: usize,
    pub nuclei: u64,
    pub seconds: f64,
    pub out_dir: PathBuf,
    pub outputs: Vec<PathBuf>,
    pub warnings: usize,
}

/// Value of a layout column in one cell: numeric columns become Float64.
#[derive(Debug, Clone)]
struct LayoutColumn {
    name: String,
    numeric: bool,
}

/// A discovered plate ready to run.
pub struct Pipeline {
    options: RunOptions,
    plate: Plate,
    channels: Vec<Channel>,
    nuclear: usize,
    layout_columns: Vec<LayoutColumn>,
    layout_path: Option<PathBuf>,
    tasks: Vec<Task>,
    warnings: Vec<String>,
    plate_failures: Vec<FailureRecord>,
    pool: rayon::ThreadPool,
    threads: usize,
    features: crate::features::FeatureSet,
    z_t: (bool, bool),
    /// The cell-body stain (`NAME:cells`), when cells are grown from the nuclei.
    cells_channel: Option<usize>,
    /// Channels corrected for uneven illumination (`[illumination]`), and their functions,
    /// computed over the whole plate the first time they are needed.
    illum_channels: Vec<usize>,
    illumination: std::sync::OnceLock<std::result::Result<crate::illum_run::Illumination, String>>,
    /// The device of the nuclei segmentation, opened once for the run.
    backend: Arc<dyn Backend>,
    /// Why `--device auto` passed over an adapter, if it did.
    device_note: Option<String>,
}

/// The output file names, in the order they are written.
pub const TABLES: [&str; 7] = [
    "Nuclei",
    "Cells",
    "Cytoplasm",
    "Colonies",
    "Image",
    "Errors",
    "Wells",
];

impl Pipeline {
    /// Discovers the plate and its layout and plans the fields; processes nothing yet.
    pub fn new(options: RunOptions) -> Result<Pipeline> {
        let discover = ipscope_io::DiscoverOptions {
            pattern: options.config.input.pattern.clone(),
        };
        let plate = ipscope_io::discover(&options.plate_dir, &discover)?;
        let mut given: Vec<(String, String)> = options
            .config
            .channels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        given.retain(|(id, _)| !options.channels.iter().any(|(i, _)| i == id));
        given.extend(options.channels.iter().cloned());
        let channels = resolve_channels(&plate.channels, &given)?;
        let cells_channel = crate::channels::cells_channel(&channels)?;
        let mut warnings = Vec::new();
        let nuclear = match nuclear_channel(&channels) {
            Some(i) => i,
            None => {
                let i = channels
                    .iter()
                    .position(|c| c.role != Role::Transmitted)
                    .ok_or_else(|| {
                        Error::Invalid(format!(
                            "{}: no channel to find nuclei in; name the nuclear stain, e.g. --channel {}=DNA",
                            options.plate_dir.display(),
                            plate.channels.first().map(String::as_str).unwrap_or("w1")
                        ))
                    })?;
                warnings.push(format!(
                    "no channel is named DNA, Hoechst or DAPI; segmenting nuclei in {} (name it with --channel {}=DNA)",
                    channels[i].id, channels[i].id
                ));
                i
            }
        };

        let mut plate_failures = Vec::new();
        for p in &plate.problems {
            if let ipscope_io::Problem::Duplicate {
                well, site, paths, ..
            } = p
            {
                plate_failures.push(FailureRecord {
                    image_number: 0,
                    well: well.clone(),
                    site: *site,
                    file: paths
                        .iter()
                        .skip(1)
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(";"),
                    stage: "discover".into(),
                    message: p.to_string(),
                });
            }
        }

        let (layout, layout_errors) = match &options.layout {
            Some(path) => {
                let (layout, errs) = ipscope_io::read_layout_lenient(path)?;
                (Some(layout), errs)
            }
            None => (None, Vec::new()),
        };
        let layout_columns: Vec<LayoutColumn> = layout
            .as_ref()
            .map(|l| {
                l.columns
                    .iter()
                    .enumerate()
                    .map(|(i, name)| LayoutColumn {
                        name: name.clone(),
                        numeric: l.is_numeric(i),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let wells = plate.wells();
        if let Some(l) = &layout {
            let cov = ipscope_io::compare_layout(l, &wells);
            if !cov.wells_without_images.is_empty() {
                warnings.push(format!(
                    "{}: {} well(s) in the layout have no images: {}",
                    l.path.display(),
                    cov.wells_without_images.len(),
                    abbreviate(&cov.wells_without_images)
                ));
            }
            if !cov.images_without_layout.is_empty() {
                warnings.push(format!(
                    "{}: {} imaged well(s) have no layout row: {}",
                    l.path.display(),
                    cov.images_without_layout.len(),
                    abbreviate(&cov.images_without_layout)
                ));
            }
        }
        let bad_layout_rows: BTreeMap<String, String> = layout_errors
            .iter()
            .filter_map(|e| e.well.clone().map(|w| (w, e.error.to_string())))
            .collect();
        for e in layout_errors.iter().filter(|e| e.well.is_none()) {
            warnings.push(e.error.to_string());
        }

        let well_index: BTreeMap<&str, usize> = wells
            .iter()
            .enumerate()
            .map(|(i, w)| (w.as_str(), i))
            .collect();
        let in_shard = |well: &str| match (&options.shard, well_index.get(well)) {
            (Some(s), Some(&i)) => s.contains_well(i),
            _ => true,
        };
        plate_failures.retain(|f| in_shard(&f.well));
        let tasks: Vec<Task> = plate
            .fields
            .iter()
            .enumerate()
            .filter(|(_, f)| in_shard(&f.well))
            .map(|(i, f)| Task {
                image_number: i as u32 + 1,
                field: f.clone(),
                layout: match bad_layout_rows.get(&f.well) {
                    Some(msg) => Err(msg.clone()),
                    None => Ok(layout
                        .as_ref()
                        .and_then(|l| l.get(&f.well))
                        .map(|vals| {
                            vals.iter()
                                .map(|v| (!v.is_empty()).then(|| v.clone()))
                                .collect()
                        })
                        .unwrap_or_else(|| vec![None; layout_columns.len()])),
                },
            })
            .collect();
        let threads = options
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| Error::Invalid(format!("cannot start {threads} worker threads: {e}")))?;
        let z_t = (
            plate.fields.iter().any(|f| f.z.is_some()),
            plate.fields.iter().any(|f| f.t.is_some()),
        );
        let features = options.config.measure.feature_set()?;
        if options
            .config
            .colonies_from
            .is_some_and(crate::colony_run::ColonySource::needs_transmitted)
            && !channels.iter().any(|c| c.role == Role::Transmitted)
        {
            return Err(Error::Invalid(format!(
                "{}: --colonies brightfield or both needs a transmitted-light channel; name it, e.g. --channel {}=Brightfield (channels: {})",
                options.plate_dir.display(),
                plate.channels.last().map(String::as_str).unwrap_or("w4"),
                channels
                    .iter()
                    .map(|c| format!("{}={}", c.id, c.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let marker_names: Vec<String> = channels
            .iter()
            .filter(|c| c.role == Role::Marker)
            .map(|c| c.name.clone())
            .collect();
        crate::marker_run::check_config(&options.config.acceptance, &marker_names)?;
        let illum_channels = options.config.illumination.corrected_channels(&channels)?;
        // Before any field: `--device gpu` without an adapter stops the run here.
        let (backend, device_note): (Arc<dyn Backend>, _) = match &options.backend {
            Some(b) => (Arc::clone(&b.0), None),
            None => {
                let (b, note) = ipscope_gpu::select_with_note(options.device).map_err(|e| {
                    let source = match &options.device_source {
                        Some(s) => s.clone(),
                        None => format!("--device {}", device_arg(options.device)),
                    };
                    Error::Invalid(format!("{source}: {e}"))
                })?;
                (Arc::from(b), note)
            }
        };
        Ok(Pipeline {
            backend,
            device_note,
            features,
            layout_path: options.layout.clone(),
            options,
            plate,
            channels,
            nuclear,
            layout_columns,
            tasks,
            warnings,
            plate_failures,
            pool,
            threads,
            z_t,
            cells_channel,
            illum_channels,
            illumination: std::sync::OnceLock::new(),
        })
    }

    pub fn plate(&self) -> &Plate {
        &self.plate
    }
    pub fn channels(&self) -> &[Channel] {
        &self.channels
    }
    /// Number of fields this run (or shard) processes.
    pub fn field_count(&self) -> usize {
        self.tasks.len()
    }
    /// Warnings found while planning (layout coverage, channel roles).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
    /// The device the nuclei segmentation runs on, e.g. `cpu` or `gpu: NAME (Vulkan, …)`.
    pub fn device(&self) -> String {
        self.backend.name()
    }

    /// Why `--device auto` passed over the adapter it found (a software renderer such as
    /// lavapipe), if it did.
    pub fn device_note(&self) -> Option<&str> {
        self.device_note.as_deref()
    }

    /// The illumination functions of the corrected channels (none when correction is off),
    /// computed over every field of the plate the first time they are needed.
    pub fn illumination(&self) -> Result<&crate::illum_run::Illumination> {
        self.illumination
            .get_or_init(|| {
                let read_opts = ipscope_io::ReadOptions {
                    max_pixels: self.options.config.input.max_pixels,
                };
                crate::illum_run::compute(
                    &self.plate,
                    &self.channels,
                    &self.illum_channels,
                    &self.options.config.illumination,
                    &read_opts,
                    &self.pool,
                    (self.threads * 2).max(1),
                )
                .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| Error::Invalid(e.clone()))
    }

    /// Yields the fields' outputs in ImageNumber order, processed on the run's workers by
    /// the machinery of [`Pipeline::run`] (a worker takes the next field as soon as it is
    /// free), `2 × threads` fields at a time: an iterator borrowing the pipeline cannot keep
    /// workers running between two calls of `next`, so each window ends when its last field
    /// is done (the workers that finish first help the others' fields from inside). At most
    /// one window's outputs are held at once. [`Pipeline::for_each_field`] streams without
    /// windows. Stops early (fewer outputs) when the run's stop flag is raised.
    pub fn stream(&self) -> impl Iterator<Item = FieldOutput> + '_ {
        // The illumination pass first, outside the workers (a failure fails every field).
        let _ = self.illumination();
        let tasks: Vec<&Task> = self.tasks.iter().collect();
        let window = (self.threads * 2).max(1);
        (0..tasks.len()).step_by(window).flat_map(move |i| {
            let mut outs = Vec::with_capacity(window);
            // The sink only collects, so the workers' only error is none.
            let _ = self.process_in_order(
                &tasks[i..(i + window).min(tasks.len())],
                &BTreeSet::new(),
                &mut |out, _| {
                    outs.push(out);
                    Ok(())
                },
            );
            outs
        })
    }

    /// Processes the fields on the run's workers and hands each output to `f` on the calling
    /// thread, in ImageNumber order, by the machinery of [`Pipeline::run`]: no batches, a
    /// worker takes the next field as soon as it is free, and at most `2 × threads` fields
    /// are in flight or waiting for their turn, whatever the plate size. `f` returning
    /// [`std::ops::ControlFlow::Break`] (or the run's stop flag) stops the workers after
    /// their current field. Returns how many outputs `f` was given.
    pub fn for_each_field(
        &self,
        mut f: impl FnMut(FieldOutput) -> std::ops::ControlFlow<()>,
    ) -> usize {
        let _ = self.illumination();
        let tasks: Vec<&Task> = self.tasks.iter().collect();
        let mut handed = 0;
        // A break is passed to the workers as the sink's error, which stops them.
        let _ = self.process_in_order(&tasks, &BTreeSet::new(), &mut |out, _| {
            handed += 1;
            match f(out) {
                std::ops::ControlFlow::Continue(()) => Ok(()),
                std::ops::ControlFlow::Break(()) => Err(Error::Invalid("stopped".into())),
            }
        });
        handed
    }

    /// Processes `tasks` on the run's thread pool and hands each output (with its outline
    /// thumbnail when its ImageNumber is in `overlays`) to `sink` on the calling thread, in
    /// task order. A worker takes the next field as soon as it is free, with no batches and
    /// no barrier: a slow field holds up only the hand-over of the fields behind it, and
    /// workers run at most `2 × threads` fields ahead of the last one handed over, so the
    /// outputs held at once stay bounded whatever the plate size. The stop flag is read
    /// before each field is started; returns whether it left fields unprocessed. An error of
    /// `sink` stops the workers after their current field and is returned.
    fn process_in_order(
        &self,
        tasks: &[&Task],
        overlays: &BTreeSet<u32>,
        sink: &mut dyn FnMut(FieldOutput, Option<Vec<u8>>) -> Result<()>,
    ) -> Result<bool> {
        /// Shared by the workers: the next task to take, how many outputs were handed over.
        struct Turn {
            next: usize,
            handed: usize,
            abort: bool,
        }
        let ahead = (self.threads * 2).max(1);
        let turn = Mutex::new(Turn {
            next: 0,
            handed: 0,
            abort: false,
        });
        let wake = Condvar::new();
        let lock = || turn.lock().unwrap_or_else(|e| e.into_inner());
        let stop = || {
            self.options
                .stop
                .as_ref()
                .is_some_and(|s| s.load(Ordering::SeqCst))
        };
        let (tx, rx) = mpsc::channel();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                // Moved here: the channel closes when every worker has returned.
                let tx = tx;
                self.pool.broadcast(|_| loop {
                    let i = {
                        let mut t = lock();
                        loop {
                            if t.abort || t.next >= tasks.len() || stop() {
                                return;
                            }
                            if t.next < t.handed + ahead {
                                t.next += 1;
                                break t.next - 1;
                            }
                            t = wake.wait(t).unwrap_or_else(|e| e.into_inner());
                        }
                    };
                    let task = tasks[i];
                    let out = self.process_field(task, overlays.contains(&task.image_number));
                    if tx.send((i, out)).is_err() {
                        return;
                    }
                });
            });
            let mut waiting = BTreeMap::new();
            let mut handed = 0;
            let mut result = Ok(());
            for (i, out) in rx {
                waiting.insert(i, out);
                while let Some((out, png)) = waiting.remove(&handed) {
                    handed += 1;
                    if result.is_ok() {
                        result = sink(out, png);
                    }
                    let mut t = lock();
                    t.handed = handed;
                    t.abort |= result.is_err();
                    drop(t);
                    wake.notify_all();
                }
            }
            result.map(|()| handed < tasks.len())
        })
    }

    /// Identifies what a run computes: parameters, channels, the plate's files (path, size,
    /// modification time), layout content, shard and format. A resume must match it.
    fn fingerprint(&self, format: Format) -> Result<String> {
        let mut fp = crate::partial::Fingerprint::default();
        let mut put = |s: &str| fp.put(s);
        put(env!("CARGO_PKG_VERSION"));
        // `[run] device` is a choice, not a parameter: the device it picked is (below).
        let config = Config {
            run: Default::default(),
            ..self.options.config.clone()
        };
        put(&serde_json::to_string(&config).unwrap_or_default());
        put(&serde_json::to_string(&self.channels).unwrap_or_default());
        put(&serde_json::to_string(&self.options.shard).unwrap_or_default());
        put(format.extension());
        // The GPU's floats may flip a pixel at the threshold: a resume on another device
        // must not mix its fields with the first device's. (CPU runs keep their old print.)
        let device = self.backend.name();
        if device != "cpu" {
            put(&device);
        }
        // A colony classifier changes the Colonies grades, so a resume with another model
        // (or without one) must not reuse fields graded by the first.
        put(&match &self.options.colony_model {
            Some(m) => serde_json::to_string(m.as_ref()).unwrap_or_default(),
            None => String::new(),
        });
        for t in &self.tasks {
            put(&t.image_number.to_string());
            for cf in &t.field.channels {
                put(&format!(
                    "{}|{}|{}",
                    cf.path.display(),
                    cf.page,
                    crate::partial::file_stamp(&cf.path)
                ));
            }
        }
        if let Some(l) = &self.layout_path {
            put(&InputRecord::of_file(l)?.sha256);
        }
        Ok(fp.finish())
    }

    /// The schema of `Nuclei` tables for this plate.
    pub fn nuclei_schema(&self) -> Result<SchemaRef> {
        let empty = self.blank_record();
        let none = crate::features::ObjectMeasurements::default();
        Ok(self.nuclei_batch(&empty, &none, &[], &[])?.schema())
    }

    /// The names of the marker channels, in channel order.
    fn marker_names(&self) -> Vec<String> {
        self.channels
            .iter()
            .filter(|c| c.role == Role::Marker)
            .map(|c| c.name.clone())
            .collect()
    }

    /// The Colonies rows of a field (none when `colonies` is `None`); `None` when the run does
    /// not segment colonies.
    fn colonies_rows(
        &self,
        record: &FieldRecord,
        colonies: Option<&crate::colony_run::FieldColonies>,
    ) -> Result<Option<RecordBatch>> {
        if self.options.config.colonies_from.is_none() {
            return Ok(None);
        }
        let key = crate::colony_run::FieldKey {
            image_number: record.image_number,
            plate: &record.plate,
            well: &record.well,
            site: record.site,
        };
        let channels: Vec<String> = self.channels.iter().map(|c| c.name.clone()).collect();
        Ok(Some(crate::colony_run::colonies_batch(
            &key,
            colonies,
            &channels,
            &self.marker_names(),
            &self.features,
        )?))
    }

    /// The schema of `Colonies` tables, when the run segments colonies.
    pub fn colonies_schema(&self) -> Result<Option<SchemaRef>> {
        let empty = self.blank_record();
        Ok(self.colonies_rows(&empty, None)?.map(|b| b.schema()))
    }

    /// The schemas of `Cells` and `Cytoplasm` tables, when the run has a cells channel.
    pub fn cells_schemas(&self) -> Result<Option<(SchemaRef, SchemaRef)>> {
        let empty = self.blank_record();
        Ok(self
            .compartment_rows(&empty, "Cells", None, &[], &[])?
            .zip(self.compartment_rows(&empty, "Cytoplasm", None, &[], &[])?)
            .map(|(c, y)| (c.schema(), y.schema())))
    }

    /// A record of no field (schemas are built from it).
    fn blank_record(&self) -> FieldRecord {
        FieldRecord {
            image_number: 0,
            plate: String::new(),
            well: String::new(),
            site: 0,
            z: None,
            t: None,
            files: vec![],
            width: 0,
            height: 0,
            bit_depths: vec![],
            count_nuclei: 0,
            threshold: None,
            status: Status::Ok,
            failure: None,
            layout: vec![],
            inputs: vec![],
            seconds: 0.0,
            quality: vec![],
            qc_reasons: vec![],
            colony_counts: vec![],
            cell_counts: vec![],
            cells_threshold: None,
            granularity: vec![],
        }
    }

    /// The Cells or Cytoplasm rows of a field (none when `cells` is `None`), in the format of
    /// Nuclei plus the parent columns; `None` when the run has no cells channel.
    /// `nuclei` are the field's nuclear shapes (index = label − 1).
    fn compartment_rows(
        &self,
        record: &FieldRecord,
        object: &str,
        cells: Option<&crate::cells_run::FieldCells>,
        nuclei: &[ShapeFeatures],
        colony_parents: &[u32],
    ) -> Result<Option<RecordBatch>> {
        if self.cells_channel.is_none() {
            return Ok(None);
        }
        let empty = crate::features::ObjectMeasurements::default();
        let m = match cells {
            Some(c) if object == "Cytoplasm" => &c.cytoplasm,
            Some(c) => &c.cells,
            None => &empty,
        };
        let keep = crate::cells_run::kept(m);
        let labels: Vec<u32> = keep.iter().map(|&i| m.shapes[i].label).collect();
        let n = keep.len();
        let mut b = TableBuilder::new();
        b.u32("ImageNumber", vec![record.image_number; n])
            .doc("Field number: row of Image with the same ImageNumber")
            .u32("ObjectNumber", labels.clone())
            .doc("Label value of the object in the field: that of the nucleus it grew from")
            .str("Metadata_Plate", vec![record.plate.clone(); n])
            .str("Metadata_Well", vec![record.well.clone(); n])
            .u32("Metadata_Site", vec![record.site; n]);
        self.add_layout_columns(&mut b, &record.layout, n);
        let channels: Vec<String> = self.channels.iter().map(|c| c.name.clone()).collect();
        crate::features::add_object_columns(
            &mut b,
            object,
            &channels,
            &self.features,
            &m.shapes,
            &m.intensities,
            &keep,
        );
        crate::features::add_distribution_columns(
            &mut b,
            object,
            &channels,
            &self.features,
            m,
            &keep,
        );
        let has = |shapes: &[ShapeFeatures], l: u32| {
            (l as usize)
                .checked_sub(1)
                .and_then(|k| shapes.get(k))
                .is_some_and(|s| s.area > 0)
        };
        let cell_shapes = cells.map(|c| c.cells.shapes.as_slice()).unwrap_or(&[]);
        crate::cells_run::add_parent_columns(&mut b, object, &labels, &|l| has(nuclei, l), &|l| {
            has(cell_shapes, l)
        });
        if self.options.config.colonies_from.is_some() {
            // A cell and its cytoplasm carry the label of the nucleus they grew from, so
            // they belong to that nucleus's colony.
            b.u32(
                "Parent_Colonies",
                labels
                    .iter()
                    .map(|&l| {
                        (l as usize)
                            .checked_sub(1)
                            .and_then(|k| colony_parents.get(k))
                            .copied()
                            .unwrap_or(0)
                    })
                    .collect(),
            )
            .doc("ObjectNumber of the colony holding the object's nucleus (0: in none)");
        }
        Ok(Some(b.finish()?))
    }

    /// Outline thumbnails of the first fields that succeeded (at most
    /// [`crate::analysis::MAX_OVERLAYS`]), for the report: those drawn while the run
    /// processed the field (`drawn`, by ImageNumber), the others (fields finished before a
    /// resume, or later fields when one of the first failed) from the nuclear channel read
    /// and segmented again, since the run keeps no pixels. A field that fails now is skipped.
    fn example_overlays(
        &self,
        records: &[FieldRecord],
        drawn: &BTreeMap<u32, Vec<u8>>,
    ) -> Vec<ipscope_report::Overlay> {
        let ok: BTreeSet<u32> = records
            .iter()
            .filter(|r| r.status == Status::Ok)
            .map(|r| r.image_number)
            .collect();
        let read_opts = ipscope_io::ReadOptions {
            max_pixels: self.options.config.input.max_pixels,
        };
        let nuclear = &self.channels[self.nuclear];
        self.tasks
            .iter()
            .filter(|t| ok.contains(&t.image_number))
            .filter_map(|t| {
                let name = format!("{} site {}", t.field.well, t.field.site);
                if let Some(png) = drawn.get(&t.image_number) {
                    return Some(ipscope_report::Overlay {
                        name,
                        png: png.clone(),
                    });
                }
                let cf = t
                    .field
                    .channels
                    .iter()
                    .find(|cf| cf.channel == nuclear.id)?;
                let bytes = fs::read(&cf.path).ok()?;
                let img = ipscope_io::decode(&bytes, &cf.path, cf.page, &read_opts).ok()?;
                let illum = self.illumination().ok()?.functions.get(self.nuclear);
                let img = match illum.cloned().flatten() {
                    Some(f) => DynImage::F32(
                        with_dyn_image!(&img, i => ipscope_core::ops::illumination::correct(i.view(), f.view()))
                            .ok()?,
                    ),
                    None => img,
                };
                let params = &self.options.config.nuclei;
                let backend = self.backend.as_ref();
                let seg =
                    with_dyn_image!(&img, i => segment_nuclei_with(backend, i.view(), params))
                        .ok()?;
                let png = with_dyn_image!(&img, i => crate::analysis::overlay_thumbnail(
                    i.view(),
                    seg.labels.view()
                ))
                .ok()?;
                Some(ipscope_report::Overlay { name, png })
            })
            .take(crate::analysis::MAX_OVERLAYS)
            .collect()
    }

    /// A field's output, and with `overlay` the field's outline thumbnail for the report
    /// (PNG), made from the labels this segmentation produced, so the report needs no second
    /// segmentation of the field.
    fn process_field(&self, task: &Task, overlay: bool) -> (FieldOutput, Option<Vec<u8>>) {
        let clock = Instant::now();
        let f = &task.field;
        let mut record = FieldRecord {
            image_number: task.image_number,
            plate: f.plate.clone(),
            well: f.well.clone(),
            site: f.site,
            z: f.z,
            t: f.t,
            files: self
                .channels
                .iter()
                .map(|c| {
                    f.channels.iter().find(|cf| cf.channel == c.id).map(|cf| {
                        (
                            cf.path
                                .file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_default(),
                            cf.path
                                .parent()
                                .map(|p| p.display().to_string())
                                .unwrap_or_default(),
                        )
                    })
                })
                .collect(),
            width: 0,
            height: 0,
            bit_depths: vec![0; self.channels.len()],
            count_nuclei: 0,
            threshold: None,
            status: Status::Ok,
            failure: None,
            layout: task
                .layout
                .clone()
                .unwrap_or_else(|_| vec![None; self.layout_columns.len()]),
            inputs: vec![],
            seconds: 0.0,
            quality: vec![],
            qc_reasons: vec![],
            colony_counts: vec![],
            cell_counts: vec![],
            cells_threshold: None,
            granularity: vec![],
        };
        let outcome = match &task.layout {
            Err(msg) => Err((
                self.layout_path
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                "layout",
                msg.clone(),
            )),
            Ok(_) => catch_unwind(AssertUnwindSafe(|| {
                self.measure_field(task, &mut record, overlay)
            }))
            .unwrap_or_else(|panic| {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown".into());
                Err((
                    f.channels
                        .first()
                        .map(|c| c.path.display().to_string())
                        .unwrap_or_default(),
                    "segment",
                    format!("internal error (please report): {msg}"),
                ))
            }),
        };
        record.seconds = clock.elapsed().as_secs_f64();
        match outcome {
            Ok((nuclei, colonies, (cells, cytoplasm), png)) => (
                FieldOutput {
                    record,
                    nuclei,
                    colonies,
                    cells,
                    cytoplasm,
                },
                png,
            ),
            Err((file, stage, message)) => {
                record.status = Status::Failed;
                record.count_nuclei = 0;
                record.threshold = None;
                record.failure = Some(FailureRecord {
                    image_number: task.image_number,
                    well: f.well.clone(),
                    site: f.site,
                    file,
                    stage: stage.to_string(),
                    message,
                });
                record.colony_counts = vec![];
                record.cell_counts = vec![];
                record.cells_threshold = None;
                record.granularity = vec![];
                let nuclei = self
                    .nuclei_batch(
                        &record,
                        &crate::features::ObjectMeasurements::default(),
                        &[],
                        &[],
                    )
                    .unwrap_or_else(|_| RecordBatch::new_empty(empty_schema()));
                let colonies = self
                    .colonies_rows(&record, None)
                    .unwrap_or_else(|_| Some(RecordBatch::new_empty(empty_schema())));
                let [cells, cytoplasm] = ["Cells", "Cytoplasm"].map(|o| {
                    self.compartment_rows(&record, o, None, &[], &[])
                        .unwrap_or_else(|_| Some(RecordBatch::new_empty(empty_schema())))
                });
                (
                    FieldOutput {
                        record,
                        nuclei,
                        colonies,
                        cells,
                        cytoplasm,
                    },
                    None,
                )
            }
        }
    }

    /// Reads, segments and measures one field: its Nuclei rows and, with colonies, its
    /// Colonies rows, with a cells channel its Cells and Cytoplasm rows, with `overlay` its
    /// outline thumbnail (None when it cannot be drawn). Errors are (file, stage, message).
    #[allow(clippy::type_complexity)]
    fn measure_field(
        &self,
        task: &Task,
        record: &mut FieldRecord,
        overlay: bool,
    ) -> std::result::Result<
        (
            RecordBatch,
            Option<RecordBatch>,
            (Option<RecordBatch>, Option<RecordBatch>),
            Option<Vec<u8>>,
        ),
        (String, &'static str, String),
    > {
        let f = &task.field;
        let read_opts = ipscope_io::ReadOptions {
            max_pixels: self.options.config.input.max_pixels,
        };
        let mut images: Vec<DynImage> = Vec::with_capacity(self.channels.len());
        for c in &self.channels {
            let Some(cf) = f.channels.iter().find(|cf| cf.channel == c.id) else {
                return Err((
                    String::new(),
                    "discover",
                    format!(
                        "well {} site {}: no file for channel {} ({})",
                        f.well, f.site, c.id, c.name
                    ),
                ));
            };
            let file = cf.path.display().to_string();
            let bytes = fs::read(&cf.path).map_err(|e| (file.clone(), "read", e.to_string()))?;
            record.inputs.push(InputRecord {
                path: cf.path.clone(),
                bytes: bytes.len() as u64,
                sha256: hex(&Sha256::digest(&bytes)),
            });
            let img = ipscope_io::decode(&bytes, &cf.path, cf.page, &read_opts)
                .map_err(|e| (file.clone(), "decode", e.to_string()))?;
            if let Some(first) = images.first() {
                if (first.width(), first.height()) != (img.width(), img.height()) {
                    return Err((
                        file,
                        "decode",
                        format!(
                            "image is {}x{} but channel {} of the same field is {}x{}; channels of a field must have one size",
                            img.width(),
                            img.height(),
                            self.channels[0].id,
                            first.width(),
                            first.height()
                        ),
                    ));
                }
            }
            record.bit_depths[images.len()] = img.sample_type().bits();
            images.push(img);
        }
        let Some(first) = images.first() else {
            return Err((String::new(), "discover", "field has no channels".into()));
        };
        record.width = first.width() as u32;
        record.height = first.height() as u32;
        let qc = &self.options.config.qc;
        let measure_quality = |images: &[DynImage]| {
            if qc.enabled {
                crate::qc_run::measure_field(images, &self.channels, self.nuclear, qc)
            } else {
                (vec![], vec![])
            }
        };
        let params = &self.options.config.nuclei;
        let backend = self.backend.as_ref();
        // A device failure (lost, out of memory, field too large) fails this field only.
        let segment = |images: &[DynImage]| {
            with_dyn_image!(&images[self.nuclear], img => segment_nuclei_with(backend, img.view(), params))
                .map_err(|e| {
                    let nuclear = &self.channels[self.nuclear].id;
                    let file = f
                        .channels
                        .iter()
                        .find(|cf| &cf.channel == nuclear)
                        .map(|cf| cf.path.display().to_string())
                        .unwrap_or_default();
                    (file, "segment", e.to_string())
                })
        };
        // Image QC measures the raw images; segmentation and measurements the corrected ones.
        let illum = self
            .illumination()
            .map_err(|e| (String::new(), "illumination", e.to_string()))?;
        let ((quality, reasons), seg) = if illum.is_active() {
            let quality = measure_quality(&images);
            illum
                .apply(&mut images, &self.channels)
                .map_err(|e| (String::new(), "illumination", e))?;
            (quality, segment(&images))
        } else {
            // Independent work on the same pixels: a worker with no field left (the last
            // fields of a plate, a plate with fewer fields than threads) takes one half.
            rayon::join(|| measure_quality(&images), || segment(&images))
        };
        record.quality = quality;
        record.qc_reasons = reasons;
        let seg = seg?;
        let png = overlay
            .then(|| {
                with_dyn_image!(&images[self.nuclear], i => crate::analysis::overlay_thumbnail(
                    i.view(),
                    seg.labels.view(),
                ))
                .ok()
            })
            .flatten();
        let channel_images: Vec<&DynImage> = images.iter().collect();
        let measured =
            crate::features::measure_objects(&seg.labels, &channel_images, &self.features)
                .map_err(|e| (String::new(), "measure", e.to_string()))?;
        record.threshold = Some(seg.threshold);
        record.count_nuclei = measured.shapes.iter().filter(|s| s.area > 0).count() as u64;
        record.granularity = measured.image_granularity.clone();
        let colonies = match self.options.config.colonies_from {
            None => None,
            Some(source) => Some(
                crate::colony_run::segment_field(
                    source,
                    &seg.labels,
                    &images,
                    &self.channels,
                    self.nuclear,
                    &self.options.config.colonies,
                    &self.options.config.colony_grades,
                    self.options
                        .colony_model
                        .as_deref()
                        .map(|m| m as &dyn crate::colony_run::ColonyGrader),
                    &self.features,
                )
                .map_err(|e| (String::new(), "colonies", e))?,
            ),
        };
        record.colony_counts = colonies.as_ref().map(|c| c.counts()).unwrap_or_default();
        let parents = colonies
            .as_ref()
            .map(|c| c.parents.as_slice())
            .unwrap_or(&[]);
        let cells = match self.cells_channel {
            None => None,
            Some(ch) => Some(
                crate::cells_run::segment_field(
                    &seg.labels,
                    &images,
                    ch,
                    &self.options.config.cells,
                    &self.features,
                )
                .map_err(|e| (String::new(), "cells", e))?,
            ),
        };
        record.cell_counts = cells.as_ref().map(|c| c.counts()).unwrap_or_default();
        // None for distance growth (no threshold), which is what the saved JSON record
        // would turn a NaN into anyway.
        record.cells_threshold = cells
            .as_ref()
            .and_then(|c| c.threshold.is_finite().then_some(c.threshold));
        let children = cells
            .as_ref()
            .map(|c| c.children_of_nuclei(measured.shapes.len()))
            .unwrap_or_default();
        let nuclei = self
            .nuclei_batch(record, &measured, parents, &children)
            .map_err(|e| (String::new(), "measure", e.to_string()))?;
        let colony_rows = self
            .colonies_rows(record, colonies.as_ref())
            .map_err(|e| (String::new(), "colonies", e.to_string()))?;
        let [cell_rows, cytoplasm_rows] = ["Cells", "Cytoplasm"].map(|o| {
            self.compartment_rows(record, o, cells.as_ref(), &measured.shapes, parents)
                .map_err(|e| (String::new(), "cells", e.to_string()))
        });
        Ok((nuclei, colony_rows, (cell_rows?, cytoplasm_rows?), png))
    }

    /// Builds the Nuclei rows of one field (objects with area 0 are skipped); the measurement
    /// columns, their order and docs come from [`crate::features`]. `children`: the
    /// `Children_Cells_Count` of each label (index = label − 1) when the run grows cells.
    fn nuclei_batch(
        &self,
        record: &FieldRecord,
        m: &crate::features::ObjectMeasurements,
        parents: &[u32],
        children: &[u32],
    ) -> Result<RecordBatch> {
        let shapes = m.shapes.as_slice();
        let keep: Vec<usize> = (0..shapes.len()).filter(|&i| shapes[i].area > 0).collect();
        let n = keep.len();
        let mut b = TableBuilder::new();
        b.u32("ImageNumber", vec![record.image_number; n])
            .doc("Field number: row of Image with the same ImageNumber")
            .u32("ObjectNumber", keep.iter().map(|&i| shapes[i].label).collect())
            .doc("Label value of the nucleus in the field's label image (1..N, raster order of first pixel)")
            .str("Metadata_Plate", vec![record.plate.clone(); n])
            .str("Metadata_Well", vec![record.well.clone(); n])
            .u32("Metadata_Site", vec![record.site; n]);
        self.add_layout_columns(&mut b, &record.layout, n);
        let channels: Vec<String> = self.channels.iter().map(|c| c.name.clone()).collect();
        crate::features::add_object_columns(
            &mut b,
            "Nuclei",
            &channels,
            &self.features,
            shapes,
            &m.intensities,
            &keep,
        );
        // The opt-in groups (`[measure] features`), after the default ones.
        crate::features::add_distribution_columns(
            &mut b,
            "Nuclei",
            &channels,
            &self.features,
            m,
            &keep,
        );
        if self.options.config.colonies_from.is_some() {
            b.u32(
                "Parent_Colonies",
                keep.iter()
                    .map(|&i| {
                        (shapes[i].label as usize)
                            .checked_sub(1)
                            .and_then(|k| parents.get(k))
                            .copied()
                            .unwrap_or(0)
                    })
                    .collect(),
            )
            .doc("ObjectNumber of the colony holding the nucleus (0: in none)");
        }
        if self.cells_channel.is_some() {
            b.u32(
                "Children_Cells_Count",
                keep.iter()
                    .map(|&i| {
                        (shapes[i].label as usize)
                            .checked_sub(1)
                            .and_then(|k| children.get(k))
                            .copied()
                            .unwrap_or(0)
                    })
                    .collect(),
            )
            .doc("Cells grown from the nucleus (Parent_Nuclei of Cells)");
        }
        Ok(b.finish()?)
    }

    fn add_layout_columns(&self, b: &mut TableBuilder, layout: &[Option<String>], n: usize) {
        for (i, c) in self.layout_columns.iter().enumerate() {
            let v = layout.get(i).cloned().flatten();
            if c.numeric {
                let x = v.and_then(|s| s.trim().parse::<f64>().ok());
                b.opt_f64(&c.name, vec![x; n]);
            } else {
                b.opt_str(&c.name, vec![v; n]);
            }
        }
    }

    /// Image, Errors and Wells of a finished run, written; with them as the report and the
    /// analysis tables read them (the batches just written, not read back from the files).
    fn write_plate_tables(
        &self,
        records: &[FieldRecord],
        wells: ipscope_stats::WellSummary,
        marker_values: crate::marker_run::MarkerValues,
        path_of: &dyn Fn(&str) -> PathBuf,
        format: Format,
        out_dir: &Path,
    ) -> Result<(Vec<ipscope_table::WrittenFile>, ipscope_report::RunTables)> {
        let write = |name: &str, batch: &RecordBatch| {
            ipscope_table::write_table(
                &path_of(name),
                batch.schema(),
                std::slice::from_ref(batch),
                format,
            )
        };
        let mut written = Vec::with_capacity(3);
        let image = self.image_batch(records)?;
        written.push(write("Image", &image)?);
        let mut failures = self.plate_failures.clone();
        failures.extend(records.iter().filter_map(|r| r.failure.clone()));
        failures.sort_by(|a, b| {
            (a.image_number, &a.well, a.site, &a.file).cmp(&(
                b.image_number,
                &b.well,
                b.site,
                &b.file,
            ))
        });
        let errors = errors_batch(&failures)?;
        written.push(write("Errors", &errors)?);
        let wells =
            crate::colony_run::add_well_fractions(wells.finish(&image).map_err(wells_err)?)?;
        let config = &self.options.config;
        let wells = marker_values.finish(wells, &config.markers, &config.acceptance)?;
        written.push(write("Wells", &wells)?);
        let run = ipscope_report::RunTables {
            wells,
            image: Some(image),
            errors: Some(errors),
            manifest: None,
            out_dir: out_dir.to_path_buf(),
        };
        Ok((written, run))
    }

    /// Builds the Image table from field records (in ImageNumber order).
    pub fn image_batch(&self, records: &[FieldRecord]) -> Result<RecordBatch> {
        let mut b = TableBuilder::new();
        b.u32(
            "ImageNumber",
            records.iter().map(|r| r.image_number).collect(),
        )
        .doc("Field number within the plate (1..N in plate order: well, site), the same in every shard")
        .str(
            "Metadata_Plate",
            records.iter().map(|r| r.plate.clone()).collect(),
        )
        .str(
            "Metadata_Well",
            records.iter().map(|r| r.well.clone()).collect(),
        )
        .u32("Metadata_Site", records.iter().map(|r| r.site).collect());
        if self.z_t.0 {
            b.opt_f64(
                "Metadata_Z",
                records.iter().map(|r| r.z.map(f64::from)).collect(),
            );
        }
        if self.z_t.1 {
            b.opt_f64(
                "Metadata_T",
                records.iter().map(|r| r.t.map(f64::from)).collect(),
            );
        }
        for (i, c) in self.layout_columns.iter().enumerate() {
            let vals: Vec<Option<String>> = records
                .iter()
                .map(|r| r.layout.get(i).cloned().flatten())
                .collect();
            if c.numeric {
                b.opt_f64(
                    &c.name,
                    vals.into_iter()
                        .map(|v| v.and_then(|s| s.trim().parse().ok()))
                        .collect(),
                );
            } else {
                b.opt_str(&c.name, vals);
            }
        }
        for (ci, c) in self.channels.iter().enumerate() {
            b.opt_str(
                &format!("FileName_{}", c.name),
                records
                    .iter()
                    .map(|r| r.files.get(ci).cloned().flatten().map(|f| f.0))
                    .collect(),
            )
            .opt_str(
                &format!("PathName_{}", c.name),
                records
                    .iter()
                    .map(|r| r.files.get(ci).cloned().flatten().map(|f| f.1))
                    .collect(),
            )
            .u32(
                &format!("BitDepth_{}", c.name),
                records
                    .iter()
                    .map(|r| r.bit_depths.get(ci).copied().unwrap_or(0))
                    .collect(),
            )
            .doc("Bits per sample as stored in the file (0 if it could not be decoded); values are never rescaled");
        }
        b.u32("Width", records.iter().map(|r| r.width).collect())
            .u32("Height", records.iter().map(|r| r.height).collect())
            .u64(
                "Count_Nuclei",
                records.iter().map(|r| r.count_nuclei).collect(),
            )
            .opt_f64(
                "Threshold_FinalThreshold_Nuclei",
                records.iter().map(|r| r.threshold).collect(),
            )
            .doc("Threshold used for nuclei, on CellProfiler's 0..1 scale")
            .str(
                "Status",
                records
                    .iter()
                    .map(|r| r.status.as_str().to_string())
                    .collect(),
            )
            .doc("ok, or failed (see Errors)");
        let quality: Vec<&[crate::qc_run::QualityRow]> =
            records.iter().map(|r| r.quality.as_slice()).collect();
        let reasons: Vec<&[String]> = records.iter().map(|r| r.qc_reasons.as_slice()).collect();
        crate::qc_run::add_image_columns(&mut b, &self.channels, &quality, &reasons);
        if self.options.config.colonies_from.is_some() {
            let counts: Vec<&[u64]> = records.iter().map(|r| r.colony_counts.as_slice()).collect();
            crate::colony_run::add_image_columns(&mut b, &counts);
        }
        let granularity: Vec<&[Vec<f64>]> =
            records.iter().map(|r| r.granularity.as_slice()).collect();
        let channel_names: Vec<String> = self.channels.iter().map(|c| c.name.clone()).collect();
        crate::features::add_image_granularity_columns(
            &mut b,
            &channel_names,
            &self.features,
            &granularity,
        );
        if self.cells_channel.is_some() {
            let get = |k: usize| {
                records
                    .iter()
                    .map(|r| r.cell_counts.get(k).copied().unwrap_or(0))
                    .collect()
            };
            b.u64("Count_Cells", get(0))
                .doc("Cells grown from the field's nuclei")
                .u64("Count_Cytoplasm", get(1))
                .doc("Cytoplasm objects (cell minus nucleus) with pixels")
                .opt_f64(
                    "Threshold_FinalThreshold_Cells",
                    records.iter().map(|r| r.cells_threshold).collect(),
                )
                .doc("Threshold of the cell stain, on CellProfiler's 0..1 scale (null for distance growth)");
        }
        Ok(b.finish()?)
    }

    /// Runs every field and writes the tables and manifest into `out_dir`.
    pub fn run(
        &self,
        out_dir: &Path,
        format: Format,
        overwrite: bool,
        command_line: &[String],
        on_event: &(dyn Fn(&Event) + Sync),
    ) -> Result<RunSummary> {
        let clock = Instant::now();
        let resume = self.options.resume;
        let (_lock, mut store) = partial::open_resumable(
            out_dir,
            &self.fingerprint(format)?,
            resume,
            self.options.force,
            overwrite,
        )?;
        let already = store.done().clone();
        on_event(&Event::Start {
            plate: self.plate.id.clone(),
            fields: self.tasks.len(),
            fields_in_plate: self.plate.fields.len(),
            already_done: self
                .tasks
                .iter()
                .filter(|t| already.contains(&t.image_number))
                .count(),
            threads: self.threads,
            shard: self.options.shard,
        });
        for w in &self.warnings {
            on_event(&Event::Warning { message: w.clone() });
        }
        // The illumination pass reads every field of the plate before the first is processed.
        for w in &self.illumination()?.warnings {
            on_event(&Event::Warning { message: w.clone() });
        }
        let todo: Vec<&Task> = self
            .tasks
            .iter()
            .filter(|t| !already.contains(&t.image_number))
            .collect();
        // The tables are assembled from the saved fields, in ImageNumber order, while later
        // fields are still being processed: the same path for uninterrupted and resumed runs.
        // A table is renamed into place only when finished, so an interrupted run leaves none.
        let ext = format.extension();
        let path_of = |name: &str| out_dir.join(format!("{name}.{ext}"));
        let nuclei_schema = self.nuclei_schema()?;
        let mut nuclei_writer =
            TableWriter::create(&path_of("Nuclei"), nuclei_schema.clone(), format)?;
        let colonies_schema = self.colonies_schema()?;
        let mut colonies_writer = match &colonies_schema {
            Some(s) => Some(TableWriter::create(
                &path_of("Colonies"),
                s.clone(),
                format,
            )?),
            None => None,
        };
        let cells_schemas = self.cells_schemas()?;
        let mut cells_writers = match &cells_schemas {
            Some((c, y)) => Some((
                TableWriter::create(&path_of("Cells"), c.clone(), format)?,
                TableWriter::create(&path_of("Cytoplasm"), y.clone(), format)?,
            )),
            None => None,
        };
        let mut records = Vec::with_capacity(self.tasks.len());
        // Wells is reduced while the fields stream past, one well at a time, so no table of
        // the whole plate's objects is ever held.
        let exclude_flagged = self.options.config.qc.exclude_flagged;
        let mut objects = vec![("Nuclei", nuclei_schema.clone())];
        if let Some(s) = &colonies_schema {
            objects.push(("Colonies", s.clone()));
        }
        if let Some((c, y)) = &cells_schemas {
            objects.push(("Cells", c.clone()));
            objects.push(("Cytoplasm", y.clone()));
        }
        let mut wells = ipscope_stats::WellSummary::new(&objects)
            .map_err(wells_err)?
            .exclude_flagged(exclude_flagged);
        let mut marker_values = crate::marker_run::MarkerValues::new(
            gated_markers(&self.marker_names(), &nuclei_schema),
            out_dir,
        );
        let mut assemble = |t: &Task, store: &PartialStore| -> Result<()> {
            let out = store.load(
                t.image_number,
                &nuclei_schema,
                colonies_schema.as_ref(),
                cells_schemas.as_ref(),
            )?;
            if out.nuclei.num_rows() > 0 {
                nuclei_writer.write(&out.nuclei)?;
            }
            if let (Some(w), Some(c)) = (colonies_writer.as_mut(), out.colonies.as_ref()) {
                if c.num_rows() > 0 {
                    w.write(c)?;
                }
            }
            let missing = |what: &str| {
                Error::Invalid(format!(
                    "field {}: the saved results have no {what}",
                    out.record.image_number
                ))
            };
            let compartments = match cells_writers.as_mut() {
                Some((cw, yw)) => {
                    let c = out.cells.as_ref().ok_or_else(|| missing("cells"))?;
                    let y = out.cytoplasm.as_ref().ok_or_else(|| missing("cytoplasm"))?;
                    for (w, b) in [(&mut *cw, c), (&mut *yw, y)] {
                        if b.num_rows() > 0 {
                            w.write(b)?;
                        }
                    }
                    vec![c, y]
                }
                None => vec![],
            };
            let r = &out.record;
            let field = ipscope_stats::FieldInfo {
                image_number: r.image_number,
                plate: &r.plate,
                well: &r.well,
                ok: r.counts_in_wells(exclude_flagged),
            };
            let mut batches = vec![&out.nuclei];
            if colonies_schema.is_some() {
                let c = out.colonies.as_ref().ok_or_else(|| {
                    Error::Invalid(format!(
                        "field {}: the saved results have no colonies",
                        r.image_number
                    ))
                })?;
                batches.push(c);
            }
            batches.extend(compartments);
            wells.add_field(&field, &batches).map_err(wells_err)?;
            if field.ok {
                marker_values.add(&r.plate, &r.well, &out.nuclei)?;
            }
            records.push(out.record);
            Ok(())
        };
        // The report's outline thumbnails, drawn by the first fields' own workers.
        let overlay_fields: BTreeSet<u32> = self
            .tasks
            .iter()
            .take(crate::analysis::MAX_OVERLAYS)
            .map(|t| t.image_number)
            .collect();
        let mut drawn = BTreeMap::new();
        let mut assembled = 0;
        let stopped = self.process_in_order(&todo, &overlay_fields, &mut |out, png| {
            store.save(&out)?;
            on_event(&Event::Field {
                image_number: out.record.image_number,
                well: out.record.well.clone(),
                site: out.record.site,
                status: out.record.status,
                nuclei: out.record.count_nuclei,
                error: out.record.failure.as_ref().map(|f| f.message.clone()),
            });
            let n = out.record.image_number;
            if let Some(png) = png {
                drawn.insert(n, png);
            }
            // Up to this field: fields finished by an earlier run come first where they
            // precede it.
            while let Some(t) = self.tasks.get(assembled) {
                assembled += 1;
                assemble(t, &store)?;
                if t.image_number == n {
                    break;
                }
            }
            Ok(())
        })?;
        if stopped {
            return Err(Error::Interrupted {
                out_dir: out_dir.to_path_buf(),
                done: store.done().len(),
                total: self.tasks.len(),
                unit: "fields",
            });
        }
        for t in self.tasks.get(assembled..).unwrap_or_default() {
            assemble(t, &store)?;
        }
        // The object tables' last pages are compressed and synced on a second thread while
        // this one builds and writes Image, Errors and Wells: at the end of a run the workers
        // are idle, and these are the run's serial tail.
        let (objects_written, plate_tables) = std::thread::scope(|scope| {
            let objects = scope.spawn(move || -> Result<Vec<ipscope_table::WrittenFile>> {
                let mut written = vec![nuclei_writer.finish()?];
                if let Some((c, y)) = cells_writers {
                    written.push(c.finish()?);
                    written.push(y.finish()?);
                }
                if let Some(w) = colonies_writer {
                    written.push(w.finish()?);
                }
                Ok(written)
            });
            let plate_tables =
                self.write_plate_tables(&records, wells, marker_values, &path_of, format, out_dir);
            match objects.join() {
                Ok(objects) => (objects, plate_tables),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        });
        let mut written = objects_written?;
        let (plate_written, run) = plate_tables?;
        written.extend(plate_written);
        written.extend(crate::analysis::write_analysis_of(
            &run,
            out_dir,
            format,
            &self.options.config,
        )?);
        written.extend(crate::illum_run::write_functions(
            out_dir,
            &self.channels,
            self.illumination()?,
        )?);
        for w in &written {
            on_event(&Event::Written {
                path: w.path.clone(),
                rows: w.rows,
            });
        }

        let mut inputs: Vec<InputRecord> = records.iter().flat_map(|r| r.inputs.clone()).collect();
        if let Some(l) = &self.layout_path {
            inputs.push(InputRecord::of_file(l)?);
        }
        let mut manifest = Manifest {
            ipscope_version: env!("CARGO_PKG_VERSION").to_string(),
            command_line: command_line.to_vec(),
            started: store.state.started.clone(),
            resumed: store.state.resumed.clone(),
            finished: chrono::Utc::now().to_rfc3339(),
            plate: self.plate.id.clone(),
            plate_dir: self.options.plate_dir.clone(),
            naming_scheme: self.plate.scheme.clone(),
            fields_in_plate: self.plate.fields.len(),
            shards: self.options.shard.into_iter().collect(),
            channels: self.channels.clone(),
            parameters: self.options.config.clone(),
            format: ext.to_string(),
            warnings: self.warnings.clone(),
            machine: crate::manifest::Machine {
                device: self.backend.name(),
                ..crate::manifest::Machine::current(self.threads)
            },
            dependencies: crate::manifest::dependencies(),
            plate_qc: Vec::new(),
            inputs,
            images: records
                .iter()
                .map(crate::manifest::ImageStatus::from)
                .collect(),
            outputs: written
                .iter()
                .map(|w| OutputRecord::from_written(w, out_dir))
                .collect(),
        };
        let overlays = self.example_overlays(&records, &drawn);
        let report = crate::analysis::write_report_of(&mut manifest, run, overlays)?;
        on_event(&Event::Written {
            path: report.path.clone(),
            rows: 0,
        });
        written.push(report);
        store.finish()?;
        let fields_failed = records
            .iter()
            .filter(|r| r.status == Status::Failed)
            .count();
        let mut outputs: Vec<PathBuf> = written.iter().map(|w| w.path.clone()).collect();
        outputs.push(out_dir.join("manifest.json"));
        Ok(RunSummary {
            plate: self.plate.id.clone(),
            fields: records.len(),
            fields_failed,
            nuclei: records.iter().map(|r| r.count_nuclei).sum(),
            seconds: clock.elapsed().as_secs_f64(),
            out_dir: out_dir.to_path_buf(),
            outputs,
            warnings: self.warnings.len(),
        })
    }
}

fn empty_schema() -> SchemaRef {
    std::sync::Arc::new(ipscope_table::Schema::empty())
}

fn abbreviate(items: &[String]) -> String {
    if items.len() <= 8 {
        items.join(", ")
    } else {
        format!("{}, … ({} more)", items[..8].join(", "), items.len() - 8)
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates `out_dir` if needed and takes its lock; refuses an existing, non-empty output
/// directory unless `overwrite`; with `overwrite`, removes earlier ipscope outputs first so
/// stale tables cannot pass for new ones. Hidden files (the lock) do not count.
pub(crate) fn prepare_out_dir(out_dir: &Path, overwrite: bool) -> Result<OutputLock> {
    fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let lock = OutputLock::acquire(out_dir)?;
    let entries = fs::read_dir(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let mut visible = entries
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'));
    if visible.next().is_some() {
        if !overwrite {
            return Err(Error::Invalid(format!(
                "{}: output directory exists and is not empty; use --overwrite to replace its tables",
                out_dir.display()
            )));
        }
        let mut stale: BTreeSet<PathBuf> = BTreeSet::new();
        // Everything the earlier run says it wrote, then the names ipscope always uses.
        if let Ok(old) = crate::manifest::Manifest::read(&out_dir.join("manifest.json")) {
            for o in old.outputs {
                if o.path.components().count() == 1 {
                    stale.insert(out_dir.join(o.path));
                }
            }
        }
        stale.insert(out_dir.join("manifest.json"));
        for t in TABLES {
            for ext in ["parquet", "arrow"] {
                stale.insert(out_dir.join(format!("{t}.{ext}")));
            }
        }
        for p in stale {
            if p.exists() {
                fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
            }
        }
    }
    Ok(lock)
}

/// The Errors table.
pub(crate) fn errors_batch(failures: &[FailureRecord]) -> Result<RecordBatch> {
    let mut b = TableBuilder::new();
    b.u32(
        "ImageNumber",
        failures.iter().map(|f| f.image_number).collect(),
    )
    .doc("Field that failed (0: not tied to one field)")
    .str(
        "Metadata_Well",
        failures.iter().map(|f| f.well.clone()).collect(),
    )
    .u32("Metadata_Site", failures.iter().map(|f| f.site).collect())
    .str("File", failures.iter().map(|f| f.file.clone()).collect())
    .str("Stage", failures.iter().map(|f| f.stage.clone()).collect())
    .doc("discover, layout, read, decode, segment or measure")
    .str(
        "Message",
        failures.iter().map(|f| f.message.clone()).collect(),
    );
    Ok(b.finish()?)
}

/// The markers whose per-nucleus value column the Nuclei table has (without the Intensity
/// feature group there is nothing to gate).
fn gated_markers(markers: &[String], nuclei: &SchemaRef) -> Vec<String> {
    markers
        .iter()
        .filter(|m| {
            nuclei
                .field_with_name(&crate::marker_run::value_column(m))
                .is_ok()
        })
        .cloned()
        .collect()
}

/// ImageNumbers of the Image table's fields that count in Wells: Status ok and, when
/// `exclude_flagged`, not flagged by image QC.
fn counted_fields(image: &RecordBatch, exclude_flagged: bool) -> Result<BTreeSet<u32>> {
    use ipscope_table::arrow_array::cast::AsArray;
    use ipscope_table::arrow_array::Array;
    let numbers = ipscope_table::column_u32(image, "ImageNumber")?;
    let status = ipscope_table::column_str(image, "Status")?;
    let flags = image
        .column_by_name("Metadata_QCFlag")
        .and_then(|a| a.as_boolean_opt().cloned());
    Ok((0..image.num_rows())
        .filter(|&i| status.value(i) == Status::Ok.as_str())
        .filter(|&i| {
            !exclude_flagged || !flags.as_ref().is_some_and(|f| f.is_valid(i) && f.value(i))
        })
        .map(|i| numbers.value(i))
        .collect())
}

fn wells_err(e: ipscope_stats::Error) -> Error {
    Error::Invalid(format!("per-well summary: {e}"))
}

/// Computes Wells from the Image table and the Nuclei table already written in `out_dir`.
pub(crate) fn write_wells(
    out_dir: &Path,
    format: Format,
    image: &RecordBatch,
    config: &Config,
    channels: &[Channel],
) -> Result<ipscope_table::WrittenFile> {
    let exclude_flagged = config.qc.exclude_flagged;
    let ext = format.extension();
    let (schema, batches) = ipscope_table::read_table(&out_dir.join(format!("Nuclei.{ext}")))?;
    let nuclei = ipscope_table::concat(&schema, &batches)?;
    let colonies_path = out_dir.join(format!("Colonies.{ext}"));
    let colonies = if colonies_path.exists() {
        let (schema, batches) = ipscope_table::read_table(&colonies_path)?;
        Some(ipscope_table::concat(&schema, &batches)?)
    } else {
        None
    };
    let mut compartments = Vec::new();
    for name in ["Cells", "Cytoplasm"] {
        let path = out_dir.join(format!("{name}.{ext}"));
        if path.exists() {
            let (schema, batches) = ipscope_table::read_table(&path)?;
            compartments.push((name, ipscope_table::concat(&schema, &batches)?));
        }
    }
    let mut objects = vec![("Nuclei", &nuclei)];
    if let Some(c) = &colonies {
        objects.push(("Colonies", c));
    }
    for (name, t) in &compartments {
        objects.push((name, t));
    }
    let wells = crate::colony_run::add_well_fractions(
        ipscope_stats::well_summary_with(image, &objects, exclude_flagged).map_err(wells_err)?,
    )?;
    // Markers: the fields the Wells summary counted, in ImageNumber order, as a run adds them.
    let markers: Vec<String> = channels
        .iter()
        .filter(|c| c.role == Role::Marker)
        .map(|c| c.name.clone())
        .collect();
    let mut marker_values =
        crate::marker_run::MarkerValues::new(gated_markers(&markers, &nuclei.schema()), out_dir);
    let counted = counted_fields(image, exclude_flagged)?;
    marker_values.add_table(&nuclei, &counted)?;
    let wells = marker_values.finish(wells, &config.markers, &config.acceptance)?;
    Ok(ipscope_table::write_table(
        &out_dir.join(format!("Wells.{ext}")),
        wells.schema(),
        std::slice::from_ref(&wells),
        format,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipscope_core::assays::colonies::Grade;

    #[test]
    fn shard_parsing_and_partition() {
        let s: Shard = "2/3".parse().unwrap();
        assert_eq!(s, Shard { index: 2, count: 3 });
        assert!("0/3".parse::<Shard>().is_err());
        assert!("4/3".parse::<Shard>().is_err());
        assert!("x".parse::<Shard>().is_err());
        let owners: Vec<u32> = (0..7)
            .map(|w| {
                (1..=3)
                    .find(|&i| Shard { index: i, count: 3 }.contains_well(w))
                    .unwrap()
            })
            .collect();
        assert_eq!(owners, vec![1, 2, 3, 1, 2, 3, 1]);
    }

    #[test]
    fn fingerprint_changes_with_the_colony_model() {
        let dir = tempfile::tempdir().unwrap();
        let params = crate::demo::DemoParams {
            wells: 96,
            sites: 1,
            size: 64,
            ..Default::default()
        };
        crate::demo::generate(dir.path(), &params).unwrap();
        let fingerprint = |model: Option<crate::colony_model::ColonyModel>| {
            let mut options = RunOptions::new(dir.path());
            options.colony_model = model.map(Arc::new);
            Pipeline::new(options)
                .unwrap()
                .fingerprint(Format::Parquet)
                .unwrap()
        };
        let names = vec![
            "Colonies_AreaShape_Area".to_string(),
            "Colonies_AreaShape_FormFactor".to_string(),
        ];
        let rows = [
            vec![100.0, 0.9],
            vec![120.0, 0.8],
            vec![900.0, 0.4],
            vec![1000.0, 0.3],
        ];
        let grades = [
            Grade::Undifferentiated,
            Grade::Undifferentiated,
            Grade::Differentiating,
            Grade::Differentiating,
        ];
        let train = |scale: f64| {
            let rows: Vec<Vec<f64>> = rows.iter().map(|r| vec![r[0] * scale, r[1]]).collect();
            crate::colony_model::ColonyModel::train(&names, &rows, &grades).unwrap()
        };
        let none = fingerprint(None);
        assert_eq!(none, fingerprint(None));
        let a = fingerprint(Some(train(1.0)));
        let b = fingerprint(Some(train(3.0)));
        assert_ne!(none, a);
        assert_ne!(a, b);
    }
}
