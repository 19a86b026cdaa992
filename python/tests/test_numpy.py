import numpy as np
import pytest
import scipy.sparse as sp

import sparsegrad_rs
from sparsegrad_rs import _core
from conftest import dense_entry_grad, general_matrix, spd_matrix


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_spd_solve_and_gradient_at_stored_entries(rng, fmt):
    A = spd_matrix(30, rng).asformat(fmt)
    B = rng.standard_normal((30, 3))
    f = sparsegrad_rs.factorize(A)
    assert f.info["storage"] == "symmetric (both triangles)"
    X = f.solve(B)
    _, rows, cols, _ = sparsegrad_rs.coo_of(A)
    X_ref, g_ref = dense_entry_grad(A.toarray(), B, rows, cols)
    assert np.max(np.abs(X - X_ref)) <= 1e-12 * np.max(np.abs(X_ref))
    g = f.grad_values(f.solve_transpose(2.0 * X), X)
    assert g.shape == (A.nnz,)
    assert np.max(np.abs(g - g_ref)) <= 1e-10 * np.max(np.abs(g_ref))


def test_one_triangle_symmetric_input_counts_each_entry_twice(rng):
    A = spd_matrix(25, rng)
    L = sp.tril(A).tocsr()
    B = rng.standard_normal(25)
    f = sparsegrad_rs.factorize(L, symmetric=True)
    assert f.info["storage"] == "symmetric (one triangle)"
    x = f.solve(B)
    _, rows, cols, _ = sparsegrad_rs.coo_of(L)
    X_ref, g_ref = dense_entry_grad(A.toarray(), B[:, None], rows, cols, symmetric_pair=True)
    assert np.allclose(x, X_ref[:, 0], rtol=0, atol=1e-12 * np.abs(X_ref).max())
    g = f.grad_values(f.solve_transpose(2.0 * x), x)
    assert np.max(np.abs(g - g_ref)) <= 1e-10 * np.max(np.abs(g_ref))
    # Without symmetric=True the same triangle is a triangular matrix.
    t = sparsegrad_rs.factorize(L)
    assert t.info["storage"] == "general"
    assert np.allclose(t.solve(B), np.linalg.solve(L.toarray(), B))


