//! The crate's error type: every failure names the file, line or key it is about.

use std::path::PathBuf;

/// Errors raised by loading data, models, configs and checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A malformed record in a data file.
    #[error("{}:{line}: {msg}", file.display())]
    Data {
        file: PathBuf,
        line: usize,
        msg: String,
    },
    /// An invalid configuration value; `key` names the setting.
    #[error("config `{key}`: {msg}")]
    Config { key: String, msg: String },
    /// A model checkpoint that does not match the architecture.
    #[error("model {}: {msg}", path.display())]
    Model { path: PathBuf, msg: String },
    /// A tokenizer file that cannot be loaded or applied.
    #[error("tokenizer {}: {msg}", path.display())]
    Tokenizer { path: PathBuf, msg: String },
    /// Anything else, with its context already in the message.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// An invalid configuration value.
    pub fn config(key: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Config {
            key: key.into(),
            msg: msg.into(),
        }
    }
}

/// Result with the crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
