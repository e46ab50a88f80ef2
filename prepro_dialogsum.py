#!/usr/bin/env python3
"""Dialogues -> pre-tokenized example files for train_t5 / train_t5cu (format: llmc/examples.h).
DialogSum and SAMSum need no flags; your own data names its fields (docs/own-data.md).

    python3 prepro_dialogsum.py                        # ../shared/data/dialogsum, official splits
    python3 prepro_dialogsum.py --split 80/10/10       # one pool, re-split with a seed
    python3 prepro_dialogsum.py --hf-dataset knkarthick/dialogsum   # from the hub (needs `datasets`)
    python3 prepro_dialogsum.py --data-dir samsum --out-dir out/samsum   # SAMSum's {train,val,test}.json
    python3 prepro_dialogsum.py --input mine.csv --source-field text --target-field summary --out-dir out/mine
                                                       # one file of your own: seeded 80/10/10 split
    python3 prepro_dialogsum.py --train-file a.jsonl --val-file b.jsonl --test-file c.jsonl --out-dir out/mine

Writes into --out-dir (default out/dialogsum, or out/STEM for --input/--train-file STEM.ext):
    {train,val,test}.bin         source = prompt(dialogue) + </s>, target = first summary + </s>
    {train,val,test}_refs.jsonl  one line per example, in .bin order: id, dialogue, every reference summary,
                                 topic -- the references for ROUGE/BLEU (all three for official test)
    meta.json                    inputs (format, fields, skipped rows), prompt, tokenizer, lengths, counts

Input: --data-dir DIR holding one file per split (dialogsum.{train,dev,test}.jsonl, or
{train,val|validation|dev,test}.{jsonl,json,csv,tsv}: the knkarthick/dialogsum CSVs, SAMSum's JSON),
--input FILE (split by --split, default 80/10/10), --train-file/--val-file/--test-file, or a hub dataset.
A file is JSON Lines, a JSON array of objects, CSV or TSV: by its extension (.jsonl/.ndjson, .csv, .tsv),
else by its first character ('[' a JSON array, '{' JSON Lines, anything else CSV); --format overrides.
Fields: --source-field (default dialogue), --target-field A[,B...] (default summary, else summary1,
summary2, ...: the first is the training target, all are references), --id-field (default fname, else
id, else FILESTEM_N). A bad row (unparsable, a field missing, not text, empty) is named on stderr
and skipped; a file with no usable row is refused. Line breaks (\\r\\n, \\r, U+2028, U+2029, \\f) become
\\n in the *_refs.jsonl texts; the token ids are those of the original text, which T5's tokenizer
reads the same way (every one of those is a space to it). Everything is read and checked before
anything is written; each output is written to a temporary file and renamed.
"""
import argparse
import csv
import io
import json
import os
import random
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "dev"))
from examples import write_examples  # noqa: E402  (dev/examples.py)

REPO = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.normpath(os.path.join(REPO, "..", "shared", "data", "dialogsum"))
DEFAULT_SPM = os.path.normpath(os.path.join(REPO, "..", "shared", "data", "t5", "spiece.model"))
DEFAULT_PROMPT = "Summarize the following conversation.\n\n{dialogue}\n\nSummary: "
EOS_ID = 1
SPLITS = ("train", "val", "test")
# the file of each split in a --data-dir: DialogSum's names, then {name}.{ext} (the knkarthick/dialogsum
# CSVs are train/validation/test.csv, SAMSum's release train/val/test.json)
SPLIT_NAMES = {"train": ("train",), "val": ("val", "validation", "dev"), "test": ("test",)}
DIALOGSUM_FILES = {"train": "dialogsum.train.jsonl", "val": "dialogsum.dev.jsonl", "test": "dialogsum.test.jsonl"}
EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv"}  # .json: by content
FORMAT_NAMES = {"jsonl": "JSON Lines", "json": "a JSON array", "csv": "CSV", "tsv": "TSV"}
HUB_SPLITS = {"train": "train", "val": "validation", "test": "test"}
SHOW_BAD = 50  # bad rows named on stderr per file; the rest are counted
# Line breaks as written into *_refs.jsonl (what scoring and the comparison reports show). T5's
# spiece.model (nmt_nfkc normalizer) reads each of these as a space, exactly like \n, so the texts
# the tokenizer sees are unchanged in ids (dev/test_prepro.py proves it against sentencepiece). Not
# here, because the tokenizer does NOT read them as a space: \x0b, \x1c..\x1f (deleted by it) and
# U+0085 (<unk>); they stay as they are.
LINE_BREAKS = re.compile("\r\n|[\r\u2028\u2029\x0c]")


