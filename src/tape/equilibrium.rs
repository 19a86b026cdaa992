//! Nonlinear equilibria as one tape node: u* with r(u*, θ) = 0 by Newton's method (a sparse
//! direct solve with J = ∂r/∂u per step, a backtracking line search on ‖r‖), differentiated by
//! the implicit function theorem instead of through the iterations:
//!
//! ```text
//!   backward:  λ = J⁻ᵀ ū,   θ̄ = −(∂r/∂θ)ᵀ λ        (one adjoint solve)
//!   forward:   u̇ = −J⁻¹ (∂r/∂θ) θ̇                  (one solve)
//! ```
//!
//! with J factored once at u* — the factorization Newton's last iteration made — and kept in the
//! node. The residual is the user's tape code: a closure that records r(u, θ) on a fresh tape, so
//! ∂r/∂θ products are that tape's backward and forward sweeps. J comes from the closure (a
//! sparse value, e.g. a tangent stiffness through an [`Assembly`](crate::Assembly)) or, given only
//! its pattern, from forward-mode products with a column coloring
//! ([`ColumnColoring`]): one JVP per color.

use std::sync::Arc;

use nalgebra::DMatrix;

use super::{Hvp, Jvp, Op, Operation, Tape, Var, Vjp};
use crate::error::{Error, Result};
use crate::solve::{Factor, Solver};
use crate::sparse::{ColumnColoring, Structure};

/// What a residual closure returns: r(u, θ) as an n×1 value on the closure's tape and, when the
/// closure computes it, the Jacobian J = ∂r/∂u as a sparse n×n value on the same tape.
pub struct Residual<'s> {
    r: Var<'s>,
    jacobian: Option<Var<'s>>,
    energy: Option<Var<'s>>,
}

impl<'s> Residual<'s> {
    /// A residual without a Jacobian: [`Newton::with_pattern`] must give J's pattern, and J is
    /// computed by colored forward-mode products ([`colored_jacobian`]).
    pub fn new(r: Var<'s>) -> Self {
        Residual {
            r,
            jacobian: None,
            energy: None,
        }
    }

    /// A residual with its Jacobian J = ∂r/∂u (a sparse value on the same tape, the same
    /// structure at every u).
    pub fn with_jacobian(r: Var<'s>, jacobian: Var<'s>) -> Self {
        Residual {
            r,
            jacobian: Some(jacobian),
            energy: None,
        }
    }

    /// With the energy E (1×1) whose gradient r is (r = ∇ᵤE, J its Hessian): the line search
    /// then asks for a sufficient decrease of E (Armijo, or a full step that decreases ‖r‖),
    /// which keeps Newton on the way to a minimum through regions where ‖r‖ alone stalls —
    /// large rotations, nearly singular tangents — and steps along −r where J is indefinite.
    pub fn with_energy(mut self, energy: Var<'s>) -> Self {
        self.energy = Some(energy);
        self
    }
}

impl<'s> Residual<'s> {
    /// r(u, θ).
    pub fn r(&self) -> Var<'s> {
        self.r
    }

    /// J = ∂r/∂u, when the closure gave it.
    pub fn jacobian(&self) -> Option<Var<'s>> {
        self.jacobian
    }

    /// The energy E (r = ∇ᵤE), when the closure gave it.
    pub fn energy(&self) -> Option<Var<'s>> {
        self.energy
    }
}

impl<'s> From<Var<'s>> for Residual<'s> {
    fn from(r: Var<'s>) -> Self {
        Residual::new(r)
    }
}

/// The residual r(u, θ) as tape code: given a fresh tape, u (n×1) and the parameters (as
/// [`Tape::equilibrium`] got them, same shapes), record r on that tape. Every
/// `Fn(&Tape, Var, &[Var]) -> Result<Residual>` closure that is `Send + Sync + 'static` is one.
pub(crate) trait ResidualFn: Send + Sync + 'static {
    /// Records r(u, θ) (and optionally J) on `tape`.
    ///
    /// # Errors
    /// Whatever the recorded operations report.
    fn residual<'s>(&self, tape: &'s Tape, u: Var<'s>, params: &[Var<'s>]) -> Result<Residual<'s>>;
}

