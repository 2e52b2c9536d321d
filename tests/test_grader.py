"""The grader is the RL reward: these cases are its specification."""

import json
import os
import signal
import sys
import threading
import time

import pytest

from eval import answer_key, extract_answer, grade, is_equiv, normalize_answer, to_number

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GSM8K = os.path.join(ROOT, "..", "shared", "data", "gsm8k", "test.jsonl")

# (text, expected extracted answer)
EXTRACT = [
    ("so the total is \\boxed{18}.", "18"),
    ("first \\boxed{3} then \\boxed{4}", "4"),  # the last box wins
    ("\\boxed{\\frac{1}{\\sqrt{2}}}", "\\frac{1}{\\sqrt{2}}"),  # nested braces
    ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),  # escaped braces do not close the box
    ("the result is \\fbox{7}", "7"),
    ("$\\boxed{5!}$", "5!"),
    ("\\boxed 5 is it", "5"),
    ("\\boxed{12} and an unclosed \\boxed{13", "12"),
    ("She makes 9 * 2 = $18.\n#### 18", "18"),
    ("#### 1,000", "1,000"),
    ("#### $42.", "$42"),  # currency is left to normalisation
    ("So the answer is 7.", "7"),
    ("The final answer is $\\frac{3}{4}$.", "\\frac{3}{4}"),
    ("The answer is: **12**", "12"),
    ("Answer: 3.5", "3.5"),
    ("the answer is 3.5. Next question", "3.5"),
    ("The answer is 5 apples, because she had 2 and got 3 more from her friend", "5 apples"),
    ("42", "42"),
    ("  $x = 3$  ", "x = 3"),
    ("\\frac{1}{2}", "\\frac{1}{2}"),
    ("18 apples", "18 apples"),
    ("yes", "yes"),
    ("She has 5 apples and gets 13 more, so 18 in all", "18"),  # last number fallback
    ("3 - 4 = -1", "3 - 4 = -1"),  # short bare answer: an equation, graded on its right side
    ("it costs $1,234.50 in total today, said the shopkeeper to me", "1,234.50"),
    ("no numbers here at all, just a long sentence of prose words", None),
    ("", None),
    ("\\boxed{}", None),
]


@pytest.mark.parametrize("text,expected", EXTRACT)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_extract_answer_never_raises_on_junk():
    for junk in (None, 12, "\\boxed{", "####", "}}}{{{", "\\boxed{" * 1000, "$" * 999):
        extract_answer(junk)


