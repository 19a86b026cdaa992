"""``sparsegrad_rs.torch.solve(A, B)``: a differentiable sparse solve for PyTorch.

A is a sparse COO or CSR tensor (n x n) whose values may require grad; B is dense (n or n x k).
The forward factorization (Cholesky for a symmetric A, LU otherwise — see
:func:`sparsegrad_rs.factorize`) is kept for the backward pass: one factorization per call, the adjoint
is a transpose solve on it, and dL/dA is returned at A's stored entries only, in A's own layout
(sparse COO with A's indices, or CSR with A's crow/col indices). Non-symmetric matrices get the
true Aᵀ adjoint. Computation is in float64; float32 inputs are computed in float64 and the results
cast back to float32. CPU tensors only (others are moved to the CPU and results moved back).

A drop-in for the seed's ``SparseSolver.apply(A_sparse, b)``::

    x = sparsegrad_rs.torch.solve(A_sparse, b)
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from . import Factorization as _HostFactorization
from . import _check_integral, _core, _rows_of_indptr

__all__ = ["solve", "solve_coo", "factorize", "Factorization", "SparseSolve", "CooSolve",
           "BatchCooSolve"]


def _real_tensor(t, name):
    """``t`` with a floating dtype: integers and booleans promoted to float64 (they cannot require
    grad, so nothing is lost); complex is a TypeError naming the argument."""
    if t.is_complex():
        raise TypeError(f"{name} has complex values (dtype {t.dtype}); sparsegrad solves real "
                        "systems only")
    return t if t.is_floating_point() else t.to(torch.float64)


def _no_second_order():
    """The solve's backward is not itself differentiable (yet): with ``create_graph=True`` its
    result would silently miss the solve's second-order term, so refuse."""
    if torch.is_grad_enabled():
        raise RuntimeError(
            "sparsegrad_rs.torch: the sparse solve's backward is not differentiable (no second order "
            "through the solve yet): create_graph=True, double backward and Hessian-vector "
            "products would silently miss the solve's term. Compute first-order gradients "
            "without create_graph.")


