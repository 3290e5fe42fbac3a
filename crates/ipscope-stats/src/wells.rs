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
use ipscope_table::{column, column_str, column_u32, DataType, Field, SchemaRef, TableBuilder};

use crate::qc::median_of;
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
/// Image column (Boolean): the field failed image QC.
pub const QC_FLAG: &str = "Metadata_QCFlag";
/// Image column (Utf8): why (reason keys joined by `;`, empty when not flagged).
pub const QC_REASON: &str = "Metadata_QCReason";
/// Wells column: fields left out of the well's statistics because image QC flagged them.
pub const COUNT_EXCLUDED_FIELDS: &str = "Count_FieldsExcluded";
/// Wells column: the reasons of the excluded fields with their counts, e.g. `saturated:1`.
pub const EXCLUDED_REASONS: &str = "Metadata_ExcludedReasons";

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
/// When the Image table has a Boolean `Metadata_QCFlag` column (image QC, see
/// [`well_summary_with`]), flagged fields with Status ok are left out of the counts and
/// statistics like failed fields, and two columns follow `Count_FieldsFailed`:
/// `Count_FieldsExcluded` and `Metadata_ExcludedReasons` (the `;`-separated reason keys of
/// `Metadata_QCReason` over the excluded fields, each with its number of fields, sorted:
/// `low_content:1;saturated:2`). `Metadata_QCFlag` and `Metadata_QCReason` are field values
/// and are not copied into the well row.
///
/// Medians follow numpy: the middle value, or the average of the two middle values for an even
/// count. NaN and null values are left out of both statistics; a well with no values left gets
/// null. The median is selected in IEEE total order and the mean is the exactly summed values'
/// sum rounded once, divided by their count, so neither depends on the order of rows.
pub fn well_summary(image: &RecordBatch, objects: &[(&str, &RecordBatch)]) -> Result<RecordBatch> {
    well_summary_with(image, objects, true)
}

/// [`well_summary`], choosing whether fields flagged by image QC (`Metadata_QCFlag` true) are
/// left out of the statistics. With `exclude_flagged` false they count like any other field
/// and `Count_FieldsExcluded` is 0.
pub fn well_summary_with(
    image: &RecordBatch,
    objects: &[(&str, &RecordBatch)],
    exclude_flagged: bool,
) -> Result<RecordBatch> {
    let fields = Fields::from_image(image, exclude_flagged)?;
    let schemas: Vec<(&str, SchemaRef)> = objects.iter().map(|(n, t)| (*n, t.schema())).collect();
    let mut summary = WellSummary::new(&schemas)?.exclude_flagged(exclude_flagged);

    // Rows of each object table by well; objects of failed fields are left out like their
    // counts.
    let mut rows_by_well: Vec<Vec<Vec<usize>>> =
        vec![vec![Vec::new(); objects.len()]; fields.wells.len()];
    for (o, (object, table)) in objects.iter().enumerate() {
        let numbers = column_u32(table, IMAGE_NUMBER)
            .map_err(|e| Error::Invalid(format!("{object} table: {e}")))?;
        for row in 0..table.num_rows() {
            if numbers.is_null(row) {
                return Err(Error::Invalid(format!(
                    "{object} table row {row}: ImageNumber is null"
                )));
            }
            let n = numbers.value(row);
            match fields.by_image_number.get(&n) {
                Some(&(w, true)) => rows_by_well[w][o].push(row),
                Some(&(_, false)) => {}
                None => {
                    return Err(Error::Invalid(format!(
                        "{object} table row {row}: ImageNumber {n} is not in the Image table"
                    )))
                }
            }
        }
    }
    for (w, (plate, well)) in fields.wells.iter().enumerate() {
        summary.open(plate, well)?;
        for (o, (_, table)) in objects.iter().enumerate() {
            summary.push(o, table, Some(&rows_by_well[w][o]))?;
        }
    }
    summary.build(image, &fields)
}

/// One field given to [`WellSummary::add_field`]: its row of the Image table.
#[derive(Debug, Clone, Copy)]
pub struct FieldInfo<'a> {
    pub image_number: u32,
    pub plate: &'a str,
    pub well: &'a str,
    /// Status "ok" and not excluded by image QC; the objects of other fields are left out,
    /// like their counts.
    pub ok: bool,
}

