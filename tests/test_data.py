"""Tests for data/: generator, dependency distance, tokenizer, GSM8K loader."""
import json
import os
import re

import pytest

from common import PRESETS

from data.deps import dependency_distances, far_fraction, operand_positions
from data.gsm8k import load_gsm8k
from data.mathgen import (DEFAULT_KNOBS, MAX_QUESTION, QUESTION_MARGIN, STYLE_MARKERS, approx_tokens,
                          make_problems, solution_style)
from data.tokenizer import (DEFAULT_PATH, SPECIALS, default_corpus, encode_example, encode_prompt,
                            load_tokenizer, train_bpe, DEFAULT_VOCAB)

GSM8K_TEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "gsm8k", "test.jsonl")


@pytest.fixture(scope="module")
def enc():
    return load_tokenizer()


@pytest.fixture(scope="module")
def probs():
    return make_problems(400, split="train", seed=0)

# ----------------------------------------------------------------------------- generator

def test_records_and_determinism(probs):
    assert len(probs) == 400
    for r in probs:
        assert {"question", "solution", "answer", "style"} <= set(r)
        assert r["style"] in ("sa", "wf") and re.fullmatch(r"\d+", r["answer"])
    assert make_problems(400, split="train", seed=0) == probs
    assert make_problems(50, split="train", seed=0) == probs[:50]  # a prefix does not depend on n
    assert make_problems(50, split="train", seed=1) != probs[:50]
    frac = sum(r["style"] == "wf" for r in probs) / len(probs)
    assert 0.12 < frac < 0.28  # default window_friendly_frac = 0.2


def test_splits_disjoint():
    qs = {s: {r["question"] for r in make_problems(600, split=s, seed=0)} for s in ("train", "val", "test")}
    assert not qs["train"] & qs["val"] and not qs["train"] & qs["test"] and not qs["val"] & qs["test"]
    # different seeds of one split are still disjoint from the others (split is a hash of the text)
    assert not {r["question"] for r in make_problems(300, split="test", seed=7)} & qs["train"]


def _eval_chain(expr):
    t = expr.split()
    v = int(t[0])
    for op, b in zip(t[1::2], t[2::2]):
        b = int(b)
        if op == "+": v += b
        elif op == "-": v -= b
        elif op == "*": v *= b
        else:
            assert v % b == 0, expr
            v //= b
    return v


def test_every_step_verified(probs):
    step = re.compile(r"(\d+(?: [-+*/] \d+)+) = (\d+)")
    for r in probs + make_problems(100, split="test", seed=3, window_friendly_frac=1.0):
        lines = r["solution"].split("\n")
        assert lines[-1] == f"#### {r['answer']}"
        steps = step.findall(r["solution"])
        assert len(steps) >= 3
        for expr, c in steps:
            assert " * " not in expr or expr.count(" ") == 2  # only sums are chained: no precedence questions
            assert _eval_chain(expr) == int(c), (expr, c)
        assert steps[-1][1] == r["answer"]


def test_styles_and_marker(probs):
    for r in probs:
        assert solution_style(r["solution"]) == r["style"]
        assert r["solution"].split("\n")[0] == STYLE_MARKERS[r["style"]]
        if r["style"] == "wf": assert "check" not in r["solution"].lower()  # no detours
    assert solution_style("  Let me keep a running list of what I still need.\nStill need: ...") == "wf"
    assert solution_style("The answer is 4.") is None and solution_style("") is None
    assert all(r["style"] == "sa" for r in make_problems(30, window_friendly_frac=0.0))
    assert all(r["style"] == "wf" for r in make_problems(30, window_friendly_frac=1.0))


def test_knobs():
    base = make_problems(100, seed=2, window_friendly_frac=0.0, detour_rate=0.0)
    more = make_problems(100, seed=2, window_friendly_frac=0.0, detour_rate=0.8)
    assert sum(len(r["solution"]) for r in more) > sum(len(r["solution"]) for r in base)
    assert not any("check" in r["solution"].lower() for r in base)
    few = make_problems(50, n_events=2, distractors=0)
    assert sum(len(r["question"]) for r in few) < sum(len(r["question"]) for r in base[:50])
    with pytest.raises(TypeError): make_problems(1, bogus=1)


ADD_SUB = ("has", "more", "fewer", "give", "lose", "each", "total", "pair", "diff")


