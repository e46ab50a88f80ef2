# t5.c — every build. `make test` is the test command of the README (and of CI).
# Optional dependencies are found by compile probes and reported as ✓/✗; force with USE_X=1 / NO_X=1.

CC ?= gcc
PYTHON ?= python3
CFLAGS ?= -O3 -march=native
CFLAGS += -std=gnu11 -Wall -Wextra -Werror -Wno-format-truncation
LDLIBS = -lm
SAN_FLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
BUILD = build

# ---------------------------------------------------------------- OpenMP (probe)
ifeq ($(NO_OMP),1)
  OMP_FOUND = 0
else ifeq ($(USE_OMP),1)
  OMP_FOUND = 1
else ifeq ($(NO_OMP)$(USE_OMP),)
  OMP_FOUND := $(shell echo 'int main(void){return 0;}' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null && echo 1 || echo 0)
else
  $(error NO_OMP / USE_OMP must be 1 when given)
endif
ifeq ($(OMP_FOUND),1)
  CFLAGS += -fopenmp
  $(info ✓ OpenMP: CPU engine runs multi-threaded (OMP_NUM_THREADS))
else
  $(info ✗ OpenMP: not found or disabled; the CPU engine runs single-threaded)
endif

# ---------------------------------------------------------------- CUDA toolchain (report only, for the CUDA issues)
NVCC_FOUND := $(shell command -v nvcc >/dev/null 2>&1 && echo 1 || echo 0)
ifeq ($(NVCC_FOUND),1)
  $(info ✓ nvcc: $(shell command -v nvcc))
else
  $(info ✗ nvcc: not found (CUDA targets unavailable))
endif

HEADERS = $(wildcard llmc/*.h)

.PHONY: all test test_fast asan fixtures bench_cpu check_export clean

all: train_t5 test_t5

train_t5: train_t5.c $(HEADERS)
	$(CC) $(CFLAGS) -I. $< -o $@ $(LDLIBS)

test_t5: test_t5.c train_t5.c $(HEADERS)
	$(CC) $(CFLAGS) -Wno-unused-function -I. $< -o $@ $(LDLIBS)

$(BUILD)/test_io: dev/test_io.c llmc/json.h llmc/safetensors.h
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) -I. $< -o $@ $(LDLIBS)

# the same three programs under AddressSanitizer + UndefinedBehaviorSanitizer
$(BUILD)/asan/train_t5: train_t5.c $(HEADERS)
	@mkdir -p $(BUILD)/asan
	$(CC) $(filter-out -O3,$(CFLAGS)) $(SAN_FLAGS) -I. $< -o $@ $(LDLIBS)
$(BUILD)/asan/test_t5: test_t5.c train_t5.c $(HEADERS)
	@mkdir -p $(BUILD)/asan
	$(CC) $(filter-out -O3,$(CFLAGS)) $(SAN_FLAGS) -Wno-unused-function -I. $< -o $@ $(LDLIBS)
$(BUILD)/asan/test_io: dev/test_io.c llmc/json.h llmc/safetensors.h
	@mkdir -p $(BUILD)/asan
	$(CC) $(filter-out -O3,$(CFLAGS)) $(SAN_FLAGS) -I. $< -o $@ $(LDLIBS)

# ROUGE / BLEU in C (llmc/rouge.h, llmc/bleu.h): the `score` command line, its sanitizer build, and
# the parity test against rouge_score and sacrebleu (pip install rouge-score sacrebleu; data from
# ../shared/data, or T5_DATA=DIR)
METRIC_HEADERS = llmc/rouge.h llmc/bleu.h llmc/porter.h llmc/ngram.h llmc/utils.h llmc/json.h
$(BUILD)/score: dev/score.c $(METRIC_HEADERS)
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) -I. $< -o $@ $(LDLIBS)
$(BUILD)/asan/score: dev/score.c $(METRIC_HEADERS)
	@mkdir -p $(BUILD)/asan
	$(CC) $(filter-out -O3,$(CFLAGS)) $(SAN_FLAGS) -I. $< -o $@ $(LDLIBS)
.PHONY: test_metrics
test_metrics: $(BUILD)/score $(BUILD)/asan/score
	ASAN_OPTIONS=detect_leaks=1 $(PYTHON) dev/test_metrics.py --score-bin $(BUILD)/score --asan-bin $(BUILD)/asan/score

# the whole suite: file readers, the engine against the HF fixtures, the CLI, then all of it again
# under the sanitizers
test: train_t5 test_t5 $(BUILD)/test_io
	./$(BUILD)/test_io
	./test_t5 --train-bin ./train_t5
	$(MAKE) --no-print-directory test_metrics
	$(MAKE) --no-print-directory asan

asan: $(BUILD)/asan/train_t5 $(BUILD)/asan/test_t5 $(BUILD)/asan/test_io
	ASAN_OPTIONS=detect_leaks=1 ./$(BUILD)/asan/test_io
	ASAN_OPTIONS=detect_leaks=1 ./$(BUILD)/asan/test_t5 --train-bin ./$(BUILD)/asan/train_t5

# regenerate dev/fixtures with Hugging Face transformers (needs torch + transformers)
fixtures:
	$(PYTHON) dev/make_fixtures.py

# CPU speed vs PyTorch on this machine (a benchmark, not a test)
bench_cpu: train_t5
	$(PYTHON) dev/bench_cpu.py

clean:
	rm -rf train_t5 test_t5 $(BUILD)
