#!/usr/bin/env bash
# Set up (if needed) and run every test, fast and slow. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TVM_NUM_THREADS=${TVM_NUM_THREADS:-1}
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
