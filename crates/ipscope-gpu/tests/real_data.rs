//! The GPU stages of the default nuclei recipe on real images, against the CPU backend:
//! DSB2018 fluorescence images and StarDist's `img2d.tif` from `$IPSCOPE_DATA`.
//!
//! Chain (as `ipscope_core::assays::nuclei` with default parameters, up to declumping):
//! scale to 0..1, Gaussian σ = 1, Otsu (256 bins), foreground `>` threshold, fill holes,
//! 8-connected components, distance transform, per-object shape. Each stage is run on both
//! backends from the same input (exact stages must be identical), and the two chains are
//! also run end to end independently and compared by F1 at IoU 0.5 (target ≥ 0.999) and by
//! the measurements of identical objects (equal).
//!
//! Skips with a message when the data or a GPU adapter is absent.

use std::path::PathBuf;

use ipscope_core::backend::{Backend, CpuBackend};
use ipscope_core::ops::eval::match_labels;
use ipscope_core::ops::label::Connectivity;
use ipscope_core::ops::peaks::peak_local_max;
use ipscope_core::{segment_nuclei_with, DeclumpMethod, NucleiParams};
use ipscope_gpu::{GpuBackend, GAUSSIAN_TOLERANCE, LI_TOLERANCE, WATERSHED_TOLERANCE};
use ipscope_image::{DynImage, Image, Labels, Pixel};

fn data_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("IPSCOPE_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    dir.is_dir().then_some(dir)
}

fn scaled<T: Pixel>(img: &Image<T>) -> Image<f32> {
    img.map(|v| (v.to_f64() / T::MAX) as f32)
}

fn load(path: &std::path::Path) -> Image<f32> {
    let img = ipscope_io::read_image(path, 0, &ipscope_io::ReadOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match img {
        DynImage::U8(i) => scaled(&i),
        DynImage::U16(i) => scaled(&i),
        DynImage::U32(i) => scaled(&i),
        DynImage::F32(i) => i,
    }
}

struct Chain {
    smoothed: Image<f32>,
    threshold: Option<f32>,
    filled: Image<bool>,
    labels: Labels,
}

fn chain(b: &dyn Backend, img: &Image<f32>) -> Chain {
    let smoothed = b.gaussian_blur(img.view(), 1.0).unwrap();
    let threshold = b.otsu(smoothed.view(), 256).unwrap();
    let t = threshold.unwrap_or(f32::INFINITY);
    let fg = smoothed.map(|v| v > t);
    let filled = b.fill_holes(fg.view()).unwrap();
    let labels = b.label(filled.view(), Connectivity::Eight).unwrap();
    Chain {
        smoothed,
        threshold,
        filled,
        labels,
    }
}

#[test]
fn nuclei_stages_match_on_real_images() {
    let Some(dir) = data_dir() else {
        eprintln!("SKIP: no IPSCOPE_DATA directory (set IPSCOPE_DATA to shared/data)");
        return;
    };
    let gpu = match GpuBackend::new() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("SKIP: no GPU adapter ({e})");
            return;
        }
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir.join("dsb2018_fluo_subset/images"))
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    paths.sort();
    // A short CI set; IPSCOPE_GPU_ALL=1 runs every image.
    if std::env::var_os("IPSCOPE_GPU_ALL").is_none() {
        paths.truncate(6);
    }
    paths.push(dir.join("stardist_dsb2018_sample/img2d.tif"));
    let paths: Vec<PathBuf> = paths.into_iter().filter(|p| p.is_file()).collect();
    if paths.is_empty() {
        eprintln!("SKIP: no DSB2018 / StarDist images under {}", dir.display());
        return;
    }
    let (mut tp, mut fp, mut fn_) = (0u64, 0u64, 0u64);
    let mut objects = 0usize;
    for path in &paths {
        let img = load(path);
        let cpu = chain(&CpuBackend, &img);
        let gpu_chain = chain(&gpu, &img);
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        // Gaussian within the stated tolerance.
        let scale = cpu
            .smoothed
            .as_slice()
            .iter()
            .fold(0f32, |m, v| m.max(v.abs()));
        let worst = gpu_chain
            .smoothed
            .as_slice()
            .iter()
            .zip(cpu.smoothed.as_slice())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= GAUSSIAN_TOLERANCE * scale,
            "{name}: gaussian {worst}"
        );
        // Exact stages, each from the same input.
        assert_eq!(
            gpu.otsu(cpu.smoothed.view(), 256).unwrap(),
            cpu.threshold,
            "{name}: otsu"
        );
        assert_eq!(
            gpu.fill_holes(cpu.filled.view()).unwrap(),
            CpuBackend.fill_holes(cpu.filled.view()).unwrap(),
            "{name}: fill_holes"
        );
        assert_eq!(
            gpu.label(cpu.filled.view(), Connectivity::Eight).unwrap(),
            cpu.labels,
            "{name}: label"
        );
        let d_gpu = gpu.distance_transform_edt(cpu.filled.view()).unwrap();
        let d_cpu = CpuBackend
            .distance_transform_edt(cpu.filled.view())
            .unwrap();
        assert_eq!(d_gpu, d_cpu, "{name}: edt");
        assert_eq!(
            gpu.measure_shape(&cpu.labels).unwrap(),
            CpuBackend.measure_shape(&cpu.labels).unwrap(),
            "{name}: measure_shape"
        );
        // The two chains end to end.
        let m = match_labels(cpu.labels.view(), gpu_chain.labels.view()).unwrap();
        let c = &m.counts[0];
        tp += c.tp;
        fp += c.fp;
        fn_ += c.fn_;
        objects += cpu.labels.count() as usize;
        eprintln!(
            "{name}: {}x{}, {} objects, otsu cpu {:?} gpu {:?}, gaussian max diff {worst:e}, \
             foreground pixels differing: {}",
            img.width(),
            img.height(),
            cpu.labels.count(),
            cpu.threshold,
            gpu_chain.threshold,
            cpu.filled
                .as_slice()
                .iter()
                .zip(gpu_chain.filled.as_slice())
                .filter(|(a, b)| a != b)
                .count()
        );
        if gpu_chain.labels == cpu.labels {
            // Identical objects have identical measurements.
            assert_eq!(
                gpu.measure_shape(&gpu_chain.labels).unwrap(),
                CpuBackend.measure_shape(&cpu.labels).unwrap()
            );
        }
    }
    let f1 = if tp + fp + fn_ == 0 {
        1.0
    } else {
        2.0 * tp as f64 / (2 * tp + fp + fn_) as f64
    };
    eprintln!(
        "{} images, {objects} objects: CPU vs GPU chain F1@0.5 = {f1:.6}",
        paths.len()
    );
    assert!(f1 >= 0.999, "F1 {f1}");
}

