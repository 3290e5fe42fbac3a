//! CPU vs GPU, per kernel and for the chain of GPU stages of the nuclei recipe, on a
//! synthetic field of touching nuclei (no files needed).
//!
//! ```sh
//! cargo build --release -p ipscope-gpu --example gpu_bench
//! target/release/examples/gpu_bench                 # 2048² and 8192²
//! target/release/examples/gpu_bench --quick         # 512², one repetition (lavapipe)
//! target/release/examples/gpu_bench --sizes 1024,4096 --reps 5
//! ```
//!
//! GPU times are wall-clock per call: upload, every dispatch, and readback (each `Backend`
//! method is self-contained), best of `--reps`; CPU times are the reference functions of
//! `ipscope_core::ops` on one thread, best of `--reps` (one repetition above 4096²).
//! Throughput is pixels per second of that call. The GPU result of each kernel is checked
//! against the CPU's (exact, or within the stated tolerance) and the line says so. The
//! nuclei chain's labels are compared as the issue asks: F1 at IoU 0.5 between the CPU's and
//! the GPU's objects (goal ≥ 0.999), and whether the objects with identical pixels have
//! identical measurements (area, centre, bounding box).
//!
//! `--chain` times only the nuclei chain, `--only watershed,chain` only those (for large sizes
//! on a slow device such as lavapipe).
//!
//! `segment otsu` is the resident segmentation of the field as 16-bit samples
//! (`Backend::segment_otsu`: Gaussian σ = 1,
//! Otsu, hole filling, 8-connected labels, size filter ≥ 20 px, shapes; on the GPU the image
//! goes up once and the labels come down once), against the same stages on the CPU; its line
//! adds the GPU's compute alone. `opening r=50` is the grey opening with a 101² square (the
//! nuclei recipe's background); `flatten li` is the recipe's first steps with the field
//! resident (`Backend::smooth_and_flatten`: the 16-bit field up, Gaussian σ = 1, minus its
//! opening, Li's threshold; the flattened field and the scaled field minus the opening down).
//!
//! `recipe default` is the whole default nuclei recipe (`segment_nuclei_with` with
//! `NucleiParams::default()`: Li, background opening, per-object thresholds, hybrid
//! declumping, automatic scale) on the 16-bit field, CPU against GPU, each followed by its
//! split: the time in each backend call and the host's work between them.
//!
//! When the adapter has timestamp queries (`TIMESTAMP_QUERY`), each kernel row also gives the
//! GPU's own compute time of one more call (`compute … ms`: the passes' timestamps summed,
//! without uploads, readbacks or host work), and the chain is run once more stage by stage:
//! wall-clock per stage on the CPU and the GPU, and the GPU compute time of each stage's
//! kernels. Without timestamp queries the stage table gives wall-clock only and says so.

use std::time::Instant;

use ipscope_core::backend::{
    segment_otsu_by_stages, Backend, CpuBackend, FieldView, FilledObjects, FlatThreshold,
    FlattenParams, Flattened, KeptImage, OtsuObjects, OtsuParams,
};
use ipscope_core::ops::eval::match_labels;
use ipscope_core::ops::label::Connectivity;
use ipscope_core::ops::measure::ObjectShape;
use ipscope_core::ops::threshold::Histogram;
use ipscope_core::{segment_nuclei_with, NucleiParams};
use ipscope_gpu::{Gpu, GpuBackend, KernelTime, LabelReadback, LI_TOLERANCE, WATERSHED_TOLERANCE};
use ipscope_image::{Image, ImageView, Labels};

/// The allocator and heap settings of the `ipscope` CLI, so that the transfers and host
/// stages are timed as `ipscope run` gets them (see `ipscope_image::memory`).
#[global_allocator]
static ALLOC: ipscope_image::memory::HugeImages = ipscope_image::memory::HugeImages;

struct Args {
    sizes: Vec<usize>,
    reps: usize,
    /// Only these benches (`--only`; the first word of a row's name, `chain` for the chain).
    only: Option<Vec<String>>,
    /// Label with the tiled passes (`--tiled-labels`, `Gpu::set_tiled_labelling`).
    tiled_labels: bool,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        sizes: vec![2048, 8192],
        reps: 3,
        only: None,
        tiled_labels: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--quick" => {
                a.sizes = vec![512];
                a.reps = 1;
            }
            "--sizes" => {
                let v = it.next().ok_or("--sizes needs a list, e.g. 2048,8192")?;
                a.sizes = v
                    .split(',')
                    .map(|s| s.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("--sizes {v}: {e}"))?;
            }
            "--reps" => {
                let v = it.next().ok_or("--reps needs a number")?;
                a.reps = v.parse().map_err(|e| format!("--reps {v}: {e}"))?;
                a.reps = a.reps.max(1);
            }
            "--chain" => a.only = Some(vec!["chain".into()]),
            "--tiled-labels" => a.tiled_labels = true,
            "--only" => {
                let v = it
                    .next()
                    .ok_or("--only needs a list, e.g. watershed,chain")?;
                a.only = Some(v.split(',').map(|s| s.trim().to_string()).collect());
            }
            "-h" | "--help" => {
                println!(
                    "gpu_bench [--quick] [--sizes 2048,8192] [--reps 3] [--chain] [--tiled-labels] \
                     [--only transfer,gaussian,otsu,li,erosion,dilation,fill_holes,edt,label8,\
                     measure_shape,size_filter,watershed,segment,chain]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if a.sizes.contains(&0) {
        return Err("sizes must be positive".into());
    }
    Ok(a)
}

