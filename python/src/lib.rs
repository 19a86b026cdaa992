//! `sparsegrad_rs._core`: the native half of the Python package. One class, [`PyFactorization`], made
//! by [`factorize`] from a sparse matrix given as entries (row, column, value) in the caller's order:
//! it solves with A and Aᵀ on the kept factorization and returns ∂L/∂A at exactly those entries.
//! The Python modules (`sparsegrad_rs`, `sparsegrad_rs.torch`, `sparsegrad_rs.jax`) wrap it.
//!
//! Storage decision (per call, documented in the package):
//! - `symmetric=False`: A is general — LU (Aᵀ solves for adjoints).
//! - `symmetric=True`: A is symmetric — one triangle stored (the other implied) or both stored
//!   (checked equal entry by entry, `Structure::check_symmetric_values`); Cholesky (or what
//!   `method` says).
//! - `symmetric=None`: symmetric when both triangles are stored and every entry equals its mirror
//!   (the same per-entry test), general otherwise (a matrix with one triangle stored is then a
//!   triangular matrix, never silently mirrored).
//!
//! Every factorization, solve and gradient goes through the library's solve node
//! (`sparsegrad::solve::node`): the same checks as the Rust tape and the command (finite inputs,
//! the solver's residual check, a finite solution, the condition limit when one is given), so
//! Python never returns a non-finite or unverified solution. Allocations that follow from the
//! input's size are fallible (`MemoryError`, never an abort).
//!
//! Patterns are cached (a small LRU keyed by the entry coordinates and the storage decision), so a
//! loop over new values of one pattern reuses the pattern and its symbolic analysis.

mod batch;
mod ffi;
mod pattern;

use std::sync::Arc;

use nalgebra::DMatrix;
use numpy::ndarray::{Array1, Array2, ArrayView2, ShapeBuilder};
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::{PyMemoryError, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use sparsegrad::solve::node;
use sparsegrad::{Error, Factor, Method, Ordering, Precision, Solver};

use pattern::{decide, try_vec, Pattern, Storage, ASYMMETRIC, PATTERNS};

pyo3::create_exception!(
    sparsegrad_rs,
    SolveError,
    PyRuntimeError,
    "A factorization or solve failed (not positive definite, singular, ill-conditioned, ...)."
);

/// Which Python exception a library error becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// `ValueError`: bad input.
    Value,
    /// `MemoryError`: an allocation that follows from the input's size.
    Memory,
    /// `OSError`: a file.
    Io,
    /// `SolveError` (a `RuntimeError`): a failed factorization or solve.
    Solve,
}

/// The crate's errors by kind, variant by variant: bad input → `ValueError`, a file →
/// `OSError`, allocation → `MemoryError`, a failed factorization or solve → `SolveError`.
/// Variants added to the library later (it is `#[non_exhaustive]`) are `SolveError` until mapped
/// here.
pub(crate) fn error_kind(e: &Error) -> ErrorKind {
    match e {
        Error::ShapeMismatch { .. }
        | Error::IndexOutOfRange { .. }
        | Error::NonFinite { .. }
        | Error::InvalidPattern { .. }
        | Error::NotSymmetric { .. }
        | Error::InvalidArgument { .. }
        | Error::StructureMismatch { .. }
        | Error::NotScalar { .. }
        | Error::ForeignVar { .. }
        | Error::Format { .. }
        | Error::IndexOverflow { .. }
        | Error::Unsupported { .. } => ErrorKind::Value,
        Error::Io { .. } => ErrorKind::Io,
        Error::OutOfMemory { .. } => ErrorKind::Memory,
        Error::NotPositiveDefinite { .. }
        | Error::PrecisionLoss { .. }
        | Error::Singular { .. }
        | Error::IllConditioned { .. }
        | Error::UnstablePivot { .. }
        | Error::NotConverged { .. }
        | Error::Equilibrium { .. }
        | Error::Breakdown { .. }
        | Error::Preconditioner { .. }
        | Error::NonFiniteOperation { .. }
        | Error::FactorizationFailed { .. }
        | Error::Distributed { .. }
        | Error::Optimizer { .. }
        | Error::NoDevice { .. }
        | Error::Device { .. } => ErrorKind::Solve,
        _ => ErrorKind::Solve,
    }
}

