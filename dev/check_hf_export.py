"""
Checks that a model directory written by our exporter loads in Hugging Face transformers and holds
what it should. Exit status 0 = every check passed, 1 = at least one failed, 2 = could not run.

    python3 dev/check_hf_export.py --exported DIR --fixture dev/fixtures/NAME/fixture.safetensors \
        [--expect logits|final]

  --expect logits  (default) DIR holds the fixture's initial weights (e.g. model/ read by the C engine
                   and exported again): the fixture batch run through the loaded model must give the
                   fixture's logits and loss.
  --expect final   DIR holds the weights after the fixture's AdamW steps (the C engine trained and
                   exported them): every loaded parameter must equal final.<name>.

Either way it also checks that from_pretrained found every tensor (a missing tensor is silently
initialised at random by transformers), that the parameter names are the fixture's, that the config
fields (dims, heads, layers, activation, buckets, eps, special ids) survived, and that tying and the
decoder output scaling are what the fixture model had (T5: scale by d_model**-0.5 iff tied).
"""

import argparse
import json
import os
import sys
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local directories only, never the hub

import torch
import transformers
from transformers import T5ForConditionalGeneration
from safetensors import safe_open

# Tolerances.
# logits: the exported file is a byte copy of the same fp32 weights (the C engine reads and writes
# fp32 without arithmetic), so the only difference from the fixture is the order of floating-point
# operations: the fixture ran eager attention on one thread, here transformers picks its default
# attention (sdpa) and thread count. Each logit is a chain of ~10 reductions of length <= d_ff with
# |logit| <= ~25 in our fixtures; fp32 rounding (6e-8 relative) accumulated over that stays near
# 1e-5 in practice (measured on our four fixtures: up to 8e-6), so 1e-4 absolute leaves a margin of 10x and still catches any
# real mistake (a wrong or transposed tensor, missing scaling, wrong activation move logits by O(1)).
LOGITS_TOL = 1e-4
LOSS_TOL = 1e-4    # loss is a mean of (logsumexp - logit): errors of the same size as the logits'
# final: both sides ran 4 AdamW steps in fp32 from the same start. Each update is lr * m/(sqrt(v)+eps),
# insensitive to the gradient's scale, so a relative gradient difference d moves a parameter by about
# lr*d per step: 4 steps * 1e-2 * (1e-4 worst-case relative gradient error) = 4e-6 < 1e-5. (A gradient
# element that is exactly zero in HF must be exactly zero in C too: m/sqrt(v) of noise is O(1).)
PARAM_TOL = 1e-5

CONFIG_FIELDS = ["vocab_size", "d_model", "d_kv", "num_heads", "d_ff", "num_layers", "num_decoder_layers",
                 "feed_forward_proj", "layer_norm_epsilon", "relative_attention_num_buckets",
                 "relative_attention_max_distance", "dropout_rate", "decoder_start_token_id",
                 "pad_token_id", "eos_token_id"]


class Report:
    """One line per compared item; remembers whether anything failed."""

    def __init__(self):
        self.failed = 0
        self.count = 0

    def line(self, ok, item, detail):
        self.count += 1
        self.failed += 0 if ok else 1
        print(f"{'OK  ' if ok else 'FAIL'} {item:<72} {detail}")

    def diff(self, item, got, want, tol):
        if got.shape != want.shape:
            self.line(False, item, f"shape {tuple(got.shape)} != {tuple(want.shape)}")
            return
        got, want = got.double(), want.double()
        absdiff = (got - want).abs()
        maxabs = absdiff.max().item() if absdiff.numel() else 0.0
        maxrel = (absdiff / want.abs().clamp_min(1e-6)).max().item() if absdiff.numel() else 0.0
        ok = maxabs <= tol and bool(torch.isfinite(got).all())
        self.line(ok, item, f"max_abs {maxabs:.3e}  max_rel {maxrel:.3e}  tol {tol:.0e}")


