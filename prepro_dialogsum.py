#!/usr/bin/env python3
"""DialogSum -> pre-tokenized example files for train_t5 / train_t5cu (format: llmc/examples.h).

    python3 prepro_dialogsum.py                        # ../shared/data/dialogsum, official splits
    python3 prepro_dialogsum.py --split 80/10/10       # one pool, re-split with a seed
    python3 prepro_dialogsum.py --hf-dataset knkarthick/dialogsum   # from the hub (needs `datasets`)

Writes into --out-dir (default out/dialogsum):
    {train,val,test}.bin         source = prompt(dialogue) + </s>, target = summary + </s>
    {train,val,test}_refs.jsonl  one line per example, in .bin order: id, dialogue, every human summary,
                                 topic — the references for ROUGE/BLEU (all three for official test)
    meta.json                    prompt, tokenizer, lengths and counts of this preprocessing

Input: a directory with dialogsum.{train,dev,test}.jsonl (the official release) or
{train,validation,test}.csv (the layout of the knkarthick/dialogsum dataset), or the hub dataset.
Every file is validated before anything is written; each output is written to a temporary file
and renamed, so an error never leaves a half-written output behind.
"""
import argparse
import csv
import io
import json
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "dev"))
from examples import write_examples  # noqa: E402  (dev/examples.py)

REPO = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.join(REPO, "..", "shared", "data", "dialogsum")
DEFAULT_SPM = os.path.join(REPO, "..", "shared", "data", "t5", "spiece.model")
DEFAULT_PROMPT = "Summarize the following conversation.\n\n{dialogue}\n\nSummary: "
EOS_ID = 1
SPLITS = ("train", "val", "test")
JSONL_FILES = {"train": "dialogsum.train.jsonl", "val": "dialogsum.dev.jsonl", "test": "dialogsum.test.jsonl"}
CSV_FILES = {"train": "train.csv", "val": "validation.csv", "test": "test.csv"}
HUB_SPLITS = {"train": "train", "val": "validation", "test": "test"}


class PreproError(Exception):
    """A problem with the input, reported as `error: ...` and exit status 1."""


# ----------------------------------------------------------------------------- reading

def make_record(raw, where):
    """raw: a dict from JSON/CSV/hub -> {id, dialogue, summaries, topic}; checks the fields."""
    if not isinstance(raw, dict):
        raise PreproError(f"{where}: expected an object with dialogue and summary fields")
    rid = raw.get("fname", raw.get("id"))
    if rid is None or str(rid).strip() == "":
        raise PreproError(f"{where}: missing field 'fname' (or 'id')")
    dialogue = raw.get("dialogue")
    if dialogue is None:
        raise PreproError(f"{where}: missing field 'dialogue'")
    if not isinstance(dialogue, str) or dialogue.strip() == "":
        raise PreproError(f"{where}: empty dialogue")
    keys = ["summary"] if "summary" in raw else [k for k in ("summary1", "summary2", "summary3") if k in raw]
    if not keys:
        raise PreproError(f"{where}: missing field 'summary' (or 'summary1'..'summary3')")
    summaries = []
    for k in keys:
        s = raw[k]
        if not isinstance(s, str) or s.strip() == "":
            raise PreproError(f"{where}: empty '{k}'")
        summaries.append(s)
    topic = raw.get("topic", raw.get("topic1", ""))
    return {"id": str(rid), "dialogue": dialogue, "summaries": summaries, "topic": topic if isinstance(topic, str) else ""}


def decode_line(raw, where):
    """one line of a text file as str; a byte-order mark at the start of the file is dropped"""
    try:
        return raw.decode("utf-8-sig" if where.endswith(":1") else "utf-8")
    except UnicodeDecodeError as e:
        raise PreproError(f"{where}: not UTF-8 text (invalid byte 0x{raw[e.start]:02x} at column {e.start + 1})") from None


def read_jsonl(path):
    records = []
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            line = decode_line(raw, f"{path}:{n}")
            if line.strip() == "":
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as e:
                raise PreproError(f"{path}:{n}: malformed JSON line ({e.msg.removesuffix(' at')} at column {e.colno})") from None
            records.append(make_record(raw, f"{path}:{n}"))
    if not records:
        raise PreproError(f"{path}: no records")
    return records


def read_csv(path):
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise PreproError(f"{path}:{line}: not UTF-8 text (invalid byte 0x{data[e.start]:02x})") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        rows = list(reader)
    except csv.Error as e:
        raise PreproError(f"{path}:{reader.line_num}: malformed CSV ({e})") from None
    if not rows:
        raise PreproError(f"{path}: no records")
    return [make_record(r, f"{path}:{n + 2}") for n, r in enumerate(rows)]


