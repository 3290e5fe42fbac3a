//! Channel names and roles.
//!
//! Users name the raw channel ids of their files (`w1`, `ch2`, `C03`, ...) with
//! `--channel w1=DNA`. The name decides the role, case-insensitively: DNA/Hoechst/DAPI are the
//! nuclear stain; Brightfield/BF/Phase/TL/Transmitted are transmitted light; any other name is a
//! marker and keeps its name in column suffixes (`Nuclei_Intensity_MeanIntensity_OCT4`).
//! A `:cells` suffix (`--channel w2=Actin:cells`, or `w2 = "Actin:cells"` under `[channels]`)
//! makes a channel the cell-body stain that cells are grown into from the nuclei.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What a channel is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Nuclear stain (DNA, Hoechst, DAPI): nuclei are segmented on it.
    Nuclear,
    /// Transmitted light (brightfield, phase contrast).
    Transmitted,
    /// Any other stain; measured in every object.
    Marker,
    /// The cell-body stain (`NAME:cells`): cells grow from the nuclei into it; measured in
    /// every object like a marker, but not gated as one.
    Cells,
}

impl Role {
    /// The role a channel name implies.
    pub fn from_name(name: &str) -> Role {
        match name.to_ascii_lowercase().as_str() {
            "dna" | "hoechst" | "dapi" | "nuclei" | "nuclear" => Role::Nuclear,
            "brightfield" | "bf" | "phase" | "tl" | "transmitted" => Role::Transmitted,
            _ => Role::Marker,
        }
    }
}

/// One channel of a plate: the id in the file names and the name the user gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    /// Channel id as found in the file names (`w1`, `ch2`, `C03`, `c1`).
    pub id: String,
    /// The name used in column suffixes (`DNA`, `OCT4`); the id when the user named none.
    pub name: String,
    pub role: Role,
}

/// Suffix of a channel name that gives it the [`Role::Cells`] role.
pub const CELLS_SUFFIX: &str = ":cells";

/// Splits a `:cells` suffix (any case) off a channel name: the name and whether it had one.
fn split_role(name: &str) -> (&str, bool) {
    match name.len().checked_sub(CELLS_SUFFIX.len()) {
        Some(k) if name.is_char_boundary(k) && name[k..].eq_ignore_ascii_case(CELLS_SUFFIX) => {
            (&name[..k], true)
        }
        _ => (name, false),
    }
}

/// Parses `ID=NAME` (or `ID=NAME:cells`) as given to `--channel`; the `:cells` suffix is kept
/// in the returned name and read by [`resolve_channels`].
pub fn parse_channel_arg(arg: &str) -> Result<(String, String)> {
    let (id, name) = arg.split_once('=').ok_or_else(|| {
        Error::Invalid(format!(
            "--channel {arg:?}: expected ID=NAME, e.g. --channel w1=DNA"
        ))
    })?;
    let (id, name) = (id.trim(), name.trim());
    if id.is_empty() || name.is_empty() {
        return Err(Error::Invalid(format!(
            "--channel {arg:?}: both the channel id and the name are needed, e.g. w1=DNA"
        )));
    }
    let (bare, cells) = split_role(name);
    if bare.is_empty()
        || !bare
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(Error::Invalid(format!(
            "--channel {arg:?}: channel names become column names; use letters, digits, '_' or '-' (and an optional :cells suffix for the cell-body stain)"
        )));
    }
    let suffix = if cells { CELLS_SUFFIX } else { "" };
    Ok((
        id.to_string(),
        format!("{}{suffix}", bare.replace('-', "_")),
    ))
}

/// Digits of an id without leading zeros (`w01` → `1`), used so `--channel 1=DNA` matches `w1`.
fn number_of(id: &str) -> Option<String> {
    let digits: String = id.chars().filter(|c| c.is_ascii_digit()).collect();
    if digits.is_empty() {
        return None;
    }
    let trimmed = digits.trim_start_matches('0');
    Some(if trimmed.is_empty() { "0" } else { trimmed }.to_string())
}

