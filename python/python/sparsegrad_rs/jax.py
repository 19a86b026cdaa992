"""``sparsegrad_rs.jax.spsolve(data, indices, indptr, b)``: a differentiable sparse solve for JAX.

A is given in CSR form (``data``, ``indices``, ``indptr``, as ``jax.experimental.sparse.linalg.
spsolve`` takes it); b is n or n x k. A solve that is not differentiated is an XLA FFI custom
call (``jax.ffi``, CPU) — inside the compiled program, no Python callback, its failures XLA
errors whose text is the library's message; the derivative rules run on the host
(``jax.pure_callback``). It works under ``jit``, ``vmap`` and every differentiation transform. Computation in float64
(enable ``jax_enable_x64`` for float64 results; float32 inputs are computed in float64 and cast
back; integer inputs give floating results — float64 with ``jax_enable_x64`` — and complex inputs
are a TypeError).

Derivatives: ``spsolve`` is a ``jax.custom_jvp`` whose tangent rule is
ẋ = A⁻¹(ḃ − Ȧx) through ``jax.lax.custom_linear_solve`` on the forward pass's factorization —
a linear solve with a transpose rule (A⁻ᵀ on the same factorization), as lineax does. So
``jax.jvp``, ``jacfwd``, ``grad``, ``jacrev``, ``hessian`` and ``vmap`` all work, to any order;
the cotangent of ``data`` is at the stored entries only (−λ[i]·x[j], plus the mirror for
one-triangle storage), never an n × n matrix. A call that is not differentiated runs one
factorization and keeps nothing; a differentiated one factors once and every solve of the
derivatives (tangent, adjoint, second-order) reuses that factorization. Under ``vmap`` the
right-hand sides of one factorization are solved together (one multi-column solve).

Memory: a differentiated call keeps its factorization on the host, under a token, while its
derivatives may still need it. It is released when the next differentiated call factors after a
reverse-mode (transposed) solve has used it — so an optimization loop keeps one evaluation's
factorizations — or when more than ``KEEP`` factorizations or ``KEEP_BYTES`` (8 bytes per stored
entry of A, a lower bound on the factor) are kept (the oldest first). A derivative whose
factorization was released factors again (same result, one more factorization).
``sparsegrad_rs.release_memory()`` drops them all.
"""
from __future__ import annotations

import functools
import itertools
import threading
from collections import OrderedDict

import jax
import jax.numpy as jnp
import numpy as np

from . import Factorization, _core, _rows_of_indptr

__all__ = ["spsolve", "logdet", "KEEP", "KEEP_BYTES"]

#: Most factorizations kept for pending backward passes.
KEEP = 32
#: Most bytes (8 per stored entry of A and of the solution, a lower bound on the factor) kept.
KEEP_BYTES = 1 << 30

_factors: "OrderedDict[int, list]" = OrderedDict()
_lock = threading.Lock()
_tokens = itertools.count(1)


def _release():
    with _lock:
        _factors.clear()


def _kept_count():
    with _lock:
        return len(_factors)


def _factorize(data, indices, indptr, how, symmetric):
    """The host factorization; ``how`` is (method, precision)."""
    method, precision = how
    cols = np.ascontiguousarray(indices, dtype=np.int64)
    rows = _rows_of_indptr(indptr, cols.size)
    n = np.asarray(indptr).size - 1
    data = np.ascontiguousarray(data, dtype=np.float64)
    return Factorization(_core.factorize(n, rows, cols, data, method=method, symmetric=symmetric,
                                         precision=precision),
                         data.size)


def _keep(f):
    """Keeps ``f`` under a new token; evicts what a reverse pass has used and the oldest beyond
    ``KEEP`` / ``KEEP_BYTES``."""
    token = next(_tokens)
    with _lock:
        for t in [t for t, entry in _factors.items() if entry[2]]:
            del _factors[t]
        _factors[token] = [f, 8 * f.nnz, False]
        total = sum(entry[1] for entry in _factors.values())
        while len(_factors) > KEEP or (total > KEEP_BYTES and len(_factors) > 1):
            total -= _factors.popitem(last=False)[1][1]
    return token


