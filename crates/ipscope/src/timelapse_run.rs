//! The time-lapse runner: `ipscope run --assay calcium` and `--assay contraction`.
//!
//! Every (well, site) time series of the plate streams frame by frame through the assay
//! (frames are decoded one page at a time into one buffer; see
//! [`ipscope_io::timelapse::FrameReader`]), series run in parallel, results are kept in
//! plate order so any thread count gives the same tables:
//!
//! | file | one row per | columns |
//! |---|---|---|
//! | `Beats` | beat | `Metadata_Plate/Well/Site`, `Beat_Number`, `Beat_PeakFrame`, `Beat_{PeakTime,OnsetTime,Amplitude,TimeToPeak,MaxUpstrokeVelocity,DecayTau,CTD30,CTD50,CTD90,RRInterval}`, `Beat_EAD` |
//! | `Traces` | frame of a field | `Metadata_Plate/Well/Site`, `Frame`, `Time`, `Intensity_MeanIntensity_<ch>` (raw mean of the beating region), `Trace_F0`, `Trace_DeltaF_F0` |
//! | `Wells` | well | layout columns, `Count_Fields`, `Count_FieldsFailed`, `Count_Beats`, `Median_Calcium_*` (median over the well's fields), `Calcium_Irregular`, `Calcium_Arrest`, `Count_EAD` |
//! | `Errors` | failed series | as the nuclei run |
//!
//! The contraction assay writes, instead of `Beats` and the calcium columns:
//!
//! | file | one row per | columns |
//! |---|---|---|
//! | `Contractions` | contraction | `Metadata_Plate/Well/Site`, `Contraction_Number`, `Contraction_PeakFrame`, `Contraction_{PeakTime,OnsetTime,Amplitude,TimeToPeak,RelaxationTime,Duration,PeakToPeak}` |
//! | `Traces` | frame of a field | `Metadata_Plate/Well/Site`, `Frame`, `Time`, `Contraction_Signal` (RMS of frame − reference / mean reference), `Contraction_Motion` (noise floor removed) |
//! | `Wells` | well | layout columns, `Count_Fields`, `Count_FieldsFailed`, `Count_Contractions`, `Median_Contraction_*`, `Contraction_Irregular`, `Contraction_Arrest` |
//!
//! Then Curves/Qc and report.html as for the nuclei run (the `Median_…` and `Count_…`
//! columns are readouts).
//!
//! **Resume.** Every streamed series is kept in `OUT/.ipscope-partial/<n>.arrow` (its raw
//! traces as an Arrow IPC column, with the frame interval, beating-region fraction or
//! reference frame and cell areas in the schema metadata), fsynced and renamed into place.
//! `--resume` reads the finished series back instead of decoding them again; the beats and
//! every table are computed from those traces as in an uninterrupted run, so both write
//! the same tables. `run.json` holds the run's fingerprint (assay, parameters, channel,
//! pattern, `--fps`, layout, every input file's size and modification time): a resume with
//! another is refused unless `--force`d. SIGINT/SIGTERM ([`TimelapseOptions::stop`]) stop the
//! run between series: the series in progress finish and are kept, then the run ends with
//! [`Error::Interrupted`] (the CLI exits 130 or 143) and `--resume` continues it.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ipscope_core::assays::calcium::{
    analyze_trace, CalciumParams, FieldTrace, SignalError, TraceAnalysis, TraceBuilder,
};
use ipscope_core::assays::contraction::{
    analyze_contraction, ContractionAnalysis, ContractionParams, MotionBuilder, MotionTrace,
};
use ipscope_io::timelapse::{frame_interval, series, FrameData, FrameReader, Frames, TimeSeries};
use ipscope_io::{DiscoverOptions, ReadOptions};
use ipscope_table::{Format, RecordBatch, TableBuilder, WrittenFile};
use rayon::prelude::*;

use crate::channels::{Channel, Role};
use crate::manifest::{ImageStatus, InputRecord, Manifest, OutputRecord};
use crate::pipeline::{errors_batch, FailureRecord};
use crate::{Assay, Error, Result};

/// Smallest beating-region component (px) traced as a cell by `--per-cell`.
pub const CELL_MIN_AREA: usize = 20;

/// What a time-lapse run needs.
#[derive(Debug, Clone)]
pub struct TimelapseOptions {
    pub plate_dir: PathBuf,
    pub assay: Assay,
    /// `(id, name)` pairs from `--channel`; the first names the signal channel.
    pub channels: Vec<(String, String)>,
    pub layout: Option<PathBuf>,
    pub pattern: Option<String>,
    /// Frames per second when the files do not record the interval.
    pub fps: Option<f64>,
    pub threads: Option<usize>,
    pub max_pixels: u64,
    pub calcium: CalciumParams,
    pub contraction: ContractionParams,
    /// Write the per-frame `Traces` table.
    pub traces: bool,
    /// The command line recorded in manifest.json.
    pub command_line: Vec<String>,
    /// Calcium: also trace every cell (component of the beating region of at least this
    /// many pixels) and measure the well's asynchrony (`--per-cell`).
    pub per_cell: Option<usize>,
    /// Continue an interrupted run in the output directory (`--resume`).
    pub resume: bool,
    /// With `resume`: start over when the interrupted run used other parameters or inputs.
    pub force: bool,
    /// Set (by SIGINT/SIGTERM) to stop: no series starts, those running finish and are kept,
    /// then the run ends with [`Error::Interrupted`].
    pub stop: Option<Arc<AtomicBool>>,
}

impl TimelapseOptions {
    pub fn new(plate_dir: impl Into<PathBuf>, assay: Assay) -> Self {
        TimelapseOptions {
            plate_dir: plate_dir.into(),
            assay,
            channels: Vec::new(),
            layout: None,
            pattern: None,
            fps: None,
            threads: None,
            max_pixels: ReadOptions::default().max_pixels,
            calcium: CalciumParams::default(),
            contraction: ContractionParams::default(),
            traces: true,
            per_cell: None,
            command_line: Vec::new(),
            resume: false,
            force: false,
            stop: None,
        }
    }
}

/// What a time-lapse run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TimelapseSummary {
    pub plate: String,
    pub assay: Assay,
    pub series: usize,
    pub series_failed: usize,
    pub frames: u64,
    pub beats: u64,
    pub seconds: f64,
    pub outputs: Vec<PathBuf>,
}

