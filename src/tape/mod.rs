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

mod elementwise;
mod gradients;
mod sparse_ops;
mod structural;

use std::cell::{Ref, RefCell};
use std::sync::Arc;

use nalgebra::{DMatrix, DVector};

use crate::error::{Error, Result};
use crate::solve::Factor;
use crate::sparse::{Assembly, Structure};

pub use elementwise::{BinaryOp, UnaryOp};
pub use gradients::Gradients;

/// An append-only reverse-mode autodiff tape. Create one per evaluation of the model.
#[derive(Default)]
pub struct Tape {
    nodes: RefCell<Vec<Node>>,
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

/// The operation that produced a node, with the input indices its backward pass needs.
pub(crate) enum Op {
    Leaf,
    Identity(usize),
    Unary(UnaryOp, usize),
    Binary(BinaryOp, usize, usize),
    Sum(usize),
    SumSquares(usize),
    Dot(usize, usize),
    Gather(usize, Arc<[usize]>),
    ScatterAdd(usize, Arc<[usize]>),
    ColumnSlice(usize, usize),
    ConcatColumns(Vec<usize>),
    Assemble(Assembly, usize),
    SpMul(usize, usize),
    Solve {
        a: usize,
        b: usize,
        factor: Arc<Factor>,
    },
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

    /// Number of nodes recorded so far.
    pub fn len(&self) -> usize {
        self.nodes.borrow().len()
    }

    /// Whether no node has been recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A differentiable input (a parameter). Vectors are n×1; use [`Tape::var_vector`] for a `DVector`.
    pub fn var(&self, value: DMatrix<f64>) -> Var<'_> {
        self.leaf(value, None, true)
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
    pub fn constant(&self, value: DMatrix<f64>) -> Var<'_> {
        self.leaf(value, None, false)
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

    /// Records the result of an operation on `inputs`: a poisoned node if an input is poisoned or
    /// the computation failed, else the value with `needs_grad` inherited from the inputs.
    fn record(
        &self,
        inputs: &[usize],
        compute: impl FnOnce(&[Node]) -> Result<(DMatrix<f64>, Option<Arc<Structure>>)>,
        op: Op,
    ) -> Var<'_> {
        let (result, needs_grad) = {
            let nodes = self.nodes.borrow();
            let poisoned = inputs.iter().find_map(|&i| nodes[i].error.clone());
            let needs_grad = inputs.iter().any(|&i| nodes[i].needs_grad);
            match poisoned {
                Some(e) => (Err(e), false),
                None => (compute(&nodes), needs_grad),
            }
        };
        match result {
            Ok((value, sparse)) => self.push(Node {
                value,
                sparse,
                op,
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
        inputs: &[usize],
        compute: impl FnOnce(&[Node]) -> Result<(DMatrix<f64>, Option<Arc<Structure>>, Op)>,
    ) -> Result<Var<'_>> {
        let (value, sparse, op, needs_grad) = {
            let nodes = self.nodes.borrow();
            if let Some(e) = inputs.iter().find_map(|&i| nodes[i].error.clone()) {
                return Err(e);
            }
            let needs_grad = inputs.iter().any(|&i| nodes[i].needs_grad);
            let (value, sparse, op) = compute(&nodes)?;
            (value, sparse, op, needs_grad)
        };
        Ok(self.push(Node {
            value,
            sparse,
            op,
            needs_grad,
            error: None,
        }))
    }

    fn same_tape(&self, v: Var<'_>) -> Result<()> {
        if std::ptr::eq(self, v.tape) {
            Ok(())
        } else {
            Err(Error::Unsupported {
                reason: format!("{v:?} belongs to a different tape"),
            })
        }
    }

    pub(crate) fn nodes(&self) -> Ref<'_, Vec<Node>> {
        self.nodes.borrow()
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
