//! Plate layouts: a CSV (or tab-separated) file with one row per well giving its treatment.
//!
//! Columns follow CellProfiler / pycytominer naming: `Metadata_Well` (or `Well`) names the
//! well, and every other column becomes `Metadata_<name>` (existing `Metadata_` prefixes are
//! kept). An optional `Metadata_Role` column marks each well `negative`, `positive`,
//! `treated` or `empty` for plate QC and normalisation.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use crate::plate::normalize_well;
use crate::{Error, Result};

/// The well column's canonical name.
pub const WELL_COLUMN: &str = "Metadata_Well";
/// The role column's canonical name.
pub const ROLE_COLUMN: &str = "Metadata_Role";
/// Values allowed in [`ROLE_COLUMN`] (stored lower-case; blank is allowed too).
pub const ROLES: [&str; 4] = ["negative", "positive", "treated", "empty"];

/// A parsed plate layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub path: PathBuf,
    /// `Metadata_*` column names other than `Metadata_Well`, in file order.
    pub columns: Vec<String>,
    /// (row, col, well, values aligned with `columns`) in file order.
    rows: Vec<(u32, u32, String, Vec<String>)>,
    index: HashMap<String, usize>,
}

impl Layout {
    /// The values of `well` (any spelling [`normalize_well`] accepts), aligned with
    /// [`Layout::columns`].
    pub fn get(&self, well: &str) -> Option<&[String]> {
        let (well, _, _) = normalize_well(well)?;
        let &i = self.index.get(&well)?;
        Some(&self.rows[i].3)
    }

    /// Every well in the layout, in plate order (row, then column).
    pub fn wells(&self) -> Vec<String> {
        let mut v: Vec<(u32, u32, &str)> = self
            .rows
            .iter()
            .map(|(r, c, w, _)| (*r, *c, w.as_str()))
            .collect();
        v.sort_unstable();
        v.into_iter().map(|(_, _, w)| w.to_string()).collect()
    }

    /// Whether every non-empty value of column `column` is a finite number (and at least one
    /// value is present): such columns (doses, concentrations) can be used as x in curves.
    pub fn is_numeric(&self, column: usize) -> bool {
        if column >= self.columns.len() {
            return false;
        }
        let mut any = false;
        for (_, _, _, values) in &self.rows {
            let v = values[column].as_str();
            if v.is_empty() {
                continue;
            }
            match v.parse::<f64>() {
                Ok(x) if x.is_finite() => any = true,
                _ => return false,
            }
        }
        any
    }

    /// The index of a column by its full name (e.g. `Metadata_Compound`), case-insensitive.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name))
    }

    /// The lower-case role of `well`, when the layout has a role column and the well a role.
    pub fn role(&self, well: &str) -> Option<&str> {
        let i = self.column_index(ROLE_COLUMN)?;
        let v = self.get(well)?[i].as_str();
        (!v.is_empty()).then_some(v)
    }
}

fn layout_err(path: &Path, line: usize, column: Option<&str>, message: String) -> Error {
    Error::Layout {
        path: path.to_path_buf(),
        line,
        column: column.map(str::to_string),
        message,
    }
}

/// The canonical name of a header cell: `Well` → `Metadata_Well`, `Dose` → `Metadata_Dose`,
/// `role` → `Metadata_Role`.
fn canonical_column(name: &str) -> String {
    if name.eq_ignore_ascii_case("well") || name.eq_ignore_ascii_case(WELL_COLUMN) {
        return WELL_COLUMN.to_string();
    }
    let bare = match name.get(..9) {
        Some(prefix) if prefix.eq_ignore_ascii_case("metadata_") => &name[9..],
        _ => name,
    };
    if bare.eq_ignore_ascii_case("role") {
        ROLE_COLUMN.to_string()
    } else {
        format!("Metadata_{bare}")
    }
}

/// A layout row that could not be used.
#[derive(Debug)]
pub struct RowError {
    /// The row's well, when its well column could be read: that well's fields fail.
    pub well: Option<String>,
    pub error: Error,
}

