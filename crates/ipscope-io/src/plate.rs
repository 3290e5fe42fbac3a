//! Plate discovery: which image files form which field, from vendor file-name conventions.
//!
//! A plate directory is walked recursively; every `.tif`/`.tiff`/`.png` file name is matched
//! against a naming scheme (a regex with named groups, as in CellProfiler's "Metadata"
//! module: `Plate`, `Well` or `Row`+`Column`, `Site`/`Field`, `Channel`/`ChannelNumber`, `Z`,
//! `T`). Files that share (plate, well, site, z, t) form one [`Field`], one file (or page) per
//! channel. Nothing here reads pixels; only multi-page files without a channel in their name
//! have their header probed to count the pages.
//!
//! Built-in schemes follow the vendors' documented export names: Molecular Devices
//! ImageXpress / MetaXpress, Revvity Operetta / Opera Phenix (Harmony export), Yokogawa
//! CellVoyager and Sartorius Incucyte. MetaXpress stores z-steps and time points as
//! `ZStep_N` / `TimePoint_N` folders, so those folder names fill `z` / `t` when the file name
//! has none.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use regex::{Captures, Regex, RegexBuilder};

use crate::{Error, Result};

/// How to discover a plate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiscoverOptions {
    /// A custom file-name regex (CellProfiler-style named groups); `None` auto-detects
    /// among [`builtin_schemes`].
    pub pattern: Option<String>,
}

/// A file-name convention: a regex over the file name (not the path) with named groups.
#[derive(Debug, Clone)]
pub struct NamingScheme {
    /// Short name shown to users, e.g. `ImageXpress`; `custom` for `--pattern`.
    pub name: &'static str,
    /// A file name the scheme matches, for error messages and docs.
    pub example: String,
    pub regex: Regex,
}

impl NamingScheme {
    /// A scheme from a user's `--pattern` regex. `dir` is the plate directory, used to name
    /// the error. The regex needs a `Well` group or both `Row` and `Column` groups (group
    /// names are case-insensitive; `Field` = `Site`, `ChannelNumber` = `Channel`, `Col` =
    /// `Column`). Unlike the built-ins it is not anchored: it may match part of the name.
    pub fn custom(pattern: &str, dir: &Path) -> Result<NamingScheme> {
        let bad = |message: String| Error::Pattern {
            path: dir.to_path_buf(),
            pattern: pattern.to_string(),
            message,
        };
        let regex = Regex::new(pattern).map_err(|e| bad(e.to_string()))?;
        let has = |aliases: &[&str]| {
            regex
                .capture_names()
                .flatten()
                .any(|n| aliases.iter().any(|a| n.eq_ignore_ascii_case(a)))
        };
        let locates_well = has(WELL) || (has(ROW) && has(COLUMN));
        if !locates_well {
            return Err(bad(
                "it needs a (?P<Well>...) group, or both (?P<Row>...) and (?P<Column>...) \
                 groups, e.g. '(?P<Plate>.+)_(?P<Well>[A-P][0-9]{2})_s(?P<Site>[0-9]+)_\
                 (?P<Channel>w[0-9])'"
                    .to_string(),
            ));
        }
        Ok(NamingScheme {
            name: "custom",
            example: String::new(),
            regex,
        })
    }
}

const PLATE: &[&str] = &["Plate"];
const WELL: &[&str] = &["Well"];
const ROW: &[&str] = &["Row"];
const COLUMN: &[&str] = &["Column", "Col"];
const SITE: &[&str] = &["Site", "Field"];
const CHANNEL: &[&str] = &["Channel", "ChannelNumber"];
const Z: &[&str] = &["Z"];
const T: &[&str] = &["T"];

fn builtin(name: &'static str, example: &str, pattern: &str) -> NamingScheme {
    let regex = RegexBuilder::new(pattern)
        .case_insensitive(true)
        .build()
        // The patterns are constants checked by the tests, not input.
        .unwrap_or_else(|e| panic!("built-in pattern {name} is invalid: {e}"));
    NamingScheme {
        name,
        example: example.to_string(),
        regex,
    }
}

/// The built-in vendor schemes, in auto-detection priority order.
pub fn builtin_schemes() -> Vec<NamingScheme> {
    const UUID: &str = "[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}";
    const WELL_RE: &str = "(?P<Well>[A-Z]{1,2}[0-9]{1,3})";
    vec![
        builtin(
            "ImageXpress",
            "Plate1_B02_s3_w2.tif",
            &format!(
                r"^(?P<Plate>.+?)_{WELL_RE}(?:_s(?P<Site>[0-9]+))?(?:_(?P<Channel>w[0-9]+)(?:{UUID})?)?\.(?:tiff?|png)$"
            ),
        ),
        builtin(
            "Operetta",
            "r02c02f01p01-ch1sk1fk1fl1.tiff",
            r"^r(?P<Row>[0-9]{1,2})c(?P<Column>[0-9]{1,2})f(?P<Site>[0-9]+)p(?P<Z>[0-9]+)-(?P<Channel>ch[0-9]+)sk(?P<T>[0-9]+)fk[0-9]+fl[0-9]+\.(?:tiff?|png)$",
        ),
        builtin(
            "CellVoyager",
            "Plate1_B02_T0001F001L01A01Z01C01.tif",
            &format!(
                r"^(?P<Plate>.+?)_{WELL_RE}_T(?P<T>[0-9]+)F(?P<Site>[0-9]+)L[0-9]+A[0-9]+Z(?P<Z>[0-9]+)(?P<Channel>C[0-9]+)\.(?:tiff?|png)$"
            ),
        ),
        builtin(
            "Incucyte",
            "VID123_B2_1_00d04h00m.tif",
            &format!(
                r"^(?P<Plate>.+?)_{WELL_RE}_(?P<Site>[0-9]+)_(?P<Days>[0-9]+)d(?P<Hours>[0-9]+)h(?P<Minutes>[0-9]+)m\.(?:tiff?|png)$"
            ),
        ),
    ]
}

