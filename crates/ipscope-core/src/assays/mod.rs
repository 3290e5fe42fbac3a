//! The biology: one module per assay, each built from [`crate::ops`].

pub mod calcium;
pub mod cells;
pub mod colonies;
pub mod contraction;
pub mod markers;
pub mod neurite;
pub mod nuclei;
pub mod quality;
pub mod spots;
