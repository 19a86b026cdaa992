"""``sparsegrad_rs.jax.spsolve(data, indices, indptr, b)``: a differentiable sparse solve for JAX.

A is given in CSR form (``data``, ``indices``, ``indptr``, as ``jax.experimental.sparse.linalg.
spsolve`` takes it); b is n or n x k. The solve runs on the host (``jax.pure_callback``, CPU), so
it works under ``jit`` and ``grad``; the reverse rule (``jax.custom_vjp``) reuses the forward's
factorization for the transpose solve and returns the cotangent of ``data`` at the stored entries
and of ``b``. Computation in float64 (enable ``jax_enable_x64`` for float64 results; float32
inputs are computed in float64 and cast back; integer inputs give floating results — float64
with ``jax_enable_x64`` — and complex inputs are a TypeError).

Memory: a solve that is not differentiated keeps nothing. A differentiated one keeps its
factorization on the host, under a token carried by the residuals, until its backward pass runs;
at most ``KEEP`` factorizations and ``KEEP_BYTES`` of factor values are kept for backward passes
that have not run yet (``jax.vjp`` without calling the returned function, say) — beyond that the
oldest are dropped and their backward pass factors again (same result, one more factorization).
``sparsegrad_rs.release_memory()`` drops them all.
"""
from __future__ import annotations

import itertools
import threading
from collections import OrderedDict

import jax
import jax.numpy as jnp
import numpy as np

from . import Factorization, _core, _rows_of_indptr

__all__ = ["spsolve", "KEEP", "KEEP_BYTES"]

#: Most factorizations kept for pending backward passes.
KEEP = 32
#: Most bytes (8 per stored entry of A and of the solution, a lower bound on the factor) kept.
KEEP_BYTES = 1 << 30

_factors: "OrderedDict[int, tuple]" = OrderedDict()
_lock = threading.Lock()
_tokens = itertools.count(1)


def _release():
    with _lock:
        _factors.clear()


def _kept_count():
    with _lock:
        return len(_factors)


def _factorize(data, indices, indptr, method, symmetric):
    cols = np.ascontiguousarray(indices, dtype=np.int64)
    rows = _rows_of_indptr(indptr, cols.size)
    n = np.asarray(indptr).size - 1
    data = np.ascontiguousarray(data, dtype=np.float64)
    return Factorization(_core.factorize(n, rows, cols, data, method=method, symmetric=symmetric),
                         data.size)


def _solve_host(data, indices, indptr, b, method, symmetric):
    f = _factorize(data, indices, indptr, method, symmetric)
    return f, f.solve(np.asarray(b, dtype=np.float64))


def _keep(f, x):
    token = next(_tokens)
    size = 8 * (f.nnz + x.size)
    with _lock:
        _factors[token] = (f, x, size)
        total = sum(entry[2] for entry in _factors.values())
        while len(_factors) > KEEP or (total > KEEP_BYTES and len(_factors) > 1):
            total -= _factors.popitem(last=False)[1][2]
    return token


def _backward_host(data, indices, indptr, b, token, g, method, symmetric):
    with _lock:
        kept = _factors.pop(int(token), None)
    if kept is None:  # dropped (see the module docs): factor again
        f, x = _solve_host(data, indices, indptr, b, method, symmetric)
    else:
        f, x, _ = kept
    lam = f.solve_transpose(np.asarray(g, dtype=np.float64))
    return f.grad_values(lam, x), lam


# The exception a host function raised last, by thread: JAX reports a failed callback as a
# JaxRuntimeError whose text ends with the real message; an eager call re-raises the real one.
_raised = threading.local()


def _recording(fn):
    def run(*args):
        _raised.error = None
        try:
            return fn(*args)
        except Exception as e:
            _raised.error = e
            raise
    return run


def _callback(fn, shapes, *args):
    return jax.pure_callback(_recording(fn), shapes, *args, vmap_method="sequential")


def _check_shapes(data, indices, indptr, b):
    """The static shape checks, done when the call is traced (so also under ``jit``), with the
    message the SciPy API gives."""
    if np.ndim(indptr) != 1 or np.shape(indptr)[0] < 1:
        raise ValueError(f"indptr must be 1-D with n + 1 entries, got shape {np.shape(indptr)}")
    n = np.shape(indptr)[0] - 1
    if np.ndim(data) != 1 or np.shape(indices) != np.shape(data):
        raise ValueError(f"data and indices must be 1-D of one length, got shapes "
                         f"{np.shape(data)} and {np.shape(indices)}")
    if np.ndim(b) not in (1, 2) or np.shape(b)[0] != n:
        rows = np.shape(b)[0] if np.ndim(b) else 0
        raise ValueError(f"b has {rows} rows (shape {np.shape(b)}), the matrix is {n} × {n}; "
                         "b must be (n,) or (n, k)")


def _token_dtype():
    return jnp.int64 if jax.config.jax_enable_x64 else jnp.int32


def _floating(x, name):
    x = jnp.asarray(x)
    if jnp.iscomplexobj(x):
        raise TypeError(f"{name} has complex values (dtype {x.dtype}); sparsegrad solves real "
                        "systems only")
    return x


def spsolve(data, indices, indptr, b, method="auto", symmetric=None):
    """x = A⁻¹b for A in CSR form (``data``, ``indices``, ``indptr``; n = len(indptr) − 1) and
    b of shape (n,) or (n, k); differentiable in ``data`` and ``b``.

    Shape errors are ``ValueError`` when the call is traced (also under ``jit``). A failure on the
    host (``SolveError`` for a singular or not positive definite matrix, ``ValueError`` for a bad
    index or a non-finite value) is raised as itself by an eager call; under an outer ``jit`` JAX
    reports it as a ``JaxRuntimeError`` whose text ends with the same message.
    """
    data, b = _floating(data, "data"), _floating(b, "b")
    try:  # a concrete indptr is checked now, a traced one on the host when the solve runs
        concrete = np.asarray(indptr)
    except Exception:
        concrete = None
    if concrete is not None:
        _rows_of_indptr(concrete, np.shape(indices)[0])
    out = jnp.result_type(data.dtype, b.dtype)
    if not jnp.issubdtype(out, jnp.floating):
        out = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    data, b = data.astype(out), b.astype(out)

    def forward(d, i, p, bb):
        _, x = _solve_host(d, i, p, bb, method, symmetric)
        return x.astype(bb.dtype)

    def forward_keep(d, i, p, bb):
        f, x = _solve_host(d, i, p, bb, method, symmetric)
        return x.astype(bb.dtype), np.asarray(_keep(f, x), dtype=_token_dtype())

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
    indices, indptr = jnp.asarray(indices), jnp.asarray(indptr)
    _check_shapes(data, indices, indptr, b)
    try:
        return run(data, indices, indptr, b)
    except jax.errors.JaxRuntimeError:
        # An eager call: raise what the host raised (SolveError, ValueError, ...), not JAX's
        # wrapper. Under an outer jit the wrapper's text ends with the same message.
        error = getattr(_raised, "error", None)
        if error is None:
            raise
        _raised.error = None
        raise error from None
