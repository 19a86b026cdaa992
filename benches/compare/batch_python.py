"""Batched values over one pattern against a loop of single solves (sparsegrad_rs.torch.solve_coo):
value + gradient of sum ||X_i||^2 on a 128^2 grid, batch 8; docs/BENCHMARKS.md, ninth session."""
import time, numpy as np, scipy.sparse as sp, torch
import sparsegrad_rs.torch as sgt
k = 128; n = k * k
I = sp.identity(k); T = sp.diags([-np.ones(k - 1), 2 * np.ones(k), -np.ones(k - 1)], [-1, 0, 1])
A = (sp.kron(I, T) + sp.kron(T, I) + 0.01 * sp.identity(n)).tocoo()
idx = torch.tensor(np.vstack([A.row, A.col]))
base = torch.tensor(A.data)
batch = 8
vals = torch.stack([base * (1 + 0.1 * i) for i in range(batch)]).requires_grad_(True)
B = torch.randn(batch, n, dtype=torch.float64)
def batched():
    X = sgt.solve_coo(idx, vals, B, n); (X ** 2).sum().backward()
def loop():
    for i in range(batch):
        x = sgt.solve_coo(idx, vals[i], B[i], n); (x ** 2).sum().backward()
for f in (batched, loop): f()
res = {}
for rep in range(3):
    for name, f in (("batched", batched), ("loop", loop)):
        t = time.perf_counter(); f(); res.setdefault(name, []).append(1e3 * (time.perf_counter() - t))
print({k: [round(v, 1) for v in vs] for k, vs in res.items()}, "torch threads", torch.get_num_threads())
