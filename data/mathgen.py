"""
Procedural grade-school word problems with verified worked solutions in two styles.

    python -m data.mathgen --split train --n 1000 --out train.jsonl   # write JSONL
    python -m data.mathgen --show 2                                   # print a few examples
    python -m data.deps                                               # length / dependency stats

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
        every number a step uses is within the last `window` tokens (any window >= 32). At small
        windows a list restates only the next fact or two, and may come mid-fact. No detours.
Because the first line fixes the style, the style is a choice the model samples at its first
line, which on-policy RL under sliding-window attention can shift.

Depends on: common (the CLI's one-line errors, typed flags and claimed outputs; check_knobs' errors).
"""
import functools
import hashlib
import json
import math
import random
import re

from common import COUNT, FRACTION, POSITIVE_INT, ArgumentParser, claim_outputs, fail, write_atomic

STYLE_MARKERS = {
    "sa": "Let me solve this step by step.",
    "wf": "Let me keep a running list of what I still need.",
}
SPLITS = ("train", "val", "test")
MAX_VALUE = 999  # every quantity, given or computed, stays in 1..999: small-model arithmetic
# approx_tokens caps on a question: never over MAX_QUESTION (~110 real tokens with its 2 special
# tokens), and QUESTION_MARGIN under the window, room for the special tokens, the style's first line
# and the first list's opening words, so that the first list starts within the window of the question's
# start and can copy its numbers (108 = 128 - 20: the default window takes the plain cap)
MAX_QUESTION = 108
QUESTION_MARGIN = 20

