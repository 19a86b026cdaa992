//! The LU backend: faer's sparse LU (partial pivoting) with a true transpose solve for the
//! adjoint, so non-symmetric systems get Aᵀ, never A, in the backward pass.
//!
//! Column orderings. With partial pivoting, L and U fit in the Cholesky factor of AᵀA under the
//! column ordering, so orderings are of the columns' intersection graph (columns adjacent when
//! they share a row). `Auto` and `Amd` are faer's own analysis, COLAMD (approximate minimum
//! degree on that graph without forming it); `NestedDissection` is METIS on that graph, formed;
//! `Natural` and `Custom` take the columns as given. Those three run faer's supernodal LU
//! analysis directly under the permutation (column elimination tree, its postorder, AᵀA column
//! counts, supernodal structure), since faer's `factorize_symbolic_lu` always computes COLAMD.
//! Measured on a 32³ grid (`seed_benchmark --backend lu`): numeric LU 1.95 s with COLAMD, 0.97 s
//! with nested dissection; AMD on A + Aᵀ instead took 7.4 s and AMD on AᵀA 2.7 s, so `Amd`
//! means COLAMD here.
//!
//! faer's numeric LU does not report numerically zero pivots (its solves return NaN/∞, or huge
//! values when the pivot is of rounding size), so this wrapper checks for empty rows and columns
//! before factoring, probes every factorization for a matrix singular to working precision (one
//! solve; the condition estimate of the equilibrated matrix when that solve is large) and checks
//! for non-finite results after every solve, turning all three into [`Error::Singular`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use faer::dyn_stack::{MemBuffer, MemStack, StackReq};
use faer::perm::PermRef;
use faer::sparse::linalg::lu::supernodal::{
    factorize_supernodal_numeric_lu, factorize_supernodal_numeric_lu_scratch,
    factorize_supernodal_symbolic_lu, factorize_supernodal_symbolic_lu_scratch, SupernodalLu,
    SymbolicSupernodalLu,
};
use faer::sparse::linalg::lu::{
    factorize_symbolic_lu, LuRef, LuSymbolicParams, NumericLu, SymbolicLu,
};
use faer::sparse::linalg::qr::{
    col_etree, col_etree_scratch, column_counts_aat_scratch, column_counts_ata, postorder,
    postorder_scratch,
};
use faer::sparse::linalg::LuError;
use faer::sparse::{SparseColMatRef, SymbolicSparseColMatRef};
use faer::{Conj, Par};
use nalgebra::DMatrix;

use super::analysis::{faer_error, full_pattern, lock, FullPattern};
use super::faer_view;
use crate::error::{first_non_finite, Error, Result};
use crate::solve::{check_not_singular, Direction, Factorization, Gate, Ordering};
use crate::sparse::Structure;

/// The symbolic LU of a structure's full pattern under one column ordering.
pub(crate) struct LuAnalysis {
    full: Arc<FullPattern>,
    kind: Symbolic,
    /// Why the requested ordering was replaced by COLAMD, if it was.
    note: Option<String>,
}

enum Symbolic {
    /// faer's own analysis (COLAMD).
    Colamd(SymbolicLu<usize>),
    /// faer's supernodal analysis under a column permutation of ours, with Aᵀ's pattern (the
    /// numeric factorization reads both) and where each of its entries comes from in A.
    Ordered {
        fwd: Vec<usize>,
        inv: Vec<usize>,
        symbolic: SymbolicSupernodalLu<usize>,
        transpose: Transpose,
    },
}

/// Aᵀ's pattern and, for each of its entries, the index of the same entry in A's values.
struct Transpose {
    col_ptr: Vec<usize>,
    row_idx: Vec<usize>,
    source: Vec<usize>,
}

impl Transpose {
    fn of(n: usize, col_ptr: &[usize], row_idx: &[usize]) -> Transpose {
        let (col_ptr, row_idx, source) = crate::sparse::transpose_pattern(n, col_ptr, row_idx);
        Transpose {
            col_ptr,
            row_idx,
            source,
        }
    }