/// The Wells table of [`well_summary`], built field by field in bounded memory.
///
/// Give every field with [`WellSummary::add_field`], the fields of one well one after another
/// (the pipeline's ImageNumber order does that: fields are numbered by plate, well, site).
/// Only the measurements of the well being filled are held; when the next well starts, each
/// feature is reduced to its median and mean and the values are dropped. [`WellSummary::finish`]
/// then takes the (small) Image table for the counts and metadata and checks that it lists
/// exactly the fields that were given. The result equals `well_summary` of the same tables,
/// bit for bit: neither statistic depends on the order of the values.
pub struct WellSummary {
    objects: Vec<ObjectFeatures>,
    n_features: usize,
    open: Option<OpenWell>,
    /// (plate, well) -> per feature, in `objects` order.
    closed: HashMap<(String, String), Vec<Stats>>,
    /// ImageNumber -> (plate, well, ok) of every field given.
    given: HashMap<u32, (String, String, bool)>,
    exclude_flagged: bool,
}

/// The summarised columns of one object table.
struct ObjectFeatures {
    name: String,
    /// Index of its first feature among all features.
    offset: usize,
    features: Vec<Feature>,
}

struct Feature {
    /// Column in the object table.
    column: String,
    /// `<Object>_<name>`: the output columns are `Median_<output>` and `Mean_<output>`.
    output: String,
    /// The column's description, if it has one.
    description: Option<String>,
}

struct OpenWell {
    key: (String, String),
    /// Per feature: the well's values so far, without null and NaN.
    values: Vec<Vec<f64>>,
}

#[derive(Debug, Clone, Copy)]
struct Stats {
    median: Option<f64>,
    mean: Option<f64>,
}

impl WellSummary {
    /// Plans the summary of object tables with these schemas (`[("Nuclei", schema)]`): which
    /// columns are measurements, and their output names (see [`well_summary`]).
    pub fn new(objects: &[(&str, SchemaRef)]) -> Result<WellSummary> {
        let mut seen: HashMap<String, String> = HashMap::new();
        let mut planned = Vec::with_capacity(objects.len());
        let mut offset = 0;
        for (object, schema) in objects {
            // The same check (and message) as on a table: ImageNumber must be a UInt32 column.
            column_u32(&RecordBatch::new_empty(schema.clone()), IMAGE_NUMBER)
                .map_err(|e| Error::Invalid(format!("{object} table: {e}")))?;
            let prefix = format!("{object}_");
            let mut features = Vec::new();
            for field in schema.fields() {
                let name = field.name();
                if !is_feature(name, field.data_type()) {
                    continue;
                }
                let output = if name.starts_with(&prefix) {
                    name.clone()
                } else {
                    format!("{prefix}{name}")
                };
                if let Some(previous) = seen.insert(output.clone(), format!("{object}.{name}")) {
                    return Err(Error::Invalid(format!(
                        "{object} column `{name}` and {previous} would both be summarised as `{output}`"
                    )));
                }
                features.push(Feature {
                    column: name.clone(),
                    output,
                    description: field
                        .metadata()
                        .get(ipscope_table::DESCRIPTION_KEY)
                        .cloned(),
                });
            }
            planned.push(ObjectFeatures {
                name: object.to_string(),
                offset,
                features,
            });
            offset += planned.last().map_or(0, |o| o.features.len());
        }
        Ok(WellSummary {
            objects: planned,
            n_features: offset,
            open: None,
            closed: HashMap::new(),
            given: HashMap::new(),
            exclude_flagged: true,
        })
    }

    /// Whether fields the Image table flags (`Metadata_QCFlag`) are left out (the default);
    /// such fields must then be given with `ok` false.
    pub fn exclude_flagged(mut self, on: bool) -> Self {
        self.exclude_flagged = on;
        self
    }

