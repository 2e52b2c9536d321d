"""More than one process (dist.py), on the CPU with gloo, as torchrun would start them (RANK, WORLD_SIZE,
MASTER_ADDR, MASTER_PORT in each one's environment): 2 processes x half the batch take the same training
step as one process with the whole batch (pretrain and SFT), the same GRPO update as the one written out
by hand (groups never split), the same evaluation table; a rank killed mid-run ends the other in one line
with nothing half-written."""
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
import torch.multiprocessing as mp

import dist
import pretrain
import rl
from checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from data.mathgen import make_problems
from data.tokenizer import load_tokenizer
from eval import evaluate
from model import GPT, GPTConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow   # 2 processes start for the equivalence tests, 2 for each rank-failure test


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_env(rank, world, port):
    return {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}


def _rank_main(rank, port, fn, args):
    os.environ.update(rank_env(rank, 2, port))
    torch.set_num_threads(1)
    dist.init()
    fn(*args)


def two_ranks(fn, *args):
    """fn(*args) in 2 spawned processes joined by dist.init (gloo); each writes what it found to a file."""
    mp.start_processes(_rank_main, (free_port(), fn, args), nprocs=2, start_method="spawn")

# ----------------------------------------------------------------------------- one training step


def tiny_model(vocab=1024, max_seq_len=64):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=vocab, n_layer=1, n_head=2, n_kv_head=1, n_embd=32, max_seq_len=max_seq_len,
                         window=16))


def step_args(out):
    ap = pretrain.ArgumentParser("")
    pretrain.add_train_args(ap)
    args = ap.parse_args(["--out", out, "--device", "cpu", "--steps", "1", "--batch-size", "4", "--lr", "1",
                          "--warmup", "0", "--save-every", "0", "--eval-every", "1"])
    return pretrain.check_train_args(args)


def step_data():
    """Pretraining rows (every token in the loss) and SFT-like ones (a prompt out of the loss, of another
    length in each row: a rank's token mean is not the batch's)."""
    stream = pretrain.token_stream(load_tokenizer(), make_problems(8, seed=5))
    x, y, m = (t[:4] for t in pretrain.rows_of(stream, 64))
    sft_mask = torch.arange(64)[None, :] >= torch.tensor([[4], [50], [20], [60]])
    return {"pretrain": (x, y, m), "sft": (x, y, sft_mask)}


def train_step(folder):
    """One step of pretrain.train on each stage's batch of 4 rows (held-out loss on 2 batches of 2), with
    plain SGD: the weights move by -lr x the clipped gradient (AdamW's first step, about lr x sign(g),
    would magnify rounding in gradients near its eps into differences of lr)."""
    adamw = torch.optim.AdamW
    torch.optim.AdamW = lambda groups, lr, **kw: torch.optim.SGD(groups, lr=lr)
    try:
        for stage, (x, y, m) in step_data().items():
            args = step_args(os.path.join(folder, f"{stage}.pt"))
            val = [(x.flip(0)[:2], y.flip(0)[:2], m.flip(0)[:2]), (x[:2], y[:2], m[:2])]
            pretrain.train(tiny_model(), lambda step: (x, y, m), val, args, {"stage": stage})
    finally:
        torch.optim.AdamW = adamw


def test_one_training_step_on_two_ranks_equals_one_process(two_rank_runs, tmp_path):
    """2 processes x 2 rows give the weights, the logged loss and the held-out loss of 1 process x 4 rows."""
    train_step(str(tmp_path / "one"))
    folders = {"one": str(tmp_path / "one"), "two": os.path.join(two_rank_runs, "train")}
    for stage in ("pretrain", "sft"):
        one, two = (read_checkpoint(os.path.join(folders[n], f"{stage}.pt"))["model"] for n in ("one", "two"))
        start = tiny_model().state_dict()
        for k in one:
            assert torch.allclose(one[k], two[k], atol=1e-6, rtol=0), (stage, k)
            assert not torch.equal(one[k], start[k]) or k.startswith("rope"), (stage, k)   # a step was taken
        rows = [json.loads(open(os.path.join(folders[n], f"{stage}.jsonl")).readline()) for n in ("one", "two")]
        assert rows[0]["loss"] == pytest.approx(rows[1]["loss"], abs=2e-5)
        assert rows[0]["val_loss"] == pytest.approx(rows[1]["val_loss"], abs=2e-5)
    assert not os.path.exists(os.path.join(folders["two"], "pretrain.pt.lock"))

# ----------------------------------------------------------------------------- one GRPO update


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    enc = load_tokenizer()
    path = str(tmp_path_factory.mktemp("ckpt") / "tiny.pt")
    save_checkpoint(path, tiny_model(enc.n_vocab, 256), stage="sft", data={"window": 16}, history=[{"stage": "sft"}])
    return path


