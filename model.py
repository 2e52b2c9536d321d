"""
The swarr model: a small Llama-style decoder with sliding-window attention, the transformer and its
attention paths. Decoding (the KV cache, `generate`) is in engine.py and the checkpoint file in
checkpoint.py, both built on this one.

    from model import GPTConfig, GPT
    model = GPT(GPTConfig(vocab_size=1024, window=128))
    logits = model(idx)                       # idx (B, T) -> logits (B, T, vocab)

Window convention: with `window = W`, query i sees key j iff 0 <= i - j < W (W keys, itself
included; Hugging Face's `sliding_window`, FlashAttention's window_size=(W-1, 0)); with
`n_sink = S` the first S keys stay visible too. `window=None` is full causal attention.

Sliding layers have three interchangeable attention paths with one semantics:
  dense  explicit (T, T) boolean mask into SDPA: the reference, obviously right, O(T^2) memory
  tiled  plain PyTorch: blocks of queries against only the keys they can see, O(T*W) memory
  flex   FlexAttention with a cached block mask (compiled on CUDA): the fast GPU path
Full layers use SDPA's causal kernel (decoding on CUDA: FlashAttention over each row's slots in use).
The path is how to compute, not what the model is, so it is no config field:
`GPT(cfg, attn_impl="auto")` (flex on CUDA, tiled on CPU), `model.attn_impl`.

Depends on no other module of the project (torch and numpy only).
"""
import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint
from torch.nn.attention.flex_attention import create_block_mask, flex_attention


@dataclass
class GPTConfig:
    vocab_size: int = 1024
    n_layer: int = 6
    n_head: int = 6
    n_kv_head: int = 2           # grouped-query attention: n_head // n_kv_head queries share a key
    n_embd: int = 384
    max_seq_len: int = 1024
    window: int | None = None    # None = full attention everywhere
    layer_pattern: str = "S"     # repeated over depth when window is set: S = sliding, F = full
    n_sink: int = 0              # attention-sink tokens kept visible by sliding layers
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    # What imported models need (hf.py); the defaults are this project's own model. Left out of saved
    # configs while at their default, so checkpoints of the default recipe stay as they were.
    head_size: int | None = None          # None: n_embd // n_head (Qwen3 sets it apart from n_embd)
    mlp_hidden: int | None = None         # None: SwiGLU's 8/3 x n_embd rounded up to 64
    qkv_bias: bool = False                # Qwen2 adds biases to q, k and v
    qk_norm: bool = False                 # Qwen3 RMS-normalises each head of q and k before RoPE
    tie_embeddings: bool = False          # small models share the (large) embedding with lm_head
    rope_scaling: dict | None = None      # Llama-3.1's frequency scaling (hf.py checks its keys)

    def __post_init__(self):
        # one clear line for each kind of nonsense, so scripts can print it as is
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_head={self.n_head} is not a multiple of n_kv_head={self.n_kv_head}")
        if (self.head_size is None and self.n_embd % self.n_head) or self.head_dim % 2:
            raise ValueError(f"n_embd={self.n_embd} / n_head={self.n_head} is not an even head size")
        if self.window is not None and self.window < 1:
            raise ValueError(f"window must be >= 1 (or None for full attention), got {self.window}")
        if not self.layer_pattern or set(self.layer_pattern) - set("SF"):
            raise ValueError(f"layer_pattern takes S (sliding) and F (full) only, got {self.layer_pattern!r}")
        if self.n_sink < 0 or (self.window is not None and self.n_sink >= self.window):
            raise ValueError(f"n_sink must be >= 0 and < window, got {self.n_sink} with window={self.window}")

    @property
    def head_dim(self):
        return self.head_size or self.n_embd // self.n_head

    def saved(self):
        """The config as a checkpoint stores it: the import-only fields only where they are set."""
        d = asdict(self)
        return {k: v for k, v in d.items() if k not in IMPORT_FIELDS or v != IMPORT_FIELDS[k]}

    def layer_kinds(self):
        """'S' or 'F' for each layer: the pattern repeated over the depth ('F' everywhere if no window)."""
        if self.window is None:
            return ["F"] * self.n_layer
        return [self.layer_pattern[i % len(self.layer_pattern)] for i in range(self.n_layer)]

    def describe(self):
        if self.window is None or "S" not in self.layer_kinds():
            return "full"
        return f"SWA W={self.window} ({self.layer_pattern}, sinks {self.n_sink})"


