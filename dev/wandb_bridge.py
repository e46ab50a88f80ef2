#!/usr/bin/env python3
"""Sends a train_t5 run's metrics log to Weights & Biases, as the users' PyTorch workflow logs it.

    python3 dev/wandb_bridge.py out/dialogsum_run --project t5c-dialogsum
    WANDB_MODE=offline python3 dev/wandb_bridge.py out/dialogsum_run     # local files, sync later
    python3 dev/wandb_bridge.py out/dialogsum_run --follow               # stream while training

train records go under train/*, eval records under val/*, all against the optimizer step. Without
--follow the whole log is sent once; with --follow the bridge keeps reading new lines until the
run writes its end/stop record (or --timeout seconds pass without a new line).
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from metrics_log import parse_record, read_metrics  # noqa: E402

TRAIN_KEYS = ("loss", "lr", "grad_norm", "ms", "tokens_per_s", "tokens", "skipped", "epoch")


def to_wandb(rec):
    """-> (step, dict) for W&B, or None for run events."""
    if rec["type"] == "train":
        return rec["step"], {f"train/{k}": rec[k] for k in TRAIN_KEYS if rec.get(k) is not None}
    if rec["type"] == "eval":
        return rec["step"], {f"val/{k}": v for k, v in rec.items() if k not in ("type", "step") and v is not None}
    return None


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
        run.summary["records_sent"] = sent
        run.finish()
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"sent {sent} records from {path} to W&B project {args.project} (mode {os.environ.get('WANDB_MODE', 'online')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
