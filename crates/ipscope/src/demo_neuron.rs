//! Synthetic neuron plate with exact neurite lengths: the fixture of the neurite assay.
//!
//! Each field holds neurons (a nucleus in `w1` = DNA, a soma and one to three neurites in
//! `w2` = TUBB3), non-neuronal cells (nucleus, no marker) and dead cells (small, bright
//! nuclei, no marker). Every neurite is a drawn centre line — a smooth random walk of unit
//! steps leaving the soma edge, sometimes with one side branch — rendered with a Gaussian
//! cross-section; the truth length of a neuron is the summed length of its centre lines
//! from the soma edge, known exactly. Neurons do not touch: each one's footprint (soma and
//! neurites, widened) is kept clear of the others.
//!
//! Two growth conditions: `control` (total length per neuron 20–80 px) and `growth`
//! (60–180 px), on alternate columns. Same seed, same bytes, for any thread count: each
//! field draws from its own SplitMix64 stream seeded from (seed, well, site).

use std::fs;
use std::path::Path;

use ipscope_image::Image;

use crate::{Error, Result};

/// Raw channel ids and the names to give them with `--channel`.
pub const CHANNELS: [(&str, &str); 2] = [("w1", "DNA"), ("w2", "TUBB3")];

/// Growth condition of a well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Short neurites (20–80 px per neuron).
    Control,
    /// Long neurites (60–180 px per neuron).
    Growth,
}

impl Condition {
    pub fn name(self) -> &'static str {
        match self {
            Condition::Control => "control",
            Condition::Growth => "growth",
        }
    }

    fn length_range(self) -> (f64, f64) {
        match self {
            Condition::Control => (20.0, 80.0),
            Condition::Growth => (60.0, 180.0),
        }
    }
}

/// Parameters of [`generate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeuronDemoParams {
    /// Wells per condition (placed on row B onwards, alternating columns), 1..=24.
    pub wells_per_condition: u32,
    /// Fields per well, 1..=9.
    pub sites: u32,
    /// Field width = height, 128..=2048.
    pub size: usize,
    pub seed: u64,
    pub plate_id: String,
}

impl Default for NeuronDemoParams {
    fn default() -> Self {
        NeuronDemoParams {
            wells_per_condition: 3,
            sites: 2,
            size: 256,
            seed: 7,
            plate_id: "NEURO1".to_string(),
        }
    }
}

/// One drawn neuron.
#[derive(Debug, Clone, PartialEq)]
pub struct TruthNeuron {
    /// Nucleus centre (row, col).
    pub center: (f64, f64),
    /// Summed centre-line length of its neurites (px), from the soma edge.
    pub neurite_length: f64,
    pub trunks: u32,
    pub branches: u32,
}

/// One generated field and its truth.
#[derive(Debug, Clone, PartialEq)]
pub struct NeuronField {
    pub dna: Image<u16>,
    pub marker: Image<u16>,
    pub neurons: Vec<TruthNeuron>,
    pub non_neuronal: u32,
    pub dead: u32,
}

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed ^ 0x6E65_7572_6F6E_0001)
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

const SOMA_RADIUS: f64 = 9.0;
const NUCLEUS_RADIUS: f64 = 5.5;
const NEURITE_SIGMA: f64 = 0.9;
const BACKGROUND: f64 = 100.0;
const NOISE: f64 = 12.0;

/// A centre line: points one pixel apart.
type Line = Vec<(f64, f64)>;

/// A smooth random walk of `len` unit steps from `start` heading `angle`; `None` when it
/// leaves the field (with a margin).
fn walk(rng: &mut Rng, start: (f64, f64), angle: f64, len: f64, size: f64) -> Option<Line> {
    let mut pts = vec![start];
    let (mut r, mut c, mut a) = (start.0, start.1, angle);
    let steps = len.floor() as usize;
    for _ in 0..steps {
        a += 0.06 * rng.normal();
        r += a.sin();
        c += a.cos();
        if r < 4.0 || c < 4.0 || r > size - 5.0 || c > size - 5.0 {
            return None;
        }
        pts.push((r, c));
    }
    // The last, fractional step keeps the length exact.
    let frac = len - steps as f64;
    if frac > 0.0 {
        r += frac * a.sin();
        c += frac * a.cos();
        pts.push((r, c));
    }
    Some(pts)
}

