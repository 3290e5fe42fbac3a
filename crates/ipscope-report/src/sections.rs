//! Report sections read from the run's per-object and per-field tables rather than from Wells:
//! colony grade composition per well (the `Colonies` table) and image-QC flags of fields (the
//! `ImageQuality_*` and flag/reason columns of the `Image` table).
//!
//! Column names follow the assays: a colony's grade is a text column (`Colony_Grade`,
//! `Classify_Grade`, `Grade`, or any text column whose name contains `grade`) holding the names
//! of `ipscope_core::assays::colonies::Grade` (`undifferentiated`, `differentiating`,
//! `too_small`); a field's QC is CellProfiler's `ImageQuality_*` measurements plus a boolean
//! column whose name contains `flag` and/or a text column whose name contains `reason`
//! (`ipscope_core::assays::quality::assess`). A table without these columns gives a short note,
//! never an error.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use ipscope_stats::input::{has_column, numeric, text};
use ipscope_stats::normalize::{parse_well, plate_shape, WellPos};
use ipscope_table::arrow_array::Array;
use ipscope_table::{column_bool, DataType, RecordBatch};

use crate::svg::{self, esc, num, PALETTE};
use crate::{find_table, read, Result, RunTables};

/// Colony grades in the order the assay defines them (`Grade::as_str`).
const GRADES: [&str; 3] = ["undifferentiated", "differentiating", "too_small"];
/// Most wells drawn as stacked bars (a 96-well plate); larger plates get the map only.
const MAX_BARS: usize = 96;

/// The grade name as the assay writes it: lower case, `differentiated` →
/// `differentiating`, `too small`/`debris` → `too_small` (as `Grade::parse`).
fn grade_key(s: &str) -> String {
    let k = s.trim().to_ascii_lowercase().replace([' ', '-'], "_");
    match k.as_str() {
        "differentiated" => "differentiating".to_string(),
        "debris" => "too_small".to_string(),
        _ => k,
    }
}

fn is_text(t: &RecordBatch, name: &str) -> bool {
    t.schema_ref()
        .field_with_name(name)
        .is_ok_and(|f| matches!(f.data_type(), DataType::Utf8 | DataType::LargeUtf8))
}

fn column_names(t: &RecordBatch) -> Vec<String> {
    t.schema_ref()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

/// The grade column of a Colonies table.
fn grade_column(t: &RecordBatch) -> Option<String> {
    ["Colony_Grade", "Classify_Grade", "Grade"]
        .iter()
        .map(|s| s.to_string())
        .find(|c| is_text(t, c))
        .or_else(|| {
            column_names(t)
                .into_iter()
                .find(|c| c.to_ascii_lowercase().contains("grade") && is_text(t, c))
        })
}

fn plates(t: &RecordBatch) -> Result<Vec<String>> {
    Ok(if has_column(t, "Metadata_Plate") {
        text(t, "Metadata_Plate")?
            .into_iter()
            .map(|v| v.unwrap_or_default())
            .collect()
    } else {
        vec![String::new(); t.num_rows()]
    })
}

/// (plate, well sort key): how the sections order wells.
type WellId = (String, (Option<WellPos>, String));

/// Sort key of a well: position when it parses, then the name.
fn well_key(name: &str) -> (Option<WellPos>, String) {
    (parse_well(name), name.to_string())
}

/// Plate format of the wells named in `names` (96 at least).
fn shape_of<'a>(names: impl Iterator<Item = &'a str>) -> (usize, usize) {
    let pos: Vec<WellPos> = names.filter_map(parse_well).collect();
    plate_shape(&pos).unwrap_or((8, 12))
}