/// The crate's errors as Python exceptions ([`error_kind`]).
fn to_py(e: Error) -> PyErr {
    let msg = e.to_string();
    match error_kind(&e) {
        ErrorKind::Value => PyValueError::new_err(msg),
        ErrorKind::Io => PyOSError::new_err(msg),
        ErrorKind::Memory => PyMemoryError::new_err(msg),
        ErrorKind::Solve => SolveError::new_err(msg),
    }
}

fn value_error(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}

/// The solver for `method` (checked once, by `sparsegrad::Method`'s names) on `storage`.
fn solver_for(
    method: Method,
    storage: Storage,
    condition_limit: Option<f64>,
    precision: Precision,
) -> PyResult<Solver> {
    solver_of(method, storage, condition_limit, precision).map_err(value_error)
}

/// [`solver_for`] without Python: a wrong method for the storage is the message.
pub(crate) fn solver_of(
    method: Method,
    storage: Storage,
    condition_limit: Option<f64>,
    precision: Precision,
) -> Result<Solver, String> {
    let solver = match method {
        Method::Cholesky | Method::Ldlt if !storage.symmetric() => {
            return Err(format!(
                "method '{}' needs a symmetric matrix; this one is general (pass symmetric=True if it is symmetric, or use method='lu')",
                Method::name(method)
            ))
        }
        Method::Cholesky => Solver::cholesky(),
        Method::Ldlt => Solver::ldlt(),
        Method::Lu => Solver::lu(),
        _ => Solver::auto(),
    }
    .with_ordering(Ordering::Auto)
    .with_precision(precision);
    Ok(match condition_limit {
        Some(limit) => solver.with_condition_limit(limit),
        None => solver,
    })
}

/// `precision=` as the library's [`Precision`]: "double", "mixed", "single" or "auto".
fn parse_precision(precision: &str) -> PyResult<Precision> {
    precision_of(precision).map_err(value_error)
}

/// [`parse_precision`] without Python: a bad name is the message.
pub(crate) fn precision_of(precision: &str) -> Result<Precision, String> {
    Ok(match precision {
        "double" => Precision::F64,
        "mixed" => Precision::Mixed,
        "single" => Precision::F32,
        "auto" => Precision::Auto,
        other => {
            return Err(format!(
                "precision must be \"double\", \"mixed\", \"single\" or \"auto\", got {other:?}"
            ))
        }
    })
}

/// The Python name of a precision that ran.
fn precision_name(precision: Precision) -> &'static str {
    match precision {
        Precision::F32 => "single",
        Precision::Mixed => "mixed",
        _ => "double",
    }
}

/// `method=` as the library's [`Method`] (its names, its message).
fn parse_method(method: &str) -> PyResult<Method> {
    method.parse().map_err(|e: Error| {
        value_error(match e {
            Error::InvalidArgument { reason, .. } => reason,
            other => other.to_string(),
        })
    })
}

/// A kept factorization of A with the caller's entry layout, and what is needed to check every
/// solve made with it (the solver and A's values).
#[pyclass(name = "Factorization", module = "sparsegrad_rs._core", frozen)]
struct PyFactorization {
    factor: Arc<Factor>,
    pattern: Arc<Pattern>,
    solver: Solver,
    values: Vec<f64>,
    method: String,
}

/// `b` as an n × k matrix (rows checked here for a clear message; finiteness is the solve node's
/// check).
fn rhs_from(b: &PyReadonlyArray2<'_, f64>, n: usize) -> PyResult<DMatrix<f64>> {
    let rows = b.as_array().nrows();
    if rows != n {
        return Err(value_error(format!(
            "B has {rows} rows, the matrix is {n} × {n}"
        )));
    }
    dense_from(b).map_err(to_py)
}

/// An n × k matrix from a 2-D array (any strides), fallibly allocated.
fn dense_from(a: &PyReadonlyArray2<'_, f64>) -> Result<DMatrix<f64>, Error> {
    dense_of(a.as_array())
}

/// An n × k matrix from a 2-D view (any strides), fallibly allocated.
fn dense_of(view: ArrayView2<'_, f64>) -> Result<DMatrix<f64>, Error> {
    let (r, c) = view.dim();
    let len = r.saturating_mul(c);
    let mut data = try_vec(len, "a dense array")?;
    for j in 0..c {
        data.extend(view.column(j).iter().copied());
    }
    Ok(DMatrix::from_vec(r, c, data))
}

fn to_numpy<'py>(py: Python<'py>, m: DMatrix<f64>) -> Bound<'py, PyArray2<f64>> {
    let (r, c) = m.shape();
    Array2::from_shape_vec((r, c).f(), m.data.into())
        .expect("column-major shape matches the data")
        .into_pyarray(py)
}

