#!/usr/bin/env python3
"""The demo's trade-off (issue 25): how a small T5 trained from scratch on DialogSum improves with minutes of
training on this machine: ROUGE-1 of its greedy summaries of validation dialogues, and how many of those
summaries differ (a model that writes one sentence for every dialogue still scores ROUGE), beside LEAD-2 (the
first two utterances) on the same dialogues. Reads a run's metrics.jsonl (train records' ms, eval records'
rouge1 and distinct: `--eval-rouge N`) and the validation references; writes a PNG and prints the table.
    python3 dev/plot_demo_tradeoff.py RUN_DIR VAL_REFS.jsonl OUT.png"""
import json
import sys

from rouge_score import rouge_scorer


def lead2(refs, n):
    """LEAD-2 on the first n dialogues: mean over dialogues of the best ROUGE-1 F over the references"""
    sc = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True)
    total = 0.0
    for r in refs[:n]:
        pred = " ".join([u for u in r["dialogue"].split("\n") if u.strip()][:2])
        total += max(sc.score(x, pred)["rouge1"].fmeasure for x in r["summaries"])
    return 100 * total / min(n, len(refs))


def main():
    run_dir, refs_path, out = sys.argv[1:4]
    recs = [json.loads(line) for line in open(f"{run_dir}/metrics.jsonl")]
    ms, minutes, rows = 0.0, {}, []
    for r in recs:
        if r["type"] == "train":
            ms += r["ms"]
            minutes[r["step"]] = ms / 60e3
        elif r["type"] == "eval" and "rouge1" in r:
            rows.append((minutes.get(r["step"], 0.0), r["step"], r["rouge1"], r.get("distinct", 0)))
    n = 100
    refs = [json.loads(line) for line in open(refs_path)]
    base = lead2(refs, n)
    print(f"{'minutes':>8} {'step':>6} {'ROUGE-1':>8} {'distinct':>9}   (LEAD-2 on the same {n}: {base:.2f})")
    for m, s, r1, d in rows:
        print(f"{m:8.2f} {s:6d} {r1:8.2f} {d:9d}")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r[0] for r in rows], [r[2] for r in rows], "o-", label="ROUGE-1 (greedy, 100 validation dialogues)")
    ax.axhline(base, color="gray", ls="--", label=f"LEAD-2 on the same dialogues ({base:.1f})")
    ax.set_xlabel("minutes of training (this 2-core machine)")
    ax.set_ylabel("ROUGE-1")
    ax2 = ax.twinx()
    ax2.plot([r[0] for r in rows], [r[3] for r in rows], "s-", color="tab:red", label="distinct summaries of 100")
    ax2.set_ylabel("distinct summaries (of 100)")
    ax2.set_ylim(0, 100)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper left", fontsize=8)
    ax.set_title("small T5 from scratch on DialogSum (the demo's model)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
