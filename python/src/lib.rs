//! `sparsegrad._core`: the native half of the Python package. One class, [`PyFactorization`], made
//! by [`factorize`] from a sparse matrix given as entries (row, column, value) in the caller's order:
//! it solves with A and Aᵀ on the kept factorization and returns ∂L/∂A at exactly those entries.
//! The Python modules (`sparsegrad`, `sparsegrad.torch`, `sparsegrad.jax`) wrap it.
//!
//! Storage decision (per call, documented in the package):
//! - `symmetric=False`: A is general — LU (Aᵀ solves for adjoints).
//! - `symmetric=True`: A is symmetric — one triangle stored (the other implied) or both stored
//!   (checked equal); Cholesky (or what `method` says) on the lower triangle.
//! - `symmetric=None`: symmetric when both triangles are stored and equal, general otherwise (a
//!   matrix with one triangle stored is then a triangular matrix, never silently mirrored).
//!
//! Patterns are cached (a small LRU keyed by the entry coordinates and the storage decision), so a
//! loop over new values of one pattern reuses the pattern and its symbolic analysis.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use nalgebra::DMatrix;
use numpy::ndarray::{Array1, Array2, ShapeBuilder};
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::{PyMemoryError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use sparsegrad::{Error, Factor, Ordering, Solver, Structure, Symmetry};

pyo3::create_exception!(
    _core,
    SolveError,
    PyRuntimeError,
    "A factorization or solve failed (not positive definite, singular, ill-conditioned, ...)."
);

/// The crate's errors as Python exceptions: bad input → ValueError, allocation → MemoryError,
/// numerical failures → SolveError (a RuntimeError).
fn to_py(e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::ShapeMismatch { .. }
        | Error::IndexOutOfRange { .. }
        | Error::NonFinite { .. }
        | Error::InvalidPattern { .. }
        | Error::NotSymmetric { .. }
        | Error::InvalidArgument { .. } => PyValueError::new_err(msg),
        Error::OutOfMemory { .. } => PyMemoryError::new_err(msg),
        _ => SolveError::new_err(msg),
    }
}

fn value_error(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}

/// How the caller's entries map onto the stored matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Storage {
    /// Every entry stored as given (general matrix).
    General,
    /// Symmetric, lower triangle stored; entries above the diagonal land on their mirror.
    /// `one_triangle`: the caller gave one triangle (each off-diagonal entry stands for two).
    Symmetric { one_triangle: bool },
}

/// A pattern: its structure (with the cached symbolic analyses) and each entry's slot.
struct Pattern {
    n: usize,
    rows: Vec<i64>,
    cols: Vec<i64>,
    storage: Storage,
    structure: Arc<Structure>,
    /// Stored slot of every input entry; `None` for the upper entries of a full symmetric input
    /// (their values are checked against the mirror, not added).
    slot: Vec<Option<usize>>,
}

/// The last patterns seen (most recent last).
static PATTERNS: Mutex<Vec<(u64, Arc<Pattern>)>> = Mutex::new(Vec::new());
const PATTERN_CACHE: usize = 16;