impl<F> ResidualFn for F
where
    F: for<'s> Fn(&'s Tape, Var<'s>, &[Var<'s>]) -> Result<Residual<'s>> + Send + Sync + 'static,
{
    fn residual<'s>(&self, tape: &'s Tape, u: Var<'s>, params: &[Var<'s>]) -> Result<Residual<'s>> {
        self(tape, u, params)
    }
}

/// Newton's method for [`Tape::equilibrium`]: the linear solver for J, where J comes from, the
/// stopping rule and the iteration limit.
///
/// Converged means ‖r(u)‖₂ ≤ max(`abs_tol`, `rel_tol`·‖r(u₀)‖₂) (defaults 0 and 1e-10), or ‖r‖
/// at rounding level, ‖r‖₂ ≤ 16ε‖J‖_F‖u‖₂ (a start already at a solution), or a full Newton
/// step below rounding, ‖δ‖₂ ≤ 4ε‖u‖₂ (nothing left to change in f64). Each step
/// δ = −J⁻¹r is damped by halving α until ‖r(u + αδ)‖₂ ≤ (1 − 10⁻⁴α)‖r(u)‖₂ (Armijo on ‖r‖),
/// or, for a residual given with its energy ([`Residual::with_energy`]), until
/// E(u + αδ) ≤ E(u) + 10⁻⁴α rᵀδ (a full step that decreases ‖r‖ also passes).
#[derive(Clone, Debug)]
pub struct Newton {
    solver: Solver,
    pattern: Option<Arc<Structure>>,
    abs_tol: f64,
    rel_tol: f64,
    max_iterations: usize,
}

impl Newton {
    /// Newton with `solver` for J (e.g. [`Solver::cholesky`] when J is symmetric positive
    /// definite, as for r = ∇E of a convex energy; [`Solver::lu`] in general); J from the
    /// residual closure, rel_tol 1e-10, at most 50 iterations.
    pub fn new(solver: Solver) -> Self {
        Newton {
            solver,
            pattern: None,
            abs_tol: 0.0,
            rel_tol: 1e-10,
            max_iterations: 50,
        }
    }

    /// J's pattern (full storage, the same at every u): J is computed from forward-mode
    /// products of the residual, one per color of [`ColumnColoring::greedy`], when the closure
    /// returns no Jacobian.
    pub fn with_pattern(mut self, pattern: Arc<Structure>) -> Self {
        self.pattern = Some(pattern);
        self
    }

    /// Stop when ‖r‖₂ ≤ max(`abs_tol`, `rel_tol`·‖r(u₀)‖₂).
    pub fn with_tolerance(mut self, abs_tol: f64, rel_tol: f64) -> Self {
        self.abs_tol = abs_tol;
        self.rel_tol = rel_tol;
        self
    }

    /// At most this many Newton steps.
    pub fn with_max_iterations(mut self, max_iterations: usize) -> Self {
        self.max_iterations = max_iterations;
        self
    }
}

/// How Newton's method went: the residual norm at every iterate (u₀ first, u* last), the step
/// lengths α taken, and how J was formed.
#[derive(Clone, Debug, PartialEq)]
pub struct NewtonReport {
    /// ‖r(u_k)‖₂ for k = 0 … iterations.
    pub residuals: Vec<f64>,
    /// The line search's α for each step (1 = a full Newton step).
    pub steps: Vec<f64>,
    /// Newton steps taken.
    pub iterations: usize,
    /// Numeric factorizations of J (one per iterate, the last one kept for the derivatives).
    pub factorizations: usize,
    /// Colors of J's column coloring (JVPs per Jacobian), or `None` when the closure gave J.
    pub colors: Option<usize>,
    /// Why it stopped: "residual" (the tolerance), "rounding" (‖r‖ at rounding level) or
    /// "step" (a Newton step below rounding).
    pub stopped_by: &'static str,
}

fn failed(iteration: usize, residual: f64, reason: impl Into<String>) -> Error {
    Error::Equilibrium {
        iteration,
        residual,
        reason: reason.into(),
    }
}

fn norm(v: &DMatrix<f64>) -> f64 {
    v.norm()
}

