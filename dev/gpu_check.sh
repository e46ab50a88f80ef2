#!/usr/bin/env bash
# dev/gpu_check.sh — everything that needs a GPU, in one call (≤ 8 minutes on an H100):
#   1. test_t5cu, fp32 build: HF fixtures (tight), CUDA vs CPU engine, determinism, the CLI
#   2. test_t5cu, bf16 build: the same with the documented bf16 tolerances
#   3. the kernel twins of dev/cuda (CPU check at several sizes + benchmark)
#   4. compute-sanitizer memcheck on a short training run
#   5. benchmark: train_t5cu vs transformers + PyTorch (dev/bench_hf_gpu.py), flan-t5-base-shaped
#      random model on the same synthetic DialogSum-shaped batches, in this same call; train_t5cu
#      again with --attention flash (its correctness: test_t5cu's flash-vs-gemm test, kernel attention)
#   6. multi-GPU paths with one rank (issue 6): NCCL (mpirun -np 1, or --nccl-init-dir without MPI) and
#      NCCL + ZeRO-1 must print the plain run's step losses exactly, recompute within 1e-4; a
#      flan-t5-large step with --recompute 1 (memory vs --plan-memory)
#   7. generation: train_t5cu --gen-bench vs transformers' generate() (dev/bench_hf_generate.py), the same
#      random flan-t5-base (written by train_t5cu --save-hf), inputs and search, greedy and 4 beams
# The last lines are a summary table. Exit status 0 only if every stage passed.
#   bash dev/gpu_check.sh            (from anywhere; BENCH_STEPS, BENCH_BATCH override the benchmark)
set -uo pipefail
cd "$(dirname "$0")/.."
STEPS=${BENCH_STEPS:-20}
BATCH=${BENCH_BATCH:-16}
GEN_INPUTS=${GEN_INPUTS:-128}
GEN_BATCH=${GEN_BATCH:-64}
OUT=${GPU_CHECK_OUT:-build/gpu_check}
mkdir -p "$OUT"
declare -a NAMES STATUS
stage() { # name, timeout seconds, command...
    local name=$1 limit=$2; shift 2
    echo; echo "=== $name"
    local t0=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee "$OUT/${name// /_}.log"
    local rc=${PIPESTATUS[0]}
    NAMES+=("$name"); STATUS+=("$([ "$rc" -eq 0 ] && echo PASS || echo "FAIL (exit $rc)") $((SECONDS - t0)) s")
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
nproc_=$(nproc)

stage "build fp32" 300 make -j"$nproc_" -B PRECISION=FP32 train_t5cu test_t5cu
stage "test_t5cu fp32" 300 ./test_t5cu --train-bin ./train_t5cu
stage "build bf16" 300 make -j"$nproc_" -B train_t5cu test_t5cu
stage "test_t5cu bf16" 300 ./test_t5cu --train-bin ./train_t5cu
stage "build dev/cuda" 300 make -C dev/cuda -j"$nproc_" -B all
for k in rmsnorm ffn_act crossentropy attention; do stage "kernel $k" 120 "./dev/cuda/$k"; done
stage "compute-sanitizer" 300 compute-sanitizer --tool memcheck --error-exitcode 1 ./train_t5cu \
    --model dev/fixtures/flan_gated/model --train-file dev/fixtures/flan_gated/examples.bin --steps 2 --batch-size 3
stage "bench train_t5cu" 300 ./train_t5cu --model flan-t5-base --bench "$STEPS" --bench-warmup 3 --batch-size "$BATCH"
stage "bench t5cu flash" 300 ./train_t5cu --model flan-t5-base --bench "$STEPS" --bench-warmup 3 --batch-size "$BATCH" \
    --attention flash
stage "bench hf-pytorch" 600 python3 dev/bench_hf_gpu.py --steps "$STEPS" --warmup 3 --batch-size "$BATCH"

# ---- multi-GPU paths with one rank: the same fixture run, step losses compared
FX=dev/fixtures/flan_gated
RUN_ARGS=(--model "$FX/model" --train-file "$FX/examples.bin" --steps 4 --batch-size 3 --shuffle 0 --lr 1e-2 --dropout 0.1)
one_rank() { # a 1-rank launch: mpirun when there is one, else the shared-directory bootstrap
    if command -v mpirun >/dev/null 2>&1; then mpirun --allow-run-as-root -np 1 "$@"
    else RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 "$@" --nccl-init-dir "$(mktemp -d)"; fi
}
same_losses() { # name, reference log, log, tolerance: the "| loss X" values of two runs
    python3 - "$2" "$3" "$4" <<'PY'
import re, sys
a, b = ([float(x) for x in re.findall(r"\| loss ([-0-9.e+naninf]+)", open(f).read())] for f in sys.argv[1:3])
tol = float(sys.argv[3])
ok = len(a) == len(b) > 0 and all(abs(x - y) <= tol for x, y in zip(a, b))
print(f"reference {a}\nthis run  {b}\n{'same' if ok else 'DIFFERENT'} (tolerance {tol})")
sys.exit(0 if ok else 1)
PY
}
export -f one_rank same_losses
stage "plain run" 120 ./train_t5cu "${RUN_ARGS[@]}"
stage "nccl 1 rank" 120 bash -c 'one_rank ./train_t5cu "$@" > "'"$OUT"'/nccl.out" 2>&1; rc=$?; cat "'"$OUT"'/nccl.out"; [ $rc -eq 0 ] && same_losses x "'"$OUT"'/plain_run.log" "'"$OUT"'/nccl.out" 0' _ "${RUN_ARGS[@]}"
stage "nccl zero-1" 120 bash -c 'one_rank ./train_t5cu "$@" --zero 1 > "'"$OUT"'/zero.out" 2>&1; rc=$?; cat "'"$OUT"'/zero.out"; [ $rc -eq 0 ] && same_losses x "'"$OUT"'/plain_run.log" "'"$OUT"'/zero.out" 0' _ "${RUN_ARGS[@]}"
stage "recompute" 120 bash -c './train_t5cu "$@" --recompute 1 > "'"$OUT"'/recompute.out" 2>&1; rc=$?; cat "'"$OUT"'/recompute.out"; [ $rc -eq 0 ] && same_losses x "'"$OUT"'/plain_run.log" "'"$OUT"'/recompute.out" 1e-4' _ "${RUN_ARGS[@]}"
stage "large recompute" 240 ./train_t5cu --model flan-t5-large --bench 3 --bench-warmup 1 --batch-size "$BATCH" --recompute 1
./train_t5cu --plan-memory 80 | grep -E "preset|flan-t5-large" || true

# ---- generation: summaries/s on the GPU vs transformers' generate(), same model, inputs and search
stage "gen model" 120 ./train_t5cu --model flan-t5-base --save-hf "$OUT/gen_model"
for beams in 1 4; do
    stage "gen t5cu b$beams" 300 ./train_t5cu --model "$OUT/gen_model" --gen-bench "$GEN_INPUTS" --gen-batch-size "$GEN_BATCH" \
        --num-beams "$beams" --max-new-tokens 64
    stage "gen hf b$beams" 300 python3 dev/bench_hf_generate.py --model-dir "$OUT/gen_model" --inputs "$GEN_INPUTS" \
        --batch-size "$GEN_BATCH" --num-beams "$beams" --max-new-tokens 64
done

field() { grep -o "$2=[^ ]*" "$OUT/$1.log" 2>/dev/null | tail -1 | cut -d= -f2; }
ours_tok=$(field bench_train_t5cu real_tok_per_s); hf_tok=$(field bench_hf-pytorch real_tok_per_s)
echo
echo "=== summary ($(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1), $(date -u +%F))"
fails=0
for i in "${!NAMES[@]}"; do
    printf '%-22s %s\n' "${NAMES[$i]}" "${STATUS[$i]}"
    case "${STATUS[$i]}" in PASS*) ;; *) fails=$((fails + 1)) ;; esac
