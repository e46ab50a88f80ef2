#!/usr/bin/env python3
"""Random but plausible ./train_t5 command lines on a tiny model over the real DialogSum shards, and the
failures a run meets (a stop signal at a random moment then --resume, a bad shard, a flag out of range, a
missing file, a read-only or full output directory). By hand, not part of `make test`.

    make build/asan/train_t5
    python3 dev/fuzz_cli.py [--quick] [-n 150] [--seed S] [--bin build/asan/train_t5] [--data out/dialogsum]

Each case must exit 0, or non-zero with an `error:` line; never crash, hang, print a sanitizer report,
leave a *.tmp behind, or write a half file (safetensors checked against their headers), NaN or invalid
JSON / UTF-8 into metrics.jsonl, generations.jsonl or scores.json. A run stopped by a signal and resumed
must log the same losses and grad norms as the same run uninterrupted. The failing cases' command lines and
directories are kept under the printed work directory; `--replay SEED:CASE` reruns one.

Time (2 busy cores, OMP_NUM_THREADS=1, the ASan build): a case takes 0.1 to 20 s (a resumed one runs twice
plus its reference), --quick (25 cases) about 1 minute, 100 cases about 4 to 5 minutes.
"""
import argparse
import json
import math
import os
import random
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPI = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2"]
SANITIZER = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehaviorSanitizer",
             "Segmentation fault", "Assertion", "double free", "stack smashing")
SIGNAL_RC = {signal.SIGTERM: 143, signal.SIGINT: 130, signal.SIGHUP: 129, signal.SIGUSR1: 138}


class Case:
    def __init__(self, rng, idx, root, data):
        self.rng, self.idx, self.data = rng, idx, data
        self.dir = os.path.join(root, f"case{idx:04d}")
        os.makedirs(self.dir)
        self.out = os.path.join(self.dir, "run")
        self.problems, self.log, self.mounts = [], [], []

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def fail(self, what):
        self.problems.append(what)


def pick(rng, *xs):
    return rng.choice(xs)


def tiny_model(rng):
    a = ["--model", pick(rng, "flan-t5-small", "flan-t5-small", "t5-small"), "--d-model", str(pick(rng, 16, 32)),
         "--num-heads", str(pick(rng, 1, 2)), "--d-kv", str(pick(rng, 8, 16)), "--d-ff", str(pick(rng, 32, 64)),
         "--num-layers", "1", "--num-decoder-layers", str(pick(rng, 1, 1, 2))]
    if rng.random() < 0.2:
        a += ["--ffn", pick(rng, "relu", "gelu", "gelu_new", "silu", "gated-gelu", "gated-relu", "gated-silu")]
    if rng.random() < 0.15:
        a += ["--tied", pick(rng, "0", "1")]
    if rng.random() < 0.1:
        a += ["--scale-output", pick(rng, "0", "1")]
    if rng.random() < 0.15:
        a += ["--num-buckets", str(pick(rng, 4, 8, 32)), "--max-distance", str(pick(rng, 8, 16, 128))]
    if rng.random() < 0.2:
        a += ["--init", pick(rng, "scratch", "hf")]
    if rng.random() < 0.3:
        a += ["--dropout", pick(rng, "0", "0.1", "0.3")]
    return a


def gen_flags(rng, src_len):
    """generation options, kept cheap: few tokens, few beams"""
    mnt = rng.randint(1, 12)
    a = ["--max-new-tokens", str(mnt)]
    if rng.random() < 0.5:
        a += ["--num-beams", str(rng.randint(1, 4))]
    if rng.random() < 0.3:
        a += ["--length-penalty", pick(rng, "0", "0.6", "2", "-1")]
    if rng.random() < 0.3:
        a += ["--early-stopping", pick(rng, "0", "1")]
    if rng.random() < 0.3:
        a += ["--no-repeat-ngram", str(rng.randint(0, 3))]
    if rng.random() < 0.3:
        a += ["--min-new-tokens", str(rng.randint(0, mnt))]
    if rng.random() < 0.3:
        a += ["--repetition-penalty", pick(rng, "1", "1.3", "0.7")]
    if rng.random() < 0.3:
        a += ["--gen-batch-size", str(rng.randint(1, 5))]
    if rng.random() < 0.3:
        a += ["--eos-bias", pick(rng, "0", "-5", "3", "-1e9")]
    return a


