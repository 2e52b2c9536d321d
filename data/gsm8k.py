"""
GSM8K-format loader: JSONL lines {"question": ..., "answer": "...worked solution...\\n#### N"}.

    python -m data.gsm8k --fetch DIR          # download the public train/test JSONL into DIR (online only)
    python -m data.gsm8k PATH                 # load a file and print a summary + one record

Records come out in the generator's format: question, solution (the worked text with the
<<a*b=c>> calculator annotations removed, ending in "#### N"), answer (N without commas), style
"gsm8k". Nothing in the project fetches at run time; --fetch is for a user who is online.

Depends on: common (the CLI's one-line errors and claimed outputs).
"""
import json
import os
import re
import urllib.request

from common import ArgumentParser, claim_outputs, fail

URL = "https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data/{}.jsonl"
CALC = re.compile(r"<<[^<>]*>>")
FINAL = re.compile(r"####\s*(-?[\d,]*\.?\d+)\s*$")


def load_gsm8k(path):
    """list[dict] from a GSM8K-style JSONL file; a malformed line raises ValueError naming file and line."""
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip(): continue
            try:
                r = json.loads(line)
                q, a = r["question"], r["answer"]
                if not isinstance(q, str) or not isinstance(a, str): raise TypeError("question/answer must be strings")
                m = FINAL.search(a)
                if m is None: raise ValueError("answer does not end in '#### N'")
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{path}:{lineno}: malformed GSM8K line ({e.__class__.__name__}: {e})") from None
            out.append(dict(question=q, solution=CALC.sub("", a), answer=m.group(1).replace(",", ""), style="gsm8k"))
    return out


def fetch(dirname):
    dests = [os.path.join(dirname, f"{split}.jsonl") for split in ("train", "test")]
    claim_outputs(dests)
    for url, dest in zip((URL.format("train"), URL.format("test")), dests):
        tmp = f"{dest}.tmp{os.getpid()}"
        try:
            urllib.request.urlretrieve(url, tmp)
            os.replace(tmp, dest)
        except OSError as e:   # offline (URLError), or the folder cannot be written
            fail(f"--fetch: cannot get {url} into {dest} ({getattr(e, 'reason', None) or e.strerror or e})")
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        print(f"{dest}: {len(load_gsm8k(dest))} problems")


def main():
    ap = ArgumentParser(__doc__)
    ap.add_argument("path", nargs="?", help="a GSM8K-format JSONL file to load")
    ap.add_argument("--fetch", metavar="DIR", help="download train.jsonl and test.jsonl into DIR")
    args = ap.parse_args()
    if args.fetch: fetch(args.fetch)
    if args.path:
        try:
            recs = load_gsm8k(args.path)
        except OSError as e:
            fail(f"cannot read {args.path} ({e.strerror})")
        except UnicodeDecodeError:
            fail(f"{args.path}: not a text file")
        except ValueError as e:
            fail(str(e))
        if not recs:
            fail(f"{args.path}: no problems (an empty file)")
        print(f"{len(recs)} problems from {args.path}\n{json.dumps(recs[0], indent=1)}")
    if not (args.fetch or args.path): ap.print_help()


if __name__ == "__main__":
    main()
