"""What the tests share: the repository on sys.path, and run_main, a script run in this process. Tests of over
~5 s are marked `slow` (pytest.ini); `bash test.sh -m "not slow"` is the edit loop's subset."""
import importlib
import io
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout

# tests import the flat top-level scripts (model.py, eval.py, ...) and the data package
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

import common  # noqa: E402


def run_main(script, args):
    """`python <script>.py args` run in this process, as a subprocess.CompletedProcess (exit code, stdout,
    stderr): for the tests of what a run prints, its exit code and its files, where a new process would spend
    seconds importing torch. Tests of the process itself (signals, locks held by a live pid, what is released
    at exit) start real processes."""
    module = importlib.import_module(script)
    out, err = io.StringIO(), io.StringIO()
    argv, threads = sys.argv, torch.get_num_threads()
    sys.argv = [script, *map(str, args)]
    try:
        with redirect_stderr(err), redirect_stdout(out):
            module.main()
        code = 0
    except SystemExit as e:
        code = e.code
    finally:
        sys.argv = argv
        common.release_outputs()     # as at the exit of a real process
        torch.set_num_threads(threads)
    return subprocess.CompletedProcess([script, *args], code, out.getvalue(), err.getvalue())
