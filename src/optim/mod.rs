//! The argmin bridge: a tape objective becomes an argmin `CostFunction` + `Gradient`.
//!
//! argmin asks for the cost and the gradient at the same point in separate calls; [`ArgminProblem`]
//! runs the forward and backward pass once per distinct point and serves both from a cache, so
//! each evaluation costs one factorization. Progress goes through an observer
//! ([`ProgressObserver`]), never through prints in the core. [`minimize`] runs the usual
//! gradient-based solvers on a [`ArgminProblem`].
//!
//! ```
//! use sparsegrad::optim::{minimize, Algorithm, Objective, ArgminProblem, Settings};
//! use sparsegrad::{Result, Tape, Var};
//!
//! /// f(x) = Σ (x − 3)², minimum at x = 3.
//! struct Bowl;
//! impl Objective for Bowl {
//!     fn loss<'t>(&self, _tape: &'t Tape, x: Var<'t>) -> Result<Var<'t>> {
//!         Ok((x - 3.0).square().sum())
//!     }
//! }
//! let outcome = minimize(ArgminProblem::new(Bowl), vec![0.0; 4], &Settings::new(Algorithm::default(), 100), None).unwrap();
//! assert!(outcome.params.iter().all(|x| (x - 3.0).abs() < 1e-6));
//! ```

use std::rc::Rc;
use std::sync::{Arc, Mutex};

use argmin::core::observers::ObserverMode;
use argmin::core::{
    CostFunction, Executor, Gradient, Hessian, IterState, State, TerminationReason,
};
use argmin::solver::conjugategradient::{beta::PolakRibiere, NonlinearConjugateGradient};
use argmin::solver::gradientdescent::SteepestDescent;
use argmin::solver::linesearch::{HagerZhangLineSearch, MoreThuenteLineSearch};
use argmin::solver::quasinewton::LBFGS;
use argmin::solver::trustregion::{Steihaug, TrustRegion};
use argmin_math::ArgminDot;
use nalgebra::DMatrix;

use crate::error::{Error, Result};
use crate::tape::{Tape, Var};

mod adam;
mod augmented;
mod mma;
mod observer;

pub use adam::Adam;
pub use augmented::{augmented_lagrangian, AugmentedLagrangian, AugmentedOutcome};
pub use mma::{
    minimize_constrained, ConstrainedEvaluation, ConstrainedObjective, ConstrainedOutcome,
    ConstrainedProblem, Mma, MmaSettings,
};
pub use observer::{ProgressObserver, ProgressStyle, Record};

/// The argmin state type used by the bridge.
pub type OptimState = IterState<Vec<f64>, Vec<f64>, (), (), (), f64>;

/// argmin's state with Hessian type `H` (`()` for first-order methods, [`HessianOperator`] for
/// Newton-CG).
pub type StateOf<H> = IterState<Vec<f64>, Vec<f64>, (), H, (), f64>;

/// A scalar loss built on a tape from a parameter vector (n×1).
pub trait Objective {
    /// Records the loss for `params` on `tape` and returns it (a 1×1 variable).
    ///
    /// # Errors
    /// Whatever the model's tape operations return (e.g. a singular system).
    fn loss<'t>(&self, tape: &'t Tape, params: Var<'t>) -> Result<Var<'t>>;
}

impl<O: Objective + ?Sized> Objective for Arc<O> {
    fn loss<'t>(&self, tape: &'t Tape, params: Var<'t>) -> Result<Var<'t>> {
        (**self).loss(tape, params)
    }
}

impl<O: Objective + ?Sized> Objective for &O {
    fn loss<'t>(&self, tape: &'t Tape, params: Var<'t>) -> Result<Var<'t>> {
        (**self).loss(tape, params)
    }
}

impl<O: Objective + ?Sized> Objective for Box<O> {
    fn loss<'t>(&self, tape: &'t Tape, params: Var<'t>) -> Result<Var<'t>> {
        (**self).loss(tape, params)
    }
}

/// One evaluation: the point, its loss and gradient, and (for Newton-CG) the tape it was
/// recorded on, so that the Hessian operator at the same point does not record it again.
struct Evaluation {
    params: Vec<f64>,
    loss: f64,
    gradient: Vec<f64>,
    recorded: Option<Recorded>,
}

/// A tape with a scalar loss recorded on it from a parameter variable (node indices).
struct Recorded {
    tape: Tape,
    loss: usize,
    param: usize,
}