def test_kinds_keeps_only_those_kinds():
    """With only the +/- kinds, no solution line multiplies or divides (read from the text), and the
    unfiltered knob (None) gives the very problems of the default."""
    small = dict(window=32, n_people=2, n_events=(1, 2), distractors=(0, 0))
    for r in make_problems(300, "train", 3, kinds=ADD_SUB, window_friendly_frac=0.5, **small):
        ops = {op for chain, _ in re.findall(r"(\d+(?: [-+*/] \d+)+) = (\d+)", r["solution"])
               for op in re.findall(r" ([-+*/]) ", chain)}
        assert ops <= {"+", "-"}, r["solution"]
        assert not re.search(r"times|twice|packs?|each of \d|split|share", r["question"]), r["question"]
    assert make_problems(50, "test", 1, kinds=None) == make_problems(50, "test", 1)
    for bad in (["has", "fly"], ["give", "total"], ["has", "give"]):
        with pytest.raises(ValueError):
            make_problems(1, kinds=bad)


def test_sa_without_prose_is_the_computations_of_the_sa_trace():
    """sa_prose=False keeps the question, the answer and every computation line of the "sa" trace
    (without detours, the lines with an '=') and drops the words around them."""
    kn = dict(window_friendly_frac=0.0, detour_rate=0.0)
    full = make_problems(200, "train", 5, **kn)
    terse = make_problems(200, "train", 5, sa_prose=False, **kn)
    for a, b in zip(full, terse):
        assert (a["question"], a["answer"]) == (b["question"], b["answer"])
        kept = [ln for ln in a["solution"].splitlines() if " = " in ln or ln.startswith("####")]
        assert b["solution"].splitlines() == [STYLE_MARKERS["sa"]] + kept
        assert len(b["solution"]) < len(a["solution"])


def test_sa_plan_is_the_plan_then_the_computations():
    """sa_prose="plan" keeps the full trace's plan (its 4 lines after the style line) and then only the
    computation lines, as sa_prose=False does."""
    kn = dict(window_friendly_frac=0.0, detour_rate=0.0)
    full = make_problems(200, "train", 5, **kn)
    plan = make_problems(200, "train", 5, sa_prose="plan", **kn)
    for a, b in zip(full, plan):
        assert (a["question"], a["answer"]) == (b["question"], b["answer"])
        lines = a["solution"].splitlines()
        kept = [ln for ln in lines if " = " in ln or ln.startswith("####")]
        assert b["solution"].splitlines() == lines[:5] + kept


def test_max_value_caps_every_amount():
    """max_value=20: every number of the question (no distractors: their numbers are no amounts) and every
    amount a step finds (all but the final question's sum) is at most 20, read from the text."""
    for r in make_problems(300, "val", 4, max_value=20, window_friendly_frac=0.5, kinds=ADD_SUB, distractors=0):
        assert max(map(int, re.findall(r"\d+", r["question"]))) <= 20, r["question"]
        lines = [ln for ln in r["solution"].splitlines() if " = " in ln]
        for ln in lines[:-1]:
            assert max(map(int, re.findall(r"\d+", ln))) <= 20, r["solution"]


def test_lengths_and_far_fractions(enc):
    """The defaults: questions inside the window, sa traces far-reaching, wf traces within the window."""
    W = DEFAULT_KNOBS["window"]
    for style, frac in (("sa", 0.0), ("wf", 1.0)):
        dists, totals = [], []
        for r in make_problems(150, split="val", seed=0, window_friendly_frac=frac):
            ids, mask = encode_example(enc, r["question"], r["solution"])
            assert len(encode_prompt(enc, r["question"])) <= 115
            totals.append(len(ids))
            dists += dependency_distances(ids, enc)
        assert max(totals) <= 900
        if style == "sa":
            assert far_fraction(dists, W) >= 0.35 and sum(totals) / len(totals) > 4 * W
        else:
            assert far_fraction(dists, W) <= 0.01


SMALL = dict(n_people=2, n_events=(1, 2), distractors=0)  # problems for small windows (CPU runs)


@pytest.mark.parametrize("window, knobs", [(32, SMALL), (32, {**SMALL, "n_events": (2, 3)}), (48, SMALL),
                                           (64, SMALL), (64, {}), (96, {}), (128, {}), (256, {})])
def test_wf_traces_are_written_for_the_window(enc, window, knobs):
    """The generator's window knob is what the window-friendly traces fit: every operand within W, at
    any window >= 32 (where a list restates only the next fact or two, mid-fact when need be)."""
    for r in make_problems(30, seed=2, window_friendly_frac=1.0, window=window, **knobs):
        ids, _ = encode_example(enc, r["question"], r["solution"])
        assert max(dependency_distances(ids, enc), default=0) <= window, r["solution"]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_number_a_wf_trace_copies_is_within_the_window(enc, preset):
    """Not only the operands of its steps: the lists that restate the question too. A window shorter
    than the question plus the style line breaks this (the W=32 CPU candidate: 54% of the copies were
    beyond it), and then a sliding-window model cannot write the window-friendly traces at all."""
    knobs = PRESETS[preset]["data"]
    for r in make_problems(100, "val", 3, **{**knobs, "window_friendly_frac": 1.0}):
        ids, _ = encode_example(enc, r["question"], r["solution"])
        assert max(d for _, d in operand_positions(ids, enc, every_number=True)) <= knobs["window"], r["solution"]


