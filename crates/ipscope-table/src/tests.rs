use std::path::Path;
use std::sync::Arc;

use arrow_array::{Array, Float64Array, RecordBatch, UInt32Array};
use arrow_schema::{DataType, Field, Schema};

use crate::*;

fn nuclei(image: Vec<u32>, object: Vec<u32>, area: Vec<f64>) -> RecordBatch {
    let n = image.len();
    let mut b = TableBuilder::new();
    b.u32("ImageNumber", image)
        .doc("Field number in the run, from 1")
        .u32("ObjectNumber", object)
        .doc("Label value of the object in its field")
        .str(
            "Metadata_Well",
            (0..n).map(|i| format!("B{:02}", i % 3 + 2)).collect(),
        )
        .f64("Nuclei_AreaShape_Area", area)
        .doc("Number of pixels in the object")
        .opt_f64(
            "Nuclei_Intensity_MeanIntensity_OCT4",
            (0..n)
                .map(|i| (i % 2 == 0).then_some(i as f64 / 8.0))
                .collect(),
        )
        .opt_str(
            "Metadata_Compound",
            (0..n)
                .map(|i| (i % 3 != 0).then(|| format!("cmp{i}")))
                .collect(),
        )
        .u64("Count_Things", (0..n as u64).collect())
        .i64("Signed", (0..n as i64).map(|i| -i).collect())
        .bool("Flag", (0..n).map(|i| i % 2 == 1).collect());
    b.finish().unwrap()
}

