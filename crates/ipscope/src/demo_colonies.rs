//! Synthetic iPSC colony plate with known colonies, classes and OCT4 fractions: the fixture
//! of the colony assay (`ipscope demo --kind colonies`).
//!
//! Every field holds colonies of three kinds, each drawn as a region (its truth mask) filled
//! with nuclei on a jittered hexagonal lattice:
//!
//! * **undifferentiated**: round (radius 36–52 px, outline harmonics ≤ 3 %), densely packed
//!   small nuclei (radius 4.3–5.0 px, lattice spacing 12.5 px), bright OCT4 in the positive
//!   nuclei, a bright halo at the sharp edge in brightfield — the compact, round, sharp-edged,
//!   tightly packed colony of the culture-QC literature (see `docs/colonies.md`);
//! * **differentiating**: larger, irregular outline (radius 48–64 px, harmonics 2, 3 and 5
//!   with summed amplitude about 0.45), loosely packed larger nuclei (radius 6.0–7.0 px,
//!   spacing 19 px, 5 % of lattice sites empty), dimmer OCT4, no halo;
//! * **debris**: a few small bright fragments in a disk of radius 8–10 px (class
//!   `too_small`).
//!
//! Channels: `w1` DNA, `w2` OCT4 (nuclear), `w3` brightfield (textured colonies on a flat,
//! slightly vignetted background), 12-bit values in `u16` TIFFs.
//!
//! A compound series lowers the OCT4-positive fraction with a four-parameter log-logistic
//! curve of known EC50 ([`EC50`]): every nucleus of a colony is OCT4-positive with
//! probability [`expected_fraction`] of its well's concentration, independent of the colony
//! class (debris is always negative), and the share of differentiating colonies rises as the
//! fraction falls. The truth per well is the count actually drawn.
//!
//! Truth next to the plate (`truth/`): colony label images per field (`labels/`, u16, objects
//! numbered in raster order), `colonies.csv` (one row per drawn colony: class, centre, area,
//! nuclei, OCT4-positive nuclei), `wells.csv` (nuclei, positive nuclei and % OCT4-positive per
//! well) and `demo.json` (the curve: EC50, top, bottom, Hill slope). Same seed, same bytes,
//! for any thread count: each field draws from its own SplitMix64 stream.

use std::fs;
use std::path::Path;

use ipscope_image::{Image, Labels};
use rayon::prelude::*;

use crate::{Error, Result};

/// Raw channel ids and the names to give them with `--channel`.
pub const CHANNELS: [(&str, &str); 3] = [("w1", "DNA"), ("w2", "OCT4"), ("w3", "Brightfield")];

/// EC50 (µM) of the OCT4-positive fraction of the compound series.
pub const EC50: f64 = 1.0;
/// OCT4-positive fraction without compound.
pub const TOP: f64 = 0.9;
/// OCT4-positive fraction at saturating compound.
pub const BOTTOM: f64 = 0.1;
/// Hill slope of the fall (drc's `b` is its negative for a decreasing curve).
pub const HILL: f64 = 1.5;
/// The compound of the series.
pub const COMPOUND: &str = "DIFF1";

/// Expected OCT4-positive fraction at `concentration` µM (0 = no compound).
pub fn expected_fraction(concentration: f64) -> f64 {
    if concentration <= 0.0 {
        return TOP;
    }
    BOTTOM + (TOP - BOTTOM) / (1.0 + (concentration / EC50).powf(HILL))
}

/// Class of a drawn colony; the names are those of the rule-based grades.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColonyClass {
    Undifferentiated,
    Differentiating,
    Debris,
}

impl ColonyClass {
    /// `undifferentiated`, `differentiating` or `too_small` (the grade names).
    pub fn as_str(self) -> &'static str {
        match self {
            ColonyClass::Undifferentiated => "undifferentiated",
            ColonyClass::Differentiating => "differentiating",
            ColonyClass::Debris => "too_small",
        }
    }
}

