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
use rayon::prelude::*;

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

/// A regular file's bytes (as many as `buffer` holds, its size when opened) read in parts of
/// 8 MiB at their offsets, in parallel: the copy out of the page cache and the page faults of a
/// fresh buffer are most of a large file's read.
#[cfg(unix)]
fn read_in_parts(file: &std::fs::File, buffer: &mut [u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt as _;
    const PART: usize = 8 << 20;
    buffer
        .par_chunks_mut(PART)
        .enumerate()
        .try_for_each(|(k, part)| file.read_exact_at(part, (k * PART) as u64))
}

/// Elsewhere, one sequential read.
#[cfg(not(unix))]
fn read_in_parts(file: &std::fs::File, buffer: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read as _;
    (&*file).read_exact(buffer)
}

/// Bytes per part of a large regular file that one task reads and parses.
const PART_BYTES: usize = 4 << 20;

/// A large regular file of `size` bytes read and parsed part by part, in parallel: the header
/// first, then each part of `part` bytes read into a buffer of its own (reused by the next part
/// the task takes, so a large file is never held whole) and parsed there — the lines that begin
/// in it, the last one read to its end. The same entries, lines and errors as reading the whole
/// file and [`MatrixMarket::parse`]: the chunks are merged in file order the same way. `None`
/// where this path would not say the same thing — a header or size line that is malformed or
/// not found near the start, text that is not UTF-8, a read that fails — and the caller reads
/// the whole file, whose reader reports it.
#[cfg(unix)]
fn read_by_parts(
    file: &std::fs::File,
    size: u64,
    name: &str,
    part: usize,
) -> Option<Result<MatrixMarket>> {
    use std::os::unix::fs::FileExt as _;
    let size = usize::try_from(size).ok()?;
    // The header and size line: within the first 64 KiB (or the file), ending in a newline.
    let mut head = vec![0; size.min(1 << 16)];
    file.read_exact_at(&mut head, 0).ok()?;
    let text = match std::str::from_utf8(&head) {
        Ok(text) => text,
        // A character cut at the block's end is not an error; anything else is.
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).ok()?,
        Err(_) => return None,
    };
    let header = Header::parse(text, name).ok()?;
    if header.data_offset < size && !text[..header.data_offset].ends_with('\n') {
        return None;
    }
    let fields = header.fields(name);
    let data = header.data_offset;
    let parts = (size - data).div_ceil(part.max(1));
    // Buffers reused by the parts a thread takes, dropped with the read.
    let spare: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::default();
    let parsed: Option<Vec<Chunk>> = (0..parts)
        .into_par_iter()
        .map(|k| {
            let (lo, hi) = (data + k * part, (data + (k + 1) * part).min(size));
            // From the byte before the part: a line begins in it after a newline there.
            let from = if k == 0 { lo } else { lo - 1 };
            let take = || spare.lock().unwrap_or_else(|e| e.into_inner());
            let mut buffer = take().pop().unwrap_or_default();
            buffer.clear();
            buffer.resize(hi - from, 0);
            let chunk = (|| {
                file.read_exact_at(&mut buffer, from as u64).ok()?;
                let start = if k == 0 {
                    0
                } else {
                    match buffer.iter().position(|&b| b == b'\n') {
                        Some(p) => p + 1,
                        None => return Some(Chunk::default()),
                    }
                };
                if from + start >= hi {
                    return Some(Chunk::default());
                }
                // The last line that begins in the part ends at the first newline from the
                // part's last byte on, or at the end of the file.
                let mut search = hi - 1 - from;
                let end = loop {
                    if let Some(p) = buffer[search..].iter().position(|&b| b == b'\n') {
                        break search + p + 1;
                    }
                    let read_to = from + buffer.len();
                    if read_to == size {
                        break buffer.len();
                    }
                    search = buffer.len();
                    let more = (size - read_to).min(1 << 16);
                    buffer.resize(buffer.len() + more, 0);
                    file.read_exact_at(&mut buffer[search..], read_to as u64)
                        .ok()?;
                };
                let text = std::str::from_utf8(&buffer[start..end]).ok()?;
                Some(fields.parse_chunk(text))
            })();
            take().push(buffer);
            chunk
        })
        .collect();
    Some(header.merge(name, parsed?))
}

