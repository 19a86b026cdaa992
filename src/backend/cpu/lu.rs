//! The LU backend: faer's sparse LU (COLAMD column ordering, partial pivoting) with a true
//! transpose solve for the adjoint, so non-symmetric systems get Aᵀ, never A, in the backward pass.
//!
//! faer's numeric LU does not report numerically zero pivots (its solves return NaN/∞), so this
//! wrapper checks for empty rows and columns before factoring and for non-finite results after
//! every solve, turning both into [`Error::Singular`].

use std::sync::Arc;

use faer::sparse::linalg::lu::{
    factorize_symbolic_lu, LuRef, LuSymbolicParams, NumericLu, SymbolicLu,
};
use faer::sparse::linalg::LuError;
use faer::sparse::{SparseColMatRef, SymbolicSparseColMatRef};
use faer::{Conj, Par};
use nalgebra::DMatrix;

use super::analysis::{cached, full_pattern, FullPattern};
use super::faer_view;
use crate::error::{first_non_finite, Error, Result};
use crate::solve::Factorization;
use crate::sparse::Structure;

/// The cached symbolic LU of a structure's full pattern.
pub(crate) struct LuAnalysis {
    full: Arc<FullPattern>,
    symbolic: SymbolicLu<usize>,
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
    numeric: NumericLu<usize, f64>,
    n: usize,
}

fn singular(column: usize, reason: String) -> Error {
    Error::Singular {
        column: Some(column),
        reason,
    }
}

/// The structure's cached symbolic LU (COLAMD + elimination structure).
pub(crate) fn analyze(structure: &Structure) -> Result<Arc<LuAnalysis>> {
    let n = structure.nrows();
    cached(structure, || {
        let full = full_pattern(structure)?;
        let pattern =
            SymbolicSparseColMatRef::new_checked(n, n, &full.col_ptr, None, &full.row_idx);
        let symbolic =
            factorize_symbolic_lu(pattern, LuSymbolicParams::default()).map_err(|e| {
                Error::Unsupported {
                    reason: format!("faer symbolic LU failed: {e:?}"),
                }
            })?;
        Ok(LuAnalysis { full, symbolic })
    })
}

impl FaerLu {
    pub(crate) fn factor(structure: &Structure, values: &[f64]) -> Result<Self> {
        let n = structure.nrows();
        let analysis = analyze(structure)?;
        let full_values = analysis.full.values(values);
        check_nonzero_lines(&analysis.full, &full_values, n)?;
        let a = SparseColMatRef::new(analysis.pattern(n), &full_values);
        let par = Par::Seq;
        let mut numeric = NumericLu::new();
        let req = analysis
            .symbolic
            .factorize_numeric_lu_scratch::<f64>(par, Default::default());
        crate::pool::with_scratch(req, |stack| {
            analysis
                .symbolic
                .factorize_numeric_lu(&mut numeric, a, par, stack, Default::default())
        })
        .map_err(|e| match e {
            LuError::SymbolicSingular { index } => singular(
                index,
                format!("structurally singular: no pivot found at step {index}"),
            ),
            LuError::Generic(g) => Error::Unsupported {
                reason: format!("faer LU failed: {g:?}"),
            },
        })?;
        Ok(FaerLu {
            analysis,
            numeric,
            n,
        })
    }

    fn solve(&self, rhs: &mut DMatrix<f64>, transpose: bool) -> Result<()> {
        let par = Par::Seq;
        let symbolic = &self.analysis.symbolic;
        let lu = LuRef::new_unchecked(symbolic, &self.numeric);
        let k = rhs.ncols();
        crate::pool::with_scratch(symbolic.solve_in_place_scratch::<f64>(k, par), |stack| {
            if transpose {
                lu.solve_transpose_in_place_with_conj(Conj::No, faer_view(rhs), par, stack);
            } else {
                lu.solve_in_place_with_conj(Conj::No, faer_view(rhs), par, stack);
            }
        });
        match first_non_finite(rhs.as_slice()) {
            None => Ok(()),
            Some(k) => Err(Error::Singular {
                column: None,
                reason: format!(
                    "LU has a zero pivot: the {} solve produced a non-finite value at row {}",
                    if transpose { "transpose" } else { "forward" },
                    k % self.n.max(1)
                ),
            }),
        }
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
        self.solve(rhs, false)
    }
    fn solve_transpose_in_place(&self, rhs: &mut DMatrix<f64>) -> Result<()> {
        self.solve(rhs, true)
    }
    fn dim(&self) -> usize {
        self.n
    }
    fn describe(&self) -> String {
        format!("faer LU (COLAMD, partial pivoting), n = {}", self.n)
    }
}
