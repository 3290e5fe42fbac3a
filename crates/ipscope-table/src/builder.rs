//! Column-wise construction of a record batch: name a column, give all its values, optionally
//! describe it; `finish` checks the shape once for the whole table.

use std::collections::HashSet;
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, RecordBatchOptions, StringArray,
    UInt32Array, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema};

use crate::{Error, Result};

/// Field-metadata key under which a column's human description is stored.
pub const DESCRIPTION_KEY: &str = "description";

/// Column-wise builder (schema first, columns not rows), in the spirit of arrow-rs and polars.
///
/// ```
/// use ipscope_table::TableBuilder;
/// let mut b = TableBuilder::new();
/// b.u32("ImageNumber", vec![1, 1, 2])
///     .u32("ObjectNumber", vec![1, 2, 1])
///     .f64("Nuclei_AreaShape_Area", vec![120.0, 98.5, f64::NAN])
///     .doc("Number of pixels in the object");
/// let batch = b.finish()?;
/// assert_eq!(batch.num_rows(), 3);
/// # Ok::<(), ipscope_table::Error>(())
/// ```
///
/// Problems (a repeated name, columns of different lengths, `doc` before any column) are
/// reported by [`finish`](Self::finish), so a chain of calls never needs `?` in between.
/// A builder with no columns finishes as a table of zero columns and zero rows.
#[derive(Debug, Default)]
pub struct TableBuilder {
    fields: Vec<Field>,
    arrays: Vec<ArrayRef>,
    problems: Vec<String>,
}

impl TableBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Non-null `UInt32` column (ids: `ImageNumber`, `ObjectNumber`, sites).
    pub fn u32(&mut self, name: &str, values: Vec<u32>) -> &mut Self {
        self.array(
            Field::new(name, DataType::UInt32, false),
            Arc::new(UInt32Array::from(values)),
        )
    }

    /// Non-null `Int64` column.
    pub fn i64(&mut self, name: &str, values: Vec<i64>) -> &mut Self {
        self.array(
            Field::new(name, DataType::Int64, false),
            Arc::new(Int64Array::from(values)),
        )
    }

    /// Non-null `UInt64` column (counts).
    pub fn u64(&mut self, name: &str, values: Vec<u64>) -> &mut Self {
        self.array(
            Field::new(name, DataType::UInt64, false),
            Arc::new(UInt64Array::from(values)),
        )
    }

    /// `Float64` column without nulls; NaN values stay NaN (pandas and pycytominer read both
    /// NaN and null as NaN, polars and DuckDB keep them apart).
    pub fn f64(&mut self, name: &str, values: Vec<f64>) -> &mut Self {
        self.array(
            Field::new(name, DataType::Float64, false),
            Arc::new(Float64Array::from(values)),
        )
    }

    /// Nullable `Float64` column; `None` becomes null.
    pub fn opt_f64(&mut self, name: &str, values: Vec<Option<f64>>) -> &mut Self {
        self.array(
            Field::new(name, DataType::Float64, true),
            Arc::new(Float64Array::from(values)),
        )
    }

    /// Non-null `Utf8` column.
    pub fn str(&mut self, name: &str, values: Vec<String>) -> &mut Self {
        self.array(
            Field::new(name, DataType::Utf8, false),
            Arc::new(StringArray::from(values)),
        )
    }

    /// Nullable `Utf8` column; `None` becomes null.
    pub fn opt_str(&mut self, name: &str, values: Vec<Option<String>>) -> &mut Self {
        self.array(
            Field::new(name, DataType::Utf8, true),
            Arc::new(StringArray::from(values)),
        )
    }

    /// Non-null `Boolean` column.
    pub fn bool(&mut self, name: &str, values: Vec<bool>) -> &mut Self {
        self.array(
            Field::new(name, DataType::Boolean, false),
            Arc::new(BooleanArray::from(values)),
        )
    }

    /// Any Arrow array under the given field (for types the typed methods do not cover, or to
    /// carry a column over from another batch with its metadata). The field's type must be
    /// the array's type and a non-nullable field must not hold nulls; `finish` checks both.
    pub fn array(&mut self, field: Field, array: ArrayRef) -> &mut Self {
        self.fields.push(field);
        self.arrays.push(array);
        self
    }

    /// Attaches `{"description": description}` to the field metadata of the column added last.
    pub fn doc(&mut self, description: &str) -> &mut Self {
        match self.fields.last_mut() {
            Some(field) => {
                field.metadata_mut().insert(DESCRIPTION_KEY, description);
            }
            None => self.problems.push(format!(
                "doc({description:?}) called before any column was added"
            )),
        }
        self
    }

    /// Number of columns added so far.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether no column has been added yet.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Builds the batch.
    ///
    /// Fails with [`Error::Schema`] when a column name repeats, when columns differ in length
    /// (the message lists each column's length), or when `doc` came before any column; with
    /// [`Error::Arrow`] when an [`array`](Self::array) does not fit its field.
    /// Zero columns give a batch with an empty schema and zero rows.
    pub fn finish(self) -> Result<RecordBatch> {
        let TableBuilder {
            fields,
            arrays,
            mut problems,
        } = self;

        let mut seen = HashSet::new();
        for field in &fields {
            if !seen.insert(field.name().as_str()) {
                problems.push(format!("column `{}` added twice", field.name()));
            }
        }
        if let Some(first) = arrays.first() {
            let rows = first.len();
            if arrays.iter().any(|a| a.len() != rows) {
                let lengths = fields
                    .iter()
                    .zip(&arrays)
                    .map(|(f, a)| format!("{}={}", f.name(), a.len()))
                    .collect::<Vec<_>>()
                    .join(", ");
                problems.push(format!("columns differ in length: {lengths}"));
            }
        }
        if !problems.is_empty() {
            return Err(Error::Schema(problems.join("; ")));
        }

        let options =
            RecordBatchOptions::new().with_row_count(Some(arrays.first().map_or(0, |a| a.len())));
        RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)
            .map_err(|e| Error::arrow(None, e))
    }
}