fn sample() -> RecordBatch {
    nuclei(
        vec![1, 1, 2, 2, 3],
        vec![1, 2, 1, 2, 1],
        vec![10.0, f64::NAN, 3.5, -0.0, 1e300],
    )
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// NaN != NaN, so compare batches through their IPC-independent debug of bit patterns:
/// equal schemas (incl. metadata) and equal array data, with NaN compared by bits.
fn assert_same(a: &RecordBatch, b: &RecordBatch) {
    assert_eq!(a.schema(), b.schema());
    assert_eq!(a.num_rows(), b.num_rows());
    for (x, y) in a.columns().iter().zip(b.columns()) {
        if let (Some(x), Some(y)) = (
            x.as_any().downcast_ref::<Float64Array>(),
            y.as_any().downcast_ref::<Float64Array>(),
        ) {
            assert_eq!(x.nulls(), y.nulls());
            for i in 0..x.len() {
                if x.is_valid(i) {
                    assert_eq!(x.value(i).to_bits(), y.value(i).to_bits(), "row {i}");
                }
            }
        } else {
            assert_eq!(x.to_data(), y.to_data());
        }
    }
}

// ---- builder ----

#[test]
fn builder_types_nullability_and_docs() {
    let batch = sample();
    let schema = batch.schema();
    let f = schema.field_with_name("ImageNumber").unwrap();
    assert_eq!(f.data_type(), &DataType::UInt32);
    assert!(!f.is_nullable());
    assert_eq!(
        f.metadata().get(DESCRIPTION_KEY).map(String::as_str),
        Some("Field number in the run, from 1")
    );
    let f = schema
        .field_with_name("Nuclei_Intensity_MeanIntensity_OCT4")
        .unwrap();
    assert!(f.is_nullable());
    assert!(f.metadata().is_empty());
    assert_eq!(
        schema
            .field_with_name("Metadata_Compound")
            .unwrap()
            .data_type(),
        &DataType::Utf8
    );
    assert_eq!(
        schema.field_with_name("Count_Things").unwrap().data_type(),
        &DataType::UInt64
    );
    assert_eq!(
        schema.field_with_name("Signed").unwrap().data_type(),
        &DataType::Int64
    );
    assert_eq!(
        schema.field_with_name("Flag").unwrap().data_type(),
        &DataType::Boolean
    );
    assert!(column_f64(&batch, "Nuclei_AreaShape_Area")
        .unwrap()
        .value(1)
        .is_nan());
    assert_eq!(
        column_f64(&batch, "Nuclei_Intensity_MeanIntensity_OCT4")
            .unwrap()
            .null_count(),
        2
    );
}

#[test]
fn builder_rejects_repeated_names() {
    let mut b = TableBuilder::new();
    b.u32("ImageNumber", vec![1]).f64("ImageNumber", vec![1.0]);
    let err = b.finish().unwrap_err();
    assert!(matches!(err, Error::Schema(_)));
    assert!(
        err.to_string().contains("column `ImageNumber` added twice"),
        "{err}"
    );
}

#[test]
fn builder_rejects_length_mismatch_and_lists_lengths() {
    let mut b = TableBuilder::new();
    b.u32("ImageNumber", vec![1, 2, 3])
        .f64("Area", vec![1.0, 2.0]);
    let err = b.finish().unwrap_err().to_string();
    assert!(err.contains("ImageNumber=3, Area=2"), "{err}");
}

#[test]
fn builder_rejects_doc_before_column() {
    let mut b = TableBuilder::new();
    b.doc("orphan").u32("ImageNumber", vec![1]);
    let err = b.finish().unwrap_err().to_string();
    assert!(err.contains("before any column"), "{err}");
}

#[test]
fn builder_rejects_array_that_does_not_fit_field() {
    let mut b = TableBuilder::new();
    b.array(
        Field::new("x", DataType::Float64, false),
        Arc::new(UInt32Array::from(vec![1])),
    );
    assert!(matches!(
        b.finish().unwrap_err(),
        Error::Arrow { path: None, .. }
    ));
    let mut b = TableBuilder::new();
    b.array(
        Field::new("x", DataType::Float64, false),
        Arc::new(Float64Array::from(vec![None, Some(1.0)])),
    );
    assert!(b.finish().is_err(), "nulls in a non-nullable field");
}

#[test]
fn builder_zero_columns_is_zero_rows() {
    let batch = TableBuilder::new().finish().unwrap();
    assert_eq!(batch.num_columns(), 0);
    assert_eq!(batch.num_rows(), 0);
}

#[test]
fn builder_zero_rows() {
    let mut b = TableBuilder::new();
    b.u32("ImageNumber", vec![])
        .opt_str("Metadata_Well", vec![]);
    let batch = b.finish().unwrap();
    assert_eq!((batch.num_rows(), batch.num_columns()), (0, 2));
}

// ---- format ----

#[test]
fn format_parse_display_extension() {
    assert_eq!("parquet".parse::<Format>().unwrap(), Format::Parquet);
    assert_eq!("Arrow".parse::<Format>().unwrap(), Format::Arrow);
    let err = "csv".parse::<Format>().unwrap_err().to_string();
    assert_eq!(
        err,
        "unknown table format `csv` (expected `parquet` or `arrow`)"
    );
    assert_eq!(Format::Parquet.extension(), "parquet");
    assert_eq!(Format::Arrow.to_string(), "arrow");
    assert_eq!(
        Format::from_path(Path::new("a/Nuclei.PARQUET")),
        Some(Format::Parquet)
    );
    assert_eq!(
        Format::from_path(Path::new("a/Nuclei.feather")),
        Some(Format::Arrow)
    );
    assert_eq!(Format::from_path(Path::new("a/Nuclei.csv")), None);
}

// ---- write / read ----

#[test]
fn roundtrip_both_formats_keeps_values_types_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let batch = sample();
    let second = nuclei(vec![4], vec![1], vec![2.0]);
    for format in [Format::Parquet, Format::Arrow] {
        let path = dir.path().join(format!("Nuclei.{}", format.extension()));
        let written = write_table(
            &path,
            batch.schema(),
            &[batch.clone(), second.clone()],
            format,
        )
        .unwrap();
        assert_eq!(written.path, path);
        assert_eq!(written.rows, 6);
        assert_eq!(written.bytes, std::fs::metadata(&path).unwrap().len());
        assert_eq!(written.sha256, sha256_file(&path).unwrap());
        assert_eq!(written.sha256.len(), 64);
        assert!(written
            .sha256
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));

        let (schema, batches) = read_table(&path).unwrap();
        assert_eq!(
            schema,
            batch.schema(),
            "{format}: schema incl. field descriptions"
        );
        let all = concat(&schema, &batches).unwrap();
        let expected = concat(&batch.schema(), &[batch.clone(), second.clone()]).unwrap();
        assert_same(&all, &expected);
    }
}

