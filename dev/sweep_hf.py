"""
A randomized differential sweep of ./train_t5 against Hugging Face transformers (a dev tool, not CI).

    python3 dev/sweep_hf.py [--seeds 50] [--first-seed 0] [--quick] [--train-bin ./train_t5] [--keep DIR]

For each seed: a random tiny T5ForConditionalGeneration config (widths, heads with heads*d_kv != d_model,
encoder and decoder depths, d_ff, a small vocabulary, buckets and max distance, every feed_forward_proj
form llmc/hf.h reads, the four head forms, layer_norm_epsilon, dropout_rate, pad / eos / decoder start
ids), written by save_pretrained (sometimes sharded, sometimes bf16 or fp16). Then:

  1. training: ./train_t5 runs a few AdamW steps on a tiny example file (two batches in file order,
     dropout 0, a random schedule, clipping, betas, eps, weight decay with and without --decay-norms)
     and its per-step loss and grad norm (metrics.jsonl) are compared with torch.optim.AdamW over the
     model transformers reads back from the same directory, with HF Trainer's parameter groups;
  2. export: transformers loads the --save-hf directory; its head form and config fields are the
     original's, its weights and logits those of the torch-trained model;
  3. generation: ./train_t5 --eval-split on the untrained directory with random settings (beams,
     length penalty, early stopping, no-repeat n-grams, min new tokens, repetition penalty, max new
     tokens, generation batch) against model.generate(), both decoded by sentencepiece with T5's
     spiece.model (the CLI writes text, not ids; distinct small ids are distinct pieces);
  4. refusal: every few seeds a config with an activation the engine lacks must be refused with a
     message that names config.json and the activation.

Tolerances (why each is what it is):
  - step losses: |Δ| <= 2e-5 * max(1, |loss|). The engines agree on one forward to ~1e-6 relative
    (test_t5: 1e-5 absolute on the fixtures); AdamW's first steps move every parameter by about lr
    whatever the gradient's size, so a 1e-6 relative gradient difference on a tiny gradient becomes a
    visible parameter difference later. 4 steps at lr <= 1e-2 stay under 2e-5 in practice.
  - grad norms: 1e-4 relative. A norm sums every squared gradient, and on ill-conditioned tiny models (d_kv 1,
    d_model 4, large epsilon) fp32 itself is that far off: seed 105's first step (equal weights in both)
    gives train_t5 2.5082178, transformers fp32 2.5082064, transformers fp64 2.5082462 (1e-5 for both).
  - exported weights against the torch-trained weights: 1e-4 * max(1, max|w|) for fp32 exports (the
    trajectories differ by rounding only), and half a bf16 ulp plus that for bf16 exports.
  - logits of the export against the torch-trained model: 1e-4 * max(1, max|logit|) (fp32); a bf16 export
    against that model with its weights rounded to bf16 by torch, 1e-2 (compare_export says why).
  - generation: identical text, unless the first divergence is a near-tie: greedy top-2 gap below
    1e-4 in HF's processed scores (reported as a tie, not a failure). Beam divergences are all reported.

--quick runs 4 seeds (about 10 s of one core, 15 s wall on a shared machine); 50 seeds take about 2 minutes.

Found and fixed: the relative attention bias tables were weight-decayed under --decay-norms 0, where HF
Trainer's get_decay_parameter_names leaves out every name with "bias" in it (llmc/t5.h t5_no_decay).
Known and left out of the draw (not fixed, too large for host code alone):
  - eos_token_id given as a list: transformers stops generation at any of its ids (and min_new_tokens bans
    them all); the engine reads the first only (a warning says so), and its export writes that one back.
  - transformers 5.25's generate() with num_decoder_layers > num_layers and the cache on: IndexError in
    its own cache (use_cache=False here; a transformers bug, not the engine's).
"""

import argparse
import copy
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import warnings

