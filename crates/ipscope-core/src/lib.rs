//! ipscope's image algorithms as plain functions over image views.
//!
//! * [`ops`] holds the pixel algorithms (filters, thresholds, morphology, labelling, distance
//!   transform, peak finding, watershed, per-object measurements). Each one mirrors a named
//!   reference implementation (SciPy / scikit-image) and is checked against that peer's
//!   output by `tests/algorithms/reference.rs`, whose inputs and outputs come from
//!   `testdata/reference/core/make_core_refs.py`.
//! * [`assays`] builds the biology from the ops, one module per assay.
//!
//! Everything here is single-threaded and deterministic per image; the pipeline
//! parallelises over fields.

pub mod assays;
pub mod backend;
pub mod ops;

/// Helpers shared by the unit tests.
#[cfg(test)]
pub(crate) mod testing {
    /// Marsaglia's xorshift64 from `seed` (non-zero): a fixed, portable stream of test data.
    pub(crate) fn xorshift(seed: u64) -> impl FnMut() -> u64 {
        let mut s = seed;
        move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        }
    }

    /// Knuth's MMIX linear congruential generator from `seed`, each value the top 31 bits
    /// of the state after a step.
    pub(crate) fn lcg32(seed: u64) -> impl FnMut() -> u32 {
        let mut state = seed;
        move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u32
        }
    }

    /// The same generator's states as f64 in [0, 1): the top 53 bits after each step.
    pub(crate) fn lcg_unit(seed: u64) -> impl FnMut() -> f64 {
        let mut state = seed;
        move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        }
    }
}

pub use assays::cells::{segment_cells, CellMethod, CellsParams, CellsResult};
pub use assays::nuclei::{
    segment_nuclei, segment_nuclei_with, threshold_field, threshold_field_with, DeclumpMethod,
    FieldThreshold, NucleiParams, NucleiResult, ThresholdMethod,
};
pub use backend::{Backend, CpuBackend};

/// Errors raised by core's checked entry points.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Two images that must cover the same pixels have different sizes.
    #[error("{what}: expected a {expected_width}x{expected_height} image, got {width}x{height}")]
    ShapeMismatch {
        what: &'static str,
        expected_width: usize,
        expected_height: usize,
        width: usize,
        height: usize,
    },
    /// A compute device failed (lost, out of memory, or asked for more than it holds).
    #[error("{device}: {message}")]
    Backend { device: String, message: String },
}

/// Checks that an image has the expected size, naming it in the error.
pub fn ensure_shape(
    what: &'static str,
    (expected_width, expected_height): (usize, usize),
    (width, height): (usize, usize),
) -> Result<(), Error> {
    if (expected_width, expected_height) == (width, height) {
        Ok(())
    } else {
        Err(Error::ShapeMismatch {
            what,
            expected_width,
            expected_height,
            width,
            height,
        })
    }
}
