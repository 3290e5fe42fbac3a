//! Per-kernel throughput at 512², 2048² and 4096² on a synthetic nuclei field (about one
//! nucleus per 3,100 px², a fifth of them in touching pairs or triples, as
//! `benches/peer/make_plate.py`), plus the whole nuclei segmentation and the image QC.
//!
//! `cargo bench -p ipscope-core --bench kernels` (criterion prints time and MPx/s per size;
//! near-constant MPx/s across sizes means linear scaling). Filter with a name, e.g.
//! `cargo bench -p ipscope-core --bench kernels -- gaussian`.

mod common;

use std::hint::black_box;

use common::field;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ipscope_core::assays::quality::{measure_quality, power_log_log_slope, QualityParams};
use ipscope_core::ops::distance::{
    distance_transform_edt, distance_transform_edt_of_objects, within_distance,
};
use ipscope_core::ops::filter::gaussian_blur;
use ipscope_core::ops::label::{label, Connectivity};
use ipscope_core::ops::measure::{measure_intensity_features, measure_shape_features};
use ipscope_core::ops::morphology::fill_holes;
use ipscope_core::ops::outline::{outline_overlay, outline_thumbnail};
use ipscope_core::ops::threshold::otsu;
use ipscope_core::ops::watershed::watershed;
use ipscope_core::{segment_nuclei, NucleiParams};
use ipscope_image::{Image, Labels};

const SIZES: [usize; 3] = [512, 2048, 4096];

struct Stages {
    scaled: Image<f32>,
    fg: Image<bool>,
    labels: Labels,
    elevation: Image<f32>,
    markers: Labels,
}

fn stages(raw: &Image<u16>) -> Stages {
    let scaled = raw.map(|v| f32::from(v) / 65535.0);
    let smooth = gaussian_blur(scaled.view(), 1.0);
    let t = otsu(smooth.view(), 256).unwrap_or(0.5);
    let fg = fill_holes(smooth.map(|v| v > t).view());
    let dist = distance_transform_edt(fg.view());
    let elevation = dist.map(|d| -d);
    let components = label(fg.view(), Connectivity::Eight);
    // One marker per component at its deepest pixel is enough to time the flood.
    let mut best = vec![(f32::INFINITY, usize::MAX); components.count() as usize + 1];
    for (i, (&l, &e)) in components
        .image()
        .as_slice()
        .iter()
        .zip(elevation.as_slice())
        .enumerate()
    {
        if l != 0 && e < best[l as usize].0 {
            best[l as usize] = (e, i);
        }
    }
    let mut m = Image::new(fg.width(), fg.height(), 0u32);
    for (l, &(_, i)) in best.iter().enumerate().skip(1) {
        m.as_mut_slice()[i] = l as u32;
    }
    let labels = segment_nuclei(raw.view(), &NucleiParams::default()).labels;
    Stages {
        scaled,
        fg,
        labels,
        elevation,
        markers: Labels::from_image(m),
    }
}

fn kernels(c: &mut Criterion) {
    for &size in &SIZES {
        let raw = field(size);
        let s = stages(&raw);
        let mut g = c.benchmark_group(format!("{size}x{size}"));
        g.throughput(Throughput::Elements((size * size) as u64));
        if size >= 4096 {
            g.sample_size(10);
        }
        let id = |name: &str| BenchmarkId::new(name, size);
        g.bench_function(id("gaussian_blur_s1"), |b| {
            b.iter(|| gaussian_blur(black_box(s.scaled.view()), 1.0))
        });
        g.bench_function(id("otsu"), |b| {
            b.iter(|| otsu(black_box(s.scaled.view()), 256))
        });
        g.bench_function(id("fill_holes"), |b| {
            b.iter(|| fill_holes(black_box(s.fg.view())))
        });
        g.bench_function(id("label"), |b| {
            b.iter(|| label(black_box(s.fg.view()), Connectivity::Eight))
        });
        g.bench_function(id("distance_transform_edt"), |b| {
            b.iter(|| distance_transform_edt(black_box(s.fg.view())))
        });
        // The same transform in each component's box (what the nuclei segmentation runs).
        let components = label(s.fg.view(), Connectivity::Eight);
        g.bench_function(id("distance_transform_edt_of_objects"), |b| {
            b.iter(|| distance_transform_edt_of_objects(black_box(&components)))
        });
        g.bench_function(id("watershed"), |b| {
            b.iter(|| watershed(s.elevation.view(), black_box(&s.markers), Some(s.fg.view())))
        });
        g.bench_function(id("measure_shape_features"), |b| {
            b.iter(|| measure_shape_features(black_box(&s.labels)))
        });
        g.bench_function(id("measure_intensity_features"), |b| {
            b.iter(|| measure_intensity_features(black_box(&s.labels), raw.view()))
        });
        // The full-size overlay (`ipscope segment --overlay`) and the report's thumbnail
        // (`overlay_thumbnail`: blocks of 8 at 2048², from the u16 field).
        g.bench_function(id("outline_overlay"), |b| {
            b.iter(|| outline_overlay(black_box(s.scaled.view()), s.labels.image().view()))
        });
        g.bench_function(id("outline_thumbnail"), |b| {
            let k = size.div_ceil(256);
            b.iter(|| outline_thumbnail(black_box(raw.view()), s.labels.image().view(), k))
        });
        // Outline growth's 1 px reach: the windowed test and the transform it replaces.
        let outside = s.labels.image().map(|l| l == 0);
        g.bench_function(id("within_distance_1px"), |b| {
            b.iter(|| within_distance(black_box(outside.view()), 1.0))
        });
        g.bench_function(id("edt_of_background"), |b| {
            b.iter(|| distance_transform_edt(black_box(outside.view())))
        });
        // Image QC (`ipscope run`'s default): CellProfiler's PowerLogLogSlope alone, then
        // every ImageQuality figure of one channel.
        g.bench_function(id("power_log_log_slope"), |b| {
            b.iter(|| power_log_log_slope(black_box(s.scaled.view())))
        });
        g.bench_function(id("measure_quality"), |b| {
            b.iter(|| measure_quality(black_box(s.scaled.view()), 1.0, &QualityParams::default()))
        });
        g.bench_function(id("segment_nuclei"), |b| {
            b.iter(|| segment_nuclei(black_box(raw.view()), &NucleiParams::default()))
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = kernels
}
criterion_main!(benches);