#[test]
fn read_detects_format_by_magic_not_name() {
    let dir = tempfile::tempdir().unwrap();
    let batch = sample();
    let misnamed = dir.path().join("table.parquet");
    write_table(
        &misnamed,
        batch.schema(),
        std::slice::from_ref(&batch),
        Format::Arrow,
    )
    .unwrap();
    let (_, batches) = read_table(&misnamed).unwrap();
    assert_same(&batches[0], &batch);

    let junk = dir.path().join("junk.parquet");
    std::fs::write(&junk, b"ImageNumber,Area\n1,2\n").unwrap();
    let err = read_table(&junk).unwrap_err();
    assert!(matches!(err, Error::UnknownFileType { .. }));
    assert!(
        err.to_string().starts_with(&junk.display().to_string()),
        "{err}"
    );

    let empty = dir.path().join("empty.arrow");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(
        read_table(&empty).unwrap_err(),
        Error::UnknownFileType { .. }
    ));

    let truncated = dir.path().join("truncated.parquet");
    std::fs::write(&truncated, b"PAR1garbage").unwrap();
    let err = read_table(&truncated).unwrap_err();
    assert!(matches!(err, Error::Parquet { .. }), "{err:?}");
    assert!(
        err.to_string().contains("truncated.parquet: Parquet: "),
        "{err}"
    );

    let missing = dir.path().join("missing.parquet");
    let err = read_table(&missing).unwrap_err();
    assert!(matches!(err, Error::Io { .. }));
    assert!(err.to_string().contains("missing.parquet: "), "{err}");
}

#[test]
fn rewrites_are_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let batch = sample();
    for format in [Format::Parquet, Format::Arrow] {
        let a = dir.path().join(format!("a.{format}"));
        let b = dir.path().join(format!("b.{format}"));
        let wa = write_table(&a, batch.schema(), std::slice::from_ref(&batch), format).unwrap();
        let wb = write_table(&b, batch.schema(), std::slice::from_ref(&batch), format).unwrap();
        assert_eq!(
            std::fs::read(&a).unwrap(),
            std::fs::read(&b).unwrap(),
            "{format}"
        );
        assert_eq!(wa.sha256, wb.sha256);
        // Overwriting an existing file goes through the same temp + rename.
        let wa2 = write_table(&a, batch.schema(), std::slice::from_ref(&batch), format).unwrap();
        assert_eq!(wa2.sha256, wa.sha256);
    }
}

#[test]
fn parquet_row_groups_are_bounded_and_zstd() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let dir = tempfile::tempdir().unwrap();
    let n = PARQUET_MAX_ROW_GROUP_ROWS + 10;
    let mut b = TableBuilder::new();
    b.u32("ImageNumber", (0..n as u32).collect());
    let batch = b.finish().unwrap();
    let path = dir.path().join("big.parquet");
    write_table(
        &path,
        batch.schema(),
        std::slice::from_ref(&batch),
        Format::Parquet,
    )
    .unwrap();
    let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
    let meta = reader.metadata();
    assert_eq!(meta.num_row_groups(), 2);
    assert_eq!(
        meta.row_group(0).num_rows(),
        PARQUET_MAX_ROW_GROUP_ROWS as i64
    );
    // The level is not stored in the file; the codec is.
    assert!(matches!(
        meta.row_group(0).column(0).compression(),
        parquet::basic::Compression::ZSTD(_)
    ));
    assert!(meta
        .file_metadata()
        .created_by()
        .unwrap_or("")
        .starts_with("parquet-rs version"));
}

#[test]
fn empty_table_roundtrip() {
    let dir = tempfile::tempdir().unwrap();
    let batch = nuclei(vec![], vec![], vec![]);
    for format in [Format::Parquet, Format::Arrow] {
        for batches in [vec![], vec![batch.clone()]] {
            let path = dir.path().join(format!("empty.{format}"));
            let written = write_table(&path, batch.schema(), &batches, format).unwrap();
            assert_eq!(written.rows, 0);
            let (schema, read) = read_table(&path).unwrap();
            assert_eq!(schema, batch.schema(), "{format}");
            assert_eq!(read.iter().map(RecordBatch::num_rows).sum::<usize>(), 0);
            assert_eq!(concat(&schema, &read).unwrap().num_rows(), 0);
        }
    }
}