def _kept(token, data, indices, indptr, method, symmetric, used):
    """The factorization kept under ``token`` (marked used by a reverse pass when ``used``), or
    a new one of the same matrix when it was released."""
    with _lock:
        entry = _factors.get(int(token))
        if entry is not None:
            entry[2] = entry[2] or used
            return entry[0]
    return _factorize(data, indices, indptr, method, symmetric)


# The exception a host function raised last, by thread: JAX reports a failed callback as a
# JaxRuntimeError whose text ends with the real message; an eager call re-raises the real one.
_raised = threading.local()


def _recording(fn):
    def run(*args):
        _raised.error = None
        try:
            # NumPy views of JAX's host buffers (indexing a jax.Array would dispatch JAX ops).
            return fn(*(np.asarray(a) for a in args))
        except Exception as e:
            _raised.error = e
            raise
    return run


def _callback(fn, shapes, *args, vmap_method="sequential"):
    return jax.pure_callback(_recording(fn), shapes, *args, vmap_method=vmap_method)


def _batch_shape(args, core_ndims):
    """The leading (vmapped) shape of host arguments under ``vmap_method="expand_dims"``: every
    argument has the same number of leading axes, of size 1 where it is not batched."""
    lead = args[0].ndim - core_ndims[0]
    return np.broadcast_shapes(*(a.shape[:lead] for a in args)), lead


def _factor_keep_host(method, symmetric):
    def run(d, i, p):
        shape, lead = _batch_shape((d, i, p), (1, 1, 1))
        tokens = np.empty(shape, dtype=np.int64)
        full = [np.broadcast_to(a, shape + a.shape[lead:]) for a in (d, i, p)]
        for k in np.ndindex(shape):
            tokens[k] = _keep(_factorize(full[0][k], full[1][k], full[2][k], method, symmetric))
        return tokens.astype(_token_dtype())
    return run


def _kept_solve_host(method, symmetric, transpose, rhs_ndim):
    """Solves with the factorization under a token. Batched (``vmap``) right-hand sides of one
    factorization are solved together as the columns of one matrix."""
    def run(t, d, i, p, r):
        shape, lead = _batch_shape((t, d, i, p, r), (0, 1, 1, 1, rhs_ndim))
        one = all(int(np.prod(a.shape[:lead])) == 1 for a in (t, d, i, p))
        if one:
            f = _kept(t.reshape(-1)[0], d.reshape(-1, d.shape[-1])[0],
                      i.reshape(-1, i.shape[-1])[0], p.reshape(-1, p.shape[-1])[0],
                      method, symmetric, transpose)
            n = f.n
            cols = np.moveaxis(np.asarray(r, dtype=np.float64).reshape((-1,) + r.shape[lead:]),
                               1, 0).reshape(n, -1)
            y = f.solve_transpose(cols) if transpose else f.solve(cols)
            y = np.moveaxis(y.reshape((n, -1) + r.shape[lead + 1:]), 0, 1)
            return np.broadcast_to(y.reshape(r.shape), shape + r.shape[lead:]).astype(r.dtype)
        out = np.empty(shape + r.shape[lead:], dtype=r.dtype)
        full = [np.broadcast_to(a, shape + a.shape[lead:]) for a in (t, d, i, p, r)]
        for k in np.ndindex(shape):
            f = _kept(full[0][k], full[1][k], full[2][k], full[3][k], method, symmetric, transpose)
            rk = np.asarray(full[4][k], dtype=np.float64)
            out[k] = f.solve_transpose(rk) if transpose else f.solve(rk)
        return out
    return run


_FFI_ERRORS = {"ValueError": ValueError, "MemoryError": MemoryError, "OSError": OSError,
               "SolveError": _core.SolveError}


def _ffi_error(e):
    """The Python exception an FFI failure stands for: the handler's message is
    "<exception name>: <library message>" (after XLA's status code)."""
    text = str(e)
    for name, kind in _FFI_ERRORS.items():
        at = text.find(name + ": ")
        if at >= 0:
            return kind(text[at + len(name) + 2:].splitlines()[0])
    return None


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


