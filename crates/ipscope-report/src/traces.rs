//! The time-lapse section: drawn when the run wrote `Traces` (the calcium and contraction
//! assays).
//!
//! - One thumbnail per well (its first field's trace: ΔF/F0 for calcium, the motion signal
//!   for contraction; `ObjectNumber` 0, the field trace, when per-cell traces are present)
//!   as an SVG polyline, decimated to at most [`MAX_POINTS`] points by keeping the minimum
//!   and maximum of each time bucket, so no beat's peak disappears.
//! - The dose-responses of the beat rate, the amplitude and CTD90c (calcium) or the
//!   contraction duration (contraction), fitted with LL.4 as the Dose-response section.
//!
//! Every name from a table passes through [`esc`].

use std::fmt::Write as _;

use ipscope_stats::curve::Model;
use ipscope_stats::input::{has_column, numeric, text};
use ipscope_stats::plate::{has_dose_layout, plate_curves};

use crate::svg::{esc, num};
use crate::{find_table, read, Result, RunTables};

/// A trace: (time, value) pairs.
type Points = Vec<(f64, f64)>;

/// Points per thumbnail after decimation.
pub const MAX_POINTS: usize = 240;
/// Wells drawn (plate order).
const MAX_WELLS: usize = 384;

/// The signal column and the dose-response readouts of each assay.
const ASSAYS: [(&str, &str, [&str; 3]); 2] = [
    (
        "Trace_DeltaF_F0",
        "ΔF/F0",
        [
            "Median_Calcium_BeatRate",
            "Median_Calcium_Amplitude",
            "Median_Calcium_CTD90c",
        ],
    ),
    (
        "Contraction_Motion",
        "motion",
        [
            "Median_Contraction_BeatRate",
            "Median_Contraction_Amplitude",
            "Median_Contraction_Duration",
        ],
    ),
];

/// Min/max decimation of `(t, y)` to at most `max` points (in time order).
pub fn decimate(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max || max < 2 {
        return points.to_vec();
    }
    let buckets = max / 2;
    let mut out = Vec::with_capacity(2 * buckets);
    for b in 0..buckets {
        let lo = b * points.len() / buckets;
        let hi = ((b + 1) * points.len() / buckets).max(lo + 1);
        let chunk = &points[lo..hi];
        let (mut imin, mut imax) = (0, 0);
        for (i, p) in chunk.iter().enumerate() {
            if p.1 < chunk[imin].1 {
                imin = i;
            }
            if p.1 > chunk[imax].1 {
                imax = i;
            }
        }
        let (a, c) = (imin.min(imax), imin.max(imax));
        out.push(chunk[a]);
        if c != a {
            out.push(chunk[c]);
        }
    }
    out
}

/// One thumbnail: the trace as a polyline in a 170 × 64 box, its own y range.
fn thumbnail(title: &str, points: &[(f64, f64)]) -> String {
    let (w, h, pad) = (170.0, 64.0, 3.0);
    let fin: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .collect();
    let (t0, t1) = fin.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |a, p| {
        (a.0.min(p.0), a.1.max(p.0))
    });
    let (y0, y1) = fin.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |a, p| {
        (a.0.min(p.1), a.1.max(p.1))
    });
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"trace\" width=\"{w}\" height=\"{}\" viewBox=\"0 0 {w} {}\" role=\"img\">\
         <title>{}</title><text class=\"ax\" x=\"2\" y=\"10\">{}</text>",
        h + 12.0,
        h + 12.0,
        esc(title),
        esc(title)
    );
    if fin.len() >= 2 && t1 > t0 {
        let dy = if y1 > y0 { y1 - y0 } else { 1.0 };
        let pts: Vec<String> = fin
            .iter()
            .map(|&(t, y)| {
                format!(
                    "{:.1},{:.1}",
                    pad + (t - t0) / (t1 - t0) * (w - 2.0 * pad),
                    12.0 + h - pad - (y - y0) / dy * (h - 2.0 * pad)
                )
            })
            .collect();
        let _ = write!(
            s,
            "<polyline fill=\"none\" stroke=\"#08519c\" stroke-width=\"1\" points=\"{}\"/>",
            pts.join(" ")
        );
    }
    s.push_str("</svg>");
    s
}