/// ‖v‖₂ of a slice (J's stored values: its Frobenius norm, up to the mirrored half of
/// one-triangle storage).
fn norm_of(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// The parameters as given, and how to record them on a fresh tape.
struct Params {
    values: Vec<DMatrix<f64>>,
}

impl Params {
    fn record<'s>(&self, tape: &'s Tape, differentiable: bool) -> Vec<Var<'s>> {
        self.values
            .iter()
            .map(|v| {
                if differentiable {
                    tape.var(v)
                } else {
                    tape.constant(v)
                }
            })
            .collect()
    }
}

/// One residual evaluation on its own tape at u (parameters constant), with J when asked.
struct Point {
    r: DMatrix<f64>,
    energy: Option<f64>,
    jacobian: Option<(Arc<Structure>, Vec<f64>)>,
}

struct Problem<'a> {
    residual: &'a dyn ResidualFn,
    params: &'a Params,
    coloring: Option<(Arc<Structure>, Vec<Vec<usize>>)>,
    n: usize,
}

impl Problem<'_> {
    fn evaluate(&self, u: &DMatrix<f64>, with_jacobian: bool) -> Result<Point> {
        let tape = Tape::new();
        let uv = tape.var(u);
        let params = self.params.record(&tape, false);
        let out = self.residual.residual(&tape, uv, &params)?;
        let r = out.r.value()?.clone_owned();
        if r.shape() != (self.n, 1) {
            return Err(Error::ShapeMismatch {
                op: "equilibrium (residual vs u)",
                left: r.shape(),
                right: (self.n, 1),
            });
        }
        let energy = match out.energy {
            Some(e) => Some(e.scalar()?),
            None => None,
        };
        if !with_jacobian || r.iter().any(|v| !v.is_finite()) {
            return Ok(Point {
                r,
                energy,
                jacobian: None,
            });
        }
        let jacobian = match (out.jacobian, &self.coloring) {
            (Some(j), _) => {
                let structure = j.structure().ok_or_else(|| Error::InvalidArgument {
                    what: "equilibrium Jacobian",
                    reason: format!("the closure returned a dense {:?}; J must be sparse", j),
                })?;
                if structure.nrows() != self.n || structure.ncols() != self.n {
                    return Err(Error::ShapeMismatch {
                        op: "equilibrium (Jacobian vs u)",
                        left: (structure.nrows(), structure.ncols()),
                        right: (self.n, self.n),
                    });
                }
                (structure, j.value()?.as_slice().to_vec())
            }
            (None, Some((structure, groups))) => (
                structure.clone(),
                colored(&tape, uv, out.r, structure, groups)?,
            ),
            (None, None) => {
                return Err(Error::InvalidArgument {
                    what: "equilibrium Jacobian",
                    reason: "the residual closure returned no Jacobian and Newton has no \
                             pattern for a colored one (Newton::with_pattern)"
                        .into(),
                })
            }
        };
        Ok(Point {
            r,
            energy,
            jacobian: Some(jacobian),
        })
    }
}

/// J's stored values from one JVP per color: seeding u̇ with the sum of a color's unit vectors
/// gives J u̇, whose row i is J_ij for the one column j of that color with an entry in row i.
fn colored<'s>(
    tape: &'s Tape,
    u: Var<'s>,
    r: Var<'s>,
    structure: &Structure,
    groups: &[Vec<usize>],
) -> Result<Vec<f64>> {
    let (cp, ri) = (structure.col_ptr(), structure.row_idx());
    let n = structure.ncols();
    let mut values = vec![0.0; structure.nnz()];
    for group in groups {
        let mut seed = DMatrix::zeros(n, 1);
        for &j in group {
            seed[j] = 1.0;
        }
        let jv = tape.jvp(&[(u, seed)], &[r])?.remove(0);
        for &j in group {
            for k in cp[j]..cp[j + 1] {
                values[k] = jv[ri[k]];
            }
        }
    }
    Ok(values)
}

/// A residual closure with its signature fixed for every tape lifetime, for a closure kept in a
/// variable before it is passed to [`Tape::equilibrium`] or [`colored_jacobian`] (Rust infers a
/// closure's higher-ranked signature only where it is passed directly; this passes it through).
///
/// ```
/// use sparsegrad::tape::{residual_fn, Residual};
/// let r = residual_fn(|_tape, u, p| Ok(Residual::new(u.square() - p[0])));
/// # let _ = r;
/// ```
pub fn residual_fn<F>(f: F) -> F
where
    F: for<'s> Fn(&'s Tape, Var<'s>, &[Var<'s>]) -> Result<Residual<'s>>,
{
    f
}

