#!/usr/bin/env python3
"""prepro_dialogsum.py on your own data, on small inputs built here: SAMSum's layout (JSON arrays with
\\r\\n line breaks, no flags), a CSV with quoted multi-line fields and its own column names, JSON Lines
with several reference summaries, bad rows (named, counted, skipped) and a file of bad rows only
(refused, nothing written), format detection, the seeded 80/10/10 split of one file. Line breaks: the
ids written are sentencepiece's for the original text, and normalising the breaks in the references
does not change them (each kind of break, at the start, inside and at the end of a text).

    python3 dev/test_prepro.py [--data ../shared/data]

Needs sentencepiece and numpy (and `tokenizers`, optional: HF's fast tokenizer from tokenizer.json is
then checked too). No torch. Runs in a few seconds; the exit status is the verdict.
"""
import argparse
import contextlib
import csv
import io
import json
import os
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "dev"))
import prepro_dialogsum as prepro  # noqa: E402
from examples import read_examples  # noqa: E402  (dev/examples.py)

PASS, FAIL = [], []
SPLITS = ("train", "val", "test")


def check(name, ok, detail=""):
    print(f"{name:<92} {'OK' if ok else 'FAIL'}{('  ' + detail) if detail and not ok else ''}")
    (PASS if ok else FAIL).append(name)
    return ok


class Run:
    """prepro_dialogsum.main in this process: exit status, stdout, stderr, and what it wrote"""

    def __init__(self, spm, out, *args):
        o, e = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
            self.rc = prepro.main(["--tokenizer", spm, "--out-dir", out, *args])
        self.out, self.err, self.dir = o.getvalue(), e.getvalue(), out

    def refs(self, split):
        with open(os.path.join(self.dir, f"{split}_refs.jsonl"), encoding="utf-8") as f:
            return [json.loads(line) for line in f]

    def bin(self, split):
        return read_examples(os.path.join(self.dir, f"{split}.bin"))

    def meta(self):
        with open(os.path.join(self.dir, "meta.json"), encoding="utf-8") as f:
            return json.load(f)

    def files(self):
        return sorted(os.listdir(self.dir)) if os.path.isdir(self.dir) else []


def write(path, text, newline=""):
    with open(path, "w", encoding="utf-8", newline=newline) as f:
        f.write(text)
    return path


def dialogue(i, br):
    return br.join([f"Amanda: did you see the game {i}?", f"Tom: yes, {i} goals!", "Amanda: wow <3"])


# ----------------------------------------------------------------------------- line breaks

def test_line_breaks(sp, fast):
    """each break T5's tokenizer reads as a space: normalize_breaks turns it into \\n and the ids stay"""
    normalised = {"\r\n": "CRLF", "\r": "CR", "\n": "LF", "\u2028": "U+2028", "\u2029": "U+2029", "\x0c": "FF"}
    kept = {"\x0b": "VT", "\x1c": "FS", "\x1d": "GS", "\x1e": "RS", "\x85": "NEL"}  # not spaces to the tokenizer
    for br, name in normalised.items():
        texts = [f"#Person1#: Hi.{br}#Person2#: Hello!", f"{br}Hi{br}", f"A:{br}{br}B{br}{br}C", f"x {br} y\t{br}z"]
        same = all(sp.encode(t) == sp.encode(prepro.normalize_breaks(t)) for t in texts)
        to_lf = all("\r" not in prepro.normalize_breaks(t) and prepro.normalize_breaks(t).count("\n") == t.count(br) for t in texts)
        check(f"{name:>6}: written as \\n in the references, sentencepiece ids of the text unchanged", same and to_lf)
        if fast:
            check(f"{name:>6}: HF's fast tokenizer (tokenizer.json) gives the same ids either way",
                  all(fast.encode(t, add_special_tokens=False).ids == fast.encode(prepro.normalize_breaks(t), add_special_tokens=False).ids
                      for t in texts))
    for br, name in kept.items():
        t = f"Hello{br}world"
        check(f"{name:>6}: left as it is (sentencepiece does not read it as a space: \\n would change the ids)",
              prepro.normalize_breaks(t) == t and sp.encode(t) != sp.encode(t.replace(br, "\n")))


