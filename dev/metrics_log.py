"""Reads the metrics log that train_t5 writes into its run directory (OUT/metrics.jsonl).

Each line is one JSON object with a "type": start/resume (run events), train (one optimizer step:
loss, lr, grad_norm, ms, tokens_per_s, tokens, skipped), eval (val_loss, and ROUGE when computed),
end/stop. A resumed run keeps the records up to its checkpoint, so steps are unique per type.
"""
import json
import os


def read_metrics(path):
    """-> list of records; a directory is taken as a run directory (its metrics.jsonl)."""
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.jsonl")
    records = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not a JSON line ({e.msg})") from None
            if not isinstance(rec, dict) or "type" not in rec or "step" not in rec:
                raise ValueError(f"{path}:{n}: a record needs 'type' and 'step'")
            records.append(rec)
    return records


def series(records, kind, key):
    """(steps, values) of `key` over the records of type `kind`, skipping missing/null values."""
    pts = [(r["step"], r[key]) for r in records if r["type"] == kind and r.get(key) is not None]
    return [p[0] for p in pts], [p[1] for p in pts]
