"""Issue 27: no silent wrong number from Python. One test per class that returned a wrong,
non-finite or unverified result (or aborted the interpreter) before, plus a seeded property test
against dense solves."""
import subprocess
import sys
import textwrap

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import torch  # noqa: E402

import sparsegrad_rs  # noqa: E402
import sparsegrad_rs.jax as sgj  # noqa: E402
import sparsegrad_rs.torch as sgt  # noqa: E402
from sparsegrad_rs import _core  # noqa: E402


def test_symmetry_is_judged_per_entry_next_to_a_penalty():
    # A 1e15 penalty next to an unsymmetric 2x2 block: a global tolerance (1e-12 * max|A|) read
    # the block as symmetric and dropped its upper values (x = [0, .909, .909]).
    A = np.array([[1e15, 0.0, 0.0], [0.0, 2.0, 1.0], [0.0, 0.5, 2.0]])
    b = np.array([0.0, 2.0, 2.0])
    ref = np.linalg.solve(A, b)
    f = sparsegrad_rs.factorize(sp.csr_matrix(A))
    assert f.info["storage"] == "general"
    x = f.solve(b)
    assert np.allclose(ref, [0.0, 2.0 / 3.5, 3.0 / 3.5], rtol=1e-15, atol=0)
    assert np.max(np.abs(x - ref)) <= 1e-15
    with pytest.raises(ValueError, match="symmetric"):
        sparsegrad_rs.factorize(sp.csr_matrix(A), symmetric=True)
    # A truly symmetric matrix with the same penalty is still read as symmetric.
    S = A.copy()
    S[2, 1] = 1.0
    assert sparsegrad_rs.factorize(sp.csr_matrix(S)).info["storage"] == "symmetric (both triangles)"


def test_a_non_finite_solution_is_an_error():
    # diag(1e-300, 1), b = (1e300, 1): x = [inf, 1] was returned.
    A = sp.csr_matrix(np.diag([1e-300, 1.0]))
    for method in ["auto", "cholesky", "ldlt", "lu"]:
        with pytest.raises(sparsegrad_rs.SolveError, match="non-finite"):
            sparsegrad_rs.solve(A, np.array([1e300, 1.0]), method=method)
    f = sparsegrad_rs.factorize(A)
    with pytest.raises(sparsegrad_rs.SolveError, match="non-finite"):
        f.solve_transpose(np.array([1e300, 1.0]))


def test_numerically_singular_matrices_are_refused():
    A = sp.csr_matrix(np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [5.0, 7.0, 9.0]]))
    for b in [np.ones(3), np.array([1.0, 2.0, 3.0])]:
        with pytest.raises(sparsegrad_rs.SolveError, match="singular"):
            sparsegrad_rs.solve(A, b)


def test_condition_limit_is_implemented():
    # kappa = 1e15 and 1e20 passed silently whatever the docstring promised.
    for kappa in [1e15, 1e20]:
        A = sp.csr_matrix(np.array([[1.0, 0.0], [0.0, 1.0 / kappa]]) + np.array([[0, 1e-3], [0, 0]]))
        x = sparsegrad_rs.solve(A, np.ones(2))  # badly scaled, not singular: solved
        ref = np.linalg.solve(A.toarray(), np.ones(2))
        assert np.max(np.abs(x - ref)) <= 1e-12 * np.max(np.abs(ref))
        with pytest.raises(sparsegrad_rs.SolveError, match="ill-conditioned|condition"):
            sparsegrad_rs.factorize(A, condition_limit=1e12)
    f = sparsegrad_rs.factorize(sp.csr_matrix(np.diag([2.0, 1.0])), condition_limit=1e12)
    assert f.info["condition_limit"] == 1e12
    with pytest.raises(ValueError, match="condition_limit"):
        sparsegrad_rs.factorize(sp.csr_matrix(np.eye(2)), condition_limit=float("nan"))


