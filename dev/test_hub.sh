#!/usr/bin/env bash
# HF directories written by train_t5 load in transformers as the model it held (issue 17). Runs
# without PyTorch (CI): AutoConfig, AutoTokenizer (ids vs sentencepiece on every DialogSum test text),
# GenerationConfig and the model card; where PyTorch is installed, dev/check_hub_dir.py also loads the
# weights and compares the fixture batch's logits.
#   bash dev/test_hub.sh ./train_t5 ../shared/data
set -euo pipefail
bin=${1:-./train_t5}
data=${2:-../shared/data}
spm="$data/t5/spiece.model"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
check() { python3 dev/check_hub_dir.py "$@" || status=1; }

# every head the engine can hold, from the format fixtures: tied+scaled (original T5), untied (FLAN),
# tied+unscaled (transformers 5's fresh FLAN); the export forms: F32, BF16, shards + index
for case in "v4_t5 1,1" "v4_flan 0,0" "v5_fresh_flan 1,0"; do
    set -- $case
    fx=dev/fixtures/formats/$1
    "$bin" --model "$fx/model" --save-hf "$out/$1" --tokenizer "$spm" > /dev/null
    check --dir "$out/$1" --expect-head "$2" --expected "$fx/expected.safetensors"
done
"$bin" --model dev/fixtures/formats/v4_flan/model --save-hf "$out/bf16" --save-hf-dtype bf16 --tokenizer "$spm" > /dev/null
check --dir "$out/bf16" --expect-head 0,0
"$bin" --model dev/fixtures/formats/v4_flan/model --save-hf "$out/shards" --max-shard-size 10KB --tokenizer "$spm" > /dev/null
python3 - "$out/shards" <<'EOF' || status=1
import json, os, sys
d = sys.argv[1]
index = json.load(open(os.path.join(d, "model.safetensors.index.json")))
files = sorted(set(index["weight_map"].values()))
ok = len(files) > 1 and all(os.path.exists(os.path.join(d, f)) for f in files) and not os.path.exists(os.path.join(d, "model.safetensors"))
print(f"{'--max-shard-size 10KB: ' + str(len(files)) + ' shards, index names them all, no model.safetensors':<78} {'OK' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
EOF
check --dir "$out/shards" --expect-head 0,0 --expected dev/fixtures/formats/v4_flan/expected.safetensors

# the tokenizer on real DialogSum text, with tokenizer.json (copied from beside spiece.model) and
# without it (transformers converts spiece.model: sentencepiece + protobuf)
check --dir "$out/v4_flan" --dialogsum "$data/dialogsum" --spm "$spm"
rm "$out/v4_flan/tokenizer.json"
check --dir "$out/v4_flan" --dialogsum "$data/dialogsum" --spm "$spm"

# a run that trains and evaluates: the model card carries the evaluation's scores
python3 prepro_dialogsum.py --data-dir "$data/dialogsum" --tokenizer "$spm" --out-dir "$out/ds" > /dev/null
"$bin" --model flan-t5-small --d-model 32 --d-kv 8 --num-heads 4 --d-ff 64 --num-layers 1 --train-file "$out/ds/train.bin" \
    --steps 4 --batch-size 4 --out-dir "$out/run" --eval-split "$out/ds/test" --eval-limit 3 --max-new-tokens 8 \
    --tokenizer "$spm" > "$out/run.log"
check --dir "$out/run/model" --expect-head 0,0 --scores "$out/run/eval/scores.json" --generations "$out/run/eval/generations.jsonl"

# the model card's usage snippet (issue 25): its tokenizer part runs without PyTorch and encodes the run's prompt
# as training did; its generate() passes generation_config.json's settings. Default prompt and settings (the
# trained run), then a prompt and settings that are not the defaults (the whole snippet: dev/check_card_snippet.py
# --train-bin ./train_t5, where PyTorch is installed)
snippet() { python3 dev/check_card_snippet.py --tokenizer-only --spm "$spm" "$@" || status=1; }
snippet --dir "$out/run/model"
prompt=$'Dialogue:\n{dialogue}\n\nWhat was said, in "brief"?  '
"$bin" --model dev/fixtures/formats/v4_flan/model --save-hf "$out/card" --tokenizer "$spm" --prompt "$prompt" --num-beams 3 \
    --max-new-tokens 10 --min-new-tokens 2 --no-repeat-ngram 2 --repetition-penalty 1.3 --length-penalty 0.6 --early-stopping 1 \
    --max-src-len 64 > /dev/null
snippet --dir "$out/card" --prompt "$prompt"
exit $status
