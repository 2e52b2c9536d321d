#!/usr/bin/env bash
# The tests, after setting up what is missing (setup.sh): the command .ci/run calls.
#   bash test.sh                       # every test (CPU; GPU-only ones skip without CUDA): what CI runs
#   bash test.sh -m "not slow"         # the edit loop's subset: the tests under ~5 s (pytest.ini)
#   bash test.sh tests/test_model.py   # arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")"
source setup.sh test
"$PY" -m pytest -q "$@"   # no path given: tests/ (pytest.ini)
