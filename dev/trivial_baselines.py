#!/usr/bin/env python3
"""dev/trivial_baselines.py — the trivial baselines of every evaluation (issue 25), in Python: LEAD-2 (the
first two utterances of a dialogue) and LONGEST-3 (its three longest utterances, in dialogue order), scored
with rouge_score (use_stemmer, score_multi: best F over the references, per metric; mean over examples,
x 100) and sacrebleu (corpus BLEU, all references). The C side is llmc/evalset.h trivial_summary; this
script is its reference.

    python3 dev/trivial_baselines.py [--split FILE] [--limit N] [--variants] [--check-eval DIR]

  --split FILE       DialogSum jsonl (dialogsum.test.jsonl: summary1..3) or prepro's *_refs.jsonl
                     (summaries); default: ../shared/data/dialogsum/dialogsum.test.jsonl
  --limit N          only the first N dialogues (0 = all, the default)
  --variants         also score the other readings of the rule: speaker tags kept as written ("#Person1#:"),
                     dropped, and utterance length in characters instead of words
  --check-eval DIR   compare with train_t5's evaluation in DIR (generations_lead2.jsonl, scores_lead2.json,
                     and _longest3): every summary text equal, every score within 1e-5 (scores{tag}.json keeps
                     6 decimals); exit 1 on a difference

The rule (the same words as llmc/evalset.h):
  utterance  a line of the dialogue with ASCII whitespace trimmed at both ends, if anything is left; a
             speaker tag keeps its name and loses its colon ("#Person1#: Hi." -> "#Person1# Hi.")
  LEAD-2     the first two utterances
  LONGEST-3  the three utterances with the most words (runs of non-whitespace), the earlier on ties, in
             dialogue order
  joined by one space; a dialogue with fewer utterances gives all it has.
"""
import argparse
import json
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WS = " \t\n\r\v\f"  # ASCII whitespace, as the C side reads it
TAG = re.compile(r"#[^#]*#:")
KINDS = (("LEAD-2", "_lead2"), ("LONGEST-3", "_longest3"))


def utterances(dialogue, tags="nocolon"):
    out = []
    for line in dialogue.split("\n"):
        u = line.strip(WS)
        if not u:
            continue
        m = TAG.match(u)
        if m and tags != "keep":
            name, rest = m.group(0)[:-1], u[m.end():].lstrip(WS)
            u = rest if tags == "drop" else name + (" " + rest if rest else "")
        if u:
            out.append(u)
    return out


def words(u):
    return len(re.findall(f"[^{WS}]+", u))


def lead(us, n=2):
    return us[:n]


def longest(us, n=3, length=words):
    pick = sorted(sorted(range(len(us)), key=lambda i: (-length(us[i]), i))[:n])
    return [us[i] for i in pick]


def summary(dialogue, kind, tags="nocolon", length=words):
    us = utterances(dialogue, tags)
    return " ".join(lead(us) if kind == "LEAD-2" else longest(us, length=length))


def read_split(path, limit):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            refs = r["summaries"] if "summaries" in r else [v for k, v in sorted(r.items()) if re.fullmatch(r"summary\d+", k)]
            rows.append({"id": r.get("id", r.get("fname")), "dialogue": r["dialogue"], "refs": refs})
            if limit and len(rows) == limit:
                break
    return rows


def score(hyps, rows):
    """{"rouge1": mean F x 100, ..., "bleu": corpus BLEU} and the per-example ROUGE"""
    import sacrebleu
    from rouge_score import rouge_scorer
    keys = ("rouge1", "rouge2", "rougeL", "rougeLsum")
    scorer = rouge_scorer.RougeScorer(list(keys), use_stemmer=True)
    each = [scorer.score_multi(r["refs"], h) for h, r in zip(hyps, rows)]
    out = {k: 100 * sum(e[k].fmeasure for e in each) / len(each) for k in keys}
    nrefs = max(len(r["refs"]) for r in rows)
    refs = [[r["refs"][i] if i < len(r["refs"]) else None for r in rows] for i in range(nrefs)]
    out["bleu"] = sacrebleu.corpus_bleu(hyps, refs).score
    return out, each


def line(label, s):
    return f"{label:<34} R1 {s['rouge1']:6.2f}  R2 {s['rouge2']:6.2f}  RL {s['rougeL']:6.2f}  RLsum {s['rougeLsum']:6.2f}  BLEU {s['bleu']:6.2f}"


def verdict(what, ok, detail=""):
    print(f"{what:<78} {'OK' if ok else 'FAIL'}{'  ' + detail if detail else ''}")


def check_eval(d, rows):
    """train_t5's baseline files in d against this script on the same dialogues; the number of failures"""
    bad = 0
    for kind, tag in KINDS:
        gens = [json.loads(x) for x in open(os.path.join(d, f"generations{tag}.jsonl"), encoding="utf-8")]
        c = json.load(open(os.path.join(d, f"scores{tag}.json")))
        sub = rows[:len(gens)]
        want = [summary(r["dialogue"], kind) for r in sub]
        diff = [i for i, (g, w) in enumerate(zip(gens, want)) if g["generated"] != w or g["id"] != sub[i]["id"]]
        ok = not diff and len(gens) == c["examples"] == len(sub)  # --limit below the evaluation's count: a failure
        verdict(f"{kind}: {len(gens)} summaries, each == this script's", ok,
                f"first difference: {gens[diff[0]]['generated'][:60]!r} vs {want[diff[0]][:60]!r}" if diff else "")
        py, each = score(want, sub)
        worst = max(abs(c[k] - py[k]) for k in py)
        worst_each = max(abs(g[k] - 100 * e[k].fmeasure) for g, e in zip(gens, each) for k in ("rouge1", "rouge2", "rougeL", "rougeLsum"))
        # scores{tag}.json and the generations file hold 6 decimals of 100·F: 5e-7 of rounding
        ok2 = worst < 1e-5 and worst_each < 1e-5 and c.get("trivial_baseline") is True and c["kind"] == kind
        verdict(f"{kind}: scores{tag}.json, each example's ROUGE == rouge_score, sacrebleu", ok2,
                f"max diff {worst:.1e}, per example {worst_each:.1e}")
        bad += (not ok) + (not ok2)
    return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--split", default=os.path.normpath(os.path.join(REPO, "..", "shared", "data", "dialogsum", "dialogsum.test.jsonl")))
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--variants", action="store_true")
    ap.add_argument("--check-eval")
    a = ap.parse_args()
    rows = read_split(a.split, a.limit)
    if a.check_eval:
        bad = check_eval(a.check_eval, rows)
        print("all checks passed" if bad == 0 else f"{bad} check(s) FAILED")
        return 1 if bad else 0
    print(f"{a.split}: {len(rows)} dialogues; rouge_score (stemmer, best of the references, mean x 100), corpus sacrebleu")
    variants = [("", "nocolon", words)]
    if a.variants:
        variants += [(", tags as written", "keep", words), (", tags dropped", "drop", words),
                     (", length in characters", "nocolon", len)]
    for suffix, tags, length in variants:
        for kind, _ in KINDS:
            if kind == "LEAD-2" and length is len:
                continue  # LEAD-2 does not measure length
            s, _ = score([summary(r["dialogue"], kind, tags, length) for r in rows], rows)
            print(line(kind + suffix, s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
