"""
Writes the generation fixtures that test_t5 checks t5_generate against: what transformers'
model.generate() returns (fp32, CPU) on the random fixture models of dev/make_fixtures.py.

    python3 dev/make_gen_fixtures.py        (`make fixtures` runs it after dev/make_fixtures.py)

For each model in MODELS it reads dev/fixtures/<model>/model (no new weights) and writes
dev/fixtures/gen/<model>.safetensors with, for every case k of CASES:

    case<k>.input_ids, case<k>.attention_mask   I32 (B, Ts)  B = 4 sources of different lengths, pad id 0
                                                             after the real tokens, eos last
    case<k>.sequences                           I32 (B, W)   model.generate(...) exactly as returned:
                                                             start token first, padded to the longest
    metadata case<k>.<setting>                  the generate() arguments, the input seed and the margin

Near-ties. A random model can score two tokens (or two beams) almost equally; then the fp32 rounding
differences between the C engine and PyTorch (about 1e-6 relative) could flip a decision and the test
would fail for no fault of either. So every case is replayed here from the scores generate() itself
produced (recorded by a logits processor placed last): the replay re-runs the greedy or beam decisions
(the beam replay follows _beam_search's arithmetic in fp32), checks that it reproduces generate()'s output
token for token, and measures the smallest gap of every comparison that decided the output:
    greedy: best minus second-best processed logit of every unfinished row at every step
    beam:   the running scores at the 2·num_beams and num_beams cut-offs of the candidate ranking, the
            cut-off of the running beams, the cut-off of the finished set, the early-stop comparison, and
            the final best-vs-second finished score (inputs already done are skipped: nothing changes them)
A case is kept only if that margin is at least MIN_MARGIN; otherwise the next input seed is tried. The
seed and the margin are stored in the metadata. MIN_MARGIN = 1e-3 in log-probability (or logit) units:
the engines' logits agree to ~4e-7 relative (test_t5's fixture check), i.e. ~5e-6 absolute for logits
of magnitude ~10, and a beam score sums at most 20 of them: ≤ 2e-4, five times below the margin.

End of sequence. Random models almost never pick eos by themselves. Cases with eos_bias != 0 add that
constant to the eos logit before anything else, here with a forward hook on lm_head and in C with
GenConfig.eos_bias. The bias is searched with the seed (EOS_BIASES) until the outputs show what the case
is for (see CASES): some inputs ending early (padding in the batch), all ending early (the search stops
before max_new_tokens), or, for early_stopping=False, the early-stop heuristic changing a result. The
tied model either ends at step 1 or never, so its "all" cases end at step 1 (the strict rule, different
steps, falls back). Cases with eos_bias = 0 show the plain model.

Logits processors. min_new_tokens and repetition_penalty are generate()'s own processors (the replay reads
the scores after all of them, so it needs nothing new); a case that sets one is kept only if setting it
back to its default (min_new_tokens 0, repetition_penalty 1: generate() is then not given it, as the older
cases never were) changes the output of that input and eos bias, so that each case shows its setting at
work. The penalty runs on the logits in greedy search and on the log-probabilities in beam search, and
penalises the decoder's ids so far, the start token included (test_t5 and train_t5.c gen_process).

The replay doubles as a check of our reading of _beam_search: the C search (train_t5.c gen_beam) makes
the same decisions in the same order, and every seed tried (kept or not) must replay exactly.

Determinism: one thread, deterministic algorithms, fp32, eager attention; a second run writes
byte-identical files (the safetensors header is rewritten with sorted metadata, as make_fixtures.py does).
Runs in about 2 minutes on 2 cores.
"""

import os
import sys
import warnings

import torch
import transformers
from transformers import LogitsProcessor, LogitsProcessorList, T5ForConditionalGeneration

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import save_sorted  # noqa: E402  (sorted metadata: byte-identical reruns)

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
OUT_DIR = os.path.join(FIXTURES, "gen")