/// One analysed series.
#[derive(Debug, Clone)]
pub struct SeriesResult {
    pub series: TimeSeries,
    pub interval_s: f64,
    pub trace: Vec<f64>,
    pub mask_fraction: f64,
    pub analysis: TraceAnalysis,
    /// With `--per-cell`: each cell's raw trace, area (px) and analysis.
    pub cells: Vec<CellResult>,
    /// Mean over the field's beats of the SD of the cells' activation times, s.
    pub asynchrony: Option<f64>,
}

/// One cell of a field (`--per-cell`).
#[derive(Debug, Clone)]
pub struct CellResult {
    pub trace: Vec<f64>,
    pub area: usize,
    pub analysis: TraceAnalysis,
}

fn signal_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{}: {e}", path.display()))
}

/// A per-frame reduction fed by [`stream`].
trait FrameSink: Sized {
    fn push_frame(&mut self, frame: &FrameData<'_>) -> std::result::Result<(), SignalError>;
    /// The reader can seek cheaply: frames the sink wants first, in increasing order from
    /// frame 0, through [`FrameSink::push_preview`], before every frame in order (none: no
    /// preview).
    fn preview(&mut self) -> Vec<usize> {
        Vec::new()
    }
    fn push_preview(&mut self, _frame: &FrameData<'_>) -> std::result::Result<(), SignalError> {
        Ok(())
    }
}

impl FrameSink for TraceBuilder {
    fn push_frame(&mut self, frame: &FrameData<'_>) -> std::result::Result<(), SignalError> {
        match *frame {
            FrameData::U8(d) => self.push(d),
            FrameData::U16(d) => self.push(d),
            FrameData::U32(d) => self.push(d),
            FrameData::F32(d) => self.push(d),
        }
    }
    /// Uncompressed stacks: the beating region comes from running sums of the sampled
    /// frames, read first, and then every frame is read once, instead of the window's
    /// frames being copied into a buffer and read again from memory (same values; see
    /// [`TraceBuilder::preview_frames`]).
    fn preview(&mut self) -> Vec<usize> {
        self.preview_frames()
    }
    fn push_preview(&mut self, frame: &FrameData<'_>) -> std::result::Result<(), SignalError> {
        match *frame {
            FrameData::U8(d) => TraceBuilder::push_preview(self, d),
            FrameData::U16(d) => TraceBuilder::push_preview(self, d),
            FrameData::U32(d) => TraceBuilder::push_preview(self, d),
            FrameData::F32(d) => TraceBuilder::push_preview(self, d),
        }
    }
}

impl FrameSink for MotionBuilder {
    fn push_frame(&mut self, frame: &FrameData<'_>) -> std::result::Result<(), SignalError> {
        match *frame {
            FrameData::U8(d) => self.push(d),
            FrameData::U16(d) => self.push(d),
            FrameData::U32(d) => self.push(d),
            FrameData::F32(d) => self.push(d),
        }
    }
}

/// Streams the frames of one series into the sink `new(width, height, frames)` makes from
/// the first frame; returns the sink and the series' file (for error messages).
fn stream<S: FrameSink>(
    s: &TimeSeries,
    read: &ReadOptions,
    new: impl FnOnce(usize, usize, usize) -> std::result::Result<S, SignalError>,
) -> Result<(S, PathBuf)> {
    let mut reader = FrameReader::open(s, read)?;
    let frames = reader.len();
    let path = reader.path().to_path_buf();
    let seeks = reader.seeks_cheaply();
    let Some(first) = reader.next_frame()? else {
        return Err(ipscope_io::Error::TooFewFrames {
            path,
            frames: 0,
            needed: 3,
        }
        .into());
    };
    let mut sink = new(first.width, first.height, frames).map_err(|e| signal_err(&path, e))?;
    let preview = if seeks { sink.preview() } else { Vec::new() };
    if preview.is_empty() {
        sink.push_frame(&first.data)
            .map_err(|e| signal_err(&path, e))?;
    } else {
        // The preview first (frame 0, in hand, and the others by seeking), then every
        // frame from the start.
        sink.push_preview(&first.data)
            .map_err(|e| signal_err(&path, e))?;
        for &i in preview.iter().filter(|&&i| i > 0) {
            reader.seek(i)?;
            let Some(frame) = reader.next_frame()? else {
                return Err(ipscope_io::Error::Decode {
                    path: path.clone(),
                    message: format!("frame {i} of {frames} could not be read"),
                }
                .into());
            };
            sink.push_preview(&frame.data)
                .map_err(|e| signal_err(&path, e))?;
        }
        reader.seek(0)?;
    }
    while let Some(frame) = reader.next_frame()? {
        sink.push_frame(&frame.data)
            .map_err(|e| signal_err(&path, e))?;
    }
    Ok((sink, path))
}

/// A signal error at the end of a series: too few frames is the reader's named error.
fn finish_err(path: &Path, e: SignalError) -> Error {
    match e {
        SignalError::TooFewFrames { frames, needed } => {
            Error::ImageIo(ipscope_io::Error::TooFewFrames {
                path: path.to_path_buf(),
                frames,
                needed,
            })
        }
        other => signal_err(path, other),
    }
}

/// Streams one series through the calcium trace builder and analyses the trace.
pub fn analyze_series(
    s: &TimeSeries,
    interval_s: f64,
    params: &CalciumParams,
    read: &ReadOptions,
) -> Result<SeriesResult> {
    analyze_series_cells(s, interval_s, params, read, None)
}

/// [`analyze_series`], with one trace per cell of at least `cell_min_area` pixels when
/// given (see [`TraceBuilder::per_cell`]) and the field's asynchrony.
pub fn analyze_series_cells(
    s: &TimeSeries,
    interval_s: f64,
    params: &CalciumParams,
    read: &ReadOptions,
    cell_min_area: Option<usize>,
) -> Result<SeriesResult> {
    let (builder, path) = stream(s, read, |w, h, frames| {
        let b = TraceBuilder::new(w, h, frames, interval_s, params)?;
        Ok(match cell_min_area {
            Some(a) => b.per_cell(a),
            None => b,
        })
    })?;
    let field = builder.finish().map_err(|e| finish_err(&path, e))?;
    calcium_result(s, interval_s, params, field, cell_min_area.is_some(), &path)
}

/// The beats of a streamed field (and of its cells with `per_cell`).
fn calcium_result(
    s: &TimeSeries,
    interval_s: f64,
    params: &CalciumParams,
    field: FieldTrace,
    per_cell: bool,
    path: &Path,
) -> Result<SeriesResult> {
    let analysis =
        analyze_trace(&field.trace, interval_s, params).map_err(|e| signal_err(path, e))?;
    let cells = field
        .cells
        .into_iter()
        .zip(field.cell_areas)
        .map(|(trace, area)| {
            let analysis =
                analyze_trace(&trace, interval_s, params).map_err(|e| signal_err(path, e))?;
            Ok(CellResult {
                trace,
                area,
                analysis,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let asynchrony = if per_cell {
        let per_cell: Vec<Vec<_>> = cells.iter().map(|c| c.analysis.beats.clone()).collect();
        ipscope_core::assays::calcium::asynchrony(&analysis.beats, &per_cell)
    } else {
        None
    };
    Ok(SeriesResult {
        series: s.clone(),
        interval_s,
        trace: field.trace,
        mask_fraction: field.mask_fraction,
        analysis,
        cells,
        asynchrony,
    })
}

/// One series analysed by the contraction assay.
#[derive(Debug, Clone)]
pub struct ContractionResult {
    pub series: TimeSeries,
    pub interval_s: f64,
    /// RMS of frame − reference / mean(reference), one value per frame.
    pub signal: Vec<f64>,
    pub reference_frame: usize,
    pub analysis: ContractionAnalysis,
}

/// Streams one series through the image-difference builder and finds its contractions.
pub fn analyze_contraction_series(
    s: &TimeSeries,
    interval_s: f64,
    params: &ContractionParams,
    read: &ReadOptions,
) -> Result<ContractionResult> {
    let (builder, path) = stream(s, read, |w, h, frames| {
        MotionBuilder::new(w, h, frames, interval_s, params)
    })?;
    let motion = builder.finish().map_err(|e| finish_err(&path, e))?;
    contraction_result(s, interval_s, params, motion, &path)
}

/// The contractions of a streamed series.
fn contraction_result(
    s: &TimeSeries,
    interval_s: f64,
    params: &ContractionParams,
    motion: MotionTrace,
    path: &Path,
) -> Result<ContractionResult> {
    let analysis =
        analyze_contraction(&motion.signal, interval_s, params).map_err(|e| signal_err(path, e))?;
    Ok(ContractionResult {
        series: s.clone(),
        interval_s,
        signal: motion.signal,
        reference_frame: motion.reference_frame,
        analysis,
    })
}

/// Runs `work` on every series (in parallel, results in plate order) and splits the
/// results from the failures. Once `stop` is set no series starts but those `kept` by an
/// interrupted run (numbers from 1), which are only read back; the series running finish
/// (and are kept), then the run ends with [`Error::Interrupted`] in `out_dir`.
fn run_all<R: Send>(
    all: &[TimeSeries],
    threads: Option<usize>,
    stop: Option<&AtomicBool>,
    kept: &BTreeSet<u32>,
    out_dir: &Path,
    work: impl Fn(usize, &TimeSeries) -> Result<R> + Sync + Send,
    statuses: &mut Vec<ImageStatus>,
) -> Result<(Vec<R>, Vec<FailureRecord>)> {
    let timed = |(i, s): (usize, &TimeSeries)| {
        if stop.is_some_and(|f| f.load(Ordering::SeqCst)) && !kept.contains(&(i as u32 + 1)) {
            return None;
        }
        let t = Instant::now();
        let r = work(i, s);
        Some((r, t.elapsed().as_secs_f64()))
    };
    let results: Vec<Option<(Result<R>, f64)>> = match threads {
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build()
            .map_err(|e| Error::Invalid(format!("thread pool: {e}")))?
            .install(|| all.par_iter().enumerate().map(timed).collect()),
        None => all.par_iter().enumerate().map(timed).collect(),
    };
    let done = results.iter().flatten().count();
    if done < all.len() {
        return Err(Error::Interrupted {
            out_dir: out_dir.to_path_buf(),
            done,
            total: all.len(),
            unit: "series",
        });
    }
    let mut ok = Vec::new();
    let mut failures = Vec::new();
    for (i, (s, (r, seconds))) in all.iter().zip(results.into_iter().flatten()).enumerate() {
        statuses.push(ImageStatus {
            image_number: i as u32 + 1,
            well: s.well.clone(),
            site: s.site,
            status: if r.is_ok() { "ok" } else { "failed" }.to_string(),
            error: r.as_ref().err().map(|e| format!("analyse: {e}")),
            seconds,
        });
        match r {
            Ok(r) => ok.push(r),
            Err(e) => failures.push(FailureRecord {
                image_number: 0,
                well: s.well.clone(),
                site: s.site,
                file: s.path().display().to_string(),
                stage: "analyse".to_string(),
                message: e.to_string(),
            }),
        }
    }
    Ok((ok, failures))
}

/// Runs the time-lapse assay on a plate and writes the tables into `out_dir`.
pub fn run(opts: &TimelapseOptions, out_dir: &Path, overwrite: bool) -> Result<TimelapseSummary> {
    let start = Instant::now();
    if !matches!(opts.assay, Assay::Calcium | Assay::Contraction) {
        return Err(Error::Invalid(format!(
            "the {} assay does not run on time-lapse plates; use --assay calcium or contraction",
            opts.assay
        )));
    }
    let plate = ipscope_io::discover(
        &opts.plate_dir,
        &DiscoverOptions {
            pattern: opts.pattern.clone(),
        },
    )?;
    let (channel, channel_name) = match opts.channels.first() {
        Some((id, name)) => {
            // `1=Calcium` names `w1`; a stack whose pages discovery read as channels keeps
            // the id as given and `series` reads the pages as frames.
            let resolved = crate::channels::resolve_channels(
                &plate.channels,
                std::slice::from_ref(&(id.clone(), name.clone())),
            )
            .ok()
            .and_then(|cs| cs.into_iter().find(|c| &c.name == name))
            .map(|c| c.id);
            (resolved.unwrap_or_else(|| id.clone()), name.clone())
        }
        None => {
            let c = plate.channels.first().cloned().unwrap_or_default();
            (c.clone(), c)
        }
    };
    let all = series(&plate, &channel)?;
    let read = ReadOptions {
        max_pixels: opts.max_pixels,
    };
    // No interval in the files and no --fps: stop before any work, naming the file.
    if let Some(first) = all.first() {
        frame_interval(first.path(), opts.fps)?;
    }
    let layout = opts
        .layout
        .as_deref()
        .map(ipscope_io::read_layout)
        .transpose()?;
    let (_lock, store) = crate::partial::open_resumable(
        out_dir,
        &fingerprint(opts, &channel, &channel_name, &all)?,
        opts.resume,
        opts.force,
        overwrite,
    )?;
    let shards = Shards {
        dir: out_dir.join(crate::partial::PARTIAL_DIR),
        done: store.done().clone(),
    };
    let format = Format::Parquet;
    let ext = format.extension();
    let mut written: Vec<WrittenFile> = Vec::new();
    let mut write = |name: &str, batch: RecordBatch| -> Result<()> {
        let path = out_dir.join(format!("{name}.{ext}"));
        written.push(ipscope_table::write_table(
            &path,
            batch.schema(),
            std::slice::from_ref(&batch),
            format,
        )?);
        Ok(())
    };
    let interval = |s: &TimeSeries| frame_interval(s.path(), opts.fps).map(|i| i.seconds);
    let started = chrono::Utc::now().to_rfc3339();
    let mut statuses: Vec<ImageStatus> = Vec::new();
    let (series_failed, frames, beats) = if opts.assay == Assay::Contraction {
        let (ok, failures) = run_all(
            &all,
            opts.threads,
            opts.stop.as_deref(),
            &shards.done,
            out_dir,
            |i, s| {
                if let Some((meta, mut traces)) = shards.load(i) {
                    let motion = MotionTrace {
                        signal: traces.swap_remove(0),
                        reference_frame: meta.reference_frame,
                    };
                    let dt = f64::from_bits(meta.interval_bits);
                    return contraction_result(s, dt, &opts.contraction, motion, s.path());
                }
                let dt = interval(s)?;
                let (builder, path) = stream(s, &read, |w, h, frames| {
                    MotionBuilder::new(w, h, frames, dt, &opts.contraction)
                })?;
                let motion = builder.finish().map_err(|e| finish_err(&path, e))?;
                let meta = ShardMeta {
                    interval_bits: dt.to_bits(),
                    fraction_bits: 0,
                    reference_frame: motion.reference_frame,
                    lengths: vec![motion.signal.len()],
                    areas: Vec::new(),
                };
                shards.save(i, &meta, &[&motion.signal])?;
                contraction_result(s, dt, &opts.contraction, motion, &path)
            },
            &mut statuses,
        )?;
        write("Contractions", contractions_batch(&ok)?)?;
        if opts.traces {
            write("Traces", contraction_traces_batch(&ok)?)?;
        }
        write(
            "Wells",
            contraction_wells_batch(&all, &ok, layout.as_ref())?,
        )?;
        write("Errors", errors_batch(&failures)?)?;
        (
            failures.len(),
            ok.iter().map(|r| r.signal.len() as u64).sum::<u64>(),
            ok.iter()
                .map(|r| r.analysis.contractions.len() as u64)
                .sum::<u64>(),
        )
    } else {
        let (ok, failures) = run_all(
            &all,
            opts.threads,
            opts.stop.as_deref(),
            &shards.done,
            out_dir,
            |i, s| {
                let per_cell = opts.per_cell.is_some();
                if let Some((meta, mut traces)) = shards.load(i) {
                    let trace = traces.remove(0);
                    let field = FieldTrace {
                        trace,
                        mask_pixels: 0,
                        mask_fraction: f64::from_bits(meta.fraction_bits),
                        cells: traces,
                        cell_areas: meta.areas,
                    };
                    let dt = f64::from_bits(meta.interval_bits);
                    return calcium_result(s, dt, &opts.calcium, field, per_cell, s.path());
                }
                let dt = interval(s)?;
                let (builder, path) = stream(s, &read, |w, h, frames| {
                    let b = TraceBuilder::new(w, h, frames, dt, &opts.calcium)?;
                    Ok(match opts.per_cell {
                        Some(a) => b.per_cell(a),
                        None => b,
                    })
                })?;
                let field = builder.finish().map_err(|e| finish_err(&path, e))?;
                let mut traces: Vec<&[f64]> = vec![&field.trace];
                traces.extend(field.cells.iter().map(|c| c.as_slice()));
                let meta = ShardMeta {
                    interval_bits: dt.to_bits(),
                    fraction_bits: field.mask_fraction.to_bits(),
                    reference_frame: 0,
                    lengths: traces.iter().map(|t| t.len()).collect(),
                    areas: field.cell_areas.clone(),
                };
                shards.save(i, &meta, &traces)?;
                calcium_result(s, dt, &opts.calcium, field, per_cell, &path)
            },
            &mut statuses,
        )?;
        write("Beats", beats_batch(&ok)?)?;
        if opts.traces {
            write("Traces", traces_batch(&ok, &channel_name)?)?;
        }
        write(
            "Wells",
            wells_batch(&all, &ok, layout.as_ref(), opts.per_cell.is_some())?,
        )?;
        write("Errors", errors_batch(&failures)?)?;
        (
            failures.len(),
            ok.iter().map(|r| r.trace.len() as u64).sum::<u64>(),
            ok.iter()
                .map(|r| r.analysis.beats.len() as u64)
                .sum::<u64>(),
        )
    };
    written.extend(crate::analysis::write_analysis(out_dir, format)?);
    // Provenance as the nuclei run records it: inputs hashed, every series' status, outputs.
    let mut files: Vec<&Path> = Vec::new();
    for s in &all {
        match &s.frames {
            Frames::Stack(p) => files.push(p),
            Frames::Files(f) => files.extend(f.iter().map(|(p, _)| p.as_path())),
        }
    }
    files.dedup();
    let inputs = files
        .into_iter()
        .map(InputRecord::of_file)
        .collect::<Result<Vec<_>>>()?;
    let mut config = crate::config::Config::default();
    config.input.pattern = opts.pattern.clone();
    config.input.max_pixels = opts.max_pixels;
    config.channels = opts.channels.iter().cloned().collect();
    let mut manifest = Manifest {
        ipscope_version: env!("CARGO_PKG_VERSION").to_string(),
        command_line: opts.command_line.clone(),
        started: if store.state.resumed.is_empty() {
            started
        } else {
            store.state.started.clone()
        },
        resumed: store.state.resumed.clone(),
        finished: chrono::Utc::now().to_rfc3339(),
        plate: plate.id.clone(),
        plate_dir: opts.plate_dir.clone(),
        naming_scheme: plate.scheme.clone(),
        fields_in_plate: all.len(),
        shards: Vec::new(),
        channels: vec![Channel {
            id: channel.clone(),
            name: channel_name.clone(),
            role: Role::from_name(&channel_name),
        }],
        parameters: config,
        format: ext.to_string(),
        machine: crate::manifest::Machine::current(
            opts.threads.unwrap_or_else(rayon::current_num_threads),
        ),
        dependencies: crate::manifest::dependencies(),
        plate_qc: Vec::new(),
        warnings: Vec::new(),
        inputs,
        images: statuses,
        outputs: written
            .iter()
            .map(|w| OutputRecord::from_written(w, out_dir))
            .collect(),
    };
    written.push(crate::analysis::write_report_with_overlays(
        &mut manifest,
        out_dir,
        Vec::new(),
    )?);
    // The tables and the manifest are written: the finished series are no longer needed.
    store.finish()?;
    Ok(TimelapseSummary {
        plate: plate.id.clone(),
        assay: opts.assay,
        series: all.len(),
        series_failed,
        frames,
        beats,
        seconds: start.elapsed().as_secs_f64(),
        outputs: written
            .iter()
            .map(|w| w.path.clone())
            .chain([out_dir.join("manifest.json")])
            .collect(),
    })
}

/// What a series' shard records besides its traces (floats as their bits: exact).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ShardMeta {
    interval_bits: u64,
    /// Calcium: the beating-region fraction.
    fraction_bits: u64,
    /// Contraction: the reference frame.
    reference_frame: usize,
    /// Length of each trace stored one after the other (field, then cells).
    lengths: Vec<usize>,
    /// Calcium `--per-cell`: each cell's area, px.
    areas: Vec<usize>,
}

const SHARD_KEY: &str = "ipscope.timelapse_series";

/// The finished series of an interrupted run (see the module docs).
struct Shards {
    dir: PathBuf,
    /// Numbers (index + 1) of the series finished before the interruption.
    done: BTreeSet<u32>,
}

impl Shards {
    fn path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("{:08}.arrow", i + 1))
    }

    /// Keeps series `i` durably: written to a temporary name, fsynced, renamed.
    fn save(&self, i: usize, meta: &ShardMeta, traces: &[&[f64]]) -> Result<()> {
        let path = self.path(i);
        let mut b = TableBuilder::new();
        b.f64("Value", traces.concat());
        let json = serde_json::to_string(meta)
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        let bytes = ipscope_table::encode_ipc(
            &b.finish()?,
            &HashMap::from([(SHARD_KEY.to_string(), json)]),
        )?;
        crate::partial::write_atomic(&path, &bytes)
    }

    /// Series `i` as an interrupted run kept it; `None` when it was not finished or its
    /// file cannot be read (then it is streamed again).
    fn load(&self, i: usize) -> Option<(ShardMeta, Vec<Vec<f64>>)> {
        if !self.done.contains(&(i as u32 + 1)) {
            return None;
        }
        let (meta, batches) = ipscope_table::decode_ipc_file(&self.path(i), None).ok()?;
        let meta: ShardMeta = serde_json::from_str(meta.get(SHARD_KEY)?).ok()?;
        let mut values: Vec<f64> = Vec::new();
        for b in &batches {
            let col = b
                .column_by_name("Value")?
                .as_any()
                .downcast_ref::<ipscope_table::arrow_array::Float64Array>()?;
            values.extend(col.values().iter());
        }
        if meta.lengths.is_empty() || meta.lengths.iter().sum::<usize>() != values.len() {
            return None;
        }
        let mut traces = Vec::with_capacity(meta.lengths.len());
        let mut at = 0;
        for &n in &meta.lengths {
            traces.push(values[at..at + n].to_vec());
            at += n;
        }
        Some((meta, traces))
    }
}

/// What a resumed run must share with the interrupted one: version, assay, parameters,
/// channel, pattern, frame rate, layout content and every input file's size and
/// modification time (not the thread count: results do not depend on it).
fn fingerprint(
    opts: &TimelapseOptions,
    channel: &str,
    channel_name: &str,
    all: &[TimeSeries],
) -> Result<String> {
    let mut fp = crate::partial::Fingerprint::default();
    let mut put = |s: &str| fp.put(s);
    put(env!("CARGO_PKG_VERSION"));
    put(&opts.assay.to_string());
    put(channel);
    put(channel_name);
    put(&format!("{:?}", opts.pattern));
    put(&format!("{:?}", opts.fps.map(f64::to_bits)));
    put(&opts.max_pixels.to_string());
    put(&format!("{:?}", opts.calcium));
    put(&format!("{:?}", opts.contraction));
    put(&format!("{:?} {}", opts.per_cell, opts.traces));
    match &opts.layout {
        Some(p) => put(&InputRecord::of_file(p)?.sha256),
        None => put(""),
    }
    for (i, s) in all.iter().enumerate() {
        put(&format!("{i} {} {}", s.well, s.site));
        let files: Vec<(&Path, usize)> = match &s.frames {
            Frames::Stack(p) => vec![(p.as_path(), 0)],
            Frames::Files(f) => f.iter().map(|(p, k)| (p.as_path(), *k)).collect(),
        };
        for (p, page) in files {
            put(&format!(
                "{}|{page}|{}",
                p.display(),
                crate::partial::file_stamp(p)
            ));
        }
    }
    Ok(fp.finish())
}

/// The traces of a series: the field (object 0), then each cell (1, 2, …).
fn objects(r: &SeriesResult) -> impl Iterator<Item = (usize, &TraceAnalysis)> + '_ {
    std::iter::once((0, &r.analysis)).chain(
        r.cells
            .iter()
            .enumerate()
            .map(|(i, c)| (i + 1, &c.analysis)),
    )
}

fn raw_trace(r: &SeriesResult, o: usize) -> &[f64] {
    match o {
        0 => &r.trace,
        _ => &r.cells[o - 1].trace,
    }
}

fn beats_batch(results: &[SeriesResult]) -> Result<RecordBatch> {
    // The field's beats (object 0), then each cell's (`--per-cell`).
    let rows: Vec<(
        &SeriesResult,
        usize,
        &ipscope_core::assays::calcium::Beat,
        usize,
    )> = results
        .iter()
        .flat_map(|r| {
            objects(r)
                .flat_map(move |(o, a)| a.beats.iter().enumerate().map(move |(k, b)| (r, o, b, k)))
        })
        .collect();
    let beat = |f: &dyn Fn(&ipscope_core::assays::calcium::Beat) -> f64| -> Vec<f64> {
        rows.iter().map(|(_, _, b, _)| f(b)).collect()
    };
    let opt = |f: &dyn Fn(&ipscope_core::assays::calcium::Beat) -> Option<f64>| {
        rows.iter().map(|(_, _, b, _)| f(b)).collect::<Vec<_>>()
    };
    let mut b = TableBuilder::new();
    b.str(
        "Metadata_Plate",
        rows.iter()
            .map(|(r, _, _, _)| r.series.plate.clone())
            .collect(),
    )
    .str(
        "Metadata_Well",
        rows.iter()
            .map(|(r, _, _, _)| r.series.well.clone())
            .collect(),
    )
    .u32(
        "Metadata_Site",
        rows.iter().map(|(r, _, _, _)| r.series.site).collect(),
    )
    .u32(
        "ObjectNumber",
        rows.iter().map(|(_, o, _, _)| *o as u32).collect(),
    )
    .doc("0: the field trace; 1, 2, …: the cells of --per-cell")
    .u32(
        "Beat_Number",
        rows.iter().map(|(_, _, _, k)| *k as u32 + 1).collect(),
    )
    .u32(
        "Beat_PeakFrame",
        rows.iter()
            .map(|(_, _, b, _)| b.peak_frame as u32)
            .collect(),
    )
    .f64("Beat_PeakTime", beat(&|b| b.peak_time))
    .doc("Peak time, s from the first frame")
    .f64("Beat_OnsetTime", beat(&|b| b.onset_time))
    .doc("Upstroke crossing of baseline + 10 % amplitude, s")
    .f64("Beat_Baseline", beat(&|b| b.baseline))
    .doc("ΔF/F0 before the upstroke (median over 0.1 s before its foot)")
    .f64("Beat_Amplitude", beat(&|b| b.amplitude))
    .doc("Peak ΔF/F0 minus the beat's baseline")
    .f64("Beat_TimeToPeak", beat(&|b| b.time_to_peak))
    .doc("Peak time minus onset, s")
    .f64(
        "Beat_MaxUpstrokeVelocity",
        beat(&|b| b.max_upstroke_velocity),
    )
    .doc("Largest rise of ΔF/F0 per second between onset and peak")
    .opt_f64("Beat_DecayTau", opt(&|b| b.decay_tau))
    .doc("Decay time constant, s: exponential fit between 30 % and 90 % recovery")
    .opt_f64("Beat_CTD30", opt(&|b| b.ctd30))
    .doc("Onset to 30 % recovery, s")
    .opt_f64("Beat_CTD50", opt(&|b| b.ctd50))
    .doc("Onset to 50 % recovery, s")
    .opt_f64("Beat_CTD90", opt(&|b| b.ctd90))
    .doc("Onset to 90 % recovery, s")
    .opt_f64("Beat_RRInterval", opt(&|b| b.rr_interval))
    .doc("Time to the next beat's peak, s")
    .bool("Beat_EAD", rows.iter().map(|(_, _, b, _)| b.ead).collect())
    .doc("A secondary rise before 90 % recovery (early-afterdepolarisation-like)");
    Ok(b.finish()?)
}

fn traces_batch(results: &[SeriesResult], channel: &str) -> Result<RecordBatch> {
    let rows: Vec<(&SeriesResult, usize, &TraceAnalysis, usize)> = results
        .iter()
        .flat_map(|r| {
            objects(r).flat_map(move |(o, a)| (0..r.trace.len()).map(move |k| (r, o, a, k)))
        })
        .collect();
    let mut b = TableBuilder::new();
    b.str(
        "Metadata_Plate",
        rows.iter()
            .map(|(r, _, _, _)| r.series.plate.clone())
            .collect(),
    )
    .str(
        "Metadata_Well",
        rows.iter()
            .map(|(r, _, _, _)| r.series.well.clone())
            .collect(),
    )
    .u32(
        "Metadata_Site",
        rows.iter().map(|(r, _, _, _)| r.series.site).collect(),
    )
    .u32(
        "ObjectNumber",
        rows.iter().map(|(_, o, _, _)| *o as u32).collect(),
    )
    .doc("0: the field trace; 1, 2, …: the cells of --per-cell")
    .u32("Frame", rows.iter().map(|(_, _, _, k)| *k as u32).collect())
    .f64(
        "Time",
        rows.iter()
            .map(|(r, _, _, k)| *k as f64 * r.interval_s)
            .collect(),
    )
    .doc("Seconds from the first frame")
    .f64(
        &format!("Intensity_MeanIntensity_{channel}"),
        rows.iter()
            .map(|(r, o, _, k)| raw_trace(r, *o)[*k])
            .collect(),
    )
    .doc("Mean raw intensity of the beating region (not scaled)")
    .f64(
        "Trace_F0",
        rows.iter().map(|(_, _, a, k)| a.f0[*k]).collect(),
    )
    .doc("Baseline: rolling low percentile, smoothed (photobleaching)")
    .f64(
        "Trace_DeltaF_F0",
        rows.iter().map(|(_, _, a, k)| a.dff[*k]).collect(),
    );
    Ok(b.finish()?)
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    ipscope_core::ops::signal::percentile_mut(&mut v, 50.0)
}

/// The columns every time-lapse Wells table starts with (plate, well, layout, field counts)
/// and each well's results, wells in plate order (series are sorted by plate, row,
/// column, site).
fn wells_base<'a, R>(
    all: &[TimeSeries],
    results: &'a [R],
    key: impl Fn(&R) -> &TimeSeries,
    layout: Option<&ipscope_io::Layout>,
) -> (TableBuilder, Vec<Vec<&'a R>>) {
    let mut wells: Vec<(String, String)> = Vec::new();
    for s in all {
        let key = (s.plate.clone(), s.well.clone());
        if wells.last() != Some(&key) {
            wells.push(key);
        }
    }
    let per_well: Vec<Vec<&R>> = wells
        .iter()
        .map(|(p, w)| {
            results
                .iter()
                .filter(|r| &key(r).plate == p && &key(r).well == w)
                .collect()
        })
        .collect();
    let mut b = TableBuilder::new();
    b.str(
        "Metadata_Plate",
        wells.iter().map(|w| w.0.clone()).collect(),
    )
    .str("Metadata_Well", wells.iter().map(|w| w.1.clone()).collect());
    if let Some(layout) = layout {
        for (ci, col) in layout.columns.iter().enumerate() {
            let values: Vec<Option<String>> = wells
                .iter()
                .map(|(_, w)| {
                    layout
                        .get(w)
                        .and_then(|v| v.get(ci).cloned())
                        .filter(|s| !s.trim().is_empty())
                })
                .collect();
            let numeric: Option<Vec<Option<f64>>> = values
                .iter()
                .map(|v| match v {
                    None => Some(None),
                    Some(s) => s.trim().parse::<f64>().ok().map(Some),
                })
                .collect();
            match numeric {
                Some(n) if values.iter().any(Option::is_some) => b.opt_f64(col, n),
                _ => b.opt_str(col, values),
            };
        }
    }
    let fields: Vec<u64> = wells
        .iter()
        .map(|(p, w)| all.iter().filter(|s| &s.plate == p && &s.well == w).count() as u64)
        .collect();
    b.u64("Count_Fields", fields.clone()).u64(
        "Count_FieldsFailed",
        per_well
            .iter()
            .zip(&fields)
            .map(|(r, &f)| f - r.len() as u64)
            .collect(),
    );
    (b, per_well)
}

