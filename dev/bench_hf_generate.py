"""
The baseline for `train_t5cu --gen-bench`: transformers' generate() on the same GPU, the same model
(an HF directory written by `train_t5cu --save-hf`), the same inputs (the sources of the synthetic
DialogSum-shaped batches, dev/bench_hf_gpu.py bench_batch) and the same search:

    python3 dev/bench_hf_generate.py --model-dir DIR --inputs 256 --batch-size 32 --num-beams 4 --max-new-tokens 64

The model runs in bf16 with the KV cache (generate's default) and SDPA attention where transformers
offers it for T5. eos is suppressed until max_new_tokens (min_new_tokens), as train_t5cu does with
its eos bias, so both engines write exactly max_new_tokens tokens per summary. One untimed batch first.
Prints `gen_bench: engine=hf-generate ...` in the format of train_t5cu's line.
"""

import argparse
import importlib.util
import os
import time

import torch
import transformers


def load_bench_batch():
    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location("bench_hf_gpu", os.path.join(here, "bench_hf_gpu.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.bench_batch


def load_model(path, attn):
    from transformers import T5ForConditionalGeneration
    for kw in (dict(dtype=torch.bfloat16), dict(torch_dtype=torch.bfloat16)):  # transformers 5 / 4 spelling
        try:
            return T5ForConditionalGeneration.from_pretrained(path, attn_implementation=attn, **kw)
        except (TypeError, ValueError, ImportError) as e:
            last = e
    print(f"attn_implementation={attn} unavailable ({last}); using eager")
    return T5ForConditionalGeneration.from_pretrained(path, torch_dtype=torch.bfloat16)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--inputs", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--num-beams", type=int, default=1)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--attn", default="sdpa")
    args = ap.parse_args()
    bench_batch = load_bench_batch()
    dev = torch.device("cuda")
    model = load_model(args.model_dir, args.attn).to(dev).eval()
    B, T = args.batch_size, args.max_new_tokens
    nbatch = (args.inputs + B - 1) // B
    kw = dict(max_new_tokens=T, min_new_tokens=T, num_beams=args.num_beams, do_sample=False, early_stopping=False,
              length_penalty=1.0, no_repeat_ngram_size=0)
    seconds, tokens = 0.0, 0
    with torch.inference_mode():
        for i, k in enumerate([0] + list(range(nbatch))):  # batch 0 once untimed (kernels, allocator, caches)
            src, mask = (t.to(dev) for t in bench_batch(k, B, model.config.vocab_size)[:2])
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = model.generate(input_ids=src, attention_mask=mask, **kw)
            torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            if i == 0:
                continue
            seconds += dt
            tokens += int((out[:, 1:] != model.config.pad_token_id).sum())
            print(f"gen batch {k + 1}/{nbatch} | {B} inputs | {dt * 1e3:.1f} ms | {B / dt:.1f} summaries/s")
    print(f"gen_bench: engine=hf-generate precision=bf16 inputs={nbatch * B} batch={B} beams={args.num_beams} "
          f"max_new_tokens={T} seconds={seconds:.3f} summaries_per_s={nbatch * B / seconds:.2f} "
          f"new_tokens_per_s={tokens / seconds:.0f} attn={model.config._attn_implementation}" + f" torch={torch.__version__} transformers={transformers.__version__}")


if __name__ == "__main__":
    main()
