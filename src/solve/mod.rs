//! The solve node's contract and mathematics, free of the tape and of the implementations.
//!
//! - The traits: [`Factorizer`] (anything that factors a stored matrix) and [`Factorization`]
//!   (solve with A and with Aᵀ; optionally a fused adjoint returning an [`Adjoint`]).
//! - The configurations: [`Solver`] — a method ([`Method::Cholesky`], [`Method::Ldlt`],
//!   [`Method::Lu`], [`Method::Auto`]), an [`Implementation`] ([`Implementation::Fast`]: faer's
//!   supernodal/simplicial factorizations with AMD/COLAMD orderings;
//!   [`Implementation::Reference`]: nalgebra-sparse's `CscCholesky`), a [`Device`], a residual
//!   check and a condition limit — and [`Iterative`] for the Krylov solvers. They implement
//!   [`Factorizer`] in the backend (`Solver::factorize` dispatches there).
//! - [`node`]: the forward pass, the adjoint and the gradient at stored entries, used by the tape,
//!   batches and the `sparsegrad` command; [`condition_estimate`] reads a factorization's
//!   conditioning.
//!
//! Symbolic analyses live in the [`Structure`] and are computed once per pattern.

mod analysis;
mod condition;
mod device;
mod iterative;
pub mod node;

use std::sync::Arc;

use nalgebra::DMatrix;

use crate::error::{Error, Result};

use crate::sparse::{mul_dense, Structure, Symmetry};
pub use analysis::{AnalysisReport, Prediction};
pub(crate) use condition::{check_not_singular, Gate};
pub use condition::{condition_estimate, norm1};
pub use device::{Device, Precision};
pub use iterative::{Convergence, Iterative, Krylov, Preconditioner, SolveInfo};

/// A numeric factorization of a square matrix A that can solve with A and with Aᵀ.
///
/// Implementations solve all columns of `rhs` in place.
pub trait Factorization: Send + Sync {
    /// rhs ← A⁻¹ rhs.
    ///
    /// # Errors
    /// Implementation-defined (e.g. a singular factor discovered during the solve).
    fn solve_in_place(&self, rhs: &mut DMatrix<f64>) -> Result<()>;
    /// rhs ← A⁻ᵀ rhs (the adjoint solve).
    ///
    /// # Errors
    /// As [`Factorization::solve_in_place`].
    fn solve_transpose_in_place(&self, rhs: &mut DMatrix<f64>) -> Result<()>;
    /// Dimension n of A.
    fn dim(&self) -> usize;
    /// A short description ("faer LLᵀ (supernodal), nnz(L) = …"), for people; programs read
    /// [`Factorization::method`].
    fn describe(&self) -> String;

    /// The method that computed this factor — [`Method::Cholesky`], [`Method::Ldlt`] or
    /// [`Method::Lu`], never [`Method::Auto`] (an automatic choice reports what it chose, LU
    /// after a fallback). `None` for Krylov solvers, which hold no factor, and for
    /// implementations that do not say (the default).
    fn method(&self) -> Option<Method> {
        None
    }

    /// The arithmetic the solves run in — [`Precision::F64`], [`Precision::F32`] or
    /// [`Precision::Mixed`], never [`Precision::Auto`] (an automatic choice reports what it
    /// chose; after a fallback to f64, `F64`). Default: `F64`.
    fn precision(&self) -> Precision {
        Precision::F64
    }

    /// Bytes this factorization holds for its factor: numeric values plus the index arrays of
    /// its symbolic structure and ordering (shared with later factorizations on the same
    /// structure). `None` when the implementation does not say (the default).
    fn stored_bytes(&self) -> Option<usize> {
        None
    }

    /// What the last forward and adjoint solves achieved (iterative solvers report iterations
    /// and residuals; the default, for direct solvers, reports nothing).
    fn solve_info(&self) -> SolveInfo {
        SolveInfo::default()
    }

    /// Whether solves are approximate (Krylov iterations to a tolerance) rather than exact up to
    /// rounding (a factorization). Only exact ones get a condition estimate in
    /// [`Tape::solve_info`](crate::Tape::solve_info). Default: `false`.
    fn is_iterative(&self) -> bool {
        false
    }

