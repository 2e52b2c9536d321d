"""
Grade and evaluate math answers.

Two halves:
1. The grader: extract_answer(text) finds the final answer in a model's text, grade(text, gold)
   decides whether it equals the reference. It is the RL reward and the judge of every reported
   number, so it is strict, fast, and never executes model text (see "Safety" below).
2. The evaluation CLI: generate on held-out problems with one or more checkpoints and print one
   markdown table (pass@1, pass@k, maj@k, lengths, dependency distances, speed, KV-cache size).

Run:
    python eval.py --ckpt out/sa_sft.pt out/swa_sft.pt out/swa_rl.pt --n 1000 --k 8 --json results.json
    python eval.py --ckpt out/swa_rl.pt --data ../shared/data/gsm8k/test.jsonl --n 200
    python eval.py --grader-speed ../shared/data/gsm8k/test.jsonl   # time the grader on GSM8K
    python eval.py --help

Safety: answers go through a character/token whitelist and a small recursive-descent parser
written here that builds sympy objects directly (no eval, no sympify/parse_expr on strings).
The parser refuses numbers that would be too big to build (huge powers, factorials) and every
sympy step runs under a time limit (SIGALRM when called from the main thread), so grade() returns
False quickly on inputs like 9^{9^{9^9}} or 100000!.
"""

import json
import math
import os
import re
import signal
import sys
import threading
import time
from contextlib import contextmanager
from fractions import Fraction

from common import ArgumentParser, fail

GRADE_TIMEOUT = 1.0  # seconds of sympy work allowed per grade() call (None or 0: no timer)
MAX_ANSWER_CHARS = 500  # longer extracted answers are wrong by definition

# -----------------------------------------------------------------------------
# extraction: find the final answer in free text

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\b")
_HASH_RE = re.compile(r"####\s*([^\n]*)")
_ANSWER_IS_RE = re.compile(r"(?:the\s+(?:final\s+)?answer\s+is|final\s+answer\s*[:=]|answer\s*[:=])"
                           r"\s*:?\s*([^\n]*)", re.IGNORECASE)
# a number: 1,234.5 / 12 / .5 / 3/4 / \frac{1}{2}; a minus sign only where it cannot be "a - b"
_NUMBER_RE = re.compile(r"(?<![\w)\].])(?:-\s*)?(?:\\[dt]?frac\{\d+\}\{\d+\}|"
                        r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?|\.\d+)")
_MATH_WORDS = {"sqrt", "pi", "sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "frac",
               "inf", "infty", "infinity", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh"}


def _brace_matches(text):
    """{index of '{': index of its matching '}'} in one pass (\\{ and \\} are literal braces)."""
    matches, stack, j = {}, [], 0
    while j < len(text):
        c = text[j]
        if c == "\\":
            j += 2
            continue
        if c == "{":
            stack.append(j)
        elif c == "}" and stack:
            matches[stack.pop()] = j
        j += 1
    return matches


def _last_boxed(text):
    """Content of the last well-formed \\boxed{...} / \\fbox{...} (also \\boxed 5), else None."""
    boxes = list(_BOX_RE.finditer(text))
    matches = _brace_matches(text) if boxes else {}
    for m in reversed(boxes):
        i = m.end()
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            if i in matches and text[i + 1:matches[i]].strip():
                return text[i + 1:matches[i]].strip()
        elif i > m.end():  # "\\boxed 5": up to the next space or $
            token = re.match(r"[^\s$]+", text[i:])
            if token:
                return token.group(0)
    return None


def _strip_wrappers(s, punct=".,;:!?"):
    """Remove what surrounds an answer: spaces, $..$, \\(..\\), **..**, trailing punctuation."""
    prev = None
    while s != prev:
        prev = s
        s = s.strip().rstrip(punct).strip()
        for left, right in (("$", "$"), ("**", "**"), ("\\(", "\\)"), ("\\[", "\\]"), ("*", "*")):
            if len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right):
                s = s[len(left):len(s) - len(right)]
        s = s.lstrip(":").strip()
    return s


def _answer_span(s):
    """After "the answer is": up to the end of the sentence; a long span is cut to its first math."""
    s = re.split(r"\.\s|,\s*(?:so|because|since|which)\b", s, maxsplit=1)[0]
    s = _strip_wrappers(s)
    if len(s) > 40:  # a sentence, not an answer: take the first $math$, else the first number
        m = re.search(r"\$([^$]+)\$", s)
        if m:
            return _strip_wrappers(m.group(1)) or None
        m = _NUMBER_RE.search(s)
        s = m.group(0) if m else ""
    return s or None


def _is_bare_answer(s):
    """A short one-line text with no prose before its last digit ('18 apples' yes, 'I got 18' no)."""
    if not s or len(s) > 40 or "\n" in s or _BOX_RE.search(s):
        return False
    words = [m for m in re.finditer(r"(?<![\\a-zA-Z])[A-Za-z]{2,}", s)
             if m.group(0).lower() not in _MATH_WORDS]
    digits = [m.start() for m in re.finditer(r"\d", s)]
    if not digits:
        return len(words) <= 3
    return all(w.start() > digits[-1] for w in words)


