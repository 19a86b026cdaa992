//! Matrix Market files: a reader that keeps every entry's line (so errors and per-entry results
//! can name it) and writers for dense arrays and coordinate matrices.
//!
//! Supported: `%%MatrixMarket matrix coordinate|array real|integer|pattern general|symmetric`.
//! Symmetric coordinate files store the lower triangle (row ≥ column), as the format requires;
//! symmetric array files store the lower triangle column by column. Complex, Hermitian and
//! skew-symmetric files are rejected with a clear error.

use std::fmt::Write as _;
use std::path::Path;

use nalgebra::DMatrix;

use crate::error::{Error, Result};

/// `format` field of the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Sparse triplets.
    Coordinate,
    /// Dense, column-major.
    Array,
}

/// A parsed Matrix Market file.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixMarket {
    /// Coordinate or array.
    pub layout: Layout,
    /// Whether the header says `symmetric`.
    pub symmetric: bool,
    /// Rows.
    pub nrows: usize,
    /// Columns.
    pub ncols: usize,
    /// Coordinate entries (0-based row, 0-based column, value), in file order. For an array file:
    /// every stored value in file order.
    pub entries: Vec<(usize, usize, f64)>,
    /// The 1-based line of each entry.
    pub lines: Vec<usize>,
}

/// At most [`QUOTE_LIMIT`] characters of `text` for an error message, control characters
/// escaped (`\0`, `\u{1b}`, …), with "…" when cut.
fn quote(text: &str) -> String {
    let mut out = String::new();
    for (count, c) in text.trim().chars().enumerate() {
        if count == QUOTE_LIMIT {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The input limit of [`MatrixMarket::read`]: 4 GiB (about 100 million entries).
pub const DEFAULT_MAX_INPUT_BYTES: u64 = 4 << 30;

/// Characters of an offending line that error messages quote.
const QUOTE_LIMIT: usize = 200;

fn format_error(file: &str, line: usize, reason: impl Into<String>) -> Error {
    Error::Format {
        file: file.to_string(),
        line,
        reason: reason.into(),
    }
}

impl MatrixMarket {
    /// Reads and validates a file.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be read; [`Error::Format`] naming the file and line for a
    /// malformed header, size line or entry, an index out of range, a non-finite value, an entry
    /// above the diagonal of a symmetric file, or a wrong number of entries.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        Self::read_with_limit(path, DEFAULT_MAX_INPUT_BYTES)
    }

    /// [`MatrixMarket::read`] of a file of at most `max_bytes` bytes: a larger regular file is
    /// refused before it is read, and a stream of unknown size (a pipe, a device such as
    /// `/dev/zero`) is read no further than the limit.
    ///
    /// # Errors
    /// As [`MatrixMarket::read`]; [`Error::Io`] for a file over the limit or not UTF-8.
    pub fn read_with_limit(path: impl AsRef<Path>, max_bytes: u64) -> Result<Self> {
        use std::io::Read as _;
        let path = path.as_ref();
        let name = path.display().to_string();
        let io = |reason: String| Error::Io {
            file: name.clone(),
            reason,
        };
        let over = |size: &str| {
            io(format!(
                "{size} more than the input limit of {max_bytes} bytes ({:.0} MiB)",
                max_bytes as f64 / 1048576.0
            ))
        };
        let file = std::fs::File::open(path).map_err(|e| io(e.to_string()))?;
        let meta = file.metadata().map_err(|e| io(e.to_string()))?;
        let mut bytes = Vec::new();
        if meta.is_file() {
            if meta.len() > max_bytes {
                return Err(over(&format!("the file has {} bytes,", meta.len())));
            }
            bytes
                .try_reserve_exact(meta.len() as usize)
                .map_err(|_| io(format!("{} bytes could not be allocated", meta.len())))?;
        }
        file.take(max_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| io(e.to_string()))?;
        if bytes.len() as u64 > max_bytes {
            return Err(over("it holds"));
        }
        let text = String::from_utf8(bytes).map_err(|e| io(format!("not a text file: {e}")))?;
        Self::parse(&text, &name)
    }

    /// Parses file contents; `name` is used in error messages.
    ///
    /// # Errors
    /// As [`MatrixMarket::read`].
    pub fn parse(text: &str, name: &str) -> Result<Self> {
        // A UTF-8 byte-order mark (written by some editors) is accepted and skipped.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
        let (_, header) = lines
            .next()
            .ok_or_else(|| format_error(name, 1, "empty file"))?;
        let words: Vec<String> = header
            .split_whitespace()
            .map(str::to_ascii_lowercase)
            .collect();
        if words.len() != 5 || words[0] != "%%matrixmarket" || words[1] != "matrix" {
            return Err(format_error(
                name,
                1,
                format!(
                    "expected '%%MatrixMarket matrix <format> <field> <symmetry>', found '{}'",
                    quote(header)
                ),
            ));
        }
        let layout = match words[2].as_str() {
            "coordinate" => Layout::Coordinate,
            "array" => Layout::Array,
            other => {
                return Err(format_error(
                    name,
                    1,
                    format!("unknown format '{}' (coordinate | array)", quote(other)),
                ))
            }
        };
        let integer = words[3] == "integer";
        let pattern = match words[3].as_str() {
            "real" | "integer" | "double" => false,
            "pattern" if layout == Layout::Coordinate => true,
            other => {
                return Err(format_error(
                    name,
                    1,
                    format!(
                        "unsupported field '{}' (real | integer | pattern)",
                        quote(other)
                    ),
                ))
            }
        };
        let symmetric = match words[4].as_str() {
            "general" => false,
            "symmetric" => true,
            other => {
                return Err(format_error(
                    name,
                    1,
                    format!(
                        "unsupported symmetry '{}' (general | symmetric)",
                        quote(other)
                    ),
                ))
            }
        };
        let mut data =
            lines.filter(|(_, l)| !l.trim_start().starts_with('%') && !l.trim().is_empty());
        let (size_line, size) = data
            .next()
            .ok_or_else(|| format_error(name, 2, "missing size line"))?;
        let dims: Vec<usize> = size
            .split_whitespace()
            .map(|t| t.parse::<usize>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| {
                format_error(
                    name,
                    size_line,
                    format!("malformed size line '{}'", quote(size)),
                )
            })?;
        let expected_dims = if layout == Layout::Coordinate { 3 } else { 2 };
        if dims.len() != expected_dims {
            return Err(format_error(
                name,
                size_line,
                format!(
                    "size line needs {expected_dims} integers, found '{}'",
                    quote(size)
                ),
            ));
        }
        let (nrows, ncols) = (dims[0], dims[1]);
        if symmetric && nrows != ncols {
            return Err(format_error(
                name,
                size_line,
                format!("a symmetric matrix must be square, header says {nrows}×{ncols}"),
            ));
        }
        let count = match layout {
            Layout::Coordinate => Some(dims[2]),
            Layout::Array if symmetric => nrows
                .checked_add(1)
                .and_then(|m| m.checked_mul(nrows))
                .map(|m| m / 2),
            Layout::Array => nrows.checked_mul(ncols),
        }
        .ok_or_else(|| {
            format_error(
                name,
                size_line,
                format!("{nrows} × {ncols} entries overflow this machine's integers"),
            )
        })?;
        // Reserve only what the rest of the file can hold (an entry takes at least two bytes),
        // so a header that announces more entries than the file has cannot exhaust memory.
        let room = count.min(text.len() / 2);
        let mut entries = Vec::with_capacity(room);
        let mut line_of = Vec::with_capacity(room);
        // Array position cursor (column-major; lower triangle only when symmetric).
        let (mut ai, mut aj) = (0usize, 0usize);
        for (line, l) in data {
            if entries.len() == count {
                return Err(format_error(
                    name,
                    line,
                    format!("more entries than the {count} the header announces"),
                ));
            }
            let mut tok = l.split_whitespace();
            let mut field = |what: &str| {
                tok.next().ok_or_else(|| {
                    format_error(name, line, format!("missing {what} in '{}'", quote(l)))
                })
            };
            let (i, j) = if layout == Layout::Coordinate {
                let parse_index = |t: &str, what: &str, bound: usize| -> Result<usize> {
                    let v: usize = t.parse().map_err(|_| {
                        format_error(
                            name,
                            line,
                            format!("{what} index '{}' is not a positive integer", quote(t)),
                        )
                    })?;
                    if v == 0 || v > bound {
                        return Err(format_error(
                            name,
                            line,
                            format!("{what} index {v} out of range 1..={bound}"),
                        ));
                    }
                    Ok(v - 1)
                };
                let i = parse_index(field("row")?, "row", nrows)?;
                let j = parse_index(field("column")?, "column", ncols)?;
                if symmetric && i < j {
                    return Err(format_error(name, line, format!("entry ({}, {}) lies above the diagonal of a symmetric file (store the lower triangle)", i + 1, j + 1)));
                }
                (i, j)
            } else {
                (ai, aj)
            };
            let value = if pattern {
                1.0
            } else {
                let t = field("value")?;
                let v: f64 = t.parse().map_err(|_| {
                    format_error(name, line, format!("value '{}' is not a number", quote(t)))
                })?;
                if !v.is_finite() {
                    return Err(format_error(
                        name,
                        line,
                        format!("non-finite value {}", quote(t)),
                    ));
                }
                let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
                if integer && (digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit())) {
                    return Err(format_error(
                        name,
                        line,
                        format!(
                            "value '{}' is not an integer (the header says integer)",
                            quote(t)
                        ),
                    ));
                }
                v
            };
            if let Some(extra) = tok.next() {
                return Err(format_error(
                    name,
                    line,
                    format!(
                        "unexpected '{}' after the entry in '{}'",
                        quote(extra),
                        quote(l)
                    ),
                ));
            }
            entries.push((i, j, value));
            line_of.push(line);
            if layout == Layout::Array {
                ai += 1;
                if ai == nrows {
                    aj += 1;
                    ai = if symmetric { aj } else { 0 };
                }
            }
        }
        if entries.len() != count {
            let last = line_of.last().copied().unwrap_or(size_line);
            return Err(format_error(
                name,
                last,
                format!(
                    "{} entries, but the header announces {count}",
                    entries.len()
                ),
            ));
        }
        Ok(MatrixMarket {
            layout,
            symmetric,
            nrows,
            ncols,
            entries,
            lines: line_of,
        })
    }

    /// The matrix as a dense matrix (duplicates summed, symmetric files mirrored).
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] when nrows × ncols overflows or cannot be allocated (a coordinate
    /// file can declare a huge matrix in a few bytes).
    pub fn to_dense(&self) -> Result<DMatrix<f64>> {
        let mut m = crate::error::try_zeros(self.nrows, self.ncols)?;
        for &(i, j, v) in &self.entries {
            m[(i, j)] += v;
            if self.symmetric && i != j {
                m[(j, i)] += v;
            }
        }
        Ok(m)
    }
}

/// Writes a dense matrix as a Matrix Market `array real general` file (17 significant digits).
///
/// # Errors
/// [`Error::Io`] if the file cannot be written.
pub fn write_array(path: impl AsRef<Path>, m: &DMatrix<f64>) -> Result<()> {
    let s = array_text(m);
    let path = path.as_ref();
    std::fs::write(path, s).map_err(|e| Error::Io {
        file: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// The text [`write_array`] writes.
pub fn array_text(m: &DMatrix<f64>) -> String {
    let mut s = String::with_capacity(24 * m.len() + 64);
    let _ = writeln!(
        s,
        "%%MatrixMarket matrix array real general\n{} {}",
        m.nrows(),
        m.ncols()
    );
    for v in m.iter() {
        let _ = writeln!(s, "{v:.17e}");
    }
    s
}
