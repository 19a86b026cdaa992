//! The reference Cholesky backend: nalgebra-sparse's `CscCholesky` applied to P A Pᵀ, where P is
//! faer's AMD ordering of the full pattern (nalgebra-sparse has no ordering of its own and needs
//! both triangles stored). The permuted pattern and nalgebra-sparse's symbolic factorization are
//! cached on the [`Structure`]; each factorization clones that symbolic part and runs only the
//! numeric phase.
//!
//! nalgebra-sparse 0.11's symbolic analysis costs O(n²) (≈20 s at n = 2²⁰), so this backend is for
//! moderate sizes and for cross-checking the fast backend.

use std::sync::Arc;

use nalgebra::DMatrix;
use nalgebra_sparse::factorization::{CscCholesky, CscSymbolicCholesky};
use nalgebra_sparse::pattern::SparsityPattern;

use super::analysis::{amd_order, cached, full_pattern};
use super::check_positive_diagonal;
use super::cholesky::FaerCholesky;
use crate::error::{Error, Result};
use crate::solve::Factorization;
use crate::sparse::{Structure, Symmetry};

/// The permutation, the permuted pattern and its nalgebra-sparse symbolic factorization.
pub(crate) struct ReferenceAnalysis {
    /// `perm_inv[old] = new`.
    perm_inv: Vec<usize>,
    /// `source[p]` = stored value feeding permuted entry `p`.
    source: Vec<usize>,
    symbolic: CscSymbolicCholesky,
}

/// A numeric reference Cholesky factor.
pub(crate) struct ReferenceCholesky {
    analysis: Arc<ReferenceAnalysis>,
    factor: CscCholesky<f64>,
}

fn analyze(structure: &Structure) -> Result<ReferenceAnalysis> {
    let n = structure.nrows();
    let full = full_pattern(structure)?;
    let (_, perm_inv) = amd_order(n, &full.col_ptr, &full.row_idx)?;
    // B = P A Pᵀ: B[perm_inv[i], perm_inv[j]] = A[i, j].
    let mut pairs = Vec::with_capacity(full.row_idx.len());
    for j in 0..n {
        for k in full.col_ptr[j]..full.col_ptr[j + 1] {
            pairs.push((perm_inv[full.row_idx[k]], perm_inv[j]));
        }
    }
    let (permuted, slot) = Structure::from_pairs(n, n, &pairs, Symmetry::General)?;
    let mut source = vec![0usize; permuted.nnz()];
    for (f, &p) in slot.iter().enumerate() {
        source[p] = full.source.as_ref().map_or(f, |s| s[f]);
    }
    let sparsity = SparsityPattern::try_from_offsets_and_indices(
        n,
        n,
        permuted.col_ptr().to_vec(),
        permuted.row_idx().to_vec(),
    )
    .map_err(|e| Error::StructureMismatch {
        reason: format!("nalgebra-sparse refused a validated pattern: {e}"),
    })?;
    Ok(ReferenceAnalysis {
        perm_inv,
        source,
        symbolic: CscSymbolicCholesky::factor(sparsity),
    })
}

/// The structure's cached reference analysis.
pub(crate) fn analyze_cached(structure: &Structure) -> Result<Arc<ReferenceAnalysis>> {
    cached(structure, || analyze(structure))
}

impl ReferenceCholesky {
    pub(crate) fn factor(structure: &Structure, values: &[f64]) -> Result<Self> {
        check_positive_diagonal(structure, values)?;
        let analysis = analyze_cached(structure)?;
        let permuted: Vec<f64> = analysis.source.iter().map(|&k| values[k]).collect();
        match CscCholesky::factor_numerical(analysis.symbolic.clone(), &permuted) {
            Ok(factor) => Ok(ReferenceCholesky { analysis, factor }),
            // nalgebra-sparse does not say where the factorization broke down; faer does.
            Err(_) => Err(match FaerCholesky::factor(structure, values, super::cholesky::Kind::Llt) {
                Err(located) => located,
                Ok(_) => Error::Singular {
                    column: None,
                    reason: "nalgebra-sparse found a non-positive pivot (it does not say where) in a matrix faer factors: positive definite only to rounding".into(),
                },
            }),
        }
    }
}

impl Factorization for ReferenceCholesky {
    fn solve_in_place(&self, rhs: &mut DMatrix<f64>) -> Result<()> {
        // x = Pᵀ (P A Pᵀ)⁻¹ P b
        let perm_inv = &self.analysis.perm_inv;
        let mut y = DMatrix::zeros(rhs.nrows(), rhs.ncols());
        for c in 0..rhs.ncols() {
            for (i, &p) in perm_inv.iter().enumerate() {
                y[(p, c)] = rhs[(i, c)];
            }
        }
        self.factor.solve_mut(&mut y);
        for c in 0..rhs.ncols() {
            for (i, &p) in perm_inv.iter().enumerate() {
                rhs[(i, c)] = y[(p, c)];
            }
        }
        Ok(())
    }
    /// A is symmetric, so Aᵀ = A.
    fn solve_transpose_in_place(&self, rhs: &mut DMatrix<f64>) -> Result<()> {
        self.solve_in_place(rhs)
    }
    fn dim(&self) -> usize {
        self.analysis.perm_inv.len()
    }
    fn stored_bytes(&self) -> Option<usize> {
        let l = self.factor.l();
        let word = std::mem::size_of::<usize>();
        Some(
            l.nnz() * (std::mem::size_of::<f64>() + word)
                + (l.ncols() + 1 + self.analysis.perm_inv.len()) * word,
        )
    }
    fn describe(&self) -> String {
        format!(
            "nalgebra-sparse CscCholesky (AMD-permuted), nnz(L) = {}",
            self.factor.l().nnz()
        )
    }
    fn method(&self) -> Option<crate::solve::Method> {
        Some(crate::solve::Method::Cholesky)
    }
}
