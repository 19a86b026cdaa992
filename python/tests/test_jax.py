import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from jax.test_util import check_grads  # noqa: E402

import sparsegrad_rs  # noqa: E402
from sparsegrad_rs.jax import spsolve  # noqa: E402
from conftest import general_matrix, spd_matrix  # noqa: E402


@pytest.mark.parametrize("make", [spd_matrix, general_matrix])
def test_spsolve_values_and_check_grads(rng, make):
    A = make(9, rng).tocsr()
    data, indices, indptr = jnp.array(A.data), jnp.array(A.indices), jnp.array(A.indptr)
    b = jnp.array(rng.standard_normal((9, 2)))
    x = spsolve(data, indices, indptr, b)
    assert np.max(np.abs(np.asarray(x) - np.linalg.solve(A.toarray(), np.asarray(b)))) < 1e-12
    f = lambda d, bb: spsolve(d, indices, indptr, bb)
    check_grads(f, (data, b), order=1, modes=["rev"], eps=1e-6)


def test_grad_under_jit_matches_dense(rng):
    A = general_matrix(10, rng).tocsr()
    data, indices, indptr = jnp.array(A.data), jnp.array(A.indices), jnp.array(A.indptr)
    b = jnp.array(rng.standard_normal(10))

    @jax.jit
    def loss(d, bb):
        return jnp.sum(spsolve(d, indices, indptr, bb) ** 2)

    gd, gb = jax.grad(loss, argnums=(0, 1))(data, b)
    rows = np.repeat(np.arange(10), np.diff(A.indptr))

    def dense_loss(d, bb):
        M = jnp.zeros((10, 10)).at[rows, A.indices].add(d)
        return jnp.sum(jnp.linalg.solve(M, bb) ** 2)

    rd, rb = jax.grad(dense_loss, argnums=(0, 1))(data, b)
    assert np.max(np.abs(np.asarray(gd - rd))) <= 1e-10 * np.max(np.abs(np.asarray(rd)))
    assert np.max(np.abs(np.asarray(gb - rb))) <= 1e-10 * np.max(np.abs(np.asarray(rb)))


def test_singular_raises():
    data = jnp.array([1.0, 2.0, 2.0, 4.0])
    indices = jnp.array([0, 1, 0, 1])
    indptr = jnp.array([0, 2, 4])
    # An eager call raises the library's own exception, not JAX's runtime wrapper.
    with pytest.raises(sparsegrad_rs.SolveError, match="singular"):
        jax.block_until_ready(spsolve(data, indices, indptr, jnp.ones(2), method="lu"))
    # Shapes are checked when traced: a clear ValueError, under jit too.
    with pytest.raises(ValueError, match=r"b has 3 rows \(shape \(3,\)\), the matrix is 2 × 2"):
        jax.jit(lambda d: spsolve(d, indices, indptr, jnp.ones(3)))(data)
    with pytest.raises(ValueError, match="data and indices must be 1-D of one length"):
        spsolve(data[:3], indices, indptr, jnp.ones(2))
    # Under an outer jit the solve is an XLA FFI call: JAX's error whose text is the library's
    # message, on its first line (not at the bottom of a callback traceback).
    with pytest.raises(jax.errors.JaxRuntimeError) as raised:
        jax.block_until_ready(jax.jit(lambda d: spsolve(d, indices, indptr, jnp.ones(2),
                                                        method="lu"))(data))
    first = str(raised.value).splitlines()[0]
    assert "SolveError: matrix is singular" in first, first
    # A bad index found on the host is a ValueError naming the entry.
    with pytest.raises(ValueError, match=r"entry 3 at \(1, 5\) is outside the 2 × 2 matrix"):
        spsolve(data, jnp.array([0, 1, 0, 5]), indptr, jnp.ones(2))


