//! One factorization of a sparse matrix node shared by many solves: [`Tape::factor`] factors A
//! once and returns a [`Factored`] handle whose [`Factored::solve`] (X = A⁻¹B) and
//! [`Factored::solve_transpose`] (Y = A⁻ᵀB) nodes all keep that factorization — for their
//! forward values, their adjoint solves in `backward`, and forward mode. Time stepping with a
//! fixed matrix (implicit Euler: (M + Δt K) u_{t+1} = M u_t for 50 steps) factors once per
//! evaluation instead of once per step.

use std::sync::Arc;

use nalgebra::DMatrix;

use super::sparse_ops::{dense_of, sparse_of, Solve};
use super::{Hvp, Jvp, Op, Operation, Tape, Var, Vjp};
use crate::error::Result;
use crate::solve::node::accumulate_outer;
use crate::solve::{Factor, Factorizer};
use crate::sparse::{mul_dense, Structure};

/// A factorization of the sparse matrix node A, made by [`Tape::factor`] and shared by every
/// solve recorded through it (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct Factored<'t> {
    a: Var<'t>,
    factor: Arc<Factor>,
    solver: Arc<dyn Factorizer>,
}

impl std::fmt::Debug for Factored<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Factored({:?}, {})", self.a, self.factor.describe())
    }
}

impl Tape {
    /// Factors the sparse matrix `a` once with `solver` (its factorization checks, e.g. a
    /// condition limit, included) and returns the handle whose solves share it.
    ///
    /// ```
    /// use nalgebra::DMatrix;
    /// use sparsegrad::problems::graph::{grid_edges, laplacian_assembly};
    /// use sparsegrad::{Solver, Tape};
    /// // Ten implicit-Euler steps of diffusion, (I + L(θ)) u_{t+1} = u_t: one factorization.
    /// let asm = laplacian_assembly(16, &grid_edges(4).unwrap(), 1.0).unwrap();
    /// let tape = Tape::new();
    /// let theta = tape.var(DMatrix::from_element(asm.n_params(), 1, 0.5));
    /// let a = tape.assemble(&asm, theta).unwrap();
    /// let f = tape.factor(a, &Solver::cholesky()).unwrap();
    /// let mut u = tape.constant(DMatrix::from_fn(16, 1, |i, _| (i % 3) as f64));
    /// for _ in 0..10 {
    ///     u = f.solve(u).unwrap();
    /// }
    /// let g = tape.backward(u.sum_squares()).unwrap();
    /// assert_eq!(asm.structure().numeric_factorizations(), 1);
    /// assert!(g.wrt(theta).iter().all(|v| v.is_finite()));
    /// ```
    ///
    /// # Errors
    /// [`Error::Unsupported`](crate::Error::Unsupported) for a dense `a`; the solver's
    /// factorization errors; an error that poisoned `a`; [`Error::ForeignVar`](crate::Error::ForeignVar).
    pub fn factor<'t, S>(&'t self, a: Var<'t>, solver: &S) -> Result<Factored<'t>>
    where
        S: Factorizer + Clone + 'static,
    {
        self.check_inputs("factor", &[a])?;
        let nodes = self.nodes();
        let s = sparse_of(&nodes, a.index, "factor")?;
        let factor = crate::solve::node::factor(solver, &s, nodes[a.index].value.as_slice())?;
        Ok(Factored {
            a,
            factor,
            solver: Arc::new(solver.clone()),
        })
    }
}

