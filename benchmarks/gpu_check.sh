#!/usr/bin/env bash
# speechrq's one-GPU check (benchmarks/gpu_check.py): one line per check, exit status 1 if any failed.
#   benchmarks/gpu_check.sh                        # on one CUDA GPU: the full check, under 10 minutes on an H200
#   benchmarks/gpu_check.sh --device cpu --smoke   # on a CPU: tiny preset, a few minutes; GPU-only checks SKIP after a dry run
#   benchmarks/gpu_check.sh --checks peak,pretrain_bf16 --json out.json
# Python: $PYTHON, else the repository's .venv, else python3; speechrq from src/ when it is not installed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
if [[ -n "${PYTHON:-}" ]]; then
  py="$PYTHON"
elif [[ -x "$repo/.venv/bin/python" ]]; then
  py="$repo/.venv/bin/python"
else
  py="$(command -v python3)"
fi
export PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
exec "$py" "$here/gpu_check.py" "$@"
