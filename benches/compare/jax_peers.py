"""JAX peers on the seed benchmark: warm value + gradient of ||A(theta)^-1 b||^2 under
``jax.jit(jax.value_and_grad(loss))``, A = I + L(theta) (peer_bench.py's problem, so the loss is
the Rust benchmark's), for

- ``sparsegrad``: ``sparsegrad_rs.jax.spsolve`` (CSR, host callback, factorization kept for the
  adjoint),
- ``sparsax``: ``sparsax.solve`` (CHOLMOD through JAX's FFI; symbolic analysis cached),
- ``klujax``: ``klujax.solve`` (KLU through JAX's FFI),
- ``jax_spsolve``: ``jax.experimental.sparse.linalg.spsolve`` (on CPU: SciPy's spsolve).

One process per peer and case; prints one JSON line. Needs the peers' venv with ``--with-jax``
(bash ../shared/peers/setup.sh --with-jax) and the sparsegrad-rs wheel installed in it:
    $PEERS/bin/python benches/compare/jax_peers.py --peer sparsax --case grid --n 262144
"""
import argparse
import json
import os
import statistics
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_bench import make_problem  # noqa: E402


def coalesced(prob):
    """The problem's COO (with duplicates) summed into unique entries sorted by (row, col):
    (rows, cols, segment ids of the COO entries, number of unique entries)."""
    key = prob.rows * prob.n + prob.cols
    uniq, inverse = np.unique(key, return_inverse=True)
    return uniq // prob.n, uniq % prob.n, inverse, uniq.size


def build(peer, prob):
    rows, cols, seg, nnz = coalesced(prob)
    n = prob.n
    seg = jnp.asarray(seg)
    b = jnp.asarray(prob.b[:, 0])

    def values(theta):
        coo = jnp.concatenate([jnp.ones(n), theta, theta, -theta, -theta])
        return jax.ops.segment_sum(coo, seg, num_segments=nnz)

    indptr = np.zeros(n + 1, dtype=np.int64)
    np.add.at(indptr, rows + 1, 1)
    indptr = jnp.asarray(np.cumsum(indptr))
    indices = jnp.asarray(cols)
    if peer == "sparsegrad":
        import sparsegrad_rs.jax as sgj

        def solve(v):
            return sgj.spsolve(v, indices, indptr, b)
    elif peer == "sparsax":
        import sparsax
        ai, aj = jnp.asarray(rows, jnp.int32), jnp.asarray(cols, jnp.int32)

        def solve(v):
            return sparsax.solve(ai, aj, v, b)
    elif peer == "klujax":
        import klujax
        ai, aj = jnp.asarray(rows, jnp.int32), jnp.asarray(cols, jnp.int32)

        def solve(v):
            return klujax.solve(ai, aj, v, b)
    elif peer == "jax_spsolve":
        from jax.experimental.sparse.linalg import spsolve

        def solve(v):
            return spsolve(v, indices.astype(jnp.int32), indptr.astype(jnp.int32), b)
    else:
        raise SystemExit(f"unknown peer {peer}")

    def loss(theta):
        x = solve(values(theta))
        return jnp.sum(x * x)

    return jax.jit(jax.value_and_grad(loss))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peer", required=True)
    ap.add_argument("--case", default="grid")
    ap.add_argument("--n", type=int, default=262144)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    prob = make_problem(args.case, args.n, 1)
    f = build(args.peer, prob)
    theta = jnp.asarray(prob.theta0)
    t = time.perf_counter()
    loss, grad = jax.block_until_ready(f(theta))
    first = 1e3 * (time.perf_counter() - t)
    times = []
    for r in range(args.repeat):
        th = theta * (1.0 + 1e-9 * (r + 1))   # new values each call: a real optimizer step
        t = time.perf_counter()
        jax.block_until_ready(f(th))
        times.append(1e3 * (time.perf_counter() - t))
    grad = np.asarray(grad)
    print(json.dumps({
        "peer": args.peer, "case": args.case, "n": prob.n, "regime": "warm",
        "ms": round(statistics.median(times), 3), "first_call_ms": round(first, 1),
        "loss": float(loss), "grad_norm": float(np.linalg.norm(grad)),
        "grad_head": [float(g) for g in grad[:3]], "times_ms": [round(x, 2) for x in times],
    }))


if __name__ == "__main__":
    main()
