//! An augmented-Lagrangian driver (Powell–Hestenes–Rockafellar) over the unconstrained solvers
//! of [`minimize`](super::minimize), for general constraints: equalities h(x) = 0 and
//! inequalities g(x) ≤ 0 from one [`ConstrainedObjective`] tape.
//!
//! Each outer iteration minimizes
//! L_ρ(x) = f(x) + Σ λ_i h_i + ρ/2 Σ h_i² + 1/(2ρ) Σ (max(0, μ_j + ρ g_j)² − μ_j²)
//! with the inner algorithm (L-BFGS by default), warm-started from the last point, then updates
//! λ ← λ + ρ h, μ ← max(0, μ + ρ g), and multiplies ρ by 10 when the violation did not fall
//! below a quarter of the previous one.

use nalgebra::DMatrix;

use super::{minimize, ArgminProblem, ConstrainedObjective, Objective, Settings};
use crate::error::{Error, Result};
use crate::tape::{Tape, Var};

/// Settings of [`augmented_lagrangian`].
#[derive(Debug, Clone, PartialEq)]
pub struct AugmentedLagrangian {
    /// How many of the model's constraint values, counted from the first, are equalities
    /// h_i = 0; the rest are inequalities g_j ≤ 0.
    pub equalities: usize,
    /// The inner unconstrained solver and its per-round iteration limit and tolerances.
    pub inner: Settings,
    /// Initial penalty ρ (default 10).
    pub penalty: f64,
    /// At most this many outer rounds (default 30).
    pub max_rounds: usize,
    /// Stop when the largest violation (|h_i| and max(0, g_j)) is at most this and the inner
    /// solve converged (default 1e-8).
    pub tolerance: f64,
}

impl AugmentedLagrangian {
    /// Settings for a model whose first `equalities` constraints are equalities, with L-BFGS
    /// (200 iterations a round) inside.
    pub fn new(equalities: usize) -> Self {
        AugmentedLagrangian {
            equalities,
            inner: Settings::new(super::Algorithm::default(), 200),
            penalty: 10.0,
            max_rounds: 30,
            tolerance: 1e-8,
        }
    }
}

/// The result of [`augmented_lagrangian`].
#[derive(Debug, Clone)]
pub struct AugmentedOutcome {
    /// The last point.
    pub params: Vec<f64>,
    /// f there.
    pub objective: f64,
    /// The constraint values there.
    pub constraints: Vec<f64>,
    /// The largest violation there.
    pub violation: f64,
    /// Lagrange multiplier estimates (λ for the equalities, then μ ≥ 0 for the inequalities).
    pub multipliers: Vec<f64>,
    /// The final penalty ρ.
    pub penalty: f64,
    /// Outer rounds run.
    pub rounds: usize,
    /// Inner iterations, all rounds together.
    pub inner_iterations: u64,
    /// Whether the violation tolerance was met.
    pub converged: bool,
}

/// One round's unconstrained objective L_ρ(x; λ, μ), borrowing the model.
struct Lagrangian<'a, O> {
    model: &'a O,
    equalities: usize,
    multipliers: &'a [f64],
    penalty: f64,
}

impl<O: ConstrainedObjective> Objective for Lagrangian<'_, O> {
    fn loss<'t>(&self, tape: &'t Tape, params: Var<'t>) -> Result<Var<'t>> {
        let (f, c) = self.model.evaluate(tape, params)?;
        let values = c.value()?;
        let m = values.len();
        if m != self.multipliers.len() {
            return Err(Error::ShapeMismatch {
                op: "augmented Lagrangian: constraint count changed between evaluations",
                left: (m, 1),
                right: (self.multipliers.len(), 1),
            });
        }
        let rho = self.penalty;
        let c = if values.ncols() == 1 {
            c
        } else {
            // One row (1 × m): the same values as a column.
            (1..m).fold(c.columns(0, 1).scatter_add(&[0], m), |column, i| {
                column + c.columns(i, 1).scatter_add(&[i], m)
            })
        };
        // Equalities: λᵀh + ρ/2 ‖h‖²; inequalities: (‖max(0, μ + ρ g)‖² − ‖μ‖²) / 2ρ, with the
        // active set read from the values (the term is C¹, so the gradient is exact).
        let mut shifted = vec![0.0; m];
        let mut mask = vec![0.0; m];
        // λh + ρ/2 h² = ρ/2 (h + λ/ρ)² − λ²/2ρ: one form for both kinds.
        for i in 0..m {
            shifted[i] = self.multipliers[i] / rho;
            let active = i < self.equalities || self.multipliers[i] + rho * values[i] > 0.0;
            mask[i] = if active { 1.0 } else { 0.0 };
        }
        let constant: f64 = (0..m)
            .map(|i| self.multipliers[i] * self.multipliers[i] / (2.0 * rho))
            .sum();
        let shift = tape.constant(DMatrix::from_column_slice(m, 1, &shifted));
        let mask = tape.constant(DMatrix::from_column_slice(m, 1, &mask));
        let active = (c + shift) * mask;
        Ok(f + active.sum_squares() * (rho / 2.0) - constant)
    }
}