/// The colony section from `Colonies.parquet`/`.arrow`; `false` (nothing written) when the
/// run has no Colonies table.
pub(crate) fn colonies(h: &mut String, run: &RunTables) -> Result<bool> {
    let Some(path) = find_table(&run.out_dir, "Colonies") else {
        return Ok(false);
    };
    let t = read(&path)?;
    h.push_str("<section id=\"colonies\"><h2>Colony grades</h2>");
    let Some(grade_col) = grade_column(&t) else {
        h.push_str(
            "<p class=\"muted\" id=\"colony-summary\">The Colonies table has no grade column.</p></section>",
        );
        return Ok(true);
    };
    if !has_column(&t, "Metadata_Well") {
        h.push_str(
            "<p class=\"muted\" id=\"colony-summary\">The Colonies table has no Metadata_Well column.</p></section>",
        );
        return Ok(true);
    }
    let wells = text(&t, "Metadata_Well")?;
    let plate = plates(&t)?;
    let grades = text(&t, &grade_col)?;
    let mut cats: Vec<String> = GRADES.iter().map(|s| s.to_string()).collect();
    let mut extra: Vec<String> = grades
        .iter()
        .flatten()
        .map(|g| grade_key(g))
        .filter(|g| !cats.contains(g))
        .collect();
    extra.sort();
    extra.dedup();
    cats.extend(extra);
    // (plate, well) → count per category, in a fixed order.
    let mut counts: BTreeMap<WellId, Vec<u64>> = BTreeMap::new();
    let mut ungraded = 0u64;
    for i in 0..t.num_rows() {
        let (Some(w), Some(g)) = (&wells[i], &grades[i]) else {
            ungraded += 1;
            continue;
        };
        let k = grade_key(g);
        let Some(ci) = cats.iter().position(|c| *c == k) else {
            continue;
        };
        counts
            .entry((plate[i].clone(), well_key(w)))
            .or_insert_with(|| vec![0; cats.len()])[ci] += 1;
    }
    let totals: Vec<u64> = (0..cats.len())
        .map(|k| counts.values().map(|v| v[k]).sum())
        .collect();
    let all: u64 = totals.iter().sum();
    let pct = |a: u64, b: u64| {
        if b > 0 {
            format!("{:.0} %", 100.0 * a as f64 / b as f64)
        } else {
            "–".into()
        }
    };
    let _ = write!(
        h,
        "<p id=\"colony-summary\">{all} graded colonies in {} wells (column <code>{}</code>): {}{}.</p>",
        counts.len(),
        esc(&grade_col),
        cats.iter()
            .zip(&totals)
            .filter(|(_, n)| **n > 0)
            .map(|(c, n)| format!("{} {n} ({})", esc(c), pct(*n, all)))
            .collect::<Vec<_>>()
            .join(", "),
        if ungraded > 0 {
            format!("; {ungraded} rows without a well or grade")
        } else {
            String::new()
        }
    );
    let legend: Vec<(String, String)> = cats
        .iter()
        .enumerate()
        .map(|(k, c)| (c.clone(), PALETTE[k % PALETTE.len()].to_string()))
        .collect();
    let describe = |name: &str, v: &[u64]| {
        let n: u64 = v.iter().sum();
        format!(
            "{name}: {n} colonies — {}",
            cats.iter()
                .zip(v)
                .filter(|(_, c)| **c > 0)
                .map(|(c, k)| format!("{c} {k} ({})", pct(*k, n)))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    h.push_str("<div class=\"charts\">");
    let mut plate_names: Vec<&String> = counts.keys().map(|k| &k.0).collect();
    plate_names.dedup();
    for p in &plate_names {
        let in_plate: Vec<(&WellId, &Vec<u64>)> =
            counts.iter().filter(|(k, _)| &k.0 == *p).collect();
        let (nr, nc) = shape_of(in_plate.iter().map(|(k, _)| k.1 .1.as_str()));
        let cells: Vec<(usize, usize, usize, String)> = in_plate
            .iter()
            .filter_map(|(k, v)| {
                let pos = k.1 .0?;
                // Dominant grade; ties go to the grade listed first.
                let best = (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b });
                Some((pos.row, pos.col, best, describe(&k.1 .1, v)))
            })
            .collect();
        let title = format!("{p} dominant colony grade per well")
            .trim()
            .to_string();
        h.push_str(&svg::category_map(&title, nr, nc, &cells, &legend));
    }
    if counts.len() <= MAX_BARS {
        let one_plate = plate_names.len() == 1;
        let bars: Vec<(String, Vec<(String, f64)>)> = counts
            .iter()
            .map(|(k, v)| {
                (
                    if one_plate {
                        k.1 .1.clone()
                    } else {
                        format!("{} {}", k.0, k.1 .1).trim().to_string()
                    },
                    cats.iter()
                        .cloned()
                        .zip(v.iter().map(|c| *c as f64))
                        .collect(),
                )
            })
            .collect();
        h.push_str(&svg::stacked("Colony grade composition per well", &bars));
    }
    h.push_str("</div><details><summary>Colonies per well</summary><table id=\"colony-table\"><tr><th>plate</th><th>well</th><th>colonies</th>");
    for c in &cats {
        let _ = write!(h, "<th>{}</th>", esc(c));
    }
    h.push_str("<th>% undifferentiated</th></tr>");
    for (k, v) in &counts {
        let n: u64 = v.iter().sum();
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{n}</td>",
            esc(&k.0),
            esc(&k.1 .1)
        );
        for c in v {
            let _ = write!(h, "<td>{c}</td>");
        }
        let _ = write!(h, "<td>{}</td></tr>", pct(v[0], n));
    }
    h.push_str("</table></details></section>");
    Ok(true)
}