/// An [`Objective`] as an argmin problem (Param = `Vec<f64>`), with one forward+backward per point.
pub struct ArgminProblem<O> {
    objective: O,
    last: Mutex<Option<Evaluation>>,
    /// Shared with [`minimize`], which reads it after argmin (whose line search may keep the
    /// problem when an evaluation fails) is done.
    evaluations: Arc<std::sync::atomic::AtomicUsize>,
    /// Whether an evaluation keeps its tape for [`Hessian::hessian`] at the same point.
    keep_tape: bool,
    /// The first error of a Hessian-vector product (argmin's operator interface cannot return
    /// one); [`minimize`] reports it.
    hvp_error: Arc<Mutex<Option<Error>>>,
}

impl<O: Objective> ArgminProblem<O> {
    /// Wraps an objective.
    pub fn new(objective: O) -> Self {
        ArgminProblem {
            objective,
            last: Mutex::new(None),
            evaluations: Arc::default(),
            keep_tape: false,
            hvp_error: Arc::default(),
        }
    }

    /// The wrapped objective.
    pub fn objective(&self) -> &O {
        &self.objective
    }

    /// Number of forward+backward passes run so far (cache hits not counted).
    pub fn evaluations(&self) -> usize {
        self.evaluations.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Loss and gradient at `params`, from the cache when `params` is the last point evaluated.
    ///
    /// # Errors
    /// The objective's error; [`Error::NotScalar`] if its loss is not 1×1.
    pub fn evaluate(&self, params: &[f64]) -> Result<(f64, Vec<f64>)> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = last.as_ref().filter(|e| e.params == params) {
            return Ok((e.loss, e.gradient.clone()));
        }
        let recorded = self.record(params)?;
        let tape = &recorded.tape;
        let (loss_var, p) = (tape.var_at(recorded.loss)?, tape.var_at(recorded.param)?);
        let loss = loss_var.scalar()?;
        let gradient = tape.backward(loss_var)?.wrt(p).as_slice().to_vec();
        self.evaluations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *last = Some(Evaluation {
            params: params.to_vec(),
            loss,
            gradient: gradient.clone(),
            recorded: self.keep_tape.then_some(recorded),
        });
        Ok((loss, gradient))
    }

    /// Records the objective at `params` on a new tape.
    fn record(&self, params: &[f64]) -> Result<Recorded> {
        let tape = Tape::new();
        let (loss, param) = {
            let p = tape.var(DMatrix::from_column_slice(params.len(), 1, params));
            let loss = self.objective.loss(&tape, p)?;
            loss.scalar()?;
            (loss.index(), p.index())
        };
        Ok(Recorded { tape, loss, param })
    }
}

impl<O: Objective> CostFunction for ArgminProblem<O> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, param: &Vec<f64>) -> std::result::Result<f64, argmin::core::Error> {
        Ok(self.evaluate(param)?.0)
    }
}

impl<O: Objective> Gradient for ArgminProblem<O> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, param: &Vec<f64>) -> std::result::Result<Vec<f64>, argmin::core::Error> {
        Ok(self.evaluate(param)?.1)
    }
}

/// The Hessian of an objective at one point as an operator, for argmin's Newton-CG (which needs
/// only `H: ArgminDot<P, P>`): the tape is recorded once at that point and each product H·v is
/// [`Tape::hvp`] on it — a tangent sweep and a reverse sweep, no factorization, no matrix.
///
/// argmin's `dot` cannot fail: an error of a product is stored for [`minimize`] to return, and
/// the product is reported as zero (zero curvature, which ends the inner CG at once).
#[derive(Clone)]
pub struct HessianOperator(Rc<HessianAt>);

struct HessianAt {
    recorded: Recorded,
    n: usize,
    error: Arc<Mutex<Option<Error>>>,
}

impl HessianOperator {
    fn product(&self, v: &[f64]) -> Result<Vec<f64>> {
        let h = &self.0.recorded;
        let (loss, param) = (h.tape.var_at(h.loss)?, h.tape.var_at(h.param)?);
        let (_, hv) = h
            .tape
            .hvp(loss, &[(param, DMatrix::from_column_slice(self.0.n, 1, v))])?;
        Ok(hv.wrt(param).as_slice().to_vec())
    }
}

