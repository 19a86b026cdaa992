//! Mixed precision on the CPU ([`Precision::Mixed`], and [`Precision::Auto`] where it pays): an
//! f32 LLᵀ / LDLᵀ factor — half the factor memory, twice the SIMD width in its dense kernels —
//! sharing the f64 factorizations' symbolic analysis, and every solve refined in f64 to the f64
//! factor's accuracy.
//!
//! A solve of A X = B runs classical iterative refinement, all columns together: x ← x + A₃₂⁻¹ r
//! with r = b − A x formed in f64 from A's f64 values. Column c has converged when
//!
//! - its normwise backward error reaches the f64 solve's, ‖r‖∞ ≤ √n·ε·(‖A‖∞‖x‖∞ + ‖b‖∞) (the
//!   test LAPACK's `dsposv` uses), or
//! - its last correction no longer changes x at f64 precision, ‖d‖∞ ≤ ε‖x‖∞.
//!
//! Each step gains about −log₁₀(κ·ε₃₂) digits, so plain refinement converges while
//! κ(A) ≲ 1e7. When a column stalls (a correction not at most half the previous one) or
//! [`MAX_STEPS`] pass:
//!
//! - under [`Precision::Auto`] the matrix is factored in f64 (once: later solves use that
//!   factor) and [`Factorization::fallback_reason`] says why — GMRES-IR would cost more f32
//!   solves than the f64 factorization;
//! - under an explicit [`Precision::Mixed`] the column goes on with GMRES-IR (restarted GMRES in
//!   f64 on A, right-preconditioned by the f32 factor, from the refined x, until the 2-norm of
//!   the residual meets the same test scaled by √n), which reaches the f64 solve's backward error for condition numbers
//!   well past 1/ε₃₂ (measured on κ ≈ 1e10 grids: 1.5e-15 against the f64 factor's 7.2e-16 at
//!   30³, 3.0e-15 against 8.8e-16 at 40³);
//!   if it does not, the solve is [`Error::PrecisionLoss`].
//!
//! An f32 factorization that breaks down (a pivot that is not positive in f32, or one that lost
//! all its single-precision digits) is treated the same way at factorization time: the f64
//! fallback under `Auto`, [`Error::PrecisionLoss`] under `Mixed`.
//!
//! The f32 factor cannot give f64 log-determinants or selected inverses: those are
//! [`Error::Unsupported`] for an explicit `Mixed` factor and computed from an f64 factor
//! (factored on first use) under `Auto`.
//!
//! [`Precision::Mixed`]: crate::Precision::Mixed
//! [`Precision::Auto`]: crate::Precision::Auto

use std::sync::{Arc, Mutex, OnceLock};

use nalgebra::DMatrix;

use super::cholesky::{FaerCholesky, Kind};
use super::csr::Csr;
use super::iterative::krylov::System;
use super::iterative::precond::Precond;
use crate::error::{Error, Result};
use crate::solve::{Convergence, Factorization, Krylov, Method, Ordering, Precision, SolveInfo};
use crate::sparse::{Structure, Symmetry};

/// Most classical refinement steps before GMRES-IR takes over.
pub(crate) const MAX_STEPS: usize = 10;
/// GMRES-IR's restart length and iteration limit.
const GMRES_RESTART: usize = 30;
const GMRES_ITERATIONS: usize = 300;

/// Whether a failure is an error (explicit [`Precision::Mixed`](crate::Precision::Mixed)) or
/// a fallback to f64 ([`Precision::Auto`](crate::Precision::Auto)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Explicit,
    Auto,
}

/// An f32 factor with f64 refinement (see the module header).
pub(crate) struct Refined {
    /// The f32 factor (`None` when its factorization failed under `Auto`).
    single: Option<Arc<FaerCholesky<f32>>>,
    /// A in full CSR, built only when GMRES-IR runs.
    csr: OnceLock<Csr>,
    /// ‖A‖∞.
    a_norm: f64,
    mode: Mode,
    kind: Kind,
    /// What the fallback factorization needs (A's values in storage order).
    structure: Arc<Structure>,
    values: Vec<f64>,
    ordering: Ordering,
    /// The f64 factor, once the fallback (or an f64-only query) made it.
    double: OnceLock<std::result::Result<Arc<FaerCholesky>, String>>,
    /// Why the f64 factor is used for solves, once it is.
    fallback: OnceLock<String>,
    info: Mutex<SolveInfo>,
}

