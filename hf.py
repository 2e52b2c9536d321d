"""
Hugging Face model folders in and out, without the `transformers`, `safetensors` or `tokenizers`
packages: a folder is config.json + *.safetensors (one file, or shards listed in
model.safetensors.index.json) + tokenizer.json.

    model, meta = load_hf("Qwen2.5-0.5B-Instruct")     # what checkpoint.load_checkpoint does with a folder
    enc = hf_encoding("Qwen2.5-0.5B-Instruct/tokenizer.json", "chat")   # a tiktoken.Encoding
    export_hf(model, "out_dir", enc)                     # convert.py --export-hf

Llama (SmolLM, Llama-3.x), Mistral, Qwen2 and Qwen3 are one decoder with a few switches (GPTConfig's
import fields), and the weights are a 1:1 rename. Anything outside those switches (MoE, other RoPE
types, other activations) is refused in one line naming the config field. HF's `sliding_window`
counts W keys including the query, as ours does, so windows map unchanged (tests/test_hf.py).

Prompt formats (the tokenizer carries its format, so every script formats alike):
  plain  "Question: {question}\\nAnswer:" then " {solution}" and the tokenizer's eos token
  chat   the model's chat template rendered by hand: ChatML (Qwen, SmolLM; with the default system
         message the template inserts, if any) or Llama-3 (no system message); the end token is the
         turn's end (<|im_end|>, <|eot_id|>)

Depends on: model (GPT, GPTConfig: the decoder the weights go into). checkpoint.load_checkpoint and
data.tokenizer.load_tokenizer call load_hf and hf_encoding when given a folder or a tokenizer.json.
"""
import glob
import json
import os
import re
import unicodedata

import tiktoken
import torch

from model import GPT, GPTConfig, mlp_width

# ----------------------------------------------------------------------------------------------
# safetensors: 8-byte little-endian header length, a JSON header {name: dtype, shape, offsets}, bytes

DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "BOOL": torch.bool}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


