"""Fixtures for llmc/adafactor.h: transformers' own Adafactor (torch, fp32, CPU) run for a few steps on
small tensors of the shapes a T5 has (matrices: a Linear weight, a tall relative_attention_bias-like one,
one whose RMS lies under eps2; a vector: an RMSNorm weight), under several option sets.

    python dev/make_adafactor_fixtures.py      (writes dev/fixtures/adafactor/<config>.safetensors)

Each file holds, for every tensor X: X.p0 (initial values), X.g1..X.gN (the gradient of each step),
X.p1..X.pN (the values after each step) and X's final state under transformers' names (X.exp_avg_sq_row,
X.exp_avg_sq_col, X.exp_avg_sq, X.exp_avg); the metadata holds the options (Python reprs, "none" for
None), the step count and the tensor names. dev/test_adafactor.c replays them. These are tensors, not a
model: the model-level checks come with the trainers.
"""
import os

import torch
import transformers
from safetensors.torch import save_file
from transformers.optimization import Adafactor

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "adafactor")
STEPS = 6
# gradient scale per step: a 10x step makes RMS(u) exceed 1 even for the default clip_threshold
GRAD_SCALE = [1.0, 0.5, 2.0, 10.0, 0.1, 1.0]
# name -> (shape, init std, init mean)
TENSORS = {
    "matrix": ((6, 10), 0.5, 0.0),   # a Linear weight (out, in)
    "tall": ((12, 3), 0.05, 0.0),    # relative_attention_bias-like (num_buckets, H)
    "tiny": ((4, 5), 1e-5, 0.0),     # RMS under eps2 = 1e-3: the parameter scale's floor
    "vector": ((10,), 0.1, 1.0),     # an RMSNorm weight: unfactored
}
# name -> Adafactor keyword arguments (the rest at transformers' defaults)
CONFIGS = {
    "t5": dict(lr=1e-3, scale_parameter=False, relative_step=False, warmup_init=False),  # T5 fine-tuning
    "defaults": dict(),                                          # lr=None, relative_step, scale_parameter
    "warmup": dict(warmup_init=True),                            # relative steps 1e-6·t
    "beta1_wd": dict(lr=1e-2, relative_step=False, beta1=0.9, weight_decay=0.01),  # scale_parameter on
    # a large decay, so that its order against the update shows (the two orders differ by wd·lr·u)
    "beta1_wd_plain": dict(lr=1e-2, relative_step=False, scale_parameter=False, beta1=0.9, weight_decay=0.5),
    "clip": dict(lr=1e-3, relative_step=False, scale_parameter=False, clip_threshold=0.25),
    "eps_decay": dict(eps=(1e-20, 1e-2), decay_rate=-0.5),       # other eps and decay_rate
}
DEFAULTS = dict(lr=None, eps=(1e-30, 1e-3), clip_threshold=1.0, decay_rate=-0.8, beta1=None, weight_decay=0.0,
                scale_parameter=True, relative_step=True, warmup_init=False)


def metadata(kwargs):
    opts = dict(DEFAULTS, **kwargs)
    meta = {"steps": str(STEPS), "tensors": ",".join(TENSORS), "transformers": transformers.__version__,
            "torch": torch.__version__, "eps1": repr(opts["eps"][0]), "eps2": repr(opts["eps"][1])}
    for k in ("lr", "clip_threshold", "decay_rate", "beta1", "weight_decay"):
        meta[k] = "none" if opts[k] is None else repr(float(opts[k]))
    for k in ("scale_parameter", "relative_step", "warmup_init"):
        meta[k] = "1" if opts[k] else "0"
    return meta


def run(name, kwargs):
    gen = torch.Generator().manual_seed(1234)
    params, out = {}, {}
    for t, (shape, std, mean) in TENSORS.items():
        p = torch.nn.Parameter(mean + std * torch.randn(shape, generator=gen, dtype=torch.float32))
        params[t] = p
        out[f"{t}.p0"] = p.detach().clone()
    opt = Adafactor(list(params.values()), **kwargs)
    for step in range(1, STEPS + 1):
        for t, p in params.items():
            p.grad = GRAD_SCALE[step - 1] * torch.randn(p.shape, generator=gen, dtype=torch.float32)
            out[f"{t}.g{step}"] = p.grad.clone()
        opt.step()
        for t, p in params.items():
            out[f"{t}.p{step}"] = p.detach().clone()
    for t, p in params.items():
        for k, v in opt.state[p].items():
            if torch.is_tensor(v) and v.dim() > 0:  # the moments (RMS and step are recomputed / counted)
                out[f"{t}.{k}"] = v.clone()
    path = os.path.join(OUT, f"{name}.safetensors")
    save_file({k: v.contiguous() for k, v in out.items()}, path, metadata=metadata(kwargs))
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, kwargs in CONFIGS.items():
        run(name, kwargs)


if __name__ == "__main__":
    main()
