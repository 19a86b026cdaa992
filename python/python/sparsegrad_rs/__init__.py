"""sparsegrad_rs: differentiable sparse linear solves (the Python package of the sparsegrad crate).

The factorization is computed once and kept: ``solve`` and ``solve_transpose`` (the adjoint solve)
reuse it, and ``grad_values`` returns dL/dA at exactly the matrix's stored entries. A pattern seen
before (same coordinates, in the same order) reuses its analysis, so a loop over new values pays
only the numeric factorization.

    >>> import numpy as np, scipy.sparse as sp, sparsegrad_rs
    >>> A = sp.csr_matrix(np.array([[4.0, 1.0], [1.0, 3.0]]))
    >>> f = sparsegrad_rs.factorize(A)
    >>> x = f.solve(np.array([1.0, 2.0]))
    >>> bool(np.allclose(A @ x, [1.0, 2.0]))
    True

``sparsegrad_rs.torch.solve`` (a ``torch.autograd.Function``) and ``sparsegrad_rs.jax.spsolve``
(``jax.custom_jvp`` over ``jax.lax.custom_linear_solve``) are built on the same factorization and
differentiable to any order.
"""
from __future__ import annotations

import numpy as np

from . import _core
from ._core import SolveError

__all__ = ["factorize", "solve", "logdet", "Factorization", "SolveError", "coo_of",
           "release_memory"]
__version__ = "0.1.0"


def _real(x, name):
    """``x`` as a NumPy array of float64: integers and booleans are promoted; complex values are a
    TypeError naming the argument (a cast would silently drop the imaginary part)."""
    arr = np.asarray(x)
    if np.iscomplexobj(arr):
        raise TypeError(f"{name} has complex values (dtype {arr.dtype}); sparsegrad solves real "
                        "systems only")
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float64)


def _check_integral(n, name="n"):
    """``n`` as a Python int: an integer (Python, NumPy or a 0-d tensor), never a silently
    truncated float."""
    import operator

    try:
        return operator.index(n)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {n!r}") from None


def _rows_of_indptr(indptr, nnz, what="indptr"):
    """The row (or column) of every entry of a compressed matrix, after checking ``indptr``:
    starts at 0, never decreases, ends at the number of entries."""
    indptr = np.asarray(indptr)
    if indptr.ndim != 1 or indptr.size == 0:
        raise ValueError(f"{what} must be 1-D with n + 1 entries, got shape {indptr.shape}")
    if not np.issubdtype(indptr.dtype, np.integer):
        raise TypeError(f"{what} must hold integers, got dtype {indptr.dtype}")
    indptr = indptr.astype(np.int64)
    steps = np.diff(indptr)
    if indptr[0] != 0:
        raise ValueError(f"{what}[0] must be 0, got {indptr[0]}")
    if steps.size and steps.min() < 0:
        k = int(np.argmax(steps < 0))
        raise ValueError(f"{what} decreases at position {k + 1}: {indptr[k]} then {indptr[k + 1]}")
    if indptr[-1] != nnz:
        raise ValueError(f"{what} ends at {indptr[-1]} but there are {nnz} entries")
    return np.repeat(np.arange(indptr.size - 1, dtype=np.int64), steps)


def coo_of(A):
    """(n, rows, cols, data) of a square scipy.sparse matrix or array, in A's own entry order:
    CSR row by row, CSC column by column, COO as given (other formats go through CSR)."""
    import scipy.sparse as sp

    if not sp.issparse(A):
        raise TypeError(f"expected a scipy.sparse matrix, got {type(A).__name__}")
    if A.shape[0] != A.shape[1]:
        raise ValueError(f"the matrix must be square, got {A.shape[0]} x {A.shape[1]}")
    n = A.shape[0]
    fmt = A.format
    if fmt not in ("csr", "csc", "coo"):
        A = A.tocsr()
        fmt = "csr"
    data = _real(A.data, "A")
    if fmt == "coo":
        rows, cols = A.row, A.col
    else:
        major = _rows_of_indptr(A.indptr, A.indices.size)
        rows, cols = (major, A.indices) if fmt == "csr" else (A.indices, major)
    return (
        n,
        np.ascontiguousarray(rows, dtype=np.int64),
        np.ascontiguousarray(cols, dtype=np.int64),
        data,
    )


def _like(X, B):
    """float32 in, float32 out (computed in float64, as torch and JAX do); float64 otherwise."""
    return X.astype(np.float32) if getattr(B, "dtype", None) == np.float32 else X