import torch
import torch.nn as nn
import transformers
from transformers import (T5Config, T5ForConditionalGeneration, Trainer, get_constant_schedule_with_warmup,
                          get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from examples import write_examples  # noqa: E402  (dev/examples.py)

SPIECE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "t5", "spiece.model")

# every feed_forward_proj llmc/hf.h reads, and activations it refuses (ACT2FN has them, the engine does not)
SUPPORTED_ACTS = ["relu", "gelu", "gelu_python", "gelu_new", "gelu_fast", "gelu_pytorch_tanh", "silu", "swish"]
REFUSED_ACTS = ["mish", "quick_gelu", "gelu_10", "gelu_accurate", "relu6", "tanh", "sigmoid", "leaky_relu", "relu2"]
# the four heads transformers 5 can write: (config's tie_word_embeddings, an lm_head of its own)
HEADS = {"t5": (True, False), "flan": (False, True), "fresh_flan": (False, False), "untied_scaled": (True, True)}

LOSS_TOL = 2e-5
NORM_TOL = 1e-4
WEIGHT_TOL = 1e-4
GREEDY_TIE = 1e-4


# ----------------------------------------------------------------------------------------------
# random configurations

def random_config(rng):
    """-> (T5Config kwargs, head form, save options)"""
    nb = rng.choice([4, 5, 6, 8, 11, 16, 32])
    act = rng.choice(SUPPORTED_ACTS)
    kw = dict(vocab_size=rng.randint(12, 90), d_model=rng.choice([4, 6, 8, 12, 16, 20]),
              d_kv=rng.choice([1, 2, 3, 4, 5, 8]), num_heads=rng.randint(1, 4), num_layers=rng.randint(1, 3),
              num_decoder_layers=rng.randint(1, 3), d_ff=rng.choice([3, 8, 13, 24]),
              relative_attention_num_buckets=nb,
              # max_distance must exceed the exact range (nb/4 bidirectional): HF divides by log(md/exact)
              relative_attention_max_distance=rng.choice([nb + 1, nb * 2, 20, 128]),
              feed_forward_proj=("gated-" if rng.random() < 0.5 else "") + act,
              layer_norm_epsilon=rng.choice([1e-6, 1e-5, 1e-3, 0.05]),
              dropout_rate=rng.choice([0.0, 0.1, 0.3]))
    v = kw["vocab_size"]
    kw["pad_token_id"] = rng.choice([0, 0, rng.randrange(v)])
    kw["eos_token_id"] = rng.choice([1, 1, rng.randrange(v), kw["pad_token_id"]])
    kw["decoder_start_token_id"] = rng.choice([kw["pad_token_id"], rng.randrange(v)])
    head = rng.choice(sorted(HEADS))
    save = dict(dtype=rng.choice(["fp32", "fp32", "bf16", "fp16"]), shard=rng.choice([None, None, "4KB", "20KB"]))
    return kw, head, save


def build_model(kw, head, seed):
    tie, own_head = HEADS[head]
    config = T5Config(**kw, tie_word_embeddings=tie, attn_implementation="eager")
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(config)
    with torch.no_grad():
        if own_head:
            model.lm_head.weight = nn.Parameter(torch.randn_like(model.shared.weight) * config.d_model ** -0.5)
        # bias tables with std 1 (HF: d_model^-0.5) so that a bucket bug shows in the logits
        for stack in (model.encoder, model.decoder):
            stack.block[0].layer[0].SelfAttention.relative_attention_bias.weight.normal_(0.0, 1.0)
        # RMSNorm weights away from 1, so a norm read or written as 1 shows
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.uniform_(0.5, 1.5)
    return model


def save_model(model, path, save):
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[save["dtype"]]
    kw = {"max_shard_size": save["shard"]} if save["shard"] else {}
    model.to(dtype).save_pretrained(path, **kw)
    model.to(torch.float32)