def extract_answer(text):
    """The final answer in a model's text, or None.

    In order: the last \\boxed{...}/\\fbox{...} (nested braces); the text after the last '####';
    the text after the last "the (final) answer is" / "answer:"; the whole text when it is a short
    bare answer ("42", "x = 3", "\\frac{1}{2}", "18 apples"); finally the last number in the text
    (fallback: a trace that just stops at its result is still graded on that result).
    """
    if not isinstance(text, str) or not text.strip():
        return None
    text = re.sub(r"<\|[a-z_]+\|>", "\n", text)  # special tokens such as <|endoftext|> end a line
    boxed = _last_boxed(text)
    if boxed is not None:
        return _strip_wrappers(boxed, ".,;:") or None  # keep a factorial's '!'
    hashes = _HASH_RE.findall(text)
    for span in reversed(hashes):
        span = _strip_wrappers(span)
        if span:
            return span
    said = _ANSWER_IS_RE.findall(text)
    if said and _answer_span(said[-1]):
        return _answer_span(said[-1])
    bare = _strip_wrappers(text) if len(text) <= 80 else ""
    if _is_bare_answer(bare):
        return bare
    numbers = _NUMBER_RE.findall(text)
    return numbers[-1].replace(" ", "") if numbers else None


# -----------------------------------------------------------------------------
# normalisation: one canonical spelling per answer

_UNICODE = {"\u2212": "-", "\u2013": "-", "\u2014": "-", "\u00d7": r"\times ", "\u00b7": r"\cdot ",
            "\u22c5": r"\cdot ", "\u00f7": r"\div ", "\u221a": r"\sqrt", "\u03c0": r"\pi ",
            "\u221e": r"\infty ", "\u00b0": "", "\u00a0": " ", "\u2009": " ", "\u202f": " ",
            "\uff0c": ",", "\u2264": r"\le ", "\u2265": r"\ge "}
_TEXT_CMD_RE = re.compile(r"\\(?:text|textbf|textit|textrm|textnormal|mathrm|mathbf|mathit|mbox"
                          r"|operatorname)\s*\{([^{}]*)\}(\s*\^\s*\{?\d\}?)?")
# words separated by spaces (one way to split them: no catastrophic backtracking)
_UNIT_TAIL_RE = re.compile(r"^(.*?[\d})])\s*([A-Za-z]{2,}\.?(?:\s+[A-Za-z]{2,}\.?)*)\s*(\^\s*\{?\d\}?)?$")
_LEADING_VAR_RE = re.compile(r"^\s*([A-Za-z]+)(?:_\{?[A-Za-z0-9]+\}?)?\s*(?:=|\\in\b)\s*(?=\S)")
_THOUSANDS_RE = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")


def _drop_text_cmds(s):
    """\\text{..}-like commands: units after a quantity are dropped ('5\\text{ cm}^2' -> '5'),
    anything else is unwrapped ('\\text{yes}' -> 'yes')."""
    def repl(m):
        content, power = m.group(1).strip(), m.group(2) or ""
        before = s[:m.start()].rstrip()
        if content.lower() in ("and", "or"):
            return ","
        is_unit = re.fullmatch(r"[A-Za-z][A-Za-z .]*", content) and before and before[-1] in "0123456789})."
        return " " if is_unit else " " + content + power + " "
    prev = None
    while prev != s:  # innermost first, so nested \text{\textbf{..}} unwraps fully
        prev, s = s, _TEXT_CMD_RE.sub(repl, s, count=1)
    return s


def normalize_answer(s):
    """Canonical spelling of an answer string (not of free text: run extract_answer first)."""
    s = _strip_wrappers(str(s), ".,;:")
    for a, b in _UNICODE.items():
        s = s.replace(a, b)
    boxed = _last_boxed(s)
    if boxed is not None and s.startswith(("\\boxed", "\\fbox")):
        s = boxed
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = re.sub(r"\\(?:left|right|bigl|bigr|Bigl|Bigr|big|Big|displaystyle)(?![a-zA-Z])", "", s)
    s = re.sub(r"(\d)\\,(?=\d{3})", r"\1", s).replace("{,}", "")  # 1\,000 and 1{,}000
    s = re.sub(r"\\[!,;: ]|\\q?quad(?![a-zA-Z])|~", " ", s)
    s = re.sub(r"\^\s*\{?\s*\\circ\s*\}?|\\circ(?![a-zA-Z])|\\degree(?![a-zA-Z])", "", s)  # degrees
    s = re.sub(r"\\?%|\\percent\b", "", s)
    s = re.sub(r"\\\$|\$|\u20ac|\u00a3|\u00a5|\u20b9|\\euro\b|\\pounds\b", "", s)  # currency
    s = _drop_text_cmds(s)
    s = " ".join(s.split())
    s = re.sub(r"(?i)\b(?:percent|degrees?|dollars?|usd|cents?)$", "", s).strip()
    m = _UNIT_TAIL_RE.match(s)  # trailing unit words after a quantity: '18 apples per day' -> '18'
    if m and not any(w.lower().rstrip(".") in _MATH_WORDS for w in m.group(2).split()):
        s = m.group(1)
    m = _LEADING_VAR_RE.match(s)  # 'x = 3' -> '3', 'x \in [0, 1]' -> '[0, 1]'
    if m and "=" not in s[m.end():] and m.group(1).lower() not in _MATH_WORDS:
        s = s[m.end():]
    s = _strip_wrappers(s, ".,;:")
    if _THOUSANDS_RE.match(s):
        s = s.replace(",", "")
    s = re.sub(r"^\(([A-Za-z])\)$", r"\1", s)  # multiple choice '(C)' -> 'C'
    s = re.sub(r"(?i)^(?:inf|infinity)$", r"\\infty", s)
    s = re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", s)  # \frac12
    s = re.sub(r"\\frac\s*(\d)\s*(?=\{)", r"\\frac{\1}", s)
    s = re.sub(r"\\frac\s*(\{[^{}]*\})\s*(\d)", r"\\frac\1{\2}", s)
    return s.strip()


