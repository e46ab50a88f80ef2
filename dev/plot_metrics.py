#!/usr/bin/env python3
"""PNG plots of a train_t5 run: train/val loss, learning rate, throughput (and ROUGE if logged).

    python3 dev/plot_metrics.py out/dialogsum_run            # writes out/dialogsum_run/plots/*.png
    python3 dev/plot_metrics.py RUN_DIR --out-dir DIR
"""
import argparse
import os
import sys

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from metrics_log import read_metrics, series  # noqa: E402

PLOTS = [  # file, title, y label, [(type, key, legend)]
    ("loss.png", "loss", "cross-entropy (nats/token)", [("train", "loss", "train"), ("eval", "val_loss", "validation")]),
    ("lr.png", "learning rate", "lr", [("train", "lr", "lr")]),
    ("throughput.png", "throughput", "real tokens / s", [("train", "tokens_per_s", "train")]),
    ("grad_norm.png", "gradient norm (before clipping)", "global L2 norm", [("train", "grad_norm", "train")]),
    ("rouge.png", "validation ROUGE", "F1 x 100", [("eval", "rouge1", "ROUGE-1"), ("eval", "rouge2", "ROUGE-2"),
                                                   ("eval", "rougeL", "ROUGE-L"), ("eval", "rougeLsum", "ROUGE-Lsum")]),
]


def plot_one(records, path, title, ylabel, lines):
    drawn = 0
    fig, ax = plt.subplots(figsize=(7, 4))
    for kind, key, label in lines:
        x, y = series(records, kind, key)
        if x:
            ax.plot(x, y, marker="o" if len(x) < 30 else None, markersize=3, label=label)
            drawn += 1
    if drawn:
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        tmp = path + ".tmp.png"
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, path)
    plt.close(fig)
    return drawn > 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run directory (holds metrics.jsonl) or a metrics.jsonl file")
    p.add_argument("--out-dir", default=None, help="where the PNGs go (default RUN/plots)")
    args = p.parse_args()
    try:
        records = read_metrics(args.run)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    base = args.run if os.path.isdir(args.run) else os.path.dirname(os.path.abspath(args.run))
    out = args.out_dir or os.path.join(base, "plots")
    os.makedirs(out, exist_ok=True)
    written = [f for f, title, yl, lines in PLOTS if plot_one(records, os.path.join(out, f), title, yl, lines)]
    if not written:
        print(f"error: {args.run}: no train or eval records to plot", file=sys.stderr)
        return 1
    print(f"wrote {', '.join(written)} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
