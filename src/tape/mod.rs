//! The reverse-mode tape.
//!
//! A [`Tape`] is an append-only list of nodes; a [`Var`] is a `Copy` handle (tape reference +
//! index). Every node holds its value (a dense `DMatrix<f64>`; for a sparse matrix, its stored
//! values as an nnz×1 column plus the [`Structure`]) and the operation that made it, which is all
//! its vector-Jacobian product needs. [`Tape::backward`] walks the nodes once in reverse.
//!
//! Operations that cannot return a `Result` (the arithmetic operators) record a failure in the
//! node they create: the node is *poisoned*, every node computed from it is poisoned too, and
//! reading its value or calling `backward` on it returns the original error. Nothing panics.

mod dirichlet;
mod elementwise;
mod equilibrium;
mod factored;
mod forward;
mod gradients;
mod logdet;
#[cfg(test)]
mod recipe_op;
mod sharded;
mod sparse_ops;
mod structural;

use std::cell::{Ref, RefCell};
use std::sync::Arc;

use nalgebra::{DMatrix, DVector};

use crate::error::{Error, Result};
use crate::solve::Factor;
use crate::sparse::Structure;

pub use elementwise::{BinaryOp, UnaryOp};
pub use equilibrium::{colored_jacobian, residual_fn, Newton, NewtonReport, Residual};
pub use factored::Factored;
pub(crate) use forward::Jvp;
pub use gradients::Gradients;
pub(crate) use gradients::{Hvp, Vjp};

/// An append-only reverse-mode autodiff tape. Create one per evaluation of the model.
///
/// Every tape has a process-wide unique [`Tape::id`]; operations refuse a [`Var`] of another
/// tape with [`Error::ForeignVar`], and [`Gradients`] refuse variables of other tapes.
pub struct Tape {
    id: u64,
    nodes: RefCell<Vec<Node>>,
}

static NEXT_TAPE_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Default for Tape {
    fn default() -> Self {
        Tape {
            id: NEXT_TAPE_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            nodes: RefCell::default(),
        }
    }
}

/// A handle to a value on a [`Tape`]. Cheap to copy; valid as long as the tape.
#[derive(Clone, Copy)]
pub struct Var<'t> {
    tape: &'t Tape,
    index: usize,
}

impl std::fmt::Debug for Var<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (r, c) = self.shape();
        write!(f, "Var#{} ({r}×{c})", self.index)
    }
}

pub(crate) struct Node {
    pub(crate) value: DMatrix<f64>,
    /// Present when the node is a sparse matrix: `value` then holds its stored values (nnz×1).
    pub(crate) sparse: Option<Arc<Structure>>,
    pub(crate) op: Op,
    /// Whether any variable reaches this node (constants and their descendants need no gradient).
    pub(crate) needs_grad: bool,
    /// The error that poisoned this node, if any.
    pub(crate) error: Option<Error>,
}

/// The operation that produced a node: an input, or a recorded [`Operation`].
pub(crate) enum Op {
    Leaf,
    Recorded(Box<dyn Operation>),
}

impl Op {
    /// A recorded operation.
    pub(crate) fn new(op: impl Operation + 'static) -> Self {
        Op::Recorded(Box::new(op))
    }

    /// The operation's name, as errors report it.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Op::Leaf => "input",
            Op::Recorded(op) => op.name(),
        }
    }

    /// The nodes this operation reads.
    pub(crate) fn inputs(&self) -> Vec<usize> {
        match self {
            Op::Leaf => vec![],
            Op::Recorded(op) => op.inputs(),
        }
    }
}

/// The [`Operation::backward_tangent`] of an operation whose VJP does not read any value (sums,
/// index maps, the assembly map): only the upstream tangent's part, [`Hvp::linear`].
macro_rules! linear_in_values {
    () => {
        fn backward_tangent(
            &self,
            hvp: &mut Hvp<'_, '_>,
            _g: &DMatrix<f64>,
            g_dot: Option<&DMatrix<f64>>,
        ) -> Result<()> {
            hvp.linear(self, g_dot)
        }
    };
}
pub(crate) use linear_in_values;

