"""sparsegrad: differentiable sparse linear solves.

The factorization is computed once and kept: ``solve`` and ``solve_transpose`` (the adjoint solve)
reuse it, and ``grad_values`` returns dL/dA at exactly the matrix's stored entries. A pattern seen
before (same coordinates, in the same order) reuses its analysis, so a loop over new values pays
only the numeric factorization.

    >>> import numpy as np, scipy.sparse as sp, sparsegrad
    >>> A = sp.csr_matrix(np.array([[4.0, 1.0], [1.0, 3.0]]))
    >>> f = sparsegrad.factorize(A)
    >>> x = f.solve(np.array([1.0, 2.0]))
    >>> bool(np.allclose(A @ x, [1.0, 2.0]))
    True

``sparsegrad.torch.solve`` (a ``torch.autograd.Function``) and ``sparsegrad.jax.spsolve``
(``jax.custom_vjp``) are built on the same factorization.
"""
from __future__ import annotations

import numpy as np

from . import _core
from ._core import SolveError

__all__ = ["factorize", "solve", "Factorization", "SolveError", "coo_of"]
__version__ = "0.1.0"


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
    if fmt == "coo":
        rows, cols = A.row, A.col
    else:
        major = np.repeat(np.arange(A.shape[0], dtype=np.int64), np.diff(A.indptr))
        rows, cols = (major, A.indices) if fmt == "csr" else (A.indices, major)
    return (
        n,
        np.ascontiguousarray(rows, dtype=np.int64),
        np.ascontiguousarray(cols, dtype=np.int64),
        np.ascontiguousarray(A.data, dtype=np.float64),
    )


def _as_2d(B, n, name="B"):
    B = np.asarray(B, dtype=np.float64)
    if B.ndim == 1:
        return B.reshape(-1, 1), True
    if B.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got {B.ndim}-D")
    return B, False


class Factorization:
    """A kept factorization of A (from :func:`factorize`).

    ``solve(B)`` = A⁻¹B, ``solve_transpose(B)`` = A⁻ᵀB, ``grad_values(adjoint, X)`` = dL/dA at A's
    stored entries (in A's entry order) given adjoint = A⁻ᵀ dL/dX and the solution X.
    """

    def __init__(self, core, nnz):
        self._core = core
        self.n = core.n
        self.nnz = nnz

    def solve(self, B):
        B2, vec = _as_2d(B, self.n)
        X = self._core.solve(B2)
        return X[:, 0] if vec else X

    def solve_transpose(self, B):
        B2, vec = _as_2d(B, self.n)
        Y = self._core.solve_transpose(B2)
        return Y[:, 0] if vec else Y

    def grad_values(self, adjoint, X):
        lam, _ = _as_2d(adjoint, self.n, "adjoint")
        X2, _ = _as_2d(X, self.n, "X")
        return self._core.grad_values(lam, X2)

    @property
    def info(self):
        """Method, storage (general / symmetric), size and the fallback reason, if any."""
        return self._core.info()


def factorize(A, method="auto", symmetric=None):
    """Factorizes a square scipy.sparse matrix (CSR, CSC, COO or any format scipy converts).

    method: "auto" (Cholesky for a symmetric matrix, falling back to LU when it is not positive
    definite; LU for a general one), "cholesky", "ldlt" or "lu".
    symmetric: None (default) treats A as symmetric when both triangles are stored and equal; True
    declares A symmetric — one triangle stored (the other implied) or both (checked equal);
    False forces a general (LU) factorization. With one triangle stored and symmetric=None, A is
    the triangular matrix as given.

    Raises ValueError for bad input (shape, index, non-finite value, asymmetric entries with
    symmetric=True), SolveError (a RuntimeError) when the factorization fails: not positive
    definite (with the column), singular, ill-conditioned.
    """
    n, rows, cols, data = coo_of(A)
    core = _core.factorize(n, rows, cols, data, method=method, symmetric=symmetric)
    return Factorization(core, data.size)


def solve(A, B, method="auto", symmetric=None):
    """X = A⁻¹B for a scipy.sparse A and a dense B (n or n x k)."""
    return factorize(A, method=method, symmetric=symmetric).solve(B)