def load_hf(path):
    """fp32, train mode, dropout 0 (T5Attention reads config.dropout_rate at each call: the modules alone are not enough)"""
    m = T5ForConditionalGeneration.from_pretrained(path, dtype=torch.float32, attn_implementation="eager", dropout_rate=0.0)
    m.train()
    return m


def head_form(model):
    return (model.lm_head.weight is model.shared.weight, bool(model.config.scale_decoder_outputs))


# ----------------------------------------------------------------------------------------------
# data

def random_examples(rng, vocab, n, max_src, max_tgt, eos):
    out = []
    for _ in range(n):
        s = [rng.randrange(vocab) for _ in range(rng.randint(1, max_src))]
        t = [rng.randrange(vocab) for _ in range(rng.randint(1, max_tgt))]
        if rng.random() < 0.7:
            s[-1] = eos
            t[-1] = eos
        out.append((s, t))
    return out


def batch_tensors(examples, pad):
    """-> input_ids, attention_mask, labels (-100 past each target), padded to the longest"""
    ts = max(len(s) for s, _ in examples)
    tt = max(len(t) for _, t in examples)
    ids = torch.full((len(examples), ts), pad, dtype=torch.long)
    mask = torch.zeros((len(examples), ts), dtype=torch.long)
    labels = torch.full((len(examples), tt), -100, dtype=torch.long)
    for b, (s, t) in enumerate(examples):
        ids[b, :len(s)] = torch.tensor(s)
        mask[b, :len(s)] = 1
        labels[b, :len(t)] = torch.tensor(t)
    return ids, mask, labels


# ----------------------------------------------------------------------------------------------
# training: train_t5 against torch.optim.AdamW with HF Trainer's groups

def random_optim(rng):
    return dict(steps=4, batch=rng.randint(1, 3), accum=rng.choice([1, 1, 2]), lr=rng.choice([1e-3, 3e-3, 1e-2]),
                schedule=rng.choice(["constant", "linear", "cosine"]), warmup=rng.choice([0, 1, 2]),
                schedule_steps=rng.choice([0, 6]), wd=rng.choice([0.0, 0.01, 0.1]), decay_norms=rng.randint(0, 1),
                clip=rng.choice([0.0, 1.0, 0.05]), beta1=rng.choice([0.9, 0.5]), beta2=rng.choice([0.999, 0.95]),
                eps=rng.choice([1e-8, 1e-6]), max_src=rng.choice([0, 0, 5, 9]), max_tgt=rng.choice([0, 0, 3, 6]))


def tokenizer_cut(ids, cap, eos):
    """ids cut to cap (0: no cap) as the T5 tokenizer truncates: cap - 1 ids, then </s>, when they end in </s>
    (what tokenizer(text, max_length=cap, truncation=True) gives); a plain cut otherwise"""
    if not cap or len(ids) <= cap:
        return ids
    return ids[:cap - 1] + [eos] if ids[-1] == eos else ids[:cap]


def make_scheduler(opt, o):
    total = o["schedule_steps"] or o["steps"]
    if o["schedule"] == "linear":
        return get_linear_schedule_with_warmup(opt, o["warmup"], total)
    if o["schedule"] == "cosine":
        return get_cosine_schedule_with_warmup(opt, o["warmup"], total)
    return get_constant_schedule_with_warmup(opt, o["warmup"])


def param_groups(model, o):
    named = list(model.named_parameters())
    if o["decay_norms"]:
        return [{"params": [p for _, p in named], "weight_decay": o["wd"]}]
    decay = set(Trainer.get_decay_parameter_names(None, model))
    return [{"params": [p for n, p in named if n in decay], "weight_decay": o["wd"]},
            {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0}]


def hf_train(model, batches, o):
    """-> per-step [(loss, grad_norm, lr)]; model trained in place"""
    params = [p for _, p in model.named_parameters()]
    opt = torch.optim.AdamW(param_groups(model, o), lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"], foreach=False)
    sched = make_scheduler(opt, o)
    out = []
    for k in range(o["steps"]):
        ids, mask, labels = batches[k % len(batches)]
        model.zero_grad(set_to_none=True)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        if o["clip"] > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, max_norm=o["clip"])
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
        lr = sched.get_last_lr()[0]
        opt.step()
        sched.step()
        out.append((loss.item(), norm.item(), lr))
    return out