# (answer, gold, equal?) - equivalence of extracted answers, grouped by what they exercise
EQUIV = [
    # plain strings and integers
    ("18", "18", True), ("18", "19", False), ("-3", "-3", True), ("-3", "3", False),
    ("+3", "3", True), ("007", "7", True), ("0", "-0", True), ("yes", "Yes", True),
    ("yes", "no", False), ("C", "(C)", True), ("\\text{(B)}", "B", True), ("A", "B", False),
    # thousands separators, currency, percent, degrees, units
    ("1,000", "1000", True), ("1{,}000", "1000", True), ("1\\,000", "1000", True),
    ("\\$1,234.50", "1234.5", True), ("$18", "18", True), ("18 dollars", "18", True),
    ("\u20ac5", "5", True), ("50\\%", "50", True), ("50%", "50", True), ("50%", "0.5", False),
    ("90^\\circ", "90", True), ("90^{\\circ}", "90", True), ("90\u00b0", "90", True),
    ("5\\text{ cm}", "5", True), ("5 \\text{cm}^2", "5", True), ("12\\mbox{ apples}", "12", True),
    ("18 apples", "18", True), ("18 square meters", "18", True), ("\\text{yes}", "yes", True),
    ("5\\text{ cm}", "6", False), ("1,000", "100", False),
    # LaTeX spellings
    ("\\dfrac{1}{2}", "\\frac{1}{2}", True), ("\\tfrac{1}{2}", "\\frac12", True),
    ("\\left(1, 2\\right)", "(1,2)", True), ("\\frac{1}{2}\\!", "1/2", True),
    ("\\displaystyle \\frac{3}{4}", "0.75", True), ("\u22123", "-3", True),
    ("\\mathbf{7}", "7", True), ("\\text{\\textbf{7}}", "7", True),
    # leading variable, equations
    ("x = 3", "3", True), ("x=3", "x = 3", True), ("k = 4", "3", False), ("y = 2x + 1", "2x+1", True),
    ("2 + 1 = 3", "3", True), ("x + 1 = 3", "4", False), ("y = 2x+1", "y = 1 + 2x", True),
    ("y = 2x+1", "y = 2x+2", False), ("x \\in [0, 1]", "[0,1]", True),
    # exact rationals: decimals, fractions, mixed numbers, scientific notation
    ("0.5", "1/2", True), ("0.50", "\\frac{1}{2}", True), (".5", "0.5", True), ("18.00", "18", True),
    ("18.0", "18.01", False), ("3/4", "0.75", True), ("\\frac{6}{8}", "3/4", True),
    ("-\\frac{1}{2}", "-0.5", True), ("\\frac{-1}{2}", "-1/2", True), ("\\frac{1}{2}", "-1/2", False),
    ("1 1/2", "3/2", True), ("1\\frac{1}{2}", "1.5", True), ("-2 1/4", "-2.25", True),
    ("2\\frac{1}{2}", "3", False), ("1.5e3", "1500", True), ("1.5 \\times 10^{3}", "1500", True),
    ("2.5\\cdot 10^{-2}", "0.025", True), ("1e3", "100", False), ("\\frac{1}{3}", "2/6", True),
    # a decimal against a value that does not terminate: only where the gold is the rounded decimal,
    # or the decimal has 6+ digits (issue 15: these were True before; every public grader rejects them)
    ("0.333", "1/3", False), ("0.33", "\\frac{1}{3}", False), ("0.3", "1/3", False),
    ("0.667", "2/3", False), ("0.66", "2/3", False), ("0.6", "2/3", False), ("0.34", "1/3", False),
    ("1/3", "0.333", True), ("0", "1/3", False), ("0.125", "0.13", False), ("0.13", "0.125", False),
    ("1.414", "\\sqrt{2}", False), ("1.41", "\\sqrt2", False), ("1.5", "\\sqrt{2}", False),
    ("3.14", "\\pi", False), ("3.15", "\\pi", False), ("3.1416", "\\pi", False),
    # symbolic: radicals, pi, polynomials, functions
    ("\\sqrt{8}", "2\\sqrt{2}", True), ("\\frac{1}{\\sqrt{2}}", "\\frac{\\sqrt{2}}{2}", True),
    ("\\sqrt{8}", "3\\sqrt{2}", False), ("2\\pi", "\\pi \\cdot 2", True), ("2\\pi", "\\pi", False),
    ("\\frac{\\pi}{2}", "\\pi/2", True), ("x^2+2x+1", "(x+1)^2", True), ("x^2+1", "(x+1)^2", False),
    ("(a+b)^2", "a^2 + 2ab + b^2", True), ("2(x-1)", "2x-2", True), ("\\sqrt[3]{8}", "2", True),
    ("\\sqrt[3]{27}", "2", False), ("2^{10}", "1024", True), ("2^10", "1025", False),
    ("\\frac{x}{2}", "0.5x", True), ("\\sin^2 x", "1", False), ("\\log_2 8", "3", True),
    ("\\ln(e^2)", "2", True), ("e^{i\\pi}", "-1", False), ("5!", "120", True), ("3!", "5", False),
    ("\\sqrt{2}+\\sqrt{3}", "\\sqrt{3}+\\sqrt{2}", True), ("x_1 + x_2", "x_2 + x_1", True),
    ("\\alpha + 1", "1 + \\alpha", True), ("\u221a2", "\\sqrt{2}", True), ("2\u00d73", "6", True),
    ("\\infty", "\\infty", True), ("-\\infty", "\\infty", False), ("\\frac{1}{0}", "\\frac{1}{0}", True),
    ("\\frac{1}{0}", "\\frac{2}{0}", False), ("0/0", "1", False),
    # tuples, sets, intervals (open/closed ends respected), unions, bare lists
    ("(1, 2)", "(1,2)", True), ("(1, 2)", "(2, 1)", False), ("(1, 2)", "(1, 2, 3)", False),
    ("(\\frac{1}{2}, 3)", "(0.5, 3)", True), ("[1, 2)", "[1, 2)", True), ("[1, 2)", "[1, 2]", False),
    ("(1, 2]", "(1, 2)", False), ("[1,2]", "(1,2)", False), ("(-\\infty, 3]", "(-\\infty,3]", True),
    ("(-\\infty, 3)", "(-\\infty, 3]", False), ("[0.5, 1)", "[\\frac12, 1)", True),
    ("\\{1, 2\\}", "\\{2, 1\\}", True), ("\\{1, 2\\}", "\\{1, 3\\}", False), ("\\{1,2\\}", "2, 1", True),
    ("1, 2", "2, 1", True), ("-2, 3", "3, -2", True), ("1, 2", "1, 2, 2", False), ("1, 2", "(1, 2)", True),
    ("1, 2", "[1, 2]", False), ("x=1, y=2", "(1, 2)", True), ("(1, 2) \\cup (3, 4)", "(3,4)\\cup(1,2)", True),
    ("(1, 2) \\cup [3, 4]", "(1, 2) \\cup (3, 4)", False), ("\\{3\\}", "3", False), ("3", "1, 3", False),
    ("(1, (2, 3))", "(1, (2, 3))", True), ("(1, (2, 3))", "(1, (3, 2))", False),
    # more LaTeX spellings seen in model output
    ("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt{3}", True), ("2\\sqrt{3}", "\\sqrt{12}", True),
    ("\\sin(x)^2 + \\cos(x)^2", "1", True), ("\\frac{x+1}{x-1}", "(x+1)/(x-1)", True),
    ("10^{-3}", "0.001", True), ("f(x) = x^2", "x^2", True), ("x^2 + y^2 = 1", "y^2 + x^2 = 1", True),
    ("\\frac{22}{7}", "\\pi", False), ("6.28", "2\\pi", False), ("3 + 2i", "2i + 3", True),
    ("\\sqrt{x^2}", "x", False), ("twelve", "12", False), ("18x", "18", False), ("18, 18", "18", False),
]


