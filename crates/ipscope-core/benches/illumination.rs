//! Illumination correction kernels on a 2048² field: adding a field to the plate average
//! (regular and background), each smoothing of the average at CellProfiler's automatic size
//! for 2048² (30 px: a median disc of radius 13, a Gaussian of σ 12.8), and the division;
//! the Gaussian smoothing also alone, beside its scalar reference.
//!
//! `cargo bench -p ipscope-core --bench illumination` (criterion prints the time per field
//! or per function; a plate needs one average step per field and corrected channel, one
//! smoothing per channel and one division per field and channel).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use ipscope_core::ops::illumination::{
    correct, illumination_function, smooth_gaussian, smooth_gaussian_reference, IllumIntensity,
    IllumSmoothing, IlluminationParams, IlluminationSum,
};
use ipscope_image::Image;

const SIZE: usize = 2048;

/// A vignetted field with a grid of bright discs, 12-bit values in u16.
fn field() -> Image<u16> {
    Image::from_fn(SIZE, SIZE, |r, c| {
        let (y, x) = (r as f64 / SIZE as f64 - 0.4, c as f64 / SIZE as f64 - 0.6);
        let gain = 1.0 - 0.5 * (x * x + y * y);
        let (dy, dx) = ((r % 40) as f64 - 20.0, (c % 40) as f64 - 20.0);
        let disc = if dy * dy + dx * dx < 80.0 {
            2500.0
        } else {
            0.0
        };
        ((300.0 + disc + ((r * 7 + c * 13) % 50) as f64) * gain) as u16
    })
}

fn bench(c: &mut Criterion) {
    let img = field();
    let mut g = c.benchmark_group("illumination_2048");
    g.sample_size(10);
    for (name, intensity) in [
        ("average_regular", IllumIntensity::Regular),
        ("average_background_60", IllumIntensity::Background),
    ] {
        let p = IlluminationParams {
            intensity,
            ..IlluminationParams::default()
        };
        g.bench_function(name, |b| {
            let mut sum = IlluminationSum::new(SIZE, SIZE);
            b.iter(|| sum.add_field(black_box(img.view()), &p).unwrap())
        });
    }
    let mut sum = IlluminationSum::new(SIZE, SIZE);
    sum.add(img.view()).unwrap();
    let mean = sum.mean();
    for (name, method) in [
        ("function_polynomial", IllumSmoothing::Polynomial),
        ("function_median_r13", IllumSmoothing::Median),
        ("function_gaussian_s12.8", IllumSmoothing::Gaussian),
    ] {
        let p = IlluminationParams {
            method,
            ..IlluminationParams::default()
        };
        g.bench_function(name, |b| {
            b.iter(|| illumination_function(black_box(mean.view()), &p))
        });
    }
    // The Gaussian smoothing alone, and its scalar reference (the implementation before the
    // loops were reordered; bit-identical output), for the speed-up in one run.
    let sigma = IlluminationParams::default().filter_size(SIZE, SIZE) / 2.35;
    g.bench_function("smooth_gaussian_s12.8", |b| {
        b.iter(|| smooth_gaussian(black_box(mean.view()), sigma))
    });
    g.bench_function("smooth_gaussian_s12.8_reference", |b| {
        b.iter(|| smooth_gaussian_reference(black_box(mean.view()), sigma))
    });
    let f = illumination_function(mean.view(), &IlluminationParams::default());
    g.bench_function("correct_divide", |b| {
        b.iter(|| correct(black_box(img.view()), f.view()).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