    /// Adds one field and its objects, one batch per object table (in the order given to
    /// [`WellSummary::new`]); every row must carry the field's ImageNumber.
    pub fn add_field(&mut self, field: &FieldInfo<'_>, objects: &[&RecordBatch]) -> Result<()> {
        let n = field.image_number;
        if objects.len() != self.objects.len() {
            return Err(Error::Invalid(format!(
                "field {n}: {} object tables given, expected {}",
                objects.len(),
                self.objects.len()
            )));
        }
        if self
            .given
            .insert(n, (field.plate.into(), field.well.into(), field.ok))
            .is_some()
        {
            return Err(Error::Invalid(format!(
                "field {n} was given to the Wells summary twice"
            )));
        }
        self.open(field.plate, field.well)?;
        if !field.ok {
            return Ok(());
        }
        for (o, batch) in objects.iter().enumerate() {
            let object = &self.objects[o].name;
            let numbers = column_u32(batch, IMAGE_NUMBER)
                .map_err(|e| Error::Invalid(format!("{object} table: {e}")))?;
            if let Some(row) =
                (0..batch.num_rows()).find(|&r| numbers.is_null(r) || numbers.value(r) != n)
            {
                return Err(Error::Invalid(format!(
                    "{object} rows of field {n}: row {row} has another ImageNumber"
                )));
            }
            self.push(o, batch, None)?;
        }
        Ok(())
    }

    /// The Wells table; `image` must list exactly the fields given, with the same plate, well
    /// and status.
    pub fn finish(self, image: &RecordBatch) -> Result<RecordBatch> {
        let fields = Fields::from_image(image, self.exclude_flagged)?;
        for (n, &(w, ok)) in &fields.by_image_number {
            let (plate, well) = &fields.wells[w];
            match self.given.get(n) {
                Some((p, wl, o)) if p == plate && wl == well && *o == ok => {}
                Some((p, wl, o)) => {
                    return Err(Error::Invalid(format!(
                        "field {n}: the Image table has {plate} {well} {}, but it was summarised as {p} {wl} {}",
                        status_word(ok),
                        status_word(*o)
                    )))
                }
                None => {
                    return Err(Error::Invalid(format!(
                        "field {n} of the Image table was not given to the Wells summary"
                    )))
                }
            }
        }
        if let Some(n) = self
            .given
            .keys()
            .filter(|n| !fields.by_image_number.contains_key(n))
            .min()
        {
            return Err(Error::Invalid(format!(
                "field {n} was summarised but is not in the Image table"
            )));
        }
        self.build(image, &fields)
    }

    /// Starts filling the well (a no-op when it is the one being filled); reduces the previous.
    fn open(&mut self, plate: &str, well: &str) -> Result<()> {
        if let Some(o) = &self.open {
            if o.key.0 == plate && o.key.1 == well {
                return Ok(());
            }
        }
        self.close();
        let key = (plate.to_string(), well.to_string());
        if self.closed.contains_key(&key) {
            return Err(Error::Invalid(format!(
                "plate {plate} well {well}: a field came after another well's; give the fields of a well one after another"
            )));
        }
        self.open = Some(OpenWell {
            key,
            values: vec![Vec::new(); self.n_features],
        });
        Ok(())
    }

    /// Reduces the well being filled to its statistics.
    fn close(&mut self) {
        if let Some(open) = self.open.take() {
            let stats = open
                .values
                .into_iter()
                .map(|mut v| Stats {
                    mean: mean_exact(&v),
                    median: median_of(&mut v),
                })
                .collect();
            self.closed.insert(open.key, stats);
        }
    }

    /// Adds the feature values of `rows` (all rows when `None`) of object table `o` to the
    /// well being filled.
    fn push(&mut self, o: usize, batch: &RecordBatch, rows: Option<&[usize]>) -> Result<()> {
        let object = &self.objects[o];
        let Some(open) = self.open.as_mut() else {
            return Err(Error::Invalid("no well to add objects to".into()));
        };
        for (k, f) in object.features.iter().enumerate() {
            let array = column(batch, &f.column)
                .map_err(|e| Error::Invalid(format!("{} table: {e}", object.name)))?;
            let dst = &mut open.values[object.offset + k];
            append_values(array, rows, dst).ok_or_else(|| {
                Error::Invalid(format!(
                    "{} column `{}`: unsupported type {}",
                    object.name,
                    f.column,
                    array.data_type()
                ))
            })?;
        }
        Ok(())
    }

