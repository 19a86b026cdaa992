#!/usr/bin/env bash
# 3D and large-2D comparison for issue #17, one process per measurement, back to back:
# ours (cold / warm / limit, Auto ordering) against CHOLMOD (cold, and warm = cholesky_inplace on
# its kept analysis, one BLAS thread), MKL PARDISO (1 and 2 threads, cold and warm) and SciPy.
#   bash benches/compare/run3d.sh [OUT=docs/bench/results3d.jsonl]
# Peers need: bash ../shared/peers/setup.sh --with-cholmod. Missing peers are skipped.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${1:-docs/bench/results3d.jsonl}"
mkdir -p "$(dirname "$OUT")"
: > "$OUT"
PEERS="${PEERS_VENV:-$HOME/.cache/sparsegrad-peers/venv}"
PB=benches/compare/peer_bench.py
cargo build --release --example seed_benchmark -q
ours=target/release/examples/seed_benchmark

run_ours() { # case n repeat
  "$ours" --case "$1" --n "$2" --repeat "$3" --json >> "$OUT" || echo "ours failed: $*" >&2
}
run_peer() { # peer threads case n repeat [extra...]
  local peer=$1 threads=$2 py="$PEERS/bin/python"; shift 2
  [ "$peer" = cholmod ] && py="$PEERS-cholmod/bin/python"
  [ -x "$py" ] || return 0
  OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=$threads timeout 1200 "$py" "$PB" --peer "$peer" --case "$1" --n "$2" --repeat "$3" "${@:4}" --json 2>/dev/null \
    | tail -n 1 | sed "s/^{/{\"threads\": $threads, /" >> "$OUT" || echo "peer $peer failed: $*" >&2
}
both() { # case n repeat
  echo "$1 $2" >&2
  run_ours "$1" "$2" "$3"
  run_peer cholmod 1 "$1" "$2" "$3"
  run_peer cholmod 1 "$1" "$2" "$3" --regime warm
  run_peer pardiso 1 "$1" "$2" "$3"
  run_peer pardiso 1 "$1" "$2" "$3" --regime warm
  run_peer pardiso 2 "$1" "$2" "$3"
  run_peer pardiso 2 "$1" "$2" "$3" --regime warm
}
both grid3 110592 3          # 48³
both elastic3 100000 2       # 32³ hexahedra, 104 544 unknowns
both grid 1048576 2          # 1024²
run_peer scipy 1 grid3 110592 1
run_peer scipy 1 elastic3 100000 1
echo "wrote $OUT" >&2
