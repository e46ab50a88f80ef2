"""
Benchmark (not a test): summaries per second of t5.c's generation on the CPU (build/bench_generate)
against transformers' generate() on the same machine, threads, shape and search, in one run.

    make build/bench_generate && python3 dev/bench_generate_cpu.py [--batch-size 8] [--max-new-tokens 64] [--threads N]

Both: a random flan-t5-small-shaped model, a batch of sources of 200..240 tokens, greedy and beam 4,
exactly max_new_tokens new tokens per summary (a random model never picks eos first; transformers is
held to it with min_new_tokens), fp32, subnormals flushed (torch.set_flush_denormal(True); t5.c always
flushes them), best of 3 after one untimed batch. The ratio compares new tokens per second.
"""

import argparse
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
BINARY = os.path.join(REPO_ROOT, "build", "bench_generate")
C_ROW = re.compile(r"^(greedy|beam) +num_beams (\d+): +([0-9.]+) ms per batch .*?([0-9.]+) new tokens/s", re.MULTILINE)


def run_c(args):
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    cmd = [BINARY, "flan-t5-small", str(args.batch_size), str(args.max_new_tokens)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} exited with {res.returncode}:\n{res.stdout}{res.stderr}")
    return {int(m.group(2)): (float(m.group(3)), float(m.group(4))) for m in C_ROW.finditer(res.stdout)}


def run_hf(args, beams):
    import torch
    from torch import nn
    import transformers
    from transformers import T5Config, T5ForConditionalGeneration
    sys.path.insert(0, HERE)
    from bench_cpu import FLAN_T5_SMALL

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(T5Config(**FLAN_T5_SMALL)).eval()
    if model.lm_head.weight is model.shared.weight:  # flan-t5-small's head is separate (see bench_cpu.py)
        model.lm_head.weight = nn.Parameter(torch.randn_like(model.shared.weight))
    g = torch.Generator().manual_seed(7)
    lengths = torch.randint(200, 241, (args.batch_size,), generator=g)
    ids = torch.zeros(args.batch_size, int(lengths.max()), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for b, n in enumerate(lengths.tolist()):
        ids[b, :n] = torch.randint(2, 32000, (n,), generator=g)
        ids[b, n - 1] = 1
        mask[b, :n] = 1
    kw = dict(attention_mask=mask, max_new_tokens=args.max_new_tokens, min_new_tokens=args.max_new_tokens,
              num_beams=beams, do_sample=False)
    with torch.no_grad():
        model.generate(ids, **kw)
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            out = model.generate(ids, **kw)
            best = min(best, time.perf_counter() - t0)
    new_tokens = args.batch_size * (out.shape[1] - 1)  # the first position is the decoder start token
    return best * 1e3, new_tokens / best, torch.__version__, transformers.__version__


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    if args.batch_size < 1 or args.max_new_tokens < 1 or args.threads < 1:
        ap.error("--batch-size, --max-new-tokens and --threads must be >= 1")
    if not os.access(BINARY, os.X_OK):
        sys.exit(f"error: {BINARY} not found: run make build/bench_generate first")
    c = run_c(args)
    print(f"flan-t5-small shape, random weights, batch {args.batch_size}, sources 200..240 tokens, "
          f"{args.max_new_tokens} new tokens, {args.threads} threads")
    print(f"{'search':<8} {'t5.c ms':>9} {'t5.c tok/s':>11} {'hf ms':>9} {'hf tok/s':>9} {'t5.c/hf':>8}")
    for beams in (1, 4):
        hf_ms, hf_tps, tv, trv = run_hf(args, beams)
        c_ms, c_tps = c[beams]
        print(f"{'greedy' if beams == 1 else 'beam 4':<8} {c_ms:>9.1f} {c_tps:>11.1f} {hf_ms:>9.1f} {hf_tps:>9.1f} "
              f"{c_tps / hf_tps:>7.2f}x")
    print(f"transformers {trv}, torch {tv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
