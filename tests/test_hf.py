"""Hugging Face folders in and out (hf.py), checked against `transformers` itself (a test-only
dependency): tiny random models of each family, logits equal in fp32 both ways, sliding and full,
sequences several windows long; tokenizer ids equal to the `tokenizers` library's on GSM8K texts."""
import json
import os

import pytest
import torch

transformers = pytest.importorskip("transformers")

import hf  # noqa: E402
from checkpoint import load_checkpoint  # noqa: E402
from conftest import run_main  # noqa: E402
from data.mathgen import make_problems  # noqa: E402
from data.tokenizer import encode_example, encode_prompt, load_tokenizer  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GSM8K_TEST = os.path.join(ROOT, "..", "shared", "data", "gsm8k", "test.jsonl")
W, T = 16, 80   # the window and a sequence of five windows

SHAPE = dict(vocab_size=101, hidden_size=64, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-6)
LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 32}
CASES = {   # name: (config class, extra settings, our window and layer pattern after import)
    "llama": ("LlamaConfig", {}, None, "S"),
    "llama-tied-llama3-rope": ("LlamaConfig", dict(tie_word_embeddings=True, rope_parameters=LLAMA3_ROPE), None, "S"),
    "mistral-sliding": ("MistralConfig", dict(sliding_window=W), W, "S"),
    "qwen2-full": ("Qwen2Config", {}, None, "S"),
    "qwen2-hybrid": ("Qwen2Config", dict(use_sliding_window=True, sliding_window=W,
                                         layer_types=["sliding_attention"] * 3 + ["full_attention"]), W, "SSSF"),
    "qwen2-max-window-layers": ("Qwen2Config", dict(use_sliding_window=True, sliding_window=W, max_window_layers=2),
                                W, "FFSS"),
    "qwen3-head-dim-tied": ("Qwen3Config", dict(head_dim=32, tie_word_embeddings=True), None, "S"),
    "qwen3-sliding": ("Qwen3Config", dict(head_dim=16, use_sliding_window=True, sliding_window=W,
                                          max_window_layers=0), W, "S"),
}


def randomize(model, seed=0):
    """Every parameter random (biases and norm gains too), so a misplaced tensor cannot hide."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1 + (1.0 if p.dim() == 1 else 0.0))
    return model


def hf_model(name, folder):
    cls, extra, _, _ = CASES[name]
    config = getattr(transformers, cls)(**SHAPE, **extra)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    randomize(model.float().eval())
    model.save_pretrained(folder)
    return model


def hf_logits(model, idx):
    with torch.no_grad():
        return model(idx).logits


@pytest.mark.parametrize("name", sorted(CASES))
def test_import_logits_equal(name, tmp_path):
    ref = hf_model(name, tmp_path)
    ours, meta = load_checkpoint(str(tmp_path), attn_impl="dense")
    _, _, window, pattern = CASES[name]
    assert (ours.config.window, ours.config.layer_pattern) == (window, pattern)
    idx = torch.randint(0, SHAPE["vocab_size"], (2, T), generator=torch.Generator().manual_seed(1))
    want = hf_logits(ref, idx)
    for impl in ("dense", "tiled"):
        ours.attn_impl = impl
        with torch.no_grad():
            torch.testing.assert_close(ours(idx), want, rtol=1e-4, atol=1e-4)
    assert meta["stage"] == "import" and meta["hf"]["model_type"] == ref.config.model_type


def test_window_convention_matters(tmp_path):
    """The check above can see a window off by one: W+1 keys give other logits than HF's W."""
    ref = hf_model("mistral-sliding", tmp_path)
    ours, _ = load_checkpoint(str(tmp_path), attn_impl="dense")
    ours.config.window = W + 1
    idx = torch.randint(0, SHAPE["vocab_size"], (1, T))
    with torch.no_grad():
        assert (ours(idx) - hf_logits(ref, idx)).abs().max() > 1e-3


