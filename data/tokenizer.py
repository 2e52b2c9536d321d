"""
The tokenizer: byte-level BPE trained here on generated problems, used through tiktoken.

    python -m data.tokenizer                 # retrain data/tokenizer.tiktoken (deterministic, seconds)
    python -m data.tokenizer --check         # retrain in memory and compare with the committed file
    python -m data.tokenizer --vocab 2048 --out /tmp/tok.tiktoken

Ranks 0..255 are the 256 bytes (so any text round-trips exactly), then the merges in the order
they were learned, then the three special tokens. Pre-tokenization splits every digit into its
own piece and digit pieces are never merged, so each digit is one token: the model sees numbers
digit by digit and never has to learn a separate embedding for "47".
Default size: at most 1024 ids (ranks + 3 specials). The generated text has only ~380 distinct
pre-token pieces, so training stops a little early, when every piece of the corpus is a single
token (757 merges, 1013 ranks today: n_vocab 1016). More merges would have nothing to merge,
fewer would split names and nouns into several tokens and lengthen every trace, and a small
embedding table suits a small model. Text outside the generator (GSM8K) still encodes, just
into more, smaller tokens.

Depends on: data.mathgen (the corpus it is trained on), hf (a Hugging Face tokenizer.json), common (the CLI;
write_atomic).
"""
import base64
import os
from collections import Counter

import regex
import tiktoken

from common import ArgumentParser, claim_outputs, fail, number, write_atomic
from data.mathgen import make_problems
from hf import hf_encoding

DEFAULT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tokenizer.tiktoken")
DEFAULT_VOCAB = 1024  # ids in total: ranks + specials
SPECIALS = ["<|question|>", "<|answer|>", "<|endoftext|>"]
# GPT-style pre-tokenizer, except that digits are matched one at a time (\p{N} without +) and a
# space before a digit stays its own piece, so no piece (hence no merge) ever contains a digit.
PAT_STR = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
CORPUS_KNOBS = dict(n=3000, split="train", seed=31337, window_friendly_frac=0.5)  # what the default is trained on


def load_tokenizer(path=None, prompt_format="plain"):
    """tiktoken.Encoding from a rank file (default: the committed data/tokenizer.tiktoken), or from a
    Hugging Face tokenizer.json (hf.py), which brings its prompt format (plain or chat) along."""
    if path and path.endswith(".json"):
        return hf_encoding(path, prompt_format)
    path = path or DEFAULT_PATH
    # Same format as tiktoken.load.load_tiktoken_bpe, parsed here because that function caches
    # files by path in a temp dir and would keep returning stale ranks after a retrain.
    ranks = {}
    with open(path, "rb") as f:
        for line in f.read().splitlines():
            if line:
                tok, rank = line.split()
                ranks[base64.b64decode(tok)] = int(rank)
    n = len(ranks)
    return tiktoken.Encoding(name=os.path.basename(path), pat_str=PAT_STR, mergeable_ranks=ranks,
                             special_tokens={s: n + i for i, s in enumerate(SPECIALS)})


def encode_prompt(enc, question):
    """<|question|> question <|answer|>: the model writes the solution after this. An imported
    tokenizer (hf.py) has its own format instead: token ids and texts around the question."""
    template = getattr(enc, "prompt_template", None)
    if template is not None:
        return [i for part in template for i in ([part] if isinstance(part, int) else
                                                  enc.encode_ordinary(part.replace("{question}", question)))]
    return [enc.encode_single_token("<|question|>")] + enc.encode_ordinary(question) + [enc.encode_single_token("<|answer|>")]


def encode_example(enc, question, solution):
    """(ids, mask) for prompt + solution + <|endoftext|>; mask is 1 on the solution and the end token."""
    prompt = encode_prompt(enc, question)
    sol = enc.encode_ordinary(getattr(enc, "answer_prefix", "") + solution) + [enc.eot_token]
    return prompt + sol, [0] * len(prompt) + [1] * len(sol)


def train_bpe(texts, n_merges):
    """Byte-level BPE over pre-token counts; returns ranks {bytes: rank}.
    Pair counts are kept up to date incrementally (only the words containing the merged pair are
    touched), and ties go to the smallest pair, so the result is deterministic."""
    counts = Counter()
    for t in texts:
        counts.update(regex.findall(PAT_STR, t))
    # pieces with a digit stay single bytes forever: they are never trained on
    words = [list(w.encode()) for w in counts if not regex.search(r"\p{N}", w)]
    freq = [counts[w] for w in counts if not regex.search(r"\p{N}", w)]
    vocab = {i: bytes([i]) for i in range(256)}
    pairs, where = Counter(), {}
    for wi, w in enumerate(words):
        for p in zip(w, w[1:]):
            pairs[p] += freq[wi]
            where.setdefault(p, set()).add(wi)
    for m in range(n_merges):
        if not pairs: break
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]
        new = 256 + m
        vocab[new] = vocab[best[0]] + vocab[best[1]]
        for wi in sorted(where.pop(best)):
            w, f = words[wi], freq[wi]
            for p in zip(w, w[1:]):  # drop this word's old pairs ...
                pairs[p] -= f
                if pairs[p] <= 0: del pairs[p]
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best: out.append(new); i += 2
                else: out.append(w[i]); i += 1
            words[wi] = out
            for p in zip(out, out[1:]):  # ... and add its new ones
                pairs[p] += f
                where.setdefault(p, set()).add(wi)
    return {b: r for r, b in vocab.items()}


def save_ranks(ranks, path):
    """Whole or not at all (write_atomic): every script reads this file."""
    write_atomic(path, b"".join(base64.b64encode(tok) + b" " + str(rank).encode() + b"\n"
                                for tok, rank in sorted(ranks.items(), key=lambda kv: kv[1])))


def default_corpus():
    return [r["question"] + "\n" + r["solution"] for r in make_problems(**CORPUS_KNOBS)]


def main():
    ap = ArgumentParser(__doc__)
    ap.add_argument("--vocab", type=number(int, low=256 + len(SPECIALS)), default=DEFAULT_VOCAB,
                    help="total ids incl. the 256 bytes and the 3 special tokens")
    ap.add_argument("--out", default=DEFAULT_PATH)
    ap.add_argument("--check", action="store_true", help="retrain and compare with --out instead of writing")
    args = ap.parse_args()
    if args.check:
        try:
            committed = load_tokenizer(args.out)._mergeable_ranks
        except OSError as e:
            fail(f"--check: cannot read {args.out} ({e.strerror})")
        except ValueError:
            fail(f"--check: {args.out} is not a tokenizer file")
    else:
        claim_outputs([args.out])
    ranks = train_bpe(default_corpus(), args.vocab - len(SPECIALS) - 256)
    if args.check:
        same = ranks == committed
        print("identical" if same else "DIFFERENT"); raise SystemExit(0 if same else 1)
    save_ranks(ranks, args.out)
    print(f"wrote {len(ranks)} ranks (+{len(SPECIALS)} specials) to {args.out}")


if __name__ == "__main__":
    main()
