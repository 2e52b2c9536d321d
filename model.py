"""
The swarr model: a small Llama-style decoder with sliding-window attention, a ring-buffer KV
cache, batched generation and checkpoint I/O. The whole model is in this file.

    from model import GPTConfig, GPT, generate, save_checkpoint, load_checkpoint
    model = GPT(GPTConfig(vocab_size=1024, window=128))
    completions, logprobs = generate(model, [[1, 2, 3]], max_new_tokens=32, temperature=0.0)

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
"""
import copy
import math
import os
from dataclasses import asdict, dataclass, fields
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


def flash_decode_pays(n_seqs, device):
    """The varlen kernel gives each (row, key head) one thread block and does not split a long cache, so it decodes
    faster than SDPA only with enough of them to fill the GPU: on an H100 it was faster at batch 256 and 3.5x
    slower at batch 1 over 32k slots (bench.py). The line, one sequence per multiprocessor, is not tuned."""
    return n_seqs >= torch.cuda.get_device_properties(device).multi_processor_count


@lru_cache(maxsize=None)
def _flash_available(device_index):
    schema = str(torch.ops.aten._flash_attention_forward.default._schema)
    return (torch.backends.cuda.is_flash_attention_available() and "window_size_left" in schema
            and "seqused_k" in schema and torch.cuda.get_device_capability(device_index) >= (8, 0))


@torch.compiler.disable   # built once per shape outside any compiled graph, then reused
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
        against the cache. mask: shared by all layers of a call (flex's block mask, or KVCache.at's)."""
        B, T, _ = x.shape
        cfg, D = self.cfg, self.cfg.head_dim
        if hasattr(self, "qkv_weight"):   # the decoding copy: one matmul for all three (with_linear_weights_in)
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
            # the flash path the full layers' slot counts, from KVCache.at)
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
        if hasattr(self, "gate_up_weight"):   # the decoding copy's one matmul for both (with_linear_weights_in)
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
        cache in place. Fixed shapes and no host syncs, so a CUDA graph can record it (decode)."""
        dtype = cache.k[0].dtype   # what q and k are computed in: tables and masks are cast once, not per layer
        cos, sin = self.rope_cos[pos][:, None, None].to(dtype), self.rope_sin[pos][:, None, None].to(dtype)
        at, x = cache.at(pos, dtype), self.tok_emb(tok)[:, None]   # slots and masks: once for all layers
        for block in self.layers:
            x = block(x, cos, sin, "cache", at, cache, pos)
        return self.lm_head(self.norm(x))[:, 0]

    def num_params(self):
        return sum(p.numel() for p in self.parameters())


# ----------------------------------------------------------------------------------------------
# KV cache and generation