DEFAULT_KNOBS = dict(
    window_friendly_frac=0.2,  # share of "wf" solutions
    n_people=3,                # people in each problem
    n_events=(2, 3),           # events after the starting amounts (int or inclusive range)
    distractors=(0, 1),        # facts with numbers the solution never uses
    detour_rate=0.3,           # chance that an "sa" step is followed by a re-check
    window=128,                # token window the "wf" style keeps every operand inside
    kinds=None,                # fact and question kinds allowed (None: all; e.g. only the +/- ones)
    sa_prose=True,             # "sa" traces state a plan and explain each step (False: the computations
                               # only; "plan": the plan, then the computations)
    max_value=MAX_VALUE,       # every amount a person has stays <= this (smaller: easier arithmetic)
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

# ----------------------------------------------------------------------------- the kinds of fact
#
# Each kind of fact, and each kind of question ("ask"), is one entry below that says everything about
# it. A fact is a tuple (kind, *fields), its fields named by "fields": "p" and "q" are people (indices
# into the names), the others numbers. The entries' keys:
#   start       (rng, amounts, p, q) -> a starting amount of p, maybe from q's (only q < p is known)
#   event       (rng, amounts, p, n_people) -> an event for p drawn with odds "weight", or None when
#               p's amount does not allow one now
#   apply       (amounts, *fields) -> {person: new amount}: the path of `simulate`; an ask has instead
#               "answer" (amounts, *fields) -> the answer, and "goal", the words the "sa" plan uses
#   say         (rng, *fields) -> the question's sentence, as a template (see `_fields`)
#   steps       (amounts, *fields) -> its computations [(a, op, b, who)], `who` the person whose new
#               amount it finds: the path of the worked solutions, kept apart from "apply" on purpose
#   sa, wf      the two styles' lines, one list per step (the last one serves any further steps); in
#               "sa" a list of templates is a choice of wordings, made with the problem's rng
#   todo        its item in the "wf" list of what is still needed
#   need        the people whose amounts each step reads ("all": everyone), one entry per step as in "sa"
# The templates name {o} {c1} {cn} (object, container, containers), the fields ({p} {q} by name), and
# a step's {a} {op} {b} = {c} and {who}.


def _one_of(*templates):
    return lambda rng, *fields: rng.choice(templates)


def _say_times(rng, p, q, k):
    t = rng.choice(["{p} has {k} times as many {o} as {q}.", "{p} has {k} times as many {o} as {q} does."])
    if k == 2 and rng.random() < 0.5:
        t = "{p} has twice as many {o} as {q}."
    return t


def _start_fewer(rng, vals, p, q):
    if vals[q] < 6:  # q has too few to have some fewer than them: a "more" fact instead
        return ("more", p, q, rng.randint(3, 25))
    return ("fewer", p, q, rng.randint(3, min(25, vals[q] - 3)))


def _event_give(rng, vals, p, n_people):
    q = rng.choice([i for i in range(n_people) if i != p])  # drawn even when p cannot give: same draws
    if vals[p] < 4:
        return None
    return ("give", p, q, rng.randint(2, min(30, vals[p] - 1)))


def _event_split(rng, vals, p, n_people):
    ks = [k for k in (2, 3, 4, 5) if vals[p] % k == 0 and vals[p] // k >= 2]
    return ("split", p, rng.choice(ks)) if ks else None


# a person's new amount, always as "<name> has <n>" last: the latest such phrase is the current amount
_SA_UPDATE = "So {who} has {a} {op} {b} = {c}, and {who} has {c} {o} now."
_WF_UPDATE = "{who} has {a} {op} {b} = {c}, so {who} has {c} now."
# the starting amounts found from another person's (times, more, fewer)
_SA_FROM_WHOM = "Next I work out how many {o} {p} has at the start, from what the question says about {q}."
_SA_FROM = "So {q} has {a} {op} {b} = {c}, and {p} has {c} {o}."

FACTS = {
    "has": dict(
        fields=("p", "n"),
        start=lambda rng, vals, p, q: ("has", p, rng.randint(8, 60)),
        apply=lambda vals, p, n: {p: n},
        # amounts are always stated as "<name> has <n>", the form the solutions use too, so
        # finding a person's latest amount is one look-up, not a parse of varied phrasings
        say=_one_of("{p} has {n} {o}.", "At first, {p} has {n} {o}."),
        steps=lambda vals, p, n: [],  # given: the solutions start from these amounts (`_given`)
    ),
    "times": dict(
        fields=("p", "q", "k"),
        start=lambda rng, vals, p, q: ("times", p, q, rng.randint(2, 4)),
        apply=lambda vals, p, q, k: {p: vals[q] * k},
        say=_say_times,
        steps=lambda vals, p, q, k: [(vals[q], "*", k, p)],
        sa=[[["The question says {p} has a number of times as many {o} as {q}.", _SA_FROM_WHOM],
             "I take the number of {o} {q} has and multiply it by how many times as many {p} has.",
             _SA_FROM]],
        wf=["{p} is {b} times {q}: {q} has {a} * {b} = {c}, so {p} has {c}."],
        todo="{p} is {k} times {q}", need=[("q",)],
    ),
    "more": dict(
        fields=("p", "q", "k"),
        start=lambda rng, vals, p, q: ("more", p, q, rng.randint(3, 25)),
        apply=lambda vals, p, q, k: {p: vals[q] + k},
        say=_one_of("{p} has {k} more {o} than {q}.", "{p} has {k} more {o} than {q} does."),
        steps=lambda vals, p, q, k: [(vals[q], "+", k, p)],
        sa=[[["The question says {p} has more {o} than {q}.", _SA_FROM_WHOM],
             "I take the number of {o} {q} has and add how many more {p} has.",
             _SA_FROM]],
        wf=["{p} is {q} plus {b}: {q} has {a} + {b} = {c}, so {p} has {c}."],
        todo="{p} is {q} plus {k}", need=[("q",)],
    ),
    "fewer": dict(
        fields=("p", "q", "k"),
        start=_start_fewer,
        apply=lambda vals, p, q, k: {p: vals[q] - k},
        say=_one_of("{p} has {k} fewer {o} than {q}.", "{p} has {k} fewer {o} than {q} does."),
        steps=lambda vals, p, q, k: [(vals[q], "-", k, p)],
        sa=[[["The question says {p} has fewer {o} than {q}.", _SA_FROM_WHOM],
             "I take the number of {o} {q} has and take away how many fewer {p} has.",
             _SA_FROM]],
        wf=["{p} is {q} minus {b}: {q} has {a} - {b} = {c}, so {p} has {c}."],
        todo="{p} is {q} minus {k}", need=[("q",)],
    ),
    "give": dict(
        fields=("p", "q", "k"),
        event=_event_give, weight=3,
        apply=lambda vals, p, q, k: {p: vals[p] - k, q: vals[q] + k},
        say=_one_of("{p} gives {k} {o} to {q}.", "Then {p} gives {q} {k} {o}.",
                    "{p} hands {k} of their {o} to {q}.", "Later, {p} passes {k} {o} to {q}."),
        steps=lambda vals, p, q, k: [(vals[p], "-", k, p), (vals[q], "+", k, q)],
        sa=[[["Next, {p} gives some {o} to {q}.", "The next fact is that {p} hands some {o} over to {q}."],
             ["The giver ends up with fewer, so I subtract what was given from what {p} had before.",
              "{p} had some {o} before this, and giving some away means I subtract."],
             _SA_UPDATE],
            [["{q} gets the same number of {o}, so I add them to what {q} had before.",
              "For {q}, the gift is added to the {o} {q} already had."],
             _SA_UPDATE]],
        wf=[_WF_UPDATE],
        todo="{p} gives {q} {k}", need=[("p",), ("q",)],
    ),
    "buy": dict(
        fields=("p", "packs", "per"),
        event=lambda rng, vals, p, n_people: ("buy", p, rng.randint(2, 6), rng.randint(3, 12)), weight=3,
        apply=lambda vals, p, packs, per: {p: vals[p] + packs * per},
        say=_one_of("{p} buys {packs} {cn} with {per} {o} in each {c1}.",
                    "{p} buys {packs} {cn} of {o}, and each {c1} holds {per}.",
                    "{p} gets {packs} {cn} of {per} {o} each."),
        # first what was bought (`who` is no person), then p's new amount
        steps=lambda vals, p, packs, per: [(packs, "*", per, "bought"), (vals[p], "+", packs * per, p)],
        sa=[[["Then {p} buys some {cn} of {o}.", "The next fact is that {p} buys {cn} of {o}."],
             ["First I find how many {o} are in all the {cn}: "
              "the number of {cn} times how many are in each {c1}.",
              "All the {cn} together hold the number of {cn} times the {o} in one {c1}."],
             "The {cn} hold {a} * {b} = {c} {o}."],
            ["These are added to the {o} {p} had before buying.", _SA_UPDATE]],
        wf=["{p} buys {a} {cn} of {b}: {a} * {b} = {c}.", _WF_UPDATE],
        todo="{p} buys {packs} of {per}", need=[(), ("p",)],
    ),
    "lose": dict(
        fields=("p", "k"),
        event=lambda rng, vals, p, n_people: (
            ("lose", p, rng.randint(2, min(25, vals[p] - 2))) if vals[p] >= 6 else None),
        weight=2,
        apply=lambda vals, p, k: {p: vals[p] - k},
        say=_one_of("{p} loses {k} {o}.", "{p} gives away {k} {o} to a neighbour.",
                    "{p} drops {k} {o} and loses them."),
        steps=lambda vals, p, k: [(vals[p], "-", k, p)],
        sa=[[["Then {p} has fewer {o} than before.",
              "The next fact is that some of the {o} of {p} are gone."],
             "I subtract the lost {o} from what {p} had before.",
             _SA_UPDATE]],
        wf=[_WF_UPDATE],
        todo="{p} loses {k}", need=[("p",)],
    ),
    "split": dict(
        fields=("p", "k"),
        event=_event_split, weight=1,
        apply=lambda vals, p, k: {p: vals[p] // k},
        say=_one_of("{p} splits their {o} into {k} equal piles and keeps only one pile.",
                    "{p} shares their {o} equally with {k} people and keeps one share."),
        steps=lambda vals, p, k: [(vals[p], "/", k, p)],
        sa=[[["Then {p} splits the {o} into equal parts and keeps just one part.",
              "The next fact is that {p} shares out the {o} equally and keeps one share."],
             "I divide what {p} had before by the number of parts.",
             _SA_UPDATE]],
        wf=[_WF_UPDATE],
        todo="{p} keeps one of {k} equal parts", need=[("p",)],
    ),
    "scale": dict(
        fields=("p", "k"),
        event=lambda rng, vals, p, n_people: (
            ("scale", p, rng.choice([2, 2, 3])) if vals[p] * 2 <= 300 else None),
        weight=1,
        apply=lambda vals, p, k: {p: vals[p] * k},
        say=lambda rng, p, k: "Then the number of {o} that {p} has " + {2: "doubles.", 3: "triples."}[k],
        steps=lambda vals, p, k: [(vals[p], "*", k, p)],
        sa=[[["Then the number of {o} that {p} has grows.", "The next fact is that the {o} of {p} multiply."],
             "I multiply what {p} had before by the factor from the question.",
             _SA_UPDATE]],
        wf=[_WF_UPDATE],
        todo="{p} times {k}", need=[("p",)],
    ),
    "each": dict(  # everyone gets k more: one step per person
        fields=("k",),
        event=lambda rng, vals, p, n_people: ("each", rng.randint(2, 15)), weight=1,
        apply=lambda vals, k: {i: x + k for i, x in vals.items()},
        say=_one_of("Then each of them finds {k} more {o}.", "After that, each friend gets {k} more {o}."),
        steps=lambda vals, k: [(vals[i], "+", k, i) for i in sorted(vals)],
        sa=[[["Then everyone gets the same number of extra {o}.",
              "The next fact gives each person a few more {o}."],
             "I add that number to each person in turn.",
             "{who} has {a} + {b} = {c}, and {who} has {c} {o} now."],
            ["{who} has {a} + {b} = {c}, and {who} has {c} {o} now."]],
        wf=[_WF_UPDATE],
        todo="each gets {k} more", need=["all"],
    ),
}


def _sum_step(vals):
    """One chain a + b + c = s over everyone, in name order: every term was found far back."""
    return (tuple(vals[i] for i in range(len(vals))), "+", None, "sum")


# the "sa" lines for the sum of everyone's amounts; each amount is looked up right after its owner's
# name ("<name> has <n>" in {amounts})
_SA_SUM = [["Now all the facts are used, and I add up the {o} of everyone at the end.",
            "That was the last fact, so now I add together what each person has at the end."],
           "I take them in the order the question names them: {people}.",
           "{amounts}.",
           "Together they have {terms} = {c} {o}."]

ASKS = {
    "total": dict(
        fields=(),
        answer=lambda vals: sum(vals.values()),
        say=_one_of("How many {o} do they have altogether now?",
                    "How many {o} do the friends have in total at the end?"),
        goal="how many {o} they have in total at the end",
        steps=lambda vals: [_sum_step(vals)],
        sa=[_SA_SUM],
        wf=["Total: {terms} = {c}."],
        todo="answer is the total", need=["all"],
    ),
    "share": dict(
        fields=("m",),
        answer=lambda vals, m: sum(vals.values()) // m,
        say=_one_of("If they share all their {o} equally among {m} children, how many does each child get?",
                    "All the {o} are shared equally by {m} children. How many does each child get?"),
        goal="how many {o} each child gets when the total is shared",
        steps=lambda vals, m: [_sum_step(vals), (sum(vals.values()), "/", m, "answer")],
        sa=[_SA_SUM,
            ["Last, the total is shared equally among the children, so I divide.",
             "Each child gets {a} / {b} = {c} {o}."]],
        wf=["Total: {terms} = {c}.", "Each child gets {a} / {b} = {c}."],
        todo="answer is the total shared by {m}", need=["all", ()],
    ),
    "pair": dict(
        fields=("p", "q"),
        answer=lambda vals, p, q: vals[p] + vals[q],
        say=_one_of("How many {o} do {p} and {q} have together now?",
                    "In the end, how many {o} do {p} and {q} have combined?"),
        goal="how many the two named people have together at the end",
        steps=lambda vals, p, q: [(vals[p], "+", vals[q], "answer")],
        sa=[[["Now all the facts are used, and I add what {p} and {q} have at the end.",
              "That was the last fact, so I put together the {o} of {p} and {q}."],
             "{p} has {a} and {q} has {b}, so together they have {a} + {b} = {c} {o}."]],
        wf=["Answer: {a} {op} {b} = {c}."],
        todo="answer is {p} plus {q}", need=[("p", "q")],
    ),
    "diff": dict(
        fields=("p", "q"),
        answer=lambda vals, p, q: vals[p] - vals[q],
        say=_one_of("How many more {o} does {p} have than {q} now?",
                    "At the end, how many more {o} does {p} have than {q}?"),
        goal="how many more one person has than another at the end",
        steps=lambda vals, p, q: [(vals[p], "-", vals[q], "answer")],
        sa=[[["Now all the facts are used, and I compare {p} with {q} at the end.",
              "That was the last fact, so I find how many more {p} has than {q}."],
             "{p} has {a} and {q} has {b}, so the difference is {a} - {b} = {c} {o}."]],
        wf=["Answer: {a} {op} {b} = {c}."],
        todo="answer is {p} minus {q}", need=[("p", "q")],
    ),
}
KINDS = {**FACTS, **ASKS}


def _fields(fact, names, obj, step=None):
    """What the templates can name: the object words, the fact's fields (people by name), and the step."""
    o, c1, cn = obj
    out = dict(o=o, c1=c1, cn=cn, people=_join(names))
    for key, x in zip(KINDS[fact[0]]["fields"], fact[1:]):
        out[key] = names[x] if key in ("p", "q") else x
    if step:
        a, op, b, c, who = step
        out.update(a=a, op=op, b=b, c=c, who=names[who] if isinstance(who, int) else who)
        if who == "sum":  # `a` holds everyone's amounts, in name order
            out["terms"] = " + ".join(map(str, a))
            out["amounts"] = _join([f"{names[i]} has {x}" for i, x in enumerate(a)])
    return out


def _for_step(per_step, j):
    return per_step[min(j, len(per_step) - 1)]  # the last entry serves any further steps


def _join(xs):
    return ", ".join(xs[:-1]) + " and " + xs[-1]

# ----------------------------------------------------------------------------- sampling the facts

def _sample_facts(rng, n_people, n_events, kinds=None, max_value=MAX_VALUE):
    """Facts in question order; the amounts are tracked while sampling so every event is valid.
    kinds: the allowed kinds (None: all; filtering keeps the draws of the unfiltered table).
    Returns (facts, None) when no problem fits the knobs with these draws: the caller resamples."""
    ok = (lambda kind: True) if kinds is None else (lambda kind: kind in kinds)
    relative = [kind for kind in ("times", "more", "fewer") if ok(kind)]
    vals, facts = {}, []
    for p in range(n_people):  # starting amounts: given, or relative to someone already known
        kind = "has" if p == 0 or rng.random() < 0.4 or not relative else rng.choice(relative)
        q = rng.randrange(p) if p else 0
        facts.append(FACTS[kind]["start"](rng, vals, p, q))
        vals = _apply(vals, facts[-1])
    if max(vals.values()) > max_value:
        return facts, None
    events = [kind for kind in FACTS if "event" in FACTS[kind] and ok(kind)]  # table order fixes the draws
    weights = [FACTS[kind]["weight"] for kind in events]
    tries = 0
    while len(facts) < n_people + n_events:
        tries += 1
        if tries > 1000:   # no valid event left (a small max_value, many people): give up on these draws
            return facts, None
        kind = rng.choices(events, weights)[0]
        p = rng.randrange(n_people)  # drawn for every kind, "each" too, so the problems stay as they were
        fact = FACTS[kind]["event"](rng, vals, p, n_people)
        # no fact twice in a row (it would read as a typo), and one "each" at most (a step per person)
        if fact is None or fact == facts[-1] or (kind == "each" and any(f[0] == "each" for f in facts)):
            continue
        new = _apply(vals, fact)
        if max(new.values()) <= max_value:
            facts.append(fact)
            vals = new
    # the question: the last fact, also "simulated"
    total = sum(vals.values())
    asks = [("total",), ("pair",) + tuple(rng.sample(range(n_people), 2))]
    p, q = sorted(range(n_people), key=lambda i: -vals[i])[:2]
    if vals[p] > vals[q]:
        asks.append(("diff", p, q))
    shares = [m for m in (2, 3, 4, 5, 6) if total % m == 0 and total // m >= 2]
    if shares and ok("share"):
        asks.append(("share", rng.choice(shares)))
    asks = [a for a in asks if ok(a[0])]
    return facts, (rng.choice(asks) if asks else None)   # None: no allowed question fits; resample


def _apply(vals, fact):
    """The amounts after one fact (a new dict; used while sampling and by `simulate`)."""
    return {**vals, **FACTS[fact[0]]["apply"](vals, *fact[1:])}


def simulate(facts, ask):
    """The answer straight from the facts: the independent check on the worked solution."""
    vals = {}
    for f in facts:
        vals = _apply(vals, f)
    return ASKS[ask[0]]["answer"](vals, *ask[1:])

# ----------------------------------------------------------------------------- the question

def _render_question(rng, facts, ask, names, obj, n_distractors):
    """The question's text, and the part of it that no resampling can shorten: its facts and question
    without the intro sentence and the distractors."""
    o = obj[0]
    sents = []
    if rng.random() < 0.25:
        sents.append(rng.choice(["{} collect {}.", "{} are friends who like {}.", "{} each keep some {}."])
                     .format(_join(names), o))
    said = [FACTS[f[0]]["say"](rng, *f[1:]).format(**_fields(f, names, obj)) for f in facts]
    sents += said
    for _ in range(n_distractors):  # facts whose numbers are never used, anywhere after the intro
        p = rng.randrange(len(names))
        t = rng.choice(["{p} is {n} years old.", "{p} also has {n} {x}.", "{p} lives {n} blocks from school.",
                        "{p} read {n} pages yesterday.", "There are {n} days left in the month."])
        used = {x for f in facts for x in f[2:]} | set(ask[1:])
        # a distractor never repeats a number in use
        n = rng.choice([x for x in range(3, 41) if x not in used])
        s = t.format(p=names[p], n=n, x=rng.choice(OTHER_THINGS))
        sents.insert(rng.randint(1, len(sents)), s)
    said.append(ASKS[ask[0]]["say"](rng, *ask[1:]).format(**_fields(ask, names, obj)))
    sents.append(said[-1])
    return " ".join(sents), " ".join(said)

# ----------------------------------------------------------------------------- the worked steps

def _given(facts):
    """The amounts the question states outright: no step computes them."""
    return {f[1]: f[2] for f in facts if f[0] == "has"}


def _steps(facts, ask):
    """The worked path: for each fact (in question order) and the question, the computations it needs.
    Returns a list of blocks (fact, [(a, op, b, c, who)]) where `who` names the new value."""
    vals, blocks = _given(facts), []
    for f in facts + [ask]:
        done = []
        for a, op, b, who in KINDS[f[0]]["steps"](vals, *f[1:]):
            c = sum(a) if who == "sum" else _calc(a, op, b)  # the sum is a chain a + b + ... = c
            done.append((a, op, b, c, who))
            if isinstance(who, int):
                vals[who] = c
        if done:
            blocks.append((f, done))
    return blocks


def _calc(a, op, b):
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    assert a % b == 0, (a, b)
    return a // b


_INVERSE = {"+": "-", "-": "+", "*": "/", "/": "*"}

# ----------------------------------------------------------------------------- the two styles

def _fill(rng, lines, fields):
    """Template lines filled in; a list among them is a choice of wordings."""
    return [(rng.choice(t) if isinstance(t, list) else t).format(**fields) for t in lines]


def _sa_solution(rng, blocks, names, obj, detour_rate, prose=True):
    """Steps in question order, each explained in words; the numbers a step uses are named by what
    they are ("what Ava had before") but never restated, so most of them are far back.
    prose=False: no plan and no explanations, only each step's computation line (shorter traces for
    small models, whose operands still lie a small window back). prose="plan": the plan, then only the
    computation lines: half the length of the full trace, and the plan still puts the question's
    numbers ~70 tokens back (far, for the small windows of the CPU preset)."""
    o = obj[0]
    pick = rng.choice
    people = _join(names)
    goal = ASKS[blocks[-1][0][0]]["goal"].format(o=o)
    out = [STYLE_MARKERS["sa"]]
    if prose in (True, "plan"):   # a plan in words (no numbers): what an unhurried writer says first; it puts numbers further back
        out += [pick([f"The people in this problem are {people}, and the question asks {goal}.",
                      f"This problem is about {people}, and I need to find {goal}."]),
                pick([f"Each fact changes the {o} of one or more people, "
                      "so I will track every person as the facts come.",
                      f"I will keep track of the {o} of each person and update them fact by fact."]),
                pick(["I will go through the facts in the order the question gives them.",
                      "I will follow the facts in the same order as the question.",
                      "I will take the facts one at a time, in the order they are given."]),
                pick(["Facts that do not change the number of " + o + " do not matter here, so I skip them.",
                      "Some facts are about other things, and those I can ignore."])]
    done = []
    for f, st in blocks:
        for j, step in enumerate(st):
            lines = _for_step(KINDS[f[0]]["sa"], j)
            out += _fill(rng, lines if prose is True else lines[-1:], _fields(f, names, obj, step))
            a, op, b, c, who = step
            if who != "sum":
                done.append((a, op, b, c))
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


def _wf_solution(blocks, facts, names, obj, window):
    """A running list of what is still needed, restated whenever its last copy nears the window edge,
    so every operand is in the latest list or computed since, and within the last `window` tokens.
    A list restates as much of what is left as fits: at small windows only the next fact or two, and
    one more list is due as soon as the facts it restated are used up."""
    out = [STYLE_MARKERS["wf"]]
    vals = _given(facts)
    budget = int(window * 0.8)  # head-room because `approx_tokens` is an estimate
    since = 0                   # approx tokens since the start of the latest list
    covered = 0                 # blocks before this one are the ones the latest list restated
    for bi, (f, st) in enumerate(blocks):
        lines = [_for_step(KINDS[f[0]]["wf"], j).format(**_fields(f, names, obj, step))
                 for j, step in enumerate(st)]
        for j, (line, step) in enumerate(zip(lines, st)):
            rest = lines[j:]  # this fact's lines still to write
            # a list when the latest one did not restate this fact, when the whole block would end
            # beyond the budget (the one rule at large windows), or when a line, even mid-block, would
            # look back further than the budget (small windows: a list and its block do not fit)
            if (bi >= covered or (j == 0 and since + sum(map(approx_tokens, rest)) > budget)
                    or _reach(out + [line], len(out)) > budget):
                pending = [(f, range(j, len(st)))] + [(g, range(len(gst))) for g, gst in blocks[bi + 1:]]
                summary, n = _wf_list_that_fits(out, vals, pending, rest, names, obj, budget)
                out.append(summary)
                since, covered = approx_tokens(summary), bi + n
            out.append(line)
            since += approx_tokens(line)
            a, op, b, c, who = step
            if isinstance(who, int):
                vals[who] = c
    out.append(f"#### {blocks[-1][1][-1][3]}")
    return "\n".join(out)


def _wf_list_that_fits(out, vals, pending, lines, names, obj, budget):
    """The longest list, restating the most pending facts (the one under way first), after which
    `lines` still find their operands within the budget; at least that one fact. Returns the list and
    how many facts it restates."""
    for n in range(len(pending), 0, -1):
        summary = _wf_list(vals, pending[:n], names, obj)
        if n == 1 or _reach(out + [summary] + lines, len(out) + 1) <= budget:
            return summary, n


def _wf_list(vals, pending, names, obj):
    """'Still need:' current amounts of the people the pending steps read, then their facts.
    `pending`: [(fact, indices of its steps still to do)]."""
    need, todo = set(), []
    for f, js in pending:
        kind = KINDS[f[0]]
        todo.append(kind["todo"].format(**_fields(f, names, obj)))
        fields = dict(zip(kind["fields"], f[1:]))
        for j in js:
            who = _for_step(kind["need"], j)
            need |= set(range(len(names))) if who == "all" else {fields[x] for x in who}
    have = [f"{names[p]} has {vals[p]}" for p in sorted(need) if p in vals]  # known so far
    return "Still need: " + "; ".join(have + todo) + "."


# the tokenizer's pre-tokenizer (data/tokenizer.py PAT_STR) in ASCII terms; every piece is at least
# one token and nearly every generated word is exactly one, so the count is close and rarely low
_PRETOK = re.compile(r"'(?:[sdmt]|ll|ve|re)| ?[A-Za-z]+|\d| ?[^\sA-Za-z\d]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_NUMBER = re.compile(r"\d+")


def approx_tokens(text):
    """A cheap over-estimate of the token count under data/tokenizer.tiktoken (checked in the tests),
    so the generator need not load the tokenizer that is itself trained on its output."""
    return sum(1 + (len(w) > 9) for w in _PRETOK.findall(text))


@functools.lru_cache(maxsize=1 << 14)
def _numbers(line):
    """(approx tokens of the line and its newline, [(approx token offset, number, is a step operand)])."""
    operands = {m.start(1) + n.start() for m in STEP_RE.finditer(line) for n in _NUMBER.finditer(m.group(1))}
    starts = {m.start(): m.group() for m in _NUMBER.finditer(line)}  # a digit always starts a piece
    numbers, at = [], 0
    for piece in _PRETOK.finditer(line):  # counted as approx_tokens counts
        if piece.start() in starts:
            numbers.append((at, starts[piece.start()], piece.start() in operands))
        at += 1 + (len(piece.group()) > 9)
    return at + 1, numbers


def _reach(lines, first):
    """How far back, in approx tokens, the step operands of lines[first:] look for the latest earlier
    mention of their number (what data/deps.py measures); a number not in `lines` before is infinitely
    far, so the question never counts as a source: the lists restate what it says."""
    last, far, pos = {}, 0, 0
    for i, line in enumerate(lines):
        n_tokens, numbers = _numbers(line)
        for at, number, operand in numbers:
            if operand and i >= first:
                far = max(far, pos + at - last.get(number, -math.inf))
            last[number] = pos + at
        pos += n_tokens
    return far

# ----------------------------------------------------------------------------- verification

STEP_RE = re.compile(r"(\d+(?: [-+*/] \d+)+) = (\d+)")  # a op b = c, or a chain a + b + c = d


def check_record(r):
    """Recompute every `a op b = c` in the solution and compare the final line to the answer."""
    steps = STEP_RE.findall(r["solution"])
    for expr, c in steps:
        t = expr.split(" ")
        if len(t) > 3 and set(t[1::2]) != {"+"}:
            return False  # chains are sums only: no precedence questions
        v = int(t[0])
        for op, b in zip(t[1::2], t[2::2]):
            if op == "/" and (int(b) == 0 or v % int(b)):
                return False
            v = _calc(v, op, int(b))
        if v != int(c) or not 0 < v <= MAX_VALUE:
            return False
    last = r["solution"].rstrip().split("\n")[-1]
    return bool(steps) and last == f"#### {r['answer']}" and steps[-1][1] == r["answer"]


def solution_style(text):
    """'sa' | 'wf' | None: the style a (possibly model-written) solution chose on its first line."""
    first = text.lstrip().split("\n", 1)[0].strip()
    for style, marker in STYLE_MARKERS.items():
        if first.startswith(marker):
            return style
    return None

# ----------------------------------------------------------------------------- the public entry point

def _pick(rng, v):
    return rng.randint(v[0], v[1]) if isinstance(v, (tuple, list)) else v


def split_of(question):
    """Which split a question belongs to, by a hash of its text: the splits can never share a question,
    whatever the seeds."""
    return SPLITS[hashlib.blake2b(question.encode(), digest_size=8).digest()[0] % 3]


def check_kinds(kinds):
    """A kinds knob must name kinds of the table and leave a start ("has"), an event and a question."""
    kinds = tuple(kinds)
    bad = sorted(set(kinds) - set(KINDS))
    if bad:
        raise ValueError(f"unknown kinds {bad}; the table has {sorted(KINDS)}")
    if "has" not in kinds or not any("event" in FACTS[k] for k in kinds if k in FACTS) \
            or not any(k in ASKS for k in kinds):
        raise ValueError(f"kinds {list(kinds)} must include 'has', an event kind and a question kind")
    return kinds


def make_problems(n, split="train", seed=0, **knobs):
    """n verified problems of `split` (deterministic in split, seed and knobs).
    Knobs (see DEFAULT_KNOBS): window_friendly_frac, n_people, n_events, distractors, detour_rate, window,
    kinds, sa_prose, max_value.
    Each record: question, solution, answer (str), style ("sa"|"wf"), n_steps, id."""
    assert split in SPLITS, split
    bad = set(knobs) - set(DEFAULT_KNOBS)
    if bad:
        raise TypeError(f"unknown knobs: {sorted(bad)}")
    kn = {**DEFAULT_KNOBS, **knobs}
    if kn["kinds"] is not None:
        kn["kinds"] = check_kinds(kn["kinds"])
    out, i = [], 0
    while len(out) < n:
        if i >= 1000 * (len(out) + 1):   # fewer than 1 in 1000 draws kept: these knobs admit (almost) none
            raise ValueError(f"these knobs give almost no problem that fits (kept {len(out)} of {i} drawn): "
                             "fewer people, events or distractors, or a larger window")
        # one RNG per problem, seeded from the split's own stream, so records do not depend on n
        rng = random.Random(f"swarr-mathgen/{split}/{seed}/{i}")
        i += 1
        names = rng.sample(NAMES, kn["n_people"])
        obj = rng.choice(OBJECTS)
        facts, ask = _sample_facts(rng, kn["n_people"], _pick(rng, kn["n_events"]), kn["kinds"],
                                   kn["max_value"])
        if ask is None:
            continue
        question, facts_said = _render_question(rng, facts, ask, names, obj, _pick(rng, kn["distractors"]))
        # a question must fit the window, unless its facts alone do not (small windows, long problems):
        # then it is kept only when it is as short as they are (no intro, no distractors), and the
        # first "wf" list, right after it, restates every number the steps use
        cap = min(MAX_QUESTION, max(kn["window"] - QUESTION_MARGIN, approx_tokens(facts_said)))
        if approx_tokens(question) > cap or split_of(question) != split:
            continue  # too long for the window, or a question of another split
        blocks = _steps(facts, ask)
        style = "wf" if rng.random() < kn["window_friendly_frac"] else "sa"
        if style == "sa":
            solution = _sa_solution(rng, blocks, names, obj, kn["detour_rate"], kn["sa_prose"])
        else:
            solution = _wf_solution(blocks, facts, names, obj, kn["window"])
        r = dict(question=question, solution=solution, answer=str(simulate(facts, ask)), style=style,
                 n_steps=sum(len(st) for _, st in blocks), id=f"{split}-{seed}-{i - 1}")
        if check_record(r):
            out.append(r)
    return out


def check_knobs(knobs, where="data knobs"):
    """Generator knobs (DEFAULT_KNOBS) within their meaning, else one line: a range the
    generator would choke on ("empty range for randrange()") is refused before it is drawn from."""
    unknown = sorted(set(knobs) - set(DEFAULT_KNOBS))
    if unknown:
        fail(f"{where}: unknown knobs {unknown}; known: {sorted(DEFAULT_KNOBS)}")
    is_int = lambda v: isinstance(v, int) and not isinstance(v, bool)
    for k, v in knobs.items():
        if k in ("window_friendly_frac", "detour_rate"):
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1
            want = "a number in [0, 1]"
        elif k == "window":
            ok, want = is_int(v) and v >= 1, "an integer >= 1"
        elif k == "n_people":
            ok, want = is_int(v) and 2 <= v <= len(NAMES), f"an integer in [2, {len(NAMES)}]"
        elif k == "max_value":
            ok, want = is_int(v) and 10 <= v <= MAX_VALUE, f"an integer in [10, {MAX_VALUE}]"
        elif k == "sa_prose":
            ok, want = isinstance(v, bool) or v == "plan", 'true, false or "plan"'
        elif k == "kinds":   # None (every kind) or a list the generator checks itself
            try:
                ok, want = v is None or bool(check_kinds(v)), "null or a list of kinds"
            except (TypeError, ValueError) as e:
                fail(f"{where}: {e}")
        else:   # n_events, distractors: a count or an inclusive [lo, hi]
            bounds = [v, v] if is_int(v) else list(v) if isinstance(v, (list, tuple)) else []
            ok = len(bounds) == 2 and all(map(is_int, bounds)) and 0 <= bounds[0] <= bounds[1]
            want = "N or [LO, HI] with 0 <= LO <= HI"
        if not ok:
            fail(f"{where}: {k} must be {want}, got {json.dumps(v)}")
    try:   # each value in range, yet together they may admit no problem (long questions, a small window)
        make_problems(1, **knobs)
    except ValueError as e:
        fail(f"{where}: {e}")
    return knobs


# ----------------------------------------------------------------------------- CLI

def add_knob_args(ap):
    """The generator knobs as flags, checked (knobs_of): this CLI's, and data/deps.py's report's."""
    ap.add_argument("--detour_rate", type=FRACTION, default=DEFAULT_KNOBS["detour_rate"])
    ap.add_argument("--window", type=POSITIVE_INT, default=DEFAULT_KNOBS["window"])
    ap.add_argument("--n_people", type=int, default=DEFAULT_KNOBS["n_people"])
    ap.add_argument("--n_events", type=COUNT, nargs=2, default=DEFAULT_KNOBS["n_events"], metavar=("LO", "HI"))
    ap.add_argument("--distractors", type=COUNT, nargs=2, default=DEFAULT_KNOBS["distractors"],
                    metavar=("LO", "HI"))


def knobs_of(args, where):
    return check_knobs(dict(detour_rate=args.detour_rate, window=args.window, n_people=args.n_people,
                            n_events=tuple(args.n_events), distractors=tuple(args.distractors)), where)


def main():
    ap = ArgumentParser(__doc__)
    ap.add_argument("--split", default="train", choices=SPLITS)
    ap.add_argument("--n", type=POSITIVE_INT, default=1000, help="number of problems")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="JSONL file to write (default: stdout)")
    ap.add_argument("--show", type=COUNT, default=0, help="print this many problems as text")
    ap.add_argument("--window_friendly_frac", type=FRACTION, default=DEFAULT_KNOBS["window_friendly_frac"])
    add_knob_args(ap)
    args = ap.parse_args()
    knobs = knobs_of(args, "mathgen")
    claim_outputs([args.out])
    recs = make_problems(args.show or args.n, split=args.split, seed=args.seed,
                         window_friendly_frac=args.window_friendly_frac, **knobs)
    if args.show:
        for r in recs:
            print(f"--- {r['id']} ({r['style']}, answer {r['answer']})\n{r['question']}\n\n{r['solution']}\n")
        return
    lines = "".join(json.dumps(r) + "\n" for r in recs)
    if args.out:
        write_atomic(args.out, lines)
        print(f"wrote {len(recs)} problems to {args.out}")
    else:
        print(lines, end="")


if __name__ == "__main__":
    main()
