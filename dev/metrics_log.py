"""Reads the metrics log that train_t5 writes into its run directory (OUT/metrics.jsonl).

Each line is one JSON object with a "type": start/resume (run events), train (one optimizer step:
loss, lr, grad_norm, ms, tokens_per_s, tokens, skipped), eval (val_loss, and ROUGE when computed),
end/stop. A resumed run keeps the records up to its checkpoint, so steps are unique per type.
"""
import json
import os


def parse_record(raw, path, n):
    """line n of path (bytes) -> its record, or None for a blank line; ValueError names the place"""
    try:
        line = raw.decode("utf-8").strip()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}:{n}: not UTF-8 text (invalid byte 0x{raw[e.start]:02x})") from None
    if not line:
        return None
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{n}: not a JSON line ({e.msg})") from None
    if not isinstance(rec, dict) or not isinstance(rec.get("type"), str) or type(rec.get("step")) is not int:
        raise ValueError(f"{path}:{n}: a record needs a string 'type' and an integer 'step'")
    return rec


def read_metrics(path):
    """-> list of records; a directory is taken as a run directory (its metrics.jsonl). A last line
    without its newline is a record still being written (or cut by a kill): it is left out."""
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.jsonl")
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    records = (parse_record(raw, path, n) for n, raw in enumerate(lines[:-1], 1))  # lines[-1]: empty or torn
    return [r for r in records if r is not None]


def series(records, kind, key):
    """(steps, values) of `key` over the records of type `kind`, skipping missing/null values."""
    pts = [(r["step"], r[key]) for r in records if r["type"] == kind and r.get(key) is not None]
    return [p[0] for p in pts], [p[1] for p in pts]
