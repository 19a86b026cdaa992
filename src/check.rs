//! Finite-difference gradient checking, for testing models built on the tape.
//!
//! Each checked component (or direction, [`directional`]) is differentiated with the fourth-order
//! central stencil on a ladder of steps h = `step` · max(1, |x_i|) · 2^k. A finite difference has
//! two errors: *truncation*, O(h⁴), estimated by comparing the stencils at h and 2h
//! (|D_h − D_2h| / 15), and *rounding* of the loss, ≈ 1.5 ε_f / h, where ε_f is the loss's own
//! noise — measured once per check from a table of high-order differences (Moré and Wild's
//! ECnoise) and never taken below machine ε · |f|. The ladder widens until the sum of the two is
//! smallest inside it (a loss dominated by rounding gets long steps, a strongly curved one short
//! steps), and that sum is the component's *noise*: the accuracy the finite difference itself
//! has there.
//!
//! **Verdict.** Each component's error is relative to scale_i = max(|g_i|, |D_i|, `floor` ·
//! max|g|). A component agrees when its error is within [`Options::tolerance`] or within 4× its
//! noise; it is *inconclusive* when 4× its noise exceeds 10 % of its scale (the difference cannot
//! tell right from wrong there, e.g. a gradient entry of 1e-13 next to rounding of 1e-11).
//! [`GradientCheck::passed`] holds when every checked component agrees and at least one is
//! conclusive — a check that could not have failed does not pass.
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

/// Settings of [`gradient`], [`directional`] and [`hessian_vector`].
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Relative step at the middle of the ladder: h = `step` · max(1, |x_i|) (default 1e-3, near
    /// ε^{1/5}, which balances the fourth-order stencil's O(h⁴) truncation against rounding for a
    /// loss computed to machine precision). The checker then tries steps 2^k times this, for k
    /// from −2 to 1 at first and further (up to ±[`Options::max_doublings`]) while the best step
    /// lies at an end of the ladder. [`hessian_vector`] uses this step only.
    pub step: f64,
    /// How far the ladder may widen: steps from `step` · 2^−m to `step` · 2^m (default 8).
    pub max_doublings: u32,
    /// Components whose |gradient| is below `floor` × max_j |gradient_j| are compared on that
    /// absolute scale rather than relative to themselves (default 1e-6).
    pub floor: f64,
    /// Check at most this many components, evenly spread (default: all). Ignored when
    /// [`Options::components`] is given.
    pub max_components: Option<usize>,
    /// Check exactly these components (column-major indices into x0); default: all, or
    /// [`Options::max_components`] of them.
    pub components: Option<Vec<usize>>,
    /// The verdict's relative tolerance (default 1e-6): a component agrees when its relative
    /// error is below it or below 4× the finite difference's own noise there.
    pub tolerance: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            step: 1e-3,
            max_doublings: 8,
            floor: 1e-6,
            max_components: None,
            components: None,
            tolerance: 1e-6,
        }
    }
}

/// Outcome of a gradient check (see the [module](self) documentation for the verdict).
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
    /// The step the finite difference used at the worst component.
    pub step: f64,
    /// The loss at x0.
    pub loss: f64,
    /// The loss's measured noise ε_f (absolute; at least machine ε · |loss|).
    pub loss_noise: f64,
    /// How many components were checked.
    pub checked: usize,
    /// How many checked components were inconclusive: 4× their finite-difference noise exceeds
    /// 10 % of their scale, so agreement there says little.
    pub inconclusive: usize,
    /// The full tape gradient at x0.
    pub gradient: DMatrix<f64>,
    /// The largest finite-difference noise (estimated truncation + rounding at the chosen step)
    /// over the checked components, relative to the same scale as the error. An error near this
    /// level is the difference quotient's, not the model's.
    pub noise: f64,
    /// The verdict: every checked component within max(tolerance, 4 × its noise) and at least
    /// one conclusive component.
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
            .field("step", &self.step)
            .field("loss", &self.loss)
            .field("loss_noise", &self.loss_noise)
            .field("checked", &self.checked)
            .field("inconclusive", &self.inconclusive)
            .field("noise", &self.noise)
            .field("passed", &self.passed)
            .finish_non_exhaustive()
    }
}

