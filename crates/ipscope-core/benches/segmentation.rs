//! Throughput of the segmentation kernels that `benches/kernels.rs` does not cover, at 512²
//! and 2048² on the same synthetic nuclei field: the Li, triangle, three-class Otsu, robust
//! background and local thresholds, the background top-hat's grey opening at the default
//! radius 50, `peak_local_max`, `expand_labels`, and `segment_cells` with each method on a
//! synthetic cell stain (the nuclei field blurred into cell bodies).
//!
//! `cargo bench -p ipscope-core --bench segmentation` (criterion prints time and MPx/s per
//! size). Filter with a name, e.g. `cargo bench -p ipscope-core --bench segmentation -- li`.

mod common;

use std::hint::black_box;

use common::field;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ipscope_core::ops::distance::distance_transform_edt;
use ipscope_core::ops::expand::expand_labels;
use ipscope_core::ops::filter::gaussian_blur;
use ipscope_core::ops::morphology::fill_holes;
use ipscope_core::ops::peaks::peak_local_max;
use ipscope_core::ops::rank;
use ipscope_core::ops::threshold::{
    li, local, multiotsu, otsu, robust_background, triangle, RobustBackgroundParams,
};
use ipscope_core::{segment_cells, segment_nuclei, CellMethod, CellsParams, NucleiParams};
use ipscope_image::Image;

const SIZES: [usize; 2] = [512, 2048];

/// A uint16 cell-body stain: the nuclei field blurred with σ = 6 and amplified, so that
/// each nucleus sits in a dimmer cell about twice its radius.
fn cell_stain(raw: &Image<u16>) -> Image<u16> {
    let scaled = raw.map(|v| f32::from(v) / 65535.0);
    let body = gaussian_blur(scaled.view(), 6.0);
    Image::from_fn(raw.width(), raw.height(), |r, c| {
        let v = 0.6 * body.get(r, c) * 6.0 + 0.4 * scaled.get(r, c);
        (f64::from(v) * 65535.0).clamp(0.0, 65535.0) as u16
    })
}

fn segmentation(c: &mut Criterion) {
    for &size in &SIZES {
        let raw = field(size);
        let scaled = raw.map(|v| f32::from(v) / 65535.0);
        let smooth = gaussian_blur(scaled.view(), 1.0);
        let t = otsu(smooth.view(), 256).unwrap_or(0.5);
        let fg = fill_holes(smooth.map(|v| v > t).view());
        let dist = distance_transform_edt(fg.view());
        let nuclei = segment_nuclei(raw.view(), &NucleiParams::default()).labels;
        let cells = cell_stain(&raw);

        let mut g = c.benchmark_group(format!("{size}x{size}"));
        g.throughput(Throughput::Elements((size * size) as u64));
        if size >= 2048 {
            g.sample_size(10);
        }
        let id = |name: &str| BenchmarkId::new(name, size);
        g.bench_function(id("threshold_li"), |b| {
            b.iter(|| li(black_box(smooth.view())))
        });
        // Minimum 0, as the default nuclei segmentation's top-hat leaves a field.
        let floor = smooth
            .as_slice()
            .iter()
            .copied()
            .fold(f32::INFINITY, f32::min);
        let from_zero = smooth.map(|v| v - floor);
        g.bench_function(id("threshold_li_from_zero"), |b| {
            b.iter(|| li(black_box(from_zero.view())))
        });
        g.bench_function(id("threshold_triangle"), |b| {
            b.iter(|| triangle(black_box(smooth.view()), 256))
        });
        g.bench_function(id("threshold_otsu_3class"), |b| {
            b.iter(|| multiotsu(black_box(smooth.view()), 3, 256))
        });
        let rb = RobustBackgroundParams::default();
        g.bench_function(id("threshold_robust_background"), |b| {
            b.iter(|| robust_background(black_box(smooth.view()), &rb))
        });
        g.bench_function(id("threshold_local_b51"), |b| {
            b.iter(|| local(black_box(smooth.view()), 51, 0.0))
        });
        g.bench_function(id("rank_open_r50"), |b| {
            b.iter(|| rank::open(black_box(smooth.view()), 50))
        });
        g.bench_function(id("peak_local_max_d7"), |b| {
            b.iter(|| peak_local_max(black_box(dist.view()), 7, 0.0, Some(&nuclei)))
        });
        g.bench_function(id("expand_labels_10"), |b| {
            b.iter(|| expand_labels(black_box(&nuclei), 10.0))
        });
        for (name, method) in [
            ("segment_cells_propagation", CellMethod::Propagation),
            ("segment_cells_watershed", CellMethod::Watershed),
            ("segment_cells_distance", CellMethod::Distance),
        ] {
            let params = CellsParams {
                method,
                ..CellsParams::default()
            };
            g.bench_function(id(name), |b| {
                b.iter(|| segment_cells(black_box(cells.view()), &nuclei, &params))
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = segmentation
}
criterion_main!(benches);
