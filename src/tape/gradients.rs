//! The backward pass: one reverse sweep over the tape applying each node's vector-Jacobian product.

use std::cell::OnceCell;

use nalgebra::{DMatrix, DVector};

use super::elementwise::{binary_backward, unary_backward};
use super::structural::scatter_rows;
use super::{Node, Op, Tape, Var};
use crate::error::{Error, Result};
use crate::sparse::{accumulate_outer, mul_transpose_dense};

/// Gradients of a scalar loss with respect to every node of a tape.
pub struct Gradients {
    tape: *const Tape,
    grads: Vec<OnceCell<DMatrix<f64>>>,
    shapes: Vec<(usize, usize)>,
}

impl std::fmt::Debug for Gradients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gradients")
            .field("nodes", &self.grads.len())
            .finish()
    }
}

impl Gradients {
    /// ∂loss/∂v, with the shape of `v`'s value (for a sparse matrix: one entry per stored value,
    /// nnz×1). Zero for variables the loss does not depend on.
    ///
    /// # Panics
    /// If `v` belongs to another tape (a programming error, like an out-of-bounds index); use
    /// [`Gradients::try_wrt`] to get an error instead.
    pub fn wrt(&self, v: Var<'_>) -> &DMatrix<f64> {
        match self.try_wrt(v) {
            Ok(g) => g,
            Err(e) => panic!("{e}"),
        }
    }

    /// ∂loss/∂v, or an error if `v` is not from the differentiated tape.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for a variable of another tape (or one created after `backward`).
    pub fn try_wrt(&self, v: Var<'_>) -> Result<&DMatrix<f64>> {
        if !std::ptr::eq(self.tape, v.tape) {
            return Err(Error::Unsupported {
                reason: format!("{v:?} is not from the tape these gradients came from"),
            });
        }
        if v.index >= self.grads.len() {
            return Err(Error::Unsupported {
                reason: format!(
                    "{v:?} was recorded after the loss; the loss does not depend on it"
                ),
            });
        }
        let (r, c) = self.shapes[v.index];
        Ok(self.grads[v.index].get_or_init(|| DMatrix::zeros(r, c)))
    }

    /// ∂loss/∂v as a vector (the value's entries in column-major order).
    pub fn wrt_vector(&self, v: Var<'_>) -> DVector<f64> {
        DVector::from_column_slice(self.wrt(v).as_slice())
    }
}

impl Drop for Gradients {
    fn drop(&mut self) {
        for g in self.grads.drain(..).filter_map(OnceCell::into_inner) {
            crate::pool::recycle_matrix(g);
        }
    }
}

fn accumulate(
    grads: &mut [Option<DMatrix<f64>>],
    nodes: &[Node],
    i: usize,
    contribution: DMatrix<f64>,
) {
    if !nodes[i].needs_grad {
        crate::pool::recycle_matrix(contribution);
        return;
    }
    match &mut grads[i] {
        Some(g) => {
            *g += &contribution;
            crate::pool::recycle_matrix(contribution);
        }
        slot @ None => *slot = Some(contribution),
    }
}

impl Tape {
    /// Reverse sweep from a scalar `loss`: gradients of the loss with respect to every variable.
    ///
    /// # Errors
    /// [`Error::NotScalar`] unless the loss is 1×1; the error that poisoned the loss; an error from
    /// an adjoint solve.
    pub fn backward<'t>(&'t self, loss: Var<'t>) -> Result<Gradients> {
        self.same_tape(loss)?;
        let nodes = self.nodes();
        let top = &nodes[loss.index];
        if let Some(e) = &top.error {
            return Err(e.clone());
        }
        if top.value.shape() != (1, 1) || top.sparse.is_some() {
            let (rows, cols) = top.value.shape();
            return Err(Error::NotScalar { rows, cols });
        }
        let mut grads: Vec<Option<DMatrix<f64>>> = vec![None; loss.index + 1];
        grads[loss.index] = Some(DMatrix::from_element(1, 1, 1.0));
        for i in (0..=loss.index).rev() {
            if !nodes[i].needs_grad {
                continue;
            }
            let Some(g) = grads[i].take() else { continue };
            propagate(&nodes, &mut grads, i, &g)?;
            grads[i] = Some(g);
        }
        Ok(Gradients {
            tape: self as *const Tape,
            shapes: nodes[..=loss.index]
                .iter()
                .map(|n| n.value.shape())
                .collect(),
            grads: grads
                .into_iter()
                .map(|g| {
                    let cell = OnceCell::new();
                    if let Some(g) = g {
                        let _ = cell.set(g);
                    }
                    cell
                })
                .collect(),
        })
    }
}

