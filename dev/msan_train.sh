#!/usr/bin/env bash
# train_t5 under MemorySanitizer (`make msan`) through the paths a real run takes, on a tiny model:
# training with validation, ROUGE and --keep-best, sync and async checkpoints, resume, --save-hf, LoRA
# with --merge-lora, Adafactor, --eval-split with greedy and beam search and their options, --summarize,
# and a model that emits </s> at once (empty summaries). A step fails on a non-zero exit or on a
# MemorySanitizer report in its output (`make msan` sends reports to files instead, and checks those).
#   bash dev/msan_train.sh build/msan/train_t5        (PREP: out/dialogsum, prepro output; DATA: ../shared/data)
set -u
bin=${1:?usage: msan_train.sh TRAIN_T5}
PREP=${PREP:-out/dialogsum}
DATA=${DATA:-../shared/data}
SPM=$DATA/t5/spiece.model
for f in "$PREP/train.bin" "$PREP/val.bin" "$PREP/test.bin" "$PREP/test_refs.jsonl" "$SPM"; do
    [ -f "$f" ] || { echo "msan_train.sh: $f missing (make dialogsum's prepro step writes $PREP)"; exit 1; }
done
tmp=$(mktemp -d)
[ -n "${KEEP:-}" ] && echo "msan_train.sh: files kept in $tmp" || trap 'rm -rf "$tmp"' EXIT
export MSAN_OPTIONS=${MSAN_OPTIONS:-halt_on_error=1}
# (a model directory or checkpoint brings its own shape: $LEN alone)
LEN="--max-src-len 64 --max-tgt-len 16 --batch-size 2 --tokenizer $SPM"
TINY="--model flan-t5-small --d-model 32 --num-heads 2 --d-kv 16 --d-ff 64 --num-layers 1 --num-decoder-layers 1 $LEN"
TRAIN="--train-file $PREP/train.bin --val-file $PREP/val.bin --eval-batches 2"
EVAL="--eval-split $PREP/test --eval-limit 3 --max-new-tokens 8 --gen-batch-size 2"
n=0 bad=0
# step NAME ARGS...: run the binary, keep its output in $tmp/NAME.log
step() {
    local name=$1; shift
    n=$((n + 1))
    "$bin" "$@" > "$tmp/$name.log" 2>&1
    local rc=$?
    if [ $rc -ne 0 ] || grep -q "MemorySanitizer" "$tmp/$name.log"; then
        bad=$((bad + 1)); echo "FAIL $name (exit $rc)"; grep -A40 -m1 "MemorySanitizer" "$tmp/$name.log" || tail -20 "$tmp/$name.log"
    else
        echo "OK   $name"
    fi
}
# a file the step must have written
expect() { n=$((n + 1)); if [ -s "$2" ]; then echo "OK   $1"; else bad=$((bad + 1)); echo "FAIL $1 ($2 missing)"; fi; }

step train $TINY $TRAIN --steps 4 --eval-every 2 --eval-rouge 2 --keep-best rouge1 --checkpoint-every 2 \
    --async-checkpoint 1 --out-dir "$tmp/run" $EVAL
expect "train: best checkpoint, exported model, generations" "$tmp/run/eval/generations.jsonl"
step resume_sync $TINY $TRAIN --steps 6 --eval-every 3 --keep-best val_loss --checkpoint-every 1 --async-checkpoint 0 \
    --out-dir "$tmp/run" --resume latest
step save_hf $TINY $TRAIN --steps 1 --save-hf "$tmp/hf_bf16" --save-hf-dtype bf16 --max-shard-size 300KB \
    --save-checkpoint "$tmp/one.ckpt"
expect "save_hf: bf16 shards" "$tmp/hf_bf16/config.json"
step from_ckpt $LEN --model "$tmp/one.ckpt" $TRAIN --steps 1 --save-hf "$tmp/from_ckpt"
step lora $TINY $TRAIN --steps 3 --lora-r 4 --lora-targets q,v,wo --lora-dropout 0.1 --checkpoint-every 2 \
    --out-dir "$tmp/lora" --merge-lora "$tmp/merged" $EVAL