class PreproError(Exception):
    """A problem that stops the run, reported as `error: ...` and exit status 1."""


class BadRow(Exception):
    """A row that is skipped: named on stderr, counted in meta.json."""


def normalize_breaks(text):
    """\\r\\n, \\r, U+2028, U+2029, \\f -> \\n (see LINE_BREAKS: the tokenizer's ids do not change)"""
    return LINE_BREAKS.sub("\n", text)


# ----------------------------------------------------------------------------- reading a file
# A reader returns rows (where, value, problem): `where` names the file and line ("FILE:LINE", and
# the record number in a JSON array), `value` is the parsed record (None when the row could not be
# parsed, then `problem` says why). Problems of the whole file raise PreproError.

def detect_format(path, head, forced):
    """-> (format, why): --format, else the extension, else the first non-blank character"""
    if forced != "auto":
        return forced, "--format"
    ext = os.path.splitext(path)[1].lower()
    if ext in EXTENSIONS:
        return EXTENSIONS[ext], f"extension {ext}"
    first = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if first == b"[":
        return "json", "starts with '['"
    if first == b"{":
        return "jsonl", "starts with '{'"
    return "csv", f"{'extension ' + ext if ext else 'no extension'}, starts with neither '[' nor '{{'"


def decode_text(data, path):
    """a whole file as str (a byte-order mark dropped); not UTF-8 refuses the file"""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise PreproError(f"{path}:{line}: not UTF-8 text (invalid byte 0x{data[e.start]:02x})") from None


def read_jsonl(path, data):
    """one record per line; a line that is not UTF-8 or not JSON is a bad row"""
    rows = []
    for n, raw in enumerate(data.split(b"\n"), 1):
        where = f"{path}:{n}"
        try:
            line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
        except UnicodeDecodeError as e:
            rows.append((where, None, f"not UTF-8 text (invalid byte 0x{raw[e.start]:02x} at column {e.start + 1})"))
            continue
        if line.strip() == "":
            continue
        try:
            rows.append((where, json.loads(line), None))
        except json.JSONDecodeError as e:
            rows.append((where, None, f"malformed JSON line ({e.msg} at column {e.colno})"))
    return rows


JSON_SPACE = re.compile(r"[ \t\n\r]*")


def read_json_array(path, data):
    """[record, record, ...], element by element so that each is named by its line; malformed JSON
    refuses the file (where one element ends and the next begins is then unknown)"""
    text = decode_text(data, path)
    dec = json.JSONDecoder()
    at = lambda i: text.count("\n", 0, i) + 1  # noqa: E731
    i = JSON_SPACE.match(text, 0).end()
    if text[i:i + 1] != "[":
        raise PreproError(f"{path}:{at(i)}: not a JSON array (it must start with '[')")
    i = JSON_SPACE.match(text, i + 1).end()
    rows, line, pos = [], 1, 0
    while text[i:i + 1] != "]":
        line, pos = line + text.count("\n", pos, i), i
        try:
            value, end = dec.raw_decode(text, i)
        except json.JSONDecodeError as e:
            raise PreproError(f"{path}:{e.lineno}: malformed JSON ({e.msg} at column {e.colno})") from None
        rows.append((f"{path}:{line} (record {len(rows) + 1})", value, None))
        i = JSON_SPACE.match(text, end).end()
        if text[i:i + 1] == ",":
            i = JSON_SPACE.match(text, i + 1).end()
        elif text[i:i + 1] != "]":
            raise PreproError(f"{path}:{at(i)}: malformed JSON array (expected ',' or ']' after record {len(rows)})")
    if JSON_SPACE.match(text, i + 1).end() != len(text):
        raise PreproError(f"{path}:{at(i + 1)}: text after the JSON array's closing ']'")
    return rows


