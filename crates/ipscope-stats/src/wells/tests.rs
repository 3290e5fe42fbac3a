use super::*;

use ipscope_table::{column_f64, column_u64};

/// Marsaglia's xorshift64 from `seed` (non-zero): the tests' reproducible random numbers.
fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

/// Image table with rows deliberately out of plate/well order.
///
/// | ImageNumber | Plate | Well | Site | Compound | Dose | Status | Count_Nuclei |
/// |---|---|---|---|---|---|---|---|
/// | 4 | P1 | B03 | 2 | drug2 | 1.5 | ok     | 2 |
/// | 1 | P1 | B02 | 1 | DMSO  | 0.0 | ok     | 4 |
/// | 5 | P0 | C01 | 1 | null  | null| failed | 0 |
/// | 3 | P1 | B03 | 1 | drug  | 1.5 | failed | 9 |
/// | 2 | P1 | B02 | 2 | DMSO  | 0.0 | ok     | 1 |
fn image() -> RecordBatch {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut b = TableBuilder::new();
    b.u32("ImageNumber", vec![4, 1, 5, 3, 2])
        .str("Metadata_Plate", s(&["P1", "P1", "P0", "P1", "P1"]))
        .doc("Plate name")
        .str("Metadata_Well", s(&["B03", "B02", "C01", "B03", "B02"]))
        .u32("Metadata_Site", vec![2, 1, 1, 1, 2])
        .opt_str(
            "Metadata_Compound",
            vec![
                Some("drug2".into()),
                Some("DMSO".into()),
                None,
                Some("drug".into()),
                Some("DMSO".into()),
            ],
        )
        .doc("Compound from the plate layout")
        .opt_f64(
            "Metadata_Dose",
            vec![Some(1.5), Some(0.0), None, Some(1.5), Some(0.0)],
        )
        .str("Status", s(&["ok", "ok", "failed", "failed", "ok"]))
        .u64("Count_Nuclei", vec![2, 4, 0, 9, 1])
        .f64("Threshold_Otsu", vec![0.1; 5]);
    b.finish().unwrap()
}

/// Nuclei of fields 1 (4 objects), 2 (1), 4 (2) and one on failed field 3, which is left out.
fn nuclei() -> RecordBatch {
    let mut b = TableBuilder::new();
    b.u32("ImageNumber", vec![1, 1, 1, 1, 2, 4, 4, 3])
        .u32("ObjectNumber", vec![1, 2, 3, 4, 1, 1, 2, 1])
        .str("Metadata_Well", vec!["B02".to_string(); 8])
        .f64(
            "Nuclei_AreaShape_Area",
            vec![3.0, 1.0, 10.0, 2.0, f64::NAN, 7.0, 5.0, 1000.0],
        )
        .doc("Number of pixels")
        .opt_f64(
            "Nuclei_Intensity_MeanIntensity_OCT4",
            vec![
                Some(0.5),
                None,
                Some(0.1),
                Some(0.3),
                Some(0.2),
                None,
                None,
                Some(1.0),
            ],
        )
        .u32(
            "Nuclei_AreaShape_BoundingBoxMinimum_X",
            vec![0, 1, 2, 3, 4, 10, 20, 99],
        )
        .f64(
            "Intensity_MaxIntensity_DNA",
            vec![1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 4.0, 0.0],
        )
        .f64("Nuclei_Location_Center_X", vec![1.0; 8])
        .u32("Nuclei_Number_Object_Number", vec![1; 8])
        .u32("Parent_Colonies", vec![1; 8])
        .str("Nuclei_Label", vec!["x".to_string(); 8]);
    b.finish().unwrap()
}

fn f64s(batch: &RecordBatch, name: &str) -> Vec<Option<f64>> {
    column_f64(batch, name).unwrap().iter().collect()
}

fn u64s(batch: &RecordBatch, name: &str) -> Vec<u64> {
    column_u64(batch, name).unwrap().values().to_vec()
}

fn strs(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    column_str(batch, name)
        .unwrap()
        .iter()
        .map(|s| s.map(String::from))
        .collect()
}

