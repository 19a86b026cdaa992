"""Log-determinant peers: warm log det A and its gradient with respect to A's stored values (the
lower triangle of A = I + L on a grid: 2D k × k or 3D k³, unit weights; or the hexahedral
elasticity block of peer_bench.py, k³ elements, theta_e = 1.5 + 0.5 sin(e)), for

- ``sparsegrad``: ``sparsegrad_rs.jax.logdet`` under ``jax.jit(jax.value_and_grad(...))`` (CSR
  lower triangle, ``symmetric=True``; gradient by selected inversion on the kept Cholesky factor),
- ``sparsax``: ``sparsax.logdet`` under the same jit (CHOLMOD through JAX's FFI; its ``selinv``),
- ``cholmod``: scikit-sparse's CHOLMOD, **value only** (CHOLMOD has no gradient): the analysis
  once, then ``cholesky_inplace`` + ``logdet()`` per call (its own ordering; run with
  ``OPENBLAS_NUM_THREADS=1`` from the CHOLMOD venv: ``setup.sh --with-cholmod``),
- ``torch_dense``: ``torch.logdet`` of the dense matrix with autograd (small n only), the gradient
  read at the stored entries and doubled off the diagonal (the one-triangle convention).

One process per peer and case; prints one JSON line (median ms of ``--repeat`` warm calls, the
value, and the gradient's norm). Each peer imports only what it needs:
    $PEERS/bin/python benches/compare/logdet_peers.py --peer sparsax --case grid3 --k 48
    $PEERS-cholmod/bin/python benches/compare/logdet_peers.py --peer cholmod --case elastic3 --k 32
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import scipy.sparse as sp


def lower_triangle(case, k):
    """The lower triangle of I + L (unit weights) on the grid, as sorted CSR."""
    T = sp.diags([-np.ones(k - 1), 2 * np.ones(k), -np.ones(k - 1)], [-1, 0, 1])
    eye = sp.identity(k)
    if case == "grid":
        L = sp.kron(T, eye) + sp.kron(eye, T)
    elif case == "grid3":
        L = sp.kron(sp.kron(T, eye), eye) + sp.kron(sp.kron(eye, T), eye) + sp.kron(sp.kron(eye, eye), T)
    else:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from peer_bench import Problem
        prob = Problem("elastic3", 3 * k ** 3, 1)
        n = prob.n
        full = sp.coo_matrix((prob.values(prob.theta0), (prob.rows, prob.cols)), shape=(n, n)).tocsr()
        A = sp.tril(full).tocsr()
        A.sort_indices()
        return A
    A = sp.tril(L + sp.identity(L.shape[0])).tocsr()
    A.sort_indices()
    return A


def build(peer, A):
    """The JAX peers' log det as a function of A's stored values."""
    import jax.numpy as jnp
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


def jax_peer(peer, A):
    """(first call, a function of the scale s timing one warm value + gradient)."""
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    f = jax.jit(jax.value_and_grad(build(peer, A)))
    data = jnp.array(A.data)

    def call(scale):
        value, grad = jax.block_until_ready(f(data * scale))
        return float(value), np.asarray(grad)
    return call


def cholmod_peer(A):
    """CHOLMOD's log det (value only): the analysis once, a numeric refactorization per call."""
    from sksparse import cholmod
    full = (A + sp.tril(A, -1).T).tocsc()
    factor = cholmod.analyze(full)

    def call(scale):
        factor.cholesky_inplace(full * scale)
        return float(factor.logdet()), None
    return call


def torch_dense_peer(A):
    """torch.logdet of the dense A with autograd, the gradient read at the stored entries."""
    import torch
    torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "1")))
    coo = A.tocoo()
    rows, cols = torch.from_numpy(coo.row.astype(np.int64)), torch.from_numpy(coo.col.astype(np.int64))
    full = (A + sp.tril(A, -1).T).toarray()
    twice = torch.from_numpy(np.where(coo.row == coo.col, 1.0, 2.0))

    def call(scale):
        M = torch.tensor(full * scale, requires_grad=True)
        value = torch.logdet(M)
        (grad,) = torch.autograd.grad(value, M)
        return float(value.detach()), (grad[rows, cols] * twice).numpy()
    return call


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peer", required=True)
    ap.add_argument("--case", default="grid", choices=["grid", "grid3", "elastic3"])
    ap.add_argument("--k", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    A = lower_triangle(args.case, args.k)
    if args.peer in ("sparsegrad", "sparsax"):
        call = jax_peer(args.peer, A)
    elif args.peer == "cholmod":
        call = cholmod_peer(A)
    elif args.peer == "torch_dense":
        call = torch_dense_peer(A)
    else:
        raise SystemExit(f"unknown peer {args.peer}")
    t = time.perf_counter()
    value, grad = call(1.0)
    first = (time.perf_counter() - t) * 1e3
    times = []
    for i in range(args.repeat):
        t = time.perf_counter()
        call(1.0 + 1e-3 * (i + 1))
        times.append((time.perf_counter() - t) * 1e3)
    out = {"peer": args.peer, "case": args.case, "n": A.shape[0], "nnz_lower": A.nnz,
           "ms": round(statistics.median(times), 1), "first_call_ms": round(first, 1),
           "value": value, "times_ms": [round(x, 1) for x in times]}
    if grad is not None:
        out.update(grad_norm=float(np.linalg.norm(grad)), grad_head=[float(g) for g in grad[:3]])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
