//! Krylov solvers as [`Factorizer`]s: preconditioned conjugate gradients (SPD) and BiCGSTAB
//! (general), with a Jacobi preconditioner. "Factoring" stores the matrix and the preconditioner;
//! every solve (forward, and the adjoint with Aᵀ) iterates column by column and fails with
//! [`Error::NotConverged`] — never a silent wrong gradient — when the tolerance is not reached.

use std::sync::Arc;

use nalgebra::{DMatrix, DVector};

use super::{Factor, Factorization, Factorizer};
use crate::backend::{self, Device};
use crate::error::{Error, Result};
use crate::sparse::{mul_dense, mul_transpose_dense, Structure, Symmetry};

/// Which Krylov method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Krylov {
    /// Conjugate gradients: symmetric positive definite matrices (structure must be symmetric).
    Cg,
    /// BiCGSTAB: general matrices; the adjoint runs BiCGSTAB on Aᵀ.
    BiCgStab,
}

/// An iterative solver with a Jacobi preconditioner.
///
/// The solve node's adjoint solves Aᵀ Λ = Ḡ with the same method and tolerance, so the gradient's
/// accuracy follows the tolerance (tests: relative tolerance 1e-12 gives gradients within ~1e-9 of
/// the direct solver's).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Iterative {
    /// The method.
    pub method: Krylov,
    /// Stop when ‖b − A x‖ ≤ `relative_tolerance` · ‖b‖.
    pub relative_tolerance: f64,
    /// Iteration limit per right-hand side.
    pub max_iterations: usize,
    /// Where the iterations run ([`Device::Cuda`]: CG with Jacobi, f64, all columns at once).
    pub device: Device,
}

impl Iterative {
    /// CG with the given relative tolerance and iteration limit (per right-hand side).
    pub fn cg(relative_tolerance: f64, max_iterations: usize) -> Self {
        Iterative {
            method: Krylov::Cg,
            relative_tolerance,
            max_iterations,
            device: Device::Cpu,
        }
    }
    /// The same settings on another device.
    pub fn on(self, device: Device) -> Self {
        Iterative { device, ..self }
    }
    /// BiCGSTAB with the given tolerance and iteration limit.
    pub fn bicgstab(relative_tolerance: f64, max_iterations: usize) -> Self {
        Iterative {
            method: Krylov::BiCgStab,
            relative_tolerance,
            max_iterations,
            device: Device::Cpu,
        }
    }
}

/// The stored operator of an iterative "factorization".
struct Operator {
    settings: Iterative,
    structure: Arc<Structure>,
    values: Vec<f64>,
    /// 1 / diag(A).
    inv_diag: DVector<f64>,
}

impl Factorizer for Iterative {
    fn factorize(&self, structure: &Arc<Structure>, values: &[f64]) -> Result<Arc<Factor>> {
        let n = structure.nrows();
        if n != structure.ncols() {
            return Err(Error::Unsupported {
                reason: format!(
                    "cannot solve a non-square {}×{} system",
                    n,
                    structure.ncols()
                ),
            });
        }
        structure.check_values(values)?;
        if self.method == Krylov::Cg && structure.symmetry() == Symmetry::General {
            return Err(Error::Unsupported {
                reason: "CG needs a structure declared symmetric (Symmetry::Full or Symmetry::Lower); use BiCGSTAB".into(),
            });
        }
        structure.check_symmetric_values(values)?;
        if let Device::Cuda { ordinal, .. } = self.device {
            return backend::factor_iterative(structure, values, self, ordinal);
        }
        let inv_diag = DVector::from_vec(super::jacobi_inverse_diagonal(structure, values)?);
        Ok(Arc::new(Operator {
            settings: *self,
            structure: structure.clone(),
            values: values.to_vec(),
            inv_diag,
        }))
    }
}

