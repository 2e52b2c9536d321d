# Sourced by run.sh and test.sh: sets PY to a Python that has what swarr needs. The Python at hand is
# used as it is when it has everything; otherwise .venv is made (seeing the system's packages, so a
# torch already installed is reused) and only what is missing goes into it.
#   source setup.sh          # torch, tiktoken, numpy, sympy, tqdm
#   source setup.sh test     # and the test-only pytest and transformers
_mods="torch, tiktoken, numpy, sympy, tqdm"
[ "${1:-}" = test ] && _mods="$_mods, pytest, transformers"
# found, not imported (importing torch takes seconds, and run.sh and test.sh source this every time)
_has() {
  "$1" -c "import importlib.util as u, sys; sys.exit(not all(map(u.find_spec, '$_mods'.split(', '))))" 2>/dev/null
}
if [ -x .venv/bin/python ]; then
  PY=.venv/bin/python
elif _has python3; then
  PY=python3
else
  echo "setup: making .venv (once)"
  python3 -m venv --system-site-packages .venv
  PY=.venv/bin/python
fi
if ! _has "$PY"; then
  echo "setup: installing what $PY lacks (once; a few minutes)"
  if ! "$PY" -c "import torch" 2>/dev/null; then
    if nvidia-smi -L > /dev/null 2>&1; then
      "$PY" -m pip install -q "torch>=2.5"
    else   # no NVIDIA GPU: the CPU build (~200 MB) rather than PyPI's default with GBs of CUDA libraries
      "$PY" -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
    fi
  fi
  "$PY" -m pip install -q -r requirements.txt
  [ "${1:-}" = test ] && "$PY" -m pip install -q pytest "transformers==5.25.0"  # test_hf checks against it
  _has "$PY" || { echo "error: setup could not install: $_mods" >&2; exit 1; }
fi
