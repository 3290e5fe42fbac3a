//! `ipscope merge`: shard outputs (`run --shard I/N`) into the tables of one unsharded run.
//!
//! ImageNumbers are assigned over the whole plate before sharding, so merging is
//! concatenation plus a sort; per-well tables are recomputed from the merged tables by the
//! same code a run uses.

use std::path::{Path, PathBuf};

use ipscope_table::{Format, RecordBatch};
use serde::Serialize;

use crate::manifest::{InputRecord, Manifest, OutputRecord};
use crate::pipeline::{errors_batch, prepare_out_dir, write_wells, FailureRecord};
use crate::{Error, Result};

/// What a merge wrote.
#[derive(Debug, Clone, Serialize)]
pub struct MergeSummary {
    pub plate: String,
    pub shards: usize,
    pub fields: usize,
    pub fields_failed: usize,
    pub nuclei: u64,
    pub out_dir: PathBuf,
    pub outputs: Vec<PathBuf>,
}

fn read_all(path: &Path) -> Result<Vec<RecordBatch>> {
    Ok(ipscope_table::read_table(path)?.1)
}

fn failures_of(batch: &RecordBatch) -> Result<Vec<FailureRecord>> {
    use ipscope_table::{column_str, column_u32};
    let (img, well, site) = (
        column_u32(batch, "ImageNumber")?,
        column_str(batch, "Metadata_Well")?,
        column_u32(batch, "Metadata_Site")?,
    );
    let (file, stage, msg) = (
        column_str(batch, "File")?,
        column_str(batch, "Stage")?,
        column_str(batch, "Message")?,
    );
    Ok((0..batch.num_rows())
        .map(|i| FailureRecord {
            image_number: img.value(i),
            well: well.value(i).to_string(),
            site: site.value(i),
            file: file.value(i).to_string(),
            stage: stage.value(i).to_string(),
            message: msg.value(i).to_string(),
        })
        .collect())
}

/// The illumination functions (`illum_<channel>.tif`, see [`crate::illum_run`]) the shards
/// saved, by file name. Every shard computes them over the whole plate, so they must be the
/// same bytes in every shard; a shard that lacks one another has, or holds other bytes, is
/// refused, naming both files.
fn illumination_functions(shards: &[(Manifest, PathBuf)]) -> Result<Vec<(String, Vec<u8>)>> {
    let read = |path: &Path| match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    };
    let Some((first, first_dir)) = shards.first() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for c in &first.channels {
        let name = crate::illum_run::file_name(c);
        let first_path = first_dir.join(&name);
        let kept = read(&first_path)?;
        for (_, dir) in &shards[1..] {
            let path = dir.join(&name);
            let (with, without) = match (&kept, read(&path)?) {
                (Some(a), Some(b)) if *a != b => {
                    return Err(Error::Invalid(format!(
                        "merge: {} and {} differ; every shard of one run computes the same illumination function over the whole plate, so these are not shards of one run, or a file was changed",
                        first_path.display(),
                        path.display()
                    )))
                }
                (Some(_), Some(_)) | (None, None) => continue,
                (Some(_), None) => (&first_path, &path),
                (None, Some(_)) => (&path, &first_path),
            };
            return Err(Error::Invalid(format!(
                "merge: {} exists but {} does not; every shard of a run with illumination correction saves it",
                with.display(),
                without.display()
            )));
        }
        if let Some(bytes) = kept {
            out.push((name, bytes));
        }
    }
    Ok(out)
}