def train_flags(c, mpi):
    """one plausible training command (without the binary); returns (args, info)"""
    rng, d = c.rng, c.data
    info = {"val": False, "lora": False, "ckpt": True}
    a = tiny_model(rng)
    src, tgt = pick(rng, 8, 16, 32, 48), pick(rng, 4, 8, 16)
    a += ["--train-file", os.path.join(d, "train.bin"), "--max-src-len", str(src), "--max-tgt-len", str(tgt),
          "--out-dir", c.out, "--seed", str(rng.randint(0, 1000))]
    bs, ga = rng.randint(1, 5), pick(rng, 1, 1, 2, 3)
    a += ["--batch-size", str(bs), "--grad-accum", str(ga)]
    per_epoch = 12460 // (bs * (2 if mpi else 1))
    if rng.random() < 0.7:
        steps = rng.randint(1, 8)
        a += ["--steps", str(steps)]
    else:
        want = rng.randint(0, 6) # 0: a fraction of an epoch shorter than one step
        epochs = max(want * ga, 0.3) / per_epoch
        a += ["--epochs", f"{epochs:.6g}"]
        steps = want
    info["steps"] = steps
    if rng.random() < 0.7:
        info["val"] = True
        a += ["--val-file", os.path.join(d, "val.bin"), "--eval-batches", str(pick(rng, 1, 2, 3, 1, 0 if rng.random() < 0.1 else 2))]
        if rng.random() < 0.3:
            a += ["--eval-batch-size", str(rng.randint(1, 8))]
    # mostly coherent: evaluation flags with a val file, rouge* with --eval-rouge, --early-stop with --keep-best;
    # sometimes not (coherent = False), to see the refusals
    coherent = rng.random() < 0.9
    ev = info["val"] or not coherent
    if ev and rng.random() < 0.7:
        a += ["--eval-every", str(pick(rng, 0, 1, 2, 3, 5, 50))]
    rouge = ev and rng.random() < 0.4
    if rouge:
        a += ["--eval-rouge", str(rng.randint(1, 4)), "--max-new-tokens", str(rng.randint(1, 8))]
    best = None
    if ev and rng.random() < 0.4:
        best = pick(rng, "none", "val_loss", "val_loss", "rouge1", "rouge2", "rougeL", "rougeLsum")
        if best.startswith("rouge") and not rouge and coherent:
            best = "val_loss"
        a += ["--keep-best", best]
    if (best not in (None, "none") or not coherent) and rng.random() < 0.4:
        a += ["--early-stop", str(rng.randint(0, 3))]
    if rng.random() < 0.6:
        a += ["--checkpoint-every", str(pick(rng, 0, 1, 2, 3, 100))]
    if rng.random() < 0.4:
        a += ["--keep-checkpoints", str(rng.randint(1, 4))]
    a += ["--async-checkpoint", pick(rng, "0", "1")]
    if rng.random() < 0.3:
        a += ["--schedule", pick(rng, "constant", "linear", "cosine")]
    if rng.random() < 0.3:
        a += ["--warmup", str(rng.randint(0, 6))]
    if rng.random() < 0.2:
        a += ["--schedule-steps", str(rng.randint(0, 12))]
    if rng.random() < 0.3:
        a += ["--lr", pick(rng, "1e-3", "3e-4", "0.05", "0")]  # 0: the validation loss never improves (--early-stop)
    if rng.random() < 0.2:
        a += ["--clip", pick(rng, "0", "0.5", "1")]
    if rng.random() < 0.2:
        a += ["--weight-decay", pick(rng, "0", "0.1"), "--decay-norms", pick(rng, "0", "1")]
    if rng.random() < 0.3:
        a += ["--shape-ladder", pick(rng, "0,0", "8,4", "16,8", "5,3", "64,64")]
    if rng.random() < 0.3:
        a += ["--bucket", pick(rng, "0", "1")]
    if rng.random() < 0.3:
        a += ["--shuffle", pick(rng, "0", "1")]
    if rng.random() < 0.3:
        info["lora"] = True
        a += ["--lora-r", str(rng.randint(1, 4))]
        if rng.random() < 0.5:
            a += ["--lora-alpha", pick(rng, "1", "8", "16", "0.5")]
        if rng.random() < 0.5:
            t = rng.sample(["q", "k", "v", "o", "wi_0", "wi_1", "wo"], rng.randint(1, 3))
            a += ["--lora-targets", "all-linear" if rng.random() < 0.25 else ",".join(t)]
        if rng.random() < 0.3:
            a += ["--lora-dropout", pick(rng, "0", "0.1")]
        if rng.random() < 0.4:
            a += ["--merge-lora", c.path("merged")]
        if rng.random() < 0.3:
            a += ["--save-lora", c.path("adapter")]
    if rng.random() < 0.3:
        a += ["--optimizer", "adafactor"]
        rel = pick(rng, "0", "1")
        a += ["--adafactor-relative-step", rel]
        if rng.random() < 0.5:
            a += ["--adafactor-scale-parameter", pick(rng, "0", "1")]
        if rel == "1" and rng.random() < 0.4:
            a += ["--adafactor-warmup-init", "1"]
        if rng.random() < 0.4:
            a += ["--adafactor-beta1", pick(rng, "0", "0.9")]
        if rng.random() < 0.3:
            a += ["--adafactor-clip", pick(rng, "1", "0.5")]
        if rng.random() < 0.3:
            a += ["--adafactor-decay", pick(rng, "-0.8", "-0.5")]
        if rng.random() < 0.2:
            a += ["--adafactor-eps1", "1e-30", "--adafactor-eps2", pick(rng, "1e-3", "1e-2")]
        if rel == "1" and coherent:
            a = strip_flag(a, "--lr")
    if rng.random() < 0.25:
        a += ["--save-hf", c.path("hf")]
        if rng.random() < 0.4:
            a += ["--save-hf-dtype", pick(rng, "fp32", "bf16")]
        if rng.random() < 0.3:
            a += ["--max-shard-size", pick(rng, "1MB", "3000000", "50GB")]
    if rng.random() < 0.25:
        a += ["--eval-split", os.path.join(d, "test"), "--eval-limit", str(rng.randint(1, 3))]
        a += gen_flags(rng, src)
        if rng.random() < 0.3:
            a += ["--eval-out", c.path("eval")]
    if rng.random() < 0.15:
        a += ["--save-checkpoint", c.path("final.ckpt")]
    if rng.random() < 0.1:
        a += ["--data-log", c.path("datalog")]
    if rng.random() < 0.05:
        a += ["--dry-run", "1"]
    return a, info


