import numpy as np
import pytest
import scipy.sparse as sp
import torch

import sparsegrad_rs
import sparsegrad_rs.torch as sgt
from conftest import general_matrix, spd_matrix

torch.manual_seed(0)


def coo_parts(A):
    A = A.tocoo()
    idx = torch.tensor(np.vstack([A.row, A.col]), dtype=torch.int64)
    return idx, torch.tensor(A.data, dtype=torch.float64)


@pytest.mark.parametrize("make", [spd_matrix, general_matrix])
def test_gradcheck_coo(rng, make):
    A = make(8, rng)
    idx, vals = coo_parts(A)
    vals.requires_grad_(True)
    b = torch.randn(8, 2, dtype=torch.float64, requires_grad=True)

    def f(v, bb):
        return sgt.solve(torch.sparse_coo_tensor(idx, v, (8, 8)), bb)

    assert torch.autograd.gradcheck(f, (vals, b), eps=1e-6, atol=1e-8)


def test_gradcheck_csr_and_one_rhs(rng):
    A = general_matrix(7, rng).tocsr()
    crow = torch.tensor(A.indptr, dtype=torch.int64)
    col = torch.tensor(A.indices, dtype=torch.int64)
    vals = torch.tensor(A.data, dtype=torch.float64, requires_grad=True)
    b = torch.randn(7, dtype=torch.float64, requires_grad=True)

    def f(v, bb):
        return sgt.solve(torch.sparse_csr_tensor(crow, col, v, (7, 7)), bb)

    assert torch.autograd.gradcheck(f, (vals, b), eps=1e-6, atol=1e-8)


def test_sparse_gradient_matches_dense_for_non_symmetric(rng):
    A = general_matrix(12, rng)
    idx, vals = coo_parts(A)
    A_t = torch.sparse_coo_tensor(idx, vals, (12, 12)).coalesce().requires_grad_(True)
    b = torch.randn(12, 3, dtype=torch.float64)
    x = sgt.solve(A_t, b)
    (x ** 2).sum().backward()
    Ad = torch.tensor(A.toarray(), requires_grad=True)
    (torch.linalg.solve(Ad, b) ** 2).sum().backward()
    g = A_t.grad.coalesce()
    dense_at = Ad.grad[g.indices()[0], g.indices()[1]]
    assert torch.max(torch.abs(g.values() - dense_at)) <= 1e-10 * torch.max(torch.abs(dense_at))


def test_uncoalesced_coo_with_duplicates_matches_dense():
    # A = I + w0·L + diag(0, w1): (1, 1) appears twice in the uncoalesced COO tensor.
    w = torch.tensor([2.0, 3.0], dtype=torch.float64, requires_grad=True)
    vals = torch.stack([1 + w[0], 1 + w[0], -w[0], -w[0], w[1]])
    A = torch.sparse_coo_tensor([[0, 1, 0, 1, 1], [0, 1, 1, 0, 1]], vals, (2, 2))
    assert not A.is_coalesced()
    b = torch.tensor([1.0, 2.0], dtype=torch.float64)
    (sgt.solve(A, b) ** 2).sum().backward()
    w2 = w.detach().clone().requires_grad_(True)
    D = torch.stack([torch.stack([1 + w2[0], -w2[0]]), torch.stack([-w2[0], 1 + w2[0] + w2[1]])])
    (torch.linalg.solve(D, b) ** 2).sum().backward()
    assert torch.max(torch.abs(w.grad - w2.grad)) <= 1e-14


def test_solve_coo_gradcheck_and_duplicates(rng):
    A = general_matrix(8, rng).tocoo()
    # Split every value in two duplicate entries: the sum is A, each copy gets dL/dA_ij.
    idx = torch.tensor(np.hstack([np.vstack([A.row, A.col])] * 2), dtype=torch.int64)
    vals = torch.tensor(np.concatenate([0.25 * A.data, 0.75 * A.data]), requires_grad=True)
    b = torch.randn(8, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, bb: sgt.solve_coo(idx, v, bb, 8), (vals, b),
                                    eps=1e-6, atol=1e-8)
    x = sgt.solve_coo(idx, vals, b, 8)
    (x ** 2).sum().backward()
    nnz = A.nnz
    assert torch.equal(vals.grad[:nnz], vals.grad[nnz:])
    with pytest.raises(ValueError):
        sgt.solve_coo(idx, vals[:3], b, 8)


