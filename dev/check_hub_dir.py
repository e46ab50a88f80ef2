"""
Checks that an HF directory written by train_t5 / train_t5cu is hub-ready: transformers loads it as
the model the engine held, with its tokenizer, generation settings and model card. Exit 0 = every
check passed, 1 = a check failed, 2 = could not run.

    python3 dev/check_hub_dir.py --dir DIR [--expect-head tied,scaled] [--dialogsum DIR --spm spiece.model]
                                 [--expected FIXTURE] [--generations generations.jsonl] [--scores scores.json]

Without PyTorch (what `make test` runs; transformers and tokenizers install without it):
  - AutoConfig: the config loads; with --expect-head, transformers' scale_decoder_outputs is the one given
  - AutoTokenizer: loads; with --dialogsum/--spm, the ids of every test dialogue (in the directory's
    prompt, prompt.json's, as the card's snippet writes the source: trailing whitespace, which
    sentencepiece drops, stripped for transformers 4's fast tokenizer) and of every human summary equal
    sentencepiece's + </s>, and decoding them gives sentencepiece's text back
  - generation_config.json: the ids agree with config.json; README.md: its model-index front matter
    parses (PyYAML) and, with --scores, holds those scores
With PyTorch installed (dev use; results in docs/benchmarks.md):
  - AutoModelForSeq2SeqLM: no missing/unexpected keys; lm_head shared with the embedding iff
    --expect-head says tied; with --expected (a dev/fixtures/formats expected.safetensors), that batch's
    loss and logits (1e-4, see dev/check_hf_export.py for why)
  - with --generations (train_t5's generations.jsonl for this model): what the model card's snippet does
    (dev/hub_summarize.py: AutoTokenizer on the directory's prompt around each dialogue, then
    AutoModelForSeq2SeqLM.generate() with generation_config.json's settings, decode) gives the same
    summaries, on transformers 4.x and 5.x (5.x removed pipeline("summarization"))
"""

import argparse
import json
import os
import re
import sys
import warnings

from hub_summarize import dir_prompt, source, summarizer  # dev/hub_summarize.py: the model card snippet's steps

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")


class Report:
    def __init__(self):
        self.failed = 0

    def check(self, what, ok, detail=""):
        print(f"{what:<78} {'OK' if ok else 'FAIL'}{'  ' + detail if detail else ''}")
        self.failed += 0 if ok else 1


def check_config(r, d, head):
    from transformers import AutoConfig
    cfg = AutoConfig.from_pretrained(d)
    r.check("AutoConfig loads config.json", cfg.model_type == "t5", f"{type(cfg).__name__}")
    if head:
        tied, scaled = head
        got = bool(getattr(cfg, "scale_decoder_outputs", cfg.tie_word_embeddings))
        r.check(f"transformers reads decoder output scaling = {scaled}", got == scaled)
    gen = json.load(open(os.path.join(d, "generation_config.json")))
    ids = all(gen[k] == getattr(cfg, k) for k in ("decoder_start_token_id", "eos_token_id", "pad_token_id"))
    r.check("generation_config.json: start/eos/pad ids agree with config.json", ids)
    from transformers import GenerationConfig
    g = GenerationConfig.from_pretrained(d)
    r.check("GenerationConfig loads it", g.num_beams == gen["num_beams"] and g.max_new_tokens == gen["max_new_tokens"],
            f"num_beams={g.num_beams} max_new_tokens={g.max_new_tokens}")
    return cfg


def dialogsum_texts(root, prompt):
    texts = []
    with open(os.path.join(root, "dialogsum.test.jsonl"), encoding="utf-8") as f:
        for line in f:
            ex = json.loads(line)
            texts.append(source(prompt, ex["dialogue"]))
            texts += [v for k, v in sorted(ex.items()) if k.startswith("summary")]
    return texts


def check_tokenizer(r, d, dialogsum, spm_path):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(d)
    r.check("AutoTokenizer loads the directory", tok is not None, f"{type(tok).__name__}, {len(tok)} tokens")
    if not dialogsum:
        return tok
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=spm_path)
    texts = dialogsum_texts(dialogsum, dir_prompt(d))
    bad_ids = bad_text = 0
    first = None
    for t in texts:
        want = sp.encode(t) + [1]
        got = tok(t).input_ids
        if got != want:
            bad_ids += 1
            first = first or (t[:60], got[:12], want[:12])
        if tok.decode(got, skip_special_tokens=True) != sp.decode(want[:-1]):
            bad_text += 1
    r.check(f"ids of {len(texts)} DialogSum test texts (prompts + human summaries) == sentencepiece + </s>",
            bad_ids == 0, f"{bad_ids} differ" + (f", first: {first}" if first else ""))
    r.check(f"decode(ids) of the same texts == sentencepiece's decode", bad_text == 0, f"{bad_text} differ")
    return tok


