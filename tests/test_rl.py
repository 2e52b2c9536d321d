"""GRPO: the pure functions against hand-computed values, sampler/trainer agreement, the CLI."""
import json
import math
import os
import subprocess
import sys

import pytest
import torch

import rl
from checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from data.mathgen import STYLE_MARKERS
from data.tokenizer import load_tokenizer
from engine import generate
from eval import judge
from model import GPT, GPTConfig
from plot import line_plot_svg
from rl import (get_args, group_advantages, make_batch, microbatches, optimize, sample_metrics,
                policy_loss, token_logprobs)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models are latency-bound: one thread avoids thread-pool contention on a busy CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny(window=None, n_sink=0, vocab=64, seed=0):
    torch.manual_seed(seed)
    cfg = GPTConfig(vocab_size=vocab, n_layer=2, n_head=2, n_kv_head=1, n_embd=32, max_seq_len=256,
                    window=window, n_sink=n_sink)
    return GPT(cfg)


def loss_and_grad(logp, old, adv, mask, **kw):
    logp = torch.tensor(logp, dtype=torch.float64, requires_grad=True)
    loss, stats = policy_loss(logp, torch.tensor(old, dtype=torch.float64), torch.tensor(adv, dtype=torch.float64),
                              torch.tensor(mask), **kw)
    loss.backward()
    return loss.item(), logp.grad, stats

# ----------------------------------------------------------------------------- advantages


def test_group_advantages_by_hand():
    adv = group_advantages([1, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0], 4)
    s = math.sqrt(0.25 * 0.75)   # population std of (1, 0, 0, 0)
    expect = [0.75 / s, -0.25 / s, -0.25 / s, -0.25 / s] + [0.0] * 8
    assert torch.allclose(adv, torch.tensor(expect), atol=1e-4)
    assert torch.equal(adv[4:], torch.zeros(8))          # constant groups: exactly zero, no NaN
    none = group_advantages([1, 0, 0, 0, 1, 1, 1, 1], 4, scale="none")
    assert torch.allclose(none, torch.tensor([0.75, -0.25, -0.25, -0.25, 0, 0, 0, 0]))
    assert torch.isfinite(group_advantages([0.0, 0.0], 2)).all()
    assert torch.allclose(group_advantages([1.0, 0.0], 2), torch.tensor([1.0, -1.0]), atol=1e-4)

# ----------------------------------------------------------------------------- the loss


def test_zero_advantage_zero_gradient():
    torch.manual_seed(0)
    logp, old = torch.randn(3, 5).tolist(), torch.randn(3, 5).tolist()
    for lt in ("grpo", "dapo", "dr_grpo"):
        loss, grad, _ = loss_and_grad(logp, old, [0.0, 0.0, 0.0], [[True] * 5] * 3, loss_type=lt)
        assert loss == 0 and torch.count_nonzero(grad) == 0


def test_masked_tokens_get_no_gradient():
    mask = [[True, True, False, False], [True, False, False, False]]
    # masked positions hold garbage (a huge log-ratio that would overflow exp) on purpose
    logp = [[-1.0, -2.0, 50.0, -3.0], [-0.5, 90.0, -1.0, -1.0]]
    old = [[-1.1, -1.9, -60.0, -3.0], [-0.4, -90.0, -1.0, -1.0]]
    for lt in ("grpo", "dapo", "dr_grpo"):
        loss, grad, _ = loss_and_grad(logp, old, [1.0, -1.0], mask, loss_type=lt)
        assert math.isfinite(loss) and torch.isfinite(grad).all()
        assert torch.count_nonzero(grad[~torch.tensor(mask)]) == 0
        assert torch.count_nonzero(grad[torch.tensor(mask)]) == 3