def test_seed_minimal_example():
    # The seed README's minimal example with sparsegrad_rs.torch in place of SparseSolver.
    n = 10
    b = torch.ones(n, dtype=torch.double)
    torch.manual_seed(0)
    E = torch.unique(torch.randint(0, n, (n * 6, 2), dtype=torch.int64), dim=0)
    w = torch.ones(E.shape[0], dtype=torch.double, requires_grad=True)
    diag = torch.arange(n)
    indices = torch.stack([torch.cat([diag, E[:, 0], E[:, 1], E[:, 0], E[:, 1]]),
                           torch.cat([diag, E[:, 1], E[:, 0], E[:, 0], E[:, 1]])])
    values = torch.cat([torch.ones(n, dtype=torch.double), -w, -w, w, w])
    A = torch.zeros(n, n, dtype=torch.double)
    A.index_put_((indices[0], indices[1]), values, accumulate=True)
    x = torch.linalg.solve(A, b)
    L = torch.sum(x ** 2) / 2
    L.backward()
    dLdw = w.grad.clone().detach()

    A_sparse = torch.sparse_coo_tensor(indices, values, size=(n, n), dtype=torch.double).coalesce()
    x = sgt.solve(A_sparse, b)
    L = torch.sum(x ** 2) / 2
    w.grad = None
    L.backward()
    dLdw_sparse = w.grad.clone().detach()
    assert torch.linalg.norm(dLdw - dLdw_sparse).item() <= 1e-10


def test_float32_is_computed_in_float64_and_cast_back(rng):
    A = spd_matrix(10, rng)
    idx, vals = coo_parts(A)
    v32 = vals.to(torch.float32).requires_grad_(True)
    b32 = torch.randn(10, dtype=torch.float32)
    x = sgt.solve(torch.sparse_coo_tensor(idx, v32, (10, 10)), b32)
    assert x.dtype == torch.float32
    ref = np.linalg.solve(A.toarray().astype(np.float32).astype(np.float64), b32.double().numpy())
    assert np.max(np.abs(x.detach().double().numpy() - ref)) <= 1e-6 * np.abs(ref).max()
    x.sum().backward()
    assert v32.grad.dtype == torch.float32


def test_errors_raise(rng):
    A = torch.tensor([[1.0, 2.0], [2.0, 4.0]], dtype=torch.float64).to_sparse()
    import sparsegrad_rs
    with pytest.raises(sparsegrad_rs.SolveError):
        sgt.solve(A, torch.ones(2, dtype=torch.float64))
    with pytest.raises(TypeError):
        sgt.solve(torch.eye(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64))
    with pytest.raises(ValueError):
        sgt.solve(torch.eye(3, dtype=torch.float64).to_sparse(), torch.ones(2, dtype=torch.float64))


@pytest.mark.parametrize("make", [spd_matrix, general_matrix])
def test_kept_factorization_solves_and_differentiates_without_refactoring(rng, make):
    """One factorize, two differentiable solves (A⁻¹B₁ and A⁻ᵀB₂) in one loss: gradients of A's
    values and of both B's equal dense torch's; gradcheck on the object's solves."""
    A = make(9, rng).tocsr()
    A.sort_indices()
    crow = torch.tensor(A.indptr, dtype=torch.int64)
    col = torch.tensor(A.indices, dtype=torch.int64)
    vals = torch.tensor(A.data, dtype=torch.float64, requires_grad=True)
    A_t = torch.sparse_csr_tensor(crow, col, vals, (9, 9))
    b1 = torch.randn(9, 2, dtype=torch.float64, requires_grad=True)
    b2 = torch.randn(9, dtype=torch.float64, requires_grad=True)
    F = sgt.factorize(A_t)
    assert F.info["method"] == ("cholesky" if make is spd_matrix else "lu")
    assert repr(F).startswith("sparsegrad_rs.torch.Factorization(n=9, method=")
    loss = (F.solve(b1) ** 2).sum() + (F.solve_transpose(b2) ** 3).sum()
    loss.backward()
    Ad = torch.tensor(A.toarray(), requires_grad=True)
    d1, d2 = b1.detach().clone().requires_grad_(True), b2.detach().clone().requires_grad_(True)
    dense = (torch.linalg.solve(Ad, d1) ** 2).sum() + (torch.linalg.solve(Ad.T, d2) ** 3).sum()
    dense.backward()
    assert abs(loss.item() - dense.item()) <= 1e-12 * abs(dense.item())
    rows = torch.repeat_interleave(torch.arange(9), crow[1:] - crow[:-1])
    expected = Ad.grad[rows, col]
    assert torch.max(torch.abs(vals.grad - expected)) <= 1e-10 * torch.max(torch.abs(expected))
    for got, want in [(b1.grad, d1.grad), (b2.grad, d2.grad)]:
        assert torch.max(torch.abs(got - want)) <= 1e-10 * torch.max(torch.abs(want))

    def f(v, bb):
        G = sgt.factorize(torch.sparse_csr_tensor(crow, col, v, (9, 9)))
        return G.solve(bb), G.solve_transpose(bb)

    assert torch.autograd.gradcheck(f, (vals.detach().requires_grad_(True), b1), eps=1e-6,
                                    atol=1e-8)
    with pytest.raises(ValueError, match=r"B must be \(9,\) or \(9, k\)"):
        F.solve(torch.ones(8))