/// The first DSB2018 images (all of them with `IPSCOPE_GPU_ALL=1`), or `None` (skip).
fn dsb_images() -> Option<Vec<PathBuf>> {
    let Some(dir) = data_dir() else {
        eprintln!("SKIP: no IPSCOPE_DATA directory (set IPSCOPE_DATA to shared/data)");
        return None;
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir.join("dsb2018_fluo_subset/images"))
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    paths.retain(|p| p.is_file());
    paths.sort();
    if std::env::var_os("IPSCOPE_GPU_ALL").is_none() {
        paths.truncate(6);
    }
    if paths.is_empty() {
        eprintln!("SKIP: no DSB2018 images under {}", dir.display());
        return None;
    }
    Some(paths)
}

#[test]
fn li_and_watershed_match_on_real_images() {
    let Some(paths) = dsb_images() else { return };
    let gpu = match GpuBackend::new() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("SKIP: no GPU adapter ({e})");
            return;
        }
    };
    let (mut differ, mut flooded) = (0usize, 0usize);
    for path in &paths {
        let img = load(path);
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let smoothed = CpuBackend.gaussian_blur(img.view(), 1.0).unwrap();
        // Li's threshold within its stated tolerance of the range.
        let cpu_li = CpuBackend.li(smoothed.view()).unwrap();
        let gpu_li = gpu.li(smoothed.view()).unwrap();
        let (lo, hi) = smoothed
            .as_slice()
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        match (cpu_li, gpu_li) {
            (Some(c), Some(g)) => {
                let rel = f64::from((g - c).abs()) / f64::from(hi - lo);
                eprintln!("{name}: li cpu {c} gpu {g} ({rel:e} of the range)");
                assert!(rel <= LI_TOLERANCE, "{name}: li {c} vs {g}");
            }
            (c, g) => assert_eq!(g, c, "{name}: li"),
        }
        // The shape declumping's watershed: negated smoothed distance map, seeded at its
        // peaks in each component, inside the Otsu foreground.
        let Some(t) = CpuBackend.otsu(smoothed.view(), 256).unwrap() else {
            continue;
        };
        let fg = CpuBackend
            .fill_holes(smoothed.map(|v| v > t).view())
            .unwrap();
        let comps = CpuBackend.label(fg.view(), Connectivity::Eight).unwrap();
        let dist = CpuBackend
            .distance_transform_edt(fg.view())
            .unwrap()
            .map(|d| if d.is_finite() { d } else { 1e4 });
        let surface = CpuBackend.gaussian_blur(dist.view(), 0.5).unwrap();
        let peaks = peak_local_max(surface.view(), 5, f32::MIN, Some(&comps));
        let mut markers = Image::new(fg.width(), fg.height(), 0u32);
        for (n, &(r, c)) in peaks.iter().enumerate() {
            markers.set(r, c, n as u32 + 1);
        }
        let markers = Labels::new(markers, peaks.len() as u32);
        let elev = surface.map(|v| -v);
        let cpu = CpuBackend
            .watershed(elev.view(), &markers, Some(fg.view()))
            .unwrap();
        let out = gpu
            .watershed(elev.view(), &markers, Some(fg.view()))
            .unwrap();
        let (c, g) = (cpu.image().as_slice(), out.image().as_slice());
        assert_eq!(
            c.iter().map(|&v| v != 0).collect::<Vec<_>>(),
            g.iter().map(|&v| v != 0).collect::<Vec<_>>(),
            "{name}: flooded pixels"
        );
        let d = c.iter().zip(g).filter(|(a, b)| a != b).count();
        let f = c.iter().filter(|&&v| v != 0).count();
        // Objects by IoU: every CPU object has its GPU counterpart (F1 at IoU 0.5).
        let m = match_labels(cpu.view(), out.view()).unwrap();
        let k = &m.counts[0];
        eprintln!(
            "{name}: watershed, {} markers, {d} of {f} pixels differ, tp {} fp {} fn {}",
            peaks.len(),
            k.tp,
            k.fp,
            k.fn_
        );
        assert_eq!((k.fp, k.fn_), (0, 0), "{name}: objects");
        differ += d;
        flooded += f;
    }
    let frac = differ as f64 / flooded.max(1) as f64;
    eprintln!(
        "watershed on {} images: {frac:.5} of the flooded pixels differ",
        paths.len()
    );
    assert!(frac <= WATERSHED_TOLERANCE, "{frac}");
}

