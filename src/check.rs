//! Finite-difference gradient checking, for testing models built on the tape.
//!
//! Each checked component is differentiated twice, with steps h and 2h of the fourth-order
//! central stencil; their disagreement measures the finite-difference error itself (the
//! *noise*), so the report can say whether a mismatch is the model's or the stencil's:
//! [`GradientCheck::passed`] holds when the worst relative error is within
//! [`Options::tolerance`] or within 4× the measured noise.
//!
//! ```
//! use sparsegrad::check;
//! // f(x) = Σ exp(x) · x², checked at x = (0.1, 0.2, 0.3)
//! let report = check::gradient(|_tape, x| Ok((x.exp() * x.square()).sum()), &[0.1, 0.2, 0.3], &check::Options::default()).unwrap();
//! assert!(report.passed, "{report:?}");
//! assert!(report.max_relative_error < 1e-7);
//! ```

use nalgebra::DMatrix;

use crate::error::{Error, Result};
use crate::tape::{Tape, Var};

/// Settings of [`gradient`] and [`hessian_vector`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    /// Relative step: h_i = `step` · max(1, |x_i|). Derivatives use the fourth-order central
    /// stencil (−f(x+2h) + 8f(x+h) − 8f(x−h) + f(x−2h)) / 12h, whose truncation error is O(h⁴);
    /// the default 1e-3 ≈ ε^{1/5} balances it against rounding.
    pub step: f64,
    /// Components whose |gradient| is below `floor` × max_j |gradient_j| are compared on that
    /// absolute scale rather than relative to themselves (default 1e-6).
    pub floor: f64,
    /// Check at most this many components, evenly spread (default: all).
    pub max_components: Option<usize>,
    /// The verdict's relative tolerance (default 1e-6): [`GradientCheck::passed`] when the worst
    /// relative error is below it or below 4× the measured finite-difference noise.
    pub tolerance: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            step: 1e-3,
            floor: 1e-6,
            max_components: None,
            tolerance: 1e-6,
        }
    }
}

/// Outcome of a gradient check.
#[derive(Clone, PartialEq)]
pub struct GradientCheck {
    /// Worst |analytic − numeric| / max(|analytic|, |numeric|, floor · max|analytic|).
    pub max_relative_error: f64,
    /// Column-major index of the component with the worst error.
    pub worst_index: usize,
    /// Tape gradient at the worst component.
    pub analytic: f64,
    /// Central-difference estimate at the worst component.
    pub numeric: f64,
    /// The loss at x0.
    pub loss: f64,
    /// How many components were checked.
    pub checked: usize,
    /// The full tape gradient at x0.
    pub gradient: DMatrix<f64>,
    /// The finite differences' own error, measured: max over the checked components of
    /// |D_h − D_2h| / 15 relative to the same scale as the error (the fourth-order stencil's error
    /// at 2h is 16× that at h). An error near this level is rounding or truncation, not a bug.
    pub noise: f64,
    /// The verdict: `max_relative_error ≤ max(tolerance, 4 · noise)`.
    pub passed: bool,
}

impl std::fmt::Debug for GradientCheck {
    /// Everything but the full gradient, which can be long.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GradientCheck")
            .field("max_relative_error", &self.max_relative_error)
            .field("worst_index", &self.worst_index)
            .field("analytic", &self.analytic)
            .field("numeric", &self.numeric)
            .field("loss", &self.loss)
            .field("checked", &self.checked)
            .field("noise", &self.noise)
            .field("passed", &self.passed)
            .finish_non_exhaustive()
    }
}

/// Evaluates `f` (which builds a scalar loss from the variable it is given) on a fresh tape.
fn evaluate<F>(f: &F, x: &DMatrix<f64>) -> Result<f64>
where
    F: for<'t> Fn(&'t Tape, Var<'t>) -> Result<Var<'t>>,
{
    let tape = Tape::new();
    let v = tape.var(x.clone());
    f(&tape, v)?.scalar()
}

/// Checks an [`Objective`](crate::optim::Objective)'s gradient at `params` (the same model that
/// [`minimize`](crate::optim::minimize) would run).
///
/// # Errors
/// As [`gradient`].
pub fn objective(
    objective: &impl crate::optim::Objective,
    params: impl crate::tape::IntoValue,
    options: &Options,
) -> Result<GradientCheck> {
    gradient(|tape, p| objective.loss(tape, p), params, options)
}

