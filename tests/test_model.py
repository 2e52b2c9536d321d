"""model.py against independent references: the dense mask path, a naive loop, full recomputation."""
import math
import pytest
import torch
import torch.nn.functional as F

import engine
import model as M
from checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from engine import generate, kv_cache_bytes
from model import GPT, GPTConfig

pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")


def naive_sliding_attention(q, k, v, window, n_sink):
    """A loop over queries: the window convention written out literally (the reference of
    references)."""
    B, H, T, D = q.shape
    G = H // k.shape[1]
    out = torch.zeros_like(q)
    for i in range(T):
        keys = [j for j in range(i + 1) if i - j < window or j < n_sink]
        kk, vv = k[:, :, keys].repeat_interleave(G, 1), v[:, :, keys].repeat_interleave(G, 1)
        w = torch.softmax(q[:, :, i:i + 1] @ kk.transpose(-1, -2) / math.sqrt(D), -1)
        out[:, :, i:i + 1] = w @ vv
    return out


def qkv(T, H=4, Hkv=2, D=8, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, h, T, D, generator=g, dtype=dtype) for h in (H, Hkv, Hkv)]


def rel_err(a, b):
    """Max error relative to the reference's scale (floored at 1: an all-zero gradient, as with W=1
    for q, is matched to 1e-5 absolute rather than to its own rounding noise)."""
    return ((a - b).abs().max() / b.abs().max().clamp_min(1.0)).item()


def test_dense_matches_naive_loop():
    for T, W, S in [(1, 1, 0), (9, 4, 0), (20, 4, 2), (13, 16, 4)]:
        q, k, v = qkv(T, dtype=torch.float64)
        assert rel_err(M.dense_attention(q, k, v, W, S), naive_sliding_attention(q, k, v, W, S)) < 1e-10


@pytest.mark.parametrize("W", [1, 4, 16, 64])
@pytest.mark.parametrize("S", [0, 4])
def test_tiled_and_flex_equal_dense(W, S):
    if S >= W:
        pytest.skip("sinks must be fewer than the window")
    for T in sorted({1, 7, max(W - 1, 1), W, W + 1, 3 * W + 5, 300}):
        q, k, v = qkv(T, seed=T)
        ref = M.dense_attention(q, k, v, W, S)
        assert rel_err(M.tiled_attention(q, k, v, W, S), ref) < 1e-5, (T, W, S)
        bm = M._flex_block_mask(T, W, S, "cpu")
        flex = M.flex_attention_fn("cpu")(q, k, v, block_mask=bm, enable_gqa=True)
        assert rel_err(flex, ref) < 1e-5, (T, W, S)


@pytest.mark.parametrize("T,W,S", [(1, 4, 0), (7, 4, 0), (16, 16, 4), (17, 16, 4), (69, 16, 0), (300, 64, 4),
                                   (50, 1, 0)])
def test_tiled_backward_equals_dense(T, W, S):
    grads = []
    for attn in (M.dense_attention, M.tiled_attention):
        q, k, v = (t.requires_grad_() for t in qkv(T, seed=1))
        out = attn(q, k, v, W, S)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads.append((q.grad, k.grad, v.grad))
    for g_tiled, g_dense in zip(grads[1], grads[0]):
        assert rel_err(g_tiled, g_dense) < 1e-5


def test_tiled_never_builds_a_TxT_tensor(monkeypatch):
    seen = []
    real_einsum = torch.einsum
    monkeypatch.setattr(torch, "einsum",
                        lambda eq, *ops: seen.append(real_einsum(eq, *ops).numel()) or real_einsum(eq, *ops))
    T, W = 1024, 16
    q, k, v = qkv(T, H=2, Hkv=2, D=4)
    M.tiled_attention(q, k, v, W, 2)
    assert max(seen) < 2 * 2 * T * T / 8   # every intermediate is O(T*W), far below B*H*T*T


