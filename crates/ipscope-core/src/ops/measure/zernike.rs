//! Zernike shape moments per object, as CellProfiler's MeasureObjectSizeShape
//! (`AreaShape_Zernike_<n>_<m>`, centrosome `zernike`, cp-measure `get_zernike`) defines them.
//!
//! - The unit disk is the object's minimum enclosing circle of its pixel centres (centrosome's
//!   `minimum_enclosing_circle`). The circle is found exactly (integer in-circle tests on the
//!   convex hull's vertices, incremental Welzl algorithm in a fixed order), then its centre and
//!   radius are evaluated with centrosome's formulas: midpoint and half distance for two
//!   defining points, the circumcentre formula and the distance to the first point for three.
//! - Pixel `(row, col)` maps to `y = (row − cy) / r`, `x = (col − cx) / r`, `z = y + i·x`
//!   (centrosome's convention); pixels with `x² + y² > 1` contribute nothing.
//! - For every `n ≤ 9` and `m = n mod 2, n mod 2 + 2, …, n`: the moment is
//!   `Σ R_nm(ρ) · z^m` over the object's pixels (radial polynomial by Horner's scheme on ρ²
//!   with centrosome's factorial table), and the feature is `|moment| / (π r²)`.
//! - A one-pixel object has radius 0: its features are NaN, as in CellProfiler.
//!
//! Cost: one pass over each object's bounding box, 30 polynomial evaluations per pixel.

use super::measure_shape;
use ipscope_image::Labels;

/// Highest Zernike degree CellProfiler measures.
pub const ZERNIKE_DEGREE: usize = 9;

/// `(n, m)` of every feature, CellProfiler's order (`AreaShape_Zernike_<n>_<m>`).
pub fn zernike_indexes() -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    for n in 0..=ZERNIKE_DEGREE {
        for m in (n % 2..=n).step_by(2) {
            v.push((n, m));
        }
    }
    v
}

type Pt = (i64, i64); // (row, col)

fn cross(o: Pt, a: Pt, b: Pt) -> i128 {
    ((a.0 - o.0) as i128) * ((b.1 - o.1) as i128) - ((a.1 - o.1) as i128) * ((b.0 - o.0) as i128)
}

/// Convex hull vertices of the points (monotone chain, collinear points dropped).
fn hull(mut pts: Vec<Pt>) -> Vec<Pt> {
    pts.sort_unstable();
    pts.dedup();
    if pts.len() < 3 {
        return pts;
    }
    let mut out: Vec<Pt> = Vec::with_capacity(2 * pts.len());
    for pass in 0..2 {
        let start = out.len();
        let iter: Box<dyn Iterator<Item = &Pt>> = if pass == 0 {
            Box::new(pts.iter())
        } else {
            Box::new(pts.iter().rev())
        };
        for &p in iter {
            while out.len() >= start + 2 && cross(out[out.len() - 2], out[out.len() - 1], p) <= 0 {
                out.pop();
            }
            out.push(p);
        }
        out.pop();
    }
    if out.len() < 2 {
        // all points collinear and identical ends: keep the extremes
        return vec![pts[0], pts[pts.len() - 1]];
    }
    out
}

#[derive(Clone, Copy)]
enum Circle {
    One(Pt),
    Two(Pt, Pt),
    Three(Pt, Pt, Pt),
}

fn inside(c: Circle, p: Pt) -> bool {
    match c {
        Circle::One(a) => p == a,
        Circle::Two(a, b) => {
            let d = (p.0 - a.0) as i128 * (p.0 - b.0) as i128
                + (p.1 - a.1) as i128 * (p.1 - b.1) as i128;
            d <= 0
        }
        Circle::Three(a, b, c) => {
            let o = cross(a, b, c);
            let row = |q: Pt| {
                let (dy, dx) = ((q.0 - p.0) as i128, (q.1 - p.1) as i128);
                (dy, dx, dy * dy + dx * dx)
            };
            let (a0, a1, a2) = row(a);
            let (b0, b1, b2) = row(b);
            let (c0, c1, c2) = row(c);
            let det =
                a0 * (b1 * c2 - b2 * c1) - a1 * (b0 * c2 - b2 * c0) + a2 * (b0 * c1 - b1 * c0);
            if o > 0 {
                det >= 0
            } else if o < 0 {
                det <= 0
            } else {
                false
            }
        }
    }
}