@pytest.mark.parametrize("pred,gold,expected", EQUIV)
def test_equivalence(pred, gold, expected):
    assert is_equiv(pred, gold) is expected
    assert grade("\\boxed{" + pred + "}", gold) is expected  # same through the extractor


def test_enough_cases():
    assert len(EQUIV) >= 100 and sum(e for _, _, e in EQUIV) >= 40 and sum(not e for _, _, e in EQUIV) >= 40


def test_grade_full_texts():
    assert grade("Janet has 16 - 3 - 4 = 9 eggs.\nShe makes 9 * 2 = $18.\n#### 18", "18")
    assert grade("The answer is $\\dfrac{3}{4}$.", "0.75")
    assert grade("So the final answer is **1,000**.", "1000")
    assert not grade("So the final answer is **1,001**.", "1000")
    assert grade("We get 5 apples", "5")  # last number fallback
    assert not grade("no answer", "5")
    assert not grade("", "5") and not grade(None, "5") and not grade("5", None)


def test_grade_always_bool():
    for text, gold in [("\\boxed{x}", "x"), ("\\boxed{(}", "("), ("\\boxed{}", ""), ("5", "\\frac{"),
                       ("\\boxed{1/0}", "1"), ("\\boxed{[}", "[1,2]"), ("\\boxed{\\sqrt}", "2")]:
        assert isinstance(grade(text, gold), bool)


def test_answer_key_groups_equal_numbers():
    assert answer_key("0.5") == answer_key("\\frac{1}{2}") == answer_key("1/2")
    assert answer_key("$1,000") == answer_key("1000")
    assert answer_key("18") != answer_key("19")
    assert normalize_answer("\\$ 1,000.") == "1000"


INJECTIONS = [
    "__import__('os').system('touch {p}')",
    "\\boxed{{__import__(\"os\").system(\"touch {p}\")}}",
    "\\boxed{{exec(\"open('{p}','w')\")}}",
    "\\boxed{{eval(\"open('{p}','w')\")}}",
    "The answer is __import__('os').system('touch {p}')",
    "\\boxed{{Symbol('x').__class__.__init__.__globals__}}",
    "\\boxed{{(lambda: open('{p}', 'w'))()}}",
    "\\boxed{{Function('f')(x).__class__}}",
    "\\boxed{{[c for c in ().__class__.__base__.__subclasses__()]}}",
    "#### os.system('touch {p}')",
    "\\boxed{{x.__class__}}",
    "\\boxed{{sympy.printing}}",
]


@pytest.mark.parametrize("template", INJECTIONS)
def test_injection_creates_nothing(template, tmp_path, monkeypatch):
    # a relative target inside tmp_path: a digit in the temp folder's name (pytest-1) would otherwise be
    # part of the text, and "#### os.system('touch .../pytest-1/...')" would then extract a number
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "pwned"
    text = template.format(p="pwned")
    assert not any(c.isdigit() for c in text)
    for gold in ("0", "1", "x", text):
        result = grade(text, gold) if gold != text else grade(text, (extract_answer(text) or text) + " ")
        assert isinstance(result, bool)
        if gold != text:
            assert result is False
    assert not target.exists()


PATHOLOGICAL = ["9^{9^{9^9}}", "100000!", "(10^{10000})^{10000}", "2^{2^{2^{2^{2}}}}", "((((5!)!)!)!)",
                "10^{10^{10}}", "\\sqrt{9^{9^{9^9}}}", "x^{100000000}", "(x+1)^{9000} - (x-1)^{9000}",
                "\\frac{1}{" * 200 + "}" * 200, "(" * 5000 + ")" * 5000, "1" * 10000,
                "5 " + "a" * 3000 + "1", "\\sin(" * 100 + "x" + ")" * 100, "1e99999999"]


@pytest.mark.parametrize("expr", PATHOLOGICAL)
def test_pathological_inputs_return_fast(expr):
    t0 = time.perf_counter()
    assert grade("\\boxed{" + expr + "}", "1", timeout=1.0) is False
    assert is_equiv(expr, "2", timeout=1.0) is False
    assert time.perf_counter() - t0 < 3.0  # two calls, 1 s each at most, plus slack