@pytest.mark.parametrize("ratio, adv, clipped, loss", [
    (1.27, 1.0, False, -1.27),    # inside (1 - 0.2, 1 + 0.28): plain ratio * A
    (1.29, 1.0, True, -1.28),     # above 1 + clip_high with A > 0: clipped, no gradient
    (0.79, 1.0, False, -0.79),    # below 1 - clip_low with A > 0: min picks the unclipped term
    (0.81, -1.0, False, 0.81),    # inside, A < 0
    (0.79, -1.0, True, 0.80),     # below 1 - clip_low with A < 0: clipped, no gradient
    (1.29, -1.0, False, 1.29),    # above 1 + clip_high with A < 0: the unclipped term (pessimistic)
    (1.29, 2.0, True, -2.56),     # the value scales with A
])
def test_clipping_bites_exactly_where_it_should(ratio, adv, clipped, loss):
    old = -1.0
    got, grad, stats = loss_and_grad([[old + math.log(ratio)]], [[old]], [adv], [[True]])
    assert got == pytest.approx(loss, abs=1e-9)
    if clipped:
        assert grad.item() == 0
    else:
        assert grad.item() == pytest.approx(-ratio * adv, rel=1e-9)   # d(-rho A)/d logp = -rho A
    assert stats["clip_high"].item() == float(clipped and adv > 0)
    assert stats["clip_low"].item() == float(clipped and adv < 0)


def test_k3_nonnegative_and_zero_at_equality():
    torch.manual_seed(0)
    logp, ref = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    mask, adv = torch.ones(4, 6, dtype=torch.bool), torch.zeros(4, dtype=torch.float64)
    loss, stats = policy_loss(logp, logp, adv, mask, ref_logp=ref, beta=0.5)
    d = ref - logp
    k3 = torch.exp(d) - d - 1
    assert (k3 >= 0).all() and loss.item() == pytest.approx(0.5 * k3.mean().item(), rel=1e-9)
    assert stats["kl_ref"].item() == pytest.approx(k3.mean().item(), rel=1e-9)
    loss, stats = policy_loss(logp, logp, adv, mask, ref_logp=logp.clone(), beta=0.5)
    assert loss.item() == 0 and stats["kl_ref"].item() == 0 and stats["kl_old"].item() == 0
    # k3 to the old policy is >= 0 too, and 0 when nothing moved
    _, stats = policy_loss(logp, ref, adv, mask)
    assert stats["kl_old"].item() > 0


def test_aggregations_by_hand():
    logp = [[-1.0, -2.0, -0.5], [-1.5, -1.0, -3.0]]
    old = [[-1.1, -2.0, -0.5], [-1.5, -1.2, -3.0]]
    mask = [[True, True, False], [True, True, True]]
    adv = [1.0, -0.5]
    tok = []   # per-token losses written out: -min(rho A, clip(rho) A)
    for r in range(2):
        row = []
        for t in range(3):
            rho = math.exp(logp[r][t] - old[r][t])
            row.append(-min(rho * adv[r], min(max(rho, 0.8), 1.28) * adv[r]) if mask[r][t] else None)
        tok.append(row)
    valid = [x for row in tok for x in row if x is not None]
    expect = {"dapo": sum(valid) / 5,
              "grpo": ((tok[0][0] + tok[0][1]) / 2 + sum(tok[1]) / 3) / 2,
              "dr_grpo": sum(valid) / (2 * 3)}
    for lt, value in expect.items():
        assert loss_and_grad(logp, old, adv, mask, loss_type=lt)[0] == pytest.approx(value, rel=1e-12)