impl Operator {
    fn apply(&self, x: &DVector<f64>, transpose: bool) -> DVector<f64> {
        let xm = DMatrix::from_column_slice(x.len(), 1, x.as_slice());
        let y = if transpose {
            mul_transpose_dense(&self.structure, &self.values, &xm)
        } else {
            mul_dense(&self.structure, &self.values, &xm)
        };
        DVector::from_column_slice(y.as_slice())
    }

    fn solve_column(&self, b: &DVector<f64>, transpose: bool) -> Result<DVector<f64>> {
        let b_norm = b.norm();
        if b_norm == 0.0 {
            return Ok(DVector::zeros(b.len()));
        }
        let tol = self.settings.relative_tolerance * b_norm;
        let precondition = |r: &DVector<f64>| r.component_mul(&self.inv_diag);
        let mut x = DVector::zeros(b.len());
        let mut r = b.clone();
        let not_converged = |iterations: usize, r: &DVector<f64>| Error::NotConverged {
            iterations,
            relative_residual: r.norm() / b_norm,
        };
        match self.settings.method {
            Krylov::Cg => {
                let mut z = precondition(&r);
                let mut p = z.clone();
                let mut rz = r.dot(&z);
                for it in 0..self.settings.max_iterations {
                    let ap = self.apply(&p, false);
                    let alpha = rz / p.dot(&ap);
                    x.axpy(alpha, &p, 1.0);
                    r.axpy(-alpha, &ap, 1.0);
                    if r.norm() <= tol {
                        return Ok(x);
                    }
                    if !alpha.is_finite() {
                        return Err(not_converged(it + 1, &r));
                    }
                    z = precondition(&r);
                    let rz_new = r.dot(&z);
                    p = &z + &p * (rz_new / rz);
                    rz = rz_new;
                }
                Err(not_converged(self.settings.max_iterations, &r))
            }
            Krylov::BiCgStab => {
                let r_hat = r.clone();
                let (mut rho, mut alpha, mut omega) = (1.0, 1.0, 1.0);
                let mut v = DVector::zeros(b.len());
                let mut p = DVector::zeros(b.len());
                for it in 0..self.settings.max_iterations {
                    let rho_new = r_hat.dot(&r);
                    let beta = (rho_new / rho) * (alpha / omega);
                    rho = rho_new;
                    p = &r + (&p - &v * omega) * beta;
                    let y = precondition(&p);
                    v = self.apply(&y, transpose);
                    alpha = rho / r_hat.dot(&v);
                    let s = &r - &v * alpha;
                    x.axpy(alpha, &y, 1.0);
                    if s.norm() <= tol {
                        return Ok(x);
                    }
                    let z = precondition(&s);
                    let t = self.apply(&z, transpose);
                    omega = t.dot(&s) / t.dot(&t);
                    x.axpy(omega, &z, 1.0);
                    r = &s - &t * omega;
                    if r.norm() <= tol {
                        return Ok(x);
                    }
                    if !(alpha.is_finite() && omega.is_finite() && omega != 0.0) {
                        return Err(not_converged(it + 1, &r));
                    }
                }
                Err(not_converged(self.settings.max_iterations, &r))
            }
        }
    }

    fn solve_all(&self, rhs: &mut DMatrix<f64>, transpose: bool) -> Result<()> {
        for mut col in rhs.column_iter_mut() {
            let b = DVector::from_column_slice(col.as_slice());
            let x = self.solve_column(&b, transpose)?;
            col.copy_from(&x);
        }
        Ok(())
    }
}

impl Factorization for Operator {
    fn solve_in_place(&self, rhs: &mut DMatrix<f64>) -> Result<()> {
        self.solve_all(rhs, false)
    }
    fn solve_transpose_in_place(&self, rhs: &mut DMatrix<f64>) -> Result<()> {
        // CG is only used on symmetric A, where Aᵀ = A.
        self.solve_all(rhs, self.settings.method == Krylov::BiCgStab)
    }
    fn dim(&self) -> usize {
        self.structure.nrows()
    }
    fn describe(&self) -> String {
        format!(
            "{:?} + Jacobi, relative tolerance {:e}",
            self.settings.method, self.settings.relative_tolerance
        )
    }
}
