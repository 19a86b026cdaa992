//! Reductions and index operations: sum, dot, gather/scatter-add of rows, column slicing and
//! concatenation, and the views between a sparse matrix and its stored values.

use std::sync::Arc;

use nalgebra::DMatrix;

use super::{linear_in_values, Hvp, Jvp, Operation, Tape, Var, Vjp};
use crate::error::{Error, Result};
use crate::sparse::Structure;

fn check_indices(context: &'static str, index: &[usize], bound: usize) -> Result<()> {
    match index.iter().position(|&i| i >= bound) {
        None => Ok(()),
        Some(e) => Err(Error::IndexOutOfRange {
            context,
            entry: e,
            what: "index",
            index: index[e],
            bound,
        }),
    }
}

impl<'t> Var<'t> {
    /// Σ of all entries (of the stored values, for a sparse matrix), as a 1×1 value.
    pub fn sum(self) -> Var<'t> {
        let i = self.index;
        self.tape.record(
            &[self],
            |nodes| Ok((DMatrix::from_element(1, 1, nodes[i].value.sum()), None)),
            Sum { x: i },
        )
    }

    /// The mean of all entries (of the stored values, for a sparse matrix), as a 1×1 value:
    /// Σ x / (number of entries).
    ///
    /// ```
    /// use sparsegrad::Tape;
    /// let tape = Tape::new();
    /// let x = tape.var(&[1.0, 2.0, 6.0][..]);
    /// let m = x.mean();
    /// assert_eq!(m.scalar().unwrap(), 3.0);
    /// let g = tape.backward(m).unwrap();
    /// assert_eq!(g.wrt(x).as_slice(), &[1.0 / 3.0; 3]);
    /// ```
    pub fn mean(self) -> Var<'t> {
        let len = self.tape.nodes()[self.index].value.len().max(1);
        self.sum().scale(1.0 / len as f64)
    }

    /// ‖x‖²_F = Σ x² as a 1×1 value, in one node (no n×k temporary as in `x.square().sum()`).
    pub fn sum_squares(self) -> Var<'t> {
        let i = self.index;
        self.tape.record(
            &[self],
            |nodes| {
                Ok((
                    DMatrix::from_element(1, 1, nodes[i].value.norm_squared()),
                    None,
                ))
            },
            SumSquares { x: i },
        )
    }

    /// Softmax of each column, computed stably (max shifted out): s_ic = e^{x_ic} / Σ_j e^{x_jc}.
    /// On a sparse matrix it acts on the stored values (a dense nnz×1 result). A material budget
    /// V·softmax(φ) keeps Σ shares = V for any design φ.
    ///
    /// ```
    /// use sparsegrad::Tape;
    /// let tape = Tape::new();
    /// let phi = tape.var(&[0.0, 1000.0, 0.0][..]); // exp(1000) alone would overflow
    /// let s = phi.softmax().value().unwrap();
    /// assert!((s[1] - 1.0).abs() < 1e-15 && s[0] < 1e-300);
    /// ```
    ///
    /// A matrix without rows poisons the result with [`Error::ShapeMismatch`].
    pub fn softmax(self) -> Var<'t> {
        let i = self.index;
        self.tape.record(
            &[self],
            |nodes| {
                let x = &nodes[i].value;
                non_empty_columns("softmax", x)?;
                let mut s = x.clone();
                for mut col in s.column_iter_mut() {
                    let m = col.max();
                    col.apply(|v| *v = (*v - m).exp());
                    let total = col.sum();
                    col /= total;
                }
                Ok((s, None))
            },
            Softmax { x: i },
        )
    }

    /// log Σ_j e^{x_jc} of each column (1×k; 1×1 for a vector), computed stably: the smooth
    /// maximum. Its gradient is the column's softmax.
    ///
    /// A matrix without rows poisons the result with [`Error::ShapeMismatch`].
    pub fn logsumexp(self) -> Var<'t> {
        let i = self.index;
        self.tape.record(
            &[self],
            |nodes| {
                let x = &nodes[i].value;
                non_empty_columns("logsumexp", x)?;
                let y = DMatrix::from_iterator(
                    1,
                    x.ncols(),
                    x.column_iter().map(|col| {
                        let m = col.max();
                        if m.is_infinite() {
                            return m;
                        }
                        m + col.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
                    }),
                );
                Ok((y, None))
            },
            LogSumExp { x: i },
        )
    }

    /// ⟨a, b⟩ = Σ a ⊙ b (Frobenius inner product) as a 1×1 value. Shapes must match.
    pub fn dot(self, other: Var<'t>) -> Var<'t> {
        let (i, j) = (self.index, other.index);
        self.tape.record(
            &[self, other],
            |nodes| {
                let (a, b) = (&nodes[i].value, &nodes[j].value);
                if a.shape() != b.shape() {
                    return Err(Error::ShapeMismatch {
                        op: "dot",
                        left: a.shape(),
                        right: b.shape(),
                    });
                }
                Ok((DMatrix::from_element(1, 1, a.dot(b)), None))
            },
            Dot { a: i, b: j },
        )
    }

    /// Rows `index[r]` of `self`, in order: `out[r, c] = self[index[r], c]`. Indices may repeat.
    ///
    /// An index out of range poisons the result with [`Error::IndexOutOfRange`].
    pub fn gather(self, index: &[usize]) -> Var<'t> {
        let i = self.index;
        let index: Arc<[usize]> = index.into();
        let idx = index.clone();
        self.tape.record(
            &[self],
            move |nodes| {
                let x = &nodes[i].value;
                check_indices("gather", &idx, x.nrows())?;
                Ok((gather_rows(x, &idx), None))
            },
            Gather { x: i, index },
        )
    }

    /// A `len`-row matrix with the rows of `self` added at `index`: `out[index[r], c] += self[r, c]`.
    ///
    /// The adjoint of [`Var::gather`]. `index.len()` must equal the number of rows of `self`.
    pub fn scatter_add(self, index: &[usize], len: usize) -> Var<'t> {
        let i = self.index;
        let index: Arc<[usize]> = index.into();
        let idx = index.clone();
        self.tape.record(
            &[self],
            move |nodes| {
                let x = &nodes[i].value;
                if idx.len() != x.nrows() {
                    return Err(Error::ShapeMismatch {
                        op: "scatter_add",
                        left: x.shape(),
                        right: (idx.len(), x.ncols()),
                    });
                }
                check_indices("scatter_add", &idx, len)?;
                let mut out = crate::error::try_zeros(len, x.ncols())?;
                scatter_rows_into(x, &idx, &mut out);
                Ok((out, None))
            },
            ScatterAdd { x: i, index },
        )
    }

    /// Columns `start .. start + count`.
    ///
    /// A range past the last column (or one whose end overflows) poisons the result with
    /// [`Error::IndexOutOfRange`].
    pub fn columns(self, start: usize, count: usize) -> Var<'t> {
        let i = self.index;
        self.tape.record(
            &[self],
            |nodes| {
                let x = &nodes[i].value;
                let end = start.saturating_add(count);
                if end > x.ncols() {
                    return Err(Error::IndexOutOfRange {
                        context: "column slice",
                        entry: 0,
                        what: "end column (start + count, saturated)",
                        index: end,
                        bound: x.ncols() + 1,
                    });
                }
                Ok((x.columns(start, count).into_owned(), None))
            },
            ColumnSlice { x: i, start },
        )
    }

    /// The stored values of a sparse matrix as a dense nnz×1 column (for a dense value: itself).
    pub fn values(self) -> Var<'t> {
        let i = self.index;
        self.tape.record(
            &[self],
            |nodes| Ok((nodes[i].value.clone(), None)),
            Identity {
                x: i,
                name: "values",
            },
        )
    }
}

