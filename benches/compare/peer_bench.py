#!/usr/bin/env python3
"""Peer benchmark for sparse-solve autodiff: gradient of ||A(theta)^{-1} b||_F^2.

Problem (seed benchmark of pytorch-sparse-solve):
    A(theta) = I + L(theta), L = weighted graph Laplacian, one weight per edge.
    loss     = || A(theta)^{-1} b ||_F^2
    output   = dloss/dtheta

Cases
    chain : cyclic chain of n nodes, edge e = (e, (e+1) mod n)              (m = n edges)
    grid  : k x k 4-neighbour grid, k = round(sqrt(N)), row-major nodes;
            all horizontal edges (r,c)-(r,c+1) row-major, then all vertical
            edges (r,c)-(r+1,c) row-major                                    (m = 2k(k-1))
    grid3 : k x k x k 7-point grid, k = round(N^(1/3)), node x + k(y + k z); edges: all x-edges,
            then y-edges, then z-edges, each in node order (z outer, x inner) (m = 3k^2(k-1))
    elastic3: A = K(theta) = sum_e theta_e K_hex8, linear elasticity on a block of k^3 unit
            trilinear hexahedra (E = theta_e, nu = 0.3), clamped at x = 0, 3 unknowns per free
            node, k = round((N/3)^(1/3)), n = 3k(k+1)^2; numbering of
            sparsegrad::problems::elasticity::ElasticBlock                    (m = k^3 elements)
    theta_e = 1.5 + 0.5 sin(e),  b[i, c] = 1 + 0.5 cos(i + 7c)   (no RNG: reproducible anywhere)

This is sparsegrad's copy of ../shared/peers/peer_bench.py, extended with grid3/elastic3 as a
generic COO problem and a warm regime (--regime warm: CHOLMOD cholesky_inplace and PARDISO
phase 22 on the analysis of the first call).

One evaluation (cold regime: fresh theta = theta0 + 1e-3*i each time, no caching):
    build A from theta (COO -> CSC), factorize, x = A^{-1} b,
    lam = A^{-T} (2x) with the same factorization,
    gA_k = -sum_c lam[row_k, c] * x[col_k, c]   (gradient wrt COO nonzeros)
    chain rule to theta: each edge e=(u,v) owns 4 COO entries
    (+theta at (u,u),(v,v), -theta at (u,v),(v,u)).

Peers
    scipy       scipy.sparse.linalg.splu (SuperLU), trans='T' for the adjoint
    cholespy    cholespy.CholeskySolverD (CHOLMOD supernodal Cholesky), SPD -> adjoint = same solve
    cholmod     CHOLMOD via scikit-sparse (separate venv: setup.sh --with-cholmod), same hand adjoint
    torch_dense dense float64 torch + autograd (torch.linalg.solve), n <= 4096
    tsgu        torchsparsegradutils on CPU: sparse_solve_c4t (cupy module's NumPy/SciPy
                fallback, spsolve / factorized) [default], or --tsgu-mode generic:
                sparse_generic_solve with a user-supplied SuperLU solve pair

Usage
    python peer_bench.py --peer scipy --case chain --n 65536 [--rhs K] [--repeat R] [--json]
    python peer_bench.py --peer cholespy --case grid --n 256 --check
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

DENSE_MAX_N = 4096


# --------------------------------------------------------------------------- problem
def make_edges(case: str, n_req: int):
    """Return (n_nodes, u, v) with int64 edge endpoint arrays."""
    if case == "chain":
        n = int(n_req)
        u = np.arange(n, dtype=np.int64)
        v = (u + 1) % n
        return n, u, v
    if case == "grid":
        k = int(round(math.sqrt(n_req)))
        n = k * k
        idx = np.arange(n, dtype=np.int64).reshape(k, k)
        hu, hv = idx[:, :-1].ravel(), idx[:, 1:].ravel()   # horizontal, row-major
        vu, vv = idx[:-1, :].ravel(), idx[1:, :].ravel()   # vertical, row-major
        return n, np.concatenate([hu, vu]), np.concatenate([hv, vv])
    if case == "grid3":
        k = int(round(n_req ** (1.0 / 3.0)))
        n = k * k * k
        idx = np.arange(n, dtype=np.int64).reshape(k, k, k)  # idx[z, y, x] = x + k*(y + k*z)
        xu, xv = idx[:, :, :-1].ravel(), idx[:, :, 1:].ravel()
        yu, yv = idx[:, :-1, :].ravel(), idx[:, 1:, :].ravel()
        zu, zv = idx[:-1, :, :].ravel(), idx[1:, :, :].ravel()
        return n, np.concatenate([xu, yu, zu]), np.concatenate([xv, yv, zv])
    raise ValueError(f"unknown case {case!r}")


def hex8_stiffness(nu: float) -> np.ndarray:
    """24x24 stiffness of the unit cube, E = 1, Poisson ratio nu, 2x2x2 Gauss; unknowns 3*i + c,
    corners i = dx + 2 dy + 4 dz (the same formula as sparsegrad::problems::elasticity)."""
    lam = nu / ((1 + nu) * (1 - 2 * nu))
    mu = 1 / (2 * (1 + nu))
    D = np.zeros((6, 6))
    D[:3, :3] = lam
    D[[0, 1, 2], [0, 1, 2]] = lam + 2 * mu
    D[[3, 4, 5], [3, 4, 5]] = mu
    g = 0.5 / math.sqrt(3.0)
    pts = [0.5 - g, 0.5 + g]
    K = np.zeros((24, 24))
    f = lambda t, on: t if on else 1.0 - t
    s = lambda on: 1.0 if on else -1.0
    for gz in pts:
        for gy in pts:
            for gx in pts:
                B = np.zeros((6, 24))
                for i in range(8):
                    dx, dy, dz = i & 1, (i >> 1) & 1, (i >> 2) & 1
                    nx = s(dx) * f(gy, dy) * f(gz, dz)
                    ny = f(gx, dx) * s(dy) * f(gz, dz)
                    nz = f(gx, dx) * f(gy, dy) * s(dz)
                    c = 3 * i
                    B[0, c], B[1, c + 1], B[2, c + 2] = nx, ny, nz
                    B[3, c + 1], B[3, c + 2] = nz, ny
                    B[4, c], B[4, c + 2] = nz, nx
                    B[5, c], B[5, c + 1] = ny, nx
                K += B.T @ D @ B * 0.125
    return 0.5 * (K + K.T)


class Problem:
    """A(theta) as COO (rows, cols) with values linear in theta, and its chain rule.

    Graph cases: A = I + L(theta), COO [diag I | (u,u) | (v,v) | (u,v) | (v,u)].
    elastic3: A = sum_e theta_e K_hex8 on a block of k^3 unit hexahedra clamped at x = 0
    (sparsegrad::problems::elasticity::ElasticBlock numbering), COO of every element's
    free-free entries (duplicates summed by the conversion), entry j = theta[elem[j]] * kval[j].
    """

    def __init__(self, case: str, n_req: int, rhs: int, nu: float = 0.3):
        self.case = case
        if case == "elastic3":
            k = max(1, int(round((n_req / 3.0) ** (1.0 / 3.0))))
            self.k = k
            n = 3 * k * (k + 1) ** 2
            ez, ey, ex = np.meshgrid(np.arange(k), np.arange(k), np.arange(k), indexing="ij")
            ex, ey, ez = ex.ravel(), ey.ravel(), ez.ravel()      # element e = ex + k (ey + k ez)
            ne = ex.size
            dofs = np.empty((ne, 24), dtype=np.int64)
            for i in range(8):
                x, y, z = ex + (i & 1), ey + ((i >> 1) & 1), ez + ((i >> 2) & 1)
                free = 3 * ((x - 1) + k * (y + (k + 1) * z))
                for c in range(3):
                    dofs[:, 3 * i + c] = np.where(x > 0, free + c, -1)
            self.dofs = dofs
            self.ke = hex8_stiffness(nu)
            keep = (dofs[:, :, None] >= 0) & (dofs[:, None, :] >= 0)
            e_idx, a_idx, b_idx = np.nonzero(keep)
            self.rows = dofs[e_idx, a_idx]
            self.cols = dofs[e_idx, b_idx]
            self.elem = e_idx
            self.kval = self.ke[a_idx, b_idx]
            m = ne
        else:
            n, u, v = make_edges(case, n_req)
            self.u, self.v = u, v
            m = u.size
            self.rows, self.cols = coo_pattern(n, u, v)
        self.n, self.m = n, m
        # Deterministic closed forms (no RNG) so any implementation can rebuild the same problem:
        #   theta_e = 1.5 + 0.5 sin(e),  b[i, c] = 1 + 0.5 cos(i + 7c)
        e = np.arange(m, dtype=np.float64)
        self.theta0 = 1.5 + 0.5 * np.sin(e)
        i = np.arange(n, dtype=np.float64)[:, None]
        c = np.arange(rhs, dtype=np.float64)[None, :]
        self.b = 1.0 + 0.5 * np.cos(i + 7.0 * c)

    def values(self, theta):
        """COO values for theta (numpy array or torch tensor)."""
        if self.case == "elastic3":
            if isinstance(theta, np.ndarray):
                return theta[self.elem] * self.kval
            import torch
            return theta[torch.from_numpy(self.elem)] * torch.from_numpy(self.kval)
        if isinstance(theta, np.ndarray):
            return coo_values(self.n, theta)
        import torch
        return torch.cat([torch.ones(self.n, dtype=torch.float64), theta, theta, -theta, -theta])

    def chain(self, gA):
        """Gradient wrt theta from the gradient wrt the COO values."""
        if self.case == "elastic3":
            return np.bincount(self.elem, weights=gA * self.kval, minlength=self.m)
        return chain_rule_theta(self.n, self.m, gA)


def make_problem(case: str, n_req: int, rhs: int):
    return Problem(case, n_req, rhs)


def coo_pattern(n, u, v):
    """COO (rows, cols) of A = I + L(theta): [diag I | (u,u) | (v,v) | (u,v) | (v,u)]."""
    d = np.arange(n, dtype=np.int64)
    rows = np.concatenate([d, u, v, u, v])
    cols = np.concatenate([d, u, v, v, u])
    return rows, cols


def coo_values(n, theta):
    return np.concatenate([np.ones(n), theta, theta, -theta, -theta])


def chain_rule_theta(n, m, gA):
    """gA is the gradient wrt the COO values (length n + 4m)."""
    return gA[n:n + m] + gA[n + m:n + 2 * m] - gA[n + 2 * m:n + 3 * m] - gA[n + 3 * m:]


# --------------------------------------------------------------------------- peers
class Peer:
    name = "?"
    info: dict = {}

    def __init__(self, prob, warm=False):
        self.prob, self.warm = prob, warm
        self.n, self.m, self.b = prob.n, prob.m, prob.b
        self.rows, self.cols = prob.rows, prob.cols

    def evaluate(self, theta):
        """Return (loss, grad_theta) as (float, np.ndarray)."""
        raise NotImplementedError

    def loss_and_grad(self, x, lam):
        """loss = sum(X * X) and its gradient from X and the adjoint lam = A^{-T} 2X: at the
        stored entries gA = -sum_c lam[i, c] X[j, c], then chained to theta."""
        rows, cols = self.rows, self.cols
        if x.ndim == 1:
            gA = -(lam[rows] * x[cols])
        else:
            gA = -np.einsum("kc,kc->k", lam[rows], x[cols])
        return float(np.sum(x * x)), self.prob.chain(gA)


class ScipyPeer(Peer):
    name = "scipy"

    def __init__(self, prob, warm=False, permc="COLAMD"):
        super().__init__(prob, warm)
        n, b = prob.n, prob.b
        import scipy
        import scipy.sparse as sp
        import scipy.sparse.linalg as spla
        self.sp, self.spla = sp, spla
        self.permc = permc
        self.info = {"permc_spec": permc, "scipy": scipy.__version__}

    def evaluate(self, theta):
        sp, spla = self.sp, self.spla
        n, m, rows, cols, b = self.n, self.m, self.rows, self.cols, self.b
        vals = self.prob.values(theta)
        A = sp.coo_matrix((vals, (rows, cols)), shape=(n, n)).tocsc()  # sums duplicates
        lu = spla.splu(A, permc_spec=self.permc)
        x = lu.solve(b)
        lam = lu.solve(2.0 * x, trans="T")
        return self.loss_and_grad(x, lam)


class CholespyPeer(Peer):
    name = "cholespy"

    def __init__(self, prob, warm=False):
        super().__init__(prob, warm)
        n, b = prob.n, prob.b
        import cholespy
        self.cholespy = cholespy
        # cholespy takes numpy arrays (or torch tensors) via nanobind; indices int32, C-contiguous.
        self.rows32 = np.ascontiguousarray(self.rows, dtype=np.int32)
        self.cols32 = np.ascontiguousarray(self.cols, dtype=np.int32)
        self.bc = np.ascontiguousarray(b if b.shape[1] > 1 else b[:, 0])
        try:
            from importlib.metadata import version
            ver = version("cholespy")
        except Exception:  # pragma: no cover
            ver = getattr(cholespy, "__version__", "?")
        self.info = {"cholespy": ver}

    def evaluate(self, theta):
        cs = self.cholespy
        n, m, rows, cols = self.n, self.m, self.rows, self.cols
        vals = self.prob.values(theta)
        # COO input: the solver converts COO -> CSC internally (duplicates summed), then
        # CHOLMOD analyse + factorize. No API for numeric-only refactorization.
        solver = cs.CholeskySolverD(n, self.rows32, self.cols32, vals, cs.MatrixType.COO)
        x = np.empty_like(self.bc)
        solver.solve(self.bc, x)
        lam = np.empty_like(x)
        solver.solve(np.ascontiguousarray(2.0 * x), lam)  # A symmetric: A^{-T} = A^{-1}
        return self.loss_and_grad(x, lam)


class PardisoPeer(Peer):
    """MKL PARDISO through pypardiso (SPD, mtype 2, upper triangle in CSR); threads from
    MKL_NUM_THREADS. Analysis + numeric factorization every call (cold), forward and adjoint
    solves on the kept factor."""
    name = "pardiso"

    def __init__(self, prob, warm=False):
        super().__init__(prob, warm)
        n, b = prob.n, prob.b
        import scipy.sparse as sp
        import pypardiso
        self.sp, self.pypardiso = sp, pypardiso
        self.info = {"pardiso": "pypardiso (MKL)"}

    def evaluate(self, theta):
        n, m, rows, cols, b = self.n, self.m, self.rows, self.cols, self.b
        vals = self.prob.values(theta)
        A = self.sp.coo_matrix((vals, (rows, cols)), shape=(n, n)).tocsr()
        U = self.sp.triu(A).tocsr()
        U.sort_indices()
        s = getattr(self, "solver", None) if self.warm else None
        if s is not None:
            s.set_phase(22)                         # numeric factorization on the kept analysis
            s._call_pardiso(U, np.zeros_like(b))
        else:
            s = self.pypardiso.PyPardisoSolver(mtype=2)
            s.set_phase(12)
            s._call_pardiso(U, np.zeros_like(b))    # analysis + numeric factorization
        s.set_phase(33)
        x = s._call_pardiso(U, b).reshape(b.shape)
        lam = s._call_pardiso(U, 2.0 * x).reshape(b.shape)   # A symmetric: A^{-T} = A^{-1}
        if self.warm:
            self.solver = s
        else:
            s.free_memory(everything=True)
        return self.loss_and_grad(x, lam)


class CholmodPeer(Peer):
    """CHOLMOD through scikit-sparse (needs the separate venv made by setup.sh --with-cholmod)."""
    name = "cholmod"

    def __init__(self, prob, warm=False):
        super().__init__(prob, warm)
        n, b = prob.n, prob.b
        import scipy.sparse as sp
        from sksparse import cholmod
        self.sp, self.cholmod = sp, cholmod
        self.info = {"cholmod": "scikit-sparse"}

    def evaluate(self, theta):
        n, m, rows, cols, b = self.n, self.m, self.rows, self.cols, self.b
        vals = self.prob.values(theta)
        A = self.sp.coo_matrix((vals, (rows, cols)), shape=(n, n)).tocsc()
        if self.warm and getattr(self, "factor", None) is not None:
            factor = self.factor
            factor.cholesky_inplace(A)  # numeric factorization on the kept analysis (warm)
        else:
            factor = self.cholmod.cholesky(A)  # analyse + numeric factorization (cold)
            if self.warm:
                self.factor = factor
        x = factor(b)
        lam = factor(2.0 * x)  # A symmetric: A^{-T} = A^{-1}
        return self.loss_and_grad(x, lam)


class TorchDensePeer(Peer):
    name = "torch_dense"

    def __init__(self, prob, warm=False):
        super().__init__(prob, warm)
        n, b = prob.n, prob.b
        if n > DENSE_MAX_N:
            raise SystemExit(f"torch_dense: n={n} > {DENSE_MAX_N} not supported")
        import torch
        self.torch = torch
        self.rows_t = torch.from_numpy(self.rows)
        self.cols_t = torch.from_numpy(self.cols)
        self.b_t = torch.from_numpy(b)
        self.info = {"torch": torch.__version__, "threads": torch.get_num_threads()}

    def evaluate(self, theta):
        torch = self.torch
        n = self.n
        th = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
        vals = self.prob.values(th)
        A = torch.zeros(n, n, dtype=torch.float64).index_put(
            (self.rows_t, self.cols_t), vals, accumulate=True)
        x = torch.linalg.solve(A, self.b_t)
        loss = (x * x).sum()
        loss.backward()
        return float(loss.detach()), th.grad.numpy().copy()


class TsguPeer(Peer):
    """torchsparsegradutils (tsgu) on CPU with a direct solver. Two modes:

    c4t (default): torchsparsegradutils.cupy.sparse_solve_c4t(A, B) with solve=None.
        Without cupy installed it falls back to NumPy/SciPy. K == 1: forward uses
        scipy.sparse.linalg.spsolve(A, b) and backward spsolve(A^T, g) -> two full
        factorizations per evaluation. K > 1: scipy.sparse.linalg.factorized(A)
        (SuperLU, or UMFPACK if scikit-umfpack is installed) is cached in ctx and reused
        for the adjoint with trans='T'.
    generic: torchsparsegradutils.sparse_generic_solve(A, B, solve, transpose_solve)
        with user-supplied SuperLU callables (tsgu's own default solvers are iterative:
        minres / linear_cg / bicgstab). tsgu calls solve and transpose_solve separately,
        so the factorization is done twice per evaluation — no hook to share it.
    Gradient wrt the sparse values of A is assembled by tsgu; chain rule to theta by torch.
    """
    name = "tsgu"

    def __init__(self, prob, warm=False, permc="COLAMD", mode="c4t"):
        super().__init__(prob, warm)
        n, b = prob.n, prob.b
        import warnings
        import torch
        import torchsparsegradutils as tsgu
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torchsparsegradutils.cupy import sparse_solve_c4t
        self.c4t = sparse_solve_c4t
        self.mode = mode
        import scipy.sparse as sp
        import scipy.sparse.linalg as spla
        self.torch, self.tsgu, self.sp, self.spla = torch, tsgu, sp, spla
        self.permc = permc
        self.rows_t = torch.from_numpy(self.rows)
        self.cols_t = torch.from_numpy(self.cols)
        self.b_t = torch.from_numpy(b)
        try:
            from importlib.metadata import version
            ver = version("torchsparsegradutils")
        except Exception:  # pragma: no cover
            ver = "?"
        self.info = {"torchsparsegradutils": ver, "torch": torch.__version__, "tsgu_mode": mode,
                     "threads": torch.get_num_threads(),
                     "inner_solver": (f"scipy splu {permc}" if mode == "generic" else
                                      "scipy spsolve x2" if b.shape[1] == 1 else
                                      "scipy factorized (reused for adjoint)")}

        def _to_scipy(A):
            A = A.coalesce()
            idx = A.indices().numpy()
            return sp.csc_matrix((A.values().detach().numpy(), (idx[0], idx[1])), shape=A.shape)

        def solve(A, B):
            lu = spla.splu(_to_scipy(A), permc_spec=self.permc)
            return torch.from_numpy(lu.solve(B.detach().numpy()))

        def transpose_solve(A, B):
            # tsgu passes the *original* A here and expects A^{-T} B.
            lu = spla.splu(_to_scipy(A), permc_spec=self.permc)
            return torch.from_numpy(lu.solve(B.detach().numpy(), trans="T"))

        self._solve, self._tsolve = solve, transpose_solve

    def evaluate(self, theta):
        torch = self.torch
        n = self.n
        th = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
        vals = self.prob.values(th)
        A = torch.sparse_coo_tensor(torch.stack([self.rows_t, self.cols_t]), vals, (n, n)).coalesce()
        if self.mode == "c4t":
            x = self.c4t(A, self.b_t)
        else:
            x = self.tsgu.sparse_generic_solve(A, self.b_t, solve=self._solve,
                                               transpose_solve=self._tsolve)
        loss = (x * x).sum()
        loss.backward()
        return float(loss.detach()), th.grad.numpy().copy()


class SparsegradPeer(Peer):
    """sparsegrad's NumPy layer (python/): factorize once, forward solve, transpose solve on the
    same factor, dL/dA at the COO entries. cold: the pattern cache is cleared before every call
    (analysis + factorization); warm: the pattern seen before reuses its analysis."""
    name = "sparsegrad"

    def __init__(self, prob, warm=False):
        super().__init__(prob, warm)
        import scipy.sparse as sp
        import sparsegrad_rs
        self.sp, self.sg = sp, sparsegrad_rs
        self.info = {"sparsegrad_rs": sparsegrad_rs.__version__}

    def evaluate(self, theta):
        n, rows, cols, b = self.n, self.rows, self.cols, self.b
        if not self.warm:
            self.sg._core.clear_patterns()
        A = self.sp.coo_matrix((self.prob.values(theta), (rows, cols)), shape=(n, n))
        f = self.sg.factorize(A)
        x = f.solve(b)
        lam = f.solve_transpose(2.0 * x)
        gA = f.grad_values(lam, x)
        return float(np.sum(x * x)), self.prob.chain(gA)


class SparsegradTorchPeer(Peer):
    """sparsegrad_rs.torch.solve on a sparse COO tensor built from theta and coalesced (as the seed
    builds it); torch autograd does the chain rule to theta. cold / warm as for the sparsegrad
    peer."""
    name = "sparsegrad_torch"

    def __init__(self, prob, warm=False):
        super().__init__(prob, warm)
        import torch
        import sparsegrad_rs
        import sparsegrad_rs.torch as sgt
        self.torch, self.sg, self.sgt = torch, sparsegrad_rs, sgt
        self.idx = torch.from_numpy(np.vstack([self.rows, self.cols]))
        self.b_t = torch.from_numpy(self.b)
        self.info = {"sparsegrad_rs": sparsegrad_rs.__version__, "torch": torch.__version__}

    def evaluate(self, theta):
        torch, n = self.torch, self.n
        if not self.warm:
            self.sg._core.clear_patterns()
        th = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
        A = torch.sparse_coo_tensor(self.idx, self.prob.values(th), (n, n)).coalesce()
        x = self.sgt.solve(A, self.b_t)
        loss = (x * x).sum()
        loss.backward()
        return float(loss.detach()), th.grad.numpy().copy()


class SparsegradTorchCooPeer(SparsegradTorchPeer):
    """sparsegrad_rs.torch.solve_coo(indices, values(theta), b, n): no sparse tensor, no coalesce;
    the gradient goes to the values tensor directly."""
    name = "sparsegrad_torch_coo"

    def evaluate(self, theta):
        torch, n = self.torch, self.n
        if not self.warm:
            self.sg._core.clear_patterns()
        th = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
        x = self.sgt.solve_coo(self.idx, self.prob.values(th), self.b_t, n)
        loss = (x * x).sum()
        loss.backward()
        return float(loss.detach()), th.grad.numpy().copy()


class SeedPeer(Peer):
    """The seed approach (pytorch-sparse-solve's SparseSolver, ../shared/seeds): a
    torch.autograd.Function over cholespy — CHOLMOD factor in forward (analysis + numeric every new
    matrix), reused in backward, dL/dA = -diag(lam) S diag(x) as sparse products. 1 RHS only."""
    name = "seed"

    def __init__(self, prob, warm=False):
        super().__init__(prob, warm)
        import torch
        from cholespy import CholeskySolverD, MatrixType
        if self.b.shape[1] != 1:
            raise SystemExit("seed: one right-hand side only")
        self.torch = torch
        self.idx = torch.from_numpy(np.vstack([self.rows, self.cols]))
        self.b_t = torch.from_numpy(np.ascontiguousarray(self.b[:, 0]))

        class SparseSolver(torch.autograd.Function):
            @staticmethod
            def forward(ctx, A, b):
                ind = A.indices()
                chol = CholeskySolverD(A.size(0), ind[0, :], ind[1, :], A.values(), MatrixType.COO)
                x = torch.zeros_like(b, dtype=torch.double)
                chol.solve(b, x)
                ctx.chol = chol
                ctx.save_for_backward(b, ind, x)
                return x

            @staticmethod
            @torch.autograd.function.once_differentiable
            def backward(ctx, grad_output):
                b, ind, res = ctx.saved_tensors
                n = b.size(0)
                S = torch.sparse_coo_tensor(ind, torch.ones(ind.size(1)), (n, n), dtype=torch.double)
                p1left = torch.zeros_like(b, dtype=torch.double)
                ctx.chol.solve(grad_output.clone().detach().double(), p1left)
                d = torch.stack([torch.arange(n), torch.arange(n)], 0)
                p1left = torch.sparse_coo_tensor(d, p1left)
                p1right = torch.sparse_coo_tensor(d, res, dtype=torch.double)
                return -p1left @ S @ p1right, None

        self.solver = SparseSolver
        self.info = {"torch": torch.__version__, "approach": "seed SparseSolver over cholespy"}

    def evaluate(self, theta):
        torch, n = self.torch, self.n
        th = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
        A = torch.sparse_coo_tensor(self.idx, self.prob.values(th), (n, n)).coalesce()
        x = self.solver.apply(A, self.b_t)
        loss = (x * x).sum()
        loss.backward()
        return float(loss.detach()), th.grad.numpy().copy()


def make_peer(name, prob, permc, tsgu_mode="c4t", warm=False):
    if name == "sparsegrad":
        return SparsegradPeer(prob, warm)
    if name == "sparsegrad_torch":
        return SparsegradTorchPeer(prob, warm)
    if name == "sparsegrad_torch_coo":
        return SparsegradTorchCooPeer(prob, warm)
    if name == "seed":
        return SeedPeer(prob)
    if warm and name not in ("cholmod", "pardiso", "sparsegrad", "sparsegrad_torch",
                             "sparsegrad_torch_coo"):
        raise SystemExit(f"--regime warm: only cholmod and pardiso keep an analysis, not {name}")
    if name == "scipy":
        return ScipyPeer(prob, permc=permc)
    if name == "cholespy":
        return CholespyPeer(prob)
    if name == "cholmod":
        return CholmodPeer(prob, warm)
    if name == "pardiso":
        return PardisoPeer(prob, warm)
    if name == "torch_dense":
        return TorchDensePeer(prob)
    if name == "tsgu":
        return TsguPeer(prob, permc=permc, mode=tsgu_mode)
    raise ValueError(name)


# --------------------------------------------------------------------------- reference
def dense_loss_np(prob, theta):
    A = np.zeros((prob.n, prob.n))
    np.add.at(A, (prob.rows, prob.cols), prob.values(theta))
    x = np.linalg.solve(A, prob.b)
    return float(np.sum(x * x))


def run_check(peer, prob, theta, n_fd=3):
    loss, g = peer.evaluate(theta)
    out = {"loss": loss}
    # dense torch autograd reference
    try:
        ref = TorchDensePeer(prob)
        loss_ref, g_ref = ref.evaluate(theta)
        out["dense_loss_rel_err"] = abs(loss - loss_ref) / abs(loss_ref)
        out["dense_grad_max_rel_err"] = float(np.max(np.abs(g - g_ref)) / np.max(np.abs(g_ref)))
        out["dense_grad_max_elementwise_rel_err"] = float(
            np.max(np.abs(g - g_ref) / np.maximum(np.abs(g_ref), 1e-300)))
    except ImportError:
        out["dense"] = "torch not available"
    # central finite differences on random edges (dense numpy solves)
    rng = np.random.default_rng(123)
    es = rng.choice(prob.m, size=min(n_fd, prob.m), replace=False)
    errs = []
    for e in es:
        h = 1e-5 * max(1.0, abs(theta[e]))
        tp, tm = theta.copy(), theta.copy()
        tp[e] += h
        tm[e] -= h
        fd = (dense_loss_np(prob, tp) - dense_loss_np(prob, tm)) / (2 * h)
        errs.append(abs(g[e] - fd) / max(abs(fd), 1e-300))
    out["fd_edges"] = [int(e) for e in es]
    out["fd_max_rel_err"] = float(max(errs))
    return out


# --------------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peer", required=True, choices=["scipy", "cholespy", "cholmod", "pardiso", "torch_dense", "tsgu",
                             "sparsegrad", "sparsegrad_torch", "sparsegrad_torch_coo", "seed"])
    ap.add_argument("--case", required=True, choices=["chain", "grid", "grid3", "elastic3"])
    ap.add_argument("--regime", default="cold", choices=["cold", "warm"],
                    help="cold: analysis + factorization every call; warm (cholmod, pardiso): "
                         "the first call's analysis kept, numeric factorization only")
    ap.add_argument("--n", required=True, type=int,
                    help="chain: number of nodes; grid: total nodes N (k=round(sqrt(N))); grid3: N (k=round(cbrt(N)))")
    ap.add_argument("--rhs", type=int, default=1, help="number of right-hand sides K")
    ap.add_argument("--repeat", type=int, default=5, help="timed evaluations after 1 warm-up")
    ap.add_argument("--permc", default="COLAMD",
                    choices=["COLAMD", "MMD_AT_PLUS_A", "MMD_ATA", "NATURAL"],
                    help="SuperLU column ordering (scipy, tsgu)")
    ap.add_argument("--tsgu-mode", default="c4t", choices=["c4t", "generic"],
                    help="tsgu: sparse_solve_c4t (scipy fallback) or sparse_generic_solve+splu")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch.set_num_threads (0 = leave default)")
    ap.add_argument("--json", action="store_true", help="print one JSON line at the end")
    ap.add_argument("--check", action="store_true",
                    help="compare gradient with dense torch + central FD (small sizes)")
    args = ap.parse_args(argv)
    import warnings
    warnings.filterwarnings("ignore")  # tsgu/scipy efficiency + torch sparse-invariant chatter

    if args.threads:
        try:
            import torch
            torch.set_num_threads(args.threads)
        except ImportError:
            pass

    prob = make_problem(args.case, args.n, args.rhs)
    n, theta0 = prob.n, prob.theta0
    peer = make_peer(args.peer, prob, args.permc, args.tsgu_mode, warm=args.regime == "warm")

    if args.check:
        if n > DENSE_MAX_N:
            raise SystemExit(f"--check needs n <= {DENSE_MAX_N}")
        res = run_check(peer, prob, theta0)
        res.update(peer=args.peer, case=args.case, n=n, rhs=args.rhs)
        print(json.dumps(res) if args.json else
              "\n".join(f"{k}: {val}" for k, val in res.items()))
        return 0

    # warm-up on theta0; its loss/grad are the reported values (peer-independent)
    t0 = time.perf_counter()
    loss, g = peer.evaluate(theta0)
    warm_ms = (time.perf_counter() - t0) * 1e3
    times = []
    for i in range(1, args.repeat + 1):
        th = theta0 + 1e-3 * i
        t0 = time.perf_counter()
        peer.evaluate(th)
        times.append((time.perf_counter() - t0) * 1e3)
    ms = float(np.median(times)) if times else warm_ms
    rec = {"peer": args.peer, "case": args.case, "n": n, "rhs": args.rhs, "regime": args.regime,
           "ms": round(ms, 4), "loss": loss, "grad_norm": float(np.linalg.norm(g)),
           "m": int(prob.m), "repeat": args.repeat, "warmup_ms": round(warm_ms, 4),
           "times_ms": [round(t, 4) for t in times], **peer.info}
    if not args.json:
        print(f"{args.peer} {args.case} n={n} m={prob.m} rhs={args.rhs} {args.regime}: "
              f"median {ms:.3f} ms over {args.repeat} (warm-up {warm_ms:.1f} ms); "
              f"loss={loss:.12e} |grad|={rec['grad_norm']:.12e}")
    else:
        print(json.dumps(rec))
    return 0


if __name__ == "__main__":
    sys.exit(main())
