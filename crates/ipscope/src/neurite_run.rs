//! `ipscope run --assay neurite`: the neurite-outgrowth assay over a plate.
//!
//! For every field: nuclei on the nuclear channel ([`segment_nuclei`]), then
//! [`analyze_neurites`] on the first marker channel (TUBB3, MAP2, …). Writes, in the output
//! directory:
//! * `Neurons.parquet`: one row per neuron (a live nucleus whose soma carries the marker),
//!   `ObjectNumber` = `Parent_Nuclei` = the nucleus label, with CellProfiler's
//!   MeasureObjectSkeleton names for the skeleton counts (`ObjectSkeleton_NumberTrunks_Neurites`,
//!   `…_NumberNonTrunkBranches_…`, `…_NumberBranchEnds_…`, `…_TotalObjectSkeletonLength_…`),
//!   lengths in px and, with a pixel size, in µm (`…_um`);
//! * `Image.parquet`: one row per field with the counts of neurons, non-neuronal and dead
//!   nuclei, the thresholds used and the status;
//! * `Wells.parquet`: per well, neuron count, % neurite-bearing neurons, mean and median
//!   neurite length per neuron, branch points per neuron, non-neuronal and dead counts,
//!   joined with the layout's `Metadata_*` columns;
//! * `Errors.parquet`: one row per field that could not be read.
//!
//! * `manifest.json`: provenance as the nuclei run records it (inputs hashed, every field's
//!   status, outputs).
//!
//! Fields run in parallel; rows are kept in plate order, so output does not depend on the
//! number of threads.
//!
//! **Resume.** Every finished field is kept in `OUT/.ipscope-partial/<ImageNumber>.json`
//! ([`crate::partial::run_fields`]); `--resume` reads those back instead of analysing the
//! fields again and the tables are built from them as in an uninterrupted run, so both
//! write the same bytes. The fingerprint (assay, parameters, channels, pattern, pixel size,
//! format, layout content, every input file's size and modification time) refuses a
//! changed resume unless `--force`d; `stop` (SIGINT/SIGTERM) ends the run after the fields
//! in progress are saved.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use ipscope_core::assays::neurite::{analyze_neurites, NeuriteParams, NeuriteResult, NucleusClass};
use ipscope_core::{segment_nuclei, NucleiParams};
use ipscope_image::{DynImage, Image, Labels};
use ipscope_io::{DiscoverOptions, ReadOptions};
use ipscope_table::{Format, TableBuilder, WrittenFile};
use serde::{Deserialize, Serialize};

use crate::channels::{resolve_channels, Channel, Role};
use crate::manifest::{ImageStatus, InputRecord, Manifest, OutputRecord};
use crate::partial::{f64_bits, FieldRun, PartialStore};
use crate::{Error, Result};

/// Name of the skeleton in CellProfiler-style column names.
pub const SKELETON_NAME: &str = "Neurites";

/// What `run --assay neurite` needs.
#[derive(Debug, Clone)]
pub struct NeuriteRunOptions {
    pub plate_dir: PathBuf,
    pub out_dir: PathBuf,
    /// `--channel ID=NAME` pairs.
    pub channels: Vec<(String, String)>,
    pub layout: Option<PathBuf>,
    pub pattern: Option<String>,
    pub overwrite: bool,
    /// Micrometres per pixel; adds `…_um` length columns.
    pub pixel_size_um: Option<f64>,
    pub nuclei: NucleiParams,
    pub neurite: NeuriteParams,
    pub format: Format,
    pub threads: Option<usize>,
    /// Continue an interrupted run in the output directory (`--resume`).
    pub resume: bool,
    /// With `resume`: start over when the interrupted run used other parameters or inputs.
    pub force: bool,
    /// Set (by a signal handler) to stop taking new fields; finished ones are kept.
    pub stop: Option<Arc<AtomicBool>>,
    /// The command line recorded in manifest.json.
    pub command_line: Vec<String>,
}

impl NeuriteRunOptions {
    pub fn new(plate_dir: impl Into<PathBuf>, out_dir: impl Into<PathBuf>) -> Self {
        NeuriteRunOptions {
            plate_dir: plate_dir.into(),
            out_dir: out_dir.into(),
            channels: Vec::new(),
            layout: None,
            pattern: None,
            overwrite: false,
            pixel_size_um: None,
            nuclei: NucleiParams::default(),
            neurite: NeuriteParams::default(),
            format: Format::Parquet,
            threads: None,
            resume: false,
            force: false,
            stop: None,
            command_line: Vec::new(),
        }
    }
}