    /// Why an automatic method choice ([`Solver::auto`]) fell back to LU, if it did.
    fn fallback_reason(&self) -> Option<&str> {
        None
    }

    /// Optionally performs the solve node's whole adjoint where this factorization lives (the GPU
    /// backend does): Λ = A⁻ᵀ Ḡ and, when `want_a`, Ā at the stored entries of `structure`
    /// (Ā_e = −Σ_c Λ_ic X_jc, plus the mirrored term off the diagonal for one-triangle storage).
    /// The default returns `Ok(None)`: the tape then calls
    /// [`Factorization::solve_transpose_in_place`] and scatters on the CPU.
    ///
    /// # Errors
    /// As [`Factorization::solve_transpose_in_place`].
    fn fused_adjoint(
        &self,
        structure: &Structure,
        g: &DMatrix<f64>,
        x: &DMatrix<f64>,
        want_a: bool,
    ) -> Result<Option<Adjoint>> {
        let _ = (structure, g, x, want_a);
        Ok(None)
    }
    /// log |det A| and the sign of det A, from the factor's pivots. The default (and every
    /// factorization without one: LU, Krylov, MUMPS, GPU) is [`Error::Unsupported`].
    ///
    /// # Errors
    /// [`Error::Unsupported`] where the factorization cannot give it.
    fn log_determinant(&self) -> Result<LogDet> {
        Err(Error::Unsupported {
            reason: format!("{} gives no log-determinant", self.describe()),
        })
    }
    /// The selected inverse: (A⁻¹)_ij at every stored entry (i, j) of `structure` (the pattern
    /// this factorization was made from), in its entry order — computed on the factor's own
    /// pattern by the Takahashi recurrences, never a dense inverse. For one-triangle storage an
    /// entry and its mirror share the value (A⁻¹ is symmetric). The default is
    /// [`Error::Unsupported`] (only the CPU Cholesky / LDLᵀ factors have it).
    ///
    /// # Errors
    /// [`Error::Unsupported`] where the factorization cannot give it;
    /// [`Error::StructureMismatch`] for a structure other than the one factored;
    /// [`Error::OutOfMemory`].
    fn selected_inverse(&self, structure: &Structure) -> Result<Vec<f64>> {
        let _ = structure;
        Err(Error::Unsupported {
            reason: format!("{} gives no selected inverse", self.describe()),
        })
    }
    /// Draws from the Gaussian with precision A: each column z of `z` becomes x = Pᵀ L⁻ᵀ z (with
    /// D^{-1/2} for LDLᵀ), so that standard normal columns give x ~ N(0, A⁻¹) — one backward
    /// substitution with the kept factor per column. Default: [`Error::Unsupported`] (the CPU
    /// Cholesky / LDLᵀ factors have it).
    ///
    /// # Errors
    /// [`Error::Unsupported`]; [`Error::ShapeMismatch`] unless `z` has n rows;
    /// [`Error::NotPositiveDefinite`] for an LDLᵀ factor with a pivot ≤ 0.
    fn sample_in_place(&self, z: &mut DMatrix<f64>) -> Result<()> {
        let _ = z;
        Err(Error::Unsupported {
            reason: format!("{} cannot draw samples", self.describe()),
        })
    }
    /// The diagonal of A⁻¹ (marginal variances of a Gaussian with precision A), by selected
    /// inversion. Default: [`Error::Unsupported`], as [`Factorization::selected_inverse`].
    ///
    /// # Errors
    /// As [`Factorization::selected_inverse`].
    fn diag_inverse(&self) -> Result<Vec<f64>> {
        Err(Error::Unsupported {
            reason: format!("{} gives no selected inverse", self.describe()),
        })
    }
}

/// log |det A| with the sign of det A ([`Factorization::log_determinant`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogDet {
    /// log |det A|.
    pub log_abs: f64,
    /// The sign of det A: 1.0 or −1.0.
    pub sign: f64,
}

/// The solve node's adjoint, as [`node::adjoint`] and [`Factorization::fused_adjoint`] return it.
#[derive(Debug, Clone, PartialEq)]
pub struct Adjoint {
    /// Λ = A⁻ᵀ Ḡ (n×k): the gradient with respect to B.
    pub lambda: DMatrix<f64>,
    /// Ā at A's stored entries (in structure order), when it was asked for.
    pub grad_values: Option<Vec<f64>>,
}