def read_csv(path, data, delimiter):
    """a header row, then one record per row (quoted fields may hold line breaks): a row is named by
    the line it starts on; a row with another number of fields than the header is a bad row.
    -> (rows, the header's names)"""
    text = decode_text(data, path)
    csv.field_size_limit(1 << 30)  # the default (128 KiB) would refuse a long dialogue
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows = []
    try:
        header = next(reader, None)
        while header == []:
            header = next(reader, None)
        if header is None:
            return rows, []
        header = [h.strip() for h in header]
        dup = sorted({h for h in header if header.count(h) > 1})
        if dup:
            raise PreproError(f"{path}:{reader.line_num}: the header names {', '.join(repr(h) for h in dup)} twice")
        done = reader.line_num
        for row in reader:
            where, done = f"{path}:{done + 1}", reader.line_num
            if not row:
                continue
            if len(row) != len(header):
                rows.append((where, None, f"{len(row)} fields, the header has {len(header)}"))
                continue
            rows.append((where, dict(zip(header, row)), None))
    except csv.Error as e:
        raise PreproError(f"{path}:{reader.line_num}: malformed {'TSV' if delimiter == chr(9) else 'CSV'} ({e})") from None
    return rows, header


def read_rows(path, forced_format):
    """-> (rows, the field names its records use, format, why the format)"""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise PreproError(f"{path}: cannot read ({e.strerror})") from None
    fmt, why = detect_format(path, data[:4096], forced_format)
    if fmt in ("jsonl", "json"):
        rows = read_jsonl(path, data) if fmt == "jsonl" else read_json_array(path, data)
        return rows, field_names(rows), fmt, why
    rows, header = read_csv(path, data, "\t" if fmt == "tsv" else ",")
    return rows, header, fmt, why


# ----------------------------------------------------------------------------- fields and records

def field_names(rows):
    """every field name the rows' records use, in order of first appearance"""
    names = {}
    for _, value, _ in rows:
        if isinstance(value, dict):
            names.update(dict.fromkeys(value))
    return list(names)


def resolve_fields(name, keys, args):
    """-> {source, targets, id, topic} for a file whose records use the field names `keys`; a field
    that no record has refuses the file (a typo in a flag, or data that needs the flag)"""
    have = f"its fields: {', '.join(repr(k) for k in keys[:20])}{' ...' if len(keys) > 20 else ''}" if keys else "no fields"
    source = args.source_field or "dialogue"
    if source not in keys:
        hint = "" if args.source_field else "; name the dialogue's field with --source-field"
        raise PreproError(f"{name}: no record has the field '{source}' ({have}){hint}")
    if args.target_field:
        targets = args.target_field
        missing = [t for t in targets if t not in keys]
        if missing:
            raise PreproError(f"{name}: no record has the field{'s' if len(missing) > 1 else ''} "
                              f"{', '.join(repr(t) for t in missing)} ({have})")
    elif "summary" in keys:
        targets = ["summary"]
    else:
        targets = sorted((k for k in keys if re.fullmatch(r"summary[1-9][0-9]*", k)), key=lambda k: int(k[7:]))
        if not targets:
            raise PreproError(f"{name}: no record has the field 'summary' (or summary1, summary2, ...) ({have}); "
                              "name the summary's field with --target-field")
    if args.id_field and args.id_field not in keys:
        raise PreproError(f"{name}: no record has the field '{args.id_field}' ({have})")
    rid = args.id_field or next((k for k in ("fname", "id") if k in keys), None)
    topic = next((k for k in ("topic", "topic1") if k in keys), None)
    return {"source": source, "targets": targets, "id": rid, "topic": topic}


def kind(v):
    return {dict: "an object", list: "a list", bool: "true/false", int: "a number", float: "a number",
            type(None): "null"}.get(type(v), type(v).__name__)