/// A field of nuclei: one disc per 24-pixel cell, jittered and of random radius, so many
/// touch; intensity a smooth dome per nucleus plus a little noise. Returns the field and
/// the centres (the watershed's markers).
fn field(n: usize) -> (Image<f32>, Vec<(usize, usize)>) {
    const CELL: usize = 24;
    let hash = |a: u64, b: u64, k: u64| {
        let mut x = a
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F))
            .wrapping_add(k.wrapping_mul(0x1656_67B1_9E37_79F9));
        x ^= x >> 31;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x ^= x >> 29;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    let cells = n.div_ceil(CELL);
    let disc = |cy: usize, cx: usize| {
        let (y, x) = (cy as u64, cx as u64);
        let r = 6.0 + 6.0 * hash(y, x, 3);
        let oy = (cy * CELL) as f64 + 4.0 + (CELL as f64 - 8.0) * hash(y, x, 1);
        let ox = (cx * CELL) as f64 + 4.0 + (CELL as f64 - 8.0) * hash(y, x, 2);
        let present = hash(y, x, 4) < 0.8;
        (oy, ox, r, present)
    };
    let img = Image::from_fn(n, n, |r, c| {
        let (gy, gx) = (r / CELL, c / CELL);
        let mut v = 0f64;
        for cy in gy.saturating_sub(1)..(gy + 2).min(cells) {
            for cx in gx.saturating_sub(1)..(gx + 2).min(cells) {
                let (oy, ox, rad, present) = disc(cy, cx);
                if present {
                    let d2 = ((r as f64 - oy).powi(2) + (c as f64 - ox).powi(2)) / (rad * rad);
                    v = v.max(1.0 - d2);
                }
            }
        }
        (0.1 + 0.8 * v.max(0.0) + 0.05 * hash(r as u64, c as u64, 9)) as f32
    });
    let mut centres = Vec::new();
    for cy in 0..cells {
        for cx in 0..cells {
            let (oy, ox, _, present) = disc(cy, cx);
            let (y, x) = (oy.round() as usize, ox.round() as usize);
            if present && y < n && x < n {
                centres.push((y, x));
            }
        }
    }
    (img, centres)
}

/// Best of `reps` wall-clock runs, in ms, and the last result.
fn time<T>(reps: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::INFINITY;
    let mut out = None;
    for _ in 0..reps {
        let t = Instant::now();
        let r = f();
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
        out = Some(r);
    }
    match out {
        Some(o) => (best, o),
        None => unreachable!("reps >= 1"),
    }
}

/// The GPU compute time of `f`'s kernels from timestamp queries, in ms; `None` without them.
fn compute_ms(g: &GpuBackend, f: impl FnOnce()) -> Option<f64> {
    let gpu = g.gpu();
    if !gpu.set_profiling(true) {
        return None;
    }
    let _ = gpu.take_profile();
    f();
    let (k, _) = gpu.take_profile();
    gpu.set_profiling(false);
    Some(k.iter().map(|t| t.gpu_ms).sum())
}

fn rate(px: usize, ms: f64) -> String {
    let per_s = px as f64 / (ms / 1e3);
    if per_s >= 1e9 {
        format!("{:.2} GPx/s", per_s / 1e9)
    } else {
        format!("{:.1} MPx/s", per_s / 1e6)
    }
}

fn row(name: &str, n: usize, cpu_ms: f64, gpu: Option<(f64, &str)>) {
    let px = n * n;
    match gpu {
        Some((g, check)) => println!(
            "{name:<16} {n:>5}² cpu {cpu_ms:>9.1} ms {:>12}   gpu {g:>8.1} ms {:>12}   x{:<6.1} {check}",
            rate(px, cpu_ms),
            rate(px, g),
            cpu_ms / g
        ),
        None => println!(
            "{name:<16} {n:>5}² cpu {cpu_ms:>9.1} ms {:>12}",
            rate(px, cpu_ms)
        ),
    }
}

fn differing<T: PartialEq + Copy>(a: &Image<T>, b: &Image<T>) -> usize {
    a.as_slice()
        .iter()
        .zip(b.as_slice())
        .filter(|(x, y)| x != y)
        .count()
}

/// How the GPU chain's objects compare with the CPU's: F1 at IoU 0.5, and among the objects
/// with identical pixels, how many have identical shape measurements.
fn compare_objects(
    cpu: &(Labels, Vec<ObjectShape>),
    gpu: &(Labels, Vec<ObjectShape>),
) -> Result<String, String> {
    let (cl, gl) = (cpu.0.image().as_slice(), gpu.0.image().as_slice());
    let m = match_labels(cpu.0.view(), gpu.0.view()).map_err(|e| e.to_string())?;
    let c = &m.counts[0];
    let f1 = if c.tp + c.fp + c.fn_ == 0 {
        1.0
    } else {
        2.0 * c.tp as f64 / (2 * c.tp + c.fp + c.fn_) as f64
    };
    // An object is identical on both when every pixel of the CPU's object carries one GPU
    // label and every pixel of that GPU object the CPU's label.
    const UNSET: u32 = u32::MAX;
    const MIXED: u32 = u32::MAX - 1;
    let note = |seen: &mut Vec<u32>, a: u32, b: u32| {
        let s = &mut seen[a as usize];
        if *s == UNSET {
            *s = b;
        } else if *s != b {
            *s = MIXED;
        }
    };
    let mut c_to_g = vec![UNSET; cpu.0.count() as usize + 1];
    let mut g_to_c = vec![UNSET; gpu.0.count() as usize + 1];
    for (&a, &b) in cl.iter().zip(gl) {
        if a != 0 {
            note(&mut c_to_g, a, b);
        }
        if b != 0 {
            note(&mut g_to_c, b, a);
        }
    }
    // measure_shape lists the objects 1..=count in order.
    let shape = |shapes: &[ObjectShape], l: u32| {
        (l as usize)
            .checked_sub(1)
            .and_then(|i| shapes.get(i))
            .filter(|s| s.label == l)
            .map(|s| ObjectShape { label: 0, ..*s })
    };
    let (mut identical, mut measured_alike) = (0usize, 0usize);
    for (a, &b) in c_to_g.iter().enumerate().skip(1) {
        if b == 0 || b >= MIXED || g_to_c[b as usize] != a as u32 {
            continue;
        }
        identical += 1;
        let (sc, sg) = (shape(&cpu.1, a as u32), shape(&gpu.1, b));
        if sc.is_some() && sc == sg {
            measured_alike += 1;
        }
    }
    Ok(format!(
        "{} vs {} objects, F1@0.5 {f1:.6} ({}; tp {} fp {} fn {}), {identical} identical objects, {}",
        m.n_true,
        m.n_pred,
        if f1 >= 0.999 { "≥ 0.999" } else { "BELOW 0.999" },
        c.tp,
        c.fp,
        c.fn_,
        if measured_alike == identical {
            "all measured identically".to_string()
        } else {
            format!("{} measured DIFFERENTLY", identical - measured_alike)
        }
    ))
}

