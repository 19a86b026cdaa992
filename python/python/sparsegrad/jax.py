"""``sparsegrad.jax.spsolve(data, indices, indptr, b)``: a differentiable sparse solve for JAX.

A is given in CSR form (``data``, ``indices``, ``indptr``, as ``jax.experimental.sparse.linalg.
spsolve`` takes it); b is n or n x k. The solve runs on the host (``jax.pure_callback``, CPU), so
it works under ``jit`` and ``grad``; the reverse rule (``jax.custom_vjp``) reuses the forward's
factorization (kept on the host under a token, the last 32 kept) for the transpose solve and returns
the cotangent of ``data`` at the stored entries and of ``b``. Computation in float64 (enable
``jax_enable_x64`` for float64 results; float32 inputs are computed in float64 and cast back).
"""
from __future__ import annotations

import itertools
import threading
from collections import OrderedDict

import jax
import jax.numpy as jnp
import numpy as np

from . import Factorization, _core

__all__ = ["spsolve"]

_KEEP = 32
_factors: "OrderedDict[int, tuple]" = OrderedDict()
_lock = threading.Lock()
_tokens = itertools.count(1)


def _factorize(data, indices, indptr, method, symmetric):
    indptr = np.asarray(indptr, dtype=np.int64)
    n = indptr.size - 1
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
    cols = np.ascontiguousarray(indices, dtype=np.int64)
    data = np.ascontiguousarray(data, dtype=np.float64)
    return Factorization(_core.factorize(n, rows, cols, data, method=method, symmetric=symmetric), data.size)


def _forward_host(data, indices, indptr, b, method, symmetric):
    f = _factorize(data, indices, indptr, method, symmetric)
    x = f.solve(np.asarray(b, dtype=np.float64))
    token = next(_tokens)
    with _lock:
        _factors[token] = (f, x)
        while len(_factors) > _KEEP:
            _factors.popitem(last=False)
    return x, np.int64(token)


def _backward_host(data, indices, indptr, b, token, g, method, symmetric):
    with _lock:
        kept = _factors.pop(int(token), None)
    if kept is None:  # evicted (more than _KEEP forward calls in flight): factor again
        f = _factorize(data, indices, indptr, method, symmetric)
        x = f.solve(np.asarray(b, dtype=np.float64))
    else:
        f, x = kept
    lam = f.solve_transpose(np.asarray(g, dtype=np.float64))
    return f.grad_values(lam, x), lam


def _callback(fn, shapes, *args):
    return jax.pure_callback(fn, shapes, *args, vmap_method="sequential")


def _token_dtype():
    return jnp.int64 if jax.config.jax_enable_x64 else jnp.int32


def spsolve(data, indices, indptr, b, method="auto", symmetric=None):
    """x = A⁻¹b for A in CSR form; differentiable in ``data`` and ``b``."""

    def forward(d, i, p, bb):
        x, _ = _forward_host(d, i, p, bb, method, symmetric)
        return x.astype(bb.dtype)

    def forward_keep(d, i, p, bb):
        x, token = _forward_host(d, i, p, bb, method, symmetric)
        return x.astype(bb.dtype), np.asarray(token, dtype=_token_dtype())

    def backward(d, i, p, bb, t, gg):
        gd, lam = _backward_host(d, i, p, bb, t, gg, method, symmetric)
        return gd.astype(d.dtype), lam.astype(bb.dtype)

    @jax.custom_vjp
    def run(data, indices, indptr, b):
        return _callback(forward, jax.ShapeDtypeStruct(b.shape, b.dtype), data, indices, indptr, b)

    def fwd(data, indices, indptr, b):
        x, token = _callback(
            forward_keep,
            (jax.ShapeDtypeStruct(b.shape, b.dtype), jax.ShapeDtypeStruct((), _token_dtype())),
            data, indices, indptr, b)
        return x, (data, indices, indptr, b, token)

    def bwd(res, g):
        data_, indices_, indptr_, b_, token = res
        gd, gb = _callback(
            backward,
            (jax.ShapeDtypeStruct(data_.shape, data_.dtype), jax.ShapeDtypeStruct(b_.shape, b_.dtype)),
            data_, indices_, indptr_, b_, token, g)
        return gd, None, None, gb

    run.defvjp(fwd, bwd)
    return run(jnp.asarray(data), jnp.asarray(indices), jnp.asarray(indptr), jnp.asarray(b))