impl Tape {
    /// Concatenates columns: [v₀ v₁ …]; all parts need the same number of rows.
    pub fn concat_columns<'t>(&'t self, parts: &[Var<'t>]) -> Var<'t> {
        let idx: Vec<usize> = parts.iter().map(|v| v.index).collect();
        self.record(
            parts,
            |nodes| {
                let rows = idx.first().map_or(0, |&i| nodes[i].value.nrows());
                let mut cols = 0;
                for &i in &idx {
                    let s = nodes[i].value.shape();
                    if s.0 != rows {
                        return Err(Error::ShapeMismatch {
                            op: "concat_columns",
                            left: (rows, cols),
                            right: s,
                        });
                    }
                    cols += s.1;
                }
                let mut out = crate::error::try_zeros(rows, cols)?;
                let mut at = 0;
                for &i in &idx {
                    let v = &nodes[i].value;
                    out.columns_mut(at, v.ncols()).copy_from(v);
                    at += v.ncols();
                }
                Ok((out, None))
            },
            ConcatColumns { parts: idx.clone() },
        )
    }

    /// Views an nnz×1 dense variable as the stored values of a sparse matrix with `structure`.
    /// Gradients flow through unchanged.
    pub fn with_structure<'t>(&'t self, values: Var<'t>, structure: &Arc<Structure>) -> Var<'t> {
        let i = values.index;
        let s = structure.clone();
        self.record(
            &[values],
            move |nodes| {
                let v = &nodes[i].value;
                if v.shape() != (s.nnz(), 1) {
                    return Err(Error::ShapeMismatch {
                        op: "with_structure",
                        left: v.shape(),
                        right: (s.nnz(), 1),
                    });
                }
                Ok((v.clone(), Some(s)))
            },
            Identity {
                x: i,
                name: "with_structure",
            },
        )
    }
}

fn non_empty_columns(op: &'static str, x: &DMatrix<f64>) -> Result<()> {
    if x.nrows() == 0 {
        return Err(Error::ShapeMismatch {
            op,
            left: x.shape(),
            right: (1, x.ncols()),
        });
    }
    Ok(())
}

/// The softmax of each column of `x` given its logsumexp `y` (1×k): s_ic = e^{x_ic − y_c}.
fn softmax_from_logsumexp(x: &DMatrix<f64>, y: &DMatrix<f64>) -> DMatrix<f64> {
    DMatrix::from_fn(x.nrows(), x.ncols(), |r, c| (x[(r, c)] - y[c]).exp())
}

/// out[index[r], c] += x[r, c] into a fresh `len`-row matrix.
/// J·m for s = softmax(x) per column (J symmetric, so also mᵀJ): s ⊙ m − s ⟨s, m⟩.
fn softmax_jacobian_times(s: &DMatrix<f64>, m: &DMatrix<f64>) -> DMatrix<f64> {
    let mut out = s.component_mul(m);
    for (mut col, sc) in out.column_iter_mut().zip(s.column_iter()) {
        let inner = col.sum();
        col -= sc * inner;
    }
    out
}

/// x[index, :].
fn gather_rows(x: &DMatrix<f64>, index: &[usize]) -> DMatrix<f64> {
    DMatrix::from_fn(index.len(), x.ncols(), |r, c| x[(index[r], c)])
}

fn scatter_rows(x: &DMatrix<f64>, index: &[usize], len: usize) -> DMatrix<f64> {
    let mut out = DMatrix::zeros(len, x.ncols());
    scatter_rows_into(x, index, &mut out);
    out
}

/// out[index[r], c] += x[r, c].
fn scatter_rows_into(x: &DMatrix<f64>, index: &[usize], out: &mut DMatrix<f64>) {
    for c in 0..x.ncols() {
        for (r, &t) in index.iter().enumerate() {
            out[(t, c)] += x[(r, c)];
        }
    }
}

// The operations' backward rules (each next to nothing else: the forwards are the methods above).

/// The value itself (`values`, `with_structure`): x̄ = ȳ.
struct Identity {
    x: usize,
    name: &'static str,
}

impl Operation for Identity {
    fn name(&self) -> &'static str {
        self.name
    }
    fn inputs(&self) -> Vec<usize> {
        vec![self.x]
    }
    fn backward(&self, vjp: &mut Vjp<'_, '_>, g: &DMatrix<f64>) -> Result<()> {
        vjp.add(self.x, g.clone())
    }
    fn forward(&self, jvp: &Jvp<'_>) -> Result<Option<DMatrix<f64>>> {
        Ok(jvp.tangent(self.x).cloned())
    }
    linear_in_values!();
}