/// Merges the shard output directories `inputs` into `out_dir`.
pub fn merge(
    inputs: &[PathBuf],
    out_dir: &Path,
    overwrite: bool,
    command_line: &[String],
) -> Result<MergeSummary> {
    if inputs.is_empty() {
        return Err(Error::Invalid(
            "merge: give at least one run output directory".into(),
        ));
    }
    let mut shards: Vec<(Manifest, PathBuf)> = Vec::new();
    for dir in inputs {
        let m = Manifest::read(&dir.join("manifest.json"))?;
        shards.push((m, dir.clone()));
    }
    // Order by shard index so the argument order does not matter.
    shards.sort_by_key(|(m, _)| m.shards.iter().map(|s| s.index).min().unwrap_or(0));
    // Same ipscope version, dependencies, parameters, channels and format (manifest hashes).
    crate::campaign::run_identity(
        &shards
            .iter()
            .map(|(m, d)| (m, d.as_path()))
            .collect::<Vec<_>>(),
    )?;
    let first = &shards[0].0;
    for (m, dir) in &shards[1..] {
        let differs = |what: &str| {
            Error::Invalid(format!(
                "{}: {what} differs from {}; only shards of one run can be merged",
                dir.display(),
                shards[0].1.display()
            ))
        };
        if m.plate != first.plate {
            return Err(differs("plate"));
        }
        if m.parameters != first.parameters {
            return Err(differs("parameters"));
        }
        if m.format != first.format {
            return Err(differs("table format"));
        }
        if m.fields_in_plate != first.fields_in_plate {
            return Err(differs("the plate's field count"));
        }
        if m.channels != first.channels {
            return Err(differs("channels"));
        }
    }
    let mut all_shards: Vec<_> = shards.iter().flat_map(|(m, _)| m.shards.clone()).collect();
    all_shards.sort_by_key(|s| (s.count, s.index));
    let count = all_shards.first().map(|s| s.count);
    if shards.len() > 1 || count.is_some() {
        let n = count.ok_or_else(|| {
            Error::Invalid("merge: an input is a whole-plate run, not a shard".into())
        })?;
        let expected: Vec<u32> = (1..=n).collect();
        let got: Vec<u32> = all_shards.iter().map(|s| s.index).collect();
        if all_shards.iter().any(|s| s.count != n) || got != expected {
            let missing: Vec<String> = expected
                .iter()
                .filter(|i| !got.contains(i))
                .map(|i| format!("{i}/{n}"))
                .collect();
            return Err(Error::Invalid(format!(
                "merge: shards must be 1/{n}..{n}/{n}, each once; got {}{}",
                all_shards
                    .iter()
                    .map(|s| format!("{}/{}", s.index, s.count))
                    .collect::<Vec<_>>()
                    .join(", "),
                if missing.is_empty() {
                    String::new()
                } else {
                    format!(" (missing {})", missing.join(", "))
                }
            )));
        }
    }
    let format: Format = first
        .format
        .parse()
        .map_err(|_| Error::Invalid(format!("merge: unknown table format {:?}", first.format)))?;
    let ext = format.extension();
    let illum = illumination_functions(&shards)?;
    let _lock = prepare_out_dir(out_dir, overwrite)?;

    let mut images = Vec::new();
    let mut nuclei = Vec::new();
    let mut failures = Vec::new();
    for (_, dir) in &shards {
        images.extend(read_all(&dir.join(format!("Image.{ext}")))?);
        nuclei.extend(read_all(&dir.join(format!("Nuclei.{ext}")))?);
        for b in read_all(&dir.join(format!("Errors.{ext}")))? {
            failures.extend(failures_of(&b)?);
        }
    }
    let image_schema = images
        .first()
        .map(|b| b.schema())
        .ok_or_else(|| Error::Invalid("merge: the inputs hold no Image table rows".into()))?;
    let image = ipscope_table::sort_by_u32(
        &ipscope_table::concat(&image_schema, &images)?,
        &["ImageNumber"],
    )?;
    let (nuclei_schema, _) = ipscope_table::read_table(&shards[0].1.join(format!("Nuclei.{ext}")))?;
    let nuclei = ipscope_table::sort_by_u32(
        &ipscope_table::concat(&nuclei_schema, &nuclei)?,
        &["ImageNumber", "ObjectNumber"],
    )?;
    failures.sort_by(|a, b| {
        (a.image_number, &a.well, a.site, &a.file).cmp(&(b.image_number, &b.well, b.site, &b.file))
    });
    let errors = errors_batch(&failures)?;

    // Colonies, when the shards segmented them (all or none do: same parameters).
    let colonies = if shards[0].1.join(format!("Colonies.{ext}")).exists() {
        let mut batches = Vec::new();
        for (_, dir) in &shards {
            batches.extend(read_all(&dir.join(format!("Colonies.{ext}")))?);
        }
        let (schema, _) = ipscope_table::read_table(&shards[0].1.join(format!("Colonies.{ext}")))?;
        Some(ipscope_table::sort_by_u32(
            &ipscope_table::concat(&schema, &batches)?,
            &["ImageNumber", "ObjectNumber"],
        )?)
    } else {
        None
    };

    // Cells and Cytoplasm, when the shards grew cells (all or none do: same channels).
    let mut compartments = Vec::new();
    for name in ["Cells", "Cytoplasm"] {
        if !shards[0].1.join(format!("{name}.{ext}")).exists() {
            continue;
        }
        let mut batches = Vec::new();
        for (_, dir) in &shards {
            batches.extend(read_all(&dir.join(format!("{name}.{ext}")))?);
        }
        let (schema, _) = ipscope_table::read_table(&shards[0].1.join(format!("{name}.{ext}")))?;
        compartments.push((
            name,
            ipscope_table::sort_by_u32(
                &ipscope_table::concat(&schema, &batches)?,
                &["ImageNumber", "ObjectNumber"],
            )?,
        ));
    }

    let path_of = |name: &str| out_dir.join(format!("{name}.{ext}"));
    let mut written = Vec::new();
    let mut tables = vec![("Nuclei", &nuclei)];
    for (name, t) in &compartments {
        tables.push((name, t));
    }
    if let Some(c) = &colonies {
        tables.push(("Colonies", c));
    }
    tables.extend([("Image", &image), ("Errors", &errors)]);
    for (name, batch) in tables {
        written.push(ipscope_table::write_table(
            &path_of(name),
            batch.schema(),
            std::slice::from_ref(batch),
            format,
        )?);
    }
    written.push(write_wells(
        out_dir,
        format,
        &image,
        &first.parameters,
        &first.channels,
    )?);
    written.extend(crate::analysis::write_analysis_with(
        out_dir,
        format,
        &first.parameters,
    )?);
    for (name, bytes) in &illum {
        let path = out_dir.join(name);
        crate::partial::write_atomic(&path, bytes)?;
        written.push(ipscope_table::WrittenFile {
            sha256: ipscope_table::sha256_file(&path)?,
            path,
            rows: 0,
            bytes: bytes.len() as u64,
        });
    }

    let mut inputs_rec: Vec<InputRecord> =
        shards.iter().flat_map(|(m, _)| m.inputs.clone()).collect();
    inputs_rec.sort_by(|a, b| a.path.cmp(&b.path));
    inputs_rec.dedup();
    let mut image_status: Vec<_> = shards.iter().flat_map(|(m, _)| m.images.clone()).collect();
    image_status.sort_by_key(|s| s.image_number);
    let started = shards
        .iter()
        .map(|(m, _)| m.started.clone())
        .min()
        .unwrap_or_default();
    let finished = chrono::Utc::now().to_rfc3339();
    let fields_failed = image_status.iter().filter(|s| s.status != "ok").count();
    let mut manifest = Manifest {
        ipscope_version: env!("CARGO_PKG_VERSION").to_string(),
        command_line: command_line.to_vec(),
        started,
        resumed: shards.iter().flat_map(|(m, _)| m.resumed.clone()).collect(),
        finished,
        plate: first.plate.clone(),
        plate_dir: first.plate_dir.clone(),
        naming_scheme: first.naming_scheme.clone(),
        fields_in_plate: first.fields_in_plate,
        shards: all_shards,
        channels: first.channels.clone(),
        parameters: first.parameters.clone(),
        format: first.format.clone(),
        warnings: first.warnings.clone(),
        machine: crate::manifest::Machine::current(0),
        dependencies: crate::manifest::dependencies(),
        plate_qc: Vec::new(),
        inputs: inputs_rec,
        images: image_status,
        outputs: written
            .iter()
            .map(|w| OutputRecord::from_written(w, out_dir))
            .collect(),
    };
    written.push(crate::analysis::write_report_and_manifest(
        &mut manifest,
        out_dir,
    )?);
    let mut outputs: Vec<PathBuf> = written.iter().map(|w| w.path.clone()).collect();
    outputs.push(out_dir.join("manifest.json"));
    Ok(MergeSummary {
        plate: first.plate.clone(),
        shards: shards.len(),
        fields: image.num_rows(),
        fields_failed,
        nuclei: nuclei.num_rows() as u64,
        out_dir: out_dir.to_path_buf(),
        outputs,
    })
}

