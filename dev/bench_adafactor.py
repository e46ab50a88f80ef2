"""CPU step time and memory of AdamW against Adafactor on the tensor shapes of flan-t5-small and -base:
PyTorch (torch.optim.AdamW, transformers' Adafactor) and ours (the CPU engine's AdamW, llmc/adafactor.h,
through build/bench_adafactor). Random weights and gradients: only the shapes matter for an optimizer.

    python dev/bench_adafactor.py [--presets flan-t5-small,flan-t5-base] [--steps 5] [--threads N]

Adafactor runs with the T5 fine-tuning options (lr=1e-3, scale_parameter=False, relative_step=False,
warmup_init=False, beta1=None); AdamW with lr=1e-3, weight_decay=0.01. Each PyTorch run is its own process,
so that its peak resident memory (ru_maxrss) is its own; the tensor shapes come from llmc/t5.h's presets.
Times are medians over the timed steps (a shared machine's neighbours come and go); --threads sets both
torch.set_num_threads and OMP_NUM_THREADS (default: every CPU).
"""
import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def presets():
    """name -> (d_model, d_kv, num_heads, d_ff, layers, flan), read from llmc/t5.h's T5_PRESETS"""
    src = open(os.path.join(ROOT, "llmc", "t5.h")).read()
    rows = re.findall(r'\{"([\w-]+)", (\d+), (\d+), (\d+), (\d+), (\d+), (\d)\}', src)
    return {r[0]: tuple(int(x) for x in r[1:]) for r in rows}


def hf_shapes(name, vocab=32128, buckets=32):
    """every tensor of the Hugging Face model, one per layer (as the optimizer sees them)"""
    C, D, H, F, L, flan = presets()[name]
    HD = H * D
    ffn = [(F, C), (F, C), (C, F)] if flan else [(F, C), (C, F)]  # wi_0, wi_1, wo | wi, wo
    attn = [(HD, C), (HD, C), (HD, C), (C, HD)]                   # q, k, v, o
    shapes = [(vocab, C), (buckets, H), (C,), (buckets, H), (C,)]  # shared, 2 relative biases, 2 final norms
    shapes += L * (attn + [(C,), (C,)] + ffn)                     # encoder block: self-attention, 2 norms, FFN
    shapes += L * (attn + attn + [(C,), (C,), (C,)] + ffn)        # decoder block: + cross-attention, 3 norms
    if flan:
        shapes.append((vocab, C))                                 # untied lm_head
    return shapes


def worker(preset, opt_name, steps, threads):
    import torch
    from transformers.optimization import Adafactor
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    params = []
    for s in hf_shapes(preset):
        p = torch.nn.Parameter(0.05 * torch.randn(s, generator=gen))
        p.grad = 1e-3 * torch.randn(s, generator=gen)
        params.append(p)
    if opt_name == "none":  # the baseline: PyTorch, transformers, the weights and their gradients
        n = sum(p.numel() for p in params)
        print(f"RESULT 0 0 {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024} {n}")
        return
    if opt_name == "adamw":
        opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)
    else:
        opt = Adafactor(params, lr=1e-3, scale_parameter=False, relative_step=False, warmup_init=False)
    opt.step()  # the state is created here
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        opt.step()
        times.append((time.perf_counter() - t0) * 1e3)
    ms = statistics.median(times)
    state = sum(v.numel() * v.element_size() for st in opt.state.values() for v in st.values()
                if torch.is_tensor(v) and v.dim() > 0)
    n = sum(p.numel() for p in params)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"RESULT {ms:.1f} {state} {peak} {n}")


def run_torch(preset, opt_name, steps, threads):
    out = subprocess.run([sys.executable, __file__, "--worker", preset, opt_name, str(steps), str(threads)], capture_output=True,
                         text=True, check=True).stdout
    ms, state, peak, n = out.split("RESULT")[1].split()
    return float(ms), int(state), int(peak), int(n)


def run_c(preset, steps, threads):
    binary = os.path.join(ROOT, "build", "bench_adafactor")
    subprocess.run(["make", "-s", "build/bench_adafactor"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([binary, preset, str(steps)], cwd=ROOT, capture_output=True, text=True, check=True, env=env).stdout
    res = {}
    for line in out.splitlines():
        m = re.match(r"\s+(adamw|adafactor)\s+([\d.]+) ms/step\s+state\s+(\d+) bytes", line)
        if m:
            res[m.group(1)] = (float(m.group(2)), int(m.group(3)))
    n = int(re.search(r": (\d+) parameters", out).group(1))
    return res, n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", default="flan-t5-small,flan-t5-base")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--worker", nargs=4)
    a = ap.parse_args()
    if a.worker:
        worker(a.worker[0], a.worker[1], int(a.worker[2]), int(a.worker[3]))
        return
    print(f"{a.threads} threads ({os.cpu_count()} CPUs), median of {a.steps} timed steps after one untimed; baseline = the")
    print("peak RSS of the same process without an optimizer (PyTorch, transformers, weights, gradients)")
    print("| preset | optimizer | implementation | ms/step | state bytes | peak RSS | peak RSS − baseline |")
    print("|---|---|---|---:|---:|---:|---:|")
    for preset in a.presets.split(","):
        c_res, c_n = run_c(preset, a.steps, a.threads)
        base = run_torch(preset, "none", a.steps, a.threads)[2]  # peak RSS without an optimizer
        for opt_name in ("adamw", "adafactor"):
            ms, state, peak, n = run_torch(preset, opt_name, a.steps, a.threads)
            if n != c_n:
                sys.exit(f"{preset}: the Python shapes give {n} parameters, llmc/t5.h {c_n}")
            label = "torch.optim.AdamW" if opt_name == "adamw" else "transformers Adafactor"
            print(f"| {preset} | {opt_name} | {label} | {ms:.1f} | {state:,} | {peak / 2**20:.0f} MiB | {(peak - base) / 2**20:.0f} MiB |")
            cms, cstate = c_res[opt_name]
            label = "t5.c (t5cpu_adamw)" if opt_name == "adamw" else "t5.c (llmc/adafactor.h)"
            print(f"| {preset} | {opt_name} | {label} | {cms:.1f} | {cstate:,} | | |")
            if cstate != state:
                sys.exit(f"{preset} {opt_name}: state bytes differ: ours {cstate}, PyTorch {state}")


if __name__ == "__main__":
    main()