# ----------------------------------------------------------------------------- checks of what a run left

def strict_json(text):
    def no_const(x):
        raise ValueError(f"non-finite number {x}")
    return json.loads(text, parse_constant=no_const)


def check_jsonl(c, path):
    try:
        raw = open(path, "rb").read()
    except OSError:
        return
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return c.fail(f"{path}: not UTF-8 ({e})")
    if text and not text.endswith("\n"):
        c.fail(f"{path}: last line not whole")
    for i, line in enumerate(text.splitlines()):
        try:
            strict_json(line)
        except ValueError as e:
            c.fail(f"{path}:{i + 1}: {e}: {line[:120]}")


def check_safetensors(c, path):
    b = open(path, "rb").read()
    try:
        (n,) = struct.unpack("<Q", b[:8])
        hdr = json.loads(b[8:8 + n].decode("utf-8"))
        end = max([v["data_offsets"][1] for k, v in hdr.items() if k != "__metadata__"] + [0])
        if 8 + n + end != len(b):
            c.fail(f"{path}: size {len(b)} but the header says {8 + n + end}")
    except Exception as e:  # noqa: BLE001  any failure to parse is a finding
        c.fail(f"{path}: unreadable safetensors ({e})")


def check_tree(c, final=True):
    for root, _, files in os.walk(c.dir):
        for f in files:
            p = os.path.join(root, f)
            if f.endswith(".tmp") and final:
                c.fail(f"leftover temporary file {p}")
            elif f in ("metrics.jsonl", "generations.jsonl", "generations_compare.jsonl"):
                check_jsonl(c, p)
            elif f.endswith(".json") and "_bad" not in root:
                try:
                    strict_json(open(p, encoding="utf-8").read())
                except (ValueError, UnicodeDecodeError) as e:
                    c.fail(f"{p}: {e}")
            elif f.endswith(".safetensors"):
                check_safetensors(c, p)
            elif os.path.getsize(p) == 0 and root != c.dir and f != "run.lock":  # inputs lie in c.dir itself
                c.fail(f"empty file {p}")


