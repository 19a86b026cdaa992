//! Krylov solver configuration: [`Iterative`] (method, preconditioner, tolerances, warm starts,
//! device) and what a solve reports ([`SolveInfo`], [`Convergence`]). The solvers themselves are
//! in the backend (`backend/cpu/iterative`, and CG on the GPU); `Iterative` is a
//! [`Factorizer`](super::Factorizer): "factoring" stores A and the preconditioner, every solve
//! (forward, and the adjoint with Aᵀ and Mᵀ — for the symmetric methods A itself) iterates each
//! column, columns in parallel. A solve that misses its tolerance is
//! [`Error::NotConverged`](crate::Error::NotConverged) — never a silent wrong gradient.

use std::sync::{Arc, Mutex};

use nalgebra::DMatrix;

use super::Device;

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
    /// Whether the method needs a symmetric A (CG, MINRES).
    pub(crate) fn symmetric_only(self) -> bool {
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
pub(crate) struct WarmStarts {
    pub(crate) forward: Option<DMatrix<f64>>,
    pub(crate) adjoint: Option<DMatrix<f64>>,
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
    pub(crate) warm: Option<Arc<Mutex<WarmStarts>>>,
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
    /// leaving its range) is [`Error::Breakdown`](crate::Error::Breakdown). On a *consistent* singular system (e.g. a pure
    /// Neumann Laplacian with a right-hand side summing to zero) CG converges to *a* solution — the
    /// one nearest the start — and returns `Ok`; its gradient is then the gradient of that choice,
    /// which is not unique. Direct solvers refuse such a matrix; pin a node or regularize instead.
    pub fn cg(relative_tolerance: f64, max_iterations: usize) -> Self {
        Self::new(Krylov::Cg, relative_tolerance, max_iterations)
    }
    /// MINRES (symmetric, possibly indefinite A).
    ///
    /// When the Krylov space is exhausted without reaching the tolerance (A singular and b not
    /// in its range) it returns [`Error::Breakdown`](crate::Error::Breakdown). As with CG, a consistent singular system
    /// converges to one of its solutions and returns `Ok` (see [`Iterative::cg`]).
    pub fn minres(relative_tolerance: f64, max_iterations: usize) -> Self {
        Self::new(Krylov::Minres, relative_tolerance, max_iterations)
    }
    /// BiCGSTAB with the given tolerance and iteration limit.
    ///
    /// A cycle that breaks down (ρ = r̂ᵀr, r̂ᵀv or ω vanish) or whose updated residual claims a
    /// convergence the true residual does not confirm is restarted from the true residual; three
    /// restarts without progress are [`Error::Breakdown`](crate::Error::Breakdown) (stagnation; try GMRES). Singular
    /// systems are not detected: a consistent one may return `Ok` with one of its solutions.
    pub fn bicgstab(relative_tolerance: f64, max_iterations: usize) -> Self {
        Self::new(Krylov::BiCgStab, relative_tolerance, max_iterations)
    }
    /// GMRES restarted every `restart` iterations (capped at n, where the Krylov space stops
    /// growing, and at the iteration limit; the basis is allocated up front, so a restart length
    /// whose basis does not fit in memory is [`Error::OutOfMemory`](crate::Error::OutOfMemory)). Singular systems are not
    /// detected: a consistent one may return `Ok` with one of its solutions.
    pub fn gmres(restart: usize, relative_tolerance: f64, max_iterations: usize) -> Self {
        Self::new(
            Krylov::Gmres { restart },
            relative_tolerance,
            max_iterations,
        )
    }
    /// Checks the settings: relative tolerance in [0, 1) (at 1 or above, x = 0 already
    /// "converges"), absolute tolerance finite and ≥ 0, at least one iteration, a GMRES restart
    /// length of at least 1. Every solve runs this first (the fields are public, so a value built
    /// by hand is checked too); call it to check settings early.
    ///
    /// ```
    /// use sparsegrad::{Error, Iterative};
    /// assert!(Iterative::cg(1e-10, 100).validate().is_ok());
    /// assert!(matches!(Iterative::bicgstab(f64::INFINITY, 10).validate(), Err(Error::InvalidArgument { .. })));
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) naming the setting.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |what: &'static str, reason: String| {
            Err(crate::Error::InvalidArgument { what, reason })
        };
        let rtol = self.relative_tolerance;
        if !(rtol.is_finite() && (0.0..1.0).contains(&rtol)) {
            return bad(
                "Krylov relative tolerance",
                format!("{rtol} is not in [0, 1): at 1 or above the zero vector already passes, and NaN or a negative value can never be met"),
            );
        }
        let atol = self.absolute_tolerance;
        if !(atol.is_finite() && atol >= 0.0) {
            return bad(
                "Krylov absolute tolerance",
                format!("{atol} is not a finite value ≥ 0"),
            );
        }
        if self.max_iterations == 0 {
            return bad(
                "Krylov iteration limit",
                "0 iterations: no solve could run".into(),
            );
        }
        if let Krylov::Gmres { restart: 0 } = self.method {
            return bad(
                "GMRES restart length",
                "0: each cycle needs at least one Krylov vector".into(),
            );
        }
        Ok(())
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

/// Which preconditioner an [`Iterative`] solver applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Preconditioner {
    /// None (M = I).
    None,
    /// Jacobi: M = diag(A) (|diag(A)| for MINRES, which needs a positive definite M).
    #[default]
    Jacobi,
    /// Incomplete Cholesky with zero fill, M = L Lᵀ on the lower pattern of A: symmetric
    /// structures only (CG, MINRES, and the general methods on symmetric matrices).
    Ic0,
    /// Incomplete LU with zero fill, M = L U on the pattern of A: any square structure; the adjoint
    /// applies Mᵀ = Uᵀ Lᵀ. Not symmetric, so not for CG or MINRES.
    Ilu0,
}
