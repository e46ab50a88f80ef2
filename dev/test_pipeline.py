#!/usr/bin/env python3
"""The DialogSum pipeline end to end, on a subset of the real DialogSum and the real T5 tokenizer:
prepro (both split modes, both input layouts, bad input), a short CPU training run whose loss falls,
kill-and-resume (SIGTERM and kill -9) with bit-identical losses, refusal of corrupted or truncated
shards and checkpoints (the previous checkpoint survives), the metrics plots and the W&B bridge, and the
prompt a model is trained with reaching its card, its exports and --summarize (--only prompt: that alone).

    python3 dev/test_pipeline.py [--train-bin ./train_t5] [--data ../shared/data] [--only prompt]

Needs: sentencepiece, numpy (prepro); matplotlib, wandb (plots, bridge). Exit status is the verdict.
"""
import argparse
import glob
import json
import math
import os
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PASS, FAIL = [], []
# a small random FLAN-shaped model: fast on 2 cores, large enough to learn unigram statistics
sys.path.insert(0, REPO)
from prepro_dialogsum import DEFAULT_PROMPT  # noqa: E402  (the one llmc/prompt.h holds too)
TINY = ["--model", "flan-t5-small", "--d-model", "64", "--num-heads", "2", "--d-kv", "32", "--d-ff", "128",
        "--num-layers", "2"]


def check(name, ok, detail=""):
    print(f"{name:<78} {'OK' if ok else 'FAIL'}{('  ' + detail) if detail else ''}")
    (PASS if ok else FAIL).append(name)
    return ok


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, **kw)



def header(path):
    with open(path, "rb") as f:
        return struct.unpack("<32q", f.read(256))