/// J = ∂r/∂u at (u, θ) on `pattern` (full storage) from one forward-mode product per color of
/// [`ColumnColoring::greedy`]: the stored values in `pattern`'s entry order, and the number of
/// colors. What [`Tape::equilibrium`] computes when the residual closure gives no Jacobian;
/// exact (no differencing), so it matches a hand-written Jacobian to rounding.
///
/// # Errors
/// [`Error::ShapeMismatch`] unless r is n×1 for n×1 u and `pattern` is n×n;
/// [`Error::Unsupported`] for a one-triangle pattern; the closure's errors.
pub fn colored_jacobian<F>(
    pattern: &Arc<Structure>,
    u: &DMatrix<f64>,
    params: &[DMatrix<f64>],
    residual: F,
) -> Result<(Vec<f64>, usize)>
where
    F: for<'s> Fn(&'s Tape, Var<'s>, &[Var<'s>]) -> Result<Residual<'s>>,
{
    let n = u.nrows();
    if u.ncols() != 1 || pattern.nrows() != n || pattern.ncols() != n {
        return Err(Error::ShapeMismatch {
            op: "colored_jacobian (pattern vs u)",
            left: (pattern.nrows(), pattern.ncols()),
            right: (n, n),
        });
    }
    let groups = ColumnColoring::greedy(pattern)?.groups();
    let tape = Tape::new();
    let uv = tape.var(u);
    let p: Vec<Var<'_>> = params.iter().map(|v| tape.constant(v)).collect();
    let r = residual(&tape, uv, &p)?.r;
    if r.shape() != (n, 1) {
        return Err(Error::ShapeMismatch {
            op: "colored_jacobian (residual vs u)",
            left: r.shape(),
            right: (n, 1),
        });
    }
    Ok((colored(&tape, uv, r, pattern, &groups)?, groups.len()))
}