def _key(s):
    """String-match key: no spaces; words compared case-insensitively."""
    s = s.replace(" ", "")
    return s.lower() if re.fullmatch(r"[A-Za-z]{2,}", s) else s


# -----------------------------------------------------------------------------
# exact numbers: the fast path (no sympy) for integers, decimals, fractions, mixed, 1e3

_NUM = r"(?:\d+(?:\.\d*)?|\.\d+)"
_RE_PLAIN = re.compile(rf"([+-]?)\s*({_NUM})")
_RE_SCI = re.compile(rf"([+-]?)\s*({_NUM})(?:[eE]([+-]?\d+)|\s*(?:\\times|\\cdot|\*)\s*10\s*\^\s*"
                     rf"(?:\{{\s*([+-]?\d+)\s*\}}|([+-]?\d)))")
_RE_SLASH = re.compile(rf"([+-]?)\s*({_NUM})\s*/\s*({_NUM})")
_RE_TEXFRAC = re.compile(rf"([+-]?)\s*\\frac\s*\{{\s*([+-]?)\s*({_NUM})\s*\}}\s*\{{\s*({_NUM})\s*\}}")
_RE_MIXED = re.compile(rf"([+-]?)\s*(\d+)\s+(\d+)\s*/\s*(\d+)|([+-]?)\s*(\d+)\s*\\frac\s*\{{(\d+)\}}\s*\{{(\d+)\}}")


def _decimals(lit):
    """Digits after the decimal point of a literal, None if it has no point."""
    return len(lit.split(".")[1]) if "." in lit else None


def to_number(s):
    """(Fraction, decimals) if s is a plain number, else None. decimals: digits after the point
    when s is written as a decimal (used for the rounding tolerance), else None."""
    s = s.strip()
    if len(s) > 200:
        return None
    m = _RE_PLAIN.fullmatch(s)
    if m:
        v = Fraction(m.group(2))
        return (-v if m.group(1) == "-" else v), _decimals(m.group(2))
    m = _RE_SCI.fullmatch(s)
    if m:
        exp = int(m.group(3) or m.group(4) or m.group(5))
        if abs(exp) > 10000:
            return None
        v = Fraction(m.group(2)) * Fraction(10) ** exp
        return (-v if m.group(1) == "-" else v), None
    m = _RE_SLASH.fullmatch(s) or _RE_TEXFRAC.fullmatch(s)
    if m:
        g = m.groups()
        num, den = Fraction(g[-2]), Fraction(g[-1])
        if den == 0:
            return None
        neg = (g[0] == "-") != (len(g) == 4 and g[1] == "-")
        return (-num / den if neg else num / den), None
    m = _RE_MIXED.fullmatch(s)
    if m:
        g = m.groups()[:4] if m.group(2) else m.groups()[4:]  # '1 1/2' or '1\\frac{1}{2}'
        sign, whole, num, den = g[0], int(g[1]), int(g[2]), int(g[3])
        if den == 0 or num >= den:  # only proper fractions form a mixed number
            return None
        v = whole + Fraction(num, den)
        return (-v if sign == "-" else v), None
    return None


def _terminates(q):
    """True iff the rational q has a finite decimal expansion."""
    d = q.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def _rounds_to(dec, decimals, exact):
    """Tolerance: a decimal with `decimals` digits matches a non-terminating value if it is that value
    rounded (or truncated) to those digits and within 1% of it, so 0.333 == 1/3, 1.41 == sqrt(2), but
    0.3 != 1/3 and 0 != 0.4."""
    if decimals is None or decimals < 1 or abs(dec - exact) > abs(exact) / 100:
        return False
    scaled = exact * 10 ** decimals
    return dec * 10 ** decimals in (math.trunc(scaled), round(scaled))


def _numbers_equal(a, b):
    (x, dx), (y, dy) = a, b
    if x == y:
        return True
    return (not _terminates(y) and _rounds_to(x, dx, y)) or (not _terminates(x) and _rounds_to(y, dy, x))


# -----------------------------------------------------------------------------
# time limit for sympy work

class GradeTimeout(Exception):
    pass


_timer = {"armed": False, "old": None}  # one timer per grade() call; nested limits share it


def _disarm():
    """Stop the timer and restore the old handler. Idempotent: if the alarm interrupts this very
    function, the caller's except/finally calls it again, and a one-shot alarm cannot fire twice."""
    if _timer["armed"]:
        signal.setitimer(signal.ITIMER_REAL, 0)  # first, so the default action (exit) can never run
        signal.signal(signal.SIGALRM, _timer["old"])
        _timer["armed"] = False


def _on_alarm(signum, frame):
    if _timer["armed"]:
        raise GradeTimeout()


