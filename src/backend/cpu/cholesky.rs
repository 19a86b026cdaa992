//! The fast Cholesky backend: faer's low-level sparse LLᵀ / LDLᵀ.
//!
//! The symbolic analysis (AMD ordering, elimination tree, supernodes) is computed once per
//! [`Structure`] and cached there; each factorization only runs the numeric phase into its own
//! value buffer. faer reads the lower triangle (`Side::Lower`), which is exactly what both
//! [`Symmetry::Full`](crate::Symmetry::Full) and [`Symmetry::Lower`](crate::Symmetry::Lower)
//! storage provide.

use std::sync::Arc;

use faer::linalg::cholesky::ldlt::factor::{LdltError, LdltRegularization};
use faer::linalg::cholesky::llt::factor::{LltError, LltRegularization};
use faer::sparse::linalg::cholesky::{LdltRef, LltRef, SymbolicCholesky, SymbolicCholeskyRaw};
use faer::sparse::SparseColMatRef;
use faer::{Conj, Par, Side};
use nalgebra::DMatrix;

use super::check_positive_diagonal;
use super::multifrontal::{FrontError, Multifrontal, Real};
use super::ordering::Analysed;
use crate::error::{Error, Result};
use crate::solve::{check_not_singular, Factorization, Gate, Ordering};
use crate::sparse::Structure;

/// A numeric LLᵀ or LDLᵀ factor sharing its structure's symbolic analysis, with f64 values (the
/// default) or f32 ones ([`Precision::F32`](crate::Precision::F32) and the factor behind
/// [`Precision::Mixed`](crate::Precision::Mixed)).
pub(crate) struct FaerCholesky<T: Real = f64> {
    symbolic: Arc<SymbolicCholesky<usize>>,
    l_values: Vec<T>,
    kind: Kind,
    /// The multifrontal plan when the numeric phase was the crate's own (its solves then run
    /// over the same cut tree).
    plan: Option<Arc<Multifrontal>>,
}

/// Predicted factorization flops above which the numeric factorization runs on the rayon pool.
const PARALLEL_FLOPS: f64 = 1e9;
/// Factor entries × right-hand sides above which solves run in parallel column blocks.
const PARALLEL_SOLVE_WORK: f64 = 1e7;
/// Columns per parallel solve block (4 was measured slower on a 48³ grid: faer's supernodal
/// solve is much more efficient on wider blocks).
const SOLVE_BLOCK: usize = 8;

/// Predicted flops from which LLᵀ runs multifrontally ([`Plan`]) instead of faer's
/// left-looking numeric factorization.
const MULTIFRONTAL_FLOPS: f64 = 1e8;

/// The multifrontal plan of `analysed` (built once, kept beside the analysis), when the factor
/// is large enough to use one.
fn multifrontal_plan(structure: &Structure, analysed: &Analysed) -> Option<Arc<Multifrontal>> {
    if analysed.prediction.flops < MULTIFRONTAL_FLOPS {
        return None;
    }
    analysed
        .multifrontal
        .get_or_init(|| Multifrontal::new(structure, &analysed.symbolic).map(Arc::new))
        .clone()
}

/// The structure's cached faer symbolic Cholesky analysis for `ordering`, with its prediction.
pub(crate) fn symbolic_cholesky(structure: &Structure, ordering: &Ordering) -> Result<Analysed> {
    super::ordering::symbolic(structure, ordering)
}

/// `len` factor values, from the pool when one fits, fallibly allocated: zeros when `zeroed`;
/// otherwise a recycled buffer keeps its old values — for a numeric phase that clears what it
/// uses (the multifrontal one: each front zeroes its block in its own task), so no sequential
/// pass over the factor's memory precedes the parallel fronts.
fn factor_buffer<T: Real>(len: usize, zeroed: bool) -> Result<Vec<T>> {
    match T::pooled(len) {
        Some(mut l_values) => {
            if zeroed {
                l_values.clear();
            } else {
                l_values.truncate(len);
            }
            l_values.resize(len, T::default());
            Ok(l_values)
        }
        None => fresh_factor_buffer(len),
    }
}

