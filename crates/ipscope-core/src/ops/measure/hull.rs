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

/// One task's buffers for the hulls, reused from object to object so that an object's
/// hulls allocate nothing (the workers share one malloc arena, whose lock they would
/// otherwise wait for).
#[derive(Default)]
pub(crate) struct HullScratch {
    rows: Vec<(i64, i64, i64)>,
    pts: Vec<(i64, i64)>,
    upper: Vec<(i64, i64)>,
    /// The last hull made.
    hull: Polygon,
    lo: Vec<i64>,
    hi: Vec<i64>,
}

/// [`hull_of_sorted_into`] with fresh buffers (tests).
#[cfg(test)]
fn hull_of_sorted(pts: &[(i64, i64)]) -> Polygon {
    let (mut upper, mut out) = (Vec::new(), Vec::new());
    hull_of_sorted_into(pts, &mut upper, &mut out);
    out
}

/// Andrew's monotone chain over points sorted and unique (lexicographic `(y, x)`), into
/// `lower` (cleared first); `upper` is a buffer.
fn hull_of_sorted_into(pts: &[(i64, i64)], upper: &mut Polygon, lower: &mut Polygon) {
    lower.clear();
    if pts.len() < 3 {
        lower.extend_from_slice(pts);
        return;
    }
    for &p in pts {
        while lower.len() >= 2 && cross(lower[lower.len() - 2], lower[lower.len() - 1], p) <= 0 {
            lower.pop();
        }
        lower.push(p);
    }
    upper.clear();
    for &p in pts.iter().rev() {
        while upper.len() >= 2 && cross(upper[upper.len() - 2], upper[upper.len() - 1], p) <= 0 {
            upper.pop();
        }
        upper.push(p);
    }
    lower.pop();
    upper.pop();
    lower.extend_from_slice(upper);
}

/// [`row_extremes_into`] into a new vector (tests).
#[cfg(test)]
fn row_extremes(mask: &LocalMask) -> Vec<(i64, i64, i64)> {
    let mut out = Vec::new();
    row_extremes_into(mask, &mut out);
    out
}

/// Leftmost and rightmost object pixel of each row (bbox coordinates), enough for the hull,
/// into `out` (cleared first).
fn row_extremes_into(mask: &LocalMask, out: &mut Vec<(i64, i64, i64)>) {
    out.clear();
    for r in 0..mask.h {
        let row = &mask.m[(r + 1) * (mask.w + 2) + 1..(r + 1) * (mask.w + 2) + 1 + mask.w];
        if let (Some(a), Some(b)) = (row.iter().position(|&x| x), row.iter().rposition(|&x| x)) {
            out.push((r as i64, a as i64, b as i64));
        }
    }
}

/// The hull that `make` leaves in fresh buffers (tests).
#[cfg(test)]
fn fresh_hull(mask: &LocalMask, make: fn(&LocalMask, &mut HullScratch)) -> Polygon {
    let mut s = HullScratch::default();
    make(mask, &mut s);
    s.hull
}

/// [`object_hull_in`] with fresh buffers (tests).
#[cfg(test)]
pub(crate) fn object_hull(mask: &LocalMask) -> Polygon {
    fresh_hull(mask, object_hull_in)
}

