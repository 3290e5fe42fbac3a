//! Synthetic iPSC demo plate: the bundled demo of the product and the fixture of the
//! end-to-end tests.
//!
//! [`generate`] writes an ImageXpress-style plate (`<plate>_<well>_s<site>_w<ch>.tif`, u16,
//! 12-bit range) of two channels, `w1` = Hoechst (nuclear DNA) and `w2` = OCT4 (nuclear
//! pluripotency marker), together with its exact truth: one label image per field holding
//! every nucleus's pixel set, the per-well counts and OCT4-positive fractions, and the
//! dose-response model that produced them.
//!
//! Each field is a few iPSC colonies, each a packed cluster of 5–60 elliptical nuclei grown
//! outward from a seed nucleus (Eden growth with a compactness preference), some of them
//! touching, plus a few scattered single cells. Pixels are rendered on a padded canvas,
//! blurred by a Gaussian point-spread function, multiplied by a vignetted illumination field
//! and given shot and read noise (Gaussian approximation of Poisson).
//!
//! The plate design is a dose-response experiment on the OCT4-positive fraction following
//! drc's four-parameter log-logistic model `LL.4` (Ritz et al. 2015, *Dose-Response Analysis
//! Using R*, PLoS ONE 10:e0146021): `f(x) = c + (d − c) / (1 + exp(b (ln x − ln e)))`.
//!
//! Same parameters give byte-identical files for any thread count: every field draws from
//! its own xoshiro256** streams seeded from (seed, row, column, site), and per-well sums are
//! made in a fixed order.

use std::f64::consts::PI;
use std::fs;
use std::path::{Path, PathBuf};

use ipscope_image::{Image, Labels};
use rayon::prelude::*;
use serde::Serialize;

use crate::{Error, Result};

/// Version of the generator's image model; bumped whenever the same parameters would give
/// different pixels or truth.
pub const GENERATOR_VERSION: u32 = 1;

/// Raw channel ids and the names to give them with `--channel`.
pub const CHANNELS: [(&str, &str); 2] = [("w1", "Hoechst"), ("w2", "OCT4")];

/// Largest value any pixel takes (12-bit camera).
pub const MAX_VALUE: u16 = 4095;

/// Smallest in-field area (pixels) of a nucleus cut by the field border that truth keeps.
pub const MIN_TRUTH_AREA: u32 = 20;

/// Parameters of [`generate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DemoParams {
    /// 96 (8 × 12) or 384 (16 × 24).
    pub wells: u32,
    /// Fields per well, 1..=16.
    pub sites: u32,
    /// Seed of every random draw.
    pub seed: u64,
    /// Field width = height in pixels, 64..=4096.
    pub size: usize,
    /// Plate name used in file names: letters, digits and `-`.
    pub plate_id: String,
}

impl Default for DemoParams {
    fn default() -> Self {
        DemoParams {
            wells: 96,
            sites: 2,
            seed: 1,
            size: 256,
            plate_id: "DEMO01".to_string(),
        }
    }
}

/// drc's four-parameter log-logistic model `LL.4`:
/// `f(x) = c + (d − c) / (1 + exp(b (ln x − ln e)))`; `b > 0` means the response falls with dose.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Ll4 {
    /// Hill slope (drc's sign convention).
    pub b: f64,
    /// Bottom asymptote.
    pub c: f64,
    /// Top asymptote.
    pub d: f64,
    /// EC50 (µM).
    pub e: f64,
}

impl Ll4 {
    /// The model at concentration `x` (µM); `x <= 0` gives the top `d`.
    pub fn eval(&self, x: f64) -> f64 {
        if x <= 0.0 {
            return self.d;
        }
        self.c + (self.d - self.c) / (1.0 + (self.b * (x.ln() - self.e.ln())).exp())
    }
}

/// A compound of the demo's dilution series and its true curve on the OCT4-positive fraction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DemoCompound {
    pub name: String,
    pub curve: Ll4,
}

/// The two test compounds: CMPD-A (EC50 1 µM, slope 1.2) and CMPD-B (EC50 0.1 µM, slope 1.5).
pub fn compounds() -> Vec<DemoCompound> {
    vec![
        DemoCompound {
            name: "CMPD-A".to_string(),
            curve: Ll4 {
                b: 1.2,
                c: 0.05,
                d: 0.90,
                e: 1.0,
            },
        },
        DemoCompound {
            name: "CMPD-B".to_string(),
            curve: Ll4 {
                b: 1.5,
                c: 0.05,
                d: 0.90,
                e: 0.1,
            },
        },
    ]
}

/// Negative-control vehicle.
pub const NEGATIVE_COMPOUND: &str = "DMSO";
/// Positive control: a differentiation inducer that drives OCT4 to the curve's bottom.
pub const POSITIVE_COMPOUND: &str = "BMP4";
/// BMP4 concentration in µM (≈ 50 ng/mL).
pub const POSITIVE_CONCENTRATION: f64 = 0.002;
/// Highest concentration of the dilution series (µM).
pub const TOP_CONCENTRATION: f64 = 30.0;
/// Largest fractional loss of nuclei at very high dose (mild toxicity).
pub const TOXICITY_MAX_LOSS: f64 = 0.3;
/// Concentration (µM) at which half of [`TOXICITY_MAX_LOSS`] is reached.
pub const TOXICITY_HALF: f64 = 30.0;

/// Fraction of nuclei kept at concentration `x` µM: `1 − 0.3·x / (x + 30)` (0.85 at 30 µM).
pub fn toxicity_factor(x: f64) -> f64 {
    if x <= 0.0 {
        1.0
    } else {
        1.0 - TOXICITY_MAX_LOSS * x / (x + TOXICITY_HALF)
    }
}

/// A well's role in the plate design.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Negative,
    Positive,
    Treated,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Negative => "negative",
            Role::Positive => "positive",
            Role::Treated => "treated",
        }
    }
}

/// What one well received and the model's expectation for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WellDesign {
    /// `B02`-style name.
    pub well: String,
    /// Row index, 0 = A.
    pub row: u32,
    /// Column number as in the name, 1-based.
    pub column: u32,
    pub compound: String,
    /// µM; 0 for the vehicle.
    pub concentration: f64,
    pub role: Role,
    /// Model probability that a nucleus is OCT4-positive.
    pub expected_fraction: f64,
    /// Multiplier on the number of nuclei (mild toxicity of treated wells).
    pub count_factor: f64,
}

/// Plate geometry: (rows, columns).
fn plate_shape(wells: u32) -> Result<(u32, u32)> {
    match wells {
        96 => Ok((8, 12)),
        384 => Ok((16, 24)),
        other => Err(Error::Invalid(format!(
            "demo plate must have 96 or 384 wells, not {other}"
        ))),
    }
}

fn validate(params: &DemoParams) -> Result<(u32, u32)> {
    let shape = plate_shape(params.wells)?;
    if !(1..=16).contains(&params.sites) {
        return Err(Error::Invalid(format!(
            "demo sites per well must be 1..=16, not {}",
            params.sites
        )));
    }
    if !(64..=4096).contains(&params.size) {
        return Err(Error::Invalid(format!(
            "demo field size must be 64..=4096 pixels, not {}",
            params.size
        )));
    }
    let id = &params.plate_id;
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(Error::Invalid(format!(
            "demo plate id {id:?} must be 1..=64 ASCII letters, digits or '-' \
             ('_' separates the parts of ImageXpress file names)"
        )));
    }
    Ok(shape)
}

/// `TOP_CONCENTRATION / 10^(steps / per_decade)`, exact for whole decades.
fn dilution(steps: u32, per_decade: u32) -> f64 {
    let decades = 10f64.powi((steps / per_decade) as i32);
    let rest = steps % per_decade;
    let frac = if rest == 0 {
        1.0
    } else {
        10f64.powf(f64::from(rest) / f64::from(per_decade))
    };
    TOP_CONCENTRATION / (decades * frac)
}

