#!/usr/bin/env python3
"""dev/test_metrics.py — the C metrics (build/score: llmc/rouge.h, llmc/bleu.h, llmc/porter.h)
against the Python packages they reproduce: rouge_score (RougeScorer with use_stemmer=True,
score_multi for several references) and sacrebleu (corpus_bleu, sentence_bleu, Tokenizer13a).

Compared, each with tolerance 1e-6 absolute (all numbers are doubles on both sides, so the
differences seen are 0 or a few ulps; 1e-6 is the bar the issue sets):
  - every example's ROUGE-1/2/L/Lsum precision, recall and F, and their means over the examples
  - every example's sentence BLEU, and corpus BLEU with its precisions, BP and ratio (0-100 scale);
    hyp_len, ref_len, n-gram counts and totals must be equal
on: the BART-large DialogSum test outputs vs summary1, and vs summary1..3; hand-written edge cases;
random Unicode texts; random bytes (invalid UTF-8, ROUGE only: Python sees them decoded with
errors="replace"). Tokens must be identical: ROUGE's (stemmed) on every DialogSum word and on
generated words that reach each Porter rule, and on the dev/test texts; 13a on every DialogSum line.
Command-line errors (mismatched line counts, bad flags, NUL bytes) must exit non-zero.
With --asan-bin, the edge cases and random bytes also run through a sanitizer build.

usage: python3 dev/test_metrics.py [--score-bin build/score] [--asan-bin PATH] [--data DIR]
The data directory defaults to $T5_DATA, else ../shared/data next to the repository.
"""
import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile

import sacrebleu
from rouge_score import rouge_scorer, tokenizers
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METRICS = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
TOL = 1e-6  # absolute, on 0..1 ROUGE values and on 0..100 BLEU values (the bar)
PUBLISHED = {"rouge1": 45.9458, "rouge2": 21.3612, "rougeL": 38.7189}  # BART-large vs summary1, HF datasets' rouge

failures = []


def report(name, count, diff, ok=None):
    ok = diff <= TOL if ok is None else ok
    print(f"{'OK  ' if ok else 'FAIL'} {name:<52} {count:>6} compared  max abs diff {diff:.3e}")
    if not ok:
        failures.append(name)


# ----------------------------------------------------------------------------- running build/score

def escape(text):
    """one text per line for --unescape-newlines"""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def write_lines(directory, name, texts, escaped):
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        for t in texts:
            data = t if isinstance(t, bytes) else t.encode("utf-8")
            if escaped:
                data = data.replace(b"\\", b"\\\\").replace(b"\n", b"\\n")
            f.write(data + b"\n")
    return path


def run(binary, args):
    return subprocess.run([binary] + args, capture_output=True, timeout=300)


def c_scores(binary, hyps, refs_lists, escaped=True, hyp_path=None):
    """build/score --json on hyps (texts or bytes) vs refs_lists = [refs1, refs2, ...]"""
    with tempfile.TemporaryDirectory() as d:
        args = ["--json"] + (["--unescape-newlines"] if escaped else [])
        args += ["--hyp", hyp_path or write_lines(d, "hyp.txt", hyps, escaped)]
        for k, refs in enumerate(refs_lists):
            args += ["--ref", write_lines(d, f"ref{k}.txt", refs, escaped)]
        p = run(binary, args)
    if p.returncode != 0:
        raise RuntimeError(f"{binary} {' '.join(args)} exited {p.returncode}: {p.stderr.decode(errors='replace')}")
    return json.loads(p.stdout)


def c_tokens(binary, kind, texts):
    with tempfile.TemporaryDirectory() as d:
        path = write_lines(d, "text.txt", texts, True)
        p = run(binary, ["--print-tokens", kind, "--unescape-newlines", "--hyp", path])
    if p.returncode != 0:
        raise RuntimeError(f"--print-tokens {kind} exited {p.returncode}: {p.stderr.decode(errors='replace')}")
    return p.stdout.decode("utf-8", errors="surrogateescape").split("\n")[:-1]


