#!/usr/bin/env python3
"""Seed corpora for dev/fuzz.c: one directory per target, each holding real files written by the
real writers (train_t5, prepro_dialogsum.py, transformers' save_pretrained fixtures, sentencepiece's
trainer), so the fuzzer starts from inputs the readers meet in use.

    python3 dev/fuzz_seeds.py --train-bin ./train_t5 --out build/fuzz/seeds [--data ../shared/data]

Needs sentencepiece (pip) and the data in ../shared (DialogSum text for the text targets; nothing
from it is committed). Runs in about 10 s.
"""
import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(REPO, "dev", "fixtures")
# a tiny FLAN-shaped model: every tensor kind, a few hundred parameters per tensor
TINY = ["--vocab-size", "64", "--d-model", "8", "--num-heads", "2", "--d-kv", "4", "--d-ff", "12",
        "--num-layers", "1", "--num-buckets", "4", "--max-distance", "8"]


def put(out, target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def run(cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed:\n{r.stdout[-2000:]}")


def tiny_examples(path):
    """a tiny example file in the prepro format (dev/examples.py), ids < 64"""
    sys.path.insert(0, os.path.join(REPO, "dev"))
    from examples import write_examples
    write_examples(path, [([5, 6, 7, 1], [10, 1]), ([9, 1], [11, 12, 1]), ([3, 4, 5, 6, 7, 8, 1], [13, 1])])


def model_seeds(out, train_bin, tmp):
    """hfdir, safetensors, config, json, checkpoint, metrics_log from a tiny training run"""
    ex = os.path.join(tmp, "tiny.bin")
    tiny_examples(ex)
    run_dir = os.path.join(tmp, "run")
    run([train_bin, "--model", "flan-t5-small", *TINY, "--train-file", ex, "--steps", "2", "--batch-size", "2",
         "--out-dir", run_dir, "--checkpoint-every", "1", "--eval-every", "1", "--val-file", ex,
         "--save-checkpoint", os.path.join(tmp, "tiny.ckpt")])
    model = os.path.join(run_dir, "model")
    put(out, "hfdir", "tiny_flan", read(os.path.join(model, "config.json")) + b"\0" + read(os.path.join(model, "model.safetensors")))
    put(out, "safetensors", "tiny_flan", read(os.path.join(model, "model.safetensors")))
    put(out, "checkpoint", "tiny_opt", b"\x01" + read(os.path.join(tmp, "tiny.ckpt")))
    for i, ck in enumerate(sorted(glob.glob(os.path.join(run_dir, "checkpoints", "ckpt_*.bin")))):
        put(out, "checkpoint", f"run_{i}", b"\x01" + read(ck))
    put(out, "metrics_log", "run", b"\x01" + read(os.path.join(run_dir, "metrics.jsonl")))
    put(out, "examples", "tiny", b"\x01" + read(ex))


def fixture_seeds(out):
    """transformers' own files: configs, safetensors (F32, BF16, sharded index)"""
    for cfg in sorted(glob.glob(os.path.join(FIX, "*", "model*", "config.json"))):
        name = os.path.basename(os.path.dirname(os.path.dirname(cfg))) + "_" + os.path.basename(os.path.dirname(cfg))
        put(out, "config", name, read(cfg))
        put(out, "json", name, read(cfg))
    for idx in glob.glob(os.path.join(FIX, "*", "*", "model.safetensors.index.json")):
        put(out, "json", "index", read(idx))
        put(out, "hfindex", "index", read(idx))
    for st in sorted(glob.glob(os.path.join(FIX, "gen", "*.safetensors"))):
        put(out, "safetensors", os.path.basename(st), read(st))
    bf16 = os.path.join(FIX, "flan_gated", "model_bf16")
    put(out, "hfdir", "flan_gated_bf16", read(os.path.join(bf16, "config.json")) + b"\0" + read(os.path.join(bf16, "model.safetensors")))
    for ex in sorted(glob.glob(os.path.join(FIX, "*", "examples.bin"))):
        put(out, "examples", os.path.basename(os.path.dirname(ex)), b"\x01" + read(ex))
    for ad in sorted(glob.glob(os.path.join(FIX, "lora_*", "adapter"))):
        put(out, "lora", os.path.basename(os.path.dirname(ad)),
            read(os.path.join(ad, "adapter_config.json")) + b"\0" + read(os.path.join(ad, "adapter_model.safetensors")))


def lora_seeds(out, train_bin, tmp):
    """lora_ckpt: adapter checkpoints of a LoRA run on the flan_gated fixture (the shape dev/fuzz.c loads against)"""
    fx = os.path.join(FIX, "flan_gated")
    run_dir = os.path.join(tmp, "lora_run")
    run([train_bin, "--model", os.path.join(fx, "model"), "--train-file", os.path.join(fx, "examples.bin"), "--steps", "2",
         "--batch-size", "2", "--lora-r", "2", "--lora-targets", "q,v,o,wi_0,wi_1,wo", "--out-dir", run_dir,
         "--checkpoint-every", "1", "--save-checkpoint", os.path.join(tmp, "lora.ckpt")])
    put(out, "lora_ckpt", "saved", b"\x01" + read(os.path.join(tmp, "lora.ckpt")))
    for i, ck in enumerate(sorted(glob.glob(os.path.join(run_dir, "checkpoints", "ckpt_*.bin")))):
        put(out, "lora_ckpt", f"run_{i}", b"\x01" + read(ck))


def rng_bytes(seed, n):
    import random
    rng = random.Random(seed)
    return [rng.randrange(256) for _ in range(n)]


def dialogsum_records(data, n):
    with open(os.path.join(data, "dialogsum", "dialogsum.test.jsonl"), encoding="utf-8") as f:
        return [json.loads(next(f)) for _ in range(n)]


def text_seeds(out, data, tmp):
    """refs (prepro's format), tokenize, scores and spm (tiny models sentencepiece trains) from DialogSum text"""
    recs = dialogsum_records(data, 6)
    lines = [json.dumps({"id": r["fname"], "dialogue": r["dialogue"], "summaries": [r["summary1"], r["summary2"], r["summary3"]],
                         "topic": r["topic1"]}) for r in recs]
    put(out, "refs", "three", bytes([2]) + ("\n".join(lines[:3]) + "\n").encode())
    for i, r in enumerate(recs[:3]):
        put(out, "tokenize", f"dialogue_{i}", r["dialogue"].encode())
        put(out, "decode", f"ids_{i}", bytes(rng_bytes(i, 120)))
        put(out, "scores", f"summaries_{i}", "\0".join([r["summary1"], r["summary2"], r["summary3"]]).encode())
        put(out, "jsonout", f"dialogue_{i}", (r["dialogue"] + '\t"\\ \x01 \u00e9 \U0001f600').encode())
    import sentencepiece as spm
    corpus = os.path.join(tmp, "corpus.txt")
    with open(corpus, "w", encoding="utf-8") as f:
        for r in recs:
            f.write(r["dialogue"] + "\n")
    for rule in ("identity", "nmt_nfkc"):
        prefix = os.path.join(tmp, f"spm_{rule}")
        spm.SentencePieceTrainer.train(input=corpus, model_prefix=prefix, vocab_size=80, model_type="unigram",
                                       normalization_rule_name=rule, minloglevel=2)
        put(out, "spm", rule, read(prefix + ".model"))


def generate_seeds(out):
    """generate, train: the bytes are the model's shape, seed, settings and inputs (dev/fuzz.c)"""
    import random
    rng = random.Random(7)
    put(out, "generate", "zeros", bytes(48))
    put(out, "generate", "ramp", bytes(range(48)))
    for i in range(4):
        put(out, "generate", f"random_{i}", bytes(rng.randrange(256) for _ in range(64)))
        put(out, "train", f"random_{i}", bytes(rng.randrange(256) for _ in range(96)))
    put(out, "train", "zeros", bytes(64))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-bin", default=os.path.join(REPO, "train_t5"))
    ap.add_argument("--out", default=os.path.join(REPO, "build", "fuzz", "seeds"))
    ap.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data"))
    a = ap.parse_args()
    if os.path.isdir(a.out):
        shutil.rmtree(a.out)
    with tempfile.TemporaryDirectory() as tmp:
        model_seeds(a.out, a.train_bin, tmp)
        lora_seeds(a.out, a.train_bin, tmp)
        fixture_seeds(a.out)
        text_seeds(a.out, a.data, tmp)
    generate_seeds(a.out)
    for t in sorted(os.listdir(a.out)):
        files = os.listdir(os.path.join(a.out, t))
        print(f"seeds {t:12s} {len(files):3d} files")


if __name__ == "__main__":
    main()
