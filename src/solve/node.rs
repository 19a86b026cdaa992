//! The solve node's mathematics, free of the tape: the forward pass (factor, solve, checks) and
//! the adjoint (transpose solve with the kept factorization, gradient at the stored entries).
//!
//! [`Tape::solve`](crate::Tape::solve), [`solve_batch`](crate::batch::solve_batch) and the `sparsegrad`
//! command all go through these functions.
//!
//! ```
//! use nalgebra::DMatrix;
//! use sparsegrad::solve::node::{adjoint, forward};
//! use sparsegrad::{Solver, Structure, Symmetry};
//! // A = [[4, 1], [1, 3]] (lower triangle stored), B = [1, 2]ᵀ, L = Σ X.
//! let s = Structure::new(2, 2, vec![0, 2, 3], vec![0, 1, 1], Symmetry::Lower).unwrap();
//! let values = [4.0, 1.0, 3.0];
//! let b = DMatrix::from_column_slice(2, 1, &[1.0, 2.0]);
//! let (factor, x) = forward(&Solver::cholesky(), &s, &values, &b).unwrap();
//! let adj = adjoint(factor.as_ref(), &s, &DMatrix::from_element(2, 1, 1.0), &x, true).unwrap();
//! let (lambda, grad_a) = (adj.lambda, adj.grad_values);
//! // X = [1/11, 7/11]; Λ = A⁻¹ 1 = [2/11, 3/11]; Ā_00 = −λ₀x₀.
//! assert!((x[1] - 7.0 / 11.0).abs() < 1e-15);
//! assert!((lambda[0] - 2.0 / 11.0).abs() < 1e-15);
//! assert!((grad_a.unwrap()[0] + 2.0 / 121.0).abs() < 1e-15);
//! ```

use std::sync::Arc;

use nalgebra::DMatrix;

use super::{Adjoint, Direction, Factor, Factorizer};
use crate::error::{check_finite, Error, Result};
use crate::sparse::{Structure, Symmetry};

/// The solve node's forward pass: [`factor`] then [`solve`]. Shared by the tape, batches and
/// the `sparsegrad` command.
///
/// # Errors
/// As [`factor`] and [`solve`].
pub fn forward(
    solver: &dyn Factorizer,
    structure: &Arc<Structure>,
    values: &[f64],
    b: &DMatrix<f64>,
) -> Result<(Arc<Factor>, DMatrix<f64>)> {
    solver.agree(check_rhs(structure, b))?;
    let factor = factor(solver, structure, values)?;
    let x = solve_checked(solver, factor.as_ref(), structure, values, b)?;
    Ok((factor, x))
}

/// The one right-hand-side check of every path (tape, batches, the command, Python): A square,
/// B with A's rows and at least one column, every value finite.
///
/// # Errors
/// [`Error::ShapeMismatch`] (op "solve"); [`Error::NonFinite`] naming the value's position.
pub fn check_rhs(structure: &Structure, b: &DMatrix<f64>) -> Result<()> {
    if b.nrows() != structure.nrows() || structure.nrows() != structure.ncols() || b.ncols() == 0 {
        return Err(Error::ShapeMismatch {
            op: "solve",
            left: (structure.nrows(), structure.ncols()),
            right: b.shape(),
        });
    }
    check_finite("right-hand side", b.as_slice(), b.nrows())
}

/// Factors A (values on `structure`) with `solver`, checks the factor's dimension and the
/// solver's [`Factorizer::check_factorization`] (e.g. a condition limit).
///
/// # Errors
/// The solver's errors; [`Error::StructureMismatch`] for a factor of the wrong dimension.
pub fn factor(
    solver: &dyn Factorizer,
    structure: &Arc<Structure>,
    values: &[f64],
) -> Result<Arc<Factor>> {
    let factor = solver.factorize(structure, values)?;
    if factor.dim() != structure.nrows() {
        return Err(Error::StructureMismatch {
            reason: format!(
                "the factorizer returned a {}-dimensional factor for a {}×{} matrix ({})",
                factor.dim(),
                structure.nrows(),
                structure.ncols(),
                factor.describe()
            ),
        });
    }
    solver.check_factorization(structure, values, factor.as_ref())?;
    Ok(factor)
}

/// X = A⁻¹ B with a factor from [`factor`], then the solver's
/// [`Factorizer::check_residual`].
///
/// # Errors
/// [`Error::ShapeMismatch`] / [`Error::NonFinite`] for a bad B; the solve's and the residual
/// check's errors.
pub fn solve(
    solver: &dyn Factorizer,
    factor: &Factor,
    structure: &Structure,
    values: &[f64],
    b: &DMatrix<f64>,
) -> Result<DMatrix<f64>> {
    solver.agree(check_rhs(structure, b))?;
    solve_checked(solver, factor, structure, values, b)
}

