"""
The baseline for train_t5cu: Hugging Face transformers + PyTorch training a flan-t5-base-shaped
random model on the same synthetic DialogSum-shaped batches as `train_t5cu --bench`, with the best
settings found for it:
  bf16 autocast over fp32 master weights (what HF Trainer's bf16=True does), fused AdamW,
  dynamic padding (each batch padded to its own longest example), SDPA attention where
  transformers offers it for T5, torch.compile when it works (--compile auto tries it, falls back).

    python3 dev/bench_hf_gpu.py --steps 20 --warmup 3 --batch-size 16
    python3 dev/bench_hf_gpu.py --lora-r 32 --lora-alpha 64 [--shape flan-t5-large]   # LoRA (peft), q,v
    python3 dev/bench_hf_gpu.py --shape-ladder 128,32 --compile static    # bounded shapes, torch.compile per shape
    python3 dev/bench_hf_gpu.py --device cpu --shape flan-t5-small --steps 2 --warmup 1   # a smoke test of the script

The model is built from a T5Config (no hub): flan-t5-base shape (--shape flan-t5-large: the large one),
untied lm_head, dropout 0.1. --lora-r R > 0 wraps it with peft's LoraConfig(r=R, lora_alpha, target_modules
["q", "v"], lora_dropout 0) as get_peft_model does: the base frozen (fp32 weights under bf16 autocast, as HF
Trainer's bf16=True runs a fp32 model), AdamW and clipping over the adapter only; the line then says lora_r=R.
Lengths: the generator of train_t5.cu (bench_batch): per example, splitmix64 seeded with
mix64(0xd1a1095 + k*B + i); dialogue length round(exp(5.312 + 0.435 z)) clipped to [16, 512],
summary round(exp(3.628 + 0.35 z)) clipped to [4, 128], z by Box-Muller in double.
--shape-ladder S,T pads each batch as `train_t5cu --bench --shape-ladder S,T` does (llmc/dataloader.h
ladder_len: lengths up to a multiple of S / T, capped at 512 / 128), so both run the same few shapes.
--compile static: torch.compile(dynamic=False), every distinct shape of the run compiled in a warm-up pass
before the timed steps (compile_s on the result line; dynamo's recompile limit raised to the shape count),
the fair baseline for CUDA-graph replay on bounded shapes. FLOPs count real tokens as train_t5cu does
(t5_batch_flops): 3 x forward; under LoRA the frozen Linears 2 x, attention 3 x, the adapters 6 r (in + out).
Prints one line `bench: engine=hf-pytorch ...` in the format of train_t5cu's.
"""

import argparse
import math
import time

import torch
import transformers
from torch import nn

MASK64 = (1 << 64) - 1


def mix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


class Rng:  # llmc/rng.h: splitmix64
    def __init__(self, seed):
        self.state = seed & MASK64

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        return mix64(self.state)

    def uniform(self):  # train_t5.cu bench_uniform
        return ((self.next() >> 11) + 0.5) * (1.0 / 9007199254740992.0)


def bench_length(r, mu, sigma, lo, hi):
    u1, u2 = r.uniform(), r.uniform()
    z = math.sqrt(-2.0 * math.log(u1)) * math.cos(6.283185307179586 * u2)
    v = math.exp(mu + sigma * z)
    v = int(math.floor(v + 0.5))  # lround: halves away from zero (v > 0)
    return min(max(v, lo), hi)


MAX_SRC, MAX_TGT = 512, 128  # train_t5.cu BENCH_MAX_SRC / BENCH_MAX_TGT


def ladder_len(n, step, cap):  # llmc/dataloader.h
    if step <= 1:
        return n
    r = (n + step - 1) // step * step
    return r if r < cap else max(n, cap)


def bench_batch(k, B, vocab, pad=0, start=0, ladder=(0, 0)):
    """Batch k of train_t5.cu's synthetic stream: (input_ids, attention_mask, labels, decoder_input_ids,
    source lengths, target lengths), padded up to the ladder's rungs."""
    ls, lt = [], []
    for i in range(B):
        r = Rng(mix64((0xD1A1095 + k * B + i) & MASK64))
        ls.append(bench_length(r, 5.312, 0.435, 16, MAX_SRC))
        lt.append(bench_length(r, 3.628, 0.35, 4, MAX_TGT))
    Ts, Tt = ladder_len(max(ls), ladder[0], MAX_SRC), ladder_len(max(lt), ladder[1], MAX_TGT)
    src = torch.full((B, Ts), pad, dtype=torch.long)
    labels = torch.full((B, Tt), -100, dtype=torch.long)
    for i in range(B):  # ids continue from the last example's generator, as in synthetic_batch
        src[i, :ls[i]] = torch.tensor([2 + r.next() % (vocab - 2) for _ in range(ls[i])])
        labels[i, :lt[i]] = torch.tensor([2 + r.next() % (vocab - 2) for _ in range(lt[i])])
    mask = (torch.arange(Ts)[None, :] < torch.tensor(ls)[:, None]).long()
    dec_in = torch.full((B, Tt), pad, dtype=torch.long)
    dec_in[:, 0] = start
    dec_in[:, 1:] = labels[:, :-1].clamp(min=0)
    dec_in[:, 1:][labels[:, :-1] == -100] = pad
    return src, mask, labels, dec_in, ls, lt