/// Hull of the pixels' edge midpoints in doubled bbox coordinates, into `s.hull`.
///
/// A pixel `(r, c)` gives the midpoints `(2r ∓ 1, 2c)` and `(2r, 2c ∓ 1)`; only the least and
/// greatest `x` of each `y` can be hull vertices, so the points are built per `y`, in sorted
/// order: at `y = 2r` the row's own ends `2a − 1`, `2b + 1`; at `y = 2r + 1` the ends `2a`,
/// `2b` of rows `r` and `r + 1`, whichever reach further.
fn object_hull_in(mask: &LocalMask, s: &mut HullScratch) {
    hull_of_row_ends(mask, s, |rows, pts| {
        let mut push_ends = |y, lo, hi| push_ends(pts, y, lo, hi);
        for (i, &(r, a, b)) in rows.iter().enumerate() {
            // y = 2r − 1: shared with the row above when that row is the previous one.
            let prev = i.checked_sub(1).map(|j| rows[j]).filter(|p| p.0 == r - 1);
            if prev.is_none() {
                push_ends(2 * r - 1, 2 * a, 2 * b);
            }
            push_ends(2 * r, 2 * a - 1, 2 * b + 1);
            match rows.get(i + 1).filter(|n| n.0 == r + 1) {
                Some(&(_, na, nb)) => push_ends(2 * r + 1, 2 * a.min(na), 2 * b.max(nb)),
                None => push_ends(2 * r + 1, 2 * a, 2 * b),
            }
        }
    });
}

/// The hull, into `s.hull`, of the sorted and unique points that `points` makes from the
/// mask's row ends ([`row_extremes_into`]).
fn hull_of_row_ends(
    mask: &LocalMask,
    s: &mut HullScratch,
    points: impl FnOnce(&[(i64, i64, i64)], &mut Vec<(i64, i64)>),
) {
    let HullScratch {
        rows,
        pts,
        upper,
        hull,
        ..
    } = s;
    row_extremes_into(mask, rows);
    pts.clear();
    points(rows, pts);
    hull_of_sorted_into(pts, upper, hull);
}

/// `(y, lo)` and, if it is another point, `(y, hi)` appended to `pts`.
fn push_ends(pts: &mut Vec<(i64, i64)>, y: i64, lo: i64, hi: i64) {
    pts.push((y, lo));
    if hi != lo {
        pts.push((y, hi));
    }
}

/// The number of pixel centres of the object's `h × w` box inside or on its hull
/// ([`object_hull_in`], [`count_inside_in`]): `ConvexArea`.
pub(crate) fn convex_area(mask: &LocalMask, s: &mut HullScratch) -> u64 {
    object_hull_in(mask, s);
    count_inside_in(&s.hull, mask.h, mask.w, &mut s.lo, &mut s.hi)
}

/// [`count_inside_in`] with fresh buffers (tests).
#[cfg(test)]
pub(crate) fn count_inside(poly: &Polygon, h: usize, w: usize) -> u64 {
    count_inside_in(poly, h, w, &mut Vec::new(), &mut Vec::new())
}

