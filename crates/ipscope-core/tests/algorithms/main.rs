//! Tests of the core algorithms against references from scikit-image, SciPy, cp-measure and CellProfiler.
//!
//! One test binary (modules by subject) keeps the build small and quick to link: run one
//! subject with `cargo test -p ipscope-core --test algorithms <module>::`.

mod calcium_reference;
mod common;
mod illumination_reference;
mod markers_reference;
mod measure_consistency;
mod measure_correlation;
mod measure_granularity;
mod measure_neighbors;
mod measure_texture;
mod nuclei_counts;
mod propagate_reference;
mod quality_reference;
mod rank_reference;
mod reference;
mod ridge_reference;
mod seg_threshold;
mod skeleton_reference;