/// `len` zeros from the allocator's zeroed memory (pages the kernel clears on first touch — in
/// the multifrontal fronts' tasks, in parallel), or an error when they cannot be allocated.
fn fresh_factor_buffer<T: Real>(len: usize) -> Result<Vec<T>> {
    // Checked first, so that too much fill is an error and not an abort.
    Vec::<T>::new()
        .try_reserve_exact(len)
        .map_err(|_| Error::OutOfMemory {
            what: "the Cholesky factor".into(),
            reason: format!(
            "{:.1} GiB of values is more than can be allocated (too much fill for a direct solver)",
            (len * std::mem::size_of::<T>()) as f64 / f64::powi(1024.0, 3)
        ),
        })?;
    Ok(vec![T::default(); len])
}

/// faer's numeric LDLᵀ into `l_values`; a zero pivot is [`Error::Singular`] at its column.
fn numeric_ldlt<T: Real>(
    symbolic: &SymbolicCholesky<usize>,
    a: SparseColMatRef<'_, usize, T>,
    l_values: &mut [T],
    par: Par,
    original_column: impl Fn(usize) -> usize,
) -> Result<()> {
    let req = symbolic.factorize_numeric_ldlt_scratch::<T>(par, Default::default());
    crate::pool::with_scratch(req, |stack| {
        symbolic.factorize_numeric_ldlt(
            l_values,
            a,
            Side::Lower,
            LdltRegularization::default(),
            par,
            stack,
            Default::default(),
        )
    })
    .map(|_| ())
    .map_err(|LdltError::ZeroPivot { index }| Error::Singular {
        column: Some(original_column(index)),
        reason: format!(
            "LDLᵀ met a zero pivot near column {}",
            original_column(index)
        ),
    })
}

/// faer's numeric (left-looking) LLᵀ into `l_values`.
fn numeric_llt<T: Real>(
    symbolic: &SymbolicCholesky<usize>,
    a: SparseColMatRef<'_, usize, T>,
    l_values: &mut [T],
    par: Par,
    original_column: impl Fn(usize) -> usize,
) -> Result<()> {
    let req = symbolic.factorize_numeric_llt_scratch::<T>(par, Default::default());
    crate::pool::with_scratch(req, |stack| {
        symbolic.factorize_numeric_llt(
            l_values,
            a,
            Side::Lower,
            LltRegularization::default(),
            par,
            stack,
            Default::default(),
        )
    })
    .map(|_| ())
    .map_err(
        |LltError::NonPositivePivot { index }| Error::NotPositiveDefinite {
            column: original_column(index),
            pivot: None,
        },
    )
}

/// A multifrontal failure as the crate's error.
fn front_error(e: FrontError, original_column: impl Fn(usize) -> usize, word: usize) -> Error {
    match e {
        FrontError::NonPositivePivot(index) => Error::NotPositiveDefinite {
            column: original_column(index),
            pivot: None,
        },
        FrontError::OutOfMemory(len) => Error::OutOfMemory {
            what: "a multifrontal update matrix".into(),
            reason: format!(
                "{:.1} GiB for one front's update matrix could not be allocated",
                (len * word) as f64 / f64::powi(1024.0, 3)
            ),
        },
    }
}

/// Which symmetric factorization: LLᵀ (positive definite) or LDLᵀ without pivoting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Llt,
    Ldlt,
}

impl Kind {
    /// The method it reports ([`Factorization::method`]).
    pub(crate) fn method(self) -> crate::solve::Method {
        match self {
            Kind::Llt => crate::solve::Method::Cholesky,
            Kind::Ldlt => crate::solve::Method::Ldlt,
        }
    }
}

impl FaerCholesky {
    /// LLᵀ or LDLᵀ with the automatic ordering.
    pub(crate) fn factor(structure: &Structure, values: &[f64], kind: Kind) -> Result<Self> {
        Self::factor_with(structure, values, kind, &Ordering::Auto)
    }