    /// The table: image columns from `image`, statistics from the closed wells.
    fn build(mut self, image: &RecordBatch, fields: &Fields) -> Result<RecordBatch> {
        self.close();
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
            if !name.starts_with("Metadata_")
                || [PLATE, WELL, SITE, QC_FLAG, QC_REASON].contains(&name.as_str())
            {
                continue;
            }
            let values =
                ipscope_table::arrow_select::take::take(image.column(i), &first_rows, None)
                    .map_err(|e| Error::Invalid(format!("Image column `{name}`: {e}")))?;
            b.array(field.as_ref().clone(), values);
        }

        let mut fields_total = vec![0u64; n_wells];
        let mut fields_failed = vec![0u64; n_wells];
        let mut excluded = vec![0u64; n_wells];
        let mut reasons: Vec<BTreeMap<String, u64>> = vec![BTreeMap::new(); n_wells];
        for row in 0..image.num_rows() {
            let w = fields.well_of_row[row];
            fields_total[w] += 1;
            if !fields.status_ok[row] {
                fields_failed[w] += 1;
            } else if !fields.ok[row] {
                excluded[w] += 1;
                let why = fields
                    .reasons
                    .get(row)
                    .cloned()
                    .flatten()
                    .unwrap_or_default();
                let mut keys: Vec<&str> = why
                    .split(';')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .collect();
                if keys.is_empty() {
                    keys.push("flagged");
                }
                keys.sort_unstable();
                keys.dedup();
                for k in keys {
                    *reasons[w].entry(k.to_string()).or_default() += 1;
                }
            }
        }
        b.u64(COUNT_FIELDS, fields_total)
            .doc("Number of fields (images) of the well in the run")
            .u64(COUNT_FIELDS_FAILED, fields_failed)
            .doc("Number of the well's fields whose Status is not \"ok\" (not analysed)");
        if fields.has_qc {
            b.u64(COUNT_EXCLUDED_FIELDS, excluded)
                .doc("Number of the well's fields with Status \"ok\" left out of its counts and statistics because image QC flagged them (Metadata_QCFlag)")
                .str(
                    EXCLUDED_REASONS,
                    reasons
                        .iter()
                        .map(|r| {
                            r.iter()
                                .map(|(k, n)| format!("{k}:{n}"))
                                .collect::<Vec<_>>()
                                .join(";")
                        })
                        .collect(),
                )
                .doc("Image-QC reasons of the excluded fields, each with its number of fields (reason:count;...), empty when none");
        }

        for (i, field) in image.schema_ref().fields().iter().enumerate() {
            let name = field.name();
            if !name.starts_with("Count_") {
                continue;
            }
            if name == COUNT_FIELDS || name == COUNT_FIELDS_FAILED || name == COUNT_EXCLUDED_FIELDS
            {
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

        let stats: Vec<Option<&Vec<Stats>>> =
            fields.wells.iter().map(|k| self.closed.get(k)).collect();
        for object in &self.objects {
            for (k, f) in object.features.iter().enumerate() {
                let at = object.offset + k;
                let of = |s: Option<&Vec<Stats>>| s.and_then(|s| s.get(at)).copied();
                let medians = stats.iter().map(|s| of(*s).and_then(|s| s.median));
                let means = stats.iter().map(|s| of(*s).and_then(|s| s.mean));
                let what = f
                    .description
                    .as_ref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default();
                let (object, name, output) = (&object.name, &f.column, &f.output);
                b.opt_f64(&format!("Median_{output}"), medians.collect())
                    .doc(&format!(
                    "Median over the well's {object} objects of {name}{what}; NaN left out, null when none"
                ));
                b.opt_f64(&format!("Mean_{output}"), means.collect())
                    .doc(&format!(
                    "Mean over the well's {object} objects of {name}{what}; NaN left out, null when none"
                ));
            }
        }

        Ok(b.finish()?)
    }
}

fn status_word(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "failed"
    }
}

