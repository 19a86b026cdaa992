//! Parallel batches: value and gradient of one model at many parameter points, in parallel with
//! rayon. Every point gets its own tape; structures are shared (`Arc`), so a batch over designs
//! with one sparsity pattern runs the symbolic analysis once and the numeric factorizations and
//! solves in parallel. Results are in input order and bit-identical whatever the thread count
//! (each point is computed sequentially, faer runs with `Par::Seq`).
//!
//! [`value_and_gradient`] runs a whole tape model per point; [`solve_batch`] is the bare batched
//! solve node: many value sets on one structure, with [`BatchSolution::gradients`] for the adjoint.
//! The other direction — one parameter point, the data split into shards whose losses add up —
//! is [`Tape::sharded_sum`](crate::Tape::sharded_sum), a tape node (so `minimize` drives it).
//!
//! ```
//! use nalgebra::DMatrix;
//! use sparsegrad::batch;
//! let points: Vec<DMatrix<f64>> = (0..8).map(|i| DMatrix::from_element(3, 1, i as f64)).collect();
//! let results = batch::value_and_gradient(&points, |_tape, x| Ok(x.sum_squares()));
//! let (loss, grad) = results[2].as_ref().unwrap();
//! assert_eq!(*loss, 12.0);
//! assert_eq!(grad.as_slice(), &[4.0, 4.0, 4.0]);
//! ```

use std::sync::Arc;

use nalgebra::DMatrix;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::solve::{Factor, Factorizer};
use crate::sparse::Structure;
use crate::tape::{Tape, Var};

/// Loss and gradient of `f` at every point, computed in parallel; one result per point, in order.
pub fn value_and_gradient<F>(points: &[DMatrix<f64>], f: F) -> Vec<Result<(f64, DMatrix<f64>)>>
where
    F: for<'t> Fn(&'t Tape, Var<'t>) -> Result<Var<'t>> + Sync,
{
    points
        .par_iter()
        .map(|p| {
            let tape = Tape::new();
            let x = tape.var(p.clone());
            let loss = f(&tape, x)?;
            let value = loss.scalar()?;
            let grad = tape.backward(loss)?.wrt(x).clone();
            Ok((value, grad))
        })
        .collect()
}

/// The solutions of a batch of systems A_i X_i = B_i sharing one [`Structure`], with their
/// factorizations kept for the adjoint solves (see [`solve_batch`]).
pub struct BatchSolution {
    structure: Arc<Structure>,
    factors: Vec<Arc<Factor>>,
    solutions: Vec<DMatrix<f64>>,
}

/// Solves A_i X_i = B_i for every value set `values[i]` on one `structure`: one symbolic analysis
/// (cached in the structure), then the numeric factorizations and solves in parallel with rayon.
/// `rhs` holds one B shared by all systems or one B per system. Results are bit-identical
/// whatever the thread count (each system is computed sequentially).
///
/// ```
/// use nalgebra::DMatrix;
/// use sparsegrad::{batch, Solver, Structure, Symmetry};
/// // diag(d, d): X = B / d; with L = Σ X: B̄ = 1 / d and Ā = −B̄ ⊙ X at the two stored entries.
/// let s = Structure::new(2, 2, vec![0, 1, 2], vec![0, 1], Symmetry::Lower).unwrap();
/// let values = vec![vec![4.0, 4.0], vec![16.0, 16.0]];
/// let b = DMatrix::from_column_slice(2, 1, &[1.0, 3.0]);
/// let batch = batch::solve_batch(&s, &values, &[b], &Solver::cholesky()).unwrap();
/// assert_eq!(batch.solutions()[1].as_slice(), &[0.0625, 0.1875]);
/// let ones = vec![DMatrix::from_element(2, 1, 1.0); 2];
/// let grads = batch.gradients(&ones).unwrap();
/// assert_eq!(grads[0].0, vec![-0.0625, -0.1875]); // Ā at the stored entries
/// assert_eq!(grads[0].1.as_slice(), &[0.25, 0.25]); // B̄
/// ```
///
/// # Errors
/// [`Error::ShapeMismatch`] for a right-hand side of the wrong shape or a count that is neither
/// 1 nor `values.len()`; [`Error::NonFinite`]; the first failing system's error (lowest index).
pub fn solve_batch(
    structure: &Arc<Structure>,
    values: &[Vec<f64>],
    rhs: &[DMatrix<f64>],
    solver: &dyn Factorizer,
) -> Result<BatchSolution> {
    if rhs.len() != 1 && rhs.len() != values.len() {
        return Err(Error::ShapeMismatch {
            op: "solve_batch (number of right-hand sides vs value sets)",
            left: (values.len(), 1),
            right: (rhs.len(), 1),
        });
    }
    for b in rhs {
        crate::solve::node::check_rhs(structure, b)?;
    }
    let results: Vec<Result<(Arc<Factor>, DMatrix<f64>)>> = values
        .par_iter()
        .enumerate()
        .map(|(i, v)| {
            let b = &rhs[if rhs.len() == 1 { 0 } else { i }];
            crate::solve::node::forward(solver, structure, v, b)
        })
        .collect();
    let mut factors = Vec::with_capacity(values.len());
    let mut solutions = Vec::with_capacity(values.len());
    for r in results {
        let (f, x) = r?;
        factors.push(f);
        solutions.push(x);
    }
    Ok(BatchSolution {
        structure: structure.clone(),
        factors,
        solutions,
    })
}

impl BatchSolution {
    /// X_i, in input order.
    pub fn solutions(&self) -> &[DMatrix<f64>] {
        &self.solutions
    }

    /// The factorizations, in input order.
    pub fn factors(&self) -> &[Arc<Factor>] {
        &self.factors
    }

    /// For upstream gradients Ḡ_i = ∂L/∂X_i: (Ā_i at the stored entries, B̄_i) for every system,
    /// with one adjoint solve each, reusing the factorizations, in parallel.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] unless there is one Ḡ_i shaped like X_i per system; the adjoint
    /// solve's error.
    pub fn gradients(&self, upstream: &[DMatrix<f64>]) -> Result<Vec<(Vec<f64>, DMatrix<f64>)>> {
        if upstream.len() != self.solutions.len() {
            return Err(Error::ShapeMismatch {
                op: "BatchSolution::gradients (number of upstream gradients)",
                left: (self.solutions.len(), 1),
                right: (upstream.len(), 1),
            });
        }
        if let Some((g, x)) = upstream
            .iter()
            .zip(&self.solutions)
            .find(|(g, x)| g.shape() != x.shape())
        {
            return Err(Error::ShapeMismatch {
                op: "BatchSolution::gradients",
                left: x.shape(),
                right: g.shape(),
            });
        }
        self.factors
            .par_iter()
            .zip(&self.solutions)
            .zip(upstream)
            .map(|((f, x), g)| {
                let adjoint = crate::solve::node::adjoint(f.as_ref(), &self.structure, g, x, true)?;
                Ok((adjoint.grad_values.unwrap_or_default(), adjoint.lambda))
            })
            .collect()
    }
}
