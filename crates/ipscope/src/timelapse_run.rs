//! The time-lapse runner: `ipscope run --assay calcium` (and contraction).
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
//! Then Curves/Qc and report.html as for the nuclei run (the `Median_…` and `Count_…`
//! columns are readouts).

use std::path::{Path, PathBuf};
use std::time::Instant;

use ipscope_core::assays::calcium::{analyze_trace, CalciumParams, TraceAnalysis, TraceBuilder};
use ipscope_io::timelapse::{frame_interval, series, FrameData, FrameReader, TimeSeries};
use ipscope_io::{DiscoverOptions, ReadOptions};
use ipscope_table::{Format, RecordBatch, TableBuilder, WrittenFile};
use rayon::prelude::*;

use crate::pipeline::{errors_batch, prepare_out_dir, FailureRecord};
use crate::{Assay, Error, Result};

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
    /// Write the per-frame `Traces` table.
    pub traces: bool,
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
            traces: true,
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
}

fn signal_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{}: {e}", path.display()))
}

/// Streams one series through the calcium trace builder and analyses the trace.
pub fn analyze_series(
    s: &TimeSeries,
    interval_s: f64,
    params: &CalciumParams,
    read: &ReadOptions,
) -> Result<SeriesResult> {
    let mut reader = FrameReader::open(s, read)?;
    let frames = reader.len();
    let path = reader.path().to_path_buf();
    let mut builder: Option<TraceBuilder> = None;
    while let Some(frame) = reader.next_frame()? {
        let b = match &mut builder {
            Some(b) => b,
            None => builder.insert(
                TraceBuilder::new(frame.width, frame.height, frames, interval_s, params)
                    .map_err(|e| signal_err(&path, e))?,
            ),
        };
        match frame.data {
            FrameData::U8(d) => b.push(d),
            FrameData::U16(d) => b.push(d),
            FrameData::U32(d) => b.push(d),
            FrameData::F32(d) => b.push(d),
        }
        .map_err(|e| signal_err(&path, e))?;
    }
    let Some(builder) = builder else {
        return Err(ipscope_io::Error::TooFewFrames {
            path,
            frames: 0,
            needed: 3,
        }
        .into());
    };
    let field = builder.finish().map_err(|e| match e {
        ipscope_core::assays::calcium::SignalError::TooFewFrames { frames, needed } => {
            Error::ImageIo(ipscope_io::Error::TooFewFrames {
                path: path.clone(),
                frames,
                needed,
            })
        }
        other => signal_err(&path, other),
    })?;
    let analysis =
        analyze_trace(&field.trace, interval_s, params).map_err(|e| signal_err(&path, e))?;
    Ok(SeriesResult {
        series: s.clone(),
        interval_s,
        trace: field.trace,
        mask_fraction: field.mask_fraction,
        analysis,
    })
}