/// What a neurite run did.
#[derive(Debug, Clone, PartialEq)]
pub struct NeuriteRunSummary {
    pub fields: usize,
    pub fields_failed: usize,
    pub neurons: usize,
    pub wells: usize,
    pub outputs: Vec<PathBuf>,
}

#[derive(Serialize, Deserialize)]
struct NeuronRow {
    object: u32,
    #[serde(with = "f64_bits")]
    x: f64,
    #[serde(with = "f64_bits")]
    y: f64,
    soma_area: u64,
    #[serde(with = "f64_bits")]
    marker_mean: f64,
    #[serde(with = "f64_bits")]
    length: f64,
    trunks: u32,
    non_trunk: u32,
    ends: u32,
    #[serde(with = "f64_bits")]
    longest: f64,
}

struct FieldOut {
    well: String,
    site: u32,
    plate: String,
    result: FieldResultOrError,
}

/// A field's result, or the file and the message of its failure (kept for `--resume` too).
type FieldResultOrError = std::result::Result<FieldResult, (String, String)>;

#[derive(Serialize, Deserialize)]
struct FieldResult {
    nuclei: usize,
    neurons: Vec<NeuronRow>,
    non_neuronal: usize,
    dead: usize,
    #[serde(with = "f64_bits")]
    marker_threshold: f64,
    #[serde(with = "f64_bits")]
    ridge_threshold: f64,
    #[serde(with = "f64_bits")]
    unassigned: f64,
}

/// CellProfiler scaling: pixel values divided by the sample type's maximum.
fn scaled(img: &DynImage) -> Image<f32> {
    let s = img.sample_type().scale() as f32;
    img.to_f32().map(|v| v / s)
}

/// One field as the run analyses it: nuclei on the nuclear image, then
/// [`analyze_neurites`] (somata, skeleton, per-nucleus measurements). Errors name the file
/// (first) and the problem.
pub fn analyze_field(
    dna_path: &Path,
    dna_page: usize,
    marker_path: &Path,
    marker_page: usize,
    opts: &NeuriteRunOptions,
) -> std::result::Result<(Labels, NeuriteResult), (String, String)> {
    let read = |p: &Path, page: usize| {
        ipscope_io::read_image(p, page, &ReadOptions::default())
            .map_err(|e| (p.display().to_string(), e.to_string()))
    };
    let dna = scaled(&read(dna_path, dna_page)?);
    let marker = scaled(&read(marker_path, marker_page)?);
    let nuclei = segment_nuclei(dna.view(), &opts.nuclei).labels;
    let res = analyze_neurites(dna.view(), marker.view(), &nuclei, &opts.neurite)
        .map_err(|e| (marker_path.display().to_string(), e.to_string()))?;
    Ok((nuclei, res))
}

