#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): bf16 and torch.compile against fp32 eager,
# no graph breaks, throughput and MFU at the reference size (batch 768, eager and
# compiled), the compile cold, warm on the node and loaded from torch's portable cache
# (its load time), a short Sudoku run that learns; one summary table. Meant to take about
# 4 minutes on one GPU (not yet run on one). Needs only python3 with torch, numpy, pyarrow
# and pyyaml: it says what is missing before it starts.
# Usage: bash benchmarks/gpu_check.sh [--quick] [--device cpu]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
missing=$("$PY" - <<'PYEOF'
import importlib.util
print(" ".join(m for m in ("torch", "numpy", "pyarrow", "yaml") if importlib.util.find_spec(m) is None))
PYEOF
)
if [ -n "$missing" ]; then
    echo "gpu_check.sh: $PY lacks: $missing (needs torch, numpy, pyarrow, pyyaml)" >&2
    exit 2
fi
exec "$PY" benchmarks/gpu_check.py "$@"
