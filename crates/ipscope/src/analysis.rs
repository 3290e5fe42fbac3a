//! Drug evaluation at the end of a run (or merge): the Curves and Qc tables and report.html,
//! computed from the Wells table already written in the output directory.
//!
//! When the layout gives `Metadata_Compound`, `Metadata_Concentration` and `Metadata_Role`,
//! `Curves.<ext>` holds one drc LL.4 fit per plate, treated compound and readout, and
//! `Qc.<ext>` the control statistics (Z′, robust Z′, SSMD, …) per plate and readout. The
//! report is written in every run. Stale files from an earlier run in the same directory are
//! removed when the current run does not write them.

use std::path::Path;

use ipscope_stats::curve::Model;
use ipscope_stats::plate::{
    has_dose_layout, plate_curves, plate_curves_table, plate_qc_all, qc_table, readouts, ROLE,
};
use ipscope_table::{Format, WrittenFile};

use crate::{Error, Result};

pub use ipscope_report as report;

/// File name of the report in the output directory.
pub const REPORT_FILE: &str = "report.html";

fn stats_err(e: ipscope_stats::Error) -> Error {
    Error::Invalid(format!("drug evaluation: {e}"))
}

fn report_err(e: ipscope_report::Error) -> Error {
    Error::Invalid(format!("report: {e}"))
}