def text_field(raw, field):
    """the non-empty text of raw[field], else BadRow"""
    if field not in raw:
        raise BadRow(f"missing field '{field}'")
    v = raw[field]
    if not isinstance(v, str):
        raise BadRow(f"field '{field}' is {kind(v)}, not text")
    if v.strip() == "":
        raise BadRow(f"empty '{field}'")
    return v


def make_record(raw, fields, number, stem):
    """a parsed row -> {id, dialogue, summaries, topic} with the texts as read (the ids are those of
    the original text; line breaks are normalised only when the references are written). The first
    target field is required; a later one that is missing, null or empty gives one reference fewer.
    fields is None when no record of the file has any field."""
    if not isinstance(raw, dict) or fields is None:
        raise BadRow(f"expected an object with the record's fields, got {kind(raw) if raw != {} else 'an empty object'}")
    dialogue = text_field(raw, fields["source"])
    summaries = [text_field(raw, fields["targets"][0])]
    for t in fields["targets"][1:]:
        v = raw.get(t)
        if v is not None and not isinstance(v, str):
            raise BadRow(f"field '{t}' is {kind(v)}, not text")
        if v is not None and v.strip() != "":
            summaries.append(v)
    if fields["id"] is None:
        rid = f"{stem}_{number}"
    else:
        v = raw.get(fields["id"])
        if isinstance(v, bool) or not isinstance(v, (str, int)) or str(v).strip() == "":
            raise BadRow(f"field '{fields['id']}' (the id) is {'missing' if v is None else 'empty' if isinstance(v, str) else kind(v)}")
        rid = str(v)
    topic = raw.get(fields["topic"], "") if fields["topic"] else ""
    return {"id": rid, "dialogue": dialogue, "summaries": summaries, "topic": topic if isinstance(topic, str) else ""}


def records_of(name, rows, keys, args, info):
    """rows -> records; bad rows named on stderr and counted in info; no usable row refuses the file"""
    if not rows:
        raise PreproError(f"{name}: refused, nothing usable: it holds no records")
    fields = resolve_fields(name, keys, args) if keys else None  # no keys: every row is bad
    stem = os.path.splitext(os.path.basename(name))[0]
    records, bad, fewer = [], [], 0
    for n, (where, raw, problem) in enumerate(rows, 1):
        try:
            if problem:
                raise BadRow(problem)
            records.append(make_record(raw, fields, n, stem))
            fewer += len(records[-1]["summaries"]) < len(fields["targets"])
        except BadRow as e:
            bad.append(f"{where}: {e}")
    for line in bad[:SHOW_BAD]:
        print(f"skipped {line}", file=sys.stderr)
    if len(bad) > SHOW_BAD:
        print(f"skipped {len(bad) - SHOW_BAD} more bad rows of {name} (the first {SHOW_BAD} are named above)", file=sys.stderr)
    if not records:
        raise PreproError(f"{name}: refused, nothing usable: all {len(rows)} rows are bad (named above)")
    if bad:
        print(f"{name}: {len(bad)} of {len(rows)} rows skipped", file=sys.stderr)
    if fewer:
        print(f"{name}: {fewer} records lack some of {', '.join(fields['targets'][1:])} "
              "(scored against the references they have)", file=sys.stderr)
    info.update({"fields": fields, "records": len(records), "skipped_rows": len(bad), "fewer_references": fewer})
    return records


def read_file(path, args):
    rows, keys, fmt, why = read_rows(path, args.format)
    info = {"file": os.path.abspath(path), "format": fmt, "detected_by": why}
    records = records_of(path, rows, keys, args, info)
    f = info["fields"]
    print(f"{path}: {FORMAT_NAMES[fmt]} ({why}); dialogue '{f['source']}', summar{'ies' if len(f['targets']) > 1 else 'y'} "
          f"{', '.join(repr(t) for t in f['targets'])}, id {repr(f['id']) if f['id'] else 'numbered'}: {len(records)} records")
    return records, info