done
printf '%-12s %12s %10s %8s %8s %10s\n' engine tok/s step_ms TFLOP/s MFU peak_GiB
for e in train_t5cu t5cu_flash hf-pytorch; do
    printf '%-12s %12s %10s %8s %8s %10s\n' "$e" "$(field "bench_$e" real_tok_per_s)" "$(field "bench_$e" median_step_ms)" \
        "$(field "bench_$e" tflops)" "$(field "bench_$e" mfu)" "$(field "bench_$e" peak_mem_gib)"
done
if [ -n "$ours_tok" ] && [ -n "$hf_tok" ]; then
    echo "ratio train_t5cu / hf-pytorch (real tokens/s): $(python3 -c "print(f'{$ours_tok / $hf_tok:.2f}x')")"
else
    echo "ratio train_t5cu / hf-pytorch: n/a (a benchmark did not finish)"
fi
flash_tok=$(field bench_t5cu_flash real_tok_per_s)
if [ -n "$flash_tok" ] && [ -n "$hf_tok" ] && [ -n "$ours_tok" ]; then
    echo "ratio t5cu_flash / hf-pytorch: $(python3 -c "print(f'{$flash_tok / $hf_tok:.2f}x (flash / gemm attention: {$flash_tok / $ours_tok:.2f}x)')")"
fi
printf '%-12s %8s %14s %14s %8s\n' generation beams t5cu_summ/s hf_summ/s ratio
for beams in 1 4; do
    ours=$(field "gen_t5cu_b$beams" summaries_per_s); theirs=$(field "gen_hf_b$beams" summaries_per_s)
    ratio=n/a
    [ -n "$ours" ] && [ -n "$theirs" ] && ratio=$(python3 -c "print(f'{$ours / $theirs:.2f}x')")
    printf '%-12s %8s %14s %14s %8s\n' flan-t5-base "$beams" "${ours:-n/a}" "${theirs:-n/a}" "$ratio"
done
echo "stages failed: $fails"
[ "$fails" -eq 0 ]
