//! Svanberg's method of moving asymptotes (MMA, the 2007 "MMA and GCMMA" formulation) as an argmin
//! solver, for inequality-constrained design: minimize f₀(x) subject to f_i(x) ≤ 0 (i = 1..m)
//! and x_min ≤ x ≤ x_max, where the objective and every constraint come from one tape
//! ([`ConstrainedObjective`]) and their gradients from its backward passes.
//!
//! Each iteration replaces f₀ and the f_i by convex separable approximations
//! p_j / (u_j − x_j) + q_j / (x_j − l_j) around the current point, with asymptotes l, u that
//! widen while the iterates move steadily and narrow when they oscillate, and solves that
//! subproblem — augmented with the elastic variables y, z that keep it feasible — by a
//! primal-dual interior-point method (Svanberg's `subsolv`). The arithmetic follows mmapy 0.3.1
//! (Svanberg's own Python port) step for step; `tests/engine/mma.rs` compares the iterates.

// The interior-point arithmetic indexes several parallel arrays (x, ξ, η, α, β, l, u, …) by
// the same j, as Svanberg writes it; iterator chains over five slices would hide that.
#![allow(clippy::needless_range_loop)]

use std::cell::{Cell, RefCell};

use argmin::core::{IterState, Problem, Solver, State, TerminationReason, TerminationStatus, KV};
use nalgebra::{DMatrix, DVector};

use super::{OptimState, ProgressObserver};
use crate::error::{Error, Result};
use crate::tape::{Tape, Var};

/// A constrained model: the objective f₀ (1×1) and the constraint values f (m×1 or 1×m,
/// feasible when every entry is ≤ 0), recorded on one tape from the parameters (n×1).
pub trait ConstrainedObjective {
    /// Records the objective and the constraint values for `params` on `tape`.
    ///
    /// # Errors
    /// Whatever the model's tape operations return.
    fn evaluate<'t>(&self, tape: &'t Tape, params: Var<'t>) -> Result<(Var<'t>, Var<'t>)>;
}

impl<O: ConstrainedObjective + ?Sized> ConstrainedObjective for &O {
    fn evaluate<'t>(&self, tape: &'t Tape, params: Var<'t>) -> Result<(Var<'t>, Var<'t>)> {
        (**self).evaluate(tape, params)
    }
}

impl<O: ConstrainedObjective + ?Sized> ConstrainedObjective for Box<O> {
    fn evaluate<'t>(&self, tape: &'t Tape, params: Var<'t>) -> Result<(Var<'t>, Var<'t>)> {
        (**self).evaluate(tape, params)
    }
}

/// Values and gradients of a [`ConstrainedObjective`] at one point.
#[derive(Debug, Clone, PartialEq)]
pub struct ConstrainedEvaluation {
    /// The point.
    pub params: Vec<f64>,
    /// f₀.
    pub objective: f64,
    /// ∇f₀ (n).
    pub objective_gradient: Vec<f64>,
    /// f (m).
    pub constraints: Vec<f64>,
    /// ∂f/∂x (m × n), row i the gradient of f_i.
    pub constraint_jacobian: DMatrix<f64>,
}

/// A [`ConstrainedObjective`] as an argmin problem: one forward pass and 1 + m backward passes
/// (the objective's and each constraint's, on the same tape, sharing its factorizations) per
/// distinct point, cached for the next request at the same point.
pub struct ConstrainedProblem<O> {
    model: O,
    last: RefCell<Option<ConstrainedEvaluation>>,
    evaluations: Cell<usize>,
}

impl<O: ConstrainedObjective> ConstrainedProblem<O> {
    /// Wraps a model.
    pub fn new(model: O) -> Self {
        ConstrainedProblem {
            model,
            last: RefCell::new(None),
            evaluations: Cell::new(0),
        }
    }

    /// The wrapped model.
    pub fn model(&self) -> &O {
        &self.model
    }

    /// Forward passes run so far (cache hits not counted).
    pub fn evaluations(&self) -> usize {
        self.evaluations.get()
    }