# ----------------------------------------------------------------------------- the inputs

def test_samsum(spm, sp, tmp):
    """SAMSum's release layout, no flags: {train,val,test}.json, arrays of {id, summary, dialogue}, \\r\\n"""
    for name, br in (("samsum", "\r\n"), ("samsum_lf", "\n")):
        d = os.path.join(tmp, name)
        os.makedirs(d)
        for s, n in (("train", 8), ("val", 3), ("test", 3)):
            recs = [{"id": f"1373{s}{i}", "summary": f"Tom saw game {i}.{br}It had {i} goals.", "dialogue": dialogue(i, br)}
                    for i in range(n)]
            write(os.path.join(d, f"{s}.json"), json.dumps(recs, indent=2))
    r = Run(spm, os.path.join(tmp, "out_samsum"), "--data-dir", os.path.join(tmp, "samsum"))
    if not check("SAMSum layout, no flags: exit 0, read as a JSON array with id/dialogue/summary", r.rc == 0 and
                 "train.json: a JSON array" in r.out and "dialogue 'dialogue', summary 'summary', id 'id'" in r.out, r.err[-300:]):
        return
    refs = r.refs("test")
    check("SAMSum: 8/3/3 examples, ids kept", [len(r.bin(s)) for s in SPLITS] == [8, 3, 3] and refs[0]["id"] == "1373test0")
    check("SAMSum: \\r\\n written as \\n in the references (dialogue and summary)",
          refs[1]["dialogue"] == dialogue(1, "\n") and refs[1]["summaries"] == ["Tom saw game 1.\nIt had 1 goals."])
    src, tgt = r.bin("test")[1]
    want = sp.encode(prepro.DEFAULT_PROMPT.replace("{dialogue}", dialogue(1, "\r\n"))) + [1]
    check("SAMSum: source ids == sentencepiece(prompt with the ORIGINAL \\r\\n dialogue) + </s>", src == want)
    check("SAMSum: target ids == sentencepiece(original summary) + </s>", tgt == sp.encode("Tom saw game 1.\r\nIt had 1 goals.") + [1])
    lf = Run(spm, os.path.join(tmp, "out_samsum_lf"), "--data-dir", os.path.join(tmp, "samsum_lf"))
    same = lf.rc == 0 and all(open(os.path.join(r.dir, f"{s}{x}"), "rb").read() == open(os.path.join(lf.dir, f"{s}{x}"), "rb").read()
                              for s in SPLITS for x in (".bin", "_refs.jsonl"))
    check("SAMSum with \\r\\n and the same data with \\n: byte-identical .bin and _refs.jsonl", same)
    check("outputs written through temporaries: no *.tmp left", not [f for f in r.files() if f.endswith(".tmp")], str(r.files()))
    one = Run(spm, os.path.join(tmp, "out_samsum_one"), "--input", os.path.join(tmp, "samsum", "train.json"))
    check("one SAMSum file with --input: the 80/10/10 split by default (8 -> 6/1/1)", one.rc == 0 and
          [len(one.bin(s)) for s in SPLITS] == [6, 1, 1] and one.meta()["split"] == "80/10/10", one.err[-300:])