/// y = Σ x: x̄ = ȳ everywhere.
struct Sum {
    x: usize,
}

impl Operation for Sum {
    fn name(&self) -> &'static str {
        "sum"
    }
    fn inputs(&self) -> Vec<usize> {
        vec![self.x]
    }
    fn backward(&self, vjp: &mut Vjp<'_, '_>, g: &DMatrix<f64>) -> Result<()> {
        let (r, c) = vjp.nodes()[self.x].value.shape();
        vjp.add(self.x, DMatrix::from_element(r, c, g[0]))
    }
    fn forward(&self, jvp: &Jvp<'_>) -> Result<Option<DMatrix<f64>>> {
        Ok(jvp
            .tangent(self.x)
            .map(|t| DMatrix::from_element(1, 1, t.sum())))
    }
    linear_in_values!();
}

/// y = ‖x‖²_F: x̄ = 2ȳx.
struct SumSquares {
    x: usize,
}

impl Operation for SumSquares {
    fn name(&self) -> &'static str {
        "sum_squares"
    }
    fn inputs(&self) -> Vec<usize> {
        vec![self.x]
    }
    fn backward(&self, vjp: &mut Vjp<'_, '_>, g: &DMatrix<f64>) -> Result<()> {
        let mut gx = crate::pool::matrix_copy(&vjp.nodes()[self.x].value);
        gx *= 2.0 * g[0];
        vjp.add(self.x, gx)
    }
    fn forward(&self, jvp: &Jvp<'_>) -> Result<Option<DMatrix<f64>>> {
        let x = &jvp.nodes()[self.x].value;
        Ok(jvp
            .tangent(self.x)
            .map(|t| DMatrix::from_element(1, 1, 2.0 * x.dot(t))))
    }
    /// x̄ = 2ḡx: its tangent adds 2ḡẋ.
    fn backward_tangent(
        &self,
        hvp: &mut Hvp<'_, '_>,
        g: &DMatrix<f64>,
        g_dot: Option<&DMatrix<f64>>,
    ) -> Result<()> {
        hvp.linear(self, g_dot)?;
        if let Some(t) = hvp.tangent(self.x) {
            let c = t * (2.0 * g[0]);
            hvp.add(self.x, c)?;
        }
        Ok(())
    }
}