def test_timer_is_restored_after_many_timeouts():
    before = signal.getsignal(signal.SIGALRM)
    for i in range(100):  # tiny limits, so alarms land at every point of the cleanup too
        assert is_equiv("(x+1)^{90} - (x-1)^{90}", "(x+1)^{90} - (x-1)^{91}", timeout=0.001 * (i % 5 + 1)) is False
    assert signal.getsignal(signal.SIGALRM) is before and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    t0 = time.perf_counter()
    assert is_equiv("(x+1)^{9000} - (x-1)^{9000}", "1", timeout=0.5) is False  # and the limit still works
    assert time.perf_counter() - t0 < 1.5


@pytest.mark.skipif(not os.path.exists(GSM8K), reason="GSM8K test file not present")
def test_gsm8k_reference_solutions():
    with open(GSM8K) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    assert len(rows) == 1319
    t0 = time.perf_counter()
    for row in rows:
        solution = row["answer"]
        gold = solution.split("####")[-1].strip().replace(",", "")
        assert grade(solution, gold), (solution, gold)
        assert not grade(solution, str(int(gold) + 1)), (solution, gold)
    assert time.perf_counter() - t0 < 10.0


# -----------------------------------------------------------------------------
# issue 15: each item is a case; both directions where the item has two

# (text, extracted answer, a gold it equals, the wrong number the old extractor took)
ISSUE_EXTRACT = [
    ("The area is 48 cm^2.", "48", "48", "2"),  # units with exponents
    ("The area is $48\\text{ cm}^2$.", "48", "48", "2"),
    ("The total is $25,\\!000$.", "25000", "25000", "000"),  # LaTeX thin-space thousands
    ("It costs \\$3,\\!250.50.", "3250.50", "3250.5", "250.50"),
    ("**Answer:** 72", "72", "72", "7"),
    ("Final Answer: The final answer is 1000. I hope it is correct.", "1000", "1000", "100"),  # Minerva
    ("So $x=\\boxed{3}$ or $x=\\boxed{-4}$.", "3, -4", "-4, 3", "-4"),  # boxes that are one list
    ("first \\boxed{3} then \\boxed{4}", "4", "4", "3, 4"),  # a later box corrects: the last wins
    ("\\boxed{3}\n\nWait, that is wrong. \\boxed{4}", "4", "4", "3, 4"),
    ("so h \\approx 6.5", "6.5", "6.5", "65"),
    ("h \\approx 6.5", "h \\approx 6.5", "6.5", "7"),
]


@pytest.mark.parametrize("text,extracted,right,wrong", ISSUE_EXTRACT)
def test_issue15_extraction(text, extracted, right, wrong):
    assert extract_answer(text) == extracted
    assert grade(text, right) is True and grade(text, wrong) is False


