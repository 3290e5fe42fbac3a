//! Neighbors (CellProfiler's MeasureObjectNeighbors, within 5 px and adjacent) on a synthetic
//! 2048² field with 1,521 disk-shaped objects (radius 15 px) on a 34-px grid, so that each
//! object has its 4 grid neighbours 4 px away (within 5 px, not adjacent).
//!
//! `cargo bench -p ipscope-core --bench measure_neighbors` (criterion prints the time per
//! field; divide by 1,521 for the time per object).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ipscope_core::ops::measure::{measure_neighbors, NeighborMethod};
use ipscope_image::{Image, Labels};

const SIZE: usize = 2048;
const STEP: usize = 34;
const PER_ROW: usize = 39;

fn field() -> Labels {
    let lab = Image::from_fn(SIZE, SIZE, |r, c| {
        let (i, j) = (r / STEP, c / STEP);
        if i >= PER_ROW || j >= PER_ROW {
            return 0;
        }
        let (dy, dx) = (
            (r % STEP) as f64 - STEP as f64 / 2.0,
            (c % STEP) as f64 - STEP as f64 / 2.0,
        );
        if dy * dy + dx * dx <= 15.0 * 15.0 {
            (i * PER_ROW + j + 1) as u32
        } else {
            0
        }
    });
    Labels::from_image(lab)
}

fn bench(c: &mut Criterion) {
    let labels = field();
    let mut g = c.benchmark_group("neighbors_1521_objects_2048");
    g.sample_size(10);
    g.throughput(Throughput::Elements(u64::from(labels.count())));
    g.bench_function("within_5", |b| {
        b.iter(|| black_box(measure_neighbors(&labels, NeighborMethod::Within(5))))
    });
    g.bench_function("adjacent", |b| {
        b.iter(|| black_box(measure_neighbors(&labels, NeighborMethod::Adjacent)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
