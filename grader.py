"""
The grader: extract_answer(text) finds the final answer in a model's text, is_equiv(answer, gold)
decides whether two answers are equal, grade(text, gold) does both. It is the RL reward and the
judge of every reported number, so it is strict, fast, and never executes model text.

Extraction, the first rule that finds something wins: (1) \\boxed{..} or \\fbox{..}: the last box,
as a later box corrects an earlier one, unless the last boxes form one list in one sentence
("$x=\\boxed{3}$ or $x=\\boxed{-4}$"); (2) what follows the last "####" (GSM8K); (3) what follows
the last "the (final) answer is" or "answer:", to the end of its sentence (Minerva's "Final
Answer: The final answer is X. I hope it is correct." gives X); (4) the whole text when it is a
short bare answer ("42", "x = 3", "18 apples"); (5) the last number, never an exponent ("48 cm^2").

Equal, by kind of answer, once normalize_answer has removed what is only spelling ($, \\text,
\\left, \\dfrac, thousands separators, currency, %, degrees, unit words, "x \\in", "h \\approx"):
- numbers: the same rational (0.5 = 1/2 = \\frac{1}{2}). A decimal stands for a value that does
  not terminate only where the gold is that decimal (gold 0.333, answer 1/3) or where it has 6+
  decimals (Math-Verify's default precision): 0.67 is not 2/3 and 1.41 is not sqrt(2).
- expressions: the difference simplifies to 0 ((x+1)^2 = x^2+2x+1, \\sin^2 x + \\cos^2 x = 1). A
  word is text, equal only to itself ("odd" is not the product o*d*d).
- equations: a = b equals c = d when (a-b)/(c-d) is a nonzero constant (y = 3x - 2 and
  3x - y - 2 = 0). An assignment ("x = 3", "(a, b) = (2, 9)", "f(x) = x^2") stands for its value,
  an answer's chain ("2 + 1 = 3") for its last value; but a bare value never equals a gold
  equation that is not an assignment (5 is not 2a - b = 5).
- inequalities: the same up to a positive factor and direction (7 \\ge x is x \\le 7). In normal
  form (x < c, a < x \\le b, x \\ne c) one is the set it describes and equals that interval or
  union; "2 < x + 1 < 6" is not, so echoing the question earns nothing.
- collections: tuples and intervals in order with their brackets; sets and bare lists in any
  order ("2; 4; 6"; a \\pm b is "a+b, a-b"); unions as sets; matrices element by element.

Refused, and why:
- anything outside the whitelist (ASCII digits and letters, listed LaTeX commands, a few
  operators): only objects that this file's parser built reach sympy (no eval, no sympify). So
  Arabic-Indic, fullwidth or bold digits are not digits: a number is written as the problems write
  it (identical strings are still equal).
- answers over MAX_ANSWER_CHARS, lists over MAX_ITEMS, numbers too big to build (huge powers,
  factorials), nan and x/0 (except as identical strings).
- whatever sympy cannot decide in GRADE_TIMEOUT seconds: a watchdog thread raises GradeTimeout in
  the grading thread (any thread), again every 50 ms should sympy swallow it; the caller's own
  signals and timers are never touched. grade() never raises and always returns a bool.
"""

import ctypes
import os
import re
import threading
import time
from contextlib import contextmanager
from fractions import Fraction
from itertools import accumulate