/// Outcome of [`directional`]: the directional derivative ∇f(x0)·v from the tape against finite
/// differences along v.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectionalCheck {
    /// ∇f(x0)·v from the tape's gradient.
    pub analytic: f64,
    /// The finite-difference estimate of d/dt f(x0 + t v) at t = 0.
    pub numeric: f64,
    /// |analytic − numeric| / max(|analytic|, |numeric|, `floor` · ‖∇f‖₂ ‖v‖₂).
    pub relative_error: f64,
    /// The finite difference's own noise (truncation + rounding), on the same relative scale.
    pub noise: f64,
    /// The step along v (in units of t) that the estimate used.
    pub step: f64,
    /// The loss at x0.
    pub loss: f64,
    /// The loss's measured noise ε_f (absolute).
    pub loss_noise: f64,
    /// Whether the noise was small enough to tell (4 × noise ≤ 0.1).
    pub conclusive: bool,
    /// `relative_error ≤ max(tolerance, 4 · noise)` and conclusive.
    pub passed: bool,
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

/// The loss along a line, φ(t) = f(x0 + t·d), where the finite differences are taken.
struct Line<'a, F> {
    f: &'a F,
    x0: &'a DMatrix<f64>,
    direction: &'a DMatrix<f64>,
}

impl<F> Line<'_, F>
where
    F: for<'t> Fn(&'t Tape, Var<'t>) -> Result<Var<'t>>,
{
    fn at(&self, t: f64) -> Result<f64> {
        let value = evaluate(self.f, &(self.x0 + self.direction * t))?;
        if value.is_finite() {
            Ok(value)
        } else {
            Err(Error::NonFinite {
                context: "loss at a finite-difference point",
                row: 0,
                col: 0,
                value,
            })
        }
    }
}

/// The loss's noise level ε_f near x0 along `line`, by Moré and Wild's ECnoise: nine values
/// φ(iδ), i = −4..=4, with a tiny δ (where φ is smooth to far below its rounding), and from the
/// k-th differences σ_k = sqrt(γ_k · mean(Δᵏφ²)), γ_k = (k!)² / (2k)!; the first k ≥ 2 where
/// σ_k, σ_{k+1}, σ_{k+2} agree within 4× gives the estimate (otherwise the largest of σ_3..σ_6).
/// Never below machine ε · |φ(0)|; that floor alone if φ cannot be evaluated there.
fn loss_noise<F>(line: &Line<'_, F>, delta: f64, loss: f64) -> f64
where
    F: for<'t> Fn(&'t Tape, Var<'t>) -> Result<Var<'t>>,
{
    let floor = f64::EPSILON * loss.abs();
    let Ok(mut table) = (-4..=4)
        .map(|i| line.at(f64::from(i) * delta))
        .collect::<Result<Vec<f64>>>()
    else {
        return floor;
    };
    let mut sigma = [0.0; 7];
    let mut gamma = 1.0;
    for (k, s) in sigma.iter_mut().enumerate().skip(1) {
        table = table.windows(2).map(|w| w[1] - w[0]).collect();
        let kf = k as f64;
        gamma *= kf * kf / ((2.0 * kf - 1.0) * (2.0 * kf));
        *s = (gamma * table.iter().map(|d| d * d).sum::<f64>() / table.len() as f64).sqrt();
    }
    let agreeing = (2..=4).find(|&k| {
        let w = &sigma[k..k + 3];
        let (lo, hi) = w.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &s| {
            (lo.min(s), hi.max(s))
        });
        hi <= 4.0 * lo
    });
    let estimate = match agreeing {
        Some(k) => sigma[k],
        None => sigma[3..].iter().copied().fold(0.0, f64::max),
    };
    estimate.max(floor)
}

/// The best fourth-order difference of φ at 0 over a widening ladder of steps h₀ · 2^k: the
/// estimate, its noise (truncation + rounding, absolute) and its step.
struct Difference {
    value: f64,
    noise: f64,
    step: f64,
}

