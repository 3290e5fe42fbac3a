//! Skeletons of binary masks and the graph of their branches.
//!
//! [`skeletonize`] reproduces `skimage.morphology.skeletonize` on 2-D images (its default,
//! Zhang & Suen 1984 "A fast parallel algorithm for thinning digital patterns", CACM 27(3)),
//! pixel for pixel: two sub-iterations per pass, each deciding from the image as it was at the
//! start of the sub-iteration, with scikit-image's 256-entry neighbourhood table (which
//! differs from the paper's conditions in 25 of the 256 neighbourhoods, e.g. it also thins 2-pixel
//! staircases). The table is scikit-image's (`_skeletonize_various_cy.pyx`, BSD-3-Clause);
//! the parity test against skimage 0.26 on blobs, lines, rings and a real mask is
//! `tests/algorithms/skeleton_reference.rs`.
//!
//! [`skeleton_graph`] follows skan (Nunez-Iglesias et al. 2018, PeerJ 6:e4312,
//! `skan.Skeleton`): skeleton pixels are nodes joined to their 8 neighbours with the
//! Euclidean step length (1 or √2); edges between two pixels of degree ≥ 3 (junction clusters)
//! are reduced to their minimum spanning tree; paths run between pixels whose degree is not 2,
//! and rings with no such pixel are closed paths. Path distances equal skan's
//! `path_lengths()` within 1e-9.
//!
//! [`prune_spurs`] removes terminal branches (endpoint to junction) shorter than a length,
//! as CellProfiler's and AnalyzeSkeleton's pruning does, repeating until none is left.

use ipscope_image::{Image, ImageView};

/// scikit-image's Zhang–Suen table: index = neighbourhood code with bits NW=1, N=2, NE=4,
/// E=8, SE=16, S=32, SW=64, W=128; 1 = removable in the first sub-iteration, 2 = in the
/// second, 3 = in both.
#[rustfmt::skip]
const ZHANG_LUT: [u8; 256] = [
    0, 0, 0, 1, 0, 0, 1, 3, 0, 0, 3, 1, 1, 0, 1, 3, 0, 0, 0, 0, 0, 0,
    0, 0, 2, 0, 2, 0, 3, 0, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 3, 0, 2, 2, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 2, 0,
    0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 3, 0, 2, 0, 0, 0, 3, 1,
    0, 0, 1, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 1, 3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 3, 1, 3, 0, 0,
    1, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 2, 3, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 3, 3,
    0, 1, 0, 0, 0, 0, 2, 2, 0, 0, 2, 0, 0, 0,
];

/// The skeleton of a binary mask, as `skimage.morphology.skeletonize(mask)` (2-D, Zhang).
///
/// Pixels outside the image count as background. An empty mask gives an empty skeleton.
pub fn skeletonize(mask: ImageView<bool>) -> Image<bool> {
    let (w, h) = (mask.width(), mask.height());
    if w == 0 || h == 0 {
        return Image::new(w, h, false);
    }
    // A one-pixel border of background removes every bounds check below.
    let (pw, ph) = (w + 2, h + 2);
    let mut skel = vec![0u8; pw * ph];
    for r in 0..h {
        for (c, &v) in mask.row(r).iter().enumerate() {
            skel[(r + 1) * pw + c + 1] = u8::from(v);
        }
    }
    let mut cleaned = skel.clone();
    let mut removed = true;
    while removed {
        removed = false;
        for first_pass in [true, false] {
            for r in 1..ph - 1 {
                for c in 1..pw - 1 {
                    let i = r * pw + c;
                    if skel[i] == 0 {
                        continue;
                    }
                    let code = usize::from(skel[i - pw - 1])
                        | usize::from(skel[i - pw]) << 1
                        | usize::from(skel[i - pw + 1]) << 2
                        | usize::from(skel[i + 1]) << 3
                        | usize::from(skel[i + pw + 1]) << 4
                        | usize::from(skel[i + pw]) << 5
                        | usize::from(skel[i + pw - 1]) << 6
                        | usize::from(skel[i - 1]) << 7;
                    let kind = ZHANG_LUT[code];
                    if kind == 3 || (kind == 1 && first_pass) || (kind == 2 && !first_pass) {
                        cleaned[i] = 0;
                        removed = true;
                    }
                }
            }
            skel.copy_from_slice(&cleaned);
        }
    }
    Image::from_fn(w, h, |r, c| skel[(r + 1) * pw + c + 1] != 0)
}

