"""
Dependency distance: how far back a step has to look for the numbers it uses.

For each operand of each step `a op b = c` (or a chain `a op b op c = d`) in the solution part of
a trace (after <|answer|> when present), the distance in tokens from the operand's first token
back to the first token of the most recent earlier occurrence of the same whole number (not a
piece of a longer number) anywhere earlier in the trace, prompt included. Operands that never
occur earlier (e.g. the 2 in "twice as many") are omitted. A distance d > W means that, under a
sliding window of W keys, the position predicting the operand's first digit (one before it)
cannot see the earlier occurrence.

Used by the data report (data/mathgen.py --report) and by eval.py on the model's own traces.
"""
import re

# a whole number (decimals included): not preceded by a digit or "d.", not followed by a digit or ".d"
NUM = re.compile(rb"(?<!\d)(?<!\d\.)\d+(?:\.\d+)?(?!\d|\.\d)")
# an arithmetic chain `n op n [op n ...] = n`; x, × and ÷ are accepted for model-written text
STEP = re.compile(rb"(\d+(?:\.\d+)?(?:\s*(?:[-+*/x]|\xc3\x97|\xc3\xb7)\s*\d+(?:\.\d+)?)+)\s*=\s*\d")


def dependency_distances(tokens, enc):
    """list[int]: one distance per operand that occurs earlier in the trace (see module docstring)."""
    return [d for _, d in operand_positions(tokens, enc)]


def operand_positions(tokens, enc, every_number=False):
    """[(index of the operand's first token, distance)] for the operands of dependency_distances; with
    every_number, for every number of the solution that occurs earlier but a step's result (the copies
    a trace makes too, such as a window-friendly list restating the question)."""
    pieces = [enc.decode_single_token_bytes(t) for t in tokens]
    starts, pos = [], 0  # byte offset where each token starts
    for p in pieces:
        starts.append(pos); pos += len(p)
    text = b"".join(pieces)
    tok_at = [0] * (len(text) + 1)  # byte offset -> index of the token containing it
    for i, (s, p) in enumerate(zip(starts, pieces)):
        for j in range(s, s + len(p)): tok_at[j] = i
    answer = enc.encode_single_token("<|answer|>") if "<|answer|>" in enc.special_tokens_set else None
    sol_start = starts[tokens.index(answer)] if answer in tokens else 0
    nums = [(m.start(), m.group()) for m in NUM.finditer(text)]
    last_seen, out = {}, []
    # walk the numbers left to right, remembering where each value was last seen; an operand's
    # distance is taken before it updates last_seen, so "most recent earlier occurrence" holds
    operand_at = set()
    for m in STEP.finditer(text, sol_start):
        for n in NUM.finditer(m.group(1)):
            operand_at.add(m.start(1) + n.start())
    for start, val in nums:
        if every_number:   # a number after "=" is what a step computes, not a copy
            wanted = start >= sol_start and not text[max(0, start - 3):start].rstrip().endswith(b"=")
        else:
            wanted = start in operand_at
        if wanted and val in last_seen:
            out.append((tok_at[start], tok_at[start] - tok_at[last_seen[val]]))
        last_seen[val] = start
    return out


def far_fraction(distances, window):
    """Fraction of distances beyond the window (d > window); 0.0 for an empty list."""
    return sum(d > window for d in distances) / len(distances) if distances else 0.0
