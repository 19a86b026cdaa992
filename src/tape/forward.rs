//! Forward mode: [`Tape::jvp`] pushes tangents of chosen variables through the recorded
//! operations in recording order (a topological order), each operation applying its own
//! [`Operation::forward`] rule next to its VJP. The solve node's rule, Ẋ = A⁻¹(Ḃ − Ȧ X), reuses
//! the factorization the forward pass kept (`solve::node::tangent`): no new factorization.

use nalgebra::DMatrix;

use super::{Node, Op, Tape, Var};
use crate::error::{Error, Result};

/// What an operation's forward rule reads: the nodes' values and the tangents so far.
pub(crate) struct Jvp<'n> {
    nodes: &'n [Node],
    tangents: &'n [Option<DMatrix<f64>>],
    node: usize,
}

impl<'n> Jvp<'n> {
    /// Every node of the tape.
    pub(crate) fn nodes(&self) -> &'n [Node] {
        self.nodes
    }

    /// This operation's own (forward) value.
    pub(crate) fn value(&self) -> &'n DMatrix<f64> {
        &self.nodes[self.node].value
    }

    /// The tangent of node `i` (its value's shape), `None` when it is zero.
    pub(crate) fn tangent(&self, i: usize) -> Option<&'n DMatrix<f64>> {
        self.tangents[i].as_ref()
    }

    /// The tangent of node `i`, zeros when it has none.
    pub(crate) fn tangent_or_zeros(&self, i: usize) -> DMatrix<f64> {
        match self.tangent(i) {
            Some(t) => t.clone(),
            None => {
                let (r, c) = self.nodes[i].value.shape();
                DMatrix::zeros(r, c)
            }
        }
    }
}

impl Tape {
    /// The tangents of nodes `0..last` along `seeds` (checked: same tape, shapes, finite).
    pub(crate) fn forward_tangents<'t>(
        &'t self,
        nodes: &[Node],
        seeds: &[(Var<'t>, DMatrix<f64>)],
        last: usize,
    ) -> Result<Vec<Option<DMatrix<f64>>>> {
        let mut tangents: Vec<Option<DMatrix<f64>>> = vec![None; nodes.len()];
        for (v, t) in seeds {
            self.same_tape("jvp", *v)?;
            let value = &nodes[v.index].value;
            if t.shape() != value.shape() {
                return Err(Error::ShapeMismatch {
                    op: "jvp (tangent vs variable)",
                    left: t.shape(),
                    right: value.shape(),
                });
            }
            if let Some(k) = t.iter().position(|x| !x.is_finite()) {
                return Err(Error::NonFinite {
                    context: "jvp tangent",
                    row: k % t.nrows().max(1),
                    col: k / t.nrows().max(1),
                    value: t[k],
                });
            }
            let slot =
                tangents[v.index].get_or_insert_with(|| DMatrix::zeros(t.nrows(), t.ncols()));
            *slot += t;
        }
        let first = seeds.iter().map(|(v, _)| v.index).min().unwrap_or(last);
        for i in first..last {
            let Op::Recorded(op) = &nodes[i].op else {
                continue;
            };
            if !op.inputs().iter().any(|&j| tangents[j].is_some()) {
                continue;
            }
            let jvp = Jvp {
                nodes,
                tangents: &tangents,
                node: i,
            };
            let tangent = op.forward(&jvp)?;
            if let Some(t) = &tangent {
                if let Some(k) = t.iter().position(|x| !x.is_finite()) {
                    return Err(Error::NonFiniteOperation {
                        pass: "tangent",
                        op: op.name(),
                        node: i,
                        row: k % t.nrows().max(1),
                        col: k / t.nrows().max(1),
                        value: t[k],
                    });
                }
            }
            tangents[i] = tangent;
        }
        Ok(tangents)
    }

    /// Forward mode: the directional derivatives of `outputs` along the tangents `seeds`
    /// (d output = Σ ∂output/∂v · ṽ over the seeded variables), one matrix per output, in the
    /// outputs' shapes (a sparse output's tangent is its stored values' tangent, nnz × 1).
    ///
    /// Every recorded operation has a forward rule; the solve node's reuses its kept
    /// factorization (one extra solve per node, no factorization). Several tangent directions at
    /// once: call it once per direction (each costs about one forward pass of the solves).
    ///
    /// ```
    /// use nalgebra::DMatrix;
    /// use sparsegrad::{Assembly, Solver, Tape};
    /// // A(p) = diag(p0, p1), x = A⁻¹ 1: ẋ along ṗ = (1, 0) is (−1/p0², 0).
    /// let asm = Assembly::builder(2, 2, 2).entry(0, 0, 0, 1.0).entry(1, 1, 1, 1.0).build()?;
    /// let tape = Tape::new();
    /// let p = tape.var(DMatrix::from_column_slice(2, 1, &[2.0, 4.0]));
    /// let a = tape.assemble(&asm, p)?;
    /// let x = tape.solve(a, tape.constant(DMatrix::from_element(2, 1, 1.0)), &Solver::lu())?;
    /// let dx = tape.jvp(&[(p, DMatrix::from_column_slice(2, 1, &[1.0, 0.0]))], &[x])?;
    /// assert!((dx[0][0] + 0.25).abs() < 1e-15 && dx[0][1] == 0.0);
    /// # Ok::<(), sparsegrad::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ForeignVar`] for a variable of another tape; [`Error::ShapeMismatch`] for a seed
    /// whose shape is not its variable's; [`Error::NonFinite`] for a non-finite seed; the error
    /// that poisoned an output; an error from a tangent solve; [`Error::NonFiniteOperation`]
    /// naming the first operation whose tangent became NaN or ±∞.
    pub fn jvp<'t>(
        &'t self,
        seeds: &[(Var<'t>, DMatrix<f64>)],
        outputs: &[Var<'t>],
    ) -> Result<Vec<DMatrix<f64>>> {
        let nodes = self.nodes();
        let mut last = 0;
        for o in outputs {
            self.same_tape("jvp", *o)?;
            if let Some(e) = &nodes[o.index].error {
                return Err(e.clone());
            }
            last = last.max(o.index + 1);
        }
        let tangents = self.forward_tangents(&nodes, seeds, last)?;
        Ok(outputs
            .iter()
            .map(|o| {
                tangents[o.index].clone().unwrap_or_else(|| {
                    let (r, c) = nodes[o.index].value.shape();
                    DMatrix::zeros(r, c)
                })
            })
            .collect())
    }
}