def _entries(A):
    """(n, rows, cols, values tensor, rebuild) of a sparse COO or CSR tensor, in its entry order."""
    if A.dim() != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be a square matrix, got shape {tuple(A.shape)}")
    n = A.shape[0]
    if A.is_complex():
        raise TypeError(f"A has complex values (dtype {A.dtype}); sparsegrad solves real systems "
                        "only")
    if A.layout == torch.sparse_coo:
        idx = A._indices().detach().cpu()
        vals = A._values()
        rows, cols = idx[0].numpy().astype(np.int64), idx[1].numpy().astype(np.int64)

        # Autograd coalesces a COO gradient before handing each input value its entry, so the
        # gradient is returned coalesced: one value per distinct (row, col) — every duplicate of
        # an entry has the same derivative, which a sum over duplicates would multiply.
        if A.is_coalesced():
            def rebuild(g):
                return torch.sparse_coo_tensor(A._indices(), g, A.shape, is_coalesced=True)
        else:
            key = rows * n + cols
            uniq, first = np.unique(key, return_index=True)

            def rebuild(g):
                ind = torch.from_numpy(np.vstack([uniq // n, uniq % n])).to(A.device)
                return torch.sparse_coo_tensor(ind, g[torch.from_numpy(first)], A.shape,
                                               is_coalesced=True)

        return n, rows, cols, vals, rebuild
    if A.layout == torch.sparse_csr:
        crow, col = A.crow_indices().detach().cpu(), A.col_indices().detach().cpu()
        vals = A.values()
        rows = _rows_of_indptr(crow.numpy(), col.shape[0], "crow_indices")
        cols = col.numpy().astype(np.int64)
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

        def rebuild(g):
            return torch.sparse_csr_tensor(A.crow_indices(), A.col_indices(), g, A.shape)

        return n, rows, cols, vals, rebuild
    raise TypeError(f"A must be a sparse COO or CSR tensor, got layout {A.layout}")


class SparseSolve(torch.autograd.Function):
    """X = A⁻¹B with the factorization kept for the backward pass."""

    @staticmethod
    def forward(ctx, A, B, method="auto", symmetric=None):
        n, rows, cols, vals, rebuild = _entries(A)
        if B.layout != torch.strided:
            raise TypeError("B must be a dense tensor")
        B = _real_tensor(B, "B")
        vals = _real_tensor(vals, "A")
        if B.dim() not in (1, 2) or B.shape[0] != n:
            raise ValueError(f"B must be ({n},) or ({n}, k), got {tuple(B.shape)}")
        data = np.ascontiguousarray(vals.detach().cpu().to(torch.float64).numpy())
        core = _core.factorize(n, rows, cols, data, method=method, symmetric=symmetric)
        f = _HostFactorization(core, data.size)
        b = B.detach().cpu().to(torch.float64).numpy()
        x = f.solve(b)
        ctx.factorization, ctx.x, ctx.rebuild = f, x, rebuild
        ctx.a_dtype, ctx.b_dtype, ctx.b_device = vals.dtype, B.dtype, B.device
        out_dtype = torch.promote_types(vals.dtype, B.dtype)
        return torch.from_numpy(np.ascontiguousarray(x)).to(dtype=out_dtype, device=B.device)

    @staticmethod
    def backward(ctx, grad_x):
        _no_second_order()
        f, x = ctx.factorization, ctx.x
        g = grad_x.detach().cpu().to(torch.float64).numpy()
        lam = f.solve_transpose(g)
        grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            gv = torch.from_numpy(f.grad_values(lam, x)).to(ctx.a_dtype)
            grad_a = ctx.rebuild(gv)
        if ctx.needs_input_grad[1]:
            grad_b = torch.from_numpy(np.ascontiguousarray(lam)).to(dtype=ctx.b_dtype, device=ctx.b_device)
        return grad_a, grad_b, None, None


class CooSolve(torch.autograd.Function):
    """X = A⁻¹B for A given by COO coordinates and a values tensor (duplicates summed)."""

    @staticmethod
    def forward(ctx, values, B, rows, cols, n, method="auto", symmetric=None):
        values, B = _real_tensor(values, "values"), _real_tensor(B, "B")
        if B.dim() not in (1, 2) or B.shape[0] != n:
            raise ValueError(f"B must be ({n},) or ({n}, k), got {tuple(B.shape)}")
        if values.dim() != 1 or values.shape[0] != rows.shape[0]:
            raise ValueError(f"values must be 1-D with one value per coordinate ({rows.shape[0]}), "
                             f"got shape {tuple(values.shape)}")
        data = np.ascontiguousarray(values.detach().cpu().to(torch.float64).numpy())
        f = _HostFactorization(_core.factorize(n, rows, cols, data, method=method, symmetric=symmetric),
                          data.size)
        x = f.solve(B.detach().cpu().to(torch.float64).numpy())
        ctx.factorization, ctx.x = f, x
        ctx.v_dtype, ctx.b_dtype, ctx.b_device = values.dtype, B.dtype, B.device
        return torch.from_numpy(np.ascontiguousarray(x)).to(
            dtype=torch.promote_types(values.dtype, B.dtype), device=B.device)

    @staticmethod
    def backward(ctx, grad_x):
        _no_second_order()
        f, x = ctx.factorization, ctx.x
        lam = f.solve_transpose(grad_x.detach().cpu().to(torch.float64).numpy())
        grad_v = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_v = torch.from_numpy(f.grad_values(lam, x)).to(ctx.v_dtype)
        if ctx.needs_input_grad[1]:
            grad_b = torch.from_numpy(np.ascontiguousarray(lam)).to(dtype=ctx.b_dtype,
                                                                    device=ctx.b_device)
        return grad_v, grad_b, None, None, None, None, None


class BatchCooSolve(torch.autograd.Function):
    """X[i] = A_i⁻¹B[i] for a batch of values over one coordinate pattern: the batch is factored
    in parallel (one symbolic analysis), each factorization kept for its backward pass."""

    @staticmethod
    def forward(ctx, values, B, rows, cols, n, method="auto", symmetric=None):
        batch = values.shape[0]
        shared, vector = B.dim() == 1, B.dim() in (1, 2)
        if shared:
            if B.shape[0] != n:
                raise ValueError(f"B must be ({n},), ({batch}, {n}) or ({batch}, {n}, k), got "
                                 f"{tuple(B.shape)}")
            B3 = B.reshape(1, n, 1).expand(batch, n, 1)
        elif B.dim() in (2, 3) and B.shape[0] == batch and B.shape[1] == n:
            B3 = B.reshape(batch, n, -1)
        else:
            raise ValueError(f"B must be ({n},), ({batch}, {n}) or ({batch}, {n}, k), got "
                             f"{tuple(B.shape)}")
        data = np.ascontiguousarray(values.detach().cpu().to(torch.float64).numpy())
        factors = _core.factorize_batch(n, rows, cols, data, method=method, symmetric=symmetric)
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
        return grad_v, grad_b, None, None, None, None, None


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


def _factor_coo(values, rows, cols, n, method, symmetric):
    data = np.ascontiguousarray(values.detach().cpu().to(torch.float64).numpy())
    r = np.ascontiguousarray(rows.detach().cpu().numpy(), dtype=np.int64)
    c = np.ascontiguousarray(cols.detach().cpu().numpy(), dtype=np.int64)
    return _HostFactorization(_core.factorize(n, r, c, data, method=method, symmetric=symmetric),
                              data.size)


@torch.library.custom_op("sparsegrad_rs::coo_solve", mutates_args=())
def _coo_solve_op(values: torch.Tensor, B: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                  n: int, method: str, symmetric: Optional[bool]
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    if B.dim() not in (1, 2) or B.shape[0] != n:
        raise ValueError(f"B must be ({n},) or ({n}, k), got {tuple(B.shape)}")
    f = _factor_coo(values, rows, cols, n, method, symmetric)
    x = f.solve(B.detach().cpu().to(torch.float64).numpy())
    out = torch.from_numpy(np.ascontiguousarray(x)).to(
        dtype=torch.promote_types(values.dtype, B.dtype), device=B.device)
    return out, torch.tensor(_keep(f, x), dtype=torch.int64)


@_coo_solve_op.register_fake
def _(values, B, rows, cols, n, method, symmetric):
    return (B.new_empty(B.shape, dtype=torch.promote_types(values.dtype, B.dtype)),
            torch.empty((), dtype=torch.int64))


@torch.library.custom_op("sparsegrad_rs::coo_solve_backward", mutates_args=())
def _coo_solve_backward_op(token: torch.Tensor, grad_x: torch.Tensor, values: torch.Tensor,
                           B: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, n: int,
                           method: str, symmetric: Optional[bool]
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    kept = _kept.pop(int(token), None)
    if kept is None:   # dropped (more than KEEP pending): factor again
        f = _factor_coo(values, rows, cols, n, method, symmetric)
        kept = (f, f.solve(B.detach().cpu().to(torch.float64).numpy()))
    f, x = kept
    lam = f.solve_transpose(grad_x.detach().cpu().to(torch.float64).numpy())
    gv = torch.from_numpy(f.grad_values(lam, x)).to(dtype=values.dtype, device=values.device)
    gb = torch.from_numpy(np.ascontiguousarray(lam)).to(dtype=B.dtype, device=B.device)
    return gv, gb


@_coo_solve_backward_op.register_fake
def _(token, grad_x, values, B, rows, cols, n, method, symmetric):
    return torch.empty_like(values), torch.empty_like(B)


def _coo_setup_context(ctx, inputs, output):
    values, B, rows, cols, n, method, symmetric = inputs
    ctx.save_for_backward(values, B, rows, cols, output[1])
    ctx.n, ctx.method, ctx.symmetric = n, method, symmetric


def _coo_backward(ctx, grad_x, _grad_token):
    values, B, rows, cols, token = ctx.saved_tensors
    gv, gb = _coo_solve_backward_op(token, grad_x, values, B, rows, cols, ctx.n, ctx.method,
                                    ctx.symmetric)
    return gv, gb, None, None, None, None, None


_coo_solve_op.register_autograd(_coo_backward, setup_context=_coo_setup_context)


def solve_coo(indices, values, B, n, method="auto", symmetric=None):
    """X = A⁻¹B for the n x n matrix with entries (indices[0, e], indices[1, e], values[e])
    (duplicates summed), differentiable in ``values`` (dense gradient, one per entry) and B.

    Batches over one pattern:

    - ``values`` (nnz,) with B (batch, n, k): one factorization, all batch·k columns solved at
      once; returns (batch, n, k).
    - ``values`` (batch, nnz): one matrix per batch element, factored in parallel (one symbolic
      analysis for all); B is (n,) shared by every element, (batch, n) or (batch, n, k); returns
      (batch, n) or (batch, n, k). Gradients are per batch element.
    """
    if torch.compiler.is_compiling():
        # Traced by torch.compile: the registered op (checks run when it executes).
        return _coo_solve_op(values, B, indices[0], indices[1], n, method, symmetric)[0]
    ind = indices.detach().cpu().numpy() if isinstance(indices, torch.Tensor) else np.asarray(indices)
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
        return BatchCooSolve.apply(values, B, rows, cols, n, method, symmetric)
    if B.dim() == 3:
        batch, rows_b, k = B.shape
        if rows_b != n:
            raise ValueError(f"B must be (batch, {n}, k), got {tuple(B.shape)}")
        X = CooSolve.apply(values, B.permute(1, 0, 2).reshape(n, batch * k), rows, cols, n,
                           method, symmetric)
        return X.reshape(n, batch, k).permute(1, 0, 2)
    return CooSolve.apply(values, B, rows, cols, n, method, symmetric)


def solve(A, B, method="auto", symmetric=None):
    """X = A⁻¹B, differentiable in A's stored values and in B (see the module docs).

    Integer A or B are computed (and returned) in float64; complex ones are a TypeError. The
    backward pass is first order only: differentiating it (``create_graph=True``) raises."""
    if isinstance(A, torch.Tensor) and not A.is_floating_point() and not A.is_complex():
        A = A.to(torch.float64)
    return SparseSolve.apply(A, B, method, symmetric)


class _KeptSolve(torch.autograd.Function):
    """X = A⁻¹B (or A⁻ᵀB) on a :class:`Factorization`'s kept factor: no factorization here."""

    @staticmethod
    def forward(ctx, A, B, state, transpose):
        f = state._host
        b = B.detach().cpu().to(torch.float64).numpy()
        x = f.solve_transpose(b) if transpose else f.solve(b)
        ctx.state, ctx.x, ctx.transpose = state, x, transpose
        ctx.b_dtype, ctx.b_device = B.dtype, B.device
        return torch.from_numpy(np.ascontiguousarray(x)).to(
            dtype=torch.promote_types(state._dtype, B.dtype), device=B.device)

    @staticmethod
    def backward(ctx, grad_x):
        _no_second_order()
        state, x = ctx.state, ctx.x
        f = state._host
        g = grad_x.detach().cpu().to(torch.float64).numpy()
        # X = A⁻¹B: Λ = A⁻ᵀḠ, Ā = −Λ Xᵀ.  Y = A⁻ᵀB: M = A⁻¹Ḡ, Ā = −Y Mᵀ.
        adj = f.solve(g) if ctx.transpose else f.solve_transpose(g)
        grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            left, right = (x, adj) if ctx.transpose else (adj, x)
            gv = torch.from_numpy(f.grad_values(left, right)).to(state._dtype)
            grad_a = state._rebuild(gv)
        if ctx.needs_input_grad[1]:
            grad_b = torch.from_numpy(np.ascontiguousarray(adj)).to(dtype=ctx.b_dtype,
                                                                    device=ctx.b_device)
        return grad_a, grad_b, None, None


class Factorization:
    """A factorization of a sparse tensor A kept for any number of differentiable solves
    (from :func:`factorize`): ``solve(B)`` = A⁻¹B and ``solve_transpose(B)`` = A⁻ᵀB, each
    differentiable in A's stored values (gradient in A's layout, as :func:`solve` gives) and in B,
    without factoring again — neither in the forward nor in the backward pass.

    The values of A are read once, when it is factored: changing A afterwards does not change
    this factorization (factor again).
    """

    def __init__(self, A, method="auto", symmetric=None):
        if isinstance(A, torch.Tensor) and not A.is_floating_point() and not A.is_complex():
            A = A.to(torch.float64)
        n, rows, cols, vals, rebuild = _entries(A)
        vals = _real_tensor(vals, "A")
        data = np.ascontiguousarray(vals.detach().cpu().to(torch.float64).numpy())
        self._host = _HostFactorization(
            _core.factorize(n, rows, cols, data, method=method, symmetric=symmetric), data.size)
        self._A, self._rebuild, self._dtype = A, rebuild, vals.dtype
        self.n = n

    def _solve(self, B, transpose):
        if not isinstance(B, torch.Tensor) or B.layout != torch.strided:
            raise TypeError("B must be a dense tensor")
        B = _real_tensor(B, "B")
        if B.dim() not in (1, 2) or B.shape[0] != self.n:
            raise ValueError(f"B must be ({self.n},) or ({self.n}, k), got {tuple(B.shape)}")
        return _KeptSolve.apply(self._A, B, self, transpose)

    def solve(self, B):
        """X = A⁻¹B for a dense B of shape (n,) or (n, k); differentiable in A and B."""
        return self._solve(B, False)

    def solve_transpose(self, B):
        """Y = A⁻ᵀB for a dense B of shape (n,) or (n, k); differentiable in A and B."""
        return self._solve(B, True)

    @property
    def info(self):
        """As :attr:`sparsegrad_rs.Factorization.info` (``method`` is what ran)."""
        return self._host.info

    def __repr__(self):
        i = self.info
        return (f"sparsegrad_rs.torch.Factorization(n={self.n}, method={i['method']!r}, "
                f"storage={i['storage']!r}, dtype={self._dtype})")


def factorize(A, method="auto", symmetric=None):
    """Factors the sparse COO or CSR tensor A once; returns a :class:`Factorization` whose
    ``solve`` / ``solve_transpose`` are differentiable in A's values and in B. ``method`` and
    ``symmetric`` as in :func:`sparsegrad_rs.factorize`; errors as :func:`solve`."""
    return Factorization(A, method=method, symmetric=symmetric)