impl PyFactorization {
    /// X = A⁻¹B or Aᵀ⁻¹B through the solve node (B finite; the solver's residual check for the
    /// forward solve; X finite). The GIL need not be held.
    fn solve_matrix(&self, b: &DMatrix<f64>, transpose: bool) -> Result<DMatrix<f64>, Error> {
        let structure = &self.pattern.structure;
        if transpose {
            node::solve_transpose(self.factor.as_ref(), structure, b)
        } else {
            node::solve(
                &self.solver,
                self.factor.as_ref(),
                structure,
                &self.values,
                b,
            )
        }
    }

    /// ∂L/∂A at the caller's entries given Λ and X (both n × k and finite, checked here).
    fn grad_at_entries(&self, lam: &DMatrix<f64>, x: &DMatrix<f64>) -> PyResult<Vec<f64>> {
        let n = self.pattern.n;
        if lam.nrows() != n || x.nrows() != n || lam.ncols() != x.ncols() {
            return Err(value_error(format!(
                "adjoint is {:?} and X is {:?}; both must be {n} × k",
                lam.shape(),
                x.shape()
            )));
        }
        for (what, m) in [("adjoint", lam), ("X", x)] {
            if let Some(k) = m.iter().position(|v| !v.is_finite()) {
                return Err(value_error(format!(
                    "{what} has the non-finite value {} at row {}, column {}",
                    m[k],
                    k % n.max(1),
                    k / n.max(1)
                )));
            }
        }
        let p = &self.pattern;
        let mut stored = try_vec(p.structure.nnz(), "the gradient").map_err(to_py)?;
        stored.resize(p.structure.nnz(), 0.0);
        node::accumulate_outer(&p.structure, lam, x, -1.0, &mut stored).map_err(to_py)?;
        let mut grads = try_vec(p.slot.len(), "the gradient").map_err(to_py)?;
        grads.extend(p.slot.iter().map(|&s| stored[s]));
        Ok(grads)
    }
}