/// What a branch connects, as skan's `summarize(...)['branch_type']`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BranchType {
    /// 0: an isolated line, endpoint to endpoint.
    EndpointToEndpoint,
    /// 1: a terminal branch, endpoint to junction.
    EndpointToJunction,
    /// 2: junction to junction.
    JunctionToJunction,
    /// 3: a closed ring.
    Cycle,
}

impl BranchType {
    /// skan's integer code.
    pub fn code(self) -> u8 {
        match self {
            BranchType::EndpointToEndpoint => 0,
            BranchType::EndpointToJunction => 1,
            BranchType::JunctionToJunction => 2,
            BranchType::Cycle => 3,
        }
    }
}

/// One branch of a skeleton: the pixels from one end to the other, ends included.
#[derive(Debug, Clone, PartialEq)]
pub struct SkeletonPath {
    /// `(row, col)` of every pixel along the path, in walking order.
    pub pixels: Vec<(usize, usize)>,
    /// Length along the path: 1 per axial step, √2 per diagonal step (skan's branch distance).
    pub distance: f64,
    pub kind: BranchType,
}

/// The branch graph of a skeleton image.
#[derive(Debug, Clone, PartialEq)]
pub struct SkeletonGraph {
    pub paths: Vec<SkeletonPath>,
    /// `(row, col)` of every skeleton pixel, raster order (node index = position here).
    pub nodes: Vec<(usize, usize)>,
    /// Degree of every node after junction clusters are reduced to their spanning tree.
    pub degrees: Vec<u8>,
}

impl SkeletonGraph {
    /// Nodes with exactly one neighbour (branch ends).
    pub fn endpoints(&self) -> usize {
        self.degrees.iter().filter(|&&d| d == 1).count()
    }

    /// Nodes with three or more neighbours (junction pixels; a cluster counts each pixel).
    pub fn junction_pixels(&self) -> usize {
        self.degrees.iter().filter(|&&d| d >= 3).count()
    }

    /// Sum of all path distances.
    pub fn total_length(&self) -> f64 {
        self.paths.iter().map(|p| p.distance).sum()
    }
}

/// Neighbour offsets in raster order of the neighbour's position: (drow, dcol).
const NEIGHBOURS: [(isize, isize); 8] = [
    (-1, -1),
    (-1, 0),
    (-1, 1),
    (0, -1),
    (0, 1),
    (1, -1),
    (1, 0),
    (1, 1),
];

