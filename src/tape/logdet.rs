//! The log-determinant node: log |det A| of a sparse symmetric A from its Cholesky or LDLᵀ
//! factor, with the gradient A⁻¹ at the stored entries by selected inversion (never a dense
//! inverse).

use std::cell::Cell;
use std::sync::{Arc, OnceLock};

use nalgebra::DMatrix;

use super::{Hvp, Jvp, Op, Operation, Tape, Var, Vjp};
use crate::error::{Error, Result};
use crate::solve::{Factor, Factorizer, Method};
use crate::sparse::{Structure, Symmetry};

impl Tape {
    /// log det A for a sparse symmetric A ([`Symmetry::Full`] or [`Symmetry::Lower`]) factored
    /// by `solver` (Cholesky for positive definite A, LDLᵀ for indefinite A with det A > 0).
    /// The value comes from the factor's pivots; the gradient with respect to A's stored values
    /// is A⁻¹ at those entries (both mirrored positions for one-triangle storage: 2 (A⁻¹)_ij off
    /// the diagonal), computed in the backward pass by selected inversion on the kept factor;
    /// its JVP is ⟨A⁻¹, Ȧ⟩. A solve of the same matrix node (before or after, on this tape) and
    /// the logdet share one factorization, when the solve's is a Cholesky or LDLᵀ one.
    ///
    /// ```
    /// use nalgebra_sparse::{CooMatrix, CscMatrix};
    /// use sparsegrad::{Solver, Symmetry, Tape};
    /// # fn main() -> sparsegrad::Result<()> {
    /// // A = [[4, 1], [1, 3]], lower triangle stored: det A = 11.
    /// let mut coo = CooMatrix::new(2, 2);
    /// coo.push(0, 0, 4.0);
    /// coo.push(1, 0, 1.0);
    /// coo.push(1, 1, 3.0);
    /// let tape = Tape::new();
    /// let a = tape.csc_var(&CscMatrix::from(&coo), Symmetry::Lower)?;
    /// let ld = tape.logdet(a, &Solver::cholesky())?;
    /// assert!((ld.scalar()? - 11f64.ln()).abs() < 1e-14);
    /// // ∂ log det / ∂a = A⁻¹ = [[3, −1], [−1, 4]] / 11; the stored (1, 0) stands for both.
    /// let g = tape.backward(ld)?;
    /// let expected = [3.0 / 11.0, -2.0 / 11.0, 4.0 / 11.0];
    /// for (got, want) in g.wrt(a).iter().zip(expected) {
    ///     assert!((got - want).abs() < 1e-14);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::Unsupported`] for a dense or non-symmetric A, or a factorizer without a
    /// log-determinant (LU, Krylov, MUMPS, GPU); the factorization's errors (not positive
    /// definite, singular); [`Error::InvalidArgument`] when det A < 0 (use [`Tape::slogdet`]).
    pub fn logdet<'t>(&'t self, a: Var<'t>, solver: &dyn Factorizer) -> Result<Var<'t>> {
        let (sign, value) = self.slogdet(a, solver)?;
        if sign < 0.0 {
            return Err(Error::InvalidArgument {
                what: "matrix",
                reason: "det A < 0, so log det A is not real; Tape::slogdet gives log |det A| \
                         and the sign"
                    .into(),
            });
        }
        Ok(value)
    }

