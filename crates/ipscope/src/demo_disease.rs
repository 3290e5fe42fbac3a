//! A synthetic disease-model plate: a patient (disease) line that has lost OCT4 in most
//! cells and a healthy (control) line, with four compounds of known effect on the disease line.
//!
//! 96 wells, images rendered by the iPSC demo's field generator ([`crate::demo::render_field`]):
//! - columns 1–2: disease line, DMSO (16 wells); columns 11–12: control line, DMSO (16 wells);
//! - columns 3–10: disease line, 8 doses (0.01 … 30 µM, ×3 steps) of one compound per row
//!   pair: rows A–B `RESCUER` (OCT4-positive fraction 0.2 → 0.8, EC50 1 µM, slope 1: a full
//!   rescue), C–D `PARTIAL` (0.2 → 0.44, 40 % rescue, EC50 0.3 µM, and cells die above ~5 µM), E–F `INERT`,
//!   G–H `TOXIC` (no rescue, TC50 1 µM).
//!
//! The OCT4-positive fraction is 0.2 in disease and 0.8 in control vehicle wells, so the
//! well-mean OCT4 intensity (pycytominer `aggregate` with `mean`) is the phenotype and
//! % rescue of a well is 100 · (fraction − 0.2) / 0.6. Cell counts scale with
//! 1 / (1 + (dose / TC50)²). `truth/disease_wells.csv` lists each well's expected fraction and
//! count factor.

use std::fs;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::demo::{image_name, render_field, DemoParams, Role, WellDesign, CHANNELS};
use crate::{Error, Result};

/// OCT4-positive fraction of the disease line's vehicle wells.
pub const DISEASE_FRACTION: f64 = 0.2;
/// OCT4-positive fraction of the control line's vehicle wells.
pub const CONTROL_FRACTION: f64 = 0.8;
/// The doses of the compound columns 3–10 (µM).
pub const DOSES: [f64; 8] = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0];

/// A compound's true effect.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Effect {
    /// Name in the layout.
    pub name: &'static str,
    /// Largest rescue (fraction of the phenotype gap, 1 = control).
    pub top: f64,
    /// Rescue EC50 (µM).
    pub ec50: f64,
    /// Dose (µM) at which half the cells are lost; infinite = not toxic.
    pub tc50: f64,
}

/// The four compounds, in row-pair order A–B, C–D, E–F, G–H.
pub const EFFECTS: [Effect; 4] = [
    Effect {
        name: "RESCUER",
        top: 1.0,
        ec50: 1.0,
        tc50: f64::INFINITY,
    },
    Effect {
        name: "PARTIAL",
        top: 0.4,
        ec50: 0.3,
        tc50: 5.0,
    },
    Effect {
        name: "INERT",
        top: 0.0,
        ec50: 1.0,
        tc50: f64::INFINITY,
    },
    Effect {
        name: "TOXIC",
        top: 0.0,
        ec50: 1.0,
        tc50: 1.0,
    },
];

/// One well of the disease plate.
#[derive(Debug, Clone, PartialEq)]
pub struct DiseaseWell {
    /// Cell line (`disease` or `control`).
    pub line: &'static str,
    /// Compound, dose, role and the expected OCT4 fraction / count factor.
    pub design: WellDesign,
}

