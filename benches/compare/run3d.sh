#!/usr/bin/env bash
# 3D and large-2D comparison for issue #17, one process per measurement, back to back:
# ours (cold / warm / limit, Auto ordering) against CHOLMOD (cold, and warm = cholesky_inplace on
# its kept analysis, one BLAS thread), MKL PARDISO (1 and 2 threads, cold and warm) and SciPy.
#   bash benches/compare/run3d.sh [OUT=docs/bench/results3d.jsonl]
# Peers need: bash ../shared/peers/setup.sh --with-cholmod. Missing peers are skipped.
OUT_ARG="${1:-}" source "$(dirname "$0")/common.sh" docs/bench/results3d.jsonl
build_ours

run_peer() { # peer threads case n repeat [extra...]
  local peer=$1 threads=$2; shift 2
  PREFIX_JSON="\"threads\": $threads, " run_python "$(peer_python "$peer")" 1200 "$threads" \
    --peer "$peer" --case "$1" --n "$2" --repeat "$3" "${@:4}"
}
both() { # case n repeat
  echo "$1 $2" >&2
  run_ours --case "$1" --n "$2" --repeat "$3"
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