def read_local(data_dir):
    if not os.path.isdir(data_dir):
        raise PreproError(f"{data_dir}: no such directory (give --data-dir, or --hf-dataset when online)")
    for files, reader in ((JSONL_FILES, read_jsonl), (CSV_FILES, read_csv)):
        paths = {s: os.path.join(data_dir, f) for s, f in files.items()}
        present = [p for p in paths.values() if os.path.isfile(p)]
        if not present:
            continue
        missing = [p for p in paths.values() if not os.path.isfile(p)]
        if missing:
            raise PreproError(f"{data_dir}: missing {', '.join(os.path.basename(p) for p in missing)}")
        return {s: reader(p) for s, p in paths.items()}
    raise PreproError(f"{data_dir}: holds neither {', '.join(JSONL_FILES.values())} nor {', '.join(CSV_FILES.values())}")


def read_hub(name):
    try:
        import datasets  # only for --hf-dataset
    except ImportError:
        raise PreproError("--hf-dataset needs the `datasets` package (python3 -m pip install datasets)") from None
    try:
        ds = datasets.load_dataset(name)
    except Exception as e:  # network, missing dataset: report and stop
        raise PreproError(f"{name}: cannot load from the Hugging Face hub: {e}") from None
    return {s: [make_record(dict(r), f"{name}[{h}][{i}]") for i, r in enumerate(ds[h])] for s, h in HUB_SPLITS.items()}


# ----------------------------------------------------------------------------- splitting

def parse_ratios(text):
    try:
        parts = [float(x) for x in text.split("/")]
    except ValueError:
        parts = []
    if len(parts) != 3 or min(parts) < 0 or sum(parts) <= 0 or parts[0] <= 0:
        raise PreproError(f"--split must be 'official' or three ratios train/val/test like 80/10/10, got '{text}'")
    total = sum(parts)
    return [p / total for p in parts]


def ratio_split(records, ratios, seed):
    """Pools every record, groups records with the same dialogue text (so no dialogue lands in two
    splits), shuffles the groups with `seed` and cuts them by the ratios (counted in records)."""
    groups = {}
    for r in records:
        groups.setdefault(" ".join(r["dialogue"].split()), []).append(r)
    order = list(groups.values())
    random.Random(seed).shuffle(order)
    n = len(records)
    bounds = [round(n * ratios[0]), round(n * (ratios[0] + ratios[1]))]
    out = {s: [] for s in SPLITS}
    seen = 0
    for g in order:
        split = "train" if seen < bounds[0] else ("val" if seen < bounds[1] else "test")
        out[split].extend(g)
        seen += len(g)
    return out


# ----------------------------------------------------------------------------- tokenizing