/// One kind of tape operation, as one unit: a struct holding the input indices (and whatever
/// else) its backward pass needs, next to the `Var` method that computes its forward value and
/// records it with [`Op::new`]. Adding an operation is one such unit; nothing else lists the
/// operations (docs/ARCHITECTURE.md, "Add a tape op").
pub(crate) trait Operation: Send + Sync {
    /// The operation's name, as errors report it.
    fn name(&self) -> &'static str;
    /// The nodes it reads.
    fn inputs(&self) -> Vec<usize>;
    /// Its vector-Jacobian product: given the upstream gradient `g` of this node (same shape as
    /// its value), add each input's contribution with [`Vjp::add`].
    fn backward(&self, vjp: &mut Vjp<'_, '_>, g: &DMatrix<f64>) -> Result<()>;
    /// Its Jacobian-vector product: this node's tangent from its inputs' tangents
    /// ([`Jvp::tangent`], `None` for a zero tangent); `Ok(None)` when it is zero. Required, so an
    /// operation without forward mode does not compile.
    fn forward(&self, jvp: &Jvp<'_>) -> Result<Option<DMatrix<f64>>>;
    /// The tangent of its VJP, for Hessian-vector products (forward-over-reverse): with `g` the
    /// upstream gradient and `g_dot` its tangent (`None`: zero), add each input's gradient
    /// tangent with [`Hvp::add`]. VJPs are linear in `g`, so [`Hvp::linear`] (the VJP applied to
    /// `g_dot`) is one part; the other is the VJP's dependence on the values, along their
    /// forward tangents ([`Hvp::tangent`]). Required, like `forward`.
    fn backward_tangent(
        &self,
        hvp: &mut Hvp<'_, '_>,
        g: &DMatrix<f64>,
        g_dot: Option<&DMatrix<f64>>,
    ) -> Result<()>;
    /// [`Operation::backward`] and [`Operation::backward_tangent`] in one step, as
    /// [`Tape::hvp`]'s combined sweep runs them: an operation whose two rules share work (the
    /// solve node's adjoint solve Λ = A⁻ᵀḠ) overrides it to do that work once.
    fn backward_and_tangent(
        &self,
        vjp: &mut Vjp<'_, '_>,
        hvp: &mut Hvp<'_, '_>,
        g: &DMatrix<f64>,
        g_dot: Option<&DMatrix<f64>>,
    ) -> Result<()> {
        self.backward(vjp, g)?;
        self.backward_tangent(hvp, g, g_dot)
    }
    /// The factorization a solve node keeps (for [`Tape::solve_info`]).
    fn factor(&self) -> Option<&Arc<Factor>> {
        None
    }
    /// The factorization of its matrix input this operation keeps, with that input's node, for
    /// another operation on the same matrix node to reuse (a solve and a logdet of one matrix
    /// share one factorization).
    fn kept_factorization(&self) -> Option<(usize, &Arc<Factor>)> {
        None
    }
}

/// The factorization of matrix node `a` kept by a later operation named `by` (see
/// [`Operation::kept_factorization`]).
pub(crate) fn kept_factor_of(nodes: &[Node], a: usize, by: &str) -> Option<Arc<Factor>> {
    nodes.get(a + 1..)?.iter().find_map(|node| match &node.op {
        Op::Recorded(op) if op.name() == by => op
            .kept_factorization()
            .filter(|(input, _)| *input == a)
            .map(|(_, f)| f.clone()),
        _ => None,
    })
}

impl Drop for Tape {
    /// Hands the nodes' large buffers to the reuse pool (see [`crate::release_pooled_memory`]).
    fn drop(&mut self) {
        for node in self.nodes.get_mut().drain(..) {
            crate::pool::recycle_matrix(node.value);
        }
    }
}

impl Tape {
    /// An empty tape.
    pub fn new() -> Self {
        Self::default()
    }

    /// This tape's unique id (never reused within a process).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Number of nodes recorded so far.
    pub fn len(&self) -> usize {
        self.nodes.borrow().len()
    }

    /// Whether no node has been recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A differentiable input (a parameter) from a matrix, a vector, a slice, an array or a
    /// scalar ([`IntoValue`]): vectors and slices become n×1 columns.
    ///
    /// ```
    /// use nalgebra::{DMatrix, DVector};
    /// use sparsegrad::Tape;
    /// let tape = Tape::new();
    /// let a = tape.var(DVector::from_vec(vec![1.0, 2.0]));
    /// let b = tape.var(&[3.0, 4.0][..]);
    /// let c = tape.var(DMatrix::from_element(2, 1, 0.5));
    /// assert_eq!((a + b + c).value().unwrap().as_slice(), &[4.5, 6.5]);
    /// ```
    pub fn var(&self, value: impl IntoValue) -> Var<'_> {
        self.leaf(value.into_value(), None, true)
    }

