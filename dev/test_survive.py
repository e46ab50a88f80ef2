#!/usr/bin/env python3
"""Runs that survive rented machines (docs/durability.md), checked on the real trainer:
  1. kill -9 of a run that checkpoints every step in the background, at a point drawn from the run's own
     progress (a random step, then a random fraction of a step), so nearly every trial is a real mid-run
     kill (counted apart from the runs that finished first): every `--resume latest` finds a CRC-valid
     checkpoint and the resumed losses equal the uninterrupted run's (--trials N; the benchmark record in
     docs/benchmarks.md used 100);
  2. mpirun -np 2 with one rank stopped (kill -STOP): the job ends non-zero within --collective-timeout plus
     a few seconds, naming the stalled wait, and metrics.jsonl ends with a watchdog record; a resume from the
     last checkpoint then completes;
  3. no false alarm: rank 0 alone for longer than the timeout (a synchronous checkpoint write, ROUGE on
     the validation examples) while rank 1 waits;
  4. SIGUSR1 (what Slurm's --signal and mpirun forward): a checkpoint, exit 138, and the same command with
     --resume auto (a requeued job's) starts fresh the first time and resumes the second.
    python3 dev/test_survive.py --train-bin ./train_t5 [--trials 10] [--mpi 1]"""
import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "dev"))
import test_pipeline as tp  # noqa: E402  (TINY, check, train_records, wait_for)
from metrics_log import read_metrics  # noqa: E402  (a torn last line is left out)

# one OpenMP thread per trainer: on two shared cores a spinning team makes each step 10-50x slower and its
# length erratic (a 24-step tiny run: 4 s against 84 s on the development VM)
ONE_THREAD = dict(os.environ, OMP_NUM_THREADS="1")


def prepare(args, tmp):
    out = os.path.join(tmp, "ds")
    r = tp.run([sys.executable, "prepro_dialogsum.py", "--data-dir", os.path.join(args.data, "dialogsum"),
                "--tokenizer", os.path.join(args.data, "t5", "spiece.model"), "--out-dir", out])
    if r.returncode != 0:
        print(r.stderr[-500:])
        sys.exit(1)
    return out


def cmd(args, data, rd, *extra):
    return [args.train_bin, *tp.TINY, "--train-file", os.path.join(data, "train.bin"), "--batch-size", "4", "--lr", "3e-3",
            "--dropout", "0.1", "--out-dir", rd, *extra]


def losses(rd):
    got, _ = tp.train_records(rd)
    return got


def watch_steps(rd, proc, until, timeout=120):
    """-> {step: when its record was first seen in rd's metrics.jsonl} (step 0: the start record), polling
    every 5 ms until step `until` is seen, the process ends or `timeout` seconds pass"""
    path = os.path.join(rd, "metrics.jsonl")
    seen = {}
    t0 = time.time()
    while until not in seen and proc.poll() is None and time.time() - t0 < timeout:
        now = time.time()
        for r in read_metrics(path) if os.path.exists(path) else []:
            if r["type"] in ("start", "train"):
                seen.setdefault(r["step"], now)
        time.sleep(0.005)
    return seen


def kill_mid_run(proc, rd, steps, rng):
    """SIGKILL at a moment drawn from the run's own progress, not from the clock: k uniform over the steps
    that have a later one, then once step k's record is seen, a uniform fraction of step k's own time
    (record k-1 to record k) later: inside step k+1, checkpoint k's staging, its background write, the
    rename or the prune. -> (k, whether the process died by the signal rather than by finishing first)"""
    k = rng.randint(1, steps - 1)
    frac = rng.random()
    seen = watch_steps(rd, proc, k)
    if k in seen and k - 1 in seen:
        time.sleep(frac * (seen[k] - seen[k - 1]))
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    return k, proc.returncode == -signal.SIGKILL


def torn_checkpoint(rd):
    """a kill left PATH.tmp behind: it cut a checkpoint write before its rename (llmc/fileio.h)"""
    d = os.path.join(rd, "checkpoints")
    return os.path.isdir(d) and any(f.endswith(".tmp") for f in os.listdir(d))