def tiny(window=None, pattern="S", sinks=0, impl="tiled", n_layer=2, max_seq_len=512, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = GPTConfig(vocab_size=97, n_layer=n_layer, n_head=4, n_kv_head=2, n_embd=32, max_seq_len=max_seq_len,
                    window=window, layer_pattern=pattern, n_sink=sinks, **kw)
    model = GPT(cfg, attn_impl=impl).double().eval()
    with torch.no_grad():   # larger weights than the init gives: peaked logits, no near-ties in argmax
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
    return model


def same_weights(model, attn_impl="tiled", **changes):
    cfg = GPTConfig(**{**M.asdict(model.config), **changes})
    other = GPT(cfg, attn_impl).double().eval()
    other.load_state_dict(model.state_dict())
    return other


@pytest.mark.parametrize("pattern", ["S", "SF", "FS", "SSSF"])
@pytest.mark.parametrize("sinks", [0, 2])
def test_model_paths_agree_with_mixed_layer_patterns(pattern, sinks):
    model = tiny(window=8, pattern=pattern, sinks=sinks, impl="dense", n_layer=4)
    idx = torch.randint(0, 97, (2, 45))
    with torch.no_grad():   # FlexAttention has no backward on CPU
        ref = model(idx)
        for impl in ("tiled", "flex"):
            model.attn_impl = impl                      # a run-time choice: same model, another path
            assert rel_err(model(idx), ref) < 1e-5


@pytest.mark.parametrize("W,sinks", [(1, 0), (5, 0), (5, 2)])
def test_one_layer_window_measured_from_outside(W, sinks):
    model = tiny(window=W, sinks=sinks, n_layer=1)
    T = 24
    idx = torch.randint(0, 97, (1, T))
    base = model(idx)[0]
    for j in range(T):
        changed = idx.clone()
        changed[0, j] = (changed[0, j] + 1) % 97
        diff = (model(changed)[0] - base).abs().amax(-1) > 1e-9
        expect = torch.tensor([(0 <= i - j < W) or (j < sinks and j <= i) for i in range(T)])
        assert torch.equal(diff, expect), j


def test_receptive_field_of_L_layers():
    L, W, T = 3, 4, 30
    model = tiny(window=W, n_layer=L)
    idx = torch.randint(0, 97, (1, T))
    base = model(idx)[0, -1]
    reach = L * (W - 1) + 1
    for j in range(T):
        changed = idx.clone()
        changed[0, j] = (changed[0, j] + 1) % 97
        moved = (model(changed)[0, -1] - base).abs().max() > 1e-12
        assert bool(moved) == (T - 1 - j < reach), j


def test_sliding_equals_full_when_sequence_fits_the_window():
    full = tiny(window=None)
    idx = torch.randint(0, 97, (3, 16))
    for impl in ("dense", "tiled", "flex"):
        sliding = same_weights(full, impl, window=16)
        with torch.no_grad():
            assert rel_err(sliding(idx), full(idx)) < 1e-10


def greedy_by_recomputation(model, prompt, n, eos_id=None):
    """The obvious generation: run the whole sequence through the model for every new token."""
    seq = list(prompt)
    for _ in range(n):
        nxt = int(model(torch.tensor([seq]))[0, -1].argmax())
        seq.append(nxt)
        if nxt == eos_id:
            break
    return seq[len(prompt):]


def test_rope_tables_are_cos_and_sin_rounded_from_float64():
    """Each position's angles as Hugging Face forms them (float32 inverse frequencies times the position), then
    cos and sin in float64 rounded to float32, against Python's math module: equal bit for bit. (torch's own
    float32 cos is not always correctly rounded, and once gave other values in a process's first call.)"""
    cfg = GPTConfig(vocab_size=97, n_layer=1, n_head=4, n_kv_head=2, n_embd=64, max_seq_len=300)
    cos, sin = M.rope_tables(cfg)
    inv = 1.0 / cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2).float() / cfg.head_dim)
    angles = torch.outer(torch.arange(300).float(), inv).tolist()
    ref = lambda f: torch.tensor([[f(a) for a in row] for row in angles], dtype=torch.float64).float()
    assert torch.equal(cos, torch.cat([ref(math.cos), ref(math.cos)], -1))
    assert torch.equal(sin, torch.cat([-ref(math.sin), ref(math.sin)], -1))