@contextmanager
def time_limit(seconds):
    """Raise GradeTimeout after `seconds`. Uses SIGALRM, so it works only in the main thread; in other
    threads the parser's size guards are the only protection (documented limitation)."""
    usable = (seconds and not _timer["armed"] and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return
    _timer["old"] = signal.signal(signal.SIGALRM, _on_alarm)
    _timer["armed"] = True
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        _disarm()


# -----------------------------------------------------------------------------
# a small LaTeX / plain-math parser that builds sympy objects (the only road into sympy)

_TOKEN_RE = re.compile(r"\s*(?:(\d+\.?\d*|\.\d+)|(\\[a-zA-Z]+)|([a-zA-Z]+)|([-+*/^(){}\[\]!_|]))")
_GREEK = {"alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta",
          "iota", "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "upsilon", "phi",
          "varphi", "chi", "psi", "omega", "Gamma", "Delta", "Theta", "Lambda", "Xi", "Sigma",
          "Phi", "Psi", "Omega"}
_FUNCS = {"sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos", "arctan", "sinh", "cosh",
          "tanh", "log", "ln", "exp", "sqrt"}
MAX_TOKENS, MAX_DEPTH, MAX_POW_BITS, MAX_EXP, MAX_FACTORIAL = 300, 40, 100_000, 10_000, 1000


class ParseError(Exception):
    pass


def _tokenize(s):
    """Whitelist: numbers, single-letter variables, known commands/functions, a few operators."""
    tokens, pos = [], 0
    s = s.rstrip()
    while pos < len(s):
        m = _TOKEN_RE.match(s, pos)
        if not m:
            raise ParseError(f"unexpected character {s[pos]!r}")
        pos = m.end()
        num, cmd, word, op = m.groups()
        if num is not None:
            tokens.append(("num", Fraction(num)))
        elif cmd is not None:
            name = cmd[1:]
            if name in ("cdot", "times"):
                tokens.append(("op", "*"))
            elif name == "div":
                tokens.append(("op", "/"))
            elif name in _FUNCS or name in _GREEK or name in ("frac", "pi", "infty"):
                tokens.append(("name", name))
            else:
                raise ParseError(f"command {cmd} not allowed")
        elif word is not None:
            if word in _FUNCS or word in ("pi", "infty"):  # plain sqrt(2), pi
                tokens.append(("name", word))
            elif word in ("inf", "infinity"):
                tokens.append(("name", "infty"))
            else:  # 'xy' is x*y
                tokens.extend(("var", c) for c in word)
        else:
            tokens.append(("op", op))
        if len(tokens) > MAX_TOKENS:
            raise ParseError("too long")
    return tokens


class _Parser:
    """Recursive descent: expr := term (+|- term)*; term := unary ((*|/)? unary)*;
    unary := -unary | power; power := postfix (^ unary)?; postfix := atom !*."""

    def __init__(self, tokens):
        import sympy
        self.sp, self.toks, self.i, self.depth = sympy, tokens, 0, 0

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else (None, None)

    def take(self, kind=None, value=None):
        tok = self.peek()
        if tok[0] is None or (kind and tok[0] != kind) or (value is not None and tok[1] != value):
            raise ParseError(f"expected {value or kind}, got {tok[1]!r}")
        self.i += 1
        return tok

    def at(self, kind, value=None):
        tok = self.peek()
        return tok[0] == kind and (value is None or tok[1] == value)

    def parse(self):
        e = self.expr()
        if self.i != len(self.toks):
            raise ParseError(f"trailing {self.peek()[1]!r}")
        return e

    def expr(self):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ParseError("too deep")
        e = self.term()
        while self.at("op", "+") or self.at("op", "-"):
            op = self.take()[1]
            t = self.term()
            e = e + t if op == "+" else e - t
        self.depth -= 1
        return e

    def starts_atom(self):
        kind, v = self.peek()
        return kind in ("num", "var", "name") or (kind == "op" and v in "({")

    def term(self):
        e = self.unary()
        while True:
            if self.at("op", "*") or self.at("op", "/"):
                op = self.take()[1]
                f = self.unary()
                e = e * f if op == "*" else e / f
            elif self.starts_atom():  # implicit product: 2x, 2\pi, x(x+1)
                if self.at("num") and self.toks[self.i - 1][0] == "num":
                    raise ParseError("two numbers in a row")
                e = e * self.power()
            else:
                return e

    def unary(self):
        if self.at("op", "-"):
            self.take()
            return -self.unary()
        if self.at("op", "+"):
            self.take()
            return self.unary()
        return self.power()

    def power(self):
        base = self.postfix()
        if self.at("op", "^"):
            self.take()
            return _safe_pow(self.sp, base, self.unary())
        return base

    def postfix(self):
        e = self.atom()
        while self.at("op", "!"):
            self.take()
            if e.is_Integer and e > MAX_FACTORIAL:
                raise ParseError("factorial too big")
            e = self.sp.factorial(e)
        return e

    def group(self):
        """A LaTeX argument: {expr}, or a single atom (\\frac12 was expanded by normalize)."""
        if self.at("op", "{"):
            self.take()
            e = self.expr()
            self.take("op", "}")
            return e
        return self.atom()

    def atom(self):
        sp = self.sp
        kind, v = self.take()
        if kind == "num":
            return sp.Rational(v.numerator, v.denominator)
        if kind == "var":
            name = v
            if self.at("op", "_"):  # x_1, x_{12}
                self.take()
                sub = self.take() if not self.at("op", "{") else None
                if sub is None:
                    self.take()
                    parts = []
                    while not self.at("op", "}"):
                        k, w = self.take()
                        if k not in ("num", "var"):
                            raise ParseError("bad subscript")
                        parts.append(str(w))
                    self.take()
                    name += "_" + "".join(parts)
                elif sub[0] in ("num", "var"):
                    name += "_" + str(sub[1])
                else:
                    raise ParseError("bad subscript")
            return sp.E if name == "e" else sp.Symbol(name)
        if kind == "op" and v in "({[":
            close = {"(": ")", "{": "}", "[": "]"}[v]
            e = self.expr()
            self.take("op", close)
            return e
        if kind == "name":
            if v == "pi":
                return sp.pi
            if v == "infty":
                return sp.oo
            if v in _GREEK:
                return sp.Symbol(v)
            if v == "frac":
                num = self.group()
                return num / self.group()
            if v == "sqrt":
                if self.at("op", "["):  # \sqrt[3]{x}
                    self.take()
                    n = self.expr()
                    self.take("op", "]")
                    return _safe_pow(sp, self.group(), 1 / n)
                return sp.sqrt(self.group())
            base = None
            if v == "log" and self.at("op", "_"):  # \log_2 8
                self.take()
                base = self.group()
            # \sin{x}, \sin(x)^2 = (sin x)^2, \sin x^2 = sin(x^2)
            arg = self.group() if self.at("op", "{") or self.at("op", "(") else self.power()
            fn = {"ln": sp.log, "arcsin": sp.asin, "arccos": sp.acos, "arctan": sp.atan}.get(v) or getattr(sp, v)
            return sp.log(arg, base) if base is not None else fn(arg)
        raise ParseError(f"unexpected {v!r}")


def _safe_pow(sp, base, exp):
    """base**exp, refusing powers whose exact value would be astronomically large."""
    if exp.is_Number and abs(exp) > MAX_EXP and not (base.is_Number and abs(base) <= 1):
        raise ParseError("exponent too big")
    if base.is_Rational and exp.is_Rational and base != 0:
        size = max(abs(base.p.bit_length() - base.q.bit_length()), 1)
        if abs(exp) * size > MAX_POW_BITS:
            raise ParseError("power too big")
    return base ** exp


def to_sympy(s):
    """Parse a normalised answer into a sympy expression (raises ParseError on anything else)."""
    return _Parser(_tokenize(s)).parse()


# -----------------------------------------------------------------------------
# equivalence

def _split_top(s, sep):
    """Split s on `sep` outside brackets/braces."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(s):
        if s.startswith("\\{", i) or s.startswith("\\}", i):
            depth += 1 if s[i + 1] == "{" else -1
            i += 2
            continue
        c = s[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0 and s.startswith(sep, i):
            parts.append(s[start:i])
            start = i + len(sep)
            i = start
            continue
        i += 1
    parts.append(s[start:])
    return [p.strip() for p in parts]


def _encloses(s):
    """True iff the bracket opening s closes at its last character."""
    depth = 0
    for i, c in enumerate(s):
        depth += c in "([{"
        depth -= c in ")]}"
        if depth == 0:
            return i == len(s) - 1
    return False


def _collection(s):
    """(kind, ends, items) for tuples, intervals, sets, unions and bare lists; None for a scalar."""
    if "\\cup" in s:
        parts = _split_top(s, "\\cup")
        if len(parts) > 1:
            return ("union", None, parts)
    if s.startswith("\\{") and s.endswith("\\}"):
        return ("set", None, _split_top(s[2:-2], ","))
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]" and _encloses(s):
        items = _split_top(s[1:-1], ",")
        if len(items) >= 2:
            return ("seq", s[0] + s[-1], items)
        return None
    items = _split_top(s, ",")
    return ("bare", None, items) if len(items) >= 2 else None


def _match_unordered(a, b, depth):
    used = [False] * len(b)
    for x in a:
        for j, y in enumerate(b):
            if not used[j] and _equal(x, y, depth + 1):
                used[j] = True
                break
        else:
            return False
    return True


def _collections_equal(cp, cg, depth):
    (kp, ep, ip), (kg, eg, ig) = cp, cg
    if len(ip) != len(ig) or len(ip) > 50:
        return False
    ordered = lambda: all(_equal(x, y, depth + 1) for x, y in zip(ip, ig))
    if kp == kg == "seq":  # tuples and intervals: same brackets (open/closed ends), same order
        return ep == eg and ordered()
    if {kp, kg} == {"seq", "bare"}:  # '1, 2' against the tuple '(1, 2)' (not against '[1, 2]')
        return (ep or eg) == "()" and ordered()
    if {kp, kg} <= {"set", "bare"} or kp == kg == "union":  # solutions, sets: any order
        return _match_unordered(ip, ig, depth)
    return False


def _scalar_equal(p, g):
    if _key(p) == _key(g):
        return True
    np_, ng = to_number(p), to_number(g)
    if np_ is not None and ng is not None:
        return _numbers_equal(np_, ng)
    try:
        a, b = to_sympy(p), to_sympy(g)
    except ParseError:
        return False
    return _sympy_equal(a, b, np_, ng)


def _sympy_equal(a, b, na, nb):
    import sympy
    bad = (sympy.nan, sympy.zoo)
    if a.has(*bad) or b.has(*bad):
        return False
    if a == b:
        return True
    if a.has(sympy.oo, -sympy.oo) or b.has(sympy.oo, -sympy.oo):
        return False  # infinities are equal only structurally
    for num, other in ((na, b), (nb, a)):  # a decimal against an exact irrational constant
        if num is not None and num[1] is not None and other.is_number and not other.is_Rational:
            v = other.evalf(30)
            if v.is_real:
                return _rounds_to(num[0], num[1], Fraction(str(v)))
    d = a - b
    if d == 0:
        return True
    if d.is_number:  # constants: 40 significant digits decide
        v = sympy.N(d, 40)
        scale = max(1, abs(sympy.N(b, 40))) if b.is_number else 1
        return bool(v.is_number and abs(v) < sympy.Float("1e-30") * scale)
    return sympy.expand(d) == 0 or sympy.simplify(d) == 0


def _split_equation(s):
    if any(op in s for op in ("<=", ">=", "\\le", "\\ge", "\\neq", "<", ">")):
        return [s]
    return _split_top(s, "=")


def _equal(p, g, depth=0):
    """Equivalence of two normalised answers."""
    if depth > 5:
        return False
    p, g = normalize_answer(p), normalize_answer(g)
    if not p or not g:
        return False
    if _key(p) == _key(g):
        return True
    cp, cg = _collection(p), _collection(g)
    if cp or cg:
        return bool(cp and cg) and _collections_equal(cp, cg, depth)
    sp, sg = _split_equation(p), _split_equation(g)
    if len(sp) > 1 and len(sg) > 1:  # two equations: same sides, in either order
        if len(sp) != 2 or len(sg) != 2:
            return False
        (a, b), (c, d) = sp, sg
        return ((_scalar_equal(a, c) and _scalar_equal(b, d)) or
                (_scalar_equal(a, d) and _scalar_equal(b, c)))
    return _scalar_equal(sp[-1], sg[-1])  # 'x = 3' or '2 + 1 = 3' against '3': the value after '='


def is_equiv(pred, gold, timeout=None):
    """True iff the answer string `pred` equals the reference `gold` (both already extracted)."""
    owns_timer = not _timer["armed"]  # inside a caller's time_limit, leave its timer alone
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
    except Exception:  # a grader never crashes the trainer: anything unexpected is "not equal"
        return False
    finally:
        if owns_timer:
            _disarm()  # no-op unless the alarm cut time_limit's own cleanup short


def grade(text, gold, timeout=None):
    """True iff the final answer in `text` equals `gold`. Never raises; always a bool."""
    try:
        pred = extract_answer(text)
        return pred is not None and is_equiv(pred, str(gold), timeout)
    except Exception:
        return False


def answer_key(ans):
    """Canonical key for majority voting: equal numbers share a key (0.5, 1/2, \\frac{1}{2})."""
    s = normalize_answer(ans)
    n = to_number(s)
    return str(n[0]) if n is not None else _key(s)


def judge(enc, completion, gold, timeout=None):
    """(correct, stopped, text) of one completion (token ids, the end token included if produced).

    The one rule for "correct", used by RL rewards, evaluation and SFT's held-out check alike: the
    completion stopped with the end token and its final answer equals `gold`. A trace cut off by the
    length limit is wrong whatever its last number happens to be."""
    stopped = bool(completion) and completion[-1] == enc.eot_token
    text = enc.decode(completion[:-1] if stopped else completion)
    return stopped and grade(text, gold, timeout), stopped, text


# -----------------------------------------------------------------------------
# evaluation of a model: generation, grading, trace analysis

def _percentile(xs, q):
    import numpy as np
    return float(np.percentile(np.asarray(xs, dtype=float), q)) if xs else 0.0


def _mean(xs):
    return sum(xs) / len(xs) if xs else 0.0


def _generate_all(model, prompts, max_new_tokens, temperature, top_k, eos_id, batch_size, seed, desc,
                  progress):
    """Completions for every prompt, in batches (seed + batch index each); -> (completions, seconds)."""
    import torch
    from tqdm import tqdm
    from model import generate
    out = []
    bar = tqdm(total=len(prompts), desc=desc, unit="seq", disable=not progress, leave=False)
    t0 = time.perf_counter()
    for b, i in enumerate(range(0, len(prompts), batch_size)):
        chunk = prompts[i:i + batch_size]
        completions, _ = generate(model, chunk, max_new_tokens, temperature=temperature, top_k=top_k,
                                  eos_id=eos_id, seed=seed + b)
        out.extend(completions)
        bar.update(len(chunk))
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    bar.close()
    return out, time.perf_counter() - t0


def _styles(texts, correct):
    """Share of window-friendly traces and the accuracy of each style: the mechanism, per model."""
    from data.mathgen import solution_style
    styles = [solution_style(t) for t in texts]
    acc = lambda s: _mean([c for c, t in zip(correct, styles) if t == s]) if s in styles else None
    return {"wf_frac": _mean([s == "wf" for s in styles]), "acc_wf": acc("wf"), "acc_sa": acc("sa")}


def _far(prompts, completions, judged, enc, window):
    """Dependency distances of the model's own traces, and the share beyond `window`."""
    from data.deps import dependency_distances, far_fraction
    dists = []
    for p, c, (_, stopped, _) in zip(prompts, completions, judged):
        dists.extend(dependency_distances(p + (c[:-1] if stopped else c), enc))
    return dists, (far_fraction(dists, window) if dists and window else None)


def _majority(answers, correct):
    """maj@k for one problem: is the most common extracted answer (ties: the earliest) correct?"""
    counts, first = {}, {}
    for i, a in enumerate(answers):
        if a is None:
            continue
        try:
            key = answer_key(a)
        except Exception:
            key = a
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, i)
    if not counts:
        return False
    best = max(counts, key=lambda key: (counts[key], -first[key]))
    return correct[first[best]]