fn best_difference<F>(
    line: &Line<'_, F>,
    h0: f64,
    noise_f: f64,
    max_doublings: u32,
) -> Result<Difference>
where
    F: for<'t> Fn(&'t Tape, Var<'t>) -> Result<Var<'t>>,
{
    let m = i32::try_from(max_doublings.min(30)).unwrap_or(30);
    let step = |k: i32| h0 * 2f64.powi(k);
    // pairs[k] = (φ(h_k), φ(−h_k)), or the error that made it unusable.
    let mut pairs: std::collections::BTreeMap<i32, Result<(f64, f64)>> = Default::default();
    let mut pair = |k: i32| -> Result<(f64, f64)> {
        pairs
            .entry(k)
            .or_insert_with(|| Ok((line.at(step(k))?, line.at(-step(k))?)))
            .clone()
    };
    // The stencil at h_k uses h_k and h_{k+1}; its truncation estimate needs the one at h_{k+1}.
    let mut stencil = |k: i32| -> Result<f64> {
        let ((p1, m1), (p2, m2)) = (pair(k)?, pair(k + 1)?);
        Ok((-p2 + 8.0 * p1 - 8.0 * m1 + m2) / (12.0 * step(k)))
    };
    let (mut lo, mut hi) = ((-2).max(-m), 1.min(m));
    let mut last_error = None;
    loop {
        let mut best: Option<(i32, Difference)> = None;
        for k in lo..=hi {
            let estimate = stencil(k).and_then(|d| Ok((d, stencil(k + 1)?)));
            let (d, coarse) = match estimate {
                Ok(pair) => pair,
                Err(e) => {
                    last_error = Some(e);
                    continue;
                }
            };
            let noise = (d - coarse).abs() / 15.0 + 1.5 * noise_f / step(k);
            if best.as_ref().is_none_or(|(_, b)| noise < b.noise) {
                best = Some((
                    k,
                    Difference {
                        value: d,
                        noise,
                        step: step(k),
                    },
                ));
            }
        }
        match best {
            Some((k, _)) if k == hi && hi < m && stencil(hi + 2).is_ok() => hi += 1,
            Some((k, _)) if k == lo && lo > -m => lo -= 1,
            Some((_, difference)) => return Ok(difference),
            None if lo > -m => lo -= 1,
            None => {
                return Err(last_error.unwrap_or(Error::NonFinite {
                    context: "finite-difference loss near the checked point",
                    row: 0,
                    col: 0,
                    value: f64::NAN,
                }))
            }
        }
    }
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

/// The tape's loss and gradient at x0.
fn loss_and_gradient<F>(f: &F, x0: &DMatrix<f64>) -> Result<(f64, DMatrix<f64>)>
where
    F: for<'t> Fn(&'t Tape, Var<'t>) -> Result<Var<'t>>,
{
    let tape = Tape::new();
    let x = tape.var(x0.clone());
    let loss_var = f(&tape, x)?;
    let loss = loss_var.scalar()?;
    Ok((loss, tape.backward(loss_var)?.wrt(x).clone()))
}

/// Compares the tape gradient of `f` at `x0` (anything [`Tape::var`] accepts) with central
/// finite differences, component by component (all, [`Options::max_components`] evenly spread,
/// or exactly [`Options::components`]); see the [module](self) documentation for the steps and
/// the verdict.
///
/// A loss whose rounding dominates (large values, long sums, iterative solves) and gradient
/// entries far below the largest pass when they are right:
///
/// ```
/// use sparsegrad::check;
/// // 1e9 + Σ x²: the constant makes every value's rounding ~1e-7.
/// let r = check::gradient(|_t, x| Ok(x.square().sum() + 1e9), &[0.5, -2.0], &Default::default())?;
/// assert!(r.passed && r.max_relative_error < 1e-5, "{r:?}");
/// # Ok::<(), sparsegrad::Error>(())
/// ```
///
/// # Errors
/// Any error `f` returns at x0, [`Error::NotScalar`] if its loss is not 1×1,
/// [`Error::IndexOutOfRange`] for a component outside x0, or — when no step of the ladder gives
/// a finite difference for a component — the error (or [`Error::NonFinite`]) met there.
pub fn gradient<F>(
    f: F,
    x0: impl crate::tape::IntoValue,
    options: &Options,
) -> Result<GradientCheck>
where
    F: for<'t> Fn(&'t Tape, Var<'t>) -> Result<Var<'t>>,
{
    let x0 = &x0.into_value();
    let (loss, gradient) = loss_and_gradient(&f, x0)?;
    let g_max = gradient.amax();
    let n = x0.len();
    let components: Vec<usize> = match &options.components {
        Some(list) => {
            if let Some((entry, &index)) = list.iter().enumerate().find(|(_, &i)| i >= n) {
                return Err(Error::IndexOutOfRange {
                    context: "check::Options::components",
                    entry,
                    what: "component",
                    index,
                    bound: n,
                });
            }
            list.clone()
        }
        None => {
            let stride = options
                .max_components
                .map_or(1, |m| n.div_ceil(m.max(1)).max(1));
            (0..n).step_by(stride).collect()
        }
    };
    // The loss's noise, measured once along a fixed ±1 pattern scaled like the steps.
    let pattern = DMatrix::from_fn(x0.nrows(), x0.ncols(), |r, c| {
        let k = r + c * x0.nrows();
        let sign = if (k.wrapping_mul(2_654_435_761) >> 7) & 1 == 0 {
            1.0
        } else {
            -1.0
        };
        sign * x0[(r, c)].abs().max(1.0)
    });
    let line = Line {
        f: &f,
        x0,
        direction: &pattern,
    };
    let loss_noise = loss_noise(&line, 1e-6 * options.step.max(f64::MIN_POSITIVE), loss);
    let mut report = GradientCheck {
        max_relative_error: 0.0,
        worst_index: 0,
        analytic: gradient.get(0).copied().unwrap_or(0.0),
        numeric: f64::NAN,
        step: f64::NAN,
        loss,
        loss_noise,
        checked: 0,
        inconclusive: 0,
        gradient: DMatrix::zeros(0, 0),
        noise: 0.0,
        passed: true,
    };
    let mut direction = DMatrix::zeros(x0.nrows(), x0.ncols());
    for i in components {
        direction[i] = 1.0;
        let line = Line {
            f: &f,
            x0,
            direction: &direction,
        };
        let h0 = options.step * x0[i].abs().max(1.0);
        let d = best_difference(&line, h0, loss_noise, options.max_doublings);
        direction[i] = 0.0;
        let d = d.map_err(|e| match e {
            Error::NonFinite { context, value, .. } => Error::NonFinite {
                context,
                row: i % x0.nrows().max(1),
                col: i / x0.nrows().max(1),
                value,
            },
            e => e,
        })?;
        let analytic = gradient[i];
        let scale = analytic.abs().max(d.value.abs()).max(options.floor * g_max);
        let relative = |v: f64| if scale > 0.0 { v / scale } else { 0.0 };
        let err = relative((analytic - d.value).abs());
        let noise = if scale > 0.0 {
            d.noise / scale
        } else {
            f64::INFINITY
        };
        report.noise = report.noise.max(noise);
        if 4.0 * noise > 0.1 {
            report.inconclusive += 1;
        }
        if err > options.tolerance.max(4.0 * noise) {
            report.passed = false;
        }
        if err > report.max_relative_error || report.checked == 0 {
            report.max_relative_error = err;
            report.worst_index = i;
            report.analytic = analytic;
            report.numeric = d.value;
            report.step = d.step;
        }
        report.checked += 1;
    }
    report.gradient = gradient;
    report.passed &= report.checked > report.inconclusive;
    Ok(report)
}

/// Checks the directional derivative ∇f(x0)·v — one number, so a check that costs a few loss
/// evaluations whatever the number of parameters — against finite differences of t ↦ f(x0 + t v)
/// on the same ladder of steps as [`gradient`] (h₀ = `step` · max(1, ‖x0‖∞) / ‖v‖∞).
///
/// ```
/// use sparsegrad::check;
/// let r = check::directional(
///     |_t, x| Ok((x.exp() * x.square()).sum()),
///     &[0.1, 0.2, 0.3],
///     &[1.0, -1.0, 0.5],
///     &check::Options::default(),
/// )?;
/// assert!(r.passed && r.relative_error < 1e-9, "{r:?}");
/// # Ok::<(), sparsegrad::Error>(())
/// ```
///
/// # Errors
/// [`Error::ShapeMismatch`] unless `v` has x0's shape, [`Error::NonFinite`] for a non-finite or
/// zero v; errors of `f` at x0 and as [`gradient`].
pub fn directional<F>(
    f: F,
    x0: impl crate::tape::IntoValue,
    v: impl crate::tape::IntoValue,
    options: &Options,
) -> Result<DirectionalCheck>
where
    F: for<'t> Fn(&'t Tape, Var<'t>) -> Result<Var<'t>>,
{
    let (x0, v) = (&x0.into_value(), v.into_value());
    if v.shape() != x0.shape() {
        return Err(Error::ShapeMismatch {
            op: "directional (v vs x0)",
            left: v.shape(),
            right: x0.shape(),
        });
    }
    let v_max = v.amax();
    if !(v_max.is_finite() && v_max > 0.0) {
        return Err(Error::NonFinite {
            context: "direction of check::directional (zero or not finite)",
            row: 0,
            col: 0,
            value: v_max,
        });
    }
    let (loss, gradient) = loss_and_gradient(&f, x0)?;
    let line = Line {
        f: &f,
        x0,
        direction: &v,
    };
    let h0 = options.step * x0.amax().max(1.0) / v_max;
    let loss_noise = loss_noise(&line, 1e-6 * h0, loss);
    let d = best_difference(&line, h0, loss_noise, options.max_doublings)?;
    let analytic = gradient.dot(&v);
    let scale = analytic
        .abs()
        .max(d.value.abs())
        .max(options.floor * gradient.norm() * v.norm());
    let (relative_error, noise) = if scale > 0.0 {
        ((analytic - d.value).abs() / scale, d.noise / scale)
    } else {
        (0.0, f64::INFINITY)
    };
    let conclusive = 4.0 * noise <= 0.1;
    Ok(DirectionalCheck {
        analytic,
        numeric: d.value,
        relative_error,
        noise,
        step: d.step,
        loss,
        loss_noise,
        conclusive,
        passed: conclusive && relative_error <= options.tolerance.max(4.0 * noise),
    })
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
