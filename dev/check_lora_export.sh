#!/usr/bin/env bash
# peft reads train_t5's LoRA outputs (needs torch + transformers + peft; `make test` runs it when they
# are installed): for each LoRA fixture, 2 training steps from its peft adapter, then
# dev/check_lora_export.py loads OUT/adapter with PeftModel.from_pretrained and compares peft's
# merge_and_unload() and logits with the --merge-lora directory.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-./train_t5}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
for fx in dev/fixtures/lora_*/; do
    name=$(basename "$fx")
    base=$(python3 -c "from safetensors import safe_open; print(safe_open('$fx/fixture.safetensors','pt').metadata()['base'])")
    "$bin" --model "dev/fixtures/$base/model" --lora-adapter "$fx/adapter" --train-file "dev/fixtures/$base/examples.bin" \
        --steps 2 --batch-size 3 --lr 1e-2 --out-dir "$out/$name" --merge-lora "$out/$name/merged" > /dev/null
    echo "== $name (trained 2 steps by $bin)"
    python3 dev/check_lora_export.py --base "dev/fixtures/$base/model" --adapter "$out/$name/adapter" \
        --merged "$out/$name/merged" --fixture "$fx/fixture.safetensors" || status=1
done
exit $status