def test_microbatches_cover_every_row_once():
    lengths = [300, 10, 120, 700, 64, 65, 500]
    chunks = microbatches(lengths, max_tokens=1024, pad_multiple=64)
    assert sorted(i for c in chunks for i in c) == list(range(len(lengths)))
    for c in chunks:
        T = -(-max(lengths[i] for i in c) // 64) * 64
        assert len(c) == 1 or len(c) * T <= 1024

# ----------------------------------------------------------------------------- on-policy: sampler == trainer


@pytest.mark.parametrize("window, n_sink", [(None, 0), (8, 0), (8, 2)])
def test_sampler_and_trainer_agree(window, n_sink):
    """With mu = 1 the first pass is on-policy: the trainer's log-prob of every sampled token equals
    the sampler's (ratio 1 within 1e-5), for full and sliding models, completions >> window."""
    model = tiny(window, n_sink)
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8, 9, 10, 11, 12, 13], [7] * 5]
    for temperature in (1.0, 0.7):
        comps, sampler = generate(model, prompts, 40, temperature=temperature, eos_id=5, seed=1)
        idx, mask = make_batch(prompts, comps, pad_multiple=16, max_seq_len=256)  # padding must not matter
        with torch.no_grad():
            logp, _ = token_logprobs(model, idx, temperature)
        old = torch.zeros_like(logp)
        for r, (p, s) in enumerate(zip(prompts, sampler)):
            old[r, len(p) - 1:len(p) - 1 + len(s)] = torch.tensor(s)
        assert int(mask.sum()) == sum(map(len, comps)) and max(map(len, comps)) > 4 * (window or 8)
        ratio = torch.exp(logp - old)[mask]
        assert (ratio - 1).abs().max().item() < 1e-5


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo"])
def test_micro_batching_equals_one_batch(loss_type):
    """Accumulating micro-batches (weighted by loss_weight) gives the whole batch's gradient."""
    torch.manual_seed(0)
    prompts = [[1, 2, 3, 4], [5, 6], [7, 8, 9], [10] * 7]
    comps = [torch.randint(0, 64, (n,)).tolist() for n in (12, 30, 5, 20)]
    adv = torch.tensor([1.0, -0.5, 0.25, -1.0])
    args = get_args(["--init", "x", "--loss-type", loss_type, "--grad-clip", "1e9", "--max-new-tokens", "40",
                     "--pad-multiple", "8", "--micro-batch-tokens", "16"])
    models = []
    for mbt in (16, 10_000):          # many micro-batches vs one
        model = tiny(8)
        model.lm_head.weight.data.normal_(0, 0.5)  # a sharper policy: larger, more varied gradients
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        args.micro_batch_tokens = mbt
        stats = optimize(model, opt, prompts, comps, adv, args)
        models.append(model)
        assert stats["kl_old"] == 0 and stats["clip_low"] == 0 and stats["ratio"] == pytest.approx(1)
    # one batch, by hand: the policy_loss of the whole padded batch, one SGD step of lr 1
    ref = tiny(8)
    ref.lm_head.weight.data.normal_(0, 0.5)
    idx, mask = make_batch(prompts, comps)
    logp, _ = token_logprobs(ref, idx)
    loss, _ = policy_loss(logp, logp.detach(), adv, mask, loss_type=loss_type)
    if loss_type == "dr_grpo":    # constant normaliser: the budget, not the padded width
        loss = loss * mask.shape[1] / args.max_new_tokens
    loss.backward()
    for p0, p1, pr in zip(models[0].parameters(), models[1].parameters(), ref.parameters()):
        assert torch.allclose(p0, p1, atol=1e-6)
        assert torch.allclose(pr.detach() - pr.grad, p0, atol=1e-6)


