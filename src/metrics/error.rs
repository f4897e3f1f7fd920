//! The metrics error type: every variant names the file, line or value at fault.

use std::path::PathBuf;

/// What went wrong while reading metric inputs or computing a metric.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A TSV file's header lacks a required column.
    #[error("{path} line 1: missing column `{column}` (the header must name {expected})")]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The missing column.
        column: String,
        /// The columns the header must name.
        expected: String,
    },
    /// A TSV cell could not be parsed or holds an invalid value.
    #[error("{path} line {line}, column `{column}`: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The column name.
        column: String,
        /// What is wrong and what was expected.
        message: String,
    },
    /// A row has the wrong number of fields.
    #[error("{path} line {line}: expected {expected} tab-separated fields, found {found}")]
    FieldCount {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Fields in the header.
        expected: usize,
        /// Fields in the row.
        found: usize,
    },
    /// An event's onset is after its offset.
    #[error("{path} line {line}: onset {onset} is after offset {offset}")]
    OnsetAfterOffset {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Onset, seconds.
        onset: f64,
        /// Offset, seconds.
        offset: f64,
    },
    /// A file of the reference or estimate is not listed in the durations file.
    #[error("{path} line {line}: file `{file}` is not listed in the durations file {durations}")]
    UnknownFile {
        /// The event file naming the audio file.
        path: PathBuf,
        /// 1-based line number of its first event.
        line: usize,
        /// The audio file.
        file: String,
        /// The durations file.
        durations: PathBuf,
    },
    /// A score table is malformed (times not contiguous, no rows, wrong classes).
    #[error("{path}: {message}")]
    ScoreTable {
        /// The score table file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An invalid parameter or in-memory value.
    #[error("invalid value for {what}: {message}")]
    InvalidValue {
        /// The parameter or field.
        what: String,
        /// What is wrong and what was expected.
        message: String,
    },
    /// The score-based metrics (sed_scores_eval) refuse this input, as the reference
    /// tool does: a class without reference events, connected or overlapping reference
    /// events of one class, a reference label that is not a score column, or a
    /// reference file without a score table.
    #[error("score-based metrics undefined: {0}")]
    ScoresUndefined(String),
}

/// Result alias of the metrics module.
pub type Result<T> = std::result::Result<T, MetricsError>;