impl<'t> Factored<'t> {
    /// The matrix node this factorization is of.
    pub fn matrix(&self) -> Var<'t> {
        self.a
    }

    /// What the backend says about the factorization.
    pub fn describe(&self) -> String {
        self.factor.describe()
    }

    /// X = A⁻¹B with the shared factorization, as [`Tape::solve`] records it (the same node:
    /// its backward solves Λ = A⁻ᵀḠ with this factorization, B̄ = Λ, Ā = −ΛXᵀ at the stored
    /// entries), with the solver's right-hand-side and residual checks.
    ///
    /// # Errors
    /// As [`Tape::solve`], without its factorization errors.
    pub fn solve(&self, b: Var<'t>) -> Result<Var<'t>> {
        let tape = self.a.tape;
        let (ia, ib) = (self.a.index, b.index);
        tape.record_fallible("solve", &[self.a, b], |nodes| {
            let s = sparse_of(nodes, ia, "solve")?;
            dense_of(nodes, ib, "solve")?;
            let x = crate::solve::node::solve(
                self.solver.as_ref(),
                self.factor.as_ref(),
                &s,
                nodes[ia].value.as_slice(),
                &nodes[ib].value,
            )?;
            Ok((
                x,
                None,
                Op::new(Solve {
                    a: ia,
                    b: ib,
                    factor: self.factor.clone(),
                }),
            ))
        })
    }

    /// Y = A⁻ᵀB with the shared factorization (the transposed solve of its backend: faer's LU
    /// solves with Aᵀ without transposing anything). Backward: Λ = A⁻¹Ḡ, B̄ = Λ, Ā = −YΛᵀ at
    /// the stored entries; forward mode: Ẏ = A⁻ᵀ(Ḃ − ȦᵀY). B's shape and values are checked
    /// and Y must be finite; the residual check of [`Factored::solve`] is for A·X only.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) /
    /// [`Error::NonFinite`](crate::Error::NonFinite) for a bad B; the solve's errors.
    pub fn solve_transpose(&self, b: Var<'t>) -> Result<Var<'t>> {
        let tape = self.a.tape;
        let (ia, ib) = (self.a.index, b.index);
        tape.record_fallible("solve_transpose", &[self.a, b], |nodes| {
            let s = sparse_of(nodes, ia, "solve_transpose")?;
            dense_of(nodes, ib, "solve_transpose")?;
            let y =
                crate::solve::node::solve_transpose(self.factor.as_ref(), &s, &nodes[ib].value)?;
            Ok((
                y,
                None,
                Op::new(SolveTranspose {
                    a: ia,
                    b: ib,
                    factor: self.factor.clone(),
                }),
            ))
        })
    }
}

/// Y = A⁻ᵀB on a kept factorization.
struct SolveTranspose {
    a: usize,
    b: usize,
    factor: Arc<Factor>,
}

impl SolveTranspose {
    fn structure<'n>(&self, nodes: &'n [super::Node]) -> &'n Structure {
        nodes[self.a]
            .sparse
            .as_ref()
            .expect("solve_transpose's first input is sparse")
    }

    /// Λ = A⁻¹Ḡ, finite.
    fn lambda(&self, g: &DMatrix<f64>) -> Result<DMatrix<f64>> {
        let mut lambda = crate::pool::matrix_copy(g);
        self.factor.solve_in_place(&mut lambda)?;
        crate::solve::check_solution_finite(&lambda)?;
        Ok(lambda)
    }
}

impl Operation for SolveTranspose {
    fn name(&self) -> &'static str {
        "solve_transpose"
    }
    fn inputs(&self) -> Vec<usize> {
        vec![self.a, self.b]
    }
    fn factor(&self) -> Option<&Arc<Factor>> {
        Some(&self.factor)
    }
    fn kept_factorization(&self) -> Option<(usize, &Arc<Factor>)> {
        Some((self.a, &self.factor))
    }
    fn backward(&self, vjp: &mut Vjp<'_, '_>, g: &DMatrix<f64>) -> Result<()> {
        let nodes = vjp.nodes();
        let s = self.structure(nodes);
        let lambda = self.lambda(g)?;
        if nodes[self.a].needs_grad {
            let mut ga = DMatrix::zeros(s.nnz(), 1);
            accumulate_outer(s, vjp.value(), &lambda, -1.0, ga.as_mut_slice())?;
            vjp.add(self.a, ga)?;
        }
        vjp.add(self.b, lambda)
    }
    /// Ẏ = A⁻ᵀ(Ḃ − ȦᵀY).
    fn forward(&self, jvp: &Jvp<'_>) -> Result<Option<DMatrix<f64>>> {
        let nodes = jvp.nodes();
        let s = self.structure(nodes);
        let y = jvp.value();
        let mut rhs = match jvp.tangent(self.b) {
            Some(b) => b.clone(),
            None => DMatrix::zeros(y.nrows(), y.ncols()),
        };
        if let Some(a_dot) = jvp.tangent(self.a) {
            rhs -= crate::sparse::mul_transpose_dense(s, a_dot.as_slice(), y);
        }
        crate::solve::node::solve_transpose(self.factor.as_ref(), s, &rhs).map(Some)
    }
    /// With Λ = A⁻¹Ḡ: Λ̇ = A⁻¹(Ġ − ȦΛ), B̄̇ = Λ̇, Ā̇ = −(ẎΛᵀ + YΛ̇ᵀ) at the stored entries.
    fn backward_tangent(
        &self,
        hvp: &mut Hvp<'_, '_>,
        g: &DMatrix<f64>,
        g_dot: Option<&DMatrix<f64>>,
    ) -> Result<()> {
        let nodes = hvp.nodes();
        let s = self.structure(nodes);
        let lambda = self.lambda(g)?;
        let mut rhs = match g_dot {
            Some(gd) => gd.clone(),
            None => DMatrix::zeros(lambda.nrows(), lambda.ncols()),
        };
        if let Some(ta) = hvp.tangent(self.a) {
            rhs -= mul_dense(s, ta.as_slice(), &lambda);
        }
        let lambda_dot = self.lambda(&rhs)?;
        if nodes[self.a].needs_grad {
            let mut ga = DMatrix::zeros(s.nnz(), 1);
            accumulate_outer(s, hvp.value(), &lambda_dot, -1.0, ga.as_mut_slice())?;
            if let Some(ty) = hvp.own_tangent() {
                accumulate_outer(s, ty, &lambda, -1.0, ga.as_mut_slice())?;
            }
            hvp.add(self.a, ga)?;
        }
        hvp.add(self.b, lambda_dot)
    }
}
