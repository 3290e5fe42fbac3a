//! Parity of every GPU kernel with its CPU reference in `ipscope_core::ops` (which is
//! itself checked against SciPy / scikit-image in core's `tests/reference.rs`).
//!
//! Needs a GPU adapter; CI uses Mesa's lavapipe (`mesa-vulkan-drivers`). Without one every
//! case prints why and returns. Each kernel entry point has a case named
//! `parity_<kernel>_<entry point>` (enforced by `tests/kernels.rs`). Exact equality
//! everywhere except the Gaussian (`GAUSSIAN_TOLERANCE`), Li's threshold (`LI_TOLERANCE`)
//! and the watershed's ties (`WATERSHED_TOLERANCE`, `WATERSHED_MIN_IOU`).

use std::sync::OnceLock;

use ipscope_core::backend::{
    smooth_and_flatten_by_stages, Backend, CpuBackend, FieldView, FlatThreshold, FlattenParams,
    OtsuParams,
};
use ipscope_core::ops::distance::distance_transform_edt;
use ipscope_core::ops::eval::match_labels;
use ipscope_core::ops::filter::gaussian_blur;
use ipscope_core::ops::label::{
    filter_by_area, label, object_areas, relabel_sequential, Connectivity,
};
use ipscope_core::ops::measure::{measure_intensity, measure_shape};
use ipscope_core::ops::morphology;
use ipscope_core::ops::peaks::peak_local_max;
use ipscope_core::ops::threshold;
use ipscope_core::ops::watershed::watershed;
use ipscope_core::{segment_nuclei_with, DeclumpMethod, NucleiParams};
use ipscope_gpu::{
    Gpu, GpuBackend, LabelReadback, GAUSSIAN_TOLERANCE, LI_TOLERANCE, RUNS_MIN_PIXELS,
    WATERSHED_MIN_IOU, WATERSHED_TOLERANCE,
};
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
    // The watershed tiles too, but not below three rows (a row and its halos) per binding.
    let markers = Labels::new(img.map(|v| u32::from(v > 0.99)), 1);
    let err = small.watershed(img.view(), &markers, None).unwrap_err();
    assert!(err.to_string().contains("too large for watershed"), "{err}");
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
        // Up to 1024 bins a workgroup counts in its own copy first; more go straight to
        // the global counts.
        for nbins in [1usize, 7, 256, 1000, 1024, 1025, 3000] {
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

/// Mask sizes for the packed transfers: pixel counts below, at and around multiples of 32,
/// rows that end inside a word.
const PACK_SIZES: [(usize, usize); 8] = [
    (1, 1),
    (31, 1),
    (32, 1),
    (33, 1),
    (8, 4),
    (7, 9),
    (64, 3),
    (45, 38),
];

#[test]
fn parity_morphology_unpack() {
    let Some(g) = gpu() else { return };
    // Masks go up packed 32 pixels to a word and are expanded on the device: pixel counts
    // below, at and around multiples of 32, rows that end inside a word, every bit pattern
    // of a word (noise), all set and all clear, and crops (views that are not contiguous,
    // packed row by row).
    let big = noise(70, 53, 130).map(|v| v > 0.45);
    let mut cases: Vec<(String, Image<bool>)> = Vec::new();
    for (i, (w, h)) in PACK_SIZES.into_iter().enumerate() {
        cases.push((
            format!("{w}x{h} noise"),
            noise(w, h, 131 + i as u64).map(|v| v > 0.5),
        ));
        cases.push((format!("{w}x{h} set"), Image::new(w, h, true)));
        cases.push((format!("{w}x{h} clear"), Image::new(w, h, false)));
    }
    for (r, c, h, w) in [
        (3usize, 5usize, 20usize, 33usize),
        (0, 1, 53, 31),
        (10, 0, 7, 70),
    ] {
        cases.push((
            format!("crop {h}x{w} at ({r}, {c})"),
            big.view().crop(r, c, h, w).unwrap().to_image(),
        ));
        let view = big.view().crop(r, c, h, w).unwrap();
        // The view itself, uploaded from its rows.
        assert_eq!(
            g.label(view, Connectivity::Four).unwrap(),
            label(view, Connectivity::Four),
            "crop view {h}x{w}"
        );
        assert_eq!(
            g.distance_transform_edt(view).unwrap(),
            distance_transform_edt(view),
            "crop view {h}x{w}"
        );
    }
    for (what, m) in &cases {
        // Labelling reads every pixel as uploaded: a single wrong bit changes the labels.
        assert_eq!(
            g.label(m.view(), Connectivity::Four).unwrap(),
            label(m.view(), Connectivity::Four),
            "{what}"
        );
        assert_eq!(
            g.distance_transform_edt(m.view()).unwrap(),
            distance_transform_edt(m.view()),
            "{what}"
        );
        let front = g
            .fill_label_distance(m.clone(), false, Connectivity::Eight, true)
            .unwrap();
        assert_eq!(front.labels, label(m.view(), Connectivity::Eight), "{what}");
    }
    assert_eq!(cases.len(), 27);
}

#[test]
fn parity_morphology_pack() {
    let Some(g) = gpu() else { return };
    // Masks come back packed 32 pixels to a word: pixel counts below, at and around
    // multiples of 32, every bit pattern of a word (noise), all set and all clear.
    for (i, (w, h)) in PACK_SIZES.into_iter().enumerate() {
        for m in [
            noise(w, h, 120 + i as u64).map(|v| v > 0.5),
            Image::new(w, h, true),
            Image::new(w, h, false),
        ] {
            let what = format!("{w}x{h}");
            assert_eq!(
                g.binary_dilation(m.view()).unwrap(),
                morphology::binary_dilation(m.view()),
                "{what}"
            );
            assert_eq!(
                g.binary_erosion(m.view()).unwrap(),
                morphology::binary_erosion(m.view()),
                "{what}"
            );
            assert_eq!(
                g.fill_holes(m.view()).unwrap(),
                morphology::fill_holes(m.view()),
                "{what}"
            );
        }
    }
}

#[test]
fn parity_holes_fill() {
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
fn parity_holes_open_border() {
    let Some(g) = gpu() else { return };
    // Background that reaches the border through one pixel of each side, in a corner, only
    // diagonally (a hole for the 4-connected cross), in one-pixel-wide images, and none.
    let ring = |n: usize, gap: Option<(usize, usize)>| {
        Image::from_fn(n, n, move |r, c| {
            let edge = r == 1 || c == 1 || r == n - 2 || c == n - 2;
            let frame = r == 0 || c == 0 || r == n - 1 || c == n - 1;
            match gap {
                Some(p) if (r, c) == p => false,
                _ => edge || frame && (r + c) % 2 == 0,
            }
        })
    };
    let mut cases = vec![
        ring(9, None),
        ring(9, Some((1, 4))),
        ring(9, Some((4, 7))),
        ring(9, Some((7, 4))),
        ring(9, Some((4, 1))),
        ring(12, Some((1, 1))),
        Image::from_fn(7, 7, |r, c| (r + c) % 2 == 0),
        Image::from_fn(1, 9, |r, _| r % 3 != 1),
        Image::from_fn(9, 1, |_, c| c % 3 != 1),
        Image::new(5, 4, true),
        Image::new(5, 4, false),
        Image::from_fn(6, 6, |r, c| r == 0 || c == 0 || r == 5 || c == 5),
    ];
    cases.push(Image::from_fn(40, 30, |r, c| {
        // Nested rings: holes inside objects inside holes.
        let d = (r as i32 - 15).abs().max((c as i32 - 20).abs());
        d % 4 == 1
    }));
    for m in cases {
        let want = morphology::fill_holes(m.view());
        assert_eq!(
            g.fill_holes(m.view()).unwrap(),
            want,
            "{}x{}",
            m.width(),
            m.height()
        );
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
fn parity_edt_columns_window() {
    let Some(g) = gpu() else { return };
    // The windowed column pass settles a pixel whose nearer background lies within 64 pixels
    // up or down, or whose column ends (image edge or background) within 64 on both sides;
    // any other pixel sends its column to the sweep. Runs of foreground from 1 to 200 pixels
    // long, some starting at the top or ending at the bottom edge (beyond which nothing is
    // background), columns with no background at all, a column whose only background is one
    // pixel at either end, full-width bands, and widths that are not multiples of the
    // 16-wide workgroups; distances bit for bit.
    let h = 300usize;
    let runs = Image::from_fn(70, h, |r, c| {
        let len = 1 + c * 3;
        let top = match c % 3 {
            0 => 0,              // from the top edge
            1 => h - len.min(h), // to the bottom edge
            _ => (h - len.min(h)) / 2,
        };
        r >= top && r < top + len
    });
    let edges = Image::from_fn(5, 140, |r, c| match c {
        0 => true,     // no background in the column
        1 => r != 0,   // background at the top only
        2 => r != 139, // background at the bottom only
        3 => r % 129 != 5,
        _ => r % 64 != 0,
    });
    // Full-width bands, where each pixel's distance is its vertical one (no nearer column
    // hides a wrong vertical distance): 100 rows from the top edge, 150 in the middle, 18,
    // and 129 down to the bottom edge.
    let bands = Image::from_fn(40, 400, |r, _| ![100, 251, 270].contains(&r));
    // Only bands at the edges, 100 rows from the top and 99 to the bottom, so no pixel with
    // both sides beyond the window flags the columns for another reason.
    let edge_bands = Image::from_fn(40, 200, |r, _| r != 100);
    let noisy = noise(77, 131, 7).map(|v| v > 0.05);
    for m in [
        runs,
        edges,
        bands,
        edge_bands,
        noisy,
        Image::new(3, 200, true),
    ] {
        let cpu = distance_transform_edt(m.view());
        let out = g.distance_transform_edt(m.view()).unwrap();
        let bits = |d: &Image<f32>| d.as_slice().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&out), bits(&cpu), "{}x{}", m.width(), m.height());
    }
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
fn edt_rows_take_the_window_or_the_envelope() {
    let Some(g) = gpu() else { return };
    // A row whose vertical distances are all at most 64 takes the windowed minimum, any
    // other the envelope. Columns with runs of foreground from 100 to 160 pixels put the
    // rows' largest vertical distance on both sides of 64; a disc of radius 90, wide and
    // tall shapes whose sides are not multiples of the workgroup, and columns without
    // background (infinite vertical distance) likewise; bit for bit.
    let runs = Image::from_fn(61, 300, |r, c| {
        let len = 100 + c;
        let top = (300 - len) / 2;
        r >= top && r < top + len && (r + 3 * c) % 37 != 0
    });
    let disc = Image::from_fn(260, 240, |r, c| {
        let (dy, dx) = (r as f64 - 120.0, c as f64 - 130.0);
        dy * dy + dx * dx <= 90.0 * 90.0 || (r * 7 + c * 3) % 53 == 0
    });
    let mut cases = vec![runs, disc, Image::from_fn(300, 70, |_, c| c % 97 == 5)];
    for (i, (w, h)) in [
        (37usize, 5usize),
        (5, 37),
        (1, 40),
        (40, 1),
        (257, 3),
        (300, 71),
    ]
    .into_iter()
    .enumerate()
    {
        cases.push(noise(w, h, 90 + i as u64).map(|v| v > 0.25));
    }
    for m in cases {
        let cpu = distance_transform_edt(m.view());
        let out = g.distance_transform_edt(m.view()).unwrap();
        let bits = |d: &Image<f32>| d.as_slice().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&out), bits(&cpu), "{}x{}", m.width(), m.height());
    }
}

/// Labels (4- and 8-connected) and the filled mask (the background labelled) of `m` on
/// `g`, against the CPU.
fn assert_labels_match(g: &Gpu, m: &Image<bool>) {
    for conn in [Connectivity::Four, Connectivity::Eight] {
        let cpu = label(m.view(), conn);
        let out = g.label(m.view(), conn).unwrap();
        assert_eq!(out, cpu, "{}x{} {conn:?}", m.width(), m.height());
    }
    assert_eq!(
        g.fill_holes(m.view()).unwrap(),
        morphology::fill_holes(m.view()),
        "{}x{} filled",
        m.width(),
        m.height()
    );
}

/// Masks whose components join in few places: lines whose pixels touch only diagonally
/// (up-right, up-left), a checkerboard (one component 8-connected, none 4-connected), U
/// shapes whose arms meet only at the bottom (inside one 16-pixel tile column, and across
/// three tiles), and images a few pixels wide or high.
fn sparse_join_masks() -> Vec<Image<bool>> {
    vec![
        Image::from_fn(53, 41, |r, c| (r + c) % 7 == 0),
        Image::from_fn(53, 41, |r, c| (r + 60 - c) % 7 == 0),
        Image::from_fn(40, 37, |r, c| (r + c) % 2 == 0),
        Image::from_fn(48, 40, |r, c| {
            (c == 2 || c == 13) && r < 30 || r == 29 && (2..=13).contains(&c)
        }),
        Image::from_fn(60, 50, |r, c| {
            (c == 5 || c == 40) && r < 45 || r == 44 && (5..=40).contains(&c)
        }),
        Image::from_fn(5, 70, |r, c| (r / 3 + c) % 2 == 0),
        Image::from_fn(70, 3, |r, c| (r + c / 5) % 2 == 0),
    ]
}

/// Components whose union-find trees grow deep: random masks near the percolation
/// threshold (large fractal clusters joined in every order), a serpentine one pixel wide
/// whose ends meet last, and combs whose teeth join only through the bottom or top row.
fn deep_tree_masks() -> Vec<Image<bool>> {
    let mut cases: Vec<Image<bool>> = [0.45f32, 0.55, 0.6, 0.7]
        .iter()
        .enumerate()
        .map(|(i, &d)| noise(203, 151, 70 + i as u64).map(|v| v < d))
        .collect();
    cases.push(Image::from_fn(61, 47, |r, c| {
        r % 4 == 0 || (r % 8 == 1 || r % 8 == 2 || r % 8 == 3) && c == 60 || (r % 8 >= 5) && c == 0
    }));
    cases.push(Image::from_fn(90, 40, |r, c| c % 3 == 0 || r == 39));
    cases.push(Image::from_fn(90, 40, |r, c| c % 3 == 0 || r == 0));
    cases
}

/// A device of its own with the tiled labelling on (the shared one stays untiled).
fn tiled_gpu() -> Option<&'static Gpu> {
    static TILED: OnceLock<Option<Gpu>> = OnceLock::new();
    gpu()?;
    TILED
        .get_or_init(|| {
            let g = Gpu::new().ok()?;
            g.set_tiled_labelling(true);
            Some(g)
        })
        .as_ref()
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
    // `merge` skips the joins other pixels' joins imply.
    for m in sparse_join_masks() {
        assert_labels_match(g, &m);
    }
}