fn wells_batch(
    all: &[TimeSeries],
    results: &[SeriesResult],
    layout: Option<&ipscope_io::Layout>,
    per_cell: bool,
) -> Result<RecordBatch> {
    let (mut b, per_well) = wells_base(all, results, |r| &r.series, layout);
    if per_cell {
        b.opt_f64(
            "Median_Calcium_Asynchrony",
            per_well
                .iter()
                .map(|rs| median(rs.iter().filter_map(|r| r.asynchrony).collect()))
                .collect(),
        )
        .doc("SD of the cells' activation times per beat, mean over beats, s; median over fields")
        .u64(
            "Count_BeatingCells",
            per_well
                .iter()
                .map(|rs| rs.iter().map(|r| r.cells.len() as u64).sum())
                .collect(),
        )
        .doc("Cells (beating-region components) traced in the well's fields");
    }
    let count = |f: &dyn Fn(&SeriesResult) -> u64| -> Vec<u64> {
        per_well
            .iter()
            .map(|rs| rs.iter().map(|r| f(r)).sum())
            .collect()
    };
    b.u64(
        "Count_Beats",
        count(&|r| r.analysis.summary.beat_count as u64),
    )
    .doc("Beats in all fields of the well")
    .u64("Count_EAD", count(&|r| r.analysis.summary.ead_count as u64))
    .doc("Beats with an early-afterdepolarisation-like secondary rise");
    type Get = fn(&SeriesResult) -> Option<f64>;
    let columns: [(&str, Get, &str); 12] = [
        (
            "BeatRate",
            |r| r.analysis.summary.beat_rate_bpm,
            "Beats per minute (60 / mean RR)",
        ),
        (
            "RRCV",
            |r| r.analysis.summary.rr_cv,
            "RR interval coefficient of variation",
        ),
        (
            "Amplitude",
            |r| r.analysis.summary.amplitude_mean,
            "Mean beat amplitude, ΔF/F0",
        ),
        (
            "TimeToPeak",
            |r| r.analysis.summary.time_to_peak_mean,
            "Mean time to peak, s",
        ),
        (
            "MaxUpstrokeVelocity",
            |r| r.analysis.summary.max_upstroke_velocity_mean,
            "Mean maximum upstroke velocity, ΔF/F0 per s",
        ),
        (
            "DecayTau",
            |r| r.analysis.summary.decay_tau_mean,
            "Mean decay time constant, s",
        ),
        ("CTD30", |r| r.analysis.summary.ctd30_mean, "Mean CTD30, s"),
        ("CTD50", |r| r.analysis.summary.ctd50_mean, "Mean CTD50, s"),
        ("CTD90", |r| r.analysis.summary.ctd90_mean, "Mean CTD90, s"),
        (
            "CTD90c",
            |r| r.analysis.summary.ctd90c,
            "Fridericia-corrected CTD90 = CTD90 / RR^(1/3), s",
        ),
        (
            "BeatingArea",
            |r| Some(r.mask_fraction),
            "Fraction of the field in the beating region",
        ),
        (
            "Noise",
            |r| Some(r.analysis.summary.noise_sigma),
            "Noise SD of ΔF/F0",
        ),
    ];
    for (name, get, doc) in columns {
        b.opt_f64(
            &format!("Median_Calcium_{name}"),
            per_well
                .iter()
                .map(|rs| median(rs.iter().filter_map(|r| get(r)).collect()))
                .collect(),
        )
        .doc(&format!("{doc}; median over the well's fields"));
    }
    b.bool(
        "Calcium_Irregular",
        per_well
            .iter()
            .map(|rs| rs.iter().any(|r| r.analysis.summary.irregular))
            .collect(),
    )
    .doc("RR CV above the irregular-rhythm limit in a field")
    .bool(
        "Calcium_Arrest",
        per_well
            .iter()
            .map(|rs| !rs.is_empty() && rs.iter().all(|r| r.analysis.summary.arrest))
            .collect(),
    )
    .doc("No beat in any field of the well");
    Ok(b.finish()?)
}