    /// Values and gradients at `params`, from the cache when it is the last point evaluated.
    ///
    /// # Errors
    /// The model's error; [`Error::NotScalar`] unless the objective is 1×1;
    /// [`Error::ShapeMismatch`] unless the constraints are one column; [`Error::NonFinite`] for
    /// a non-finite value.
    pub fn evaluate(&self, params: &[f64]) -> Result<ConstrainedEvaluation> {
        if let Some(e) = self.last.borrow().as_ref().filter(|e| e.params == params) {
            return Ok(e.clone());
        }
        let tape = Tape::new();
        let x = tape.var(DMatrix::from_column_slice(params.len(), 1, params));
        let (f0, f) = self.model.evaluate(&tape, x)?;
        let objective = f0.scalar()?;
        let values = f.value()?;
        let column = values.ncols() == 1;
        if !column && values.nrows() != 1 {
            return Err(Error::ShapeMismatch {
                op: "constraint values (must be one column or one row)",
                left: values.shape(),
                right: (values.len(), 1),
            });
        }
        let m = values.len();
        let objective_gradient = tape.backward(f0)?.wrt(x).as_slice().to_vec();
        let mut constraint_jacobian = DMatrix::zeros(m, params.len());
        for i in 0..m {
            let fi = if column {
                f.gather(&[i])
            } else {
                f.columns(i, 1)
            };
            let gi = tape.backward(fi)?;
            constraint_jacobian
                .row_mut(i)
                .copy_from(&gi.wrt(x).transpose());
        }
        let check = |v: f64, what: &'static str, row: usize, col: usize| {
            if v.is_finite() {
                Ok(())
            } else {
                Err(Error::NonFinite {
                    context: what,
                    row,
                    col,
                    value: v,
                })
            }
        };
        check(objective, "MMA objective", 0, 0)?;
        for (j, &g) in objective_gradient.iter().enumerate() {
            check(g, "MMA objective gradient", j, 0)?;
        }
        for (i, &v) in values.iter().enumerate() {
            check(v, "MMA constraint value", i, 0)?;
        }
        for i in 0..m {
            for j in 0..params.len() {
                check(constraint_jacobian[(i, j)], "MMA constraint gradient", i, j)?;
            }
        }
        self.evaluations.set(self.evaluations.get() + 1);
        let e = ConstrainedEvaluation {
            params: params.to_vec(),
            objective,
            objective_gradient,
            constraints: values.as_slice().to_vec(),
            constraint_jacobian,
        };
        *self.last.borrow_mut() = Some(e.clone());
        Ok(e)
    }
}

/// Settings of [`Mma`] (Svanberg's defaults; mmapy's names in parentheses).
#[derive(Debug, Clone, PartialEq)]
pub struct MmaSettings {
    /// Lower bounds x_min (one per parameter, or one value for all).
    pub lower: Vec<f64>,
    /// Upper bounds x_max (one per parameter, or one value for all).
    pub upper: Vec<f64>,
    /// Move limit as a fraction of x_max − x_min (`move`, default 0.5; topology optimization
    /// often uses 0.2).
    pub move_limit: f64,
    /// Initial asymptote distance as a fraction of x_max − x_min (`asyinit`, 0.5).
    pub asymptote_init: f64,
    /// Asymptote widening factor while iterates move in one direction (`asyincr`, 1.2).
    pub asymptote_increase: f64,
    /// Asymptote narrowing factor when they oscillate (`asydecr`, 0.7).
    pub asymptote_decrease: f64,
    /// Weight of the elastic variables y_i in the subproblem (`c`, 1000): large enough that the
    /// solution has y = 0 whenever the constraints can be met.
    pub elastic_weight: f64,
    /// Stop when the KKT residual of the original problem (Euclidean norm, with the
    /// subproblem's multipliers) is at most this (default 1e-6).
    pub kkt_tolerance: f64,
    /// Iteration limit (default 200).
    pub max_iters: u64,
}

impl MmaSettings {
    /// Bounds with Svanberg's defaults for everything else.
    pub fn new(lower: impl Into<Vec<f64>>, upper: impl Into<Vec<f64>>) -> Self {
        MmaSettings {
            lower: lower.into(),
            upper: upper.into(),
            move_limit: 0.5,
            asymptote_init: 0.5,
            asymptote_increase: 1.2,
            asymptote_decrease: 0.7,
            elastic_weight: 1000.0,
            kkt_tolerance: 1e-6,
            max_iters: 200,
        }
    }
}

/// Svanberg's MMA as an argmin [`Solver`] on a [`ConstrainedProblem`]: argmin's executor and
/// observers drive it; its state's cost is f₀ and its gradient ∇f₀, and the iteration's KV
/// holds the largest constraint value (`max_constraint`) and the KKT residual (`kkt`).
/// [`minimize_constrained`] runs it and reports the last iterate (an infeasible point may have
/// a lower f₀, so argmin's "best" is not used).
pub struct Mma {
    settings: MmaSettings,
    lower: Vec<f64>,
    upper: Vec<f64>,
    iteration: u64,
    old1: Vec<f64>,
    old2: Vec<f64>,
    low: Vec<f64>,
    upp: Vec<f64>,
    kkt: f64,
    max_constraint: f64,
}

