//! Elementwise operations with broadcasting (a 1×1 scalar, an n×1 column or a 1×k row against the
//! other operand), and their vector-Jacobian products.
//!
//! On a sparse matrix these act on the stored values and keep the structure; a binary operation
//! between two sparse matrices requires the same pattern.

use std::ops::{Add, Div, Mul, Neg, Sub};
use std::sync::Arc;

use nalgebra::DMatrix;

use super::{Hvp, Jvp, Node, Operation, Var, Vjp};
use crate::error::{Error, Result};
use crate::sparse::Structure;

/// A unary elementwise operation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnaryOp {
    /// −x
    Neg,
    /// s·x
    Scale(f64),
    /// x + s
    Offset(f64),
    /// eˣ
    Exp,
    /// ln x
    Ln,
    /// √x
    Sqrt,
    /// xᵖ
    Powf(f64),
    /// x²
    Square,
    /// 1 / (1 + e⁻ˣ)
    Sigmoid,
    /// ln(1 + eˣ), computed stably
    Softplus,
    /// sin x
    Sin,
    /// cos x
    Cos,
}

/// A binary elementwise operation. One operand may be broadcast: a 1×1 scalar, an n×1 column
/// against n×k (the same column for every column) or a 1×k row against n×k.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// a + b
    Add,
    /// a − b
    Sub,
    /// a ⊙ b
    Mul,
    /// a ⊘ b
    Div,
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

impl UnaryOp {
    pub(crate) fn name(self) -> &'static str {
        match self {
            UnaryOp::Neg => "neg",
            UnaryOp::Scale(_) => "scale",
            UnaryOp::Offset(_) => "offset",
            UnaryOp::Exp => "exp",
            UnaryOp::Ln => "ln",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Powf(_) => "powf",
            UnaryOp::Square => "square",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Softplus => "softplus",
            UnaryOp::Sin => "sin",
            UnaryOp::Cos => "cos",
        }
    }

    fn apply(self, x: f64) -> f64 {
        match self {
            UnaryOp::Neg => -x,
            UnaryOp::Scale(s) => s * x,
            UnaryOp::Offset(s) => x + s,
            UnaryOp::Exp => x.exp(),
            UnaryOp::Ln => x.ln(),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Powf(p) => x.powf(p),
            UnaryOp::Square => x * x,
            UnaryOp::Sigmoid => sigmoid(x),
            UnaryOp::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
            UnaryOp::Sin => x.sin(),
            UnaryOp::Cos => x.cos(),
        }
    }

    /// d(out)/dx given the input x and the output y.
    /// f''(x), given x and y = f(x).
    fn second_derivative(self, x: f64, y: f64) -> f64 {
        match self {
            UnaryOp::Neg | UnaryOp::Scale(_) | UnaryOp::Offset(_) => 0.0,
            UnaryOp::Exp => y,
            UnaryOp::Ln => -1.0 / (x * x),
            UnaryOp::Sqrt => -0.25 / (y * y * y),
            UnaryOp::Powf(p) => p * (p - 1.0) * x.powf(p - 2.0),
            UnaryOp::Square => 2.0,
            UnaryOp::Sigmoid => y * (1.0 - y) * (1.0 - 2.0 * y),
            UnaryOp::Softplus => {
                let s = sigmoid(x);
                s * (1.0 - s)
            }
            UnaryOp::Sin => -y,
            UnaryOp::Cos => -y,
        }
    }

    fn derivative(self, x: f64, y: f64) -> f64 {
        match self {
            UnaryOp::Neg => -1.0,
            UnaryOp::Scale(s) => s,
            UnaryOp::Offset(_) => 1.0,
            UnaryOp::Exp => y,
            UnaryOp::Ln => 1.0 / x,
            UnaryOp::Sqrt => 0.5 / y,
            UnaryOp::Powf(p) => p * x.powf(p - 1.0),
            UnaryOp::Square => 2.0 * x,
            UnaryOp::Sigmoid => y * (1.0 - y),
            UnaryOp::Softplus => sigmoid(x),
            UnaryOp::Sin => x.cos(),
            UnaryOp::Cos => -x.sin(),
        }
    }
}