    /// LLᵀ or LDLᵀ under `ordering`: the structure's cached symbolic analysis, the numeric phase
    /// (multifrontal for large LLᵀ factors, faer's otherwise), then the checks of the pivots
    /// (LDLᵀ growth, cancellation).
    pub(crate) fn factor_with(
        structure: &Structure,
        values: &[f64],
        kind: Kind,
        ordering: &Ordering,
    ) -> Result<Self> {
        let (factor, pivots) = Self::numeric(structure, values, kind, ordering)?;
        if factor.tiny_pivot(structure, values, &pivots).is_some() {
            check_not_singular(structure, values, &factor, Gate::TinyPivot)?;
        }
        Ok(factor)
    }
}

impl FaerCholesky<f32> {
    /// LLᵀ or LDLᵀ in f32 under `ordering`, sharing the f64 factorizations' symbolic analysis
    /// (A's values rounded to f32). A pivot that lost all its single-precision digits
    /// (|d_j| ≤ n·ε₃₂·|a_jj|) is [`Error::Singular`] naming its column: the matrix is singular to
    /// single precision, and no f32 factor of it can be trusted.
    pub(crate) fn factor_single(
        structure: &Structure,
        values: &[f64],
        kind: Kind,
        ordering: &Ordering,
    ) -> Result<Self> {
        let (factor, pivots) = Self::numeric(structure, values, kind, ordering)?;
        if let Some(k) = factor.tiny_pivot(structure, values, &pivots) {
            let column = factor.original_column(k);
            return Err(Error::Singular {
                column: Some(column),
                reason: format!(
                    "the pivot of column {column} lost all its single-precision digits (|pivot| = {:e}): the matrix is singular to f32 precision",
                    pivots[k].abs()
                ),
            });
        }
        Ok(factor)
    }

    /// Solves every column of the f64 `rhs` through this f32 factor (rounded in, widened out).
    pub(crate) fn solve_f64(&self, rhs: &mut DMatrix<f64>) {
        let (n, k) = rhs.shape();
        let mut single: Vec<f32> = rhs.iter().map(|&v| v as f32).collect();
        self.solve_slice(&mut single, n, k);
        for (d, s) in rhs.iter_mut().zip(&single) {
            *d = f64::from(*s);
        }
    }
}

impl<T: Real> FaerCholesky<T> {
    /// The numeric phase under `ordering` with the pivot growth check, without the cancellation
    /// check (see [`FaerCholesky::factor_with`] and [`FaerCholesky::factor_single`]); returns
    /// the factor and its pivots (the diagonal, read once for both checks).
    fn numeric(
        structure: &Structure,
        values: &[f64],
        kind: Kind,
        ordering: &Ordering,
    ) -> Result<(Self, Vec<f64>)> {
        if kind == Kind::Llt {
            check_positive_diagonal(structure, values)?;
        }
        let analysed = symbolic_cholesky(structure, ordering)?;
        let (symbolic, prediction) = (&analysed.symbolic, analysed.prediction);
        let original_column = |index: usize| {
            symbolic
                .perm()
                .map_or(index, |p| p.arrays().0[index.min(p.len() - 1)])
        };
        let plan = match kind {
            Kind::Llt => multifrontal_plan(structure, &analysed),
            Kind::Ldlt => None,
        };
        let mut l_values = factor_buffer::<T>(symbolic.len_val(), plan.is_none())?;
        // Large (3D-like) factors use the rayon pool's threads; small ones stay sequential,
        // where threading costs more than it saves.
        let par = if prediction.flops >= PARALLEL_FLOPS {
            Par::rayon(0)
        } else {
            Par::Seq
        };
        match (kind, plan.as_ref()) {
            (Kind::Llt, Some(mf)) => mf
                .plan
                .factor(values, &mut l_values, T::workspace(mf))
                .map_err(|e| front_error(e, original_column, std::mem::size_of::<T>()))?,
            (kind, _) => {
                let cast = T::cast(values);
                let a = SparseColMatRef::new(structure.faer_pattern(), &cast[..]);
                match kind {
                    Kind::Ldlt => numeric_ldlt(symbolic, a, &mut l_values, par, original_column)?,
                    Kind::Llt => numeric_llt(symbolic, a, &mut l_values, par, original_column)?,
                }
            }
        }
        let factor = FaerCholesky {
            symbolic: symbolic.clone(),
            l_values,
            kind,
            plan,
        };
        let pivots = factor.factor_diagonal();
        if kind == Kind::Ldlt {
            factor.check_pivot_growth(values, &pivots, original_column)?;
        }
        Ok((factor, pivots))
    }