# 4 problems x G = 2: lengths differ between the ranks' halves, so a rank's token mean is not the batch's
COMPS = [list(range(100 + i, 100 + i + n)) for i, n in enumerate((12, 20, 5, 16, 3, 9, 22, 7))]
REWARDS = [1, 0, 0, 0, 0, 1, 1, 1]
LR = 0.5


def grpo_update(folder, loss_type):
    """One step of rl.py's loop on COMPS and REWARDS (rollout and judge replaced), plain SGD; each rank
    notes the prompts it was given."""
    seen = []

    def fake_rollout(model, prompts, *a, **kw):
        first = dist.rank() * len(prompts)       # this rank's rows of the step's rollouts
        seen.extend(prompts)
        return COMPS[first:first + len(prompts)], [[0.0] * len(c) for c in COMPS[first:first + len(prompts)]]
    judged = iter(REWARDS[dist.rank() * 4:])
    rl.rollout = fake_rollout
    rl.judge = lambda enc, c, answer: (bool(next(judged)), True, "")
    rl.torch.optim.AdamW = lambda params, lr, **kw: torch.optim.SGD(params, lr=lr)
    rl.main(["--init", os.path.join(folder, "..", "tiny.pt"), "--out", os.path.join(folder, "rl.pt"),
             "--steps", "1", "--device", "cpu", "--eval-every", "0", "--warmup-steps", "1", "--max-new-tokens", "24",
             "--group-size", "2", "--prompts-per-step", "4", "--lr", str(LR), "--grad-clip", "1e9",
             "--loss-type", loss_type, "--micro-batch-tokens", "64", "--pad-multiple", "8"])
    torch.save(seen, os.path.join(folder, f"seen{dist.rank()}.pt"))


def completion_logprobs(model, prompt, completion):
    ids = torch.tensor([prompt + completion])
    logp = torch.log_softmax(model(ids[:, :-1]).float(), dim=-1)[0, len(prompt) - 1:]
    return logp.gather(1, torch.tensor(completion)[:, None])[:, 0]


@pytest.mark.parametrize("loss_type", ["dapo", "grpo"])
def test_one_grpo_update_on_two_ranks_equals_the_update_by_hand(tiny_ckpt, two_rank_runs, loss_type):
    """Each rank gets whole groups (2 of the 4), and the update is -lr x the gradient of the GRPO loss of
    the whole batch written out by hand: the token mean over all 8 completions (dapo), or the mean of the
    sequences' token means (grpo); the logged reward is the whole batch's."""
    folder = os.path.join(two_rank_runs, f"grpo_{loss_type}")
    seen = [torch.load(os.path.join(folder, f"seen{r}.pt")) for r in (0, 1)]
    assert [len(s) for s in seen] == [4, 4]
    for s in seen:   # whole groups: G = 2 copies of a prompt, side by side
        assert s[0] == s[1] and s[2] == s[3] and s[1] != s[2]
    prompts = seen[0] + seen[1]
    r = torch.tensor(REWARDS, dtype=torch.float32).view(4, 2)
    adv = ((r - r.mean(1, keepdim=True)) / (r.std(1, unbiased=False, keepdim=True) + 1e-6)).view(-1)
    ref = load_checkpoint(tiny_ckpt)[0]
    terms = [-a * completion_logprobs(ref, p, c) for a, p, c in zip(adv, prompts, COMPS)]
    loss = {"dapo": sum(t.sum() for t in terms) / sum(map(len, COMPS)),
            "grpo": sum(t.mean() for t in terms) / len(terms)}[loss_type]
    loss.backward()
    model = load_checkpoint(os.path.join(folder, "rl.pt"))[0]
    for p, pr in zip(model.parameters(), ref.parameters()):
        assert torch.allclose(pr.detach() - LR * pr.grad, p, atol=1e-6)
    row = [json.loads(line) for line in open(os.path.join(folder, "rl.jsonl"))][-1]
    assert row["reward"] == pytest.approx(sum(REWARDS) / 8) and row["trained_seqs"] == 8
    assert row["len_mean"] == pytest.approx(sum(map(len, COMPS)) / 8)

# ----------------------------------------------------------------------------- evaluation


def sharded_eval(folder, ckpt):
    model = load_checkpoint(ckpt)[0]
    res = evaluate(model, load_tokenizer(), make_problems(7, split="test", seed=3), k=3, batch_size=4,
                   max_new_tokens=24, progress=False, traces=True)
    torch.save(res, os.path.join(folder, f"eval{dist.rank()}.pt"))