#[test]
fn columns_in_order() {
    let wells = well_summary(&image(), &[("Nuclei", &nuclei())]).unwrap();
    let names: Vec<_> = wells
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        [
            "Metadata_Plate",
            "Metadata_Well",
            "Metadata_Compound",
            "Metadata_Dose",
            "Count_Fields",
            "Count_FieldsFailed",
            "Count_Nuclei",
            "Median_Nuclei_AreaShape_Area",
            "Mean_Nuclei_AreaShape_Area",
            "Median_Nuclei_Intensity_MeanIntensity_OCT4",
            "Mean_Nuclei_Intensity_MeanIntensity_OCT4",
            "Median_Nuclei_AreaShape_BoundingBoxMinimum_X",
            "Mean_Nuclei_AreaShape_BoundingBoxMinimum_X",
            "Median_Nuclei_Intensity_MaxIntensity_DNA",
            "Mean_Nuclei_Intensity_MaxIntensity_DNA",
        ]
    );
    let schema = wells.schema();
    // Layout columns keep type and description; plate keeps its description.
    let compound = schema.field_with_name("Metadata_Compound").unwrap();
    assert_eq!(compound.data_type(), &DataType::Utf8);
    assert_eq!(
        compound.metadata().get("description").unwrap(),
        "Compound from the plate layout"
    );
    assert_eq!(
        schema.field_with_name("Metadata_Dose").unwrap().data_type(),
        &DataType::Float64
    );
    assert_eq!(
        schema
            .field_with_name("Metadata_Plate")
            .unwrap()
            .metadata()
            .get("description")
            .unwrap(),
        "Plate name"
    );
    let area = schema
        .field_with_name("Median_Nuclei_AreaShape_Area")
        .unwrap();
    assert!(area
        .metadata()
        .get("description")
        .unwrap()
        .contains("Number of pixels"));
}

#[test]
fn values_checked_by_hand() {
    let wells = well_summary(&image(), &[("Nuclei", &nuclei())]).unwrap();
    assert_eq!(wells.num_rows(), 3);
    // Plate P0 sorts before P1; B02 before B03.
    assert_eq!(
        strs(&wells, "Metadata_Plate"),
        [Some("P0".into()), Some("P1".into()), Some("P1".into())]
    );
    assert_eq!(
        strs(&wells, "Metadata_Well"),
        [Some("C01".into()), Some("B02".into()), Some("B03".into())]
    );
    // First field of B03 is ImageNumber 3 (drug), not 4 (drug2), though 4 comes first in the table.
    assert_eq!(
        strs(&wells, "Metadata_Compound"),
        [None, Some("DMSO".into()), Some("drug".into())]
    );
    assert_eq!(f64s(&wells, "Metadata_Dose"), [None, Some(0.0), Some(1.5)]);
    assert_eq!(u64s(&wells, "Count_Fields"), [1, 2, 2]);
    assert_eq!(u64s(&wells, "Count_FieldsFailed"), [1, 0, 1]);
    // B02: 4 + 1; B03: 2 (the failed field's 9 is not counted).
    assert_eq!(u64s(&wells, "Count_Nuclei"), [0, 5, 2]);

    // B02 areas [3, 1, 10, 2, NaN] -> NaN dropped -> sorted [1, 2, 3, 10]: median (2+3)/2 = 2.5,
    // mean 16/4 = 4. B03 [7, 5]: median 6, mean 6 (object 1000 of failed field 3 left out).
    assert_eq!(
        f64s(&wells, "Median_Nuclei_AreaShape_Area"),
        [None, Some(2.5), Some(6.0)]
    );
    assert_eq!(
        f64s(&wells, "Mean_Nuclei_AreaShape_Area"),
        [None, Some(4.0), Some(6.0)]
    );
    // B02 OCT4 [0.5, null, 0.1, 0.3, 0.2] -> [0.1, 0.2, 0.3, 0.5]: median 0.25, mean 1.1/4 = 0.275.
    // B03 only nulls -> null.
    let median = f64s(&wells, "Median_Nuclei_Intensity_MeanIntensity_OCT4");
    let mean = f64s(&wells, "Mean_Nuclei_Intensity_MeanIntensity_OCT4");
    assert_eq!((median[0], median[2], mean[2]), (None, None, None));
    assert!((median[1].unwrap() - 0.25).abs() < 1e-15);
    assert!((mean[1].unwrap() - 0.275).abs() < 1e-15);
    // UInt32 feature: B02 [0, 1, 2, 3, 4] median 2, mean 10/5 = 2; B03 [10, 20] median 15, mean 15.
    assert_eq!(
        f64s(&wells, "Median_Nuclei_AreaShape_BoundingBoxMinimum_X"),
        [None, Some(2.0), Some(15.0)]
    );
    assert_eq!(
        f64s(&wells, "Mean_Nuclei_AreaShape_BoundingBoxMinimum_X"),
        [None, Some(2.0), Some(15.0)]
    );
    // Unprefixed column, prefixed in the output: B03 [2, 4] median 3, mean 3.
    assert_eq!(
        f64s(&wells, "Median_Nuclei_Intensity_MaxIntensity_DNA"),
        [None, Some(1.0), Some(3.0)]
    );
}