    /// The original column of permuted column `index`.
    fn original_column(&self, index: usize) -> usize {
        self.symbolic
            .perm()
            .map_or(index, |p| p.arrays().0[index.min(p.len() - 1)])
    }

    /// The diagonal of the stored factor, in elimination order (D for LDLᵀ).
    fn factor_diagonal(&self) -> Vec<f64> {
        let v = &self.l_values;
        match self.symbolic.raw() {
            SymbolicCholeskyRaw::Simplicial(s) => {
                let cp = s.col_ptr();
                (0..s.nrows()).map(|j| v[cp[j]].to_f64()).collect()
            }
            SymbolicCholeskyRaw::Supernodal(s) => {
                let (begin, end) = (s.supernode_begin(), s.supernode_end());
                let vp = s.col_ptr_for_val();
                let pattern_len = s.nnz_per_super();
                let mut d = Vec::with_capacity(s.nrows());
                for sn in 0..s.n_supernodes() {
                    let width = end[sn] - begin[sn];
                    let height = width + pattern_len[sn];
                    d.extend((0..width).map(|c| v[vp[sn] + c * height + c].to_f64()));
                }
                d
            }
        }
    }

    /// LDLᵀ without pivoting is stable only while D stays bounded by A: element growth
    /// max|d_j| / max|a_ij| above 1e8 means a tiny pivot wiped out ~8 digits (SPD matrices have
    /// growth ≤ 1). Reported as [`Error::UnstablePivot`] naming the tiny pivot's column.
    fn check_pivot_growth(
        &self,
        values: &[f64],
        d: &[f64],
        original_column: impl Fn(usize) -> usize,
    ) -> Result<()> {
        const MAX_GROWTH: f64 = 1e8;
        let a_max = values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let d_max = d.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        if a_max == 0.0 || d_max <= MAX_GROWTH * a_max {
            return Ok(());
        }
        let (j, pivot) = d
            .iter()
            .copied()
            .enumerate()
            .min_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .unwrap_or((0, 0.0));
        Err(Error::UnstablePivot {
            column: original_column(j),
            pivot,
            growth: d_max / a_max,
        })
    }

    /// A pivot that lost (nearly) all its digits to cancellation — |d_j| ≤ τ·|a_jj|, d_j the
    /// pivot of column j (l_jj² for LLᵀ), τ = n·ε for f64 factors and √n·ε₃₂ for f32 ones —
    /// hints at a matrix singular to working precision (a positive semidefinite Laplacian, say,
    /// whose last pivot is rounding noise): the first such pivot's permuted column, if any. For
    /// f64 the condition estimate of the equilibrated matrix then decides ([`Error::Singular`]
    /// when it is ≥ 1/ε). The test is free when no pivot is that small, the common case.
    fn tiny_pivot(&self, structure: &Structure, values: &[f64], pivots: &[f64]) -> Option<usize> {
        let (cp, ri) = (structure.col_ptr(), structure.row_idx());
        // |a_jj| by a binary search in column j's sorted rows (no pass over A); a zero or absent
        // diagonal compares against max|a_ij|, computed only then.
        let mut a_max = None;
        let mut scale = |j: usize| {
            let rows = &ri[cp[j]..cp[j + 1]];
            match rows.binary_search(&j).map(|k| values[cp[j] + k].abs()) {
                Ok(a) if a > 0.0 => a,
                _ => {
                    *a_max.get_or_insert_with(|| values.iter().fold(0.0f64, |m, v| m.max(v.abs())))
                }
            }
        };
        let n = structure.nrows() as f64;
        let threshold = if T::EPSILON < f64::from(f32::EPSILON) {
            n * T::EPSILON
        } else {
            n.sqrt() * T::EPSILON
        };
        pivots.iter().enumerate().position(|(k, &d)| {
            let pivot = match self.kind {
                Kind::Ldlt => d.abs(),
                Kind::Llt => d * d,
            };
            pivot <= threshold * scale(self.original_column(k))
        })
    }

