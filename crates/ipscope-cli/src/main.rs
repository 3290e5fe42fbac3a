//! The `ipscope` command line: a thin layer over the facade crate (clap, progress, exit codes).
//!
//! Exit codes: 0 = everything processed, 2 = finished but some fields failed (see
//! Errors.parquet), 1 = nothing could run (bad usage, unreadable plate, output refused).

mod cmd_devices;
mod cmd_measure;
mod cmd_profile;
mod cmd_segment;
mod cmd_stats;
mod cmd_train;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use clap::builder::TypedValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use ipscope::{Config, Event, Format, Pipeline, RunOptions, RunSummary, Shard, Status};

/// The system allocator with huge pages for whole images (see `ipscope_image::memory`).
#[global_allocator]
static ALLOC: ipscope::image::memory::HugeImages = ipscope::image::memory::HugeImages;

#[derive(Parser)]
#[command(
    name = "ipscope",
    version,
    about = "Microscope plate scans of iPS-cell cultures in, CellProfiler-style tables out",
    long_about = None,
    after_help = "Start with `ipscope demo ipscope-demo --run ipscope-demo-out` to see a whole run on a synthetic plate."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show what a plate directory holds (wells, sites, channels, bit depth, problems) without processing it.
    Scan {
        /// Directory holding the plate's images (searched recursively).
        plate_dir: PathBuf,
        /// File-name regex with named groups (Plate, Well or Row+Column, Site, Channel, Z, T) instead of the built-in vendor patterns.
        #[arg(long)]
        pattern: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Segment and measure every field of a plate and write Image, Nuclei, Wells and Errors tables.
    Run(RunArgs),
    /// Write a synthetic iPSC plate with ground truth (the bundled demo); `--run OUT` also runs it.
    Demo {
        /// Where to write the plate.
        #[arg(default_value = "ipscope-demo")]
        dir: PathBuf,
        /// Plate format.
        #[arg(long, default_value_t = 96, value_parser = clap::builder::PossibleValuesParser::new(["96", "384"]).map(|s: String| s.parse::<u32>().unwrap_or(96)))]
        wells: u32,
        /// Fields (sites) per well.
        #[arg(long, default_value_t = 2)]
        sites: u32,
        /// Random seed; the same seed gives the same plate, byte for byte.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Plate id used in the file names (letters, digits and '-').
        #[arg(long, default_value = "DEMO01")]
        plate_id: String,
        /// Field width and height in pixels.
        #[arg(long, default_value_t = 256)]
        size: usize,
        /// After writing the plate, run it into this output directory.
        #[arg(long, value_name = "OUT")]
        run: Option<PathBuf>,
        /// What to generate: ipsc (the iPSC dose-response plate), neuron (two neurite-growth conditions with drawn, exactly known neurite lengths), calcium (a cardiomyocyte calcium time-lapse plate, 37 wells of 40x40-pixel stacks, known beat rate, CTD90 and EC50; ignores --size/--wells/--sites), contraction (a brightfield video plate of beating cardiomyocyte sheets, 24 wells of 48x48-pixel stacks, known beat rate, MUSCLEMOTION kinetics and rate EC50; ignores --size/--wells/--sites), disease (a disease and a control line with a full rescuer, a partial rescuer toxic at high dose, an inert and a toxic compound; --run also profiles and scores rescue) or colonies (iPSC colonies of known class, undifferentiated, differentiating or debris, in DNA, OCT4 and brightfield channels, with a compound series lowering the OCT4-positive fraction with a known EC50; fields are at least 512 px; truth in DIR/truth).
        #[arg(long, default_value = "ipsc", value_parser = ["ipsc", "neuron", "calcium", "contraction", "disease", "colonies"])]
        kind: String,
        /// Replace the tables in an existing output directory (with --run).
        #[arg(long)]
        overwrite: bool,
        /// Worker threads for --run (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        #[command(flatten)]
        output: OutputMode,
    },
    /// Merge the outputs of `run --shard I/N` runs into the tables of one whole-plate run.
    Merge {
        /// Output directories of the shard runs, in any order; shards of several plates give a
        /// campaign tree, OUT/Metadata_Plate=<id>/ per plate plus campaign tables.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Output directory.
        #[arg(short, long)]
        output: PathBuf,
        /// Write a campaign tree even when all inputs are shards of one plate.
        #[arg(long)]
        campaign: bool,
        /// Replace the tables in an existing output directory.
        #[arg(long)]
        overwrite: bool,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Recompute the sha256 of every output and input a run's manifest lists and report what changed.
    ///
    /// Exit codes: 0 everything matches (inputs that no longer exist are listed but allowed),
    /// 3 an output changed, is missing or was added, 4 an input changed, 1 cannot verify.
    Verify {
        /// Output directory of `ipscope run` or `ipscope merge`.
        out_dir: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rewrite a campaign's tables, report and campaign.json from its OUT/Metadata_Plate=<id>/ partitions.
    Campaign {
        /// Campaign output directory.
        out_dir: PathBuf,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    Segment(cmd_segment::Cmd),
    #[command(flatten)]
    Measure(cmd_measure::Cmd),
    #[command(flatten)]
    Stats(cmd_stats::Cmd),
    #[command(flatten)]
    Profile(cmd_profile::Cmd),
    /// List the compute devices: GPU adapters (name, backend, type, limits) and the CPU.
    Devices(cmd_devices::Cmd),
    /// Train a colony classifier on a Colonies table and labelled colonies; prints its cross-validated accuracy and writes model.json for `run --colony-model`.
    Train(cmd_train::Cmd),
}

#[derive(Args, Clone, Copy)]
#[group(multiple = false)]
struct OutputMode {
    /// No progress bar and no summary; errors only.
    #[arg(short, long)]
    quiet: bool,
    /// One JSON object per line for every event (start, field, warning, written, summary) on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Parquet,
    Arrow,
}

#[derive(Args)]
struct RunArgs {
    /// Directory holding the plate's images (searched recursively). Several plates, or a list
    /// file of plate directories (one per line), make a campaign: one output tree partitioned
    /// by plate, OUT/Metadata_Plate=<id>/, plus campaign tables and report.
    #[arg(required = true, value_name = "PLATE_DIR")]
    plate_dir: Vec<PathBuf>,
    /// Campaign: each PLATE_DIR is a directory of plate directories (its subdirectories).
    #[arg(long)]
    campaign: bool,
    /// Output directory for the tables and manifest.json.
    #[arg(short, long)]
    output: PathBuf,
    /// Plate layout CSV: Metadata_Well plus Metadata_* columns (compound, concentration, role).
    #[arg(long)]
    layout: Option<PathBuf>,
    /// Name a channel: ID=NAME, e.g. w1=DNA (DNA/Hoechst/DAPI = nuclear stain; other names are markers); ID=NAME:cells marks the cell-body stain that cells grow into from the nuclei (Cells and Cytoplasm tables, [cells] in --config). Repeatable.
    #[arg(long = "channel", value_name = "ID=NAME")]
    channels: Vec<String>,
    /// Worker threads (default: all cores). Results are the same for any number.
    #[arg(long)]
    threads: Option<usize>,
    /// Where nuclei are segmented: cpu (the reference), gpu (Vulkan, Metal or DX12; an error when there is none, see `ipscope devices`) or auto (a GPU when there is one, else the CPU; says which). Default: `[run] device` of --config, else cpu. The other stages run on the CPU; the manifest records the device.
    #[arg(long, value_name = "DEVICE", value_parser = |s: &str| s.parse::<ipscope::gpu::DeviceChoice>())]
    device: Option<ipscope::gpu::DeviceChoice>,
    /// TOML configuration (see the docs of ipscope::config); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Process only the I-th of N deterministic partitions of the wells; combine with `ipscope merge`.
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
    /// Table file format.
    #[arg(long, value_enum, default_value_t = FormatArg::Parquet)]
    format: FormatArg,
    /// Replace the tables in an existing output directory.
    #[arg(long)]
    overwrite: bool,
    /// Continue an interrupted run in OUT (killed, crashed, Ctrl-C): finished fields are not recomputed.
    #[arg(long)]
    resume: bool,
    /// With --resume: start over when the interrupted run used other parameters or inputs.
    #[arg(long, requires = "resume")]
    force: bool,
    /// File-name regex with named groups (Plate, Well or Row+Column, Site, Channel, Z, T).
    #[arg(long)]
    pattern: Option<String>,
    /// Refuse images with more pixels than this, before decoding them.
    #[arg(long)]
    max_pixels: Option<u64>,
    /// Segment colonies from `nuclei`, `brightfield` (a channel named Brightfield, BF, Phase or TL) or `both` (either method): Colonies table, Parent_Colonies in Nuclei, colony counts and grades per well.
    #[arg(long, value_name = "SOURCE")]
    colonies: Option<String>,
    /// Grade colonies with a classifier trained by `ipscope train` (model.json) instead of the rules of [colony_grades]; needs --colonies.
    #[arg(long, value_name = "MODEL")]
    colony_model: Option<PathBuf>,
    /// Measurement groups for the object tables, comma-separated (see `ipscope schema`): AreaShape, Location, Intensity; default all.
    #[arg(long, value_name = "GROUPS")]
    features: Option<String>,
    /// Correct uneven illumination before segmentation: one function per channel from all fields of the plate (CellProfiler's CorrectIlluminationCalculate; by default the fields' block-minimum background fitted by a quadratic surface), each field divided by it; saved as OUT/illum_<channel>.tif. Same as `enabled = true` under [illumination] in --config, which also sets the channels and the method.
    #[arg(long)]
    illum: bool,
    /// What to measure: nuclei (default), calcium, contraction (see `ipscope run --help`).
    #[arg(long, default_value = "nuclei", value_parser = |s: &str| s.parse::<ipscope::Assay>())]
    assay: ipscope::Assay,
    /// Micrometres per pixel: adds µm columns to length measurements (neurite assay).
    #[arg(long, value_name = "UM")]
    pixel_size: Option<f64>,
    /// Frames per second of a time-lapse whose files do not record the frame interval.
    #[arg(long)]
    fps: Option<f64>,
    /// Calcium: also trace every cell (component of the beating region) and measure each
    /// well's asynchrony (Traces and Beats get the cells as ObjectNumber 1, 2, …).
    #[arg(long)]
    per_cell: bool,
    /// Vehicle compound of the disease tables (layout with a disease and a control line);
    /// default: the compound of the layout's negative wells, else DMSO.
    #[arg(long)]
    vehicle: Option<String>,
    #[command(flatten)]
    output_mode: OutputMode,
}

fn main() -> ExitCode {
    restore_default_sigpipe();
    ipscope::image::memory::keep_freed_memory();
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(1)
        }
    }
}

/// Lets a closed stdout end ipscope quietly, as it ends `cat` or `grep`
/// (`ipscope scan --json | head`), instead of the panic Rust's printing macros give when
/// the runtime's ignored SIGPIPE turns the write into an error. Outputs are written
/// atomically, so a run stopped this way leaves finished work intact for `--resume`.
fn restore_default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in `main`, before any other thread exists; `SIG_DFL` is a
    // valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The line `run` and `segment` print for a device choice other than `cpu`: the device
/// used, and why `auto` passed over an adapter if it did.
fn device_line(device: &str, note: Option<&str>) -> String {
    match note {
        Some(note) => format!("device: {device} ({note})"),
        None => format!("device: {device}"),
    }
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    let argv: Vec<String> = std::env::args().collect();
    match cli.command {
        Command::Verify { out_dir, json } => {
            let r = ipscope::verify(&out_dir)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                for f in r
                    .files
                    .iter()
                    .filter(|f| f.state != ipscope::verify::FileState::Unchanged)
                {
                    println!(
                        "{:<9} {:<6} {}",
                        format!("{:?}", f.state).to_lowercase(),
                        f.kind,
                        f.path.display()
                    );
                }
                let checked = r.files.len();
                println!(
                    "{}: {checked} files checked; outputs {}, inputs {}{}",
                    r.out_dir.display(),
                    if r.outputs_ok() {
                        "unchanged"
                    } else {
                        "CHANGED"
                    },
                    if r.inputs_ok() {
                        "unchanged"
                    } else {
                        "CHANGED"
                    },
                    match r.inputs_missing() {
                        0 => String::new(),
                        n => format!(" ({n} no longer present)"),
                    }
                );
            }
            Ok(if !r.outputs_ok() {
                ExitCode::from(3)
            } else if !r.inputs_ok() {
                ExitCode::from(4)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Segment(c) => cmd_segment::dispatch(c),
        Command::Measure(c) => cmd_measure::dispatch(c),
        Command::Stats(c) => cmd_stats::dispatch(c),
        Command::Profile(c) => cmd_profile::dispatch(c),
        Command::Devices(c) => cmd_devices::dispatch(c),
        Command::Train(c) => cmd_train::dispatch(c),
        Command::Scan {
            plate_dir,
            pattern,
            json,
        } => {
            let report = ipscope::scan(&plate_dir, pattern)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_scan(&report);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Campaign { out_dir, json } => {
            let s = ipscope::campaign::summarize(&out_dir, &argv)?;
            print_campaign(&s, json)?;
            Ok(campaign_exit_code(&s))
        }
        Command::Run(args) => {
            if args.assay != ipscope::Assay::Nuclei
                && run_device(&args)? != ipscope::gpu::DeviceChoice::Cpu
            {
                anyhow::bail!(
                    "--device (or [run] device in --config): the {} assay runs on the CPU only; only the nuclei assay (the default) can use a GPU",
                    args.assay
                );
            }
            if args.assay != ipscope::Assay::Nuclei && args.illum {
                anyhow::bail!(
                    "--illum: the {} assay does not correct illumination; only the nuclei assay (the default) does",
                    args.assay
                );
            }
            match args.assay {
                ipscope::Assay::Nuclei => {}
                ipscope::Assay::Neurite => return run_neurite(&args),
                ipscope::Assay::Spots => return run_spots(&args),
                ipscope::Assay::Calcium | ipscope::Assay::Contraction => {
                    return run_timelapse(&args)
                }
            }
            let options = run_options(&args)?;
            let format = match args.format {
                FormatArg::Parquet => Format::Parquet,
                FormatArg::Arrow => Format::Arrow,
            };
            let campaign = args.campaign
                || args.plate_dir.len() > 1
                || args.plate_dir.iter().any(|p| p.is_file());
            if campaign {
                let plates = ipscope::campaign::plate_dirs(&args.plate_dir, args.campaign)?;
                let s = run_campaign(
                    &plates,
                    options,
                    &args.output,
                    format,
                    args.overwrite,
                    args.output_mode,
                    &argv,
                )?;
                if !args.output_mode.quiet || args.output_mode.json {
                    print_campaign(&s, args.output_mode.json)?;
                }
                return Ok(campaign_exit_code(&s));
            }
            let summary = run(
                options,
                &args.output,
                format,
                args.overwrite,
                args.output_mode,
                &argv,
            )?;
            Ok(exit_code(&summary))
        }
        Command::Demo {
            dir,
            wells,
            sites,
            seed,
            plate_id,
            size,
            run: run_out,
            overwrite,
            threads,
            output,
            kind,
        } => {
            if kind == "neuron" {
                return demo_neuron(&dir, seed, sites, size, run_out, overwrite, threads, output);
            }
            if kind == "calcium" {
                return demo_calcium(&dir, seed, run_out, overwrite, threads, output);
            }
            if kind == "contraction" {
                return demo_contraction(&dir, seed, run_out, overwrite, threads, output);
            }
            if kind == "colonies" {
                let params = ipscope::demo_colonies::ColonyDemoParams {
                    wells,
                    sites,
                    size: size.max(512),
                    seed,
                    plate_id: if plate_id == "DEMO01" {
                        "COLONY1".to_string()
                    } else {
                        plate_id.clone()
                    },
                };
                return demo_colonies(&dir, &params, run_out, overwrite, threads, output, &argv);
            }
            if kind == "disease" {
                let params = ipscope::demo::DemoParams {
                    wells,
                    sites,
                    seed,
                    size,
                    plate_id,
                };
                return cmd_profile::demo_disease(
                    &dir, &params, run_out, overwrite, threads, output, &argv,
                );
            }
            let params = ipscope::demo::DemoParams {
                wells,
                sites,
                seed,
                size,
                plate_id,
            };
            let summary = ipscope::demo::generate(&dir, &params)
                .with_context(|| format!("writing the demo plate to {}", dir.display()))?;
            if !output.quiet && !output.json {
                eprintln!(
                    "wrote demo plate {} to {}: {} wells x {} sites, {} images, {} true nuclei (truth in {})",
                    summary.plate_id,
                    summary.dir.display(),
                    summary.wells,
                    summary.sites,
                    summary.images,
                    summary.nuclei,
                    summary.truth_dir.display()
                );
            }
            let Some(out) = run_out else {
                if !output.quiet && !output.json {
                    let channels: Vec<String> = summary
                        .channels
                        .iter()
                        .map(|(id, name)| format!("--channel {id}={name}"))
                        .collect();
                    eprintln!(
                        "run it with: ipscope run {} -o OUT --layout {} {}",
                        summary.dir.display(),
                        summary.layout.display(),
                        channels.join(" ")
                    );
                }
                return Ok(ExitCode::SUCCESS);
            };
            let mut options = RunOptions::new(&summary.dir);
            options.layout = Some(summary.layout.clone());
            options.channels = summary.channels.clone();
            options.threads = threads;
            let run_summary = run(options, &out, Format::Parquet, overwrite, output, &argv)?;
            if !output.quiet && !output.json && summary.nuclei > 0 {
                println!(
                    "demo truth: {} nuclei; ipscope found {} ({:.1} %); per-well truth in {}",
                    summary.nuclei,
                    run_summary.nuclei,
                    100.0 * run_summary.nuclei as f64 / summary.nuclei as f64,
                    summary.truth_dir.join("wells.csv").display()
                );
            }
            Ok(exit_code(&run_summary))
        }
        Command::Merge {
            inputs,
            output,
            overwrite,
            campaign,
            json,
        } => {
            let mut plates = Vec::new();
            for dir in &inputs {
                let m = ipscope::manifest::Manifest::read(&dir.join("manifest.json"))?;
                if !plates.contains(&m.plate) {
                    plates.push(m.plate);
                }
            }
            if campaign || plates.len() > 1 {
                let s = ipscope::merge::merge_campaign(&inputs, &output, overwrite, &argv)?;
                print_campaign(&s, json)?;
                return Ok(campaign_exit_code(&s));
            }
            let s = ipscope::merge(&inputs, &output, overwrite, &argv)?;
            if json {
                println!("{}", serde_json::to_string(&s)?);
            } else {
                println!(
                    "merged {} shards of plate {}: {} fields ({} failed), {} nuclei",
                    s.shards, s.plate, s.fields, s.fields_failed, s.nuclei
                );
                for p in &s.outputs {
                    println!("  {}", p.display());
                }
            }
            Ok(if s.fields_failed > 0 {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

/// `ipscope demo --kind contraction`.
fn demo_contraction(
    dir: &std::path::Path,
    seed: u64,
    run_out: Option<PathBuf>,
    overwrite: bool,
    threads: Option<usize>,
    output: OutputMode,
) -> Result<ExitCode> {
    let params = ipscope::demo_contraction::ContractionDemoParams {
        seed,
        ..Default::default()
    };
    let s = ipscope::demo_contraction::generate(dir, &params)
        .with_context(|| format!("writing the contraction demo plate to {}", dir.display()))?;
    let demo = TimelapseDemo {
        assay: ipscope::Assay::Contraction,
        events: "contractions",
        wells: s.wells.len(),
        frames: s.frames,
        fps: s.fps,
        truth_csv: &s.truth_csv,
        layout: &s.layout,
        channels: &s.channels,
    };
    demo.report_and_run(dir, run_out, overwrite, threads, output)
}

/// `run --assay calcium` and `--assay contraction`: the time-lapse runner.
fn run_timelapse(args: &RunArgs) -> Result<ExitCode> {
    let [plate_dir] = args.plate_dir.as_slice() else {
        anyhow::bail!("--assay {} runs one plate directory at a time", args.assay);
    };
    let mut opts = ipscope::timelapse_run::TimelapseOptions::new(plate_dir, args.assay);
    opts.channels = args
        .channels
        .iter()
        .map(|c| ipscope::channels::parse_channel_arg(c))
        .collect::<Result<_, _>>()?;
    opts.layout = args.layout.clone();
    opts.pattern = args.pattern.clone();
    opts.fps = args.fps;
    opts.threads = args.threads;
    opts.per_cell = args
        .per_cell
        .then_some(ipscope::timelapse_run::CELL_MIN_AREA);
    opts.resume = args.resume;
    opts.force = args.force;
    opts.command_line = std::env::args().collect();
    if let Some(m) = args.max_pixels {
        opts.max_pixels = m;
    }
    // --config: [input] and [channels] apply as in the nuclei run (flags win); a section
    // asking for what the time-lapse runner does not do is refused, not ignored. ([run]
    // device is checked with --device for every assay.)
    if let Some(path) = &args.config {
        let config = Config::from_file(path)?;
        if config.illumination.enabled {
            anyhow::bail!(
                "{}: [illumination] is enabled, but the {} assay does not correct illumination; only the nuclei assay does",
                path.display(),
                args.assay
            );
        }
        if opts.pattern.is_none() {
            opts.pattern = config.input.pattern;
        }
        if args.max_pixels.is_none() {
            opts.max_pixels = config.input.max_pixels;
        }
        for (id, name) in config.channels {
            if !opts.channels.iter().any(|(i, _)| *i == id) {
                opts.channels.push((id, name));
            }
        }
    }
    let signals = Signals::install();
    opts.stop = Some(signals.any.clone());
    let s = match ipscope::timelapse_run::run(&opts, &args.output, args.overwrite) {
        Ok(s) => s,
        Err(e @ ipscope::Error::Interrupted { .. }) => exit_interrupted(&e, &signals),
        Err(e) => return Err(e.into()),
    };
    if args.output_mode.json {
        println!("{}", serde_json::to_string(&s)?);
    } else if !args.output_mode.quiet {
        println!(
            "plate {} ({} assay): {} time series ({} failed), {} frames, {} beats in {:.1} s",
            s.plate, s.assay, s.series, s.series_failed, s.frames, s.beats, s.seconds
        );
        for p in &s.outputs {
            println!("  {}", p.display());
        }
    }
    Ok(if s.series_failed > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// How an error names a device choice that came from `[run] device` of a configuration
/// file (`--device` names itself).
pub(crate) fn config_device_source(
    choice: ipscope::gpu::DeviceChoice,
    config: &std::path::Path,
) -> String {
    let name = match choice {
        ipscope::gpu::DeviceChoice::Auto => "auto",
        ipscope::gpu::DeviceChoice::Cpu => "cpu",
        ipscope::gpu::DeviceChoice::Gpu => "gpu",
    };
    format!("[run] device = \"{name}\" in {}", config.display())
}

/// `run --device`, else `[run] device` of `--config`, else the CPU.
fn run_device(args: &RunArgs) -> Result<ipscope::gpu::DeviceChoice> {
    Ok(match (args.device, &args.config) {
        (Some(d), _) => d,
        (None, Some(p)) => Config::from_file(p)?.run.device,
        (None, None) => ipscope::gpu::DeviceChoice::Cpu,
    })
}

fn run_options(args: &RunArgs) -> Result<RunOptions> {
    let mut config = match &args.config {
        Some(p) => Config::from_file(p)?,
        None => Config::default(),
    };
    if let Some(p) = &args.pattern {
        config.input.pattern = Some(p.clone());
    }
    if let Some(m) = args.max_pixels {
        config.input.max_pixels = m;
    }
    if let Some(c) = &args.colonies {
        config.colonies_from = Some(c.parse()?);
    }
    if let Some(f) = &args.features {
        let set: ipscope::features::FeatureSet = f.parse()?;
        config.measure.features = set.groups().collect();
    }
    if args.illum {
        config.illumination.enabled = true;
    }
    let mut options = RunOptions::new(args.plate_dir.first().cloned().unwrap_or_default());
    options.layout = args.layout.clone();
    options.channels = args
        .channels
        .iter()
        .map(|c| ipscope::channels::parse_channel_arg(c))
        .collect::<Result<_, _>>()?;
    options.threads = args.threads;
    // The flag wins over `[run] device`; the manifest's parameters record the choice.
    options.device = args.device.unwrap_or(config.run.device);
    if let (None, Some(p)) = (args.device, &args.config) {
        options.device_source = Some(config_device_source(options.device, p));
    }
    config.run.device = options.device;
    options.shard = args.shard.as_deref().map(str::parse::<Shard>).transpose()?;
    options.resume = args.resume;
    options.force = args.force;
    if let Some(v) = &args.vehicle {
        config.disease.vehicle = Some(v.clone());
    }
    if let Some(m) = &args.colony_model {
        if config.colonies_from.is_none() {
            anyhow::bail!(
                "--colony-model {} needs --colonies nuclei|brightfield",
                m.display()
            );
        }
        let model = ipscope::colony_model::ColonyModel::load(m)?;
        options.colony_model = Some(Arc::new(model));
    }
    options.config = config;
    if args.threads == Some(0) {
        anyhow::bail!("--threads must be at least 1");
    }
    Ok(options)
}

/// SIGINT and SIGTERM ask the run to stop taking new fields; the flags say which came.
struct Signals {
    int: Arc<AtomicBool>,
    term: Arc<AtomicBool>,
    any: Arc<AtomicBool>,
}

impl Signals {
    fn install() -> Signals {
        let s = Signals {
            int: Arc::new(AtomicBool::new(false)),
            term: Arc::new(AtomicBool::new(false)),
            any: Arc::new(AtomicBool::new(false)),
        };
        for (sig, flag) in [
            (signal_hook::consts::SIGINT, &s.int),
            (signal_hook::consts::SIGTERM, &s.term),
        ] {
            // A second signal while stopping ends the process at once.
            let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, s.any.clone());
            let _ = signal_hook::flag::register(sig, flag.clone());
            let _ = signal_hook::flag::register(sig, s.any.clone());
        }
        // A file-size limit (ulimit -f) must give a named write error, not kill the process.
        let _ = signal_hook::flag::register(
            signal_hook::consts::SIGXFSZ,
            Arc::new(AtomicBool::new(false)),
        );
        s
    }
    /// 130 after SIGINT, 143 after SIGTERM (the shell's 128 + signal number).
    fn exit_code(&self) -> u8 {
        if self.term.load(Ordering::SeqCst) {
            143
        } else {
            130
        }
    }
}

fn run(
    mut options: RunOptions,
    out: &Path,
    format: Format,
    overwrite: bool,
    mode: OutputMode,
    argv: &[String],
) -> Result<RunSummary> {
    let signals = Signals::install();
    options.stop = Some(signals.any.clone());
    let device = options.device;
    let pipeline = Pipeline::new(options)?;
    if device != ipscope::gpu::DeviceChoice::Cpu && !mode.quiet {
        eprintln!(
            "{}",
            device_line(&pipeline.device(), pipeline.device_note())
        );
    }
    let show_bar = !mode.quiet && !mode.json && std::io::stderr().is_terminal();
    let bar = if show_bar {
        let bar = ProgressBar::new(pipeline.field_count() as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} fields, {msg} (eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    let nuclei = Mutex::new(0u64);
    let on_event = |e: &Event| {
        if mode.json {
            if let Ok(line) = serde_json::to_string(e) {
                println!("{line}");
            }
            return;
        }
        let say = |s: String| match &bar {
            Some(b) => b.println(s),
            None if !mode.quiet => eprintln!("{s}"),
            None => {}
        };
        match e {
            Event::Start {
                plate,
                fields,
                fields_in_plate,
                already_done,
                threads,
                shard,
            } => {
                say(format!(
                    "plate {plate}: {fields} of {fields_in_plate} fields{}{} on {threads} thread(s)",
                    shard
                        .map(|s| format!(" (shard {}/{})", s.index, s.count))
                        .unwrap_or_default(),
                    if *already_done > 0 {
                        format!(", resuming with {already_done} already done")
                    } else {
                        String::new()
                    }
                ));
                if let Some(b) = &bar {
                    b.set_position(*already_done as u64);
                }
            }
            Event::Warning { message } => say(format!("warning: {message}")),
            Event::Field {
                well,
                site,
                status,
                nuclei: n,
                error,
                ..
            } => {
                let total = {
                    let mut t = nuclei.lock().unwrap_or_else(|p| p.into_inner());
                    *t += n;
                    *t
                };
                if *status == Status::Failed {
                    let msg = error.clone().unwrap_or_default();
                    match &bar {
                        Some(b) => b.println(format!("failed: {well} s{site}: {msg}")),
                        None => eprintln!("failed: {well} s{site}: {msg}"),
                    }
                }
                if let Some(b) = &bar {
                    b.set_message(format!("{total} nuclei"));
                    b.inc(1);
                }
            }
            Event::Written { .. } => {}
        }
    };
    let summary = match pipeline.run(out, format, overwrite, argv, &on_event) {
        Ok(s) => s,
        Err(e @ ipscope::Error::Interrupted { .. }) => {
            if let Some(b) = &bar {
                b.abandon();
            }
            eprintln!("{e}");
            std::process::exit(i32::from(signals.exit_code()));
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    print_summary(&summary, mode);
    Ok(summary)
}

/// Runs a campaign with `run`'s signal handling.
fn run_campaign(
    plates: &[PathBuf],
    mut options: RunOptions,
    out: &Path,
    format: Format,
    overwrite: bool,
    mode: OutputMode,
    argv: &[String],
) -> Result<ipscope::campaign::CampaignSummary> {
    let signals = Signals::install();
    options.stop = Some(signals.any.clone());
    let on_event = |e: &Event| {
        if mode.json {
            if let Ok(line) = serde_json::to_string(e) {
                println!("{line}");
            }
            return;
        }
        if mode.quiet {
            return;
        }
        match e {
            Event::Start { plate, fields, .. } => eprintln!("plate {plate}: {fields} fields"),
            Event::Warning { message } => eprintln!("warning: {message}"),
            Event::Field {
                well,
                site,
                status: Status::Failed,
                error,
                ..
            } => eprintln!(
                "failed: {well} s{site}: {}",
                error.clone().unwrap_or_default()
            ),
            _ => {}
        }
    };
    match ipscope::campaign::run_campaign(plates, &options, out, format, overwrite, argv, &on_event)
    {
        Ok(s) => Ok(s),
        Err(e @ ipscope::Error::Interrupted { .. }) => {
            eprintln!("{e}");
            std::process::exit(i32::from(signals.exit_code()));
        }
        Err(e) => Err(e.into()),
    }
}

fn print_campaign(s: &ipscope::campaign::CampaignSummary, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(s)?);
        return Ok(());
    }
    println!(
        "campaign of {} plates: {} fields ({} failed), {} nuclei",
        s.plates.len(),
        s.fields,
        s.fields_failed,
        s.nuclei
    );
    for p in &s.plates {
        println!("  {}", s.out_dir.join(&p.dir).display());
    }
    for p in &s.outputs {
        println!("  {}", p.display());
    }
    Ok(())
}

fn campaign_exit_code(s: &ipscope::campaign::CampaignSummary) -> ExitCode {
    if s.fields_failed > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

/// 0 when every field was processed, 2 when some failed.
fn exit_code(summary: &RunSummary) -> ExitCode {
    if summary.fields_failed > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

fn print_summary(s: &RunSummary, mode: OutputMode) {
    if mode.json {
        let mut v = serde_json::to_value(s).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("event".into(), "summary".into());
        }
        println!("{v}");
        return;
    }
    if mode.quiet {
        return;
    }
    println!(
        "plate {}: {} fields ({} failed), {} nuclei in {:.1} s",
        s.plate, s.fields, s.fields_failed, s.nuclei, s.seconds
    );
    for p in &s.outputs {
        println!("  {}", p.display());
    }
    if s.fields_failed > 0 {
        println!(
            "{} field(s) failed: see {}",
            s.fields_failed,
            s.outputs
                .iter()
                .find(|p| p.file_stem().is_some_and(|n| n == "Errors"))
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
    }
}

fn print_scan(r: &ipscope::ScanReport) {
    println!("plate      {}", r.plate);
    println!("directory  {}", r.dir.display());
    println!("naming     {}", r.naming_scheme);
    println!(
        "layout     {} wells x {} sites = {} fields, {} channels",
        r.wells,
        r.sites,
        r.fields,
        r.channels.len()
    );
    for c in &r.channels {
        match &c.error {
            Some(e) => println!(
                "  channel {:<6} {} files; first file unreadable: {e}",
                c.id, c.files
            ),
            None => println!(
                "  channel {:<6} {} files, {} {}x{} {} ({} bits){}{}",
                c.id,
                c.files,
                c.format.as_deref().unwrap_or("?"),
                c.width.unwrap_or(0),
                c.height.unwrap_or(0),
                c.sample_type.as_deref().unwrap_or("?"),
                c.bits_per_sample.unwrap_or(0),
                c.ome_name
                    .as_ref()
                    .map(|n| format!(", OME name {n}"))
                    .unwrap_or_default(),
                c.pixel_size_um
                    .map(|(x, y)| format!(", pixel {x}x{y} µm"))
                    .unwrap_or_default()
            ),
        }
    }
    if r.missing_fields.is_empty() {
        println!("missing    none");
    } else {
        println!("missing    {} well(s) lack sites:", r.missing_fields.len());
        for m in &r.missing_fields {
            println!("  {m}");
        }
    }
    if r.problems.is_empty() {
        println!("problems   none");
    } else {
        println!("problems   {}", r.problems.len());
        for p in &r.problems {
            println!("  {p}");
        }
    }
    if !r.unmatched_files.is_empty() {
        println!(
            "ignored    {} file(s) matching no pattern, e.g. {}",
            r.unmatched_files.len(),
            r.unmatched_files[0].display()
        );
    }
}

/// Ends a run stopped by SIGINT/SIGTERM: the message (finished fields are kept for
/// `--resume`) and the shell's exit code for the signal.
fn exit_interrupted(e: &ipscope::Error, signals: &Signals) -> ! {
    eprintln!("{e}");
    std::process::exit(i32::from(signals.exit_code()));
}

/// `ipscope run --assay spots`.
fn run_spots(args: &RunArgs) -> Result<ExitCode> {
    let mut opts = neurite_options(args, "spots")?;
    let signals = Signals::install();
    opts.stop = Some(signals.any.clone());
    let s = match ipscope::spots_run::run_spots(&opts, &Default::default()) {
        Ok(s) => s,
        Err(e @ ipscope::Error::Interrupted { .. }) => exit_interrupted(&e, &signals),
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context(format!("spots assay on {}", opts.plate_dir.display())))
        }
    };
    if args.output_mode.json {
        println!(
            "{}",
            serde_json::json!({"event": "summary", "assay": "spots", "fields": s.fields,
                "fields_failed": s.fields_failed, "cells": s.cells, "spots": s.spots})
        );
    } else if !args.output_mode.quiet {
        eprintln!(
            "spots: {} fields ({} failed), {} spots in {} cells; tables in {}",
            s.fields,
            s.fields_failed,
            s.spots,
            s.cells,
            args.output.display()
        );
    }
    Ok(if s.fields_failed > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// Options of the still-image assays (neurite, spots) from `run`'s flags.
fn neurite_options(args: &RunArgs, assay: &str) -> Result<ipscope::neurite_run::NeuriteRunOptions> {
    let [plate_dir] = args.plate_dir.as_slice() else {
        anyhow::bail!("--assay {assay} runs one plate at a time; give one PLATE_DIR");
    };
    let mut opts = ipscope::neurite_run::NeuriteRunOptions::new(plate_dir, &args.output);
    opts.channels = args
        .channels
        .iter()
        .map(|c| ipscope::channels::parse_channel_arg(c))
        .collect::<std::result::Result<_, _>>()?;
    opts.layout = args.layout.clone();
    opts.pattern = args.pattern.clone();
    opts.overwrite = args.overwrite;
    opts.pixel_size_um = args.pixel_size;
    opts.threads = args.threads;
    opts.resume = args.resume;
    opts.force = args.force;
    opts.command_line = std::env::args().collect();
    if let Some(path) = &args.config {
        let config = ipscope::config::Config::from_file(path)?;
        if config.illumination.enabled {
            anyhow::bail!(
                "{}: [illumination] is enabled, but the {assay} assay does not correct illumination; only the nuclei assay does",
                path.display()
            );
        }
        opts.neurite.ridge_filter = config.neurite.ridge;
        // The nuclei these assays grow cells from are segmented as in the nuclei assay.
        opts.nuclei = config.nuclei;
    }
    opts.format = match args.format {
        FormatArg::Parquet => Format::Parquet,
        FormatArg::Arrow => Format::Arrow,
    };
    Ok(opts)
}

/// `ipscope run --assay neurite`.
fn run_neurite(args: &RunArgs) -> Result<ExitCode> {
    let mut opts = neurite_options(args, "neurite")?;
    let signals = Signals::install();
    opts.stop = Some(signals.any.clone());
    let s = match ipscope::neurite_run::run_neurite(&opts) {
        Ok(s) => s,
        Err(e @ ipscope::Error::Interrupted { .. }) => exit_interrupted(&e, &signals),
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context(format!("neurite assay on {}", opts.plate_dir.display())))
        }
    };
    if args.output_mode.json {
        println!(
            "{}",
            serde_json::json!({"event": "summary", "assay": "neurite", "fields": s.fields,
                "fields_failed": s.fields_failed, "neurons": s.neurons, "wells": s.wells})
        );
    } else if !args.output_mode.quiet {
        eprintln!(
            "neurite: {} fields ({} failed), {} neurons in {} wells; tables in {}",
            s.fields,
            s.fields_failed,
            s.neurons,
            s.wells,
            args.output.display()
        );
    }
    Ok(if s.fields_failed > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// `ipscope demo --kind calcium`.
fn demo_calcium(
    dir: &std::path::Path,
    seed: u64,
    run_out: Option<PathBuf>,
    overwrite: bool,
    threads: Option<usize>,
    output: OutputMode,
) -> Result<ExitCode> {
    let params = ipscope::demo_calcium::CalciumDemoParams {
        seed,
        ..Default::default()
    };
    let s = ipscope::demo_calcium::generate(dir, &params)
        .with_context(|| format!("writing the calcium demo plate to {}", dir.display()))?;
    let demo = TimelapseDemo {
        assay: ipscope::Assay::Calcium,
        events: "beats",
        wells: s.wells.len(),
        frames: s.frames,
        fps: s.fps,
        truth_csv: &s.truth_csv,
        layout: &s.layout,
        channels: &s.channels,
    };
    demo.report_and_run(dir, run_out, overwrite, threads, output)
}

/// A generated time-lapse demo plate (calcium or contraction), as the demo commands report
/// and optionally run it.
struct TimelapseDemo<'a> {
    assay: ipscope::Assay,
    /// What the run counts ("beats", "contractions").
    events: &'static str,
    wells: usize,
    frames: usize,
    fps: f64,
    truth_csv: &'a std::path::Path,
    layout: &'a std::path::Path,
    channels: &'a [(String, String)],
}

impl TimelapseDemo<'_> {
    fn report_and_run(
        &self,
        dir: &std::path::Path,
        run_out: Option<PathBuf>,
        overwrite: bool,
        threads: Option<usize>,
        output: OutputMode,
    ) -> Result<ExitCode> {
        let name = self.assay.name();
        if !output.quiet && !output.json {
            eprintln!(
                "wrote {name} demo plate to {}: {} wells, {} frames at {} fps (truth in {})",
                dir.display(),
                self.wells,
                self.frames,
                self.fps,
                self.truth_csv.display()
            );
        }
        let Some(out) = run_out else {
            if !output.quiet && !output.json {
                let channel: Vec<String> = self
                    .channels
                    .iter()
                    .map(|(id, n)| format!("--channel {id}={n}"))
                    .collect();
                eprintln!(
                    "run it with: ipscope run {} -o OUT --assay {name} --layout {} {}",
                    dir.display(),
                    self.layout.display(),
                    channel.join(" ")
                );
            }
            return Ok(ExitCode::SUCCESS);
        };
        let mut opts = ipscope::timelapse_run::TimelapseOptions::new(dir, self.assay);
        opts.channels = self.channels.to_vec();
        opts.layout = Some(self.layout.to_path_buf());
        opts.threads = threads;
        // Ctrl-C/SIGTERM stop it as they stop `run` (series in progress saved, 130/143).
        let signals = Signals::install();
        opts.stop = Some(signals.any.clone());
        let r = match ipscope::timelapse_run::run(&opts, &out, overwrite) {
            Ok(r) => r,
            Err(e @ ipscope::Error::Interrupted { .. }) => exit_interrupted(&e, &signals),
            Err(e) => {
                return Err(
                    anyhow::Error::new(e).context(format!("{name} assay on {}", dir.display()))
                )
            }
        };
        if output.json {
            println!("{}", serde_json::to_string(&r)?);
        } else if !output.quiet {
            println!(
                "plate {}: {} time series ({} failed), {} {} in {:.1} s",
                r.plate, r.series, r.series_failed, r.beats, self.events, r.seconds
            );
            for p in &r.outputs {
                println!("  {}", p.display());
            }
        }
        Ok(if r.series_failed > 0 {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        })
    }
}

/// `ipscope demo --kind colonies`.
#[allow(clippy::too_many_arguments)]
fn demo_colonies(
    dir: &std::path::Path,
    params: &ipscope::demo_colonies::ColonyDemoParams,
    run_out: Option<PathBuf>,
    overwrite: bool,
    threads: Option<usize>,
    output: OutputMode,
    argv: &[String],
) -> Result<ExitCode> {
    let s = ipscope::demo_colonies::generate(dir, params)
        .with_context(|| format!("writing the colony demo plate to {}", dir.display()))?;
    let channels: Vec<(String, String)> = ipscope::demo_colonies::CHANNELS
        .iter()
        .map(|(id, name)| (id.to_string(), name.to_string()))
        .collect();
    if !output.quiet && !output.json {
        eprintln!(
            "wrote colony demo plate to {}: {} wells, {} images, {} drawn colonies, OCT4 EC50 {} uM (truth in {})",
            dir.display(),
            s.wells,
            s.images,
            s.colonies,
            ipscope::demo_colonies::EC50,
            dir.join("truth").display()
        );
    }
    let Some(out) = run_out else {
        if !output.quiet && !output.json {
            let flags: Vec<String> = channels
                .iter()
                .map(|(id, name)| format!("--channel {id}={name}"))
                .collect();
            eprintln!(
                "run it with: ipscope run {} -o OUT --colonies nuclei --layout {} {}",
                dir.display(),
                s.layout.display(),
                flags.join(" ")
            );
        }
        return Ok(ExitCode::SUCCESS);
    };
    let mut options = RunOptions::new(dir);
    options.layout = Some(s.layout.clone());
    options.channels = channels;
    options.threads = threads;
    options.config.colonies_from = Some(ipscope::colony_run::ColonySource::Nuclei);
    let summary = run(options, &out, Format::Parquet, overwrite, output, argv)?;
    Ok(exit_code(&summary))
}

#[allow(clippy::too_many_arguments)]
fn demo_neuron(
    dir: &std::path::Path,
    seed: u64,
    sites: u32,
    size: usize,
    run_out: Option<PathBuf>,
    overwrite: bool,
    threads: Option<usize>,
    output: OutputMode,
) -> Result<ExitCode> {
    let params = ipscope::demo_neuron::NeuronDemoParams {
        sites,
        size,
        seed,
        ..Default::default()
    };
    let s = ipscope::demo_neuron::generate(dir, &params)
        .with_context(|| format!("writing the neuron demo plate to {}", dir.display()))?;
    if !output.quiet && !output.json {
        eprintln!(
            "wrote neuron demo plate to {}: {} wells (control, growth), {} images, {} drawn neurons (truth in {})",
            dir.display(),
            s.wells.len(),
            s.images,
            s.neurons,
            dir.join("truth").join("neurons.csv").display()
        );
    }
    let Some(out) = run_out else {
        return Ok(ExitCode::SUCCESS);
    };
    let mut opts = ipscope::neurite_run::NeuriteRunOptions::new(dir, &out);
    opts.channels = ipscope::demo_neuron::CHANNELS
        .iter()
        .map(|(id, name)| (id.to_string(), name.to_string()))
        .collect();
    opts.layout = Some(dir.join("layout.csv"));
    opts.overwrite = overwrite;
    opts.threads = threads;
    let r = ipscope::neurite_run::run_neurite(&opts)
        .with_context(|| format!("neurite assay on {}", dir.display()))?;
    if !output.quiet && !output.json {
        eprintln!(
            "neurite: {} fields ({} failed), {} neurons found ({} drawn); tables in {}",
            r.fields,
            r.fields_failed,
            r.neurons,
            s.neurons,
            out.display()
        );
    }
    Ok(if r.fields_failed > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
