"""
What every script shares, decided once: the presets table, the command line (one-line user errors,
typed numbers, the device), claiming outputs (never an input, one writer at a time: a `<out>.lock`
holding the pid, files written whole), and reading JSON-lines inputs.

Depends on no other module of the project but safety.py (signals, which itself depends on none), so
every module may import it; on torch only in the two functions that ask for CUDA (default_preset,
pick_device), so that report.py and plot.py, which read JSON and write text, start in 0.2 s instead of 2.
Checkpoints, the metadata record that flows from stage to stage and resuming are in checkpoint.py; the
generator's knobs are checked in data/mathgen.py (check_knobs).
"""
import argparse
import atexit
import glob
import json
import math
import os
import sys
import textwrap

import safety

ROOT = os.path.dirname(os.path.abspath(__file__))

# One row per preset; a script reads its own section and the shared `model` and `data` ones.
# smoke: CI's seconds-long check of the plumbing. tiny: a CPU pipeline check. cpu: the finding on a laptop.
# default: ~10M parameters, one GPU. expect: how long `bash run.sh --preset NAME` takes, as measured (README).
PRESETS = {
    "smoke": dict(
        expect="seconds",
        model=dict(n_layer=1, n_head=2, n_kv_head=1, n_embd=32, max_seq_len=1024),
        data=dict(window=128),
        pretrain=dict(steps=3, batch_size=2, lr=3e-3, warmup=1, n_train=20, n_val=4, eval_every=0),
        sft=dict(steps=2, batch_size=2, lr=1e-3, warmup=1, n_train=10, n_val=4, eval_every=0),
        rl=dict(steps=2, prompts_per_step=2, group_size=2, max_new_tokens=48, lr=1e-5, eval_every=0,
                eval_n=4),
        eval=dict(n=4, k=2, max_new_tokens=48, batch_size=64),
    ),
    "tiny": dict(
        expect="about 1.5 minutes on 2 CPU cores",
        model=dict(n_layer=2, n_head=2, n_kv_head=1, n_embd=64, max_seq_len=1024),
        data=dict(window=128),
        pretrain=dict(steps=100, batch_size=8, lr=3e-3, warmup=10, n_train=800, n_val=16, eval_every=50),
        sft=dict(steps=20, batch_size=8, lr=1e-3, warmup=5, n_train=400, n_val=16, eval_every=0),
        rl=dict(steps=6, prompts_per_step=4, group_size=4, max_new_tokens=160, lr=1e-5, eval_every=0,
                eval_n=16),
        eval=dict(n=48, k=2, max_new_tokens=256, batch_size=64),
    ),
    # the laptop preset (issue 13): the task scaled down with the model (window 64, 2 people, one event,
    # +/- facts, amounts <= 20, "sa" traces as a plan then the computations) and a 0.65M-parameter model
    "cpu": dict(
        expect="about 16 minutes on 2 CPU cores",
        model=dict(n_layer=2, n_head=4, n_kv_head=2, n_embd=128, max_seq_len=256),
        data=dict(window=64, n_people=2, n_events=(1, 1), distractors=(0, 0), detour_rate=0.0, sa_prose="plan",
                  max_value=20, kinds=("has", "more", "fewer", "give", "lose", "each", "total", "pair", "diff")),
        pretrain=dict(steps=1700, batch_size=32, lr=3e-3, warmup=30, n_train=30000, n_val=64, eval_every=250),
        sft=dict(steps=100, batch_size=8, lr=1e-3, warmup=10, n_train=1000, n_val=64, eval_every=0),
        rl=dict(steps=20, prompts_per_step=8, group_size=4, max_new_tokens=192, lr=2e-4, eval_every=10,
                eval_n=32),
        eval=dict(n=300, k=2, max_new_tokens=None, batch_size=300),
    ),
    # corpus_wf_frac: the base's corpus holds enough window-friendly traces to write them well (at 0.2 they
    # were right 26-82% of the time across five bases) but fewer than SA ones, so its greedy traces (and the
    # converted model's) keep the SA style: at 0.5 the converted model needed no SFT or RL (docs/log.md)
    "default": dict(
        expect="about 8 minutes on one H100",
        model=dict(n_layer=6, n_head=6, n_kv_head=2, n_embd=384, max_seq_len=1024),
        data=dict(window=128),
        pretrain=dict(steps=6000, batch_size=64, lr=2e-3, warmup=100, n_train=120000, n_val=256,
                      eval_every=250, corpus_wf_frac=0.35),
        sft=dict(steps=200, batch_size=64, lr=5e-4, warmup=20, n_train=15000, n_val=256, eval_every=100),
        rl=dict(steps=40, prompts_per_step=32, group_size=8, max_new_tokens=768, lr=1e-4, eval_every=10,
                eval_n=128),
        eval=dict(n=1000, k=4, max_new_tokens=None, batch_size=1000),
    ),
}