IMPORT_FIELDS = dict(head_size=None, mlp_hidden=None, qkv_bias=False, qk_norm=False, tie_embeddings=False,
                     rope_scaling=None)


# ----------------------------------------------------------------------------------------------
# attention paths for sliding layers: q (B, H, T, D), k and v (B, Hkv, T, D) -> (B, H, T, D)

def sliding_mask(T, window, n_sink, device=None):
    """(T, T) boolean mask of the window convention; True = may attend."""
    causal = torch.ones(T, T, dtype=torch.bool, device=device).tril()   # bool only: no (T, T) int64 i - j
    mask = causal & ~causal.tril(-window)                                 # drops i - j >= W
    mask[:, :n_sink] |= causal[:, :n_sink]
    return mask


def dense_attention(q, k, v, window, n_sink=0):
    mask = sliding_mask(q.shape[2], window, n_sink, q.device)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)


def tiled_attention(q, k, v, window, n_sink=0, block=None):
    """Queries in blocks of Bq; block n attends only to keys [n*Bq - (W-1), (n+1)*Bq) plus sinks.

    Scores are (T, Bq + W - 1) per head instead of (T, T), so memory is O(T*W); no loop over
    the sequence (the key windows are strided views made by unfold). On a GPU in bf16/fp16 without
    sinks this is FlashAttention's own sliding window instead: the same tiling in one fused kernel."""
    if not n_sink and flash_ok(q):
        return flash_sliding_attention(q, k, v, window)
    B, H, T, D = q.shape
    Hkv, G = k.shape[1], H // k.shape[1]
    W = min(window, T)                       # a window longer than the sequence is causal attention
    S = n_sink if window < T else 0          # sinks only matter when some keys fall out of the window
    Bq = block or max(16, min(W, 128))
    nb = -(-T // Bq)
    Tp, span = nb * Bq, Bq + W - 1
    qb = F.pad(q, (0, 0, 0, Tp - T)).view(B, Hkv, G, nb, Bq, D)
    kw = F.pad(k, (0, 0, W - 1, Tp - T)).unfold(2, span, Bq)           # (B, Hkv, nb, D, span)
    vw = F.pad(v, (0, 0, W - 1, Tp - T)).unfold(2, span, Bq)
    scores = torch.einsum("bhgnqd,bhnds->bhgnqs", qb, kw) / math.sqrt(D)
    r = torch.arange(Bq, device=q.device)[:, None]
    c = torch.arange(span, device=q.device)[None, :]
    key_pos = torch.arange(nb, device=q.device)[:, None, None] * Bq - (W - 1) + c
    visible = (c >= r) & (c <= r + W - 1) & (key_pos >= 0)             # (nb, Bq, span)
    scores = scores.masked_fill(~visible, float("-inf"))
    if S:
        # sink keys, counted only where they have left the window (else they are in it already)
        sink_scores = torch.einsum("bhgnqd,bhsd->bhgnqs", qb, k[:, :, :S]) / math.sqrt(D)
        qpos = torch.arange(Tp, device=q.device).view(nb, Bq, 1)
        sink_visible = qpos - torch.arange(S, device=q.device) >= W
        scores = torch.cat([sink_scores.masked_fill(~sink_visible, float("-inf")), scores], dim=-1)
    p = torch.softmax(scores, dim=-1, dtype=torch.promote_types(scores.dtype, torch.float32)).to(v.dtype)
    out = torch.einsum("bhgnqs,bhnds->bhgnqd", p[..., S:], vw)
    if S:
        out = out + torch.einsum("bhgnqs,bhsd->bhgnqd", p[..., :S], v[:, :, :S])
    return out.reshape(B, H, Tp, D)[:, :, :T]


def flash_sliding_attention(q, k, v, window):
    """FlashAttention-2 (PyTorch's built-in kernel) with its window: query i sees keys i-W+1..i. It takes
    (B, T, H, D) and fewer key heads as they are (grouped-query attention); its backward keeps the window."""
    T = q.shape[2]
    out = torch.ops.aten._flash_attention_forward(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), None, None, T, T, 0.0, True, False,
        window_size_left=window - 1, window_size_right=0)[0]
    return out.transpose(1, 2)


