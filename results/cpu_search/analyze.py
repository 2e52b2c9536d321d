"""What a CPU-preset candidate gets wrong, from its greedy "sa" traces on 60 test problems: the share of its
step lines whose arithmetic is right, and how many steps copy the reference's operands (up to the first miss).
    python results/cpu_search/analyze.py SFT_CKPT ROW.json      # ROW.json: search.py's [name, preset row]"""
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import common  # noqa: E402
from data.mathgen import make_problems  # noqa: E402
from data.tokenizer import encode_prompt  # noqa: E402
from model import generate  # noqa: E402

STEP = re.compile(r"(\d+) ([-+]) (\d+) = (\d+)")

name, row = json.load(open(sys.argv[2]))
common.PRESETS[name] = row
model, enc, meta = common.load(sys.argv[1], "cpu")
problems = make_problems(60, "test", 0, **{**meta["data"], "window_friendly_frac": 0.0})
out, _ = generate(model, [encode_prompt(enc, p["question"]) for p in problems], 320, temperature=0.0,
                  eos_id=enc.eot_token)
arith_ok = arith_n = copy_ok = copy_n = 0
for p, ids in zip(problems, out):
    got = STEP.findall(enc.decode(ids))
    for a, op, b, c in got:
        arith_n += 1
        arith_ok += (int(a) + int(b) if op == "+" else int(a) - int(b)) == int(c)
    for ref, step in zip(STEP.findall(p["solution"]), got):
        copy_n += 1
        if ref[:3] != step[:3]:
            break
        copy_ok += 1
print(f"arithmetic right: {arith_ok}/{arith_n} step lines; operands as the reference: {copy_ok}/{copy_n} steps")
print(problems[0]["question"])
print(enc.decode(out[0]))
