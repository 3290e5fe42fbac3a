//! Reading the tables the statistics run on: any ipscope table (Parquet or Arrow IPC) or a
//! user's CSV, and typed access to their columns whatever the numeric type.
//!
//! CSV columns become Float64 when every non-empty cell parses as a number (`NA`, `NaN` and
//! empty cells are null), Utf8 otherwise, like readr's and pandas' type guessing.

use std::path::Path;
use std::sync::Arc;

use ipscope_table::arrow_array::cast::AsArray;
use ipscope_table::arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use ipscope_table::arrow_array::{Array, ArrayRef, Float64Array, RecordBatch, StringArray};
use ipscope_table::{column, DataType, Field, Schema};

use crate::{Error, Result};

/// Reads a table: CSV when the name ends in `.csv` (or `.tsv`, tab-separated), otherwise a
/// Parquet or Arrow IPC file told apart by its magic bytes. All batches are concatenated.
pub fn read_any(path: &Path) -> Result<RecordBatch> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("csv") => read_csv(path, b','),
        Some("tsv") => read_csv(path, b'\t'),
        _ => {
            let (schema, batches) = ipscope_table::read_table(path)?;
            Ok(ipscope_table::concat(&schema, &batches)?)
        }
    }
}

fn is_missing(cell: &str) -> bool {
    matches!(cell.trim(), "" | "NA" | "NaN" | "nan" | "null" | "NULL")
}

/// Reads a delimited text file with a header row.
pub fn read_csv(path: &Path, delimiter: u8) -> Result<RecordBatch> {
    let bad = |e: csv::Error| Error::Invalid(format!("{}: {e}", path.display()));
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(bad)?;
    let header: Vec<String> = reader
        .headers()
        .map_err(bad)?
        .iter()
        .map(str::to_string)
        .collect();
    let mut cells: Vec<Vec<String>> = vec![Vec::new(); header.len()];
    for (line, record) in reader.records().enumerate() {
        let record = record.map_err(bad)?;
        if record.len() != header.len() {
            return Err(Error::Invalid(format!(
                "{}: row {} has {} cells, the header {}",
                path.display(),
                line + 2,
                record.len(),
                header.len()
            )));
        }
        for (col, cell) in record.iter().enumerate() {
            cells[col].push(cell.to_string());
        }
    }
    let mut fields = Vec::with_capacity(header.len());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(header.len());
    for (name, values) in header.iter().zip(cells) {
        let numeric: Option<Vec<Option<f64>>> = values
            .iter()
            .map(|v| {
                if is_missing(v) {
                    Some(None)
                } else {
                    v.parse::<f64>().ok().map(Some)
                }
            })
            .collect();
        match numeric {
            Some(nums) if values.iter().any(|v| !is_missing(v)) => {
                fields.push(Field::new(name, DataType::Float64, true));
                arrays.push(Arc::new(Float64Array::from(nums)));
            }
            _ => {
                fields.push(Field::new(name, DataType::Utf8, true));
                arrays.push(Arc::new(StringArray::from(
                    values
                        .into_iter()
                        .map(|v| (!is_missing(&v)).then_some(v))
                        .collect::<Vec<_>>(),
                )));
            }
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
}

/// The numeric column `name` as f64 (null → NaN), from any integer or float type.
pub fn numeric(batch: &RecordBatch, name: &str) -> Result<Vec<f64>> {
    let array = column(batch, name)?;
    macro_rules! conv {
        ($t:ty) => {{
            let a = array.as_primitive::<$t>();
            (0..a.len())
                .map(|i| {
                    if a.is_valid(i) {
                        a.value(i) as f64
                    } else {
                        f64::NAN
                    }
                })
                .collect()
        }};
    }
    Ok(match array.data_type() {
        DataType::Float64 => conv!(Float64Type),
        DataType::Float32 => conv!(Float32Type),
        DataType::Int8 => conv!(Int8Type),
        DataType::Int16 => conv!(Int16Type),
        DataType::Int32 => conv!(Int32Type),
        DataType::Int64 => conv!(Int64Type),
        DataType::UInt8 => conv!(UInt8Type),
        DataType::UInt16 => conv!(UInt16Type),
        DataType::UInt32 => conv!(UInt32Type),
        DataType::UInt64 => conv!(UInt64Type),
        other => {
            return Err(Error::Invalid(format!(
                "column `{name}` is {other}, expected numbers"
            )))
        }
    })
}

/// The column `name` as text (null → `None`); numbers are formatted.
pub fn text(batch: &RecordBatch, name: &str) -> Result<Vec<Option<String>>> {
    let array = column(batch, name)?;
    match array.data_type() {
        DataType::Utf8 => {
            let a = array.as_string::<i32>();
            Ok((0..a.len())
                .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
                .collect())
        }
        DataType::LargeUtf8 => {
            let a = array.as_string::<i64>();
            Ok((0..a.len())
                .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
                .collect())
        }
        _ => Ok(numeric(batch, name)?
            .into_iter()
            .map(|v| (!v.is_nan()).then(|| format!("{v}")))
            .collect()),
    }
}

/// Whether the table has a column called `name`.
pub fn has_column(batch: &RecordBatch, name: &str) -> bool {
    batch.schema_ref().index_of(name).is_ok()
}

/// Group key of every row: the value of column `by`, or `"all"` without one.
pub fn group_keys(batch: &RecordBatch, by: Option<&str>) -> Result<Vec<String>> {
    match by {
        None => Ok(vec!["all".to_string(); batch.num_rows()]),
        Some(col) => Ok(text(batch, col)?
            .into_iter()
            .map(|v| v.unwrap_or_default())
            .collect()),
    }
}

/// Distinct group keys in sorted order.
pub fn distinct(keys: &[String]) -> Vec<String> {
    let mut v: Vec<String> = keys.to_vec();
    v.sort();
    v.dedup();
    v
}