/// Parameters of [`generate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColonyDemoParams {
    /// Plate format, 96 or 384 (the series occupies rows B and C, columns 1–12, of either).
    pub wells: u32,
    /// Fields per well, 1..=4.
    pub sites: u32,
    /// Field width = height, 256..=2048.
    pub size: usize,
    pub seed: u64,
    pub plate_id: String,
}

impl Default for ColonyDemoParams {
    fn default() -> Self {
        ColonyDemoParams {
            wells: 96,
            sites: 1,
            size: 512,
            seed: 1,
            plate_id: "COLONY1".to_string(),
        }
    }
}

/// One well of the plate.
#[derive(Debug, Clone, PartialEq)]
pub struct ColonyWell {
    pub well: String,
    pub compound: String,
    /// µM; 0 for the negative control.
    pub concentration: f64,
    /// `negative`, `positive` or `treated` (as the iPSC demo).
    pub role: &'static str,
    /// Row index (0 = A) and column (1-based), for the field seeds.
    pub row: u32,
    pub column: u32,
}

/// Column 1: DMSO (negative control); columns 2–11: the compound in 3-fold steps from
/// 30 µM down; column 12: the compound at 100 µM (positive control). Rows B and C are
/// replicates.
pub fn plate_design(params: &ColonyDemoParams) -> Result<Vec<ColonyWell>> {
    if params.wells != 96 && params.wells != 384 {
        return Err(Error::Invalid(format!(
            "colony demo: plate format must be 96 or 384 wells, got {}",
            params.wells
        )));
    }
    if !(1..=4).contains(&params.sites) || !(256..=2048).contains(&params.size) {
        return Err(Error::Invalid(format!(
            "colony demo: sites must be 1..=4 (got {}), size 256..=2048 (got {})",
            params.sites, params.size
        )));
    }
    if params.plate_id.is_empty()
        || !params
            .plate_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(Error::Invalid(format!(
            "colony demo: plate id {:?} must be letters, digits and '-'",
            params.plate_id
        )));
    }
    let mut out = Vec::new();
    for row in 1..=2u32 {
        for column in 1..=12u32 {
            let (compound, concentration, role) = match column {
                1 => ("DMSO", 0.0, "negative"),
                12 => (COMPOUND, 100.0, "positive"),
                c => (COMPOUND, 30.0 / 3f64.powi(c as i32 - 2), "treated"),
            };
            out.push(ColonyWell {
                well: format!("{}{column:02}", (b'A' + row as u8) as char),
                compound: compound.to_string(),
                concentration,
                role,
                row,
                column,
            });
        }
    }
    Ok(out)
}

/// One drawn colony.
#[derive(Debug, Clone, PartialEq)]
pub struct TruthColony {
    /// Its value in the field's truth label image.
    pub label: u32,
    pub class: ColonyClass,
    /// Centre of the drawn region (row, col).
    pub center: (f64, f64),
    /// Pixels of the drawn region.
    pub area: u64,
    pub nuclei: u32,
    pub positives: u32,
}

/// One generated field and its truth.
#[derive(Debug, Clone, PartialEq)]
pub struct ColonyField {
    pub dna: Image<u16>,
    pub oct4: Image<u16>,
    pub brightfield: Image<u16>,
    /// Truth colony regions, `1..=N` in raster order of first pixel.
    pub labels: Labels,
    pub colonies: Vec<TruthColony>,
}

impl ColonyField {
    /// Drawn nuclei (debris fragments included).
    pub fn nuclei(&self) -> u32 {
        self.colonies.iter().map(|c| c.nuclei).sum()
    }
    /// Drawn OCT4-positive nuclei.
    pub fn positives(&self) -> u32 {
        self.colonies.iter().map(|c| c.positives).sum()
    }
}

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed ^ 0x636F_6C6F_6E79_0001)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// Seed of one field, from the plate seed, the well's row and column and the site.
pub fn field_seed(seed: u64, row: u32, column: u32, site: u32) -> u64 {
    seed.wrapping_mul(0x0000_0100_0000_01B3)
        .wrapping_add(u64::from(row) * 10_007)
        .wrapping_add(u64::from(column) * 101)
        .wrapping_add(u64::from(site))
}