def split_files(data_dir):
    """the file of each split in data_dir (DialogSum's names, then {train,val|validation|dev,test}.{ext})"""
    if not os.path.isdir(data_dir):
        raise PreproError(f"{data_dir}: no such directory (give --data-dir, --input, or --hf-dataset when online)")
    found = {}
    for s in SPLITS:
        names = [DIALOGSUM_FILES[s]] + [n + e for n in SPLIT_NAMES[s] for e in (".jsonl", ".ndjson", ".json", ".csv", ".tsv")]
        found[s] = [os.path.join(data_dir, n) for n in names if os.path.isfile(os.path.join(data_dir, n))]
    if not any(found.values()):
        raise PreproError(f"{data_dir}: holds no split files ({', '.join(DIALOGSUM_FILES.values())}, or "
                          "train/val/test with .jsonl .json .csv or .tsv; validation or dev for val)")
    for s in SPLITS:
        if not found[s]:
            raise PreproError(f"{data_dir}: no {s} file (holds {', '.join(os.path.basename(p) for v in found.values() for p in v)})")
        if len(found[s]) > 1:
            raise PreproError(f"{data_dir}: which is the {s} file: {' or '.join(os.path.basename(p) for p in found[s])}? "
                              "Give them with --train-file, --val-file, --test-file")
    return {s: found[s][0] for s in SPLITS}


def read_hub(name, args):
    try:
        import datasets  # only for --hf-dataset
    except ImportError:
        raise PreproError("--hf-dataset needs the `datasets` package (python3 -m pip install datasets)") from None
    try:
        ds = datasets.load_dataset(name)
    except Exception as e:  # network, missing dataset: report and stop
        raise PreproError(f"{name}: cannot load from the Hugging Face hub: {e}") from None
    data, inputs = {}, []
    for s, h in HUB_SPLITS.items():
        info = {"file": f"{name}[{h}]", "format": "hub"}
        rows = [(f"{name}[{h}][{i}]", dict(r), None) for i, r in enumerate(ds[h])]
        data[s] = records_of(f"{name}[{h}]", rows, list(ds[h].column_names), args, info)
        inputs.append(info)
    return data, inputs


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
    """the references as scoring and the reports read them: line breaks normalised (normalize_breaks)"""
    return "".join(json.dumps({"id": r["id"], "dialogue": normalize_breaks(r["dialogue"]),
                               "summaries": [normalize_breaks(s) for s in r["summaries"]],
                               "topic": normalize_breaks(r["topic"])}, ensure_ascii=False) + "\n" for r in records)


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


def target_list(text):
    names = [t.strip() for t in text.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"expected field names separated by commas, each once, got '{text}'")
    return names


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=None, help="a directory with one file per split (default %s)" % DEFAULT_DATA)
    p.add_argument("--input", default=None, metavar="FILE", help="one file of your own, split by --split (default 80/10/10)")
    p.add_argument("--train-file", default=None, metavar="FILE", help="your own train split (with --val-file and --test-file)")
    p.add_argument("--val-file", default=None, metavar="FILE")
    p.add_argument("--test-file", default=None, metavar="FILE")
    p.add_argument("--hf-dataset", default=None, help="read this hub dataset instead, e.g. knkarthick/dialogsum")
    p.add_argument("--format", default="auto", choices=("auto", "jsonl", "json", "csv", "tsv"),
                   help="input format (default: the extension, else the first character; json = a JSON array)")
    p.add_argument("--source-field", default=None, metavar="NAME", help="the dialogue's field (default dialogue)")
    p.add_argument("--target-field", default=None, type=target_list, metavar="NAME[,NAME...]",
                   help="the summary's field(s): the first is the training target, all are references for "
                        "scoring (default summary, else summary1,summary2,...)")
    p.add_argument("--id-field", default=None, metavar="NAME", help="the record id's field (default fname, else id, "
                   "else FILESTEM_N, N the record number)")
    p.add_argument("--tokenizer", default=DEFAULT_SPM, help="spiece.model path, or a hub tokenizer name (default %(default)s)")
    p.add_argument("--out-dir", default=None, help="default out/dialogsum, or out/STEM for --input/--train-file STEM.ext")
    p.add_argument("--split", default=None, help="'official' (the given splits) or ratios like 80/10/10 "
                   "(default: official; 80/10/10 for --input)")
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


