//! Texture (Haralick, scale 3, 256 levels, 4 directions), Zernike (degree 9) and the
//! colocalisation of two channels (MeasureColocalization) on a synthetic
//! 2048² field with 1,521 textured disk-shaped objects (radius 15 px), the same field as
//! `measure_granularity`.
//!
//! `cargo bench -p ipscope-core --bench measure_texture` (criterion prints the time per field;
//! divide by 1,521 for the time per object).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ipscope_core::ops::measure::{measure_colocalization, measure_texture, measure_zernike};
use ipscope_image::{Image, Labels};

const SIZE: usize = 2048;
const STEP: usize = 52;

fn field() -> (Labels, Image<u16>) {
    let per_row = SIZE / STEP;
    let lab = Image::from_fn(SIZE, SIZE, |r, c| {
        let (i, j) = (r / STEP, c / STEP);
        if i >= per_row || j >= per_row {
            return 0;
        }
        let (dy, dx) = (
            (r % STEP) as f64 - STEP as f64 / 2.0,
            (c % STEP) as f64 - STEP as f64 / 2.0,
        );
        if dy * dy + dx * dx <= 15.0 * 15.0 {
            (i * per_row + j + 1) as u32
        } else {
            0
        }
    });
    let px = Image::from_fn(SIZE, SIZE, |r, c| {
        let grain = ((r * 7 + c * 13) % 17) as f64 / 17.0;
        let dome = ((r % STEP) as f64 / STEP as f64 * std::f64::consts::PI).sin()
            * ((c % STEP) as f64 / STEP as f64 * std::f64::consts::PI).sin();
        (1000.0 + 20000.0 * dome + 5000.0 * grain) as u16
    });
    (Labels::from_image(lab), px)
}

fn bench(c: &mut Criterion) {
    let (labels, px) = field();
    let mut g = c.benchmark_group("measure_1521_objects_2048");
    g.sample_size(10);
    g.throughput(Throughput::Elements(u64::from(labels.count())));
    g.bench_function("texture", |b| {
        b.iter(|| black_box(measure_texture(&labels, px.view(), 3)))
    });
    g.bench_function("zernike", |b| {
        b.iter(|| black_box(measure_zernike(&labels)))
    });
    let px2 = Image::from_fn(SIZE, SIZE, |r, c| {
        (((r * 31 + c * 17) % 101) as f64 * 300.0 + f64::from(px.get(r, c)) * 0.5) as u16
    });
    g.bench_function("correlation", |b| {
        b.iter(|| black_box(measure_colocalization(&labels, px.view(), px2.view())))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