#[test]
fn row_order_and_sharding_do_not_change_the_result() {
    let expected = well_summary(&image(), &[("Nuclei", &nuclei())]).unwrap();

    // Objects reversed.
    let objects = nuclei();
    let reversed = UInt32Array::from((0..objects.num_rows() as u32).rev().collect::<Vec<_>>());
    let objects_rev =
        ipscope_table::arrow_select::take::take_record_batch(&objects, &reversed).unwrap();
    assert_eq!(
        well_summary(&image(), &[("Nuclei", &objects_rev)]).unwrap(),
        expected
    );

    // Image as a merge of two shards: sorted by ImageNumber, as `merge` writes it.
    let image_sorted = ipscope_table::sort_by_u32(&image(), &["ImageNumber"]).unwrap();
    let objects_sorted =
        ipscope_table::sort_by_u32(&objects, &["ImageNumber", "ObjectNumber"]).unwrap();
    assert_eq!(
        well_summary(&image_sorted, &[("Nuclei", &objects_sorted)]).unwrap(),
        expected
    );
}

#[test]
fn several_object_tables() {
    let mut b = TableBuilder::new();
    b.u32("ImageNumber", vec![1, 4])
        .f64("Cells_AreaShape_Area", vec![100.0, 300.0]);
    let cells = b.finish().unwrap();
    let wells = well_summary(&image(), &[("Nuclei", &nuclei()), ("Cells", &cells)]).unwrap();
    assert_eq!(
        f64s(&wells, "Median_Cells_AreaShape_Area"),
        [None, Some(100.0), Some(300.0)]
    );

    // The same output name from two tables is refused.
    let mut b = TableBuilder::new();
    b.u32("ImageNumber", vec![1])
        .f64("AreaShape_Area", vec![1.0]);
    let clash = b.finish().unwrap();
    let err = well_summary(&image(), &[("Nuclei", &nuclei()), ("Nuclei", &clash)]).unwrap_err();
    assert!(err.to_string().contains("`Nuclei_AreaShape_Area`"), "{err}");
}

#[test]
fn empty_tables_give_zero_rows_with_all_columns() {
    let image = image().slice(0, 0);
    let nuclei = nuclei().slice(0, 0);
    let wells = well_summary(&image, &[("Nuclei", &nuclei)]).unwrap();
    assert_eq!(wells.num_rows(), 0);
    assert_eq!(wells.num_columns(), 15);
}

#[test]
fn well_without_objects_has_null_statistics_and_zero_count() {
    let mut b = TableBuilder::new();
    b.u32("ImageNumber", vec![1])
        .str("Metadata_Plate", vec!["P".into()])
        .str("Metadata_Well", vec!["A01".into()])
        .str("Status", vec!["ok".into()])
        .u64("Count_Nuclei", vec![0]);
    let image = b.finish().unwrap();
    let wells = well_summary(&image, &[("Nuclei", &nuclei().slice(0, 0))]).unwrap();
    assert_eq!(u64s(&wells, "Count_Nuclei"), [0]);
    assert_eq!(f64s(&wells, "Mean_Nuclei_AreaShape_Area"), [None]);
    let col = wells
        .column_by_name("Median_Nuclei_AreaShape_Area")
        .unwrap();
    assert_eq!(col.null_count(), 1);
}

