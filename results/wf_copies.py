"""How many numbers a window-friendly trace copies from beyond its window, per window (default knobs).

    python results/wf_copies.py      # CPU, a few seconds
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from data.deps import operand_positions   # noqa: E402
from data.mathgen import make_problems     # noqa: E402
from data.tokenizer import encode_example, load_tokenizer   # noqa: E402

enc = load_tokenizer()
for W in (64, 96, 128, 256):
    far = total = traces = 0
    problems = make_problems(300, "test", 0, window_friendly_frac=1.0, window=W)
    for p in problems:
        ids, _ = encode_example(enc, p["question"], p["solution"])
        d = [x for _, x in operand_positions(ids, enc, every_number=True)]
        far += sum(x > W for x in d)
        total += len(d)
        traces += any(x > W for x in d)
    print(f"W={W}: {far} of {total} copies beyond W; {traces} of {len(problems)} traces have one")