/// The plate design, wells in row-major order (A01, A02, …).
///
/// 96 wells: column 1 DMSO (negative), column 12 BMP4 (positive), columns 2–11 a 10-point
/// half-log series rising from 30/10^4.5 µM (column 2) to 30 µM (column 11); rows A–D
/// CMPD-A, rows E–H CMPD-B. 384 wells: columns 1–2 negative, 23–24 positive, columns 3–22 a
/// 20-point quarter-log series up to 30 µM; rows A–H CMPD-A, rows I–P CMPD-B.
pub fn plate_design(params: &DemoParams) -> Result<Vec<WellDesign>> {
    let (rows, cols) = validate(params)?;
    let cmpds = compounds();
    let (neg_cols, points, per_decade) = if params.wells == 96 {
        (1, 10, 2)
    } else {
        (2, 20, 4)
    };
    let mut out = Vec::with_capacity(params.wells as usize);
    for row in 0..rows {
        let cmpd = &cmpds[usize::from(row >= rows / 2)];
        for column in 1..=cols {
            let (compound, concentration, role, expected, factor) = if column <= neg_cols {
                (
                    NEGATIVE_COMPOUND.to_string(),
                    0.0,
                    Role::Negative,
                    cmpd.curve.d,
                    1.0,
                )
            } else if column > cols - neg_cols {
                (
                    POSITIVE_COMPOUND.to_string(),
                    POSITIVE_CONCENTRATION,
                    Role::Positive,
                    cmpd.curve.c,
                    1.0,
                )
            } else {
                let index = column - neg_cols - 1; // 0 = lowest dose
                let x = dilution(points - 1 - index, per_decade);
                (
                    cmpd.name.clone(),
                    x,
                    Role::Treated,
                    cmpd.curve.eval(x),
                    toxicity_factor(x),
                )
            };
            out.push(WellDesign {
                well: well_name(row, column),
                row,
                column,
                compound,
                concentration,
                role,
                expected_fraction: expected,
                count_factor: factor,
            });
        }
    }
    Ok(out)
}

fn well_name(row: u32, column: u32) -> String {
    let letter = char::from(b'A' + row as u8);
    format!("{letter}{column:02}")
}

/// Summary of a generated plate.
#[derive(Debug, Clone)]
pub struct DemoSummary {
    pub dir: PathBuf,
    pub plate_id: String,
    pub wells: u32,
    pub sites: u32,
    pub fields: u32,
    /// Raw images written (fields × channels).
    pub images: u32,
    /// True nuclei over the plate.
    pub nuclei: u64,
    pub layout: PathBuf,
    pub truth_dir: PathBuf,
    /// Raw channel id → name, for `--channel`.
    pub channels: Vec<(String, String)>,
    /// Compound → true EC50 (µM) on the OCT4-positive fraction.
    pub ec50: Vec<(String, f64)>,
    /// The full true curves.
    pub compounds: Vec<DemoCompound>,
}

/// One rendered field and its truth.
#[derive(Debug, Clone)]
pub struct DemoField {
    pub well: String,
    pub site: u32,
    /// `w1`.
    pub hoechst: Image<u16>,
    /// `w2`.
    pub oct4: Image<u16>,
    /// True nuclei, 1..N in raster order of first pixel.
    pub labels: Labels,
    /// `oct4_positive[l - 1]` is the true marker state of label `l`.
    pub oct4_positive: Vec<bool>,
}

impl DemoField {
    pub fn nuclei(&self) -> u32 {
        self.labels.count()
    }
    pub fn positives(&self) -> u32 {
        self.oct4_positive.iter().filter(|&&p| p).count() as u32
    }
}

/// File name of a raw image, e.g. `DEMO01_B02_s1_w1.tif`.
pub fn image_name(plate_id: &str, well: &str, site: u32, channel: &str) -> String {
    format!("{plate_id}_{well}_s{site}_{channel}.tif")
}

/// File name of a truth label image, e.g. `DEMO01_B02_s1_nuclei.tif`.
pub fn label_name(plate_id: &str, well: &str, site: u32) -> String {
    format!("{plate_id}_{well}_s{site}_nuclei.tif")
}

// ---------------------------------------------------------------------------------------
// Random numbers: SplitMix64 seeding, xoshiro256** (Blackman & Vigna 2018), Box–Muller.

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct Rng {
    s: [u64; 4],
    spare: Option<f64>,
}

impl Rng {
    fn new(seed: u64) -> Self {
        let mut sm = seed;
        let s = [
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
        ];
        Rng { s, spare: None }
    }

    /// An independent stream for one field and purpose.
    fn for_field(seed: u64, row: u32, column: u32, site: u32, stream: u64) -> Self {
        let key = (u64::from(row) << 40) | (u64::from(column) << 24) | (u64::from(site) << 8);
        let mut sm = seed ^ 0x1D5C_0DE0_0000_0000;
        let a = splitmix64(&mut sm);
        let mut sm2 = a ^ key ^ stream;
        Rng::new(splitmix64(&mut sm2))
    }

    fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Uniform integer in `lo..=hi`.
    fn int(&mut self, lo: u32, hi: u32) -> u32 {
        let n = u64::from(hi - lo) + 1;
        lo + ((self.uniform() * n as f64) as u64).min(n - 1) as u32
    }

    fn below(&mut self, n: usize) -> usize {
        ((self.uniform() * n as f64) as usize).min(n.saturating_sub(1))
    }

    fn bernoulli(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// Standard normal (Box–Muller, both values used).
    fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (2.0 * PI * u2).sin_cos();
        self.spare = Some(r * s);
        r * c
    }
}

// ---------------------------------------------------------------------------------------
// Geometry: nuclei as ellipses on a padded canvas, with an ownership map.

/// Canvas margin: nuclei may sit partly outside the field, and the blur needs context.
const PAD: usize = 24;
/// Most pixels a new nucleus may share with those already placed.
const MAX_OVERLAP: u32 = 4;
/// Typical nuclear area (px), for sizing colonies.
const NUCLEUS_AREA: f64 = 110.0;

#[derive(Debug, Clone, Copy)]
struct Nucleus {
    cy: f64,
    cx: f64,
    a: f64,
    b: f64,
    theta: f64,
    cos: f64,
    sin: f64,
}

impl Nucleus {
    fn new(cy: f64, cx: f64, a: f64, b: f64, theta: f64) -> Self {
        let (sin, cos) = theta.sin_cos();
        Nucleus {
            cy,
            cx,
            a,
            b,
            theta,
            cos,
            sin,
        }
    }

    fn random_shape(rng: &mut Rng) -> (f64, f64, f64) {
        let a = rng.range(5.0, 8.0);
        let b = (a * rng.range(0.65, 0.95)).max(4.0);
        let theta = rng.range(0.0, PI);
        (a, b, theta)
    }

    /// Squared normalised ellipse radius of pixel centre (r, c): ≤ 1 inside.
    #[inline]
    fn rho2(&self, r: f64, c: f64) -> f64 {
        let dy = r - self.cy;
        let dx = c - self.cx;
        let u = (dx * self.cos + dy * self.sin) / self.a;
        let v = (-dx * self.sin + dy * self.cos) / self.b;
        u * u + v * v
    }

    /// Distance from the centre to the boundary in direction `phi`.
    fn radius_towards(&self, phi: f64) -> f64 {
        let (s, c) = (phi - self.theta).sin_cos();
        self.a * self.b / ((self.b * c).powi(2) + (self.a * s).powi(2)).sqrt()
    }

