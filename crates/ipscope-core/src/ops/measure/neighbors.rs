//! Per-object neighbourhood, as CellProfiler's MeasureObjectNeighbors computes it when the
//! objects are their own neighbours (cp-measure's `measureobjectneighbors(masks, masks)`).
//!
//! Two methods of CellProfiler are available ([`NeighborMethod`]):
//!
//! - *Within a specified distance* `d` (CellProfiler's default `d` = 5): object B is a
//!   neighbour of A when a pixel of B lies at an offset `(dy, dx)` with `dy² + dx² ≤ d²` from a
//!   pixel of A (A dilated by CellProfiler's `strel_disk(d)` touches B). Column suffix `_<d>`.
//! - *Adjacent*: the same with `d` = 1, i.e. B has a pixel 4-connected to a pixel of A.
//!   Column suffix `_Adjacent`.
//!
//! Per object:
//!
//! - `NumberOfNeighbors`: how many other objects are neighbours.
//! - `PercentTouching`: 100 × (boundary pixels of A with a pixel of another object within
//!   `dy² + dx² ≤ (d + ½)²`) / (boundary pixels of A). A boundary pixel is one of A's pixels
//!   with an 8-neighbour of another value (background or another object) or on the image
//!   border (centrosome's `outline`).
//! - `FirstClosestObjectNumber`, `FirstClosestDistance`, `SecondClosestObjectNumber`,
//!   `SecondClosestDistance`: the two other objects whose centroids are nearest A's centroid
//!   (ties: lower label first) and the centroid distances (px), whether or not they are
//!   neighbours.
//! - `AngleBetweenNeighbors`: the angle (degrees, 0..180) at A's centroid between the vectors
//!   to the first and second closest centroids.
//!
//! With no other object the closest numbers are 0 and distances and angle NaN; with one other
//! object the second number is 0 and the second distance and angle NaN (CellProfiler writes 0
//! there, which reads as a real distance). Labels absent from the image are no one's neighbour.
//!
//! Cost: for each object, one scan of its bounding box grown by `d`, a disk of radius `d + ½`
//! around each boundary pixel, and an O(n) pass over the centroids for the closest two (O(n²)
//! for the image, as CellProfiler's distance matrix).

use super::measure_shape;
use ipscope_image::Labels;

/// CellProfiler's default neighbour distance (pixels) for "Within a specified distance".
pub const DEFAULT_NEIGHBOR_DISTANCE: usize = 5;

/// How neighbours are found (CellProfiler's `distance_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NeighborMethod {
    /// "Within a specified distance": pixels within this Euclidean distance.
    Within(usize),
    /// "Adjacent": 4-connected touching pixels.
    Adjacent,
}

impl NeighborMethod {
    /// The dilation radius CellProfiler uses.
    pub fn distance(self) -> usize {
        match self {
            NeighborMethod::Within(d) => d,
            NeighborMethod::Adjacent => 1,
        }
    }
    /// CellProfiler's column suffix: the distance, or `Adjacent`.
    pub fn scale_name(self) -> String {
        match self {
            NeighborMethod::Within(d) => d.to_string(),
            NeighborMethod::Adjacent => "Adjacent".to_string(),
        }
    }
}

/// Neighbourhood of one object.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbors {
    /// `Neighbors_NumberOfNeighbors_<scale>`.
    pub number_of_neighbors: u32,
    /// `Neighbors_PercentTouching_<scale>` (percent); NaN for an absent label.
    pub percent_touching: f64,
    /// `Neighbors_FirstClosestObjectNumber_<scale>`; 0 when there is none.
    pub first_closest_object_number: u32,
    /// `Neighbors_FirstClosestDistance_<scale>` (px, centroid to centroid); NaN when none.
    pub first_closest_distance: f64,
    /// `Neighbors_SecondClosestObjectNumber_<scale>`; 0 when there is none.
    pub second_closest_object_number: u32,
    /// `Neighbors_SecondClosestDistance_<scale>` (px); NaN when none.
    pub second_closest_distance: f64,
    /// `Neighbors_AngleBetweenNeighbors_<scale>` (degrees); NaN without two others.
    pub angle_between_neighbors: f64,
}

const ABSENT: Neighbors = Neighbors {
    number_of_neighbors: 0,
    percent_touching: f64::NAN,
    first_closest_object_number: 0,
    first_closest_distance: f64::NAN,
    second_closest_object_number: 0,
    second_closest_distance: f64::NAN,
    angle_between_neighbors: f64::NAN,
};

