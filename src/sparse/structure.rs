//! `Structure`: a validated CSC sparsity pattern with a symmetry flag, shared by `Arc`, which caches
//! the symbolic analyses (orderings, elimination trees, fill patterns) of every factorization
//! method used with it, so that later numeric factorizations only pay the numeric work.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use faer::sparse::{SymbolicSparseColMat, SymbolicSparseColMatRef};
use nalgebra_sparse::CscMatrix;

use crate::error::{first_non_finite, Error, PatternRule, Result};

/// A structure built from pairs, with the input items grouped by stored entry.
pub(crate) struct Grouped {
    pub(crate) structure: Arc<Structure>,
    /// Input item indices, grouped by stored entry (entries in storage order).
    order: Vec<usize>,
    /// `order[item_ptr[k]..item_ptr[k + 1]]` landed on stored entry k.
    item_ptr: Vec<usize>,
}

impl Grouped {
    /// The input items that landed on stored entry `k`.
    pub(crate) fn items(&self, k: usize) -> &[usize] {
        &self.order[self.item_ptr[k]..self.item_ptr[k + 1]]
    }
}

/// How a (square) matrix's symmetry is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Symmetry {
    /// No symmetry: every stored entry is an independent value. Solve with LU.
    General,
    /// Symmetric with both triangles stored. The pattern must be symmetric; values are checked
    /// for symmetry before a symmetric factorization.
    Full,
    /// Symmetric with only the lower triangle (row ≥ column) stored. A stored off-diagonal value
    /// a_ij stands for both a_ij and a_ji; its gradient counts both positions.
    Lower,
}

/// A validated compressed-sparse-column pattern.
///
/// Invariants (checked by every constructor, then trusted): `col_ptr` has `ncols + 1`
/// non-decreasing entries starting at 0 and ending at `nnz`; row indices within each column are
/// strictly increasing and `< nrows`; a [`Symmetry::Full`] pattern is square and symmetric; a
/// [`Symmetry::Lower`] pattern is square with every entry on or below the diagonal.
///
/// The structure owns a cache of symbolic analyses: the first factorization with a given method
/// computes its analysis, every later one reuses it ([`Structure::symbolic_analyses`] counts them).
pub struct Structure {
    nrows: usize,
    ncols: usize,
    /// The CSC arrays, held in faer's own type so that factorizations view them without
    /// re-validating the pattern on every call.
    pattern: SymbolicSparseColMat<usize>,
    symmetry: Symmetry,
    mirror: OnceLock<Vec<usize>>,
    /// Stored index of each diagonal entry (`usize::MAX` where it is not stored), built on first use.
    diagonal: OnceLock<Vec<usize>>,
    /// Analyses by type (filled by the solvers; this module knows none of them).
    analyses: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    analysis_count: AtomicUsize,
    factorization_count: AtomicUsize,
}

impl std::fmt::Debug for Structure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Structure")
            .field("nrows", &self.nrows)
            .field("ncols", &self.ncols)
            .field("nnz", &self.nnz())
            .field("symmetry", &self.symmetry)
            .finish()
    }
}

fn invalid<T>(rule: PatternRule, reason: String) -> Result<T> {
    Err(Error::InvalidPattern { rule, reason })
}

/// [`Structure::new`]'s checks of the dimensions and of `col_ptr`'s length and ends.
fn check_shape(
    nrows: usize,
    ncols: usize,
    col_ptr: &[usize],
    nnz: usize,
    symmetry: Symmetry,
) -> Result<()> {
    if nrows > isize::MAX as usize || ncols > isize::MAX as usize {
        return invalid(
            PatternRule::TooLarge,
            format!(
                "a {nrows}×{ncols} pattern exceeds the largest supported dimension ({})",
                isize::MAX
            ),
        );
    }
    if col_ptr.len() != ncols + 1 {
        return invalid(
            PatternRule::ColPtrLength,
            format!(
                "col_ptr has {} entries, expected ncols + 1 = {}",
                col_ptr.len(),
                ncols + 1
            ),
        );
    }
    if col_ptr[0] != 0 {
        return invalid(
            PatternRule::ColPtrStart,
            format!("col_ptr[0] is {}, expected 0", col_ptr[0]),
        );
    }
    if col_ptr[ncols] != nnz {
        return invalid(
            PatternRule::ColPtrEnd,
            format!(
                "col_ptr[{ncols}] is {} but there are {} row indices",
                col_ptr[ncols], nnz
            ),
        );
    }
    if symmetry != Symmetry::General && nrows != ncols {
        return invalid(
            PatternRule::NotSquare,
            format!("a symmetric pattern must be square, got {nrows}×{ncols}"),
        );
    }
    Ok(())
}