/// Runs the time-lapse assay on a plate and writes the tables into `out_dir`.
pub fn run(opts: &TimelapseOptions, out_dir: &Path, overwrite: bool) -> Result<TimelapseSummary> {
    let start = Instant::now();
    if opts.assay != Assay::Calcium {
        return Err(Error::Invalid(format!(
            "the {} assay does not run on time-lapse plates in this build; use --assay calcium",
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
    let _lock = prepare_out_dir(out_dir, overwrite)?;
    let work = |s: &TimeSeries| -> Result<SeriesResult> {
        let dt = frame_interval(s.path(), opts.fps)?.seconds;
        analyze_series(s, dt, &opts.calcium, &read)
    };
    let results: Vec<Result<SeriesResult>> = match opts.threads {
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build()
            .map_err(|e| Error::Invalid(format!("thread pool: {e}")))?
            .install(|| all.par_iter().map(work).collect()),
        None => all.par_iter().map(work).collect(),
    };
    let mut ok = Vec::new();
    let mut failures = Vec::new();
    for (s, r) in all.iter().zip(results) {
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
    write("Beats", beats_batch(&ok)?)?;
    if opts.traces {
        write("Traces", traces_batch(&ok, &channel_name)?)?;
    }
    write("Wells", wells_batch(&all, &ok, layout.as_ref())?)?;
    write("Errors", errors_batch(&failures)?)?;
    written.extend(crate::analysis::write_analysis(out_dir, format)?);
    let run = ipscope_report::RunTables::read(out_dir)
        .map_err(|e| Error::Invalid(format!("report: {e}")))?;
    let html = ipscope_report::render(&run, &ipscope_report::ReportOptions::default())
        .map_err(|e| Error::Invalid(format!("report: {e}")))?;
    written.push(
        ipscope_report::write_html(&out_dir.join(crate::analysis::REPORT_FILE), &html)
            .map_err(|e| Error::Invalid(format!("report: {e}")))?,
    );
    Ok(TimelapseSummary {
        plate: plate.id.clone(),
        assay: opts.assay,
        series: all.len(),
        series_failed: failures.len(),
        frames: ok.iter().map(|r| r.trace.len() as u64).sum(),
        beats: ok.iter().map(|r| r.analysis.beats.len() as u64).sum(),
        seconds: start.elapsed().as_secs_f64(),
        outputs: written.iter().map(|w| w.path.clone()).collect(),
    })
}

fn beats_batch(results: &[SeriesResult]) -> Result<RecordBatch> {
    let rows: Vec<(&SeriesResult, usize)> = results
        .iter()
        .flat_map(|r| (0..r.analysis.beats.len()).map(move |k| (r, k)))
        .collect();
    let beat = |f: &dyn Fn(&ipscope_core::assays::calcium::Beat) -> f64| -> Vec<f64> {
        rows.iter().map(|(r, k)| f(&r.analysis.beats[*k])).collect()
    };
    let opt = |f: &dyn Fn(&ipscope_core::assays::calcium::Beat) -> Option<f64>| {
        rows.iter()
            .map(|(r, k)| f(&r.analysis.beats[*k]))
            .collect::<Vec<_>>()
    };
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
    .u32(
        "Beat_Number",
        rows.iter().map(|(_, k)| *k as u32 + 1).collect(),
    )
    .u32(
        "Beat_PeakFrame",
        rows.iter()
            .map(|(r, k)| r.analysis.beats[*k].peak_frame as u32)
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
    .bool(
        "Beat_EAD",
        rows.iter().map(|(r, k)| r.analysis.beats[*k].ead).collect(),
    )
    .doc("A secondary rise before 90 % recovery (early-afterdepolarisation-like)");
    Ok(b.finish()?)
}

fn traces_batch(results: &[SeriesResult], channel: &str) -> Result<RecordBatch> {
    let rows: Vec<(&SeriesResult, usize)> = results
        .iter()
        .flat_map(|r| (0..r.trace.len()).map(move |k| (r, k)))
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
        &format!("Intensity_MeanIntensity_{channel}"),
        rows.iter().map(|(r, k)| r.trace[*k]).collect(),
    )
    .doc("Mean raw intensity of the beating region (not scaled)")
    .f64(
        "Trace_F0",
        rows.iter().map(|(r, k)| r.analysis.f0[*k]).collect(),
    )
    .doc("Baseline: rolling low percentile, smoothed (photobleaching)")
    .f64(
        "Trace_DeltaF_F0",
        rows.iter().map(|(r, k)| r.analysis.dff[*k]).collect(),
    );
    Ok(b.finish()?)
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    ipscope_core::ops::signal::percentile_mut(&mut v, 50.0)
}

fn wells_batch(
    all: &[TimeSeries],
    results: &[SeriesResult],
    layout: Option<&ipscope_io::Layout>,
) -> Result<RecordBatch> {
    // Wells in plate order (series are sorted by plate, row, column, site).
    let mut wells: Vec<(String, String)> = Vec::new();
    for s in all {
        let key = (s.plate.clone(), s.well.clone());
        if wells.last() != Some(&key) {
            wells.push(key);
        }
    }
    let of = |p: &str, w: &str| -> Vec<&SeriesResult> {
        results
            .iter()
            .filter(|r| r.series.plate == p && r.series.well == w)
            .collect()
    };
    let per_well: Vec<Vec<&SeriesResult>> = wells.iter().map(|(p, w)| of(p, w)).collect();
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
