//! Per-kernel throughput at 512², 2048² and 4096² on a synthetic nuclei field (about one
//! nucleus per 3,100 px², a fifth of them in touching pairs or triples, as
//! `benches/peer/make_plate.py`), plus the whole nuclei segmentation.
//!
//! `cargo bench -p ipscope-core --bench kernels` (criterion prints time and MPx/s per size;
//! near-constant MPx/s across sizes means linear scaling). Filter with a name, e.g.
//! `cargo bench -p ipscope-core --bench kernels -- gaussian`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ipscope_core::ops::distance::distance_transform_edt;
use ipscope_core::ops::filter::gaussian_blur;
use ipscope_core::ops::label::{label, Connectivity};
use ipscope_core::ops::measure::{measure_intensity_features, measure_shape_features};
use ipscope_core::ops::morphology::fill_holes;
use ipscope_core::ops::threshold::otsu;
use ipscope_core::ops::watershed::watershed;
use ipscope_core::{segment_nuclei, NucleiParams};
use ipscope_image::{Image, Labels};

const SIZES: [usize; 3] = [512, 2048, 4096];

/// A uint16 DNA-stain field of `size`² with domed elliptical nuclei on a noisy background.
fn field(size: usize) -> Image<u16> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ size as u64;
    let mut rnd = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut img = Image::new(size, size, 0.0f32);
    let n = size * size / 3100;
    let mut placed: Vec<(f64, f64, f64)> = Vec::with_capacity(n);
    let mut tries = 0;
    while placed.len() < n && tries < 50 * n {
        tries += 1;
        let (y, x) = (rnd() * size as f64, rnd() * size as f64);
        let (a, b) = (7.0 + 3.0 * rnd(), 6.5 + 2.5 * rnd());
        let mut group = vec![(y, x, a, b)];
        if rnd() < 0.2 {
            let ang = rnd() * std::f64::consts::TAU;
            let d = 0.95 * (a + b);
            group.push((y + d * ang.sin(), x + d * ang.cos(), a, b));
        }
        for (y, x, a, b) in group {
            let r = (a + b) / 2.0;
            let clear = placed.iter().all(|&(py, px, pr)| {
                (py - y).powi(2) + (px - x).powi(2) >= (0.8 * (r + pr)).powi(2)
            });
            if !clear || y < 4.0 || x < 4.0 || y >= size as f64 - 4.0 || x >= size as f64 - 4.0 {
                continue;
            }
            placed.push((y, x, r));
            let (s, c) = (rnd() * std::f64::consts::PI).sin_cos();
            let amp = 2500.0 + 6500.0 * rnd();
            let ri = a.ceil() as usize + 1;
            let (y0, y1) = (
                (y as usize).saturating_sub(ri),
                (y as usize + ri + 1).min(size),
            );
            let (x0, x1) = (
                (x as usize).saturating_sub(ri),
                (x as usize + ri + 1).min(size),
            );
            for yy in y0..y1 {
                for xx in x0..x1 {
                    let (dy, dx) = (yy as f64 - y, xx as f64 - x);
                    let u = (dx * c + dy * s) / a;
                    let v = (-dx * s + dy * c) / b;
                    let rho2 = u * u + v * v;
                    if rho2 < 1.0 {
                        let p = (amp * (1.0 - rho2).powf(0.25)) as f32;
                        let o = img.get(yy, xx);
                        img.set(yy, xx, o.max(p));
                    }
                }
            }
        }
    }
    let img = gaussian_blur(img.view(), 1.2);
    img.map(|v| {
        let noise = (rnd() + rnd() + rnd() - 1.5) * 40.0;
        (f64::from(v) + 400.0 + noise).clamp(0.0, 65535.0) as u16
    })
}

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
        g.bench_function(id("watershed"), |b| {
            b.iter(|| watershed(s.elevation.view(), black_box(&s.markers), Some(s.fg.view())))
        });
        g.bench_function(id("measure_shape_features"), |b| {
            b.iter(|| measure_shape_features(black_box(&s.labels)))
        });
        g.bench_function(id("measure_intensity_features"), |b| {
            b.iter(|| measure_intensity_features(black_box(&s.labels), raw.view()))
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