def test_ffi_solve_batches_and_dtypes():
    """The non-differentiated solve (an FFI call) under vmap — right-hand sides of one matrix,
    a batch of matrices, nested — with float32 and int32 inputs, against NumPy."""
    indices, indptr = jnp.array([0, 1, 0, 1]), jnp.array([0, 2, 4])
    A = jnp.array([4.0, 1.0, 1.0, 3.0])
    M = np.array([[4.0, 1.0], [1.0, 3.0]])
    B = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    solve = lambda d, bb: spsolve(d, indices, indptr, bb)  # noqa: E731
    xs = jax.jit(jax.vmap(solve, in_axes=(None, 0)))(A, B)
    assert np.abs(np.asarray(xs) - np.linalg.solve(M, np.asarray(B).T).T).max() <= 1e-15
    Ds = jnp.stack([A, 2 * A, 3 * A])
    xs = jax.vmap(solve)(Ds, B)
    ref = np.stack([np.linalg.solve((i + 1) * M, np.asarray(B)[i]) for i in range(3)])
    assert np.abs(np.asarray(xs) - ref).max() <= 1e-15
    xs = jax.vmap(jax.vmap(solve, in_axes=(None, 0)), in_axes=(0, None))(Ds, B)
    ref = np.stack([[np.linalg.solve((i + 1) * M, np.asarray(B)[j]) for j in range(3)]
                    for i in range(3)])
    assert xs.shape == (3, 3, 2) and np.abs(np.asarray(xs) - ref).max() <= 1e-15
    X = spsolve(A, indices, indptr, jnp.ones((2, 3)))
    assert np.abs(np.asarray(X) - np.linalg.solve(M, np.ones((2, 3)))).max() <= 1e-15
    x32 = spsolve(A.astype(jnp.float32), indices.astype(jnp.int32), indptr.astype(jnp.int32),
                  jnp.ones(2, jnp.float32))
    assert x32.dtype == jnp.float32
    assert np.abs(np.asarray(x32) - np.linalg.solve(M, np.ones(2))).max() <= 1e-7


def _rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS")


def test_jitted_solves_without_gradients_keep_nothing():
    """200 jitted, non-differentiated solves on a 30³ grid (27 000 unknowns): resident memory
    after them is at most 1.2× that after the first, and no factorization is kept."""
    import scipy.sparse as sp
    from sparsegrad_rs import jax as sgj

    k = 30
    T = sp.diags([-np.ones(k - 1), 2 * np.ones(k), -np.ones(k - 1)], [-1, 0, 1])
    I = sp.identity(k)
    A = (sp.kron(sp.kron(T, I), I) + sp.kron(sp.kron(I, T), I) + sp.kron(sp.kron(I, I), T)
         + 0.1 * sp.identity(k ** 3)).tocsr()
    A.sort_indices()
    indices, indptr = jnp.array(A.indices), jnp.array(A.indptr)
    solve = jax.jit(lambda d, bb: spsolve(d, indices, indptr, bb))
    b = jnp.ones(k ** 3)
    data = jnp.array(A.data)
    kept_before = sgj._kept_count()
    jax.block_until_ready(solve(data, b))
    after_one = _rss_mib()
    for i in range(199):
        x = solve(data * (1.0 + 1e-3 * (i % 7)), b)
    jax.block_until_ready(x)
    after_200 = _rss_mib()
    assert sgj._kept_count() == kept_before  # a solve not differentiated keeps nothing
    print(f"RSS {after_one:.0f} MiB after 1 solve, {after_200:.0f} MiB after 200")
    assert after_200 <= 1.2 * after_one, f"{after_one:.0f} MiB after 1, {after_200:.0f} after 200"
    last = (1.0 + 1e-3 * (198 % 7)) * A      # the matrix of the last solve
    assert np.max(np.abs(last @ np.asarray(x) - np.asarray(b))) < 1e-8


# --- forward mode and second order ---------------------------------------------------------------


def _cases(rng):
    """(name, data, indices, indptr, symmetric, dense(data)) for an SPD matrix (both triangles), a
    general one, and an SPD one given by its lower triangle with symmetric=True (mirrored)."""
    spd, gen = spd_matrix(8, rng).tocsr(), general_matrix(8, rng).tocsr()
    low = sp_tril(spd)
    out = []
    for name, A, symmetric in (("spd", spd, None), ("general", gen, None),
                               ("lower triangle", low, True)):
        A.sort_indices()
        rows = np.repeat(np.arange(8), np.diff(A.indptr))
        cols = A.indices
        mirror = symmetric is True

        def dense(d, rows=rows, cols=cols, mirror=mirror):
            M = jnp.zeros((8, 8), d.dtype).at[rows, cols].add(d)
            if mirror:
                M = M + M.T - jnp.diag(jnp.diag(M))
            return M
        out.append((name, jnp.array(A.data), jnp.array(A.indices), jnp.array(A.indptr), symmetric,
                    dense))
    return out


def sp_tril(A):
    import scipy.sparse as sp
    return sp.csr_matrix(sp.tril(A))


