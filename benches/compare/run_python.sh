#!/usr/bin/env bash
# sparsegrad from Python (python/, installed in the venv) against the Python peers on the seed
# benchmark, one process per measurement, back to back; appends JSON lines to $OUT.
#   bash benches/compare/run_python.sh [OUT=docs/bench/results_python.jsonl]
# Venv: ${SPARSEGRAD_PY_VENV:-$HOME/.cache/sparsegrad-py/venv} with numpy scipy torch cholespy
# torchsparsegradutils (--no-deps) and `pip install ./python`.
# ONLY="sparsegrad sparsegrad_torch" re-measures only those peers (their old lines are dropped).
ONLY="${ONLY:-}"
OUT_ARG="${1:-}" source "$(dirname "$0")/common.sh" docs/bench/results_python.jsonl keep
if [ -n "$ONLY" ] && [ -f "$OUT" ]; then
  grep -vE "\"peer\": \"($(echo $ONLY | tr ' ' '|'))\"" "$OUT" > "$OUT.tmp" || true; mv "$OUT.tmp" "$OUT"
else
  : > "$OUT"
fi
PY="${SPARSEGRAD_PY_VENV:-$HOME/.cache/sparsegrad-py/venv}/bin/python"
run() { # peer case n repeat [extra...]
  if [ -n "$ONLY" ] && ! echo " $ONLY " | grep -q " $1 "; then return 0; fi
  run_python "$PY" 900 1 --peer "$1" --case "$2" --n "$3" --repeat "$4" "${@:5}"
}
for c in "chain 65536 7" "grid 262144 5"; do
  set -- $c
  echo "$1 $2" >&2
  run sparsegrad "$1" "$2" "$3"
  run sparsegrad "$1" "$2" "$3" --regime warm
  run sparsegrad_torch "$1" "$2" "$3"
  run sparsegrad_torch "$1" "$2" "$3" --regime warm
  run sparsegrad_torch_coo "$1" "$2" "$3"
  run sparsegrad_torch_coo "$1" "$2" "$3" --regime warm
  run seed "$1" "$2" "$3"
  run cholespy "$1" "$2" "$3"
  run scipy "$1" "$2" "$3"
  run tsgu "$1" "$2" "$3"
done
echo "wrote $OUT" >&2
