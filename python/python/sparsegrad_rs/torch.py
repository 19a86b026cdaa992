"""``sparsegrad_rs.torch.solve(A, B)``: a differentiable sparse solve for PyTorch.

A is a sparse COO or CSR tensor (n x n) whose values may require grad; B is dense (n or n x k).
The forward factorization (Cholesky for a symmetric A, LU otherwise — see
:func:`sparsegrad_rs.factorize`) is kept for every derivative: one factorization per call, the
adjoint is a transpose solve on it, and dL/dA is returned at A's stored entries only, in A's own
layout (sparse COO with A's indices, or CSR with A's crow/col indices). Non-symmetric matrices get
the true Aᵀ adjoint. Computation is in float64; float32 inputs are computed in float64 and the
results cast back to float32. CPU tensors only (others are moved to the CPU and results moved
back).

Derivatives of every order: the backward pass is itself differentiable (``create_graph=True``,
double backward, ``torch.autograd.functional.hvp`` / ``hessian``, ``gradgradcheck``) and the solve
has a forward-mode rule (``torch.autograd.forward_ad``, ``torch.func.jvp``), Ẋ = A⁻¹(Ḃ − ȦX);
``torch.func.grad`` / ``jacrev`` / ``jacfwd`` / ``vmap`` work too (right-hand sides vmapped over
one matrix are solved together as one multi-column solve). Each of those solves reuses the
forward factorization. (The batched-values ``solve_coo`` and the ``torch.compile`` path are first
order.)

A drop-in for the seed's ``SparseSolver.apply(A_sparse, b)``::

    x = sparsegrad_rs.torch.solve(A_sparse, b)
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from . import Factorization as _HostFactorization
from . import _check_integral, _core, _rows_of_indptr

__all__ = ["solve", "solve_coo", "factorize", "logdet", "logdet_coo", "Factorization",
           "BatchCooSolve"]


def _real_tensor(t, name):
    """``t`` with a floating dtype: integers and booleans promoted to float64 (they cannot require
    grad, so nothing is lost); complex is a TypeError naming the argument."""
    if t.is_complex():
        raise TypeError(f"{name} has complex values (dtype {t.dtype}); sparsegrad solves real "
                        "systems only")
    return t if t.is_floating_point() else t.to(torch.float64)


def _no_second_order():
    """The batched-values solve's backward is not itself differentiable: with
    ``create_graph=True`` its result would silently miss the solve's term, so refuse."""
    if torch.is_grad_enabled():
        raise RuntimeError(
            "sparsegrad_rs.torch: the backward pass of solve_coo with batched values (batch, nnz) "
            "is first order only: create_graph=True, double backward and Hessian-vector "
            "products would silently miss the solve's term. Solve each batch element with "
            "values (nnz,) for second order (torch.func.vmap over solve_coo works), or compute "
            "first-order gradients without create_graph.")


def _entries(A):
    """(n, rows, cols, values) of a sparse COO or CSR tensor: ``values`` is differentiable into A
    (autograd returns A's gradient in A's layout, at its stored entries). An uncoalesced COO
    tensor is coalesced first (duplicates summed; its gradient is then coalesced too: one value
    per distinct entry, which every duplicate shares)."""
    if A.dim() != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be a square matrix, got shape {tuple(A.shape)}")
    n = A.shape[0]
    if A.is_complex():
        raise TypeError(f"A has complex values (dtype {A.dtype}); sparsegrad solves real systems "
                        "only")
    if A.layout == torch.sparse_coo:
        if not A.is_coalesced():
            A = A.coalesce()
        idx = _index_array(A.indices())
        rows, cols = idx[0].astype(np.int64), idx[1].astype(np.int64)
        return n, rows, cols, A.values()
    if A.layout == torch.sparse_csr:
        crow, col = _index_array(A.crow_indices()), _index_array(A.col_indices())
        rows = _rows_of_indptr(crow, col.shape[0], "crow_indices")
        cols = col.astype(np.int64)
        # torch's CSR invariant: autograd maps a CSR gradient back to the values assuming it, so
        # unsorted or repeated columns would receive each other's gradients. Refuse them.
        same_row = rows[1:] == rows[:-1]
        bad = np.flatnonzero(same_row & (cols[1:] <= cols[:-1]))
        if bad.size:
            e = int(bad[0]) + 1
            raise ValueError(
                f"A's CSR column indices must be sorted and distinct within each row (torch's CSR "
                f"invariant): row {rows[e]} has column {cols[e]} after {cols[e - 1]} (entry {e}); "
                "sort them first (scipy: A.sort_indices(), or pass a COO tensor)")
        return n, rows, cols, A.values()
    raise TypeError(f"A must be a sparse COO or CSR tensor, got layout {A.layout}")