/// Y = A⁻ᵀ B with a factor from [`factor`] — the adjoint solve on its own — checked as [`solve`]
/// checks: B n×k and finite, Y finite.
///
/// # Errors
/// [`Error::ShapeMismatch`] / [`Error::NonFinite`] for a bad B; the solve's errors;
/// [`Error::Singular`] for a non-finite Y.
pub fn solve_transpose(
    factor: &Factor,
    structure: &Structure,
    b: &DMatrix<f64>,
) -> Result<DMatrix<f64>> {
    check_rhs(structure, b)?;
    solve_finite(factor, structure, b, Direction::Transpose)
}

/// [`solve`] for a right-hand side already checked.
fn solve_checked(
    solver: &dyn Factorizer,
    factor: &Factor,
    structure: &Structure,
    values: &[f64],
    b: &DMatrix<f64>,
) -> Result<DMatrix<f64>> {
    let x = solve_finite(factor, structure, b, Direction::Forward)?;
    solver.check_residual(structure, values, &x, b)?;
    Ok(x)
}

/// A⁻¹B (or A⁻ᵀB) with `factor`, refused unless finite.
fn solve_finite(
    factor: &Factor,
    structure: &Structure,
    b: &DMatrix<f64>,
    direction: Direction,
) -> Result<DMatrix<f64>> {
    if factor.dim() != structure.nrows() {
        return Err(Error::ShapeMismatch {
            op: "solve (factor vs matrix)",
            left: (factor.dim(), factor.dim()),
            right: (structure.nrows(), structure.ncols()),
        });
    }
    let mut x = crate::pool::matrix_copy(b);
    match direction {
        Direction::Forward => factor.solve_in_place(&mut x)?,
        Direction::Transpose => factor.solve_transpose_in_place(&mut x)?,
    }
    super::check_solution_finite(&x)?;
    Ok(x)
}

/// The solve node's tangent (forward mode): Ẋ = A⁻¹(Ḃ − Ȧ X) with the forward pass's
/// factorization, for the tangent `a_dot` of A's stored values (`None`: A fixed) and `b_dot` of
/// B (`None`: B fixed). One solve, no factorization.
///
/// # Errors
/// [`Error::ShapeMismatch`] for tangents of the wrong shape; the solve's errors;
/// [`Error::Singular`] for a non-finite Ẋ.
pub fn tangent(
    factor: &Factor,
    structure: &Structure,
    x: &DMatrix<f64>,
    a_dot: Option<&[f64]>,
    b_dot: Option<&DMatrix<f64>>,
) -> Result<DMatrix<f64>> {
    let mut rhs = match b_dot {
        Some(b) if b.shape() != x.shape() => {
            return Err(Error::ShapeMismatch {
                op: "solve tangent (Ḃ vs X)",
                left: b.shape(),
                right: x.shape(),
            })
        }
        Some(b) => crate::pool::matrix_copy(b),
        None => DMatrix::zeros(x.nrows(), x.ncols()),
    };
    if let Some(a_dot) = a_dot {
        if a_dot.len() != structure.nnz() {
            return Err(Error::ShapeMismatch {
                op: "solve tangent (Ȧ vs stored entries)",
                left: (a_dot.len(), 1),
                right: (structure.nnz(), 1),
            });
        }
        rhs -= crate::sparse::mul_dense(structure, a_dot, x);
    }
    solve_finite(factor, structure, &rhs, Direction::Forward)
}

/// ∂ log |det A| / ∂(the stored values of `structure`): the selected inverse A⁻¹ at each stored
/// entry ([`Factorization::selected_inverse`](super::Factorization::selected_inverse)), doubled off
/// the diagonal for one-triangle storage (an entry there stands for itself and its mirror). What
/// the tape's logdet node and Python's `logdet_grad` return.
///
/// # Errors
/// As [`Factorization::selected_inverse`](super::Factorization::selected_inverse).
pub fn logdet_gradient(factor: &Factor, structure: &Structure) -> Result<Vec<f64>> {
    let mut z = factor.selected_inverse(structure)?;
    if structure.symmetry() == Symmetry::Lower {
        let (cp, ri) = (structure.col_ptr(), structure.row_idx());
        for j in 0..structure.ncols() {
            for k in cp[j]..cp[j + 1] {
                if ri[k] != j {
                    z[k] *= 2.0;
                }
            }
        }
    }
    Ok(z)
}

