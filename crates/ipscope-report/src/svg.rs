//! Inline SVG charts: plate heatmaps, control strip plots and dose-response curves. Text from
//! tables passes through [`esc`] before it reaches the markup.

use std::fmt::Write as _;

use ipscope_stats::curve::{predict, CurveFit};

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Short number for labels.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "–".to_string();
    }
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        format!("{v:.3e}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
    }
}

/// Viridis, sampled at 9 stops and interpolated linearly; `t` in [0, 1].
fn viridis(t: f64) -> String {
    const STOPS: [(u8, u8, u8); 9] = [
        (68, 1, 84),
        (71, 44, 122),
        (59, 81, 139),
        (44, 113, 142),
        (33, 144, 141),
        (39, 173, 129),
        (92, 200, 99),
        (170, 220, 50),
        (253, 231, 37),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = t * (STOPS.len() - 1) as f64;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |p: u8, q: u8| (p as f64 + (q as f64 - p as f64) * f).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(a.0, b.0),
        mix(a.1, b.1),
        mix(a.2, b.2)
    )
}

fn row_name(r: usize) -> String {
    if r < 26 {
        ((b'A' + r as u8) as char).to_string()
    } else {
        format!(
            "{}{}",
            (b'A' + (r / 26 - 1) as u8) as char,
            (b'A' + (r % 26) as u8) as char
        )
    }
}

/// A plate heatmap: `cells` are (row, col, value, tooltip) on a `rows × cols` plate.
pub fn heatmap(
    title: &str,
    rows: usize,
    cols: usize,
    cells: &[(usize, usize, f64, String)],
) -> String {
    let cell = if cols > 24 {
        9.0
    } else if cols > 12 {
        18.0
    } else {
        30.0
    };
    let (left, top) = (28.0, 34.0);
    let w = left + cell * cols as f64 + 90.0;
    let h = top + cell * rows as f64 + 10.0;
    let finite: Vec<f64> = cells
        .iter()
        .map(|c| c.2)
        .filter(|v| v.is_finite())
        .collect();
    let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let span = if hi > lo { hi - lo } else { 1.0 };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="heatmap" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img"><title>{}</title><text x="{left}" y="14" class="t">{}</text>"#,
        esc(title),
        esc(title)
    );
    for c in 0..cols {
        if cols <= 24 || c % 4 == 0 {
            let _ = write!(
                s,
                r#"<text x="{}" y="{}" class="ax" text-anchor="middle">{}</text>"#,
                left + cell * (c as f64 + 0.5),
                top - 4.0,
                c + 1
            );
        }
    }
    for r in 0..rows {
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" class="ax" text-anchor="end">{}</text>"#,
            left - 4.0,
            top + cell * (r as f64 + 0.7),
            row_name(r)
        );
        for c in 0..cols {
            let _ = write!(
                s,
                r##"<rect x="{}" y="{}" width="{}" height="{}" fill="#eee" stroke="#fff"/>"##,
                left + cell * c as f64,
                top + cell * r as f64,
                cell,
                cell
            );
        }
    }
    for (r, c, v, tip) in cells {
        let fill = if v.is_finite() {
            viridis((v - lo) / span)
        } else {
            "#bbb".to_string()
        };
        let _ = write!(
            s,
            r##"<rect class="well" x="{}" y="{}" width="{}" height="{}" fill="{fill}" stroke="#fff"><title>{}</title></rect>"##,
            left + cell * *c as f64,
            top + cell * *r as f64,
            cell,
            cell,
            esc(tip)
        );
    }
    // Colour bar.
    let bx = left + cell * cols as f64 + 14.0;
    let bh = cell * rows as f64;
    for i in 0..20 {
        let _ = write!(
            s,
            r#"<rect x="{bx}" y="{}" width="12" height="{}" fill="{}"/>"#,
            top + bh * (19 - i) as f64 / 20.0,
            bh / 20.0 + 0.5,
            viridis(i as f64 / 19.0)
        );
    }
    if !finite.is_empty() {
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" class="ax">{}</text><text x="{}" y="{}" class="ax">{}</text>"#,
            bx + 16.0,
            top + 8.0,
            num(hi),
            bx + 16.0,
            top + bh,
            num(lo)
        );
    }
    s.push_str("</svg>");
    s
}