fn remove_stale(path: &Path) -> Result<()> {
    if path.exists() {
        std::fs::remove_file(path).map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}

/// Writes Curves/Qc (when the layout allows) into `out_dir`; returns what it wrote, for the
/// manifest. The report comes last, from [`write_report_and_manifest`].
pub fn write_analysis(out_dir: &Path, format: Format) -> Result<Vec<WrittenFile>> {
    write_analysis_with(out_dir, format, &crate::config::Config::default())
}

/// [`write_analysis`] with the run's configuration (`[disease]` names the vehicle of the
/// disease tables, [`crate::disease`]).
pub fn write_analysis_with(
    out_dir: &Path,
    format: Format,
    config: &crate::config::Config,
) -> Result<Vec<WrittenFile>> {
    write_analysis_of(&read_run(out_dir)?, out_dir, format, config)
}

/// [`write_analysis_with`] of the run's tables already read ([`read_run`]), so that the
/// report can use the same read ([`write_report_of`]).
pub fn write_analysis_of(
    run: &ipscope_report::RunTables,
    out_dir: &Path,
    format: Format,
    config: &crate::config::Config,
) -> Result<Vec<WrittenFile>> {
    let ext = format.extension();
    let wells = &run.wells;
    let mut written = Vec::new();
    let all = readouts(wells);
    let curves_path = out_dir.join(format!("Curves.{ext}"));
    if has_dose_layout(wells) {
        let curves = plate_curves(wells, &all, Model::Ll4).map_err(stats_err)?;
        let table = plate_curves_table(&curves).map_err(stats_err)?;
        written.push(ipscope_table::write_table(
            &curves_path,
            table.schema(),
            std::slice::from_ref(&table),
            format,
        )?);
    } else {
        remove_stale(&curves_path)?;
    }
    let qc_path = out_dir.join(format!("Qc.{ext}"));
    if ipscope_stats::input::has_column(wells, ROLE) {
        let qc = plate_qc_all(wells, &all).map_err(stats_err)?;
        let table = qc_table(&qc).map_err(stats_err)?;
        written.push(ipscope_table::write_table(
            &qc_path,
            table.schema(),
            std::slice::from_ref(&table),
            format,
        )?);
    } else {
        remove_stale(&qc_path)?;
    }
    written.extend(crate::disease::write_tables(
        out_dir,
        format,
        wells,
        &config.disease,
    )?);
    Ok(written)
}

/// Example overlays the run embeds in its report.
pub const MAX_OVERLAYS: usize = 4;
/// Longest side of an overlay thumbnail, in pixels.
pub const THUMBNAIL_SIDE: usize = 256;
/// Colour of the object outlines in a thumbnail.
const OUTLINE_RGB: [u8; 3] = [255, 200, 0];

/// A PNG thumbnail (RGB, longest side at most [`THUMBNAIL_SIDE`]) of a field with its objects
/// outlined: `ipscope_core::ops::outline::outline_overlay` (the image stretched between its
/// 0.5th and 99.5th percentiles, inner outlines) reduced by whole blocks, a block showing an
/// outline when any of its pixels is one (so one-pixel outlines survive) and the mean grey
/// otherwise.
pub fn overlay_thumbnail<T: ipscope_image::Pixel>(
    image: ipscope_image::ImageView<T>,
    labels: ipscope_image::ImageView<u32>,
) -> Result<Vec<u8>> {
    let (w, h) = (image.width(), image.height());
    let k = w.max(h).div_ceil(THUMBNAIL_SIDE).max(1);
    // Made block by block from the field (no full-size overlay); 255 marks an outlined block.
    let thumb = ipscope_core::ops::outline::outline_thumbnail(image, labels, k)
        .map_err(|e| Error::Invalid(format!("overlay: {e}")))?;
    let (tw, th) = (thumb.width(), thumb.height());
    let mut rgb = Vec::with_capacity(tw * th * 3);
    for &g in thumb.as_slice() {
        if g == 255 {
            rgb.extend_from_slice(&OUTLINE_RGB);
        } else {
            rgb.extend_from_slice(&[g, g, g]);
        }
    }
    let mut png_bytes = Vec::new();
    let err = |e: png::EncodingError| Error::Invalid(format!("overlay PNG: {e}"));
    let mut enc = png::Encoder::new(&mut png_bytes, tw as u32, th as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    // fdeflate's PNG-tuned level: a fifth of the default level's time for a slightly
    // larger file (the report embeds at most `MAX_OVERLAYS` of them).
    enc.set_compression(png::Compression::Fast);
    let mut writer = enc.write_header().map_err(err)?;
    writer.write_image_data(&rgb).map_err(err)?;
    writer.finish().map_err(err)?;
    Ok(png_bytes)
}

/// Outline thumbnails of the first fields of a finished run (at most [`MAX_OVERLAYS`]),
/// rebuilt from its manifest (channels, nuclear segmentation parameters) and Image table
/// (`FileName_`/`PathName_` of the nuclear channel, fields with `Status` ok in ImageNumber
/// order): for reports written without the run's pixels at hand (`ipscope report OUT`, a
/// merge). A field is skipped when its file is gone or unreadable, or when the nuclear image
/// shares its file with another channel (a multi-page file, whose page the Image table does
/// not record).
pub fn overlays_of_run(
    manifest: &crate::manifest::Manifest,
    image: &ipscope_table::RecordBatch,
) -> Vec<ipscope_report::Overlay> {
    use ipscope_stats::input::{has_column, numeric, text};
    let Some(nuclear) = crate::channels::nuclear_channel(&manifest.channels) else {
        return Vec::new();
    };
    let name = &manifest.channels[nuclear].name;
    let col = |prefix: &str, c: &str| text(image, &format!("{prefix}_{c}")).ok();
    let (Some(files), Some(dirs)) = (col("FileName", name), col("PathName", name)) else {
        return Vec::new();
    };
    let others: Vec<Vec<Option<String>>> = manifest
        .channels
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != nuclear)
        .filter_map(|(_, c)| col("FileName", &c.name))
        .collect();
    let n = image.num_rows();
    let status = if has_column(image, "Status") {
        text(image, "Status").unwrap_or_else(|_| vec![None; n])
    } else {
        vec![Some("ok".to_string()); n]
    };
    let wells = text(image, "Metadata_Well").unwrap_or_else(|_| vec![None; n]);
    let sites = numeric(image, "Metadata_Site").unwrap_or_else(|_| vec![f64::NAN; n]);
    let mut order: Vec<usize> = (0..n).collect();
    if let Ok(numbers) = numeric(image, "ImageNumber") {
        order.sort_by(|&a, &b| numbers[a].total_cmp(&numbers[b]));
    }
    let read_opts = ipscope_io::ReadOptions {
        max_pixels: manifest.parameters.input.max_pixels,
    };
    let params = &manifest.parameters.nuclei;
    order
        .into_iter()
        .filter(|&i| status[i].as_deref() == Some("ok"))
        .filter_map(|i| {
            let (file, dir) = (files[i].as_ref()?, dirs[i].as_ref()?);
            if others.iter().any(|o| o[i].as_ref() == Some(file)) {
                return None;
            }
            let path = Path::new(dir).join(file);
            let bytes = std::fs::read(&path).ok()?;
            let img = ipscope_io::decode(&bytes, &path, 0, &read_opts).ok()?;
            let seg = ipscope_image::with_dyn_image!(&img, im => ipscope_core::segment_nuclei(im.view(), params));
            let png = ipscope_image::with_dyn_image!(&img, im => overlay_thumbnail(im.view(), seg.labels.view())).ok()?;
            Some(ipscope_report::Overlay {
                name: format!(
                    "{} site {}",
                    wells[i].as_deref().unwrap_or("?"),
                    if sites[i].is_finite() {
                        (sites[i] as u64).to_string()
                    } else {
                        "?".into()
                    }
                ),
                png,
            })
        })
        .take(MAX_OVERLAYS)
        .collect()
}

/// [`overlays_of_run`] of the run in `out_dir` (its `manifest.json` and Image table); empty
/// when either is missing or unreadable.
pub fn overlays_in_dir(out_dir: &Path) -> Vec<ipscope_report::Overlay> {
    let Ok(manifest) = crate::manifest::Manifest::read(&out_dir.join("manifest.json")) else {
        return Vec::new();
    };
    match ipscope_report::RunTables::read(out_dir) {
        Ok(run) => run
            .image
            .as_ref()
            .map(|image| overlays_of_run(&manifest, image))
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

/// Writes report.html, whose provenance section shows `manifest` (plate QC filled in here),
/// then `manifest.json` with the report among its outputs. The report's overlay thumbnails
/// come from [`overlays_of_run`].
pub fn write_report_and_manifest(
    manifest: &mut crate::manifest::Manifest,
    out_dir: &Path,
) -> Result<WrittenFile> {
    write_report_with_overlays(manifest, out_dir, Vec::new())
}

/// [`write_report_and_manifest`] with example overlays embedded in the report.
pub fn write_report_with_overlays(
    manifest: &mut crate::manifest::Manifest,
    out_dir: &Path,
    overlays: Vec<ipscope_report::Overlay>,
) -> Result<WrittenFile> {
    write_report_of(manifest, read_run(out_dir)?, overlays)
}

/// The Wells, Image and Errors tables of the run in `out_dir`, for [`write_analysis_of`] and
/// [`write_report_of`].
pub fn read_run(out_dir: &Path) -> Result<ipscope_report::RunTables> {
    ipscope_report::RunTables::read(out_dir).map_err(report_err)
}

/// [`write_report_with_overlays`] of the run's tables already read ([`read_run`]; they must be
/// the files now in the run's folder).
pub fn write_report_of(
    manifest: &mut crate::manifest::Manifest,
    mut run: ipscope_report::RunTables,
    overlays: Vec<ipscope_report::Overlay>,
) -> Result<WrittenFile> {
    let out_dir = run.out_dir.clone();
    let out_dir = out_dir.as_path();
    let overlays = if overlays.is_empty() {
        run.image
            .as_ref()
            .map(|image| overlays_of_run(manifest, image))
            .unwrap_or_default()
    } else {
        overlays
    };
    if ipscope_stats::input::has_column(&run.wells, ROLE) {
        let qc = plate_qc_all(&run.wells, &readouts(&run.wells)).map_err(stats_err)?;
        manifest.plate_qc = qc
            .iter()
            .map(|(readout, q)| {
                let mut v = serde_json::to_value(q).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("readout".into(), readout.clone().into());
                }
                v
            })
            .collect();
    }
    if let Some(why) = crate::disease::note(
        out_dir,
        &manifest.format,
        &run.wells,
        &manifest.parameters.disease,
    )? {
        if !manifest.warnings.contains(&why) {
            manifest.warnings.push(why);
        }
    }
    // The report shows the manifest as it stands before the report itself is added.
    run.manifest = serde_json::to_value(&*manifest).ok();
    let options = ipscope_report::ReportOptions {
        overlays,
        ..Default::default()
    };
    let html = ipscope_report::render(&run, &options).map_err(report_err)?;
    let report =
        ipscope_report::write_html(&out_dir.join(REPORT_FILE), &html).map_err(report_err)?;
    manifest
        .outputs
        .push(crate::manifest::OutputRecord::from_written(
            &report, out_dir,
        ));
    manifest.write(&out_dir.join("manifest.json"))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipscope_image::Image;

    /// A 600 × 300 field with one 90 × 90 object: a 200 × 100 PNG (blocks of 3), the object's
    /// outline in the outline colour, its inside and the background grey.
    #[test]
    fn thumbnail_keeps_outlines_and_decodes() {
        let mut img = Image::new(600, 300, 0.1f32);
        let mut labels = Image::new(600, 300, 0u32);
        for r in 90..180 {
            for c in 300..390 {
                img.set(r, c, 0.8);
                labels.set(r, c, 1);
            }
        }
        let png_bytes = overlay_thumbnail(img.view(), labels.view()).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (200, 100));
        assert_eq!(info.color_type, png::ColorType::Rgb);
        let px = |r: usize, c: usize| &buf[(r * 200 + c) * 3..(r * 200 + c) * 3 + 3];
        // Outline pixels: row 90 (thumbnail row 30) and column 300 (thumbnail column 100).
        assert_eq!(px(30, 110), OUTLINE_RGB);
        assert_eq!(px(45, 100), OUTLINE_RGB);
        let inside = px(45, 115);
        let outside = px(10, 10);
        assert!(
            inside[0] == inside[1] && inside[0] > outside[0],
            "{inside:?} {outside:?}"
        );
        assert_eq!(outside, [0, 0, 0]);
        let edges = (0..100)
            .flat_map(|r| (0..200).map(move |c| (r, c)))
            .filter(|&(r, c)| px(r, c) == OUTLINE_RGB)
            .count();
        // The 90-pixel square's outline: 4 sides of 30 thumbnail pixels, corners shared.
        assert_eq!(edges, 4 * 30 - 4);
    }
}