/// ‖A‖∞ of a stored matrix, the largest absolute row sum (one-triangle storage mirrored).
fn norm_inf(structure: &Structure, values: &[f64]) -> f64 {
    let mut rows = vec![0.0f64; structure.nrows()];
    let mirror = structure.symmetry() == Symmetry::Lower;
    let (cp, ri) = (structure.col_ptr(), structure.row_idx());
    for j in 0..structure.ncols() {
        for (&i, &v) in ri[cp[j]..cp[j + 1]].iter().zip(&values[cp[j]..cp[j + 1]]) {
            rows[i] += v.abs();
            if mirror && i != j {
                rows[j] += v.abs();
            }
        }
    }
    rows.into_iter().fold(0.0, f64::max)
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(
        0.0f64,
        |m, x| if x.is_nan() { f64::NAN } else { m.max(x.abs()) },
    )
}

/// What one refined solve achieved.
struct Outcome {
    steps: usize,
    /// Largest normwise backward error ‖r‖∞ / (‖A‖∞‖x‖∞ + ‖b‖∞) over the columns.
    backward_error: f64,
}

impl Refined {
    /// Factors A in f32 (LLᵀ or LDLᵀ) under `ordering`. Under [`Mode::Auto`] an f32 breakdown
    /// factors in f64 instead and records why.
    ///
    /// # Errors
    /// The f64 factorization's errors when the f32 one breaks down and the f64 one does too (a
    /// matrix that is not positive definite, singular, or with LDLᵀ pivot growth in any
    /// precision); [`Error::PrecisionLoss`] when only the f32 one breaks down under
    /// [`Mode::Explicit`].
    pub(crate) fn factor(
        structure: &Arc<Structure>,
        values: &[f64],
        kind: Kind,
        ordering: &Ordering,
        mode: Mode,
    ) -> Result<Self> {
        let single = match FaerCholesky::<f32>::factor_single(structure, values, kind, ordering) {
            Ok(f) => f,
            // A stored diagonal ≤ 0 or memory: the same in f64.
            Err(
                e @ (Error::NotPositiveDefinite { pivot: Some(_), .. } | Error::OutOfMemory { .. }),
            ) => return Err(e),
            Err(e) => {
                // Whether f64 succeeds tells a matrix that f32 cannot handle from one that is
                // not positive definite (or singular) at all: then f64's own error is the answer.
                let double = FaerCholesky::factor_with(structure, values, kind, ordering)?;
                if mode == Mode::Explicit {
                    return Err(Error::PrecisionLoss {
                        reason: format!(
                            "the f32 factorization failed ({e}) where the f64 one succeeds"
                        ),
                    });
                }
                let me = Self::assemble(structure, values, kind, ordering, mode, None);
                let _ = me.double.set(Ok(Arc::new(double)));
                let _ = me.fallback.set(format!(
                    "the f32 factorization failed ({e}); factored in f64"
                ));
                return Ok(me);
            }
        };
        Ok(Self::assemble(
            structure,
            values,
            kind,
            ordering,
            mode,
            Some(Arc::new(single)),
        ))
    }

    fn assemble(
        structure: &Arc<Structure>,
        values: &[f64],
        kind: Kind,
        ordering: &Ordering,
        mode: Mode,
        single: Option<Arc<FaerCholesky<f32>>>,
    ) -> Self {
        Refined {
            single,
            csr: OnceLock::new(),
            a_norm: norm_inf(structure, values),
            mode,
            kind,
            structure: structure.clone(),
            values: values.to_vec(),
            ordering: ordering.clone(),
            double: OnceLock::new(),
            fallback: OnceLock::new(),
            info: Mutex::default(),
        }
    }

