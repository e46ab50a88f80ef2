#!/usr/bin/env python3
"""
dev/sweep_text.py — a randomized differential sweep of the C text code against the Python libraries
it reproduces, on generated text that nobody wrote by hand. A dev tool: not part of `make test`
(dev/test_tokenizer.py and dev/test_metrics.py hold the fixed cases, and the regressions it found).

    make build/t5tok build/score
    python3 dev/sweep_text.py                       # ~120k texts, 24k metric pairs, a few minutes
    python3 dev/sweep_text.py --seed 7 --texts 20000 --pairs 4000 --only metrics

Compared, exactly (ids, texts, tokens) or to 1e-6 (scores), through the same routes as the tests
(build/t5tok --null, build/score --json --unescape-newlines; their helpers are imported):
  tokenizer (tokenizer/spm.h, the real spiece.model):
    - encode ids against sentencepiece's encode (what prepro_dialogsum.py uses on a spiece.model);
      text that is not valid UTF-8 goes to sentencepiece as bytes, as dev/test_tokenizer.py does
    - decode(C ids) against sentencepiece's decode; pieces against encode(out_type=str) on a sample
    - decode of random id sequences against sentencepiece (skipping special tokens) and against
      transformers' T5Tokenizer (keeping them), the two decodes tokenizer/spm.h claims
    - info only: how often transformers' T5Tokenizer encodes differently from sentencepiece
  metrics (llmc/rouge.h, llmc/porter.h, llmc/bleu.h):
    - every pair's ROUGE-1/2/L/Lsum P/R/F against rouge_score (use_stemmer=True, score_multi),
      sentence BLEU and corpus BLEU (13a, exp smoothing) against sacrebleu, with 1 to 4 references
    - ROUGE tokens (stemmed) and 13a tokens of every text; stems of random words
Text kinds: code points from every plane and general category, characters NFKC changes, whitespace
and zero-width characters, controls, emoji sequences, long words and runs of digits or punctuation,
DialogSum sentences mutated with all of these, and (tokenizer, ROUGE) invalid UTF-8 bytes.
Prints one line per check with counts and mismatches, the first mismatches in full; exit 1 on any.
"""
import argparse
import os
import random
import sys
import time
import unicodedata

DEV = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, DEV)
import test_metrics as tm  # noqa: E402  (c_scores, py_scores, c_tokens, METRICS)
import test_tokenizer as tt  # noqa: E402  (c_encode, c_decode, sp_input, dialogsum_records)

REPO = os.path.dirname(DEV)
MAX_SHOWN = 4   # mismatches printed per check
CHUNK = 5000    # texts per t5tok / score call

# ---------------------------------------------------------------------------- character pools

WHITESPACE = ["\t", "\n", "\r", "\r\n", "\v", "\f", " ", "  ", "\u00a0", "\u1680", "\u2000", "\u2003",
              "\u2007", "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\u0085", "\x1c",
              "\x1d", "\x1e", "\x1f", "\u180e"]
ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u034f", "\u061c", "\u200e",
              "\u200f", "\u202a", "\u202e", "\u2066", "\u2069", "\ufe0f", "\ufe0e"]
EMOJI = ["😀", "👍🏽", "👩🏿‍🔬", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷", "🇯🇵🇺🇸", "1️⃣", "#️⃣", "❤️", "🏴\U000e0067\U000e0062"
         "\U000e0065\U000e006e\U000e0067\U000e007f", "🧑‍🤝‍🧑", "👋🏻", "☺", "©️", "🀄", "🫠"]
COMPAT_SAMPLES = ["ﬁ", "ﬂ", "ﬀ", "ﬃ", "ﬄ", "ﬅ", "ﬆ", "Ĳ", "ǅ", "ǈ", "㎏", "㍱", "½", "⅓", "²", "³", "ⁿ", "₂",
                  "Ⅻ", "ⅷ", "①", "⑳", "⓪", "㉑", "㈱", "ｶﾞ", "ﾊﾟ", "ｱ", "ﾟ", "ﾞ", "ＡＢＣ", "ｚ", "１２３", "！？",
                  "ᄀ", "ᅡ", "ᆨ", "ㄱ", "ㅏ", "豈", "\U0002f800", "ﭐ", "ﷲ", "ﻼ", "ﺍ", "ℌ", "ℍ", "ℵ", "Å", "K",
                  "𝔘", "𝟙", "🄐", "🅐", "µ", "ſ", "ẛ", "…", "‥", "′″", "™", "℠", "℃", "℉", "ª", "º", "Ǆ", "ǲ"]
