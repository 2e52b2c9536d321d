"""The grader is the RL reward: these cases are its specification."""

import json
import os
import signal
import time

import pytest

from eval import answer_key, extract_answer, grade, is_equiv, normalize_answer

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
    # tolerance: a decimal against a non-terminating exact value (rounded/truncated, within 1%)
    ("0.333", "1/3", True), ("0.33", "\\frac{1}{3}", True), ("0.3", "1/3", False),
    ("0.667", "2/3", True), ("0.66", "2/3", True), ("0.6", "2/3", False), ("0.34", "1/3", False),
    ("1/3", "0.333", True), ("0", "1/3", False), ("0.125", "0.13", False), ("0.13", "0.125", False),
    ("1.414", "\\sqrt{2}", True), ("1.41", "\\sqrt2", True), ("1.5", "\\sqrt{2}", False),
    ("3.14", "\\pi", True), ("3.15", "\\pi", False), ("3.1416", "\\pi", True),
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
    ("\\frac{22}{7}", "\\pi", False), ("6.28", "2\\pi", True), ("3 + 2i", "2i + 3", True),
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