expect "lora: merged HF directory" "$tmp/merged/config.json"
step lora_resume $TINY $TRAIN --steps 4 --lora-r 4 --lora-targets q,v,wo --lora-dropout 0.1 --out-dir "$tmp/lora" --resume latest
step lora_adapter $TINY --lora-adapter "$tmp/lora/adapter" $EVAL --eval-out "$tmp/lora_eval"
step adafactor $TINY $TRAIN --steps 3 --optimizer adafactor --adafactor-beta1 0.9 --checkpoint-every 2 --out-dir "$tmp/ada"
step adafactor_resume $TINY $TRAIN --steps 5 --optimizer adafactor --adafactor-beta1 0.9 --out-dir "$tmp/ada" --resume latest
step adafactor_lr $TINY $TRAIN --steps 2 --optimizer adafactor --adafactor-relative-step 0 --adafactor-scale-parameter 0 --lr 1e-3
# the rest of the data and schedule paths: accumulation, a shape ladder, file order, the data log, cosine
# warmup, HF's init, other FFN and head forms, early stopping, --resume auto on a fresh directory
step flags --model flan-t5-small --d-model 32 --num-heads 2 --d-kv 16 --d-ff 64 --num-layers 2 --num-decoder-layers 1 $LEN \
    $TRAIN --steps 3 --grad-accum 2 --shape-ladder 8,4 --bucket 0 --shuffle 0 --data-log "$tmp/datalog" --schedule cosine \
    --warmup 1 --init hf --ffn gated-silu --tied 1 --dropout 0.2 --eval-every 1 --eval-batch-size 3 --keep-best val_loss \
    --early-stop 1 --decay-norms 1 --out-dir "$tmp/flags" --resume auto
step relu --model t5-small --d-model 32 --num-heads 2 --d-kv 8 --d-ff 48 --num-layers 1 --num-buckets 8 --max-distance 16 \
    --ffn relu --scale-output 0 $LEN $TRAIN --steps 2 --clip 0 --weight-decay 0 --save-hf "$tmp/relu"
step greedy $LEN --model "$tmp/run/model" $EVAL --eval-out "$tmp/greedy" --baseline-model "$tmp/hf_bf16" \
    --compare-model "$tmp/merged" --compare-examples 2
expect "greedy: comparison" "$tmp/greedy/comparison.md"
step beam $LEN --model "$tmp/run/model" $EVAL --eval-out "$tmp/beam" --num-beams 3 --no-repeat-ngram 3 \
    --min-new-tokens 2 --repetition-penalty 1.3 --length-penalty 0.8 --early-stopping 1
step beam_neg $LEN --model "$tmp/hf_bf16" $EVAL --eval-out "$tmp/beam_neg" --num-beams 2 --repetition-penalty 0.7
printf '#Person1#: Hello, how are you?\n#Person2#: Fine, thanks. And you?\n' > "$tmp/dialogue.txt"
step summarize $LEN --model "$tmp/run/model" --summarize "$tmp/dialogue.txt" --max-new-tokens 8
step summarize_beam $LEN --model "$tmp/run/model" --summarize "$tmp/dialogue.txt" --max-new-tokens 8 --num-beams 3
step summarize_stdin $LEN --model "$tmp/run/model" --summarize - --prompt "Sum up: {dialogue}" --max-new-tokens 6 < "$tmp/dialogue.txt"
step compare_lora $LEN --model "$tmp/run/model" $EVAL --eval-out "$tmp/cmp_lora" --compare-model "$tmp/run/model" \
    --compare-lora-adapter "$tmp/lora/adapter" --baseline-model "$tmp/relu"
# a model that emits </s> first: every summary empty
step empty_greedy $LEN --model "$tmp/run/model" $EVAL --eval-out "$tmp/empty" --eos-bias 1000
step empty_beam $LEN --model "$tmp/run/model" $EVAL --eval-out "$tmp/empty_beam" --eos-bias 1000 --num-beams 3 --no-repeat-ngram 2
step empty_summarize $LEN --model "$tmp/run/model" --summarize "$tmp/dialogue.txt" --eos-bias 1000
step empty_rouge $TINY $TRAIN --steps 2 --eval-every 1 --eval-rouge 2 --keep-best rouge2 --eos-bias 1000 --out-dir "$tmp/empty_run"
step bench $TINY --bench 1 --bench-src-len 16 --bench-tgt-len 8
echo "msan_train.sh: $((n - bad)) passed, $bad failed"
[ $bad -eq 0 ]
