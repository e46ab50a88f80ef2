"""
peft reads what train_t5 writes (needs torch + transformers + peft):

    python3 dev/check_lora_export.py --base BASE_DIR --adapter ADAPTER_DIR --merged MERGED_DIR --fixture FIXTURE

  1. PeftModel.from_pretrained(base, ADAPTER_DIR) loads the adapter: every lora_A / lora_B parameter of
     the model equals the file's tensor (so no key was missed or renamed), no unexpected keys
  2. peft's merge_and_unload() of it equals MERGED_DIR (our --merge-lora output) to 1e-6 of each
     tensor's scale (one fp32 product of r terms and an add, in another order)
  3. the PeftModel's logits on the fixture batch equal transformers' logits from MERGED_DIR to 1e-5
Prints one line per check; exit 1 on any failure.
"""
import argparse
import sys
import warnings

import torch
import transformers
from transformers import T5ForConditionalGeneration
from peft import PeftModel
from safetensors.torch import load_file


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--merged", required=True)
    ap.add_argument("--fixture", required=True)
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(1)
    ok = True

    def report(name, good, detail=""):
        nonlocal ok
        ok &= bool(good)
        print(f"{name:<62} {detail} {'OK' if good else 'FAIL'}")

    load = lambda d: T5ForConditionalGeneration.from_pretrained(d, attn_implementation="eager")
    model = PeftModel.from_pretrained(load(a.base), a.adapter)
    saved = load_file(f"{a.adapter}/adapter_model.safetensors")
    params = {n.replace(".default.", "."): p for n, p in model.named_parameters() if "lora_" in n}
    same = set(params) == set(saved) and all(torch.equal(params[k], saved[k]) for k in saved)
    report("peft loads the adapter: every A, B equal to the file's", same, f"({len(saved)} tensors)")

    f = load_file(a.fixture)
    batch = dict(input_ids=f["input_ids"].long(), attention_mask=f["attention_mask"].long(), labels=f["labels"].long())
    model.eval()
    with torch.no_grad():
        logits_peft = model(**batch).logits
    ours = load(a.merged).eval()
    theirs = model.merge_and_unload().state_dict()
    worst = 0.0
    for k, v in ours.state_dict().items():
        worst = max(worst, ((v - theirs[k]).abs().max() / v.abs().max().clamp(min=1e-30)).item())
    report("--merge-lora == peft merge_and_unload()", worst <= 1e-6, f"max rel {worst:.3e} tol 1e-06")
    with torch.no_grad():
        logits_merged = ours(**batch).logits
    rel = ((logits_peft - logits_merged).abs().max() / logits_peft.abs().max()).item()
    report("PeftModel logits == logits of the merged HF directory", rel <= 1e-5, f"max rel {rel:.3e} tol 1e-05")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
