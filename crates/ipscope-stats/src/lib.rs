//! Per-well statistics over ipscope's tables: the Wells summary, plate QC from controls,
//! per-plate normalisation (percent of control, NPI, z, robust z, B-score), dose-response
//! curves (drc's models) and the run-level Curves and Qc tables.
//!
//! Everything here reads tables only (never pixels or the run's internal state), so a run and
//! a merge of shard runs, whose tables hold the same rows, give identical results. Reductions
//! run in a fixed order that does not depend on the order of the input rows.

pub mod curve;
pub mod disease;
pub mod input;
pub mod normalize;
pub mod plate;
pub mod profile;
pub mod qc;
pub mod rescue;
pub mod similarity;
mod wells;

pub use curve::{fit, relative_potency, CurveFit, Model, RelativePotency};
pub use normalize::{normalize, NormalizeOptions, Normalized};
pub use qc::{control_qc, plate_qc, ControlQc};
pub use wells::{well_summary, well_summary_with, FieldInfo, WellSummary};

/// What can go wrong while summarising tables.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A column is missing or has the wrong type, or a table operation failed.
    #[error(transparent)]
    Table(#[from] ipscope_table::Error),
    /// The tables are readable but their contents do not fit together.
    #[error("{0}")]
    Invalid(String),
}

/// Result with this crate's [`Error`] by default.
pub type Result<T, E = Error> = std::result::Result<T, E>;