    /// Half extents (rows, cols) of the bounding box.
    fn half_extents(&self) -> (f64, f64) {
        let ey = ((self.a * self.sin).powi(2) + (self.b * self.cos).powi(2)).sqrt();
        let ex = ((self.a * self.cos).powi(2) + (self.b * self.sin).powi(2)).sqrt();
        (ey, ex)
    }

    /// Bounding box `(r0, r1, c0, c1)` (exclusive ends), or `None` if not fully inside a
    /// `w × h` canvas with one pixel to spare.
    fn bbox(&self, w: usize, h: usize) -> Option<(usize, usize, usize, usize)> {
        let (ey, ex) = self.half_extents();
        let (r0, r1) = ((self.cy - ey).floor(), (self.cy + ey).ceil() + 1.0);
        let (c0, c1) = ((self.cx - ex).floor(), (self.cx + ex).ceil() + 1.0);
        if r0 < 1.0 || c0 < 1.0 || r1 > (h - 1) as f64 || c1 > (w - 1) as f64 {
            return None;
        }
        Some((r0 as usize, r1 as usize, c0 as usize, c1 as usize))
    }
}

struct Canvas {
    w: usize,
    h: usize,
    /// Owner of each pixel: nucleus index + 1, 0 = background.
    occ: Vec<u32>,
    /// Pixels holding a nucleus centre (no nucleus may cover another's centre).
    centre: Vec<bool>,
    nuclei: Vec<Nucleus>,
}

impl Canvas {
    fn new(w: usize, h: usize) -> Self {
        Canvas {
            w,
            h,
            occ: vec![0; w * h],
            centre: vec![false; w * h],
            nuclei: Vec::new(),
        }
    }

    fn centre_index(&self, n: &Nucleus) -> usize {
        n.cy.round() as usize * self.w + n.cx.round() as usize
    }

    /// Whether `n` can be added: inside the canvas, its centre free, no other centre
    /// covered, at most [`MAX_OVERLAP`] shared pixels.
    fn fits(&self, n: &Nucleus) -> bool {
        let Some((r0, r1, c0, c1)) = n.bbox(self.w, self.h) else {
            return false;
        };
        if self.occ[self.centre_index(n)] != 0 {
            return false;
        }
        let mut overlap = 0;
        for r in r0..r1 {
            let row = r * self.w;
            for c in c0..c1 {
                if n.rho2(r as f64, c as f64) <= 1.0 {
                    let p = row + c;
                    if self.centre[p] {
                        return false;
                    }
                    if self.occ[p] != 0 {
                        overlap += 1;
                        if overlap > MAX_OVERLAP {
                            return false;
                        }
                    }
                }
            }
        }
        true
    }

    /// Adds `n` (which must fit); shared pixels go to the nucleus whose centre is nearer in
    /// its own ellipse metric.
    fn commit(&mut self, n: Nucleus) {
        let Some((r0, r1, c0, c1)) = n.bbox(self.w, self.h) else {
            return;
        };
        let id = self.nuclei.len() as u32 + 1;
        for r in r0..r1 {
            let row = r * self.w;
            for c in c0..c1 {
                let rho = n.rho2(r as f64, c as f64);
                if rho <= 1.0 {
                    let p = row + c;
                    let other = self.occ[p];
                    if other == 0 || rho < self.nuclei[other as usize - 1].rho2(r as f64, c as f64)
                    {
                        self.occ[p] = id;
                    }
                }
            }
        }
        let ci = self.centre_index(&n);
        self.centre[ci] = true;
        self.nuclei.push(n);
    }

    fn try_place(&mut self, n: Nucleus) -> bool {
        if self.fits(&n) {
            self.commit(n);
            true
        } else {
            false
        }
    }
}

/// A colony's elliptical footprint, used to prefer compact growth.
struct ColonyShape {
    cy: f64,
    cx: f64,
    cos: f64,
    sin: f64,
    aspect: f64,
}

impl ColonyShape {
    fn distance(&self, y: f64, x: f64) -> f64 {
        let (dy, dx) = (y - self.cy, x - self.cx);
        let u = dx * self.cos + dy * self.sin;
        let v = (-dx * self.sin + dy * self.cos) * self.aspect;
        (u * u + v * v).sqrt()
    }
}

/// Grows a colony of up to `target` nuclei from its centre: each new nucleus sits next to
/// a random member, a small gap (sometimes none: touching) away; of 16 candidates the one
/// nearest the colony centre (plus jitter for ragged edges) that fits is taken.
fn grow_colony(canvas: &mut Canvas, rng: &mut Rng, shape: &ColonyShape, target: usize) {
    let mut members: Vec<usize> = Vec::with_capacity(target);
    for _ in 0..10 {
        let (a, b, theta) = Nucleus::random_shape(rng);
        let n = Nucleus::new(
            shape.cy + rng.range(-3.0, 3.0),
            shape.cx + rng.range(-3.0, 3.0),
            a,
            b,
            theta,
        );
        if canvas.try_place(n) {
            members.push(canvas.nuclei.len() - 1);
            break;
        }
    }
    if members.is_empty() {
        return;
    }
    let mut candidates: Vec<(f64, Nucleus)> = Vec::with_capacity(16);
    while members.len() < target {
        let mut placed = false;
        for _round in 0..3 {
            candidates.clear();
            for _ in 0..16 {
                let parent = canvas.nuclei[members[rng.below(members.len())]];
                let phi = rng.range(0.0, 2.0 * PI);
                let (a, b, theta) = Nucleus::random_shape(rng);
                let probe = Nucleus::new(0.0, 0.0, a, b, theta);
                let gap = rng.range(-1.0, 1.8);
                let d = parent.radius_towards(phi) + probe.radius_towards(phi) + gap;
                let (s, c) = phi.sin_cos();
                let n = Nucleus::new(parent.cy + d * s, parent.cx + d * c, a, b, theta);
                let score = shape.distance(n.cy, n.cx) + rng.range(0.0, 6.0);
                candidates.push((score, n));
            }
            candidates.sort_by(|x, y| x.0.total_cmp(&y.0));
            if let Some(&(_, n)) = candidates.iter().find(|(_, n)| canvas.fits(n)) {
                canvas.commit(n);
                members.push(canvas.nuclei.len() - 1);
                placed = true;
                break;
            }
        }
        if !placed {
            break;
        }
    }
}

/// Places the colonies and scattered single cells of one field.
fn place_nuclei(rng: &mut Rng, size: usize, count_factor: f64) -> Canvas {
    let w = size + 2 * PAD;
    let mut canvas = Canvas::new(w, w);
    let s = size as f64;
    let area_factor = (s / 256.0).powi(2);
    let n_colonies = ((4.0 * area_factor * rng.range(0.75, 1.25)).round() as usize).max(1);
    // Keep a colony from outgrowing a small field.
    let cap = ((s * s * 0.35 / NUCLEUS_AREA) as u32).clamp(5, 60);
    let mut colonies: Vec<(f64, f64, f64)> = Vec::with_capacity(n_colonies);
    for _ in 0..n_colonies {
        let n0 = rng.int(5, 60).min(cap);
        let target = ((f64::from(n0) * count_factor).round() as usize).max(3);
        let radius = (target as f64 * NUCLEUS_AREA / PI).sqrt() * 1.15 + 4.0;
        let mut centre = None;
        for _ in 0..40 {
            let cy = PAD as f64 + rng.range(0.08 * s, 0.92 * s);
            let cx = PAD as f64 + rng.range(0.08 * s, 0.92 * s);
            let clear = colonies.iter().all(|&(oy, ox, or)| {
                ((cy - oy).powi(2) + (cx - ox).powi(2)).sqrt() >= 0.85 * (radius + or)
            });
            if clear {
                centre = Some((cy, cx));
                break;
            }
        }
        let Some((cy, cx)) = centre else { continue };
        colonies.push((cy, cx, radius));
        let (sin, cos) = rng.range(0.0, PI).sin_cos();
        let shape = ColonyShape {
            cy,
            cx,
            cos,
            sin,
            aspect: rng.range(1.0, 1.5),
        };
        grow_colony(&mut canvas, rng, &shape, target);
    }
    // A few isolated cells between colonies.
    let singles = (rng.range(0.0, 3.0) * area_factor * count_factor).round() as usize;
    for _ in 0..singles {
        for _ in 0..20 {
            let (a, b, theta) = Nucleus::random_shape(rng);
            let cy = PAD as f64 + rng.range(0.0, s);
            let cx = PAD as f64 + rng.range(0.0, s);
            let clear = colonies
                .iter()
                .all(|&(oy, ox, or)| ((cy - oy).powi(2) + (cx - ox).powi(2)).sqrt() >= or + 10.0);
            if clear && canvas.try_place(Nucleus::new(cy, cx, a, b, theta)) {
                break;
            }
        }
    }
    canvas
}

