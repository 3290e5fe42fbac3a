//! The Wells table: one row per (plate, well) with field counts, object counts and the median
//! and mean of every object measurement, in the spirit of CellProfiler's per-well
//! `Mean_<Object>_<Feature>` / `Median_…` database tables and pycytominer's `aggregate`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use ipscope_table::arrow_array::cast::AsArray;
use ipscope_table::arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use ipscope_table::arrow_array::{Array, ArrayRef, RecordBatch, UInt32Array};
use ipscope_table::{column, column_str, column_u32, DataType, Field, TableBuilder};

use crate::{Error, Result};

const IMAGE_NUMBER: &str = "ImageNumber";
const OBJECT_NUMBER: &str = "ObjectNumber";
const PLATE: &str = "Metadata_Plate";
const WELL: &str = "Metadata_Well";
const SITE: &str = "Metadata_Site";
const STATUS: &str = "Status";
const STATUS_OK: &str = "ok";
const COUNT_FIELDS: &str = "Count_Fields";
const COUNT_FIELDS_FAILED: &str = "Count_FieldsFailed";

/// Per-well summary of a run, computed only from its tables, so that a run and a merge of
/// shard runs give identical Wells tables.
///
/// `image` has one row per field with `ImageNumber` (UInt32, unique), `Metadata_Plate` and
/// `Metadata_Well` (Utf8), `Status` (Utf8, `"ok"` or `"failed"`), `Count_<Object>` columns
/// (unsigned integers) and any other columns. `objects` pairs an object name with its table
/// (`[("Nuclei", &nuclei)]`), which has `ImageNumber` and numeric measurement columns.
///
/// The result has one row per (plate, well), sorted by plate then well (string order, so
/// `B02` < `B10` < `C01`), with columns:
/// - `Metadata_Plate`, `Metadata_Well`;
/// - every other image `Metadata_*` column except `Metadata_Site`, with its type and field
///   metadata, taken from the well's field with the smallest `ImageNumber`;
/// - `Count_Fields` (fields of the well), `Count_FieldsFailed` (fields whose `Status` is not
///   `"ok"`), and each image `Count_<Object>` summed over the well's ok fields (UInt64);
/// - per object table, for every numeric column other than `ImageNumber`, `ObjectNumber`,
///   `Metadata_*`, `Parent_*` and names with a `Location_` or `Number_` part (positions and
///   ids are not measurements): `Median_<column>` and `Mean_<column>` (Float64) over the
///   objects of the well's ok fields. A column not already prefixed with `<Object>_` gets the
///   prefix (`Median_Nuclei_AreaShape_Area` either way).
///
/// Medians follow numpy: the middle value, or the average of the two middle values for an even
/// count. NaN and null values are left out of both statistics; a well with no values left gets
/// null. Both are computed from the well's values sorted by IEEE total order, the mean with
/// compensated (Neumaier) summation, so the result does not depend on the order of rows.
pub fn well_summary(image: &RecordBatch, objects: &[(&str, &RecordBatch)]) -> Result<RecordBatch> {
    let fields = Fields::from_image(image)?;
    let n_wells = fields.wells.len();

    let mut b = TableBuilder::new();
    let (plates, wells): (Vec<String>, Vec<String>) = fields.wells.iter().cloned().unzip();
    b.array(
        described(image, PLATE, DataType::Utf8),
        Arc::new(ipscope_table::arrow_array::StringArray::from(plates)),
    )
    .array(
        described(image, WELL, DataType::Utf8),
        Arc::new(ipscope_table::arrow_array::StringArray::from(wells)),
    );

    // Layout and other metadata: the first field's value, type and description kept.
    let first_rows = UInt32Array::from(
        fields
            .first_row
            .iter()
            .map(|&r| {
                u32::try_from(r)
                    .map_err(|_| Error::Invalid(format!("Image table row {r} is beyond u32")))
            })
            .collect::<Result<Vec<_>>>()?,
    );
    for (i, field) in image.schema_ref().fields().iter().enumerate() {
        let name = field.name();
        if !name.starts_with("Metadata_") || name == PLATE || name == WELL || name == SITE {
            continue;
        }
        let values = ipscope_table::arrow_select::take::take(image.column(i), &first_rows, None)
            .map_err(|e| Error::Invalid(format!("Image column `{name}`: {e}")))?;
        b.array(field.as_ref().clone(), values);
    }

    let mut fields_total = vec![0u64; n_wells];
    let mut fields_failed = vec![0u64; n_wells];
    for row in 0..image.num_rows() {
        let w = fields.well_of_row[row];
        fields_total[w] += 1;
        if !fields.ok[row] {
            fields_failed[w] += 1;
        }
    }
    b.u64(COUNT_FIELDS, fields_total)
        .doc("Number of fields (images) of the well in the run")
        .u64(COUNT_FIELDS_FAILED, fields_failed)
        .doc("Number of the well's fields whose Status is not \"ok\" (not analysed)");

    for (i, field) in image.schema_ref().fields().iter().enumerate() {
        let name = field.name();
        if !name.starts_with("Count_") {
            continue;
        }
        if name == COUNT_FIELDS || name == COUNT_FIELDS_FAILED {
            return Err(Error::Invalid(format!(
                "Image table has a column `{name}`, a name the Wells table reserves"
            )));
        }
        let counts = unsigned_values(image.column(i)).ok_or_else(|| {
            Error::Invalid(format!(
                "Image column `{name}` is {}, expected an unsigned integer count",
                field.data_type()
            ))
        })?;
        let mut sums = vec![0u64; n_wells];
        for (row, count) in counts.into_iter().enumerate() {
            if let (true, Some(c)) = (fields.ok[row], count) {
                let w = fields.well_of_row[row];
                sums[w] = sums[w].checked_add(c).ok_or_else(|| {
                    Error::Invalid(format!(
                        "`{name}` overflows u64 in well {}",
                        fields.wells[w].1
                    ))
                })?;
            }
        }
        b.u64(name, sums).doc(&format!(
            "Sum of the image column {name} over the well's fields with Status \"ok\""
        ));
    }

    let mut seen_features: HashMap<String, String> = HashMap::new();
    for (object, table) in objects {
        summarise_objects(&mut b, &fields, object, table, &mut seen_features)?;
    }

    Ok(b.finish()?)
}