impl Mma {
    /// An MMA solver for `n` parameters.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for bounds of the wrong length, x_min ≥ x_max or non-finite
    /// bounds, or settings out of range.
    pub fn new(settings: MmaSettings, n: usize) -> Result<Self> {
        let expand = |v: &[f64], what: &'static str| -> Result<Vec<f64>> {
            match v.len() {
                1 => Ok(vec![v[0]; n]),
                k if k == n => Ok(v.to_vec()),
                k => Err(Error::InvalidArgument {
                    what,
                    reason: format!("{k} bounds for {n} parameters (give 1 or {n})"),
                }),
            }
        };
        let lower = expand(&settings.lower, "MMA lower bounds")?;
        let upper = expand(&settings.upper, "MMA upper bounds")?;
        if let Some(j) =
            (0..n).find(|&j| !(lower[j].is_finite() && upper[j].is_finite() && lower[j] < upper[j]))
        {
            return Err(Error::InvalidArgument {
                what: "MMA bounds",
                reason: format!(
                    "parameter {j}: need finite x_min < x_max, got [{}, {}]",
                    lower[j], upper[j]
                ),
            });
        }
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if !(positive(settings.move_limit)
            && positive(settings.asymptote_init)
            && settings.asymptote_increase >= 1.0
            && positive(settings.asymptote_decrease)
            && settings.asymptote_decrease <= 1.0
            && positive(settings.elastic_weight)
            && settings.kkt_tolerance >= 0.0)
        {
            return Err(Error::InvalidArgument {
                what: "MMA settings",
                reason: format!("out of range: {settings:?}"),
            });
        }
        Ok(Mma {
            settings,
            low: lower.clone(),
            upp: upper.clone(),
            lower,
            upper,
            iteration: 0,
            old1: Vec::new(),
            old2: Vec::new(),
            kkt: f64::INFINITY,
            max_constraint: f64::NAN,
        })
    }

    /// The KKT residual after the last iteration.
    pub fn kkt_residual(&self) -> f64 {
        self.kkt
    }
}

/// The MMA subproblem's data (mmasub's names): asymptotes, move bounds and the approximations'
/// coefficients; P and Q are m × n.
struct Subproblem<'a> {
    low: &'a [f64],
    upp: &'a [f64],
    alfa: Vec<f64>,
    beta: Vec<f64>,
    p0: Vec<f64>,
    q0: Vec<f64>,
    p: DMatrix<f64>,
    q: DMatrix<f64>,
    a0: f64,
    a: Vec<f64>,
    b: Vec<f64>,
    c: Vec<f64>,
    d: Vec<f64>,
}

/// The subproblem's primal-dual solution.
#[derive(Debug, Clone)]
struct SubSolution {
    x: Vec<f64>,
    y: Vec<f64>,
    z: f64,
    lam: Vec<f64>,
    xsi: Vec<f64>,
    eta: Vec<f64>,
    mu: Vec<f64>,
    zet: f64,
    s: Vec<f64>,
}

