//! segment_nuclei on synthetic fields of round nuclei with a known count.
//!
//! The fields are drawn here (not by a peer tool): discs of 8–20 px diameter, a share of
//! them in touching pairs, blurred like an optical PSF and with Gaussian noise. The count
//! must come out within a few percent, and each pair must be split.

use ipscope_core::ops::measure::measure_shape;
use ipscope_core::{segment_nuclei, DeclumpMethod, NucleiParams};
use ipscope_image::Image;

/// A small deterministic generator (SplitMix64) so the test needs no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform().max(1e-300), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

struct Disc {
    r: f64,
    c: f64,
    radius: f64,
}

/// Places `n` discs with radii in `radii`, `pair_share` of them as touching pairs, with a
/// gap of at least 3 px between unrelated discs.
fn place(
    rng: &mut Rng,
    (w, h): (usize, usize),
    n: usize,
    radii: (f64, f64),
    pair_share: f64,
) -> (Vec<Disc>, usize) {
    let radius_of = |rng: &mut Rng| radii.0 + rng.uniform() * (radii.1 - radii.0);
    let mut discs: Vec<Disc> = Vec::new();
    let mut pairs = 0;
    let fits = |discs: &[Disc], d: &Disc, skip: Option<usize>| {
        d.r - d.radius > 2.0
            && d.c - d.radius > 2.0
            && d.r + d.radius < h as f64 - 3.0
            && d.c + d.radius < w as f64 - 3.0
            && discs.iter().enumerate().all(|(i, o)| {
                Some(i) == skip
                    || ((o.r - d.r).powi(2) + (o.c - d.c).powi(2)).sqrt()
                        > o.radius + d.radius + 3.0
            })
    };
    let mut tries = 0;
    while discs.len() < n && tries < 200_000 {
        tries += 1;
        let radius = radius_of(rng);
        let d = Disc {
            r: rng.uniform() * h as f64,
            c: rng.uniform() * w as f64,
            radius,
        };
        if !fits(&discs, &d, None) {
            continue;
        }
        if discs.len() + 2 <= n && rng.uniform() < pair_share {
            // A partner touching it: centres one radius sum apart, edges just meeting.
            let r2 = radius_of(rng);
            let a = rng.uniform() * std::f64::consts::TAU;
            let dist = radius + r2;
            let p = Disc {
                r: d.r + dist * a.sin(),
                c: d.c + dist * a.cos(),
                radius: r2,
            };
            if !fits(&discs, &p, None) {
                continue;
            }
            discs.push(d);
            discs.push(p);
            pairs += 1;
        } else {
            discs.push(d);
        }
    }
    (discs, pairs)
}

/// Renders discs (anti-aliased edge), blurs by a 1.2 px PSF and adds noise, as u16.
fn render(rng: &mut Rng, w: usize, h: usize, discs: &[Disc], noise: f64) -> Image<u16> {
    let mut img = Image::new(w, h, 0.0f32);
    for d in discs {
        let (r0, r1) = (
            (d.r - d.radius - 2.0).max(0.0) as usize,
            (d.r + d.radius + 2.0) as usize,
        );
        let (c0, c1) = (
            (d.c - d.radius - 2.0).max(0.0) as usize,
            (d.c + d.radius + 2.0) as usize,
        );
        let brightness = 0.7 + 0.3 * rng.uniform();
        for r in r0..r1.min(h) {
            for c in c0..c1.min(w) {
                let dist = ((r as f64 - d.r).powi(2) + (c as f64 - d.c).powi(2)).sqrt();
                let cover = (d.radius + 0.5 - dist).clamp(0.0, 1.0) * brightness;
                let v = img.get(r, c).max(cover as f32);
                img.set(r, c, v);
            }
        }
    }
    let psf = ipscope_core::ops::filter::gaussian_blur(img.view(), 1.2);
    psf.map(|v| {
        let x = 2000.0 + f64::from(v) * 28000.0 + rng.normal() * noise;
        x.clamp(0.0, 65535.0) as u16
    })
}

