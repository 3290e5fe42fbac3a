//! `ipscope measure` (measure masks that came from anywhere) and `ipscope schema` (every
//! measurement column with its type, unit and definition).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use ipscope::features::{
    add_distribution_columns, add_object_columns, column_docs, measure_objects, FeatureSet,
};
use ipscope::image::{DynImage, Image, Labels};
use ipscope::io::{read_image, ReadOptions};
use ipscope::table::{write_table, Format, TableBuilder};

#[derive(Subcommand)]
pub enum Cmd {
    /// Measure the objects of a label image (Cellpose, StarDist, manual, ...) in intensity
    /// images; writes one row per object with CellProfiler's column names.
    Measure {
        /// Intensity image (TIFF/PNG); its channel is named by --name (default: file stem).
        image: PathBuf,
        /// Label image: integer pixels, 0 = background; ObjectNumber = label value.
        #[arg(long)]
        labels: PathBuf,
        /// Object name used as column prefix (Nuclei, Cells, ...).
        #[arg(long, default_value = "Nuclei")]
        object: String,
        /// Channel name of IMAGE in column suffixes.
        #[arg(long)]
        name: Option<String>,
        /// More channels as NAME=IMAGE (repeatable).
        #[arg(long = "channel", value_name = "NAME=IMAGE")]
        channels: Vec<String>,
        /// Feature groups, comma-separated (AreaShape, Location, Intensity, Texture, Zernike, Correlation, Granularity, RadialDistribution, Neighbors; `default` = the first three, `all`).
        #[arg(long, default_value = "default")]
        features: String,
        /// Neighbors group: objects with a pixel within this many pixels are neighbours
        /// (CellProfiler's "Within a specified distance"); the columns end in `_<N>`.
        #[arg(long, value_name = "N", default_value_t = ipscope::core::ops::measure::DEFAULT_NEIGHBOR_DISTANCE)]
        neighbors_distance: usize,
        /// Output table (.parquet or .arrow).
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Print every measurement column of an object table with type, unit and definition.
    Schema {
        /// Object name used as column prefix.
        #[arg(long, default_value = "Nuclei")]
        object: String,
        /// Channel names (repeatable); default shows the pattern with `<channel>`.
        #[arg(long = "channel", value_name = "NAME")]
        channels: Vec<String>,
        /// Feature groups, comma-separated (AreaShape, Location, Intensity, Texture, Zernike, Correlation, Granularity, RadialDistribution, Neighbors; `default` = the first three, `all`).
        #[arg(long, default_value = "default")]
        features: String,
        /// Distance of the Neighbors group (the suffix of its columns).
        #[arg(long, value_name = "N", default_value_t = ipscope::core::ops::measure::DEFAULT_NEIGHBOR_DISTANCE)]
        neighbors_distance: usize,
        /// One JSON object per column instead of a text table.
        #[arg(long)]
        json: bool,
    },
}

pub fn dispatch(cmd: Cmd) -> Result<ExitCode> {
    match cmd {
        Cmd::Measure {
            image,
            labels,
            object,
            name,
            channels,
            features,
            neighbors_distance,
            output,
        } => {
            let set = feature_set(&features, neighbors_distance)?;
            measure(&image, &labels, &object, name, &channels, &set, &output)
        }
        Cmd::Schema {
            object,
            channels,
            features,
            neighbors_distance,
            json,
        } => schema(
            &object,
            channels,
            &feature_set(&features, neighbors_distance)?,
            json,
        ),
    }
}

/// `--features` with `--neighbors-distance`.
fn feature_set(features: &str, neighbors_distance: usize) -> Result<FeatureSet> {
    let set: FeatureSet = features.parse()?;
    set.with_neighbors_distance(neighbors_distance)
        .context("--neighbors-distance")
}

fn valid_name(kind: &str, s: &str) -> Result<()> {
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        bail!("{kind} {s:?}: use letters, digits and _ only (it becomes part of column names)");
    }
    Ok(())
}