GRADE_TIMEOUT = 1.0  # seconds of sympy work allowed per is_equiv() call (None or 0: no limit)
MAX_ANSWER_CHARS = 1000  # longer extracted answers are wrong by definition; bounds every regex below
MAX_ITEMS, MAX_NEST = 100, 5  # items of a list, set, tuple or matrix; nesting of such
MAX_TOKENS, MAX_DEPTH, MAX_POW_BITS, MAX_EXP, MAX_FACTORIAL = 300, 40, 100_000, 10_000, 1000
_MATH_WORDS = {"sqrt", "pi", "sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "frac",
               "inf", "infty", "infinity", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh"}

# -----------------------------------------------------------------------------
# extraction: find the final answer in free text

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\b")
_SAID_RE = re.compile(r"\b(?:the\s+(?:final\s+)?answer\s+is|(?:final\s+)?answer\s*[:=])[\s*:]*", re.I)
# a number: 1,234.5 / 12 / .5 / 3/4 / \frac{1}{2}; a minus sign only where it cannot be "a - b";
# never an exponent or a subscript (the 2 of cm^2 or x_{2})
_NUMBER_RE = re.compile(r"(?<![\w)\].^])(?<![\^_]\{)(?:-\s*)?(?:\\[dt]?frac\{[0-9]+\}\{[0-9]+\}|"
                        r"(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?(?:/[0-9]+)?|\.[0-9]+)", re.A)
_THOUSANDS_MARKUP = r"(?<=[0-9])(?:,\\!|\{,\}|\\,)\s*(?=[0-9]{3}(?![0-9]))"  # 25,\!000 25{,}000 25\,000
# what may stand between boxes that form one list: "$ or $x=", ", ", " and ", "\quad"
_LIST_GAP_RE = re.compile(r"(?:\s|\$|\\[()]|\\q?quad|\\text\{|\}|[,;]|\band\b|\bor\b|"
                          r"[A-Za-z](?:_\{?[A-Za-z0-9]+\}?)?\s*=)*")


def _boxes(text):
    """[(start, end, content)] of every well-formed \\boxed{..} / \\fbox{..} (also \\boxed 5)."""
    found, out, close, stack, j = list(_BOX_RE.finditer(text)), [], {}, [], 0
    while found and j < len(text):  # one pass: each '{' -> its '}' (\{ and \} are literal braces)
        if text[j] == "{":
            stack.append(j)
        elif text[j] == "}" and stack:
            close[stack.pop()] = j
        j += 2 if text[j] == "\\" else 1
    for m in found:
        i = re.compile(" *").match(text, m.end()).end()
        if i in close and text[i + 1:close[i]].strip():
            out.append((m.start(), close[i] + 1, text[i + 1:close[i]].strip()))
        elif i > m.end() and not text.startswith("{", i):  # "\boxed 5": up to the next space or $
            token = re.compile(r"[^\s$]*").match(text, i)
            out += [(m.start(), token.end(), token.group(0))] if token.group(0) else []
    return out


def _strip_wrappers(s, punct=".,;:!?"):
    """Remove what surrounds an answer: spaces, $..$, \\(..\\), **bold**, trailing punctuation."""
    prev = None
    while s != prev:
        prev, s = s, s.strip().rstrip(punct).strip(" *")  # '*' never starts or ends an answer: markdown
        for left, right in (("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
            if len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right):
                s = s[len(left):len(s) - len(right)]
        s = s.lstrip(":").strip()
    return s


def _is_bare_answer(s):
    """A short one-line text with no prose before its last number ('18 apples' yes, 'I got 18' no)."""
    if not s or len(s) > 40 or "\n" in s or _BOX_RE.search(s):
        return False
    words = [m.start() for m in re.finditer(r"(?<![\\a-zA-Z])[A-Za-z]{2,}", s)
             if m.group(0).lower() not in _MATH_WORDS]
    numbers = [m.start() for m in _NUMBER_RE.finditer(s)]
    return len(words) <= 3 if not numbers else all(w > numbers[-1] for w in words)


def _answer_span(s):
    """After "the answer is": to the end of the sentence; "the largest $n$ is 34" gives 34 (other
    prose stays prose, which equals no gold)."""
    s = _strip_wrappers(re.split(r"\.\s|,\s*(?:so|because|since|which)\b", s, maxsplit=1)[0])
    if not _is_bare_answer(s):  # "The largest $n$ is 34" -> "34"
        s = _strip_wrappers(re.split(r"\s(?:is|are|equals)\s", s)[-1])
    return s or None


def extract_answer(text):
    """The final answer in a model's text, or None (the module docstring gives the rules in order)."""
    if not isinstance(text, str) or not text.strip():
        return None
    text = re.sub(r"<\|[a-z_]+\|>", "\n", text)  # special tokens such as <|endoftext|> end a line
    text = re.sub(_THOUSANDS_MARKUP, "", text)
    boxes = _boxes(text)
    if boxes:
        k = len(boxes) - 1  # walk back over boxes that continue one list: "\boxed{3} or \boxed{-4}"
        while k and "\n\n" not in text[boxes[k - 1][1]:boxes[k][0]] and \
                _LIST_GAP_RE.fullmatch(text[boxes[k - 1][1]:boxes[k][0]][:80]):
            k -= 1
        return ", ".join(filter(None, (_strip_wrappers(c, ".,;:") for *_, c in boxes[k:]))) or None
    for span in reversed(re.findall(r"####\s*([^\n]*)", text)):
        if _strip_wrappers(span):
            return _strip_wrappers(span)
    for m in reversed(list(_SAID_RE.finditer(text))):
        span = _answer_span(text[m.end():].split("\n", 1)[0])
        if span:
            return span
    bare = _strip_wrappers(text) if len(text) <= 80 else ""
    if _is_bare_answer(bare):
        return bare
    numbers = _NUMBER_RE.findall(text)
    return numbers[-1].replace(" ", "") if numbers else None


# -----------------------------------------------------------------------------
# normalisation: one canonical spelling per answer

_SYMBOLS = str.maketrans({  # Unicode that models write -> the LaTeX that the rules read
    "\u2212": "-", "\u2013": "-", "\u2014": "-", "\u00d7": r"\times ", "\u00b7": r"\cdot ",
    "\u22c5": r"\cdot ", "\u00f7": r"\div ", "\u221a": r"\sqrt", "\u03c0": r"\pi ", "\u221e": r"\infty ",
    "\u00b0": "", "\u00a0": " ", "\u2009": " ", "\u202f": " ", "\uff0c": ",", "\u2264": r"\le ",
    "\u2265": r"\ge ", "\u2260": r"\ne ", "\u2248": r"\approx ", "\u00b1": r"\pm ", "\u2213": r"\pm ",
    "\u222a": r"\cup ", "\u2205": r"\emptyset ", "\u00b2": "^2", "\u00b3": "^3"})
_UNIT = rf"(?!(?:{'|'.join(_MATH_WORDS)})\b)[A-Za-z]{{2,}}\.?"  # a word after a quantity, not \sin
_NOT_LETTER = r"(?![a-zA-Z])"
_TEXT_CMD = r"\\(?:text|textbf|textit|textrm|textnormal|mathrm|mathbf|mathit|mbox|operatorname)\s*"
# (pattern, replacement), in order; each says why
_RULES = [(re.compile(p), r) for p, r in [
    (r"\\[dtc]frac", r"\\frac"),  # \dfrac, \tfrac, \cfrac are \frac
    (r"\\(?:left|right|[bB]igg?[lr]?|displaystyle)" + _NOT_LETTER, ""),  # sizes only
    (r"\\begin\{(?:[pbB]?matrix|array)\}(?:\{[^{}]*\})?", r"\\matrix{"),  # one spelling of matrices
    (r"\\end\{(?:[pbB]?matrix|array)\}", "}"),
    (r"^[(\[]\s*(\\matrix\{.*\})\s*[)\]]$", r"\1"),  # \left[\begin{array}..\end{array}\right]
    (r"\\\\", r"\\cr "),  # matrix rows; before '\ ' (a space) is read below
    (_THOUSANDS_MARKUP, ""),  # 25,\!000 is 25000
    (r"\\[!,;: ]|\\q?quad" + _NOT_LETTER + "|~", " "),  # spacing
    (r"\^\s*\{?\s*\\circ\s*\}?|\\(?:circ|degree)" + _NOT_LETTER, ""),  # 90^\circ is 90
    (r"\\?%|\\percent\b", ""),  # 28\% is 28 (as Math-Verify and Minerva decide; 0.28 is not)
    (r"\\\$|\$|\u20ac|\u00a3|\u00a5|\u20b9|\\euro\b|\\pounds\b", ""),  # currency
    (r"\\(?:varnothing|emptyset)" + _NOT_LETTER + r"|\\\{\s*\\\}", r"\\emptyset"),  # one empty set
    (r"\\mathbb\{R\}", r"(-\\infty,\\infty)"),
    (r"\\(?:leqslant|leq?)" + _NOT_LETTER + "|<=", r"\\le "),  # one spelling per relation
    (r"\\(?:geqslant|geq?)" + _NOT_LETTER + "|>=", r"\\ge "),
    (r"\\neq?" + _NOT_LETTER + "|!=", r"\\ne "), (r"\\lt" + _NOT_LETTER, "<"), (r"\\gt" + _NOT_LETTER, ">"),
    (r"\\mp" + _NOT_LETTER, r"\\pm"),  # a -+ b and a +- b are the same two values
    (r"^\s*[A-Za-z](?:_\{?[A-Za-z0-9]+\}?)?\s*\\(?:in|approx)" + _NOT_LETTER, ""),  # x \in S; h \approx 6.5
    (r"(?<=\S)\s*\\approx" + _NOT_LETTER + ".*$", ""),  # x = 1/3 \approx 0.33: the exact value
    (_TEXT_CMD + r"\{\s*(?:and|or)\s*\}", ","),  # 6 \text{ and } 8 is a list
    (r"([0-9})])\s*" + _TEXT_CMD + r"\{\s*[A-Za-z][A-Za-z .]*\}(?:\s*\^\s*\{?[0-9]\}?)?", r"\1 "),  # units
    (_TEXT_CMD + r"\{([^{}]*)\}", r" \1 "), (_TEXT_CMD + r"\{([^{}]*)\}", r" \1 "),  # \text{yes}; nested
    (r"\s+", " "),
    (r"(?<=[0-9)\]}])\s*,?\s*\b(?:and|or)\b\s*", ", "),  # "12 and 13", "3, 5, and 7": a list
    (r";", ","), (r"(?:,\s*){2,}", ", "),  # "2; 4; 6" is "2, 4, 6"; "19, 46, \text{ and } 82"
    (r"(?i)\s*\b(?:percent(?:age)?|pct|degrees?|dollars?|usd|cents?)$", ""),
    (rf"^(.*?[0-9}})])\s*{_UNIT}(?:\s+{_UNIT})*\s*(?:\^\s*\{{?[0-9]\}}?)?$", r"\1"),  # 18 square meters
    (r"^\s*\(([A-Za-z])\)\s*$", r"\1"),  # multiple choice '(C)' -> 'C'
    (r"(?i)^\s*(?:inf|infinity)\s*$", r"\\infty"),
    (r"\\frac\s*([0-9])\s*([0-9])", r"\\frac{\1}{\2}"),  # \frac12 (Hendrycks' fix_fracs)
    (r"\\frac\s*([0-9])\s*(?=\{)", r"\\frac{\1}"), (r"\\frac\s*(\{[^{}]*\})\s*([0-9])", r"\\frac\1{\2}"),
    (r"^\s*[+-]?[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?\s*$", lambda m: m.group(0).replace(",", "")),
]]


def normalize_answer(s):
    """Canonical spelling of an answer string (not of free text: run extract_answer first)."""
    s = _strip_wrappers(str(s), ".,;:")
    if re.fullmatch(r"[+-]?[0-9]+(?:\.[0-9]+)?", s):  # the common case: no rule changes it
        return s
    s = s.translate(_SYMBOLS)
    boxes = _boxes(s) if s.startswith(("\\boxed", "\\fbox")) else []
    s = boxes[-1][2] if boxes else s
    for pattern, repl in _RULES:
        s = pattern.sub(repl, s)
    return _strip_wrappers(s, ".,;:")


def _key(s):
    """String-match key: no spaces; words compared case-insensitively."""
    s = s.replace(" ", "")
    return s.lower() if re.fullmatch(r"[A-Za-z]{2,}", s) else s


# -----------------------------------------------------------------------------
# exact numbers: the fast path (no sympy) for integers, decimals, fractions, mixed numbers, 1e3

_NUM = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"  # ASCII digits only: Fraction() would read any Unicode digit
_TEXFRAC_RE = re.compile(rf"\\frac\s*\{{\s*([+-]?)\s*({_NUM})\s*\}}\s*\{{\s*({_NUM})\s*\}}")  # -> ' a/b'
_TIMES_TEN_RE = re.compile(r"\s*(?:\\times|\\cdot|\*)\s*10\s*\^\s*(?:\{\s*([+-]?[0-9]+)\s*\}|([+-]?[0-9]))$")
# signs, the whole part of a mixed number, a numerator or decimal, a denominator, an exponent
_NUMBER_FORM = re.compile(rf"([+-]?\s*[+-]?)\s*(?:([0-9]+)\s+)?({_NUM})(?:\s*/\s*({_NUM}))?"
                          rf"(?:[eE]([+-]?[0-9]+))?")


def to_number(s):
    """(Fraction, decimals) if s is a plain number, else None. decimals: digits after the point
    when s is written as a decimal (they decide the rounding tolerance), else None."""
    if len(s) > 200:
        return None
    s = _TIMES_TEN_RE.sub(lambda m: "e" + (m.group(1) or m.group(2)), _TEXFRAC_RE.sub(r" \1\2/\3", s))
    m = _NUMBER_FORM.fullmatch(s.strip())
    if not m:
        return None
    sign, whole, num, den, exp = m.groups()
    if (whole and not (den and num.isdigit() and den.isdigit() and int(num) < int(den))) or \
            (den and not float(den)) or abs(int(exp or 0)) > MAX_EXP:  # mixed: a proper fraction only
        return None
    v = (int(whole or 0) + Fraction(num) / Fraction(den or 1)) * Fraction(10) ** int(exp or 0)
    decimals = len(num.split(".")[1]) if "." in num and not den and not exp else None
    return (-v if sign.count("-") % 2 else v), decimals


def _decimal_matches(dec, exact, gold_is_decimal):
    """A decimal (value, digits) stands for a value that does not terminate when it is the gold, or
    when it has 6+ digits, and is that value rounded or truncated to its digits, within 1%."""
    value, digits = dec
    if not digits or not (gold_is_decimal or digits >= 6) or abs(value - exact) > abs(exact) / 100:
        return False
    return value * 10 ** digits in (int(exact * 10 ** digits), round(exact * 10 ** digits))


def _numbers_equal(p, g):
    endless = lambda q: pow(10, q.denominator.bit_length(), q.denominator) != 0  # not 2^a 5^b
    return p[0] == g[0] or (endless(g[0]) and _decimal_matches(p, g[0], False)) or \
        (endless(p[0]) and _decimal_matches(g, p[0], True))


# -----------------------------------------------------------------------------
# time limit for sympy work

class GradeTimeout(BaseException):
    """Time is up. A BaseException, so that no `except Exception` inside sympy swallows it."""


_watch = {"cond": threading.Condition(), "thread": None, "deadlines": {}}  # thread id -> deadline
os.register_at_fork(after_in_child=lambda: _watch.update(cond=threading.Condition(), thread=None,
                                                         deadlines={}))  # a child has no watchdog yet


def _raise_in(thread_id, exc):
    """Raise exc in that thread at its next bytecode (None: forget one not yet raised)."""
    exc = ctypes.py_object(exc) if exc else None
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), exc)