fn line_length(l: &Line) -> f64 {
    l.windows(2)
        .map(|p| ((p[1].0 - p[0].0).powi(2) + (p[1].1 - p[0].1).powi(2)).sqrt())
        .sum()
}

/// Marks a disk of `radius` around every point of a line in the occupancy grid; `true` when
/// it hit something already there.
fn occupy(
    grid: &mut [bool],
    size: usize,
    pts: &[(f64, f64)],
    radius: f64,
    check_only: bool,
) -> bool {
    let rr = radius.ceil() as i64;
    let mut hit = false;
    for &(pr, pc) in pts {
        for dr in -rr..=rr {
            for dc in -rr..=rr {
                if (dr * dr + dc * dc) as f64 > radius * radius {
                    continue;
                }
                let (r, c) = (pr.round() as i64 + dr, pc.round() as i64 + dc);
                if r < 0 || c < 0 || r >= size as i64 || c >= size as i64 {
                    continue;
                }
                let i = r as usize * size + c as usize;
                if grid[i] {
                    hit = true;
                }
                if !check_only {
                    grid[i] = true;
                }
            }
        }
    }
    hit
}

fn paint_disk(img: &mut [f64], size: usize, (cr, cc): (f64, f64), radius: f64, value: f64) {
    let rr = radius.ceil() as i64 + 1;
    for dr in -rr..=rr {
        for dc in -rr..=rr {
            let (r, c) = (cr.round() as i64 + dr, cc.round() as i64 + dc);
            if r < 0 || c < 0 || r >= size as i64 || c >= size as i64 {
                continue;
            }
            let d2 = (r as f64 - cr).powi(2) + (c as f64 - cc).powi(2);
            if d2 <= radius * radius {
                let i = r as usize * size + c as usize;
                img[i] = img[i].max(value);
            }
        }
    }
}

fn paint_line(img: &mut [f64], size: usize, line: &Line, peak: f64) {
    // Sample every 0.25 px; a pixel takes the largest Gaussian of its distance to the line.
    for seg in line.windows(2) {
        let (a, b) = (seg[0], seg[1]);
        let len = ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt();
        let n = (len / 0.25).ceil().max(1.0) as usize;
        for k in 0..=n {
            let t = k as f64 / n as f64;
            let (pr, pc) = (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1));
            for dr in -3i64..=3 {
                for dc in -3i64..=3 {
                    let (r, c) = (pr.round() as i64 + dr, pc.round() as i64 + dc);
                    if r < 0 || c < 0 || r >= size as i64 || c >= size as i64 {
                        continue;
                    }
                    let d2 = (r as f64 - pr).powi(2) + (c as f64 - pc).powi(2);
                    let v = peak * (-d2 / (2.0 * NEURITE_SIGMA * NEURITE_SIGMA)).exp();
                    let i = r as usize * size + c as usize;
                    img[i] = img[i].max(v);
                }
            }
        }
    }
}

