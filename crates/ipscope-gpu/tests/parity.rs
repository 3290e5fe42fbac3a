//! Parity of every GPU kernel with its CPU reference in `ipscope_core::ops` (which is
//! itself checked against SciPy / scikit-image in core's `tests/reference.rs`).
//!
//! Needs a GPU adapter; CI uses Mesa's lavapipe (`mesa-vulkan-drivers`). Without one every
//! case prints why and returns. Each kernel entry point has a case named
//! `parity_<kernel>_<entry point>` (enforced by `tests/kernels.rs`). Exact equality
//! everywhere except the Gaussian, held to `GAUSSIAN_TOLERANCE`.

use std::sync::OnceLock;

use ipscope_core::ops::distance::distance_transform_edt;
use ipscope_core::ops::filter::gaussian_blur;
use ipscope_core::ops::label::{label, Connectivity};
use ipscope_core::ops::measure::{measure_intensity, measure_shape};
use ipscope_core::ops::morphology;
use ipscope_core::ops::threshold;
use ipscope_gpu::{Gpu, GAUSSIAN_TOLERANCE};
use ipscope_image::{Image, Labels};

fn gpu() -> Option<&'static Gpu> {
    static GPU: OnceLock<Option<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| match Gpu::new() {
        Ok(g) => {
            eprintln!("parity on {:?}", g.adapter().name);
            Some(g)
        }
        Err(e) => {
            eprintln!("SKIP: no GPU adapter ({e}); install mesa-vulkan-drivers for lavapipe");
            None
        }
    })
    .as_ref()
}

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 40) as f32 / 16_777_216.0
    }
}

fn noise(w: usize, h: usize, seed: u64) -> Image<f32> {
    let mut r = Lcg(seed);
    Image::from_fn(w, h, |_, _| r.next())
}

/// Blobby masks: smoothed noise above a level, so components, holes and necks of many
/// sizes appear.
fn blobs(w: usize, h: usize, seed: u64, sigma: f32, level: f32) -> Image<bool> {
    let s = gaussian_blur(noise(w, h, seed).view(), sigma);
    let m = s.as_slice().iter().sum::<f32>() / s.len() as f32;
    s.map(|v| v > m + level)
}

fn masks() -> Vec<Image<bool>> {
    vec![
        blobs(97, 61, 1, 2.0, 0.0),
        blobs(130, 140, 2, 3.0, 0.01),
        blobs(64, 64, 3, 1.0, 0.02),
        noise(45, 38, 4).map(|v| v > 0.3),
        Image::from_fn(33, 1, |_, c| c % 4 != 0),
        Image::from_fn(1, 29, |r, _| r % 5 != 2),
        Image::new(17, 9, true),
        Image::new(12, 7, false),
        // A spiral: one component whose labels must travel far.
        Image::from_fn(41, 41, |r, c| {
            let d = (r as i64 - 20).abs().max((c as i64 - 20).abs());
            (d % 2 == 0) && !(c == 20 + d as usize - 1 && r < 20 && d > 0) || (r == 20 && c == 20)
        }),
    ]
}

fn assert_close(gpu: &Image<f32>, cpu: &Image<f32>, what: &str) {
    assert_eq!((gpu.width(), gpu.height()), (cpu.width(), cpu.height()));
    let scale = cpu
        .as_slice()
        .iter()
        .fold(0f32, |m, v| m.max(v.abs()))
        .max(f32::MIN_POSITIVE);
    let worst = gpu
        .as_slice()
        .iter()
        .zip(cpu.as_slice())
        .map(|(a, b)| (a - b).abs() / scale)
        .fold(0f32, f32::max);
    eprintln!("{what}: worst relative difference {worst:e}");
    assert!(
        worst <= GAUSSIAN_TOLERANCE,
        "{what}: {worst} > {GAUSSIAN_TOLERANCE}"
    );
}

#[test]
fn parity_gaussian_columns() {
    let Some(g) = gpu() else { return };
    // One column: only the column pass does anything.
    for sigma in [0.7f32, 1.0, 2.5, 6.0] {
        let img = noise(1, 83, 11);
        let cpu = gaussian_blur(img.view(), sigma);
        let out = g.gaussian_blur(img.view(), sigma).unwrap();
        assert_close(&out, &cpu, &format!("column sigma {sigma}"));
    }
}

