//! Neurite outgrowth: somata, neurite skeletons and per-neuron skeleton measurements.
//!
//! Steps, from a nuclear stain and a neuronal marker (β-III-tubulin / TUBB3, MAP2):
//! 1. cells grow from the nuclei over the thresholded marker by propagation
//!    ([`segment_cells`], CellProfiler's IdentifySecondaryObjects / Jones et al. 2005); the
//!    soma is the cell after an opening of `soma_opening` px that strips thin neurites, plus
//!    its nucleus;
//! 2. nuclei are classed: *dead* (condensed: area below `dead_max_area_ratio` × the field's
//!    median nucleus area and mean DNA above `dead_min_intensity_ratio` × the median),
//!    *neuron* (mean marker in the soma at or above the marker threshold) or *non-neuronal*;
//! 3. the marker is filtered with a ridge filter (`ridge_filter`: Sato by default,
//!    Frangi or Meijering; [`crate::ops::ridge`]), thresholded (Otsu of the
//!    ridge response × `ridge_threshold_correction`), joined with the neuron somata,
//!    skeletonized ([`skeletonize`], Zhang as scikit-image) and spurs shorter than
//!    `min_spur_length` are pruned ([`prune_spurs`]); skeleton pixels inside somata are
//!    dropped;
//! 4. each remaining skeleton pixel goes to one soma by geodesic propagation along the
//!    skeleton (Dijkstra over 8-connected skeleton pixels, steps 1 and √2, seeded at pixels
//!    within `attach_distance` px of a neuron soma; ties go to the lower label); pixels no
//!    path reaches are unassigned;
//! 5. per neuron, as CellProfiler's MeasureObjectSkeleton: total skeleton length (sum of the
//!    branch distances of [`skeleton_graph`], √2 per diagonal step), trunks (groups of
//!    8-connected neurite pixels touching the soma), non-trunk branch points (junction
//!    clusters outside the soma), branch ends (endpoints not touching the soma), and the
//!    longest neurite (largest geodesic distance from the soma).
//!
//! A field whose marker has no signal (no threshold, or nothing above it) gives no neurons:
//! every live nucleus is non-neuronal and all neurite counts are zero.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use ipscope_image::{Image, ImageView, Labels, Pixel};
use serde::{Deserialize, Serialize};

use crate::assays::cells::{segment_cells, CellMethod, CellsParams};
use crate::ops::label::{label, Connectivity};
use crate::ops::morphology::{binary_dilation, binary_erosion};
use crate::ops::ridge::RidgeFilter;
use crate::ops::skeleton::{prune_spurs, skeleton_graph, skeletonize};
use crate::ops::threshold::otsu;
use crate::{ensure_shape, Error};

/// Settings of [`analyze_neurites`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NeuriteParams {
    /// How somata grow from nuclei over the marker. Default: propagation, Li threshold × 0.8.
    pub soma: CellsParams,
    /// Opening radius (px, 4-connected steps) that separates the soma from its neurites.
    /// Default 2.
    pub soma_opening: usize,
    /// Ridge filter. Default Sato.
    pub ridge_filter: RidgeFilter,
    /// Ridge-filter scales (px). Default 1 and 2.
    pub ridge_sigmas: Vec<f32>,
    /// Multiplies the Otsu threshold of the ridge response. Default 1.0.
    pub ridge_threshold_correction: f32,
    /// Terminal branches shorter than this (px) are pruned. Default 5.
    pub min_spur_length: f64,
    /// Skeleton pixels this close (px, 4-connected steps) to a soma seed its propagation.
    /// Default 2.
    pub attach_distance: usize,
    /// A neuron bears neurites when its total length reaches this (px). Default 10.
    pub min_neurite_length: f64,
    /// A nucleus is dead when its area is below this fraction of the field's median…
    /// Default 0.7.
    pub dead_max_area_ratio: f64,
    /// …and its mean DNA intensity above this multiple of the median. Default 1.25.
    pub dead_min_intensity_ratio: f64,
}