# (a, b, equal?, symmetric?): symmetric cases are also checked as is_equiv(b, a)
ISSUE_EQUIV = [
    # equations: the same line up to a nonzero factor; a bare value never equals a gold equation
    ("y = 3x - 2", "3x - y - 2 = 0", True, True), ("2y = 6x - 4", "y = 3x - 2", True, True),
    ("y = 3x + 2", "3x - y - 2 = 0", False, True), ("x = 3", "3x - 9 = 0", True, True),
    ("5", "2a - b = 5", False, False), ("b = 2a - 5", "2a - b = 5", True, True),
    # inequalities and intervals
    ("7 \\ge x", "x \\le 7", True, True), ("7 \\le x", "x \\le 7", False, True),
    ("(2, 5)", "2 < x < 5", True, True), ("[2, 5)", "2 < x < 5", False, True),
    ("2 \\le x < 5", "[2, 5)", True, True), ("x > 3", "(3, \\infty)", True, True),
    ("x \\ge 3", "(3, \\infty)", False, True), ("x \\ne 1", "(-\\infty, 1) \\cup (1, \\infty)", True, True),
    ("x < 2 \\text{ or } x > 5", "(-\\infty, 2) \\cup (5, \\infty)", True, True),
    ("(-\\infty, 2) \\cup (5, \\infty)", "(5, \\infty) \\cup (-\\infty, 2)", True, True),
    ("(-\\infty, 2] \\cup (5, \\infty)", "(-\\infty, 2) \\cup (5, \\infty)", False, True),
    ("(1, 2] \\cup [2, 3)", "(1, 3)", True, True), ("(1, 2) \\cup (2, 3)", "(1, 3)", False, True),
    ("\\varnothing", "\\emptyset", True, True), ("\\varnothing", "\\{0\\}", False, True),
    ("2 < x + 1 < 6", "(1, 5)", False, True),  # not in normal form: echoing a question earns nothing
    # sets and lists
    ("3 \\pm \\sqrt{2}", "3+\\sqrt{2}, 3-\\sqrt{2}", True, True),
    ("3 \\pm \\sqrt{2}", "3+\\sqrt{2}", False, True),
    ("\\{1,2\\} \\cup \\{5\\}", "\\{1,2,5\\}", True, True),
    ("\\{1,2\\} \\cup \\{5\\}", "\\{1,2\\}", False, True),
    ("2; 4; 6", "2, 4, 6", True, True), ("2; 4; 6", "2, 4", False, True),
    ("(a,b)=(2,9)", "(2,9)", True, True), ("(a,b)=(9,2)", "(2,9)", False, True),
    # function powers and identities
    ("\\sin^2 x + \\cos^2 x", "1", True, True), ("\\csc^2 x", "1+\\cot^2 x", True, True),
    ("\\csc^2 x", "\\cot^2 x", False, True), ("\\sin^{-1} x", "\\arcsin x", True, True),
    ("\\sin^2 x", "\\sin x^2", False, True),
    # matrices and vectors: element by element, exact fractions against decimals
    ("\\begin{pmatrix}1 & 2\\\\ 3 & 4\\end{pmatrix}",
     "\\begin{bmatrix}1 & 2\\\\ 3 & 4\\end{bmatrix}", True, True),
    ("\\begin{pmatrix}1 & 2\\\\ 3 & 4\\end{pmatrix}",
     "\\begin{pmatrix}1 & 2\\\\ 3 & 5\\end{pmatrix}", False, True),
    ("\\begin{pmatrix}1 & 2\\\\ 3 & 4\\end{pmatrix}",
     "\\begin{pmatrix}1 & 2 & 3 & 4\\end{pmatrix}", False, True),
    ("\\begin{pmatrix}\\frac{1}{2} \\\\ -3\\end{pmatrix}",
     "\\begin{bmatrix}0.5 \\\\ -3\\end{bmatrix}", True, True),
    ("\\begin{pmatrix}0.33 \\\\ 1\\end{pmatrix}",
     "\\begin{pmatrix}\\frac{1}{3} \\\\ 1\\end{pmatrix}", False, False),
    # decimals against values that do not terminate: exact only, unless the gold is the rounded decimal
    ("0.67", "\\frac{2}{3}", False, False), ("\\frac{2}{3}", "0.67", True, False),
    ("1.41", "\\sqrt{2}", False, False), ("\\sqrt{2}", "1.41", True, False),
    ("0.666667", "\\frac{2}{3}", True, True), ("1.414214", "\\sqrt{2}", True, True),
    # 6 digits: Math-Verify's
    # Unicode digits are not digits (the whitelist is ASCII); identical strings are still equal
    ("\u0664\u0662", "42", False, True), ("\uff14\uff12", "42", False, True),
    ("\U0001d7d2\U0001d7d0", "42", False, True), ("\u0664\u0662", "\u0664\u0662", True, True),
]


@pytest.mark.parametrize("a,b,expected,symmetric", ISSUE_EQUIV)
def test_issue15_equivalence(a, b, expected, symmetric):
    assert is_equiv(a, b) is expected
    assert grade("\\boxed{" + a + "}", b) is expected
    if symmetric:
        assert is_equiv(b, a) is expected


def test_unicode_digits_are_never_read_as_numbers():
    for digits in ("\u0664\u0662", "\uff14\uff12", "\U0001d7d2\U0001d7d0"):
        assert grade("The answer is " + digits, "42") is False and to_number(digits) is None
        assert extract_answer("so " + digits + " in all, said the shopkeeper to his friends today") is None


def test_unordered_50_items_do_not_time_out():
    surds = [f"\\sqrt{{{k}}}" for k in range(2, 52)]
    shuffled = surds[::7] + [s for i, s in enumerate(surds) if i % 7]
    t0 = time.perf_counter()
    assert is_equiv(", ".join(shuffled), "\\{" + ", ".join(surds) + "\\}") is True
    assert is_equiv(", ".join(shuffled[1:] + ["\\sqrt{53}"]), ", ".join(surds)) is False
    assert is_equiv(", ".join(f"\\frac{{{k}}}{{{k + 1}}}" for k in range(50)),
                    ", ".join(f"{k / (k + 1)}" for k in reversed(range(50)) if k % 2 == 0)) is False
    assert time.perf_counter() - t0 < 2.0


def test_caller_alarm_survives_grade():
    """grade() leaves the caller's SIGALRM timer and handler alone (it used to cancel them)."""
    fired = []
    old = signal.signal(signal.SIGALRM, lambda *_: fired.append(time.perf_counter()))
    try:
        signal.setitimer(signal.ITIMER_REAL, 30)  # a caller's own timer, far away
        assert grade("\\boxed{x^2+2x+1}", "(x+1)^2") is True
        assert grade("\\boxed{(x+1)^{9000} - (x-1)^{9000}}", "1", timeout=0.2) is False  # our limit fires
        assert 25 < signal.getitimer(signal.ITIMER_REAL)[0] <= 30 and not fired
        signal.setitimer(signal.ITIMER_REAL, 0.2)  # a caller's timer that runs out during grade()
        t0 = time.perf_counter()
        assert is_equiv("(x+1)^{9000} - (x-1)^{9000}", "1", timeout=1.0) is False
        assert len(fired) == 1 and fired[0] - t0 < 0.5 and time.perf_counter() - t0 < 2.5  # on time, once
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_no_timeout_escapes_after_a_call():
    """Time limits that run out at every point of the cleanup never raise in the caller later."""
    for i in range(200):
        assert is_equiv("(x+1)^{40} - (x-1)^{40}", "(x+1)^{40} - (x-1)^{41}", timeout=0.0005 * (i % 7 + 1)) is False
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 0.3:  # Python work where a late GradeTimeout would land
        sum(range(1000))


