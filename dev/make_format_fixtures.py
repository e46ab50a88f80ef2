"""
Writes dev/fixtures/formats/: one small random T5 per way transformers writes a model directory, so
that test_t5 and test_t5cu check that the engines read each one as the installed transformers does
(issue 17). Needs torch + transformers 5 (the reference: every expected value is computed by it), and
transformers 4 installed apart for the 4.x-written directories:

    python3 -m pip install --target /tmp/tf4 "transformers==4.57.1"
    TRANSFORMERS4_PATH=/tmp/tf4 python3 dev/make_format_fixtures.py      (what `make fixtures` runs)

For each NAME below, dev/fixtures/formats/NAME/ holds
    model/              the directory as that transformers version wrote it
    expected.safetensors
        input_ids, attention_mask, labels   I32 (B,Ts), (B,Ts), (B,Tt)  (labels -100 after the real ones)
        decoder_input_ids                   I32 (B,Tt)  the labels shifted right
        logits F32 (B,Tt,V), loss F32 (1,)  transformers 5's from_pretrained(model/) on that batch, fp32
        grad.<name>                          every named parameter's gradient (a tied head has none of
                                             its own: its gradient is in grad.shared.weight)
    metadata: tied / scale (what transformers 5 made of the directory: lm_head shared with the
    embedding, decoder output scaled by d_model**-0.5), writer (the transformers version that wrote it)

The formats:
    v5_fresh_flan      T5Config(feed_forward_proj="gated-gelu", tie_word_embeddings=False) made into a
                       model by transformers 5: config.json says tie true + scale false, the head IS
                       the embedding (tied, unscaled: no transformers 4 model is like this)
    v5_resaved_flan    a transformers 4 FLAN-T5 directory loaded and saved again by transformers 5:
                       tie true + scale false in config.json, and its own lm_head.weight (untied)
    v5_resaved_flan_bf16, v5_resaved_flan_sharded
                       the same model saved in bf16, and in 3 shards with an index
    v4_flan            transformers 4: tie false, no scale field, its own lm_head (untied, unscaled)
    v4_t5              transformers 4: original T5, ReLU, no tie field, no lm_head (tied, scaled)
    v5_mt5             MT5ForConditionalGeneration made by transformers 5: model_type mt5, config.json
                       says tie true and nothing of scaling, the head IS the embedding, and mT5 never
                       scales (tied, unscaled, where a t5 config saying the same would be scaled)
"""