impl BinaryOp {
    fn apply(self, a: f64, b: f64) -> f64 {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
        }
    }

    /// (∂out/∂a, ∂out/∂b) at (a, b).
    /// (∂²/∂a², ∂²/∂a∂b, ∂²/∂b²).
    fn second_partials(self, a: f64, b: f64) -> (f64, f64, f64) {
        match self {
            BinaryOp::Add | BinaryOp::Sub => (0.0, 0.0, 0.0),
            BinaryOp::Mul => (0.0, 1.0, 0.0),
            BinaryOp::Div => (0.0, -1.0 / (b * b), 2.0 * a / (b * b * b)),
        }
    }

    fn partials(self, a: f64, b: f64) -> (f64, f64) {
        match self {
            BinaryOp::Add => (1.0, 1.0),
            BinaryOp::Sub => (1.0, -1.0),
            BinaryOp::Mul => (b, a),
            BinaryOp::Div => (1.0 / b, -a / (b * b)),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
        }
    }
}

/// The shape and structure of `a op b` under broadcasting ([`broadcasts_to`]).
fn broadcast(op: BinaryOp, a: &Node, b: &Node) -> Result<(usize, usize, Option<Arc<Structure>>)> {
    let (sa, sb) = (a.value.shape(), b.value.shape());
    let sparse = match (&a.sparse, &b.sparse) {
        (Some(x), Some(y)) if !x.same_pattern(y) => {
            return Err(Error::StructureMismatch {
                reason: format!("elementwise {} of two sparse matrices with different patterns", op.name()),
            })
        }
        (Some(x), _) if sb == (1, 1) || b.sparse.is_some() => Some(x.clone()),
        (_, Some(y)) if sa == (1, 1) => Some(y.clone()),
        (None, None) => None,
        _ => {
            return Err(Error::Unsupported {
                reason: format!(
                    "elementwise {} between a sparse matrix and a dense non-scalar; use .values() to work on stored values",
                    op.name()
                ),
            })
        }
    };
    if broadcasts_to(sb, sa) {
        Ok((sa.0, sa.1, sparse))
    } else if broadcasts_to(sa, sb) {
        Ok((sb.0, sb.1, sparse))
    } else {
        Err(Error::ShapeMismatch {
            op: op.name(),
            left: sa,
            right: sb,
        })
    }
}

/// Whether an operand of shape `x` broadcasts to the result shape `y`: equal, 1×1, an n×1
/// column against n×k (repeated across the columns) or a 1×k row against n×k (repeated down
/// the rows).
fn broadcasts_to(x: (usize, usize), y: (usize, usize)) -> bool {
    x == y || x == (1, 1) || (x.1 == 1 && x.0 == y.0) || (x.0 == 1 && x.1 == y.1)
}

/// The index in operand `m` of element `k` (column-major) of a result with `rows` rows, under
/// the broadcasting of [`broadcasts_to`].
#[inline]
fn source(m: &DMatrix<f64>, k: usize, rows: usize) -> usize {
    if m.len() == 1 {
        0
    } else if m.ncols() == 1 && m.nrows() == rows {
        k % rows.max(1)
    } else if m.nrows() == 1 {
        k / rows.max(1)
    } else {
        k
    }
}

/// Element `k` of a result with `rows` rows, read from the (possibly broadcast) operand `m`.
#[inline]
fn at(m: &DMatrix<f64>, k: usize, rows: usize) -> f64 {
    m[source(m, k, rows)]
}