def flash_decode_attention(q, k, v, cu_q, cu_k, used):
    """One decoding step of full attention by FlashAttention-2's variable-length kernel: q (B, Hkv, G, D) against
    the first used[i] slots of k, v (B, Hkv, L, D), i = b * Hkv + h. Each (row, key head) is one sequence: its G
    query heads against its slots (cu_q, cu_k: where each starts). Slots past `used` are never read, so a step
    costs what the rows' lengths add up to rather than B x L slots (SDPA with a mask reads them all)."""
    B, Hkv, G, D = q.shape
    one_head = lambda t: t.reshape(-1, 1, D)   # k, v: views of the cache
    y = torch.ops.aten._flash_attention_forward(one_head(q), one_head(k), one_head(v), cu_q, cu_k, G, k.shape[2],
                                                0.0, False, False, seqused_k=used)[0]
    return y.view(B, Hkv, G, D)


def flash_ok(x):
    """Whether PyTorch's FlashAttention-2 kernels (with window and seqused_k) can take x: CUDA, half precision, a
    head size they support, a GPU of compute capability 8.0 or more."""
    D = x.shape[-1]
    return (x.is_cuda and x.dtype in (torch.float16, torch.bfloat16) and D % 8 == 0 and D <= 256
            and _flash_available(x.device.index))


@lru_cache(maxsize=None)
def _flash_available(device_index):
    schema = str(torch.ops.aten._flash_attention_forward.default._schema)
    return (torch.backends.cuda.is_flash_attention_available() and "window_size_left" in schema
            and "seqused_k" in schema and torch.cuda.get_device_capability(device_index) >= (8, 0))


def _outside_compiled_graphs(fn):
    """torch.compiler.disable(fn) where models are compiled (CUDA); fn itself elsewhere, so that importing
    this module on a CPU does not import torch._dynamo (~1 s for every script and test process)."""
    return torch.compiler.disable(fn) if torch.cuda.is_available() else fn


@_outside_compiled_graphs   # built once per shape outside any compiled graph, then reused
@lru_cache(maxsize=32)
def _flex_block_mask(T, window, n_sink, device):
    def mask_mod(b, h, q_idx, kv_idx):
        return (kv_idx <= q_idx) & ((q_idx - kv_idx < window) | (kv_idx < n_sink))
    return create_block_mask(mask_mod, None, None, T, T, device=device)


def flex_attention_fn(device):
    """FlexAttention is only fast compiled; on CPU the eager (reference) version is used."""
    if torch.device(device).type != "cuda" or torch.compiler.is_compiling():
        return flex_attention       # (inside a compiled model, the model's compile covers it)
    return _compiled_flex()


@lru_cache(maxsize=1)   # one compiled wrapper for the whole process
def _compiled_flex():
    return torch.compile(flex_attention, dynamic=False)


def resolve_impl(impl, device):
    if impl not in ("dense", "tiled", "flex", "auto"):
        raise ValueError(f"attn_impl must be dense, tiled, flex or auto, got {impl!r}")
    if impl == "auto":
        return "flex" if torch.device(device).type == "cuda" else "tiled"
    return impl


# ----------------------------------------------------------------------------------------------
# the transformer

def rope_tables(cfg):
    """cos and sin of every position's angles, (T, D), laid out for `apply_rope`: cos twice, sin as
    (-sin, sin)."""
    inv_freq = 1.0 / cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2).float() / cfg.head_dim)
    if cfg.rope_scaling:
        inv_freq = llama3_scaled(inv_freq, **cfg.rope_scaling)
    angles = torch.outer(torch.arange(cfg.max_seq_len).float(), inv_freq).double().numpy()   # (T, D/2)
    # numpy's cos and sin (one thread, float64, then rounded), not torch's: on a 2-core Intel CPU torch's first
    # multi-threaded cos of a process sometimes gave the second thread's half other values (1 process in 4),
    # which made CPU runs of one seed end differently
    cos, sin = torch.from_numpy(np.cos(angles)).float(), torch.from_numpy(np.sin(angles)).float()
    return torch.cat([cos, cos], -1), torch.cat([-sin, sin], -1)


def llama3_scaled(inv_freq, factor, low_freq_factor, high_freq_factor, original_max_position_embeddings):
    """Llama-3.1's RoPE: long wavelengths slowed by `factor`, short ones kept, a smooth blend between."""
    wavelen = 2 * math.pi / inv_freq
    ratio = original_max_position_embeddings / wavelen           # periods that fit the original context
    smooth = ((ratio - low_freq_factor) / (high_freq_factor - low_freq_factor)).clamp(0, 1)
    return (1 - smooth) * inv_freq / factor + smooth * inv_freq