// ---------------------------------------------------------------------------------------
// Rendering.

#[derive(Clone, Copy, Default)]
struct Spot {
    dy: f64,
    dx: f64,
    inv_2s2: f64,
    amp: f64,
}

/// `count.0..=count.1` (at most four) Gaussian spots inside a nucleus, in canvas offsets from its centre.
fn random_spots(
    rng: &mut Rng,
    n: &Nucleus,
    count: (u32, u32),
    sigma: (f64, f64),
    amp: (f64, f64),
) -> [Spot; 4] {
    let mut spots = [Spot::default(); 4];
    let count = rng.int(count.0, count.1) as usize;
    for spot in spots.iter_mut().take(count) {
        let rad = 0.6 * rng.uniform().sqrt();
        let ang = rng.range(0.0, 2.0 * PI);
        let (u, v) = (rad * ang.cos() * n.a, rad * ang.sin() * n.b);
        let sg = rng.range(sigma.0, sigma.1);
        *spot = Spot {
            dx: u * n.cos - v * n.sin,
            dy: u * n.sin + v * n.cos,
            inv_2s2: 1.0 / (2.0 * sg * sg),
            amp: rng.range(amp.0, amp.1),
        };
    }
    spots
}

#[inline]
fn spot_sum(spots: &[Spot; 4], dy: f64, dx: f64) -> f64 {
    spots
        .iter()
        .filter(|s| s.amp != 0.0)
        .map(|s| s.amp * (-((dy - s.dy).powi(2) + (dx - s.dx).powi(2)) * s.inv_2s2).exp())
        .sum()
}

/// Draws every nucleus's two-channel signal (above background) on its own pixels.
fn render_signal(canvas: &Canvas, positive: &[bool], rng: &mut Rng) -> (Vec<f32>, Vec<f32>) {
    let (w, h) = (canvas.w, canvas.h);
    let mut hoechst = vec![0f32; w * h];
    let mut oct4 = vec![0f32; w * h];
    for (i, n) in canvas.nuclei.iter().enumerate() {
        let id = i as u32 + 1;
        // Dome profile: shape 0.7 + 0.3 (1 − ρ²) averages 0.85 over the ellipse.
        let peak_h = rng.range(1200.0, 2500.0) / 0.85;
        let chromo = random_spots(rng, n, (2, 4), (0.9, 1.5), (0.08, 0.2));
        // OCT4 is nucleoplasmic: flat profile (mean 0.95), dark nucleoli.
        let level = if positive[i] {
            rng.range(1500.0, 3000.0)
        } else {
            rng.range(150.0, 350.0)
        };
        let peak_o = level / 0.95;
        let nucleoli = random_spots(rng, n, (1, 2), (1.4, 2.2), (-0.45, -0.25));
        let Some((r0, r1, c0, c1)) = n.bbox(w, h) else {
            continue;
        };
        for r in r0..r1 {
            let row = r * w;
            for c in c0..c1 {
                let p = row + c;
                if canvas.occ[p] != id {
                    continue;
                }
                let (y, x) = (r as f64, c as f64);
                let rho2 = n.rho2(y, x);
                let (dy, dx) = (y - n.cy, x - n.cx);
                let th = (0.7 + 0.3 * (1.0 - rho2) + spot_sum(&chromo, dy, dx))
                    * (1.0 + 0.15 * rng.normal());
                let to = (0.9 + 0.1 * (1.0 - rho2) + spot_sum(&nucleoli, dy, dx))
                    * (1.0 + 0.10 * rng.normal());
                hoechst[p] = (peak_h * th).max(0.0) as f32;
                oct4[p] = (peak_o * to).max(0.0) as f32;
            }
        }
    }
    (hoechst, oct4)
}

/// Separable Gaussian blur (σ = 1 px, radius 3) with clamped edges: the microscope's PSF.
fn blur(buf: &mut [f32], tmp: &mut [f32], w: usize, h: usize) {
    const K: [f32; 7] = [
        0.004_433_048,
        0.054_005_582,
        0.242_036_22,
        0.399_050_3,
        0.242_036_22,
        0.054_005_582,
        0.004_433_048,
    ];
    for r in 0..h {
        let src = &buf[r * w..(r + 1) * w];
        let dst = &mut tmp[r * w..(r + 1) * w];
        for (c, out) in dst.iter_mut().enumerate() {
            let mut acc = 0.0;
            for (k, &wk) in K.iter().enumerate() {
                let cc = (c + k).saturating_sub(3).min(w - 1);
                acc += wk * src[cc];
            }
            *out = acc;
        }
    }
    for r in 0..h {
        let dst = &mut buf[r * w..(r + 1) * w];
        for (k, &wk) in K.iter().enumerate() {
            let rr = (r + k).saturating_sub(3).min(h - 1);
            let src = &tmp[rr * w..(rr + 1) * w];
            if k == 0 {
                for (o, &s) in dst.iter_mut().zip(src) {
                    *o = wk * s;
                }
            } else {
                for (o, &s) in dst.iter_mut().zip(src) {
                    *o += wk * s;
                }
            }
        }
    }
}

/// Smooth background, vignetting and camera noise on the field's part of the canvas.
struct Optics {
    vignetting: f64,
    tilt_y: f64,
    tilt_x: f64,
    background: [f64; 2],
}

/// Camera gain (ADU per photo-electron) for shot noise, and read noise (ADU).
const GAIN: f64 = 0.4;
const READ_NOISE: f64 = 3.0;

fn compose(
    signal: &[f32],
    optics: &Optics,
    ch: usize,
    size: usize,
    rng: &mut Rng,
) -> Result<Image<u16>> {
    let w = size + 2 * PAD;
    let half = (size as f64 - 1.0) / 2.0;
    let norm = 1.0 / (2.0 * half * half).max(1.0);
    let mut data = Vec::with_capacity(size * size);
    for r in 0..size {
        let fy = r as f64 / size as f64 - 0.5;
        let dy2 = (r as f64 - half).powi(2);
        let row = &signal[(r + PAD) * w + PAD..(r + PAD) * w + PAD + size];
        for (c, &sig) in row.iter().enumerate() {
            let fx = c as f64 / size as f64 - 0.5;
            let rr = (dy2 + (c as f64 - half).powi(2)) * norm;
            let illum = 1.0 - optics.vignetting * rr;
            let bg = optics.background[ch] * (1.0 + optics.tilt_y * fy + optics.tilt_x * fx);
            let mean = illum * (bg + f64::from(sig));
            let sd = (GAIN * mean + READ_NOISE * READ_NOISE).sqrt();
            let v = (mean + sd * rng.normal()).round();
            data.push(v.clamp(0.0, f64::from(MAX_VALUE)) as u16);
        }
    }
    Image::from_vec(size, size, data).map_err(|e| Error::Invalid(e.to_string()))
}

