"""
Benchmark (not a test): llmc/gemm.h against PyTorch's fp32 matrix multiply on the CPU, on the
products of one flan-t5-small training step (the shapes and counts dev/bench_gemm.c lists), same
threads, same machine, alternating the two engines over several rounds.

    make build/bench_gemm && python3 dev/bench_gemm.py [--threads N] [--rounds 3] [--reps 5]

Each row: the call, its median ms in each engine (PyTorch operands with the same transpositions,
as strided views) and the ratio; the last line weighs the rows by how often a step makes them.
Subnormals are flushed in both (torch.set_flush_denormal(True); t5.c always flushes them).
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(REPO_ROOT, "build", "bench_gemm")
ROW = re.compile(r"^(.{18}) +(\d+) +(\d+) +(\d+) +([01]) +([01]) +(\d+) +([0-9.]+) ")


def run_c(threads, reps):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    res = subprocess.run([BINARY, str(reps)], env=env, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"error: {BINARY} exited with {res.returncode}:\n{res.stdout}{res.stderr}")
    rows = []
    for line in res.stdout.splitlines():
        m = ROW.match(line)
        if m:
            name = m.group(1).strip()
            M, N, K, ta, tb, count = (int(m.group(i)) for i in range(2, 8))
            rows.append(dict(name=name, M=M, N=N, K=K, ta=ta, tb=tb, count=count, ms=float(m.group(8))))
    if not rows:
        sys.exit(f"error: no result rows in the output of {BINARY}")
    return rows


def time_torch(torch, row, reps):
    M, N, K = row["M"], row["N"], row["K"]
    a = torch.randn(K, M).t() if row["ta"] else torch.randn(M, K)  # A stored (K, M) when transposed
    b = torch.randn(N, K).t() if row["tb"] else torch.randn(K, N)
    out = torch.empty(M, N)
    torch.matmul(a, b, out=out)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.matmul(a, b, out=out)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for both (default: all CPUs)")
    ap.add_argument("--rounds", type=int, default=3, help="alternations of the two engines (default 3)")
    ap.add_argument("--reps", type=int, default=5, help="timed calls per shape and round (default 5)")
    args = ap.parse_args()
    if args.threads < 1 or args.rounds < 1 or args.reps < 1:
        ap.error("--threads, --rounds and --reps must be >= 1")
    if not os.access(BINARY, os.X_OK):
        sys.exit(f"error: {BINARY} not found: run make build/bench_gemm first")
    import torch
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)

    c_ms, t_ms, rows = {}, {}, None
    for _ in range(args.rounds):
        rows = run_c(args.threads, args.reps)
        for r in rows:
            c_ms.setdefault(r["name"], []).append(r["ms"])
            t_ms.setdefault(r["name"], []).append(time_torch(torch, r, args.reps))

    print(f"torch {torch.__version__}, threads {args.threads}, rounds {args.rounds}, reps {args.reps}")
    print(f"{'call':<18} {'M':>6} {'N':>6} {'K':>6} {'tA':>2} {'tB':>2} {'count':>5} "
          f"{'t5.c ms':>9} {'torch ms':>9} {'t5.c GF/s':>9} {'torch GF/s':>10} {'t5.c/torch':>10}")
    c_total = t_total = flop_total = 0.0
    for r in rows:
        c, t = statistics.median(c_ms[r["name"]]), statistics.median(t_ms[r["name"]])
        flop = 2.0 * r["M"] * r["N"] * r["K"]
        print(f"{r['name']:<18} {r['M']:>6} {r['N']:>6} {r['K']:>6} {r['ta']:>2} {r['tb']:>2} {r['count']:>5} "
              f"{c:>9.3f} {t:>9.3f} {flop / c / 1e6:>9.1f} {flop / t / 1e6:>10.1f} {t / c:>9.2f}x")
        c_total += c * r["count"]
        t_total += t * r["count"]
        flop_total += flop * r["count"]
    print(f"weighted by count: t5.c {c_total:.1f} ms ({flop_total / c_total / 1e6:.1f} GFLOP/s), "
          f"torch {t_total:.1f} ms ({flop_total / t_total / 1e6:.1f} GFLOP/s), speed t5.c/torch {t_total / c_total:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