def _first_order_upstream(values):
    """Whether PyTorch's own backward between A and its stored values (``A.values()``) is first
    order only, so that it would silently drop second-order terms: true unless A is a coalesced
    COO leaf (checked: its values' backward is differentiable again). A CSR tensor's values
    backward, the sparse constructors from a dense values tensor and coalescing are first order
    only in PyTorch; the solve refuses second order through them."""
    fn = values.grad_fn
    if fn is None:
        return False
    nxt = [type(f).__name__ for f, _ in fn.next_functions if f is not None]
    if type(fn).__name__ != "ValuesBackward0" or nxt != ["AccumulateGrad"]:
        return True
    saved = getattr(fn, "_saved_self", None)
    leaf_coo = saved is not None and saved.layout == torch.sparse_coo
    return not leaf_coo


def _is_wrapped(t):
    """Whether ``t`` is a torch.func wrapper (grad / vmap level), which has no host data."""
    check = getattr(getattr(torch._C, "_functorch", None), "is_functorch_wrapped_tensor", None)
    return bool(check(t)) if check is not None else False


def _host(t):
    """A dense tensor as a float64 NumPy array on the host."""
    return t.detach().cpu().to(torch.float64).numpy()


def _index_array(t):
    """An index tensor (A's coordinates: data, never differentiated) as a NumPy array, also
    inside a torch.func transform (which lifts every tensor it sees into a wrapper without host
    data)."""
    disable = getattr(torch._C, "_DisableFuncTorch", None)
    if disable is None:
        return t.detach().cpu().numpy()
    with disable():
        return t.detach().cpu().numpy()


class _Pattern:
    """A's entry coordinates and the factorization request, for the solves of one matrix: NumPy
    copies for the host, torch copies for the derivative rules, and which entries stand for a
    mirrored pair (``symmetric=True`` with one triangle stored — the storage the host decides)."""

    def __init__(self, n, rows, cols, method, symmetric, precision="double"):
        self.n, self.method, self.symmetric = n, method, symmetric
        self.precision = precision
        self.rows_np = np.ascontiguousarray(rows, dtype=np.int64)
        self.cols_np = np.ascontiguousarray(cols, dtype=np.int64)
        self.rows, self.cols = torch.from_numpy(self.rows_np), torch.from_numpy(self.cols_np)
        # Set by `solve` / `Factorization` for a sparse A built from differentiable values.
        self.first_order_upstream = False
        r, c = self.rows_np, self.cols_np
        one_triangle = not (np.any(r > c) and np.any(r < c))
        self.mirror = (torch.from_numpy(r != c) if symmetric is True and one_triangle else None)

    def factor(self, values):
        """The host factorization of A with these values (a plain tensor)."""
        data = np.ascontiguousarray(_host(values))
        core = _core.factorize(self.n, self.rows_np, self.cols_np, data, method=self.method,
                               symmetric=self.symmetric, precision=self.precision)
        return _HostFactorization(core, data.size)

    def times(self, dv, X, transpose):
        """Ȧ X (or Ȧᵀ X) for values ``dv`` at A's entries, in torch operations."""
        rows, cols = (self.cols, self.rows) if transpose else (self.rows, self.cols)
        w = dv if X.dim() == 1 else dv[:, None]
        out = torch.zeros_like(X).index_add(0, rows, w * X[cols])
        if self.mirror is not None:
            m = torch.where(self.mirror, dv, torch.zeros_like(dv))
            out = out.index_add(0, cols, (m if X.dim() == 1 else m[:, None]) * X[rows])
        return out

    def outer(self, left, right):
        """−Σ_c left[i, c]·right[j, c] at each entry (i, j) (plus the mirror for one-triangle
        storage): the gradient of ⟨left, A right⟩·(−1) with respect to A's values, in torch
        operations (so itself differentiable)."""
        prod = left[self.rows] * right[self.cols]
        g = -(prod if prod.dim() == 1 else prod.sum(dim=-1))
        if self.mirror is not None:
            mirrored = left[self.cols] * right[self.rows]
            mirrored = mirrored if mirrored.dim() == 1 else mirrored.sum(dim=-1)
            g = g - torch.where(self.mirror, mirrored, torch.zeros_like(mirrored))
        return g