fn circle3(a: Pt, b: Pt, c: Pt) -> Circle {
    if cross(a, b, c) != 0 {
        return Circle::Three(a, b, c);
    }
    // collinear: the two farthest apart
    let d = |p: Pt, q: Pt| (p.0 - q.0).pow(2) + (p.1 - q.1).pow(2);
    let best = [(a, b), (a, c), (b, c)]
        .into_iter()
        .max_by_key(|&(p, q)| d(p, q))
        .unwrap_or((a, b));
    Circle::Two(best.0, best.1)
}

/// Exact minimum enclosing circle of at least two distinct points (incremental Welzl).
fn mec(pts: &[Pt]) -> Circle {
    let mut c = Circle::One(pts[0]);
    for i in 1..pts.len() {
        if inside(c, pts[i]) {
            continue;
        }
        c = Circle::One(pts[i]);
        for j in 0..i {
            if inside(c, pts[j]) {
                continue;
            }
            c = Circle::Two(pts[i], pts[j]);
            for k in 0..j {
                if !inside(c, pts[k]) {
                    c = circle3(pts[i], pts[j], pts[k]);
                }
            }
        }
    }
    c
}

/// Centre `(row, col)` and radius with centrosome's floating-point formulas.
fn centre_radius(c: Circle) -> (f64, f64, f64) {
    match c {
        Circle::One(a) => (a.0 as f64, a.1 as f64, 0.0),
        Circle::Two(a, b) => {
            let (a0, a1, b0, b1) = (a.0 as f64, a.1 as f64, b.0 as f64, b.1 as f64);
            let r = ((a0 - b0).powi(2) + (a1 - b1).powi(2)).sqrt() / 2.0;
            ((a0 + b0) / 2.0, (a1 + b1) / 2.0, r)
        }
        Circle::Three(s0, s1, v) => {
            let f = |p: Pt| (p.0 as f64, p.1 as f64);
            let ((s0y, s0x), (s1y, s1x), (vy, vx)) = (f(s0), f(s1), f(v));
            let d = 2.0 * (s0x * (s1y - vy) + s1x * (vy - s0y) + vx * (s0y - s1y));
            let (n0, n1, n2) = (
                s0y * s0y + s0x * s0x,
                s1y * s1y + s1x * s1x,
                vy * vy + vx * vx,
            );
            let x = (n0 * (s1y - vy) + n1 * (vy - s0y) + n2 * (s0y - s1y)) / d;
            let y = (n0 * (vx - s1x) + n1 * (s0x - vx) + n2 * (s1x - s0x)) / d;
            let r = ((s0y - y).powi(2) + (s0x - x).powi(2)).sqrt();
            (y, x, r)
        }
    }
}

