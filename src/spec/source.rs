//! A workflow file's text, read within limits, and positions in it.

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

/// Largest workflow file read. Bigger files are refused before they are parsed, so a stray
/// multi-gigabyte file cannot exhaust memory; 10,000 instances take well under 1 MiB.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// A byte range in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// The range `start..end`.
    pub fn new(start: usize, end: usize) -> Self {
        Self {
            start,
            end: end.max(start),
        }
    }

    /// An empty range at `at`.
    pub fn point(at: usize) -> Self {
        Self { start: at, end: at }
    }
}

impl From<Span> for miette::SourceSpan {
    fn from(span: Span) -> Self {
        (span.start, span.end - span.start).into()
    }
}

/// The text of a workflow file and the name it is reported under.
#[derive(Clone)]
pub struct SourceFile {
    name: String,
    text: Arc<str>,
    line_starts: Arc<[usize]>,
}

impl fmt::Debug for SourceFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceFile")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Why a file could not be read as text.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path as given.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A file that was read but cannot be parsed as text at all.
#[derive(Debug)]
pub enum Unreadable {
    /// Larger than [`MAX_FILE_BYTES`].
    TooLarge {
        /// Bytes on disk (at least).
        bytes: u64,
    },
    /// Not UTF-8; the file's valid prefix is kept to point at the bad byte.
    NotUtf8 {
        /// The text up to the first invalid byte, then the rest converted lossily.
        lossy: SourceFile,
        /// Byte offset of the first invalid byte.
        offset: usize,
    },
}

impl SourceFile {
    /// A source from text in memory.
    pub fn new(name: impl Into<String>, text: impl Into<Arc<str>>) -> Self {
        let text = text.into();
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            name: name.into(),
            text,
            line_starts,
        }
    }

    /// Reads `path`, refusing files over [`MAX_FILE_BYTES`] and text that is not UTF-8.
    pub fn read(path: &Path) -> Result<Result<Self, (Self, Unreadable)>, ReadError> {
        let name = path.display().to_string();
        let io = |source| ReadError::Io {
            path: name.clone(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            let on_disk = std::fs::metadata(path).map_or(bytes.len() as u64, |m| m.len());
            return Ok(Err((
                Self::new(name, ""),
                Unreadable::TooLarge { bytes: on_disk },
            )));
        }
        Ok(match String::from_utf8(bytes) {
            Ok(text) => Ok(Self::new(name, text)),
            Err(err) => {
                let offset = err.utf8_error().valid_up_to();
                let lossy = Self::new(name, String::from_utf8_lossy(err.as_bytes()).into_owned());
                Err((lossy.clone(), Unreadable::NotUtf8 { lossy, offset }))
            }
        })
    }

    /// The name errors are reported under (the path as given).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The whole text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Shared text, for diagnostics that outlive this value.
    pub fn shared_text(&self) -> Arc<str> {
        Arc::clone(&self.text)
    }

    /// Byte offset of a position given as a 1-based line and a 0-based column in characters.
    pub fn offset(&self, line: usize, column: usize) -> usize {
        let Some(&start) = self.line_starts.get(line.saturating_sub(1)) else {
            return self.text.len();
        };
        let rest = &self.text[start..];
        let line_text = rest.split('\n').next().unwrap_or("");
        start
            + line_text
                .char_indices()
                .nth(column)
                .map_or(line_text.len(), |(i, _)| i)
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self.line_starts[line - 1];
        let column = self
            .text
            .get(start..offset)
            .map_or(0, |s| s.chars().count());
        (line, column + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_through_multibyte_text() {
        let src = SourceFile::new("t", "a: 1\nb: \"é\" x\n\nc: 3");
        let x = src.text().find('x').unwrap();
        assert_eq!(src.offset(2, 7), x);
        assert_eq!(src.line_column(x), (2, 8));
        assert_eq!(src.line_column(0), (1, 1));
        assert_eq!(src.offset(4, 0), src.text().find('c').unwrap());
        assert_eq!(src.offset(99, 0), src.text().len());
    }
}
