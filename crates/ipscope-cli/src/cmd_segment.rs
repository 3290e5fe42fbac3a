//! `ipscope segment`, `ipscope eval` and `ipscope config`: segment single images into label
//! TIFFs and outline overlays, score label images against ground truth, print the default
//! configuration.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use ipscope::core::assays::colonies::{colonies_from_brightfield, colonies_from_nuclei};
use ipscope::core::ops::eval::{match_labels, summarize, EvalSummary, ImageMatch};
use ipscope::core::ops::label::{label, Connectivity};
use ipscope::core::ops::outline::outline_overlay;
use ipscope::core::{segment_cells, segment_nuclei_with};
use ipscope::gpu::DeviceChoice;
use ipscope::image::{with_dyn_image, DynImage, Image, Labels, Pixel};
use ipscope::io::{read_image, write_png, write_tiff, ReadOptions};
use ipscope::Config;

#[derive(Subcommand)]
pub enum Cmd {
    /// Segment nuclei (or cells, or colonies) in single images; write label TIFFs (u16 when
    /// the count fits, else u32) and optional outline overlays (PNG).
    Segment {
        /// Images of the nuclear stain (TIFF or PNG, one channel); with `--object cells`,
        /// images of the cell-body stain (see `--nuclei-channel`).
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Label image for a single input.
        #[arg(long, conflicts_with = "labels_dir")]
        labels: Option<PathBuf>,
        /// Directory for label images, one `<input stem>.tif` per input.
        #[arg(long)]
        labels_dir: Option<PathBuf>,
        /// Outline overlay (grey PNG, outlines white) for a single input.
        #[arg(long, conflicts_with = "overlay_dir")]
        overlay: Option<PathBuf>,
        /// Directory for overlays, one `<input stem>_overlay.png` per input.
        #[arg(long)]
        overlay_dir: Option<PathBuf>,
        /// Configuration file; its `[nuclei]` section sets the segmentation (`[cells]` that
        /// of cells, `[colonies]` that of colonies).
        #[arg(long)]
        config: Option<PathBuf>,
        /// What to segment: `nuclei`; `cells` grown from the nuclei of each image's DNA image
        /// into the cell stain (CellProfiler's IdentifySecondaryObjects; `[cells]` in the
        /// configuration: propagation by default); or `colonies` (see `--colonies-from`;
        /// `[colonies]` in the configuration sets the parameters).
        #[arg(long, value_enum, default_value_t = ObjectKind::Nuclei)]
        object: ObjectKind,
        /// With `--object cells`: each input's DNA image. `FROM=TO` replaces the last FROM in
        /// the input's file name by TO, in the same directory (`d2=d0` pairs
        /// `..._D03f00d2.tif` with `..._D03f00d0.tif`, as CellProfiler's NamesAndTypes
        /// matches channels by file name); a path names the DNA image of a single input.
        /// With `--labels-dir`, the nuclei are written too, as `<input stem>_nuclei.tif`.
        #[arg(long, value_name = "FROM=TO|PATH")]
        nuclei_channel: Option<String>,
        /// Colonies from the nuclear stain (nuclei within the linking distance form one
        /// colony) or from a transmitted-light image (texture; a circular well is found
        /// and its outside ignored).
        #[arg(long, value_enum, default_value_t = ColonySource::Nuclei)]
        colonies_from: ColonySource,
        /// Where nuclei are segmented: cpu (the reference), gpu (Vulkan, Metal or DX12; an
        /// error when there is none, see `ipscope devices`) or auto (a GPU when there is one,
        /// else the CPU; says which on stderr). Default: `[run] device` of --config, else
        /// cpu. Colonies from transmitted light run on the CPU.
        #[arg(long, value_name = "DEVICE", value_parser = |s: &str| s.parse::<DeviceChoice>())]
        device: Option<DeviceChoice>,
        /// Worker threads (default: all cores, or `RAYON_NUM_THREADS`); images run side by
        /// side and idle threads share one image's filters. Results are the same for any
        /// number.
        #[arg(long)]
        threads: Option<usize>,
        /// Print one JSON object per image.
        #[arg(long)]
        json: bool,
    },
    /// Score predicted label images against true ones: precision, recall, F1 at IoU 0.5
    /// pooled over images, and the DSB2018 average precision over IoU 0.50:0.95.
    Eval {
        /// Directory of true label images (TIFF/PNG, 0 = background).
        #[arg(long)]
        truth: PathBuf,
        /// Directory of predicted label images, paired with the truth by file stem
        /// (`<stem>.tif`, `<stem>.tiff` or `<stem>.png`).
        #[arg(long)]
        pred: PathBuf,
        /// The truth images are binary masks: number their 4-connected components.
        #[arg(long)]
        truth_binary: bool,
        /// Print the scores as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the configuration file format.
    Config {
        /// Print the full default configuration, every parameter documented.
        #[arg(long, required = true)]
        default: bool,
    },
}

pub fn dispatch(cmd: Cmd) -> Result<ExitCode> {
    match cmd {
        Cmd::Segment {
            images,
            labels,
            labels_dir,
            overlay,
            overlay_dir,
            config,
            object,
            colonies_from,
            nuclei_channel,
            device,
            threads,
            json,
        } => {
            let run = || {
                segment(
                    &images,
                    object,
                    colonies_from,
                    nuclei_channel.as_deref(),
                    device,
                    Outputs {
                        labels,
                        labels_dir,
                        overlay,
                        overlay_dir,
                    },
                    config.as_deref(),
                    json,
                )
            };
            match threads {
                Some(n) => rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build()
                    .context("--threads: could not start the worker threads")?
                    .install(run),
                None => run(),
            }
        }
        Cmd::Eval {
            truth,
            pred,
            truth_binary,
            json,
        } => eval(&truth, &pred, truth_binary, json),
        Cmd::Config { default: _ } => {
            print!("{}", documented_default_config());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Objects `segment` finds.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ObjectKind {
    Nuclei,
    /// Cells grown from the nuclei of a paired DNA image (`--nuclei-channel`).
    Cells,
    Colonies,
}

/// The image colonies are found in.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColonySource {
    /// A nuclear stain (DNA/Hoechst/DAPI).
    Nuclei,
    /// Brightfield / phase contrast, fields or whole wells.
    Transmitted,
}

struct Outputs {
    labels: Option<PathBuf>,
    labels_dir: Option<PathBuf>,
    overlay: Option<PathBuf>,
    overlay_dir: Option<PathBuf>,
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".to_string())
}

#[allow(clippy::too_many_arguments)]
fn segment(
    images: &[PathBuf],
    object: ObjectKind,
    colonies_from: ColonySource,
    nuclei_channel: Option<&str>,
    device: Option<DeviceChoice>,
    out: Outputs,
    config: Option<&Path>,
    json: bool,
) -> Result<ExitCode> {
    if images.len() > 1 && (out.labels.is_some() || out.overlay.is_some()) {
        bail!("--labels and --overlay take one input image; use --labels-dir / --overlay-dir for several");
    }
    let config_path = config;
    let config = match config {
        Some(p) => Config::from_file(p)?,
        None => Config::default(),
    };
    // The flag wins over `[run] device` of the file, as for `run`; the CPU by default.
    let (device, source) = match (device, config_path) {
        (Some(d), _) => (d, None),
        (None, Some(p)) => (
            config.run.device,
            Some(crate::config_device_source(config.run.device, p)),
        ),
        (None, None) => (DeviceChoice::Cpu, None),
    };
    // Opened once, before any image: `gpu` without an adapter stops here.
    let (backend, note) = ipscope::gpu::select_with_note(device).with_context(|| {
        source.clone().unwrap_or_else(|| {
            let arg = match device {
                DeviceChoice::Auto => "auto",
                DeviceChoice::Cpu => "cpu",
                DeviceChoice::Gpu => "gpu",
            };
            format!("--device {arg}")
        })
    })?;
    if device != DeviceChoice::Cpu {
        eprintln!("{}", crate::device_line(&backend.name(), note.as_deref()));
    }
    for dir in [&out.labels_dir, &out.overlay_dir].into_iter().flatten() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if object == ObjectKind::Cells {
        // Every pairing checked before the first image is segmented.
        for path in images {
            nuclear_path(path, nuclei_channel, images.len())?;
        }
    } else if nuclei_channel.is_some() {
        bail!("--nuclei-channel pairs cell-stain images with DNA images; it needs --object cells");
    }
    for path in images {
        let img = read_image(path, 0, &ReadOptions::default())
            .with_context(|| format!("cannot read {}", path.display()))?;
        // With --object cells the input is the cell stain; nuclei come from its DNA image.
        let (img, cell_img) = if object == ObjectKind::Cells {
            let dna = nuclear_path(path, nuclei_channel, images.len())?;
            let dna_img = read_image(&dna, 0, &ReadOptions::default()).with_context(|| {
                format!(
                    "cannot read {}, the DNA image of {} (--nuclei-channel)",
                    dna.display(),
                    path.display()
                )
            })?;
            (dna_img, Some(img))
        } else {
            (img, None)
        };
        let mut nuclei = None;
        let mut result = if object == ObjectKind::Colonies
            && colonies_from == ColonySource::Transmitted
        {
            // No nuclear stain here: start from an empty result.
            ipscope::core::NucleiResult {
                labels: Labels::empty(img.width(), img.height()),
                threshold: f64::NAN,
            }
        } else {
            let (backend, params) = (backend.as_ref(), &config.nuclei);
            let seg = with_dyn_image!(&img, i => segment_nuclei_with(backend, i.view(), params));
            seg.with_context(|| format!("{}: segmenting nuclei", path.display()))?
        };
        let mut well = None;
        let what = match object {
            ObjectKind::Nuclei => "nuclei",
            ObjectKind::Cells => {
                let cell = cell_img.as_ref().unwrap_or(&img);
                let params = &config.cells;
                let grown =
                    with_dyn_image!(cell, i => segment_cells(i.view(), &result.labels, params))
                        .with_context(|| {
                            format!(
                                "{}: growing cells from its DNA image's nuclei",
                                path.display()
                            )
                        })?;
                nuclei = Some(std::mem::replace(&mut result.labels, grown.cells));
                result.threshold = grown.threshold;
                "cells"
            }
            ObjectKind::Colonies => {
                let colonies = match colonies_from {
                    ColonySource::Nuclei => colonies_from_nuclei(&result.labels, &config.colonies),
                    ColonySource::Transmitted => {
                        colonies_from_brightfield(scaled_f32(&img).view(), &config.colonies)
                    }
                };
                well = colonies.well;
                result.labels = colonies.labels;
                if colonies_from == ColonySource::Transmitted {
                    result.threshold = colonies.threshold;
                }
                "colonies"
            }
        };
        let name = stem(path);
        let labels_path = out.labels.clone().or_else(|| {
            out.labels_dir
                .as_ref()
                .map(|d| d.join(format!("{name}.tif")))
        });
        if let Some(p) = &labels_path {
            write_labels(p, &result.labels)?;
        }
        let nuclei_path = match (&nuclei, &out.labels_dir) {
            (Some(n), Some(d)) => {
                let p = d.join(format!("{name}_nuclei.tif"));
                write_labels(&p, n)?;
                Some(p)
            }
            _ => None,
        };
        let overlay_path = out.overlay.clone().or_else(|| {
            out.overlay_dir
                .as_ref()
                .map(|d| d.join(format!("{name}_overlay.png")))
        });
        if let Some(p) = &overlay_path {
            let scaled = scaled_f32(cell_img.as_ref().unwrap_or(&img));
            let ov = outline_overlay(scaled.view(), result.labels.view())?;
            write_png(p, ov.view()).with_context(|| format!("cannot write {}", p.display()))?;
        }
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "image": path.display().to_string(),
                    "object": what,
                    "objects": result.labels.count(),
                    "well": well,
                    "threshold": if result.threshold.is_finite() { Some(result.threshold) } else { None },
                    "labels": labels_path.map(|p| p.display().to_string()),
                    "overlay": overlay_path.map(|p| p.display().to_string()),
                    "nuclei": nuclei.as_ref().map(|n| n.count()),
                    "nuclei_labels": nuclei_path.map(|p| p.display().to_string()),
                    "threads": rayon::current_num_threads(),
                })
            );
        } else {
            let well = well
                .map(|w| {
                    format!(
                        ", well at x={:.0} y={:.0} radius {:.0}",
                        w.center_col, w.center_row, w.radius
                    )
                })
                .unwrap_or_default();
            println!(
                "{}: {} {what} (threshold {:.4}{well})",
                path.display(),
                result.labels.count(),
                result.threshold
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The DNA image of a cell-stain image (`--nuclei-channel`): `FROM=TO` replaces the last
/// FROM in the file name by TO, in the same directory; an existing file is the DNA image of
/// a single input.
fn nuclear_path(path: &Path, spec: Option<&str>, inputs: usize) -> Result<PathBuf> {
    let Some(spec) = spec else {
        bail!(
            "--object cells needs --nuclei-channel: FROM=TO to find each image's DNA image by renaming it (e.g. d2=d0), or the DNA image's path for a single input"
        );
    };
    if Path::new(spec).is_file() {
        if inputs > 1 {
            bail!("--nuclei-channel {spec}: a path pairs with one input image; pair several with FROM=TO");
        }
        return Ok(PathBuf::from(spec));
    }
    let Some((from, to)) = spec.split_once('=').filter(|(f, _)| !f.is_empty()) else {
        bail!("--nuclei-channel {spec:?}: neither an existing image file nor FROM=TO");
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some(at) = name.rfind(from) else {
        bail!(
            "{}: --nuclei-channel {spec}: the file name holds no {from:?} to replace",
            path.display()
        );
    };
    if from == to {
        bail!("--nuclei-channel {spec}: FROM and TO are the same, so every image would be its own DNA image");
    }
    Ok(path.with_file_name(format!("{}{to}{}", &name[..at], &name[at + from.len()..])))
}

/// The image on CellProfiler's 0..1 scale, as the segmentation sees it.
fn scaled_f32(img: &DynImage) -> Image<f32> {
    fn scale<T: Pixel>(i: &Image<T>) -> Image<f32> {
        i.map(|v| (v.to_f64() / T::MAX) as f32)
    }
    with_dyn_image!(img, i => scale(i))
}

/// Writes labels as u16 when every value fits, else u32.
fn write_labels(path: &Path, labels: &Labels) -> Result<()> {
    let res = if labels.count() <= u32::from(u16::MAX) {
        let small = labels.image().map(|v| v as u16);
        write_tiff(path, small.view())
    } else {
        write_tiff(path, labels.view())
    };
    res.with_context(|| format!("cannot write {}", path.display()))
}

/// Label images in a directory by stem, sorted.
fn label_files(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let p = entry?.path();
        let ext = p
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if p.is_file() && matches!(ext.as_str(), "tif" | "tiff" | "png") {
            out.push((stem(&p), p));
        }
    }
    out.sort();
    Ok(out)
}

/// Reads a label image: integer samples as labels; with `binary`, non-zero pixels are
/// numbered by 4-connected component.
pub fn read_labels(path: &Path, binary: bool) -> Result<Image<u32>> {
    let img = read_image(path, 0, &ReadOptions::default())
        .with_context(|| format!("cannot read {}", path.display()))?;
    let labels = match img {
        DynImage::U8(i) => i.map(u32::from),
        DynImage::U16(i) => i.map(u32::from),
        DynImage::U32(i) => i,
        DynImage::F32(_) => bail!("{}: float image is not a label image", path.display()),
    };
    Ok(if binary {
        label(labels.map(|v| v != 0).view(), Connectivity::Four).into_image()
    } else {
        labels
    })
}

fn eval(truth: &Path, pred: &Path, truth_binary: bool, json: bool) -> Result<ExitCode> {
    let truths = label_files(truth)?;
    if truths.is_empty() {
        bail!("no label images (.tif, .tiff, .png) in {}", truth.display());
    }
    let preds = label_files(pred)?;
    let mut matches: Vec<(String, ImageMatch)> = Vec::new();
    let mut missing = Vec::new();
    for (name, tpath) in &truths {
        let t = read_labels(tpath, truth_binary)?;
        let p = match preds.iter().find(|(n, _)| n == name) {
            Some((_, p)) => read_labels(p, false)?,
            None => {
                missing.push(name.clone());
                Image::new(t.width(), t.height(), 0u32)
            }
        };
        let m = match_labels(t.view(), p.view()).with_context(|| format!("image {name}"))?;
        matches.push((name.clone(), m));
    }
    let all: Vec<ImageMatch> = matches.iter().map(|(_, m)| m.clone()).collect();
    let s = summarize(&all);
    if json {
        let per_image: Vec<_> = matches
            .iter()
            .map(|(n, m)| {
                let one = summarize(std::slice::from_ref(m));
                serde_json::json!({"image": n, "n_true": m.n_true, "n_pred": m.n_pred,
                    "f1": one.f1, "ap_dsb": one.ap_dsb})
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "images": s.images, "n_true": s.n_true, "n_pred": s.n_pred,
                "tp": s.at_50.tp, "fp": s.at_50.fp, "fn": s.at_50.fn_,
                "precision": s.precision, "recall": s.recall, "f1": s.f1,
                "ap_dsb": s.ap_dsb, "mean_matched_iou": s.mean_matched_iou,
                "missing_predictions": missing, "per_image": per_image,
            })
        );
    } else {
        print_summary(&s);
        if !missing.is_empty() {
            eprintln!(
                "warning: no prediction for {} image(s), scored as empty: {}",
                missing.len(),
                missing.join(", ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_summary(s: &EvalSummary) {
    println!(
        "images {}  true {}  predicted {}  (count ratio {:.3})",
        s.images,
        s.n_true,
        s.n_pred,
        if s.n_true == 0 {
            0.0
        } else {
            s.n_pred as f64 / s.n_true as f64
        }
    );
    println!(
        "IoU 0.5: TP {}  FP {}  FN {}  precision {:.3}  recall {:.3}  F1 {:.3}",
        s.at_50.tp, s.at_50.fp, s.at_50.fn_, s.precision, s.recall, s.f1
    );
    println!(
        "DSB2018 AP (IoU 0.50:0.95) {:.3}  mean matched IoU {:.3}",
        s.ap_dsb, s.mean_matched_iou
    );
}

/// The default configuration as TOML: a comment above every section and key (from
/// [`Config::SECTION_DOCS`]) and, inside its own section, a commented example of every key
/// that is unset or empty by default, so that uncommenting it in place sets it.
fn documented_default_config() -> String {
    let toml = Config::default().to_toml();
    let mut out = String::from(
        "# ipscope configuration (defaults). Pass with --config; command-line flags win.\n\
         # Lines `# key = value` are examples of keys unset by default: uncomment one to set it.\n",
    );
    // The TOML split at its headers; the first part is the top level.
    let mut sections: Vec<(String, Vec<&str>)> = vec![(String::new(), Vec::new())];
    for line in toml.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            sections.push((t.trim_matches(['[', ']']).to_string(), Vec::new()));
        } else if let Some((_, lines)) = sections.last_mut().filter(|_| !t.is_empty()) {
            lines.push(line);
        }
    }
    for (name, lines) in &sections {
        let docs = Config::section_docs(name);
        let doc_of = |key: &str| {
            docs.and_then(|d| d.keys.iter().find(|k| k.0 == key))
                .map(|k| k.1)
        };
        let example_of = |key: &str| {
            docs.and_then(|d| d.examples.iter().find(|e| e.0 == key))
                .map(|e| e.1)
        };
        if !name.is_empty() {
            out.push('\n');
            if let Some(d) = docs.filter(|d| !d.doc.is_empty()) {
                out.push_str(&format!("# {}\n", d.doc));
            }
            out.push_str(&format!("[{name}]\n"));
        }
        let mut printed = Vec::new();
        for line in lines {
            // Continuation lines of a multi-line array start with a space or `]`.
            let key = line
                .split_once(" = ")
                .filter(|_| !line.starts_with([' ', ']']))
                .map(|(k, v)| (k.trim(), v.trim()));
            let Some((key, value)) = key else {
                out.push_str(line);
                out.push('\n');
                continue;
            };
            printed.push(key);
            if let Some(doc) = doc_of(key) {
                out.push_str(&format!("# {doc}\n"));
            }
            // An empty default with an example (`acceptance = []`): the example replaces it,
            // since uncommenting it next to the empty line would set the key twice.
            match example_of(key).filter(|_| value == "[]" || value == "{}") {
                Some(example) => out.push_str(&format!("# {key} = {example}\n")),
                None => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        for (key, example) in docs.map_or(&[][..], |d| d.examples) {
            if !printed.contains(key) {
                if let Some(doc) = doc_of(key) {
                    out.push_str(&format!("# {doc}\n"));
                }
                out.push_str(&format!("# {key} = {example}\n"));
            }
        }
    }
    out
}
