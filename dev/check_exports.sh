#!/usr/bin/env bash
# Dev check (needs torch + transformers): every fixture model goes through train_t5 (HF dir in,
# HF dir out), then transformers loads the exported directory and must reproduce the fixture's
# logits and loss on the fixture batch. Also exports after 4 training steps and checks transformers
# loads that directory cleanly (no missing/unexpected keys) — dev/check_hf_export.py prints each item.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s train_t5
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
for fx in dev/fixtures/*/; do
    [ -f "$fx/fixture.safetensors" ] || continue # gen/ and formats/ are checked elsewhere (dev/test_hub.sh)
    name=$(basename "$fx")
    ./train_t5 --model "$fx/model" --save-hf "$out/$name" > /dev/null
    python3 dev/check_hf_export.py --exported "$out/$name" --fixture "$fx/fixture.safetensors" --expect logits || status=1
done
exit $status