def _as_2d(B, n, name="B"):
    B = _real(B, name)
    if B.ndim == 1:
        return B.reshape(-1, 1), True
    if B.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got {B.ndim}-D")
    return B, False


class Factorization:
    """A kept factorization of an n x n matrix A (from :func:`factorize`).

    Every solve reuses it: ``solve(B)`` = A⁻¹B, ``solve_transpose(B)`` = A⁻ᵀB (the adjoint
    solve), and ``grad_values(adjoint, X)`` = dL/dA at A's stored entries given
    adjoint = A⁻ᵀ dL/dX and the solution X. ``info`` says which method ran.

    Attributes: ``n`` (unknowns), ``nnz`` (entries as given, duplicates included).
    """

    def __init__(self, core, nnz):
        self._core = core
        self.n = core.n
        self.nnz = nnz

    def solve(self, B):
        """X = A⁻¹B.

        B: array of shape (n,) or (n, k), real (integers are promoted; float64 is used). Returns
        X of B's shape: float32 for a float32 B (computed in float64, then cast), float64
        otherwise. Raises ValueError for a wrong shape or a non-finite B, TypeError
        for complex B, SolveError when the solution is not finite or fails its residual check.
        """
        B2, vec = _as_2d(B, self.n)
        X = self._core.solve(B2)
        return _like(X[:, 0] if vec else X, B)

    def solve_transpose(self, B):
        """Y = A⁻ᵀB (the adjoint solve, on the same factorization; for a symmetric A the same as
        :meth:`solve`). Shapes, dtypes and errors as :meth:`solve`."""
        B2, vec = _as_2d(B, self.n)
        Y = self._core.solve_transpose(B2)
        return _like(Y[:, 0] if vec else Y, B)

    def grad_values(self, adjoint, X):
        """dL/dA at A's entries, in the order they were given (shape (nnz,), float64).

        adjoint: Λ = A⁻ᵀ dL/dX, shape (n,) or (n, k); X: the solution, same shape. Entry e at
        (i, j) gets −Σ_c Λ[i, c]·X[j, c] (plus the mirrored term when one triangle stands for a
        symmetric A); duplicated coordinates each get the gradient of their sum. Raises
        ValueError for mismatched shapes or non-finite values.
        """
        lam, _ = _as_2d(adjoint, self.n, "adjoint")
        X2, _ = _as_2d(X, self.n, "X")
        return self._core.grad_values(lam, X2)

    def logdet(self):
        """(sign, log |det A|) from the factor's pivots: Cholesky and LDLᵀ factorizations (a
        symmetric A); an LU factorization raises ValueError (faer's sparse LU keeps its factor
        values private, so neither its determinant nor a selected inverse can be read)."""
        return self._core.logdet()

    def logdet_grad(self):
        """d log |det A| / dA at A's entries, in the order they were given (shape (nnz,)): A⁻¹ at
        each entry by selected inversion on this factorization (never a dense inverse), doubled
        off the diagonal when one triangle stands for a symmetric A; duplicated coordinates each
        get the gradient of their sum. Cholesky and LDLᵀ factorizations only (ValueError for
        LU)."""
        return self._core.logdet_grad()

    def sample(self, z):
        """Draws from the Gaussian with precision A: each column of ``z`` (shape (n,) or (n, k),
        standard normal for a draw) becomes x = Pᵀ L⁻ᵀ z (with D^{-1/2} for LDLᵀ), so that
        Cov(x) = A⁻¹ — one backward substitution with this factorization. Cholesky and LDLᵀ
        factorizations of a positive definite A only."""
        Z, vec = _as_2d(z, self.n, "z")
        X = self._core.sample(Z)
        return X[:, 0] if vec else X

    def diag_inverse(self):
        """The diagonal of A⁻¹ (shape (n,)): the marginal variances of a Gaussian with precision
        A, by selected inversion. Cholesky and LDLᵀ factorizations only."""
        return self._core.diag_inverse()

    @property
    def info(self):
        """A dict: ``method`` (what factored A: "cholesky", "ldlt" or "lu" — "auto" resolves to
        one of them), ``requested`` (the ``method=`` asked for), ``storage`` ("general",
        "symmetric (one triangle)", "symmetric (both triangles)"), ``n``, ``nnz_stored``,
        ``condition_limit``, ``fallback_reason`` (why "auto" moved from Cholesky to LU or from
        mixed to double precision, or None), ``precision`` (what ran: "double", "mixed" or
        "single") and ``refinement_steps`` (the last forward and transposed solves' refinement
        steps under mixed precision, None otherwise)."""
        return self._core.info()

    def __repr__(self):
        i = self.info
        return (f"sparsegrad_rs.Factorization(n={self.n}, nnz={self.nnz}, method={i['method']!r}, "
                f"storage={i['storage']!r})")


