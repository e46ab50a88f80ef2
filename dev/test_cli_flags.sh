#!/usr/bin/env bash
# The usage text and the parser agree: every flag that --help lists with a numeric value (N, X, GIB,
# 0|1) is known to the parser and range-checked: given "x" it must exit 1 with "error: <flag> needs".
# Needs no GPU for train_t5cu (flags are parsed before anything touches the device).
#   bash dev/test_cli_flags.sh ./train_t5      bash dev/test_cli_flags.sh build/cc/train_t5cu
set -u
bin=${1:?usage: test_cli_flags.sh BINARY}
flags=$("$bin" --help 2>&1 | grep -oE -- "--[a-z0-9-]+ (N|X|GIB|0\|1)" | cut -d' ' -f1 | sort -u)
n=0 bad=0
for f in $flags; do
    out=$("$bin" "$f" x 2>&1)
    rc=$?
    n=$((n + 1))
    if [ $rc -ne 1 ] || ! grep -q -- "error: $f needs" <<< "$out"; then
        echo "FAIL $f: exit $rc, $(head -1 <<< "$out")"
        bad=$((bad + 1))
    fi
done
if [ "$n" -lt 10 ]; then echo "FAIL: only $n numeric flags found in $bin --help"; exit 1; fi
echo "$(basename "$bin"): $n numeric flags from --help, each range-checked by the parser: $((n - bad)) OK, $bad FAIL"
[ "$bad" -eq 0 ]