/// centrosome's `minimum_enclosing_circle` (Chrystal's algorithm) on hull vertices `h` sorted
/// counter-clockwise (ascending `atan2(row, col)` around the centroid) from the leftmost
/// (then topmost) vertex, starting from the two first vertices;
/// returns the defining points in centrosome's roles, or None when it does not settle.
fn chrystal(h: &[Pt]) -> Option<Circle> {
    let f = |p: Pt| (p.0 as f64, p.1 as f64);
    let (mut s0, mut s1) = (0usize, 1usize);
    let half = std::f64::consts::FRAC_PI_2;
    for _ in 0..4 * h.len() + 8 {
        let (a, b) = (f(h[s0]), f(h[s1]));
        let s01 = (a.0 - b.0, a.1 - b.1);
        let n01 = s01.0 * s01.0 + s01.1 * s01.1;
        // first vertex (hull order) with the smallest angle s0-v-s1
        let mut best: Option<(usize, f64, f64, f64)> = None;
        for (k, &v) in h.iter().enumerate() {
            if k == s0 || k == s1 {
                continue;
            }
            let v = f(v);
            let vs0 = (v.0 - a.0, v.1 - a.1);
            let vs1 = (v.0 - b.0, v.1 - b.1);
            let at_s1 = ((s01.0 * vs1.0 + s01.1 * vs1.1)
                / (n01 * (vs1.0 * vs1.0 + vs1.1 * vs1.1)).sqrt())
            .acos()
            .abs();
            let at_s0 = ((-s01.0 * vs0.0 + -s01.1 * vs0.1)
                / (n01 * (vs0.0 * vs0.0 + vs0.1 * vs0.1)).sqrt())
            .acos()
            .abs();
            let at_v = std::f64::consts::PI - at_s1 - at_s0;
            if best.is_none_or(|(_, _, _, m)| at_v < m) {
                best = Some((k, at_s0, at_s1, at_v));
            }
        }
        let Some((k, at_s0, at_s1, at_v)) = best else {
            return Some(Circle::Two(h[s0], h[s1]));
        };
        if at_v >= half {
            return Some(Circle::Two(h[s0], h[s1]));
        }
        if at_s1 <= half && at_s0 <= half {
            return Some(Circle::Three(h[s0], h[s1], h[k]));
        }
        if at_s0 > half {
            s0 = k;
        } else {
            s1 = k;
        }
    }
    None
}

/// Minimum enclosing circle `(centre row, centre col, radius)` of an object's pixel centres,
/// given as `(row, first col, last col)` runs; `centre` (an interior point) orders the hull;
/// radius 0 for one pixel.
fn enclosing_circle(rows: &[(i64, i64, i64)], centre: (f64, f64)) -> (f64, f64, f64) {
    let mut pts = Vec::with_capacity(2 * rows.len());
    for &(r, a, b) in rows {
        pts.push((r, a));
        pts.push((r, b));
    }
    let mut h = hull(pts);
    if h.len() == 1 {
        return (h[0].0 as f64, h[0].1 as f64, 0.0);
    }
    let angle = |p: &Pt| (p.0 as f64 - centre.0).atan2(p.1 as f64 - centre.1);
    h.sort_by(|p, q| angle(p).total_cmp(&angle(q)));
    // centrosome's hull starts at the leftmost vertex (topmost among ties)
    if let Some(first) = (0..h.len()).min_by_key(|&k| (h[k].1, h[k].0)) {
        h.rotate_left(first);
    }
    if h.len() > 2 {
        if let Some(c) = chrystal(&h) {
            return centre_radius(c);
        }
    }
    // fixed pseudo-random order (deterministic) keeps the incremental algorithm linear on average
    let mut order = h;
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in (1..order.len()).rev() {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let j = (s >> 33) as usize % (i + 1);
        order.swap(i, j);
    }
    centre_radius(mec(&order))
}

/// centrosome's `construct_zernike_lookuptable`: Horner coefficients of each radial polynomial.
fn lookup_table(idx: &[(usize, usize)]) -> Vec<Vec<f64>> {
    let mut fact = [1f64; ZERNIKE_DEGREE + 1];
    for k in 1..=ZERNIKE_DEGREE {
        fact[k] = fact[k - 1] * k as f64;
    }
    idx.iter()
        .map(|&(n, m)| {
            let (p, q) = ((n + m) / 2, (n - m) / 2);
            let mut alt = 1.0;
            (0..=q)
                .map(|k| {
                    let v = alt * fact[n - k] / (fact[k] * fact[p - k] * fact[q - k]);
                    alt = -alt;
                    v
                })
                .collect()
        })
        .collect()
}