#[pymethods]
impl PyFactorization {
    /// X = A⁻¹ B for a 2-D B (n × k), checked as the Rust tape checks it: B finite, the solver's
    /// residual check, X finite.
    fn solve<'py>(
        &self,
        py: Python<'py>,
        b: PyReadonlyArray2<'py, f64>,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let b = rhs_from(&b, self.pattern.n)?;
        let x = py.detach(|| self.solve_matrix(&b, false)).map_err(to_py)?;
        Ok(to_numpy(py, x))
    }

    /// Y = A⁻ᵀ B for a 2-D B (n × k): the adjoint solve, on the same factorization (B finite, Y
    /// finite).
    fn solve_transpose<'py>(
        &self,
        py: Python<'py>,
        b: PyReadonlyArray2<'py, f64>,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let b = rhs_from(&b, self.pattern.n)?;
        let y = py.detach(|| self.solve_matrix(&b, true)).map_err(to_py)?;
        Ok(to_numpy(py, y))
    }

    /// ∂L/∂A at the caller's entries, in their order, given the adjoint Λ = A⁻ᵀ ∂L/∂X and the
    /// solution X (both n × k, finite): the solve node's gradient at the stored entries
    /// (−Σ_c Λ[i, c]·X[j, c], plus the mirrored term for one-triangle storage), read at each
    /// entry's slot (duplicates each get the gradient of their sum).
    fn grad_values<'py>(
        &self,
        py: Python<'py>,
        adjoint: PyReadonlyArray2<'py, f64>,
        x: PyReadonlyArray2<'py, f64>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let (lam, x) = (
            dense_from(&adjoint).map_err(to_py)?,
            dense_from(&x).map_err(to_py)?,
        );
        let grads = py.detach(|| self.grad_at_entries(&lam, &x))?;
        Ok(Array1::from_vec(grads).into_pyarray(py))
    }

    /// (sign of det A, log |det A|) from the factor's pivots (Cholesky and LDLᵀ factorizations;
    /// an LU factorization raises `ValueError`: faer's sparse LU keeps its factor values private).
    fn logdet(&self) -> PyResult<(f64, f64)> {
        let d = self.factor.log_determinant().map_err(to_py)?;
        Ok((d.sign, d.log_abs))
    }

    /// ∂ log |det A| / ∂(the caller's entries), in their order: A⁻¹ at each entry by selected
    /// inversion on the kept factor (never a dense inverse), doubled off the diagonal for
    /// one-triangle storage (an entry there stands for both positions); duplicates each get the
    /// gradient of their sum.
    fn logdet_grad<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let p = &self.pattern;
        let grads = py
            .detach(|| -> Result<Vec<f64>, Error> {
                let z = node::logdet_gradient(self.factor.as_ref(), &p.structure)?;
                Ok(p.slot.iter().map(|&s| z[s]).collect())
            })
            .map_err(to_py)?;
        Ok(Array1::from_vec(grads).into_pyarray(py))
    }

    /// x = Pᵀ L⁻ᵀ z per column (D^{-1/2} for LDLᵀ): standard normal columns z give draws from
    /// N(0, A⁻¹) (a Gaussian with precision A), one backward substitution with the kept factor.
    fn sample<'py>(
        &self,
        py: Python<'py>,
        z: PyReadonlyArray2<'py, f64>,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let mut x = rhs_from(&z, self.pattern.n)?;
        py.detach(|| self.factor.sample_in_place(&mut x))
            .map_err(to_py)?;
        Ok(to_numpy(py, x))
    }

    /// The diagonal of A⁻¹ (marginal variances of a Gaussian with precision A), by selected
    /// inversion.
    fn diag_inverse<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let d = py.detach(|| self.factor.diag_inverse()).map_err(to_py)?;
        Ok(Array1::from_vec(d).into_pyarray(py))
    }

    /// What was factored: method, storage, size, ordering, fallback reason.
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("n", self.pattern.n)?;
        d.set_item("nnz_stored", self.pattern.structure.nnz())?;
        // What ran (the library's typed value), and what was asked for.
        d.set_item("method", self.factor.method().map_or("other", Method::name))?;
        d.set_item("requested", &self.method)?;
        d.set_item(
            "storage",
            match self.pattern.storage {
                Storage::General => "general",
                Storage::OneTriangle => "symmetric (one triangle)",
                Storage::BothTriangles => "symmetric (both triangles)",
            },
        )?;
        d.set_item("fallback_reason", self.factor.fallback_reason())?;
        d.set_item("precision", precision_name(self.factor.precision()))?;
        let info = self.factor.solve_info();
        d.set_item(
            "refinement_steps",
            (
                info.forward.map(|c| c.iterations),
                info.adjoint.map(|c| c.iterations),
            ),
        )?;
        d.set_item("condition_limit", self.solver.condition_limit())?;
        Ok(d)
    }

    /// Number of unknowns.
    #[getter]
    fn n(&self) -> usize {
        self.pattern.n
    }
}

/// Factorizes the n × n matrix with entries (rows[e], cols[e], data[e]) (duplicates summed),
/// through the solve node (`node::factor`: the solver's checks, the condition limit if given).
#[pyfunction]
#[pyo3(signature = (n, rows, cols, data, method = "auto", symmetric = None, condition_limit = None, precision = "double"))]
#[allow(clippy::too_many_arguments)]
fn factorize(
    py: Python<'_>,
    n: usize,
    rows: PyReadonlyArray1<'_, i64>,
    cols: PyReadonlyArray1<'_, i64>,
    data: PyReadonlyArray1<'_, f64>,
    method: &str,
    symmetric: Option<bool>,
    condition_limit: Option<f64>,
    precision: &str,
) -> PyResult<PyFactorization> {
    let (rows, cols, data) = (rows.as_slice()?, cols.as_slice()?, data.as_slice()?);
    let request = Request::new(
        n,
        rows,
        cols,
        data.len(),
        method,
        symmetric,
        condition_limit,
    )?
    .with_precision(precision)?;
    py.detach(|| request.factorize(data))
}

/// A checked factorization request: the entries' coordinates and the options, shared by every
/// set of values factored with them (one call, or a batch).
struct Request<'a> {
    n: usize,
    rows: &'a [i64],
    cols: &'a [i64],
    method: Method,
    symmetric: Option<bool>,
    condition_limit: Option<f64>,
    precision: Precision,
}

impl<'a> Request<'a> {
    /// The same request in another precision (`precision=`'s names).
    pub(crate) fn with_precision(self, precision: &str) -> PyResult<Self> {
        Ok(Request {
            precision: parse_precision(precision)?,
            ..self
        })
    }