def read_safetensors(path):
    """{name: tensor} of one .safetensors file (tensors share one buffer of the file's size)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = bytearray(f.read())
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in DTYPES:
            raise ValueError(f"{path}: tensor {name} has dtype {info['dtype']}, which is not supported")
        dtype = DTYPES[info["dtype"]]
        start, end = info["data_offsets"]
        count = (end - start) // dtype.itemsize
        t = torch.frombuffer(data, dtype=dtype, count=count, offset=start) if count else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(info["shape"])
    return out


def write_safetensors(path, tensors, metadata=None):
    """Atomic, as checkpoints are. Tensors must not share memory (a tied lm_head is left out)."""
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().cpu().contiguous()
        blob = t.reshape(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    if metadata:
        header["__metadata__"] = metadata
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)   # the format pads the header so the data starts 8-byte aligned
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(len(head).to_bytes(8, "little") + head)
        for blob in blobs:
            f.write(blob)
    os.replace(tmp, path)


def read_weights(folder):
    """Every tensor of a model folder, sharded or not."""
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = sorted(os.path.basename(p) for p in glob.glob(os.path.join(glob.escape(folder), "*.safetensors")))
    if not files:
        raise ValueError(f"{folder}: no *.safetensors weights (pytorch_model.bin is not read: it is a pickle)")
    out = {}
    for name in files:
        out.update(read_safetensors(os.path.join(folder, name)))
    return out


def is_hf_folder(path):
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json"))


# ----------------------------------------------------------------------------------------------
# config.json <-> GPTConfig

FAMILIES = ("llama", "mistral", "qwen2", "qwen3")
MAX_SEQ_LEN = 4096   # our max_seq_len is what the scripts plan for (eval's default length), not a weight
# fields that change the computation away from our decoder when set: (field, the value we compute)
NEUTRAL = (("hidden_act", "silu"), ("attention_bias", False), ("mlp_bias", False), ("pretraining_tp", 1),
           ("partial_rotary_factor", 1.0), ("num_experts", 0), ("num_local_experts", 0),
           ("attn_logit_softcapping", None), ("final_logit_softcapping", None), ("use_mrope", False))


def config_from_hf(c):
    """GPTConfig for a config.json dict; ValueError naming the field for anything we cannot compute."""
    mt = c.get("model_type")
    if mt not in FAMILIES:
        raise ValueError(f"config.json: model_type {mt!r} is not supported (only {', '.join(FAMILIES)})")
    for field, value in NEUTRAL:
        if field in c and c[field] not in (value, None) and not (field == "pretraining_tp" and mt != "llama"):
            raise ValueError(f"config.json: {field}={c[field]!r} is not supported (only {value!r})")
    rope = dict(c.get("rope_parameters") or c.get("rope_scaling") or {})
    theta = rope.get("rope_theta", c.get("rope_theta", 10000.0))
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind not in ("default", "llama3"):
        raise ValueError(f"config.json: rope_scaling type {kind!r} is not supported (only default and llama3)")
    scaling = None
    if kind == "llama3":
        scaling = {k: rope[k] for k in ("factor", "low_freq_factor", "high_freq_factor",
                                       "original_max_position_embeddings")}
    n, C, H = c["num_hidden_layers"], c["hidden_size"], c["num_attention_heads"]
    head = c.get("head_dim") or (128 if mt == "qwen3" else C // H)   # Qwen3's default head is 128
    window, pattern = hf_window(c, mt, n)
    return GPTConfig(vocab_size=c["vocab_size"], n_layer=n, n_head=H, n_kv_head=c.get("num_key_value_heads") or H,
                     n_embd=C, max_seq_len=min(c.get("max_position_embeddings", MAX_SEQ_LEN), MAX_SEQ_LEN),
                     window=window, layer_pattern=pattern, rope_theta=float(theta),
                     norm_eps=c.get("rms_norm_eps", 1e-6), head_size=None if head * H == C else head,
                     mlp_hidden=c["intermediate_size"], qkv_bias=mt == "qwen2", qk_norm=mt == "qwen3",
                     tie_embeddings=bool(c.get("tie_word_embeddings", False)), rope_scaling=scaling)


def hf_window(c, mt, n):
    """(window, layer_pattern): Mistral slides everywhere; Qwen slides the layers of layer_types (or
    those from max_window_layers on) when use_sliding_window is set; Llama never slides."""
    W = c.get("sliding_window")
    if mt == "llama" or W is None or (mt != "mistral" and not c.get("use_sliding_window")):
        return None, "S"
    kinds = ["S"] * n
    if mt != "mistral":
        types = c.get("layer_types") or ["sliding_attention" if i >= c.get("max_window_layers", 28) else
                                         "full_attention" for i in range(n)]
        if len(types) != n or set(types) - {"sliding_attention", "full_attention"}:
            raise ValueError(f"config.json: layer_types {types!r} is not one of sliding_attention/full_attention "
                             f"per layer")
        kinds = ["S" if t == "sliding_attention" else "F" for t in types]
    if "S" not in kinds:
        return None, "S"
    period = next(p for p in range(1, n + 1) if all(kinds[i] == kinds[i % p] for i in range(n)))
    return W, "".join(kinds[:period])


def config_to_hf(cfg, eos_id=None):
    """config.json for our config: Llama (full), Mistral (all sliding), Qwen2 (hybrid or biases, via
    layer_types), Qwen3 (q/k norms). Sink tokens have no Hugging Face equivalent."""
    if cfg.n_sink:
        raise ValueError(f"n_sink={cfg.n_sink}: attention sinks have no Hugging Face equivalent, so this model "
                         f"cannot be exported (convert it without --sinks)")
    if cfg.qkv_bias and cfg.qk_norm:
        raise ValueError("q/k/v biases together with q/k norms match no Hugging Face family")
    kinds = cfg.layer_kinds()
    mt = ("qwen3" if cfg.qk_norm else "qwen2" if cfg.qkv_bias or len(set(kinds)) > 1
          else "mistral" if kinds[0] == "S" else "llama")
    c = {"architectures": [{"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2", "qwen3": "Qwen3"}[mt]
                           + "ForCausalLM"], "model_type": mt,
         "vocab_size": cfg.vocab_size, "hidden_size": cfg.n_embd, "num_hidden_layers": cfg.n_layer,
         "num_attention_heads": cfg.n_head, "num_key_value_heads": cfg.n_kv_head, "head_dim": cfg.head_dim,
         "intermediate_size": mlp_width(cfg), "hidden_act": "silu", "max_position_embeddings": cfg.max_seq_len,
         "rms_norm_eps": cfg.norm_eps, "rope_theta": cfg.rope_theta, "tie_word_embeddings": cfg.tie_embeddings,
         "rope_scaling": {"rope_type": "llama3", **cfg.rope_scaling} if cfg.rope_scaling else None}
    if mt in ("llama", "qwen3"):
        c["attention_bias"] = False
    if mt == "mistral":
        c["sliding_window"] = cfg.window
    if mt in ("qwen2", "qwen3"):
        c.update(use_sliding_window="S" in kinds, sliding_window=cfg.window, max_window_layers=cfg.n_layer,
                 layer_types=["sliding_attention" if k == "S" else "full_attention" for k in kinds])
    if eos_id is not None:
        c["eos_token_id"] = eos_id
    return c


# ----------------------------------------------------------------------------------------------
# weights: our names are HF's without the "model." prefix, with three blocks renamed

def hf_name(name):
    name = name.replace("tok_emb.", "embed_tokens.").replace(".attn_norm.", ".input_layernorm.")
    name = name.replace(".mlp_norm.", ".post_attention_layernorm.").replace(".attn.", ".self_attn.")
    return name if name.startswith("lm_head.") else "model." + name


def load_hf(folder, device="cpu", attn_impl="auto"):
    """-> (model, meta) of a Hugging Face folder; meta names its tokenizer.json, as our checkpoints
    name theirs, and the prompt format (plain; convert.py --prompt-format records another)."""
    with open(os.path.join(folder, "config.json")) as f:
        hf_config = json.load(f)
    try:
        model = GPT(config_from_hf(hf_config), attn_impl)
    except KeyError as e:
        raise ValueError(f"{folder}/config.json lacks {e}") from None
    tensors = read_weights(folder)
    state = {}
    for ours in model.state_dict():
        name = hf_name(ours)
        if name == "lm_head.weight" and model.config.tie_embeddings:
            name = "model.embed_tokens.weight"
        if name not in tensors:
            raise ValueError(f"{folder}: weights lack {name}")
        state[ours] = tensors[name]
    used = {hf_name(k) for k in state} | {"lm_head.weight"}   # a tied model may still save its lm_head copy
    left = [k for k in tensors if k not in used and not k.endswith("rotary_emb.inv_freq")]   # old files: RoPE
    if left:
        raise ValueError(f"{folder}: weights this model has no place for, e.g. {left[0]}")
    model.load_state_dict(state)
    tok = os.path.join(os.path.abspath(folder), "tokenizer.json")
    meta = {"stage": "import", "tokenizer": tok if os.path.isfile(tok) else None, "prompt_format": "plain",
            "hf": {"folder": os.path.abspath(folder), "model_type": hf_config["model_type"],
                   "max_position_embeddings": hf_config.get("max_position_embeddings")},
            "history": [{"stage": "import", "init": folder}]}
    return model.to(device), meta


def export_hf(model, folder, enc=None, dtype=None):
    """config.json + model.safetensors (+ tokenizer.json and tokenizer_config.json) in `folder`."""
    model = getattr(model, "_orig_mod", model)
    cfg = model.config
    config = config_to_hf(cfg, enc.eot_token if enc is not None else None)
    state = {hf_name(k): v.to(dtype or v.dtype) for k, v in model.state_dict().items()
             if not (k == "lm_head.weight" and cfg.tie_embeddings)}
    if config["model_type"] == "qwen2" and not cfg.qkv_bias:   # Qwen2 always has q/k/v biases: zeros
        for i in range(cfg.n_layer):
            for p in "qkv":
                w = state[f"model.layers.{i}.self_attn.{p}_proj.weight"]
                state[f"model.layers.{i}.self_attn.{p}_proj.bias"] = torch.zeros(w.shape[0], dtype=w.dtype)
    os.makedirs(folder, exist_ok=True)
    config["torch_dtype"] = str(next(iter(state.values())).dtype).removeprefix("torch.")
    _write_json(os.path.join(folder, "config.json"), config)
    write_safetensors(os.path.join(folder, "model.safetensors"), state, {"format": "pt"})
    if enc is not None:
        tokenizer_json, tokenizer_config = tokenizer_files(enc)
        _write_json(os.path.join(folder, "tokenizer.json"), tokenizer_json)
        _write_json(os.path.join(folder, "tokenizer_config.json"), tokenizer_config)


def _write_json(path, obj):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------
# tokenizer.json (byte-level BPE) <-> tiktoken

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# GPT-2's pattern after a Digits(individual_digits) split: each ASCII digit alone, nothing else
# reaching across one, and a space run before a digit ends there as it would at the end of the text
DIGITS_GPT2_PATTERN = (r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+|[0-9]| ?[^\P{N}0-9]+| ?[^\s\p{L}\p{N}]+"""
                       r"""|\s+(?![^\s0-9])|\s+""")