/// What a file name says about its image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    pub plate: Option<String>,
    /// Normalised well name, e.g. `B02`.
    pub well: String,
    /// 1-based row (A = 1).
    pub row: u32,
    /// 1-based column.
    pub col: u32,
    /// 1-based site (field of view); 1 when the name has none.
    pub site: u32,
    pub channel: Option<String>,
    pub z: Option<u32>,
    /// Time point; for Incucyte names, minutes since the start of the experiment.
    pub t: Option<u32>,
}

fn group<'h>(scheme: &NamingScheme, caps: &Captures<'h>, aliases: &[&str]) -> Option<&'h str> {
    scheme
        .regex
        .capture_names()
        .flatten()
        .filter(|n| aliases.iter().any(|a| n.eq_ignore_ascii_case(a)))
        .find_map(|n| caps.name(n))
        .map(|m| m.as_str())
}

fn number(s: &str) -> Option<u32> {
    s.trim().parse().ok()
}

/// Parses a file name (not a path) with `scheme`; `None` when it does not match or a number
/// or well in it is out of range.
pub fn parse_file_name(name: &str, scheme: &NamingScheme) -> Option<FileMeta> {
    let caps = scheme.regex.captures(name)?;
    let g = |aliases: &[&str]| group(scheme, &caps, aliases);
    let (well, row, col) = match g(WELL) {
        Some(w) => normalize_well(w)?,
        None => {
            let row = parse_row(g(ROW)?)?;
            let col = number(g(COLUMN)?)?;
            normalize_well(&well_name(row, col))?
        }
    };
    let site = match g(SITE) {
        Some(s) => number(s)?,
        None => 1,
    };
    let z = match g(Z) {
        Some(s) => Some(number(s)?),
        None => None,
    };
    let t = match g(T) {
        Some(s) => Some(number(s)?),
        None => match (g(&["Days"]), g(&["Hours"]), g(&["Minutes"])) {
            (None, None, None) => None,
            (d, h, m) => {
                let part = |v: Option<&str>| v.map_or(Some(0), number);
                let minutes =
                    u64::from(part(d)?) * 1440 + u64::from(part(h)?) * 60 + u64::from(part(m)?);
                Some(u32::try_from(minutes).ok()?)
            }
        },
    };
    Some(FileMeta {
        plate: g(PLATE).map(str::to_string).filter(|p| !p.is_empty()),
        well,
        row,
        col,
        site,
        channel: g(CHANNEL).map(str::to_string).filter(|c| !c.is_empty()),
        z,
        t,
    })
}

/// A row given as a letter (`B`, `AA`) or a 1-based number (`2`, `02`).
fn parse_row(s: &str) -> Option<u32> {
    let s = s.trim();
    if s.chars().all(|c| c.is_ascii_digit()) {
        number(s)
    } else {
        row_from_letters(s)
    }
}

const MAX_ROW: u32 = 32; // 1536-well plates: A..Z, AA..AF
const MAX_COL: u32 = 48;

fn row_from_letters(s: &str) -> Option<u32> {
    let b = s.as_bytes();
    let letter = |c: u8| {
        let c = c.to_ascii_uppercase();
        c.is_ascii_uppercase().then(|| u32::from(c - b'A') + 1)
    };
    let row = match b {
        [a] => letter(*a)?,
        [a, b] if a.eq_ignore_ascii_case(&b'A') => 26 + letter(*b)?,
        _ => return None,
    };
    (row <= MAX_ROW).then_some(row)
}

/// Normalises a well name: `B2`, `b02`, `B002` → (`B02`, 2, 2). Rows run A..Z then AA..AF
/// (1536-well plates), columns 1..48; anything else is `None`.
pub fn normalize_well(s: &str) -> Option<(String, u32, u32)> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_digit())?;
    let (letters, digits) = s.split_at(split);
    if digits.is_empty() || digits.len() > 3 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let row = row_from_letters(letters)?;
    let col = number(digits)?;
    if !(1..=MAX_COL).contains(&col) {
        return None;
    }
    Some((well_name(row, col), row, col))
}