def test_rope_is_the_rotate_half_rotation_written_out():
    """apply_rope's tables against the textbook: pair (x_i, x_{i+D/2}) turned by p * theta^(-2i/D), in fp32
    to rounding and in bf16 with the very same roundings (the same products and sums)."""
    cfg = GPTConfig(n_embd=32, n_head=2, n_kv_head=1, max_seq_len=40)
    cos, sin = M.rope_tables(cfg)
    D = cfg.head_dim
    x = torch.randn(2, 2, 40, D, generator=torch.Generator().manual_seed(0))
    p = torch.arange(40, dtype=torch.float64)[:, None]
    ang = p * 10000.0 ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
    x1, x2 = x[..., :D // 2].double(), x[..., D // 2:].double()
    ref = torch.cat([x1 * ang.cos() - x2 * ang.sin(), x2 * ang.cos() + x1 * ang.sin()], -1)
    assert torch.allclose(M.apply_rope(x, cos, sin).double(), ref, atol=1e-5)
    xb, c, s = x.bfloat16(), ang.cos().bfloat16(), ang.sin().bfloat16()
    x1, x2 = xb[..., :D // 2], xb[..., D // 2:]
    assert torch.equal(M.apply_rope(xb, cos, sin), torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], -1))


@pytest.mark.parametrize("qwen", [False, True])
def test_decoding_copy_casts_the_linear_weights_and_nothing_else(qwen):
    """The copy decode makes under autocast: linear weights cast once (q/k/v and gate/up also side by side,
    one matmul each), everything else shared, the model itself untouched, and the logits those of
    autocast casting each weight at every step. qwen: q/k/v biases and per-head q/k norms too."""
    model = tiny(window=4, pattern="SF", sinks=1, **(dict(qkv_bias=True, qk_norm=True) if qwen else {})).float()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    dec = engine.with_linear_weights_in(model, torch.bfloat16)
    for (name, p), (_, q) in zip(model.named_parameters(), dec.named_parameters()):
        linear = name.endswith(("proj.weight", "proj.bias")) or name == "lm_head.weight"
        assert (q.dtype == torch.bfloat16 and q is not p) if linear else q is p, name
    assert all(torch.equal(v, model.state_dict()[k]) and v.dtype == torch.float32 for k, v in before.items())
    assert all(hasattr(b.attn, "qkv_weight") and hasattr(b.mlp, "gate_up_weight") for b in dec.layers)
    assert not any(hasattr(b.attn, "qkv_weight") or hasattr(b.mlp, "gate_up_weight") for b in model.layers)
    cache = engine.KVCache(model.config, torch.tensor([3, 5]), 16, torch.bfloat16)
    tok, pos = torch.tensor([1, 2]), torch.tensor([3, 5])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):
        ref = model.decode_step(tok, pos, cache)
        assert torch.equal(dec.decode_step(tok, pos, cache), ref)
    x = torch.randn(3, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):   # the norm hands its matmuls their dtype
        assert torch.equal(model.norm(x), F.rms_norm(x, (32,), model.norm.weight, model.norm.eps).bfloat16())


@pytest.mark.parametrize("window,pattern,sinks", [(None, "S", 0), (6, "S", 0), (6, "S", 2), (5, "SF", 1)])
def test_greedy_generate_equals_recomputation(window, pattern, sinks):
    model = tiny(window=window, pattern=pattern, sinks=sinks, n_layer=2)
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, 97, (n,), generator=g).tolist() for n in (1, 3, 13, 9)]   # 13 > W
    n_new = 40                                                                          # many windows
    outs, _ = generate(model, prompts, n_new, temperature=0.0)
    for p, out in zip(prompts, outs):
        assert out == greedy_by_recomputation(model, p, n_new)
        assert generate(model, [p], n_new, temperature=0.0)[0][0] == out   # batched == alone


def test_generate_is_the_same_on_every_attention_path():
    model = tiny(window=5, pattern="SF", sinks=1)
    prompts = [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], [9]]      # 11 > W: the prefill's sliding path matters
    outs, lps = generate(model, prompts, 12, temperature=0.0)
    for impl in ("dense", "flex", "auto"):                    # flex prefills through tiled
        model.attn_impl = impl
        outs_i, lps_i = generate(model, prompts, 12, temperature=0.0)
        assert outs_i == outs
        assert torch.allclose(torch.tensor(sum(lps_i, [])), torch.tensor(sum(lps, [])), atol=1e-9)