#[test]
fn parity_label_local() {
    let Some(g) = tiled_gpu() else { return };
    // Each 16 x 16 tile labelled in workgroup memory, then joined across the seams.
    let isolated = Image::from_fn(23, 19, |r, c| r % 2 == 0 && c % 2 == 0);
    assert_eq!(
        g.label(isolated.view(), Connectivity::Eight)
            .unwrap()
            .count(),
        12 * 10
    );
    for m in sparse_join_masks().into_iter().chain(masks()) {
        assert_labels_match(g, &m);
    }
}

#[test]
fn parity_label_seams() {
    let Some(g) = tiled_gpu() else { return };
    // Components that cross many seams, joined there in every order.
    for m in deep_tree_masks() {
        assert_labels_match(g, &m);
    }
}

#[test]
fn parity_label_merge() {
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
fn parity_label_flatten() {
    let Some(g) = gpu() else { return };
    for m in deep_tree_masks() {
        assert_labels_match(g, &m);
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

#[test]
fn parity_li_partial_sums() {
    let Some(g) = gpu() else { return };
    let mut images = images_for_thresholds();
    // Bimodal fluorescence-like fields, and a u16-scaled one.
    images.push(gaussian_blur(
        blobs(211, 173, 31, 3.0, 0.0).map(f32::from).view(),
        1.5,
    ));
    images.push(
        blobs(160, 120, 32, 2.0, 0.01)
            .map(|v| if v { 0.6f32 } else { 0.1 })
            .map(|v| ((v + 0.05 * (v * 97.0).sin()) * 65535.0).round() / 65535.0),
    );
    let mut worst = 0f64;
    for img in &images {
        let cpu = threshold::li(img.view());
        let out = g.li(img.view()).unwrap();
        let (w, h) = (img.width(), img.height());
        match (cpu, out) {
            (Some(c), Some(o)) => {
                let finite = img.as_slice().iter().filter(|v| v.is_finite());
                let (lo, hi) = finite.fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                    (a.min(v), b.max(v))
                });
                let rel = f64::from((o - c).abs()) / f64::from(hi - lo);
                eprintln!("li {w}x{h}: cpu {c} gpu {o}, relative difference {rel:e}");
                worst = worst.max(rel);
                assert!(rel <= LI_TOLERANCE, "{w}x{h}: cpu {c} gpu {o} ({rel:e})");
            }
            (c, o) => assert_eq!(o, c, "{w}x{h}: li"),
        }
        // Deterministic: the same threshold on every run.
        assert_eq!(g.li(img.view()).unwrap(), out, "{w}x{h}: li twice");
    }
    eprintln!("li: worst relative difference {worst:e}");
    // Summed in chunks of 1 KiB bindings: still within the tolerance.
    let Ok(mut small) = Gpu::new() else { return };
    small.set_max_binding_for_tests(1024);
    let img = &images[images.len() - 2];
    let (c, o) = (
        threshold::li(img.view()).unwrap(),
        small.li(img.view()).unwrap().unwrap(),
    );
    let range = img.as_slice().iter().fold(0f32, |m, &v| m.max(v))
        - img.as_slice().iter().fold(f32::MAX, |m, &v| m.min(v));
    assert!(
        f64::from((o - c).abs()) <= LI_TOLERANCE * f64::from(range),
        "chunked: {c} vs {o}"
    );
}

/// Watershed inputs as the nuclei recipe's shape declumping builds them: distance map of
/// the mask, smoothed, its peaks per component as markers, flooded negated inside the mask.
fn declump_inputs(mask: &Image<bool>, seed_distance: usize) -> (Image<f32>, Labels) {
    let comps = label(mask.view(), Connectivity::Eight);
    let dist = distance_transform_edt(mask.view()).map(|d| if d.is_finite() { d } else { 1e4 });
    let smooth = gaussian_blur(dist.view(), 0.5);
    let peaks = peak_local_max(smooth.view(), seed_distance, f32::MIN, Some(&comps));
    let mut markers = Image::new(mask.width(), mask.height(), 0u32);
    for (n, &(r, c)) in peaks.iter().enumerate() {
        markers.set(r, c, n as u32 + 1);
    }
    (smooth.map(|v| -v), Labels::new(markers, peaks.len() as u32))
}

/// Fraction of the pixels labelled by either that the two label differently, and the
/// smallest IoU of a marker's object (≥ 20 pixels) between the two.
fn watershed_agreement(gpu: &Labels, cpu: &Labels) -> (f64, f64, usize) {
    let (g, c) = (gpu.image().as_slice(), cpu.image().as_slice());
    let flooded = g
        .iter()
        .zip(c)
        .filter(|(a, b)| **a != 0 || **b != 0)
        .count();
    let differ = g.iter().zip(c).filter(|(a, b)| a != b).count();
    let n = cpu.count().max(gpu.count()) as usize + 1;
    let (mut inter, mut area_g, mut area_c) = (vec![0u64; n], vec![0u64; n], vec![0u64; n]);
    for (&a, &b) in g.iter().zip(c) {
        area_g[a as usize] += 1;
        area_c[b as usize] += 1;
        if a == b {
            inter[a as usize] += 1;
        }
    }
    let mut min_iou = 1f64;
    for l in 1..n {
        if area_c[l] >= 20 {
            let iou = inter[l] as f64 / (area_g[l] + area_c[l] - inter[l]) as f64;
            min_iou = min_iou.min(iou);
        }
    }
    (differ as f64 / flooded.max(1) as f64, min_iou, differ)
}

fn check_watershed(
    g: &Gpu,
    elev: &Image<f32>,
    markers: &Labels,
    mask: Option<&Image<bool>>,
    what: &str,
) -> f64 {
    let cpu = watershed(elev.view(), markers, mask.map(|m| m.view()));
    let out = g
        .watershed(elev.view(), markers, mask.map(|m| m.view()))
        .unwrap();
    assert_eq!(out.count(), cpu.count(), "{what}: count");
    // The same pixels are flooded (reachability does not depend on ties).
    let reached = |l: &Labels| l.image().map(|v| v != 0);
    assert_eq!(reached(&out), reached(&cpu), "{what}: flooded pixels");
    let (frac, min_iou, differ) = watershed_agreement(&out, &cpu);
    eprintln!("watershed {what}: {differ} pixels differ ({frac:.5}), smallest IoU {min_iou:.4}");
    assert!(
        frac <= WATERSHED_TOLERANCE,
        "{what}: {frac} of the pixels differ"
    );
    assert!(min_iou >= WATERSHED_MIN_IOU, "{what}: IoU {min_iou}");
    // Deterministic.
    assert_eq!(
        g.watershed(elev.view(), markers, mask.map(|m| m.view()))
            .unwrap(),
        out,
        "{what}: twice"
    );
    frac
}

/// A second device whose watershed relaxes one step per dispatch (`relax`), shared by the
/// tests that compare it with the default.
fn one_step_gpu() -> Option<&'static Gpu> {
    static GPU: OnceLock<Option<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| {
        let g = Gpu::new().ok()?;
        g.set_local_watershed(false);
        Some(g)
    })
    .as_ref()
}

