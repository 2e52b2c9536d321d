"""
Checkpoints and the metadata record they carry: the file (config, weights and metadata, written
atomically), loading one with its tokenizer for a script, and resuming a training run.

The metadata record (a checkpoint's `meta`) is how settings flow from stage to stage:

    preset      the presets-table row the run was made with (later stages default to it)
    tokenizer   the tokenizer file, relative to the repository
    data        the generator knobs of the problems this model is trained and tested on, the
                window the window-friendly traces are written for among them
    history     one entry per stage so far: what it was, what it read, its own settings
    step, train_state   the training stage's progress (train_state is None once it finished)

Each stage reads the record of its --init, updates it (`next_meta`) and passes it on.

Depends on: model (GPT, GPTConfig), hf (a Hugging Face folder given as a checkpoint), data.tokenizer
(each checkpoint's tokenizer), data.mathgen (the generator's default knobs), common (one-line errors), dist (rank 0 alone
writes).
"""
import json
import os
import random
import sys
import warnings
from dataclasses import fields

import torch

import dist
from common import ROOT, fail, write_atomic
from data.mathgen import DEFAULT_KNOBS
from data.tokenizer import encode_prompt, load_tokenizer
from hf import load_hf
from model import GPT, GPTConfig, resolve_impl

# ----------------------------------------------------------------------------------------------
# the file: config, weights and metadata

CHECKPOINT_FORMAT = "swarr-checkpoint-v1"


def save_checkpoint(path, model, **meta):
    """Atomic: written to a temporary file in the same directory, then renamed over `path`. A disk that
    is full (or any write error) is one line and exit 1, the file at `path` as it was."""
    if not dist.is_main():   # DISTRIBUTED: rank 0 alone writes (every rank holds the same weights)
        return
    model = getattr(model, "_orig_mod", model)                 # unwrap torch.compile
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    obj = {"format": CHECKPOINT_FORMAT, "config": model.config.saved(), "model": state, "meta": meta}
    # through a Python file: a failed write is an OSError with its cause (ENOSPC)
    write_atomic(path, lambda f: torch.save(obj, f), note="; the file there is as it was")


class CheckpointError(ValueError):
    """A file that is no readable swarr checkpoint, or whose weights do not fit its config."""


def read_checkpoint(path):
    """The raw checkpoint dict (config, model, meta), validated; weights_only=True never runs code."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():   # torch warns of a foreign pickle protocol before refusing it
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a swarr checkpoint")
    return obj


def load_checkpoint(path, device="cpu", attn_impl="auto"):
    """-> (model, meta), the model attending with `attn_impl`. Config keys this version does not
    know are ignored: older checkpoints saved attn_impl, which is chosen here now."""
    resolve_impl(attn_impl, device)   # a wrong name is the caller's mistake, not the checkpoint's
    if os.path.isdir(path):           # a Hugging Face model folder
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise CheckpointError(f"{path} is a folder without config.json: expected a swarr checkpoint (.pt) "
                                  f"or a Hugging Face model folder (config.json and *.safetensors)")
        return load_hf(path, device, attn_impl)
    obj = read_checkpoint(path)
    known = {f.name for f in fields(GPTConfig)}
    try:
        model = GPT(GPTConfig(**{k: v for k, v in obj["config"].items() if k in known}), attn_impl)
        model.load_state_dict(obj["model"])
    except (TypeError, ValueError, RuntimeError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: weights do not fit the config ({first})") from None
    return model.to(device), obj.get("meta", {})


# ----------------------------------------------------------------------------------------------
# a script's input: the model, its tokenizer, the task it was made for

def load(path, device="cpu", prompt_format=None, **overrides):
    """Checkpoint (or Hugging Face folder) -> (model, tokenizer, meta). A missing or bad file, or a model
    whose vocabulary is not exactly its tokenizer's, is one line and exit 1. prompt_format (plain or
    chat) replaces the one recorded for an imported tokenizer, and is recorded in meta from then on."""
    try:
        model, meta = load_checkpoint(path, device=device, **overrides)
    except (FileNotFoundError, ValueError, KeyError) as e:
        fail(str(e))
    tok = meta.get("tokenizer")
    if prompt_format:
        if not (isinstance(tok, str) and tok.endswith(".json")):
            fail(f"{path}: --prompt-format applies to imported (tokenizer.json) tokenizers only")
        meta["prompt_format"] = prompt_format
    if isinstance(tok, str) and not os.path.isabs(tok):
        tok = os.path.join(ROOT, tok)   # stored relative to the repository
    if "hf" in meta and not isinstance(tok, str):
        fail(f"{path}: the imported model has no tokenizer.json beside its weights")
    try:
        enc = load_tokenizer(tok if isinstance(tok, str) else None, meta.get("prompt_format", "plain"))
    except OSError as e:
        fail(f"{path}: cannot read its tokenizer {tok} ({e.strerror})")
    except ValueError as e:   # a binary or foreign file, or a tokenizer.json we cannot read
        fail(f"{path}: its tokenizer {tok} is not a tokenizer file ({str(e).splitlines()[0]})")
    # imported models may pad the embedding table past the tokenizer's ids (Qwen2.5: 151936 > 151665)
    if model.config.vocab_size < enc.n_vocab or ("hf" not in meta and model.config.vocab_size != enc.n_vocab):
        fail(f"{path} has vocab_size {model.config.vocab_size} but its tokenizer has {enc.n_vocab} ids")
    return model, enc, meta


def check_room(path, max_seq_len, enc, problems, new_tokens=1):
    """The one check that a model fits the task: a context that cannot hold the longest prompt of
    `problems` and `new_tokens` more is a user error found before any work, not mid-run."""
    longest = max(len(encode_prompt(enc, p["question"])) for p in problems)
    if longest + new_tokens > max_seq_len:
        fail(f"{path}: max_seq_len={max_seq_len} is too short for this task (prompts of up to {longest} tokens "
             f"and {new_tokens} to generate)")


def data_knobs(meta):
    """The generator knobs of the problems `meta`'s model was made for (the window among them)."""
    data = meta.get("data") if isinstance(meta.get("data"), dict) else {}
    return {**DEFAULT_KNOBS, **{k: tuple(v) if isinstance(v, list) else v
                                for k, v in data.items() if k in DEFAULT_KNOBS}}