def c_train_cmd(args, mdir, train_bin, run_dir, export, o, export_opts):
    cmd = [args.train_bin, "--model", mdir, "--train-file", train_bin, "--steps", str(o["steps"]),
           "--batch-size", str(o["batch"]), "--grad-accum", str(o["accum"]), "--shuffle", "0", "--bucket", "0", "--lr", repr(o["lr"]),
           "--schedule", o["schedule"], "--warmup", str(o["warmup"]), "--schedule-steps", str(o["schedule_steps"]),
           "--weight-decay", repr(o["wd"]), "--decay-norms", str(o["decay_norms"]), "--clip", repr(o["clip"]),
           "--beta1", repr(o["beta1"]), "--beta2", repr(o["beta2"]), "--adam-eps", repr(o["eps"]), "--dropout", "0",
           "--out-dir", run_dir, "--save-hf", export, "--tokenizer", SPIECE]
    for flag, key in (("--max-src-len", "max_src"), ("--max-tgt-len", "max_tgt")):
        if o[key]:
            cmd += [flag, str(o[key])]
    if export_opts["dtype"] == "bf16":
        cmd += ["--save-hf-dtype", "bf16"]
    if export_opts["shard"]:
        cmd += ["--max-shard-size", export_opts["shard"]]
    return cmd


def read_train_records(run_dir):
    recs = []
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r.get("type") == "train":
                recs.append(r)
    return recs


def rel_diff(a, b):
    return abs(a - b) / max(1.0, abs(b))


# ----------------------------------------------------------------------------------------------
# export: transformers reads what train_t5 wrote

def compare_export(export, trained, original_form, orig_cfg, batch, bf16):
    # dropout_rate is not compared: the export records the run's --dropout (0 here), and load_hf sets 0
    """-> (list of problems, largest weight difference, largest logit difference)"""
    problems = []
    got = load_hf(export)
    if head_form(got) != original_form:
        problems.append(f"export head (tied, scaled) {head_form(got)} != original {original_form}")
    for key in ("vocab_size", "d_model", "d_kv", "num_heads", "d_ff", "num_layers", "num_decoder_layers",
                "relative_attention_num_buckets", "relative_attention_max_distance", "layer_norm_epsilon",
                "dense_act_fn", "is_gated_act", "pad_token_id", "eos_token_id", "decoder_start_token_id"):
        a, b = getattr(got.config, key), getattr(orig_cfg, key)
        same = math.isclose(a, b, rel_tol=1e-6) if isinstance(b, float) else a == b
        # the four names of the tanh GELU are one function; gelu_python is gelu
        canon = {"gelu_fast": "gelu_new", "gelu_pytorch_tanh": "gelu_new", "gelu_python": "gelu", "swish": "silu"}
        if key == "dense_act_fn":
            same = canon.get(a, a) == canon.get(b, b)
        if not same:
            problems.append(f"export config {key} = {a!r}, original {b!r}")
    want = dict(trained.named_parameters())
    worst_w = 0.0
    for name, p in got.named_parameters():
        w = want[name].detach()
        scale = max(1.0, w.abs().max().item())
        tol = WEIGHT_TOL * scale + (scale * 2 ** -8 if bf16 else 0.0)
        d = (p.detach() - w).abs().max().item()
        worst_w = max(worst_w, d / scale)
        if d > tol:
            problems.append(f"export weight {name}: max diff {d:.3g} > {tol:.3g}")
    ids, mask, labels = batch
    # a bf16 export is compared with the trained model's weights rounded to bf16 by torch: the rounding itself
    # moves the logits of a tiny deep model by several percent (4.8e-2 seen at d_model 6, 3+3 blocks), which
    # says nothing of the export. What is left: a weight that lies within fp32 noise of a rounding boundary
    # may round the other way (one bf16 ulp, 2^-8 relative), hence 1e-2
    ref = copy.deepcopy(trained)
    if bf16:
        with torch.no_grad():
            for q in ref.parameters():
                q.copy_(q.to(torch.bfloat16).float())
    with torch.no_grad():
        a = got(input_ids=ids, attention_mask=mask, labels=labels).logits
        b = ref(input_ids=ids, attention_mask=mask, labels=labels).logits
    scale = max(1.0, b.abs().max().item())
    d = (a - b).abs().max().item() / scale
    if d > (1e-2 if bf16 else 1e-4):
        problems.append(f"export logits: max rel diff {d:.3g}")
    return problems, worst_w, d