/// The image table's fields grouped into wells.
struct Fields {
    /// (plate, well) in output order.
    wells: Vec<(String, String)>,
    /// Output row (well index) of each image row.
    well_of_row: Vec<usize>,
    /// Whether each image row has Status "ok".
    ok: Vec<bool>,
    /// Image row of each well's field with the smallest ImageNumber.
    first_row: Vec<usize>,
    /// (well index, ok) of each ImageNumber.
    by_image_number: HashMap<u32, (usize, bool)>,
}

impl Fields {
    fn from_image(image: &RecordBatch) -> Result<Fields> {
        let numbers = column_u32(image, IMAGE_NUMBER)?;
        let plates = column_str(image, PLATE)?;
        let wells = column_str(image, WELL)?;
        let status = column_str(image, STATUS)?;

        let mut groups: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
        for row in 0..image.num_rows() {
            if numbers.is_null(row) || plates.is_null(row) || wells.is_null(row) {
                return Err(Error::Invalid(format!(
                    "Image table row {row}: ImageNumber, Metadata_Plate and Metadata_Well must not be null"
                )));
            }
            groups
                .entry((plates.value(row), wells.value(row)))
                .or_default()
                .push(row);
        }

        let mut out = Fields {
            wells: Vec::with_capacity(groups.len()),
            well_of_row: vec![0; image.num_rows()],
            ok: (0..image.num_rows())
                .map(|row| status.is_valid(row) && status.value(row) == STATUS_OK)
                .collect(),
            first_row: Vec::with_capacity(groups.len()),
            by_image_number: HashMap::with_capacity(image.num_rows()),
        };
        for (w, ((plate, well), rows)) in groups.into_iter().enumerate() {
            out.wells.push((plate.to_string(), well.to_string()));
            let mut first = rows[0];
            for &row in &rows {
                out.well_of_row[row] = w;
                if numbers.value(row) < numbers.value(first) {
                    first = row;
                }
                if out
                    .by_image_number
                    .insert(numbers.value(row), (w, out.ok[row]))
                    .is_some()
                {
                    return Err(Error::Invalid(format!(
                        "Image table: ImageNumber {} appears more than once",
                        numbers.value(row)
                    )));
                }
            }
            out.first_row.push(first);
        }
        Ok(out)
    }
}

/// The image column's field (keeping its description) if it has the expected type.
fn described(image: &RecordBatch, name: &str, data_type: DataType) -> Field {
    match image.schema_ref().field_with_name(name) {
        Ok(f) if f.data_type() == &data_type => f.clone().with_nullable(false),
        _ => Field::new(name, data_type, false),
    }
}

/// Whether an object-table column is a measurement to summarise (ids and positions are not).
fn is_feature(name: &str, data_type: &DataType) -> bool {
    let numeric =
        data_type.is_integer() || matches!(data_type, DataType::Float32 | DataType::Float64);
    numeric
        && name != IMAGE_NUMBER
        && name != OBJECT_NUMBER
        && !name.starts_with("Metadata_")
        && !name.starts_with("Parent_")
        && !name.contains("_Parent_")
        && !name.starts_with("Location_")
        && !name.contains("_Location_")
        && !name.starts_with("Number_")
        && !name.contains("_Number_")
}