/// Reads a layout file (comma-separated, or tab-separated when the header line has tabs);
/// the first bad row is an error.
pub fn read_layout(path: &Path) -> Result<Layout> {
    let (layout, mut row_errors) = read_layout_lenient(path)?;
    if row_errors.is_empty() {
        Ok(layout)
    } else {
        Err(row_errors.remove(0).error)
    }
}

/// Reads a layout file, keeping the good rows: errors in the file as a whole (unreadable,
/// no header, no well column) fail; bad rows are returned beside the layout, so a run can
/// fail just those wells and go on with the rest.
pub fn read_layout_lenient(path: &Path) -> Result<(Layout, Vec<RowError>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&bytes);
    if text.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(layout_err(
            path,
            1,
            None,
            format!("file is empty; expected a header line with a {WELL_COLUMN} column"),
        ));
    }
    let first_line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let delimiter = if first_line.contains(&b'\t') {
        b'\t'
    } else {
        b','
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .delimiter(delimiter)
        .from_reader(text);

    let csv_err = |e: csv::Error| {
        let line = e.position().map_or(1, |p| p.line() as usize);
        layout_err(path, line, None, e.to_string())
    };
    let mut records = reader.records();
    let header = match records.next() {
        Some(r) => r.map_err(csv_err)?,
        None => {
            return Err(layout_err(path, 1, None, "file has no header".into()));
        }
    };
    let header_line = header.position().map_or(1, |p| p.line() as usize);

    let mut well_col = None;
    let mut columns = Vec::new();
    let mut value_cols = Vec::new(); // header index of each entry in `columns`
    for (i, raw) in header.iter().enumerate() {
        if raw.is_empty() {
            return Err(layout_err(
                path,
                header_line,
                None,
                format!("column {} has an empty name", i + 1),
            ));
        }
        let name = canonical_column(raw);
        if columns.contains(&name) || (name == WELL_COLUMN && well_col.is_some()) {
            return Err(layout_err(
                path,
                header_line,
                Some(&name),
                "column appears twice in the header".into(),
            ));
        }
        if name == WELL_COLUMN {
            well_col = Some(i);
        } else {
            columns.push(name);
            value_cols.push(i);
        }
    }
    let Some(well_col) = well_col else {
        return Err(layout_err(
            path,
            header_line,
            None,
            format!(
                "no {WELL_COLUMN} (or Well) column; the header has: {}",
                header.iter().collect::<Vec<_>>().join(", ")
            ),
        ));
    };
    let role_col = columns.iter().position(|c| c == ROLE_COLUMN);

    let mut rows = Vec::new();
    let mut row_errors = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut first_line_of: HashMap<String, usize> = HashMap::new();
    for record in records {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                row_errors.push(RowError {
                    well: None,
                    error: csv_err(e),
                });
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line() as usize);
        if record.iter().all(str::is_empty) {
            continue; // spreadsheet exports end with rows of bare commas
        }
        let named_well = record.get(well_col).and_then(normalize_well).map(|w| w.0);
        let mut bad = |column: Option<&str>, message: String| {
            row_errors.push(RowError {
                well: named_well.clone(),
                error: layout_err(path, line, column, message),
            });
        };
        if record.len() != header.len() {
            bad(
                None,
                format!(
                    "row has {} fields but the header has {}",
                    record.len(),
                    header.len()
                ),
            );
            continue;
        }
        let raw_well = &record[well_col];
        let Some((well, row, col)) = normalize_well(raw_well) else {
            bad(
                Some(WELL_COLUMN),
                format!("bad well name {raw_well:?}; expected a row letter and column, e.g. B02"),
            );
            continue;
        };
        if let Some(first) = first_line_of.get(&well) {
            let first = *first;
            bad(
                Some(WELL_COLUMN),
                format!("well {well} appears twice (first on line {first})"),
            );
            continue;
        }
        let mut values: Vec<String> = value_cols.iter().map(|&i| record[i].to_string()).collect();
        if let Some(rc) = role_col {
            let role = values[rc].to_lowercase();
            if !(role.is_empty() || ROLES.contains(&role.as_str())) {
                bad(
                    Some(ROLE_COLUMN),
                    format!(
                        "role {:?} is not one of {} (or blank)",
                        values[rc],
                        ROLES.join(", ")
                    ),
                );
                continue;
            }
            values[rc] = role;
        }
        first_line_of.insert(well.clone(), line);
        index.insert(well.clone(), rows.len());
        rows.push((row, col, well, values));
    }
    Ok((
        Layout {
            path: path.to_path_buf(),
            columns,
            rows,
            index,
        },
        row_errors,
    ))
}