def test_integer_inputs_are_promoted_and_complex_inputs_refused():
    # An integer torch A/B returned x = [0, 0] instead of [0.25, 0.75].
    idx = torch.tensor([[0, 1, 0, 1], [0, 1, 1, 0]])
    A = torch.sparse_coo_tensor(idx, torch.tensor([4, 4, 0, 0]), (2, 2))
    x = sgt.solve(A, torch.tensor([1, 3]))
    assert x.dtype == torch.float64 and torch.allclose(x, torch.tensor([0.25, 0.75], dtype=torch.float64))
    x = sgt.solve_coo(idx, torch.tensor([4, 4, 0, 0]), torch.tensor([1, 3]), 2)
    assert x.dtype == torch.float64 and torch.allclose(x, torch.tensor([0.25, 0.75], dtype=torch.float64))
    # JAX: integer b gives a float result.
    data, indices, indptr = jnp.array([4.0, 4.0]), jnp.array([0, 1]), jnp.array([0, 1, 2])
    xj = sgj.spsolve(data, indices, indptr, jnp.array([1, 3]))
    assert jnp.issubdtype(xj.dtype, jnp.floating) and np.allclose(np.asarray(xj), [0.25, 0.75])
    xj = sgj.spsolve(jnp.array([4, 4]), indices, indptr, jnp.array([1, 3]))
    assert xj.dtype == jnp.float64 and np.allclose(np.asarray(xj), [0.25, 0.75])
    # SciPy / NumPy: integer matrices and right-hand sides are promoted.
    xs = sparsegrad_rs.solve(sp.csr_matrix(np.array([[4, 0], [0, 4]])), np.array([1, 3]))
    assert xs.dtype == np.float64 and np.allclose(xs, [0.25, 0.75])
    # Complex anywhere: a TypeError naming the argument (the imaginary part was dropped).
    Ac = sp.csr_matrix(np.array([[4.0 + 1j, 0], [0, 4]]))
    with pytest.raises(TypeError, match="A has complex"):
        sparsegrad_rs.solve(Ac, np.ones(2))
    with pytest.raises(TypeError, match="B has complex"):
        sparsegrad_rs.solve(sp.csr_matrix(np.eye(2)), np.array([1 + 1j, 1]))
    with pytest.raises(TypeError, match="complex"):
        sgt.solve(A.to(torch.complex128), torch.ones(2, dtype=torch.float64))
    with pytest.raises(TypeError, match="B has complex"):
        sgt.solve(A.double(), torch.ones(2, dtype=torch.complex128))
    with pytest.raises(TypeError, match="b has complex"):
        sgj.spsolve(data, indices, indptr, jnp.array([1 + 1j, 1]))
    with pytest.raises(TypeError, match="data has complex"):
        sgj.spsolve(data.astype(jnp.complex128), indices, indptr, jnp.ones(2))


def test_torch_double_backward_is_exact_or_refused():
    # create_graph=True once silently dropped the solve's term of a Hessian-vector product; now
    # the backward is differentiable (H·v equals dense torch's) and the one first-order-only
    # path (batched values) refuses.
    w = torch.tensor([2.0, 3.0], dtype=torch.float64, requires_grad=True)
    idx = torch.tensor([[0, 1, 0, 1], [0, 1, 1, 0]])
    one = torch.ones(2, dtype=torch.float64)

    def entries(w):
        return torch.stack([1 + w[0], 1 + w[0] + w[1], -w[0], -w[0]])

    def loss(w):
        return sgt.solve(torch.sparse_coo_tensor(idx, entries(w), (2, 2)), one).sum() + (w ** 2).sum()

    def dense(w):
        D = torch.stack([torch.stack([1 + w[0], -w[0]]), torch.stack([-w[0], 1 + w[0] + w[1]])])
        return torch.linalg.solve(D, one).sum() + (w ** 2).sum()

    def loss_coo(w):
        return sgt.solve_coo(idx, entries(w), one, 2).sum() + (w ** 2).sum()

    v = torch.tensor([0.3, -1.1], dtype=torch.float64)
    _, hv = torch.autograd.functional.hvp(loss_coo, w.detach(), v)
    _, hv_dense = torch.autograd.functional.hvp(dense, w.detach(), v)
    assert torch.allclose(hv, hv_dense, rtol=1e-12, atol=1e-14)
    # Through torch.sparse_coo_tensor(values) PyTorch drops the second-order terms: refused.
    for make in (lambda: torch.sparse_coo_tensor(idx, entries(w), (2, 2)),
                 lambda: torch.sparse_coo_tensor(idx, entries(w), (2, 2)).coalesce().to_sparse_csr()):
        with pytest.raises(RuntimeError, match="first order only"):
            torch.autograd.grad(sgt.solve(make(), one).sum(), w, create_graph=True)
        with pytest.raises(RuntimeError, match="first order only"):
            torch.autograd.grad(sgt.factorize(make()).solve(one).sum(), w, create_graph=True)
        (g1,) = torch.autograd.grad(sgt.solve(make(), one).sum(), w)   # first order: fine
        assert torch.allclose(g1, torch.autograd.grad(loss_coo(w) - (w ** 2).sum(), w)[0],
                              atol=1e-14)
    batched = lambda w: sgt.solve_coo(idx, torch.stack([entries(w), entries(w)]), one, 2).sum()
    with pytest.raises(RuntimeError, match="first order only"):
        torch.autograd.grad(batched(w), w, create_graph=True)
    (g,) = torch.autograd.grad(batched(w), w)
    w2 = w.detach().clone().requires_grad_(True)
    (2 * (dense(w2) - (w2 ** 2).sum())).backward()
    assert torch.allclose(g, w2.grad, atol=1e-14)