/// Truth labels on the field: nuclei with at least [`MIN_TRUTH_AREA`] in-field pixels,
/// relabelled 1..N in raster order of first pixel.
fn truth_labels(canvas: &Canvas, positive: &[bool], size: usize) -> Result<(Labels, Vec<bool>)> {
    let n = canvas.nuclei.len();
    let mut area = vec![0u32; n + 1];
    for r in 0..size {
        let row = (r + PAD) * canvas.w + PAD;
        for &id in &canvas.occ[row..row + size] {
            area[id as usize] += 1;
        }
    }
    let mut map = vec![0u32; n + 1];
    let mut next = 0u32;
    let mut out_positive = Vec::new();
    let mut data = Vec::with_capacity(size * size);
    for r in 0..size {
        let row = (r + PAD) * canvas.w + PAD;
        for &id in &canvas.occ[row..row + size] {
            let id = id as usize;
            if id == 0 || area[id] < MIN_TRUTH_AREA {
                data.push(0);
                continue;
            }
            if map[id] == 0 {
                next += 1;
                map[id] = next;
                out_positive.push(positive[id - 1]);
            }
            data.push(map[id]);
        }
    }
    let image = Image::from_vec(size, size, data).map_err(|e| Error::Invalid(e.to_string()))?;
    Ok((Labels::new(image, next), out_positive))
}

/// Renders one field of `design`'s well; `site` is 1-based.
pub fn render_field(params: &DemoParams, design: &WellDesign, site: u32) -> Result<DemoField> {
    validate(params)?;
    if !(1..=params.sites).contains(&site) {
        return Err(Error::Invalid(format!(
            "demo site {site} is outside 1..={}",
            params.sites
        )));
    }
    let size = params.size;
    let stream = |k| Rng::for_field(params.seed, design.row, design.column, site, k);
    let (mut geo, mut marker, mut look, mut noise) = (stream(1), stream(2), stream(3), stream(4));

    let canvas = place_nuclei(&mut geo, size, design.count_factor);
    let positive: Vec<bool> = (0..canvas.nuclei.len())
        .map(|_| marker.bernoulli(design.expected_fraction))
        .collect();
    let (mut sig_h, mut sig_o) = render_signal(&canvas, &positive, &mut look);
    let mut tmp = vec![0f32; canvas.w * canvas.h];
    blur(&mut sig_h, &mut tmp, canvas.w, canvas.h);
    blur(&mut sig_o, &mut tmp, canvas.w, canvas.h);
    let optics = Optics {
        vignetting: look.range(0.12, 0.2),
        tilt_y: look.range(-0.1, 0.1),
        tilt_x: look.range(-0.1, 0.1),
        background: [look.range(110.0, 170.0), look.range(120.0, 190.0)],
    };
    let hoechst = compose(&sig_h, &optics, 0, size, &mut noise)?;
    let oct4 = compose(&sig_o, &optics, 1, size, &mut noise)?;
    let (labels, oct4_positive) = truth_labels(&canvas, &positive, size)?;
    Ok(DemoField {
        well: design.well.clone(),
        site,
        hoechst,
        oct4,
        labels,
        oct4_positive,
    })
}

// ---------------------------------------------------------------------------------------
// Files.

/// `<plate>_<well>_s<site>_<tail>.tif` with a `A01`-style well and numeric site.
fn is_demo_file_name(name: &str, tail_ok: impl Fn(&str) -> bool) -> bool {
    let Some(stem) = name.strip_suffix(".tif") else {
        return false;
    };
    let parts: Vec<&str> = stem.rsplitn(4, '_').collect();
    let [tail, site, well, plate] = parts[..] else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let wb = well.as_bytes();
    !plate.is_empty()
        && tail_ok(tail)
        && site.strip_prefix('s').is_some_and(digits)
        && wb.len() == 3
        && wb[0].is_ascii_uppercase()
        && wb[1..].iter().all(u8::is_ascii_digit)
}

fn remove_matching(dir: &Path, keep: impl Fn(&str) -> bool) -> Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let is_file = entry
            .file_type()
            .map_err(|e| Error::io(&path, e))?
            .is_file();
        if is_file && entry.file_name().to_str().is_some_and(|n| !keep(n)) {
            fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}

/// Creates `dir`, or accepts it if empty or a previous demo (it has `truth/demo.json`); in
/// a previous demo, the old demo images and truth labels are removed so a smaller plate does
/// not leave stale fields behind. Any other non-empty directory is refused.
fn prepare_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return fs::create_dir_all(dir).map_err(|e| Error::io(dir, e));
    }
    if !dir.is_dir() {
        return Err(Error::Invalid(format!(
            "{} exists and is not a directory",
            dir.display()
        )));
    }
    let mut entries = fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    if entries.next().is_none() {
        return Ok(());
    }
    if !dir.join("truth").join("demo.json").is_file() {
        return Err(Error::Invalid(format!(
            "refusing to write the demo plate into {}: the directory is not empty and is not a \
             previous ipscope demo (no truth/demo.json); use a new or empty directory",
            dir.display()
        )));
    }
    let is_raw = |n: &str| {
        is_demo_file_name(n, |t| {
            t.strip_prefix('w')
                .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        })
    };
    remove_matching(dir, |n| !is_raw(n))?;
    remove_matching(&dir.join("truth").join("labels"), |n| {
        !is_demo_file_name(n, |t| t == "nuclei")
    })
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).map_err(|e| Error::io(path, e))
}

fn layout_csv(design: &[WellDesign]) -> String {
    let mut s =
        String::from("Metadata_Well,Metadata_Compound,Metadata_Concentration,Metadata_Role\n");
    for d in design {
        s.push_str(&format!(
            "{},{},{},{}\n",
            d.well,
            d.compound,
            d.concentration,
            d.role.as_str()
        ));
    }
    s
}

#[derive(Debug, Clone, Copy, Default)]
struct FieldCounts {
    nuclei: u32,
    positives: u32,
}

fn wells_csv(design: &[WellDesign], counts: &[FieldCounts]) -> String {
    let mut s = String::from(
        "Metadata_Well,Metadata_Compound,Metadata_Concentration,Metadata_Role,\
         Count_Nuclei,PositiveFraction_OCT4,ExpectedFraction_OCT4\n",
    );
    for (d, c) in design.iter().zip(counts) {
        let fraction = if c.nuclei == 0 {
            String::new()
        } else {
            format!("{}", f64::from(c.positives) / f64::from(c.nuclei))
        };
        s.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            d.well,
            d.compound,
            d.concentration,
            d.role.as_str(),
            c.nuclei,
            fraction,
            d.expected_fraction
        ));
    }
    s
}

