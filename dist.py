"""
More than one GPU: `torchrun --nproc_per_node N script.py ...` starts N copies ("ranks") of a script,
one per GPU, and PyTorch's torch.distributed joins them (NCCL between GPUs, gloo between CPU processes).
Started plainly, every function here is the one-process identity, so a one-process run is what it was.

What a script does with N ranks (run.sh --gpus N starts each stage this way):
    pretrain.py, sft.py   each rank takes 1/N of the global batch's rows; DDP averages the gradients
    rl.py                 each rank samples and trains on 1/N of a step's groups (a group never split);
                          the gradients are summed (all_reduce), the loss's token count is the global one
    eval.py               whole generate batches are dealt to the ranks, made exactly as on one process,
                          and gathered: the same table for any N
    all of them           rank 0 alone writes files (checkpoint.py) and prints; the others are silent

An error on one rank ends them all: a rank whose collective loses its peers says so in one line and
exits 1 (torchrun also stops the others when one fails); files are written whole, so none is half-written.
"""
import atexit
import gc
import os
import re
import sys
import traceback

import torch
import torch.distributed as tdist
from torch.nn.parallel import DistributedDataParallel

from common import fail
from safety import close_progress_bars


def rank():
    return int(os.environ.get("RANK", 0))


def world():
    return int(os.environ.get("WORLD_SIZE", 1))


def is_main():
    return rank() == 0


def init():
    """Join torchrun's process group (environment variables RANK, WORLD_SIZE, MASTER_ADDR, ...): the first
    thing a script's main() does. On one process, nothing. The ranks other than 0 print nothing from here
    on (a user error is then one line, not N); an error on any rank is one line (see _one_line)."""
    if world() == 1 or tdist.is_initialized():
        return
    if not is_main():
        sys.stdout = sys.stderr = open(os.devnull, "w")
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))   # "cuda" is then this rank's GPU
    tdist.init_process_group()   # no backend named: gloo for CPU tensors, NCCL for CUDA ones
    atexit.register(_leave)
    sys.excepthook = _one_line(sys.excepthook)   # after init_process_group, which sets its own


def _leave():
    """At exit: free what still holds the process group (a DDP wrapper in a reference cycle), then leave the
    group. Freed by the interpreter's last clean-up instead, after the group, the wrapper sometimes aborted its
    rank ("terminate called without an active exception"; 1 run of tests/test_dist.py's first test in 15)."""
    gc.collect()
    tdist.destroy_process_group()


def _one_line(previous):
    """sys.excepthook of a rank: losing a peer (it failed or was killed) is one line on every rank left;
    another error is one line on ranks other than 0 (rank 0 has its usual traceback: the same bug there)."""
    def hook(kind, value, tb):
        first = (str(value).strip().splitlines() or [kind.__name__])[0]
        first = re.sub(r"^\[[^\]]*\]\s*", "", first).split(". ")[0]   # gloo's "[path/pair.cc:553] Connection ..."
        lost = issubclass(kind, tdist.DistError) or "gloo" in str(value)   # gloo's are RuntimeErrors
        if lost or any(f.filename.endswith("distributed_c10d.py") for f in traceback.extract_tb(tb)):
            close_progress_bars()
            print(f"error: rank {rank()}: another rank stopped ({first}); stopping too, nothing "
                  f"half-written", file=sys.__stderr__, flush=True)
        elif is_main() or issubclass(kind, KeyboardInterrupt):
            previous(kind, value, tb)
        else:
            print(f"error: rank {rank()}: {kind.__name__}: {first}", file=sys.__stderr__, flush=True)
    return hook


def share(n):
    """This rank's contiguous share of n rows, as a slice (all of them on one process); n must divide evenly,
    so every rank does the same work and the global batch means the same for any N."""
    if n % world():
        fail(f"{n} rows (a batch size or prompts per step) cannot be split evenly over {world()} processes")
    k = n // world()
    return slice(rank() * k, (rank() + 1) * k)


def ddp(model):
    """`model` in DDP, which averages the ranks' gradients during backward (the model itself on one process)."""
    return DistributedDataParallel(model) if world() > 1 else model


def sum_gradients(model):
    """All-reduce (sum) every gradient over the ranks, where DDP does not fit (rl.py: its ranks run
    different numbers of micro-batches, and sample with the bare model). Nothing on one process."""
    if world() == 1:
        return
    grads = []
    for p in model.parameters():
        if p.requires_grad:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
    for work in [tdist.all_reduce(g, async_op=True) for g in grads]:
        work.wait()


def sum(x):
    """x (a number or a tensor) summed over the ranks, the same type back (x itself on one process)."""
    if world() == 1:
        return x
    t = x.detach().clone() if torch.is_tensor(x) else torch.tensor(x, dtype=torch.float64)
    tdist.all_reduce(t)
    return t if torch.is_tensor(x) else type(x)(t.item())


def largest(x):
    """The largest of every rank's x (an int), on every rank (x itself on one process)."""
    if world() == 1:
        return x
    t = torch.tensor(x)
    tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
    return int(t)


def mean(x):
    return x if world() == 1 else sum(x) / world()


def gather(x):
    """Every rank's x (any picklable object), in rank order, on every rank ([x] on one process)."""
    if world() == 1:
        return [x]
    out = [None] * world()
    tdist.all_gather_object(out, x)
    return out


def concat(x):
    """Every rank's x (a list or a tensor) concatenated in rank order: the global batch's, on every rank."""
    if world() == 1:
        return x
    parts = gather(x.cpu() if torch.is_tensor(x) else x)
    return torch.cat(parts).to(x.device) if torch.is_tensor(x) else [v for part in parts for v in part]