/// A line without its "\n" or "\r\n" ending.
fn strip_line_end(raw: &str) -> &str {
    let b = raw.as_bytes();
    let mut end = b.len();
    if end > 0 && b[end - 1] == b'\n' {
        end -= 1;
    }
    if end > 0 && b[end - 1] == b'\r' {
        end -= 1;
    }
    &raw[..end]
}

/// Bytes per chunk of data lines parsed by one task.
const CHUNK_BYTES: usize = 1 << 16;

/// `text` cut into chunks of whole lines of about [`CHUNK_BYTES`]: (start, end) byte ranges.
fn line_chunks(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < bytes.len() {
        let target = (start + CHUNK_BYTES).min(bytes.len());
        let end = bytes[target..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |p| target + p + 1);
        chunks.push((start, end));
        start = end;
    }
    chunks
}

/// The whitespace-separated tokens of an ASCII line (what `split_whitespace` gives, without its
/// per-character Unicode tests: the reader's hottest loop).
struct AsciiTokens<'a> {
    rest: &'a str,
}

/// Unicode's White_Space among ASCII bytes: `u8::is_ascii_whitespace` plus the vertical tab, so
/// the split is exactly `split_whitespace`'s.
fn is_space(b: &u8) -> bool {
    b.is_ascii_whitespace() || *b == 0x0B
}

impl<'a> Iterator for AsciiTokens<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        let bytes = self.rest.as_bytes();
        let start = bytes.iter().position(|b| !is_space(b))?;
        let end = bytes[start..]
            .iter()
            .position(is_space)
            .map_or(bytes.len(), |p| start + p);
        let token = &self.rest[start..end];
        self.rest = &self.rest[end..];
        Some(token)
    }
}

/// What a data line must hold, from the header.
struct Fields<'a> {
    name: &'a str,
    nrows: usize,
    ncols: usize,
    symmetric: bool,
    pattern: bool,
    integer: bool,
    coordinate: bool,
}

/// One chunk's entries (positions filled for coordinate files), their lines, and the first
/// error met (the entries before it are kept, so the merge can tell which comes first).
#[derive(Default)]
struct Chunk {
    entries: Vec<(usize, usize, f64)>,
    lines: Vec<usize>,
    error: Option<(usize, Error)>,
    /// How many lines the chunk holds (so the next chunk's numbering can start after them).
    line_count: usize,
}