def read_refs(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def train_records(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        recs = [json.loads(line) for line in f]
    return {r["step"]: (r["loss"], r["grad_norm"]) for r in recs if r["type"] == "train"}, recs


# ----------------------------------------------------------------------------- prepro

def make_subset(data, tmp):
    """First 160/40/40 records of the official files, as jsonl and as the hub's CSV layout."""
    import csv
    src = os.path.join(data, "dialogsum")
    sub = os.path.join(tmp, "subset")
    csvd = os.path.join(tmp, "subset_csv")
    os.makedirs(sub)
    os.makedirs(csvd)
    counts = {"train": 160, "dev": 40, "test": 40}
    csv_names = {"train": "train.csv", "dev": "validation.csv", "test": "test.csv"}
    for split, n in counts.items():
        with open(os.path.join(src, f"dialogsum.{split}.jsonl"), encoding="utf-8") as f:
            lines = [next(f) for _ in range(n)]
        with open(os.path.join(sub, f"dialogsum.{split}.jsonl"), "w", encoding="utf-8") as f:
            f.writelines(lines)
        recs = [json.loads(x) for x in lines]
        fields = list(recs[0].keys())
        with open(os.path.join(csvd, csv_names[split]), "w", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(recs)
    return sub, csvd


def prepro(args, data_dir, out_dir, *extra):
    return run([sys.executable, "prepro_dialogsum.py", "--data-dir", data_dir, "--out-dir", out_dir,
                "--tokenizer", os.path.join(args.data, "t5", "spiece.model"), *extra])


def test_prepro_official(args, sub, csvd, tmp):
    out = os.path.join(tmp, "official")
    r = prepro(args, sub, out, "--max-source-len", "128")
    if not check("prepro official split: exit 0", r.returncode == 0, r.stderr[-300:]):
        return None
    sizes = {s: header(os.path.join(out, f"{s}.bin"))[2] for s in ("train", "val", "test")}
    check("prepro official split: 160/40/40 examples", sizes == {"train": 160, "val": 40, "test": 40}, str(sizes))
    test_refs = read_refs(os.path.join(out, "test_refs.jsonl"))
    check("test references: all three human summaries per dialogue",
          len(test_refs) == 40 and all(len(r["summaries"]) == 3 for r in test_refs))
    import sentencepiece
    sp = sentencepiece.SentencePieceProcessor(model_file=os.path.join(args.data, "t5", "spiece.model"))
    meta = json.load(open(os.path.join(out, "meta.json")))
    want = sp.encode(meta["prompt"].replace("{dialogue}", test_refs[0]["dialogue"]))
    want = (want[:127] if len(want) >= 128 else want) + [1]
    h = header(os.path.join(out, "test.bin"))
    with open(os.path.join(out, "test.bin"), "rb") as f:
        f.seek(256)
        ls, lt = struct.unpack("<2i", f.read(8))
        f.seek(256 + 8 * h[2])
        got = list(struct.unpack(f"<{ls}I", f.read(4 * ls)))
        tgt = list(struct.unpack(f"<{lt}I", f.read(4 * lt)))
    check("first test example: prompt + dialogue tokens + </s> as sentencepiece encodes them", got == want)
    check("first test target: summary1 tokens + </s>", tgt == sp.encode(test_refs[0]["summaries"][0]) + [1])
    long_src = sum(1 for s in ("train", "val", "test") for x in meta["splits"][s]["source_len"].values() if x == 128)
    check("truncation to --max-source-len 128 is reported", meta["splits"]["train"]["truncated_sources"] > 0
          and meta["splits"]["train"]["source_len"]["max"] == 128 and long_src > 0, r.stdout.splitlines()[-4])
    out_csv = os.path.join(tmp, "official_csv")
    r = prepro(args, csvd, out_csv, "--max-source-len", "128")
    same = r.returncode == 0 and all(open(os.path.join(out, f"{s}.bin"), "rb").read() ==
                                     open(os.path.join(out_csv, f"{s}.bin"), "rb").read() for s in ("train", "val", "test"))
    check("the CSV layout (knkarthick/dialogsum) gives byte-identical shards", same, r.stderr[-300:])
    return out


def test_prepro_ratio(args, sub, tmp):
    outs = []
    for name, seed in (("r1", "1"), ("r2", "1"), ("r3", "2")):
        out = os.path.join(tmp, name)
        r = prepro(args, sub, out, "--split", "80/10/10", "--seed", seed)
        if not check(f"prepro --split 80/10/10 --seed {seed}: exit 0", r.returncode == 0, r.stderr[-300:]):
            return
        outs.append(out)
    ids = {s: [r["id"] for r in read_refs(os.path.join(outs[0], f"{s}_refs.jsonl"))] for s in ("train", "val", "test")}
    sizes = {s: len(v) for s, v in ids.items()}
    check("80/10/10 of 240 dialogues: 192/24/24", sizes == {"train": 192, "val": 24, "test": 24}, str(sizes))
    all_ids = ids["train"] + ids["val"] + ids["test"]
    check("no dialogue in two splits, every dialogue in one", len(set(all_ids)) == 240 == len(all_ids))
    dialogues = [{r["dialogue"] for r in read_refs(os.path.join(outs[0], f"{s}_refs.jsonl"))} for s in ("train", "val", "test")]
    check("no dialogue text shared between splits", not (dialogues[0] & dialogues[1] or dialogues[0] & dialogues[2] or dialogues[1] & dialogues[2]))
    same = open(os.path.join(outs[0], "train.bin"), "rb").read() == open(os.path.join(outs[1], "train.bin"), "rb").read()
    other = open(os.path.join(outs[0], "train.bin"), "rb").read() != open(os.path.join(outs[2], "train.bin"), "rb").read()
    check("the same seed gives the same split, another seed another", same and other)


def test_prepro_errors(args, sub, csvd, tmp):
    def broken(name, edit, src=sub, file="dialogsum.dev.jsonl", row=2):
        """a copy of src whose line `row` of `file` is edit(parsed record or None, line) (str, or bytes as they are)"""
        d = os.path.join(tmp, name)
        shutil.copytree(src, d)
        path = os.path.join(d, file)
        lines = open(path, encoding="utf-8", newline="").readlines()
        new = edit(json.loads(lines[row]) if file.endswith(".jsonl") else None, lines[row])
        lines[row] = new if isinstance(new, bytes) else new.encode("utf-8")
        with open(path, "wb") as f:
            f.write(b"".join(x if isinstance(x, bytes) else x.encode("utf-8") for x in lines))
        return d
    latin1 = lambda r, line: json.dumps(dict(r, dialogue="#Person1#: caf\u00e9?"), ensure_ascii=False).encode("latin-1", "replace") + b"\n"
    refused = [
        ("missing directory", os.path.join(tmp, "nope"), "no such directory"),
        ("non-UTF-8 CSV file", broken("latin1_csv", lambda r, line: ("\u00e9" + line).encode("latin-1", "replace"), csvd,
                                      "validation.csv", 3), "validation.csv:4: not UTF-8 text (invalid byte 0xe9)"),
    ]
    for name, data_dir, want in refused:
        out = os.path.join(tmp, "err_out_" + name.replace(" ", "_"))
        r = prepro(args, data_dir, out)
        written = os.path.exists(out) and os.listdir(out)
        check(f"prepro refuses a {name}: exit 1, message names the place, nothing written",
              r.returncode == 1 and want in r.stderr and not written, r.stderr.strip()[-160:])
    # a bad row is named, counted and skipped (dev/test_prepro.py has the rest: a file of bad rows only is refused)
    skipped = [
        ("malformed JSON line", broken("bad_json", lambda r, line: line[:40] + "\n"), "dialogsum.dev.jsonl:3: malformed JSON"),
        ("non-UTF-8 JSON line", broken("latin1", latin1), "dialogsum.dev.jsonl:3: not UTF-8 text (invalid byte 0xe9"),
        ("missing field", broken("no_field", lambda r, line: json.dumps({k: v for k, v in r.items() if k != "summary"}) + "\n"),
         "dialogsum.dev.jsonl:3: missing field 'summary'"),
        ("empty dialogue", broken("empty", lambda r, line: json.dumps(dict(r, dialogue="  ")) + "\n"), "dialogsum.dev.jsonl:3: empty 'dialogue'"),
    ]
    for name, data_dir, want in skipped:
        out = os.path.join(tmp, "skip_out_" + name.replace(" ", "_"))
        r = prepro(args, data_dir, out)
        n_val = header(os.path.join(out, "val.bin"))[2] if r.returncode == 0 else None
        check(f"prepro skips a {name}: exit 0, the row named on stderr, 39 val examples",
              r.returncode == 0 and "skipped " in r.stderr and want in r.stderr and "1 of 40 rows skipped" in r.stderr and n_val == 39,
              r.stderr.strip()[-160:])
    bom = broken("bom", lambda r, line: b"\xef\xbb\xbf" + line.encode("utf-8"), row=0)
    r = prepro(args, bom, os.path.join(tmp, "bom_out"))
    check("prepro reads a JSONL file that starts with a UTF-8 byte-order mark", r.returncode == 0, r.stderr.strip()[-160:])


# ----------------------------------------------------------------------------- training

def train(args, data, run_dir, *extra, wait=True):
    cmd = [args.train_bin, *TINY, "--train-file", os.path.join(data, "train.bin"), "--batch-size", "4",
           "--lr", "3e-3", "--warmup", "3", "--dropout", "0.1", "--out-dir", run_dir, *extra]
    if not wait:
        return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return run(cmd)


def test_training(args, data, tmp):
    rd = os.path.join(tmp, "run_loss")
    r = train(args, data, rd, "--steps", "40", "--val-file", os.path.join(data, "val.bin"), "--eval-every", "20",
              "--eval-rouge", "4", "--max-new-tokens", "16", "--tokenizer", os.path.join(args.data, "t5", "spiece.model"),
              "--eval-split", os.path.join(data, "test"), "--eval-limit", "3")
    if not check("a 40-step CPU run on DialogSum: exit 0", r.returncode == 0, r.stderr[-300:]):
        print(r.stdout[-2000:])
        return
    ev = os.path.join(rd, "eval")
    check("training with --eval-split (the main job's shape): the test summaries and scores land in OUT/eval",
          "evaluating on" in r.stdout and all(os.path.isfile(os.path.join(ev, f)) for f in ("generations.jsonl", "scores.json"))
          and len(open(os.path.join(ev, "generations.jsonl"), encoding="utf-8").readlines()) == 3, r.stdout[-300:])
    steps, recs = train_records(rd)
    first = sum(steps[k][0] for k in (1, 2, 3)) / 3
    last = sum(steps[k][0] for k in (38, 39, 40)) / 3
    # --init scratch (a preset's default): the untied head starts small, so the first loss is near ln(vocab)
    # (HF's initialisation starts near 68); 40 steps then take it down by several nats
    check("the first loss is near ln 32128 = 10.38 (scratch init), and the last 3 steps are 3+ nats lower",
          abs(steps[1][0] - math.log(32128)) < 1.0 and last < first - 3.0, f"{steps[1][0]:.2f}; {first:.2f} -> {last:.2f}")
    evals = [x for x in recs if x["type"] == "eval"]
    check("validation loss logged at steps 20 and 40, and it falls", [e["step"] for e in evals] == [20, 40]
          and evals[1]["val_loss"] < evals[0]["val_loss"], str([round(e["val_loss"], 3) for e in evals]))
    check("validation ROUGE (--eval-rouge 4) logged with each evaluation", all(
        all(isinstance(e.get(k), (int, float)) for k in ("rouge1", "rouge2", "rougeL", "rougeLsum", "bleu")) for e in evals))
    line = next(x for x in r.stdout.splitlines() if x.startswith("step 40/40"))
    check("the step line shows loss, lr, grad norm, ms, tok/s and ETA",
          all(k in line for k in ("| loss ", "| lr ", "| grad norm ", " ms |", " tok/s |", "| eta ")), line)
    check("the padding fraction is reported", "padding:" in r.stdout)
    model = os.path.join(rd, "model")
    check("the final model is an HF directory (config.json + model.safetensors)",
          os.path.isfile(os.path.join(model, "config.json")) and os.path.isfile(os.path.join(model, "model.safetensors")))
    r3 = train(args, data, os.path.join(tmp, "run_epochs"), "--epochs", "0.05")  # 160 examples / 4 = 40 batches
    check("--epochs 0.05 of 40 batches per epoch: 2 steps", r3.returncode == 0 and "2 steps in all" in r3.stdout
          and "step 2/2 " in r3.stdout, r3.stderr[-200:])
    r2 = run([args.train_bin, "--model", model, "--save-checkpoint", os.path.join(tmp, "reload.ckpt")])
    check("the exported HF directory loads back into train_t5", r2.returncode == 0, r2.stderr[-200:])
    test_tracking(rd, recs)
    test_eval(args, data, rd, tmp)
    return rd, r.stdout


def test_eval(args, data, rd, tmp):
    """The evaluation command (fine-tuned vs the untrained start, on 12 test dialogues), its scores against
    rouge_score / sacrebleu on the same summaries, and the summarize command on one of those dialogues."""
    from rouge_score import rouge_scorer
    import sacrebleu
    ev = os.path.join(tmp, "eval")
    tok = ["--tokenizer", os.path.join(args.data, "t5", "spiece.model"), "--max-new-tokens", "24"]
    dims = TINY[2:]  # the same shape and --seed default: the baseline is exactly the run's starting point
    r = run([args.train_bin, *dims, "--model", os.path.join(rd, "model"), "--baseline-model", "flan-t5-small",
             "--eval-split", os.path.join(data, "test"), "--eval-limit", "12", "--eval-out", ev, *tok])
    if not check("--eval-split with --baseline-model: exit 0, a score table for both models", r.returncode == 0 and
                 "\nzero-shot " in r.stdout and "\nfull fine-tune " in r.stdout, r.stderr[-300:]):
        return
    gens = [json.loads(x) for x in open(os.path.join(ev, "generations.jsonl"), encoding="utf-8")]
    refs = read_refs(os.path.join(data, "test_refs.jsonl"))[:12]
    check("generations.jsonl: id, dialogue, the three human summaries, the generated one",
          len(gens) == 12 and all(g["id"] == x["id"] and g["dialogue"] == x["dialogue"] and g["human"] == x["summaries"]
                                  and len(g["human"]) == 3 and isinstance(g["generated"], str) for g, x in zip(gens, refs)))
    scores = json.load(open(os.path.join(ev, "scores.json")))
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
    per = [scorer.score_multi(g["human"], g["generated"]) for g in gens]
    worst = max(abs(100 * sum(p[k].fmeasure for p in per) / len(per) - scores[k]) for k in ("rouge1", "rouge2", "rougeL", "rougeLsum"))
    bleu = sacrebleu.corpus_bleu([g["generated"] for g in gens], [[g["human"][i] for g in gens] for i in range(3)]).score
    # scores.json holds 6 decimals of 100·F: 5e-7 of rounding; the metrics themselves match to 1e-6 (make test_metrics)
    check("scores.json = rouge_score (use_stemmer, best of 3 refs) and sacrebleu on the same summaries",
          worst < 1e-5 and abs(bleu - scores["bleu"]) < 1e-5, f"ROUGE max diff {worst:.1e}, BLEU {scores['bleu']:.4f} vs {bleu:.4f}")
    each = max(abs(100 * p[k].fmeasure - g[k]) for p, g in zip(per, gens) for k in ("rouge1", "rouge2", "rougeL", "rougeLsum"))
    check("generations.jsonl: each summary's own ROUGE = rouge_score's", each < 1e-5, f"max diff {each:.1e}")
    md = open(os.path.join(ev, "comparison.md"), encoding="utf-8").read()
    check("comparison.md: both models' scores and the dialogues side by side", "| model | examples | ROUGE-1" in md and "flan-t5-small" in md
          and "**human**" in md and "**zero-shot**" in md and "**full fine-tune**" in md and refs[0]["id"] in md
          and os.path.isfile(os.path.join(ev, "comparison.txt")) and os.path.isfile(os.path.join(ev, "generations_baseline.jsonl")))
    test_trivial_baselines(args, data, rd, tmp, r.stdout)
    r = run([args.train_bin, "--model", os.path.join(rd, "model"), "--summarize", "-", *tok], input=refs[0]["dialogue"])
    check("--summarize - (C tokenizer end to end) prints the summary the evaluation generated", r.returncode == 0
          and r.stdout.rstrip("\n") == gens[0]["generated"], repr(r.stdout[:80]))
    spm_copy = os.path.join(rd, "model", "spiece.model")
    same_tok = os.path.isfile(spm_copy) and open(spm_copy, "rb").read() == open(tok[1], "rb").read()
    r = subprocess.run([args.train_bin, "--model", os.path.join(rd, "model"), "--summarize", "-", *tok[2:]], cwd=tmp,
                       input=refs[0]["dialogue"], capture_output=True, text=True)
    check("the trained model's directory holds the tokenizer (spiece.model), and --summarize finds it there",
          same_tok and r.returncode == 0 and r.stdout.rstrip("\n") == gens[0]["generated"], r.stderr.strip()[-200:])
    r = run([args.train_bin, "--model", os.path.join(rd, "model"), "--summarize", "-", *tok], input=" \n ")
    check("--summarize of an empty dialogue: a clear error", r.returncode == 1 and "empty dialogue" in r.stderr, r.stderr.strip())
    r = subprocess.run([args.train_bin, "--model", os.path.join(rd, "model"), "--summarize", "-", *tok], cwd=REPO,
                       input=b"#Person1#: caf\xe9 at six?", capture_output=True)
    err = r.stderr.decode("utf-8", "replace")
    check("--summarize of text that is not UTF-8 (Latin-1): refused, naming the byte", r.returncode == 1 and
          "standard input: not valid UTF-8 at byte 14 (0xe9)" in err and not r.stdout, err.strip()[-200:])
    ev2 = os.path.join(tmp, "eval_beam")
    r = run([args.train_bin, *dims, "--model", os.path.join(rd, "model"), "--baseline-model", "flan-t5-small",
             "--eval-split", os.path.join(data, "test"), "--eval-limit", "6", "--eval-out", ev2, "--num-beams", "3",
             "--length-penalty", "0.6", "--no-repeat-ngram", "3", "--early-stopping", "1", "--gen-batch-size", "4",
             "--compare-examples", "2", *tok])
    md = open(os.path.join(ev2, "comparison.md"), encoding="utf-8").read() if r.returncode == 0 else ""
    check("beam search flags through the evaluation command (3 beams, ngram ban, early stop, batches of 4)",
          r.returncode == 0 and md.count("\n## ") == 2 and "beam search" in r.stdout, r.stderr[-200:])
    r = run([args.train_bin, "--model", os.path.join(rd, "model"), "--summarize", "-", "--prompt", "no placeholder", *tok],
            input="#Person1#: Hi.")
    check("--prompt without {dialogue}: refused", r.returncode == 1 and "{dialogue}" in r.stderr, r.stderr.strip())
    r = run([args.train_bin, "--model", os.path.join(rd, "model"), "--eval-split", os.path.join(tmp, "nope"), *tok])
    check("--eval-split of a missing split: an error naming the file", r.returncode == 1 and "nope.bin" in r.stderr, r.stderr.strip())
    blocked = os.path.join(data, "train.bin", "eval")  # under a regular file: cannot be created
    r = run([args.train_bin, "--model", os.path.join(rd, "model"), "--eval-split", os.path.join(data, "test"),
             "--eval-out", blocked, *tok])
    check("--eval-out that cannot be created: refused before any summary is generated",
          r.returncode == 1 and "train.bin" in r.stderr and "generating" not in r.stdout + r.stderr, r.stderr.strip()[-200:])
    r = run([args.train_bin, *TINY, "--train-file", os.path.join(data, "train.bin"), "--steps", "2", "--eval-split",
             os.path.join(data, "test"), "--tokenizer", os.path.join(tmp, "nope.model")])
    check("training with --eval-split and a missing tokenizer: refused before the first step",
          r.returncode == 1 and "nope.model" in r.stderr and "step 1/" not in r.stdout, r.stderr.strip()[-200:])


def test_prompt(args, sub, tmp):
    """The prompt travels (llmc/prompt.h): shards made with a custom --prompt, a short run without --prompt, then
    the model card, OUT/model/prompt.json, a re-export and --summarize use that prompt; a LoRA adapter records it;
    --prompt over the data's warns; a malformed meta.json is refused, a missing one gives the default."""
    custom = 'Dialogue:\n{dialogue}\n\nIn one "short" sentence: '
    data, rd = os.path.join(tmp, "prompted"), os.path.join(tmp, "run_prompt")
    spm = os.path.join(args.data, "t5", "spiece.model")
    tok = ["--tokenizer", spm, "--max-new-tokens", "12", "--max-src-len", "128"]  # the shards' cut (prepro below)
    r = prepro(args, sub, data, "--max-source-len", "128", "--prompt", custom)
    if not check("prepro --prompt CUSTOM: exit 0, meta.json records it", r.returncode == 0 and
                 json.load(open(os.path.join(data, "meta.json")))["prompt"] == custom, r.stderr[-300:]):
        return
    r = train(args, data, rd, "--steps", "3", "--eval-split", os.path.join(data, "test"), "--eval-limit", "2", *tok)
    if not check("a 3-step run on them without --prompt: exit 0, 'prompt from' names the data's meta.json",
                 r.returncode == 0 and re.search(r"\| prompt from +\| \S*prompted/meta\.json", r.stdout), r.stderr[-300:]):
        return
    model = os.path.join(rd, "model")
    recorded = lambda d: json.load(open(os.path.join(d, "prompt.json")))["prompt"]
    card = open(os.path.join(model, "README.md"), encoding="utf-8").read()
    check("OUT/model/prompt.json and the card's snippet hold the data's prompt, not the default",
          recorded(model) == custom and f"prompt = {json.dumps(custom)}\n" in card, repr(recorded(model)))
    c = run([sys.executable, "dev/check_card_snippet.py", "--dir", model, "--tokenizer-only", "--spm", spm, "--prompt", custom])
    check("dev/check_card_snippet.py: the snippet encodes the training sources' ids", c.returncode == 0, c.stdout[-300:])
    dialogue = read_refs(os.path.join(data, "test_refs.jsonl"))[0]["dialogue"]
    generated = json.loads(open(os.path.join(rd, "eval", "generations.jsonl"), encoding="utf-8").readline())["generated"]
    s = run([args.train_bin, "--model", model, "--summarize", "-", *tok], input=dialogue)
    d = run([args.train_bin, "--model", model, "--summarize", "-", "--prompt", DEFAULT_PROMPT, *tok], input=dialogue)
    check("--summarize without --prompt (prompt.json's) == the evaluation's summary of the custom-prompt test.bin",
          s.returncode == 0 and s.stdout.rstrip("\n") == generated, f"{s.stdout.strip()!r} vs {generated!r}")
    check("... and with --prompt DEFAULT another summary: the prompt is what differs", d.returncode == 0 and d.stdout != s.stdout
          and "warning: the prompt" in d.stderr and "prompt.json" in d.stderr, f"{d.stdout.strip()!r}; {d.stderr.strip()[-200:]}")
    re_dir = os.path.join(tmp, "prompt_reexport")
    r = run([args.train_bin, "--model", model, "--save-hf", re_dir, "--tokenizer", spm])
    check("a re-export of that directory keeps its prompt (prompt.json, card)", r.returncode == 0 and recorded(re_dir) == custom
          and f"prompt = {json.dumps(custom)}\n" in open(os.path.join(re_dir, "README.md"), encoding="utf-8").read(), r.stderr[-200:])
    r = train(args, data, os.path.join(tmp, "run_prompt_lora"), "--steps", "2", "--lora-r", "4", *tok)
    adapter = os.path.join(tmp, "run_prompt_lora", "adapter")
    ok = r.returncode == 0 and recorded(adapter) == custom
    a = [run([args.train_bin, "--model", "flan-t5-small", *TINY[2:], "--lora-adapter", adapter, "--summarize", "-", *tok, *p],
             input=dialogue) for p in ([], ["--prompt", custom])]
    check("LoRA: OUT/adapter/prompt.json; --summarize with --lora-adapter uses it", ok and a[0].returncode == 0
          and a[0].stdout == a[1].stdout and a[0].stdout.strip(), (r.stderr + a[0].stderr)[-200:])
    other = "Other:\n{dialogue}"
    r = train(args, data, os.path.join(tmp, "run_prompt_flag"), "--steps", "1", "--prompt", other, *tok)
    check("--prompt given and not the data's: a warning naming both; the flag's goes to prompt.json", r.returncode == 0
          and json.dumps(other) in r.stderr and json.dumps(custom) in r.stderr and "meta.json" in r.stderr
          and recorded(os.path.join(tmp, "run_prompt_flag", "model")) == other, r.stderr.strip()[-300:])
    test_prompt_records(args, data, model, tmp)


def test_prompt_records(args, data, model, tmp):
    """meta.json beside --train-file: malformed or with a non-string prompt refused by name; missing, the default"""
    def copy_with_meta(name, meta):
        d = os.path.join(tmp, name)
        os.makedirs(d)
        for f in ("train.bin", "test.bin", "test_refs.jsonl"):
            os.symlink(os.path.join(data, f), os.path.join(d, f))
        if meta is not None:
            with open(os.path.join(d, "meta.json"), "w", encoding="utf-8") as f:
                f.write(meta)
        return d
    for name, meta, why in (("meta_truncated", '{"prompt": "Dialogue:', "unterminated string"),
                            ("meta_number", '{"prompt": 3}', '"prompt" is not a string'),
                            ("meta_no_placeholder", '{"prompt": "Summarize."}', "has no {dialogue}")):
        d = copy_with_meta(name, meta)
        r = train(args, d, os.path.join(tmp, "run_" + name), "--steps", "2")
        check(f"meta.json {name[5:].replace('_', ' ')}: refused, the message names the file, no step taken",
              r.returncode == 1 and os.path.join(d, "meta.json") in r.stderr and why in r.stderr and "step 1/" not in r.stdout,
              r.stderr.strip()[-200:])
    d = copy_with_meta("meta_missing", None)
    r = train(args, d, os.path.join(tmp, "run_meta_missing"), "--dry-run", "1")
    check("no meta.json beside --train-file: the default prompt, as before", r.returncode == 0
          and re.search(r"\| prompt from +\| the default ", r.stdout), r.stderr.strip()[-200:])
    d = copy_with_meta("meta_default", json.dumps({"prompt": DEFAULT_PROMPT}))
    r = run([args.train_bin, "--model", model, "--eval-split", os.path.join(d, "test"), "--dry-run", "1"])
    check("--eval-split made with another prompt than the model's: a warning naming both", r.returncode == 0
          and "warning: the prompt" in r.stderr and json.dumps(DEFAULT_PROMPT) in r.stderr and "prompt.json" in r.stderr,
          r.stderr.strip()[-300:])


def test_trivial_baselines(args, data, rd, tmp, table):
    """Issue 25: every evaluation scores LEAD-2 and LONGEST-3 beside the models, as rows marked "(baseline)"
    after them; their summaries and scores equal dev/trivial_baselines.py's (the rule in Python, rouge_score,
    sacrebleu) on every test dialogue of the subset."""
    rows = re.findall(r"\n(\S.*?) +\d+ +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+ +(\S+) ", table)
    check("the score table: the models, then LEAD-2 and LONGEST-3 marked (baseline), summaries/s \"–\"",
          [k for k, _ in rows] == ["zero-shot", "full fine-tune", "LEAD-2 (baseline)", "LONGEST-3 (baseline)"]
          and [s for _, s in rows][2:] == ["–", "–"], str(rows))
    ev = os.path.join(tmp, "eval_trivial")
    r = run([args.train_bin, "--model", os.path.join(rd, "model"), "--eval-split", os.path.join(data, "test"),
             "--max-new-tokens", "1", "--eval-out", ev, "--tokenizer", os.path.join(args.data, "t5", "spiece.model")])
    files = ["scores_lead2.json", "scores_longest3.json", "generations_lead2.jsonl", "generations_longest3.jsonl"]
    if not check("one model evaluated: exit 0, the baselines' files written, no comparison files (one model)",
                 r.returncode == 0 and all(os.path.isfile(os.path.join(ev, f)) for f in files)
                 and not os.path.exists(os.path.join(ev, "comparison.md")), r.stderr[-300:] if r.returncode else ""):
        return
    r = run([sys.executable, "dev/trivial_baselines.py", "--split", os.path.join(data, "test_refs.jsonl"), "--check-eval", ev])
    n = len(read_refs(os.path.join(data, "test_refs.jsonl")))
    ok = r.returncode == 0 and "all checks passed" in r.stdout
    check(f"LEAD-2 / LONGEST-3 on {n} test dialogues: texts and scores == dev/trivial_baselines.py", ok,
          "" if ok else (r.stdout + r.stderr)[-400:])


def test_lora(args, data, tmp):
    """LoRA on DialogSum (issue 16): a rank-8 run writes OUT/adapter (not OUT/model) and the merged model;
    the evaluation and --summarize with --lora-adapter give the summaries of that merged HF directory."""
    rd, merged = os.path.join(tmp, "run_lora"), os.path.join(tmp, "lora_merged")
    tok = ["--tokenizer", os.path.join(args.data, "t5", "spiece.model"), "--max-new-tokens", "16"]
    r = train(args, data, rd, "--steps", "12", "--lora-r", "8", "--lora-alpha", "16", "--lora-dropout", "0.05",
              "--lora-targets", "q,v,wi_0,wo", "--merge-lora", merged, "--lr", "1e-2", *tok)
    train_out = r.stdout
    if not check("a 12-step LoRA run: exit 0, peft's trainable count printed", r.returncode == 0 and
                 "trainable params: " in r.stdout and "LoRA " in r.stdout, r.stderr[-300:]):
        print(r.stdout[-2000:])
        return
    steps, _ = train_records(rd)
    first, last = sum(steps[k][0] for k in (1, 2, 3)) / 3, sum(steps[k][0] for k in (10, 11, 12)) / 3
    check("LoRA training loss falls (mean of the first vs last 3 steps)", last < first, f"{first:.2f} -> {last:.2f}")
    check("LoRA run directory: OUT/adapter (peft's two files), no OUT/model; --merge-lora an HF directory",
          all(os.path.isfile(os.path.join(rd, "adapter", f)) for f in ("adapter_config.json", "adapter_model.safetensors"))
          and not os.path.exists(os.path.join(rd, "model")) and os.path.isfile(os.path.join(merged, "model.safetensors")))
    dims, outs = TINY[2:], []
    for name, model in (("adapter", ["--model", "flan-t5-small", *dims, "--lora-adapter", os.path.join(rd, "adapter")]),
                        ("merged", ["--model", merged])):
        ev = os.path.join(tmp, f"eval_lora_{name}")
        r = run([args.train_bin, *model, "--eval-split", os.path.join(data, "test"), "--eval-limit", "5", "--eval-out", ev, *tok])
        outs.append([json.loads(x)["generated"] for x in open(os.path.join(ev, "generations.jsonl"), encoding="utf-8")]
                    if r.returncode == 0 else None)
    check("--eval-split with --lora-adapter == with the --merge-lora directory (5 summaries)",
          outs[0] is not None and outs[0] == outs[1], str(outs[0])[:120] if outs[0] else r.stderr[-200:])
    refs = read_refs(os.path.join(data, "test_refs.jsonl"))
    r = run([args.train_bin, "--model", "flan-t5-small", *dims, "--lora-adapter", os.path.join(rd, "adapter"), "--summarize", "-", *tok],
            input=refs[0]["dialogue"])
    r2 = run([args.train_bin, "--model", merged, "--summarize", "-", *tok], input=refs[0]["dialogue"])
    check("--summarize with --lora-adapter == with the --merge-lora directory", r.returncode == 0 and r2.returncode == 0
          and r.stdout == r2.stdout and r.stdout.strip(), repr(r.stdout[:80]) + " vs " + repr(r2.stdout[:80]))
    return rd, train_out


def md_table(md):
    """the score table of a comparison.md: {model column: its cells}, in order"""
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in md.split("\n\n")[1].splitlines()[2:]]
    return [(r[0], r[1:]) for r in rows]


def median(xs):
    xs = sorted(xs)
    return (xs[len(xs) // 2] + xs[(len(xs) - 1) // 2]) / 2


def test_report(args, data, tmp, full, lora):
    """Issue 16's three-way report: the zero-shot start, the full fine-tune (the 40-step run) and the LoRA
    adapter (the 12-step run) side by side; each trained row carries the trainable count its run printed and
    its run's median step time and peak memory (from metrics.jsonl), the zero-shot row 0 and "–"."""
    (full_rd, full_out), (lora_rd, lora_out) = full, lora
    ev = os.path.join(tmp, "eval_three")
    r = run([args.train_bin, *TINY, "--lora-adapter", os.path.join(lora_rd, "adapter"), "--compare-model",
             os.path.join(full_rd, "model"), "--baseline-model", "flan-t5-small", "--eval-split", os.path.join(data, "test"),
             "--eval-limit", "3", "--compare-examples", "3", "--max-new-tokens", "12", "--eval-out", ev,
             "--tokenizer", os.path.join(args.data, "t5", "spiece.model")])
    if not check("--lora-adapter + --compare-model + --baseline-model: exit 0", r.returncode == 0, r.stderr[-300:]):
        return
    md = open(os.path.join(ev, "comparison.md"), encoding="utf-8").read()
    table = md_table(md)
    printed = [re.search(r"trainable params: ([\d,]+) of", out).group(1) for out in (full_out, lora_out)]
    check("rows in order: zero-shot, full fine-tune, LoRA, then the two baselines (comparison.md, .txt and stdout)",
          [k for k, _ in table] == ["zero-shot", "full fine-tune", "LoRA", "LEAD-2 (baseline)", "LONGEST-3 (baseline)"]
          and "SUMMARIES: human vs zero-shot vs full fine-tune vs LoRA\n" in open(os.path.join(ev, "comparison.txt")).read()
          and re.search(r"\nzero-shot .*\nfull fine-tune .*\nLoRA .*\nLEAD-2 \(baseline\) .*\nLONGEST-3 \(baseline\) ", r.stdout)
          is not None, str([k for k, _ in table]))
    check("baseline rows: summaries/s and the run cells \"–\" (no model, no run)",
          all(c[-4:] == ["–", "–", "–", "–"] for _, c in table[3:]), str(table[3:]))
    table = table[:3]
    check("trainable params: 0 for zero-shot, the count each run printed for the others",
          [c[-3] for _, c in table] == ["0", *printed], f"{[c[-3] for _, c in table]} vs printed {printed}")
    want = []
    for rd in (full_rd, lora_rd):
        recs = [json.loads(x) for x in open(os.path.join(rd, "metrics.jsonl"))]
        want.append((median([x["ms"] for x in recs if x["type"] == "train"]), recs[-1].get("peak_mib")))
    got = [(c[-2], c[-1]) for _, c in table]
    ok = got[0] == ("–", "–") and all(w[1] is not None and abs(float(g[0]) - w[0]) <= 0.051 and abs(float(g[1]) - w[1]) <= 0.51
                                      for g, w in zip(got[1:], want))
    check("step ms = median of the run's train records, peak MiB = its end record's; \"–\" for zero-shot", ok,
          f"table {got}, logs {[(round(a, 2), b) for a, b in want]}")
    gens = {t: [json.loads(x)["generated"] for x in open(os.path.join(ev, f"generations{t}.jsonl"), encoding="utf-8")]
            for t in ("_baseline", "_compare", "")}
    sections = md.split("\n## ")[1:]
    labels = [[x.split("**")[1] for x in s.splitlines() if x.startswith("- **")] for s in sections]
    same = all(f"- **{k}**: {gens[t][i]}\n" in sections[i] for i in range(len(sections))
               for k, t in (("zero-shot", "_baseline"), ("full fine-tune", "_compare"), ("LoRA", "")))
    check("each of the 3 dialogues: human + the three models' summaries, each the one its generations file holds",
          len(sections) == 3 and all(x == ["human", "zero-shot", "full fine-tune", "LoRA"] for x in labels) and same, str(labels[:1]))
    scores = {t: json.load(open(os.path.join(ev, f"scores{t}.json"))) for t in ("_baseline", "_compare", "")}
    check("scores{,_baseline,_compare}.json: the kind and run info beside the old keys",
          [scores[t]["kind"] for t in ("_baseline", "_compare", "")] == ["zero-shot", "full fine-tune", "LoRA"]
          and scores["_compare"]["trainable_params"] == int(printed[0].replace(",", ""))
          and scores[""]["trainable_params"] == int(printed[1].replace(",", "")) and scores["_baseline"]["trainable_params"] == 0
          and "step_ms" in scores["_compare"] and "peak_mib" in scores[""] and "step_ms" not in scores["_baseline"]
          and all(isinstance(s["rougeLsum"], float) and s["examples"] == 3 for s in scores.values()))
    # a run directory whose log is old (no trainable / peak fields) and has broken lines: read, never fatal
    old = os.path.join(tmp, "run_old_log")
    shutil.copytree(os.path.join(full_rd, "model"), os.path.join(old, "model"))
    with open(os.path.join(old, "metrics.jsonl"), "w") as f:
        f.write('{"type": "start", "step": 0, "params": 5}\n{"type": "train", "st\n\x01 not json\n')
        f.write('{"type": "train", "step": 1, "ms": 12.5}\n{"type": "end", "step": 1}\n')
    r = run([args.train_bin, "--model", os.path.join(old, "model"), "--eval-split", os.path.join(data, "test"),
             "--eval-limit", "2", "--max-new-tokens", "4", "--eval-out", os.path.join(tmp, "eval_old"),
             "--tokenizer", os.path.join(args.data, "t5", "spiece.model")])
    row = next((x for x in r.stdout.splitlines() if x.startswith("fine-tuned ")), "")
    check("a model whose run log is old and partly broken: exit 0, a warning naming the log, unknown cells \"–\"",
          r.returncode == 0 and "metrics.jsonl: 2 line(s)" in r.stderr and row.split()[-3:] == ["–", "12.5", "–"],
          row or r.stderr[-200:])
    # a model outside any run directory (a hub checkpoint evaluated as it is): neither fine-tuned nor zero-shot
    bare = os.path.join(tmp, "bare_checkpoint")
    shutil.copytree(os.path.join(full_rd, "model"), bare)
    ev_bare = os.path.join(tmp, "eval_bare")
    r = run([args.train_bin, "--model", bare, "--eval-split", os.path.join(data, "test"), "--eval-limit", "2",
             "--max-new-tokens", "4", "--eval-out", ev_bare, "--tokenizer", os.path.join(args.data, "t5", "spiece.model")])
    row = next((x for x in r.stdout.splitlines() if x.startswith("model ") and "ROUGE-1" not in x), "")
    kind = json.load(open(os.path.join(ev_bare, "scores.json"))).get("kind") if r.returncode == 0 else None
    check("a model outside a run directory is labelled \"model\" (row and scores.json), its run cells \"–\"",
          r.returncode == 0 and kind == "model" and row.split()[-3:] == ["–", "–", "–"], row or r.stderr[-200:])


def test_tracking(rd, recs):
    r = run([sys.executable, "dev/plot_metrics.py", rd])
    pngs = sorted(os.path.basename(p) for p in glob.glob(os.path.join(rd, "plots", "*.png")))
    check("dev/plot_metrics.py writes the loss, lr, throughput and grad-norm PNGs", r.returncode == 0 and
          pngs == ["grad_norm.png", "loss.png", "lr.png", "rouge.png", "throughput.png"] and
          all(os.path.getsize(os.path.join(rd, "plots", p)) > 5000 for p in pngs), r.stderr[-200:] or str(pngs))
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true")
    r = run([sys.executable, "dev/wandb_bridge.py", rd, "--project", "t5c-test"], env=env)
    n_train = sum(1 for x in recs if x["type"] == "train")
    n_eval = sum(1 for x in recs if x["type"] == "eval")
    files = glob.glob(os.path.join(rd, "wandb", "offline-run-*", "run-*.wandb"))
    blob = open(files[0], "rb").read() if files else b""
    last_loss = json.dumps([x for x in recs if x["type"] == "train"][-1]["loss"]).encode()
    check("the W&B bridge logs every train and eval record to an offline run",
          r.returncode == 0 and f"sent {n_train + n_eval} records" in r.stdout and blob.count(b"train/loss") >= n_train
          and blob.count(b"val/val_loss") >= n_eval and last_loss in blob, (r.stdout + r.stderr).strip()[-200:])
    test_rouge = json.dumps(json.load(open(os.path.join(rd, "eval", "scores.json")))["rouge1"]).encode()
    check("the W&B run's config holds the start record (trainable params), its summary the end record and OUT/eval's "
          "test scores", all(k in blob for k in (b"trainable", b"total_steps", b"peak_mib", b"test/rouge1", b"test/bleu",
                                                  b"lead2/rouge1", b"longest3/rouge1"))
          and test_rouge in blob, (r.stdout + r.stderr).strip()[-200:])
    r = run([sys.executable, "dev/wandb_bridge.py", rd, "--project", "t5c-test", "--follow", "--timeout", "5"], env=env)
    check("the W&B bridge with --follow reads the same records and stops at the run's end record",
          r.returncode == 0 and f"sent {n_train + n_eval} records" in r.stdout, (r.stdout + r.stderr).strip()[-200:])
    test_bad_metrics_log(rd)


def test_bad_metrics_log(rd):
    """a log cut mid-record (a killed run) is read without its last line; a corrupt line is refused by file:line"""
    log = open(os.path.join(rd, "metrics.jsonl"), "rb").read()
    bad_line = log.count(b"\n") + 1
    for name, data, ok, want in (("torn", log + b'{"type": "train", "st', True, "wrote"),
                                 ("binary", log + b"\xff\xfe\n", False, f"metrics.jsonl:{bad_line}: not UTF-8")):
        d = rd + "_" + name
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "metrics.jsonl"), "wb") as f:
            f.write(data)
        r = run([sys.executable, "dev/plot_metrics.py", d])
        check(f"dev/plot_metrics.py on a {name} last line: " + ("plots the complete records" if ok else "exit 1 naming file:line"),
              (r.returncode == 0) == ok and want in r.stdout + r.stderr, (r.stdout + r.stderr).strip()[-200:])


def poison(model_dir, tensor):
    """Writes a NaN into the first element of `tensor` of an HF directory's model.safetensors."""
    path = os.path.join(model_dir, "model.safetensors")
    with open(path, "r+b") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        start = json.loads(f.read(n))[tensor]["data_offsets"][0]
        f.seek(8 + n + start)
        f.write(struct.pack("<f", float("nan")))


def test_keep_best(args, data, tmp):
    """--keep-best (HF's load_best_model_at_end) and --early-stop: the exported model is the best evaluated
    checkpoint's, a resumed run keeps the best so far, a run that stops improving stops"""
    kb = ["--val-file", os.path.join(data, "val.bin"), "--eval-every", "5", "--eval-batches", "2", "--eval-rouge", "6",
          "--max-new-tokens", "16", "--tokenizer", os.path.join(args.data, "t5", "spiece.model"), "--keep-best", "rouge1",
          "--checkpoint-every", "5"]
    rd = os.path.join(tmp, "run_best")
    r = train(args, data, rd, "--steps", "30", *kb)
    if not check("--keep-best rouge1: exit 0", r.returncode == 0, r.stderr[-300:]):
        return
    _, recs = train_records(rd)
    evals = [x for x in recs if x["type"] == "eval"]
    top = max(evals, key=lambda x: (x["rouge1"], -x["step"]))  # the first of the best (a tie does not improve)
    best = json.load(open(os.path.join(rd, "best", "best.json")))
    check("best.json: the evaluation with the highest ROUGE-1 (first of equals), and its checkpoint in best/",
          best["step"] == top["step"] and abs(best["value"] - top["rouge1"]) < 1e-6
          and sorted(os.listdir(os.path.join(rd, "best"))) == ["best.json", f"ckpt_{top['step']:09d}.bin"], str(best))
    check("metrics.jsonl: a best_model record before the end record names the exported step",
          any(x["type"] == "best_model" and x["step"] == top["step"] for x in recs) and recs[-1]["type"] == "end")
    ref = os.path.join(tmp, "best_ref_export")
    r2 = run([args.train_bin, "--model", os.path.join(rd, "best", f"ckpt_{top['step']:09d}.bin"), "--save-hf", ref])
    same = r2.returncode == 0 and open(os.path.join(rd, "model", "model.safetensors"), "rb").read() == \
        open(os.path.join(ref, "model.safetensors"), "rb").read()
    check(f"the exported model's weights are the best checkpoint's (step {top['step']} of 30), bit for bit", same, r2.stderr[-200:])
    card = open(os.path.join(rd, "model", "README.md")).read()
    check("the model card says which step the weights are", f"at step {top['step']} of 30" in card)
    # a run stopped after step 15 and resumed keeps the best so far: the same best as the uninterrupted run
    rs = os.path.join(tmp, "run_best_resume")
    p = train(args, data, rs, "--steps", "30", *kb, wait=False)
    wait_for(os.path.join(rs, "checkpoints", "ckpt_000000015.bin"), p)
    p.send_signal(signal.SIGTERM)
    p.communicate()
    r = train(args, data, rs, "--steps", "30", *kb, "--resume", "latest")
    again = json.load(open(os.path.join(rs, "best", "best.json"))) if r.returncode == 0 else {}
    check("stopped and resumed: the best so far is kept, and the end result equals the uninterrupted run's",
          r.returncode == 0 and again.get("step") == best["step"] and again.get("value") == best["value"]
          and "best so far: rouge1" in r.stdout, r.stderr[-300:])
    # --early-stop: a learning rate that makes the validation loss rise stops after N evaluations without a better one
    re_ = os.path.join(tmp, "run_early")
    r = train(args, data, re_, "--steps", "60", "--val-file", os.path.join(data, "val.bin"), "--eval-every", "2",
              "--eval-batches", "2", "--keep-best", "val_loss", "--early-stop", "2", "--lr", "3", "--clip", "0")
    got, _ = train_records(re_) if r.returncode == 0 else ({}, [])
    check("--early-stop 2: stops after 2 evaluations without a lower validation loss, before step 60",
          r.returncode == 0 and "early stop: 2 evaluations" in r.stdout and 0 < len(got) < 60, r.stdout[-300:])


def test_early_stop_resume(args, data, tmp):
    """--early-stop across a resume: the count of evaluations without improvement is the resumed step's (best.json
    may have been rewritten by evaluations after the resumed checkpoint), and a run that stopped early stays stopped"""
    # lr 0: the validation loss never improves on step 2's, so an uninterrupted run stops at step 8 (3 evaluations since)
    common = ("--steps", "12", "--lr", "0", "--dropout", "0", "--val-file", os.path.join(data, "val.bin"), "--eval-every", "2",
              "--eval-batches", "1", "--keep-best", "val_loss", "--early-stop", "3", "--checkpoint-every", "4",
              "--keep-checkpoints", "5", "--async-checkpoint", "0")
    rd = os.path.join(tmp, "run_early_resume")
    r = train(args, data, rd, *common)
    want, _ = train_records(rd) if r.returncode == 0 else ({}, [])
    if not check("--early-stop 3, lr 0: stops at step 8", r.returncode == 0 and sorted(want) == list(range(1, 9)), r.stderr[-300:] if r.returncode else ""):
        return
    # killed after step 6's evaluation (best.json: 2 evaluations since) and before step 8's checkpoint: resumes at 4
    os.remove(os.path.join(rd, "checkpoints", "ckpt_000000008.bin"))
    r = train(args, data, rd, *common, "--resume", "latest")
    got, _ = train_records(rd)
    check("... resumed from step 4 with best.json written at step 8: stops at step 8 again, the same losses",
          r.returncode == 0 and "at step 4" in r.stdout and got == want, f"steps {sorted(got)}")
    final = os.path.join(rd, "checkpoints", "ckpt_000000008.bin")
    stamp = os.stat(final).st_mtime_ns
    r = train(args, data, rd, *common, "--resume", "latest")
    got, recs = train_records(rd)
    check("... its checkpoint, the one it resumed from, is not written again", os.stat(final).st_mtime_ns == stamp)
    check("... and --resume latest of the run that stopped early trains no further step",
          r.returncode == 0 and "stopped early at step 8" in r.stdout and got == want, f"steps {sorted(got)}")
    evals = [x["step"] for x in recs if x["type"] == "eval"]
    check("... nor repeats step 8's evaluation (one eval record per step in metrics.jsonl)", evals == [2, 4, 6, 8], f"{evals}")


def test_nonfinite(args, data, tmp):
    """A NaN weight makes every loss non-finite: each step is skipped and reported, the weights are never
    updated, the metrics log marks it, and --max-skips stops a run that cannot recover."""
    src = os.path.join(tmp, "nan_model")
    r = run([args.train_bin, *TINY, "--save-hf", src])
    poison(src, "decoder.final_layer_norm.weight")
    rd = os.path.join(tmp, "run_nan")
    r = run([args.train_bin, "--model", src, "--train-file", os.path.join(data, "train.bin"), "--batch-size", "4",
             "--steps", "3", "--out-dir", rd])
    steps, _ = train_records(rd) if os.path.exists(os.path.join(rd, "metrics.jsonl")) else ({}, [])
    recs = [json.loads(x) for x in open(os.path.join(rd, "metrics.jsonl"))] if steps else []
    check("non-finite loss: each step SKIPPED and reported, the run ends cleanly", r.returncode == 0
          and r.stdout.count("SKIPPED: non-finite") == 3 and "3 step(s) skipped" in r.stdout
          and [x["skipped"] for x in recs if x["type"] == "train"] == [1, 1, 1], (r.stdout + r.stderr)[-300:])
    r = run([args.train_bin, "--model", src, "--train-file", os.path.join(data, "train.bin"), "--batch-size", "4",
             "--steps", "8", "--max-skips", "2"])
    check("--max-skips 2: two non-finite steps in a row stop the run with an error", r.returncode == 1
          and "2 consecutive steps" in r.stderr and r.stdout.count("SKIPPED") == 2, r.stderr.strip()[-200:])


def wait_for(path, proc, timeout=120):
    t0 = time.time()
    while not os.path.exists(path) and proc.poll() is None and time.time() - t0 < timeout:
        time.sleep(0.05)
    return os.path.exists(path)


def test_resume(args, data, tmp):
    common = ("--steps", "16", "--checkpoint-every", "4", "--keep-checkpoints", "2")
    ref = os.path.join(tmp, "run_ref")
    r = train(args, data, ref, *common)
    if not check("uninterrupted 16-step run with a checkpoint every 4 steps: exit 0", r.returncode == 0, r.stderr[-300:]):
        return
    want, _ = train_records(ref)
    ckpts = sorted(os.listdir(os.path.join(ref, "checkpoints")))
    check("--keep-checkpoints 2 keeps the newest two", ckpts == ["ckpt_000000012.bin", "ckpt_000000016.bin"], str(ckpts))

    for how, sig in (("SIGTERM", signal.SIGTERM), ("SIGHUP", signal.SIGHUP), ("kill -9", signal.SIGKILL)):
        rd = os.path.join(tmp, "run_" + how.replace(" ", "").replace("-", ""))
        p = train(args, data, rd, *common, wait=False)
        target = os.path.join(rd, "checkpoints", "ckpt_000000008.bin")
        wait_for(target, p)
        p.send_signal(sig)
        out, _ = p.communicate()
        if sig != signal.SIGKILL: # SIGHUP: the SSH session to the machine dropped
            check(f"{how}: checkpoint written, exit {128 + sig}", p.returncode == 128 + sig and f"stopped by signal {int(sig)}" in out,
                  f"rc {p.returncode}")
        r = train(args, data, rd, *common, "--resume", "latest")
        got, _ = train_records(rd)
        same = sorted(got) == list(range(1, 17)) and all(got[k] == want[k] for k in want)
        check(f"{how} during the run, then --resume latest: losses and grad norms bit-identical",
              r.returncode == 0 and same, f"resumed: {[l for l in r.stdout.splitlines() if 'resuming' in l]}")
    test_bad_checkpoints(args, data, tmp, ref, common)
    test_bad_shard(args, data, tmp, ref, common)
    test_resume_adafactor_lora(args, data, tmp)
    test_stdout_gone(args, data, tmp, want, common)


def test_stdout_gone(args, data, tmp, want, common):
    """the reader of the trainer's stdout goes away (| tee, | head, a closed terminal): training goes on to the
    end, its steps recorded in metrics.jsonl, instead of dying of SIGPIPE without a checkpoint"""
    rd = os.path.join(tmp, "run_pipe")
    p = train(args, data, rd, *common, wait=False)
    p.stdout.readline()
    p.stdout.close() # the pipe's reader is gone: the next write gets EPIPE
    rc = p.wait(timeout=600)
    got, _ = train_records(rd) if os.path.isfile(os.path.join(rd, "metrics.jsonl")) else ({}, None)
    check("stdout's reader gone after the first line: the run completes (exit 0), every step in metrics.jsonl",
          rc == 0 and got == want, f"rc {rc}, {len(got)} steps")


def test_resume_adafactor_lora(args, data, tmp):
    """Adafactor with beta1 on LoRA r 1: each (1, n) or (n, 1) slice keeps 1 + 2n floats of state, more than the
    2 per parameter of AdamW that the background writer's staging buffer once assumed (every checkpoint failed)"""
    common = ("--steps", "6", "--checkpoint-every", "2", "--lora-r", "1", "--optimizer", "adafactor", "--adafactor-beta1", "0.9",
              "--adafactor-relative-step", "0")
    ref = os.path.join(tmp, "run_af_ref")
    r = train(args, data, ref, *common)
    ckpts = sorted(os.listdir(os.path.join(ref, "checkpoints"))) if r.returncode == 0 else []
    if not check("Adafactor + beta1, LoRA r 1: every background checkpoint written", r.returncode == 0 and
                 "stage" not in r.stderr and ckpts[-1:] == ["ckpt_000000006.bin"], f"{r.stderr[-300:]} {ckpts}"):
        return
    want, _ = train_records(ref)
    rd = os.path.join(tmp, "run_af")
    shutil.copytree(ref, rd)
    os.remove(os.path.join(rd, "checkpoints", "ckpt_000000006.bin"))
    r = train(args, data, rd, *common, "--resume", "latest")
    got, _ = train_records(rd)
    check("... and --resume latest from step 4 gives the same losses and grad norms, bit for bit",
          r.returncode == 0 and "resuming" in r.stdout and got == want, r.stderr[-300:])


def test_run_dir_lock(args, data, tmp):
    """one training process per run directory: a second one (the same command twice, or a resume while
    the first still runs) is refused before it reads or cleans anything"""
    rd = os.path.join(tmp, "run_lock")
    p = train(args, data, rd, "--steps", "100000", "--checkpoint-every", "1000", wait=False)
    started = wait_for(os.path.join(rd, "metrics.jsonl"), p)
    r = train(args, data, rd, "--steps", "16", "--resume", "latest")
    running = p.poll() is None
    p.send_signal(signal.SIGTERM)
    p.communicate()
    check("a second process on a run directory while the first trains: refused, naming the first's pid",
          started and running and r.returncode == 1 and f"in use by another training process (pid {p.pid})" in r.stderr,
          r.stderr.strip()[-200:])


def test_write_failure(args, data, tmp):
    """a write that fails (the file-size limit here, as a full disk would): the run stops with the file's
    name and exit 1, leaves no temporary file, and its log holds only whole records"""
    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the writer; ignored, write() fails
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))  # the log fits, a checkpoint does not
    rd = os.path.join(tmp, "run_fsize")
    cmd = [args.train_bin, *TINY, "--train-file", os.path.join(data, "train.bin"), "--batch-size", "4", "--steps", "2",
           "--out-dir", rd, "--checkpoint-every", "1"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, preexec_fn=limit_file_size)
    left = [f for f in glob.glob(os.path.join(rd, "**"), recursive=True) if f.endswith(".tmp")]
    log = open(os.path.join(rd, "metrics.jsonl"), "rb").read() if os.path.exists(os.path.join(rd, "metrics.jsonl")) else b""
    try:
        whole = log.endswith(b"\n") and all(isinstance(json.loads(x), dict) for x in log.splitlines())
    except ValueError:
        whole = False
    check("a checkpoint write that fails: exit 1, the message names the file, no .tmp left, the log whole",
          r.returncode == 1 and "ckpt_000000001.bin.tmp: write failed" in r.stderr and not left and whole,
          (r.stderr.strip()[-200:] + (f" left: {left}" if left else "")))