    /// The shared symbolic analysis.
    #[cfg_attr(not(any(test, feature = "cuda")), allow(dead_code))]
    pub(crate) fn symbolic(&self) -> &SymbolicCholesky<usize> {
        &self.symbolic
    }

    /// Solves the `k` columns of the column-major `n × k` `data`. Large multi-RHS solves
    /// (factor entries × columns ≥ 1e7) are split into fixed blocks of [`SOLVE_BLOCK`] columns
    /// solved in parallel: the blocks do not depend on the thread count, so the results are the
    /// same on any number of threads.
    pub(crate) fn solve_slice(&self, data: &mut [T], n: usize, k: usize) {
        if k > SOLVE_BLOCK && self.l_values.len() as f64 * k as f64 >= PARALLEL_SOLVE_WORK {
            use rayon::prelude::*;
            data.par_chunks_mut(n * SOLVE_BLOCK).for_each(|block| {
                let cols = block.len() / n.max(1);
                self.solve_block(faer::MatMut::from_column_major_slice_mut(block, n, cols));
            });
        } else {
            self.solve_block(faer::MatMut::from_column_major_slice_mut(data, n, k));
        }
    }

    fn solve_block(&self, rhs: faer::MatMut<'_, T>) {
        if let Some(Multifrontal { plan, .. }) = self.plan.as_deref() {
            let permutation = self.symbolic.perm().map(|p| p.arrays().0);
            plan.solve_in_place(&self.l_values, permutation, rhs);
            return;
        }
        let par = Par::Seq;
        let k = rhs.ncols();
        crate::pool::with_scratch(self.symbolic.solve_in_place_scratch::<T>(k, par), |stack| {
            if self.kind == Kind::Ldlt {
                LdltRef::new(&self.symbolic, &self.l_values).solve_in_place_with_conj(
                    Conj::No,
                    rhs,
                    par,
                    stack,
                );
            } else {
                LltRef::new(&self.symbolic, &self.l_values).solve_in_place_with_conj(
                    Conj::No,
                    rhs,
                    par,
                    stack,
                );
            }
        });
    }

    /// The dimension n.
    pub(crate) fn n(&self) -> usize {
        self.symbolic.nrows()
    }

    /// Which factorization this is (LLᵀ or LDLᵀ).
    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }

    /// The description shared by both precisions.
    pub(crate) fn describe_as(&self, precision: &str) -> String {
        let kind = match self.symbolic.raw() {
            SymbolicCholeskyRaw::Simplicial(_) => "simplicial",
            SymbolicCholeskyRaw::Supernodal(_) => "supernodal",
        };
        let name = match (self.kind, self.plan.is_some()) {
            (Kind::Ldlt, _) => "LDLᵀ",
            (Kind::Llt, true) => "LLᵀ, multifrontal numeric phase",
            (Kind::Llt, false) => "LLᵀ",
        };
        format!(
            "faer {name} ({kind}), {} {precision} factor values",
            self.l_values.len()
        )
    }

    /// The factor's bytes: values and the symbolic analysis's indices.
    pub(crate) fn bytes(&self) -> usize {
        let word = std::mem::size_of::<usize>();
        let indices = match self.symbolic.raw() {
            SymbolicCholeskyRaw::Simplicial(s) => s.col_ptr().len() + s.row_idx().len(),
            SymbolicCholeskyRaw::Supernodal(s) => {
                s.supernode_begin().len()
                    + s.supernode_end().len()
                    + s.col_ptr_for_row_idx().len()
                    + s.col_ptr_for_val().len()
                    + s.row_idx().len()
            }
        };
        let perm = self.symbolic.perm().map_or(0, |p| 2 * p.len());
        self.l_values.len() * std::mem::size_of::<T>() + (indices + perm) * word
    }

    /// LLᵀ: 2 Σ log l_jj (det > 0); LDLᵀ: Σ log |d_j| with the sign of Π d_j (sums in f64).
    pub(crate) fn log_det(&self) -> crate::solve::LogDet {
        let d = self.factor_diagonal();
        match self.kind {
            Kind::Llt => crate::solve::LogDet {
                log_abs: 2.0 * d.iter().map(|v| v.ln()).sum::<f64>(),
                sign: 1.0,
            },
            Kind::Ldlt => crate::solve::LogDet {
                log_abs: d.iter().map(|v| v.abs().ln()).sum(),
                sign: if d.iter().filter(|v| **v < 0.0).count() % 2 == 0 {
                    1.0
                } else {
                    -1.0
                },
            },
        }
    }
}