# ----------------------------------------------------------------------------- the Python references

SCORER = rouge_scorer.RougeScorer(METRICS, use_stemmer=True)


def as_text(t):
    return t.decode("utf-8", errors="replace") if isinstance(t, bytes) else t


def py_scores(hyps, refs_lists, with_bleu=True):
    out = {"examples": []}
    for i, hyp in enumerate(hyps):
        refs = [as_text(r[i]) for r in refs_lists]
        s = SCORER.score_multi(refs, as_text(hyp))
        ex = {m: [s[m].precision, s[m].recall, s[m].fmeasure] for m in METRICS}
        if with_bleu:
            ex["bleu"] = sacrebleu.sentence_bleu(hyp, refs).score
        out["examples"].append(ex)
    n = max(len(hyps), 1)
    out["mean"] = {m: [sum(e[m][j] for e in out["examples"]) / n for j in range(3)] for m in METRICS}
    if with_bleu:
        b = sacrebleu.corpus_bleu(list(hyps), [list(r) for r in refs_lists])
        out["bleu"] = {"score": b.score, "precisions": b.precisions, "bp": b.bp, "ratio": b.ratio,
                       "hyp_len": b.sys_len, "ref_len": b.ref_len, "counts": b.counts, "totals": b.totals}
    return out


# ----------------------------------------------------------------------------- comparisons

def compare(label, c, py, with_bleu=True):
    n = len(py["examples"])
    if len(c["examples"]) != n:
        report(f"{label}: number of examples", n, float("inf"), ok=False)
        return
    for m in METRICS:
        diff = max((abs(a - b) for ce, pe in zip(c["examples"], py["examples"]) for a, b in zip(ce[m], pe[m])), default=0.0)
        report(f"{label}: {m} P/R/F per example", n, diff)
    diff = max(abs(a - b) for m in METRICS for a, b in zip(c["mean"][m], py["mean"][m]))
    report(f"{label}: ROUGE means over examples", 12, diff)
    if not with_bleu:
        return
    diff = max((abs(ce["bleu"] - pe["bleu"]) for ce, pe in zip(c["examples"], py["examples"])), default=0.0)
    report(f"{label}: sentence BLEU per example", n, diff)
    cb, pb = c["bleu"], py["bleu"]
    diff = max([abs(cb[k] - pb[k]) for k in ("score", "bp", "ratio")] +
               [abs(a - b) for a, b in zip(cb["precisions"], pb["precisions"])])
    ints_equal = all(cb[k] == pb[k] for k in ("hyp_len", "ref_len", "counts", "totals"))
    report(f"{label}: corpus BLEU, precisions, BP, ratio; lengths, counts", 16, diff, ok=diff <= TOL and ints_equal)


def compare_tokens(label, got, want):
    bad = [i for i, (g, w) in enumerate(zip(got, want)) if g != w]
    ok = not bad and len(got) == len(want)
    report(f"{label}", len(want), 0.0 if ok else 1.0, ok=ok)
    for i in bad[:3]:
        print(f"       line {i}: C {got[i]!r}\n               Python {want[i]!r}")


# ----------------------------------------------------------------------------- test material

PORTER_WORDS = (
    "running runs ran run generously generous caresses ponies ties caress cats feed agreed plastered bled "
    "motoring sing conflated troubled sized hopping tanned falling hissing fizzed failing filing happy sky "
    "relational conditional rational valenci hesitanci digitizer conformabli radicalli differentli vileli "
    "analogousli vietnamization predication operator feudalism decisiveness hopefulness callousness formaliti "
    "sensitiviti sensibiliti triplicate formative formalize electriciti electrical hopeful goodness revival "
    "allowance inference airliner gyroscopic adjustable defensible irritant replacement adjustment dependent "
    "adoption homologou communism activate angulariti homologous effective bowdlerize probate rate cease "
    "controll roll dying lying tying skies news innings inning outings outing cannings canning howe proceed "
    "exceed succeed dies died spied flies enjoy enjoyment spy syzygy yyyy yyyyyy toy archaeology geology "
    "theology fully fulli generalization generalizations oed eed bleed needed agreeing 1990s abc123s mp3s "
    "ies sses seeing being doing says saying played playing yearly eyeing buying trying studies studying"
).split()