impl SubSolution {
    /// The Euclidean norm and the largest magnitude of the residual of the perturbed KKT
    /// conditions at barrier parameter `epsi` (mmapy's `residu`), accumulated without storing it.
    fn residual(&self, sp: &Subproblem<'_>, epsi: f64) -> (f64, f64) {
        let (n, m) = (self.x.len(), self.y.len());
        let (plam, qlam) = sp.weighted(&self.lam);
        let gvec = sp.gvec(&self.x);
        let (mut sum, mut max) = (0.0f64, 0.0f64);
        let mut add = |r: f64| {
            sum += r * r;
            max = max.max(r.abs());
        };
        for j in 0..n {
            let (ux, xl) = (sp.upp[j] - self.x[j], self.x[j] - sp.low[j]);
            add(plam[j] / (ux * ux) - qlam[j] / (xl * xl) - self.xsi[j] + self.eta[j]);
            add(self.xsi[j] * (self.x[j] - sp.alfa[j]) - epsi);
            add(self.eta[j] * (sp.beta[j] - self.x[j]) - epsi);
        }
        for i in 0..m {
            add(sp.c[i] + sp.d[i] * self.y[i] - self.mu[i] - self.lam[i]);
            add(gvec[i] - sp.a[i] * self.z - self.y[i] + self.s[i] - sp.b[i]);
            add(self.mu[i] * self.y[i] - epsi);
            add(self.lam[i] * self.s[i] - epsi);
        }
        add(sp.a0 - self.zet - dot(&sp.a, &self.lam));
        add(self.zet * self.z - epsi);
        (sum.sqrt(), max)
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(v: &[f64]) -> f64 {
    dot(v, v).sqrt()
}

impl Subproblem<'_> {
    /// p0 + Pᵀλ and q0 + Qᵀλ.
    fn weighted(&self, lam: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let m = lam.len();
        let column = |a: &DMatrix<f64>, base: &[f64], j: usize| -> f64 {
            let col = &a.as_slice()[j * m..(j + 1) * m];
            base[j] + col.iter().zip(lam).map(|(a, l)| a * l).sum::<f64>()
        };
        let n = self.p0.len();
        (
            (0..n).map(|j| column(&self.p, &self.p0, j)).collect(),
            (0..n).map(|j| column(&self.q, &self.q0, j)).collect(),
        )
    }

    /// P (1/(u − x)) + Q (1/(x − l)).
    fn gvec(&self, x: &[f64]) -> Vec<f64> {
        let m = self.b.len();
        let mut g = vec![0.0; m];
        let (p, q) = (self.p.as_slice(), self.q.as_slice());
        for (j, &xj) in x.iter().enumerate() {
            let (ux, xl) = (1.0 / (self.upp[j] - xj), 1.0 / (xj - self.low[j]));
            for (i, gi) in g.iter_mut().enumerate() {
                *gi += p[j * m + i] * ux + q[j * m + i] * xl;
            }
        }
        g
    }

    /// Svanberg's primal-dual interior-point method (mmapy's `subsolv`): Newton steps on the
    /// perturbed KKT conditions with a backtracking step on the residual norm, the barrier
    /// parameter divided by 10 from 1 down to `epsimin`.
    fn solve(&self, epsimin: f64) -> Result<SubSolution> {
        let (n, m) = (self.p0.len(), self.b.len());
        let x: Vec<f64> = (0..n)
            .map(|j| 0.5 * (self.alfa[j] + self.beta[j]))
            .collect();
        let mut v = SubSolution {
            xsi: (0..n)
                .map(|j| (1.0 / (x[j] - self.alfa[j])).max(1.0))
                .collect(),
            eta: (0..n)
                .map(|j| (1.0 / (self.beta[j] - x[j])).max(1.0))
                .collect(),
            x,
            y: vec![1.0; m],
            z: 1.0,
            lam: vec![1.0; m],
            mu: self.c.iter().map(|c| (0.5 * c).max(1.0)).collect(),
            zet: 1.0,
            s: vec![1.0; m],
        };
        let mut epsi = 1.0;
        while epsi > epsimin {
            let (mut residunorm, mut residumax) = v.residual(self, epsi);
            let mut inner = 0;
            while residumax > 0.9 * epsi && inner < 200 {
                inner += 1;
                let step = self.newton_direction(&v, epsi)?;
                // The longest step that keeps every slack and multiplier positive (× 1/1.01).
                let mut stm: f64 = 1.0;
                let pairs: [(&[f64], &[f64]); 7] = [
                    (&v.y, &step.y),
                    (&v.lam, &step.lam),
                    (&v.xsi, &step.xsi),
                    (&v.eta, &step.eta),
                    (&v.mu, &step.mu),
                    (&v.s, &step.s),
                    (&[v.z, v.zet], &[step.z, step.zet]),
                ];
                for (values, deltas) in pairs {
                    for (xx, dx) in values.iter().zip(deltas) {
                        stm = stm.max(-1.01 * dx / xx);
                    }
                }
                for j in 0..n {
                    stm = stm.max(-1.01 * step.x[j] / (v.x[j] - self.alfa[j]));
                    stm = stm.max(1.01 * step.x[j] / (self.beta[j] - v.x[j]));
                }
                let mut steg = 1.0 / stm;
                let old = v.clone();
                let mut resinew = 2.0 * residunorm;
                let mut tries = 0;
                let mut resimax = residumax;
                while resinew > residunorm && tries < 50 {
                    tries += 1;
                    let mv = |a: &[f64], d: &[f64]| -> Vec<f64> {
                        a.iter().zip(d).map(|(a, d)| a + steg * d).collect()
                    };
                    v = SubSolution {
                        x: mv(&old.x, &step.x),
                        y: mv(&old.y, &step.y),
                        z: old.z + steg * step.z,
                        lam: mv(&old.lam, &step.lam),
                        xsi: mv(&old.xsi, &step.xsi),
                        eta: mv(&old.eta, &step.eta),
                        mu: mv(&old.mu, &step.mu),
                        zet: old.zet + steg * step.zet,
                        s: mv(&old.s, &step.s),
                    };
                    (resinew, resimax) = v.residual(self, epsi);
                    steg /= 2.0;
                }
                residunorm = resinew;
                residumax = resimax;
            }
            epsi *= 0.1;
        }
        Ok(v)
    }

    /// One Newton direction of the perturbed KKT system, reduced to (λ, z) when m < n and to
    /// (x, z) otherwise (mmapy's two branches).
    fn newton_direction(&self, v: &SubSolution, epsi: f64) -> Result<SubSolution> {
        let (n, m) = (v.x.len(), v.y.len());
        let (plam, qlam) = self.weighted(&v.lam);
        let gvec = self.gvec(&v.x);
        let mut gg = DMatrix::zeros(m, n);
        let (mut delx, mut diagx) = (vec![0.0; n], vec![0.0; n]);
        for j in 0..n {
            let (ux, xl) = (self.upp[j] - v.x[j], v.x[j] - self.low[j]);
            let (ux2, xl2) = (ux * ux, xl * xl);
            for i in 0..m {
                gg[(i, j)] = self.p[(i, j)] / ux2 - self.q[(i, j)] / xl2;
            }
            let (xa, bx) = (v.x[j] - self.alfa[j], self.beta[j] - v.x[j]);
            delx[j] = plam[j] / ux2 - qlam[j] / xl2 - epsi / xa + epsi / bx;
            diagx[j] =
                2.0 * (plam[j] / (ux2 * ux) + qlam[j] / (xl2 * xl)) + v.xsi[j] / xa + v.eta[j] / bx;
        }
        let dely: Vec<f64> = (0..m)
            .map(|i| self.c[i] + self.d[i] * v.y[i] - v.lam[i] - epsi / v.y[i])
            .collect();
        let delz = self.a0 - dot(&self.a, &v.lam) - epsi / v.z;
        let dellam: Vec<f64> = (0..m)
            .map(|i| gvec[i] - self.a[i] * v.z - v.y[i] - self.b[i] + epsi / v.lam[i])
            .collect();
        let diagy: Vec<f64> = (0..m).map(|i| self.d[i] + v.mu[i] / v.y[i]).collect();
        let diaglamyi: Vec<f64> = (0..m).map(|i| v.s[i] / v.lam[i] + 1.0 / diagy[i]).collect();
        let singular = || Error::InvalidArgument {
            what: "MMA subproblem",
            reason: "singular Newton system in the interior-point method (non-finite or \
                     degenerate approximation)"
                .into(),
        };
        let (dx, dz, dlam): (Vec<f64>, f64, Vec<f64>) = if m < n {
            let mut aa = DMatrix::zeros(m + 1, m + 1);
            let mut bb = DVector::zeros(m + 1);
            for i in 0..m {
                let mut blam = dellam[i] + dely[i] / diagy[i];
                for j in 0..n {
                    blam -= gg[(i, j)] * delx[j] / diagx[j];
                }
                bb[i] = blam;
                for k in 0..m {
                    let mut s = 0.0;
                    for j in 0..n {
                        s += gg[(i, j)] * gg[(k, j)] / diagx[j];
                    }
                    aa[(i, k)] = s;
                }
                aa[(i, i)] += diaglamyi[i];
                aa[(i, m)] = self.a[i];
                aa[(m, i)] = self.a[i];
            }
            aa[(m, m)] = -v.zet / v.z;
            bb[m] = delz;
            let sol = aa.lu().solve(&bb).ok_or_else(singular)?;
            let dlam: Vec<f64> = sol.as_slice()[..m].to_vec();
            let dx = (0..n)
                .map(|j| {
                    let gtl: f64 = (0..m).map(|i| gg[(i, j)] * dlam[i]).sum();
                    -delx[j] / diagx[j] - gtl / diagx[j]
                })
                .collect();
            (dx, sol[m], dlam)
        } else {
            let dellamyi: Vec<f64> = (0..m).map(|i| dellam[i] + dely[i] / diagy[i]).collect();
            let mut aa = DMatrix::zeros(n + 1, n + 1);
            let mut bb = DVector::zeros(n + 1);
            for j in 0..n {
                for k in 0..n {
                    aa[(j, k)] = (0..m)
                        .map(|i| gg[(i, j)] * gg[(i, k)] / diaglamyi[i])
                        .sum::<f64>();
                }
                aa[(j, j)] += diagx[j];
                let axz: f64 = -(0..m)
                    .map(|i| gg[(i, j)] * self.a[i] / diaglamyi[i])
                    .sum::<f64>();
                aa[(j, n)] = axz;
                aa[(n, j)] = axz;
                let bx = delx[j]
                    + (0..m)
                        .map(|i| gg[(i, j)] * dellamyi[i] / diaglamyi[i])
                        .sum::<f64>();
                bb[j] = -bx;
            }
            aa[(n, n)] = v.zet / v.z
                + (0..m)
                    .map(|i| self.a[i] * self.a[i] / diaglamyi[i])
                    .sum::<f64>();
            bb[n] = -(delz
                - (0..m)
                    .map(|i| self.a[i] * dellamyi[i] / diaglamyi[i])
                    .sum::<f64>());
            let sol = aa.lu().solve(&bb).ok_or_else(singular)?;
            let dx: Vec<f64> = sol.as_slice()[..n].to_vec();
            let dz = sol[n];
            let dlam = (0..m)
                .map(|i| {
                    let gdx: f64 = (0..n).map(|j| gg[(i, j)] * dx[j]).sum();
                    gdx / diaglamyi[i] - dz * self.a[i] / diaglamyi[i] + dellamyi[i] / diaglamyi[i]
                })
                .collect();
            (dx, dz, dlam)
        };
        if dx.iter().chain(&dlam).any(|d| !d.is_finite()) || !dz.is_finite() {
            return Err(singular());
        }
        let dy: Vec<f64> = (0..m)
            .map(|i| -dely[i] / diagy[i] + dlam[i] / diagy[i])
            .collect();
        Ok(SubSolution {
            xsi: (0..n)
                .map(|j| {
                    let xa = v.x[j] - self.alfa[j];
                    -v.xsi[j] + epsi / xa - v.xsi[j] * dx[j] / xa
                })
                .collect(),
            eta: (0..n)
                .map(|j| {
                    let bx = self.beta[j] - v.x[j];
                    -v.eta[j] + epsi / bx + v.eta[j] * dx[j] / bx
                })
                .collect(),
            mu: (0..m)
                .map(|i| -v.mu[i] + epsi / v.y[i] - v.mu[i] * dy[i] / v.y[i])
                .collect(),
            zet: -v.zet + epsi / v.z - v.zet * dz / v.z,
            s: (0..m)
                .map(|i| -v.s[i] + epsi / v.lam[i] - v.s[i] * dlam[i] / v.lam[i])
                .collect(),
            x: dx,
            y: dy,
            z: dz,
            lam: dlam,
        })
    }
}

impl Mma {
    /// One MMA step from the evaluation `e` at x: the next point and the subproblem's
    /// multipliers.
    fn step(&mut self, e: &ConstrainedEvaluation) -> Result<SubSolution> {
        let s = &self.settings;
        let x = &e.params;
        let (n, m) = (x.len(), e.constraints.len());
        self.iteration += 1;
        let range: Vec<f64> = (0..n).map(|j| self.upper[j] - self.lower[j]).collect();
        if self.iteration <= 2 {
            for j in 0..n {
                self.low[j] = x[j] - s.asymptote_init * range[j];
                self.upp[j] = x[j] + s.asymptote_init * range[j];
            }
        } else {
            for j in 0..n {
                let trend = (x[j] - self.old1[j]) * (self.old1[j] - self.old2[j]);
                let factor = if trend > 0.0 {
                    s.asymptote_increase
                } else if trend < 0.0 {
                    s.asymptote_decrease
                } else {
                    1.0
                };
                let low = x[j] - factor * (self.old1[j] - self.low[j]);
                let upp = x[j] + factor * (self.upp[j] - self.old1[j]);
                self.low[j] = low.max(x[j] - 10.0 * range[j]).min(x[j] - 0.01 * range[j]);
                self.upp[j] = upp.min(x[j] + 10.0 * range[j]).max(x[j] + 0.01 * range[j]);
            }
        }
        const ALBEFA: f64 = 0.1;
        const RAA0: f64 = 1e-5;
        let alfa = (0..n)
            .map(|j| {
                (self.low[j] + ALBEFA * (x[j] - self.low[j]))
                    .max(x[j] - s.move_limit * range[j])
                    .max(self.lower[j])
            })
            .collect();
        let beta = (0..n)
            .map(|j| {
                (self.upp[j] - ALBEFA * (self.upp[j] - x[j]))
                    .min(x[j] + s.move_limit * range[j])
                    .min(self.upper[j])
            })
            .collect();
        let (mut p0, mut q0) = (vec![0.0; n], vec![0.0; n]);
        let (mut p, mut q) = (DMatrix::zeros(m, n), DMatrix::zeros(m, n));
        let mut b: Vec<f64> = e.constraints.iter().map(|f| -f).collect();
        for j in 0..n {
            let reg = RAA0 / range[j].max(1e-5);
            let (ux1, xl1) = (self.upp[j] - x[j], x[j] - self.low[j]);
            let (ux2, xl2) = (ux1 * ux1, xl1 * xl1);
            let g = e.objective_gradient[j];
            let pq = 0.001 * g.abs() + reg;
            p0[j] = (g.max(0.0) + pq) * ux2;
            q0[j] = ((-g).max(0.0) + pq) * xl2;
            for i in 0..m {
                let g = e.constraint_jacobian[(i, j)];
                let pq = 0.001 * g.abs() + reg;
                p[(i, j)] = (g.max(0.0) + pq) * ux2;
                q[(i, j)] = ((-g).max(0.0) + pq) * xl2;
                b[i] += p[(i, j)] / ux1 + q[(i, j)] / xl1;
            }
        }
        let sp = Subproblem {
            low: &self.low,
            upp: &self.upp,
            alfa,
            beta,
            p0,
            q0,
            p,
            q,
            a0: 1.0,
            a: vec![0.0; m],
            b,
            c: vec![s.elastic_weight; m],
            d: vec![1.0; m],
        };
        let solution = sp.solve(1e-7)?;
        self.old2 = std::mem::replace(&mut self.old1, x.clone());
        if self.old2.is_empty() {
            self.old2 = x.clone();
        }
        Ok(solution)
    }