def test_csv(spm, sp, tmp):
    """a CSV of your own: quoted fields over several lines (\\r\\n and \\n), commas and quotes inside,
    its own column names; one file, seeded 80/10/10"""
    path = os.path.join(tmp, "chats.csv")
    rows = [{"uid": f"c{i}", "conversation": dialogue(i, "\r\n" if i % 2 else "\n") + f', "quoted", and, commas {i}',
             "abstract": f"Game {i},\n discussed.", "extra": str(i)} for i in range(20)]
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["uid", "extra", "conversation", "abstract"])  # writes \r\n row ends
        w.writeheader()
        w.writerows(rows)
    args = ("--input", path, "--source-field", "conversation", "--target-field", "abstract", "--id-field", "uid")
    r = Run(spm, os.path.join(tmp, "out_csv"), *args)
    if not check("CSV with custom columns: exit 0, read as CSV (its extension)", r.rc == 0 and "chats.csv: CSV (extension .csv)" in r.out,
                 r.err[-300:]):
        return
    sizes = [len(r.bin(s)) for s in SPLITS]
    check("CSV: 20 rows split 80/10/10 -> 16/2/2", sizes == [16, 2, 2], str(sizes))
    refs = {x["id"]: x for s in SPLITS for x in r.refs(s)}
    by_id = {x["uid"]: x for x in rows}
    check("CSV: every row once, multi-line quoted fields whole (line breaks as \\n)", sorted(refs) == sorted(by_id) and all(
        refs[k]["dialogue"] == by_id[k]["conversation"].replace("\r\n", "\n") and refs[k]["summaries"] == [by_id[k]["abstract"]]
        for k in refs))
    ids_ok = all(src == sp.encode(prepro.DEFAULT_PROMPT.replace("{dialogue}", by_id[ref["id"]]["conversation"])) + [1] and
                 tgt == sp.encode(by_id[ref["id"]]["abstract"]) + [1] for s in SPLITS for (src, tgt), ref in zip(r.bin(s), r.refs(s)))
    check("CSV: every .bin example == sentencepiece of its row's original text, in _refs.jsonl order", ids_ok)
    again = Run(spm, os.path.join(tmp, "out_csv2"), *args)
    other = Run(spm, os.path.join(tmp, "out_csv3"), *args, "--seed", "7")
    ids = lambda run: [[x["id"] for x in run.refs(s)] for s in SPLITS]  # noqa: E731
    check("CSV: the same seed gives the same split, another seed another", ids(again) == ids(r) and ids(other) != ids(r))
    tsv = write(os.path.join(tmp, "chats.tsv"), "conversation\tabstract\n" + "".join(f"A: hi {i}\tHi {i}.\n" for i in range(10)))
    t = Run(spm, os.path.join(tmp, "out_tsv"), "--input", tsv, "--source-field", "conversation", "--target-field", "abstract")
    long = write(os.path.join(tmp, "long.csv"), "dialogue,summary\n" + "".join(
        f'"{("A: hello there. " * 12000).strip() if i == 0 else f"A: hi {i}."}",S {i}.\n' for i in range(10)))
    g = Run(spm, os.path.join(tmp, "out_long"), "--input", long)
    check("CSV: a 190 KB field (over the csv module's default limit) is read whole",
          g.rc == 0 and max(len(x["dialogue"]) for s in SPLITS for x in g.refs(s)) == 16 * 12000 - 1, g.err[-300:])
    check("TSV (extension .tsv), no id column: ids are FILESTEM_N", t.rc == 0 and "TSV (extension .tsv)" in t.out and
          sorted(x["id"] for s in SPLITS for x in t.refs(s)) == sorted(f"chats_{i}" for i in range(1, 11)), t.err[-300:])