SUFFIXES = sorted(set(
    "sses ies ss s eed ed ing ied at bl iz y ational tional enci anci izer bli abli alli entli eli ousli "
    "ization ation ator alism iveness fulness ousness aliti iviti biliti fulli logi icate ative alize iciti "
    "ical ful ness al ance ence er ic able ible ant ement ment ent sion tion ion ou ism ate iti ous ive ize "
    "e ll".split()))


def generated_words(rng, count):
    """random stems of letters (y and doubled consonants included) + suffixes from every Porter rule"""
    letters = "bcdfghjklmnpqrstvwxyzaeiouy"
    words = []
    for _ in range(count):
        stem = "".join(rng.choice(letters) for _ in range(rng.randint(1, 6)))
        if rng.random() < 0.3:
            stem += stem[-1]
        words.append(stem + "".join(rng.choice(SUFFIXES) for _ in range(rng.randint(1, 2))))
    return words


def edge_cases():
    """(hypothesis, reference) pairs; texts may hold newlines (Lsum sentences)"""
    long_a = " ".join(f"word{i % 97} token{i % 13}" for i in range(700))
    long_b = " ".join(f"word{i % 89} token{i % 11}" for i in range(650))
    return [
        ("", "a reference summary"), ("a hypothesis", ""), ("", ""),
        ("The same text, exactly.", "The same text, exactly."),
        ("completely different words", "nothing shared here"),
        ("... !!! ??? ,,, ;;;", "--- ... ((( )))"), ("...", "hello ."),
        ("In 1999, 3.5 million people paid $4,000.50 each (10-20%).", "In 1999 about 3.5 million paid 4,000.50 dollars, 10 - 20 %."),
        ("the the the the cat cat", "the cat the cat the"), ("a a a a a a a a", "a a"),
        (long_a, long_b),
        ("Café naïve résumé — “quoted” 東京 İstanbul \u212Aelvin ǅ ß", "cafe naive resume quoted istanbul kelvin"),
        ("emoji 😀 tab\there nbsp\u00a0here ideographic\u3000space line\u2028sep", "emoji tab here nbsp here line sep"),
        ("running runs ran", "run running ran runs"), ("generously", "generous generosity"),
        (" ".join(PORTER_WORDS[:60]), " ".join(reversed(PORTER_WORDS[:60]))),
        (" ".join(PORTER_WORDS[60:]), " ".join(PORTER_WORDS[40:100])),
        ("first sentence here.\nsecond sentence there.", "second sentence here.\nfirst sentence there."),
        ("a b c\n\nd e f\n", "d e f\na b c\nc b a"), ("\n\n\n", "x\ny"), ("one line only", "one\nline\nonly"),
        ("the cat sat\nthe cat", "the cat\nsat the cat\nthe"),
        ("dog cat\ndog", "cat dog"),  # Lsum: which of two equally long LCS the backtrack reads out
        ("&amp; &lt;tag&gt; &quot;x&quot; <skipped> end-\nof line", "& <tag> \"x\" endof line"),
        ("trailing spaces   \t\u3000", "trailing spaces"), ("Mr. Smith's e-mail: a.b@c.d, ok?", "Mr . Smith 's e-mail : a.b @ c.d , ok ?"),
        ("1,000.5-2 3-4 x-y 5.", "1,000.5 - 2 3 - 4 x-y 5 ."), ("back\\slash \\n not a newline", "back slash n"),
        ("UPPER lower MiXeD", "upper LOWER mixed"), ("a\rb\vc\fd", "a b c d"),
    ]


