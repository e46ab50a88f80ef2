"""
Writes the model-level Adafactor fixtures: small random T5s trained for a few steps with
transformers.optimization.Adafactor the way HF Trainer drives it (global gradient-norm clipping
before optimizer.step(), the scheduler's lr as the group's lr, RMSNorm weights and relative bias tables
in a group without weight decay). test_t5 (test_cli_adafactor) runs ./train_t5 --optimizer adafactor with the same
settings and compares the printed step losses and the saved weights.

    python3 dev/make_adafactor_model_fixtures.py

For each model (gated: FLAN-shaped gated-gelu with an untied head; relu: original T5, ReLU, tied
head), dev/fixtures/adafactor_model/<model>/ holds
    model/                 save_pretrained of the initial weights
    examples.bin           the fixed batch (3 examples) as a pre-tokenized file (dev/examples.py)
    fixture.safetensors    per case: <case>.loss F32 (STEPS,), <case>.final.<hf name> every parameter
                           after STEPS updates; metadata <case>.flags = the train_t5 flags of the case
and dev/fixtures/adafactor_model/lora.safetensors holds the LoRA case: Adafactor over the adapter of
dev/fixtures/lora_gated/adapter (base dev/fixtures/flan_gated/model, its examples.bin):
lora.loss, lora.final.<peft key>.

The models are small (d_model 16, 2 encoder and 2 decoder blocks) so that the files stay under 1 MB
together, with every kind of tensor (embedding, lm_head, relative bias, stacked Linear weights in
both FFN kinds, norms) and more than one layer per stacked tensor (each layer its own tensor for
Adafactor). Deterministic: one thread, fp32, eager attention, fixed seeds.
"""

import json
import os
import shutil
import sys

import torch
from torch import nn
import transformers
from transformers import T5Config, T5ForConditionalGeneration, Trainer, get_linear_schedule_with_warmup
from transformers.optimization import Adafactor
import peft
from peft import PeftModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from examples import write_examples  # noqa: E402  (dev/examples.py)
from make_fixtures import save_sorted  # noqa: E402  (dev/make_fixtures.py)

FIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
OUT = os.path.join(FIX, "adafactor_model")
STEPS = 5
CLIP = 1.0

COMMON = dict(vocab_size=64, dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
              relative_attention_num_buckets=8, relative_attention_max_distance=16, d_model=16, d_kv=4,
              num_heads=2, d_ff=24, num_layers=2, num_decoder_layers=2, layer_norm_epsilon=1e-6)
MODELS = {
    "gated": dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False),
    "relu": dict(feed_forward_proj="relu", tie_word_embeddings=True),
}
B, TS, TT = 3, 14, 8
SRC_LENS, TGT_LENS = [14, 9, 5], [8, 5, 3]

# transformers' Adafactor arguments, the scheduler (None: constant, or under relative_step none at all),
# weight decay (HF Trainer's groups), and the same run as train_t5 flags
SCHED = dict(warmup=2, total=6)
CASES = {
    # the T5 recommendation (transformers' docs): lr 1e-3, no relative step, no parameter scale; a linear
    # schedule with warmup, so the scheduled lr is what Adafactor gets
    "t5": dict(kw=dict(lr=1e-3, scale_parameter=False, relative_step=False, warmup_init=False), sched=True, wd=0.0,
               flags="--adafactor-relative-step 0 --adafactor-scale-parameter 0 --lr 1e-3 --schedule linear --warmup 2 "
                     "--schedule-steps 6"),
    "t5_beta1_wd": dict(kw=dict(lr=1e-2, scale_parameter=False, relative_step=False, warmup_init=False, beta1=0.9),
                        sched=True, wd=0.1,
                        flags="--adafactor-relative-step 0 --adafactor-scale-parameter 0 --lr 1e-2 --schedule linear "
                              "--warmup 2 --schedule-steps 6 --adafactor-beta1 0.9 --weight-decay 0.1"),
    # transformers' defaults: Adafactor(params): relative step, parameter scale, lr None
    "defaults": dict(kw=dict(lr=None), sched=False, wd=0.0, flags=""),
    "defaults_beta1_wd": dict(kw=dict(lr=None, beta1=0.9), sched=False, wd=0.1,
                              flags="--adafactor-beta1 0.9 --weight-decay 0.1"),
    "warmup": dict(kw=dict(lr=None, warmup_init=True), sched=False, wd=0.0, flags="--adafactor-warmup-init 1"),
}
LORA = dict(kw=dict(lr=None, beta1=0.9), wd=0.01, flags="--adafactor-beta1 0.9 --weight-decay 0.01")


def build(name):
    config = T5Config(**COMMON, **MODELS[name], attn_implementation="eager")
    torch.manual_seed(4242 + len(name))
    model = T5ForConditionalGeneration(config)
    if not MODELS[name]["tie_word_embeddings"] and model.lm_head.weight is model.shared.weight:
        # transformers >= 5 ties the head whatever the config says (dev/make_fixtures.py explains)
        model.lm_head.weight = nn.Parameter(torch.empty_like(model.shared.weight))
        nn.init.normal_(model.lm_head.weight, mean=0.0, std=config.initializer_factor)
        model.config.tie_word_embeddings = False
    return model