/// Half-widths of a digital disk: `w[k]` = largest `x` with `x² + (k − r)² ≤ r2`, for rows
/// `k = 0..=2r` (offset `k − r`).
fn disk_half_widths(r: usize, r2: usize) -> Vec<usize> {
    (0..=2 * r)
        .map(|k| {
            let dy = k.abs_diff(r);
            let rest = r2 - dy * dy;
            let mut x = (rest as f64).sqrt() as usize;
            while (x + 1) * (x + 1) <= rest {
                x += 1;
            }
            while x * x > rest {
                x -= 1;
            }
            x
        })
        .collect()
}

/// Neighbourhood of every object `1..=count`, index `i` = label `i + 1` (absent labels get
/// zero counts and NaN values).
pub fn measure_neighbors(labels: &Labels, method: NeighborMethod) -> Vec<Neighbors> {
    let shapes = measure_shape(labels);
    let n = shapes.len();
    let (w, h) = (labels.width(), labels.height());
    let img = labels.image();
    let d = method.distance();
    // strel_disk(d): x² + y² ≤ d²; strel_disk(d + 0.5): x² + y² ≤ d² + d (integers).
    let reach = disk_half_widths(d, d * d);
    let touch = disk_half_widths(d, d * d + d);
    let present: Vec<usize> = (0..n).filter(|&i| shapes[i].area > 0).collect();
    let mut seen = vec![u32::MAX; n + 1];
    let mut out = Vec::with_capacity(n);
    for (i, s) in shapes.iter().enumerate() {
        if s.area == 0 {
            out.push(ABSENT);
            continue;
        }
        let me = s.label;
        let mut count = 0u32;
        let mut boundary = 0u64;
        let mut touching = 0u64;
        for r in s.bbox_min_y..s.bbox_max_y {
            let row = img.row(r);
            let mut c = s.bbox_min_x;
            while c < s.bbox_max_x {
                if row[c] != me {
                    c += 1;
                    continue;
                }
                // A run of the object's pixels [a, b].
                let a = c;
                while c < s.bbox_max_x && row[c] == me {
                    c += 1;
                }
                let b = c - 1;
                for (k, &hw) in reach.iter().enumerate() {
                    let Some(rr) = (r + k).checked_sub(d).filter(|&rr| rr < h) else {
                        continue;
                    };
                    let lo = a.saturating_sub(hw);
                    let hi = (b + hw).min(w - 1);
                    for &l in &img.row(rr)[lo..=hi] {
                        if l != 0 && l != me && (l as usize) <= n && seen[l as usize] != me {
                            seen[l as usize] = me;
                            count += 1;
                        }
                    }
                }
                for cc in a..=b {
                    if !is_boundary(img, r, cc, me) {
                        continue;
                    }
                    boundary += 1;
                    if touches_other(img, r, cc, me, d, &touch, n) {
                        touching += 1;
                    }
                }
            }
        }
        let (first, second) = closest_two(&shapes, &present, i);
        let dist = |j: Option<usize>| {
            j.map_or(f64::NAN, |j| {
                let dx = shapes[j].center_x - s.center_x;
                let dy = shapes[j].center_y - s.center_y;
                (dx * dx + dy * dy).sqrt()
            })
        };
        let angle = match (first, second) {
            (Some(f), Some(g)) => {
                let (x1, y1) = (
                    shapes[f].center_x - s.center_x,
                    shapes[f].center_y - s.center_y,
                );
                let (x2, y2) = (
                    shapes[g].center_x - s.center_x,
                    shapes[g].center_y - s.center_y,
                );
                let dot = (x1 * x2 + y1 * y2) / ((x1 * x1 + y1 * y1) * (x2 * x2 + y2 * y2)).sqrt();
                dot.clamp(-1.0, 1.0).acos().to_degrees()
            }
            _ => f64::NAN,
        };
        out.push(Neighbors {
            number_of_neighbors: count,
            percent_touching: touching as f64 * 100.0 / boundary as f64,
            first_closest_object_number: first.map_or(0, |j| shapes[j].label),
            first_closest_distance: dist(first),
            second_closest_object_number: second.map_or(0, |j| shapes[j].label),
            second_closest_distance: dist(second),
            angle_between_neighbors: angle,
        });
    }
    out
}