def test_unsorted_csr_is_refused_not_misattributed(rng):
    """scipy products give CSR with unsorted columns; torch's CSR autograd would hand their
    gradients to the wrong values, so such a tensor is a ValueError naming the row."""
    A = spd_matrix(9, rng).tocsr()
    assert not A.has_sorted_indices
    vals = torch.tensor(A.data, dtype=torch.float64, requires_grad=True)
    T = torch.sparse_csr_tensor(torch.tensor(A.indptr), torch.tensor(A.indices), vals, (9, 9))
    b = torch.ones(9, dtype=torch.float64)
    for call in (lambda: sgt.solve(T, b), lambda: sgt.factorize(T)):
        with pytest.raises(ValueError, match=r"sorted and distinct within each row.*row \d+"):
            call()


@pytest.mark.parametrize("make", [spd_matrix, general_matrix])
def test_batched_values_match_a_loop_and_gradcheck(rng, make):
    """values (batch, nnz) over one pattern: each element's solution and gradients equal a loop of
    single solves (≤ 1e-12), the pattern is analysed once, and gradcheck passes."""
    from sparsegrad_rs import _core

    n, batch = 10, 4
    A = make(n, rng).tocoo()
    idx = torch.tensor(np.vstack([A.row, A.col]), dtype=torch.int64)
    base = torch.tensor(A.data, dtype=torch.float64)
    # Scaling keeps symmetry (and definiteness) and makes every element a different matrix.
    scale = torch.tensor([1.0, 1.5, 0.7, 2.0], dtype=torch.float64)
    vals = (scale[:, None] * base[None, :]).requires_grad_(True)
    for B in [torch.randn(batch, n, 3, dtype=torch.float64), torch.randn(batch, n, dtype=torch.float64),
              torch.randn(n, dtype=torch.float64)]:
        B = B.requires_grad_(True)
        X = sgt.solve_coo(idx, vals, B, n)
        assert X.shape == ((batch, n, 3) if B.dim() == 3 else (batch, n))
        (X ** 2).sum().backward()
        gv, gb = vals.grad.clone(), B.grad.clone()
        vals.grad = None
        loop_gv = torch.zeros_like(gv)
        loop_gb = torch.zeros_like(gb)
        for i in range(batch):
            v = vals[i].detach().clone().requires_grad_(True)
            b = (B if B.dim() == 1 else B[i]).detach().clone().requires_grad_(True)
            x = sgt.solve_coo(idx, v, b, n)
            assert torch.max(torch.abs(x - X[i])) <= 1e-12 * torch.max(torch.abs(x))
            (x ** 2).sum().backward()
            loop_gv[i] = v.grad
            if B.dim() == 1:
                loop_gb += b.grad
            else:
                loop_gb[i] = b.grad
        assert torch.max(torch.abs(gv - loop_gv)) <= 1e-12 * torch.max(torch.abs(loop_gv))
        assert torch.max(torch.abs(gb - loop_gb)) <= 1e-12 * torch.max(torch.abs(loop_gb))
    rows, cols = idx[0].numpy().astype(np.int64), idx[1].numpy().astype(np.int64)
    symmetric = make is spd_matrix
    analyses, factorizations = _core.analyses_of(n, rows, cols, symmetric)
    assert analyses == 1 and factorizations >= 3 * batch

    def f(v, b):
        return sgt.solve_coo(idx, v, b, n)

    b = torch.randn(batch, n, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (vals.detach().requires_grad_(True), b), eps=1e-6,
                                    atol=1e-8)