class Tokenizer:
    """T5's SentencePiece model from a local spiece.model, or a hub tokenizer name (online)."""

    def __init__(self, spec):
        if os.path.isfile(spec):
            try:
                import sentencepiece
            except ImportError:
                raise PreproError("the tokenizer needs `sentencepiece` (python3 -m pip install sentencepiece)") from None
            try:
                self.sp = sentencepiece.SentencePieceProcessor(model_file=spec)
            except Exception as e:
                raise PreproError(f"{spec}: not a SentencePiece model ({e})") from None
            self.encode_batch = lambda texts: self.sp.encode(texts)
        elif os.path.exists(spec) or spec.endswith(".model"):
            raise PreproError(f"{spec}: no such tokenizer file")
        else:
            try:
                from transformers import AutoTokenizer
                tok = AutoTokenizer.from_pretrained(spec)
            except Exception as e:
                raise PreproError(f"{spec}: cannot load the tokenizer ({e})") from None
            self.encode_batch = lambda texts: [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        self.name = spec


def fit(ids, max_len):
    """ids + </s>, cut to max_len with </s> kept last (as the HF tokenizer truncates); returns (ids, cut?)."""
    cut = len(ids) + 1 > max_len
    return (ids[: max_len - 1] if cut else ids) + [EOS_ID], cut


def progress(done, total, label):
    width = 30
    filled = width * done // max(total, 1)
    sys.stderr.write(f"\r{label:>6} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def tokenize_split(name, records, tok, args):
    """-> list of (source ids, target ids) and truncation counts. The target is the first summary."""
    examples, cut_src, cut_tgt = [], 0, 0
    chunk = 512
    for lo in range(0, len(records), chunk):
        part = records[lo: lo + chunk]
        srcs = tok.encode_batch([args.prompt.replace("{dialogue}", r["dialogue"]) for r in part])
        tgts = tok.encode_batch([r["summaries"][0] for r in part])
        for s, t in zip(srcs, tgts):
            s, cs = fit(list(s), args.max_source_len)
            t, ct = fit(list(t), args.max_target_len)
            cut_src += cs
            cut_tgt += ct
            examples.append((s, t))
        progress(lo + len(part), len(records), name)
    return examples, cut_src, cut_tgt


# ----------------------------------------------------------------------------- writing

def write_text_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def refs_jsonl(records):
    return "".join(json.dumps({"id": r["id"], "dialogue": r["dialogue"], "summaries": r["summaries"],
                               "topic": r["topic"]}, ensure_ascii=False) + "\n" for r in records)


def percentiles(values):
    v = sorted(values)
    pick = lambda q: v[min(len(v) - 1, int(q * (len(v) - 1) + 0.5))]  # noqa: E731
    return {"mean": round(sum(v) / len(v), 1), "p50": pick(0.5), "p95": pick(0.95), "p99": pick(0.99), "max": v[-1]}


def summarize(stats):
    print(f"{'split':<6} {'examples':>8} {'src mean':>8} {'p50':>5} {'p95':>5} {'p99':>5} {'max':>5} "
          f"{'tgt mean':>8} {'p95':>5} {'max':>5} {'src cut':>7} {'tgt cut':>7}")
    for name, s in stats.items():
        a, b = s["source_len"], s["target_len"]
        print(f"{name:<6} {s['examples']:>8} {a['mean']:>8} {a['p50']:>5} {a['p95']:>5} {a['p99']:>5} {a['max']:>5} "
              f"{b['mean']:>8} {b['p95']:>5} {b['max']:>5} {s['truncated_sources']:>7} {s['truncated_targets']:>7}")
    print("(lengths in tokens, </s> included; 'cut' = truncated to --max-source-len / --max-target-len)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=DEFAULT_DATA, help="local DialogSum directory (default %(default)s)")
    p.add_argument("--hf-dataset", default=None, help="read this hub dataset instead, e.g. knkarthick/dialogsum")
    p.add_argument("--tokenizer", default=DEFAULT_SPM, help="spiece.model path, or a hub tokenizer name (default %(default)s)")
    p.add_argument("--out-dir", default=os.path.join("out", "dialogsum"))
    p.add_argument("--split", default="official", help="'official' or ratios like 80/10/10 (default %(default)s)")
    p.add_argument("--seed", type=int, default=42, help="seed of the ratio split (default %(default)s)")
    p.add_argument("--prompt", default=DEFAULT_PROMPT, help="source template with {dialogue} (default: FLAN's summarize prompt)")
    p.add_argument("--max-source-len", type=int, default=512)
    p.add_argument("--max-target-len", type=int, default=128)
    p.add_argument("--limit", type=int, default=0, help="keep only the first N records of each input split (0 = all)")
    args = p.parse_args(argv)
    try:
        run(args)
    except PreproError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def run(args):
    if "{dialogue}" not in args.prompt:
        raise PreproError("--prompt must contain {dialogue}")
    if args.max_source_len < 2 or args.max_target_len < 2:
        raise PreproError("--max-source-len and --max-target-len must be at least 2 (text + </s>)")
    ratios = None if args.split == "official" else parse_ratios(args.split)
    tok = Tokenizer(args.tokenizer)
    data = read_hub(args.hf_dataset) if args.hf_dataset else read_local(args.data_dir)
    if args.limit:
        data = {s: r[: args.limit] for s, r in data.items()}
    if ratios:
        data = ratio_split(data["train"] + data["val"] + data["test"], ratios, args.seed)
    empty = [s for s in SPLITS if not data[s]]
    if empty:
        raise PreproError(f"split {args.split} leaves {', '.join(empty)} empty: use more data or other ratios")
    encoded, stats = {}, {}
    for name in SPLITS:
        ex, cs, ct = tokenize_split(name, data[name], tok, args)
        encoded[name] = ex
        stats[name] = {"examples": len(ex), "truncated_sources": cs, "truncated_targets": ct,
                       "source_len": percentiles([len(s) for s, _ in ex]),
                       "target_len": percentiles([len(t) for _, t in ex])}
    os.makedirs(args.out_dir, exist_ok=True)
    for name in SPLITS:  # everything was read and checked above: only writing is left
        write_examples(os.path.join(args.out_dir, f"{name}.bin"), encoded[name])
        write_text_atomic(os.path.join(args.out_dir, f"{name}_refs.jsonl"), refs_jsonl(data[name]))
    meta = {"source": args.hf_dataset or os.path.abspath(args.data_dir), "split": args.split, "seed": args.seed,
            "prompt": args.prompt, "tokenizer": args.tokenizer, "eos_id": EOS_ID,
            "max_source_len": args.max_source_len, "max_target_len": args.max_target_len, "splits": stats}
    write_text_atomic(os.path.join(args.out_dir, "meta.json"), json.dumps(meta, indent=2) + "\n")
    summarize(stats)
    print(f"wrote {', '.join(f'{s}.bin' for s in SPLITS)}, the *_refs.jsonl references and meta.json to {args.out_dir}")


if __name__ == "__main__":
    sys.exit(main())