/// Linear axis mapping.
struct Axis {
    lo: f64,
    hi: f64,
    a: f64,
    b: f64,
}

impl Axis {
    fn new(lo: f64, hi: f64, a: f64, b: f64) -> Axis {
        let (lo, hi) = if hi > lo {
            (lo, hi)
        } else {
            (lo - 0.5, lo + 0.5)
        };
        Axis { lo, hi, a, b }
    }
    fn at(&self, v: f64) -> f64 {
        self.a + (v - self.lo) / (self.hi - self.lo) * (self.b - self.a)
    }
}

fn range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let pad = if hi > lo { 0.08 * (hi - lo) } else { 0.5 };
    Some((lo - pad, hi + pad))
}

/// Strip plot of the negative and positive control values.
pub fn controls(title: &str, negative: &[f64], positive: &[f64]) -> String {
    let (w, h) = (330.0, 200.0);
    let Some((lo, hi)) = range(negative.iter().chain(positive).copied()) else {
        return String::new();
    };
    let y = Axis::new(lo, hi, h - 24.0, 26.0);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="controls" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img"><title>{}</title><text x="8" y="14" class="t">{}</text><line x1="60" y1="{}" x2="60" y2="{}" class="axis"/>"#,
        esc(title),
        esc(title),
        y.at(lo),
        y.at(hi)
    );
    for v in [lo, (lo + hi) / 2.0, hi] {
        let _ = write!(
            s,
            r#"<text x="56" y="{}" class="ax" text-anchor="end">{}</text>"#,
            y.at(v) + 3.0,
            num(v)
        );
    }
    for (k, (name, values, colour)) in [
        ("negative", negative, "#2c7fb8"),
        ("positive", positive, "#d95f0e"),
    ]
    .into_iter()
    .enumerate()
    {
        let cx = 130.0 + 120.0 * k as f64;
        let _ = write!(
            s,
            r#"<text x="{cx}" y="{}" class="ax" text-anchor="middle">{name} (n={})</text>"#,
            h - 6.0,
            values.len()
        );
        for (i, v) in values.iter().enumerate() {
            if !v.is_finite() {
                continue;
            }
            // Deterministic jitter so that equal values stay visible.
            let jitter = ((i * 37) % 17) as f64 - 8.0;
            let _ = write!(
                s,
                r#"<circle cx="{}" cy="{}" r="3" fill="{colour}" fill-opacity="0.7"><title>{}</title></circle>"#,
                cx + 2.0 * jitter,
                y.at(*v),
                num(*v)
            );
        }
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        if !sorted.is_empty() {
            let m = sorted.iter().sum::<f64>() / sorted.len() as f64;
            let _ = write!(
                s,
                r##"<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="#000" stroke-width="2"/>"##,
                cx - 24.0,
                cx + 24.0,
                y.at(m),
                y.at(m)
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// Dose-response chart: points (dose 0 drawn one decade left of the lowest dose, after an
/// axis break), the fitted curve and its pointwise 95 % confidence band.
pub fn curve(title: &str, doses: &[f64], responses: &[f64], fit: &CurveFit) -> String {
    let (w, h) = (360.0, 250.0);
    let pos: Vec<f64> = doses.iter().copied().filter(|d| *d > 0.0).collect();
    let (dlo, dhi) = match (
        pos.iter().copied().fold(f64::INFINITY, f64::min),
        pos.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    ) {
        (a, b) if a.is_finite() && b.is_finite() => (a.log10(), b.log10()),
        _ => return format!("<p>{}: no positive doses</p>", esc(title)),
    };
    let zero_at = dlo - 1.0;
    let x = Axis::new(zero_at - 0.3, dhi + 0.3, 58.0, w - 12.0);
    let lx = |d: f64| if d > 0.0 { d.log10() } else { zero_at };
    let grid: Vec<f64> = (0..=120)
        .map(|i| 10f64.powf(dlo - 0.3 + (dhi - dlo + 0.6) * i as f64 / 120.0))
        .collect();
    let model = fit.params.map(|p| (fit.model, p));
    let fitted: Vec<(f64, f64)> = match model {
        Some((m, p)) => grid.iter().map(|&d| (d, predict(m, &p, d))).collect(),
        None => Vec::new(),
    };
    let band: Vec<(f64, f64, f64)> = if fit.status.has_ec50() {
        grid.iter()
            .filter_map(|&d| fit.band(d).map(|(l, u)| (d, l, u)))
            .collect()
    } else {
        Vec::new()
    };
    let Some((ylo, yhi)) = range(
        responses
            .iter()
            .copied()
            .chain(fitted.iter().map(|p| p.1))
            .chain(band.iter().flat_map(|b| [b.1, b.2])),
    ) else {
        return format!("<p>{}: no finite responses</p>", esc(title));
    };
    let y = Axis::new(ylo, yhi, h - 34.0, 24.0);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="curve" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img"><title>{}</title><text x="8" y="14" class="t">{}</text>"#,
        esc(title),
        esc(title)
    );
    // Axes and decade ticks.
    let _ = write!(
        s,
        r#"<line x1="{}" y1="{}" x2="{}" y2="{}" class="axis"/><line x1="{}" y1="{}" x2="{}" y2="{}" class="axis"/>"#,
        x.a, y.a, x.b, y.a, x.a, y.a, x.a, y.b
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" class="ax" text-anchor="middle">0</text><text x="{}" y="{}" class="ax">//</text>"#,
        x.at(zero_at),
        y.a + 14.0,
        x.at(zero_at + 0.5) - 4.0,
        y.a + 4.0
    );
    let mut k = dlo.floor() as i32;
    while (k as f64) <= dhi.ceil() {
        let v = k as f64;
        if v >= dlo - 0.3 && v <= dhi + 0.3 {
            let _ = write!(
                s,
                r#"<text x="{}" y="{}" class="ax" text-anchor="middle">{}</text>"#,
                x.at(v),
                y.a + 14.0,
                num(10f64.powi(k))
            );
        }
        k += 1;
    }
    for v in [ylo, (ylo + yhi) / 2.0, yhi] {
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" class="ax" text-anchor="end">{}</text>"#,
            x.a - 4.0,
            y.at(v) + 3.0,
            num(v)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" class="ax" text-anchor="middle">dose</text>"#,
        (x.a + x.b) / 2.0,
        h - 4.0
    );
    if !band.is_empty() {
        let mut pts: Vec<String> = band
            .iter()
            .map(|(d, _, u)| format!("{:.2},{:.2}", x.at(d.log10()), y.at(*u)))
            .collect();
        pts.extend(
            band.iter()
                .rev()
                .map(|(d, l, _)| format!("{:.2},{:.2}", x.at(d.log10()), y.at(*l))),
        );
        let _ = write!(
            s,
            r##"<polygon class="ci" points="{}" fill="#9ecae1" fill-opacity="0.45" stroke="none"/>"##,
            pts.join(" ")
        );
    }
    if !fitted.is_empty() {
        let pts: Vec<String> = fitted
            .iter()
            .map(|(d, v)| format!("{:.2},{:.2}", x.at(d.log10()), y.at(*v)))
            .collect();
        let dash = if fit.status.has_ec50() {
            ""
        } else {
            r#" stroke-dasharray="4 3""#
        };
        let _ = write!(
            s,
            r##"<polyline class="fit" points="{}" fill="none" stroke="#08519c" stroke-width="2"{dash}/>"##,
            pts.join(" ")
        );
    }
    for (d, r) in doses.iter().zip(responses) {
        if r.is_finite() {
            let _ = write!(
                s,
                r##"<circle class="pt" cx="{:.2}" cy="{:.2}" r="3" fill="#444"><title>dose {}: {}</title></circle>"##,
                x.at(lx(*d)),
                y.at(*r),
                num(*d),
                num(*r)
            );
        }
    }
    if let Some(ec) = fit.ec50 {
        if ec.estimate > 0.0 {
            let xe = x.at(ec.estimate.log10());
            if xe >= x.a && xe <= x.b {
                let _ = write!(
                    s,
                    r##"<line x1="{xe:.2}" x2="{xe:.2}" y1="{}" y2="{}" stroke="#d95f0e" stroke-dasharray="3 3"/>"##,
                    y.a, y.b
                );
            }
        }
    }
    s.push_str("</svg>");
    s
}

/// Stacked horizontal bars: one bar per label with its parts (name, value).
pub fn stacked(title: &str, bars: &[(String, Vec<(String, f64)>)]) -> String {
    let row = 14.0;
    // Label column wide enough for the longest label (about 6 px per character at 10 px).
    let label_w = bars
        .iter()
        .map(|b| b.0.chars().count())
        .max()
        .map_or(48.0, |n| (6.0 * n as f64).max(48.0));
    let w = label_w + 20.0 + 440.0;
    let h = 30.0 + row * bars.len() as f64;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="stacked" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img"><title>{}</title><text x="8" y="14" class="t">{}</text>"#,
        esc(title),
        esc(title)
    );
    for (i, (label, parts)) in bars.iter().enumerate() {
        let yy = 22.0 + row * i as f64;
        let total: f64 = parts.iter().map(|p| p.1.max(0.0)).sum();
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" class="ax" text-anchor="end">{}</text>"#,
            label_w + 4.0,
            yy + 10.0,
            esc(label)
        );
        let mut x0 = label_w + 8.0;
        for (k, (name, v)) in parts.iter().enumerate() {
            if total <= 0.0 {
                break;
            }
            let wpart = 440.0 * v.max(0.0) / total;
            let _ = write!(
                s,
                r#"<rect x="{x0:.2}" y="{yy}" width="{wpart:.2}" height="{}" fill="{}"><title>{}: {}</title></rect>"#,
                row - 2.0,
                PALETTE[k % PALETTE.len()],
                esc(name),
                num(*v)
            );
            x0 += wpart;
        }
    }
    s.push_str("</svg>");
    s
}