/// A star-shaped outline: `r(φ) = r0 (1 + Σ a_k cos(kφ + θ_k))`.
struct Shape {
    cy: f64,
    cx: f64,
    r0: f64,
    harmonics: Vec<(f64, f64, f64)>,
}

impl Shape {
    fn radius(&self, phi: f64) -> f64 {
        let s: f64 = self
            .harmonics
            .iter()
            .map(|&(k, a, t)| a * (k * phi + t).cos())
            .sum();
        self.r0 * (1.0 + s)
    }
    fn max_radius(&self) -> f64 {
        self.r0 * (1.0 + self.harmonics.iter().map(|h| h.1.abs()).sum::<f64>())
    }
    /// How far inside the outline (along the ray from the centre) the point lies.
    fn depth(&self, y: f64, x: f64) -> f64 {
        let (dy, dx) = (y - self.cy, x - self.cx);
        self.radius(dy.atan2(dx)) - (dy * dy + dx * dx).sqrt()
    }
}

struct Nucleus {
    y: f64,
    x: f64,
    r: f64,
    dna: f64,
    oct4: f64,
}

const BACKGROUND: f64 = 100.0;
const NOISE: f64 = 10.0;
const BF_LEVEL: f64 = 2000.0;

fn shape_for(class: ColonyClass, rng: &mut Rng, cy: f64, cx: f64) -> Shape {
    let pi2 = 2.0 * std::f64::consts::PI;
    match class {
        ColonyClass::Undifferentiated => Shape {
            cy,
            cx,
            r0: rng.range(36.0, 52.0),
            harmonics: vec![
                (2.0, rng.range(0.0, 0.03), rng.range(0.0, pi2)),
                (3.0, rng.range(0.0, 0.015), rng.range(0.0, pi2)),
            ],
        },
        ColonyClass::Differentiating => Shape {
            cy,
            cx,
            r0: rng.range(48.0, 64.0),
            harmonics: vec![
                (2.0, rng.range(0.12, 0.2), rng.range(0.0, pi2)),
                (3.0, rng.range(0.1, 0.18), rng.range(0.0, pi2)),
                (5.0, rng.range(0.06, 0.12), rng.range(0.0, pi2)),
            ],
        },
        ColonyClass::Debris => Shape {
            cy,
            cx,
            r0: rng.range(8.0, 10.0),
            harmonics: Vec::new(),
        },
    }
}

/// Nuclei on a jittered hexagonal lattice, kept where their centre lies inside the outline.
fn fill_nuclei(class: ColonyClass, shape: &Shape, rng: &mut Rng, fraction: f64) -> Vec<Nucleus> {
    let (spacing, r_lo, r_hi, jitter, empty) = match class {
        ColonyClass::Undifferentiated => (12.5, 4.3, 5.0, 0.5, 0.0),
        ColonyClass::Differentiating => (19.0, 6.0, 7.0, 0.8, 0.05),
        ColonyClass::Debris => (8.5, 3.2, 3.8, 0.3, 0.0),
    };
    let rot = rng.range(0.0, std::f64::consts::PI / 3.0);
    let (cos, sin) = (rot.cos(), rot.sin());
    let (oy, ox) = (rng.range(0.0, spacing), rng.range(0.0, spacing));
    let reach = shape.max_radius() + spacing;
    let n = (reach / spacing).ceil() as i64 + 1;
    let row_h = spacing * 3f64.sqrt() / 2.0;
    let m = (reach / row_h).ceil() as i64 + 1;
    let mut out = Vec::new();
    for j in -m..=m {
        for i in -n..=n {
            let u = i as f64 * spacing + if j % 2 == 0 { 0.0 } else { spacing / 2.0 } + ox;
            let v = j as f64 * row_h + oy;
            let y = shape.cy + v * cos - u * sin + jitter * (2.0 * rng.uniform() - 1.0);
            let x = shape.cx + v * sin + u * cos + jitter * (2.0 * rng.uniform() - 1.0);
            let r = rng.range(r_lo, r_hi);
            let skip = rng.uniform() < empty;
            let positive = rng.uniform() < fraction;
            let dna_level = rng.range(1100.0, 1600.0);
            let oct4_level = match class {
                ColonyClass::Undifferentiated => rng.range(1400.0, 2200.0),
                _ => rng.range(800.0, 1400.0),
            };
            let dim = rng.range(30.0, 120.0);
            if skip || shape.depth(y, x) < 0.0 {
                continue;
            }
            match class {
                ColonyClass::Debris => out.push(Nucleus {
                    y,
                    x,
                    r,
                    dna: dna_level * 2.0,
                    oct4: dim,
                }),
                _ => out.push(Nucleus {
                    y,
                    x,
                    r,
                    dna: dna_level,
                    oct4: if positive { oct4_level } else { dim },
                }),
            }
        }
    }
    out
}

