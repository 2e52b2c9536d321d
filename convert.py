"""
Stage 1a: convert a full-attention checkpoint to sliding-window attention. The weights do not
change; only the attention settings do, and they are recorded in the checkpoint.

    python convert.py --init runs/default/base.pt --out runs/default/swa.pt     # the run's window
    python convert.py --init base.pt --layer-pattern SSSF --sinks 4 --out hybrid.pt
    python convert.py --init Qwen2.5-0.5B-Instruct/ --window 512 --prompt-format chat --out swa.pt --n-val 0
    python convert.py --init runs/x/rl.pt --export-hf rl_hf/      # a Hugging Face folder, as it is

--init takes a Hugging Face model folder too (hf.py): its tokenizer.json and the prompt format chosen
here (plain or chat) are recorded and flow to every later stage. --export-hf writes config.json,
model.safetensors and tokenizer.json that `transformers` loads as Llama (full attention), Mistral
(all layers sliding) or Qwen2/Qwen3 with layer_types (hybrid); sink tokens cannot be exported.

The window is the run's (pretrain.py --window, kept in the checkpoint's data record), so the model
slides over exactly the window its window-friendly traces are written for. --window W converts to
another one, and the record follows: later stages then write their traces for W.

Prints a conversion report: held-out loss on solutions and greedy accuracy on a small sample before
and after (the damage the window does before any fine-tuning), and KV-cache bytes per sequence at
a stated generation length for both.
"""
import json
import os
import sys

from checkpoint import check_room, data_knobs, load, next_meta, save_checkpoint
from common import COUNT, POSITIVE_INT, ArgumentParser, claim_outputs, fail, pick_device, print_settings
from engine import kv_cache_bytes
from hf import export_hf
from model import GPT, GPTConfig
from pretrain import evaluate_loss, generate_problems
from sft import greedy_accuracy, sft_rows


def main():
    ap = ArgumentParser(__doc__)
    g = ap.add_argument_group("conversion")
    g.add_argument("--init", required=True, help="checkpoint to convert")
    g.add_argument("--window", type=POSITIVE_INT, help="W: query i sees keys i-W+1 .. i (default: the run's window)")
    g.add_argument("--layer-pattern", default="S",
                   help="S = sliding, F = full, repeated over depth (e.g. SSSF)")
    g.add_argument("--sinks", type=COUNT, default=0, help="first N tokens stay visible to sliding layers")
    g.add_argument("--out", help="converted checkpoint to write")
    g.add_argument("--prompt-format", choices=["plain", "chat"],
                   help="an imported tokenizer's prompt format: plain Question/Answer text or the model's chat "
                        "template (default: as --init records; plain for a Hugging Face folder)")
    g.add_argument("--export-hf", metavar="DIR", help="write --init (or, with --out, the converted model) as a "
                                                      "Hugging Face folder")
    g = ap.add_argument_group("report")
    g.add_argument("--n-val", type=COUNT, default=64, help="held-out problems for loss and accuracy (0: skip)")
    g.add_argument("--gen-len", type=POSITIVE_INT,
                   help="sequence length for the KV-cache figure (default: max_seq_len)")
    g.add_argument("--device", default="auto")
    g.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    device = pick_device(args.device)
    if not (args.out or args.export_hf):
        fail("give --out (a converted checkpoint), --export-hf DIR, or both")
    if args.export_hf and os.path.exists(args.export_hf) and os.listdir(args.export_hf):
        fail(f"--export-hf: {args.export_hf} exists and is not empty; choose a new folder")
    claim_outputs([args.out], [args.init])
    before, enc, meta = load(args.init, device, prompt_format=args.prompt_format)
    if not args.out:
        export(before, enc, args.export_hf)
        return
    knobs = data_knobs(meta)
    window = knobs["window"] if args.window is None else args.window
    try:
        cfg = GPTConfig(**{**before.config.__dict__, "window": window,
                           "layer_pattern": args.layer_pattern, "n_sink": args.sinks})
    except ValueError as e:
        fail(str(e))
    knobs["window"] = window
    if args.n_val:   # the report's problems, made (and found to fit the model) before anything is written
        problems = generate_problems(args.n_val, "val", args.seed, knobs)   # the run's problems
        check_room(args.init, cfg.max_seq_len, enc, problems)
        try:
            val = sft_rows(enc, problems, cfg.max_seq_len)
        except ValueError as e:
            fail(f"{args.init}: {e}")
    after = GPT(cfg).to(device)
    after.load_state_dict(before.state_dict())
    save_checkpoint(args.out, after, **next_meta({**meta, "data": knobs}, "convert", init=args.init,
                                                 window=window, layer_pattern=args.layer_pattern,
                                                 n_sink=args.sinks))
    print_settings("convert", args, file=sys.stderr)   # stdout is the report; every check passed

    if args.export_hf:
        export(after, enc, args.export_hf)
    gen_len = args.gen_len or cfg.max_seq_len
    report = {"init": args.init, "out": args.out, "before": before.config.describe(), "after": cfg.describe(),
              "gen_len": gen_len,
              "kv_bytes_before": kv_cache_bytes(before.config, gen_len),
              "kv_bytes_after": kv_cache_bytes(cfg, gen_len)}
    if args.n_val:
        batches = [tuple(t[i:i + 16] for t in val) for i in range(0, val[0].shape[0], 16)]
        for name, m in (("before", before), ("after", after)):
            report[f"val_loss_{name}"] = round(evaluate_loss(m, batches, device), 4)
            report[f"greedy_acc_{name}"] = greedy_accuracy(m, enc, problems)
        report["n_val"] = len(problems)
    print(json.dumps(report))


def export(model, enc, folder):
    try:
        export_hf(model, folder, enc)
    except ValueError as e:
        fail(str(e))
    print(f"wrote {folder}: config.json ({json.load(open(os.path.join(folder, 'config.json')))['model_type']}), "
          f"model.safetensors, tokenizer.json")


if __name__ == "__main__":
    main()
