//! Batches over one pattern: B factorizations of the same coordinates with B sets of values,
//! their solves and their gradients, each batch element on the rayon pool with the GIL released.
//! The first element is factored alone, so it caches the pattern and its symbolic analysis and
//! the others only run numeric factorizations.

use nalgebra::DMatrix;
use numpy::ndarray::{Array2, Array3, Axis};
use numpy::{IntoPyArray, PyArray2, PyArray3, PyReadonlyArray2, PyReadonlyArray3};
use pyo3::prelude::*;
use rayon::prelude::*;

use crate::{dense_of, to_py, value_error, PyFactorization, Request};

/// Factorizes the n × n matrices with entries (rows[e], cols[e], data[i, e]), one per row i of
/// `data` (batch × nnz), in parallel; options as `factorize`. The first failure is raised, naming
/// its batch element.
#[pyfunction]
#[pyo3(signature = (n, rows, cols, data, method = "auto", symmetric = None, condition_limit = None, precision = "double"))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn factorize_batch(
    py: Python<'_>,
    n: usize,
    rows: numpy::PyReadonlyArray1<'_, i64>,
    cols: numpy::PyReadonlyArray1<'_, i64>,
    data: PyReadonlyArray2<'_, f64>,
    method: &str,
    symmetric: Option<bool>,
    condition_limit: Option<f64>,
    precision: &str,
) -> PyResult<Vec<PyFactorization>> {
    let (rows, cols) = (rows.as_slice()?, cols.as_slice()?);
    let data = data.as_array();
    let (batch, nnz) = data.dim();
    let request = Request::new(n, rows, cols, nnz, method, symmetric, condition_limit)?
        .with_precision(precision)?;
    py.detach(|| {
        let element = |i: usize| {
            let values: Vec<f64> = data.row(i).iter().copied().collect();
            request
                .factorize(&values)
                .map_err(|e| in_element(e, i, batch))
        };
        let Some(first) = (batch > 0).then(|| element(0)).transpose()? else {
            return Ok(Vec::new());
        };
        let mut all = vec![first];
        all.extend(
            (1..batch)
                .into_par_iter()
                .map(element)
                .collect::<PyResult<Vec<_>>>()?,
        );
        Ok(all)
    })
}

/// X[i] = A_i⁻¹ B[i] (or A_i⁻ᵀ B[i]) for every batch element, in parallel: `b` is
/// batch × n × k, one factorization per element. Checked as `Factorization.solve`.
#[pyfunction]
#[pyo3(signature = (factors, b, transpose = false))]
pub(crate) fn solve_batch<'py>(
    py: Python<'py>,
    factors: Vec<Py<PyFactorization>>,
    b: PyReadonlyArray3<'py, f64>,
    transpose: bool,
) -> PyResult<Bound<'py, PyArray3<f64>>> {
    let b = b.as_array();
    let (batch, rows, k) = b.dim();
    check_batch(&factors, batch, rows, "B")?;
    let solved: Vec<DMatrix<f64>> = py.detach(|| {
        (0..batch)
            .into_par_iter()
            .map(|i| {
                let rhs = dense_of(b.index_axis(Axis(0), i)).map_err(to_py)?;
                factors[i]
                    .get()
                    .solve_matrix(&rhs, transpose)
                    .map_err(|e| in_element(to_py(e), i, batch))
            })
            .collect::<PyResult<_>>()
    })?;
    let mut out = Array3::<f64>::zeros((batch, rows, k));
    for (i, x) in solved.iter().enumerate() {
        for ((r, c), v) in out.index_axis_mut(Axis(0), i).indexed_iter_mut() {
            *v = x[(r, c)];
        }
    }
    Ok(out.into_pyarray(py))
}

/// ∂L/∂A_i at the caller's entries for every batch element (batch × nnz), given the adjoints and
/// solutions (both batch × n × k), in parallel.
#[pyfunction]
pub(crate) fn grad_values_batch<'py>(
    py: Python<'py>,
    factors: Vec<Py<PyFactorization>>,
    adjoint: PyReadonlyArray3<'py, f64>,
    x: PyReadonlyArray3<'py, f64>,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let (lam, x) = (adjoint.as_array(), x.as_array());
    let (batch, rows, k) = lam.dim();
    if x.dim() != (batch, rows, k) {
        return Err(value_error(format!(
            "adjoint is {:?} and X is {:?}; both must be batch × n × k",
            lam.dim(),
            x.dim()
        )));
    }
    check_batch(&factors, batch, rows, "adjoint")?;
    let grads: Vec<Vec<f64>> = py.detach(|| {
        (0..batch)
            .into_par_iter()
            .map(|i| {
                let l = dense_of(lam.index_axis(Axis(0), i)).map_err(to_py)?;
                let xi = dense_of(x.index_axis(Axis(0), i)).map_err(to_py)?;
                factors[i]
                    .get()
                    .grad_at_entries(&l, &xi)
                    .map_err(|e| in_element(e, i, batch))
            })
            .collect::<PyResult<_>>()
    })?;
    let nnz = grads.first().map_or(0, Vec::len);
    let flat: Vec<f64> = grads.into_iter().flatten().collect();
    let out = Array2::from_shape_vec((batch, nnz), flat)
        .map_err(|e| value_error(format!("gradients of different lengths: {e}")))?;
    Ok(out.into_pyarray(py))
}

/// One factorization per batch element, each n × n with n = `rows`.
fn check_batch(
    factors: &[Py<PyFactorization>],
    batch: usize,
    rows: usize,
    what: &str,
) -> PyResult<()> {
    if factors.len() != batch {
        return Err(value_error(format!(
            "{what} has {batch} batch elements for {} factorizations",
            factors.len()
        )));
    }
    if let Some(i) = factors.iter().position(|f| f.get().pattern.n != rows) {
        let n = factors[i].get().pattern.n;
        return Err(value_error(format!(
            "{what} has {rows} rows, the matrix of batch element {i} is {n} × {n}"
        )));
    }
    Ok(())
}

/// `e` with the batch element it happened in, keeping its exception type.
fn in_element(e: PyErr, i: usize, batch: usize) -> PyErr {
    Python::attach(|py| {
        let message = format!("batch element {i} of {batch}: {}", e.value(py));
        let kind = e.get_type(py);
        PyErr::from_type(kind, message)
    })
}
