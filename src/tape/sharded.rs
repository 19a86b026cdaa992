//! A data-parallel loss node: Σ_s f(θ, shard_s) over data shards, each shard's forward and
//! backward pass on its own tape in parallel (rayon), summed in shard order so the value and
//! gradient are bit-identical whatever the thread count.

use nalgebra::DMatrix;
use rayon::prelude::*;

use super::{Hvp, Jvp, Op, Operation, Tape, Var, Vjp};
use crate::error::{Error, Result};

impl Tape {
    /// Records L(θ) = Σ_s f(θ, shard_s) (1×1) for the parameters `params`: every shard's loss
    /// is recorded on its own tape and differentiated there, in parallel; the node keeps the
    /// summed gradient, so its backward pass is one scaled copy and [`crate::optim::minimize`]
    /// drives a data-parallel objective like any other. Observations, right-hand sides,
    /// graphs or meshes can be the shards; each shard's model may solve its own sparse systems.
    ///
    /// ```
    /// use sparsegrad::{Result, Tape, Var};
    /// // Least squares over 4 shards of (a, y) pairs: L(θ) = Σ (θ a − y)².
    /// let shards: Vec<Vec<(f64, f64)>> = (0..4)
    ///     .map(|s| (0..5).map(|i| ((s * 5 + i) as f64, 2.0 * (s * 5 + i) as f64 + 1.0)).collect())
    ///     .collect();
    /// let tape = Tape::new();
    /// let theta = tape.var_scalar(1.5);
    /// let loss = tape.sharded_sum(theta, &shards, |_t, th, shard: &Vec<(f64, f64)>| {
    ///     let a: Vec<f64> = shard.iter().map(|p| p.0).collect();
    ///     let y: Vec<f64> = shard.iter().map(|p| p.1).collect();
    ///     Ok((th * _t.constant(a) - _t.constant(y)).sum_squares())
    /// })?;
    /// // dL/dθ = Σ 2 a (θ a − y) over all 20 pairs.
    /// let expected: f64 = (0..20).map(|i| { let a = i as f64; 2.0 * a * (1.5 * a - 2.0 * a - 1.0) }).sum();
    /// let g = tape.backward(loss)?;
    /// assert!((g.wrt(theta)[0] - expected).abs() < 1e-9);
    /// # Ok::<(), sparsegrad::Error>(())
    /// ```
    ///
    /// # Errors
    /// The first failing shard's error (lowest index); [`Error::NotScalar`] if a shard's loss is
    /// not 1×1. Its Hessian-vector product ([`Tape::hvp`]) is [`Error::Unsupported`] (the
    /// shards' tapes are not kept).
    pub fn sharded_sum<'t, S, F>(&'t self, params: Var<'t>, shards: &[S], f: F) -> Result<Var<'t>>
    where
        S: Sync,
        F: for<'s> Fn(&'s Tape, Var<'s>, &S) -> Result<Var<'s>> + Sync,
    {
        let x = params.index;
        self.record_fallible("sharded_sum", &[params], |nodes| {
            let p = &nodes[x].value;
            let parts: Vec<Result<(f64, DMatrix<f64>)>> = shards
                .par_iter()
                .map(|shard| {
                    let tape = Tape::new();
                    let v = tape.var(p.clone());
                    let loss = f(&tape, v, shard)?;
                    let value = loss.scalar()?;
                    Ok((value, tape.backward(loss)?.wrt(v).clone()))
                })
                .collect();
            let mut value = 0.0;
            let mut gradient = DMatrix::zeros(p.nrows(), p.ncols());
            for part in parts {
                let (v, g) = part?;
                value += v;
                gradient += g;
            }
            Ok((
                DMatrix::from_element(1, 1, value),
                None,
                Op::new(ShardedSum { x, gradient }),
            ))
        })
    }
}

/// L = Σ_s f_s(θ) with its gradient Σ_s ∇f_s kept: θ̄ = L̄ · ∇L.
struct ShardedSum {
    x: usize,
    gradient: DMatrix<f64>,
}

impl Operation for ShardedSum {
    fn name(&self) -> &'static str {
        "sharded_sum"
    }
    fn inputs(&self) -> Vec<usize> {
        vec![self.x]
    }
    fn backward(&self, vjp: &mut Vjp<'_, '_>, g: &DMatrix<f64>) -> Result<()> {
        vjp.add(self.x, &self.gradient * g[0])
    }
    /// L̇ = ⟨∇L, θ̇⟩.
    fn forward(&self, jvp: &Jvp<'_>) -> Result<Option<DMatrix<f64>>> {
        Ok(jvp
            .tangent(self.x)
            .map(|t| DMatrix::from_element(1, 1, self.gradient.dot(t))))
    }
    fn backward_tangent(
        &self,
        _hvp: &mut Hvp<'_, '_>,
        _g: &DMatrix<f64>,
        _g_dot: Option<&DMatrix<f64>>,
    ) -> Result<()> {
        Err(Error::Unsupported {
            reason: "Hessian-vector products through sharded_sum: the shards' tapes are not kept \
                     (use Tape::hvp on one shard's model, or first-order methods)"
                .into(),
        })
    }
}
