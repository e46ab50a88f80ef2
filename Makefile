# t5.c — every build. `make test` is the test command of the README (and of CI).
# Optional dependencies are found by compile probes and reported as ✓/✗; force with USE_X=1 / NO_X=1.

CC ?= gcc
PYTHON ?= python3
CFLAGS ?= -O3 -march=native
CFLAGS += -std=gnu11 -Wall -Wextra -Werror -Wno-format-truncation
LDLIBS = -lm
SAN_FLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
BUILD = build
# (defined before any rule: a rule's prerequisites are expanded when it is read)
HEADERS = $(wildcard llmc/*.h) tokenizer/spm.h

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
  CFLAGS += -Wno-unknown-pragmas
  $(info ✗ OpenMP: not found or disabled; the CPU engine runs single-threaded)
endif

# ---------------------------------------------------------------- CUDA (probes): nvcc, cuBLASLt, cuDNN, NCCL, MPI
# train_t5cu / test_t5cu need nvcc + cuBLASLt. PRECISION=BF16 (default) or FP32. GPU_ARCH: the card's
# sm_XX (default: native when nvidia-smi sees a GPU, else sm_90). NCCL and MPI are used when found
# (multi-GPU); USE_X=1 / NO_X=1 force a probe's answer. cuDNN is opt-in: USE_CUDNN=1 compiles the
# --attention cudnn path (llmc/cudnn_att.cpp, cuDNN's fused SDPA through the cudnn-frontend headers;
# bf16 build only) and links libcudnn; without it the binaries do not need libcudnn at run time.
NVCC ?= nvcc
CXX ?= g++
NVCC_FOUND := $(shell command -v $(NVCC) >/dev/null 2>&1 && echo 1 || echo 0)
CUDA_HOME ?= $(if $(filter 1,$(NVCC_FOUND)),$(abspath $(dir $(shell command -v $(NVCC)))/..),/usr/local/cuda)
CUDA_PROBE = $(CXX) -x c++ - -I$(CUDA_HOME)/include -L$(CUDA_HOME)/lib64 -o /dev/null
HASH := \#
probe = $(shell printf '$(1)' | $(CUDA_PROBE) $(2) >/dev/null 2>&1 && echo 1 || echo 0)
define cuda_dep # name, USE_ flag, NO_ flag, probe result variable
  ifeq ($$($(3)),1)
    $(1)_FOUND = 0
  else ifeq ($$($(2)),1)
    $(1)_FOUND = 1
  else ifeq ($$($(2))$$($(3)),)
    $(1)_FOUND := $$($(4))
  else
    $$(error $(3) / $(2) must be 1 when given)
  endif
endef
ifeq ($(NVCC_FOUND),1)
  $(info ✓ nvcc: $(shell command -v $(NVCC)) ($(shell $(NVCC) --version | grep -o 'release [0-9.]*')))
  CUBLASLT_PROBE := $(call probe,$(HASH)include <cublasLt.h>\nint main(void){cublasLtHandle_t h; return (int)cublasLtCreate(&h);}\n,-lcublasLt)
  CUDNN_PROBE := $(call probe,$(HASH)include <cudnn.h>\nint main(void){return (int)cudnnGetVersion();}\n,-lcudnn)
  # the frontend headers: CUDNN_FRONTEND_PATH, else where `pip install nvidia-cudnn-frontend` puts them
  CUDNN_FRONTEND_PATH ?= $(shell $(PYTHON) -c 'import os, sysconfig; p = os.path.join(sysconfig.get_paths()["purelib"], "include"); print(p if os.path.isfile(os.path.join(p, "cudnn_frontend.h")) else "")' 2>/dev/null)
  CUDNN_FE_PROBE := $(call probe,$(HASH)include <cudnn_frontend.h>\nint main(void){return 0;}\n,-std=c++17 $(if $(CUDNN_FRONTEND_PATH),-I$(CUDNN_FRONTEND_PATH)) -fsyntax-only)
  NCCL_PROBE := $(call probe,$(HASH)include <nccl.h>\nint main(void){int v; return (int)ncclGetVersion(&v);}\n,-lnccl)
else
  $(info ✗ nvcc: not found (CUDA targets unavailable))
  CUBLASLT_PROBE = 0
  CUDNN_PROBE = 0
  CUDNN_FE_PROBE = 0
  NCCL_PROBE = 0
endif
# MPI (Open MPI or MPICH through their mpicc wrapper): data parallelism for train_t5 (CPU) and the
# NCCL bootstrap of train_t5cu; the CPU trainer gets -DUSE_MPI and the wrapper's flags
MPI_PROBE := $(shell command -v mpicc >/dev/null 2>&1 && echo '$(HASH)include <mpi.h>\nint main(int c,char**v){MPI_Init(&c,&v);return MPI_Finalize();}' | mpicc -x c - -o /dev/null >/dev/null 2>&1 && echo 1 || echo 0)
$(eval $(call cuda_dep,CUBLASLT,USE_CUBLASLT,NO_CUBLASLT,CUBLASLT_PROBE))
# cuDNN: found = the probes' answer; compiled in only with USE_CUDNN=1 (CUDNN_ATTN)
ifneq ($(filter-out 1,$(USE_CUDNN) $(NO_CUDNN)),)
  $(error NO_CUDNN / USE_CUDNN must be 1 when given)
endif
CUDNN_FOUND := $(if $(filter 1,$(NO_CUDNN)),0,$(CUDNN_PROBE))
CUDNN_ATTN := $(if $(filter 1,$(USE_CUDNN)),1,0)
$(eval $(call cuda_dep,NCCL,USE_NCCL,NO_NCCL,NCCL_PROBE))
$(eval $(call cuda_dep,MPI,USE_MPI,NO_MPI,MPI_PROBE))
ifeq ($(CUBLASLT_FOUND),1)
  $(info ✓ cuBLASLt: the CUDA trainer's matmuls)
else
  $(info ✗ cuBLASLt: not found (train_t5cu / test_t5cu unavailable))
endif
ifeq ($(CUDNN_FOUND),1)
  $(info ✓ cuDNN: found; frontend headers $(if $(filter 1,$(CUDNN_FE_PROBE)),✓,✗ (pip install --no-deps nvidia-cudnn-frontend==1.32.0, or CUDNN_FRONTEND_PATH=.../include)); --attention cudnn $(if $(filter 1,$(CUDNN_ATTN)),compiled in (USE_CUDNN=1),not compiled in (build with USE_CUDNN=1)))
else
  $(info ✗ cuDNN: not found or disabled)
endif
ifeq ($(CUDNN_ATTN),1)
  ifneq ($(CUDNN_FOUND)$(CUDNN_FE_PROBE),11)
    $(error USE_CUDNN=1 needs cuDNN (cudnn.h, libcudnn) and the cudnn-frontend headers: pip install --no-deps nvidia-cudnn-frontend==1.32.0, or set CUDNN_FRONTEND_PATH)
  endif
endif
$(info $(if $(filter 1,$(NCCL_FOUND)),✓,✗) NCCL: $(if $(filter 1,$(NCCL_FOUND)),found (multi-GPU, issue 6),not found or disabled))
$(info $(if $(filter 1,$(MPI_FOUND)),✓,✗) MPI: $(if $(filter 1,$(MPI_FOUND)),found: mpirun -np N ./train_t5 trains data-parallel,not found or disabled (apt-get install libopenmpi-dev openmpi-bin)))
ifeq ($(MPI_FOUND),1)
  MPI_CFLAGS := -DUSE_MPI $(shell mpicc --showme:compile 2>/dev/null || mpicc -compile_info 2>/dev/null | cut -d' ' -f2- | tr ' ' '\n' | grep '^-I' | tr '\n' ' ')
  MPI_LDLIBS := $(shell mpicc --showme:link 2>/dev/null || mpicc -link_info 2>/dev/null | cut -d' ' -f2- | tr ' ' '\n' | grep '^-[Ll]' | tr '\n' ' ')
endif

PRECISION ?= BF16
ifeq ($(PRECISION),BF16)
  PRECISION_FLAGS =
else ifeq ($(PRECISION),FP32)
  PRECISION_FLAGS = -DENABLE_FP32
else
  $(error PRECISION must be BF16 or FP32)
endif
ifeq ($(CUDNN_ATTN)$(PRECISION),1FP32)
  $(error USE_CUDNN=1: cuDNN's SDPA takes bf16 only; build it with PRECISION=BF16)
endif
GPU_ARCH ?= $(shell nvidia-smi -L 2>/dev/null | grep -q GPU && echo native || echo sm_90)
ifneq ($(GPU_ARCH),native)
  ifeq ($(filter sm_%,$(GPU_ARCH)),)
    $(error GPU_ARCH must be native or sm_XX, e.g. sm_80 or sm_90)
  endif
endif
# -ftz=true: subnormals flush to zero, as in the CPU engine; no fast math (the fp32 build must match the CPU)
NVCC_FLAGS = -O3 -std=c++17 -ftz=true -I. $(PRECISION_FLAGS) -diag-suppress 177 -Xcompiler -Wall,-Wextra,-Wno-unused-function,-Wno-format-truncation $(if $(filter 1,$(OMP_FOUND)),-Xcompiler -fopenmp)
NVCC_LDLIBS = -lcublasLt -lm
# the cuDNN attention path: its own object (the frontend is a large C++ header library, compiled once)
CUDNN_FE_FLAGS = -O3 -std=c++17 -I. -isystem $(CUDNN_FRONTEND_PATH) -Xcompiler -Wall,-Wextra
# (-lnvrtc: the frontend headers also hold engines that compile kernels at run time through NVRTC)
CUDNN_LDLIBS = -lcudnn -lnvrtc
# the --bench profiler (llmc/profile.cuh): PROFILE=1 compiles it in (-DENABLE_PROFILE: GPU time per phase,
# --profile ops per operation); without it every profiling call compiles to nothing
ifeq ($(PROFILE),1)
  NVCC_FLAGS += -DENABLE_PROFILE
  $(info ✓ profiler: compiled in (PROFILE=1): --bench prints GPU time per phase, --profile ops per operation)
else ifeq ($(PROFILE),)
  $(info ✗ profiler: compiled out (build with PROFILE=1 for --bench's phase and operation tables))
else
  $(error PROFILE must be 1 when given)
endif
ifeq ($(CUDNN_ATTN),1)
  NVCC_FLAGS += -DENABLE_CUDNN
  NVCC_LDLIBS += $(CUDNN_LDLIBS)
  CUDNN_OBJ = $(BUILD)/cudnn_att.o
endif
# multi-GPU (issue 6): NCCL collectives (-DUSE_NCCL), bootstrapped through MPI when it is found (-DUSE_MPI
# with the mpicc wrapper's flags; the C API only, so the C++ bindings are skipped), else through a shared
# directory (train_t5cu --nccl-init-dir)
NVCC_COMMA := ,
ifeq ($(NCCL_FOUND),1)
  NVCC_FLAGS += -DUSE_NCCL
  NVCC_LDLIBS += -lnccl
endif
ifeq ($(MPI_FOUND),1)
  NVCC_FLAGS += -DOMPI_SKIP_MPICXX=1 -DMPICH_SKIP_MPICXX=1 $(MPI_CFLAGS)
  NVCC_LDLIBS += $(subst -pthread,-Xcompiler -pthread,$(patsubst -Wl$(NVCC_COMMA)%,-Xlinker %,$(MPI_LDLIBS)))
endif
CUDA_HEADERS = $(wildcard llmc/*.cuh)
# the CPU engine as a library (llmc/t5_cpu.c): the reference for test_t5cu and the kernel twins
$(BUILD)/t5_cpu.o: llmc/t5_cpu.c train_t5.c $(HEADERS)
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) -Wno-unused-function -I. -c $< -o $@
# the host-side driver (llmc/run.h) as a C object for the CUDA programs: train_t5cu's host side is train_t5's
$(BUILD)/driver.o: llmc/driver.c $(HEADERS) tokenizer/spm.h
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) -I. -c $< -o $@


.PHONY: all test test_fast asan msan fixtures bench_cpu check_export clean cuda_compile_check

all: train_t5 test_t5

train_t5: train_t5.c $(HEADERS)
	$(CC) $(CFLAGS) $(MPI_CFLAGS) -I. $< -o $@ $(LDLIBS) $(MPI_LDLIBS)

test_t5: test_t5.c train_t5.c dev/testing.h $(HEADERS)
	$(CC) $(CFLAGS) -Wno-unused-function -I. $< -o $@ $(LDLIBS)

$(BUILD)/test_io: dev/test_io.c llmc/json.h llmc/safetensors.h llmc/fileio.h
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) -I. $< -o $@ $(LDLIBS)

# durable publication, the background checkpoint writer, the stalled-rank watchdog (docs/durability.md)
$(BUILD)/test_durable: dev/test_durable.c $(HEADERS)
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) -pthread -I. $< -o $@ $(LDLIBS)
$(BUILD)/asan/test_durable: dev/test_durable.c $(HEADERS)
	@mkdir -p $(BUILD)/asan
	$(CC) $(filter-out -O3,$(CFLAGS)) $(SAN_FLAGS) -pthread -I. $< -o $@ $(LDLIBS)
# Adafactor (llmc/adafactor.h) against transformers' (dev/fixtures/adafactor, made by dev/make_adafactor_fixtures.py);
# its CPU benchmark driver (dev/bench_adafactor.py runs it) is built with it so that it keeps compiling
$(BUILD)/test_adafactor: dev/test_adafactor.c dev/testing.h $(HEADERS)
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) -Wno-unused-function -I. $< -o $@ $(LDLIBS)
$(BUILD)/bench_adafactor: dev/bench_adafactor.c $(BUILD)/t5_cpu.o $(HEADERS)
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) -I. $< $(BUILD)/t5_cpu.o -o $@ $(LDLIBS)
.PHONY: test_adafactor
test_adafactor: $(BUILD)/test_adafactor $(BUILD)/bench_adafactor
	./$(BUILD)/test_adafactor

# the same three programs under AddressSanitizer + UndefinedBehaviorSanitizer
$(BUILD)/asan/train_t5: train_t5.c $(HEADERS)
	@mkdir -p $(BUILD)/asan
	$(CC) $(filter-out -O3,$(CFLAGS)) $(MPI_CFLAGS) $(SAN_FLAGS) -I. $< -o $@ $(LDLIBS) $(MPI_LDLIBS)
$(BUILD)/asan/test_t5: test_t5.c train_t5.c dev/testing.h $(HEADERS)
	@mkdir -p $(BUILD)/asan
	$(CC) $(filter-out -O3,$(CFLAGS)) $(SAN_FLAGS) -Wno-unused-function -I. $< -o $@ $(LDLIBS)
$(BUILD)/asan/test_io: dev/test_io.c llmc/json.h llmc/safetensors.h llmc/fileio.h
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
.PHONY: test_metrics test_hub
test_metrics: $(BUILD)/score $(BUILD)/asan/score
	ASAN_OPTIONS=detect_leaks=1 $(PYTHON) dev/test_metrics.py --score-bin $(BUILD)/score --asan-bin $(BUILD)/asan/score

# SentencePiece tokenizer in C (tokenizer/spm.h): the t5tok command line, its unit + mutation test
# (also under the sanitizers, in `asan`), and the id-for-id parity test against the sentencepiece
# library on all of DialogSum (pip install sentencepiece; data from DATA=../shared/data)
DATA ?= ../shared/data
$(BUILD)/t5tok: tokenizer/t5tok.c tokenizer/spm.h
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) $< -o $@ $(LDLIBS)
$(BUILD)/test_spm: tokenizer/test_spm.c tokenizer/spm.h
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) $< -o $@ $(LDLIBS)
$(BUILD)/asan/test_spm: tokenizer/test_spm.c tokenizer/spm.h
	@mkdir -p $(BUILD)/asan
	$(CC) $(filter-out -O3,$(CFLAGS)) $(SAN_FLAGS) $< -o $@ $(LDLIBS)
.PHONY: test_tokenizer
test_tokenizer: $(BUILD)/t5tok $(BUILD)/test_spm $(BUILD)/score
	./$(BUILD)/test_spm --model $(DATA)/t5/spiece.model
	$(PYTHON) dev/test_tokenizer.py --t5tok $(BUILD)/t5tok --data $(DATA)
	@# a small fixed-seed slice of the randomized sweep (tokenizer vs sentencepiece and transformers, ROUGE vs
	@# rouge_score, BLEU vs sacrebleu on generated adversarial text; about 15 s); the whole sweep: dev/sweep_text.py
	$(PYTHON) dev/sweep_text.py --t5tok $(BUILD)/t5tok --score-bin $(BUILD)/score --data $(DATA) --seed 7 --texts 6000 --pairs 1500

# the data loader on generated example files; the DialogSum pipeline end to end (prepro on a subset
# of the real data, a CPU run whose loss falls, kill + resume, corrupted files, plots, W&B offline;
# pip install sentencepiece numpy matplotlib wandb)
$(BUILD)/test_dataloader: dev/test_dataloader.c $(HEADERS)
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) -I. $< -o $@ $(LDLIBS)
# what a shape ladder costs in padding on a real example file (a tool: docs/benchmarks.md has its numbers)
$(BUILD)/ladder_stats: dev/ladder_stats.c $(HEADERS)
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) -I. $< -o $@ $(LDLIBS)
$(BUILD)/asan/test_dataloader: dev/test_dataloader.c $(HEADERS)
	@mkdir -p $(BUILD)/asan
	$(CC) $(filter-out -O3,$(CFLAGS)) $(SAN_FLAGS) -I. $< -o $@ $(LDLIBS)
.PHONY: test_pipeline
# exported HF directories in transformers (no PyTorch needed): config, tokenizer on DialogSum, card
test_hub: train_t5
	bash dev/test_hub.sh ./train_t5 $(DATA)

test_pipeline: train_t5 $(BUILD)/test_dataloader
	./$(BUILD)/test_dataloader
	$(PYTHON) dev/test_prepro.py --data $(DATA)
	$(PYTHON) dev/test_pipeline.py --train-bin ./train_t5 --data $(DATA) --mpi $(if $(filter 1,$(MPI_FOUND)),1,0)

# the whole suite: file readers, the engine against the HF fixtures, the CLI, then all of it again
# under the sanitizers
# the generation and GEMM benchmarks are built with the tests so that they keep compiling (run them by hand)
$(BUILD)/bench_generate: dev/bench_generate.c train_t5.c $(HEADERS)
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) -Wno-unused-function -I. $< -o $@ $(LDLIBS)

$(BUILD)/bench_gemm: dev/bench_gemm.c llmc/gemm.h llmc/utils.h
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) -I. $< -o $@ $(LDLIBS)

# the CPU engine built without OpenMP (NO_OMP=1) keeps compiling and passing: every omp pragma
# ignored, the par_* queries of llmc/utils.h answering for one thread
$(BUILD)/noomp/test_t5: test_t5.c train_t5.c $(HEADERS)
	@mkdir -p $(BUILD)/noomp
	$(CC) $(filter-out -fopenmp,$(CFLAGS)) -Wno-unknown-pragmas -Wno-unused-function -I. $< -o $@ -lm

test: train_t5 test_t5 $(BUILD)/test_io $(BUILD)/test_durable $(BUILD)/bench_generate $(BUILD)/bench_gemm $(BUILD)/ladder_stats $(BUILD)/noomp/test_t5 $(if $(filter 1,$(CUBLASLT_FOUND)),cuda_compile_check)
	./$(BUILD)/test_io
	./$(BUILD)/test_durable
	bash dev/check_fsync_order.sh ./$(BUILD)/test_durable ./train_t5
	$(MAKE) --no-print-directory test_adafactor
	./test_t5 --train-bin ./train_t5
	bash dev/test_cli_flags.sh ./train_t5
	@if $(PYTHON) -c "import peft, transformers, torch" 2>/dev/null; then bash dev/check_lora_export.sh ./train_t5; \
	 else echo "skipped dev/check_lora_export.sh (peft reads our LoRA files): needs torch + transformers + peft"; fi
	./$(BUILD)/noomp/test_t5
	$(MAKE) --no-print-directory test_metrics
	$(MAKE) --no-print-directory test_tokenizer
	$(MAKE) --no-print-directory test_pipeline
	$(PYTHON) dev/test_survive.py --train-bin ./train_t5 --trials 10 $(if $(filter 1,$(MPI_FOUND)),,--mpi 0)
	$(MAKE) --no-print-directory test_hub
	bash dev/gpu_check_dry.sh
	$(MAKE) --no-print-directory asan

asan: $(BUILD)/asan/train_t5 $(BUILD)/asan/test_t5 $(BUILD)/asan/test_io $(BUILD)/asan/test_durable $(BUILD)/asan/test_spm $(BUILD)/asan/test_dataloader
	$(MAKE) --no-print-directory fuzz_replay
	ASAN_OPTIONS=detect_leaks=1 ./$(BUILD)/asan/test_io
	ASAN_OPTIONS=detect_leaks=1 ./$(BUILD)/asan/test_durable
	ASAN_OPTIONS=detect_leaks=1 ./$(BUILD)/asan/test_dataloader
	ASAN_OPTIONS=detect_leaks=1 ./$(BUILD)/asan/test_spm --model $(DATA)/t5/spiece.model
	ASAN_OPTIONS=detect_leaks=1 ./$(BUILD)/asan/test_t5 --train-bin ./$(BUILD)/asan/train_t5

# MemorySanitizer (clang): reads of uninitialized memory in the host C code, which ASan sees only when
# they overflow (an unwritten buffer read to its first zero byte). Not part of `make test` (a few minutes).
# Built without OpenMP and MPI: libgomp and libmpi are not instrumented and would give false reports.
# -fsanitize-memory-param-retval: an uninitialized value passed to or returned from a function is a report
# too (clang 16's default). Every report goes to $(BUILD)/msan/reports/ (the children that test_t5 runs
# with their output in files included), and any report fails the target.
MSAN_CC ?= clang
MSAN_FLAGS = -fsanitize=memory -fsanitize-memory-track-origins=2 -fsanitize-memory-param-retval -g -O1 -fno-omit-frame-pointer \
    -std=gnu11 -Wall -Wextra -Werror -Wno-unknown-pragmas -Wno-unused-function -I.
MSAN_REPORTS = $(BUILD)/msan/reports
MSAN_ENV = MSAN_OPTIONS=log_path=$(abspath $(MSAN_REPORTS))/report
MSAN_PROGS = train_t5 test_t5 test_io test_durable test_adafactor test_dataloader test_spm t5tok score
$(BUILD)/msan/train_t5: train_t5.c $(HEADERS)
$(BUILD)/msan/test_t5: test_t5.c train_t5.c dev/testing.h $(HEADERS)
$(BUILD)/msan/test_io: dev/test_io.c $(HEADERS)
$(BUILD)/msan/test_durable: dev/test_durable.c $(HEADERS)
$(BUILD)/msan/test_adafactor: dev/test_adafactor.c dev/testing.h $(HEADERS)
$(BUILD)/msan/test_dataloader: dev/test_dataloader.c $(HEADERS)
$(BUILD)/msan/test_spm: tokenizer/test_spm.c tokenizer/spm.h
$(BUILD)/msan/t5tok: tokenizer/t5tok.c tokenizer/spm.h
$(BUILD)/msan/score: dev/score.c $(METRIC_HEADERS)
$(addprefix $(BUILD)/msan/,$(MSAN_PROGS)):
	@mkdir -p $(BUILD)/msan
	$(MSAN_CC) $(MSAN_FLAGS) -pthread $< -o $@ -lm
.PHONY: msan
msan: $(addprefix $(BUILD)/msan/,$(MSAN_PROGS))
	rm -rf $(MSAN_REPORTS) && mkdir -p $(MSAN_REPORTS)
	$(MSAN_ENV) ./$(BUILD)/msan/test_io
	$(MSAN_ENV) ./$(BUILD)/msan/test_durable
	$(MSAN_ENV) ./$(BUILD)/msan/test_adafactor
	$(MSAN_ENV) ./$(BUILD)/msan/test_dataloader
	$(MSAN_ENV) ./$(BUILD)/msan/test_spm --model $(DATA)/t5/spiece.model
	@# encode and decode text with empty records, special ids, sentinels, no ids at all
	printf 'Hello world.\n\n  \nCaf\303\251 \357\275\206 \360\237\230\200\n#Person1#: hi\n' | $(MSAN_ENV) ./$(BUILD)/msan/t5tok \
	    --model $(DATA)/t5/spiece.model encode > $(BUILD)/msan/ids.txt
	printf '\n1\n0 1\n32099 5 0\n2\n' >> $(BUILD)/msan/ids.txt
	$(MSAN_ENV) ./$(BUILD)/msan/t5tok --model $(DATA)/t5/spiece.model decode < $(BUILD)/msan/ids.txt > /dev/null
	$(MSAN_ENV) ./$(BUILD)/msan/t5tok --model $(DATA)/t5/spiece.model --skip-special --null decode < $(BUILD)/msan/ids.txt > /dev/null
	printf 'a\0\0b c\0' | $(MSAN_ENV) ./$(BUILD)/msan/t5tok --model $(DATA)/t5/spiece.model --null --pieces encode > /dev/null
	@# scores with empty lines on either side, several references, both token dumps
	printf 'the cat sat on the mat\n\nrunning quickly\nxyz\n' > $(BUILD)/msan/hyp.txt
	printf 'the cat sat\nempty\n\nrunning quick\n' > $(BUILD)/msan/ref.txt
	$(MSAN_ENV) ./$(BUILD)/msan/score --hyp $(BUILD)/msan/hyp.txt --ref $(BUILD)/msan/ref.txt > /dev/null
	$(MSAN_ENV) ./$(BUILD)/msan/score --hyp $(BUILD)/msan/hyp.txt --ref $(BUILD)/msan/ref.txt --ref $(BUILD)/msan/hyp.txt --json > /dev/null
	$(MSAN_ENV) ./$(BUILD)/msan/score --print-tokens rouge --hyp $(BUILD)/msan/hyp.txt > /dev/null
	$(MSAN_ENV) ./$(BUILD)/msan/score --print-tokens 13a --unescape-newlines --hyp $(BUILD)/msan/hyp.txt > /dev/null
	$(MSAN_ENV) ./$(BUILD)/msan/test_t5 --train-bin ./$(BUILD)/msan/train_t5
	$(MSAN_ENV) bash dev/msan_train.sh ./$(BUILD)/msan/train_t5
	@if [ -n "$$(ls $(MSAN_REPORTS))" ]; then cat $(MSAN_REPORTS)/*; echo "✗ MemorySanitizer: $$(ls $(MSAN_REPORTS) | wc -l) report(s) in $(MSAN_REPORTS)"; exit 1; fi
	@echo "✓ MemorySanitizer: no report"

# fuzzing (dev/fuzz.c: one target per reader of outside input). fuzz_replay (in `make asan`) runs
# each target once over its seeds (dev/fuzz_seeds.py: real files from the real writers) and over
# dev/fuzz_regressions/TARGET (inputs the fuzzer found, kept once fixed) under the sanitizers.
# `make fuzz FUZZ_TARGET=examples FUZZ_SECONDS=60` runs clang's libFuzzer on one target (corpus and
# crashes in $(BUILD)/fuzz/), `make fuzz_all` each target in turn
FUZZ_TARGETS = json jsonout config safetensors hfdir hfindex checkpoint lora lora_ckpt examples refs metrics_log spm tokenize decode scores generate train
FUZZ_TARGET ?= examples
FUZZ_SECONDS ?= 60
CLANG ?= clang
FUZZ_ENV = ASAN_OPTIONS=detect_leaks=1 FUZZ_SPM=$(DATA)/t5/spiece.model
$(BUILD)/asan/fuzz_replay: dev/fuzz.c train_t5.c $(HEADERS) tokenizer/spm.h
	@mkdir -p $(BUILD)/asan
	$(CC) $(filter-out -O3,$(CFLAGS)) $(SAN_FLAGS) -Wno-unused-function -DFUZZ_REPLAY -I. $< -o $@ $(LDLIBS)
$(BUILD)/fuzz/fuzz_t5: dev/fuzz.c train_t5.c $(HEADERS) tokenizer/spm.h
	@mkdir -p $(BUILD)/fuzz
	$(CLANG) -g -O1 -std=gnu11 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Wall -Wextra -Werror \
	    -Wno-unknown-pragmas -Wno-unused-function -I. $< -o $@ -lm
.PHONY: fuzz_seeds fuzz_replay fuzz fuzz_all
fuzz_seeds: train_t5
	$(PYTHON) dev/fuzz_seeds.py --train-bin ./train_t5 --out $(BUILD)/fuzz/seeds --data $(DATA)
fuzz_replay: $(BUILD)/asan/fuzz_replay fuzz_seeds
	@for t in $(FUZZ_TARGETS); do \
	    $(FUZZ_ENV) ./$(BUILD)/asan/fuzz_replay $$t $(BUILD)/fuzz/seeds/$$t $$(ls -d dev/fuzz_regressions/$$t 2>/dev/null) || exit 1; done
fuzz: $(BUILD)/fuzz/fuzz_t5 fuzz_seeds
	@mkdir -p $(BUILD)/fuzz/corpus/$(FUZZ_TARGET) $(BUILD)/fuzz/crashes/$(FUZZ_TARGET)
	$(FUZZ_ENV) FUZZ_TARGET=$(FUZZ_TARGET) ./$(BUILD)/fuzz/fuzz_t5 $(BUILD)/fuzz/corpus/$(FUZZ_TARGET) $(BUILD)/fuzz/seeds/$(FUZZ_TARGET) \
	    $$(ls -d dev/fuzz_regressions/$(FUZZ_TARGET) 2>/dev/null) -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=3000 \
	    -artifact_prefix=$(BUILD)/fuzz/crashes/$(FUZZ_TARGET)/ -print_final_stats=1
fuzz_all:
	@for t in $(FUZZ_TARGETS); do $(MAKE) --no-print-directory fuzz FUZZ_TARGET=$$t || exit 1; done

# the main job (README): DialogSum → pre-tokenized shards → fine-tune → validation loss → summaries of
# the test split scored against the human ones, next to the untuned starting model's (RUN/eval/
# comparison.md), metrics log and plots in RUN. MODEL = an HF FLAN-T5 / T5 directory (e.g. a
# google/flan-t5-base download); without one, a small randomly initialised FLAN-shaped T5 that trains
# in minutes on 2 CPU cores. Running it again continues the run in RUN from its newest checkpoint.
# LORA=R trains a rank-R LoRA adapter (peft's defaults: q,v targets; alpha 2R here) instead of every
# weight: RUN/adapter/ is then the peft adapter and RUN/eval/ scores the adapted model.
MODEL ?=
LORA ?= 0
LORA_ARGS ?= --lora-r $(LORA) --lora-alpha $(shell expr 2 \* $(LORA)) --lora-targets q,v
RUN ?= out/dialogsum_run$(if $(filter-out 0,$(LORA)),_lora$(LORA))
PREP ?= out/dialogsum
SMALL_T5 = --d-model 256 --num-heads 4 --d-kv 64 --d-ff 512 --num-layers 2
START = $(if $(MODEL),$(MODEL),flan-t5-small)
# the small model trains from scratch (--init scratch, the presets' default: its first loss is near ln 32128),
# without dropout, on sources cut to 256 tokens, for the ~4 minutes this job may take on 2 cores; the best
# validation ROUGE-1 is kept (--keep-best). What five minutes buy, and what they do not: docs/demo.md
DIALOGSUM_ARGS ?= --steps 700 --batch-size 8 --lr 2e-3 --warmup 40 --dropout 0 --max-src-len 256 --max-tgt-len 64 \
    --eval-every 175 --eval-batches 10 --checkpoint-every 175 --eval-rouge 32 --keep-best rouge1
EVAL_ARGS ?= --eval-limit 100 --max-new-tokens 48 --no-repeat-ngram 3
.PHONY: dialogsum
dialogsum: train_t5
	$(PYTHON) prepro_dialogsum.py --data-dir $(DATA)/dialogsum --tokenizer $(DATA)/t5/spiece.model --out-dir $(PREP)
	@$(if $(MODEL),,echo "no MODEL=<HF FLAN-T5 directory> given: training a SMALL RANDOMLY INITIALISED T5, not pretrained FLAN-T5")
	./train_t5 --model $(START) $(if $(MODEL),,$(SMALL_T5)) --train-file $(PREP)/train.bin --val-file $(PREP)/val.bin \
	    --out-dir $(RUN) $(DIALOGSUM_ARGS) $(if $(filter-out 0,$(LORA)),$(LORA_ARGS)) --resume auto \
	    --tokenizer $(DATA)/t5/spiece.model --eval-split $(PREP)/test --baseline-model $(START) $(EVAL_ARGS)
	$(PYTHON) dev/plot_metrics.py $(RUN)

# the three-way report (issue 16): the main job run twice on the same PREP, fully fine-tuned (FULL_RUN) and
# with a rank-COMPARE_LORA LoRA adapter (LORA_RUN), then the start model zero-shot, the full fine-tune and the
# LoRA model side by side in COMPARE_OUT/comparison.md: ROUGE, BLEU, trainable parameters, median step time
# and peak memory (from each run's metrics.jsonl), and the test dialogues with every model's summary
COMPARE_LORA ?= 32
FULL_RUN ?= out/dialogsum_run
LORA_RUN ?= out/dialogsum_run_lora$(COMPARE_LORA)
COMPARE_OUT ?= out/dialogsum_compare
.PHONY: dialogsum_compare
dialogsum_compare: train_t5
	$(MAKE) --no-print-directory dialogsum LORA=0 RUN=$(FULL_RUN)
	$(MAKE) --no-print-directory dialogsum LORA=$(COMPARE_LORA) RUN=$(LORA_RUN)
	./train_t5 --model $(START) $(if $(MODEL),,$(SMALL_T5)) --lora-adapter $(LORA_RUN)/adapter --compare-model $(FULL_RUN)/model \
	    --baseline-model $(START) --tokenizer $(DATA)/t5/spiece.model --eval-split $(PREP)/test --eval-out $(COMPARE_OUT) $(EVAL_ARGS)

# regenerate dev/fixtures with Hugging Face transformers (needs torch + transformers)
# the format fixtures need transformers 4 beside 5: TRANSFORMERS4=DIR (pip install --target DIR transformers==4.57.1)
TRANSFORMERS4 ?= /tmp/tf4
fixtures:
	$(PYTHON) dev/make_fixtures.py
	$(PYTHON) dev/make_gen_fixtures.py
	TRANSFORMERS4_PATH=$(TRANSFORMERS4) $(PYTHON) dev/make_format_fixtures.py
	$(PYTHON) dev/make_lora_fixtures.py

# CPU speed vs PyTorch on this machine (a benchmark, not a test)
bench_cpu: train_t5
	$(PYTHON) dev/bench_cpu.py

# ---------------------------------------------------------------- CUDA targets
train_t5cu: train_t5.cu $(BUILD)/driver.o $(CUDNN_OBJ) $(CUDA_HEADERS) $(HEADERS)
	$(NVCC) $(NVCC_FLAGS) -arch=$(GPU_ARCH) $< $(BUILD)/driver.o $(CUDNN_OBJ) -o $@ $(NVCC_LDLIBS)

test_t5cu: test_t5cu.cu train_t5.cu dev/testing.h $(BUILD)/t5_cpu.o $(BUILD)/driver.o $(CUDNN_OBJ) $(CUDA_HEADERS) $(HEADERS)
	$(NVCC) $(NVCC_FLAGS) -arch=$(GPU_ARCH) $< $(BUILD)/t5_cpu.o $(BUILD)/driver.o $(CUDNN_OBJ) -o $@ $(NVCC_LDLIBS)

# host code only (no kernels): one object serves every GPU_ARCH
$(BUILD)/cudnn_att.o: llmc/cudnn_att.cpp llmc/cudnn_att.h
	@mkdir -p $(BUILD)
	$(NVCC) $(CUDNN_FE_FLAGS) -c $< -o $@

# CI (no GPU): both programs for sm_80 and sm_90 in one nvcc call each, every warning an error
CUDA_CHECK_ARCHS = -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90
CUDA_CHECK_FLAGS = $(NVCC_FLAGS) -Werror all-warnings -Xcompiler -Werror $(CUDA_CHECK_ARCHS)
# (+ the single-process build without NCCL/MPI; then --plan-memory, which needs no GPU: it checks the
# device order of every preset and prints the largest batch per preset)
# the cuDNN attention path too (USE_CUDNN=1's build) when cuDNN and the frontend headers are found;
# REQUIRE_CUDNN=1 (CI) makes their absence an error instead of a ✗ line
CUDNN_CC = $(if $(filter 11,$(CUDNN_FOUND)$(CUDNN_FE_PROBE)),$(BUILD)/cc/train_t5cu_cudnn $(BUILD)/cc/test_t5cu_cudnn)
cuda_compile_check: train_t5 $(BUILD)/cc/train_t5cu $(BUILD)/cc/test_t5cu $(BUILD)/cc/train_t5cu_single $(BUILD)/cc/train_t5cu_profile $(CUDNN_CC)
	@$(if $(CUDNN_CC),echo "✓ cuDNN attention path compiled (sm_80, sm_90, warnings as errors)",\
	  $(if $(filter 1,$(REQUIRE_CUDNN)),echo "✗ cuDNN or its frontend headers missing: the cuDNN attention path was not compiled" && exit 1,\
	  echo "✗ cuDNN attention path not compiled (cuDNN or the frontend headers missing)"))
	./$(BUILD)/cc/train_t5cu --plan-memory 80
	@# the PROFILE=1 build's host side runs too, and plans the same bytes
	./$(BUILD)/cc/train_t5cu_profile --plan-memory 80 > $(BUILD)/cc/plan_profile.txt
	./$(BUILD)/cc/train_t5cu --plan-memory 80 | cmp - $(BUILD)/cc/plan_profile.txt
	@# the host-only flags reach the plan: ZeRO ranks, the padded lengths; --help
	./$(BUILD)/cc/train_t5cu --plan-memory 80 --plan-ranks 4 --max-src-len 256 --max-tgt-len 64 | \
	    grep -q "padded to 256 source + 64 target" && ./$(BUILD)/cc/train_t5cu --plan-memory 80 --plan-ranks 4 | grep -q "ZeRO-1 x4"
	./$(BUILD)/cc/train_t5cu --help 2>&1 | grep -q "usage: train_t5cu"
	@# --matmul-tune (and T5_MATMUL_TUNE, read for one more release): a bad value is refused before any device work
	! ./$(BUILD)/cc/train_t5cu --matmul-tune bogus --plan-memory 80 2> $(BUILD)/cc/tune.err >/dev/null
	grep -q "error: --matmul-tune must be one of 0|1|class, got 'bogus'" $(BUILD)/cc/tune.err
	! T5_MATMUL_TUNE=bogus ./$(BUILD)/cc/train_t5cu --plan-memory 80 2> $(BUILD)/cc/tune.err >/dev/null
	grep -q "error: --matmul-tune must be one of" $(BUILD)/cc/tune.err
	T5_MATMUL_TUNE=class ./$(BUILD)/cc/train_t5cu --plan-memory 80 >/dev/null
	@# the option table: every numeric flag range-checked, the other trainer's refused, the same --help as train_t5
	bash dev/test_cli_flags.sh ./$(BUILD)/cc/train_t5cu ./train_t5
	@# the CUDA binary's host side without a GPU: the driver up to the engine (llmc/run.h, --dry-run)
	bash dev/test_dry_run.sh ./$(BUILD)/cc/train_t5cu
	@mkdir -p $(BUILD)/cc/twins
	$(MAKE) -C dev/cuda -B GPU_ARCH=sm_90 KERNEL_DIR=$(abspath $(BUILD))/cc/twins \
	    EXTRA_FLAGS="-Werror all-warnings -Xcompiler -Werror" all
	$(if $(CUDNN_CC),mkdir -p $(BUILD)/cc/twins_cudnn && $(MAKE) -C dev/cuda -B GPU_ARCH=sm_90 USE_CUDNN=1 \
	    CUDNN_OBJ=$(abspath $(BUILD))/cc/cudnn_att.o KERNEL_DIR=$(abspath $(BUILD))/cc/twins_cudnn \
	    EXTRA_FLAGS="-Werror all-warnings -Xcompiler -Werror" attention)
# the profiler compiled in (PROFILE=1's build): it must keep compiling, though only a GPU runs it
$(BUILD)/cc/train_t5cu_profile: train_t5.cu $(BUILD)/driver.o $(CUDA_HEADERS) $(HEADERS)
	@mkdir -p $(BUILD)/cc
	$(NVCC) $(filter-out -DENABLE_PROFILE,$(CUDA_CHECK_FLAGS)) -DENABLE_PROFILE $< $(BUILD)/driver.o -o $@ $(NVCC_LDLIBS)
$(BUILD)/cc/train_t5cu_single: train_t5.cu $(BUILD)/driver.o $(CUDA_HEADERS) $(HEADERS)
	@mkdir -p $(BUILD)/cc
	$(NVCC) $(filter-out -DUSE_NCCL -DUSE_MPI,$(CUDA_CHECK_FLAGS)) $< $(BUILD)/driver.o -o $@ -lcublasLt -lm
$(BUILD)/cc/train_t5cu: train_t5.cu $(BUILD)/driver.o $(CUDA_HEADERS) $(HEADERS)
	@mkdir -p $(BUILD)/cc
	$(NVCC) $(CUDA_CHECK_FLAGS) $< $(BUILD)/driver.o -o $@ $(NVCC_LDLIBS)
$(BUILD)/cc/test_t5cu: test_t5cu.cu train_t5.cu dev/testing.h $(BUILD)/t5_cpu.o $(BUILD)/driver.o $(CUDA_HEADERS) $(HEADERS)
	@mkdir -p $(BUILD)/cc
	$(NVCC) $(CUDA_CHECK_FLAGS) $< $(BUILD)/t5_cpu.o $(BUILD)/driver.o -o $@ $(NVCC_LDLIBS)
$(BUILD)/cc/cudnn_att.o: llmc/cudnn_att.cpp llmc/cudnn_att.h
	@mkdir -p $(BUILD)/cc
	$(NVCC) $(CUDNN_FE_FLAGS) -Werror all-warnings -Xcompiler -Werror -c $< -o $@
$(BUILD)/cc/train_t5cu_cudnn: train_t5.cu $(BUILD)/driver.o $(BUILD)/cc/cudnn_att.o $(CUDA_HEADERS) $(HEADERS)
	$(NVCC) $(CUDA_CHECK_FLAGS) -DENABLE_CUDNN $< $(BUILD)/driver.o $(BUILD)/cc/cudnn_att.o -o $@ $(NVCC_LDLIBS) $(CUDNN_LDLIBS)
$(BUILD)/cc/test_t5cu_cudnn: test_t5cu.cu train_t5.cu dev/testing.h $(BUILD)/t5_cpu.o $(BUILD)/driver.o $(BUILD)/cc/cudnn_att.o $(CUDA_HEADERS) $(HEADERS)
	$(NVCC) $(CUDA_CHECK_FLAGS) -DENABLE_CUDNN $< $(BUILD)/t5_cpu.o $(BUILD)/driver.o $(BUILD)/cc/cudnn_att.o -o $@ $(NVCC_LDLIBS) $(CUDNN_LDLIBS)

clean:
	rm -rf train_t5 test_t5 train_t5cu test_t5cu $(BUILD)
