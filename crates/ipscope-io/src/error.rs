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
    /// The file has zero bytes (often an interrupted copy or acquisition).
    #[error("{}: file is empty (0 bytes)", path.display())]
    Empty { path: PathBuf },
    /// The file's first bytes are neither TIFF nor PNG.
    #[error("{}: not a TIFF or PNG image: {message}", path.display())]
    UnknownFormat { path: PathBuf, message: String },
    /// The header claims more pixels than the configured limit; refused before allocating.
    #[error(
        "{}: image is {width}x{height} pixels, more than the limit of {max_pixels} pixels; \
         if the file is genuine, raise the limit with --max-pixels",
        path.display()
    )]
    TooLarge {
        path: PathBuf,
        width: u64,
        height: u64,
        max_pixels: u64,
    },
    /// A page (TIFF directory) past the end of the file was requested.
    #[error(
        "{}: page {page} requested but the file has {pages} page{} (pages count from 0)",
        path.display(),
        if *pages == 1 { "" } else { "s" }
    )]
    PageOutOfRange {
        path: PathBuf,
        page: usize,
        pages: usize,
    },
    /// A plate directory could not be turned into fields.
    #[error("{}: {message}", path.display())]
    Discover { path: PathBuf, message: String },
    /// A custom file-name pattern (`--pattern`) is not usable; `path` is the plate directory.
    #[error("{}: bad file-name pattern {pattern:?}: {message}", path.display())]
    Pattern {
        path: PathBuf,
        pattern: String,
        message: String,
    },
    /// A plate-layout file is malformed; `line` is 1-based with the header on line 1.
    #[error(
        "{}: line {line}{}: {message}",
        path.display(),
        column.as_ref().map(|c| format!(", column {c}")).unwrap_or_default()
    )]
    Layout {
        path: PathBuf,
        line: usize,
        column: Option<String>,
        message: String,
    },
    /// A time-lapse file records no frame interval and none was given.
    #[error(
        "{}: the time-lapse records no frame interval (no ImageJ finterval/fps, no OME \
         TimeIncrement); give the frame rate with --fps",
        path.display()
    )]
    NoFrameInterval { path: PathBuf },
    /// A frame of a time-lapse differs in size from the first frame.
    #[error(
        "{}: frame {frame} is {width}x{height} pixels but the first frame is \
         {expected_width}x{expected_height}; a time-lapse needs frames of one size",
        path.display()
    )]
    FrameSize {
        path: PathBuf,
        frame: usize,
        width: usize,
        height: usize,
        expected_width: usize,
        expected_height: usize,
    },
    /// A time-lapse has fewer frames than the analysis needs.
    #[error(
        "{}: the time-lapse has {frames} frame{} but at least {needed} are needed",
        path.display(),
        if *frames == 1 { "" } else { "s" }
    )]
    TooFewFrames {
        path: PathBuf,
        frames: usize,
        needed: usize,
    },
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
