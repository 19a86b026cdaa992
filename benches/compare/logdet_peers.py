"""Log-determinant peers: warm value + gradient of log det A with respect to A's stored values
(lower triangle of A = I + L on a grid: 2D k × k or 3D k³, unit weights), under
``jax.jit(jax.value_and_grad(...))``, for

- ``sparsegrad``: ``sparsegrad_rs.jax.logdet`` (CSR lower triangle, ``symmetric=True``; gradient
  by selected inversion on the kept Cholesky factor),
- ``sparsax``: ``sparsax.logdet`` (CHOLMOD through JAX's FFI; gradient by its ``selinv``).

One process per peer and case; prints one JSON line (median ms of ``--repeat`` warm calls, the
value, and the gradient's norm). Needs the peers' venv with ``--with-jax`` and the sparsegrad-rs
wheel installed in it:
    $PEERS/bin/python benches/compare/logdet_peers.py --peer sparsax --case grid3 --k 48
"""
import argparse
import json
import statistics
import time

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402


def lower_triangle(case, k):
    """The lower triangle of I + L (unit weights) on the grid, as sorted CSR."""
    T = sp.diags([-np.ones(k - 1), 2 * np.ones(k), -np.ones(k - 1)], [-1, 0, 1])
    eye = sp.identity(k)
    if case == "grid":
        L = sp.kron(T, eye) + sp.kron(eye, T)
    else:
        L = sp.kron(sp.kron(T, eye), eye) + sp.kron(sp.kron(eye, T), eye) + sp.kron(sp.kron(eye, eye), T)
    A = sp.tril(L + sp.identity(L.shape[0])).tocsr()
    A.sort_indices()
    return A


def build(peer, A):
    n = A.shape[0]
    if peer == "sparsegrad":
        from sparsegrad_rs import jax as sgj
        indices, indptr = jnp.array(A.indices), jnp.array(A.indptr)
        return lambda d: sgj.logdet(d, indices, indptr, symmetric=True)
    if peer == "sparsax":
        import sparsax
        # sparsax (CHOLMOD, stype > 0) reads the upper triangle of a one-triangle COO input: the
        # lower triangle's entries are given transposed (a lower-triangle input silently keeps
        # only the diagonal). Its gradient doubles off-diagonal entries, as ours does.
        rows = jnp.array(A.indices)
        cols = jnp.array(np.repeat(np.arange(n), np.diff(A.indptr)))
        return lambda d: sparsax.logdet(rows, cols, d, n)
    raise SystemExit(f"unknown peer {peer}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peer", required=True)
    ap.add_argument("--case", default="grid")
    ap.add_argument("--k", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    A = lower_triangle(args.case, args.k)
    f = jax.jit(jax.value_and_grad(build(args.peer, A)))
    data = jnp.array(A.data)
    t = time.perf_counter()
    value, grad = jax.block_until_ready(f(data))
    first = (time.perf_counter() - t) * 1e3
    times = []
    for i in range(args.repeat):
        d = data * (1.0 + 1e-3 * (i + 1))
        t = time.perf_counter()
        jax.block_until_ready(f(d))
        times.append((time.perf_counter() - t) * 1e3)
    print(json.dumps({"peer": args.peer, "case": args.case, "n": A.shape[0], "ms": round(statistics.median(times), 1),
                      "first_call_ms": round(first, 1), "value": float(value),
                      "grad_norm": float(jnp.linalg.norm(grad)), "grad_head": [float(g) for g in grad[:3]],
                      "times_ms": [round(x, 1) for x in times]}))


if __name__ == "__main__":
    main()
