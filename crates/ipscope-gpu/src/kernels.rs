//! The WGSL kernels, embedded from the workspace's `kernels/` folder.
//!
//! [`KERNELS`] is the registry: every `.wgsl` file in `kernels/` must appear here, and every
//! entry must have a parity case in `tests/parity.rs` (both checked by `tests/kernels.rs`).

/// One WGSL source file and its compute entry points.
#[derive(Debug, Clone, Copy)]
pub struct Kernel {
    /// File stem in `kernels/`.
    pub name: &'static str,
    /// The WGSL source.
    pub source: &'static str,
    /// Compute entry points the host dispatches.
    pub entry_points: &'static [&'static str],
    /// The kinds of bindings 0.. of bind group 0, in order.
    pub bindings: &'static [Binding],
}

/// The kind of one buffer binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// `var<uniform>`.
    Uniform,
    /// `var<storage, read>`.
    Read,
    /// `var<storage, read_write>`.
    ReadWrite,
}

use Binding::{Read as R, ReadWrite as RW, Uniform as U};

/// Separable Gaussian (columns, then rows).
pub const GAUSSIAN: Kernel = Kernel {
    name: "gaussian",
    source: include_str!("../../../kernels/gaussian.wgsl"),
    entry_points: &["columns", "rows"],
    bindings: &[U, R, RW, R],
};

/// Finite range and numpy-binned histogram.
pub const HISTOGRAM: Kernel = Kernel {
    name: "histogram",
    source: include_str!("../../../kernels/histogram.wgsl"),
    entry_points: &["find_range", "count_bins"],
    bindings: &[U, R, RW, RW, R],
};

/// Erosion and dilation.
pub const MORPHOLOGY: Kernel = Kernel {
    name: "morphology",
    source: include_str!("../../../kernels/morphology.wgsl"),
    entry_points: &["erode", "dilate", "pack", "unpack"],
    bindings: &[U, R, RW],
};

/// Hole filling from the background's labels (open components, then the filled mask).
pub const HOLES: Kernel = Kernel {
    name: "holes",
    source: include_str!("../../../kernels/holes.wgsl"),
    entry_points: &["open_border", "fill"],
    bindings: &[U, R, RW, RW],
};

/// Exact Euclidean distance transform.
pub const EDT: Kernel = Kernel {
    name: "edt",
    source: include_str!("../../../kernels/edt.wgsl"),
    entry_points: &["columns_window", "columns", "rows"],
    bindings: &[U, R, RW, RW, RW, RW, RW],
};

/// Connected components.
pub const LABEL: Kernel = Kernel {
    name: "label",
    source: include_str!("../../../kernels/label.wgsl"),
    entry_points: &["init", "merge", "local", "seams", "flatten"],
    bindings: &[U, R, RW],
};

/// Per-object reductions.
pub const MEASURE: Kernel = Kernel {
    name: "measure",
    source: include_str!("../../../kernels/measure.wgsl"),
    entry_points: &["reduce"],
    bindings: &[U, R, R, RW],
};

/// Partial sums for one step of Li's threshold.
pub const LI: Kernel = Kernel {
    name: "li",
    source: include_str!("../../../kernels/li.wgsl"),
    entry_points: &["partial_sums"],
    bindings: &[U, R, RW],
};

/// Seeded watershed by relaxation of flooding keys.
pub const WATERSHED: Kernel = Kernel {
    name: "watershed",
    source: include_str!("../../../kernels/watershed.wgsl"),
    entry_points: &["init", "relax", "relax_local", "extract"],
    bindings: &[U, R, R, RW, RW],
};

/// The size filter: per-label area and first pixel, then a lookup of the new labels.
pub const RELABEL: Kernel = Kernel {
    name: "relabel",
    source: include_str!("../../../kernels/relabel.wgsl"),
    entry_points: &["areas", "remap"],
    bindings: &[U, R, RW, R, RW],
};

/// The resident segmentation's own steps: the threshold, and the size filter over
/// union-find labels (areas at first pixels, ids, numbers in raster order).
pub const SEGMENT: Kernel = Kernel {
    name: "segment",
    source: include_str!("../../../kernels/segment.wgsl"),
    entry_points: &["threshold", "root_areas", "number", "remap"],
    bindings: &[U, R, RW, RW, R, RW],
};

/// A 16-bit field, uploaded two pixels to a word, scaled onto 0..=1 by a lookup table.
pub const UNPACK: Kernel = Kernel {
    name: "unpack",
    source: include_str!("../../../kernels/unpack.wgsl"),
    entry_points: &["unit_u16"],
    bindings: &[U, R, RW, R],
};

/// Grey erosion and dilation with a square (running extrema along rows or columns), and the
/// subtraction of a background.
pub const RANK: Kernel = Kernel {
    name: "rank",
    source: include_str!("../../../kernels/rank.wgsl"),
    entry_points: &["blocks", "combine", "subtract"],
    bindings: &[U, R, RW, RW, RW],
};

/// A label image as runs along its rows (first pixel, length, label; and the labelled pixels'
/// values of another image), for a smaller readback.
pub const RUNS: Kernel = Kernel {
    name: "runs",
    source: include_str!("../../../kernels/runs.wgsl"),
    entry_points: &["encode"],
    bindings: &[U, R, RW, RW, R, RW],
};

/// Every kernel the GPU backend uses.
pub const KERNELS: &[Kernel] = &[
    GAUSSIAN, HISTOGRAM, MORPHOLOGY, HOLES, EDT, LABEL, MEASURE, LI, WATERSHED, RELABEL, SEGMENT,
    UNPACK, RANK, RUNS,
];