/// [`Structure::new`]'s checks of every column: `col_ptr` non-decreasing, rows in range, strictly
/// increasing, and on or below the diagonal for [`Symmetry::Lower`].
fn check_columns(
    nrows: usize,
    col_ptr: &[usize],
    row_idx: &[usize],
    symmetry: Symmetry,
) -> Result<()> {
    let ncols = col_ptr.len() - 1;
    for j in 0..ncols {
        let (start, end) = (col_ptr[j], col_ptr[j + 1]);
        if start > end || end > row_idx.len() {
            return invalid(
                PatternRule::ColPtrDecreasing,
                format!("col_ptr decreases at column {j} ({start} > {end}) or exceeds nnz"),
            );
        }
        for k in start..end {
            let i = row_idx[k];
            if i >= nrows {
                return Err(Error::IndexOutOfRange {
                    context: "Structure row indices",
                    entry: k,
                    what: "row",
                    index: i,
                    bound: nrows,
                });
            }
            if k > start && row_idx[k - 1] >= i {
                let (rule, what) = if row_idx[k - 1] == i {
                    (PatternRule::DuplicateRows, "duplicate")
                } else {
                    (PatternRule::UnsortedRows, "unsorted")
                };
                return invalid(rule, format!(
                        "{what} row index {i} in column {j} (entry {k}); rows must be strictly increasing"
                    ));
            }
            if symmetry == Symmetry::Lower && i < j {
                return invalid(PatternRule::AboveDiagonal, format!(
                        "entry ({i}, {j}) lies above the diagonal of a lower-triangle symmetric pattern"
                    ));
            }
        }
    }
    Ok(())
}

impl Structure {
    /// Validates CSC arrays and wraps them.
    ///
    /// # Errors
    /// [`Error::InvalidPattern`] for a `col_ptr` of the wrong length, not starting at 0,
    /// decreasing, or not ending at `row_idx.len()`; unsorted or duplicate rows in a column; an
    /// entry above the diagonal of a [`Symmetry::Lower`] pattern; an unsymmetric
    /// [`Symmetry::Full`] pattern; a non-square symmetric pattern; a dimension above `isize::MAX`.
    /// [`Error::IndexOutOfRange`] for a row index ≥ `nrows`.
    pub fn new(
        nrows: usize,
        ncols: usize,
        col_ptr: Vec<usize>,
        row_idx: Vec<usize>,
        symmetry: Symmetry,
    ) -> Result<Arc<Self>> {
        check_shape(nrows, ncols, &col_ptr, row_idx.len(), symmetry)?;
        check_columns(nrows, &col_ptr, &row_idx, symmetry)?;
        // Validated above (faer re-checks the same invariants once, here, never per call).
        let pattern = SymbolicSparseColMat::new_checked(nrows, ncols, col_ptr, None, row_idx);
        let s = Structure {
            nrows,
            ncols,
            pattern,
            symmetry,
            mirror: OnceLock::new(),
            diagonal: OnceLock::new(),
            analyses: Mutex::new(HashMap::new()),
            analysis_count: AtomicUsize::new(0),
            factorization_count: AtomicUsize::new(0),
        };
        if symmetry == Symmetry::Full {
            // Building the mirror map validates the pattern's symmetry.
            let mirror = s.build_mirror()?;
            let _ = s.mirror.set(mirror);
        }
        Ok(Arc::new(s))
    }

    /// Builds a pattern from (row, column) pairs in any order, with duplicates merged.
    ///
    /// Returns the structure and, for each input pair, the index of the stored entry it landed on.
    ///
    /// # Errors
    /// As [`Structure::new`]; a pair out of range is reported with its position in `entries`.
    pub fn from_pairs(
        nrows: usize,
        ncols: usize,
        entries: &[(usize, usize)],
        symmetry: Symmetry,
    ) -> Result<(Arc<Self>, Vec<usize>)> {
        let grouped = Self::from_pair_fn(nrows, ncols, entries.len(), |e| entries[e], symmetry, 0)?;
        let mut slot = vec![0usize; entries.len()];
        for k in 0..grouped.structure.nnz() {
            for &e in grouped.items(k) {
                slot[e] = k;
            }
        }
        Ok((grouped.structure, slot))
    }