    fn pattern(&self, n: usize) -> SymbolicSparseColMatRef<'_, usize> {
        SymbolicSparseColMatRef::new_checked(n, n, &self.col_ptr, None, &self.row_idx)
    }
}

impl LuAnalysis {
    fn pattern(&self, n: usize) -> SymbolicSparseColMatRef<'_, usize> {
        // Built from a validated Structure: sorted, unique, in range.
        SymbolicSparseColMatRef::new_checked(n, n, &self.full.col_ptr, None, &self.full.row_idx)
    }
}

/// A numeric LU factor.
pub(crate) struct FaerLu {
    analysis: Arc<LuAnalysis>,
    numeric: Numeric,
    n: usize,
}

enum Numeric {
    Colamd(NumericLu<usize, f64>),
    Ordered {
        lu: SupernodalLu<usize, f64>,
        row_fwd: Vec<usize>,
        row_inv: Vec<usize>,
    },
}

fn singular(column: usize, reason: String) -> Error {
    Error::Singular {
        column: Some(column),
        reason,
    }
}

/// The structure's LU analyses, by column ordering.
#[derive(Default)]
struct LuAnalyses(Mutex<HashMap<Ordering, Arc<LuAnalysis>>>);

/// The structure's cached symbolic LU under `ordering` (computed, and counted, once).
pub(crate) fn analyze(structure: &Structure, ordering: &Ordering) -> Result<Arc<LuAnalysis>> {
    // `Amd` is COLAMD for LU, the same analysis as `Auto`.
    let ordering = match ordering {
        Ordering::Amd => &Ordering::Auto,
        other => other,
    };
    let cache = super::analysis::slot::<LuAnalyses>(structure);
    let found = lock(&cache.0).get(ordering).cloned();
    if let Some(found) = found {
        return Ok(found);
    }
    let computed = Arc::new(analyze_with(structure, ordering)?);
    structure.record_analysis();
    let stored = lock(&cache.0)
        .entry(ordering.clone())
        .or_insert(computed)
        .clone();
    Ok(stored)
}

fn analyze_with(structure: &Structure, ordering: &Ordering) -> Result<LuAnalysis> {
    let n = structure.nrows();
    let full = full_pattern(structure)?;
    let pattern = SymbolicSparseColMatRef::new_checked(n, n, &full.col_ptr, None, &full.row_idx);
    let colamd = |full, note| -> Result<LuAnalysis> {
        let symbolic = factorize_symbolic_lu(pattern, LuSymbolicParams::default())
            .map_err(faer_error("symbolic LU"))?;
        Ok(LuAnalysis {
            full,
            kind: Symbolic::Colamd(symbolic),
            note,
        })
    };
    let (fwd, inv) = match ordering {
        Ordering::Auto | Ordering::Amd => return colamd(full.clone(), None),
        Ordering::Natural => ((0..n).collect(), (0..n).collect()),
        Ordering::ReverseCuthillMcKee => {
            super::ordering::checked_permutation(&super::rcm::order(&full), n)?
        }
        Ordering::Custom(perm) => super::ordering::checked_permutation(perm, n)?,
        Ordering::NestedDissection => {
            let (col_ptr, row_idx) = match column_graph(n, &full)? {
                ColumnGraph::Formed(col_ptr, row_idx) => (col_ptr, row_idx),
                ColumnGraph::OverBudget { bound, nnz } => {
                    let note = format!(
                        "nested dissection replaced by COLAMD: the columns' intersection graph would hold up to {bound} entries, more than {COLUMN_GRAPH_BUDGET} × nnz(A) = {} (dense rows)",
                        COLUMN_GRAPH_BUDGET.saturating_mul(nnz)
                    );
                    return colamd(full.clone(), Some(note));
                }
            };
            let fwd = super::metis::order(n, &col_ptr, &row_idx, None)?;
            super::ordering::checked_permutation(&fwd, n)?
        }
    };
    // Aᵀ: its pattern for the column counts, its values for each numeric factorization.
    let transpose = Transpose::of(n, &full.col_ptr, &full.row_idx);
    let col_perm = PermRef::new_checked(&fwd, &inv, n);
    let req = StackReq::any_of(&[
        col_etree_scratch::<usize>(n, n),
        postorder_scratch::<usize>(n),
        column_counts_aat_scratch::<usize>(n, n),
        factorize_supernodal_symbolic_lu_scratch::<usize>(n, n),
    ]);
    let mut buffer = MemBuffer::try_new(req).map_err(|_| Error::OutOfMemory {
        what: format!("symbolic LU workspace for {n} columns"),
        reason: "the allocator refused".into(),
    })?;
    let stack = MemStack::new(&mut buffer);
    let mut etree = vec![0usize; n];
    let etree = col_etree(pattern, Some(col_perm), &mut etree, stack);
    let mut post = vec![0usize; n];
    postorder(&mut post, etree, stack);
    let (mut col_counts, mut min_col) = (vec![0usize; n], vec![0usize; n]);
    column_counts_ata(
        &mut col_counts,
        &mut min_col,
        transpose.pattern(n),
        Some(col_perm),
        etree,
        &post,
        stack,
    );
    let symbolic = factorize_supernodal_symbolic_lu(
        pattern,
        Some(col_perm),
        &min_col,
        etree,
        &col_counts,
        stack,
        Default::default(),
    )
    .map_err(faer_error("supernodal symbolic LU"))?;
    Ok(LuAnalysis {
        full,
        kind: Symbolic::Ordered {
            fwd,
            inv,
            symbolic,
            transpose,
        },
        note: None,
    })
}