def test_optimize_moves_towards_positive_advantage():
    torch.manual_seed(0)
    model = tiny(8)
    prompts, comps = [[1, 2, 3]] * 2, [[10, 11, 12, 13], [20, 21, 22, 23]]
    args = get_args(["--init", "x", "--num-iterations", "3", "--lr", "1e-2"])
    idx, mask = make_batch(prompts, comps)
    before = token_logprobs(model, idx)[0][mask].view(2, -1).sum(1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    stats = optimize(model, opt, prompts, comps, torch.tensor([1.0, -1.0]), args, lr=1e-2)
    after = token_logprobs(model, idx)[0][mask].view(2, -1).sum(1)
    assert after[0] > before[0] and after[1] < before[1]
    assert stats["kl_old"] > 0 and stats["grad_norm"] > 0 and stats["entropy"] > 0

# ----------------------------------------------------------------------------- plot


def test_line_plot_svg(tmp_path):
    p = line_plot_svg(str(tmp_path / "a.svg"), {"a<b": [(0, 1), (1, float("nan")), (2, 3)], "flat": [(0, 2), (2, 2)],
                                                "one": [(1, 5)], "empty": []}, "t & t", "step", "y")
    text = open(p).read()
    assert text.startswith("<svg") and "polyline" in text and "a&lt;b" in text and "nan" not in text
    p = line_plot_svg(str(tmp_path / "b.svg"), {"top": {"x": [(0, 0), (1, 1)]}, "bottom": {"y": [(0, 5), (3, 5)]}},
                      "panels", "step", {"top": "r"})
    assert open(p).read().count("<rect") == 3   # background + two panels

# ----------------------------------------------------------------------------- the script


def run_rl(*argv, cwd=ROOT):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, os.path.join(ROOT, "rl.py"), *argv], capture_output=True, text=True,
                          cwd=cwd, timeout=120, env=env)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """A tiny random SWA model whose end token is likely, so completions stop at varied lengths and
    the format reward varies within groups (a random model never solves a problem)."""
    enc = load_tokenizer()
    model = tiny(window=8, vocab=enc.n_vocab)
    with torch.no_grad():
        u = torch.randn(32)
        model.tok_emb.weight += 0.02 * u          # a shared direction in every hidden state...
        model.lm_head.weight[enc.eot_token] = 0.9 * u / u.norm()   # ...that the end token reads
    path = str(tmp_path_factory.mktemp("ckpt") / "tiny.pt")
    save_checkpoint(path, model, stage="sft", data={"window_friendly_frac": 0.5, "window": 8},
                    history=[{"stage": "sft"}])
    return path


CLI = ["--device", "cpu", "--group-size", "4", "--prompts-per-step", "2", "--max-new-tokens", "24",
       "--eval-every", "2", "--eval-n", "4", "--format-reward", "1", "--lr", "1e-3", "--warmup-steps", "1"]


def rows_of(path):
    return [json.loads(l) for l in open(path)]


def test_cli_runs_and_resumes_exactly(tiny_ckpt, tmp_path):
    a, b = str(tmp_path / "a.pt"), str(tmp_path / "b.pt")
    r = run_rl("--init", tiny_ckpt, "--out", a, "--steps", "3", *CLI)
    assert r.returncode == 0, r.stderr
    rows = rows_of(str(tmp_path / "a.jsonl"))
    train = [x for x in rows if "reward" in x]
    assert [x["step"] for x in train] == [1, 2, 3]
    assert [x["step"] for x in rows if "eval_acc" in x] == [0, 2, 3]
    for key in ("reward", "accuracy", "zero_std_frac", "len_mean", "len_max", "trunc_frac", "clip_low", "clip_high",
                "kl_old", "entropy", "grad_norm", "rollout_tok_s", "train_tok_s", "step_time", "wf_frac", "sampler_gap"):
        assert key in train[0], key
    assert any(x["zero_std_frac"] < 1 for x in train), "the test needs some reward variance"
    assert max(x["sampler_gap"] for x in train) < 1e-4
    assert os.path.getsize(str(tmp_path / "a.svg")) > 0
    model_a, meta = load_checkpoint(a)
    assert meta["stage"] == "rl" and meta["step"] == 3 and meta["train_state"] is None
    assert meta["history"][-1]["init"] == tiny_ckpt and [h["stage"] for h in meta["history"]] == ["sft", "rl"]
    assert meta["data"]["window_friendly_frac"] == 0.5 and meta["data"]["window"] == 8   # the record flows on
    assert model_a.attn_impl == "auto" and "attn_impl" not in read_checkpoint(a)["config"]  # trained tiled, not saved
    # the same run in two pieces: interrupted after its step-2 checkpoint, then --resume to 3
    calls, real = [], rl.make_problems

    def dies_at_step_3(*args, **kw):
        calls.append(1)
        if len(calls) == 4:   # the first call is the check that step 1's prompts fit, before any step
            raise KeyboardInterrupt
        return real(*args, **kw)
    old_threads = torch.get_num_threads()
    try:
        rl.make_problems = dies_at_step_3
        with pytest.raises(KeyboardInterrupt):
            rl.main(["--init", tiny_ckpt, "--out", b, "--steps", "3", *CLI, "--save-every", "1", "--eval-every", "0"])
    finally:
        rl.make_problems = real
        torch.set_num_threads(old_threads)
    assert read_checkpoint(b)["meta"]["train_state"]["step"] == 2
    r = run_rl("--init", tiny_ckpt, "--out", b, "--steps", "3", "--resume", *CLI)
    assert r.returncode == 0, r.stderr
    model_b, meta_b = load_checkpoint(b)
    assert meta_b["step"] == 3
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        assert torch.equal(pa, pb)
    moved = load_checkpoint(tiny_ckpt)[0]
    assert any(not torch.equal(p, q) for p, q in zip(moved.parameters(), model_a.parameters()))
    rows_b = rows_of(str(tmp_path / "b.jsonl"))
    assert [x["step"] for x in rows_b if "reward" in x] == [1, 2, 3]
    same = lambda x: {k: v for k, v in x.items() if not k.endswith(("_s", "time"))}
    assert same([x for x in rows_b if "reward" in x][-1]) == same(train[-1])
    # a finished run: --resume does nothing
    r = run_rl("--init", tiny_ckpt, "--out", b, "--steps", "3", "--resume", *CLI)
    assert r.returncode == 0 and "nothing to do" in r.stdout


