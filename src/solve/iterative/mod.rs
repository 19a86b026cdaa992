//! Krylov solvers as [`Factorizer`]s: CG (SPD), MINRES (symmetric, possibly indefinite),
//! BiCGSTAB and restarted GMRES(m) (general), with Jacobi, IC(0) or ILU(0) preconditioning.
//!
//! "Factoring" stores A in CSR and computes the preconditioner; every solve (forward, and the
//! adjoint with Aᵀ and Mᵀ — for the symmetric methods A itself) iterates each column, columns in
//! parallel with rayon (each column's arithmetic is sequential, so results do not depend on the
//! thread count). A solve that misses its tolerance is [`Error::NotConverged`] — never a silent
//! wrong gradient. The achieved residuals of the last forward and adjoint solves are kept with
//! the factorization ([`Factorization::solve_info`], read through
//! [`Tape::solve_info`](crate::Tape::solve_info)).

mod krylov;
pub(crate) mod precond;

use std::sync::{Arc, Mutex};

use nalgebra::DMatrix;
use rayon::prelude::*;

use super::{Factor, Factorization, Factorizer};
use crate::backend::{self, Device};
use crate::error::{Error, Result};
use crate::sparse::{Structure, Symmetry};
use krylov::System;
pub use precond::Preconditioner;
use precond::{Csr, Precond};

/// Which Krylov method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Krylov {
    /// Conjugate gradients: symmetric positive definite A (structure declared symmetric).
    Cg,
    /// MINRES: symmetric A, positive definite or indefinite (structure declared symmetric).
    Minres,
    /// BiCGSTAB: general A; the adjoint runs BiCGSTAB on Aᵀ.
    BiCgStab,
    /// Restarted GMRES(m): general A; the adjoint runs GMRES(m) on Aᵀ.
    Gmres {
        /// Krylov subspace dimension before a restart (m).
        restart: usize,
    },
}

impl Krylov {
    fn symmetric_only(self) -> bool {
        matches!(self, Krylov::Cg | Krylov::Minres)
    }
}

/// Iterations and relative residual ‖b − A x‖/‖b‖ reached (the worst column of a solve).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Convergence {
    /// Iterations of the slowest column.
    pub iterations: usize,
    /// Largest relative residual over the columns.
    pub relative_residual: f64,
}

/// What the last forward and adjoint solves of a factorization achieved (`None`: not run yet, or
/// a direct solver, which does not iterate).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SolveInfo {
    /// The forward solve A X = B.
    pub forward: Option<Convergence>,
    /// The adjoint solve Aᵀ Λ = Ḡ.
    pub adjoint: Option<Convergence>,
    /// For direct factorizations: the reciprocal condition estimate 1/κ₁(A) (Hager–Higham, as
    /// LAPACK's `xGECON`), filled in by [`Tape::solve_info`](crate::Tape::solve_info). About
    /// −log₁₀ of it digits of the solution and gradient are lost to rounding.
    pub reciprocal_condition: Option<f64>,
}

/// Previous solutions for warm starts, shared by the clones of one [`Iterative`].
#[derive(Debug, Default)]
struct WarmStarts {
    forward: Option<DMatrix<f64>>,
    adjoint: Option<DMatrix<f64>>,
}

/// A preconditioned Krylov solver.
///
/// Stopping rule: ‖b − A x‖ ≤ max(`relative_tolerance` · ‖b‖, `absolute_tolerance`) for every
/// column, checked on the true residual. The adjoint uses the same method and tolerance, so the
/// gradient's accuracy follows the tolerance: in the tests the relative gradient error against
/// the direct solver stays below ~10 × the relative tolerance (tests/engine/iterative.rs).
///
/// ```
/// use sparsegrad::{Iterative, Krylov, Preconditioner};
/// let cg = Iterative::cg(1e-10, 500).with_preconditioner(Preconditioner::Ic0);
/// let gmres = Iterative::gmres(30, 1e-10, 2000).with_preconditioner(Preconditioner::Ilu0);
/// assert_eq!(gmres.method, Krylov::Gmres { restart: 30 });
/// # let _ = cg;
/// ```
#[derive(Debug, Clone)]
pub struct Iterative {
    /// The method.
    pub method: Krylov,
    /// The preconditioner (Jacobi by default).
    pub preconditioner: Preconditioner,
    /// Relative tolerance on ‖b − A x‖ / ‖b‖.
    pub relative_tolerance: f64,
    /// Absolute tolerance on ‖b − A x‖ (0 by default).
    pub absolute_tolerance: f64,
    /// Iteration limit per right-hand side (GMRES: inner iterations in total).
    pub max_iterations: usize,
    /// Where the iterations run ([`Device::Cuda`]: CG with Jacobi, f64, all columns at once).
    pub device: Device,
    warm: Option<Arc<Mutex<WarmStarts>>>,
}