MODELS = ["flan_gated", "t5_relu_tied", "odd_shapes"]
SRC_LENS = [13, 7, 20, 4]
MAX_NEW = 20
PAD, EOS, START, VOCAB = 0, 1, 0, 128
MIN_MARGIN = 1e-3
MAX_SEEDS = 100
NEG = 1.0e9  # _beam_search's penalty constant

# name, generate() settings, which inputs must end with eos before max_new_tokens: None (no eos bias),
# "some" (some but not all: padding in the batch), "all" (all, at different steps: the search stops
# before max_new_tokens), "heuristic" (some, and the early-stop heuristic of early_stopping=False
# changed a result: an input it had closed later produced a finished hypothesis that would have
# become its best)
BEAM4 = dict(num_beams=4, length_penalty=1.0, early_stopping=False)
CASES = [
    ("greedy", dict(num_beams=1), None),
    ("greedy_ngram3", dict(num_beams=1, no_repeat_ngram_size=3), None),
    ("greedy_eos", dict(num_beams=1), "some"),
    ("greedy_all_eos", dict(num_beams=1), "all"),
    ("beam4_lp1", BEAM4, None),
    ("beam4_lp1_eos", BEAM4, "some"),
    ("beam4_lp1_all_eos", BEAM4, "all"),
    ("beam4_lp1_heuristic", BEAM4, "heuristic"),
    ("beam3_lp0.6_ngram3_eos", dict(num_beams=3, length_penalty=0.6, no_repeat_ngram_size=3, early_stopping=False), "some"),
    ("beam4_early_stop_eos", dict(BEAM4, early_stopping=True), "some"),
    ("beam4_early_stop_all_eos", dict(BEAM4, early_stopping=True), "all"),
    # min_new_tokens and repetition_penalty (penalties above and below 1), alone and with the others
    ("greedy_min5_eos", dict(num_beams=1, min_new_tokens=5), "some"),
    ("greedy_rep1.3", dict(num_beams=1, repetition_penalty=1.3), None),
    ("greedy_rep0.8_ngram3_min3_eos", dict(num_beams=1, repetition_penalty=0.8, no_repeat_ngram_size=3, min_new_tokens=3), "some"),
    ("beam4_min5_eos", dict(BEAM4, min_new_tokens=5), "some"),
    ("beam4_rep1.3", dict(BEAM4, repetition_penalty=1.3), None),
    ("beam3_lp0.6_rep0.8_ngram3_min4_eos", dict(num_beams=3, length_penalty=0.6, repetition_penalty=0.8, no_repeat_ngram_size=3,
                                                min_new_tokens=4, early_stopping=False), "some"),
    ("beam4_early_stop_rep1.5_min3_all_eos", dict(BEAM4, early_stopping=True, repetition_penalty=1.5, min_new_tokens=3), "all"),
]
# settings whose every use must matter: with the setting back at its default (which generate() is then not
# given, so the older cases run exactly as before these existed) the same input and eos bias must give a
# different output, else the case would not test it and the next seed is tried
OFF = dict(min_new_tokens=0, repetition_penalty=1.0)
# eos biases tried, for each input seed, until the inputs end as the case wants (the models' logit
# scales differ: the tied model's are ~sqrt(d_model) smaller)
EOS_BIASES = {"some": [4.0, 3.0, 2.0, 1.5, 1.0, 0.5], "heuristic": [4.0, 3.0, 2.0, 1.5, 1.0, 0.5], "all": [2.0, 3.0, 4.0, 5.0, 6.0, 8.0]}


class Recorder(LogitsProcessor):
    """Placed last: records the sequences and the processed scores of every step, changes nothing."""

    def __init__(self):
        self.steps = []

    def __call__(self, input_ids, scores):
        self.steps.append((input_ids.clone(), scores.clone()))
        return scores