#[test]
fn errors_name_the_problem() {
    let image = image();
    // Missing Status.
    let no_status = image.project(&[0, 1, 2]).unwrap();
    let err = well_summary(&no_status, &[]).unwrap_err().to_string();
    assert!(err.starts_with("no column `Status` in table"), "{err}");

    // Object of an unknown field.
    let mut b = TableBuilder::new();
    b.u32("ImageNumber", vec![1, 17])
        .f64("Nuclei_AreaShape_Area", vec![1.0, 2.0]);
    let err = well_summary(&image, &[("Nuclei", &b.finish().unwrap())])
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "Nuclei table row 1: ImageNumber 17 is not in the Image table"
    );

    // Object table without ImageNumber.
    let mut b = TableBuilder::new();
    b.f64("Nuclei_AreaShape_Area", vec![1.0]);
    let err = well_summary(&image, &[("Nuclei", &b.finish().unwrap())])
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("Nuclei table: no column `ImageNumber`"),
        "{err}"
    );

    // Duplicate ImageNumber.
    let twice =
        ipscope_table::concat(&image.schema(), &[image.clone(), image.slice(0, 1)]).unwrap();
    let err = well_summary(&twice, &[]).unwrap_err().to_string();
    assert_eq!(err, "Image table: ImageNumber 4 appears more than once");

    // A count that is not an unsigned integer.
    let mut b = TableBuilder::new();
    b.u32("ImageNumber", vec![1])
        .str("Metadata_Plate", vec!["P".into()])
        .str("Metadata_Well", vec!["A01".into()])
        .str("Status", vec!["ok".into()])
        .f64("Count_Nuclei", vec![1.0]);
    let err = well_summary(&b.finish().unwrap(), &[])
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "Image column `Count_Nuclei` is Float64, expected an unsigned integer count"
    );
}

#[test]
fn median_like_numpy() {
    // np.median([1, 2, 3, 10]) == 2.5; np.median([3]) == 3; np.median([1, 2, 9]) == 2
    assert_eq!(median_of(&mut [10.0, 2.0, 3.0, 1.0]), Some(2.5));
    assert_eq!(median_of(&mut [3.0]), Some(3.0));
    assert_eq!(median_of(&mut [9.0, 1.0, 2.0]), Some(2.0));
    assert_eq!(median_of(&mut []), None);
    // Selection gives the sorted values' median for any order, ties and signed zeros included.
    let mut next = xorshift(0x2545_f491_4f6c_dd1d);
    for n in 1..60usize {
        let mut v: Vec<f64> = (0..n)
            .map(|_| {
                let rng = next();
                match rng % 5 {
                    0 => 0.0,
                    1 => -0.0,
                    _ => (rng >> 40) as f64 / 64.0 - 100.0,
                }
            })
            .collect();
        let mut sorted = v.clone();
        sorted.sort_by(f64::total_cmp);
        let want = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        assert_eq!(
            median_of(&mut v).map(f64::to_bits),
            Some(want.to_bits()),
            "{n}"
        );
    }
}

