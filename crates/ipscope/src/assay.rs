//! The list of assays `ipscope run --assay NAME` can run.
//!
//! One entry per assay module in `ipscope_core::assays`. Adding an assay means adding its
//! variant here (name, kind of input, one-line description) and its arm where the run is
//! dispatched; the report, curves and rescue scoring read every assay's per-well columns the
//! same way.

use std::fmt;
use std::str::FromStr;

use ipscope_table::TableBuilder;

use crate::Error;

/// A field an assay runner could not process: one row of its Errors table.
pub(crate) struct FailedField<'a> {
    pub image_number: u32,
    pub well: &'a str,
    pub site: u32,
    pub file: &'a str,
    pub message: &'a str,
}

/// The Errors table every per-field assay runner writes (the same columns as `run`'s).
pub(crate) fn errors_table(failed: &[FailedField<'_>]) -> TableBuilder {
    let mut b = TableBuilder::new();
    b.u32(
        "ImageNumber",
        failed.iter().map(|f| f.image_number).collect(),
    )
    .str(
        "Metadata_Well",
        failed.iter().map(|f| f.well.to_string()).collect(),
    )
    .u32("Metadata_Site", failed.iter().map(|f| f.site).collect())
    .str("File", failed.iter().map(|f| f.file.to_string()).collect())
    .str(
        "Message",
        failed.iter().map(|f| f.message.to_string()).collect(),
    );
    b
}

/// An assay: what a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Assay {
    /// Nuclei (and cells) segmented and measured in every field: the default.
    #[default]
    Nuclei,
    /// Cardiomyocyte calcium transients from a fluorescence time-lapse (beats, rate, CTD90).
    Calcium,
    /// Cardiomyocyte contraction from brightfield video (MUSCLEMOTION image difference).
    Contraction,
    /// Neurite outgrowth: somata, neurite skeletons, per-neuron length and branching.
    Neurite,
    /// Spots / puncta per cell (Laplacian of Gaussian): count, intensity, area.
    Spots,
}

/// What an assay reads from each field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// One image per channel per field.
    Still,
    /// A stream of frames per field (multi-page TIFF or one file per time point).
    TimeLapse,
}

impl Assay {
    /// Every assay, in the order `--help` lists them.
    pub const ALL: &'static [Assay] = &[
        Assay::Nuclei,
        Assay::Calcium,
        Assay::Contraction,
        Assay::Neurite,
        Assay::Spots,
    ];

    /// The name given to `--assay`.
    pub fn name(self) -> &'static str {
        match self {
            Assay::Nuclei => "nuclei",
            Assay::Calcium => "calcium",
            Assay::Contraction => "contraction",
            Assay::Neurite => "neurite",
            Assay::Spots => "spots",
        }
    }

    /// One line for `--help` and error messages.
    pub fn description(self) -> &'static str {
        match self {
            Assay::Nuclei => "nuclei segmented and measured per field (default)",
            Assay::Calcium => {
                "calcium transients from a time-lapse: beats, rate, amplitude, CTD30/50/90"
            }
            Assay::Contraction => {
                "contraction from brightfield video: amplitude, durations, beat rate"
            }
            Assay::Neurite => {
                "neurite outgrowth: neurons, neurite length, trunks, branch points per neuron"
            }
            Assay::Spots => "spots / puncta per cell: count, total and mean intensity, area",
        }
    }

    /// Whether the assay reads still fields or frame streams.
    pub fn input(self) -> InputKind {
        match self {
            Assay::Nuclei | Assay::Neurite | Assay::Spots => InputKind::Still,
            Assay::Calcium | Assay::Contraction => InputKind::TimeLapse,
        }
    }

    /// `name: description` for every assay, one per line.
    pub fn help() -> String {
        Assay::ALL
            .iter()
            .map(|a| format!("{}: {}", a.name(), a.description()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl fmt::Display for Assay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Assay {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        Assay::ALL
            .iter()
            .copied()
            .find(|a| a.name().eq_ignore_ascii_case(t))
            .ok_or_else(|| {
                let names: Vec<&str> = Assay::ALL.iter().map(|a| a.name()).collect();
                Error::Invalid(format!(
                    "unknown assay {s:?}; choose one of: {}",
                    names.join(", ")
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for a in Assay::ALL {
            assert_eq!(a.name().parse::<Assay>().ok(), Some(*a));
            assert_eq!(a.name().to_uppercase().parse::<Assay>().ok(), Some(*a));
        }
        assert_eq!(Assay::default(), Assay::Nuclei);
        let e = "calcum".parse::<Assay>().err().map(|e| e.to_string());
        assert!(e.is_some_and(|m| m.contains("calcium") && m.contains("calcum")));
    }
}