/// Number of pixel centres of the `h × w` box inside or on the doubled-coordinate polygon.
///
/// Each edge `a → b` of the counter-clockwise polygon keeps the points with
/// `cross(a, b, p) ≥ 0`, on a row `y` a bound on `x`: `dy·x ≤ dx·(y − a.y) + dy·a.x` with
/// `dy = b.y − a.y`, `dx = b.x − a.x`: for the column `c` (`x = 2c`) `c ≤ ⌊rhs / 2dy⌋` when
/// `dy > 0`, `c ≥ −⌊rhs / 2|dy|⌋` when `dy < 0`, in exact integers. A row crossing the polygon
/// meets its boundary on the edges whose `y` span holds the row; the other edges' half-planes
/// hold the whole polygon, so only those bounds are applied, the quotient stepped row by row
/// (`rhs` grows by `2dx` a row) instead of divided each time.
///
/// `lo` and `hi` are the per-row bounds' buffers.
fn count_inside_in(
    poly: &Polygon,
    h: usize,
    w: usize,
    lo: &mut Vec<i64>,
    hi: &mut Vec<i64>,
) -> u64 {
    if poly.len() < 3 || h == 0 || w == 0 {
        return 0;
    }
    let n = poly.len();
    let last = h as i64 - 1;
    // The least row at or below y (y = 2r) and the greatest at or above it, in the box.
    let first_row = |y: i64| (y + 1).div_euclid(2).max(0);
    let last_row = |y: i64| y.div_euclid(2).min(last);
    let ymin = poly.iter().map(|p| p.0).min().unwrap_or(0);
    let ymax = poly.iter().map(|p| p.0).max().unwrap_or(-1);
    let (top, bottom) = (first_row(ymin), last_row(ymax));
    if top > bottom {
        return 0;
    }
    let rows = (bottom - top + 1) as usize;
    lo.clear();
    lo.resize(rows, 0);
    hi.clear();
    hi.resize(rows, w as i64 - 1);
    for i in 0..n {
        let (a, b) = (poly[i], poly[(i + 1) % n]);
        let (dy, dx) = (b.0 - a.0, b.1 - a.1);
        if dy == 0 {
            // On its own row a horizontal edge bounds nothing (cross = 0).
            continue;
        }
        let (r0, r1) = (first_row(a.0.min(b.0)), last_row(a.0.max(b.0)));
        if r0 > r1 {
            continue;
        }
        let d = 2 * dy.abs();
        let rhs = dx * (2 * r0 - a.0) + dy * a.1;
        let (mut q, mut rem) = (rhs.div_euclid(d), rhs.rem_euclid(d));
        let (sq, sr) = ((2 * dx).div_euclid(d), (2 * dx).rem_euclid(d));
        for r in (r0 - top) as usize..=(r1 - top) as usize {
            if dy > 0 {
                hi[r] = hi[r].min(q);
            } else {
                lo[r] = lo[r].max(-q);
            }
            q += sq;
            rem += sr;
            if rem >= d {
                rem -= d;
                q += 1;
            }
        }
    }
    lo.iter()
        .zip(hi.iter())
        .map(|(&l, &u)| (u - l + 1).max(0) as u64)
        .sum()
}

/// [`centre_hull_in`] with fresh buffers (tests).
#[cfg(test)]
fn centre_hull(mask: &LocalMask) -> Polygon {
    fresh_hull(mask, centre_hull_in)
}

/// Hull of the pixel centres of the rows' ends (bbox coordinates) into `s.hull`; the points
/// are made row by row, each row's ends left to right, so they are sorted and unique.
fn centre_hull_in(mask: &LocalMask, s: &mut HullScratch) {
    hull_of_row_ends(mask, s, |rows, pts| {
        for &(r, a, b) in rows {
            push_ends(pts, r, a, b);
        }
    });
}

/// `(min, max)` Feret diameter of the object: the hull of the pixel centres, its smallest
/// caliper width (the largest distance of a vertex from each edge's line, minimised over the
/// edges) and its largest vertex-to-vertex distance, as `centrosome.cpmorphology.feret_diameter`.
pub(crate) fn feret(mask: &LocalMask, s: &mut HullScratch) -> (f64, f64) {
    centre_hull_in(mask, s);
    feret_of_hull(&s.hull)
}