class _Kept:
    """The factorization of A at one values tensor, made when first needed and kept for every
    solve and derivative of that matrix. A solve with other values (changed in place, or another
    element of a vmapped batch) factors those values instead — the factorization always matches
    the values a solve is given."""

    def __init__(self, pattern, host=None, values=None):
        self.pattern, self.host = pattern, host
        self.values = None if values is None else values.detach().clone()

    def get(self, values):
        if self.host is None or not (self.values.shape == values.shape
                                     and torch.equal(self.values, values.detach())):
            self.host = self.pattern.factor(values)
            self.values = values.detach().clone()
        return self.host


class _Solve(torch.autograd.Function):
    """X = A⁻¹B (``transpose``: A⁻ᵀB) for A given by its values at ``pattern``'s entries, on the
    factorization ``kept``. Its backward pass, forward-mode rule and vmap rule are written with
    this same function and torch operations, so they are differentiable again."""

    @staticmethod
    def forward(values, B, pattern, kept, transpose):
        f = kept.get(values)
        b = _host(B)
        x = f.solve_transpose(b) if transpose else f.solve(b)
        return torch.from_numpy(np.ascontiguousarray(x)).to(
            dtype=torch.promote_types(values.dtype, B.dtype), device=B.device)

    @staticmethod
    def setup_context(ctx, inputs, output):
        values, B, pattern, kept, transpose = inputs
        ctx.pattern, ctx.kept, ctx.transpose = pattern, kept, transpose
        ctx.v_dtype, ctx.b_dtype, ctx.b_device = values.dtype, B.dtype, B.device
        ctx.save_for_backward(values, output)
        ctx.save_for_forward(values, output)

    @staticmethod
    def backward(ctx, grad_x):
        values, X = ctx.saved_tensors
        pattern, kept, transpose = ctx.pattern, ctx.kept, ctx.transpose
        grad_v = grad_b = None
        # X = A⁻¹B: Λ = A⁻ᵀḠ, Ā = −Λ Xᵀ.  Y = A⁻ᵀB: M = A⁻¹Ḡ, Ā = −Y Mᵀ.
        if not torch.is_grad_enabled() and not _is_wrapped(grad_x) and not _is_wrapped(X):
            # First order: on the host, the gradient at the entries by the library.
            f = kept.get(values)
            g = _host(grad_x)
            adj = f.solve(g) if transpose else f.solve_transpose(g)
            if ctx.needs_input_grad[0]:
                x = _host(X)
                left, right = (x, adj) if transpose else (adj, x)
                grad_v = torch.from_numpy(f.grad_values(left, right)).to(ctx.v_dtype)
            if ctx.needs_input_grad[1]:
                grad_b = torch.from_numpy(np.ascontiguousarray(adj)).to(dtype=ctx.b_dtype,
                                                                        device=ctx.b_device)
            return grad_v, grad_b, None, None, None
        if pattern.first_order_upstream and ctx.needs_input_grad[0] and torch.is_grad_enabled():
            raise RuntimeError(
                "sparsegrad_rs.torch: PyTorch's backward from this sparse A to its values is first "
                "order only (a CSR tensor, a tensor built with torch.sparse_coo_tensor / "
                "sparse_csr_tensor from differentiable values, or an uncoalesced one): it would "
                "silently drop the second-order terms (create_graph=True, double backward, "
                "Hessian-vector products). Pass the values to "
                "sparsegrad_rs.torch.solve_coo(indices, values, B, n) instead (exact to any "
                "order), or a coalesced COO leaf tensor.")
        # Differentiable: the adjoint solve is this function again, the outer product torch's.
        adj = _Solve.apply(values, grad_x, pattern, kept, not transpose)
        if ctx.needs_input_grad[0]:
            left, right = (X, adj) if transpose else (adj, X)
            grad_v = pattern.outer(left, right).to(ctx.v_dtype)
        if ctx.needs_input_grad[1]:
            grad_b = adj.to(ctx.b_dtype)
        return grad_v, grad_b, None, None, None

    @staticmethod
    def jvp(ctx, values_dot, b_dot, *_):
        values, X = ctx.saved_tensors
        rhs = torch.zeros_like(X) if b_dot is None else b_dot.to(X.dtype)
        if values_dot is not None:
            rhs = rhs - ctx.pattern.times(values_dot.to(X.dtype), X, ctx.transpose)
        return _Solve.apply(values, rhs, ctx.pattern, ctx.kept, ctx.transpose)

    @staticmethod
    def vmap(info, in_dims, values, B, pattern, kept, transpose):
        v_dim, b_dim = in_dims[0], in_dims[1]
        n = pattern.n
        if v_dim is None:
            # One matrix: the batch of right-hand sides is one multi-column solve.
            Bb = B.movedim(b_dim, 0)
            batch = Bb.shape[0]
            cols = Bb.reshape(batch, n, -1).permute(1, 0, 2).reshape(n, -1)
            X = _Solve.apply(values, cols, pattern, kept, transpose)
            return X.reshape(n, batch, -1).permute(1, 0, 2).reshape(Bb.shape), 0
        # A batch of matrices: one factorization each.
        vb = values.movedim(v_dim, 0)
        Bb = None if b_dim is None else B.movedim(b_dim, 0)
        out = [_Solve.apply(vb[i], B if Bb is None else Bb[i], pattern, _Kept(pattern), transpose)
               for i in range(vb.shape[0])]
        return torch.stack(out), 0