# ----------------------------------------------------------------------------------------------
# the record a stage passes on, and resuming a training run

def next_meta(meta, stage, **record):
    """The record a stage passes on: its input's, without that stage's progress, plus a history entry.
    An unfinished input (a run stopped mid-way, train_state kept) is refused: building on it by mistake
    would quietly give a weaker model."""
    if meta.get("train_state"):
        fail(f"{record.get('init', 'the input')} is an unfinished {meta.get('stage', 'training')} run "
             f"(step {meta.get('step')}); finish it with --resume first")
    out = {k: v for k, v in meta.items() if k not in ("step", "train_state")}
    out["stage"] = stage
    out["history"] = list(meta.get("history", [])) + [{"stage": stage, **record}]
    return out


# What makes a run: a checkpoint at --out made with other values of these is another run's
SETTINGS = ("preset", "tokenizer", "data", "history")


def settings_diff(a, b, where=""):
    """The first place two settings records differ, as 'data.window: 128 != 64' (None if equal)."""
    a, b = (json.loads(json.dumps(x, default=str)) for x in (a, b))   # tuples and lists alike
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            d = settings_diff(a.get(k), b.get(k), f"{where}.{k}" if where else str(k))
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := settings_diff(x, y, f"{where}[{i}]"))), None)
    return None if a == b else f"{where}: {a!r} != {b!r}"


def resume(args, meta, model, opt):
    """The step a training stage starts at. --resume with an unfinished run at --out made with the same
    settings (model config and `meta`'s SETTINGS) restores its weights, optimizer and random streams
    there; with no file at --out it starts fresh (step 0); with a finished one it says so and exits 0.
    A checkpoint made with other settings is never continued nor taken as done."""
    ckpt = check_resume(args, meta, model.config)
    if ckpt is None:
        return 0
    state = ckpt["meta"]["train_state"]
    try:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:
        fail(f"--resume: {args.out} does not fit this run ({str(e).splitlines()[0]})")
    set_rng_state(state["rng"])
    print(f"resuming {args.out} at step {state['step']}")
    return state["step"]


def check_resume(args, meta, config):
    """resume's checks, which need neither the data nor the model (only its GPTConfig): None when there is
    nothing to continue (no --resume, or no file at --out), else the checkpoint of an unfinished run made with
    these settings; a finished run exits 0 ("nothing to do"), one made with other settings is one line.
    pretrain.py calls it before making its corpus."""
    stage = meta["stage"]
    if not (args.resume and os.path.exists(args.out)):
        return None
    try:
        ckpt = read_checkpoint(args.out)
    except (OSError, ValueError) as e:
        fail(f"--resume: {e}")
    if not isinstance(ckpt.get("meta"), dict) or ckpt["meta"].get("stage") != stage:
        fail(f"--resume: {args.out} is a {(ckpt.get('meta') or {}).get('stage')!r} checkpoint, not a {stage} run")
    ours = config.saved()
    saved = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else {}
    made = {"config": {k: v for k, v in saved.items() if k in ours},   # keys older versions saved: not settings
            **{k: ckpt["meta"].get(k) for k in SETTINGS}}
    now = {"config": ours, **{k: meta.get(k) for k in SETTINGS}}
    diff = settings_diff(made, now)
    if diff:
        fail(f"--resume: {args.out} was made with other settings ({diff}); use another --out, or drop --resume "
             f"to start over")
    state = ckpt["meta"].get("train_state")
    if state is None and ckpt["meta"].get("step") != args.steps:   # a finished run cannot be extended
        fail(f"--resume: {args.out} is a {stage} run finished at step {ckpt['meta'].get('step')}, not "
             f"{args.steps}; use another --out, or drop --resume to start over")
    if state is None:
        print(f"{args.out} is a finished {stage} run; nothing to do")
        sys.exit(0)
    return ckpt


def start_metrics(path, resumed_at):
    """The JSON-lines metrics file, made ready (whole, write_atomic): a fresh run starts it empty, a resumed
    one keeps only the rows up to the step it resumes at (the rest will be written again), and not a
    stage's final row ("stage": "sft_final"), which is written after its last step and again by a resumed
    run, nor a line a full disk cut short. Returns log(row), which appends one row (append_row)."""
    if not dist.is_main():   # DISTRIBUTED: rank 0 alone writes
        return lambda row: None
    keep = []
    if resumed_at and os.path.exists(path):
        for line in open(path):
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            if r.get("step", 0) <= resumed_at and not str(r.get("stage", "")).endswith("_final"):
                keep.append(line)
    write_atomic(path, "".join(keep))
    return lambda row: append_row(path, row)


def append_row(path, row):
    """One JSON line appended to `path`, the file closed again: a disk that refuses it is one line and
    exit 1 (the checkpoint holds the last step saved; --resume writes the rows after it again)."""
    try:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")
    except OSError as e:
        fail(f"cannot write {path} ({e.strerror}); --resume continues from the last checkpoint")


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