#[test]
fn parity_watershed_relax() {
    let Some(g) = gpu() else { return };
    // Both relaxations: tile by tile (the default) and one step per dispatch.
    let Some(plain) = one_step_gpu() else { return };
    for g in [g, plain] {
        // Touching discs: two and three overlapping nuclei.
        let discs = |w: usize, h: usize, centres: &[(f64, f64, f64)]| {
            Image::from_fn(w, h, |r, c| {
                centres.iter().any(|&(cy, cx, rad)| {
                    (r as f64 - cy).powi(2) + (c as f64 - cx).powi(2) <= rad * rad
                })
            })
        };
        let cases = [
            discs(80, 60, &[(30.0, 25.0, 14.0), (30.0, 50.0, 13.0)]),
            discs(
                100,
                90,
                &[(40.0, 30.0, 16.0), (45.0, 58.0, 15.0), (68.0, 45.0, 12.5)],
            ),
        ];
        for (i, mask) in cases.iter().enumerate() {
            let (elev, markers) = declump_inputs(mask, 4);
            check_watershed(g, &elev, &markers, Some(mask), &format!("discs {i}"));
        }
        for (what, elev, markers, mask) in flood_cases() {
            if what == "plateau" {
                // Only ties: the worst case for the order of a queue.
                let mask = mask.as_ref().map(|m| m.view());
                let out = g.watershed(elev.view(), &markers, mask).unwrap();
                let cpu = watershed(elev.view(), &markers, mask);
                let (frac, _, _) = watershed_agreement(&out, &cpu);
                eprintln!("watershed plateau: {frac:.5} differ");
                assert!(frac <= 0.05, "plateau: {frac}");
            } else {
                check_watershed(g, &elev, &markers, mask.as_ref(), &what);
            }
        }
        // Mismatched sizes are a named error.
        let e = Image::new(40, 30, 0f32);
        let err = g
            .watershed(e.view(), &Labels::empty(5, 5), None)
            .unwrap_err();
        assert!(err.to_string().contains("markers are 5x5"), "{err}");
    }
}

/// A watershed case: what it is, elevation, markers, mask.
type FloodCase = (String, Image<f32>, Labels, Option<Image<bool>>);

/// Watershed cases for the parity, relaxation and banding tests.
fn flood_cases() -> Vec<FloodCase> {
    let mut cases = Vec::new();
    // Blob fields with the shape declumping's inputs.
    for (i, mask) in [
        blobs(160, 140, 51, 3.0, 0.0),
        blobs(200, 150, 52, 4.0, -0.005),
    ]
    .into_iter()
    .enumerate()
    {
        let (elev, markers) = declump_inputs(&mask, 4);
        cases.push((format!("blobs {i}"), elev, markers, Some(mask)));
    }
    // No mask, a noisy elevation and scattered markers: basins meet along long ridges.
    let noisy = |w: usize, h: usize, seed: u64, sigma: f32, at: &[(usize, usize)]| {
        let elev = gaussian_blur(noise(w, h, seed).view(), sigma);
        let mut m = Image::new(w, h, 0u32);
        for (k, &(r, c)) in at.iter().enumerate() {
            m.set(r, c, k as u32 + 1);
        }
        (elev, Labels::new(m, at.len() as u32))
    };
    let (elev, markers) = noisy(
        120,
        100,
        53,
        2.0,
        &[(10, 10), (50, 90), (80, 30), (20, 70), (95, 115)],
    );
    cases.push(("noise, no mask".into(), elev, markers, None));
    // Basins hundreds of pixels across.
    let (elev, markers) = noisy(300, 260, 55, 3.0, &[(5, 5), (250, 290), (130, 150)]);
    cases.push(("noise 300x260".into(), elev, markers, None));
    // A flat plateau (only ties).
    let flat = Image::new(64, 48, 0.5f32);
    let mut m = Image::new(64, 48, 0u32);
    m.set(10, 10, 1);
    m.set(40, 50, 2);
    cases.push(("plateau".into(), flat, Labels::new(m, 2), None));
    // A spiral corridor: the flood winds through each tile far longer than the steps one
    // dispatch repeats inside a tile.
    let spiral = masks()[8].clone();
    let mut m = Image::new(spiral.width(), spiral.height(), 0u32);
    let first = spiral.as_slice().iter().position(|&v| v).unwrap();
    m.set(first / spiral.width(), first % spiral.width(), 4);
    let ramp = Image::from_fn(spiral.width(), spiral.height(), |r, c| (r * 3 + c) as f32);
    cases.push(("spiral".into(), ramp, Labels::new(m, 4), Some(spiral)));
    // NaN elevations flood last; a masked-out row; a marker outside the mask is dropped.
    let mut e = gaussian_blur(noise(40, 30, 54).view(), 1.0);
    e.set(15, 15, f32::NAN);
    let mut m = Image::new(40, 30, 0u32);
    m.set(3, 5, 7);
    m.set(20, 30, 2);
    let mask = Image::from_fn(40, 30, |r, _| r != 3);
    cases.push((
        "NaN, marker outside the mask".into(),
        e,
        Labels::new(m, 7),
        Some(mask),
    ));
    cases
}

#[test]
fn parity_watershed_relax_local() {
    let Some(g) = gpu() else { return };
    let Some(plain) = one_step_gpu() else { return };
    let Ok(mut small) = Gpu::new() else { return };
    let (mut local_steps, mut plain_steps) = (0, 0);
    for (what, elev, markers, mask) in flood_cases() {
        let mask = mask.as_ref().map(|m| m.view());
        let (want, p) = plain.watershed_rounds(elev.view(), &markers, mask).unwrap();
        let (got, l) = g.watershed_rounds(elev.view(), &markers, mask).unwrap();
        eprintln!(
            "watershed {what}: tile by tile {} rounds, {} dispatches; one step per dispatch {} \
             rounds, {} dispatches",
            l.rounds, l.dispatches, p.rounds, p.dispatches
        );
        // The same fixed point: identical labels, not merely within the CPU tolerance.
        assert_eq!(got, want, "{what}");
        assert!(l.rounds <= p.rounds, "{what}: {l:?} against {p:?}");
        local_steps += l.dispatches;
        plain_steps += p.dispatches;
        // In bands of a few rows too (halos exchanged once a round).
        let w = elev.width();
        small.set_max_binding_for_tests((9 * w * 24) as u64);
        let tiled = small.watershed(elev.view(), &markers, mask).unwrap();
        assert_eq!(tiled, want, "{what}: bands of 7 rows");
    }
    // Fronts cross a tile per dispatch instead of a pixel.
    assert!(
        local_steps * 4 <= plain_steps,
        "{local_steps} dispatches tile by tile against {plain_steps}"
    );
}

#[test]
fn watershed_tiles_with_halos_give_the_untiled_result() {
    let Some(g) = gpu() else { return };
    let Ok(mut small) = Gpu::new() else { return };
    // Rows per band of each case: the state is 24 bytes per pixel, and each band holds its
    // rows plus a halo row above and below. The NaN case's masked-out row (3) ends a band of
    // 2 rows; it runs once more with one row per band (every row a seam).
    let mut cases: Vec<_> = flood_cases()
        .into_iter()
        .zip([9, 23, 7, 11, 5, 3, 2])
        .map(|((_, e, m, k), rows)| (e, m, k, rows))
        .collect();
    let (e, m, k, _) = cases[cases.len() - 1].clone();
    cases.push((e, m, k, 1));
    for (i, (elev, markers, mask, rows)) in cases.iter().enumerate() {
        let (w, h) = (elev.width(), elev.height());
        small.set_max_binding_for_tests(((rows + 2) * w * 24) as u64);
        let mask = mask.as_ref().map(|m| m.view());
        let whole = g.watershed(elev.view(), markers, mask).unwrap();
        let tiled = small.watershed(elev.view(), markers, mask).unwrap();
        let bands = h.div_ceil(*rows);
        let differ = whole
            .image()
            .as_slice()
            .iter()
            .zip(tiled.image().as_slice())
            .filter(|(a, b)| a != b)
            .count();
        eprintln!(
            "watershed case {i} ({w}x{h}, {bands} bands): {differ} pixels differ from one pass"
        );
        assert!(bands > 1, "case {i} must tile");
        assert_eq!(tiled, whole, "case {i}: {bands} bands of {rows} rows");
        // So the tiled labels are as close to the CPU reference as one pass.
        let cpu = watershed(elev.view(), markers, mask);
        let (frac, min_iou, _) = watershed_agreement(&tiled, &cpu);
        assert!(
            frac <= WATERSHED_TOLERANCE && min_iou >= WATERSHED_MIN_IOU,
            "case {i}"
        );
    }
}

