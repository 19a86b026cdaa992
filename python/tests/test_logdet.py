"""Log-determinants (issue 31) from the three front ends against dense references: the value
against numpy's slogdet, the gradient at the entries against the dense inverse, the diagonal of
the inverse, and first-order differentiation (gradcheck / check_grads)."""
import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import torch  # noqa: E402
from jax.test_util import check_grads  # noqa: E402

import sparsegrad_rs  # noqa: E402
import sparsegrad_rs.jax as sgj  # noqa: E402
import sparsegrad_rs.torch as sgt  # noqa: E402
from conftest import general_matrix, spd_matrix  # noqa: E402


def test_scipy_logdet_value_gradient_and_diagonal(rng):
    """Both triangles stored: each entry's gradient is (A⁻¹)_ij; one triangle with
    symmetric=True: doubled off the diagonal. Value ≤ 1e-12, gradient ≤ 1e-11 relative."""
    A = spd_matrix(30, rng).tocsr()
    inv = np.linalg.inv(A.toarray())
    _, expected = np.linalg.slogdet(A.toarray())
    value, grad = sparsegrad_rs.logdet(A)
    n, rows, cols, _ = sparsegrad_rs.coo_of(A)
    assert abs(value - expected) <= 1e-12 * abs(expected)
    assert np.max(np.abs(grad - inv[rows, cols])) <= 1e-11 * np.abs(inv).max()
    low = sp.tril(A).tocsr()
    value, grad = sparsegrad_rs.logdet(low, symmetric=True)
    n, rows, cols, _ = sparsegrad_rs.coo_of(low)
    want = np.where(rows != cols, 2.0, 1.0) * inv[rows, cols]
    assert abs(value - expected) <= 1e-12 * abs(expected)
    assert np.max(np.abs(grad - want)) <= 1e-11 * np.abs(inv).max()
    f = sparsegrad_rs.factorize(A)
    assert np.max(np.abs(f.diag_inverse() - np.diag(inv))) <= 1e-12 * np.abs(inv).max()
    # Samples x = Pᵀ L⁻ᵀ z: xᵀ A x = zᵀ z for every column.
    z = rng.standard_normal((30, 4))
    x = f.sample(z)
    assert np.allclose(np.einsum("ik,ij,jk->k", x, A.toarray(), x), (z * z).sum(axis=0),
                       rtol=1e-10, atol=0)
    # Indefinite with det > 0 and det < 0 through LDLᵀ; LU has no log-determinant.
    M = A.toarray() - 0.6 * np.abs(np.linalg.eigvalsh(A.toarray())).max() * np.eye(30)
    sign, logabs = np.linalg.slogdet(M)
    got = sparsegrad_rs.factorize(sp.csr_matrix(M), method="ldlt").logdet()
    assert got[0] == sign and abs(got[1] - logabs) <= 1e-10 * abs(logabs)
    if sign < 0:
        with pytest.raises(ValueError, match="det A < 0"):
            sparsegrad_rs.logdet(sp.csr_matrix(M), method="ldlt")
    lu = sparsegrad_rs.factorize(general_matrix(8, rng))
    for call in (lu.logdet, lu.logdet_grad, lu.diag_inverse):
        with pytest.raises(ValueError, match="LU .* keeps L and U private"):
            call()


def test_torch_logdet_gradcheck_and_dense(rng):
    A = sp.tril(spd_matrix(12, rng)).tocoo()
    idx = torch.tensor(np.vstack([A.row, A.col]), dtype=torch.int64)
    v = torch.tensor(A.data, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: sgt.logdet_coo(idx, v, 12, symmetric=True), (v,),
                                    eps=1e-6, atol=1e-8)
    ld = sgt.logdet_coo(idx, v, 12, symmetric=True)
    ld.backward()
    w = v.detach().clone().requires_grad_(True)
    M = torch.zeros(12, 12, dtype=torch.float64).index_put((idx[0], idx[1]), w)
    dense = torch.logdet(M + M.T - torch.diag(torch.diag(M)))
    dense.backward()
    assert abs(ld.item() - dense.item()) <= 1e-12 * abs(dense.item())
    assert torch.max(torch.abs(v.grad - w.grad)) <= 1e-11 * torch.max(torch.abs(w.grad))
    # A sparse COO tensor (both triangles) and the first-order-only refusal.
    B = spd_matrix(10, rng).tocoo()
    At = torch.sparse_coo_tensor(np.vstack([B.row, B.col]), B.data, (10, 10)).coalesce()
    At.requires_grad_(True)
    sgt.logdet(At).backward()
    inv = np.linalg.inv(B.toarray())
    g = At.grad.coalesce()
    ii = g.indices().numpy()
    assert np.max(np.abs(g.values().numpy() - inv[ii[0], ii[1]])) <= 1e-11 * np.abs(inv).max()
    with pytest.raises(RuntimeError, match="first order only"):
        torch.autograd.grad(sgt.logdet_coo(idx, v, 12, symmetric=True), v, create_graph=True)


def test_jax_logdet_check_grads_and_dense(rng):
    A = sp.tril(spd_matrix(12, rng)).tocsr()
    A.sort_indices()
    data, indices, indptr = jnp.array(A.data), jnp.array(A.indices), jnp.array(A.indptr)
    f = lambda d: sgj.logdet(d, indices, indptr, symmetric=True)
    check_grads(f, (data,), order=1, modes=("fwd", "rev"), eps=1e-6)
    rows = np.repeat(np.arange(12), np.diff(A.indptr))

    def dense(d):
        M = jnp.zeros((12, 12)).at[rows, A.indices].add(d)
        return jnp.linalg.slogdet(M + M.T - jnp.diag(jnp.diag(M)))[1]

    assert abs(f(data) - dense(data)) <= 1e-12 * abs(dense(data))
    g, gd = jax.jit(jax.grad(f))(data), jax.grad(dense)(data)
    assert np.max(np.abs(np.asarray(g - gd))) <= 1e-11 * np.max(np.abs(np.asarray(gd)))
    batch = jnp.stack([data * (1.0 + 0.1 * k) for k in range(3)])
    vg = jax.vmap(jax.grad(f))(batch)
    assert np.max(np.abs(np.asarray(vg - jax.vmap(jax.grad(dense))(batch)))) <= 1e-10
    for second in (jax.hessian(f), jax.jacfwd(jax.jacfwd(f)), jax.jacrev(jax.jacrev(f))):
        with pytest.raises(NotImplementedError, match="differentiable once"):
            second(data)
