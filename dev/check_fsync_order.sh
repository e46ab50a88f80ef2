#!/usr/bin/env bash
# dev/check_fsync_order.sh — checks the durable publication order (docs/durability.md) in the system calls
# the writers really make, not in what the code says: `test_durable --publish DIR` writes one file of each
# writer (an AtomicFile, two checkpoints through the background saver, the second pruning the first, a
# safetensors file) under strace, and for every published file the trace must show
#     fsync(PATH.tmp)  <  rename(PATH.tmp, PATH)  <  fsync(PATH's directory)
# in the thread that published it, and for every pruned checkpoint
#     fsync(directory) after the rename of a newer checkpoint  <  unlink(old)  <  fsync(directory)
#
# With a trainer as the second argument, the same order is checked on a real run of it: a 3-step training
# run with a checkpoint every step (background writes, keeping one: two prunes), the final HF directory
# (safetensors, config, tokenizer, card: every file renamed into place) and the adapter-free export.
#
# usage: bash dev/check_fsync_order.sh ./build/test_durable [./train_t5]
# strace is installed with apt-get when missing (CI runs as root); without it and without root, the check
# is reported as skipped.
set -euo pipefail
bin=${1:?usage: check_fsync_order.sh PATH/TO/test_durable [PATH/TO/train_t5]}
trainer=${2:-}
if ! command -v strace >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q strace >/dev/null ||
            { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q strace >/dev/null; }
    else
        echo "skipped dev/check_fsync_order.sh: strace is not installed (apt-get install strace)"
        exit 0
    fi
fi
work=$(mktemp -d /tmp/fsync_order.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/pub"
# -f: the background saver's thread; -y: file descriptors with the paths they name
strace -f -y -o "$work/trace" -e trace=fsync,fdatasync,rename,renameat,renameat2,openat,unlink,unlinkat "$bin" --publish "$work/pub"
check() { # TRACE DIR EXPECTED_FILES(comma-separated) PRUNES
python3 - "$@" <<'EOF'
import os, re, sys
trace, pub, expected, prunes = sys.argv[1], sys.argv[2], sys.argv[3].split(","), int(sys.argv[4])
# strace -f writes "TID syscall(...) = rc"; a call interrupted by another thread's is split into
# "TID name(args <unfinished ...>" and "TID <... name resumed>rest": joined back here
calls, pending = [], {}
for line in open(trace):
    m = re.match(r"(\d+)\s+(.*)", line.rstrip("\n"))
    if not m: continue
    tid, text = m.groups()
    if text.endswith("<unfinished ...>"):
        pending[tid] = text[: -len("<unfinished ...>")].rstrip(); continue
    r = re.match(r"<\.\.\. \w+ resumed>(.*)", text)
    if r and tid in pending: text = pending.pop(tid) + r.group(1)
    calls.append((tid, text))

def ok(text): return re.search(r"\)\s+= 0$", text) is not None
events = [] # (tid, kind, path): kind sync (path = what the fd names), rename (path = destination, src), unlink
for tid, text in calls:
    m = re.match(r"f(?:data)?sync\(\d+<([^>]*)>", text)
    if m and ok(text): events.append((tid, "sync", m.group(1), None)); continue
    m = re.match(r'rename\("([^"]+)", "([^"]+)"', text) or re.match(r'renameat2?\([^,]+, "([^"]+)", [^,]+, "([^"]+)"', text)
    if m and ok(text): events.append((tid, "rename", m.group(2), m.group(1))); continue
    m = re.match(r'unlink\("([^"]+)"', text) or re.match(r'unlinkat\([^,]+, "([^"]+)"', text)
    if m and ok(text): events.append((tid, "unlink", m.group(1), None))

fails = 0
def report(good, what):
    global fails
    print(f"{what:<88} {'OK' if good else 'FAIL'}")
    fails += not good

def index_after(i, tid, kind, path):
    for j in range(i + 1, len(events)):
        if events[j][0] == tid and events[j][1] == kind and events[j][2] == path: return j
    return None

renames = [(i, e) for i, e in enumerate(events) if e[1] == "rename"]
durable_at = {} # published path -> index of its directory sync
for i, (tid, _, dst, src) in renames:
    before = [k for k in range(i) if events[k][0] == tid and events[k][1] == "sync" and events[k][2] == src]
    syncs_after = [k for k in range(i + 1, len(events)) if events[k][0] == tid and events[k][1] == "sync"]
    dir_sync = syncs_after[0] if syncs_after and events[syncs_after[0]][2] == os.path.dirname(dst) else None
    if dir_sync is not None: durable_at[dst] = dir_sync
    report(bool(before) and dir_sync is not None, f"fsync({os.path.relpath(src, pub)}) < rename < fsync(its directory)")
published = {os.path.relpath(e[2], pub) for _, e in renames}
report(all(x in published for x in expected), "every writer published its file: " + ", ".join(expected))
unlinks = [(i, e) for i, e in enumerate(events) if e[1] == "unlink" and "/checkpoints/ckpt_" in e[2]]
for i, (tid, _, path, _) in unlinks:
    d = os.path.dirname(path)
    newer_durable = any(dst != path and os.path.dirname(dst) == d and k < i for dst, k in durable_at.items())
    synced_after = index_after(i, tid, "sync", d) is not None
    report(newer_durable and synced_after, f"prune of {os.path.relpath(path, pub)}: after a newer checkpoint is durable, then fsync(dir)")
report(len(unlinks) == prunes, f"the pruning removed {prunes} checkpoint(s) (saw {len(unlinks)})")
print(f"check_fsync_order: {len(renames)} renames, {len(unlinks)} prunes traced; {'FAILED' if fails else 'all in order'}")
sys.exit(1 if fails else 0)
EOF
}
check "$work/trace" "$work/pub" plain.txt,checkpoints/ckpt_000000001.bin,checkpoints/ckpt_000000002.bin,model.safetensors 1
if [ -n "$trainer" ]; then
    strace -f -y -o "$work/trace_run" -e trace=fsync,fdatasync,rename,renameat,renameat2,openat,unlink,unlinkat \
        "$trainer" --model dev/fixtures/flan_gated/model --train-file dev/fixtures/flan_gated/examples.bin --steps 3 \
        --checkpoint-every 1 --keep-checkpoints 1 --out-dir "$work/run" > "$work/run.log" 2>&1 ||
        { echo "FAIL the traced training run"; tail -5 "$work/run.log"; exit 1; }
    check "$work/trace_run" "$work/run" checkpoints/ckpt_000000003.bin,model/model.safetensors,model/config.json,model/README.md 2
fi