    /// The KKT residual of the original problem at the new point, with the subproblem's
    /// multipliers (mmapy's `kktcheck`).
    fn kkt(&self, v: &SubSolution, e: &ConstrainedEvaluation) -> f64 {
        let (n, m) = (v.x.len(), v.y.len());
        let c = self.settings.elastic_weight;
        let mut r = Vec::with_capacity(3 * n + 4 * m + 2);
        for j in 0..n {
            let jt: f64 = (0..m)
                .map(|i| e.constraint_jacobian[(i, j)] * v.lam[i])
                .sum();
            r.push(e.objective_gradient[j] + jt - v.xsi[j] + v.eta[j]);
        }
        r.extend((0..m).map(|i| c + v.y[i] - v.mu[i] - v.lam[i]));
        r.push(1.0 - v.zet);
        r.extend((0..m).map(|i| e.constraints[i] - v.y[i] + v.s[i]));
        r.extend((0..n).map(|j| v.xsi[j] * (v.x[j] - self.lower[j])));
        r.extend((0..n).map(|j| v.eta[j] * (self.upper[j] - v.x[j])));
        r.extend((0..m).map(|i| v.mu[i] * v.y[i]));
        r.push(v.zet * v.z);
        r.extend((0..m).map(|i| v.lam[i] * v.s[i]));
        norm(&r)
    }
}

impl<O: ConstrainedObjective> Solver<ConstrainedProblem<O>, OptimState> for Mma {
    fn name(&self) -> &str {
        "MMA (Svanberg)"
    }

