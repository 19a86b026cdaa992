//! The backward pass: one reverse sweep over the tape applying each node's vector-Jacobian product.

use std::cell::OnceCell;

use nalgebra::{DMatrix, DVector};

use super::{Node, Op, Tape, Var};
use crate::error::{first_non_finite, Error, Result};

/// Gradients of a scalar loss with respect to every node of a tape.
///
/// Owns its data (it names its tape by id, not by reference), so it may outlive the tape and be
/// sent to another thread.
pub struct Gradients {
    tape: u64,
    grads: Vec<OnceCell<DMatrix<f64>>>,
    shapes: Vec<(usize, usize)>,
}

impl std::fmt::Debug for Gradients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gradients")
            .field("tape", &self.tape)
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
    /// [`Error::ForeignVar`] for a variable of another tape (compared by [`Tape::id`], so a new
    /// tape at a dropped tape's address is still another tape); [`Error::InvalidArgument`] for one
    /// created after `backward`.
    pub fn try_wrt(&self, v: Var<'_>) -> Result<&DMatrix<f64>> {
        if self.tape != v.tape.id() {
            return Err(Error::ForeignVar {
                op: "Gradients::wrt",
                var: format!("Var#{}", v.index),
                var_tape: v.tape.id(),
                tape: self.tape,
            });
        }
        if v.index >= self.grads.len() {
            return Err(Error::InvalidArgument {
                what: "variable",
                reason: format!(
                    "{v:?} was recorded after the loss; the loss does not depend on it"
                ),
            });
        }
        let (r, c) = self.shapes[v.index];
        Ok(self.grads[v.index].get_or_init(|| DMatrix::zeros(r, c)))
    }

    /// ∂loss/∂A for a sparse variable A as a `CscMatrix` on A's own pattern (for
    /// [`Tape::csc_var`]: the same pattern and entry order as the input matrix).
    ///
    /// ```
    /// use nalgebra::DMatrix;
    /// use nalgebra_sparse::{CooMatrix, CscMatrix};
    /// use sparsegrad::{Solver, Symmetry, Tape};
    /// # fn main() -> sparsegrad::Result<()> {
    /// let mut coo = CooMatrix::new(2, 2);
    /// coo.push(0, 0, 2.0);
    /// coo.push(1, 0, 1.0);
    /// coo.push(1, 1, 4.0);
    /// let a_in = CscMatrix::from(&coo);
    /// // d/dA of sum(A⁻¹ b):
    /// let tape = Tape::new();
    /// let a = tape.csc_var(&a_in, Symmetry::General)?;
    /// let x = a.solve(tape.constant(&[1.0, 1.0][..]), &Solver::lu())?;
    /// let grad: CscMatrix<f64> = tape.backward(x.sum())?.wrt_csc(a)?;
    /// assert_eq!(grad.col_offsets(), a_in.col_offsets());
    /// assert_eq!(grad.nnz(), 3);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::Unsupported`] if `v` is not sparse; as [`Gradients::try_wrt`].
    pub fn wrt_csc(&self, v: Var<'_>) -> Result<nalgebra_sparse::CscMatrix<f64>> {
        let Some(structure) = v.structure() else {
            return Err(Error::Unsupported {
                reason: format!("{v:?} is dense; wrt_csc needs a sparse variable"),
            });
        };
        structure.to_csc(self.try_wrt(v)?.as_slice())
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

/// The gradients accumulated so far in a reverse sweep.
struct Sweep<'a> {
    nodes: &'a [Node],
    grads: Vec<Option<DMatrix<f64>>>,
    /// Whether to check every contribution for NaN/±∞ (the second sweep, run only to locate the
    /// operation that produced a non-finite gradient).
    check: bool,
}