impl Tape {
    /// u* with r(u*, θ) = 0, as a node whose derivatives are the implicit function theorem's:
    /// Newton's method from `u0` on the residual that `residual` records (see [`Residual`]),
    /// each step one sparse solve with J = ∂r/∂u by `options`' solver (a fixed pattern, so one
    /// symbolic analysis serves every step and every later evaluation). The result's backward
    /// is λ = J⁻ᵀ ū, θ̄ = −(∂r/∂θ)ᵀλ and its forward mode u̇ = −J⁻¹(∂r/∂θ)θ̇, both with the
    /// factorization of J at u* that Newton's last iteration made (no refactorization, no
    /// differentiation through the iterations). `params` are dense variables of this tape
    /// (what r depends on besides u).
    ///
    /// ```
    /// use nalgebra::DMatrix;
    /// use sparsegrad::tape::{Newton, Residual};
    /// use sparsegrad::{Solver, Structure, Symmetry, Tape};
    /// // r_i(u, θ) = u_i³ + θ_i u_i − 2 (diagonal J): u_i* solves u³ + θu = 2.
    /// let (diag, _) =
    ///     Structure::from_pairs(3, 3, &[(0, 0), (1, 1), (2, 2)], Symmetry::General).unwrap();
    /// let tape = Tape::new();
    /// let theta = tape.var(DMatrix::from_column_slice(3, 1, &[1.0, 2.0, 3.0]));
    /// let (u, report) = tape
    ///     .equilibrium(
    ///         &[theta],
    ///         &DMatrix::from_element(3, 1, 1.0),
    ///         |_t, u, p| Ok(Residual::new((u.powf(3.0) + u * p[0]).offset(-2.0))),
    ///         &Newton::new(Solver::lu()).with_pattern(diag),
    ///     )
    ///     .unwrap();
    /// assert_eq!(report.colors, Some(1));
    /// let x = u.value().unwrap()[0];
    /// assert!((x.powi(3) + x - 2.0).abs() < 1e-12); // u₀* = 1
    /// // du/dθ = −u / (3u² + θ) by the implicit function theorem: −1/4 at (u, θ) = (1, 1).
    /// let g = tape.backward(u.sum()).unwrap();
    /// assert!((g.wrt(theta)[0] + 0.25).abs() < 1e-12);
    /// ```
    ///
    /// # Errors
    /// [`Error::Equilibrium`] naming the iteration and ‖r‖ when Newton does not converge within
    /// the iteration limit, the line search cannot decrease ‖r‖, the residual is not finite, or
    /// J cannot be factored (singular, not positive definite — the solver's error in the
    /// reason); [`Error::ShapeMismatch`] for a residual that is not n×1 or a Jacobian that is not
    /// n×n; [`Error::InvalidArgument`] without a Jacobian or a pattern, for a dense Jacobian, or
    /// a sparse parameter; the closure's own errors.
    pub fn equilibrium<'t, F>(
        &'t self,
        params: &[Var<'t>],
        u0: &DMatrix<f64>,
        residual: F,
        options: &Newton,
    ) -> Result<(Var<'t>, NewtonReport)>
    where
        F: for<'s> Fn(&'s Tape, Var<'s>, &[Var<'s>]) -> Result<Residual<'s>>
            + Send
            + Sync
            + 'static,
    {
        let residual: Arc<dyn ResidualFn> = Arc::new(residual);
        let mut report = None;
        let inputs: Vec<usize> = params.iter().map(|p| p.index).collect();
        let u = self.record_fallible("equilibrium", params, |nodes| {
            for &i in &inputs {
                if nodes[i].sparse.is_some() {
                    return Err(Error::InvalidArgument {
                        what: "equilibrium parameter",
                        reason: format!(
                            "node {i} is sparse; pass its stored values as a dense variable \
                             (Var::values)"
                        ),
                    });
                }
            }
            if u0.ncols() != 1 {
                return Err(Error::ShapeMismatch {
                    op: "equilibrium (u0 must be n×1)",
                    left: u0.shape(),
                    right: (u0.nrows(), 1),
                });
            }
            let params = Params {
                values: inputs.iter().map(|&i| nodes[i].value.clone()).collect(),
            };
            let Solved {
                u,
                factor,
                structure,
                report: rep,
            } = newton(residual.as_ref(), &params, u0, options)?;
            report = Some(rep);
            Ok((
                u.clone(),
                None,
                Op::new(Equilibrium {
                    inputs: inputs.clone(),
                    params,
                    u,
                    residual: residual.clone(),
                    factor,
                    structure,
                }),
            ))
        })?;
        Ok((u, report.expect("set when the node was recorded")))
    }
}

/// What Newton's method ends with.
struct Solved {
    u: DMatrix<f64>,
    /// The factorization of J(u*).
    factor: Arc<Factor>,
    structure: Arc<Structure>,
    report: NewtonReport,
}

