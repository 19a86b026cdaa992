//! Condition number estimate κ₁(A) = ‖A‖₁ ‖A⁻¹‖₁ from an existing factorization (Hager's method
//! with Higham's refinement, as in LAPACK's `xLACON`): a few solves with A and Aᵀ, no inverse.

use nalgebra::DMatrix;

use super::{Factor, Factorization};
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
pub fn condition_estimate(
    structure: &Structure,
    values: &[f64],
    factor: &(dyn Factorization + '_),
) -> Result<f64> {
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

/// Below this lower bound on the equilibrated κ₁ (from one probing solve) a factorization is
/// accepted without the full estimate.
const PROBE_GATE: f64 = 1e10;

/// Refuses a factorization of a matrix that is **singular to working precision**: the condition
/// estimate of its equilibrated form R A C is at least 1/ε ≈ 4.5e15, so no digit of a solution can
/// be trusted (LAPACK's `xGESVX` reports the same condition as `INFO = n + 1`). Equilibration
/// (row, then column scaling by the largest magnitude; symmetric scaling for symmetric storage)
/// makes the test blind to badly scaled but well-posed systems such as a 1e20 penalty on a
/// boundary unknown.
///
/// With [`Gate::Probe`], one solve with a fixed sign-alternating vector gives a lower bound on κ
/// first and the full estimate (about 11 solves) runs only when that bound reaches 1e10; with
/// [`Gate::TinyPivot`] the caller has seen a pivot that lost its digits and the estimate runs at
/// once.
///
/// # Errors
/// [`Error::Singular`] as above or when a solve produces a non-finite value; a solve's errors.
pub(crate) fn check_not_singular(
    structure: &Structure,
    values: &[f64],
    factor: &Factor,
    gate: Gate,
) -> Result<()> {
    let n = structure.nrows();
    if n == 0 || factor.dim() != n {
        return Ok(());
    }
    let scaled = Equilibrated::new(structure, values, factor);
    let scaled_values = scaled.values(structure, values);
    let singular = |kappa: f64| {
        Error::Singular {
        column: None,
        reason: format!(
            "the matrix is singular to working precision: estimated condition number of the equilibrated matrix {kappa:.1e} ≥ 1/ε = {:.1e}",
            1.0 / f64::EPSILON
        ),
    }
    };
    let mut bound = 0.0f64;
    if gate == Gate::Probe {
        let z = DMatrix::from_fn(n, 1, |i, _| {
            let s = if i % 2 == 0 { 1.0 } else { -1.0 };
            s * (1.0 + i as f64 / (n.max(2) - 1) as f64)
        });
        let mut y = z.clone();
        scaled.solve_in_place(&mut y)?;
        let l1 = |v: &DMatrix<f64>| v.iter().map(|x| x.abs()).sum::<f64>();
        bound = norm1(structure, &scaled_values)? * l1(&y) / l1(&z);
        if !bound.is_finite() {
            return Err(singular(f64::INFINITY));
        }
        if bound < PROBE_GATE {
            return Ok(());
        }
    }
    let kappa = condition_estimate(structure, &scaled_values, &scaled)?.max(bound);
    if !kappa.is_finite() || kappa * f64::EPSILON >= 1.0 {
        return Err(singular(kappa));
    }
    Ok(())
}

/// How [`check_not_singular`] decides to run the condition estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// One probing solve first (factorizations that do not expose their pivots: LU).
    Probe,
    /// A pivot lost its digits to cancellation: estimate now.
    TinyPivot,
}

/// A factorization of A seen as one of R A C (R, C positive diagonal scalings).
struct Equilibrated<'a> {
    factor: &'a Factor,
    rows: Vec<f64>,
    cols: Vec<f64>,
}

impl<'a> Equilibrated<'a> {
    fn new(structure: &Structure, values: &[f64], factor: &'a Factor) -> Self {
        let n = structure.nrows();
        let (cp, ri) = (structure.col_ptr(), structure.row_idx());
        let symmetric = structure.symmetry() != Symmetry::General;
        let entries = || {
            (0..structure.ncols())
                .flat_map(move |j| (cp[j]..cp[j + 1]).map(move |k| (ri[k], j, values[k].abs())))
        };
        let inverse = |m: f64| {
            if m > 0.0 && m.is_finite() {
                1.0 / m
            } else {
                1.0
            }
        };
        let mut row_max = vec![0.0f64; n];
        for (i, j, v) in entries() {
            row_max[i] = row_max[i].max(v);
            if symmetric {
                row_max[j] = row_max[j].max(v);
            }
        }
        if symmetric {
            // D A D with d_i = 1/√(max_j |a_ij|): symmetric, entries at most 1.
            let d: Vec<f64> = row_max.iter().map(|&m| inverse(m).sqrt()).collect();
            return Equilibrated {
                factor,
                rows: d.clone(),
                cols: d,
            };
        }
        let rows: Vec<f64> = row_max.into_iter().map(inverse).collect();
        let mut col_max = vec![0.0f64; n];
        for (i, j, v) in entries() {
            col_max[j] = col_max[j].max(rows[i] * v);
        }
        let cols = col_max.into_iter().map(inverse).collect();
        Equilibrated { factor, rows, cols }
    }

    /// R A C's stored values.
    fn values(&self, structure: &Structure, values: &[f64]) -> Vec<f64> {
        let (cp, ri) = (structure.col_ptr(), structure.row_idx());
        let mut out = values.to_vec();
        for j in 0..structure.ncols() {
            for k in cp[j]..cp[j + 1] {
                out[k] *= self.rows[ri[k]] * self.cols[j];
            }
        }
        out
    }
}

fn divide_rows(m: &mut DMatrix<f64>, d: &[f64]) {
    for mut col in m.column_iter_mut() {
        for (v, s) in col.iter_mut().zip(d) {
            *v /= s;
        }
    }
}

impl Factorization for Equilibrated<'_> {
    /// (R A C)⁻¹ = C⁻¹ A⁻¹ R⁻¹.
    fn solve_in_place(&self, rhs: &mut DMatrix<f64>) -> Result<()> {
        divide_rows(rhs, &self.rows);
        self.factor.solve_in_place(rhs)?;
        divide_rows(rhs, &self.cols);
        Ok(())
    }
    /// (R A C)⁻ᵀ = R⁻¹ A⁻ᵀ C⁻¹.
    fn solve_transpose_in_place(&self, rhs: &mut DMatrix<f64>) -> Result<()> {
        divide_rows(rhs, &self.cols);
        self.factor.solve_transpose_in_place(rhs)?;
        divide_rows(rhs, &self.rows);
        Ok(())
    }
    fn dim(&self) -> usize {
        self.factor.dim()
    }
    fn describe(&self) -> String {
        format!("equilibrated {}", self.factor.describe())
    }
    fn method(&self) -> Option<super::Method> {
        self.factor.method()
    }
}