EXPORTS = {   # name: (our config's settings, the family transformers must load it as)
    "full": (dict(), "llama"),
    "sliding": (dict(window=W), "mistral"),
    "hybrid": (dict(window=W, layer_pattern="SSF"), "qwen2"),
    "biases-full": (dict(qkv_bias=True), "qwen2"),
    "qk-norm-sliding-head-size": (dict(qk_norm=True, window=W, head_size=24), "qwen3"),
    "tied-llama3-rope": (dict(tie_embeddings=True, rope_theta=500000.0, rope_scaling={
        k: v for k, v in LLAMA3_ROPE.items() if k not in ("rope_type", "rope_theta")}), "llama"),
}


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_export_logits_equal(name, tmp_path):
    settings, family = EXPORTS[name]
    cfg = GPTConfig(vocab_size=101, n_layer=3, n_head=4, n_kv_head=2, n_embd=64, max_seq_len=256, **settings)
    ours = randomize(GPT(cfg, attn_impl="dense"), seed=2)
    hf.export_hf(ours, str(tmp_path))
    ref = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path), attn_implementation="eager").float()
    assert ref.config.model_type == family
    idx = torch.randint(0, 101, (2, T), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(hf_logits(ref, idx), ours(idx), rtol=1e-4, atol=1e-4)
    back, _ = load_checkpoint(str(tmp_path))   # and in again: the same config (Qwen2 adds zero biases)
    assert back.config.saved() == {**cfg.saved(), "mlp_hidden": 192, **({"qkv_bias": True} if family == "qwen2" else {})}


def test_refusals(tmp_path):
    """Anything our decoder does not compute is one line naming the config field."""
    good = {**SHAPE, "model_type": "llama", "num_hidden_layers": 2}
    for bad, field in (({"model_type": "mixtral"}, "model_type"), ({"hidden_act": "gelu"}, "hidden_act"),
                       ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "yarn"),
                       ({"attention_bias": True}, "attention_bias"), ({"num_experts": 8}, "num_experts")):
        with pytest.raises(ValueError, match=field):
            hf.config_from_hf({**good, **bad})
    ours = GPT(GPTConfig(vocab_size=101, n_layer=1, n_head=2, n_kv_head=1, n_embd=32, window=8, n_sink=2))
    with pytest.raises(ValueError, match="sink"):
        hf.export_hf(ours, str(tmp_path))


def test_safetensors_round_trip(tmp_path):
    """Our writer is read by the safetensors package, and what it writes is read by ours (shards too)."""
    st = pytest.importorskip("safetensors.torch")
    tensors = {"a": torch.randn(3, 5), "b": torch.randn(7).bfloat16(), "c": torch.arange(6).view(2, 3)}
    hf.write_safetensors(str(tmp_path / "ours.safetensors"), tensors)
    for k, v in st.load_file(str(tmp_path / "ours.safetensors")).items():
        assert torch.equal(v, tensors[k])
    st.save_file(tensors, str(tmp_path / "theirs.safetensors"))
    for k, v in hf.read_safetensors(str(tmp_path / "theirs.safetensors")).items():
        assert torch.equal(v, tensors[k]) and v.dtype == tensors[k].dtype


def test_sharded_folder(tmp_path):
    ref = hf_model("qwen2-hybrid", tmp_path)
    ref.save_pretrained(str(tmp_path / "sharded"), max_shard_size="20KB")
    assert os.path.isfile(tmp_path / "sharded" / "model.safetensors.index.json")
    ours, _ = load_checkpoint(str(tmp_path / "sharded"), attn_impl="dense")
    idx = torch.randint(0, SHAPE["vocab_size"], (1, T))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx), hf_logits(ref, idx), rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------------------
# tokenizers

QWEN_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
                r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
LLAMA3_PATTERN = QWEN_PATTERN.replace(r"|\p{N}|", r"|\p{N}{1,3}|")
CHATML = ("{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + "
          "'<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou are a careful helper.<|im_end|>\\n' }}"
          "{%- endif %}{%- for m in messages %}{%- if m['role'] != 'system' %}{{- '<|im_start|>' + m['role'] + "
          "'\\n' + m['content'] + '<|im_end|>\\n' }}{%- endif %}{%- endfor %}"
          "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")
