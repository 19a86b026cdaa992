//! The CPU implementations: faer's LLᵀ / LDLᵀ / LU, nalgebra-sparse's Cholesky (the reference),
//! the per-structure analysis cache, and the Krylov solvers with their preconditioners.

pub(crate) mod analysis;
pub(crate) mod cholesky;
mod colcounts;
pub(crate) mod csr;
pub(crate) mod iterative;
pub(crate) mod lu;
mod metis;
pub(crate) mod mixed;
pub(crate) mod multifrontal;
pub(crate) mod ordering;
mod rcm;
pub(crate) mod reference;
mod selinv;
pub(crate) mod supervariables;

use nalgebra::DMatrix;

use crate::error::{Error, Result};
use crate::sparse::Structure;

/// Checks the diagonal of a matrix about to be Cholesky-factored: a stored diagonal ≤ 0 or a
/// missing one pins the failing column exactly, with its value.
pub(crate) fn check_positive_diagonal(structure: &Structure, values: &[f64]) -> Result<()> {
    for (j, &k) in structure.diagonal_positions().iter().enumerate() {
        let d = if k == usize::MAX { 0.0 } else { values[k] };
        if d <= 0.0 {
            return Err(Error::NotPositiveDefinite {
                column: j,
                pivot: Some(d),
            });
        }
    }
    Ok(())
}

/// A dense n×k view for faer over a column-major `DMatrix`.
pub(crate) fn faer_view(m: &mut DMatrix<f64>) -> faer::MatMut<'_, f64> {
    let (r, c) = m.shape();
    faer::MatMut::from_column_major_slice_mut(m.as_mut_slice(), r, c)
}