# ----------------------------------------------------------------------------------------------
# generation: train_t5 --eval-split against model.generate()

def random_gen(rng):
    beams = rng.choice([1, 1, 2, 3, 4])
    g = dict(num_beams=beams, max_new_tokens=rng.randint(1, 14),
             no_repeat_ngram_size=rng.choice([0, 0, 1, 2, 3]), min_new_tokens=rng.choice([0, 0, 1, 3]),
             repetition_penalty=rng.choice([1.0, 1.0, 1.3, 0.7]), gen_batch=rng.randint(1, 4))
    if beams > 1:
        g["length_penalty"] = rng.choice([1.0, 0.0, 2.0, -0.5])
        g["early_stopping"] = rng.choice([False, True])
    g["min_new_tokens"] = min(g["min_new_tokens"], g["max_new_tokens"])
    return g


def c_gen_cmd(args, mdir, prefix, out_dir, g):
    cmd = [args.train_bin, "--model", mdir, "--eval-split", prefix, "--eval-out", out_dir, "--tokenizer", SPIECE,
           "--num-beams", str(g["num_beams"]), "--max-new-tokens", str(g["max_new_tokens"]),
           "--no-repeat-ngram", str(g["no_repeat_ngram_size"]), "--min-new-tokens", str(g["min_new_tokens"]),
           "--repetition-penalty", repr(g["repetition_penalty"]), "--gen-batch-size", str(g["gen_batch"])]
    if g["num_beams"] > 1:
        cmd += ["--length-penalty", repr(g["length_penalty"]), "--early-stopping", str(int(g["early_stopping"]))]
    return cmd


def write_eval_split(prefix, sources, eos):
    write_examples(prefix + ".bin", [(s, [eos]) for s in sources])
    with open(prefix + "_refs.jsonl", "w") as f:
        for i in range(len(sources)):
            f.write(json.dumps({"id": f"e{i}", "dialogue": f"#Person1#: line {i}", "summaries": ["a summary"]}) + "\n")


def hf_generate(model, src, g):
    kw = dict(num_beams=g["num_beams"], max_new_tokens=g["max_new_tokens"], do_sample=False,
              no_repeat_ngram_size=g["no_repeat_ngram_size"], repetition_penalty=g["repetition_penalty"],
              decoder_start_token_id=model.config.decoder_start_token_id, eos_token_id=model.config.eos_token_id,
              pad_token_id=model.config.pad_token_id, output_scores=True, return_dict_in_generate=True)
    if model.config.num_decoder_layers > model.config.num_layers:
        kw["use_cache"] = False  # transformers 5.25 sizes the decoder's cache by num_layers: IndexError
    if g["min_new_tokens"]:
        kw["min_new_tokens"] = g["min_new_tokens"]
    if g["num_beams"] > 1:
        kw.update(length_penalty=g["length_penalty"], early_stopping=g["early_stopping"])
    ids = torch.tensor([src])
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kw)
    return out.sequences[0, 1:].tolist(), out.scores


def greedy_margin(scores, step):
    """top-1 minus top-2 of the processed scores at `step`"""
    top = torch.topk(scores[step][0].float(), 2).values
    return (top[0] - top[1]).item()


