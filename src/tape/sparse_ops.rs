//! Sparse nodes: sparse inputs, assembly (p ↦ M p + c), sparse × dense products and the solve node.

use std::sync::Arc;

use nalgebra::DMatrix;
use nalgebra_sparse::CscMatrix;

use super::{linear_in_values, Hvp, Jvp, Op, Operation, Tape, Var, Vjp};
use crate::error::{Error, Result};
use crate::solve::node::accumulate_outer;
use crate::solve::{Factor, Factorizer, SolveInfo};
use crate::sparse::{mul_dense, mul_transpose_dense, Assembly, Structure, Symmetry};

pub(super) fn sparse_of(
    nodes: &[super::Node],
    i: usize,
    op: &'static str,
) -> Result<Arc<Structure>> {
    nodes[i].sparse.clone().ok_or_else(|| Error::Unsupported {
        reason: format!(
            "{op} needs a sparse matrix as its first argument, got a dense {:?}",
            nodes[i].value.shape()
        ),
    })
}

pub(super) fn dense_of(nodes: &[super::Node], i: usize, op: &'static str) -> Result<()> {
    match nodes[i].sparse {
        None => Ok(()),
        Some(_) => Err(Error::Unsupported {
            reason: format!("{op} needs a dense right-hand side, got a sparse matrix"),
        }),
    }
}

/// The pattern of a nalgebra-sparse `CscMatrix` as a validated [`Structure`].
fn csc_structure(matrix: &CscMatrix<f64>, symmetry: Symmetry) -> Result<Arc<Structure>> {
    Structure::new(
        matrix.nrows(),
        matrix.ncols(),
        matrix.col_offsets().to_vec(),
        matrix.row_indices().to_vec(),
        symmetry,
    )
}