    /// [`Structure::from_pairs`] over `len` pairs given by `pair(e)`, returning the input items
    /// grouped by the stored entry they land on (no per-item slot array, no copy of the pairs).
    /// The first `checked` items are known to be in range (their check is skipped).
    pub(crate) fn from_pair_fn(
        nrows: usize,
        ncols: usize,
        len: usize,
        pair: impl Fn(usize) -> (usize, usize) + Sync,
        symmetry: Symmetry,
        checked: usize,
    ) -> Result<Grouped> {
        use rayon::prelude::*;
        if nrows > isize::MAX as usize || ncols > isize::MAX as usize {
            return Err(Error::InvalidPattern {
                rule: PatternRule::TooLarge,
                reason: format!(
                    "a {nrows}×{ncols} pattern exceeds the largest supported dimension ({})",
                    isize::MAX
                ),
            });
        }
        // Column pointers (and the counting sort's buckets) for every column.
        crate::error::probe_alloc::<[usize; 2]>(ncols.saturating_add(1), || {
            format!("the column pointers of a pattern with {ncols} columns")
        })?;
        let out_of_range = (checked.min(len)..len).into_par_iter().find_first(|&e| {
            let (i, j) = pair(e);
            i >= nrows || j >= ncols
        });
        if let Some(e) = out_of_range {
            let (i, j) = pair(e);
            let (what, index, bound) = if i >= nrows {
                ("row", i, nrows)
            } else {
                ("column", j, ncols)
            };
            return Err(Error::IndexOutOfRange {
                context: "sparse entry list",
                entry: e,
                what,
                index,
                bound,
            });
        }
        let (start, order) = super::bucket_order(len, ncols, |e| pair(e).1, |e| pair(e).0);
        // Equal (row, column) pairs are adjacent within their column: one stored entry each. The
        // columns are cut into ranges of about 64 Ki items, deduplicated in parallel and joined.
        let ranges = super::balanced_ranges(ncols, 1 << 16, |j| start[j + 1] - start[j]);
        let pieces: Vec<(Vec<usize>, Vec<usize>, Vec<usize>)> = ranges
            .par_iter()
            .map(|columns| {
                let (mut rows, mut firsts, mut counts) = (Vec::new(), Vec::new(), Vec::new());
                for j in columns.clone() {
                    let before = rows.len();
                    let mut last = None;
                    for (p, &e) in (start[j]..).zip(&order[start[j]..start[j + 1]]) {
                        let i = pair(e).0;
                        if last != Some(i) {
                            rows.push(i);
                            firsts.push(p);
                            last = Some(i);
                        }
                    }
                    counts.push(rows.len() - before);
                }
                (rows, firsts, counts)
            })
            .collect();
        let (col_ptr, row_idx, mut item_ptr) = super::join_pieces(&pieces);
        item_ptr.push(len);
        let structure = Structure::new(nrows, ncols, col_ptr, row_idx, symmetry)?;
        Ok(Grouped {
            structure,
            order,
            item_ptr,
        })
    }