PUNCT = list(".,;:!?-'\"()[]{}<>/\\|@#$%^&*_+=~`") + ["...", "--", "''", "``", "&amp;", "&lt;", "&gt;",
                                                      "&quot;", "<skipped>", "-\n", "'s", "n't", "&amp;quot;",
                                                      "&&lt;", "&lt&gt;", "<skip<skipped>ped>", "1.", ".5", "3-"]
ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def code_point_pools():
    """general category -> code points (every plane), and the characters NFKC changes"""
    by_cat, nfkc = {}, []
    for c in range(0x110000):
        if 0xD800 <= c < 0xE000:
            continue  # surrogates: not encodable in UTF-8
        ch = chr(c)
        by_cat.setdefault(unicodedata.category(ch), []).append(ch)
        if unicodedata.normalize("NFKC", ch) != ch:
            nfkc.append(ch)
    return by_cat, nfkc


class Gen:
    """random text of every kind, from one seeded generator"""

    def __init__(self, seed, words, sentences):
        self.rng = random.Random(seed)
        self.by_cat, self.nfkc = code_point_pools()
        self.cats = sorted(self.by_cat)
        self.words = words
        self.sentences = sentences

    def char(self):
        r, rng = self.rng.random(), self.rng
        if r < 0.25:
            return rng.choice(ALNUM)
        if r < 0.35:
            return rng.choice(self.by_cat[rng.choice(self.cats)])  # any category, any plane
        if r < 0.50:
            return rng.choice(self.nfkc)
        if r < 0.58:
            return rng.choice(COMPAT_SAMPLES)
        if r < 0.68:
            return rng.choice(WHITESPACE)
        if r < 0.73:
            return rng.choice(ZERO_WIDTH)
        if r < 0.78:
            return rng.choice(EMOJI)
        if r < 0.82:
            return rng.choice(self.by_cat["Mn"] + self.by_cat["Me"])  # combining marks
        if r < 0.84:
            return self.composing()
        if r < 0.86:
            return chr(rng.randrange(0x20)) if rng.random() < 0.7 else chr(rng.randrange(0x7f, 0xa0))
        if r < 0.93:
            return rng.choice(PUNCT)
        return " " + rng.choice(self.words) + " "

    def composing(self):
        """sequences that NFKC composes: letter + combining marks, Hangul jamo L V (T), kana + voicing marks"""
        rng = self.rng
        r = rng.random()
        if r < 0.4:
            return rng.choice("aeioucnAEOUyz") + "".join(chr(rng.randrange(0x300, 0x370)) for _ in range(rng.randint(1, 3)))
        if r < 0.7:
            t = chr(rng.randrange(0x11A8, 0x11C3)) if rng.random() < 0.5 else ""
            return chr(rng.randrange(0x1100, 0x1113)) + chr(rng.randrange(0x1161, 0x1176)) + t
        if r < 0.85:
            return rng.choice("ｶｷｸｹｺｻｼｽﾊﾋﾌﾍﾎｳ") + rng.choice("ﾞﾟ")
        return rng.choice("かきくはひふへほう") + rng.choice(["\u3099", "\u309a", "゛", "゜"])

    def chars(self, lo, hi):
        return "".join(self.char() for _ in range(self.rng.randint(lo, hi)))

    def long_run(self):
        rng = self.rng
        unit = rng.choice(["a", "ab", "x" * 7, "9", "12,", ".", "!?", "-", " ", "\u3000", "日本", "😀",
                           "e\u0301", "ﬁ", "ｱ", rng.choice(self.words), rng.choice(self.nfkc)])
        return unit * rng.randint(50, 3000 // len(unit) + 50)

    def mutate(self, text):
        """a DialogSum text with a few random insertions, replacements, deletions and case changes"""
        rng = self.rng
        s = list(text)
        for _ in range(rng.randint(1, 8)):
            i = rng.randint(0, len(s))
            op = rng.random()
            if op < 0.45:
                s[i:i] = list(self.chars(1, 4))
            elif op < 0.65 and i < len(s):
                s[i] = self.char()
            elif op < 0.75:
                del s[i:i + rng.randint(1, 5)]
            elif op < 0.85 and i < len(s) and len(s[i]) == 1 and "!" <= s[i] <= "~":
                s[i] = chr(ord(s[i]) + 0xFEE0)  # the full-width twin
            else:
                s[i:i + 3] = [c.upper() if rng.random() < 0.5 else c for c in s[i:i + 3]]
        return "".join(s)

    def text(self):
        r = self.rng.random()
        if r < 0.40:
            return self.chars(0, 40)
        if r < 0.85:
            return self.mutate(self.rng.choice(self.sentences))
        if r < 0.92:
            return self.chars(0, 5) + self.long_run() + self.chars(0, 5)
        return " ".join(self.rng.choice(self.words) for _ in range(self.rng.randint(0, 30)))

    def break_utf8(self, b):
        """b with bytes that are not valid UTF-8 inserted"""
        bad = [b"\x80", b"\xbf", b"\xc0\xaf", b"\xc3", b"\xe6\x97", b"\xf0\x9f\x98", b"\xed\xa0\x80",
               b"\xed\xbf\xbf", b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xfe", b"\xff",
               b"\xe0\x80\xaf", b"\xc4", b"\xe2\x84"]
        for _ in range(self.rng.randint(1, 4)):
            i = self.rng.randint(0, len(b))
            piece = self.rng.choice(bad) if self.rng.random() < 0.7 else bytes([self.rng.randrange(0x80, 0x100)])
            b = b[:i] + piece + b[i:]
        return b


def dialogsum_material(data):
    """(words, sentences) of DialogSum: every word once, every line of every text"""
    sentences, words = [], set()
    for _, text in tt.dialogsum_records(data):
        for line in text.split("\n"):
            if line:
                sentences.append(line)
                words.update(line.split())
    return sorted(words), sentences


# ---------------------------------------------------------------------------- reporting

class Tally:
    def __init__(self):
        self.failed = []

    def compare(self, name, got, want, labels):
        bad = [i for i in range(len(want)) if got[i] != want[i]]
        ok = not bad and len(got) == len(want)
        print("%-4s %-60s %8d compared, %6d mismatches" % ("OK" if ok else "FAIL", name, len(want), len(bad)), flush=True)
        for i in bad[:MAX_SHOWN]:
            print("       %s\n         C:      %r\n         Python: %r" % (labels[i][:400], str(got[i])[:400], str(want[i])[:400]))
        if not ok:
            self.failed.append(name)
        return bad


def chunks(seq, n=CHUNK):
    return [seq[i:i + n] for i in range(0, len(seq), n)]


# ---------------------------------------------------------------------------- the tokenizer

def tokenizer_texts(gen, count):
    """count byte strings without NUL (t5tok's record separator); one in 12 not valid UTF-8"""
    out = []
    while len(out) < count:
        b = gen.text().replace("\0", "").encode("utf-8")
        if gen.rng.random() < 1 / 12:
            b = gen.break_utf8(b)
        out.append(b)
    return out


def c_encode_all(t5tok, model, texts, pieces=False):
    out = []
    for part in chunks(texts):
        out += tt.c_encode(t5tok, model, part, pieces=pieces)[0]
    return out


def c_decode_all(t5tok, model, id_lists, skip_special):
    out = []
    for part in chunks(id_lists):
        out += tt.c_decode(t5tok, model, part, skip_special=skip_special)[0]
    return out


def random_id_lists(rng, count, n_pieces, vocab):
    """random id sequences: mostly ordinary pieces, some <pad> </s> <unk> "▁" and sentinels"""
    special = [0, 1, 2, 3, 3, 3, vocab - 1, n_pieces]
    out = []
    for _ in range(count):
        n = rng.randint(0, 20)
        out.append([rng.choice(special) if rng.random() < 0.2 else rng.randrange(3, n_pieces) for _ in range(n)])
    return out


def sweep_tokenizer(tally, args, gen):
    import sentencepiece as spm
    model = os.path.join(args.data, "t5", "spiece.model")
    sp = spm.SentencePieceProcessor(model_file=model)
    texts = tokenizer_texts(gen, args.texts)
    labels = [repr(t) for t in texts]
    t0 = time.time()
    got = c_encode_all(args.t5tok, model, texts)
    want = [sp.encode(tt.sp_input(t)) for t in texts]
    tally.compare("tokenizer: encode ids vs sentencepiece", got, want, labels)
    dec = c_decode_all(args.t5tok, model, got, skip_special=True)
    tally.compare("tokenizer: decode(C ids) vs sentencepiece", dec, [sp.decode(ids).encode("utf-8") for ids in got], labels)
    sample = texts[::10]
    pieces = c_encode_all(args.t5tok, model, sample, pieces=True)
    tally.compare("tokenizer: pieces vs encode(out_type=str), 1 in 10", pieces,
                  [sp.encode(tt.sp_input(t), out_type=str) for t in sample], labels[::10])
    print("     (%d texts, %.1f MB, %.0f s)" % (len(texts), sum(map(len, texts)) / 1e6, time.time() - t0))
    sweep_decode(tally, args, sp, model, gen.rng)
    hf_encode_info(args, sp, texts)


def hf_tokenizer(args):
    try:
        from transformers import T5Tokenizer
    except ImportError:
        return None
    return T5Tokenizer.from_pretrained(os.path.join(args.data, "t5"))


def sweep_decode(tally, args, sp, model, rng):
    n_pieces = sp.get_piece_size()
    ids = random_id_lists(rng, args.texts // 4, n_pieces, n_pieces + 100)
    plain = [[i for i in x if i < n_pieces] for x in ids]  # sentencepiece refuses sentinels
    got = c_decode_all(args.t5tok, model, plain, skip_special=True)
    tally.compare("tokenizer: decode random ids vs sentencepiece", got, [sp.decode(x).encode("utf-8") for x in plain],
                  [str(x) for x in plain])
    hf = hf_tokenizer(args)
    if hf is None:
        print("skip tokenizer: keep-special decode vs transformers (not installed)")
        return
    got = c_decode_all(args.t5tok, model, ids, skip_special=False)
    want = [hf.decode(x, skip_special_tokens=False).encode("utf-8") for x in ids]
    tally.compare("tokenizer: keep-special decode vs transformers T5Tokenizer", got, want, [str(x) for x in ids])


def hf_encode_info(args, sp, texts):
    """not a check: prepro uses sentencepiece; transformers' tokenizer is another implementation"""
    hf = hf_tokenizer(args)
    if hf is None:
        return
    valid = [t.decode("utf-8") for t in texts if tt.sp_input(t) is not t][: len(texts) // 5]
    hf_ids = hf(valid, add_special_tokens=False)["input_ids"]
    diff = sum(a != sp.encode(t) for a, t in zip(hf_ids, valid))
    print("info transformers T5Tokenizer encode vs sentencepiece: %d of %d texts differ (not the C side's contract)"
          % (diff, len(valid)))


# ---------------------------------------------------------------------------- the metrics

def metric_text(gen):
    """hypotheses and references without NUL (build/score refuses it)"""
    return metric_text_any(gen).replace("\0", "")


def metric_text_any(gen):
    """shorter texts, Lsum sentence breaks, some empty or symbol-only"""
    rng = gen.rng
    r = rng.random()
    if r < 0.05:
        return rng.choice(["", " ", "\n", "...", "!!! ???", "- -", "'s", "12", "\u00a0", "&amp;"])
    if r < 0.55:
        parts = [gen.mutate(rng.choice(gen.sentences)) if rng.random() < 0.7 else rng.choice(gen.sentences)
                 for _ in range(rng.randint(1, 3))]
        return rng.choice(["\n", " ", "\n\n", ". "]).join(parts)
    if r < 0.80:
        return " ".join(rng.choice(gen.words) if rng.random() < 0.8 else gen.chars(1, 3) for _ in range(rng.randint(0, 25)))
    if r < 0.97:
        return gen.chars(0, 40)
    return gen.long_run()[:600]


def related(gen, text):
    """a reference that shares words with text, so scores are not all zero"""
    words = text.split(" ")
    gen.rng.shuffle(words)
    keep = [w for w in words if gen.rng.random() < 0.7]
    return (gen.mutate(" ".join(keep)) if gen.rng.random() < 0.5 else " ".join(keep)).replace("\0", "")


def metric_pairs(gen, count, nrefs):
    hyps, refs = [], [[] for _ in range(nrefs)]
    for _ in range(count):
        h = metric_text(gen)
        hyps.append(h)
        for k in range(nrefs):
            refs[k].append(related(gen, h) if gen.rng.random() < 0.6 else metric_text(gen))
    return hyps, refs


def score_mismatches(c, py, with_bleu):
    """indices of examples whose scores differ by more than the tests' tolerance; corpus BLEU diff"""
    bad = []
    for i, (ce, pe) in enumerate(zip(c["examples"], py["examples"])):
        keys = tm.METRICS + (["bleu"] if with_bleu else [])
        vals = [(a, b) for m in tm.METRICS for a, b in zip(ce[m], pe[m])]
        if with_bleu:
            vals.append((ce["bleu"], pe["bleu"]))
        if any(abs(a - b) > tm.TOL for a, b in vals):
            bad.append((i, {k: (ce[k], pe[k]) for k in keys}))
    corpus_ok = True
    if with_bleu:
        cb, pb = c["bleu"], py["bleu"]
        reals = [(cb[k], pb[k]) for k in ("score", "bp", "ratio")] + list(zip(cb["precisions"], pb["precisions"]))
        corpus_ok = (all(abs(a - b) <= tm.TOL for a, b in reals)
                     and all(cb[k] == pb[k] for k in ("hyp_len", "ref_len", "counts", "totals")))
    return bad, corpus_ok


def sweep_scores(tally, args, label, hyps, refs, with_bleu=True):
    bad, corpus_bad, n = [], 0, 0
    for lo in range(0, len(hyps), CHUNK):
        h, r = hyps[lo:lo + CHUNK], [x[lo:lo + CHUNK] for x in refs]
        c = tm.c_scores(args.score_bin, h, r)
        py = tm.py_scores(h, r, with_bleu=with_bleu)
        b, corpus_ok = score_mismatches(c, py, with_bleu)
        bad += [(lo + i, d) for i, d in b]
        corpus_bad += not corpus_ok
        n += len(h)
    ok = not bad and not corpus_bad
    print("%-4s %-60s %8d compared, %6d mismatches%s" % ("OK" if ok else "FAIL", label, n, len(bad),
          ", corpus BLEU differs in %d chunks" % corpus_bad if corpus_bad else ""), flush=True)
    for i, d in bad[:MAX_SHOWN]:
        print("       hyp %r\n       refs %r\n       (C, Python): %s" % (hyps[i][:300], [x[i][:300] for x in refs], d))
    if not ok:
        tally.failed.append(label)


def sweep_tokens(tally, args, gen, texts):
    from rouge_score import tokenizers
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
    rouge_tok, t13a = tokenizers.DefaultTokenizer(use_stemmer=True), Tokenizer13a()
    words = ["".join(gen.rng.choice("abcdefghijklmnopqrstuvwxyz0123456789" if gen.rng.random() < 0.1 else "aeiouybcdlmnrstgsy")
                     for _ in range(gen.rng.randint(1, 12))) for _ in range(len(texts) // 2)]
    words += tm.generated_words(gen.rng, len(texts) // 2)  # stems + suffixes of every Porter rule
    got = sum((tm.c_tokens(args.score_bin, "rouge", p) for p in chunks(words)), [])
    tally.compare("ROUGE stems: random words", got, [" ".join(rouge_tok.tokenize(w)) for w in words], words)
    got = sum((tm.c_tokens(args.score_bin, "rouge", p) for p in chunks(texts)), [])
    tally.compare("ROUGE tokens: generated texts", got, [" ".join(rouge_tok.tokenize(t)) for t in texts], [repr(t) for t in texts])
    got = sum((tm.c_tokens(args.score_bin, "13a", p) for p in chunks(texts)), [])
    tally.compare("13a tokens: generated texts", got, [t13a(t.rstrip()) for t in texts], [repr(t) for t in texts])


def sweep_metrics(tally, args, gen):
    per = args.pairs // 4
    for nrefs in (1, 2, 3, 4):
        hyps, refs = metric_pairs(gen, per, nrefs)
        sweep_scores(tally, args, "ROUGE + BLEU, %d reference%s" % (nrefs, "s" if nrefs > 1 else ""), hyps, refs)
    texts = [metric_text(gen) for _ in range(args.pairs)]
    sweep_tokens(tally, args, gen, texts)
    bh = [gen.break_utf8(metric_text(gen).encode("utf-8")).replace(b"\0", b"") for _ in range(per)]
    br = [gen.break_utf8(related(gen, metric_text(gen)).encode("utf-8")).replace(b"\0", b"") for _ in range(per)]
    sweep_scores(tally, args, "ROUGE, invalid UTF-8 (Python: errors='replace')", bh, [br], with_bleu=False)


# ---------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--t5tok", default=os.path.join(REPO, "build", "t5tok"))
    ap.add_argument("--score-bin", default=os.path.join(REPO, "build", "score"))
    ap.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--texts", type=int, default=120000, help="tokenizer texts (default %(default)s)")
    ap.add_argument("--pairs", type=int, default=24000, help="metric pairs (default %(default)s)")
    ap.add_argument("--only", choices=["tokenizer", "metrics"])
    args = ap.parse_args()
    t0 = time.time()
    words, sentences = dialogsum_material(args.data)
    gen = Gen(args.seed, words, sentences)
    tally = Tally()
    if args.only != "metrics":
        sweep_tokenizer(tally, args, gen)
    if args.only != "tokenizer":
        sweep_metrics(tally, args, gen)
    print("sweep_text: seed %d, %s, %.0f s" % (args.seed, "FAIL: " + "; ".join(tally.failed) if tally.failed else "all OK",
                                              time.time() - t0))
    return 1 if tally.failed else 0


if __name__ == "__main__":
    sys.exit(main())
