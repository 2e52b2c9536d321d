"""GRPO: the pure functions against hand-computed values, sampler/trainer agreement, the CLI."""
import json
import math
import os

import pytest
import torch

import rl
from checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from conftest import run_main
from data.mathgen import STYLE_MARKERS
from data.tokenizer import load_tokenizer
from engine import generate
from eval import judge
from model import GPT, GPTConfig
from plot import line_plot_svg
from rl import group_advantages, make_batch, microbatches, policy_loss, sample_metrics, token_logprobs


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


def run_rl(*argv):
    """`python rl.py argv`, run in this process (conftest.run_main)."""
    return run_main("rl", argv)


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

# ----------------------------------------------------------------------------- one update of the loop


def update_once(ckpt, out, comps, rewards, *argv, sgd=False):
    """One step of rl.py's loop on the given completions and 0/1 rewards (rollout and judge replaced):
    the saved model, the step's metrics row and the prompts it sampled for. sgd: plain SGD instead
    of AdamW, so the weights move by exactly -lr x the clipped gradient."""
    seen, judged = [], iter(rewards)

    def fake_rollout(model, prompts, *a, **kw):
        seen.extend(prompts)
        return comps, [[0.0] * len(c) for c in comps]
    real = rl.rollout, rl.judge, rl.torch.optim.AdamW
    try:
        rl.rollout = fake_rollout
        rl.judge = lambda enc, c, answer: (bool(next(judged)), True, "")
        if sgd:
            rl.torch.optim.AdamW = lambda params, lr, **kw: torch.optim.SGD(params, lr=lr)
        rl.main(["--init", ckpt, "--out", out, "--steps", "1", "--device", "cpu", "--eval-every", "0",
                 "--warmup-steps", "1", "--max-new-tokens", "24", *argv])
    finally:
        rl.rollout, rl.judge, rl.torch.optim.AdamW = real
    return load_checkpoint(out)[0], rows_of(os.path.splitext(out)[0] + ".jsonl")[-1], seen


def completion_logprobs(model, prompt, completion):
    """log p of each completion token, one unpadded sequence at a time (no make_batch, no mask)."""
    ids = torch.tensor([prompt + completion])
    logp = torch.log_softmax(model(ids[:, :-1]).float(), dim=-1)[0, len(prompt) - 1:]
    return logp.gather(1, torch.tensor(completion)[:, None])[:, 0]


@pytest.mark.parametrize("loss_type", ["dapo", "grpo", "dr_grpo"])
def test_one_update_equals_a_hand_written_grpo_update(tiny_ckpt, tmp_path, loss_type):
    """One step of the loop on given rollouts, with many micro-batches or one, moves the weights by
    exactly -lr x the gradient of the GRPO loss written out by hand: advantages (r - mean) / (std + eps)
    per group, and on-policy (ratio 1) the loss -sum_i sum_t A_i log p(o_it) over N tokens (dapo, the
    default), the mean over sequences of each one's token mean (grpo), or over B x max_new_tokens (dr_grpo)."""
    torch.manual_seed(0)
    comps = [torch.randint(0, 1000, (n,)).tolist() for n in (12, 20, 5, 16)]
    rewards = [1, 0, 0, 0]          # two groups of 2: one with reward variance, one without
    lr = 0.5
    models = []
    for mbt in ("8", "100000"):     # every sequence its own micro-batch, then all in one
        model, row, prompts = update_once(tiny_ckpt, str(tmp_path / f"{mbt}.pt"), comps, rewards,
                                          "--group-size", "2", "--prompts-per-step", "2", "--lr", str(lr),
                                          "--grad-clip", "1e9", "--loss-type", loss_type,
                                          "--micro-batch-tokens", mbt, "--pad-multiple", "8", sgd=True)
        models.append(model)
        assert row["kl_old"] == 0 and row["clip_low"] == 0 and row["ratio"] == pytest.approx(1)
    r = torch.tensor(rewards, dtype=torch.float32).view(2, 2)
    adv = ((r - r.mean(1, keepdim=True)) / (r.std(1, unbiased=False, keepdim=True) + 1e-6)).view(-1)
    assert adv.tolist() == pytest.approx([1, -1, 0, 0], abs=1e-5)
    ref = load_checkpoint(tiny_ckpt)[0]
    terms = [-a * completion_logprobs(ref, p, c) for a, p, c in zip(adv, prompts, comps)]
    loss = {"dapo": sum(t.sum() for t in terms) / sum(map(len, comps)),
            "grpo": sum(t.mean() for t in terms) / len(terms),
            "dr_grpo": sum(t.sum() for t in terms) / (len(terms) * 24)}[loss_type]
    loss.backward()
    moved = 0
    for p0, p1, pr in zip(models[0].parameters(), models[1].parameters(), ref.parameters()):
        assert torch.allclose(p0, p1, atol=1e-6)
        assert torch.allclose(pr.detach() - lr * pr.grad, p0, atol=1e-6)
        moved += int(not torch.equal(pr, p0))
    assert moved > 0


def test_more_passes_move_towards_positive_advantage(tiny_ckpt, tmp_path):
    """--num-iterations 3: three steps on one batch raise the log-prob of the rewarded sample and lower
    the other's; the ratio leaves 1 (kl_old > 0) from the second pass on."""
    comps = [[10, 11, 12, 13], [20, 21, 22, 23]]
    model, row, prompts = update_once(tiny_ckpt, str(tmp_path / "mu3.pt"), comps, [1, 0], "--group-size", "2",
                                      "--prompts-per-step", "1", "--num-iterations", "3", "--lr", "1e-2")
    before = load_checkpoint(tiny_ckpt)[0]
    with torch.no_grad():
        up = [completion_logprobs(m, prompts[0], comps[0]).sum() for m in (before, model)]
        down = [completion_logprobs(m, prompts[1], comps[1]).sum() for m in (before, model)]
    assert up[1] > up[0] and down[1] < down[0]
    assert row["kl_old"] > 0 and row["grad_norm"] > 0 and row["entropy"] > 0