    /// Number of rows.
    pub fn nrows(&self) -> usize {
        self.nrows
    }
    /// Number of columns.
    pub fn ncols(&self) -> usize {
        self.ncols
    }
    /// Number of stored entries.
    pub fn nnz(&self) -> usize {
        self.row_idx().len()
    }
    /// Column pointers (length `ncols + 1`).
    pub fn col_ptr(&self) -> &[usize] {
        self.pattern.col_ptr()
    }
    /// Row index of every stored entry, column by column.
    pub fn row_idx(&self) -> &[usize] {
        self.pattern.row_idx()
    }
    /// The pattern as a faer view (no copy, no re-validation).
    pub(crate) fn faer_pattern(&self) -> SymbolicSparseColMatRef<'_, usize> {
        self.pattern.as_ref()
    }
    /// Stored index of the diagonal entry of every column (`usize::MAX` where none is stored);
    /// computed once per structure.
    pub(crate) fn diagonal_positions(&self) -> &[usize] {
        self.diagonal.get_or_init(|| {
            (0..self.ncols.min(self.nrows))
                .map(|j| self.position(j, j).unwrap_or(usize::MAX))
                .collect()
        })
    }
    /// How symmetry is stored.
    pub fn symmetry(&self) -> Symmetry {
        self.symmetry
    }
    /// Column of every stored entry (the expansion of `col_ptr`).
    pub fn col_idx(&self) -> Vec<usize> {
        let mut cols = Vec::with_capacity(self.nnz());
        for j in 0..self.ncols {
            cols.extend(std::iter::repeat_n(
                j,
                self.col_ptr()[j + 1] - self.col_ptr()[j],
            ));
        }
        cols
    }

    /// Index of the stored entry (row, col), if it is stored.
    pub fn position(&self, row: usize, col: usize) -> Option<usize> {
        if col >= self.ncols {
            return None;
        }
        let (s, e) = (self.col_ptr()[col], self.col_ptr()[col + 1]);
        self.row_idx()[s..e].binary_search(&row).ok().map(|k| s + k)
    }

    /// Whether two structures describe the same pattern and symmetry (cheap when they are the
    /// same `Arc`).
    pub fn same_pattern(&self, other: &Structure) -> bool {
        std::ptr::eq(self, other)
            || (self.nrows == other.nrows
                && self.ncols == other.ncols
                && self.symmetry == other.symmetry
                && self.col_ptr() == other.col_ptr()
                && self.row_idx() == other.row_idx())
    }

    /// How many symbolic analyses (of any factorization method) this structure has computed.
    ///
    /// An optimization loop that refactors with new values on one structure should see this stay
    /// at one per method used.
    pub fn symbolic_analyses(&self) -> usize {
        self.analysis_count.load(Ordering::Relaxed)
    }

    /// How many numeric factorizations of matrices on this structure have been started.
    pub fn numeric_factorizations(&self) -> usize {
        self.factorization_count.load(Ordering::Relaxed)
    }

    /// The matrix with `values` on this pattern as a nalgebra-sparse `CscMatrix` (the stored
    /// triangle only for [`Symmetry::Lower`]; see [`Structure::to_csc_full`]).
    ///
    /// # Errors
    /// [`Error::StructureMismatch`] unless there is one value per stored entry.
    pub fn to_csc(&self, values: &[f64]) -> Result<CscMatrix<f64>> {
        self.check_len(values)?;
        Ok(CscMatrix::try_from_csc_data(
            self.nrows,
            self.ncols,
            self.col_ptr().to_vec(),
            self.row_idx().to_vec(),
            values.to_vec(),
        )?)
    }

    /// As [`Structure::to_csc`], with a one-triangle pattern mirrored into both triangles.
    ///
    /// # Errors
    /// As [`Structure::to_csc`].
    pub fn to_csc_full(&self, values: &[f64]) -> Result<CscMatrix<f64>> {
        if self.symmetry != Symmetry::Lower {
            return self.to_csc(values);
        }
        let stored = self.to_csc(values)?;
        let mut coo = nalgebra_sparse::CooMatrix::new(self.nrows, self.ncols);
        for (i, j, &v) in stored.triplet_iter() {
            coo.push(i, j, v);
            if i != j {
                coo.push(j, i, v);
            }
        }
        Ok(CscMatrix::from(&coo))
    }

    /// The analysis of type `T` kept on this structure, if one was stored.
    ///
    /// Solvers keep their symbolic analyses here, one per type, so that every numeric
    /// factorization of the same pattern reuses them; a [`Factorizer`](crate::Factorizer) of your
    /// own can do the same with a type of its own.
    pub fn analysis<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.lock_analyses()
            .get(&TypeId::of::<T>())
            .cloned()
            .and_then(|a| a.downcast::<T>().ok())
    }

    /// Stores `analysis` unless one of type `T` is already there, and returns the stored one
    /// (the first writer wins, so concurrent analyses agree on one).
    pub fn insert_analysis<T: Any + Send + Sync>(&self, analysis: Arc<T>) -> Arc<T> {
        let mut map = self.lock_analyses();
        let stored = map
            .entry(TypeId::of::<T>())
            .or_insert_with(|| analysis.clone() as Arc<dyn Any + Send + Sync>)
            .clone();
        drop(map);
        stored.downcast::<T>().unwrap_or(analysis)
    }

    fn lock_analyses(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<TypeId, Arc<dyn Any + Send + Sync>>> {
        // Slots are set whole, so a panic elsewhere cannot leave the map inconsistent.
        self.analyses
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn record_factorization(&self) {
        self.factorization_count.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_analysis(&self) {
        self.analysis_count.fetch_add(1, Ordering::Relaxed);
    }

    /// For a square pattern: `mirror[k]` is the stored index of the transpose position of entry `k`.
    ///
    /// # Errors
    /// [`Error::InvalidPattern`] if some entry's mirror is not stored.
    pub(crate) fn mirror(&self) -> Result<&[usize]> {
        if let Some(m) = self.mirror.get() {
            return Ok(m);
        }
        let m = self.build_mirror()?;
        Ok(self.mirror.get_or_init(|| m))
    }

    fn build_mirror(&self) -> Result<Vec<usize>> {
        if self.nrows != self.ncols {
            return Err(Error::InvalidPattern {
                rule: PatternRule::NotSquare,
                reason: format!(
                    "a {}×{} pattern has no transpose positions",
                    self.nrows, self.ncols
                ),
            });
        }
        let mut mirror = vec![0usize; self.nnz()];
        // Walk columns in order; for each column j, the next entry of each column i with row j is
        // found with a moving cursor, so this is O(nnz).
        let mut cursor: Vec<usize> = self.col_ptr()[..self.ncols].to_vec();
        for j in 0..self.ncols {
            let range = self.col_ptr()[j]..self.col_ptr()[j + 1];
            for (slot, &i) in mirror[range.clone()].iter_mut().zip(&self.row_idx()[range]) {
                let c = cursor[i];
                if c >= self.col_ptr()[i + 1] || self.row_idx()[c] != j {
                    return Err(Error::InvalidPattern {
                        rule: PatternRule::NotSymmetric,
                        reason: format!(
                            "pattern declared symmetric stores ({i}, {j}) but not ({j}, {i})"
                        ),
                    });
                }
                *slot = c;
                cursor[i] += 1;
            }
        }
        if let Some(i) = (0..self.ncols).find(|&i| cursor[i] != self.col_ptr()[i + 1]) {
            let r = self.row_idx()[cursor[i]];
            return Err(Error::InvalidPattern {
                rule: PatternRule::NotSymmetric,
                reason: format!("pattern declared symmetric stores ({r}, {i}) but not ({i}, {r})"),
            });
        }
        Ok(mirror)
    }

    /// Checks that stored values of a [`Symmetry::Full`] matrix are symmetric, entry by entry:
    /// |a_ij − a_ji| ≤ 1e-10 · max(|a_ij|, |a_ji|) (a no-op for other symmetries). Per entry, so a
    /// huge entry elsewhere (a penalty) never hides an unsymmetric block.
    ///
    /// ```
    /// use sparsegrad::{Error, Structure, Symmetry};
    /// // [[1e15, 0, 0], [0, 2, 1], [0, 0.5, 2]]: both triangles stored, the 2×2 block unsymmetric.
    /// let s = Structure::new(3, 3, vec![0, 1, 3, 5], vec![0, 1, 2, 1, 2], Symmetry::Full).unwrap();
    /// let refused = s.check_symmetric_values(&[1e15, 2.0, 0.5, 1.0, 2.0]);
    /// assert!(matches!(refused, Err(Error::NotSymmetric { row: 2, col: 1, .. })));
    /// ```
    ///
    /// # Errors
    /// [`Error::NotSymmetric`] naming the first unsymmetric entry; [`Error::StructureMismatch`]
    /// for a wrong number of values.
    pub fn check_symmetric_values(&self, values: &[f64]) -> Result<()> {
        self.check_len(values)?;
        if self.symmetry != Symmetry::Full {
            return Ok(());
        }
        let mirror = self.mirror()?;
        for j in 0..self.ncols {
            for k in self.col_ptr()[j]..self.col_ptr()[j + 1] {
                let (a, b) = (values[k], values[mirror[k]]);
                if (a - b).abs() > 1e-10 * a.abs().max(b.abs()) {
                    return Err(Error::NotSymmetric {
                        row: self.row_idx()[k],
                        col: j,
                        value: a,
                        mirror: b,
                    });
                }
            }
        }
        Ok(())
    }

    /// One value per stored entry, or [`Error::StructureMismatch`].
    pub(crate) fn check_len(&self, values: &[f64]) -> Result<()> {
        if values.len() != self.nnz() {
            return Err(Error::StructureMismatch {
                reason: format!(
                    "{} values given for a structure with {} stored entries",
                    values.len(),
                    self.nnz()
                ),
            });
        }
        Ok(())
    }

    /// Checks a values slice for length and finiteness.
    pub(crate) fn check_values(&self, values: &[f64]) -> Result<()> {
        self.check_len(values)?;
        if let Some(k) = first_non_finite(values) {
            let col = self.col_ptr().partition_point(|&p| p <= k) - 1;
            return Err(Error::NonFinite {
                context: "matrix values",
                row: self.row_idx()[k],
                col,
                value: values[k],
            });
        }
        Ok(())
    }
}