/// One field of `condition`; `seed` picks everything.
pub fn neuron_field(seed: u64, condition: Condition, size: usize) -> NeuronField {
    let mut rng = Rng::new(seed);
    let sz = size as f64;
    let mut grid = vec![false; size * size];
    let mut dna = vec![0f64; size * size];
    let mut marker = vec![0f64; size * size];
    let mut neurons = Vec::new();
    let target = (size * size / 9000).max(2);
    let (lo, hi) = condition.length_range();
    let mut tries = 0;
    while neurons.len() < target && tries < 400 {
        tries += 1;
        let centre = (rng.range(20.0, sz - 20.0), rng.range(20.0, sz - 20.0));
        let total = rng.range(lo, hi);
        let trunks = 1 + (rng.uniform() * 3.0) as u32;
        let branch = rng.uniform() < 0.5;
        // Split the length: the branch takes a quarter, the trunks share the rest.
        let branch_len = if branch { (total * 0.25).max(8.0) } else { 0.0 };
        let trunk_len = (total - branch_len) / f64::from(trunks);
        let base = rng.range(0.0, 2.0 * std::f64::consts::PI);
        let mut lines: Vec<Line> = Vec::new();
        let mut ok = true;
        for t in 0..trunks {
            let a = base
                + 2.0 * std::f64::consts::PI * f64::from(t) / f64::from(trunks)
                + 0.3 * rng.normal();
            let start = (
                centre.0 + SOMA_RADIUS * a.sin(),
                centre.1 + SOMA_RADIUS * a.cos(),
            );
            match walk(&mut rng, start, a, trunk_len, sz) {
                Some(l) => lines.push(l),
                None => {
                    ok = false;
                    break;
                }
            }
        }
        if ok && branch {
            let host = &lines[0];
            let k = host.len() / 2;
            if k < 2 {
                ok = false;
            } else {
                let (p, q) = (host[k - 1], host[k]);
                let a = (q.0 - p.0).atan2(q.1 - p.1) + if rng.uniform() < 0.5 { 0.8 } else { -0.8 };
                match walk(&mut rng, host[k], a, branch_len, sz) {
                    Some(l) => lines.push(l),
                    None => ok = false,
                }
            }
        }
        if !ok {
            continue;
        }
        let mut footprint: Vec<(f64, f64)> = vec![centre];
        let mut hit = occupy(&mut grid, size, &[centre], SOMA_RADIUS + 6.0, true);
        for l in &lines {
            hit |= occupy(&mut grid, size, l, 6.0, true);
            footprint.extend_from_slice(l);
        }
        if hit {
            continue;
        }
        occupy(&mut grid, size, &[centre], SOMA_RADIUS + 6.0, false);
        for l in &lines {
            occupy(&mut grid, size, l, 6.0, false);
        }
        let length: f64 = lines.iter().map(line_length).sum();
        let peak = rng.range(700.0, 1100.0);
        paint_disk(
            &mut marker,
            size,
            centre,
            SOMA_RADIUS,
            rng.range(1500.0, 2000.0),
        );
        for l in &lines {
            paint_line(&mut marker, size, l, peak);
        }
        paint_disk(
            &mut dna,
            size,
            centre,
            NUCLEUS_RADIUS,
            rng.range(1300.0, 1700.0),
        );
        neurons.push(TruthNeuron {
            center: centre,
            neurite_length: length,
            trunks,
            branches: u32::from(branch),
        });
    }
    // Non-neuronal and dead nuclei where nothing else is.
    let mut non_neuronal = 0;
    let mut dead = 0;
    for kind in 0..(target / 2 + target / 3) {
        let is_dead = kind % 3 == 2;
        let radius = if is_dead { 3.6 } else { NUCLEUS_RADIUS };
        for _ in 0..50 {
            let c = (rng.range(10.0, sz - 10.0), rng.range(10.0, sz - 10.0));
            if occupy(&mut grid, size, &[c], radius + 5.0, true) {
                continue;
            }
            occupy(&mut grid, size, &[c], radius + 5.0, false);
            let v = if is_dead {
                rng.range(3200.0, 3800.0)
            } else {
                rng.range(1300.0, 1700.0)
            };
            paint_disk(&mut dna, size, c, radius, v);
            if is_dead {
                dead += 1;
            } else {
                non_neuronal += 1;
            }
            break;
        }
    }
    let mut to_u16 = |img: &[f64]| {
        Image::from_fn(size, size, |r, c| {
            let v = img[r * size + c] + BACKGROUND + NOISE * rng.normal();
            v.round().clamp(0.0, 4095.0) as u16
        })
    };
    let dna = to_u16(&dna);
    let marker = to_u16(&marker);
    NeuronField {
        dna,
        marker,
        neurons,
        non_neuronal,
        dead,
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct NeuronDemoSummary {
    pub wells: Vec<(String, Condition)>,
    pub images: usize,
    pub neurons: usize,
}

/// Seed of one field, from the plate seed, well index and site.
pub fn field_seed(seed: u64, well_index: u32, site: u32) -> u64 {
    seed.wrapping_mul(1_000_003)
        .wrapping_add(u64::from(well_index) * 101)
        .wrapping_add(u64::from(site))
}

/// The wells of the plate and their conditions: row B onwards, control on odd columns,
/// growth on even ones.
pub fn plate_wells(params: &NeuronDemoParams) -> Vec<(String, Condition)> {
    let mut out = Vec::new();
    for i in 0..params.wells_per_condition * 2 {
        let row = (b'B' + (i / 12) as u8) as char;
        let col = i % 12 + 1;
        let cond = if i % 2 == 0 {
            Condition::Control
        } else {
            Condition::Growth
        };
        out.push((format!("{row}{col:02}"), cond));
    }
    out
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// Writes the neuron plate into `dir`: `<plate>_<well>_s<site>_w1.tif` (DNA) and `_w2.tif`
/// (TUBB3), `layout.csv` (`Metadata_Well`, `Metadata_Condition`) and `truth/neurons.csv`
/// (one row per drawn neuron: well, site, centre, true neurite length, trunks, branches).
pub fn generate(dir: &Path, params: &NeuronDemoParams) -> Result<NeuronDemoSummary> {
    if !(1..=24).contains(&params.wells_per_condition)
        || !(1..=9).contains(&params.sites)
        || !(128..=2048).contains(&params.size)
    {
        return Err(Error::Invalid(format!(
            "neuron demo: wells per condition must be 1..=24 (got {}), sites 1..=9 (got {}), size 128..=2048 (got {})",
            params.wells_per_condition, params.sites, params.size
        )));
    }
    let truth_dir = dir.join("truth");
    fs::create_dir_all(&truth_dir).map_err(|e| Error::io(&truth_dir, e))?;
    let wells = plate_wells(params);
    let mut layout = String::from("Metadata_Well,Metadata_Condition\n");
    let mut truth = String::from(
        "Metadata_Well,Metadata_Site,Metadata_Condition,Location_Center_X,Location_Center_Y,Truth_NeuriteLength,Truth_Trunks,Truth_Branches\n",
    );
    let mut images = 0;
    let mut neurons = 0;
    for (wi, (well, cond)) in wells.iter().enumerate() {
        layout.push_str(&format!("{well},{}\n", cond.name()));
        for site in 1..=params.sites {
            let f = neuron_field(field_seed(params.seed, wi as u32, site), *cond, params.size);
            for (ch, img) in [("w1", &f.dna), ("w2", &f.marker)] {
                let name = format!("{}_{well}_s{site}_{ch}.tif", params.plate_id);
                ipscope_io::write_tiff(&dir.join(name), img.view())?;
                images += 1;
            }
            for n in &f.neurons {
                truth.push_str(&format!(
                    "{well},{site},{},{:.3},{:.3},{:.6},{},{}\n",
                    cond.name(),
                    n.center.1,
                    n.center.0,
                    n.neurite_length,
                    n.trunks,
                    n.branches
                ));
            }
            neurons += f.neurons.len();
        }
    }
    write_text(&dir.join("layout.csv"), &layout)?;
    write_text(&truth_dir.join("neurons.csv"), &truth)?;
    Ok(NeuronDemoSummary {
        wells,
        images,
        neurons,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipscope_core::assays::neurite::{analyze_neurites, NeuriteParams, NucleusClass};
    use ipscope_core::{segment_nuclei, NucleiParams};

    fn ranks(v: &[f64]) -> Vec<f64> {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
        let mut r = vec![0.0; v.len()];
        let mut i = 0;
        while i < idx.len() {
            let mut j = i;
            while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
                j += 1;
            }
            for k in i..=j {
                r[idx[k]] = (i + j) as f64 / 2.0;
            }
            i = j + 1;
        }
        r
    }

    fn spearman(a: &[f64], b: &[f64]) -> f64 {
        let (ra, rb) = (ranks(a), ranks(b));
        let n = a.len() as f64;
        let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
        let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
        let va: f64 = ra.iter().map(|x| (x - ma).powi(2)).sum();
        let vb: f64 = rb.iter().map(|y| (y - mb).powi(2)).sum();
        cov / (va * vb).sqrt()
    }

    #[test]
    fn fields_are_deterministic_and_truth_lengths_follow_the_condition() {
        let a = neuron_field(3, Condition::Control, 160);
        let b = neuron_field(3, Condition::Control, 160);
        assert_eq!(a, b);
        assert!(!a.neurons.is_empty());
        for n in &a.neurons {
            assert!(
                (19.9..=80.1).contains(&n.neurite_length),
                "{}",
                n.neurite_length
            );
        }
        let g = neuron_field(3, Condition::Growth, 160);
        for n in &g.neurons {
            assert!(
                (59.9..=180.1).contains(&n.neurite_length),
                "{}",
                n.neurite_length
            );
        }
    }

    /// Neurite length per neuron found by the assay against the drawn truth, over fields of
    /// both conditions; matched by the nucleus that contains the true centre.
    #[test]
    fn neurite_length_per_neuron_tracks_truth() {
        let mut truth = Vec::new();
        let mut found = Vec::new();
        let mut by_cond = [Vec::new(), Vec::new()];
        let (mut dead_true, mut dead_found) = (0, 0);
        for (k, cond) in [
            Condition::Control,
            Condition::Growth,
            Condition::Control,
            Condition::Growth,
        ]
        .into_iter()
        .enumerate()
        {
            let f = neuron_field(100 + k as u64, cond, 256);
            let nuclei = segment_nuclei(f.dna.view(), &NucleiParams::default()).labels;
            let res = analyze_neurites(
                f.dna.view(),
                f.marker.view(),
                &nuclei,
                &NeuriteParams::default(),
            )
            .expect("same sizes");
            dead_true += f.dead;
            dead_found += res.count(NucleusClass::Dead);
            for n in &f.neurons {
                let l = nuclei
                    .image()
                    .get(n.center.0.round() as usize, n.center.1.round() as usize);
                assert!(l != 0, "a neuron's nucleus was missed at {:?}", n.center);
                let m = &res.neurons[l as usize - 1];
                assert_eq!(
                    m.class,
                    NucleusClass::Neuron,
                    "nucleus {l} at {:?}",
                    n.center
                );
                truth.push(n.neurite_length);
                found.push(m.total_length);
                by_cond[usize::from(cond == Condition::Growth)].push(m.total_length);
            }
        }
        let rho = spearman(&truth, &found);
        eprintln!(
            "neurons {}: Spearman {rho:.3}; dead {dead_found}/{dead_true}",
            truth.len()
        );
        assert!(truth.len() >= 20);
        assert!(rho >= 0.9, "Spearman {rho}");
        let mean = |v: &Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
        assert!(mean(&by_cond[1]) > 1.5 * mean(&by_cond[0]));
        assert_eq!(dead_found as u32, dead_true);
    }

    #[test]
    fn a_field_with_no_marker_signal_has_no_neurons() {
        let f = neuron_field(5, Condition::Growth, 160);
        let flat = Image::new(160, 160, 100u16);
        let nuclei = segment_nuclei(f.dna.view(), &NucleiParams::default()).labels;
        let res = analyze_neurites(
            f.dna.view(),
            flat.view(),
            &nuclei,
            &NeuriteParams::default(),
        )
        .expect("same sizes");
        assert!(nuclei.count() > 0);
        assert_eq!(res.count(NucleusClass::Neuron), 0);
        assert!(res.neurons.iter().all(|n| n.total_length == 0.0));
        assert!(!res.skeleton.as_slice().iter().any(|&v| v));
    }
}