def test_bad_checkpoints(args, data, tmp, ref, common):
    rd = os.path.join(tmp, "run_corrupt")
    shutil.copytree(ref, rd)
    newest = os.path.join(rd, "checkpoints", "ckpt_000000016.bin")
    with open(newest, "r+b") as f:
        f.seek(1000)
        b = f.read(1)
        f.seek(1000)
        f.write(bytes([b[0] ^ 0x10]))
    r = train(args, data, rd, *common, "--resume", newest)
    check("--resume with a corrupted checkpoint file: a clear error, non-zero exit", r.returncode == 1 and
          "checksum mismatch" in r.stderr and newest in r.stderr, r.stderr.strip()[-160:])
    r = train(args, data, rd, *common[:1], "20", *common[2:], "--resume", "latest")
    check("--resume latest skips the corrupted newest checkpoint (reported) and resumes the previous one",
          r.returncode == 0 and "checksum mismatch" in r.stderr and "ckpt_000000012.bin" in r.stdout,
          r.stderr.strip().splitlines()[0] if r.stderr.strip() else "")
    trunc = os.path.join(tmp, "trunc.bin")
    with open(os.path.join(ref, "checkpoints", "ckpt_000000012.bin"), "rb") as f:
        open(trunc, "wb").write(f.read()[:-100])
    r = train(args, data, os.path.join(tmp, "run_trunc"), *common, "--resume", trunc)
    check("a truncated checkpoint: refused with the size problem", r.returncode == 1 and "truncated" in r.stderr, r.stderr.strip()[-160:])
    r = train(args, data, ref, *common)
    check("a fresh run into a directory with checkpoints is refused (nothing overwritten)",
          r.returncode == 1 and "--resume latest" in r.stderr and os.path.exists(os.path.join(ref, "checkpoints", "ckpt_000000016.bin")))