def test_time_limit_off_the_main_thread():
    results = {}

    def work():
        t0 = time.perf_counter()
        results["hostile"] = grade("\\boxed{(x+1)^{10000}}", "1", timeout=1.0)
        results["seconds"] = time.perf_counter() - t0
        results["normal"] = grade("\\boxed{\\sin^2 x + \\cos^2 x}", "1")

    before = sys.gettrace()
    thread = threading.Thread(target=work)
    thread.start()
    thread.join(10)
    assert not thread.is_alive() and results["hostile"] is False and results["seconds"] < 3.0
    assert results["normal"] is True and sys.gettrace() is before


# -----------------------------------------------------------------------------
# public graders' documented behaviour, as (answer, gold, equal?). Sources:
#   MV   Math-Verify (huggingface/Math-Verify), tests/test_all.py, tests/test_numina_cases.py,
#        tests/test_yujianll.py and README.md; its tests are (gold, pred): swapped here
#   MIN  Minerva's normalize_final_answer (lm-evaluation-harness minerva_math/utils.py): removes unit
#        words, \text{}, ^\circ, ,\! and {,}; keeps what follows the last '='; 100,000 -> 100000
#   HEN  Hendrycks' MATH is_equiv/_strip_string: \frac12, \sqrt3, .5 -> 0.5, a/b -> \frac{a}{b},
#        drops \left, \right, \%, \$, units in "\text{ "
#   GSM  GSM8K: references end with "#### N", N with thousands commas; models write $, commas, .00
PUBLIC_EQUIV = [
    # MV test_number_extraction
    ("-5", "-5", True), ("7,425,000", "7425000", True), ("1000.0", "1000", True), ("1,000.0", "1000.0", True),
    (".4", "0.4", True), ("1,000.99", "1000.99", True), ("$1,000.99", "1000.99", True),
    ("1,000.99$", "1000.99", True), ("1,000.99\u20ac", "1000.99", True),
    # MV test_simple_fraction_notation, test_sets_handling
    ("\\frac{10}{9}", "10/9", True), ("-\\frac{10}{9}", "-10/9", True), ("[0,1)", "[0,1)", True),
    ("[0,1)", "[0,9)", False), ("[0,9)", "(0,9)", False), ("-[0,1)", "1", False),
    # MV test_latex_notation
    ("(9+1)", "10", True), ("\\frac13", "1/3", True), ("\\frac3{3}", "1", True),
    ("\\sqrt3", "\\sqrt{3}", True),
    ("\\cfrac{1}{3}", "1/3", True), ("\\left( \\frac{1}{3} \\right)", "1/3", True),
    ("\\frac{1}{3} \\text{meters}", "1/3", True), ("\\frac{1}{3} \\textbf{meters}", "1/3", True),
    ("k = \\frac{1}{3}", "1/3", True),
    # MV test_percent_notation: 28% is 28, not 0.28
    ("28 percent", "28\\%", True), ("28 pct", "28\\%", True), ("28 %", "28\\%", True),
    ("28 percentage", "28\\%", True), ("28", "28\\%", True), ("28", "0.28", False), ("28", "28/100", False),
    ("28/100", "28", False), ("28", "\\frac{28}{100}", False),
    # MV test_latex_notation_math
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\frac{\\pi}{2})", True), ("\\text{Evelyn}", "Evelyn", True),
    ("90^\\circ", "90", True), ("\\sqrt{117}", "3\\sqrt{13}", True), ("15", "15\\mbox{ cm}^2", True),
    ("1, -2", "-2,1", True), ("1 + \\sqrt{19}, 1 - \\sqrt{19}", "1 \\pm \\sqrt{19}", True),
    ("3 - 2\\sqrt{2}, 3 + 2\\sqrt{2}", "3 \\pm 2 \\sqrt{2}", True),
    ("\\{-2, 1+\\sqrt{5}, 1-\\sqrt{5}\\}", "\\{1\\pm\\sqrt{5},-2\\}", True),
    ("2\\cos a \\sin b", "2 \\sin b \\cos a", True), ("\\pi r/(h+r)", "\\frac{\\pi r}{h+r}", True),
    ("125\\textnormal{ miles}", "125", True), ("\\sqrt 2+\\sqrt 5", "\\sqrt{2}+\\sqrt{5}", True),
    ("\\frac94\\pi", "\\frac{9}{4}\\pi", True), ("[0,7) \\cup \\{-1\\}", "\\{-1\\} \\cup [0,7)", True),
    ("[-1, -\\tfrac12) \\cup (-\\tfrac12, 0) \\cup (0, 1) \\cup (1, \\infty)",
     "[-1, -\\frac{1}{2}) \\cup (-\\frac{1}{2}, 0) \\cup (0, 1) \\cup (1, \\infty)", True),
    # MV test_relations_math: spellings, flips, chains, assignments, equations up to a factor
    ("x \\geq 5", "x >= 5", True), ("x \\lt 3", "x < 3", True), ("x <= 2", "x \\leq 2", True),
    ("x \\gt 5", "x > 5", True), ("x \\neq 3", "x != 3", True), ("x < 5", "x > 5", False),
    ("x \\leq 5", "x \\geq 5", False), ("5 \\geq x", "x \\leq 5", True), ("5 \\leq x", "x \\geq 5", True),
    ("x = 5+5+1 = 7 =11", "x = 11", True), ("11a+c", "7 = 11a+c", False), ("x=11", "11", True),
    ("x\\approx11", "11", True), ("x=1/3\\approx1.3", "1/3", True), ("-x > -1", "x < 1", True),
    ("x > -1", "x < 1", False), ("-x >= -1", "x <= 1", True), ("0", "a +3z = 0", False),
    ("1", "2x + z = 1", False), ("0", "a^2 + b = 0", False), ("1", "k=1", True), ("k=1", "1", True),
    ("y=-\\frac{1}{2}x+\\frac{3}{4}", "2x+4y-3=0", True),
    ("x^2/16 + y^2/12 = 1/4", "x^2/4 + y^2/3 = 1", True),
    # MV test_matrix_extraction
    ("\\begin{pmatrix}0 & 0 \\\\0 & 0\\end{pmatrix}", "\\begin{bmatrix}0 & 0 \\\\0 & 0\\end{bmatrix}", True),
    ("\\left[\\begin{array}{cc}1 & 2 \\\\3 & 4\\end{array}\\right]",
     "\\begin{pmatrix}1 & 2 \\\\3 & 4\\end{pmatrix}", True),
    ("\\begin{pmatrix}1 & 2 \\\\ 3 & 5\\end{pmatrix}",
     "\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix}", False),
    # MV test_complex_math_expressions ("tests from qwen parser") and test_precision (default 6 digits)
    ("0.0833333333333333", "\\frac{1}{12}", True), ("(1,4.5)", "(1,\\frac{9}{2})", True),
    ("\\frac{x}{7}+\\frac{2}{7}", "\\frac{x+2}{7}", True), ("\\sec^2(y)", "\\tan^2(y)+1", True),
    ("-34x-45y+20z-100=0", "34x+45y-20z+100=0", True),
    ("\\frac{\\sqrt{\\sqrt{11}+\\sqrt{194}}}{2\\sqrt{33}+15}",
     "\\frac{\\sqrt{\\sqrt{11}+\\sqrt{194}}}{15+2\\sqrt{33}}", True),
    ("(+5)(b+2)", "(a+5)(b+2)", False), ("\\frac{1+\\sqrt{5}}{2}", "2", False),
    ("\\frac{34}{16}+\\frac{\\sqrt{1358}}{16}", "4", False), ("1", "1\\sqrt{19}", False),
    ("x+1", "x+2n+1", False),
    ("0.333", "\\frac{1}{3}", False), ("0.3333333", "\\frac{1}{3}", True),
    ("\\begin{pmatrix}0.33\\\\0.2 \\end{pmatrix}",
     "(\\begin{pmatrix}\\frac{1}{3}\\\\ \\frac{1}{5} \\end{pmatrix})", False),
    # MV test_numina_cases
    ("(3,2)", "(p,q)=(3,2)", True), ("(3,2,7)", "(p,q,r)=(3,2,7)", True),
    ("\\{-12, -11, -10, -8, -7, -6\\}", "-12;-11;-10;-8;-7;-6", True), ("4, 5", "AB=4,CD=5", True),
    ("(7,11), (11,7)", "(11,7)or(7,11)", True), ("odd", "\\text{odd}", True), ("E", "\\text{E}", True),
    ("\\text{E}", "d", False), ("1,2,3", "1 and 2 and 3", True),
    ("-5, \\frac{14}{3}", "x = -5,\\ p = \\frac{14}{3}", True),
    ("-10,-8,4", "a=4,\\,-8,\\,-10", True), ("21,16,11", "21,16 or 11", True), ("(0,1)", "0<f(x)<1", True),
    ("p=-1,p=\\frac{15}{8}", "p = -1 \\text{ and } p = \\dfrac{15}{8}", True),
    ("6,8", "6 \\text{ and } 8", True),
    ("Even", "\\text{Even}", True),
    # MV test_yujianll
    ("n=1, 2, 3", "n=2, 3, 4", False), ("D = (0, 1)", "D=(0,1)", True), ("D = (0, 1.5)", "D = (0, 1)", False),
    ("19, 46, \\text{ and } 82", "19, 46, and 82", True), ("21, 36, and 82", "19, 46, and 82", False),
    ("2021", "\\pm 2021", False), ("\\{-2021, 2021\\}", "\\pm 2021", True), ("1:00", "12:00", False),
    ("12:00", "12:00", True), ("1 - \\frac{1}{\\mathrm{e}}", "1 - \\frac{1}{e}", True),
    # MV README: sets, a < 2 == 2 > a, an interval answer to an inequality gold
    ("\\{1,2,3,4\\}", "\\{1,3\\} \\cup \\{2,4\\}", True), ("2 > a", "a < 2", True),
    ("(1,2)", "1 < x < 2", True),
    # MIN normalize_final_answer
    ("10 \\text{ cm}", "10", True), ("5 \\text{ inches}", "5", True), ("3 \\text{ feet}", "3", True),
    ("45^{\\circ}", "45", True), ("12,\\!000", "12000", True), ("12{,}000", "12000", True),
    ("x = 5", "5", True),
    ("100,000", "100000", True), ("\\text{(A)}", "A", True), ("\\text{(A)}", "B", False),
    # HEN _strip_string
    ("0.5", ".5", True), ("\\frac{3}{4}", "\\frac34", True), ("\\sqrt{5}", "\\sqrt5", True),
    ("\\frac{1}{2}", "1/2", True),
    ("5", "5\\text{ units}", True), ("50", "50\\%", True), ("\\$5", "5", True),
    ("\\dfrac{3}{4}", "\\frac34", True),
    ("\\left(1,2\\right]", "(1,2]", True), ("\\frac{3}{4}", "\\frac43", False),
    # GSM: numbers GSM8K models write against GSM8K golds
    ("1,080", "1080", True), ("$1,080", "1080", True), ("\\$1,080.00", "1080", True),
    ("1080 dollars", "1080", True),
    ("18.00", "18", True), ("18.5", "18", False), ("-7", "7", False), ("5 apples", "5", True),
    ("70%", "70", True),
    ("0.25", "1/4", True), ("1/4", "25", False), ("3 hours", "3", True), ("12,000,000", "12000000", True),
    ("12,000,000", "1200000", False), ("$0.50", "0.5", True), ("2,5", "25", False),
]


