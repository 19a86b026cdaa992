"""precision= (issue 33): mixed precision gives the double results on a 3D grid large enough to
use the multifrontal factor, single precision is within 1e-4, auto resolves by size, what ran is
in info, and bad values are ValueErrors — through SciPy and PyTorch."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch

import sparsegrad_rs
import sparsegrad_rs.torch as sgt


def grid3(k, shift=0.01):
    """shift·I + the 7-point Laplacian of a k³ grid (SPD), CSR."""
    one = sp.diags([-np.ones(k - 1), 2.0 * np.ones(k), -np.ones(k - 1)], [-1, 0, 1])
    eye = sp.identity(k)
    lap = (sp.kron(sp.kron(one, eye), eye) + sp.kron(sp.kron(eye, one), eye)
           + sp.kron(sp.kron(eye, eye), one))
    return (lap + shift * sp.identity(k ** 3)).tocsr()


def test_mixed_matches_double_and_single_is_close(rng):
    A = grid3(22)
    B = rng.standard_normal((A.shape[0], 2))
    double = sparsegrad_rs.factorize(A)
    mixed = sparsegrad_rs.factorize(A, precision="mixed")
    single = sparsegrad_rs.factorize(A, precision="single")
    X = double.solve(B)
    Xm, Xs = mixed.solve(B), single.solve(B)
    scale = np.abs(X).max()
    assert np.abs(Xm - X).max() <= 1e-12 * scale
    err = np.abs(Xs - X).max() / scale
    assert 1e-10 < err <= 1e-4, err
    # Gradients at the stored entries from the mixed factor: equal to double's.
    g = double.grad_values(double.solve_transpose(2.0 * X), X)
    gm = mixed.grad_values(mixed.solve_transpose(2.0 * Xm), Xm)
    assert np.abs(gm - g).max() <= 1e-10 * np.abs(g).max()
    assert (double.info["precision"], mixed.info["precision"], single.info["precision"]) == (
        "double", "mixed", "single")
    forward, adjoint = mixed.info["refinement_steps"]
    assert 1 <= forward <= 5 and 1 <= adjoint <= 5
    assert double.info["refinement_steps"] == (None, None)
    # auto: a 22³ factor is below the mixed-precision threshold.
    assert sparsegrad_rs.factorize(A, precision="auto").info["precision"] == "double"


def test_bad_precision_and_unsupported_combinations_are_errors():
    A = grid3(4)
    with pytest.raises(ValueError, match="precision must be"):
        sparsegrad_rs.factorize(A, precision="half")
    with pytest.raises(ValueError, match="precision"):
        sparsegrad_rs.factorize(A, method="lu", precision="mixed")
    # A symmetric indefinite matrix under method="auto": the LU fallback runs in double and
    # says so.
    M = (A - 3.0 * sp.identity(64)).tocsr()
    f = sparsegrad_rs.factorize(M, precision="mixed")
    assert f.info["method"] == "lu" and f.info["precision"] == "double"
    assert "in f64" in f.info["fallback_reason"]


def test_torch_mixed_gradients_equal_double(rng):
    A = grid3(12).tocoo()
    idx = torch.tensor(np.vstack([A.row, A.col]), dtype=torch.int64)
    b = torch.tensor(rng.standard_normal(A.shape[0]))

    def grads(precision):
        vals = torch.tensor(A.data, requires_grad=True)
        bb = b.clone().requires_grad_(True)
        F = sgt.factorize(torch.sparse_coo_tensor(idx, vals, A.shape), precision=precision)
        x = F.solve(bb)
        loss = (x * x).sum()
        gv, gb = torch.autograd.grad(loss, (vals, bb))
        return loss.item(), gv, gb, F.info["precision"]

    l64, gv64, gb64, p64 = grads("double")
    lm, gvm, gbm, pm = grads("mixed")
    assert (p64, pm) == ("double", "mixed")
    assert abs(lm - l64) <= 1e-12 * l64
    assert (gvm - gv64).abs().max() <= 1e-10 * gv64.abs().max()
    assert (gbm - gb64).abs().max() <= 1e-10 * gb64.abs().max()
    vals = torch.tensor(A.data, requires_grad=True)
    x = sgt.solve(torch.sparse_coo_tensor(idx, vals, A.shape), b, precision="single")
    x64 = sgt.solve(torch.sparse_coo_tensor(idx, vals, A.shape), b)
    err = ((x - x64).abs().max() / x64.abs().max()).item()
    assert 0 < err <= 1e-4, err


def test_jax_precision_through_the_ffi_solve_and_the_derivatives(rng):
    """JAX: precision= reaches the FFI solve and the derivative rules' factorization: mixed gives
    double's value and gradient, single is within 1e-4."""
    import jax
    import jax.numpy as jnp
    from sparsegrad_rs.jax import spsolve

    A = grid3(14)
    A.sort_indices()
    data, indices, indptr = jnp.array(A.data), jnp.array(A.indices), jnp.array(A.indptr)
    b = jnp.array(rng.standard_normal(A.shape[0]))

    def loss(d, precision):
        return jnp.sum(spsolve(d, indices, indptr, b, precision=precision) ** 2)

    x64 = spsolve(data, indices, indptr, b)
    xm = spsolve(data, indices, indptr, b, precision="mixed")
    xs = jax.jit(lambda d: spsolve(d, indices, indptr, b, precision="single"))(data)
    scale = float(jnp.abs(x64).max())
    assert float(jnp.abs(xm - x64).max()) <= 1e-12 * scale
    err = float(jnp.abs(xs - x64).max()) / scale
    assert 1e-10 < err <= 1e-4, err
    l64, g64 = jax.value_and_grad(lambda d: loss(d, "double"))(data)
    lm, gm = jax.value_and_grad(lambda d: loss(d, "mixed"))(data)
    assert abs(float(lm - l64)) <= 1e-12 * float(l64)
    assert float(jnp.abs(gm - g64).max()) <= 1e-10 * float(jnp.abs(g64).max())
    with pytest.raises(ValueError, match="precision must be"):
        spsolve(data, indices, indptr, b, precision="half")


def test_torch_solve_coo_precision_eager_batched_and_compiled(rng):
    """solve_coo's precision= in each path: one matrix (eager), a batch of values over one
    pattern, and torch.compile(fullgraph=True): mixed gives double's values and gradients."""
    A = grid3(10).tocoo()
    idx = torch.tensor(np.vstack([A.row, A.col]), dtype=torch.int64)
    n = A.shape[0]
    base = torch.tensor(A.data)
    b = torch.tensor(rng.standard_normal((n, 2)))

    def run(values, precision, compiled=False):
        v = values.clone().requires_grad_(True)

        def loss(v):
            return (sgt.solve_coo(idx, v, b if v.dim() == 1 else b[:, 0].expand(v.shape[0], n),
                                  n, precision=precision) ** 2).sum()

        f = torch.compile(loss, fullgraph=True, backend="aot_eager") if compiled else loss
        value = f(v)
        (g,) = torch.autograd.grad(value, v)
        return value.item(), g

    for values in (base, torch.stack([base, 1.5 * base, 2.0 * base])):
        for compiled in (False, True):
            l64, g64 = run(values, "double", compiled)
            lm, gm = run(values, "mixed", compiled)
            assert abs(lm - l64) <= 1e-12 * l64, (values.dim(), compiled)
            assert (gm - g64).abs().max() <= 1e-10 * g64.abs().max(), (values.dim(), compiled)
            ls, _ = run(values, "single", compiled)
            assert 0 < abs(ls - l64) <= 1e-4 * l64, (values.dim(), compiled, ls, l64)