/// Resolves the user's `ID=NAME` pairs against the channel ids found on the plate.
///
/// An id matches case-insensitively, or by number alone (`1=DNA` names `w1`). Every pair must
/// match a channel, and no two channels may share a name.
pub fn resolve_channels(found: &[String], given: &[(String, String)]) -> Result<Vec<Channel>> {
    let mut names: BTreeMap<usize, String> = BTreeMap::new();
    for (id, name) in given {
        let matches: Vec<usize> = found
            .iter()
            .enumerate()
            .filter(|(_, f)| {
                f.eq_ignore_ascii_case(id)
                    || (id.chars().all(|c| c.is_ascii_digit()) && number_of(f) == number_of(id))
            })
            .map(|(i, _)| i)
            .collect();
        match matches.as_slice() {
            [i] => {
                names.insert(*i, name.clone());
            }
            [] => {
                return Err(Error::Invalid(format!(
                    "--channel {id}={name}: the plate has no channel {id:?} (channels found: {})",
                    found.join(", ")
                )))
            }
            _ => {
                return Err(Error::Invalid(format!(
                    "--channel {id}={name}: {id:?} matches several channels ({}); use the full id",
                    matches
                        .iter()
                        .map(|&i| found[i].as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            }
        }
    }
    let channels: Vec<Channel> = found
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let given = names
                .get(&i)
                .cloned()
                .unwrap_or_else(|| id.replace('-', "_"));
            let (name, cells) = split_role(&given);
            Channel {
                id: id.clone(),
                role: if cells {
                    Role::Cells
                } else {
                    Role::from_name(name)
                },
                name: name.to_string(),
            }
        })
        .collect();
    for (i, a) in channels.iter().enumerate() {
        if channels[..i]
            .iter()
            .any(|b| b.name.eq_ignore_ascii_case(&a.name))
        {
            return Err(Error::Invalid(format!(
                "two channels are named {:?}; give each channel its own name",
                a.name
            )));
        }
    }
    Ok(channels)
}

/// Index of the channel cells are grown into: the one with the cells role.
///
/// # Errors
/// When more than one channel has it.
pub fn cells_channel(channels: &[Channel]) -> Result<Option<usize>> {
    let idx: Vec<usize> = (0..channels.len())
        .filter(|&i| channels[i].role == Role::Cells)
        .collect();
    match idx.as_slice() {
        [] => Ok(None),
        [i] => Ok(Some(*i)),
        _ => Err(Error::Invalid(format!(
            "channels {} are all marked :cells; mark only the one cell-body stain",
            idx.iter()
                .map(|&i| channels[i].name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Index of the channel nuclei are segmented on: the first with the nuclear role.
pub fn nuclear_channel(channels: &[Channel]) -> Option<usize> {
    channels.iter().position(|c| c.role == Role::Nuclear)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn roles_from_names() {
        assert_eq!(Role::from_name("Hoechst"), Role::Nuclear);
        assert_eq!(Role::from_name("dapi"), Role::Nuclear);
        assert_eq!(Role::from_name("Phase"), Role::Transmitted);
        assert_eq!(Role::from_name("OCT4"), Role::Marker);
    }

    #[test]
    fn resolves_by_id_and_number() {
        let given = vec![
            parse_channel_arg("W1=DNA").unwrap(),
            parse_channel_arg("2=OCT4").unwrap(),
        ];
        let ch = resolve_channels(&ids(&["w1", "w2", "w3"]), &given).unwrap();
        assert_eq!(ch[0].name, "DNA");
        assert_eq!(ch[0].role, Role::Nuclear);
        assert_eq!(ch[1].name, "OCT4");
        assert_eq!(ch[2].name, "w3");
        assert_eq!(nuclear_channel(&ch), Some(0));
        assert_eq!(cells_channel(&ch).unwrap(), None);
    }

    #[test]
    fn cells_suffix_gives_the_cells_role() {
        let given = vec![
            parse_channel_arg("w1=DNA").unwrap(),
            parse_channel_arg("w2=Actin-1:CELLS").unwrap(),
        ];
        assert_eq!(given[1].1, "Actin_1:cells");
        let ch = resolve_channels(&ids(&["w1", "w2"]), &given).unwrap();
        assert_eq!(ch[1].name, "Actin_1");
        assert_eq!(ch[1].role, Role::Cells);
        assert_eq!(cells_channel(&ch).unwrap(), Some(1));
        let both = resolve_channels(
            &ids(&["w1", "w2"]),
            &[
                ("w1".into(), "A:cells".into()),
                ("w2".into(), "B:cells".into()),
            ],
        )
        .unwrap();
        assert!(cells_channel(&both).is_err());
    }

    #[test]
    fn rejects_unknown_and_duplicate_names() {
        let err = resolve_channels(&ids(&["w1"]), &[("w9".into(), "DNA".into())]).unwrap_err();
        assert!(err.to_string().contains("no channel \"w9\""), "{err}");
        let err = resolve_channels(
            &ids(&["w1", "w2"]),
            &[("w1".into(), "X".into()), ("w2".into(), "x".into())],
        )
        .unwrap_err();
        assert!(err.to_string().contains("two channels"), "{err}");
        assert!(parse_channel_arg("w1").is_err());
        assert!(parse_channel_arg("w1=:cells").is_err());
        assert!(parse_channel_arg("w1=a:b").is_err());
        assert!(parse_channel_arg("w1=a b").is_err());
    }
}