/// The conventional name of a well from its 1-based row and column: (2, 3) → `B03`,
/// (27, 1) → `AA01`. Rows outside 1..52 (no plate has them) come out as `R<row>C<col>`.
pub fn well_name(row: u32, col: u32) -> String {
    let letter = |i: u32| char::from(b'A' + (i - 1) as u8);
    match row {
        1..=26 => format!("{}{col:02}", letter(row)),
        27..=52 => format!("A{}{col:02}", letter(row - 26)),
        _ => format!("R{row}C{col:02}"),
    }
}

/// Compares strings so that embedded numbers sort by value: `w2` < `w10`, `ch9` < `ch10`.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(&cb) {
        let ord = match (x, y) {
            ((true, x), (true, y)) => {
                let (xt, yt) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                xt.len().cmp(&yt.len()).then_with(|| xt.cmp(yt))
            }
            ((_, x), (_, y)) => x.to_lowercase().cmp(&y.to_lowercase()),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    ca.len().cmp(&cb.len()).then_with(|| a.cmp(b))
}

/// One channel of a field: a file, and the page inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelFile {
    pub channel: String,
    pub path: PathBuf,
    pub page: usize,
}

/// One field of view: the images of every channel at one (plate, well, site, z, t).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub plate: String,
    pub well: String,
    pub row: u32,
    pub col: u32,
    pub site: u32,
    pub z: Option<u32>,
    pub t: Option<u32>,
    /// Sorted by channel id in natural order (`w2` before `w10`).
    pub channels: Vec<ChannelFile>,
}

/// Something wrong with a plate that does not stop discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A field lacks a channel that other fields have; the field keeps the channels it has.
    MissingChannel {
        well: String,
        site: u32,
        channel: String,
    },
    /// Several files claim the same field and channel; the first path (sorted) is used.
    Duplicate {
        well: String,
        site: u32,
        channel: String,
        paths: Vec<PathBuf>,
    },
    /// A file without a channel in its name whose header could not be read to count its
    /// pages; it is listed as one channel `c1` and will fail again when decoded.
    Unreadable { path: PathBuf, message: String },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::MissingChannel {
                well,
                site,
                channel,
            } => write!(
                f,
                "well {well} site {site}: no image for channel {channel} (other fields have it)"
            ),
            Problem::Duplicate {
                well,
                site,
                channel,
                paths,
            } => {
                let list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
                write!(
                    f,
                    "well {well} site {site} channel {channel}: {} files claim this image, \
                     using the first: {}",
                    paths.len(),
                    list.join(", ")
                )
            }
            Problem::Unreadable { path, message } => {
                write!(f, "{}: cannot read the header: {message}", path.display())
            }
        }
    }
}

/// A discovered plate: its fields, channels and anything odd about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Plate {
    /// The plate id from the file names if all fields agree, else the directory name.
    pub id: String,
    pub root: PathBuf,
    /// The naming scheme used (`ImageXpress`, ..., or `custom`).
    pub scheme: String,
    /// Sorted by (plate, row, col, site, z, t).
    pub fields: Vec<Field>,
    /// Every channel id on the plate, natural order.
    pub channels: Vec<String>,
    pub problems: Vec<Problem>,
    /// Image files whose names the scheme did not match.
    pub unmatched: Vec<PathBuf>,
}

impl Plate {
    /// Wells with at least one field, in plate order (row, then column).
    pub fn wells(&self) -> Vec<String> {
        let set: BTreeSet<(u32, u32, &str)> = self
            .fields
            .iter()
            .map(|f| (f.row, f.col, f.well.as_str()))
            .collect();
        set.into_iter().map(|(_, _, w)| w.to_string()).collect()
    }

    /// Site numbers used anywhere on the plate, ascending.
    pub fn sites(&self) -> Vec<u32> {
        let set: BTreeSet<u32> = self.fields.iter().map(|f| f.site).collect();
        set.into_iter().collect()
    }
}

fn is_image_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".tif", ".tiff", ".png"].iter().any(|e| lower.ends_with(e))
}

/// Image files under `dir`, recursively, skipping hidden entries; sorted by path.
fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        // Symlinked directories are followed once; the canonical path stops loops.
        if let Ok(canon) = d.canonicalize() {
            if !seen.insert(canon) {
                continue;
            }
        }
        let entries = std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&d, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                continue; // not UTF-8: no vendor writes such names
            };
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            let Ok(meta) = std::fs::metadata(&path) else {
                continue; // a dangling link
            };
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() && is_image_name(name) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `TimePoint_N` / `ZStep_N` folders between the plate root and the file (MetaXpress layout).
fn folder_z_t(root: &Path, path: &Path) -> (Option<u32>, Option<u32>) {
    let (mut z, mut t) = (None, None);
    let rel = path.strip_prefix(root).unwrap_or(path);
    for comp in rel.parent().into_iter().flat_map(|p| p.components()) {
        let s = comp.as_os_str().to_string_lossy().to_ascii_lowercase();
        if let Some(n) = s.strip_prefix("timepoint_").and_then(number) {
            t = Some(n);
        } else if let Some(n) = s.strip_prefix("zstep_").and_then(number) {
            z = Some(n);
        }
    }
    (z, t)
}