/// Nested dissection for LU forms the columns' intersection graph only while Σ_r (entries in row
/// r)² — an upper bound on its entries — is at most this many times nnz(A): 27-point stencils
/// need 27, 3D elasticity 81, and one dense row of n entries n.
const COLUMN_GRAPH_BUDGET: usize = 256;

enum ColumnGraph {
    Formed(Vec<usize>, Vec<usize>),
    /// Not formed: its bound and nnz(A).
    OverBudget {
        bound: usize,
        nnz: usize,
    },
}

/// The pattern of AᵀA: columns i and j are adjacent when they share a row (sorted), or
/// [`ColumnGraph::OverBudget`] when it could exceed [`COLUMN_GRAPH_BUDGET`] × nnz(A).
fn column_graph(n: usize, a: &FullPattern) -> Result<ColumnGraph> {
    let t = Transpose::of(n, &a.col_ptr, &a.row_idx);
    let nnz = a.row_idx.len();
    let bound = (0..n)
        .map(|r| t.col_ptr[r + 1] - t.col_ptr[r])
        .fold(0usize, |acc, len| {
            acc.saturating_add(len.saturating_mul(len))
        });
    if bound > COLUMN_GRAPH_BUDGET.saturating_mul(nnz.max(1)) {
        return Ok(ColumnGraph::OverBudget { bound, nnz });
    }
    let mut mark = vec![usize::MAX; n];
    let mut col_ptr = Vec::with_capacity(n + 1);
    let mut row_idx = Vec::new();
    row_idx
        .try_reserve_exact(bound)
        .map_err(|_| Error::OutOfMemory {
            what: "the columns' intersection graph for nested dissection".into(),
            reason: format!("{bound} entries could not be allocated"),
        })?;
    col_ptr.push(0);
    for j in 0..n {
        let start = row_idx.len();
        for &r in &a.row_idx[a.col_ptr[j]..a.col_ptr[j + 1]] {
            // Row r of A: the columns of Aᵀ's column r.
            for &c in &t.row_idx[t.col_ptr[r]..t.col_ptr[r + 1]] {
                if mark[c] != j {
                    mark[c] = j;
                    row_idx.push(c);
                }
            }
        }
        row_idx[start..].sort_unstable();
        col_ptr.push(row_idx.len());
    }
    Ok(ColumnGraph::Formed(col_ptr, row_idx))
}

