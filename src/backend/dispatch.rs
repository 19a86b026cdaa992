//! Dispatch from the solver configuration ([`Solver`], in `solve`) to the implementations: faer
//! and nalgebra-sparse on the CPU (`cpu/`), or the GPU (`cuda/`). `Solver::factorize` and
//! `Solver::analyze` live here, so `solve` names no backend.

use std::sync::Arc;

use nalgebra::DMatrix;

use super::cpu;
use crate::error::{Error, Result};
use crate::solve::{
    condition_estimate, AnalysisReport, Device, Factor, Factorization, Factorizer, Implementation,
    Iterative, Method, Ordering, Precision, Preconditioner, Solver,
};

/// Predicted Cholesky flops from which [`Precision::Auto`] factors in mixed precision (an f32
/// factor refined in f64). Measured (`cargo bench --bench solve -- precision`, one warm value +
/// gradient = one factorization and two solves): mixed is slower at 1e9 flops (grid 24³),
/// even at 3.7e9 (32³) and 1.35–1.4× faster from 5e10 (48³, the 32³ elasticity block); the
/// f32 factorization itself is 1.4–2.1× faster throughout, each refined solve costs about three
/// f32 solves.
pub const MIXED_AUTO_FLOPS: f64 = 1e10;
use crate::sparse::{Structure, Symmetry};

impl Solver {
    /// Which ordering this solver's Cholesky / LDLᵀ uses on `structure` and the factor size it
    /// predicts; for [`Ordering::Auto`] also the candidates it chose from (AMD, and nested
    /// dissection when AMD's factor is 3D-like). Runs (or finds cached) the symbolic analyses.
    ///
    /// ```
    /// use sparsegrad::problems::graph::{grid_edges, laplacian_assembly};
    /// use sparsegrad::{Ordering, Solver};
    /// let asm = laplacian_assembly(64 * 64, &grid_edges(64).unwrap(), 1.0).unwrap();
    /// let report = Solver::cholesky().analysis_report(asm.structure()).unwrap();
    /// assert_eq!(report.ordering, Ordering::Amd); // a 2D grid: AMD is good enough
    /// ```
    ///
    /// # Errors
    /// [`Error::Unsupported`] for LU (its column ordering is set by `with_ordering` but has no
    /// predictions to report) or the reference implementation (AMD);
    /// [`Error::InvalidArgument`] for a custom ordering that is not a permutation.
    pub fn analysis_report(&self, structure: &Arc<Structure>) -> Result<AnalysisReport> {
        if self.method == Method::Lu || self.implementation != Implementation::Fast {
            return Err(Error::Unsupported {
                reason: "orderings are chosen for Cholesky / LDLᵀ on the fast implementation"
                    .into(),
            });
        }
        let mut report = match &self.ordering {
            Ordering::Auto => cpu::ordering::report(structure)?,
            other => AnalysisReport {
                ordering: other.clone(),
                prediction: cpu::cholesky::symbolic_cholesky(structure, other)?.prediction,
                candidates: Vec::new(),
                precision: Precision::F64,
            },
        };
        let kind = match self.method {
            Method::Ldlt => cpu::cholesky::Kind::Ldlt,
            _ => cpu::cholesky::Kind::Llt,
        };
        report.precision = self.resolved_precision(kind, report.prediction.flops);
        Ok(report)
    }