def default_preset():
    import torch   # here and in pick_device, not at the top: report.py and plot.py start without torch
    return "default" if torch.cuda.is_available() else "cpu"


def apply_preset(args, section, meta=None):
    """Fill every argument left at None from the preset's `section`. The preset is --preset, else the
    one --init was made with, else the default for this machine."""
    args.preset = args.preset or (meta or {}).get("preset") or default_preset()
    if args.preset not in PRESETS:
        fail(f"unknown preset {args.preset!r}; known: {', '.join(PRESETS)}")
    for k, v in PRESETS[args.preset][section].items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    return args


def add_preset_arg(ap):
    a = ap.add_argument("--preset", choices=sorted(PRESETS),
                        help="row of the presets table that the flags marked \"the preset's\" take their "
                             "default from; --help shows the default row's values (default: the preset "
                             "--init was made with; without one, default on a GPU and cpu on a CPU)")
    a.shows_default = True


# ----------------------------------------------------------------------------------------------
# the command line: one-line errors, the device

def fail(msg):
    """A user error: one line on stderr, non-zero exit, no traceback."""
    safety.close_progress_bars()
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(1)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the script's docstring as help, a bad flag reported in one line, and every flag's
    effective default in --help: its own, or for a flag the presets table fills (left None here) the
    value in the `default` preset's rows `sections` (e.g. "rl", or "pretrain", "model", "data")."""

    def __init__(self, doc, sections=(), **kw):
        super().__init__(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter, **kw)
        self.sections = (sections,) if isinstance(sections, str) else tuple(sections)

    def error(self, message):
        fail(f"{message} (see {self.prog} --help)")

    def format_help(self):
        preset = {k: v for s in reversed(self.sections) for k, v in PRESETS["default"][s].items()}
        for a in self._actions:
            if not a.option_strings or a.help == argparse.SUPPRESS or getattr(a, "shows_default", False):
                continue
            if a.default is None and a.dest in preset:
                shown = f"default: {preset[a.dest]}; the preset's"
            elif a.default is not None and not isinstance(a.default, bool) and a.default != argparse.SUPPRESS:
                shown = f"default: {a.default}"
            else:
                continue
            a.help = (f"{a.help} " if a.help else "") + f"({shown})".replace("%", "%%")
            a.shows_default = True
        return super().format_help()


def print_settings(script, args, file=None, **resolved):
    """The run's resolved settings in one block of key=value lines, printed at its start: what the
    presets table, the record of --init and the flags given made of them (`resolved`: values worked
    out beyond the flags, such as the model's sizes)."""
    items = " ".join(f"{k}={v}" for k, v in {**vars(args), **resolved}.items())
    lines = textwrap.wrap(f"{script} settings: {items}", 110, subsequent_indent="  ", break_long_words=False,
                          break_on_hyphens=False)
    print("\n".join(lines), file=file or sys.stdout, flush=True)


def number(kind=float, low=None, above=None, high=None):
    """An argparse type: a `kind` (int or float) that is finite and within the bounds, else argparse's
    one-line error ("argument --lr: must be finite, got 'nan'"). Nonsense is refused where it is typed,
    not found out mid-run (a NaN loss, a process pool of -1 problems)."""
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {'an integer' if kind is int else 'a number'}: {text!r}")
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
        for ok, what in ((low is None or v >= low, f">= {low}"), (above is None or v > above, f"> {above}"),
                         (high is None or v <= high, f"<= {high}")):
            if not ok:
                raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return v
    return parse


POSITIVE_INT, COUNT = number(int, low=1), number(int, low=0)   # sizes; counts and periods (0: none/off)
FINITE, POSITIVE, NONNEG = number(float), number(float, above=0), number(float, low=0)
FRACTION = number(float, low=0, high=1)


def pick_device(name="auto"):
    """'auto' is CUDA when there is one; asking for CUDA without it is a user error."""
    import torch
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        fail(f"--device {name} but CUDA is not available")
    if name != "cpu" and not name.startswith("cuda"):
        fail(f"--device must be auto, cpu or cuda[:N], got {name!r}")
    return name


# ----------------------------------------------------------------------------------------------
# outputs: never one of the inputs, writable, one writer at a time

