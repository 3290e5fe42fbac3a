//! Table operations the pipeline needs: concatenation, a stable sort by id columns, and typed
//! access to columns by name with errors that say what is missing.

use std::cmp::Ordering;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, UInt32Type, UInt64Type};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray, UInt32Array,
    UInt64Array,
};
use arrow_schema::{DataType, Schema, SchemaRef};

use crate::{Error, Result};

/// Checks that `actual` has the columns of `expected`: same count, names, types, order.
/// Nullability and metadata are left to `RecordBatch::try_new` and the writer's schema.
pub(crate) fn same_columns(expected: &Schema, actual: &Schema) -> std::result::Result<(), String> {
    if expected.fields().len() != actual.fields().len() {
        return Err(format!(
            "{} columns [{}], expected {} [{}]",
            actual.fields().len(),
            names(actual),
            expected.fields().len(),
            names(expected)
        ));
    }
    for (i, (e, a)) in expected.fields().iter().zip(actual.fields()).enumerate() {
        if e.name() != a.name() || e.data_type() != a.data_type() {
            return Err(format!(
                "column {i} is `{}` ({}), expected `{}` ({})",
                a.name(),
                a.data_type(),
                e.name(),
                e.data_type()
            ));
        }
    }
    Ok(())
}

fn names(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Concatenates `batches` into one batch of `schema` (e.g. the per-field tables of a run, or
/// the tables of shard runs). Every batch must have the schema's column names and types in
/// order; zero batches give an empty batch of `schema`.
pub fn concat(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<RecordBatch> {
    for (i, batch) in batches.iter().enumerate() {
        same_columns(schema, batch.schema_ref())
            .map_err(|msg| Error::Schema(format!("concat: batch {i}: {msg}")))?;
    }
    arrow_select::concat::concat_batches(schema, batches).map_err(|e| Error::arrow(None, e))
}

/// Stable sort of `batch` by one or more `UInt32` columns, ascending, the first column most
/// significant (e.g. `["ImageNumber", "ObjectNumber"]`). Rows with equal keys keep their order;
/// nulls sort first.
pub fn sort_by_u32(batch: &RecordBatch, columns: &[&str]) -> Result<RecordBatch> {
    let keys = columns
        .iter()
        .map(|name| column_u32(batch, name))
        .collect::<Result<Vec<_>>>()?;
    let rows = batch.num_rows();
    let rows_u32 = u32::try_from(rows).map_err(|_| {
        Error::Schema(format!(
            "sort_by_u32: {rows} rows are more than a u32 index can address"
        ))
    })?;
    let mut order: Vec<u32> = (0..rows_u32).collect();
    // `sort_by` is stable, which is what makes equal keys keep their input order.
    order.sort_by(|&a, &b| {
        for key in &keys {
            let (a, b) = (a as usize, b as usize);
            let ka = key.is_valid(a).then(|| key.value(a));
            let kb = key.is_valid(b).then(|| key.value(b));
            match ka.cmp(&kb) {
                Ordering::Equal => continue,
                other => return other,
            }
        }
        Ordering::Equal
    });
    if order.iter().enumerate().all(|(i, &r)| i as u32 == r) {
        return Ok(batch.clone());
    }
    let indices = UInt32Array::from(order);
    arrow_select::take::take_record_batch(batch, &indices).map_err(|e| Error::arrow(None, e))
}

/// The column called `name`, whatever its type.
pub fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    match batch.schema_ref().index_of(name) {
        Ok(i) => Ok(batch.column(i)),
        Err(_) => Err(Error::MissingColumn {
            name: name.to_string(),
            available: available(batch.schema_ref()),
        }),
    }
}

/// Column names for an error message; long tables are cut so the message stays readable.
fn available(schema: &Schema) -> String {
    const SHOWN: usize = 20;
    let fields = schema.fields();
    if fields.is_empty() {
        return "none".to_string();
    }
    let mut s = fields
        .iter()
        .take(SHOWN)
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if fields.len() > SHOWN {
        s.push_str(&format!(", … {} more", fields.len() - SHOWN));
    }
    s
}

fn wrong_type(name: &str, expected: &DataType, found: &DataType) -> Error {
    Error::ColumnType {
        name: name.to_string(),
        expected: expected.to_string(),
        found: found.to_string(),
    }
}

macro_rules! typed_column {
    ($(#[$doc:meta])* $fn:ident, $array:ty, $dt:expr, $cast:ident $(::<$t:ty>)?) => {
        $(#[$doc])*
        pub fn $fn<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a $array> {
            let array = column(batch, name)?;
            let expected: DataType = $dt;
            if array.data_type() != &expected {
                return Err(wrong_type(name, &expected, array.data_type()));
            }
            array
                .$cast $(::<$t>)? ()
                .ok_or_else(|| wrong_type(name, &expected, array.data_type()))
        }
    };
}

typed_column!(
    /// The `UInt32` column called `name` (`ImageNumber`, `ObjectNumber`, …).
    column_u32, UInt32Array, DataType::UInt32, as_primitive_opt::<UInt32Type>
);
typed_column!(
    /// The `UInt64` column called `name` (`Count_*`, …).
    column_u64, UInt64Array, DataType::UInt64, as_primitive_opt::<UInt64Type>
);
typed_column!(
    /// The `Int64` column called `name`.
    column_i64, Int64Array, DataType::Int64, as_primitive_opt::<Int64Type>
);
typed_column!(
    /// The `Float64` column called `name`.
    column_f64, Float64Array, DataType::Float64, as_primitive_opt::<Float64Type>
);
typed_column!(
    /// The `Utf8` column called `name`.
    column_str, StringArray, DataType::Utf8, as_string_opt::<i32>
);
typed_column!(
    /// The `Boolean` column called `name`.
    column_bool, BooleanArray, DataType::Boolean, as_boolean_opt
);