def decode(sp, ids):
    return sp.decode(ids)


# ----------------------------------------------------------------------------------------------
# one seed

def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))


def check_training(args, rng, tmp, mdir, kw, report):
    o = random_optim(rng)
    # accumulation: one step is `accum` micro-batches in file order, its loss the mean over all their counted
    # tokens (HF Trainer's num_items_in_batch), i.e. one HF batch of batch * accum examples
    per_step = o["batch"] * o["accum"]
    ex = random_examples(rng, kw["vocab_size"], 2 * per_step, rng.choice([17, 40]), 9, kw["eos_token_id"])
    train_bin = os.path.join(tmp, "train.bin")
    write_examples(train_bin, ex)
    # the reference trains on the examples cut as --max-src-len / --max-tgt-len cut them (tokenizer_cut)
    cut = [(tokenizer_cut(s, o["max_src"], kw["eos_token_id"]), tokenizer_cut(t, o["max_tgt"], kw["eos_token_id"])) for s, t in ex]
    batches = [batch_tensors(cut[i:i + per_step], kw["pad_token_id"]) for i in (0, per_step)]
    export_opts = dict(dtype=rng.choice(["fp32", "fp32", "bf16"]), shard=rng.choice([None, None, "3KB"]))
    run_dir, export = os.path.join(tmp, "run"), os.path.join(tmp, "export")
    r = run(c_train_cmd(args, mdir, train_bin, run_dir, export, o, export_opts))
    report["optim"], report["export_opts"] = o, export_opts
    if r.returncode != 0:
        report["problems"].append(f"train_t5 exit {r.returncode}: {r.stderr[-600:]}")
        return
    model = load_hf(mdir)
    form = head_form(model)
    want = hf_train(model, batches, o)
    got = read_train_records(run_dir)
    if len(got) != len(want):
        report["problems"].append(f"{len(got)} train records, want {len(want)}")
        return
    for k, (rec, (loss, norm, lr)) in enumerate(zip(got, want)):
        dl, dn, dlr = rel_diff(rec["loss"], loss), rel_diff(rec["grad_norm"], norm), rel_diff(rec["lr"], lr)
        report["loss_diff"] = max(report.get("loss_diff", 0.0), dl)
        report["norm_diff"] = max(report.get("norm_diff", 0.0), dn)
        if dl > LOSS_TOL or dn > NORM_TOL or dlr > 1e-6:
            report["problems"].append(f"step {k + 1}: loss {rec['loss']:.7g} vs {loss:.7g}, grad norm "
                                      f"{rec['grad_norm']:.7g} vs {norm:.7g}, lr {rec['lr']:.7g} vs {lr:.7g}")
    problems, dw, dlog = compare_export(export, model, form, model.config, batches[0], export_opts["dtype"] == "bf16")
    report["problems"] += problems
    kind = export_opts["dtype"]
    report[f"weight_diff_{kind}"], report[f"logit_diff_{kind}"] = dw, dlog


def check_generation(args, rng, tmp, mdir, kw, sp, report):
    g = random_gen(rng)
    report["gen"] = g
    sources = [[rng.randrange(kw["vocab_size"]) for _ in range(rng.randint(1, 12))] for _ in range(rng.randint(1, 5))]
    prefix, out_dir = os.path.join(tmp, "gen"), os.path.join(tmp, "eval")
    write_eval_split(prefix, sources, kw["eos_token_id"])
    r = run(c_gen_cmd(args, mdir, prefix, out_dir, g))
    if r.returncode != 0:
        report["problems"].append(f"train_t5 --eval-split exit {r.returncode}: {r.stderr[-600:]}")
        return
    with open(os.path.join(out_dir, "generations.jsonl")) as f:
        got = [json.loads(line)["generated"] for line in f]
    model = load_hf(mdir)
    model.eval()
    for i, src in enumerate(sources):
        ids, scores = hf_generate(model, src, g)
        want = decode(sp, ids)
        if got[i] == want:
            continue
        if g["num_beams"] == 1:
            if min(greedy_margin(scores, k) for k in range(len(ids))) < GREEDY_TIE:
                report["ties"] = report.get("ties", 0) + 1
                continue
        report["problems"].append(f"generation {i} (src {src}): train_t5 {got[i]!r}, HF {want!r} (ids {ids})")


