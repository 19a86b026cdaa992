//! The caller's entries as a stored matrix: the storage decision (general, or symmetric with one
//! or both triangles — judged entry by entry by the library's `Structure::check_symmetric_values`),
//! the pattern cache (a small LRU keyed by the coordinates, so a loop over new values of one
//! pattern reuses its `Structure` and symbolic analyses), the stored values, and fallible
//! allocation of everything sized by the input.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use sparsegrad::{Error, Structure, Symmetry};

/// How the caller's entries map onto the stored matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Storage {
    /// Every entry stored as given (general matrix).
    General,
    /// Symmetric, one triangle given: stored as the lower triangle, each off-diagonal entry
    /// standing for itself and its mirror.
    OneTriangle,
    /// Symmetric, both triangles given: every entry stored as given ([`Symmetry::Full`]), each
    /// checked against its mirror.
    BothTriangles,
}

impl Storage {
    pub(crate) fn symmetric(self) -> bool {
        self != Storage::General
    }
}

/// A pattern: its structure (with the cached symbolic analyses) and each entry's slot.
pub(crate) struct Pattern {
    pub(crate) n: usize,
    pub(crate) rows: Vec<i64>,
    pub(crate) cols: Vec<i64>,
    pub(crate) storage: Storage,
    pub(crate) structure: Arc<Structure>,
    /// Stored slot of every input entry.
    pub(crate) slot: Vec<usize>,
}

/// The last patterns seen (most recent last).
pub(crate) static PATTERNS: Mutex<Vec<(u64, Arc<Pattern>)>> = Mutex::new(Vec::new());
pub(crate) const PATTERN_CACHE: usize = 16;

/// Bytes per input entry that building a pattern needs at most (pairs, slots, the structure's
/// counting sort and arrays, the cached coordinates).
pub(crate) const BYTES_PER_ENTRY: usize = 160;

pub(crate) fn out_of_memory(what: impl Into<String>, bytes: usize) -> Error {
    Error::OutOfMemory {
        what: what.into(),
        reason: format!(
            "{:.1} GiB could not be allocated",
            bytes as f64 / 1073741824.0
        ),
    }
}

/// Checks that `bytes` can be allocated (reserved, not touched, then freed) so that what follows
/// cannot abort the interpreter: `MemoryError` instead.
pub(crate) fn probe(bytes: usize, what: &str) -> Result<(), Error> {
    let mut v: Vec<u8> = Vec::new();
    v.try_reserve_exact(bytes)
        .map_err(|_| out_of_memory(what, bytes))
}

/// An empty vector with room for `len` items, or `Error::OutOfMemory`.
pub(crate) fn try_vec<T>(len: usize, what: &str) -> Result<Vec<T>, Error> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| out_of_memory(what, len.saturating_mul(std::mem::size_of::<T>())))?;
    Ok(v)
}