def test_batched_rhs_one_matrix_and_batch_errors(rng):
    """values (nnz,) with B (batch, n, k): one factorization for all columns, equal to solving
    each B[i]; a failing batch element is named in the error."""
    n = 8
    A = spd_matrix(n, rng).tocoo()
    idx = torch.tensor(np.vstack([A.row, A.col]), dtype=torch.int64)
    vals = torch.tensor(A.data, dtype=torch.float64, requires_grad=True)
    B = torch.randn(3, n, 2, dtype=torch.float64, requires_grad=True)
    X = sgt.solve_coo(idx, vals, B, n)
    assert X.shape == (3, n, 2)
    for i in range(3):
        x = sgt.solve_coo(idx, vals, B[i], n)
        assert torch.max(torch.abs(x - X[i])) <= 1e-12 * torch.max(torch.abs(x))
    assert torch.autograd.gradcheck(lambda v, b: sgt.solve_coo(idx, v, b, n), (vals, B),
                                     eps=1e-6, atol=1e-8)
    bad = torch.stack([vals.detach(), -vals.detach()])   # −A is not positive definite
    with pytest.raises(sparsegrad_rs.SolveError, match="batch element 1 of 2.*not positive definite"):
        sgt.solve_coo(idx, bad, torch.ones(n, dtype=torch.float64), n, method="cholesky")
    with pytest.raises(ValueError, match=r"B must be \(8,\), \(2, 8\) or \(2, 8, k\)"):
        sgt.solve_coo(idx, bad, torch.ones(3, n, dtype=torch.float64), n)


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile_fullgraph(rng, backend):
    """A loss with solve_coo compiles with fullgraph=True (the registered custom op and its fake
    implementation) and gives eager's value and gradients; the kept factorization is released by
    the backward pass."""
    n = 12
    A = general_matrix(n, rng).tocoo()
    idx = torch.tensor(np.vstack([A.row, A.col]))
    vals = torch.tensor(A.data, requires_grad=True)
    b = torch.randn(n, 2, dtype=torch.float64, requires_grad=True)

    def loss(v, bb):
        x = sgt.solve_coo(idx, v, bb, n)
        return (x ** 2).sum() + x[0, 0]

    ref = loss(vals, b)
    gv, gb = torch.autograd.grad(ref, (vals, b))
    torch._dynamo.reset()
    compiled = torch.compile(loss, fullgraph=True, backend=backend)
    out = compiled(vals, b)
    cv, cb = torch.autograd.grad(out, (vals, b))
    assert abs(out.item() - ref.item()) <= 1e-12 * abs(ref.item())
    assert torch.max(torch.abs(cv - gv)) <= 1e-12 * torch.max(torch.abs(gv))
    assert torch.max(torch.abs(cb - gb)) <= 1e-12 * torch.max(torch.abs(gb))
    assert len(sgt._kept) == 0
    # The op's own checks run when the compiled graph executes.
    with pytest.raises(ValueError, match=r"B must be \(12,\) or \(12, k\)"):
        torch._dynamo.reset()
        torch.compile(lambda v, bb: sgt.solve_coo(idx, v, bb, n).sum(), fullgraph=True,
                      backend="aot_eager")(vals, torch.ones(5, dtype=torch.float64))


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile_fullgraph_batches(rng, backend):
    """Batched solve_coo compiles with fullgraph=True too: values (batch, nnz) with B (n,),
    (batch, n) or (batch, n, k) — the batch factored in parallel by its own registered op — and
    values (nnz,) with B (batch, n, k); value and gradients equal eager's, nothing stays kept."""
    n, batch = 10, 3
    A = spd_matrix(n, rng).tocoo()
    idx = torch.tensor(np.vstack([A.row, A.col]))
    base = torch.tensor(A.data)
    vals = torch.stack([base * (1.0 + 0.2 * i) for i in range(batch)]).requires_grad_(True)
    one = base.clone().requires_grad_(True)
    cases = [
        (vals, torch.randn(n, dtype=torch.float64, requires_grad=True)),
        (vals, torch.randn(batch, n, dtype=torch.float64, requires_grad=True)),
        (vals, torch.randn(batch, n, 2, dtype=torch.float64, requires_grad=True)),
        (one, torch.randn(batch, n, 2, dtype=torch.float64, requires_grad=True)),
    ]

    def loss(v, bb):
        x = sgt.solve_coo(idx, v, bb, n)
        return (x ** 2).sum() + x.flatten()[0]

    for v, b in cases:
        ref = loss(v, b)
        gv, gb = torch.autograd.grad(ref, (v, b))
        torch._dynamo.reset()
        out = torch.compile(loss, fullgraph=True, backend=backend)(v, b)
        cv, cb = torch.autograd.grad(out, (v, b))
        assert abs(out.item() - ref.item()) <= 1e-12 * abs(ref.item())
        assert torch.max(torch.abs(cv - gv)) <= 1e-12 * torch.max(torch.abs(gv))
        assert torch.max(torch.abs(cb - gb)) <= 1e-12 * torch.max(torch.abs(gb))
        assert len(sgt._kept) == 0
    with pytest.raises(ValueError, match=r"B must be \(10,\), \(3, 10\) or \(3, 10, k\)"):
        torch._dynamo.reset()
        torch.compile(lambda v, bb: sgt.solve_coo(idx, v, bb, n).sum(), fullgraph=True,
                      backend="aot_eager")(vals, torch.ones(4, n, dtype=torch.float64))