/// Newton's method from `u0`.
fn newton(
    residual: &dyn ResidualFn,
    params: &Params,
    u0: &DMatrix<f64>,
    options: &Newton,
) -> Result<Solved> {
    let n = u0.nrows();
    if let Some(row) = u0.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite {
            context: "equilibrium u0",
            row,
            col: 0,
            value: u0[row],
        });
    }
    let coloring = match &options.pattern {
        Some(s) => Some((s.clone(), ColumnColoring::greedy(s)?.groups())),
        None => None,
    };
    let problem = Problem {
        residual,
        params,
        coloring,
        n,
    };
    let mut report = NewtonReport {
        residuals: Vec::new(),
        steps: Vec::new(),
        iterations: 0,
        factorizations: 0,
        colors: problem.coloring.as_ref().map(|(_, g)| g.len()),
        stopped_by: "residual",
    };
    let mut u = u0.clone();
    let mut point = problem.evaluate(&u, true)?;
    let mut target = 0.0;
    for k in 0.. {
        let rn = norm(&point.r);
        if !rn.is_finite() {
            return Err(failed(k, rn, "the residual is not finite"));
        }
        report.residuals.push(rn);
        if k == 0 {
            target = options.abs_tol.max(options.rel_tol * rn);
        }
        let (structure, values) = point
            .jacobian
            .take()
            .ok_or_else(|| failed(k, rn, "no Jacobian at this iterate"))?;
        if values.iter().any(|v| !v.is_finite()) {
            return Err(failed(k, rn, "the Jacobian has a non-finite entry"));
        }
        let factor = crate::solve::node::factor(&options.solver, &structure, &values)
            .map_err(|e| failed(k, rn, format!("J could not be factored: {e}")))?;
        report.factorizations += 1;
        // Rounding bounds how small ‖r‖ can get: ~ε‖J‖‖u‖ (a warm start at a solution asks
        // rel_tol·‖r₀‖ of a residual that is already at that floor).
        let floor = 16.0 * f64::EPSILON * norm_of(&values) * norm(&u);
        if rn <= target || rn <= floor {
            if rn > target {
                report.stopped_by = "rounding";
            }
            report.iterations = k;
            return Ok(Solved {
                u,
                factor,
                structure,
                report,
            });
        }
        let mut delta = crate::solve::node::solve(
            &options.solver,
            factor.as_ref(),
            &structure,
            &values,
            &point.r,
        )
        .map_err(|e| failed(k, rn, format!("the Newton step failed: {e}")))?;
        delta.neg_mut();
        if norm(&delta) <= 4.0 * f64::EPSILON * norm(&u) {
            report.iterations = k;
            report.stopped_by = "step";
            return Ok(Solved {
                u,
                factor,
                structure,
                report,
            });
        }
        if k >= options.max_iterations {
            return Err(failed(
                k,
                rn,
                format!(
                    "not converged in {} Newton iterations (target ‖r‖ ≤ {target:e})",
                    options.max_iterations
                ),
            ));
        }
        // With an energy: Armijo on E along δ, or, where δ is no descent direction (an
        // indefinite J), along the step of a shifted J + μI (see `descent`); without: Armijo
        // on ‖r‖ (δ always descends on ‖r‖²).
        let slope = match point.energy {
            Some(_) => {
                let s = point.r.dot(&delta);
                if s >= 0.0 {
                    delta = descent(&point.r, &structure, &values, &mut report)?;
                    point.r.dot(&delta)
                } else {
                    s
                }
            }
            None => 0.0,
        };
        let mut alpha = 1.0;
        let accepted = loop {
            let trial = &u + &delta * alpha;
            let at = problem.evaluate(&trial, false)?;
            let trial_norm = norm(&at.r);
            let residual_decrease =
                trial_norm.is_finite() && trial_norm <= (1.0 - 1e-4 * alpha) * rn;
            let ok = match (point.energy, at.energy) {
                (Some(e0), Some(e)) => {
                    trial_norm.is_finite()
                        && (e <= e0 + 1e-4 * alpha * slope || (alpha == 1.0 && residual_decrease))
                }
                _ => residual_decrease,
            };
            if ok {
                break trial;
            }
            alpha *= 0.5;
            if alpha < 1e-10 {
                return Err(failed(
                    k,
                    rn,
                    "the line search found no step that decreases ‖r‖ (or the energy): J may \
                     be wrong, or u₀ too far from a solution",
                ));
            }
        };
        report.steps.push(alpha);
        u = accepted;
        point = problem.evaluate(&u, true)?;
    }
    unreachable!("the loop returns")
}

/// A descent direction for the energy where J is indefinite (Nocedal–Wright's Newton with a
/// Hessian modification): δ = −(J + τI)⁻¹ r with τ from their Algorithm 3.3 (each Cholesky
/// attempt counted in the report); −r when J is not stored symmetric or no shift works.
fn descent(
    r: &DMatrix<f64>,
    structure: &Arc<Structure>,
    values: &[f64],
    report: &mut NewtonReport,
) -> Result<DMatrix<f64>> {
    use crate::sparse::Symmetry;
    if structure.symmetry() == Symmetry::General {
        return Ok(-r);
    }
    let (cp, ri) = (structure.col_ptr(), structure.row_idx());
    let diagonal: Vec<usize> = (0..structure.ncols())
        .filter_map(|j| (cp[j]..cp[j + 1]).find(|&k| ri[k] == j))
        .collect();
    if diagonal.len() != structure.ncols() {
        return Ok(-r);
    }
    // Nocedal & Wright, Algorithm 3.3: τ₀ = β − min J_jj (0 < β = 10⁻³ max |J_jj|) when a
    // diagonal entry is ≤ 0, else β; double τ until a Cholesky factorization succeeds.
    let beta = 1e-3
        * diagonal
            .iter()
            .map(|&k| values[k].abs())
            .fold(0.0, f64::max)
            .max(f64::MIN_POSITIVE);
    let min_diag = diagonal
        .iter()
        .map(|&k| values[k])
        .fold(f64::INFINITY, f64::min);
    let mut tau = if min_diag > 0.0 {
        beta
    } else {
        beta - min_diag
    };
    let cholesky = Solver::cholesky();
    let mut shifted = values.to_vec();
    for _ in 0..64 {
        for &k in &diagonal {
            shifted[k] = values[k] + tau;
        }
        report.factorizations += 1;
        if let Ok(f) = crate::solve::node::factor(&cholesky, structure, &shifted) {
            let mut delta =
                crate::solve::node::solve(&cholesky, f.as_ref(), structure, &shifted, r)?;
            delta.neg_mut();
            return Ok(delta);
        }
        tau = (2.0 * tau).max(beta);
    }
    Ok(-r)
}

