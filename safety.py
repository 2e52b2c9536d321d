"""
Signals, the faults a long run meets besides bad input: a scheduler's SIGTERM (SIGKILL follows after a
grace period) and Ctrl-C. Each ends a script in one line on stderr and a non-zero exit, never with a
traceback, and never with a half-written file (every file is written to a temporary one and renamed
into place; a signal lets the `finally` that removes the temporary file run).

    any script        Ctrl-C: "interrupted (Ctrl-C)", exit 130 (the excepthook below)
    a script writing  SIGTERM: "stopped by SIGTERM", exit 143 (claim_outputs calls hold_signals)
    a training loop   SIGTERM or Ctrl-C: the step under way is finished, a resumable checkpoint saved,
                      "stopped by SIGTERM after step N ...", exit 143 (130); --resume continues exactly.
                      Further signals do not cut that save short (SIGKILL still stops it at once).

A full disk (ENOSPC) is an OSError from the write that met it; the writers (checkpoint.save_checkpoint,
checkpoint.append_row, common.write_atomic) turn it into one line naming the file and the cause.

Depends on no other module of the project.
"""
import signal
import sys

from tqdm import tqdm

_asked = []      # the signal that asked a training loop to stop (at most one)
_previous = {}   # the handlers this process had before hold_signals, put back by restore_signals


def close_progress_bars():
    """Before a script's last line: a bar left open would draw itself again after it, at exit."""
    for bar in list(getattr(tqdm, "_instances", [])):
        bar.close()


def _one_line_interrupt(kind, value, tb):
    """sys.excepthook: Ctrl-C outside a training loop is one line, not a traceback (the interpreter
    then exits with status 130, as a shell expects of Ctrl-C)."""
    if issubclass(kind, KeyboardInterrupt):
        close_progress_bars()
        print("interrupted (Ctrl-C): files being written were left as they were", file=sys.stderr)
        return
    sys.__excepthook__(kind, value, tb)


sys.excepthook = _one_line_interrupt


def _exit_on_term(signum, frame):
    close_progress_bars()
    print("stopped by SIGTERM: files being written were left as they were", file=sys.stderr)
    raise SystemExit(128 + signum)   # unwinds: each temporary file is removed, each lock released


def hold_signals():
    """From here until restore_signals(), SIGTERM unwinds the script like Ctrl-C does (by default it
    would kill it on the spot, leaving a temporary file for the next run to remove)."""
    _previous.setdefault(signal.SIGTERM, signal.signal(signal.SIGTERM, _exit_on_term))


def restore_signals():
    for sig, handler in _previous.items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
    _previous.clear()
    _asked.clear()


def _ask_to_stop(signum, frame):
    if not _asked:
        _asked.append(signum)


def stop_at_step_boundaries():
    """A training loop's: from here on, SIGTERM and SIGINT ask it to stop at its next step boundary."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        _previous.setdefault(sig, signal.signal(sig, _ask_to_stop))


def stop_if_asked(save, out, step, agree=None):
    """Called by a training loop at each step boundary: when a signal came since the last one, save()
    (None when `out` is already saved), say so in one line and exit with 128 + the signal's number.
    agree: under torchrun, the signal number made the same on every rank (dist.largest), so that every rank
    stops at the same boundary; one that went on alone would wait for the others in its next collective."""
    signum = _asked[0] if _asked else 0
    if agree:
        signum = agree(signum)
    if not signum:
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)   # a second signal must not cut the save short
    if save:
        save()
    close_progress_bars()
    name = signal.Signals(signum).name
    print(f"stopped by {name} after step {step}: {out} is saved; continue it with --resume", file=sys.stderr)
    sys.exit(128 + signum)