#[test]
fn mean_is_the_exact_sum_rounded_once() {
    // Left to right, -1e16 + 1 == -1e16 and the 1 is lost; the exact sum is 1.
    assert_eq!(mean_exact(&[-1e16, 1.0, 1e16]), Some(1.0 / 3.0));
    assert_eq!(mean_exact(&[1e16, 1.0, -1e16]), Some(1.0 / 3.0));
    assert_eq!(mean_exact(&[1.0, 2.0, 3.0, 10.0]), Some(4.0));
    assert_eq!(mean_exact(&[]), None);
    assert_eq!(mean_exact(&[1.0, f64::INFINITY]), Some(f64::INFINITY));
    assert!(mean_exact(&[f64::NEG_INFINITY, f64::INFINITY]).is_some_and(f64::is_nan));
    // A finite sum beyond f64's range is the plain sum's infinity.
    assert_eq!(mean_exact(&[f64::MAX, f64::MAX]), Some(f64::INFINITY));
    // Half-way cases: 2^53 + 1 is a tie between 2^53 and 2^53 + 2; a tiny value beyond decides.
    let two53 = 9_007_199_254_740_992.0f64;
    assert_eq!(mean_exact(&[two53, 1.0, 1e-30]), Some((two53 + 2.0) / 3.0));
    assert_eq!(mean_exact(&[two53, 1.0, -1e-30]), Some(two53 / 3.0));
    assert_eq!(mean_exact(&[two53, 1.0]), Some(two53 / 2.0));

    // Against exact integer arithmetic: multiples of 2^-20 of wildly different sizes, whose
    // sum an i128 holds exactly (and `as f64` rounds to nearest, ties to even), in several
    // orders.
    let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
    for trial in 0..200 {
        let n = 1 + (next() % 300) as usize;
        let ticks: Vec<i128> = (0..n)
            .map(|_| {
                let r = next();
                let magnitude = (r >> 11) as i128 >> (r % 53);
                let sign = if r & 1 == 0 { 1 } else { -1 };
                sign * (magnitude << (next() % 20))
            })
            .collect();
        let scale = (1u64 << 20) as f64;
        let mut v: Vec<f64> = ticks.iter().map(|&t| t as f64 / scale).collect();
        // Every value is exact: at most 53 significant bits.
        for (&t, &x) in ticks.iter().zip(&v) {
            assert_eq!((x * scale) as i128, t);
        }
        let want = (ticks.iter().sum::<i128>() as f64 / scale) / n as f64;
        assert_eq!(
            mean_exact(&v).map(f64::to_bits),
            Some(want.to_bits()),
            "{trial}"
        );
        v.reverse();
        assert_eq!(
            mean_exact(&v).map(f64::to_bits),
            Some(want.to_bits()),
            "{trial}"
        );
        v.sort_by(f64::total_cmp);
        assert_eq!(
            mean_exact(&v).map(f64::to_bits),
            Some(want.to_bits()),
            "{trial}"
        );
    }
}

#[test]
fn feature_selection() {
    assert!(is_feature("Nuclei_AreaShape_Area", &DataType::Float64));
    assert!(is_feature("Nuclei_AreaShape_Area", &DataType::UInt64));
    assert!(!is_feature("Nuclei_Label", &DataType::Utf8));
    assert!(!is_feature("ImageNumber", &DataType::UInt32));
    assert!(!is_feature("ObjectNumber", &DataType::UInt32));
    assert!(!is_feature("Metadata_Dose", &DataType::Float64));
    assert!(!is_feature("Nuclei_Location_Center_X", &DataType::Float64));
    assert!(!is_feature("Location_Center_X", &DataType::Float64));
    assert!(!is_feature(
        "Nuclei_Number_Object_Number",
        &DataType::UInt32
    ));
    assert!(!is_feature("Parent_Colonies", &DataType::UInt32));
    assert!(!is_feature("Nuclei_Parent_Colonies", &DataType::UInt32));
}

/// Fields given one by one in ImageNumber order (wells one after another), as the pipeline
/// streams them, give the same table as the whole-table summary.
#[test]
fn streaming_equals_whole_table() {
    let image = image();
    let objects = nuclei();
    let expected = well_summary(&image, &[("Nuclei", &objects)]).unwrap();

    let sorted = ipscope_table::sort_by_u32(&image, &["ImageNumber"]).unwrap();
    let numbers = column_u32(&sorted, "ImageNumber").unwrap();
    let plates = column_str(&sorted, "Metadata_Plate").unwrap();
    let wells = column_str(&sorted, "Metadata_Well").unwrap();
    let status = column_str(&sorted, "Status").unwrap();
    let object_numbers = column_u32(&objects, "ImageNumber").unwrap();
    let mut summary = WellSummary::new(&[("Nuclei", objects.schema())]).unwrap();
    for row in 0..sorted.num_rows() {
        let n = numbers.value(row);
        let rows: Vec<u32> = (0..objects.num_rows() as u32)
            .filter(|&r| object_numbers.value(r as usize) == n)
            .collect();
        let of_field = ipscope_table::arrow_select::take::take_record_batch(
            &objects,
            &UInt32Array::from(rows),
        )
        .unwrap();
        let field = FieldInfo {
            image_number: n,
            plate: plates.value(row),
            well: wells.value(row),
            ok: status.value(row) == "ok",
        };
        summary.add_field(&field, &[&of_field]).unwrap();
    }
    assert_eq!(summary.finish(&image).unwrap(), expected);
}