def batch_flops(cfg, ls, lt, lora_r=0):
    """train_t5.cu t5_batch_flops: training FLOPs of the real tokens. Full fine-tuning 3 x forward; LoRA
    (rank lora_r on q, v) the frozen Linears 2 x, attention's activation products 3 x, each adapter
    3 x 2 r (in + out) per token where its Linear runs."""
    C, HD, F, V = cfg.d_model, cfg.num_heads * cfg.d_kv, cfg.d_ff, cfg.vocab_size
    ffn = 2.0 * C * F * (3 if cfg.is_gated_act else 2)
    attn_proj = 2.0 * 4 * C * HD
    dense = att = adapter = 0.0
    per_qv = 2 * 6.0 * lora_r * (C + HD)  # q and v adapters of one attention, per token
    for s, t in zip(ls, lt):
        dense += cfg.num_layers * s * (attn_proj + ffn)
        att += cfg.num_layers * 4.0 * HD * s * s
        dense += cfg.num_decoder_layers * (t * (2 * attn_proj + ffn - 2.0 * 2 * C * HD) + s * 2.0 * 2 * C * HD)
        att += cfg.num_decoder_layers * (4.0 * HD * t * (t + 1) / 2 + 4.0 * HD * t * s)
        dense += t * 2.0 * C * V
        # encoder q, v on s tokens; decoder self q, v and cross q on t tokens, cross v on s
        adapter += cfg.num_layers * s * per_qv + cfg.num_decoder_layers * (t * 1.5 * per_qv + s * 0.5 * per_qv)
    return 2.0 * dense + 3.0 * att + adapter if lora_r else 3.0 * (dense + att)


def card_peak_tflops(name):  # train_t5.cu card_peak_tflops
    cards = [("H100 SXM", 989.4), ("H100 80GB HBM3", 989.4), ("H200", 989.4), ("GH200", 989.4), ("H100 NVL", 835.0),
             ("H100 PCIe", 756.0), ("H100", 756.0), ("A100", 312.0), ("A10G", 70.0), ("L40S", 362.0), ("L4", 121.0),
             ("RTX 4090", 165.2), ("RTX 3090", 71.0)]
    for key, t in cards:
        if key in name:
            return t
    return 0.0


SHAPES = {  # llmc/t5.h's presets
    "flan-t5-small": dict(d_model=512, num_heads=6, d_ff=1024, num_layers=8, num_decoder_layers=8),
    "flan-t5-base": dict(d_model=768, num_heads=12, d_ff=2048, num_layers=12, num_decoder_layers=12),
    "flan-t5-large": dict(d_model=1024, num_heads=16, d_ff=2816, num_layers=24, num_decoder_layers=24),
}