def load_fixture(path):
    with safe_open(path, "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = f.metadata() or {}
    if "config" not in meta:
        raise ValueError(f"{path}: no 'config' in the safetensors metadata (not written by dev/make_fixtures.py?)")
    return tensors, meta, json.loads(meta["config"])


def check_loading(rep, info):
    for kind in ("missing_keys", "mismatched_keys", "unexpected_keys"):
        keys = sorted(str(k) for k in info.get(kind, []))
        rep.line(not keys, f"from_pretrained {kind}", ", ".join(keys) if keys else "none")
    errs = info.get("error_msgs", [])
    rep.line(not errs, "from_pretrained error_msgs", "; ".join(map(str, errs)) if errs else "none")


def check_config(rep, model, want):
    cfg = model.config
    for field in CONFIG_FIELDS:
        got = getattr(cfg, field, None)
        rep.line(got == want[field], f"config.{field}", f"{got!r} (want {want[field]!r})")
    tied = want["tie_word_embeddings"]
    shares = model.lm_head.weight is model.shared.weight
    rep.line(shares == tied, "lm_head shares the embedding", f"{shares} (want {tied})")
    # transformers >= 5 keeps "scale before the head" in scale_decoder_outputs; older versions use
    # tie_word_embeddings for both meanings
    scale = getattr(cfg, "scale_decoder_outputs", cfg.tie_word_embeddings)
    rep.line(scale == tied, "decoder output scaled by d_model**-0.5", f"{scale} (want {tied})")


def check_names(rep, model, tensors, prefix):
    got = [n for n, _ in model.named_parameters()]
    want = sorted(k[len(prefix):] for k in tensors if k.startswith(prefix))
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    detail = f"{len(got)} parameters"
    if missing:
        detail += f"; not in export: {', '.join(missing)}"
    if extra:
        detail += f"; not in fixture: {', '.join(extra)}"
    rep.line(not missing and not extra, "parameter names match the fixture", detail)


def check_logits(rep, model, tensors):
    input_ids = tensors["input_ids"].long()
    attention_mask = tensors["attention_mask"].long()
    labels = tensors["labels"].long()
    shifted = model._shift_right(labels)
    same = torch.equal(shifted.to(torch.int32), tensors["decoder_input_ids"])
    rep.line(same, "decoder_input_ids = shift_right(labels)", "equal" if same else "differ")
    model.eval()
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    rep.diff("logits", out.logits, tensors["logits"], LOGITS_TOL)
    rep.diff("loss", out.loss.reshape(1), tensors["loss"], LOSS_TOL)


def check_final(rep, model, tensors):
    for name, p in model.named_parameters():
        key = f"final.{name}"
        if key in tensors:
            rep.diff(key, p.detach(), tensors[key], PARAM_TOL)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exported", required=True, help="directory with config.json + model.safetensors")
    ap.add_argument("--fixture", required=True, help="dev/fixtures/NAME/fixture.safetensors")
    ap.add_argument("--expect", choices=["logits", "final"], default="logits",
                    help="compare logits (initial weights) or parameters (after the AdamW steps); default logits")
    args = ap.parse_args()

    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    if not os.path.isdir(args.exported):
        print(f"{args.exported}: not a directory", file=sys.stderr)
        return 2
    try:
        tensors, meta, want_config = load_fixture(args.fixture)
    except Exception as e:  # unreadable fixture: say which file and why
        print(f"{args.fixture}: cannot read fixture: {e}", file=sys.stderr)
        return 2
    try:
        model, info = T5ForConditionalGeneration.from_pretrained(
            args.exported, output_loading_info=True, local_files_only=True, dtype=torch.float32)
    except Exception as e:
        print(f"FAIL {args.exported}: from_pretrained raised {type(e).__name__}: {e}")
        return 1

    print(f"check_hf_export: {args.exported} vs {args.fixture} ({meta.get('fixture', '?')}), expect {args.expect}; "
          f"transformers {transformers.__version__}, torch {torch.__version__}, "
          f"attention {model.config._attn_implementation}")
    rep = Report()
    check_loading(rep, info)
    check_config(rep, model, want_config)
    check_names(rep, model, tensors, "final." if args.expect == "final" else "grad.")
    if args.expect == "logits":
        check_logits(rep, model, tensors)
    else:
        check_final(rep, model, tensors)
    verdict = "PASS" if rep.failed == 0 else f"FAIL ({rep.failed} of {rep.count})"
    print(f"check_hf_export: {verdict}")
    return 0 if rep.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
