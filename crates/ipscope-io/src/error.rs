use std::path::PathBuf;

/// Errors from reading or writing plates; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The operating system refused a read or write.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid image of the format its name or header claims.
    #[error("{}: cannot decode image: {message}", path.display())]
    Decode { path: PathBuf, message: String },
    /// A valid file that uses a feature ipscope does not read.
    #[error("{}: unsupported image: {message}", path.display())]
    Unsupported { path: PathBuf, message: String },
    /// Encoding an image failed.
    #[error("{}: cannot encode image: {message}", path.display())]
    Encode { path: PathBuf, message: String },
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