impl Fields<'_> {
    /// The entries of a chunk of whole lines, numbered from 0 (its first line).
    fn parse_chunk(&self, text: &str) -> Chunk {
        let mut chunk = Chunk {
            entries: Vec::with_capacity(text.len() / 16),
            lines: Vec::with_capacity(text.len() / 16),
            error: None,
            line_count: 0,
        };
        let bytes = text.as_bytes();
        let mut start = 0;
        let mut k = 0;
        while start < bytes.len() {
            let end = text[start..]
                .find('\n')
                .map_or(bytes.len(), |p| start + p + 1);
            let raw = &text[start..end];
            start = end;
            chunk.line_count = k + 1;
            k += 1;
            let l = strip_line_end(raw);
            if let Some(entry) = self.plain_entry(l) {
                chunk.entries.push(entry);
                chunk.lines.push(k - 1);
                continue;
            }
            // Entry lines start with a digit: the Unicode trims only for the others.
            let digit_first = l.as_bytes().first().is_some_and(u8::is_ascii_digit);
            if !digit_first && (l.trim_start().starts_with('%') || l.trim().is_empty()) {
                continue;
            }
            let line = k - 1;
            match self.entry(l, line) {
                Ok(entry) => {
                    chunk.entries.push(entry);
                    chunk.lines.push(line);
                }
                Err(e) => {
                    chunk.error = Some((line, e));
                    break;
                }
            }
        }
        chunk
    }

    /// The common data line, read without tokenizing: a coordinate line `i j [value]` of plain
    /// digits and single-byte separators (spaces, tabs), or an array line holding one value.
    /// `None` for anything else — a comment, a blank line, an error, an unusual but valid form —
    /// which [`Fields::entry`] then reads (so values and errors are its own).
    #[inline]
    fn plain_entry(&self, l: &str) -> Option<(usize, usize, f64)> {
        let b = l.as_bytes();
        let mut p = 0;
        let index = |p: &mut usize, bound: usize| -> Option<usize> {
            let start = *p;
            let mut v = 0usize;
            while *p < b.len() && b[*p].is_ascii_digit() {
                v = v.checked_mul(10)?.checked_add(usize::from(b[*p] - b'0'))?;
                *p += 1;
            }
            (*p > start && (1..=bound).contains(&v)).then(|| v - 1)
        };
        let blanks = |p: &mut usize| {
            let start = *p;
            while *p < b.len() && (b[*p] == b' ' || b[*p] == b'\t') {
                *p += 1;
            }
            *p > start
        };
        let (i, j) = if self.coordinate {
            let i = index(&mut p, self.nrows)?;
            if !blanks(&mut p) {
                return None;
            }
            let j = index(&mut p, self.ncols)?;
            if self.symmetric && i < j {
                return None;
            }
            (i, j)
        } else {
            (0, 0)
        };
        let value = if self.pattern {
            1.0
        } else {
            if self.coordinate && !blanks(&mut p) {
                return None;
            }
            let start = p;
            while p < b.len() && !matches!(b[p], b' ' | b'\t' | b'\r') {
                p += 1;
            }
            let token = l.get(start..p)?;
            if self.integer {
                return None;
            }
            let v: f64 = token.parse().ok()?;
            if !v.is_finite() {
                return None;
            }
            v
        };
        blanks(&mut p);
        (p == b.len()).then_some((i, j, value))
    }

    /// One data line: (row, column, value) for a coordinate file, (0, 0, value) for an array.
    fn entry(&self, l: &str, line: usize) -> Result<(usize, usize, f64)> {
        // ASCII lines (all real files) split on ASCII whitespace, which is the same split and
        // several times cheaper than the Unicode one.
        if l.is_ascii() {
            self.entry_from(l, line, AsciiTokens { rest: l })
        } else {
            self.entry_from(l, line, l.split_whitespace())
        }
    }

    fn entry_from<'l>(
        &self,
        l: &str,
        line: usize,
        mut tok: impl Iterator<Item = &'l str>,
    ) -> Result<(usize, usize, f64)> {
        let name = self.name;
        let mut field = |what: &str| {
            tok.next().ok_or_else(|| {
                format_error(name, line, format!("missing {what} in '{}'", quote(l)))
            })
        };
        let (i, j) = if self.coordinate {
            let parse_index = |t: &str, what: &str, bound: usize| -> Result<usize> {
                // Plain digits (every real file) without std's general parser; anything else
                // (a sign, too many digits, junk) goes to it for the same value or error.
                let plain = !t.is_empty()
                    && t.len() < usize::MAX.ilog10() as usize
                    && t.bytes().all(|b| b.is_ascii_digit());
                let v: usize = if plain {
                    t.bytes().fold(0, |v, b| v * 10 + usize::from(b - b'0'))
                } else {
                    t.parse().map_err(|_| {
                        format_error(
                            name,
                            line,
                            format!("{what} index '{}' is not a positive integer", quote(t)),
                        )
                    })?
                };
                if v == 0 || v > bound {
                    return Err(format_error(
                        name,
                        line,
                        format!("{what} index {v} out of range 1..={bound}"),
                    ));
                }
                Ok(v - 1)
            };
            let i = parse_index(field("row")?, "row", self.nrows)?;
            let j = parse_index(field("column")?, "column", self.ncols)?;
            if self.symmetric && i < j {
                return Err(format_error(name, line, format!("entry ({}, {}) lies above the diagonal of a symmetric file (store the lower triangle)", i + 1, j + 1)));
            }
            (i, j)
        } else {
            (0, 0)
        };
        let value = if self.pattern {
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
            if self.integer && (digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit())) {
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
        Ok((i, j, value))
    }
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

/// A file's header and size line, and where its data lines begin.
struct Header {
    layout: Layout,
    symmetric: bool,
    pattern: bool,
    integer: bool,
    nrows: usize,
    ncols: usize,
    /// Entries the file holds, by its size line.
    count: usize,
    /// The size line's number (1-based).
    size_line: usize,
    /// Where the data lines begin: a byte offset into the text given to [`Header::parse`]
    /// (a byte-order mark included).
    data_offset: usize,
}

impl Header {
    /// The header and size line at the start of `text`.
    fn parse(text: &str, name: &str) -> Result<Self> {
        // A UTF-8 byte-order mark (written by some editors) is accepted and skipped.
        let bom = if text.starts_with('\u{feff}') { 3 } else { 0 };
        let text = &text[bom..];
        let header_raw = text
            .split_inclusive('\n')
            .next()
            .ok_or_else(|| format_error(name, 1, "empty file"))?;
        let header = strip_line_end(header_raw);
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
        // Data lines start after the size line; `offset` is the byte where each line begins.
        let mut offset = header_raw.len();
        let mut size_found = None;
        for (number, raw) in text[offset..].split_inclusive('\n').enumerate() {
            let line = number + 2;
            let l = strip_line_end(raw);
            offset += raw.len();
            if !l.trim_start().starts_with('%') && !l.trim().is_empty() {
                size_found = Some((line, l));
                break;
            }
        }
        let (size_line, size) =
            size_found.ok_or_else(|| format_error(name, 2, "missing size line"))?;
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
        Ok(Header {
            layout,
            symmetric,
            pattern,
            integer,
            nrows,
            ncols,
            count,
            size_line,
            data_offset: bom + offset,
        })
    }

    /// What a data line must hold.
    fn fields<'a>(&self, name: &'a str) -> Fields<'a> {
        Fields {
            name,
            nrows: self.nrows,
            ncols: self.ncols,
            symmetric: self.symmetric,
            pattern: self.pattern,
            integer: self.integer,
            coordinate: self.layout == Layout::Coordinate,
        }
    }

    /// The parsed chunks of the data lines, in file order, merged: the first error in file
    /// order (with its line), the announced count checked, the entries placed.
    fn merge(&self, name: &str, mut parsed: Vec<Chunk>) -> Result<MatrixMarket> {
        let Header {
            layout,
            symmetric,
            nrows,
            ncols,
            count,
            size_line,
            ..
        } = *self;
        let more = |line: usize| {
            format_error(
                name,
                line,
                format!("more entries than the {count} the header announces"),
            )
        };
        let mut bases = Vec::with_capacity(parsed.len());
        let (mut total, mut base, mut last_line) = (0, size_line + 1, size_line);
        for chunk in &mut parsed {
            bases.push(base);
            if let Some((line, e)) = chunk.error.take() {
                if total + chunk.entries.len() > count {
                    return Err(more(chunk.lines[count - total] + base));
                }
                total += chunk.entries.len();
                // A data line past the announced count is reported as such, whatever it holds.
                return Err(if total == count {
                    more(line + base)
                } else {
                    shifted(e, base)
                });
            }
            if total + chunk.entries.len() > count {
                return Err(more(chunk.lines[count - total] + base));
            }
            total += chunk.entries.len();
            if let Some(&l) = chunk.lines.last() {
                last_line = l + base;
            }
            base += chunk.line_count;
        }
        if total != count {
            return Err(format_error(
                name,
                last_line,
                format!("{total} entries, but the header announces {count}"),
            ));
        }
        // Then every chunk copied into its place in parallel (the zeroed buffers are touched
        // first there, so their page faults are spread over the threads too).
        let mut entries = vec![(0usize, 0usize, 0.0f64); total];
        let mut line_of = vec![0usize; total];
        let mut places = Vec::with_capacity(parsed.len());
        let (mut e_rest, mut l_rest) = (&mut entries[..], &mut line_of[..]);
        for chunk in &parsed {
            let (e, e_next) = std::mem::take(&mut e_rest).split_at_mut(chunk.entries.len());
            let (l, l_next) = std::mem::take(&mut l_rest).split_at_mut(chunk.entries.len());
            places.push((e, l));
            (e_rest, l_rest) = (e_next, l_next);
        }
        parsed
            .par_iter()
            .zip(places)
            .zip(bases)
            .for_each(|((chunk, (e, l)), base)| {
                e.copy_from_slice(&chunk.entries);
                for (to, from) in l.iter_mut().zip(&chunk.lines) {
                    *to = from + base;
                }
            });
        if layout == Layout::Array {
            // Column-major positions; the lower triangle only when symmetric.
            let (mut ai, mut aj) = (0usize, 0usize);
            for entry in &mut entries {
                (entry.0, entry.1) = (ai, aj);
                ai += 1;
                if ai == nrows {
                    aj += 1;
                    ai = if symmetric { aj } else { 0 };
                }
            }
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
}

/// An error of a chunk numbered from 0, numbered from `base`.
fn shifted(e: Error, base: usize) -> Error {
    match e {
        Error::Format { file, line, reason } => Error::Format {
            file,
            line: line + base,
            reason,
        },
        other => other,
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
            #[cfg(unix)]
            if meta.len() > PART_BYTES as u64 {
                if let Some(read) = read_by_parts(&file, meta.len(), &name, PART_BYTES) {
                    return read;
                }
            }
            let len = usize::try_from(meta.len())
                .map_err(|_| io(format!("{} bytes do not fit in memory", meta.len())))?;
            bytes
                .try_reserve_exact(len)
                .map_err(|_| io(format!("{len} bytes could not be allocated")))?;
            bytes.resize(len, 0);
            read_in_parts(&file, &mut bytes).map_err(|e| io(e.to_string()))?;
        } else {
            file.take(max_bytes.saturating_add(1))
                .read_to_end(&mut bytes)
                .map_err(|e| io(e.to_string()))?;
            if bytes.len() as u64 > max_bytes {
                return Err(over("it holds"));
            }
        }
        let text = String::from_utf8(bytes).map_err(|e| io(format!("not a text file: {e}")))?;
        Self::parse(&text, &name)
    }

    /// Parses file contents; `name` is used in error messages.
    ///
    /// # Errors
    /// As [`MatrixMarket::read`].
    pub fn parse(text: &str, name: &str) -> Result<Self> {
        let header = Header::parse(text, name)?;
        let fields = header.fields(name);
        let rest = &text[header.data_offset..];
        // Chunks of whole lines, parsed in parallel (rayon), each into its entries and the first
        // error it meets, numbered from the chunk's first line; merged in file order.
        let parsed: Vec<Chunk> = line_chunks(rest)
            .par_iter()
            .map(|&(start, end)| fields.parse_chunk(&rest[start..end]))
            .collect();
        header.merge(name, parsed)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A coordinate file of `n` entries (a comment every 1000 lines) whose data spans many
    /// parallel chunks; `tweak` edits the lines before they are joined.
    fn file(n: usize, announce: usize, tweak: impl Fn(&mut Vec<String>)) -> String {
        let mut lines = vec![
            "%%MatrixMarket matrix coordinate real general".to_string(),
            "% generated".to_string(),
            format!("{n} {n} {announce}"),
        ];
        for k in 0..n {
            if k % 1000 == 999 {
                lines.push("% a comment between entries".into());
            }
            lines.push(format!(
                "{} {} {}",
                k + 1,
                (k * 7) % n + 1,
                0.5 + k as f64 * 1e-3
            ));
        }
        tweak(&mut lines);
        lines.join("\r\n") + "\n"
    }

    #[test]
    fn chunked_parsing_keeps_order_lines_and_first_errors() {
        let n = 60_000; // ≈ 1.5 MB: several chunks
        let text = file(n, n, |_| {});
        assert!(text.len() > 4 * CHUNK_BYTES);
        let m = MatrixMarket::parse(&text, "big.mtx").unwrap();
        assert_eq!(m.entries.len(), n);
        for k in [0, 1, 998, 999, 31_337, n - 1] {
            assert_eq!(m.entries[k], (k, (k * 7) % n, 0.5 + k as f64 * 1e-3));
            // Three header lines, then one comment line per 1000 entries before this one.
            assert_eq!(m.lines[k], 4 + k + (k + 1) / 1000);
        }
        // An error deep in the file names its own line; the first of two errors wins.
        let line_of = |k: usize| 4 + k + (k + 1) / 1000;
        let bad = file(n, n, |l| {
            l[line_of(50_000) - 1] = "50001 3 abc".into();
            l[line_of(20_000) - 1] = "20001 0 1.0".into();
        });
        let e = MatrixMarket::parse(&bad, "bad.mtx")
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("bad.mtx:{}", line_of(20_000))), "{e}");
        assert!(e.contains("column index 0"), "{e}");
        // More entries than announced: the first extra entry's line, even when malformed.
        let e = MatrixMarket::parse(&file(n, n - 5, |_| {}), "long.mtx")
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("long.mtx:{}", line_of(n - 5))), "{e}");
        assert!(e.contains("more entries than the"), "{e}");
        let e = MatrixMarket::parse(
            &file(n, n - 1, |l| *l.last_mut().unwrap() = "oops".into()),
            "long.mtx",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("more entries than the"), "{e}");
        // The ASCII tokenizer splits exactly where `split_whitespace` does (tab, vertical tab,
        // form feed, carriage return).
        let odd =
            "%%MatrixMarket matrix coordinate real general\n2 2 2\n1\t1\x0b 1.5\n2\x0c2 \r 2.5\n";
        let m = MatrixMarket::parse(odd, "odd.mtx").unwrap();
        assert_eq!(m.entries, vec![(0, 0, 1.5), (1, 1, 2.5)]);
        // Indices: plain digits (fast path), a sign or leading zeros as std's parser reads them,
        // and past usize a parse error naming the index.
        let signs = "%%MatrixMarket matrix coordinate real general\n3 3 2\n+2 1 1.0\n003 002 2.0\n";
        let m = MatrixMarket::parse(signs, "s.mtx").unwrap();
        assert_eq!(m.entries, vec![(1, 0, 1.0), (2, 1, 2.0)]);
        let huge =
            "%%MatrixMarket matrix coordinate real general\n3 3 1\n99999999999999999999 1 1.0\n";
        let e = MatrixMarket::parse(huge, "h.mtx").unwrap_err().to_string();
        assert!(
            e.contains("h.mtx:3") && e.contains("is not a positive integer"),
            "{e}"
        );
        let big =
            "%%MatrixMarket matrix coordinate real general\n3 3 1\n999999999999999999 1 1.0\n";
        let e = MatrixMarket::parse(big, "b.mtx").unwrap_err().to_string();
        assert!(
            e.contains("row index 999999999999999999 out of range 1..=3"),
            "{e}"
        );
        // Fewer: at the last entry's line.
        let e = MatrixMarket::parse(&file(n, n + 3, |_| {}), "short.mtx")
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("short.mtx:{}", line_of(n - 1))), "{e}");
    }

    /// Every line the fast path reads, it reads as the general reader does (bit for bit); the
    /// rest it leaves to it.
    #[test]
    fn plain_lines_read_as_the_general_reader_reads_them() {
        let lines = [
            "1 1 1.5",
            "2 1 -0.84743373693723267",
            "3 2 1e5",
            "3 2 1E+300",
            "3 3 -0.0",
            "3 1 .5",
            "3 1 5.",
            "2 2 1e400",
            "2 2 nan",
            "2 2 inf",
            "2 2 0x1p3",
            "2 2 1_0",
            "2 2 +7",
            "2 2 1e-320",
            "1 1 2.2250738585072011e-308",
            "3 3 1.5\r",
            "3 3\t1.5 ",
            "3 3 1.5 x",
            "3 3",
            "3 1 ",
            "4 1 1.0",
            "1 4 1.0",
            "0 1 1.0",
            "1 2 1.0",
            "01 1 1.0",
            "18446744073709551617 1 1.0",
            "1  1  9007199254740993",
            "1 1 1.5\u{a0}",
        ];
        for (integer, pattern, symmetric) in [
            (false, false, true),
            (false, false, false),
            (true, false, false),
            (false, true, false),
        ] {
            let fields = Fields {
                name: "f.mtx",
                nrows: 3,
                ncols: 3,
                symmetric,
                pattern,
                integer,
                coordinate: true,
            };
            for l in lines {
                if let Some((i, j, v)) = fields.plain_entry(l) {
                    let (gi, gj, gv) = fields.entry(l, 1).unwrap_or_else(|e| panic!("{l}: {e}"));
                    assert_eq!((i, j, v.to_bits()), (gi, gj, gv.to_bits()), "{l}");
                }
            }
            assert!(fields.plain_entry("3 1 nan").is_none());
        }
        let array = Fields {
            name: "a.mtx",
            nrows: 3,
            ncols: 1,
            symmetric: false,
            pattern: false,
            integer: false,
            coordinate: false,
        };
        for l in ["0.4622255420532273", "1e3", " 1.0", "1.0 2.0", "-inf", "7"] {
            if let Some(e) = array.plain_entry(l) {
                assert_eq!(e, array.entry(l, 1).unwrap(), "{l}");
            }
        }
        assert_eq!(
            Fields {
                coordinate: true,
                ..array
            }
            .plain_entry("2 1 0.25"),
            Some((1, 0, 0.25))
        );
    }

    /// A large file read part by part (here in parts of a few bytes to a few kilobytes, so lines
    /// and characters are cut everywhere) gives what parsing the whole text gives: entries,
    /// lines, and the same first error.
    #[cfg(unix)]
    #[test]
    fn reading_by_parts_equals_parsing_the_whole_text() {
        let n = 3_000;
        let line_of = |k: usize| 4 + k + (k + 1) / 1000;
        let files: Vec<(&str, String)> = vec![
            ("plain", file(n, n, |_| {})),
            ("bom", format!("\u{feff}{}", file(n, n, |_| {}))),
            (
                "no final newline",
                file(n, n, |_| {}).trim_end().to_string(),
            ),
            (
                "long comment",
                file(n, n, |l| {
                    l[line_of(1_500) - 1].insert_str(0, &format!("%{}\n", "é".repeat(5_000)))
                }),
            ),
            (
                "two errors",
                file(n, n, |l| {
                    l[line_of(2_500) - 1] = "2501 3 abc".into();
                    l[line_of(700) - 1] = "701 0 1.0".into();
                }),
            ),
            ("more", file(n, n - 5, |_| {})),
            ("fewer", file(n, n + 3, |_| {})),
            (
                "blank lines",
                file(n, n, |l| l[line_of(10) - 1].push_str("\n\n  \n")),
            ),
            (
                "array",
                array_text(&DMatrix::from_fn(700, 5, |i, j| i as f64 * 0.37 - j as f64)),
            ),
            (
                "symmetric",
                file(n, n, |l| {
                    l[0] = "%%MatrixMarket matrix coordinate real symmetric".into();
                    for line in l.iter_mut().skip(3) {
                        if let [i, j, v] = line.split(' ').collect::<Vec<_>>()[..] {
                            let (i, j): (usize, usize) = (i.parse().unwrap(), j.parse().unwrap());
                            *line = format!("{} {} {v}", i.max(j), i.min(j));
                        }
                    }
                }),
            ),
        ];
        let dir = std::env::temp_dir().join(format!("sparsegrad-mm-parts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let outcome = |r: Result<MatrixMarket>| r.map_err(|e| e.to_string());
        for (what, text) in &files {
            let path = dir.join(what.replace(' ', "-"));
            std::fs::write(&path, text).unwrap();
            let whole = outcome(MatrixMarket::parse(text, "f.mtx"));
            let f = std::fs::File::open(&path).unwrap();
            for part in [1, 7, 64, 1_000, 4_096, 1 << 20] {
                let by_parts = read_by_parts(&f, text.len() as u64, "f.mtx", part)
                    .unwrap_or_else(|| panic!("{what}: part {part} fell back"));
                assert_eq!(outcome(by_parts), whole, "{what}, part {part}");
            }
        }
        for (what, text) in &files {
            let ok = MatrixMarket::parse(text, "f.mtx").is_ok();
            let bad = ["two errors", "more", "fewer"].contains(what);
            assert_eq!(ok, !bad, "{what}");
        }
        assert!(outcome(MatrixMarket::parse(&files[4].1, "f.mtx"))
            .unwrap_err()
            .contains(&format!("f.mtx:{}", line_of(700))));
        // Not UTF-8, or a malformed header: left to the whole-file reader (which says why).
        let path = dir.join("latin1");
        let mut bytes = file(n, n, |_| {}).into_bytes();
        let at = bytes.len() / 2;
        bytes[at] = 0xE9;
        std::fs::write(&path, &bytes).unwrap();
        let f = std::fs::File::open(&path).unwrap();
        assert!(read_by_parts(&f, bytes.len() as u64, "f.mtx", 64).is_none());
        assert!(MatrixMarket::read(&path)
            .unwrap_err()
            .to_string()
            .contains("not a text file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