#[test]
fn erosion_dilation_and_reductions_tile_to_the_untiled_result() {
    let Some(g) = gpu() else { return };
    let Ok(mut small) = Gpu::new() else { return };
    // 10 rows of 97 words per binding: bands of 8 rows with a one-row halo.
    small.set_max_binding_for_tests(10 * 97 * 4);
    for m in [
        blobs(97, 61, 61, 2.0, 0.0),
        noise(97, 50, 62).map(|v| v > 0.4),
    ] {
        let whole = g.binary_erosion(m.view()).unwrap();
        assert_eq!(small.binary_erosion(m.view()).unwrap(), whole);
        assert_eq!(whole, morphology::binary_erosion(m.view()));
        let whole = g.binary_dilation(m.view()).unwrap();
        assert_eq!(small.binary_dilation(m.view()).unwrap(), whole);
        assert_eq!(whole, morphology::binary_dilation(m.view()));
        let labels = label(m.view(), Connectivity::Eight);
        let raw = noise(97, m.height(), 63).map(|v| (v * 65535.0) as u16);
        assert_eq!(
            small.object_stats(&labels, Some(raw.view())).unwrap(),
            g.object_stats(&labels, Some(raw.view())).unwrap()
        );
        assert_eq!(
            small.measure_shape(&labels).unwrap(),
            measure_shape(&labels)
        );
        // The distance transform: column pass on strips, row pass on bands (bit-identical).
        let cpu = distance_transform_edt(m.view());
        let out = small.distance_transform_edt(m.view()).unwrap();
        let same = out
            .as_slice()
            .iter()
            .zip(cpu.as_slice())
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "tiled edt {}x{}", m.width(), m.height());
        // Labelling: bands merged across their seams, numbered as the reference numbers.
        for conn in [Connectivity::Four, Connectivity::Eight] {
            assert_eq!(small.label(m.view(), conn).unwrap(), label(m.view(), conn));
        }
        // Hole filling through the tiled labelling of the background.
        for m in [m.clone(), m.map(|v| !v)] {
            assert_eq!(
                small.fill_holes(m.view()).unwrap(),
                morphology::fill_holes(m.view())
            );
        }
    }
    // The spiral: one component crossing every seam many times.
    let spiral = &masks()[8];
    small.set_max_binding_for_tests(1024);
    for conn in [Connectivity::Four, Connectivity::Eight] {
        assert_eq!(
            small.label(spiral.view(), conn).unwrap(),
            label(spiral.view(), conn)
        );
    }
    // The histogram (so Otsu's threshold) is counted in chunks of one binding each.
    for img in images_for_thresholds() {
        for nbins in [7usize, 200] {
            assert_eq!(
                small.histogram(img.view(), nbins).unwrap(),
                threshold::histogram(img.view(), nbins),
                "{}x{} nbins {nbins}",
                img.width(),
                img.height()
            );
        }
    }
    // Below three rows per band: a named error.
    let wide = Image::new(200, 10, true);
    let err = small.binary_erosion(wide.view()).unwrap_err();
    assert!(
        err.to_string().contains("too large for morphology"),
        "{err}"
    );
}

#[test]
fn parity_watershed_init() {
    let Some(g) = gpu() else { return };
    // Only the marker pixels and a few unreachable ones are inside the mask: the result is
    // the starting state itself (markers outside the mask dropped, labels kept as given).
    let elev = noise(37, 29, 71);
    let mut m = Image::new(37, 29, 0u32);
    for (k, (r, c)) in [(0, 0), (5, 9), (28, 36), (14, 20), (3, 30)]
        .into_iter()
        .enumerate()
    {
        m.set(r, c, 10 * k as u32 + 3);
    }
    let markers = Labels::new(m.clone(), 43);
    let mask = Image::from_fn(37, 29, |r, c| {
        (m.get(r, c) != 0 && (r, c) != (14, 20)) || (r == 20 && c % 3 == 0)
    });
    let out = g
        .watershed(elev.view(), &markers, Some(mask.view()))
        .unwrap();
    assert_eq!(out, watershed(elev.view(), &markers, Some(mask.view())));
    assert_eq!(out.image().get(14, 20), 0);
    assert_eq!(out.image().get(28, 36), 23);
    assert_eq!(out.count(), 43);
}

#[test]
fn parity_watershed_extract() {
    let Some(g) = gpu() else { return };
    // One marker per component (and one component without): no basins compete, so every
    // label is exact.
    for mask in masks() {
        let comps = label(mask.view(), Connectivity::Four);
        let mut m = Image::new(mask.width(), mask.height(), 0u32);
        let mut seen = vec![false; comps.count() as usize + 1];
        for r in 0..mask.height() {
            for c in 0..mask.width() {
                let l = comps.image().get(r, c) as usize;
                if l > 1 && !seen[l] {
                    seen[l] = true;
                    m.set(r, c, 100 + l as u32);
                }
            }
        }
        let markers = Labels::new(m, 100 + comps.count());
        let elev = gaussian_blur(noise(mask.width(), mask.height(), 72).view(), 1.5);
        let out = g
            .watershed(elev.view(), &markers, Some(mask.view()))
            .unwrap();
        let cpu = watershed(elev.view(), &markers, Some(mask.view()));
        assert_eq!(out, cpu, "{}x{}", mask.width(), mask.height());
    }
}

/// Label images for the size filter: components in raster order, the same renumbered out of
/// order with gaps (present labels above `count`), a `count` beyond every label, and the
/// marker numbering of the shape declumping's watershed.
fn label_sets() -> Vec<Labels> {
    let mut out = Vec::new();
    for mask in masks() {
        let l = label(mask.view(), Connectivity::Four);
        let n = l.count();
        // Injective below 100,003 components; label 1 becomes 7,920.
        let scrambled = l.image().map(|v| {
            if v == 0 {
                0
            } else {
                (u64::from(v) * 7919 % 100_003) as u32 + 1
            }
        });
        out.push(Labels::new(scrambled, n));
        out.push(Labels::new(l.image().clone(), n + 50));
        out.push(l);
    }
    for (seed, sd) in [(2u64, 3usize), (5, 7)] {
        let mask = blobs(130, 140, seed, 3.0, 0.01);
        let (elev, markers) = declump_inputs(&mask, sd);
        out.push(watershed(elev.view(), &markers, Some(mask.view())));
    }
    out
}

/// The runs of equal non-zero labels along the rows of `l` (what `runs.wgsl` encodes).
fn count_runs(l: &Image<u32>) -> usize {
    (0..l.height())
        .map(|r| {
            let row = l.row(r);
            (0..row.len())
                .filter(|&x| row[x] != 0 && (x == 0 || row[x - 1] != row[x]))
                .count()
        })
        .sum()
}

#[test]
fn parity_runs_encode() {
    let Some(g) = gpu() else { return };
    // Label images at and above the size where runs are used, each read back exactly, as
    // runs (with the CPU's count of runs) or, past one run per 8 pixels, whole.
    let (w, h) = (300, 260);
    assert!(w * h >= RUNS_MIN_PIXELS && 256 * 256 >= RUNS_MIN_PIXELS);
    let blobs8 = label(blobs(w, h, 11, 2.0, 0.0).view(), Connectivity::Eight);
    let big = label(blobs(400, 300, 12, 3.0, 0.01).view(), Connectivity::Four);
    let mut cases: Vec<(&str, Image<u32>)> = vec![
        ("blobs", blobs8.image().clone()),
        // Neighbouring objects with different labels, runs that end where another starts.
        (
            "scrambled",
            blobs8.image().map(|v| {
                if v == 0 {
                    0
                } else {
                    (u64::from(v) * 7919 % 100_003) as u32 + 1
                }
            }),
        ),
        (
            "stripes",
            Image::from_fn(w, h, |r, c| ((c + r) / 10 % 2) as u32 + 1),
        ),
        ("one label", Image::new(w, h, 7u32)),
        ("highest label", Image::new(256, 256, u32::MAX)),
        ("empty", Image::new(w, h, 0u32)),
        // Single pixels in the first and last columns and rows.
        (
            "edges",
            Image::from_fn(256, 256, |r, c| {
                u32::from((r == 0 || r == 255 || c == 0 || c == 255) && (r + c) % 3 == 0)
                    * (r * 256 + c + 1) as u32
            }),
        ),
        // One run per 6 pixels, and per 2: more than the buffer holds (one per 8).
        (
            "dashes",
            Image::from_fn(w, h, |r, c| u32::from((c + r) % 6 < 3) * 2),
        ),
        (
            "checkerboard",
            Image::from_fn(w, h, |r, c| ((r + c) % 2) as u32 * 3),
        ),
    ];
    let crop = big.image().view().crop(20, 30, 260, 280).unwrap();
    cases.push(("crop", crop.to_image()));
    let (mut as_runs, mut whole) = (0, 0);
    for (k, (name, img)) in cases.iter().enumerate() {
        let runs = count_runs(img);
        let (back, none, how) = g.labels_round_trip(img.view(), None, None).unwrap();
        assert_eq!(&back, img, "{name}: the labels differ after the readback");
        assert_eq!(none, None);
        if runs <= img.len() / 8 {
            assert_eq!(how, LabelReadback::Runs(runs), "{name}");
            as_runs += 1;
        } else {
            assert_eq!(how, LabelReadback::Whole, "{name}: {runs} runs");
            whole += 1;
        }
        // With values: they come back at the labelled pixels, 0 elsewhere.
        let mut r = Lcg(400 + k as u64);
        let values = Image::from_fn(img.width(), img.height(), |_, _| {
            let v = r.next();
            if v < 0.05 {
                u32::MAX
            } else {
                (v * 1e9) as u32
            }
        });
        let want = Image::from_fn(img.width(), img.height(), |y, x| {
            if img.get(y, x) != 0 {
                values.get(y, x)
            } else {
                0
            }
        });
        let (back, v, how_v) = g
            .labels_round_trip(img.view(), Some(values.view()), None)
            .unwrap();
        assert_eq!((&back, how_v), (img, how), "{name}: with values");
        assert_eq!(v.as_ref(), Some(&want), "{name}: the values");
        // Room for fewer values than the runs cover: the image comes back whole, the same.
        let labelled = img.as_slice().iter().filter(|&&l| l != 0).count();
        if labelled > 1 {
            let short = g
                .labels_round_trip(img.view(), Some(values.view()), Some(labelled - 1))
                .unwrap();
            assert_eq!(
                short,
                (img.clone(), Some(want), LabelReadback::Whole),
                "{name}"
            );
        }
    }
    assert!(
        as_runs >= 7 && whole >= 2,
        "{as_runs} as runs, {whole} whole"
    );
    // The crop as a view (rows apart in memory), small images, and runs switched off.
    let (back, _, _) = g.labels_round_trip(crop, Some(crop), None).unwrap();
    assert_eq!(back, crop.to_image());
    let small = blobs8.image().view().crop(0, 0, 100, 100).unwrap();
    assert_eq!(
        g.labels_round_trip(small, None, None).unwrap(),
        (small.to_image(), None, LabelReadback::Whole)
    );
    let Ok(off) = Gpu::new() else { return };
    off.set_label_runs(false);
    assert_eq!(
        off.labels_round_trip(blobs8.image().view(), None, None)
            .unwrap(),
        (blobs8.image().clone(), None, LabelReadback::Whole)
    );
    let other = Image::new(w, h + 1, 0u32);
    assert!(g
        .labels_round_trip(blobs8.image().view(), Some(other.view()), None)
        .is_err());
}

