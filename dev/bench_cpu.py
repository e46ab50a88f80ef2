"""
Benchmark (not a test): one forward+backward of a flan-t5-small-shaped random model, PyTorch fp32 on
the CPU against our C engine (train_t5) on the same shape and thread count.

    python3 dev/bench_cpu.py [--batch-size 8] [--src-len 256] [--tgt-len 64] [--threads N] [--iters 3] [--warmup 1]
                             [--rounds 1] [--torch-flush-denormal]

Every token is real (no padding), so tokens/s = batch * (src_len + tgt_len) / time. Peak memory is
each engine's peak resident set (VmHWM): PyTorch runs in this process (interpreter, libraries, model,
gradients, activations), t5.c reports its own (`peak_rss_mib=` of its bench line). The C engine is
asked to do the same work through C_ENGINE_CMD below and must print a line `bench: fwdbwd_ms=<float>`
(its median over the timed iterations). If ./train_t5 is missing, only PyTorch is reported.
"""

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import warnings

# The C engine's command line; edit here if the flags change. Filled in with str.format.
C_ENGINE_CMD = ("./train_t5 --model flan-t5-small --bench {iters} --batch-size {batch_size} "
                "--bench-src-len {src_len} --bench-tgt-len {tgt_len}")
C_ENGINE_BINARY = "./train_t5"
C_ENGINE_RESULT = re.compile(r"^bench: fwdbwd_ms=([0-9.eE+-]+).* peak_rss_mib=([0-9.-]+)", re.MULTILINE)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# flan-t5-small's shape (google/flan-t5-small config.json), random weights, no dropout
FLAN_T5_SMALL = dict(vocab_size=32128, d_model=512, d_kv=64, num_heads=6, d_ff=1024, num_layers=8,
                     num_decoder_layers=8, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                     dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
                     relative_attention_num_buckets=32, relative_attention_max_distance=128,
                     layer_norm_epsilon=1e-6)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def bench_pytorch(args):
    import torch
    from torch import nn
    import transformers
    from transformers import T5Config, T5ForConditionalGeneration

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    # t5.c flushes subnormals to zero (llmc/utils.h); --torch-flush-denormal gives PyTorch the same
    torch.set_flush_denormal(args.torch_flush_denormal)
    torch.manual_seed(0)
    config = T5Config(**FLAN_T5_SMALL)
    model = T5ForConditionalGeneration(config)
    if model.lm_head.weight is model.shared.weight:
        # transformers >= 5 ties the head even for tie_word_embeddings=False; flan-t5-small's is separate
        model.lm_head.weight = nn.Parameter(torch.randn_like(model.shared.weight))
    model.train()

    g = torch.Generator().manual_seed(1)
    input_ids = torch.randint(2, config.vocab_size, (args.batch_size, args.src_len), generator=g)
    labels = torch.randint(2, config.vocab_size, (args.batch_size, args.tgt_len), generator=g)
    attention_mask = torch.ones_like(input_ids)

    def step():
        model.zero_grad(set_to_none=True)
        out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
        out.loss.backward()

    def run():
        for _ in range(args.warmup):
            step()
        times = []
        for _ in range(args.iters):
            t0 = time.perf_counter()
            step()
            times.append((time.perf_counter() - t0) * 1e3)
        return times

    info = dict(torch=torch.__version__, transformers=transformers.__version__,
                attention=model.config._attn_implementation,
                params=sum(p.numel() for p in model.parameters()))
    return run, info


def bench_c(args, announce=True):
    binary = os.path.normpath(os.path.join(REPO_ROOT, C_ENGINE_BINARY))
    if not os.path.isfile(binary) or not os.access(binary, os.X_OK):
        print(f"C engine: {binary} not found (build it with make); reporting PyTorch only")
        return None
    cmd = C_ENGINE_CMD.format(iters=args.iters, batch_size=args.batch_size, src_len=args.src_len,
                              tgt_len=args.tgt_len)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    if announce:
        print(f"C engine: OMP_NUM_THREADS={args.threads} {cmd}")
    res = subprocess.run(cmd.split(), cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    found = C_ENGINE_RESULT.findall(res.stdout)
    if res.returncode != 0 or not found:
        print(f"C engine: exit status {res.returncode}, {'no' if not found else 'a'} 'bench: fwdbwd_ms=' line")
        tail = (res.stdout + res.stderr).strip().splitlines()[-10:]
        for line in tail:
            print(f"  | {line}")
        return None
    return float(found[-1][0]), float(found[-1][1])


def peak_rss_mib():
    """this process's peak resident set (VmHWM), MiB"""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-size", type=int, default=8, help="sequences per batch (default 8)")
    ap.add_argument("--src-len", type=int, default=256, help="encoder tokens per sequence (default 256)")
    ap.add_argument("--tgt-len", type=int, default=64, help="decoder tokens per sequence (default 64)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for both (default: all CPUs)")
    ap.add_argument("--iters", type=int, default=3, help="timed iterations, median reported (default 3)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed iterations first (default 1)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="alternate PyTorch and t5.c this many times; medians over all rounds (default 1)")
    ap.add_argument("--torch-flush-denormal", action="store_true",
                    help="torch.set_flush_denormal(True), as t5.c does (default: PyTorch's default, off)")
    args = ap.parse_args()
    for name in ("batch_size", "src_len", "tgt_len", "threads", "iters", "rounds"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        ap.error("--warmup must be >= 0")
    warnings.filterwarnings("ignore")

    tokens = args.batch_size * (args.src_len + args.tgt_len)
    print(f"shape: flan-t5-small (random weights), batch {args.batch_size}, src {args.src_len}, "
          f"tgt {args.tgt_len}, {tokens} real tokens per step")
    print(f"cpu: {cpu_model()}, {os.cpu_count()} logical CPUs, threads {args.threads}, "
          f"iters {args.iters}, warmup {args.warmup}")

    # rounds alternate the two engines, so that a slow spell of a shared machine hits both
    pt_run, info = bench_pytorch(args)
    pt_all, c_all, c_mib = [], [], 0.0
    for r in range(args.rounds):
        pt_all += pt_run()
        c = bench_c(args, announce=r == 0)
        if c is not None:
            c_all.append(c[0])
            c_mib = max(c_mib, c[1])
    pt_mib = peak_rss_mib()
    pt_ms = statistics.median(pt_all)
    c_ms = statistics.median(c_all) if c_all else None
    print(f"pytorch: torch {info['torch']}, transformers {info['transformers']}, attention {info['attention']}, "
          f"{info['params'] / 1e6:.1f}M params, flush_denormal {args.torch_flush_denormal}, fwd+bwd ms per iter: " + ", ".join(f"{t:.1f}" for t in pt_all))
    if c_all:
        print("t5.c: median fwd+bwd ms of each round: " + ", ".join(f"{t:.1f}" for t in c_all))

    print()
    print(f"{'engine':<10} {'fwd+bwd ms':>12} {'tokens/s':>12} {'peak RSS MiB':>13}")
    print(f"{'pytorch':<10} {pt_ms:>12.1f} {tokens / (pt_ms / 1e3):>12.0f} {pt_mib:>13.0f}")
    if c_ms is not None:
        print(f"{'t5.c':<10} {c_ms:>12.1f} {tokens / (c_ms / 1e3):>12.0f} {c_mib:>13.0f}")
        print(f"speed C/PyTorch: {pt_ms / c_ms:.2f}x (>1 means the C engine is faster); "
              f"peak memory C/PyTorch: {c_mib / pt_mib:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
