//! Per-well statistics over ipscope's tables.
//!
//! Everything here reads tables only (never pixels or the run's internal state), so a run and
//! a merge of shard runs, whose tables hold the same rows, give identical results. Reductions
//! run in a fixed order that does not depend on the order of the input rows.

mod wells;

pub use wells::well_summary;

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