fn to_labels(img: DynImage, path: &Path) -> Result<Labels> {
    let image: Image<u32> = match img {
        DynImage::U8(i) => i.map(u32::from),
        DynImage::U16(i) => i.map(u32::from),
        DynImage::U32(i) => i,
        DynImage::F32(_) => bail!(
            "{}: labels must be an integer image (8, 16 or 32 bit), not float",
            path.display()
        ),
    };
    Ok(Labels::from_image(image))
}

fn measure(
    image: &Path,
    labels_path: &Path,
    object: &str,
    name: Option<String>,
    extra: &[String],
    set: &FeatureSet,
    output: &Path,
) -> Result<ExitCode> {
    valid_name("--object", object)?;
    let format = Format::from_path(output).with_context(|| {
        format!(
            "{}: output must end in .parquet or .arrow",
            output.display()
        )
    })?;
    let opts = ReadOptions::default();
    let first_name = match name {
        Some(n) => n,
        None => image
            .file_stem()
            .map(|s| {
                s.to_string_lossy()
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect()
            })
            .unwrap_or_else(|| "Image".into()),
    };
    let mut names = vec![first_name];
    let mut paths = vec![image.to_path_buf()];
    for spec in extra {
        let Some((n, p)) = spec.split_once('=') else {
            bail!("--channel {spec:?}: expected NAME=IMAGE");
        };
        names.push(n.trim().to_string());
        paths.push(PathBuf::from(p.trim()));
    }
    for n in &names {
        valid_name("channel name", n)?;
    }
    for (i, n) in names.iter().enumerate() {
        if names[..i].iter().any(|m| m.eq_ignore_ascii_case(n)) {
            bail!("channel name {n:?} given twice");
        }
    }
    let labels = to_labels(
        read_image(labels_path, 0, &opts)
            .with_context(|| format!("reading labels {}", labels_path.display()))?,
        labels_path,
    )?;
    let mut images = Vec::with_capacity(paths.len());
    for p in &paths {
        let im =
            read_image(p, 0, &opts).with_context(|| format!("reading image {}", p.display()))?;
        if (im.width(), im.height()) != (labels.width(), labels.height()) {
            bail!(
                "{} is {}x{} but the labels {} are {}x{}",
                p.display(),
                im.width(),
                im.height(),
                labels_path.display(),
                labels.width(),
                labels.height()
            );
        }
        images.push(im);
    }
    let refs: Vec<&DynImage> = images.iter().collect();
    let m = measure_objects(&labels, &refs, set)?;
    let keep: Vec<usize> = (0..m.shapes.len())
        .filter(|&i| m.shapes[i].area > 0)
        .collect();
    let mut b = TableBuilder::new();
    b.u32("ImageNumber", vec![1; keep.len()])
        .doc("Image number (always 1 for `ipscope measure`)")
        .u32(
            "ObjectNumber",
            keep.iter().map(|&i| m.shapes[i].label).collect(),
        )
        .doc("Label value of the object in the label image");
    add_object_columns(
        &mut b,
        object,
        &names,
        set,
        &m.shapes,
        &m.intensities,
        &keep,
    );
    add_distribution_columns(&mut b, object, &names, set, &m, &keep);
    let batch = b.finish()?;
    write_table(output, batch.schema(), &[batch], format)
        .with_context(|| format!("writing {}", output.display()))?;
    eprintln!("{} objects measured -> {}", keep.len(), output.display());
    Ok(ExitCode::SUCCESS)
}

fn schema(object: &str, channels: Vec<String>, set: &FeatureSet, json: bool) -> Result<ExitCode> {
    let channels = if channels.is_empty() {
        vec!["<channel>".to_string()]
    } else {
        channels
    };
    let docs = column_docs(object, &channels, set);
    if json {
        for d in &docs {
            println!("{}", serde_json::to_string(d)?);
        }
    } else {
        println!("{:<56} {:<8} {:<30} definition", "column", "type", "unit");
        for d in &docs {
            println!(
                "{:<56} {:<8} {:<30} {}",
                d.name, d.data_type, d.unit, d.definition
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