def train_records(out):
    p = os.path.join(out, "metrics.jsonl")
    if not os.path.exists(p):
        return {}
    recs = {}
    for line in open(p, encoding="utf-8", errors="replace"):
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if r.get("type") == "train":
            recs[r["step"]] = (r["loss"], r["grad_norm"])
    return recs


# ----------------------------------------------------------------------------- running

def env(mpi):
    """leaks checked in single-process runs; under mpirun Open MPI's plugins (dlclose'd, so unnamed in the
    report: no suppression can match them) leak at exit"""
    return dict(os.environ, OMP_NUM_THREADS="1", ASAN_OPTIONS=f"detect_leaks={0 if mpi else 1}")


def launch(c, cmd, timeout, kill=None, stdin=None):
    """run cmd; kill = (signal, seconds) sends the signal after that long. Returns (rc, stdout, stderr)."""
    c.log.append(" ".join(shlex.quote(x) for x in cmd))
    p = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(cmd[0] == "mpirun"),
                         stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL, start_new_session=True,
                         errors="replace")
    try:
        if kill:
            try:
                out, err = p.communicate(stdin, timeout=kill[1])
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, kill[0]) if cmd[0] == "mpirun" else p.send_signal(kill[0])
                out, err = p.communicate(timeout=timeout)
        else:
            out, err = p.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        c.fail(f"hang: no exit within {timeout} s")
        return -999, out, err
    with open(c.path("log.txt"), "a") as f:
        f.write(f"$ {c.log[-1]}\n--- rc {p.returncode}\n--- stdout\n{out[-4000:]}\n--- stderr\n{err[-4000:]}\n\n")
    return p.returncode, out, err


def judge(c, rc, out, err, sent=None, want_fail=None):
    """the run's exit and output: sanitizer reports, crashes, error lines"""
    for s in SANITIZER:
        if s in err or s in out:
            c.fail(f"sanitizer / crash: {next(l for l in (err + out).splitlines() if s in l)[:200]}")
            return
    if rc == -999:
        return
    if sent is not None and rc in (SIGNAL_RC.get(sent), -sent, 128 + sent):
        return
    if rc < 0 or rc > 128 and rc != 124:
        c.fail(f"died: exit {rc}; stderr {err.strip()[-300:]}")
    elif rc != 0 and not any(l.lstrip().startswith("error:") or "] error:" in l for l in err.splitlines()):
        c.fail(f"exit {rc} without an 'error:' line; stderr {err.strip()[-300:]!r}")
    elif want_fail and rc == 0:
        c.fail(f"exit 0 despite {want_fail}")


def err_line(err):
    return next((l.strip() for l in err.splitlines() if "error:" in l), "")


def mpi_ok():
    return shutil.which("mpirun") is not None


def case_train(c, args, timeout):
    """a plain run, perhaps under mpirun, then a follow-up use of what it wrote"""
    rng = c.rng
    mpi = mpi_ok() and rng.random() < 0.12
    a, info = train_flags(c, mpi)
    cmd = (MPI if mpi else []) + [args.bin] + a
    rc, out, err = launch(c, cmd, timeout)
    judge(c, rc, out, err)
    c.kind = "train" + (" mpi" if mpi else "")
    c.summary = err_line(err) if rc else "ok"
    check_tree(c)
    if rc == 0 and not c.problems and "--dry-run" not in a:
        follow_up(c, args, a, info, timeout)


