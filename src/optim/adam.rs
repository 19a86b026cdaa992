//! Adam (Kingma & Ba, 2015) as an argmin `Solver`; argmin ships none.
//!
//! m ← β₁ m + (1 − β₁) g, v ← β₂ v + (1 − β₂) g², x ← x − α m̂ / (√v̂ + ε) with the bias-corrected
//! m̂ = m / (1 − β₁ᵗ), v̂ = v / (1 − β₂ᵗ). Each iteration evaluates cost and gradient at one point
//! (one forward and one backward pass through [`super::ArgminProblem`]'s cache) and reports that point
//! and its cost, so argmin's best-point tracking stays consistent.

use argmin::core::{CostFunction, Error, Gradient, IterState, Problem, Solver, KV};

use super::OptimState;

/// The Adam optimizer.
#[derive(Debug, Clone, PartialEq)]
pub struct Adam {
    learning_rate: f64,
    beta1: f64,
    beta2: f64,
    epsilon: f64,
    m: Vec<f64>,
    v: Vec<f64>,
    t: i32,
    pending: Option<Vec<f64>>,
}

impl Adam {
    /// Adam with step size `learning_rate` and the usual β₁ = 0.9, β₂ = 0.999, ε = 1e-8.
    pub fn new(learning_rate: f64) -> Self {
        Adam {
            learning_rate,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            m: Vec::new(),
            v: Vec::new(),
            t: 0,
            pending: None,
        }
    }

    /// Sets the moment decay rates.
    ///
    /// # Errors
    /// Unless 0 ≤ β₁, β₂ < 1.
    pub fn with_betas(mut self, beta1: f64, beta2: f64) -> crate::Result<Self> {
        if !(0.0..1.0).contains(&beta1) || !(0.0..1.0).contains(&beta2) {
            return Err(crate::Error::InvalidArgument {
                what: "Adam β",
                reason: format!("Adam needs 0 ≤ β₁, β₂ < 1, got {beta1}, {beta2}"),
            });
        }
        self.beta1 = beta1;
        self.beta2 = beta2;
        Ok(self)
    }
}

impl<O> Solver<O, OptimState> for Adam
where
    O: CostFunction<Param = Vec<f64>, Output = f64>
        + Gradient<Param = Vec<f64>, Gradient = Vec<f64>>,
{
    fn name(&self) -> &str {
        "Adam"
    }

    fn next_iter(
        &mut self,
        problem: &mut Problem<O>,
        mut state: OptimState,
    ) -> Result<(OptimState, Option<KV>), Error> {
        let x = match self.pending.take() {
            Some(x) => x,
            None => state.take_param().ok_or_else(|| {
                Error::msg("Adam needs an initial parameter vector (Executor::configure)")
            })?,
        };
        let cost = problem.cost(&x)?;
        let grad = problem.gradient(&x)?;
        if self.m.len() != x.len() {
            self.m = vec![0.0; x.len()];
            self.v = vec![0.0; x.len()];
        }
        self.t += 1;
        let (c1, c2) = (1.0 - self.beta1.powi(self.t), 1.0 - self.beta2.powi(self.t));
        let mut next = x.clone();
        for i in 0..x.len() {
            self.m[i] = self.beta1 * self.m[i] + (1.0 - self.beta1) * grad[i];
            self.v[i] = self.beta2 * self.v[i] + (1.0 - self.beta2) * grad[i] * grad[i];
            next[i] -=
                self.learning_rate * (self.m[i] / c1) / ((self.v[i] / c2).sqrt() + self.epsilon);
        }
        self.pending = Some(next);
        let state: IterState<_, _, (), (), (), f64> = state.param(x).cost(cost).gradient(grad);
        Ok((state, None))
    }
}
