"""A user's script touching every public function and class of sparsegrad_rs, for
``mypy --strict`` (CI runs it against the installed wheel's stubs). It also runs."""
from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
import torch
from numpy.typing import NDArray

import sparsegrad_rs
import sparsegrad_rs.jax as sgj
import sparsegrad_rs.torch as sgt


def scipy_part() -> float:
    A = sp.csr_matrix(np.array([[4.0, 1.0], [1.0, 3.0]]))
    f: sparsegrad_rs.Factorization = sparsegrad_rs.factorize(A, method="cholesky")
    x: NDArray[np.float64] = f.solve(np.ones(2))
    y = f.solve_transpose(np.ones((2, 3)))
    lam = f.solve_transpose(2.0 * x)
    g: NDArray[np.float64] = f.grad_values(lam, x)
    info: dict[str, Any] = f.info
    n, rows, cols, data = sparsegrad_rs.coo_of(A)
    z = sparsegrad_rs.solve(A, np.ones(2), symmetric=True, condition_limit=1e12)
    zm = sparsegrad_rs.solve(A, np.ones(2), symmetric=True, precision="mixed")
    freed: int = sparsegrad_rs.release_memory()
    try:
        sparsegrad_rs.factorize(sp.csr_matrix(np.array([[1.0, 2.0], [2.0, 1.0]])), method="cholesky")
    except sparsegrad_rs.SolveError as e:
        assert "column" in str(e)
    assert info["method"] == "cholesky" and n == 2 and rows.size == cols.size == data.size
    value, ld_grad = sparsegrad_rs.logdet(sp.csr_matrix(np.array([[4.0, 1.0], [1.0, 3.0]])))
    F = sparsegrad_rs.factorize(sp.csr_matrix(np.array([[4.0, 1.0], [1.0, 3.0]])))
    sign, logabs = F.logdet()
    var: float = float(F.diag_inverse().sum() + F.logdet_grad().sum() + F.sample(np.ones(2)).sum())
    extra = value + float(ld_grad.sum()) + sign * logabs + var
    return float(g.sum() + y.sum() + z.sum() + zm.sum()) + freed * 0.0 + extra * 0.0


def torch_part() -> float:
    idx = torch.tensor([[0, 0, 1, 1], [0, 1, 0, 1]])
    vals = torch.tensor([4.0, 1.0, 1.0, 3.0], dtype=torch.float64, requires_grad=True)
    A = torch.sparse_coo_tensor(idx, vals, (2, 2))
    b = torch.ones(2, dtype=torch.float64)
    x: torch.Tensor = sgt.solve(A, b)
    x2 = sgt.solve_coo(idx, vals, b, 2)
    F: sgt.Factorization = sgt.factorize(A, method="lu")
    Fm = sgt.factorize(A, precision="auto")
    y = F.solve(b) + F.solve_transpose(b) + Fm.solve(b)
    ld: torch.Tensor = sgt.logdet(A) + sgt.logdet_coo(idx, vals, 2)
    loss = (x * x).sum() + x2.sum() + y.sum() + ld
    (grad,) = torch.autograd.grad(loss, vals)
    return float(loss.item()) + float(grad.sum())


def jax_part() -> float:
    data = jnp.array([4.0, 1.0, 1.0, 3.0])
    x = sgj.spsolve(data, jnp.array([0, 1, 0, 1]), jnp.array([0, 2, 4]), jnp.ones(2))
    ld = sgj.logdet(data, jnp.array([0, 1, 0, 1]), jnp.array([0, 2, 4]))
    return float(x.sum() + ld) + sgj.KEEP * 0.0 + sgj.KEEP_BYTES * 0.0


if __name__ == "__main__":
    print(scipy_part() + torch_part() + jax_part())