def test_jsonl_refs(spm, sp, tmp):
    """JSON Lines with several references: the first target field is the training target, every one a
    reference (DialogSum's test split: summary1..3, the same way); a later one missing or empty is
    left out for that row; separate train/val/test files keep their split"""
    def rec(i, n_refs=3):
        r = {"key": i, "chat": dialogue(i, "\u2028"), "ref_a": f"First {i}.", "ref_b": f"Second {i}.", "ref_c": f"Third {i}."}
        if n_refs < 3:
            r["ref_c"] = ""
            del r["ref_b"]
        return r
    paths = {}
    for s, n in (("train", 6), ("val", 2), ("test", 3)):
        paths[s] = write(os.path.join(tmp, f"own_{s}.jsonl"), "".join(json.dumps(rec(i, 1 if (s, i) == ("test", 2) else 3)) + "\n"
                                                                     for i in range(n)))
    r = Run(spm, os.path.join(tmp, "out_jsonl"), "--train-file", paths["train"], "--val-file", paths["val"], "--test-file",
            paths["test"], "--source-field", "chat", "--target-field", "ref_a,ref_b,ref_c", "--id-field", "key")
    if not check("JSON Lines with --target-field ref_a,ref_b,ref_c and separate split files: exit 0", r.rc == 0, r.err[-300:]):
        return
    refs = r.refs("test")
    check("separate files keep their split: 6/2/3", [len(r.bin(s)) for s in SPLITS] == [6, 2, 3])
    check("references: all three per record, in the order of --target-field; numeric id as text",
          refs[0]["summaries"] == ["First 0.", "Second 0.", "Third 0."] and refs[0]["id"] == "0")
    check("a record with ref_b missing and ref_c empty keeps its one reference, and is reported",
          refs[2]["summaries"] == ["First 2."] and "1 records lack some of ref_b, ref_c" in r.err, r.err[-200:])
    check("training target: the first field (ref_a) + </s>", all(t == sp.encode(f"First {i}.") + [1] for i, (_, t) in enumerate(r.bin("test"))))
    check("U+2028 written as \\n in the references", refs[0]["dialogue"] == dialogue(0, "\n"))
    meta = r.meta()
    check("meta.json names each input: format, how it was chosen, fields, counts",
          [i["format"] for i in meta["inputs"]] == ["jsonl"] * 3 and meta["inputs"][2]["fields"]["targets"] == ["ref_a", "ref_b", "ref_c"]
          and meta["inputs"][2]["fewer_references"] == 1 and meta["split"] == "official")
    ds = os.path.join(tmp, "dialogsum_like")
    os.makedirs(ds)
    for s, f in prepro.DIALOGSUM_FILES.items():
        keys = ("summary1", "summary2", "summary3") if s == "test" else ("summary",)
        write(os.path.join(ds, f), "".join(json.dumps({"fname": f"{s}_{i}", "dialogue": dialogue(i, "\n"), **{k: f"{k} {i}." for k in keys},
                                                       "topic": "games"}) + "\n" for i in range(4)))
    d = Run(spm, os.path.join(tmp, "out_dialogsum_like"), "--data-dir", ds)
    check("DialogSum layout, no flags: the test split's summary1..3 are its references, summary1 the target",
          d.rc == 0 and d.refs("test")[1]["summaries"] == ["summary1 1.", "summary2 1.", "summary3 1."] and
          d.bin("test")[1][1] == sp.encode("summary1 1.") + [1] and d.refs("val")[0]["topic"] == "games", d.err[-300:])