fn main() {
    ipscope_image::memory::keep_freed_memory();
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("gpu_bench: {e}");
            std::process::exit(2);
        }
    };
    let gpu = match GpuBackend::new() {
        Ok(g) => {
            g.gpu().set_tiled_labelling(a.tiled_labels);
            if a.tiled_labels {
                println!("labelling: tiled (label.wgsl local, seams)");
            }
            let s = g.gpu().adapter();
            println!(
                "adapter: {} ({}, {}, driver {}), max storage binding {} MiB",
                s.name,
                s.backend,
                s.device_type,
                s.driver,
                s.max_storage_buffer_binding_size >> 20
            );
            Some(g)
        }
        Err(e) => {
            println!("no GPU adapter ({e}): CPU figures only");
            None
        }
    };
    let cpu = CpuBackend;
    for &n in &a.sizes {
        let t0 = Instant::now();
        let (img, centres) = field(n);
        let cpu_reps = if n > 4096 { 1 } else { a.reps };
        println!(
            "\n{n}x{n} ({} nuclei, field made in {:.0} ms); GPU: upload + compute + readback, best of {}; CPU: best of {cpu_reps}",
            centres.len(),
            t0.elapsed().as_secs_f64() * 1e3,
            a.reps
        );
        let g = gpu.as_ref();
        let selected = |name: &str| {
            let key = name.split_whitespace().next().unwrap_or(name);
            a.only.as_ref().is_none_or(|o| o.iter().any(|k| k == key))
        };
        if let Some(g) = g.filter(|_| selected("transfer")) {
            // What one kernel call's upload and readback of a 4 B/px image cost alone.
            // The first call allocates the staging buffers, later calls reuse them.
            let mut best = (f64::INFINITY, f64::INFINITY);
            let mut first = None;
            for _ in 0..a.reps.max(2) {
                match g.gpu().transfer_probe(n * n) {
                    Ok((u, d)) => {
                        first.get_or_insert((u, d));
                        best = (best.0.min(u), best.1.min(d));
                    }
                    Err(e) => println!("transfer         {n:>5}² failed: {e}"),
                }
            }
            let first = first.unwrap_or(best);
            let mb = (n * n * 4) as f64 / 1e6;
            println!(
                "transfer         {n:>5}² upload {:>8.1} ms ({:.1} GB/s)   readback {:>8.1} ms ({:.1} GB/s)   of {mb:.0} MB, best of {} (first call: {:.1} ms, {:.1} ms)",
                best.0,
                mb / best.0,
                best.1,
                mb / best.1,
                a.reps.max(2),
                first.0,
                first.1
            );
            // Where a readback's time goes: the device's copy, the mapping, the host's copy
            // out of the mapped memory (against a host memcpy of the same size), for a
            // pooled staging buffer and a fresh one; best of the repetitions by total.
            for fresh in [false, true] {
                let best = (0..a.reps.max(2))
                    .filter_map(|_| g.gpu().readback_phases(n * n, fresh).ok())
                    .min_by(|x, y| {
                        let t = |p: &ipscope_gpu::ReadbackPhases| p.copy_ms + p.map_ms + p.host_ms;
                        t(x).total_cmp(&t(y))
                    });
                match best {
                    Some(p) => println!(
                        "  readback phases, {} staging: device copy {:.1} ms ({:.1} GB/s), map {:.1} ms, host copy out {:.1} ms ({:.1} GB/s; host memcpy {:.1} GB/s)",
                        if fresh { "fresh" } else { "pooled" },
                        p.copy_ms,
                        mb / p.copy_ms,
                        p.map_ms,
                        p.host_ms,
                        mb / p.host_ms,
                        mb / p.memcpy_ms
                    ),
                    None => println!("  readback phases: failed"),
                }
            }
        }
        kernels(&img, &centres, &cpu, g, (n, a.reps, cpu_reps), &selected);
        if selected("segment") {
            segment_row(&img, &cpu, g, (n, a.reps, cpu_reps));
        }
        if selected("recipe") {
            recipe_row(&img, &cpu, g, (n, a.reps, cpu_reps));
        }
        if !selected("chain") {
            continue;
        }
        // The GPU stages of the default nuclei recipe, end to end.
        let chain = |b: &dyn Backend| run_chain(b, &img, &mut |_, _| ());
        let (c_ms, c_out) = time(cpu_reps, || chain(&cpu));
        match g {
            Some(g) => match time(a.reps, || chain(g)) {
                (g_ms, Ok(g_out)) => {
                    let check = match &c_out {
                        Ok(c) => format!(
                            "labels {}: {}",
                            if c.0 == g_out.0 {
                                "identical"
                            } else {
                                "differ"
                            },
                            compare_objects(c, &g_out).unwrap_or_else(|e| e)
                        ),
                        Err(e) => format!("the CPU failed: {e}"),
                    };
                    row("nuclei chain", n, c_ms, Some((g_ms, &check)));
                }
                (_, Err(e)) => println!("nuclei chain {n}² gpu failed: {e}"),
            },
            None => row("nuclei chain", n, c_ms, None),
        }
        // The same chain with hole filling, labelling and the distance transform in one
        // call (`fill_label_distance`: the mask stays on the device between them).
        if let Some(g) = g {
            let fused = |b: &dyn Backend| -> Result<Chain, ipscope_core::Error> {
                let s = b.gaussian_blur(img.view(), 1.0)?;
                let th = b.otsu(s.view(), 256)?.unwrap_or(f32::INFINITY);
                let f =
                    b.fill_label_distance(s.map(|v| v > th), true, Connectivity::Eight, true)?;
                let l = b.filter_by_area(&f.labels, 20, u64::MAX)?;
                let shapes = b.measure_shape(&l)?;
                Ok((l, shapes))
            };
            match (time(a.reps, || fused(g)), &c_out) {
                ((g_ms, Ok(g_out)), Ok(c)) => {
                    let same = if c.0 == g_out.0 {
                        "identical"
                    } else {
                        "DIFFER"
                    };
                    let check = format!("labels {same} to the CPU chain's");
                    row("chain, resident", n, c_ms, Some((g_ms, &check)));
                }
                ((_, Err(e)), _) => println!("chain, resident {n}² gpu failed: {e}"),
                (_, Err(e)) => println!("chain, resident {n}²: the CPU failed: {e}"),
            }
        }
        stage_table(&img, &cpu, g);
    }
}