/// A shared numeric factorization, as kept by the solve node.
pub type Factor = dyn Factorization;

/// Anything the solve node can ask for a factorization: the built-in [`Solver`], or a solver of
/// your own. The node calls [`Factorizer::factorize`] once in the forward pass, solves with the
/// returned [`Factorization`], calls [`Factorizer::check_residual`], keeps the factorization and
/// uses its `solve_transpose_in_place` in the backward pass — so a user solver gets exact
/// gradients for A (at its stored entries) and B without writing any adjoint code.
///
/// ```
/// use std::sync::Arc;
/// use nalgebra::DMatrix;
/// use sparsegrad::{Factor, Factorization, Factorizer, Result, Structure, Symmetry, Tape};
///
/// /// A dense LU, for small systems.
/// struct DenseLu;
/// struct DenseFactor(nalgebra::LU<f64, nalgebra::Dyn, nalgebra::Dyn>, nalgebra::LU<f64, nalgebra::Dyn, nalgebra::Dyn>);
/// impl Factorization for DenseFactor {
///     fn solve_in_place(&self, rhs: &mut DMatrix<f64>) -> Result<()> {
///         self.0.solve_mut(rhs);
///         Ok(())
///     }
///     fn solve_transpose_in_place(&self, rhs: &mut DMatrix<f64>) -> Result<()> {
///         self.1.solve_mut(rhs);
///         Ok(())
///     }
///     fn dim(&self) -> usize { self.0.l().nrows() }
///     fn describe(&self) -> String { "dense LU".into() }
/// }
/// impl Factorizer for DenseLu {
///     fn factorize(&self, s: &Arc<Structure>, values: &[f64]) -> Result<Arc<Factor>> {
///         let mut a = DMatrix::zeros(s.nrows(), s.ncols());
///         for j in 0..s.ncols() {
///             for k in s.col_ptr()[j]..s.col_ptr()[j + 1] {
///                 a[(s.row_idx()[k], j)] = values[k];
///             }
///         }
///         Ok(Arc::new(DenseFactor(a.clone().lu(), a.transpose().lu())))
///     }
/// }
///
/// let s = Structure::new(2, 2, vec![0, 2, 3], vec![0, 1, 1], Symmetry::General).unwrap();
/// let tape = Tape::new();
/// let a = tape.sparse_var(&s, &[2.0, 1.0, 4.0]).unwrap(); // [[2, 0], [1, 4]]
/// let b = tape.var(DMatrix::from_column_slice(2, 1, &[2.0, 9.0]));
/// let x = tape.solve(a, b, &DenseLu).unwrap();
/// assert_eq!(x.value().unwrap().as_slice(), &[1.0, 2.0]);
/// let g = tape.backward(x.sum_squares()).unwrap();
/// // B̄ = A⁻ᵀ (2x) = [[2, 1], [0, 4]]⁻¹ [2, 4] = [0.5, 1]
/// assert_eq!(g.wrt(b).as_slice(), &[0.5, 1.0]);
/// ```
pub trait Factorizer: Send + Sync {
    /// A numeric factorization of the matrix with `values` on `structure`.
    ///
    /// # Errors
    /// Whatever the solver reports (singular, not positive definite, …).
    fn factorize(&self, structure: &Arc<Structure>, values: &[f64]) -> Result<Arc<Factor>>;

    /// Accepts or rejects a factorization before it is used (default: accept). The built-in
    /// [`Solver`] refuses one whose condition estimate exceeds its
    /// [condition limit](Solver::with_condition_limit).
    ///
    /// # Errors
    /// An error describing why the factorization is not trusted.
    fn check_factorization(
        &self,
        structure: &Structure,
        values: &[f64],
        factor: &Factor,
    ) -> Result<()> {
        let _ = (structure, values, factor);
        Ok(())
    }

    /// Combines this process's verdict on an input check with the verdicts of the other processes
    /// that take part in this solver's collective factorizations and solves (the MPI backend), so
    /// that every process returns an error when any one does and none waits forever inside a
    /// collective call. The solve node passes its input checks through it before factoring.
    /// Default (one process): the local verdict.
    ///
    /// # Errors
    /// The local error, or an error saying which other process refused its input.
    fn agree(&self, local: Result<()>) -> Result<()> {
        local
    }

