"""
Writes the LoRA fixtures that test_t5 checks the CPU engine's adapters against (peft + transformers).

    python3 dev/make_lora_fixtures.py       (run by `make fixtures`, after dev/make_fixtures.py)

The base models are dev/make_fixtures.py's (dev/fixtures/<base>/model, loaded with from_pretrained),
so no base weights are stored twice. For each case below it writes dev/fixtures/lora_<case>/:

    adapter/               peft's save_pretrained of the initial adapter: adapter_config.json +
                           adapter_model.safetensors (its README.md model card removed). init_lora_weights=False: A and B both random
                           (nn.Linear's init), so every gradient is non-zero and exercised
    fixture.safetensors    the base fixture's batch (input_ids, attention_mask, labels, decoder_input_ids) and:
        logits, loss                    the adapted model on the batch (lora_dropout 0)
        grad.<peft key>                 d loss / d A and B (peft's key names, adapter name removed)
        step<k>.loss/grad_norm/lr       K AdamW steps over the adapter only (clipping, linear schedule)
        step<k>.grad.<peft key>         each later step's gradients, before clipping
        final.<peft key>                the adapter after the K updates
        merged.<hf name>                merge_and_unload() of the initial adapter: every base tensor
                                        it changes (the others stay the base's)
    The metadata holds the optimizer settings and the LoRA config.

Determinism: one thread, deterministic algorithms, fp32, eager attention, fixed seeds.
"""

import json
import os
import shutil
import sys
import warnings

import torch
import transformers
from transformers import T5ForConditionalGeneration, get_linear_schedule_with_warmup
import peft
from peft import LoraConfig, get_peft_model, PeftModel
from safetensors import safe_open

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import save_sorted, OPT  # noqa: E402  (dev/make_fixtures.py)

FIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")

# attention and FFN targets on both FFN kinds; the ReLU case also uses rsLoRA's α/√r scale
CASES = {
    "gated": dict(base="flan_gated", r=4, lora_alpha=2, use_rslora=False,
                  target_modules=["q", "k", "v", "o", "wi_0", "wi_1", "wo"]),
    "relu": dict(base="t5_relu_tied", r=2, lora_alpha=6, use_rslora=True,
                 target_modules=["q", "v", "wi", "wo"]),
}


def load_base(base):
    return T5ForConditionalGeneration.from_pretrained(os.path.join(FIX, base, "model"), attn_implementation="eager")


def batch_of(base):
    with safe_open(os.path.join(FIX, base, "fixture.safetensors"), "pt") as f:
        return {k: f.get_tensor(k).long() for k in ("input_ids", "attention_mask", "labels", "decoder_input_ids")}


def tidy_config(adir, base):
    """peft writes the base's absolute path and target_modules in set order (salted per process):
    a relative path and a sorted list make the file the same on every run"""
    path = os.path.join(adir, "adapter_config.json")
    with open(path) as f:
        cfg = json.load(f)
    cfg["base_model_name_or_path"] = f"dev/fixtures/{base}/model"
    cfg["target_modules"] = sorted(cfg["target_modules"])
    with open(path, "w") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def peft_key(name):
    # named_parameters: base_model.model.<module>.lora_A.default.weight -> the file's key
    return name.replace(".default.", ".")


def lora_params(model):
    return [(peft_key(n), p) for n, p in model.named_parameters() if p.requires_grad]


def fwd_bwd(model, batch):
    model.train()  # lora_dropout and dropout_rate are 0: train() computes what eval() does
    model.zero_grad(set_to_none=True)
    out = model(**batch)
    out.loss.backward()
    return out