fn contractions_batch(results: &[ContractionResult]) -> Result<RecordBatch> {
    use ipscope_core::assays::contraction::Contraction;
    let rows: Vec<&Contraction> = results
        .iter()
        .flat_map(|r| r.analysis.contractions.iter())
        .collect();
    let meta: Vec<(&ContractionResult, usize)> = results
        .iter()
        .flat_map(|r| (0..r.analysis.contractions.len()).map(move |k| (r, k)))
        .collect();
    let get = |f: &dyn Fn(&Contraction) -> f64| -> Vec<f64> { rows.iter().map(|c| f(c)).collect() };
    let opt = |f: &dyn Fn(&Contraction) -> Option<f64>| -> Vec<Option<f64>> {
        rows.iter().map(|c| f(c)).collect()
    };
    let mut b = TableBuilder::new();
    b.str(
        "Metadata_Plate",
        meta.iter().map(|(r, _)| r.series.plate.clone()).collect(),
    )
    .str(
        "Metadata_Well",
        meta.iter().map(|(r, _)| r.series.well.clone()).collect(),
    )
    .u32(
        "Metadata_Site",
        meta.iter().map(|(r, _)| r.series.site).collect(),
    )
    .u32(
        "Contraction_Number",
        meta.iter().map(|(_, k)| *k as u32 + 1).collect(),
    )
    .u32(
        "Contraction_PeakFrame",
        rows.iter().map(|c| c.peak_frame as u32).collect(),
    )
    .f64("Contraction_PeakTime", get(&|c| c.peak_time))
    .doc("Peak time, s from the first frame")
    .f64("Contraction_OnsetTime", get(&|c| c.onset_time))
    .doc("Rise through rest + 10 % of the amplitude, s")
    .f64("Contraction_Amplitude", get(&|c| c.amplitude))
    .doc("Peak minus rest of the motion signal (MUSCLEMOTION's contraction amplitude, relative to the reference's mean intensity)")
    .f64("Contraction_TimeToPeak", get(&|c| c.time_to_peak))
    .doc("Onset (10 % of the rise) to peak, s")
    .opt_f64("Contraction_RelaxationTime", opt(&|c| c.relaxation_time))
    .doc("Peak to relaxation back to rest + 10 % of the amplitude, s")
    .opt_f64("Contraction_Duration", opt(&|c| c.contraction_duration))
    .doc("Width at 10 % of the amplitude: onset to 90 % relaxation, s")
    .opt_f64("Contraction_PeakToPeak", opt(&|c| c.rr_interval))
    .doc("Time to the next contraction's peak, s");
    Ok(b.finish()?)
}