impl Sweep<'_> {
    /// Adds node `from`'s VJP `contribution` to the gradient of its input `to`.
    fn add(&mut self, from: usize, to: usize, contribution: DMatrix<f64>) -> Result<()> {
        if !self.nodes[to].needs_grad {
            crate::pool::recycle_matrix(contribution);
            return Ok(());
        }
        if self.check {
            self.ensure_finite(from, &contribution)?;
        }
        match &mut self.grads[to] {
            Some(g) => {
                *g += &contribution;
                crate::pool::recycle_matrix(contribution);
                if self.check {
                    // Finite terms whose sum overflowed.
                    let g = self.grads[to].as_ref().expect("just accumulated");
                    self.ensure_finite(from, g)?;
                }
            }
            slot @ None => *slot = Some(contribution),
        }
        Ok(())
    }

    /// [`Error::NonFiniteOperation`] naming node `from` if `m` holds a NaN or ±∞.
    fn ensure_finite(&self, from: usize, m: &DMatrix<f64>) -> Result<()> {
        match first_non_finite(m.as_slice()) {
            None => Ok(()),
            Some(k) => Err(non_finite_at(self.nodes, "gradient", from, m, k)),
        }
    }
}

impl Tape {
    /// Reverse sweep from a scalar `loss`: gradients of the loss with respect to every variable.
    ///
    /// # Errors
    /// [`Error::NotScalar`] unless the loss is 1×1; the error that poisoned the loss; an error from
    /// an adjoint solve; [`Error::ForeignVar`] for a loss of another tape;
    /// [`Error::NonFiniteOperation`] when the loss or the gradient of an input is NaN or ±∞,
    /// naming the first operation whose value (forward) or gradient contribution (backward)
    /// became non-finite — never a silent NaN.
    pub fn backward<'t>(&'t self, loss: Var<'t>) -> Result<Gradients> {
        self.same_tape("backward", loss)?;
        let nodes = self.nodes();
        check_loss(&nodes, loss.index)?;
        let grads = match sweep(&nodes, loss.index, false)? {
            Ok(grads) => grads,
            Err(()) => return Err(locate_non_finite_gradient(&nodes, loss.index)),
        };
        Ok(self.gradients_of(&nodes, loss.index, grads))
    }

    fn gradients_of(
        &self,
        nodes: &[Node],
        top: usize,
        grads: Vec<Option<DMatrix<f64>>>,
    ) -> Gradients {
        Gradients {
            tape: self.id(),
            shapes: nodes[..=top].iter().map(|n| n.value.shape()).collect(),
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
        }
    }

    /// The gradient of a scalar `loss` and its Hessian-vector product H·v along the tangents
    /// `seeds` (v: one tangent per seeded variable, zero elsewhere), by forward-over-reverse: a
    /// forward tangent sweep ([`Tape::jvp`]'s), then one reverse sweep carrying each gradient and
    /// its tangent. Returns `(∇loss, H·v)`, both read with [`Gradients::wrt`] for any variable.
    ///
    /// The solve node reuses its kept factorization: per HVP it runs the tangent solve, the
    /// adjoint solve and the adjoint-tangent solve λ̇ = A⁻ᵀ(ḡ_X − Ȧᵀλ) — never a factorization.
    ///
    /// ```
    /// use nalgebra::DMatrix;
    /// use sparsegrad::Tape;
    /// // f(x) = Σ x³: H = diag(6x), so H·1 = 6x.
    /// let tape = Tape::new();
    /// let x = tape.var(DMatrix::from_column_slice(2, 1, &[1.0, 2.0]));
    /// let f = (x * x * x).sum();
    /// let (g, hv) = tape.hvp(f, &[(x, DMatrix::from_element(2, 1, 1.0))])?;
    /// assert_eq!(g.wrt(x).as_slice(), &[3.0, 12.0]);
    /// assert_eq!(hv.wrt(x).as_slice(), &[6.0, 12.0]);
    /// # Ok::<(), sparsegrad::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Tape::backward`] and [`Tape::jvp`]; [`Error::NonFiniteOperation`] (pass
    /// "hessian-vector") when an entry of H·v is NaN or ±∞.
    pub fn hvp<'t>(
        &'t self,
        loss: Var<'t>,
        seeds: &[(Var<'t>, DMatrix<f64>)],
    ) -> Result<(Gradients, Gradients)> {
        self.same_tape("hvp", loss)?;
        let nodes = self.nodes();
        check_loss(&nodes, loss.index)?;
        let top = loss.index;
        let tangents = self.forward_tangents(&nodes, seeds, top + 1)?;
        let mut grad = Sweep {
            nodes: &nodes,
            grads: vec![None; top + 1],
            check: false,
        };
        let mut tangent = Sweep {
            nodes: &nodes,
            grads: vec![None; top + 1],
            check: false,
        };
        grad.grads[top] = Some(DMatrix::from_element(1, 1, 1.0));
        for i in (0..=top).rev() {
            if !nodes[i].needs_grad {
                continue;
            }
            let Some(g) = grad.grads[i].take() else {
                continue;
            };
            let g_dot = tangent.grads[i].take();
            if let Op::Recorded(op) = &nodes[i].op {
                op.backward_and_tangent(
                    &mut Vjp {
                        sweep: &mut grad,
                        node: i,
                    },
                    &mut Hvp {
                        sweep: &mut tangent,
                        tangents: &tangents,
                        node: i,
                    },
                    &g,
                    g_dot.as_ref(),
                )?;
            }
            grad.grads[i] = Some(g);
            tangent.grads[i] = g_dot;
        }
        if !leaves_finite(&nodes, &grad.grads) {
            return Err(locate_non_finite_gradient(&nodes, top));
        }
        for (i, (t, node)) in tangent.grads.iter().zip(nodes.iter()).enumerate() {
            if let (Some(t), Op::Leaf) = (t, &node.op) {
                if let Some(k) = first_non_finite(t.as_slice()) {
                    return Err(non_finite_at(&nodes, "hessian-vector", i, t, k));
                }
            }
        }
        let gradient = self.gradients_of(&nodes, top, grad.grads);
        let hv = self.gradients_of(&nodes, top, tangent.grads);
        Ok((gradient, hv))
    }
}