def test_rows_stop_at_their_own_eos():
    model = tiny(window=4)
    prompts = [[1, 2, 3], [7], [50, 51, 52, 53, 54, 55]]
    free, _ = generate(model, prompts, 30, temperature=0.0)
    eos = free[0][5]   # a token row 0 produces, so at least that row stops early
    outs, lps = generate(model, prompts, 30, temperature=0.0, eos_id=eos)
    for p, f, out, lp in zip(prompts, free, outs, lps):
        cut = f.index(eos) + 1 if eos in f else len(f)
        assert out == f[:cut] == greedy_by_recomputation(model, p, 30, eos_id=eos)
        assert len(lp) == len(out)


@pytest.mark.parametrize("window,pattern", [(None, "S"), (4, "S"), (4, "SF")])
def test_decoding_through_a_growing_cache_changes_nothing(monkeypatch, window, pattern):
    """decode grows full layers' cache as positions advance and stops once all rows have, looking
    every SYNC_EVERY steps (here 3: many times). Rows stop at different steps; each must still be
    its greedy recomputation, and each sampled log-probability the training forward's."""
    monkeypatch.setattr(engine, "SYNC_EVERY", 3)
    model = tiny(window=window, pattern=pattern, sinks=1 if window else 0, max_seq_len=200)
    g = torch.Generator().manual_seed(2)
    prompts = [torch.randint(0, 97, (n,), generator=g).tolist() for n in (1, 2, 5, 9, 3, 7, 4, 6)]
    free, _ = generate(model, prompts, 60, temperature=0.0)
    eos = max(set(sum(free, [])), key=lambda t: sum(t in f for f in free))   # a token most rows produce
    outs, _ = generate(model, prompts, 60, temperature=0.0, eos_id=eos)
    assert len({len(o) for o in outs}) > 2                                   # rows stop at different steps
    for p, out in zip(prompts, outs):
        assert out == greedy_by_recomputation(model, p, 60, eos_id=eos)
    outs, lps = generate(model, prompts, 60, temperature=1.0, eos_id=eos, seed=4)
    for p, out, lp in zip(prompts, outs, lps):
        assert len(lp) == len(out) and (eos not in out or out.index(eos) == len(out) - 1)
        logits = model(torch.tensor([p + out]))[0, len(p) - 1:-1]
        ref = torch.log_softmax(logits, -1).gather(-1, torch.tensor(out)[:, None])[:, 0]
        assert torch.allclose(torch.tensor(lp, dtype=ref.dtype), ref, atol=1e-4)


@pytest.mark.parametrize("window,sinks", [(None, 0), (5, 0), (5, 2)])
def test_sampled_logprobs_match_the_training_forward(window, sinks):
    """The on-policy guarantee: what the sampler reports is what the trainer computes."""
    model = tiny(window=window, sinks=sinks)
    prompts = [[3, 1, 4, 1, 5, 9, 2, 6], [2, 7]]
    temp = 0.7
    outs, lps = generate(model, prompts, 25, temperature=temp, seed=123)
    for p, out, lp in zip(prompts, outs, lps):
        logits = model(torch.tensor([p + out]))[0, len(p) - 1:-1] / temp
        ref = torch.log_softmax(logits, -1).gather(-1, torch.tensor(out)[:, None])[:, 0]
        assert torch.allclose(torch.tensor(lp, dtype=ref.dtype), ref, atol=1e-4)


def test_seeded_sampling_is_reproducible_and_top_k_respected():
    model = tiny(window=4)
    prompts = [[1, 2], [3, 4, 5]]
    a = generate(model, prompts, 20, temperature=1.0, seed=7)
    assert a == generate(model, prompts, 20, temperature=1.0, seed=7)
    assert a[0] != generate(model, prompts, 20, temperature=1.0, seed=8)[0]
    outs, _ = generate(model, [[1, 2]], 20, temperature=1.0, top_k=1, seed=3)
    assert outs[0] == generate(model, [[1, 2]], 20, temperature=0.0)[0][0]   # top-1 sampling is greedy