def _watchdog():
    with _watch["cond"]:
        while True:
            now = time.monotonic()
            for thread_id, deadline in list(_watch["deadlines"].items()):
                if now >= deadline:
                    _raise_in(thread_id, GradeTimeout)
                    _watch["deadlines"][thread_id] = now + 0.05  # again, should it be swallowed
            _watch["cond"].wait(min(_watch["deadlines"].values(), default=now + 3600) - now)


@contextmanager
def time_limit(seconds):
    """Raise GradeTimeout in this thread after `seconds` (a no-op inside another time_limit)."""
    me, w = threading.get_ident(), _watch
    if not seconds or me in w["deadlines"]:
        yield
        return
    with w["cond"]:
        if w["thread"] is None or not w["thread"].is_alive():
            w["thread"] = threading.Thread(target=_watchdog, name="grader-watchdog", daemon=True)
            w["thread"].start()
        w["deadlines"][me] = time.monotonic() + seconds
        w["cond"].notify()
    try:
        yield
    finally:
        while True:  # a GradeTimeout may land in here too: repeat until none can come any more
            try:
                with w["cond"]:
                    w["deadlines"].pop(me, None)
                    _raise_in(me, None)
                break
            except GradeTimeout:
                pass


# -----------------------------------------------------------------------------
# a small LaTeX / plain-math parser that builds sympy objects (the only road into sympy)

