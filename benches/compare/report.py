#!/usr/bin/env python3
"""Turns benches/compare/run.sh output (JSON lines) into the markdown tables of docs/BENCHMARKS.md
and a CSV for `cargo run --release --example benchmark_plot`.

    python3 benches/compare/report.py docs/bench/results.jsonl docs/bench/series.csv > docs/bench/tables.md
"""
import json
import math
import sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
csv_path = sys.argv[2]


def get(case, n, who, regime="cold", rhs=1):
    for r in rows:
        name = r.get("peer", "ours")
        if r["case"] == case and r["n"] == n and name == who and r.get("regime", "cold") == regime and r["rhs"] == rhs:
            return r
    return None


def fmt(x):
    return "—" if x is None else (f"{x:.3g}" if x < 100 else f"{x:.0f}")


def mem(r):
    m = r.get("memory_mib")
    if not m:
        return f"{r.get('peak_rss_mib', float('nan')):.0f} (process)"
    storage = m["a"] + m["factor"]
    if storage < 1:
        return f"{m['cold_call_peak']:.0f} / < 1"
    return f"{m['cold_call_peak']:.0f} / {storage:.0f} = {m['cold_call_peak'] / storage:.2f}×"


peers = ["scipy", "cholespy", "cholmod"]
out = []
for case in ["chain", "grid"]:
    sizes = sorted({r["n"] for r in rows if r["case"] == case and r["rhs"] == 1})
    out.append(f"\n### {case}, 1 right-hand side (median ms)\n")
    out.append("| n | ours cold | ours warm | limit | warm/limit | cold/warm | " + " | ".join(peers)
               + " | best peer / ours cold | breakdown warm (values / numeric / solves / tape+scatter) | one cold call: peak MiB / (A + factor) MiB | loss check |")
    out.append("|" + "---|" * (10 + len(peers)))
    for n in sizes:
        cold, warm, lim = (get(case, n, "ours", g) for g in ("cold", "warm", "limit"))
        if not cold:
            continue
        ps = [get(case, n, p) for p in peers]
        pm = [p["ms"] if p else None for p in ps]
        best = min([m for m in pm if m is not None], default=None)
        bd = warm.get("breakdown_ms", {}) if warm else {}
        br = " / ".join(fmt(bd.get(k)) for k in ("values", "numeric")) + " / " + fmt((bd.get("forward_solve") or 0) + (bd.get("adjoint_solve") or 0)) + " / " + fmt(bd.get("tape_and_scatter"))
        agree = [abs(p["loss"] - cold["loss"]) / abs(cold["loss"]) for p in ps if p]
        check = f"{max(agree):.0e}" if agree else "—"
        label = f"2^{int(round(math.log2(n)))}" if case == "chain" else f"{int(round(math.sqrt(n)))}²"
        out.append(f"| {label} | {fmt(cold['ms'])} | {fmt(warm['ms'])} | {fmt(lim['ms'])} | {warm['ms'] / lim['ms']:.2f} | {cold['ms'] / warm['ms']:.1f} | "
                   + " | ".join(fmt(m) for m in pm)
                   + f" | {fmt(best / cold['ms']) if best else '—'}× | {br} | {mem(cold)} | {check} |")
    # log-log slope of ours (cold and warm) over the sizes ≥ 2^12 (chain) / all (grid)
    for regime in ["cold", "warm"]:
        pts = [(math.log(n), math.log(get(case, n, "ours", regime)["ms"])) for n in sizes
               if get(case, n, "ours", regime) and (case != "chain" or n >= 4096)]
        if len(pts) >= 2:
            mx = sum(p[0] for p in pts) / len(pts)
            my = sum(p[1] for p in pts) / len(pts)
            slope = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
            out.append(f"\nlog-log slope of ours ({regime}, {case}{', n ≥ 2^12' if case == 'chain' else ''}): {slope:.3f}")

out.append("\n### 16 right-hand sides (median ms)\n")
out.append("| case | ours cold 1 / 16 RHS | ours warm 1 / 16 RHS | warm 16/1 | CHOLMOD 1 / 16 RHS |")
out.append("|---|---|---|---|---|")
for case, n in [("chain", 65536), ("grid", 262144)]:
    c1, c16, w1, w16 = get(case, n, "ours"), get(case, n, "ours", rhs=16), get(case, n, "ours", "warm"), get(case, n, "ours", "warm", 16)
    h1, h16 = get(case, n, "cholmod"), get(case, n, "cholmod", rhs=16)
    if c1 and c16 and w1 and w16:
        out.append(f"| {case} {n} | {fmt(c1['ms'])} / {fmt(c16['ms'])} | {fmt(w1['ms'])} / {fmt(w16['ms'])} | {w16['ms'] / w1['ms']:.2f} | {fmt(h1['ms'] if h1 else None)} / {fmt(h16['ms'] if h16 else None)} |")
print("\n".join(out))

with open(csv_path, "w") as f:
    f.write("series,case,n,ms\n")
    for r in rows:
        if r["rhs"] != 1:
            continue
        name = r.get("peer") or f"sparsegrad {r['regime']}"
        f.write(f"{name},{r['case']},{r['n']},{r['ms']}\n")