def _matvec(data, indices, indptr, symmetric):
    """v ↦ A v for A's entries as given (duplicates summed; for ``symmetric=True`` with one
    triangle stored, the other one mirrored — the storage the host decides), in JAX operations:
    linear in v and in ``data``, so differentiating it gives Ȧx and the cotangent of ``data`` at
    the stored entries."""
    n = indptr.shape[0] - 1
    nnz = indices.shape[0]
    # A pattern captured as a constant would otherwise be expanded by XLA's constant folding at
    # compile time (seconds for a million entries); the barrier keeps it a run-time computation.
    indptr, indices = jax.lax.optimization_barrier((indptr, indices))
    rows = jnp.repeat(jnp.arange(n, dtype=indices.dtype), jnp.diff(indptr),
                      total_repeat_length=nnz)
    cols = indices
    if symmetric is True:
        one_triangle = ~(jnp.any(rows > cols) & jnp.any(rows < cols))
        mirror = one_triangle & (rows != cols)
    else:
        mirror = None

    def apply(d, v):
        w = d if v.ndim == 1 else d[:, None]
        y = jnp.zeros(v.shape, v.dtype).at[rows].add(w * v[cols])
        if mirror is not None:
            m = jnp.where(mirror, d, 0.0)
            y = y.at[cols].add((m if v.ndim == 1 else m[:, None]) * v[rows])
        return y
    return apply


@functools.partial(jax.jit, static_argnames=("method", "symmetric"))
def _solve_differentiable(data, indices, indptr, b, d_dot, b_dot, method, symmetric):
    """(x, ẋ) with one kept factorization: x and ẋ = A⁻¹(ḃ − Ȧx) by ``custom_linear_solve``,
    whose solves (and their transposes, in reverse mode) run on that factorization."""
    # The host sees values, never tracers of a derivative: the factorization is a constant of
    # the derivative rules (their dependence on data is in `matvec`).
    fixed = jax.lax.stop_gradient(data)
    token = _callback(_factor_keep_host(method, symmetric),
                      jax.ShapeDtypeStruct((), _token_dtype()), fixed, indices, indptr,
                      vmap_method="expand_dims")
    matvec = _matvec(data, indices, indptr, symmetric)

    def solver(transpose):
        host = _kept_solve_host(method, symmetric, transpose, b.ndim)

        def run(_matvec, r):
            return _callback(host, jax.ShapeDtypeStruct(r.shape, r.dtype), token, fixed, indices,
                             indptr, r, vmap_method="expand_dims")
        return run

    def linear(d, bb):
        return jax.lax.custom_linear_solve(lambda v: matvec(d, v), bb, solver(False),
                                           solver(True))

    return jax.jvp(linear, (data, b), (d_dot, b_dot))


#: The XLA FFI target of the solve that is not differentiated (``python/src/ffi.rs``).
_FFI_TARGET = "sparsegrad_rs_spsolve"
_ffi_lock = threading.Lock()
_ffi_registered = False


def _register_ffi():
    """Registers the Rust handler with XLA (once per process)."""
    global _ffi_registered
    with _ffi_lock:
        if not _ffi_registered:
            import ctypes
            handler = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)(
                _core.ffi_spsolve_address())
            jax.ffi.register_ffi_target(_FFI_TARGET, jax.ffi.pycapsule(handler), platform="cpu")
            _ffi_registered = True


@functools.partial(jax.custom_jvp, nondiff_argnums=(4, 5))
def _run(data, indices, indptr, b, method, symmetric):
    """The solve: an XLA FFI custom call that factors, solves and keeps nothing (the value of a
    call that is not differentiated). Under ``vmap`` the right-hand sides of one matrix are one
    multi-column solve."""
    _register_ffi()
    call = jax.ffi.ffi_call(_FFI_TARGET, jax.ShapeDtypeStruct(b.shape, b.dtype),
                            vmap_method="expand_dims")
    flag = np.int32(-1 if symmetric is None else int(bool(symmetric)))
    return call(data, indices, indptr, b, method=method[0], precision=method[1], symmetric=flag)


@_run.defjvp
def _run_jvp(method, symmetric, primals, tangents):
    data, indices, indptr, b = primals
    d_dot, _, _, b_dot = tangents
    return _solve_differentiable(data, indices, indptr, b, d_dot, b_dot, method, symmetric)


_spsolve = jax.jit(_run, static_argnames=("method", "symmetric"))