/// Parameters for 8–20 px nuclei. The size filter is exact, as CellProfiler's: blur shrinks
/// the half-maximum contour of an 8 px nucleus below π·4² px, so the minimum diameter must
/// sit below the smallest expected nucleus (with the default 8 px, 2–4 % of these fields'
/// smallest nuclei are dropped).
fn params_8_to_20() -> NucleiParams {
    NucleiParams {
        min_diameter: 6.0,
        ..shape()
    }
}

/// These fields hold flat, evenly bright discs with pixel noise: the case shape-based
/// declumping is for (intensity declumping is exercised on the domed nuclei of the demo
/// plate by the CLI's end-to-end test).
fn shape() -> NucleiParams {
    NucleiParams {
        declump_method: DeclumpMethod::Shape,
        ..NucleiParams::default()
    }
}

fn count_field(
    seed: u64,
    radii: (f64, f64),
    noise: f64,
    params: &NucleiParams,
) -> (usize, usize, usize) {
    let mut rng = Rng(seed);
    let (w, h) = (512, 512);
    let (discs, pairs) = place(&mut rng, (w, h), 220, radii, 0.35);
    let img = render(&mut rng, w, h, &discs, noise);
    let res = segment_nuclei(img.view(), params);
    (discs.len(), pairs, res.labels.count() as usize)
}

fn assert_counts(radii: (f64, f64), params: &NucleiParams) {
    for (seed, noise) in [(1u64, 800.0), (2, 1500.0), (3, 2500.0), (4, 4000.0)] {
        let (truth, pairs, found) = count_field(seed, radii, noise, params);
        let err = (found as f64 - truth as f64).abs() / truth as f64;
        eprintln!("seed {seed}: {truth} nuclei ({pairs} touching pairs), found {found}");
        assert_eq!(truth, 220);
        assert!(pairs >= 20, "the field should hold touching pairs");
        assert!(err <= 0.02, "seed {seed}: {truth} nuclei, found {found}");
    }
}

#[test]
fn counts_touching_nuclei_of_8_to_20_px_within_2_percent() {
    assert_counts((4.0, 10.0), &params_8_to_20());
}

#[test]
fn counts_touching_nuclei_of_10_to_20_px_with_default_shape_params() {
    assert_counts((5.0, 10.0), &shape());
}

#[test]
fn touching_pairs_are_split_and_centres_land_in_their_discs() {
    let mut rng = Rng(7);
    let (w, h) = (256, 256);
    let (discs, pairs) = place(&mut rng, (w, h), 60, (4.0, 10.0), 1.0);
    assert!(pairs >= 25);
    let img = render(&mut rng, w, h, &discs, 1000.0);
    let res = segment_nuclei(img.view(), &params_8_to_20());
    let shapes = measure_shape(&res.labels);
    // Every disc holds exactly one object centre, bar at most one miss.
    let wrong = discs
        .iter()
        .filter(|d| {
            shapes
                .iter()
                .filter(|s| {
                    (s.center_y - d.r).powi(2) + (s.center_x - d.c).powi(2) < d.radius.powi(2)
                })
                .count()
                != 1
        })
        .count();
    eprintln!(
        "{} discs, {} objects, {wrong} discs without exactly one centre",
        discs.len(),
        shapes.len()
    );
    assert!(
        wrong <= 1,
        "{wrong} discs without exactly one object centre"
    );
}

#[test]
fn a_dense_2048_field_is_counted_within_two_percent() {
    // Speed is measured by the benches, not here; this checks the count at full field size.
    let mut rng = Rng(99);
    let (w, h) = (2048, 2048);
    let (discs, _) = place(&mut rng, (w, h), 1500, (4.0, 10.0), 0.35);
    let img = render(&mut rng, w, h, &discs, 1500.0);
    let res = segment_nuclei(img.view(), &params_8_to_20());
    let found = res.labels.count() as usize;
    eprintln!("2048x2048, {} nuclei: found {found}", discs.len());
    let err = (found as f64 - discs.len() as f64).abs() / discs.len() as f64;
    assert!(err <= 0.02, "found {found} of {}", discs.len());
}