def test_bad_shard(args, data, tmp, ref, common):
    bad = os.path.join(tmp, "bad_data")
    shutil.copytree(data, bad)
    path = os.path.join(bad, "train.bin")
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(size - 40)
        b = f.read(1)
        f.seek(size - 40)
        f.write(bytes([b[0] ^ 0x01]))
    rd = os.path.join(tmp, "run_ref_copy")
    shutil.copytree(ref, rd)
    before = sorted(os.listdir(os.path.join(rd, "checkpoints")))
    r = train(args, bad, rd, *common[:1], "20", *common[2:], "--resume", "latest")
    after = sorted(os.listdir(os.path.join(rd, "checkpoints")))
    check("a corrupted shard is refused (checksum, file named); the checkpoints survive",
          r.returncode == 1 and "checksum mismatch" in r.stderr and path in r.stderr and before == after, r.stderr.strip()[-160:])
    with open(path, "r+b") as f:
        f.truncate(size - 12)
    r = train(args, bad, os.path.join(tmp, "run_badshard"), "--steps", "2")
    check("a truncated shard is refused with the size problem", r.returncode == 1 and "truncated" in r.stderr, r.stderr.strip()[-160:])


def read_data_log(prefix, rank):
    """{(step, micro-batch): [example ids]} from train_t5 --data-log PREFIX."""
    out = {}
    with open(f"{prefix}.rank{rank}") as f:
        for line in f:
            v = [int(x) for x in line.split()]
            out[(v[0], v[1])] = v[2:]
    return out


