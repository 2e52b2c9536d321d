"""
Procedural grade-school word problems with verified worked solutions in two styles.

    python -m data.mathgen --split train --n 1000 --out train.jsonl   # write JSONL
    python -m data.mathgen --report                                   # length / dependency stats
    python -m data.mathgen --show 2                                   # print a few examples

A problem is a short list of facts about a few people and one kind of object (who has how many,
who gives what to whom, who buys packs of them, ...), some distractor facts, and one question.
The facts are the problem's "expression": the answer is computed from them by `simulate`, a path
independent of the worked solution, and every `a op b = c` line of the solution is recomputed
from the text. A record is rejected (and resampled) unless everything agrees.

The solution comes in one of two styles, decided by its very first line (see STYLE_MARKERS):
  "sa": written for a full-attention reader. Steps follow the question's order and use numbers
        from the question, or computed many steps earlier, without restating them, and some steps
        are re-checked ("detours"). Most operands lie more than a window back.
  "wf": window-friendly. A short running list of what is still needed (current values and the
        facts not yet used) is restated whenever the last copy is about to leave the window, so
        every number a step uses is within the last `window` tokens. No detours.
Because the first line fixes the style, the style is a choice the model samples at its first
line, which on-policy RL under sliding-window attention can shift.
"""
import argparse
import hashlib
import json
import random
import re

STYLE_MARKERS = {
    "sa": "Let me solve this step by step.",
    "wf": "Let me keep a running list of what I still need.",
}
SPLITS = ("train", "val", "test")
MAX_VALUE = 999  # every quantity, given or computed, stays in 1..999: small-model arithmetic
MAX_QUESTION = 108  # approx_tokens cap on a question (~110 real tokens with its 2 special tokens): it fits the window

DEFAULT_KNOBS = dict(
    window_friendly_frac=0.2,  # share of "wf" solutions
    n_people=3,                # people in each problem
    n_events=(2, 3),           # events after the starting amounts (int or inclusive range)
    distractors=(0, 1),        # facts with numbers the solution never uses
    detour_rate=0.3,           # chance that an "sa" step is followed by a re-check
    window=128,                # token window the "wf" style keeps every operand inside
)

NAMES = ["Ava", "Ben", "Cara", "Dev", "Ella", "Finn", "Gia", "Hugo", "Iris", "Jack", "Kai", "Lena",
         "Milo", "Nora", "Omar", "Pia", "Quinn", "Rosa", "Sam", "Tara", "Umar", "Vera", "Wes",
         "Yara", "Zane", "Leo", "Mia", "Noah", "Ruby", "Theo", "Lily", "Max", "Zoe", "Ivan",
         "Maya", "Eli", "Anna", "Raj", "Suki", "Tom"]
# (plural object, container singular, container plural)
OBJECTS = [("marbles", "bag", "bags"), ("stickers", "sheet", "sheets"), ("apples", "basket", "baskets"),
           ("pencils", "box", "boxes"), ("cards", "pack", "packs"), ("shells", "bucket", "buckets"),
           ("stamps", "book", "books"), ("cookies", "tin", "tins"), ("beads", "jar", "jars"),
           ("coins", "purse", "purses"), ("crayons", "box", "boxes"), ("eggs", "carton", "cartons"),
           ("buttons", "cup", "cups"), ("candies", "bag", "bags"), ("toy cars", "crate", "crates"),
           ("books", "stack", "stacks"), ("flowers", "bunch", "bunches"), ("rocks", "sack", "sacks"),
           ("balloons", "pack", "packs"), ("cupcakes", "tray", "trays")]
OTHER_THINGS = ["kites", "hats", "dogs", "bikes", "plants", "fish", "pens", "socks"]

# ----------------------------------------------------------------------------- sampling the facts