#[test]
fn parity_relabel_areas() {
    let Some(g) = gpu() else { return };
    // Which objects the area range keeps (and their numbering): identical.
    for l in label_sets() {
        let areas = object_areas(&l);
        let mut sorted: Vec<u64> = areas.iter().skip(1).copied().filter(|&a| a > 0).collect();
        sorted.sort_unstable();
        let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0);
        for (lo, hi) in [
            (0, u64::MAX),
            (1, 1),
            (2, median),
            (median, u64::MAX),
            (median + 1, median),
        ] {
            let cpu = filter_by_area(&l, lo, hi);
            let out = g.filter_by_area(&l, lo, hi).unwrap();
            assert_eq!(
                out,
                cpu,
                "{}x{}, count {}, range {lo}..={hi}",
                l.width(),
                l.height(),
                l.count()
            );
        }
    }
}

#[test]
fn parity_relabel_remap() {
    let Some(g) = gpu() else { return };
    let Ok(mut small) = Gpu::new() else { return };
    // Renumbering alone (every object kept), whole and in bands of 10 rows of 130 words.
    small.set_max_binding_for_tests(10 * 130 * 4);
    let mut banded = 0;
    for l in label_sets() {
        let cpu = relabel_sequential(&l);
        assert_eq!(g.filter_by_area(&l, 0, u64::MAX).unwrap(), cpu);
        let kept = filter_by_area(&l, 20, 400);
        // The per-label table must fit the lowered binding too.
        let top = l.image().as_slice().iter().copied().max().unwrap_or(0);
        if l.width() <= 130 && top.max(l.count()) < 600 {
            assert_eq!(small.filter_by_area(&l, 0, u64::MAX).unwrap(), cpu);
            assert_eq!(small.filter_by_area(&l, 20, 400).unwrap(), kept);
            banded += usize::from(l.height() > 10);
        }
    }
    assert!(banded >= 10, "only {banded} label images ran in bands");
    // Empty and all-background images.
    assert_eq!(
        g.filter_by_area(&Labels::empty(0, 5), 0, 9).unwrap(),
        filter_by_area(&Labels::empty(0, 5), 0, 9)
    );
    let bg = Labels::new(Image::new(9, 4, 0u32), 3);
    assert_eq!(
        g.filter_by_area(&bg, 0, 9).unwrap(),
        filter_by_area(&bg, 0, 9)
    );
}

/// F1 at IoU 0.5 of `b` against `a`, and whether the two are identical.
fn f1_at_half(a: &Labels, b: &Labels) -> f64 {
    let m = match_labels(a.view(), b.view()).unwrap();
    let c = &m.counts[0];
    if c.tp + c.fp + c.fn_ == 0 {
        return 1.0;
    }
    2.0 * c.tp as f64 / (2 * c.tp + c.fp + c.fn_) as f64
}

#[test]
fn shape_declumping_and_size_filter_on_the_gpu_match_the_cpu() {
    if gpu().is_none() {
        return;
    }
    let Ok(backend) = GpuBackend::new() else {
        return;
    };
    // Touching and overlapping discs of several sizes on a noisy background, as u16.
    let mut r = Lcg(91);
    let mut centres = Vec::new();
    for _ in 0..60 {
        let (y, x) = (
            8.0 + 144.0 * f64::from(r.next()),
            8.0 + 184.0 * f64::from(r.next()),
        );
        centres.push((y, x, 4.0 + 6.0 * f64::from(r.next())));
    }
    let grain = noise(200, 160, 92);
    let img = Image::from_fn(200, 160, |y, x| {
        let inside = centres
            .iter()
            .any(|&(cy, cx, rad)| (y as f64 - cy).powi(2) + (x as f64 - cx).powi(2) <= rad * rad);
        let base = if inside { 30000.0 } else { 3000.0 };
        (base + 4000.0 * grain.get(y, x)) as u16
    });
    let (mut identical, mut total) = (0, 0);
    for method in [
        DeclumpMethod::Shape,
        DeclumpMethod::Hybrid,
        DeclumpMethod::Intensity,
    ] {
        for (min_d, max_d) in [(5.0, 60.0), (12.0, 18.0)] {
            let p = NucleiParams {
                declump_method: method,
                min_diameter: min_d,
                max_diameter: max_d,
                ..NucleiParams::default()
            };
            let cpu = segment_nuclei_with(&CpuBackend, img.view(), &p).unwrap();
            let out = segment_nuclei_with(&backend, img.view(), &p).unwrap();
            let f1 = f1_at_half(&cpu.labels, &out.labels);
            let differ = cpu
                .labels
                .image()
                .as_slice()
                .iter()
                .zip(out.labels.image().as_slice())
                .filter(|(a, b)| a != b)
                .count();
            eprintln!(
                "{method:?} diameters {min_d}..{max_d}: cpu {} gpu {} objects, {differ} pixels \
                 differ, F1@0.5 {f1}",
                cpu.labels.count(),
                out.labels.count(),
            );
            assert!(cpu.labels.count() > 10, "{method:?}: too few objects");
            assert!(f1 >= 0.999, "{method:?} {min_d}..{max_d}: F1 {f1}");
            total += 1;
            identical += usize::from(cpu.labels == out.labels);
        }
    }
    eprintln!("{identical} of {total} label images identical");
}

#[test]
fn timestamp_queries_time_each_kernel_pass() {
    let Some(g) = gpu() else { return };
    let img = noise(64, 48, 93);
    if !g.timestamps_supported() {
        // Without TIMESTAMP_QUERY profiling cannot be turned on and records nothing.
        assert!(!g.set_profiling(true));
        let _ = g.gaussian_blur(img.view(), 1.0).unwrap();
        assert_eq!(g.take_profile(), (Vec::new(), 0));
        eprintln!("note: {} has no timestamp queries", g.adapter().name);
        return;
    }
    // Other tests share this device; a private one keeps their passes out of the profile.
    let Ok(own) = Gpu::new() else { return };
    assert!(own.set_profiling(true));
    let _ = own.take_profile();
    let blurred = own.gaussian_blur(img.view(), 1.0).unwrap();
    let mask = blurred.map(|v| v > 0.5);
    let labels = own.label(mask.view(), Connectivity::Eight).unwrap();
    let (times, untimed) = own.take_profile();
    assert_eq!(untimed, 0);
    let passes = |k: &str, e: &str| {
        times
            .iter()
            .find(|t| t.kernel == k && t.entry == e)
            .map_or(0, |t| t.passes)
    };
    assert_eq!(passes("gaussian", "columns"), 1, "{times:?}");
    assert_eq!(passes("gaussian", "rows"), 1, "{times:?}");
    assert_eq!(passes("label", "init"), 1, "{times:?}");
    // Union-find: one merge and one flatten, whatever the components' shapes.
    assert_eq!(passes("label", "merge"), 1, "{times:?}");
    assert_eq!(passes("label", "flatten"), 1, "{times:?}");
    assert!(times
        .iter()
        .all(|t| t.gpu_ms.is_finite() && t.gpu_ms >= 0.0));
    assert!(times.iter().any(|t| t.gpu_ms > 0.0), "{times:?}");
    assert_eq!(labels, label(mask.view(), Connectivity::Eight));
    // Turned off, nothing more is recorded.
    own.set_profiling(false);
    let _ = own.gaussian_blur(img.view(), 1.0).unwrap();
    assert_eq!(own.take_profile(), (Vec::new(), 0));
}

