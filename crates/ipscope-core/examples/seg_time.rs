//! Wall time of the default [`segment_nuclei`] on one field, with a fingerprint of its labels,
//! and of its two costliest stages alone (Li's threshold and the top-hat's grey opening).
//!
//! ```sh
//! cargo run --release -p ipscope-core --example seg_time -- FIELD.tif [--size 2048] [--reps 6]
//! ```
//! The first channel of FIELD is tiled (mirrored copies, so no seam is flat) to `--size`²
//! (default 2048) and converted to 16 bits; without a FIELD the criterion benches' synthetic
//! field of that size is used. Each figure is the best of `--reps` runs. The label
//! fingerprint (FNV-1a of the label image) and the threshold's bits let two builds be
//! compared for identical output: run the binary of each build alternately on the same field.

use std::path::PathBuf;
use std::time::Instant;

use ipscope_core::ops::{filter::gaussian_blur, rank, threshold};
use ipscope_core::{segment_nuclei, NucleiParams};
use ipscope_image::{DynImage, Image};
use ipscope_io::{read_image, ReadOptions};

#[path = "../benches/common/mod.rs"]
#[allow(dead_code)]
mod common;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn best<R>(reps: usize, mut f: impl FnMut() -> R) -> (f64, R) {
    let mut out = None;
    let mut t = f64::INFINITY;
    for _ in 0..reps.max(1) {
        let s = Instant::now();
        let r = f();
        t = t.min(s.elapsed().as_secs_f64());
        out = Some(r);
    }
    // reps.max(1) ≥ 1 run, so `out` is set.
    (t, out.unwrap_or_else(|| unreachable!()))
}

fn tiled(src: &Image<u16>, size: usize) -> Image<u16> {
    let (w, h) = (src.width(), src.height());
    let fold = |i: usize, n: usize| {
        let m = i % (2 * n);
        if m < n {
            m
        } else {
            2 * n - 1 - m
        }
    };
    Image::from_fn(size, size, |r, c| src.get(fold(r, h), fold(c, w)))
}

fn main() -> Res<()> {
    let mut path: Option<PathBuf> = None;
    let (mut size, mut reps) = (2048usize, 6usize);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--size" => size = args.next().ok_or("--size needs a value")?.parse()?,
            "--reps" => reps = args.next().ok_or("--reps needs a value")?.parse()?,
            _ => path = Some(PathBuf::from(a)),
        }
    }
    let field = match &path {
        Some(p) => {
            let src = match read_image(p, 0, &ReadOptions::default())? {
                DynImage::U8(i) => i.map(|v| u16::from(v) * 257),
                DynImage::U16(i) => i,
                DynImage::U32(i) => i.map(|v| v.min(65535) as u16),
                DynImage::F32(i) => i.map(|v| (v.clamp(0.0, 1.0) * 65535.0) as u16),
            };
            tiled(&src, size)
        }
        None => common::field(size),
    };
    let params = NucleiParams::default();
    let (t_seg, res) = best(reps, || segment_nuclei(field.view(), &params));
    let mut fnv = 0xcbf2_9ce4_8422_2325u64;
    for &l in res.labels.image().as_slice() {
        for b in l.to_le_bytes() {
            fnv = (fnv ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    // The stages alone, on the same inputs segment_nuclei gives them.
    let scaled = field.map(|v| f32::from(v) / 65535.0);
    let smoothed = gaussian_blur(scaled.view(), params.smoothing_sigma);
    let r = params.background_radius as usize;
    let (t_open, bg) = best(reps, || rank::open(smoothed.view(), r));
    let mut top = smoothed.clone();
    for (s, &b) in top.as_mut_slice().iter_mut().zip(bg.as_slice()) {
        *s -= b;
    }
    let (t_li, li) = best(reps, || threshold::li(top.view()));
    println!(
        "field {} {size}x{size}: segment_nuclei {:.3} s, {} nuclei, labels fnv {fnv:016x}, \
         threshold {} ({:#010x}); open r{r} {:.3} s; li {:.3} s ({:?})",
        path.as_ref()
            .map_or("synthetic".into(), |p| p.display().to_string()),
        t_seg,
        res.labels.count(),
        res.threshold,
        (res.threshold as f32).to_bits(),
        t_open,
        t_li,
        li,
    );
    Ok(())
}