/// The plate design (96 wells, row-major).
pub fn plate_design() -> Vec<DiseaseWell> {
    let mut out = Vec::new();
    for row in 0..8u32 {
        let effect = EFFECTS[(row / 2) as usize];
        for column in 1..=12u32 {
            let well = format!("{}{column:02}", char::from(b'A' + row as u8));
            let (line, compound, conc, role, fraction, count) = match column {
                1 | 2 => (
                    "disease",
                    "DMSO",
                    0.0,
                    Role::Negative,
                    DISEASE_FRACTION,
                    1.0,
                ),
                11 | 12 => (
                    "control",
                    "DMSO",
                    0.0,
                    Role::Negative,
                    CONTROL_FRACTION,
                    1.0,
                ),
                _ => {
                    let d = DOSES[(column - 3) as usize];
                    let rescue = effect.top * d / (d + effect.ec50);
                    (
                        "disease",
                        effect.name,
                        d,
                        Role::Treated,
                        DISEASE_FRACTION + rescue * (CONTROL_FRACTION - DISEASE_FRACTION),
                        1.0 / (1.0 + (d / effect.tc50).powi(2)),
                    )
                }
            };
            out.push(DiseaseWell {
                line,
                design: WellDesign {
                    well,
                    row,
                    column,
                    compound: compound.to_string(),
                    concentration: conc,
                    role,
                    expected_fraction: fraction,
                    count_factor: count,
                },
            });
        }
    }
    out
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct DiseaseDemoSummary {
    /// The plate directory.
    pub dir: PathBuf,
    /// `layout.csv` with `Metadata_CellLine`.
    pub layout: PathBuf,
    /// Images written.
    pub images: u32,
    /// Nuclei drawn.
    pub nuclei: u64,
}

/// Writes the disease demo plate into `dir` (created if missing; it must be empty or an
/// earlier disease demo, marked by `truth/disease_wells.csv`).
pub fn generate(dir: &Path, params: &DemoParams) -> Result<DiseaseDemoSummary> {
    let marker = dir.join("truth").join("disease_wells.csv");
    if dir.exists() {
        let mut entries = fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        if entries.next().is_some() && !marker.exists() {
            return Err(Error::Invalid(format!(
                "{}: not empty and not a disease demo plate; choose a new directory",
                dir.display()
            )));
        }
    }
    let truth = dir.join("truth");
    fs::create_dir_all(&truth).map_err(|e| Error::io(&truth, e))?;
    let design = plate_design();
    let params = DemoParams {
        wells: 96,
        ..params.clone()
    };
    let fields: Vec<(usize, u32)> = (0..design.len())
        .flat_map(|w| (1..=params.sites).map(move |s| (w, s)))
        .collect();
    let counts: Vec<u32> = fields
        .par_iter()
        .map(|&(w, site)| {
            let d = &design[w].design;
            let field = render_field(&params, d, site)?;
            for (k, img) in [&field.hoechst, &field.oct4].into_iter().enumerate() {
                ipscope_io::write_tiff(
                    &dir.join(image_name(&params.plate_id, &d.well, site, CHANNELS[k].0)),
                    img.view(),
                )?;
            }
            Ok(field.nuclei())
        })
        .collect::<Result<_>>()?;
    let mut per_well = vec![0u64; design.len()];
    for (&(w, _), c) in fields.iter().zip(&counts) {
        per_well[w] += u64::from(*c);
    }
    let mut layout = String::from(
        "Metadata_Well,Metadata_CellLine,Metadata_Compound,Metadata_Concentration,Metadata_Role\n",
    );
    let mut wells = String::from(
        "Metadata_Well,Metadata_CellLine,Metadata_Compound,Metadata_Concentration,\
         ExpectedFraction_OCT4,ExpectedRescue_Percent,CountFactor,Count_Nuclei\n",
    );
    for (w, n) in design.iter().zip(&per_well) {
        let d = &w.design;
        layout.push_str(&format!(
            "{},{},{},{},{}\n",
            d.well,
            w.line,
            d.compound,
            d.concentration,
            d.role.as_str()
        ));
        let rescue = if w.line == "disease" {
            100.0 * (d.expected_fraction - DISEASE_FRACTION) / (CONTROL_FRACTION - DISEASE_FRACTION)
        } else {
            f64::NAN
        };
        wells.push_str(&format!(
            "{},{},{},{},{},{},{},{n}\n",
            d.well,
            w.line,
            d.compound,
            d.concentration,
            d.expected_fraction,
            rescue,
            d.count_factor
        ));
    }
    let layout_path = dir.join("layout.csv");
    fs::write(&layout_path, layout).map_err(|e| Error::io(&layout_path, e))?;
    fs::write(&marker, wells).map_err(|e| Error::io(&marker, e))?;
    Ok(DiseaseDemoSummary {
        dir: dir.to_path_buf(),
        layout: layout_path,
        images: (fields.len() * CHANNELS.len()) as u32,
        nuclei: per_well.iter().sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_has_both_lines_and_known_effects() {
        let d = plate_design();
        assert_eq!(d.len(), 96);
        let n = |line: &str, c: &str| {
            d.iter()
                .filter(|w| w.line == line && w.design.compound == c)
                .count()
        };
        assert_eq!(n("disease", "DMSO"), 16);
        assert_eq!(n("control", "DMSO"), 16);
        assert_eq!(n("disease", "RESCUER"), 16);
        let top = d
            .iter()
            .find(|w| w.design.compound == "RESCUER" && w.design.concentration == 30.0)
            .unwrap();
        // 30 / 31 of the way from 0.2 to 0.8
        assert!((top.design.expected_fraction - (0.2 + 0.6 * 30.0 / 31.0)).abs() < 1e-12);
    }
}