impl ArgminDot<Vec<f64>, Vec<f64>> for HessianOperator {
    fn dot(&self, v: &Vec<f64>) -> Vec<f64> {
        match self.product(v) {
            Ok(hv) => hv,
            Err(e) => {
                let mut slot = self.0.error.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert(e);
                vec![0.0; self.0.n]
            }
        }
    }
}

impl<O: Objective> Hessian for ArgminProblem<O> {
    type Param = Vec<f64>;
    type Hessian = HessianOperator;
    fn hessian(
        &self,
        param: &Vec<f64>,
    ) -> std::result::Result<HessianOperator, argmin::core::Error> {
        // The tape of the evaluation at this point when there is one (argmin asks for the
        // gradient, then the Hessian, at each accepted point), else a new recording.
        let kept = {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            last.as_mut()
                .filter(|e| e.params == *param)
                .and_then(|e| e.recorded.take())
        };
        let recorded = match kept {
            Some(r) => r,
            None => self.record(param)?,
        };
        Ok(HessianOperator(Rc::new(HessianAt {
            recorded,
            n: param.len(),
            error: self.hvp_error.clone(),
        })))
    }
}

/// Line search for the quasi-Newton and gradient methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LineSearch {
    /// Moré–Thuente (strong Wolfe).
    #[default]
    MoreThuente,
    /// Hager–Zhang (approximate Wolfe), steps bounded to [ε, 10].
    HagerZhang,
}

/// Which argmin solver [`minimize`] runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Algorithm {
    /// L-BFGS with `memory` correction pairs.
    Lbfgs {
        /// Number of stored correction pairs.
        memory: usize,
        /// The line search.
        line_search: LineSearch,
    },
    /// Nonlinear conjugate gradients (Polak–Ribière⁺, restarts every 50 iterations). Prefer
    /// Moré–Thuente: argmin's Hager–Zhang takes secant trial steps that can overflow exponential
    /// parameterizations with CG and steepest-descent directions.
    NonlinearCg(LineSearch),
    /// Steepest descent.
    SteepestDescent(LineSearch),
    /// Adam with this learning rate (β₁ = 0.9, β₂ = 0.999, ε = 1e-8).
    Adam(f64),
    /// Truncated Newton-CG in a trust region (argmin's `TrustRegion` with the Steihaug–Toint CG
    /// subproblem): each step solves H d = −∇f by conjugate gradients to 1e-9 relative residual,
    /// stopping at the trust-region boundary or at a direction of non-positive curvature, with
    /// Hessian-vector products ([`Tape::hvp`]) on one tape recorded at the step's point — its
    /// solves reuse that tape's factorizations, and no Hessian matrix is ever formed
    /// ([`HessianOperator`]). (argmin's line-search `NewtonCG` is not used: its inner CG compares
    /// the squared residual with a linear forcing term and stalls at linear convergence — 72
    /// iterations on a 5-unknown quadratic.)
    NewtonCg {
        /// At most this many CG iterations (Hessian-vector products) per step (`u64::MAX`: until
        /// the residual test). A cap makes steps cheaper and less exact: on the 2D cantilever,
        /// 200 converged in 101 s against 284 s uncapped (docs/BENCHMARKS.md).
        cg_iterations: u64,
    },
}

impl Default for Algorithm {
    fn default() -> Self {
        Algorithm::Lbfgs {
            memory: 10,
            line_search: LineSearch::MoreThuente,
        }
    }
}

/// What [`minimize`] runs and when it stops.
///
/// Every algorithm stops at the first of: `max_iters` iterations; ‖∇f‖₂ ≤ `gradient_tolerance` ·
/// max(1, |f|); |f_prev − f| ≤ `cost_tolerance` · max(1, |f|) after an iteration. Both tests are
/// relative to the loss's own scale (as SciPy's `ftol`), so the defaults mean the same for a
/// compliance of 1e4 and a misfit of 1e-3. Set a tolerance to 0 to switch its test off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// The optimization algorithm.
    pub algorithm: Algorithm,
    /// Iteration limit.
    pub max_iters: u64,
    /// Stop when ‖∇f‖₂ ≤ this · max(1, |f|) (default [`DEFAULT_GRADIENT_TOLERANCE`]).
    pub gradient_tolerance: f64,
    /// Stop when one iteration changes the loss by at most this · max(1, |f|) (default
    /// [`DEFAULT_COST_TOLERANCE`]: the loss no longer moves at working precision).
    pub cost_tolerance: f64,
}