    fn init(
        &mut self,
        problem: &mut Problem<ConstrainedProblem<O>>,
        state: OptimState,
    ) -> std::result::Result<(OptimState, Option<KV>), argmin::core::Error> {
        let x = state
            .get_param()
            .cloned()
            .ok_or_else(|| Error::InvalidArgument {
                what: "MMA",
                reason: "no initial parameters".into(),
            })?;
        if x.len() != self.lower.len() {
            return Err(Error::ShapeMismatch {
                op: "MMA initial parameters vs bounds",
                left: (x.len(), 1),
                right: (self.lower.len(), 1),
            }
            .into());
        }
        let e = problem.problem("evaluate", |p| Ok(p.evaluate(&x)?))?;
        self.max_constraint = e
            .constraints
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        Ok((state.cost(e.objective).gradient(e.objective_gradient), None))
    }

    fn next_iter(
        &mut self,
        problem: &mut Problem<ConstrainedProblem<O>>,
        state: OptimState,
    ) -> std::result::Result<(OptimState, Option<KV>), argmin::core::Error> {
        let x = state.get_param().cloned().unwrap_or_default();
        let e = problem.problem("evaluate", |p| Ok(p.evaluate(&x)?))?;
        let v = self.step(&e)?;
        let next = problem.problem("evaluate", |p| Ok(p.evaluate(&v.x)?))?;
        self.kkt = self.kkt(&v, &next);
        self.max_constraint = next
            .constraints
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        let kv = argmin::kv!("kkt" => self.kkt; "max_constraint" => self.max_constraint;);
        Ok((
            state
                .param(v.x)
                .cost(next.objective)
                .gradient(next.objective_gradient),
            Some(kv),
        ))
    }