impl Tape {
    /// A sparse matrix input with the given stored values (differentiable: its gradient is one
    /// value per stored entry, in `structure` order).
    ///
    /// # Errors
    /// [`Error::StructureMismatch`] if `values.len() != structure.nnz()`; [`Error::NonFinite`].
    pub fn sparse_var(&self, structure: &Arc<Structure>, values: &[f64]) -> Result<Var<'_>> {
        structure.check_values(values)?;
        let value = DMatrix::from_column_slice(values.len(), 1, values);
        Ok(self.leaf(value, Some(structure.clone()), true))
    }

    /// A constant sparse matrix.
    ///
    /// # Errors
    /// As [`Tape::sparse_var`].
    pub fn sparse_constant(&self, structure: &Arc<Structure>, values: &[f64]) -> Result<Var<'_>> {
        structure.check_values(values)?;
        let value = DMatrix::from_column_slice(values.len(), 1, values);
        Ok(self.leaf(value, Some(structure.clone()), false))
    }

    /// A differentiable sparse matrix from a nalgebra-sparse `CscMatrix`; its gradient comes back
    /// in the same CSC order as `matrix.values()` ([`Gradients::wrt_csc`](crate::Gradients::wrt_csc)
    /// returns it as a `CscMatrix` on the same pattern).
    ///
    /// Gradients are per stored entry: with [`Symmetry::General`] or [`Symmetry::Full`] each
    /// stored (i, j) gets ∂L/∂a_ij as if the entries were independent (a `Full` matrix's (i, j)
    /// and (j, i) gradients are not symmetrised — add them for the derivative along a symmetric
    /// perturbation); with [`Symmetry::Lower`] an off-diagonal value stands for both positions and
    /// its gradient counts both.
    ///
    /// # Errors
    /// As [`Structure::new`] for the declared `symmetry`, and [`Error::NonFinite`].
    pub fn csc_var(&self, matrix: &CscMatrix<f64>, symmetry: Symmetry) -> Result<Var<'_>> {
        self.sparse_var(&csc_structure(matrix, symmetry)?, matrix.values())
    }

    /// A constant sparse matrix from a nalgebra-sparse `CscMatrix` (no gradient flows to it): a
    /// density filter, a mass matrix, an observation operator, for [`Tape::spmul`] or a solve.
    ///
    /// ```
    /// use nalgebra::DMatrix;
    /// use nalgebra_sparse::{CooMatrix, CscMatrix};
    /// use sparsegrad::{Symmetry, Tape};
    /// // A 2-point averaging filter applied to a design x.
    /// let mut coo = CooMatrix::new(2, 3);
    /// for (i, j) in [(0, 0), (0, 1), (1, 1), (1, 2)] {
    ///     coo.push(i, j, 0.5);
    /// }
    /// let tape = Tape::new();
    /// let filter = tape.csc_constant(&CscMatrix::from(&coo), Symmetry::General).unwrap();
    /// let x = tape.var(&[1.0, 3.0, 5.0][..]);
    /// let y = tape.spmul(filter, x).unwrap();
    /// assert_eq!(y.value().unwrap().as_slice(), &[2.0, 4.0]);
    /// let g = tape.backward(y.sum()).unwrap();
    /// assert_eq!(g.wrt(x).as_slice(), &[0.5, 1.0, 0.5]);
    /// ```
    ///
    /// # Errors
    /// As [`Tape::csc_var`].
    pub fn csc_constant(&self, matrix: &CscMatrix<f64>, symmetry: Symmetry) -> Result<Var<'_>> {
        self.sparse_constant(&csc_structure(matrix, symmetry)?, matrix.values())
    }

    /// The sparse matrix with values M p + c (an [`Assembly`]); its adjoint is p̄ = Mᵀ Ā.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] unless `p` is n_params×1; [`Error::NonFinite`] for a non-finite
    /// assembled value; the error that poisoned `p`.
    pub fn assemble<'t>(&'t self, assembly: &Assembly, p: Var<'t>) -> Result<Var<'t>> {
        let i = p.index;
        self.record_fallible("assemble", &[p], |nodes| {
            let pv = &nodes[i].value;
            if pv.ncols() != 1 || nodes[i].sparse.is_some() {
                return Err(Error::ShapeMismatch {
                    op: "assemble",
                    left: pv.shape(),
                    right: (assembly.n_params(), 1),
                });
            }
            let values = assembly.values(pv.as_slice())?;
            let value = DMatrix::from_vec(values.len(), 1, values);
            Ok((
                value,
                Some(assembly.structure().clone()),
                Op::new(Assemble {
                    assembly: assembly.clone(),
                    p: i,
                }),
            ))
        })
    }

    /// Y = A X for a sparse A and dense X (both differentiable): X̄ = Aᵀ Ȳ and Ā_ij = Σ_c Ȳ_ic X_jc
    /// at stored entries.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`]; [`Error::Unsupported`] if A is not sparse or X is.
    pub fn spmul<'t>(&'t self, a: Var<'t>, x: Var<'t>) -> Result<Var<'t>> {
        let (ia, ix) = (a.index, x.index);
        self.record_fallible("spmul", &[a, x], |nodes| {
            let s = sparse_of(nodes, ia, "spmul")?;
            dense_of(nodes, ix, "spmul")?;
            let xv = &nodes[ix].value;
            if xv.nrows() != s.ncols() {
                return Err(Error::ShapeMismatch {
                    op: "spmul",
                    left: (s.nrows(), s.ncols()),
                    right: xv.shape(),
                });
            }
            Ok((
                mul_dense(&s, nodes[ia].value.as_slice(), xv),
                None,
                Op::new(SpMul { a: ia, x: ix }),
            ))
        })
    }

    /// The solve node: X = A⁻¹ B for a sparse square A and a dense n×k B (k ≥ 1).
    ///
    /// The factorization is kept on the tape and reused for the adjoint solve: backward computes
    /// Λ = A⁻ᵀ Ḡ, B̄ = Λ and Ā_ij = −Σ_c Λ_ic X_jc only at stored entries (for one-triangle storage,
    /// −Σ_c (Λ_ic X_jc + Λ_jc X_ic) off the diagonal). Memory is O(nnz + n·k), never O(n²).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for incompatible shapes or k = 0; [`Error::NonFinite`] for a
    /// non-finite value in A or B (naming its position); every error of [`Solver::factorize`](crate::Solver::factorize);
    /// [`Error::Singular`] when the solution fails the solver's residual check.
    pub fn solve<'t>(&'t self, a: Var<'t>, b: Var<'t>, solver: &dyn Factorizer) -> Result<Var<'t>> {
        let (ia, ib) = (a.index, b.index);
        self.record_fallible("solve", &[a, b], |nodes| {
            let s = sparse_of(nodes, ia, "solve")?;
            dense_of(nodes, ib, "solve")?;
            // B's shape (k ≥ 1) and values are the solve node's one check (`node::forward`).
            // A logdet of the same matrix node already factored it: solve with that factor.
            let values = nodes[ia].value.as_slice();
            let (factor, x) = match super::kept_factor_of(nodes, ia, "logdet") {
                Some(f) => {
                    let x = crate::solve::node::solve(
                        solver,
                        f.as_ref(),
                        &s,
                        values,
                        &nodes[ib].value,
                    )?;
                    (f, x)
                }
                None => crate::solve::node::forward(solver, &s, values, &nodes[ib].value)?,
            };
            Ok((
                x,
                None,
                Op::new(Solve {
                    a: ia,
                    b: ib,
                    factor,
                }),
            ))
        })
    }
}