def _check_rhs(B, n):
    if not isinstance(B, torch.Tensor) or B.layout != torch.strided:
        raise TypeError("B must be a dense tensor")
    B = _real_tensor(B, "B")
    if B.dim() not in (1, 2) or B.shape[0] != n:
        raise ValueError(f"B must be ({n},) or ({n}, k), got {tuple(B.shape)}")
    return B


def _batch_rhs(B, batch, n):
    """B as (batch, n, k), whether it is one (n,) vector shared by the batch, and whether the
    result is (batch, n) rather than (batch, n, k); a ValueError for any other shape."""
    shared, vector = B.dim() == 1, B.dim() in (1, 2)
    if shared and B.shape[0] == n:
        return B.reshape(1, n, 1).expand(batch, n, 1), shared, vector
    if B.dim() in (2, 3) and B.shape[0] == batch and B.shape[1] == n:
        return B.reshape(batch, n, -1), shared, vector
    raise ValueError(f"B must be ({n},), ({batch}, {n}) or ({batch}, {n}, k), got "
                     f"{tuple(B.shape)}")


class BatchCooSolve(torch.autograd.Function):
    """X[i] = A_i⁻¹B[i] for a batch of values over one coordinate pattern: the batch is factored
    in parallel (one symbolic analysis), each factorization kept for its backward pass."""

    @staticmethod
    def forward(ctx, values, B, rows, cols, n, method="auto", symmetric=None, precision="double"):
        batch = values.shape[0]
        B3, shared, vector = _batch_rhs(B, batch, n)
        data = np.ascontiguousarray(values.detach().cpu().to(torch.float64).numpy())
        factors = _core.factorize_batch(n, rows, cols, data, method=method, symmetric=symmetric,
                                        precision=precision)
        b = np.ascontiguousarray(B3.detach().cpu().to(torch.float64).numpy())
        x = _core.solve_batch(factors, b)
        ctx.factors, ctx.x, ctx.shared, ctx.vector = factors, x, shared, vector
        ctx.v_dtype, ctx.b_dtype, ctx.b_device, ctx.b_shape = (values.dtype, B.dtype, B.device,
                                                               B.shape)
        out = torch.from_numpy(x).to(dtype=torch.promote_types(values.dtype, B.dtype),
                                     device=B.device)
        return out[:, :, 0] if vector else out

    @staticmethod
    def backward(ctx, grad_x):
        _no_second_order()
        x = ctx.x
        g = grad_x.detach().cpu().to(torch.float64).reshape(x.shape).numpy()
        lam = _core.solve_batch(ctx.factors, np.ascontiguousarray(g), transpose=True)
        grad_v = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_v = torch.from_numpy(_core.grad_values_batch(ctx.factors, lam, x)).to(ctx.v_dtype)
        if ctx.needs_input_grad[1]:
            lam_t = torch.from_numpy(lam)
            if ctx.shared:
                lam_t = lam_t.sum(dim=0)
            grad_b = lam_t.reshape(ctx.b_shape).to(dtype=ctx.b_dtype, device=ctx.b_device)
        return grad_v, grad_b, None, None, None, None, None, None


# --- torch.compile: the COO solve as a registered custom op -------------------------------------
#
# Dynamo cannot trace into the native extension, so under ``torch.compile`` ``solve_coo`` calls
# this op (a fake implementation gives shapes and dtypes to the compiler). A custom op's outputs
# are tensors, so the forward factorization travels to the backward op under an integer token:
# at most ``KEEP`` are kept for backward passes that have not run; an older one's backward
# factors again (same result, one more numeric factorization).