    /// Numerically factors the matrix with `values` on `structure`, reusing (or computing once)
    /// the structure's symbolic analysis for this method and backend.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for a non-square matrix, a symmetric method on a
    /// [`Symmetry::General`] structure, or LU/LDLᵀ on the reference backend;
    /// [`Error::StructureMismatch`]/[`Error::NonFinite`] for bad values; [`Error::NotSymmetric`]
    /// for unsymmetric values on [`Symmetry::Full`]; [`Error::NotPositiveDefinite`] (Cholesky) or
    /// [`Error::Singular`] (LDLᵀ, LU) when the factorization breaks down.
    pub fn factorize(&self, structure: &Arc<Structure>, values: &[f64]) -> Result<Arc<Factor>> {
        if structure.nrows() != structure.ncols() {
            return Err(Error::Unsupported {
                reason: format!(
                    "cannot factor a non-square {}×{} matrix",
                    structure.nrows(),
                    structure.ncols()
                ),
            });
        }
        structure.check_values(values)?;
        if self.method == Method::Auto {
            return self.factorize_auto(structure, values);
        }
        let symmetric_method = self.method != Method::Lu;
        if symmetric_method {
            if structure.symmetry() == Symmetry::General {
                return Err(Error::Unsupported {
                    reason: format!(
                        "{:?} needs a structure declared symmetric (Symmetry::Full or Symmetry::Lower); this one is General — use Solver::lu()",
                        self.method
                    ),
                });
            }
            structure.check_symmetric_values(values)?;
        }
        if let Device::Cuda { ordinal, precision } = self.device {
            if (self.method, self.implementation) != (Method::Cholesky, Implementation::Fast) {
                return Err(Error::Unsupported {
                    reason: format!(
                        "the GPU direct path offers Cholesky on the fast backend, not {:?} on {:?}",
                        self.method, self.implementation
                    ),
                });
            }
            let factor = super::cuda::factor_direct(structure, values, ordinal, precision)?;
            structure.record_factorization();
            return Ok(factor);
        }
        if !matches!(self.precision, Precision::F64 | Precision::Auto)
            && !matches!(
                (self.method, self.implementation),
                (
                    Method::Cholesky | Method::Ldlt | Method::Auto,
                    Implementation::Fast
                )
            )
        {
            return Err(Error::Unsupported {
                reason: format!(
                    "{:?} precision is offered for Cholesky and LDLᵀ on the fast implementation, not {:?} on {:?} (faer's sparse LU keeps its factor private)",
                    self.precision, self.method, self.implementation
                ),
            });
        }
        structure.record_factorization();
        match (self.method, self.implementation) {
            (Method::Cholesky, Implementation::Fast) => {
                self.factor_symmetric(structure, values, cpu::cholesky::Kind::Llt)
            }
            (Method::Ldlt, Implementation::Fast) => {
                self.factor_symmetric(structure, values, cpu::cholesky::Kind::Ldlt)
            }
            (Method::Cholesky, Implementation::Reference) => Ok(Arc::new(
                cpu::reference::ReferenceCholesky::factor(structure, values)?,
            )),
            (Method::Lu, Implementation::Fast) => Ok(Arc::new(cpu::lu::FaerLu::factor(
                structure,
                values,
                &self.ordering,
            )?)),
            (Method::Auto, _) => self.factorize_auto(structure, values),
            (method, Implementation::Reference) => Err(Error::Unsupported {
                reason: format!(
                    "the reference backend (nalgebra-sparse) offers Cholesky only, not {method:?}"
                ),
            }),
        }
    }

    /// The precision [`Precision::Auto`] resolves to for a `kind` factor with `flops` predicted
    /// flops: Mixed for Cholesky factors of at least [`MIXED_AUTO_FLOPS`], F64 otherwise.
    pub(crate) fn resolved_precision(&self, kind: cpu::cholesky::Kind, flops: f64) -> Precision {
        match self.precision {
            Precision::Auto if kind == cpu::cholesky::Kind::Llt && flops >= MIXED_AUTO_FLOPS => {
                Precision::Mixed
            }
            Precision::Auto => Precision::F64,
            other => other,
        }
    }

    /// Cholesky or LDLᵀ on the CPU in this solver's precision.
    fn factor_symmetric(
        &self,
        structure: &Arc<Structure>,
        values: &[f64],
        kind: cpu::cholesky::Kind,
    ) -> Result<Arc<Factor>> {
        use cpu::cholesky::FaerCholesky;
        use cpu::mixed::{Mode, Refined};
        let flops = match self.precision {
            Precision::Auto => {
                cpu::cholesky::symbolic_cholesky(structure, &self.ordering)?
                    .prediction
                    .flops
            }
            _ => 0.0,
        };
        let (ordering, auto) = (&self.ordering, self.precision == Precision::Auto);
        Ok(match self.resolved_precision(kind, flops) {
            Precision::F32 => Arc::new(FaerCholesky::<f32>::factor_single(
                structure, values, kind, ordering,
            )?),
            Precision::Mixed => {
                let mode = if auto { Mode::Auto } else { Mode::Explicit };
                Arc::new(Refined::factor(structure, values, kind, ordering, mode)?)
            }
            _ => Arc::new(FaerCholesky::factor_with(
                structure, values, kind, ordering,
            )?),
        })
    }

    /// [`Method::Auto`]: Cholesky on symmetric structures, LU when that fails or otherwise.
    fn factorize_auto(&self, structure: &Arc<Structure>, values: &[f64]) -> Result<Arc<Factor>> {
        let with = |method| Solver {
            method,
            ..self.clone()
        };
        if structure.symmetry() == Symmetry::General {
            return with(Method::Lu).factorize(structure, values);
        }
        match with(Method::Cholesky).factorize(structure, values) {
            Err(e @ Error::NotPositiveDefinite { .. }) => {
                // LU runs in f64 (reduced precision is offered for Cholesky and LDLᵀ only).
                let in_f64 = if self.precision == Precision::F64 {
                    ""
                } else {
                    " in f64"
                };
                let inner = with(Method::Lu)
                    .with_implementation(Implementation::Fast)
                    .with_precision(Precision::F64)
                    .factorize(structure, values)?;
                Ok(Arc::new(Fallback {
                    inner,
                    reason: format!("{e}; falling back to LU{in_f64}"),
                }))
            }
            other => other,
        }
    }