/// Adds a disk with a one-pixel anti-aliased edge.
fn paint_disk(img: &mut [f64], size: usize, n: &Nucleus, value: f64) {
    let lo_y = (n.y - n.r - 1.0).floor().max(0.0) as usize;
    let hi_y = ((n.y + n.r + 1.0).ceil() as usize).min(size - 1);
    let lo_x = (n.x - n.r - 1.0).floor().max(0.0) as usize;
    let hi_x = ((n.x + n.r + 1.0).ceil() as usize).min(size - 1);
    for r in lo_y..=hi_y {
        for c in lo_x..=hi_x {
            let d = ((r as f64 - n.y).powi(2) + (c as f64 - n.x).powi(2)).sqrt();
            let cover = (n.r + 0.5 - d).clamp(0.0, 1.0);
            if cover > 0.0 {
                img[r * size + c] += value * cover;
            }
        }
    }
}

/// 3×3 binomial blur ([1 2 1]/4 in each direction), edges clamped.
fn blur(img: &[f64], size: usize) -> Vec<f64> {
    let mut tmp = vec![0.0; img.len()];
    for r in 0..size {
        for c in 0..size {
            let a = img[r * size + c.saturating_sub(1)];
            let b = img[r * size + (c + 1).min(size - 1)];
            tmp[r * size + c] = 0.25 * a + 0.5 * img[r * size + c] + 0.25 * b;
        }
    }
    let mut out = vec![0.0; img.len()];
    for r in 0..size {
        for c in 0..size {
            let a = tmp[r.saturating_sub(1) * size + c];
            let b = tmp[(r + 1).min(size - 1) * size + c];
            out[r * size + c] = 0.25 * a + 0.5 * tmp[r * size + c] + 0.25 * b;
        }
    }
    out
}

