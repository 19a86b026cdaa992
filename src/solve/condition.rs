//! Condition number estimate κ₁(A) = ‖A‖₁ ‖A⁻¹‖₁ from an existing factorization (Hager's method
//! with Higham's refinement, as in LAPACK's `xLACON`): a few solves with A and Aᵀ, no inverse.

use nalgebra::DMatrix;

use super::Factor;
use crate::error::{Error, Result};
use crate::sparse::{Structure, Symmetry};

/// ‖A‖₁: the largest column sum of |a_ij| (one-triangle entries count in both columns).
///
/// # Errors
/// [`Error::StructureMismatch`] unless `values` has one entry per stored entry.
pub fn norm1(structure: &Structure, values: &[f64]) -> Result<f64> {
    structure.check_len(values)?;
    let (cp, ri) = (structure.col_ptr(), structure.row_idx());
    let mut sums = vec![0.0f64; structure.ncols()];
    for j in 0..structure.ncols() {
        for k in cp[j]..cp[j + 1] {
            sums[j] += values[k].abs();
            if structure.symmetry() == Symmetry::Lower && ri[k] != j {
                sums[ri[k]] += values[k].abs();
            }
        }
    }
    Ok(sums.into_iter().fold(0.0, f64::max))
}

/// An estimate of κ₁(A) = ‖A‖₁‖A⁻¹‖₁ for the matrix with `values` on `structure`, using its
/// factorization `factor` (at most ~6 solves with A and 5 with Aᵀ). Like LAPACK's estimator it is
/// a lower bound that is almost always within a factor of 3 of the true value; use it to judge
/// how many digits of a solution (and of its gradient) to trust: about 16 − log₁₀ κ.
///
/// ```
/// use sparsegrad::{solve::condition_estimate, Solver, Structure, Symmetry};
/// // diag(1, 1e-8): κ₁ = 1e8.
/// let s = Structure::new(2, 2, vec![0, 1, 2], vec![0, 1], Symmetry::Lower).unwrap();
/// let values = [1.0, 1e-8];
/// let f = Solver::cholesky().factorize(&s, &values).unwrap();
/// let k = condition_estimate(&s, &values, f.as_ref()).unwrap();
/// assert!((k / 1e8 - 1.0).abs() < 1e-12);
/// ```
///
/// # Errors
/// [`Error::ShapeMismatch`] if the factor's dimension is not the structure's;
/// [`Error::StructureMismatch`] for a wrong number of values; a solve's error.
pub fn condition_estimate(structure: &Structure, values: &[f64], factor: &Factor) -> Result<f64> {
    let a_norm = norm1(structure, values)?;
    let n = structure.nrows();
    if factor.dim() != n || structure.ncols() != n {
        return Err(Error::ShapeMismatch {
            op: "condition_estimate",
            left: (structure.nrows(), structure.ncols()),
            right: (factor.dim(), factor.dim()),
        });
    }
    if n == 0 {
        return Ok(0.0);
    }
    let solve = |x: &DMatrix<f64>, transpose: bool| -> Result<DMatrix<f64>> {
        let mut y = x.clone();
        if transpose {
            factor.solve_transpose_in_place(&mut y)?;
        } else {
            factor.solve_in_place(&mut y)?;
        }
        Ok(y)
    };
    let l1 = |v: &DMatrix<f64>| v.iter().map(|x| x.abs()).sum::<f64>();
    let mut x = DMatrix::from_element(n, 1, 1.0 / n as f64);
    let mut estimate = 0.0f64;
    let mut last_j = usize::MAX;
    for _ in 0..5 {
        let y = solve(&x, false)?;
        estimate = estimate.max(l1(&y));
        let sign = y.map(|v| if v >= 0.0 { 1.0 } else { -1.0 });
        let z = solve(&sign, true)?;
        let (j, zmax) = z.iter().enumerate().fold((0, 0.0f64), |(bj, bm), (i, v)| {
            if v.abs() > bm {
                (i, v.abs())
            } else {
                (bj, bm)
            }
        });
        if zmax <= z.dot(&x) || j == last_j {
            break;
        }
        last_j = j;
        x.fill(0.0);
        x[j] = 1.0;
    }
    // Higham's alternative vector guards against the cases Hager's iteration misses.
    let alt = DMatrix::from_fn(n, 1, |i, _| {
        let s = if i % 2 == 0 { 1.0 } else { -1.0 };
        s * (1.0 + i as f64 / (n.max(2) - 1) as f64)
    });
    let y = solve(&alt, false)?;
    estimate = estimate.max(2.0 * l1(&y) / (3.0 * n as f64));
    Ok(a_norm * estimate)
}
