//! Finite-difference gradient checking, for testing models built on the tape.
//!
//! ```
//! use nalgebra::DMatrix;
//! use sparsegrad::check;
//! // f(x) = Σ exp(x) · x², checked at x = (0.1, 0.2, 0.3)
//! let x0 = DMatrix::from_column_slice(3, 1, &[0.1, 0.2, 0.3]);
//! let report = check::gradient(|_tape, x| Ok((x.exp() * x.square()).sum()), &x0, &check::Options::default()).unwrap();
//! assert!(report.max_relative_error < 1e-7, "{report:?}");
//! ```

use nalgebra::DMatrix;

use crate::error::{Error, Result};
use crate::tape::{Tape, Var};

/// Settings of [`gradient`].
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
}

impl Default for Options {
    fn default() -> Self {
        Options {
            step: 1e-3,
            floor: 1e-6,
            max_components: None,
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

/// Compares the tape gradient of `f` at `x0` with central finite differences.
///
/// # Errors
/// Any error `f` returns, [`Error::NotScalar`] if its loss is not 1×1, or
/// [`Error::Unsupported`] if `f` is not finite at a perturbed point.
pub fn gradient<F>(f: F, x0: &DMatrix<f64>, options: &Options) -> Result<GradientCheck>
where
    F: for<'t> Fn(&'t Tape, Var<'t>) -> Result<Var<'t>>,
{
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
    };
    for i in (0..n).step_by(stride) {
        let h = options.step * x0[i].abs().max(1.0);
        let mut xp = x0.clone();
        let mut at = |offset: f64| {
            xp[i] = x0[i] + offset;
            evaluate(&f, &xp)
        };
        let (f2, f1, m1, m2) = (at(2.0 * h)?, at(h)?, at(-h)?, at(-2.0 * h)?);
        let numeric = (-f2 + 8.0 * f1 - 8.0 * m1 + m2) / (12.0 * h);
        if !numeric.is_finite() {
            return Err(Error::Unsupported {
                reason: format!("the loss is not finite near component {i} (step {h:e})"),
            });
        }
        let analytic = gradient[i];
        let scale = analytic.abs().max(numeric.abs()).max(options.floor * g_max);
        let err = if scale > 0.0 {
            (analytic - numeric).abs() / scale
        } else {
            0.0
        };
        if err > report.max_relative_error || report.checked == 0 {
            report.max_relative_error = err;
            report.worst_index = i;
            report.analytic = analytic;
            report.numeric = numeric;
        }
        report.checked += 1;
    }
    report.gradient = gradient;
    Ok(report)
}