impl FaerLu {
    pub(crate) fn factor(
        structure: &Structure,
        values: &[f64],
        ordering: &Ordering,
    ) -> Result<Self> {
        let n = structure.nrows();
        let analysis = analyze(structure, ordering)?;
        let full_values = analysis.full.values(values);
        check_nonzero_lines(&analysis.full, &full_values, n)?;
        let a = SparseColMatRef::new(analysis.pattern(n), &full_values);
        let par = Par::Seq;
        let numeric = match &analysis.kind {
            Symbolic::Colamd(symbolic) => {
                let mut numeric = NumericLu::new();
                let req = symbolic.factorize_numeric_lu_scratch::<f64>(par, Default::default());
                crate::pool::with_scratch(req, |stack| {
                    symbolic
                        .factorize_numeric_lu(&mut numeric, a, par, stack, Default::default())
                        .map(|_| ())
                })
                .map_err(lu_error)?;
                Numeric::Colamd(numeric)
            }
            Symbolic::Ordered {
                fwd,
                inv,
                symbolic,
                transpose,
            } => {
                let t_values: Vec<f64> = transpose.source.iter().map(|&k| full_values[k]).collect();
                let at = SparseColMatRef::new(transpose.pattern(n), &t_values);
                let mut lu = SupernodalLu::new();
                let (mut row_fwd, mut row_inv) = (vec![0usize; n], vec![0usize; n]);
                let req = factorize_supernodal_numeric_lu_scratch::<usize, f64>(
                    symbolic,
                    Default::default(),
                );
                crate::pool::with_scratch(req, |stack| {
                    factorize_supernodal_numeric_lu(
                        &mut row_fwd,
                        &mut row_inv,
                        &mut lu,
                        a,
                        at,
                        PermRef::new_checked(fwd, inv, n),
                        symbolic,
                        par,
                        stack,
                        Default::default(),
                    )
                })
                .map_err(lu_error)?;
                Numeric::Ordered {
                    lu,
                    row_fwd,
                    row_inv,
                }
            }
        };
        let lu = FaerLu {
            analysis,
            numeric,
            n,
        };
        // faer's LU completes on numerically singular matrices (a pivot of rounding size): a
        // probing solve, then the condition estimate when it is large, turn that into an error.
        check_not_singular(structure, values, &lu, Gate::Probe)?;
        Ok(lu)
    }

    fn solve(&self, rhs: &mut DMatrix<f64>, direction: Direction) -> Result<()> {
        let par = Par::Seq;
        let k = rhs.ncols();
        let n = self.n;
        match (&self.analysis.kind, &self.numeric) {
            (Symbolic::Colamd(symbolic), Numeric::Colamd(numeric)) => {
                let lu = LuRef::new_unchecked(symbolic, numeric);
                crate::pool::with_scratch(
                    symbolic.solve_in_place_scratch::<f64>(k, par),
                    |stack| {
                        if direction == Direction::Transpose {
                            lu.solve_transpose_in_place_with_conj(
                                Conj::No,
                                faer_view(rhs),
                                par,
                                stack,
                            );
                        } else {
                            lu.solve_in_place_with_conj(Conj::No, faer_view(rhs), par, stack);
                        }
                    },
                );
            }
            (
                Symbolic::Ordered { fwd, inv, .. },
                Numeric::Ordered {
                    lu,
                    row_fwd,
                    row_inv,
                },
            ) => {
                use faer::sparse::linalg::lu::supernodal::{
                    solve_in_place_scratch, solve_transpose_in_place_scratch,
                };
                let (rows, cols) = (
                    PermRef::new_checked(row_fwd, row_inv, n),
                    PermRef::new_checked(fwd, inv, n),
                );
                let req = solve_in_place_scratch::<usize, f64>(n, k, par)
                    .or(solve_transpose_in_place_scratch::<usize, f64>(n, k, par));
                crate::pool::with_scratch(req, |stack| {
                    if direction == Direction::Transpose {
                        lu.solve_transpose_in_place_with_conj(
                            rows,
                            cols,
                            Conj::No,
                            faer_view(rhs),
                            par,
                            stack,
                        );
                    } else {
                        lu.solve_in_place_with_conj(
                            rows,
                            cols,
                            Conj::No,
                            faer_view(rhs),
                            par,
                            stack,
                        );
                    }
                });
            }
            _ => unreachable!("an analysis and its factor are of the same kind"),
        }
        match first_non_finite(rhs.as_slice()) {
            None => Ok(()),
            Some(k) => Err(Error::Singular {
                column: None,
                reason: format!(
                    "the LU {} solve produced a non-finite value at row {}: a zero pivot, or a solution beyond the floating-point range",
                    match direction {
                        Direction::Transpose => "transpose",
                        Direction::Forward => "forward",
                    },
                    k % self.n.max(1)
                ),
            }),
        }
    }
}