/// The solve node's adjoint: Λ = A⁻ᵀ Ḡ with the forward pass's factorization and, when `want_a`,
/// Ā_e = −Σ_c Λ_ic X_jc at the stored entries (plus the mirrored term off the diagonal for
/// one-triangle storage; on the factorization's own device when it offers a fused adjoint).
///
/// # Errors
/// [`Error::ShapeMismatch`] unless Ḡ and X are n×k; the transpose solve's errors.
pub fn adjoint(
    factor: &Factor,
    structure: &Structure,
    g: &DMatrix<f64>,
    x: &DMatrix<f64>,
    want_a: bool,
) -> Result<Adjoint> {
    let n = structure.nrows();
    if factor.dim() != n || x.nrows() != structure.ncols() || g.shape() != (n, x.ncols()) {
        return Err(Error::ShapeMismatch {
            op: "solve adjoint (Ḡ vs X)",
            left: g.shape(),
            right: x.shape(),
        });
    }
    let (lambda, fused) = match factor.fused_adjoint(structure, g, x, want_a)? {
        Some(result) => (result.lambda, result.grad_values),
        None => {
            let mut lambda = crate::pool::matrix_copy(g);
            factor.solve_transpose_in_place(&mut lambda)?;
            (lambda, None)
        }
    };
    let ga = match (want_a, fused) {
        (false, _) => None,
        (true, Some(ga)) => Some(ga),
        (true, None) => {
            let mut ga = crate::pool::zeroed(structure.nnz());
            accumulate_outer(structure, &lambda, x, -1.0, &mut ga)?;
            Some(ga)
        }
    };
    Ok(Adjoint {
        lambda,
        grad_values: ga,
    })
}

/// out_k += scale · Σ_c left[i, c] · right[j, c] for every stored entry k = (i, j).
///
/// With left = Λ = A⁻ᵀ Ḡ, right = X and scale = −1 this is the gradient of a solve with respect to
/// the stored values of A (what the solve node's backward pass computes).
///
/// This is the derivative of ⟨left, A right⟩ with respect to the stored values. For one-triangle
/// storage an off-diagonal value stands for (i, j) and (j, i), so both terms are added:
/// scale · Σ_c (left[i, c] right[j, c] + left[j, c] right[i, c]). Columns are visited four at a
/// time (one pass over the pattern per four columns, each access within a contiguous column),
/// then one at a time for the rest; each entry's additions happen in column order either way, so
/// the result does not depend on the blocking.
///
/// # Errors
/// [`Error::ShapeMismatch`] unless `left` is nrows×k, `right` ncols×k (the same k) and `out` has
/// one entry per stored entry; for one-triangle storage the structure is square.
pub fn accumulate_outer(
    structure: &Structure,
    left: &DMatrix<f64>,
    right: &DMatrix<f64>,
    scale: f64,
    out: &mut [f64],
) -> Result<()> {
    let shape = (structure.nrows(), structure.ncols());
    let mismatch = |left, right| {
        Err(Error::ShapeMismatch {
            op: "accumulate_outer",
            left,
            right,
        })
    };
    if left.nrows() != shape.0 || right.nrows() != shape.1 || left.ncols() != right.ncols() {
        return mismatch(left.shape(), right.shape());
    }
    if out.len() != structure.nnz() {
        return mismatch((out.len(), 1), (structure.nnz(), 1));
    }
    accumulate_outer_unchecked(structure, left, right, scale, out);
    Ok(())
}

/// [`accumulate_outer`] with shapes already checked by the caller.
fn accumulate_outer_unchecked(
    structure: &Structure,
    left: &DMatrix<f64>,
    right: &DMatrix<f64>,
    scale: f64,
    out: &mut [f64],
) {
    let lower = structure.symmetry() == Symmetry::Lower;
    let (cp, ri) = (structure.col_ptr(), structure.row_idx());
    let (nl, nr) = (left.nrows().max(1), right.nrows().max(1));
    let (l4, r4) = (
        left.as_slice().chunks_exact(4 * nl),
        right.as_slice().chunks_exact(4 * nr),
    );
    let (l_rest, r_rest) = (l4.remainder(), r4.remainder());
    for (lb, rb) in l4.zip(r4) {
        let l: [&[f64]; 4] = std::array::from_fn(|c| &lb[c * nl..(c + 1) * nl]);
        let r: [&[f64]; 4] = std::array::from_fn(|c| &rb[c * nr..(c + 1) * nr]);
        for j in 0..structure.ncols() {
            let range = cp[j]..cp[j + 1];
            for (o, &i) in out[range.clone()].iter_mut().zip(&ri[range]) {
                // Same additions in the same order as one column at a time.
                let mut acc = *o;
                for c in 0..4 {
                    let mut v = l[c][i] * r[c][j];
                    if lower && i != j {
                        v += l[c][j] * r[c][i];
                    }
                    acc += scale * v;
                }
                *o = acc;
            }
        }
    }
    for (lc, rc) in l_rest.chunks_exact(nl).zip(r_rest.chunks_exact(nr)) {
        for j in 0..structure.ncols() {
            let (rj, lj) = (rc[j], if lower { lc[j] } else { 0.0 });
            let range = cp[j]..cp[j + 1];
            for (o, &i) in out[range.clone()].iter_mut().zip(&ri[range]) {
                let mut v = lc[i] * rj;
                if lower && i != j {
                    v += lj * rc[i];
                }
                *o += scale * v;
            }
        }
    }
}