def follow_up(c, args, a, info, timeout):
    """use what the run wrote: --summarize, --eval-split, --model from the export or the checkpoint,
    a second --resume auto over the finished run"""
    rng = c.rng
    model = os.path.join(c.out, "model")
    adapter = os.path.join(c.out, "adapter") if info["lora"] else None
    for flag in ("--save-hf", "--merge-lora"):
        if flag in a:
            model = a[a.index(flag) + 1]
    ck = os.path.join(c.out, "checkpoints")
    r = rng.random()
    if r < 0.3 and os.path.isdir(model):
        dlg = c.path("dialogue.txt")
        with open(dlg, "w", encoding="utf-8") as f:
            f.write(pick(rng, "#Person1#: Hi, how are you?\n#Person2#: Fine, thanks. é ü 😀\n", "", "a", "x " * 400))
        cmd = [args.bin, "--model", model, "--summarize", pick(rng, dlg, "-")] + gen_flags(rng, 32)
        stdin = open(dlg, encoding="utf-8").read() if "-" in cmd else None
        rc, out, err = launch(c, cmd, timeout, stdin=stdin)
        judge(c, rc, out, err)
        c.kind += " +summarize"
    elif r < 0.4 and adapter and os.path.isdir(adapter):
        # the adapter over its base: the same preset, dims and seed (a random base is drawn from the seed)
        base = a[:a.index("--train-file")] + ["--seed", a[a.index("--seed") + 1]]
        cmd = [args.bin] + base + ["--lora-adapter", adapter, "--eval-split", os.path.join(c.data, "val"),
                                   "--eval-limit", "2", "--eval-out", c.path("eval3")] + gen_flags(rng, 32)
        rc, out, err = launch(c, cmd, timeout)
        judge(c, rc, out, err)
        c.kind += " +adapter"
    elif r < 0.55 and os.path.isdir(model):
        cmd = [args.bin, "--model", model, "--eval-split", os.path.join(c.data, pick(rng, "test", "val")),
               "--eval-limit", str(rng.randint(1, 3)), "--eval-out", c.path("eval2")] + gen_flags(rng, 32)
        if rng.random() < 0.3:
            cmd += ["--baseline-model", "flan-t5-small", "--d-model", "32", "--num-heads", "2", "--d-kv", "16",
                    "--d-ff", "64", "--num-layers", "1", "--num-decoder-layers", "1"]
        rc, out, err = launch(c, cmd, timeout)
        judge(c, rc, out, err)
        c.kind += " +eval-split"
    elif r < 0.75 and os.path.isdir(ck) and os.listdir(ck):
        # the same command again with --resume auto / latest: the run is complete
        cmd = [args.bin] + a + ["--resume", pick(rng, "auto", "latest")]
        before = train_records(c.out)
        rc, out, err = launch(c, cmd, timeout)
        judge(c, rc, out, err)
        if rc == 0 and train_records(c.out) != before:
            c.fail("resuming a finished run changed its logged steps")
        c.kind += " +resume-finished"
    check_tree(c)


def case_resume(c, args, timeout):
    """a run stopped by a signal at a random moment, resumed; compared with the same run uninterrupted"""
    rng = c.rng
    mpi = MPI if mpi_ok() and rng.random() < 0.15 else []
    for _ in range(20):
        a, info = train_flags(c, bool(mpi))
        if "--dry-run" not in a:
            break
    # enough steps to be stopped in the middle, checkpoints along the way
    a = strip_flag(strip_flag(strip_flag(a, "--steps"), "--epochs"), "--checkpoint-every")
    steps = rng.randint(4, 12)
    a += ["--steps", str(steps), "--checkpoint-every", str(rng.randint(1, 3))]
    sig = pick(rng, signal.SIGTERM, signal.SIGKILL, signal.SIGKILL, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP)
    delay = rng.uniform(0.5, 6.0)
    c.kind = f"{'mpi ' if mpi else ''}resume after {signal.Signals(sig).name} at {delay:.1f}s"
    rc, out, err = launch(c, mpi + [args.bin] + a, timeout, kill=(sig, delay))
    # mpirun itself, signalled with its ranks, exits 1 with its own words: the ranks' stop is checked by the resume
    judge(c, rc if not mpi else 0, out, err, sent=sig)
    check_tree(c, final=sig != signal.SIGKILL)
    if c.problems:
        return
    ck = os.path.join(c.out, "checkpoints")
    how = pick(rng, "latest", "auto", "path")
    if how == "path":
        cks = sorted(f for f in os.listdir(ck) if f.endswith(".bin")) if os.path.isdir(ck) else []
        if not cks:
            how = "auto"
        else:
            how = os.path.join(ck, cks[-1])
    rc2, out2, err2 = launch(c, mpi + [args.bin] + a + ["--resume", how], timeout)
    c.kind += f", --resume {os.path.basename(how)}"
    judge(c, rc2, out2, err2)
    c.summary = err_line(err2) if rc2 else "ok"
    check_tree(c)
    if rc2 != 0:
        if how == "latest" and rc == 0 or "no checkpoint" in err2:
            return
        return
    got = train_records(c.out)
    # the same run uninterrupted, in a directory of its own
    ref = c.path("refside", "run")
    b = [x.replace(c.dir, c.path("refside")) for x in a]
    os.makedirs(c.path("refside"), exist_ok=True)
    rc3, out3, err3 = launch(c, mpi + [args.bin] + b, timeout)
    judge(c, rc3, out3, err3)
    want = train_records(ref)
    if rc3 == 0 and got != want:
        diff = [k for k in sorted(set(got) | set(want)) if got.get(k) != want.get(k)]
        c.fail(f"resumed run's losses differ from the uninterrupted run's at steps {diff[:8]}: "
               f"{[(k, got.get(k), want.get(k)) for k in diff[:2]]}")