def trajectory(model, batch):
    named = lora_params(model)
    params = [p for _, p in named]
    opt = torch.optim.AdamW(params, lr=OPT["lr"], betas=(OPT["beta1"], OPT["beta2"]), eps=OPT["eps"],
                            weight_decay=OPT["weight_decay"], foreach=False)
    sched = get_linear_schedule_with_warmup(opt, OPT["warmup_steps"], OPT["total_steps"])
    out = {}
    for k in range(OPT["steps"]):
        res = fwd_bwd(model, batch)
        if k > 0:
            for key, p in named:
                out[f"step{k}.grad.{key}"] = p.grad.detach().clone()
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm=OPT["max_grad_norm"])
        out[f"step{k}.lr"] = torch.tensor([sched.get_last_lr()[0]], dtype=torch.float32)
        opt.step()
        sched.step()
        out[f"step{k}.loss"] = res.loss.detach().reshape(1).clone()
        out[f"step{k}.grad_norm"] = norm.detach().reshape(1).to(torch.float32).clone()
    for key, p in named:
        out[f"final.{key}"] = p.detach().clone()
    return out


def write_case(name, spec):
    fdir = os.path.join(FIX, f"lora_{name}")
    shutil.rmtree(fdir, ignore_errors=True)
    os.makedirs(fdir)
    cfg = LoraConfig(r=spec["r"], lora_alpha=spec["lora_alpha"], lora_dropout=0.0, use_rslora=spec["use_rslora"],
                     target_modules=spec["target_modules"], init_lora_weights=False, task_type="SEQ_2_SEQ_LM")
    torch.manual_seed(7 + len(name))
    model = get_peft_model(load_base(spec["base"]), cfg)
    adir = os.path.join(fdir, "adapter")
    model.save_pretrained(adir)
    os.remove(os.path.join(adir, "README.md"))  # peft's model card template: nothing the engine reads
    tidy_config(adir, spec["base"])
    batch = batch_of(spec["base"])
    tensors = {k: v.to(torch.int32) for k, v in batch.items()}
    batch.pop("decoder_input_ids")  # the model shifts the labels itself
    res = fwd_bwd(model, batch)
    tensors["logits"] = res.logits.detach().clone()
    tensors["loss"] = res.loss.detach().reshape(1).clone()
    for key, p in lora_params(model):
        tensors[f"grad.{key}"] = p.grad.detach().clone()
    # the trajectory and the merge start again from the saved adapter, loaded as a user loads it
    fresh = PeftModel.from_pretrained(load_base(spec["base"]), adir, is_trainable=True)
    tensors.update(trajectory(fresh, batch))
    base = load_base(spec["base"]).state_dict()
    merged = PeftModel.from_pretrained(load_base(spec["base"]), adir).merge_and_unload().state_dict()
    for k, v in merged.items():
        if not torch.equal(v, base[k]):
            tensors[f"merged.{k}"] = v.detach().clone()
    metadata = {"format": "pt", "fixture": f"lora_{name}", "base": spec["base"],
                "lora": json.dumps(spec, sort_keys=True), "peft_version": peft.__version__,
                "transformers_version": transformers.__version__, "torch_version": torch.__version__}
    for k in ("lr", "beta1", "beta2", "eps", "weight_decay", "max_grad_norm"):
        metadata[k] = repr(OPT[k])
    for k in ("warmup_steps", "total_steps", "steps"):
        metadata[k] = str(OPT[k])
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_sorted(tensors, os.path.join(fdir, "fixture.safetensors"), metadata)
    n_train = sum(p.numel() for _, p in lora_params(model))
    n_all = sum(p.numel() for p in model.parameters())
    print(f"lora_{name}: base {spec['base']}, r={spec['r']}, alpha={spec['lora_alpha']}, rslora={spec['use_rslora']}, "
          f"targets={spec['target_modules']}, trainable {n_train} of {n_all}, loss={res.loss.item():.6f}, "
          + ", ".join(f"step{k}.loss={tensors[f'step{k}.loss'].item():.6f}" for k in range(OPT["steps"])))
    for root, _, files in os.walk(fdir):
        for f in sorted(files):
            full = os.path.join(root, f)
            print(f"  wrote {os.path.relpath(full, FIX)} ({os.path.getsize(full)} B)")


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.set_float32_matmul_precision("highest")
    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    print(f"peft {peft.__version__}, transformers {transformers.__version__}, torch {torch.__version__}")
    for name, spec in CASES.items():
        write_case(name, spec)


if __name__ == "__main__":
    main()