/// The checks on a loss before a reverse sweep: not poisoned, 1×1 and dense, finite.
fn check_loss(nodes: &[Node], top: usize) -> Result<()> {
    let node = &nodes[top];
    if let Some(e) = &node.error {
        return Err(e.clone());
    }
    if node.value.shape() != (1, 1) || node.sparse.is_some() {
        let (rows, cols) = node.value.shape();
        return Err(Error::NotScalar { rows, cols });
    }
    if !node.value[0].is_finite() {
        return Err(first_non_finite_value(nodes, top));
    }
    Ok(())
}

/// Whether every leaf's gradient is finite.
fn leaves_finite(nodes: &[Node], grads: &[Option<DMatrix<f64>>]) -> bool {
    grads.iter().zip(nodes).all(|(g, n)| {
        !matches!(n.op, Op::Leaf)
            || g.as_ref()
                .is_none_or(|g| first_non_finite(g.as_slice()).is_none())
    })
}

/// The error for a non-finite input gradient: sweeps again, checking every contribution, to name
/// the operation that produced it (error path only; the normal path checks the leaves).
fn locate_non_finite_gradient(nodes: &[Node], top: usize) -> Error {
    match sweep(nodes, top, true) {
        Err(e) => e,
        // Not reached: the checked sweep reports the contribution that went non-finite.
        Ok(_) => Error::NonFiniteOperation {
            pass: "gradient",
            op: "backward",
            node: top,
            row: 0,
            col: 0,
            value: f64::NAN,
        },
    }
}

/// One reverse sweep from node `top`. `Ok(Err(()))`: an input's gradient is non-finite (only
/// when `check` is off; with `check` on that is reported as an error by [`Sweep::add`]).
#[allow(clippy::type_complexity)]
fn sweep(
    nodes: &[Node],
    top: usize,
    check: bool,
) -> Result<std::result::Result<Vec<Option<DMatrix<f64>>>, ()>> {
    let mut sweep = Sweep {
        nodes,
        grads: vec![None; top + 1],
        check,
    };
    sweep.grads[top] = Some(DMatrix::from_element(1, 1, 1.0));
    for i in (0..=top).rev() {
        if !nodes[i].needs_grad {
            continue;
        }
        let Some(g) = sweep.grads[i].take() else {
            continue;
        };
        propagate(&mut sweep, i, &g)?;
        sweep.grads[i] = Some(g);
    }
    Ok(if leaves_finite(nodes, &sweep.grads) {
        Ok(sweep.grads)
    } else {
        Err(())
    })
}

/// The error for entry `k` of `m`, produced by node `node` in `pass`.
fn non_finite_at(
    nodes: &[Node],
    pass: &'static str,
    node: usize,
    m: &DMatrix<f64>,
    k: usize,
) -> Error {
    let rows = m.nrows().max(1);
    Error::NonFiniteOperation {
        pass,
        op: nodes[node].op.name(),
        node,
        row: k % rows,
        col: k / rows,
        value: m.as_slice()[k],
    }
}