impl Tape {
    /// What the solve node that produced `x` achieved: for iterative solvers the iterations and
    /// relative residuals of the forward solve and — after [`Tape::backward`] — of the adjoint
    /// solve; for direct solvers the reciprocal condition estimate 1/κ₁(A) (computed now, on
    /// demand, with about 11 solves on the kept factor: as MATLAB's `rcond`, a value below
    /// ~1e-12 means the solution and gradient keep fewer than ~4 correct digits).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `x` was not produced by [`Tape::solve`]; the error that poisoned
    /// `x`.
    pub fn solve_info(&self, x: Var<'_>) -> Result<SolveInfo> {
        self.same_tape("solve_info", x)?;
        let nodes = self.nodes();
        let node = &nodes[x.index];
        if let Some(e) = &node.error {
            return Err(e.clone());
        }
        let solved = match &node.op {
            Op::Recorded(op) => op.factor().map(|f| (f, op.inputs()[0])),
            Op::Leaf => None,
        };
        match solved {
            Some((factor, a)) => {
                let mut info = factor.solve_info();
                if !factor.is_iterative() && info.reciprocal_condition.is_none() {
                    let a = &nodes[a];
                    if let Some(s) = &a.sparse {
                        let kappa = crate::solve::condition_estimate(
                            s,
                            a.value.as_slice(),
                            factor.as_ref(),
                        )?;
                        info.reciprocal_condition =
                            Some(if kappa > 0.0 { 1.0 / kappa } else { 0.0 });
                    }
                }
                Ok(info)
            }
            _ => Err(Error::InvalidArgument {
                what: "solve_info variable",
                reason: format!("Var#{} is not the output of a solve", x.index),
            }),
        }
    }
}