/// Default relative gradient tolerance of [`Settings::new`].
pub const DEFAULT_GRADIENT_TOLERANCE: f64 = 1e-8;
/// Default relative cost tolerance of [`Settings::new`] (10 ε: the loss stopped moving).
pub const DEFAULT_COST_TOLERANCE: f64 = 2.2e-15;

impl Settings {
    /// `algorithm` for at most `max_iters` iterations, with the default stopping rules
    /// ([`DEFAULT_GRADIENT_TOLERANCE`], [`DEFAULT_COST_TOLERANCE`]).
    pub fn new(algorithm: Algorithm, max_iters: u64) -> Self {
        Settings {
            algorithm,
            max_iters,
            gradient_tolerance: DEFAULT_GRADIENT_TOLERANCE,
            cost_tolerance: DEFAULT_COST_TOLERANCE,
        }
    }
}

/// Adds the relative stopping rules of [`Settings`] to any argmin solver.
struct Stopping<S> {
    inner: S,
    gradient_tolerance: f64,
    cost_tolerance: f64,
    /// Whether the last iteration moved the point (a rejected trust-region step does not).
    moved: bool,
}

impl<O, H, S> argmin::core::Solver<O, StateOf<H>> for Stopping<S>
where
    O: Gradient<Param = Vec<f64>, Gradient = Vec<f64>>,
    S: argmin::core::Solver<O, StateOf<H>>,
{
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn init(
        &mut self,
        problem: &mut argmin::core::Problem<O>,
        state: StateOf<H>,
    ) -> std::result::Result<(StateOf<H>, Option<argmin::core::KV>), argmin::core::Error> {
        self.inner.init(problem, state)
    }
    /// The inner step; a solver that leaves no gradient in its state (Newton-CG) gets the one at
    /// its new point (a cache hit: its line search evaluated it), so the gradient test applies.
    fn next_iter(
        &mut self,
        problem: &mut argmin::core::Problem<O>,
        state: StateOf<H>,
    ) -> std::result::Result<(StateOf<H>, Option<argmin::core::KV>), argmin::core::Error> {
        let before = state.get_param().cloned();
        let (mut state, kv) = self.inner.next_iter(problem, state)?;
        self.moved = state.get_param() != before.as_ref();
        if state.get_gradient().is_none() {
            if let Some(param) = state.get_param().cloned() {
                let g = problem.gradient(&param)?;
                state = state.gradient(g);
            }
        }
        Ok((state, kv))
    }
    fn terminate(&mut self, state: &StateOf<H>) -> argmin::core::TerminationStatus {
        use argmin::core::TerminationStatus::{NotTerminated, Terminated};
        let inner = self.inner.terminate(state);
        if inner.terminated() {
            return inner;
        }
        let f = state.get_cost();
        let scale = f.abs().max(1.0);
        let small_gradient = state.get_gradient().is_some_and(|g| {
            g.iter().map(|v| v * v).sum::<f64>().sqrt() <= self.gradient_tolerance * scale
        });
        // A trust-region step that was rejected leaves the point and the cost as they were: that
        // is no stall, only a smaller radius.
        let stalled = state.get_iter() > 0
            && self.moved
            && (state.get_prev_cost() - f).abs() <= self.cost_tolerance * scale;
        if small_gradient || stalled {
            Terminated(TerminationReason::SolverConverged)
        } else {
            NotTerminated
        }
    }
}

/// argmin's Hager–Zhang evaluates its upper step bound (default 1e5) as a trial point, which
/// overflows exponential parameterizations (w = exp φ) and makes the first line search fail; the
/// bridge bounds steps to [ε, 10] (L-BFGS steps are O(1)).
fn hager_zhang() -> Result<HagerZhangLineSearch<Vec<f64>, Vec<f64>, f64>> {
    HagerZhangLineSearch::new()
        .with_bounds(f64::EPSILON, 10.0)
        .map_err(|e| Error::InvalidArgument {
            what: "Hager–Zhang line search bounds",
            reason: e.to_string(),
        })
}

/// The result of [`minimize`].
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The best parameters found.
    pub params: Vec<f64>,
    /// Their loss.
    pub loss: f64,
    /// Iterations run.
    pub iterations: u64,
    /// Why the solver stopped.
    pub termination: String,
    /// Forward+backward passes run.
    pub evaluations: usize,
}

