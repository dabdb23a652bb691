#!/usr/bin/env bash
# The GPU check of issue 18 (see benchmarks/gpu_check.py for what each section measures).
#   bash benchmarks/gpu_check.sh                 # on one GPU, <= 8 minutes
#   bash benchmarks/gpu_check.sh --smoke         # the same on the CPU in a tiny mode (CI)
#   bash benchmarks/gpu_check.sh --data DIR --compile
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
export MPLBACKEND=Agg
if [ "${1:-}" != "--smoke" ] && command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
fi
exec "$PY" -u benchmarks/gpu_check.py "$@"