/// A fast non-cryptographic hash of the coordinates (a hit is confirmed by comparing them).
fn pattern_key(n: usize, rows: &[i64], cols: &[i64], storage: Storage) -> u64 {
    let mut h = DefaultHasher::new();
    (n, rows.len(), storage).hash(&mut h);
    let mut acc = h.finish();
    for (&r, &c) in rows.iter().zip(cols) {
        acc = (acc.rotate_left(5) ^ (r as u64)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ (c as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    }
    acc
}

/// Hashes of patterns found not to be symmetric (a collision only costs a general factorization).
static ASYMMETRIC: Mutex<Vec<u64>> = Mutex::new(Vec::new());

fn pattern(n: usize, rows: &[i64], cols: &[i64], storage: Storage) -> Result<Arc<Pattern>, Error> {
    let key = pattern_key(n, rows, cols, storage);
    {
        let mut cache = PATTERNS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = cache.iter().position(|(k, p)| {
            *k == key && p.n == n && p.storage == storage && p.rows == rows && p.cols == cols
        }) {
            let hit = cache.remove(at);
            let found = hit.1.clone();
            cache.push(hit);
            return Ok(found);
        }
    }
    let mut pairs = Vec::with_capacity(rows.len());
    let mut which = Vec::with_capacity(rows.len());
    for (e, (&r, &c)) in rows.iter().zip(cols).enumerate() {
        let (r, c) = (r as usize, c as usize);
        match storage {
            Storage::General => {
                pairs.push((r, c));
                which.push(e);
            }
            Storage::Symmetric { one_triangle } => {
                if r >= c {
                    pairs.push((r, c));
                    which.push(e);
                } else if one_triangle {
                    pairs.push((c, r));
                    which.push(e);
                }
            }
        }
    }
    let symmetry = match storage {
        Storage::General => Symmetry::General,
        Storage::Symmetric { .. } => Symmetry::Lower,
    };
    let (structure, slots) = Structure::from_pairs(n, n, &pairs, symmetry)?;
    let mut slot = vec![None; rows.len()];
    for (&e, s) in which.iter().zip(slots) {
        slot[e] = Some(s);
    }
    if let Storage::Symmetric {
        one_triangle: false,
    } = storage
    {
        // Upper entries of a full symmetric input: the slot of their mirror (which must exist).
        let lookup = |i: usize, j: usize| {
            let (cp, ri) = (structure.col_ptr(), structure.row_idx());
            ri[cp[j]..cp[j + 1]]
                .binary_search(&i)
                .ok()
                .map(|k| cp[j] + k)
        };
        for (e, (&r, &c)) in rows.iter().zip(cols).enumerate() {
            if r < c {
                let mirror = lookup(c as usize, r as usize).ok_or_else(|| Error::InvalidArgument {
                    what: "symmetric matrix",
                    reason: format!(
                        "entry {e} at ({r}, {c}) has no mirror at ({c}, {r}): the pattern is not symmetric"
                    ),
                })?;
                slot[e] = Some(mirror);
            }
        }
    }
    let found = Arc::new(Pattern {
        n,
        rows: rows.to_vec(),
        cols: cols.to_vec(),
        storage,
        structure,
        slot,
    });
    let mut cache = PATTERNS.lock().unwrap_or_else(|p| p.into_inner());
    cache.push((key, found.clone()));
    if cache.len() > PATTERN_CACHE {
        cache.remove(0);
    }
    Ok(found)
}

/// Stored values for `pattern` from the caller's values; for a full symmetric input, checks each
/// upper entry against its mirror's sum (to 1e-12 of the largest |A_ij|).
fn stored_values(p: &Pattern, data: &[f64]) -> Result<Vec<f64>, Error> {
    let mut values = vec![0.0; p.structure.nnz()];
    let mut upper = match p.storage {
        Storage::Symmetric {
            one_triangle: false,
        } => Some(vec![0.0; values.len()]),
        _ => None,
    };
    for (e, (&v, s)) in data.iter().zip(&p.slot).enumerate() {
        let Some(s) = *s else { continue };
        if !v.is_finite() {
            return Err(Error::NonFinite {
                context: "sparse matrix value",
                row: p.rows[e] as usize,
                col: p.cols[e] as usize,
                value: v,
            });
        }
        match &mut upper {
            Some(u) if p.rows[e] < p.cols[e] => u[s] += v,
            _ => values[s] += v,
        }
    }
    if let Some(u) = upper {
        let scale = values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let (cp, ri) = (p.structure.col_ptr(), p.structure.row_idx());
        for j in 0..p.n {
            for k in cp[j]..cp[j + 1] {
                let i = ri[k];
                if i != j && (values[k] - u[k]).abs() > 1e-12 * scale {
                    return Err(Error::NotSymmetric {
                        row: i,
                        col: j,
                        value: values[k],
                        mirror: u[k],
                    });
                }
            }
        }
    }
    Ok(values)
}

fn solver_for(method: &str, storage: Storage) -> PyResult<Solver> {
    let symmetric = storage != Storage::General;
    let solver = match method {
        "auto" => Solver::auto(),
        "cholesky" if symmetric => Solver::cholesky(),
        "ldlt" if symmetric => Solver::ldlt(),
        "cholesky" | "ldlt" => {
            return Err(value_error(format!(
                "method '{method}' needs a symmetric matrix; this one is general (pass symmetric=True if it is symmetric, or use method='lu')"
            )))
        }
        "lu" => Solver::lu(),
        other => {
            return Err(value_error(format!(
                "unknown method '{other}' (auto | cholesky | ldlt | lu)"
            )))
        }
    };
    Ok(solver.with_ordering(Ordering::Auto))
}

/// A kept factorization of A with the caller's entry layout.
#[pyclass(name = "Factorization", module = "sparsegrad._core", frozen)]
struct PyFactorization {
    factor: Arc<Factor>,
    pattern: Arc<Pattern>,
    method: String,
}

fn dense_from(b: &PyReadonlyArray2<'_, f64>, n: usize, what: &str) -> PyResult<DMatrix<f64>> {
    let view = b.as_array();
    if view.nrows() != n {
        return Err(value_error(format!(
            "{what} has {} rows, the matrix is {n} × {n}",
            view.nrows()
        )));
    }
    let m = DMatrix::from_fn(n, view.ncols(), |i, j| view[[i, j]]);
    if let Some(bad) = m.iter().position(|v| !v.is_finite()) {
        return Err(value_error(format!(
            "{what} has a non-finite value at row {}, column {}",
            bad % n.max(1),
            bad / n.max(1)
        )));
    }
    Ok(m)
}

fn to_numpy<'py>(py: Python<'py>, m: DMatrix<f64>) -> Bound<'py, PyArray2<f64>> {
    let (r, c) = m.shape();
    Array2::from_shape_vec((r, c).f(), m.data.into())
        .expect("column-major shape matches the data")
        .into_pyarray(py)
}