impl Iterative {
    fn new(method: Krylov, relative_tolerance: f64, max_iterations: usize) -> Self {
        Iterative {
            method,
            preconditioner: Preconditioner::Jacobi,
            relative_tolerance,
            absolute_tolerance: 0.0,
            max_iterations,
            device: Device::Cpu,
            warm: None,
        }
    }
    /// CG with the given relative tolerance and iteration limit (per right-hand side).
    ///
    /// For symmetric positive definite A. pᵀAp ≤ 0 (A indefinite, or singular with the iterate
    /// leaving its range) is [`Error::Breakdown`]. On a *consistent* singular system (e.g. a pure
    /// Neumann Laplacian with a right-hand side summing to zero) CG converges to *a* solution — the
    /// one nearest the start — and returns `Ok`; its gradient is then the gradient of that choice,
    /// which is not unique. Direct solvers refuse such a matrix; pin a node or regularize instead.
    pub fn cg(relative_tolerance: f64, max_iterations: usize) -> Self {
        Self::new(Krylov::Cg, relative_tolerance, max_iterations)
    }
    /// MINRES (symmetric, possibly indefinite A).
    ///
    /// When the Krylov space is exhausted without reaching the tolerance (A singular and b not
    /// in its range) it returns [`Error::Breakdown`]. As with CG, a consistent singular system
    /// converges to one of its solutions and returns `Ok` (see [`Iterative::cg`]).
    pub fn minres(relative_tolerance: f64, max_iterations: usize) -> Self {
        Self::new(Krylov::Minres, relative_tolerance, max_iterations)
    }
    /// BiCGSTAB with the given tolerance and iteration limit.
    ///
    /// A cycle that breaks down (ρ = r̂ᵀr, r̂ᵀv or ω vanish) or whose updated residual claims a
    /// convergence the true residual does not confirm is restarted from the true residual; three
    /// restarts without progress are [`Error::Breakdown`] (stagnation; try GMRES). Singular
    /// systems are not detected: a consistent one may return `Ok` with one of its solutions.
    pub fn bicgstab(relative_tolerance: f64, max_iterations: usize) -> Self {
        Self::new(Krylov::BiCgStab, relative_tolerance, max_iterations)
    }
    /// GMRES restarted every `restart` iterations (capped at n, where the Krylov space stops
    /// growing, and at the iteration limit; the basis is allocated up front, so a restart length
    /// whose basis does not fit in memory is [`Error::OutOfMemory`]). Singular systems are not
    /// detected: a consistent one may return `Ok` with one of its solutions.
    pub fn gmres(restart: usize, relative_tolerance: f64, max_iterations: usize) -> Self {
        Self::new(
            Krylov::Gmres { restart },
            relative_tolerance,
            max_iterations,
        )
    }
    /// The same solver with another preconditioner.
    pub fn with_preconditioner(self, preconditioner: Preconditioner) -> Self {
        Iterative {
            preconditioner,
            ..self
        }
    }
    /// The same solver with an absolute residual tolerance as well.
    pub fn with_absolute_tolerance(self, absolute_tolerance: f64) -> Self {
        Iterative {
            absolute_tolerance,
            ..self
        }
    }
    /// Warm starts: each forward solve starts from the previous forward solution, each adjoint
    /// solve from the previous adjoint solution (when the shapes match), shared by all clones of
    /// this solver — the right setting inside an optimizer loop, where consecutive systems are
    /// close. Results then depend on the call history; do not share one warm-started solver
    /// between parallel batch items if bit-identical results are needed.
    pub fn with_warm_start(self) -> Self {
        Iterative {
            warm: Some(Arc::default()),
            ..self
        }
    }
    /// The same settings on another device.
    pub fn on(self, device: Device) -> Self {
        Iterative { device, ..self }
    }
}