fn scheme_list(schemes: &[NamingScheme]) -> String {
    schemes
        .iter()
        .map(|s| format!("{} (e.g. {})", s.name, s.example))
        .collect::<Vec<_>>()
        .join(", ")
}

/// (plate, row, col, site, z, t): the sort order of fields.
type FieldKey = (String, u32, u32, u32, Option<u32>, Option<u32>);
/// channel id -> every (path, page) claiming it, in path order.
type ChannelClaims = BTreeMap<String, Vec<(PathBuf, usize)>>;

/// Finds the fields of the plate in `dir`.
///
/// With no `pattern`, the built-in scheme matching the most file names wins (ties go to the
/// earlier scheme in [`builtin_schemes`]). Fails when the directory cannot be read or no file
/// matches; problems that leave a usable plate go to [`Plate::problems`].
pub fn discover(dir: &Path, opts: &DiscoverOptions) -> Result<Plate> {
    let meta = std::fs::metadata(dir).map_err(|e| Error::io(dir, e))?;
    if !meta.is_dir() {
        return Err(Error::Discover {
            path: dir.to_path_buf(),
            message: "not a directory; give the folder that holds the plate's images".into(),
        });
    }
    let files = walk(dir)?;
    let schemes = match &opts.pattern {
        Some(p) => vec![NamingScheme::custom(p, dir)?],
        None => builtin_schemes(),
    };
    let names: Vec<&str> = files
        .iter()
        .map(|p| p.file_name().and_then(|n| n.to_str()).unwrap_or(""))
        .collect();
    let mut best: Option<(usize, usize)> = None;
    for (i, scheme) in schemes.iter().enumerate() {
        let n = names
            .iter()
            .filter(|n| parse_file_name(n, scheme).is_some())
            .count();
        if n > 0 && best.is_none_or(|(_, b)| n > b) {
            best = Some((i, n));
        }
    }
    let Some((chosen, _)) = best else {
        let message = if files.is_empty() {
            "no .tif, .tiff or .png files found (hidden files and folders are skipped)".to_string()
        } else if opts.pattern.is_some() {
            format!(
                "none of the {} image files (e.g. {}) matches the --pattern regex",
                files.len(),
                names[0]
            )
        } else {
            format!(
                "none of the {} image files (e.g. {}) matches a known naming scheme; tried {}; \
                 give --pattern with a regex using named groups (Plate, Well or Row+Column, \
                 Site, Channel, Z, T)",
                files.len(),
                names[0],
                scheme_list(&schemes)
            )
        };
        return Err(Error::Discover {
            path: dir.to_path_buf(),
            message,
        });
    };
    let scheme = &schemes[chosen];
    let dir_name = dir
        .canonicalize()
        .ok()
        .and_then(|c| c.file_name().map(|n| n.to_string_lossy().into_owned()))
        .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "plate".to_string());

    let mut unmatched = Vec::new();
    let mut unreadable = Vec::new();
    let mut fields: BTreeMap<FieldKey, (String, ChannelClaims)> = BTreeMap::new();
    for (path, name) in files.iter().zip(&names) {
        let Some(mut m) = parse_file_name(name, scheme) else {
            unmatched.push(path.clone());
            continue;
        };
        let (fz, ft) = folder_z_t(dir, path);
        m.z = m.z.or(fz);
        m.t = m.t.or(ft);
        let channels: Vec<(String, usize)> = match &m.channel {
            Some(c) => vec![(c.clone(), 0)],
            None => match crate::decode::probe(path) {
                Ok(info) if info.pages > 1 => {
                    let named = info.channel_names.len() == info.pages;
                    (0..info.pages)
                        .map(|k| {
                            let c = if named {
                                info.channel_names[k].clone()
                            } else {
                                format!("c{}", k + 1)
                            };
                            (c, k)
                        })
                        .collect()
                }
                Ok(_) => vec![("c1".to_string(), 0)],
                Err(e) => {
                    unreadable.push(Problem::Unreadable {
                        path: path.clone(),
                        message: error_cause(&e),
                    });
                    vec![("c1".to_string(), 0)]
                }
            },
        };
        let plate = m.plate.clone().unwrap_or_else(|| dir_name.clone());
        let key = (plate, m.row, m.col, m.site, m.z, m.t);
        let entry = fields
            .entry(key)
            .or_insert_with(|| (m.well.clone(), BTreeMap::new()));
        for (c, page) in channels {
            entry.1.entry(c).or_default().push((path.clone(), page));
        }
    }

    let mut all_channels: Vec<String> = fields
        .values()
        .flat_map(|(_, chans)| chans.keys().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    all_channels.sort_by(|a, b| natural_cmp(a, b));

    let mut out_fields = Vec::with_capacity(fields.len());
    let mut problems = Vec::new();
    for ((plate, row, col, site, z, t), (well, chans)) in fields {
        let mut ordered: Vec<(&String, &Vec<(PathBuf, usize)>)> = chans.iter().collect();
        ordered.sort_by(|a, b| natural_cmp(a.0, b.0));
        let mut channels = Vec::with_capacity(chans.len());
        for (channel, files) in ordered {
            if files.len() > 1 {
                problems.push(Problem::Duplicate {
                    well: well.clone(),
                    site,
                    channel: channel.clone(),
                    paths: files.iter().map(|(p, _)| p.clone()).collect(),
                });
            }
            let (path, page) = files[0].clone();
            channels.push(ChannelFile {
                channel: channel.clone(),
                path,
                page,
            });
        }
        for c in &all_channels {
            if !chans.contains_key(c) {
                problems.push(Problem::MissingChannel {
                    well: well.clone(),
                    site,
                    channel: c.clone(),
                });
            }
        }
        out_fields.push(Field {
            plate,
            well,
            row,
            col,
            site,
            z,
            t,
            channels,
        });
    }
    problems.extend(unreadable);

    let first_plate = out_fields.first().map(|f| f.plate.clone());
    let id = match first_plate {
        Some(p) if out_fields.iter().all(|f| f.plate == p) => p,
        _ => dir_name,
    };
    Ok(Plate {
        id,
        root: dir.to_path_buf(),
        scheme: scheme.name.to_string(),
        fields: out_fields,
        channels: all_channels,
        problems,
        unmatched,
    })
}