/// s = softmax(x) per column: x̄_ic = s_ic (ḡ_ic − Σ_j ḡ_jc s_jc).
struct Softmax {
    x: usize,
}

impl Operation for Softmax {
    fn name(&self) -> &'static str {
        "softmax"
    }
    fn inputs(&self) -> Vec<usize> {
        vec![self.x]
    }
    fn backward(&self, vjp: &mut Vjp<'_, '_>, g: &DMatrix<f64>) -> Result<()> {
        vjp.add(self.x, softmax_jacobian_times(vjp.value(), g))
    }
    /// ṡ = s ⊙ (ẋ − Σ_j s_j ẋ_j) per column.
    fn forward(&self, jvp: &Jvp<'_>) -> Result<Option<DMatrix<f64>>> {
        Ok(jvp
            .tangent(self.x)
            .map(|t| softmax_jacobian_times(jvp.value(), t)))
    }
    /// x̄ = s ⊙ (ḡ − ⟨ḡ, s⟩): with ḡ fixed its tangent is ṡ ⊙ (ḡ − ⟨ḡ, s⟩) − s ⟨ḡ, ṡ⟩.
    fn backward_tangent(
        &self,
        hvp: &mut Hvp<'_, '_>,
        g: &DMatrix<f64>,
        g_dot: Option<&DMatrix<f64>>,
    ) -> Result<()> {
        hvp.linear(self, g_dot)?;
        let Some(sd) = hvp.own_tangent() else {
            return Ok(());
        };
        let s = hvp.value();
        let mut c = DMatrix::zeros(s.nrows(), s.ncols());
        for j in 0..s.ncols() {
            let (gs, gsd) = (
                g.column(j).dot(&s.column(j)),
                g.column(j).dot(&sd.column(j)),
            );
            for i in 0..s.nrows() {
                c[(i, j)] = sd[(i, j)] * (g[(i, j)] - gs) - s[(i, j)] * gsd;
            }
        }
        hvp.add(self.x, c)
    }
}

