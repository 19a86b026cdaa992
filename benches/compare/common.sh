# Shared set-up of the comparison scripts (sourced, not run): the repository root as working
# directory, $OUT emptied, $PEERS (the peers' venv), $PB (the peer harness) and $ours (the seed
# benchmark, built in release) set, and the runners below.
#   source "$(dirname "$0")/common.sh" DEFAULT_OUT [keep]   # keep: do not empty $OUT
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
OUT="${OUT_ARG:-$1}"
mkdir -p "$(dirname "$OUT")"
[ "${2:-}" = keep ] || : > "$OUT"
PEERS="${PEERS_VENV:-$HOME/.cache/sparsegrad-peers/venv}"
PB=benches/compare/peer_bench.py
ours=target/release/examples/seed_benchmark

build_ours() {
  cargo build --release --example seed_benchmark -q
}

run_ours() { # seed_benchmark arguments...
  "$ours" "$@" --json >> "$OUT" || echo "ours failed: $*" >&2
}

# One peer measurement with interpreter $1 under a timeout of $2 s, BLAS threads $3; the last
# JSON line it prints is appended to $OUT (prefixed by $PREFIX_JSON when set).
run_python() { # python timeout threads harness-arguments...
  local py=$1 limit=$2 threads=$3; shift 3
  [ -x "$py" ] || return 0
  OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=$threads timeout "$limit" "$py" "$PB" "$@" --json 2>/dev/null \
    | tail -n 1 | sed "s/^{/{${PREFIX_JSON:-}/" >> "$OUT" || echo "failed: $*" >&2
}

# The peers' interpreter: CHOLMOD lives in its own venv.
peer_python() { # peer
  if [ "$1" = cholmod ]; then echo "$PEERS-cholmod/bin/python"; else echo "$PEERS/bin/python"; fi
}
