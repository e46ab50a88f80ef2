"""
Writes the Hugging Face reference fixtures that test_t5 (CPU) and test_t5cu (GPU) check against.

    python3 dev/make_fixtures.py            (what `make fixtures` runs)

For each small random T5ForConditionalGeneration below it writes dev/fixtures/<name>/:

    model/                 save_pretrained(safe_serialization=True) of the initial weights
                           (config.json + model.safetensors), i.e. what a real checkpoint looks like
    fixture.safetensors    one batch and everything HF computed on it:
        input_ids, attention_mask       I32 (B,Ts)   pad id 0 after the real tokens
        labels, decoder_input_ids       I32 (B,Tt)   labels -100 after the real tokens;
                                                     decoder_input_ids = model._shift_right(labels)
        logits                          F32 (B,Tt,V)
        loss                            F32 (1,)     mean cross-entropy over labels != -100
        grad.<name>                     F32          d loss / d p for every model.named_parameters()
        buckets.bidirectional/causal    I32 (601,)   T5Attention._relative_position_bucket for
        buckets32.bidirectional/causal  I32 (601,)   relative position (memory - query) = i - 300,
                                                     with the model's (num_buckets, max_distance) and
                                                     with real T5's (32, 128)
        step<k>.loss/grad_norm/lr       F32 (1,)     K AdamW steps on the same batch, see below
        final.<name>                    F32          every parameter after the K updates
        sched.linear/cosine/constant_warmup F32 (12,) LR multipliers, warmup 3, total 10, steps 0..11
    The safetensors metadata holds the optimizer settings and the model config (as JSON).

Determinism: fixed seeds, one thread, torch.use_deterministic_algorithms, fp32 on CPU, eager
attention. Running the script twice must give byte-identical files (checked by hand with sha256sum).

Note on transformers >= 5 (checked by check_tied_scaling below): T5Config forces
tie_word_embeddings=True and keeps the old meaning of the flag ("scale the decoder output by
d_model**-0.5") in config.scale_decoder_outputs. T5ForConditionalGeneration(config) then always
shares lm_head with the embedding, even for a FLAN-T5 (v1.1) config. Real FLAN-T5 checkpoints ship a
separate lm_head.weight, which from_pretrained keeps untied. So for the untied models we untie the head
ourselves, initialise it the way HF's _init_weights does for an untied head (normal, std
initializer_factor * 1.0), and set config.tie_word_embeddings = False so that config.json says so, as
the real flan-t5 config.json does.
"""

import copy
import inspect
import json
import os
import shutil
import struct
import sys
import warnings

import torch
from torch import nn
import transformers
from transformers import T5Config, T5ForConditionalGeneration
from transformers import (get_linear_schedule_with_warmup, get_cosine_schedule_with_warmup,
                          get_constant_schedule_with_warmup)
from transformers.models.t5 import modeling_t5
from transformers.models.t5.modeling_t5 import T5Attention
from safetensors import safe_open
from safetensors.torch import save_file, load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from examples import write_examples  # noqa: E402  (dev/examples.py)

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")

# ----------------------------------------------------------------------------------------------
# the models

COMMON = dict(
    vocab_size=128,
    dropout_rate=0.0,
    decoder_start_token_id=0,
    pad_token_id=0,
    eos_token_id=1,
    # 16 buckets up to distance 32: with Ts=24 the bidirectional table reaches its logarithmic
    # buckets (exact below 4, log from 4 to 32), so the bucket function is really exercised
    relative_attention_num_buckets=16,
    relative_attention_max_distance=32,
)

MODELS = {
    "flan_gated": dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False, d_model=32, d_kv=8,
                       num_heads=4, d_ff=64, num_layers=2, num_decoder_layers=2, layer_norm_epsilon=1e-6),
    "t5_relu_tied": dict(feed_forward_proj="relu", tie_word_embeddings=True, d_model=32, d_kv=8,
                         num_heads=4, d_ff=64, num_layers=2, num_decoder_layers=2, layer_norm_epsilon=1e-6),
    # inner dim num_heads*d_kv = 30 != d_model = 24, and encoder depth != decoder depth
    "odd_shapes": dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False, d_model=24, d_kv=10,
                       num_heads=3, d_ff=40, num_layers=3, num_decoder_layers=1, layer_norm_epsilon=1e-5),
    # "gelu" = exact erf GELU, not gated (dense_act_fn "gelu"; only "gated-gelu" maps to gelu_new)
    "gelu_untied": dict(feed_forward_proj="gelu", tie_word_embeddings=False, d_model=32, d_kv=8,
                        num_heads=4, d_ff=48, num_layers=1, num_decoder_layers=2, layer_norm_epsilon=1e-6),
    # UL2's FFN: gated SiLU (dense_act_fn "silu"), untied like FLAN
    "silu_gated": dict(feed_forward_proj="gated-silu", tie_word_embeddings=False, d_model=16, d_kv=8,
                       num_heads=2, d_ff=32, num_layers=1, num_decoder_layers=1, layer_norm_epsilon=1e-6),
}