def test_non_symmetric_adjoint_uses_the_transpose(rng):
    A = general_matrix(20, rng)
    B = rng.standard_normal((20, 2))
    f = sparsegrad_rs.factorize(A)
    assert f.info["storage"] == "general"
    X = f.solve(B)
    _, rows, cols, _ = sparsegrad_rs.coo_of(A)
    _, g_ref = dense_entry_grad(A.toarray(), B, rows, cols)
    g = f.grad_values(f.solve_transpose(2.0 * X), X)
    assert np.max(np.abs(g - g_ref)) <= 1e-10 * np.max(np.abs(g_ref))
    # An adjoint with A instead of Aᵀ gives a different gradient: this test would catch it.
    wrong = f.grad_values(f.solve(2.0 * X), X)
    assert np.max(np.abs(wrong - g_ref)) > 1e-3 * np.max(np.abs(g_ref))
    # Finite differences on three entries.
    loss = lambda M: float(np.sum(np.linalg.solve(M, B) ** 2))
    Ad = A.toarray()
    for e in [0, A.nnz // 2, A.nnz - 1]:
        h = 1e-6
        Ap, Am = Ad.copy(), Ad.copy()
        Ap[rows[e], cols[e]] += h
        Am[rows[e], cols[e]] -= h
        fd = (loss(Ap) - loss(Am)) / (2 * h)
        assert abs(g[e] - fd) <= 1e-6 * max(1.0, abs(fd))


def test_duplicate_entries_are_summed_and_each_gets_the_gradient(rng):
    rows = np.array([0, 1, 1, 0, 1])
    cols = np.array([0, 1, 1, 1, 0])
    data = np.array([4.0, 1.5, 1.5, 1.0, 1.0])  # (1, 1) given twice: 3.0
    A = sp.coo_matrix((data, (rows, cols)), shape=(2, 2))
    f = sparsegrad_rs.factorize(A)
    b = np.array([1.0, 2.0])
    x = f.solve(b)
    dense = np.array([[4.0, 1.0], [1.0, 3.0]])
    assert np.allclose(x, np.linalg.solve(dense, b), atol=1e-14)
    g = f.grad_values(f.solve_transpose(2 * x), x)
    assert g[1] == g[2]


def test_pattern_cache_reuses_the_symbolic_analysis(rng):
    A = spd_matrix(40, rng)
    n, rows, cols, _ = sparsegrad_rs.coo_of(A)
    for k in range(3):
        A2 = A.copy()
        A2.data = A.data * (1.0 + 0.1 * k)
        x = sparsegrad_rs.solve(A2, np.ones(40))
        assert np.allclose(A2 @ x, 1.0, atol=1e-10)
    analyses, factorizations = _core.analyses_of(n, rows, cols, True)
    assert analyses == 1
    assert factorizations == 3


def test_methods_and_multi_rhs(rng):
    A = spd_matrix(20, rng)
    B = rng.standard_normal((20, 5))
    ref = np.linalg.solve(A.toarray(), B)
    for method in ["auto", "cholesky", "ldlt", "lu"]:
        X = sparsegrad_rs.factorize(A, method=method).solve(B)
        assert np.max(np.abs(X - ref)) <= 1e-11 * np.abs(ref).max(), method


def test_errors_are_exceptions(rng):
    indefinite = sp.csr_matrix(np.array([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(sparsegrad_rs.SolveError, match="column"):
        sparsegrad_rs.factorize(indefinite, method="cholesky")
    # auto falls back to LU and says why
    f = sparsegrad_rs.factorize(indefinite)
    assert "not positive definite" in f.info["fallback_reason"]
    assert f.info["requested"] == "auto" and f.info["method"] == "lu"
    spd = sparsegrad_rs.factorize(sp.csr_matrix(np.eye(2) * 2))
    assert spd.info["method"] == "cholesky"
    assert repr(spd) == ("sparsegrad_rs.Factorization(n=2, nnz=2, method='cholesky', "
                         "storage='symmetric (one triangle)')")
    singular = sp.csr_matrix(np.array([[1.0, 2.0], [2.0, 4.0]]))
    # LU finds the zero pivot when it is used: the solve raises, it never returns inf/NaN.
    with pytest.raises(sparsegrad_rs.SolveError, match="singular"):
        sparsegrad_rs.solve(singular, np.ones(2), method="lu")
    good = sp.csr_matrix(np.eye(3))
    with pytest.raises(ValueError, match="rows"):
        sparsegrad_rs.solve(good, np.ones(4))
    with pytest.raises(ValueError, match="square"):
        sparsegrad_rs.factorize(sp.csr_matrix(np.ones((2, 3))))
    bad = good.copy()
    bad.data[1] = np.nan
    with pytest.raises(ValueError, match="non-finite|NaN"):
        sparsegrad_rs.factorize(bad)
    asym = sp.csr_matrix(np.array([[2.0, 1.0], [0.5, 2.0]]))
    with pytest.raises(ValueError, match="symmetric"):
        sparsegrad_rs.factorize(asym, symmetric=True)
    with pytest.raises(ValueError, match="method"):
        sparsegrad_rs.factorize(good, method="qr")
    with pytest.raises(ValueError, match="outside"):
        _core.factorize(2, np.array([0, 5]), np.array([0, 1]), np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="non-finite"):
        sparsegrad_rs.solve(good, np.array([1.0, np.inf, 0.0]))


def test_float32_in_float32_out(rng):
    """A float32 B gives a float32 X (computed in float64 and cast, as torch and JAX do)."""
    A = spd_matrix(10, rng)
    B = rng.standard_normal((10, 2))
    f = sparsegrad_rs.factorize(A)
    x64 = f.solve(B)
    for method in (f.solve, f.solve_transpose):
        x32 = method(B.astype(np.float32))
        assert x32.dtype == np.float32
        assert np.max(np.abs(x32 - x64)) <= 1e-6 * np.max(np.abs(x64))
    assert f.solve(B.astype(np.int64)).dtype == np.float64