/// A fast non-cryptographic hash of the coordinates (a hit is confirmed by comparing them).
pub(crate) fn pattern_key(n: usize, rows: &[i64], cols: &[i64], storage: Storage) -> u64 {
    let mut h = DefaultHasher::new();
    (n, rows.len(), storage).hash(&mut h);
    let mut acc = h.finish();
    for (&r, &c) in rows.iter().zip(cols) {
        acc = (acc.rotate_left(5) ^ (r as u64)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ (c as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    }
    acc
}

/// Hashes of patterns found not to be symmetric (a collision only costs a general factorization).
pub(crate) static ASYMMETRIC: Mutex<Vec<u64>> = Mutex::new(Vec::new());

pub(crate) fn pattern(
    n: usize,
    rows: &[i64],
    cols: &[i64],
    storage: Storage,
) -> Result<Arc<Pattern>, Error> {
    let key = pattern_key(n, rows, cols, storage);
    {
        let mut cache = PATTERNS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = cache.iter().position(|(k, p)| {
            *k == key && p.n == n && p.storage == storage && p.rows == rows && p.cols == cols
        }) {
            let hit = cache.remove(at);
            let found = hit.1.clone();
            cache.push(hit);
            return Ok(found);
        }
    }
    probe(
        rows.len().saturating_mul(BYTES_PER_ENTRY),
        "the pattern of the sparse matrix",
    )?;
    let mut pairs = try_vec(rows.len(), "the entries' coordinates")?;
    for (&r, &c) in rows.iter().zip(cols) {
        let (r, c) = (r as usize, c as usize);
        pairs.push(match storage {
            Storage::OneTriangle if r < c => (c, r),
            _ => (r, c),
        });
    }
    let symmetry = match storage {
        Storage::General => Symmetry::General,
        Storage::OneTriangle => Symmetry::Lower,
        Storage::BothTriangles => Symmetry::Full,
    };
    let (structure, slot) = Structure::from_pairs(n, n, &pairs, symmetry)?;
    drop(pairs);
    let (mut r, mut c) = (
        try_vec(rows.len(), "the pattern cache")?,
        try_vec(cols.len(), "the pattern cache")?,
    );
    r.extend_from_slice(rows);
    c.extend_from_slice(cols);
    let found = Arc::new(Pattern {
        n,
        rows: r,
        cols: c,
        storage,
        structure,
        slot,
    });
    let mut cache = PATTERNS.lock().unwrap_or_else(|p| p.into_inner());
    cache.push((key, found.clone()));
    if cache.len() > PATTERN_CACHE {
        cache.remove(0);
    }
    Ok(found)
}

/// Stored values for `pattern` from the caller's values (duplicates summed), finite; for both
/// triangles, every entry checked against its mirror (the library's per-entry test).
pub(crate) fn stored_values(p: &Pattern, data: &[f64]) -> Result<Vec<f64>, Error> {
    let mut values = try_vec(p.structure.nnz(), "the matrix values")?;
    values.resize(p.structure.nnz(), 0.0);
    for (e, (&v, &s)) in data.iter().zip(&p.slot).enumerate() {
        if !v.is_finite() {
            return Err(Error::NonFinite {
                context: "sparse matrix value",
                row: p.rows[e] as usize,
                col: p.cols[e] as usize,
                value: v,
            });
        }
        values[s] += v;
    }
    p.structure.check_symmetric_values(&values)?;
    Ok(values)
}

/// The storage of the caller's entries: what `symmetric` says, or (None) symmetric when both
/// triangles are stored and every entry equals its mirror.
pub(crate) fn decide(
    n: usize,
    rows: &[i64],
    cols: &[i64],
    data: &[f64],
    symmetric: Option<bool>,
) -> Result<(Arc<Pattern>, Vec<f64>), Error> {
    let (mut lower, mut upper) = (false, false);
    for (&r, &c) in rows.iter().zip(cols) {
        lower |= r > c;
        upper |= r < c;
    }
    let one_triangle = !(lower && upper);
    let build = |storage| -> Result<(Arc<Pattern>, Vec<f64>), Error> {
        let p = pattern(n, rows, cols, storage)?;
        let v = stored_values(&p, data)?;
        Ok((p, v))
    };
    let storage = match symmetric {
        Some(false) => Storage::General,
        Some(true) if one_triangle => Storage::OneTriangle,
        Some(true) => Storage::BothTriangles,
        None if !lower && !upper => Storage::OneTriangle,
        None if one_triangle => Storage::General,
        None => {
            let key = pattern_key(n, rows, cols, Storage::BothTriangles);
            let known_asymmetric = ASYMMETRIC
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&key);
            if known_asymmetric {
                Storage::General
            } else {
                match build(Storage::BothTriangles) {
                    Ok(found) => return Ok(found),
                    // Values that differ from their mirror: a general matrix.
                    Err(Error::NotSymmetric { .. }) => Storage::General,
                    // A pattern without its mirror: remembered, a general matrix.
                    Err(Error::InvalidPattern { .. }) => {
                        let mut bad = ASYMMETRIC.lock().unwrap_or_else(|p| p.into_inner());
                        bad.push(key);
                        if bad.len() > PATTERN_CACHE {
                            bad.remove(0);
                        }
                        Storage::General
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    };
    build(storage)
}