/// Applies node `i`'s vector-Jacobian product to its upstream gradient `g`.
fn propagate(
    nodes: &[Node],
    grads: &mut [Option<DMatrix<f64>>],
    i: usize,
    g: &DMatrix<f64>,
) -> Result<()> {
    let node = &nodes[i];
    match &node.op {
        Op::Leaf => {}
        Op::Identity(x) => accumulate(grads, nodes, *x, g.clone()),
        Op::Unary(op, x) => {
            let gx = unary_backward(*op, &nodes[*x].value, &node.value, g);
            accumulate(grads, nodes, *x, gx);
        }
        Op::Binary(op, a, b) => {
            let (ga, gb) = binary_backward(*op, &nodes[*a].value, &nodes[*b].value, g);
            accumulate(grads, nodes, *a, ga);
            accumulate(grads, nodes, *b, gb);
        }
        Op::Sum(x) => {
            let (r, c) = nodes[*x].value.shape();
            accumulate(grads, nodes, *x, DMatrix::from_element(r, c, g[0]));
        }
        Op::SumSquares(x) => {
            let mut gx = crate::pool::matrix_copy(&nodes[*x].value);
            gx *= 2.0 * g[0];
            accumulate(grads, nodes, *x, gx);
        }
        Op::Dot(a, b) => {
            accumulate(grads, nodes, *a, &nodes[*b].value * g[0]);
            accumulate(grads, nodes, *b, &nodes[*a].value * g[0]);
        }
        Op::Gather(x, index) => {
            let rows = nodes[*x].value.nrows();
            accumulate(grads, nodes, *x, scatter_rows(g, index, rows));
        }
        Op::ScatterAdd(x, index) => {
            accumulate(
                grads,
                nodes,
                *x,
                DMatrix::from_fn(index.len(), g.ncols(), |r, c| g[(index[r], c)]),
            );
        }
        Op::ColumnSlice(x, start) => {
            let (r, c) = nodes[*x].value.shape();
            let mut gx = DMatrix::zeros(r, c);
            gx.columns_mut(*start, g.ncols()).copy_from(g);
            accumulate(grads, nodes, *x, gx);
        }
        Op::ConcatColumns(parts) => {
            let mut at = 0;
            for &p in parts {
                let c = nodes[p].value.ncols();
                accumulate(grads, nodes, p, g.columns(at, c).into_owned());
                at += c;
            }
        }
        Op::Assemble(assembly, p) => {
            // p̄ = Mᵀ Ā
            let mut gp = crate::pool::matrix_zeros(assembly.n_params(), 1);
            assembly.adjoint_into(g.as_slice(), gp.as_mut_slice());
            accumulate(grads, nodes, *p, gp);
        }
        Op::SpMul(a, x) => {
            let s = nodes[*a]
                .sparse
                .as_ref()
                .expect("spmul's first input is sparse");
            let (av, xv) = (&nodes[*a].value, &nodes[*x].value);
            if nodes[*x].needs_grad {
                accumulate(grads, nodes, *x, mul_transpose_dense(s, av.as_slice(), g));
            }
            if nodes[*a].needs_grad {
                let mut ga = DMatrix::zeros(s.nnz(), 1);
                accumulate_outer(s, g, xv, 1.0, ga.as_mut_slice());
                accumulate(grads, nodes, *a, ga);
            }
        }
        Op::Solve { a, b, factor } => {
            // Λ = A⁻ᵀ Ḡ with the stored factorization; B̄ = Λ; Ā_ij = −Σ_c Λ_ic X_jc.
            let s = nodes[*a]
                .sparse
                .as_ref()
                .expect("solve's first input is sparse");
            let (lambda, ga) =
                crate::solve::adjoint(factor.as_ref(), s, g, &node.value, nodes[*a].needs_grad)?;
            if let Some(ga) = ga {
                accumulate(grads, nodes, *a, DMatrix::from_vec(ga.len(), 1, ga));
            }
            accumulate(grads, nodes, *b, lambda);
        }
    }
    Ok(())
}