def test_resume_without_a_checkpoint_starts_fresh(tiny_ckpt, tmp_path):
    out = str(tmp_path / "fresh.pt")
    r = run_rl("--init", tiny_ckpt, "--out", out, "--steps", "1", "--resume", *CLI)
    assert r.returncode == 0, r.stderr
    assert load_checkpoint(out)[1]["step"] == 1


@pytest.mark.parametrize("argv, message", [
    (["--init", "/nonexistent/ckpt.pt"], "not found"),
    (["--group-size", "1"], "--group-size"),
    (["--prompts-per-step", "0"], "--prompts-per-step"),
    (["--lr", "0"], "--lr"),
])
def test_bad_input_one_line(tiny_ckpt, argv, message, capsys):
    init = [] if "--init" in argv else ["--init", tiny_ckpt]
    with pytest.raises(SystemExit) as e:
        rl.main([*init, *argv, "--device", "cpu"])
    err = capsys.readouterr().err
    assert e.value.code != 0 and message in err and len(err.strip().splitlines()) == 1


def test_corrupt_init_one_line(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    r = run_rl("--init", str(bad), "--device", "cpu")
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_judge_is_the_one_rule():
    """RL rewards with eval's judge: stopped with the end token and the right answer, nothing else."""
    assert rl.judge is judge
    enc = load_tokenizer()
    eot = enc.eot_token
    ok = enc.encode_ordinary("5 + 7 = 12\n#### 12")
    assert judge(enc, ok + [eot], "12")[:2] == (True, True)
    assert judge(enc, ok, "12")[:2] == (False, False)             # never stopped: wrong
    assert judge(enc, ok + [eot], "13")[:2] == (False, True)


def test_sample_metrics_counted_by_hand():
    wf, sa = STYLE_MARKERS["wf"] + "\n...", STYLE_MARKERS["sa"] + "\n..."
    judged = [(True, True, wf), (False, True, wf), (True, True, wf), (False, False, "no style"),
              (True, True, sa), (False, True, sa), (False, True, sa), (False, True, sa)]
    rewards = torch.tensor([1.0, 0, 1, 0, 1, 0, 0, 0])
    m = sample_metrics(judged, rewards, G=4)
    assert m["accuracy"] == 3 / 8 and m["trunc_frac"] == 1 / 8 and m["zero_std_frac"] == 0.0
    assert m["wf_frac"] == 3 / 8 and m["acc_wf"] == 2 / 3 and m["acc_sa"] == 1 / 4
    only_wf = sample_metrics(judged[:4], rewards[:4], G=4)
    assert only_wf["acc_sa"] is None        # no sa-style sample: no accuracy to report, not 0 (as eval.py)