impl<'t> Var<'t> {
    /// `self` (sparse) times `x` (dense); see [`Tape::spmul`].
    ///
    /// # Errors
    /// As [`Tape::spmul`].
    pub fn spmul(self, x: Var<'t>) -> Result<Var<'t>> {
        self.tape.spmul(self, x)
    }

    /// `self⁻¹ b` for a sparse `self`; see [`Tape::solve`].
    ///
    /// # Errors
    /// As [`Tape::solve`].
    pub fn solve(self, b: Var<'t>, solver: &dyn Factorizer) -> Result<Var<'t>> {
        self.tape.solve(self, b, solver)
    }
}

/// values = M p + c: p̄ = Mᵀ Ā.
struct Assemble {
    assembly: Assembly,
    p: usize,
}

impl Operation for Assemble {
    fn name(&self) -> &'static str {
        "assemble"
    }
    fn inputs(&self) -> Vec<usize> {
        vec![self.p]
    }
    fn backward(&self, vjp: &mut Vjp<'_, '_>, g: &DMatrix<f64>) -> Result<()> {
        let mut gp = crate::pool::matrix_zeros(self.assembly.n_params(), 1);
        self.assembly
            .adjoint_into(g.as_slice(), gp.as_mut_slice())?;
        vjp.add(self.p, gp)
    }
    /// v̇ = M ṗ.
    fn forward(&self, jvp: &Jvp<'_>) -> Result<Option<DMatrix<f64>>> {
        let Some(t) = jvp.tangent(self.p) else {
            return Ok(None);
        };
        let v = self.assembly.linear_values(t.as_slice())?;
        Ok(Some(DMatrix::from_vec(v.len(), 1, v)))
    }
    linear_in_values!();
}

/// Y = A X: X̄ = Aᵀ Ȳ, Ā_ij = Σ_c Ȳ_ic X_jc at the stored entries.
struct SpMul {
    a: usize,
    x: usize,
}

impl Operation for SpMul {
    fn name(&self) -> &'static str {
        "spmul"
    }
    fn inputs(&self) -> Vec<usize> {
        vec![self.a, self.x]
    }
    fn backward(&self, vjp: &mut Vjp<'_, '_>, g: &DMatrix<f64>) -> Result<()> {
        let nodes = vjp.nodes();
        let (a, x) = (&nodes[self.a], &nodes[self.x]);
        let s = a.sparse.as_ref().expect("spmul's first input is sparse");
        if x.needs_grad {
            vjp.add(self.x, mul_transpose_dense(s, a.value.as_slice(), g))?;
        }
        if a.needs_grad {
            let mut ga = DMatrix::zeros(s.nnz(), 1);
            accumulate_outer(s, g, &x.value, 1.0, ga.as_mut_slice())?;
            vjp.add(self.a, ga)?;
        }
        Ok(())
    }
    /// Ẏ = Ȧ X + A Ẋ.
    fn forward(&self, jvp: &Jvp<'_>) -> Result<Option<DMatrix<f64>>> {
        let nodes = jvp.nodes();
        let (a, x) = (&nodes[self.a], &nodes[self.x]);
        let s = a.sparse.as_ref().expect("spmul's first input is sparse");
        let (r, c) = jvp.value().shape();
        let mut out = DMatrix::zeros(r, c);
        if let Some(ta) = jvp.tangent(self.a) {
            out += crate::sparse::mul_dense(s, ta.as_slice(), &x.value);
        }
        if let Some(tx) = jvp.tangent(self.x) {
            out += crate::sparse::mul_dense(s, a.value.as_slice(), tx);
        }
        Ok(Some(out))
    }
    /// X̄ = AᵀȲ, Ā = Ȳ Xᵀ at the entries: their tangents add ȦᵀȲ and Ȳ Ẋᵀ.
    fn backward_tangent(
        &self,
        hvp: &mut Hvp<'_, '_>,
        g: &DMatrix<f64>,
        g_dot: Option<&DMatrix<f64>>,
    ) -> Result<()> {
        hvp.linear(self, g_dot)?;
        let nodes = hvp.nodes();
        let s = nodes[self.a]
            .sparse
            .as_ref()
            .expect("spmul's first input is sparse");
        if let Some(ta) = hvp.tangent(self.a) {
            let c = mul_transpose_dense(s, ta.as_slice(), g);
            hvp.add(self.x, c)?;
        }
        if let Some(tx) = hvp.tangent(self.x) {
            let mut ga = DMatrix::zeros(s.nnz(), 1);
            accumulate_outer(s, g, tx, 1.0, ga.as_mut_slice())?;
            hvp.add(self.a, ga)?;
        }
        Ok(())
    }
}

/// X = A⁻¹ B with the kept factorization: Λ = A⁻ᵀ Ḡ on the same factor, B̄ = Λ,
/// Ā_ij = −Σ_c Λ_ic X_jc at the stored entries (`solve::node::adjoint`).
pub(super) struct Solve {
    pub(super) a: usize,
    pub(super) b: usize,
    pub(super) factor: Arc<Factor>,
}