# a number, a \command, x_1 or x_{12}, a word, an operator
_TOKEN_RE = re.compile(r"\s*(?:([0-9]+\.?[0-9]*|\.[0-9]+)|\\([a-zA-Z]+)|"
                       r"([a-zA-Z]_(?:\{[a-zA-Z0-9]+\}|[a-zA-Z0-9]))|([a-zA-Z]+)|([-+*/^(){}\[\]!_|]))")
_GREEK = {"alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta",
          "iota", "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "upsilon", "phi", "varphi",
          "chi", "psi", "omega", "Gamma", "Delta", "Theta", "Lambda", "Xi", "Sigma", "Phi", "Psi", "Omega"}
_FUNCS = {"sin": "sin", "cos": "cos", "tan": "tan", "cot": "cot", "sec": "sec", "csc": "csc",
          "arcsin": "asin", "arccos": "acos", "arctan": "atan", "sinh": "sinh", "cosh": "cosh",
          "tanh": "tanh", "log": "log", "ln": "log", "exp": "exp", "sqrt": "sqrt"}  # name -> sympy function
_INVERSE = {"sin": "asin", "cos": "acos", "tan": "atan"}  # \sin^{-1} x is arcsin x
_ALIASES = {"cdot": "*", "times": "*", "div": "/", "pi": "\\pi", "infty": "\\infty", "inf": "\\infty",
            "infinity": "\\infty"}  # also as plain words: 'pi', 'inf'


