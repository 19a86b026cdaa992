"""pymoto 2.0.1 (MMA inside) on the problems of `cargo run --release --example topology`, for
docs/BENCHMARKS.md. Same mesh, boundary conditions, load, density filter, SIMP and scaling:
objective 100 · c / c(x0), volume constraint 10 (Σ x̄ / (V · nel) − 1) ≤ 0, MMA move 0.1, x0 = V,
a fixed number of iterations (no early stop).

  mbb:  half MBB beam, nx × ny Q4 plane-stress elements (E = 1, ν = 0.3), x-displacement fixed on
        the left edge, y at the bottom right corner, unit downward load at the top left node,
        SIMP E_min = 1e-9, p = 3.
  heat: n × n plate, heat 0.01 at every free node, temperature 0 on the middle tenth of the left
        edge, conductivity SIMP k_min = 1e-3, p = 3.

Usage ($PEERS_VENV from `bash ../shared/peers/setup.sh --with-topopt`):
  $PEERS_VENV/bin/python benches/compare/topopt_peers.py --problem mbb --nx 150 --ny 50 --volume 0.5 --radius 2 --iters 100
Prints the compliance every 10 iterations, then one JSON line: final compliance, volume, time per
iteration (the whole loop: analysis, sensitivities, MMA), and the solver pymoto chose.
"""
import argparse
import json
import time

import numpy as np
import pymoto as pym


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--problem", choices=["mbb", "heat"], default="mbb")
    p.add_argument("--nx", type=int, default=150)
    p.add_argument("--ny", type=int, default=50)
    p.add_argument("--volume", type=float, default=0.5)
    p.add_argument("--radius", type=float, default=2.0)
    p.add_argument("--iters", type=int, default=100)
    a = p.parse_args()
    nx, ny = a.nx, (a.nx if a.problem == "heat" else a.ny)
    domain = pym.VoxelDomain(nx, ny)
    node = lambda x, y: x + (nx + 1) * y
    if a.problem == "mbb":
        fixed = [2 * node(0, y) for y in range(ny + 1)] + [2 * node(nx, 0) + 1]
        f = np.zeros(2 * domain.nnodes)
        f[2 * node(0, ny) + 1] = -1.0
        xmin = 1e-9
    else:
        mid, half = ny // 2, max(ny // 20, 1)
        fixed = [node(0, y) for y in range(max(mid - half, 0), min(mid + half, ny) + 1)]
        f = np.full(domain.nnodes, 0.01)
        f[fixed] = 0.0  # pymoto keeps the fixed unknowns (diagonal 1): no load there
        xmin = 1e-3
    fixed = np.array(fixed)
    sx = pym.Signal("x", state=np.full(domain.nel, a.volume))
    with pym.Network() as fn:
        xf = pym.DensityFilter(domain, radius=a.radius)(sx)
        e = pym.MathExpression(f"{xmin} + {1 - xmin}*inp0^3")(xf)
        if a.problem == "mbb":
            K = pym.AssembleStiffness(domain, bc=fixed, plane="stress")(e)
        else:
            K = pym.AssemblePoisson(domain, bc=fixed)(e)
        u = pym.LinSolve(hermitian=True)(K, f)
        c = pym.EinSum("i,i->")(u, f)
        g0 = pym.Scaling(scaling=100.0)(c)
        vol = pym.EinSum("i->")(xf)
        g1 = pym.Scaling(scaling=10.0, maxval=a.volume * domain.nel)(vol)
    fn.response()
    mma = pym.MMA([sx], [g0, g1], fn, move=0.1, verbosity=0)
    start = time.perf_counter()
    for k in range(a.iters):
        xnew, g, dg = mma.step()
        mma.x = xnew
        mma.iter += 1
        fn.response()  # the next step's analysis, done here to print its compliance
        mma.response_is_uptodate = True
        if (k + 1) % 10 == 0:
            print(f"iter {k + 1:4d}  compliance {c.state:.6e}  volume {vol.state / domain.nel:.4f}", flush=True)
    elapsed = time.perf_counter() - start
    lin = next(m for m in fn.mods if isinstance(m, pym.LinSolve)).solver
    solver = type(getattr(lin, "solver", lin)).__name__
    print(json.dumps({
        "problem": a.problem, "nx": nx, "ny": ny, "iterations": a.iters,
        "compliance": float(c.state), "volume": float(vol.state / domain.nel),
        "ms_per_iteration": 1000 * elapsed / a.iters, "solver": solver,
    }))


if __name__ == "__main__":
    main()