def apply_rope(x, cos, sin):
    """Llama/HF "rotate half" layout (first half / second half of the head), so imported weights fit:
    (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin), written as x * cos + roll(x) * sin with the tables of
    `rope_tables`: the same roundings as the textbook form, in four kernels instead of seven."""
    return x * cos.to(x.dtype) + x.roll(x.shape[-1] // 2, -1) * sin.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, cfg, layer_idx):
        super().__init__()
        self.cfg, self.layer_idx = cfg, layer_idx
        self.kind = cfg.layer_kinds()[layer_idx]   # "S" sliding or "F" full
        D = cfg.head_dim
        self.q_proj = nn.Linear(cfg.n_embd, cfg.n_head * D, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(cfg.n_embd, cfg.n_kv_head * D, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(cfg.n_embd, cfg.n_kv_head * D, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(cfg.n_head * D, cfg.n_embd, bias=False)
        if cfg.qk_norm:
            self.q_norm, self.k_norm = RMSNorm(D, cfg.norm_eps), RMSNorm(D, cfg.norm_eps)

    def forward(self, x, cos, sin, impl, mask=None, cache=None, pos=None):
        """x (B, T, C) -> (B, T, C). impl: "dense", "tiled" or "flex" over whole sequences (a prefill
        also stores their keys/values in `cache`), or "cache": one decoding step, row r's token at pos[r]
        against the cache. mask: shared by all layers of a call (flex's block mask, or engine.KVCache.at's)."""
        B, T, _ = x.shape
        cfg, D = self.cfg, self.cfg.head_dim
        if hasattr(self, "qkv_weight"):   # engine.with_linear_weights_in's copy: one matmul for all three
            q, k, v = F.linear(x, self.qkv_weight, self.qkv_bias).split(self.qkv_sizes, -1)
        else:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        q = q.view(B, T, cfg.n_head, D).transpose(1, 2)
        k = k.view(B, T, cfg.n_kv_head, D).transpose(1, 2)
        v = v.view(B, T, cfg.n_kv_head, D).transpose(1, 2)
        if cfg.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        qk = apply_rope(torch.cat([q, k], 1), cos, sin)          # both in one pass; keys cached after RoPE
        q, k = qk[:, :cfg.n_head], qk[:, cfg.n_head:]
        if impl == "cache":
            slot, visible = mask[self.kind]                         # this step's, for the layer's kind
            k, v = cache.update(self.layer_idx, k, v, slot, pos)    # every slot of this layer
            # one query per row: the G query heads sharing a key head are G queries against its slots, so
            # neither kernel needs grouped-query support (visible: SDPA's additive mask of 0 or -inf, or on
            # the flash path the full layers' slot counts, from engine.KVCache.at)
            qg = q.view(B, cfg.n_kv_head, cfg.n_head // cfg.n_kv_head, D)
            if self.kind == "F" and cache.flash:
                y = flash_decode_attention(qg, k, v, *visible).reshape(B, cfg.n_head, 1, D)
            else:
                y = F.scaled_dot_product_attention(qg, k, v, attn_mask=visible).reshape(B, cfg.n_head, 1, D)
        else:
            if cache is not None:
                cache.fill(self.layer_idx, k, v)
            if self.kind == "F":
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            elif impl == "dense":
                y = dense_attention(q, k, v, cfg.window, cfg.n_sink)
            elif impl == "tiled":
                y = tiled_attention(q, k, v, cfg.window, cfg.n_sink)
            else:
                y = flex_attention_fn(x.device)(q, k, v, block_mask=mask, enable_gqa=True)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))


def mlp_width(cfg):
    return cfg.mlp_hidden or 64 * math.ceil(8 * cfg.n_embd / 3 / 64)   # SwiGLU's 8/3 keeps the size at 4x GELU's


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        hidden = mlp_width(cfg)
        self.gate_proj = nn.Linear(cfg.n_embd, hidden, bias=False)
        self.up_proj = nn.Linear(cfg.n_embd, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, cfg.n_embd, bias=False)

    def forward(self, x):
        if hasattr(self, "gate_up_weight"):   # engine.with_linear_weights_in's copy: one matmul for both
            gate, up = F.linear(x, self.gate_up_weight).chunk(2, -1)
            return self.down_proj(F.silu(gate) * up)
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        # In fp32; under autocast the output is cast once to the dtype of the matmuls that read it
        # (they would each cast it again; the values are the same either way).
        dev = x.device.type
        dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype
        return F.rms_norm(x.float(), (x.shape[-1],), self.weight.float(), self.eps).to(dtype)


class Block(nn.Module):
    def __init__(self, cfg, layer_idx):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.attn = Attention(cfg, layer_idx)
        self.mlp_norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, impl, mask=None, cache=None, pos=None):
        x = x + self.attn(self.attn_norm(x), cos, sin, impl, mask, cache, pos)
        return x + self.mlp(self.mlp_norm(x))


class GPT(nn.Module):
    def __init__(self, cfg, attn_impl="auto"):
        super().__init__()
        resolve_impl(attn_impl, "cpu")   # a wrong name fails here rather than at the first forward
        self.config, self.attn_impl = cfg, attn_impl   # how sliding layers attend; callers may change it
        # training memory for big models: recompute each block's activations in backward instead of keeping them
        self.grad_checkpointing = False
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        # Untied input/output embeddings, as Llama and Mistral: with a ~1k vocabulary tying would
        # save under 5% of the parameters, and untied weights import real checkpoints unchanged.
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight
        cos, sin = rope_tables(cfg)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        # GPT-2's residual scaling: each block adds two outputs to the residual stream, so their
        # projections start 1/sqrt(2L) smaller to keep the stream's variance flat over depth.
        for block in self.layers:
            for lin in (block.attn.o_proj, block.mlp.down_proj):
                nn.init.normal_(lin.weight, std=0.02 / math.sqrt(2 * cfg.n_layer))

    def _init_weights(self, m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, idx):
        """idx (B, T) -> logits (B, T, vocab): every position at once, as in training."""
        return self.lm_head(self.norm(self._sequence(idx, resolve_impl(self.attn_impl, idx.device))))

    def prefill(self, idx, cache):
        """Right-padded prompts idx (B, T) -> logits (B, vocab) after each row's last prompt token
        (cache.lengths), storing every layer's keys/values in `cache`."""
        impl = resolve_impl(self.attn_impl, idx.device)
        impl = "tiled" if impl == "flex" else impl   # compiled flex would recompile for every prompt length
        x = self._sequence(idx, impl, cache)[torch.arange(idx.shape[0], device=idx.device), cache.lengths - 1]
        return self.lm_head(self.norm(x))

    def _sequence(self, idx, impl, cache=None):
        """The blocks over whole sequences at positions 0..T-1 -> hidden states (B, T, C)."""
        T, cfg = idx.shape[1], self.config
        if T > cfg.max_seq_len:
            raise ValueError(f"sequence of {T} tokens exceeds max_seq_len={cfg.max_seq_len}")
        flex = impl == "flex" and "S" in cfg.layer_kinds()    # one block mask, shared by all layers
        mask = _flex_block_mask(T, cfg.window, cfg.n_sink, str(idx.device)) if flex else None
        x = self.tok_emb(idx)
        recompute = self.grad_checkpointing and cache is None and torch.is_grad_enabled()
        for block in self.layers:
            if recompute:
                x = torch.utils.checkpoint.checkpoint(block, x, self.rope_cos[:T], self.rope_sin[:T], impl, mask,
                                                      use_reentrant=False)
            else:
                x = block(x, self.rope_cos[:T], self.rope_sin[:T], impl, mask, cache)
        return x

    def decode_step(self, tok, pos, cache):
        """tok (B,), each row's next token, at positions pos (B,) -> logits (B, vocab), writing the
        cache in place. Fixed shapes and no host syncs, so a CUDA graph can record it (engine.decode)."""
        dtype = cache.k[0].dtype   # what q and k are computed in: tables and masks are cast once, not per layer
        cos, sin = self.rope_cos[pos][:, None, None].to(dtype), self.rope_sin[pos][:, None, None].to(dtype)
        at, x = cache.at(pos, dtype), self.tok_emb(tok)[:, None]   # slots and masks: once for all layers
        for block in self.layers:
            x = block(x, cos, sin, "cache", at, cache, pos)
        return self.lm_head(self.norm(x))[:, 0]

    def num_params(self):
        return sum(p.numel() for p in self.parameters())