def byte_chars():
    """GPT-2's table from bytes to the printable characters byte-level vocabularies are written in."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return {b: chr(b) if b in printable else chr(256 + others.index(b)) for b in range(256)}


def pre_tokenizer_pattern(pt):
    """The one regex tiktoken splits with, for the pre-tokenizers byte-level BPE models use."""
    steps = pt.get("pretokenizers", []) if pt and pt.get("type") == "Sequence" else [pt]
    types = [s and s.get("type") for s in steps]
    last = steps[-1] if steps else None
    if types[-1:] != ["ByteLevel"] or last.get("add_prefix_space"):
        raise ValueError("tokenizer.json: pre_tokenizer is not byte-level without a prefix space")
    if types == ["ByteLevel"] and last.get("use_regex", True):
        return GPT2_PATTERN
    if types == ["Split", "ByteLevel"] and not last.get("use_regex", True):
        split = steps[0]
        if "Regex" in split.get("pattern", {}) and split.get("behavior") == "Isolated" and not split.get("invert"):
            return split["pattern"]["Regex"]
    if types == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and last.get("use_regex", True):
        return DIGITS_GPT2_PATTERN
    raise ValueError(f"tokenizer.json: pre_tokenizer {types} is not one this project reads "
                     f"(ByteLevel, Split+ByteLevel, Digits+ByteLevel)")


class HFEncoding(tiktoken.Encoding):
    """A tiktoken.Encoding that also carries what the scripts need from a Hugging Face tokenizer: the
    end token (eot_token: generation stops on it, SFT trains it), the prompt format, NFC normalisation."""

    def __init__(self, path, ranks, special_tokens, pattern, nfc, end, prompt_template, answer_prefix):
        super().__init__(os.path.basename(os.path.dirname(os.path.abspath(path))), pat_str=pattern,
                         mergeable_ranks=ranks, special_tokens=special_tokens)
        self.path, self.nfc, self.end = path, nfc, end
        self.known = set(ranks.values()) | set(special_tokens.values())
        self.prompt_template, self.answer_prefix = prompt_template, answer_prefix

    @property
    def eot_token(self):
        return self.end

    def encode_ordinary(self, text):
        return super().encode_ordinary(unicodedata.normalize("NFC", text) if self.nfc else text)

    # A sampled id past the tokenizer's (imported embedding tables are padded: Qwen2.5 has 271 spare
    # rows) decodes to nothing rather than stopping a run with a KeyError in the grader.
    def decode(self, tokens, errors="replace"):
        return super().decode([t for t in tokens if t in self.known], errors)

    def decode_single_token_bytes(self, token):
        return super().decode_single_token_bytes(token) if token in self.known else b""


def hf_encoding(path, prompt_format="plain"):
    """tokenizer.json (+ tokenizer_config.json beside it) -> HFEncoding. Ids equal the tokenizers
    library's (tests/test_hf.py): ranks are the vocabulary ids, which byte-level BPE files number in
    merge order (checked); added tokens become special tokens."""
    with open(path, encoding="utf-8") as f:
        tj = json.load(f)
    cfg_path = os.path.join(os.path.dirname(path), "tokenizer_config.json")
    tok_cfg = json.load(open(cfg_path, encoding="utf-8")) if os.path.isfile(cfg_path) else {}
    bpe = tj.get("model") or {}
    if bpe.get("type") != "BPE":
        raise ValueError(f"{path}: model.type {bpe.get('type')!r} is not BPE")
    normalizer = (tj.get("normalizer") or {}).get("type")
    if normalizer not in (None, "NFC"):
        raise ValueError(f"{path}: normalizer {normalizer!r} is not supported (only none or NFC)")
    to_byte = {c: b for b, c in byte_chars().items()}
    added = {t["content"]: t["id"] for t in tj.get("added_tokens", [])}
    ranks = {}
    for token, i in bpe["vocab"].items():
        if i in added.values():
            continue   # added tokens are matched whole, never merged into
        if any(ch not in to_byte for ch in token):
            raise ValueError(f"{path}: vocabulary token {token!r} is not byte-level")
        ranks[bytes(to_byte[ch] for ch in token)] = i
    if sum(len(b) == 1 for b in ranks) != 256:
        raise ValueError(f"{path}: the vocabulary lacks some of the 256 single bytes")
    merged = [ranks.get(bytes(to_byte[ch] for ch in "".join(m if isinstance(m, list) else m.split(" "))))
              for m in bpe.get("merges", [])]
    if None in merged or any(a >= b for a, b in zip(merged, merged[1:])):
        raise ValueError(f"{path}: merges are not numbered in merge order, so tiktoken ranks cannot express them")
    template, prefix, end = prompt_format_parts(tj, tok_cfg, added, prompt_format, path)
    return HFEncoding(path, ranks, added, pre_tokenizer_pattern(tj.get("pre_tokenizer")), normalizer == "NFC",
                      end, template, prefix)


def _token_name(t):
    return t.get("content") if isinstance(t, dict) else t


def prompt_format_parts(tj, tok_cfg, added, prompt_format, path):
    """(template, answer prefix, end id): the prompt is the template's ids and texts, "{question}"
    replaced; the solution follows as answer prefix + solution, then the end token."""
    if prompt_format == "plain":
        eos = _token_name(tok_cfg.get("eos_token"))
        eos = eos if eos in added else next((t for t in ("<|endoftext|>", "<|end_of_text|>", "</s>") if t in added),
                                            None)
        if eos is None:
            raise ValueError(f"{path}: no end-of-text token (tokenizer_config.json eos_token)")
        return [*_bos(tj, added), "Question: {question}\nAnswer:"], " ", added[eos]
    if prompt_format != "chat":
        raise ValueError(f"prompt format must be plain or chat, got {prompt_format!r}")
    if "<|im_start|>" in added and "<|im_end|>" in added:   # ChatML: Qwen, SmolLM
        start, end = added["<|im_start|>"], added["<|im_end|>"]
        system = re.search(r"<\|im_start\|>system\\n([^'\"{}<]+)<\|im_end\|>", tok_cfg.get("chat_template") or "")
        head = [start, "system\n" + system.group(1).replace("\\n", "\n"), end, "\n"] if system else []
        return [*head, start, "user\n{question}", end, "\n", start, "assistant\n"], "", end
    if "<|start_header_id|>" in added and "<|eot_id|>" in added:   # Llama-3
        s, e, eot = added["<|start_header_id|>"], added["<|end_header_id|>"], added["<|eot_id|>"]
        return [*_bos(tj, added), s, "user", e, "\n\n{question}", eot, s, "assistant", e, "\n\n"], "", eot
    raise ValueError(f"{path}: no chat format this project renders (ChatML or Llama-3): use the plain format")


def _bos(tj, added):
    """[bos id] if the tokenizer's post-processor starts every text with a special token, else []."""
    pp = tj.get("post_processor") or {}
    for p in pp.get("processors", [pp]):
        single = p.get("single") if p.get("type") == "TemplateProcessing" else None
        if single and "SpecialToken" in single[0]:
            return [added[single[0]["SpecialToken"]["id"]]]
    return []