#[pymethods]
impl PyFactorization {
    /// X = A⁻¹ B for a 2-D B (n × k).
    fn solve<'py>(
        &self,
        py: Python<'py>,
        b: PyReadonlyArray2<'py, f64>,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let mut x = dense_from(&b, self.pattern.n, "B")?;
        let factor = self.factor.clone();
        py.detach(|| factor.solve_in_place(&mut x)).map_err(to_py)?;
        Ok(to_numpy(py, x))
    }

    /// Y = A⁻ᵀ B for a 2-D B (n × k): the adjoint solve, on the same factorization.
    fn solve_transpose<'py>(
        &self,
        py: Python<'py>,
        b: PyReadonlyArray2<'py, f64>,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let mut y = dense_from(&b, self.pattern.n, "B")?;
        let factor = self.factor.clone();
        py.detach(|| factor.solve_transpose_in_place(&mut y))
            .map_err(to_py)?;
        Ok(to_numpy(py, y))
    }

    /// ∂L/∂A at the caller's entries, in their order, given the adjoint Λ = A⁻ᵀ ∂L/∂X and the
    /// solution X (both n × k): −Σ_c Λ[r, c]·X[col, c], plus the mirrored term for an
    /// off-diagonal entry of a one-triangle symmetric input (it stands for both entries).
    fn grad_values<'py>(
        &self,
        py: Python<'py>,
        adjoint: PyReadonlyArray2<'py, f64>,
        x: PyReadonlyArray2<'py, f64>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let n = self.pattern.n;
        let (lam, x) = (adjoint.as_array(), x.as_array());
        if lam.nrows() != n || x.nrows() != n || lam.ncols() != x.ncols() {
            return Err(value_error(format!(
                "adjoint is {:?} and X is {:?}; both must be {n} × k",
                lam.shape(),
                x.shape()
            )));
        }
        let p = &self.pattern;
        let both = p.storage == Storage::Symmetric { one_triangle: true };
        let k = x.ncols();
        let grads: Vec<f64> = p
            .rows
            .iter()
            .zip(&p.cols)
            .map(|(&r, &c)| {
                let (r, c) = (r as usize, c as usize);
                let mut g = 0.0;
                for j in 0..k {
                    g -= lam[[r, j]] * x[[c, j]];
                    if both && r != c {
                        g -= lam[[c, j]] * x[[r, j]];
                    }
                }
                g
            })
            .collect();
        Ok(Array1::from_vec(grads).into_pyarray(py))
    }

    /// What was factored: method, storage, size, ordering, fallback reason.
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("n", self.pattern.n)?;
        d.set_item("nnz_stored", self.pattern.structure.nnz())?;
        d.set_item("method", &self.method)?;
        d.set_item(
            "storage",
            match self.pattern.storage {
                Storage::General => "general",
                Storage::Symmetric { one_triangle: true } => "symmetric (one triangle)",
                Storage::Symmetric {
                    one_triangle: false,
                } => "symmetric (both triangles)",
            },
        )?;
        d.set_item("fallback_reason", self.factor.fallback_reason())?;
        Ok(d)
    }

    /// Number of unknowns.
    #[getter]
    fn n(&self) -> usize {
        self.pattern.n
    }
}

