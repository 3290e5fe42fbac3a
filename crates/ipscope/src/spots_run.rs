//! `ipscope run --assay spots`: puncta per cell over a plate.
//!
//! For every field: nuclei on the nuclear channel, then [`analyze_spots`] on the first marker
//! channel (SYN1, γH2AX, BODIPY, …). Writes `Spots.parquet` (one row per spot, `Parent_Cells`),
//! `Cells.parquet` (one row per cell: `Children_Spots_Count`, summed and mean spot
//! intensity, spot area), `Image.parquet`, `Wells.parquet` (cells, spots, mean and median
//! spots per cell, mean spot intensity per cell), `Errors.parquet` and `manifest.json`,
//! reusing the neurite run's options ([`NeuriteRunOptions`]; its neurite settings are
//! ignored). `--resume` works as for the neurite run (see [`crate::neurite_run`]): finished
//! fields are kept in `OUT/.ipscope-partial` and a resumed run writes the same tables.

use std::path::{Path, PathBuf};

use ipscope_core::assays::spots::{analyze_spots, SpotsParams};
use ipscope_core::segment_nuclei;
use ipscope_io::{DiscoverOptions, ReadOptions};
use ipscope_table::{TableBuilder, WrittenFile};
use serde::{Deserialize, Serialize};

use crate::channels::{resolve_channels, Role};
use crate::neurite_run::NeuriteRunOptions;
use crate::partial::f64_bits;
use crate::{Error, Result};

/// What a spots run did.
#[derive(Debug, Clone, PartialEq)]
pub struct SpotsRunSummary {
    pub fields: usize,
    pub fields_failed: usize,
    pub cells: usize,
    pub spots: usize,
    pub outputs: Vec<PathBuf>,
}

#[derive(Serialize, Deserialize)]
struct CellRow {
    object: u32,
    count: u32,
    #[serde(with = "f64_bits")]
    total: f64,
    #[serde(with = "f64_bits")]
    mean: f64,
    area: u64,
}

#[derive(Serialize, Deserialize)]
struct SpotRow {
    object: u32,
    parent: u32,
    #[serde(with = "f64_bits")]
    x: f64,
    #[serde(with = "f64_bits")]
    y: f64,
    #[serde(with = "f64_bits")]
    sigma: f64,
}

#[derive(Serialize, Deserialize)]
struct FieldResult {
    cells: Vec<CellRow>,
    spots: Vec<SpotRow>,
    outside: u32,
}

struct FieldOut {
    well: String,
    site: u32,
    plate: String,
    result: std::result::Result<FieldResult, (String, String)>,
}