    /// Checks the method, the condition limit, the lengths (`nnz` values per factorization) and
    /// every coordinate.
    fn new(
        n: usize,
        rows: &'a [i64],
        cols: &'a [i64],
        nnz: usize,
        method: &str,
        symmetric: Option<bool>,
        condition_limit: Option<f64>,
    ) -> PyResult<Self> {
        let method = parse_method(method)?;
        if let Some(limit) = condition_limit.filter(|l| !(l.is_finite() && *l >= 1.0)) {
            return Err(value_error(format!(
                "condition_limit must be a finite number ≥ 1 (a condition number), got {limit}"
            )));
        }
        if rows.len() != cols.len() || rows.len() != nnz {
            return Err(value_error(format!(
                "rows, cols and data have lengths {}, {} and {nnz}",
                rows.len(),
                cols.len(),
            )));
        }
        if let Some(e) = (0..rows.len()).find(|&e| {
            rows[e] < 0 || cols[e] < 0 || rows[e] as u64 >= n as u64 || cols[e] as u64 >= n as u64
        }) {
            return Err(value_error(format!(
                "entry {e} at ({}, {}) is outside the {n} × {n} matrix",
                rows[e], cols[e]
            )));
        }
        Ok(Request {
            n,
            rows,
            cols,
            method,
            symmetric,
            condition_limit,
            precision: Precision::F64,
        })
    }

    /// The factorization of the values `data` (the GIL need not be held).
    fn factorize(&self, data: &[f64]) -> PyResult<PyFactorization> {
        let (pattern, values) =
            decide(self.n, self.rows, self.cols, data, self.symmetric).map_err(to_py)?;
        let solver = solver_for(
            self.method,
            pattern.storage,
            self.condition_limit,
            self.precision,
        )?;
        let factor = node::factor(&solver, &pattern.structure, &values).map_err(to_py)?;
        Ok(PyFactorization {
            factor,
            pattern,
            solver,
            values,
            method: Method::name(self.method).to_string(),
        })
    }
}

/// Forgets every cached pattern (and so its symbolic analysis): the next factorization of any
/// pattern starts cold. For benchmarks and memory.
#[pyfunction]
fn clear_patterns() {
    PATTERNS.lock().unwrap_or_else(|p| p.into_inner()).clear();
    ASYMMETRIC.lock().unwrap_or_else(|p| p.into_inner()).clear();
}

/// Frees the cached patterns and the library's pooled buffers; returns the pooled bytes freed.
#[pyfunction]
fn release_memory() -> usize {
    clear_patterns();
    sparsegrad::release_pooled_memory()
}

/// Number of patterns in the cache (for tests and diagnostics).
#[pyfunction]
fn cached_patterns() -> usize {
    PATTERNS.lock().map(|c| c.len()).unwrap_or(0)
}

/// (symbolic analyses, numeric factorizations) done so far on the cached pattern of these
/// entries, or None when it is not cached.
#[pyfunction]
#[pyo3(signature = (n, rows, cols, symmetric))]
fn analyses_of(
    n: usize,
    rows: PyReadonlyArray1<'_, i64>,
    cols: PyReadonlyArray1<'_, i64>,
    symmetric: bool,
) -> PyResult<Option<(usize, usize)>> {
    let (rows, cols) = (rows.as_slice()?, cols.as_slice()?);
    let cache = PATTERNS.lock().unwrap_or_else(|p| p.into_inner());
    Ok(cache
        .iter()
        .rev()
        .find(|(_, p)| {
            p.n == n && p.storage.symmetric() == symmetric && p.rows == rows && p.cols == cols
        })
        .map(|(_, p)| {
            (
                p.structure.symbolic_analyses(),
                p.structure.numeric_factorizations(),
            )
        }))
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(factorize, m)?)?;
    m.add_function(wrap_pyfunction!(cached_patterns, m)?)?;
    m.add_function(wrap_pyfunction!(clear_patterns, m)?)?;
    m.add_function(wrap_pyfunction!(release_memory, m)?)?;
    m.add_function(wrap_pyfunction!(analyses_of, m)?)?;
    m.add_function(wrap_pyfunction!(batch::factorize_batch, m)?)?;
    m.add_function(wrap_pyfunction!(batch::solve_batch, m)?)?;
    m.add_function(wrap_pyfunction!(batch::grad_values_batch, m)?)?;
    m.add_function(wrap_pyfunction!(ffi::ffi_spsolve_address, m)?)?;
    m.add_class::<PyFactorization>()?;
    m.add("SolveError", m.py().get_type::<SolveError>())?;
    Ok(())
}