    /// Runs (or finds cached) the symbolic analysis this solver needs on `structure`, so that a
    /// later [`Solver::factorize`] does only numeric work. Useful to time or front-load it.
    ///
    /// # Errors
    /// As [`Solver::factorize`] for an unsupported combination.
    pub fn analyze(&self, structure: &Arc<Structure>) -> Result<()> {
        let method = match (self.method, structure.symmetry()) {
            (Method::Auto, Symmetry::General) => Method::Lu,
            (Method::Auto, _) => Method::Cholesky,
            (m, _) => m,
        };
        match (method, self.implementation) {
            (Method::Cholesky | Method::Ldlt, Implementation::Fast) => {
                cpu::cholesky::symbolic_cholesky(structure, &self.ordering).map(|_| ())
            }
            (Method::Lu, Implementation::Fast) => {
                cpu::lu::analyze(structure, &self.ordering).map(|_| ())
            }
            (Method::Cholesky, Implementation::Reference) => {
                cpu::reference::analyze_cached(structure).map(|_| ())
            }
            (Method::Auto, _) => Ok(()),
            (method, Implementation::Reference) => Err(Error::Unsupported {
                reason: format!(
                    "the reference backend (nalgebra-sparse) offers Cholesky only, not {method:?}"
                ),
            }),
        }
    }
}

impl Factorizer for Solver {
    fn factorize(&self, structure: &Arc<Structure>, values: &[f64]) -> Result<Arc<Factor>> {
        Solver::factorize(self, structure, values)
    }
    fn check_factorization(
        &self,
        structure: &Structure,
        values: &[f64],
        factor: &Factor,
    ) -> Result<()> {
        let Some(limit) = self.condition_limit else {
            return Ok(());
        };
        let estimate = condition_estimate(structure, values, factor)?;
        if estimate > limit || estimate.is_nan() {
            return Err(Error::IllConditioned { estimate, limit });
        }
        Ok(())
    }
    fn check_residual(
        &self,
        structure: &Structure,
        values: &[f64],
        x: &DMatrix<f64>,
        b: &DMatrix<f64>,
    ) -> Result<()> {
        Solver::check_residual(self, structure, values, x, b)
    }
}

/// A factorization made by [`Method::Auto`] after Cholesky failed.
struct Fallback {
    inner: Arc<Factor>,
    reason: String,
}

impl Factorization for Fallback {
    fn solve_in_place(&self, rhs: &mut DMatrix<f64>) -> Result<()> {
        self.inner.solve_in_place(rhs)
    }
    fn solve_transpose_in_place(&self, rhs: &mut DMatrix<f64>) -> Result<()> {
        self.inner.solve_transpose_in_place(rhs)
    }
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn describe(&self) -> String {
        format!("{} ({})", self.inner.describe(), self.reason)
    }
    fn stored_bytes(&self) -> Option<usize> {
        self.inner.stored_bytes()
    }
    fn fallback_reason(&self) -> Option<&str> {
        Some(&self.reason)
    }
    fn method(&self) -> Option<Method> {
        self.inner.method()
    }
    fn log_determinant(&self) -> Result<crate::solve::LogDet> {
        self.inner.log_determinant()
    }
    fn selected_inverse(&self, structure: &Structure) -> Result<Vec<f64>> {
        self.inner.selected_inverse(structure)
    }
    fn diag_inverse(&self) -> Result<Vec<f64>> {
        self.inner.diag_inverse()
    }
    fn sample_in_place(&self, z: &mut DMatrix<f64>) -> Result<()> {
        self.inner.sample_in_place(z)
    }
}

/// The Krylov solvers: settings and storage checked here, then the CPU operator or the GPU
/// solver by [`Device`].
impl Factorizer for Iterative {
    fn factorize(&self, structure: &Arc<Structure>, values: &[f64]) -> Result<Arc<Factor>> {
        self.validate()?;
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
        match self.device {
            Device::Cuda { ordinal, .. } => {
                super::cuda::factor_iterative(structure, values, self, ordinal)
            }
            _ => cpu::iterative::factor(structure, values, self),
        }
    }
}