/// Compares the tape gradient of `f` at `x0` (anything [`Tape::var`] accepts) with central
/// finite differences.
///
/// # Errors
/// Any error `f` returns, [`Error::NotScalar`] if its loss is not 1×1, or
/// [`Error::NonFinite`] if `f` is not finite at a perturbed point.
pub fn gradient<F>(
    f: F,
    x0: impl crate::tape::IntoValue,
    options: &Options,
) -> Result<GradientCheck>
where
    F: for<'t> Fn(&'t Tape, Var<'t>) -> Result<Var<'t>>,
{
    let x0 = &x0.into_value();
    let tape = Tape::new();
    let x = tape.var(x0.clone());
    let loss_var = f(&tape, x)?;
    let loss = loss_var.scalar()?;
    let gradient = tape.backward(loss_var)?.wrt(x).clone();
    let g_max = gradient.amax();
    let n = x0.len();
    let stride = options
        .max_components
        .map_or(1, |m| n.div_ceil(m.max(1)).max(1));
    let mut report = GradientCheck {
        max_relative_error: 0.0,
        worst_index: 0,
        analytic: gradient.get(0).copied().unwrap_or(0.0),
        numeric: f64::NAN,
        loss,
        checked: 0,
        gradient: DMatrix::zeros(0, 0),
        noise: 0.0,
        passed: true,
    };
    for i in (0..n).step_by(stride) {
        let h = options.step * x0[i].abs().max(1.0);
        let mut xp = x0.clone();
        let mut at = |offset: f64| {
            xp[i] = x0[i] + offset;
            evaluate(&f, &xp)
        };
        let (f4, f2, f1) = (at(4.0 * h)?, at(2.0 * h)?, at(h)?);
        let (m1, m2, m4) = (at(-h)?, at(-2.0 * h)?, at(-4.0 * h)?);
        let numeric = (-f2 + 8.0 * f1 - 8.0 * m1 + m2) / (12.0 * h);
        let coarse = (-f4 + 8.0 * f2 - 8.0 * m2 + m4) / (24.0 * h);
        if !(numeric.is_finite() && coarse.is_finite()) {
            return Err(Error::NonFinite {
                context: "finite-difference loss near the checked component",
                row: i % x0.nrows().max(1),
                col: i / x0.nrows().max(1),
                value: if numeric.is_finite() { coarse } else { numeric },
            });
        }
        let analytic = gradient[i];
        let scale = analytic.abs().max(numeric.abs()).max(options.floor * g_max);
        let relative = |d: f64| if scale > 0.0 { d / scale } else { 0.0 };
        let err = relative((analytic - numeric).abs());
        report.noise = report.noise.max(relative((numeric - coarse).abs()) / 15.0);
        if err > report.max_relative_error || report.checked == 0 {
            report.max_relative_error = err;
            report.worst_index = i;
            report.analytic = analytic;
            report.numeric = numeric;
        }
        report.checked += 1;
    }
    report.gradient = gradient;
    report.passed = report.max_relative_error <= options.tolerance.max(4.0 * report.noise);
    Ok(report)
}

/// What [`hessian_vector`] found: the Hessian-vector product from [`Tape::hvp`] against fourth-order
/// central differences of the gradient along v.
#[derive(Debug, Clone)]
pub struct HessianVectorCheck {
    /// max_i |Hv_i − numeric_i| / max(‖Hv‖∞, ‖numeric‖∞) (0 when both are zero).
    pub max_relative_error: f64,
    /// The component with the largest difference.
    pub worst_index: usize,
    /// H·v at that component.
    pub analytic: f64,
    /// The central difference of the gradient there.
    pub numeric: f64,
    /// The loss at x0.
    pub loss: f64,
    /// The whole H·v (x0's shape).
    pub hessian_vector: DMatrix<f64>,
    /// The difference between the stencil at h and at 2h (relative, /15): the rounding and
    /// truncation noise of the numeric side.
    pub noise: f64,
    /// Whether `max_relative_error` ≤ max(tolerance, 4 × noise).
    pub passed: bool,
}