type Chain = (Labels, Vec<ObjectShape>);

/// The field as 16-bit samples (0..=1 onto 0..=65535).
fn sixteen_bit(img: &Image<f32>) -> Image<u16> {
    img.map(|v| (v.clamp(0.0, 1.0) * 65535.0).round() as u16)
}

/// The resident global-threshold segmentation, `Backend::segment_otsu`, on the CPU and the
/// GPU: wall clock of the call (the GPU's: one upload, the kernels, one readback of the
/// labels), the GPU's labels against the same stages run one by one on the GPU (identical)
/// and against the CPU's (F1@0.5, identical objects measured alike), and the GPU's compute
/// alone from timestamp queries.
fn segment_row(
    img: &Image<f32>,
    cpu: &CpuBackend,
    g: Option<&GpuBackend>,
    (n, reps, cpu_reps): (usize, usize, usize),
) {
    const NAME: &str = "segment otsu";
    let p = OtsuParams {
        min_area: 20,
        ..OtsuParams::default()
    };
    // As plates store it: 16-bit samples, uploaded at 2 bytes a pixel.
    let field = sixteen_bit(img);
    let seg = |b: &dyn Backend| -> Result<Chain, ipscope_core::Error> {
        let o = b.segment_otsu(FieldView::UnitU16(field.view()), &p)?;
        Ok((o.labels, o.shapes))
    };
    let (c_ms, c_out) = time(cpu_reps, || seg(cpu));
    let Some(g) = g else {
        row(NAME, n, c_ms, None);
        return;
    };
    match (time(reps, || seg(g)), &c_out) {
        ((g_ms, Ok(g_out)), Ok(c)) => {
            let staged = match segment_otsu_by_stages(g, FieldView::UnitU16(field.view()), &p) {
                Ok(o) if o.labels == g_out.0 && o.shapes == g_out.1 => "identical".to_string(),
                Ok(_) => "DIFFER".to_string(),
                Err(e) => format!("failed ({e})"),
            };
            let compute = compute_ms(g, || {
                let _ = seg(g);
            })
            .map(|ms| format!("; GPU compute alone {ms:.1} ms ({})", rate(n * n, ms)))
            .unwrap_or_default();
            let check = format!(
                "vs the stages one by one on the GPU: {staged}; vs the CPU: {}{compute}",
                compare_objects(c, &g_out).unwrap_or_else(|e| e)
            );
            row(NAME, n, c_ms, Some((g_ms, &check)));
            // The same with the labels read back whole, and the readback alone both ways.
            g.gpu().set_label_runs(false);
            let (whole_ms, whole) = time(reps, || seg(g));
            g.gpu().set_label_runs(true);
            let same = match whole {
                Ok(w) if w == g_out => "identical",
                Ok(_) => "DIFFER",
                Err(_) => "failed",
            };
            println!(
                "  labels read back whole instead of as runs: {whole_ms:.1} ms ({}), labels {same}; {}",
                rate(n * n, whole_ms),
                readback_note(g, &g_out.0, reps)
            );
        }
        ((_, Err(e)), _) => println!("{NAME} {n}² gpu failed: {e}"),
        (_, Err(e)) => println!("{NAME} {n}²: the CPU failed: {e}"),
    }
}