#[test]
fn shape_declumping_and_size_filter_match_on_real_images() {
    // The whole nuclei segmentation with the shape declumping (the size filter on the
    // device; the distance map is smoothed on the CPU, box by box) against the CPU: F1 at
    // IoU 0.5 ≥ 0.999.
    let Some(mut paths) = dsb_images() else {
        return;
    };
    // Three DSB2018 images in CI (two segmentations each); IPSCOPE_GPU_ALL=1 runs them all.
    if std::env::var_os("IPSCOPE_GPU_ALL").is_none() {
        paths.truncate(3);
    }
    if let Some(dir) = data_dir() {
        paths.push(dir.join("stardist_dsb2018_sample/img2d.tif"));
    }
    paths.retain(|p| p.is_file());
    let gpu = match GpuBackend::new() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("SKIP: no GPU adapter ({e})");
            return;
        }
    };
    let p = NucleiParams {
        declump_method: DeclumpMethod::Shape,
        ..NucleiParams::default()
    };
    let (mut tp, mut fp, mut fn_, mut identical, mut objects) = (0u64, 0u64, 0u64, 0usize, 0u32);
    for path in &paths {
        let img = load(path);
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let cpu = segment_nuclei_with(&CpuBackend, img.view(), &p).unwrap();
        let out = segment_nuclei_with(&gpu, img.view(), &p).unwrap();
        let m = match_labels(cpu.labels.view(), out.labels.view()).unwrap();
        let c = &m.counts[0];
        let differ = cpu
            .labels
            .image()
            .as_slice()
            .iter()
            .zip(out.labels.image().as_slice())
            .filter(|(a, b)| a != b)
            .count();
        eprintln!(
            "{name}: shape declumping, cpu {} gpu {} objects, {differ} pixels differ, tp {} fp {} fn {}",
            cpu.labels.count(),
            out.labels.count(),
            c.tp,
            c.fp,
            c.fn_
        );
        tp += c.tp;
        fp += c.fp;
        fn_ += c.fn_;
        objects += cpu.labels.count();
        identical += usize::from(cpu.labels == out.labels);
    }
    let f1 = if tp + fp + fn_ == 0 {
        1.0
    } else {
        2.0 * tp as f64 / (2 * tp + fp + fn_) as f64
    };
    eprintln!(
        "{} images, {objects} objects, {identical} label images identical: CPU vs GPU \
         F1@0.5 = {f1:.6}",
        paths.len()
    );
    assert!(objects > 100, "too few objects: {objects}");
    assert!(f1 >= 0.999, "F1 {f1}");
}