#[test]
fn parity_resident_fill_label_distance() {
    let Some(g) = gpu() else { return };
    let Ok(mut small) = Gpu::new() else { return };
    small.set_max_binding_for_tests(10 * 130 * 4);
    // Hole filling, labels and distances with the mask resident on the device: the three
    // CPU references, bit for bit; and the tiled path (three separate calls) likewise. The
    // masks of 65,536 pixels and more have their labels and distances come back as runs
    // (the noise one has more runs than that takes, and comes back whole).
    let large = [
        blobs(300, 260, 13, 2.0, 0.0),
        blobs(320, 240, 14, 3.0, 0.02),
        Image::new(256, 256, true),
        noise(300, 260, 15).map(|v| v > 0.5),
    ];
    assert!(large.iter().all(|m| m.len() >= RUNS_MIN_PIXELS));
    let mut resident = 0;
    for m in masks().into_iter().chain(large) {
        for fill in [true, false] {
            for conn in [Connectivity::Four, Connectivity::Eight] {
                let cpu = CpuBackend
                    .fill_label_distance(m.clone(), fill, conn, true)
                    .unwrap();
                let want_mask = if fill {
                    morphology::fill_holes(m.view())
                } else {
                    m.clone()
                };
                assert_eq!(cpu.mask, want_mask);
                assert_eq!(cpu.labels, label(want_mask.view(), conn));
                let out = g.fill_label_distance(m.clone(), fill, conn, true).unwrap();
                let what = format!("{}x{} fill {fill} {conn:?}", m.width(), m.height());
                assert_eq!(out.mask, cpu.mask, "{what}");
                assert_eq!(out.labels, cpu.labels, "{what}");
                let bits = |d: &Option<Image<f32>>| {
                    d.as_ref()
                        .map(|d| d.as_slice().iter().map(|v| v.to_bits()).collect::<Vec<_>>())
                };
                assert_eq!(bits(&out.distance), bits(&cpu.distance), "{what}");
                assert_eq!(
                    cpu.distance.is_some(),
                    cpu.labels.count() > 0,
                    "{what}: distance only with objects"
                );
                let none = g.fill_label_distance(m.clone(), fill, conn, false).unwrap();
                assert_eq!(none.distance, None);
                assert_eq!(none.labels, cpu.labels);
                resident += 1;
                if m.width() <= 130 {
                    let tiled = small
                        .fill_label_distance(m.clone(), fill, conn, true)
                        .unwrap();
                    assert_eq!(tiled, out, "{what}: tiled");
                }
            }
        }
    }
    assert_eq!(resident, 4 * (masks().len() + 4));
}

/// Fields for the resident segmentation: bright blobs of many sizes (some with holes,
/// some touching the border) on a noisy background.
fn segment_fields() -> Vec<Image<f32>> {
    [(97, 61, 201, 2.0), (160, 130, 202, 3.0), (64, 64, 203, 1.5)]
        .into_iter()
        .map(|(w, h, seed, s)| {
            let fg = blobs(w, h, seed, s, 0.01);
            let grain = noise(w, h, seed + 50);
            Image::from_fn(w, h, |r, c| {
                0.2 * grain.get(r, c) + if fg.get(r, c) { 0.7 } else { 0.0 }
            })
        })
        .collect()
}

/// [`OtsuParams`] with σ and the area range, shapes measured.
fn op(sigma: f32, (min_area, max_area): (u64, u64)) -> OtsuParams {
    OtsuParams {
        sigma,
        min_area,
        max_area,
        ..OtsuParams::default()
    }
}

/// `segment_otsu_by_stages` on `b`.
fn by_stages(b: &dyn Backend, f: FieldView, p: &OtsuParams) -> ipscope_core::backend::OtsuObjects {
    ipscope_core::backend::segment_otsu_by_stages(b, f, p).unwrap()
}

/// The resident segmentation against the stages on the CPU, exact (σ = 0: no Gaussian, so
/// no f32 tolerance), for each area range: threshold, labels and shapes.
fn check_segment_exact(g: &Gpu, img: &Image<f32>, area: (u64, u64), what: &str) -> usize {
    let cpu = by_stages(&CpuBackend, FieldView::F32(img.view()), &op(0.0, area));
    let out = g
        .segment_otsu(FieldView::F32(img.view()), &op(0.0, area))
        .unwrap();
    assert_eq!(out.threshold, cpu.threshold, "{what}: threshold");
    assert_eq!(out.labels, cpu.labels, "{what}: labels");
    assert_eq!(out.shapes, cpu.shapes, "{what}: shapes");
    cpu.labels.count() as usize
}

#[test]
fn parity_segment_threshold() {
    let Some(g) = gpu() else { return };
    for (k, mut img) in segment_fields().into_iter().enumerate() {
        // Pixels lying exactly at the threshold stay background (`>`, not `>=`): put a few
        // there, while Otsu's threshold stays where it was.
        let t = threshold::otsu(img.view(), 256).unwrap();
        for c in 0..img.width().min(9) {
            img.set(img.height() / 2, c, t);
        }
        assert_eq!(
            threshold::otsu(img.view(), 256),
            Some(t),
            "field {k}: threshold moved"
        );
        let n = check_segment_exact(g, &img, (0, u64::MAX), &format!("field {k}"));
        assert!(n > 3, "field {k}: {n} objects");
    }
    // No threshold: empty and constant fields, as on the CPU.
    for img in [Image::new(20, 10, 0.5f32), Image::new(0, 0, 0f32)] {
        let out = g
            .segment_otsu(FieldView::F32(img.view()), &op(1.0, (0, u64::MAX)))
            .unwrap();
        assert_eq!(out.threshold, None);
        assert_eq!(out.labels.count(), 0);
    }
}

#[test]
fn parity_segment_root_areas() {
    let Some(g) = gpu() else { return };
    // Area bounds equal to objects' own areas: each must be kept at the bound itself.
    for (k, img) in segment_fields().into_iter().enumerate() {
        let all = by_stages(
            &CpuBackend,
            FieldView::F32(img.view()),
            &op(0.0, (0, u64::MAX)),
        );
        let mut areas: Vec<u64> = all.shapes.iter().map(|s| s.area).collect();
        areas.sort_unstable();
        let (a, b) = (areas[areas.len() / 4], areas[3 * areas.len() / 4]);
        assert!(a < b, "field {k}: areas {areas:?}");
        let n = check_segment_exact(g, &img, (a, b), &format!("field {k}, areas {a}..={b}"));
        assert!(
            n > 1 && n < areas.len(),
            "field {k}: {n} of {}",
            areas.len()
        );
    }
}

#[test]
fn parity_segment_number() {
    let Some(g) = gpu() else { return };
    // Hundreds of small objects hand out ids concurrently; their numbers must still follow
    // raster order of first pixel. Single pixels and pairs on a grid, some diagonal.
    let img = Image::from_fn(151, 97, |r, c| {
        let on = (r % 4 == 1 && c % 4 == 1) || (r % 8 == 2 && c % 8 == 2);
        if on {
            0.9
        } else {
            0.1
        }
    });
    for area in [(0, u64::MAX), (2, u64::MAX), (1, 1)] {
        let n = check_segment_exact(g, &img, area, &format!("grid, areas {area:?}"));
        assert!(n > 100, "grid {area:?}: {n} objects");
    }
    // No object kept.
    let n = check_segment_exact(g, &img, (1000, u64::MAX), "grid, nothing kept");
    assert_eq!(n, 0);
}

#[test]
fn parity_segment_remap() {
    let Some(g) = gpu() else { return };
    // With smoothing: identical to the same stages on this device, within the Gaussian's
    // tolerance of the CPU (F1@0.5 ≥ 0.999 and identical objects measured identically).
    let backend = GpuBackend::from_gpu(Gpu::new().unwrap());
    for (k, img) in segment_fields().into_iter().enumerate() {
        let area = (20, u64::MAX);
        let staged = by_stages(&backend, FieldView::F32(img.view()), &op(1.0, area));
        let out = g
            .segment_otsu(FieldView::F32(img.view()), &op(1.0, area))
            .unwrap();
        assert_eq!(out, staged, "field {k}: resident vs stages on the device");
        // Without the shapes: the same labels, no measurement.
        let bare = OtsuParams {
            shapes: false,
            ..op(1.0, area)
        };
        let labels_only = g.segment_otsu(FieldView::F32(img.view()), &bare).unwrap();
        assert_eq!(labels_only.labels, out.labels, "field {k}: without shapes");
        assert!(labels_only.shapes.is_empty() && !out.shapes.is_empty());
        let cpu = by_stages(&CpuBackend, FieldView::F32(img.view()), &op(1.0, area));
        let f1 = f1_at_half(&cpu.labels, &out.labels);
        assert!(f1 >= 0.999, "field {k}: F1 {f1}");
        assert!(cpu.labels.count() > 3, "field {k}: too few objects");
        if cpu.labels == out.labels {
            assert_eq!(cpu.shapes, out.shapes, "field {k}: shapes");
        }
    }
}

#[test]
fn segment_otsu_beyond_one_binding_runs_the_stages_tiled() {
    if gpu().is_none() {
        return;
    }
    let Ok(mut small) = Gpu::new() else { return };
    small.set_max_binding_for_tests(4096);
    // 64 × 64: 16 KiB per buffer, beyond the 4 KiB binding; the Gaussian's bands fit.
    let img = &segment_fields()[2];
    assert!(!small.segment_resident_fits(img.width(), img.height()));
    assert!(small
        .segment_otsu(FieldView::F32(img.view()), &op(1.0, (20, u64::MAX)))
        .is_err());
    let backend = GpuBackend::from_gpu(small);
    let tiled = backend
        .segment_otsu(FieldView::F32(img.view()), &op(1.0, (20, u64::MAX)))
        .unwrap();
    let whole = gpu()
        .unwrap()
        .segment_otsu(FieldView::F32(img.view()), &op(1.0, (20, u64::MAX)))
        .unwrap();
    assert_eq!(tiled, whole);
}

