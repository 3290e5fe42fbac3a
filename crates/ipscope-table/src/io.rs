//! Atomic, deterministic table files: Parquet (zstd) for results, Arrow IPC files for fast
//! intermediate tables; one reader that tells them apart by their magic bytes.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::{RecordBatch, RecordBatchOptions};
use arrow_ipc::reader::FileReader as IpcFileReader;
use arrow_ipc::writer::FileWriter as IpcFileWriter;
use arrow_schema::{Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::schema::types::ColumnPath;
use sha2::{Digest, Sha256};

use crate::ops::same_columns;
use crate::{Error, Result};

/// Most rows in one Parquet row group. Keeps memory per row group bounded for readers that
/// load a whole group (pyarrow, DuckDB) while leaving groups large enough to compress well.
pub const PARQUET_MAX_ROW_GROUP_ROWS: usize = 64 * 1024;

/// zstd level 1, the default of pyarrow's and the parquet crate's zstd. Each column of an open
/// writer keeps its own compression context, sized by the level and the page: about 1 MB per
/// column at level 3 (100 MB for a four-channel Nuclei table), a fraction of that at level 1,
/// for files ~4 % larger and faster to write.
const ZSTD_LEVEL: i32 = 1;

/// Rows per batch when reading Parquet back.
const READ_BATCH_ROWS: usize = 64 * 1024;

/// File format of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Format {
    /// Apache Parquet, zstd-compressed; the format for results that other tools read.
    #[default]
    Parquet,
    /// Arrow IPC file format (a.k.a. Feather v2), uncompressed.
    Arrow,
}

impl Format {
    /// File extension without the dot: `parquet` or `arrow`.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Arrow => "arrow",
        }
    }

    /// The format a file name's extension stands for (`.parquet`/`.pq`, `.arrow`/`.feather`/`.ipc`),
    /// case-insensitively; `None` for anything else.
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "parquet" | "pq" => Some(Format::Parquet),
            "arrow" | "feather" | "ipc" => Some(Format::Arrow),
            _ => None,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.extension())
    }
}

impl FromStr for Format {
    type Err = Error;

    /// `parquet` or `arrow`, ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "parquet" => Ok(Format::Parquet),
            "arrow" => Ok(Format::Arrow),
            _ => Err(Error::UnknownFormat(s.to_string())),
        }
    }
}

/// What [`TableWriter::finish`] wrote: for the run manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    /// Final path of the file.
    pub path: PathBuf,
    /// Rows written.
    pub rows: u64,
    /// Size of the file in bytes.
    pub bytes: u64,
    /// SHA-256 of the file's bytes, lowercase hex.
    pub sha256: String,
}

/// Writer properties chosen so that the same batches always give the same bytes: parquet-rs
/// writes no timestamps, `created_by` is the fixed `parquet-rs version <v>` (pyarrow parses it
/// for its writer-bug workarounds, so it is left as is), and the embedded Arrow schema lists
/// metadata in sorted key order. Page-level statistics and the page index stay on (DuckDB and
/// polars use them for pruning); encodings are the Parquet 1.0 ones every reader knows.
///
/// Floating-point columns are written without a dictionary: measurements are nearly all
/// distinct, so a dictionary only adds its indices (and its encoding's hashing) to the
/// plain values. Strings and integers (plate, well, site, numbers) keep it.
fn parquet_properties(schema: &Schema) -> Result<WriterProperties> {
    let level = ZstdLevel::try_new(ZSTD_LEVEL).map_err(|e| Error::Schema(e.to_string()))?;
    let mut builder = WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(PARQUET_MAX_ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Page);
    for field in schema.fields() {
        if field.data_type().is_floating() {
            builder = builder
                .set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), false);
        }
    }
    Ok(builder.build())
}

/// Counts and hashes the bytes on their way to the file, so `finish` need not read it again.
struct HashingWriter {
    inner: BufWriter<File>,
    hasher: Sha256,
    bytes: u64,
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum Inner {
    Parquet(Box<ArrowWriter<HashingWriter>>),
    Arrow(Box<IpcFileWriter<HashingWriter>>),
}

/// Removes the temporary file unless disarmed: dropping a writer (an error, a panic, a
/// cancelled run) leaves no partial table behind.
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Streams batches into one file under a temporary name; [`finish`](Self::finish) fsyncs and
/// renames it to the final path. Dropping the writer without `finish` removes the temporary file.
///
/// The temporary file lives in the destination folder (so the rename is atomic) and is named
/// `.<file name>.<pid>-<n>.tmp`: hidden, and never ending in `.parquet` or `.arrow`, so a
/// glob over the folder does not pick it up.
pub struct TableWriter {
    inner: Inner,
    schema: SchemaRef,
    path: PathBuf,
    temp: TempFile,
    rows: u64,
}

impl fmt::Debug for TableWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TableWriter")
            .field("path", &self.path)
            .field("temp", &self.temp.path)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn temp_path(path: &Path) -> Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        Error::io(
            path,
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "a table path must end in a file name",
            ),
        )
    })?;
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{}-{n}.tmp", std::process::id()));
    Ok(path.with_file_name(temp_name))
}

