//! Symbolic analyses cached on a [`Structure`], computed on first use and shared by every later
//! numeric factorization of the same pattern.

use std::sync::Arc;

use crate::error::Result;
use crate::sparse::{Structure, Symmetry};

/// Locks `m`, recovering from poisoning (the caches it guards are only inserted into, so a
/// panic while holding it cannot leave them inconsistent).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Returns the structure's analysis of type `T`, computing (and counting) it on first use.
///
/// No lock is held while analysing, so an analysis may itself use other cached analyses.
pub(crate) fn cached<T: std::any::Any + Send + Sync>(
    structure: &Structure,
    analyze: impl FnOnce() -> Result<T>,
) -> Result<Arc<T>> {
    if let Some(found) = structure.analysis::<T>() {
        return Ok(found);
    }
    let computed = Arc::new(analyze()?);
    structure.record_analysis();
    Ok(structure.insert_analysis(computed))
}

/// As [`cached`], but not counted as a symbolic analysis: for what is only a relabelling of the
/// stored pattern (its full form, its supervariables).
pub(crate) fn derived<T: std::any::Any + Send + Sync>(
    structure: &Structure,
    compute: impl FnOnce() -> Result<T>,
) -> Result<Arc<T>> {
    if let Some(found) = structure.analysis::<T>() {
        return Ok(found);
    }
    Ok(structure.insert_analysis(Arc::new(compute()?)))
}

/// The structure's cache object of type `T`, created empty on first use: for caches keyed
/// inside (by ordering, by communicator), which compute their entries themselves.
pub(crate) fn slot<T: std::any::Any + Send + Sync + Default>(structure: &Structure) -> Arc<T> {
    structure
        .analysis::<T>()
        .unwrap_or_else(|| structure.insert_analysis(Arc::default()))
}

/// faer's AMD ordering of the `n × n` graph with both triangles in `col_ptr` / `row_idx`:
/// (new → old, old → new). The workspace is allocated fallibly.
/// faer's sparse errors as ours: a failed allocation is [`Error::OutOfMemory`] (Python's
/// `MemoryError`), an index overflow (a pattern too large for the index type) likewise; `what`
/// names the step.
pub(crate) fn faer_error(
    what: &str,
) -> impl Fn(faer::sparse::FaerError) -> crate::error::Error + '_ {
    move |e| match e {
        faer::sparse::FaerError::OutOfMemory | faer::sparse::FaerError::IndexOverflow => {
            crate::error::Error::OutOfMemory {
                what: format!("faer {what}"),
                reason: format!("{e:?}: its workspace or result could not be allocated"),
            }
        }
        _ => crate::error::Error::FactorizationFailed {
            backend: format!("faer {what}"),
            reason: format!("{e:?}"),
        },
    }
}

pub(crate) fn amd_order(
    n: usize,
    col_ptr: &[usize],
    row_idx: &[usize],
) -> Result<(Vec<usize>, Vec<usize>)> {
    let (perm, perm_inv, _) = amd_order_counted(n, col_ptr, row_idx)?;
    Ok((perm, perm_inv))
}

/// [`amd_order`] with AMD's own count of its elimination's operations.
pub(crate) fn amd_order_counted(
    n: usize,
    col_ptr: &[usize],
    row_idx: &[usize],
) -> Result<(Vec<usize>, Vec<usize>, faer::sparse::linalg::amd::FlopCount)> {
    use faer::dyn_stack::{MemBuffer, MemStack};
    use faer::sparse::linalg::amd;
    let pattern = faer::sparse::SymbolicSparseColMatRef::new_checked(n, n, col_ptr, None, row_idx);
    let (mut perm, mut perm_inv) = (vec![0usize; n], vec![0usize; n]);
    let mut buffer =
        MemBuffer::try_new(amd::order_scratch::<usize>(n, row_idx.len())).map_err(|_| {
            crate::error::Error::OutOfMemory {
                what: format!("AMD workspace for {n} vertices"),
                reason: "the allocator refused".into(),
            }
        })?;
    let flops = amd::order(
        &mut perm,
        &mut perm_inv,
        pattern,
        amd::Control::default(),
        MemStack::new(&mut buffer),
    )
    .map_err(faer_error("AMD"))?;
    Ok((perm, perm_inv, flops))
}

/// Both triangles of a square pattern: for one-triangle storage, the mirrored pattern with the
/// stored entry each full entry reads from; for other storage, the stored pattern itself.
pub(crate) struct FullPattern {
    pub(crate) col_ptr: Vec<usize>,
    pub(crate) row_idx: Vec<usize>,
    /// `source[f]` = index of the stored value that full entry `f` takes.
    pub(crate) source: Option<Vec<usize>>,
}

impl FullPattern {
    /// Values of the full pattern.
    pub(crate) fn values<'a>(&self, stored: &'a [f64]) -> std::borrow::Cow<'a, [f64]> {
        match &self.source {
            None => std::borrow::Cow::Borrowed(stored),
            Some(src) => std::borrow::Cow::Owned(src.iter().map(|&k| stored[k]).collect()),
        }
    }
}

/// The full (both-triangle) pattern of a square structure. Not counted as a symbolic analysis:
/// it is a relabelling of the stored pattern.
pub(crate) fn full_pattern(structure: &Structure) -> Result<Arc<FullPattern>> {
    derived(structure, || Ok(full_pattern_of(structure)))
}