class KVCache:
    """Preallocated keys/values (after RoPE) of a batch of right-padded prompts of `lengths` (B,)
    tokens. It only stores and returns them; attention is computed in `Attention`.

    Full layers keep every position: slot = position. Sliding layers keep S sink slots followed by
    a ring of R = min(W, max_len) slots, slot = S + position % R, so decoding memory does not grow
    with the generation's length. Each row has its own position; masks hide empty slots. On CUDA in half
    precision with enough rows (`flash`) full layers decode with FlashAttention, which reads only the slots a
    row uses."""

    def __init__(self, cfg, lengths, max_len, dtype):
        self.cfg, self.lengths, self.max_len = cfg, lengths, max_len
        self.ring = min(cfg.window, max_len) if cfg.window else max_len
        self.sinks = cfg.n_sink if cfg.window else 0
        slots = [max_len if kind == "F" else self.sinks + self.ring for kind in cfg.layer_kinds()]
        zeros = lambda n: lengths.new_zeros(len(lengths), cfg.n_kv_head, n, cfg.head_dim, dtype=dtype)
        self.k, self.v = [zeros(n) for n in slots], [zeros(n) for n in slots]
        self.flash = flash_ok(self.k[0]) and flash_decode_pays(len(lengths) * cfg.n_kv_head, lengths.device)

    def nbytes(self):
        return sum(t.numel() * t.element_size() for t in self.k + self.v)

    def resized(self, max_len):
        """A new cache whose full layers hold positions 0..max_len-1 (more or fewer slots than now:
        decoding grows it as it goes); sliding layers keep their ring."""
        new = copy.copy(self)
        new.max_len = max_len

        def take(t, kind):
            if kind == "S":
                return t
            out = t.new_zeros(t.shape[0], t.shape[1], max_len, t.shape[3])
            n = min(max_len, t.shape[2])
            out[:, :, :n] = t[:, :, :n]
            return out
        kinds = self.cfg.layer_kinds()
        new.k = [take(t, kind) for t, kind in zip(self.k, kinds)]
        new.v = [take(t, kind) for t, kind in zip(self.v, kinds)]
        return new

    def fill(self, layer, k, v):
        """Prefill: store the prompts' keys/values. Positions past a row's length hold padding,
        which decoding overwrites before any query can see it."""
        T = k.shape[2]
        if self.cfg.layer_kinds()[layer] == "F":
            self.k[layer][:, :, :T], self.v[layer][:, :, :T] = k, v
            return
        S, R = self.sinks, self.ring
        if S:
            self.k[layer][:, :, :min(S, T)], self.v[layer][:, :, :min(S, T)] = k[:, :, :S], v[:, :, :S]
        # ring slot s gets the row's latest real position p < length with p % R == s
        s = torch.arange(R, device=k.device)
        last = self.lengths[:, None] - 1
        p = last - (last - s) % R                                   # (B, R); < 0 means empty
        idx = p.clamp(0, T - 1)[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[3])
        self.k[layer][:, :, S:] = k.gather(2, idx)
        self.v[layer][:, :, S:] = v.gather(2, idx)

    def update(self, layer, k, v, slot, pos):
        """Decoding: write each row's k/v (B, Hkv, 1, D) at its slot (B,), in place; -> all slots."""
        K, V = self.k[layer], self.v[layer]
        S = self.sinks
        expand = lambda i: i[:, None, None, None].expand(-1, K.shape[1], 1, K.shape[3])
        K.scatter_(2, expand(slot), k)
        V.scatter_(2, expand(slot), v)
        if self.cfg.layer_kinds()[layer] == "S" and S:   # the first S positions also stay in the sinks for good
            is_sink = (pos < S)[:, None, None, None]
            sink_slot = expand(pos.clamp(max=S - 1))
            K.scatter_(2, sink_slot, torch.where(is_sink, k, K.gather(2, sink_slot)))
            V.scatter_(2, sink_slot, torch.where(is_sink, v, V.gather(2, sink_slot)))
        return K, V

    def at(self, pos, dtype):
        """What a decoding step at `pos` (B,) needs, per layer kind, worked out once for all layers: the slot
        each row writes, and the mask of the slots its query sees, (B, 1, 1, slots) of 0 or -inf in `dtype`;
        for full layers on the flash path, flash_decode_attention's (cu_q, cu_k, used) instead: slots 0..pos."""
        dev, S, R = pos.device, self.sinks, self.ring
        additive = lambda m: torch.zeros_like(m, dtype=dtype).masked_fill_(~m, float("-inf"))[:, None, None]
        kinds, out = set(self.cfg.layer_kinds()), {}
        if "F" in kinds and self.flash:
            Hkv, G = self.cfg.n_kv_head, self.cfg.n_head // self.cfg.n_kv_head
            starts = torch.arange(len(pos) * Hkv + 1, device=dev, dtype=torch.int32)
            used = (pos + 1).int()[:, None].repeat(1, Hkv).view(-1)   # the kernel takes it contiguous
            out["F"] = pos, (starts * G, starts * self.max_len, used)
        elif "F" in kinds:
            out["F"] = pos, additive(torch.arange(self.max_len, device=dev) <= pos[:, None])
        if "S" in kinds:
            sliding = pos[:, None] - (pos[:, None] - torch.arange(R, device=dev)) % R >= 0   # ring slots in use
            if S:
                sink = torch.arange(S, device=dev)
                sink_visible = (sink <= pos[:, None]) & (pos[:, None] - sink >= self.cfg.window)
                sliding = torch.cat([sink_visible, sliding], dim=1)
            out["S"] = S + pos % R, additive(sliding)
        return out


def kv_cache_bytes(cfg, seq_len, batch=1, dtype_bytes=2):
    """Bytes of KV cache that `generate` holds for `batch` sequences of `seq_len` tokens."""
    sinks = cfg.n_sink if cfg.window else 0
    slots = sum(seq_len if kind == "F" else sinks + min(cfg.window, seq_len) for kind in cfg.layer_kinds())
    return batch * slots * 2 * cfg.n_kv_head * cfg.head_dim * dtype_bytes   # 2: keys and values


def sample_next(logits, temperature, top_k, generator):
    """Next token and its log-probability under the distribution it was drawn from.
    Greedy (temperature 0) reports the model's own log-probability of the argmax."""
    logits = logits.float()
    if temperature == 0:
        tok = logits.argmax(-1)
        return tok, torch.log_softmax(logits, -1).gather(-1, tok[:, None])[:, 0]
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    logp = torch.log_softmax(logits, -1)
    # Gumbel-max through exponentials: argmax p/E with E ~ Exp(1) is a draw from p, without a sync
    noise = torch.empty_like(logp).exponential_(generator=generator)
    tok = (logp - noise.log()).argmax(-1)
    return tok, logp.gather(-1, tok[:, None])[:, 0]


