//! Tests of the assay statistics against drc, pycytominer and copairs, and NumPy/SciPy references.
//!
//! One test binary (modules by subject) keeps the build small and quick to link: run one
//! subject with `cargo test -p ipscope-stats --test stats <module>::`.

mod activity;
mod profiles;
mod reference;