def test_operand_positions_hand_made(enc):
    """The token each distance is measured from, and the copies every_number adds, on a trace written
    here: 'Ann has 7' ... 'Still need: Ann has 7.' ... '7 + 5 = 12'."""
    q, sol = "Ann has 7 pens. Bo has 5 pens. How many pens do they have?", "Still need: Ann has 7.\nSo 7 + 5 = 12.\n#### 12"
    ids, _ = encode_example(enc, q, sol)
    text = [enc.decode([t]) for t in ids]
    ops = operand_positions(ids, enc)
    copies = operand_positions(ids, enc, every_number=True)
    assert [text[i].strip() for i, _ in ops] == ["7", "5"]
    assert [d for _, d in ops] == dependency_distances(ids, enc)
    assert [text[i].strip() for i, _ in copies] == ["7", "7", "5", "1"]   # the list's 7, the step's, then "#### 12" (digits are tokens)
    for i, d in copies:
        assert text[i - d].strip() == text[i].strip()


def test_questions_fit_the_window():
    """A question fits its window when it can; when its facts alone do not, it is as short as they are."""
    for window, knobs, cap in ((128, {}, MAX_QUESTION), (256, {}, MAX_QUESTION),
                               (96, SMALL, 96 - QUESTION_MARGIN)):
        questions = [r["question"] for r in make_problems(100, seed=1, window=window, **knobs)]
        assert max(map(approx_tokens, questions)) <= cap
    # at W=32 no question fits: no intro sentence or distractor lengthens them further
    distractors = ("years old", "also has", "blocks from", "pages", "days left")
    for r in make_problems(100, seed=1, window=32, **{**SMALL, "distractors": (0, 1)}):
        assert not any(d in r["question"] for d in distractors), r["question"]


def test_approx_tokens_close(enc, probs):
    # the wf summary schedule relies on approx_tokens not under-counting by much
    for r in probs[:100]:
        for line in r["solution"].split("\n"):
            assert approx_tokens(line) >= len(enc.encode_ordinary(line)) - 2, line


def test_make_problems_fast():
    import time
    t = time.time()
    make_problems(1000, seed=9)
    assert time.time() - t < 10  # ~0.7 s on an idle core; generous for a loaded CI box

# ----------------------------------------------------------------------------- dependency distance

def _trace(enc, pieces):
    """ids and the token index of each marked piece: pieces are strings, or ("mark", text)."""
    ids, at = [], {}
    for p in pieces:
        if isinstance(p, int): ids.append(p); continue
        if isinstance(p, tuple): at[p[0]] = len(ids); p = p[1]
        ids += enc.encode_ordinary(p)
    return ids, at


def test_dependency_distances_hand_made(enc):
    q, a = enc._special_tokens["<|question|>"], enc._special_tokens["<|answer|>"]
    ids, at = _trace(enc, [q, "Ann has ", ("q12", "12"), " pens and ", ("q5", "5"), " cups. Bo has 120.", a,
                           "So ", ("s12", "12"), " + ", ("s5", "5"), " = ", ("r17", "17"), ".\n",
                           "Then ", ("t17", "17"), " * 3 = 51.\n#### 51"])
    d = dependency_distances(ids, enc)
    # 12 -> the question's 12 (not the 12 inside 120), 5 -> the question's 5, 17 -> the result 17,
    # 3 never occurred before -> omitted
    assert d == [at["s12"] - at["q12"], at["s5"] - at["q5"], at["t17"] - at["r17"]]
    # the hand count: "So"," ","1","2" ... every digit is its own token
    toks = [enc.decode([t]) for t in ids]
    assert toks[at["s12"]:at["s12"] + 2] == ["1", "2"]


def test_dependency_distances_most_recent_and_no_answer_token(enc):
    # no <|answer|>: the whole text is searched for step lines; the most recent occurrence wins,
    # and a number followed by a full stop is still a whole number
    ids, at = _trace(enc, ["We have ", ("a", "7"), ". Again ", ("b", "7"), ".\n", ("c", "7"), " + 7 = 14."])
    d = dependency_distances(ids, enc)
    assert d == [at["c"] - at["b"], 1 + len(enc.encode_ordinary(" + "))]  # second 7 -> the first operand
    assert dependency_distances(enc.encode_ordinary("no steps here, 3 and 3"), enc) == []
    assert dependency_distances(enc.encode_ordinary("4 + 4 = 8"), enc) == [len(enc.encode_ordinary("4 + "))]