impl TableWriter {
    /// Opens a temporary file beside `path` for a table of `schema` in `format`.
    ///
    /// Parquet: zstd level 1, row groups of at most [`PARQUET_MAX_ROW_GROUP_ROWS`] rows, the
    /// Arrow schema (with field descriptions) embedded. Arrow: IPC file format, uncompressed.
    pub fn create(path: &Path, schema: SchemaRef, format: Format) -> Result<Self> {
        let temp_path = temp_path(path)?;
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp_path)
            .map_err(|e| Error::io(&temp_path, e))?;
        let temp = TempFile {
            path: temp_path,
            armed: true,
        };
        let sink = HashingWriter {
            inner: BufWriter::with_capacity(1 << 20, file),
            hasher: Sha256::new(),
            bytes: 0,
        };
        let inner = match format {
            Format::Parquet => {
                let writer =
                    ArrowWriter::try_new(sink, schema.clone(), Some(parquet_properties(&schema)?))
                        .map_err(|e| Error::parquet(path, e))?;
                Inner::Parquet(Box::new(writer))
            }
            Format::Arrow => {
                let writer = IpcFileWriter::try_new(sink, &schema)
                    .map_err(|e| Error::arrow(Some(path), e))?;
                Inner::Arrow(Box::new(writer))
            }
        };
        Ok(TableWriter {
            inner,
            schema,
            path: path.to_path_buf(),
            temp,
            rows: 0,
        })
    }

    /// The schema every batch must have.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Appends a batch. Its columns must match the writer's schema in names, types and
    /// order; field metadata may differ (the writer's schema is what gets written).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        same_columns(&self.schema, batch.schema_ref()).map_err(|msg| {
            Error::Schema(format!(
                "{}: batch does not match the table: {msg}",
                self.path.display()
            ))
        })?;
        let batch = if batch.schema_ref() == &self.schema {
            batch.clone()
        } else {
            let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
            RecordBatch::try_new_with_options(
                self.schema.clone(),
                batch.columns().to_vec(),
                &options,
            )
            .map_err(|e| Error::arrow(Some(&self.path), e))?
        };
        match &mut self.inner {
            Inner::Parquet(w) => w.write(&batch).map_err(|e| Error::parquet(&self.path, e))?,
            Inner::Arrow(w) => w
                .write(&batch)
                .map_err(|e| Error::arrow(Some(&self.path), e))?,
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Writes the footer, fsyncs, renames the temporary file to the final path and fsyncs the
    /// folder, then reports the file's size and SHA-256.
    pub fn finish(mut self) -> Result<WrittenFile> {
        let path = self.path.clone();
        let sink = match self.inner {
            Inner::Parquet(w) => w.into_inner().map_err(|e| Error::parquet(&path, e))?,
            Inner::Arrow(w) => w.into_inner().map_err(|e| Error::arrow(Some(&path), e))?,
        };
        let HashingWriter {
            inner,
            hasher,
            bytes,
        } = sink;
        let file = inner
            .into_inner()
            .map_err(|e| Error::io(&self.temp.path, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&self.temp.path, e))?;
        drop(file);
        fs::rename(&self.temp.path, &path).map_err(|e| Error::io(&path, e))?;
        self.temp.armed = false;
        sync_parent(&path)?;
        Ok(WrittenFile {
            path,
            rows: self.rows,
            bytes,
            sha256: hex(&hasher.finalize()),
        })
    }
}

/// Makes the rename itself durable. Only on Unix: Windows cannot open a folder as a file.
fn sync_parent(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(parent)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| Error::io(parent, e))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Writes `batches` to `path` in one go (see [`TableWriter`]). An empty slice gives a valid
/// file with the schema and no rows.
///
/// ```
/// use ipscope_table::{read_table, write_table, Format, TableBuilder};
/// let dir = tempfile::tempdir()?;
/// let mut b = TableBuilder::new();
/// b.u32("ImageNumber", vec![1, 2]).str("Metadata_Well", vec!["B02".into(), "B03".into()]);
/// let batch = b.finish()?;
/// let path = dir.path().join("Image.parquet");
/// let written = write_table(&path, batch.schema(), &[batch.clone()], Format::Parquet)?;
/// assert_eq!(written.rows, 2);
/// let (schema, batches) = read_table(&path)?;
/// assert_eq!((schema, batches), (batch.schema(), vec![batch]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_table(
    path: &Path,
    schema: SchemaRef,
    batches: &[RecordBatch],
    format: Format,
) -> Result<WrittenFile> {
    let mut writer = TableWriter::create(path, schema, format)?;
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()
}

const PARQUET_MAGIC: &[u8] = b"PAR1";
const ARROW_MAGIC: &[u8] = b"ARROW1";

/// Reads a whole table written by [`write_table`] (or by pyarrow, polars, DuckDB), telling
/// Parquet (`PAR1`) from an Arrow IPC file (`ARROW1`) by the magic bytes at its start, not by
/// its name. Field metadata comes back as written; a table without rows gives its schema and
/// no batches.
pub fn read_table(path: &Path) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut magic = [0u8; 6];
    let mut got = 0;
    while got < magic.len() {
        match file.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    let magic = &magic[..got];
    // Both readers seek by themselves; hand them a fresh handle positioned at the start.
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    if magic.starts_with(PARQUET_MAGIC) {
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| Error::parquet(path, e))?
            .with_batch_size(READ_BATCH_ROWS);
        let schema = builder.schema().clone();
        let reader = builder.build().map_err(|e| Error::parquet(path, e))?;
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::parquet(path, e))?;
        Ok((schema, batches))
    } else if magic.starts_with(ARROW_MAGIC) {
        let reader = IpcFileReader::try_new(BufReader::new(file), None)
            .map_err(|e| Error::arrow(Some(path), e))?;
        let schema = reader.schema();
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::arrow(Some(path), e))?;
        Ok((schema, batches))
    } else {
        Err(Error::UnknownFileType {
            path: path.to_path_buf(),
        })
    }
}

/// SHA-256 of a file's bytes, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
