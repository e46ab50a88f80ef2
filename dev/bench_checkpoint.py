#!/usr/bin/env python3
"""How long a checkpoint stops training, background (--async-checkpoint 1) against synchronous (0), on real
model shapes (flan-t5-small, flan-t5-base: 77M / 248M parameters, 0.92 / 2.97 GB of state with AdamW), and
what the whole run costs with a checkpoint every step against none. A benchmark, not a test: it prints a
table for docs/benchmarks.md.
    python3 dev/bench_checkpoint.py --train-bin ./train_t5 [--presets flan-t5-small,flan-t5-base] [--steps 4]
The runs train on short real DialogSum batches (batch 1, 64 source / 16 target tokens) so that a step is short
beside a multi-GB write: the blocked time per checkpoint is the quantity of interest. On this 2-core machine
the background writer competes with the training threads for the cores and the disk; the total times say
how much that costs."""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def prepare(args, tmp):
    out = os.path.join(tmp, "ds")
    r = subprocess.run([sys.executable, "prepro_dialogsum.py", "--data-dir", os.path.join(args.data, "dialogsum"),
                        "--tokenizer", os.path.join(args.data, "t5", "spiece.model"), "--out-dir", out],
                       cwd=REPO, capture_output=True, text=True)
    if r.returncode:
        sys.exit(r.stderr[-500:])
    return out


def run(args, data, tmp, preset, mode):
    rd = os.path.join(tmp, f"{preset}_{mode}")
    extra = [] if mode == "none" else ["--out-dir", rd, "--checkpoint-every", str(args.every), "--keep-checkpoints", "1",
                                       "--async-checkpoint", "1" if mode == "async" else "0"]
    cmd = [args.train_bin, "--model", preset, "--train-file", os.path.join(data, "val.bin"), "--steps", str(args.steps),
           "--batch-size", "1", "--max-src-len", "64", "--max-tgt-len", "16", "--dropout", "0", *extra]
    t0 = time.time()
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    total = time.time() - t0
    if r.returncode:
        sys.exit(f"{' '.join(cmd)}: exit {r.returncode}\n{r.stderr[-500:]}")
    waited = [float(x) for x in re.findall(r"the step waited (\d+) ms", r.stdout)]
    steps = [float(x) for x in re.findall(r"^step \d+/\d+ .*? \| ([\d.]+) ms \|", r.stdout, re.M)]
    size = os.path.getsize(os.path.join(rd, "checkpoints", sorted(os.listdir(os.path.join(rd, "checkpoints")))[-1])) \
        if mode != "none" else 0
    shutil.rmtree(rd, ignore_errors=True)
    return dict(total=total, waited=waited, steps=steps, size=size)


def median(x):
    x = sorted(x)
    return x[len(x) // 2] if x else float("nan")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--train-bin", default="./train_t5")
    p.add_argument("--data", default=os.environ.get("DATA", os.path.join(REPO, "..", "shared", "data")))
    p.add_argument("--presets", default="flan-t5-small,flan-t5-base")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--every", type=int, default=2, help="a checkpoint every N steps (and the last step's)")
    args = p.parse_args()
    args.train_bin = os.path.abspath(os.path.join(REPO, args.train_bin))
    tmp = tempfile.mkdtemp(prefix="t5c_bench_ckpt_", dir=os.environ.get("BENCH_TMP"))
    try:
        data = prepare(args, tmp)
        print(f"{args.steps} steps, a checkpoint every {args.every} (the last one waited for before the run ends); blocked = what "
              "the training thread waits for a checkpoint: sync, the median write; async, the first one's staging (no "
              "earlier write in flight)\n")
        print(f"{'preset':<14} {'state GB':>8} {'sync blocked s':>14} {'async blocked s':>15} {'ratio':>6} "
              f"{'run none s':>10} {'run sync s':>10} {'run async s':>11}")
        for preset in args.presets.split(","):
            res = {mode: run(args, data, tmp, preset, mode) for mode in ("none", "sync", "async")}
            sync_b = median(res["sync"]["waited"]) / 1e3
            async_b = res["async"]["waited"][0] / 1e3
            print(f"{preset:<14} {res['sync']['size'] / 1e9:>8.2f} {sync_b:>14.2f} {async_b:>15.2f} {async_b / sync_b:>6.1%} "
                  f"{res['none']['total']:>10.1f} {res['sync']['total']:>10.1f} {res['async']['total']:>11.1f}")
            sys.stdout.flush()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