def test_bad_rows(spm, tmp):
    """bad rows named (file:line) on stderr, counted, skipped; a file with none usable refused"""
    good = [json.dumps({"id": f"g{i}", "dialogue": dialogue(i, "\n"), "summary": f"S {i}."}) for i in range(10)]
    bad = [
        ('{"id": "b1", "summary": "no dialogue"}', "missing field 'dialogue'"),
        ('{"id": "b2", "dialogue": "  \\r\\n ", "summary": "x"}', "empty 'dialogue'"),
        ('{"id": "b3", "dialogue": 42, "summary": "x"}', "field 'dialogue' is a number, not text"),
        ('{"id": "b4", "dialogue": "A: hi", "summary": ["x"]}', "field 'summary' is a list, not text"),
        ('{"id": "b5", "dialogue": "A: hi", "summary": null}', "field 'summary' is null, not text"),
        ('{"id": "b6", "dialogue": "A: hi", "summary": "x"', "malformed JSON line"),
        ('["A: hi", "x"]', "expected an object with the record's fields, got a list"),
        ('{"id": true, "dialogue": "A: hi", "summary": "x"}', "field 'id' (the id) is true/false"),
    ]
    lines = good[:5] + [b for b, _ in bad] + [""] + good[5:]
    path = write(os.path.join(tmp, "mixed.jsonl"), "\n".join(lines) + "\n")
    r = Run(spm, os.path.join(tmp, "out_mixed"), "--input", path)
    named = all(f"skipped {path}:{6 + k}: {want}" in r.err for k, (_, want) in enumerate(bad))
    check("JSON Lines with 8 bad rows: exit 0, each named by file:line and what is wrong", r.rc == 0 and named, r.err[-600:])
    check("... counted ('8 of 18 rows skipped', meta.json) and skipped: 10 examples written",
          f"{path}: 8 of 18 rows skipped" in r.err and r.meta()["inputs"][0]["skipped_rows"] == 8 and
          sum(len(r.bin(s)) for s in SPLITS) == 10, r.err[-300:])
    arr = write(os.path.join(tmp, "mixed.json"), "[\n" + ",\n".join(json.dumps({"id": i, "dialogue": f"A: hi {i}" if i != 3 else "",
                                                                                "summary": "S."}, indent=1) for i in range(10)) + "\n]\n")
    a = Run(spm, os.path.join(tmp, "out_arr"), "--input", arr)
    check("JSON array: a bad record named by its line and record number", a.rc == 0 and
          f"skipped {arr}:17 (record 4): empty 'dialogue'" in a.err, a.err[-300:])
    c = write(os.path.join(tmp, "mixed.csv"), 'dialogue,summary\r\n"A: hi\r\nB: yo",S.\r\nonly one field\r\n' +
              "".join(f"A: {i},S {i}.\r\n" for i in range(10)) + ',"empty dialogue"\r\n')
    cr = Run(spm, os.path.join(tmp, "out_mixed_csv"), "--input", c)
    check("CSV: a row with the wrong number of fields and an empty field named by the line they start on",
          cr.rc == 0 and f"skipped {c}:4: 1 fields, the header has 2" in cr.err and f"skipped {c}:15: empty 'dialogue'" in cr.err,
          cr.err[-300:])
    # a file with only bad rows: refused, nothing written, earlier outputs left as they were
    only = write(os.path.join(tmp, "only_bad.jsonl"), "\n".join(b for b, _ in bad) + "\n")
    before = {f: open(os.path.join(r.dir, f), "rb").read() for f in r.files()}
    z = Run(spm, r.dir, "--input", only)
    after = {f: open(os.path.join(r.dir, f), "rb").read() for f in r.files()}
    check("a file of bad rows only: exit 1, 'refused' names the file, every row named",
          z.rc == 1 and f"error: {only}: refused, nothing usable: all 8 rows are bad" in z.err and z.err.count("skipped ") == 8, z.err[-300:])
    check("... and the outputs of the earlier run in that directory are untouched", before == after and before)
    fresh = Run(spm, os.path.join(tmp, "out_never"), "--train-file", path, "--val-file", only, "--test-file", path)
    check("one of three split files unusable: exit 1 naming it, no output directory made",
          fresh.rc == 1 and f"{only}: refused" in fresh.err and not os.path.exists(fresh.dir), fresh.err[-200:])
    empty = write(os.path.join(tmp, "empty.csv"), "dialogue,summary\r\n")
    e = Run(spm, os.path.join(tmp, "out_empty"), "--input", empty)
    check("a CSV with a header only: refused ('holds no records')", e.rc == 1 and "holds no records" in e.err, e.err[-200:])
    junk = write(os.path.join(tmp, "junk.jsonl"), "{not json\n[1]\n{}\n")
    j = Run(spm, os.path.join(tmp, "out_junk"), "--input", junk)
    check("JSON Lines without one object with fields: every line named, refused", j.rc == 1 and
          f"skipped {junk}:1: malformed JSON line" in j.err and f"skipped {junk}:2: expected an object" in j.err and
          f"skipped {junk}:3: expected an object with the record's fields, got an empty object" in j.err and
          f"{junk}: refused, nothing usable: all 3 rows are bad" in j.err, j.err[-400:])