class ParseError(Exception):
    pass


def _tokenize(s):
    """Whitelist: numbers (Fraction), one-letter variables ('xy' is x*y), '\\name' for the listed
    commands and functions, one-character operators. Anything else is refused."""
    tokens, pos, s = [], 0, s.rstrip()
    while pos < len(s):
        m = _TOKEN_RE.match(s, pos)
        if not m or len(tokens) > MAX_TOKENS:
            raise ParseError(f"refused at {s[pos:pos + 10]!r}")
        pos, (num, cmd, sub, word, op) = m.end(), m.groups()
        if num or sub:
            tokens.append(Fraction(num) if num else sub.replace("{", "").replace("}", ""))
        elif (cmd or word) in _ALIASES:
            tokens.append(_ALIASES[cmd or word])
        elif cmd in _FUNCS or cmd in _GREEK or cmd == "frac" or word in _FUNCS:
            tokens.append("\\" + (cmd or word))
        elif cmd:
            raise ParseError(f"command \\{cmd} not allowed")
        else:
            tokens += list(word) if word else [op]
    return tokens


class _Parser:
    """Precedence climbing. Levels: 1 + -, 2 * / and implicit products (2x, x(x+1)), 3 unary minus,
    4 ^ (right to left); ! binds to what precedes it. Brackets, \\frac, \\sqrt, functions and a LaTeX
    argument ({..} or one token) are atoms."""

    def __init__(self, s):
        import sympy
        self.sp, self.toks, self.i, self.depth = sympy, _tokenize(s), 0, 0

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, want=None):
        tok = self.peek()
        if tok is None or (want is not None and tok != want):
            raise ParseError(f"expected {want!r}, got {tok!r}")
        self.i += 1
        return tok

    def expr(self, level=0):
        """An expression of the operators that bind tighter than `level`."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ParseError("too deep")
        t = self.take()
        e = -self.expr(3) if t == "-" else self.expr(3) if t == "+" else self.atom(t)
        while True:
            t = self.peek()
            atom_next = isinstance(t, Fraction) or (t is not None and (t[0].isalpha() or t[0] in "\\({"))
            if t == "!":
                self.take()
                if e.is_Integer and e > MAX_FACTORIAL:
                    raise ParseError("factorial too big")
                e = self.sp.factorial(e)
            elif t in ("+", "-") and level < 1:
                self.take()
                e = e + self.expr(1) if t == "+" else e - self.expr(1)
            elif t in ("*", "/") and level < 2:
                self.take()
                e = e * self.expr(2) if t == "*" else e / self.expr(2)
            elif t == "^" and level < 4:
                self.take()
                e = _safe_pow(e, self.expr(3))
            elif atom_next and level < 2:  # an implicit product: 2x, x(x+1), 2\pi
                if isinstance(t, Fraction) and isinstance(self.toks[self.i - 1], Fraction):
                    raise ParseError("two numbers in a row")
                e = e * self.expr(2)
            else:
                self.depth -= 1
                return e

    def atom(self, t):
        sp = self.sp
        if isinstance(t, Fraction):
            return sp.Rational(t.numerator, t.denominator)
        if t in ("(", "{", "[", "|"):
            e = self.expr()
            self.take({"(": ")", "{": "}", "[": "]", "|": "|"}[t])
            return sp.Abs(e) if t == "|" else e
        if t[0].isalpha():  # a variable: x, x_1 (x_{12} was read as x_12)
            return sp.E if t == "e" else sp.Symbol(t)
        if t in ("\\pi", "\\infty") or t[1:] in _GREEK:
            return sp.pi if t == "\\pi" else sp.oo if t == "\\infty" else sp.Symbol(t[1:])
        if t[0] != "\\":
            raise ParseError(f"unexpected {t!r}")
        name = t[1:]
        if name == "frac":
            return self.atom(self.take()) / self.atom(self.take())
        if name == "sqrt" and self.peek() == "[":  # \sqrt[3]{x}
            self.take()
            n = self.expr()
            self.take("]")
            return _safe_pow(self.atom(self.take()), 1 / n)
        base = power = None
        if name == "log" and self.peek() == "_":  # \log_2 8
            self.take()
            base = self.atom(self.take())
        if name != "sqrt" and self.peek() == "^":  # \sin^2 x is (sin x)^2
            self.take()
            power = self.atom(self.take())
        arg = self.atom(self.take()) if self.peek() in ("{", "(") else self.expr(3)  # \sin x^2 is sin(x^2)
        if power == -1 and name in _INVERSE:
            return getattr(sp, _INVERSE[name])(arg)
        e = sp.log(arg, base) if base is not None else getattr(sp, _FUNCS[name])(arg)
        return e if power is None else _safe_pow(e, power)


def _safe_pow(base, exp):
    """base**exp, refusing powers whose exact value would be astronomically large."""
    if exp.is_Number and abs(exp) > MAX_EXP and not (base.is_Number and abs(base) <= 1):
        raise ParseError("exponent too big")
    if base.is_Rational and exp.is_Rational and base != 0:
        if abs(exp) * max(abs(base.p.bit_length() - base.q.bit_length()), 1) > MAX_POW_BITS:
            raise ParseError("power too big")
    return base ** exp


def _sym(s):
    """The sympy expression of s, or None (a word is text, not a product of letters: 'odd' != 'dod')."""
    if re.fullmatch(r"[A-Za-z ]*[A-Za-z]{2}[A-Za-z ]*", s) and s.strip() not in _FUNCS:
        return None
    try:
        parser = _Parser(s)
        e = parser.expr()
        return e if parser.peek() is None else None
    except (ParseError, ArithmeticError, TypeError, ValueError, RecursionError):
        return None


# -----------------------------------------------------------------------------
# equivalence: one comparison per kind of answer

_COMMA, _CUP, _AMP, _CR = (re.compile(re.escape(x)) for x in (",", "\\cup", "&", "\\cr"))
_REL_RE = re.compile(r"\\(?:le|ge|ne)(?![a-zA-Z])|[=<>]")
_FLIP = {">": "<", "\\ge": "\\le"}
_LHS_RE = re.compile(r"[A-Za-z]+(?:_\{?[A-Za-z0-9]+\}?)?(?:\([A-Za-z, ]*\))?|\([A-Za-z, ]+\)")  # x f(x) (a,b)


def _split_top(s, sep):
    """Split s at the matches of the regex `sep` outside brackets -> (parts, separators)."""
    parts, seps, depth, start, i = [], [], 0, 0, 0
    while i < len(s):
        if s[i] == "\\" and s[i + 1:i + 2] in ("{", "}"):  # \{ \} are brackets of sets
            depth, i = depth + (1 if s[i + 1] == "{" else -1), i + 2
            continue
        m = sep.match(s, i) if depth == 0 else None
        if m and m.end() > i:
            parts.append(s[start:i].strip())
            seps.append(m.group(0).strip())
            start = i = m.end()
            continue
        depth, i = depth + (s[i] in "([{") - (s[i] in ")]}"), i + 1
    return parts + [s[start:].strip()], seps


def _expand_pm(items):
    """a \\pm b is the two values a + b and a - b."""
    out = []
    for x in items:
        n = x.count("\\pm")
        out += _expand_pm([x.replace("\\pm", "+", 1), x.replace("\\pm", "-", 1)]) if 0 < n <= 3 else [x]
    return out


def _kind(s):
    """What s is: ("set", None) for unions and the empty set; ("coll", (kind, brackets, items)) for a
    matrix, tuple or interval ("seq"), set or bare list; ("rel", (parts, ops)); ("scalar", s)."""
    if s == "\\emptyset" or len(_split_top(s, _CUP)[0]) > 1:
        return "set", None
    m = re.fullmatch(r"\\matrix\{(.*)\}", s)
    if m:
        rows = [_split_top(r, _AMP)[0] for r in _split_top(m.group(1), _CR)[0] if r]
        return "coll", ("matrix", tuple(map(len, rows)), [x for row in rows for x in row])
    if s.startswith("\\{") and s.endswith("\\}"):
        return "coll", ("set", None, _expand_pm(_split_top(s[2:-2], _COMMA)[0]))
    depth = list(accumulate((c in "([{") - (c in ")]}") for c in s))
    inner = _split_top(s[1:-1], _COMMA)[0]
    if s[:1] in "([" and s[-1:] in ")]" and 0 not in depth[:-1] and len(inner) > 1:  # one bracket around all
        return "coll", ("seq", s[0] + s[-1], inner)
    items = _expand_pm(_split_top(s, _COMMA)[0])
    if len(items) > 1:
        return "coll", ("list", None, items)
    parts, ops = _split_top(s, _REL_RE)
    if ops and all(parts):
        if all(o in _FLIP for o in ops):  # x > 2 is read as 2 < x
            parts, ops = parts[::-1], [_FLIP[o] for o in reversed(ops)]
        return "rel", (parts, ops)
    return "scalar", s


def _value(rel, chain_ok):
    """The value of 'x = 3', '(a, b) = (2, 9)', 'x = 1 + 2 = 3'; with chain_ok (an answer, not a
    gold) of any chain, such as '2 + 1 = 3'. None for other relations."""
    parts, ops = rel
    if set(ops) == {"="} and (chain_ok or len(parts) > 2 or _LHS_RE.fullmatch(parts[0])):
        return parts[-1]
    return None


def _as_set(s):
    """The sympy set that s describes: a union (or a list) of intervals, finite sets and inequalities
    in normal form (one variable and constants: x < c, c \\le x, a < x \\le b, x \\ne c); else None."""
    import sympy as sp
    kind, v = _kind(s)
    sets = []
    for part in v[2] if kind == "coll" and v[0] == "list" else _split_top(s, _CUP)[0]:
        kind, v = _kind(part)
        if part == "\\emptyset":
            sets.append(sp.EmptySet)
        elif kind == "coll" and v[0] in ("set", "seq"):
            ends = [_sym(x) for x in v[2]]
            if None in ends or (v[0] == "seq" and len(ends) != 2):
                return None
            open_ends = [c in "()" for c in v[1] or ""]
            sets.append(sp.FiniteSet(*ends) if v[0] == "set" else sp.Interval(*ends, *open_ends))
        elif kind == "rel":
            (parts, ops), var = v, [i for i, p in enumerate(v[0]) if _LHS_RE.fullmatch(p)]
            ends = [_sym(p) for i, p in enumerate(parts) if i not in var]
            if len(var) != 1 or None in ends or any(e.free_symbols for e in ends) or not set(ops) <= \
                    {"<", "\\le", "\\ne"} or (len(ops) == 2 and (var != [1] or "\\ne" in ops)):
                return None
            i, c = var[0], ends[0]
            sets.append(sp.Interval.open(-sp.oo, c) | sp.Interval.open(c, sp.oo) if ops == ["\\ne"] else
                        sp.Interval(c if i else -sp.oo, ends[-1] if i < len(ops) else sp.oo,
                                    i > 0 and ops[0] == "<", i < len(ops) and ops[i] == "<"))
        else:
            return None
    return sp.Union(*sets)


def answer_key(ans):
    """Canonical key for majority voting: equal numbers share a key (0.5, 1/2, \\frac{1}{2}, x = 0.5)."""
    s = normalize_answer(ans)
    kind, v = _kind(s)
    s = (_value(v, False) or s) if kind == "rel" else s
    n = to_number(s)
    return str(n[0]) if n is not None else _key(s)


def _collections_equal(cp, cg, depth):
    """Tuples, intervals and matrices in order, with their brackets; sets and bare lists in any order."""
    (kp, bp, ip), (kg, bg, ig) = cp, cg
    if len(ip) != len(ig) or len(ip) > MAX_ITEMS:
        return False
    in_order = kp == kg and kp in ("seq", "matrix") and bp == bg
    if in_order or ({kp, kg} == {"seq", "list"} and (bp or bg) == "()"):  # '1, 2' is (1, 2), not [1, 2]
        return all(_equal(x, y, depth + 1) for x, y in zip(ip, ig))
    if not {kp, kg} <= {"set", "list"}:
        return False
    rest, keys = list(ig), [answer_key(y) for y in ig]
    for x in sorted(ip, key=lambda x: answer_key(x) not in keys):  # key matches first: 50 numbers, no sympy
        k = answer_key(x)
        j = keys.index(k) if k in keys else \
            next((j for j, y in enumerate(rest) if _equal(x, y, depth + 1)), None)
        if j is None:
            return False
        del keys[j], rest[j]
    return True


def _relations_equal(rp, rg, depth):
    """a op b and c op d with (a-b)/(c-d) a nonzero constant (positive for < and \\le); chains
    (a < x < b) part by part."""
    import sympy
    (pp, po), (gp, go) = rp, rg
    if po != go or len(pp) != len(gp):
        return False
    if len(po) > 1:
        return all(_equal(x, y, depth + 1) for x, y in zip(pp, gp))
    a, b, c, d = map(_sym, pp + gp)
    if None in (a, b, c, d):
        return False
    dp, dg = a - b, c - d
    if dp == 0 or dg == 0:  # identities such as 2 + 1 = 3
        return dp == dg and _equal(pp[-1], gp[-1], depth + 1)
    r = sympy.cancel(dp / dg)
    r = r if r.is_number else sympy.simplify(r)
    return bool(r.is_number and r.is_finite and r != 0 and (po[0] in ("=", "\\ne") or r.is_positive))


def _scalars_equal(p, g):
    """Numbers exactly (a decimal as the docstring says); expressions by a difference that is 0."""
    import sympy
    np_, ng = to_number(p), to_number(g)
    if np_ is not None and ng is not None:
        return _numbers_equal(np_, ng)
    a, b = _sym(p), _sym(g)
    if a is None or b is None or a.has(sympy.nan, sympy.zoo) or b.has(sympy.nan, sympy.zoo):
        return False
    if a == b:
        return True
    if a.has(sympy.oo, -sympy.oo) or b.has(sympy.oo, -sympy.oo):
        return False  # infinities are equal only structurally
    for num, other, gold_is_decimal in ((np_, b, False), (ng, a, True)):  # a decimal against sqrt(2), pi
        if num is not None and num[1] is not None and other.is_number and not other.is_Rational:
            v = other.evalf(30)
            return bool(v.is_real) and _decimal_matches(num, Fraction(str(v)), gold_is_decimal)
    d = a - b
    if d.is_number:  # constants: 40 significant digits decide
        v, scale = sympy.N(d, 40), max(1, abs(sympy.N(b, 40))) if b.is_number else 1
        return bool(v.is_number and abs(v) < sympy.Float("1e-30") * scale)
    return sympy.expand(d) == 0 or sympy.simplify(d) == 0


def _equal(p, g, depth=0):
    """Equivalence of two answers, by kind (see the module docstring)."""
    p, g = normalize_answer(p), normalize_answer(g)
    if depth > MAX_NEST or not p or not g:
        return False
    if _key(p) == _key(g):
        return True
    (kp, vp), (kg, vg) = _kind(p), _kind(g)
    ineq = [k == "rel" and set(v[1]) != {"="} for k, v in ((kp, vp), (kg, vg))]
    if "set" in (kp, kg) or ineq[0] != ineq[1]:  # unions, inequalities against intervals: as sets
        a, b = _as_set(p), _as_set(g)
        return a is not None and b is not None and bool(a == b)
    if kp == kg == "coll":
        return _collections_equal(vp, vg, depth)
    if kp == kg == "rel":  # 'y = 3x - 2' vs '3x - y - 2 = 0'; else two assignments' values
        if _relations_equal(vp, vg, depth):
            return True
        vp, vg = _value(vp, False), _value(vg, False)
        return vp is not None and vg is not None and _equal(vp, vg, depth + 1)
    if "rel" in (kp, kg):  # 'x = 3' or '2 + 1 = 3' against '3'; '3' against 'x = 3', not '2a - b = 3'
        v = _value(vp, True) if kp == "rel" else _value(vg, False)
        return v is not None and (_equal(v, g, depth + 1) if kp == "rel" else _equal(p, v, depth + 1))
    return kp == kg == "scalar" and _scalars_equal(p, g)


def is_equiv(pred, gold, timeout=None):
    """True iff the answer string `pred` equals the reference `gold` (both already extracted)."""
    try:
        if len(pred) > MAX_ANSWER_CHARS or len(gold) > MAX_ANSWER_CHARS:
            return False  # no real answer is that long; it bounds every regex and parse below
        p, g = normalize_answer(pred), normalize_answer(gold)
        if not p or not g:
            return False
        if _key(p) == _key(g):  # fast path: most answers
            return True
        np_, ng = to_number(p), to_number(g)
        if np_ is not None and ng is not None:  # fast path: two plain numbers, no sympy
            return _numbers_equal(np_, ng)
        with time_limit(GRADE_TIMEOUT if timeout is None else timeout):
            return bool(_equal(p, g))
    except (Exception, GradeTimeout):  # a grader never crashes the trainer: anything else is "not equal"
        return False


def grade(text, gold, timeout=None):
    """True iff the final answer in `text` equals `gold`. Never raises; always a bool."""
    try:
        pred = extract_answer(text)
        return pred is not None and is_equiv(pred, str(gold), timeout)
    except (Exception, GradeTimeout):
        return False