#[test]
fn streaming_refuses_what_does_not_fit() {
    let schema = nuclei().schema();
    let empty = nuclei().slice(0, 0);
    let field = |image_number, well| FieldInfo {
        image_number,
        plate: "P1",
        well,
        ok: true,
    };

    // A well's fields interleaved with another well's.
    let mut s = WellSummary::new(&[("Nuclei", schema.clone())]).unwrap();
    s.add_field(&field(1, "B02"), &[&empty]).unwrap();
    s.add_field(&field(3, "B03"), &[&empty]).unwrap();
    let err = s.add_field(&field(2, "B02"), &[&empty]).unwrap_err();
    assert!(err.to_string().contains("well B02"), "{err}");

    // Rows of another field.
    let mut s = WellSummary::new(&[("Nuclei", schema.clone())]).unwrap();
    let err = s
        .add_field(&field(2, "B02"), &[&nuclei().slice(0, 1)])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Nuclei rows of field 2: row 0 has another ImageNumber"
    );

    // An Image table with a field that was never given.
    let mut s = WellSummary::new(&[("Nuclei", schema)]).unwrap();
    s.add_field(&field(1, "B02"), &[&empty]).unwrap();
    let err = s.finish(&image()).unwrap_err();
    assert!(err.to_string().contains("not given"), "{err}");
}

/// `image()` with image-QC columns: field 1 (B02 site 1) flagged for two reasons, field 3
/// (failed) flagged too, which counts as failed, not excluded.
fn image_with_qc() -> RecordBatch {
    let base = image();
    let mut b = TableBuilder::new();
    b.bool(QC_FLAG, vec![false, true, false, true, false]).str(
        QC_REASON,
        ["", "saturated;low_content", "", "saturated", ""]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    );
    let qc = b.finish().unwrap();
    let mut fields: Vec<Field> = base
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut columns = base.columns().to_vec();
    for (f, c) in qc.schema().fields().iter().zip(qc.columns()) {
        fields.push(f.as_ref().clone());
        columns.push(c.clone());
    }
    RecordBatch::try_new(Arc::new(ipscope_table::Schema::new(fields)), columns).unwrap()
}