    /// A differentiable input from a vector (stored as n×1).
    pub fn var_vector(&self, value: DVector<f64>) -> Var<'_> {
        let n = value.len();
        self.var(value.reshape_generic(nalgebra::Dyn(n), nalgebra::Dyn(1)))
    }

    /// A differentiable 1×1 input.
    pub fn var_scalar(&self, value: f64) -> Var<'_> {
        self.var(DMatrix::from_element(1, 1, value))
    }

    /// A constant input: no gradient flows to it and nothing upstream of it is differentiated.
    /// Accepts what [`Tape::var`] accepts, borrowed too (`tape.constant(&b)` copies `b` onto
    /// the tape, so fixed data needs no clone of its own per evaluation).
    pub fn constant(&self, value: impl IntoValue) -> Var<'_> {
        self.leaf(value.into_value(), None, false)
    }

    /// A constant from a vector (stored as n×1).
    pub fn constant_vector(&self, value: DVector<f64>) -> Var<'_> {
        let n = value.len();
        self.constant(value.reshape_generic(nalgebra::Dyn(n), nalgebra::Dyn(1)))
    }

    /// A constant 1×1 value.
    pub fn constant_scalar(&self, value: f64) -> Var<'_> {
        self.constant(DMatrix::from_element(1, 1, value))
    }

    fn leaf(
        &self,
        value: DMatrix<f64>,
        sparse: Option<Arc<Structure>>,
        needs_grad: bool,
    ) -> Var<'_> {
        self.push(Node {
            value,
            sparse,
            op: Op::Leaf,
            needs_grad,
            error: None,
        })
    }

    fn push(&self, node: Node) -> Var<'_> {
        let mut nodes = self.nodes.borrow_mut();
        nodes.push(node);
        Var {
            tape: self,
            index: nodes.len() - 1,
        }
    }

    /// Records the result of operation `name` on `inputs`: a poisoned node if an input belongs
    /// to another tape, is poisoned, or the computation failed; else the value with `needs_grad`
    /// inherited from the inputs.
    fn record(
        &self,
        inputs: &[Var<'_>],
        compute: impl FnOnce(&[Node]) -> Result<(DMatrix<f64>, Option<Arc<Structure>>)>,
        op: impl Operation + 'static,
    ) -> Var<'_> {
        let (result, needs_grad) = match self.check_inputs(op.name(), inputs) {
            Err(e) => (Err(e), false),
            Ok(needs_grad) => {
                let nodes = self.nodes.borrow();
                (compute(&nodes), needs_grad)
            }
        };
        match result {
            Ok((value, sparse)) => self.push(Node {
                value,
                sparse,
                op: Op::new(op),
                needs_grad,
                error: None,
            }),
            Err(e) => self.push(Node {
                value: DMatrix::zeros(0, 0),
                sparse: None,
                op: Op::Leaf,
                needs_grad: false,
                error: Some(e),
            }),
        }
    }

    /// Like [`Tape::record`] but for fallible operations that report their error immediately.
    fn record_fallible(
        &self,
        name: &'static str,
        inputs: &[Var<'_>],
        compute: impl FnOnce(&[Node]) -> Result<(DMatrix<f64>, Option<Arc<Structure>>, Op)>,
    ) -> Result<Var<'_>> {
        let needs_grad = self.check_inputs(name, inputs)?;
        let (value, sparse, op) = {
            let nodes = self.nodes.borrow();
            compute(&nodes)?
        };
        Ok(self.push(Node {
            value,
            sparse,
            op,
            needs_grad,
            error: None,
        }))
    }

    /// Every input is this tape's and none is poisoned; returns whether any needs a gradient.
    fn check_inputs(&self, name: &'static str, inputs: &[Var<'_>]) -> Result<bool> {
        for &v in inputs {
            self.same_tape(name, v)?;
        }
        let nodes = self.nodes.borrow();
        if let Some(e) = inputs.iter().find_map(|v| nodes[v.index].error.clone()) {
            return Err(e);
        }
        Ok(inputs.iter().any(|v| nodes[v.index].needs_grad))
    }

    fn same_tape(&self, op: &'static str, v: Var<'_>) -> Result<()> {
        if v.tape.id == self.id {
            Ok(())
        } else {
            Err(Error::ForeignVar {
                op,
                var: format!("Var#{}", v.index),
                var_tape: v.tape.id,
                tape: self.id,
            })
        }
    }

    /// The variable at position `index` of this tape (for code that kept only the index).
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`] when the tape has no node there.
    pub(crate) fn var_at(&self, index: usize) -> Result<Var<'_>> {
        let len = self.len();
        if index >= len {
            return Err(Error::IndexOutOfRange {
                context: "tape node",
                entry: index,
                what: "node",
                index,
                bound: len,
            });
        }
        Ok(Var { tape: self, index })
    }

    pub(crate) fn nodes(&self) -> Ref<'_, Vec<Node>> {
        self.nodes.borrow()
    }
}

/// What a dense tape input can be made from ([`Tape::var`], [`Tape::constant`],
/// [`check::gradient`](crate::check::gradient)): a `DMatrix` (as is), a `DVector`, `Vec`, slice or
/// array (an n×1 column), or an `f64` (1×1) — owned or borrowed.
pub trait IntoValue {
    /// The value as a dense matrix.
    fn into_value(self) -> DMatrix<f64>;
}

impl IntoValue for DMatrix<f64> {
    fn into_value(self) -> DMatrix<f64> {
        self
    }
}
impl IntoValue for &DMatrix<f64> {
    fn into_value(self) -> DMatrix<f64> {
        self.clone()
    }
}
impl IntoValue for DVector<f64> {
    fn into_value(self) -> DMatrix<f64> {
        let n = self.len();
        self.reshape_generic(nalgebra::Dyn(n), nalgebra::Dyn(1))
    }
}
impl IntoValue for &DVector<f64> {
    fn into_value(self) -> DMatrix<f64> {
        DMatrix::from_column_slice(self.len(), 1, self.as_slice())
    }
}
impl IntoValue for &[f64] {
    fn into_value(self) -> DMatrix<f64> {
        DMatrix::from_column_slice(self.len(), 1, self)
    }
}
impl IntoValue for Vec<f64> {
    fn into_value(self) -> DMatrix<f64> {
        let n = self.len();
        DMatrix::from_vec(n, 1, self)
    }
}
impl IntoValue for &Vec<f64> {
    fn into_value(self) -> DMatrix<f64> {
        self.as_slice().into_value()
    }
}
impl<const N: usize> IntoValue for [f64; N] {
    fn into_value(self) -> DMatrix<f64> {
        self.as_slice().into_value()
    }
}
impl<const N: usize> IntoValue for &[f64; N] {
    fn into_value(self) -> DMatrix<f64> {
        self.as_slice().into_value()
    }
}
impl IntoValue for f64 {
    fn into_value(self) -> DMatrix<f64> {
        DMatrix::from_element(1, 1, self)
    }
}

impl std::fmt::Debug for Tape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tape").field("nodes", &self.len()).finish()
    }
}

impl<'t> Var<'t> {
    /// The tape this variable lives on.
    pub fn tape(&self) -> &'t Tape {
        self.tape
    }

    /// Position of this variable on its tape.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Shape of the value (for a sparse matrix: its matrix shape, not the nnz×1 value storage).
    pub fn shape(&self) -> (usize, usize) {
        let nodes = self.tape.nodes();
        let node = &nodes[self.index];
        match &node.sparse {
            Some(s) => (s.nrows(), s.ncols()),
            None => node.value.shape(),
        }
    }

    /// Whether this variable is a sparse matrix.
    pub fn is_sparse(&self) -> bool {
        self.tape.nodes()[self.index].sparse.is_some()
    }

    /// The structure of a sparse variable.
    pub fn structure(&self) -> Option<Arc<Structure>> {
        self.tape.nodes()[self.index].sparse.clone()
    }

    /// A copy of the value (for a sparse matrix: its stored values as an nnz×1 column).
    ///
    /// # Errors
    /// The error that poisoned this variable, if an operation producing it failed.
    pub fn value(&self) -> Result<DMatrix<f64>> {
        self.with_value(|v| v.clone())
    }

    /// The value of a 1×1 variable.
    ///
    /// # Errors
    /// [`Error::NotScalar`] for a non-scalar value, or the error that poisoned this variable.
    pub fn scalar(&self) -> Result<f64> {
        self.with_value(|v| v.clone()).and_then(|v| {
            if v.shape() == (1, 1) {
                Ok(v[(0, 0)])
            } else {
                Err(Error::NotScalar {
                    rows: v.nrows(),
                    cols: v.ncols(),
                })
            }
        })
    }

    /// Calls `f` with a reference to the value, without copying it.
    ///
    /// # Errors
    /// The error that poisoned this variable.
    pub fn with_value<R>(&self, f: impl FnOnce(&DMatrix<f64>) -> R) -> Result<R> {
        let nodes = self.tape.nodes();
        let node = &nodes[self.index];
        match &node.error {
            Some(e) => Err(e.clone()),
            None => Ok(f(&node.value)),
        }
    }

    /// The error that poisoned this variable, if any.
    pub fn error(&self) -> Option<Error> {
        self.tape.nodes()[self.index].error.clone()
    }
}