import json
import os
import shutil
import subprocess
import sys
import warnings

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "formats")
SHAPE = dict(vocab_size=64, d_model=16, d_kv=4, num_heads=2, d_ff=24, num_layers=1, num_decoder_layers=2,
             relative_attention_num_buckets=8, relative_attention_max_distance=16, dropout_rate=0.0,
             decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
B, TS, TT = 2, 10, 6
SRC_LENS, TGT_LENS = [10, 6], [6, 3]


def build(ffn, tie, seed):
    """A random model made by whichever transformers is imported, relative bias redrawn with std 1 so
    that position bias shows in the logits (as dev/make_fixtures.py does)."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(T5Config(**SHAPE, feed_forward_proj=ffn, tie_word_embeddings=tie))
    with torch.no_grad():
        for stack in (model.encoder, model.decoder):
            stack.block[0].layer[0].SelfAttention.relative_attention_bias.weight.normal_(0.0, 1.0)
    return model


def write_v4(out):
    """Runs under transformers 4 (TRANSFORMERS4_PATH first on sys.path): writes v4_flan and v4_t5."""
    import transformers
    assert transformers.__version__.startswith("4."), transformers.__version__
    for name, ffn, tie, seed in (("v4_flan", "gated-gelu", False, 11), ("v4_t5", "relu", None, 12)):
        model = build(ffn, True if tie is None else tie, seed)
        if tie is None:  # the original T5 config.json has no tie field: the default (true) applies
            model.config.__dict__.pop("tie_word_embeddings", None)
        model.save_pretrained(os.path.join(out, name, "model"), safe_serialization=True)
        if tie is None:
            path = os.path.join(out, name, "model", "config.json")
            cfg = json.load(open(path))
            cfg.pop("tie_word_embeddings", None)
            json.dump(cfg, open(path, "w"), indent=2, sort_keys=True)


def batch():
    import torch
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(2, SHAPE["vocab_size"], (B, TS), generator=g)
    labels = torch.randint(2, SHAPE["vocab_size"], (B, TT), generator=g)
    mask = torch.zeros(B, TS, dtype=torch.long)
    for b in range(B):
        ids[b, SRC_LENS[b] - 1] = 1
        ids[b, SRC_LENS[b]:] = 0
        mask[b, :SRC_LENS[b]] = 1
        labels[b, TGT_LENS[b] - 1] = 1
        labels[b, TGT_LENS[b]:] = -100
    return ids, mask, labels


def expect(name, writer):
    """transformers 5 loads model/ in fp32 and runs the batch: the values the engines must give."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForSeq2SeqLM
    mdir = os.path.join(OUT, name, "model")
    model = AutoModelForSeq2SeqLM.from_pretrained(mdir, dtype=torch.float32, attn_implementation="eager")
    model.train()
    ids, mask, labels = batch()
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    t = {"input_ids": ids.to(torch.int32), "attention_mask": mask.to(torch.int32), "labels": labels.to(torch.int32),
         "decoder_input_ids": model._shift_right(labels).to(torch.int32),
         "logits": out.logits.detach().contiguous(), "loss": out.loss.detach().reshape(1)}
    for pname, p in model.named_parameters():
        t[f"grad.{pname}"] = p.grad.detach().contiguous()
    tied = model.lm_head.weight is model.shared.weight
    scale = bool(getattr(model.config, "scale_decoder_outputs", False))  # MT5 has no such field: it never scales
    meta = {"format": "pt", "tied": str(int(tied)), "scale": str(int(scale)),
            "writer": writer}
    save_file(t, os.path.join(OUT, name, "expected.safetensors"), metadata=meta)
    print(f"{name}: written by transformers {writer}; transformers 5 reads tied={int(tied)} "
          f"scale={meta['scale']}; loss {out.loss.item():.6f}")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--write-v4":
        write_v4(sys.argv[2])
        return
    warnings.filterwarnings("ignore")
    import torch
    import transformers
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    v4 = os.environ.get("TRANSFORMERS4_PATH")
    if not v4:
        sys.exit("set TRANSFORMERS4_PATH to a transformers 4 install (pip install --target DIR transformers==4.57.1)")
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    env = dict(os.environ, PYTHONPATH=v4 + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, os.path.abspath(__file__), "--write-v4", OUT], check=True, env=env)
    v4_version = subprocess.run([sys.executable, "-c", "import transformers; print(transformers.__version__)"],
                                env=env, check=True, capture_output=True, text=True).stdout.strip()
    v5 = transformers.__version__
    from transformers import T5ForConditionalGeneration
    build("gated-gelu", False, 13).save_pretrained(os.path.join(OUT, "v5_fresh_flan", "model"))
    from transformers import MT5Config, MT5ForConditionalGeneration
    torch.manual_seed(14)
    mt5 = MT5ForConditionalGeneration(MT5Config(**SHAPE, feed_forward_proj="gated-gelu", tie_word_embeddings=False))
    with torch.no_grad():
        for stack in (mt5.encoder, mt5.decoder):
            stack.block[0].layer[0].SelfAttention.relative_attention_bias.weight.normal_(0.0, 1.0)
    mt5.save_pretrained(os.path.join(OUT, "v5_mt5", "model"))
    resaved = T5ForConditionalGeneration.from_pretrained(os.path.join(OUT, "v4_flan", "model"))
    resaved.save_pretrained(os.path.join(OUT, "v5_resaved_flan", "model"))
    resaved.save_pretrained(os.path.join(OUT, "v5_resaved_flan_sharded", "model"), max_shard_size="10KB")
    resaved.to(torch.bfloat16).save_pretrained(os.path.join(OUT, "v5_resaved_flan_bf16", "model"))  # in place: last
    for name in ("v4_flan", "v4_t5"):
        expect(name, v4_version)
    for name in ("v5_fresh_flan", "v5_mt5", "v5_resaved_flan", "v5_resaved_flan_bf16", "v5_resaved_flan_sharded"):
        expect(name, v5)
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(OUT) for f in fs)
    print(f"total {total} bytes in {OUT}")


if __name__ == "__main__":
    main()