#[test]
fn parity_gaussian_rows() {
    let Some(g) = gpu() else { return };
    for (w, h, sigma) in [
        (77, 1, 1.5f32),
        (120, 90, 1.0),
        (64, 200, 4.3),
        (9, 5, 20.0),
    ] {
        let img = noise(w, h, (w * h) as u64).map(|v| v * 65535.0);
        let cpu = gaussian_blur(img.view(), sigma);
        let out = g.gaussian_blur(img.view(), sigma).unwrap();
        assert_close(&out, &cpu, &format!("{w}x{h} sigma {sigma}"));
    }
    // Zero sigma is a copy on both.
    let img = noise(5, 4, 9);
    assert_eq!(g.gaussian_blur(img.view(), 0.0).unwrap(), img);
}

#[test]
fn gaussian_tiles_with_halos_give_the_untiled_result() {
    if gpu().is_none() {
        return;
    }
    let Ok(mut small) = Gpu::new() else { return };
    let img = noise(150, 211, 5);
    let whole = gpu().unwrap().gaussian_blur(img.view(), 2.0).unwrap();
    // 20 rows of 150 f32 per binding: many bands, each with a 8-row halo on both sides.
    small.set_max_binding_for_tests(20 * 150 * 4);
    let tiled = small.gaussian_blur(img.view(), 2.0).unwrap();
    assert_eq!(tiled, whole);
    // A binding smaller than one band with its halos is a named error, not a crash.
    small.set_max_binding_for_tests(1024);
    let err = small.gaussian_blur(img.view(), 2.0).unwrap_err();
    assert!(matches!(err, ipscope_gpu::Error::TooLarge { .. }), "{err}");
    // Kernels without tiling refuse images above the limit by name.
    let mask = img.map(|v| v > 0.5);
    let err = small.label(mask.view(), Connectivity::Eight).unwrap_err();
    assert!(err.to_string().contains("too large for label"), "{err}");
}

fn images_for_thresholds() -> Vec<Image<f32>> {
    let mut v = vec![
        noise(300, 200, 21),
        gaussian_blur(noise(256, 256, 22).view(), 3.0),
        // Bimodal with NaN and inf pixels, which both ignore.
        Image::from_fn(90, 70, |r, c| {
            if (r * 7 + c) % 97 == 0 {
                f32::NAN
            } else if (r + c) % 211 == 0 {
                f32::INFINITY
            } else if (r / 10 + c / 10) % 2 == 0 {
                0.2 + ((r * c) % 13) as f32 * 0.001
            } else {
                0.7 + ((r + c) % 11) as f32 * 0.002
            }
        }),
        Image::new(10, 10, 0.25f32),
        Image::new(4, 4, f32::NAN),
    ];
    // Integer-valued (as u16 data scaled): many pixels exactly on bin edges.
    v.push(Image::from_fn(128, 128, |r, c| {
        ((r * 131 + c * 7) % 256) as f32 / 255.0
    }));
    v
}

#[test]
fn parity_histogram_find_range() {
    let Some(g) = gpu() else { return };
    for img in images_for_thresholds() {
        let cpu = threshold::histogram(img.view(), 256);
        let out = g.histogram(img.view(), 256).unwrap();
        assert_eq!(
            out.as_ref().map(|h| (h.edges[0], h.edges[256])),
            cpu.as_ref().map(|h| (h.edges[0], h.edges[256]))
        );
    }
}

#[test]
fn parity_histogram_count_bins() {
    let Some(g) = gpu() else { return };
    for img in images_for_thresholds() {
        for nbins in [1usize, 7, 256, 1000] {
            let cpu = threshold::histogram(img.view(), nbins);
            let out = g.histogram(img.view(), nbins).unwrap();
            assert_eq!(out, cpu, "{}x{} nbins {nbins}", img.width(), img.height());
        }
        // Otsu from the GPU histogram: the exact same bin centre.
        let be = ipscope_gpu::GpuBackend::from_gpu(Gpu::new().unwrap());
        let t = ipscope_core::Backend::otsu(&be, img.view(), 256).unwrap();
        assert_eq!(t, threshold::otsu(img.view(), 256));
    }
}

