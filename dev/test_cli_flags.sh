#!/usr/bin/env bash
# The usage text and the parser agree: every flag that --help lists with a numeric value (N, X, GIB,
# 0|1) is known to the parser and range-checked: given "x" it must exit 1 with "error: <flag> needs".
# A flag --help marks as the other trainer's ("[train_t5cu only]" in train_t5) must be refused by name.
# With a second binary: both --help texts come from the one table (llmc/options.h), so they must be
# the same but for the usage line. Needs no GPU for train_t5cu (flags are parsed before any device work).
#   bash dev/test_cli_flags.sh ./train_t5      bash dev/test_cli_flags.sh build/cc/train_t5cu ./train_t5
set -u
bin=${1:?usage: test_cli_flags.sh BINARY [OTHER_BINARY]}
other=${2:-}
name=$(basename "$bin")
help=$("$bin" --help 2>&1)
# flag → the engine tag on its entry (its last help line carries it), for the numeric flags
table=$(awk '/^  --[a-z0-9-]+ /{flag=$1; meta=$2; tag[flag]=""; if (meta ~ /^(N|X|GIB|SECONDS|0\|1)$/) num[flag]=1}
             /\[train_t5cu only\]/{tag[flag]="train_t5cu"} /\[train_t5 only\]/{tag[flag]="train_t5"}
             END{for (f in num) print f, (tag[f] == "" ? "both" : tag[f])}' <<< "$help" | sort)
n=0 bad=0 foreign=0
while read -r f owner; do
    out=$("$bin" "$f" x 2>&1)
    rc=$?
    n=$((n + 1))
    if [ "$owner" != both ] && [ "$owner" != "$name" ]; then
        foreign=$((foreign + 1))
        if [ $rc -ne 1 ] || ! grep -q -- "error: $f belongs to" <<< "$out"; then
            echo "FAIL $f (the other trainer's): exit $rc, $(head -1 <<< "$out")"; bad=$((bad + 1))
        fi
    elif [ $rc -ne 1 ] || ! grep -q -- "error: $f needs" <<< "$out"; then
        echo "FAIL $f: exit $rc, $(head -1 <<< "$out")"
        bad=$((bad + 1))
    fi
done <<< "$table"
if [ "$n" -lt 10 ]; then echo "FAIL: only $n numeric flags found in $bin --help"; exit 1; fi
echo "$name: $n numeric flags from --help, each range-checked by the parser ($foreign refused as the other trainer's): $((n - bad)) OK, $bad FAIL"
if [ -n "$other" ]; then
    if diff <(tail -n +2 <<< "$help") <("$other" --help 2>&1 | tail -n +2) > /dev/null; then
        echo "OK $name --help and $(basename "$other") --help: the same option table ($(wc -l <<< "$help") lines)"
    else
        echo "FAIL $name --help and $(basename "$other") --help differ:"; diff <(tail -n +2 <<< "$help") <("$other" --help 2>&1 | tail -n +2) | head
        bad=$((bad + 1))
    fi
fi
[ "$bad" -eq 0 ]