#[test]
fn writer_rejects_mismatched_batch_and_accepts_other_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let batch = sample();
    let path = dir.path().join("t.parquet");
    let mut w = TableWriter::create(&path, batch.schema(), Format::Parquet).unwrap();
    let mut other = TableBuilder::new();
    other.u32("ImageNumber", vec![1]).f64("Area", vec![1.0]);
    let err = w.write(&other.finish().unwrap()).unwrap_err().to_string();
    assert!(
        err.contains("t.parquet: batch does not match the table"),
        "{err}"
    );
    // The same columns without the descriptions: written under the writer's schema.
    let bare = Arc::new(Schema::new(
        batch
            .schema()
            .fields()
            .iter()
            .map(|f| {
                f.as_ref()
                    .clone()
                    .with_metadata(arrow_schema::Metadata::new())
            })
            .collect::<Vec<_>>(),
    ));
    let stripped = RecordBatch::try_new(bare, batch.columns().to_vec()).unwrap();
    w.write(&stripped).unwrap();
    w.finish().unwrap();
    let (schema, _) = read_table(&path).unwrap();
    assert_eq!(schema, batch.schema());
}

#[test]
fn dropped_writer_leaves_no_file_and_temp_name_is_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let batch = sample();
    for format in [Format::Parquet, Format::Arrow] {
        let path = dir.path().join(format!("Nuclei.{format}"));
        let mut w = TableWriter::create(&path, batch.schema(), format).unwrap();
        w.write(&batch).unwrap();
        let names = files_in(dir.path());
        assert_eq!(names.len(), 1, "{names:?}");
        let temp = &names[0];
        assert!(temp.starts_with(&format!(".Nuclei.{format}.")), "{temp}");
        assert!(temp.ends_with(".tmp"), "{temp}");
        assert!(!temp.ends_with(".parquet") && !temp.ends_with(".arrow"));
        assert!(!path.exists(), "no final file before finish");
        drop(w);
        assert!(files_in(dir.path()).is_empty(), "temp removed on drop");
    }
    // finish leaves exactly the final file.
    let path = dir.path().join("Nuclei.parquet");
    write_table(&path, batch.schema(), &[batch], Format::Parquet).unwrap();
    assert_eq!(files_in(dir.path()), vec!["Nuclei.parquet".to_string()]);
}

#[test]
fn create_in_missing_folder_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/folder/Nuclei.parquet");
    let err = TableWriter::create(&path, sample().schema(), Format::Parquet).unwrap_err();
    assert!(matches!(err, Error::Io { .. }));
    assert!(
        err.to_string().contains("no/such/folder/.Nuclei.parquet."),
        "{err}"
    );
}

// ---- operations ----