fn summarise_objects(
    b: &mut TableBuilder,
    fields: &Fields,
    object: &str,
    table: &RecordBatch,
    seen: &mut HashMap<String, String>,
) -> Result<()> {
    let n_wells = fields.wells.len();
    let numbers = column_u32(table, IMAGE_NUMBER)
        .map_err(|e| Error::Invalid(format!("{object} table: {e}")))?;
    // Well of each object row; None for objects of failed fields (left out like their counts).
    let mut well_of_object = Vec::with_capacity(table.num_rows());
    for row in 0..table.num_rows() {
        if numbers.is_null(row) {
            return Err(Error::Invalid(format!(
                "{object} table row {row}: ImageNumber is null"
            )));
        }
        let n = numbers.value(row);
        match fields.by_image_number.get(&n) {
            Some(&(w, true)) => well_of_object.push(Some(w)),
            Some(&(_, false)) => well_of_object.push(None),
            None => {
                return Err(Error::Invalid(format!(
                    "{object} table row {row}: ImageNumber {n} is not in the Image table"
                )))
            }
        }
    }

    let prefix = format!("{object}_");
    let mut per_well: Vec<Vec<f64>> = vec![Vec::new(); n_wells];
    for field in table.schema_ref().fields() {
        let name = field.name();
        if !is_feature(name, field.data_type()) {
            continue;
        }
        let feature = if name.starts_with(&prefix) {
            name.clone()
        } else {
            format!("{prefix}{name}")
        };
        if let Some(previous) = seen.insert(feature.clone(), format!("{object}.{name}")) {
            return Err(Error::Invalid(format!(
                "{object} column `{name}` and {previous} would both be summarised as `{feature}`"
            )));
        }
        let values = numeric_values(column(table, name)?).ok_or_else(|| {
            Error::Invalid(format!(
                "{object} column `{name}`: unsupported type {}",
                field.data_type()
            ))
        })?;

        for v in per_well.iter_mut() {
            v.clear();
        }
        for (row, value) in values.iter().enumerate() {
            if let (Some(w), Some(x)) = (well_of_object[row], value) {
                if !x.is_nan() {
                    per_well[w].push(*x);
                }
            }
        }
        let mut medians = Vec::with_capacity(n_wells);
        let mut means = Vec::with_capacity(n_wells);
        for v in per_well.iter_mut() {
            v.sort_unstable_by(f64::total_cmp);
            medians.push(median_sorted(v));
            means.push(mean_sorted(v));
        }
        let what = field
            .metadata()
            .get(ipscope_table::DESCRIPTION_KEY)
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        b.opt_f64(&format!("Median_{feature}"), medians)
            .doc(&format!(
            "Median over the well's {object} objects of {name}{what}; NaN left out, null when none"
        ));
        b.opt_f64(&format!("Mean_{feature}"), means).doc(&format!(
            "Mean over the well's {object} objects of {name}{what}; NaN left out, null when none"
        ));
    }
    Ok(())
}

/// numpy's median of values already sorted and free of NaN; `None` for no values.
fn median_sorted(v: &[f64]) -> Option<f64> {
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// Mean with Neumaier's compensated summation, over values in a fixed (sorted) order.
fn mean_sorted(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut sum = 0.0f64;
    let mut compensation = 0.0f64;
    for &x in v {
        let t = sum + x;
        if sum.abs() >= x.abs() {
            compensation += (sum - t) + x;
        } else {
            compensation += (x - t) + sum;
        }
        sum = t;
    }
    // With infinities the compensation becomes NaN; the plain sum is the right answer then.
    let total = if compensation.is_finite() {
        sum + compensation
    } else {
        sum
    };
    Some(total / v.len() as f64)
}

/// The values of a numeric column as f64 (nulls as `None`); `None` for other types.
fn numeric_values(array: &ArrayRef) -> Option<Vec<Option<f64>>> {
    macro_rules! conv {
        ($t:ty) => {
            array
                .as_primitive_opt::<$t>()
                .map(|a| a.iter().map(|v| v.map(|x| x as f64)).collect())
        };
    }
    match array.data_type() {
        DataType::Float64 => conv!(Float64Type),
        DataType::Float32 => conv!(Float32Type),
        DataType::UInt64 => conv!(UInt64Type),
        DataType::UInt32 => conv!(UInt32Type),
        DataType::UInt16 => conv!(UInt16Type),
        DataType::UInt8 => conv!(UInt8Type),
        DataType::Int64 => conv!(Int64Type),
        DataType::Int32 => conv!(Int32Type),
        DataType::Int16 => conv!(Int16Type),
        DataType::Int8 => conv!(Int8Type),
        _ => None,
    }
}

/// The values of an unsigned integer column as u64 (nulls as `None`); `None` for other types.
fn unsigned_values(array: &ArrayRef) -> Option<Vec<Option<u64>>> {
    macro_rules! conv {
        ($t:ty) => {
            array
                .as_primitive_opt::<$t>()
                .map(|a| a.iter().map(|v| v.map(u64::from)).collect())
        };
    }
    match array.data_type() {
        DataType::UInt64 => conv!(UInt64Type),
        DataType::UInt32 => conv!(UInt32Type),
        DataType::UInt16 => conv!(UInt16Type),
        DataType::UInt8 => conv!(UInt8Type),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