/// The relative-potency cell of every curve of the report's curve table: the ratio with its
/// 95 % interval and reference (the Curves table's `RelativePotency*` columns, from the same
/// function), `–` for the reference curves and curves without an EC50.
pub(crate) fn potency_cells(curves: &[ipscope_stats::plate::PlateCurve]) -> Vec<String> {
    use ipscope_stats::plate::{relative_potencies, CurveRow, COMPOUND, PLATE};
    let rows: Vec<CurveRow> = curves
        .iter()
        .map(|c| CurveRow {
            labels: vec![(PLATE, c.plate.clone()), (COMPOUND, c.compound.clone())],
            readout: c.readout.clone(),
            fit: &c.fit,
        })
        .collect();
    relative_potencies(&rows, None)
        .into_iter()
        .map(|cell| match cell {
            Some(c) => match c.potency {
                Some(r) => format!(
                    "{} ({} – {}) vs {}",
                    num(r.ratio),
                    num(r.lower),
                    num(r.upper),
                    esc(&c.reference)
                ),
                None => format!("– vs {}", esc(&c.reference)),
            },
            None => "–".to_string(),
        })
        .collect()
}

/// An example overlay to embed in the report: a PNG (a thumbnail of the field with the object
/// outlines drawn in) and its caption.
#[derive(Debug, Clone, PartialEq)]
pub struct Overlay {
    /// Caption, e.g. `B03 site 1`.
    pub name: String,
    /// PNG bytes.
    pub png: Vec<u8>,
}

/// The overlay section from thumbnails handed over by the run, as `data:` URIs; `false`
/// (nothing written) when there are none.
pub(crate) fn overlays(h: &mut String, overlays: &[Overlay]) -> bool {
    if overlays.is_empty() {
        return false;
    }
    h.push_str(
        "<section id=\"overlays\"><h2>Example overlays</h2><p class=\"muted\">The first fields \
         of the run with the nuclear stain stretched between its 0.5th and 99.5th percentiles \
         and the segmented nuclei outlined.</p><div class=\"charts\">",
    );
    for o in overlays {
        let _ = write!(
            h,
            "<figure><img class=\"overlay\" alt=\"{}\" src=\"data:image/png;base64,{}\"><figcaption>{}</figcaption></figure>",
            esc(&o.name),
            crate::base64(&o.png),
            esc(&o.name)
        );
    }
    h.push_str("</div></section>");
    true
}

/// One field flagged by image QC.
struct Flagged {
    plate: String,
    well: String,
    site: Option<u64>,
    reason: String,
    quality: Vec<f64>,
}