/// Union–find with path halving, for the spanning tree of junction clusters.
fn find(parent: &mut [usize], mut x: usize) -> usize {
    while parent[x] != x {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    x
}

/// The branch graph of a skeleton, as `skan.Skeleton(skel)`; see the module docs.
pub fn skeleton_graph(skel: ImageView<bool>) -> SkeletonGraph {
    let (w, h) = (skel.width(), skel.height());
    let mut index = vec![usize::MAX; w * h];
    let mut nodes = Vec::new();
    for r in 0..h {
        for (c, &v) in skel.row(r).iter().enumerate() {
            if v {
                index[r * w + c] = nodes.len();
                nodes.push((r, c));
            }
        }
    }
    let n = nodes.len();
    // Adjacency lists, neighbours in ascending node order (as skan's CSR rows).
    let mut adj: Vec<Vec<(usize, f64)>> = Vec::with_capacity(n);
    for &(r, c) in &nodes {
        let mut list = Vec::with_capacity(8);
        for (dr, dc) in NEIGHBOURS {
            let (rr, cc) = (r as isize + dr, c as isize + dc);
            if rr < 0 || cc < 0 || rr >= h as isize || cc >= w as isize {
                continue;
            }
            let j = index[rr as usize * w + cc as usize];
            if j != usize::MAX {
                let d = if dr != 0 && dc != 0 {
                    std::f64::consts::SQRT_2
                } else {
                    1.0
                };
                list.push((j, d));
            }
        }
        adj.push(list);
    }
    // Junction clusters: keep only a minimum spanning tree of the edges joining two pixels of
    // degree >= 3 (skan's `_mst_junctions`), Kruskal with ties broken by node order.
    let full_degree: Vec<usize> = adj.iter().map(Vec::len).collect();
    let mut jedges: Vec<(f64, usize, usize)> = Vec::new();
    for (i, list) in adj.iter().enumerate() {
        if full_degree[i] < 3 {
            continue;
        }
        for &(j, d) in list {
            if j > i && full_degree[j] >= 3 {
                jedges.push((d, i, j));
            }
        }
    }
    if !jedges.is_empty() {
        jedges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let mut parent: Vec<usize> = (0..n).collect();
        let mut drop: Vec<(usize, usize)> = Vec::new();
        for &(_, i, j) in &jedges {
            let (a, b) = (find(&mut parent, i), find(&mut parent, j));
            if a == b {
                drop.push((i, j));
            } else {
                parent[a] = b;
            }
        }
        for (i, j) in drop {
            adj[i].retain(|&(k, _)| k != j);
            adj[j].retain(|&(k, _)| k != i);
        }
    }
    let degrees: Vec<u8> = adj.iter().map(|l| l.len() as u8).collect();

    // Walk paths; an edge is used once (skan's `_build_paths`).
    let mut visited: Vec<Vec<bool>> = adj.iter().map(|l| vec![false; l.len()]).collect();
    let mut paths = Vec::new();
    let mark = |visited: &mut Vec<Vec<bool>>, adj: &Vec<Vec<(usize, f64)>>, a: usize, b: usize| {
        if let Some(k) = adj[a].iter().position(|&(x, _)| x == b) {
            visited[a][k] = true;
        }
        if let Some(k) = adj[b].iter().position(|&(x, _)| x == a) {
            visited[b][k] = true;
        }
    };
    let walk = |visited: &mut Vec<Vec<bool>>, start: usize, first: usize| -> SkeletonPath {
        let mut pix = vec![nodes[start]];
        let mut dist = 0.0;
        let (mut node, mut next) = (start, first);
        loop {
            let k = adj[node].iter().position(|&(x, _)| x == next).unwrap_or(0);
            if visited[node][k] {
                break;
            }
            mark(visited, &adj, node, next);
            dist += adj[node][k].1;
            pix.push(nodes[next]);
            if degrees[next] != 2 || next == start {
                break;
            }
            let nb = &adj[next];
            let following = if nb[0].0 != node { nb[0].0 } else { nb[1].0 };
            node = next;
            next = following;
        }
        let end = *pix.last().unwrap_or(&nodes[start]);
        let end_node = index[end.0 * w + end.1];
        let (ds, de) = (degrees[start], degrees[end_node]);
        let kind = if start == end_node {
            BranchType::Cycle
        } else if ds == 1 && de == 1 {
            BranchType::EndpointToEndpoint
        } else if ds == 1 || de == 1 {
            BranchType::EndpointToJunction
        } else {
            BranchType::JunctionToJunction
        };
        SkeletonPath {
            pixels: pix,
            distance: dist,
            kind,
        }
    };
    for node in 0..n {
        let d = degrees[node];
        if d > 2 || d == 1 {
            for k in 0..adj[node].len() {
                if !visited[node][k] {
                    let first = adj[node][k].0;
                    paths.push(walk(&mut visited, node, first));
                }
            }
        }
    }
    // What is left are isolated rings.
    for node in 0..n {
        if degrees[node] > 0 && !visited[node][0] {
            let first = adj[node][0].0;
            paths.push(walk(&mut visited, node, first));
        }
    }
    SkeletonGraph {
        paths,
        nodes,
        degrees,
    }
}

/// Removes terminal branches (endpoint to junction) shorter than `min_length` (path
/// distance), keeping the junction pixel, and repeats until no such spur is left. Isolated
/// lines and rings are kept whatever their length.
pub fn prune_spurs(skel: ImageView<bool>, min_length: f64) -> Image<bool> {
    let mut out = skel.to_image();
    if min_length.is_nan() || min_length <= 0.0 {
        return out;
    }
    loop {
        let graph = skeleton_graph(out.view());
        let mut removed = false;
        for p in &graph.paths {
            if p.kind != BranchType::EndpointToJunction || p.distance >= min_length {
                continue;
            }
            // Wipe every pixel of the spur except the one that joins the junction.
            let wipe: Vec<(usize, usize)> = {
                let first = p.pixels[0];
                let fi = graph.nodes.binary_search(&first).unwrap_or(0);
                if graph.degrees[fi] == 1 {
                    p.pixels[..p.pixels.len() - 1].to_vec()
                } else {
                    p.pixels[1..].to_vec()
                }
            };
            for (r, c) in wipe {
                out.set(r, c, false);
                removed = true;
            }
        }
        if !removed {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(rows: &[&str]) -> Image<bool> {
        let h = rows.len();
        let w = rows[0].len();
        Image::from_fn(w, h, |r, c| rows[r].as_bytes()[c] == b'#')
    }

    #[test]
    fn a_thick_bar_thins_to_a_line_and_empty_stays_empty() {
        let bar = Image::from_fn(20, 7, |r, c| (1..6).contains(&r) && (1..19).contains(&c));
        let sk = skeletonize(bar.view());
        let n = sk.as_slice().iter().filter(|&&v| v).count();
        assert!((12..=18).contains(&n), "{n}");
        for c in 0..20 {
            let col: usize = (0..7).filter(|&r| sk.get(r, c)).count();
            assert!(col <= 1, "column {c} has {col} pixels");
        }
        let empty = Image::new(5, 4, false);
        assert_eq!(skeletonize(empty.view()), empty);
        let none = Image::new(0, 0, false);
        assert_eq!(skeletonize(none.view()).len(), 0);
    }

    #[test]
    fn plus_has_four_branches_of_length_four() {
        let s = img(&[
            ".........",
            "....#....",
            "....#....",
            "....#....",
            ".#######.",
            "....#....",
            "....#....",
            "....#....",
            ".........",
        ]);
        let g = skeleton_graph(s.view());
        assert_eq!(g.paths.len(), 4);
        for p in &g.paths {
            assert_eq!(p.distance, 3.0);
            assert_eq!(p.kind, BranchType::EndpointToJunction);
        }
        assert_eq!(g.endpoints(), 4);
        assert_eq!(g.junction_pixels(), 1);
    }

    #[test]
    fn diagonal_steps_count_root_two_and_rings_close() {
        let s = img(&["#...", ".#..", "..##"]);
        let g = skeleton_graph(s.view());
        assert_eq!(g.paths.len(), 1);
        assert!((g.paths[0].distance - (2.0 * 2f64.sqrt() + 1.0)).abs() < 1e-12);
        let ring = img(&[".##.", "#..#", ".##."]);
        let g = skeleton_graph(ring.view());
        assert_eq!(g.paths.len(), 1);
        assert_eq!(g.paths[0].kind, BranchType::Cycle);
        assert!((g.paths[0].distance - (2.0 + 4.0 * 2f64.sqrt())).abs() < 1e-12);
    }

    #[test]
    fn pruning_removes_short_spurs_only() {
        let s = img(&["..........", "....#.....", ".########.", ".........."]);
        let pruned = prune_spurs(s.view(), 2.0);
        assert!(!pruned.get(1, 4), "the 1-pixel spur goes");
        let n = pruned.as_slice().iter().filter(|&&v| v).count();
        assert_eq!(n, 8, "the main line stays whole");
        assert_eq!(prune_spurs(s.view(), 0.0), s);
    }
}