def evaluate(model, enc, problems, k=8, temperature=1.0, max_new_tokens=None, batch_size=64, seed=0,
             greedy_only=False, top_k=None, ref_window=None, timeout=None, progress=True):
    """Metrics of `model` on `problems` ([{"question", "answer", ...}]) as a JSON-ready dict.

    Greedy pass: accuracy, extraction rate, completion lengths, truncation, dependency distances of
    the model's own traces (beyond its window, or `ref_window` for full attention), style mix and
    the accuracy of each style, decoding speed, KV-cache bytes. Unless greedy_only or k == 0, also k
    samples per problem at `temperature`: sampled pass@1, pass@k, maj@k, style mix, far dependencies.
    Same seed, same batch size -> same numbers (timings aside)."""
    from data.tokenizer import encode_prompt
    from model import kv_cache_bytes
    cfg, eos = model.config, enc.eot_token
    prompts = [encode_prompt(enc, p["question"]) for p in problems]
    golds = [str(p["answer"]) for p in problems]
    longest = max(len(p) for p in prompts)
    if max_new_tokens is None:
        max_new_tokens = cfg.max_seq_len - longest
    if max_new_tokens < 1 or longest + max_new_tokens > cfg.max_seq_len:
        raise ValueError(f"longest prompt ({longest} tokens) + max_new_tokens ({max_new_tokens}) does not fit "
                         f"max_seq_len={cfg.max_seq_len}")
    was_training = model.training
    model.eval()

    # greedy pass: the model's own traces
    completions, seconds = _generate_all(model, prompts, max_new_tokens, 0.0, None, eos, batch_size, seed,
                                         "greedy", progress)
    judged = [judge(enc, c, g, timeout) for c, g in zip(completions, golds)]
    correct = [j[0] for j in judged]
    texts = [j[2] for j in judged]
    answers = [extract_answer(t) for t in texts]
    lengths = [len(c) for c in completions]
    window = cfg.window if cfg.window is not None else ref_window  # full attention: compare at ref_window
    dists, far = _far(prompts, completions, judged, enc, window)
    styles = _styles(texts, correct)
    mean_total = _mean([len(p) + len(c) for p, c in zip(prompts, completions)])
    res = {
        "n": len(problems),
        "attention": cfg.describe(),
        "greedy_acc": _mean(correct),
        "extracted": _mean([a is not None for a in answers]),
        "len_mean": _mean(lengths),
        "len_p90": _percentile(lengths, 90),
        "trunc_rate": _mean([not j[1] for j in judged]),
        "dep_window": window,
        "dep_n": len(dists),
        "dep_mean": _mean(dists) if dists else None,  # None: no step reused an earlier number
        "dep_p90": _percentile(dists, 90) if dists else None,
        "dep_far": far,
        "wf_frac": styles["wf_frac"], "greedy_acc_wf": styles["acc_wf"], "greedy_acc_sa": styles["acc_sa"],
        "tok_per_s": sum(lengths) / max(seconds, 1e-9),
        "kv_bytes_per_seq": kv_cache_bytes(cfg, max(1, round(mean_total))),
        "max_new_tokens": max_new_tokens,
        "k": 0, "temperature": None, "pass1_sampled": None, "pass_at_k": None, "maj_at_k": None,
    }

    # sampled pass: k completions per problem
    if k > 0 and not greedy_only:
        repeated = [p for p in prompts for _ in range(k)]
        samples, _ = _generate_all(model, repeated, max_new_tokens, temperature, top_k, eos, batch_size,
                                   seed + 1_000_003, f"sample k={k}", progress)
        s_judged = [judge(enc, c, golds[i // k], timeout) for i, c in enumerate(samples)]
        s_correct = [j[0] for j in s_judged]
        s_answers = [extract_answer(text) if stopped else None for _, stopped, text in s_judged]  # no vote if cut off
        groups = [range(i * k, (i + 1) * k) for i in range(len(problems))]
        res.update(k=k, temperature=temperature,
                   pass1_sampled=_mean([_mean([s_correct[j] for j in g]) for g in groups]),
                   pass_at_k=_mean([any(s_correct[j] for j in g) for g in groups]),
                   maj_at_k=_mean([_majority([s_answers[j] for j in g], [s_correct[j] for j in g])
                                   for g in groups]),
                   sample_extracted=_mean([a is not None for a in s_answers]),
                   sample_len_mean=_mean([len(c) for c in samples]),
                   sample_dep_far=_far(repeated, samples, s_judged, enc, window)[1],
                   **{f"sample_{key}": v for key, v in _styles([j[2] for j in s_judged], s_correct).items()})
    model.train(was_training)
    return res


# -----------------------------------------------------------------------------
# results table

def _pct(x):
    return "-" if x is None else f"{100 * x:.1f}%"


def _fmt(x, spec):
    return "-" if x is None else format(x, spec)


def markdown_table(rows):
    """One markdown row per evaluated checkpoint."""
    k = max((r["k"] for r in rows), default=0)
    cols = ["model", "attention", "n", "greedy", f"pass@1 (k={k})", f"pass@{k}", f"maj@{k}", "extracted",
            "len mean", "len p90", "trunc", "dep mean", "dep p90", "dep >W", "wf", "tok/s", "KV bytes/seq"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        cells = [r["label"], r["attention"], str(r["n"]), _pct(r["greedy_acc"]), _pct(r["pass1_sampled"]),
                 _pct(r["pass_at_k"]), _pct(r["maj_at_k"]), _pct(r["extracted"]), f"{r['len_mean']:.0f}",
                 f"{r['len_p90']:.0f}", _pct(r["trunc_rate"]), _fmt(r["dep_mean"], ".1f"), _fmt(r["dep_p90"], ".0f"),
                 f"{_pct(r['dep_far'])} (W={r['dep_window']})", _pct(r["wf_frac"]), f"{r['tok_per_s']:.0f}",
                 f"{r['kv_bytes_per_seq']:,}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -----------------------------------------------------------------------------
# CLI

def grader_speed(path):
    """Grade every reference solution of a GSM8K-format file against its own answer and answer+1."""
    if not os.path.isfile(path):
        fail(f"file not found: {path}")
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    pairs = []
    for row in rows:
        gold = row["answer"].split("####")[-1].strip().replace(",", "")
        pairs.append((row["answer"], gold, True))
        pairs.append((row["answer"], str(Fraction(gold) + 1), False))
    t0 = time.perf_counter()
    right = sum(grade(text, gold) is expected for text, gold, expected in pairs)
    dt = time.perf_counter() - t0
    print(f"graded {len(pairs)} pairs ({len(rows)} solutions x {{own answer, answer+1}}) in {dt:.3f} s "
          f"({1e6 * dt / len(pairs):.0f} us each); {right}/{len(pairs)} as expected")
    return right == len(pairs)


def main(argv=None):
    ap = ArgumentParser(__doc__)
    # what to evaluate
    ap.add_argument("--ckpt", nargs="+", metavar="PATH", help="one or more checkpoints (one table row each)")
    ap.add_argument("--label", action="append", help="row name, repeated once per --ckpt (default: file name)")
    ap.add_argument("--preset", help="row of the presets table for --n, --k, ... (default: the first checkpoint's)")
    # data
    ap.add_argument("--data", default="mathgen", help="'mathgen' (generated problems) or a GSM8K-format .jsonl")
    ap.add_argument("--split", default="test", choices=["train", "val", "test"], help="mathgen split")
    ap.add_argument("--n", type=int, help="number of problems")
    ap.add_argument("--seed", type=int, default=0, help="problem seed (mathgen) and sampling seed")
    # sampling
    ap.add_argument("--k", type=int, help="samples per problem for pass@1/pass@k/maj@k (0: greedy only)")
    ap.add_argument("--temperature", type=float, default=1.0, help="sampling temperature of the k samples")
    ap.add_argument("--top-k", type=int, default=None, help="top-k filter for the k samples")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="default: max_seq_len - longest prompt")
    ap.add_argument("--batch-size", type=int, help="sequences per generate() call")
    # grading and analysis
    ap.add_argument("--grade-timeout", type=float, default=GRADE_TIMEOUT, help="seconds of sympy per answer")
    # system and output
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--json", metavar="PATH", help="write settings and metrics as JSON")
    ap.add_argument("--md", metavar="PATH", help="write the markdown table")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    # tools
    ap.add_argument("--grader-speed", metavar="JSONL", help="time the grader on a GSM8K-format file and exit")
    args = ap.parse_args(argv)

    if args.grader_speed:
        sys.exit(0 if grader_speed(args.grader_speed) else 1)
    if not args.ckpt:
        fail("--ckpt is required (one or more checkpoint paths)")
    if args.label and len(args.label) != len(args.ckpt):
        fail(f"got {len(args.label)} --label for {len(args.ckpt)} checkpoints")
    if args.data != "mathgen" and not os.path.isfile(args.data):
        fail(f"--data: file not found: {args.data} (use 'mathgen' or a GSM8K-format .jsonl)")

    from common import apply_preset, data_knobs, load, pick_device
    device = pick_device(args.device)
    models = [(path, *load(path)) for path in args.ckpt]   # every checkpoint checked before any generation
    args = apply_preset(args, "eval", models[0][3])
    for name, value, low in (("--n", args.n, 1), ("--k", args.k, 0), ("--batch-size", args.batch_size, 1),
                             ("--max-new-tokens", args.max_new_tokens, 1)):
        if value is not None and value < low:
            fail(f"{name} must be >= {low}, got {value}")
    if args.temperature < 0:
        fail(f"--temperature must be >= 0, got {args.temperature}")

    # the problems, and the window of the far-dependency column of full-attention rows: the run's
    knobs = data_knobs(models[0][3])
    if args.data == "mathgen":
        from data.mathgen import make_problems
        problems = make_problems(args.n, split=args.split, seed=args.seed, **knobs)
    else:
        from data.gsm8k import load_gsm8k
        try:
            problems = load_gsm8k(args.data)[:args.n]
        except (ValueError, UnicodeDecodeError) as e:
            fail(str(e).splitlines()[0])
        if not problems:
            fail(f"--data: no problems in {args.data}")

    rows = []
    for i, (path, model, enc, meta) in enumerate(models):
        label = args.label[i] if args.label else os.path.splitext(os.path.basename(path))[0]
        model.to(device)
        try:
            res = evaluate(model, enc, problems, k=args.k, temperature=args.temperature,
                           max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, seed=args.seed,
                           top_k=args.top_k, ref_window=knobs["window"], timeout=args.grade_timeout,
                           progress=not args.no_progress)
        except ValueError as e:
            fail(f"{path}: {str(e).splitlines()[0]}")
        model.to("cpu")
        rows.append({"label": label, "ckpt": path, "stage": meta.get("stage"), **res})
        print(f"{label}: greedy {_pct(res['greedy_acc'])}, pass@k {_pct(res['pass_at_k'])}, "
              f"{res['tok_per_s']:.0f} tok/s", file=sys.stderr)

    table = markdown_table(rows)
    print(table)
    settings = {k: v for k, v in vars(args).items() if k not in ("grader_speed", "no_progress")}
    settings.update(device=device, data_knobs=knobs)
    if args.json:
        _write(args.json, json.dumps({"settings": settings, "results": rows}, indent=2) + "\n")
    if args.md:
        _write(args.md, table + "\n")


def _write(path, text):
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    except OSError as e:
        fail(f"cannot write {path}: {e.strerror}")


if __name__ == "__main__":
    main()