def test_second_order_check_grads_forward_and_reverse(rng):
    """check_grads to order 2 in forward and reverse mode, one and three right-hand sides."""
    for name, data, indices, indptr, symmetric, _ in _cases(rng):
        for b in (jnp.array(rng.standard_normal(8)), jnp.array(rng.standard_normal((8, 3)))):
            f = lambda d, bb: spsolve(d, indices, indptr, bb, symmetric=symmetric)
            check_grads(f, (data, b), order=2, modes=("fwd", "rev"), eps=1e-5, atol=1e-6,
                        rtol=1e-6)


def test_jvp_hessian_and_vmap_match_dense_jax(rng):
    """jax.jvp, jax.hessian (jacfwd of jacrev), jacrev and vmap over data and over b, against
    the same functions of a dense jnp.linalg.solve: ≤ 1e-10 relative."""
    for name, data, indices, indptr, symmetric, dense in _cases(rng):
        b = jnp.array(rng.standard_normal((8, 2)))

        def ours(d, bb=b):
            x = spsolve(d, indices, indptr, bb, symmetric=symmetric)
            return jnp.sum(jnp.sin(x)) + 0.5 * jnp.sum(x ** 2)

        def ref(d, bb=b):
            x = jnp.linalg.solve(dense(d), bb)
            return jnp.sum(jnp.sin(x)) + 0.5 * jnp.sum(x ** 2)

        def close(a, r, what):
            a, r = np.asarray(a), np.asarray(r)
            err = np.max(np.abs(a - r)) / max(np.max(np.abs(r)), 1e-300)
            assert err <= 1e-10, f"{name}: {what} off by {err:.2e}"

        v = jnp.array(rng.standard_normal(data.shape))
        xs = lambda d: spsolve(d, indices, indptr, b, symmetric=symmetric)
        xr = lambda d: jnp.linalg.solve(dense(d), b)
        jit = jax.jit
        close(jit(lambda d: jax.jvp(xs, (d,), (v,))[1])(data), jit(lambda d: jax.jvp(xr, (d,), (v,))[1])(data),
              "jvp")
        close(jit(jax.hessian(ours))(data), jit(jax.hessian(ref))(data), "hessian")
        close(jit(jax.jacrev(xs))(data), jit(jax.jacrev(xr))(data), "jacrev")
        # Hessian-vector product, forward over reverse (eager, not jitted).
        close(jax.jvp(jax.grad(ours), (data,), (v,))[1], jax.jvp(jax.grad(ref), (data,), (v,))[1],
              "hvp")
        batch = jnp.stack([data * (1.0 + 0.1 * k) for k in range(3)])
        close(jit(jax.vmap(jax.grad(ours)))(batch), jit(jax.vmap(jax.grad(ref)))(batch),
              "vmap over data")
        bs = jnp.array(rng.standard_normal((4, 8, 2)))
        close(jit(jax.vmap(jax.grad(ours), in_axes=(None, 0)))(data, bs),
              jit(jax.vmap(jax.grad(ref), in_axes=(None, 0)))(data, bs), "vmap over b")


def test_derivatives_reuse_one_factorization(rng):
    """A gradient, a Hessian-vector product and a full Hessian each run one numeric
    factorization (counted on the cached pattern): every derivative solve reuses it."""
    from sparsegrad_rs import _core

    A = general_matrix(12, rng).tocsr()
    A.sort_indices()
    data, indices, indptr = jnp.array(A.data), jnp.array(A.indices), jnp.array(A.indptr)
    rows = np.repeat(np.arange(12), np.diff(A.indptr)).astype(np.int64)
    cols = A.indices.astype(np.int64)
    b = jnp.array(rng.standard_normal(12))
    loss = lambda d: jnp.sum(spsolve(d, indices, indptr, b) ** 2)
    jax.block_until_ready(loss(data))  # the pattern is cached from here on

    def factorizations():
        return _core.analyses_of(12, rows, cols, False)[1]

    for name, run in (("grad", lambda: jax.grad(loss)(data)),
                      ("hvp", lambda: jax.jvp(jax.grad(loss), (data,), (data,))[1]),
                      ("hessian", lambda: jax.hessian(loss)(data)),
                      ("jit(grad)", lambda: jax.jit(jax.grad(loss))(data))):
        before = factorizations()
        jax.block_until_ready(run())
        assert factorizations() - before == 1, name