/// Renders one field. `fraction` is the probability that a colony nucleus is OCT4-positive;
/// the share of differentiating colonies rises as it falls.
pub fn colony_field(seed: u64, fraction: f64, size: usize) -> ColonyField {
    let mut rng = Rng::new(seed);
    let sz = size as f64;
    // Relative position of the fraction between the curve's limits: 1 at TOP, 0 at BOTTOM.
    let rel = ((fraction - BOTTOM) / (TOP - BOTTOM)).clamp(0.0, 1.0);
    let p_diff = 0.15 + 0.6 * (1.0 - rel);
    let n_colonies = (size * size) / (512 * 512 / 6);
    let n_debris = (size * size) / (512 * 512 / 3);
    let mut shapes: Vec<(ColonyClass, Shape)> = Vec::new();
    for k in 0..(n_colonies + n_debris).max(1) {
        let class = if k >= n_colonies {
            ColonyClass::Debris
        } else if rng.uniform() < p_diff {
            ColonyClass::Differentiating
        } else {
            ColonyClass::Undifferentiated
        };
        for _ in 0..200 {
            let probe = shape_for(class, &mut rng, 0.0, 0.0);
            let m = probe.max_radius() + 4.0;
            if 2.0 * m >= sz {
                break;
            }
            let (cy, cx) = (rng.range(m, sz - m), rng.range(m, sz - m));
            // Colonies keep 24 px apart (three times the default linking distance), so
            // none is joined to its neighbour by the segmentation.
            let clear = shapes.iter().all(|(_, s)| {
                let d = ((s.cy - cy).powi(2) + (s.cx - cx).powi(2)).sqrt();
                d > s.max_radius() + probe.max_radius() + 24.0
            });
            if clear {
                shapes.push((class, Shape { cy, cx, ..probe }));
                break;
            }
        }
    }
    // Nuclei first: a colony's truth region is its outline together with its nuclei (edge
    // nuclei may bulge past the outline, as cells at a colony's rim do).
    let nuclei: Vec<Vec<Nucleus>> = shapes
        .iter()
        .map(|(class, s)| fill_nuclei(*class, s, &mut rng, fraction))
        .collect();
    // Truth regions (temporary ids = index + 1), then raster-order relabelling.
    let mut region = vec![0u32; size * size];
    for (i, (_, s)) in shapes.iter().enumerate() {
        let m = s.max_radius() + 1.0;
        let (y0, y1) = (
            (s.cy - m).max(0.0) as usize,
            ((s.cy + m) as usize).min(size - 1),
        );
        let (x0, x1) = (
            (s.cx - m).max(0.0) as usize,
            ((s.cx + m) as usize).min(size - 1),
        );
        for r in y0..=y1 {
            for c in x0..=x1 {
                if s.depth(r as f64, c as f64) >= 0.0 {
                    region[r * size + c] = i as u32 + 1;
                }
            }
        }
        for n in &nuclei[i] {
            let lo_y = (n.y - n.r - 1.0).floor().max(0.0) as usize;
            let hi_y = ((n.y + n.r + 1.0).ceil() as usize).min(size - 1);
            let lo_x = (n.x - n.r - 1.0).floor().max(0.0) as usize;
            let hi_x = ((n.x + n.r + 1.0).ceil() as usize).min(size - 1);
            for r in lo_y..=hi_y {
                for c in lo_x..=hi_x {
                    let d2 = (r as f64 - n.y).powi(2) + (c as f64 - n.x).powi(2);
                    if d2 <= n.r * n.r {
                        region[r * size + c] = i as u32 + 1;
                    }
                }
            }
        }
    }
    let mut new_id = vec![0u32; shapes.len() + 1];
    let mut next = 0;
    for &v in &region {
        if v > 0 && new_id[v as usize] == 0 {
            next += 1;
            new_id[v as usize] = next;
        }
    }
    let mut dna = vec![0.0; size * size];
    let mut oct4 = vec![0.0; size * size];
    let mut nuclear = vec![0.0; size * size];
    let mut colonies = Vec::new();
    for (i, ((class, s), nuclei)) in shapes.iter().zip(&nuclei).enumerate() {
        for n in nuclei {
            paint_disk(&mut dna, size, n, n.dna);
            paint_disk(&mut oct4, size, n, n.oct4);
            paint_disk(&mut nuclear, size, n, 1.0);
        }
        let label = new_id[i + 1];
        colonies.push(TruthColony {
            label,
            class: *class,
            center: (s.cy, s.cx),
            area: region.iter().filter(|&&v| v == i as u32 + 1).count() as u64,
            nuclei: nuclei.len() as u32,
            positives: nuclei.iter().filter(|n| n.oct4 >= 800.0).count() as u32,
        });
    }
    colonies.sort_by_key(|c| c.label);
    let dna = blur(&dna, size);
    let oct4 = blur(&oct4, size);
    // Brightfield: flat, slightly vignetted background; colonies textured (cell borders and
    // nuclei darker), undifferentiated ones with a bright halo at their sharp edge.
    let mut bf = vec![0.0; size * size];
    let half = sz / 2.0;
    for r in 0..size {
        for c in 0..size {
            let i = r * size + c;
            let rr = ((r as f64 - half).powi(2) + (c as f64 - half).powi(2)) / (half * half);
            let mut v = BF_LEVEL * (1.0 - 0.08 * rr);
            let id = region[i];
            if id > 0 {
                v += 220.0 * rng.normal() - 350.0 * nuclear[i];
            } else {
                v += 25.0 * rng.normal();
            }
            bf[i] = v;
        }
    }
    for (i, (class, s)) in shapes.iter().enumerate() {
        if *class != ColonyClass::Undifferentiated {
            continue;
        }
        let m = s.max_radius() + 4.0;
        let (y0, y1) = (
            (s.cy - m).max(0.0) as usize,
            ((s.cy + m) as usize).min(size - 1),
        );
        let (x0, x1) = (
            (s.cx - m).max(0.0) as usize,
            ((s.cx + m) as usize).min(size - 1),
        );
        for r in y0..=y1 {
            for c in x0..=x1 {
                let d = s.depth(r as f64, c as f64);
                if (-3.0..0.0).contains(&d) && region[r * size + c] != i as u32 + 1 {
                    bf[r * size + c] += 500.0;
                }
            }
        }
    }
    let mut to_u16 = |img: &[f64], noise: f64, base: f64| {
        Image::from_fn(size, size, |r, c| {
            let v = img[r * size + c] + base + noise * rng.normal();
            v.round().clamp(0.0, 4095.0) as u16
        })
    };
    let dna = to_u16(&dna, NOISE, BACKGROUND);
    let oct4 = to_u16(&oct4, NOISE, BACKGROUND);
    let brightfield = to_u16(&bf, 0.0, 0.0);
    let labels = Labels::new(
        Image::from_fn(size, size, |r, c| new_id[region[r * size + c] as usize]),
        next,
    );
    ColonyField {
        dna,
        oct4,
        brightfield,
        labels,
        colonies,
    }
}

