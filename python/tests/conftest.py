import numpy as np
import pytest
import scipy.sparse as sp


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def spd_matrix(n, rng, density=0.2):
    """A random sparse SPD matrix (both triangles stored)."""
    M = sp.random(n, n, density=density, random_state=rng, format="csr")
    A = M @ M.T + sp.identity(n) * n * 0.5
    return sp.csr_matrix(A)


def general_matrix(n, rng, density=0.3):
    """A random sparse non-symmetric, well-conditioned matrix."""
    M = sp.random(n, n, density=density, random_state=rng, format="csr")
    A = M + sp.identity(n) * 3.0 + sp.diags(np.arange(1, n), 1, shape=(n, n)) * 0.5
    A = sp.csr_matrix(A)
    assert abs(A - A.T).max() > 0.1
    return A


def dense_entry_grad(A_dense, B, rows, cols, symmetric_pair=False):
    """dL/dA at the given entries for L = sum(X**2), X = A^{-1} B (dense reference, true A^{-T})."""
    X = np.linalg.solve(A_dense, B)
    lam = np.linalg.solve(A_dense.T, 2.0 * X)
    G = -lam @ X.T
    g = G[rows, cols]
    if symmetric_pair:
        off = rows != cols
        g = g + np.where(off, G[cols, rows], 0.0)
    return X, g