/// y_c = log Σ_j e^{x_jc}: x̄_ic = ḡ_c softmax(x)_ic.
struct LogSumExp {
    x: usize,
}

impl Operation for LogSumExp {
    fn name(&self) -> &'static str {
        "logsumexp"
    }
    fn inputs(&self) -> Vec<usize> {
        vec![self.x]
    }
    fn backward(&self, vjp: &mut Vjp<'_, '_>, g: &DMatrix<f64>) -> Result<()> {
        let mut gx = softmax_from_logsumexp(&vjp.nodes()[self.x].value, vjp.value());
        for (mut col, &gc) in gx.column_iter_mut().zip(g.iter()) {
            col *= gc;
        }
        vjp.add(self.x, gx)
    }
    /// ẏ_c = Σ_j softmax(x)_jc ẋ_jc.
    fn forward(&self, jvp: &Jvp<'_>) -> Result<Option<DMatrix<f64>>> {
        let Some(t) = jvp.tangent(self.x) else {
            return Ok(None);
        };
        let s = softmax_from_logsumexp(&jvp.nodes()[self.x].value, jvp.value());
        let (r, c) = jvp.value().shape();
        Ok(Some(DMatrix::from_fn(r, c, |_, col| {
            s.column(col).dot(&t.column(col))
        })))
    }
    /// x̄ = ḡ σ(x): its tangent adds ḡ σ̇, σ̇ = σ ⊙ (ẋ − ⟨σ, ẋ⟩) per column.
    fn backward_tangent(
        &self,
        hvp: &mut Hvp<'_, '_>,
        g: &DMatrix<f64>,
        g_dot: Option<&DMatrix<f64>>,
    ) -> Result<()> {
        hvp.linear(self, g_dot)?;
        let Some(t) = hvp.tangent(self.x) else {
            return Ok(());
        };
        let s = softmax_from_logsumexp(&hvp.nodes()[self.x].value, hvp.value());
        let mut c = softmax_jacobian_times(&s, t);
        for (mut col, &gc) in c.column_iter_mut().zip(g.iter()) {
            col *= gc;
        }
        hvp.add(self.x, c)
    }
}

/// y = ⟨a, b⟩: ā = ȳ b, b̄ = ȳ a.
struct Dot {
    a: usize,
    b: usize,
}

impl Operation for Dot {
    fn name(&self) -> &'static str {
        "dot"
    }
    fn inputs(&self) -> Vec<usize> {
        vec![self.a, self.b]
    }
    fn backward(&self, vjp: &mut Vjp<'_, '_>, g: &DMatrix<f64>) -> Result<()> {
        let nodes = vjp.nodes();
        vjp.add(self.a, &nodes[self.b].value * g[0])?;
        vjp.add(self.b, &nodes[self.a].value * g[0])
    }
    fn forward(&self, jvp: &Jvp<'_>) -> Result<Option<DMatrix<f64>>> {
        let nodes = jvp.nodes();
        let mut d = 0.0;
        if let Some(ta) = jvp.tangent(self.a) {
            d += ta.dot(&nodes[self.b].value);
        }
        if let Some(tb) = jvp.tangent(self.b) {
            d += nodes[self.a].value.dot(tb);
        }
        Ok(Some(DMatrix::from_element(1, 1, d)))
    }
    /// ā = ḡb, b̄ = ḡa: their tangents add ḡḃ and ḡȧ.
    fn backward_tangent(
        &self,
        hvp: &mut Hvp<'_, '_>,
        g: &DMatrix<f64>,
        g_dot: Option<&DMatrix<f64>>,
    ) -> Result<()> {
        hvp.linear(self, g_dot)?;
        if let Some(tb) = hvp.tangent(self.b) {
            let c = tb * g[0];
            hvp.add(self.a, c)?;
        }
        if let Some(ta) = hvp.tangent(self.a) {
            let c = ta * g[0];
            hvp.add(self.b, c)?;
        }
        Ok(())
    }
}