/// An argmin failure as a crate error: the objective's own [`Error`] when that is what stopped
/// the run (so a caller can match `NotPositiveDefinite`, `Singular`, …), else
/// [`Error::Optimizer`] with argmin's message.
fn optimizer_error(e: argmin::core::Error) -> Error {
    match e.downcast::<Error>() {
        Ok(own) => own,
        Err(other) => Error::Optimizer {
            reason: other.to_string(),
        },
    }
}

/// Minimizes `problem` from `x0` (a `Vec`, slice, array, `DVector` or `DMatrix`, flattened
/// column-major) as `settings` say, reporting to `observer` if given.
///
/// # Errors
/// The objective's own error, unchanged, when an evaluation failed (e.g.
/// [`Error::NotPositiveDefinite`] for a design that lost definiteness); [`Error::Optimizer`] for a
/// failure of the optimizer itself (e.g. a line search that found no acceptable step);
/// [`Error::InvalidArgument`] for invalid settings.
pub fn minimize<O: Objective>(
    mut problem: ArgminProblem<O>,
    x0: impl crate::tape::IntoValue,
    settings: &Settings,
    observer: Option<ProgressObserver>,
) -> Result<Outcome> {
    let x0: Vec<f64> = x0.into_value().as_slice().to_vec();
    let max_iters = settings.max_iters;
    let evaluations = problem.evaluations.clone();
    let (tol_grad, tol_cost) = (settings.gradient_tolerance, settings.cost_tolerance);
    macro_rules! run {
        ($solver:expr) => {{
            let solver = Stopping {
                inner: $solver,
                gradient_tolerance: tol_grad,
                cost_tolerance: tol_cost,
                moved: true,
            };
            let mut executor =
                Executor::new(problem, solver).configure(|s| s.param(x0).max_iters(max_iters));
            if let Some(obs) = observer {
                executor = executor.add_observer(obs, ObserverMode::Always);
            }
            let result = executor.run().map_err(optimizer_error)?;
            let state = result.state();
            Outcome {
                params: state.get_best_param().cloned().unwrap_or_default(),
                loss: state.get_best_cost(),
                iterations: state.get_iter(),
                termination: state
                    .get_termination_reason()
                    .map_or("running".into(), TerminationReason::text)
                    .to_string(),
                evaluations: evaluations.load(std::sync::atomic::Ordering::Relaxed),
            }
        }};
    }
    let map = |e: argmin::core::Error| Error::InvalidArgument {
        what: "optimizer settings",
        reason: e.to_string(),
    };
    Ok(match settings.algorithm {
        Algorithm::Lbfgs {
            memory,
            line_search: LineSearch::MoreThuente,
        } => {
            run!(LBFGS::new(MoreThuenteLineSearch::new(), memory)
                .with_tolerance_grad(0.0)
                .map_err(map)?
                .with_tolerance_cost(0.0)
                .map_err(map)?)
        }
        Algorithm::Lbfgs {
            memory,
            line_search: LineSearch::HagerZhang,
        } => {
            run!(LBFGS::new(hager_zhang()?, memory)
                .with_tolerance_grad(0.0)
                .map_err(map)?
                .with_tolerance_cost(0.0)
                .map_err(map)?)
        }
        Algorithm::NonlinearCg(LineSearch::MoreThuente) => run!(NonlinearConjugateGradient::new(
            MoreThuenteLineSearch::new(),
            PolakRibiere::new()
        )
        .restart_iters(50)
        .restart_orthogonality(0.1)),
        Algorithm::NonlinearCg(LineSearch::HagerZhang) => run!(NonlinearConjugateGradient::new(
            hager_zhang()?,
            PolakRibiere::new()
        )
        .restart_iters(50)
        .restart_orthogonality(0.1)),
        Algorithm::SteepestDescent(LineSearch::MoreThuente) => {
            run!(SteepestDescent::new(MoreThuenteLineSearch::new()))
        }
        Algorithm::SteepestDescent(LineSearch::HagerZhang) => {
            run!(SteepestDescent::new(hager_zhang()?))
        }
        Algorithm::Adam(learning_rate) => run!(Adam::new(learning_rate)),
        Algorithm::NewtonCg { cg_iterations } => {
            problem.keep_tape = true;
            let hvp_error = problem.hvp_error.clone();
            let outcome = run!(TrustRegion::new(
                Steihaug::<Vec<f64>, f64>::new().with_max_iters(cg_iterations.max(1))
            ));
            if let Some(e) = hvp_error.lock().unwrap_or_else(|p| p.into_inner()).take() {
                return Err(e);
            }
            outcome
        }
    })
}
