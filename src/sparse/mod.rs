//! Sparse patterns and the linear map from parameters to matrix values.
//!
//! - [`Structure`]: a validated CSC pattern with a [`Symmetry`] flag and cached symbolic analyses.
//! - [`Assembly`]: values = M p + c, the linear map from a parameter vector to the stored values.
//! - [`Dirichlet`]: elimination of prescribed unknowns from an assembled system.
//!
//! The kernels below apply a stored matrix and accumulate the "outer product at stored entries"
//! that every sparse adjoint in the crate reduces to.

mod assembly;
mod dirichlet;
mod structure;

pub use assembly::{Assembly, AssemblyBuilder};
pub use dirichlet::Dirichlet;
pub use structure::{Structure, Symmetry};

use nalgebra::DMatrix;

/// Y = A X for a stored matrix (`values` in `structure` order), honouring one-triangle storage.
pub(crate) fn mul_dense(structure: &Structure, values: &[f64], x: &DMatrix<f64>) -> DMatrix<f64> {
    let lower = structure.symmetry() == Symmetry::Lower;
    let (cp, ri) = (structure.col_ptr(), structure.row_idx());
    let mut y = DMatrix::zeros(structure.nrows(), x.ncols());
    for c in 0..x.ncols() {
        let xc = x.column(c);
        let mut yc = y.column_mut(c);
        for j in 0..structure.ncols() {
            let xj = xc[j];
            for k in cp[j]..cp[j + 1] {
                let i = ri[k];
                yc[i] += values[k] * xj;
                if lower && i != j {
                    yc[j] += values[k] * xc[i];
                }
            }
        }
    }
    y
}

/// Y = Aᵀ X for a stored matrix, honouring one-triangle storage.
pub(crate) fn mul_transpose_dense(
    structure: &Structure,
    values: &[f64],
    x: &DMatrix<f64>,
) -> DMatrix<f64> {
    if structure.symmetry() == Symmetry::Lower {
        return mul_dense(structure, values, x);
    }
    let (cp, ri) = (structure.col_ptr(), structure.row_idx());
    let mut y = DMatrix::zeros(structure.ncols(), x.ncols());
    for c in 0..x.ncols() {
        let xc = x.column(c);
        let mut yc = y.column_mut(c);
        for j in 0..structure.ncols() {
            yc[j] = (cp[j]..cp[j + 1]).map(|k| values[k] * xc[ri[k]]).sum();
        }
    }
    y
}

/// out_k += scale · Σ_c left[i, c] · right[j, c] for every stored entry k = (i, j).
///
/// This is the derivative of ⟨left, A right⟩ with respect to the stored values. For one-triangle
/// storage an off-diagonal value stands for (i, j) and (j, i), so both terms are added:
/// scale · Σ_c (left[i, c] right[j, c] + left[j, c] right[i, c]).
pub(crate) fn accumulate_outer(
    structure: &Structure,
    left: &DMatrix<f64>,
    right: &DMatrix<f64>,
    scale: f64,
    out: &mut [f64],
) {
    let lower = structure.symmetry() == Symmetry::Lower;
    let (cp, ri) = (structure.col_ptr(), structure.row_idx());
    let k_rhs = left.ncols();
    for j in 0..structure.ncols() {
        for k in cp[j]..cp[j + 1] {
            let i = ri[k];
            let mut acc = 0.0;
            for c in 0..k_rhs {
                acc += left[(i, c)] * right[(j, c)];
                if lower && i != j {
                    acc += left[(j, c)] * right[(i, c)];
                }
            }
            out[k] += scale * acc;
        }
    }
}