    /// Accepts or rejects a forward solution X of A X = B (default: accept).
    ///
    /// # Errors
    /// An error describing why X is not trusted.
    fn check_residual(
        &self,
        structure: &Structure,
        values: &[f64],
        x: &DMatrix<f64>,
        b: &DMatrix<f64>,
    ) -> Result<()> {
        let _ = (structure, values, x, b);
        Ok(())
    }
}

/// Factorization method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Method {
    /// LLᵀ for symmetric positive definite matrices.
    Cholesky,
    /// LDLᵀ without pivoting for symmetric quasi-definite / indefinite matrices.
    Ldlt,
    /// LU with partial pivoting for general matrices; the adjoint uses a true transpose solve.
    Lu,
    /// Chosen from the matrix: Cholesky for a structure declared symmetric, falling back to LU
    /// when it is not positive definite (the factorization's
    /// [`fallback_reason`](Factorization::fallback_reason) says why); LU for a general structure.
    Auto,
}

impl Method {
    /// The lower-case name the command line and the Python package use: `cholesky`, `ldlt`,
    /// `lu`, `auto` ([`str::parse`] reads it back).
    ///
    /// ```
    /// use sparsegrad::Method;
    /// assert_eq!(Method::Ldlt.name(), "ldlt");
    /// assert_eq!("lu".parse::<Method>().unwrap(), Method::Lu);
    /// assert!("qr".parse::<Method>().is_err());
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Method::Cholesky => "cholesky",
            Method::Ldlt => "ldlt",
            Method::Lu => "lu",
            Method::Auto => "auto",
        }
    }
}

impl std::str::FromStr for Method {
    type Err = Error;

    /// Reads [`Method::name`]; anything else is [`Error::InvalidArgument`] listing the names.
    fn from_str(s: &str) -> Result<Self> {
        [Method::Auto, Method::Cholesky, Method::Ldlt, Method::Lu]
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| Error::InvalidArgument {
                what: "method",
                reason: format!("unknown method '{s}' (auto | cholesky | ldlt | lu)"),
            })
    }
}

/// The fill-reducing ordering of a Cholesky / LDLᵀ factorization, or the column ordering of an
/// LU ([`Solver::with_ordering`]; for LU, `Auto` and `Amd` are COLAMD and nested dissection is
/// computed on the graph of AᵀA, whose Cholesky factor bounds L and U under partial pivoting).
///
/// The symbolic analysis — ordering included — is computed once per [`Structure`] and ordering
/// and kept on the structure, so an optimization loop pays for it once.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Ordering {
    /// Chosen as CHOLMOD does: approximate minimum degree first; when its predicted factor is
    /// "3D-like" (flops per factor entry ≥ 500 and nnz(L) ≥ 5 nnz(A)) nested dissection is
    /// tried too and the ordering with fewer predicted flops kept. `Solver::analysis_report`
    /// says which and why.
    #[default]
    Auto,
    /// Approximate minimum degree (faer's AMD): the best choice for chains, 2D meshes and most
    /// irregular graphs.
    Amd,
    /// Nested dissection (METIS `NodeND`, vendored): far less fill on 3D meshes.
    NestedDissection,
    /// No reordering (the matrix as stored): for banded matrices and for tests.
    Natural,
    /// Reverse Cuthill–McKee on the graph of A + Aᵀ (SciPy's `reverse_cuthill_mckee`, MATLAB's
    /// `symrcm`): a small bandwidth and profile. Best for chains, strips and other long, thin
    /// meshes that are banded in some numbering the input does not use; on 2D and 3D meshes AMD
    /// and nested dissection give far less fill.
    ReverseCuthillMcKee,
    /// A permutation of your own: `perm[k]` is the original index of the k-th eliminated
    /// unknown (row k of P A Pᵀ is row `perm[k]` of A).
    Custom(Arc<[usize]>),
}

/// Which implementation performs the factorization (on the CPU; where solves run is the
/// [`Device`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Implementation {
    /// faer's sparse factorizations (default): fast, near-linear symbolic analysis.
    Fast,
    /// nalgebra-sparse's `CscCholesky` on the AMD-permuted matrix. Cholesky only. Its symbolic
    /// analysis is O(n²) (nalgebra-sparse 0.11), so use it for moderate n and cross-checks.
    Reference,
}