/// The readback of `labels` alone (`Gpu::labels_round_trip`: up, then down as runs or
/// whole), both ways: bytes, best time and whether the labels came back unchanged.
fn readback_note(g: &GpuBackend, labels: &Labels, reps: usize) -> String {
    let gpu = g.gpu();
    let view = labels.image().view();
    let (runs_ms, runs) = time(reps, || gpu.labels_round_trip(view, None, None));
    gpu.set_label_runs(false);
    let (whole_ms, whole) = time(reps, || gpu.labels_round_trip(view, None, None));
    gpu.set_label_runs(true);
    let mb = |words: usize| (words * 4) as f64 / 1e6;
    match (runs, whole) {
        (Ok((r, _, how)), Ok((w, _, _))) => {
            let down = match how {
                LabelReadback::Runs(k) => format!("{k} runs, {:.1} MB", mb(3 * k)),
                LabelReadback::Whole => format!("whole, {:.1} MB", mb(labels.image().len())),
            };
            let same = if &r == labels.image() && &w == labels.image() {
                "both unchanged"
            } else {
                "CHANGED"
            };
            format!(
                "readback alone (up, then down): {down} in {runs_ms:.1} ms, whole {:.1} MB in {whole_ms:.1} ms ({same})",
                mb(labels.image().len())
            )
        }
        (Err(e), _) | (_, Err(e)) => format!("readback alone failed: {e}"),
    }
}

/// The GPU stages of the default nuclei recipe: Gaussian σ = 1, Otsu, hole filling,
/// 8-connected labelling, distance transform, size filter, shape measurements. `stage` is
/// called after each with its name and its wall-clock time in ms.
fn run_chain(
    b: &dyn Backend,
    img: &Image<f32>,
    stage: &mut dyn FnMut(&'static str, f64),
) -> Result<Chain, ipscope_core::Error> {
    let mut t = Instant::now();
    let mut lap = |name: &'static str| {
        stage(name, t.elapsed().as_secs_f64() * 1e3);
        t = Instant::now();
    };
    let s = b.gaussian_blur(img.view(), 1.0)?;
    lap("gaussian");
    let th = b.otsu(s.view(), 256)?.unwrap_or(f32::INFINITY);
    lap("otsu");
    let fg = s.map(|v| v > th);
    lap("threshold (host)");
    let filled = b.fill_holes(fg.view())?;
    lap("fill_holes");
    let l = b.label(filled.view(), Connectivity::Eight)?;
    lap("label8");
    let d = b.distance_transform_edt(filled.view())?;
    lap("edt");
    drop(d);
    let l = b.filter_by_area(&l, 20, u64::MAX)?;
    lap("size_filter");
    let shapes = b.measure_shape(&l)?;
    lap("measure_shape");
    Ok((l, shapes))
}