# the batch
B, TS, TT = 3, 24, 12
SRC_LENS = [24, 17, 9]
TGT_LENS = [12, 7, 3]
PAD_ID, EOS_ID, IGNORE = 0, 1, -100

# the optimizer trajectory
OPT = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, max_grad_norm=1.0,
           warmup_steps=2, total_steps=6, steps=4)

# the schedule tables
SCHED_WARMUP, SCHED_TOTAL, SCHED_STEPS = 3, 10, 12

# relative positions covered by the bucket tables: -300..300
BUCKET_RANGE = 300


def seed_for(name):
    # a stable per-model seed (Python's hash() of a str is salted per process, so not that)
    return 1000 + sum((i + 1) * ord(c) for i, c in enumerate(name))


# ----------------------------------------------------------------------------------------------
# building

def build_model(name):
    spec = MODELS[name]
    config = T5Config(**COMMON, **spec, attn_implementation="eager")
    torch.manual_seed(seed_for(name))
    model = T5ForConditionalGeneration(config)  # HF's own init (_init_weights)
    tied = spec["tie_word_embeddings"]
    if not tied and model.lm_head.weight is model.shared.weight:
        # transformers >= 5 tied the head although the config asked for an untied one (see the
        # docstring): untie it and give it HF's init for an untied head, std initializer_factor*1.0
        model.lm_head.weight = nn.Parameter(torch.empty_like(model.shared.weight))
        nn.init.normal_(model.lm_head.weight, mean=0.0, std=config.initializer_factor * 1.0)
        model.config.tie_word_embeddings = False
    # HF initialises the relative attention bias tables with std d_model**-0.5; we redraw them with
    # std 1.0 so that the position bias visibly changes the attention pattern (and a bucket or
    # bias-gradient bug shows up in the logits and gradients instead of hiding under the noise).
    # This is the only departure from HF's init.
    with torch.no_grad():
        for stack in (model.encoder, model.decoder):
            table = stack.block[0].layer[0].SelfAttention.relative_attention_bias.weight
            table.normal_(mean=0.0, std=1.0)
    check_model(model, tied)
    return model


def check_model(model, tied):
    # the semantics our engine implements; fail loudly if this transformers does something else
    shares = model.lm_head.weight is model.shared.weight
    if shares != tied:
        sys.exit(f"lm_head shared with embedding = {shares}, wanted tied = {tied}")
    scale = getattr(model.config, "scale_decoder_outputs", model.config.tie_word_embeddings)
    if scale != tied:
        sys.exit(f"decoder output scaling = {scale}, wanted {tied} (scaling goes with tied embeddings)")
    if model.encoder.embed_tokens.weight is not model.shared.weight or \
       model.decoder.embed_tokens.weight is not model.shared.weight:
        sys.exit("encoder/decoder embed_tokens are not the shared embedding")


def make_batch(name):
    g = torch.Generator().manual_seed(seed_for(name) + 1)
    vocab = COMMON["vocab_size"]
    input_ids = torch.randint(2, vocab, (B, TS), generator=g)
    labels = torch.randint(2, vocab, (B, TT), generator=g)
    attention_mask = torch.zeros(B, TS, dtype=torch.long)
    for b in range(B):
        ns, nt = SRC_LENS[b], TGT_LENS[b]
        input_ids[b, ns - 1] = EOS_ID
        input_ids[b, ns:] = PAD_ID
        attention_mask[b, :ns] = 1
        labels[b, nt - 1] = EOS_ID
        labels[b, nt:] = IGNORE
    return input_ids, attention_mask, labels


def bucket_tables(num_buckets, max_distance):
    rel = torch.arange(-BUCKET_RANGE, BUCKET_RANGE + 1, dtype=torch.long)
    out = {}
    for kind, bidir in (("bidirectional", True), ("causal", False)):
        b = T5Attention._relative_position_bucket(rel, bidirectional=bidir, num_buckets=num_buckets,
                                                  max_distance=max_distance)
        out[kind] = b.to(torch.int32)
    return out