def test_allocation_failure_is_a_memory_error_not_an_abort():
    # n = 5e7 under RLIMIT_AS aborted the interpreter (SIGABRT in _core::pattern).
    script = textwrap.dedent("""
        import resource, numpy as np
        from sparsegrad_rs import _core
        m = 5_000_000
        rows = np.arange(m, dtype=np.int64); cols = rows.copy(); data = np.ones(m)
        vm = int([l for l in open('/proc/self/status') if l.startswith('VmSize')][0].split()[1]) * 1024
        outcomes = []
        for extra in [16, 64, 128, 256, 400, 600, 900, 1400]:
            limit = vm + extra * 2**20
            resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
            try:
                _core.factorize(m, rows, cols, data, method="cholesky", symmetric=True)
                outcomes.append("ok")
            except MemoryError:
                outcomes.append("memory")
            _core.clear_patterns()
        print(",".join(outcomes))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    outcomes = done.stdout.strip().split(",")
    assert len(outcomes) == 8 and "memory" in outcomes, outcomes


def test_jax_keeps_one_evaluations_factorizations():
    """Plain solves keep nothing; a gradient keeps its factorization until the next
    differentiated call factors (an optimization loop holds one); a pending ``jax.vjp`` keeps its
    own; forward-mode calls keep at most ``KEEP``; ``release_memory`` drops all."""
    sparsegrad_rs.release_memory()
    A = sp.random(50, 50, density=0.1, random_state=3, format="csr") + sp.identity(50, format="csr") * 4
    A = sp.csr_matrix(A)
    data, indices, indptr = jnp.array(A.data), jnp.array(A.indices), jnp.array(A.indptr)
    b = jnp.ones(50)
    for _ in range(40):
        sgj.spsolve(data, indices, indptr, b).block_until_ready()
    assert sgj._kept_count() == 0  # 40 plain solves kept 40 factorizations (up to 32) before
    grad = jax.grad(lambda d: sgj.spsolve(d, indices, indptr, b).sum())
    for i in range(10):
        grad(data * (1.0 + 0.01 * i)).block_until_ready()
        assert sgj._kept_count() == 1  # this gradient's; the previous one's was released
    for i in range(40):
        jax.jvp(lambda d: sgj.spsolve(d, indices, indptr, b), (data,), (data * (1.0 + i),))
    assert sgj._kept_count() == sgj.KEEP
    _, pending = jax.vjp(lambda d: sgj.spsolve(d, indices, indptr, b), data)
    assert sgj._kept_count() == sgj.KEEP
    sparsegrad_rs.release_memory()
    assert sgj._kept_count() == 0 and _core.cached_patterns() == 0
    # A dropped factorization is made again: the cotangent is still right.
    (gd,) = pending(jnp.ones(50))
    x = np.linalg.solve(A.toarray(), np.ones(50))
    lam = np.linalg.solve(A.toarray().T, np.ones(50))
    rows = np.repeat(np.arange(50), np.diff(A.indptr))
    assert np.allclose(np.asarray(gd), -lam[rows] * x[A.indices], rtol=1e-12, atol=1e-14)


def test_minor_inputs_get_clear_errors():
    f = sparsegrad_rs.factorize(sp.csr_matrix(np.array([[2.0, 1.0], [0.0, 3.0]])))
    x = f.solve(np.ones(2))
    with pytest.raises(ValueError, match="non-finite"):
        f.grad_values(np.array([np.nan, 1.0]), x)
    idx = torch.tensor([[0, 1], [0, 1]])
    with pytest.raises(TypeError, match="n must be an integer"):
        sgt.solve_coo(idx, torch.ones(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64), 2.7)
    with pytest.raises(ValueError, match="indptr decreases"):
        sgj.spsolve(jnp.ones(2), jnp.array([0, 1]), jnp.array([0, 2, 1]), jnp.ones(2)).block_until_ready()
    bad = sp.csr_matrix(np.eye(3))
    bad.indptr = np.array([0, 2, 1, 3], dtype=bad.indptr.dtype)
    with pytest.raises(ValueError, match="indptr"):
        sparsegrad_rs.solve(bad, np.ones(3))


def _random_system(rng, n, kind):
    A = np.zeros((n, n))
    mask = rng.random((n, n)) < 0.3
    A[mask] = rng.standard_normal(mask.sum())
    A += np.diag(n + rng.random(n))
    if kind == "symmetric":
        A = A + A.T
    elif kind == "blocks":
        # Non-symmetric blocks of wildly different scales, next to a symmetric penalty.
        scales = 10.0 ** rng.integers(-8, 9, size=n)
        A = A * np.sqrt(scales[:, None] * scales[None, :])
        A[0, :] = 0
        A[:, 0] = 0
        A[0, 0] = 1e15
    elif kind == "integer":
        A = np.rint(A * 3)
        A += np.diag(np.abs(A).sum(axis=1) + 1)
    return A


def test_property_solve_matches_dense():
    rng = np.random.default_rng(2027)
    for trial in range(120):
        n = int(rng.integers(1, 9))
        kind = ["general", "symmetric", "blocks", "integer", "float32"][trial % 5]
        A = _random_system(rng, n, kind)
        B = rng.standard_normal((n, int(rng.integers(1, 4))))
        if kind == "integer":
            A = A.astype(np.int64)
            B = np.rint(B * 4).astype(np.int64)
        ref = np.linalg.solve(A.astype(np.float64), B.astype(np.float64))
        if kind == "float32":
            A32, B32 = A.astype(np.float32), B.astype(np.float32)
            ref = np.linalg.solve(A32.astype(np.float64), B32.astype(np.float64))
            idx, vals = np.nonzero(A32), A32[np.nonzero(A32)]
            x = sgt.solve(torch.sparse_coo_tensor(torch.tensor(np.vstack(idx), dtype=torch.int64),
                                                  torch.from_numpy(vals), (n, n)),
                          torch.from_numpy(B32))
            assert x.dtype == torch.float32
            assert np.max(np.abs(x.double().numpy() - ref)) <= 1e-5 * max(1.0, np.abs(ref).max())
            continue
        M = sp.coo_matrix(A)
        X = sparsegrad_rs.solve(M, B)
        scale = np.abs(ref).max()
        assert np.max(np.abs(X - ref)) <= 1e-8 * scale + 1e-300, (trial, kind, X, ref)
        # The same system through torch and JAX.
        xt = sgt.solve(torch.sparse_coo_tensor(torch.tensor(np.vstack([M.row, M.col]), dtype=torch.int64),
                                               torch.from_numpy(M.data), (n, n)),
                       torch.from_numpy(B))
        assert xt.is_floating_point() and np.max(np.abs(xt.double().numpy() - ref)) <= 1e-8 * scale + 1e-300
        C = M.tocsr()
        xj = sgj.spsolve(jnp.array(C.data), jnp.array(C.indices), jnp.array(C.indptr), jnp.array(B))
        assert np.max(np.abs(np.asarray(xj, dtype=np.float64) - ref)) <= 1e-8 * scale + 1e-300