/// [`feret`] of a hull: with three or more vertices by rotating calipers (Shamos): the
/// vertex farthest from each edge's line moves forward around the hull as the edge does,
/// so one pass finds every edge's farthest vertex (its width) and the antipodal pairs, among
/// which is the farthest pair. The same integers and the same divisions as comparing every
/// vertex with every edge and every pair ([`feret_pairwise`] in the tests), so the same bits.
fn feret_of_hull(hull: &[(i64, i64)]) -> (f64, f64) {
    let n = hull.len();
    let dist2 = |a: (i64, i64), b: (i64, i64)| (a.0 - b.0).pow(2) + (a.1 - b.1).pow(2);
    if n < 3 {
        let max2 = match hull {
            [a, b] => dist2(*a, *b),
            _ => 0,
        };
        return (0.0, (max2 as f64).sqrt());
    }
    // The hull is counter-clockwise without collinear vertices: `cross` of an edge with the
    // other vertices is positive, rising to a maximum (at one vertex or two, on an edge
    // parallel to this one) and falling again.
    let (mut max2, mut min_width) = (0i64, f64::INFINITY);
    let mut j = 1;
    for i in 0..n {
        let (a, b) = (hull[i], hull[(i + 1) % n]);
        let height = |k: usize| cross(a, b, hull[k % n]);
        while height(j + 1) > height(j) {
            j = (j + 1) % n;
        }
        let len = (dist2(a, b) as f64).sqrt();
        min_width = min_width.min(height(j) as f64 / len);
        max2 = max2.max(dist2(a, hull[j])).max(dist2(b, hull[j]));
        if height(j + 1) == height(j) {
            let k = hull[(j + 1) % n];
            max2 = max2.max(dist2(a, k)).max(dist2(b, k));
        }
    }
    (min_width, (max2 as f64).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`feret_of_hull`] as it was computed: every vertex against every edge and every pair.
    fn feret_pairwise(hull: &[(i64, i64)]) -> (f64, f64) {
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

    #[test]
    fn calipers_equal_the_pairwise_feret_bit_for_bit() {
        let mut next = crate::testing::xorshift(5);
        let mut tested = 0;
        for case in 0..4000u64 {
            // Points in a small square (many parallel edges, collinear points) or a wide one.
            let span = [3u64, 6, 20, 1000][(case % 4) as usize];
            let count = 1 + next() % 40;
            let mut pts: Vec<(i64, i64)> = (0..count)
                .map(|_| ((next() % span) as i64, (next() % span) as i64))
                .collect();
            if case % 5 == 0 {
                // Symmetric shapes: every point mirrored through the centre.
                let m: Vec<_> = pts
                    .iter()
                    .map(|&(y, x)| (span as i64 - y, span as i64 - x))
                    .collect();
                pts.extend(m);
            }
            pts.sort_unstable();
            pts.dedup();
            let hull = hull_of_sorted(&pts);
            let (got, want) = (feret_of_hull(&hull), feret_pairwise(&hull));
            assert_eq!(
                (got.0.to_bits(), got.1.to_bits()),
                (want.0.to_bits(), want.1.to_bits()),
                "hull {hull:?}"
            );
            tested += usize::from(hull.len() >= 3);
        }
        assert!(
            tested > 3000,
            "only {tested} hulls of three or more vertices"
        );
    }

    /// The hull of any points, as it was computed: sorted and deduplicated first.
    fn convex_hull(mut pts: Vec<(i64, i64)>) -> Polygon {
        pts.sort_unstable();
        pts.dedup();
        hull_of_sorted(&pts)
    }

    /// The hull as it was built: all four midpoints of both ends of every row, sorted.
    fn object_hull_sorted(mask: &LocalMask) -> Polygon {
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

    /// The count as it was made: each row walked in from both ends.
    fn count_inside_walk(poly: &Polygon, h: usize, w: usize) -> u64 {
        if poly.len() < 3 {
            return 0;
        }
        let mut total = 0u64;
        for r in 0..h as i64 {
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

    /// The per-`y` extremes give the hull of all the midpoints, the half-plane bounds the
    /// walked count, and the Feret hull skips no vertex the sorted one has; on random
    /// objects (ragged, with holes and gaps between rows, so not all connected).
    #[test]
    fn hulls_and_counts_equal_the_sorted_and_walked_ones() {
        let mut rnd = crate::testing::lcg32(5);
        for case in 0..2000 {
            let (mask, b) = LocalMask::random(&mut rnd, 24);
            let hull = object_hull(&mask);
            assert_eq!(hull, object_hull_sorted(&mask), "case {case}");
            let (bh, bw) = (b.2 - b.0, b.3 - b.1);
            assert_eq!(
                count_inside(&hull, bh, bw),
                count_inside_walk(&hull, bh, bw),
                "case {case}"
            );
            // Feret's hull as it was made: both ends of every row, sorted and deduplicated.
            let mut pts = Vec::new();
            for (r, a, b) in row_extremes(&mask) {
                pts.extend([(r, a), (r, b)]);
            }
            assert_eq!(centre_hull(&mask), convex_hull(pts), "case {case}");
        }
    }
}