impl Default for NeuriteParams {
    fn default() -> Self {
        NeuriteParams {
            soma: CellsParams {
                method: CellMethod::Propagation,
                ..CellsParams::default()
            },
            soma_opening: 2,
            ridge_filter: RidgeFilter::Sato,
            ridge_sigmas: vec![1.0, 2.0],
            ridge_threshold_correction: 1.0,
            min_spur_length: 5.0,
            attach_distance: 2,
            min_neurite_length: 10.0,
            dead_max_area_ratio: 0.7,
            dead_min_intensity_ratio: 1.25,
        }
    }
}

/// What a nucleus is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NucleusClass {
    Neuron,
    NonNeuronal,
    Dead,
}

/// Skeleton measurements of one nucleus's soma (zeros unless it is a neuron).
#[derive(Debug, Clone, PartialEq)]
pub struct NeuronMeasurement {
    /// The nucleus label (= `Parent_Nuclei`, = the soma's label).
    pub nucleus: u32,
    pub class: NucleusClass,
    /// Soma area in pixels.
    pub soma_area: u64,
    /// Mean marker intensity over the soma (0..1 scale).
    pub soma_marker_mean: f64,
    /// CellProfiler's `ObjectSkeleton_TotalObjectSkeletonLength`: px, √2 per diagonal step.
    pub total_length: f64,
    /// `ObjectSkeleton_NumberTrunks`.
    pub trunks: u32,
    /// `ObjectSkeleton_NumberNonTrunkBranches`: branch points outside the soma.
    pub non_trunk_branches: u32,
    /// `ObjectSkeleton_NumberBranchEnds`.
    pub branch_ends: u32,
    /// Longest geodesic distance from the soma along the neuron's skeleton (px).
    pub longest_neurite: f64,
}

/// Everything [`analyze_neurites`] finds in one field.
#[derive(Debug, Clone, PartialEq)]
pub struct NeuriteResult {
    /// One entry per nucleus label, in label order.
    pub neurons: Vec<NeuronMeasurement>,
    /// Somata (label = nucleus label; zero for dead nuclei).
    pub somata: Labels,
    /// The pruned neurite skeleton outside the somata.
    pub skeleton: Image<bool>,
    /// Soma owning each skeleton pixel (0 = unassigned or background).
    pub owner: Image<u32>,
    /// Skeleton length no soma reaches (px).
    pub unassigned_length: f64,
    /// Marker threshold used to call neurons (0..1 scale); NaN when the marker has none.
    pub marker_threshold: f64,
    /// Ridge-response threshold; NaN when the ridge image has none.
    pub ridge_threshold: f64,
}

impl NeuriteResult {
    /// Nuclei of a class.
    pub fn count(&self, class: NucleusClass) -> usize {
        self.neurons.iter().filter(|n| n.class == class).count()
    }
}