/// The largest violation: |h_i| for the equalities, max(0, g_j) for the inequalities.
fn violation(values: &[f64], equalities: usize) -> f64 {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| if i < equalities { v.abs() } else { v.max(0.0) })
        .fold(0.0, f64::max)
}

/// The model's objective and constraint values at x.
fn values_at<O: ConstrainedObjective>(model: &O, x: &[f64]) -> Result<(f64, Vec<f64>)> {
    let tape = Tape::new();
    let p = tape.var(DMatrix::from_column_slice(x.len(), 1, x));
    let (f, c) = model.evaluate(&tape, p)?;
    Ok((f.scalar()?, c.value()?.as_slice().to_vec()))
}

/// Minimizes f(x) subject to h(x) = 0 (the first `settings.equalities` constraint values) and
/// g(x) ≤ 0 (the rest) by the augmented-Lagrangian method over [`minimize`], borrowing `model`
/// for every round.
///
/// ```
/// use sparsegrad::optim::{augmented_lagrangian, AugmentedLagrangian, ConstrainedObjective};
/// use sparsegrad::{Result, Tape, Var};
///
/// /// Minimize x² + y² subject to x + y = 1 (optimum (½, ½), λ = −1).
/// struct OnALine;
/// impl ConstrainedObjective for OnALine {
///     fn evaluate<'t>(&self, _t: &'t Tape, x: Var<'t>) -> Result<(Var<'t>, Var<'t>)> {
///         Ok((x.square().sum(), x.sum() - 1.0))
///     }
/// }
/// let out = augmented_lagrangian(&OnALine, [0.0, 0.0], &AugmentedLagrangian::new(1))?;
/// assert!(out.converged && (out.params[0] - 0.5).abs() < 1e-7 && (out.params[1] - 0.5).abs() < 1e-7);
/// assert!((out.multipliers[0] + 1.0).abs() < 1e-6);
/// # Ok::<(), sparsegrad::Error>(())
/// ```
///
/// # Errors
/// The model's error; [`Error::InvalidArgument`] for settings out of range (ρ ≤ 0, more
/// equalities than constraints); errors of the inner [`minimize`].
pub fn augmented_lagrangian<O: ConstrainedObjective>(
    model: &O,
    x0: impl crate::tape::IntoValue,
    settings: &AugmentedLagrangian,
) -> Result<AugmentedOutcome> {
    let mut x: Vec<f64> = x0.into_value().as_slice().to_vec();
    if !(settings.penalty.is_finite() && settings.penalty > 0.0) {
        return Err(Error::InvalidArgument {
            what: "augmented Lagrangian penalty",
            reason: format!("must be positive and finite, got {}", settings.penalty),
        });
    }
    let (f0, c0) = values_at(model, &x)?;
    let m = c0.len();
    if settings.equalities > m {
        return Err(Error::InvalidArgument {
            what: "augmented Lagrangian equalities",
            reason: format!(
                "{} equalities but the model has {m} constraints",
                settings.equalities
            ),
        });
    }
    let mut multipliers = vec![0.0; m];
    let mut rho = settings.penalty;
    let mut last_violation = violation(&c0, settings.equalities);
    let mut inner_iterations = 0;
    let mut rounds = 0;
    let mut converged = false;
    let mut values = c0;
    let mut objective = f0;
    while rounds < settings.max_rounds {
        rounds += 1;
        let lagrangian = Lagrangian {
            model,
            equalities: settings.equalities,
            multipliers: &multipliers,
            penalty: rho,
        };
        let outcome = minimize(
            ArgminProblem::new(&lagrangian),
            x.clone(),
            &settings.inner,
            None,
        )?;
        inner_iterations += outcome.iterations;
        x = outcome.params;
        (objective, values) = values_at(model, &x)?;
        for (i, (mult, &v)) in multipliers.iter_mut().zip(&values).enumerate() {
            *mult = if i < settings.equalities {
                *mult + rho * v
            } else {
                (*mult + rho * v).max(0.0)
            };
        }
        let now = violation(&values, settings.equalities);
        if now <= settings.tolerance {
            converged = true;
            break;
        }
        if now > 0.25 * last_violation {
            rho *= 10.0;
        }
        last_violation = now;
    }
    Ok(AugmentedOutcome {
        params: x,
        objective,
        violation: violation(&values, settings.equalities),
        constraints: values,
        multipliers,
        penalty: rho,
        rounds,
        inner_iterations,
        converged,
    })
}