def claim_outputs(outputs, inputs=()):
    """Every script calls this before any work, with the files it will write and the files it reads.
    An output that is an input (or another output) would destroy it; one that is a directory or sits
    in a folder that cannot be written would fail only after the work: each is one line and exit 1,
    before anything on disk changed. Then each output is locked against a second process writing it
    (`<out>.lock`, removed at exit) and the temporary files a killed save left next to it are removed."""
    outputs = [p for p in outputs if p]
    read = {os.path.realpath(p): p for p in inputs if p}
    seen = {}
    for out in outputs:
        real = os.path.realpath(out)   # resolved: a symlink or ./a.pt is the same file as a.pt
        if real in read:
            fail(f"{out} is an input of this run ({read[real]}); writing it would destroy it: choose another path")
        if real in seen:
            fail(f"{seen[real]} and {out} are the same file; give each output its own path")
        seen[real] = out
        if os.path.isdir(out):
            fail(f"{out} is a directory; give a file path to write")
    for out in outputs:
        _lock(out)
        _remove_stale(out + ".tmp")
        _remove_stale(out + ".lock.tmp")
    safety.hold_signals()   # a SIGTERM from here on unwinds: temporary files removed, locks released


def _pid_alive(pid):
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)   # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True       # it exists, under another user
    return True


def _lock(out):
    """`<out>.lock` holds the writer's pid. It is made whole (pid inside) and linked into place, which
    fails if one is there: no moment where a lock exists but names nobody. A lock whose pid is dead
    was left by a kill and is taken over; one that is our own pid is ours (a stage run twice in one
    process, as tests do)."""
    lock = out + ".lock"
    try:
        folder = os.path.dirname(os.path.abspath(out))
        while not os.path.exists(folder):   # folders made for it: removed again if the run leaves them empty
            _MADE.append(folder)
            folder = os.path.dirname(folder)
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        tmp = f"{lock}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(str(os.getpid()))
    except OSError as e:
        fail(f"cannot write {out} ({e.strerror})")
    try:
        for _ in range(3):
            try:
                os.link(tmp, lock)
                if not _HELD:
                    atexit.register(release_outputs)   # on any exit: return, fail(), an exception, Ctrl-C
                _HELD.append(lock)
                return
            except FileExistsError:
                pid = _lock_pid(lock)
                if pid == os.getpid():
                    return
                if _pid_alive(pid):
                    fail(f"{out} is in use by pid {pid} (remove {lock} if that process is not writing it)")
                try:
                    os.remove(lock)   # stale: its writer is gone
                except FileNotFoundError:
                    pass
            except OSError as e:
                fail(f"cannot write {out} ({e.strerror})")
        fail(f"{out} is in use (lock {lock} keeps coming back)")
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _lock_pid(lock):
    try:
        with open(lock) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return 0


_HELD, _MADE = [], []   # the locks this process took; the folders it made for its outputs, deepest first


def release_outputs():
    """Give back every output this process locked. Runs at exit; a script's main() that can be called
    in-process (rl.main, by tests) also calls it when it returns or raises."""
    safety.restore_signals()
    while _HELD:
        lock = _HELD.pop()
        if _lock_pid(lock) == os.getpid():
            os.remove(lock)
    while _MADE:   # a run that failed before writing leaves no empty folder behind
        try:
            os.rmdir(_MADE.pop(0))
        except OSError:
            pass


def _remove_stale(prefix):
    """`<prefix><pid>` files whose process is dead: half-written saves of a killed run
    (checkpoint.save_checkpoint and the report writers name their temporary file after the pid that writes it)."""
    for path in glob.glob(glob.escape(prefix) + "*"):
        pid = path[len(prefix):]
        if pid.isdigit() and not _pid_alive(int(pid)):
            try:
                os.remove(path)
            except OSError:
                pass


def write_atomic(path, data, note=""):
    """Write text or bytes whole or not at all: a temporary file named after the pid (the next run on
    `path` removes it if a kill left it behind), renamed over `path`. `data` may also be a function that
    writes to the open binary file (torch.save). A failed write (a full disk) is one line, `note` after it."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(tmp, "w" if isinstance(data, str) else "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        fail(f"cannot write {path} ({e.strerror}){note}")
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# ----------------------------------------------------------------------------------------------
# inputs: JSON-lines files

def read_jsonl(path, what="", need=()):
    """The records of a JSON-lines file, one object per line, each with the keys `need`. A missing,
    binary, malformed or empty file is one line and exit 1 (`what` names the flag it came from)."""
    where = f"{what}: {path}" if what else path
    if not os.path.isfile(path):
        fail(f"{where}: file not found")
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    rows.append(json.loads(line))
                    if not isinstance(rows[-1], dict) or not set(need) <= set(rows[-1]):
                        fail(f"{where}:{n}: expected a JSON object with {', '.join(need) or 'keys'}")
    except UnicodeDecodeError:
        fail(f"{where}: not a text file")
    except json.JSONDecodeError as e:
        fail(f"{where}:{n}: not JSON ({e.msg})")
    except OSError as e:
        fail(f"{where}: cannot read ({e.strerror})")
    if not rows:
        fail(f"{where}: no records (an empty file)")
    return rows
