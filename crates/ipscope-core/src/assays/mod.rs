//! The biology: one module per assay, each built from [`crate::ops`].

pub mod cells;
pub mod nuclei;