/// Zernike features of every object `1..=count` (index `i` = label `i + 1`), each in
/// [`zernike_indexes`] order; NaN for absent labels and one-pixel objects.
pub fn measure_zernike(labels: &Labels) -> Vec<Vec<f64>> {
    let idx = zernike_indexes();
    let lut = lookup_table(&idx);
    let mmax = ZERNIKE_DEGREE;
    let lab = labels.image();
    let mut re = vec![0f64; idx.len()];
    let mut im = vec![0f64; idx.len()];
    let mut pows = vec![(0f64, 0f64); mmax + 1];
    measure_shape(labels)
        .iter()
        .map(|s| {
            if s.area == 0 {
                return vec![f64::NAN; idx.len()];
            }
            let (r0, c0, r1, c1) = (s.bbox_min_y, s.bbox_min_x, s.bbox_max_y, s.bbox_max_x);
            let mut runs = Vec::with_capacity(r1 - r0);
            for r in r0..r1 {
                let row = &lab.row(r)[c0..c1];
                if let (Some(a), Some(b)) = (
                    row.iter().position(|&l| l == s.label),
                    row.iter().rposition(|&l| l == s.label),
                ) {
                    runs.push((r as i64, (c0 + a) as i64, (c0 + b) as i64));
                }
            }
            // centrosome orders the hull by angle around the bounding box's centre
            let centre = ((r0 + r1 - 1) as f64 / 2.0, (c0 + c1 - 1) as f64 / 2.0);
            let (cy, cx, rad) = enclosing_circle(&runs, centre);
            re.iter_mut().for_each(|v| *v = 0.0);
            im.iter_mut().for_each(|v| *v = 0.0);
            for r in r0..r1 {
                let row = &lab.row(r)[c0..c1];
                for (k, &l) in row.iter().enumerate() {
                    if l != s.label {
                        continue;
                    }
                    let ym = (r as f64 - cy) / rad;
                    let xm = ((c0 + k) as f64 - cx) / rad;
                    let r2 = xm * xm + ym * ym;
                    // z = ym + i·xm and its powers by repeated multiplication
                    let (zr, zi) = (ym, xm);
                    pows[1] = (zr, zi);
                    for m in 2..=mmax {
                        let (a, b) = pows[m - 1];
                        pows[m] = (a * zr - b * zi, a * zi + b * zr);
                    }
                    for (f, &(n, m)) in idx.iter().enumerate() {
                        let mut v = 0.0;
                        for &c in &lut[f][..(n - m) / 2 + 1] {
                            v *= r2;
                            v += c;
                        }
                        if r2 > 1.0 {
                            v = 0.0;
                        }
                        if m == 0 {
                            re[f] += v;
                        } else {
                            let (a, b) = pows[m];
                            re[f] += v * a;
                            im[f] += v * b;
                        }
                    }
                }
            }
            let area = std::f64::consts::PI * rad * rad;
            re.iter()
                .zip(&im)
                .map(|(&a, &b)| (a * a + b * b).sqrt() / area)
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipscope_image::Image;

    #[test]
    fn enclosing_circle_of_a_square_and_a_triangle() {
        let (cy, cx, r) = enclosing_circle(&[(0, 0, 4), (4, 0, 4)], (2.0, 2.0));
        assert_eq!((cy, cx), (2.0, 2.0));
        assert!((r - 8f64.sqrt()).abs() < 1e-12);
        // (0,0), (0,4), (3,2): obtuse-free triangle, circumcircle
        let (cy, cx, r) = enclosing_circle(&[(0, 0, 4), (3, 2, 2)], (1.0, 2.0));
        assert!((cx - 2.0).abs() < 1e-12);
        assert!(((cy - 0.0).powi(2) + (cx - 0.0).powi(2)).sqrt() - r < 1e-12);
        assert!(((cy - 3.0).abs() - r).abs() < 1e-12);
    }

    #[test]
    fn disk_has_zernike_0_0_near_one() {
        let n = 41usize;
        let mut v = vec![0u32; n * n];
        for r in 0..n {
            for c in 0..n {
                let (dy, dx) = (r as f64 - 20.0, c as f64 - 20.0);
                if dy * dy + dx * dx <= 400.0 {
                    v[r * n + c] = 1;
                }
            }
        }
        let z = measure_zernike(&Labels::from_image(Image::from_vec(n, n, v).unwrap()));
        assert!((z[0][0] - 1.0).abs() < 0.01, "{}", z[0][0]);
        // odd moments of a centred symmetric disk vanish
        assert!(z[0][1] < 1e-12);
        assert_eq!(z[0].len(), 30);
    }
}
