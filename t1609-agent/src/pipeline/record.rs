//! `--record`: one ECS document per captured exec, appended to a file or stdout, in the
//! format `replay` reads.

use std::{io::Write, path::Path};

use serde_json::Value;
use tracing::error;

#[derive(Debug, thiserror::Error)]
#[error("opening --record file {path}: {source}")]
pub struct RecordError {
    path: String,
    source: std::io::Error,
}

pub struct Recorder {
    out: Box<dyn Write + Send>,
}

impl Recorder {
    /// `path` `-` is stdout; a file is appended to.
    pub fn open(path: &Path) -> Result<Self, RecordError> {
        let out: Box<dyn Write + Send> = if path.as_os_str() == "-" {
            Box::new(std::io::stdout())
        } else {
            Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| RecordError {
                        path: path.display().to_string(),
                        source,
                    })?,
            )
        };
        Ok(Self {
            out: Box::new(std::io::BufWriter::new(out)),
        })
    }

    pub fn write(&mut self, doc: &Value) {
        if let Err(e) = writeln!(self.out, "{doc}") {
            error!(error = %e, "writing --record output");
        }
    }

    pub fn flush(&mut self) {
        let _ = self.out.flush();
    }
}