def factorize(A, method="auto", symmetric=None, condition_limit=None, precision="double"):
    """Factorizes a square scipy.sparse matrix (CSR, CSC, COO or any format scipy converts).

    method: "auto" (Cholesky for a symmetric matrix, falling back to LU when it is not positive
    definite; LU for a general one), "cholesky", "ldlt" or "lu".
    precision: arithmetic of a Cholesky / LDLᵀ factorization — "double" (default); "mixed" (an
    float32 factor, half the memory and about twice as fast to factor on large 3D matrices, every
    solve refined in float64 to double accuracy, or SolveError "mixed precision cannot reach
    double-precision accuracy"); "single" (float32 factor and solves, relative error ≈ κ·6e-8);
    "auto" (mixed for large factors, double otherwise, falling back to double where mixed cannot
    reach double accuracy). LU always runs in double. ``info["precision"]`` says what ran.
    symmetric: None (default) treats A as symmetric when both triangles are stored and equal; True
    declares A symmetric — one triangle stored (the other implied) or both (checked equal);
    False forces a general (LU) factorization. With one triangle stored and symmetric=None, A is
    the triangular matrix as given.

    Symmetry is judged entry by entry (|a_ij − a_ji| ≤ 1e-10·max(|a_ij|, |a_ji|)), so a large
    entry elsewhere (a penalty) never hides an unsymmetric block.
    condition_limit: refuse A (SolveError, "ill-conditioned") when its estimated condition
    number κ₁ exceeds this (about 11 extra solves per factorization); None (default) sets no
    limit. Independently of it, a matrix singular to working precision (equilibrated κ ≥ 1/ε) is
    refused.

    Every solve is checked as the Rust tape checks it: B finite, the residual check (LU, LDLᵀ and
    auto), a finite X — never a non-finite or unverified solution. Integer inputs are promoted to
    float64; complex inputs are a TypeError.

    Raises ValueError for bad input (shape, index, non-finite value, asymmetric entries with
    symmetric=True), TypeError for complex or non-numeric values, MemoryError when the matrix
    does not fit, SolveError (a RuntimeError) when the factorization or a solve fails: not
    positive definite (with the column), singular, ill-conditioned.
    """
    n, rows, cols, data = coo_of(A)
    core = _core.factorize(n, rows, cols, data, method=method, symmetric=symmetric,
                           condition_limit=condition_limit, precision=precision)
    return Factorization(core, data.size)


def solve(A, B, method="auto", symmetric=None, condition_limit=None, precision="double"):
    """X = A⁻¹B for a scipy.sparse A and a dense B (n or n x k); see :func:`factorize`."""
    return factorize(A, method=method, symmetric=symmetric,
                     condition_limit=condition_limit, precision=precision).solve(B)


def logdet(A, method="auto", symmetric=None):
    """(log det A, its gradient at A's entries) for a symmetric scipy.sparse A: the value from a
    Cholesky (or, with ``method="ldlt"``, LDLᵀ) factorization, the gradient A⁻¹ at A's entries in
    :func:`coo_of`'s order by selected inversion (see :meth:`Factorization.logdet_grad`).

    Raises ValueError when det A < 0 (use ``factorize(A).logdet()`` for the sign and
    log |det A|) or when A is not symmetric; SolveError when it is not positive definite
    (Cholesky) or singular.
    """
    f = factorize(A, method=method, symmetric=symmetric)
    sign, value = f.logdet()
    if sign < 0:
        raise ValueError("det A < 0, so log det A is not real; factorize(A).logdet() gives the "
                         "sign and log |det A|")
    return value, f.logdet_grad()


def release_memory():
    """Frees what sparsegrad keeps between calls: the cached patterns (and their symbolic
    analyses), the factorizations ``sparsegrad_rs.jax`` keeps for pending backward passes, and the
    library's pooled buffers. Returns the pooled bytes freed."""
    import sys

    jax_module = sys.modules.get(__name__ + ".jax")
    if jax_module is not None:
        jax_module._release()
    return _core.release_memory()