@pytest.mark.parametrize("pred,gold,expected", PUBLIC_EQUIV)
def test_public_grader_cases(pred, gold, expected):
    assert is_equiv(pred, gold) is expected


# full texts from the same sources: (text, gold, equal?)
PUBLIC_TEXTS = [
    ("Final Answer: The largest $n$ is 34.", "34", True),  # MV: "Answer extraction with format Final Answer"
    ("\\(\\boxed{1}\\) and \\(\\boxed{-2}\\).", "-2,1", True),  # MV numina: boxes that are one list
    ("$\\boxed{1}\\boxed{2}$", "1,2", True),  # MV test_all
    ("the answer should be \\boxed{004}.\n\nBut let me check again.\n\n**Final Answer**\n\\boxed{004}",
     "004", True),
    ("could answer therefore\\boxed{840}.,but let me put this after explain.\n\n**Final Answer**\n"
     "\\boxed{840}", "840", True),  # MV test_boxed
    ("Thus, the answer is $x \\in \\boxed{(2,12) \\cup (12,102)}$", "(2, 12) \\cup (12, 102)", True),
    ("is $\\boxed{11,\\! 111,\\! 111,\\! 100}$", "11111111100", True),
    ("is $\\boxed{32,\\! 349}$", "32349", True),
    ("is $\\boxed{32, 349}$", "32349", False),  # MV: a comma and a space is a list, not thousands
    ("Therefore, $\\boxed{\\text{Evelyn}}$ is our answer.", "\\text{Evelyn}", True),
    ("Final Answer: The final answer is $28 \\%$. I hope it is correct.", "28", True),  # MIN's format
    ("She pays 3 * $4 = $12.\n#### 12", "12", True), ("The answer is $1,234.", "1234", True),  # GSM
    ("So she earns 18 dollars a day.", "18", True), ("#### -3", "3", False),
    ("Total: 5 + 7 = 12", "12", True),
]


@pytest.mark.parametrize("text,gold,expected", PUBLIC_TEXTS)
def test_public_grader_texts(text, gold, expected):
    assert grade(text, gold) is expected


def test_enough_public_cases():
    assert len(PUBLIC_EQUIV) + len(PUBLIC_TEXTS) >= 100
    assert sum(e for *_, e in PUBLIC_EQUIV) >= 40 and sum(not e for *_, e in PUBLIC_EQUIV) >= 30
