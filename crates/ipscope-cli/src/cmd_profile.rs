//! `ipscope profile` (per-well profiles as pycytominer makes them) and `ipscope rescue`
//! (disease phenotype, rescue and toxicity scoring, compound ranking).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use ipscope::stats::disease::ProfileOptions;
use ipscope::stats::input::read_any;
use ipscope::stats::profile::{Aggregation, NormMethod, Profiles, SelectOp, OBJECT_COUNT};
use ipscope::stats::rescue::{compounds_table, phenotype_table, score, wells_table, RescueOptions};
use ipscope::table::arrow_array::RecordBatch;
use ipscope::table::Format;

#[derive(Args)]
pub struct ProfileArgs {
    /// A run's output directory (reads Nuclei.parquet, and Wells.parquet for cell counts).
    run_dir: PathBuf,
    /// Output table (.parquet or .arrow).
    #[arg(short, long)]
    output: PathBuf,
    /// Per-object table inside RUN_DIR (or a path).
    #[arg(long, default_value = "Nuclei.parquet")]
    objects: PathBuf,
    /// Aggregation: median or mean (pycytominer.aggregate).
    #[arg(long, default_value = "median", value_parser = ["median", "mean"])]
    operation: String,
    /// Normalisation: none, standardize, robustize, mad_robustize (pycytominer.normalize).
    #[arg(long, default_value = "mad_robustize", value_parser = ["none", "standardize", "robustize", "mad_robustize"])]
    normalize: String,
    /// Vehicle compound: its wells are the normalisation reference.
    #[arg(long, default_value = "DMSO")]
    vehicle: String,
    /// Compound column.
    #[arg(long, default_value = "Metadata_Compound")]
    compound_col: String,
    /// Only this line's vehicle wells are the reference (e.g. the disease line).
    #[arg(long)]
    reference_line: Option<String>,
    /// Cell-line / genotype column.
    #[arg(long, default_value = "Metadata_CellLine")]
    line_col: String,
    /// Feature selection steps, comma-separated, run in order: drop_na_columns,
    /// variance_threshold, correlation_threshold, blocklist (pycytominer defaults).
    #[arg(long, value_delimiter = ',')]
    feature_select: Vec<String>,
}

#[derive(Args)]
pub struct RescueArgs {
    /// Well profiles (from `ipscope profile`; CSV, Parquet or Arrow).
    profiles: PathBuf,
    /// Disease line.
    #[arg(long)]
    disease: String,
    /// Control (healthy or corrected) line.
    #[arg(long)]
    control: String,
    /// Output directory for Phenotype.parquet, Compounds.parquet and Rescue.parquet.
    #[arg(short, long)]
    output: PathBuf,
    /// Readout feature(s); default: the feature with the best Z′.
    #[arg(long = "readout")]
    readouts: Vec<String>,
    /// Cell-line / genotype column.
    #[arg(long, default_value = "Metadata_CellLine")]
    line_col: String,
    /// Compound column.
    #[arg(long, default_value = "Metadata_Compound")]
    compound_col: String,
    /// Concentration column.
    #[arg(long, default_value = "Metadata_Concentration")]
    concentration_col: String,
    /// Vehicle compound.
    #[arg(long, default_value = "DMSO")]
    vehicle: String,
    /// Viable-count column; `none` turns toxicity scoring off.
    #[arg(long, default_value = OBJECT_COUNT)]
    count_col: String,
    /// A dose is cytotoxic below this fraction of the disease vehicle's cell count.
    #[arg(long, default_value_t = 0.7)]
    cytotoxic_below: f64,
    /// % rescue a hit reaches in every replicate at one non-toxic dose.
    #[arg(long, default_value_t = 50.0)]
    hit_rescue: f64,
    /// Whiten the multivariate space with the Ledoit–Wolf covariance of the vehicle wells.
    #[arg(long)]
    whiten: bool,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Per-well profiles from a run's per-object table: aggregate, normalise per plate, select features (as pycytominer).
    Profile(ProfileArgs),
    /// Disease-vs-control phenotype, % rescue, on/off-target scores, toxicity and a ranked compound table.
    Rescue(RescueArgs),
}