/// The stored operator of an iterative "factorization".
struct Operator {
    settings: Iterative,
    a: Csr,
    m: Precond,
    info: Mutex<SolveInfo>,
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
        let symmetric = structure.symmetry() != Symmetry::General;
        if self.method.symmetric_only() && !symmetric {
            return Err(Error::Unsupported {
                reason: format!(
                    "{:?} needs a structure declared symmetric (Symmetry::Full or Symmetry::Lower); use BiCGSTAB or GMRES",
                    self.method
                ),
            });
        }
        match self.preconditioner {
            Preconditioner::Ic0 if !symmetric => {
                return Err(Error::Unsupported {
                    reason: "IC(0) needs a structure declared symmetric; use ILU(0)".into(),
                })
            }
            Preconditioner::Ilu0 if self.method.symmetric_only() => {
                return Err(Error::Unsupported {
                    reason: format!(
                        "{:?} needs a symmetric preconditioner; ILU(0) is not (use IC(0))",
                        self.method
                    ),
                })
            }
            _ => {}
        }
        structure.check_symmetric_values(values)?;
        if let Device::Cuda { ordinal, .. } = self.device {
            return backend::factor_iterative(structure, values, self, ordinal);
        }
        let a = Csr::new(structure, values);
        let m = Precond::new(self.preconditioner, &a, self.method == Krylov::Minres)?;
        Ok(Arc::new(Operator {
            settings: self.clone(),
            a,
            m,
            info: Mutex::default(),
        }))
    }
}

impl Operator {
    fn solve_all(&self, rhs: &mut DMatrix<f64>, adjoint: bool) -> Result<()> {
        let s = &self.settings;
        let (n, k) = rhs.shape();
        let system = System {
            a: &self.a,
            m: &self.m,
            // Symmetric methods see A = Aᵀ; the general ones solve with Aᵀ and Mᵀ.
            transpose: adjoint && !s.method.symmetric_only(),
            rtol: s.relative_tolerance,
            atol: s.absolute_tolerance,
            max_iterations: s.max_iterations,
        };
        let b = rhs.clone();
        // Initial guesses: the previous solution of the same kind and shape, or zero.
        let guess = s.warm.as_ref().and_then(|w| {
            let w = w.lock().unwrap_or_else(|p| p.into_inner());
            let previous = if adjoint { &w.adjoint } else { &w.forward };
            previous.as_ref().filter(|x| x.shape() == (n, k)).cloned()
        });
        match guess {
            Some(x0) => rhs.copy_from(&x0),
            None => rhs.fill(0.0),
        }
        let results: Vec<Result<Convergence>> = rhs
            .as_mut_slice()
            .par_chunks_mut(n.max(1))
            .zip(b.as_slice().par_chunks(n.max(1)))
            .map(|(x, b)| system.solve(s.method, b, x))
            .collect();
        let mut total = Convergence::default();
        for r in results {
            let c = r?;
            total.iterations = total.iterations.max(c.iterations);
            total.relative_residual = total.relative_residual.max(c.relative_residual);
        }
        {
            let mut info = self.info.lock().unwrap_or_else(|p| p.into_inner());
            if adjoint {
                info.adjoint = Some(total);
            } else {
                info.forward = Some(total);
            }
        }
        if let Some(w) = &s.warm {
            let mut w = w.lock().unwrap_or_else(|p| p.into_inner());
            let slot = if adjoint {
                &mut w.adjoint
            } else {
                &mut w.forward
            };
            *slot = Some(rhs.clone());
        }
        Ok(())
    }
}

impl Factorization for Operator {
    fn solve_in_place(&self, rhs: &mut DMatrix<f64>) -> Result<()> {
        self.solve_all(rhs, false)
    }
    fn solve_transpose_in_place(&self, rhs: &mut DMatrix<f64>) -> Result<()> {
        self.solve_all(rhs, true)
    }
    fn dim(&self) -> usize {
        self.a.n
    }
    fn describe(&self) -> String {
        format!(
            "{:?} + {:?}, relative tolerance {:e}",
            self.settings.method, self.settings.preconditioner, self.settings.relative_tolerance
        )
    }
    fn solve_info(&self) -> SolveInfo {
        *self.info.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn is_iterative(&self) -> bool {
        true
    }
}