@pytest.fixture(scope="module")
def two_rank_runs(tiny_ckpt):
    """The two-process halves of the equivalence tests (a training step, both GRPO updates, the sharded
    evaluation) in one pair of processes, each pair costing ~3 s to start; each job writes to its own folder."""
    root = os.path.dirname(tiny_ckpt)
    for sub in ("train", "grpo_dapo", "grpo_grpo", "eval"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    two_ranks(two_rank_jobs, root, tiny_ckpt)
    return root


def two_rank_jobs(root, ckpt):
    train_step(os.path.join(root, "train"))
    for loss_type in ("dapo", "grpo"):
        grpo_update(os.path.join(root, f"grpo_{loss_type}"), loss_type)
    sharded_eval(os.path.join(root, "eval"), ckpt)


def test_sharded_evaluation_gives_the_one_process_table(tiny_ckpt, two_rank_runs):
    """7 problems in batches of 4 (greedy: 2 batches; k = 3 samples: 6 batches) dealt to 2 ranks: every
    number and every trace as on one process, on both ranks (timing aside)."""
    model = load_checkpoint(tiny_ckpt)[0]
    one = evaluate(model, load_tokenizer(), make_problems(7, split="test", seed=3), k=3, batch_size=4,
                   max_new_tokens=24, progress=False, traces=True)
    assert len({t["text"] for t in one["traces"]}) > 1   # the traces differ: a dealt batch out of place shows
    for r in (0, 1):
        two = torch.load(os.path.join(two_rank_runs, "eval", f"eval{r}.pt"))
        assert {k: v for k, v in two.items() if k != "tok_per_s"} == {k: v for k, v in one.items()
                                                                      if k != "tok_per_s"}

# ----------------------------------------------------------------------------- a rank killed


def test_a_killed_rank_ends_the_other_in_one_line(tmp_path):
    """pretrain.py on 2 ranks, saving at every step; rank 1 is killed (SIGKILL) mid-run: rank 0 exits
    non-zero with one line on stderr, no traceback, no temporary file, and its checkpoint whole."""
    out = str(tmp_path / "base.pt")
    port = free_port()
    cmd = [sys.executable, "pretrain.py", "--preset", "smoke", "--steps", "100000", "--save-every", "1",
           "--out", out, "--device", "cpu"]
    ranks = [subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **rank_env(r, 2, port), "TQDM_DISABLE": "1"},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    try:
        deadline = time.time() + 60
        while not (os.path.exists(out) and os.path.getsize(str(tmp_path / "base.jsonl"))) and time.time() < deadline:
            time.sleep(0.1)
        assert os.path.exists(out), ranks[0].communicate(timeout=5)
        ranks[1].send_signal(signal.SIGKILL)
        _, err = ranks[0].communicate(timeout=60)
    finally:
        for p in ranks:
            p.kill()
    assert ranks[0].returncode == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: rank 0: another rank stopped"), err
    assert not glob.glob(str(tmp_path / "*.tmp*")) and not os.path.exists(out + ".lock")
    assert read_checkpoint(out)["meta"]["step"] >= 1   # whole: readable, a step saved


def test_sigterm_to_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    """pretrain.py on 2 ranks; SIGTERM reaches rank 1 alone (a scheduler's signal can reach the ranks at
    different steps): both stop at the same step boundary, exit 143, and rank 0 saves a resumable checkpoint
    at that step. Were each rank to decide alone, rank 0 would go on into a collective and fail (exit 1)."""
    out = str(tmp_path / "base.pt")
    port = free_port()
    cmd = [sys.executable, "pretrain.py", "--preset", "smoke", "--steps", "100000", "--save-every", "1000",
           "--eval-every", "0", "--out", out, "--device", "cpu"]
    ranks = [subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **rank_env(r, 2, port), "TQDM_DISABLE": "1"},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    try:
        metrics = str(tmp_path / "base.jsonl")
        deadline = time.time() + 60
        while not (os.path.exists(metrics) and os.path.getsize(metrics)) and time.time() < deadline:
            time.sleep(0.1)
        ranks[1].send_signal(signal.SIGTERM)
        _, err = ranks[0].communicate(timeout=60)
        ranks[1].communicate(timeout=60)
    finally:
        for p in ranks:
            p.kill()
    assert [p.returncode for p in ranks] == [143, 143], err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stopped by SIGTERM after step "), err
    step = int(lines[0].split("after step ")[1].split(":")[0])
    meta = read_checkpoint(out)["meta"]
    assert meta["step"] == step and meta["train_state"]["step"] == step   # resumable, at the step named
    assert not glob.glob(str(tmp_path / "*.tmp*")) and not os.path.exists(out + ".lock")