def test_sliding_cache_is_constant_in_generation_length(monkeypatch):
    sizes = []
    real_init = engine.KVCache.__init__

    def spy(self, *a, **kw):
        real_init(self, *a, **kw)
        sizes.append(self.nbytes())
    monkeypatch.setattr(engine.KVCache, "__init__", spy)
    sliding, full = tiny(window=8, max_seq_len=400), tiny(window=None, max_seq_len=400)
    for n in (20, 300):
        generate(sliding, [[1, 2, 3]], n, temperature=0.0)
        generate(full, [[1, 2, 3]], n, temperature=0.0)
    s20, f20, s300, f300 = sizes
    assert s20 == s300                       # ring buffer: W slots per layer whatever the length
    assert f300 > 10 * f20                   # full layers grow with the sequence
    slot_bytes = 2 * 2 * 8 * 8               # k and v, 2 kv heads, head dim 8, float64
    assert s300 == 2 * 8 * slot_bytes        # 2 layers x W slots
    assert kv_cache_bytes(sliding.config, 303, dtype_bytes=8) == s300


def test_generate_refuses_prompts_beyond_max_seq_len():
    model = tiny(window=4, max_seq_len=32)
    with pytest.raises(ValueError, match="max_seq_len"):
        generate(model, [[1] * 30], 5)


def test_checkpoint_round_trip(tmp_path):
    model = tiny(window=6, pattern="SF", sinks=1).float()
    path = str(tmp_path / "ckpt.pt")
    save_checkpoint(path, model, stage="test", step=3, extra={"lr": 0.1})
    loaded, meta = load_checkpoint(path)
    assert loaded.config == model.config and meta["step"] == 3 and meta["extra"] == {"lr": 0.1}
    idx = torch.randint(0, 97, (1, 20))
    assert torch.equal(loaded(idx), model(idx))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]   # no temp file left behind


def test_checkpoint_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_checkpoint(str(tmp_path / "missing.pt"))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checkpoint(str(junk))
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(ValueError, match="not a swarr checkpoint"):
        load_checkpoint(str(other))
    good = tmp_path / "good.pt"
    save_checkpoint(str(good), tiny(window=6).float())
    obj = torch.load(str(good), weights_only=True)
    obj["config"]["n_embd"] = 64                                 # a config its weights do not fit
    torch.save(obj, str(tmp_path / "bad.pt"))
    with pytest.raises(ValueError, match="do not fit"):
        load_checkpoint(str(tmp_path / "bad.pt"))
    with pytest.raises(ValueError, match="attn_impl"):
        load_checkpoint(str(good), attn_impl="fast")


def test_attn_impl_is_chosen_at_load_time_not_saved(tmp_path):
    model = tiny(window=6, sinks=1, impl="dense").float()
    path = str(tmp_path / "ckpt.pt")
    save_checkpoint(path, model)
    assert "attn_impl" not in read_checkpoint(path)["config"]
    assert load_checkpoint(path)[0].attn_impl == "auto"
    assert load_checkpoint(path, attn_impl="tiled")[0].attn_impl == "tiled"


def test_old_checkpoint_with_attn_impl_in_its_config_loads(tmp_path):
    model = tiny(window=6, pattern="SF", sinks=1).float()
    path = str(tmp_path / "old.pt")
    save_checkpoint(path, model, step=5)
    obj = torch.load(path, weights_only=True)
    obj["config"]["attn_impl"] = "dense"                         # what checkpoints used to save
    torch.save(obj, path)
    loaded, meta = load_checkpoint(path)
    assert loaded.config == model.config and meta["step"] == 5 and loaded.attn_impl == "auto"
    idx = torch.randint(0, 97, (1, 20))
    assert torch.equal(loaded(idx), model(idx))