def check_refusal(args, rng, tmp):
    act = rng.choice(REFUSED_ACTS)
    ffn = ("gated-" if rng.random() < 0.5 else "") + act
    mdir = os.path.join(tmp, "refused")
    model = T5ForConditionalGeneration(T5Config(vocab_size=16, d_model=8, d_kv=4, num_heads=2, d_ff=8, num_layers=1,
                                                feed_forward_proj=ffn))
    model.save_pretrained(mdir)
    r = run([args.train_bin, "--model", mdir, "--save-hf", os.path.join(tmp, "refused_out")])
    ok = r.returncode != 0 and "config.json" in r.stderr and act in r.stderr
    return ffn, ok, r.stderr.strip()[-300:]


def sweep_one(args, seed, sp):
    rng = random.Random(seed)
    kw, head, save = random_config(rng)
    report = {"seed": seed, "config": kw, "head": head, "save": save, "problems": []}
    tmp = tempfile.mkdtemp(prefix=f"sweep{seed}_", dir=args.keep)
    try:
        mdir = os.path.join(tmp, "model")
        save_model(build_model(kw, head, seed), mdir, save)
        check_training(args, rng, tmp, mdir, kw, report)
        check_generation(args, rng, tmp, mdir, kw, sp, report)
        if seed % 5 == 0:
            ffn, ok, msg = check_refusal(args, rng, tmp)
            report["refusal"] = ffn
            if not ok:
                report["problems"].append(f"feed_forward_proj {ffn!r} not refused by name: {msg}")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return report


def summary_line(r):
    c = r["config"]
    shape = (f"V={c['vocab_size']} C={c['d_model']} H={c['num_heads']}x{c['d_kv']} F={c['d_ff']} "
             f"L={c['num_layers']}/{c['num_decoder_layers']} nb={c['relative_attention_num_buckets']}/"
             f"{c['relative_attention_max_distance']} {c['feed_forward_proj']} {r['head']} {r['save']['dtype']}")
    w = r.get("weight_diff_fp32", r.get("weight_diff_bf16", math.nan))
    diffs = f"loss {r.get('loss_diff', math.nan):.1e} norm {r.get('norm_diff', math.nan):.1e} w {w:.1e}"
    verdict = "OK" if not r["problems"] else "FAIL"
    return f"seed {r['seed']:4d} {verdict:4s} {shape:70s} {diffs}"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train-bin", default="./train_t5")
    p.add_argument("--seeds", type=int, default=50)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="4 seeds")
    p.add_argument("--keep", default=None, help="keep each seed's files under this directory")
    args = p.parse_args()
    if args.quick:
        args.seeds = 4
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    import sentencepiece
    sp = sentencepiece.SentencePieceProcessor(model_file=SPIECE)
    failed, worst = 0, {}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        r = sweep_one(args, seed, sp)
        print(summary_line(r), flush=True)
        for k in ("loss_diff", "norm_diff", "weight_diff_fp32", "logit_diff_fp32", "weight_diff_bf16", "logit_diff_bf16"):
            worst[k] = max(worst.get(k, 0.0), r.get(k, 0.0))
        if r["problems"]:
            failed += 1
            print(json.dumps({k: r[k] for k in r if k != "problems"}))
            for prob in r["problems"]:
                print("   ", prob)
    print(f"{args.seeds} configs, {failed} with problems; largest: " +
          ", ".join(f"{k} {v:.2e}" for k, v in worst.items()))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