class Recorded:
    """fn(): fixed-shape work on tensors it updates in place, with no host syncs; on CUDA, one graph.

    A decoding step of a small model is a few hundred tiny kernels: launched one by one from Python, their
    launch cost, not the GPU's work, bounds decoding. On CUDA the first call therefore runs fn eagerly
    (warming up cuBLAS and the allocator) and then records it once as a CUDA graph; every later call
    replays the graph. The sampling generator is registered with the graph, so a replay draws the numbers
    an eager call would have drawn (the generator's next ones): graphed and eager decoding sample alike."""

    def __init__(self, fn, device, generator=None, cuda_graph=True):
        self.fn, self.generator, self.graph = fn, generator, None
        self.use_graph = cuda_graph and device.type == "cuda"

    def __call__(self):
        if not self.use_graph:
            return self.fn()
        if self.graph is not None:
            return self.graph.replay()
        side = torch.cuda.Stream()               # warm-up and capture on a side stream, as capture requires
        side.wait_stream(torch.cuda.current_stream())
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.stream(side):
            self.fn()                            # eager: warms up cuBLAS and the allocator
            if self.generator is not None:
                self.graph.register_generator_state(self.generator)
            # capture_begin/end rather than `with torch.cuda.graph()`, which first empties the allocator's cache:
            # in rl.py the update after the rollouts then had to get its memory from the driver again, every step
            self.graph.capture_begin()           # records the kernels without running them
            self.fn()
            self.graph.capture_end()
        torch.cuda.current_stream().wait_stream(side)


SYNC_EVERY = 32   # decoding steps between looks from the host (one sync each)


def with_linear_weights_in(model, dtype):
    """A copy of `model` for decoding that shares every tensor but the linear layers', which it holds cast
    to `dtype` once: autocast would otherwise cast each weight again at every step (a kernel each). It also
    holds q/k/v's and gate/up's weights side by side, so each group is one matmul (3 kernels fewer a layer)."""
    dec = copy.deepcopy(model, {id(t): t for t in [*model.parameters(), *model.buffers()]})
    for m in dec.modules():
        if isinstance(m, nn.Linear):
            for name, p in m.named_parameters(recurse=False):
                setattr(m, name, nn.Parameter(p.detach().to(dtype), requires_grad=False))
    for block in dec.layers:
        a, m = block.attn, block.mlp
        qkv = (a.q_proj, a.k_proj, a.v_proj)
        a.qkv_weight = torch.cat([lin.weight for lin in qkv])
        a.qkv_bias = torch.cat([lin.bias for lin in qkv]) if a.q_proj.bias is not None else None
        a.qkv_sizes = [lin.out_features for lin in qkv]
        m.gate_up_weight = torch.cat([m.gate_proj.weight, m.up_proj.weight])
    return dec