def test_config_refuses_nonsense():
    for bad in (dict(window=0), dict(window=8, layer_pattern="SX"), dict(window=4, n_sink=4),
                dict(n_head=4, n_kv_head=3)):
        with pytest.raises(ValueError):
            GPTConfig(**bad)
    with pytest.raises(ValueError, match="attn_impl"):
        GPT(GPTConfig(), attn_impl="fast")
    model = tiny(window=4)
    model.attn_impl = "fast"                                     # set at run time: refused at the forward
    with pytest.raises(ValueError, match="attn_impl"):
        model(torch.zeros(1, 3, dtype=torch.long))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_flex_equals_dense_bf16_cuda():
    for T, W, S in [(300, 64, 0), (1000, 128, 4), (4096, 512, 0), (777, 16, 4)]:
        q, k, v = (t.cuda().to(torch.bfloat16).requires_grad_()
                   for t in qkv(T, H=8, Hkv=2, D=64, seed=T))
        bm = M._flex_block_mask(T, W, S, "cuda:0")
        outs, grads = [], []
        for fn in (lambda: M.dense_attention(q, k, v, W, S),
                   lambda: M.flex_attention_fn("cuda")(q, k, v, block_mask=bm, enable_gqa=True)):
            out = fn()
            out.float().pow(2).sum().backward()
            outs.append(out.float())
            grads.append([t.grad.float().clone() for t in (q, k, v)])
            for t in (q, k, v):
                t.grad = None
        assert rel_err(outs[1], outs[0]) < 1e-2, (T, W, S)
        for a, b in zip(grads[1], grads[0]):
            assert rel_err(a, b) < 1e-2, (T, W, S)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_flash_decoding_of_full_layers_reads_only_used_slots_and_equals_dense_fp32():
    """KVCache.at's lengths and flash_decode_attention against fp32 SDPA with a boolean mask on the CPU; the slots
    past each row's position hold NaN on the GPU, so reading any of them would show."""
    L, D = 300, 64
    cfg = GPTConfig(n_head=6, n_kv_head=2, n_embd=6 * D, max_seq_len=L)
    rows = lambda n: torch.ones(n, dtype=torch.long, device="cuda")
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    assert engine.KVCache(cfg, rows(sms), L, torch.bfloat16).flash       # 2 key heads: twice the rows needed
    assert not engine.KVCache(cfg, rows(1), L, torch.bfloat16).flash     # too few rows: SDPA
    g = torch.Generator().manual_seed(0)
    for pos in (torch.tensor([0, 1, 127, 128, 299]), torch.tensor([200])):   # one slot, a block's edge, all
        B = len(pos)
        q = torch.randn(B, 2, 3, D, generator=g)                  # the 3 query heads of each key head
        k, v = torch.randn(B, 2, L, D, generator=g), torch.randn(B, 2, L, D, generator=g)
        seen = torch.arange(L) <= pos[:, None]
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=seen[:, None, None])
        cache = engine.KVCache(cfg, rows(B), L, torch.bfloat16)
        cache.flash = True
        unseen = ~seen.cuda()[:, None, :, None]
        k_gpu, v_gpu = (t.cuda().bfloat16().masked_fill(unseen, float("nan")) for t in (k, v))
        slot, lengths = cache.at(pos.cuda(), torch.bfloat16)["F"]
        out = M.flash_decode_attention(q.cuda().bfloat16(), k_gpu, v_gpu, *lengths).float().cpu()
        assert rel_err(out, ref) < 1e-2, B


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_tiled_attention_in_bf16_on_cuda_is_flash_and_equals_dense_fp32(monkeypatch):
    calls, flash = [], M.flash_sliding_attention
    monkeypatch.setattr(M, "flash_sliding_attention", lambda *a: calls.append(a) or flash(*a))
    for T, W, S in [(300, 64, 0), (1000, 128, 0), (777, 16, 0), (100, 512, 0), (1, 1, 0), (500, 128, 4)]:
        ref_in = [t.cuda().requires_grad_() for t in qkv(T, H=6, Hkv=2, D=64, seed=T)]
        half_in = [t.detach().to(torch.bfloat16).requires_grad_() for t in ref_in]
        assert M.flash_ok(half_in[0])
        calls.clear()
        outs = []
        for attention, (q, k, v) in ((M.dense_attention, ref_in), (M.tiled_attention, half_in)):
            out = attention(q, k, v, W, S)
            out.float().pow(2).sum().backward()
            outs.append(out.float())
        assert len(calls) == (S == 0), (T, W, S)                     # sinks: the einsum path
        assert rel_err(outs[1], outs[0]) < 1e-2, (T, W, S)
        for a, b in zip(half_in, ref_in):
            assert rel_err(a.grad.float(), b.grad) < 2e-2, (T, W, S)