    fn terminate(&mut self, _state: &OptimState) -> TerminationStatus {
        if self.kkt <= self.settings.kkt_tolerance {
            TerminationStatus::Terminated(TerminationReason::SolverConverged)
        } else {
            TerminationStatus::NotTerminated
        }
    }
}

/// The result of [`minimize_constrained`].
#[derive(Debug, Clone)]
pub struct ConstrainedOutcome {
    /// The last iterate.
    pub params: Vec<f64>,
    /// f₀ there.
    pub objective: f64,
    /// The constraint values there (feasible when all ≤ 0).
    pub constraints: Vec<f64>,
    /// The KKT residual there (see [`MmaSettings::kkt_tolerance`]).
    pub kkt_residual: f64,
    /// Iterations run.
    pub iterations: u64,
    /// Why the solver stopped.
    pub termination: String,
    /// Forward passes run (each with 1 + m backward passes).
    pub evaluations: usize,
}

/// Minimizes f₀(x) subject to f(x) ≤ 0 and the bounds of `settings` with [`Mma`] from `x0`,
/// through argmin's executor (with `observer` if given).
///
/// ```
/// use sparsegrad::optim::{minimize_constrained, ConstrainedObjective, MmaSettings};
/// use sparsegrad::{Result, Tape, Var};
///
/// /// Minimize Σ 1/x subject to Σ x ≤ 3: the optimum is x = 1.
/// struct Budget;
/// impl ConstrainedObjective for Budget {
///     fn evaluate<'t>(&self, _t: &'t Tape, x: Var<'t>) -> Result<(Var<'t>, Var<'t>)> {
///         Ok((x.powf(-1.0).sum(), x.sum() - 3.0))
///     }
/// }
/// let out = minimize_constrained(&Budget, [0.5, 2.0, 0.7], &MmaSettings::new([0.1], [10.0]), None)?;
/// assert!(out.params.iter().all(|x| (x - 1.0).abs() < 1e-5), "{out:?}");
/// assert!(out.constraints[0] <= 1e-6);
/// # Ok::<(), sparsegrad::Error>(())
/// ```
///
/// # Errors
/// The model's own error when an evaluation failed; [`Error::InvalidArgument`] for invalid
/// settings or bounds, or a subproblem the interior-point method cannot solve;
/// [`Error::ShapeMismatch`] when x0 and the bounds disagree; [`Error::Optimizer`] for other
/// failures of argmin.
pub fn minimize_constrained<O: ConstrainedObjective>(
    model: O,
    x0: impl crate::tape::IntoValue,
    settings: &MmaSettings,
    observer: Option<ProgressObserver>,
) -> Result<ConstrainedOutcome> {
    let x0: Vec<f64> = x0.into_value().as_slice().to_vec();
    let mut x_start = x0.clone();
    let solver = Mma::new(settings.clone(), x0.len())?;
    // MMA needs x inside the bounds; clamp once (a start outside is a user slip, not an error).
    for (j, x) in x_start.iter_mut().enumerate() {
        *x = x.clamp(solver.lower[j], solver.upper[j]);
    }
    let mut executor = argmin::core::Executor::new(ConstrainedProblem::new(model), solver)
        .configure(|s: IterState<Vec<f64>, Vec<f64>, (), (), (), f64>| {
            s.param(x_start).max_iters(settings.max_iters)
        });
    if let Some(obs) = observer {
        executor = executor.add_observer(obs, argmin::core::observers::ObserverMode::Always);
    }
    let result = executor.run().map_err(super::optimizer_error)?;
    let state = result.state();
    let params = state.get_param().cloned().unwrap_or_default();
    let termination = state
        .get_termination_reason()
        .map_or("running", TerminationReason::text)
        .to_string();
    let iterations = state.get_iter();
    let kkt_residual = result.solver.kkt;
    let problem = result.problem.problem.ok_or_else(|| Error::Optimizer {
        reason: "argmin kept the problem".into(),
    })?;
    let e = problem.evaluate(&params)?;
    Ok(ConstrainedOutcome {
        params,
        objective: e.objective,
        constraints: e.constraints,
        kkt_residual,
        iterations,
        termination,
        evaluations: problem.evaluations(),
    })
}
