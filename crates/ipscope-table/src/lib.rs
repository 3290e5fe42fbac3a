//! ipscope's tables: schema-first column builders, atomic Parquet / Arrow IPC writers and readers,
//! and the few table operations the pipeline needs (concatenate, sort by ids, typed column access).
//!
//! Tables are plain Arrow record batches with CellProfiler column names (`ImageNumber`,
//! `ObjectNumber`, `Metadata_Well`, `Nuclei_AreaShape_Area`, …), so pycytominer, polars and
//! DuckDB read the files unchanged. Columns carry a human description in the field metadata
//! key [`DESCRIPTION_KEY`]; Parquet keeps it through the Arrow schema that `ArrowWriter`
//! embeds in the file footer (`ARROW:schema`).
//!
//! Every file is written under a temporary name in the destination folder, fsynced and then
//! renamed, so a reader never sees half a table; the same batches always give the same bytes.

mod builder;
mod error;
mod io;
mod ipc;
mod ops;
#[cfg(test)]
mod tests;

pub use arrow_array::{self, RecordBatch};
pub use arrow_schema::{self, DataType, Field, Schema, SchemaRef};
pub use arrow_select;

pub use builder::{TableBuilder, DESCRIPTION_KEY};
pub use error::{Error, Result};
pub use io::{
    read_table, sha256_file, write_table, Format, TableWriter, WrittenFile,
    PARQUET_MAX_ROW_GROUP_ROWS,
};
pub use ipc::{decode_ipc_file, encode_ipc};
pub use ops::{
    column, column_bool, column_f64, column_i64, column_str, column_u32, column_u64, concat,
    sort_by_u32,
};