def test_kill9(args, data, tmp):
    """kill -9 at a random point of the run's progress, then --resume latest; the losses of every step equal
    the uninterrupted run's (bit for bit: a resumed run is a function of the checkpoint). Once step k's record
    is out, checkpoint k-2 is durable (checkpoint k-1's staging waited for it before step k ran), so from
    k = 3 on "no valid checkpoint" is a failure; before that the run starts over, as a user would."""
    steps = 24
    common = ("--steps", str(steps), "--checkpoint-every", "1", "--keep-checkpoints", "2", "--async-checkpoint", "1")
    ref = os.path.join(tmp, "kill_ref")
    r = tp.run(cmd(args, data, ref, *common), env=ONE_THREAD)
    if not tp.check("kill -9: the uninterrupted reference run", r.returncode == 0, r.stderr[-300:] if r.returncode else ""):
        return
    want = losses(ref)
    rng = random.Random(1234)
    kills = torn = from_ckpt = early = lost = valid = same = 0
    points = []
    for trial in range(args.trials):
        rd = os.path.join(tmp, f"kill_{trial}")
        p = subprocess.Popen(cmd(args, data, rd, *common), cwd=REPO, env=ONE_THREAD, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        k, killed = kill_mid_run(p, rd, steps, rng)
        kills += killed
        torn += killed and torn_checkpoint(rd)
        points += [k] if killed else []
        r = tp.run(cmd(args, data, rd, *common, "--resume", "latest"), env=ONE_THREAD)
        if r.returncode != 0 and "no valid checkpoint" in r.stderr:
            lost += k >= 3
            early += k < 3
            print(f"  trial {trial}: killed after step {k}: no valid checkpoint" + (" (FAIL)" if k >= 3 else ", starting over"))
            shutil.rmtree(rd)
            r = tp.run(cmd(args, data, rd, *common), env=ONE_THREAD)
        from_ckpt += "resuming from" in r.stdout
        valid += r.returncode == 0
        got = losses(rd) if r.returncode == 0 else {}
        same += sorted(got) == list(range(1, steps + 1)) and all(got[s] == want[s] for s in want)
        if r.returncode != 0:
            print(f"  trial {trial}: resume failed: {r.stderr[-300:]}")
    span = f"after steps {min(points)}..{max(points)}" if points else "none"
    print(f"  kill -9: {kills} of {args.trials} runs died by the signal mid-run ({span}; {torn} cut a checkpoint write "
          f"before its rename), {args.trials - kills} finished first; {from_ckpt} resumed from a checkpoint, {early} "
          "started over (killed before the first checkpoint was durable)")
    tp.check(f"kill -9 at points drawn from the run's progress: {kills} of {args.trials} really killed mid-run (at least half)",
             2 * kills >= args.trials, f"{args.trials - kills} finished before the kill")
    tp.check("kill -9: every --resume latest found a valid checkpoint (none need exist before step 3) and completed",
             lost == 0 and valid == args.trials, f"{lost} without a checkpoint, {valid}/{args.trials} completed")
    tp.check(f"kill -9: the resumed runs' losses and grad norms equal the uninterrupted run's in {same}/{args.trials}",
             same == args.trials)


def openmpi_flags():
    openmpi = "Open MPI" in tp.run(["mpirun", "--version"]).stdout
    return ["--allow-run-as-root", "--oversubscribe"] if openmpi else []


def rank_pid(mpirun_pid, rank, timeout=30):
    """the pid of rank `rank` among mpirun's children (Open MPI sets OMPI_COMM_WORLD_RANK, MPICH PMI_RANK)"""
    t0 = time.time()
    while time.time() - t0 < timeout:
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{pid}/environ", "rb") as f:
                    env = f.read().split(b"\0")
            except OSError:
                continue
            if ppid == mpirun_pid and (f"OMPI_COMM_WORLD_RANK={rank}".encode() in env or f"PMI_RANK={rank}".encode() in env):
                return int(pid)
        time.sleep(0.1)
    return None


def test_watchdog(args, data, tmp):
    timeout = 4
    rd = os.path.join(tmp, "wd")
    common = ("--checkpoint-every", "5", "--collective-timeout", str(timeout))
    p = subprocess.Popen(["mpirun", *openmpi_flags(), "-np", "2", *cmd(args, data, rd, "--steps", "100000", *common)], cwd=REPO,
                         env=ONE_THREAD, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tp.wait_for(os.path.join(rd, "checkpoints", "ckpt_000000005.bin"), p)
    victim = rank_pid(p.pid, 1)
    if not tp.check("watchdog: mpirun -np 2 started and rank 1 found", victim is not None and p.poll() is None):
        p.kill()
        return
    os.kill(victim, signal.SIGSTOP)
    t0 = time.time()
    try:
        out, err = p.communicate(timeout=timeout + 60)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    took = time.time() - t0
    try:
        os.kill(victim, signal.SIGCONT)
        os.kill(victim, signal.SIGKILL)
    except ProcessLookupError:
        pass
    last = open(os.path.join(rd, "metrics.jsonl")).read().splitlines()[-1]
    named = re.search(r"watchdog: rank 0 stalled [\d.]+ s in .* at step \d+", err)
    tp.check(f"watchdog: rank 1 stopped (kill -STOP): the job ends non-zero within the timeout + 15 s ({took:.1f} s)",
             p.returncode != 0 and took < timeout + 15, f"rc {p.returncode}")
    tp.check("watchdog: stderr names the waiting rank, the operation and the step", named is not None, err.strip()[-300:])
    tp.check("watchdog: metrics.jsonl ends with a watchdog record", '"type": "watchdog"' in last, last[:200])
    r = tp.run(["mpirun", *openmpi_flags(), "-np", "2", *cmd(args, data, rd, "--steps", "12", *common, "--resume", "latest")],
               env=ONE_THREAD)
    tp.check("watchdog: then --resume latest from the last checkpoint completes", r.returncode == 0 and "resuming from" in r.stdout,
             r.stderr[-300:])


def test_no_false_alarm(args, data, tmp):
    """rank 0 alone (ROUGE of greedy summaries, a synchronous checkpoint) longer than the timeout. The evaluation
    at step 2 has no checkpoint after it: the other rank's next wait is the step's stop agreement, covered only
    by the ROUGE announcement (which rank 1 once skipped, as only rank 0 holds the references)"""
    timeout = 1
    rd = os.path.join(tmp, "nofalse")
    r = tp.run(["mpirun", *openmpi_flags(), "-np", "2", *cmd(
        args, data, rd, "--steps", "4", "--val-file", os.path.join(data, "val.bin"), "--eval-every", "2", "--eval-batches", "1",
        "--eval-rouge", "120", "--max-new-tokens", "64", "--tokenizer", os.path.join(args.data, "t5", "spiece.model"),
        "--checkpoint-every", "3", "--async-checkpoint", "0", "--collective-timeout", str(timeout))], env=ONE_THREAD)
    secs = [float(x) for x in re.findall(r"eval step \d+ \|.*\| ([\d.]+) s", r.stdout)]
    longer = bool(secs) and max(secs) > timeout
    tp.check(f"no false alarm: rank 0's evaluation ({max(secs) if secs else 0:.1f} s) outlasts the {timeout} s timeout while "
             "rank 1 waits: exit 0", r.returncode == 0 and longer and "watchdog" not in r.stderr,
             f"rc {r.returncode} {r.stderr[-200:]}")


def test_sigusr1(args, data, tmp):
    rd = os.path.join(tmp, "usr1")
    common = ("--steps", "16", "--checkpoint-every", "4", "--resume", "auto")  # a requeued job's one command
    p = subprocess.Popen(cmd(args, data, rd, *common), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tp.wait_for(os.path.join(rd, "checkpoints", "ckpt_000000004.bin"), p)
    p.send_signal(signal.SIGUSR1)
    out, _ = p.communicate()
    tp.check("SIGUSR1: a checkpoint, then exit 138 (128 + 10)", p.returncode == 138 and "stopped by signal 10" in out,
             f"rc {p.returncode}")
    started_fresh = "--resume auto: no checkpoint" in out
    r = tp.run(cmd(args, data, rd, *common))
    tp.check("SIGUSR1, then the same command (--resume auto: fresh the first time, latest the second) completes",
             started_fresh and r.returncode == 0 and "resuming from" in r.stdout and sorted(losses(rd)) == list(range(1, 17)))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--train-bin", default="./train_t5")
    p.add_argument("--data", default=os.environ.get("DATA", os.path.join(REPO, "..", "shared", "data")))
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--mpi", type=int, default=1)
    args = p.parse_args()
    args.train_bin = os.path.abspath(os.path.join(REPO, args.train_bin))
    tmp = tempfile.mkdtemp(prefix="t5c_survive_")
    try:
        data = prepare(args, tmp)
        test_sigusr1(args, data, tmp)
        test_kill9(args, data, tmp)
        if args.mpi:
            test_watchdog(args, data, tmp)
            test_no_false_alarm(args, data, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{len(tp.PASS)} passed, {len(tp.FAIL)} failed")
    return 1 if tp.FAIL else 0


if __name__ == "__main__":
    sys.exit(main())
