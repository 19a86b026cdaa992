//! Sparse nodes: sparse inputs, assembly (p ↦ M p + c), sparse × dense products and the solve node.

use std::sync::Arc;

use nalgebra::DMatrix;
use nalgebra_sparse::CscMatrix;

use super::{Op, Tape, Var};
use crate::error::{Error, Result};
use crate::solve::{Factorizer, SolveInfo};
use crate::sparse::{mul_dense, Assembly, Structure, Symmetry};

fn sparse_of(nodes: &[super::Node], i: usize, op: &'static str) -> Result<Arc<Structure>> {
    nodes[i].sparse.clone().ok_or_else(|| Error::Unsupported {
        reason: format!(
            "{op} needs a sparse matrix as its first argument, got a dense {:?}",
            nodes[i].value.shape()
        ),
    })
}

fn dense_of(nodes: &[super::Node], i: usize, op: &'static str) -> Result<()> {
    match nodes[i].sparse {
        None => Ok(()),
        Some(_) => Err(Error::Unsupported {
            reason: format!("{op} needs a dense right-hand side, got a sparse matrix"),
        }),
    }
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
        let structure = Structure::new(
            matrix.nrows(),
            matrix.ncols(),
            matrix.col_offsets().to_vec(),
            matrix.row_indices().to_vec(),
            symmetry,
        )?;
        self.sparse_var(&structure, matrix.values())
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
                Op::Assemble(assembly.clone(), i),
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
                Op::SpMul(ia, ix),
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
            let bv = &nodes[ib].value;
            // Through the solver, so that a collective (MPI) solver stops on every rank.
            solver.agree(if bv.nrows() != s.nrows() || bv.ncols() == 0 {
                Err(Error::ShapeMismatch {
                    op: "solve",
                    left: (s.nrows(), s.ncols()),
                    right: bv.shape(),
                })
            } else {
                Ok(())
            })?;
            let (factor, x) =
                crate::solve::node::forward(solver, &s, nodes[ia].value.as_slice(), bv)?;
            Ok((
                x,
                None,
                Op::Solve {
                    a: ia,
                    b: ib,
                    factor,
                },
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
    /// [`Error::Unsupported`] if `x` was not produced by [`Tape::solve`]; the error that poisoned
    /// `x`.
    pub fn solve_info(&self, x: Var<'_>) -> Result<SolveInfo> {
        self.same_tape("solve_info", x)?;
        let nodes = self.nodes();
        let node = &nodes[x.index];
        if let Some(e) = &node.error {
            return Err(e.clone());
        }
        match &node.op {
            Op::Solve { factor, a, .. } => {
                let mut info = factor.solve_info();
                if !factor.is_iterative() && info.reciprocal_condition.is_none() {
                    let a = &nodes[*a];
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
            _ => Err(Error::Unsupported {
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