def read_inputs(args):
    """-> ({split or 'all': records}, [what was read from each input]) from whichever input was named"""
    own = [f for f in (args.train_file, args.val_file, args.test_file) if f]
    named = [n for n, v in (("--data-dir", args.data_dir), ("--input", args.input), ("--train-file/--val-file/--test-file", own),
                            ("--hf-dataset", args.hf_dataset)) if v]
    if len(named) > 1:
        raise PreproError(f"give one input: {' or '.join(named)}")
    if args.hf_dataset:
        return read_hub(args.hf_dataset, args)
    if args.input:
        records, info = read_file(args.input, args)
        return {"all": records}, [info]
    if own:
        if len(own) != 3:
            raise PreproError("--train-file, --val-file and --test-file go together (or give one file with --input)")
        paths = {"train": args.train_file, "val": args.val_file, "test": args.test_file}
    else:
        paths = split_files(args.data_dir or DEFAULT_DATA)
    data, inputs = {}, []
    for s in SPLITS:
        data[s], info = read_file(paths[s], args)
        inputs.append(info)
    return data, inputs


def run(args):
    if "{dialogue}" not in args.prompt:
        raise PreproError("--prompt must contain {dialogue}")
    if args.max_source_len < 2 or args.max_target_len < 2:
        raise PreproError("--max-source-len and --max-target-len must be at least 2 (text + </s>)")
    if args.limit < 0:
        raise PreproError("--limit must be 0 (all) or a count")
    split = args.split or ("80/10/10" if args.input else "official")
    if split == "official" and args.input:
        raise PreproError("--input is one file: it has no official split (--split 80/10/10, or give "
                          "--train-file, --val-file and --test-file)")
    ratios = None if split == "official" else parse_ratios(split)
    first = args.input or args.train_file
    out_dir = args.out_dir or os.path.join("out", os.path.splitext(os.path.basename(first))[0] if first else "dialogsum")
    tok = Tokenizer(args.tokenizer)
    data, inputs = read_inputs(args)
    if args.limit:
        data = {s: r[: args.limit] for s, r in data.items()}
    if ratios:
        data = ratio_split([r for records in data.values() for r in records], ratios, args.seed)
    empty = [s for s in SPLITS if not data[s]]
    if empty:
        raise PreproError(f"split {split} leaves {', '.join(empty)} empty: use more data or other ratios")
    encoded, stats = {}, {}
    for name in SPLITS:
        ex, cs, ct = tokenize_split(name, data[name], tok, args)
        encoded[name] = ex
        stats[name] = {"examples": len(ex), "truncated_sources": cs, "truncated_targets": ct,
                       "source_len": percentiles([len(s) for s, _ in ex]),
                       "target_len": percentiles([len(t) for _, t in ex])}
    os.makedirs(out_dir, exist_ok=True)
    for name in SPLITS:  # everything was read and checked above: only writing is left
        write_examples(os.path.join(out_dir, f"{name}.bin"), encoded[name])
        write_text_atomic(os.path.join(out_dir, f"{name}_refs.jsonl"), refs_jsonl(data[name]))
    meta = {"source": args.hf_dataset or os.path.abspath(args.input or args.train_file or args.data_dir or DEFAULT_DATA),
            "inputs": inputs, "split": split, "seed": args.seed,
            "prompt": args.prompt, "tokenizer": args.tokenizer, "eos_id": EOS_ID,
            "max_source_len": args.max_source_len, "max_target_len": args.max_target_len,
            "refs_line_breaks": "\\r\\n, \\r, U+2028, U+2029 and \\f written as \\n (token ids are the original text's)",
            "splits": stats}
    write_text_atomic(os.path.join(out_dir, "meta.json"), json.dumps(meta, indent=2) + "\n")
    summarize(stats)
    print(f"wrote {', '.join(f'{s}.bin' for s in SPLITS)}, the *_refs.jsonl references and meta.json to {out_dir}")


if __name__ == "__main__":
    sys.exit(main())