/// The first node (by position) that the loss depends on whose value is non-finite.
fn first_non_finite_value(nodes: &[Node], top: usize) -> Error {
    let mut reached = vec![false; top + 1];
    reached[top] = true;
    for i in (0..=top).rev() {
        if reached[i] {
            for x in nodes[i].op.inputs() {
                reached[x] = true;
            }
        }
    }
    for (i, node) in nodes[..=top].iter().enumerate() {
        if !reached[i] {
            continue;
        }
        if let Some(k) = first_non_finite(node.value.as_slice()) {
            return non_finite_at(nodes, "forward", i, &node.value, k);
        }
    }
    let v = nodes[top].value[0];
    Error::NonFiniteOperation {
        pass: "forward",
        op: nodes[top].op.name(),
        node: top,
        row: 0,
        col: 0,
        value: v,
    }
}

/// Applies node `i`'s vector-Jacobian product to its upstream gradient `g`.
fn propagate(sweep: &mut Sweep<'_>, i: usize, g: &DMatrix<f64>) -> Result<()> {
    let nodes = sweep.nodes;
    match &nodes[i].op {
        Op::Leaf => Ok(()),
        Op::Recorded(op) => op.backward(&mut Vjp { sweep, node: i }, g),
    }
}

/// What an [`Operation`](super::Operation)'s tangent-of-VJP rule works with ([`Tape::hvp`]):
/// every node's value and forward tangent, and where to add each input's gradient tangent.
pub(crate) struct Hvp<'s, 'n> {
    sweep: &'s mut Sweep<'n>,
    tangents: &'s [Option<DMatrix<f64>>],
    node: usize,
}

impl<'n> Hvp<'_, 'n> {
    /// Every node of the tape.
    pub(crate) fn nodes(&self) -> &'n [Node] {
        self.sweep.nodes
    }

    /// This operation's own value.
    pub(crate) fn value(&self) -> &'n DMatrix<f64> {
        &self.sweep.nodes[self.node].value
    }

    /// The forward tangent of node `i` (`None`: zero).
    pub(crate) fn tangent(&self, i: usize) -> Option<&DMatrix<f64>> {
        self.tangents[i].as_ref()
    }

    /// The forward tangent of this operation's own value.
    pub(crate) fn own_tangent(&self) -> Option<&DMatrix<f64>> {
        self.tangents[self.node].as_ref()
    }

    /// Adds `contribution` to the gradient tangent of input `to`.
    pub(crate) fn add(&mut self, to: usize, contribution: DMatrix<f64>) -> Result<()> {
        self.sweep.add(self.node, to, contribution)
    }

    /// The part that comes from the upstream gradient's tangent: `op`'s own VJP applied to
    /// `g_dot` (VJPs are linear in the upstream gradient).
    pub(crate) fn linear(
        &mut self,
        op: &dyn super::Operation,
        g_dot: Option<&DMatrix<f64>>,
    ) -> Result<()> {
        match g_dot {
            Some(gd) => op.backward(
                &mut Vjp {
                    sweep: &mut *self.sweep,
                    node: self.node,
                },
                gd,
            ),
            None => Ok(()),
        }
    }
}

/// What an [`Operation`](super::Operation)'s backward rule works with: the tape's nodes (its
/// inputs' values, whether they need a gradient), its own node's value, and where to add each
/// input's gradient contribution.
pub(crate) struct Vjp<'s, 'n> {
    sweep: &'s mut Sweep<'n>,
    node: usize,
}

impl<'n> Vjp<'_, 'n> {
    /// Every node of the tape (an operation reads its inputs' values here).
    pub(crate) fn nodes(&self) -> &'n [Node] {
        self.sweep.nodes
    }

    /// This operation's own (forward) value.
    pub(crate) fn value(&self) -> &'n DMatrix<f64> {
        &self.sweep.nodes[self.node].value
    }

    /// Adds `contribution` (input `to`'s shape) to the gradient of input `to` — dropped when `to`
    /// needs none, checked for NaN/±∞ in the locating sweep.
    pub(crate) fn add(&mut self, to: usize, contribution: DMatrix<f64>) -> Result<()> {
        self.sweep.add(self.node, to, contribution)
    }
}