#[test]
fn parity_unpack_unit_u16() {
    let Some(g) = gpu() else { return };
    let mut r = Lcg(301);
    // Every 16-bit value once (256 × 256), odd and even pixel counts, words whose bits are
    // denormal or NaN as f32 (a zero or 0xffff high half), a view inside a larger image.
    let every = Image::from_fn(256, 256, |y, x| ((y * 256 + x) as u16).rotate_left(5));
    let odd = Image::from_fn(37, 29, |_, _| (r.next() * 65535.0) as u16);
    let words = Image::from_fn(40, 21, |y, x| match (y + x) % 4 {
        0 => 0,
        1 => 1,
        2 => u16::MAX,
        _ => 0x7f80,
    });
    let big = Image::from_fn(60, 50, |_, _| (r.next() * 65535.0) as u16);
    let inner = big.view().crop(3, 5, 41, 33).unwrap();
    let cases = [every.view(), odd.view(), words.view(), inner];
    for (k, img) in cases.into_iter().enumerate() {
        for sigma in [0.4f32, 1.0, 2.5] {
            let out = g.gaussian_blur_unit_u16(img, sigma).unwrap();
            let scaled = img.map(ipscope_core::ops::filter::unit_scale_u16);
            // The same f32 input on the device: the same bits.
            let via_f32 = g.gaussian_blur(scaled.view(), sigma).unwrap();
            let same = out
                .as_slice()
                .iter()
                .zip(via_f32.as_slice())
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "case {k}, sigma {sigma}: not the f32 path's bits");
            let cpu = ipscope_core::ops::filter::gaussian_blur_unit_u16(img, sigma);
            assert_close(&out, &cpu, &format!("unit u16 case {k}, sigma {sigma}"));
        }
    }
}

#[test]
fn segment_otsu_takes_16_bit_fields_as_stored() {
    let Some(g) = gpu() else { return };
    let backend = GpuBackend::from_gpu(Gpu::new().unwrap());
    for (k, img) in segment_fields().into_iter().enumerate() {
        let field = img.map(|v| (v.clamp(0.0, 1.0) * 65535.0) as u16);
        let scaled = field.map(ipscope_core::ops::filter::unit_scale_u16);
        for sigma in [0.0, 1.0] {
            let area = (10, u64::MAX);
            let out = g
                .segment_otsu(FieldView::UnitU16(field.view()), &op(sigma, area))
                .unwrap();
            // The scaled field as f32 gives the same result, and so do the stages.
            let f32_in = g
                .segment_otsu(FieldView::F32(scaled.view()), &op(sigma, area))
                .unwrap();
            assert_eq!(out, f32_in, "field {k}, sigma {sigma}: u16 vs f32 input");
            let staged = by_stages(&backend, FieldView::UnitU16(field.view()), &op(sigma, area));
            assert_eq!(out, staged, "field {k}, sigma {sigma}: resident vs stages");
            assert!(out.labels.count() > 3, "field {k}: too few objects");
            if sigma == 0.0 {
                let cpu = by_stages(
                    &CpuBackend,
                    FieldView::UnitU16(field.view()),
                    &op(sigma, area),
                );
                assert_eq!(out, cpu, "field {k}: against the CPU");
            }
        }
    }
}

#[test]
fn plain_otsu_nuclei_run_resident_on_the_gpu_and_match_the_cpu() {
    let Some(g) = gpu() else { return };
    let backend = GpuBackend::from_gpu(Gpu::new().unwrap());
    let p = NucleiParams {
        min_diameter: 4.0,
        ..NucleiParams::plain_otsu()
    };
    for (k, img) in segment_fields().into_iter().enumerate() {
        let field = img.map(|v| (v.clamp(0.0, 1.0) * 65535.0) as u16);
        let cpu = segment_nuclei_with(&CpuBackend, field.view(), &p).unwrap();
        let out = segment_nuclei_with(&backend, field.view(), &p).unwrap();
        // The resident call's objects, filtered as the recipe filters them.
        let (min_area, max_area) = p.area_range();
        let resident = g
            .segment_otsu(
                FieldView::UnitU16(field.view()),
                &OtsuParams {
                    min_area,
                    max_area,
                    shapes: false,
                    ..OtsuParams::default()
                },
            )
            .unwrap();
        assert_eq!(out.labels, resident.labels, "field {k}");
        let f1 = f1_at_half(&cpu.labels, &out.labels);
        assert!(cpu.labels.count() > 3, "field {k}: too few objects");
        assert!(f1 >= 0.999, "field {k}: F1 {f1}");
        assert!((out.threshold - cpu.threshold).abs() < 1e-3, "field {k}");
    }
}

/// Float images equal value for value: NaN where the other has NaN, zeros of either sign
/// equal (`f32::min` may return either zero of two; the kernel returns the first).
fn assert_same_values(gpu: &Image<f32>, cpu: &Image<f32>, what: &str) {
    assert_eq!(
        (gpu.width(), gpu.height()),
        (cpu.width(), cpu.height()),
        "{what}"
    );
    for (i, (a, b)) in gpu.as_slice().iter().zip(cpu.as_slice()).enumerate() {
        assert!(
            a == b || (a.is_nan() && b.is_nan()),
            "{what}: pixel {i} (row {}, column {}): GPU {a}, CPU {b}",
            i / cpu.width(),
            i % cpu.width()
        );
    }
}

/// Images for the grey opening: noise and smooth fields of sizes whose lines end anywhere
/// in a block, lines of one pixel, and a field with plateaus.
fn rank_images() -> Vec<Image<f32>> {
    vec![
        noise(97, 61, 301),
        gaussian_blur(noise(130, 140, 302).view(), 3.0),
        noise(33, 1, 303),
        noise(1, 29, 304),
        noise(1, 1, 305),
        Image::from_fn(45, 38, |r, c| ((r / 7 + c / 5) % 4) as f32 * 0.25),
    ]
}

#[test]
fn parity_rank_blocks_cover_any_radius() {
    let Some(g) = gpu() else { return };
    // Radii that leave each line's last block whole, cut or alone, and radii beyond the
    // image (the window covers it all).
    let mut cases = 0;
    for (k, img) in rank_images().into_iter().enumerate() {
        for r in [1usize, 2, 3, 7, 16, 50, 200] {
            let cpu = ipscope_core::ops::rank::open(img.view(), r);
            let out = g.grey_opening(img.view(), r).unwrap();
            assert_same_values(&out, &cpu, &format!("image {k}, radius {r}"));
            cases += 1;
        }
        // Radius 0 is the image itself.
        assert_eq!(g.grey_opening(img.view(), 0).unwrap(), img);
    }
    // A crop (not contiguous) filters as its copy.
    let big = noise(80, 70, 306);
    let crop = big.view().crop(5, 7, 40, 50).unwrap();
    let cpu = ipscope_core::ops::rank::open(crop, 4);
    assert_same_values(&g.grey_opening(crop, 4).unwrap(), &cpu, "crop");
    // An opening that is not the identity (the case must be able to fail).
    let img = noise(97, 61, 301);
    assert_ne!(g.grey_opening(img.view(), 2).unwrap(), img);
    assert_eq!(cases, 42);
}

#[test]
fn parity_rank_combine_skips_nan_and_keeps_infinities() {
    let Some(g) = gpu() else { return };
    for (k, mut img) in rank_images().into_iter().enumerate() {
        let (w, h) = (img.width(), img.height());
        // NaN pixels (scattered, and a block of them wider than small windows), infinities.
        for i in 0..w * h {
            let (r, c) = (i / w, i % w);
            if i % 13 == 5 || (r < 6 && c < 9) {
                img.set(r, c, f32::NAN);
            } else if i % 29 == 3 {
                img.set(r, c, f32::INFINITY);
            } else if i % 31 == 7 {
                img.set(r, c, f32::NEG_INFINITY);
            }
        }
        for r in [1usize, 2, 5, 40] {
            let cpu = ipscope_core::ops::rank::open(img.view(), r);
            let out = g.grey_opening(img.view(), r).unwrap();
            assert_same_values(&out, &cpu, &format!("image {k} with NaN, radius {r}"));
        }
    }
    // All NaN: erosion gives +inf, the opening's dilation of that +inf, as on the CPU.
    let img = Image::new(9, 4, f32::NAN);
    let cpu = ipscope_core::ops::rank::open(img.view(), 1);
    assert!(cpu.as_slice().iter().all(|&v| v == f32::INFINITY));
    assert_same_values(&g.grey_opening(img.view(), 1).unwrap(), &cpu, "all NaN");
}

#[test]
fn grey_opening_beyond_one_binding_runs_in_bands() {
    if gpu().is_none() {
        return;
    }
    let Ok(mut small) = Gpu::new() else { return };
    let img = gaussian_blur(noise(60, 211, 307).view(), 2.0);
    for (r, rows) in [(1usize, 12usize), (3, 20), (5, 64)] {
        // `rows` rows of the widest padded line per binding: bands with 2r-row halos.
        small.set_max_binding_for_tests(((60 + 2 * r) * rows * 4) as u64);
        let cpu = ipscope_core::ops::rank::open(img.view(), r);
        let out = small.grey_opening(img.view(), r).unwrap();
        assert_same_values(&out, &cpu, &format!("banded, radius {r}"));
    }
    // A binding below one band with its halos is a named error, not a crash.
    small.set_max_binding_for_tests(1024);
    let err = small.grey_opening(img.view(), 5).unwrap_err();
    assert!(matches!(err, ipscope_gpu::Error::TooLarge { .. }), "{err}");
}

/// The first steps with the field kept on the device (σ 1, opening r = 4, no threshold).
const KEPT: FlattenParams = FlattenParams {
    sigma: 1.0,
    radius: 4,
    keep_field: true,
    keep_on_backend: true,
    threshold: FlatThreshold::None,
};

