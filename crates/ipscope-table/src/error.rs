use std::path::PathBuf;

/// Everything that can go wrong while building, writing or reading a table.
///
/// Variants that concern a file name it first, so that a message printed by the CLI reads
/// `plate1/Nuclei.parquet: …`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed at the operating-system level.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Arrow rejected an operation (building a batch, IPC encoding or decoding, a kernel).
    #[error("{}{message}", fmt_opt_path(.path))]
    Arrow {
        path: Option<PathBuf>,
        message: String,
    },
    /// The Parquet encoder or decoder failed.
    #[error("{}: Parquet: {message}", path.display())]
    Parquet { path: PathBuf, message: String },
    /// A file is neither Parquet nor an Arrow IPC file.
    #[error("{}: not a Parquet or Arrow IPC file (no PAR1 or ARROW1 magic bytes at its start)", path.display())]
    UnknownFileType { path: PathBuf },
    /// A table does not have the shape asked for (lengths, names, schemas that differ).
    #[error("table schema: {0}")]
    Schema(String),
    /// A column looked up by name does not exist.
    #[error("no column `{name}` in table (columns: {available})")]
    MissingColumn { name: String, available: String },
    /// A column exists but holds another type than the one asked for.
    #[error("column `{name}` is {found}, expected {expected}")]
    ColumnType {
        name: String,
        expected: String,
        found: String,
    },
    /// A table format name that is neither `parquet` nor `arrow`.
    #[error("unknown table format `{0}` (expected `parquet` or `arrow`)")]
    UnknownFormat(String),
}

/// Result with this crate's [`Error`] by default.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn fmt_opt_path(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => format!("{}: Arrow: ", p.display()),
        None => "Arrow: ".to_string(),
    }
}

impl Error {
    pub(crate) fn arrow(path: Option<&std::path::Path>, e: impl std::fmt::Display) -> Self {
        Error::Arrow {
            path: path.map(|p| p.to_path_buf()),
            message: e.to_string(),
        }
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn parquet(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        Error::Parquet {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
}