#[test]
fn parity_morphology_erode() {
    let Some(g) = gpu() else { return };
    for m in masks() {
        assert_eq!(
            g.binary_erosion(m.view()).unwrap(),
            morphology::binary_erosion(m.view())
        );
    }
}

#[test]
fn parity_morphology_dilate() {
    let Some(g) = gpu() else { return };
    for m in masks() {
        assert_eq!(
            g.binary_dilation(m.view()).unwrap(),
            morphology::binary_dilation(m.view())
        );
    }
}

#[test]
fn parity_morphology_flood() {
    let Some(g) = gpu() else { return };
    for m in masks() {
        // Holes are background enclosed by foreground: invert the blobs too.
        for m in [m.clone(), m.map(|v| !v)] {
            assert_eq!(
                g.fill_holes(m.view()).unwrap(),
                morphology::fill_holes(m.view())
            );
        }
    }
}

#[test]
fn parity_edt_columns() {
    let Some(g) = gpu() else { return };
    let m = Image::from_fn(1, 50, |r, _| r % 17 != 3);
    assert_eq!(
        g.distance_transform_edt(m.view()).unwrap(),
        distance_transform_edt(m.view())
    );
}

#[test]
fn parity_edt_rows() {
    let Some(g) = gpu() else { return };
    for m in masks() {
        let cpu = distance_transform_edt(m.view());
        let out = g.distance_transform_edt(m.view()).unwrap();
        // Bit-identical, infinities (no background at all) included.
        let same = out
            .as_slice()
            .iter()
            .zip(cpu.as_slice())
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "{}x{}", m.width(), m.height());
    }
}

#[test]
fn parity_label_init() {
    let Some(g) = gpu() else { return };
    // Isolated pixels: every foreground pixel is its own component, numbered in raster order.
    let m = Image::from_fn(23, 19, |r, c| r % 2 == 0 && c % 2 == 0);
    for conn in [Connectivity::Four, Connectivity::Eight] {
        let out = g.label(m.view(), conn).unwrap();
        assert_eq!(out, label(m.view(), conn));
        assert_eq!(out.count(), 12 * 10);
    }
}

#[test]
fn parity_label_propagate() {
    let Some(g) = gpu() else { return };
    for m in masks() {
        for conn in [Connectivity::Four, Connectivity::Eight] {
            let cpu = label(m.view(), conn);
            let out = g.label(m.view(), conn).unwrap();
            assert_eq!(out.count(), cpu.count());
            assert_eq!(out, cpu, "{}x{} {conn:?}", m.width(), m.height());
        }
    }
}

#[test]
fn parity_measure_reduce() {
    let Some(g) = gpu() else { return };
    for (i, m) in masks().into_iter().enumerate() {
        let labels: Labels = label(m.view(), Connectivity::Eight);
        let raw = noise(m.width(), m.height(), 40 + i as u64).map(|v| (v * 65535.0) as u16);
        assert_eq!(g.measure_shape(&labels).unwrap(), measure_shape(&labels));
        let stats = g.object_stats(&labels, Some(raw.view())).unwrap();
        let cpu = measure_intensity(&labels, raw.view());
        assert_eq!(stats.len(), cpu.len());
        for (s, c) in stats.iter().zip(&cpu) {
            // Min and max are exact; the CPU sums scaled f64 values one by one, the GPU
            // sums the integers exactly, so the integrated intensity agrees to rounding.
            assert_eq!(f64::from(s.min_intensity) / 65535.0, c.min);
            assert_eq!(f64::from(s.max_intensity) / 65535.0, c.max);
            let integrated = s.sum_intensity as f64 / 65535.0;
            assert!(
                (integrated - c.integrated).abs() <= 1e-12 * c.integrated.max(1.0),
                "{integrated} vs {}",
                c.integrated
            );
        }
    }
}