def test_mpi(args, data, tmp):
    """mpirun -np 2 with --batch-size 2 against one process with --batch-size 4: the same global batches,
    so the same losses up to fp32 summation order (dropout off: masks are drawn per rank slice)."""
    base = [*TINY, "--train-file", os.path.join(data, "train.bin"), "--val-file", os.path.join(data, "val.bin"),
            "--steps", "6", "--grad-accum", "2", "--lr", "3e-3", "--dropout", "0", "--eval-every", "3"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    one = run([args.train_bin, *base, "--batch-size", "4", "--out-dir", os.path.join(tmp, "mpi1"),
               "--data-log", os.path.join(tmp, "log1")], env=env)
    openmpi = "Open MPI" in run(["mpirun", "--version"]).stdout  # its flags: root (CI) and 2 ranks on 2 cores
    flags = ["--allow-run-as-root", "--oversubscribe"] if openmpi else []
    two = run(["mpirun", *flags, "-np", "2", args.train_bin, *base, "--batch-size", "2",
               "--out-dir", os.path.join(tmp, "mpi2"), "--data-log", os.path.join(tmp, "log2")], env=env)
    if not check("mpirun -np 2 ./train_t5 and the single-process run: exit 0", one.returncode == 0 and two.returncode == 0
                 and "data parallel: 2 ranks" in two.stdout, (one.stderr + two.stderr)[-400:]):
        return
    a, ra = train_records(os.path.join(tmp, "mpi1"))
    b, rb = train_records(os.path.join(tmp, "mpi2"))
    # fp32: the ranks' gradients are summed by MPI_Allreduce instead of inside one GEMM; after 6 AdamW
    # steps the difference stays at the ~1e-6 level, 1e-5 relative leaves a margin of 10
    worst = max(abs(a[k][i] - b[k][i]) / abs(a[k][i]) for k in a for i in (0, 1)) if a.keys() == b.keys() else 1.0
    check("2 ranks x batch 2 = 1 process x batch 4: losses and grad norms within 1e-5 relative", worst < 1e-5, f"max rel {worst:.2e}")
    va = [x["val_loss"] for x in ra if x["type"] == "eval"]
    vb = [x["val_loss"] for x in rb if x["type"] == "eval"]
    check("validation loss (sharded over the ranks) agrees", len(va) == len(vb) == 2 and
          all(abs(x - y) / x < 1e-5 for x, y in zip(va, vb)), f"{va} vs {vb}")
    l1, r0, r1 = read_data_log(os.path.join(tmp, "log1"), 0), read_data_log(os.path.join(tmp, "log2"), 0), read_data_log(os.path.join(tmp, "log2"), 1)
    disjoint = all(not set(r0[k]) & set(r1[k]) for k in r0)
    complete = l1.keys() == r0.keys() == r1.keys() and all(r0[k] + r1[k] == l1[k] for k in l1)
    check("the ranks' examples are disjoint and together are exactly the single-process batches", disjoint and complete,
          f"{len(l1)} micro-batches")
    # LoRA (issue 16): only the adapter's gradients are summed over the ranks; the same equality holds
    lora = ["--lora-r", "4", "--lora-alpha", "8", "--lora-targets", "q,v,wi_0,wo"]
    one = run([args.train_bin, *base, *lora, "--batch-size", "4", "--out-dir", os.path.join(tmp, "mpi_lora1")], env=env)
    two = run(["mpirun", *flags, "-np", "2", args.train_bin, *base, *lora, "--batch-size", "2",
               "--out-dir", os.path.join(tmp, "mpi_lora2")], env=env)
    ok = one.returncode == 0 and two.returncode == 0
    a, _ = train_records(os.path.join(tmp, "mpi_lora1")) if ok else ({}, None)
    b, _ = train_records(os.path.join(tmp, "mpi_lora2")) if ok else ({}, None)
    worst = max(abs(a[k][i] - b[k][i]) / abs(a[k][i]) for k in a for i in (0, 1)) if ok and a.keys() == b.keys() else 1.0
    check("LoRA: 2 ranks x batch 2 = 1 process x batch 4: losses and grad norms within 1e-5 relative", ok and worst < 1e-5,
          f"max rel {worst:.2e}" if ok else (one.stderr + two.stderr)[-300:])
    # Adafactor (issue 26): the update needs each whole tensor's gradient, which every rank holds after the
    # all-reduce, so every rank computes the same update; full fine-tuning with transformers' defaults (relative
    # step: no --lr) and beta1 + weight decay, LoRA with the T5 settings (scheduled lr)
    no_lr = [x for i, x in enumerate(base) if x != "--lr" and (i == 0 or base[i - 1] != "--lr")]
    for label, extra in (("Adafactor", [*no_lr, "--optimizer", "adafactor", "--adafactor-beta1", "0.9", "--weight-decay", "0.01"]),
                         ("Adafactor LoRA", [*base, *lora, "--optimizer", "adafactor", "--adafactor-relative-step", "0",
                                             "--adafactor-scale-parameter", "0"])):
        tag = label.replace(" ", "_").lower()
        one = run([args.train_bin, *extra, "--batch-size", "4", "--out-dir", os.path.join(tmp, f"mpi_{tag}1")], env=env)
        two = run(["mpirun", *flags, "-np", "2", args.train_bin, *extra, "--batch-size", "2",
                   "--out-dir", os.path.join(tmp, f"mpi_{tag}2")], env=env)
        ok = one.returncode == 0 and two.returncode == 0
        a, _ = train_records(os.path.join(tmp, f"mpi_{tag}1")) if ok else ({}, None)
        b, _ = train_records(os.path.join(tmp, f"mpi_{tag}2")) if ok else ({}, None)
        worst = max(abs(a[k][i] - b[k][i]) / abs(a[k][i]) for k in a for i in (0, 1)) if ok and a and a.keys() == b.keys() else 1.0
        check(f"{label}: 2 ranks x batch 2 = 1 process x batch 4: losses and grad norms within 1e-5 relative", ok and worst < 1e-5,
              f"max rel {worst:.2e}" if ok else (one.stderr + two.stderr)[-300:])
    # without OMP_NUM_THREADS the ranks of a node split its cores instead of each taking all of them
    free_env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    cores = os.cpu_count() or 1
    shared = run(["mpirun", *flags, "-np", "2", args.train_bin, *TINY, "--train-file", os.path.join(data, "train.bin"),
                  "--steps", "1", "--batch-size", "2", "--out-dir", os.path.join(tmp, "mpi3")], env=free_env)
    want = f"{max(1, cores // 2)} OpenMP thread"
    check("mpirun -np 2 without OMP_NUM_THREADS: the ranks share the node's cores", shared.returncode == 0 and
          "2 ranks on this node share its" in shared.stdout and want in shared.stdout, (shared.stdout + shared.stderr)[-400:])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--train-bin", default="./train_t5")
    p.add_argument("--data", default=os.environ.get("DATA", os.path.join(REPO, "..", "shared", "data")))
    p.add_argument("--mpi", type=int, default=1, help="1: train_t5 was built with MPI, run the 2-rank test")
    p.add_argument("--only", choices=["prompt", "fuzz_cli"], help="prompt: only the prompt's tests (test_prompt), on the subset; "
                   "fuzz_cli: only the checks of what dev/fuzz_cli.py found")
    args = p.parse_args()
    args.train_bin = os.path.abspath(os.path.join(REPO, args.train_bin))
    tmp = tempfile.mkdtemp(prefix="t5c_pipeline_")
    try:
        sub, csvd = make_subset(args.data, tmp)
        if args.only == "prompt":
            print("=== the prompt")
            test_prompt(args, sub, tmp)
            return finish()
        print("=== prepro")
        data = test_prepro_official(args, sub, csvd, tmp)
        if args.only == "fuzz_cli":
            print("=== what dev/fuzz_cli.py found")
            if data:
                test_early_stop_resume(args, data, tmp)
            return finish()
        test_prepro_ratio(args, sub, tmp)
        test_prepro_errors(args, sub, csvd, tmp)
        if data:
            print("=== training, tracking, resume")
            full = test_training(args, data, tmp)
            lora = test_lora(args, data, tmp)
            if full and lora:
                test_report(args, data, tmp, full, lora)
            test_resume(args, data, tmp)
            test_keep_best(args, data, tmp)
            test_early_stop_resume(args, data, tmp)
            test_nonfinite(args, data, tmp)
            test_write_failure(args, data, tmp)
            test_run_dir_lock(args, data, tmp)
            print("=== the prompt")
            test_prompt(args, sub, tmp)
            print("=== data parallel (MPI)")
            if args.mpi:
                test_mpi(args, data, tmp)
            else:
                check("MPI not found by the Makefile: the 2-rank test cannot run (install libopenmpi-dev openmpi-bin)", False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return finish()


def finish():
    print(f"\n{len(PASS)} passed, {len(FAIL)} failed")
    return 1 if FAIL else 0


if __name__ == "__main__":
    sys.exit(main())