def test_far_fraction():
    assert far_fraction([], 128) == 0.0
    assert far_fraction([10, 128, 129, 500], 128) == 0.5

# ----------------------------------------------------------------------------- tokenizer

def test_tokenizer_round_trip_unicode(enc):
    for s in ["", "hello world", "Ünïcödé ß ∑ ≠ 😀🚀 👩‍👩‍👧", "中文字符和日本語のテキスト、한국어", "tabs\t\nand\r\n  spaces   ",
              "\x00\x01 control \u200b zero width", "<|endoftext|> is plain text here", "1,234.56e-7 ١٢٣"]:
        assert enc.decode(enc.encode_ordinary(s)) == s
        assert enc.decode_bytes(enc.encode_ordinary(s)) == s.encode("utf-8")


def test_digits_are_single_tokens(enc):
    ids = enc.encode_ordinary("Ava has 1234567890 marbles, 47 + 305 = 352.")
    digit_toks = [enc.decode([t]) for t in ids if any(ch.isdigit() for ch in enc.decode([t]))]
    assert digit_toks == list("1234567890") + list("47305352")
    for tok in enc._mergeable_ranks:  # no merged token contains a digit
        if len(tok) > 1: assert not re.search(rb"\d", tok), tok


def test_special_tokens_and_sizes(enc):
    n = len(enc._mergeable_ranks)
    assert [enc._special_tokens[s] for s in SPECIALS] == [n, n + 1, n + 2]
    assert enc.eot_token == enc._special_tokens["<|endoftext|>"] and enc.n_vocab <= DEFAULT_VOCAB
    assert all(enc._mergeable_ranks[bytes([i])] == i for i in range(256))


def test_encode_example_mask(enc):
    ids, mask = encode_example(enc, "What is 2 + 3?", "2 + 3 = 5\n#### 5")
    p = encode_prompt(enc, "What is 2 + 3?")
    assert p[0] == enc._special_tokens["<|question|>"] and p[-1] == enc._special_tokens["<|answer|>"]
    assert ids[:len(p)] == p and ids[-1] == enc.eot_token and len(ids) == len(mask)
    assert mask == [0] * len(p) + [1] * (len(ids) - len(p))
    assert enc.decode(ids[len(p):-1]) == "2 + 3 = 5\n#### 5"
    # special-token text inside a question is ordinary text, never a control token
    assert encode_prompt(enc, "<|endoftext|>").count(enc.eot_token) == 0


def test_tokenizer_retrains_identically(enc):
    """The committed rank file is exactly what `python -m data.tokenizer` produces."""
    ranks = train_bpe(default_corpus(), DEFAULT_VOCAB - len(SPECIALS) - 256)
    assert ranks == enc._mergeable_ranks, "rerun: python -m data.tokenizer"
    assert os.path.exists(DEFAULT_PATH)

# ----------------------------------------------------------------------------- GSM8K loader

def test_gsm8k_small_file(tmp_path):
    p = tmp_path / "mini.jsonl"
    rows = [{"question": "Tom has 3 apples and buys 4 more. How many?", "answer": "He has 3+4=<<3+4=7>>7 apples.\n#### 7"},
            {"question": "A big sum?", "answer": "It is 1000*2=<<1000*2=2000>>2000.\n#### 2,000"}]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    recs = load_gsm8k(str(p))
    assert [r["answer"] for r in recs] == ["7", "2000"]
    assert recs[0]["solution"] == "He has 3+4=7 apples.\n#### 7" and recs[0]["style"] == "gsm8k"
    p.write_text(json.dumps(rows[0]) + "\n" + '{"question": "x", "answer": "no final line"}\n')
    with pytest.raises(ValueError, match=r"mini\.jsonl:2"): load_gsm8k(str(p))
    p.write_text(json.dumps(rows[0]) + "\n" + json.dumps(rows[1]) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"mini\.jsonl:3"): load_gsm8k(str(p))


@pytest.mark.skipif(not os.path.exists(GSM8K_TEST), reason="GSM8K test file not present")
def test_gsm8k_real_test_file():
    recs = load_gsm8k(GSM8K_TEST)
    assert len(recs) == 1319
    assert all(re.fullmatch(r"-?\d+(\.\d+)?", r["answer"]) for r in recs)
    assert not any("<<" in r["solution"] for r in recs)
    assert recs[0]["answer"] == "18"