impl FaerCholesky {
    /// Z = A⁻¹ on the factor's pattern, in its value layout: over the multifrontal plan's
    /// parallel schedule when the numeric phase was multifrontal, supernode by supernode
    /// otherwise.
    fn inverse_values(&self) -> Result<Vec<f64>> {
        match &self.plan {
            Some(mf) => {
                let mut z = factor_buffer(self.l_values.len(), true)?;
                mf.plan.selected_inverse(&self.l_values, &mut z);
                Ok(z)
            }
            None => super::selinv::selected_inverse(&self.symbolic, &self.l_values, self.kind),
        }
    }

    /// The numeric factor values in faer's layout.
    #[cfg_attr(not(any(test, feature = "cuda")), allow(dead_code))]
    pub(crate) fn values(&self) -> &[f64] {
        &self.l_values
    }

    /// Solves every column of `rhs` in place.
    fn solve(&self, rhs: &mut DMatrix<f64>) {
        let (n, k) = rhs.shape();
        self.solve_slice(rhs.as_mut_slice(), n, k);
    }
}

impl<T: Real> Drop for FaerCholesky<T> {
    fn drop(&mut self) {
        T::recycle(std::mem::take(&mut self.l_values));
    }
}

impl Factorization for FaerCholesky {
    fn solve_in_place(&self, rhs: &mut DMatrix<f64>) -> Result<()> {
        self.solve(rhs);
        Ok(())
    }
    /// A is symmetric, so Aᵀ = A.
    fn solve_transpose_in_place(&self, rhs: &mut DMatrix<f64>) -> Result<()> {
        self.solve(rhs);
        Ok(())
    }
    fn dim(&self) -> usize {
        self.symbolic.nrows()
    }
    fn stored_bytes(&self) -> Option<usize> {
        Some(self.bytes())
    }
    fn log_determinant(&self) -> Result<crate::solve::LogDet> {
        Ok(self.log_det())
    }
    fn selected_inverse(&self, structure: &Structure) -> Result<Vec<f64>> {
        if structure.nrows() != self.dim() {
            return Err(Error::StructureMismatch {
                reason: format!(
                    "a {}×{} structure for a factor of dimension {}",
                    structure.nrows(),
                    structure.ncols(),
                    self.dim()
                ),
            });
        }
        let z = self.inverse_values()?;
        let out = super::selinv::at_entries(&self.symbolic, &z, structure);
        crate::pool::recycle(z);
        out
    }
    fn sample_in_place(&self, z: &mut DMatrix<f64>) -> Result<()> {
        super::selinv::sample(&self.symbolic, &self.l_values, self.kind, z)
    }
    fn diag_inverse(&self) -> Result<Vec<f64>> {
        let z = self.inverse_values()?;
        let d = super::selinv::diagonal(&self.symbolic, &z);
        crate::pool::recycle(z);
        Ok(d)
    }
    fn method(&self) -> Option<crate::solve::Method> {
        Some(self.kind.method())
    }
    fn describe(&self) -> String {
        self.describe_as("f64")
    }
}