def check_card(r, d, scores):
    import yaml
    text = open(os.path.join(d, "README.md"), encoding="utf-8").read()
    ok = text.startswith("---\n") and "\n---\n" in text[4:]
    meta = yaml.safe_load(text[4:text.index("\n---\n", 4)]) if ok else None
    r.check("README.md: YAML front matter parses", isinstance(meta, dict), ", ".join(sorted(meta)) if meta else "")
    if not isinstance(meta, dict):
        return
    r.check("model card: pipeline_tag summarization, library transformers",
            meta.get("pipeline_tag") == "summarization" and meta.get("library_name") == "transformers")
    if scores:
        want = json.load(open(scores))
        got = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
        same = all(abs(got[k] - want[k]) < 1e-4 for k in ("rouge1", "rouge2", "rougeL", "rougeLsum", "bleu"))
        r.check("model-index metrics == scores.json (ROUGE-1/2/L/Lsum, BLEU)", same, str(got))
        # the trivial baselines the evaluation scored beside the model: rows of the card's table
        rows = {}
        for name, file in (("LEAD-2", "scores_lead2.json"), ("LONGEST-3", "scores_longest3.json")):
            b = json.load(open(os.path.join(os.path.dirname(scores), file)))
            rows[name] = "| " + " | ".join(f"{b[k]:.2f}" for k in ("rouge1", "rouge2", "rougeL", "rougeLsum", "bleu")) + " |"
        ok = all(re.search(rf"\n\| {n} \(baseline[^|]*{re.escape(row)}\n", text) for n, row in rows.items())
        r.check("model card: LEAD-2 and LONGEST-3 rows == scores_lead2.json, scores_longest3.json", ok)


def check_model(r, d, head, expected):
    import torch
    from transformers import AutoModelForSeq2SeqLM
    model, info = AutoModelForSeq2SeqLM.from_pretrained(d, output_loading_info=True, dtype=torch.float32)
    missing = [k for k in info["missing_keys"]]
    r.check("AutoModelForSeq2SeqLM: no missing or unexpected keys", not missing and not info["unexpected_keys"],
            f"missing {missing[:3]} unexpected {list(info['unexpected_keys'])[:3]}")
    shares = model.lm_head.weight.data_ptr() == model.shared.weight.data_ptr()
    if head:
        r.check(f"lm_head shared with the embedding = {head[0]} (as the engine held it, or an equal copy)",
                shares == head[0] or (not shares and torch.equal(model.lm_head.weight, model.shared.weight) and head[0]))
    if expected:
        from safetensors.torch import load_file
        e = load_file(expected)
        out = model(input_ids=e["input_ids"].long(), attention_mask=e["attention_mask"].long(), labels=e["labels"].long())
        dl = (out.logits - e["logits"]).abs().max().item()
        r.check("fixture batch: logits within 1e-4", dl <= 1e-4, f"max abs {dl:.2e}")
        r.check("fixture batch: loss within 1e-4", abs(out.loss.item() - e["loss"].item()) <= 1e-4,
                f"{out.loss.item():.6f} vs {e['loss'].item():.6f}")
    return model


def check_summaries(r, d, generations):
    rows = [json.loads(line) for line in open(generations, encoding="utf-8")]
    run = summarizer(d)
    same = 0
    first = None
    for row in rows:
        got = run(row["dialogue"])
        if got == row["generated"]:
            same += 1
        elif first is None:
            first = (got[:80], row["generated"][:80])
    r.check(f"tokenizer + generate(), the card's way, == train_t5's summaries ({len(rows)} dialogues)", same == len(rows),
            f"{same}/{len(rows)} equal" + (f", first difference: {first}" if first else ""))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--expect-head", help="tied,scaled as 0/1, e.g. 1,0")
    ap.add_argument("--dialogsum")
    ap.add_argument("--spm")
    ap.add_argument("--expected")
    ap.add_argument("--generations")
    ap.add_argument("--scores")
    a = ap.parse_args()
    try:
        import transformers
    except ImportError as e:
        print(f"cannot run: {e}")
        return 2
    import transformers.utils.logging as tl
    tl.set_verbosity_error()
    tl.disable_progress_bar()
    head = tuple(bool(int(x)) for x in a.expect_head.split(",")) if a.expect_head else None
    print(f"{a.dir}: transformers {transformers.__version__}")
    r = Report()
    check_config(r, a.dir, head)
    check_tokenizer(r, a.dir, a.dialogsum, a.spm)
    check_card(r, a.dir, a.scores)
    try:
        import torch  # noqa: F401
        have_torch = True
    except ImportError:
        have_torch = False
        print("(no PyTorch: the model and summary checks are left to a machine that has it)")
    if have_torch:
        check_model(r, a.dir, head, a.expected)
        if a.generations:
            check_summaries(r, a.dir, a.generations)
    print(f"{'all checks passed' if r.failed == 0 else str(r.failed) + ' check(s) FAILED'}")
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