def strip_flag(a, flag):
    out, i = [], 0
    while i < len(a):
        if a[i] == flag:
            i += 2
            continue
        out.append(a[i])
        i += 1
    return out


def mount_tmpfs(c, size, ro=False):
    d = c.path("mnt")
    os.makedirs(d, exist_ok=True)
    opts = f"size={size}" + (",ro" if ro else "")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", d], capture_output=True).returncode != 0:
        return None
    c.mounts.append(d)
    return d


def case_bad(c, args, timeout):
    """one bad input over an otherwise plausible run"""
    rng = c.rng
    a, info = train_flags(c, False)
    a = strip_flag(a, "--dry-run")
    kinds = ["trunc_train", "flip_train", "trunc_val", "missing", "range", "ro_out", "full_out", "bad_resume",
             "trunc_refs", "bad_adapter", "bad_model", "full_side", "ro_side", "out_is_file", "no_refs", "bad_tokenizer",
             "resume_changed"]
    k = rng.choice(kinds)
    c.kind = "bad:" + k
    want_fail = k
    if k in ("trunc_train", "flip_train", "trunc_val"):
        src = os.path.join(c.data, "val.bin" if k == "trunc_val" else "train.bin")
        dst = c.path(os.path.basename(src))
        raw = bytearray(open(src, "rb").read())
        if k == "flip_train":
            i = rng.randrange(len(raw))
            raw[i] ^= 1 << rng.randrange(8)
            c.kind += f" byte {i}"
        else:
            cut = rng.choice([0, 7, 100, 256, len(raw) // 2, len(raw) - 1, rng.randrange(len(raw))])
            raw = raw[:cut]
            c.kind += f" to {cut}"
        open(dst, "wb").write(raw)
        flag = "--val-file" if k == "trunc_val" else "--train-file"
        a = strip_flag(a, flag) + [flag, dst]
    elif k == "missing":
        flag = pick(rng, "--train-file", "--val-file", "--tokenizer", "--model", "--lora-adapter", "--eval-split",
                    "--resume", "--summarize", "--baseline-model")
        a = strip_flag(a, flag) + [flag, c.path("nonexistent", "x")]
        if flag == "--model":
            a = strip_flag(a, "--d-model")  # keep --model a path; dims over a directory are another question
        c.kind += " " + flag
    elif k == "range":
        flag, val = pick(rng, ("--batch-size", "0"), ("--batch-size", "-1"), ("--grad-accum", "0"), ("--lr", "nan"),
                         ("--lr", "-1"), ("--steps", "1e3"), ("--epochs", "-1"), ("--epochs", "inf"), ("--max-src-len", "0"),
                         ("--max-tgt-len", "100000"), ("--eval-every", "-2"), ("--keep-checkpoints", "0"),
                         ("--lora-r", "-1"), ("--lora-alpha", "nan"), ("--lora-dropout", "1"), ("--lora-targets", "q,,v"),
                         ("--lora-targets", "wi"), ("--num-beams", "0"), ("--max-new-tokens", "0"),
                         ("--repetition-penalty", "0"), ("--shape-ladder", "8"), ("--shape-ladder", "-1,4"),
                         ("--keep-best", "bleu"), ("--schedule", "exp"), ("--optimizer", "sgd"), ("--d-model", "7"),
                         ("--num-heads", "0"), ("--dropout", "1.5"), ("--adafactor-decay", "0.5"),
                         ("--adafactor-warmup-init", "1"), ("--async-checkpoint", "2"), ("--resume", ""),
                         ("--save-hf-dtype", "fp16"), ("--max-shard-size", "12XB"), ("--eval-rouge", "-1"),
                         ("--warmup", "99999999999"), ("--seed", "-1"), ("--early-stop", "-1"), ("--init", "xavier"),
                         ("--min-new-tokens", "500"), ("--eval-limit", "-1"), ("--gen-batch-size", "0"),
                         ("--collective-timeout", "-1"), ("--ffn", "swiglu"), ("--vocab-size", "10"))
        a = strip_flag(a, flag) + [flag, val]
        c.kind += f" {flag} {val!r}"
        want_fail = None  # some are legal (e.g. --vocab-size 10 may be refused only by the data); judged by the message
    elif k in ("ro_out", "full_out"):
        m = mount_tmpfs(c, pick(rng, "64k", "200k", "1m", "3m") if k == "full_out" else "1m", ro=k == "ro_out")
        if m is None:
            c.kind += " (mount failed: skipped)"
            return
        sub = os.path.join(m, "run")
        a = [x.replace(c.out, sub) if x.startswith(c.out) else x for x in a]
        a = [x.replace(c.dir, m) if x.startswith(c.path("hf")) or x.startswith(c.path("merged")) else x for x in a]
        if k == "full_out":
            want_fail = None  # the checkpoint may fit
            a = strip_flag(a, "--checkpoint-every") + ["--checkpoint-every", "1"]
    elif k in ("full_side", "ro_side"):
        # the run directory is fine; an export, the evaluation output or the final checkpoint goes to a full or
        # read-only file system
        m = mount_tmpfs(c, pick(rng, "16k", "200k", "1m", "3m") if k == "full_side" else "1m", ro=k == "ro_side")
        if m is None:
            c.kind += " (mount failed: skipped)"
            return
        flag = pick(rng, "--save-hf", "--eval-out", "--save-checkpoint", "--data-log", "--merge-lora", "--save-lora")
        dest = os.path.join(m, "x")
        a = strip_flag(a, flag) + [flag, dest]
        if flag in ("--eval-out",) and "--eval-split" not in a:
            a += ["--eval-split", os.path.join(c.data, "test"), "--eval-limit", "2", "--max-new-tokens", "4"]
        if flag in ("--merge-lora", "--save-lora") and "--lora-r" not in a:
            a += ["--lora-r", "2"]
        c.kind += " " + flag
        want_fail = None if k == "full_side" else k
    elif k == "out_is_file":
        open(c.out, "w").write("x")
    elif k == "no_refs":
        d = c.path("split")
        os.makedirs(d)
        shutil.copy(os.path.join(c.data, "test.bin"), os.path.join(d, "test.bin"))
        a = strip_flag(strip_flag(a, "--eval-split"), "--eval-limit") + ["--eval-split", os.path.join(d, "test"),
                                                                         "--eval-limit", "2"]
    elif k == "bad_tokenizer":
        p = c.path("spiece.model")
        open(p, "wb").write(os.urandom(rng.randint(0, 3000)))
        a += ["--tokenizer", p]
        if "--eval-split" not in a:
            a += ["--eval-split", os.path.join(c.data, "test"), "--eval-limit", "1", "--max-new-tokens", "4"]
    elif k == "resume_changed":
        # a finished run, resumed with one setting changed
        a = strip_flag(strip_flag(a, "--steps"), "--epochs") + ["--steps", "3", "--checkpoint-every", "1"]
        rc, out, err = launch(c, [args.bin] + a, timeout)
        judge(c, rc, out, err)
        if rc != 0:
            c.summary = err_line(err)
            return
        flag, val = pick(rng, ("--batch-size", "7"), ("--grad-accum", "4"), ("--seed", "12345"), ("--lora-r", "3"),
                         ("--optimizer", "adafactor"), ("--d-ff", "48"), ("--max-src-len", "40"), ("--steps", "5"),
                         ("--shuffle", "0"), ("--lr", "0.01"), ("--train-file", os.path.join(c.data, "val.bin")))
        a = strip_flag(a, flag) + [flag, val]
        if flag == "--optimizer":
            a = strip_flag(a, "--lr") + ["--adafactor-relative-step", "0"]
        a += ["--resume", pick(rng, "latest", "auto")]
        c.kind += f" {flag} {val}"
        want_fail = None
    elif k == "bad_resume":
        p = c.path("garbage.bin")
        open(p, "wb").write(pick(rng, b"", b"T5CK" * 10, os.urandom(5000)))
        a += ["--resume", p]
    elif k == "trunc_refs":
        d = c.path("split")
        os.makedirs(d)
        shutil.copy(os.path.join(c.data, "test.bin"), os.path.join(d, "test.bin"))
        raw = open(os.path.join(c.data, "test_refs.jsonl"), "rb").read()
        raw = raw[:rng.randrange(len(raw) // 50)]
        open(os.path.join(d, "test_refs.jsonl"), "wb").write(raw)
        a = strip_flag(strip_flag(a, "--eval-split"), "--eval-limit") + ["--eval-split", os.path.join(d, "test"),
                                                                         "--eval-limit", "4"]
        want_fail = None  # the first examples' refs may be whole
    elif k == "bad_adapter":
        d = c.path("adapter_bad")
        os.makedirs(d)
        open(os.path.join(d, "adapter_config.json"), "w").write(pick(rng, "{", '{"r": -2, "lora_alpha": 8}', '{"r": 4}', "[]"))
        a += ["--lora-adapter", d]
    elif k == "bad_model":
        d = c.path("model_bad")
        os.makedirs(d)
        open(os.path.join(d, "config.json"), "w").write(pick(rng, "{}", '{"d_model": 32}', "not json", '{"d_model": -1, "num_heads": 2}'))
        for f in ("--model", "--d-model", "--num-heads", "--d-kv", "--d-ff", "--num-layers", "--num-decoder-layers",
                  "--ffn", "--tied", "--scale-output", "--num-buckets", "--max-distance", "--init"):
            a = strip_flag(a, f)
        a += ["--model", d]
    rc, out, err = launch(c, [args.bin] + a, timeout)
    judge(c, rc, out, err, want_fail=want_fail)
    c.summary = err_line(err) if rc else "ok"
    check_tree(c)


def run_case(args, root, seed, idx):
    rng = random.Random(f"{seed}:{idx}")
    c = Case(rng, idx, root, args.data)
    c.kind, c.summary = "?", ""
    t0 = time.time()
    try:
        r = rng.random()
        if r < 0.5:
            case_train(c, args, args.timeout)
        elif r < 0.75:
            case_resume(c, args, args.timeout)
        else:
            case_bad(c, args, args.timeout)
    finally:
        for m in c.mounts:
            subprocess.run(["umount", m], capture_output=True)
    c.seconds = time.time() - t0
    return c


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bin", default="build/asan/train_t5")
    p.add_argument("--data", default="out/dialogsum")
    p.add_argument("-n", type=int, default=150)
    p.add_argument("--quick", action="store_true", help="25 cases")
    p.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    p.add_argument("--timeout", type=int, default=180)
    p.add_argument("--replay", help="SEED:CASE: rerun one case, keep its directory")
    p.add_argument("--keep", action="store_true", help="keep every case's directory")
    args = p.parse_args()
    args.bin = os.path.abspath(os.path.join(REPO, args.bin))
    args.data = os.path.abspath(os.path.join(REPO, args.data))
    for f in (args.bin, os.path.join(args.data, "train.bin")):
        if not os.path.exists(f):
            sys.exit(f"error: {f} not found (make build/asan/train_t5; python3 prepro_dialogsum.py)")
    root = tempfile.mkdtemp(prefix="fuzz_cli_")
    if args.replay:
        seed, idx = args.replay.split(":")
        todo, args.seed, args.keep = [int(idx)], int(seed), True
    else:
        todo = range(25 if args.quick else args.n)
    print(f"seed {args.seed}, {len(todo)} cases, work directory {root}")
    bad, t0 = [], time.time()
    for i in todo:
        c = run_case(args, root, args.seed, i)
        status = "FAIL" if c.problems else "ok  "
        print(f"{i:4d} {status} {c.seconds:5.1f}s {c.kind:<42.42} {c.summary[:110]}", flush=True)
        for prob in c.problems:
            print(f"       - {prob}")
        if c.problems:
            bad.append(c)
            print("       $ " + "\n       $ ".join(c.log))
        elif not args.keep:
            shutil.rmtree(c.dir, ignore_errors=True)
    print(f"\n{len(todo) - len(bad)} of {len(todo)} cases passed in {time.time() - t0:.0f} s; seed {args.seed}")
    if bad:
        print("failed: " + " ".join(f"{args.seed}:{c.idx}" for c in bad) + f" (directories under {root})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