def _sample_facts(rng, n_people, n_events):
    """Facts in question order; the amounts are tracked while sampling so every event is valid."""
    vals, facts = {}, []
    for p in range(n_people):  # starting amounts: given, or relative to someone already known
        kind = "has" if p == 0 or rng.random() < 0.4 else rng.choice(["times", "more", "fewer"])
        q = rng.randrange(p) if p else 0
        if kind == "has":
            n = rng.randint(8, 60); facts.append(("has", p, n)); vals[p] = n
        elif kind == "times":
            k = rng.randint(2, 4); facts.append(("times", p, q, k)); vals[p] = vals[q] * k
        elif kind == "more":
            k = rng.randint(3, 25); facts.append(("more", p, q, k)); vals[p] = vals[q] + k
        else:
            if vals[q] < 6: kind, k = "more", rng.randint(3, 25); facts.append(("more", p, q, k)); vals[p] = vals[q] + k; continue
            k = rng.randint(3, min(25, vals[q] - 3)); facts.append(("fewer", p, q, k)); vals[p] = vals[q] - k
    kinds = ["give", "buy", "lose", "split", "scale", "each"]
    weights = [3, 3, 2, 1, 1, 1]
    while len(facts) < n_people + n_events:
        kind = rng.choices(kinds, weights)[0]
        p = rng.randrange(n_people)
        if kind == "give":
            q = rng.choice([i for i in range(n_people) if i != p])
            if vals[p] < 4: continue
            k = rng.randint(2, min(30, vals[p] - 1)); fact = ("give", p, q, k)
        elif kind == "buy":
            fact = ("buy", p, rng.randint(2, 6), rng.randint(3, 12))
        elif kind == "lose":
            if vals[p] < 6: continue
            fact = ("lose", p, rng.randint(2, min(25, vals[p] - 2)))
        elif kind == "split":
            ks = [k for k in (2, 3, 4, 5) if vals[p] % k == 0 and vals[p] // k >= 2]
            if not ks: continue
            fact = ("split", p, rng.choice(ks))
        elif kind == "scale":
            if vals[p] * 2 > 300: continue
            fact = ("scale", p, rng.choice([2, 2, 3]))
        else:
            fact = ("each", rng.randint(2, 15))
        if facts[-1] == fact or (fact[0] == "each" and any(f[0] == "each" for f in facts)): continue
        new = _apply(dict(vals), fact)
        if max(new.values()) > MAX_VALUE: continue
        facts.append(fact); vals = new
    # the question: the last fact, also "simulated"
    total = sum(vals.values())
    asks = [("total",), ("pair",) + tuple(rng.sample(range(n_people), 2))]
    p, q = sorted(range(n_people), key=lambda i: -vals[i])[:2]
    if vals[p] > vals[q]: asks.append(("diff", p, q))
    shares = [m for m in (2, 3, 4, 5, 6) if total % m == 0 and total // m >= 2]
    if shares: asks.append(("share", rng.choice(shares)))
    return facts, rng.choice(asks)


def _apply(vals, fact):
    """One fact applied to the amounts (used while sampling and by `simulate`)."""
    kind = fact[0]
    if kind == "has": vals[fact[1]] = fact[2]
    elif kind == "times": vals[fact[1]] = vals[fact[2]] * fact[3]
    elif kind == "more": vals[fact[1]] = vals[fact[2]] + fact[3]
    elif kind == "fewer": vals[fact[1]] = vals[fact[2]] - fact[3]
    elif kind == "give": vals[fact[1]] -= fact[3]; vals[fact[2]] += fact[3]
    elif kind == "buy": vals[fact[1]] += fact[2] * fact[3]
    elif kind == "lose": vals[fact[1]] -= fact[2]
    elif kind == "split": vals[fact[1]] //= fact[2]
    elif kind == "scale": vals[fact[1]] *= fact[2]
    elif kind == "each": vals = {p: v + fact[1] for p, v in vals.items()}
    return vals


def simulate(facts, ask):
    """The answer straight from the facts: the independent check on the worked solution."""
    vals = {}
    for f in facts: vals = _apply(vals, f)
    if ask[0] == "total": return sum(vals.values())
    if ask[0] == "pair": return vals[ask[1]] + vals[ask[2]]
    if ask[0] == "diff": return vals[ask[1]] - vals[ask[2]]
    return sum(vals.values()) // ask[1]

# ----------------------------------------------------------------------------- the question

def _render_question(rng, facts, ask, names, obj, n_distractors):
    o, c1, cn = obj
    N = lambda i: names[i]
    sents = []
    if rng.random() < 0.25:
        sents.append(rng.choice(["{} collect {}.", "{} are friends who like {}.", "{} each keep some {}."])
                     .format(_join([N(i) for i in range(len(names))]), o))
    for f in facts:
        k = f[0]
        if k == "has":
            # amounts are always stated as "<name> has <n>", the form the solutions use too, so
            # finding a person's latest amount is one look-up, not a parse of varied phrasings
            t = rng.choice(["{p} has {n} {o}.", "At first, {p} has {n} {o}."])
            sents.append(t.format(p=N(f[1]), n=f[2], o=o))
        elif k == "times":
            t = rng.choice(["{p} has {k} times as many {o} as {q}.", "{p} has {k} times as many {o} as {q} does."])
            if f[3] == 2 and rng.random() < 0.5: t = "{p} has twice as many {o} as {q}."
            sents.append(t.format(p=N(f[1]), q=N(f[2]), k=f[3], o=o))
        elif k in ("more", "fewer"):
            t = rng.choice(["{p} has {k} {w} {o} than {q}.", "{p} has {k} {w} {o} than {q} does."])
            sents.append(t.format(p=N(f[1]), q=N(f[2]), k=f[3], w=k, o=o))
        elif k == "give":
            t = rng.choice(["{p} gives {k} {o} to {q}.", "Then {p} gives {q} {k} {o}.",
                            "{p} hands {k} of their {o} to {q}.", "Later, {p} passes {k} {o} to {q}."])
            sents.append(t.format(p=N(f[1]), q=N(f[2]), k=f[3], o=o))
        elif k == "buy":
            t = rng.choice(["{p} buys {a} {cn} with {b} {o} in each {c1}.",
                            "{p} buys {a} {cn} of {o}, and each {c1} holds {b}.",
                            "{p} gets {a} {cn} of {b} {o} each."])
            sents.append(t.format(p=N(f[1]), a=f[2], b=f[3], o=o, c1=c1, cn=cn))
        elif k == "lose":
            t = rng.choice(["{p} loses {k} {o}.", "{p} gives away {k} {o} to a neighbour.",
                            "{p} drops {k} {o} and loses them."])
            sents.append(t.format(p=N(f[1]), k=f[2], o=o))
        elif k == "split":
            t = rng.choice(["{p} splits their {o} into {k} equal piles and keeps only one pile.",
                            "{p} shares their {o} equally with {k} people and keeps one share."])
            sents.append(t.format(p=N(f[1]), k=f[2], o=o))
        elif k == "scale":
            t = {2: "Then the number of {o} that {p} has doubles.",
                 3: "Then the number of {o} that {p} has triples."}[f[2]]
            sents.append(t.format(p=N(f[1]), o=o))
        elif k == "each":
            t = rng.choice(["Then each of them finds {k} more {o}.", "After that, each friend gets {k} more {o}."])
            sents.append(t.format(k=f[1], o=o))
    for _ in range(n_distractors):  # facts whose numbers are never used, anywhere after the intro
        p = rng.randrange(len(names))
        t = rng.choice(["{p} is {n} years old.", "{p} also has {n} {x}.", "{p} lives {n} blocks from school.",
                        "{p} read {n} pages yesterday.", "There are {n} days left in the month."])
        used = {x for f in facts for x in f[2:]} | set(ask[1:])
        n = rng.choice([x for x in range(3, 41) if x not in used])  # a distractor never repeats a number in use
        s = t.format(p=N(p), n=n, x=rng.choice(OTHER_THINGS))
        sents.insert(rng.randint(1, len(sents)), s)
    a = ask[0]
    if a == "total":
        q = rng.choice(["How many {o} do they have altogether now?", "How many {o} do the friends have in total at the end?"])
    elif a == "pair":
        q = rng.choice(["How many {o} do {p} and {q} have together now?", "In the end, how many {o} do {p} and {q} have combined?"])
    elif a == "diff":
        q = rng.choice(["How many more {o} does {p} have than {q} now?", "At the end, how many more {o} does {p} have than {q}?"])
    else:
        q = rng.choice(["If they share all their {o} equally among {m} children, how many does each child get?",
                        "All the {o} are shared equally by {m} children. How many does each child get?"])
    sents.append(q.format(o=o, p=N(ask[1]) if a in ("pair", "diff") else "", q=N(ask[2]) if a in ("pair", "diff") else "",
                          m=ask[1] if a == "share" else ""))
    return " ".join(sents)


def _join(xs):
    return ", ".join(xs[:-1]) + " and " + xs[-1]

# ----------------------------------------------------------------------------- the worked steps

def _steps(facts, ask):
    """The worked path: for each fact (in question order), the computations it needs.
    Returns a list of blocks (fact, [(a, op, b, c, who)]) where `who` names the new value."""
    vals, blocks = {}, []
    for f in facts:
        k, st = f[0], []
        if k == "has": vals[f[1]] = f[2]
        elif k == "times": st.append((vals[f[2]], "*", f[3], f[1]))
        elif k == "more": st.append((vals[f[2]], "+", f[3], f[1]))
        elif k == "fewer": st.append((vals[f[2]], "-", f[3], f[1]))
        elif k == "give": st += [(vals[f[1]], "-", f[3], f[1]), (vals[f[2]], "+", f[3], f[2])]
        elif k == "buy": st += [(f[2], "*", f[3], "bought"), (vals[f[1]], "+", None, f[1])]
        elif k == "lose": st.append((vals[f[1]], "-", f[2], f[1]))
        elif k == "split": st.append((vals[f[1]], "/", f[2], f[1]))
        elif k == "scale": st.append((vals[f[1]], "*", f[2], f[1]))
        elif k == "each": st += [(vals[p], "+", f[1], p) for p in sorted(vals)]
        done = []
        for a, op, b, who in st:
            if b is None: b = done[-1][3]  # "buy": add what was just bought
            c = _calc(a, op, b)
            done.append((a, op, b, c, who))
            if who != "bought": vals[who] = c
        if done: blocks.append((f, done))
    st = []
    if ask[0] in ("total", "share"):  # one chain a + b + c = s: every term was found far back
        s = sum(vals.values())
        st.append((tuple(vals[p] for p in range(len(vals))), "+", None, s, "sum"))
        if ask[0] == "share": st.append((s, "/", ask[1], s // ask[1], "answer"))
    elif ask[0] == "pair": st.append((vals[ask[1]], "+", vals[ask[2]], vals[ask[1]] + vals[ask[2]], "answer"))
    else: st.append((vals[ask[1]], "-", vals[ask[2]], vals[ask[1]] - vals[ask[2]], "answer"))
    blocks.append((ask, st))
    return blocks


def _calc(a, op, b):
    if op == "+": return a + b
    if op == "-": return a - b
    if op == "*": return a * b
    assert a % b == 0, (a, b)
    return a // b


_INVERSE = {"+": "-", "-": "+", "*": "/", "/": "*"}

# ----------------------------------------------------------------------------- the two styles

def _sa_solution(rng, blocks, names, obj, detour_rate):
    """Steps in question order, each explained in words; the numbers a step uses are named by what
    they are ("what Ava had before") but never restated, so most of them are far back."""
    o, c1, cn = obj
    N = lambda i: names[i]
    pick = rng.choice
    people = _join(names)
    goal = {"total": f"how many {o} they have in total at the end",
            "share": f"how many {o} each child gets when the total is shared",
            "pair": "how many the two named people have together at the end",
            "diff": "how many more one person has than another at the end"}[blocks[-1][0][0]]
    # a plan in words (no numbers): what an unhurried writer says first, and it puts the question's
    # numbers further back
    out = [STYLE_MARKERS["sa"],
           pick([f"The people in this problem are {people}, and the question asks {goal}.",
                 f"This problem is about {people}, and I need to find {goal}."]),
           pick([f"Each fact changes the {o} of one or more people, so I will track every person as the facts come.",
                 f"I will keep track of the {o} of each person and update them fact by fact."]),
           pick(["I will go through the facts in the order the question gives them.",
                 "I will follow the facts in the same order as the question.",
                 "I will take the facts one at a time, in the order they are given."]),
           pick(["Facts that do not change the number of " + o + " do not matter here, so I skip them.",
                 "Some facts are about other things, and those I can ignore."])]
    # a person's new amount, always as "<name> has <n>" last: the latest such phrase is the current amount
    update = lambda a, op, b, c, who: f"So {N(who)} has {a} {op} {b} = {c}, and {N(who)} has {c} {o} now."
    done = []
    for f, st in blocks:
        k = f[0]
        for j, (a, op, b, c, who) in enumerate(st):
            if k in ("times", "more", "fewer"):
                rel = {"times": "a number of times as many", "more": "more", "fewer": "fewer"}[k]
                out.append(pick([f"The question says {N(who)} has {rel} {o} than {N(f[2])}.",
                                 f"Next I work out how many {o} {N(who)} has at the start, from what the question says about {N(f[2])}."]).replace("as many " + o + " than", "as many " + o + " as"))
                how = {"times": "multiply it by how many times as many", "more": "add how many more",
                       "fewer": "take away how many fewer"}[k]
                out.append(f"I take the number of {o} {N(f[2])} has and {how} {N(who)} has.")
                out.append(f"So {N(f[2])} has {a} {op} {b} = {c}, and {N(who)} has {c} {o}.")
            elif k == "give":
                if j == 0:
                    out.append(pick([f"Next, {N(f[1])} gives some {o} to {N(f[2])}.",
                                     f"The next fact is that {N(f[1])} hands some {o} over to {N(f[2])}."]))
                    out.append(pick([f"The giver ends up with fewer, so I subtract what was given from what {N(who)} had before.",
                                     f"{N(who)} had some {o} before this, and giving some away means I subtract."]))
                else:
                    out.append(pick([f"{N(who)} gets the same number of {o}, so I add them to what {N(who)} had before.",
                                     f"For {N(who)}, the gift is added to the {o} {N(who)} already had."]))
                out.append(update(a, op, b, c, who))
            elif k == "buy":
                if j == 0:
                    out.append(pick([f"Then {N(f[1])} buys some {cn} of {o}.", f"The next fact is that {N(f[1])} buys {cn} of {o}."]))
                    out.append(pick([f"First I find how many {o} are in all the {cn}: the number of {cn} times how many are in each {c1}.",
                                     f"All the {cn} together hold the number of {cn} times the {o} in one {c1}."]))
                    out.append(f"The {cn} hold {a} * {b} = {c} {o}.")
                else:
                    out.append(f"These are added to the {o} {N(who)} had before buying.")
                    out.append(update(a, op, b, c, who))
            elif k == "lose":
                out.append(pick([f"Then {N(who)} has fewer {o} than before.", f"The next fact is that some of the {o} of {N(who)} are gone."]))
                out.append(f"I subtract the lost {o} from what {N(who)} had before.")
                out.append(update(a, op, b, c, who))
            elif k == "split":
                out.append(pick([f"Then {N(who)} splits the {o} into equal parts and keeps just one part.",
                                 f"The next fact is that {N(who)} shares out the {o} equally and keeps one share."]))
                out.append(f"I divide what {N(who)} had before by the number of parts.")
                out.append(update(a, op, b, c, who))
            elif k == "scale":
                out.append(pick([f"Then the number of {o} that {N(who)} has grows.", f"The next fact is that the {o} of {N(who)} multiply."]))
                out.append(f"I multiply what {N(who)} had before by the factor from the question.")
                out.append(update(a, op, b, c, who))
            elif k == "each":
                if j == 0:
                    out.append(pick([f"Then everyone gets the same number of extra {o}.", f"The next fact gives each person a few more {o}."]))
                    out.append("I add that number to each person in turn.")
                out.append(f"{N(who)} has {a} + {b} = {c}, and {N(who)} has {c} {o} now.")
            elif k in ("total", "share"):
                if j == 0:
                    out.append(pick([f"Now all the facts are used, and I add up the {o} of everyone at the end.",
                                     f"That was the last fact, so now I add together what each person has at the end."]))
                    out.append(f"I take them in the order the question names them: {_join(names)}.")
                    # each amount looked up right after its owner's name: "<name> has <n>"
                    out.append(_join([f"{N(p)} has {x}" for p, x in enumerate(a)]) + ".")
                if who == "sum":
                    out.append(f"Together they have {' + '.join(map(str, a))} = {c} {o}.")
                else:
                    out.append(f"Last, the total is shared equally among the children, so I divide.")
                    out.append(f"Each child gets {a} / {b} = {c} {o}.")
            elif k == "pair":
                out.append(pick([f"Now all the facts are used, and I add what {N(f[1])} and {N(f[2])} have at the end.",
                                 f"That was the last fact, so I put together the {o} of {N(f[1])} and {N(f[2])}."]))
                out.append(f"{N(f[1])} has {a} and {N(f[2])} has {b}, so together they have {a} + {b} = {c} {o}.")
            else:
                out.append(pick([f"Now all the facts are used, and I compare {N(f[1])} with {N(f[2])} at the end.",
                                 f"That was the last fact, so I find how many more {N(f[1])} has than {N(f[2])}."]))
                out.append(f"{N(f[1])} has {a} and {N(f[2])} has {b}, so the difference is {a} - {b} = {c} {o}.")
            if who != "sum": done.append((a, op, b, c))
            if done and rng.random() < detour_rate:
                # a detour: re-check some step done so far by the inverse operation; a longer trace
                # with the same answer, and one that reaches back as far as the step it checks
                a, op, b, c = done[-1] if rng.random() < 0.3 or len(done) < 4 else pick(done[:-3])
                t = pick(["Let me check that step again: {c} {inv} {b} = {a}, so that is right.",
                          "To be sure, I work back from what I found: {c} {inv} {b} = {a}, which matches.",
                          "Checking an earlier result: {c} {inv} {b} = {a}, good."])
                out.append(t.format(a=a, b=b, c=c, inv=_INVERSE[op]))
    out.append(f"#### {blocks[-1][1][-1][3]}")
    return "\n".join(out)


def _wf_solution(blocks, facts, ask, names, obj, window):
    """A running list of what is still needed, restated whenever its last copy nears the window edge.
    Every operand is then either in the latest list or computed since, so it stays inside the window."""
    o, c1, cn = obj
    N = lambda i: names[i]
    out = [STYLE_MARKERS["wf"]]
    vals = {f[1]: f[2] for f in facts if f[0] == "has"}
    budget = int(window * 0.8)  # head-room because `approx_tokens` is an estimate
    since = budget + 1          # forces the first list
    for bi, (f, st) in enumerate(blocks):
        lines = []
        k = f[0]
        for a, op, b, c, who in st:
            if k == "times": lines.append(f"{N(who)} is {b} times {N(f[2])}: {N(f[2])} has {a} * {b} = {c}, so {N(who)} has {c}.")
            elif k == "more": lines.append(f"{N(who)} is {N(f[2])} plus {b}: {N(f[2])} has {a} + {b} = {c}, so {N(who)} has {c}.")
            elif k == "fewer": lines.append(f"{N(who)} is {N(f[2])} minus {b}: {N(f[2])} has {a} - {b} = {c}, so {N(who)} has {c}.")
            elif who == "bought": lines.append(f"{N(f[1])} buys {a} {cn} of {b}: {a} * {b} = {c}.")
            elif who == "sum": lines.append(f"Total: {' + '.join(map(str, a))} = {c}.")
            elif who == "answer" and k == "share": lines.append(f"Each child gets {a} / {b} = {c}.")
            elif who == "answer": lines.append(f"Answer: {a} {op} {b} = {c}.")
            else: lines.append(f"{N(who)} has {a} {op} {b} = {c}, so {N(who)} has {c} now.")
        cost = sum(approx_tokens(x) for x in lines)
        if since + cost > budget:
            summary = _wf_list(vals, blocks[bi:], names)
            out.append(summary); since = approx_tokens(summary)
        out += lines; since += cost
        for a, op, b, c, who in st:
            if isinstance(who, int): vals[who] = c
    out.append(f"#### {blocks[-1][1][-1][3]}")
    return "\n".join(out)


def _wf_list(vals, pending, names):
    """'Still need:' current amounts of the people used later, then the facts not yet used."""
    N = lambda i: names[i]
    need, todo = set(), []
    for f, st in pending:
        k = f[0]
        if k == "times": todo.append(f"{N(f[1])} is {f[3]} times {N(f[2])}"); need.add(f[2])
        elif k == "more": todo.append(f"{N(f[1])} is {N(f[2])} plus {f[3]}"); need.add(f[2])
        elif k == "fewer": todo.append(f"{N(f[1])} is {N(f[2])} minus {f[3]}"); need.add(f[2])
        elif k == "give": todo.append(f"{N(f[1])} gives {N(f[2])} {f[3]}"); need |= {f[1], f[2]}
        elif k == "buy": todo.append(f"{N(f[1])} buys {f[2]} of {f[3]}"); need.add(f[1])
        elif k == "lose": todo.append(f"{N(f[1])} loses {f[2]}"); need.add(f[1])
        elif k == "split": todo.append(f"{N(f[1])} keeps one of {f[2]} equal parts"); need.add(f[1])
        elif k == "scale": todo.append(f"{N(f[1])} times {f[2]}"); need.add(f[1])
        elif k == "each": todo.append(f"each gets {f[1]} more"); need |= set(vals)
        elif k == "total": todo.append("answer is the total"); need |= set(range(len(names)))
        elif k == "share": todo.append(f"answer is the total shared by {f[1]}"); need |= set(range(len(names)))
        elif k == "pair": todo.append(f"answer is {N(f[1])} plus {N(f[2])}"); need |= {f[1], f[2]}
        else: todo.append(f"answer is {N(f[1])} minus {N(f[2])}"); need |= {f[1], f[2]}
    have = [f"{N(p)} has {vals[p]}" for p in sorted(need) if p in vals]
    return "Still need: " + "; ".join(have + todo) + "."


# the tokenizer's pre-tokenizer (data/tokenizer.py PAT_STR) in ASCII terms; every piece is at least
# one token and nearly every generated word is exactly one, so the count is close and rarely low
_PRETOK = re.compile(r"'(?:[sdmt]|ll|ve|re)| ?[A-Za-z]+|\d| ?[^\sA-Za-z\d]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def approx_tokens(text):
    """A cheap over-estimate of the token count under data/tokenizer.tiktoken (checked in the tests),
    so the generator need not load the tokenizer that is itself trained on its output."""
    return sum(1 + (len(w) > 9) for w in _PRETOK.findall(text))

# ----------------------------------------------------------------------------- verification

STEP_RE = re.compile(r"(\d+(?: [-+*/] \d+)+) = (\d+)")  # a op b = c, or a chain a + b + c = d


def check_record(r):
    """Recompute every `a op b = c` in the solution and compare the final line to the answer."""
    steps = STEP_RE.findall(r["solution"])
    for expr, c in steps:
        t = expr.split(" ")
        if len(t) > 3 and set(t[1::2]) != {"+"}: return False  # chains are sums only
        v = int(t[0])
        for op, b in zip(t[1::2], t[2::2]):
            if op == "/" and (int(b) == 0 or v % int(b)): return False
            v = _calc(v, op, int(b))
        if v != int(c) or not 0 < v <= MAX_VALUE: return False
    last = r["solution"].rstrip().split("\n")[-1]
    return bool(steps) and last == f"#### {r['answer']}" and steps[-1][1] == r["answer"]


def solution_style(text):
    """'sa' | 'wf' | None: the style a (possibly model-written) solution chose on its first line."""
    first = text.lstrip().split("\n", 1)[0].strip()
    for style, marker in STYLE_MARKERS.items():
        if first.startswith(marker): return style
    return None

# ----------------------------------------------------------------------------- the public entry point

def _pick(rng, v):
    return rng.randint(v[0], v[1]) if isinstance(v, (tuple, list)) else v


def split_of(question):
    """Which split a question belongs to, by a hash of its text: the splits can never share a question,
    whatever the seeds."""
    return SPLITS[hashlib.blake2b(question.encode(), digest_size=8).digest()[0] % 3]


def make_problems(n, split="train", seed=0, **knobs):
    """n verified problems of `split` (deterministic in split, seed and knobs).
    Knobs (see DEFAULT_KNOBS): window_friendly_frac, n_people, n_events, distractors, detour_rate, window.
    Each record: question, solution, answer (str), style ("sa"|"wf"), n_steps, id."""
    assert split in SPLITS, split
    bad = set(knobs) - set(DEFAULT_KNOBS)
    if bad: raise TypeError(f"unknown knobs: {sorted(bad)}")
    kn = {**DEFAULT_KNOBS, **knobs}
    out, i = [], 0
    while len(out) < n:
        # one RNG per problem, seeded from the split's own stream, so records do not depend on n
        rng = random.Random(f"swarr-mathgen/{split}/{seed}/{i}")
        i += 1
        names = rng.sample(NAMES, kn["n_people"])
        obj = rng.choice(OBJECTS)
        facts, ask = _sample_facts(rng, kn["n_people"], _pick(rng, kn["n_events"]))
        question = _render_question(rng, facts, ask, names, obj, _pick(rng, kn["distractors"]))
        if approx_tokens(question) > MAX_QUESTION: continue
        if split_of(question) != split: continue  # this question belongs to another split
        blocks = _steps(facts, ask)
        style = "wf" if rng.random() < kn["window_friendly_frac"] else "sa"
        if style == "sa": solution = _sa_solution(rng, blocks, names, obj, kn["detour_rate"])
        else: solution = _wf_solution(blocks, facts, ask, names, obj, kn["window"])
        r = dict(question=question, solution=solution, answer=str(simulate(facts, ask)), style=style,
                 n_steps=sum(len(st) for _, st in blocks), id=f"{split}-{seed}-{i - 1}")
        if check_record(r): out.append(r)
    return out

# ----------------------------------------------------------------------------- CLI

def _stats(xs):
    import numpy as np
    if not xs: return "n=0"
    a = np.asarray(xs)
    p10, p50, p90 = np.percentile(a, [10, 50, 90])
    return f"mean {a.mean():6.1f}  p10 {p10:5.0f}  p50 {p50:5.0f}  p90 {p90:5.0f}  max {a.max():5d}"


def report(n=2000, seed=0, split="train", **knobs):
    """Print length and dependency-distance statistics, per style, in tokens of the default tokenizer."""
    from data.tokenizer import load_tokenizer, encode_prompt, encode_example
    from data.deps import dependency_distances, far_fraction
    enc = load_tokenizer()
    kn = {**DEFAULT_KNOBS, **knobs}
    W = kn["window"]
    print(f"{n} problems per style, split={split}, seed={seed}, window={W}, knobs={ {k: v for k, v in kn.items() if k != 'window_friendly_frac'} }")
    for style, frac in (("sa", 0.0), ("wf", 1.0)):
        recs = make_problems(n, split=split, seed=seed, **{**knobs, "window_friendly_frac": frac})
        q_len, s_len, tot, dists, far_per = [], [], [], [], []
        for r in recs:
            ids, mask = encode_example(enc, r["question"], r["solution"])
            q_len.append(len(encode_prompt(enc, r["question"])))
            s_len.append(sum(mask)); tot.append(len(ids))
            d = dependency_distances(ids, enc)
            dists += d; far_per.append(far_fraction(d, W))
        print(f"\n[{style}]  {STYLE_MARKERS[style]!r}")
        print(f"  prompt tokens     {_stats(q_len)}")
        print(f"  solution tokens   {_stats(s_len)}")
        print(f"  total tokens      {_stats(tot)}")
        print(f"  step lines        {_stats([r['n_steps'] for r in recs])}")
        print(f"  operand distance  {_stats(dists)}")
        print(f"  operands beyond window (> {W} tokens back): {far_fraction(dists, W):.1%} "
              f"of {len(dists)}; traces with any: {sum(f > 0 for f in far_per) / len(recs):.1%}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", default="train", choices=SPLITS)
    ap.add_argument("--n", type=int, default=None, help="number of problems (default 1000; --report: 2000 per style)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="JSONL file to write (default: stdout)")
    ap.add_argument("--report", action="store_true", help="print length / dependency-distance stats per style")
    ap.add_argument("--show", type=int, default=0, help="print this many problems as text")
    ap.add_argument("--window_friendly_frac", type=float, default=DEFAULT_KNOBS["window_friendly_frac"])
    ap.add_argument("--detour_rate", type=float, default=DEFAULT_KNOBS["detour_rate"])
    ap.add_argument("--window", type=int, default=DEFAULT_KNOBS["window"])
    ap.add_argument("--n_people", type=int, default=DEFAULT_KNOBS["n_people"])
    ap.add_argument("--n_events", type=int, nargs=2, default=DEFAULT_KNOBS["n_events"], metavar=("LO", "HI"))
    ap.add_argument("--distractors", type=int, nargs=2, default=DEFAULT_KNOBS["distractors"], metavar=("LO", "HI"))
    args = ap.parse_args()
    knobs = dict(detour_rate=args.detour_rate, window=args.window, n_people=args.n_people,
                 n_events=tuple(args.n_events), distractors=tuple(args.distractors))
    if args.report:
        report(n=args.n or 2000, seed=args.seed, split=args.split, **knobs); return
    recs = make_problems(args.show or args.n or 1000, split=args.split, seed=args.seed,
                         window_friendly_frac=args.window_friendly_frac, **knobs)
    if args.show:
        for r in recs: print(f"--- {r['id']} ({r['style']}, answer {r['answer']})\n{r['question']}\n\n{r['solution']}\n")
        return
    lines = "".join(json.dumps(r) + "\n" for r in recs)
    if args.out:
        with open(args.out, "w") as f: f.write(lines)
        print(f"wrote {len(recs)} problems to {args.out}")
    else:
        print(lines, end="")


if __name__ == "__main__":
    main()