def schedule_tables():
    makers = {
        "linear": lambda opt: get_linear_schedule_with_warmup(opt, SCHED_WARMUP, SCHED_TOTAL),
        "cosine": lambda opt: get_cosine_schedule_with_warmup(opt, SCHED_WARMUP, SCHED_TOTAL),
        "constant_warmup": lambda opt: get_constant_schedule_with_warmup(opt, SCHED_WARMUP),
    }
    out = {}
    for key, make in makers.items():
        p = nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=1.0)
        sched = make(opt)
        lrs = []
        for _ in range(SCHED_STEPS):
            lrs.append(sched.get_last_lr()[0])
            opt.step()  # p has no grad: a no-op, but keeps LambdaLR's step-order check quiet
            sched.step()
        out[key] = torch.tensor(lrs, dtype=torch.float32)
    return out


# ----------------------------------------------------------------------------------------------
# running

def forward_backward(model, input_ids, attention_mask, labels):
    model.train()  # dropout_rate is 0, so train() and eval() compute the same thing
    model.zero_grad(set_to_none=True)
    out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    out.loss.backward()
    return out


def adamw_trajectory(model, input_ids, attention_mask, labels):
    params = [p for _, p in model.named_parameters()]
    opt = torch.optim.AdamW(params, lr=OPT["lr"], betas=(OPT["beta1"], OPT["beta2"]), eps=OPT["eps"],
                            weight_decay=OPT["weight_decay"], foreach=False)
    sched = get_linear_schedule_with_warmup(opt, OPT["warmup_steps"], OPT["total_steps"])
    out = {}
    for k in range(OPT["steps"]):
        res = forward_backward(model, input_ids, attention_mask, labels)
        if k > 0:  # step 0's gradients are the fixture's grad.* tensors
            for name, p in model.named_parameters():
                out[f"step{k}.grad.{name}"] = p.grad.detach().clone()  # before clipping scales them
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm=OPT["max_grad_norm"])
        lr = sched.get_last_lr()[0]
        opt.step()
        sched.step()
        out[f"step{k}.loss"] = res.loss.detach().reshape(1).clone()
        out[f"step{k}.grad_norm"] = norm.detach().reshape(1).to(torch.float32).clone()
        out[f"step{k}.lr"] = torch.tensor([lr], dtype=torch.float32)
    for name, p in model.named_parameters():
        out[f"final.{name}"] = p.detach().clone()
    return out


def write_fixture(name):
    fdir = os.path.join(OUT_DIR, name)
    mdir = os.path.join(fdir, "model")
    shutil.rmtree(fdir, ignore_errors=True)
    os.makedirs(fdir)

    model = build_model(name)
    model.save_pretrained(mdir, safe_serialization=True)
    if name == "flan_gated":
        # the loader's other input forms: BF16 weights, and a sharded directory with an index
        copy.deepcopy(model).to(torch.bfloat16).save_pretrained(os.path.join(fdir, "model_bf16"), safe_serialization=True)
        model.save_pretrained(os.path.join(fdir, "model_sharded"), safe_serialization=True, max_shard_size="100KB")

    input_ids, attention_mask, labels = make_batch(name)
    # the same batch as a pre-tokenized example file, for the command-line test
    write_examples(os.path.join(fdir, "examples.bin"),
                   [([int(v) for v, m in zip(ids, mask) if m], [int(v) for v in lab if v != -100])
                    for ids, mask, lab in zip(input_ids.tolist(), attention_mask.tolist(), labels.tolist())])
    tensors = {
        "input_ids": input_ids.to(torch.int32),
        "attention_mask": attention_mask.to(torch.int32),
        "labels": labels.to(torch.int32),
        "decoder_input_ids": model._shift_right(labels).to(torch.int32),
    }
    res = forward_backward(model, input_ids, attention_mask, labels)
    tensors["logits"] = res.logits.detach().clone()
    tensors["loss"] = res.loss.detach().reshape(1).clone()
    for pname, p in model.named_parameters():
        tensors[f"grad.{pname}"] = p.grad.detach().clone()

    cfg = model.config
    for prefix, nb, md in (("buckets", cfg.relative_attention_num_buckets, cfg.relative_attention_max_distance),
                           ("buckets32", 32, 128)):
        for kind, table in bucket_tables(nb, md).items():
            tensors[f"{prefix}.{kind}"] = table

    # the trajectory starts again from the saved initial weights, loaded the way a user would
    fresh = T5ForConditionalGeneration.from_pretrained(mdir, attn_implementation="eager")
    check_model(fresh, MODELS[name]["tie_word_embeddings"])
    tensors.update(adamw_trajectory(fresh, input_ids, attention_mask, labels))

    for key, table in schedule_tables().items():
        tensors[f"sched.{key}"] = table

    spec = MODELS[name]
    config_fields = dict(COMMON, **spec)
    metadata = {
        "format": "pt",
        "fixture": name,
        "config": json.dumps(config_fields, sort_keys=True),
        "lr": repr(OPT["lr"]),
        "beta1": repr(OPT["beta1"]),
        "beta2": repr(OPT["beta2"]),
        "eps": repr(OPT["eps"]),
        "weight_decay": repr(OPT["weight_decay"]),
        "weight_decay_applies_to": "all parameters (one torch.optim.AdamW group)",
        "max_grad_norm": repr(OPT["max_grad_norm"]),
        "warmup_steps": str(OPT["warmup_steps"]),
        "total_steps": str(OPT["total_steps"]),
        "schedule": "linear",
        "steps": str(OPT["steps"]),
        "buckets_offset": str(BUCKET_RANGE),
        "sched_warmup_steps": str(SCHED_WARMUP),
        "sched_total_steps": str(SCHED_TOTAL),
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
    }
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    path = os.path.join(fdir, "fixture.safetensors")
    save_sorted(tensors, path, metadata)
    return model, res.loss.item(), path, tensors


