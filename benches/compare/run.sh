#!/usr/bin/env bash
# Runs the seed benchmark (ours: cold / warm / limit, fast Cholesky) and the Python peers on the
# same problems, one process per measurement, and appends one JSON line per result to $OUT.
#   bash benches/compare/run.sh [OUT=docs/bench/results.jsonl]
# Peers need: bash ../shared/peers/setup.sh [--with-cholmod]. Missing peers are skipped.
OUT_ARG="${1:-}" source "$(dirname "$0")/common.sh" docs/bench/results.jsonl
build_ours

run_peer() { # peer case n rhs repeat [extra...]
  local peer=$1; shift
  run_python "$(peer_python "$peer")" 900 1 --peer "$peer" --case "$1" --n "$2" --rhs "$3" --repeat "$4" "${@:5}"
}

for p in 8 10 12 14 16 18 20 22; do
  n=$((1 << p)); r=5; [ "$p" -ge 20 ] && r=3
  echo "chain 2^$p" >&2
  run_ours --case chain --n "$n" --rhs 1 --repeat "$r"
  run_peer scipy chain "$n" 1 "$r" --permc COLAMD
  run_peer cholespy chain "$n" 1 "$r"
  run_peer cholmod chain "$n" 1 "$r"
done
for k in 64 128 256 512 1024; do
  n=$((k * k)); r=5; [ "$k" -ge 512 ] && r=3
  echo "grid $k^2" >&2
  run_ours --case grid --n "$n" --rhs 1 --repeat "$r"
  run_peer scipy grid "$n" 1 "$r" --permc MMD_AT_PLUS_A
  run_peer cholespy grid "$n" 1 "$r"
  run_peer cholmod grid "$n" 1 "$r"
done
# Multi-RHS: 16 right-hand sides at the goal sizes.
run_ours --case chain --n 65536 --rhs 16 --repeat 5
run_ours --case grid --n 262144 --rhs 16 --repeat 3
run_peer cholmod chain 65536 16 5
run_peer cholmod grid 262144 16 3
echo "wrote $OUT" >&2