/// Which wells the layout and the images disagree on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LayoutCoverage {
    /// Wells in the layout with no images (plate order).
    pub wells_without_images: Vec<String>,
    /// Wells with images that the layout does not mention (plate order).
    pub images_without_layout: Vec<String>,
}

/// Compares the layout's wells with the wells that have images (any spelling).
pub fn compare_layout(layout: &Layout, image_wells: &[String]) -> LayoutCoverage {
    let images: BTreeSet<(u32, u32, String)> = image_wells
        .iter()
        .map(|w| match normalize_well(w) {
            Some((name, r, c)) => (r, c, name),
            None => (u32::MAX, u32::MAX, w.clone()),
        })
        .collect();
    let image_names: BTreeSet<&str> = images.iter().map(|(_, _, w)| w.as_str()).collect();
    LayoutCoverage {
        wells_without_images: layout
            .wells()
            .into_iter()
            .filter(|w| !image_names.contains(w.as_str()))
            .collect(),
        images_without_layout: images
            .into_iter()
            .filter(|(_, _, w)| !layout.index.contains_key(w))
            .map(|(_, _, w)| w)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn err_of(text: &str) -> (usize, Option<String>, String) {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "layout.csv", text);
        match read_layout(&p).unwrap_err() {
            Error::Layout {
                path,
                line,
                column,
                message,
            } => {
                assert_eq!(path, p);
                (line, column, message)
            }
            other => panic!("expected a layout error, got {other:?}"),
        }
    }

    #[test]
    fn reads_a_layout() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            &dir,
            "layout.csv",
            "\u{feff}Well,Compound,Metadata_Dose,role\n\
             b2,DMSO,0,Negative\n\
             B03, Y-27632 ,10,treated\n\
             \n\
             C1,,,\n\
             ,,,\n\
             P24,Staurosporine,1e-2,POSITIVE\n",
        );
        let l = read_layout(&p).unwrap();
        assert_eq!(l.path, p);
        assert_eq!(
            l.columns,
            ["Metadata_Compound", "Metadata_Dose", "Metadata_Role"]
        );
        assert_eq!(l.wells(), ["B02", "B03", "C01", "P24"]);
        assert_eq!(l.get("B02").unwrap(), ["DMSO", "0", "negative"]);
        assert_eq!(l.get("b003").unwrap(), ["Y-27632", "10", "treated"]);
        assert_eq!(l.get("C01").unwrap(), ["", "", ""]);
        assert_eq!(l.get("A01"), None);
        assert_eq!(l.get("not a well"), None);
        assert!(!l.is_numeric(0));
        assert!(l.is_numeric(1));
        assert!(!l.is_numeric(2));
        assert!(!l.is_numeric(3));
        assert_eq!(l.column_index("metadata_dose"), Some(1));
        assert_eq!(l.role("P24"), Some("positive"));
        assert_eq!(l.role("C01"), None);
    }

    #[test]
    fn reads_tab_separated() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            &dir,
            "layout.tsv",
            "Metadata_Well\tMetadata_Line\nA01\tWTC11\nA02\tKOLF2.1J\n",
        );
        let l = read_layout(&p).unwrap();
        assert_eq!(l.columns, ["Metadata_Line"]);
        assert_eq!(l.get("A2").unwrap(), ["KOLF2.1J"]);
        assert_eq!(l.role("A01"), None);
    }

    #[test]
    fn errors_name_line_and_column() {
        let (line, col, msg) = err_of("Well,Compound\nB02,DMSO\nB2x,DMSO\n");
        assert_eq!((line, col.as_deref()), (3, Some("Metadata_Well")));
        assert!(msg.contains("\"B2x\""), "{msg}");

        let (line, col, msg) = err_of("Well,Compound\nB02,DMSO\nC03,X\nb2,DMSO\n");
        assert_eq!((line, col.as_deref()), (4, Some("Metadata_Well")));
        assert!(msg.contains("B02 appears twice (first on line 2)"), "{msg}");

        let (line, col, msg) = err_of("Well,Compound,Dose\nB02,DMSO,0\nB03,X\n");
        assert_eq!((line, col), (3, None));
        assert!(msg.contains("2 fields but the header has 3"), "{msg}");

        let (line, col, msg) = err_of("Well,Metadata_Role\nB02,negative\nB03,control\n");
        assert_eq!((line, col.as_deref()), (3, Some("Metadata_Role")));
        assert!(
            msg.contains("\"control\"") && msg.contains("negative, positive"),
            "{msg}"
        );

        let (line, col, msg) = err_of("Plate,Compound\nP1,DMSO\n");
        assert_eq!((line, col), (1, None));
        assert!(
            msg.contains("no Metadata_Well") && msg.contains("Plate, Compound"),
            "{msg}"
        );

        let (line, _, msg) = err_of("");
        assert_eq!(line, 1);
        assert!(msg.contains("empty"), "{msg}");
        let (line, _, _) = err_of("  \n\n");
        assert_eq!(line, 1);

        let (line, col, msg) = err_of("Well,Dose,Metadata_Dose\nB02,1,2\n");
        assert_eq!((line, col.as_deref()), (1, Some("Metadata_Dose")));
        assert!(msg.contains("twice"), "{msg}");

        // Display carries the file, line and column.
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "plate7.csv", "Well\nQ99\n");
        let shown = read_layout(&p).unwrap_err().to_string();
        assert!(
            shown.contains("plate7.csv: line 2, column Metadata_Well: bad well name"),
            "{shown}"
        );

        let err = read_layout(&dir.path().join("missing.csv")).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
    }

    #[test]
    fn lenient_reading_keeps_good_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            &dir,
            "l.csv",
            "Metadata_Well,Metadata_Role\nA01,negative\nA02,sometimes\nZZ9,treated\nA01,positive\nB01,treated\n",
        );
        let (layout, errors) = read_layout_lenient(&p).unwrap();
        assert_eq!(layout.wells(), vec!["A01", "B01"]);
        assert_eq!(layout.get("A01").unwrap(), &["negative".to_string()]);
        let wells: Vec<Option<&str>> = errors.iter().map(|e| e.well.as_deref()).collect();
        assert_eq!(wells, vec![Some("A02"), None, Some("A01")]);
        let msgs: Vec<String> = errors.iter().map(|e| e.error.to_string()).collect();
        assert!(
            msgs[0].contains("line 3") && msgs[0].contains("sometimes"),
            "{}",
            msgs[0]
        );
        assert!(msgs[2].contains("appears twice"), "{}", msgs[2]);
        assert!(read_layout(&p).is_err());
    }

    #[test]
    fn coverage_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "l.csv", "Well,Compound\nB02,a\nB03,b\nA10,c\n");
        let l = read_layout(&p).unwrap();
        let images: Vec<String> = ["B2", "C01", "B02", "A01"].map(String::from).to_vec();
        let cov = compare_layout(&l, &images);
        assert_eq!(cov.wells_without_images, ["A10", "B03"]);
        assert_eq!(cov.images_without_layout, ["A01", "C01"]);
    }
}