# --- forward mode and second order ---------------------------------------------------------------


def _second_order_cases(rng):
    """(name, indices, values, symmetric, dense(values)) for an SPD matrix (both triangles), a
    general one, and an SPD one given by its lower triangle with symmetric=True (mirrored)."""
    spd, gen = spd_matrix(7, rng), general_matrix(7, rng)
    out = []
    for name, A, symmetric in (("spd", spd, None), ("general", gen, None),
                               ("lower triangle", sp.tril(spd), True)):
        idx, vals = coo_parts(sp.csr_matrix(A))
        mirror = symmetric is True

        def dense(v, idx=idx, mirror=mirror):
            M = torch.zeros(7, 7, dtype=v.dtype).index_put((idx[0], idx[1]), v, accumulate=True)
            return M + M.T - torch.diag(torch.diag(M)) if mirror else M
        out.append((name, idx, vals, symmetric, dense))
    return out


def test_gradgradcheck_solve_coo_and_sparse_tensors(rng):
    """gradgradcheck (second derivatives of the backward pass against differences) in the values
    and B of solve_coo, one and three right-hand sides; second order in a leaf COO tensor A through
    solve and the kept Factorization's transposed solve against dense torch; a leaf CSR A (whose
    values backward in PyTorch is first order) refused in create_graph mode."""
    for name, idx, vals, symmetric, _ in _second_order_cases(rng):
        v = vals.clone().requires_grad_(True)
        for b in (torch.randn(7, dtype=torch.float64), torch.randn(7, 3, dtype=torch.float64)):
            b = b.requires_grad_(True)
            f = lambda v, b: sgt.solve_coo(idx, v, b, 7, symmetric=symmetric)
            assert torch.autograd.gradgradcheck(f, (v, b), eps=1e-6, atol=1e-6), name
        # A sparse tensor that is itself the leaf: second order in A through solve and the kept
        # Factorization's transposed solve, against dense torch's H·u at the stored entries.
        rhs = b.detach()
        for layout in ("coo", "csr"):
            A = torch.sparse_coo_tensor(idx, vals, (7, 7)).coalesce()
            rows, cols = A.indices()
            if layout == "csr":
                A = A.to_sparse_csr()
            A = A.detach().requires_grad_(True)
            stored = A.detach().values()

            def dense_of(v, transpose):
                M = torch.zeros(7, 7, dtype=v.dtype).index_put((rows, cols), v)
                if symmetric:
                    M = M + M.T - torch.diag(torch.diag(M))
                return M.T if transpose else M

            u = torch.randn(stored.shape, dtype=torch.float64)
            for transpose in (False, True):
                def solver(A, transpose=transpose):
                    if transpose:
                        return sgt.factorize(A, symmetric=symmetric).solve_transpose(rhs)
                    return sgt.solve(A, rhs, symmetric=symmetric)
                if layout == "csr":   # PyTorch's CSR values backward is first order only
                    with pytest.raises(RuntimeError, match="first order only"):
                        torch.autograd.grad(torch.sin(solver(A)).sum(), A, create_graph=True)
                    continue
                (g,) = torch.autograd.grad(torch.sin(solver(A)).sum(), A, create_graph=True)
                (h,) = torch.autograd.grad((g.values() * u).sum(), A)
                ref = lambda v, transpose=transpose: torch.sin(
                    torch.linalg.solve(dense_of(v, transpose), rhs)).sum()
                want = torch.autograd.functional.hvp(ref, stored, u)[1]
                err = torch.max(torch.abs(h.values() - want)) / torch.max(torch.abs(want))
                assert err <= 1e-10, f"{name} {layout} transpose={transpose}: {err:.2e}"