/// y = x[index, :]: x̄ = scatter-add of ȳ at `index`.
struct Gather {
    x: usize,
    index: Arc<[usize]>,
}

impl Operation for Gather {
    fn name(&self) -> &'static str {
        "gather"
    }
    fn inputs(&self) -> Vec<usize> {
        vec![self.x]
    }
    fn backward(&self, vjp: &mut Vjp<'_, '_>, g: &DMatrix<f64>) -> Result<()> {
        let rows = vjp.nodes()[self.x].value.nrows();
        vjp.add(self.x, scatter_rows(g, &self.index, rows))
    }
    fn forward(&self, jvp: &Jvp<'_>) -> Result<Option<DMatrix<f64>>> {
        let index = &self.index;
        Ok(jvp.tangent(self.x).map(|t| gather_rows(t, index)))
    }
    linear_in_values!();
}

/// y[index[r], :] += x[r, :]: x̄ = ȳ[index, :].
struct ScatterAdd {
    x: usize,
    index: Arc<[usize]>,
}

impl Operation for ScatterAdd {
    fn name(&self) -> &'static str {
        "scatter_add"
    }
    fn inputs(&self) -> Vec<usize> {
        vec![self.x]
    }
    fn backward(&self, vjp: &mut Vjp<'_, '_>, g: &DMatrix<f64>) -> Result<()> {
        let index = &self.index;
        vjp.add(self.x, gather_rows(g, index))
    }
    fn forward(&self, jvp: &Jvp<'_>) -> Result<Option<DMatrix<f64>>> {
        let rows = jvp.value().nrows();
        Ok(jvp
            .tangent(self.x)
            .map(|t| scatter_rows(t, &self.index, rows)))
    }
    linear_in_values!();
}

/// y = x[:, start .. start + k]: x̄ = ȳ in those columns, 0 elsewhere.
struct ColumnSlice {
    x: usize,
    start: usize,
}

impl Operation for ColumnSlice {
    fn name(&self) -> &'static str {
        "columns"
    }
    fn inputs(&self) -> Vec<usize> {
        vec![self.x]
    }
    fn backward(&self, vjp: &mut Vjp<'_, '_>, g: &DMatrix<f64>) -> Result<()> {
        let (r, c) = vjp.nodes()[self.x].value.shape();
        let mut gx = DMatrix::zeros(r, c);
        gx.columns_mut(self.start, g.ncols()).copy_from(g);
        vjp.add(self.x, gx)
    }
    fn forward(&self, jvp: &Jvp<'_>) -> Result<Option<DMatrix<f64>>> {
        let k = jvp.value().ncols();
        Ok(jvp
            .tangent(self.x)
            .map(|t| t.columns(self.start, k).into_owned()))
    }
    linear_in_values!();
}

/// y = [x₀ x₁ …]: each part gets its columns of ȳ.
struct ConcatColumns {
    parts: Vec<usize>,
}

impl Operation for ConcatColumns {
    fn name(&self) -> &'static str {
        "concat_columns"
    }
    fn inputs(&self) -> Vec<usize> {
        self.parts.clone()
    }
    fn backward(&self, vjp: &mut Vjp<'_, '_>, g: &DMatrix<f64>) -> Result<()> {
        let nodes = vjp.nodes();
        let mut at = 0;
        for &p in &self.parts {
            let c = nodes[p].value.ncols();
            vjp.add(p, g.columns(at, c).into_owned())?;
            at += c;
        }
        Ok(())
    }
    fn forward(&self, jvp: &Jvp<'_>) -> Result<Option<DMatrix<f64>>> {
        let parts: Vec<DMatrix<f64>> = self
            .parts
            .iter()
            .map(|&p| jvp.tangent_or_zeros(p))
            .collect();
        let (r, c) = jvp.value().shape();
        let mut out = DMatrix::zeros(r, c);
        let mut at = 0;
        for t in &parts {
            out.columns_mut(at, t.ncols()).copy_from(t);
            at += t.ncols();
        }
        Ok(Some(out))
    }
    linear_in_values!();
}