fn contraction_traces_batch(results: &[ContractionResult]) -> Result<RecordBatch> {
    let rows: Vec<(&ContractionResult, usize)> = results
        .iter()
        .flat_map(|r| (0..r.signal.len()).map(move |k| (r, k)))
        .collect();
    let mut b = TableBuilder::new();
    b.str(
        "Metadata_Plate",
        rows.iter().map(|(r, _)| r.series.plate.clone()).collect(),
    )
    .str(
        "Metadata_Well",
        rows.iter().map(|(r, _)| r.series.well.clone()).collect(),
    )
    .u32(
        "Metadata_Site",
        rows.iter().map(|(r, _)| r.series.site).collect(),
    )
    .u32("Frame", rows.iter().map(|(_, k)| *k as u32).collect())
    .f64(
        "Time",
        rows.iter().map(|(r, k)| *k as f64 * r.interval_s).collect(),
    )
    .doc("Seconds from the first frame")
    .f64(
        "Contraction_Signal",
        rows.iter().map(|(r, k)| r.signal[*k]).collect(),
    )
    .doc("Root-mean-square difference from the reference frame / its mean intensity: D")
    .f64(
        "Contraction_Motion",
        rows.iter().map(|(r, k)| r.analysis.motion[*k]).collect(),
    )
    .doc("√(D² − D_rest²), the noise floor removed: the contractions are measured on it");
    Ok(b.finish()?)
}