    /// (sign of det A, log |det A|) for a sparse symmetric A, as [`Tape::logdet`] (whose value
    /// and gradient the second part has, for either sign: ∂ log |det A| / ∂A = A⁻¹).
    ///
    /// # Errors
    /// As [`Tape::logdet`], except for the sign.
    pub fn slogdet<'t>(&'t self, a: Var<'t>, solver: &dyn Factorizer) -> Result<(f64, Var<'t>)> {
        let ia = a.index;
        let sign = Cell::new(1.0);
        let value = self.record_fallible("logdet", &[a], |nodes| {
            let s = nodes[ia].sparse.clone().ok_or_else(|| Error::Unsupported {
                reason: format!(
                    "logdet needs a sparse matrix, got a dense {:?}",
                    nodes[ia].value.shape()
                ),
            })?;
            if s.symmetry() == Symmetry::General || s.nrows() != s.ncols() {
                return Err(Error::Unsupported {
                    reason: "logdet needs a symmetric structure (Symmetry::Full or Lower): the \
                             log-determinant and its selected-inverse gradient come from a \
                             Cholesky or LDLᵀ factor (faer's sparse LU keeps its factor values \
                             private, so a general matrix has neither)"
                        .into(),
                });
            }
            // A direct (Cholesky / LDLᵀ) solve of the same matrix node already factored it.
            let shared = super::kept_factor_of(nodes, ia, "solve")
                .filter(|f| matches!(f.method(), Some(Method::Cholesky | Method::Ldlt)));
            let factor = match shared {
                Some(f) => f,
                None => crate::solve::node::factor(solver, &s, nodes[ia].value.as_slice())?,
            };
            let det = factor.log_determinant()?;
            if !det.log_abs.is_finite() {
                return Err(Error::Singular {
                    column: None,
                    reason: format!("log |det A| = {}", det.log_abs),
                });
            }
            sign.set(det.sign);
            Ok((
                DMatrix::from_element(1, 1, det.log_abs),
                None,
                Op::new(LogDet {
                    a: ia,
                    factor,
                    structure: s,
                    weights: OnceLock::new(),
                }),
            ))
        })?;
        Ok((sign.get(), value))
    }
}

impl<'t> Var<'t> {
    /// [`Tape::logdet`] of this sparse matrix.
    ///
    /// # Errors
    /// As [`Tape::logdet`].
    pub fn logdet(self, solver: &dyn Factorizer) -> Result<Var<'t>> {
        self.tape().logdet(self, solver)
    }
}

/// log |det A| with the kept factor: ∂/∂a_e = w_e (A⁻¹)_e, w_e = 2 for an off-diagonal entry
/// of one-triangle storage, 1 otherwise.
struct LogDet {
    a: usize,
    factor: Arc<Factor>,
    structure: Arc<Structure>,
    /// w ⊙ (A⁻¹ at the stored entries), computed once, when first needed.
    weights: OnceLock<Vec<f64>>,
}

impl LogDet {
    /// ∂ log |det A| / ∂(stored values): the selected inverse, doubled off the diagonal for
    /// one-triangle storage.
    fn gradient(&self) -> Result<&[f64]> {
        if let Some(w) = self.weights.get() {
            return Ok(w);
        }
        let z = crate::solve::node::logdet_gradient(self.factor.as_ref(), &self.structure)?;
        Ok(self.weights.get_or_init(|| z))
    }
}

impl Operation for LogDet {
    fn name(&self) -> &'static str {
        "logdet"
    }
    fn inputs(&self) -> Vec<usize> {
        vec![self.a]
    }
    fn kept_factorization(&self) -> Option<(usize, &Arc<Factor>)> {
        Some((self.a, &self.factor))
    }
    fn backward(&self, vjp: &mut Vjp<'_, '_>, g: &DMatrix<f64>) -> Result<()> {
        let w = self.gradient()?;
        vjp.add(
            self.a,
            DMatrix::from_iterator(w.len(), 1, w.iter().map(|v| g[0] * v)),
        )
    }
    /// ⟨∇, Ȧ⟩ with ∇ the gradient at the stored entries.
    fn forward(&self, jvp: &Jvp<'_>) -> Result<Option<DMatrix<f64>>> {
        let Some(a_dot) = jvp.tangent(self.a) else {
            return Ok(None);
        };
        let w = self.gradient()?;
        let d: f64 = w.iter().zip(a_dot.iter()).map(|(w, t)| w * t).sum();
        Ok(Some(DMatrix::from_element(1, 1, d)))
    }
    /// The tangent of the VJP along Ȧ needs −(A⁻¹ȦA⁻¹) at the stored entries, which the
    /// selected inverse does not hold: only the upstream tangent's part is available.
    fn backward_tangent(
        &self,
        hvp: &mut Hvp<'_, '_>,
        g: &DMatrix<f64>,
        g_dot: Option<&DMatrix<f64>>,
    ) -> Result<()> {
        if hvp.tangent(self.a).is_some() && g[0] != 0.0 {
            return Err(Error::Unsupported {
                reason: "Hessian-vector products through logdet along a tangent of A (they need \
                         entries of A⁻¹ȦA⁻¹ outside the selected inverse)"
                    .into(),
            });
        }
        hvp.linear(self, g_dot)
    }
}