/// How to factor and solve a sparse system.
///
/// ```
/// use sparsegrad::{Implementation, Solver};
/// let fast = Solver::cholesky();
/// let reference = Solver::cholesky().with_implementation(Implementation::Reference);
/// let general = Solver::lu();
/// assert_ne!(fast, reference);
/// # let _ = general;
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Solver {
    pub(crate) method: Method,
    pub(crate) implementation: Implementation,
    pub(crate) residual_tolerance: Option<f64>,
    pub(crate) condition_limit: Option<f64>,
    pub(crate) device: Device,
    pub(crate) ordering: Ordering,
    pub(crate) precision: Precision,
}

/// The residual check's least bound for [`Precision::F32`] solves (their backward errors are
/// near ε₃₂ = 1.2e-7 by design).
pub const SINGLE_RESIDUAL_TOLERANCE: f64 = 1e-5;

/// Default bound on the normwise backward error ‖AX − B‖_F / (‖A‖_F ‖X‖_F + ‖B‖_F) of a solve.
pub const DEFAULT_RESIDUAL_TOLERANCE: f64 = 1e-8;

impl Solver {
    /// Sparse Cholesky (fast implementation). No residual check by default: a Cholesky factorization
    /// that completes with positive pivots is backward stable, so the check would only cost one
    /// more pass over A and X (enable it with [`Solver::with_residual_check`]).
    pub fn cholesky() -> Self {
        Solver {
            method: Method::Cholesky,
            implementation: Implementation::Fast,
            residual_tolerance: None,
            condition_limit: None,
            device: Device::Cpu,
            ordering: Ordering::Auto,
            precision: Precision::F64,
        }
    }
    /// Sparse LDLᵀ (fast implementation), for symmetric matrices that are not positive definite.
    /// LDLᵀ without pivoting is not backward stable, so the residual check is on by default.
    pub fn ldlt() -> Self {
        Solver {
            method: Method::Ldlt,
            implementation: Implementation::Fast,
            residual_tolerance: Some(DEFAULT_RESIDUAL_TOLERANCE),
            condition_limit: None,
            device: Device::Cpu,
            ordering: Ordering::Auto,
            precision: Precision::F64,
        }
    }
    /// Sparse LU (fast implementation), for general matrices. The residual check is on by default: it
    /// turns faer's silent results for numerically singular matrices into [`Error::Singular`].
    pub fn lu() -> Self {
        Solver {
            method: Method::Lu,
            ..Self::ldlt()
        }
    }
    /// The method chosen from the matrix ([`Method::Auto`]): Cholesky for a structure declared
    /// symmetric, LU (with its residual check) when that structure is not positive definite or
    /// the structure is general. The residual check is on (as for LU), so a Cholesky that
    /// completes on a numerically singular matrix is caught too.
    ///
    /// ```
    /// use sparsegrad::{Factorization, Solver, Structure, Symmetry};
    /// // [[1, 2], [2, 1]] is symmetric but indefinite: Cholesky fails, LU takes over.
    /// let s = Structure::new(2, 2, vec![0, 2, 3], vec![0, 1, 1], Symmetry::Lower).unwrap();
    /// let f = Solver::auto().factorize(&s, &[1.0, 2.0, 1.0]).unwrap();
    /// assert!(f.fallback_reason().unwrap().contains("not positive definite"));
    /// ```
    pub fn auto() -> Self {
        Solver {
            method: Method::Auto,
            ..Self::ldlt()
        }
    }
    /// The same method with another implementation.
    pub fn with_implementation(self, implementation: Implementation) -> Self {
        Solver {
            implementation,
            ..self
        }
    }
    /// Sets the bound on the backward error checked after every forward solve
    /// ([`DEFAULT_RESIDUAL_TOLERANCE`] by default for LDLᵀ and LU, off for Cholesky); `None` skips
    /// the check (saves one sparse matrix–matrix product per solve).
    pub fn with_residual_check(self, tolerance: Option<f64>) -> Self {
        Solver {
            residual_tolerance: tolerance,
            ..self
        }
    }
    /// Refuses factorizations whose estimated condition number κ₁(A) exceeds `limit` with
    /// [`Error::IllConditioned`] (off by default). The estimate (Hager–Higham, as LAPACK's
    /// `xGECON`/MATLAB's `rcond`) costs about 11 extra solves with the factor per factorization;
    /// a solution and its gradient keep about 16 − log₁₀ κ correct digits, so `1e12` keeps ~4.
    /// Without a limit the estimate is still available on demand from
    /// [`Tape::solve_info`](crate::Tape::solve_info).
    ///
    /// ```
    /// use sparsegrad::{Error, Solver, Structure, Symmetry};
    /// let s = Structure::new(2, 2, vec![0, 1, 2], vec![0, 1], Symmetry::Lower).unwrap();
    /// let solver = Solver::cholesky().with_condition_limit(1e12);
    /// let f = solver.factorize(&s, &[1.0, 1e-14]).unwrap();
    /// let refused = sparsegrad::Factorizer::check_factorization(&solver, &s, &[1.0, 1e-14], f.as_ref());
    /// assert!(matches!(refused, Err(Error::IllConditioned { .. })));
    /// ```
    pub fn with_condition_limit(self, limit: f64) -> Self {
        Solver {
            condition_limit: Some(limit),
            ..self
        }
    }
    /// The same solver with another fill-reducing ordering (Cholesky, LDLᵀ and LU on the fast
    /// implementation; the reference implementation always uses AMD). For LU it orders the
    /// columns: `Auto` and `Amd` are COLAMD, `NestedDissection` is METIS on the columns'
    /// intersection graph (half COLAMD's factorization time on a 32³ grid), `Natural` and
    /// `Custom` as given.
    ///
    /// ```
    /// use sparsegrad::{Ordering, Solver};
    /// let nd = Solver::cholesky().with_ordering(Ordering::NestedDissection);
    /// assert_eq!(nd.ordering(), &Ordering::NestedDissection);
    /// ```
    pub fn with_ordering(self, ordering: Ordering) -> Self {
        Solver { ordering, ..self }
    }
    /// The ordering.
    pub fn ordering(&self) -> &Ordering {
        &self.ordering
    }
    /// The condition limit, if one is set.
    pub fn condition_limit(&self) -> Option<f64> {
        self.condition_limit
    }
    /// Runs the solves on `device`. On [`Device::Cuda`] the symbolic analysis and numeric
    /// Cholesky factorization stay on the CPU; the factor is uploaded once per factorization and
    /// the forward solve, adjoint solve and gradient scatter run on the GPU (Cholesky, fast
    /// backend only). Without the `cuda` feature or a GPU, factorizing returns
    /// [`Error::NoDevice`].
    ///
    /// ```
    /// use sparsegrad::{Device, Error, Solver, Structure, Symmetry};
    /// let s = Structure::new(1, 1, vec![0, 1], vec![0], Symmetry::Lower).unwrap();
    /// let gpu = Solver::cholesky().on(Device::cuda());
    /// match gpu.factorize(&s, &[2.0]) {
    ///     Ok(f) => println!("{}", f.describe()),
    ///     Err(Error::NoDevice { reason }) => println!("no GPU: {reason}"),
    ///     Err(e) => panic!("{e}"),
    /// }
    /// ```
    pub fn on(self, device: Device) -> Self {
        Solver { device, ..self }
    }
    /// The arithmetic of the CPU's Cholesky and LDLᵀ factorizations (fast implementation):
    /// [`Precision::F64`] (the default), [`Precision::Mixed`] (an f32 factor, every solve refined
    /// in f64 to the f64 factor's accuracy, or [`Error::PrecisionLoss`]), [`Precision::F32`]
    /// (f32 factor and solves), or [`Precision::Auto`] (Mixed for large Cholesky factors, where
    /// it is faster, with a fallback to f64 that [`Factorization::fallback_reason`] reports).
    /// Values and gradients on the tape are f64 in every mode. On a GPU the precision of
    /// [`Device::Cuda`] applies instead.
    ///
    /// ```
    /// use sparsegrad::problems::graph::{grid_edges, laplacian_assembly};
    /// use sparsegrad::{Factorization, Precision, Solver};
    /// let asm = laplacian_assembly(30 * 30, &grid_edges(30).unwrap(), 1.0).unwrap();
    /// let values = asm.values(&vec![1.0; asm.n_params()]).unwrap();
    /// let mixed = Solver::cholesky().with_precision(Precision::Mixed);
    /// let f = mixed.factorize(asm.structure(), &values).unwrap();
    /// let mut x = nalgebra::DMatrix::from_element(900, 1, 1.0);
    /// f.solve_in_place(&mut x).unwrap();
    /// let steps = f.solve_info().forward.unwrap().iterations;
    /// assert!((1..=4).contains(&steps), "{steps} refinement steps");
    /// ```
    pub fn with_precision(self, precision: Precision) -> Self {
        Solver { precision, ..self }
    }
    /// The precision ([`Solver::with_precision`]).
    pub fn precision(&self) -> Precision {
        self.precision
    }
    /// The device.
    pub fn device(&self) -> Device {
        self.device
    }
    /// The method.
    pub fn method(&self) -> Method {
        self.method
    }
    /// The implementation.
    pub fn implementation(&self) -> Implementation {
        self.implementation
    }