impl<'t> Var<'t> {
    /// Applies a unary elementwise operation.
    pub fn unary(self, op: UnaryOp) -> Var<'t> {
        self.tape.record(
            &[self],
            |nodes| {
                let x = &nodes[self.index];
                Ok((x.value.map(|v| op.apply(v)), x.sparse.clone()))
            },
            Unary { op, x: self.index },
        )
    }

    /// Applies a binary elementwise operation, broadcasting a 1×1, n×1 or 1×k operand against
    /// the other's shape (see [`BinaryOp`]).
    pub fn binary(self, op: BinaryOp, other: Var<'t>) -> Var<'t> {
        let (i, j) = (self.index, other.index);
        self.tape.record(
            &[self, other],
            |nodes| {
                let (a, b) = (&nodes[i], &nodes[j]);
                // (r, c) is the broadcast shape: for a sparse result, its nnz×1 values (which
                // may be empty: a pattern without stored entries times a scalar).
                let (rows, cols, sparse) = broadcast(op, a, b)?;
                let value = DMatrix::from_fn(rows, cols, |ri, ci| {
                    let k = ci * rows + ri;
                    op.apply(at(&a.value, k, rows), at(&b.value, k, rows))
                });
                Ok((value, sparse))
            },
            Binary { op, a: i, b: j },
        )
    }

    /// −x
    #[allow(clippy::should_implement_trait)]
    pub fn neg(self) -> Var<'t> {
        self.unary(UnaryOp::Neg)
    }
    /// s·x
    pub fn scale(self, s: f64) -> Var<'t> {
        self.unary(UnaryOp::Scale(s))
    }
    /// x + s
    pub fn offset(self, s: f64) -> Var<'t> {
        self.unary(UnaryOp::Offset(s))
    }
    /// eˣ elementwise.
    pub fn exp(self) -> Var<'t> {
        self.unary(UnaryOp::Exp)
    }
    /// ln x elementwise.
    pub fn ln(self) -> Var<'t> {
        self.unary(UnaryOp::Ln)
    }
    /// √x elementwise.
    pub fn sqrt(self) -> Var<'t> {
        self.unary(UnaryOp::Sqrt)
    }
    /// xᵖ elementwise.
    pub fn powf(self, p: f64) -> Var<'t> {
        self.unary(UnaryOp::Powf(p))
    }
    /// x² elementwise.
    pub fn square(self) -> Var<'t> {
        self.unary(UnaryOp::Square)
    }
    /// The logistic function elementwise.
    pub fn sigmoid(self) -> Var<'t> {
        self.unary(UnaryOp::Sigmoid)
    }
    /// ln(1 + eˣ) elementwise, stable for large |x|.
    pub fn softplus(self) -> Var<'t> {
        self.unary(UnaryOp::Softplus)
    }
    /// sin x elementwise.
    pub fn sin(self) -> Var<'t> {
        self.unary(UnaryOp::Sin)
    }
    /// cos x elementwise.
    pub fn cos(self) -> Var<'t> {
        self.unary(UnaryOp::Cos)
    }
}

/// ∂/∂x of a unary op: x̄ = ḡ ⊙ f'(x).
/// y = op(x), elementwise: x̄ = ȳ · op'(x).
struct Unary {
    op: UnaryOp,
    x: usize,
}

impl Operation for Unary {
    fn name(&self) -> &'static str {
        self.op.name()
    }
    fn inputs(&self) -> Vec<usize> {
        vec![self.x]
    }
    fn backward(&self, vjp: &mut Vjp<'_, '_>, g: &DMatrix<f64>) -> Result<()> {
        let gx = self.times_derivative(g, &vjp.nodes()[self.x].value, vjp.value());
        vjp.add(self.x, gx)
    }
    fn forward(&self, jvp: &Jvp<'_>) -> Result<Option<DMatrix<f64>>> {
        Ok(jvp
            .tangent(self.x)
            .map(|t| self.times_derivative(t, &jvp.nodes()[self.x].value, jvp.value())))
    }
    /// x̄ = ḡ f'(x): its tangent adds ḡ f''(x) ẋ.
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
        let (x, y) = (&hvp.nodes()[self.x].value, hvp.value());
        let mut c = t.clone();
        for (k, o) in c.as_mut_slice().iter_mut().enumerate() {
            *o *= g[k] * self.op.second_derivative(x[k], y[k]);
        }
        hvp.add(self.x, c)
    }
}

impl Unary {
    /// m ⊙ f'(x) (x the input, y = f(x)): the VJP of ȳ = m and the JVP of ẋ = m alike.
    fn times_derivative(
        &self,
        m: &DMatrix<f64>,
        x: &DMatrix<f64>,
        y: &DMatrix<f64>,
    ) -> DMatrix<f64> {
        let mut out = m.clone();
        for ((o, &xv), &yv) in out
            .as_mut_slice()
            .iter_mut()
            .zip(x.as_slice())
            .zip(y.as_slice())
        {
            *o *= self.op.derivative(xv, yv);
        }
        out
    }
}

/// y = a ∘ b with broadcasting.
struct Binary {
    op: BinaryOp,
    a: usize,
    b: usize,
}

