//! End-to-end tests of the `ipscope` binary.
//!
//! One test binary (modules by subject) keeps the build small and quick to link: run one
//! subject with `cargo test -p ipscope-cli --test cli <module>::`.

mod calcium;
mod campaign;
mod cells_run;
mod cli;
mod colonies;
mod colonies_run;
mod colony_eval;
mod colony_train;
mod colony_truth;
mod common;
mod config_files;
mod contraction;
mod device;
mod faults;
mod illum_merge;
mod illumination;
mod measure;
mod measure_texture_cli;
mod neurite;
mod report_security;
mod rescue;
mod resume;
mod segment;
mod segment_cells;
mod soak;
mod stats;
mod still_resume;
mod threads;
mod timelapse_interrupt;
