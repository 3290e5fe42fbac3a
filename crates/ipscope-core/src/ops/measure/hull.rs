//! Convex hulls of one object: the filled hull image of `skimage.morphology.convex_hull_image`
//! (for `ConvexArea`/`Solidity`) and CellProfiler's Feret diameters.
//!
//! Everything is integer arithmetic: skimage's hull vertices are pixel-edge midpoints
//! (`(r ± ½, c)`, `(r, c ± ½)`), which are integers after doubling the coordinates, so the
//! inside-or-on test for pixel centres is exact (skimage counts vertices and edges as inside).

use super::shape::LocalMask;

/// Points `(y, x)` of a convex polygon in counter-clockwise order (y down, x right), without
/// collinear vertices.
pub(crate) type Polygon = Vec<(i64, i64)>;

fn cross(o: (i64, i64), a: (i64, i64), b: (i64, i64)) -> i64 {
    (a.1 - o.1) * (b.0 - o.0) - (a.0 - o.0) * (b.1 - o.1)
}

/// Andrew's monotone chain; input need not be sorted or unique.
fn convex_hull(mut pts: Vec<(i64, i64)>) -> Polygon {
    pts.sort_unstable();
    pts.dedup();
    if pts.len() < 3 {
        return pts;
    }
    let mut lower: Vec<(i64, i64)> = Vec::with_capacity(pts.len());
    for &p in &pts {
        while lower.len() >= 2 && cross(lower[lower.len() - 2], lower[lower.len() - 1], p) <= 0 {
            lower.pop();
        }
        lower.push(p);
    }
    let mut upper: Vec<(i64, i64)> = Vec::with_capacity(pts.len());
    for &p in pts.iter().rev() {
        while upper.len() >= 2 && cross(upper[upper.len() - 2], upper[upper.len() - 1], p) <= 0 {
            upper.pop();
        }
        upper.push(p);
    }
    lower.pop();
    upper.pop();
    lower.extend(upper);
    lower
}

/// Leftmost and rightmost object pixel of each row (bbox coordinates); enough for the hull.
fn row_extremes(mask: &LocalMask) -> Vec<(i64, i64, i64)> {
    let mut out = Vec::with_capacity(mask.h);
    for r in 0..mask.h {
        let row = &mask.m[(r + 1) * (mask.w + 2) + 1..(r + 1) * (mask.w + 2) + 1 + mask.w];
        if let (Some(a), Some(b)) = (row.iter().position(|&x| x), row.iter().rposition(|&x| x)) {
            out.push((r as i64, a as i64, b as i64));
        }
    }
    out
}

/// Hull of the pixels' edge midpoints in doubled bbox coordinates.
pub(crate) fn object_hull(mask: &LocalMask) -> Polygon {
    let mut pts = Vec::new();
    for (r, a, b) in row_extremes(mask) {
        for c in [a, b] {
            let (y, x) = (2 * r, 2 * c);
            pts.extend([(y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)]);
        }
    }
    convex_hull(pts)
}

fn inside_or_on(poly: &Polygon, p: (i64, i64)) -> bool {
    let n = poly.len();
    (0..n).all(|i| cross(poly[i], poly[(i + 1) % n], p) >= 0)
}

/// Number of pixel centres of the `h × w` box inside or on the doubled-coordinate polygon.
pub(crate) fn count_inside(poly: &Polygon, h: usize, w: usize) -> u64 {
    if poly.len() < 3 {
        return 0;
    }
    let mut total = 0u64;
    for r in 0..h as i64 {
        // The polygon is convex, so the inside pixels of a row are contiguous: walk in from
        // both ends.
        let y = 2 * r;
        let Some(left) = (0..w as i64).find(|&c| inside_or_on(poly, (y, 2 * c))) else {
            continue;
        };
        let right = (left..w as i64)
            .rev()
            .find(|&c| inside_or_on(poly, (y, 2 * c)))
            .unwrap_or(left);
        total += (right - left + 1) as u64;
    }
    total
}

/// `(min, max)` Feret diameter of the object: the hull of the pixel centres, its smallest
/// caliper width (the largest distance of a vertex from each edge's line, minimised over the
/// edges) and its largest vertex-to-vertex distance, as `centrosome.cpmorphology.feret_diameter`.
pub(crate) fn feret(mask: &LocalMask) -> (f64, f64) {
    let mut pts = Vec::new();
    for (r, a, b) in row_extremes(mask) {
        pts.push((r, a));
        pts.push((r, b));
    }
    let hull = convex_hull(pts);
    let n = hull.len();
    let mut max2 = 0i64;
    for i in 0..n {
        for j in i + 1..n {
            let (dy, dx) = (hull[i].0 - hull[j].0, hull[i].1 - hull[j].1);
            max2 = max2.max(dy * dy + dx * dx);
        }
    }
    if n < 3 {
        return (0.0, (max2 as f64).sqrt());
    }
    let mut min_width = f64::INFINITY;
    for i in 0..n {
        let (a, b) = (hull[i], hull[(i + 1) % n]);
        let len = (((b.0 - a.0).pow(2) + (b.1 - a.1).pow(2)) as f64).sqrt();
        let far = hull
            .iter()
            .map(|&p| cross(a, b, p).abs())
            .max()
            .unwrap_or(0);
        min_width = min_width.min(far as f64 / len);
    }
    (min_width, (max2 as f64).sqrt())
}