#: Most factorizations kept for pending backward passes of the compiled op.
KEEP = 32
_kept = {}
_next_token = [0]


def _keep(f, x):
    _next_token[0] += 1
    token = _next_token[0]
    _kept[token] = (f, x)
    while len(_kept) > KEEP:
        _kept.pop(next(iter(_kept)))
    return token


def _factor_coo(values, rows, cols, n, method, symmetric, precision):
    data = np.ascontiguousarray(values.detach().cpu().to(torch.float64).numpy())
    r = np.ascontiguousarray(rows.detach().cpu().numpy(), dtype=np.int64)
    c = np.ascontiguousarray(cols.detach().cpu().numpy(), dtype=np.int64)
    return _HostFactorization(_core.factorize(n, r, c, data, method=method, symmetric=symmetric,
                                              precision=precision), data.size)


@torch.library.custom_op("sparsegrad_rs::coo_solve", mutates_args=())
def _coo_solve_op(values: torch.Tensor, B: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                  n: int, method: str, symmetric: Optional[bool], precision: str
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    if B.dim() not in (1, 2) or B.shape[0] != n:
        raise ValueError(f"B must be ({n},) or ({n}, k), got {tuple(B.shape)}")
    f = _factor_coo(values, rows, cols, n, method, symmetric, precision)
    x = f.solve(B.detach().cpu().to(torch.float64).numpy())
    # A fresh buffer: the compiled graph may reuse an op's output in place, and x is kept for
    # the backward op.
    out = torch.from_numpy(np.array(x, order="C", copy=True)).to(
        dtype=torch.promote_types(values.dtype, B.dtype), device=B.device)
    return out, torch.tensor(_keep(f, x), dtype=torch.int64)


@_coo_solve_op.register_fake
def _(values, B, rows, cols, n, method, symmetric, precision):
    return (B.new_empty(B.shape, dtype=torch.promote_types(values.dtype, B.dtype)),
            torch.empty((), dtype=torch.int64))


@torch.library.custom_op("sparsegrad_rs::coo_solve_backward", mutates_args=())
def _coo_solve_backward_op(token: torch.Tensor, grad_x: torch.Tensor, values: torch.Tensor,
                           B: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, n: int,
                           method: str, symmetric: Optional[bool], precision: str
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    kept = _kept.pop(int(token), None)
    if kept is None:   # dropped (more than KEEP pending): factor again
        f = _factor_coo(values, rows, cols, n, method, symmetric, precision)
        kept = (f, f.solve(B.detach().cpu().to(torch.float64).numpy()))
    f, x = kept
    lam = f.solve_transpose(grad_x.detach().cpu().to(torch.float64).numpy())
    gv = torch.from_numpy(f.grad_values(lam, x)).to(dtype=values.dtype, device=values.device)
    gb = torch.from_numpy(np.ascontiguousarray(lam)).to(dtype=B.dtype, device=B.device)
    return gv, gb


@_coo_solve_backward_op.register_fake
def _(token, grad_x, values, B, rows, cols, n, method, symmetric, precision):
    return torch.empty_like(values), torch.empty_like(B)


def _coo_setup_context(ctx, inputs, output):
    values, B, rows, cols, n, method, symmetric, precision = inputs
    ctx.save_for_backward(values, B, rows, cols, output[1])
    ctx.n, ctx.method, ctx.symmetric, ctx.precision = n, method, symmetric, precision


def _coo_backward(ctx, grad_x, _grad_token):
    values, B, rows, cols, token = ctx.saved_tensors
    gv, gb = _coo_solve_backward_op(token, grad_x, values, B, rows, cols, ctx.n, ctx.method,
                                    ctx.symmetric, ctx.precision)
    return gv, gb, None, None, None, None, None, None


_coo_solve_op.register_autograd(_coo_backward, setup_context=_coo_setup_context)


def _factor_batch(values, rows, cols, n, method, symmetric, precision, B):
    """Factors every batch element (in parallel, one symbolic analysis) and solves: (factors, x)
    with x (batch, n, k) in float64."""
    B3, _, _ = _batch_rhs(B, values.shape[0], n)
    data = np.ascontiguousarray(values.detach().cpu().to(torch.float64).numpy())
    r = np.ascontiguousarray(rows.detach().cpu().numpy(), dtype=np.int64)
    c = np.ascontiguousarray(cols.detach().cpu().numpy(), dtype=np.int64)
    factors = _core.factorize_batch(n, r, c, data, method=method, symmetric=symmetric,
                                    precision=precision)
    b = np.ascontiguousarray(B3.detach().cpu().to(torch.float64).numpy())
    return factors, _core.solve_batch(factors, b)


@torch.library.custom_op("sparsegrad_rs::coo_solve_batch", mutates_args=())
def _coo_solve_batch_op(values: torch.Tensor, B: torch.Tensor, rows: torch.Tensor,
                        cols: torch.Tensor, n: int, method: str, symmetric: Optional[bool],
                        precision: str) -> tuple[torch.Tensor, torch.Tensor]:
    factors, x = _factor_batch(values, rows, cols, n, method, symmetric, precision, B)
    # A fresh buffer: the compiled graph may reuse an op's output in place, and x is kept for
    # the backward op.
    out = torch.from_numpy(x[:, :, 0].copy() if B.dim() in (1, 2) else x.copy()).to(
        dtype=torch.promote_types(values.dtype, B.dtype), device=B.device)
    return out, torch.tensor(_keep(factors, x), dtype=torch.int64)


@_coo_solve_batch_op.register_fake
def _(values, B, rows, cols, n, method, symmetric, precision):
    batch = values.shape[0]
    shape = (batch, n) if B.dim() in (1, 2) else (batch, n, B.shape[2])
    return (B.new_empty(shape, dtype=torch.promote_types(values.dtype, B.dtype)),
            torch.empty((), dtype=torch.int64))


@torch.library.custom_op("sparsegrad_rs::coo_solve_batch_backward", mutates_args=())
def _coo_solve_batch_backward_op(token: torch.Tensor, grad_x: torch.Tensor, values: torch.Tensor,
                                 B: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, n: int,
                                 method: str, symmetric: Optional[bool], precision: str
                                 ) -> tuple[torch.Tensor, torch.Tensor]:
    kept = _kept.pop(int(token), None)
    if kept is None:   # dropped (more than KEEP pending): factor again
        kept = _factor_batch(values, rows, cols, n, method, symmetric, precision, B)
    factors, x = kept
    g = grad_x.detach().cpu().to(torch.float64).reshape(x.shape).numpy()
    lam = _core.solve_batch(factors, np.ascontiguousarray(g), transpose=True)
    gv = torch.from_numpy(_core.grad_values_batch(factors, lam, x)).to(
        dtype=values.dtype, device=values.device)
    lam_t = torch.from_numpy(lam)
    if B.dim() == 1:   # one B shared by the batch: its gradient sums over the batch
        lam_t = lam_t.sum(dim=0)
    gb = lam_t.reshape(B.shape).to(dtype=B.dtype, device=B.device)
    return gv, gb


@_coo_solve_batch_backward_op.register_fake
def _(token, grad_x, values, B, rows, cols, n, method, symmetric, precision):
    return torch.empty_like(values), torch.empty_like(B)


def _coo_batch_backward(ctx, grad_x, _grad_token):
    values, B, rows, cols, token = ctx.saved_tensors
    gv, gb = _coo_solve_batch_backward_op(token, grad_x, values, B, rows, cols, ctx.n,
                                          ctx.method, ctx.symmetric, ctx.precision)
    return gv, gb, None, None, None, None, None, None


_coo_solve_batch_op.register_autograd(_coo_batch_backward, setup_context=_coo_setup_context)


def solve_coo(indices, values, B, n, method="auto", symmetric=None, precision="double"):
    """X = A⁻¹B for the n x n matrix with entries (indices[0, e], indices[1, e], values[e])
    (duplicates summed), differentiable in ``values`` (dense gradient, one per entry) and B.

    Batches over one pattern:

    - ``values`` (nnz,) with B (batch, n, k): one factorization, all batch·k columns solved at
      once; returns (batch, n, k).
    - ``values`` (batch, nnz): one matrix per batch element, factored in parallel (one symbolic
      analysis for all); B is (n,) shared by every element, (batch, n) or (batch, n, k); returns
      (batch, n) or (batch, n, k). Gradients are per batch element.

    ``precision`` ("double", "mixed", "single", "auto") as in :func:`sparsegrad_rs.factorize`,
    in every path (eager, batched, ``torch.compile``).
    """
    if torch.compiler.is_compiling():
        # Traced by torch.compile: the registered ops (checks run when they execute).
        if values.dim() == 2:
            return _coo_solve_batch_op(values, B, indices[0], indices[1], n, method,
                                       symmetric, precision)[0]
        if B.dim() == 3:   # one matrix, a batch of right-hand sides: one multi-column solve
            batch, k = B.shape[0], B.shape[2]
            X = _coo_solve_op(values, B.permute(1, 0, 2).reshape(n, batch * k), indices[0],
                              indices[1], n, method, symmetric, precision)[0]
            return X.reshape(n, batch, k).permute(1, 0, 2)
        return _coo_solve_op(values, B, indices[0], indices[1], n, method, symmetric,
                             precision)[0]
    ind = _index_array(indices) if isinstance(indices, torch.Tensor) else np.asarray(indices)
    if ind.ndim != 2 or ind.shape[0] != 2:
        raise ValueError(f"indices must be 2 x nnz, got shape {tuple(ind.shape)}")
    if not np.issubdtype(ind.dtype, np.integer):
        raise TypeError(f"indices must hold integers, got dtype {ind.dtype}")
    rows = np.ascontiguousarray(ind[0], dtype=np.int64)
    cols = np.ascontiguousarray(ind[1], dtype=np.int64)
    n = _check_integral(n)
    values, B = _real_tensor(values, "values"), _real_tensor(B, "B")
    if values.dim() == 2:
        if values.shape[1] != rows.shape[0]:
            raise ValueError(f"values must be (batch, {rows.shape[0]}) for {rows.shape[0]} "
                             f"coordinates, got {tuple(values.shape)}")
        return BatchCooSolve.apply(values, B, rows, cols, n, method, symmetric, precision)
    if values.dim() != 1 or values.shape[0] != rows.shape[0]:
        raise ValueError(f"values must be 1-D with one value per coordinate ({rows.shape[0]}), "
                         f"got shape {tuple(values.shape)}")
    pattern = _Pattern(n, rows, cols, method, symmetric, precision)
    if B.dim() == 3:
        batch, rows_b, k = B.shape
        if rows_b != n:
            raise ValueError(f"B must be (batch, {n}, k), got {tuple(B.shape)}")
        X = _Solve.apply(values, B.permute(1, 0, 2).reshape(n, batch * k), pattern,
                         _Kept(pattern), False)
        return X.reshape(n, batch, k).permute(1, 0, 2)
    B = _check_rhs(B, n)
    return _Solve.apply(values, B, pattern, _Kept(pattern), False)


def solve(A, B, method="auto", symmetric=None, precision="double"):
    """X = A⁻¹B, differentiable in A's stored values and in B, to any order and in forward mode
    (see the module docs).

    Second order in A works for a coalesced COO leaf tensor. Through a CSR tensor or a sparse A
    built from differentiable values (``torch.sparse_coo_tensor(indices, values)``) it raises:
    PyTorch's own backward there is first order only and would drop those terms silently.
    ``solve_coo(indices, values, B, n)`` takes the values directly and is exact to any order.

    ``precision`` as in :func:`sparsegrad_rs.factorize` ("double", "mixed", "single", "auto"):
    the arithmetic of the host factorization; values and gradients are returned in B's dtype.
    Integer A or B are computed (and returned) in float64; complex ones are a TypeError."""
    if isinstance(A, torch.Tensor) and not A.is_floating_point() and not A.is_complex():
        A = A.to(torch.float64)
    if not isinstance(A, torch.Tensor):
        raise TypeError(f"A must be a sparse COO or CSR tensor, got {type(A).__name__}")
    n, rows, cols, values = _entries(A)
    values = _real_tensor(values, "A")
    B = _check_rhs(B, n)
    pattern = _Pattern(n, rows, cols, method, symmetric, precision)
    pattern.first_order_upstream = _first_order_upstream(values)
    return _Solve.apply(values, B, pattern, _Kept(pattern), False)


class Factorization:
    """A factorization of a sparse tensor A kept for any number of differentiable solves
    (from :func:`factorize`): ``solve(B)`` = A⁻¹B and ``solve_transpose(B)`` = A⁻ᵀB, each
    differentiable in A's stored values (gradient in A's layout, as :func:`solve` gives) and in B,
    to any order and in forward mode, without factoring again — neither in the forward nor in any
    derivative pass.

    The factorization always matches A's values: if they are changed in place afterwards, the
    next solve factors the new values (once) instead of silently using the old factor.
    """

    def __init__(self, A, method="auto", symmetric=None, precision="double"):
        if isinstance(A, torch.Tensor) and not A.is_floating_point() and not A.is_complex():
            A = A.to(torch.float64)
        n, rows, cols, values = _entries(A)
        self._values = _real_tensor(values, "A")
        self._pattern = _Pattern(n, rows, cols, method, symmetric, precision)
        self._pattern.first_order_upstream = _first_order_upstream(self._values)
        self._kept = _Kept(self._pattern)
        self._kept.get(self._values)
        self._dtype = self._values.dtype
        self.n = n

    def _solve(self, B, transpose):
        B = _check_rhs(B, self.n)
        return _Solve.apply(self._values, B, self._pattern, self._kept, transpose)

    def solve(self, B):
        """X = A⁻¹B for a dense B of shape (n,) or (n, k); differentiable in A and B."""
        return self._solve(B, False)

    def solve_transpose(self, B):
        """Y = A⁻ᵀB for a dense B of shape (n,) or (n, k); differentiable in A and B."""
        return self._solve(B, True)

    @property
    def info(self):
        """As :attr:`sparsegrad_rs.Factorization.info` (``method`` is what ran)."""
        return self._kept.host.info

    def __repr__(self):
        i = self.info
        return (f"sparsegrad_rs.torch.Factorization(n={self.n}, method={i['method']!r}, "
                f"storage={i['storage']!r}, dtype={self._dtype})")


def factorize(A, method="auto", symmetric=None, precision="double"):
    """Factors the sparse COO or CSR tensor A once; returns a :class:`Factorization` whose
    ``solve`` / ``solve_transpose`` are differentiable in A's values and in B. ``method``,
    ``symmetric`` and ``precision`` as in :func:`sparsegrad_rs.factorize`; errors as
    :func:`solve`."""
    return Factorization(A, method=method, symmetric=symmetric, precision=precision)


class _LogDet(torch.autograd.Function):
    """log det A for A given by its values at ``pattern``'s entries; the backward pass reads the
    selected inverse of the kept factorization (first order)."""

    @staticmethod
    def forward(ctx, values, pattern):
        f = pattern.factor(values)
        sign, value = f.logdet()
        if sign < 0:
            raise ValueError("det A < 0, so log det A is not real; "
                             "sparsegrad_rs.factorize(A).logdet() gives the sign and log |det A|")
        ctx.factorization, ctx.v_dtype = f, values.dtype
        return torch.tensor(value, dtype=values.dtype)

    @staticmethod
    def backward(ctx, grad):
        if torch.is_grad_enabled():
            raise RuntimeError(
                "sparsegrad_rs.torch: logdet's backward is first order only (its second derivative "
                "needs entries of A⁻¹ȦA⁻¹ outside the selected inverse): create_graph=True and "
                "Hessian-vector products through logdet are not available.")
        g = torch.from_numpy(ctx.factorization.logdet_grad()).to(ctx.v_dtype)
        return grad * g, None


def logdet(A, method="auto", symmetric=None):
    """log det A for a sparse COO or CSR tensor A (symmetric: both triangles stored, or one with
    ``symmetric=True``), differentiable in A's values: the gradient A⁻¹ at A's stored entries
    (doubled off the diagonal for one triangle) comes from selected inversion on the forward
    factorization — never a dense inverse. First order (``create_graph=True`` raises); det A < 0
    is a ValueError."""
    if isinstance(A, torch.Tensor) and not A.is_floating_point() and not A.is_complex():
        A = A.to(torch.float64)
    n, rows, cols, values = _entries(A)
    values = _real_tensor(values, "A")
    return _LogDet.apply(values, _Pattern(n, rows, cols, method, symmetric))


def logdet_coo(indices, values, n, method="auto", symmetric=None):
    """log det A for the n x n matrix with entries (indices[0, e], indices[1, e], values[e])
    (duplicates summed), differentiable in ``values`` (one gradient per entry); as
    :func:`logdet` otherwise."""
    ind = _index_array(indices) if isinstance(indices, torch.Tensor) else np.asarray(indices)
    if ind.ndim != 2 or ind.shape[0] != 2:
        raise ValueError(f"indices must be 2 x nnz, got shape {tuple(ind.shape)}")
    values = _real_tensor(values, "values")
    if values.dim() != 1 or values.shape[0] != ind.shape[1]:
        raise ValueError(f"values must be 1-D with one value per coordinate ({ind.shape[1]}), "
                         f"got shape {tuple(values.shape)}")
    return _LogDet.apply(values, _Pattern(_check_integral(n), ind[0], ind[1], method, symmetric))