impl Operation for Solve {
    fn name(&self) -> &'static str {
        "solve"
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
        let a = &nodes[self.a];
        let s = a.sparse.as_ref().expect("solve's first input is sparse");
        let adjoint =
            crate::solve::node::adjoint(self.factor.as_ref(), s, g, vjp.value(), a.needs_grad)?;
        if let Some(ga) = adjoint.grad_values {
            vjp.add(self.a, DMatrix::from_vec(ga.len(), 1, ga))?;
        }
        vjp.add(self.b, adjoint.lambda)
    }
    /// Ẋ = A⁻¹(Ḃ − Ȧ X) on the kept factorization (`solve::node::tangent`).
    fn forward(&self, jvp: &Jvp<'_>) -> Result<Option<DMatrix<f64>>> {
        let nodes = jvp.nodes();
        let s = nodes[self.a]
            .sparse
            .as_ref()
            .expect("solve's first input is sparse");
        let a_dot = jvp.tangent(self.a).map(|t| t.as_slice());
        crate::solve::node::tangent(
            self.factor.as_ref(),
            s,
            jvp.value(),
            a_dot,
            jvp.tangent(self.b),
        )
        .map(Some)
    }
    /// With Λ = A⁻ᵀḠ: Λ̇ = A⁻ᵀ(Ġ − ȦᵀΛ) on the kept factor, B̄̇ = Λ̇, Ā̇ = −(Λ̇ Xᵀ + Λ Ẋᵀ) at
    /// the stored entries. Alone it solves for Λ; [`Tape::hvp`] runs
    /// [`Operation::backward_and_tangent`], which solves for Λ once for both rules.
    fn backward_tangent(
        &self,
        hvp: &mut Hvp<'_, '_>,
        g: &DMatrix<f64>,
        g_dot: Option<&DMatrix<f64>>,
    ) -> Result<()> {
        let s = self.structure(hvp.nodes());
        let lambda = crate::solve::node::solve_transpose(self.factor.as_ref(), s, g)?;
        self.tangent_of_adjoint(hvp, &lambda, g_dot)
    }
    /// The VJP and its tangent with one adjoint solve: Λ from the VJP feeds Λ̇'s right-hand side.
    fn backward_and_tangent(
        &self,
        vjp: &mut Vjp<'_, '_>,
        hvp: &mut Hvp<'_, '_>,
        g: &DMatrix<f64>,
        g_dot: Option<&DMatrix<f64>>,
    ) -> Result<()> {
        let nodes = vjp.nodes();
        let s = self.structure(nodes);
        let adjoint = crate::solve::node::adjoint(
            self.factor.as_ref(),
            s,
            g,
            vjp.value(),
            nodes[self.a].needs_grad,
        )?;
        self.tangent_of_adjoint(hvp, &adjoint.lambda, g_dot)?;
        if let Some(ga) = adjoint.grad_values {
            vjp.add(self.a, DMatrix::from_vec(ga.len(), 1, ga))?;
        }
        vjp.add(self.b, adjoint.lambda)
    }
}

impl Solve {
    /// A's pattern.
    fn structure<'n>(&self, nodes: &'n [super::Node]) -> &'n Structure {
        nodes[self.a]
            .sparse
            .as_ref()
            .expect("solve's first input is sparse")
    }

    /// The gradient tangents from Λ = A⁻ᵀḠ: Λ̇ = A⁻ᵀ(Ġ − ȦᵀΛ), B̄̇ = Λ̇, Ā̇ = −(Λ̇ Xᵀ + Λ Ẋᵀ).
    fn tangent_of_adjoint(
        &self,
        hvp: &mut Hvp<'_, '_>,
        lambda: &DMatrix<f64>,
        g_dot: Option<&DMatrix<f64>>,
    ) -> Result<()> {
        let nodes = hvp.nodes();
        let s = self.structure(nodes);
        let (ta, tx) = (hvp.tangent(self.a), hvp.own_tangent());
        let mut rhs = match g_dot {
            Some(gd) => crate::pool::matrix_copy(gd),
            None => DMatrix::zeros(lambda.nrows(), lambda.ncols()),
        };
        if let Some(ta) = ta {
            rhs -= mul_transpose_dense(s, ta.as_slice(), lambda);
        }
        let lambda_dot = crate::solve::node::solve_transpose(self.factor.as_ref(), s, &rhs)?;
        crate::pool::recycle_matrix(rhs);
        if nodes[self.a].needs_grad {
            let mut ga = DMatrix::zeros(s.nnz(), 1);
            accumulate_outer(s, &lambda_dot, hvp.value(), -1.0, ga.as_mut_slice())?;
            if let Some(tx) = tx {
                accumulate_outer(s, lambda, tx, -1.0, ga.as_mut_slice())?;
            }
            hvp.add(self.a, ga)?;
        }
        hvp.add(self.b, lambda_dot)
    }
}
