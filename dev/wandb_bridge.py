#!/usr/bin/env python3
"""Sends a train_t5 run's metrics log to Weights & Biases, as the users' PyTorch workflow logs it.

    python3 dev/wandb_bridge.py out/dialogsum_run --project t5c-dialogsum
    WANDB_MODE=offline python3 dev/wandb_bridge.py out/dialogsum_run     # local files, sync later
    python3 dev/wandb_bridge.py out/dialogsum_run --follow               # stream while training

train records go under train/*, eval records under val/*, all against the optimizer step. Without
--follow the whole log is sent once; with --follow the bridge keeps reading new lines until the
run writes its end/stop record (or --timeout seconds pass without a new line).

The run's config gets what its start record says (params, trainable, total_steps: full fine-tune
or LoRA, as peft's print_trainable_parameters counts them); its summary what its end record says
(peak_mib, peak_memory, padding_fraction, finished) and, when the run evaluated with --eval-split,
the scores of OUT/eval: scores.json under test/*, scores_baseline.json (the zero-shot model) under
zero_shot/*, scores_compare.json under compare/*, and the trivial baselines every evaluation scores,
scores_lead2.json under lead2/* and scores_longest3.json under longest3/* (ROUGE-1/2/L/Lsum x 100, BLEU,
examples, kind).
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from metrics_log import parse_record, read_metrics  # noqa: E402

TRAIN_KEYS = ("loss", "lr", "grad_norm", "ms", "tokens_per_s", "tokens", "skipped", "epoch")
START_KEYS = ("params", "trainable", "total_steps")
END_KEYS = ("peak_mib", "peak_memory", "padding_fraction")
SCORE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "examples", "kind", "model", "trainable_params")
SCORE_FILES = (("scores.json", "test"), ("scores_baseline.json", "zero_shot"), ("scores_compare.json", "compare"),
               ("scores_lead2.json", "lead2"), ("scores_longest3.json", "longest3"))


def to_wandb(rec):
    """-> (step, dict) for W&B, or None for run events."""
    if rec["type"] == "train":
        return rec["step"], {f"train/{k}": rec[k] for k in TRAIN_KEYS if rec.get(k) is not None}
    if rec["type"] == "eval":
        return rec["step"], {f"val/{k}": v for k, v in rec.items() if k not in ("type", "step") and v is not None}
    return None


def run_event(rec, run):
    """start/resume -> the run's config; end/stop -> its summary"""
    if rec["type"] in ("start", "resume"):
        run.config.update({k: rec[k] for k in START_KEYS if rec.get(k) is not None}, allow_val_change=True)
    elif rec["type"] in ("end", "stop"):
        for k in END_KEYS:
            if rec.get(k) is not None:
                run.summary[k] = rec[k]
        run.summary["finished"] = rec["type"] == "end"


def eval_scores(run_dir):
    """{"test/rouge1": ..., "zero_shot/bleu": ...} from OUT/eval/scores*.json; a file that is absent is
    skipped, one that is not a JSON object is an error naming it"""
    out = {}
    for name, prefix in SCORE_FILES:
        path = os.path.join(run_dir, "eval", name)
        if not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                scores = json.load(f)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: not a scores file ({e})")
        if not isinstance(scores, dict):
            raise ValueError(f"{path}: not a scores file (not a JSON object)")
        out.update({f"{prefix}/{k}": scores[k] for k in SCORE_KEYS if scores.get(k) is not None})
    return out


def follow_lines(path, timeout):
    """Yields records as the trainer appends them, until an end/stop record or `timeout` idle seconds."""
    pos, n, idle = 0, 0, 0.0
    while idle < timeout:
        if os.path.exists(path):
            with open(path, "rb") as f:
                f.seek(pos)
                for raw in iter(f.readline, b""):
                    if not raw.endswith(b"\n"):
                        break  # the trainer is mid-write: read it next time
                    pos, n, idle = pos + len(raw), n + 1, 0.0
                    rec = parse_record(raw, path, n)
                    if rec is None:
                        continue
                    yield rec
                    if rec["type"] in ("end", "stop"):
                        return
        time.sleep(1.0)
        idle += 1.0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run directory (holds metrics.jsonl)")
    p.add_argument("--project", default="t5c-dialogsum")
    p.add_argument("--name", default=None, help="W&B run name (default: the run directory's name)")
    p.add_argument("--follow", action="store_true", help="stream new records while the run trains")
    p.add_argument("--timeout", type=float, default=600.0, help="--follow: stop after this many idle seconds")
    args = p.parse_args()
    try:
        import wandb
    except ImportError:
        print("error: the bridge needs `wandb` (python3 -m pip install wandb)", file=sys.stderr)
        return 1
    path = os.path.join(args.run, "metrics.jsonl")
    try:
        records = follow_lines(path, args.timeout) if args.follow else read_metrics(args.run)
        run = wandb.init(project=args.project, name=args.name or os.path.basename(os.path.abspath(args.run)),
                         dir=args.run, config={"run_dir": os.path.abspath(args.run)})
        sent = 0
        for rec in records:
            item = to_wandb(rec)
            if item:
                run.log(item[1], step=item[0])
                sent += 1
            else:
                run_event(rec, run)
        for k, v in eval_scores(args.run).items():
            run.summary[k] = v
        run.summary["records_sent"] = sent
        run.finish()
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"sent {sent} records from {path} to W&B project {args.project} (mode {os.environ.get('WANDB_MODE', 'online')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