/// Merges shard outputs of one or more plates: each plate's shards into
/// `OUT/Metadata_Plate=<id>/`, then the campaign tables and report at the root of `OUT`
/// (see [`crate::campaign`]). Inputs may come in any order; every input, of every plate,
/// must share one parameter set and ipscope version. Inputs that are already whole-plate
/// outputs (a merge, or an unsharded run) are copied through the same merge, so merging a
/// campaign again gives the same tables.
pub fn merge_campaign(
    inputs: &[PathBuf],
    out_dir: &Path,
    overwrite: bool,
    command_line: &[String],
) -> Result<crate::campaign::CampaignSummary> {
    use std::collections::BTreeMap;
    if inputs.is_empty() {
        return Err(Error::Invalid(
            "merge: give at least one run output directory".into(),
        ));
    }
    let mut manifests = Vec::new();
    for dir in inputs {
        manifests.push((Manifest::read(&dir.join("manifest.json"))?, dir.clone()));
    }
    crate::campaign::run_identity(
        &manifests
            .iter()
            .map(|(m, d)| (m, d.as_path()))
            .collect::<Vec<_>>(),
    )?;
    let out_abs = std::path::absolute(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let mut by_plate: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for (m, dir) in &manifests {
        let dir_abs = std::path::absolute(dir).map_err(|e| Error::io(dir, e))?;
        if dir_abs.starts_with(&out_abs) {
            return Err(Error::Invalid(format!(
                "merge: input {} lies inside the output {}",
                dir.display(),
                out_dir.display()
            )));
        }
        by_plate
            .entry(m.plate.clone())
            .or_default()
            .push(dir.clone());
    }
    if crate::campaign::visible_entries(out_dir)? && !overwrite {
        return Err(Error::Invalid(format!(
            "{}: output directory exists and is not empty; use --overwrite to replace its tables",
            out_dir.display()
        )));
    }
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    // Partitions of plates no longer among the inputs would leak into the campaign tables.
    for part in crate::campaign::partitions(out_dir)? {
        let keep = by_plate
            .keys()
            .any(|p| crate::campaign::partition_dir(out_dir, p) == part);
        if !keep {
            std::fs::remove_dir_all(&part).map_err(|e| Error::io(&part, e))?;
        }
    }
    for (plate, dirs) in &by_plate {
        merge(
            dirs,
            &crate::campaign::partition_dir(out_dir, plate),
            true,
            command_line,
        )?;
    }
    crate::campaign::summarize(out_dir, command_line)
}
