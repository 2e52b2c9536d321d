#!/usr/bin/env bash
# The tests, after setting up what is missing (setup.sh): the command .ci/run calls.
#   bash test.sh                       # every test (CPU; GPU-only ones skip without CUDA)
#   bash test.sh tests/test_model.py   # arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")"
source setup.sh test
"$PY" -m pytest -q "${@:-tests}"