fn demo_json(params: &DemoParams, design: &[WellDesign]) -> Result<String> {
    let channels: Vec<_> = CHANNELS
        .iter()
        .map(|(id, name)| serde_json::json!({ "id": id, "name": name }))
        .collect();
    let cmpds: Vec<_> = compounds()
        .iter()
        .map(|c| {
            serde_json::json!({
                "name": c.name,
                "model": "LL.4",
                "ec50": c.curve.e,
                "hill_b": c.curve.b,
                "top_d": c.curve.d,
                "bottom_c": c.curve.c,
            })
        })
        .collect();
    let concentrations: Vec<f64> = {
        let mut v: Vec<f64> = design
            .iter()
            .filter(|d| d.role == Role::Treated)
            .map(|d| d.concentration)
            .collect();
        v.sort_by(f64::total_cmp);
        v.dedup();
        v
    };
    let value = serde_json::json!({
        "generator": "ipscope demo",
        "generator_version": GENERATOR_VERSION,
        "crate_version": env!("CARGO_PKG_VERSION"),
        "params": params,
        "seed": params.seed,
        "channels": channels,
        "concentration_unit": "uM",
        "response": "OCT4-positive fraction of nuclei",
        "model": "f(x) = c + (d - c) / (1 + exp(b * (ln x - ln e))) (drc LL.4)",
        "compounds": cmpds,
        "controls": {
            "negative": { "compound": NEGATIVE_COMPOUND, "concentration": 0.0,
                          "expected_fraction": "top d of the row's compound" },
            "positive": { "compound": POSITIVE_COMPOUND, "concentration": POSITIVE_CONCENTRATION,
                          "expected_fraction": "bottom c of the row's compound" },
        },
        "series_concentrations": concentrations,
        "toxicity": {
            "model": "nuclei target multiplied by 1 - max_loss * x / (x + half)",
            "max_loss": TOXICITY_MAX_LOSS,
            "half": TOXICITY_HALF,
        },
        "intensity": {
            "bit_depth": 12,
            "max_value": MAX_VALUE,
            "hoechst_nucleus_mean": [1200, 2500],
            "oct4_positive_mean_above_background": [1500, 3000],
            "oct4_negative_mean_above_background": [150, 350],
            "background": { "w1": [110, 170], "w2": [120, 190] },
            "vignetting": [0.12, 0.2],
            "psf_sigma_px": 1.0,
            "gain_adu_per_electron": GAIN,
            "read_noise_adu": READ_NOISE,
        },
        "truth": {
            "labels": "truth/labels/<plate>_<well>_s<site>_nuclei.tif, u16, 1..N raster order",
            "min_area_px": MIN_TRUTH_AREA,
            "max_overlap_px": MAX_OVERLAP,
        },
    });
    serde_json::to_string_pretty(&value)
        .map(|mut s| {
            s.push('\n');
            s
        })
        .map_err(|e| Error::Invalid(format!("cannot serialise demo.json: {e}")))
}

/// The plate's README; it names no absolute path so that it, too, is byte-identical
/// wherever the plate is written.
fn readme(params: &DemoParams) -> String {
    format!(
        "# ipscope demo plate {plate}\n\n\
         A synthetic iPSC plate ({wells} wells × {sites} sites, {size}×{size} px fields, seed \
         {seed}) made by `ipscope demo`. Raw images are ImageXpress-style \
         `<plate>_<well>_s<site>_w<channel>.tif`: `w1` = Hoechst (nuclei), `w2` = OCT4 \
         (pluripotency marker), u16 in the 12-bit range.\n\n\
         Analyse it with (`<dir>` = this directory):\n\n\
         ```sh\n\
         ipscope run <dir> -o OUT --layout <dir>/layout.csv --channel w1=Hoechst --channel w2=OCT4\n\
         ```\n\n\
         `layout.csv` is the plate map (concentrations in µM); `truth/` holds the exact answers \
         (see `truth/README.md`).\n",
        plate = params.plate_id,
        wells = params.wells,
        sites = params.sites,
        size = params.size,
        seed = params.seed,
    )
}

fn truth_readme(params: &DemoParams) -> String {
    let cmpds = compounds();
    let mut curves = String::new();
    for c in &cmpds {
        curves.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            c.name, c.curve.e, c.curve.b, c.curve.d, c.curve.c
        ));
    }
    let design = if params.wells == 96 {
        "96 wells: column 1 = negative control (DMSO, 0 µM), column 12 = positive control \
         (BMP4, 0.002 µM ≈ 50 ng/mL), columns 2–11 = a 10-point half-log series rising from \
         30/10^4.5 µM (column 2) to 30 µM (column 11). Rows A–D receive CMPD-A, rows E–H CMPD-B."
    } else {
        "384 wells: columns 1–2 = negative control (DMSO, 0 µM), columns 23–24 = positive control \
         (BMP4, 0.002 µM ≈ 50 ng/mL), columns 3–22 = a 20-point quarter-log series rising from \
         30/10^4.75 µM (column 3) to 30 µM (column 22). Rows A–H receive CMPD-A, rows I–P CMPD-B."
    };
    format!(
        "# Truth of the ipscope demo plate {plate}\n\n\
         Generator version {version}, seed {seed}. Same parameters give byte-identical files.\n\n\
         ## Plate design\n\n\
         {design}\n\n\
         Concentrations (`Metadata_Concentration`) are in **µM**. Roles: `negative`, `positive`, \
         `treated`.\n\n\
         ## Dose-response model\n\n\
         Each nucleus is OCT4-positive with probability `p(well)`, independently. For treated \
         wells `p` follows drc's LL.4 model `f(x) = c + (d − c) / (1 + exp(b (ln x − ln e)))` \
         (b > 0: the fraction falls with dose); negative controls get the top `d`, positive \
         controls the bottom `c` of their row's compound.\n\n\
         | compound | EC50 e (µM) | hill b | top d | bottom c |\n\
         |---|---|---|---|---|\n\
         {curves}\n\
         Mild toxicity: the number of nuclei a treated well aims for is multiplied by \
         `1 − {tox} · x / (x + {half})` (x in µM; 0.85 at 30 µM). Controls are not affected.\n\n\
         ## Files\n\n\
         - `wells.csv`: per well `Metadata_Well, Metadata_Compound, Metadata_Concentration, \
         Metadata_Role`, `Count_Nuclei` (true nuclei summed over sites), \
         `PositiveFraction_OCT4` (realised fraction = positive nuclei / nuclei; empty if no \
         nuclei) and `ExpectedFraction_OCT4` (model probability p).\n\
         - `labels/<plate>_<well>_s<site>_nuclei.tif`: u16 label image of each field, 0 = \
         background, nuclei numbered 1..N in raster order of their first pixel; each label is \
         exactly the pixel set of one nucleus.\n\
         - `demo.json`: parameters, seed, curves, channel map and the image model's constants.\n\n\
         ## Image model\n\n\
         - Nuclei are filled ellipses (semi-axes 4–8 px, random orientation) grouped in a few \
         colonies per field (5–60 nuclei, packed with gaps of −1 to 1.8 px so some touch) plus \
         a few single cells. A nucleus may share at most {overlap} pixels with others and never \
         covers another's centre; shared pixels belong to the nucleus whose centre is nearer \
         in its own ellipse metric.\n\
         - Nuclei cut by the field border are kept in truth if at least {min_area} of their \
         pixels lie in the field, otherwise dropped from truth (they remain visible).\n\
         - Hoechst (`w1`): domed profile with bright chromocentres and texture, nuclear mean \
         1200–2500 above background before blur. OCT4 (`w2`): flat profile with dark nucleoli; \
         positive nuclei 1500–3000, negative 150–350 above background.\n\
         - Both channels are blurred by a Gaussian PSF (σ = 1 px), so intensity spills a pixel \
         or two past the truth boundary; background 110–190 with a mild tilt, vignetting \
         (12–20 % at the corners), shot noise (gain {gain} ADU/e⁻, Gaussian approximation) and \
         read noise ({read} ADU). Values are clamped to 0..=4095 and never rescaled.\n",
        plate = params.plate_id,
        version = GENERATOR_VERSION,
        seed = params.seed,
        tox = TOXICITY_MAX_LOSS,
        half = TOXICITY_HALF,
        overlap = MAX_OVERLAP,
        min_area = MIN_TRUTH_AREA,
        gain = GAIN,
        read = READ_NOISE,
    )
}