def make_batch(seed, vocab):
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(2, vocab, (B, TS), generator=g)
    labels = torch.randint(2, vocab, (B, TT), generator=g)
    attention_mask = torch.zeros(B, TS, dtype=torch.long)
    for b in range(B):
        ns, nt = SRC_LENS[b], TGT_LENS[b]
        input_ids[b, ns - 1] = 1
        input_ids[b, ns:] = 0
        attention_mask[b, :ns] = 1
        labels[b, nt - 1] = 1
        labels[b, nt:] = -100
    return dict(input_ids=input_ids, attention_mask=attention_mask, labels=labels)


def groups(model, named, wd):
    """HF Trainer's two groups, by its own rule: names matching "bias" or "_norm" (the RMSNorm weights and the
    relative attention bias tables) without weight decay, the rest with it"""
    decayed = {n.replace(".default.", ".") for n in Trainer.get_decay_parameter_names(None, model)}  # peft keys as `named`
    decay = [p for n, p in named if n in decayed]
    keep = [p for n, p in named if n not in decayed]
    return [dict(params=decay, weight_decay=wd), dict(params=keep, weight_decay=0.0)]


def train(model, named, batch, kw, wd, sched):
    params = [p for _, p in named]
    opt = Adafactor(groups(model, named, wd), **kw)
    lr_sched = get_linear_schedule_with_warmup(opt, SCHED["warmup"], SCHED["total"]) if sched else None
    losses = []
    for _ in range(STEPS):
        model.train()  # dropout 0
        model.zero_grad(set_to_none=True)
        out = model(**batch)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, max_norm=CLIP)
        opt.step()
        if lr_sched:
            lr_sched.step()
        losses.append(out.loss.item())
    return torch.tensor(losses, dtype=torch.float32)


def write_model(name):
    mdir = os.path.join(OUT, name)
    os.makedirs(mdir)
    model = build(name)
    model.save_pretrained(os.path.join(mdir, "model"), safe_serialization=True)
    batch = make_batch(77 + len(name), COMMON["vocab_size"])
    write_examples(os.path.join(mdir, "examples.bin"),
                   [([int(v) for v, m in zip(ids, mask) if m], [int(v) for v in lab if v != -100])
                    for ids, mask, lab in zip(batch["input_ids"].tolist(), batch["attention_mask"].tolist(),
                                              batch["labels"].tolist())])
    tensors, meta = {}, {"format": "pt", "steps": str(STEPS), "clip": repr(CLIP),
                         "transformers_version": transformers.__version__, "torch_version": torch.__version__}
    for case, spec in CASES.items():
        m = T5ForConditionalGeneration.from_pretrained(os.path.join(mdir, "model"), attn_implementation="eager")
        named = list(m.named_parameters())
        tensors[f"{case}.loss"] = train(m, named, batch, spec["kw"], spec["wd"], spec["sched"])
        for n, p in named:
            tensors[f"{case}.final.{n}"] = p.detach().clone().contiguous()
        meta[f"{case}.flags"] = spec["flags"]
        meta[f"{case}.adafactor"] = json.dumps(spec["kw"], sort_keys=True)
        meta[f"{case}.weight_decay"] = repr(spec["wd"])
        print(f"{name} {case}: losses " + " ".join(f"{x:.6f}" for x in tensors[f"{case}.loss"].tolist()))
    save_sorted(tensors, os.path.join(mdir, "fixture.safetensors"), meta)


def write_lora():
    base = os.path.join(FIX, "flan_gated", "model")
    m = PeftModel.from_pretrained(T5ForConditionalGeneration.from_pretrained(base, attn_implementation="eager"),
                                  os.path.join(FIX, "lora_gated", "adapter"), is_trainable=True)
    from safetensors import safe_open
    with safe_open(os.path.join(FIX, "flan_gated", "fixture.safetensors"), "pt") as f:
        batch = {k: f.get_tensor(k).long() for k in ("input_ids", "attention_mask", "labels")}
    named = [(n.replace(".default.", "."), p) for n, p in m.named_parameters() if p.requires_grad]
    tensors = {"lora.loss": train(m, named, batch, LORA["kw"], LORA["wd"], False)}
    for n, p in named:
        tensors[f"lora.final.{n}"] = p.detach().clone().contiguous()
    meta = {"format": "pt", "steps": str(STEPS), "clip": repr(CLIP), "lora.flags": LORA["flags"],
            "peft_version": peft.__version__, "transformers_version": transformers.__version__}
    save_sorted(tensors, os.path.join(OUT, "lora.safetensors"), meta)
    print("lora: losses " + " ".join(f"{x:.6f}" for x in tensors["lora.loss"].tolist()))


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    for name in MODELS:
        write_model(name)
    write_lora()
    for root, _, files in os.walk(OUT):
        for f in sorted(files):
            full = os.path.join(root, f)
            print(f"  wrote {os.path.relpath(full, FIX)} ({os.path.getsize(full)} B)")


if __name__ == "__main__":
    main()