pub fn dispatch(cmd: Cmd) -> Result<ExitCode> {
    match cmd {
        Cmd::Profile(a) => {
            let p = build_profiles(&a)?;
            write_batch(&a.output, &p.to_batch()?)?;
            println!(
                "{}: {} wells × {} features",
                a.output.display(),
                p.n_rows(),
                p.features.len()
            );
        }
        Cmd::Rescue(a) => rescue(&a)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn build_profiles(a: &ProfileArgs) -> Result<Profiles> {
    let objects_path = a.run_dir.join(&a.objects);
    let batch =
        read_any(&objects_path).with_context(|| format!("reading {}", objects_path.display()))?;
    let wells_path = a.run_dir.join("Wells.parquet");
    let wells = if wells_path.exists() {
        Some(read_any(&wells_path).with_context(|| format!("reading {}", wells_path.display()))?)
    } else {
        None
    };
    let opts = ProfileOptions {
        aggregation: if a.operation == "mean" {
            Aggregation::Mean
        } else {
            Aggregation::Median
        },
        normalize: match a.normalize.as_str() {
            "none" => None,
            m => Some(m.parse::<NormMethod>()?),
        },
        vehicle: a.vehicle.clone(),
        compound_col: a.compound_col.clone(),
        reference_line: a.reference_line.clone(),
        line_col: a.line_col.clone(),
        feature_select: a
            .feature_select
            .iter()
            .map(|s| SelectOp::by_name(s.trim()))
            .collect::<Result<_, _>>()?,
        drop_positional: false,
    };
    let built = ipscope::stats::disease::build_profiles(&batch, wells.as_ref(), &opts)
        .with_context(|| format!("{}", objects_path.display()))?;
    for (f, step) in &built.dropped {
        eprintln!("feature_select: dropped {f} ({step})");
    }
    Ok(built.profiles)
}

fn rescue(a: &RescueArgs) -> Result<()> {
    let batch =
        read_any(&a.profiles).with_context(|| format!("reading {}", a.profiles.display()))?;
    let profiles =
        Profiles::from_batch(&batch, None).with_context(|| format!("{}", a.profiles.display()))?;
    let opts = RescueOptions {
        line_col: a.line_col.clone(),
        disease: a.disease.clone(),
        control: a.control.clone(),
        compound_col: a.compound_col.clone(),
        concentration_col: a.concentration_col.clone(),
        vehicle: a.vehicle.clone(),
        readouts: a.readouts.clone(),
        count_col: (a.count_col != "none").then(|| a.count_col.clone()),
        cytotoxic_below: a.cytotoxic_below,
        hit_rescue: a.hit_rescue,
        whiten: a.whiten,
    };
    let r = score(&profiles, &opts).with_context(|| format!("{}", a.profiles.display()))?;
    std::fs::create_dir_all(&a.output)
        .with_context(|| format!("creating {}", a.output.display()))?;
    write_batch(
        &a.output.join("Phenotype.parquet"),
        &phenotype_table(&r.phenotype)?,
    )?;
    write_batch(
        &a.output.join("Compounds.parquet"),
        &compounds_table(&r.compounds, &r.hit_rule)?,
    )?;
    write_batch(
        &a.output.join("Rescue.parquet"),
        &wells_table(&profiles, &r.wells)?,
    )?;
    if let Some(top) = r.phenotype.iter().find(|p| p.rank == 1) {
        println!(
            "phenotype: {} (Z′ {:.2}, Cohen's d {:.2}, SSMD {:.2})",
            top.feature, top.z_prime, top.cohens_d, top.ssmd
        );
    }
    println!("{}", r.hit_rule);
    println!(
        "{:<4} {:<20} {:<24} {:>10} {:>9} {:>10} {:>6} {:>4}",
        "rank", "compound", "readout", "EC50", "max %", "TC50", "toxic", "hit"
    );
    for c in &r.compounds {
        println!(
            "{:<4} {:<20} {:<24} {:>10} {:>9.1} {:>10} {:>6} {:>4}",
            c.rank,
            c.compound,
            c.readout,
            c.rescue_fit
                .ec50_value()
                .map_or("-".to_string(), |v| format!("{v:.4}")),
            c.max_rescue,
            if c.tc50.is_nan() {
                "-".to_string()
            } else {
                format!("{:.4}", c.tc50)
            },
            if c.cytotoxic { "yes" } else { "no" },
            if c.hit { "yes" } else { "no" },
        );
    }
    println!(
        "wrote Phenotype.parquet, Compounds.parquet, Rescue.parquet in {}",
        a.output.display()
    );
    Ok(())
}

fn write_batch(path: &Path, batch: &RecordBatch) -> Result<()> {
    let Some(format) = Format::from_path(path) else {
        bail!(
            "{}: write .parquet or .arrow (the extension picks the format)",
            path.display()
        );
    };
    ipscope::table::write_table(path, batch.schema(), std::slice::from_ref(batch), format)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// `ipscope demo --kind disease`: writes the disease-model plate; with `--run OUT` also runs
/// it (the run writes Profiles, Phenotype, Rescue, Compounds and Similarity tables, as every
/// run whose layout names a disease and a control line).
#[allow(clippy::too_many_arguments)]
pub(crate) fn demo_disease(
    dir: &Path,
    params: &ipscope::demo::DemoParams,
    run_out: Option<PathBuf>,
    overwrite: bool,
    threads: Option<usize>,
    output: crate::OutputMode,
    argv: &[String],
) -> Result<ExitCode> {
    let s = ipscope::demo_disease::generate(dir, params)
        .with_context(|| format!("writing the disease demo plate to {}", dir.display()))?;
    let channels: Vec<(String, String)> = ipscope::demo::CHANNELS
        .iter()
        .map(|(id, name)| (id.to_string(), name.to_string()))
        .collect();
    if !output.quiet && !output.json {
        eprintln!(
            "wrote disease demo plate to {}: 96 wells (disease and control lines, RESCUER, PARTIAL, INERT, TOXIC), {} images, {} nuclei (truth in {})",
            dir.display(),
            s.images,
            s.nuclei,
            dir.join("truth/disease_wells.csv").display()
        );
    }
    let Some(out) = run_out else {
        return Ok(ExitCode::SUCCESS);
    };
    let mut options = ipscope::RunOptions::new(dir);
    options.layout = Some(s.layout.clone());
    options.channels = channels;
    options.threads = threads;
    let summary = crate::run(
        options,
        &out,
        ipscope::Format::Parquet,
        overwrite,
        output,
        argv,
    )?;
    Ok(crate::exit_code(&summary))
}