fn run_field(
    dna: (&Path, usize),
    spot: (&Path, usize),
    opts: &NeuriteRunOptions,
    params: &SpotsParams,
) -> std::result::Result<FieldResult, (String, String)> {
    let read = |(p, page): (&Path, usize)| {
        ipscope_io::read_image(p, page, &ReadOptions::default())
            .map_err(|e| (p.display().to_string(), e.to_string()))
    };
    let scale = |img: &ipscope_image::DynImage| {
        let s = img.sample_type().scale() as f32;
        img.to_f32().map(|v| v / s)
    };
    let d = scale(&read(dna)?);
    let s = scale(&read(spot)?);
    let nuclei = segment_nuclei(d.view(), &opts.nuclei).labels;
    let res = analyze_spots(s.view(), &nuclei, params)
        .map_err(|e| (spot.0.display().to_string(), e.to_string()))?;
    let cells = (1..res.per_cell.len())
        .map(|k| {
            let o = res.per_cell[k];
            CellRow {
                object: k as u32,
                count: o.count,
                total: o.total_intensity,
                mean: o.mean_intensity,
                area: o.area,
            }
        })
        .collect();
    let spots = res
        .spots
        .iter()
        .zip(&res.parent)
        .enumerate()
        .map(|(i, (b, &p))| SpotRow {
            object: i as u32 + 1,
            parent: p,
            x: b.col as f64,
            y: b.row as f64,
            sigma: f64::from(b.sigma),
        })
        .collect();
    Ok(FieldResult {
        cells,
        spots,
        outside: res.per_cell.first().map_or(0, |o| o.count),
    })
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
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

/// Runs the spots assay over a plate; see the module docs.
pub fn run_spots(opts: &NeuriteRunOptions, params: &SpotsParams) -> Result<SpotsRunSummary> {
    let plate = ipscope_io::discover(
        &opts.plate_dir,
        &DiscoverOptions {
            pattern: opts.pattern.clone(),
        },
    )?;
    let channels = resolve_channels(&plate.channels, &opts.channels)?;
    let need = |role: Role, what: &str, example: &str| {
        channels
            .iter()
            .find(|c| c.role == role)
            .cloned()
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "{}: --assay spots needs a {what} channel; name one with --channel ID={example} (channels found: {})",
                    opts.plate_dir.display(),
                    plate.channels.join(", ")
                ))
            })
    };
    let dna_ch = need(Role::Nuclear, "nuclear", "DNA")?;
    let spot_ch = need(Role::Marker, "spot (marker)", "SYN1")?;
    let layout = match &opts.layout {
        Some(p) => Some(ipscope_io::read_layout(p)?),
        None => None,
    };
    let used = [&dna_ch, &spot_ch];
    let (_lock, store) = crate::partial::open_resumable(
        &opts.out_dir,
        &crate::neurite_run::fingerprint(
            opts,
            "spots",
            &format!("{:?} {params:?}", opts.nuclei),
            &plate,
            &used,
        )?,
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
        |f: &ipscope_io::Field| -> std::result::Result<FieldResult, (String, String)> {
            let find = |id: &str| f.channels.iter().find(|c| c.channel == id);
            match (find(&dna_ch.id), find(&spot_ch.id)) {
                (Some(d), Some(s)) => run_field((&d.path, d.page), (&s.path, s.page), opts, params),
                _ => Err((
                    format!("{} s{}", f.well, f.site),
                    format!(
                        "missing channel {} or {} in this field",
                        dna_ch.id, spot_ch.id
                    ),
                )),
            }
        },
    )?;
    let statuses = crate::neurite_run::statuses(&plate, &runs);
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
    let add_layout = |b: &mut TableBuilder, wells: &[String]| {
        for (k, col) in lay_cols.iter().enumerate() {
            b.opt_str(
                col,
                wells
                    .iter()
                    .map(|w| {
                        layout
                            .as_ref()
                            .and_then(|l| l.get(w))
                            .and_then(|v| v.get(k).cloned())
                    })
                    .collect(),
            );
        }
    };
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
    let ch = &spot_ch.name;

    // Cells and Spots.
    let (mut ci, mut cw, mut cs, mut cp, mut crow) = (vec![], vec![], vec![], vec![], vec![]);
    let (mut si, mut sw, mut ss, mut sp, mut srow) = (vec![], vec![], vec![], vec![], vec![]);
    for (i, o) in outs.iter().enumerate() {
        if let Ok(r) = &o.result {
            for c in &r.cells {
                ci.push(i as u32 + 1);
                cw.push(o.well.clone());
                cs.push(o.site);
                cp.push(o.plate.clone());
                crow.push(c);
            }
            for s in &r.spots {
                si.push(i as u32 + 1);
                sw.push(o.well.clone());
                ss.push(o.site);
                sp.push(o.plate.clone());
                srow.push(s);
            }
        }
    }
    let mut b = TableBuilder::new();
    b.u32("ImageNumber", ci)
        .u32("ObjectNumber", crow.iter().map(|c| c.object).collect())
        .str("Metadata_Plate", cp)
        .str("Metadata_Well", cw.clone())
        .u32("Metadata_Site", cs);
    add_layout(&mut b, &cw);
    b.u32("Parent_Nuclei", crow.iter().map(|c| c.object).collect())
        .u32(
            "Children_Spots_Count",
            crow.iter().map(|c| c.count).collect(),
        )
        .f64(
            &format!("Cells_Spots_TotalIntensity_{ch}"),
            crow.iter().map(|c| c.total).collect(),
        )
        .f64(
            &format!("Cells_Spots_MeanIntensity_{ch}"),
            crow.iter().map(|c| c.mean).collect(),
        )
        .u64("Cells_Spots_Area", crow.iter().map(|c| c.area).collect());
    b.doc("One row per cell (nucleus grown by cell_distance px); spots assigned by their centre; intensities on CellProfiler's 0..1 scale summed over each spot's disk of radius sigma*sqrt(2) clipped to the cell.");
    write("Cells", b, &mut outputs)?;
    let mut b = TableBuilder::new();
    b.u32("ImageNumber", si)
        .u32("ObjectNumber", srow.iter().map(|s| s.object).collect())
        .str("Metadata_Plate", sp)
        .str("Metadata_Well", sw.clone())
        .u32("Metadata_Site", ss);
    add_layout(&mut b, &sw);
    b.u32("Parent_Cells", srow.iter().map(|s| s.parent).collect())
        .f64("Location_Center_X", srow.iter().map(|s| s.x).collect())
        .f64("Location_Center_Y", srow.iter().map(|s| s.y).collect())
        .f64("Spots_Sigma", srow.iter().map(|s| s.sigma).collect())
        .f64(
            "Spots_Radius",
            srow.iter()
                .map(|s| s.sigma * std::f64::consts::SQRT_2)
                .collect(),
        );
    write("Spots", b, &mut outputs)?;

    // Image.
    let fw: Vec<String> = outs.iter().map(|o| o.well.clone()).collect();
    let mut b = TableBuilder::new();
    b.u32("ImageNumber", (1..=outs.len() as u32).collect())
        .str(
            "Metadata_Plate",
            outs.iter().map(|o| o.plate.clone()).collect(),
        )
        .str("Metadata_Well", fw.clone())
        .u32("Metadata_Site", outs.iter().map(|o| o.site).collect());
    add_layout(&mut b, &fw);
    let ok = |o: &FieldOut, f: &dyn Fn(&FieldResult) -> u64| o.result.as_ref().map_or(0, f);
    b.u64(
        "Count_Cells",
        outs.iter()
            .map(|o| ok(o, &|r| r.cells.len() as u64))
            .collect(),
    )
    .u64(
        "Count_Spots",
        outs.iter()
            .map(|o| ok(o, &|r| r.spots.len() as u64))
            .collect(),
    )
    .u64(
        "Count_SpotsOutsideCells",
        outs.iter()
            .map(|o| ok(o, &|r| u64::from(r.outside)))
            .collect(),
    )
    .str(
        "Status",
        outs.iter()
            .map(|o| if o.result.is_ok() { "ok" } else { "failed" }.to_string())
            .collect(),
    );
    write("Image", b, &mut outputs)?;

    // Wells.
    let wells = plate.wells();
    let mut b = TableBuilder::new();
    b.str("Metadata_Well", wells.clone());
    add_layout(&mut b, &wells);
    let (mut nf, mut nfail, mut ncell, mut nspot) = (vec![], vec![], vec![], vec![]);
    let (mut mcount, mut medcount, mut mtotal, mut marea) = (vec![], vec![], vec![], vec![]);
    for w in &wells {
        let fields: Vec<&FieldOut> = outs.iter().filter(|o| &o.well == w).collect();
        let res: Vec<&FieldResult> = fields
            .iter()
            .filter_map(|o| o.result.as_ref().ok())
            .collect();
        let counts: Vec<f64> = res
            .iter()
            .flat_map(|r| r.cells.iter().map(|c| f64::from(c.count)))
            .collect();
        let totals: Vec<f64> = res
            .iter()
            .flat_map(|r| r.cells.iter().map(|c| c.total))
            .collect();
        let areas: Vec<f64> = res
            .iter()
            .flat_map(|r| r.cells.iter().map(|c| c.area as f64))
            .collect();
        nf.push(fields.len() as u64);
        nfail.push((fields.len() - res.len()) as u64);
        ncell.push(counts.len() as u64);
        nspot.push(res.iter().map(|r| r.spots.len() as u64).sum());
        mcount.push(mean(&counts));
        medcount.push(median(counts));
        mtotal.push(mean(&totals));
        marea.push(mean(&areas));
    }
    b.u64("Count_Fields", nf)
        .u64("Count_FieldsFailed", nfail)
        .u64("Count_Cells", ncell)
        .u64("Count_Spots", nspot)
        .f64("Mean_SpotsPerCell", mcount)
        .f64("Median_SpotsPerCell", medcount)
        .f64(&format!("Mean_SpotTotalIntensityPerCell_{ch}"), mtotal)
        .f64("Mean_SpotAreaPerCell", marea);
    write("Wells", b, &mut outputs)?;

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
    let outputs =
        crate::neurite_run::write_manifest(opts, &plate, &used, statuses, &outputs, store)?;
    Ok(SpotsRunSummary {
        fields: outs.len(),
        fields_failed: failed.len(),
        cells: crow.len(),
        spots: srow.len(),
        outputs,
    })
}