fn full_pattern_of(structure: &Structure) -> FullPattern {
    if structure.symmetry() == Symmetry::Lower {
        let (cp, ri) = (structure.col_ptr(), structure.row_idx());
        if ri.len() >= PARALLEL_MIRROR_MIN && rayon::current_num_threads() > 1 {
            mirrored_in_parallel(cp, ri, 2 * rayon::current_num_threads())
        } else {
            mirrored(cp, ri)
        }
    } else {
        FullPattern {
            col_ptr: structure.col_ptr().to_vec(),
            row_idx: structure.row_idx().to_vec(),
            source: None,
        }
    }
}

/// Stored entries from which a lower triangle is mirrored in parallel.
const PARALLEL_MIRROR_MIN: usize = 1 << 20;

/// Both triangles of the lower-triangle pattern `cp` / `ri` (rows sorted, ≥ the column): column c
/// gathers the stored entries (c, j), j < c, which come first in item order (columns ascending),
/// then column c itself: sorted, with no sort. An off-diagonal entry belongs to both its row's and
/// its column's group.
fn mirrored(cp: &[usize], ri: &[usize]) -> FullPattern {
    let n = cp.len() - 1;
    let col = crate::sparse::entry_columns(cp);
    let (col_ptr, source) = crate::sparse::counting_groups(n, ri.len(), |e| {
        [
            col[e],
            if ri[e] != col[e] {
                ri[e]
            } else {
                crate::sparse::NO_GROUP
            },
        ]
    });
    let mut row_idx = vec![0usize; source.len()];
    for c in 0..n {
        for p in col_ptr[c]..col_ptr[c + 1] {
            let e = source[p];
            row_idx[p] = if col[e] == c { ri[e] } else { col[e] };
        }
    }
    FullPattern {
        col_ptr,
        row_idx,
        source: Some(source),
    }
}

/// [`mirrored`] on the rayon pool, the same result: the columns are cut into `pieces` ranges of
/// about equal entries; each range sorts its strictly-lower entries by row (a counting sort,
/// so each row's entries stay in column order); then every full column is written by one task —
/// the pieces' entries of its row, piece by piece, then the stored column.
fn mirrored_in_parallel(cp: &[usize], ri: &[usize], pieces: usize) -> FullPattern {
    use rayon::prelude::*;
    let n = cp.len() - 1;
    let ranges =
        crate::sparse::balanced_ranges(n, ri.len().div_ceil(pieces), |c| cp[c + 1] - cp[c]);
    let col = crate::sparse::entry_columns(cp);
    // Per piece: offsets by row (n + 1) and its strictly-lower entries, by row then column
    // (`counting_groups` keeps item order within a row).
    let by_row: Vec<(Vec<usize>, Vec<usize>)> = ranges
        .par_iter()
        .map(|range| {
            let base = cp[range.start];
            let (ptr, mut items) = crate::sparse::counting_groups(n, cp[range.end] - base, |k| {
                let e = base + k;
                let row = if ri[e] != col[e] {
                    ri[e]
                } else {
                    crate::sparse::NO_GROUP
                };
                [row, crate::sparse::NO_GROUP]
            });
            items.iter_mut().for_each(|k| *k += base);
            (ptr, items)
        })
        .collect();
    let mut col_ptr = Vec::with_capacity(n + 1);
    col_ptr.push(0usize);
    for c in 0..n {
        let mirrored: usize = by_row.iter().map(|(ptr, _)| ptr[c + 1] - ptr[c]).sum();
        col_ptr.push(col_ptr[c] + mirrored + cp[c + 1] - cp[c]);
    }
    let total = col_ptr[n];
    let (mut row_idx, mut source) = (vec![0usize; total], vec![0usize; total]);
    // The output cut at the same column ranges: disjoint slices, one task each.
    let mut parts = Vec::with_capacity(ranges.len());
    let (mut rows_rest, mut source_rest) = (&mut row_idx[..], &mut source[..]);
    for range in &ranges {
        let len = col_ptr[range.end] - col_ptr[range.start];
        let (rows, rows_tail) = std::mem::take(&mut rows_rest).split_at_mut(len);
        let (from, source_tail) = std::mem::take(&mut source_rest).split_at_mut(len);
        parts.push((range.clone(), rows, from));
        (rows_rest, source_rest) = (rows_tail, source_tail);
    }
    parts.into_par_iter().for_each(|(range, rows, from)| {
        let mut at = 0;
        for c in range {
            for (ptr, items) in &by_row {
                for &e in &items[ptr[c]..ptr[c + 1]] {
                    rows[at] = col[e];
                    from[at] = e;
                    at += 1;
                }
            }
            let stored = cp[c]..cp[c + 1];
            let len = stored.len();
            rows[at..at + len].copy_from_slice(&ri[stored.clone()]);
            for (slot, e) in from[at..at + len].iter_mut().zip(stored) {
                *slot = e;
            }
            at += len;
        }
    });
    FullPattern {
        col_ptr,
        row_idx,
        source: Some(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn the_parallel_mirror_equals_the_sequential_one() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for case in 0..40 {
            let n = rng.random_range(1..300);
            // A random lower triangle, some diagonal entries missing, some empty columns.
            let (mut cp, mut ri) = (vec![0], Vec::new());
            for c in 0..n {
                if rng.random_bool(0.7) {
                    ri.push(c);
                }
                for r in c + 1..n {
                    if rng.random_bool(0.05) {
                        ri.push(r);
                    }
                }
                cp.push(ri.len());
            }
            let want = mirrored(&cp, &ri);
            for pieces in [1, 2, 3, 7, 64] {
                let got = mirrored_in_parallel(&cp, &ri, pieces);
                assert_eq!(got.col_ptr, want.col_ptr, "case {case}, {pieces} pieces");
                assert_eq!(got.row_idx, want.row_idx, "case {case}, {pieces} pieces");
                assert_eq!(got.source, want.source, "case {case}, {pieces} pieces");
            }
        }
    }
}