#[test]
fn concat_checks_schema() {
    let a = sample();
    let b = nuclei(vec![9], vec![1], vec![1.0]);
    let all = concat(&a.schema(), &[a.clone(), b]).unwrap();
    assert_eq!(all.num_rows(), 6);
    assert_eq!(
        column_u32(&all, "ImageNumber").unwrap().values().as_ref(),
        &[1, 1, 2, 2, 3, 9]
    );
    assert_eq!(concat(&a.schema(), &[]).unwrap().num_rows(), 0);

    let mut other = TableBuilder::new();
    other.u32("ImageNumber", vec![1]);
    let err = concat(&a.schema(), &[a.clone(), other.finish().unwrap()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("concat: batch 1: 1 columns [ImageNumber], expected"),
        "{err}"
    );
}

#[test]
fn sort_is_stable_multi_key() {
    let mut b = TableBuilder::new();
    b.u32("ImageNumber", vec![2, 1, 2, 1, 1])
        .u32("ObjectNumber", vec![1, 2, 1, 1, 2])
        .str("tag", ["a", "b", "c", "d", "e"].map(String::from).to_vec());
    let batch = b.finish().unwrap();
    let sorted = sort_by_u32(&batch, &["ImageNumber", "ObjectNumber"]).unwrap();
    assert_eq!(
        column_u32(&sorted, "ImageNumber")
            .unwrap()
            .values()
            .as_ref(),
        &[1, 1, 1, 2, 2]
    );
    assert_eq!(
        column_u32(&sorted, "ObjectNumber")
            .unwrap()
            .values()
            .as_ref(),
        &[1, 2, 2, 1, 1]
    );
    let tags: Vec<_> = column_str(&sorted, "tag")
        .unwrap()
        .iter()
        .map(Option::unwrap)
        .collect();
    // equal keys keep input order: (1,2) b before e, (2,1) a before c
    assert_eq!(tags, ["d", "b", "e", "a", "c"]);
    // No keys: unchanged.
    assert_eq!(sort_by_u32(&batch, &[]).unwrap(), batch);
    let err = sort_by_u32(&batch, &["tag"]).unwrap_err().to_string();
    assert_eq!(err, "column `tag` is Utf8, expected UInt32");
}

#[test]
fn sort_puts_nulls_first() {
    let mut b = TableBuilder::new();
    b.array(
        Field::new("ImageNumber", DataType::UInt32, true),
        Arc::new(UInt32Array::from(vec![Some(2), None, Some(1)])),
    );
    let sorted = sort_by_u32(&b.finish().unwrap(), &["ImageNumber"]).unwrap();
    let col = column_u32(&sorted, "ImageNumber").unwrap();
    assert_eq!(col.iter().collect::<Vec<_>>(), vec![None, Some(1), Some(2)]);
}

#[test]
fn column_accessors_name_the_problem() {
    let batch = sample();
    assert_eq!(column_u32(&batch, "ObjectNumber").unwrap().len(), 5);
    assert_eq!(column_u64(&batch, "Count_Things").unwrap().value(4), 4);
    assert_eq!(column_i64(&batch, "Signed").unwrap().value(4), -4);
    assert_eq!(column_str(&batch, "Metadata_Well").unwrap().value(0), "B02");
    assert!(column_bool(&batch, "Flag").unwrap().value(1));
    assert_eq!(column(&batch, "Flag").unwrap().len(), 5);

    let err = column_f64(&batch, "Nuclei_AreaShape_Perimeter").unwrap_err();
    assert!(matches!(err, Error::MissingColumn { .. }));
    assert_eq!(
        err.to_string(),
        "no column `Nuclei_AreaShape_Perimeter` in table (columns: ImageNumber, ObjectNumber, \
         Metadata_Well, Nuclei_AreaShape_Area, Nuclei_Intensity_MeanIntensity_OCT4, \
         Metadata_Compound, Count_Things, Signed, Flag)"
    );
    assert_eq!(
        column_u32(&batch, "Nuclei_AreaShape_Area")
            .unwrap_err()
            .to_string(),
        "column `Nuclei_AreaShape_Area` is Float64, expected UInt32"
    );
    assert_eq!(
        column_u64(&batch, "ImageNumber").unwrap_err().to_string(),
        "column `ImageNumber` is UInt32, expected UInt64"
    );
    assert_eq!(
        column_i64(&batch, "Count_Things").unwrap_err().to_string(),
        "column `Count_Things` is UInt64, expected Int64"
    );
    assert_eq!(
        column_str(&batch, "ImageNumber").unwrap_err().to_string(),
        "column `ImageNumber` is UInt32, expected Utf8"
    );
    assert_eq!(
        column_f64(&batch, "Flag").unwrap_err().to_string(),
        "column `Flag` is Boolean, expected Float64"
    );
    let empty = TableBuilder::new().finish().unwrap();
    assert_eq!(
        column(&empty, "x").unwrap_err().to_string(),
        "no column `x` in table (columns: none)"
    );
}

#[test]
fn sha256_of_known_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("abc");
    std::fs::write(&path, b"abc").unwrap();
    // FIPS 180-2 test vector for "abc".
    assert_eq!(
        sha256_file(&path).unwrap(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn writer_and_errors_cross_threads() {
    fn assert_send<T: Send>() {}
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send::<TableWriter>();
    assert_send_sync::<Error>();
    assert_send_sync::<WrittenFile>();
}