/// One stage of the chain on the GPU: name, wall ms, and the compute ms of its kernels.
type StageRow = (&'static str, f64, Option<(f64, Vec<KernelTime>)>);

/// The chain once more, stage by stage: wall-clock on the CPU and the GPU, and with
/// timestamp queries the GPU compute time of each stage's kernels.
fn stage_table(img: &Image<f32>, cpu: &CpuBackend, g: Option<&GpuBackend>) {
    let mut cpu_ms: Vec<(&'static str, f64)> = Vec::new();
    if run_chain(cpu, img, &mut |n, ms| cpu_ms.push((n, ms))).is_err() {
        return;
    }
    let Some(g) = g else { return };
    let gpu = g.gpu();
    let timed = gpu.set_profiling(true);
    let _ = gpu.take_profile();
    let mut rows: Vec<StageRow> = Vec::new();
    let out = run_chain(g, img, &mut |n, ms| {
        let (k, _) = gpu.take_profile();
        // A host-only stage has no kernels: no compute time.
        let compute =
            (timed && !k.is_empty()).then(|| (k.iter().map(|t| t.gpu_ms).sum::<f64>(), k));
        rows.push((n, ms, compute));
    });
    let (_, untimed) = gpu.take_profile();
    gpu.set_profiling(false);
    if let Err(e) = out {
        println!("chain stages: gpu failed: {e}");
        return;
    }
    println!(
        "chain stages ({}): {:<17} {:>10} {:>12} {:>15}",
        if timed {
            "GPU compute from timestamp queries"
        } else {
            "no TIMESTAMP_QUERY on this adapter: wall clock only"
        },
        "stage",
        "cpu ms",
        "gpu wall ms",
        "gpu compute ms"
    );
    let (mut sc, mut sw, mut sg) = (0.0, 0.0, 0.0);
    for ((name, wall, compute), (_, c)) in rows.iter().zip(&cpu_ms) {
        let kernels = compute
            .as_ref()
            .map(|(_, k)| {
                k.iter()
                    .map(|t| format!("{}.{} ×{} {:.2}", t.kernel, t.entry, t.passes, t.gpu_ms))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let gms = compute
            .as_ref()
            .map_or("-".to_string(), |(ms, _)| format!("{ms:.2}"));
        println!("  {name:<17} {c:>10.2} {wall:>12.2} {gms:>15}   {kernels}");
        sc += c;
        sw += wall;
        sg += compute.as_ref().map_or(0.0, |(ms, _)| *ms);
    }
    let px = (img.width() * img.height()) as f64;
    println!(
        "  {:<17} {sc:>10.2} {sw:>12.2} {:>15}   GPU compute alone: {}{}",
        "total",
        if timed {
            format!("{sg:.2}")
        } else {
            "-".to_string()
        },
        if timed && sg > 0.0 {
            rate(px as usize, sg)
        } else {
            "n/a".to_string()
        },
        if untimed > 0 {
            format!(" ({untimed} passes untimed)")
        } else {
            String::new()
        }
    );
}

/// CPU and GPU, kernel by kernel.
fn kernels(
    img: &Image<f32>,
    centres: &[(usize, usize)],
    cpu: &CpuBackend,
    g: Option<&GpuBackend>,
    (n, reps, cpu_reps): (usize, usize, usize),
    selected: &dyn Fn(&str) -> bool,
) {
    {
        macro_rules! bench {
            ($name:expr, $call:ident ( $($arg:expr),* ), $check:expr) => {{
                if selected($name) {
                    let (c_ms, c_out) = time(cpu_reps, || cpu.$call($($arg),*));
                    match g {
                        Some(g) => match time(reps, || g.$call($($arg),*)) {
                            (g_ms, Ok(g_out)) => {
                                let c_out = c_out.expect("the CPU backend never fails");
                                let mut check: String = $check(&c_out, &g_out);
                                if let Some(ms) = compute_ms(g, || {
                                    let _ = g.$call($($arg),*);
                                }) {
                                    check = format!("compute {ms:>8.2} ms   {check}");
                                }
                                row($name, n, c_ms, Some((g_ms, &check)));
                                Some(g_out)
                            }
                            (_, Err(e)) => {
                                println!("{:<16} {n:>5}² gpu failed: {e}", $name);
                                None
                            }
                        },
                        None => {
                            row($name, n, c_ms, None);
                            None
                        }
                    }
                } else {
                    None
                }
            }};
        }
        let exact = |c: &Image<bool>, g: &Image<bool>| match differing(c, g) {
            0 => "identical".to_string(),
            d => format!("{d} pixels DIFFER"),
        };
        let max_diff = |c: &Image<f32>, g: &Image<f32>| {
            let worst = c
                .as_slice()
                .iter()
                .zip(g.as_slice())
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            format!("max diff {worst:.1e}")
        };
        bench!("gaussian s=1", gaussian_blur(img.view(), 1.0), max_diff);
        // The same field as 16-bit samples, as plates store it: it goes up at 2 bytes a pixel.
        let field16 = sixteen_bit(img);
        bench!(
            "gaussian u16",
            gaussian_blur_unit_u16(field16.view(), 1.0),
            max_diff
        );
        drop(field16);
        let smooth = cpu
            .gaussian_blur(img.view(), 1.0)
            .unwrap_or_else(|_| img.clone());
        bench!(
            "otsu",
            otsu(smooth.view(), 256),
            |c: &Option<f32>, g: &Option<f32>| {
                if c == g {
                    "identical".to_string()
                } else {
                    format!("DIFFER {c:?} {g:?}")
                }
            }
        );
        let (lo, hi) = smooth
            .as_slice()
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        bench!(
            "li",
            li(smooth.view()),
            |c: &Option<f32>, g: &Option<f32>| match (c, g) {
                (Some(c), Some(g)) => {
                    let rel = f64::from((c - g).abs()) / f64::from(hi - lo);
                    format!(
                        "diff {rel:.1e} of the range{}",
                        if rel <= LI_TOLERANCE {
                            ""
                        } else {
                            " ABOVE TOLERANCE"
                        }
                    )
                }
                _ => format!("{c:?} {g:?}"),
            }
        );
        // The nuclei recipe's background: the grey opening with a 101² square (r = 50).
        bench!(
            "opening r=50",
            grey_opening(smooth.view(), 50),
            |c: &Image<f32>, g: &Image<f32>| match differing(c, g) {
                0 => "identical".to_string(),
                d => format!("{d} pixels DIFFER"),
            }
        );
        // The recipe's first steps resident: the 16-bit field up, Gaussian σ = 1, minus
        // its opening (r = 50), Li's threshold; the flattened field and the scaled field
        // minus the same opening down.
        let field16 = sixteen_bit(img);
        let flat = FlattenParams {
            sigma: 1.0,
            radius: 50,
            keep_field: true,
            keep_on_backend: false,
            threshold: FlatThreshold::Li,
        };
        bench!(
            "flatten li",
            smooth_and_flatten(FieldView::UnitU16(field16.view()), &flat),
            |c: &Flattened, g: &Flattened| {
                let t = match (c.threshold, g.threshold) {
                    (Some(a), Some(b)) if a == b => "identical threshold".to_string(),
                    (Some(a), Some(b)) => format!("threshold diff {:.1e}", (a - b).abs()),
                    (a, b) => format!("threshold {a:?} {b:?}"),
                };
                format!("{}, {t}", max_diff(&c.smoothed, &g.smoothed))
            }
        );
        drop(field16);
        let t = cpu.otsu(smooth.view(), 256).ok().flatten().unwrap_or(0.5);
        let fg = smooth.map(|v| v > t);
        bench!("erosion", binary_erosion(fg.view()), exact);
        bench!("dilation", binary_dilation(fg.view()), exact);
        bench!("fill_holes", fill_holes(fg.view()), exact);
        bench!("edt", distance_transform_edt(fg.view()), |c: &Image<
            f32,
        >,
                                                          g: &Image<
            f32,
        >| {
            match differing(c, g) {
                0 => "identical".to_string(),
                d => format!("{d} pixels DIFFER"),
            }
        });
        bench!(
            "label8",
            label(fg.view(), Connectivity::Eight),
            |c: &Labels, g: &Labels| {
                if c == g {
                    "identical".to_string()
                } else {
                    "DIFFER".to_string()
                }
            }
        );
        let labels = cpu
            .label(fg.view(), Connectivity::Eight)
            .unwrap_or_else(|_| Labels::empty(n, n));
        bench!(
            "measure_shape",
            measure_shape(&labels),
            |c: &Vec<_>, g: &Vec<_>| {
                if c == g {
                    "identical".to_string()
                } else {
                    "DIFFER".to_string()
                }
            }
        );
        bench!(
            "size_filter",
            filter_by_area(&labels, 20, u64::MAX),
            |c: &Labels, g: &Labels| {
                if c == g {
                    "identical".to_string()
                } else {
                    "DIFFER".to_string()
                }
            }
        );
        let mut markers = Image::new(n, n, 0u32);
        let mut k = 0;
        for &(y, x) in centres {
            if fg.get(y, x) {
                k += 1;
                markers.set(y, x, k);
            }
        }
        let markers = Labels::new(markers, k);
        let elev = smooth.map(|v| -v);
        bench!(
            "watershed",
            watershed(elev.view(), &markers, Some(fg.view())),
            |c: &Labels, g: &Labels| {
                let flooded = c.image().as_slice().iter().filter(|&&v| v != 0).count();
                let frac = differing(c.image(), g.image()) as f64 / flooded.max(1) as f64;
                format!(
                    "{:.3}% of pixels differ{}",
                    frac * 100.0,
                    if frac <= WATERSHED_TOLERANCE {
                        ""
                    } else {
                        " ABOVE TOLERANCE"
                    }
                )
            }
        );
        if let (Some(g), true) = (g, selected("watershed")) {
            println!(
                "  {}",
                relaxation_note(g.gpu(), elev.view(), &markers, fg.view(), reps)
            );
        }
    }
}

/// The GPU watershed both ways (tile by tile in workgroup memory, the default, and one step
/// per dispatch): rounds (batches of dispatches, each ended by a readback of a flag), the
/// dispatches, best time, and whether the labels are the same.
fn relaxation_note(
    gpu: &Gpu,
    elev: ImageView<f32>,
    markers: &Labels,
    mask: ImageView<bool>,
    reps: usize,
) -> String {
    let (local_ms, local) = time(reps, || gpu.watershed_rounds(elev, markers, Some(mask)));
    gpu.set_local_watershed(false);
    let (plain_ms, plain) = time(reps, || gpu.watershed_rounds(elev, markers, Some(mask)));
    gpu.set_local_watershed(true);
    match (local, plain) {
        (Ok((l, lr)), Ok((p, pr))) => format!(
            "relaxation tile by tile: {} rounds, {} dispatches, {local_ms:.1} ms; one step per \
             dispatch: {} rounds, {} dispatches, {plain_ms:.1} ms; labels {}",
            lr.rounds,
            lr.dispatches,
            pr.rounds,
            pr.dispatches,
            if l == p { "identical" } else { "DIFFER" }
        ),
        (Err(e), _) | (_, Err(e)) => format!("relaxation both ways failed: {e}"),
    }
}

/// A backend that times every call to the one it wraps (wall clock per method), so that a
/// whole recipe's time splits into its device calls and the host's work between them. It
/// forwards every method, the defaults included, so the wrapped backend runs exactly as it
/// would alone.
struct Timed<'a> {
    inner: &'a dyn Backend,
    calls: std::sync::Mutex<Vec<(&'static str, f64)>>,
}

impl<'a> Timed<'a> {
    fn new(inner: &'a dyn Backend) -> Self {
        Timed {
            inner,
            calls: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn run<T>(&self, name: &'static str, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if let Ok(mut c) = self.calls.lock() {
            c.push((name, ms));
        }
        out
    }

    /// The calls so far, by method in order of first call: (name, calls, ms); emptied.
    fn take(&self) -> Vec<(&'static str, usize, f64)> {
        let calls = self
            .calls
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default();
        let mut out: Vec<(&'static str, usize, f64)> = Vec::new();
        for (name, ms) in calls {
            match out.iter_mut().find(|(n, _, _)| *n == name) {
                Some(e) => {
                    e.1 += 1;
                    e.2 += ms;
                }
                None => out.push((name, 1, ms)),
            }
        }
        out
    }
}

type Res<T> = Result<T, ipscope_core::Error>;

impl Backend for Timed<'_> {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn declump_smoothing_in_boxes(&self) -> bool {
        self.inner.declump_smoothing_in_boxes()
    }
    fn gaussian_blur(&self, img: ImageView<f32>, sigma: f32) -> Res<Image<f32>> {
        self.run("gaussian_blur", || self.inner.gaussian_blur(img, sigma))
    }
    fn gaussian_blur_kept(&self, img: &KeptImage, sigma: f32) -> Res<Image<f32>> {
        self.run("gaussian_blur_kept", || {
            self.inner.gaussian_blur_kept(img, sigma)
        })
    }
    fn gaussian_blur_kept_within(
        &self,
        img: &KeptImage,
        sigma: f32,
        within: ImageView<bool>,
    ) -> Res<Image<f32>> {
        self.run("gaussian_blur_kept_within", || {
            self.inner.gaussian_blur_kept_within(img, sigma, within)
        })
    }
    fn gaussian_blur_unit_u16(&self, img: ImageView<u16>, sigma: f32) -> Res<Image<f32>> {
        self.run("gaussian_blur_unit_u16", || {
            self.inner.gaussian_blur_unit_u16(img, sigma)
        })
    }
    fn histogram(&self, img: ImageView<f32>, nbins: usize) -> Res<Option<Histogram>> {
        self.run("histogram", || self.inner.histogram(img, nbins))
    }
    fn otsu(&self, img: ImageView<f32>, nbins: usize) -> Res<Option<f32>> {
        self.run("otsu", || self.inner.otsu(img, nbins))
    }
    fn binary_erosion(&self, mask: ImageView<bool>) -> Res<Image<bool>> {
        self.run("binary_erosion", || self.inner.binary_erosion(mask))
    }
    fn binary_dilation(&self, mask: ImageView<bool>) -> Res<Image<bool>> {
        self.run("binary_dilation", || self.inner.binary_dilation(mask))
    }
    fn fill_holes(&self, mask: ImageView<bool>) -> Res<Image<bool>> {
        self.run("fill_holes", || self.inner.fill_holes(mask))
    }
    fn distance_transform_edt(&self, mask: ImageView<bool>) -> Res<Image<f32>> {
        self.run("distance_transform_edt", || {
            self.inner.distance_transform_edt(mask)
        })
    }
    fn label(&self, mask: ImageView<bool>, conn: Connectivity) -> Res<Labels> {
        self.run("label", || self.inner.label(mask, conn))
    }
    fn measure_shape(&self, labels: &Labels) -> Res<Vec<ObjectShape>> {
        self.run("measure_shape", || self.inner.measure_shape(labels))
    }
    fn li(&self, img: ImageView<f32>) -> Res<Option<f32>> {
        self.run("li", || self.inner.li(img))
    }
    fn grey_opening(&self, img: ImageView<f32>, r: usize) -> Res<Image<f32>> {
        self.run("grey_opening", || self.inner.grey_opening(img, r))
    }
    fn smooth_and_flatten(&self, field: FieldView, p: &FlattenParams) -> Res<Flattened> {
        self.run("smooth_and_flatten", || {
            self.inner.smooth_and_flatten(field, p)
        })
    }
    fn watershed(
        &self,
        elevation: ImageView<f32>,
        markers: &Labels,
        mask: Option<ImageView<bool>>,
    ) -> Res<Labels> {
        self.run("watershed", || {
            self.inner.watershed(elevation, markers, mask)
        })
    }
    fn fill_label_distance(
        &self,
        mask: Image<bool>,
        fill: bool,
        conn: Connectivity,
        distance: bool,
    ) -> Res<FilledObjects> {
        self.run("fill_label_distance", || {
            self.inner.fill_label_distance(mask, fill, conn, distance)
        })
    }
    fn distance_of_components(&self, mask: ImageView<bool>, labels: &Labels) -> Res<Image<f32>> {
        self.run("distance_of_components", || {
            self.inner.distance_of_components(mask, labels)
        })
    }
    fn filter_by_area(&self, labels: &Labels, min: u64, max: u64) -> Res<Labels> {
        self.run("filter_by_area", || {
            self.inner.filter_by_area(labels, min, max)
        })
    }
    fn filter_by_area_owned(&self, labels: Labels, min: u64, max: u64) -> Res<Labels> {
        self.run("filter_by_area_owned", || {
            self.inner.filter_by_area_owned(labels, min, max)
        })
    }
    fn segment_otsu(&self, field: FieldView, p: &OtsuParams) -> Res<OtsuObjects> {
        self.run("segment_otsu", || self.inner.segment_otsu(field, p))
    }
}

/// The whole default nuclei recipe (`segment_nuclei_with`, `NucleiParams::default()`: Li,
/// background opening r = 50, per-object thresholds, hybrid declumping, automatic scale) on
/// the field as 16-bit samples, on the CPU and the GPU: wall clock, the GPU's objects
/// against the CPU's, and where each backend's time goes (its calls, and the host's work
/// between them).
fn recipe_row(
    img: &Image<f32>,
    cpu: &CpuBackend,
    g: Option<&GpuBackend>,
    (n, reps, cpu_reps): (usize, usize, usize),
) {
    const NAME: &str = "recipe default";
    let field = sixteen_bit(img);
    let p = NucleiParams::default();
    let run = |b: &dyn Backend| -> Res<Chain> {
        let r = segment_nuclei_with(b, field.view(), &p)?;
        let shapes = ipscope_core::ops::measure::measure_shape(&r.labels);
        Ok((r.labels, shapes))
    };
    let split = |b: &dyn Backend, wall_of: &str| {
        let timed = Timed::new(b);
        let t = Instant::now();
        let out = run(&timed);
        let wall = t.elapsed().as_secs_f64() * 1e3;
        let calls = timed.take();
        let in_calls: f64 = calls.iter().map(|c| c.2).sum();
        let list: Vec<String> = calls
            .iter()
            .map(|(name, k, ms)| format!("{name} {k}x {ms:.1} ms"))
            .collect();
        println!(
            "  {wall_of}: {wall:.1} ms = backend calls {in_calls:.1} ms ({}) + host between them {:.1} ms",
            list.join(", "),
            wall - in_calls
        );
        out.is_ok()
    };
    let (c_ms, c_out) = time(cpu_reps, || run(cpu));
    let Some(g) = g else {
        row(NAME, n, c_ms, None);
        split(cpu, "CPU, split");
        return;
    };
    match (time(reps, || run(g)), &c_out) {
        ((g_ms, Ok(g_out)), Ok(c)) => {
            let compute = compute_ms(g, || {
                let _ = run(g);
            })
            .map(|ms| format!("; GPU compute alone {ms:.1} ms"))
            .unwrap_or_default();
            let check = format!(
                "vs the CPU: {}{compute}",
                compare_objects(c, &g_out).unwrap_or_else(|e| e)
            );
            row(NAME, n, c_ms, Some((g_ms, &check)));
            split(cpu, "CPU, split");
            split(g, "GPU, split");
        }
        ((_, Err(e)), _) => println!("{NAME} {n}² gpu failed: {e}"),
        (_, Err(e)) => println!("{NAME} {n}²: the CPU failed: {e}"),
    }
}