/// Whether pixel `(r, c)` of object `me` is on its outline: on the image border or with an
/// 8-neighbour of another value.
fn is_boundary(img: &ipscope_image::Image<u32>, r: usize, c: usize, me: u32) -> bool {
    let (w, h) = (img.width(), img.height());
    if r == 0 || c == 0 || r + 1 == h || c + 1 == w {
        return true;
    }
    (r - 1..=r + 1).any(|rr| img.row(rr)[c - 1..=c + 1].iter().any(|&l| l != me))
}

/// Whether a pixel of another object (label `1..=n`, not `me`) lies in the disk `touch`
/// (half-widths per row offset `k − d`) around `(r, c)`.
fn touches_other(
    img: &ipscope_image::Image<u32>,
    r: usize,
    c: usize,
    me: u32,
    d: usize,
    touch: &[usize],
    n: usize,
) -> bool {
    let (w, h) = (img.width(), img.height());
    touch.iter().enumerate().any(|(k, &hw)| {
        let Some(rr) = (r + k).checked_sub(d).filter(|&rr| rr < h) else {
            return false;
        };
        let lo = c.saturating_sub(hw);
        let hi = (c + hw).min(w - 1);
        img.row(rr)[lo..=hi]
            .iter()
            .any(|&l| l != 0 && l != me && (l as usize) <= n)
    })
}