fn write_field(
    dir: &Path,
    labels_dir: &Path,
    params: &DemoParams,
    design: &WellDesign,
    site: u32,
) -> Result<FieldCounts> {
    let field = render_field(params, design, site)?;
    let plate = &params.plate_id;
    let count = field.nuclei();
    let labels16 = field
        .labels
        .image()
        .map(|v| v.min(u32::from(u16::MAX)) as u16);
    if count > u32::from(u16::MAX) {
        return Err(Error::Invalid(format!(
            "field {} s{site} has {count} nuclei, more than a u16 label image holds",
            design.well
        )));
    }
    ipscope_io::write_tiff(
        &dir.join(image_name(plate, &design.well, site, CHANNELS[0].0)),
        field.hoechst.view(),
    )?;
    ipscope_io::write_tiff(
        &dir.join(image_name(plate, &design.well, site, CHANNELS[1].0)),
        field.oct4.view(),
    )?;
    ipscope_io::write_tiff(
        &labels_dir.join(label_name(plate, &design.well, site)),
        labels16.view(),
    )?;
    Ok(FieldCounts {
        nuclei: count,
        positives: field.positives(),
    })
}

/// Writes the demo plate into `dir` (created if needed).
///
/// `dir` must be missing, empty, or a previous demo (it holds `truth/demo.json`): then the
/// old demo images and truth labels are deleted and every other file this function writes
/// is overwritten; other files are left alone. Fields are rendered in parallel; the output
/// does not depend on the number of threads.
pub fn generate(dir: &Path, params: &DemoParams) -> Result<DemoSummary> {
    let design = plate_design(params)?;
    prepare_dir(dir)?;
    let truth_dir = dir.join("truth");
    let labels_dir = truth_dir.join("labels");
    fs::create_dir_all(&labels_dir).map_err(|e| Error::io(&labels_dir, e))?;
    // demo.json first: it marks the directory as a demo should a later step fail.
    write_text(&truth_dir.join("demo.json"), &demo_json(params, &design)?)?;
    let layout = dir.join("layout.csv");
    write_text(&layout, &layout_csv(&design))?;

    let sites = params.sites;
    let fields: Vec<(usize, u32)> = (0..design.len())
        .flat_map(|w| (1..=sites).map(move |s| (w, s)))
        .collect();
    let per_field: Vec<FieldCounts> = fields
        .par_iter()
        .map(|&(w, site)| write_field(dir, &labels_dir, params, &design[w], site))
        .collect::<Result<_>>()?;

    let mut per_well = vec![FieldCounts::default(); design.len()];
    for (&(w, _), c) in fields.iter().zip(&per_field) {
        per_well[w].nuclei += c.nuclei;
        per_well[w].positives += c.positives;
    }
    write_text(&truth_dir.join("wells.csv"), &wells_csv(&design, &per_well))?;
    write_text(&truth_dir.join("README.md"), &truth_readme(params))?;
    write_text(&dir.join("README.md"), &readme(params))?;

    let cmpds = compounds();
    Ok(DemoSummary {
        dir: dir.to_path_buf(),
        plate_id: params.plate_id.clone(),
        wells: params.wells,
        sites,
        fields: fields.len() as u32,
        images: (fields.len() * CHANNELS.len()) as u32,
        nuclei: per_well.iter().map(|c| u64::from(c.nuclei)).sum(),
        layout,
        truth_dir,
        channels: CHANNELS
            .iter()
            .map(|(id, name)| (id.to_string(), name.to_string()))
            .collect(),
        ec50: cmpds.iter().map(|c| (c.name.clone(), c.curve.e)).collect(),
        compounds: cmpds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> DemoParams {
        DemoParams {
            wells: 96,
            sites: 1,
            seed: 7,
            size: 128,
            plate_id: "TEST01".to_string(),
        }
    }

    fn read_csv(path: &Path) -> Vec<Vec<String>> {
        let text = fs::read_to_string(path).unwrap();
        text.lines()
            .map(|l| l.split(',').map(str::to_string).collect())
            .collect()
    }

    #[test]
    fn small_plate_files_truth_and_trend() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("plate");
        let p = small();
        let summary = generate(&dir, &p).unwrap();
        assert_eq!(summary.fields, 96);
        assert_eq!(summary.images, 192);
        assert_eq!(
            summary.channels,
            vec![
                ("w1".to_string(), "Hoechst".to_string()),
                ("w2".to_string(), "OCT4".to_string())
            ]
        );
        let design = plate_design(&p).unwrap();
        for d in &design {
            for ch in ["w1", "w2"] {
                let f = dir.join(image_name("TEST01", &d.well, 1, ch));
                let len = fs::metadata(&f).unwrap().len();
                assert!(len >= 128 * 128 * 2, "{} is {len} bytes", f.display());
            }
            let l = summary
                .truth_dir
                .join("labels")
                .join(label_name("TEST01", &d.well, 1));
            assert!(fs::metadata(&l).unwrap().len() >= 128 * 128 * 2);
        }
        assert!(dir.join("TEST01_B02_s1_w1.tif").is_file());
        assert!(dir.join("README.md").is_file());
        assert!(dir.join("truth/README.md").is_file());
        assert!(dir.join("truth/demo.json").is_file());

        let layout = read_csv(&summary.layout);
        assert_eq!(
            layout[0].join(","),
            "Metadata_Well,Metadata_Compound,Metadata_Concentration,Metadata_Role"
        );
        assert_eq!(layout.len(), 97);
        assert_eq!(layout[1], ["A01", "DMSO", "0", "negative"]);
        assert_eq!(layout[12], ["A12", "BMP4", "0.002", "positive"]);
        assert_eq!(layout[11], ["A11", "CMPD-A", "30", "treated"]);

        let wells = read_csv(&summary.truth_dir.join("wells.csv"));
        assert_eq!(wells.len(), 97);
        assert_eq!(wells[0][4], "Count_Nuclei");
        let mut total = 0u64;
        for (row, d) in wells[1..].iter().zip(&design) {
            assert_eq!(row[0], d.well);
            // Truth labels in memory (same function the generator used) match wells.csv.
            let field = render_field(&p, d, 1).unwrap();
            let count: u32 = row[4].parse().unwrap();
            assert_eq!(field.nuclei(), count, "{}", d.well);
            assert!(count > 0);
            let frac: f64 = row[5].parse().unwrap();
            assert_eq!(frac, f64::from(field.positives()) / f64::from(count));
            let expected: f64 = row[6].parse().unwrap();
            assert_eq!(expected, d.expected_fraction);
            assert!(field.hoechst.as_slice().iter().all(|&v| v <= MAX_VALUE));
            assert!(field.oct4.as_slice().iter().all(|&v| v <= MAX_VALUE));
            total += u64::from(count);
        }
        assert_eq!(total, summary.nuclei);

        // Expected fraction falls with dose for both compounds; controls bracket it.
        for row in ["A", "E"] {
            let get = |col: u32| {
                design
                    .iter()
                    .find(|d| d.well == format!("{row}{col:02}"))
                    .unwrap()
                    .clone()
            };
            let (low, top) = (get(2), get(11));
            assert!(low.concentration < top.concentration);
            assert!(top.expected_fraction < low.expected_fraction);
            assert!(get(12).expected_fraction <= top.expected_fraction);
            assert!(get(1).expected_fraction >= low.expected_fraction);
        }
        // Realised fractions follow too (many nuclei per row: robust to sampling).
        let frac = |col: usize| -> f64 {
            let rows = &wells[1..];
            let sel: Vec<_> = rows
                .iter()
                .filter(|r| r[0].ends_with(&format!("{col:02}")))
                .collect();
            let (n, pos) = sel.iter().fold((0.0, 0.0), |(n, pos), r| {
                let c: f64 = r[4].parse().unwrap();
                let f: f64 = r[5].parse().unwrap();
                (n + c, pos + c * f)
            });
            pos / n
        };
        assert!(
            frac(1) > 0.75 && frac(12) < 0.15,
            "{} {}",
            frac(1),
            frac(12)
        );
    }

    #[test]
    fn fields_look_like_nuclei() {
        let p = DemoParams::default();
        let design = plate_design(&p).unwrap();
        let mut touching = 0;
        let mut pos_means = Vec::new();
        let mut neg_means = Vec::new();
        for d in design.iter().take(4) {
            let f = render_field(&p, d, 1).unwrap();
            let n = f.nuclei() as usize;
            assert!((20..400).contains(&n), "{} nuclei", n);
            let lab = f.labels.image();
            let (w, h) = (lab.width(), lab.height());
            let mut area = vec![0u32; n + 1];
            let mut sum_h = vec![0f64; n + 1];
            let mut sum_o = vec![0f64; n + 1];
            let mut next = 1;
            for r in 0..h {
                for c in 0..w {
                    let l = lab.get(r, c) as usize;
                    if l == 0 {
                        continue;
                    }
                    // Raster order of first pixel.
                    if area[l] == 0 {
                        assert_eq!(l, next);
                        next += 1;
                    }
                    area[l] += 1;
                    sum_h[l] += f64::from(f.hoechst.get(r, c));
                    sum_o[l] += f64::from(f.oct4.get(r, c));
                    if c + 1 < w {
                        let m = lab.get(r, c + 1) as usize;
                        if m != 0 && m != l {
                            touching += 1;
                        }
                    }
                }
            }
            for l in 1..=n {
                assert!(
                    area[l] >= MIN_TRUTH_AREA && area[l] < 260,
                    "area {}",
                    area[l]
                );
                let mh = sum_h[l] / f64::from(area[l]);
                assert!((800.0..3500.0).contains(&mh), "hoechst mean {mh}");
                let mo = sum_o[l] / f64::from(area[l]);
                if f.oct4_positive[l - 1] {
                    pos_means.push(mo);
                } else {
                    neg_means.push(mo);
                }
            }
            // Background is dim.
            let bg: Vec<u16> = lab
                .as_slice()
                .iter()
                .zip(f.hoechst.as_slice())
                .filter(|(&l, _)| l == 0)
                .map(|(_, &v)| v)
                .collect();
            let mut sorted = bg.clone();
            sorted.sort_unstable();
            let median = sorted[sorted.len() / 2];
            assert!((80..=220).contains(&median), "background median {median}");
        }
        assert!(touching > 0, "no touching nuclei");
        let max_neg = neg_means.iter().copied().fold(0.0, f64::max);
        let min_pos = pos_means.iter().copied().fold(f64::MAX, f64::min);
        assert!(!pos_means.is_empty() && !neg_means.is_empty());
        assert!(
            max_neg < min_pos,
            "negative {max_neg} vs positive {min_pos}"
        );
    }

    #[test]
    fn deterministic_for_any_thread_count() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        let p = DemoParams {
            size: 96,
            sites: 2,
            ..DemoParams::default()
        };
        generate(&a, &p).unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        pool.install(|| generate(&b, &p)).unwrap();
        for f in [
            "DEMO01_A01_s1_w1.tif",
            "DEMO01_D07_s2_w2.tif",
            "DEMO01_H12_s1_w1.tif",
            "truth/labels/DEMO01_C05_s2_nuclei.tif",
            "truth/wells.csv",
            "truth/demo.json",
            "layout.csv",
            "README.md",
        ] {
            let (x, y) = (fs::read(a.join(f)).unwrap(), fs::read(b.join(f)).unwrap());
            assert!(x == y, "{f} differs");
        }
        // Another seed gives other pixels.
        let other = DemoParams {
            seed: 2,
            ..p.clone()
        };
        let d = &plate_design(&other).unwrap()[0];
        let f1 = render_field(&p, d, 1).unwrap();
        let f2 = render_field(&other, d, 1).unwrap();
        assert_ne!(f1.hoechst, f2.hoechst);
    }

    #[test]
    fn invalid_params_rejected() {
        let bad = [
            DemoParams {
                wells: 100,
                ..DemoParams::default()
            },
            DemoParams {
                sites: 0,
                ..DemoParams::default()
            },
            DemoParams {
                sites: 17,
                ..DemoParams::default()
            },
            DemoParams {
                size: 32,
                ..DemoParams::default()
            },
            DemoParams {
                size: 5000,
                ..DemoParams::default()
            },
            DemoParams {
                plate_id: String::new(),
                ..DemoParams::default()
            },
            DemoParams {
                plate_id: "A_B".to_string(),
                ..DemoParams::default()
            },
        ];
        let tmp = tempfile::tempdir().unwrap();
        for p in &bad {
            let err = generate(&tmp.path().join("x"), p).unwrap_err();
            assert!(matches!(err, Error::Invalid(_)), "{p:?}: {err}");
        }
        assert!(!tmp.path().join("x").exists());
    }

    #[test]
    fn refuses_foreign_dir_and_refreshes_previous_demo() {
        let tmp = tempfile::tempdir().unwrap();
        let foreign = tmp.path().join("foreign");
        fs::create_dir(&foreign).unwrap();
        fs::write(foreign.join("notes.txt"), "mine").unwrap();
        let err = generate(&foreign, &small()).unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err}");
        assert_eq!(fs::read_dir(&foreign).unwrap().count(), 1);

        let dir = tmp.path().join("demo");
        let two = DemoParams {
            sites: 2,
            size: 64,
            ..small()
        };
        generate(&dir, &two).unwrap();
        fs::write(dir.join("notes.txt"), "mine").unwrap();
        assert!(dir.join("TEST01_A01_s2_w1.tif").is_file());
        let one = DemoParams { sites: 1, ..two };
        generate(&dir, &one).unwrap();
        assert!(dir.join("TEST01_A01_s1_w1.tif").is_file());
        assert!(!dir.join("TEST01_A01_s2_w1.tif").exists());
        assert!(!dir.join("truth/labels/TEST01_A01_s2_nuclei.tif").exists());
        assert!(dir.join("notes.txt").is_file());
    }

    #[test]
    fn design_384_and_curve() {
        let p = DemoParams {
            wells: 384,
            ..DemoParams::default()
        };
        let d = plate_design(&p).unwrap();
        assert_eq!(d.len(), 384);
        assert_eq!(d[0].well, "A01");
        assert_eq!(d[383].well, "P24");
        let roles = |r: Role| d.iter().filter(|w| w.role == r).count();
        assert_eq!(roles(Role::Negative), 32);
        assert_eq!(roles(Role::Positive), 32);
        assert_eq!(roles(Role::Treated), 320);
        assert_eq!(d[21].concentration, 30.0); // A22
        let lowest = 30.0 / 10f64.powf(4.75);
        assert!((d[2].concentration / lowest - 1.0).abs() < 1e-12); // A03
        assert_eq!(d[8 * 24 + 2].compound, "CMPD-B"); // I03
        let c = compounds();
        let f = c[0].curve;
        assert!((f.eval(f.e) - (f.c + f.d) / 2.0).abs() < 1e-12);
        assert_eq!(f.eval(0.0), f.d);
        assert!(f.eval(1e6) < f.c + 1e-3);
        assert_eq!(toxicity_factor(30.0), 0.85);
    }

    #[test]
    #[ignore = "timing: cargo test -p ipscope --lib demo -- --ignored --nocapture"]
    fn full_plate_timing() {
        let tmp = tempfile::tempdir().unwrap();
        let t = std::time::Instant::now();
        let s = generate(tmp.path(), &DemoParams::default()).unwrap();
        eprintln!(
            "{} fields, {} nuclei in {:?}",
            s.fields,
            s.nuclei,
            t.elapsed()
        );
    }
}