fn contraction_wells_batch(
    all: &[TimeSeries],
    results: &[ContractionResult],
    layout: Option<&ipscope_io::Layout>,
) -> Result<RecordBatch> {
    let (mut b, per_well) = wells_base(all, results, |r| &r.series, layout);
    b.u64(
        "Count_Contractions",
        per_well
            .iter()
            .map(|rs| {
                rs.iter()
                    .map(|r| r.analysis.contractions.len() as u64)
                    .sum()
            })
            .collect(),
    )
    .doc("Contractions in all fields of the well");
    type Get = fn(&ContractionResult) -> Option<f64>;
    let columns: [(&str, Get, &str); 6] = [
        (
            "BeatRate",
            |r| r.analysis.summary.beat_rate_bpm,
            "Contractions per minute (60 / mean peak-to-peak time)",
        ),
        (
            "RRCV",
            |r| r.analysis.summary.rr_cv,
            "Peak-to-peak time coefficient of variation",
        ),
        (
            "Amplitude",
            |r| r.analysis.amplitude_mean,
            "Mean contraction amplitude, relative image difference",
        ),
        (
            "TimeToPeak",
            |r| r.analysis.time_to_peak_mean,
            "Mean time to peak, s",
        ),
        (
            "RelaxationTime",
            |r| r.analysis.relaxation_time_mean,
            "Mean relaxation time, s",
        ),
        (
            "Duration",
            |r| r.analysis.contraction_duration_mean,
            "Mean contraction duration (width at 10 % of the amplitude), s",
        ),
    ];
    for (name, get, doc) in columns {
        b.opt_f64(
            &format!("Median_Contraction_{name}"),
            per_well
                .iter()
                .map(|rs| median(rs.iter().filter_map(|r| get(r)).collect()))
                .collect(),
        )
        .doc(&format!("{doc}; median over the well's fields"));
    }
    b.bool(
        "Contraction_Irregular",
        per_well
            .iter()
            .map(|rs| rs.iter().any(|r| r.analysis.summary.irregular))
            .collect(),
    )
    .doc("Peak-to-peak CV above the irregular-rhythm limit in a field")
    .bool(
        "Contraction_Arrest",
        per_well
            .iter()
            .map(|rs| !rs.is_empty() && rs.iter().all(|r| r.analysis.summary.arrest))
            .collect(),
    )
    .doc("No contraction in any field of the well");
    Ok(b.finish()?)
}