/// The error text without the leading path (the problem already names the file).
fn error_cause(e: &Error) -> String {
    match e {
        Error::Decode { message, .. }
        | Error::Unsupported { message, .. }
        | Error::UnknownFormat { message, .. } => message.clone(),
        Error::Empty { .. } => "file is empty (0 bytes)".to_string(),
        Error::Io { source, .. } => source.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::tests::{ome_tiff, tiff_pages};
    use tiff::encoder::{colortype, Compression};

    fn scheme(name: &str) -> NamingScheme {
        builtin_schemes()
            .into_iter()
            .find(|s| s.name == name)
            .unwrap()
    }

    fn touch(root: &Path, rel: &str) -> PathBuf {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"").unwrap();
        path
    }

    fn meta(
        plate: Option<&str>,
        well: &str,
        (row, col): (u32, u32),
        site: u32,
        channel: Option<&str>,
        z: Option<u32>,
        t: Option<u32>,
    ) -> FileMeta {
        FileMeta {
            plate: plate.map(str::to_string),
            well: well.to_string(),
            row,
            col,
            site,
            channel: channel.map(str::to_string),
            z,
            t,
        }
    }

    #[test]
    fn wells_normalise() {
        for s in ["B2", "b02", "B002", " B02 "] {
            assert_eq!(normalize_well(s), Some(("B02".to_string(), 2, 2)), "{s}");
        }
        assert_eq!(normalize_well("P24"), Some(("P24".to_string(), 16, 24)));
        assert_eq!(normalize_well("Z1"), Some(("Z01".to_string(), 26, 1)));
        assert_eq!(normalize_well("aa1"), Some(("AA01".to_string(), 27, 1)));
        assert_eq!(normalize_well("AF48"), Some(("AF48".to_string(), 32, 48)));
        for bad in [
            "", "B", "12", "B0", "B49", "AG01", "BA01", "2B", "B2x", "B-2", "B0002",
        ] {
            assert_eq!(normalize_well(bad), None, "{bad:?}");
        }
        assert_eq!(well_name(2, 3), "B03");
        assert_eq!(well_name(16, 24), "P24");
        assert_eq!(well_name(27, 1), "AA01");
        assert_eq!(well_name(32, 48), "AF48");
    }

    #[test]
    fn natural_order() {
        let mut v = vec!["w10", "w2", "W1", "ch10", "ch9", "c1", "DAPI"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["c1", "ch9", "ch10", "DAPI", "W1", "w2", "w10"]);
        assert_eq!(natural_cmp("C01", "C1"), Ordering::Less); // equal value, tie on text
        assert_eq!(natural_cmp("a", "a"), Ordering::Equal);
    }

    #[test]
    fn imagexpress_names() {
        let s = scheme("ImageXpress");
        assert_eq!(
            parse_file_name("Plate1_B02_s3_w2.tif", &s),
            Some(meta(
                Some("Plate1"),
                "B02",
                (2, 2),
                3,
                Some("w2"),
                None,
                None
            ))
        );
        assert_eq!(
            parse_file_name(
                "Plate1_B02_s1_w1A1B2C3D4-1234-5678-9ABC-DEF012345678.tif",
                &s
            ),
            Some(meta(
                Some("Plate1"),
                "B02",
                (2, 2),
                1,
                Some("w1"),
                None,
                None
            ))
        );
        assert_eq!(
            parse_file_name("My_Exp_2024_H12_w3.TIF", &s),
            Some(meta(
                Some("My_Exp_2024"),
                "H12",
                (8, 12),
                1,
                Some("w3"),
                None,
                None
            ))
        );
        assert_eq!(
            parse_file_name("Plate1_B2_s2.tiff", &s),
            Some(meta(Some("Plate1"), "B02", (2, 2), 2, None, None, None))
        );
        assert_eq!(parse_file_name("Plate1_B02_s1_w1_thumb.tif", &s), None);
        // Plates converted to PNG keep their vendor names.
        assert_eq!(
            parse_file_name("Plate1_B02_s1_w1.png", &s).map(|m| m.channel),
            Some(Some("w1".to_string()))
        );
    }

    #[test]
    fn operetta_names() {
        let s = scheme("Operetta");
        assert_eq!(
            parse_file_name("r02c03f04p05-ch2sk6fk1fl1.tiff", &s),
            Some(meta(None, "B03", (2, 3), 4, Some("ch2"), Some(5), Some(6)))
        );
        assert_eq!(
            parse_file_name("r16c24f01p01-ch1sk1fk1fl1.tif", &s),
            Some(meta(
                None,
                "P24",
                (16, 24),
                1,
                Some("ch1"),
                Some(1),
                Some(1)
            ))
        );
        assert_eq!(parse_file_name("r00c01f01p01-ch1sk1fk1fl1.tiff", &s), None);
    }

    #[test]
    fn cellvoyager_names() {
        let s = scheme("CellVoyager");
        assert_eq!(
            parse_file_name("Plate1_B02_T0001F003L01A02Z04C02.tif", &s),
            Some(meta(
                Some("Plate1"),
                "B02",
                (2, 2),
                3,
                Some("C02"),
                Some(4),
                Some(1)
            ))
        );
    }

    #[test]
    fn incucyte_names_give_minutes() {
        let s = scheme("Incucyte");
        assert_eq!(
            parse_file_name("VID123_B2_1_00d04h00m.tif", &s),
            Some(meta(
                Some("VID123"),
                "B02",
                (2, 2),
                1,
                None,
                None,
                Some(240)
            ))
        );
        assert_eq!(
            parse_file_name("VID123_C11_3_01d00h30m.png", &s).map(|m| (m.site, m.t)),
            Some((3, Some(1470)))
        );
    }

    #[test]
    fn each_example_matches_only_its_own_scheme() {
        let schemes = builtin_schemes();
        assert_eq!(
            schemes.iter().map(|s| s.name).collect::<Vec<_>>(),
            ["ImageXpress", "Operetta", "CellVoyager", "Incucyte"]
        );
        for s in &schemes {
            for other in &schemes {
                assert_eq!(
                    parse_file_name(&s.example, other).is_some(),
                    s.name == other.name,
                    "{} example under {}",
                    s.name,
                    other.name
                );
            }
        }
    }

    #[test]
    fn custom_patterns() {
        let dir = Path::new("plate");
        let s = NamingScheme::custom(
            r"(?P<Row>[A-P])(?P<Column>[0-9]{2})_f(?P<Field>[0-9]+)_(?P<ChannelNumber>[0-9])",
            dir,
        )
        .unwrap();
        assert_eq!(s.name, "custom");
        assert_eq!(
            parse_file_name("exp7_C05_f2_1.png", &s),
            Some(meta(None, "C05", (3, 5), 2, Some("1"), None, None))
        );
        let s = NamingScheme::custom(
            r"^row(?P<row>[0-9]+)_col(?P<col>[0-9]+)_z(?P<Z>[0-9]+)_t(?P<T>[0-9]+)",
            dir,
        )
        .unwrap();
        assert_eq!(
            parse_file_name("row4_col11_z2_t9.tif", &s),
            Some(meta(None, "D11", (4, 11), 1, None, Some(2), Some(9)))
        );
        assert_eq!(parse_file_name("row40_col11_z2_t9.tif", &s), None);

        let err = NamingScheme::custom(r"(?P<Well>[A-P", dir).unwrap_err();
        assert!(
            matches!(&err, Error::Pattern { path, .. } if path == dir),
            "{err:?}"
        );
        let err = NamingScheme::custom(r"(?P<Row>[A-P])_(?P<Site>\d)", dir).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("Well") && msg.contains("Column") && msg.starts_with("plate"),
            "{msg}"
        );
    }

    #[test]
    fn discovers_imagexpress_with_problems() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("run42");
        let first = touch(&root, "Plate1_B02_s1_w1.tif");
        for f in [
            "Plate1_B02_s1_w2.tif",
            "Plate1_B02_s2_w1.tif",
            "Plate1_B02_s2_w2.tif",
            "Plate1_B03_s1_w1.tif",  // no w2: missing channel
            ".Plate1_B04_s1_w1.tif", // hidden
            ".thumbs/Plate1_B05_s1_w1.tif",
            "notes.txt",
        ] {
            touch(&root, f);
        }
        let dup = touch(&root, "sub/Plate1_B02_s1_w1.tif");
        let thumb = touch(&root, "Plate1_B02_s1_w1_thumb.tif");

        let plate = discover(&root, &DiscoverOptions::default()).unwrap();
        assert_eq!(plate.scheme, "ImageXpress");
        assert_eq!(plate.id, "Plate1");
        assert_eq!(plate.root, root);
        assert_eq!(plate.channels, ["w1", "w2"]);
        let got: Vec<(&str, u32, Vec<&str>)> = plate
            .fields
            .iter()
            .map(|f| {
                let chans = f.channels.iter().map(|c| c.channel.as_str()).collect();
                (f.well.as_str(), f.site, chans)
            })
            .collect();
        assert_eq!(
            got,
            [
                ("B02", 1, vec!["w1", "w2"]),
                ("B02", 2, vec!["w1", "w2"]),
                ("B03", 1, vec!["w1"]),
            ]
        );
        assert_eq!(plate.fields[0].channels[0].path, first);
        assert_eq!(plate.fields[0].channels[0].page, 0);
        assert_eq!(plate.fields[0].plate, "Plate1");
        assert_eq!((plate.fields[2].row, plate.fields[2].col), (2, 3));
        assert_eq!(
            plate.problems,
            [
                Problem::Duplicate {
                    well: "B02".into(),
                    site: 1,
                    channel: "w1".into(),
                    paths: vec![first.clone(), dup],
                },
                Problem::MissingChannel {
                    well: "B03".into(),
                    site: 1,
                    channel: "w2".into(),
                },
            ]
        );
        assert!(plate.problems[0].to_string().contains("using the first"));
        assert_eq!(
            plate.problems[1].to_string(),
            "well B03 site 1: no image for channel w2 (other fields have it)"
        );
        assert_eq!(plate.unmatched, [thumb]);
        assert_eq!(plate.wells(), ["B02", "B03"]);
        assert_eq!(plate.sites(), [1, 2]);
    }

    #[test]
    fn discovers_operetta_and_cellvoyager() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("Images");
        for f in [
            "r01c02f01p01-ch1sk1fk1fl1.tiff",
            "r01c02f01p01-ch2sk1fk1fl1.tiff",
            "r01c02f01p02-ch1sk1fk1fl1.tiff",
            "r01c02f01p02-ch2sk1fk1fl1.tiff",
            "r01c01f02p01-ch10sk1fk1fl1.tiff",
            "r01c01f02p01-ch2sk1fk1fl1.tiff",
            "r01c01f02p01-ch1sk1fk1fl1.tiff",
            "Plate9_A01_s1_w1.tif", // a stray ImageXpress name loses the vote
        ] {
            touch(&root, f);
        }
        let plate = discover(&root, &DiscoverOptions::default()).unwrap();
        assert_eq!(plate.scheme, "Operetta");
        assert_eq!(plate.id, "Images");
        assert_eq!(plate.channels, ["ch1", "ch2", "ch10"]);
        let keys: Vec<(&str, u32, Option<u32>, Option<u32>)> = plate
            .fields
            .iter()
            .map(|f| (f.well.as_str(), f.site, f.z, f.t))
            .collect();
        assert_eq!(
            keys,
            [
                ("A01", 2, Some(1), Some(1)),
                ("A02", 1, Some(1), Some(1)),
                ("A02", 1, Some(2), Some(1)),
            ]
        );
        assert_eq!(plate.fields[0].plate, "Images");
        assert_eq!(
            plate.fields[0]
                .channels
                .iter()
                .map(|c| c.channel.as_str())
                .collect::<Vec<_>>(),
            ["ch1", "ch2", "ch10"]
        );
        assert_eq!(plate.problems.len(), 2); // A02 fields lack ch10
        assert_eq!(plate.unmatched, [root.join("Plate9_A01_s1_w1.tif")]);

        let root = tmp.path().join("cv");
        for f in [
            "P7_B02_T0001F001L01A01Z01C01.tif",
            "P7_B02_T0001F001L01A02Z01C02.tif",
            "P7_B02_T0002F001L01A01Z01C01.tif",
            "P7_B02_T0002F001L01A02Z01C02.tif",
        ] {
            touch(&root, f);
        }
        let plate = discover(&root, &DiscoverOptions::default()).unwrap();
        assert_eq!(
            (plate.scheme.as_str(), plate.id.as_str()),
            ("CellVoyager", "P7")
        );
        assert_eq!(plate.fields.len(), 2);
        assert_eq!(plate.fields[1].t, Some(2));
        assert_eq!(plate.channels, ["C01", "C02"]);
        assert!(plate.problems.is_empty(), "{:?}", plate.problems);
    }

    #[test]
    fn discovers_incucyte_and_probes_pages() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("inc");
        std::fs::create_dir_all(&root).unwrap();
        let one = tiff_pages::<colortype::Gray8>(2, 2, &[&[1, 2, 3, 4]], Compression::Uncompressed);
        std::fs::write(root.join("VID5_B2_1_00d00h00m.tif"), &one).unwrap();
        std::fs::write(root.join("VID5_B2_1_00d04h00m.tif"), &one).unwrap();
        std::fs::write(root.join("VID5_A1_2_00d04h00m.tif"), &one).unwrap();
        let empty = touch(&root, "VID5_C3_1_00d00h00m.tif");
        let plate = discover(&root, &DiscoverOptions::default()).unwrap();
        assert_eq!(
            (plate.scheme.as_str(), plate.id.as_str()),
            ("Incucyte", "VID5")
        );
        assert_eq!(plate.channels, ["c1"]);
        let keys: Vec<(&str, u32, Option<u32>)> = plate
            .fields
            .iter()
            .map(|f| (f.well.as_str(), f.site, f.t))
            .collect();
        assert_eq!(
            keys,
            [
                ("A01", 2, Some(240)),
                ("B02", 1, Some(0)),
                ("B02", 1, Some(240)),
                ("C03", 1, Some(0)),
            ]
        );
        assert!(
            matches!(&plate.problems[..], [Problem::Unreadable { path, message }]
                if path == &empty && message.contains("empty")),
            "{:?}",
            plate.problems
        );
    }

    #[test]
    fn multi_page_files_become_channels() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("stacks");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("B02_s1.tif"), ome_tiff(
            r#"<OME><Image><Pixels><Channel Name="DAPI"/><Channel Name="OCT4"/></Pixels></Image></OME>"#,
            2,
        ))
        .unwrap();
        let pages: Vec<&[u8]> = vec![&[1u8; 4], &[2; 4], &[3; 4]];
        let three = tiff_pages::<colortype::Gray8>(2, 2, &pages, Compression::Uncompressed);
        std::fs::write(root.join("C03_s1.tif"), three).unwrap();
        let opts = DiscoverOptions {
            pattern: Some(r"^(?P<Well>[A-P][0-9]{2})_s(?P<Site>[0-9]+)\.tif$".into()),
        };
        let plate = discover(&root, &opts).unwrap();
        assert_eq!(plate.scheme, "custom");
        assert_eq!(plate.id, "stacks");
        let chans = |i: usize| -> Vec<(String, usize)> {
            plate.fields[i]
                .channels
                .iter()
                .map(|c| (c.channel.clone(), c.page))
                .collect()
        };
        assert_eq!(chans(0), [("DAPI".into(), 0), ("OCT4".into(), 1)]);
        assert_eq!(
            chans(1),
            [("c1".into(), 0), ("c2".into(), 1), ("c3".into(), 2)]
        );
        assert_eq!(plate.channels, ["c1", "c2", "c3", "DAPI", "OCT4"]);
        assert_eq!(plate.problems.len(), 5); // each field lacks the other's channels
    }

    #[test]
    fn metaxpress_timepoint_and_zstep_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("mx");
        for f in [
            "TimePoint_1/ZStep_1/Plate1_B02_s1_w1.tif",
            "TimePoint_1/ZStep_2/Plate1_B02_s1_w1.tif",
            "TimePoint_2/ZStep_1/Plate1_B02_s1_w1.tif",
        ] {
            touch(&root, f);
        }
        let plate = discover(&root, &DiscoverOptions::default()).unwrap();
        let zt: Vec<(Option<u32>, Option<u32>)> = plate.fields.iter().map(|f| (f.z, f.t)).collect();
        // Sorted by z before t, as documented.
        assert_eq!(
            zt,
            [(Some(1), Some(1)), (Some(1), Some(2)), (Some(2), Some(1))]
        );
        assert!(plate.problems.is_empty());
    }

    #[test]
    fn discovery_errors_name_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let empty = tmp.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        touch(&empty, "readme.md");
        let err = discover(&empty, &DiscoverOptions::default()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Discover { .. }), "{err:?}");
        assert!(msg.contains("empty") && msg.contains("no .tif"), "{msg}");

        let odd = tmp.path().join("odd");
        touch(&odd, "scan 1.tif");
        touch(&odd, "scan 2.TIF");
        let msg = discover(&odd, &DiscoverOptions::default())
            .unwrap_err()
            .to_string();
        for needle in [
            "odd",
            "scan 1.tif",
            "ImageXpress (e.g. Plate1_B02_s3_w2.tif)",
            "Operetta (e.g. r02c02f01p01-ch1sk1fk1fl1.tiff)",
            "CellVoyager (e.g. Plate1_B02_T0001F001L01A01Z01C01.tif)",
            "Incucyte (e.g. VID123_B2_1_00d04h00m.tif)",
            "--pattern",
        ] {
            assert!(msg.contains(needle), "{needle:?} not in {msg}");
        }

        let opts = DiscoverOptions {
            pattern: Some("(?P<Well>[A-P][0-9]{2})".into()),
        };
        let msg = discover(&odd, &opts).unwrap_err().to_string();
        assert!(msg.contains("--pattern regex"), "{msg}");
        let opts = DiscoverOptions {
            pattern: Some("(".into()),
        };
        assert!(matches!(
            discover(&odd, &opts).unwrap_err(),
            Error::Pattern { .. }
        ));

        let missing = tmp.path().join("missing");
        let err = discover(&missing, &DiscoverOptions::default()).unwrap_err();
        assert!(
            matches!(&err, Error::Io { path, .. } if path == &missing),
            "{err:?}"
        );
        let file = touch(tmp.path(), "file.tif");
        let err = discover(&file, &DiscoverOptions::default()).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }
}
