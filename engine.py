"""
Decoding: the KV cache, sampling, and the generation loop around the model (on CUDA each step is one
CUDA graph, and full layers use FlashAttention when there are enough rows to pay for it).

    from engine import generate
    completions, logprobs = generate(model, [[1, 2, 3]], max_new_tokens=32, temperature=0.0)

`generate` prefills the prompts into a KVCache (GPT.prefill), then `decode` samples one token per row
and feeds it back (GPT.decode_step) until every row has stopped. The model computes attention; this
file holds the memory it attends to and the loop around it.

Depends on: model (the GPT it drives; flash_ok: whether FlashAttention's kernels can take the cache).
"""
import copy

import torch
import torch.nn as nn

from model import flash_ok


def flash_decode_pays(n_seqs, device):
    """The varlen kernel gives each (row, key head) one thread block and does not split a long cache, so it decodes
    faster than SDPA only with enough of them to fill the GPU: on an H100 it was faster at batch 256 and 3.5x
    slower at batch 1 over 32k slots (bench.py). The line, one sequence per multiprocessor, is not tuned."""
    return n_seqs >= torch.cuda.get_device_properties(device).multi_processor_count


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


def sample_next(logits, temperature, top_k, generator, ban=None):
    """Next token and its log-probability under the distribution it was drawn from.
    Greedy (temperature 0) reports the model's own log-probability of the argmax.
    ban: token ids (a tensor) never drawn, the others keeping their odds; the log-probability reported stays
    that of the distribution before the ban, the one a trainer scores (bench.py's forced-length rollouts)."""
    logits = logits.float()
    never = (lambda s: s) if ban is None else (lambda s: s.index_fill(-1, ban, float("-inf")))
    if temperature == 0:
        tok = never(logits).argmax(-1)
        return tok, torch.log_softmax(logits, -1).gather(-1, tok[:, None])[:, 0]
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    logp = torch.log_softmax(logits, -1)
    # Gumbel-max through exponentials: argmax p/E with E ~ Exp(1) is a draw from p, without a sync
    noise = torch.empty_like(logp).exponential_(generator=generator)
    tok = never(logp - noise.log()).argmax(-1)
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
           cuda_graph=True, ban_eos=False):
    """The decoding loop of `generate`, after the prefill: sample a token from `logits` (B, vocab),
    feed it at `pos` (B,), repeat `steps` times. Returns tokens (B, steps), their log-probabilities
    and each row's length (up to and including its eos); ban_eos: eos_id is never drawn, so every row runs
    `steps` tokens (its log-probabilities still those of the model, see sample_next). bench.py times this loop.

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
    ban = torch.tensor([eos_id], device=device) if ban_eos else None

    def one_step(cache):
        tok, lp = sample_next(logits, temperature, top_k, generator, ban)
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
             cuda_graph=True, ban_eos=False):
    """Sample continuations of a batch of prompts (lists of token ids, any lengths).

    Returns (completions, logprobs): per row the new tokens (eos included if produced; a row stops
    at its own eos) and the log-probability of each under the distribution it was sampled from.
    cuda_graph: on CUDA, replay each decoding step as a CUDA graph (see Recorded).
    ban_eos: never draw eos_id, so every row gets max_new_tokens tokens (bench.py's long rollouts); the
    log-probabilities stay those of the model's distribution, as a trainer scores them (sample_next)."""
    cfg, device = model.config, model.lm_head.weight.device
    lens = [len(p) for p in prompts]
    if not prompts or min(lens) < 1:
        raise ValueError("generate needs at least one prompt, each of at least one token")
    if ban_eos and eos_id is None:
        raise ValueError("ban_eos needs the eos_id it bans")
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
                                      cuda_graph, ban_eos)
    model.train(was_training)
    n_out = n_out.tolist()
    width = max(n_out)   # the columns some row used: decoding stops soon after the last row's eos
    tokens, logps = tokens[:, :width].tolist(), logps[:, :width].tolist()
    return [tokens[r][:n_out[r]] for r in range(B)], [logps[r][:n_out[r]] for r in range(B)]