    /// The f64 factor, factored on first use.
    fn double(&self) -> Result<&Arc<FaerCholesky>> {
        self.double
            .get_or_init(|| {
                FaerCholesky::factor_with(&self.structure, &self.values, self.kind, &self.ordering)
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| Error::FactorizationFailed {
                backend: "faer (f64 fallback of a mixed-precision factor)".into(),
                reason: e.clone(),
            })
    }

    /// The f64 factor for queries the f32 factor cannot answer accurately: an error for an
    /// explicit `Mixed` factor.
    fn double_for(&self, what: &str) -> Result<&Arc<FaerCholesky>> {
        if self.mode == Mode::Explicit && self.fallback.get().is_none() {
            return Err(Error::Unsupported {
                reason: format!(
                    "{what} needs an f64 factor; this one is f32 with refined solves (Precision::Mixed) — factor with Precision::F64 or Precision::Auto"
                ),
            });
        }
        self.double()
    }

    /// A·X from the stored values (one-triangle storage mirrored).
    fn mul(&self, x: &DMatrix<f64>) -> DMatrix<f64> {
        crate::sparse::mul_dense(&self.structure, &self.values, x)
    }

    /// Iterative refinement then GMRES-IR for the columns that need it; `rhs` ← X.
    fn refine(&self, single: &Arc<FaerCholesky<f32>>, rhs: &mut DMatrix<f64>) -> Result<Outcome> {
        let (n, k) = rhs.shape();
        let b = rhs.clone();
        let sqrt_n = (n.max(1) as f64).sqrt();
        let eps = f64::EPSILON;
        let b_norms: Vec<f64> = b.column_iter().map(|c| max_abs(c.as_slice())).collect();
        let tolerance = |x_norm: f64, b_norm: f64| sqrt_n * eps * (self.a_norm * x_norm + b_norm);
        rhs.fill(0.0);
        let mut r = b.clone();
        let mut previous = vec![f64::INFINITY; k];
        // Per column: still refining, converged, or stalled (GMRES-IR next).
        let mut done = vec![false; k];
        let mut stalled = vec![false; k];
        // Each column's backward error at its last residual.
        let mut eta = vec![0.0f64; k];
        let backward = |r_norm: f64, x_norm: f64, b_norm: f64| {
            let scale = self.a_norm * x_norm + b_norm;
            if scale > 0.0 {
                r_norm / scale
            } else {
                0.0
            }
        };
        let mut steps = 0;
        while steps < MAX_STEPS && (0..k).any(|c| !done[c] && !stalled[c]) {
            steps += 1;
            let mut d = r.clone();
            single.solve_f64(&mut d);
            for c in (0..k).filter(|&c| !done[c] && !stalled[c]) {
                let mut x = rhs.column_mut(c);
                x += d.column(c);
            }
            let ax = self.mul(rhs);
            for c in 0..k {
                let mut rc = r.column_mut(c);
                if done[c] || stalled[c] {
                    rc.fill(0.0);
                    continue;
                }
                for ((ri, bi), ai) in rc
                    .iter_mut()
                    .zip(b.column(c).iter())
                    .zip(ax.column(c).iter())
                {
                    *ri = bi - ai;
                }
                let x_norm = max_abs(rhs.column(c).as_slice());
                let d_norm = max_abs(d.column(c).as_slice());
                let r_norm = max_abs(rc.as_slice());
                eta[c] = backward(r_norm, x_norm, b_norms[c]);
                if !(x_norm.is_finite() && r_norm.is_finite()) {
                    stalled[c] = true;
                } else if r_norm <= tolerance(x_norm, b_norms[c]) || d_norm <= eps * x_norm {
                    done[c] = true;
                } else if d_norm > 0.5 * previous[c] {
                    stalled[c] = true;
                }
                previous[c] = d_norm;
            }
        }
        let mut gmres_iterations = 0;
        if done.iter().any(|d| !d) && self.mode == Mode::Auto {
            // GMRES-IR would take more f32 solves than an f64 factorization costs.
            let c = (0..k).find(|&c| !done[c]).unwrap_or(0);
            return Err(Error::PrecisionLoss {
                reason: format!(
                    "iterative refinement stalled on column {c} after {steps} steps (κ(A)·ε₃₂ is not small)"
                ),
            });
        }
        if done.iter().any(|d| !d) {
            let a = self
                .csr
                .get_or_init(|| Csr::new(&self.structure, &self.values));
            let precond = Precond::Single(single.clone());
            for c in (0..k).filter(|&c| !done[c]) {
                let mut x: Vec<f64> = rhs.column(c).iter().copied().collect();
                if !x.iter().all(|v| v.is_finite()) {
                    x.fill(0.0);
                }
                // In the 2-norm (‖r‖₂ ≤ √n‖r‖∞): the refinement's test scaled by √n; a tighter one
                // sits below the rounding floor of the f64 residual on large systems.
                let target = sqrt_n * tolerance(max_abs(&x), b_norms[c]);
                let system = System {
                    a,
                    m: &precond,
                    transpose: false,
                    rtol: 0.0,
                    atol: target,
                    max_iterations: GMRES_ITERATIONS,
                };
                let gmres = Krylov::Gmres {
                    restart: GMRES_RESTART,
                };
                match system.solve(gmres, b.column(c).as_slice(), &mut x) {
                    Ok(convergence) => {
                        gmres_iterations = gmres_iterations.max(convergence.iterations);
                        rhs.column_mut(c).copy_from_slice(&x);
                    }
                    Err(e) => {
                        return Err(Error::PrecisionLoss {
                            reason: format!(
                                "column {c}: iterative refinement stalled after {steps} steps and GMRES-IR did not reach the f64 backward error ({e})"
                            ),
                        })
                    }
                }
            }
        }
        // The backward error reached, for SolveInfo (recomputed where GMRES-IR moved x).
        if gmres_iterations > 0 {
            let ax = self.mul(rhs);
            for c in (0..k).filter(|&c| !done[c]) {
                let r_norm = b
                    .column(c)
                    .iter()
                    .zip(ax.column(c).iter())
                    .fold(0.0f64, |m, (bi, ai)| m.max((bi - ai).abs()));
                eta[c] = backward(r_norm, max_abs(rhs.column(c).as_slice()), b_norms[c]);
            }
        }
        let worst = eta.into_iter().fold(0.0, f64::max);
        Ok(Outcome {
            steps: steps + gmres_iterations,
            backward_error: worst,
        })
    }

    fn solve_all(&self, rhs: &mut DMatrix<f64>, adjoint: bool) -> Result<()> {
        if rhs.ncols() == 0 || rhs.nrows() == 0 {
            return Ok(());
        }
        let single = match (&self.single, self.fallback.get()) {
            (Some(single), None) => single,
            _ => return self.double()?.solve_in_place(rhs),
        };
        let b = (self.mode == Mode::Auto).then(|| rhs.clone());
        match self.refine(single, rhs) {
            Ok(outcome) => {
                let convergence = Convergence {
                    iterations: outcome.steps,
                    relative_residual: outcome.backward_error,
                };
                let mut info = self.info.lock().unwrap_or_else(|p| p.into_inner());
                if adjoint {
                    info.adjoint = Some(convergence);
                } else {
                    info.forward = Some(convergence);
                }
                Ok(())
            }
            Err(e) => match b {
                Some(b) => {
                    let double = self.double()?;
                    let _ = self.fallback.set(format!("{e}; factored in f64"));
                    rhs.copy_from(&b);
                    double.solve_in_place(rhs)
                }
                None => Err(e),
            },
        }
    }
}

impl Factorization for Refined {
    fn solve_in_place(&self, rhs: &mut DMatrix<f64>) -> Result<()> {
        self.solve_all(rhs, false)
    }
    /// A is symmetric, so Aᵀ = A.
    fn solve_transpose_in_place(&self, rhs: &mut DMatrix<f64>) -> Result<()> {
        self.solve_all(rhs, true)
    }
    fn dim(&self) -> usize {
        self.structure.nrows()
    }
    fn describe(&self) -> String {
        match (&self.single, self.fallback.get()) {
            (Some(single), None) => format!(
                "{} with f64 iterative refinement (mixed precision)",
                single.describe_as("f32")
            ),
            (_, reason) => format!(
                "f64 factor after a mixed-precision fallback ({})",
                reason.map_or("", String::as_str)
            ),
        }
    }
    fn method(&self) -> Option<Method> {
        Some(self.kind.method())
    }
    fn solve_info(&self) -> SolveInfo {
        *self.info.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn precision(&self) -> Precision {
        match (&self.single, self.fallback.get()) {
            (Some(_), None) => Precision::Mixed,
            _ => Precision::F64,
        }
    }
    fn fallback_reason(&self) -> Option<&str> {
        self.fallback.get().map(String::as_str)
    }
    /// The f32 factor and A's values (the f64 factor and A's CSR too, once made).
    fn stored_bytes(&self) -> Option<usize> {
        let word = std::mem::size_of::<usize>();
        let single = self.single.as_ref().map_or(0, |s| s.bytes());
        let double = match self.double.get() {
            Some(Ok(d)) => d.bytes(),
            _ => 0,
        };
        let csr = self
            .csr
            .get()
            .map_or(0, |a| a.val.len() * (8 + word) + a.ptr.len() * word);
        Some(single + double + csr + self.values.len() * 8)
    }
    fn log_determinant(&self) -> Result<crate::solve::LogDet> {
        self.double_for("a log-determinant")?.log_determinant()
    }
    fn selected_inverse(&self, structure: &Structure) -> Result<Vec<f64>> {
        self.double_for("selected inversion")?
            .selected_inverse(structure)
    }
    fn diag_inverse(&self) -> Result<Vec<f64>> {
        self.double_for("selected inversion")?.diag_inverse()
    }
    fn sample_in_place(&self, z: &mut DMatrix<f64>) -> Result<()> {
        self.double_for("sampling")?.sample_in_place(z)
    }
}

/// [`Precision::F32`](crate::Precision::F32) on the CPU: f32 factor and solves, no refinement
/// (relative error ≈ κ(A)·6e-8). Log-determinants are summed in f64 from the f32 pivots; the
/// selected inverse and sampling need an f64 factor.
impl Factorization for FaerCholesky<f32> {
    fn solve_in_place(&self, rhs: &mut DMatrix<f64>) -> Result<()> {
        self.solve_f64(rhs);
        Ok(())
    }
    fn solve_transpose_in_place(&self, rhs: &mut DMatrix<f64>) -> Result<()> {
        self.solve_f64(rhs);
        Ok(())
    }
    fn dim(&self) -> usize {
        self.n()
    }
    fn describe(&self) -> String {
        self.describe_as("f32")
    }
    fn method(&self) -> Option<Method> {
        Some(self.kind().method())
    }
    fn stored_bytes(&self) -> Option<usize> {
        Some(self.bytes())
    }
    fn log_determinant(&self) -> Result<crate::solve::LogDet> {
        Ok(self.log_det())
    }
    fn precision(&self) -> Precision {
        Precision::F32
    }
}