fn run_field(
    dna_path: &Path,
    dna_page: usize,
    marker_path: &Path,
    marker_page: usize,
    opts: &NeuriteRunOptions,
) -> std::result::Result<FieldResult, (String, String)> {
    let (nuclei, res) = analyze_field(dna_path, dna_page, marker_path, marker_page, opts)?;
    // Nucleus centroids.
    let n = nuclei.count() as usize;
    let mut sums = vec![(0f64, 0f64, 0u64); n + 1];
    let w = nuclei.width();
    for (i, &l) in nuclei.image().as_slice().iter().enumerate() {
        if l != 0 {
            let s = &mut sums[l as usize];
            s.0 += (i % w) as f64;
            s.1 += (i / w) as f64;
            s.2 += 1;
        }
    }
    let neurons = res
        .neurons
        .iter()
        .filter(|m| m.class == NucleusClass::Neuron)
        .map(|m| {
            let s = sums[m.nucleus as usize];
            let a = s.2.max(1) as f64;
            NeuronRow {
                object: m.nucleus,
                x: s.0 / a,
                y: s.1 / a,
                soma_area: m.soma_area,
                marker_mean: m.soma_marker_mean,
                length: m.total_length,
                trunks: m.trunks,
                non_trunk: m.non_trunk_branches,
                ends: m.branch_ends,
                longest: m.longest_neurite,
            }
        })
        .collect();
    Ok(FieldResult {
        nuclei: n,
        neurons,
        non_neuronal: res.count(NucleusClass::NonNeuronal),
        dead: res.count(NucleusClass::Dead),
        marker_threshold: res.marker_threshold,
        ridge_threshold: res.ridge_threshold,
        unassigned: res.unassigned_length,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Runs the neurite assay over a plate; see the module docs.
pub fn run_neurite(opts: &NeuriteRunOptions) -> Result<NeuriteRunSummary> {
    let plate = ipscope_io::discover(
        &opts.plate_dir,
        &DiscoverOptions {
            pattern: opts.pattern.clone(),
        },
    )?;
    let channels = resolve_channels(&plate.channels, &opts.channels)?;
    let dna_ch = channels
        .iter()
        .find(|c| c.role == Role::Nuclear)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "{}: --assay neurite needs a nuclear channel; name one with --channel ID=DNA (channels found: {})",
                opts.plate_dir.display(),
                plate.channels.join(", ")
            ))
        })?;
    let marker_ch = channels
        .iter()
        .find(|c| c.role == Role::Marker)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "{}: --assay neurite needs a neuronal marker channel; name one with --channel ID=TUBB3 (channels found: {})",
                opts.plate_dir.display(),
                plate.channels.join(", ")
            ))
        })?;
    let layout = match &opts.layout {
        Some(p) => Some(ipscope_io::read_layout(p)?),
        None => None,
    };
    let used = [dna_ch, marker_ch];
    let params = format!(
        "{:?} {:?} {:?}",
        opts.nuclei,
        opts.neurite,
        opts.pixel_size_um.map(f64::to_bits)
    );
    let (_lock, store) = crate::partial::open_resumable(
        &opts.out_dir,
        &fingerprint(opts, "neurite", &params, &plate, &used)?,
        opts.resume,
        opts.force,
        opts.overwrite,
    )?;
    let runs = crate::partial::run_fields(
        &store,
        &plate.fields,
        opts.threads,
        opts.stop.as_deref(),
        &opts.out_dir,
        |f: &ipscope_io::Field| -> FieldResultOrError {
            let find = |id: &str| f.channels.iter().find(|c| c.channel == id);
            match (find(&dna_ch.id), find(&marker_ch.id)) {
                (Some(d), Some(m)) => run_field(&d.path, d.page, &m.path, m.page, opts),
                _ => Err((
                    format!("{} s{}", f.well, f.site),
                    format!(
                        "missing channel {} or {} in this field",
                        dna_ch.id, marker_ch.id
                    ),
                )),
            }
        },
    )?;
    let statuses = statuses(&plate, &runs);
    let outs: Vec<FieldOut> = plate
        .fields
        .iter()
        .zip(runs)
        .map(|(f, r)| FieldOut {
            well: f.well.clone(),
            site: f.site,
            plate: f.plate.clone(),
            result: r.value,
        })
        .collect();

    let lay_cols: Vec<String> = layout
        .as_ref()
        .map(|l| l.columns.clone())
        .unwrap_or_default();
    let lay_val = |well: &str, k: usize| -> Option<String> {
        layout
            .as_ref()
            .and_then(|l| l.get(well))
            .and_then(|v| v.get(k).cloned())
    };
    let add_layout = |b: &mut TableBuilder, wells: &[String]| {
        for (k, col) in lay_cols.iter().enumerate() {
            b.opt_str(col, wells.iter().map(|w| lay_val(w, k)).collect());
        }
    };
    let sfx = |what: &str| format!("ObjectSkeleton_{what}_{SKELETON_NAME}");
    let um = opts.pixel_size_um.filter(|p| p.is_finite() && *p > 0.0);
    let mut outputs = Vec::new();
    let write = |name: &str, b: TableBuilder, outputs: &mut Vec<WrittenFile>| -> Result<()> {
        let batch = b.finish()?;
        let path = opts
            .out_dir
            .join(format!("{name}.{}", opts.format.extension()));
        outputs.push(ipscope_table::write_table(
            &path,
            batch.schema(),
            &[batch],
            opts.format,
        )?);
        Ok(())
    };

    // Neurons.
    let mut image_no = Vec::new();
    let mut wells_col = Vec::new();
    let mut rows: Vec<&NeuronRow> = Vec::new();
    let mut plates = Vec::new();
    let mut sites = Vec::new();
    for (i, o) in outs.iter().enumerate() {
        if let Ok(r) = &o.result {
            for n in &r.neurons {
                image_no.push(i as u32 + 1);
                wells_col.push(o.well.clone());
                plates.push(o.plate.clone());
                sites.push(o.site);
                rows.push(n);
            }
        }
    }
    let marker = &marker_ch.name;
    let mut b = TableBuilder::new();
    b.u32("ImageNumber", image_no.clone())
        .u32("ObjectNumber", rows.iter().map(|r| r.object).collect())
        .str("Metadata_Plate", plates)
        .str("Metadata_Well", wells_col.clone())
        .u32("Metadata_Site", sites);
    add_layout(&mut b, &wells_col);
    b.u32("Parent_Nuclei", rows.iter().map(|r| r.object).collect())
        .f64("Location_Center_X", rows.iter().map(|r| r.x).collect())
        .f64("Location_Center_Y", rows.iter().map(|r| r.y).collect())
        .u64(
            "Neurons_AreaShape_Area",
            rows.iter().map(|r| r.soma_area).collect(),
        )
        .f64(
            &format!("Neurons_Intensity_MeanIntensity_{marker}"),
            rows.iter().map(|r| r.marker_mean).collect(),
        )
        .u32(
            &sfx("NumberTrunks"),
            rows.iter().map(|r| r.trunks).collect(),
        )
        .u32(
            &sfx("NumberNonTrunkBranches"),
            rows.iter().map(|r| r.non_trunk).collect(),
        )
        .u32(
            &sfx("NumberBranchEnds"),
            rows.iter().map(|r| r.ends).collect(),
        )
        .f64(
            &sfx("TotalObjectSkeletonLength"),
            rows.iter().map(|r| r.length).collect(),
        )
        .f64(
            &sfx("LongestNeuriteLength"),
            rows.iter().map(|r| r.longest).collect(),
        );
    if let Some(p) = um {
        b.f64(
            &format!("{}_um", sfx("TotalObjectSkeletonLength")),
            rows.iter().map(|r| r.length * p).collect(),
        )
        .f64(
            &format!("{}_um", sfx("LongestNeuriteLength")),
            rows.iter().map(|r| r.longest * p).collect(),
        );
    }
    b.doc("One row per neuron (a live nucleus whose soma carries the neuronal marker); lengths in pixels along the skeleton, 1 per axial and sqrt(2) per diagonal step; _um columns multiply by the pixel size.");
    write("Neurons", b, &mut outputs)?;

    // Image.
    let mut b = TableBuilder::new();
    let fwells: Vec<String> = outs.iter().map(|o| o.well.clone()).collect();
    b.u32("ImageNumber", (1..=outs.len() as u32).collect())
        .str(
            "Metadata_Plate",
            outs.iter().map(|o| o.plate.clone()).collect(),
        )
        .str("Metadata_Well", fwells.clone())
        .u32("Metadata_Site", outs.iter().map(|o| o.site).collect());
    add_layout(&mut b, &fwells);
    let cnt = |f: &dyn Fn(&FieldResult) -> usize| -> Vec<u64> {
        outs.iter()
            .map(|o| o.result.as_ref().ok().map_or(0, |r| f(r) as u64))
            .collect()
    };
    b.u64("Count_Nuclei", cnt(&|r| r.nuclei))
        .u64("Count_Neurons", cnt(&|r| r.neurons.len()))
        .u64("Count_NonNeuronal", cnt(&|r| r.non_neuronal))
        .u64("Count_Dead", cnt(&|r| r.dead))
        .f64(
            &format!("Threshold_FinalThreshold_{marker}"),
            outs.iter()
                .map(|o| {
                    o.result
                        .as_ref()
                        .ok()
                        .map_or(f64::NAN, |r| r.marker_threshold)
                })
                .collect(),
        )
        .f64(
            "Threshold_FinalThreshold_Ridge",
            outs.iter()
                .map(|o| {
                    o.result
                        .as_ref()
                        .ok()
                        .map_or(f64::NAN, |r| r.ridge_threshold)
                })
                .collect(),
        )
        .f64(
            "Neurites_UnassignedLength",
            outs.iter()
                .map(|o| o.result.as_ref().ok().map_or(f64::NAN, |r| r.unassigned))
                .collect(),
        )
        .str(
            "Status",
            outs.iter()
                .map(|o| if o.result.is_ok() { "ok" } else { "failed" }.to_string())
                .collect(),
        );
    write("Image", b, &mut outputs)?;

    // Wells, in plate order.
    let wells = plate.wells();
    let mut b = TableBuilder::new();
    b.str("Metadata_Well", wells.clone());
    add_layout(&mut b, &wells);
    let mut cols: Vec<Vec<f64>> = vec![Vec::new(); 9];
    let mut counts: Vec<Vec<u64>> = vec![Vec::new(); 5];
    for w in &wells {
        let fields: Vec<&FieldOut> = outs.iter().filter(|o| &o.well == w).collect();
        let okf: Vec<&FieldResult> = fields
            .iter()
            .filter_map(|o| o.result.as_ref().ok())
            .collect();
        let lengths: Vec<f64> = okf
            .iter()
            .flat_map(|r| r.neurons.iter().map(|n| n.length))
            .collect();
        let branch_points: Vec<f64> = okf
            .iter()
            .flat_map(|r| r.neurons.iter().map(|n| f64::from(n.non_trunk)))
            .collect();
        let n = lengths.len();
        let bearing = lengths
            .iter()
            .filter(|&&l| l >= opts.neurite.min_neurite_length)
            .count();
        let mean = |v: &[f64]| {
            if v.is_empty() {
                f64::NAN
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        counts[0].push(fields.len() as u64);
        counts[1].push((fields.len() - okf.len()) as u64);
        counts[2].push(n as u64);
        counts[3].push(okf.iter().map(|r| r.non_neuronal as u64).sum());
        counts[4].push(okf.iter().map(|r| r.dead as u64).sum());
        cols[0].push(if n > 0 {
            100.0 * bearing as f64 / n as f64
        } else {
            f64::NAN
        });
        cols[1].push(mean(&lengths));
        cols[2].push(median(lengths.clone()));
        cols[3].push(mean(&branch_points));
        cols[4].push(lengths.iter().sum());
        let p = um.unwrap_or(f64::NAN);
        cols[5].push(mean(&lengths) * p);
        cols[6].push(median(lengths) * p);
    }
    b.u64("Count_Fields", counts[0].clone())
        .u64("Count_FieldsFailed", counts[1].clone())
        .u64("Count_Neurons", counts[2].clone())
        .u64("Count_NonNeuronal", counts[3].clone())
        .u64("Count_Dead", counts[4].clone())
        .f64("Percent_NeuriteBearing", cols[0].clone())
        .f64("Mean_NeuriteLength", cols[1].clone())
        .f64("Median_NeuriteLength", cols[2].clone())
        .f64("Mean_BranchPointsPerNeuron", cols[3].clone())
        .f64("Sum_NeuriteLength", cols[4].clone());
    if um.is_some() {
        b.f64("Mean_NeuriteLength_um", cols[5].clone())
            .f64("Median_NeuriteLength_um", cols[6].clone());
    }
    b.doc("Per well: neurons, % neurite-bearing (total length >= min_neurite_length px), mean and median neurite length per neuron (px), branch points per neuron; non-neuronal and dead nuclei counted apart.");
    write("Wells", b, &mut outputs)?;

    // Errors.
    let failed: Vec<crate::assay::FailedField<'_>> = outs
        .iter()
        .enumerate()
        .filter_map(|(i, o)| {
            o.result.as_ref().err().map(|e| crate::assay::FailedField {
                image_number: i as u32 + 1,
                well: &o.well,
                site: o.site,
                file: &e.0,
                message: &e.1,
            })
        })
        .collect();
    write("Errors", crate::assay::errors_table(&failed), &mut outputs)?;
    let outputs = write_manifest(opts, &plate, &used, statuses, &outputs, store)?;

    Ok(NeuriteRunSummary {
        fields: outs.len(),
        fields_failed: failed.len(),
        neurons: rows.len(),
        wells: wells.len(),
        outputs,
    })
}

/// Every field's status for the manifest, in plate order.
pub(crate) fn statuses<T>(
    plate: &ipscope_io::Plate,
    runs: &[FieldRun<std::result::Result<T, (String, String)>>],
) -> Vec<ImageStatus> {
    plate
        .fields
        .iter()
        .zip(runs)
        .enumerate()
        .map(|(i, (f, r))| ImageStatus {
            image_number: i as u32 + 1,
            well: f.well.clone(),
            site: f.site,
            status: if r.value.is_ok() { "ok" } else { "failed" }.to_string(),
            error: r
                .value
                .as_ref()
                .err()
                .map(|(file, msg)| format!("{file}: {msg}")),
            seconds: r.seconds,
        })
        .collect()
}

/// What a resumed still-image run (neurite, spots) must share with the interrupted one:
/// version, assay, parameters (`params`, their Debug text), channels, pattern, format,
/// layout content and every used input file's size and modification time (not the
/// thread count: results do not depend on it).
pub(crate) fn fingerprint(
    opts: &NeuriteRunOptions,
    assay: &str,
    params: &str,
    plate: &ipscope_io::Plate,
    used: &[&Channel],
) -> Result<String> {
    let mut fp = crate::partial::Fingerprint::default();
    let mut put = |s: &str| fp.put(s);
    put(env!("CARGO_PKG_VERSION"));
    put(assay);
    put(params);
    for c in used {
        put(&format!("{}={} {:?}", c.id, c.name, c.role));
    }
    put(&format!("{:?}", opts.pattern));
    put(opts.format.extension());
    match &opts.layout {
        Some(p) => put(&InputRecord::of_file(p)?.sha256),
        None => put(""),
    }
    for f in &plate.fields {
        put(&format!("{} {} {}", f.plate, f.well, f.site));
        for c in f
            .channels
            .iter()
            .filter(|c| used.iter().any(|u| u.id == c.channel))
        {
            put(&format!(
                "{}|{}|{}",
                c.path.display(),
                c.page,
                crate::partial::file_stamp(&c.path)
            ));
        }
    }
    Ok(fp.finish())
}

/// Writes `manifest.json` (inputs hashed, every field's status, the outputs, when the run
/// started and was resumed), then removes the finished fields of the store: the run is
/// complete. Returns the paths written.
pub(crate) fn write_manifest(
    opts: &NeuriteRunOptions,
    plate: &ipscope_io::Plate,
    used: &[&Channel],
    images: Vec<ImageStatus>,
    written: &[WrittenFile],
    store: PartialStore,
) -> Result<Vec<PathBuf>> {
    let mut files: Vec<&Path> = plate
        .fields
        .iter()
        .flat_map(|f| f.channels.iter())
        .filter(|c| used.iter().any(|u| u.id == c.channel))
        .map(|c| c.path.as_path())
        .collect();
    files.sort();
    files.dedup();
    let inputs = files
        .into_iter()
        .map(InputRecord::of_file)
        .collect::<Result<Vec<_>>>()?;
    let mut config = crate::config::Config::default();
    config.input.pattern = opts.pattern.clone();
    config.channels = opts.channels.iter().cloned().collect();
    config.nuclei = opts.nuclei.clone();
    config.neurite.ridge = opts.neurite.ridge_filter;
    let manifest = Manifest {
        ipscope_version: env!("CARGO_PKG_VERSION").to_string(),
        command_line: opts.command_line.clone(),
        started: store.state.started.clone(),
        resumed: store.state.resumed.clone(),
        finished: chrono::Utc::now().to_rfc3339(),
        plate: plate.id.clone(),
        plate_dir: opts.plate_dir.clone(),
        naming_scheme: plate.scheme.clone(),
        fields_in_plate: plate.fields.len(),
        shards: Vec::new(),
        channels: used.iter().map(|&c| c.clone()).collect(),
        parameters: config,
        format: opts.format.extension().to_string(),
        machine: crate::manifest::Machine::current(
            opts.threads.unwrap_or_else(rayon::current_num_threads),
        ),
        dependencies: crate::manifest::dependencies(),
        plate_qc: Vec::new(),
        warnings: Vec::new(),
        inputs,
        images,
        outputs: written
            .iter()
            .map(|w| OutputRecord::from_written(w, &opts.out_dir))
            .collect(),
    };
    let path = opts.out_dir.join("manifest.json");
    manifest.write(&path)?;
    store.finish()?;
    Ok(written
        .iter()
        .map(|w| w.path.clone())
        .chain([path])
        .collect())
}