/// The image-QC part of the flags section: a table of flagged fields with their reasons and
/// `ImageQuality_*` values, and a plate map of flagged fields per well. Returns the number of
/// flagged fields.
pub(crate) fn field_qc(h: &mut String, run: &RunTables) -> Result<usize> {
    h.push_str("<h3>Image QC of fields</h3>");
    let Some(image) = &run.image else {
        h.push_str("<p class=\"muted\" id=\"field-qc\">no Image table in this run</p>");
        return Ok(0);
    };
    let names = column_names(image);
    let flag_col = names.iter().find(|n| {
        n.to_ascii_lowercase().contains("flag")
            && image
                .schema_ref()
                .field_with_name(n)
                .is_ok_and(|f| f.data_type() == &DataType::Boolean)
    });
    let reason_col = names
        .iter()
        .find(|n| n.to_ascii_lowercase().contains("reason") && is_text(image, n));
    let quality_cols: Vec<&String> = names
        .iter()
        .filter(|n| {
            n.starts_with("ImageQuality_")
                && Some(*n) != flag_col
                && Some(*n) != reason_col
                && numeric(image, n).is_ok()
        })
        .collect();
    if flag_col.is_none() && reason_col.is_none() && quality_cols.is_empty() {
        h.push_str(
            "<p class=\"muted\" id=\"field-qc\">no image QC columns (ImageQuality_*, flag, reason) \
             in this run's Image table</p>",
        );
        return Ok(0);
    }
    let n = image.num_rows();
    let flags: Vec<bool> = match flag_col {
        Some(c) => {
            let a = column_bool(image, c)?;
            (0..n).map(|i| a.is_valid(i) && a.value(i)).collect()
        }
        None => vec![false; n],
    };
    let reasons: Vec<Option<String>> = match reason_col {
        Some(c) => text(image, c)?,
        None => vec![None; n],
    };
    let wells: Vec<String> = if has_column(image, "Metadata_Well") {
        text(image, "Metadata_Well")?
            .into_iter()
            .map(|v| v.unwrap_or_default())
            .collect()
    } else {
        vec![String::new(); n]
    };
    let sites: Vec<f64> = if has_column(image, "Metadata_Site") {
        numeric(image, "Metadata_Site")?
    } else {
        vec![f64::NAN; n]
    };
    let plate = plates(image)?;
    let quality: Vec<Vec<f64>> = quality_cols
        .iter()
        .map(|c| numeric(image, c))
        .collect::<ipscope_stats::Result<_>>()?;
    // (plate, well) → (fields, flagged fields, reasons)
    let mut per_well: BTreeMap<WellId, (usize, usize, Vec<String>)> = BTreeMap::new();
    let mut flagged: Vec<Flagged> = Vec::new();
    for i in 0..n {
        let reason = reasons[i].clone().unwrap_or_default();
        let is_flagged = flags[i] || !reason.trim().is_empty();
        let e = per_well
            .entry((plate[i].clone(), well_key(&wells[i])))
            .or_default();
        e.0 += 1;
        if is_flagged {
            e.1 += 1;
            let site = sites[i].is_finite().then_some(sites[i] as u64);
            e.2.push(format!(
                "site {}: {}",
                site.map_or("?".into(), |s| s.to_string()),
                if reason.is_empty() {
                    "flagged"
                } else {
                    &reason
                }
            ));
            flagged.push(Flagged {
                plate: plate[i].clone(),
                well: wells[i].clone(),
                site,
                reason: if reason.is_empty() {
                    "flagged".into()
                } else {
                    reason
                },
                quality: quality.iter().map(|q| q[i]).collect(),
            });
        }
    }
    if flagged.is_empty() {
        let _ = write!(
            h,
            "<p class=\"ok\" id=\"field-qc\">No field flagged by image QC ({n} fields checked).</p>"
        );
    } else {
        // The run's `[qc] exclude_flagged` (default true) decides whether Wells left them out.
        let excluded = run
            .manifest
            .as_ref()
            .and_then(|m| m.pointer("/parameters/qc/exclude_flagged"))
            .and_then(|v| v.as_bool())
            .unwrap_or(true);
        let _ = write!(
            h,
            "<p class=\"flag\">{} of {n} fields flagged by image QC; {}.</p>\
             <table id=\"field-qc\"><tr><th>plate</th><th>well</th><th>site</th><th>reason</th>",
            flagged.len(),
            if excluded {
                "the well statistics leave them out"
            } else {
                "kept in the well statistics ([qc] exclude_flagged = false)"
            }
        );
        for c in &quality_cols {
            let _ = write!(h, "<th>{}</th>", esc(c.trim_start_matches("ImageQuality_")));
        }
        h.push_str("</tr>");
        for f in &flagged {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"flag\">{}</td>",
                esc(&f.plate),
                esc(&f.well),
                f.site.map_or("–".into(), |s| s.to_string()),
                esc(&f.reason)
            );
            for v in &f.quality {
                let _ = write!(h, "<td>{}</td>", num(*v));
            }
            h.push_str("</tr>");
        }
        h.push_str("</table>");
    }
    let legend: Vec<(String, String)> = [
        ("no field flagged", "#1b9e77"),
        ("some fields flagged", "#e6ab02"),
        ("all fields flagged", "#a50f15"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    h.push_str("<div class=\"charts\">");
    let mut plate_names: Vec<&String> = per_well.keys().map(|k| &k.0).collect();
    plate_names.dedup();
    for p in plate_names {
        let in_plate: Vec<_> = per_well.iter().filter(|(k, _)| &k.0 == p).collect();
        let (nr, nc) = shape_of(in_plate.iter().map(|(k, _)| k.1 .1.as_str()));
        let cells: Vec<(usize, usize, usize, String)> = in_plate
            .iter()
            .filter_map(|(k, (fields, bad, why))| {
                let pos = k.1 .0?;
                let cat = if *bad == 0 {
                    0
                } else if bad < fields {
                    1
                } else {
                    2
                };
                let mut tip = format!("{}: {bad} of {fields} fields flagged", k.1 .1);
                for w in why {
                    tip.push('\n');
                    tip.push_str(w);
                }
                Some((pos.row, pos.col, cat, tip))
            })
            .collect();
        let title = format!("{p} fields flagged by image QC").trim().to_string();
        h.push_str(&svg::category_map(&title, nr, nc, &cells, &legend));
    }
    h.push_str("</div>");
    Ok(flagged.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{render, ReportOptions};
    use ipscope_table::{Format, TableBuilder};

    fn write(dir: &std::path::Path, name: &str, b: TableBuilder) {
        let batch = b.finish().unwrap();
        ipscope_table::write_table(
            &dir.join(format!("{name}.parquet")),
            batch.schema(),
            &[batch],
            Format::Parquet,
        )
        .unwrap();
    }

    fn wells96() -> Vec<String> {
        (0..96)
            .map(|i| format!("{}{:02}", (b'A' + (i / 12) as u8) as char, i % 12 + 1))
            .collect()
    }

    /// Colonies and Image tables as the run writes them: grades per colony, QC flags per field.
    #[test]
    fn colony_grades_and_flagged_fields_from_synthetic_tables() {
        let dir = tempfile::tempdir().unwrap();
        let wells = wells96();
        let mut b = TableBuilder::new();
        b.str("Metadata_Plate", vec!["P1".into(); 96])
            .str("Metadata_Well", wells.clone())
            .u64("Count_Nuclei", (0..96).map(|i| 100 + i).collect());
        write(dir.path(), "Wells", b);

        // A01: 3 undifferentiated + 1 differentiating; A02: 1 undifferentiated + 2
        // "Differentiated" (the assay's alias); B05: 2 too small; one colony without a grade.
        let rows: Vec<(&str, Option<&str>)> = vec![
            ("A01", Some("undifferentiated")),
            ("A01", Some("undifferentiated")),
            ("A01", Some("differentiating")),
            ("A01", Some("undifferentiated")),
            ("A02", Some("Differentiated")),
            ("A02", Some("undifferentiated")),
            ("A02", Some("differentiating")),
            ("B05", Some("too_small")),
            ("B05", Some("too_small")),
            ("B05", None),
        ];
        let mut b = TableBuilder::new();
        b.u32("ImageNumber", (0..rows.len() as u32).collect())
            .u32("ObjectNumber", vec![1; rows.len()])
            .str("Metadata_Plate", vec!["P1".into(); rows.len()])
            .str(
                "Metadata_Well",
                rows.iter().map(|r| r.0.to_string()).collect(),
            )
            .opt_str(
                "Colony_Grade",
                rows.iter().map(|r| r.1.map(str::to_string)).collect(),
            );
        write(dir.path(), "Colonies", b);

        // Two fields per well on 3 wells; A01 site 2 saturated, C03 both fields flagged, one
        // reason holding markup.
        let fields = [
            ("A01", 1, false, ""),
            ("A01", 2, true, "saturated 3.2% > 1%"),
            ("B02", 1, false, ""),
            ("B02", 2, false, ""),
            ("C03", 1, true, "low content <b>x</b>"),
            ("C03", 2, true, "out of focus"),
        ];
        let mut b = TableBuilder::new();
        b.u32("ImageNumber", (1..=6).collect())
            .str("Metadata_Plate", vec!["P1".into(); 6])
            .str(
                "Metadata_Well",
                fields.iter().map(|f| f.0.to_string()).collect(),
            )
            .u32("Metadata_Site", fields.iter().map(|f| f.1).collect())
            .str("Status", vec!["ok".into(); 6])
            .f64(
                "ImageQuality_FocusScore",
                vec![0.5, 0.6, 0.7, 0.8, 0.1, 0.05],
            )
            .f64(
                "ImageQuality_PercentMaximal",
                vec![0.0, 3.2, 0.0, 0.0, 0.0, 0.0],
            )
            .bool("ImageQuality_Flagged", fields.iter().map(|f| f.2).collect())
            .str(
                "ImageQuality_Reason",
                fields.iter().map(|f| f.3.to_string()).collect(),
            );
        write(dir.path(), "Image", b);

        let run = RunTables::read(dir.path()).unwrap();
        let html = render(&run, &ReportOptions::default()).unwrap();
        let colonies = &html[html.find("id=\"colonies\"").unwrap()..];
        let colonies = &colonies[..colonies.find("</section>").unwrap()];
        assert!(
            colonies.contains(
                "9 graded colonies in 3 wells (column <code>Colony_Grade</code>): \
                 undifferentiated 4 (44 %), differentiating 3 (33 %), too_small 2 (22 %); \
                 1 rows without a well or grade"
            ),
            "{colonies}"
        );
        // Plate map: three wells coloured by their dominant grade (A02 is a 1:2 split, so
        // differentiating dominates).
        assert_eq!(colonies.matches("class=\"mapwell\"").count(), 3);
        let cell = |well: &str| {
            let i = colonies
                .find(&format!("<title>{well}: "))
                .unwrap_or_else(|| panic!("{well} missing"));
            let start = colonies[..i].rfind("<rect").unwrap();
            colonies[start..i].to_string()
        };
        assert!(cell("A01").contains(PALETTE[0]), "{}", cell("A01"));
        assert!(cell("A02").contains(PALETTE[1]), "{}", cell("A02"));
        assert!(cell("B05").contains(PALETTE[2]), "{}", cell("B05"));
        assert!(colonies
            .contains("A01: 4 colonies — undifferentiated 3 (75 %), differentiating 1 (25 %)"));
        assert!(colonies.contains("class=\"stacked\""));
        assert!(colonies.contains("id=\"colony-table\""));
        assert!(!html.contains("no colony data in this run"));

        let flags = &html[html.find("id=\"flags\"").unwrap()..];
        assert!(
            flags.contains("3 of 6 fields flagged by image QC"),
            "{flags}"
        );
        assert!(flags.contains("saturated 3.2% &gt; 1%"));
        assert!(flags.contains("low content &lt;b&gt;x&lt;/b&gt;"));
        assert!(!html.contains("<b>x</b>"));
        assert!(flags.contains("<th>FocusScore</th>"));
        // Map: A01 partly flagged, B02 clean, C03 all flagged.
        let qc_map = &flags[flags.find("class=\"platemap\"").unwrap()..];
        assert_eq!(qc_map.matches("class=\"mapwell\"").count(), 3);
        assert!(qc_map.contains("C03: 2 of 2 fields flagged"));
        assert!(qc_map.contains("fill=\"#a50f15\""));
        assert!(qc_map.contains("fill=\"#e6ab02\""));
    }

    #[test]
    fn tables_without_the_columns_give_notes() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = TableBuilder::new();
        b.str("Metadata_Well", wells96())
            .u64("Count_Nuclei", vec![5; 96]);
        write(dir.path(), "Wells", b);
        let mut b = TableBuilder::new();
        b.u32("ImageNumber", vec![1])
            .str("Metadata_Well", vec!["A01".into()]);
        write(dir.path(), "Colonies", b);
        let mut b = TableBuilder::new();
        b.u32("ImageNumber", vec![1])
            .str("Metadata_Well", vec!["A01".into()]);
        write(dir.path(), "Image", b);
        let run = RunTables::read(dir.path()).unwrap();
        let html = render(&run, &ReportOptions::default()).unwrap();
        assert!(html.contains("The Colonies table has no grade column."));
        assert!(html.contains("no image QC columns"));
    }
}