    /// Checks the backward error ‖AX − B‖_F / (‖A‖_F ‖X‖_F + ‖B‖_F) of a solution against this
    /// solver's residual tolerance (a no-op when the check is off; at least
    /// [`SINGLE_RESIDUAL_TOLERANCE`] under [`Precision::F32`]).
    ///
    /// # Errors
    /// [`Error::Singular`] for a non-finite X or a backward error above the tolerance.
    pub fn check_residual(
        &self,
        structure: &Structure,
        values: &[f64],
        x: &DMatrix<f64>,
        b: &DMatrix<f64>,
    ) -> Result<()> {
        let Some(tol) = self.residual_tolerance else {
            return Ok(());
        };
        // Single precision solves have backward errors near ε₃₂ = 1.2e-7 by design: the bound
        // is raised to SINGLE_RESIDUAL_TOLERANCE for them (a singular matrix still exceeds it).
        let (tol, working) = if self.precision == Precision::F32 {
            (tol.max(SINGLE_RESIDUAL_TOLERANCE), "single precision")
        } else {
            (tol, "working precision")
        };
        check_solution_finite(x)?;
        let r = mul_dense(structure, values, x) - b;
        let a_norm = frobenius_norm(structure, values);
        let scale = a_norm * x.norm() + b.norm();
        let backward_error = if scale > 0.0 { r.norm() / scale } else { 0.0 };
        if backward_error > tol {
            return Err(Error::Singular {
                column: None,
                reason: format!(
                    "relative residual ‖AX − B‖/(‖A‖‖X‖ + ‖B‖) = {backward_error:e} exceeds {tol:e}: the matrix is singular to {working}"
                ),
            });
        }
        Ok(())
    }
}

