//! Pixel algorithms as free functions over image views.
//!
//! Each module names the reference implementation it reproduces; the parity cases live in
//! `tests/algorithms/reference.rs`. ops never depend on assays.

pub mod blob;
pub mod distance;
pub mod eval;
pub mod expand;
pub mod filter;
pub mod illumination;
pub mod label;
pub mod measure;
pub mod morphology;
pub mod outline;
pub mod par;
pub mod peaks;
pub mod rank;
pub mod ridge;
pub(crate) mod scan;
pub mod signal;
pub mod skeleton;
pub mod threshold;
pub mod watershed;