def spsolve(data, indices, indptr, b, method="auto", symmetric=None, precision="double"):
    """x = A⁻¹b for A in CSR form (``data``, ``indices``, ``indptr``; n = len(indptr) − 1) and
    b of shape (n,) or (n, k); differentiable in ``data`` and ``b`` in forward and reverse mode,
    to any order (see the module docs). ``precision`` ("double", "mixed", "single", "auto") as in
    :func:`sparsegrad_rs.factorize`.

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

    indices, indptr = jnp.asarray(indices), jnp.asarray(indptr)
    _check_shapes(data, indices, indptr, b)
    try:
        return _spsolve(data, indices, indptr, b, (method, precision), symmetric)
    except jax.errors.JaxRuntimeError as e:
        # An eager call: raise what the host raised (SolveError, ValueError, ...), not JAX's
        # wrapper. Under an outer jit the wrapper's text is the same message (FFI) or ends with
        # it (derivatives, which run as host callbacks).
        error = getattr(_raised, "error", None) or _ffi_error(e)
        if error is None:
            raise
        _raised.error = None
        raise error from None


# --- log-determinants ----------------------------------------------------------------------------


def _logdet_host(method, symmetric, with_grad):
    def run(d, i, p):
        f = _factorize(d, i, p, method, symmetric)
        sign, value = f.logdet()
        if sign < 0:
            raise ValueError("det A < 0, so log det A is not real; "
                             "sparsegrad_rs.factorize(A).logdet() gives the sign and log |det A|")
        value = np.asarray(value, dtype=d.dtype)
        return (value, f.logdet_grad().astype(d.dtype)) if with_grad else value
    return run


@jax.custom_jvp
def _once(x):
    """The identity, whose derivative is refused: the logdet rule reads its inputs through it, so
    differentiating the rule itself (a second derivative) raises instead of treating the host's
    results as constants."""
    return x


@_once.defjvp
def _once_jvp(primals, tangents):
    raise NotImplementedError(
        "sparsegrad_rs.jax.logdet is differentiable once (forward or reverse mode): its second "
        "derivative needs entries of A⁻¹ȦA⁻¹ outside the selected inverse")


@functools.partial(jax.custom_jvp, nondiff_argnums=(3, 4))
def _logdet(data, indices, indptr, method, symmetric):
    return _callback(_logdet_host(method, symmetric, False),
                     jax.ShapeDtypeStruct((), data.dtype), data, indices, indptr)


@_logdet.defjvp
def _logdet_jvp(method, symmetric, primals, tangents):
    data, indices, indptr = primals
    value, grad = _callback(
        _logdet_host(method, symmetric, True),
        (jax.ShapeDtypeStruct((), data.dtype), jax.ShapeDtypeStruct(data.shape, data.dtype)),
        _once(data), indices, indptr)
    return value, jnp.dot(grad, tangents[0])


def logdet(data, indices, indptr, method="auto", symmetric=None):
    """log det A for a symmetric A in CSR form (both triangles stored, or one with
    ``symmetric=True``), differentiable once in ``data`` (forward or reverse mode): the gradient
    A⁻¹ at the stored entries (doubled off the diagonal for one triangle) by selected inversion
    on the factorization, never a dense inverse. Under ``vmap`` each element is factored. det A <
    0 raises ValueError; a second derivative raises NotImplementedError."""
    data = _floating(data, "data")
    if not jnp.issubdtype(data.dtype, jnp.floating):
        data = data.astype(jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
    indices, indptr = jnp.asarray(indices), jnp.asarray(indptr)
    try:
        concrete = np.asarray(indptr)
    except Exception:
        concrete = None
    if concrete is not None:
        _rows_of_indptr(concrete, np.shape(indices)[0])
    if np.ndim(data) != 1 or np.shape(indices) != np.shape(data):
        raise ValueError(f"data and indices must be 1-D of one length, got shapes "
                         f"{np.shape(data)} and {np.shape(indices)}")
    try:
        # Log-determinants need a double factor.
        return _logdet(data, indices, indptr, (method, "double"), symmetric)
    except jax.errors.JaxRuntimeError:
        error = getattr(_raised, "error", None)
        if error is None:
            raise
        _raised.error = None
        raise error from None