def tokenizer_files(enc):
    """(tokenizer.json, tokenizer_config.json) for `enc`: an imported tokenizer's own files, or for
    ours a byte-level BPE with the same ids (each token's merge recovered as tiktoken would merge)."""
    if isinstance(enc, HFEncoding):
        cfg_path = os.path.join(os.path.dirname(enc.path), "tokenizer_config.json")
        with open(enc.path, encoding="utf-8") as f:
            tj = json.load(f)
        return tj, json.load(open(cfg_path, encoding="utf-8")) if os.path.isfile(cfg_path) else {}
    chars = byte_chars()
    text = lambda b: "".join(chars[x] for x in b)
    ranks = enc._mergeable_ranks
    merges = [[text(a), text(b)] for tok, rank in sorted(ranks.items(), key=lambda kv: kv[1]) if len(tok) > 1
              for a, b in [_last_merge(ranks, tok, rank)]]
    added = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
              "special": True} for s, i in enc._special_tokens.items()]
    split = {"type": "Split", "pattern": {"Regex": enc._pat_str}, "behavior": "Isolated", "invert": False}
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
    tj = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
          "pre_tokenizer": {"type": "Sequence", "pretokenizers": [split, byte_level]}, "post_processor": None,
          "decoder": byte_level,
          "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                    "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                    "vocab": {text(b): r for b, r in ranks.items()}, "merges": merges}}
    return tj, {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>"}


def _last_merge(ranks, token, rank):
    """The two tokens BPE joins last into `token`: its bytes merged with the ranks below its own."""
    parts = [bytes([b]) for b in token]
    while len(parts) > 2:
        pairs = [(ranks.get(a + b, rank), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
        r, i = min(pairs)
        if r >= rank:
            break
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    if len(parts) != 2 or ranks.get(parts[0]) is None or ranks.get(parts[1]) is None:
        raise ValueError(f"token {token!r} is not the merge of two earlier tokens")
    return parts
