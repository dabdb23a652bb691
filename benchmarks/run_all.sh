#!/usr/bin/env bash
# Every benchmark of issue 8, in order; results in benchmarks/results/*.json (+ PNGs).
#
#   bash benchmarks/run_all.sh           # the settings BENCHMARKS.md reports (1.5 h measured
#                                        # on a shared 2-core CPU with the old claims script,
#                                        # ~40 min of it, now gone; the papers' claims: slimssl
#                                        # reproduce all --scale cpu, hours, see the README)
#   bash benchmarks/run_all.sh --quick   # about 5 minutes on an idle 2-core CPU: same scripts,
#                                        # tiny batches / one repeat, results to *_quick.json
#
# PYTHON (default: python) picks the interpreter; bench_lightly_peer.py is skipped when lightly
# is not installed (it is not a slimssl dependency: pip install lightly).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
QUICK=0
[[ "${1:-}" == "--quick" ]] && QUICK=1

if (( QUICK )); then
  $PY benchmarks/bench_step_cost.py --batch 8 --repeats 1 --image-size 16 --out step_cost_quick
  $PY benchmarks/bench_memory.py --batch 8 --steps 1 --image-size 16 --out memory_quick
  $PY benchmarks/bench_slow_start.py --epochs 2 --fraction 0.1 --repeats 1 --out slow_start_quick
  # bench_pipeline.py always writes results/pipeline.json: keep the full run's file; the quick
  # run skips the CIFAR-10 config (decoding 50k JPEGs alone takes minutes)
  R=benchmarks/results
  [[ -f $R/pipeline.json ]] && cp $R/pipeline.json $R/.pipeline.full.json
  $PY benchmarks/bench_pipeline.py --threads 1 --repeats 2 --cifar-dir /nonexistent
  mv $R/pipeline.json $R/pipeline_quick.json
  [[ -f $R/.pipeline.full.json ]] && mv $R/.pipeline.full.json $R/pipeline.json
  if $PY -c "import lightly" 2>/dev/null; then
    $PY benchmarks/bench_lightly_peer.py --batch 4 --repeats 1 --queue 256 --out lightly_peer_quick
  else
    echo "skipping bench_lightly_peer.py: pip install lightly"
  fi
  claims=$(mktemp -d)  # the claims matrix at its CI scale (digits, 1 epoch); report kept
  $PY -m slimssl.cli reproduce slimclr-table1 --scale smoke --jobs 2 --out "$claims"
  mkdir -p $R/claims_smoke && cp "$claims"/claims.{md,json,png} $R/claims_smoke/
  rm -rf "$claims"
  if [[ -d ../shared/data/cifar10-jpeg ]]; then
    $PY benchmarks/eval_stream.py --images 200 --batch 64 --name eval_stream_quick
  fi
else
  $PY benchmarks/bench_augment.py
  $PY benchmarks/bench_step_cost.py --batch 32 --repeats 9
  $PY benchmarks/bench_memory.py --batch 64 --steps 2
  $PY benchmarks/bench_slow_start.py --epochs 4 --fraction 0.5 --repeats 3
  $PY benchmarks/bench_pipeline.py --threads 1 --repeats 5
  if $PY -c "import lightly" 2>/dev/null; then
    $PY benchmarks/bench_lightly_peer.py --batch 32 --repeats 5
  else
    echo "skipping bench_lightly_peer.py: pip install lightly"
  fi
  $PY benchmarks/eval_stream.py  # streamed vs in-memory feature extraction (issue 21)
  $PY benchmarks/plot_costs.py
fi