def save_sorted(tensors, path, metadata):
    """save_file, then rewrite the JSON header with the metadata keys sorted.

    safetensors (0.8) keeps __metadata__ in a Rust HashMap, so its key order, and with it the file's
    bytes, changes from run to run. The tensor entries and the data section are already in a fixed
    order; we re-emit the same header with sorted keys, padded with spaces to a multiple of 8 bytes
    as safetensors itself pads, and check that the file reads back identically."""
    tmp = path + ".tmp"
    save_file(tensors, tmp, metadata=metadata)
    with open(tmp, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n].decode("utf-8"), object_pairs_hook=dict)
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + blob[8 + n:])
    back = load_file(tmp)
    with safe_open(tmp, "pt") as f:
        meta = f.metadata()
    if meta != metadata or set(back) != set(tensors) or \
       any(not torch.equal(back[k], tensors[k]) for k in tensors):
        sys.exit(f"{path}: rewritten header does not read back the same")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------
# reporting

def check_tied_scaling():
    """Reads the installed modeling_t5.py: does the tied model scale the decoder output?"""
    src = inspect.getsource(modeling_t5.T5ForConditionalGeneration.forward)
    scales = "self.model_dim**-0.5" in src.replace(" ", "")
    flag = "scale_decoder_outputs" if "scale_decoder_outputs" in src else "tie_word_embeddings"
    probe = T5Config(tie_word_embeddings=True)
    v11 = T5Config(tie_word_embeddings=False)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, "
          f"modeling_t5: {modeling_t5.__file__}")
    print(f"  T5ForConditionalGeneration.forward scales decoder output by d_model**-0.5: {scales}, "
          f"guarded by config.{flag}")
    print(f"  T5Config(tie_word_embeddings=True):  tie_word_embeddings={probe.tie_word_embeddings}, "
          f"scale_decoder_outputs={getattr(probe, 'scale_decoder_outputs', 'n/a')}")
    print(f"  T5Config(tie_word_embeddings=False): tie_word_embeddings={v11.tie_word_embeddings}, "
          f"scale_decoder_outputs={getattr(v11, 'scale_decoder_outputs', 'n/a')}")


def describe(name, model, loss, path, tensors):
    cfg = model.config
    nparams = sum(p.numel() for p in model.parameters())
    fdir = os.path.dirname(path)
    files = []
    for root, _, fnames in os.walk(fdir):
        for f in sorted(fnames):
            full = os.path.join(root, f)
            files.append(f"{os.path.relpath(full, OUT_DIR)} ({os.path.getsize(full)} B)")
    print(f"{name}: {cfg.feed_forward_proj}, tied={MODELS[name]['tie_word_embeddings']}, d_model={cfg.d_model}, "
          f"heads={cfg.num_heads}x{cfg.d_kv}, d_ff={cfg.d_ff}, layers={cfg.num_layers}/{cfg.num_decoder_layers}, "
          f"params={nparams}, loss={loss:.6f}, "
          + ", ".join(f"step{k}.loss={tensors[f'step{k}.loss'].item():.6f}" for k in range(OPT["steps"])))
    for f in sorted(files):
        print(f"  wrote {f}")


def main():
    torch.set_num_threads(1)  # thread count changes reduction order; one thread is reproducible
    torch.use_deterministic_algorithms(True)
    torch.set_float32_matmul_precision("highest")
    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    check_tied_scaling()
    os.makedirs(OUT_DIR, exist_ok=True)
    names = sys.argv[1:] or list(MODELS)  # a subset by name: the others stay as they are
    for name in names:
        if name not in MODELS:
            sys.exit(f"unknown fixture {name!r} (known: {', '.join(MODELS)})")
        model, loss, path, tensors = write_fixture(name)
        describe(name, model, loss, path, tensors)
    total = 0
    for root, _, fnames in os.walk(OUT_DIR):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in fnames)
    print(f"total {total} bytes in {OUT_DIR}")


if __name__ == "__main__":
    main()