/// The two other present objects nearest object `i` by centroid distance, ties to the lower
/// label (CellProfiler's stable sort of the distance matrix row).
fn closest_two(
    shapes: &[super::ObjectShape],
    present: &[usize],
    i: usize,
) -> (Option<usize>, Option<usize>) {
    let s = &shapes[i];
    let mut best: [Option<(f64, usize)>; 2] = [None, None];
    for &j in present {
        if j == i {
            continue;
        }
        let di = s.center_y - shapes[j].center_y;
        let dj = s.center_x - shapes[j].center_x;
        let dist = (di * di + dj * dj).sqrt();
        // `present` is in ascending label order, so strict `<` keeps the lower label on ties.
        match best {
            [None, _] => best[0] = Some((dist, j)),
            [Some((d0, _)), _] if dist < d0 => {
                best[1] = best[0];
                best[0] = Some((dist, j));
            }
            [_, None] => best[1] = Some((dist, j)),
            [_, Some((d1, _))] if dist < d1 => best[1] = Some((dist, j)),
            _ => {}
        }
    }
    (best[0].map(|b| b.1), best[1].map(|b| b.1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipscope_image::Image;

    fn labels(w: usize, h: usize, rects: &[(u32, usize, usize, usize, usize)]) -> Labels {
        // (label, row0, col0, rows, cols)
        let mut img = Image::new(w, h, 0u32);
        for &(l, r0, c0, nr, nc) in rects {
            for r in r0..r0 + nr {
                for c in c0..c0 + nc {
                    img.set(r, c, l);
                }
            }
        }
        Labels::from_image(img)
    }

    #[test]
    fn disks_match_cellprofiler_strel_disk() {
        // strel_disk(1): a cross; strel_disk(1.5): the full 3x3; strel_disk(2): 13 pixels.
        assert_eq!(disk_half_widths(1, 1), vec![0, 1, 0]);
        assert_eq!(disk_half_widths(1, 2), vec![1, 1, 1]);
        assert_eq!(disk_half_widths(2, 4), vec![0, 1, 2, 1, 0]);
        assert_eq!(
            disk_half_widths(5, 30),
            vec![2, 3, 4, 5, 5, 5, 5, 5, 4, 3, 2]
        );
    }

    #[test]
    fn two_touching_squares() {
        // Two 4x4 squares side by side (columns 2..6 and 6..10) in a 12x8 image.
        let l = labels(12, 8, &[(1, 2, 2, 4, 4), (2, 2, 6, 4, 4)]);
        for m in [NeighborMethod::Adjacent, NeighborMethod::Within(5)] {
            let nb = measure_neighbors(&l, m);
            assert_eq!(nb.len(), 2);
            assert_eq!(nb[0].number_of_neighbors, 1);
            assert_eq!(nb[1].number_of_neighbors, 1);
            assert_eq!(nb[0].first_closest_object_number, 2);
            assert_eq!(nb[1].first_closest_object_number, 1);
            assert_eq!(nb[0].first_closest_distance, 4.0);
            assert_eq!(nb[0].second_closest_object_number, 0);
            assert!(nb[0].second_closest_distance.is_nan());
            assert!(nb[0].angle_between_neighbors.is_nan());
        }
        // Boundary of a 4x4 square: its 12 ring pixels. Adjacent: the 4 pixels of the facing
        // column have the other square within the 3x3 disk.
        let adj = measure_neighbors(&l, NeighborMethod::Adjacent);
        assert_eq!(adj[0].percent_touching, 100.0 * 4.0 / 12.0);
        // Within 5 (touching disk radius 5.5): every ring pixel of square 1 is within 5.5 of
        // column 6 (its far column 2 is 4 away).
        let w5 = measure_neighbors(&l, NeighborMethod::Within(5));
        assert_eq!(w5[0].percent_touching, 100.0);
        // Within 3: pixels in column 2 are 4 columns away: 12 - 4 = 8 of 12 ring pixels.
        let w3 = measure_neighbors(&l, NeighborMethod::Within(3));
        assert_eq!(w3[0].percent_touching, 100.0 * 8.0 / 12.0);
    }

    #[test]
    fn diagonal_contact_is_not_adjacent_but_touching() {
        // Two single pixels touching at a corner: 4-connected dilation does not reach, the
        // 3x3 touching disk does.
        let l = labels(6, 6, &[(1, 2, 2, 1, 1), (2, 3, 3, 1, 1)]);
        let adj = measure_neighbors(&l, NeighborMethod::Adjacent);
        assert_eq!(adj[0].number_of_neighbors, 0);
        assert_eq!(adj[0].percent_touching, 100.0);
        let w1 = measure_neighbors(&l, NeighborMethod::Within(2));
        assert_eq!(w1[0].number_of_neighbors, 1);
    }

    #[test]
    fn three_in_a_line_and_a_right_angle() {
        // Centroids (row, col): 1 at (5, 2), 2 at (5, 10), 3 at (5, 20); 1x1 objects.
        let l = labels(
            30,
            12,
            &[(1, 5, 2, 1, 1), (2, 5, 10, 1, 1), (3, 5, 20, 1, 1)],
        );
        let nb = measure_neighbors(&l, NeighborMethod::Within(5));
        assert!(nb.iter().all(|n| n.number_of_neighbors == 0));
        // The middle object sees the others in opposite directions: 180 degrees.
        assert_eq!(nb[1].first_closest_object_number, 1);
        assert_eq!(nb[1].first_closest_distance, 8.0);
        assert_eq!(nb[1].second_closest_object_number, 3);
        assert_eq!(nb[1].second_closest_distance, 10.0);
        assert!((nb[1].angle_between_neighbors - 180.0).abs() < 1e-12);
        // An end object sees both in the same direction: 0 degrees.
        assert_eq!(nb[0].first_closest_object_number, 2);
        assert_eq!(nb[0].second_closest_object_number, 3);
        assert!(nb[0].angle_between_neighbors.abs() < 1e-6);
        // Right angle: 1 at (2, 2), 2 at (2, 8), 3 at (9, 2).
        let l = labels(12, 12, &[(1, 2, 2, 1, 1), (2, 2, 8, 1, 1), (3, 9, 2, 1, 1)]);
        let nb = measure_neighbors(&l, NeighborMethod::Within(5));
        assert_eq!(nb[0].first_closest_object_number, 2);
        assert!((nb[0].angle_between_neighbors - 90.0).abs() < 1e-12);
        // Within 6, 1 and 2 (6 apart) are neighbours; within 5 they are not.
        let nb6 = measure_neighbors(&l, NeighborMethod::Within(6));
        assert_eq!(nb6[0].number_of_neighbors, 1);
        assert_eq!(nb[0].number_of_neighbors, 0);
    }

    #[test]
    fn ties_go_to_the_lower_label_and_absent_labels_are_skipped() {
        // 2 and 4 both 5 px from 1; label 3 absent.
        let l = labels(
            12,
            12,
            &[(1, 5, 5, 1, 1), (2, 5, 0, 1, 1), (4, 5, 10, 1, 1)],
        );
        let nb = measure_neighbors(&l, NeighborMethod::Within(5));
        assert_eq!(nb.len(), 4);
        assert_eq!(nb[0].number_of_neighbors, 2);
        assert_eq!(nb[0].first_closest_object_number, 2);
        assert_eq!(nb[0].second_closest_object_number, 4);
        assert_eq!(nb[2].number_of_neighbors, 0);
        assert!(nb[2].percent_touching.is_nan());
    }
}
