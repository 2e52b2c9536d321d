"""
Search for the CPU preset on a GPU, where its ~1M-parameter model trains in seconds (issue 13).

    python results/cpu_search/search.py CANDIDATES.json runs/search [--jobs 14] [--minutes 9]
    python results/cpu_search/search.py --stage NAME.json SCRIPT.py ARGS...   # (internal) one stage

CANDIDATES.json maps a name to {"preset": <row in the shape of common.PRESETS>, "rl": [{...}, ...]}.
Each candidate runs the recipe's stages with the scripts themselves, its row added to the presets
table in each stage's process (the product's table stays as it is): pretrain -> SFT of SA and of the
converted SWA model -> eval.py on 300 test problems -> one RL run of each model per "rl" entry (flag
overrides) -> eval.py. Independent stages run in parallel (--jobs); nothing new starts after --minutes.
Every stage's stdout/stderr is kept under OUT/NAME/, and one JSON line per finished evaluation goes to
OUT/summary.jsonl.
"""
import json
import os
import runpy
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def stage(row_file, script, args):
    """Run one of the repo's scripts with the candidate's row in the presets table."""
    sys.path.insert(0, ROOT)
    import common
    name, row = json.load(open(row_file))
    common.PRESETS[name] = row
    sys.argv = [script, *args]
    runpy.run_path(os.path.join(ROOT, script), run_name="__main__")


def main():
    cands, out = json.load(open(sys.argv[1])), sys.argv[2]
    jobs = int(sys.argv[sys.argv.index("--jobs") + 1]) if "--jobs" in sys.argv else 14
    minutes = float(sys.argv[sys.argv.index("--minutes") + 1]) if "--minutes" in sys.argv else 9
    device = sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "cuda"
    deadline = time.time() + 60 * minutes
    os.makedirs(out, exist_ok=True)
    pool = ThreadPoolExecutor(jobs)
    lock = threading.Lock()

    def run(name, tag, script, *args):
        if time.time() > deadline:
            raise TimeoutError(tag)
        d = os.path.join(out, name)
        t0 = time.time()
        with open(f"{d}/{tag}.out", "w") as so, open(f"{d}/{tag}.err", "w") as se:
            r = subprocess.run([sys.executable, __file__, "--stage", f"{d}/row.json", script, *args,
                                "--device", device], stdout=so, stderr=se, cwd=ROOT)
        with lock:
            print(f"[{time.time() - t0:6.1f} s] {name} {tag} rc={r.returncode}", flush=True)
        if r.returncode:
            raise RuntimeError(f"{name} {tag} failed")

    def evaluate(name, tag, ckpts):
        d = os.path.join(out, name)
        n = os.environ.get("EVAL_N", "300")   # test problems (a smoke run on a CPU takes fewer)
        run(name, tag, "eval.py", "--ckpt", *ckpts, "--n", n, "--k", "2", "--no-progress", "--batch-size", n,
            "--json", f"{d}/{tag}.json")
        rows = json.load(open(f"{d}/{tag}.json"))
        with lock, open(f"{out}/summary.jsonl", "a") as f:
            f.write(json.dumps({"name": name, "tag": tag, "rows": rows}) + "\n")

    def candidate(name, spec):
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        json.dump([name, spec["preset"]], open(f"{d}/row.json", "w"))
        run(name, "pretrain", "pretrain.py", "--preset", name, "--out", f"{d}/base.pt", "--no-compile")
        run(name, "convert", "convert.py", "--init", f"{d}/base.pt", "--out", f"{d}/swa.pt", "--n-val", "0")
        sft = [pool.submit(run, name, f"sft_{m}", "sft.py", "--init", f"{d}/{src}.pt", "--out",
                           f"{d}/sft_{m}.pt", "--no-compile") for m, src in (("sa", "base"), ("swa", "swa"))]
        [f.result() for f in sft]
        todo = [pool.submit(evaluate, name, "eval_sft", [f"{d}/sft_sa.pt", f"{d}/sft_swa.pt"])]
        rl = []
        for i, flags in enumerate(spec.get("rl", [])):
            extra = [x for k, v in flags.items() for x in (f"--{k}", str(v))]
            for m in ("sa", "swa"):
                rl.append(pool.submit(run, name, f"rl{i}_{m}", "rl.py", "--init", f"{d}/sft_{m}.pt", "--out",
                                      f"{d}/rl{i}_{m}.pt", *extra))
        for f in rl:
            f.result()
        for i, _ in enumerate(spec.get("rl", [])):
            todo.append(pool.submit(evaluate, name, f"eval_rl{i}", [f"{d}/rl{i}_sa.pt", f"{d}/rl{i}_swa.pt"]))
        [f.result() for f in todo]

    # the candidates' chains run on their own threads; their stages share the pool's slots
    threads = []
    for name, spec in cands.items():
        t = threading.Thread(target=lambda n=name, s=spec: _guard(candidate, n, s))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()


def _guard(fn, *a):
    try:
        fn(*a)
    except Exception as e:
        print(f"stopped: {e!r}", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "--stage":
        stage(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        main()