/// Checks the Hessian-vector product of the scalar `f` at `x0` along `v` ([`Tape::hvp`],
/// forward-over-reverse) against the fourth-order central difference of the gradient along v,
/// (−∇f(x+2hv) + 8∇f(x+hv) − 8∇f(x−hv) + ∇f(x−2hv)) / 12h with h = `step` · max(1, ‖x0‖∞) /
/// ‖v‖∞, and gives a verdict as [`gradient`] does.
///
/// ```
/// use sparsegrad::check;
/// // f(x) = Σ exp(x)·x²
/// let r = check::hessian_vector(
///     |_t, x| Ok((x.exp() * x.square()).sum()),
///     &[0.1, 0.2, 0.3],
///     &[1.0, -0.5, 2.0],
///     &check::Options::default(),
/// )?;
/// assert!(r.passed && r.max_relative_error < 1e-8, "{r:?}");
/// # Ok::<(), sparsegrad::Error>(())
/// ```
///
/// # Errors
/// [`Error::ShapeMismatch`] unless `v` has x0's shape; [`Error::NonFinite`] for a non-finite v
/// or a non-finite gradient near x0; errors of `f`, of the backward pass and of [`Tape::hvp`].
pub fn hessian_vector<F>(
    f: F,
    x0: impl crate::tape::IntoValue,
    v: impl crate::tape::IntoValue,
    options: &Options,
) -> Result<HessianVectorCheck>
where
    F: for<'t> Fn(&'t Tape, Var<'t>) -> Result<Var<'t>>,
{
    let (x0, v) = (&x0.into_value(), v.into_value());
    if v.shape() != x0.shape() {
        return Err(Error::ShapeMismatch {
            op: "hessian_vector (v vs x0)",
            left: v.shape(),
            right: x0.shape(),
        });
    }
    let tape = Tape::new();
    let x = tape.var(x0.clone());
    let loss_var = f(&tape, x)?;
    let loss = loss_var.scalar()?;
    let (_, hv) = tape.hvp(loss_var, &[(x, v.clone())])?;
    let hv = hv.wrt(x).clone();
    let gradient_at = |t: f64| -> Result<DMatrix<f64>> {
        let tape = Tape::new();
        let x = tape.var(x0 + &v * t);
        let loss = f(&tape, x)?;
        Ok(tape.backward(loss)?.wrt(x).clone())
    };
    let v_max = v.amax();
    let h = options.step * x0.amax().max(1.0) / if v_max > 0.0 { v_max } else { 1.0 };
    let stencil = |h: f64| -> Result<DMatrix<f64>> {
        let (p2, p1, m1, m2) = (
            gradient_at(2.0 * h)?,
            gradient_at(h)?,
            gradient_at(-h)?,
            gradient_at(-2.0 * h)?,
        );
        Ok((-p2 + p1 * 8.0 - m1 * 8.0 + m2) / (12.0 * h))
    };
    // H·0 = 0 by linearity: no differences to take (their rounding would be all there is).
    let (numeric, coarse) = if v_max > 0.0 {
        (stencil(h)?, stencil(2.0 * h)?)
    } else {
        (
            DMatrix::zeros(v.nrows(), v.ncols()),
            DMatrix::zeros(v.nrows(), v.ncols()),
        )
    };
    if let Some(k) = numeric.iter().position(|d| !d.is_finite()) {
        return Err(Error::NonFinite {
            context: "finite-difference gradient along v",
            row: k % x0.nrows().max(1),
            col: k / x0.nrows().max(1),
            value: numeric[k],
        });
    }
    let scale = hv.amax().max(numeric.amax());
    let relative = |d: f64| if scale > 0.0 { d / scale } else { 0.0 };
    let (worst_index, worst) =
        (&hv - &numeric)
            .iter()
            .map(|d| d.abs())
            .enumerate()
            .fold(
                (0, 0.0),
                |best, (k, d)| if d > best.1 { (k, d) } else { best },
            );
    let noise = relative((&numeric - &coarse).amax()) / 15.0;
    let max_relative_error = relative(worst);
    Ok(HessianVectorCheck {
        max_relative_error,
        worst_index,
        analytic: hv.get(worst_index).copied().unwrap_or(0.0),
        numeric: numeric.get(worst_index).copied().unwrap_or(0.0),
        loss,
        hessian_vector: hv,
        noise,
        passed: max_relative_error <= options.tolerance.max(4.0 * noise),
    })
}