def make_batch(model_name, case_index, seed):
    g = torch.Generator().manual_seed(10000 * (MODELS.index(model_name) + 1) + 100 * case_index + seed)
    ts = max(SRC_LENS)
    ids = torch.randint(2, VOCAB, (len(SRC_LENS), ts), generator=g)
    mask = torch.zeros(len(SRC_LENS), ts, dtype=torch.long)
    for b, n in enumerate(SRC_LENS):
        ids[b, n - 1] = EOS
        ids[b, n:] = PAD
        mask[b, :n] = 1
    return ids, mask


def generate(model, ids, mask, settings, eos_bias):
    rec = Recorder()
    hook = None
    if eos_bias != 0.0:
        def add_bias(module, inputs, out):
            out = out.clone()
            out[..., EOS] += eos_bias
            return out
        hook = model.lm_head.register_forward_hook(add_bias)
    settings = {k: v for k, v in settings.items() if not (k in OFF and v == OFF[k])}
    try:
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=MAX_NEW, do_sample=False,
                             logits_processor=LogitsProcessorList([rec]), **settings)
    finally:
        if hook is not None:
            hook.remove()
    return out, rec.steps


def gap(a, b):
    """a ≥ b in a descending ranking; entries pushed down by the 1e9 penalty are not real scores: the
    order among them decides nothing"""
    if b == -float("inf") or a <= -NEG / 2:
        return float("inf")
    return float(a) - float(b)


def replay_greedy(steps, B):
    seqs = torch.full((B, 1), START, dtype=torch.long)
    done = torch.zeros(B, dtype=torch.bool)
    margin = float("inf")
    for ids, scores in steps:
        if not torch.equal(ids, seqs):
            sys.exit("greedy replay diverged from generate()")
        nxt = torch.empty(B, dtype=torch.long)
        for r in range(B):
            top = torch.topk(scores[r], 2).values
            if not done[r]:
                margin = min(margin, gap(top[0], top[1]))
            nxt[r] = PAD if done[r] else int(torch.argmax(scores[r]))
        seqs = torch.cat([seqs, nxt[:, None]], 1)
        done |= (nxt == EOS) | (seqs.shape[1] >= 1 + MAX_NEW)
        if done.all():
            break
    return seqs, margin


