#!/usr/bin/env bash
# The CUDA binary's host side without a GPU (--dry-run, llmc/run.h): options, the model loaded on the
# host (preset, HF directory, LoRA, a checkpoint to resume written by the CPU trainer), the data, the
# run directory checks, the evaluation inputs, then a stop before the engine is built. Its host-side
# output must be train_t5's, line for line (one driver), and it writes no run files.
#   bash dev/test_dry_run.sh build/cc/train_t5cu [./train_t5]      (DATA: ../shared/data)
set -u
gpu=${1:?usage: test_dry_run.sh TRAIN_T5CU [TRAIN_T5]}
cpu=${2:-./train_t5}
DATA=${DATA:-../shared/data}
PYTHON=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=0 bad=0
ok() { n=$((n + 1)); echo "OK   $1"; }
fail() { n=$((n + 1)); bad=$((bad + 1)); echo "FAIL $1"; }
check() { if eval "$2"; then ok "$1"; else fail "$1"; fi; }

$PYTHON prepro_dialogsum.py --data-dir "$DATA/dialogsum" --tokenizer "$DATA/t5/spiece.model" --out-dir "$tmp/ds" > /dev/null 2>&1 || { echo "FAIL prepro"; exit 1; }
SMALL="--model flan-t5-small --d-model 32 --num-heads 2 --d-kv 16 --d-ff 64 --num-layers 1"
RUN="--train-file $tmp/ds/train.bin --val-file $tmp/ds/val.bin --tokenizer $DATA/t5/spiece.model --eval-split $tmp/ds/test --eval-rouge 4"

# 1. a fresh run: the same host-side lines from both binaries, nothing written
"$gpu" $SMALL $RUN --out-dir "$tmp/run_gpu" --dry-run 1 > "$tmp/gpu.out" 2> "$tmp/gpu.err"
check "fresh run: train_t5cu --dry-run exits 0" "[ $? -eq 0 ]"
check "fresh run: it stops before the engine" "grep -q 'dry run: train_t5cu host side ready' $tmp/gpu.out"
check "fresh run: the step count from --epochs (3115 steps of 4 on DialogSum's 12460)" "grep -q '3115 steps in all' $tmp/gpu.out"
check "fresh run: nothing written (no run directory at all)" "[ ! -e $tmp/run_gpu ]"
"$cpu" $SMALL $RUN --out-dir "$tmp/run_cpu" --dry-run 1 > "$tmp/cpu.out" 2> /dev/null
check "fresh run: train_t5 --dry-run prints the same host-side lines (one driver)" \
      "diff <(sed 's/train_t5cu/BIN/; s/run_gpu/RUN/' $tmp/gpu.out) <(sed 's/train_t5/BIN/; s/run_cpu/RUN/' $tmp/cpu.out) > /dev/null"

# 2. LoRA on an HF directory
"$gpu" --model dev/fixtures/flan_gated/model --train-file dev/fixtures/flan_gated/examples.bin --lora-r 4 --lora-targets q,v,wo \
    --dry-run 1 > "$tmp/lora.out" 2>&1
check "LoRA on an HF directory: the adapter's trainable count" "grep -q 'trainable params: .* of ' $tmp/lora.out && grep -q 'LoRA  *| r 4 alpha 8' $tmp/lora.out"

# 3. resume a run the CPU trainer checkpointed (one checkpoint format): the data position is checked
"$cpu" $SMALL --train-file "$tmp/ds/val.bin" --steps 2 --out-dir "$tmp/cpurun" > /dev/null 2>&1
"$gpu" $SMALL --train-file "$tmp/ds/val.bin" --steps 4 --out-dir "$tmp/cpurun" --resume latest --dry-run 1 > "$tmp/res.out" 2>&1
check "resume: train_t5cu finds the CPU run's checkpoint" "grep -q 'resuming from .*ckpt_000000002.bin at step 2' $tmp/res.out"
"$gpu" $SMALL --train-file "$tmp/ds/val.bin" --steps 4 --out-dir "$tmp/cpurun" --resume latest --batch-size 8 --dry-run 1 > "$tmp/res2.out" 2>&1
check "resume: another batch size is refused (the data position would not fit)" "[ $? -ne 0 ] && grep -qi 'batch' $tmp/res2.out"

# 4. bad input is named before any device work
"$gpu" $SMALL --train-file "$tmp/nope.bin" --dry-run 1 > "$tmp/bad.out" 2>&1
check "a missing train file: exit 1, named" "[ $? -eq 1 ] && grep -q 'nope.bin' $tmp/bad.out"
"$gpu" --model dev/fixtures/flan_gated/model --d-model 64 --train-file "$tmp/ds/val.bin" --dry-run 1 > "$tmp/bad2.out" 2>&1
check "dimension flags on an HF directory: refused" "[ $? -eq 1 ] && grep -q 'dimension flags' $tmp/bad2.out"
"$gpu" $SMALL --train-file "$tmp/ds/val.bin" --eval-split "$tmp/ds/none" --dry-run 1 > "$tmp/bad3.out" 2>&1
check "a missing evaluation split: refused before training" "[ $? -eq 1 ] && grep -q 'none' $tmp/bad3.out"

# 5. --optimizer adafactor (opt-in on the GPU, docs/adafactor.md): a CPU run's Adafactor checkpoint resumes; ZeRO-1 refused
"$cpu" $SMALL --train-file "$tmp/ds/val.bin" --steps 2 --optimizer adafactor --out-dir "$tmp/afrun" > /dev/null 2>&1
"$gpu" $SMALL --train-file "$tmp/ds/val.bin" --steps 4 --optimizer adafactor --out-dir "$tmp/afrun" --resume latest --dry-run 1 \
    > "$tmp/af.out" 2>&1
check "adafactor: train_t5cu finds the CPU run's Adafactor checkpoint" "grep -q 'resuming from .*ckpt_000000002.bin at step 2' $tmp/af.out"
"$gpu" $SMALL --train-file "$tmp/ds/val.bin" --optimizer adafactor --zero 1 --dry-run 1 > "$tmp/af2.out" 2>&1
check "adafactor with --zero 1: refused by name" "[ $? -ne 0 ] && grep -q -- '--zero 1 with --optimizer adafactor' $tmp/af2.out"

echo "dry run of $(basename "$gpu"): $((n - bad)) OK, $bad FAIL"
[ "$bad" -eq 0 ]