/// Renders field `site` of `well`.
pub fn render_field(params: &ColonyDemoParams, well: &ColonyWell, site: u32) -> ColonyField {
    colony_field(
        field_seed(params.seed, well.row, well.column, site),
        expected_fraction(well.concentration),
        params.size,
    )
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ColonyDemoSummary {
    pub wells: usize,
    pub images: usize,
    pub colonies: usize,
    pub layout: std::path::PathBuf,
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// Image file name of one channel of one field.
pub fn image_name(plate_id: &str, well: &str, site: u32, channel: &str) -> String {
    format!("{plate_id}_{well}_s{site}_{channel}.tif")
}

/// Truth colony label file name of one field (under `truth/labels/`).
pub fn label_name(plate_id: &str, well: &str, site: u32) -> String {
    format!("{plate_id}_{well}_s{site}_colonies.tif")
}

/// Writes the colony plate into `dir`: images `<plate>_<well>_s<site>_w1|w2|w3.tif`,
/// `layout.csv` (`Metadata_Well`, `Metadata_Compound`, `Metadata_Concentration`,
/// `Metadata_Role`) and the truth files described in the module docs. Existing files of
/// the same names are overwritten.
pub fn generate(dir: &Path, params: &ColonyDemoParams) -> Result<ColonyDemoSummary> {
    let design = plate_design(params)?;
    let labels_dir = dir.join("truth").join("labels");
    fs::create_dir_all(&labels_dir).map_err(|e| Error::io(&labels_dir, e))?;
    let jobs: Vec<(usize, u32)> = (0..design.len())
        .flat_map(|w| (1..=params.sites).map(move |s| (w, s)))
        .collect();
    let results: Vec<Result<(usize, u32, Vec<TruthColony>)>> = jobs
        .par_iter()
        .map(|&(wi, site)| {
            let d = &design[wi];
            let f = render_field(params, d, site);
            let plate = &params.plate_id;
            for (ch, img) in [
                (CHANNELS[0].0, &f.dna),
                (CHANNELS[1].0, &f.oct4),
                (CHANNELS[2].0, &f.brightfield),
            ] {
                ipscope_io::write_tiff(
                    &dir.join(image_name(plate, &d.well, site, ch)),
                    img.view(),
                )?;
            }
            let lab16 = f.labels.image().map(|v| v.min(u32::from(u16::MAX)) as u16);
            ipscope_io::write_tiff(
                &labels_dir.join(label_name(plate, &d.well, site)),
                lab16.view(),
            )?;
            Ok((wi, site, f.colonies))
        })
        .collect();
    let mut layout =
        String::from("Metadata_Well,Metadata_Compound,Metadata_Concentration,Metadata_Role\n");
    let mut wells = String::from(
        "Metadata_Well,Metadata_Compound,Metadata_Concentration,Metadata_Role,Truth_Nuclei,Truth_OCT4Positive,Truth_PercentOCT4Positive,Expected_PercentOCT4Positive\n",
    );
    let mut colonies = String::from(
        "Metadata_Well,Metadata_Site,ObjectNumber,Truth_Class,Location_Center_X,Location_Center_Y,Truth_Area,Truth_Nuclei,Truth_OCT4Positive\n",
    );
    let mut counts = vec![(0u32, 0u32); design.len()];
    let mut n_colonies = 0;
    for r in results {
        let (wi, site, cols) = r?;
        let well = &design[wi].well;
        for c in &cols {
            colonies.push_str(&format!(
                "{well},{site},{},{},{:.3},{:.3},{},{},{}\n",
                c.label,
                c.class.as_str(),
                c.center.1,
                c.center.0,
                c.area,
                c.nuclei,
                c.positives
            ));
            counts[wi].0 += c.nuclei;
            counts[wi].1 += c.positives;
        }
        n_colonies += cols.len();
    }
    for (d, (n, p)) in design.iter().zip(&counts) {
        layout.push_str(&format!(
            "{},{},{},{}\n",
            d.well, d.compound, d.concentration, d.role
        ));
        let pct = if *n == 0 {
            String::new()
        } else {
            format!("{:.4}", 100.0 * f64::from(*p) / f64::from(*n))
        };
        wells.push_str(&format!(
            "{},{},{},{},{n},{p},{pct},{:.4}\n",
            d.well,
            d.compound,
            d.concentration,
            d.role,
            100.0 * expected_fraction(d.concentration)
        ));
    }
    let truth = dir.join("truth");
    let layout_path = dir.join("layout.csv");
    write_text(&layout_path, &layout)?;
    write_text(&truth.join("wells.csv"), &wells)?;
    write_text(&truth.join("colonies.csv"), &colonies)?;
    let json = serde_json::json!({
        "kind": "colonies",
        "plate_id": params.plate_id,
        "seed": params.seed,
        "size": params.size,
        "sites": params.sites,
        "compound": COMPOUND,
        "concentration_unit": "uM",
        "curve": {"model": "LL.4", "ec50": EC50, "top": TOP, "bottom": BOTTOM, "hill": HILL},
        "channels": CHANNELS.iter().map(|(id, name)| serde_json::json!({"id": id, "name": name})).collect::<Vec<_>>(),
    });
    write_text(
        &truth.join("demo.json"),
        &serde_json::to_string_pretty(&json).map_err(|e| Error::Invalid(e.to_string()))?,
    )?;
    Ok(ColonyDemoSummary {
        wells: design.len(),
        images: jobs.len() * 3,
        colonies: n_colonies,
        layout: layout_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_truth_consistent() {
        let a = colony_field(11, 0.5, 256);
        let b = colony_field(11, 0.5, 256);
        assert_eq!(a, b);
        assert!(!a.colonies.is_empty());
        for c in &a.colonies {
            let area = a
                .labels
                .image()
                .as_slice()
                .iter()
                .filter(|&&v| v == c.label)
                .count() as u64;
            assert_eq!(area, c.area);
            assert!(c.positives <= c.nuclei);
        }
    }

    #[test]
    fn curve_and_design() {
        assert!((expected_fraction(EC50) - (TOP + BOTTOM) / 2.0).abs() < 1e-12);
        let d = plate_design(&ColonyDemoParams::default()).unwrap();
        assert_eq!(d.len(), 24);
        assert_eq!(d[0].well, "B01");
        assert!(plate_design(&ColonyDemoParams {
            wells: 48,
            ..Default::default()
        })
        .is_err());
    }
}