def replay_beam(steps, B, settings):
    """_beam_search's loop (transformers 5.24) on the recorded log-probabilities, item by item, with
    the same fp32 arithmetic; also the smallest gap of every decision that shaped the result, and how
    often an input closed by the early-stop heuristic had a finished candidate better than its best"""
    nb, lp, es = settings["num_beams"], settings["length_penalty"], settings["early_stopping"]
    K, L = 2 * nb, 1 + MAX_NEW
    f32 = lambda x: torch.tensor(x, dtype=torch.float32)  # noqa: E731
    run_seq = [[[START] for _ in range(nb)] for _ in range(B)]
    run_score = [f32([0.0] + [-NEG] * (nb - 1)) for _ in range(B)]
    fin = [[([START], f32(-NEG), 0, False) for _ in range(nb)] for _ in range(B)]  # (seq, score, len, done)
    open_ = [True] * B
    margin, decided = float("inf"), 0
    cur_len = 1
    for ids, logp in steps:
        want = torch.tensor([s for b in range(B) for s in run_seq[b]], dtype=torch.long)
        if not torch.equal(ids, want):
            sys.exit("beam replay diverged from generate()")
        V = logp.shape[1]
        all_hit, any_open, all_done = True, False, True
        for b in range(B):
            frozen = (not open_[b]) or (es and all(f[3] for f in fin[b]))
            acc = (logp[b * nb:(b + 1) * nb] + run_score[b][:, None]).reshape(-1)
            vals, idx = torch.topk(acc, K + 1)
            if not frozen:
                margin = min(margin, gap(vals[K - 1], vals[K]), gap(vals[nb - 1], vals[nb]))
            cands = []
            for k in range(K):
                beam, tok = int(idx[k]) // V, int(idx[k]) % V
                hit = tok == EOS or cur_len + 1 >= L
                cands.append((run_seq[b][beam] + [tok], vals[k], hit))
                all_hit &= hit
            # running beams: ended candidates pushed down by 1e9
            pen = torch.stack([c[1] + f32(-NEG if c[2] else -0.0) for c in cands])
            pvals, pidx = torch.topk(pen, min(nb + 1, K))
            if not frozen and nb < K:
                margin = min(margin, gap(pvals[nb - 1], pvals[nb]))
            run_seq[b] = [cands[int(i)][0] for i in pidx[:nb]]
            run_score[b] = pvals[:nb].clone()
            # finished set
            full = es and all(f[3] for f in fin[b])
            denom = f32(float(cur_len) ** lp)
            merged = [(f[0], f[1], f[2], f[3]) for f in fin[b]]
            for k, (seq, score, hit) in enumerate(cands):
                did = hit and k < nb
                s = score / denom
                decided += int(did and not open_[b] and not full and bool(s > fin[b][0][1]))
                s = s + f32(-NEG if full else -0.0)
                s = s + f32(-0.0 if open_[b] else -NEG)
                s = s + f32(-0.0 if did else -NEG)
                merged.append((seq, s, cur_len, did))
            mscores = torch.stack([m[1] for m in merged])
            mvals, midx = torch.topk(mscores, nb + 1)
            if not frozen:
                margin = min(margin, gap(mvals[nb - 1], mvals[nb]))
            fin[b] = [merged[int(i)] for i in midx[:nb]]
        cur_len += 1
        for b in range(B):
            frozen = (not open_[b]) or (es and all(f[3] for f in fin[b]))
            best = run_score[b][0] / f32(float(cur_len - 1) ** lp)
            worst = torch.min(torch.stack([f[1] for f in fin[b]]))
            if all(f[3] for f in fin[b]) and not frozen:
                margin = min(margin, abs(float(best) - float(worst)))
            any_better = any(bool(best > (worst if f[3] else f32(-NEG))) for f in fin[b])
            open_[b] = open_[b] and any_better
            any_open |= open_[b]
            all_done &= all(f[3] for f in fin[b])
        if not (any_open and not (all_done and es) and not all_hit):
            break
    out = []
    for b in range(B):
        if fin[b][1][1] > -NEG / 2:
            margin = min(margin, float(fin[b][0][1]) - float(fin[b][1][1]))
        out.append(fin[b][0][0][:1 + fin[b][0][2]])
    return out, margin, decided


def ended_early(seqs):
    """per input: ends with eos before max_new_tokens"""
    res = []
    for s in seqs:
        toks = list(s[1:])
        res.append(EOS in toks and toks.index(EOS) + 1 < MAX_NEW)
    return res


def as_lists(out):
    """generate()'s padded rows → start token + tokens up to and including the first eos"""
    rows = []
    for r in out.tolist():
        toks = r[1:]
        rows.append(r[:1] + (toks[:toks.index(EOS) + 1] if EOS in toks else toks))
    return rows


def eos_pattern_ok(rule, seqs, strict, decided):
    """None: anything; "some": some but not all inputs end early; "all": all do, at different steps
    (strict) or at any steps (the fallback: the tied model ends either at step 1 or never);
    "heuristic": some, and the heuristic decided something"""
    ended = ended_early(seqs)
    if rule == "heuristic":
        return any(ended) and not all(ended) and decided > 0
    if rule == "some":
        return any(ended) and not all(ended)
    if rule == "all":
        return all(ended) and (not strict or len({len(r) for r in seqs}) > 1)
    return True