impl Operation for Binary {
    fn name(&self) -> &'static str {
        self.op.name()
    }
    fn inputs(&self) -> Vec<usize> {
        vec![self.a, self.b]
    }
    fn backward(&self, vjp: &mut Vjp<'_, '_>, g: &DMatrix<f64>) -> Result<()> {
        let nodes = vjp.nodes();
        let (ga, gb) = binary_backward(self.op, &nodes[self.a].value, &nodes[self.b].value, g);
        vjp.add(self.a, ga)?;
        vjp.add(self.b, gb)
    }
    /// ẏ_k = ∂₁op·ȧ_k + ∂₂op·ḃ_k, a broadcast operand's tangent broadcast alike.
    fn forward(&self, jvp: &Jvp<'_>) -> Result<Option<DMatrix<f64>>> {
        let nodes = jvp.nodes();
        let (a, b) = (&nodes[self.a].value, &nodes[self.b].value);
        let (ta, tb) = (jvp.tangent(self.a), jvp.tangent(self.b));
        let (r, c) = jvp.value().shape();
        let mut out = DMatrix::zeros(r, c);
        for k in 0..out.len() {
            let (da, db) = self.op.partials(at(a, k, r), at(b, k, r));
            let mut v = 0.0;
            if let Some(ta) = ta {
                v += da * at(ta, k, r);
            }
            if let Some(tb) = tb {
                v += db * at(tb, k, r);
            }
            out[k] = v;
        }
        Ok(Some(out))
    }
    /// ā_k = ḡ_k ∂_a op, b̄_k = ḡ_k ∂_b op: their tangents add ḡ_k times the second partials
    /// along (ȧ, ḃ), summed over the dimensions a broadcast operand repeats along.
    fn backward_tangent(
        &self,
        hvp: &mut Hvp<'_, '_>,
        g: &DMatrix<f64>,
        g_dot: Option<&DMatrix<f64>>,
    ) -> Result<()> {
        hvp.linear(self, g_dot)?;
        let nodes = hvp.nodes();
        let (a, b) = (&nodes[self.a].value, &nodes[self.b].value);
        let (ta, tb) = (hvp.tangent(self.a), hvp.tangent(self.b));
        if ta.is_none() && tb.is_none() {
            return Ok(());
        }
        let mut ca = DMatrix::zeros(a.nrows(), a.ncols());
        let mut cb = DMatrix::zeros(b.nrows(), b.ncols());
        let r = g.nrows();
        for k in 0..g.len() {
            let (aa, ab, bb) = self.op.second_partials(at(a, k, r), at(b, k, r));
            let da = ta.map_or(0.0, |t| at(t, k, r));
            let db = tb.map_or(0.0, |t| at(t, k, r));
            ca[source(a, k, r)] += g[k] * (aa * da + ab * db);
            cb[source(b, k, r)] += g[k] * (ab * da + bb * db);
        }
        hvp.add(self.a, ca)?;
        hvp.add(self.b, cb)
    }
}

/// ∂/∂a and ∂/∂b of a binary op, summed over the dimensions a broadcast operand repeats along.
fn binary_backward(
    op: BinaryOp,
    a: &DMatrix<f64>,
    b: &DMatrix<f64>,
    g: &DMatrix<f64>,
) -> (DMatrix<f64>, DMatrix<f64>) {
    let mut ga = DMatrix::zeros(a.nrows(), a.ncols());
    let mut gb = DMatrix::zeros(b.nrows(), b.ncols());
    let r = g.nrows();
    for k in 0..g.len() {
        let (da, db) = op.partials(at(a, k, r), at(b, k, r));
        ga[source(a, k, r)] += g[k] * da;
        gb[source(b, k, r)] += g[k] * db;
    }
    (ga, gb)
}

macro_rules! var_operator {
    ($trait:ident, $method:ident, $op:expr, $scalar:expr) => {
        impl<'t> $trait<Var<'t>> for Var<'t> {
            type Output = Var<'t>;
            fn $method(self, rhs: Var<'t>) -> Var<'t> {
                self.binary($op, rhs)
            }
        }
        impl<'t> $trait<f64> for Var<'t> {
            type Output = Var<'t>;
            fn $method(self, rhs: f64) -> Var<'t> {
                #[allow(clippy::redundant_closure_call)]
                ($scalar)(self, rhs)
            }
        }
        impl<'t> $trait<Var<'t>> for f64 {
            type Output = Var<'t>;
            fn $method(self, rhs: Var<'t>) -> Var<'t> {
                rhs.tape.constant_scalar(self).binary($op, rhs)
            }
        }
    };
}

var_operator!(Add, add, BinaryOp::Add, |v: Var<'t>, s: f64| v.offset(s));
var_operator!(Sub, sub, BinaryOp::Sub, |v: Var<'t>, s: f64| v.offset(-s));
var_operator!(Mul, mul, BinaryOp::Mul, |v: Var<'t>, s: f64| v.scale(s));
var_operator!(Div, div, BinaryOp::Div, |v: Var<'t>, s: f64| v
    .scale(1.0 / s));

impl<'t> Neg for Var<'t> {
    type Output = Var<'t>;
    fn neg(self) -> Var<'t> {
        self.unary(UnaryOp::Neg)
    }
}