TRICKY = ["  12 apples,  3\tpears\n\n 4", "½ of 7 is 3.5; x² – €12 ", "don't  stop 1,000,000!!", "Ünïcödé ﬁ e\u0301"]


def gsm8k_texts(split):
    path = os.path.join(ROOT, "..", "shared", "data", "gsm8k", f"{split}.jsonl")
    if not os.path.isfile(path):
        return None
    rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    return [t for r in rows for t in (r["question"], r["answer"])]


def train_hf_tokenizer(kind, folder):
    """A byte-level BPE trained by the tokenizers library, as the families build theirs (nothing can
    be downloaded here): GPT-2's ByteLevel regex, a Split regex (Qwen2, Llama-3), or Digits first (SmolLM)."""
    tk = pytest.importorskip("tokenizers")
    pre = tk.pre_tokenizers
    tok = tk.Tokenizer(tk.models.BPE())
    if kind == "gpt2":
        tok.pre_tokenizer = pre.ByteLevel(add_prefix_space=False)
    elif kind == "digits":
        tok.pre_tokenizer = pre.Sequence([pre.Digits(individual_digits=True), pre.ByteLevel(add_prefix_space=False)])
    else:
        pattern = QWEN_PATTERN if kind == "qwen" else LLAMA3_PATTERN
        tok.pre_tokenizer = pre.Sequence([pre.Split(tk.Regex(pattern), behavior="isolated"),
                                          pre.ByteLevel(add_prefix_space=False, use_regex=False)])
    if kind == "qwen":
        tok.normalizer = tk.normalizers.NFC()
    tok.decoder = tk.decoders.ByteLevel()
    specials = (["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
                if kind == "llama3" else ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    trainer = tk.trainers.BpeTrainer(vocab_size=1200, special_tokens=specials, show_progress=False,
                                     initial_alphabet=pre.ByteLevel.alphabet())
    corpus = gsm8k_texts("train") or [r["question"] + "\n" + r["solution"] for r in _mathgen(2000)]
    tok.train_from_iterator(corpus, trainer)
    if kind == "llama3":
        tok.post_processor = tk.processors.TemplateProcessing(single="<|begin_of_text|> $A", special_tokens=[
            ("<|begin_of_text|>", tok.token_to_id("<|begin_of_text|>"))])
    os.makedirs(folder, exist_ok=True)
    tok.save(os.path.join(folder, "tokenizer.json"))
    config = {"eos_token": specials[1 if kind == "llama3" else 0], "tokenizer_class": "PreTrainedTokenizerFast"}
    if kind == "qwen":
        config["chat_template"] = CHATML
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump(config, f)
    return tok


def _mathgen(n):
    return make_problems(n, split="test", seed=5)


@pytest.mark.parametrize("kind", ["gpt2", "digits", "qwen", "llama3"])
def test_tokenizer_ids_equal(kind, tmp_path):
    texts = gsm8k_texts("test")
    if texts is None:
        pytest.skip("GSM8K test split not in ../shared/data/gsm8k")
    tok = train_hf_tokenizer(kind, tmp_path)
    enc = hf.hf_encoding(str(tmp_path / "tokenizer.json"))
    for text in texts + TRICKY:
        ids = tok.encode(text, add_special_tokens=False).ids
        assert enc.encode_ordinary(text) == ids, text
        assert enc.decode(ids) == tok.decode(ids)
    assert enc.decode([enc.n_vocab + 5, *enc.encode_ordinary("12 apples")]) == "12 apples"   # padding ids


def test_prompt_formats_match_the_chat_template(tmp_path):
    tok = train_hf_tokenizer("qwen", tmp_path)
    theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    chat = hf.hf_encoding(str(tmp_path / "tokenizer.json"), "chat")
    q = "Tom has 3 apples and buys 12 more. How many?"
    want = theirs.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=True)
    want = want["input_ids"] if isinstance(want, dict) or hasattr(want, "keys") else want
    assert encode_prompt(chat, q) == list(want)
    assert chat.eot_token == tok.token_to_id("<|im_end|>")
    plain = hf.hf_encoding(str(tmp_path / "tokenizer.json"), "plain")
    ids, mask = encode_example(plain, q, "3 + 12 = 15\n#### 15")
    assert ids == tok.encode(f"Question: {q}\nAnswer: 3 + 12 = 15\n#### 15").ids + [tok.token_to_id("<|endoftext|>")]
    assert sum(mask) == len(ids) - len(encode_prompt(plain, q))
    llama = train_hf_tokenizer("llama3", tmp_path / "llama3")
    enc = hf.hf_encoding(str(tmp_path / "llama3" / "tokenizer.json"), "chat")
    assert encode_prompt(enc, q)[:2] == [llama.token_to_id("<|begin_of_text|>"), llama.token_to_id("<|start_header_id|>")]
    assert enc.eot_token == llama.token_to_id("<|eot_id|>")


def test_our_tokenizer_exports_as_tokenizer_json(tmp_path):
    """data/tokenizer.tiktoken written as a byte-level BPE tokenizer.json: the same ids in `tokenizers`."""
    tk = pytest.importorskip("tokenizers")
    enc = load_tokenizer()
    tj, _ = hf.tokenizer_files(enc)
    (tmp_path / "tokenizer.json").write_text(json.dumps(tj))
    tok = tk.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    texts = (gsm8k_texts("test") or [])[:400] + [r["question"] + "\n" + r["solution"] for r in _mathgen(50)] + TRICKY
    for text in texts:
        assert tok.encode(text, add_special_tokens=False).ids == enc.encode_ordinary(text), text
    assert tok.token_to_id("<|endoftext|>") == enc.eot_token


# ----------------------------------------------------------------------------------------------
# the whole path on a tiny random model: import -> SWA -> SFT -> RL -> eval -> export

def test_whole_path(tmp_path):
    hf_dir = tmp_path / "tiny-qwen"
    tok = train_hf_tokenizer("qwen", hf_dir)
    config = transformers.Qwen2Config(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                      max_position_embeddings=512, tie_word_embeddings=True)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(str(hf_dir))
    rows = [json.loads(line) for line in open(GSM8K_TEST)][:4] if os.path.isfile(GSM8K_TEST) else [
        {"question": f"Tom has {a} apples and buys {b} more. How many now?", "answer": f"{a} + {b} = {a + b}\n#### {a + b}"}
        for a, b in ((3, 4), (10, 5), (7, 8), (2, 9))]
    data = tmp_path / "gsm8k.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def run(script, *args):                  # `python script args --device cpu`, in this process
        r = run_main(script.removesuffix(".py"), [*args, "--device", "cpu"])
        assert r.returncode == 0, r.stderr[-2000:]
        return r.stdout

    swa, sft, rl = (str(tmp_path / f) for f in ("swa.pt", "sft.pt", "rl.pt"))
    run("convert.py", "--init", str(hf_dir), "--window", "32", "--prompt-format", "chat", "--out", swa, "--n-val", "0")
    run("sft.py", "--init", swa, "--out", sft, "--data", str(data), "--preset", "smoke", "--n-val", "1")
    run("rl.py", "--init", sft, "--out", rl, "--data", str(data), "--preset", "smoke", "--max-new-tokens", "16")
    out = run("eval.py", "--ckpt", rl, "--data", str(data), "--n", "2", "--k", "0", "--max-new-tokens", "16",
              "--no-progress")
    assert "SWA W=32" in out
    model, meta = load_checkpoint(rl)
    assert meta["prompt_format"] == "chat" and meta["tokenizer"] == str(hf_dir / "tokenizer.json")
    assert [h["stage"] for h in meta["history"]] == ["import", "convert", "sft", "rl"]
    run("convert.py", "--init", rl, "--export-hf", str(tmp_path / "exported"))
    ref = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "exported"), attn_implementation="eager")
    assert transformers.AutoTokenizer.from_pretrained(str(tmp_path / "exported")).encode("Tom has 3") == tok.encode(
        "Tom has 3").ids
    idx = torch.randint(0, tok.get_vocab_size(), (1, 100))
    model.attn_impl = "dense"
    with torch.no_grad():
        torch.testing.assert_close(ref.float()(idx).logits, model(idx), rtol=1e-4, atol=1e-4)