def find_case(model, model_name, k, name, settings, eos_rule):
    B = len(SRC_LENS)
    tries = [(s, e) for s in range(MAX_SEEDS) for e in (EOS_BIASES[eos_rule] if eos_rule else [0.0])]
    for strict in (True, False):
        for seed, eos_bias in tries:
            ids, mask = make_batch(model_name, k, seed)
            out, steps = generate(model, ids, mask, settings, eos_bias)
            decided = 0
            if settings["num_beams"] == 1:
                seqs, margin = replay_greedy(steps, B)
                replayed = as_lists(seqs)
            else:
                replayed, margin, decided = replay_beam(steps, B, settings)
            if replayed != as_lists(out):
                sys.exit(f"{model_name} {name} seed {seed}: replay {replayed} != generate() {as_lists(out)}")
            if margin >= MIN_MARGIN and eos_pattern_ok(eos_rule, as_lists(out), strict, decided) and \
                    all(as_lists(generate(model, ids, mask, dict(settings, **{k: OFF[k]}), eos_bias)[0]) != as_lists(out)
                        for k in OFF if settings[k] != OFF[k]):
                return seed, eos_bias, ids, mask, out, margin, ended_early(as_lists(out))
    sys.exit(f"{model_name} {name}: no input seed below {MAX_SEEDS} gives margins >= {MIN_MARGIN}, "
             f"the eos pattern wanted and outputs that {', '.join(OFF)} change")


def write_model_fixtures(model_name):
    mdir = os.path.join(FIXTURES, model_name, "model")
    model = T5ForConditionalGeneration.from_pretrained(mdir, attn_implementation="eager").eval()
    tensors, meta = {}, {
        "format": "pt",
        "model_dir": f"dev/fixtures/{model_name}/model",  # relative to the repository root
        "cases": str(len(CASES)),
        "max_new_tokens": str(MAX_NEW),
        "min_margin": repr(MIN_MARGIN),
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
    }
    for k, (name, settings, eos_rule) in enumerate(CASES):
        full = dict(num_beams=1, length_penalty=1.0, no_repeat_ngram_size=0, early_stopping=False, **OFF)
        full.update(settings)
        with torch.no_grad():
            seed, eos_bias, ids, mask, out, margin, ended = find_case(model, model_name, k, name, full, eos_rule)
        tensors[f"case{k}.input_ids"] = ids.to(torch.int32)
        tensors[f"case{k}.attention_mask"] = mask.to(torch.int32)
        tensors[f"case{k}.sequences"] = out.to(torch.int32)
        meta.update({
            f"case{k}.name": name,
            f"case{k}.num_beams": str(full["num_beams"]),
            f"case{k}.length_penalty": repr(float(full["length_penalty"])),
            f"case{k}.no_repeat_ngram_size": str(full["no_repeat_ngram_size"]),
            f"case{k}.early_stopping": str(int(full["early_stopping"])),
            f"case{k}.min_new_tokens": str(full["min_new_tokens"]),
            f"case{k}.repetition_penalty": repr(float(full["repetition_penalty"])),
            f"case{k}.eos_bias": repr(float(eos_bias)),
            f"case{k}.seed": str(seed),
            f"case{k}.margin": f"{margin:.3e}",
        })
        print(f"{model_name:13s} case{k} {name:24s} seed {seed:3d} eos bias {eos_bias:3.1f} margin {margin:.2e} width {out.shape[1]:2d} "
              f"ended early {sum(ended)}/{len(ended)}")
    path = os.path.join(OUT_DIR, f"{model_name}.safetensors")
    save_sorted({k: v.contiguous() for k, v in tensors.items()}, path, meta)
    return path


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.set_float32_matmul_precision("highest")
    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    os.makedirs(OUT_DIR, exist_ok=True)
    total = 0
    for name in MODELS:
        path = write_model_fixtures(name)
        total += os.path.getsize(path)
        print(f"  wrote {os.path.relpath(path, FIXTURES)} ({os.path.getsize(path)} B)")
    print(f"total {total} bytes in {OUT_DIR}")


if __name__ == "__main__":
    main()
