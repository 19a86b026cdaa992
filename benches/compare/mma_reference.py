"""Reference iterates of Svanberg's MMA from mmapy 0.3.1 (`bash ../shared/peers/setup.sh --with-topopt`)
on two small problems, for tests/engine/mma.rs:

* Svanberg's toy problem ("MMA and GCMMA", 2007, section 7): minimize x1² + x2² + x3² subject to
  (x1−5)² + (x2−2)² + (x3−1)² ≤ 9 and (x1−3)² + (x2−4)² + (x3−3)² ≤ 9, 0 ≤ x ≤ 5, x0 = (4, 3, 2);
* a weighted sum of reciprocals under a linear budget: minimize Σ w_j / x_j subject to
  Σ x_j ≤ V, 0.1 ≤ x ≤ 10 (a KKT point in closed form: x_j = V √w_j / Σ √w_k), x0 = 1.

Prints each problem's iterates (every x for the toy, the optimum for both) with 17 digits.
Usage: $PEERS_VENV/bin/python benches/compare/mma_reference.py
"""
import json

import numpy as np
from mmapy import kktcheck, mmasub


def run(f, x0, xmin, xmax, iters, m):
    n = len(x0)
    x = np.array(x0, dtype=float).reshape(-1, 1)
    xmin = np.full((n, 1), xmin, dtype=float)
    xmax = np.full((n, 1), xmax, dtype=float)
    xold1, xold2 = x.copy(), x.copy()
    low, upp = xmin.copy(), xmax.copy()
    a0, a, c, d = 1.0, np.zeros((m, 1)), 1000 * np.ones((m, 1)), np.ones((m, 1))
    f0, df0, fv, dfv = f(x)
    history = [x.flatten().tolist()]
    kkt = None
    for k in range(1, iters + 1):
        xmma, y, z, lam, xsi, eta, mu, zet, s, low, upp = mmasub(
            m, n, k, x, xmin, xmax, xold1, xold2, f0, df0, fv, dfv, low, upp, a0, a, c, d, move=0.5
        )
        xold2, xold1, x = xold1.copy(), x.copy(), xmma.copy()
        f0, df0, fv, dfv = f(x)
        _, kkt, _ = kktcheck(m, n, x, y, z, lam, xsi, eta, mu, zet, s, xmin, xmax, df0, fv, dfv, a0, a, c, d)
        history.append(x.flatten().tolist())
    return {"iterates": history, "x": x.flatten().tolist(), "f": float(f0), "g": fv.flatten().tolist(), "kkt": float(kkt)}


def toy(x):
    f0 = float((x**2).sum())
    df0 = 2 * x
    fv = np.array([[((x[0] - 5) ** 2 + (x[1] - 2) ** 2 + (x[2] - 1) ** 2 - 9).item()],
                   [((x[0] - 3) ** 2 + (x[1] - 4) ** 2 + (x[2] - 3) ** 2 - 9).item()]])
    dfv = np.array([[2 * (x[0] - 5).item(), 2 * (x[1] - 2).item(), 2 * (x[2] - 1).item()],
                    [2 * (x[0] - 3).item(), 2 * (x[1] - 4).item(), 2 * (x[2] - 3).item()]])
    return f0, df0, fv, dfv


W = np.array([1.0, 4.0, 9.0, 0.25, 2.0]).reshape(-1, 1)
V = 6.0


def reciprocal(x):
    f0 = float((W / x).sum())
    df0 = -W / x**2
    fv = np.array([[float(x.sum() - V)]])
    dfv = np.ones((1, len(x)))
    return f0, df0, fv, dfv


out = {
    "toy": run(toy, [4.0, 3.0, 2.0], 0.0, 5.0, 30, 2),
    "reciprocal": run(reciprocal, [1.0] * 5, 0.1, 10.0, 60, 1),
}
print(json.dumps(out, indent=1))