def test_hvp_hessian_and_forward_mode_match_dense_torch(rng):
    """torch.autograd.functional.hvp and hessian, torch.func.jvp / grad / jacrev / jacfwd and
    vmap over right-hand sides and over values, forward-mode dual numbers: against the same
    functions of dense torch.linalg.solve, ≤ 1e-10 relative."""
    import torch.autograd.forward_ad as fwAD

    for name, idx, vals, symmetric, dense in _second_order_cases(rng):
        B = torch.randn(7, 2, dtype=torch.float64)

        def ours(v, b=B):
            x = sgt.solve_coo(idx, v, b, 7, symmetric=symmetric)
            return torch.sin(x).sum() + 0.5 * (x ** 2).sum()

        def ref(v, b=B):
            x = torch.linalg.solve(dense(v), b)
            return torch.sin(x).sum() + 0.5 * (x ** 2).sum()

        def close(got, want, what):
            err = (torch.max(torch.abs(got - want)) / torch.max(torch.abs(want))).item()
            assert err <= 1e-10, f"{name}: {what} off by {err:.2e}"

        u = torch.randn(vals.shape, dtype=torch.float64)
        xs = lambda v: sgt.solve_coo(idx, v, B, 7, symmetric=symmetric)
        xr = lambda v: torch.linalg.solve(dense(v), B)
        close(torch.autograd.functional.hvp(ours, vals, u)[1],
              torch.autograd.functional.hvp(ref, vals, u)[1], "hvp")
        close(torch.autograd.functional.hessian(ours, vals),
              torch.autograd.functional.hessian(ref, vals), "hessian")
        close(torch.func.jvp(xs, (vals,), (u,))[1], torch.func.jvp(xr, (vals,), (u,))[1], "jvp")
        close(torch.func.grad(ours)(vals), torch.func.grad(ref)(vals), "func.grad")
        close(torch.func.jacrev(xs)(vals), torch.func.jacrev(xr)(vals), "jacrev")
        close(torch.func.jacfwd(xs)(vals), torch.func.jacrev(xr)(vals), "jacfwd")
        # Reverse over reverse (torch.func's jvp over grad stops at an internal assert of
        # PyTorch's functorch for custom Functions; the double backward above covers H·v).
        close(torch.func.jacrev(torch.func.jacrev(ours))(vals),
              torch.autograd.functional.hessian(ref, vals), "jacrev(jacrev)")
        bs = torch.randn(4, 7, 2, dtype=torch.float64)
        close(torch.func.vmap(torch.func.grad(ours), in_dims=(None, 0))(vals, bs),
              torch.func.vmap(torch.func.grad(ref), in_dims=(None, 0))(vals, bs), "vmap over B")
        vb = torch.stack([vals * (1 + 0.1 * k) for k in range(3)])
        close(torch.func.vmap(torch.func.grad(ours))(vb), torch.func.vmap(torch.func.grad(ref))(vb),
              "vmap over values")
        with fwAD.dual_level():
            x = fwAD.unpack_dual(xs(fwAD.make_dual(vals, u))).tangent
        close(x, torch.func.jvp(xr, (vals,), (u,))[1], "forward_ad")


def test_derivatives_reuse_one_factorization(rng):
    """A gradient, a Hessian-vector product (double backward), a forward-mode JVP and a full
    Hessian each run one numeric factorization (counted on the cached pattern)."""
    from sparsegrad_rs import _core

    A = general_matrix(12, rng).tocsr()
    A.sort_indices()
    idx, vals = coo_parts(A)
    rows, cols = idx[0].numpy().copy(), idx[1].numpy().copy()
    b = torch.randn(12, dtype=torch.float64)
    loss = lambda v: (sgt.solve_coo(idx, v, b, 12) ** 2).sum()
    loss(vals)  # the pattern is cached from here on

    def factorizations():
        return _core.analyses_of(12, rows, cols, False)[1]

    u = torch.randn(vals.shape, dtype=torch.float64)
    for name, run in (("grad", lambda: torch.func.grad(loss)(vals)),
                      ("hvp", lambda: torch.autograd.functional.hvp(loss, vals, u)),
                      ("jvp", lambda: torch.func.jvp(loss, (vals,), (u,))),
                      ("hessian", lambda: torch.autograd.functional.hessian(loss, vals))):
        before = factorizations()
        run()
        assert factorizations() - before == 1, name