#[test]
fn flagged_fields_are_excluded_and_counted() {
    let flagged = image_with_qc();
    let wells = well_summary(&flagged, &[("Nuclei", &nuclei())]).unwrap();
    // Rows: P0 C01, P1 B02, P1 B03.
    assert_eq!(strs(&wells, "Metadata_Well")[1].as_deref(), Some("B02"));
    assert_eq!(u64s(&wells, COUNT_EXCLUDED_FIELDS), vec![0, 1, 0]);
    assert_eq!(u64s(&wells, "Count_FieldsFailed"), vec![1, 0, 1]);
    assert_eq!(
        strs(&wells, EXCLUDED_REASONS),
        vec![
            Some(String::new()),
            Some("low_content:1;saturated:1".into()),
            Some(String::new())
        ]
    );
    // B02 keeps field 2 only: one nucleus, area NaN (left out), max intensity 1.
    assert_eq!(u64s(&wells, "Count_Nuclei"), vec![0, 1, 2]);
    assert_eq!(f64s(&wells, "Median_Nuclei_AreaShape_Area")[1], None);
    assert_eq!(
        f64s(&wells, "Mean_Nuclei_Intensity_MaxIntensity_DNA")[1],
        Some(1.0)
    );
    // The field-level QC columns are not copied into the well row.
    assert!(wells.schema().field_with_name(QC_FLAG).is_err());
    assert!(wells.schema().field_with_name(QC_REASON).is_err());

    // Not excluding: the plain summary's numbers, and no field counted as excluded.
    let kept = well_summary_with(&flagged, &[("Nuclei", &nuclei())], false).unwrap();
    let plain = well_summary(&image(), &[("Nuclei", &nuclei())]).unwrap();
    assert_eq!(u64s(&kept, COUNT_EXCLUDED_FIELDS), vec![0, 0, 0]);
    assert_eq!(u64s(&kept, "Count_Nuclei"), u64s(&plain, "Count_Nuclei"));
    assert_eq!(
        f64s(&kept, "Median_Nuclei_AreaShape_Area"),
        f64s(&plain, "Median_Nuclei_AreaShape_Area")
    );

    // Streaming gives the same table when the pipeline marks the flagged field not ok.
    let nuclei = nuclei();
    let mut s = WellSummary::new(&[("Nuclei", nuclei.schema())]).unwrap();
    let numbers = column_u32(&nuclei, IMAGE_NUMBER).unwrap();
    for (n, plate, well, ok) in [
        (1, "P1", "B02", false),
        (2, "P1", "B02", true),
        (3, "P1", "B03", false),
        (4, "P1", "B03", true),
        (5, "P0", "C01", false),
    ] {
        let rows: Vec<u32> = (0..nuclei.num_rows() as u32)
            .filter(|&r| numbers.value(r as usize) == n)
            .collect();
        let part =
            ipscope_table::arrow_select::take::take_record_batch(&nuclei, &UInt32Array::from(rows))
                .unwrap();
        let field = FieldInfo {
            image_number: n,
            plate,
            well,
            ok,
        };
        s.add_field(&field, &[&part]).unwrap();
    }
    assert_eq!(s.finish(&flagged).unwrap(), wells);
}

#[test]
fn integer_sum_rounds_like_the_partials() {
    // Values of both signs spread over `span` binary orders of magnitude around 2^shift,
    // with exact cancellations and ties: where the integer sum applies it must give the
    // partials' bits, and it must decline where the values span too much.
    let mut next = xorshift(0x2545_f491_4f6c_dd1d);
    let (mut integer, mut declined) = (0, 0);
    for trial in 0..2000 {
        let n = (next() % 70) as usize + 1;
        let span = [4, 20, 60, 140][trial % 4];
        let shift = (next() % 1600) as i32 - 800;
        let mut v: Vec<f64> = (0..n)
            .map(|_| {
                let r = next();
                // 1 to 53 significant bits.
                let mantissa = ((r >> 11) >> (next() % 53)) as f64;
                let exponent = shift + (next() % span) as i32;
                let sign = if r & 1 == 0 { 1.0 } else { -1.0 };
                sign * mantissa * 2f64.powi(exponent)
            })
            .collect();
        if trial % 3 == 0 {
            let copies: Vec<f64> = v.iter().step_by(2).map(|x| -x).collect();
            v.extend(copies);
        }
        if v.iter().any(|x| !x.is_finite()) {
            continue;
        }
        let Ok(partials) = exact_sum(&v) else {
            assert_eq!(
                exact_sum_fixed(&v),
                None,
                "trial {trial}: overflow is declined"
            );
            continue;
        };
        match exact_sum_fixed(&v) {
            Some(sum) => {
                integer += 1;
                assert_eq!(
                    sum.to_bits(),
                    round_partials(&partials).to_bits(),
                    "trial {trial}: {v:?}"
                );
            }
            None => declined += 1,
        }
    }
    // Both paths were taken (the 140-bit spans do not fit an i128).
    assert!(integer > 1000 && declined > 100, "{integer} {declined}");
    assert_eq!(exact_sum_fixed(&[1.0, 2f64.powi(-200)]), None);
    assert_eq!(exact_sum_fixed(&[0.0, -0.0]), Some(0.0));
    assert_eq!(exact_sum_fixed(&[5e-324, 5e-324]), None);
}