/// The equilibrium node: u* and what its derivatives need.
struct Equilibrium {
    inputs: Vec<usize>,
    params: Params,
    u: DMatrix<f64>,
    residual: Arc<dyn ResidualFn>,
    /// J(u*)'s factorization, from Newton's last iteration.
    factor: Arc<Factor>,
    structure: Arc<Structure>,
}

impl Equilibrium {
    /// r recorded at u* with the parameters as variables of a fresh tape.
    fn record_at_solution<'s>(&self, tape: &'s Tape) -> Result<(Var<'s>, Vec<Var<'s>>)> {
        let u = tape.constant(&self.u);
        let params = self.params.record(tape, true);
        let r = self.residual.residual(tape, u, &params)?.r;
        Ok((r, params))
    }
}

impl Operation for Equilibrium {
    fn name(&self) -> &'static str {
        "equilibrium"
    }
    fn inputs(&self) -> Vec<usize> {
        self.inputs.clone()
    }
    fn factor(&self) -> Option<&Arc<Factor>> {
        Some(&self.factor)
    }
    fn backward(&self, vjp: &mut Vjp<'_, '_>, g: &DMatrix<f64>) -> Result<()> {
        let lambda = crate::solve::node::solve_transpose(self.factor.as_ref(), &self.structure, g)?;
        let tape = Tape::new();
        let (r, params) = self.record_at_solution(&tape)?;
        let weighted = r.dot(tape.constant(lambda));
        let grads = tape.backward(weighted)?;
        for (&input, p) in self.inputs.iter().zip(&params) {
            vjp.add(input, -grads.wrt(*p))?;
        }
        Ok(())
    }
    fn forward(&self, jvp: &Jvp<'_>) -> Result<Option<DMatrix<f64>>> {
        let tape = Tape::new();
        let (r, params) = self.record_at_solution(&tape)?;
        let seeds: Vec<(Var<'_>, DMatrix<f64>)> = self
            .inputs
            .iter()
            .zip(&params)
            .filter_map(|(&i, &p)| jvp.tangent(i).map(|t| (p, t.clone())))
            .collect();
        if seeds.is_empty() {
            return Ok(None);
        }
        let r_dot = tape.jvp(&seeds, &[r])?.remove(0);
        let mut u_dot = crate::solve::node::tangent(
            self.factor.as_ref(),
            &self.structure,
            &self.u,
            None,
            Some(&r_dot),
        )?;
        u_dot.neg_mut();
        Ok(Some(u_dot))
    }
    /// Second order through the equilibrium (the tangent of the implicit adjoint) is not
    /// available: only the upstream tangent's part, when no parameter moves.
    fn backward_tangent(
        &self,
        hvp: &mut Hvp<'_, '_>,
        _g: &DMatrix<f64>,
        g_dot: Option<&DMatrix<f64>>,
    ) -> Result<()> {
        if self.inputs.iter().any(|&i| hvp.tangent(i).is_some()) {
            return Err(Error::Unsupported {
                reason: "Hessian-vector products through an equilibrium along a parameter \
                         tangent (second derivatives of the implicit function)"
                    .into(),
            });
        }
        hvp.linear(self, g_dot)
    }
}
