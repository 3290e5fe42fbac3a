//! ipscope: plate scans of iPS-cell-derived cultures in, trustworthy per-object and per-well
//! numbers out.
//!
//! This facade ties the crates together: plate discovery and decoding (`ipscope-io`), pixel
//! algorithms and assays (`ipscope-core`), Arrow tables (`ipscope-table`) and per-well
//! statistics (`ipscope-stats`).
//!
//! ```no_run
//! use ipscope::{Pipeline, RunOptions};
//! let mut options = RunOptions::new("plate/");
//! options.channels = vec![("w1".into(), "DNA".into()), ("w2".into(), "OCT4".into())];
//! let pipeline = Pipeline::new(options)?;
//! for field in pipeline.stream() {
//!     println!("{} {}: {} nuclei", field.record.well, field.record.site, field.nuclei.num_rows());
//! }
//! # Ok::<(), ipscope::Error>(())
//! ```

pub mod analysis;
pub mod assay;
pub mod campaign;
pub mod cells_run;
pub mod channels;
pub mod colony_model;
pub mod colony_run;
pub mod config;
pub mod demo;
pub mod demo_calcium;
pub mod demo_colonies;
pub mod demo_contraction;
pub mod demo_disease;
pub mod demo_neuron;
pub mod disease;
mod error;
pub mod features;
pub mod illum_run;
pub mod lock;
pub mod manifest;
pub mod marker_run;
pub mod merge;
pub mod neurite_run;
pub mod partial;
pub mod pipeline;
pub mod qc_run;
pub mod scan;
pub mod spots_run;
pub mod timelapse_run;
pub mod verify;

pub use assay::Assay;
pub use channels::{Channel, Role};
pub use config::Config;
pub use error::{Error, Result};
pub use merge::{merge, MergeSummary};
pub use pipeline::{
    Event, FailureRecord, FieldOutput, FieldRecord, Pipeline, RunOptions, RunSummary, Shard, Status,
};
pub use scan::{scan, ScanReport};
pub use verify::{verify, VerifyReport};

pub use ipscope_core as core;
pub use ipscope_gpu as gpu;
pub use ipscope_image as image;
pub use ipscope_io as io;
pub use ipscope_stats as stats;
pub use ipscope_table as table;
pub use ipscope_table::Format;

/// The README's Rust examples, compiled as doc tests so they cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
