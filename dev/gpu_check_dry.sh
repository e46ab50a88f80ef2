#!/usr/bin/env bash
# dev/gpu_check_dry.sh — runs dev/gpu_check.sh here, without a GPU, against stub programs that answer
# as train_t5cu, test_t5cu and the kernel twins do (their result lines, step losses, run-directory
# files), so that a mistake in the script itself shows up before it costs device time. What it checks:
# the script reaches its summary; every stage that needs only our programs passes (the transformers
# baselines need a GPU and must fail here, nothing else may); the cuDNN stages and the summary's rows
# are there. It proves nothing about the CUDA code. Runs in `make test` (about 20 s).
set -uo pipefail
cd "$(dirname "$0")/.."
D=$(mktemp -d /tmp/gpu_check_dry_XXXXXX)
trap 'rm -rf "$D"' EXIT
mkdir -p "$D"/pb/{fp32,bf16,cudnn,profile} "$D"/bin

# train_t5cu: --plan-memory, --bench, --gen-bench, --save-hf, and training runs that print step lines
# and keep a run directory (checkpoints refuse a fresh run; --resume continues at step 4)
cat > "$D/train" <<'EOF'
#!/usr/bin/env bash
case " $* " in
    *" --plan-memory "*) echo "preset flan-t5-large fits"; exit 0 ;;
    *" --bench "*) case "$0" in # only the PROFILE=1 build (DIR/profile) has a profiler
            */profile/*) echo "phases (GPU ms per step): zero_grad=0.3"; case " $* " in *" --profile ops "*) echo "ops matmul=1.0" ;; esac ;;
            *) echo "(no phase profile: this build has no profiler; make PROFILE=1 builds one)" ;;
        esac
        echo "bench: median_step_ms=40.0 real_tok_per_s=95000 tflops=61.0 mfu=6.2% peak_mem_gib=8.8 median_host_ms=25.0"; exit 0 ;;
    *" --gen-bench "*) echo "gen_bench: summaries_per_s=246.0"; exit 0 ;;
    *" --save-hf "*) mkdir -p "${@: -1}"; exit 0 ;;
esac
ARGS="$*"; out=""; resume=0; steps=4
while [ $# -gt 0 ]; do case "$1" in --out-dir) out=$2; shift ;; --resume) resume=1; shift ;; --steps) steps=$2; shift ;; esac; shift; done
if [ -n "$out" ] && [ -d "$out/checkpoints" ] && [ $resume = 0 ]; then echo "error: $out already holds checkpoints"; exit 1; fi
first=1; [ $resume = 1 ] && first=4
for s in $(seq $first "$steps"); do echo "step $s/$steps | loss 1.$s | lr 1e-2 | grad norm 0.$s | 10 ms | 100 tok/s"; done
case " $ARGS " in *" --cuda-graphs 1 "*) echo "cuda graphs: 2 captured, 2 replayed (training micro-steps, decoder steps), 1 micro-steps eager" ;; esac
if [ -n "$out" ]; then
    mkdir -p "$out/checkpoints"
    [ $resume = 0 ] && : > "$out/metrics.jsonl"
    for s in $(seq $first "$steps"); do echo "{\"type\": \"train\", \"step\": $s}" >> "$out/metrics.jsonl"; done
    printf '{"type": "eval"}\n{"type": "eval"}\n{"type": "end"}\n' >> "$out/metrics.jsonl"
fi
EOF
printf '#!/usr/bin/env bash\necho "10 passed, 0 failed"\n' > "$D/test"
printf '#!/usr/bin/env bash\necho "kernel: 5 passed, 0 failed"\n' > "$D/kernel"
printf '#!/usr/bin/env bash\nshift 4\nexec "$@"\n' > "$D/bin/compute-sanitizer" # drops --tool memcheck --error-exitcode 1
chmod +x "$D/train" "$D/test" "$D/kernel" "$D/bin/compute-sanitizer"
for p in fp32 bf16 cudnn; do cp "$D/train" "$D/pb/$p/train_t5cu"; cp "$D/test" "$D/pb/$p/test_t5cu"; done
for k in rmsnorm ffn_act crossentropy attention embedding adamw adafactor global_norm matmul lora; do cp "$D/kernel" "$D/pb/bf16/$k"; done
cp "$D/kernel" "$D/pb/cudnn/attention"
cp "$D/train" "$D/pb/profile/train_t5cu"

mkdir -p "$D/data" && : > "$D/data/train.bin" # the stub trainer does not read it
PATH="$D/bin:$PATH" GPU_PREBUILT="$D/pb" GPU_CHECK_OUT="$D/out" GPU_CHECK_BUDGET=600 GPU_DATA="$D/data" \
    bash dev/gpu_check.sh > "$D/run.log" 2>&1
summary=$(sed -n '/^=== summary/,$p' "$D/run.log")
fail=0
expect() { # description, condition
    if eval "$2"; then echo "OK   $1"; else echo "FAIL $1"; fail=1; fi
}
expect "gpu_check.sh reaches its summary" '[ -n "$summary" ]'
unexpected=$(echo "$summary" | grep -E "^(test |tuned |class |plans |kernel|bench t5cu|dialogsum train( [a-z]+)? {2,}|gen model|gen t5cu|plain run|nccl|recompute|run dir|large|sanitizer|lora (plain|nccl|recompute))" | grep -v " PASS")
expect "every stage that runs only our programs passes" '[ -z "$unexpected" ]'
expect "only the transformers baselines fail (no GPU here)" \
    '[ "$(echo "$summary" | grep -cE "FAIL|SKIPPED")" = "$(echo "$summary" | grep -cE "^(bench hf|gen hf).*FAIL")" ]'
expect "the cuDNN stages ran" '[ "$(echo "$summary" | grep -cE "^(test cudnn (cudnn|cli)|kernel attention cudnn|bench t5cu cudnn) +PASS")" = 4 ]'
expect "the matmul-mode stages ran" \
    '[ "$(echo "$summary" | grep -cE "^((tuned|class) (fp32|bf16) fixtures|(class|plans) bf16 (cpu|fixtures|determinism)|bench t5cu class|kernel matmul) +PASS")" = 10 ]'
expect "the LoRA stages ran (tests, twin, benchmarks base/large/xl, NCCL/ZeRO-1/recompute runs)" \
    '[ "$(echo "$summary" | grep -cE "^(test (fp32|bf16) lora|kernel lora|bench t5cu (lora base|lora large|large nolora|lora xl|xl nolora)|lora (plain run|nccl zero-1|recompute)) +PASS")" = 11 ]'
expect "the summary compares LoRA with full fine-tuning and peft" 'echo "$summary" | grep -q "^lora base: step ms LoRA/full 1.00x"'
expect "the DialogSum runs ran, one line each in the summary (untuned, graphs, ladder, plans, tuned, class, eager)" \
    '[ "$(echo "$summary" | grep -cE "^dialogsum train( graphs| ladder| plans| tuned| class| eager)? +PASS")" = 7 ] && [ "$(echo "$summary" | grep -cE "^dialogsum train.*real batches.*real tok/s")" = 7 ]'
expect "the CUDA-graph stages ran (tests in both builds, the benchmark), with their summary row" \
    '[ "$(echo "$summary" | grep -cE "^(test (bf16|fp32) graphs|bench t5cu (graphs|ladder)) +PASS")" = 4 ] && echo "$summary" | grep -q "^t5cu_graphs *95000"'
expect "the summary has the engine rows, the ratios and the generation table" \
    'echo "$summary" | grep -q "^t5cu_cudnn *95000" && echo "$summary" | grep -q "^t5cu_class *95000" && echo "$summary" | grep -q "^ratio t5cu_flash" && echo "$summary" | grep -q "^ratio t5cu_graphs / best transformers on the same ladder" && echo "$summary" | grep -q "^flan-t5-base *4 *246.0 *246.0"'
expect "the profiled bench ran on the PROFILE=1 build, its phase and operation tables in the summary" \
    'echo "$summary" | grep -qE "^bench t5cu ops +PASS" && echo "$summary" | grep -q "^t5cu_ops phases" && echo "$summary" | grep -q "^ops matmul"'
# the two passes (GPU_CHECK_PASS=1, 2): between them every stage of the whole check, none twice
stage_names() { sed -n '/^=== summary/,$p' "$1" | grep -E " (PASS|FAIL|SKIPPED)" | sed -E 's/ +(PASS|FAIL|SKIPPED).*//' | sort; }
for pass in 1 2; do
    rm -rf "$D/out"
    PATH="$D/bin:$PATH" GPU_PREBUILT="$D/pb" GPU_CHECK_OUT="$D/out" GPU_CHECK_BUDGET=600 GPU_DATA="$D/data" GPU_CHECK_PASS=$pass \
        bash dev/gpu_check.sh > "$D/pass$pass.log" 2>&1
    stage_names "$D/pass$pass.log" > "$D/pass$pass.names"
    sed -n '/^=== summary/,$p' "$D/pass$pass.log" | grep -E " (FAIL|SKIPPED)" | grep -vE "^(bench hf|gen hf)" >> "$D/pass_fails"