/// The image table's fields grouped into wells.
struct Fields {
    /// (plate, well) in output order.
    wells: Vec<(String, String)>,
    /// Output row (well index) of each image row.
    well_of_row: Vec<usize>,
    /// Whether each image row has Status "ok" and is not excluded by image QC.
    ok: Vec<bool>,
    /// Whether each image row has Status "ok".
    status_ok: Vec<bool>,
    /// Whether the Image table has a `Metadata_QCFlag` column.
    has_qc: bool,
    /// `Metadata_QCReason` of each row (empty when the column is absent).
    reasons: Vec<Option<String>>,
    /// Image row of each well's field with the smallest ImageNumber.
    first_row: Vec<usize>,
    /// (well index, ok) of each ImageNumber.
    by_image_number: HashMap<u32, (usize, bool)>,
}

impl Fields {
    fn from_image(image: &RecordBatch, exclude_flagged: bool) -> Result<Fields> {
        let numbers = column_u32(image, IMAGE_NUMBER)?;
        let plates = column_str(image, PLATE)?;
        let wells = column_str(image, WELL)?;
        let status = column_str(image, STATUS)?;
        let n = image.num_rows();
        let status_ok: Vec<bool> = (0..n)
            .map(|row| status.is_valid(row) && status.value(row) == STATUS_OK)
            .collect();
        let (has_qc, flagged, reasons) = match image.column_by_name(QC_FLAG) {
            None => (false, vec![false; n], Vec::new()),
            Some(a) => {
                let flags = a.as_boolean_opt().ok_or_else(|| {
                    Error::Invalid(format!(
                        "Image column `{QC_FLAG}` is {}, expected Boolean",
                        a.data_type()
                    ))
                })?;
                let flagged = (0..n)
                    .map(|r| flags.is_valid(r) && flags.value(r))
                    .collect();
                let reasons = match image.column_by_name(QC_REASON) {
                    None => Vec::new(),
                    Some(_) => {
                        let r = column_str(image, QC_REASON)?;
                        (0..n)
                            .map(|i| r.is_valid(i).then(|| r.value(i).to_string()))
                            .collect()
                    }
                };
                (true, flagged, reasons)
            }
        };

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
            ok: (0..n)
                .map(|row| status_ok[row] && !(exclude_flagged && flagged[row]))
                .collect(),
            status_ok,
            has_qc,
            reasons,
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

/// Mean of values free of NaN: their exact sum, rounded once to the nearest f64 (Shewchuk's
/// non-overlapping partial sums, as Python's `math.fsum`), divided by their count. Exact, so
/// the same bits for the values in any order. With an infinity among them, or a finite sum
/// beyond f64's range, the plain sum's infinity (or NaN for both signs) stands instead.
fn mean_exact(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let n = v.len() as f64;
    if v.iter().any(|x| x.is_infinite()) {
        return Some(v.iter().sum::<f64>() / n);
    }
    if let Some(sum) = exact_sum_fixed(v) {
        return Some(sum / n);
    }
    Some(match exact_sum(v) {
        Ok(partials) => round_partials(&partials) / n,
        Err(plain_mean) => plain_mean,
    })
}

/// The exact sum of finite `v` rounded once to the nearest f64 (ties to even), by integer
/// arithmetic: every value is an integer multiple of the smallest value's last bit `2^e`,
/// and when the sum of those multiples fits an i128 (the values span at most ~120 bits from
/// the largest one's top bit to the smallest one's last, as the measurements of one column
/// do) they are added exactly as i128 and the total converted once. `None` when they do not
/// fit, or when the result could fall outside f64's normal range: Shewchuk's partials
/// ([`exact_sum`]) take over. Both give the one correctly rounded exact sum, so the same
/// bits (test `integer_sum_rounds_like_the_partials`); the integer sum is several times
/// faster.
fn exact_sum_fixed(v: &[f64]) -> Option<f64> {
    /// `(odd mantissa, exponent)` with `|x| = m · 2^e`, for finite non-zero `x`.
    #[inline(always)]
    fn parts(x: f64) -> (u64, i32) {
        let bits = x.to_bits();
        let field = ((bits >> 52) & 0x7ff) as i32;
        let frac = bits & ((1u64 << 52) - 1);
        let (m, e) = if field == 0 {
            (frac, -1074)
        } else {
            (frac | (1u64 << 52), field - 1075)
        };
        let tz = m.trailing_zeros();
        (m >> tz, e + tz as i32)
    }
    let (mut lowest, mut top) = (i32::MAX, i32::MIN);
    for &x in v {
        if x != 0.0 {
            let (m, e) = parts(x);
            lowest = lowest.min(e);
            top = top.max(e + (64 - m.leading_zeros()) as i32);
        }
    }
    if lowest == i32::MAX {
        return Some(0.0);
    }
    // The sum of `len` values below 2^top stays below 2^(top + count_bits).
    let count_bits = (usize::BITS - v.len().leading_zeros()) as i32;
    if top - lowest + count_bits > 126 || lowest < -1022 || top + count_bits > 1023 {
        return None;
    }
    let mut sum: i128 = 0;
    for &x in v {
        if x != 0.0 {
            let (m, e) = parts(x);
            let multiple = (m as i128) << (e - lowest);
            sum += if x < 0.0 { -multiple } else { multiple };
        }
    }
    // `as` rounds the integer to the nearest f64, ties to even; scaling by 2^lowest is exact
    // because a non-zero result is at least 2^lowest >= 2^-1022 (normal) and below 2^1023.
    let scale = f64::from_bits(((lowest + 1023) as u64) << 52);
    Some(sum as f64 * scale)
}

/// Adds `value` to the non-overlapping `partials` (increasing in magnitude), which then sum
/// exactly to the old sum plus `value` (Shewchuk's grow-expansion with zero elimination).
/// Returns the new top partial, infinite or NaN when the sum overflowed.
#[inline(always)]
fn grow(partials: &mut Vec<f64>, value: f64) -> f64 {
    let mut x = value;
    let mut kept = 0;
    for i in 0..partials.len() {
        let mut y = partials[i];
        if x.abs() < y.abs() {
            std::mem::swap(&mut x, &mut y);
        }
        let high = x + y;
        let low = y - (high - x);
        if low != 0.0 {
            partials[kept] = low;
            kept += 1;
        }
        x = high;
    }
    partials.truncate(kept);
    if x != 0.0 && x.is_finite() {
        partials.push(x);
    }
    x
}

/// The exact sum of `v` as non-overlapping partials, one value after another; when a
/// partial overflows, the plain sum's mean instead (infinite or NaN).
fn exact_sum(v: &[f64]) -> std::result::Result<Vec<f64>, f64> {
    // Invariant: `partials` are non-overlapping, increasing in magnitude, and sum exactly to
    // the values so far.
    let mut partials: Vec<f64> = Vec::with_capacity(8);
    for &value in v {
        let top = grow(&mut partials, value);
        if !top.is_finite() {
            return Err(v.iter().sum::<f64>() / v.len() as f64);
        }
    }
    Ok(partials)
}

/// The sum of non-overlapping partials (increasing magnitude) rounded once to the nearest
/// f64, ties to even, as `math.fsum` finishes.
fn round_partials(partials: &[f64]) -> f64 {
    let Some((&top, rest)) = partials.split_last() else {
        return 0.0;
    };
    let mut high = top;
    let mut low = 0.0;
    let mut i = rest.len();
    while i > 0 {
        i -= 1;
        let x = high;
        let y = rest[i];
        high = x + y;
        low = y - (high - x);
        if low != 0.0 {
            break;
        }
    }
    // Half-way case: the rest below decides the rounding direction.
    if i > 0 && ((low < 0.0 && rest[i - 1] < 0.0) || (low > 0.0 && rest[i - 1] > 0.0)) {
        let y = low * 2.0;
        let x = high + y;
        if y == x - high {
            high = x;
        }
    }
    high
}

/// Appends the values of `rows` (all when `None`) of a numeric column as f64 to `dst`,
/// leaving out nulls and NaN; `None` for other types.
fn append_values(array: &ArrayRef, rows: Option<&[usize]>, dst: &mut Vec<f64>) -> Option<()> {
    macro_rules! conv {
        ($t:ty) => {{
            let a = array.as_primitive_opt::<$t>()?;
            let mut put = |i: usize| {
                if a.is_valid(i) {
                    let x = a.value(i) as f64;
                    if !x.is_nan() {
                        dst.push(x);
                    }
                }
            };
            match rows {
                None => (0..a.len()).for_each(&mut put),
                Some(rows) => rows.iter().for_each(|&i| put(i)),
            }
            Some(())
        }};
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
