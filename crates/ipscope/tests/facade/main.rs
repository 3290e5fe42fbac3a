//! Tests of the facade crate: the calcium beating region, CellProfiler's ExampleHuman, device failures, streaming.
//!
//! One test binary (modules by subject) keeps the build small and quick to link: run one
//! subject with `cargo test -p ipscope --test facade <module>::`.

mod calcium_mask_sampling;
mod cp_examplehuman;
mod device_failure;
mod stream;