/// Factorizes the n × n matrix with entries (rows[e], cols[e], data[e]) (duplicates summed).
#[pyfunction]
#[pyo3(signature = (n, rows, cols, data, method = "auto", symmetric = None))]
fn factorize(
    py: Python<'_>,
    n: usize,
    rows: PyReadonlyArray1<'_, i64>,
    cols: PyReadonlyArray1<'_, i64>,
    data: PyReadonlyArray1<'_, f64>,
    method: &str,
    symmetric: Option<bool>,
) -> PyResult<PyFactorization> {
    let (rows, cols, data) = (rows.as_slice()?, cols.as_slice()?, data.as_slice()?);
    if !matches!(method, "auto" | "cholesky" | "ldlt" | "lu") {
        return Err(value_error(format!(
            "unknown method '{method}' (auto | cholesky | ldlt | lu)"
        )));
    }
    if rows.len() != cols.len() || rows.len() != data.len() {
        return Err(value_error(format!(
            "rows, cols and data have lengths {}, {} and {}",
            rows.len(),
            cols.len(),
            data.len()
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
    let (mut lower, mut upper) = (false, false);
    for (&r, &c) in rows.iter().zip(cols) {
        lower |= r > c;
        upper |= r < c;
    }
    let one_triangle = !(lower && upper);
    let both = Storage::Symmetric {
        one_triangle: false,
    };
    let decided = py.detach(|| -> Result<_, Error> {
        // symmetric=None: both triangles stored → the symmetric reading when the pattern is
        // symmetric and the values equal (to 1e-12), else general; a diagonal matrix is
        // symmetric; one triangle stored is a triangular matrix.
        let mut tried = None;
        let storage = match symmetric {
            Some(false) => Storage::General,
            Some(true) => Storage::Symmetric { one_triangle },
            None if !lower && !upper => Storage::Symmetric { one_triangle: true },
            None if one_triangle => Storage::General,
            None => {
                let key = pattern_key(n, rows, cols, both);
                let known_asymmetric = ASYMMETRIC
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains(&key);
                if known_asymmetric {
                    Storage::General
                } else {
                    match pattern(n, rows, cols, both) {
                        Ok(p) => match stored_values(&p, data) {
                            Ok(v) => {
                                tried = Some((p, v));
                                both
                            }
                            Err(Error::NotSymmetric { .. }) => Storage::General,
                            Err(e) => return Err(e),
                        },
                        Err(Error::InvalidArgument { .. }) => {
                            let mut bad = ASYMMETRIC.lock().unwrap_or_else(|p| p.into_inner());
                            bad.push(key);
                            if bad.len() > PATTERN_CACHE {
                                bad.remove(0);
                            }
                            Storage::General
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        };
        let (p, values) = match tried {
            Some(found) => found,
            None => {
                let p = pattern(n, rows, cols, storage)?;
                let v = stored_values(&p, data)?;
                (p, v)
            }
        };
        Ok((storage, p, values))
    });
    let (storage, pattern, values) = decided.map_err(to_py)?;
    let solver = solver_for(method, storage)?;
    let factor = py
        .detach(|| solver.factorize(&pattern.structure, &values))
        .map_err(to_py)?;
    Ok(PyFactorization {
        factor,
        pattern,
        method: method.to_string(),
    })
}

/// Forgets every cached pattern (and so its symbolic analysis): the next factorization of any
/// pattern starts cold. For benchmarks and memory.
#[pyfunction]
fn clear_patterns() {
    PATTERNS.lock().unwrap_or_else(|p| p.into_inner()).clear();
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
            p.n == n
                && (p.storage != Storage::General) == symmetric
                && p.rows == rows
                && p.cols == cols
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
    m.add_function(wrap_pyfunction!(analyses_of, m)?)?;
    m.add_class::<PyFactorization>()?;
    m.add("SolveError", m.py().get_type::<SolveError>())?;
    Ok(())
}