def random_unicode_text(rng):
    pool = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") * 4 +
            list(" .,-'!?;:()[]{}&<>\"/\\@#$%^*_+=|~`") * 2 +
            ["\n", "\t", "\u00a0", "\u2009", "\u3000", "\u0085", "\u1680", "\u2028", "\u205f", "\x1c",
             "é", "ß", "İ", "\u212a", "東", "😀", "\u0301", "ǅ", "&amp;", "&lt;", "<skipped>", "-\n", "ing ", "ed ", "ies "])
    return "".join(rng.choice(pool) for _ in range(rng.randint(0, 60)))


def random_bytes_text(rng):
    special = [b"\xc4\xb0", b"\xe2\x84\xaa", b"\xe2\x84", b"\xc2\xa0", b"\xed\xa0\x80", b"\xf0\x9f\x98\x80", b"\xff", b"\x80"]
    parts = []
    for _ in range(rng.randint(0, 40)):
        r = rng.random()
        parts.append(rng.choice(special) if r < 0.3 else bytes([rng.randint(1, 255)]) if r < 0.7 else rng.choice([b"ab", b"running ", b" x"]))
    return b"".join(parts)


# ----------------------------------------------------------------------------- the checks

def check_baseline(binary, data):
    base = os.path.join(data, "dialogsum", "baseline", "bart_large_test_output.txt")
    with open(base, encoding="utf-8") as f:
        hyps = f.read().split("\n")
    with open(os.path.join(data, "dialogsum", "dialogsum.test.jsonl"), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    refs = [[r[f"summary{k}"] for r in rows] for k in (1, 2, 3)]
    if len(hyps) != len(rows):
        report(f"baseline has {len(hyps)} lines, test split {len(rows)} rows", 0, float("inf"), ok=False)
        return
    c1 = c_scores(binary, None, refs[:1], escaped=False, hyp_path=base)  # the file as it is (no final newline)
    compare("BART vs summary1", c1, py_scores(hyps, refs[:1]))
    compare("BART vs summary1..3", c_scores(binary, hyps, refs), py_scores(hyps, refs))
    print("info: BART-large vs summary1, mean F1 x 100 (ours: rouge_score + stemmer, plain mean; "
          "published: HF datasets' rouge of the time, bootstrap median)")
    for m in METRICS:
        pub = f"{PUBLISHED[m]:.4f}" if m in PUBLISHED else "   -   "
        print(f"info:   {m:<10} ours {100 * c1['mean'][m][2]:.4f}   published {pub}")
    print(f"info:   BLEU       ours {c1['bleu']['score']:.4f} (corpus, sacrebleu defaults)")


def check_edges_and_random(binary, label):
    cases = edge_cases()
    hyps, refs = [h for h, _ in cases], [r for _, r in cases]
    compare(f"{label}edge cases, 1 reference", c_scores(binary, hyps, [refs]), py_scores(hyps, [refs]))
    refs2 = [hyps[-1:] + hyps[:-1], [""] * len(hyps)]  # other edge texts, and an empty reference, as more references
    compare(f"{label}edge cases, 3 references", c_scores(binary, hyps, [refs] + refs2), py_scores(hyps, [refs] + refs2))
    rng = random.Random(1234)
    uh = [random_unicode_text(rng) for _ in range(300)]
    ur = [[random_unicode_text(rng) for _ in range(300)] for _ in range(2)]
    compare(f"{label}random Unicode texts, 2 references", c_scores(binary, uh, ur), py_scores(uh, ur))
    bh = [random_bytes_text(rng) for _ in range(300)]
    br = [random_bytes_text(rng) for _ in range(300)]
    compare(f"{label}random bytes (invalid UTF-8), ROUGE", c_scores(binary, bh, [br]), py_scores(bh, [br], with_bleu=False), with_bleu=False)
    for kind in ("rouge", "13a"):
        c_tokens(binary, kind, bh)  # must not crash


def dialogsum_texts(data):
    texts = {}
    for split in ("train", "dev", "test"):
        with open(os.path.join(data, "dialogsum", f"dialogsum.{split}.jsonl"), encoding="utf-8") as f:
            rows = [json.loads(line) for line in f]
        texts[split] = [r[k] for r in rows for k in r if k == "dialogue" or k.startswith("summary")]
    return texts


def check_tokens(binary, data):
    texts = dialogsum_texts(data)
    everything = texts["train"] + texts["dev"] + texts["test"]
    vocab = sorted({w for t in everything for w in re.findall(r"[a-z0-9]+", t.lower())})
    rng = random.Random(7)
    words = vocab + PORTER_WORDS + generated_words(rng, 20000)
    tok = tokenizers.DefaultTokenizer(use_stemmer=True)
    want = [" ".join(tok.tokenize(w)) for w in words]
    compare_tokens("ROUGE tokens (stemmed): DialogSum words + Porter cases", c_tokens(binary, "rouge", words), want)
    some = texts["dev"] + texts["test"]
    want = [" ".join(tok.tokenize(t)) for t in some]
    compare_tokens("ROUGE tokens: DialogSum dev+test texts", c_tokens(binary, "rouge", some), want)
    lines = [line for t in everything for line in t.split("\n")]
    t13a = Tokenizer13a()
    want = [t13a(line.rstrip()) for line in lines]
    compare_tokens("13a tokens: every DialogSum line", c_tokens(binary, "13a", lines), want)


def check_cli_errors(binary):
    with tempfile.TemporaryDirectory() as d:
        two = write_lines(d, "two.txt", ["a", "b"], False)
        three = write_lines(d, "three.txt", ["a", "b", "c"], False)
        nul = os.path.join(d, "nul.txt")
        with open(nul, "wb") as f:
            f.write(b"a\x00b\n")
        bad = {
            "mismatched line counts": ["--hyp", two, "--ref", three],
            "no --ref": ["--hyp", two],
            "no --hyp": ["--ref", two],
            "unknown flag": ["--hyp", two, "--ref", two, "--bogus"],
            "flag without value": ["--hyp", two, "--ref"],
            "missing file": ["--hyp", two, "--ref", os.path.join(d, "absent.txt")],
            "NUL byte": ["--hyp", nul, "--ref", nul],
            "bad --print-tokens": ["--print-tokens", "words", "--hyp", two],
            "17 references": ["--hyp", two] + ["--ref", two] * 17,
        }
        for name, args in bad.items():
            p = run(binary, args)
            msg = p.stderr.decode(errors="replace").strip().split("\n")[0]
            report(f"CLI refuses: {name} ({msg[:40]})", 1, 0.0, ok=p.returncode != 0 and msg.startswith("error:"))
        p = run(binary, ["--hyp", two, "--ref", two, "--ref", two])
        report("CLI table output", 1, 0.0, ok=p.returncode == 0 and b"ROUGE-Lsum" in p.stdout and b"BLEU" in p.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--score-bin", default=os.path.join(REPO, "build", "score"))
    ap.add_argument("--asan-bin", default=None, help="a sanitizer build of score: reruns the edge cases and random texts")
    ap.add_argument("--data", default=os.environ.get("T5_DATA", os.path.join(REPO, "..", "shared", "data")))
    args = ap.parse_args()
    if not os.path.isdir(os.path.join(args.data, "dialogsum")):
        print(f"FAIL {args.data}/dialogsum not found: pass --data DIR or set T5_DATA")
        return 1
    print(f"rouge_score + nltk {__import__('nltk').__version__}, sacrebleu {sacrebleu.__version__}; tolerance {TOL:g} absolute")
    check_baseline(args.score_bin, args.data)
    check_edges_and_random(args.score_bin, "")
    check_tokens(args.score_bin, args.data)
    check_cli_errors(args.score_bin)
    if args.asan_bin:
        check_edges_and_random(args.asan_bin, "asan: ")
    print(f"test_metrics: {'FAIL: ' + ', '.join(failures) if failures else 'all OK'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