def test_detection_and_flags(spm, tmp):
    recs = [{"text": f"A: hi {i}", "summary": f"Hi {i}."} for i in range(10)]
    lines = write(os.path.join(tmp, "lines.json"), "".join(json.dumps(x) + "\n" for x in recs))
    r = Run(spm, os.path.join(tmp, "out_lines"), "--input", lines, "--source-field", "text")
    check("a .json file that starts with '{' is read as JSON Lines (and says so)",
          r.rc == 0 and "JSON Lines (starts with '{')" in r.out, r.out[-300:] + r.err[-300:])
    arr = write(os.path.join(tmp, "data.txt"), json.dumps(recs))
    r = Run(spm, os.path.join(tmp, "out_txt"), "--input", arr, "--source-field", "text")
    check("no known extension, starts with '[': a JSON array", r.rc == 0 and "a JSON array (starts with '[')" in r.out, r.err[-300:])
    plain = write(os.path.join(tmp, "noext"), "text,summary\n" + "".join(f"A: {i},S {i}.\n" for i in range(10)))
    r = Run(spm, os.path.join(tmp, "out_noext"), "--input", plain, "--source-field", "text")
    check("no extension, starts with neither '[' nor '{': CSV", r.rc == 0 and "noext: CSV (no extension" in r.out, r.err[-300:])
    r = Run(spm, os.path.join(tmp, "out_forced"), "--input", arr, "--source-field", "text", "--format", "jsonl")
    check("--format jsonl overrides the content: the one-line array is then one bad row, refused",
          r.rc == 1 and f"skipped {arr}:1: expected an object with the record's fields, got a list" in r.err, r.err[-300:])
    r = Run(spm, os.path.join(tmp, "out_nofield"), "--input", lines)
    check("no 'dialogue' field and no --source-field: refused, lists the fields, names the flag",
          r.rc == 1 and "no record has the field 'dialogue' (its fields: 'text', 'summary'); name the dialogue's field with --source-field"
          in r.err, r.err[-300:])
    r = Run(spm, os.path.join(tmp, "out_typo"), "--input", lines, "--source-field", "text", "--target-field", "summary,sumary")
    check("a --target-field no record has: refused, naming it", r.rc == 1 and "no record has the field 'sumary'" in r.err, r.err[-300:])
    for name, args, want in (
            ("--input and --data-dir together", ("--input", lines, "--data-dir", tmp), "give one input"),
            ("--train-file without --val-file/--test-file", ("--train-file", lines), "go together"),
            ("--input with --split official", ("--input", lines, "--split", "official"), "has no official split"),
            ("a 10-record file split 98/1/1", ("--input", lines, "--source-field", "text", "--split", "98/1/1"), "leaves val, test empty"),
            ("a missing file", ("--input", os.path.join(tmp, "nope.csv")), "nope.csv: cannot read")):
        r = Run(spm, os.path.join(tmp, "out_err"), *args)
        check(f"refused: {name}", r.rc == 1 and want in r.err and not os.path.exists(r.dir), r.err[-200:])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data"), help="holds t5/spiece.model")
    a = ap.parse_args()
    spm = os.path.join(a.data, "t5", "spiece.model")
    import sentencepiece
    sp = sentencepiece.SentencePieceProcessor(model_file=spm)
    try:
        import tokenizers
        fast = tokenizers.Tokenizer.from_file(os.path.join(a.data, "t5", "tokenizer.json"))
    except ImportError:
        fast = None
        print("(tokenizers not installed: HF's fast tokenizer not checked, sentencepiece only)")
    with tempfile.TemporaryDirectory() as tmp:
        print("=== line breaks (T5's spiece.model: nmt_nfkc)")
        test_line_breaks(sp, fast)
        print("=== SAMSum layout")
        test_samsum(spm, sp, tmp)
        print("=== CSV of your own")
        test_csv(spm, sp, tmp)
        print("=== JSON Lines, several references; DialogSum layout")
        test_jsonl_refs(spm, sp, tmp)
        print("=== bad rows")
        test_bad_rows(spm, tmp)
        print("=== format detection, field flags, refusals")
        test_detection_and_flags(spm, tmp)
    print(f"\n{len(PASS)} passed, {len(FAIL)} failed")
    for f in FAIL:
        print(f"  FAIL {f}")
    return 1 if FAIL else 0


if __name__ == "__main__":
    sys.exit(main())
