use std::path::PathBuf;

/// Errors from the ipscope pipeline; each names the file or directory involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file or directory failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Decoding or encoding an image, discovering a plate or reading a layout failed.
    #[error(transparent)]
    ImageIo(#[from] ipscope_io::Error),
    /// Building, writing or reading a table failed.
    #[error(transparent)]
    Table(#[from] ipscope_table::Error),
    /// The run was asked to stop (SIGINT/SIGTERM); finished fields (or time series) are
    /// kept for `--resume`.
    #[error("{}: interrupted after {done} of {total} {unit}; the finished {unit} are saved: rerun the same command with --resume to continue", out_dir.display())]
    Interrupted {
        out_dir: PathBuf,
        done: usize,
        total: usize,
        /// What was counted: "fields", or "series" for time-lapse runs.
        unit: &'static str,
    },
    /// A parameter or option is invalid.
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
