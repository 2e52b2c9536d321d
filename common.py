"""
What every script shares, decided once: the presets table, the device, loading a checkpoint with
its tokenizer and metadata record, resuming a run, and one-line user errors.

The metadata record (a checkpoint's `meta`) is how settings flow from stage to stage:

    preset      the presets-table row the run was made with (later stages default to it)
    tokenizer   the tokenizer file, relative to the repository
    data        the generator knobs of the problems this model is trained and tested on, the
                window the window-friendly traces are written for among them
    history     one entry per stage so far: what it was, what it read, its own settings
    step, train_state   the training stage's progress (train_state is None once it finished)

Each stage reads the record of its --init, updates it (`next_meta`) and passes it on.
"""
import argparse
import json
import os
import random
import sys

import torch

ROOT = os.path.dirname(os.path.abspath(__file__))

# One row per preset; a script reads its own section and the shared `model` and `data` ones.
# smoke: CI's seconds-long check of the plumbing. tiny: a CPU run. default: ~10M parameters, one GPU.
PRESETS = {
    "smoke": dict(
        model=dict(n_layer=1, n_head=2, n_kv_head=1, n_embd=32, max_seq_len=1024),
        data=dict(window=128),
        pretrain=dict(steps=3, batch_size=2, lr=3e-3, warmup=1, n_train=20, n_val=4, eval_every=0),
        sft=dict(steps=2, batch_size=2, lr=1e-3, warmup=1, n_train=10, n_val=4, eval_every=0),
        rl=dict(steps=2, prompts_per_step=2, group_size=2, max_new_tokens=48, lr=1e-5, eval_every=0,
                eval_n=4),
        eval=dict(n=4, k=2, max_new_tokens=48, batch_size=64),
    ),
    "tiny": dict(
        model=dict(n_layer=2, n_head=2, n_kv_head=1, n_embd=64, max_seq_len=1024),
        data=dict(window=128),
        pretrain=dict(steps=100, batch_size=8, lr=3e-3, warmup=10, n_train=800, n_val=16, eval_every=50),
        sft=dict(steps=20, batch_size=8, lr=1e-3, warmup=5, n_train=400, n_val=16, eval_every=0),
        rl=dict(steps=6, prompts_per_step=4, group_size=4, max_new_tokens=160, lr=1e-5, eval_every=0,
                eval_n=16),
        eval=dict(n=48, k=2, max_new_tokens=256, batch_size=64),
    ),
    "default": dict(
        model=dict(n_layer=6, n_head=6, n_kv_head=2, n_embd=384, max_seq_len=1024),
        data=dict(window=128),
        pretrain=dict(steps=3000, batch_size=64, lr=2e-3, warmup=100, n_train=60000, n_val=256,
                      eval_every=250),
        sft=dict(steps=200, batch_size=64, lr=5e-4, warmup=20, n_train=15000, n_val=256, eval_every=100),
        rl=dict(steps=40, prompts_per_step=32, group_size=8, max_new_tokens=768, lr=1e-4, eval_every=10,
                eval_n=128),
        eval=dict(n=1000, k=4, max_new_tokens=None, batch_size=1000),
    ),
}


def default_preset():
    return "default" if torch.cuda.is_available() else "tiny"


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
    ap.add_argument("--preset", choices=sorted(PRESETS),
                    help="row of the presets table (default: the one --init was made with; without one, "
                         "default on a GPU and tiny on a CPU)")


# ----------------------------------------------------------------------------------------------
# the command line: one-line errors, the device

def fail(msg):
    """A user error: one line on stderr, non-zero exit, no traceback."""
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(1)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the script's docstring as help, and a bad flag reported in one line."""

    def __init__(self, doc, **kw):
        super().__init__(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter, **kw)

    def error(self, message):
        fail(f"{message} (see {self.prog} --help)")


def pick_device(name="auto"):
    """'auto' is CUDA when there is one; asking for CUDA without it is a user error."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        fail(f"--device {name} but CUDA is not available")
    if name != "cpu" and not name.startswith("cuda"):
        fail(f"--device must be auto, cpu or cuda[:N], got {name!r}")
    return name


# ----------------------------------------------------------------------------------------------
# checkpoints and the metadata record

def load(path, device="cpu", **overrides):
    """Checkpoint -> (model, tokenizer, meta). A missing or bad file, or a model whose vocabulary is
    not exactly its tokenizer's, is one line and exit 1."""
    from data.tokenizer import load_tokenizer
    from model import load_checkpoint
    try:
        model, meta = load_checkpoint(path, device=device, **overrides)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    tok = meta.get("tokenizer")
    if isinstance(tok, str) and not os.path.isabs(tok):
        tok = os.path.join(ROOT, tok)   # stored relative to the repository
    try:
        enc = load_tokenizer(tok if isinstance(tok, str) else None)
    except OSError as e:
        fail(f"{path}: cannot read its tokenizer {tok} ({e.strerror})")
    if model.config.vocab_size != enc.n_vocab:
        fail(f"{path} has vocab_size {model.config.vocab_size} but its tokenizer has {enc.n_vocab} ids")
    return model, enc, meta


def data_knobs(meta):
    """The generator knobs of the problems `meta`'s model was made for (the window among them)."""
    from data.mathgen import DEFAULT_KNOBS
    data = meta.get("data") if isinstance(meta.get("data"), dict) else {}
    return {**DEFAULT_KNOBS, **{k: tuple(v) if isinstance(v, list) else v
                                for k, v in data.items() if k in DEFAULT_KNOBS}}


def next_meta(meta, stage, **record):
    """The record a stage passes on: its input's, without that stage's progress, plus a history entry."""
    out = {k: v for k, v in meta.items() if k not in ("step", "train_state")}
    out["stage"] = stage
    out["history"] = list(meta.get("history", [])) + [{"stage": stage, **record}]
    return out


def resume(args, stage, model, opt):
    """The step a training stage starts at. --resume with an unfinished `stage` run at --out restores
    its weights, optimizer and random streams there; with no file at --out it starts fresh (step 0);
    with a finished run it says so and exits 0."""
    from model import read_checkpoint
    if not (args.resume and os.path.exists(args.out)):
        return 0
    try:
        ckpt = read_checkpoint(args.out)
    except ValueError as e:
        fail(f"--resume: {e}")
    if ckpt["meta"].get("stage") != stage:
        fail(f"--resume: {args.out} is a {ckpt['meta'].get('stage')!r} checkpoint, not a {stage} run")
    state = ckpt["meta"].get("train_state")
    if state is None:
        print(f"{args.out} is a finished {stage} run; nothing to do")
        sys.exit(0)
    try:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:
        fail(f"--resume: {args.out} does not fit this run ({str(e).splitlines()[0]})")
    set_rng_state(state["rng"])
    print(f"resuming {args.out} at step {state['step']}")
    return state["step"]


def open_metrics(path, resumed_at):
    """The JSON-lines metrics file, opened for appending: a fresh run starts it empty, a resumed one
    keeps only the rows up to the step it resumes at (the rest will be written again)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    keep = []
    if resumed_at and os.path.exists(path):
        keep = [line for line in open(path) if line.strip() and json.loads(line).get("step", 0) <= resumed_at]
    with open(path, "w") as f:
        f.writelines(keep)
    return open(path, "a")


def rng_state():
    """Every random stream a training stage draws from, as plain tensors and lists (weights_only-safe)."""
    v, internal, gauss = random.getstate()
    state = {"torch": torch.get_rng_state(), "python": [v, list(internal), gauss]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    torch.set_rng_state(state["torch"])
    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