def decode(model, cache, logits, pos, steps, temperature=1.0, top_k=None, eos_id=None, generator=None,
           cuda_graph=True):
    """The decoding loop of `generate`, after the prefill: sample a token from `logits` (B, vocab),
    feed it at `pos` (B,), repeat `steps` times. Returns tokens (B, steps), their log-probabilities
    and each row's length (up to and including its eos). bench.py times this loop directly.

    A step is all device work on tensors the loop keeps: sample, book the token, its log-probability and
    whether its row stopped, run the model on it; on CUDA one graph records the whole step (Recorded).
    Every SYNC_EVERY steps the host looks: it stops once every row has stopped. Rows that stopped keep
    decoding until the last one does: dropping them measured slower on an H100 (docs/log.md, 2026-11-23: a
    step of the default model costs about as much for 1 row as for 256, and every new graph a few ms). They
    go on at position 0, so that full layers' FlashAttention (KVCache.flash) reads one slot of theirs rather
    than all. Without flash (CPU, fp32, few rows), SDPA reads every slot of the full layers under a mask,
    so there the host keeps their cache to the positions the next steps reach (growing it in steps of
    4 x SYNC_EVERY slots, a new CUDA graph for each shape). On CUDA under autocast it decodes with a copy of
    the model whose linear weights are cast once (with_linear_weights_in)."""
    B, device = logits.shape[0], logits.device
    if device.type == "cuda" and torch.is_autocast_enabled("cuda"):
        model = with_linear_weights_in(model, torch.get_autocast_dtype("cuda"))
    tokens = torch.zeros(B, steps, dtype=torch.long, device=device)
    logps = torch.zeros(B, steps, device=device)
    n_out = torch.full((B,), steps, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    logits, pos, t = logits.clone(), pos.clone(), torch.zeros(1, dtype=torch.long, device=device)

    def one_step(cache):
        tok, lp = sample_next(logits, temperature, top_k, generator)
        tokens.index_copy_(1, t, tok[:, None])
        logps.index_copy_(1, t, lp[:, None])
        if eos_id is not None:
            newly = (tok == eos_id) & ~done
            n_out.copy_(torch.where(newly, t + 1, n_out))
            done.logical_or_(newly)
        # (after the last token too: one forward more than needed, and every step alike for the graph)
        logits.copy_(model.decode_step(tok, pos, cache))
        pos.copy_(torch.where(done, 0, pos + 1))   # a stopped row's tokens are dropped: position 0 is cheapest
        t.add_(1)

    step, full_max = None, cache.max_len
    grow = "F" in model.config.layer_kinds() and not cache.flash
    for i in range(steps):
        if i % SYNC_EVERY == 0:
            if eos_id is not None and bool(done.all()):
                break
            reach = min(full_max, int(pos.max()) + SYNC_EVERY) if grow else 0   # positions written next
            if step is None or reach > cache.max_len:
                if grow:
                    cache = cache.resized(min(full_max, -(-reach // (4 * SYNC_EVERY)) * 4 * SYNC_EVERY))
                step = Recorded(lambda c=cache: one_step(c), device, generator, cuda_graph)
        step()
    return tokens, logps, n_out


@torch.no_grad()
def generate(model, prompts, max_new_tokens, temperature=1.0, top_k=None, eos_id=None, seed=None,
             cuda_graph=True):
    """Sample continuations of a batch of prompts (lists of token ids, any lengths).

    Returns (completions, logprobs): per row the new tokens (eos included if produced; a row stops
    at its own eos) and the log-probability of each under the distribution it was sampled from.
    cuda_graph: on CUDA, replay each decoding step as a CUDA graph (see Recorded)."""
    cfg, device = model.config, model.lm_head.weight.device
    lens = [len(p) for p in prompts]
    if not prompts or min(lens) < 1:
        raise ValueError("generate needs at least one prompt, each of at least one token")
    if max(lens) + max_new_tokens > cfg.max_seq_len:
        raise ValueError(f"prompt of {max(lens)} tokens + {max_new_tokens} new tokens exceeds "
                         f"the model's max_seq_len={cfg.max_seq_len}")
    B, P, N = len(prompts), max(lens), max_new_tokens
    idx = torch.tensor([list(p) + [0] * (P - len(p)) for p in prompts], device=device)   # right-padded
    lengths = torch.tensor(lens, device=device)
    cuda = device.type == "cuda"
    cache = KVCache(cfg, lengths, P + N, torch.bfloat16 if cuda else model.lm_head.weight.dtype)
    generator = torch.Generator(device).manual_seed(int(torch.randint(2**62, ())) if seed is None else seed)
    was_training = model.training
    model.eval()
    # no autocast weight cache: the decoding CUDA graph casts the weights itself rather than
    # reading copies that were cast outside it and that autocast frees when its context ends
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda, cache_enabled=False):
        logits = model.prefill(idx, cache)
        tokens, logps, n_out = decode(model, cache, logits, lengths, N, temperature, top_k, eos_id, generator,
                                      cuda_graph)
    model.train(was_training)
    n_out = n_out.tolist()
    width = max(n_out)   # the columns some row used: decoding stops soon after the last row's eos
    tokens, logps = tokens[:, :width].tolist(), logps[:, :width].tolist()
    return [tokens[r][:n_out[r]] for r in range(B)], [logps[r][:n_out[r]] for r in range(B)]


# ----------------------------------------------------------------------------------------------
# checkpoints: one file with config, weights and metadata

CHECKPOINT_FORMAT = "swarr-checkpoint-v1"


def save_checkpoint(path, model, **meta):
    """Atomic: written to a temporary file in the same directory, then renamed over `path`."""
    model = getattr(model, "_orig_mod", model)                 # unwrap torch.compile
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    obj = {"format": CHECKPOINT_FORMAT, "config": model.config.saved(), "model": state, "meta": meta}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class CheckpointError(ValueError):
    """A file that is no readable swarr checkpoint, or whose weights do not fit its config."""


def read_checkpoint(path):
    """The raw checkpoint dict (config, model, meta), validated; weights_only=True never runs code."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
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
        from hf import load_hf
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
