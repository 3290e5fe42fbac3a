//! CPU vs GPU per kernel and for the GPU stages of the nuclei recipe, on a synthetic
//! 1024 × 1024 field of blobs. `cargo bench -p ipscope-gpu` prints criterion's figures;
//! `IPSCOPE_BENCH_SIZE=2048` changes the size. On lavapipe (a CPU Vulkan driver) the GPU
//! figures say nothing about GPU speed: it is there for correctness only.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use ipscope_core::backend::{Backend, CpuBackend};
use ipscope_core::ops::label::Connectivity;
use ipscope_gpu::GpuBackend;
use ipscope_image::Image;

fn field(n: usize) -> Image<f32> {
    let mut s = 99u64;
    let noise = Image::from_fn(n, n, |_, _| {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 40) as f32 / 16_777_216.0
    });
    CpuBackend.gaussian_blur(noise.view(), 4.0).unwrap_or(noise)
}

fn bench(c: &mut Criterion) {
    let n: usize = std::env::var("IPSCOPE_BENCH_SIZE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let img = field(n);
    let mean = img.as_slice().iter().sum::<f32>() / img.len() as f32;
    let mask = img.map(|v| v > mean);
    let labels = CpuBackend
        .label(mask.view(), Connectivity::Eight)
        .unwrap_or_else(|_| ipscope_image::Labels::empty(n, n));
    let mut backends: Vec<(String, Box<dyn Backend>)> = vec![("cpu".into(), Box::new(CpuBackend))];
    match GpuBackend::new() {
        Ok(g) => {
            eprintln!("GPU: {}", g.name());
            backends.push(("gpu".into(), Box::new(g)));
        }
        Err(e) => eprintln!("no GPU adapter ({e}): CPU figures only"),
    }
    let mut group = c.benchmark_group(format!("kernels_{n}x{n}"));
    group.sample_size(10);
    for (name, b) in &backends {
        let b = b.as_ref();
        group.bench_function(format!("gaussian_s1/{name}"), |x| {
            x.iter(|| b.gaussian_blur(black_box(img.view()), 1.0))
        });
        group.bench_function(format!("otsu/{name}"), |x| {
            x.iter(|| b.otsu(black_box(img.view()), 256))
        });
        group.bench_function(format!("erosion/{name}"), |x| {
            x.iter(|| b.binary_erosion(black_box(mask.view())))
        });
        group.bench_function(format!("fill_holes/{name}"), |x| {
            x.iter(|| b.fill_holes(black_box(mask.view())))
        });
        group.bench_function(format!("edt/{name}"), |x| {
            x.iter(|| b.distance_transform_edt(black_box(mask.view())))
        });
        group.bench_function(format!("label8/{name}"), |x| {
            x.iter(|| b.label(black_box(mask.view()), Connectivity::Eight))
        });
        group.bench_function(format!("measure_shape/{name}"), |x| {
            x.iter(|| b.measure_shape(black_box(&labels)))
        });
        group.bench_function(format!("size_filter/{name}"), |x| {
            x.iter(|| b.filter_by_area(black_box(&labels), 20, u64::MAX))
        });
        group.bench_function(format!("nuclei_stages/{name}"), |x| {
            x.iter(|| -> Result<_, ipscope_core::Error> {
                let s = b.gaussian_blur(img.view(), 1.0)?;
                let t = b.otsu(s.view(), 256)?.unwrap_or(f32::INFINITY);
                let fg = s.map(|v| v > t);
                let filled = b.fill_holes(fg.view())?;
                let l = b.label(filled.view(), Connectivity::Eight)?;
                let d = b.distance_transform_edt(filled.view())?;
                Ok((l, d, b.measure_shape(&labels)?))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