/// Every [`FlattenParams`] combination the parity cases run.
fn flatten_params() -> Vec<FlattenParams> {
    let mut v = Vec::new();
    for sigma in [0.0f32, 1.0] {
        for radius in [0usize, 4, 30] {
            for (keep_field, keep_on_backend) in [(false, false), (true, false), (true, true)] {
                for threshold in [FlatThreshold::None, FlatThreshold::Otsu, FlatThreshold::Li] {
                    v.push(FlattenParams {
                        sigma,
                        radius,
                        keep_field,
                        keep_on_backend,
                        threshold,
                    });
                }
            }
        }
    }
    v
}

#[test]
fn parity_rank_subtract() {
    let Some(g) = gpu() else { return };
    let backend = GpuBackend::from_gpu(Gpu::new().unwrap());
    let fields = segment_fields();
    let raw = noise(83, 57, 308).map(|v| (v * 40_000.0) as u16 + 3000);
    let (mut flattened, mut kept_blurs) = (0, 0);
    for (k, img) in fields.iter().enumerate() {
        for p in flatten_params() {
            for f in [FieldView::F32(img.view()), FieldView::UnitU16(raw.view())] {
                let what = format!("field {k}, {p:?}, {}", matches!(f, FieldView::F32(_)));
                // Resident against the same stages on this device: identical.
                let staged = smooth_and_flatten_by_stages(&backend, f, &p).unwrap();
                let out = g.smooth_and_flatten(f, &p).unwrap();
                assert_eq!(out.threshold, staged.threshold, "{what}: threshold");
                assert_same_values(&out.smoothed, &staged.smoothed, &what);
                let kept = p.keep_field && p.keep_on_backend;
                assert_eq!(out.field.is_some(), p.keep_field && !kept, "{what}");
                assert_eq!(out.kept.is_some(), kept, "{what}");
                assert!(staged.kept.is_none(), "{what}: the stages keep nothing");
                if let (Some(a), Some(b)) = (&out.field, &staged.field) {
                    assert_same_values(a, b, &format!("{what}: field"));
                }
                // The kept field blurs as the field brought to the host does, on this device.
                if let (Some(k), Some(b)) = (&out.kept, &staged.field) {
                    assert_eq!(k.dims(), (b.width(), b.height()));
                    for s in [0.0f32, 1.5, 4.0] {
                        let from_kept = g.gaussian_blur_kept(k, s).unwrap();
                        let from_host = g.gaussian_blur(b.view(), s).unwrap();
                        assert_same_values(&from_kept, &from_host, &format!("{what}: kept, σ {s}"));
                    }
                    kept_blurs += 1;
                }
                // Against the CPU: exact without smoothing, else within the Gaussian's
                // tolerance (the opening and subtraction add no error of their own).
                let cpu = smooth_and_flatten_by_stages(&CpuBackend, f, &p).unwrap();
                if p.sigma == 0.0 {
                    assert_same_values(&out.smoothed, &cpu.smoothed, &what);
                    if p.threshold == FlatThreshold::Otsu {
                        assert_eq!(out.threshold, cpu.threshold, "{what}");
                    }
                } else {
                    assert_close(&out.smoothed, &cpu.smoothed, &what);
                }
                if let (Some(a), Some(b)) = (&out.field, &cpu.field) {
                    if p.sigma == 0.0 {
                        assert_same_values(a, b, &format!("{what}: field"));
                    } else {
                        assert_close(a, b, &format!("{what}: field"));
                    }
                }
                assert_eq!(out.threshold.is_some(), cpu.threshold.is_some(), "{what}");
                if let (Some(a), Some(b)) = (out.threshold, cpu.threshold) {
                    let range = cpu.smoothed.as_slice().iter().fold(0f32, |m, &v| m.max(v))
                        - cpu
                            .smoothed
                            .as_slice()
                            .iter()
                            .fold(f32::MAX, |m, &v| m.min(v));
                    assert!(
                        f64::from((a - b).abs()) <= LI_TOLERANCE * f64::from(range) + 1e-6,
                        "{what}: threshold {a} vs {b}"
                    );
                }
                if p.radius > 0 {
                    flattened += 1;
                }
            }
        }
    }
    assert_eq!(flattened, 3 * 36 * 2);
    assert_eq!(kept_blurs, 3 * 18 * 2);
    // A kept image is read only by the device that kept it: another device, a backend that
    // keeps none, and an image held by something else are errors, not panics.
    let p = KEPT;
    let out = g
        .smooth_and_flatten(FieldView::F32(fields[0].view()), &p)
        .unwrap();
    let kept = out.kept.unwrap();
    let other = backend.gpu();
    let e = other
        .gaussian_blur_kept(&kept, 1.0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not kept by this device"), "{e}");
    let e = CpuBackend
        .gaussian_blur_kept(&kept, 1.0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("keeps no images"), "{e}");
    let foreign = ipscope_core::backend::KeptImage::new(3, 2, std::sync::Arc::new(7u32));
    assert!(g.gaussian_blur_kept(&foreign, 1.0).is_err());
    assert_eq!(kept.clone(), kept);
    assert_ne!(foreign, kept);
    // Where the opening is not finite nothing is subtracted: a block of +inf wider than the
    // window opens to +inf (inf − inf would be NaN), NaN pixels stay NaN.
    let mut img = fields[0].clone();
    for r in 10..22 {
        for c in 30..42 {
            img.set(r, c, f32::INFINITY);
        }
    }
    img.set(40, 5, f32::NAN);
    let p = FlattenParams {
        sigma: 0.0,
        radius: 4,
        keep_field: true,
        keep_on_backend: false,
        threshold: FlatThreshold::Otsu,
    };
    let out = g
        .smooth_and_flatten(FieldView::F32(img.view()), &p)
        .unwrap();
    let cpu = smooth_and_flatten_by_stages(&CpuBackend, FieldView::F32(img.view()), &p).unwrap();
    assert_eq!(out.smoothed.get(15, 35), f32::INFINITY);
    assert_same_values(&out.smoothed, &cpu.smoothed, "infinite block");
    assert_eq!(out.threshold, cpu.threshold, "infinite block");
    // No threshold for a constant or empty field, as on the CPU.
    for img in [Image::new(20, 10, 0.5f32), Image::new(0, 3, 0f32)] {
        for threshold in [FlatThreshold::Otsu, FlatThreshold::Li] {
            let p = FlattenParams {
                sigma: 1.0,
                radius: 3,
                keep_field: true,
                keep_on_backend: false,
                threshold,
            };
            let out = g
                .smooth_and_flatten(FieldView::F32(img.view()), &p)
                .unwrap();
            let cpu =
                smooth_and_flatten_by_stages(&CpuBackend, FieldView::F32(img.view()), &p).unwrap();
            assert_eq!(out.threshold, None);
            assert_eq!(out, cpu);
        }
    }
}

#[test]
fn kept_field_blurs_within_a_mask_as_the_field_read_back() {
    let Some(g) = gpu() else { return };
    let backend = GpuBackend::from_gpu(Gpu::new().unwrap());
    // A field large enough for the wanted pixels to come back as runs, and a small one.
    for (w, h) in [(300, 260), (90, 70)] {
        let fg = blobs(w, h, 31, 2.5, 0.01);
        let grain = noise(w, h, 32);
        let field = Image::from_fn(w, h, |r, c| {
            0.2 * grain.get(r, c) + if fg.get(r, c) { 0.7 } else { 0.0 }
        });
        let p = KEPT;
        let out = g
            .smooth_and_flatten(FieldView::F32(field.view()), &p)
            .unwrap();
        let kept = out.kept.unwrap();
        let staged = smooth_and_flatten_by_stages(&backend, FieldView::F32(field.view()), &p)
            .unwrap()
            .field
            .unwrap();
        let wide = blobs(w + 20, h + 10, 33, 2.0, 0.0);
        let masks = [
            fg.clone(),
            Image::new(w, h, false),
            Image::new(w, h, true),
            wide.view().crop(5, 12, h, w).unwrap().to_image(),
        ];
        for (k, m) in masks.iter().enumerate() {
            for s in [0.0f32, 2.5] {
                let want = g.gaussian_blur(staged.view(), s).unwrap();
                let want =
                    Image::from_fn(w, h, |r, c| if m.get(r, c) { want.get(r, c) } else { 0.0 });
                let got = g.gaussian_blur_kept_within(&kept, s, m.view()).unwrap();
                assert_same_values(&got, &want, &format!("{w}x{h} mask {k} σ {s}"));
            }
        }
        // The crop as a view, and a mask of another size.
        let view = wide.view().crop(5, 12, h, w).unwrap();
        let got = g.gaussian_blur_kept_within(&kept, 1.0, view).unwrap();
        let want = g
            .gaussian_blur_kept_within(&kept, 1.0, masks[3].view())
            .unwrap();
        assert_same_values(&got, &want, "view");
        let other = Image::new(w, h + 1, true);
        assert!(g
            .gaussian_blur_kept_within(&kept, 1.0, other.view())
            .is_err());
    }
}

#[test]
fn smooth_and_flatten_beyond_one_binding_runs_the_stages_tiled() {
    if gpu().is_none() {
        return;
    }
    let Ok(mut small) = Gpu::new() else { return };
    small.set_max_binding_for_tests(8192);
    let img = &segment_fields()[2];
    let p = FlattenParams {
        sigma: 1.0,
        radius: 5,
        keep_field: true,
        keep_on_backend: false,
        threshold: FlatThreshold::Li,
    };
    assert!(!small.flatten_resident_fits(img.width(), img.height(), 5));
    assert!(small
        .smooth_and_flatten(FieldView::F32(img.view()), &p)
        .is_err());
    let whole = gpu()
        .unwrap()
        .smooth_and_flatten(FieldView::F32(img.view()), &p)
        .unwrap();
    let tiled = GpuBackend::from_gpu(small)
        .smooth_and_flatten(FieldView::F32(img.view()), &p)
        .unwrap();
    assert_same_values(&tiled.smoothed, &whole.smoothed, "tiled");
    assert_eq!(tiled.threshold, whole.threshold);
}