/// faer 0.24's sparse LU keeps L's and U's values private (no accessor for U's diagonal or the
/// supernodes), so neither log |det A| nor a selected inverse can be read from it.
fn lu_has_no_determinant() -> Error {
    Error::Unsupported {
        reason: "log |det A| and the selected inverse need the factor's values, and faer's \
                 sparse LU (0.24) keeps L and U private; a symmetric matrix has both through \
                 Solver::cholesky() or Solver::ldlt() (indefinite)"
            .into(),
    }
}

fn lu_error(e: LuError) -> Error {
    match e {
        LuError::SymbolicSingular { index } => singular(
            index,
            format!("structurally singular: no pivot found at step {index}"),
        ),
        LuError::Generic(g) => Error::FactorizationFailed {
            backend: "faer LU".into(),
            reason: format!("{g:?}"),
        },
    }
}

/// A column or row whose stored values are all zero makes A singular; name it.
fn check_nonzero_lines(full: &FullPattern, values: &[f64], n: usize) -> Result<()> {
    let mut row_has = vec![false; n];
    for j in 0..n {
        let mut col_has = false;
        for k in full.col_ptr[j]..full.col_ptr[j + 1] {
            if values[k] != 0.0 {
                col_has = true;
                row_has[full.row_idx[k]] = true;
            }
        }
        if !col_has {
            return Err(singular(j, format!("column {j} has no nonzero entry")));
        }
    }
    match row_has.iter().position(|&h| !h) {
        Some(i) => Err(singular(i, format!("row {i} has no nonzero entry"))),
        None => Ok(()),
    }
}

impl Factorization for FaerLu {
    fn solve_in_place(&self, rhs: &mut DMatrix<f64>) -> Result<()> {
        self.solve(rhs, Direction::Forward)
    }
    fn solve_transpose_in_place(&self, rhs: &mut DMatrix<f64>) -> Result<()> {
        self.solve(rhs, Direction::Transpose)
    }
    fn dim(&self) -> usize {
        self.n
    }
    fn log_determinant(&self) -> Result<crate::solve::LogDet> {
        Err(lu_has_no_determinant())
    }
    fn selected_inverse(&self, _structure: &crate::sparse::Structure) -> Result<Vec<f64>> {
        Err(lu_has_no_determinant())
    }
    fn diag_inverse(&self) -> Result<Vec<f64>> {
        Err(lu_has_no_determinant())
    }
    fn describe(&self) -> String {
        let ordering = match &self.analysis.kind {
            Symbolic::Colamd(_) => "COLAMD",
            Symbolic::Ordered { .. } => "given column ordering, supernodal",
        };
        match &self.analysis.note {
            Some(note) => format!(
                "faer LU ({ordering}, partial pivoting), n = {} ({note})",
                self.n
            ),
            None => format!("faer LU ({ordering}, partial pivoting), n = {}", self.n),
        }
    }
    fn method(&self) -> Option<crate::solve::Method> {
        Some(crate::solve::Method::Lu)
    }
}
