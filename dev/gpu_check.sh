#!/usr/bin/env bash
# dev/gpu_check.sh — everything that needs a GPU, in one call (≤ 8 minutes on an H100):
#   1. test_t5cu, fp32 build: HF fixtures (tight), CUDA vs CPU engine, determinism, the CLI
#   2. test_t5cu, bf16 build: the same with the documented bf16 tolerances
#   3. the kernel twins of dev/cuda (CPU check at several sizes + benchmark)
#   4. compute-sanitizer memcheck on a short training run
#   5. benchmark: train_t5cu vs transformers + PyTorch (dev/bench_hf_gpu.py), flan-t5-base-shaped
#      random model on the same synthetic DialogSum-shaped batches, in this same call
# The last lines are a summary table. Exit status 0 only if every stage passed.
#   bash dev/gpu_check.sh            (from anywhere; BENCH_STEPS, BENCH_BATCH override the benchmark)
set -uo pipefail
cd "$(dirname "$0")/.."
STEPS=${BENCH_STEPS:-20}
BATCH=${BENCH_BATCH:-16}
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
stage "bench hf-pytorch" 600 python3 dev/bench_hf_gpu.py --steps "$STEPS" --warmup 3 --batch-size "$BATCH"

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
for e in train_t5cu hf-pytorch; do
    printf '%-12s %12s %10s %8s %8s %10s\n' "$e" "$(field "bench_$e" real_tok_per_s)" "$(field "bench_$e" median_step_ms)" \
        "$(field "bench_$e" tflops)" "$(field "bench_$e" mfu)" "$(field "bench_$e" peak_mem_gib)"
done
if [ -n "$ours_tok" ] && [ -n "$hf_tok" ]; then
    echo "ratio train_t5cu / hf-pytorch (real tokens/s): $(python3 -c "print(f'{$ours_tok / $hf_tok:.2f}x')")"
else
    echo "ratio train_t5cu / hf-pytorch: n/a (a benchmark did not finish)"
fi
echo "stages failed: $fails"
[ "$fails" -eq 0 ]