def build_model(attn, shape="flan-t5-base"):
    from transformers import T5Config, T5ForConditionalGeneration
    kw = dict(vocab_size=32128, d_kv=64, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
              dropout_rate=0.1, relative_attention_num_buckets=32, relative_attention_max_distance=128, **SHAPES[shape])
    try:
        config = T5Config(**kw, attn_implementation=attn)
        model = T5ForConditionalGeneration(config)
    except (ValueError, ImportError) as e:  # T5 may not offer SDPA in this transformers
        print(f"attn_implementation={attn} unavailable ({e}); using eager")
        config = T5Config(**kw, attn_implementation="eager")
        model = T5ForConditionalGeneration(config)
    if model.lm_head.weight is model.shared.weight:  # transformers >= 5 ties it anyway (dev/make_fixtures.py)
        model.lm_head.weight = nn.Parameter(torch.empty_like(model.shared.weight))
        nn.init.normal_(model.lm_head.weight, mean=0.0, std=1.0)
        model.config.tie_word_embeddings = False
    return model, config


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--compile", choices=["auto", "on", "off", "static"], default="auto",
                    help="auto/on: torch.compile(dynamic=True); static: per shape, compiled before timing")
    ap.add_argument("--shape-ladder", default="0,0", help="S,T: pad sources / targets up to multiples of S / T")
    ap.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke test of this script")
    ap.add_argument("--attn", default="sdpa")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="flan-t5-base")
    ap.add_argument("--lora-r", type=int, default=0, help="0: full fine-tuning; R > 0: peft LoRA of rank R on q, v")
    ap.add_argument("--lora-alpha", type=float, default=8.0)
    args = ap.parse_args()
    try:
        ladder = tuple(int(v) for v in args.shape_ladder.split(","))
        assert len(ladder) == 2 and all(0 <= v <= 4096 for v in ladder)
    except (ValueError, AssertionError):
        ap.error(f"--shape-ladder must be S,T (two steps in [0, 4096]), got {args.shape_ladder!r}")
    torch.manual_seed(0)
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    torch.backends.cuda.matmul.allow_tf32 = True
    model, config = build_model(args.attn, args.shape)
    if args.lora_r > 0:
        from peft import LoraConfig, get_peft_model
        lc = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, target_modules=["q", "v"], lora_dropout=0.0,
                        task_type="SEQ_2_SEQ_LM")
        model = get_peft_model(model, lc)
        model.print_trainable_parameters()
    model.to(dev).train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=3e-4, weight_decay=0.01, fused=cuda)
    batches = [bench_batch(k, args.batch_size, config.vocab_size, ladder=ladder) for k in range(args.warmup + args.steps)]
    shapes = {}  # distinct (Ts, Tt): the first batch of each
    for b in batches:
        shapes.setdefault(tuple(b[0].shape[1:]) + tuple(b[2].shape[1:]), b)
    step_fn = model
    if args.compile != "off":
        try:
            if args.compile == "static":
                import torch._dynamo as dynamo
                dynamo.config.cache_size_limit = max(dynamo.config.cache_size_limit, 2 * len(shapes) + 8)
                dynamo.config.accumulated_cache_size_limit = max(dynamo.config.accumulated_cache_size_limit,
                                                                 4 * len(shapes) + 16)
            step_fn = torch.compile(model, dynamic=args.compile != "static")
        except Exception as e:  # noqa: BLE001 — any failure means: run eager
            print(f"torch.compile unavailable ({e}); eager")
            step_fn = model

    def train_step(batch):
        src, mask, labels, dec_in = (t.to(dev, non_blocking=True) for t in batch[:4])
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            loss = step_fn(input_ids=src, attention_mask=mask, decoder_input_ids=dec_in, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    compiled = step_fn is not model
    # warm-up: the first batches, and under --compile static one step of every shape (each compiles once)
    warm = batches[:args.warmup] + (list(shapes.values()) if args.compile == "static" else [])
    t_warm = time.perf_counter()
    for b in warm:
        try:
            train_step(b)
        except Exception as e:  # noqa: BLE001 — a compile failure shows up at the first call
            if not compiled or args.compile in ("on", "static"):
                raise
            print(f"torch.compile failed at run time ({type(e).__name__}: {e}); eager")
            step_fn, compiled = model, False
            train_step(b)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    warm_s = time.perf_counter() - t_warm
    times, tokens, flops = [], 0, 0.0
    for k in range(args.warmup, args.warmup + args.steps):
        t0 = time.perf_counter()
        loss = train_step(batches[k])
        loss.item()  # synchronises, like train_t5cu's one read per step
        times.append((time.perf_counter() - t0) * 1e3)
        ls, lt = batches[k][4], batches[k][5]
        tokens += sum(ls) + sum(lt)
        flops += batch_flops(config, ls, lt, args.lora_r)
        print(f"step {k + 1} | loss {loss.item():.4f} | {times[-1]:.1f} ms")
    total_s = sum(times) / 1e3
    peak = card_peak_tflops(torch.cuda.get_device_name()) if cuda else 0.0
    peak_mem = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
    tflops = flops / total_s / 1e12
    print(f"bench: engine=hf-pytorch precision=bf16-autocast shape={args.shape} lora_r={args.lora_r} "
          f"batch={args.batch_size} steps={args.steps} "
          f"median_step_ms={sorted(times)[(len(times) - 1) // 2]:.2f} real_tok_per_s={tokens / total_s:.0f} "
          f"tflops={tflops:.1f} mfu={100.0 * tflops / peak if peak else 0.0:.1f}% "
          f"peak_mem_gib={peak_mem:.2f} compile={args.compile if compiled else 'off'} "
          f"shapes={len(shapes)} ladder={ladder[0]},{ladder[1]} warmup_s={warm_s:.1f} "
          f"attn={config._attn_implementation}" + f" torch={torch.__version__} transformers={transformers.__version__}")


if __name__ == "__main__":
    main()
