//! Arrow IPC in memory with schema metadata: the per-field records of a run in progress
//! (see the facade's `partial` module) carry one batch and a JSON string each.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_ipc::reader::FileReader;
use arrow_ipc::writer::FileWriter;
use arrow_schema::{Schema, SchemaRef};

use crate::{Error, Result};

/// Encodes `batch` as an Arrow IPC file whose schema carries `metadata` (added to the
/// batch's own schema metadata).
pub fn encode_ipc(batch: &RecordBatch, metadata: &HashMap<String, String>) -> Result<Vec<u8>> {
    let err = |e: arrow_schema::ArrowError| Error::Arrow {
        path: None,
        message: e.to_string(),
    };
    let mut meta: HashMap<String, String> = batch
        .schema()
        .metadata()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    meta.extend(metadata.iter().map(|(k, v)| (k.clone(), v.clone())));
    let schema = Arc::new(Schema::new_with_metadata(
        batch.schema().fields().clone(),
        meta,
    ));
    let batch = RecordBatch::try_new(schema.clone(), batch.columns().to_vec()).map_err(err)?;
    let mut bytes = Vec::new();
    let mut w = FileWriter::try_new(&mut bytes, &schema).map_err(err)?;
    w.write(&batch).map_err(err)?;
    w.finish().map_err(err)?;
    drop(w);
    Ok(bytes)
}

/// Reads an Arrow IPC file written by [`encode_ipc`]: its schema metadata and its batches,
/// re-labelled with `schema` (same columns) when one is given.
pub fn decode_ipc_file(
    path: &Path,
    schema: Option<&SchemaRef>,
) -> Result<(HashMap<String, String>, Vec<RecordBatch>)> {
    let err = |e: arrow_schema::ArrowError| Error::Arrow {
        path: Some(path.to_path_buf()),
        message: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let reader = FileReader::try_new(file, None).map_err(err)?;
    let meta: HashMap<String, String> = reader
        .schema()
        .metadata()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut batches = Vec::new();
    for b in reader {
        let b = b.map_err(err)?;
        batches.push(match schema {
            Some(s) => RecordBatch::try_new(s.clone(), b.columns().to_vec()).map_err(err)?,
            None => b,
        });
    }
    Ok((meta, batches))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TableBuilder;

    #[test]
    fn metadata_and_rows_survive_a_round_trip() {
        let mut b = TableBuilder::new();
        b.u32("ImageNumber", vec![3, 3])
            .f64("x", vec![1.5, f64::NAN]);
        let batch = b.finish().unwrap();
        let meta = HashMap::from([("k".to_string(), "{\"a\":1}".to_string())]);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.arrow");
        std::fs::write(&p, encode_ipc(&batch, &meta).unwrap()).unwrap();
        let (m, batches) = decode_ipc_file(&p, Some(&batch.schema())).unwrap();
        assert_eq!(m["k"], "{\"a\":1}");
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].num_rows(), 2);
        assert_eq!(batches[0].schema(), batch.schema());
        let x = crate::column_f64(&batches[0], "x").unwrap();
        assert_eq!(x.value(0), 1.5);
        assert!(x.value(1).is_nan());
    }
}