/// Writes the section when the run has a Traces table; nothing otherwise.
pub(crate) fn section(h: &mut String, run: &RunTables) -> Result<()> {
    let Some(path) = find_table(&run.out_dir, "Traces") else {
        return Ok(());
    };
    let traces = read(&path)?;
    let Some((column, label, readouts)) = ASSAYS
        .iter()
        .find(|(c, _, _)| has_column(&traces, c))
        .copied()
    else {
        return Ok(());
    };
    if !(has_column(&traces, "Metadata_Well") && has_column(&traces, "Time")) {
        return Ok(());
    }
    let wells = text(&traces, "Metadata_Well")?;
    let sites = if has_column(&traces, "Metadata_Site") {
        numeric(&traces, "Metadata_Site")?
    } else {
        vec![1.0; traces.num_rows()]
    };
    let objects = if has_column(&traces, "ObjectNumber") {
        numeric(&traces, "ObjectNumber")?
    } else {
        vec![0.0; traces.num_rows()]
    };
    let time = numeric(&traces, "Time")?;
    let value = numeric(&traces, column)?;
    // Each well's first field, in table (plate) order.
    let mut series: Vec<(String, f64, Points)> = Vec::new();
    for i in 0..traces.num_rows() {
        let Some(w) = &wells[i] else { continue };
        if objects[i] != 0.0 {
            continue;
        }
        let full = series.len() >= MAX_WELLS;
        match series.iter_mut().find(|s| &s.0 == w) {
            Some(s) if s.1 == sites[i] => s.2.push((time[i], value[i])),
            Some(_) => {}
            None if !full => series.push((w.clone(), sites[i], vec![(time[i], value[i])])),
            None => {}
        }
    }
    let _ = write!(
        h,
        "<section id=\"traces\"><h2>Traces</h2><p class=\"muted\">{} of each well's first \
         field against time, each on its own scale (min/max-decimated to at most {MAX_POINTS} \
         points).</p><div class=\"charts\">",
        esc(label)
    );
    for (w, site, pts) in &series {
        let title = format!("{w} s{site}");
        h.push_str(&thumbnail(&title, &decimate(pts, MAX_POINTS)));
    }
    h.push_str("</div>");
    let chosen: Vec<String> = readouts
        .iter()
        .filter(|r| has_column(&run.wells, r))
        .map(|r| r.to_string())
        .collect();
    if has_dose_layout(&run.wells) && !chosen.is_empty() {
        let curves = plate_curves(&run.wells, &chosen, Model::Ll4)?;
        h.push_str("<h3>Dose-response of the trace readouts</h3><div class=\"charts\">");
        for r in &chosen {
            for c in curves.iter().filter(|c| &c.readout == r) {
                let title = format!(
                    "{} — {} (EC50 {})",
                    c.compound,
                    r.trim_start_matches("Median_").replace('_', " "),
                    c.fit.ec50_value().map(num).unwrap_or_else(|| c
                        .fit
                        .status
                        .as_str()
                        .to_string())
                );
                h.push_str(&crate::svg::curve(&title, &c.doses, &c.responses, &c.fit));
            }
        }
        h.push_str("</div>");
    }
    h.push_str("</section>");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimation_keeps_every_peak_and_the_order() {
        // 10 000 samples, one narrow spike every 1000.
        let pts: Vec<(f64, f64)> = (0..10_000)
            .map(|i| (i as f64, if i % 1000 == 500 { 1.0 } else { 0.0 }))
            .collect();
        let d = decimate(&pts, MAX_POINTS);
        assert!(d.len() <= MAX_POINTS);
        assert_eq!(d.iter().filter(|p| p.1 == 1.0).count(), 10);
        assert!(d.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(decimate(&pts[..5], MAX_POINTS), pts[..5].to_vec());
    }

    #[test]
    fn thumbnail_escapes_its_title_and_draws_a_polyline() {
        let s = thumbnail("<b>A01", &[(0.0, 0.0), (1.0, 2.0), (2.0, 1.0)]);
        assert!(s.contains("&lt;b&gt;A01") && !s.contains("<b>"));
        assert!(s.contains("<polyline"));
        assert!(!thumbnail("x", &[(0.0, 1.0)]).contains("<polyline"));
    }
}