/// Category colours of [`stacked`] bars, in order (ColorBrewer Dark2).
pub const PALETTE: [&str; 6] = [
    "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02",
];

/// A plate map coloured by category: `cells` are (row, col, category index into `legend`,
/// tooltip) on a `rows × cols` plate; `legend` gives each category's name and colour. Wells
/// without a cell stay grey. Cells carry `class="mapwell"` (not `well`: they are not a metric).
pub fn category_map(
    title: &str,
    rows: usize,
    cols: usize,
    cells: &[(usize, usize, usize, String)],
    legend: &[(String, String)],
) -> String {
    let cell = if cols > 24 {
        9.0
    } else if cols > 12 {
        18.0
    } else {
        30.0
    };
    let (left, top) = (28.0, 34.0);
    let legend_w = 16.0 + 7.0 * legend.iter().map(|l| l.0.len()).max().unwrap_or(0) as f64;
    let w = left + cell * cols as f64 + 24.0 + legend_w;
    let h = (top + cell * rows as f64 + 10.0).max(top + 16.0 * legend.len() as f64 + 10.0);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="platemap" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img"><title>{}</title><text x="{left}" y="14" class="t">{}</text>"#,
        esc(title),
        esc(title)
    );
    for c in 0..cols {
        if cols <= 24 || c % 4 == 0 {
            let _ = write!(
                s,
                r#"<text x="{}" y="{}" class="ax" text-anchor="middle">{}</text>"#,
                left + cell * (c as f64 + 0.5),
                top - 4.0,
                c + 1
            );
        }
    }
    for r in 0..rows {
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" class="ax" text-anchor="end">{}</text>"#,
            left - 4.0,
            top + cell * (r as f64 + 0.7),
            row_name(r)
        );
        for c in 0..cols {
            let _ = write!(
                s,
                r##"<rect x="{}" y="{}" width="{cell}" height="{cell}" fill="#eee" stroke="#fff"/>"##,
                left + cell * c as f64,
                top + cell * r as f64,
            );
        }
    }
    for (r, c, k, tip) in cells {
        let fill = legend.get(*k).map_or("#bbb", |l| l.1.as_str());
        let _ = write!(
            s,
            r##"<rect class="mapwell" x="{}" y="{}" width="{cell}" height="{cell}" fill="{}" stroke="#fff"><title>{}</title></rect>"##,
            left + cell * *c as f64,
            top + cell * *r as f64,
            esc(fill),
            esc(tip)
        );
    }
    let lx = left + cell * cols as f64 + 14.0;
    for (i, (name, colour)) in legend.iter().enumerate() {
        let y = top + 16.0 * i as f64;
        let _ = write!(
            s,
            r#"<rect x="{lx}" y="{y}" width="12" height="12" fill="{}"/><text x="{}" y="{}" class="ax">{}</text>"#,
            esc(colour),
            lx + 16.0,
            y + 10.0,
            esc(name)
        );
    }
    s.push_str("</svg>");
    s
}