done
stage_names "$D/run.log" > "$D/all.names"
expect "GPU_CHECK_PASS=1 and 2 split the stages: pass 1 has the graph and LoRA stages, together they are all, none runs twice" \
    '[ -s "$D/pass1.names" ] && grep -q "^test bf16 graphs$" "$D/pass1.names" && grep -q "^bench t5cu lora base$" "$D/pass1.names" &&
     [ "$(sort "$D/pass1.names" "$D/pass2.names")" = "$(cat "$D/all.names")" ] && [ -z "$(comm -12 "$D/pass1.names" "$D/pass2.names")" ]'
expect "each pass on its own: every stage that runs only our programs passes (what it needs is made in the same pass)" \
    '[ ! -s "$D/pass_fails" ] || { cat "$D/pass_fails"; false; }'
expect "GPU_CHECK_PASS=3 is refused" \
    '! GPU_CHECK_PASS=3 GPU_PREBUILT="$D/pb" GPU_CHECK_OUT="$D/out3" bash dev/gpu_check.sh > /dev/null 2>&1'
[ -n "${GPU_CHECK_DRY_KEEP:-}" ] && cp "$D"/pass*.names "$D"/all.names "$GPU_CHECK_DRY_KEEP"/
[ $fail = 0 ] || { echo "--- gpu_check.sh output:"; tail -80 "$D/run.log"; }
exit $fail