impl Default for Solver {
    fn default() -> Self {
        Self::cholesky()
    }
}

/// Which system a solve with a factorization of A solves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// A X = B.
    Forward,
    /// Aᵀ X = B (the adjoint).
    Transpose,
}

/// Every solution the solve node returns is finite: a non-finite value means a zero pivot or an
/// overflow (A⁻¹B beyond f64's range), reported as [`Error::Singular`] with its position.
pub(crate) fn check_solution_finite(x: &DMatrix<f64>) -> Result<()> {
    match x.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(k) => Err(Error::Singular {
            column: None,
            reason: format!(
                "the solve produced the non-finite value {} at (row {}, column {}): a zero pivot, or a solution beyond the floating-point range",
                x[k],
                k % x.nrows().max(1),
                k / x.nrows().max(1)
            ),
        }),
    }
}

/// ‖A‖_F of a stored matrix (off-diagonal one-triangle entries count twice).
fn frobenius_norm(structure: &Structure, values: &[f64]) -> f64 {
    let lower = structure.symmetry() == Symmetry::Lower;
    let (cp, ri) = (structure.col_ptr(), structure.row_idx());
    let mut sum = 0.0;
    for j in 0..structure.ncols() {
        for k in cp[j]..cp[j + 1] {
            let w = if lower && ri[k] != j { 2.0 } else { 1.0 };
            sum += w * values[k] * values[k];
        }
    }
    sum.sqrt()
}