#[derive(PartialEq)]
struct Item(f64, u32, usize);
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Item {
    // Min-heap on distance, then label, then pixel: deterministic ties.
    fn cmp(&self, o: &Self) -> Ordering {
        o.0.total_cmp(&self.0)
            .then(o.1.cmp(&self.1))
            .then(o.2.cmp(&self.2))
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

const N8: [(isize, isize); 8] = [
    (-1, -1),
    (-1, 0),
    (-1, 1),
    (0, -1),
    (0, 1),
    (1, -1),
    (1, 0),
    (1, 1),
];

/// Runs the neurite assay on one field. Errors when the images or labels differ in size.
pub fn analyze_neurites<T: Pixel>(
    dna: ImageView<T>,
    marker: ImageView<T>,
    nuclei: &Labels,
    params: &NeuriteParams,
) -> Result<NeuriteResult, Error> {
    let (w, h) = (dna.width(), dna.height());
    ensure_shape("marker", (w, h), (marker.width(), marker.height()))?;
    ensure_shape("nuclei", (w, h), (nuclei.width(), nuclei.height()))?;
    let n = nuclei.count() as usize;
    let nuc = nuclei.image().as_slice();
    let dna_s = dna.map(|v| v.to_f64() / T::MAX);
    let marker_s = marker.map(|v| (v.to_f64() / T::MAX) as f32);

    // Nucleus area and mean DNA, for the dead-cell call.
    let mut area = vec![0u64; n + 1];
    let mut dsum = vec![0f64; n + 1];
    for (&l, &v) in nuc.iter().zip(dna_s.as_slice()) {
        if l != 0 && (l as usize) <= n {
            area[l as usize] += 1;
            dsum[l as usize] += v;
        }
    }
    let dmean: Vec<f64> = (0..=n).map(|k| dsum[k] / (area[k].max(1) as f64)).collect();
    let med_area = median((1..=n).map(|k| area[k] as f64).collect());
    let med_dna = median((1..=n).map(|k| dmean[k]).collect());
    let dead: Vec<bool> = (0..=n)
        .map(|k| {
            k > 0
                && (area[k] as f64) < params.dead_max_area_ratio * med_area
                && dmean[k] > params.dead_min_intensity_ratio * med_dna
        })
        .collect();

    // Somata: propagation, then an opening to strip neurites; the nucleus always stays.
    let cells = segment_cells(marker, nuclei, &params.soma)?;
    let cell_mask = cells.cells.image().map(|l| l != 0);
    let mut opened = cell_mask.clone();
    for _ in 0..params.soma_opening {
        opened = binary_erosion(opened.view());
    }
    for _ in 0..params.soma_opening {
        opened = binary_dilation(opened.view());
    }
    let mut somata = Image::new(w, h, 0u32);
    let cl = cells.cells.image().as_slice();
    for (i, s) in somata.as_mut_slice().iter_mut().enumerate() {
        let l = if nuc[i] != 0 {
            nuc[i]
        } else if opened.as_slice()[i] {
            cl[i]
        } else {
            0
        };
        if l != 0 && !dead[l as usize] {
            *s = l;
        }
    }
    let mut soma_area = vec![0u64; n + 1];
    let mut msum = vec![0f64; n + 1];
    for (&l, &v) in somata.as_slice().iter().zip(marker_s.as_slice()) {
        if l != 0 {
            soma_area[l as usize] += 1;
            msum[l as usize] += f64::from(v);
        }
    }
    let marker_threshold = cells.threshold;
    let class: Vec<NucleusClass> = (0..=n)
        .map(|k| {
            if dead[k] {
                NucleusClass::Dead
            } else if marker_threshold.is_finite()
                && soma_area[k] > 0
                && msum[k] / soma_area[k] as f64 >= marker_threshold
            {
                NucleusClass::Neuron
            } else {
                NucleusClass::NonNeuronal
            }
        })
        .collect();
    let is_neuron = |l: u32| l != 0 && class[l as usize] == NucleusClass::Neuron;

    // Ridge → threshold → skeleton of neurites joined to the neuron somata.
    let ridge = params
        .ridge_filter
        .apply(marker_s.view(), &params.ridge_sigmas, true);
    let ridge_threshold = match otsu(ridge.view(), 256) {
        Some(t) if t > 0.0 && class.contains(&NucleusClass::Neuron) => {
            f64::from(t) * f64::from(params.ridge_threshold_correction)
        }
        _ => f64::NAN,
    };
    let som = somata.as_slice();
    let mask = Image::from_fn(w, h, |r, c| {
        let i = r * w + c;
        is_neuron(som[i]) || f64::from(ridge.as_slice()[i]) > ridge_threshold
    });
    let skel_full = prune_spurs(skeletonize(mask.view()).view(), params.min_spur_length);
    let skeleton = Image::from_fn(w, h, |r, c| skel_full.get(r, c) && som[r * w + c] == 0);

    let neuron_labels: Vec<bool> = (0..=n as u32).map(is_neuron).collect();
    let measured = measure_skeleton(&somata, &skeleton, &neuron_labels, params.attach_distance);
    let owner = measured.owner;
    let mut neurons = Vec::with_capacity(n);
    for k in 1..=n {
        let c = measured.counts.get(k).copied().unwrap_or_default();
        neurons.push(NeuronMeasurement {
            nucleus: k as u32,
            class: class[k],
            soma_area: soma_area[k],
            soma_marker_mean: if soma_area[k] > 0 {
                msum[k] / soma_area[k] as f64
            } else {
                f64::NAN
            },
            total_length: c.total_length,
            trunks: c.trunks,
            non_trunk_branches: c.non_trunk_branches,
            branch_ends: c.branch_ends,
            longest_neurite: c.longest_neurite,
        });
    }
    let unassigned = Image::from_fn(w, h, |r, c| skeleton.get(r, c) && owner.get(r, c) == 0);
    let unassigned_length = skeleton_graph(unassigned.view()).total_length();
    Ok(NeuriteResult {
        neurons,
        somata: Labels::new(somata, nuclei.count()),
        skeleton,
        owner,
        unassigned_length,
        marker_threshold,
        ridge_threshold,
    })
}

/// Skeleton measurements of one soma, as CellProfiler's MeasureObjectSkeleton names them
/// (zeros for somata that are not neurons or own no skeleton).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SkeletonCounts {
    /// `TotalObjectSkeletonLength`: px, √2 per diagonal step.
    pub total_length: f64,
    /// `NumberTrunks`.
    pub trunks: u32,
    /// `NumberNonTrunkBranches`: branch points outside the soma.
    pub non_trunk_branches: u32,
    /// `NumberBranchEnds`.
    pub branch_ends: u32,
    /// Longest geodesic distance from the soma along the neuron's skeleton (px).
    pub longest_neurite: f64,
}

/// What [`measure_skeleton`] finds.
#[derive(Debug, Clone, PartialEq)]
pub struct SkeletonMeasurement {
    /// Indexed by soma label (entry 0 unused).
    pub counts: Vec<SkeletonCounts>,
    /// Soma owning each skeleton pixel (0 = unassigned or background).
    pub owner: Image<u32>,
}

/// The per-neuron skeleton measurements of [`analyze_neurites`] on given somata (label
/// image) and neurite skeleton (outside the somata): skeleton pixels within
/// `attach_distance` of a neuron soma (`neuron[label]`) seed a geodesic propagation along
/// the skeleton (ties to the lower label); each neuron's owned pixels give its length,
/// trunks (pieces touching the soma, plus pieces that stop short of it), non-trunk branch
/// points (junction clusters), branch ends and longest neurite. Labels beyond
/// `neuron.len()` count as non-neurons.
pub fn measure_skeleton(
    somata: &Image<u32>,
    skeleton: &Image<bool>,
    neuron: &[bool],
    attach_distance: usize,
) -> SkeletonMeasurement {
    let (w, h) = (somata.width(), somata.height());
    let som = somata.as_slice();
    let n = (som.iter().copied().max().unwrap_or(0) as usize).max(neuron.len().saturating_sub(1));
    let is_neuron = |l: u32| l != 0 && neuron.get(l as usize).copied().unwrap_or(false);
    // Seeds: skeleton pixels within attach_distance of a neuron soma.
    let mut near = Image::from_fn(w, h, |r, c| is_neuron(som[r * w + c]));
    let mut near_label = Image::from_fn(w, h, |r, c| {
        let l = som[r * w + c];
        if is_neuron(l) {
            l
        } else {
            0
        }
    });
    for _ in 0..attach_distance {
        let grown = binary_dilation(near.view());
        let prev = near_label.clone();
        for r in 0..h {
            for c in 0..w {
                if grown.get(r, c) && !near.get(r, c) {
                    // Smallest neighbouring label, for determinism.
                    let mut best = u32::MAX;
                    for (dr, dc) in [(-1isize, 0isize), (1, 0), (0, -1), (0, 1)] {
                        let (rr, cc) = (r as isize + dr, c as isize + dc);
                        if rr >= 0 && cc >= 0 && (rr as usize) < h && (cc as usize) < w {
                            let l = prev.get(rr as usize, cc as usize);
                            if l != 0 {
                                best = best.min(l);
                            }
                        }
                    }
                    if best != u32::MAX {
                        near_label.set(r, c, best);
                    }
                }
            }
        }
        near = grown;
    }
    let mut dist = vec![f64::INFINITY; w * h];
    let mut owner = Image::new(w, h, 0u32);
    let mut heap = BinaryHeap::new();
    let sk = skeleton.as_slice();
    for (i, (&on, &l)) in sk.iter().zip(near_label.as_slice()).enumerate() {
        if on && l != 0 {
            // The step from the soma: the distance to the nearest soma pixel is at most
            // attach_distance; one step is counted as 1, the rest by the propagation.
            heap.push(Item(1.0, l, i));
        }
    }
    while let Some(Item(d, l, i)) = heap.pop() {
        if d >= dist[i] {
            continue;
        }
        dist[i] = d;
        owner.as_mut_slice()[i] = l;
        let (r, c) = (i / w, i % w);
        for (dr, dc) in N8 {
            let (rr, cc) = (r as isize + dr, c as isize + dc);
            if rr < 0 || cc < 0 || rr as usize >= h || cc as usize >= w {
                continue;
            }
            let j = rr as usize * w + cc as usize;
            if sk[j] {
                let step = if dr != 0 && dc != 0 {
                    std::f64::consts::SQRT_2
                } else {
                    1.0
                };
                if d + step < dist[j] {
                    heap.push(Item(d + step, l, j));
                }
            }
        }
    }

    // Per neuron: bounding boxes of owned pixels, then the graph of each crop.
    let mut bbox = vec![(usize::MAX, usize::MAX, 0usize, 0usize); n + 1];
    for (i, &l) in owner.as_slice().iter().enumerate() {
        if l != 0 {
            let (r, c) = (i / w, i % w);
            let b = &mut bbox[l as usize];
            b.0 = b.0.min(r);
            b.1 = b.1.min(c);
            b.2 = b.2.max(r);
            b.3 = b.3.max(c);
        }
    }
    let mut counts = vec![SkeletonCounts::default(); n + 1];
    for (k, m) in counts.iter_mut().enumerate().skip(1) {
        let (r0, c0, r1, c1) = bbox[k];
        if is_neuron(k as u32) && r0 != usize::MAX {
            let (bh, bw) = (r1 - r0 + 1, c1 - c0 + 1);
            let mine = Image::from_fn(bw, bh, |r, c| owner.get(r0 + r, c0 + c) == k as u32);
            let graph = skeleton_graph(mine.view());
            m.total_length = graph.total_length();
            // Pixels touching the soma (8-neighbourhood).
            let touches = |r: usize, c: usize| {
                N8.iter().any(|&(dr, dc)| {
                    let (rr, cc) = ((r0 + r) as isize + dr, (c0 + c) as isize + dc);
                    rr >= 0
                        && cc >= 0
                        && (rr as usize) < h
                        && (cc as usize) < w
                        && som[rr as usize * w + cc as usize] == k as u32
                })
            };
            let root = Image::from_fn(bw, bh, |r, c| mine.get(r, c) && touches(r, c));
            let roots = label(root.view(), Connectivity::Eight);
            // A neurite that stops short of the soma (within attach_distance) still has one
            // trunk per connected piece.
            let pieces = label(mine.view(), Connectivity::Eight);
            let mut piece_rooted = vec![false; pieces.count() as usize + 1];
            for (&p, &q) in pieces.image().as_slice().iter().zip(root.as_slice().iter()) {
                if q {
                    piece_rooted[p as usize] = true;
                }
            }
            let unrooted = piece_rooted[1..].iter().filter(|&&x| !x).count() as u32;
            m.trunks = roots.count() + unrooted;
            let junction = Image::from_fn(bw, bh, |r, c| {
                graph
                    .nodes
                    .binary_search(&(r, c))
                    .map(|i| graph.degrees[i] >= 3)
                    .unwrap_or(false)
            });
            m.non_trunk_branches = label(junction.view(), Connectivity::Eight).count();
            m.branch_ends = graph
                .nodes
                .iter()
                .zip(&graph.degrees)
                .filter(|&(&(r, c), &d)| d <= 1 && !touches(r, c))
                .count() as u32;
            m.longest_neurite = owner
                .as_slice()
                .iter()
                .zip(&dist)
                .filter(|&(&l, _)| l == k as u32)
                .map(|(_, &d)| d)
                .fold(0.0, f64::max);
        }
    }
    SkeletonMeasurement { counts, owner }
}
